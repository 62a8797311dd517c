//! The in-kernel fast path on veth ports (tc hook, the default for veths):
//! known flows are switched by flow entries and counted, every change that
//! could alter a decision (an ACL, a deleted port, the fast path switched
//! off) takes effect at once, and the result is the same with it off.

use anyhow::{ensure, Context, Result};
use serde_json::Value;
use std::time::{Duration, Instant};
use xsw_integration::{lab, Host, Lab};

fn port_stat(stats: &Value, port: &str, key: &str) -> u64 {
    stats["ports"]
        .as_array()
        .and_then(|ports| ports.iter().find(|p| p["name"] == port))
        .and_then(|p| p[key].as_u64())
        .unwrap_or(0)
}

fn flows(lab: &Lab) -> Result<Vec<Value>> {
    let reply = lab.ctl_json(&["flows"])?;
    reply["flows"]
        .as_array()
        .cloned()
        .with_context(|| format!("flows reply without a list: {reply}"))
}

fn worker_frames(lab: &Lab) -> Result<u64> {
    Ok(lab.stats()?["workers"]
        .as_array()
        .context("workers")?
        .iter()
        .filter_map(|w| w["frames"].as_u64())
        .sum())
}

fn two_hosts(lab: &Lab) -> Result<(Host, Host)> {
    let h1 = lab.add_veth_host("h1", 1)?;
    let h2 = lab.add_veth_host("h2", 2)?;
    lab.start_xswd(&Lab::config_with_ports(&[&h1.port, &h2.port]))?;
    lab.wait_reachable(&h1, &h2, Duration::from_secs(5))?;
    Ok((h1, h2))
}

#[test]
fn known_flows_are_switched_in_the_kernel_and_counted() -> Result<()> {
    let lab = lab!("fastpath", "fpa", 21)?;
    let (h1, h2) = two_hosts(&lab)?;
    for port in [&h1.port, &h2.port] {
        let row = lab.port(port)?.context("port row")?;
        ensure!(
            row["hook"] == "tc" && row["fast_path"] == "l2",
            "a veth port in a tenant without ACLs should take the tc hook with L2 keys: {row}"
        );
    }

    // TCP at the hosts' default offloads (TSO, checksum offload), byte-exact.
    let workers_before = worker_frames(&lab)?;
    lab.tcp_transfer(&h1, &h2, 64 << 20)?;
    let through_workers = worker_frames(&lab)? - workers_before;
    let stats = lab.stats()?;
    let fast_rx = port_stat(&stats, &h1.port, "fast_rx_frames");
    let fast_tx = port_stat(&stats, &h2.port, "fast_tx_frames");
    ensure!(
        fast_rx > 0 && fast_tx > 0,
        "the transfer did not use the fast path: {stats}"
    );
    // 64 MiB is over 40,000 full-size frames; the workers see a handful.
    ensure!(
        through_workers < 1000,
        "{through_workers} frames went through the workers during a 64 MiB transfer"
    );
    // The fast path's frames are in the port totals.
    ensure!(
        port_stat(&stats, &h1.port, "rx_frames") >= fast_rx
            && port_stat(&stats, &h2.port, "tx_frames") >= fast_tx,
        "port totals leave out the fast path's frames: {stats}"
    );

    // One entry per direction and MAC pair, L2 keys, with counters.
    let entries = flows(&lab)?;
    let forward = entries
        .iter()
        .find(|f| f["in"] == h1.port.as_str() && f["out"] == h2.port.as_str())
        .with_context(|| format!("no h1 -> h2 entry: {entries:?}"))?;
    ensure!(
        forward["src_mac"] == h1.mac.as_str()
            && forward["dst_mac"] == h2.mac.as_str()
            && forward["width"] == "l2"
            && forward["packets"].as_u64().unwrap_or(0) > 0,
        "h1 -> h2 entry: {forward}"
    );
    // h2's end of the veth is in another namespace: its frames are handed
    // straight to that end (bpf_redirect_peer).
    ensure!(forward["peer"] == true, "h1 -> h2 entry: {forward}");
    ensure!(
        entries.len() <= 4,
        "a single MAC pair needs at most an entry per direction (plus a stale one): {entries:?}"
    );
    ensure!(lab.xswd_running(), "xswd exited during the test");
    lab.expect_counters_add_up()?;
    Ok(())
}

