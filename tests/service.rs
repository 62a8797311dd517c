//! xsw as a systemd service: the unit (deploy/xsw.service) passes
//! `systemd-analyze verify`, installs cleanly and idempotently with
//! deploy/install.sh, and its sandbox fits what xswd does. systemd is not
//! PID 1 on the test machines, so the unit's restrictions are applied by
//! hand: xswd runs with exactly the unit's capabilities (setpriv), which must
//! be enough to add ports and forward, while removing any one of them must
//! make xswd refuse with a message naming it. Readiness (READY=1), the
//! watchdog and STOPPING=1 are checked on a notify socket the test binds.

use anyhow::{anyhow, bail, ensure, Context, Result};
use std::collections::BTreeSet;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use xsw_integration::service::{cap_bit, effective_caps, repo_root, setpriv_name, with_caps, Unit};
use xsw_integration::{cmd, lab, require_root, threads, Bins, Lab};

/// RLIMIT_MEMLOCK as systemd gives services by default (and the kernel's
/// default): 8 MiB.
const MEMLOCK: u64 = 8 << 20;

/// A UMEM of 16 MiB (8192 frames of 2048 bytes), above MEMLOCK: only
/// CAP_IPC_LOCK lets xswd pin it.
const BIG_UMEM: &str = "[umem]\nframe_count = 8192\n\n";

fn bins() -> Result<Bins> {
    Bins::locate(
        Path::new(env!("CARGO_BIN_EXE_xsw-guest")),
        Path::new(env!("CARGO_BIN_EXE_xsw-nettool")),
    )
}

