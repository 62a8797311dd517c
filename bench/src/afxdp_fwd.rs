//! `xsw-bench afxdp-fwd`: a bare AF_XDP forwarder between two interfaces,
//! the baseline for xsw "with no switching logic". One thread, one UMEM
//! shared by one socket per interface (queue 0), each interface with its own
//! tiny XDP program steering into its socket (bench/ebpf/xsk_redirect.c).
//! Every frame received on A goes unchanged onto B's TX ring and vice versa;
//! completions of both ports go back to one free pool (a frame taken from
//! A's fill ring comes back on B's completion ring, so per-port pools would
//! starve the receiving port), from which both fill rings are refilled.
//! It busy-polls: never sleeps, but makes one non-blocking poll() per turn
//! that finds no frame (see `forward` for why); `--adaptive` sleeps in
//! poll() after 200 such turns, as xsw's default mode does.
//!
//! What the thread costs is reported as its own user and system CPU time
//! (getrusage RUSAGE_THREAD): user time is the forwarder's code, system time
//! the kernel's send path it calls into (in copy mode the copy, the skb and
//! the egress veth's transmit, and on a veth the receiving peer's work).

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use xsk_rs::FrameDesc;

use crate::afxdp::{self, ThreadCpu, UmemSettings};
use crate::sys;
use xsw::port::afxdp::{KernelSocketStats, XskSocket};

pub struct AfxdpFwdOpts {
    pub a: String,
    pub b: String,
    pub cpu: Option<usize>,
    pub duration: Option<f64>,
    pub batch: usize,
    pub adaptive: bool,
    pub json: bool,
}

/// Adaptive mode, as xsw's default: turns without traffic before sleeping in
/// poll(), and the longest sleep (a signal or the deadline cut it short).
const POLL_BUDGET: u32 = 200;
const POLL_TIMEOUT: Duration = Duration::from_millis(200);

