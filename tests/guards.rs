//! Guards against hostile tenants, through the real xswd: storm control cuts a
//! broadcast storm from one port to its limit and counts the rest while a
//! tenant-mate and another tenant keep their unicast; the RA guard and DHCP
//! guard keep rogue router advertisements and DHCP offers from untrusted ports
//! away from tenant-mates (also a unicast offer that the fast path's L2 entry
//! would otherwise carry) and deliver them from trusted ports; a DHCP client
//! message from a guarded port must name one of the port's MACs; and every
//! setting survives a restart. Every dropped frame has a delivered twin, so
//! silence means the guard dropped it, not that the frame was lost.

use anyhow::{ensure, Result};
use std::time::{Duration, Instant};
use xsw_integration::frames::{self, ip4, ip6, ETH_IPV4, ETH_IPV6};
use xsw_integration::{lab, Host, Lab, PortCounters};

/// An ethertype nobody else sends in a lab: counts in captures are exact.
const ETH_EXPERIMENTAL: u16 = 0x88b5;

/// A router advertisement from `h`'s link-local address to all nodes, naming
/// itself default router (lifetime 1800 s), as a rogue guest would send it.
fn router_advertisement(h: &Host, dst_mac: &str, dst_ip: &str) -> Vec<u8> {
    let ra = [
        134, 0, 0, 0, 64, 0, 0x07, 0x08, 0, 0, 0, 0, 0, 0, 0, 0, // hop limit, lifetime
        1, 1, 0, 0, 0, 0, 0, 0, // source link-layer option, MAC below
    ];
    let mut ra = ra.to_vec();
    ra[18..24].copy_from_slice(&frames::mac(&h.mac));
    let p = frames::ipv6_icmpv6(ip6(&link_local(&h.mac)), ip6(dst_ip), &ra);
    frames::eth(dst_mac, &h.mac, &[], ETH_IPV6, &p)
}

/// fe80::/64 with the modified EUI-64 of `mac`.
fn link_local(mac: &str) -> String {
    let m = frames::mac(mac);
    format!(
        "fe80::{:02x}{:02x}:{:02x}ff:fe{:02x}:{:02x}{:02x}",
        m[0] ^ 2,
        m[1],
        m[2],
        m[3],
        m[4],
        m[5]
    )
}

/// A DHCPOFFER from `server` (its own address, naming itself router and DNS)
/// to `dst_mac`, for client MAC `client`.
fn dhcp_offer(server: &Host, dst_mac: &str, client: &str) -> Vec<u8> {
    let mut b = vec![2, 1, 6, 0, 0x78, 0x73, 0x77, 0x01, 0, 0, 0x80, 0];
    b.extend_from_slice(&[0u8; 4]); // ciaddr
    b.extend_from_slice(&ip4(&server.ip).octets().map(|o| o ^ 0x80)); // yiaddr
    b.extend_from_slice(&ip4(&server.ip).octets()); // siaddr
    b.extend_from_slice(&[0u8; 4]); // giaddr
    b.extend_from_slice(&frames::mac(client));
    b.extend_from_slice(&[0u8; 10 + 64 + 128]);
    b.extend_from_slice(&[0x63, 0x82, 0x53, 0x63, 53, 1, 2]); // DHCPOFFER
    let me = ip4(&server.ip).octets();
    for option in [3u8, 6, 54] {
        // router, DNS, server identifier: all the rogue itself
        b.extend_from_slice(&[option, 4]);
        b.extend_from_slice(&me);
    }
    b.push(255);
    let p = frames::ipv4_udp(ip4(&server.ip), ip4("255.255.255.255"), 67, 68, &b);
    frames::eth(dst_mac, &server.mac, &[], ETH_IPV4, &p)
}

fn counters(lab: &Lab, h: &Host) -> Result<PortCounters> {
    PortCounters::from_stats(&lab.stats()?, &h.port)
}

