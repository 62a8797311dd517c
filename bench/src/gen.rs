//! `xsw-bench gen`: the traffic generator, with two sending engines that
//! send the same frames (see frame.rs `Variants`) and report the same
//! fields: `kernel` (this file, the default) and `afxdp` (gen_afxdp.rs, an
//! AF_XDP socket: slower on a veth, but it can drive a real NIC).
//!
//! The kernel engine:
//!
//! A tiny XDP program returning XDP_TX is run with BPF_PROG_RUN in
//! live-frames mode against the chosen interface, so the kernel itself puts
//! frames on that device's transmit path (ndo_xdp_xmit): no socket, no skb,
//! no per-frame work in userspace. This is the fastest way to offer 64-byte
//! frames on a machine without kernel pktgen.
//!
//! Each BPF_PROG_RUN call spends tens of milliseconds asleep in set-up and
//! teardown (measured 12-40 ms on kernel 6.18), during which no frame would
//! leave. Two threads pinned to the same CPU take turns: while one sleeps in
//! teardown the other runs, so the traffic has no holes. Exact counting, the
//! frame limit, stopping and pacing are done per frame by the XDP program
//! (bench/ebpf/tx.c), so they do not depend on where a call ends.
//!
//! Veth caveat (checked on kernel 6.18): a veth's ndo_xdp_xmit only accepts
//! frames when its PEER runs NAPI, i.e. the peer has an XDP program attached
//! or GRO enabled (`ethtool -K PEER gro on`). Otherwise every frame is dropped
//! silently: no error reaches BPF_PROG_RUN, no drop counter moves (not even
//! tx_queue_0_xdp_xmit_errors in `ethtool -S`), only the interface's
//! tx_packets stays still. So the result compares the frames sent with the
//! device's tx_packets and warns when they disagree. The peer's receive work
//! runs in the generator's softirq, on its CPU, unless the peer has threaded
//! NAPI (`echo 1 > /sys/class/net/PEER/threaded`).

use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use aya::maps::{Array, MapData};
use aya::Pod;

use crate::frame::{Sizes, UdpFlow, Variants};
use crate::progs::{self, Global};
use crate::{gen_afxdp, prog_run, sys};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Engine {
    /// BPF_PROG_RUN live frames: XDP_TX from inside the kernel.
    Kernel,
    /// An AF_XDP socket (zero-copy where the driver has it, else copy mode).
    Afxdp,
}

impl Engine {
    fn name(self) -> &'static str {
        match self {
            Engine::Kernel => "kernel",
            Engine::Afxdp => "afxdp",
        }
    }
}

pub struct GenOpts {
    pub iface: String,
    pub engine: Engine,
    pub sizes: Sizes,
    pub count: Option<u64>,
    pub duration: Option<f64>,
    pub rate: Option<u64>,
    pub flow: UdpFlow,
    pub flows: u16,
    pub src_macs: u32,
    pub batch: u32,
    pub cpu: Option<usize>,
    pub stamp: bool,
    pub json: bool,
}

/// What an engine reports back.
pub struct Sent {
    /// Frames handed to the device (kernel: given XDP_TX; afxdp: completed).
    pub frames: u64,
    /// From the start to when the engine stopped sending.
    pub secs: f64,
    pub interrupted: bool,
    /// afxdp only: whether the socket ran in zero-copy mode.
    pub zero_copy: Option<bool>,
}

/// Mirrors `struct tx_state` in bench/ebpf/tx.c.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct TxState {
    sent: u64,
    next_ps: u64,
    next_flow: u32,
    next_mac: u32,
    next_imix: u32,
    pad: u32,
}

/// Mirrors `struct tx_ctl` in bench/ebpf/tx.c.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct TxCtl {
    start_ns: u64,
    stop: u32,
    pad: u32,
}

// SAFETY: both are #[repr(C)], built only from integers with the padding
// spelled out as fields, and any bit pattern is a valid value.
unsafe impl Pod for TxState {}
// SAFETY: as above.
unsafe impl Pod for TxCtl {}

/// Frames per call the workers start with; then sized to CHUNK_TIME.
const FIRST_CHUNK: u64 = 1 << 16;
const MAX_CHUNK: u64 = 1 << 24;
/// Wall time of one call's frame work. Long enough that set-up is a small
/// share even for a lone thread; stopping does not wait for it (the program
/// drops the rest of a call in microseconds once told to stop).
const CHUNK_TIME: f64 = 0.2;
/// How often the controlling thread checks the count, deadline and signals.
const POLL: Duration = Duration::from_millis(5);
/// Worker threads; two are enough to hide one's teardown behind the other.
const WORKERS: usize = 2;

