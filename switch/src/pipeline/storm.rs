//! Storm control: a token bucket per port and per kind of flooded frame (broadcast,
//! multicast, unknown unicast), so one port cannot flood its tenant-mates (or the
//! workers' cores, which every tenant shares) with more than its share.
//!
//! The limits are configuration ([`StormLimits`], in the port's policy, shared by every
//! worker). The buckets are per worker state ([`StormMeter`], owned by the worker beside
//! its MAC table): no lock and no atomic. A port whose frames arrive on several workers
//! (a multi-queue NIC, or tc ports whose misses several workers take from the slow-path
//! device) gets the full limit on each of them, so its port-wide bound is the limit times
//! the number of workers that receive its frames. Splitting the limit by the worker count
//! would instead cut a single-queue port (the common case: a veth or a tap, served by one
//! worker) to a fraction of what it was given; sharing one bucket would put an atomic
//! on every flooded frame. With the default single worker both are the same.

use serde::{Deserialize, Serialize};

use super::decision::{DropReason, PortId};
use crate::packet::MacAddr;
use crate::pipeline::decision::MAX_PORTS;

/// The kinds of flooded frames, each with its own bucket and drop counter.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum FloodKind {
    Broadcast,
    Multicast,
    UnknownUnicast,
}

impl FloodKind {
    /// The kind of a flooded frame with destination `dst`.
    #[inline]
    pub fn of(dst: MacAddr) -> FloodKind {
        if dst.is_broadcast() {
            FloodKind::Broadcast
        } else if dst.is_multicast() {
            FloodKind::Multicast
        } else {
            FloodKind::UnknownUnicast
        }
    }

    /// The drop counter of this kind.
    pub const fn drop_reason(self) -> DropReason {
        match self {
            FloodKind::Broadcast => DropReason::StormBroadcast,
            FloodKind::Multicast => DropReason::StormMulticast,
            FloodKind::UnknownUnicast => DropReason::StormUnknownUnicast,
        }
    }

    const fn index(self) -> usize {
        self as usize
    }
}

/// Default broadcast limit, frames per second per port. A host sends a few broadcasts a
/// second (ARP, DHCP); a router answering a whole /16 a few hundred. 1,000 leaves every
/// normal host far below it, and cuts a 2.8 Mpps storm by a factor of 2,800.
pub const DEFAULT_BROADCAST: u32 = 1_000;
/// Default multicast limit: IPv6 neighbour discovery (solicited-node multicast), MLD and
/// mDNS are a few per second per host; 5,000 leaves room for a busy router or a small
/// multicast stream. Ports that carry video multicast raise it.
pub const DEFAULT_MULTICAST: u32 = 5_000;
/// Default unknown-unicast limit: unknown unicast floods only until the destination
/// answers and is learned (or after it ages out), a few frames per flow; 5,000 also lets
/// the first round trip of many flows at once through.
pub const DEFAULT_UNKNOWN_UNICAST: u32 = 5_000;

/// Frames per second of each flooded kind a port may send; 0 means no limit. In the
/// config file, `[storm_control]` (the switch-wide default) and a port's
/// `storm_control` table (its own, overriding the default kind by kind).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StormLimits {
    pub broadcast: u32,
    pub multicast: u32,
    pub unknown_unicast: u32,
}

impl Default for StormLimits {
    fn default() -> Self {
        StormLimits {
            broadcast: DEFAULT_BROADCAST,
            multicast: DEFAULT_MULTICAST,
            unknown_unicast: DEFAULT_UNKNOWN_UNICAST,
        }
    }
}

impl StormLimits {
    /// No limit on anything.
    pub const OFF: StormLimits = StormLimits {
        broadcast: 0,
        multicast: 0,
        unknown_unicast: 0,
    };

    /// The limit of `kind`, frames per second (0: none).
    pub const fn of(&self, kind: FloodKind) -> u32 {
        match kind {
            FloodKind::Broadcast => self.broadcast,
            FloodKind::Multicast => self.multicast,
            FloodKind::UnknownUnicast => self.unknown_unicast,
        }
    }

    /// These limits with each kind `overrides` sets replacing it.
    pub fn overridden_by(self, overrides: &StormOverrides) -> StormLimits {
        StormLimits {
            broadcast: overrides.broadcast.unwrap_or(self.broadcast),
            multicast: overrides.multicast.unwrap_or(self.multicast),
            unknown_unicast: overrides.unknown_unicast.unwrap_or(self.unknown_unicast),
        }
    }
}

/// A port's own limits, kind by kind; an absent kind follows the switch-wide default.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StormOverrides {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broadcast: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multicast: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unknown_unicast: Option<u32>,
}

impl StormOverrides {
    pub fn is_empty(&self) -> bool {
        *self == StormOverrides::default()
    }
}

/// A bucket holds up to this long of its rate's frames: 100 ms, so a burst (a host
/// resolving many neighbours at boot) passes while a storm is cut within a tenth of a
/// second.
const BURST_NS: u64 = 100_000_000;
/// ... but never fewer frames than this, so a low limit still lets a small burst pass.
const MIN_BURST_FRAMES: u64 = 16;

/// One token bucket, in nanoseconds of credit: a frame costs `1e9 / rate` ns.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
struct Bucket {
    credit_ns: u64,
    last_ns: u64,
}

