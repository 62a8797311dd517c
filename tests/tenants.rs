//! Tenants: isolated L2 domains on one xsw. Two tenants reuse the same IPv4
//! addresses; hosts reach their own tenant only (ping, UDP, ARP), neither
//! unicast nor broadcast crosses over, and the MAC table says which tenant
//! each entry belongs to. Tenant lifecycle through xswctl: create, list,
//! show, moving a port, refusing to delete a tenant in use or `default`.

use anyhow::{ensure, Result};
use serde_json::Value;
use std::time::Duration;
use xsw_integration::frames::{self, ip4};
use xsw_integration::{cmd, lab, normalize, Host, Lab};

fn port_tenant(lab: &Lab, h: &Host) -> Result<Value> {
    let p = lab.port(&h.port)?;
    ensure!(
        p.is_some(),
        "port list lacks {}: {:?}",
        h.port,
        lab.ports()?
    );
    Ok(p.map(|p| p["tenant"].clone()).unwrap_or(Value::Null))
}

fn names(v: &Value) -> Vec<String> {
    let mut n: Vec<String> = v
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|x| x.as_str().map(str::to_string))
        .collect();
    n.sort();
    n
}

fn sorted(v: &[&str]) -> Vec<String> {
    let mut n: Vec<String> = v.iter().map(|s| s.to_string()).collect();
    n.sort();
    n
}

/// `ip neigh` lladdr of `ip` in `h`'s namespace, if any.
fn neighbour_mac(lab: &Lab, h: &Host, ip: &str) -> Result<Option<String>> {
    let out = lab.run_in(
        &h.ns,
        &["ip", "-j", "neigh", "show", ip, "dev", &h.ifname],
        Duration::from_secs(5),
    )?;
    let v: Value = serde_json::from_str(out.stdout.trim()).unwrap_or(Value::Null);
    Ok(v.as_array()
        .and_then(|a| a.first())
        .and_then(|n| n["lladdr"].as_str())
        .map(str::to_lowercase))
}

