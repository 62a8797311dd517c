//! Anti-spoofing: a port guarded by `antispoof set` still switches its own
//! traffic, while frames with a forged source IP or MAC, forged ARP and
//! forged IPv6 neighbour advertisements get nowhere and are counted by
//! reason; DHCP DISCOVER from 0.0.0.0 passes; `--restrict-to-port` keeps
//! unicast for other addresses away from the port; `antispoof clear` restores
//! plain switching. Every forged frame has a legitimate twin sent first, so
//! silence means the guard dropped it, not that the frame was malformed.

use anyhow::{ensure, Result};
use serde_json::Value;
use std::time::{Duration, Instant};
use xsw_integration::frames::{self, ip4, ip6, ETH_ARP, ETH_IPV4, ETH_IPV6};
use xsw_integration::{cmd, lab, Host, Lab};

fn guard_of(lab: &Lab, h: &Host) -> Result<Value> {
    let p = lab.port(&h.port)?;
    ensure!(p.is_some(), "port list lacks {}", h.port);
    Ok(p.map(|p| p["antispoof"].clone()).unwrap_or(Value::Null))
}

fn lists(v: &Value, addr: &str, plen: u8) -> bool {
    v.as_array().is_some_and(|a| {
        a.iter().any(|x| {
            x.as_str()
                .is_some_and(|s| s == addr || s == format!("{addr}/{plen}"))
        })
    })
}

fn udp_frame(src_mac: &str, dst_mac: &str, src: &str, dst: &str, dport: u16) -> Vec<u8> {
    let p = frames::ipv4_udp(ip4(src), ip4(dst), 40000, dport, b"antispoof probe");
    frames::eth(dst_mac, src_mac, &[], ETH_IPV4, &p)
}

