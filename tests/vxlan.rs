//! VXLAN tunnel ports between hosts. Each "host" is a network namespace with its own
//! switch; the two are joined by a veth underlay (192.0.2.1 on host A, the lab's switch
//! namespace, and 192.0.2.2 on host B). Tenants' endpoints hang off each switch.
//!
//! - two xswd instances carry two tenants (VNIs 100 and 200, the same IP addresses in
//!   both) between the hosts: ping, UDP and TCP both ways, ARP across, no leak between
//!   tenants, MACs learned with their remote endpoint, too-big frames counted, and the
//!   tunnels come back after a restart from the config file;
//! - one xswd and a Linux kernel vxlan device plus a bridge: both ways, the kernel learns
//!   xsw's endpoint, and xsw polices a hostile guest behind the remote host (forged MAC,
//!   forged IP, ARP spoof) with the tunnel port's anti-spoofing;
//! - malformed VXLAN, a foreign VNI and an unknown remote are dropped and counted;
//! - floods go to every remote, a learned MAC's unicast to its remote only;
//! - an IPv6 underlay to a kernel vxlan device (which checks the outer UDP checksum);
//! - bad tunnel settings are refused and leave nothing behind;
//! - one xsw and Open vSwitch's userspace VXLAN (no kernel module needed) reach each other.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use serde_json::Value;
use xsw_integration::cmd::{self, Proc};
use xsw_integration::counters::check_identity;
use xsw_integration::frames::{self, ip4};
use xsw_integration::tenancy::port_drops;
use xsw_integration::{lab, Host, Lab};

const A_UNDERLAY: &str = "192.0.2.1";
const B_UNDERLAY: &str = "192.0.2.2";
/// Enough for a 1500-byte inner packet: 14 + 1500 + 8 (VXLAN) + 8 (UDP) + 20 (IPv4).
const UNDERLAY_MTU: &str = "1550";

/// The veth between the two hosts: `b` is host B's end (its namespace is host B), and
/// `b.port` host A's end, in the lab's switch namespace.
fn underlay(lab: &Lab, mtu: &str) -> Result<Host> {
    let b = lab.add_veth_host("hb", 200)?;
    cmd::sh_ok(&[
        "ip",
        "-n",
        &lab.sw,
        "addr",
        "add",
        "192.0.2.1/24",
        "dev",
        &b.port,
    ])?;
    cmd::sh_ok(&["ip", "-n", &lab.sw, "link", "set", &b.port, "mtu", mtu])?;
    cmd::ns_ok(
        &b.ns,
        &["ip", "addr", "add", "192.0.2.2/24", "dev", &b.ifname],
    )?;
    cmd::ns_ok(&b.ns, &["ip", "link", "set", &b.ifname, "mtu", mtu])?;
    Ok(b)
}

/// A 1500-byte underlay where host A's end has MAC `a_mac` (hand-made frames are sent to
/// it) and host B also owns 192.0.2.3 (a second remote, or an address no tunnel knows).
fn underlay_with_third_address(lab: &Lab, a_mac: &str) -> Result<Host> {
    let b = underlay(lab, "1500")?;
    cmd::sh_ok(&[
        "ip", "-n", &lab.sw, "link", "set", &b.port, "address", a_mac,
    ])?;
    cmd::ns_ok(
        &b.ns,
        &["ip", "addr", "add", "192.0.2.3/24", "dev", &b.ifname],
    )?;
    Ok(b)
}

/// Moves `h`'s switch-side interface from host A's namespace to host B's.
fn move_to_b(lab: &Lab, h: &Host, b: &Host) -> Result<()> {
    cmd::sh_ok(&["ip", "-n", &lab.sw, "link", "set", &h.port, "netns", &b.ns])?;
    cmd::ns_ok(&b.ns, &["ip", "link", "set", &h.port, "up"])?;
    Ok(())
}

/// The second xswd, in host B's namespace.
struct PeerSwitch<'a> {
    lab: &'a Lab,
    socket: PathBuf,
    process: Proc,
}

