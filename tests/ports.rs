//! Port options and limits: frames for the host's own addresses reach the
//! kernel (host MAC, ARP for host IPs), many ports on one worker forward
//! without running out of UMEM frames, and an idle xswd costs almost no CPU.

use anyhow::{ensure, Context, Result};
use std::time::Duration;
use xsw_integration::{cmd, lab, threads, Lab};

#[test]
fn host_mac_and_arp_for_host_ip_reach_the_kernel() -> Result<()> {
    let lab = lab!("ports", "pth", 31)?;
    let h1 = lab.add_veth_host("h1", 1)?;
    let h2 = lab.add_veth_host("h2", 2)?;
    lab.start_xswd(&Lab::config_with_ports(&[&h2.port]))?;

    // The switch's own namespace uses h1's port for itself too, like a host
    // sharing its NIC with its VMs.
    let host_ip = lab.ip(254);
    cmd::ns_ok(
        &lab.sw,
        &[
            "ip",
            "addr",
            "add",
            &format!("{host_ip}/24"),
            "dev",
            &h1.port,
        ],
    )?;
    // sysfs shows the reader's namespace: read it from inside the switch's.
    let host_mac = cmd::ns_ok(
        &lab.sw,
        &["cat", &format!("/sys/class/net/{}/address", h1.port)],
    )?
    .trim()
    .to_string();

    // Without host addresses, xsw takes every frame: the host cannot be reached.
    lab.port_add(&h1.port)?;
    let stolen = lab.ping(&h1, &host_ip, 2)?;
    ensure!(
        stolen.received == 0,
        "host answered although xsw owns every frame: {stolen:?}"
    );

    // With them, ARP for the host's address and frames to its MAC go to the
    // kernel, while h1 still reaches h2 through the switch.
    lab.ctl_ok(&["port", "del", &h1.port])?;
    lab.ctl_ok(&[
        "port",
        "add",
        &h1.port,
        "--host-mac",
        &host_mac,
        "--host-ipv4",
        &host_ip,
    ])?;
    lab.wait_reachable(&h1, &h2, Duration::from_secs(5))?;
    let to_host = lab.ping(&h1, &host_ip, 3)?;
    ensure!(
        to_host.received == 3,
        "host not reachable with --host-mac/--host-ipv4: {to_host:?}"
    );
    lab.ping_all(&h1, &h2, 3)?;
    Ok(())
}

#[test]
fn eight_ports_on_one_worker_all_forward() -> Result<()> {
    let lab = lab!("ports", "ptm", 32)?;
    let hosts = (1..=8u8)
        .map(|i| lab.add_veth_host(&format!("h{i}"), i))
        .collect::<Result<Vec<_>>>()?;
    let ports: Vec<&str> = hosts.iter().map(|h| h.port.as_str()).collect();
    // A small UMEM makes running out of frames show quickly if fill rings
    // could swallow the pool.
    let config = format!(
        "{}\n[umem]\nframe_count = 2048\n",
        Lab::config_with_ports(&ports)
    );
    lab.start_xswd(&config)?;
    for h in &hosts[1..] {
        lab.wait_reachable(&hosts[0], h, Duration::from_secs(5))?;
        lab.ping_all(h, &hosts[0], 2)?;
    }
    let stats = lab.stats()?;
    for port in stats["ports"].as_array().context("stats.ports")? {
        let no_buffer = port["drops"]["no_buffer"].as_u64().unwrap_or(u64::MAX);
        ensure!(
            no_buffer == 0,
            "port {} dropped {no_buffer} frames for want of UMEM frames",
            port["name"]
        );
    }
    let free = stats["workers"][0]["umem_frames_free"]
        .as_u64()
        .context("umem_frames_free")?;
    ensure!(free > 0, "the worker has no free UMEM frame left");
    Ok(())
}

