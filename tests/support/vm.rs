//! Real virtual machines for the tests: QEMU (TCG, no KVM needed) running a
//! Debian cloud kernel with a virtio-net NIC on a tap, so the frames reaching
//! the switch are what a real guest sends with its default offloads (partial
//! checksums, TSO/GSO super-frames passed through the tap's virtio-net header).
//!
//! The guest (built and cached by tests/vm/build-guest.sh) runs
//! `xsw-vm-agent` on its second serial port, which QEMU exposes as a unix
//! socket: the host sends commands there and the guest's traffic is made by
//! the same `xsw-nettool` as in the other tests. The control channel never
//! touches the network under test, so a broken data path shows as a failed
//! transfer, never as a hung control connection.
//!
//! ```ignore
//! let lab = lab!("vm-x", "vmx", 60)?;
//! let h1 = lab.add_veth_host("h1", 1)?;
//! let vm = lab.add_vm("v1", 10)?;            // tap <tag>-v1, boots, waits for the agent
//! lab.port_add(&vm.tap)?;                    // or linux_bridge(&lab, &[..])
//! vm.tcp_to(&lab, &h1, 4 << 20)?;            // guest -> host, checked by FNV-1a
//! vm.tcp_from(&lab, &h1, 4 << 20)?;          // host -> guest
//! ```
//!
//! Everything is bounded: each step has a timeout and dropping a [`Vm`] kills
//! QEMU (the lab's namespaces, and with them the tap, go with the lab).

use crate::cmd::{self, Proc};
use crate::{Host, Lab, PingStats, UdpStats};
use anyhow::{anyhow, bail, ensure, Context, Result};
use serde_json::Value;
use std::cell::{Cell, RefCell};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// How long a guest may take from QEMU's start to its agent answering.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(60);

/// Path of the guest build script.
pub fn build_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("vm")
        .join("build-guest.sh")
}

/// Kernel and initramfs of a guest ready to boot.
#[derive(Clone, Debug)]
pub struct GuestImage {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
}

impl GuestImage {
    /// Builds (or takes from the cache in target/vm) the guest kernel and
    /// base initramfs, then writes `out`: that initramfs plus `agent` and
    /// `nettool` with the libraries they need.
    pub fn build(agent: &Path, nettool: &Path, out: &Path) -> Result<GuestImage> {
        for p in [agent, nettool] {
            ensure!(
                p.is_file(),
                "{} missing; run `cargo build --workspace`",
                p.display()
            );
        }
        let target = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join("target");
        let script = build_script().display().to_string();
        let (t, a, n, o) = (
            target.display().to_string(),
            agent.display().to_string(),
            nettool.display().to_string(),
            out.display().to_string(),
        );
        // The first build downloads ~28 MB of packages; later ones are cached.
        let res = cmd::run_args(
            &[
                "bash",
                &script,
                "--target-dir",
                &t,
                "--agent",
                &a,
                "--extra",
                &n,
                "--initrd",
                &o,
            ],
            Duration::from_secs(300),
        )?;
        ensure!(
            res.success(),
            "building the guest failed:\n{}",
            res.describe()
        );
        let get = |k: &str| {
            res.stdout
                .lines()
                .find_map(|l| l.strip_prefix(k))
                .map(PathBuf::from)
                .ok_or_else(|| anyhow!("build-guest.sh printed no {k}:\n{}", res.describe()))
        };
        Ok(GuestImage {
            kernel: get("kernel=")?,
            initrd: get("initrd=")?,
        })
    }
}

/// What one command run in the guest printed, and how it ended.
#[derive(Clone, Debug, Default)]
pub struct GuestOutput {
    pub argv: String,
    /// Exit code; None if killed by a signal or it could not start.
    pub code: Option<i32>,
    pub stdout: Vec<String>,
    pub stderr: Vec<String>,
}

impl GuestOutput {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
    pub fn describe(&self) -> String {
        format!(
            "guest command `{}` ended with {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.argv,
            self.code,
            self.stdout.join("\n"),
            self.stderr.join("\n")
        )
    }
}