impl<'a> PeerSwitch<'a> {
    fn start(lab: &'a Lab, b: &Host) -> Result<PeerSwitch<'a>> {
        let socket = lab.dir.join("peer.sock");
        let config = lab.dir.join("peer.toml");
        std::fs::write(&config, "")?;
        let xswd = lab.bins.xswd()?.display().to_string();
        let process = lab.spawn_in(
            &b.ns,
            "xswd-peer",
            &[
                &xswd,
                "--socket",
                &socket.display().to_string(),
                "--config",
                &config.display().to_string(),
            ],
        )?;
        let peer = PeerSwitch {
            lab,
            socket,
            process,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !peer.ctl(&["status"])?.success() {
            ensure!(
                Instant::now() < deadline,
                "the peer xswd did not answer within 10 s:\n{}",
                peer.process.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(peer)
    }

    fn ctl(&self, args: &[&str]) -> Result<cmd::Output> {
        let socket = self.socket.display().to_string();
        let ctl = self.lab.bins.xswctl()?.display().to_string();
        let mut argv = vec![ctl.as_str(), "--socket", socket.as_str()];
        argv.extend_from_slice(args);
        cmd::run_args(&argv, Duration::from_secs(10))
    }

    fn ctl_ok(&self, args: &[&str]) -> Result<String> {
        let out = self.ctl(args)?;
        ensure!(
            out.success(),
            "peer: {}\npeer xswd log:\n{}",
            out.describe(),
            self.process.log_text()
        );
        Ok(out.stdout)
    }

    fn ctl_json(&self, args: &[&str]) -> Result<Value> {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        Ok(serde_json::from_str(&self.ctl_ok(&a)?)?)
    }
}

/// Runs the same commands on both switches (their underlay addresses swapped).
fn on_both(lab: &Lab, peer: &PeerSwitch, commands: &[&[&str]]) -> Result<()> {
    for command in commands {
        lab.ctl_ok(command)?;
        let swapped: Vec<&str> = command
            .iter()
            .map(|a| match *a {
                A_UNDERLAY => B_UNDERLAY,
                B_UNDERLAY => A_UNDERLAY,
                other => other,
            })
            .collect();
        peer.ctl_ok(&swapped)?;
    }
    Ok(())
}

/// 50 UDP datagrams from `x` to `y`, every one back intact.
fn udp_all(lab: &Lab, x: &Host, y: &Host) -> Result<()> {
    let udp = lab.udp_exchange(x, y, 50, 2)?;
    ensure!(
        udp.received == udp.sent && udp.corrupt == 0,
        "UDP {} -> {}: {udp:?}",
        x.name,
        y.name
    );
    Ok(())
}

/// The lowercased MAC `ip` resolves to in `h`'s neighbour table.
fn neighbour(lab: &Lab, h: &Host, ip: &str) -> Result<String> {
    let out = lab.run_in(
        &h.ns,
        &["ip", "-j", "neigh", "show", ip, "dev", &h.ifname],
        Duration::from_secs(5),
    )?;
    let v: Value = serde_json::from_str(out.stdout.trim()).unwrap_or(Value::Null);
    v.as_array()
        .and_then(|a| a.first())
        .and_then(|n| n["lladdr"].as_str())
        .map(str::to_lowercase)
        .ok_or_else(|| anyhow!("{} has no neighbour entry for {ip}: {}", h.name, out.stdout))
}

/// The `fdb show --json` row for `mac` in `tenant`.
fn fdb_row(fdb: &Value, mac: &str, tenant: &str) -> Option<Value> {
    fdb.as_array()?
        .iter()
        .find(|e| e["mac"].as_str() == Some(mac) && e["tenant"].as_str() == Some(tenant))
        .cloned()
}

fn counter(stats: &Value, port: &str, key: &str) -> Result<u64> {
    stats["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"].as_str() == Some(port))
        .and_then(|p| p[key].as_u64())
        .ok_or_else(|| anyhow!("stats lack {key} of {port}: {stats}"))
}

fn drops(stats: &Value, port: &str, reason: &str) -> Result<u64> {
    port_drops(stats, port)?[reason]
        .as_u64()
        .ok_or_else(|| anyhow!("no drop counter {reason} on {port}"))
}

/// Polls `stats` until `check` holds (5 s at most); the error shows the port's drops.
fn wait_for_stats(
    lab: &Lab,
    port: &str,
    what: &str,
    check: impl Fn(&Value) -> Result<bool>,
) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let now = lab.ctl_json(&["stats"])?;
        if check(&now)? {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("{what}: {port} drops {}", port_drops(&now, port)?);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `ping_all`, whose error adds the drops on the ports involved and the workers' frames.
fn ping_explained(lab: &Lab, from: &Host, to: &Host, count: u32, ports: &[&str]) -> Result<()> {
    let Err(e) = lab.ping_all(from, to, count) else {
        return Ok(());
    };
    let stats = lab.ctl_json(&["stats"])?;
    let drops: Vec<String> = ports
        .iter()
        .map(|p| Ok(format!("{p}: {}", port_drops(&stats, p)?)))
        .collect::<Result<_>>()?;
    bail!("{e}\n{}\nworkers: {}", drops.join("\n"), stats["workers"])
}

/// A VXLAN header (flags, VNI, last reserved byte) and the inner frame after it.
fn vxlan_payload(flags: u8, vni: u32, last: u8, inner: &[u8]) -> Vec<u8> {
    let v = vni.to_be_bytes();
    let mut d = vec![flags, 0, 0, 0, v[1], v[2], v[3], last];
    d.extend_from_slice(inner);
    d
}

/// An underlay frame from host B's veth to host A's, UDP to port 4789 from `src_ip`.
fn underlay_frame(a_mac: &str, b_mac: &str, src_ip: &str, payload: &[u8]) -> Vec<u8> {
    frames::eth(
        a_mac,
        b_mac,
        &[],
        0x0800,
        &frames::ipv4_udp(ip4(src_ip), ip4(A_UNDERLAY), 50000, 4789, payload),
    )
}

#[test]
fn two_switches_carry_two_tenants_between_hosts() -> Result<()> {
    let lab = lab!("vxlan", "vx", 171)?;
    let b = underlay(&lab, UNDERLAY_MTU)?;
    let (ip_x, ip_y) = (lab.ip(1), lab.ip(2));
    // Tenant web: h1 on host A, h2 on host B. Tenant db: h3 on A, h4 on B, with the same
    // addresses as web's and other MACs.
    let h1 = lab.add_veth_host_ip("h1", 1, &ip_x)?;
    let h2 = lab.add_veth_host_ip("h2", 2, &ip_y)?;
    let h3 = lab.add_veth_host_ip("h3", 3, &ip_x)?;
    let h4 = lab.add_veth_host_ip("h4", 4, &ip_y)?;
    move_to_b(&lab, &h2, &b)?;
    move_to_b(&lab, &h4, &b)?;
    lab.start_xswd("")?;
    let peer = PeerSwitch::start(&lab, &b)?;
    on_both(
        &lab,
        &peer,
        &[
            &["tenant", "create", "web"],
            &["tenant", "create", "db"],
            &[
                "tunnel", "add", "t-web", "--local", A_UNDERLAY, "--remote", B_UNDERLAY, "--vni",
                "100", "--tenant", "web",
            ],
            &[
                "tunnel", "add", "t-db", "--local", A_UNDERLAY, "--remote", B_UNDERLAY, "--vni",
                "200", "--tenant", "db",
            ],
        ],
    )?;
    for (switch_a, h, tenant) in [
        (true, &h1, "web"),
        (false, &h2, "web"),
        (true, &h3, "db"),
        (false, &h4, "db"),
    ] {
        let args = ["port", "add", h.port.as_str(), "--tenant", tenant];
        if switch_a {
            lab.ctl_ok(&args)?;
        } else {
            peer.ctl_ok(&args)?;
        }
    }

    lab.wait_reachable(&h1, &h2, Duration::from_secs(10))?;
    lab.wait_reachable(&h3, &h4, Duration::from_secs(10))?;
    // Both ways, each tenant: ping, ARP across (each side resolved the other's MAC, and
    // the tenant's own), UDP datagram by datagram, TCP with content checked.
    for (x, y) in [(&h1, &h2), (&h2, &h1), (&h3, &h4), (&h4, &h3)] {
        ping_explained(&lab, x, y, 5, &["t-web", "t-db", &h1.port, &h3.port])?;
        ensure!(
            neighbour(&lab, x, &y.ip)? == y.mac,
            "{} resolved {} to another tenant's MAC",
            x.name,
            y.ip
        );
        udp_all(&lab, x, y)?;
    }
    lab.tcp_transfer(&h1, &h2, 4 << 20)?;
    lab.tcp_transfer(&h2, &h1, 4 << 20)?;
    lab.tcp_transfer(&h4, &h3, 1 << 20)?;

    // Remote MACs are learned on the tunnel with the endpoint they came from, in their
    // own tenant only.
    let fdb = lab.ctl_json(&["fdb", "show"])?;
    let web_h2 = fdb_row(&fdb, &h2.mac, "web").ok_or_else(|| anyhow!("h2 not learned: {fdb}"))?;
    ensure!(
        web_h2["port"] == "t-web" && web_h2["remote"] == B_UNDERLAY,
        "h2's entry: {web_h2}"
    );
    let db_h4 = fdb_row(&fdb, &h4.mac, "db").ok_or_else(|| anyhow!("h4 not learned: {fdb}"))?;
    ensure!(
        db_h4["port"] == "t-db" && db_h4["remote"] == B_UNDERLAY,
        "h4's entry: {db_h4}"
    );
    ensure!(
        fdb_row(&fdb, &h4.mac, "web").is_none() && fdb_row(&fdb, &h2.mac, "db").is_none(),
        "a MAC leaked into the other tenant: {fdb}"
    );
    let peer_fdb = peer.ctl_json(&["fdb", "show"])?;
    let b_h1 = fdb_row(&peer_fdb, &h1.mac, "web").ok_or_else(|| anyhow!("peer: {peer_fdb}"))?;
    ensure!(b_h1["remote"] == A_UNDERLAY, "peer's entry for h1: {b_h1}");
    let listed = lab.ctl_ok(&["tunnel", "list"])?;
    ensure!(
        listed.contains("t-web") && listed.contains("t-db") && !listed.contains(&h1.port),
        "tunnel list:\n{listed}"
    );

    // A frame that would not fit the underlay's MTU encapsulated is counted, never cut:
    // h1 may send 1600-byte packets (its veth allows them), the underlay only 1550.
    for (ns, dev) in [(&h1.ns, &h1.ifname), (&lab.sw, &h1.port)] {
        cmd::ns_ok(ns, &["ip", "link", "set", dev, "mtu", "1600"])?;
    }
    let before = drops(&lab.ctl_json(&["stats"])?, "t-web", "tunnel_too_big")?;
    let out = lab.run_in(
        &h1.ns,
        &[
            "ping", "-n", "-q", "-c", "3", "-i", "0.2", "-W", "1", "-M", "do", "-s", "1540", &h2.ip,
        ],
        Duration::from_secs(10),
    )?;
    ensure!(
        !out.success(),
        "an oversized ping came back:\n{}",
        out.describe()
    );
    wait_for_stats(&lab, "t-web", "oversized frames not counted", |now| {
        Ok(drops(now, "t-web", "tunnel_too_big")? >= before + 3)
    })?;
    let stats = lab.ctl_json(&["stats"])?;
    ensure!(
        counter(&stats, "t-web", "tx_frames")? > 0 && counter(&stats, "t-web", "rx_frames")? > 0,
        "tunnel counters: {stats}"
    );
    lab.ping_all(&h1, &h2, 3)?;

    // The tunnels are in the config file: a restarted xswd brings them back.
    let saved = std::fs::read_to_string(lab.config_path())?;
    ensure!(
        saved.contains("[port.tunnel]") && saved.contains("vni = 200"),
        "config file:\n{saved}"
    );
    lab.stop_xswd(Duration::from_secs(5))?;
    lab.relaunch_xswd()?;
    lab.wait_reachable(&h1, &h2, Duration::from_secs(10))?;
    lab.ping_all(&h3, &h4, 3)?;
    // Every frame received on a tunnel is switched or dropped under one reason, on
    // both switches.
    lab.expect_counters_add_up()?;
    check_identity(&peer.ctl_json(&["stats"])?)?;
    Ok(())
}

#[test]
fn xsw_and_a_kernel_vxlan_bridge_reach_each_other_and_xsw_polices_the_remote_guest() -> Result<()> {
    let lab = lab!("vxlan", "vk", 172)?;
    let b = underlay(&lab, UNDERLAY_MTU)?;
    let h1 = lab.add_veth_host("h1", 1)?;
    let h2 = lab.add_veth_host("h2", 2)?;
    move_to_b(&lab, &h2, &b)?;
    // Host B: the kernel's vxlan device (the IANA port, as xsw's default) in a bridge.
    for command in [
        vec![
            "ip", "link", "add", "vx0", "type", "vxlan", "id", "100", "dstport", "4789", "local",
            B_UNDERLAY, "remote", A_UNDERLAY, "ttl", "64",
        ],
        vec!["ip", "link", "set", "vx0", "mtu", "1500"],
        vec!["ip", "link", "add", "br0", "type", "bridge"],
        vec!["ip", "link", "set", "vx0", "master", "br0"],
        vec!["ip", "link", "set", &h2.port, "master", "br0"],
        vec!["ip", "link", "set", "vx0", "up"],
        vec!["ip", "link", "set", "br0", "up"],
        // As a NIC would: the kernel segments its encapsulated TCP before the underlay.
        // A veth otherwise hands whole 64 KB tunnel GSO packets to the receiving
        // namespace, and a UDP socket gets them as one datagram (README, Tunnels).
        vec![
            "ethtool",
            "-K",
            &b.ifname,
            "tx-udp_tnl-segmentation",
            "off",
            "tx-udp_tnl-csum-segmentation",
            "off",
        ],
    ] {
        cmd::ns_ok(&b.ns, &command)?;
    }
    lab.start_xswd("")?;
    lab.ctl_ok(&["port", "add", &h1.port])?;
    lab.ctl_ok(&[
        "tunnel", "add", "t-k", "--local", A_UNDERLAY, "--remote", B_UNDERLAY, "--vni", "100",
    ])?;

    lab.wait_reachable(&h1, &h2, Duration::from_secs(10))?;
    ping_explained(&lab, &h1, &h2, 5, &["t-k", &h1.port])?;
    ping_explained(&lab, &h2, &h1, 5, &["t-k", &h1.port])?;
    lab.tcp_transfer(&h1, &h2, 4 << 20)?;
    lab.tcp_transfer(&h2, &h1, 4 << 20)?;
    // The kernel learned h1 behind xsw's endpoint, and xsw learned h2 behind the kernel's.
    let kernel_fdb = cmd::ns_ok(&b.ns, &["bridge", "fdb", "show", "dev", "vx0"])?;
    ensure!(
        kernel_fdb
            .lines()
            .any(|l| l.starts_with(&h1.mac) && l.contains(&format!("dst {A_UNDERLAY}"))),
        "the kernel did not learn {} behind {A_UNDERLAY}:\n{kernel_fdb}",
        h1.mac
    );
    let fdb = lab.ctl_json(&["fdb", "show"])?;
    let h2_row = fdb_row(&fdb, &h2.mac, "default").ok_or_else(|| anyhow!("{fdb}"))?;
    ensure!(
        h2_row["port"] == "t-k" && h2_row["remote"] == B_UNDERLAY,
        "{h2_row}"
    );

    // The guest behind host B may only use its own addresses: anti-spoofing on the
    // tunnel port applies to what comes out of the tunnel.
    lab.ctl_ok(&["antispoof", "set", "t-k", "--mac", &h2.mac, "--ip", &h2.ip])?;
    ping_explained(&lab, &h2, &h1, 3, &["t-k", &h1.port])?;
    let before = lab.ctl_json(&["stats"])?;
    let forged_mac = "02:78:ac:00:00:66";
    let udp = |src_mac: &str, src_ip: &str| {
        frames::eth(
            &h1.mac,
            src_mac,
            &[],
            0x0800,
            &frames::ipv4_udp(ip4(src_ip), ip4(&h1.ip), 4000, 4001, b"forged"),
        )
    };
    lab.raw_send(&h2, &udp(forged_mac, &h2.ip), 3)?;
    lab.raw_send(&h2, &udp(&h2.mac, &lab.ip(66)), 4)?;
    // An ARP reply claiming h1's address for h2's MAC.
    let arp = frames::eth(
        "ff:ff:ff:ff:ff:ff",
        &h2.mac,
        &[],
        0x0806,
        &frames::arp(2, &h2.mac, ip4(&h1.ip), "ff:ff:ff:ff:ff:ff", ip4(&h1.ip)),
    );
    lab.raw_send(&h2, &arp, 2)?;
    wait_for_stats(
        &lab,
        "t-k",
        "forged frames from behind the remote host not all dropped",
        |now| {
            let grew = |reason: &str, n: u64| -> Result<bool> {
                Ok(drops(now, "t-k", reason)? >= drops(&before, "t-k", reason)? + n)
            };
            Ok(grew("spoofed_mac", 3)? && grew("spoofed_ip", 4)? && grew("arp_spoof", 2)?)
        },
    )?;
    ping_explained(&lab, &h2, &h1, 3, &["t-k", &h1.port])?;
    lab.expect_counters_add_up()?;
    Ok(())
}

#[test]
fn malformed_foreign_vni_and_unknown_remote_datagrams_are_dropped_and_counted() -> Result<()> {
    let lab = lab!("vxlan", "vm", 173)?;
    let a_mac = "02:78:ad:00:00:01";
    let b = underlay_with_third_address(&lab, a_mac)?;
    let h1 = lab.add_veth_host("h1", 1)?;
    lab.start_xswd("")?;
    lab.ctl_ok(&["port", "add", &h1.port])?;
    lab.ctl_ok(&[
        "tunnel", "add", "t-m", "--local", A_UNDERLAY, "--remote", B_UNDERLAY, "--vni", "100",
    ])?;

    let inner = frames::eth(
        "ff:ff:ff:ff:ff:ff",
        "02:78:ad:00:00:02",
        &[],
        0x0800,
        &frames::ipv4_udp(ip4("198.18.173.9"), ip4("198.18.173.255"), 5, 6, b"inner"),
    );
    let vxlan = |flags: u8, vni: u32, last: u8| vxlan_payload(flags, vni, last, &inner);
    let outer = |src_ip: &str, payload: &[u8]| underlay_frame(a_mac, &b.mac, src_ip, payload);
    let cases: [(Vec<u8>, &str); 6] = [
        (outer(B_UNDERLAY, &[0x08, 0, 0]), "tunnel_malformed"),
        (outer(B_UNDERLAY, &vxlan(0x00, 100, 0)), "tunnel_malformed"),
        (outer(B_UNDERLAY, &vxlan(0x08, 100, 1)), "tunnel_malformed"),
        (
            outer(B_UNDERLAY, &vxlan(0x08, 999, 0)),
            "tunnel_unknown_vni",
        ),
        (
            outer("192.0.2.3", &vxlan(0x08, 100, 0)),
            "tunnel_unknown_remote",
        ),
        // A good one, flooded to h1: proves the datagrams reach xsw at all.
        (outer(B_UNDERLAY, &vxlan(0x08, 100, 0)), "-"),
    ];
    let mut capture = lab.capture(&h1, "udp and dst port 6", 1)?;
    for (frame, reason) in &cases {
        let before = lab.ctl_json(&["stats"])?;
        lab.raw_send(&b, frame, 2)?;
        // Every datagram is counted as received on the tunnel, and each bad one under its
        // reason, exactly once.
        wait_for_stats(
            &lab,
            "t-m",
            &format!("datagrams for {reason} not counted"),
            |now| {
                let rx = counter(now, "t-m", "rx_frames")? - counter(&before, "t-m", "rx_frames")?;
                if rx < 2 {
                    return Ok(false);
                }
                if *reason != "-" {
                    let counted = drops(now, "t-m", reason)? - drops(&before, "t-m", reason)?;
                    ensure!(
                        counted == 2,
                        "{reason}: counted {counted} of 2: {}",
                        port_drops(now, "t-m")?
                    );
                }
                Ok(true)
            },
        )?;
    }
    let seen = lab.expect_frame(
        &mut capture,
        Duration::from_secs(5),
        "the good VXLAN frame on h1",
    )?;
    ensure!(seen.contains("198.18.173.9"), "{seen}");
    ensure!(lab.xswd_running(), "xswd died:\n{}", lab.xswd_log());
    lab.expect_counters_add_up()?;
    Ok(())
}

#[test]
fn bad_tunnels_are_refused_and_change_nothing() -> Result<()> {
    let lab = lab!("vxlan", "vr", 174)?;
    let _b = underlay(&lab, "1500")?;
    // The config file follows the same rules: `config check` names the field.
    for (bad, needle) in [
        ("vni = 16777216", "out of range"),
        ("vni = 1\ndstport = 0", "port 0"),
    ] {
        let file = lab.dir.join("bad.toml");
        std::fs::write(
            &file,
            format!("[[port]]\nname = \"t-r\"\n\n[port.tunnel]\nlocal = \"{A_UNDERLAY}\"\nremote = [\"{B_UNDERLAY}\"]\n{bad}\n"),
        )?;
        let out = lab.ctl_err(&["config", "check", &file.display().to_string()])?;
        ensure!(
            out.stderr.contains(needle) && out.stderr.contains("tunnel"),
            "config check of {bad:?}: {}",
            out.stderr
        );
    }
    let file = lab.dir.join("bad.toml");
    std::fs::write(
        &file,
        format!("[[port]]\nname = \"t-r\"\ncreate_tap = true\n\n[port.tunnel]\nlocal = \"{A_UNDERLAY}\"\nremote = [\"{B_UNDERLAY}\"]\nvni = 1\n"),
    )?;
    let out = lab.ctl_err(&["config", "check", &file.display().to_string()])?;
    ensure!(out.stderr.contains("no interface"), "{}", out.stderr);
    lab.start_xswd("")?;
    let add = |extra: &[&str]| -> Result<String> {
        let mut args = vec!["tunnel", "add", "t-r", "--local", A_UNDERLAY];
        args.extend_from_slice(extra);
        let out = lab.ctl_err(&args)?;
        Ok(out.stderr)
    };
    for (extra, needle) in [
        (
            &["--remote", B_UNDERLAY, "--vni", "16777216"][..],
            "out of range",
        ),
        (&["--remote", "2001:db8::2", "--vni", "1"][..], "family"),
        (
            &["--remote", B_UNDERLAY, "--vni", "1", "--tenant", "nope"][..],
            "no tenant",
        ),
    ] {
        let message = add(extra)?;
        ensure!(message.contains(needle), "{extra:?}: {message}");
    }
    // Not an address of this host: the socket cannot bind, nothing is left behind.
    let out = lab.ctl_err(&[
        "tunnel",
        "add",
        "t-r",
        "--local",
        "192.0.2.77",
        "--remote",
        B_UNDERLAY,
        "--vni",
        "1",
    ])?;
    ensure!(out.stderr.contains("192.0.2.77"), "{}", out.stderr);
    lab.ctl_ok(&[
        "tunnel", "add", "t-r", "--local", A_UNDERLAY, "--remote", B_UNDERLAY, "--vni", "1",
    ])?;
    let out = lab.ctl_err(&[
        "tunnel", "add", "t-s", "--local", A_UNDERLAY, "--remote", B_UNDERLAY, "--vni", "1",
    ])?;
    ensure!(out.stderr.contains("already"), "{}", out.stderr);
    // A static entry must name one of the tunnel's remotes.
    let out = lab.ctl_err(&["fdb", "add", "02:78:ae:00:00:09", "t-r"])?;
    ensure!(out.stderr.contains("--remote"), "{}", out.stderr);
    let out = lab.ctl_err(&[
        "fdb",
        "add",
        "02:78:ae:00:00:09",
        "t-r",
        "--remote",
        "192.0.2.9",
    ])?;
    ensure!(out.stderr.contains("not a remote"), "{}", out.stderr);
    lab.ctl_ok(&[
        "fdb",
        "add",
        "02:78:ae:00:00:09",
        "t-r",
        "--remote",
        B_UNDERLAY,
    ])?;
    let fdb = lab.ctl_json(&["fdb", "show"])?;
    let row = fdb_row(&fdb, "02:78:ae:00:00:09", "default").ok_or_else(|| anyhow!("{fdb}"))?;
    ensure!(
        row["static"] == true && row["remote"] == B_UNDERLAY,
        "{row}"
    );
    let ports = lab.ctl_json(&["port", "list"])?;
    let names: Vec<&str> = ports
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["name"].as_str())
        .collect();
    ensure!(names == ["t-r"], "ports after refusals: {names:?}");
    ensure!(
        ports[0]["kind"] == "tunnel" && ports[0]["link"] == "up",
        "{}",
        ports[0]
    );
    let saved = std::fs::read_to_string(lab.config_path()).context("config file")?;
    ensure!(
        saved.contains("remote = \"192.0.2.2\""),
        "static remote entry not saved:\n{saved}"
    );
    lab.ctl_ok(&["tunnel", "del", "t-r"])?;
    // Its endpoint is free again.
    lab.ctl_ok(&[
        "tunnel", "add", "t-s", "--local", A_UNDERLAY, "--remote", B_UNDERLAY, "--vni", "1",
    ])?;
    // A reload that changes the remotes re-adds the tunnel with them; a data-plane
    // rebuild (another worker count) brings it back as it was.
    let saved = std::fs::read_to_string(lab.config_path())?;
    let edited = saved.replace(
        &format!("remote = [\"{B_UNDERLAY}\"]"),
        &format!("remote = [\"{B_UNDERLAY}\", \"192.0.2.9\"]"),
    );
    ensure!(
        edited != saved,
        "no remote list in the saved file:\n{saved}"
    );
    std::fs::write(lab.config_path(), edited)?;
    lab.ctl_ok(&["config", "reload"])?;
    let remotes = |lab: &Lab| -> Result<Value> {
        let listed = lab.ctl_json(&["tunnel", "list"])?;
        Ok(listed[0]["tunnel"]["remote"].clone())
    };
    ensure!(
        remotes(&lab)? == serde_json::json!([B_UNDERLAY, "192.0.2.9"]),
        "after the reload: {}",
        remotes(&lab)?
    );
    // Queues are an interface's: refused, and the tunnel stays.
    let out = lab.ctl_err(&["port", "queues", "t-s", "--workers", "0"])?;
    ensure!(out.stderr.contains("no interface"), "{}", out.stderr);
    lab.ctl_ok(&["tune", "--workers", "0,1"])?;
    ensure!(
        remotes(&lab)? == serde_json::json!([B_UNDERLAY, "192.0.2.9"]),
        "after the rebuild: {}",
        lab.ctl_ok(&["port", "list"])?
    );
    Ok(())
}

#[test]
fn floods_reach_every_remote_and_a_learned_mac_only_its_own() -> Result<()> {
    let lab = lab!("vxlan", "vh", 175)?;
    let a_mac = "02:78:af:00:00:01";
    let b = underlay_with_third_address(&lab, a_mac)?;
    let c_underlay = "192.0.2.3";
    let h1 = lab.add_veth_host("h1", 1)?;
    // Two workers: h1's frames on worker 0 (its one queue), the tunnel's datagrams on
    // worker 1 (the tunnel is port 1). What worker 1 learns behind which remote must
    // reach worker 0, or its unicast to that MAC would go to every remote.
    lab.start_xswd("[dataplane]\nworkers = [0, 1]\n")?;
    lab.ctl_ok(&[
        "port",
        "add",
        &h1.port,
        "--hook",
        "xdp",
        "--queue-workers",
        "0",
    ])?;
    let remotes = format!("{B_UNDERLAY},{c_underlay}");
    lab.ctl_ok(&[
        "tunnel", "add", "t-h", "--local", A_UNDERLAY, "--remote", &remotes, "--vni", "100",
    ])?;
    let captures = |what: &str| -> Result<(Proc, Proc)> {
        Ok((
            lab.capture_as(
                &b,
                &format!("to-b-{what}"),
                "udp dst port 4789 and dst host 192.0.2.2",
                1,
            )?,
            lab.capture_as(
                &b,
                &format!("to-c-{what}"),
                "udp dst port 4789 and dst host 192.0.2.3",
                1,
            )?,
        ))
    };
    let from_h1 = |dst_mac: &str| {
        frames::eth(
            dst_mac,
            &h1.mac,
            &[],
            0x0800,
            &frames::ipv4_udp(ip4(&h1.ip), ip4("198.18.175.33"), 7, 8, b"from h1"),
        )
    };

    // A broadcast: one copy to each remote (head-end replication).
    let (mut to_b, mut to_c) = captures("flood")?;
    lab.raw_send(&h1, &from_h1("ff:ff:ff:ff:ff:ff"), 1)?;
    lab.expect_frame(
        &mut to_b,
        Duration::from_secs(5),
        "the broadcast's copy to B",
    )?;
    lab.expect_frame(
        &mut to_c,
        Duration::from_secs(5),
        "the broadcast's copy to C",
    )?;

    // A MAC learned behind C: unicast to it goes to C only.
    let behind_c = "02:78:af:00:00:33";
    let inner = frames::eth(
        "ff:ff:ff:ff:ff:ff",
        behind_c,
        &[],
        0x0800,
        &frames::ipv4_udp(ip4("198.18.175.33"), ip4("198.18.175.255"), 9, 10, b"hello"),
    );
    lab.raw_send(
        &b,
        &underlay_frame(
            a_mac,
            &b.mac,
            c_underlay,
            &vxlan_payload(0x08, 100, 0, &inner),
        ),
        1,
    )?;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let fdb = lab.ctl_json(&["fdb", "show"])?;
        if let Some(row) = fdb_row(&fdb, behind_c, "default") {
            ensure!(row["port"] == "t-h" && row["remote"] == c_underlay, "{row}");
            break;
        }
        ensure!(Instant::now() < deadline, "{behind_c} not learned: {fdb}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (mut to_b, mut to_c) = captures("unicast")?;
    lab.raw_send(&h1, &from_h1(behind_c), 1)?;
    lab.expect_frame(
        &mut to_c,
        Duration::from_secs(5),
        "unicast to the MAC behind C",
    )?;
    lab.expect_silence(
        &mut to_b,
        Duration::from_secs(2),
        "unicast for C sent to B as well",
    )?;
    lab.expect_counters_add_up()?;
    Ok(())
}

#[test]
fn an_ipv6_underlay_reaches_a_kernel_vxlan_with_checksummed_udp() -> Result<()> {
    let lab = lab!("vxlan", "v6", 176)?;
    let b = underlay(&lab, UNDERLAY_MTU)?;
    // IPv6 on the underlay only (the lab turns it off everywhere).
    for (ns, dev, addr) in [
        (&lab.sw, &b.port, "2001:db8:76::1/64"),
        (&b.ns, &b.ifname, "2001:db8:76::2/64"),
    ] {
        cmd::ns_ok(
            ns,
            &[
                "sysctl",
                "-q",
                "-w",
                &format!("net.ipv6.conf.{dev}.disable_ipv6=0"),
            ],
        )?;
        cmd::ns_ok(ns, &["ip", "addr", "add", addr, "dev", dev, "nodad"])?;
    }
    let h1 = lab.add_veth_host("h1", 1)?;
    let h2 = lab.add_veth_host("h2", 2)?;
    move_to_b(&lab, &h2, &b)?;
    // The kernel checks the outer UDP checksum over IPv6 (no udp6zerocsumrx): a zero or
    // wrong one would be dropped before its vxlan device saw it.
    for command in [
        vec![
            "ip",
            "link",
            "add",
            "vx0",
            "type",
            "vxlan",
            "id",
            "300",
            "dstport",
            "4789",
            "local",
            "2001:db8:76::2",
            "remote",
            "2001:db8:76::1",
        ],
        vec!["ip", "link", "set", "vx0", "mtu", "1480"],
        vec!["ip", "link", "add", "br0", "type", "bridge"],
        vec!["ip", "link", "set", "vx0", "master", "br0"],
        vec!["ip", "link", "set", &h2.port, "master", "br0"],
        vec!["ip", "link", "set", "vx0", "up"],
        vec!["ip", "link", "set", "br0", "up"],
    ] {
        cmd::ns_ok(&b.ns, &command)?;
    }
    lab.start_xswd("")?;
    lab.ctl_ok(&["port", "add", &h1.port])?;
    lab.ctl_ok(&[
        "tunnel",
        "add",
        "t-6",
        "--local",
        "2001:db8:76::1",
        "--remote",
        "2001:db8:76::2",
        "--vni",
        "300",
    ])?;
    lab.wait_reachable(&h1, &h2, Duration::from_secs(10))?;
    lab.ping_all(&h1, &h2, 5)?;
    lab.ping_all(&h2, &h1, 5)?;
    let fdb = lab.ctl_json(&["fdb", "show"])?;
    let row = fdb_row(&fdb, &h2.mac, "default").ok_or_else(|| anyhow!("{fdb}"))?;
    ensure!(row["remote"] == "2001:db8:76::2", "{row}");
    let kernel_fdb = cmd::ns_ok(&b.ns, &["bridge", "fdb", "show", "dev", "vx0"])?;
    ensure!(
        kernel_fdb
            .lines()
            .any(|l| l.starts_with(&h1.mac) && l.contains("dst 2001:db8:76::1")),
        "the kernel did not learn {} behind xsw:\n{kernel_fdb}",
        h1.mac
    );
    Ok(())
}

/// Open vSwitch's userspace datapath (no kernel module here) as host B: `br-int` holds
/// h2's port and a VXLAN port, `br-phy` the underlay veth with B's address on its
/// internal port, as OVS's userspace tunnelling guide sets it up. Its daemons run in
/// host B's namespace with every file in the lab's directory.
struct OvsHost {
    dir: PathBuf,
}

impl OvsHost {
    fn start(lab: &Lab, b: &Host, h2: &Host, a_mac: &str) -> Result<OvsHost> {
        let dir = lab.dir.join("ovs");
        std::fs::create_dir_all(&dir)?;
        let d = dir.display().to_string();
        let db = format!("{d}/conf.db");
        cmd::sh_ok(&[
            "ovsdb-tool",
            "create",
            &db,
            "/usr/share/openvswitch/vswitch.ovsschema",
        ])?;
        let env = [
            format!("OVS_RUNDIR={d}"),
            format!("OVS_DBDIR={d}"),
            format!("OVS_LOGDIR={d}"),
            format!("OVS_SYSCONFDIR={d}"),
        ];
        let daemon = |name: &str, args: &[String]| -> Result<String> {
            let mut argv: Vec<String> = vec!["env".into()];
            argv.extend(env.iter().cloned());
            argv.push(name.into());
            argv.extend(args.iter().cloned());
            argv.extend([
                format!("--unixctl={d}/{name}.ctl"),
                format!("--pidfile={d}/{name}.pid"),
                format!("--log-file={d}/{name}.log"),
                "--detach".into(),
            ]);
            let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
            cmd::ns_ok(&b.ns, &argv)
        };
        daemon(
            "ovsdb-server",
            &[db.clone(), format!("--remote=punix:{d}/db.sock")],
        )?;
        let host = OvsHost { dir };
        host.vsctl(b, &["--no-wait", "init"])?;
        daemon("ovs-vswitchd", &[format!("unix:{d}/db.sock")])?;
        host.vsctl(
            b,
            &[
                "add-br",
                "br-phy",
                "--",
                "set",
                "bridge",
                "br-phy",
                "datapath_type=netdev",
            ],
        )?;
        host.vsctl(b, &["add-port", "br-phy", &b.ifname])?;
        // B's underlay address moves from the veth to the bridge's internal port.
        cmd::ns_ok(
            &b.ns,
            &["ip", "addr", "del", "192.0.2.2/24", "dev", &b.ifname],
        )?;
        cmd::ns_ok(
            &b.ns,
            &["ip", "addr", "add", "192.0.2.2/24", "dev", "br-phy"],
        )?;
        cmd::ns_ok(&b.ns, &["ip", "link", "set", "br-phy", "up"])?;
        host.vsctl(
            b,
            &[
                "add-br",
                "br-int",
                "--",
                "set",
                "bridge",
                "br-int",
                "datapath_type=netdev",
            ],
        )?;
        host.vsctl(b, &["add-port", "br-int", &h2.port])?;
        host.vsctl(
            b,
            &[
                "add-port",
                "br-int",
                "vx",
                "--",
                "set",
                "interface",
                "vx",
                "type=vxlan",
                "options:remote_ip=192.0.2.1",
                "options:local_ip=192.0.2.2",
                "options:key=400",
            ],
        )?;
        // OVS resolves the outer next hop itself; A's MAC is known beforehand.
        let deadline = Instant::now() + Duration::from_secs(10);
        while host
            .appctl(b, &["tnl/arp/set", "br-phy", A_UNDERLAY, a_mac])
            .is_err()
        {
            ensure!(
                Instant::now() < deadline,
                "OVS would not take the tunnel ARP entry"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(host)
    }

    fn vsctl(&self, b: &Host, args: &[&str]) -> Result<String> {
        let db = format!("--db=unix:{}/db.sock", self.dir.display());
        let mut argv = vec!["ovs-vsctl", db.as_str(), "--timeout=20"];
        argv.extend_from_slice(args);
        cmd::ns_ok(&b.ns, &argv)
    }

    fn appctl(&self, b: &Host, args: &[&str]) -> Result<String> {
        let ctl = format!("{}/ovs-vswitchd.ctl", self.dir.display());
        let mut argv = vec!["ovs-appctl", "-t", ctl.as_str(), "--timeout=20"];
        argv.extend_from_slice(args);
        cmd::ns_ok(&b.ns, &argv)
    }
}

#[test]
fn xsw_and_open_vswitch_userspace_vxlan_reach_each_other() -> Result<()> {
    let lab = lab!("vxlan", "vo", 177)?;
    let b = underlay(&lab, UNDERLAY_MTU)?;
    let a_mac = "02:78:b1:00:00:01";
    cmd::sh_ok(&[
        "ip", "-n", &lab.sw, "link", "set", &b.port, "address", a_mac,
    ])?;
    let h1 = lab.add_veth_host("h1", 1)?;
    let h2 = lab.add_veth_host("h2", 2)?;
    move_to_b(&lab, &h2, &b)?;
    let ovs = OvsHost::start(&lab, &b, &h2, a_mac)?;
    lab.start_xswd("")?;
    lab.ctl_ok(&["port", "add", &h1.port])?;
    lab.ctl_ok(&[
        "tunnel", "add", "t-o", "--local", A_UNDERLAY, "--remote", B_UNDERLAY, "--vni", "400",
    ])?;
    lab.wait_reachable(&h1, &h2, Duration::from_secs(10))?;
    ping_explained(&lab, &h1, &h2, 5, &["t-o", &h1.port])?;
    ping_explained(&lab, &h2, &h1, 5, &["t-o", &h1.port])?;
    for (x, y) in [(&h1, &h2), (&h2, &h1)] {
        udp_all(&lab, x, y)?;
    }
    // TCP from behind OVS needs TSO off on its sender: OVS's userspace datapath (without
    // its userspace TSO) does not carry the sender's TSO packets into the tunnel, so
    // nothing reaches xsw (no drop counted there either). Checksums the sender left to
    // offload are fine: xsw finishes them. xsw to OVS needs nothing.
    lab.tcp_transfer(&h1, &h2, 2 << 20)?;
    cmd::ns_ok(
        &h2.ns,
        &["ethtool", "-K", &h2.ifname, "tso", "off", "gso", "off"],
    )?;
    if let Err(e) = lab.tcp_transfer(&h2, &h1, 2 << 20) {
        let stats = lab.ctl_json(&["stats"])?;
        bail!("{e:#}\nt-o drops: {}", port_drops(&stats, "t-o")?);
    }
    // Both learned the other's host behind the tunnel.
    let fdb = lab.ctl_json(&["fdb", "show"])?;
    let row = fdb_row(&fdb, &h2.mac, "default").ok_or_else(|| anyhow!("{fdb}"))?;
    ensure!(row["port"] == "t-o" && row["remote"] == B_UNDERLAY, "{row}");
    let ovs_fdb = ovs.appctl(&b, &["fdb/show", "br-int"])?;
    let vx_port = ovs.vsctl(&b, &["get", "interface", "vx", "ofport"])?;
    ensure!(
        ovs_fdb
            .lines()
            .any(|l| l.contains(&h1.mac) && l.split_whitespace().next() == Some(vx_port.trim())),
        "OVS did not learn {} on its VXLAN port {}:\n{ovs_fdb}",
        h1.mac,
        vx_port.trim()
    );
    Ok(())
}
