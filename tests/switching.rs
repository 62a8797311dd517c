//! Forwarding through xswd: two veth-attached hosts and one tap-attached
//! guest reach each other (ping, UDP, TCP), MAC learning fills the FDB with
//! each host on its port, counters rise on the right ports, and broadcast is
//! flooded to every other port.

use anyhow::{ensure, Result};
use serde_json::Value;
use std::net::Ipv4Addr;
use std::time::Duration;
use std::time::Instant;
use xsw_integration::frames::{self, ETH_ARP};
use xsw_integration::{lab, Host, Lab, PortCounters};

/// h1, h2 on veths and guest g1 on a tap, all listed in xswd's config file.
fn three_endpoints(lab: &Lab) -> Result<(Host, Host, Host)> {
    let h1 = lab.add_veth_host("h1", 1)?;
    let h2 = lab.add_veth_host("h2", 2)?;
    let g1 = lab.add_guest("g1", 10)?;
    lab.start_xswd(&Lab::config_with_ports(&[&h1.port, &h2.port, &g1.port]))?;
    Ok((h1, h2, g1))
}

#[test]
fn hosts_and_guest_reach_each_other() -> Result<()> {
    let lab = lab!("switching", "swa", 11)?;
    let (h1, h2, g1) = three_endpoints(&lab)?;
    let all = [&h1, &h2, &g1];

    // Start-up: first reply within 5 s on every pair (xswd finishing attach).
    lab.wait_reachable(&h1, &h2, Duration::from_secs(5))?;
    lab.wait_reachable(&h1, &g1, Duration::from_secs(5))?;
    lab.wait_reachable(&h2, &g1, Duration::from_secs(5))?;

    // Ping every ordered pair: no loss.
    for a in all {
        for b in all {
            if a.name != b.name {
                lab.ping_all(a, b, 3)?;
            }
        }
    }

    // UDP (checksums must be right end to end, or receivers drop it).
    for (a, b) in [(&h1, &h2), (&h2, &g1), (&g1, &h1)] {
        let u = lab.udp_exchange(a, b, 200, 2)?;
        ensure!(
            u.sent == 200 && u.received == 200 && u.corrupt == 0,
            "UDP {} -> {} -> {}: {u:?}",
            a.name,
            b.name,
            a.name
        );
    }

    // TCP, 2 MiB each way round the triangle, byte-exact, every host with its
    // default offloads (TSO, checksum offload). tests/fastpath.rs covers the
    // same with the fast path off, where the workers finish checksums.
    for (a, b) in [(&h1, &g1), (&g1, &h2), (&h2, &h1)] {
        lab.tcp_transfer(a, b, 2 << 20)?;
    }
    ensure!(lab.xswd_running(), "xswd exited during the test");
    lab.expect_counters_add_up()?;
    Ok(())
}

fn delta(before: &PortCounters, after: &PortCounters) -> PortCounters {
    PortCounters {
        rx_frames: after.rx_frames.saturating_sub(before.rx_frames),
        rx_bytes: after.rx_bytes.saturating_sub(before.rx_bytes),
        tx_frames: after.tx_frames.saturating_sub(before.tx_frames),
        tx_bytes: after.tx_bytes.saturating_sub(before.tx_bytes),
    }
}

fn counters(lab: &Lab, hosts: &[&Host]) -> Result<Vec<PortCounters>> {
    let stats = lab.stats()?;
    hosts
        .iter()
        .map(|h| PortCounters::from_stats(&stats, &h.port))
        .collect()
}

