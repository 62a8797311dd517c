//! The control plane through the real xswctl: refused requests leave the
//! running switch unchanged, a port whose link is down is accepted and
//! forwards once up, and static FDB entries show as static and steer frames.

use anyhow::{ensure, Result};
use serde_json::Value;
use std::time::{Duration, Instant};
use xsw_integration::{cmd, lab, normalize, Lab};

/// Switch state that a refused request must not change.
fn snapshot(lab: &Lab) -> Result<(Value, Value)> {
    Ok((
        normalize(&Value::Array(lab.ports()?)),
        normalize(&Value::Array(lab.fdb()?)),
    ))
}

#[test]
fn bad_requests_are_refused_and_change_nothing() -> Result<()> {
    let lab = lab!("badinput", "ctb", 15)?;
    let h1 = lab.add_veth_host("h1", 1)?;
    let h2 = lab.add_veth_host("h2", 2)?;
    lab.start_xswd("")?;
    lab.port_add(&h1.port)?;
    lab.port_add(&h2.port)?;
    lab.wait_reachable(&h1, &h2, Duration::from_secs(5))?;
    lab.ctl_ok(&["fdb", "add", "02:78:0f:00:00:63", &h2.port])?;

    let before = snapshot(&lab)?;
    ensure!(
        before.0.as_array().map(Vec::len) == Some(2),
        "expected 2 ports: {}",
        before.0
    );
    ensure!(
        before.1.as_array().map(Vec::len) == Some(3),
        "expected h1, h2 and one static entry: {}",
        before.1
    );

    let missing = format!("{}-nosuch", lab.tag);
    let cases: Vec<(&str, Vec<&str>)> = vec![
        (
            "port add of a missing interface",
            vec!["port", "add", &missing],
        ),
        ("the same port added twice", vec!["port", "add", &h1.port]),
        (
            "fdb add with a bad MAC",
            vec!["fdb", "add", "02:78:zz:00:00:01", &h1.port],
        ),
        (
            "fdb add with a short MAC",
            vec!["fdb", "add", "02:78:0f:00:00", &h1.port],
        ),
        (
            "fdb add to an unknown port",
            vec!["fdb", "add", "02:78:0f:00:00:64", &missing],
        ),
        ("an unknown command", vec!["frobnicate"]),
        ("port del of an unknown port", vec!["port", "del", &missing]),
    ];
    let mut failures = Vec::new();
    for (what, args) in &cases {
        match lab.ctl_err(args) {
            Err(e) => failures.push(format!("{what}: {e:#}")),
            Ok(_) => {
                let after = snapshot(&lab)?;
                if after != before {
                    failures.push(format!(
                        "{what} (xswctl {}) changed the switch:\nbefore: {} {}\nafter:  {} {}",
                        args.join(" "),
                        before.0,
                        before.1,
                        after.0,
                        after.1
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
    // And the switch still forwards.
    lab.ping_all(&h1, &h2, 3)?;
    Ok(())
}

fn link_of(lab: &Lab, port: &str) -> Result<Value> {
    let p = lab.port(port)?;
    ensure!(p.is_some(), "port list lacks {port}: {:?}", lab.ports()?);
    Ok(p.map(|p| p["link"].clone()).unwrap_or(Value::Null))
}

#[test]
fn port_with_link_down_is_accepted_and_forwards_once_up() -> Result<()> {
    let lab = lab!("linkdown", "ctd", 16)?;
    let h1 = lab.add_veth_host("h1", 1)?;
    let h2 = lab.add_veth_host("h2", 2)?;
    cmd::ns_ok(&lab.sw, &["ip", "link", "set", &h2.port, "down"])?;
    lab.start_xswd("")?;
    lab.port_add(&h1.port)?;
    lab.port_add(&h2.port)?;
    ensure!(
        link_of(&lab, &h2.port)? == "down",
        "port list shows {} as {} while it is down",
        h2.port,
        link_of(&lab, &h2.port)?
    );
    ensure!(
        link_of(&lab, &h1.port)? == "up",
        "port list shows {} as {}",
        h1.port,
        link_of(&lab, &h1.port)?
    );

    cmd::ns_ok(&lab.sw, &["ip", "link", "set", &h2.port, "up"])?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while link_of(&lab, &h2.port)? != "up" {
        ensure!(
            Instant::now() < deadline,
            "port list still shows {} as {} 5 s after link up",
            h2.port,
            link_of(&lab, &h2.port)?
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    lab.wait_reachable(&h1, &h2, Duration::from_secs(5))?;
    lab.ping_all(&h1, &h2, 3)?;
    lab.ping_all(&h2, &h1, 3)?;
    Ok(())
}

fn only_entry(lab: &Lab, mac: &str) -> Result<Value> {
    let e = lab.fdb_entries(mac)?;
    ensure!(
        e.len() == 1,
        "fdb show has {} entries for {mac}, expected 1: {:?}",
        e.len(),
        lab.fdb()?
    );
    Ok(e[0].clone())
}

#[test]
fn static_entries_show_as_static_and_steer_frames() -> Result<()> {
    let lab = lab!("static", "cts", 17)?;
    let h1 = lab.add_veth_host("h1", 1)?;
    let h2 = lab.add_veth_host("h2", 2)?;
    let h3 = lab.add_veth_host("h3", 3)?;
    // One static entry from the config file, one added at run time.
    let from_config = "02:78:11:00:00:62";
    let from_ctl = "02:78:11:00:00:63";
    let mut config = Lab::config_with_ports(&[&h1.port, &h2.port, &h3.port]);
    config.push_str(&format!(
        "[[fdb]]\nmac = \"{from_config}\"\nport = \"{}\"\n",
        h3.port
    ));
    lab.start_xswd(&config)?;

    let e = only_entry(&lab, from_config)?;
    ensure!(
        e["static"] == true && e["port"] == h3.port.as_str(),
        "config [[fdb]] entry shows as {e}"
    );

    lab.ctl_ok(&["fdb", "add", from_ctl, &h2.port])?;
    let e = only_entry(&lab, from_ctl)?;
    ensure!(
        e["static"] == true && e["port"] == h2.port.as_str(),
        "fdb add entry shows as {e}"
    );

    // Frames to the static MAC go to h2's port only (no flooding to h3),
    // although no frame from that MAC was ever seen.
    let ghost_ip = format!("198.18.{}.99", lab.net);
    cmd::ns_ok(
        &h1.ns,
        &[
            "ip",
            "neigh",
            "replace",
            &ghost_ip,
            "lladdr",
            from_ctl,
            "dev",
            &h1.ifname,
            "nud",
            "permanent",
        ],
    )?;
    lab.wait_reachable(&h1, &h3, Duration::from_secs(5))?; // the switch forwards at all
    let filter = format!("ether dst {from_ctl}");
    let mut cap_h2 = lab.capture(&h2, &filter, 3)?;
    let mut cap_h3 = lab.capture(&h3, &filter, 1)?;
    let s = lab.ping(&h1, &ghost_ip, 3)?;
    ensure!(s.transmitted == 3, "ping did not send 3 requests: {s:?}");
    for i in 0..3 {
        let line = cap_h2
            .next_line(Duration::from_secs(3))
            .map_err(|e| anyhow::anyhow!("frame {i} to {from_ctl} never reached h2: {e:#}"))?;
        ensure!(line.contains(from_ctl), "unexpected frame on h2: {line}");
    }
    lab.expect_silence(
        &mut cap_h3,
        Duration::from_millis(500),
        &format!(
            "a frame for static {from_ctl} (port {}) flooded to h3",
            h2.port
        ),
    )?;

    // fdb del removes it again.
    lab.ctl_ok(&["fdb", "del", from_ctl])?;
    ensure!(
        lab.fdb_entries(from_ctl)?.is_empty(),
        "{from_ctl} still in fdb show after fdb del"
    );
    ensure!(
        only_entry(&lab, from_config)?["static"] == true,
        "config entry changed"
    );
    Ok(())
}