#[test]
fn antispoof_ipv4_forged_ip_mac_and_arp_are_dropped_dhcp_passes() -> Result<()> {
    let lab = lab!("antispoof", "asp", 165)?;
    let h1 = lab.add_veth_host("h1", 1)?;
    let h2 = lab.add_veth_host("h2", 2)?;
    let h3 = lab.add_veth_host("h3", 3)?;
    lab.start_xswd(&Lab::config_with_ports(&[&h1.port, &h2.port, &h3.port]))?;
    lab.wait_reachable(&h1, &h2, Duration::from_secs(5))?;
    lab.wait_reachable(&h1, &h3, Duration::from_secs(5))?;

    lab.ctl_ok(&[
        "antispoof",
        "set",
        &h1.port,
        "--mac",
        &h1.mac,
        "--ip",
        &h1.ip,
    ])?;
    let g = guard_of(&lab, &h1)?;
    ensure!(
        g["macs"].as_array().is_some_and(|m| m.len() == 1
            && m[0]
                .as_str()
                .is_some_and(|s| s.eq_ignore_ascii_case(&h1.mac)))
            && lists(&g["ipv4"], &h1.ip, 32)
            && g["ipv6"].as_array().is_some_and(|a| a.is_empty())
            && g["restrict_to_port"] == false,
        "port list antispoof of {} after antispoof set: {g}",
        h1.port
    );
    ensure!(
        guard_of(&lab, &h2)?.is_null(),
        "h2 has a guard: {}",
        guard_of(&lab, &h2)?
    );

    // Its own traffic still flows.
    lab.ping_all(&h1, &h2, 3)?;
    lab.ping_all(&h3, &h1, 3)?;
    let u = lab.udp_exchange(&h1, &h2, 50, 2)?;
    ensure!(
        u.sent == 50 && u.received == 50 && u.corrupt == 0,
        "UDP from the guarded h1: {u:?}"
    );

    // Forged source IP: the same UDP frame with h1's own address arrives,
    // with another address it is dropped (spoofed_ip).
    let forged_ip = lab.ip(50);
    let mut ok = lab.capture_as(
        &h2,
        "legit-ip",
        &format!("udp port 9 and src host {}", h1.ip),
        1,
    )?;
    let mut bad = lab.capture_as(
        &h2,
        "forged-ip",
        &format!("udp port 9 and src host {forged_ip}"),
        1,
    )?;
    lab.raw_send(&h1, &udp_frame(&h1.mac, &h2.mac, &h1.ip, &h2.ip, 9), 1)?;
    lab.expect_frame(
        &mut ok,
        Duration::from_secs(3),
        "UDP from h1 with its own source address at h2",
    )?;
    let before = lab.drop_count(&h1.port, "spoofed_ip")?;
    lab.raw_send(&h1, &udp_frame(&h1.mac, &h2.mac, &forged_ip, &h2.ip, 9), 5)?;
    lab.expect_drops(&h1.port, "spoofed_ip", before, 5)?;
    lab.expect_silence(
        &mut bad,
        Duration::from_millis(500),
        "UDP with forged source IP reached h2",
    )?;

    // And with the kernel's own stack: a second address on h1, used as the
    // ping source, gets nothing through.
    cmd::ns_ok(
        &h1.ns,
        &[
            "ip",
            "addr",
            "add",
            &format!("{}/24", lab.ip(51)),
            "dev",
            &h1.ifname,
        ],
    )?;
    let mut bad = lab.capture_as(
        &h2,
        "forged-ping",
        &format!("icmp and src host {}", lab.ip(51)),
        1,
    )?;
    let before = lab.drop_count(&h1.port, "spoofed_ip")?;
    let out = lab.run_in(
        &h1.ns,
        &[
            "ping",
            "-n",
            "-q",
            "-c",
            "2",
            "-i",
            "0.2",
            "-W",
            "1",
            "-I",
            &lab.ip(51),
            &h2.ip,
        ],
        Duration::from_secs(6),
    )?;
    let s = xsw_integration::parse_ping(&out.stdout);
    ensure!(
        s.is_some_and(|s| s.transmitted == 2 && s.received == 0),
        "ping -I {} from h1: {}",
        lab.ip(51),
        out.describe()
    );
    lab.expect_silence(
        &mut bad,
        Duration::from_millis(300),
        "ping with a second, unlisted source address reached h2",
    )?;
    ensure!(
        lab.drop_count(&h1.port, "spoofed_ip")? >= before + 2,
        "spoofed_ip did not count ping -I's 2 echo requests: {}",
        lab.drops(&h1.port)?
    );
    cmd::ns_ok(
        &h1.ns,
        &[
            "ip",
            "addr",
            "del",
            &format!("{}/24", lab.ip(51)),
            "dev",
            &h1.ifname,
        ],
    )?;

    // Forged source MAC (spoofed_mac).
    let other_mac = lab.mac(0x77);
    let mut bad = lab.capture_as(&h2, "forged-mac", &format!("ether src {other_mac}"), 1)?;
    let before = lab.drop_count(&h1.port, "spoofed_mac")?;
    lab.raw_send(&h1, &udp_frame(&other_mac, &h2.mac, &h1.ip, &h2.ip, 9), 5)?;
    lab.expect_drops(&h1.port, "spoofed_mac", before, 5)?;
    lab.expect_silence(
        &mut bad,
        Duration::from_millis(500),
        "frame with forged source MAC reached h2",
    )?;
    ensure!(
        lab.fdb_entries(&other_mac)?.is_empty(),
        "the forged MAC {other_mac} was learned: {:?}",
        lab.fdb_entries(&other_mac)?
    );

    // ARP: a reply claiming h1's own address is delivered; one claiming
    // h2's address, or a MAC that is not h1's, is not (arp_spoof).
    let f = format!(
        "arp and ether src {} and arp[14:4] = 0x{}",
        h1.mac,
        hex_ip(&h1.ip)
    );
    let mut ok = lab.capture_as(&h3, "legit-arp", &f, 1)?;
    let reply = frames::arp(2, &h1.mac, ip4(&h1.ip), &h3.mac, ip4(&h3.ip));
    lab.raw_send(&h1, &frames::eth(&h3.mac, &h1.mac, &[], ETH_ARP, &reply), 1)?;
    lab.expect_frame(
        &mut ok,
        Duration::from_secs(3),
        "ARP reply from h1 for its own address at h3",
    )?;
    let f = format!(
        "arp and ether src {} and arp[14:4] = 0x{}",
        h1.mac,
        hex_ip(&h2.ip)
    );
    let mut bad_ip = lab.capture_as(&h3, "arp-ip", &f, 1)?;
    let mut bad_mac = lab.capture_as(
        &h3,
        "arp-mac",
        &format!("arp and arp[10:4] = 0x{}", hex_mac_tail(&other_mac)),
        1,
    )?;
    let before = lab.drop_count(&h1.port, "arp_spoof")?;
    let claim_ip = frames::arp(2, &h1.mac, ip4(&h2.ip), &h3.mac, ip4(&h3.ip));
    lab.raw_send(
        &h1,
        &frames::eth(&h3.mac, &h1.mac, &[], ETH_ARP, &claim_ip),
        5,
    )?;
    lab.expect_drops(&h1.port, "arp_spoof", before, 5)?;
    let claim_mac = frames::arp(2, &other_mac, ip4(&h1.ip), &h3.mac, ip4(&h3.ip));
    lab.raw_send(
        &h1,
        &frames::eth(&h3.mac, &h1.mac, &[], ETH_ARP, &claim_mac),
        5,
    )?;
    lab.expect_drops(&h1.port, "arp_spoof", before + 5, 5)?;
    lab.expect_silence(
        &mut bad_ip,
        Duration::from_millis(500),
        "ARP reply from h1 claiming h2's address reached h3",
    )?;
    lab.expect_silence(
        &mut bad_mac,
        Duration::from_millis(100),
        "ARP reply from h1 claiming a foreign MAC reached h3",
    )?;

    // DHCP DISCOVER from 0.0.0.0 is a client's first frame: it passes.
    let mut dhcp = lab.capture_as(&h2, "dhcp", "udp dst port 67 and src host 0.0.0.0", 1)?;
    let drops_before = lab.drops(&h1.port)?;
    lab.raw_send(&h1, &frames::dhcp_discover_frame(&h1.mac, 0x78737701), 1)?;
    let line = lab.expect_frame(
        &mut dhcp,
        Duration::from_secs(3),
        "DHCP DISCOVER from the guarded h1 at h2",
    )?;
    ensure!(line.contains("255.255.255.255"), "unexpected frame: {line}");
    ensure!(
        lab.drops(&h1.port)? == drops_before,
        "the DHCP DISCOVER was counted as a drop: {drops_before} -> {}",
        lab.drops(&h1.port)?
    );
    // Still switching h1's own traffic.
    lab.ping_all(&h1, &h2, 3)?;

    // antispoof clear: the forged source IP passes again.
    lab.ctl_ok(&["antispoof", "clear", &h1.port])?;
    ensure!(
        guard_of(&lab, &h1)?.is_null(),
        "antispoof after clear: {}",
        guard_of(&lab, &h1)?
    );
    let mut now_ok = lab.capture_as(
        &h2,
        "cleared",
        &format!("udp port 9 and src host {forged_ip}"),
        1,
    )?;
    let before = lab.drop_count(&h1.port, "spoofed_ip")?;
    lab.raw_send(&h1, &udp_frame(&h1.mac, &h2.mac, &forged_ip, &h2.ip, 9), 1)?;
    lab.expect_frame(
        &mut now_ok,
        Duration::from_secs(3),
        "after antispoof clear, UDP with another source IP at h2",
    )?;
    ensure!(
        lab.drop_count(&h1.port, "spoofed_ip")? == before,
        "spoofed_ip still counting after clear"
    );
    Ok(())
}

