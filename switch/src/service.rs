//! Service-manager (systemd) integration: readiness, reload and stop
//! notifications, status lines and the watchdog (see `deploy/xsw.service`).
//!
//! Every function here is a no-op when `NOTIFY_SOCKET` is unset (xswd started
//! by hand or by a test), and none of them can fail the daemon: a notification
//! that cannot be delivered is logged and forgotten.
//!
//! The watchdog: with `WatchdogSec=` in the unit, systemd passes
//! `WATCHDOG_USEC` and `WATCHDOG_PID` and restarts the service when no
//! `WATCHDOG=1` arrives within that time. [`spawn_watchdog`] pings at half the
//! interval, but only while the daemon's liveness check passes, so a hung or
//! dead worker (which leaves the process alive and the control socket
//! answering) still gets the service restarted.
//!
//! Capabilities: the unit runs xswd as root with only CAP_NET_ADMIN,
//! CAP_NET_RAW, CAP_BPF and CAP_IPC_LOCK. When a start fails,
//! [`missing_capabilities`] says which of them the process lacks.

use std::time::Duration;

use sd_notify::NotifyState;

/// Whether a service manager listens for notifications.
pub fn under_service_manager() -> bool {
    std::env::var_os("NOTIFY_SOCKET").is_some_and(|s| !s.is_empty())
}

fn send(states: &[NotifyState]) {
    if !under_service_manager() {
        return;
    }
    // `false`: keep NOTIFY_SOCKET, later notifications need it.
    if let Err(e) = sd_notify::notify(false, states) {
        let what: Vec<String> = states.iter().map(|s| s.to_string()).collect();
        tracing::warn!(error = %e, states = ?what, "cannot notify the service manager");
    }
}

/// READY=1 with a status line: the configured ports are up and the control
/// socket accepts clients. Also the end of a reload (after [`notify_reloading`]).
pub fn notify_ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// RELOADING=1: a reload (SIGHUP) started; finish it with [`notify_ready`].
/// Carries MONOTONIC_USEC, which systemd 253+ wants with RELOADING=1.
pub fn notify_reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(_) => send(&[NotifyState::Reloading]),
    }
}

/// STOPPING=1: shutdown has begun.
pub fn notify_stopping() {
    send(&[NotifyState::Stopping]);
}

/// STATUS=...: a one-line status shown by `systemctl status`.
pub fn notify_status(status: &str) {
    send(&[NotifyState::Status(status)]);
}

/// The watchdog timeout the service manager asked for, if any (both
/// WATCHDOG_USEC and a WATCHDOG_PID naming this process must be set).
pub fn watchdog_timeout() -> Option<Duration> {
    let mut usec = 0u64;
    if sd_notify::watchdog_enabled(false, &mut usec) && usec > 0 {
        Some(Duration::from_micros(usec))
    } else {
        None
    }
}

/// If the service manager asked for a watchdog, starts a thread that sends
/// WATCHDOG=1 every half timeout while `liveness()` returns true, and
/// withholds it (logging once, and saying so in STATUS=) while it returns
/// false, so that systemd restarts a daemon whose data plane has stopped.
/// Returns the ping interval, or None when no watchdog was asked for (then no
/// thread is started and `liveness` is dropped).
pub fn spawn_watchdog(liveness: impl Fn() -> bool + Send + 'static) -> Option<Duration> {
    let timeout = watchdog_timeout()?;
    let interval = (timeout / 2).max(Duration::from_millis(1));
    let spawned = std::thread::Builder::new()
        .name("xsw-watchdog".into())
        .spawn(move || watchdog_loop(interval, liveness));
    match spawned {
        Ok(_) => {
            tracing::info!(?timeout, ?interval, "watchdog enabled");
            Some(interval)
        }
        Err(e) => {
            // Without the thread systemd will restart us once the timeout
            // passes; say why in the journal.
            tracing::error!(error = %e, "cannot start the watchdog thread");
            None
        }
    }
}

/// A capability xswd needs: its bit number, name and what it is for.
struct Capability {
    bit: u32,
    name: &'static str,
    purpose: &'static str,
}

const CAP_NET_ADMIN: Capability = Capability {
    bit: 12,
    name: "CAP_NET_ADMIN",
    purpose: "attaches XDP programs and creates taps",
};
const CAP_NET_RAW: Capability = Capability {
    bit: 13,
    name: "CAP_NET_RAW",
    purpose: "opens AF_XDP sockets",
};
const CAP_IPC_LOCK: Capability = Capability {
    bit: 14,
    name: "CAP_IPC_LOCK",
    purpose: "pins the UMEM",
};
const CAP_BPF: Capability = Capability {
    bit: 39,
    name: "CAP_BPF",
    purpose: "loads the XDP program and creates its maps",
};