#[test]
fn a_broadcast_storm_is_cut_to_the_default_limit_while_tenants_keep_their_unicast() -> Result<()> {
    let lab = lab!("guards", "gst", 226)?;
    let storm = lab.add_veth_host("stm", 1)?;
    let mate = lab.add_veth_host("mt", 2)?;
    let mate2 = lab.add_veth_host("mt2", 3)?;
    let quiet = lab.add_veth_host("qt", 4)?;
    let other = lab.add_veth_host("ot", 5)?;
    let other2 = lab.add_veth_host("ot2", 6)?;
    // Storm control as it comes out of the box: no [storm_control] section.
    let mut config = Lab::config_with_ports(&[&storm.port, &mate.port, &mate2.port, &quiet.port]);
    config.push_str("[[tenant]]\nname = \"b\"\n\n");
    for h in [&other, &other2] {
        config.push_str(&format!(
            "[[port]]\nname = \"{}\"\ntenant = \"b\"\n\n",
            h.port
        ));
    }
    lab.start_xswd(&config)?;
    lab.wait_reachable(&mate, &mate2, Duration::from_secs(5))?;
    lab.wait_reachable(&other, &other2, Duration::from_secs(5))?;
    let shown = lab.ctl_json(&["storm", "show"])?;
    ensure!(
        shown["default"]["broadcast"] == 1000 && shown["ports"][&storm.port]["broadcast"] == 1000,
        "storm show: {shown}"
    );

    // Baselines: unicast in both tenants with no storm.
    let quiet_mate = lab.udp_exchange(&mate, &mate2, 200, 5)?;
    let quiet_other = lab.udp_exchange(&other, &other2, 200, 5)?;

    let before_storm = counters(&lab, &storm)?;
    let before_quiet = counters(&lab, &quiet)?;
    let before_drops = lab.drop_count(&storm.port, "storm_broadcast")?;
    let frame = frames::eth(
        "ff:ff:ff:ff:ff:ff",
        &storm.mac,
        &[],
        ETH_EXPERIMENTAL,
        b"broadcast storm",
    );
    let nettool = lab.bins.nettool.display().to_string();
    let hex = frames::hex(&frame);
    let started = Instant::now();
    let mut sender = lab.spawn_in(
        &storm.ns,
        "storm",
        &[
            &nettool,
            "raw-send",
            "--iface",
            &storm.ifname,
            "--frame",
            &hex,
            "--count",
            "600000",
            "--interval-ms",
            "0",
            "--timeout",
            "60",
        ],
    )?;
    // Unicast in both tenants while the storm runs.
    let stormy_mate = lab.udp_exchange(&mate, &mate2, 200, 5)?;
    let stormy_other = lab.udp_exchange(&other, &other2, 200, 5)?;
    let status = sender.wait_exit(Duration::from_secs(60));
    let elapsed = started.elapsed().as_secs_f64();
    ensure!(
        status.is_some_and(|s| s.success()),
        "raw-send did not finish: {}",
        sender.log_text()
    );
    std::thread::sleep(Duration::from_millis(500));

    let sent = counters(&lab, &storm)?.rx_frames - before_storm.rx_frames;
    let dropped = lab.drop_count(&storm.port, "storm_broadcast")? - before_drops;
    let delivered = counters(&lab, &quiet)?.tx_frames - before_quiet.tx_frames;
    let rate = sent as f64 / elapsed;
    eprintln!(
        "storm: {sent} broadcasts in {elapsed:.2} s ({rate:.0}/s); {dropped} dropped as \
         storm_broadcast, {delivered} reached a quiet tenant-mate; unicast UDP 200 x 5 ms \
         within the tenant: {quiet_mate:?} quiet, {stormy_mate:?} under the storm; \
         in the other tenant: {quiet_other:?} quiet, {stormy_other:?} under the storm"
    );
    // The limit (1,000/s) over the storm's length, plus the 100-frame burst,
    // plus a few broadcasts of the other hosts (ARP) on the quiet port.
    let allowed = (1000.0 * elapsed) as u64 + 100 + 20;
    ensure!(
        delivered <= allowed,
        "{delivered} broadcasts reached a tenant-mate in {elapsed:.2} s, limit {allowed}"
    );
    ensure!(sent >= 100_000, "only {sent} storm frames reached xsw");
    ensure!(
        delivered >= 500,
        "only {delivered} broadcasts got through: the limit cut more than it should"
    );
    // Every storm frame is either flooded (and reached the quiet mate) or counted.
    ensure!(
        dropped + delivered >= sent && dropped + delivered <= sent + 20,
        "sent {sent}, dropped {dropped}, delivered {delivered}: counters do not add up"
    );
    for (what, u) in [("tenant-mate", stormy_mate), ("other tenant", stormy_other)] {
        ensure!(
            u.sent == 200 && u.received == 200 && u.corrupt == 0,
            "unicast of the {what} under the storm: {u:?}"
        );
    }
    Ok(())
}