/// 198.18.1.2 -> "c6120102" (for tcpdump byte filters).
fn hex_ip(ip: &str) -> String {
    frames::hex(&ip4(ip).octets())
}

/// Last four bytes of a MAC as hex (the first two are the same for every
/// lab MAC), for matching the ARP sender MAC at arp[10:4].
fn hex_mac_tail(mac: &str) -> String {
    frames::hex(&frames::mac(mac)[2..])
}

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

/// fe80:: address derived from `mac` (EUI-64, as the kernel forms it).
fn link_local(mac: &str) -> String {
    let m = frames::mac(mac);
    format!(
        "fe80::{:x}:{:x}:{:x}:{:x}",
        ((m[0] ^ 2) as u16) << 8 | m[1] as u16,
        (m[2] as u16) << 8 | 0xff,
        0xfe00u16 | m[3] as u16,
        (m[4] as u16) << 8 | m[5] as u16
    )
}

#[test]
fn antispoof_ipv6_forged_neighbour_advertisements_are_dropped() -> Result<()> {
    let lab = lab!("antispoof6", "as6", 166)?;
    let h1 = lab.add_veth_host("h1", 1)?;
    let h2 = lab.add_veth_host("h2", 2)?;
    let (a1, a2) = (lab.ip6(1), lab.ip6(2));
    lab.enable_ipv6(&h1, &a1)?;
    lab.enable_ipv6(&h2, &a2)?;
    lab.start_xswd(&Lab::config_with_ports(&[&h1.port, &h2.port]))?;
    lab.ctl_ok(&[
        "antispoof",
        "set",
        &h1.port,
        "--mac",
        &h1.mac,
        "--ip",
        &h1.ip,
        "--ip",
        &a1,
    ])?;
    let g = guard_of(&lab, &h1)?;
    ensure!(
        lists(&g["ipv6"], &a1, 128) && lists(&g["ipv4"], &h1.ip, 32),
        "antispoof of {}: {g}",
        h1.port
    );

    // Its own IPv6 traffic flows: global address, and link-local derived
    // from its listed MAC.
    wait_ping(&lab, &h1, &a2, Duration::from_secs(5))?;
    let s = lab.ping(&h1, &a2, 3)?;
    ensure!(s.received == 3, "ping -6 {a2} from the guarded h1: {s:?}");
    let ll2 = format!("{}%{}", link_local(&h2.mac), h1.ifname);
    let s = lab.ping(&h1, &ll2, 2)?;
    ensure!(
        s.received == 2,
        "ping {ll2} from h1's link-local address: {s:?}"
    );
    lab.ping_all(&h1, &h2, 2)?; // and IPv4

    // Unsolicited NAs: for its own address delivered; for h2's, dropped
    // (nd_spoof). Filter: multicast NA from h1 whose target ends in ::1 / ::2.
    let na_filter = |last: u32| {
        format!("ether src {} and ether dst 33:33:00:00:00:01 and icmp6 and ip6[40] = 136 and ip6[60:4] = {last}", h1.mac)
    };
    let mut ok = lab.capture_as(&h2, "na-own", &na_filter(1), 1)?;
    lab.raw_send(&h1, &frames::na_frame(&h1.mac, ip6(&a1), ip6(&a1)), 1)?;
    lab.expect_frame(
        &mut ok,
        Duration::from_secs(3),
        "NA from h1 for its own address at h2",
    )?;
    let mut bad = lab.capture_as(&h2, "na-other", &na_filter(2), 1)?;
    let before = lab.drop_count(&h1.port, "nd_spoof")?;
    lab.raw_send(&h1, &frames::na_frame(&h1.mac, ip6(&a1), ip6(&a2)), 5)?;
    lab.expect_drops(&h1.port, "nd_spoof", before, 5)?;
    lab.expect_silence(
        &mut bad,
        Duration::from_millis(500),
        "NA from h1 for h2's address reached h2",
    )?;

    // DAD: a neighbour solicitation from :: for an address h1 may take (what
    // a host sends before using it) passes.
    let target = ip6(&a1);
    let mut ns = vec![135u8, 0, 0, 0, 0, 0, 0, 0];
    ns.extend_from_slice(&target.octets());
    let sn = format!(
        "ff02::1:ff{:02x}:{:02x}{:02x}",
        target.octets()[13],
        target.octets()[14],
        target.octets()[15]
    );
    let sn_mac = format!(
        "33:33:ff:{:02x}:{:02x}:{:02x}",
        target.octets()[13],
        target.octets()[14],
        target.octets()[15]
    );
    let p = frames::ipv6_icmpv6(ip6("::"), ip6(&sn), &ns);
    let mut dad = lab.capture_as(
        &h2,
        "dad",
        &format!("ether src {} and ether dst {sn_mac}", h1.mac),
        1,
    )?;
    let drops_before = lab.drops(&h1.port)?;
    lab.raw_send(&h1, &frames::eth(&sn_mac, &h1.mac, &[], ETH_IPV6, &p), 1)?;
    lab.expect_frame(
        &mut dad,
        Duration::from_secs(3),
        "DAD neighbour solicitation from :: at h2",
    )?;
    ensure!(
        lab.drops(&h1.port)? == drops_before,
        "DAD NS counted as a drop: {drops_before} -> {}",
        lab.drops(&h1.port)?
    );

    // Forged IPv6 source: a second, unlisted address used for ping.
    let extra = lab.ip6(0x50);
    cmd::ns_ok(
        &h1.ns,
        &[
            "ip",
            "-6",
            "addr",
            "add",
            &format!("{extra}/64"),
            "dev",
            &h1.ifname,
            "nodad",
        ],
    )?;
    let mut bad = lab.capture_as(
        &h2,
        "src6",
        &format!("icmp6 and src host {extra} and ip6[40] = 128"),
        1,
    )?;
    let before = lab.drop_count(&h1.port, "spoofed_ip")?;
    let out = lab.run_in(
        &h1.ns,
        &[
            "ping", "-n", "-q", "-c", "2", "-i", "0.2", "-W", "1", "-I", &extra, &a2,
        ],
        Duration::from_secs(6),
    )?;
    let s = xsw_integration::parse_ping(&out.stdout);
    ensure!(
        s.is_some_and(|s| s.transmitted == 2 && s.received == 0),
        "ping -I {extra}: {}",
        out.describe()
    );
    lab.expect_silence(
        &mut bad,
        Duration::from_millis(300),
        "echo request from an unlisted IPv6 source reached h2",
    )?;
    ensure!(
        lab.drop_count(&h1.port, "spoofed_ip")? >= before + 2,
        "spoofed_ip did not count the 2 echo requests: {}",
        lab.drops(&h1.port)?
    );
    ensure!(lab.xswd_running(), "xswd exited");
    Ok(())
}