/// The capabilities the unit grants (deploy/xsw.service), in its order.
pub const UNIT_CAPABILITIES: &str = "CAP_NET_ADMIN CAP_NET_RAW CAP_BPF CAP_IPC_LOCK";

/// Explains a failed start: names the capabilities xswd needs that this
/// process lacks, with what each is for, or None if it lacks none (or they
/// cannot be read). Call it when setting up the data plane or the config's
/// ports failed, and print it after the error itself: the kernel's EPERM
/// names the call that failed, this names the capability to grant.
/// `pinned_bytes` is the UMEM memory all workers pin (workers x frame_count
/// x frame_size): CAP_IPC_LOCK only matters when that exceeds
/// RLIMIT_MEMLOCK.
pub fn missing_capabilities(pinned_bytes: u64) -> Option<String> {
    let effective = effective_capabilities()?;
    let last_cap = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .unwrap_or(u32::MAX);
    describe_missing(effective, last_cap, pinned_bytes, memlock_limit())
}

fn effective_capabilities() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

/// RLIMIT_MEMLOCK's soft limit in bytes; None when unlimited or unknown.
fn memlock_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the valid struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) } != 0
        || limit.rlim_cur == libc::RLIM_INFINITY
    {
        return None;
    }
    Some(limit.rlim_cur)
}

fn mib(bytes: u64) -> String {
    let m = bytes as f64 / (1024.0 * 1024.0);
    if m.fract() == 0.0 {
        format!("{m:.0} MiB")
    } else {
        format!("{m:.1} MiB")
    }
}

fn describe_missing(
    effective: u64,
    last_cap: u32,
    pinned_bytes: u64,
    memlock: Option<u64>,
) -> Option<String> {
    let has = |c: &Capability| effective & (1u64 << c.bit) != 0;
    let mut missing: Vec<String> = Vec::new();
    for cap in [&CAP_NET_ADMIN, &CAP_NET_RAW, &CAP_BPF] {
        // A kernel older than 5.8 has no CAP_BPF (CAP_SYS_ADMIN covers BPF).
        if cap.bit <= last_cap && !has(cap) {
            missing.push(format!("{} ({})", cap.name, cap.purpose));
        }
    }
    if !has(&CAP_IPC_LOCK) {
        if let Some(limit) = memlock.filter(|&l| pinned_bytes > l) {
            missing.push(format!(
                "{} ({}: {} of pinned memory is above RLIMIT_MEMLOCK, {}; or lower [umem] frame_count)",
                CAP_IPC_LOCK.name,
                CAP_IPC_LOCK.purpose,
                mib(pinned_bytes),
                mib(limit)
            ));
        }
    }
    if missing.is_empty() {
        return None;
    }
    Some(format!(
        "missing capabilit{} {}. Run xswd as root, or with {UNIT_CAPABILITIES} \
         (the systemd unit deploy/xsw.service grants exactly these)",
        if missing.len() == 1 { "y" } else { "ies" },
        missing.join(", ")
    ))
}