/// What an idle switch costs, measured by behaviour and with a bound that a
/// much slower or faster machine still meets: no thread wakes more than a
/// few times a second (workers sleep in poll() up to a second; control,
/// links and signals block), and together they use under 5% of a core
/// (about 0.05% here; 5% leaves room for a machine ten times slower and a
/// noisy neighbour charging its cache misses to us).
#[test]
fn an_idle_switch_costs_close_to_nothing() -> Result<()> {
    let lab = lab!("ports", "pti", 33)?;
    let h1 = lab.add_veth_host("h1", 1)?;
    let h2 = lab.add_veth_host("h2", 2)?;
    lab.start_xswd(&Lab::config_with_ports(&[&h1.port, &h2.port]))?;
    lab.wait_reachable(&h1, &h2, Duration::from_secs(5))?;

    let pid = lab.xswd_pid().context("xswd pid")?;
    std::thread::sleep(Duration::from_secs(1));
    let before = threads::threads(pid)?;
    let window = Duration::from_secs(5);
    std::thread::sleep(window);
    let idle = threads::since(&before, &threads::threads(pid)?);
    let used: u64 = idle.iter().map(|t| t.cpu_ns).sum();
    let share = used as f64 / window.as_nanos() as f64;
    let wakes: Vec<(String, f64)> = idle
        .iter()
        .map(|t| (t.name.clone(), t.runs as f64 / window.as_secs_f64()))
        .collect();
    eprintln!(
        "idle xswd: {:.3}% of a core; wake-ups per second: {wakes:?}",
        share * 100.0
    );
    let busy: Vec<_> = wakes
        .iter()
        .filter(|(_, per_sec)| *per_sec > 10.0)
        .collect();
    ensure!(
        busy.is_empty(),
        "threads of an idle xswd wake more than 10 times a second: {busy:?}"
    );
    ensure!(
        share < 0.05,
        "idle xswd used {:.2}% of a core",
        share * 100.0
    );
    Ok(())
}

/// How the kernel says an XDP program is attached to `ifname` in the switch
/// namespace: "native" (driver), "generic" (skb), or "none".
fn kernel_xdp_mode(lab: &Lab, ifname: &str) -> Result<String> {
    let out = cmd::ns_ok(&lab.sw, &["ip", "-d", "link", "show", "dev", ifname])?;
    Ok(if out.contains("xdpgeneric") {
        "generic"
    } else if out.contains("xdp") {
        "native"
    } else {
        "none"
    }
    .to_string())
}

/// `--xdp-mode native` and `--xdp-mode generic` attach the steering program
/// in the mode asked (as the kernel reports it) and both forward; native on
/// an interface without driver XDP (a bridge) is refused with a clear error
/// and changes nothing.
#[test]
fn xdp_mode_native_and_generic_attach_as_asked() -> Result<()> {
    let lab = lab!("xdpmode", "xdm", 212)?;
    let h1 = lab.add_veth_host("h1", 1)?;
    let h2 = lab.add_veth_host("h2", 2)?;
    lab.start_xswd("")?;
    lab.ctl_ok(&[
        "port",
        "add",
        &h1.port,
        "--hook",
        "xdp",
        "--xdp-mode",
        "native",
    ])?;
    lab.ctl_ok(&[
        "port",
        "add",
        &h2.port,
        "--hook",
        "xdp",
        "--xdp-mode",
        "generic",
    ])?;
    for (h, mode) in [(&h1, "native"), (&h2, "generic")] {
        let row = lab.port(&h.port)?.context("port row")?;
        ensure!(
            row["hook"] == "xdp" && row["xdp_mode"] == mode,
            "port list row of {} (asked {mode}): {row}",
            h.port
        );
        let kernel = kernel_xdp_mode(&lab, &h.port)?;
        ensure!(
            kernel == mode,
            "{} asked {mode}, the kernel has {kernel}",
            h.port
        );
    }
    lab.wait_reachable(&h1, &h2, Duration::from_secs(5))?;
    lab.ping_all(&h1, &h2, 3)?;
    lab.tcp_transfer(&h1, &h2, 200_000)?;

    let bridge = lab.port_name("br");
    cmd::ns_ok(&lab.sw, &["ip", "link", "add", &bridge, "type", "bridge"])?;
    cmd::ns_ok(&lab.sw, &["ip", "link", "set", &bridge, "up"])?;
    let before = lab.ports()?;
    let refused = lab.ctl_err(&[
        "port",
        "add",
        &bridge,
        "--hook",
        "xdp",
        "--xdp-mode",
        "native",
    ])?;
    ensure!(
        refused.stderr.contains(&bridge),
        "the refusal does not name the interface: {}",
        refused.describe()
    );
    ensure!(
        lab.ports()? == before,
        "a refused port add changed the port list"
    );
    ensure!(
        kernel_xdp_mode(&lab, &bridge)? == "none",
        "a refused port add left an XDP program on {bridge}"
    );
    Ok(())
}