/// A worker's buckets: one per port and kind. Preallocated, so metering allocates
/// nothing; ports at or above `MAX_PORTS` share the last row.
#[derive(Clone, Debug)]
pub struct StormMeter {
    buckets: Box<[[Bucket; 3]]>,
}

impl Default for StormMeter {
    fn default() -> Self {
        StormMeter {
            buckets: vec![[Bucket::default(); 3]; MAX_PORTS + 1].into_boxed_slice(),
        }
    }
}

impl StormMeter {
    /// Takes one frame of `kind` from `port`'s bucket at time `now_ns`: Ok if it may be
    /// flooded, else the drop reason of its kind.
    #[inline]
    pub fn admit(
        &mut self,
        port: PortId,
        limits: &StormLimits,
        kind: FloodKind,
        now_ns: u64,
    ) -> Result<(), DropReason> {
        let rate = u64::from(limits.of(kind));
        if rate == 0 {
            return Ok(());
        }
        let row = usize::from(port).min(MAX_PORTS);
        let Some(bucket) = self
            .buckets
            .get_mut(row)
            .and_then(|row| row.get_mut(kind.index()))
        else {
            return Ok(());
        };
        let cost = 1_000_000_000 / rate;
        let capacity = (BURST_NS.saturating_mul(rate) / 1_000_000_000)
            .max(MIN_BURST_FRAMES)
            .saturating_mul(cost);
        let elapsed = now_ns.saturating_sub(bucket.last_ns);
        bucket.last_ns = bucket.last_ns.max(now_ns);
        bucket.credit_ns = bucket.credit_ns.saturating_add(elapsed).min(capacity);
        if bucket.credit_ns >= cost {
            bucket.credit_ns -= cost;
            Ok(())
        } else {
            Err(kind.drop_reason())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000_000;

    fn admitted(meter: &mut StormMeter, limits: &StormLimits, kind: FloodKind, at: u64) -> u32 {
        u32::from(meter.admit(1, limits, kind, at).is_ok())
    }

    #[test]
    fn a_storm_is_cut_to_the_rate_plus_one_burst() {
        let limits = StormLimits {
            broadcast: 1_000,
            ..StormLimits::OFF
        };
        let mut meter = StormMeter::default();
        // 1,000,000 broadcasts over 2 s (one per 2 µs), starting with a full bucket.
        let start = 10 * SECOND;
        let passed: u32 = (0..1_000_000u64)
            .map(|i| admitted(&mut meter, &limits, FloodKind::Broadcast, start + i * 2_000))
            .sum();
        // 2 s at 1,000/s, plus the 100-frame burst the bucket started with.
        assert!((2_095..=2_101).contains(&passed), "{passed} passed");
    }

    #[test]
    fn kinds_and_ports_have_their_own_buckets() {
        let limits = StormLimits {
            broadcast: 10,
            multicast: 10,
            unknown_unicast: 0,
        };
        let mut meter = StormMeter::default();
        // Long enough after the clock's start for every bucket to be full.
        let at = 10 * SECOND;
        let burst = MIN_BURST_FRAMES as usize;
        for _ in 0..burst {
            assert!(meter.admit(1, &limits, FloodKind::Broadcast, at).is_ok());
        }
        assert_eq!(
            meter.admit(1, &limits, FloodKind::Broadcast, at),
            Err(DropReason::StormBroadcast)
        );
        assert!(meter.admit(2, &limits, FloodKind::Broadcast, at).is_ok());
        assert!(meter.admit(1, &limits, FloodKind::Multicast, at).is_ok());
        for _ in 0..10_000 {
            assert!(meter
                .admit(1, &limits, FloodKind::UnknownUnicast, at)
                .is_ok());
        }
        // A tenth of a second later, one more broadcast frame's worth came in.
        assert!(meter
            .admit(1, &limits, FloodKind::Broadcast, at + SECOND / 10)
            .is_ok());
        assert!(meter
            .admit(1, &limits, FloodKind::Broadcast, at + SECOND / 10)
            .is_err());
    }

    #[test]
    fn the_kind_follows_the_destination() {
        assert_eq!(FloodKind::of(MacAddr::BROADCAST), FloodKind::Broadcast);
        assert_eq!(
            FloodKind::of(MacAddr([0x33, 0x33, 0, 0, 0, 1])),
            FloodKind::Multicast
        );
        assert_eq!(
            FloodKind::of(MacAddr([2, 0, 0, 0, 0, 1])),
            FloodKind::UnknownUnicast
        );
    }

    #[test]
    fn a_clock_that_goes_back_or_ports_past_the_table_do_not_panic() {
        let limits = StormLimits::default();
        let mut meter = StormMeter::default();
        assert!(meter
            .admit(PortId::MAX, &limits, FloodKind::Broadcast, u64::MAX)
            .is_ok());
        assert!(meter
            .admit(PortId::MAX, &limits, FloodKind::Broadcast, 0)
            .is_ok());
        let all = StormLimits {
            broadcast: u32::MAX,
            ..limits
        };
        assert!(meter.admit(3, &all, FloodKind::Broadcast, 5).is_ok());
    }

    #[test]
    fn overrides_replace_only_the_kinds_they_set() {
        let port = StormOverrides {
            multicast: Some(0),
            ..StormOverrides::default()
        };
        let limits = StormLimits::default().overridden_by(&port);
        assert_eq!(limits.broadcast, DEFAULT_BROADCAST);
        assert_eq!(limits.multicast, 0);
    }
}
