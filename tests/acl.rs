//! Tenant ACLs. The contract's libvirt example (incoming default deny, allow
//! tcp 22 and replies; outgoing deny tcp 25) on tenant `web`, checked with
//! real TCP connections over IPv4 and IPv6, with rule hit counters and
//! `acl_deny`. Then rule management (--at, move, del, policy) and refused
//! bad input that changes nothing.
//!
//! ACLs are per tenant, so web's rules guard every port in web. The guarded
//! host is w; the other host c, whose connections w makes, is let in by one
//! extra rule (`egress allow --dst c`, inserted first), as libvirt's filter
//! would only sit on w's interface.

use anyhow::{bail, ensure, Result};
use serde_json::Value;
use std::time::{Duration, Instant};
use xsw_integration::{lab, normalize, Host, Lab};

fn wait_ping(lab: &Lab, from: &Host, ip: &str, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let out = lab.run_in(
            &from.ns,
            &["ping", "-n", "-q", "-c", "1", "-W", "1", ip],
            Duration::from_secs(3),
        )?;
        if out.success() {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "{} cannot reach {ip} within {timeout:?}: {}\nxswd log:\n{}",
            from.name,
            out.describe(),
            lab.xswd_log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn rules(list: &Value, dir: &str) -> Vec<Value> {
    list[dir]["rules"].as_array().cloned().unwrap_or_default()
}

/// A rule's protocol as a number: `acl list --json` names the well-known
/// protocols ("proto":"tcp") and gives others as numbers.
fn proto(rule: &Value) -> Value {
    match rule["proto"].as_str() {
        Some("tcp") => Value::from(6),
        Some("udp") => Value::from(17),
        Some("icmp") => Value::from(1),
        Some("icmpv6") => Value::from(58),
        Some("sctp") => Value::from(132),
        _ => rule["proto"].clone(),
    }
}

fn hits(rule: &Value) -> u64 {
    rule["hits"].as_u64().unwrap_or(0)
}

fn libvirt_example(lab: &Lab, v6: bool) -> Result<()> {
    let w = lab.add_veth_host("w", 10)?;
    let c = lab.add_veth_host("c", 20)?;
    let (w_ip, c_ip, plen) = if v6 {
        let (a, b) = (lab.ip6(10), lab.ip6(20));
        lab.enable_ipv6(&w, &a)?;
        lab.enable_ipv6(&c, &b)?;
        (a, b, 128)
    } else {
        (w.ip.clone(), c.ip.clone(), 32)
    };
    lab.start_xswd("")?;
    lab.ctl_ok(&["tenant", "create", "web"])?;
    lab.ctl_ok(&["port", "add", &w.port, "--tenant", "web"])?;
    lab.ctl_ok(&["port", "add", &c.port, "--tenant", "web"])?;
    wait_ping(lab, &c, &w_ip, Duration::from_secs(5))?;
    wait_ping(lab, &w, &c_ip, Duration::from_secs(5))?;

    // The contract's example, verbatim, plus c's own way in.
    lab.ctl_ok(&["acl", "policy", "web", "egress", "deny"])?;
    lab.ctl_ok(&[
        "acl", "add", "web", "egress", "allow", "--proto", "tcp", "--dport", "22",
    ])?;
    lab.ctl_ok(&["acl", "add", "web", "egress", "allow", "--established"])?;
    lab.ctl_ok(&[
        "acl", "add", "web", "ingress", "deny", "--proto", "tcp", "--dport", "25",
    ])?;
    let c_prefix = format!("{c_ip}/{plen}");
    lab.ctl_ok(&[
        "acl", "add", "web", "egress", "allow", "--dst", &c_prefix, "--at", "1",
    ])?;

    let list = lab.ctl_json(&["acl", "list", "web"])?;
    let eg = rules(&list, "egress");
    let ing = rules(&list, "ingress");
    ensure!(
        list["egress"]["default"] == "deny"
            && list["ingress"]["default"] == "allow"
            && eg.len() == 3
            && ing.len() == 1
            && (0..3).all(|i| eg[i]["position"] == i as u64 + 1 && eg[i]["action"] == "allow")
            && proto(&eg[1]) == 6
            && eg[1]["dport"] == "22"
            && eg[2]["established"] == true
            && ing[0]["action"] == "deny"
            && proto(&ing[0]) == 6
            && ing[0]["dport"] == "25",
        "acl list web --json after setting up the example: {list}"
    );
    ensure!(
        eg.iter().chain(&ing).all(|r| hits(r) == 0),
        "hits before any traffic: {list}"
    );
    // The pings above went through while the policy was still allow, and
    // count as default hits.
    let default_hits = list["egress"]["default_hits"].as_u64().unwrap_or(0);
    let show = lab.ctl_json(&["tenant", "show", "web"])?;
    ensure!(
        show["acl"]["egress"]["default"] == "deny"
            && show["acl"]["egress"]["rules"] == 3
            && show["acl"]["ingress"]["rules"] == 1,
        "tenant show web: {show}"
    );

    let (dw, dc) = (
        lab.drop_count(&w.port, "acl_deny")?,
        lab.drop_count(&c.port, "acl_deny")?,
    );
    let want = |ok: bool, a: xsw_integration::tenancy::TcpAttempt, what: &str| -> Result<()> {
        if a.connected != ok {
            bail!(
                "{what}: expected the connection to {}\n{}\nacl list web: {}\nxswd log:\n{}",
                if ok { "succeed" } else { "fail" },
                a.detail,
                lab.ctl_json(&["acl", "list", "web"])
                    .map(|v| v.to_string())
                    .unwrap_or_default(),
                lab.xswd_log()
            );
        }
        Ok(())
    };
    want(
        true,
        lab.tcp_try(&c, &w, &w_ip, 22, 4)?,
        "c -> w tcp/22 (egress allow tcp 22)",
    )?;
    want(
        false,
        lab.tcp_try(&c, &w, &w_ip, 25, 2)?,
        "c -> w tcp/25 (ingress deny tcp 25)",
    )?;
    want(
        false,
        lab.tcp_try(&w, &c, &c_ip, 25, 2)?,
        "w -> c tcp/25 (ingress deny tcp 25)",
    )?;
    want(
        false,
        lab.tcp_try(&c, &w, &w_ip, 8080, 2)?,
        "c -> w tcp/8080 (egress default deny)",
    )?;
    want(
        true,
        lab.tcp_try(&w, &c, &c_ip, 8080, 4)?,
        "w -> c tcp/8080 (replies let in by --established)",
    )?;

    let list = lab.ctl_json(&["acl", "list", "web"])?;
    let (eg, ing) = (rules(&list, "egress"), rules(&list, "ingress"));
    ensure!(
        eg.len() == 3 && ing.len() == 1,
        "acl list changed shape: {list}"
    );
    ensure!(
        hits(&eg[0]) >= 1,
        "egress rule 1 (allow --dst c) never hit: {list}"
    );
    ensure!(
        hits(&eg[1]) >= 1,
        "egress rule 2 (allow tcp 22) never hit: {list}"
    );
    ensure!(
        hits(&eg[2]) >= 1,
        "egress rule 3 (allow --established) never hit: {list}"
    );
    ensure!(
        hits(&ing[0]) >= 2,
        "ingress rule 1 (deny tcp 25) should have hit both SYNs: {list}"
    );
    ensure!(
        list["egress"]["default_hits"].as_u64().unwrap_or(0) > default_hits,
        "egress default deny never hit (tcp/8080 to w): {default_hits} before, now {list}"
    );
    let (dw2, dc2) = (
        lab.drop_count(&w.port, "acl_deny")?,
        lab.drop_count(&c.port, "acl_deny")?,
    );
    ensure!(
        dw2 > dw && dc2 >= dc + 2,
        "acl_deny: w's port {} -> {dw2} (expected +1 or more: its SYN to 25), c's port {} -> {dc2} \
         (expected +2 or more: its SYNs to 25 and 8080)",
        dw,
        dc
    );

    // Without the established rule, w's own connection fails: the replies
    // from c:8080 were let in by it and nothing else.
    lab.ctl_ok(&["acl", "del", "web", "egress", "3"])?;
    want(
        false,
        lab.tcp_try(&w, &c, &c_ip, 8080, 2)?,
        "w -> c tcp/8080 without --established",
    )?;
    // Address resolution is never filtered, whatever the policy.
    lab.ctl_ok(&["acl", "policy", "web", "ingress", "deny"])?;
    let nd = if v6 {
        vec!["ip", "-6", "neigh", "flush", "dev"]
    } else {
        vec!["ip", "-4", "neigh", "flush", "dev"]
    };
    for h in [&w, &c] {
        let mut a = nd.clone();
        a.push(&h.ifname);
        lab.run_in(&h.ns, &a, Duration::from_secs(5))?.ok()?;
    }
    let _ = lab.ping(&c, &w_ip, 1)?; // denied, but resolves w's address first
    let out = lab.run_in(
        &c.ns,
        &["ip", "neigh", "show", &w_ip],
        Duration::from_secs(5),
    )?;
    ensure!(
        out.stdout.to_lowercase().contains(&w.mac),
        "with ingress and egress default deny, c could not resolve w's address {w_ip}: {}",
        out.describe()
    );
    ensure!(lab.xswd_running(), "xswd exited");
    Ok(())
}

#[test]
fn acl_libvirt_example_ipv4() -> Result<()> {
    let lab = lab!("acl4", "acl4", 168)?;
    libvirt_example(&lab, false)
}

#[test]
fn acl_libvirt_example_ipv6() -> Result<()> {
    let lab = lab!("acl6", "acl6", 169)?;
    libvirt_example(&lab, true)
}

fn protos(list: &Value, dir: &str) -> Vec<Value> {
    rules(list, dir).iter().map(proto).collect()
}

fn state(lab: &Lab) -> Result<Value> {
    Ok(serde_json::json!({
        "ports": normalize(&Value::Array(lab.ports()?)),
        "tenants": normalize(&Value::Array(lab.tenants()?)),
        "acl": normalize(&lab.ctl_json(&["acl", "list", "t"])?),
        "fdb": normalize(&Value::Array(lab.fdb()?)),
    }))
}

#[test]
fn acl_rules_are_ordered_and_bad_input_changes_nothing() -> Result<()> {
    let lab = lab!("aclmgmt", "aclm", 170)?;
    let h1 = lab.add_veth_host("h1", 1)?;
    let tr = lab.add_veth_host("tr", 2)?;
    let spare = lab.add_veth_host("sp", 3)?;
    lab.start_xswd("")?;
    lab.ctl_ok(&["tenant", "create", "t"])?;
    lab.ctl_ok(&["port", "add", &h1.port, "--tenant", "t"])?;
    lab.ctl_ok(&["port", "add", &tr.port, "--trunk"])?;
    lab.ctl_ok(&["vlan", "add", &tr.port, "100", "t"])?;

    let add = |args: &[&str]| -> Result<Value> {
        let mut a = vec!["acl", "add", "t"];
        a.extend_from_slice(args);
        lab.ctl_ok(&a)?;
        lab.ctl_json(&["acl", "list", "t"])
    };
    add(&["ingress", "deny", "--proto", "udp", "--dport", "1000-2000"])?;
    add(&["ingress", "allow", "--proto", "tcp", "--sport", "80"])?;
    let l = add(&[
        "ingress",
        "allow",
        "--proto",
        "icmp",
        "--icmp-type",
        "8",
        "--at",
        "1",
    ])?;
    ensure!(protos(&l, "ingress") == [1, 17, 6], "after --at 1: {l}");
    ensure!(
        rules(&l, "ingress")[1]["dport"] == "1000-2000",
        "port range shown as: {l}"
    );
    let l = add(&[
        "ingress",
        "deny",
        "--proto",
        "sctp",
        "--src",
        "198.18.170.0/24",
        "--at",
        "2",
    ])?;
    ensure!(
        protos(&l, "ingress") == [1, 132, 17, 6],
        "after --at 2: {l}"
    );
    lab.ctl_ok(&["acl", "move", "t", "ingress", "4", "1"])?;
    let l = lab.ctl_json(&["acl", "list", "t"])?;
    ensure!(
        protos(&l, "ingress") == [6, 1, 132, 17],
        "after move 4 1: {l}"
    );
    lab.ctl_ok(&["acl", "move", "t", "ingress", "1", "3"])?;
    let l = lab.ctl_json(&["acl", "list", "t"])?;
    ensure!(
        protos(&l, "ingress") == [1, 132, 6, 17],
        "after move 1 3: {l}"
    );
    lab.ctl_ok(&["acl", "del", "t", "ingress", "2"])?;
    let l = lab.ctl_json(&["acl", "list", "t"])?;
    ensure!(protos(&l, "ingress") == [1, 6, 17], "after del 2: {l}");
    let pos: Vec<Value> = rules(&l, "ingress")
        .iter()
        .map(|r| r["position"].clone())
        .collect();
    ensure!(pos == [1, 2, 3], "positions after del: {l}");
    add(&[
        "egress",
        "allow",
        "--proto",
        "tcp",
        "--dst",
        "fd00:7873:77:170::/64",
        "--dport",
        "443",
    ])?;
    lab.ctl_ok(&["acl", "policy", "t", "egress", "deny"])?;
    let l = lab.ctl_json(&["acl", "list", "t"])?;
    ensure!(
        l["egress"]["default"] == "deny"
            && l["ingress"]["default"] == "allow"
            && protos(&l, "egress") == [6],
        "egress after policy deny: {l}"
    );
    let text = lab.ctl_ok(&["acl", "list", "t"])?;
    ensure!(
        text.contains("deny") && text.contains("allow"),
        "acl list t (table):\n{text}"
    );

    let before = state(&lab)?;
    let cases: Vec<(&str, Vec<&str>)> = vec![
        (
            "malformed IPv4 prefix",
            vec![
                "acl",
                "add",
                "t",
                "ingress",
                "deny",
                "--src",
                "198.18.0.300/24",
            ],
        ),
        (
            "prefix length 33",
            vec![
                "acl",
                "add",
                "t",
                "ingress",
                "deny",
                "--dst",
                "198.18.0.0/33",
            ],
        ),
        (
            "malformed IPv6 prefix",
            vec![
                "acl",
                "add",
                "t",
                "ingress",
                "deny",
                "--dst",
                "fd00:7873:77::zz/64",
            ],
        ),
        (
            "port range upside down",
            vec![
                "acl",
                "add",
                "t",
                "ingress",
                "deny",
                "--proto",
                "tcp",
                "--dport",
                "2000-1000",
            ],
        ),
        (
            "port out of range",
            vec![
                "acl", "add", "t", "ingress", "deny", "--proto", "tcp", "--sport", "70000",
            ],
        ),
        (
            "rule on a tenant that does not exist",
            vec!["acl", "add", "nosuch", "ingress", "deny", "--proto", "tcp"],
        ),
        (
            "unknown direction",
            vec!["acl", "add", "t", "sideways", "deny"],
        ),
        (
            "unknown action",
            vec!["acl", "add", "t", "ingress", "maybe"],
        ),
        (
            "unknown protocol",
            vec!["acl", "add", "t", "ingress", "deny", "--proto", "tcpp"],
        ),
        (
            "del of a rule that does not exist",
            vec!["acl", "del", "t", "ingress", "9"],
        ),
        ("del of rule 0", vec!["acl", "del", "t", "ingress", "0"]),
        (
            "move to a position that does not exist",
            vec!["acl", "move", "t", "ingress", "1", "9"],
        ),
        (
            "policy on a tenant that does not exist",
            vec!["acl", "policy", "nosuch", "egress", "deny"],
        ),
        (
            "list of a tenant that does not exist",
            vec!["acl", "list", "nosuch"],
        ),
        ("VLAN ID 4095", vec!["vlan", "add", &tr.port, "4095", "t"]),
        ("VLAN ID 0", vec!["vlan", "add", &tr.port, "0", "t"]),
        (
            "VLAN on a tenant that does not exist",
            vec!["vlan", "add", &tr.port, "300", "nosuch"],
        ),
        (
            "port add to a tenant that does not exist",
            vec!["port", "add", &spare.port, "--tenant", "nosuch"],
        ),
        (
            "port set to a tenant that does not exist",
            vec!["port", "set", &h1.port, "--tenant", "nosuch"],
        ),
        (
            "tenant name with a slash",
            vec!["tenant", "create", "bad/name"],
        ),
        ("tenant created twice", vec!["tenant", "create", "t"]),
    ];
    let mut failures = Vec::new();
    for (what, args) in &cases {
        match lab.ctl_err(args) {
            Err(e) => failures.push(format!("{what}: {e:#}")),
            Ok(out) => {
                if *what == "VLAN ID 4095" && !out.stderr.contains("4095") {
                    failures.push(format!(
                        "{what}: message does not name the VID: {}",
                        out.stderr.trim()
                    ));
                }
                let after = state(&lab)?;
                if after != before {
                    failures.push(format!(
                        "{what} (xswctl {}) changed the switch:\nbefore: {before}\nafter:  {after}",
                        args.join(" ")
                    ));
                }
            }
        }
    }
    ensure!(
        failures.is_empty(),
        "{} of {} bad requests misbehaved:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
    ensure!(lab.xswd_running(), "xswd exited");
    Ok(())
}

/// Rule order decides on live traffic: with "allow icmp" inserted `--at 1`
/// above "deny icmp", pings pass and the allow rule counts them; after
/// `acl move` puts the deny first, the same pings are dropped as `acl_deny`
/// and the deny rule counts them; moving it back lets them through again.
#[test]
fn rule_order_after_at_and_move_decides_live_traffic() -> Result<()> {
    let lab = lab!("aclorder", "aclo", 210)?;
    let h1 = lab.add_veth_host("h1", 1)?;
    let h2 = lab.add_veth_host("h2", 2)?;
    lab.start_xswd("")?;
    lab.ctl_ok(&["tenant", "create", "t"])?;
    lab.ctl_ok(&["port", "add", &h1.port, "--tenant", "t"])?;
    lab.ctl_ok(&["port", "add", &h2.port, "--tenant", "t"])?;
    lab.ctl_ok(&["acl", "add", "t", "ingress", "deny", "--proto", "icmp"])?;
    lab.ctl_ok(&[
        "acl", "add", "t", "ingress", "allow", "--proto", "icmp", "--at", "1",
    ])?;
    let l = lab.ctl_json(&["acl", "list", "t"])?;
    let actions = |l: &Value| -> Vec<Value> {
        rules(l, "ingress")
            .iter()
            .map(|r| r["action"].clone())
            .collect()
    };
    ensure!(actions(&l) == ["allow", "deny"], "after --at 1: {l}");
    wait_ping(&lab, &h1, &h2.ip, Duration::from_secs(5))?;
    let before = lab.ctl_json(&["acl", "list", "t"])?;
    lab.ping_all(&h1, &h2, 4)?;
    let after = lab.ctl_json(&["acl", "list", "t"])?;
    // Four requests from h1 and four replies from h2, all ingress in t.
    ensure!(
        hits(&rules(&after, "ingress")[0]) - hits(&rules(&before, "ingress")[0]) == 8
            && hits(&rules(&after, "ingress")[1]) == hits(&rules(&before, "ingress")[1]),
        "the allow rule at position 1 did not decide the pings:\nbefore {before}\nafter {after}"
    );

    lab.ctl_ok(&["acl", "move", "t", "ingress", "2", "1"])?;
    let l = lab.ctl_json(&["acl", "list", "t"])?;
    ensure!(actions(&l) == ["deny", "allow"], "after move 2 1: {l}");
    let denied = lab.drop_count(&h1.port, "acl_deny")?;
    let s = lab.ping(&h1, &h2.ip, 4)?;
    ensure!(
        s.transmitted == 4 && s.received == 0,
        "pings passed although the deny rule is now first: {s:?}"
    );
    lab.expect_drops(&h1.port, "acl_deny", denied, 4)?;
    let moved = lab.ctl_json(&["acl", "list", "t"])?;
    ensure!(
        hits(&rules(&moved, "ingress")[0]) - hits(&rules(&l, "ingress")[0]) == 4,
        "the deny rule now first did not count the 4 requests: {moved}"
    );

    lab.ctl_ok(&["acl", "move", "t", "ingress", "1", "2"])?;
    lab.ping_all(&h1, &h2, 3)?;
    Ok(())
}