/// The serial control channel to the guest's agent.
struct Control {
    writer: UnixStream,
    lines: Receiver<String>,
    /// Lines read while waiting for another request's.
    pending: Vec<String>,
}

/// A running guest. Dropping it kills QEMU.
pub struct Vm {
    pub name: String,
    /// The tap (in the lab's switch namespace) its NIC is attached to.
    pub tap: String,
    pub mac: String,
    /// IPv4 address of its eth0, without prefix length (the prefix is /24).
    pub ip: String,
    /// From QEMU's start until the agent answered.
    pub boot_time: Duration,
    console_log: PathBuf,
    nettool: String,
    qemu: RefCell<Proc>,
    ctl: RefCell<Control>,
    seq: Cell<u64>,
}

/// A command started in the guest with [`Vm::spawn`].
pub struct GuestJob<'a> {
    vm: &'a Vm,
    pub id: u64,
    out: GuestOutput,
    /// Stdout lines not yet handed out by [`GuestJob::wait_line`].
    unread: usize,
    done: bool,
}

impl Lab {
    /// Creates tap `<tag>-<name>` in the switch namespace and boots a guest
    /// on it with address 198.18.X.idx/24 and MAC 02:78:X:00:00:idx; returns
    /// once the guest's agent answers. The tap is not attached to anything.
    pub fn add_vm(&self, name: &str, idx: u8) -> Result<Vm> {
        let tap = self.create_tap(name)?;
        Vm::boot(self, name, &tap, &self.mac(idx), &self.ip(idx))
    }
}

