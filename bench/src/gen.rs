//! `xsw-bench gen`: the in-kernel traffic generator.
//!
//! A tiny XDP program returning XDP_TX is run with BPF_PROG_RUN in
//! live-frames mode against the chosen interface, so the kernel itself puts
//! frames on that device's transmit path (ndo_xdp_xmit): no socket, no skb,
//! no copy per frame from userspace. This is the fastest way to offer 64-byte
//! frames on a machine without kernel pktgen.
//!
//! Veth caveat (checked on kernel 6.18): a veth's ndo_xdp_xmit only accepts
//! frames when its PEER runs NAPI, i.e. the peer has an XDP program attached
//! or GRO enabled (`ethtool -K PEER gro on`). Otherwise every frame is dropped
//! silently: no error reaches BPF_PROG_RUN, no drop counter moves (not even
//! tx_queue_0_xdp_xmit_errors in `ethtool -S`), only the interface's
//! tx_packets stays still. So the result compares the frames offered with the
//! device's tx_packets and warns when they disagree. The peer's receive work
//! runs in this thread's softirq, on this CPU, unless the peer has threaded
//! NAPI (`echo 1 > /sys/class/net/PEER/threaded`).

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::frame::{self, UdpFlow};
use crate::{prog_run, progs, sys};

pub struct GenOpts {
    pub iface: String,
    pub size: usize,
    pub count: Option<u64>,
    pub duration: Option<f64>,
    pub rate: Option<u64>,
    pub flow: UdpFlow,
    pub flows: u16,
    pub batch: u32,
    pub cpu: Option<usize>,
    pub json: bool,
}

/// Upper bound of one BPF_PROG_RUN call. A call cannot be stopped early
/// except by a signal, and then its own count is lost, so calls are kept to
/// tens of milliseconds of work.
const MAX_CHUNK: u64 = 1 << 20;
/// Target wall time per call when unpaced: short enough to stop close to
/// --duration, long enough that per-call setup (page pool creation) is noise.
const CHUNK_TIME: f64 = 0.05;
/// Target wall time per call when paced: frames go out in bursts at full
/// speed, this often.
const PACED_CHUNK_TIME: f64 = 0.002;