#[test]
fn tenants_with_overlapping_addresses_stay_isolated() -> Result<()> {
    let lab = lab!("tenants", "tno", 161)?;
    let (ip_x, ip_y) = (lab.ip(1), lab.ip(2));
    // Tenant a: h1 (x), h2 (y). Tenant b: h3 (x), h4 (y): same addresses,
    // other MACs.
    let h1 = lab.add_veth_host_ip("h1", 1, &ip_x)?;
    let h2 = lab.add_veth_host_ip("h2", 2, &ip_y)?;
    let h3 = lab.add_veth_host_ip("h3", 3, &ip_x)?;
    let h4 = lab.add_veth_host_ip("h4", 4, &ip_y)?;
    lab.start_xswd("")?;
    lab.ctl_ok(&["tenant", "create", "a"])?;
    lab.ctl_ok(&["tenant", "create", "b"])?;
    for (h, t) in [(&h1, "a"), (&h2, "a"), (&h3, "b"), (&h4, "b")] {
        lab.ctl_ok(&["port", "add", &h.port, "--tenant", t])?;
        ensure!(
            port_tenant(&lab, h)? == t,
            "port list shows {} in tenant {} after port add --tenant {t}",
            h.port,
            port_tenant(&lab, h)?
        );
    }

    // Same-tenant traffic: ping both ways, UDP checked datagram by datagram.
    lab.wait_reachable(&h1, &h2, Duration::from_secs(5))?;
    lab.wait_reachable(&h3, &h4, Duration::from_secs(5))?;
    for (a, b) in [(&h1, &h2), (&h2, &h1), (&h3, &h4), (&h4, &h3)] {
        lab.ping_all(a, b, 3)?;
    }
    for (a, b) in [(&h1, &h2), (&h4, &h3)] {
        let u = lab.udp_exchange(a, b, 100, 2)?;
        ensure!(
            u.sent == 100 && u.received == 100 && u.corrupt == 0,
            "UDP {} -> {} -> {} within its tenant: {u:?}",
            a.name,
            b.name,
            a.name
        );
    }
    // Address resolution stayed inside each tenant: the twin with the same
    // address in the other tenant would have answered a leaked ARP request.
    for (h, ip, want) in [
        (&h1, &ip_y, &h2),
        (&h2, &ip_x, &h1),
        (&h3, &ip_y, &h4),
        (&h4, &ip_x, &h3),
    ] {
        let got = neighbour_mac(&lab, h, ip)?;
        ensure!(
            got.as_deref() == Some(want.mac.as_str()),
            "{} resolved {ip} to {got:?}, expected {} ({}) of its own tenant",
            h.name,
            want.mac,
            want.name
        );
    }

    // Broadcast: h1's ARP requests reach h2, never tenant b; a raw broadcast
    // from h4 reaches h3, never tenant a.
    let ghost = lab.ip(200);
    let f = format!("arp and ether src {}", h1.mac);
    let mut c2 = lab.capture_as(&h2, "arp", &f, 1)?;
    let mut c3 = lab.capture_as(&h3, "arp", &f, 1)?;
    let mut c4 = lab.capture_as(&h4, "arp", &f, 1)?;
    let _ = lab.ping(&h1, &ghost, 2)?;
    let line = lab.expect_frame(
        &mut c2,
        Duration::from_secs(3),
        "h1's ARP broadcast at h2 (tenant a)",
    )?;
    ensure!(line.contains("ff:ff:ff:ff:ff:ff"), "h2 captured {line}");
    lab.expect_silence(
        &mut c3,
        Duration::from_millis(800),
        "h1's (tenant a) ARP broadcast reached h3 (tenant b)",
    )?;
    lab.expect_silence(
        &mut c4,
        Duration::from_millis(200),
        "h1's (tenant a) ARP broadcast reached h4 (tenant b)",
    )?;

    let src = lab.mac(0x41);
    let bcast = frames::eth(
        "ff:ff:ff:ff:ff:ff",
        &src,
        &[],
        frames::ETH_EXPERIMENTAL,
        b"tenant b broadcast",
    );
    let f = format!("ether src {src}");
    let mut c3 = lab.capture_as(&h3, "raw", &f, 1)?;
    let mut c1 = lab.capture_as(&h1, "raw", &f, 1)?;
    let mut c2 = lab.capture_as(&h2, "raw", &f, 1)?;
    lab.raw_send(&h4, &bcast, 3)?;
    lab.expect_frame(
        &mut c3,
        Duration::from_secs(3),
        "h4's broadcast at h3 (tenant b)",
    )?;
    lab.expect_silence(
        &mut c1,
        Duration::from_millis(800),
        "h4's (tenant b) broadcast reached h1 (tenant a)",
    )?;
    lab.expect_silence(
        &mut c2,
        Duration::from_millis(200),
        "h4's (tenant b) broadcast reached h2 (tenant a)",
    )?;

    // Unicast to the other tenant's MAC: h1 addresses h4's MAC directly, by
    // a static neighbour entry (ping) and by a hand-made UDP frame.
    let ghost = lab.ip(99);
    cmd::ns_ok(
        &h1.ns,
        &[
            "ip",
            "neigh",
            "replace",
            &ghost,
            "lladdr",
            &h4.mac,
            "dev",
            &h1.ifname,
            "nud",
            "permanent",
        ],
    )?;
    let f = format!("ether dst {} and ether src {}", h4.mac, h1.mac);
    let mut c4 = lab.capture_as(&h4, "ucast", &f, 1)?;
    let before = lab.port_stats(&h1.port)?;
    let s = lab.ping(&h1, &ghost, 3)?;
    ensure!(
        s.transmitted == 3,
        "ping did not send its 3 requests: {s:?}"
    );
    let udp = frames::ipv4_udp(ip4(&ip_x), ip4(&ip_y), 40000, 9, b"to the other tenant");
    lab.raw_send(
        &h1,
        &frames::eth(&h4.mac, &h1.mac, &[], frames::ETH_IPV4, &udp),
        3,
    )?;
    lab.expect_silence(
        &mut c4,
        Duration::from_millis(800),
        "unicast from h1 (tenant a) to h4's MAC (tenant b) arrived at h4",
    )?;
    let after = lab.port_stats(&h1.port)?;
    ensure!(
        after.rx_frames >= before.rx_frames + 6,
        "xsw did not even receive h1's 6 frames for h4's MAC ({before:?} -> {after:?})"
    );

    // The MAC table: every host once, on its port, in its tenant.
    let fdb = lab.fdb()?;
    for (h, t) in [(&h1, "a"), (&h2, "a"), (&h3, "b"), (&h4, "b")] {
        let e: Vec<&Value> = fdb
            .iter()
            .filter(|e| {
                e["mac"]
                    .as_str()
                    .is_some_and(|m| m.eq_ignore_ascii_case(&h.mac))
            })
            .collect();
        ensure!(
            e.len() == 1 && e[0]["port"] == h.port.as_str() && e[0]["tenant"] == t,
            "fdb show: expected one entry for {} ({}) on {} in tenant {t}, got {e:?}",
            h.name,
            h.mac,
            h.port
        );
    }
    let fa = lab.ctl_json(&["fdb", "show", "--tenant", "a"])?;
    let macs: Vec<String> = fa
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            ensure!(e["tenant"] == "a", "fdb show --tenant a lists {e}");
            Ok(e["mac"].as_str().unwrap_or("").to_lowercase())
        })
        .collect::<Result<_>>()?;
    ensure!(
        macs.contains(&h1.mac)
            && macs.contains(&h2.mac)
            && !macs.contains(&h3.mac)
            && !macs.contains(&h4.mac),
        "fdb show --tenant a: {fa}"
    );
    ensure!(lab.xswd_running(), "xswd exited");
    Ok(())
}