impl Vm {
    /// Boots a guest in the lab's switch namespace on the existing `tap`.
    pub fn boot(lab: &Lab, name: &str, tap: &str, mac: &str, ip: &str) -> Result<Vm> {
        let dir = lab.bins.nettool.parent().unwrap_or(Path::new("."));
        let agent = dir.join("xsw-vm-agent");
        let image = GuestImage::build(
            &agent,
            &lab.bins.nettool,
            &lab.dir.join(format!("vm-{name}-initrd.gz")),
        )?;
        let sock = lab.dir.join(format!("vm-{name}.sock"));
        let console_log = lab.dir.join(format!("vm-{name}-console.log"));
        let _ = std::fs::remove_file(&sock);
        let append = format!("console=ttyS0 panic=-1 quiet xsw.ip={ip}/24 xsw.mac={mac}");
        let (kernel, initrd) = (
            image.kernel.display().to_string(),
            image.initrd.display().to_string(),
        );
        let serial0 = format!("file:{}", console_log.display());
        let chardev = format!("socket,id=ctl,path={},server=on,wait=off", sock.display());
        let netdev = format!("tap,id=n0,ifname={tap},script=no,downscript=no,vhost=off");
        let device = format!("virtio-net-pci,netdev=n0,mac={mac}");
        let argv = cmd::in_ns(
            &lab.sw,
            &[
                "qemu-system-x86_64",
                "-nodefaults",
                "-no-user-config",
                "-display",
                "none",
                "-no-reboot",
                "-accel",
                "tcg",
                "-cpu",
                "max",
                "-smp",
                "1",
                "-m",
                "256",
                "-kernel",
                &kernel,
                "-initrd",
                &initrd,
                "-append",
                &append,
                "-serial",
                &serial0,
                "-chardev",
                &chardev,
                "-serial",
                "chardev:ctl",
                "-netdev",
                &netdev,
                "-device",
                &device,
            ],
        );
        let started = Instant::now();
        let mut qemu = Proc::spawn(
            &format!("qemu-{name}"),
            &argv,
            &lab.dir.join(format!("vm-{name}-qemu.log")),
        )?;
        let fail = |qemu: &mut Proc, what: String| -> anyhow::Error {
            let status = qemu.child.try_wait().ok().flatten();
            anyhow!(
                "VM {name}: {what} (QEMU {})\nQEMU log:\n{}\nconsole:\n{}",
                match status {
                    Some(s) => format!("exited: {s}"),
                    None => "running".to_string(),
                },
                qemu.log_text(),
                std::fs::read_to_string(&console_log).unwrap_or_default()
            )
        };
        // The control socket appears once QEMU has set its devices up.
        let deadline = started + BOOT_TIMEOUT;
        let stream = loop {
            if let Ok(s) = UnixStream::connect(&sock) {
                break s;
            }
            if !qemu.running() || Instant::now() >= deadline {
                return Err(fail(&mut qemu, "no control socket".into()));
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let reader = stream.try_clone()?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(reader).split(b'\n') {
                let Ok(l) = line else { break };
                let l = String::from_utf8_lossy(&l)
                    .trim_end_matches('\r')
                    .to_string();
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let mut vm = Vm {
            name: name.to_string(),
            tap: tap.to_string(),
            mac: mac.to_string(),
            ip: ip.to_string(),
            boot_time: Duration::ZERO,
            console_log: console_log.clone(),
            nettool: "/bin/xsw-nettool".to_string(),
            qemu: RefCell::new(qemu),
            ctl: RefCell::new(Control {
                writer: stream,
                lines: rx,
                pending: Vec::new(),
            }),
            seq: Cell::new(1),
        };
        // Ping the agent until it answers (what is sent before it runs is lost
        // or ignored).
        loop {
            let id = vm.next_id();
            vm.send(&format!("{id} ping"))?;
            match vm.wait_reply(id, Duration::from_millis(500)) {
                Ok((verb, _)) if verb == "pong" => break,
                Ok(_) | Err(_) => {}
            }
            if !vm.qemu.borrow_mut().running() || Instant::now() >= deadline {
                let mut q = vm.qemu.borrow_mut();
                return Err(fail(
                    &mut q,
                    format!("the agent did not answer within {BOOT_TIMEOUT:?}"),
                ));
            }
        }
        vm.boot_time = started.elapsed();
        Ok(vm)
    }

    fn next_id(&self) -> u64 {
        let id = self.seq.get();
        self.seq.set(id + 1);
        id
    }

    fn send(&self, line: &str) -> Result<()> {
        let mut c = self.ctl.borrow_mut();
        c.writer
            .write_all(format!("{line}\n").as_bytes())
            .with_context(|| format!("VM {}: writing to the control channel", self.name))
    }

    /// The next line for request `id`, as (verb, rest).
    fn wait_reply(&self, id: u64, timeout: Duration) -> Result<(String, String)> {
        let prefix = format!("{id} ");
        let split = |l: &str| {
            let rest = &l[prefix.len()..];
            let (verb, rest) = rest.split_once(' ').unwrap_or((rest, ""));
            (verb.to_string(), rest.to_string())
        };
        let mut c = self.ctl.borrow_mut();
        if let Some(pos) = c.pending.iter().position(|l| l.starts_with(&prefix)) {
            let l = c.pending.remove(pos);
            return Ok(split(&l));
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match c.lines.recv_timeout(left) {
                Ok(l) if l.starts_with(&prefix) => return Ok(split(&l)),
                Ok(l) => {
                    // Only keep lines that look like replies (skip noise).
                    if l.split(' ')
                        .next()
                        .is_some_and(|w| w.parse::<u64>().is_ok())
                    {
                        c.pending.push(l);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    bail!(
                        "VM {}: no reply to request {id} within {timeout:?}",
                        self.name
                    )
                }
                Err(RecvTimeoutError::Disconnected) => bail!(
                    "VM {}: control channel closed (QEMU gone?)\nconsole:\n{}",
                    self.name,
                    self.console()
                ),
            }
        }
    }

    /// The guest's console output so far.
    pub fn console(&self) -> String {
        std::fs::read_to_string(&self.console_log).unwrap_or_default()
    }

    /// True while QEMU runs.
    pub fn running(&self) -> bool {
        self.qemu.borrow_mut().running()
    }

    /// Starts `argv` (words without spaces) in the guest.
    pub fn spawn(&self, argv: &[&str]) -> Result<GuestJob<'_>> {
        ensure!(
            argv.iter()
                .all(|a| !a.is_empty() && !a.contains(char::is_whitespace)),
            "guest arguments must be non-empty words: {argv:?}"
        );
        let id = self.next_id();
        self.send(&format!("{id} run {}", argv.join(" ")))?;
        Ok(GuestJob {
            vm: self,
            id,
            out: GuestOutput {
                argv: argv.join(" "),
                ..GuestOutput::default()
            },
            unread: 0,
            done: false,
        })
    }

    /// Runs `argv` in the guest to its end, at most `timeout`.
    pub fn run(&self, argv: &[&str], timeout: Duration) -> Result<GuestOutput> {
        self.spawn(argv)?.finish(timeout)
    }

    /// Runs `argv` in the guest and requires exit status 0; returns stdout.
    pub fn run_ok(&self, argv: &[&str], timeout: Duration) -> Result<String> {
        let out = self.run(argv, timeout)?;
        ensure!(out.success(), "VM {}: {}", self.name, out.describe());
        Ok(out.stdout.join("\n"))
    }

    /// `ping -c count` from the guest (busybox ping, 0.2 s apart).
    pub fn ping(&self, to_ip: &str, count: u32) -> Result<PingStats> {
        let c = count.to_string();
        let w = (count / 5 + 3).to_string();
        let out = self.run(
            &[
                "ping", "-q", "-c", &c, "-i", "0.2", "-W", "1", "-w", &w, to_ip,
            ],
            Duration::from_secs(count as u64 / 5 + 10),
        )?;
        crate::parse_ping(&out.stdout.join("\n"))
            .ok_or_else(|| anyhow!("cannot parse the guest's ping output:\n{}", out.describe()))
    }

    /// Pings once a second until a reply comes back (readiness only).
    pub fn wait_reachable(&self, to_ip: &str, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let out = self.run(
                &["ping", "-c", "1", "-W", "1", to_ip],
                Duration::from_secs(5),
            )?;
            if out.success() {
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "VM {} cannot reach {to_ip} within {timeout:?}:\n{}",
                self.name,
                out.describe()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Sends `bytes` pseudo-random bytes over TCP from this guest to `host`;
    /// checks the receiver got exactly those bytes (length and FNV-1a hash).
    pub fn tcp_to(&self, lab: &Lab, host: &Host, bytes: u64) -> Result<Transfer> {
        tcp_transfer(lab, Peer::Vm(self), Peer::Host(host), bytes)
    }

    /// Like [`Vm::tcp_to`], from `host` to this guest.
    pub fn tcp_from(&self, lab: &Lab, host: &Host, bytes: u64) -> Result<Transfer> {
        tcp_transfer(lab, Peer::Host(host), Peer::Vm(self), bytes)
    }

    /// `count` UDP datagrams from this guest to an echo server on `host`,
    /// each checked on return.
    pub fn udp_to(&self, lab: &Lab, host: &Host, count: u32) -> Result<UdpStats> {
        udp_exchange(lab, Peer::Vm(self), Peer::Host(host), count, 5)
    }

    /// `count` UDP datagrams from `host` to an echo server on this guest.
    pub fn udp_from(&self, lab: &Lab, host: &Host, count: u32) -> Result<UdpStats> {
        udp_exchange(lab, Peer::Host(host), Peer::Vm(self), count, 5)
    }

    /// Powers the guest off and waits for QEMU to exit (5 s at most, then
    /// kills it).
    pub fn shutdown(self) -> Result<()> {
        let id = self.next_id();
        let _ = self.send(&format!("{id} poweroff"));
        let exited = self.qemu.borrow_mut().wait_exit(Duration::from_secs(5));
        ensure!(
            exited.is_some(),
            "VM {}: QEMU still runs 5 s after poweroff",
            self.name
        );
        Ok(())
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        self.qemu.get_mut().stop(Duration::from_secs(1));
    }
}

impl GuestJob<'_> {
    /// Reads replies until one more stdout line arrives or the job ends.
    fn pump(&mut self, deadline: Instant) -> Result<()> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            bail!(
                "VM {}: `{}` did not finish in time; output so far:\n{}",
                self.vm.name,
                self.out.argv,
                self.out.describe()
            );
        }
        let (verb, rest) = self.vm.wait_reply(self.id, left).with_context(|| {
            format!(
                "VM {}: waiting for `{}`; output so far:\n{}",
                self.vm.name,
                self.out.argv,
                self.out.describe()
            )
        })?;
        match verb.as_str() {
            "out" => self.out.stdout.push(rest),
            "err" => self.out.stderr.push(rest),
            "exit" => {
                self.out.code = rest.parse().ok();
                self.done = true;
            }
            "fail" => {
                self.out.stderr.push(format!("agent: {rest}"));
                self.done = true;
            }
            other => bail!("VM {}: unexpected reply '{other} {rest}'", self.vm.name),
        }
        Ok(())
    }

    /// Waits for a stdout line starting with `prefix`, skipping others.
    pub fn wait_line(&mut self, prefix: &str, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            while self.unread < self.out.stdout.len() {
                let l = self.out.stdout[self.unread].clone();
                self.unread += 1;
                if l.starts_with(prefix) {
                    return Ok(l);
                }
            }
            ensure!(
                !self.done,
                "VM {}: `{}` ended without printing '{prefix}':\n{}",
                self.vm.name,
                self.out.argv,
                self.out.describe()
            );
            self.pump(deadline)?;
        }
    }

    /// Waits for the command to end; returns all it printed.
    pub fn finish(mut self, timeout: Duration) -> Result<GuestOutput> {
        let deadline = Instant::now() + timeout;
        while !self.done {
            self.pump(deadline)?;
        }
        Ok(std::mem::take(&mut self.out))
    }
}

/// Either end of a traffic test.
#[derive(Clone, Copy)]
pub enum Peer<'a> {
    Host(&'a Host),
    Vm(&'a Vm),
}

impl Peer<'_> {
    pub fn name(&self) -> &str {
        match self {
            Peer::Host(h) => &h.name,
            Peer::Vm(v) => &v.name,
        }
    }
    pub fn ip(&self) -> &str {
        match self {
            Peer::Host(h) => &h.ip,
            Peer::Vm(v) => &v.ip,
        }
    }
}

/// xsw-nettool running on a host (a process) or in a guest (an agent job).
enum Tool<'a> {
    Host(Proc),
    Vm(GuestJob<'a>),
}

impl Tool<'_> {
    fn start<'a>(lab: &Lab, on: Peer<'a>, label: &str, args: &[&str]) -> Result<Tool<'a>> {
        Ok(match on {
            Peer::Host(h) => {
                let nettool = lab.bins.nettool.display().to_string();
                let mut argv = vec![nettool.as_str()];
                argv.extend_from_slice(args);
                Tool::Host(lab.spawn_in(&h.ns, &format!("{label}-{}", h.name), &argv)?)
            }
            Peer::Vm(v) => {
                let mut argv = vec![v.nettool.as_str()];
                argv.extend_from_slice(args);
                Tool::Vm(v.spawn(&argv)?)
            }
        })
    }

    fn wait_line(&mut self, prefix: &str, timeout: Duration) -> Result<String> {
        match self {
            Tool::Host(p) => p.wait_line(prefix, timeout),
            Tool::Vm(j) => j.wait_line(prefix, timeout),
        }
    }

    /// What it logged, for error messages.
    fn log(&self) -> String {
        match self {
            Tool::Host(p) => p.log_text(),
            Tool::Vm(j) => j.out.describe(),
        }
    }
}