/// A scratch directory removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Result<Scratch> {
        let dir = PathBuf::from(format!("/tmp/xsw-svc-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn install(dest: &Path, bin_dir: &Path) -> Result<String> {
    let script = repo_root().join("deploy/install.sh");
    let out = cmd::run_args(
        &[
            &script.display().to_string(),
            "--dest",
            &dest.display().to_string(),
            "--bin-dir",
            &bin_dir.display().to_string(),
        ],
        Duration::from_secs(30),
    )?
    .ok()?;
    Ok(out.stdout)
}

/// `systemd-analyze verify UNIT`: Ok(()) only if it succeeds and prints
/// nothing at all (it reports unknown keys and bad values as warnings and
/// still exits 0).
fn verify(unit: &Path) -> Result<()> {
    let out = cmd::run_args(
        &["systemd-analyze", "verify", &unit.display().to_string()],
        Duration::from_secs(15),
    )?;
    ensure!(
        out.success() && out.stdout.trim().is_empty() && out.stderr.trim().is_empty(),
        "systemd-analyze verify is not clean for {}:\n{}",
        unit.display(),
        out.describe()
    );
    Ok(())
}

#[test]
fn unit_verifies_and_installs_idempotently() -> Result<()> {
    require_root()?;
    let unit = Unit::load()?;
    // The settings the deployment relies on.
    for (key, want) in [
        ("Type", "notify"),
        ("NotifyAccess", "main"),
        (
            "ExecStart",
            "/usr/local/bin/xswd --config /etc/xsw/xsw.toml --socket /run/xsw/xsw.sock",
        ),
        ("ExecReload", "/bin/kill -HUP $MAINPID"),
        ("Restart", "on-failure"),
        ("WatchdogSec", "10s"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("NoNewPrivileges", "yes"),
        ("RuntimeDirectory", "xsw"),
        ("RuntimeDirectoryMode", "0755"),
    ] {
        ensure!(
            unit.value(key)? == want,
            "{key}={} in the unit, expected {want}",
            unit.value(key)?
        );
    }
    ensure!(
        unit.words("ReadWritePaths").iter().any(|p| p == "/etc/xsw"),
        "/etc/xsw is not writable under ProtectSystem=strict"
    );
    let caps = unit.capabilities()?;
    ensure!(
        unit.words("AmbientCapabilities") == caps,
        "AmbientCapabilities= {:?} differs from CapabilityBoundingSet= {caps:?}",
        unit.words("AmbientCapabilities")
    );
    ensure!(
        !caps.iter().any(|c| c == "CAP_SYS_ADMIN"),
        "CAP_SYS_ADMIN is not needed: {caps:?}"
    );

    // Install into a staging root, with the binaries the tests use.
    let bins = bins()?;
    let xswd = bins.xswd()?;
    let bin_dir = xswd
        .parent()
        .ok_or_else(|| anyhow!("xswd has no directory"))?;
    let root = Scratch::new("install")?;
    let first = install(&root.0, bin_dir)?;
    let installed_unit = root.0.join("etc/systemd/system/xsw.service");
    let config = root.0.join("etc/xsw/xsw.toml");
    for f in [
        "usr/local/bin/xswd",
        "usr/local/bin/xswctl",
        "usr/local/share/doc/xsw/README.md",
        "usr/local/share/doc/xsw/xsw.toml",
    ] {
        ensure!(
            root.0.join(f).is_file(),
            "install.sh did not install /{f}:\n{first}"
        );
    }
    ensure!(
        std::fs::read_to_string(&installed_unit)? == unit.text,
        "the installed unit differs from deploy/xsw.service"
    );
    ensure!(
        std::fs::read(&config)? == std::fs::read(repo_root().join("deploy/xsw.toml"))?,
        "the new /etc/xsw/xsw.toml is not the commented default"
    );

    // systemd-analyze verify on the installed unit, its binaries resolved
    // inside the staging root (it checks that ExecStart= is executable).
    let check = root.0.join("verify/xsw.service");
    std::fs::create_dir_all(check.parent().unwrap())?;
    let staged_bin = root.0.join("usr/local/bin/");
    std::fs::write(
        &check,
        unit.text
            .replace("/usr/local/bin/", &staged_bin.display().to_string()),
    )?;
    verify(&check)?;
    // ... and the check does catch a warning.
    let broken = root.0.join("broken/xsw.service");
    std::fs::create_dir_all(broken.parent().unwrap())?;
    std::fs::write(
        &broken,
        std::fs::read_to_string(&check)?.replace("[Service]\n", "[Service]\nNoSuchSetting=1\n"),
    )?;
    ensure!(
        verify(&broken).is_err(),
        "the verify check misses an unknown setting"
    );

    // Again: nothing to do, and a config the admin edited is kept.
    let second = install(&root.0, bin_dir)?;
    ensure!(
        second.contains("already up to date") && second.contains("kept existing /etc/xsw/xsw.toml"),
        "second install.sh run:\n{second}"
    );
    std::fs::write(&config, "[dataplane]\nbatch_size = 32\n")?;
    let third = install(&root.0, bin_dir)?;
    ensure!(
        std::fs::read_to_string(&config)? == "[dataplane]\nbatch_size = 32\n",
        "install.sh overwrote an existing config:\n{third}"
    );
    Ok(())
}

/// The unit's capabilities as a /proc/PID/status mask.
fn mask(caps: &[String]) -> Result<u64> {
    caps.iter()
        .try_fold(0u64, |m, c| Ok(m | 1u64 << cap_bit(c)?))
}

#[test]
fn unit_capabilities_suffice_to_add_ports_and_forward() -> Result<()> {
    let caps = Unit::load()?.capabilities()?;
    let lab = lab!("svccap", "svc", 201)?;
    let h1 = lab.add_veth_host("h1", 1)?;
    let h2 = lab.add_veth_host("h2", 2)?;
    let config = format!("{BIG_UMEM}{}", Lab::config_with_ports(&[&h1.port]));
    lab.start_xswd_wrapped(&config, &with_caps(&caps, MEMLOCK))?;
    let pid = lab.xswd_pid().ok_or_else(|| anyhow!("no xswd pid"))?;
    let eff = effective_caps(pid)?;
    ensure!(
        eff == mask(&caps)?,
        "xswd runs with capabilities {eff:#x}, not exactly the unit's {caps:?} ({:#x})",
        mask(&caps)?
    );

    // A port from the config, one added at run time, and a tap created for
    // a VM owned by uid 1000.
    lab.port_add(&h2.port)?;
    let tap = lab.port_name("vm");
    lab.ctl_ok(&["port", "add", &tap, "--create-tap", "--tap-owner", "1000"])?;
    let names: Vec<String> = lab
        .ports()?
        .iter()
        .filter_map(|p| p["name"].as_str().map(str::to_string))
        .collect();
    for p in [&h1.port, &h2.port, &tap] {
        ensure!(
            names.contains(p),
            "port {p} missing from port list: {names:?}"
        );
    }
    lab.wait_reachable(&h1, &h2, Duration::from_secs(5))?;
    lab.ping_all(&h1, &h2, 3)?;
    lab.ping_all(&h2, &h1, 3)?;
    lab.ctl_ok(&["port", "del", &tap])?;
    ensure!(
        !lab.sw_links()?.contains(&tap),
        "the created tap {tap} survived port del"
    );
    let st = lab.stop_xswd(Duration::from_secs(5))?;
    ensure!(
        st.success(),
        "xswd with the unit's capabilities stopped with {st}:\n{}",
        lab.xswd_log()
    );
    Ok(())
}

#[test]
fn each_unit_capability_is_needed() -> Result<()> {
    let caps = Unit::load()?.capabilities()?;
    let lab = lab!("svcneed", "svn", 202)?;
    let h1 = lab.add_veth_host("h1", 1)?;
    let config = format!("{BIG_UMEM}{}", Lab::config_with_ports(&[&h1.port]));
    let mut report = Vec::new();
    for cap in &caps {
        let fewer: Vec<String> = caps.iter().filter(|c| *c != cap).cloned().collect();
        let (st, log) =
            lab.run_xswd_to_exit(&config, &with_caps(&fewer, MEMLOCK), Duration::from_secs(8))?;
        report.push(format!("without {cap}: {st}: {}", log.trim()));
        ensure!(!st.success(), "xswd started without {cap}:\n{log}");
        // The kernel refused something (so the capability is really needed,
        // not just asked for by a check of xswd's own) ...
        ensure!(
            log.lines()
                .any(|l| l.starts_with("xswd: ") && !l.contains("missing capabilit")),
            "xswd without {cap} did not report what failed:\n{log}"
        );
        // ... and the message names the capability, not just the EPERM of
        // whichever call happened to need it first.
        ensure!(
            log.contains(cap.as_str()),
            "xswd without {cap} ({}) failed without naming it:\n{log}",
            setpriv_name(cap)
        );
        ensure!(
            lab.programs_attached()?.is_empty(),
            "a refused xswd (without {cap}) left XDP attached: {:?}",
            lab.programs_attached()?
        );
    }
    println!("{}", report.join("\n"));
    Ok(())
}

/// The notify socket of a test standing in for systemd.
struct Notify {
    sock: UnixDatagram,
    path: PathBuf,
}

impl Notify {
    fn bind(dir: &Path) -> Result<Notify> {
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let sock =
            UnixDatagram::bind(&path).with_context(|| format!("binding {}", path.display()))?;
        sock.set_read_timeout(Some(Duration::from_millis(100)))?;
        Ok(Notify { sock, path })
    }

    /// How many messages with the line `line` arrive during `window`.
    fn count(&self, line: &str, window: Duration) -> usize {
        let deadline = Instant::now() + window;
        let mut n = 0;
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            if let Ok(got) = self.sock.recv(&mut buf) {
                n += usize::from(
                    String::from_utf8_lossy(&buf[..got])
                        .lines()
                        .any(|l| l == line),
                );
            }
        }
        n
    }

    /// Waits for a message with the line `line`; returns every message seen
    /// until then (that one included).
    fn wait_for(&self, line: &str, timeout: Duration, lab: &Lab) -> Result<Vec<String>> {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            if let Ok(n) = self.sock.recv(&mut buf) {
                let m = String::from_utf8_lossy(&buf[..n]).into_owned();
                let hit = m.lines().any(|l| l == line);
                seen.push(m);
                if hit {
                    return Ok(seen);
                }
            }
        }
        bail!(
            "no {line} on NOTIFY_SOCKET within {timeout:?}; got {seen:?}; xswd log:\n{}",
            lab.xswd_log()
        )
    }
}