#[test]
fn tenant_lifecycle_create_move_and_delete() -> Result<()> {
    let lab = lab!("tenantlc", "tnl", 162)?;
    let h1 = lab.add_veth_host("h1", 1)?;
    let h2 = lab.add_veth_host("h2", 2)?;
    let h3 = lab.add_veth_host("h3", 3)?;
    lab.start_xswd("")?;

    let t = lab.tenants()?;
    ensure!(
        t.len() == 1 && t[0]["name"] == "default" && t[0]["id"] == 0,
        "a fresh xswd should list only tenant default (id 0): {t:?}"
    );
    lab.ctl_ok(&["tenant", "create", "a"])?;
    lab.ctl_ok(&["tenant", "create", "b"])?;
    let before = normalize(&Value::Array(lab.tenants()?));
    let e = lab.ctl_err(&["tenant", "create", "a"])?;
    ensure!(
        e.stderr.contains("tenant a already exists"),
        "creating tenant a twice: {}",
        e.describe()
    );
    let too_long = "t".repeat(33);
    for bad in ["bad/name", "", too_long.as_str(), "sp ace"] {
        lab.ctl_err(&["tenant", "create", bad])?;
    }
    ensure!(
        normalize(&Value::Array(lab.tenants()?)) == before,
        "refused tenant creations changed tenant list: {before} -> {:?}",
        lab.tenants()?
    );
    let (a, b) = (lab.tenant("a")?, lab.tenant("b")?);
    let (a, b) = (a.unwrap_or_default(), b.unwrap_or_default());
    ensure!(
        a["id"].as_u64().is_some_and(|i| i > 0)
            && b["id"].as_u64().is_some_and(|i| i > 0)
            && a["id"] != b["id"],
        "tenants a and b need distinct ids other than 0: {a} {b}"
    );
    let show = lab.ctl_json(&["tenant", "show", "a"])?;
    ensure!(
        show["name"] == "a"
            && show["id"] == a["id"]
            && show["ports"].as_array().is_some_and(|p| p.is_empty())
            && show["acl"]["ingress"]["default"] == "allow"
            && show["acl"]["ingress"]["rules"] == 0
            && show["acl"]["egress"]["default"] == "allow"
            && show["acl"]["egress"]["rules"] == 0,
        "tenant show a --json of a new tenant: {show}"
    );
    lab.ctl_err(&["tenant", "show", "nosuch"])?;

    // An unknown tenant refuses the port and changes nothing.
    let ports_before = lab.ports()?;
    lab.ctl_err(&["port", "add", &h1.port, "--tenant", "nosuch"])?;
    ensure!(
        lab.ports()? == ports_before,
        "port add --tenant nosuch changed the port list: {:?}",
        lab.ports()?
    );
    lab.ctl_ok(&["port", "add", &h1.port, "--tenant", "a"])?;
    lab.ctl_ok(&["port", "add", &h2.port, "--tenant", "a"])?;
    lab.ctl_ok(&["port", "add", &h3.port, "--tenant", "b"])?;
    for (h, t) in [(&h1, "a"), (&h2, "a"), (&h3, "b")] {
        ensure!(
            port_tenant(&lab, h)? == t,
            "port list: {} not in {t}: {:?}",
            h.port,
            lab.port(&h.port)?
        );
    }
    let a = lab.tenant("a")?.unwrap_or_default();
    ensure!(
        names(&a["ports"]) == sorted(&[&h1.port, &h2.port]),
        "tenant list: a should have ports {} and {}: {a}",
        h1.port,
        h2.port
    );
    let show = lab.ctl_json(&["tenant", "show", "b"])?;
    ensure!(
        names(&show["ports"]) == sorted(&[&h3.port]),
        "tenant show b: {show}"
    );

    lab.wait_reachable(&h1, &h2, Duration::from_secs(5))?;
    let s = lab.ping(&h1, &h3.ip, 2)?;
    ensure!(
        s.received == 0,
        "h1 (tenant a) reached h3 (tenant b): {s:?}"
    );

    // Moving h1 to b: it reaches b's host, and no longer a's.
    lab.ctl_ok(&["port", "set", &h1.port, "--tenant", "b"])?;
    ensure!(
        port_tenant(&lab, &h1)? == "b",
        "port set --tenant b: {:?}",
        lab.port(&h1.port)?
    );
    lab.wait_reachable(&h1, &h3, Duration::from_secs(5))?;
    lab.ping_all(&h1, &h3, 3)?;
    lab.ping_all(&h3, &h1, 3)?;
    let s = lab.ping(&h1, &h2.ip, 2)?;
    ensure!(
        s.received == 0,
        "h1, moved to tenant b, still reaches h2 (tenant a): {s:?}"
    );
    let s = lab.ping(&h2, &h1.ip, 2)?;
    ensure!(
        s.received == 0,
        "h2 (tenant a) still reaches h1, moved to tenant b: {s:?}"
    );
    let e1 = lab.fdb_entries(&h1.mac)?;
    ensure!(
        !e1.is_empty() && e1.iter().all(|e| e["tenant"] == "b"),
        "fdb after the move: {} should only be known in tenant b: {e1:?}",
        h1.mac
    );
    let (a, b) = (
        lab.tenant("a")?.unwrap_or_default(),
        lab.tenant("b")?.unwrap_or_default(),
    );
    ensure!(
        names(&a["ports"]) == sorted(&[&h2.port])
            && names(&b["ports"]) == sorted(&[&h1.port, &h3.port]),
        "tenant list after moving {} to b: {a} {b}",
        h1.port
    );

    // Delete refused while ports remain; the message names them.
    let before = normalize(&Value::Array(lab.tenants()?));
    let e = lab.ctl_err(&["tenant", "delete", "b"])?;
    ensure!(
        e.stderr.contains("still has ports")
            && e.stderr.contains(&h1.port)
            && e.stderr.contains(&h3.port),
        "tenant delete b (ports {} and {}): {}",
        h1.port,
        h3.port,
        e.describe()
    );
    let e = lab.ctl_err(&["tenant", "delete", "a"])?;
    ensure!(
        e.stderr.contains(&h2.port),
        "tenant delete a (port {}): {}",
        h2.port,
        e.describe()
    );
    lab.ctl_err(&["tenant", "delete", "default"])?;
    lab.ctl_err(&["tenant", "delete", "nosuch"])?;
    ensure!(
        normalize(&Value::Array(lab.tenants()?)) == before,
        "refused deletes changed the tenant list: {before} -> {:?}",
        lab.tenants()?
    );

    // Once empty, b can go; default never.
    lab.ctl_ok(&["port", "del", &h1.port])?;
    lab.ctl_ok(&["port", "set", &h3.port, "--tenant", "default"])?;
    lab.ctl_ok(&["tenant", "delete", "b"])?;
    ensure!(
        lab.tenant("b")?.is_none(),
        "tenant b still listed after delete: {:?}",
        lab.tenants()?
    );
    lab.ctl_ok(&["port", "set", &h2.port, "--tenant", "default"])?;
    lab.ctl_ok(&["tenant", "delete", "a"])?;
    let t = lab.tenants()?;
    ensure!(
        t.len() == 1 && t[0]["name"] == "default",
        "after deleting a and b: {t:?}"
    );
    ensure!(
        names(&t[0]["ports"]) == sorted(&[&h2.port, &h3.port]),
        "default should now hold {} and {}: {t:?}",
        h2.port,
        h3.port
    );
    lab.ctl_err(&["tenant", "delete", "default"])?;
    ensure!(lab.tenant("default")?.is_some(), "default was deleted");
    // h2 and h3, both in default now, reach each other.
    lab.wait_reachable(&h2, &h3, Duration::from_secs(5))?;
    lab.ping_all(&h3, &h2, 3)?;
    Ok(())
}