pub fn run(o: AfxdpFwdOpts) -> Result<()> {
    if o.a == o.b {
        bail!("--a and --b must be two different interfaces");
    }
    if let Some(d) = o.duration {
        if !(d > 0.0 && d.is_finite()) {
            bail!("--duration must be a positive number of seconds");
        }
    }
    let settings = UmemSettings::default();
    if o.batch == 0 || o.batch > settings.rx_ring as usize {
        bail!(
            "--batch must be 1..={} (the RX ring's size)",
            settings.rx_ring
        );
    }
    sys::ifindex(&o.a)?;
    sys::ifindex(&o.b)?;
    // Pinned before the UMEM exists, so its pages are touched from this CPU.
    if let Some(c) = o.cpu {
        sys::pin_to_cpu(c)?;
    }
    let (umem, frames) = afxdp::create_umem(&settings)?;
    let mut ports = [
        afxdp::open_socket(&umem, &o.a, 0, &settings)?,
        afxdp::open_socket(&umem, &o.b, 0, &settings)?,
    ];
    let mut pool = frames;
    // Both fill rings stocked before any frame is steered to them.
    for p in ports.iter_mut() {
        refill(p, &mut pool, settings.fill_ring as usize);
    }
    let _steering = [
        afxdp::steer(&o.a, 0, &ports[0])?,
        afxdp::steer(&o.b, 0, &ports[1])?,
    ];
    sys::install_stop_handler()?;
    let mode = if ports[0].zero_copy && ports[1].zero_copy {
        "zero-copy"
    } else {
        "copy mode"
    };
    eprintln!(
        "afxdp-fwd: forwarding {} <-> {} ({mode}, {}) {}",
        o.a,
        o.b,
        if o.adaptive { "adaptive" } else { "busy-poll" },
        match o.duration {
            Some(d) => format!("for {d} s (Ctrl-C stops)"),
            None => "until Ctrl-C or SIGTERM".to_string(),
        }
    );

    let kernel_before = [ports[0].kernel_stats(), ports[1].kernel_stats()];
    let start = Instant::now();
    let deadline = o.duration.map(|d| start + Duration::from_secs_f64(d));
    let cpu_before = ThreadCpu::now()?;
    let counts = forward(&mut ports, &mut pool, &o, &settings, deadline);
    let cpu_after = ThreadCpu::now()?;
    let secs = start.elapsed().as_secs_f64();
    let kernel: Vec<Option<KernelSocketStats>> = ports
        .iter()
        .zip(kernel_before)
        .map(|(p, before)| Some(p.kernel_stats()?.since(&before?)))
        .collect();

    let total = counts.forwarded[0] + counts.forwarded[1];
    let fps = if secs > 0.0 { total as f64 / secs } else { 0.0 };
    let user = cpu_after.user - cpu_before.user;
    let system = cpu_after.system - cpu_before.system;
    let per_frame = |s: f64| {
        if total > 0 {
            s * 1e9 / total as f64
        } else {
            0.0
        }
    };
    eprintln!(
        "afxdp-fwd: {} -> {}: {} frames, {} -> {}: {} frames in {:.3} s ({:.0} frames/s); \
         dropped for lack of TX room: {} / {}{}",
        o.a,
        o.b,
        counts.forwarded[0],
        o.b,
        o.a,
        counts.forwarded[1],
        secs,
        fps,
        counts.tx_full[0],
        counts.tx_full[1],
        if counts.interrupted {
            " (stopped by signal)"
        } else {
            ""
        }
    );
    eprintln!(
        "  thread CPU: user {user:.3} s, system {system:.3} s = {:.1} + {:.1} ns per frame forwarded; \
         {} turns, {:.1}% without frames; turns with frames took {:.1} ns per frame",
        per_frame(user),
        per_frame(system),
        counts.turns,
        if counts.turns > 0 {
            counts.empty_turns as f64 * 100.0 / counts.turns as f64
        } else {
            0.0
        },
        per_frame(counts.busy.as_secs_f64())
    );
    for (name, k) in [&o.a, &o.b].iter().zip(&kernel) {
        if let Some(k) = k {
            if k.rx_dropped + k.rx_ring_full + k.rx_fill_ring_empty > 0 {
                eprintln!(
                    "  {name}: the kernel dropped {} frames before the forwarder saw them \
                     (rx ring full {}, fill ring empty {} times)",
                    k.rx_dropped, k.rx_ring_full, k.rx_fill_ring_empty
                );
            }
        }
    }
    if counts.kick_errors > 0 {
        eprintln!(
            "warning: {} TX wakeups failed (last: {}); is an interface down?",
            counts.kick_errors,
            counts.last_kick_error.as_deref().unwrap_or("?")
        );
    }
    if o.json {
        let k = |k: &Option<KernelSocketStats>| {
            k.map_or("null".to_string(), |k| afxdp::kernel_stats_json(&k))
        };
        println!(
            "{{\"a\":{},\"b\":{},\"secs\":{:.3},\"a_to_b_frames\":{},\"b_to_a_frames\":{},\"frames\":{},\
             \"frames_per_sec\":{:.0},\"a_to_b_tx_full_drops\":{},\"b_to_a_tx_full_drops\":{},\
             \"user_secs\":{:.4},\"system_secs\":{:.4},\"user_ns_per_frame\":{:.2},\"system_ns_per_frame\":{:.2},\
             \"turns\":{},\"empty_turns\":{},\"busy_secs\":{:.4},\"busy_ns_per_frame\":{:.2},\"zero_copy\":{},\"adaptive\":{},\"batch\":{},\"kernel_a\":{},\"kernel_b\":{},\"interrupted\":{}}}",
            crate::json_str(&o.a),
            crate::json_str(&o.b),
            secs,
            counts.forwarded[0],
            counts.forwarded[1],
            total,
            fps,
            counts.tx_full[0],
            counts.tx_full[1],
            user,
            system,
            per_frame(user),
            per_frame(system),
            counts.turns,
            counts.empty_turns,
            counts.busy.as_secs_f64(),
            per_frame(counts.busy.as_secs_f64()),
            ports[0].zero_copy && ports[1].zero_copy,
            o.adaptive,
            o.batch,
            k(&kernel[0]),
            k(&kernel[1]),
            counts.interrupted
        );
    }
    Ok(())
}

#[derive(Default)]
struct Counts {
    /// [A -> B, B -> A]: frames put on the other port's TX ring.
    forwarded: [u64; 2],
    /// Frames dropped because the other port's TX ring was full.
    tx_full: [u64; 2],
    /// Turns of the loop, and those that found no frame on either port.
    turns: u64,
    empty_turns: u64,
    /// Wall time of the turns that moved frames: the forwarder's time per
    /// frame when it is not waiting for traffic (busy polling spins in user
    /// time, so user time alone overstates the cost below saturation).
    busy: Duration,
    kick_errors: u64,
    last_kick_error: Option<String>,
    interrupted: bool,
}

