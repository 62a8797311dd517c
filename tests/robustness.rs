//! Bad input from the network and from the host: frames no station may send
//! are counted and dropped while forwarding goes on, and an interface that
//! already carries someone else's XDP program is refused unless forced.

use anyhow::{ensure, Context, Result};
use std::time::Duration;
use xsw_integration::{cmd, lab, Lab};

fn raw_frame(dst: &str, src: &str, ethertype: &str) -> String {
    // 14-byte header, then 46 bytes of payload: the minimum Ethernet frame.
    format!("{dst}{src}{ethertype}{}", "00".repeat(46))
}

#[test]
fn frames_with_impossible_sources_are_counted_and_dropped() -> Result<()> {
    let lab = lab!("robust", "rbf", 41)?;
    let h1 = lab.add_veth_host("h1", 1)?;
    let h2 = lab.add_veth_host("h2", 2)?;
    lab.start_xswd(&Lab::config_with_ports(&[&h1.port, &h2.port]))?;
    lab.wait_reachable(&h1, &h2, Duration::from_secs(5))?;

    let before = lab.port_stats(&h2.port)?;
    let nettool = lab.bins.nettool.display().to_string();
    for source in ["01005e000001", "000000000000", "ffffffffffff"] {
        let frame = raw_frame("ffffffffffff", source, "88b5");
        let out = lab.run_in(
            &h1.ns,
            &[
                &nettool,
                "raw-send",
                "--iface",
                &h1.ifname,
                "--frame",
                &frame,
                "--count",
                "40",
                "--interval-ms",
                "1",
            ],
            Duration::from_secs(10),
        )?;
        ensure!(out.success(), "raw-send failed: {}", out.describe());
    }
    std::thread::sleep(Duration::from_millis(300));

    let stats = lab.stats()?;
    let h1_stats = stats["ports"]
        .as_array()
        .context("stats.ports")?
        .iter()
        .find(|p| p["name"] == h1.port.as_str())
        .context("h1's port in stats")?;
    let dropped = h1_stats["drops"]["invalid_source_mac"]
        .as_u64()
        .context("invalid_source_mac")?;
    ensure!(
        dropped == 120,
        "expected 120 invalid_source_mac drops on {}, got {dropped}",
        h1.port
    );
    let after = lab.port_stats(&h2.port)?;
    ensure!(
        after.tx_frames - before.tx_frames < 40,
        "frames with impossible sources were flooded to h2 ({} -> {})",
        before.tx_frames,
        after.tx_frames
    );
    ensure!(
        stats["workers"][0]["frame_violations"] == 0,
        "frame ledger violations: {stats}"
    );

    // The worker carried on.
    lab.ping_all(&h1, &h2, 3)?;
    let status = lab.ctl_json(&["status"])?;
    ensure!(
        status["dead_workers"]
            .as_array()
            .is_some_and(|d| d.is_empty()),
        "a worker died: {status}"
    );
    Ok(())
}

const PASS_PROGRAM: &str = r#"
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
SEC("xdp") int someone_elses(struct xdp_md *ctx) { return XDP_PASS; }
char LICENSE[] SEC("license") = "GPL";
"#;

#[test]
fn a_foreign_xdp_program_is_refused_unless_forced() -> Result<()> {
    let lab = lab!("robust", "rbx", 42)?;
    let h1 = lab.add_veth_host("h1", 1)?;
    let h2 = lab.add_veth_host("h2", 2)?;
    lab.start_xswd(&Lab::config_with_ports(&[&h2.port]))?;

    let source = lab.dir.join("pass.c");
    let object = lab.dir.join("pass.o");
    std::fs::write(&source, PASS_PROGRAM)?;
    let arch_include = format!("-I/usr/include/{}-linux-gnu", std::env::consts::ARCH);
    cmd::sh_ok(&[
        "clang",
        "-O2",
        "-target",
        "bpf",
        &arch_include,
        "-c",
        &source.display().to_string(),
        "-o",
        &object.display().to_string(),
    ])?;
    let object = object.display().to_string();
    cmd::ns_ok(
        &lab.sw,
        &[
            "ip", "link", "set", "dev", &h1.port, "xdp", "obj", &object, "sec", "xdp",
        ],
    )?;

    let ports_before = lab.ports()?;
    let refused = lab.ctl_err(&["port", "add", &h1.port])?;
    let message = refused.stderr.clone();
    ensure!(
        message.contains("already carries another XDP program") && message.contains("--force"),
        "unexpected refusal: {message}"
    );
    ensure!(
        lab.ports()? == ports_before,
        "a refused port add changed the port list"
    );
    let link = cmd::ns_ok(&lab.sw, &["ip", "-d", "link", "show", "dev", &h1.port])?;
    ensure!(
        link.contains("someone_elses"),
        "the foreign program was touched by a refused add: {link}"
    );

    lab.ctl_ok(&["port", "add", &h1.port, "--force"])?;
    let link = cmd::ns_ok(&lab.sw, &["ip", "-d", "link", "show", "dev", &h1.port])?;
    ensure!(!link.contains("someone_elses"), "after --force: {link}");
    // A veth takes the tc hook by default: xsw's program is on tcx ingress.
    ensure!(
        lab.programs_attached()?
            .iter()
            .any(|p| p.starts_with(&format!("{} (tcx ingress", h1.port))),
        "xsw's program is not on {} after --force: {:?}",
        h1.port,
        lab.programs_attached()?
    );
    lab.wait_reachable(&h1, &h2, Duration::from_secs(5))?;
    lab.ping_all(&h1, &h2, 3)?;
    Ok(())
}
