//! `xsw-bench sink --measure`: loss, reordering, duplicates and one-way
//! latency of the stamped frames `xsw-bench gen --stamp` sends.
//!
//! The XDP program (bench/ebpf/sink_measure.c) reads each frame's sequence
//! number and send time, adds its own receive time (both CLOCK_MONOTONIC, so
//! generator and sink must run on the same host) and passes the three numbers
//! through a BPF ring buffer; this side drains the ring and keeps the
//! statistics ([`Stats`]) in an HDR histogram. Frames the ring had no room for
//! are counted in XDP (`ring_overflow`): that is the sink's own ceiling, and
//! they also show up as loss, so a run with overflow measured the sink.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use aya::maps::{MapData, PerCpuArray, RingBuf};
use aya::Pod;
use hdrhistogram::Histogram;

use crate::progs::{self, Global, XdpMode};
use crate::sys;

pub struct MeasureOpts {
    pub iface: String,
    pub duration: f64,
    pub warmup: f64,
    pub xdp_mode: XdpMode,
    pub dst_port: u16,
    pub json: bool,
}

/// Mirrors `struct measure_counters` in bench/ebpf/sink_measure.c.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct MeasureCounters {
    frames: u64,
    overflow: u64,
    other: u64,
}

// SAFETY: #[repr(C)], only u64s (no padding, no pointers); every bit pattern
// is a valid value.
unsafe impl Pod for MeasureCounters {}

/// One record of the ring: `struct sample` in sink_measure.c.
const SAMPLE_LEN: usize = 24;

/// How far back (in sequence numbers) duplicates are told apart from late
/// frames. A frame older than this behind the newest one is counted as
/// reordered (and `late`), whether or not it was seen before.
const WINDOW: u64 = 1 << 20;

/// Loss, order and latency of the frames received in the measured window.
pub struct Stats {
    pub hist: Histogram<u64>,
    pub received: u64,
    pub first_seq: Option<u64>,
    pub max_seq: u64,
    pub min_seq: u64,
    pub reordered: u64,
    pub duplicates: u64,
    /// Reordered frames further than WINDOW behind: not checked for duplicates.
    pub late: u64,
    /// Receive time before send time: cannot happen on one host's clock.
    pub clock_errors: u64,
    seen: Vec<u64>,
}

impl Stats {
    pub fn new() -> Result<Self> {
        // 1 ns .. 1 hour, 3 significant digits (0.1% resolution).
        let hist = Histogram::new_with_bounds(1, 3_600_000_000_000, 3)
            .context("internal error: creating the latency histogram")?;
        Ok(Stats {
            hist,
            received: 0,
            first_seq: None,
            max_seq: 0,
            min_seq: 0,
            reordered: 0,
            duplicates: 0,
            late: 0,
            clock_errors: 0,
            seen: vec![0; (WINDOW / 64) as usize],
        })
    }

    fn bit(&mut self, seq: u64) -> (usize, u64) {
        let i = seq % WINDOW;
        ((i / 64) as usize, 1u64 << (i % 64))
    }

    pub fn record(&mut self, seq: u64, sent_ns: u64, recv_ns: u64) {
        self.received += 1;
        match recv_ns.checked_sub(sent_ns) {
            Some(lat) => self.hist.saturating_record(lat.max(1)),
            None => self.clock_errors += 1,
        }
        if self.first_seq.is_none() {
            self.first_seq = Some(seq);
            self.max_seq = seq;
            self.min_seq = seq;
            let (w, m) = self.bit(seq);
            self.seen[w] |= m;
            return;
        }
        if seq > self.max_seq {
            // Forget the slots the window slides past.
            let gap = seq - self.max_seq;
            if gap >= WINDOW {
                self.seen.fill(0);
            } else {
                for s in self.max_seq + 1..seq {
                    let (w, m) = self.bit(s);
                    self.seen[w] &= !m;
                }
            }
            let (w, m) = self.bit(seq);
            self.seen[w] |= m;
            self.max_seq = seq;
            return;
        }
        self.min_seq = self.min_seq.min(seq);
        if self.max_seq - seq >= WINDOW {
            self.reordered += 1;
            self.late += 1;
            return;
        }
        let (w, m) = self.bit(seq);
        if self.seen[w] & m != 0 {
            self.duplicates += 1;
        } else {
            self.seen[w] |= m;
            self.reordered += 1;
        }
    }

    /// Sequence numbers the received range spans.
    pub fn expected(&self) -> u64 {
        match self.first_seq {
            Some(_) => self.max_seq - self.min_seq + 1,
            None => 0,
        }
    }

    /// Frames in the received range that never arrived (duplicates count once).
    pub fn lost(&self) -> u64 {
        self.expected()
            .saturating_sub(self.received - self.duplicates)
    }
}

fn read_counters(map: &PerCpuArray<MapData, MeasureCounters>) -> Result<MeasureCounters> {
    let per_cpu = map
        .get(&0, 0)
        .context("reading the measuring sink's per-CPU counters")?;
    Ok(per_cpu
        .iter()
        .fold(MeasureCounters::default(), |a, c| MeasureCounters {
            frames: a.frames + c.frames,
            overflow: a.overflow + c.overflow,
            other: a.other + c.other,
        }))
}

