//! `xsw-bench tap-sink`: the receiver of the "VM behind a tap port" scenario.
//!
//! It opens the tap the way QEMU does (TUNSETIFF on /dev/net/tun with
//! IFF_TAP | IFF_NO_PI) and reads frames like a guest's virtio-net backend:
//! non-blocking read() until the queue is empty, then poll() until the
//! kernel wakes it. So what it counts is what a guest could take, and with
//! `--measure` its latency includes the tap's queue and the reader's wake-up,
//! unlike `sink --measure`, which stamps frames in XDP before any queue.
//!
//! The statistics are the same code as `sink`'s (counting: [`CountSummary`];
//! measuring: [`crate::stats`]), so the two receivers' JSON compare field by
//! field.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

use anyhow::{bail, Context, Result};

use xsw::port::tap::{self, TapError};

use crate::sink::{self, CountSummary};
use crate::stats::{Measurement, Report};
use crate::sys::{self, CpuTimes};

#[derive(clap::Args)]
pub struct TapSinkOpts {
    /// The tap to read from: one created beforehand (`ip tuntap add mode tap
    /// NAME`, then joined to a bridge or switch) that no other process holds
    /// open, or a new one, which disappears when tap-sink exits.
    #[arg(long)]
    pub tap: String,
    /// Total run time in seconds, warm-up included.
    #[arg(long)]
    pub duration: f64,
    /// Seconds at the start left out of the summary.
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    /// Measure loss, reordering and one-way latency of the frames of
    /// `gen --stamp` (same host), like `sink --measure`. The receive time is
    /// taken right after read(), so the latency includes the tap's queue and
    /// the reader's wake-up, as a guest would see it.
    #[arg(long)]
    pub measure: bool,
    /// With --measure: the UDP destination port of the stamped frames.
    #[arg(long, default_value_t = 9, requires = "measure")]
    pub dst_port: u16,
    /// Pin the reader to this CPU (as a guest's vCPU would be).
    #[arg(long)]
    pub cpu: Option<usize>,
    /// Print the summary as one JSON object on stdout (progress stays on stderr).
    #[arg(long)]
    pub json: bool,
}

/// Large enough for any frame a tap without IFF_VNET_HDR hands out (the
/// kernel segments GSO packets for it), jumbo MTUs included.
const READ_BUF: usize = 65536;
/// Longest poll() wait, so a stop signal or the end of a second is never
/// noticed late even if poll() is not interrupted.
const MAX_POLL_MS: u64 = 100;

/// Refuses names the kernel would not take literally: TUNSETIFF treats a
/// name with '%' as a template ("tap%d") and silently truncates long ones.
fn check_name(name: &str) -> Result<()> {
    if name.is_empty()
        || name.len() >= libc::IFNAMSIZ
        || name == "."
        || name == ".."
        || name
            .bytes()
            .any(|b| b == b'/' || b == b'%' || b == b':' || b <= b' ' || b == 0x7f)
    {
        bail!(
            "--tap {name:?} is not a usable interface name: use 1..{} characters without '/', '%', ':' or spaces",
            libc::IFNAMSIZ - 1
        );
    }
    Ok(())
}

/// An open tap queue, as a guest's backend holds it.
struct Tap {
    file: File,
    /// True when this process created the tap (it goes away with the fd).
    created: bool,
}