fn forward(
    ports: &mut [XskSocket; 2],
    pool: &mut Vec<FrameDesc>,
    o: &AfxdpFwdOpts,
    settings: &UmemSettings,
    deadline: Option<Instant>,
) -> Counts {
    let mut c = Counts::default();
    let mut batch = vec![FrameDesc::default(); o.batch];
    let mut done = vec![FrameDesc::default(); settings.comp_ring as usize];
    let fill_target = settings.fill_ring as usize;
    let mut idle_turns = 0u32;
    loop {
        if sys::stop_requested() {
            c.interrupted = true;
            break;
        }
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            break;
        }
        let mut work = 0;
        for dir in 0..2 {
            let (first, second) = ports.split_at_mut(1);
            let (src, dst) = if dir == 0 {
                (&mut first[0], &mut second[0])
            } else {
                (&mut second[0], &mut first[0])
            };
            // SAFETY: `batch` receives descriptors of the one UMEM all
            // sockets share; the frames are ours until put on a ring again.
            let n = unsafe { src.rx.consume(&mut batch) };
            if n == 0 {
                continue;
            }
            work += n;
            let room = dst.tx.nb_free(n as u32) as usize;
            let sending = n.min(room);
            let produced = if sending > 0 {
                // SAFETY: frames of the shared UMEM just taken off an RX
                // ring, held by no ring; `nb_free` said they all fit.
                unsafe { dst.tx.produce(&batch[..sending]) }
            } else {
                0
            };
            c.forwarded[dir] += produced as u64;
            c.tx_full[dir] += (n - produced) as u64;
            pool.extend_from_slice(&batch[produced..n]);
            if produced > 0 && (dst.tx.needs_wakeup() || !dst.zero_copy) {
                if let Err(e) = xsw::port::afxdp::kick_tx(dst.fd(), produced) {
                    c.kick_errors += 1;
                    c.last_kick_error = Some(e.to_string());
                }
            }
        }
        for p in ports.iter_mut() {
            // SAFETY: `done` receives descriptors of the shared UMEM whose
            // frames the kernel has finished sending.
            let n = unsafe { p.comp.consume(&mut done) };
            pool.extend_from_slice(&done[..n]);
        }
        for p in ports.iter_mut() {
            refill(p, pool, fill_target);
        }
        c.turns += 1;
        if work > 0 {
            idle_turns = 0;
        } else if o.adaptive {
            idle_turns += 1;
            if idle_turns >= POLL_BUDGET {
                idle_turns = 0;
                let timeout = deadline.map_or(POLL_TIMEOUT, |d| {
                    d.saturating_duration_since(now).min(POLL_TIMEOUT)
                });
                poll_sockets(ports, timeout);
            }
        } else {
            // Not a pure userspace spin. On the development VM (kernel 6.18,
            // paravirtualised) the forwarder has a low mode: it sits on an
            // empty RX ring for a third of the time while the kernel drops
            // frames for a full one (rx_ring_full), 0.2-0.5 Mpps instead of
            // 0.9-1.5. A loop that never entered the kernel fell into it in
            // most runs; one syscall per empty turn (a zero-timeout poll;
            // getpid did as well) made it rarer, not gone. A turn with
            // frames costs nothing more.
            poll_sockets(ports, Duration::ZERO);
        }
        if work == 0 {
            c.empty_turns += 1;
        } else {
            c.busy += now.elapsed();
        }
    }
    c
}

/// Moves free frames onto `p`'s fill ring, up to what the ring holds.
fn refill(p: &mut XskSocket, pool: &mut Vec<FrameDesc>, target: usize) {
    if pool.is_empty() {
        return;
    }
    let wanted = pool.len().min(target);
    let room = (p.fill.nb_free(wanted as u32) as usize).min(wanted);
    if room == 0 {
        return;
    }
    let from = pool.len() - room;
    // SAFETY: free frames of the shared UMEM, held by no ring; `nb_free` said
    // the ring has room for all, so the all-or-nothing `produce` takes them.
    let produced = unsafe { p.fill.produce(&pool[from..]) };
    if produced == room {
        pool.truncate(from);
    }
    if p.fill.needs_wakeup() {
        afxdp::wake_fill(p.fd());
    }
}

/// Waits in poll() until a socket has frames or `timeout` passes (zero: only
/// checks).
fn poll_sockets(ports: &[XskSocket; 2], timeout: Duration) {
    let mut fds = [
        libc::pollfd {
            fd: ports[0].fd(),
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: ports[1].fd(),
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    // SAFETY: `fds` is a live array of two pollfd that poll only writes the
    // revents of; a signal ends the wait early (EINTR), which is wanted.
    unsafe { libc::poll(fds.as_mut_ptr(), 2, timeout.as_millis() as libc::c_int) };
}
