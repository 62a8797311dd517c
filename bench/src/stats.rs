//! Loss, reordering, duplicates and one-way latency of the stamped frames
//! `xsw-bench gen --stamp` sends: the statistics of every measuring receiver
//! (`sink --measure` in XDP, `tap-sink --measure` behind a tap), so both
//! count and print the same way and their JSON compares field by field.
//!
//! A receiver hands each stamped frame's sequence number, send time and its
//! own receive time (all CLOCK_MONOTONIC of this host) to
//! [`Measurement::add`], prints [`Measurement::progress`] once a second and
//! [`Measurement::report`] at the end.

use anyhow::{Context, Result};
use hdrhistogram::Histogram;

/// How far back (in sequence numbers) duplicates are told apart from late
/// frames. A frame older than this behind the newest one is counted as
/// reordered (and `late`), whether or not it was seen before.
pub const WINDOW: u64 = 1 << 20;

/// Quantile steps of the `percentiles` list: HdrHistogram's "ticks per half
/// distance" (5 points from 0 to 50%, 5 more to 75%, ...), the spacing its
/// percentile-distribution plots use.
const TICKS_PER_HALF_DISTANCE: u32 = 5;
/// The last quantile listed: beyond it a run of a few seconds has only a
/// handful of frames, and a "nines" axis cannot show 100%.
pub const MAX_QUANTILE: f64 = 0.99999;
/// Upper bound on the list's length, so the JSON stays one readable line.
const MAX_POINTS: usize = 300;

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

/// The latency distribution as (quantile, ns) points from 0 up to
/// [`MAX_QUANTILE`], for plotting (`xsw-bench plot latency`). Values are the
/// histogram's, so p50 here is the summary's p50.
pub fn percentiles(hist: &Histogram<u64>) -> Vec<(f64, u64)> {
    if hist.is_empty() {
        return Vec::new();
    }
    let mut points: Vec<(f64, u64)> = Vec::new();
    for v in hist.iter_quantiles(TICKS_PER_HALF_DISTANCE) {
        let q = v.quantile_iterated_to();
        if q > MAX_QUANTILE {
            break;
        }
        points.push((q, v.value_iterated_to()));
    }
    // The iteration jumps to 100% once it reaches the highest bucket, so
    // the list would stop short of the tail the plot is for. The histogram
    // knows the value there; end at the cap, or at the last quantile that
    // one frame more or less still tells apart (1 - 1/frames).
    let cap = MAX_QUANTILE.min(1.0 - 1.0 / hist.len() as f64);
    if points.last().is_some_and(|&(q, _)| q < cap) {
        points.push((cap, hist.value_at_quantile(cap)));
    }
    if points.len() > MAX_POINTS {
        // Thin evenly, keeping the tail, where the interesting points are.
        let step = points.len().div_ceil(MAX_POINTS);
        let mut kept: Vec<(f64, u64)> = points.iter().rev().step_by(step).copied().collect();
        kept.reverse();
        points = kept;
    }
    points
}

/// A quantile for the JSON: 10 decimals (the iteration's steps are exact
/// binary fractions; more digits only show float noise such as
/// 0.30000000000000004), trailing zeros dropped.
fn quantile_str(q: f64) -> String {
    let s = format!("{q:.10}");
    let s = s.trim_end_matches('0');
    s.strip_suffix('.').unwrap_or(s).to_string()
}

/// The part of a summary that depends on the receiver, not on the frames.
pub struct Report<'a> {
    /// "sink" or "tap-sink": how the text summary starts.
    pub receiver: &'a str,
    pub iface: &'a str,
    /// Where the latency is measured from and to, for the text summary.
    pub path: &'a str,
    /// Stamped frames the receiver itself had no room for (they count as lost).
    pub overflow: u64,
    /// Frames that were not stamped test frames.
    pub other: u64,
    pub stopped_early: bool,
    pub json: bool,
}

/// The statistics of one run plus what the per-second progress needs.
pub struct Measurement {
    pub stats: Stats,
    /// Frames received before this CLOCK_MONOTONIC time are warm-up.
    warm_end_ns: u64,
    first_recv: Option<u64>,
    last_recv: u64,
    in_second: u64,
}

impl Measurement {
    pub fn new(warm_end_ns: u64) -> Result<Self> {
        Ok(Measurement {
            stats: Stats::new()?,
            warm_end_ns,
            first_recv: None,
            last_recv: 0,
            in_second: 0,
        })
    }

    /// One stamped frame. Only frames received after the warm-up count.
    pub fn add(&mut self, seq: u64, sent_ns: u64, recv_ns: u64) {
        self.in_second += 1;
        if recv_ns >= self.warm_end_ns {
            self.first_recv.get_or_insert(recv_ns);
            self.last_recv = self.last_recv.max(recv_ns);
            self.stats.record(seq, sent_ns, recv_ns);
        }
    }