#[test]
fn ready_after_config_ports_are_up_then_watchdog_and_stopping() -> Result<()> {
    let caps = Unit::load()?.capabilities()?;
    let lab = lab!("svcready", "svr", 203)?;
    let h1 = lab.add_veth_host("h1", 1)?;
    let h2 = lab.add_veth_host("h2", 2)?;
    let notify = Notify::bind(&lab.dir)?;
    // The shipped commented config, plus two ports.
    let shipped = std::fs::read_to_string(repo_root().join("deploy/xsw.toml"))?;
    let config = format!(
        "{shipped}\n{}",
        Lab::config_with_ports(&[&h1.port, &h2.port])
    );
    // As systemd starts it: the unit's capabilities, NOTIFY_SOCKET, and a
    // 2 s watchdog addressed to xswd's pid (the shell's, kept by exec).
    let mut wrapper = with_caps(&caps, MEMLOCK);
    wrapper.extend([
        "env".to_string(),
        format!("NOTIFY_SOCKET={}", notify.path.display()),
        "WATCHDOG_USEC=2000000".into(),
        "sh".into(),
        "-c".into(),
        r#"export WATCHDOG_PID=$$; exec "$0" "$@""#.into(),
    ]);
    let started = Instant::now();
    lab.spawn_xswd_wrapped(&config, &wrapper)?;
    let before = notify.wait_for("READY=1", Duration::from_secs(10), &lab)?;
    let ready_after = started.elapsed();
    // When READY=1 arrives the control socket answers and the config's ports
    // are up: no waiting here.
    let ports = lab.ports()?;
    for h in [&h1, &h2] {
        let p = ports
            .iter()
            .find(|p| p["name"] == h.port.as_str())
            .ok_or_else(|| anyhow!("READY=1 came before port {} was added: {ports:?}", h.port))?;
        ensure!(p["link"] == "up", "port {} not up at READY=1: {p}", h.port);
    }
    ensure!(
        before
            .last()
            .is_some_and(|m| m.lines().any(|l| l.starts_with("STATUS="))),
        "READY=1 without a STATUS= line: {before:?}"
    );
    lab.wait_reachable(&h1, &h2, Duration::from_secs(5))?;

    // The watchdog is fed while the workers progress (here with traffic
    // flowing): about one ping a second with WATCHDOG_USEC=2 s; at least
    // three in six seconds leaves room for a slow, loaded machine.
    let mut traffic = lab.spawn_ping(&h1, &h2.ip, 150, "0.1")?;
    let fed = notify.count("WATCHDOG=1", Duration::from_secs(6));
    ensure!(
        fed >= 3,
        "{fed} watchdog pings in 6 s while the workers progress; xswd log:\n{}",
        lab.xswd_log()
    );

    // One worker stalls (stopped alone, by ptrace): the pings stop, so
    // systemd would restart the service, although every other thread runs.
    let pid = lab.xswd_pid().ok_or_else(|| anyhow!("no xswd pid"))?;
    let worker = threads::threads(pid)?
        .into_iter()
        .find(|t| t.name == "xsw-worker-0")
        .ok_or_else(|| anyhow!("no thread xsw-worker-0 in xswd"))?;
    let stalled = threads::Stalled::stop(worker.tid)?;
    // A ping already decided before the stall may still come.
    notify.count("WATCHDOG=1", Duration::from_millis(1500));
    let withheld = notify.count("WATCHDOG=1", Duration::from_secs(4));
    drop(stalled);
    ensure!(
        withheld == 0,
        "{withheld} watchdog pings while worker 0 was stalled"
    );
    ensure!(
        lab.xswd_log().contains("stopped making progress"),
        "xswd did not log why it withheld the pings:\n{}",
        lab.xswd_log()
    );
    // It resumes: so do the pings, and the traffic.
    notify.wait_for("WATCHDOG=1", Duration::from_secs(5), &lab)?;
    let _ = lab.ping_result(&mut traffic, Duration::from_secs(20))?;
    lab.ping_all(&h1, &h2, 3)?;

    // SIGTERM: STOPPING=1, then a clean exit.
    let pid = lab.xswd_pid().ok_or_else(|| anyhow!("no xswd pid"))?;
    // SAFETY: kill() has no memory-safety preconditions; pid is our xswd.
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGTERM);
    }
    notify.wait_for("STOPPING=1", Duration::from_secs(5), &lab)?;
    let st = lab
        .stop_xswd(Duration::from_secs(5))
        .context("xswd after SIGTERM")?;
    ensure!(st.success(), "xswd exited with {st}:\n{}", lab.xswd_log());
    println!("READY=1 {ready_after:?} after start; {fed} watchdog pings in 6 s");
    Ok(())
}

