//! Running commands with timeouts and captured output, in the current or in a
//! named network namespace.

use anyhow::{anyhow, bail, Context, Result};
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// Result of a finished (or timed-out and killed) command.
#[derive(Debug)]
pub struct Output {
    pub argv: Vec<String>,
    /// Exit code; None if killed by a signal (including our timeout kill).
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub timed_out: bool,
}

impl Output {
    pub fn success(&self) -> bool {
        self.code == Some(0) && !self.timed_out
    }
    /// Turns a failed run into an error that shows the command and its output.
    pub fn ok(self) -> Result<Output> {
        if self.success() {
            Ok(self)
        } else {
            Err(anyhow!("{}", self.describe()))
        }
    }
    pub fn describe(&self) -> String {
        format!(
            "command `{}` {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.argv.join(" "),
            if self.timed_out {
                "timed out and was killed".to_string()
            } else {
                match self.code {
                    Some(c) => format!("exited with status {c}"),
                    None => "was killed by a signal".to_string(),
                }
            },
            self.stdout.trim_end(),
            self.stderr.trim_end()
        )
    }
}

/// Prefixes `argv` with `ip netns exec NS`.
pub fn in_ns(ns: &str, argv: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = ["ip", "netns", "exec", ns]
        .iter()
        .map(|s| s.to_string())
        .collect();
    v.extend(argv.iter().map(|s| s.to_string()));
    v
}

fn command(argv: &[String]) -> Result<Command> {
    let (prog, rest) = argv.split_first().ok_or_else(|| anyhow!("empty command"))?;
    let mut c = Command::new(prog);
    c.args(rest);
    // Own process group, so a timeout kill reaches every child it started.
    c.process_group(0);
    // Plain logs (tracing and others honour NO_COLOR).
    c.env("NO_COLOR", "1");
    Ok(c)
}

/// Sends SIGKILL to the process group led by `child` (see `command`).
pub fn kill_group(child: &Child) {
    let pid = child.id() as libc::pid_t;
    // SAFETY: kill() has no memory-safety preconditions; a negative pid
    // addresses the process group we created with process_group(0).
    unsafe {
        libc::kill(-pid, libc::SIGKILL);
    }
}

/// Sends `sig` to the single process `child`.
pub fn signal(child: &Child, sig: libc::c_int) {
    // SAFETY: kill() has no memory-safety preconditions.
    unsafe {
        libc::kill(child.id() as libc::pid_t, sig);
    }
}

fn reader_thread<R: Read + Send + 'static>(r: Option<R>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = Vec::new();
        if let Some(mut r) = r {
            let _ = r.read_to_end(&mut s);
        }
        String::from_utf8_lossy(&s).into_owned()
    })
}

