//! The benchmark tools and scripts work: exact counts through the generator,
//! the sinks and the bare forwarders, and every scenario script running every
//! one of its systems end to end with short durations. Speeds are printed by
//! the benchmarks, never asserted here: this machine is shared and noisy.

use anyhow::{ensure, Context, Result};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;
use xsw_integration::{cmd, lab, Lab};

/// Where xswd, xswctl and xsw-bench were built (target/debug unless
/// XSW_BIN_DIR says otherwise).
fn bin_dir() -> PathBuf {
    std::env::var_os("XSW_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target").join("debug"))
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn bench_bin() -> Result<String> {
    let path = bin_dir().join("xsw-bench");
    ensure!(
        path.is_file(),
        "{} missing: run `cargo build --workspace`",
        path.display()
    );
    Ok(path.display().to_string())
}

/// Runs a script of bench/ with the debug binaries and the given environment;
/// returns its stdout, or an error with both outputs when it fails.
fn run_script(script: &str, args: &[&str], env: &[(&str, String)]) -> Result<String> {
    bench_bin()?;
    let mut argv: Vec<String> = vec![
        "env".into(),
        format!("XSW_BENCH={}", bin_dir().join("xsw-bench").display()),
        format!("XSWD={}", bin_dir().join("xswd").display()),
        format!("XSWCTL={}", bin_dir().join("xswctl").display()),
    ];
    argv.extend(env.iter().map(|(k, v)| format!("{k}={v}")));
    argv.push(workspace().join("bench").join(script).display().to_string());
    argv.extend(args.iter().map(|a| a.to_string()));
    let out = cmd::run(&argv, Duration::from_secs(600))?.ok()?;
    Ok(out.stdout)
}

/// The report row of `system`: its frames/s, which must be a positive number.
fn row_frames_per_sec(report: &str, system: &str) -> Result<f64> {
    row_first_number(report, system, "frames/s")
}

/// The first column of `system`'s row in a report (`what` it measures), which
/// must be a positive number.
fn row_first_number(report: &str, system: &str, what: &str) -> Result<f64> {
    let line = report
        .lines()
        .find(|l| l.starts_with(system))
        .with_context(|| format!("no row for {system:?} in the report:\n{report}"))?;
    let value: f64 = line[system.len()..]
        .split_whitespace()
        .next()
        .and_then(|w| w.parse().ok())
        .with_context(|| format!("row for {system:?} has no {what}: {line}"))?;
    ensure!(value > 0.0, "{system} forwarded nothing: {line}");
    Ok(value)
}

fn scenario(name: &str, systems: &[&str]) -> Result<String> {
    // Holds the global lock so no other switch test competes for the cores.
    let _lab = lab!(&format!("bench-{name}"), "bsc", 241)?;
    let report = run_script(
        "scenario.sh",
        &[name, "1"],
        &[("LAT_DURATION", "1".to_string())],
    )?;
    for system in systems {
        row_frames_per_sec(&report, system)?;
    }
    Ok(report)
}

#[test]
fn port_to_port_scenario_runs_every_system_and_checks_the_targets() -> Result<()> {
    let report = scenario(
        "port-to-port",
        &[
            "Linux bridge",
            "xsw (adaptive)",
            "xsw (busy-poll)",
            "bare AF_XDP forwarder",
            "Open vSwitch (AF_XDP, PMD)",
            "bare XDP DEVMAP redirect",
            "no switch: gen -> sink",
        ],
    )?;
    for target in [
        "xsw frames/s / bare AF_XDP forwarder's",
        "xsw net CPU per frame / bare AF_XDP forwarder's",
        "xsw adaptive frames/s / busy-poll's",
    ] {
        ensure!(
            report.contains(target),
            "target {target:?} not reported:\n{report}"
        );
    }
    ensure!(
        report.contains("latency: stamped frames at"),
        "no latency table:\n{report}"
    );
    Ok(())
}

#[test]
fn veth_to_tap_scenario_delivers_to_the_guest_reader() -> Result<()> {
    scenario(
        "veth-tap",
        &[
            "Linux bridge",
            "xsw (adaptive)",
            "bare AF_XDP forwarder",
            "no switch: gen -> tap -> guest",
        ],
    )?;
    Ok(())
}