pub fn run(o: GenOpts) -> Result<()> {
    if o.batch == 0 || o.batch > prog_run::MAX_BATCH {
        bail!(
            "--batch must be 1..={} (the kernel's limit for live frames)",
            prog_run::MAX_BATCH
        );
    }
    if o.flows == 0 {
        bail!("--flows must be at least 1");
    }
    if o.rate == Some(0) {
        bail!("--rate must be at least 1 frame/s (leave it out for full speed)");
    }
    if let Some(d) = o.duration {
        if !(d > 0.0 && d.is_finite()) {
            bail!("--duration must be a positive number of seconds");
        }
    }
    if usize::from(o.flow.src_port) + usize::from(o.flows) - 1 > usize::from(u16::MAX) {
        bail!(
            "--src-port {} + --flows {} runs past port 65535",
            o.flow.src_port,
            o.flows
        );
    }
    let ifindex = sys::ifindex(&o.iface)?;
    if let Some(cpu) = o.cpu {
        sys::pin_to_cpu(cpu)?;
    }
    let template = frame::build_udp(&o.flow, o.size, o.flows > 1)?;

    let mut ebpf = progs::load(
        progs::TX_OBJ,
        "generator",
        &[("FLOWS", u32::from(o.flows))],
        &[("BASE_SRC_PORT", o.flow.src_port)],
    )?;
    let prog = progs::xdp_program(&mut ebpf, "xsw_bench_tx")?;
    let fd = prog
        .fd()
        .context("internal error: generator program has no fd after load")?;
    let fd = fd.as_fd();

    sys::install_stop_handler()?;
    let tx_before = sys::tx_packets(&o.iface);
    let start = Instant::now();
    let deadline = o.duration.map(|d| start + Duration::from_secs_f64(d));
    let mut sent: u64 = 0;
    let mut chunk: u64 = match o.rate {
        Some(r) => ((r as f64 * PACED_CHUNK_TIME) as u64).clamp(1, MAX_CHUNK),
        None => 1 << 16,
    };
    let mut interrupted = false;

    loop {
        if sys::stop_requested() {
            interrupted = true;
            break;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        let n = match o.count {
            Some(c) if c <= sent => break,
            Some(c) => chunk.min(c - sent),
            None => chunk,
        };
        let t0 = Instant::now();
        // n <= MAX_CHUNK < u32::MAX
        match prog_run::run_live(fd, ifindex, &template, n as u32, o.batch.min(n as u32)) {
            Ok(()) => sent += n,
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => {
                // Part of this call went out; how much is unknown, so it is
                // not counted.
                interrupted = true;
                break;
            }
            Err(e) => {
                let why = explain_run_error(&e, &o.iface);
                return Err(e).context(why);
            }
        }
        match o.rate {
            Some(r) => {
                // Pace on the total so far, so a slow call is made up for by
                // the next ones instead of lowering the average rate.
                let due = start + Duration::from_secs_f64(sent as f64 / r as f64);
                if !sys::sleep_until(due) {
                    interrupted = true;
                    break;
                }
            }
            None => {
                let dt = t0.elapsed().as_secs_f64().max(1e-6);
                chunk = ((n as f64 / dt * CHUNK_TIME) as u64).clamp(1024, MAX_CHUNK);
            }
        }
    }

    let secs = start.elapsed().as_secs_f64();
    let fps = if secs > 0.0 { sent as f64 / secs } else { 0.0 };
    // None when sysfs has no counter for the device (then nothing to compare).
    let device_tx = match (tx_before, sys::tx_packets(&o.iface)) {
        (Some(a), Some(b)) => Some(b.wrapping_sub(a)),
        _ => None,
    };
    // A 1% margin: the device counter also sees unrelated traffic (IPv6
    // neighbour discovery and such), and a signal can cut the last chunk.
    let refused = device_tx.is_some_and(|d| (d as f64) < sent as f64 * 0.99);
    if o.json {
        println!(
            "{{\"iface\":{},\"size\":{},\"frames\":{},\"secs\":{:.3},\"frames_per_sec\":{:.0},\"device_tx_frames\":{},\"interrupted\":{}}}",
            crate::json_str(&o.iface),
            o.size,
            sent,
            secs,
            fps,
            device_tx.map_or("null".to_string(), |d| d.to_string()),
            interrupted
        );
    } else {
        println!(
            "gen {}: {} frames of {} bytes ({} without FCS) in {:.3} s: {:.0} frames/s{}",
            o.iface,
            sent,
            o.size,
            o.size - frame::FCS_LEN,
            secs,
            fps,
            if interrupted {
                " (stopped by signal; the interrupted chunk is not counted)"
            } else {
                ""
            }
        );
        if let Some(d) = device_tx {
            println!("  {} counted {d} frames transmitted", o.iface);
        }
    }
    if refused {
        eprintln!(
            "warning: {} transmitted fewer frames than were offered, the rest were dropped. On a veth the PEER \
             must run NAPI to accept XDP frames: attach an XDP program to the peer or enable GRO on it \
             (`ethtool -K PEER gro on`).",
            o.iface
        );
    }
    Ok(())
}

/// The kernel-internal ENOTSUPP, which bpf(2) can leak to userspace.
const ENOTSUPP: i32 = 524;

fn explain_run_error(e: &std::io::Error, iface: &str) -> String {
    let hint = match e.raw_os_error() {
        Some(libc::EINVAL) => "the kernel refused live-frames mode: it needs Linux >= 5.18; check that the interface is up",
        Some(libc::EOPNOTSUPP) | Some(ENOTSUPP) => "the kernel does not support BPF_PROG_RUN for XDP live frames",
        Some(libc::EPERM) | Some(libc::EACCES) => "not permitted: run as root (CAP_BPF + CAP_NET_ADMIN + CAP_SYS_ADMIN)",
        Some(libc::ENXIO) | Some(libc::ENODEV) => "the interface disappeared",
        _ => "unexpected error from the kernel",
    };
    format!("BPF_PROG_RUN (XDP live frames) on {iface} failed: {hint}")
}
