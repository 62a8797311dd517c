//! A real virtio-net guest (QEMU under TCG, Debian cloud kernel) on a tap,
//! talking to a veth host (and to a second guest) with everyone's DEFAULT
//! offloads: the guest sends partial checksums and TSO super-frames through
//! the tap's virtio-net header, the host's veth sends partial checksums and
//! GSO frames.
//!
//! The `bridge_*` tests put a Linux bridge where the switch would be: they
//! prove the VM, the agent and the traffic tools, so when they pass and an
//! `xsw_*` test fails, xswd is at fault.
//!
//! Every byte stream is checked (length and FNV-1a hash at both ends) and
//! every UDP echo is compared with what was sent.

use anyhow::{ensure, Context, Result};
use std::time::Duration;
use xsw_integration::vm::{self, linux_bridge, Peer, Vm};
use xsw_integration::{lab, Host, Lab};

const TCP_BYTES: u64 = 4 << 20;
const UDP_COUNT: u32 = 100;

/// Virtio feature bits (virtio-net spec): VIRTIO_NET_F_CSUM, _HOST_TSO4.
const F_CSUM: usize = 0;
const F_HOST_TSO4: usize = 11;

/// The guest's NIC negotiated checksum offload and TSO, so it sends
/// partial checksums and super-frames (what a real guest does).
fn assert_guest_offloads(vm: &Vm) -> Result<()> {
    let bits = vm.run_ok(
        &["cat", "/sys/class/net/eth0/device/features"],
        Duration::from_secs(10),
    )?;
    let bits = bits.trim().as_bytes();
    ensure!(
        bits.get(F_CSUM) == Some(&b'1') && bits.get(F_HOST_TSO4) == Some(&b'1'),
        "guest {}: virtio-net did not negotiate CSUM and HOST_TSO4: features {}",
        vm.name,
        String::from_utf8_lossy(bits)
    );
    Ok(())
}

/// The host's veth kept the kernel's default TX checksum offload and TSO.
fn assert_host_offloads(lab: &Lab, h: &Host) -> Result<()> {
    let out = lab
        .run_in(&h.ns, &["ethtool", "-k", &h.ifname], Duration::from_secs(5))?
        .ok()?;
    for f in [
        "tx-checksumming: on",
        "tcp-segmentation-offload: on",
        "generic-segmentation-offload: on",
    ] {
        ensure!(
            out.stdout.contains(f),
            "host {}: expected '{f}' in:\n{}",
            h.name,
            out.stdout
        );
    }
    Ok(())
}

/// One veth host (default offloads) and one guest on a tap.
fn setup(lab: &Lab) -> Result<(Host, Vm)> {
    let h1 = lab.add_veth_host("h1", 1)?;
    assert_host_offloads(lab, &h1)?;
    let v1 = lab.add_vm("v1", 10)?;
    eprintln!("guest v1 booted in {:?}", v1.boot_time);
    assert_guest_offloads(&v1)?;
    Ok((h1, v1))
}

/// Bridge h1 and v1 with a Linux bridge.
fn setup_bridge(lab: &Lab) -> Result<(Host, Vm)> {
    let (h1, v1) = setup(lab)?;
    linux_bridge(lab, &[&h1.port, &v1.tap])?;
    v1.wait_reachable(&h1.ip, Duration::from_secs(10))?;
    Ok((h1, v1))
}

/// h1 and v1 as ports of xswd.
fn setup_xsw(lab: &Lab) -> Result<(Host, Vm)> {
    let (h1, v1) = setup(lab)?;
    lab.start_xswd("")?;
    lab.port_add(&h1.port)?;
    lab.port_add(&v1.tap)?;
    v1.wait_reachable(&h1.ip, Duration::from_secs(10))
        .with_context(|| format!("xswd log:\n{}", lab.xswd_log()))?;
    Ok((h1, v1))
}

/// xswd's fast path (the tc hook's flow entries) carried at least the
/// payload of a `TCP_BYTES` transfer from port `from` to port `to`: the
/// guest's and host's skbs were switched in the kernel, not by the workers.
fn check_fast_path(lab: &Lab, from: &str, to: &str) -> Result<()> {
    let reply = lab.ctl_json(&["flows"])?;
    let carried: u64 = reply["flows"]
        .as_array()
        .with_context(|| format!("flows reply without a list: {reply}"))?
        .iter()
        .filter(|f| f["in"] == from && f["out"] == to)
        .filter_map(|f| f["bytes"].as_u64())
        .sum();
    ensure!(
        carried >= TCP_BYTES,
        "the fast path carried {carried} bytes {from} -> {to}, less than the \
         {TCP_BYTES} sent:\n{reply}\nstats: {}",
        lab.stats()?
    );
    Ok(())
}

fn check_udp(what: &str, s: xsw_integration::UdpStats) -> Result<()> {
    ensure!(
        s.sent == UDP_COUNT as u64 && s.received == s.sent && s.corrupt == 0,
        "UDP {what}: {s:?}"
    );
    Ok(())
}

fn report(what: &str, t: vm::Transfer) {
    eprintln!(
        "{what}: {} bytes in {:?} ({:.0} Mbit/s)",
        t.bytes,
        t.elapsed,
        t.mbit_per_s()
    );
}

// ------------------------------------------------------- Linux bridge (control)

