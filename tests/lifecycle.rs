//! Ports and the daemon coming and going: a port deleted under traffic, xswd
//! killed with SIGKILL or stopped with SIGTERM, and taps created by xsw.

use anyhow::{bail, ensure, Result};
use std::time::{Duration, Instant};
use xsw_integration::{cmd, lab, Lab};

#[test]
fn port_deleted_under_traffic_leaves_others_working() -> Result<()> {
    let lab = lab!("portdel", "lcd", 13)?;
    let h1 = lab.add_veth_host("h1", 1)?;
    let h2 = lab.add_veth_host("h2", 2)?;
    let g1 = lab.add_guest("g1", 10)?;
    lab.start_xswd(&Lab::config_with_ports(&[&h1.port, &h2.port, &g1.port]))?;
    lab.wait_reachable(&h1, &h2, Duration::from_secs(5))?;
    lab.wait_reachable(&h1, &g1, Duration::from_secs(5))?;
    lab.wait_reachable(&h2, &g1, Duration::from_secs(5))?;
    ensure!(
        lab.fdb_entries(&h1.mac)?.len() == 1,
        "h1 not learned before the test: {:?}",
        lab.fdb()?
    );

    // Steady streams between h2 and g1: 1000 UDP datagrams 3 ms apart and a
    // ping every 0.2 s, both about 3 s long; h1's port goes away after 1 s.
    let (_echo, port) = lab.start_udp_echo(&g1, 12)?;
    let mut probe = lab.spawn_udp_probe(&h2, &g1.ip, port, 1000, 3)?;
    let mut ping = lab.spawn_ping(&g1, &h2.ip, 15, "0.2")?;
    std::thread::sleep(Duration::from_secs(1));
    let t = Instant::now();
    lab.ctl_ok(&["port", "del", &h1.port])?;
    let del_took = t.elapsed();

    let u = lab.probe_result(&mut probe, Duration::from_secs(10))?;
    let p = lab.ping_result(&mut ping, Duration::from_secs(10))?;
    println!("port del took {del_took:?}; UDP h2 -> g1 during it: {u:?}; ping g1 -> h2: {p:?}");
    ensure!(
        u.sent == 1000 && u.corrupt == 0,
        "UDP h2 -> g1 during port del: {u:?}"
    );
    // Small bound: at most 1% of the datagrams, none of the pings.
    ensure!(
        u.lost <= 10,
        "UDP h2 -> g1 lost {} of 1000 (longest run {}) while {} was deleted (port del took {del_took:?})",
        u.lost,
        u.max_consecutive_lost,
        h1.port
    );
    ensure!(
        p.transmitted == 15 && p.received == 15,
        "ping g1 -> h2 during port del: {p:?}"
    );

    // The deleted port is gone: not listed, its MAC forgotten, no XDP on
    // it, and h1 reaches nobody any more.
    ensure!(
        lab.port(&h1.port)?.is_none(),
        "{} still in port list: {:?}",
        h1.port,
        lab.ports()?
    );
    ensure!(
        lab.fdb_entries(&h1.mac)?.is_empty(),
        "h1's MAC {} still in fdb show: {:?}",
        h1.mac,
        lab.fdb()?
    );
    let xdp = lab.programs_attached()?;
    ensure!(
        !xdp.iter().any(|x| x.starts_with(&format!("{} ", h1.port))),
        "a program is still on the deleted port: {xdp:?}"
    );
    let s = lab.ping(&h1, &h2.ip, 2)?;
    ensure!(
        s.received == 0,
        "h1 still reaches h2 after its port was deleted: {s:?}"
    );
    // The others still talk.
    lab.ping_all(&h2, &g1, 3)?;
    Ok(())
}

