//! Support library for the xsw integration tests.
//!
//! A [`Lab`] is one test's private world: a switch namespace where the real
//! `xswd` runs, host namespaces attached through veth pairs, and guests
//! attached through taps held by `xsw-guest` (a stand-in for a VM). Dropping
//! the lab kills every process it started and deletes every namespace (and
//! with them every veth and tap), also when the test fails or panics.
//!
//! Labs are serialised across threads and processes with a file lock, so the
//! tests never compete for the machine's two cores.
//!
//! Addressing: each lab gets a distinct X and uses 198.18.X.0/24; host N has
//! address 198.18.X.N and MAC 02:78:X:00:00:N.

pub mod cmd;
pub mod counters;
pub mod frames;
pub mod service;
pub mod tenancy;
pub mod threads;
pub mod users;
pub mod vm;

pub use cmd::{Output, Proc};
use vm::Peer;

use anyhow::{anyhow, bail, ensure, Context, Result};
use serde_json::Value;
use std::cell::{Cell, RefCell};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Creates a [`Lab`] with this crate's own binaries (xsw-guest, xsw-nettool)
/// located through cargo: `lab!("test_name", "tag", X)`.
#[macro_export]
macro_rules! lab {
    ($test:expr, $tag:expr, $net:expr) => {
        $crate::Lab::new(
            $test,
            $tag,
            $net,
            ::std::path::Path::new(env!("CARGO_BIN_EXE_xsw-guest")),
            ::std::path::Path::new(env!("CARGO_BIN_EXE_xsw-nettool")),
        )
    };
}

/// Fails (never skips) when not running as root.
pub fn require_root() -> Result<()> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    ensure!(
        euid == 0,
        "the xsw integration tests must run as root (euid is {euid}): they create network namespaces, \
         veths and taps and run xswd, which attaches XDP programs. Run them as root, e.g. \
         `sudo -E cargo test -p xsw-integration`. They are never skipped: not running them is a failure."
    );
    Ok(())
}

/// Paths of the binaries under test and of this crate's helpers.
#[derive(Clone, Debug)]
pub struct Bins {
    /// Directory holding xswd and xswctl, or why none was found.
    xsw_dir: std::result::Result<PathBuf, String>,
    pub guest: PathBuf,
    pub nettool: PathBuf,
}

impl Bins {
    /// xswd/xswctl come from $XSW_BIN_DIR, else from the directory cargo put
    /// this crate's binaries in (target/<profile>), else <workspace>/target/debug.
    pub fn locate(guest: &Path, nettool: &Path) -> Result<Bins> {
        for p in [guest, nettool] {
            ensure!(
                p.is_file(),
                "{} missing; run `cargo build --workspace`",
                p.display()
            );
        }
        let mut dirs: Vec<PathBuf> = Vec::new();
        if let Some(d) = std::env::var_os("XSW_BIN_DIR") {
            dirs.push(PathBuf::from(d));
        } else {
            if let Some(d) = guest.parent() {
                dirs.push(d.to_path_buf());
            }
            dirs.push(
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("..")
                    .join("target")
                    .join("debug"),
            );
        }
        let xsw_dir =
            dirs.iter()
                .find(|d| d.join("xswd").is_file() && d.join("xswctl").is_file())
                .cloned()
                .ok_or_else(|| {
                    format!(
                    "xswd/xswctl not found in {}; build them first with `cargo build --workspace` \
                     (or point XSW_BIN_DIR at the directory holding them)",
                    dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", ")
                )
                });
        Ok(Bins {
            xsw_dir,
            guest: guest.to_path_buf(),
            nettool: nettool.to_path_buf(),
        })
    }

    pub fn xswd(&self) -> Result<PathBuf> {
        self.xsw_dir
            .clone()
            .map(|d| d.join("xswd"))
            .map_err(|e| anyhow!(e))
    }

    pub fn xswctl(&self) -> Result<PathBuf> {
        self.xsw_dir
            .clone()
            .map(|d| d.join("xswctl"))
            .map_err(|e| anyhow!(e))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Veth,
    Tap,
}

/// An endpoint attached to the switch: a host namespace behind a veth, or a
/// guest namespace behind a tap relayed by xsw-guest.
#[derive(Clone, Debug)]
pub struct Host {
    pub name: String,
    pub kind: Kind,
    /// Its own network namespace.
    pub ns: String,
    /// Its interface inside `ns`.
    pub ifname: String,
    /// The switch port (interface in the switch namespace) it hangs off.
    pub port: String,
    pub mac: String,
    /// IPv4 address without prefix length (the prefix is /24).
    pub ip: String,
}

/// Summary of one `ping` run.
#[derive(Clone, Copy, Debug)]
pub struct PingStats {
    pub transmitted: u32,
    pub received: u32,
}

