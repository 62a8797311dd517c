//! Small wrappers over the system calls and /proc files the benchmark needs.

use std::ffi::CString;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(_sig: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

/// Makes SIGINT and SIGTERM set a flag instead of killing the process, so a
/// run interrupted by the operator (or by the benchmark script) still prints
/// what it measured and drops its XDP links in an orderly way.
///
/// SA_RESTART is left out on purpose: a long BPF_PROG_RUN or sleep must
/// return early (EINTR) when the signal arrives.
pub fn install_stop_handler() -> Result<()> {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: sigaction is fully initialised (zeroed, handler and empty mask
        // set) and the handler only stores to an atomic (async-signal-safe).
        let rc = unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_stop_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            libc::sigemptyset(&mut sa.sa_mask);
            sa.sa_flags = 0;
            libc::sigaction(sig, &sa, std::ptr::null_mut())
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error())
                .context("installing the SIGINT/SIGTERM handler");
        }
    }
    Ok(())
}

pub fn stop_requested() -> bool {
    STOP.load(Ordering::Relaxed)
}

/// Sleeps until `deadline` or until a stop signal, in short steps so a signal
/// that lands between checks is noticed quickly. Returns false if stopped.
pub fn sleep_until(deadline: Instant) -> bool {
    loop {
        if stop_requested() {
            return false;
        }
        let now = Instant::now();
        if now >= deadline {
            return true;
        }
        std::thread::sleep((deadline - now).min(Duration::from_millis(50)));
    }
}

pub fn ifindex(name: &str) -> Result<u32> {
    let c = CString::new(name)
        .with_context(|| format!("interface name {name:?} contains a NUL byte"))?;
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        bail!(
            "interface {name} not found in this network namespace ({}); \
             check the name with `ip link`, or run inside its namespace with `ip netns exec NS ...`",
            std::io::Error::last_os_error()
        );
    }
    Ok(idx)
}

/// Pins the calling thread to one CPU, so the operator decides which core
/// carries the generator (on small machines it shares cores with the device
/// under test, and placement changes the result).
pub fn pin_to_cpu(cpu: usize) -> Result<()> {
    let ncpu = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    if cpu >= libc::CPU_SETSIZE as usize {
        bail!("--cpu {cpu} is out of range (this machine has {ncpu} CPUs)");
    }
    // SAFETY: a zeroed cpu_set_t is the empty set, `cpu` < CPU_SETSIZE (checked
    // above), and the pointer and size given describe that local set.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("pinning to CPU {cpu} (this machine has {ncpu} CPUs; allowed CPUs may be limited by taskset/cgroups)"));
    }
    Ok(())
}

/// Busy CPU time summed over all cores from /proc/stat, in seconds.
/// /proc/stat is not namespaced, so this sees the generator, the switch and
/// the kernel's softirq work wherever they run.
#[derive(Clone, Copy, Debug)]
pub struct CpuTimes {
    pub busy: f64,
}

impl CpuTimes {
    pub fn read() -> Result<Self> {
        let text = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
        let line = text
            .lines()
            .find(|l| l.starts_with("cpu "))
            .context("/proc/stat has no aggregate `cpu` line")?;
        let fields: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .map(|f| f.parse::<u64>())
            .collect::<Result<_, _>>()
            .with_context(|| format!("unexpected /proc/stat line: {line}"))?;
        if fields.len() < 5 {
            bail!("unexpected /proc/stat line: {line}");
        }
        // user nice system idle iowait irq softirq steal [guest guest_nice];
        // guest time is already included in user, so only the first eight count.
        let total: u64 = fields.iter().take(8).sum();
        let idle = fields[3] + fields[4];
        // SAFETY: sysconf has no memory-safety preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        let hz = if hz > 0 { hz as f64 } else { 100.0 };
        Ok(Self {
            busy: total.saturating_sub(idle) as f64 / hz,
        })
    }
}

/// The device's transmitted-frames counter, if sysfs has one. Under
/// `ip netns exec`, /sys shows the devices of the current namespace.
pub fn tx_packets(iface: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/sys/class/net/{iface}/statistics/tx_packets"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// CLOCK_MONOTONIC in ns: the clock bpf_ktime_get_ns() reads.
pub fn monotonic_ns() -> Result<u64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("reading CLOCK_MONOTONIC");
    }
    Ok(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64)
}

/// The CPU this thread is running on now.
pub fn current_cpu() -> Result<usize> {
    // SAFETY: sched_getcpu has no memory-safety preconditions.
    let cpu = unsafe { libc::sched_getcpu() };
    if cpu < 0 {
        return Err(std::io::Error::last_os_error())
            .context("finding the current CPU (sched_getcpu); pass --cpu");
    }
    Ok(cpu as usize)
}