/// Runs `argv` to completion, killing it (and its process group) after `timeout`.
pub fn run(argv: &[String], timeout: Duration) -> Result<Output> {
    let mut c = command(argv)?;
    c.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c
        .spawn()
        .with_context(|| format!("spawning `{}`", argv.join(" ")))?;
    let out_t = reader_thread(child.stdout.take());
    let err_t = reader_thread(child.stderr.take());
    let deadline = Instant::now() + timeout;
    let mut timed_out = false;
    let status: ExitStatus = loop {
        if let Some(st) = child.try_wait()? {
            break st;
        }
        if Instant::now() >= deadline {
            timed_out = true;
            kill_group(&child);
            break child.wait()?;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    // A grandchild may still hold the pipes after a timeout; it was killed
    // with the group, so the readers finish.
    let stdout = out_t.join().unwrap_or_default();
    let stderr = err_t.join().unwrap_or_default();
    Ok(Output {
        argv: argv.to_vec(),
        code: status.code(),
        stdout,
        stderr,
        timed_out,
    })
}

/// `run` with string slices.
pub fn run_args(argv: &[&str], timeout: Duration) -> Result<Output> {
    let v: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
    run(&v, timeout)
}

/// Runs a short system command (ip, ethtool, sysctl...) and requires success.
pub fn sh_ok(argv: &[&str]) -> Result<String> {
    Ok(run_args(argv, Duration::from_secs(10))?.ok()?.stdout)
}

/// Runs a short command inside namespace `ns` and requires success.
pub fn ns_ok(ns: &str, argv: &[&str]) -> Result<String> {
    Ok(run(&in_ns(ns, argv), Duration::from_secs(10))?.ok()?.stdout)
}

/// A background process whose stdout lines can be awaited and whose stderr
/// goes to a log file. Killed (with its process group) when dropped.
pub struct Proc {
    pub label: String,
    pub child: Child,
    lines: Receiver<String>,
    pub log: std::path::PathBuf,
    stdin: Option<std::process::ChildStdin>,
}

impl Proc {
    /// Spawns `argv` with stdin as a pipe held by us (closing it tells
    /// well-behaved children such as xsw-guest to stop), stdout lines
    /// collected, and stderr appended to `log`.
    pub fn spawn(label: &str, argv: &[String], log: &Path) -> Result<Proc> {
        let logf = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening log {}", log.display()))?;
        let mut c = command(argv)?;
        c.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(logf));
        let mut child = c
            .spawn()
            .with_context(|| format!("spawning `{}`", argv.join(" ")))?;
        let (tx, rx) = mpsc::channel();
        if let Some(out) = child.stdout.take() {
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines() {
                    match line {
                        Ok(l) => {
                            if tx.send(l).is_err() {
                                break;
                            }
                        }
                        Err(_) => break,
                    }
                }
            });
        }
        let stdin = child.stdin.take();
        Ok(Proc {
            label: label.to_string(),
            child,
            lines: rx,
            log: log.to_path_buf(),
            stdin,
        })
    }

    /// Waits for the next stdout line.
    pub fn next_line(&mut self, timeout: Duration) -> Result<String> {
        match self.lines.recv_timeout(timeout) {
            Ok(l) => Ok(l),
            Err(RecvTimeoutError::Timeout) => {
                bail!(
                    "{}: no output within {:?}; log:\n{}",
                    self.label,
                    timeout,
                    self.log_text()
                )
            }
            Err(RecvTimeoutError::Disconnected) => {
                let st = self.child.try_wait().ok().flatten();
                bail!(
                    "{}: stdout closed (exit status {:?}); log:\n{}",
                    self.label,
                    st,
                    self.log_text()
                )
            }
        }
    }

    /// Waits for a stdout line starting with `prefix`, skipping others.
    pub fn wait_line(&mut self, prefix: &str, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let l = self.next_line(left)?;
            if l.starts_with(prefix) {
                return Ok(l);
            }
        }
    }

    /// Collects stdout lines until the process closes stdout (normally: exits),
    /// at most for `timeout`.
    pub fn collect_lines(&mut self, timeout: Duration) -> Result<Vec<String>> {
        let deadline = Instant::now() + timeout;
        let mut v = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => v.push(l),
                Err(RecvTimeoutError::Disconnected) => return Ok(v),
                Err(RecvTimeoutError::Timeout) => {
                    bail!(
                        "{}: still running after {:?}; output so far:\n{}",
                        self.label,
                        timeout,
                        v.join("\n")
                    )
                }
            }
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// True while the process has not exited.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits for exit up to `timeout`; returns the status if it exited.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Closes our end of its stdin.
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// SIGTERM, then SIGKILL to its process group if it has not exited after
    /// `grace`. (The group is only signalled while its leader is unreaped, so
    /// the group id cannot have been reused by anyone else.)
    pub fn stop(&mut self, grace: Duration) {
        self.close_stdin();
        if self.running() {
            signal(&self.child, libc::SIGTERM);
            if self.wait_exit(grace).is_none() {
                kill_group(&self.child);
                let _ = self.child.wait();
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.running() {
            kill_group(&self.child);
            let _ = self.child.wait();
        }
    }
}