fn watchdog_loop(interval: Duration, liveness: impl Fn() -> bool) {
    let mut healthy = true;
    loop {
        let alive = liveness();
        if alive {
            send(&[NotifyState::Watchdog]);
            if !healthy {
                tracing::info!("the data plane makes progress again; watchdog pings resumed");
                notify_status("running");
            }
        } else if healthy {
            tracing::error!(
                "the data plane stopped making progress; withholding watchdog pings so the service manager restarts xswd"
            );
            notify_status("a worker stopped making progress; watchdog pings withheld");
        }
        healthy = alive;
        std::thread::sleep(interval);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixDatagram;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex, MutexGuard};
    use std::time::Instant;

    /// The environment is process-wide: one test at a time touches it.
    static ENV: Mutex<()> = Mutex::new(());

    fn env_lock() -> MutexGuard<'static, ()> {
        ENV.lock().unwrap_or_else(|p| p.into_inner())
    }

    struct Listener {
        sock: UnixDatagram,
        dir: std::path::PathBuf,
    }

    impl Listener {
        /// Binds a datagram socket and points NOTIFY_SOCKET at it.
        fn bind(name: &str) -> Listener {
            let dir = std::env::temp_dir()
                .join(format!("xsw-service-test-{}-{name}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join("notify.sock");
            let sock = UnixDatagram::bind(&path).unwrap();
            sock.set_read_timeout(Some(Duration::from_millis(50)))
                .unwrap();
            std::env::set_var("NOTIFY_SOCKET", &path);
            Listener { sock, dir }
        }

        /// Every message that arrives within `wait`.
        fn drain(&self, wait: Duration) -> Vec<String> {
            let deadline = Instant::now() + wait;
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            while Instant::now() < deadline {
                if let Ok(n) = self.sock.recv(&mut buf) {
                    got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
                }
            }
            got
        }

        /// The next message, waiting at most `wait`.
        fn next(&self, wait: Duration) -> Option<String> {
            let deadline = Instant::now() + wait;
            let mut buf = [0u8; 4096];
            while Instant::now() < deadline {
                if let Ok(n) = self.sock.recv(&mut buf) {
                    return Some(String::from_utf8_lossy(&buf[..n]).into_owned());
                }
            }
            None
        }
    }

    impl Drop for Listener {
        fn drop(&mut self) {
            std::env::remove_var("NOTIFY_SOCKET");
            std::env::remove_var("WATCHDOG_USEC");
            std::env::remove_var("WATCHDOG_PID");
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    const ALL: u64 = (1 << 12) | (1 << 13) | (1 << 14) | (1 << 39);
    const MIB: u64 = 1024 * 1024;

    #[test]
    fn the_four_capabilities_suffice() {
        assert_eq!(describe_missing(ALL, 40, 64 * MIB, Some(8 * MIB)), None);
        // Root's full set.
        assert_eq!(
            describe_missing(u64::MAX >> 23, 40, 64 * MIB, Some(8 * MIB)),
            None
        );
    }

    #[test]
    fn each_missing_capability_is_named() {
        for (bit, name) in [
            (12, "CAP_NET_ADMIN"),
            (13, "CAP_NET_RAW"),
            (39, "CAP_BPF"),
            (14, "CAP_IPC_LOCK"),
        ] {
            let err = describe_missing(ALL & !(1 << bit), 40, 16 * MIB, Some(8 * MIB)).expect(name);
            assert!(
                err.starts_with(&format!("missing capability {name} (")),
                "{err}"
            );
            assert!(err.contains(UNIT_CAPABILITIES), "{err}");
        }
        let err = describe_missing(1 << 14, 40, 0, None).expect("three missing");
        assert!(
            err.contains("missing capabilities CAP_NET_ADMIN")
                && err.contains("CAP_NET_RAW")
                && err.contains("CAP_BPF"),
            "{err}"
        );
    }

    #[test]
    fn ipc_lock_is_needed_only_above_the_memlock_limit() {
        let no_lock = ALL & !(1 << 14);
        assert_eq!(describe_missing(no_lock, 40, 8 * MIB, Some(8 * MIB)), None);
        assert_eq!(describe_missing(no_lock, 40, 1 << 40, None), None);
        let err = describe_missing(no_lock, 40, 16 * MIB, Some(8 * MIB)).expect("ipc_lock");
        assert!(
            err.contains("16 MiB of pinned memory is above RLIMIT_MEMLOCK, 8 MiB"),
            "{err}"
        );
    }

    #[test]
    fn cap_bpf_is_not_asked_of_kernels_without_it() {
        let old_kernel = ALL & !(1 << 39);
        assert_eq!(describe_missing(old_kernel, 37, 0, None), None);
    }

    #[test]
    fn this_process_capabilities_can_be_read() {
        assert!(effective_capabilities().is_some());
        // Root with everything, or a user without them: consistent either way.
        let eff = effective_capabilities().unwrap();
        let has_all = [12, 13, 39].iter().all(|b| eff & (1u64 << b) != 0);
        assert_eq!(missing_capabilities(0).is_none(), has_all);
    }

    #[test]
    fn notifications_are_noops_without_a_service_manager() {
        let _env = env_lock();
        std::env::remove_var("NOTIFY_SOCKET");
        std::env::remove_var("WATCHDOG_USEC");
        std::env::remove_var("WATCHDOG_PID");
        assert!(!under_service_manager());
        notify_ready("ready");
        notify_reloading();
        notify_stopping();
        notify_status("x");
        assert_eq!(watchdog_timeout(), None);
        assert_eq!(spawn_watchdog(|| true), None);
    }

    #[test]
    fn an_unreachable_socket_does_not_fail_the_daemon() {
        let _env = env_lock();
        std::env::set_var("NOTIFY_SOCKET", "/nonexistent/xsw/notify.sock");
        notify_ready("ready");
        notify_status("still here");
        notify_stopping();
        std::env::remove_var("NOTIFY_SOCKET");
    }

    #[test]
    fn ready_reloading_stopping_and_status_arrive() {
        let _env = env_lock();
        let l = Listener::bind("states");
        notify_ready("2 ports up");
        let m = l.next(Duration::from_secs(2)).expect("READY message");
        assert!(m.lines().any(|x| x == "READY=1"), "{m:?}");
        assert!(m.lines().any(|x| x == "STATUS=2 ports up"), "{m:?}");
        notify_reloading();
        let m = l.next(Duration::from_secs(2)).expect("RELOADING message");
        assert!(m.lines().any(|x| x == "RELOADING=1"), "{m:?}");
        assert!(m.lines().any(|x| x.starts_with("MONOTONIC_USEC=")), "{m:?}");
        notify_status("reloaded");
        let m = l.next(Duration::from_secs(2)).expect("STATUS message");
        assert_eq!(m, "STATUS=reloaded\n");
        notify_stopping();
        let m = l.next(Duration::from_secs(2)).expect("STOPPING message");
        assert_eq!(m, "STOPPING=1\n");
    }

    #[test]
    fn watchdog_needs_usec_and_our_pid() {
        let _env = env_lock();
        let _l = Listener::bind("wdenv");
        std::env::set_var("WATCHDOG_USEC", "10000000");
        std::env::remove_var("WATCHDOG_PID");
        assert_eq!(watchdog_timeout(), None, "no WATCHDOG_PID");
        std::env::set_var("WATCHDOG_PID", "1");
        assert_eq!(watchdog_timeout(), None, "WATCHDOG_PID of another process");
        std::env::set_var("WATCHDOG_PID", std::process::id().to_string());
        assert_eq!(watchdog_timeout(), Some(Duration::from_secs(10)));
        std::env::set_var("WATCHDOG_USEC", "0");
        assert_eq!(watchdog_timeout(), None, "zero timeout");
    }

    #[test]
    fn watchdog_pings_only_while_alive() {
        let _env = env_lock();
        let l = Listener::bind("wd");
        // 200 ms timeout: a ping every 100 ms.
        std::env::set_var("WATCHDOG_USEC", "200000");
        std::env::set_var("WATCHDOG_PID", std::process::id().to_string());
        let alive = Arc::new(AtomicBool::new(true));
        let a = alive.clone();
        let interval = spawn_watchdog(move || a.load(Ordering::SeqCst));
        assert_eq!(interval, Some(Duration::from_millis(100)));

        // Order, not timing: pings come while alive; once the data plane stalls, a
        // status says why and no ping follows it; once it recovers, pings resume.
        // The bounds only stop a broken test (a machine 10x slower still meets them).
        let patience = Duration::from_secs(10);
        let wait_for = |what: &str, matches: &dyn Fn(&str) -> bool| -> Vec<String> {
            let mut seen = Vec::new();
            let deadline = Instant::now() + patience;
            while Instant::now() < deadline {
                if let Some(m) = l.next(Duration::from_millis(100)) {
                    let done = matches(&m);
                    seen.push(m);
                    if done {
                        return seen;
                    }
                }
            }
            panic!("no {what} within {patience:?}; got {seen:?}");
        };
        for _ in 0..3 {
            wait_for("ping while alive", &|m| m == "WATCHDOG=1\n");
        }

        // A stalled data plane: the status says why, and no ping comes after it.
        alive.store(false, Ordering::SeqCst);
        wait_for("status saying pings are withheld", &|m| {
            m.starts_with("STATUS=") && m.contains("withheld")
        });
        let got = l.drain(Duration::from_millis(500));
        assert!(
            !got.iter().any(|m| m.contains("WATCHDOG=1")),
            "pinged after withholding: {got:?}"
        );

        // Recovery resumes the pings.
        alive.store(true, Ordering::SeqCst);
        wait_for("ping after recovery", &|m| m == "WATCHDOG=1\n");
        // Leave the thread (it lives as long as the test process) silent.
        alive.store(false, Ordering::SeqCst);
        let _ = l.drain(Duration::from_millis(150));
    }
}
