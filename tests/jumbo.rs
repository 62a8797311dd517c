//! Jumbo frames (MTU 9000) between two veth hosts through xsw, with the
//! in-kernel fast path on and with it off, and what xsw counts when a frame
//! is longer than the path it takes can carry.

use anyhow::{ensure, Context, Result};
use serde_json::Value;
use std::time::Duration;
use xsw_integration::{cmd, lab, Host, Lab};

/// The hosts' MTU and the largest ICMP payload that fits it unfragmented
/// (9000 - 20 bytes of IPv4 - 8 bytes of ICMP).
const JUMBO_MTU: &str = "9000";
const JUMBO_PING_PAYLOAD: &str = "8972";

/// Two veth hosts with MTU 9000 on both ends of each veth, switched by a
/// fresh xswd.
fn jumbo_hosts(lab: &Lab) -> Result<(Host, Host)> {
    let h1 = lab.add_veth_host("h1", 1)?;
    let h2 = lab.add_veth_host("h2", 2)?;
    set_jumbo_mtu(lab, &[&h1, &h2])?;
    lab.start_xswd(&Lab::config_with_ports(&[&h1.port, &h2.port]))?;
    lab.wait_reachable(&h1, &h2, Duration::from_secs(5))?;
    Ok((h1, h2))
}

/// `count` pings of `payload` bytes with "don't fragment" (each one a single
/// frame of payload + 46 bytes on the wire); ping's summary text.
fn ping_sized(lab: &Lab, from: &Host, to_ip: &str, payload: &str, count: u32) -> Result<String> {
    let c = count.to_string();
    let out = lab.run_in(
        &from.ns,
        &[
            "ping", "-n", "-q", "-M", "do", "-s", payload, "-c", &c, "-i", "0.2", "-W", "1", to_ip,
        ],
        Duration::from_secs(u64::from(count) + 6),
    )?;
    Ok(out.stdout)
}

/// `count` pings of 8,972 bytes: (sent, answered).
fn jumbo_ping(lab: &Lab, from: &Host, to: &Host, count: u32) -> Result<(u32, u32)> {
    let text = ping_sized(lab, from, &to.ip, JUMBO_PING_PAYLOAD, count)?;
    let summary = text
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .with_context(|| format!("no ping summary in:\n{text}"))?;
    let numbers: Vec<u32> = summary
        .split(',')
        .filter_map(|part| part.split_whitespace().next()?.parse().ok())
        .collect();
    ensure!(numbers.len() >= 2, "cannot parse {summary:?}");
    Ok((numbers[0], numbers[1]))
}

/// Both ends of each host's veth at MTU 9000.
fn set_jumbo_mtu(lab: &Lab, hosts: &[&Host]) -> Result<()> {
    for h in hosts {
        cmd::ns_ok(&h.ns, &["ip", "link", "set", &h.ifname, "mtu", JUMBO_MTU])?;
        cmd::sh_ok(&[
            "ip", "-n", &lab.sw, "link", "set", &h.port, "mtu", JUMBO_MTU,
        ])?;
    }
    Ok(())
}

fn port_stat(stats: &Value, port: &str, key: &str) -> u64 {
    stats["ports"]
        .as_array()
        .and_then(|ports| ports.iter().find(|p| p["name"] == port))
        .and_then(|p| p[key].as_u64())
        .unwrap_or(0)
}

fn too_big(stats: &Value, port: &str) -> u64 {
    stats["ports"]
        .as_array()
        .and_then(|ports| ports.iter().find(|p| p["name"] == port))
        .and_then(|p| p["slow_path_drops"]["too_big"].as_u64())
        .unwrap_or(0)
}

#[test]
fn jumbo_pings_and_tcp_cross_the_fast_path() -> Result<()> {
    let lab = lab!("jumbo", "jmf", 237)?;
    let (h1, h2) = jumbo_hosts(&lab)?;
    // Small frames both ways first: the workers learn both MACs and install
    // the flow entries (L2 keys) that then carry the big frames in the kernel.
    lab.ping_all(&h1, &h2, 3)?;
    lab.ping_all(&h2, &h1, 3)?;

    let (sent, received) = jumbo_ping(&lab, &h1, &h2, 10)?;
    let stats = lab.stats()?;
    ensure!(
        sent == 10 && received == 10,
        "8,972-byte pings over the fast path: {sent} sent, {received} answered\n{stats}"
    );
    ensure!(
        port_stat(&stats, &h1.port, "fast_rx_frames") >= 10,
        "the jumbo pings did not take the fast path: {stats}"
    );
    // TCP at MSS 8,948, byte-exact, with the hosts' default offloads.
    lab.tcp_transfer(&h1, &h2, 16 << 20)?;

    // A jumbo unknown unicast is flooded, so it goes to the workers, which
    // cannot take it: counted as too_big on the sender's port.
    let nobody = lab.ip(99);
    cmd::ns_ok(
        &h1.ns,
        &[
            "ip",
            "neigh",
            "replace",
            &nobody,
            "lladdr",
            "02:00:00:00:99:99",
            "dev",
            &h1.ifname,
        ],
    )?;
    let before = too_big(&lab.stats()?, &h1.port);
    let out = ping_sized(&lab, &h1, &nobody, JUMBO_PING_PAYLOAD, 2)?;
    ensure!(out.contains("2 packets transmitted"), "{out}");
    let stats = lab.stats()?;
    ensure!(
        too_big(&stats, &h1.port) - before == 2,
        "2 jumbo unknown-unicast frames not counted as too_big: {stats}"
    );
    lab.expect_counters_add_up()?;
    Ok(())
}