/// A veth whose other end is in the switch's own namespace cannot take
/// frames handed to that end (the kernel drops a peer redirect within one
/// namespace): its entries use the plain redirect, and TCP works both ways.
#[test]
fn a_veth_whose_peer_is_in_the_switch_namespace_gets_plain_redirects() -> Result<()> {
    let lab = lab!("fastlocal", "fpl", 27)?;
    let h1 = lab.add_veth_host("h1", 1)?;
    let local = Host {
        name: "loc".into(),
        kind: xsw_integration::Kind::Veth,
        ns: lab.sw.clone(),
        ifname: lab.port_name("loci"),
        port: lab.port_name("loc"),
        mac: lab.mac(3),
        ip: lab.ip(3),
    };
    let sw = lab.sw.as_str();
    for argv in [
        &[
            "ip",
            "link",
            "add",
            &local.port,
            "type",
            "veth",
            "peer",
            "name",
            &local.ifname,
        ][..],
        &["ip", "link", "set", &local.ifname, "address", &local.mac],
        &[
            "ip",
            "addr",
            "add",
            &format!("{}/24", local.ip),
            "dev",
            &local.ifname,
        ],
        &["ip", "link", "set", &local.ifname, "up"],
        &["ip", "link", "set", &local.port, "up"],
    ] {
        xsw_integration::cmd::ns_ok(sw, argv)?;
    }
    lab.start_xswd(&Lab::config_with_ports(&[&h1.port, &local.port]))?;
    lab.wait_reachable(&h1, &local, Duration::from_secs(5))?;
    lab.tcp_transfer(&h1, &local, 8 << 20)?;
    lab.tcp_transfer(&local, &h1, 8 << 20)?;
    let entries = flows(&lab)?;
    for (from, to, peer) in [(&h1, &local, false), (&local, &h1, true)] {
        ensure!(
            entries.iter().any(|f| f["in"] == from.port.as_str()
                && f["out"] == to.port.as_str()
                && f["peer"] == peer
                && f["packets"].as_u64().unwrap_or(0) > 0),
            "no entry {} -> {} with traffic and peer = {peer}: {entries:?}",
            from.name,
            to.name
        );
    }
    ensure!(lab.xswd_running(), "xswd exited during the test");
    Ok(())
}

/// A host with a static MAC entry (a sink, a router) gets flow entries in
/// both directions, like any other.
#[test]
fn a_host_with_a_static_mac_is_fast_pathed_both_ways() -> Result<()> {
    let lab = lab!("faststatic", "fpf", 26)?;
    let (h1, h2) = two_hosts(&lab)?;
    lab.ctl_ok(&["fdb", "add", &h2.mac, &h2.port])?;
    lab.tcp_transfer(&h1, &h2, 8 << 20)?;
    let entries = flows(&lab)?;
    for (from, to) in [(&h1, &h2), (&h2, &h1)] {
        ensure!(
            entries.iter().any(|f| f["in"] == from.port.as_str()
                && f["out"] == to.port.as_str()
                && f["current"] == true
                && f["packets"].as_u64().unwrap_or(0) > 0),
            "no live entry {} -> {} with traffic: {entries:?}",
            from.name,
            to.name
        );
    }
    lab.expect_counters_add_up()?;
    Ok(())
}