/// A guest whose tap is opened as QEMU opens a virtio-net guest's (vnet
/// header, checksum and TSO offloads on; `xsw-guest --vnet-hdr`) talks to a
/// veth host through xsw at default offloads: its kernel really hands over
/// TCP segments larger than the MTU with partial checksums, and ping and TCP
/// work both ways with every byte checked.
#[test]
fn a_virtio_style_guest_with_offloads_on_gets_ping_and_tcp_both_ways() -> Result<()> {
    let lab = lab!("vnetguest", "vng", 220)?;
    let h1 = lab.add_veth_host("h1", 1)?;
    let tap = lab.create_tap("g1")?;
    let g1 = lab.attach_vnet_guest("g1", 2, &tap)?;
    let features = cmd::ns_ok(&g1.ns, &["ethtool", "-k", &g1.ifname])?;
    for feature in ["tx-checksumming: on", "tcp-segmentation-offload: on"] {
        ensure!(
            features.contains(feature),
            "the guest tap lacks {feature:?}, so no offload would be exercised:\n{features}"
        );
    }
    lab.start_xswd(&Lab::config_with_ports(&[&h1.port, &tap]))?;
    lab.wait_reachable(&h1, &g1, Duration::from_secs(5))?;
    lab.ping_all(&g1, &h1, 3)?;
    for (from, to) in [(&g1, &h1), (&h1, &g1)] {
        let t = std::time::Instant::now();
        lab.tcp_transfer(from, to, 2_000_000)?;
        eprintln!(
            "TCP {} -> {}: 2 MB in {:?}",
            from.name,
            to.name,
            t.elapsed()
        );
    }
    // The guest really handed over segments larger than a frame on the wire.
    let from_guest = lab.port_stats(&tap)?;
    ensure!(
        from_guest.rx_bytes > 1514 * from_guest.rx_frames,
        "frames from the guest average at most 1514 bytes, so no TSO was exercised: {from_guest:?}"
    );
    Ok(())
}

/// An idle adaptive worker sleeps in poll() (up to a second) and a frame
/// wakes it at once: ten pings half a second apart through the workers (the
/// fast path is off, so every frame needs them) each find the worker asleep
/// (it slept between every two) and all come back in well under the poll
/// timeout. A worker that only woke on the timeout would answer some pings
/// hundreds of milliseconds late; 250 ms leaves a slow machine a wide margin.
#[test]
fn a_sleeping_worker_wakes_at_once_for_a_frame() -> Result<()> {
    let lab = lab!("portswake", "ptw", 222)?;
    let h1 = lab.add_veth_host("h1", 1)?;
    let h2 = lab.add_veth_host("h2", 2)?;
    lab.start_xswd(&format!(
        "[[port]]\nname = \"{}\"\nfast_path = false\n\n[[port]]\nname = \"{}\"\nfast_path = false\n",
        h1.port, h2.port
    ))?;
    lab.wait_reachable(&h1, &h2, Duration::from_secs(5))?;
    let sleeps = |lab: &Lab| -> Result<u64> {
        lab.stats()?["workers"][0]["sleeps"]
            .as_u64()
            .context("worker sleeps")
    };
    let before = sleeps(&lab)?;
    let out = lab.run_in(
        &h1.ns,
        &["ping", "-n", "-c", "10", "-i", "0.5", "-W", "2", &h2.ip],
        Duration::from_secs(20),
    )?;
    let slept = sleeps(&lab)? - before;
    ensure!(out.success(), "ping: {}", out.describe());
    let rtts: Vec<f64> = out
        .stdout
        .lines()
        .filter_map(|l| l.split("time=").nth(1))
        .filter_map(|t| t.split_whitespace().next()?.parse().ok())
        .collect();
    eprintln!("worker slept {slept} times; round trips (ms): {rtts:?}");
    ensure!(rtts.len() == 10, "expected 10 replies: {}", out.stdout);
    ensure!(
        slept >= 9,
        "the worker slept {slept} times during 10 pings 0.5 s apart: it should sleep between every two"
    );
    let slowest = rtts.iter().cloned().fold(0.0, f64::max);
    ensure!(
        slowest < 250.0,
        "a ping took {slowest} ms: the sleeping worker did not wake for the frame"
    );
    Ok(())
}
