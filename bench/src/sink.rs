//! `xsw-bench sink`: counts what arrives on an interface, in XDP, and drops
//! it. Counting in XDP measures delivery to the port, not how fast the host
//! stack or a socket could consume it.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use aya::maps::{MapData, PerCpuArray};
use aya::Pod;

use crate::progs::{self, XdpMode};
use crate::sys::{self, CpuTimes};

/// Mirrors `struct counters` in bench/ebpf/sink.c.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Counters {
    frames: u64,
    bytes: u64,
}

// SAFETY: Counters is #[repr(C)], made only of u64s (no padding, no pointers),
// and every bit pattern is a valid value, which is what Pod requires.
unsafe impl Pod for Counters {}

pub struct SinkOpts {
    pub iface: String,
    pub duration: f64,
    pub warmup: f64,
    pub xdp_mode: XdpMode,
    pub json: bool,
}

/// The counters of every possible CPU at one moment. Which CPU counted a
/// frame is where the sink's receive work ran: that shows the placement.
struct Snapshot(Vec<Counters>);

impl Snapshot {
    fn read(map: &PerCpuArray<MapData, Counters>) -> Result<Self> {
        let per_cpu = map
            .get(&0, 0)
            .context("reading the sink's per-CPU counters")?;
        Ok(Snapshot(per_cpu.iter().copied().collect()))
    }

    fn total(&self) -> Counters {
        self.0.iter().fold(Counters::default(), |a, c| Counters {
            frames: a.frames + c.frames,
            bytes: a.bytes + c.bytes,
        })
    }

    /// Frames per CPU since `earlier`.
    fn frames_since(&self, earlier: &Snapshot) -> Vec<u64> {
        self.0
            .iter()
            .zip(&earlier.0)
            .map(|(now, then)| now.frames - then.frames)
            .collect()
    }
}