#[test]
fn an_acl_added_under_traffic_stops_a_fast_pathed_flow_at_once() -> Result<()> {
    let lab = lab!("fastacl", "fpb", 22)?;
    let (h1, h2) = two_hosts(&lab)?;

    // UDP flows through the fast path with L2 keys (no ACL yet).
    let (_echo, port) = lab.start_udp_echo(&h2, 30)?;
    let mut probe = lab.spawn_udp_probe(&h1, &h2.ip, port, 100, 5)?;
    let before = lab.probe_result(&mut probe, Duration::from_secs(10))?;
    ensure!(before.received == 100, "UDP before the ACL: {before:?}");
    ensure!(
        flows(&lab)?.iter().any(|f| f["width"] == "l2"),
        "no L2 entry after the UDP exchange: {:?}",
        flows(&lab)?
    );

    // The reply comes after the change is in force: no datagram may pass.
    lab.ctl_ok(&["acl", "add", "default", "ingress", "deny", "--proto", "udp"])?;
    let mut probe = lab.spawn_udp_probe(&h1, &h2.ip, port, 100, 2)?;
    let after = lab.probe_result(&mut probe, Duration::from_secs(10))?;
    ensure!(
        after.received == 0,
        "{} of 100 datagrams passed a deny rule added before they were sent",
        after.received
    );
    // Other traffic still flows, now with L3 keys (the tenant has an ACL).
    lab.ping_all(&h1, &h2, 3)?;
    let list = lab.ctl_json(&["acl", "list", "default"])?;
    let hits = list["ingress"]["rules"][0]["hits"].as_u64().unwrap_or(0);
    ensure!(
        hits >= 100,
        "the deny rule counted {hits} hits for 100 datagrams: {list}"
    );
    let entries = flows(&lab)?;
    ensure!(
        entries
            .iter()
            .filter(|f| f["current"] == true)
            .all(|f| f["width"] == "l3"),
        "live entries keep L2 keys although the tenant has an ACL now: {entries:?}"
    );

    // Removing the rule lets the same flow through again.
    lab.ctl_ok(&["acl", "del", "default", "ingress", "1"])?;
    let mut probe = lab.spawn_udp_probe(&h1, &h2.ip, port, 50, 2)?;
    let again = lab.probe_result(&mut probe, Duration::from_secs(10))?;
    ensure!(
        again.received == 50,
        "UDP after the rule was removed: {again:?}"
    );
    lab.expect_counters_add_up()?;
    Ok(())
}

#[test]
fn a_deleted_port_leaves_no_flow_entry_and_no_program() -> Result<()> {
    let lab = lab!("fastdel", "fpc", 23)?;
    let (h1, h2) = two_hosts(&lab)?;
    lab.ping_all(&h1, &h2, 5)?;
    ensure!(
        flows(&lab)?.iter().any(|f| f["in"] == h1.port.as_str()),
        "no entry from h1 after pings: {:?}",
        flows(&lab)?
    );
    lab.ctl_ok(&["port", "del", &h1.port])?;
    let entries = flows(&lab)?;
    ensure!(
        !entries
            .iter()
            .any(|f| f["in"].is_null() || f["out"].is_null()),
        "entries of the deleted port are left: {entries:?}"
    );
    ensure!(
        !lab.programs_attached()?
            .iter()
            .any(|p| p.starts_with(&format!("{} ", h1.port))),
        "a program is left on the deleted port: {:?}",
        lab.programs_attached()?
    );
    let s = lab.ping(&h1, &h2.ip, 2)?;
    ensure!(s.received == 0, "h1 still reaches h2: {s:?}");
    lab.expect_counters_add_up()?;
    Ok(())
}

