//! xswd's memory under concurrent control: ten clients adding and removing
//! ports at once must not leave the daemon's RSS far above its idle figure
//! (freed per-port memory goes back to the system).

use anyhow::{ensure, Context, Result};
use std::time::Duration;
use xsw_integration::{cmd, lab, threads};

const CLIENTS: usize = 10;
const ROUNDS: usize = 15;

#[test]
fn rss_returns_near_idle_after_concurrent_port_churn() -> Result<()> {
    let lab = lab!("memchurn", "mch", 234)?;
    // One veth per client, in the switch namespace only (no traffic needed).
    let ports: Vec<String> = (0..CLIENTS)
        .map(|i| lab.port_name(&format!("c{i}")))
        .collect();
    for port in &ports {
        cmd::sh_ok(&[
            "ip",
            "-n",
            &lab.sw,
            "link",
            "add",
            port,
            "type",
            "veth",
            "peer",
            "name",
            &format!("{port}p"),
        ])?;
        cmd::sh_ok(&["ip", "-n", &lab.sw, "link", "set", port, "up"])?;
    }
    lab.start_xswd("")?;
    let pid = lab.xswd_pid().context("xswd pid")?;
    // Idle: after one port was added and removed (code paths touched once).
    lab.ctl_ok(&["port", "add", &ports[0]])?;
    lab.ctl_ok(&["port", "del", &ports[0]])?;
    std::thread::sleep(Duration::from_millis(500));
    let idle = threads::rss_kib(pid)?;

    let mut peak = idle;
    let xswctl = lab.bins.xswctl()?.display().to_string();
    let socket = lab.socket().display().to_string();
    let ctl = |args: &[&str]| -> Result<()> {
        let mut argv = vec![xswctl.as_str(), "--socket", socket.as_str()];
        argv.extend_from_slice(args);
        let out = cmd::run_args(&argv, Duration::from_secs(30))?;
        ensure!(out.success(), "{}", out.describe());
        Ok(())
    };
    std::thread::scope(|scope| -> Result<()> {
        let ctl = &ctl;
        let handles: Vec<_> = ports
            .iter()
            .map(|port| {
                scope.spawn(move || -> Result<()> {
                    for _ in 0..ROUNDS {
                        ctl(&["port", "add", port, "--hook", "xdp"])?;
                        ctl(&["port", "del", port])?;
                    }
                    Ok(())
                })
            })
            .collect();
        while handles.iter().any(|h| !h.is_finished()) {
            peak = peak.max(threads::rss_kib(pid)?);
            std::thread::sleep(Duration::from_millis(50));
        }
        for h in handles {
            h.join()
                .map_err(|_| anyhow::anyhow!("a client panicked"))??;
        }
        Ok(())
    })?;
    std::thread::sleep(Duration::from_secs(1));
    let after = threads::rss_kib(pid)?;
    println!(
        "xswd RSS: idle {} MiB, peak during churn {} MiB, after churn {} MiB ({CLIENTS} clients x {ROUNDS} add/del)",
        idle / 1024,
        peak / 1024,
        after / 1024
    );
    let ports_now = lab.ctl_json(&["port", "list"])?;
    ensure!(
        ports_now.as_array().is_some_and(|a| a.is_empty()),
        "ports left after churn: {ports_now}"
    );
    // A bound in memory, not time: idle plus 16 MiB (before the fix the same
    // churn left 100-250 MiB more).
    ensure!(
        after <= idle + 16 * 1024,
        "RSS after churn {} MiB, idle {} MiB",
        after / 1024,
        idle / 1024
    );
    Ok(())
}