fn open_tap(name: &str) -> Result<Tap> {
    check_name(name)?;
    let sys_dir = Path::new("/sys/class/net").join(name);
    let existed = sys_dir.exists();
    if existed && !sys_dir.join("tun_flags").exists() {
        bail!(
            "{name} exists in this network namespace but is not a tap: give tap-sink a tap \
             (`ip tuntap add mode tap NAME`) or a name that does not exist yet"
        );
    }
    let file = match tap::open_as_guest(name) {
        Ok(file) => file,
        Err(TapError::OpenTun(e)) => {
            return Err(e).context(
                "cannot open /dev/net/tun: is the tun module loaded (`modprobe tun`)? run as root",
            )
        }
        Err(TapError::Create { source: e, .. }) => {
            let hint = match e.raw_os_error() {
                Some(libc::EBUSY) => {
                    "another process (a VM, another tap-sink) holds it open: a single-queue tap has one reader; \
                     stop that process or use another tap"
                }
                Some(libc::EINVAL) => {
                    "it is not a single-queue tap: create it with `ip tuntap add mode tap NAME` (without multi_queue)"
                }
                Some(libc::EPERM) => {
                    "it belongs to another user or group (`ip tuntap ... user/group`), or this process lacks \
                     CAP_NET_ADMIN: run as root"
                }
                _ => "check it with `ip -d link show NAME`",
            };
            return Err(e).with_context(|| {
                format!(
                    "cannot {} tap {name}: {hint}",
                    if existed { "attach to" } else { "create" }
                )
            });
        }
        Err(other) => return Err(other.into()),
    };
    tap::set_admin_up(name).with_context(|| {
        format!("cannot bring tap {name} up (ip link set {name} up); run as root")
    })?;
    Ok(Tap {
        file,
        created: !existed,
    })
}

/// The tap's tx_dropped counter: frames the kernel had to drop because the
/// reader did not empty the tap's queue (txqueuelen frames) in time.
fn tx_dropped(name: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/sys/class/net/{name}/statistics/tx_dropped"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Ethernet (14) + IPv4 without options (20) + UDP (8), as in sink_measure.c.
const PAYLOAD_OFF: usize = 42;
const MAGIC_OFF: usize = PAYLOAD_OFF + 16;

/// Sequence number and send time of a stamped test frame to `dst_port`; the
/// same tests as bench/ebpf/sink_measure.c, so both sinks take the same frames.
fn stamp(frame: &[u8], dst_port: u16) -> Option<(u64, u64)> {
    let b = frame.get(..MAGIC_OFF + 2)?;
    let be16 = |o: usize| u16::from_be_bytes([b[o], b[o + 1]]);
    let be64 = |o: usize| {
        let mut v = [0u8; 8];
        v.copy_from_slice(&b[o..o + 8]);
        u64::from_be_bytes(v)
    };
    if be16(12) != 0x0800 || b[14] != 0x45 || b[23] != 17 {
        return None;
    }
    if be16(36) != dst_port || be16(MAGIC_OFF) != crate::frame::STAMP_MAGIC {
        return None;
    }
    Some((be64(PAYLOAD_OFF), be64(PAYLOAD_OFF + 8)))
}

/// Waits until the tap has a frame or `timeout_ms` passed; a stop signal
/// interrupts it (the handler has no SA_RESTART).
fn wait_readable(tap: &File, timeout_ms: u64, name: &str) -> Result<()> {
    let mut pfd = libc::pollfd {
        fd: tap.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: pfd is one live pollfd and the count passed is 1.
    let rc = unsafe { libc::poll(&mut pfd, 1, timeout_ms.min(MAX_POLL_MS) as libc::c_int) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e).with_context(|| format!("waiting for frames on tap {name} (poll)"));
        }
    }
    Ok(())
}

/// What the count mode carries from the start of its window.
struct WindowStart {
    at_ns: u64,
    frames: u64,
    bytes: u64,
    per_cpu: Vec<u64>,
    cpu: CpuTimes,
}