/// A checked TCP transfer.
#[derive(Clone, Copy, Debug)]
pub struct Transfer {
    pub bytes: u64,
    pub elapsed: Duration,
}

impl Transfer {
    pub fn mbit_per_s(&self) -> f64 {
        self.bytes as f64 * 8.0 / self.elapsed.as_secs_f64().max(1e-9) / 1e6
    }
}

/// Sends `bytes` pseudo-random bytes over TCP from `from` to `to` (hosts or
/// guests) and checks the receiver got exactly those bytes (length and FNV-1a
/// hash of the stream, as computed by both ends).
pub fn tcp_transfer(lab: &Lab, from: Peer, to: Peer, bytes: u64) -> Result<Transfer> {
    // A 4 MiB transfer takes well under 1 s at the ~100 Mbit/s of a TCG guest;
    // 64 MiB between veth hosts (tests/fastpath.rs) a few seconds.
    const SECS: u64 = 20;
    let port = lab.next_port();
    let bind = format!("{}:{port}", to.ip());
    let t = SECS.to_string();
    let mut sink = Tool::start(
        lab,
        to,
        &format!("tcp-sink-{port}"),
        &["tcp-sink", "--bind", &bind, "--timeout", &t],
    )?;
    sink.wait_line("ready", Duration::from_secs(10))?;
    let (n, seed) = (bytes.to_string(), (port as u64 * 7919).to_string());
    let started = Instant::now();
    let mut send = Tool::start(
        lab,
        from,
        &format!("tcp-send-{port}"),
        &[
            "tcp-send",
            "--to",
            &bind,
            "--bytes",
            &n,
            "--seed",
            &seed,
            "--timeout",
            &t,
        ],
    )?;
    let what = format!("TCP {} -> {} ({bytes} bytes)", from.name(), to.name());
    let sent = send
        .wait_line("{", Duration::from_secs(SECS + 5))
        .with_context(|| {
            format!(
                "{what}: the sender did not finish\nsink:\n{}\nxswd log:\n{}",
                sink.log(),
                lab.xswd_log()
            )
        })?;
    let elapsed = started.elapsed();
    let got = sink
        .wait_line("{", Duration::from_secs(10))
        .with_context(|| format!("{what}: the sink did not report"))?;
    let s: Value = serde_json::from_str(&sent).with_context(|| format!("sender: {sent}"))?;
    let r: Value = serde_json::from_str(&got).with_context(|| format!("sink: {got}"))?;
    ensure!(
        s["bytes"].as_u64() == Some(bytes),
        "{what}: the sender reports {s}"
    );
    ensure!(s == r, "{what}: sent {s} but the receiver got {r}");
    Ok(Transfer { bytes, elapsed })
}