pub fn run(o: SinkOpts) -> Result<()> {
    if !(o.duration.is_finite() && o.warmup.is_finite() && o.warmup >= 0.0 && o.duration > o.warmup)
    {
        bail!(
            "--duration ({}) must be longer than --warmup ({}): the summary covers the time after the warm-up",
            o.duration,
            o.warmup
        );
    }
    sys::ifindex(&o.iface)?;
    let mut ebpf = progs::load(progs::SINK_OBJ, "sink", &[])?;
    let prog = progs::xdp_program(&mut ebpf, "xsw_bench_sink")?;
    progs::attach(prog, &o.iface, o.xdp_mode)?;
    let map = ebpf
        .take_map("SINK_COUNTERS")
        .context("internal error: SINK_COUNTERS map missing from the sink object")?;
    let map: PerCpuArray<MapData, Counters> = PerCpuArray::try_from(map)
        .context("internal error: SINK_COUNTERS is not a per-CPU array")?;

    sys::install_stop_handler()?;
    eprintln!(
        "sink {}: counting for {} s (first {} s warm-up, not in the summary); Ctrl-C stops early",
        o.iface, o.duration, o.warmup
    );

    let start = Instant::now();
    let end = start + Duration::from_secs_f64(o.duration);
    let warm_end = start + Duration::from_secs_f64(o.warmup);
    let first = Snapshot::read(&map)?;
    let mut prev = first.total();
    let mut prev_t = start;
    let mut window_start: Option<(Instant, Snapshot, CpuTimes)> = None;
    if o.warmup == 0.0 {
        window_start = Some((start, first, CpuTimes::read()?));
    }
    let mut per_second: Vec<f64> = Vec::new();
    let mut tick = 1u64;

    loop {
        let next = (start + Duration::from_secs(tick)).min(end);
        let completed = sys::sleep_until(next);
        let now = Instant::now();
        let snap = Snapshot::read(&map)?;
        let cur = snap.total();
        let dt = (now - prev_t).as_secs_f64();
        if dt > 0.0 {
            let fps = (cur.frames - prev.frames) as f64 / dt;
            let bps = (cur.bytes - prev.bytes) as f64 * 8.0 / dt;
            progress((now - start).as_secs_f64(), fps, bps, now <= warm_end);
            if window_start.is_some() {
                per_second.push(fps);
            }
        }
        prev = cur;
        prev_t = now;
        if window_start.is_none() && now >= warm_end {
            window_start = Some((now, snap, CpuTimes::read()?));
        }
        if !completed || now >= end {
            break;
        }
        tick += 1;
    }

    let now = Instant::now();
    let last = Snapshot::read(&map)?;
    let cur = last.total();
    let cpu_end = CpuTimes::read()?;
    let stopped_early = now + Duration::from_millis(100) < end;
    let summary = match &window_start {
        Some((t0, s0, cpu0)) => {
            let c0 = s0.total();
            CountSummary {
                frames: cur.frames - c0.frames,
                bytes: cur.bytes - c0.bytes,
                secs: (now - *t0).as_secs_f64(),
                cpu_busy: cpu_end.busy - cpu0.busy,
                per_second,
                per_cpu: last.frames_since(s0),
                stopped_early,
            }
        }
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
    summary.print("sink", &o.iface, "counted on", o.json);
    Ok(())
}

/// A per-second progress line on stderr, the same for every counting receiver.
pub fn progress(elapsed: f64, fps: f64, bits_per_sec: f64, warm: bool) {
    eprintln!(
        "[{:6.1}s] {:>12.0} frames/s  {:>8.3} Gbit/s (without FCS){}",
        elapsed,
        fps,
        bits_per_sec / 1e9,
        if warm { "  (warm-up)" } else { "" }
    );
}

/// What a counting receiver (`sink`, `tap-sink`) measured after the warm-up;
/// one printer, so both give the same JSON fields.
pub struct CountSummary {
    pub frames: u64,
    /// Without FCS, as the receiver sees frames.
    pub bytes: u64,
    pub secs: f64,
    /// Busy time of all cores over the window, from /proc/stat.
    pub cpu_busy: f64,
    pub per_second: Vec<f64>,
    /// Frames per CPU index (zeros are left out of the output).
    pub per_cpu: Vec<u64>,
    pub stopped_early: bool,
}

impl CountSummary {
    /// Prints the summary on stdout; `receiver` starts the text line and
    /// `cpu_what` says what the per-CPU split is (where the work ran).
    pub fn print(&self, receiver: &str, iface: &str, cpu_what: &str, json: bool) {
        let frames = self.frames;
        // Only CPUs that counted something; the map has a slot per possible CPU.
        let cpu_share: Vec<(usize, f64)> = self
            .per_cpu
            .iter()
            .enumerate()
            .filter(|(_, &n)| n > 0)
            .map(|(cpu, &n)| (cpu, n as f64 * 100.0 / frames as f64))
            .collect();
        let fps = if self.secs > 0.0 {
            frames as f64 / self.secs
        } else {
            0.0
        };
        let cpu_ns_per_frame = if frames > 0 {
            self.cpu_busy * 1e9 / frames as f64
        } else {
            0.0
        };
        if json {
            let ps: Vec<String> = self.per_second.iter().map(|v| format!("{v:.0}")).collect();
            let pc: Vec<String> = cpu_share
                .iter()
                .map(|(cpu, pct)| format!("\"{cpu}\":{pct:.1}"))
                .collect();
            println!(
                "{{\"iface\":{},\"frames\":{},\"bytes\":{},\"window_secs\":{:.3},\"frames_per_sec\":{:.0},\
                 \"cpu_busy_secs\":{:.2},\"cpu_ns_per_frame\":{:.1},\"stopped_early\":{},\"per_second\":[{}],\
                 \"frames_pct_by_cpu\":{{{}}}}}",
                crate::json_str(iface),
                frames,
                self.bytes,
                self.secs,
                fps,
                self.cpu_busy,
                cpu_ns_per_frame,
                self.stopped_early,
                ps.join(","),
                pc.join(",")
            );
        } else {
            println!(
                "{receiver} {iface}: {} frames, {} bytes (without FCS) in {:.3} s after warm-up: {:.0} frames/s{}",
                frames,
                self.bytes,
                self.secs,
                fps,
                if self.stopped_early {
                    " (stopped early)"
                } else {
                    ""
                }
            );
            if frames > 0 {
                println!(
                    "  CPU busy on all cores: {:.2} s = {:.0} ns per frame received (includes the generator if it runs here)",
                    self.cpu_busy, cpu_ns_per_frame
                );
                let pc: Vec<String> = cpu_share
                    .iter()
                    .map(|(cpu, pct)| format!("CPU {cpu} {pct:.0}%"))
                    .collect();
                println!("  {cpu_what}: {}", pc.join(", "));
            }
        }
    }
}