#[test]
fn acl_scenario_filters_the_same_rules_in_nftables_and_xsw() -> Result<()> {
    let report = scenario("acl", &["Linux bridge + nftables", "xsw (adaptive)"])?;
    ensure!(
        report.contains("xsw user-space ns per frame, anti-spoofing + 1,000 ACL rules"),
        "user-space target not reported:\n{report}"
    );
    // The allowed flow got through the 1,000 rules; the stats show that xsw
    // dropped nothing as spoofed or denied.
    ensure!(
        !report.contains("acl_deny") && !report.contains("spoofed"),
        "xsw dropped the benchmark's allowed traffic:\n{report}"
    );
    // And the rules were really evaluated: the traffic passed because the
    // last rule (1,000, the allow) matched it, and none of the 999 before it
    // did. A switch that skipped the ACL would show no hits at all.
    let matched: Vec<&str> = report
        .lines()
        .skip_while(|l| !l.starts_with("ACL rules of tenant default that matched"))
        .skip(1)
        .take_while(|l| {
            l.split_whitespace()
                .next()
                .is_some_and(|w| w.parse::<u32>().is_ok())
        })
        .collect();
    let hits_of_1000 = matched
        .iter()
        .find(|l| l.split_whitespace().next() == Some("1000"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|h| h.parse::<u64>().ok())
        .unwrap_or(0);
    ensure!(
        hits_of_1000 > 0 && matched.len() == 1,
        "the allow rule at position 1000 should be the only one that matched: {matched:?}\n{report}"
    );
    Ok(())
}

#[test]
fn flows_and_two_worker_scenarios_run() -> Result<()> {
    scenario(
        "flows",
        &["Linux bridge", "xsw (adaptive)", "bare AF_XDP forwarder"],
    )?;
    scenario(
        "two-workers",
        &["Linux bridge", "xsw, 1 worker", "xsw (adaptive)"],
    )?;
    Ok(())
}

/// iperf3 between two veth hosts through each system, at default offloads:
/// every row has a transfer rate and a retransmit count.
#[test]
fn tcp_scenario_carries_iperf3_through_every_system() -> Result<()> {
    let _lab = lab!("bench-tcp", "btc", 245)?;
    let report = run_script("scenario.sh", &["tcp", "1"], &[])?;
    for system in [
        "Linux bridge",
        "xsw (adaptive)",
        "xsw, fast path off",
        "xsw, XDP hook (AF_XDP only)",
        "no switch: host A -> host B",
    ] {
        row_first_number(&report, system, "Gbit/s")?;
        let line = report.lines().find(|l| l.starts_with(system)).unwrap_or("");
        let retransmits = line[system.len()..].split_whitespace().nth(1);
        ensure!(
            retransmits.is_some_and(|r| r.parse::<u64>().is_ok()),
            "row for {system:?} has no retransmit count: {line}"
        );
    }
    ensure!(
        report.contains("scenario tcp: iperf3") && !report.contains("bad TCP checksums"),
        "no TCP report, or a switch delivered bad checksums:\n{report}"
    );
    Ok(())
}

#[test]
fn rfc2544_search_writes_results_and_plots() -> Result<()> {
    let lab = lab!("bench-rfc2544", "brf", 242)?;
    let out = lab.dir.join("rfc2544");
    let report = run_script(
        "rfc2544.sh",
        &[],
        &[
            ("SIZES", "64".into()),
            ("SYSTEMS", "xsw".into()),
            ("TRIAL", "1".into()),
            ("STEPS", "4".into()),
            ("LAT_DURATION", "1".into()),
            ("OUT", out.display().to_string()),
        ],
    )?;
    let results = std::fs::read_to_string(out.join("throughput.jsonl"))
        .with_context(|| format!("no throughput.jsonl; report:\n{report}"))?;
    let rows: Vec<Value> = results
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()
        .with_context(|| format!("bad throughput.jsonl:\n{results}"))?;
    ensure!(
        rows.len() == 2,
        "want a 0.1% and a zero-loss row: {results}"
    );
    let allowed = rows
        .iter()
        .find(|r| r["criterion"] == "0.1% loss")
        .and_then(|r| r["frames_per_sec"].as_f64())
        .with_context(|| format!("no 0.1% loss row: {results}"))?;
    ensure!(
        allowed > 0.0,
        "xsw lost more than 0.1% even at a sixteenth of its flat-out rate:\n{report}"
    );
    for plot in ["throughput.svg", "latency.svg"] {
        let svg = std::fs::read_to_string(out.join(plot))
            .with_context(|| format!("no {plot}; report:\n{report}"))?;
        ensure!(
            svg.contains("<svg") && svg.contains("xsw"),
            "{plot} is not a plot of xsw"
        );
    }
    Ok(())
}

/// `gen --stamp --count N` into `sink --measure`: exactly N frames, none lost,
/// duplicated or reordered.
#[test]
fn generator_counts_exactly_and_the_measuring_sink_sees_every_frame() -> Result<()> {
    let lab: Lab = lab!("bench-tools", "btl", 243)?;
    let bench = bench_bin()?;
    let h = lab.add_veth_host("h1", 1)?;
    let sink = cmd::Proc::spawn(
        "sink",
        &cmd::in_ns(
            &lab.sw,
            &[
                &bench,
                "sink",
                "--measure",
                "--iface",
                &h.port,
                "--duration",
                "4",
                "--warmup",
                "0",
                "--json",
            ],
        ),
        &lab.dir.join("sink.log"),
    )?;
    std::thread::sleep(Duration::from_millis(800));
    cmd::ns_ok(
        &h.ns,
        &[
            &bench, "gen", "--iface", &h.ifname, "--stamp", "--count", "20000", "--rate", "50000",
            "--json",
        ],
    )?;
    let summary = sink_summary(sink)?;
    for (key, want) in [
        ("frames", 20000),
        ("lost", 0),
        ("duplicates", 0),
        ("reordered", 0),
    ] {
        ensure!(
            summary[key].as_u64() == Some(want),
            "{key}: want {want}, sink says {summary}"
        );
    }
    Ok(())
}

/// Waits for a sink to finish and parses its JSON summary (last stdout line).
fn sink_summary(mut sink: cmd::Proc) -> Result<Value> {
    let lines = sink.collect_lines(Duration::from_secs(20))?;
    let last = lines
        .iter()
        .rev()
        .find(|l| l.starts_with('{'))
        .with_context(|| format!("no JSON from the sink: {lines:?}\n{}", sink.log_text()))?;
    serde_json::from_str(last).with_context(|| format!("sink JSON: {last}"))
}

/// The generator writing into a tap that `tap-sink --measure` holds like a
/// VM: every stamped frame reaches the "guest", in order.
#[test]
fn tap_sink_reads_every_frame_like_a_guest() -> Result<()> {
    let lab: Lab = lab!("bench-tap", "btp", 244)?;
    let bench = bench_bin()?;
    let tap = format!("{}-tap", lab.tag);
    cmd::ns_ok(
        &lab.sw,
        &["ip", "tuntap", "add", "mode", "tap", "name", &tap],
    )?;
    let sink = cmd::Proc::spawn(
        "tap-sink",
        &cmd::in_ns(
            &lab.sw,
            &[
                &bench,
                "tap-sink",
                "--measure",
                "--tap",
                &tap,
                "--duration",
                "4",
                "--warmup",
                "0",
                "--json",
            ],
        ),
        &lab.dir.join("tap-sink.log"),
    )?;
    std::thread::sleep(Duration::from_millis(800));
    cmd::ns_ok(
        &lab.sw,
        &[
            &bench, "gen", "--iface", &tap, "--stamp", "--count", "10000", "--rate", "10000",
            "--json",
        ],
    )?;
    let summary = sink_summary(sink)?;
    for (key, want) in [
        ("frames", 10000),
        ("lost", 0),
        ("duplicates", 0),
        ("reordered", 0),
    ] {
        ensure!(
            summary[key].as_u64() == Some(want),
            "{key}: want {want}, tap-sink says {summary}"
        );
    }
    Ok(())
}