/// Result of `xsw-nettool udp-probe`.
#[derive(Clone, Copy, Debug)]
pub struct UdpStats {
    pub sent: u64,
    pub received: u64,
    pub lost: u64,
    pub corrupt: u64,
    pub max_consecutive_lost: u64,
}

impl UdpStats {
    pub fn parse(line: &str) -> Result<UdpStats> {
        let v: Value =
            serde_json::from_str(line).with_context(|| format!("udp-probe output: {line}"))?;
        let g = |k: &str| {
            v[k].as_u64()
                .ok_or_else(|| anyhow!("udp-probe output lacks {k}: {line}"))
        };
        Ok(UdpStats {
            sent: g("sent")?,
            received: g("received")?,
            lost: g("lost")?,
            corrupt: g("corrupt")?,
            max_consecutive_lost: g("max_consecutive_lost")?,
        })
    }
}

const LOCK_PATH: &str = "/tmp/xsw-integration.lock";

pub struct Lab {
    pub test: String,
    /// Short tag (at most 5 bytes) in every interface name of this lab.
    pub tag: String,
    /// X of 198.18.X.0/24.
    pub net: u8,
    /// Private scratch directory (socket, config, logs).
    pub dir: PathBuf,
    /// Name of the switch namespace.
    pub sw: String,
    pub bins: Bins,
    namespaces: RefCell<Vec<String>>,
    procs: RefCell<Vec<Proc>>,
    xswd: RefCell<Option<Proc>>,
    port_seq: Cell<u16>,
    _lock: File,
}