pub fn run(o: TapSinkOpts) -> Result<()> {
    if !(o.duration.is_finite() && o.warmup.is_finite() && o.warmup >= 0.0 && o.duration > o.warmup)
    {
        bail!(
            "--duration ({}) must be longer than --warmup ({}): the summary covers the time after the warm-up",
            o.duration,
            o.warmup
        );
    }
    if let Some(cpu) = o.cpu {
        sys::pin_to_cpu(cpu)?;
    }
    let tap = open_tap(&o.tap)?;
    sys::install_stop_handler()?;
    eprintln!(
        "tap-sink {} ({}{}): reading for {} s (first {} s warm-up, not in the summary); Ctrl-C stops early",
        o.tap,
        if tap.created {
            "created here, removed on exit"
        } else {
            "attached"
        },
        if o.measure { ", measure" } else { "" },
        o.duration,
        o.warmup
    );

    let mut buf = vec![0u8; READ_BUF];
    let mut frames = 0u64;
    let mut bytes = 0u64;
    let mut other = 0u64;
    let mut per_cpu: Vec<u64> = Vec::new();
    let dropped_before = tx_dropped(&o.tap);

    let start_ns = sys::monotonic_ns()?;
    let warm_end_ns = start_ns + (o.warmup * 1e9) as u64;
    let end_ns = start_ns + (o.duration * 1e9) as u64;
    let mut m = o
        .measure
        .then(|| Measurement::new(warm_end_ns))
        .transpose()?;
    let mut window: Option<WindowStart> = None;
    if o.warmup == 0.0 {
        window = Some(WindowStart {
            at_ns: start_ns,
            frames: 0,
            bytes: 0,
            per_cpu: per_cpu.clone(),
            cpu: CpuTimes::read()?,
        });
    }
    let mut per_second: Vec<f64> = Vec::new();
    let mut tick = 1u64;
    let (mut prev_frames, mut prev_bytes, mut prev_ns) = (0u64, 0u64, start_ns);
    let mut stopped_early = false;
    let mut now_ns;

    loop {
        // SAFETY: buf is a live, writable buffer of buf.len() bytes and the
        // tap's fd stays open for the call.
        let n = unsafe { libc::read(tap.file.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        now_ns = sys::monotonic_ns()?;
        let next_tick_ns = (start_ns + tick * 1_000_000_000).min(end_ns);
        if n > 0 {
            let len = n as usize;
            frames += 1;
            bytes += len as u64;
            // SAFETY: sched_getcpu has no memory-safety preconditions.
            let cpu = unsafe { libc::sched_getcpu() };
            if let Ok(c) = usize::try_from(cpu) {
                // Grown on demand: --cpu narrows what available_parallelism sees.
                if c >= per_cpu.len() {
                    per_cpu.resize(c + 1, 0);
                }
                per_cpu[c] += 1;
            }
            if let Some(m) = m.as_mut() {
                match stamp(&buf[..len], o.dst_port) {
                    Some((seq, sent)) => m.add(seq, sent, now_ns),
                    None => other += 1,
                }
            }
        } else {
            let e = io::Error::last_os_error();
            if n < 0 && e.kind() == io::ErrorKind::WouldBlock {
                // Empty: sleep in poll() like a guest waiting for its interrupt.
                let wait_ms = next_tick_ns.saturating_sub(now_ns).div_ceil(1_000_000);
                wait_readable(&tap.file, wait_ms, &o.tap)?;
                now_ns = sys::monotonic_ns()?;
            } else if n < 0 && e.kind() != io::ErrorKind::Interrupted {
                return Err(e)
                    .with_context(|| format!("reading from tap {} (was it deleted?)", o.tap));
            }
        }
        if now_ns >= next_tick_ns {
            let elapsed = (now_ns - start_ns) as f64 / 1e9;
            let warm = now_ns < warm_end_ns;
            match m.as_mut() {
                Some(m) => m.progress(elapsed, warm),
                None => {
                    let dt = (now_ns - prev_ns) as f64 / 1e9;
                    if dt > 0.0 {
                        let fps = (frames - prev_frames) as f64 / dt;
                        let bps = (bytes - prev_bytes) as f64 * 8.0 / dt;
                        sink::progress(elapsed, fps, bps, now_ns <= warm_end_ns);
                        if window.is_some() {
                            per_second.push(fps);
                        }
                    }
                    (prev_frames, prev_bytes, prev_ns) = (frames, bytes, now_ns);
                    if window.is_none() && now_ns >= warm_end_ns {
                        window = Some(WindowStart {
                            at_ns: now_ns,
                            frames,
                            bytes,
                            per_cpu: per_cpu.clone(),
                            cpu: CpuTimes::read()?,
                        });
                    }
                }
            }
            tick += 1;
        }
        if now_ns >= end_ns {
            break;
        }
        if sys::stop_requested() {
            stopped_early = true;
            break;
        }
    }

    let dropped = match (dropped_before, tx_dropped(&o.tap)) {
        (Some(a), Some(b)) => b.saturating_sub(a),
        _ => 0,
    };
    match m {
        Some(m) => m.report(&Report {
            receiver: "tap-sink",
            iface: &o.tap,
            path: "gen XDP -> read() from the tap, incl. tap queue and reader wake-up",
            overflow: dropped,
            other,
            stopped_early,
            json: o.json,
        }),
        None => {
            let cpu_end = CpuTimes::read()?;
            let summary = match window {
                Some(w) => CountSummary {
                    frames: frames - w.frames,
                    bytes: bytes - w.bytes,
                    secs: (now_ns - w.at_ns) as f64 / 1e9,
                    cpu_busy: cpu_end.busy - w.cpu.busy,
                    per_second,
                    per_cpu: per_cpu
                        .iter()
                        .enumerate()
                        .map(|(i, now)| now - w.per_cpu.get(i).copied().unwrap_or(0))
                        .collect(),
                    stopped_early,
                },
                None => CountSummary {
                    frames: 0,
                    bytes: 0,
                    secs: 0.0,
                    cpu_busy: 0.0,
                    per_second,
                    per_cpu: Vec::new(),
                    stopped_early,
                },
            };
            summary.print("tap-sink", &o.tap, "read on", o.json);
        }
    }
    if dropped > 0 {
        eprintln!(
            "warning: tap {} dropped {dropped} frames because its queue was full (the reader fell behind){}; \
             this rate is above tap-sink's ceiling",
            o.tap,
            if o.measure {
                ", reported as ring_overflow and counted as lost"
            } else {
                ""
            }
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamped(dst_port: u16, seq: u64, sent: u64, magic: u16) -> Vec<u8> {
        let mut payload = vec![0u8; 18];
        payload[..8].copy_from_slice(&seq.to_be_bytes());
        payload[8..16].copy_from_slice(&sent.to_be_bytes());
        payload[16..].copy_from_slice(&magic.to_be_bytes());
        let mut f = Vec::new();
        etherparse::PacketBuilder::ethernet2([2, 0xb5, 0, 0, 0, 1], [2, 0xb5, 0, 0, 0, 2])
            .ipv4([198, 18, 0, 1], [198, 18, 0, 2], 64)
            .udp(1024, dst_port)
            .write(&mut f, &payload)
            .unwrap();
        f
    }

    #[test]
    fn takes_only_stamped_frames_to_the_port() {
        let magic = crate::frame::STAMP_MAGIC;
        let f = stamped(9, 42, 1_234_567, magic);
        assert_eq!(f.len(), 60);
        assert_eq!(stamp(&f, 9), Some((42, 1_234_567)));
        assert_eq!(stamp(&f, 10), None);
        assert_eq!(stamp(&f[..59], 9), None);
        assert_eq!(stamp(&stamped(9, 1, 2, 0x1234), 9), None);
        let mut ipv6 = f.clone();
        ipv6[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
        assert_eq!(stamp(&ipv6, 9), None);
    }

    #[test]
    fn refuses_names_the_kernel_would_not_take_literally() {
        for bad in ["", "tap%d", "a/b", "has space", "0123456789abcdef", ".."] {
            assert!(check_name(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["tap0", "xswb-tap", "0123456789abcde"] {
            assert!(check_name(good).is_ok(), "{good:?} refused");
        }
    }
}