/// The commented default config with every example line ("# ...")
/// uncommented, its interface names replaced by this lab's.
fn uncommented_examples(shipped: &str, nic: &str, tap: &str) -> String {
    shipped
        .lines()
        .filter(|l| !l.starts_with("##"))
        .map(|l| l.strip_prefix("# ").unwrap_or(l))
        .map(|l| {
            l.replace("\"eth1\"", &format!("\"{nic}\""))
                .replace("\"vm1\"", &format!("\"{tap}\""))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn default_config_examples_apply() -> Result<()> {
    let lab = lab!("svccfg", "svf", 204)?;
    let h1 = lab.add_veth_host("h1", 1)?;
    let tap = lab.port_name("vm1");
    let shipped = std::fs::read_to_string(repo_root().join("deploy/xsw.toml"))?;
    ensure!(
        shipped
            .lines()
            .all(|l| l.trim().is_empty() || l.starts_with('#')),
        "deploy/xsw.toml must ship with every setting commented out"
    );
    let config = uncommented_examples(&shipped, &h1.port, &tap);
    lab.start_xswd(&config)
        .with_context(|| format!("the uncommented examples of deploy/xsw.toml:\n{config}"))?;
    let ports = lab.ports()?;
    for p in [&h1.port, &tap] {
        ensure!(
            ports.iter().any(|x| x["name"] == p.as_str()),
            "example port {p} not in port list: {ports:?}"
        );
    }
    let tenants = lab.ctl_ok(&["tenant", "list"])?;
    ensure!(
        tenants.contains("web"),
        "example tenant web missing:\n{tenants}"
    );
    Ok(())
}

/// `systemd-analyze syscall-filter` expanded to plain system call names.
fn syscall_group(name: &str, out: &mut BTreeSet<String>) -> Result<()> {
    if !name.starts_with('@') {
        out.insert(name.to_string());
        return Ok(());
    }
    let listing = cmd::run_args(
        &["systemd-analyze", "syscall-filter", name],
        Duration::from_secs(10),
    )?
    .ok()?;
    for l in listing.stdout.lines().skip(1) {
        let l = l.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        syscall_group(l, out)?;
    }
    Ok(())
}

/// Pids, syscall names and arguments of an `strace -f` log, from the moment
/// `exe` was executed on.
fn trace_after_exec<'a>(trace: &'a str, exe: &str) -> Result<Vec<(&'a str, &'a str)>> {
    let marker = format!("execve(\"{exe}\"");
    let start = trace
        .lines()
        .position(|l| l.contains(&marker) && !l.contains("= -1"))
        .ok_or_else(|| anyhow!("strace log shows no exec of {exe}"))?;
    let mut calls = Vec::new();
    for l in trace.lines().skip(start + 1) {
        let rest = l
            .trim_start_matches(|c: char| c.is_ascii_digit())
            .trim_start();
        let name = if let Some(r) = rest.strip_prefix("<... ") {
            r.split_whitespace().next().unwrap_or("")
        } else {
            rest.split('(').next().unwrap_or("")
        };
        if !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            calls.push((name, rest));
        }
    }
    Ok(calls)
}

#[test]
fn unit_sandbox_covers_what_xswd_does() -> Result<()> {
    let unit = Unit::load()?;
    let caps = unit.capabilities()?;
    let lab = lab!("svcbox", "svx", 205)?;
    let h1 = lab.add_veth_host("h1", 1)?;
    let h2 = lab.add_veth_host("h2", 2)?;
    let trace_path = lab.dir.join("xswd.strace");
    let mut wrapper: Vec<String> = vec![
        "strace".into(),
        "-f".into(),
        "-qq".into(),
        "-s".into(),
        "256".into(),
        "-o".into(),
        trace_path.display().to_string(),
    ];
    wrapper.extend(with_caps(&caps, MEMLOCK));
    let config = Lab::config_with_ports(&[&h1.port]);
    lab.start_xswd_wrapped(&config, &wrapper)?;
    // What xswd does in service: ports from the config and at run time, a
    // tap for a VM, forwarding, counters, a reload signal, a stop.
    lab.port_add(&h2.port)?;
    let tap = lab.port_name("vm");
    lab.ctl_ok(&["port", "add", &tap, "--create-tap", "--tap-owner", "1000"])?;
    lab.wait_reachable(&h1, &h2, Duration::from_secs(5))?;
    lab.stats()?;
    lab.ctl_ok(&["port", "del", &tap])?;
    // The process we started is strace; xswd is its traced child in the
    // switch namespace.
    let pids = cmd::sh_ok(&["ip", "netns", "pids", &lab.sw])?;
    let xswd_pid = pids
        .split_whitespace()
        .find(|p| {
            std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "xswd")
        })
        .ok_or_else(|| anyhow!("no xswd among the switch namespace's processes {pids}"))?
        .parse::<libc::pid_t>()?;
    // SAFETY: kill() has no memory-safety preconditions; the pid is the
    // xswd this test started (found in the lab's own namespace).
    unsafe {
        libc::kill(xswd_pid, libc::SIGHUP);
    }
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: as above.
    unsafe {
        libc::kill(xswd_pid, libc::SIGTERM);
    }
    // strace exits with xswd; signalling strace instead would cut the trace.
    let deadline = Instant::now() + Duration::from_secs(10);
    while lab.xswd_running() {
        ensure!(
            Instant::now() < deadline,
            "xswd still runs 10 s after SIGTERM:\n{}",
            lab.xswd_log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    ensure!(
        lab.xswd_log().contains("stopped"),
        "xswd did not stop cleanly:\n{}",
        lab.xswd_log()
    );
    let trace = std::fs::read_to_string(&trace_path)?;
    let xswd = lab.bins.xswd()?.display().to_string();
    let calls = trace_after_exec(&trace, &xswd)?;
    ensure!(calls.len() > 100, "suspiciously short strace log:\n{trace}");

    // SystemCallFilter=: every call xswd made is allowed.
    let mut allowed = BTreeSet::new();
    let mut denied = BTreeSet::new();
    for entry in unit.words("SystemCallFilter") {
        match entry.strip_prefix('~') {
            Some(deny) => syscall_group(deny, &mut denied)?,
            None => syscall_group(&entry, &mut allowed)?,
        }
    }
    ensure!(
        allowed.len() > 100,
        "SystemCallFilter expands to too little: {allowed:?}"
    );
    let used: BTreeSet<&str> = calls.iter().map(|(n, _)| *n).collect();
    let outside: Vec<&&str> = used
        .iter()
        .filter(|n| !allowed.contains(**n) || denied.contains(**n))
        .collect();
    ensure!(
        outside.is_empty(),
        "xswd made system calls the unit's SystemCallFilter= would refuse: {outside:?}"
    );

    // RestrictAddressFamilies=: every socket family xswd opened is listed.
    let families = unit.words("RestrictAddressFamilies");
    let opened: BTreeSet<&str> = calls
        .iter()
        .filter(|(n, _)| *n == "socket")
        .filter_map(|(_, a)| a.strip_prefix("socket(")?.split(',').next())
        .collect();
    ensure!(
        opened.contains("AF_XDP"),
        "no AF_XDP socket in the trace: {opened:?}"
    );
    let unlisted: Vec<&&str> = opened
        .iter()
        .filter(|f| !families.iter().any(|x| x == **f))
        .collect();
    ensure!(
        unlisted.is_empty(),
        "xswd opened sockets of families RestrictAddressFamilies= does not list: {unlisted:?} (unit: {families:?})"
    );

    // ProtectSystem=strict, PrivateTmp=, DevicePolicy=closed: xswd writes
    // only where its config and socket are (the lab directory here, which
    // stands for /etc/xsw and /run/xsw), and opens no device but /dev/net/tun.
    let lab_dir = lab.dir.display().to_string();
    let mut bad = Vec::new();
    for (name, args) in &calls {
        let path = args.split('"').nth(1).unwrap_or("");
        let writes = match *name {
            "openat" | "open" => {
                args.contains("O_WRONLY") || args.contains("O_RDWR") || args.contains("O_CREAT")
            }
            "mkdir" | "mkdirat" | "unlink" | "unlinkat" | "rename" | "renameat" | "renameat2"
            | "rmdir" | "chmod" | "fchmodat" | "truncate" => true,
            "bind" => args.contains("sun_path="),
            _ => false,
        };
        let device = path.starts_with("/dev/") && matches!(*name, "openat" | "open");
        if device && !["/dev/net/tun", "/dev/null", "/dev/urandom", "/dev/random"].contains(&path) {
            bad.push(format!("device {path}: {args}"));
        } else if writes
            && !path.is_empty()
            && !path.starts_with(&lab_dir)
            && path != "/dev/net/tun"
        {
            bad.push(format!("write outside the config/socket directory: {args}"));
        }
    }
    ensure!(
        bad.is_empty(),
        "the unit's file system sandbox would break:\n{}",
        bad.join("\n")
    );
    ensure!(
        unit.values("DeviceAllow")
            .iter()
            .any(|d| d.starts_with("/dev/net/tun")),
        "the unit does not allow /dev/net/tun"
    );
    println!(
        "{} system calls of {} kinds, socket families {opened:?}",
        calls.len(),
        used.len()
    );
    Ok(())
}