/// Polls until no interface in the switch namespace has an XDP or tc program.
fn wait_no_xdp(lab: &Lab, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let xdp = lab.programs_attached()?;
        if xdp.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("programs left attached {timeout:?} after xswd ended: {xdp:#?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn attached_everywhere(lab: &Lab, ports: &[&str]) -> Result<()> {
    let xdp = lab.programs_attached()?;
    for p in ports {
        ensure!(
            xdp.iter().any(|x| x.starts_with(&format!("{p} ("))),
            "no XDP or tc program seen on {p} while xswd runs: {xdp:#?}"
        );
    }
    Ok(())
}

#[test]
fn sigkill_leaves_no_xdp_program() -> Result<()> {
    let lab = lab!("sigkill", "lck", 14)?;
    let h1 = lab.add_veth_host("h1", 1)?;
    let h2 = lab.add_veth_host("h2", 2)?;
    let g1 = lab.add_guest("g1", 10)?;
    lab.start_xswd(&Lab::config_with_ports(&[&h1.port, &h2.port, &g1.port]))?;
    lab.wait_reachable(&h1, &g1, Duration::from_secs(5))?;
    lab.wait_reachable(&h2, &g1, Duration::from_secs(5))?;
    attached_everywhere(&lab, &[&h1.port, &h2.port, &g1.port])?;

    lab.kill_xswd()?;
    wait_no_xdp(&lab, Duration::from_secs(3))?;
    Ok(())
}

#[test]
fn sigterm_detaches_xdp_and_removes_socket() -> Result<()> {
    let lab = lab!("sigterm", "lct", 19)?;
    let h1 = lab.add_veth_host("h1", 1)?;
    let h2 = lab.add_veth_host("h2", 2)?;
    lab.start_xswd(&Lab::config_with_ports(&[&h1.port, &h2.port]))?;
    lab.wait_reachable(&h1, &h2, Duration::from_secs(5))?;
    attached_everywhere(&lab, &[&h1.port, &h2.port])?;

    let st = lab.stop_xswd(Duration::from_secs(5))?;
    ensure!(st.success(), "xswd exited with {st} on SIGTERM");
    ensure!(
        !lab.socket().exists(),
        "control socket {} left behind after SIGTERM",
        lab.socket().display()
    );
    wait_no_xdp(&lab, Duration::from_secs(1))?;
    Ok(())
}

#[test]
fn create_tap_port_carries_guest_traffic_and_port_del_removes_it() -> Result<()> {
    let lab = lab!("createtap", "lcc", 18)?;
    let h1 = lab.add_veth_host("h1", 1)?;
    lab.start_xswd("")?;
    lab.port_add(&h1.port)?;
    let tap = lab.port_name("g1");
    ensure!(
        !lab.sw_links()?.contains(&tap),
        "{tap} exists before port add"
    );
    lab.ctl_ok(&["port", "add", &tap, "--create-tap"])?;

    let detail = cmd::ns_ok(&lab.sw, &["ip", "-d", "link", "show", &tap]).map_err(|e| {
        anyhow::anyhow!("port add --create-tap did not create {tap} in the switch namespace: {e:#}")
    })?;
    ensure!(
        detail.contains("tun type tap"),
        "{tap} is not a tap: {detail}"
    );
    let p = lab.port(&tap)?;
    ensure!(
        p.as_ref().is_some_and(|p| p["kind"] == "tap"),
        "port list shows {tap} as {p:?}"
    );

    // A guest attaches to the tap xsw made, like QEMU would.
    let g1 = lab.attach_guest("g1", 10, &tap)?;
    lab.wait_reachable(&h1, &g1, Duration::from_secs(5))?;
    lab.ping_all(&h1, &g1, 3)?;
    lab.ping_all(&g1, &h1, 3)?;
    let u = lab.udp_exchange(&g1, &h1, 200, 2)?;
    ensure!(
        u.sent == 200 && u.received == 200 && u.corrupt == 0,
        "UDP g1 -> h1: {u:?}"
    );
    lab.tcp_transfer(&h1, &g1, 2 << 20)?;
    lab.tcp_transfer(&g1, &h1, 2 << 20)?;

    // The VM shuts down, the port is deleted: the tap goes with it.
    lab.stop_guest(&g1)?;
    lab.ctl_ok(&["port", "del", &tap])?;
    let deadline = Instant::now() + Duration::from_secs(2);
    while lab.sw_links()?.contains(&tap) {
        ensure!(
            Instant::now() < deadline,
            "{tap} still exists 2 s after port del: {:?}",
            lab.sw_links()?
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    ensure!(lab.port(&tap)?.is_none(), "{tap} still in port list");
    Ok(())
}

#[test]
fn sigterm_stops_xswd_even_after_its_socket_file_is_gone() -> Result<()> {
    let lab = lab!("lcsock", "lcs", 185)?;
    let h1 = lab.add_veth_host("h1", 1)?;
    lab.start_xswd(&Lab::config_with_ports(&[&h1.port]))?;
    // Someone cleaned /run (or a test's temp dir) under a running xswd.
    std::fs::remove_file(lab.socket())?;
    let status = lab.stop_xswd(Duration::from_secs(5))?;
    ensure!(status.success(), "xswd exited with {status} after SIGTERM");
    Ok(())
}