pub fn run(o: GenOpts) -> Result<()> {
    let interval_ps = match o.rate {
        None => 0,
        Some(0) => bail!("--rate must be at least 1 frame/s (leave it out for full speed)"),
        Some(r) if r > 1_000_000_000 => bail!("--rate above 1e9 frames/s is not meaningful"),
        Some(r) => 1_000_000_000_000 / r,
    };
    if o.count == Some(0) {
        bail!("--count must be at least 1");
    }
    if let Some(d) = o.duration {
        if !(d > 0.0 && d.is_finite()) {
            bail!("--duration must be a positive number of seconds");
        }
    }
    let (variants, template) = Variants::new(&o.flow, o.sizes, o.flows, o.src_macs, o.stamp)?;
    let ifindex = sys::ifindex(&o.iface)?;
    sys::install_stop_handler()?;
    let tx_before = sys::tx_packets(&o.iface);
    let sent = match o.engine {
        Engine::Kernel => run_kernel(&o, ifindex, &variants, &template, interval_ps)?,
        Engine::Afxdp => gen_afxdp::run(&o, variants, &template, interval_ps)?,
    };
    // None when sysfs has no counter for the device (then nothing to compare).
    let device_tx = match (tx_before, sys::tx_packets(&o.iface)) {
        (Some(a), Some(b)) => Some(b.wrapping_sub(a)),
        _ => None,
    };
    report(&o, &sent, device_tx);
    Ok(())
}

fn report(o: &GenOpts, sent: &Sent, device_tx: Option<u64>) {
    let secs = sent.secs;
    let per_sec = |v: f64| if secs > 0.0 { v / secs } else { 0.0 };
    let fps = per_sec(sent.frames as f64);
    let wire_bytes = o.sizes.wire_bytes(sent.frames);
    let gbps = per_sec(wire_bytes as f64 * 8.0) / 1e9;
    // A 1% margin: the device counter also sees unrelated traffic (IPv6
    // neighbour discovery and such).
    let refused = device_tx.is_some_and(|d| (d as f64) < sent.frames as f64 * 0.99);

    if o.json {
        println!(
            "{{\"iface\":{},\"engine\":\"{}\",\"size\":{},\"mean_size\":{:.1},\"frames\":{},\"secs\":{:.3},\
             \"frames_per_sec\":{:.0},\"gbit_per_sec\":{:.3},\"wire_bytes\":{},\"device_tx_frames\":{},\
             \"zero_copy\":{},\"interrupted\":{}}}",
            crate::json_str(&o.iface),
            o.engine.name(),
            o.sizes.json(),
            o.sizes.mean(),
            sent.frames,
            secs,
            fps,
            gbps,
            wire_bytes,
            device_tx.map_or("null".to_string(), |d| d.to_string()),
            sent.zero_copy.map_or("null".to_string(), |z| z.to_string()),
            sent.interrupted
        );
    } else {
        println!(
            "gen {} ({} engine{}): {} frames of {} in {:.3} s: {:.0} frames/s, {:.3} Gbit/s (FCS included){}",
            o.iface,
            o.engine.name(),
            match sent.zero_copy {
                Some(true) => ", zero-copy",
                Some(false) => ", copy mode",
                None => "",
            },
            sent.frames,
            o.sizes,
            secs,
            fps,
            gbps,
            if sent.interrupted {
                " (stopped by signal)"
            } else {
                ""
            }
        );
        if let Some(d) = device_tx {
            println!("  {} counted {d} frames transmitted", o.iface);
        }
    }
    if refused {
        match o.engine {
            Engine::Kernel => eprintln!(
                "warning: {} transmitted fewer frames than were sent to it; the rest were dropped. On a veth the \
                 PEER must run NAPI to accept XDP frames: attach an XDP program to the peer or enable GRO on it \
                 (`ethtool -K PEER gro on`).",
                o.iface
            ),
            Engine::Afxdp => eprintln!(
                "warning: {} transmitted fewer frames than the socket handed to it; the device dropped the rest \
                 (on a veth: the peer's receive queue was full; see `ip -s link show {}`).",
                o.iface, o.iface
            ),
        }
    }
}