#[test]
fn antispoof_restrict_to_port_keeps_other_addresses_away() -> Result<()> {
    let lab = lab!("antispoofr", "asr", 167)?;
    let h1 = lab.add_veth_host("h1", 1)?;
    let h2 = lab.add_veth_host("h2", 2)?;
    let h3 = lab.add_veth_host("h3", 3)?;
    lab.start_xswd(&Lab::config_with_ports(&[&h1.port, &h2.port, &h3.port]))?;
    lab.wait_reachable(&h1, &h2, Duration::from_secs(5))?;
    lab.wait_reachable(&h1, &h3, Duration::from_secs(5))?;
    lab.ctl_ok(&[
        "antispoof",
        "set",
        &h2.port,
        "--mac",
        &h2.mac,
        "--ip",
        &h2.ip,
        "--restrict-to-port",
    ])?;
    ensure!(
        guard_of(&lab, &h2)?["restrict_to_port"] == true,
        "antispoof of {}: {}",
        h2.port,
        guard_of(&lab, &h2)?
    );

    // Its own address still reaches it.
    lab.ping_all(&h1, &h2, 3)?;
    lab.ping_all(&h2, &h3, 2)?;

    // Unicast to h2's MAC for an address that is not h2's: dropped on the way
    // to h2 (not_for_port, counted on h2's port). By ping through a static
    // neighbour entry, and by a hand-made UDP frame for h3's address.
    let ghost = lab.ip(99);
    cmd::ns_ok(
        &h1.ns,
        &[
            "ip",
            "neigh",
            "replace",
            &ghost,
            "lladdr",
            &h2.mac,
            "dev",
            &h1.ifname,
            "nud",
            "permanent",
        ],
    )?;
    let mut bad = lab.capture_as(
        &h2,
        "notmine",
        &format!(
            "ether dst {} and (dst host {ghost} or dst host {})",
            h2.mac, h3.ip
        ),
        1,
    )?;
    let before = lab.drop_count(&h2.port, "not_for_port")?;
    let s = lab.ping(&h1, &ghost, 3)?;
    ensure!(
        s.transmitted == 3 && s.received == 0,
        "ping {ghost} via h2's MAC: {s:?}"
    );
    lab.expect_drops(&h2.port, "not_for_port", before, 3)?;
    lab.raw_send(&h1, &udp_frame(&h1.mac, &h2.mac, &h1.ip, &h3.ip, 9), 5)?;
    lab.expect_drops(&h2.port, "not_for_port", before + 3, 5)?;
    lab.expect_silence(
        &mut bad,
        Duration::from_millis(500),
        "unicast for another address reached the restricted h2",
    )?;

    // Broadcast is not restricted.
    let mut bc = lab.capture_as(&h2, "bcast", "udp port 9 and dst host 255.255.255.255", 1)?;
    lab.raw_send(
        &h1,
        &udp_frame(&h1.mac, "ff:ff:ff:ff:ff:ff", &h1.ip, "255.255.255.255", 9),
        1,
    )?;
    lab.expect_frame(
        &mut bc,
        Duration::from_secs(3),
        "UDP broadcast at the restricted h2",
    )?;

    // antispoof clear: h2 gets them again.
    lab.ctl_ok(&["antispoof", "clear", &h2.port])?;
    let mut now_ok = lab.capture_as(&h2, "cleared", &format!("icmp and dst host {ghost}"), 1)?;
    let _ = lab.ping(&h1, &ghost, 1)?;
    lab.expect_frame(
        &mut now_ok,
        Duration::from_secs(3),
        "after antispoof clear, ping for another address at h2",
    )?;
    ensure!(lab.xswd_running(), "xswd exited");
    Ok(())
}