#[test]
fn a_config_file_sets_up_tenants_trunks_guards_and_acls() -> Result<()> {
    let lab = lab!("tenantcf", "tnc", 171)?;
    let h1 = lab.add_veth_host("h1", 1)?;
    let h2 = lab.add_veth_host("h2", 2)?;
    let trunk = lab.add_veth_host("tr", 3)?;
    let config = format!(
        r#"
[[tenant]]
name = "web"
ingress_default = "allow"
[[tenant.ingress]]
action = "deny"
proto = "tcp"
dport = "25"

[[port]]
name = "{h1}"
tenant = "web"
[port.antispoof]
macs = ["{h1_mac}"]
ipv4 = ["{h1_ip}/32"]

[[port]]
name = "{h2}"
tenant = "web"

[[port]]
name = "{trunk}"
trunk = true
vlans = [{{ vlan = 100, tenant = "web" }}]
"#,
        h1 = h1.port,
        h2 = h2.port,
        trunk = trunk.port,
        h1_mac = h1.mac,
        h1_ip = h1.ip,
    );
    lab.start_xswd(&config)?;

    let web = lab.ctl_json(&["tenant", "show", "web"])?;
    ensure!(
        sorted(&[&h1.port, &h2.port]) == names(&web["ports"]),
        "tenant web after startup: {web}"
    );
    ensure!(web["vlans"][0]["vlan"] == 100, "trunk VLAN missing: {web}");
    let acl = lab.ctl_json(&["acl", "list", "web"])?;
    ensure!(
        acl["ingress"]["rules"][0]["dport"] == "25",
        "ACL missing: {acl}"
    );
    let h1_row = lab.port(&h1.port)?.unwrap_or(Value::Null);
    ensure!(
        h1_row["antispoof"]["macs"][0] == h1.mac.as_str(),
        "guard missing: {h1_row}"
    );
    lab.wait_reachable(&h1, &h2, Duration::from_secs(5))?;
    lab.ping_all(&h1, &h2, 2)?;

    // The loaded ACL decides: TCP to port 25 is denied, another port passes.
    let denied = lab.drop_count(&h1.port, "acl_deny")?;
    let smtp = lab.tcp_try(&h1, &h2, &h2.ip, 25, 2)?;
    ensure!(
        !smtp.connected,
        "the config's deny tcp/25 let TCP through: {}",
        smtp.detail
    );
    ensure!(
        lab.drop_count(&h1.port, "acl_deny")? > denied,
        "TCP to port 25 was not counted as acl_deny on {}",
        h1.port
    );
    let other = lab.tcp_try(&h1, &h2, &h2.ip, 8025, 4)?;
    ensure!(
        other.connected,
        "TCP to port 8025 should pass: {}",
        other.detail
    );

    // The loaded guard decides: h1 may not send from another IPv4 address.
    let forged = frames::eth(
        "ff:ff:ff:ff:ff:ff",
        &h1.mac,
        &[],
        frames::ETH_IPV4,
        &frames::ipv4_udp(
            frames::ip4(&lab.ip(77)),
            frames::ip4(&h2.ip),
            4000,
            4000,
            b"forged",
        ),
    );
    let spoofed = lab.drop_count(&h1.port, "spoofed_ip")?;
    let mut at_h2 = lab.capture_as(&h2, "forged", "udp port 4000", 1)?;
    lab.raw_send(&h1, &forged, 3)?;
    lab.expect_drops(&h1.port, "spoofed_ip", spoofed, 3)?;
    lab.expect_silence(
        &mut at_h2,
        Duration::from_millis(500),
        "a forged source IP from h1 reached h2",
    )?;

    // The loaded trunk carries web on VID 100 both ways: a station behind it
    // reaches h2 untagged, and h2's reply leaves the trunk tagged 100.
    let st_mac = lab.mac(100);
    let st_ip = lab.ip(100);
    let req = frames::arp(
        1,
        &st_mac,
        frames::ip4(&st_ip),
        "00:00:00:00:00:00",
        frames::ip4(&h2.ip),
    );
    let frame = frames::eth(
        "ff:ff:ff:ff:ff:ff",
        &st_mac,
        &[(frames::TPID_8021Q, 100)],
        frames::ETH_ARP,
        &req,
    );
    let mut at_h2 = lab.capture_as(&h2, "trunk-in", &format!("ether src {st_mac}"), 1)?;
    let mut reply = lab.capture_as(
        &trunk,
        "trunk-out",
        &format!("ether src {} and ether dst {st_mac}", h2.mac),
        1,
    )?;
    lab.raw_send(&trunk, &frame, 1)?;
    let line = lab.expect_frame(&mut at_h2, Duration::from_secs(3), "ARP from VID 100 at h2")?;
    ensure!(
        !line.contains("vlan"),
        "h2 got the trunk's frame tagged: {line}"
    );
    let line = lab.expect_frame(
        &mut reply,
        Duration::from_secs(3),
        "h2's ARP reply on the trunk",
    )?;
    ensure!(
        line.contains("vlan 100,") && line.contains("Reply"),
        "h2's reply should leave the trunk tagged 100: {line}"
    );
    Ok(())
}