fn run_kernel(
    o: &GenOpts,
    ifindex: u32,
    variants: &Variants,
    template: &[u8],
    interval_ps: u64,
) -> Result<Sent> {
    if o.batch == 0 || o.batch > prog_run::MAX_BATCH {
        bail!(
            "--batch must be 1..={} (the kernel's limit for live frames)",
            prog_run::MAX_BATCH
        );
    }
    // Both workers on one CPU: required by tx.c's non-atomic state, and it
    // keeps the generator to one core, which is what the placement assumes.
    let cpu = match o.cpu {
        Some(c) => c,
        None => sys::current_cpu()?,
    };
    let mut globals = variants.tx_globals();
    globals.extend([
        ("LIMIT", Global::U64(o.count.unwrap_or(0))),
        ("INTERVAL_PS", Global::U64(interval_ps)),
        ("STAMP", Global::U32(u32::from(o.stamp))),
    ]);
    let mut ebpf = progs::load(progs::TX_OBJ, "generator", &globals)?;
    let state: Array<MapData, TxState> = Array::try_from(
        ebpf.take_map("TX_STATE")
            .context("internal error: TX_STATE map missing from the generator object")?,
    )
    .context("internal error: TX_STATE is not an array")?;
    let mut ctl: Array<MapData, TxCtl> = Array::try_from(
        ebpf.take_map("TX_CTL")
            .context("internal error: TX_CTL map missing from the generator object")?,
    )
    .context("internal error: TX_CTL is not an array")?;
    let prog = progs::xdp_program(&mut ebpf, "xsw_bench_tx")?;
    let fd = prog
        .fd()
        .context("internal error: generator program has no fd after load")?
        .as_fd();

    let start_ns = sys::monotonic_ns()?;
    ctl.set(
        0,
        TxCtl {
            start_ns,
            stop: 0,
            pad: 0,
        },
        0,
    )
    .context("starting the generator (TX_CTL)")?;
    let start = Instant::now();
    let deadline = o.duration.map(|d| start + Duration::from_secs_f64(d));
    let done = AtomicBool::new(false);

    let sent_now = || -> Result<u64> {
        Ok(state
            .get(&0, 0)
            .context("reading the generator's count")?
            .sent)
    };

    let (end, interrupted, worker_result) =
        std::thread::scope(|s| -> Result<(Instant, bool, Result<()>)> {
            let workers: Vec<_> = (0..WORKERS)
                .map(|_| s.spawn(|| worker(fd, ifindex, template, o.batch, cpu, &done)))
                .collect();
            let mut interrupted = false;
            let mut poll_err = Ok(());
            loop {
                if workers.iter().any(|w| w.is_finished()) {
                    break; // a worker failed; its error is reported below
                }
                if sys::stop_requested() {
                    interrupted = true;
                    break;
                }
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
                if let Some(c) = o.count {
                    match sent_now() {
                        Ok(n) if n >= c => break,
                        Ok(_) => {}
                        Err(e) => {
                            poll_err = Err(e);
                            break;
                        }
                    }
                }
                std::thread::sleep(POLL);
            }
            // Frames after this point are dropped by the program, so the rate
            // below is over the real sending time.
            let stopped = ctl.set(
                0,
                TxCtl {
                    start_ns,
                    stop: 1,
                    pad: 0,
                },
                0,
            );
            let end = Instant::now();
            done.store(true, Ordering::Relaxed);
            let mut result = poll_err;
            for w in workers {
                let r = w
                    .join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a generator thread panicked")));
                if result.is_ok() {
                    result = r;
                }
            }
            // Only after the workers are gone: until then a failed stop write
            // would leave them running.
            stopped.context("stopping the generator (TX_CTL)")?;
            Ok((end, interrupted, result))
        })?;
    worker_result?;
    Ok(Sent {
        frames: sent_now()?,
        secs: (end - start).as_secs_f64(),
        interrupted,
        zero_copy: None,
    })
}

fn worker(
    fd: BorrowedFd<'_>,
    ifindex: u32,
    frame: &[u8],
    batch: u32,
    cpu: usize,
    done: &AtomicBool,
) -> Result<()> {
    sys::pin_to_cpu(cpu)?;
    let mut chunk = FIRST_CHUNK;
    while !done.load(Ordering::Relaxed) {
        let t0 = Instant::now();
        // chunk <= MAX_CHUNK < u32::MAX
        match prog_run::run_live(fd, ifindex, frame, chunk as u32, batch) {
            Ok(()) => {}
            // A signal meant for the process; the controlling thread decides.
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
            Err(e) => {
                let why = explain_run_error(&e, ifindex);
                return Err(e).context(why);
            }
        }
        let dt = t0.elapsed().as_secs_f64().max(1e-6);
        chunk = ((chunk as f64 / dt * CHUNK_TIME) as u64).clamp(FIRST_CHUNK, MAX_CHUNK);
    }
    Ok(())
}

/// The kernel-internal ENOTSUPP, which bpf(2) can leak to userspace.
const ENOTSUPP: i32 = 524;

fn explain_run_error(e: &std::io::Error, ifindex: u32) -> String {
    let hint = match e.raw_os_error() {
        Some(libc::EINVAL) => "the kernel refused live-frames mode: it needs Linux >= 5.18 and the interface must still exist",
        Some(libc::EOPNOTSUPP) | Some(ENOTSUPP) => "the kernel does not support BPF_PROG_RUN for XDP live frames",
        Some(libc::EPERM) | Some(libc::EACCES) => "not permitted: run as root (CAP_BPF + CAP_NET_ADMIN + CAP_SYS_ADMIN)",
        Some(libc::ENXIO) | Some(libc::ENODEV) => "the interface disappeared",
        _ => "unexpected error from the kernel",
    };
    format!("BPF_PROG_RUN (XDP live frames) on ifindex {ifindex} failed: {hint}")
}
