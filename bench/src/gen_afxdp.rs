//! `xsw-bench gen --engine afxdp`: the same frames as the kernel engine, sent
//! from an AF_XDP socket (zero-copy where the driver has it, copy mode
//! otherwise; veths have only copy mode). This is the engine for driving a
//! remote host through a real NIC: the kernel engine needs a driver that
//! implements XDP transmit (ndo_xdp_xmit), while AF_XDP sends on any device
//! in copy mode, and without copying on drivers with zero-copy support.
//!
//! One thread: every UMEM frame starts as the template; per frame only the
//! fields that vary are rewritten (`Variants::apply`, the rules tx.c applies),
//! plus the stamp; descriptors go onto the TX ring in batches and each batch
//! is kicked with sendto (in copy mode one call sends at most 32 frames,
//! see afxdp::kick_tx). Completed frames go back to a free pool.
//!
//! Counting: `frames` are frames the kernel completed, i.e. took off the TX
//! ring and handed to the device. With --stamp, the sequence number is the
//! count of frames built before this one, so it has no gaps; frames still
//! on the ring when the run stops (at most one batch in copy mode) are not
//! counted and carry the highest numbers, so a sink sees no loss from them.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use xsk_rs::FrameDesc;

use crate::afxdp::{self, UmemSettings};
use crate::frame::{Variants, PAYLOAD_OFF};
use crate::gen::{GenOpts, Sent};
use crate::sys;

/// As in tx.c: after a stall, at most this many frames go out back to back
/// to catch up; older debt is forgiven.
const MAX_BURST: u64 = 64;
/// How long the end of a run waits for the last frames to complete.
const DRAIN: Duration = Duration::from_secs(1);

pub fn run(o: &GenOpts, mut variants: Variants, template: &[u8], interval_ps: u64) -> Result<Sent> {
    let settings = UmemSettings::default();
    if o.batch == 0 || o.batch > settings.tx_ring {
        bail!(
            "--batch must be 1..={} with --engine afxdp (the TX ring's size)",
            settings.tx_ring
        );
    }
    // Pinned before the UMEM exists, so its pages are touched from this CPU.
    if let Some(c) = o.cpu {
        sys::pin_to_cpu(c)?;
    }
    let (umem, mut pool) = afxdp::create_umem(&settings)?;
    let mut sock = afxdp::open_socket(&umem, &o.iface, 0, &settings)?;
    for desc in pool.iter_mut() {
        // SAFETY: a frame of `umem` that no ring holds yet (the socket has
        // been given none), so nothing else reads or writes it.
        let written = unsafe {
            let mut data = umem.data_mut(desc);
            let mut cursor = data.cursor();
            cursor.set_pos(0);
            std::io::Write::write_all(&mut cursor, template).is_ok()
        };
        if !written {
            bail!(
                "internal error: a {}-byte frame does not fit a {}-byte UMEM frame",
                template.len(),
                settings.frame_size
            );
        }
    }
    let fd = sock.fd();
    let batch = o.batch as usize;
    let limit = o.count.unwrap_or(u64::MAX);
    let mut done = vec![FrameDesc::default(); settings.comp_ring as usize];
    let mut staged: Vec<FrameDesc> = Vec::with_capacity(batch);
    let mut built = 0u64; // frames put on the TX ring, = the next sequence number
    let mut completed = 0u64;
    let mut next_ps = 0u64;
    let mut interrupted = false;
    let kick = |queued: usize| -> Result<()> {
        xsw::port::afxdp::kick_tx(fd, queued).with_context(|| {
            format!(
                "sending on {} (sendto on the AF_XDP socket failed): is the interface up?",
                o.iface
            )
        })
    };

    let start_ns = sys::monotonic_ns()?;
    let start = Instant::now();
    let deadline = o.duration.map(|d| start + Duration::from_secs_f64(d));
    loop {
        if sys::stop_requested() {
            interrupted = true;
            break;
        }
        if built >= limit || deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        // SAFETY: `done` receives descriptors of `umem` whose frames the
        // kernel has finished sending; they are ours again.
        let n = unsafe { sock.comp.consume(&mut done) };
        pool.extend_from_slice(&done[..n]);
        completed += n as u64;

        let mut want = batch.min(pool.len()).min((limit - built) as usize);
        if want > 0 {
            want = want.min(sock.tx.nb_free(want as u32) as usize);
        }
        if interval_ps > 0 && want > 0 {
            // Per frame as in tx.c, with one clock read per batch.
            let now_ps = sys::monotonic_ns()?.saturating_sub(start_ns) * 1000;
            let mut due = 0;
            while due < want && now_ps >= next_ps {
                if now_ps - next_ps > MAX_BURST * interval_ps {
                    next_ps = now_ps - MAX_BURST * interval_ps;
                }
                next_ps += interval_ps;
                due += 1;
            }
            want = due;
        }
        if want == 0 {
            if built > completed {
                // Frames the last kick left on the ring (the socket's send
                // budget ran out) go now; an empty ring costs one syscall.
                kick(0)?;
            }
            std::hint::spin_loop();
            continue;
        }
        for i in 0..want {
            let Some(mut desc) = pool.pop() else { break };
            // SAFETY: the frame came from the free pool: no ring holds it
            // and nothing else touches it until it is produced below.
            unsafe {
                let mut data = umem.data_mut(&mut desc);
                data.cursor().set_pos(template.len());
                let frame = data.contents_mut();
                let len = variants.apply(frame);
                if o.stamp {
                    let seq = built + i as u64;
                    frame[PAYLOAD_OFF..PAYLOAD_OFF + 8].copy_from_slice(&seq.to_be_bytes());
                    let now = sys::monotonic_ns()?;
                    frame[PAYLOAD_OFF + 8..PAYLOAD_OFF + 16].copy_from_slice(&now.to_be_bytes());
                }
                data.cursor().set_pos(len);
            }
            staged.push(desc);
        }
        // SAFETY: free-pool frames of `umem`, held by no ring; `nb_free` said
        // all fit, so the all-or-nothing produce takes every one of them.
        let produced = unsafe { sock.tx.produce(&staged) };
        if produced != staged.len() {
            bail!("internal error: the TX ring refused frames it said it had room for");
        }
        staged.clear();
        built += produced as u64;
        if sock.tx.needs_wakeup() || !sock.zero_copy {
            kick(produced)?;
        }
    }
    let end = Instant::now();
    // The frames still in flight complete within microseconds; those the
    // device never takes stay on the ring and are not counted.
    let drain_until = end + DRAIN;
    while completed < built && Instant::now() < drain_until {
        kick((built - completed) as usize)?;
        // SAFETY: as above.
        let n = unsafe { sock.comp.consume(&mut done) };
        completed += n as u64;
        if n == 0 {
            std::thread::sleep(Duration::from_micros(50));
        }
    }
    if completed < built {
        eprintln!(
            "warning: {} frames were still on the TX ring of {} when the run ended; they are not counted",
            built - completed,
            o.iface
        );
    }
    if let Some(k) = sock.kernel_stats() {
        if k.tx_invalid_descs > 0 {
            eprintln!(
                "warning: the kernel refused {} TX descriptors as invalid",
                k.tx_invalid_descs
            );
        }
    }
    Ok(Sent {
        frames: completed,
        secs: (end - start).as_secs_f64(),
        interrupted,
        zero_copy: Some(sock.zero_copy),
    })
}
