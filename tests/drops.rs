//! Drop reasons the switch counts by itself, each provoked with real frames
//! and counted exactly on the port the contract names: `no_egress` (a flood
//! with nowhere to go), `same_segment` (a frame for a station behind the port
//! it came from), `link_down` (towards a port whose link is down),
//! `tx_ring_full` (a burst bigger than the egress TX ring).

use anyhow::{ensure, Result};
use std::time::Duration;
use xsw_integration::{cmd, frames, lab, Lab};

fn experimental(dst: &str, src: &str) -> Vec<u8> {
    frames::eth(dst, src, &[], frames::ETH_EXPERIMENTAL, b"xsw drop reasons")
}

/// A broadcast from the only port of its tenant has nowhere to go:
/// `no_egress` on the ingress port, once per frame.
#[test]
fn a_flood_with_no_other_port_counts_no_egress() -> Result<()> {
    let lab = lab!("dropnoegress", "dne", 217)?;
    let h1 = lab.add_veth_host("h1", 1)?;
    let h2 = lab.add_veth_host("h2", 2)?;
    lab.start_xswd("[[tenant]]\nname = \"alone\"\n")?;
    lab.ctl_ok(&["port", "add", &h1.port, "--tenant", "alone"])?;
    lab.ctl_ok(&["port", "add", &h2.port])?;
    let before = lab.drop_count(&h1.port, "no_egress")?;
    lab.raw_send(&h1, &experimental("ff:ff:ff:ff:ff:ff", &h1.mac), 4)?;
    lab.expect_drops(&h1.port, "no_egress", before, 4)?;
    // With a second port in the tenant the same broadcast goes out.
    lab.ctl_ok(&["port", "set", &h2.port, "--tenant", "alone"])?;
    let mut at_h2 = lab.capture_as(&h2, "bcast", &format!("ether src {}", h1.mac), 1)?;
    lab.raw_send(&h1, &experimental("ff:ff:ff:ff:ff:ff", &h1.mac), 1)?;
    lab.expect_frame(&mut at_h2, Duration::from_secs(3), "the broadcast at h2")?;
    ensure!(
        lab.drop_count(&h1.port, "no_egress")? == before + 4,
        "no_egress counted with somewhere to go"
    );
    Ok(())
}

/// Station s is learned behind h1's port; h1's frames to s are dropped as
/// `same_segment` on that port (s already had them), and reach nobody else.
#[test]
fn a_frame_for_a_station_behind_its_own_port_counts_same_segment() -> Result<()> {
    let lab = lab!("dropsameseg", "dss", 218)?;
    let h1 = lab.add_veth_host("h1", 1)?;
    let h2 = lab.add_veth_host("h2", 2)?;
    lab.start_xswd(&Lab::config_with_ports(&[&h1.port, &h2.port]))?;
    let s = lab.mac(50);
    lab.raw_send(&h1, &experimental("ff:ff:ff:ff:ff:ff", &s), 1)?;
    std::thread::sleep(Duration::from_millis(200));
    let e = lab.fdb_entries(&s)?;
    ensure!(
        e.len() == 1 && e[0]["port"] == h1.port.as_str(),
        "{s} should be learned on {}: {e:?}",
        h1.port
    );
    let mut at_h2 = lab.capture_as(&h2, "samesegment", &format!("ether dst {s}"), 1)?;
    let before = lab.drop_count(&h1.port, "same_segment")?;
    lab.raw_send(&h1, &experimental(&s, &h1.mac), 3)?;
    lab.expect_drops(&h1.port, "same_segment", before, 3)?;
    lab.expect_silence(
        &mut at_h2,
        Duration::from_millis(500),
        "a frame for s (behind h1) reached h2",
    )?;
    Ok(())
}

/// h2 is learned, then its link goes down (its end of the veth is set down):
/// frames towards it are dropped as `link_down` on h2's port, and once the
/// link is back they arrive again.
#[test]
fn a_frame_towards_a_port_whose_link_is_down_counts_link_down() -> Result<()> {
    let lab = lab!("droplinkdown", "dld", 219)?;
    let h1 = lab.add_veth_host("h1", 1)?;
    let h2 = lab.add_veth_host("h2", 2)?;
    lab.start_xswd(&Lab::config_with_ports(&[&h1.port, &h2.port]))?;
    lab.wait_reachable(&h1, &h2, Duration::from_secs(5))?;
    cmd::ns_ok(&h2.ns, &["ip", "link", "set", &h2.ifname, "down"])?;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while lab.port(&h2.port)?.is_some_and(|p| p["link"] == "up") {
        ensure!(
            std::time::Instant::now() < deadline,
            "{} still shown up after its peer went down",
            h2.port
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    ensure!(
        !lab.fdb_entries(&h2.mac)?.is_empty(),
        "h2's MAC left the table with its link; the frames below would flood instead"
    );
    let before = lab.drop_count(&h2.port, "link_down")?;
    lab.raw_send(&h1, &experimental(&h2.mac, &h1.mac), 3)?;
    lab.expect_drops(&h2.port, "link_down", before, 3)?;

    cmd::ns_ok(&h2.ns, &["ip", "link", "set", &h2.ifname, "up"])?;
    lab.wait_reachable(&h1, &h2, Duration::from_secs(10))?;
    ensure!(
        lab.drop_count(&h2.port, "link_down")? == before + 3,
        "link_down counted while the link was up"
    );
    Ok(())
}

/// Bursts bigger than the egress TX ring: with receive batches of 1,024 and
/// a TX ring of 64, a burst that piles up while the worker is busy cannot
/// all be queued, and what does not fit is counted as `tx_ring_full` on the
/// egress port (never silently lost: frames out = frames in - drops).
#[test]
fn a_burst_larger_than_the_tx_ring_counts_tx_ring_full() -> Result<()> {
    let lab = lab!("droptxfull", "dtf", 221)?;
    let h1 = lab.add_veth_host("h1", 1)?;
    let h2 = lab.add_veth_host("h2", 2)?;
    lab.start_xswd(&format!(
        "[dataplane]\nbatch_size = 1024\n\n[umem]\ntx_ring = 64\n\n[[port]]\nname = \"{}\"\nfast_path = false\n\n[[port]]\nname = \"{}\"\nfast_path = false\n",
        h1.port, h2.port
    ))?;
    lab.wait_reachable(&h1, &h2, Duration::from_secs(5))?;
    let before = lab.drop_count(&h2.port, "tx_ring_full")?;
    let (rx_before, tx_before) = (lab.port_stats(&h1.port)?, lab.port_stats(&h2.port)?);
    lab.raw_send_from_many(&h1, &experimental(&h2.mac, &h1.mac), 20_000, 1, 0)?;
    std::thread::sleep(Duration::from_millis(500));
    let full = lab.drop_count(&h2.port, "tx_ring_full")? - before;
    let received = lab.port_stats(&h1.port)?.rx_frames - rx_before.rx_frames;
    let sent = lab.port_stats(&h2.port)?.tx_frames - tx_before.tx_frames;
    eprintln!("burst: {received} frames received, {sent} sent, {full} tx_ring_full");
    ensure!(
        full > 0,
        "no tx_ring_full after 20,000 frames at once into a 64-frame ring"
    );
    ensure!(
        received == sent + full,
        "frames unaccounted for: {received} received from h1, {sent} sent to h2, {full} tx_ring_full"
    );
    Ok(())
}