fn parse(item: &[u8]) -> Option<(u64, u64, u64)> {
    if item.len() < SAMPLE_LEN {
        return None;
    }
    let u = |o: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&item[o..o + 8]);
        u64::from_ne_bytes(b)
    };
    Some((u(0), u(8), u(16)))
}

pub fn run(o: MeasureOpts) -> Result<()> {
    if !(o.duration.is_finite() && o.warmup.is_finite() && o.warmup >= 0.0 && o.duration > o.warmup)
    {
        bail!(
            "--duration ({}) must be longer than --warmup ({}): the summary covers the time after the warm-up",
            o.duration,
            o.warmup
        );
    }
    sys::ifindex(&o.iface)?;
    let mut ebpf = progs::load(
        progs::SINK_MEASURE_OBJ,
        "measuring sink",
        &[("DST_PORT", Global::U16(o.dst_port))],
    )?;
    let prog = progs::xdp_program(&mut ebpf, "xsw_bench_sink_measure")?;
    progs::attach(prog, &o.iface, o.xdp_mode)?;
    let mut ring = RingBuf::try_from(
        ebpf.take_map("SAMPLES")
            .context("internal error: SAMPLES map missing from the measuring sink")?,
    )
    .context("internal error: SAMPLES is not a ring buffer")?;
    let counters: PerCpuArray<MapData, MeasureCounters> = PerCpuArray::try_from(
        ebpf.take_map("MEASURE_COUNTERS")
            .context("internal error: MEASURE_COUNTERS map missing from the measuring sink")?,
    )
    .context("internal error: MEASURE_COUNTERS is not a per-CPU array")?;

    sys::install_stop_handler()?;
    eprintln!(
        "sink {} (measure): for {} s (first {} s warm-up, not in the summary); Ctrl-C stops early",
        o.iface, o.duration, o.warmup
    );
    let start = Instant::now();
    let start_ns = sys::monotonic_ns()?;
    let warm_end_ns = start_ns + (o.warmup * 1e9) as u64;
    let end = start + Duration::from_secs_f64(o.duration);
    let before = read_counters(&counters)?;
    let mut stats = Stats::new()?;
    let mut first_recv: Option<u64> = None;
    let mut last_recv = 0u64;
    let mut tick = 1u64;
    let mut in_second = 0u64;
    let mut bad_records = 0u64;
    let mut stopped_early = false;

    loop {
        let mut drained = 0;
        while let Some(item) = ring.next() {
            drained += 1;
            let Some((seq, sent, recv)) = parse(&item) else {
                bad_records += 1;
                continue;
            };
            in_second += 1;
            if recv >= warm_end_ns {
                first_recv.get_or_insert(recv);
                last_recv = last_recv.max(recv);
                stats.record(seq, sent, recv);
            }
        }
        let now = Instant::now();
        if now >= start + Duration::from_secs(tick) || now >= end {
            let p99 = stats.hist.value_at_quantile(0.99);
            eprintln!(
                "[{:6.1}s] {:>12} frames/s  p99 so far {:>10.1} us  lost so far {}{}",
                (now - start).as_secs_f64(),
                in_second,
                p99 as f64 / 1e3,
                stats.lost(),
                if now < start + Duration::from_secs_f64(o.warmup) {
                    "  (warm-up)"
                } else {
                    ""
                }
            );
            in_second = 0;
            tick += 1;
        }
        if now >= end {
            break;
        }
        if sys::stop_requested() {
            stopped_early = true;
            break;
        }
        if drained == 0 {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    // What is still in the ring arrived before the end.
    while let Some(item) = ring.next() {
        if let Some((seq, sent, recv)) = parse(&item) {
            if recv >= warm_end_ns {
                first_recv.get_or_insert(recv);
                last_recv = last_recv.max(recv);
                stats.record(seq, sent, recv);
            }
        }
    }
    let after = read_counters(&counters)?;
    let overflow = after.overflow - before.overflow;
    let other = after.other - before.other;
    if bad_records > 0 {
        eprintln!("warning: {bad_records} ring records were too short and ignored");
    }

    // The rate over the time the frames spanned after warm-up.
    let secs = match first_recv {
        Some(f) if last_recv > f => (last_recv - f) as f64 / 1e9,
        _ => 0.0,
    };
    let fps = if secs > 0.0 {
        stats.received as f64 / secs
    } else {
        0.0
    };
    let expected = stats.expected();
    let lost = stats.lost();
    let loss_pct = if expected > 0 {
        lost as f64 * 100.0 / expected as f64
    } else {
        0.0
    };
    let h = &stats.hist;
    let empty = h.is_empty();
    let q = |p: f64| if empty { 0 } else { h.value_at_quantile(p) };
    let lat = [
        ("min", if empty { 0 } else { h.min() }),
        ("p50", q(0.50)),
        ("p90", q(0.90)),
        ("p99", q(0.99)),
        ("p99_9", q(0.999)),
        ("max", if empty { 0 } else { h.max() }),
    ];
    let mean = if empty { 0.0 } else { h.mean() };

    if o.json {
        let l: Vec<String> = lat.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
        println!(
            "{{\"iface\":{},\"mode\":\"measure\",\"frames\":{},\"window_secs\":{:.3},\"frames_per_sec\":{:.0},\
             \"seq_first\":{},\"seq_last\":{},\"expected\":{},\"lost\":{},\"loss_pct\":{:.4},\
             \"reordered\":{},\"late\":{},\"duplicates\":{},\"latency_ns\":{{{},\"mean\":{:.0}}},\
             \"ring_overflow\":{},\"other_frames\":{},\"clock_errors\":{},\"stopped_early\":{}}}",
            crate::json_str(&o.iface),
            stats.received,
            secs,
            fps,
            stats.first_seq.map_or("null".to_string(), |_| stats.min_seq.to_string()),
            stats.first_seq.map_or("null".to_string(), |_| stats.max_seq.to_string()),
            expected,
            lost,
            loss_pct,
            stats.reordered,
            stats.late,
            stats.duplicates,
            l.join(","),
            mean,
            overflow,
            other,
            stats.clock_errors,
            stopped_early
        );
    } else {
        println!(
            "sink {} (measure): {} stamped frames in {:.3} s after warm-up: {:.0} frames/s{}",
            o.iface,
            stats.received,
            secs,
            fps,
            if stopped_early {
                " (stopped early)"
            } else {
                ""
            }
        );
        if stats.first_seq.is_some() {
            println!(
                "  loss: {lost} of {expected} ({loss_pct:.3}%) by sequence numbers {}..={}",
                stats.min_seq, stats.max_seq
            );
            println!(
                "  reordered: {} (of which {} more than {} behind), duplicates: {}",
                stats.reordered, stats.late, WINDOW, stats.duplicates
            );
            let l: Vec<String> = lat
                .iter()
                .map(|(k, v)| format!("{k} {:.1}", *v as f64 / 1e3))
                .collect();
            println!(
                "  one-way latency (us, gen XDP -> sink XDP): {}, mean {:.1}",
                l.join("  "),
                mean / 1e3
            );
        } else {
            println!("  no stamped frames arrived: is the generator running with --stamp and the right --dst-port?");
        }
        if other > 0 {
            println!("  {other} other frames (not stamped test frames) were dropped uncounted");
        }
    }
    if overflow > 0 {
        eprintln!(
            "warning: {overflow} frames found the sink's ring full (userspace fell behind): they count as lost; \
             this rate is above the measuring sink's ceiling"
        );
    }
    if stats.clock_errors > 0 {
        eprintln!(
            "warning: {} frames arrived before they were sent: generator and sink must run on the same host",
            stats.clock_errors
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(seqs: &[u64]) -> Stats {
        let mut s = Stats::new().unwrap();
        for &q in seqs {
            s.record(q, 1_000, 1_000 + 5_000 + q);
        }
        s
    }

    #[test]
    fn in_order_without_loss() {
        let s = feed(&(100..200).collect::<Vec<_>>());
        assert_eq!((s.received, s.expected(), s.lost()), (100, 100, 0));
        assert_eq!((s.reordered, s.duplicates), (0, 0));
        assert!(s.hist.value_at_quantile(0.5) >= 5_000);
    }

    #[test]
    fn loss_reordering_and_duplicates() {
        // 3 lost (4, 7, 8), 2 swapped once, 5 duplicated.
        let s = feed(&[0, 1, 3, 2, 5, 5, 6, 9]);
        assert_eq!(s.expected(), 10);
        assert_eq!(s.received, 8);
        assert_eq!(s.duplicates, 1);
        assert_eq!(s.reordered, 1);
        assert_eq!(s.lost(), 3);
    }

    #[test]
    fn very_late_frames_and_clock_errors() {
        let mut s = feed(&[WINDOW * 3]);
        s.record(5, 0, 10);
        assert_eq!((s.reordered, s.late, s.duplicates), (1, 1, 0));
        assert_eq!(s.min_seq, 5);
        s.record(WINDOW * 3 + 1, 10, 5);
        assert_eq!(s.clock_errors, 1);
    }

    #[test]
    fn a_jump_beyond_the_window_forgets_old_slots() {
        let mut s = feed(&[1, 2]);
        s.record(2 + WINDOW + 1, 0, 1);
        s.record(2 + WINDOW, 0, 1); // not a duplicate of 2: its slot was cleared
        assert_eq!((s.duplicates, s.reordered), (0, 1));
    }

    #[test]
    fn record_parsing() {
        let mut b = Vec::new();
        for v in [7u64, 8, 9] {
            b.extend_from_slice(&v.to_ne_bytes());
        }
        assert_eq!(parse(&b), Some((7, 8, 9)));
        assert_eq!(parse(&b[..23]), None);
    }
}