/// `--restrict-to-port` with an IPv6 address: unicast to the guarded port's
/// MAC for another IPv6 address is dropped (`not_for_port`), its own IPv6
/// address (and neighbour discovery, which is multicast) still reach it.
#[test]
fn antispoof_restrict_to_port_keeps_other_ipv6_addresses_away() -> Result<()> {
    let lab = lab!("antispoofr6", "asr6", 211)?;
    let h1 = lab.add_veth_host("h1", 1)?;
    let h2 = lab.add_veth_host("h2", 2)?;
    let (h1_ip6, h2_ip6) = (lab.ip6(1), lab.ip6(2));
    lab.enable_ipv6(&h1, &h1_ip6)?;
    lab.enable_ipv6(&h2, &h2_ip6)?;
    lab.start_xswd(&Lab::config_with_ports(&[&h1.port, &h2.port]))?;
    lab.wait_reachable(&h1, &h2, Duration::from_secs(5))?;
    lab.ctl_ok(&[
        "antispoof",
        "set",
        &h2.port,
        "--mac",
        &h2.mac,
        "--ip",
        &h2.ip,
        "--ip",
        &h2_ip6,
        "--restrict-to-port",
    ])?;
    let ping6 = |count: u32| -> Result<bool> {
        let c = count.to_string();
        Ok(lab
            .run_in(
                &h1.ns,
                &[
                    "ping", "-6", "-n", "-q", "-c", &c, "-i", "0.2", "-W", "1", &h2_ip6,
                ],
                Duration::from_secs(10),
            )?
            .success())
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while !ping6(1)? {
        ensure!(
            Instant::now() < deadline,
            "h1 cannot ping h2's own IPv6 address {h2_ip6} through the restricted port:\n{}",
            lab.xswd_log()
        );
    }
    ensure!(ping6(3)?, "ping -6 to h2's own address lost replies");

    // Echo requests to h2's MAC for an IPv6 address that is not h2's.
    let ghost = lab.ip6(99);
    let echo = [128u8, 0, 0, 0, 0x12, 0x34, 0, 1, b'x', b's', b'w', b'6'];
    let to_ghost = frames::eth(
        &h2.mac,
        &h1.mac,
        &[],
        ETH_IPV6,
        &frames::ipv6_icmpv6(ip6(&h1_ip6), ip6(&ghost), &echo),
    );
    let mut bad = lab.capture_as(&h2, "notmine6", &format!("ip6 dst host {ghost}"), 1)?;
    let before = lab.drop_count(&h2.port, "not_for_port")?;
    lab.raw_send(&h1, &to_ghost, 4)?;
    lab.expect_drops(&h2.port, "not_for_port", before, 4)?;
    lab.expect_silence(
        &mut bad,
        Duration::from_millis(500),
        "IPv6 unicast for another address reached the restricted h2",
    )?;

    // The same frame for h2's own address is delivered.
    let to_h2 = frames::eth(
        &h2.mac,
        &h1.mac,
        &[],
        ETH_IPV6,
        &frames::ipv6_icmpv6(ip6(&h1_ip6), ip6(&h2_ip6), &echo),
    );
    let mut good = lab.capture_as(&h2, "mine6", "icmp6 and ip6[40] == 128", 1)?;
    lab.raw_send(&h1, &to_h2, 1)?;
    lab.expect_frame(
        &mut good,
        Duration::from_secs(3),
        "IPv6 echo for h2's own address at h2",
    )?;
    ensure!(
        lab.drop_count(&h2.port, "not_for_port")? == before + 4,
        "a frame for h2's own IPv6 address was counted as not_for_port"
    );
    ensure!(lab.xswd_running(), "xswd exited");
    Ok(())
}