impl Lab {
    /// Takes the global lock, creates the scratch directory and the switch
    /// namespace `xsw-<test>-<pid>-sw`.
    pub fn new(test: &str, tag: &str, net: u8, guest: &Path, nettool: &Path) -> Result<Lab> {
        require_root()?;
        ensure!(
            !tag.is_empty() && tag.len() <= 5,
            "lab tag '{tag}' must be 1-5 bytes"
        );
        let bins = Bins::locate(guest, nettool)?;
        let lock = File::create(LOCK_PATH).with_context(|| format!("creating {LOCK_PATH}"))?;
        // SAFETY: flock only takes an fd (open for the File's lifetime) and flags.
        let rc = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) };
        ensure!(
            rc == 0,
            "flock {LOCK_PATH}: {}",
            std::io::Error::last_os_error()
        );

        let pid = std::process::id();
        let dir = PathBuf::from(format!("/tmp/xsw-it-{test}-{pid}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let lab = Lab {
            test: test.to_string(),
            tag: tag.to_string(),
            net,
            sw: format!("xsw-{test}-{pid}-sw"),
            dir,
            bins,
            namespaces: RefCell::new(Vec::new()),
            procs: RefCell::new(Vec::new()),
            xswd: RefCell::new(None),
            port_seq: Cell::new(7000),
            _lock: lock,
        };
        let sw = lab.sw.clone();
        lab.add_netns_named(&sw)?;
        Ok(lab)
    }

    /// Namespace name for role `role` of this test.
    pub fn ns_name(&self, role: &str) -> String {
        format!("xsw-{}-{}-{role}", self.test, std::process::id())
    }

    fn add_netns_named(&self, ns: &str) -> Result<()> {
        // A leftover from a killed earlier run with the same pid would be ours.
        if Path::new("/run/netns").join(ns).exists() {
            let _ = cmd::sh_ok(&["ip", "netns", "del", ns]);
        }
        cmd::sh_ok(&["ip", "netns", "add", ns])?;
        self.namespaces.borrow_mut().push(ns.to_string());
        cmd::ns_ok(ns, &["ip", "link", "set", "lo", "up"])?;
        // No IPv6 chatter (router/neighbour solicitations, MLD): counters and
        // the FDB then only show the traffic each test sends.
        cmd::ns_ok(
            ns,
            &[
                "sysctl",
                "-q",
                "-w",
                "net.ipv6.conf.all.disable_ipv6=1",
                "net.ipv6.conf.default.disable_ipv6=1",
            ],
        )?;
        Ok(())
    }

    pub fn mac(&self, idx: u8) -> String {
        format!("02:78:{:02x}:00:00:{:02x}", self.net, idx)
    }

    pub fn ip(&self, idx: u8) -> String {
        format!("198.18.{}.{idx}", self.net)
    }

    /// Switch-side interface name of endpoint `name`.
    pub fn port_name(&self, name: &str) -> String {
        format!("{}-{name}", self.tag)
    }

    fn endpoint_ifname(&self, name: &str) -> String {
        format!("{}-{name}-in", self.tag)
    }

    /// Host `name` (at most 4 bytes) in its own namespace, attached by a veth
    /// pair whose other end (the switch port, named `<tag>-<name>`) lives in
    /// the switch namespace. Address 198.18.X.idx/24, MAC 02:78:X:00:00:idx,
    /// the kernel's default offloads on the host side.
    pub fn add_veth_host(&self, name: &str, idx: u8) -> Result<Host> {
        ensure!(
            !name.is_empty() && name.len() <= 4,
            "host name '{name}' must be 1-4 bytes"
        );
        let ns = self.ns_name(name);
        self.add_netns_named(&ns)?;
        let port = self.port_name(name);
        let ifname = self.endpoint_ifname(name);
        let h = Host {
            name: name.to_string(),
            kind: Kind::Veth,
            ns,
            ifname,
            port,
            mac: self.mac(idx),
            ip: self.ip(idx),
        };
        self.create_veth(&h)?;
        Ok(h)
    }

    /// Creates the veth pair of veth host `h` (again, after it was deleted: a VM
    /// or container restarted), configured as [`Lab::add_veth_host`] does.
    pub fn create_veth(&self, h: &Host) -> Result<()> {
        cmd::sh_ok(&[
            "ip", "-n", &self.sw, "link", "add", &h.port, "type", "veth", "peer", "name",
            &h.ifname, "netns", &h.ns,
        ])?;
        self.configure_endpoint(h)?;
        cmd::sh_ok(&["ip", "-n", &self.sw, "link", "set", &h.port, "up"])?;
        Ok(())
    }

    /// Address, MAC, checksum setting and link up for an endpoint interface.
    fn configure_endpoint(&self, h: &Host) -> Result<()> {
        cmd::ns_ok(&h.ns, &["ip", "link", "set", &h.ifname, "address", &h.mac])?;
        cmd::ns_ok(
            &h.ns,
            &[
                "ip",
                "addr",
                "add",
                &format!("{}/24", h.ip),
                "dev",
                &h.ifname,
            ],
        )?;
        // Default offloads: TCP/UDP checksums leave unfinished (checksum
        // offload), and xsw must finish them (packet::checksum).
        cmd::ns_ok(&h.ns, &["ip", "link", "set", &h.ifname, "up"])?;
        Ok(())
    }

    /// Creates a persistent tap `<tag>-<name>` in the switch namespace (like
    /// `ip tuntap add mode tap`) and sets it up. Returns its name.
    pub fn create_tap(&self, name: &str) -> Result<String> {
        let tap = self.port_name(name);
        cmd::sh_ok(&[
            "ip", "-n", &self.sw, "tuntap", "add", "mode", "tap", "name", &tap,
        ])?;
        cmd::sh_ok(&["ip", "-n", &self.sw, "link", "set", &tap, "up"])?;
        Ok(tap)
    }

    /// A tap-attached guest: creates tap `<tag>-<name>` in the switch
    /// namespace and attaches a guest to it (see [`Lab::attach_guest`]).
    pub fn add_guest(&self, name: &str, idx: u8) -> Result<Host> {
        let tap = self.create_tap(name)?;
        self.attach_guest(name, idx, &tap)
    }

    /// Starts `xsw-guest` in the switch namespace holding `tap` (which must
    /// exist there) with its peer tap in a new guest namespace, then gives the
    /// guest interface address 198.18.X.idx/24 and MAC 02:78:X:00:00:idx.
    pub fn attach_guest(&self, name: &str, idx: u8, tap: &str) -> Result<Host> {
        self.attach_guest_with(name, idx, tap, false)
    }

    /// [`Lab::attach_guest`] with both taps opened as QEMU opens a virtio-net
    /// guest's (`xsw-guest --vnet-hdr`): the guest kernel sends partial
    /// checksums and TCP segments up to 64 KiB, as a VM at default offloads.
    pub fn attach_vnet_guest(&self, name: &str, idx: u8, tap: &str) -> Result<Host> {
        self.attach_guest_with(name, idx, tap, true)
    }

    fn attach_guest_with(&self, name: &str, idx: u8, tap: &str, vnet_hdr: bool) -> Result<Host> {
        ensure!(
            !name.is_empty() && name.len() <= 4,
            "guest name '{name}' must be 1-4 bytes"
        );
        let ns = self.ns_name(name);
        self.add_netns_named(&ns)?;
        let ifname = self.endpoint_ifname(name);
        let guest = self.bins.guest.display().to_string();
        let mut args = vec![
            guest.as_str(),
            "--tap",
            tap,
            "--peer",
            &ifname,
            "--netns",
            &ns,
        ];
        if vnet_hdr {
            args.push("--vnet-hdr");
        }
        let argv = cmd::in_ns(&self.sw, &args);
        let mut p = Proc::spawn(
            &format!("guest-{name}"),
            &argv,
            &self.dir.join(format!("guest-{name}.log")),
        )?;
        p.wait_line("ready", Duration::from_secs(5))?;
        self.procs.borrow_mut().push(p);
        let h = Host {
            name: name.to_string(),
            kind: Kind::Tap,
            ns,
            ifname,
            port: tap.to_string(),
            mac: self.mac(idx),
            ip: self.ip(idx),
        };
        self.configure_endpoint(&h)?;
        Ok(h)
    }

    /// Stops the xsw-guest process of guest `h` (like shutting the VM down);
    /// returns its log.
    pub fn stop_guest(&self, h: &Host) -> Result<String> {
        let label = format!("guest-{}", h.name);
        let mut procs = self.procs.borrow_mut();
        let pos = procs
            .iter()
            .position(|p| p.label == label)
            .ok_or_else(|| anyhow!("no process {label}"))?;
        let mut p = procs.remove(pos);
        p.stop(Duration::from_secs(2));
        Ok(p.log_text())
    }

    /// Waits up to `timeout` for guest `h`'s xsw-guest to exit by itself;
    /// returns its exit status, or None if it still runs.
    pub fn wait_guest_exit(
        &self,
        h: &Host,
        timeout: Duration,
    ) -> Result<Option<std::process::ExitStatus>> {
        let label = format!("guest-{}", h.name);
        let mut procs = self.procs.borrow_mut();
        let p = procs
            .iter_mut()
            .find(|p| p.label == label)
            .ok_or_else(|| anyhow!("no process {label}"))?;
        Ok(p.wait_exit(timeout))
    }

    /// Spawns `argv` inside namespace `ns` as a background process logging
    /// stderr to the lab directory. The caller owns it; dropping kills it.
    pub fn spawn_in(&self, ns: &str, label: &str, argv: &[&str]) -> Result<Proc> {
        Proc::spawn(
            label,
            &cmd::in_ns(ns, argv),
            &self.dir.join(format!("{label}.log")),
        )
    }

    /// Runs a bounded command in namespace `ns`.
    pub fn run_in(&self, ns: &str, argv: &[&str], timeout: Duration) -> Result<Output> {
        cmd::run(&cmd::in_ns(ns, argv), timeout)
    }

    // ------------------------------------------------------------------ xswd

    pub fn socket(&self) -> PathBuf {
        self.dir.join("xsw.sock")
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.join("xsw.toml")
    }

    /// Convenience: a config with one `[[port]]` per name.
    pub fn config_with_ports(ports: &[&str]) -> String {
        ports
            .iter()
            .map(|p| format!("[[port]]\nname = \"{p}\"\n\n"))
            .collect()
    }

    /// Writes `config` to the lab's xsw.toml and starts xswd in the switch
    /// namespace; returns once `xswctl status` answers (10 s at most).
    pub fn start_xswd(&self, config: &str) -> Result<()> {
        ensure!(self.xswd.borrow().is_none(), "xswd already started");
        std::fs::write(self.config_path(), config)?;
        self.launch_xswd()
    }

    /// Starts xswd again after it died (killed or crashed), on the config
    /// file as the previous xswd left it: a restart.
    pub fn relaunch_xswd(&self) -> Result<()> {
        let previous = self.xswd.borrow_mut().take();
        if let Some(mut p) = previous {
            ensure!(
                !p.running(),
                "relaunch_xswd: the previous xswd is still running"
            );
        }
        self.launch_xswd()
    }

    /// The xswd process id, for signals such as SIGHUP.
    pub fn xswd_pid(&self) -> Option<u32> {
        self.xswd.borrow().as_ref().map(|p| p.child.id())
    }

    fn launch_xswd(&self) -> Result<()> {
        let sock = self.socket().display().to_string();
        let cfg = self.config_path().display().to_string();
        let xswd = self.bins.xswd()?.display().to_string();
        let argv = cmd::in_ns(&self.sw, &[&xswd, "--socket", &sock, "--config", &cfg]);
        let mut p = Proc::spawn("xswd", &argv, &self.dir.join("xswd.log"))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(st) = p.child.try_wait()? {
                bail!(
                    "xswd exited ({st}) before answering `xswctl status`; its log:\n{}",
                    p.log_text()
                );
            }
            if self.socket().exists() {
                let out = self.ctl(&["status"])?;
                if out.success() {
                    break;
                }
                if Instant::now() >= deadline {
                    bail!(
                        "xswctl status still fails after 10 s:\n{}\nxswd log:\n{}",
                        out.describe(),
                        p.log_text()
                    );
                }
            } else if Instant::now() >= deadline {
                bail!(
                    "xswd did not create its socket within 10 s; its log:\n{}",
                    p.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        *self.xswd.borrow_mut() = Some(p);
        Ok(())
    }

    /// SIGKILLs xswd and waits until it is reaped.
    pub fn kill_xswd(&self) -> Result<()> {
        let mut guard = self.xswd.borrow_mut();
        let p = guard.as_mut().ok_or_else(|| anyhow!("xswd not running"))?;
        cmd::signal(&p.child, libc::SIGKILL);
        p.wait_exit(Duration::from_secs(5))
            .ok_or_else(|| anyhow!("xswd did not die after SIGKILL"))?;
        Ok(())
    }

    /// Sends SIGTERM to xswd and waits up to `timeout` for it to exit.
    pub fn stop_xswd(&self, timeout: Duration) -> Result<std::process::ExitStatus> {
        let mut guard = self.xswd.borrow_mut();
        let p = guard.as_mut().ok_or_else(|| anyhow!("xswd not running"))?;
        cmd::signal(&p.child, libc::SIGTERM);
        p.wait_exit(timeout)
            .ok_or_else(|| anyhow!("xswd still running {timeout:?} after SIGTERM"))
    }

    /// True if xswd was started and has not exited.
    pub fn xswd_running(&self) -> bool {
        self.xswd
            .borrow_mut()
            .as_mut()
            .map(|p| p.running())
            .unwrap_or(false)
    }

    pub fn xswd_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("xswd.log")).unwrap_or_default()
    }

    /// Runs `xswctl --socket <lab socket> ARGS...` (10 s bound).
    pub fn ctl(&self, args: &[&str]) -> Result<Output> {
        let sock = self.socket().display().to_string();
        let ctl = self.bins.xswctl()?.display().to_string();
        let mut argv = vec![ctl.as_str(), "--socket", sock.as_str()];
        argv.extend_from_slice(args);
        cmd::run_args(&argv, Duration::from_secs(10))
    }

    /// `ctl`, requiring exit status 0.
    pub fn ctl_ok(&self, args: &[&str]) -> Result<String> {
        let out = self.ctl(args)?;
        if !out.success() {
            bail!("{}\nxswd log:\n{}", out.describe(), self.xswd_log());
        }
        Ok(out.stdout)
    }

    /// `xswctl --json ARGS...`, requiring success, parsed as JSON.
    pub fn ctl_json(&self, args: &[&str]) -> Result<Value> {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        let out = self.ctl_ok(&a)?;
        serde_json::from_str(&out).with_context(|| {
            format!(
                "xswctl --json {} printed invalid JSON: {out}",
                args.join(" ")
            )
        })
    }

    /// Runs xswctl expecting a refusal: non-zero exit and a message on stderr
    /// starting with "error:". Returns the output for further checks.
    pub fn ctl_err(&self, args: &[&str]) -> Result<Output> {
        let out = self.ctl(args)?;
        ensure!(
            !out.timed_out,
            "xswctl {} hung:\n{}",
            args.join(" "),
            out.describe()
        );
        ensure!(
            out.code.is_some() && out.code != Some(0),
            "xswctl {} should fail but:\n{}",
            args.join(" "),
            out.describe()
        );
        ensure!(
            out.stderr.trim_start().starts_with("error:"),
            "xswctl {} failed without an \"error:\" message on stderr:\n{}",
            args.join(" "),
            out.describe()
        );
        Ok(out)
    }

    pub fn port_add(&self, port: &str) -> Result<()> {
        self.ctl_ok(&["port", "add", port]).map(|_| ())
    }

    /// `port list --json` as an array.
    pub fn ports(&self) -> Result<Vec<Value>> {
        as_array(self.ctl_json(&["port", "list"])?, "port list")
    }

    /// The `port list --json` object for `name`, if listed.
    pub fn port(&self, name: &str) -> Result<Option<Value>> {
        Ok(self.ports()?.into_iter().find(|p| p["name"] == name))
    }

    /// `fdb show --json` as an array.
    pub fn fdb(&self) -> Result<Vec<Value>> {
        as_array(self.ctl_json(&["fdb", "show"])?, "fdb show")
    }

    /// FDB entries for `mac` (compared case-insensitively).
    pub fn fdb_entries(&self, mac: &str) -> Result<Vec<Value>> {
        Ok(self
            .fdb()?
            .into_iter()
            .filter(|e| {
                e["mac"]
                    .as_str()
                    .map(|m| m.eq_ignore_ascii_case(mac))
                    .unwrap_or(false)
            })
            .collect())
    }

    /// `stats --json`.
    pub fn stats(&self) -> Result<Value> {
        self.ctl_json(&["stats"])
    }

    /// Per-port counters from `stats --json` for port `name`.
    pub fn port_stats(&self, name: &str) -> Result<PortCounters> {
        PortCounters::from_stats(&self.stats()?, name)
    }

    // ------------------------------------------------------------------- XDP

    /// Interfaces in the switch namespace that have an XDP or tc program
    /// attached, according to `ip -d link show` (XDP), `bpftool net show` (XDP
    /// and tc) and BPF_PROG_QUERY (tcx ingress, which bpftool 7.1 does not
    /// show per interface). Each entry starts with the interface's name.
    pub fn programs_attached(&self) -> Result<Vec<String>> {
        let mut found = Vec::new();
        let out = cmd::ns_ok(&self.sw, &["ip", "-j", "-d", "link", "show"])?;
        let links: Value =
            serde_json::from_str(&out).with_context(|| format!("ip -j output: {out}"))?;
        let nettool = self.bins.nettool.display().to_string();
        for l in links.as_array().into_iter().flatten() {
            let Some(n) = l["ifname"].as_str() else {
                continue;
            };
            if l.get("xdp").is_some() {
                found.push(format!("{n} (ip link: {})", l["xdp"]));
            }
            let out = cmd::ns_ok(&self.sw, &[&nettool, "tcx-query", "--iface", n])?;
            let tcx: Value =
                serde_json::from_str(&out).with_context(|| format!("tcx-query output: {out}"))?;
            if tcx["tcx_ingress"]
                .as_array()
                .is_some_and(|ids| !ids.is_empty())
            {
                found.push(format!("{n} (tcx ingress: {})", tcx["tcx_ingress"]));
            }
        }
        let out = cmd::ns_ok(&self.sw, &["bpftool", "-j", "net", "show"])?;
        let net: Value =
            serde_json::from_str(&out).with_context(|| format!("bpftool -j output: {out}"))?;
        for block in net.as_array().into_iter().flatten() {
            for hook in ["xdp", "tc"] {
                for x in block[hook].as_array().into_iter().flatten() {
                    let n = x["devname"].as_str().unwrap_or("?");
                    found.push(format!("{n} (bpftool {hook}: {x})"));
                }
            }
        }
        Ok(found)
    }

    /// Interface names in the switch namespace.
    pub fn sw_links(&self) -> Result<Vec<String>> {
        let out = cmd::ns_ok(&self.sw, &["ip", "-j", "link", "show"])?;
        let links: Value = serde_json::from_str(&out)?;
        Ok(links
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|l| l["ifname"].as_str().map(str::to_string))
            .collect())
    }

    // --------------------------------------------------------------- traffic

    /// `ping -c count` from `from` to `to_ip`: exactly `count` requests 0.2 s
    /// apart, each waited for at most 1 s.
    pub fn ping(&self, from: &Host, to_ip: &str, count: u32) -> Result<PingStats> {
        let bound = (count as f64 * 0.2 + 6.0).ceil() as u64;
        let c = count.to_string();
        let out = self.run_in(
            &from.ns,
            &["ping", "-n", "-q", "-c", &c, "-i", "0.2", "-W", "1", to_ip],
            Duration::from_secs(bound),
        )?;
        parse_ping(&out.stdout)
            .ok_or_else(|| anyhow!("cannot parse ping output:\n{}", out.describe()))
    }

    /// Starts `ping -c count -i interval` in the background (it stops by
    /// itself); read the result with [`Lab::ping_result`].
    pub fn spawn_ping(&self, from: &Host, to_ip: &str, count: u32, interval: &str) -> Result<Proc> {
        let c = count.to_string();
        self.spawn_in(
            &from.ns,
            &format!("ping-{}", from.name),
            &[
                "ping", "-n", "-q", "-c", &c, "-i", interval, "-W", "1", to_ip,
            ],
        )
    }

    /// Waits for a background ping to finish and parses its summary.
    pub fn ping_result(&self, p: &mut Proc, timeout: Duration) -> Result<PingStats> {
        let out = p.collect_lines(timeout)?.join("\n");
        parse_ping(&out)
            .ok_or_else(|| anyhow!("cannot parse ping output:\n{out}\n{}", p.log_text()))
    }

    /// `ping` that must get every reply back.
    pub fn ping_all(&self, from: &Host, to: &Host, count: u32) -> Result<()> {
        let s = self.ping(from, &to.ip, count)?;
        ensure!(
            s.transmitted == count && s.received == count,
            "ping {} -> {} ({}): {} sent, {} received, expected {count}/{count}\nxswd log:\n{}",
            from.name,
            to.name,
            to.ip,
            s.transmitted,
            s.received,
            self.xswd_log()
        );
        Ok(())
    }

    /// Pings once a second until one reply comes back (start-up readiness,
    /// not a correctness check); fails after `timeout`.
    pub fn wait_reachable(&self, from: &Host, to: &Host, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let out = self.run_in(
                &from.ns,
                &["ping", "-n", "-q", "-c", "1", "-W", "1", &to.ip],
                Duration::from_secs(3),
            )?;
            if out.success() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} ({}) cannot reach {} ({}) through xsw within {:?}\nxswd log:\n{}",
                    from.name,
                    from.ip,
                    to.name,
                    to.ip,
                    timeout,
                    self.xswd_log()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// A port for the traffic tools, distinct within the lab.
    pub(crate) fn next_port(&self) -> u16 {
        let p = self.port_seq.get();
        self.port_seq.set(p + 1);
        p
    }

    /// Starts `xsw-nettool udp-echo` on `on` (lifetime `secs`); returns the
    /// process (ready) and the port it listens on.
    pub fn start_udp_echo(&self, on: &Host, secs: u32) -> Result<(Proc, u16)> {
        let port = self.next_port();
        let nettool = self.bins.nettool.display().to_string();
        let bind = format!("{}:{port}", on.ip);
        let t = secs.to_string();
        let mut p = self.spawn_in(
            &on.ns,
            &format!("udp-echo-{}-{port}", on.name),
            &[&nettool, "udp-echo", "--bind", &bind, "--timeout", &t],
        )?;
        p.wait_line("ready", Duration::from_secs(5))?;
        Ok((p, port))
    }

    /// Starts `xsw-nettool udp-probe` from `from` to `ip:port` in the
    /// background; read its result with [`Lab::probe_result`].
    pub fn spawn_udp_probe(
        &self,
        from: &Host,
        ip: &str,
        port: u16,
        count: u32,
        interval_ms: u32,
    ) -> Result<Proc> {
        let nettool = self.bins.nettool.display().to_string();
        let to = format!("{ip}:{port}");
        let timeout = (count as u64 * interval_ms as u64) / 1000 + 5;
        let (c, i, t) = (
            count.to_string(),
            interval_ms.to_string(),
            timeout.to_string(),
        );
        self.spawn_in(
            &from.ns,
            &format!("udp-probe-{}-{port}", from.name),
            &[
                &nettool,
                "udp-probe",
                "--to",
                &to,
                "--count",
                &c,
                "--interval-ms",
                &i,
                "--wait-ms",
                "1000",
                "--timeout",
                &t,
            ],
        )
    }

    /// Waits for the JSON result line of a udp-probe.
    pub fn probe_result(&self, p: &mut Proc, timeout: Duration) -> Result<UdpStats> {
        let line = p.wait_line("{", timeout)?;
        UdpStats::parse(&line)
    }

    /// A UDP exchange: `count` datagrams from `from` to an echo server on `to`,
    /// every one checked on return (see [`vm::udp_exchange`], which serves
    /// hosts and VMs alike).
    pub fn udp_exchange(
        &self,
        from: &Host,
        to: &Host,
        count: u32,
        interval_ms: u32,
    ) -> Result<UdpStats> {
        vm::udp_exchange(self, Peer::Host(from), Peer::Host(to), count, interval_ms)
    }

    /// Sends `bytes` pseudo-random bytes over TCP from `from` to `to` and checks
    /// that the receiver got exactly those bytes (length and FNV-1a hash; see
    /// [`vm::tcp_transfer`], which serves hosts and VMs alike).
    pub fn tcp_transfer(&self, from: &Host, to: &Host, bytes: u64) -> Result<()> {
        vm::tcp_transfer(self, Peer::Host(from), Peer::Host(to), bytes).map(|_| ())
    }

    /// Starts tcpdump on `h`'s interface (bounded by `timeout 15` and `-c`),
    /// printing one line per matching frame; returns once it listens.
    pub fn capture(&self, h: &Host, filter: &str, count: u32) -> Result<Proc> {
        let c = count.to_string();
        let mut argv = vec![
            "timeout", "15", "tcpdump", "-i", &h.ifname, "-n", "-l", "-e", "-c", &c,
        ];
        argv.extend(filter.split_whitespace());
        let p = self.spawn_in(&h.ns, &format!("tcpdump-{}", h.name), &argv)?;
        let deadline = Instant::now() + Duration::from_secs(5);
        while !p.log_text().contains("listening on") {
            ensure!(
                Instant::now() < deadline,
                "tcpdump on {} did not start:\n{}",
                h.name,
                p.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(p)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Stop xswd gently first (its shutdown path is part of what we run),
        // then everything else, then the namespaces and with them every link.
        if let Some(mut p) = self.xswd.borrow_mut().take() {
            p.stop(Duration::from_secs(3));
        }
        for mut p in self.procs.borrow_mut().drain(..) {
            p.stop(Duration::from_secs(1));
        }
        let namespaces: Vec<String> = self.namespaces.borrow_mut().drain(..).rev().collect();
        for ns in &namespaces {
            // Whatever still runs inside was started by this lab.
            if let Ok(out) = cmd::run_args(&["ip", "netns", "pids", ns], Duration::from_secs(5)) {
                for pid in out
                    .stdout
                    .split_whitespace()
                    .filter_map(|p| p.parse::<libc::pid_t>().ok())
                {
                    // SAFETY: kill() has no memory-safety preconditions.
                    unsafe {
                        libc::kill(pid, libc::SIGKILL);
                    }
                }
            }
            if let Err(e) = cmd::sh_ok(&["ip", "netns", "del", ns]) {
                eprintln!("cleanup: deleting netns {ns}: {e}");
            }
        }
        // Shown by the test harness only when the test fails.
        eprintln!("===== xswd log ({}) =====\n{}", self.test, self.xswd_log());
        if let Ok(rd) = std::fs::read_dir(&self.dir) {
            for e in rd.flatten() {
                let p = e.path();
                let name = p
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                if name.ends_with(".log") && name != "xswd.log" {
                    let text = std::fs::read_to_string(&p).unwrap_or_default();
                    if !text.trim().is_empty() {
                        eprintln!("===== {name} =====\n{}", text.trim_end());
                    }
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn as_array(v: Value, what: &str) -> Result<Vec<Value>> {
    match v {
        Value::Array(a) => Ok(a),
        other => bail!("xswctl --json {what}: expected a JSON array, got {other}"),
    }
}

/// Per-port counters of `stats --json`.
#[derive(Clone, Copy, Debug, Default)]
pub struct PortCounters {
    pub rx_frames: u64,
    pub rx_bytes: u64,
    pub tx_frames: u64,
    pub tx_bytes: u64,
}

impl PortCounters {
    pub fn from_stats(stats: &Value, name: &str) -> Result<PortCounters> {
        let ports = stats["ports"]
            .as_array()
            .ok_or_else(|| anyhow!("stats --json has no \"ports\" array: {stats}"))?;
        let p = ports
            .iter()
            .find(|p| p["name"] == name)
            .ok_or_else(|| anyhow!("stats --json lists no port {name}: {stats}"))?;
        let g = |k: &str| {
            p[k].as_u64()
                .ok_or_else(|| anyhow!("stats for {name} lacks numeric {k}: {p}"))
        };
        Ok(PortCounters {
            rx_frames: g("rx_frames")?,
            rx_bytes: g("rx_bytes")?,
            tx_frames: g("tx_frames")?,
            tx_bytes: g("tx_bytes")?,
        })
    }
}

/// Parses "N packets transmitted, M received" from ping's summary.
pub fn parse_ping(out: &str) -> Option<PingStats> {
    let line = out.lines().find(|l| l.contains("packets transmitted"))?;
    let mut parts = line.split(',');
    let tx = parts.next()?.split_whitespace().next()?.parse().ok()?;
    let rx = parts.next()?.split_whitespace().next()?.parse().ok()?;
    Some(PingStats {
        transmitted: tx,
        received: rx,
    })
}

/// Removes fields that change by themselves (ages) so JSON snapshots of the
/// switch state can be compared before and after a refused request.
pub fn normalize(v: &Value) -> Value {
    match v {
        Value::Array(a) => {
            let mut items: Vec<Value> = a.iter().map(normalize).collect();
            items.sort_by_key(|x| x.to_string());
            Value::Array(items)
        }
        Value::Object(o) => Value::Object(
            o.iter()
                .filter(|(k, _)| k.as_str() != "age_secs")
                .map(|(k, v)| (k.clone(), normalize(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ping_summaries() {
        let ok = "--- 198.18.1.2 ping statistics ---\n3 packets transmitted, 3 received, 0% packet loss, time 402ms\n";
        let s = parse_ping(ok).expect("parsed");
        assert_eq!((s.transmitted, s.received), (3, 3));
        let lost = "2 packets transmitted, 0 received, +2 errors, 100% packet loss, time 1001ms";
        let s = parse_ping(lost).expect("parsed");
        assert_eq!((s.transmitted, s.received), (2, 0));
        assert!(parse_ping("ping: connect: Network is unreachable").is_none());
    }

    #[test]
    fn normalize_ignores_ages_and_order_only() {
        let a: Value = serde_json::json!([{"mac": "02:00:00:00:00:01", "port": "a", "static": false, "age_secs": 1},
                                          {"mac": "02:00:00:00:00:02", "port": "b", "static": true, "age_secs": 0}]);
        let b: Value = serde_json::json!([{"mac": "02:00:00:00:00:02", "port": "b", "static": true, "age_secs": 9},
                                          {"mac": "02:00:00:00:00:01", "port": "a", "static": false, "age_secs": 7}]);
        assert_eq!(normalize(&a), normalize(&b));
        let c: Value = serde_json::json!([{"mac": "02:00:00:00:00:02", "port": "a", "static": true, "age_secs": 9},
                                          {"mac": "02:00:00:00:00:01", "port": "a", "static": false, "age_secs": 7}]);
        assert_ne!(normalize(&a), normalize(&c));
    }
}