    /// The progress line on stderr (frames since the last one, p99 and loss
    /// so far); `elapsed` is the run's time, `warm` whether still warming up.
    pub fn progress(&mut self, elapsed: f64, warm: bool) {
        let p99 = self.stats.hist.value_at_quantile(0.99);
        eprintln!(
            "[{:6.1}s] {:>12} frames/s  p99 so far {:>10.1} us  lost so far {}{}",
            elapsed,
            self.in_second,
            p99 as f64 / 1e3,
            self.stats.lost(),
            if warm { "  (warm-up)" } else { "" }
        );
        self.in_second = 0;
    }

    /// Prints the summary on stdout: text, or one JSON object with `r.json`.
    pub fn report(&self, r: &Report) {
        let stats = &self.stats;
        // The rate over the time the frames spanned after warm-up.
        let secs = match self.first_recv {
            Some(f) if self.last_recv > f => (self.last_recv - f) as f64 / 1e9,
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

        if r.json {
            let l: Vec<String> = lat.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
            let p: Vec<String> = percentiles(h)
                .iter()
                .map(|(q, v)| format!("[{},{v}]", quantile_str(*q)))
                .collect();
            println!(
                "{{\"iface\":{},\"mode\":\"measure\",\"frames\":{},\"window_secs\":{:.3},\"frames_per_sec\":{:.0},\
                 \"seq_first\":{},\"seq_last\":{},\"expected\":{},\"lost\":{},\"loss_pct\":{:.4},\
                 \"reordered\":{},\"late\":{},\"duplicates\":{},\"latency_ns\":{{{},\"mean\":{:.0}}},\
                 \"ring_overflow\":{},\"other_frames\":{},\"clock_errors\":{},\"stopped_early\":{},\
                 \"percentiles\":[{}]}}",
                crate::json_str(r.iface),
                stats.received,
                secs,
                fps,
                stats
                    .first_seq
                    .map_or("null".to_string(), |_| stats.min_seq.to_string()),
                stats
                    .first_seq
                    .map_or("null".to_string(), |_| stats.max_seq.to_string()),
                expected,
                lost,
                loss_pct,
                stats.reordered,
                stats.late,
                stats.duplicates,
                l.join(","),
                mean,
                r.overflow,
                r.other,
                stats.clock_errors,
                r.stopped_early,
                p.join(",")
            );
        } else {
            println!(
                "{} {} (measure): {} stamped frames in {:.3} s after warm-up: {:.0} frames/s{}",
                r.receiver,
                r.iface,
                stats.received,
                secs,
                fps,
                if r.stopped_early {
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
                    "  one-way latency (us, {}): {}, mean {:.1}",
                    r.path,
                    l.join("  "),
                    mean / 1e3
                );
            } else {
                println!("  no stamped frames arrived: is the generator running with --stamp and the right --dst-port?");
            }
            if r.other > 0 {
                println!(
                    "  {} other frames (not stamped test frames to --dst-port) were not measured",
                    r.other
                );
            }
        }
        if stats.clock_errors > 0 {
            eprintln!(
                "warning: {} frames arrived before they were sent: generator and sink must run on the same host",
                stats.clock_errors
            );
        }
    }
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
    fn quantiles_print_without_float_noise() {
        let q = [0.0, 0.30000000000000004, 0.5, 0.99999, 0.9999923706054688];
        assert_eq!(
            q.map(quantile_str),
            ["0", "0.3", "0.5", "0.99999", "0.9999923706"]
        );
    }

    #[test]
    fn warm_up_frames_are_left_out() {
        let mut m = Measurement::new(1_000).unwrap();
        m.add(0, 0, 999);
        m.add(1, 0, 1_000);
        m.add(2, 0, 2_000);
        assert_eq!((m.stats.received, m.stats.min_seq), (2, 1));
        assert_eq!((m.first_recv, m.last_recv), (Some(1_000), 2_000));
    }

    #[test]
    fn percentiles_rise_from_zero_to_the_cap() {
        let mut s = Stats::new().unwrap();
        for i in 0..1_000_000u64 {
            s.record(i, 0, 1_000 + i % 10_000);
        }
        let p = percentiles(&s.hist);
        assert!(p.len() > 50 && p.len() <= MAX_POINTS, "{} points", p.len());
        assert_eq!(p[0].0, 0.0);
        let last = p[p.len() - 1].0;
        assert!(
            last > 0.9999 && last <= MAX_QUANTILE,
            "last quantile {last}"
        );
        assert!(p.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1));
        // The median agrees with the summary's p50.
        let median = p.iter().find(|(q, _)| *q >= 0.5).unwrap().1;
        assert_eq!(median, s.hist.value_at_quantile(0.5));
        assert!(percentiles(&Stats::new().unwrap().hist).is_empty());
    }
}
