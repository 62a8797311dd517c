//! Counters: written by one worker each, summed by the control plane on read.
//!
//! Each counter has a single writer, so a relaxed load and store replace a
//! locked read-modify-write; readers may see a value one batch old.
//!
//! Two views, which never mix (ARCHITECTURE.md, "Frames received = switched + dropped"):
//! - per frame received, on its ingress port: `rx_frames` = `switched` +
//!   the sum of `drops`, each dropped frame under exactly one reason;
//! - per copy offered to an egress port, on that port: `tx_frames` and
//!   `egress_drops` (refused by the port's checks, or lost on the way out).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::pipeline::decision::MAX_PORTS;
use crate::pipeline::{DropReason, PortId};

#[inline]
pub fn bump(counter: &AtomicU64, by: u64) {
    counter.store(counter.load(Relaxed).wrapping_add(by), Relaxed);
}

#[derive(Default)]
pub struct PortCounters {
    pub rx_frames: AtomicU64,
    pub rx_bytes: AtomicU64,
    pub tx_frames: AtomicU64,
    pub tx_bytes: AtomicU64,
    /// Frames received on this port that left through at least one port.
    pub switched: AtomicU64,
    /// Frames received on this port and dropped, by the one reason each.
    pub drops: [AtomicU64; DropReason::COUNT],
    /// Copies of frames offered to this port that it refused or lost.
    pub egress_drops: [AtomicU64; DropReason::COUNT],
    /// Source MACs not learned because a MAC limit was reached (the frames
    /// themselves were switched).
    pub learning_refused: AtomicU64,
    /// This port's MAC entries evicted to make room for another port's (the
    /// table was full and this port held the most).
    pub learning_evicted: AtomicU64,
    /// TCP/UDP checksums the sender left to offload, finished by xsw.
    pub checksums_finished: AtomicU64,
    /// Of rx_frames and tx_frames: those the fast path switched in the kernel.
    pub fast_rx_frames: AtomicU64,
    pub fast_tx_frames: AtomicU64,
}

/// A plain copy of a port's counters, for sums and differences.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortTotals {
    pub rx_frames: u64,
    pub rx_bytes: u64,
    pub tx_frames: u64,
    pub tx_bytes: u64,
    pub switched: u64,
    pub drops: [u64; DropReason::COUNT],
    pub egress_drops: [u64; DropReason::COUNT],
    pub learning_refused: u64,
    pub learning_evicted: u64,
    pub checksums_finished: u64,
    pub fast_rx_frames: u64,
    pub fast_tx_frames: u64,
}

impl PortTotals {
    pub fn add(&mut self, c: &PortCounters) {
        self.rx_frames += c.rx_frames.load(Relaxed);
        self.rx_bytes += c.rx_bytes.load(Relaxed);
        self.tx_frames += c.tx_frames.load(Relaxed);
        self.tx_bytes += c.tx_bytes.load(Relaxed);
        self.switched += c.switched.load(Relaxed);
        self.learning_refused += c.learning_refused.load(Relaxed);
        self.learning_evicted += c.learning_evicted.load(Relaxed);
        self.checksums_finished += c.checksums_finished.load(Relaxed);
        self.fast_rx_frames += c.fast_rx_frames.load(Relaxed);
        self.fast_tx_frames += c.fast_tx_frames.load(Relaxed);
        for (sum, d) in self.drops.iter_mut().zip(&c.drops) {
            *sum += d.load(Relaxed);
        }
        for (sum, d) in self.egress_drops.iter_mut().zip(&c.egress_drops) {
            *sum += d.load(Relaxed);
        }
    }

    /// Counters since `base` was taken (ports ids are reused after delete).
    pub fn since(&self, base: &PortTotals) -> PortTotals {
        let mut out = PortTotals {
            rx_frames: self.rx_frames.wrapping_sub(base.rx_frames),
            rx_bytes: self.rx_bytes.wrapping_sub(base.rx_bytes),
            tx_frames: self.tx_frames.wrapping_sub(base.tx_frames),
            tx_bytes: self.tx_bytes.wrapping_sub(base.tx_bytes),
            switched: self.switched.wrapping_sub(base.switched),
            drops: [0; DropReason::COUNT],
            egress_drops: [0; DropReason::COUNT],
            learning_refused: self.learning_refused.wrapping_sub(base.learning_refused),
            learning_evicted: self.learning_evicted.wrapping_sub(base.learning_evicted),
            checksums_finished: self
                .checksums_finished
                .wrapping_sub(base.checksums_finished),
            fast_rx_frames: self.fast_rx_frames.wrapping_sub(base.fast_rx_frames),
            fast_tx_frames: self.fast_tx_frames.wrapping_sub(base.fast_tx_frames),
        };
        for ((o, a), b) in out.drops.iter_mut().zip(&self.drops).zip(&base.drops) {
            *o = a.wrapping_sub(*b);
        }
        for ((o, a), b) in out
            .egress_drops
            .iter_mut()
            .zip(&self.egress_drops)
            .zip(&base.egress_drops)
        {
            *o = a.wrapping_sub(*b);
        }
        out
    }
}

pub struct WorkerStats {
    pub ports: Box<[PortCounters]>,
    pub batches: AtomicU64,
    pub frames: AtomicU64,
    pub sleeps: AtomicU64,
    /// Turns of the worker's loop: the watchdog's proof of progress.
    pub turns: AtomicU64,
    pub frames_free: AtomicU64,
    pub frame_violations: AtomicU64,
    /// UMEM frames the worker held at its last housekeeping (between turns: 0 unless
    /// one leaked) and frames placed at sockets that are closed (0 unless a closed
    /// socket's frames were not reclaimed).
    pub frames_held: AtomicU64,
    pub frames_stranded: AtomicU64,
}

impl Default for WorkerStats {
    fn default() -> Self {
        WorkerStats {
            ports: (0..MAX_PORTS).map(|_| PortCounters::default()).collect(),
            batches: AtomicU64::new(0),
            frames: AtomicU64::new(0),
            sleeps: AtomicU64::new(0),
            turns: AtomicU64::new(0),
            frames_free: AtomicU64::new(0),
            frame_violations: AtomicU64::new(0),
            frames_held: AtomicU64::new(0),
            frames_stranded: AtomicU64::new(0),
        }
    }
}

impl WorkerStats {
    #[inline]
    pub fn port(&self, port: PortId) -> Option<&PortCounters> {
        self.ports.get(usize::from(port))
    }

    /// A frame received on `port` is dropped, for `reason`.
    #[inline]
    pub fn drop_frame(&self, port: PortId, reason: DropReason) {
        if let Some(c) = self.port(port) {
            bump(&c.drops[reason.index()], 1);
        }
    }

    /// A copy offered to `port` is refused by it or lost on its way out.
    #[inline]
    pub fn drop_copy(&self, port: PortId, reason: DropReason) {
        if let Some(c) = self.port(port) {
            bump(&c.egress_drops[reason.index()], 1);
        }
    }
}
