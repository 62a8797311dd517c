//! `xswctl trace` against the running switch: for a set of real frames
//! (allowed to a known MAC, ACL-denied, spoofed, flooded, trunk-tagged,
//! of an unknown VLAN) the trace's verdict is what the data plane then does
//! with the same frame, sent for real (drop counters, captures at every
//! other port); a trace changes no counter and learns nothing; a delegated
//! user traces only frames entering their own tenant's ports; bad input is
//! refused with a clear error and changes nothing.

use anyhow::{ensure, Result};
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;
use xsw_integration::users::TestUser;
use xsw_integration::{frames, lab, Host, Lab};

/// Everything a trace must leave as it was: every port's frame and drop
/// counters, the tenant's ACL hits, the MAC table.
fn observable(lab: &Lab) -> Result<Value> {
    let stats = lab.stats()?;
    let ports: Vec<Value> = stats["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            json!([
                p["name"],
                p["rx_frames"],
                p["tx_frames"],
                p["switched"],
                p["ingress_drops"],
                p["egress_drops"]
            ])
        })
        .collect();
    let mut fdb: Vec<Value> = lab
        .fdb()?
        .into_iter()
        .map(|e| json!([e["mac"], e["port"], e["tenant"], e["static"]]))
        .collect();
    fdb.sort_by_key(|e| e.to_string());
    let acl = lab.ctl_json(&["acl", "list", "t"])?;
    Ok(json!({ "ports": ports, "fdb": fdb, "acl": acl }))
}

/// Traces `frame` entering `h`'s port (as hex), checking that the trace
/// changed nothing observable.
fn trace(lab: &Lab, h: &Host, frame: &[u8]) -> Result<Value> {
    std::thread::sleep(Duration::from_millis(200));
    let before = observable(lab)?;
    let traced = lab.ctl_json(&["trace", &h.port, "--hex", &frames::hex(frame)])?;
    let after = observable(lab)?;
    ensure!(
        before == after,
        "a trace changed the switch:\nbefore {before}\nafter  {after}\ntrace {traced}"
    );
    Ok(traced)
}

