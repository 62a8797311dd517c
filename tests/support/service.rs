//! Helpers for the service tests (tests/service.rs): the systemd unit as a
//! file, and xswd started through a wrapper (setpriv with the unit's
//! capabilities, env with NOTIFY_SOCKET, strace) the way the unit runs it.

use anyhow::{anyhow, bail, ensure, Context, Result};
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use crate::{cmd, Lab, Proc};

/// The repository's root (the parent of tests/).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// deploy/xsw.service, read and split into `Key=value` settings.
pub struct Unit {
    pub path: PathBuf,
    pub text: String,
}

impl Unit {
    pub fn load() -> Result<Unit> {
        let path = repo_root().join("deploy/xsw.service");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        Ok(Unit { path, text })
    }

    /// Every value of `key` (settings may repeat), in order.
    pub fn values(&self, key: &str) -> Vec<String> {
        self.text
            .lines()
            .map(str::trim)
            .filter(|l| !l.starts_with('#') && !l.starts_with(';'))
            .filter_map(|l| l.split_once('='))
            .filter(|(k, _)| k.trim() == key)
            .map(|(_, v)| v.trim().to_string())
            .collect()
    }

    /// The single value of `key`, an error if absent or repeated.
    pub fn value(&self, key: &str) -> Result<String> {
        let v = self.values(key);
        ensure!(
            v.len() == 1,
            "{}: {key}= set {} times: {v:?}",
            self.path.display(),
            v.len()
        );
        Ok(v.into_iter().next().unwrap_or_default())
    }

    /// The whitespace-separated words of every `key=` line together.
    pub fn words(&self, key: &str) -> Vec<String> {
        self.values(key)
            .iter()
            .flat_map(|v| v.split_whitespace().map(str::to_string))
            .collect()
    }

    /// CapabilityBoundingSet=, as written (e.g. "CAP_NET_ADMIN").
    pub fn capabilities(&self) -> Result<Vec<String>> {
        let caps = self.words("CapabilityBoundingSet");
        ensure!(!caps.is_empty(), "the unit sets no CapabilityBoundingSet=");
        Ok(caps)
    }
}

/// "CAP_NET_ADMIN" -> "net_admin", as setpriv names it.
pub fn setpriv_name(cap: &str) -> String {
    cap.trim_start_matches("CAP_").to_ascii_lowercase()
}

/// Bit number of a capability, for comparing with /proc/PID/status.
pub fn cap_bit(cap: &str) -> Result<u32> {
    Ok(match cap {
        "CAP_CHOWN" => 0,
        "CAP_DAC_OVERRIDE" => 1,
        "CAP_NET_BIND_SERVICE" => 10,
        "CAP_NET_ADMIN" => 12,
        "CAP_NET_RAW" => 13,
        "CAP_IPC_LOCK" => 14,
        "CAP_SYS_ADMIN" => 21,
        "CAP_SYS_RESOURCE" => 24,
        "CAP_PERFMON" => 38,
        "CAP_BPF" => 39,
        other => bail!("cap_bit: add {other}"),
    })
}

/// A setpriv prefix that leaves the (root) process exactly `caps`: bounding,
/// inheritable and ambient sets as systemd sets them from the unit's
/// CapabilityBoundingSet=/AmbientCapabilities=, plus RLIMIT_MEMLOCK at
/// `memlock` bytes (systemd's default for services is 8 MiB).
pub fn with_caps(caps: &[String], memlock: u64) -> Vec<String> {
    let list: String = caps
        .iter()
        .map(|c| format!(",+{}", setpriv_name(c)))
        .collect();
    let mut v: Vec<String> = vec![
        "prlimit".into(),
        format!("--memlock={memlock}:{memlock}"),
        "setpriv".into(),
        format!("--inh-caps=-all{list}"),
        format!("--ambient-caps=-all{list}"),
        format!("--bounding-set=-all{list}"),
        "--no-new-privs".into(),
    ];
    v.push("--".into());
    v
}

/// The effective capability mask of process `pid`.
pub fn effective_caps(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .ok_or_else(|| anyhow!("no CapEff in /proc/{pid}/status"))?;
    Ok(u64::from_str_radix(hex.trim(), 16)?)
}

impl Lab {
    fn xswd_argv(&self, wrapper: &[String]) -> Result<Vec<String>> {
        let sock = self.socket().display().to_string();
        let cfg = self.config_path().display().to_string();
        let xswd = self.bins.xswd()?.display().to_string();
        let mut inner: Vec<&str> = wrapper.iter().map(String::as_str).collect();
        inner.extend_from_slice(&[&xswd, "--socket", &sock, "--config", &cfg]);
        Ok(cmd::in_ns(&self.sw, &inner))
    }

    /// Like [`Lab::start_xswd`], but runs `ip netns exec SW WRAPPER... xswd
    /// --socket S --config C` (every wrapper must exec, so the process is
    /// xswd itself); returns once `xswctl status` answers (10 s at most).
    pub fn start_xswd_wrapped(&self, config: &str, wrapper: &[String]) -> Result<()> {
        ensure!(self.xswd.borrow().is_none(), "xswd already started");
        std::fs::write(self.config_path(), config)?;
        let argv = self.xswd_argv(wrapper)?;
        let mut p = Proc::spawn("xswd", &argv, &self.dir.join("xswd.log"))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(st) = p.child.try_wait()? {
                bail!(
                    "xswd ({}) exited ({st}) before answering `xswctl status`; its log:\n{}",
                    argv.join(" "),
                    p.log_text()
                );
            }
            if self.socket().exists() && self.ctl(&["status"])?.success() {
                break;
            }
            ensure!(
                Instant::now() < deadline,
                "xswd ({}) did not answer `xswctl status` within 10 s; its log:\n{}",
                argv.join(" "),
                p.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        *self.xswd.borrow_mut() = Some(p);
        Ok(())
    }

    /// Starts xswd through `wrapper` and returns at once (no readiness
    /// wait): for tests that watch readiness themselves.
    pub fn spawn_xswd_wrapped(&self, config: &str, wrapper: &[String]) -> Result<()> {
        ensure!(self.xswd.borrow().is_none(), "xswd already started");
        std::fs::write(self.config_path(), config)?;
        let argv = self.xswd_argv(wrapper)?;
        let p = Proc::spawn("xswd", &argv, &self.dir.join("xswd.log"))?;
        *self.xswd.borrow_mut() = Some(p);
        Ok(())
    }

    /// Runs xswd through `wrapper` expecting it to stop by itself within
    /// `timeout` (a refused start): its exit status and log. Fails if it is
    /// still running then (it is killed).
    pub fn run_xswd_to_exit(
        &self,
        config: &str,
        wrapper: &[String],
        timeout: Duration,
    ) -> Result<(ExitStatus, String)> {
        ensure!(self.xswd.borrow().is_none(), "xswd already started");
        std::fs::write(self.config_path(), config)?;
        let argv = self.xswd_argv(wrapper)?;
        let log = self.dir.join("xswd-refused.log");
        let _ = std::fs::remove_file(&log);
        let mut p = Proc::spawn("xswd", &argv, &log)?;
        let status = p.wait_exit(timeout);
        let text = p.log_text();
        match status {
            Some(st) => Ok((st, text)),
            None => bail!(
                "xswd ({}) still runs {timeout:?} after starting, but should have refused to; its log:\n{text}",
                argv.join(" ")
            ),
        }
    }
}