#[test]
fn learning_fills_fdb_counters_rise_and_broadcast_floods() -> Result<()> {
    let lab = lab!("learning", "swb", 12)?;
    let (h1, h2, g1) = three_endpoints(&lab)?;
    let all = [&h1, &h2, &g1];
    lab.wait_reachable(&h1, &h2, Duration::from_secs(5))?;
    lab.wait_reachable(&h1, &g1, Duration::from_secs(5))?;
    lab.wait_reachable(&h2, &g1, Duration::from_secs(5))?;

    // Learning: each endpoint's MAC once, on its own port, dynamic.
    let fdb = lab.fdb()?;
    for h in all {
        let entries: Vec<_> = fdb
            .iter()
            .filter(|e| {
                e["mac"]
                    .as_str()
                    .is_some_and(|m| m.eq_ignore_ascii_case(&h.mac))
            })
            .collect();
        ensure!(
            entries.len() == 1,
            "fdb show has {} entries for {} ({}), expected 1: {fdb:?}",
            entries.len(),
            h.name,
            h.mac
        );
        let e = entries[0];
        ensure!(
            e["port"] == h.port.as_str(),
            "{} ({}) learned on {} instead of {}",
            h.name,
            h.mac,
            e["port"],
            h.port
        );
        ensure!(
            e["static"] == false,
            "learned entry for {} is not dynamic: {e}",
            h.name
        );
        ensure!(
            e["age_secs"].is_u64(),
            "entry for {} lacks age_secs: {e}",
            h.name
        );
    }

    // Known unicast: 10 pings h1 -> h2 raise rx/tx on h1's and h2's ports
    // (both ways) and are not flooded to the guest's port.
    let before = counters(&lab, &all)?;
    lab.ping_all(&h1, &h2, 10)?;
    let after = counters(&lab, &all)?;
    let (d1, d2, dg) = (
        delta(&before[0], &after[0]),
        delta(&before[1], &after[1]),
        delta(&before[2], &after[2]),
    );
    // An ICMP echo frame with ping's default 56 data bytes is 98 bytes.
    for (name, d) in [(&h1.port, &d1), (&h2.port, &d2)] {
        // Both bounds: counting a frame twice must fail. Up to 4 frames more for a
        // neighbour (ARP) exchange the hosts may make meanwhile.
        ensure!(
            (10..=14).contains(&d.rx_frames)
                && (10..=14).contains(&d.tx_frames)
                && (980..=980 + 4 * 64).contains(&d.rx_bytes)
                && (980..=980 + 4 * 64).contains(&d.tx_bytes),
            "port {name}: counters rose by {d:?} over 10 echo requests and 10 replies; expected rx and tx of 10 to 14 frames, 980 to 1,236 bytes"
        );
    }
    ensure!(
        dg.tx_frames <= 2,
        "known unicast h1<->h2 reached the guest's port {}: tx rose by {}",
        g1.port,
        dg.tx_frames
    );

    // Broadcast: an ARP request for an address nobody has must reach both
    // other endpoints (captured there) and count as tx on their ports.
    let ghost = format!("198.18.{}.200", lab.net);
    let filter = format!("arp and host {ghost}");
    let mut cap_h2 = lab.capture(&h2, &filter, 1)?;
    let mut cap_g1 = lab.capture(&g1, &filter, 1)?;
    let before = counters(&lab, &all)?;
    let _ = lab.ping(&h1, &ghost, 1)?; // no reply possible; it makes h1 ARP
    for (h, cap) in [(&h2, &mut cap_h2), (&g1, &mut cap_g1)] {
        let line = cap.next_line(Duration::from_secs(5))?;
        ensure!(
            line.contains("ff:ff:ff:ff:ff:ff")
                && line.contains(&h1.mac)
                && line.contains("who-has"),
            "{} captured an unexpected frame instead of h1's ARP broadcast: {line}",
            h.name
        );
    }
    let after = counters(&lab, &all)?;
    let (d1, d2, dg) = (
        delta(&before[0], &after[0]),
        delta(&before[1], &after[1]),
        delta(&before[2], &after[2]),
    );
    ensure!(
        d1.rx_frames >= 1,
        "h1's port {} counted no rx for the ARP broadcast: {d1:?}",
        h1.port
    );
    ensure!(
        d2.tx_frames >= 1,
        "broadcast not counted as tx on {}: {d2:?}",
        h2.port
    );
    ensure!(
        dg.tx_frames >= 1,
        "broadcast not counted as tx on {}: {dg:?}",
        g1.port
    );
    lab.expect_counters_add_up()?;
    Ok(())
}

/// `stats --json` counter `group.reason` of port `port` (0 when absent).
fn reason_count(stats: &Value, port: &str, group: &str, reason: &str) -> u64 {
    stats["ports"]
        .as_array()
        .and_then(|ports| ports.iter().find(|p| p["name"] == port))
        .and_then(|p| p[group][reason].as_u64())
        .unwrap_or(0)
}

/// A frame no port takes is one drop, on its ingress port: an ARP broadcast
/// for an address neither h2 nor g1 owns, both restricted to their own
/// addresses, is `no_egress` once on h1's port (per frame received) and a
/// `not_for_port` refusal on each of theirs (per copy), never switched; and
/// the counters add up.
#[test]
fn a_frame_no_port_takes_is_one_drop_on_its_ingress_port() -> Result<()> {
    const N: u64 = 10;
    let lab = lab!("refused", "swr", 29)?;
    let (h1, h2, g1) = three_endpoints(&lab)?;
    lab.wait_reachable(&h1, &h2, Duration::from_secs(5))?;
    lab.wait_reachable(&h1, &g1, Duration::from_secs(5))?;
    for h in [&h2, &g1] {
        lab.ctl_ok(&[
            "antispoof",
            "set",
            &h.port,
            "--mac",
            &h.mac,
            "--ip",
            &h.ip,
            "--restrict-to-port",
        ])?;
    }
    let ghost: Ipv4Addr = lab.ip(200).parse()?;
    let sender: Ipv4Addr = h1.ip.parse()?;
    let request = frames::arp(1, &h1.mac, sender, "00:00:00:00:00:00", ghost);
    let frame = frames::eth("ff:ff:ff:ff:ff:ff", &h1.mac, &[], ETH_ARP, &request);
    let before = lab.stats()?;
    lab.raw_send(&h1, &frame, N as u32)?;

    let counts = |stats: &Value| {
        (
            reason_count(stats, &h1.port, "ingress_drops", "no_egress"),
            reason_count(stats, &h2.port, "egress_drops", "not_for_port"),
            reason_count(stats, &g1.port, "egress_drops", "not_for_port"),
        )
    };
    let (h1_before, h2_before, g1_before) = counts(&before);
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut after = lab.stats()?;
    while counts(&after).0 < h1_before + N && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        after = lab.stats()?;
    }
    let (h1_after, h2_after, g1_after) = counts(&after);
    ensure!(
        (h1_after - h1_before, h2_after - h2_before, g1_after - g1_before) == (N, N, N),
        "{N} ARP broadcasts nobody takes: no_egress on {} +{}, not_for_port copies on {} +{} and {} +{}, \
         expected +{N} each; stats: {after}",
        h1.port,
        h1_after - h1_before,
        h2.port,
        h2_after - h2_before,
        g1.port,
        g1_after - g1_before
    );
    lab.expect_counters_add_up()?;
    Ok(())
}