/// Sends `frame` from `from` for real and checks the data plane did what
/// `traced` said: the drop counted under its reason on the ingress port, or
/// the frame seen at exactly the ports it was delivered to (the others
/// stay silent). `marker`: a tcpdump filter that matches only this frame.
fn send_and_compare(
    lab: &Lab,
    from: &Host,
    frame: &[u8],
    traced: &Value,
    others: &[&Host],
    marker: &str,
) -> Result<()> {
    let mut captures = Vec::new();
    for (i, h) in others.iter().enumerate() {
        // A label of its own per capture: a reused label appends to an earlier log.
        let label = format!("trace{i}-{}", frames::hex(&frame[..frame.len().min(20)]));
        captures.push((h, lab.capture_as(h, &label, marker, 1)?));
    }
    let reason = traced["reason"].as_str().map(str::to_string);
    let before = match &reason {
        Some(r) => lab.drop_count(&from.port, r)?,
        None => 0,
    };
    let refusals: Vec<(String, String)> = traced["egress"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| {
            Some((
                e["port"].as_str()?.to_string(),
                e["reason"].as_str()?.to_string(),
            ))
        })
        .collect();
    let mut refused_before = Vec::new();
    for (port, reason) in &refusals {
        refused_before.push(egress_drops(lab, port, reason)?);
    }
    lab.raw_send(from, frame, 1)?;
    if let Some(r) = &reason {
        lab.expect_drops(&from.port, r, before, 1)?;
    }
    for ((port, reason), before) in refusals.iter().zip(refused_before) {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while egress_drops(lab, port, reason)? != before + 1 {
            ensure!(
                std::time::Instant::now() < deadline,
                "the trace said {port} refuses the copy ({reason}); egress_drops.{reason} went {before} -> {}",
                egress_drops(lab, port, reason)?
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let delivered: Vec<&str> = traced["delivered_to"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    for (h, cap) in &mut captures {
        if delivered.contains(&h.port.as_str()) {
            lab.expect_frame(
                cap,
                Duration::from_secs(3),
                &format!("the traced frame at {}", h.port),
            )?;
        } else {
            lab.expect_silence(
                cap,
                Duration::from_millis(500),
                &format!("the trace said {} gets nothing", h.port),
            )?;
        }
    }
    Ok(())
}

/// Copies `port` refused for `reason` (`egress_drops` in `stats`).
fn egress_drops(lab: &Lab, port: &str, reason: &str) -> Result<u64> {
    let stats = lab.stats()?;
    Ok(stats["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == port)
        .and_then(|p| p["egress_drops"][reason].as_u64())
        .unwrap_or(0))
}

fn stage<'a>(traced: &'a Value, name: &str) -> &'a Value {
    traced["stages"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["stage"] == name))
        .unwrap_or(&Value::Null)
}

#[test]
fn a_trace_says_what_the_data_plane_does_and_changes_nothing() -> Result<()> {
    let lab = lab!("trace", "trc", 236)?;
    std::fs::set_permissions(&lab.dir, std::fs::Permissions::from_mode(0o755))?;
    let h1 = lab.add_veth_host("h1", 1)?;
    let h2 = lab.add_veth_host("h2", 2)?;
    let h3 = lab.add_veth_host("h3", 3)?; // tenant u
    let tr = lab.add_veth_host("tr", 4)?; // trunk: VID 100 is tenant t
    lab.start_xswd("[[tenant]]\nname = \"t\"\n\n[[tenant]]\nname = \"u\"\n")?;
    lab.ctl_ok(&["port", "add", &h1.port, "--tenant", "t"])?;
    lab.ctl_ok(&["port", "add", &h2.port, "--tenant", "t"])?;
    lab.ctl_ok(&["port", "add", &h3.port, "--tenant", "u"])?;
    lab.ctl_ok(&["port", "add", &tr.port, "--trunk"])?;
    lab.ctl_ok(&["vlan", "add", &tr.port, "100", "t"])?;
    lab.ctl_ok(&[
        "antispoof",
        "set",
        &h1.port,
        "--mac",
        &h1.mac,
        "--ip",
        &h1.ip,
    ])?;
    lab.ctl_ok(&[
        "acl", "add", "t", "ingress", "deny", "--proto", "udp", "--dport", "53",
    ])?;
    lab.wait_reachable(&h1, &h2, Duration::from_secs(5))?;
    let (ip1, ip2) = (frames::ip4(&h1.ip), frames::ip4(&h2.ip));
    let others_of_h1 = [&h2, &h3, &tr];

    // Allowed, to a known MAC: forwarded to h2 alone.
    let udp = |dport: u16, src_mac: &str, dst_mac: &str| {
        frames::eth(
            dst_mac,
            src_mac,
            &[],
            frames::ETH_IPV4,
            &frames::ipv4_udp(ip1, ip2, 40000, dport, b"xsw trace"),
        )
    };
    let frame = udp(7, &h1.mac, &h2.mac);
    let traced = trace(&lab, &h1, &frame)?;
    ensure!(
        traced["result"] == "forward" && traced["delivered_to"] == json!([h2.port]),
        "{traced}"
    );
    ensure!(
        stage(&traced, "acl_ingress")["rule"] == "default",
        "{traced}"
    );
    ensure!(
        stage(&traced, "mac_lookup")["detail"]
            .as_str()
            .unwrap_or("")
            .contains(&format!("learned on {}", h2.port)),
        "{traced}"
    );
    ensure!(
        traced["fast_path"]["taken"] == true && traced["fast_path"]["key_width"] == "l3",
        "a forward to a learned port in a tenant with ACLs takes an L3 flow entry: {traced}"
    );
    let entries = |lab: &Lab| -> Result<usize> {
        let flows = lab.ctl_json(&["flows"])?;
        Ok(flows["flows"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|f| {
                f["in"] == h1.port.as_str() && f["out"] == h2.port.as_str() && f["width"] == "l3"
            })
            .count())
    };
    let flows_before = entries(&lab)?;
    let marker = format!("ether src {} and udp port 7", h1.mac);
    send_and_compare(&lab, &h1, &frame, &traced, &others_of_h1, &marker)?;
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while entries(&lab)? == flows_before {
        ensure!(
            std::time::Instant::now() < deadline,
            "the trace promised a flow entry h1 → h2, none was installed: {}",
            lab.ctl_json(&["flows"])?
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // Denied by the tenant's ingress rule 1.
    let frame = udp(53, &h1.mac, &h2.mac);
    let traced = trace(&lab, &h1, &frame)?;
    ensure!(
        traced["reason"] == "acl_deny" && stage(&traced, "acl_ingress")["rule"] == 1,
        "{traced}"
    );
    ensure!(
        stage(&traced, "mac_lookup")["result"] == "not_reached",
        "{traced}"
    );
    send_and_compare(
        &lab,
        &h1,
        &frame,
        &traced,
        &others_of_h1,
        &format!("ether src {} and udp port 53", h1.mac),
    )?;

    // A source MAC not h1's: the anti-spoofing guard drops it.
    let spoofed = lab.mac(60);
    let frame = udp(7, &spoofed, &h2.mac);
    let traced = trace(&lab, &h1, &frame)?;
    ensure!(
        traced["reason"] == "spoofed_mac" && stage(&traced, "antispoof")["result"] == "drop",
        "{traced}"
    );
    send_and_compare(
        &lab,
        &h1,
        &frame,
        &traced,
        &others_of_h1,
        &format!("ether src {spoofed}"),
    )?;

    // To an unknown MAC: flooded to h2 and, tagged with VID 100, the trunk; never to u's h3.
    let unknown = lab.mac(70);
    let frame = udp(9, &h1.mac, &unknown);
    let traced = trace(&lab, &h1, &frame)?;
    ensure!(traced["result"] == "flood", "{traced}");
    let mut delivered: Vec<&str> = traced["delivered_to"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    delivered.sort_unstable();
    let mut expected = vec![h2.port.as_str(), tr.port.as_str()];
    expected.sort_unstable();
    ensure!(delivered == expected, "{traced}");
    ensure!(
        traced["egress"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|e| e["port"] == tr.port.as_str() && e["tag"] == "push VID 100"),
        "{traced}"
    );
    ensure!(
        stage(&traced, "storm_control")["result"] == "pass",
        "{traced}"
    );
    send_and_compare(
        &lab,
        &h1,
        &frame,
        &traced,
        &others_of_h1,
        &format!("ether dst {unknown}"),
    )?;

    // h2 takes only frames for its own MAC: its copy of the flood is refused
    // (not_for_port, counted on h2), the trunk still gets one.
    lab.ctl_ok(&[
        "antispoof",
        "set",
        &h2.port,
        "--mac",
        &h2.mac,
        "--restrict-to-port",
    ])?;
    let unknown = lab.mac(71);
    let frame = udp(9, &h1.mac, &unknown);
    let traced = trace(&lab, &h1, &frame)?;
    ensure!(
        traced["egress"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|e| e["port"] == h2.port.as_str() && e["reason"] == "not_for_port")
            && traced["delivered_to"] == json!([tr.port]),
        "{traced}"
    );
    send_and_compare(
        &lab,
        &h1,
        &frame,
        &traced,
        &others_of_h1,
        &format!("ether dst {unknown}"),
    )?;
    lab.ctl_ok(&["antispoof", "clear", &h2.port])?;

    // Tagged VID 100 on the trunk, to h1: tenant t, forwarded with the tag popped.
    let station = lab.mac(80);
    let tagged = frames::eth(
        &h1.mac,
        &station,
        &[(frames::TPID_8021Q, 100)],
        frames::ETH_EXPERIMENTAL,
        b"xsw trace trunk",
    );
    let traced = trace(&lab, &tr, &tagged)?;
    ensure!(
        traced["tenant"] == "t"
            && stage(&traced, "tenant")["detail"]
                .as_str()
                .unwrap_or("")
                .contains("VID 100"),
        "{traced}"
    );
    ensure!(traced["delivered_to"] == json!([h1.port]), "{traced}");
    ensure!(traced["egress"][0]["tag"] == "pop", "{traced}");
    send_and_compare(
        &lab,
        &tr,
        &tagged,
        &traced,
        &[&h1, &h2, &h3],
        &format!("ether src {station}"),
    )?;

    // An unknown VID: vlan_unknown on the trunk.
    let stray = frames::eth(
        &h1.mac,
        &station,
        &[(frames::TPID_8021Q, 200)],
        frames::ETH_EXPERIMENTAL,
        b"xsw trace vid",
    );
    let traced = trace(&lab, &tr, &stray)?;
    ensure!(
        traced["reason"] == "vlan_unknown" && stage(&traced, "tenant")["result"] == "drop",
        "{traced}"
    );
    send_and_compare(
        &lab,
        &tr,
        &stray,
        &traced,
        &[&h1, &h2, &h3],
        &format!("ether src {station}"),
    )?;

    // Storm control: h2 may flood 1 broadcast a second (its bucket holds 16).
    // Traces take no token: after 40 traced broadcasts a real one still passes.
    lab.ctl_ok(&["storm", "set", "--port", &h2.port, "--broadcast", "1"])?;
    std::thread::sleep(Duration::from_secs(1));
    let bcast = frames::eth(
        "ff:ff:ff:ff:ff:ff",
        &h2.mac,
        &[],
        frames::ETH_EXPERIMENTAL,
        b"xsw trace storm",
    );
    for _ in 0..40 {
        let traced = lab.ctl_json(&["trace", &h2.port, "--hex", &frames::hex(&bcast)])?;
        ensure!(
            traced["result"] == "flood",
            "a traced broadcast was refused: {traced}"
        );
    }
    let traced = trace(&lab, &h2, &bcast)?;
    ensure!(
        stage(&traced, "storm_control")["result"] == "pass",
        "{traced}"
    );
    send_and_compare(
        &lab,
        &h2,
        &bcast,
        &traced,
        &[&h1, &h3, &tr],
        &format!("ether src {} and ether broadcast", h2.mac),
    )?;
    // Real broadcasts do take tokens: right after a burst that empties the
    // bucket (refilled at one frame a second), the trace says it is empty too.
    let storm_before = lab.drop_count(&h2.port, "storm_broadcast")?;
    lab.raw_send_from_many(&h2, &bcast, 40, 1, 0)?;
    let traced = lab.ctl_json(&["trace", &h2.port, "--hex", &frames::hex(&bcast)])?;
    ensure!(
        traced["reason"] == "storm_broadcast"
            && stage(&traced, "storm_control")["result"] == "drop",
        "right after a burst of 40 the bucket is empty: {traced}"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while lab.drop_count(&h2.port, "storm_broadcast")? == storm_before {
        ensure!(
            std::time::Instant::now() < deadline,
            "40 broadcasts at once never met the storm limit"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    lab.ctl_ok(&["storm", "set", "--port", &h2.port, "--broadcast", "0"])?;

    // A trace from a source the switch has never seen learns nothing.
    let fresh = lab.mac(90);
    let traced = lab.ctl_json(&[
        "trace",
        &h2.port,
        "--src-mac",
        &fresh,
        "--proto",
        "udp",
        "--dport",
        "9",
    ])?;
    ensure!(traced["result"] == "flood", "{traced}");
    ensure!(
        stage(&traced, "mac_lookup")["detail"]
            .as_str()
            .unwrap_or("")
            .contains(&format!("would learn {fresh}")),
        "{traced}"
    );
    std::thread::sleep(Duration::from_millis(300));
    ensure!(
        lab.fdb_entries(&fresh)?.is_empty(),
        "the trace learned {fresh}: {:?}",
        lab.fdb()?
    );
    let text = lab.ctl_ok(&[
        "trace",
        &h1.port,
        "--src-mac",
        &h1.mac,
        "--dst-mac",
        &h2.mac,
        "--src-ip",
        &h1.ip,
        "--dst-ip",
        &h2.ip,
        "--proto",
        "udp",
        "--dport",
        "53",
    ])?;
    ensure!(
        text.contains("acl_ingress") && text.contains("[acl_deny]") && text.contains("rule 1"),
        "{text}"
    );

    // Bad input: a clear error, nothing changed.
    let before = observable(&lab)?;
    for (args, expected) in [
        (vec!["trace", "nosuch"], "no attached port named nosuch"),
        (
            vec!["trace", h1.port.as_str(), "--sport", "5"],
            "--sport needs --proto tcp or udp",
        ),
        (
            vec!["trace", h1.port.as_str(), "--proto", "icmp", "--dport", "5"],
            "--dport needs --proto tcp or udp",
        ),
        (
            vec!["trace", h1.port.as_str(), "--vlan", "100"],
            "access port",
        ),
        (vec!["trace", tr.port.as_str()], "--vlan"),
        (
            vec![
                "trace",
                h1.port.as_str(),
                "--src-ip",
                "10.0.0.1",
                "--dst-ip",
                "fd00::1",
            ],
            "one family",
        ),
        (
            vec!["trace", h1.port.as_str(), "--hex", "ff:ff:zz"],
            "not a hex digit",
        ),
        (
            vec!["trace", h1.port.as_str(), "--hex", "ffff", "--vlan", "3"],
            "leave out --vlan",
        ),
        (
            vec!["trace", h1.port.as_str(), "--src-mac", "nonsense"],
            "--src-mac",
        ),
    ] {
        let out = lab.ctl_err(&args)?;
        ensure!(
            out.stderr.contains(expected),
            "`{}`: expected {expected:?} in: {}",
            args.join(" "),
            out.stderr
        );
    }
    ensure!(
        observable(&lab)? == before,
        "refused traces changed the switch"
    );

    // A delegated user traces frames entering t's ports only.
    let user = TestUser::create(&[])?;
    lab.ctl_ok(&["tenant", "grant", "t", "--uid", &user.uid.to_string()])?;
    let mine = lab.ctl_as_json(
        &user,
        &[
            "trace",
            &h1.port,
            "--src-mac",
            &h1.mac,
            "--src-ip",
            &h1.ip,
            "--dst-mac",
            &h2.mac,
        ],
    )?;
    ensure!(mine["result"] == "forward", "{mine}");
    for port in [&h3.port, &tr.port, &"nosuch".to_string()] {
        let e = lab.ctl_as_denied(&user, &["trace", port])?;
        ensure!(
            e.contains(&format!("no port {port} in your tenants")),
            "{e}"
        );
    }
    Ok(())
}