#[test]
fn rogue_router_advertisements_and_dhcp_offers_reach_nobody_until_the_port_is_trusted() -> Result<()>
{
    let lab = lab!("guards", "grg", 227)?;
    let rogue = lab.add_veth_host("rog", 1)?;
    let victim = lab.add_veth_host("vic", 2)?;
    lab.start_xswd(&Lab::config_with_ports(&[&rogue.port, &victim.port]))?;
    lab.wait_reachable(&rogue, &victim, Duration::from_secs(5))?;
    // Traffic between the two makes the fast path's L2 entry for the pair: a
    // unicast offer with these MACs would be switched by it in the kernel.
    lab.ping_all(&rogue, &victim, 3)?;
    let flows = lab.ctl_ok(&["flows"])?;
    ensure!(
        flows.to_lowercase().contains(&rogue.mac.to_lowercase()),
        "no flow entry from the rogue's MAC, the unicast case tests nothing:\n{flows}"
    );

    let ra = router_advertisement(&rogue, "33:33:00:00:00:01", "ff02::1");
    let offer = dhcp_offer(&rogue, "ff:ff:ff:ff:ff:ff", &victim.mac);
    let unicast_offer = dhcp_offer(&rogue, &victim.mac, &victim.mac);
    let mut ra_cap = lab.capture_as(&victim, "ra", "icmp6 and ip6[40] == 134", 10)?;
    let mut dhcp_cap = lab.capture_as(&victim, "dhcp", "udp src port 67", 10)?;
    let (ra_before, dhcp_before) = (
        lab.drop_count(&rogue.port, "ra_guard")?,
        lab.drop_count(&rogue.port, "dhcp_guard")?,
    );
    lab.raw_send(&rogue, &ra, 3)?;
    lab.raw_send(&rogue, &offer, 3)?;
    lab.raw_send(&rogue, &unicast_offer, 3)?;
    lab.expect_silence(
        &mut ra_cap,
        Duration::from_secs(2),
        "rogue RA from an untrusted port",
    )?;
    lab.expect_silence(
        &mut dhcp_cap,
        Duration::from_millis(500),
        "rogue DHCP offers from an untrusted port",
    )?;
    let ra_after = lab.expect_drops(&rogue.port, "ra_guard", ra_before, 3)?;
    let dhcp_after = lab.expect_drops(&rogue.port, "dhcp_guard", dhcp_before, 6)?;

    // Trusted (the port of the tenants' router), the same frames arrive.
    lab.ctl_ok(&["port", "trust", &rogue.port, "ra,dhcp"])?;
    let row = lab.port(&rogue.port)?.unwrap_or_default();
    ensure!(
        row["trust"] == serde_json::json!(["ra", "dhcp"]),
        "port list after port trust: {row}"
    );
    lab.raw_send(&rogue, &ra, 1)?;
    lab.expect_frame(
        &mut ra_cap,
        Duration::from_secs(3),
        "RA from a trusted port",
    )?;
    lab.raw_send(&rogue, &offer, 1)?;
    lab.expect_frame(
        &mut dhcp_cap,
        Duration::from_secs(3),
        "offer from a trusted port",
    )?;
    lab.raw_send(&rogue, &unicast_offer, 1)?;
    lab.expect_frame(
        &mut dhcp_cap,
        Duration::from_secs(3),
        "unicast offer, trusted",
    )?;
    lab.expect_drops(&rogue.port, "ra_guard", ra_after, 0)?;
    lab.expect_drops(&rogue.port, "dhcp_guard", dhcp_after, 0)?;

    // And untrusted again: dropped again.
    lab.ctl_ok(&["port", "trust", &rogue.port, "none"])?;
    lab.raw_send(&rogue, &unicast_offer, 2)?;
    lab.expect_silence(
        &mut dhcp_cap,
        Duration::from_secs(2),
        "offer after trust none",
    )?;
    lab.expect_drops(&rogue.port, "dhcp_guard", dhcp_after, 2)?;
    Ok(())
}

#[test]
fn a_dhcp_discover_for_a_foreign_mac_is_dropped_from_a_guarded_port() -> Result<()> {
    let lab = lab!("guards", "gdc", 228)?;
    let guest = lab.add_veth_host("gst", 1)?;
    let server = lab.add_veth_host("srv", 2)?;
    lab.start_xswd(&Lab::config_with_ports(&[&guest.port, &server.port]))?;
    lab.wait_reachable(&guest, &server, Duration::from_secs(5))?;
    lab.ctl_ok(&[
        "antispoof",
        "set",
        &guest.port,
        "--mac",
        &guest.mac,
        "--ip",
        &guest.ip,
    ])?;
    let mut cap = lab.capture_as(&server, "discover", "udp dst port 67", 10)?;
    let before = lab.drop_count(&guest.port, "dhcp_spoof")?;
    // The starvation pattern: the guest's own source MAC, other clients' chaddr.
    for i in 0..4u8 {
        let foreign = format!("02:99:00:00:00:{i:02x}");
        let mut frame = frames::dhcp_discover_frame(&foreign, 0x7873_7700 + u32::from(i));
        frame[6..12].copy_from_slice(&frames::mac(&guest.mac));
        lab.raw_send(&guest, &frame, 1)?;
    }
    lab.expect_silence(
        &mut cap,
        Duration::from_secs(2),
        "discover for foreign MACs",
    )?;
    lab.expect_drops(&guest.port, "dhcp_spoof", before, 4)?;
    // Its own chaddr passes.
    lab.raw_send(
        &guest,
        &frames::dhcp_discover_frame(&guest.mac, 0x78737799),
        1,
    )?;
    lab.expect_frame(
        &mut cap,
        Duration::from_secs(3),
        "discover for the guest's MAC",
    )?;
    lab.expect_drops(&guest.port, "dhcp_spoof", before, 4)?;
    Ok(())
}