/// A guest spraying random source MACs fills the MAC table; afterwards hosts
/// of another tenant, and the sprayer's own tenant-mates, are still learned
/// (the table makes room from the port holding the most entries), and the
/// evictions are counted on the sprayer's port.
#[test]
fn a_port_spraying_source_macs_cannot_keep_others_from_learning() -> Result<()> {
    let lab = lab!("fdbfair", "tnf", 172)?;
    let s1 = lab.add_veth_host("s1", 1)?;
    let a2 = lab.add_veth_host("a2", 2)?;
    let a3 = lab.add_veth_host("a3", 3)?;
    let b1 = lab.add_veth_host("b1", 4)?;
    let b2 = lab.add_veth_host("b2", 5)?;
    let mut config = String::from(
        "[dataplane]\nfdb_capacity = 256\n\n[[tenant]]\nname = \"a\"\n\n[[tenant]]\nname = \"b\"\n",
    );
    for (h, t) in [(&s1, "a"), (&a2, "a"), (&a3, "a"), (&b1, "b"), (&b2, "b")] {
        config.push_str(&format!(
            "\n[[port]]\nname = \"{}\"\ntenant = \"{t}\"\n",
            h.port
        ));
    }
    lab.start_xswd(&config)?;

    // 2,000 frames from 1,000 source MACs: four times the table.
    let spray = frames::eth(
        "ff:ff:ff:ff:ff:ff",
        "02:5a:00:00:00:00",
        &[],
        frames::ETH_EXPERIMENTAL,
        &[0; 46],
    );
    lab.raw_send_from_many(&s1, &spray, 2_000, 1_000, 1)?;
    let status = lab.ctl_json(&["status"])?;
    ensure!(
        status["fdb_entries"].as_u64().unwrap_or(0) >= 250 && status["fdb_full"] == true,
        "the spray did not fill the table (or status does not say so): {status}"
    );

    lab.wait_reachable(&b1, &b2, Duration::from_secs(5))?;
    lab.wait_reachable(&a2, &a3, Duration::from_secs(5))?;
    for h in [&a2, &a3, &b1, &b2] {
        ensure!(
            !lab.fdb_entries(&h.mac)?.is_empty(),
            "{} ({}) was not learned after the spray: {:?}",
            h.name,
            h.mac,
            lab.fdb()?.len()
        );
    }
    let stats = lab.stats()?;
    let evicted = stats["ports"]
        .as_array()
        .and_then(|ports| ports.iter().find(|p| p["name"] == s1.port.as_str()))
        .and_then(|p| p["learning_evicted"].as_u64())
        .unwrap_or(0);
    ensure!(
        evicted >= 700,
        "the sprayer's port should count the evictions its spray caused (about 750): {evicted}"
    );
    Ok(())
}
