//! `xsw-bench sink --measure`: loss, reordering, duplicates and one-way
//! latency of the stamped frames `xsw-bench gen --stamp` sends.
//!
//! The XDP program (bench/ebpf/sink_measure.c) reads each frame's sequence
//! number and send time, adds its own receive time (both CLOCK_MONOTONIC, so
//! generator and sink must run on the same host) and passes the three numbers
//! through a BPF ring buffer; this side drains the ring into the statistics
//! it shares with `tap-sink --measure` ([`crate::stats`]). Frames the ring
//! had no room for are counted in XDP (`ring_overflow`): that is the sink's
//! own ceiling, and they also show up as loss, so a run with overflow
//! measured the sink.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use aya::maps::{MapData, PerCpuArray, RingBuf};
use aya::Pod;

use crate::progs::{self, Global, XdpMode};
use crate::stats::{Measurement, Report};
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
    let mut m = Measurement::new(warm_end_ns)?;
    let mut tick = 1u64;
    let mut bad_records = 0u64;
    let mut stopped_early = false;

    loop {
        let mut drained = 0;
        while let Some(item) = ring.next() {
            drained += 1;
            match parse(&item) {
                Some((seq, sent, recv)) => m.add(seq, sent, recv),
                None => bad_records += 1,
            }
        }
        let now = Instant::now();
        if now >= start + Duration::from_secs(tick) || now >= end {
            m.progress(
                (now - start).as_secs_f64(),
                now < start + Duration::from_secs_f64(o.warmup),
            );
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
            m.add(seq, sent, recv);
        }
    }
    let after = read_counters(&counters)?;
    let overflow = after.overflow - before.overflow;
    let other = after.other - before.other;
    if bad_records > 0 {
        eprintln!("warning: {bad_records} ring records were too short and ignored");
    }
    m.report(&Report {
        receiver: "sink",
        iface: &o.iface,
        path: "gen XDP -> sink XDP",
        overflow,
        other,
        stopped_early,
        json: o.json,
    });
    if overflow > 0 {
        eprintln!(
            "warning: {overflow} frames found the sink's ring full (userspace fell behind): they count as lost; \
             this rate is above the measuring sink's ceiling"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
