//! What the kernel knows about a process and its threads (/proc/PID/status,
//! /proc/PID/task/*): resident memory,
//! CPU time and wake-ups, exact to the nanosecond and to the wake-up, for
//! tests that check behaviour (an idle thread stays asleep, a spinning one
//! runs) instead of timing the daemon.

use anyhow::{Context, Result};

/// One thread of a process at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThreadSample {
    /// The thread id.
    pub tid: u32,
    /// Its name (`comm`), e.g. "xsw-worker-0".
    pub name: String,
    /// Nanoseconds it has run on a CPU (schedstat field 1). Exact, where the
    /// tick counts of /proc/PID/stat are sampled every 10 ms and can charge a
    /// whole tick to a thread that ran for microseconds.
    pub cpu_ns: u64,
    /// Times it was put on a CPU (schedstat field 3): every wake-up is one.
    pub runs: u64,
}

/// Every thread of `pid` now.
pub fn threads(pid: u32) -> Result<Vec<ThreadSample>> {
    let mut threads = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let dir = task?.path();
        // A thread may exit between the listing and the reads.
        let (Ok(stat), Ok(name)) = (
            std::fs::read_to_string(dir.join("schedstat")),
            std::fs::read_to_string(dir.join("comm")),
        ) else {
            continue;
        };
        let field = |i: usize| -> Result<u64> {
            stat.split_whitespace()
                .nth(i)
                .with_context(|| format!("{}/schedstat has no field {i}", dir.display()))?
                .parse()
                .with_context(|| format!("malformed {}/schedstat: {stat}", dir.display()))
        };
        let tid = dir
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.parse().ok())
            .with_context(|| format!("task directory {}", dir.display()))?;
        threads.push(ThreadSample {
            tid,
            name: name.trim().to_string(),
            cpu_ns: field(0)?,
            runs: field(2)?,
        });
    }
    Ok(threads)
}

/// Per thread, how much `after` ran and woke since `before` (threads that
/// started in between count from zero).
pub fn since(before: &[ThreadSample], after: &[ThreadSample]) -> Vec<ThreadSample> {
    after
        .iter()
        .map(|a| {
            let b = before.iter().find(|b| b.tid == a.tid);
            ThreadSample {
                tid: a.tid,
                name: a.name.clone(),
                cpu_ns: a.cpu_ns - b.map_or(0, |b| b.cpu_ns),
                runs: a.runs - b.map_or(0, |b| b.runs),
            }
        })
        .collect()
}

/// One thread of another process held stopped (ptrace's interrupt-stop,
/// which stops that thread alone, as a debugger in non-stop mode does) until
/// this is dropped. Lets a test make one worker stall, as a bug or a stuck
/// syscall would, without any test hook in the daemon.
///
/// The thread that called [`Stalled::stop`] must drop it (ptrace ties a
/// tracee to its tracer thread); a test function runs on one thread.
pub struct Stalled {
    tid: u32,
}

impl Stalled {
    pub fn stop(tid: u32) -> Result<Stalled> {
        let pid = tid as libc::pid_t;
        let null = std::ptr::null_mut::<libc::c_void>();
        // SAFETY: ptrace with SEIZE/INTERRUPT reads and writes no memory of
        // ours (addr and data are unused and null).
        if unsafe { libc::ptrace(libc::PTRACE_SEIZE, pid, null, null) } != 0 {
            anyhow::bail!("ptrace SEIZE {tid}: {}", std::io::Error::last_os_error());
        }
        let stalled = Stalled { tid };
        // SAFETY: as above.
        if unsafe { libc::ptrace(libc::PTRACE_INTERRUPT, pid, null, null) } != 0 {
            anyhow::bail!(
                "ptrace INTERRUPT {tid}: {}",
                std::io::Error::last_os_error()
            );
        }
        let mut status = 0;
        // SAFETY: status is a valid, writable c_int for the call's duration.
        if unsafe { libc::waitpid(pid, &mut status, libc::__WALL) } != pid {
            anyhow::bail!("waitpid {tid}: {}", std::io::Error::last_os_error());
        }
        anyhow::ensure!(
            libc::WIFSTOPPED(status),
            "thread {tid} did not stop (wait status {status:#x})"
        );
        Ok(stalled)
    }
}

impl Drop for Stalled {
    fn drop(&mut self) {
        let null = std::ptr::null_mut::<libc::c_void>();
        // SAFETY: detaching reads and writes no memory of ours; the thread is
        // in a ptrace-stop (or gone, when the call fails harmlessly).
        unsafe { libc::ptrace(libc::PTRACE_DETACH, self.tid as libc::pid_t, null, null) };
    }
}

/// The resident set of `pid` in KiB (`VmRSS` of /proc/PID/status).
pub fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS in /proc/PID/status")
}