/// `count` numbered UDP datagrams `interval_ms` apart from `from` to an echo
/// server on `to`; every echo is checked.
pub fn udp_exchange(
    lab: &Lab,
    from: Peer,
    to: Peer,
    count: u32,
    interval_ms: u32,
) -> Result<UdpStats> {
    let port = lab.next_port();
    let secs = (count as u64 * interval_ms as u64) / 1000 + 15;
    let t = secs.to_string();
    let bind = format!("{}:{port}", to.ip());
    let mut echo = Tool::start(
        lab,
        to,
        &format!("udp-echo-{port}"),
        &["udp-echo", "--bind", &bind, "--timeout", &t],
    )?;
    echo.wait_line("ready", Duration::from_secs(10))?;
    let (c, i) = (count.to_string(), interval_ms.to_string());
    let pt = (secs - 5).to_string();
    let mut probe = Tool::start(
        lab,
        from,
        &format!("udp-probe-{port}"),
        &[
            "udp-probe",
            "--to",
            &bind,
            "--count",
            &c,
            "--interval-ms",
            &i,
            "--wait-ms",
            "1000",
            "--timeout",
            &pt,
        ],
    )?;
    let line = probe
        .wait_line("{", Duration::from_secs(secs))
        .with_context(|| {
            format!(
                "UDP {} -> {}: no result\necho:\n{}",
                from.name(),
                to.name(),
                echo.log()
            )
        })?;
    UdpStats::parse(&line)
}

/// Joins the given switch-namespace interfaces (veth ports, taps) in a Linux
/// bridge `<tag>-br`, the control that needs no xswd.
pub fn linux_bridge(lab: &Lab, ports: &[&str]) -> Result<()> {
    let br = format!("{}-br", lab.tag);
    cmd::ns_ok(&lab.sw, &["ip", "link", "add", &br, "type", "bridge"])?;
    for p in ports {
        cmd::ns_ok(&lab.sw, &["ip", "link", "set", p, "master", &br])?;
    }
    cmd::ns_ok(&lab.sw, &["ip", "link", "set", &br, "up"])?;
    Ok(())
}