#[test]
fn a_jumbo_frame_that_misses_the_fast_path_is_counted_as_too_big() -> Result<()> {
    let lab = lab!("jumbo", "jms", 238)?;
    let (h1, h2) = jumbo_hosts(&lab)?;
    lab.ctl_ok(&["tune", "--fast-path", "off"])?;
    // Small frames still cross the workers.
    lab.ping_all(&h1, &h2, 3)?;

    let before = too_big(&lab.stats()?, &h1.port);
    let (sent, _) = jumbo_ping(&lab, &h1, &h2, 3)?;
    ensure!(sent == 3, "ping sent {sent} of 3");
    let stats = lab.stats()?;
    let counted = too_big(&stats, &h1.port) - before;
    // Each request is dropped on h1's port for its size, and says so.
    ensure!(
        counted == 3,
        "{counted} of 3 jumbo frames counted as slow_path_drops.too_big on {}: {stats}",
        h1.port
    );
    // A frame between a UMEM frame's 1,792 bytes and the slow-path device's
    // MTU is counted the same way (the kernel would drop it at the socket,
    // seen only as its rx_dropped).
    let before = too_big(&lab.stats()?, &h1.port);
    let out = ping_sized(&lab, &h1, &h2.ip, "2000", 2)?;
    ensure!(out.contains("2 packets transmitted"), "{out}");
    let stats = lab.stats()?;
    let counted = too_big(&stats, &h1.port) - before;
    ensure!(
        counted == 2,
        "{counted} of 2 frames of 2,042 bytes counted as too_big: {stats}"
    );
    lab.ping_all(&h1, &h2, 3)?;

    // The port says so: in its row, and when it is added.
    let row = lab.port(&h1.port)?.context("h1's port row")?;
    ensure!(
        row["size_limit"]
            .as_str()
            .is_some_and(|note| note.contains("MTU 9000") && note.contains("too_big")),
        "an MTU 9000 port's row does not tell what happens to its longest frames: {row}"
    );
    let h3 = lab.add_veth_host("h3", 3)?;
    set_jumbo_mtu(&lab, &[&h3])?;
    let added = lab.ctl_ok(&["port", "add", &h3.port])?;
    ensure!(
        added.contains("note: MTU 9000"),
        "port add of an MTU 9000 veth said only {added:?}"
    );
    lab.expect_counters_add_up()?;
    Ok(())
}

#[test]
fn a_port_whose_frames_fit_has_no_size_note() -> Result<()> {
    let lab = lab!("jumbo", "jmn", 239)?;
    let h1 = lab.add_veth_host("h1", 1)?;
    lab.start_xswd(&Lab::config_with_ports(&[]))?;
    let added = lab.ctl_ok(&["port", "add", &h1.port])?;
    ensure!(
        !added.contains("note:"),
        "an MTU 1500 port got a size note: {added:?}"
    );
    let row = lab.port(&h1.port)?.context("h1's port row")?;
    ensure!(row["size_limit"].is_null(), "{row}");
    Ok(())
}

/// On XDP-hooked ports every frame goes to the workers. The steering program
/// declares multi-buffer support, so an MTU 9000 veth takes it in native
/// mode (without it the kernel refuses: the peer's MTU is over a page); a
/// frame longer than a UMEM frame is counted as too_big and dropped by the
/// program, before the AF_XDP socket would drop it with no reason given.
#[test]
fn an_mtu_9000_port_takes_the_steering_program_natively() -> Result<()> {
    let lab = lab!("jumbo", "jmx", 236)?;
    let h1 = lab.add_veth_host("h1", 1)?;
    let h2 = lab.add_veth_host("h2", 2)?;
    set_jumbo_mtu(&lab, &[&h1, &h2])?;
    lab.start_xswd("")?;
    for h in [&h1, &h2] {
        let added = lab.ctl_ok(&[
            "port",
            "add",
            &h.port,
            "--hook",
            "xdp",
            "--xdp-mode",
            "native",
        ])?;
        ensure!(
            added.contains("native XDP") && added.contains("note: MTU 9000"),
            "port add of an MTU 9000 veth with native XDP said {added:?}"
        );
    }
    lab.wait_reachable(&h1, &h2, Duration::from_secs(5))?;
    lab.ping_all(&h1, &h2, 3)?;

    let rx_dropped = |stats: &Value| {
        stats["ports"]
            .as_array()
            .and_then(|ports| ports.iter().find(|p| p["name"] == h2.port.as_str()))
            .and_then(|p| p["kernel"]["rx_dropped"].as_u64())
            .unwrap_or(0)
    };
    let stats = lab.stats()?;
    let (dropped_before, too_big_before) = (rx_dropped(&stats), too_big(&stats, &h2.port));
    let (sent, received) = jumbo_ping(&lab, &h2, &h1, 3)?;
    let stats = lab.stats()?;
    ensure!(
        sent == 3 && received == 0,
        "{received} of {sent} jumbo pings answered over XDP ports"
    );
    ensure!(
        too_big(&stats, &h2.port) - too_big_before == 3 && rx_dropped(&stats) == dropped_before,
        "the jumbo frames are not counted as too_big (and only so) on {}: {stats}",
        h2.port
    );
    lab.ping_all(&h1, &h2, 3)?;
    lab.expect_counters_add_up()?;
    Ok(())
}