#[test]
fn with_the_fast_path_off_the_workers_switch_everything_alike() -> Result<()> {
    let lab = lab!("fastoff", "fpd", 24)?;
    let (h1, h2) = two_hosts(&lab)?;
    lab.tcp_transfer(&h1, &h2, 4 << 20)?;
    ensure!(!flows(&lab)?.is_empty(), "no entries with the fast path on");

    lab.ctl_ok(&["tune", "--fast-path", "off"])?;
    // Entries go at once; the keeper removes them from the table.
    let deadline = Instant::now() + Duration::from_secs(3);
    while flows(&lab)?.iter().any(|f| f["current"] == true) {
        ensure!(
            Instant::now() < deadline,
            "live entries remain with the fast path off: {:?}",
            flows(&lab)?
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let fast_before = port_stat(&lab.stats()?, &h1.port, "fast_rx_frames");
    let workers_before = worker_frames(&lab)?;
    lab.tcp_transfer(&h1, &h2, 4 << 20)?;
    let u = lab.udp_exchange(&h1, &h2, 100, 2)?;
    ensure!(
        u.received == 100 && u.corrupt == 0,
        "UDP, fast path off: {u:?}"
    );
    let stats = lab.stats()?;
    ensure!(
        port_stat(&stats, &h1.port, "fast_rx_frames") == fast_before,
        "the fast path switched frames while off: {stats}"
    );
    ensure!(
        worker_frames(&lab)? - workers_before > 100,
        "the workers did not carry the traffic with the fast path off"
    );
    // The hosts keep checksum offload: the workers finished their checksums.
    ensure!(
        port_stat(&stats, &h1.port, "checksums_finished") > 0,
        "no checksum finished for h1 although it sends with checksum offload: {stats}"
    );
    ensure!(
        flows(&lab)?.iter().all(|f| f["current"] != true),
        "entries were installed with the fast path off"
    );
    let saved = std::fs::read_to_string(lab.config_path())?;
    ensure!(
        saved.contains("[fast_path]") && saved.contains("enabled = false"),
        "the setting was not saved:\n{saved}"
    );

    // Per port, too: on again for the switch, off for h1 only.
    lab.ctl_ok(&["tune", "--fast-path", "on"])?;
    lab.ctl_ok(&["port", "fast-path", &h1.port, "off"])?;
    lab.tcp_transfer(&h1, &h2, 4 << 20)?;
    let entries = flows(&lab)?;
    ensure!(
        !entries.iter().any(|f| f["in"] == h1.port.as_str()),
        "an entry for frames entering {} although its fast path is off: {entries:?}",
        h1.port
    );
    ensure!(
        entries.iter().any(|f| f["in"] == h2.port.as_str()),
        "no entry for the other direction: {entries:?}"
    );
    lab.expect_counters_add_up()?;
    Ok(())
}

/// What one pass of the scripted mix delivered and dropped.
#[derive(Debug, PartialEq, Eq)]
struct MixResult {
    unicast_l2: u64,
    unicast_l3: u64,
    denied_delivered: u64,
    acl_deny_drops: u64,
    spoofed_mac_drops: u64,
    broadcast_at_a2: u32,
    broadcast_at_trunk: u32,
    broadcast_at_b2: u32,
    untagged_at_a1: u32,
    tagged_at_trunk: u32,
}

/// Counts the frames a capture started with `-c limit` prints within
/// `window` (it exits once it has `limit`); tcpdump's own messages are not
/// frames.
fn captured(cap: &mut xsw_integration::cmd::Proc, limit: u32, window: Duration) -> u32 {
    let deadline = Instant::now() + window;
    let mut n = 0;
    while n < limit {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match cap.next_line(left) {
            Ok(line) if line.contains("ethertype") => n += 1,
            Ok(_) => {}
            Err(_) => break,
        }
    }
    n
}

struct Mix {
    a1: Host,
    a2: Host,
    tr: Host,
    b1: Host,
    b2: Host,
    allowed_port: u16,
    denied_port: u16,
    station: String,
}

impl Mix {
    /// `round` names this pass's captures (each needs its own log).
    fn run(&self, lab: &Lab, round: &str) -> Result<MixResult> {
        use xsw_integration::frames::{self, ETH_EXPERIMENTAL, TPID_8021Q};
        const N: u32 = 20;
        let window = Duration::from_secs(2);
        let deny_before = lab.drop_count(&self.b1.port, "acl_deny")?;
        let spoof_before = lab.drop_count(&self.b1.port, "spoofed_mac")?;

        // Unicast flows: tenant a (L2 keys), tenant b (L3 keys, ACL, guard).
        let (_echo_a, port_a) = lab.start_udp_echo(&self.a2, 20)?;
        let mut pa = lab.spawn_udp_probe(&self.a1, &self.a2.ip, port_a, 100, 2)?;
        let mut pb = lab.spawn_udp_probe(&self.b1, &self.b2.ip, self.allowed_port, 100, 2)?;
        let mut pd = lab.spawn_udp_probe(&self.b1, &self.b2.ip, self.denied_port, 50, 2)?;
        let unicast_l2 = lab.probe_result(&mut pa, Duration::from_secs(10))?.received;
        let unicast_l3 = lab.probe_result(&mut pb, Duration::from_secs(10))?.received;
        let denied_delivered = lab.probe_result(&mut pd, Duration::from_secs(10))?.received;

        // Spoofed source MAC from b1 (its guard allows only its own).
        let spoofed = frames::eth(&self.b2.mac, &lab.mac(77), &[], ETH_EXPERIMENTAL, &[0; 46]);
        lab.raw_send(&self.b1, &spoofed, N)?;

        // Broadcast from a1: a2 and the trunk (tagged 100) get it, tenant b not.
        let filter = format!("ether src {} and ether proto 0x88b5", self.a1.mac);
        let mut at_a2 = lab.capture_as(&self.a2, &format!("bcast-{round}"), &filter, N + 1)?;
        let mut at_b2 = lab.capture_as(&self.b2, &format!("bcast-{round}"), &filter, N + 1)?;
        let trunk_filter = format!(
            "ether src {} and vlan 100 and ether proto 0x88b5",
            self.a1.mac
        );
        let mut at_tr =
            lab.capture_as(&self.tr, &format!("bcast-{round}"), &trunk_filter, N + 1)?;
        let bcast = frames::eth(
            "ff:ff:ff:ff:ff:ff",
            &self.a1.mac,
            &[],
            ETH_EXPERIMENTAL,
            &[1; 46],
        );
        lab.raw_send(&self.a1, &bcast, N)?;
        let broadcast_at_a2 = captured(&mut at_a2, N + 1, window);
        let broadcast_at_trunk = captured(&mut at_tr, N + 1, window);
        let broadcast_at_b2 = captured(&mut at_b2, N + 1, Duration::from_millis(500));

        // Tagged unicast from a station behind the trunk to a1, and back.
        let filter = format!("ether src {} and ether proto 0x88b5", self.station);
        let mut at_a1 = lab.capture_as(&self.a1, &format!("from-trunk-{round}"), &filter, N + 1)?;
        let tagged = frames::eth(
            &self.a1.mac,
            &self.station,
            &[(TPID_8021Q, 100)],
            ETH_EXPERIMENTAL,
            &[2; 46],
        );
        lab.raw_send(&self.tr, &tagged, N)?;
        let untagged_at_a1 = captured(&mut at_a1, N + 1, window);
        let filter = format!(
            "ether src {} and ether dst {} and vlan 100 and ether proto 0x88b5",
            self.a1.mac, self.station
        );
        let mut at_tr = lab.capture_as(&self.tr, &format!("to-trunk-{round}"), &filter, N + 1)?;
        let back = frames::eth(&self.station, &self.a1.mac, &[], ETH_EXPERIMENTAL, &[3; 46]);
        lab.raw_send(&self.a1, &back, N)?;
        let tagged_at_trunk = captured(&mut at_tr, N + 1, window);

        Ok(MixResult {
            unicast_l2,
            unicast_l3,
            denied_delivered,
            acl_deny_drops: lab.drop_count(&self.b1.port, "acl_deny")? - deny_before,
            spoofed_mac_drops: lab.drop_count(&self.b1.port, "spoofed_mac")? - spoof_before,
            broadcast_at_a2,
            broadcast_at_trunk,
            broadcast_at_b2,
            untagged_at_a1,
            tagged_at_trunk,
        })
    }
}

#[test]
fn the_same_mix_gives_the_same_result_with_the_fast_path_on_and_off() -> Result<()> {
    let lab = lab!("fastdiff", "fpe", 25)?;
    let a1 = lab.add_veth_host("a1", 1)?;
    let a2 = lab.add_veth_host("a2", 2)?;
    let tr = lab.add_veth_host("tr", 9)?;
    let b1 = lab.add_veth_host("b1", 11)?;
    let b2 = lab.add_veth_host("b2", 12)?;
    lab.start_xswd("")?;
    for t in ["a", "b"] {
        lab.ctl_ok(&["tenant", "create", t])?;
    }
    for (h, t) in [(&a1, "a"), (&a2, "a"), (&b1, "b"), (&b2, "b")] {
        lab.ctl_ok(&["port", "add", &h.port, "--tenant", t])?;
    }
    lab.ctl_ok(&["port", "add", &tr.port, "--trunk"])?;
    lab.ctl_ok(&["vlan", "add", &tr.port, "100", "a"])?;
    let b1_ip = format!("{}/32", b1.ip);
    lab.ctl_ok(&[
        "antispoof",
        "set",
        &b1.port,
        "--mac",
        &b1.mac,
        "--ip",
        &b1_ip,
    ])?;
    let (_echo_allowed, allowed_port) = lab.start_udp_echo(&b2, 60)?;
    let (_echo_denied, denied_port) = lab.start_udp_echo(&b2, 60)?;
    let dport = denied_port.to_string();
    lab.ctl_ok(&[
        "acl", "add", "b", "ingress", "deny", "--proto", "udp", "--dport", &dport,
    ])?;
    lab.wait_reachable(&a1, &a2, Duration::from_secs(5))?;
    lab.wait_reachable(&b1, &b2, Duration::from_secs(5))?;
    let mix = Mix {
        a1,
        a2,
        tr,
        b1,
        b2,
        allowed_port,
        denied_port,
        station: lab.mac(100),
    };
    for (h, width) in [(&mix.a1, "l2"), (&mix.b1, "l3")] {
        let row = lab.port(&h.port)?.context("port row")?;
        ensure!(
            row["fast_path"] == width,
            "{} should have {width} keys: {row}",
            h.name
        );
    }

    let expected = MixResult {
        unicast_l2: 100,
        unicast_l3: 100,
        denied_delivered: 0,
        acl_deny_drops: 50,
        spoofed_mac_drops: 20,
        broadcast_at_a2: 20,
        broadcast_at_trunk: 20,
        broadcast_at_b2: 0,
        untagged_at_a1: 20,
        tagged_at_trunk: 20,
    };
    let fast_before: u64 = [&mix.a1, &mix.b1, &mix.tr]
        .iter()
        .map(|h| port_stat(&lab.stats().unwrap_or_default(), &h.port, "fast_rx_frames"))
        .sum();
    let on = mix.run(&lab, "on")?;
    lab.expect_counters_add_up().context("fast path on")?;
    let stats = lab.stats()?;
    let fast_after: u64 = [&mix.a1, &mix.b1, &mix.tr]
        .iter()
        .map(|h| port_stat(&stats, &h.port, "fast_rx_frames"))
        .sum();
    ensure!(
        fast_after > fast_before + 100,
        "the mix hardly used the fast path ({fast_before} -> {fast_after}): {stats}"
    );
    lab.ctl_ok(&["tune", "--fast-path", "off"])?;
    let off = mix.run(&lab, "off")?;
    lab.expect_counters_add_up().context("fast path off")?;
    ensure!(
        on == expected && off == expected,
        "fast path on: {on:?}\nfast path off: {off:?}\nexpected: {expected:?}\nstats: {}",
        lab.stats()?
    );
    Ok(())
}