#[test]
fn guard_settings_survive_a_restart() -> Result<()> {
    let lab = lab!("guards", "grs", 229)?;
    let router = lab.add_veth_host("rtr", 1)?;
    let guest = lab.add_veth_host("gst", 2)?;
    let mate = lab.add_veth_host("mt", 3)?;
    lab.start_xswd(&Lab::config_with_ports(&[
        &router.port,
        &guest.port,
        &mate.port,
    ]))?;
    lab.wait_reachable(&guest, &mate, Duration::from_secs(5))?;
    lab.ctl_ok(&["port", "trust", &router.port, "ra"])?;
    lab.ctl_ok(&["storm", "set", "--multicast", "300"])?;
    lab.ctl_ok(&["storm", "set", "--port", &guest.port, "--broadcast", "50"])?;
    // Bad input changes nothing.
    ensure!(!lab.ctl(&["port", "trust", &router.port, "bgp"])?.success());
    ensure!(!lab
        .ctl(&["storm", "set", "--port", "nosuchport", "--broadcast", "5"])?
        .success());
    ensure!(!lab.ctl(&["storm", "set", "--inherit"])?.success());
    let before = lab.ctl_json(&["storm", "show"])?;

    lab.kill_xswd()?;
    let saved = std::fs::read_to_string(lab.config_path())?;
    ensure!(
        saved.contains("trust = [\"ra\"]")
            && saved.contains("[storm_control]")
            && saved.contains("[port.storm_control]"),
        "the config file lacks the guard settings:\n{saved}"
    );
    lab.relaunch_xswd()?;
    let after = lab.ctl_json(&["storm", "show"])?;
    ensure!(
        after == before
            && after["default"]["multicast"] == 300
            && after["default"]["broadcast"] == 1000
            && after["ports"][&guest.port]["broadcast"] == 50
            && after["ports"][&guest.port]["multicast"] == 300,
        "storm control after a restart: {after}, before: {before}"
    );
    let row = lab.port(&router.port)?.unwrap_or_default();
    ensure!(
        row["trust"] == serde_json::json!(["ra"]),
        "router after restart: {row}"
    );

    // And they act: the router's RA arrives, the guest's does not.
    let mut cap = lab.capture_as(&mate, "ra", "icmp6 and ip6[40] == 134", 10)?;
    let before = lab.drop_count(&guest.port, "ra_guard")?;
    lab.raw_send(
        &guest,
        &router_advertisement(&guest, "33:33:00:00:00:01", "ff02::1"),
        2,
    )?;
    lab.expect_silence(
        &mut cap,
        Duration::from_secs(2),
        "the guest's RA after a restart",
    )?;
    lab.expect_drops(&guest.port, "ra_guard", before, 2)?;
    lab.raw_send(
        &router,
        &router_advertisement(&router, "33:33:00:00:00:01", "ff02::1"),
        1,
    )?;
    lab.expect_frame(
        &mut cap,
        Duration::from_secs(3),
        "the router's RA after a restart",
    )?;

    // Back to the default: the port's own limit goes, the file follows.
    lab.ctl_ok(&["storm", "set", "--port", &guest.port, "--inherit"])?;
    let shown = lab.ctl_json(&["storm", "show"])?;
    ensure!(
        shown["ports"][&guest.port]["broadcast"] == 1000,
        "after --inherit: {shown}"
    );
    let saved = std::fs::read_to_string(lab.config_path())?;
    ensure!(
        !saved.contains("[port.storm_control]"),
        "the port's own limits are still in the file:\n{saved}"
    );

    // An edited file's [storm_control] is applied by a reload, to every port
    // that follows the default.
    ensure!(
        saved.contains("broadcast = 1000"),
        "no default broadcast limit:\n{saved}"
    );
    std::fs::write(
        lab.config_path(),
        saved.replacen("broadcast = 1000", "broadcast = 700", 1),
    )?;
    lab.ctl_ok(&["config", "reload"])?;
    let shown = lab.ctl_json(&["storm", "show"])?;
    ensure!(
        shown["default"]["broadcast"] == 700
            && shown["ports"][&guest.port]["broadcast"] == 700
            && shown["ports"][&router.port]["broadcast"] == 700,
        "after a reload with broadcast = 700: {shown}"
    );
    Ok(())
}
