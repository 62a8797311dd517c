//! Checks of the test harness itself, with a Linux bridge standing in for
//! xswd: the xsw-guest relay, the traffic tools and the cleanup guard. When
//! these pass and an xsw test fails, the switch is at fault, not the harness.

use anyhow::{ensure, Result};
use std::time::Duration;
use xsw_integration::{cmd, lab, Host, Lab};

/// Bridges the given switch-namespace ports with a Linux bridge.
fn bridge(lab: &Lab, ports: &[&Host]) -> Result<()> {
    let br = format!("{}-br", lab.tag);
    cmd::ns_ok(&lab.sw, &["ip", "link", "add", &br, "type", "bridge"])?;
    for h in ports {
        cmd::ns_ok(&lab.sw, &["ip", "link", "set", &h.port, "master", &br])?;
    }
    cmd::ns_ok(&lab.sw, &["ip", "link", "set", &br, "up"])?;
    Ok(())
}

#[test]
fn guest_relay_and_tools_over_a_linux_bridge() -> Result<()> {
    let lab = lab!("harness-br", "hbr", 250)?;
    let h1 = lab.add_veth_host("h1", 1)?;
    let g1 = lab.add_guest("g1", 10)?;
    bridge(&lab, &[&h1, &g1])?;
    lab.wait_reachable(&h1, &g1, Duration::from_secs(5))?;
    lab.ping_all(&h1, &g1, 3)?;
    lab.ping_all(&g1, &h1, 3)?;
    let u = lab.udp_exchange(&h1, &g1, 50, 5)?;
    ensure!(
        u.sent == 50 && u.received == 50 && u.corrupt == 0,
        "UDP h1->g1: {u:?}"
    );
    let u = lab.udp_exchange(&g1, &h1, 50, 5)?;
    ensure!(
        u.sent == 50 && u.received == 50 && u.corrupt == 0,
        "UDP g1->h1: {u:?}"
    );
    lab.tcp_transfer(&h1, &g1, 2 << 20)?;
    lab.tcp_transfer(&g1, &h1, 2 << 20)?;

    // tcpdump helper sees a broadcast ARP request for an unused address.
    let mut cap = lab.capture(&g1, "arp and host 198.18.250.200", 1)?;
    let _ = lab.ping(&h1, "198.18.250.200", 1)?;
    let line = cap.next_line(Duration::from_secs(5))?;
    ensure!(
        line.contains("ff:ff:ff:ff:ff:ff") && line.contains("Request"),
        "unexpected capture: {line}"
    );

    // Stopping the guest removes its peer tap but keeps the persistent tap.
    let log = lab.stop_guest(&g1)?;
    ensure!(log.contains("stopping"), "guest log: {log}");
    let out = lab.run_in(
        &g1.ns,
        &["ip", "link", "show", &g1.ifname],
        Duration::from_secs(5),
    )?;
    ensure!(
        !out.success(),
        "peer tap still exists after the guest stopped:\n{}",
        out.describe()
    );
    ensure!(
        lab.sw_links()?.contains(&g1.port),
        "persistent tap {} vanished",
        g1.port
    );
    Ok(())
}

#[test]
fn helpers_report_loss_without_a_switch() -> Result<()> {
    // The ping helper must report loss honestly: with no bridge nothing arrives.
    let lab = lab!("harness-loss", "hls", 251)?;
    let h1 = lab.add_veth_host("h1", 1)?;
    let g1 = lab.add_guest("g1", 10)?;
    let s = lab.ping(&h1, &g1.ip, 2)?;
    ensure!(
        s.transmitted == 2 && s.received == 0,
        "ping without a switch: {s:?}"
    );
    ensure!(
        lab.ping_all(&h1, &g1, 1).is_err(),
        "ping_all passed without a switch"
    );
    let u = lab.udp_exchange(&h1, &g1, 5, 10)?;
    ensure!(
        u.received == 0 && u.lost == 5,
        "UDP without a switch: {u:?}"
    );
    ensure!(
        lab.tcp_transfer(&h1, &g1, 1000).is_err(),
        "TCP passed without a switch"
    );
    Ok(())
}

#[test]
fn lab_drop_removes_namespaces_links_and_processes() -> Result<()> {
    let (namespaces, dir, guest_pid) = {
        let lab = lab!("harness-drop", "hdr", 252)?;
        let h1 = lab.add_veth_host("h1", 1)?;
        let g1 = lab.add_guest("g1", 2)?;
        // xsw-guest starts in the switch namespace and moves into the guest's.
        let pids = cmd::sh_ok(&["ip", "netns", "pids", &g1.ns])?;
        let guest_pid: Vec<String> = pids.split_whitespace().map(str::to_string).collect();
        ensure!(!guest_pid.is_empty(), "xsw-guest not running in {}", g1.ns);
        (
            vec![lab.sw.clone(), h1.ns.clone(), g1.ns.clone()],
            lab.dir.clone(),
            guest_pid,
        )
    };
    let list = cmd::sh_ok(&["ip", "netns", "list"])?;
    for ns in &namespaces {
        ensure!(
            !list
                .lines()
                .any(|l| l.split_whitespace().next() == Some(ns)),
            "netns {ns} left behind"
        );
    }
    ensure!(!dir.exists(), "{} left behind", dir.display());
    for pid in guest_pid {
        ensure!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "process {pid} left behind"
        );
    }
    Ok(())
}

#[test]
fn guest_help_and_usage() -> Result<()> {
    let g = env!("CARGO_BIN_EXE_xsw-guest");
    let out = cmd::run_args(&[g, "--help"], Duration::from_secs(5))?.ok()?;
    ensure!(
        out.stdout.contains("--tap") && out.stdout.contains("--netns"),
        "help: {}",
        out.stdout
    );
    let out = cmd::run_args(&[g, "--peer", "x"], Duration::from_secs(5))?;
    ensure!(
        out.code == Some(2) && out.stderr.starts_with("error:"),
        "{}",
        out.describe()
    );
    Ok(())
}

#[test]
fn guest_exits_with_error_when_its_tap_is_deleted() -> Result<()> {
    let lab = lab!("harness-tapdel", "htd", 253)?;
    let g1 = lab.add_guest("g1", 10)?;
    cmd::ns_ok(&lab.sw, &["ip", "link", "del", &g1.port])?;
    let st = lab.wait_guest_exit(&g1, Duration::from_secs(3))?;
    ensure!(
        st.is_some_and(|s| s.code() == Some(1)),
        "xsw-guest after its tap was deleted: {st:?} (expected exit 1)"
    );
    let log = std::fs::read_to_string(lab.dir.join("guest-g1.log"))?;
    ensure!(log.contains("was removed"), "guest log: {log}");
    Ok(())
}