#[test]
fn bridge_guest_boots_and_pings_a_veth_host() -> Result<()> {
    let lab = lab!("vm-br-ping", "vbp", 60)?;
    let (h1, v1) = setup_bridge(&lab)?;
    let s = v1.ping(&h1.ip, 5)?;
    ensure!(s.transmitted == 5 && s.received == 5, "v1 -> h1: {s:?}");
    let s = lab.ping(&h1, &v1.ip, 5)?;
    ensure!(s.transmitted == 5 && s.received == 5, "h1 -> v1: {s:?}");
    v1.shutdown()?;
    Ok(())
}

#[test]
fn bridge_tcp_guest_to_host_default_offloads() -> Result<()> {
    let lab = lab!("vm-br-tcpout", "vbo", 61)?;
    let (h1, v1) = setup_bridge(&lab)?;
    report("bridge v1 -> h1", v1.tcp_to(&lab, &h1, TCP_BYTES)?);
    Ok(())
}

#[test]
fn bridge_tcp_host_to_guest_default_offloads() -> Result<()> {
    let lab = lab!("vm-br-tcpin", "vbi", 62)?;
    let (h1, v1) = setup_bridge(&lab)?;
    report("bridge h1 -> v1", v1.tcp_from(&lab, &h1, TCP_BYTES)?);
    Ok(())
}

#[test]
fn bridge_udp_both_ways_default_offloads() -> Result<()> {
    let lab = lab!("vm-br-udp", "vbu", 63)?;
    let (h1, v1) = setup_bridge(&lab)?;
    check_udp("v1 -> h1", v1.udp_to(&lab, &h1, UDP_COUNT)?)?;
    check_udp("h1 -> v1", v1.udp_from(&lab, &h1, UDP_COUNT)?)?;
    Ok(())
}

#[test]
fn bridge_guest_to_guest_tcp_and_udp() -> Result<()> {
    let lab = lab!("vm-br-g2g", "vbg", 64)?;
    let v1 = lab.add_vm("v1", 10)?;
    let v2 = lab.add_vm("v2", 11)?;
    linux_bridge(&lab, &[&v1.tap, &v2.tap])?;
    v1.wait_reachable(&v2.ip, Duration::from_secs(10))?;
    let t = vm::tcp_transfer(&lab, Peer::Vm(&v1), Peer::Vm(&v2), TCP_BYTES)?;
    report("bridge v1 -> v2", t);
    let s = vm::udp_exchange(&lab, Peer::Vm(&v2), Peer::Vm(&v1), UDP_COUNT, 5)?;
    check_udp("v2 -> v1", s)?;
    Ok(())
}

// ------------------------------------------------------------------ xswd

#[test]
fn xsw_guest_pings_a_veth_host() -> Result<()> {
    let lab = lab!("vm-xsw-ping", "vxp", 65)?;
    let (h1, v1) = setup_xsw(&lab)?;
    let s = v1.ping(&h1.ip, 5)?;
    ensure!(s.transmitted == 5 && s.received == 5, "v1 -> h1: {s:?}");
    let s = lab.ping(&h1, &v1.ip, 5)?;
    ensure!(s.transmitted == 5 && s.received == 5, "h1 -> v1: {s:?}");
    Ok(())
}

#[test]
fn xsw_tcp_guest_to_host_default_offloads() -> Result<()> {
    let lab = lab!("vm-xsw-tcpout", "vxo", 66)?;
    let (h1, v1) = setup_xsw(&lab)?;
    report("xsw v1 -> h1", v1.tcp_to(&lab, &h1, TCP_BYTES)?);
    check_fast_path(&lab, &v1.tap, &h1.port)
}

#[test]
fn xsw_tcp_host_to_guest_default_offloads() -> Result<()> {
    let lab = lab!("vm-xsw-tcpin", "vxi", 67)?;
    let (h1, v1) = setup_xsw(&lab)?;
    report("xsw h1 -> v1", v1.tcp_from(&lab, &h1, TCP_BYTES)?);
    check_fast_path(&lab, &h1.port, &v1.tap)
}

#[test]
fn xsw_udp_both_ways_default_offloads() -> Result<()> {
    let lab = lab!("vm-xsw-udp", "vxu", 68)?;
    let (h1, v1) = setup_xsw(&lab)?;
    check_udp("v1 -> h1", v1.udp_to(&lab, &h1, UDP_COUNT)?)?;
    check_udp("h1 -> v1", v1.udp_from(&lab, &h1, UDP_COUNT)?)?;
    Ok(())
}

#[test]
fn xsw_guest_to_guest_tcp_and_udp() -> Result<()> {
    let lab = lab!("vm-xsw-g2g", "vxg", 69)?;
    let v1 = lab.add_vm("v1", 10)?;
    let v2 = lab.add_vm("v2", 11)?;
    lab.start_xswd("")?;
    lab.port_add(&v1.tap)?;
    lab.port_add(&v2.tap)?;
    v1.wait_reachable(&v2.ip, Duration::from_secs(10))?;
    let t = vm::tcp_transfer(&lab, Peer::Vm(&v1), Peer::Vm(&v2), TCP_BYTES)?;
    report("xsw v1 -> v2", t);
    check_fast_path(&lab, &v1.tap, &v2.tap)?;
    let s = vm::udp_exchange(&lab, Peer::Vm(&v2), Peer::Vm(&v1), UDP_COUNT, 5)?;
    check_udp("v2 -> v1", s)?;
    Ok(())
}
