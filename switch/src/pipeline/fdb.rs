//! The forwarding database (MAC table) of one worker.
//!
//! Each worker owns its table outright, so the data path takes no lock; workers keep their
//! tables in step by exchanging learn events outside this module.

use super::decision::{PortId, TenantId};
use super::storm::StormMeter;
use crate::packet::MacAddr;
use crate::pipeline::decision::MAX_PORTS;

/// Tenants with a counter of their own (the control plane allocates tenant ids below this).
/// Ids at or above it share one extra counter, as do port ids at or above `MAX_PORTS`: an
/// out-of-range id can never panic nor escape the limits, it only shares them.
pub const FDB_MAX_TENANTS: usize = 4096;

/// What learning a source address did to the table.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub enum Learned {
    /// The frame was dropped before its source could be learned.
    #[default]
    Nothing,
    /// The address was unknown (or its entry had expired) and is now bound to the port.
    New,
    /// The address was already bound to the port; its age was reset.
    Refreshed,
    /// The address was bound to another port and now follows the host to this one.
    Moved { from: PortId },
    /// The address is unknown and the table is at capacity: not learned.
    TableFull,
    /// A static entry exists for the address; learning never changes it.
    StaticKept,
    /// Learning would take the ingress port or the tenant past its limit (see
    /// [`Fdb::set_limits`]): not learned. A refused move leaves the entry on its old port.
    LimitReached,
    /// As `New`, in a full table: an entry of the port holding the most (`from`) was
    /// evicted to make room. `flow_destination`: fast-path entries forwarded to it.
    Evicted {
        from: PortId,
        flow_destination: bool,
    },
}

/// One row of the table, as shown to the control plane.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct FdbEntry {
    pub tenant_id: TenantId,
    pub mac: MacAddr,
    pub port: PortId,
    pub is_static: bool,
    /// When the address was last learned; 0 for static entries, which do not age.
    pub last_seen_ns: u64,
    /// On a tunnel port: which of its remote endpoints the address is behind, 1-based
    /// (see [`Fdb::set_remote`]); 0 for every other entry.
    pub remote: u8,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FdbError {
    #[error("MAC table is full: raise [dataplane] fdb_capacity or delete entries")]
    TableFull,
}

/// Entries per bucket: three fit a 64-byte cache line with their ports and flags.
const WAYS: usize = 3;

/// One cache line of the table: up to [`WAYS`] entries whose home is this bucket or, when
/// those were full, an earlier one (open addressing by buckets, linear probing).
///
/// A lookup reads one bucket, nearly always its home: the table is at most half full,
/// so fewer than 7% of buckets ever overflow. That is what makes a table of a million
/// entries cost one memory access per lookup; `std`'s map (hashbrown) takes a control
/// byte group, then a 24-byte slot elsewhere, from a table twice as large (see
/// `benches/pipeline.rs`: at 1,000,000 entries, 406 ns per lookup before, 154 after).
#[derive(Copy, Clone, Debug, Default)]
#[repr(C, align(64))]
struct Bucket {
    keys: [u64; WAYS],
    /// When each entry was last learned; 0 for static entries.
    seen: [u64; WAYS],
    ports: [PortId; WAYS],
    /// Bit `i` set: way `i` holds an entry.
    used: u8,
    /// Bit `i` set: way `i` holds a static entry.
    statics: u8,
    /// Bit `i` set: a fast-path flow entry forwards to way `i`'s address (see
    /// [`Fdb::mark_flow_destination`]); evicting it must invalidate the flow entries.
    flowed: u8,
    /// Per way: the tunnel remote endpoint of the entry, 1-based, 0 for none (fits the
    /// bucket's padding: it stays one cache line).
    remotes: [u8; WAYS],
    /// Entries stored past this bucket whose home is this bucket or an earlier one: while
    /// it is 0, a key not found here is not in the table. Kept exact by insert and remove,
    /// so removals leave no tombstones and the table never needs rebuilding.
    overflow: u32,
}

impl Bucket {
    /// The way holding `key`, if any. The three compares are independent of each other,
    /// with no branch between them.
    #[inline]
    fn find(&self, key: u64) -> Option<usize> {
        let [a, b, c] = self.keys;
        let hits =
            (u8::from(a == key) | u8::from(b == key) << 1 | u8::from(c == key) << 2) & self.used;
        (hits != 0).then(|| hits.trailing_zeros() as usize)
    }

    #[inline]
    fn is_live(&self, way: usize, aging_ns: u64, now_ns: u64) -> bool {
        // saturating_sub: a clock that steps backwards must not make entries immortal or panic.
        self.statics & (1 << way) != 0 || now_ns.saturating_sub(self.seen[way]) < aging_ns
    }

    fn entry(&self, way: usize) -> FdbEntry {
        let (tenant_id, mac) = unpack_key(self.keys[way]);
        FdbEntry {
            tenant_id,
            mac,
            port: self.ports[way],
            is_static: self.statics & (1 << way) != 0,
            last_seen_ns: self.seen[way],
            remote: self.remotes[way],
        }
    }
}

/// Buckets an eviction searches at most for an entry of the busiest port.
const EVICTION_SCAN: usize = 256;

/// A MAC table keyed by (tenant, MAC), bounded to a fixed number of entries.
///
/// The table is allocated once in [`Fdb::new`] and never reallocates afterwards, so learning
/// on the data path cannot allocate: an unknown address arriving at capacity takes the
/// place of an entry of the port that holds the most ([`Learned::Evicted`]).
/// Dynamic entries are live for `aging_ns` after they were last learned (`u64::MAX`: never
/// age); an expired entry is invisible to [`Fdb::lookup`] and is reclaimed by [`Fdb::expire`].
///
/// Besides `capacity`, optional limits bound the entries of each port and of each tenant
/// ([`Fdb::set_limits`]), so one guest spraying source addresses cannot fill the table. The
/// counts behind them include every stored entry: static ones and expired ones not yet
/// reclaimed.
#[derive(Debug, Clone)]
pub struct Fdb {
    /// A power of two of them, for at least twice `capacity` entries.
    buckets: Vec<Bucket>,
    /// Multiply-shift hashing with a random odd multiplier per table, so that addresses
    /// chosen to collide in one table do not collide in another.
    multiplier: u64,
    /// 64 minus log2 of the bucket count: the hash's top bits pick the bucket.
    shift: u32,
    len: usize,
    capacity: usize,
    aging_ns: u64,
    /// Entries per port; index `MAX_PORTS` is shared by every larger id.
    port_counts: Box<[u32]>,
    /// Entries per tenant; index `FDB_MAX_TENANTS` is shared by every larger id.
    tenant_counts: Box<[u32]>,
    /// Where the next search for an entry to evict starts (see [`Fdb::evict_busiest`]).
    evict_cursor: usize,
    per_port_limit: Option<u32>,
    per_tenant_limit: Option<u32>,
    /// A lower bound of every dynamic entry's last-seen time (`u64::MAX` when none is
    /// known): lets [`Fdb::expire`] skip its full scan until an entry can have expired.
    oldest_seen_ns: u64,
    /// The worker's storm-control buckets: per-worker ingress state like the table, so
    /// they travel with it through the pipeline (see `pipeline::storm`).
    pub storm: StormMeter,
}

#[inline]
fn port_index(port: PortId) -> usize {
    usize::from(port).min(MAX_PORTS)
}

#[inline]
fn tenant_index(tenant_id: TenantId) -> usize {
    usize::from(tenant_id).min(FDB_MAX_TENANTS)
}

/// True if one more entry would take `count` past `limit`.
#[inline]
fn at_limit(limit: Option<u32>, count: u32) -> bool {
    limit.is_some_and(|limit| count >= limit)
}

#[inline]
fn increment(count: &mut u32) {
    *count = count.saturating_add(1);
}

#[inline]
fn decrement(count: &mut u32) {
    *count = count.saturating_sub(1);
}

/// Tenant in the top 16 bits, MAC in the low 48: one integer compare and cheap to hash.
#[inline]
fn pack_key(tenant_id: TenantId, mac: MacAddr) -> u64 {
    (u64::from(tenant_id) << 48) | mac.to_u64()
}

fn unpack_key(key: u64) -> (TenantId, MacAddr) {
    ((key >> 48) as TenantId, MacAddr::from_u64(key))
}

/// A random odd multiplier, from the standard library's per-process random hash keys.
fn random_multiplier() -> u64 {
    use std::hash::BuildHasher;
    std::collections::hash_map::RandomState::new().hash_one(0x5eed_u64) | 1
}

/// Asks the kernel to back `buckets` with transparent huge pages before they are first
/// touched. A table of a million entries spans 64 MiB: with 4 KiB pages nearly every
/// lookup also misses the TLB, and in a virtual machine a page walk is itself several
/// memory accesses. Measured at 1,000,000 entries: 201 ns per lookup without, 154 with;
/// the whole pipeline at 1,000,000 MACs and 10,000 rules, 140 ns a frame without, 96 with.
/// Only a hint: where huge pages are off, nothing changes.
fn advise_huge_pages(buckets: &mut Vec<Bucket>) {
    const HUGE_PAGE: usize = 2 << 20;
    let bytes = buckets.capacity() * std::mem::size_of::<Bucket>();
    if bytes < HUGE_PAGE {
        return;
    }
    let start = buckets.as_mut_ptr() as usize;
    let aligned = start.next_multiple_of(HUGE_PAGE);
    let end = (start + bytes) / HUGE_PAGE * HUGE_PAGE;
    if aligned >= end {
        return;
    }
    // SAFETY: [aligned, end) lies inside the vector's allocation, which stays mapped as
    // long as the vector; MADV_HUGEPAGE changes how pages are backed, never their contents.
    unsafe {
        libc::madvise(
            aligned as *mut libc::c_void,
            end - aligned,
            libc::MADV_HUGEPAGE,
        );
    }
}

/// Asks the CPU to bring the cache line holding `value` closer; a hint, never a fault.
#[inline]
fn prefetch_line<T>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    {
        let address: *const i8 = (value as *const T).cast();
        // SAFETY: SSE is part of the x86_64 baseline, and a prefetch reads nothing the
        // program sees: it cannot fault, whatever the address (here a live reference).
        unsafe { core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(address) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}

impl Fdb {
    /// A table for up to `capacity` entries.
    ///
    /// # Panics
    /// If memory for `capacity` entries cannot be allocated; bound `fdb_capacity` in config.
    pub fn new(capacity: usize, aging_ns: u64) -> Fdb {
        Self::with_multiplier(capacity, aging_ns, random_multiplier())
    }

    fn with_multiplier(capacity: usize, aging_ns: u64, multiplier: u64) -> Fdb {
        // At most half the ways taken: few buckets overflow (see `Bucket`).
        // At least two, so the shift below stays under 64.
        let bucket_count = capacity
            .saturating_mul(2)
            .div_ceil(WAYS)
            .max(2)
            .checked_next_power_of_two()
            .unwrap_or(1 << (usize::BITS - 1));
        let mut buckets = Vec::with_capacity(bucket_count);
        advise_huge_pages(&mut buckets);
        buckets.resize(bucket_count, Bucket::default());
        Fdb {
            buckets,
            multiplier,
            shift: 64 - bucket_count.trailing_zeros(),
            len: 0,
            capacity,
            aging_ns,
            port_counts: vec![0; MAX_PORTS + 1].into_boxed_slice(),
            tenant_counts: vec![0; FDB_MAX_TENANTS + 1].into_boxed_slice(),
            evict_cursor: 0,
            per_port_limit: None,
            per_tenant_limit: None,
            oldest_seen_ns: u64::MAX,
            storm: StormMeter::default(),
        }
    }

    /// The bucket `key` belongs in.
    #[inline]
    fn home(&self, key: u64) -> usize {
        // The shift is below 64 (there are at least two buckets).
        (key.wrapping_mul(self.multiplier) >> (self.shift & 63)) as usize
    }

    #[inline]
    fn mask(&self) -> usize {
        self.buckets.len() - 1
    }

    /// Where `key` is stored: (bucket, way).
    #[inline]
    fn find(&self, key: u64) -> Option<(usize, usize)> {
        let index = self.home(key);
        let bucket = self.buckets.get(index)?;
        if let Some(way) = bucket.find(key) {
            return Some((index, way));
        }
        if bucket.overflow == 0 {
            return None;
        }
        self.find_beyond(key, index)
    }

    /// [`Fdb::find`] past the home bucket `index`, which overflowed: out of line, since it
    /// is rare.
    #[cold]
    fn find_beyond(&self, key: u64, mut index: usize) -> Option<(usize, usize)> {
        index = (index + 1) & self.mask();
        // Bounded, though the overflow counts end the walk long before.
        for _ in 0..self.buckets.len() {
            let bucket = self.buckets.get(index)?;
            if let Some(way) = bucket.find(key) {
                return Some((index, way));
            }
            if bucket.overflow == 0 {
                return None;
            }
            index = (index + 1) & self.mask();
        }
        None
    }

    /// Stores a key known to be absent; the caller has checked `len < capacity`, so a
    /// free way exists.
    fn insert_new(&mut self, key: u64, port: PortId, is_static: bool, seen: u64) {
        let mask = self.mask();
        let home = self.home(key);
        let mut index = home;
        for _ in 0..self.buckets.len() {
            let Some(bucket) = self.buckets.get_mut(index) else {
                return;
            };
            let free = !bucket.used & ((1 << WAYS) - 1);
            if free != 0 {
                let way = free.trailing_zeros() as usize;
                bucket.used |= 1 << way;
                if is_static {
                    bucket.statics |= 1 << way;
                } else {
                    bucket.statics &= !(1 << way);
                }
                bucket.flowed &= !(1 << way);
                bucket.remotes[way] = 0;
                bucket.keys[way] = key;
                bucket.seen[way] = seen;
                bucket.ports[way] = port;
                self.len += 1;
                if !is_static {
                    self.oldest_seen_ns = self.oldest_seen_ns.min(seen);
                }
                // Every bucket walked past now has one more entry beyond it.
                let mut passed = home;
                while passed != index {
                    if let Some(bucket) = self.buckets.get_mut(passed) {
                        bucket.overflow = bucket.overflow.saturating_add(1);
                    }
                    passed = (passed + 1) & mask;
                }
                return;
            }
            index = (index + 1) & mask;
        }
    }

    /// Empties (bucket, way), which holds `key`.
    fn remove_at(&mut self, index: usize, way: usize, key: u64) {
        let mask = self.mask();
        if let Some(bucket) = self.buckets.get_mut(index) {
            bucket.used &= !(1 << way);
            bucket.statics &= !(1 << way);
            bucket.flowed &= !(1 << way);
        }
        self.len = self.len.saturating_sub(1);
        let mut passed = self.home(key);
        while passed != index {
            if let Some(bucket) = self.buckets.get_mut(passed) {
                bucket.overflow = bucket.overflow.saturating_sub(1);
            }
            passed = (passed + 1) & mask;
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Entries held, including expired dynamic ones not yet reclaimed by [`Fdb::expire`].
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn aging_ns(&self) -> u64 {
        self.aging_ns
    }

    /// Applies to existing entries too: their age is measured against the new limit.
    pub fn set_aging_ns(&mut self, aging_ns: u64) {
        self.aging_ns = aging_ns;
    }

    /// Bounds the entries learned per port and per tenant; `None` is unlimited.
    ///
    /// Takes effect for later learning only: a limit below a current count removes nothing,
    /// it refuses what would add to that count until entries are removed or expire. Static
    /// entries count towards both limits but are never refused by them (only by capacity).
    pub fn set_limits(&mut self, per_port: Option<u32>, per_tenant: Option<u32>) {
        self.per_port_limit = per_port;
        self.per_tenant_limit = per_tenant;
    }

    /// The limits as `(per_port, per_tenant)`, as last given to [`Fdb::set_limits`].
    pub fn limits(&self) -> (Option<u32>, Option<u32>) {
        (self.per_port_limit, self.per_tenant_limit)
    }

    /// Entries (static, dynamic, and expired but not yet reclaimed) bound to `port`. Ports
    /// from `MAX_PORTS` up share one count.
    pub fn port_entries(&self, port: PortId) -> u32 {
        self.port_counts[port_index(port)]
    }

    /// Entries (static, dynamic, and expired but not yet reclaimed) in `tenant_id`. Tenants
    /// from [`FDB_MAX_TENANTS`] up share one count.
    pub fn tenant_entries(&self, tenant_id: TenantId) -> u32 {
        self.tenant_counts[tenant_index(tenant_id)]
    }

    /// Binds `mac` to `port` in `tenant_id` as seen at `now_ns`.
    ///
    /// The limits refuse any learn that would raise a count already at its limit, with
    /// [`Learned::LimitReached`]: a new address raises the port's and the tenant's count; a
    /// move (of a live or an expired entry) raises only the new port's. A refused move
    /// leaves the entry as it was, on its old port and not refreshed, so if the host really
    /// left it ages out, and it is learned again once the new port has room. Refreshing an
    /// entry on its own port, or re-learning an expired one there, raises no count and is
    /// never refused. Limits are checked before capacity.
    #[inline]
    pub fn learn(
        &mut self,
        tenant_id: TenantId,
        mac: MacAddr,
        port: PortId,
        now_ns: u64,
    ) -> Learned {
        let key = pack_key(tenant_id, mac);
        let aging_ns = self.aging_ns;
        let found = self.find(key);
        // Nearly every frame refreshes the live entry of its source on its own port: that
        // case first, the rest out of line.
        if let Some(bucket) = found.and_then(|(index, _)| self.buckets.get_mut(index)) {
            let way = found.map_or(0, |(_, way)| way);
            if bucket.statics & (1 << way) == 0
                && bucket.ports.get(way) == Some(&port)
                && bucket.is_live(way, aging_ns, now_ns)
            {
                if let Some(seen) = bucket.seen.get_mut(way) {
                    *seen = now_ns;
                }
                return Learned::Refreshed;
            }
        }
        self.learn_other(key, found, port, now_ns)
    }

    /// [`Fdb::learn`] for all but a refresh: a new address, a move, a static entry, an
    /// expired one.
    #[inline(never)]
    fn learn_other(
        &mut self,
        key: u64,
        found: Option<(usize, usize)>,
        port: PortId,
        now_ns: u64,
    ) -> Learned {
        let aging_ns = self.aging_ns;
        let (tenant_id, _) = unpack_key(key);
        let port_at_limit = at_limit(self.per_port_limit, self.port_counts[port_index(port)]);
        if let Some((index, way)) = found {
            let Some(bucket) = self.buckets.get_mut(index) else {
                return Learned::Nothing;
            };
            if bucket.statics & (1 << way) != 0 {
                return Learned::StaticKept;
            }
            let was_live = bucket.is_live(way, aging_ns, now_ns);
            let from = bucket.ports[way];
            if from != port {
                if port_at_limit {
                    return Learned::LimitReached;
                }
                decrement(&mut self.port_counts[port_index(from)]);
                increment(&mut self.port_counts[port_index(port)]);
                bucket.remotes[way] = 0;
            }
            bucket.ports[way] = port;
            bucket.seen[way] = now_ns;
            self.oldest_seen_ns = self.oldest_seen_ns.min(now_ns);
            return if !was_live {
                Learned::New
            } else if from == port {
                Learned::Refreshed
            } else {
                Learned::Moved { from }
            };
        }
        if port_at_limit
            || at_limit(
                self.per_tenant_limit,
                self.tenant_counts[tenant_index(tenant_id)],
            )
        {
            return Learned::LimitReached;
        }
        let mut learned = Learned::New;
        if self.len >= self.capacity {
            let Some((from, flow_destination)) = self.evict_busiest() else {
                return Learned::TableFull;
            };
            learned = Learned::Evicted {
                from,
                flow_destination,
            };
        }
        increment(&mut self.port_counts[port_index(port)]);
        increment(&mut self.tenant_counts[tenant_index(tenant_id)]);
        self.insert_new(key, port, false, now_ns);
        learned
    }

    /// Fair learning in a full table: removes a dynamic entry of the port that holds the
    /// most entries, so no port (and so no tenant) can keep the others from learning; a
    /// port spraying source addresses ends up recycling its own entries. Returns that port
    /// and whether a flow entry forwarded to the evicted address. None if no such entry
    /// turns up within [`EVICTION_SCAN`] buckets (the busiest port's entries are static).
    ///
    /// Open vSwitch evicts from the busiest port too; it keeps a list per port to take the
    /// least recently used one, this takes the next one found after the previous eviction,
    /// which costs no memory per entry. Only a full table pays for it: a scan of the port
    /// counts, then a few buckets while the busiest port holds a fair share of the table.
    #[cold]
    fn evict_busiest(&mut self) -> Option<(PortId, bool)> {
        let (busiest, _) = self
            .port_counts
            .iter()
            .enumerate()
            .max_by_key(|(_, count)| **count)?;
        let busiest = PortId::try_from(busiest).ok()?;
        let mask = self.mask();
        for step in 0..EVICTION_SCAN.min(self.buckets.len()) {
            let index = (self.evict_cursor + step) & mask;
            let Some(bucket) = self.buckets.get(index) else {
                continue;
            };
            let candidates = bucket.used & !bucket.statics;
            for way in 0..WAYS {
                if candidates & (1 << way) == 0
                    || port_index(bucket.ports[way]) != usize::from(busiest)
                {
                    continue;
                }
                let entry = bucket.entry(way);
                let flowed = bucket.flowed & (1 << way) != 0;
                self.remove_at(index, way, bucket.keys[way]);
                decrement(&mut self.port_counts[port_index(entry.port)]);
                decrement(&mut self.tenant_counts[tenant_index(entry.tenant_id)]);
                self.evict_cursor = (index + 1) & mask;
                return Some((entry.port, flowed));
            }
        }
        self.evict_cursor = (self.evict_cursor + EVICTION_SCAN) & mask;
        None
    }

    /// Notes that a fast-path flow entry now forwards to `mac`: evicting its entry must
    /// then invalidate the flow entries (a move or a removal does anyway).
    pub fn mark_flow_destination(&mut self, tenant_id: TenantId, mac: MacAddr) {
        if let Some((index, way)) = self.find(pack_key(tenant_id, mac)) {
            if let Some(bucket) = self.buckets.get_mut(index) {
                bucket.flowed |= 1 << way;
            }
        }
    }

    /// The port `mac` was learned on in `tenant_id`, unless unknown or expired at `now_ns`.
    #[inline]
    pub fn lookup(&self, tenant_id: TenantId, mac: MacAddr, now_ns: u64) -> Option<PortId> {
        let (index, way) = self.find(pack_key(tenant_id, mac))?;
        let bucket = self.buckets.get(index)?;
        bucket
            .is_live(way, self.aging_ns, now_ns)
            .then_some(bucket.ports[way])
    }

    /// Starts loading the bucket a lookup or learn of `mac` in `tenant_id` reads first, and
    /// returns at once: issued as soon as a frame's addresses are known, the memory access
    /// overlaps the stages that come before the lookup. In a table of a million entries
    /// nearly every lookup misses the caches; measured with `benches/pipeline.rs`
    /// (1,000,000 MACs, 10,000 rules, frame by frame) at 536 ns per frame without, 304 with.
    #[inline]
    pub fn prefetch(&self, tenant_id: TenantId, mac: MacAddr) {
        if let Some(bucket) = self.buckets.get(self.home(pack_key(tenant_id, mac))) {
            prefetch_line(bucket);
        }
    }

    /// The stored entry for `mac` in `tenant_id`, expired or not.
    pub fn get(&self, tenant_id: TenantId, mac: MacAddr) -> Option<FdbEntry> {
        let (index, way) = self.find(pack_key(tenant_id, mac))?;
        Some(self.buckets.get(index)?.entry(way))
    }

    /// Binds `mac` to `port` permanently, replacing any entry for it.
    pub fn insert_static(
        &mut self,
        tenant_id: TenantId,
        mac: MacAddr,
        port: PortId,
    ) -> Result<(), FdbError> {
        let key = pack_key(tenant_id, mac);
        // Not subject to the per-port and per-tenant limits: the operator asked for it.
        match self.find(key) {
            Some((index, way)) => {
                if let Some(bucket) = self.buckets.get_mut(index) {
                    decrement(&mut self.port_counts[port_index(bucket.ports[way])]);
                    bucket.statics |= 1 << way;
                    bucket.ports[way] = port;
                    bucket.seen[way] = 0;
                    bucket.remotes[way] = 0;
                }
            }
            None if self.len >= self.capacity => return Err(FdbError::TableFull),
            None => {
                increment(&mut self.tenant_counts[tenant_index(tenant_id)]);
                self.insert_new(key, port, true, 0);
            }
        }
        increment(&mut self.port_counts[port_index(port)]);
        Ok(())
    }

    /// Records which remote endpoint (1-based; 0 for none) of tunnel port `port` the entry
    /// for `mac` is behind, if the entry is bound to `port`; true if that changed it. The
    /// worker calls it after learning a frame a tunnel decapsulated, and for static remote
    /// entries.
    pub fn set_remote(
        &mut self,
        tenant_id: TenantId,
        mac: MacAddr,
        port: PortId,
        remote: u8,
    ) -> bool {
        let Some((index, way)) = self.find(pack_key(tenant_id, mac)) else {
            return false;
        };
        match self.buckets.get_mut(index) {
            Some(bucket) if bucket.ports[way] == port && bucket.remotes[way] != remote => {
                bucket.remotes[way] = remote;
                true
            }
            _ => false,
        }
    }

    /// Marks `mac` as seen now if it is learned (dynamically) on `port`, as a frame from
    /// it would; does nothing otherwise (it moved, aged out, or is static). For hosts
    /// whose frames the fast path switches, so the pipeline never sees them.
    pub fn refresh(&mut self, tenant_id: TenantId, mac: MacAddr, port: PortId, now_ns: u64) {
        let Some((index, way)) = self.find(pack_key(tenant_id, mac)) else {
            return;
        };
        let aging_ns = self.aging_ns;
        let Some(bucket) = self.buckets.get_mut(index) else {
            return;
        };
        if bucket.statics & (1 << way) == 0
            && bucket.ports[way] == port
            && bucket.is_live(way, aging_ns, now_ns)
        {
            bucket.seen[way] = bucket.seen[way].max(now_ns);
        }
    }

    /// Removes the entry for `mac` in `tenant_id`, static or not; false if there was none.
    pub fn remove(&mut self, tenant_id: TenantId, mac: MacAddr) -> bool {
        let key = pack_key(tenant_id, mac);
        let Some((index, way)) = self.find(key) else {
            return false;
        };
        let port = self
            .buckets
            .get(index)
            .map_or(0, |bucket| bucket.ports[way]);
        self.remove_at(index, way, key);
        decrement(&mut self.port_counts[port_index(port)]);
        decrement(&mut self.tenant_counts[tenant_index(tenant_id)]);
        true
    }

    /// Removes every entry, static or dynamic, bound to `port`; returns how many.
    pub fn flush_port(&mut self, port: PortId) -> usize {
        self.remove_where(|entry| entry.port == port)
    }

    /// Reclaims dynamic entries expired at `now_ns`; returns how many. A full scan: call it
    /// periodically (about once a second), not per frame.
    ///
    /// Scans only when an entry can have expired (see [`Fdb::sweep_due_ns`]): an idle
    /// switch with a large table must not walk megabytes every second.
    pub fn expire(&mut self, now_ns: u64) -> usize {
        if now_ns < self.sweep_due_ns() {
            return 0;
        }
        let aging_ns = self.aging_ns;
        let removed = self.remove_where(|entry| {
            !entry.is_static && now_ns.saturating_sub(entry.last_seen_ns) >= aging_ns
        });
        self.oldest_seen_ns = self
            .iter()
            .filter(|entry| !entry.is_static)
            .map(|entry| entry.last_seen_ns)
            .min()
            .unwrap_or(u64::MAX);
        removed
    }

    /// The earliest time at which some dynamic entry can have expired; `u64::MAX` when
    /// there is none. Built on a lower bound of every dynamic entry's last-seen time, which
    /// stays a lower bound because refreshes only raise last-seen times.
    pub fn sweep_due_ns(&self) -> u64 {
        self.oldest_seen_ns.saturating_add(self.aging_ns)
    }

    /// Removes the entries `doomed` picks, keeping the counts in step; returns how many.
    fn remove_where(&mut self, mut doomed: impl FnMut(&FdbEntry) -> bool) -> usize {
        let mut removed = 0;
        for index in 0..self.buckets.len() {
            for way in 0..WAYS {
                let Some(bucket) = self.buckets.get(index) else {
                    continue;
                };
                if bucket.used & (1 << way) == 0 {
                    continue;
                }
                let entry = bucket.entry(way);
                if !doomed(&entry) {
                    continue;
                }
                self.remove_at(index, way, bucket.keys[way]);
                decrement(&mut self.port_counts[port_index(entry.port)]);
                decrement(&mut self.tenant_counts[tenant_index(entry.tenant_id)]);
                removed += 1;
            }
        }
        removed
    }

    /// Every stored entry, expired or not, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = FdbEntry> + '_ {
        self.buckets.iter().flat_map(|bucket| {
            (0..WAYS)
                .filter(move |&way| bucket.used & (1 << way) != 0)
                .map(move |way| bucket.entry(way))
        })
    }

    /// How many entries fit without reallocating; must never change after `new`.
    #[cfg(test)]
    fn allocated_capacity(&self) -> usize {
        self.buckets.capacity() * WAYS
    }

    /// Recomputes every bucket's overflow count from where its entries are and compares.
    #[cfg(test)]
    fn check_overflow_counts(&self) -> Result<(), String> {
        let mut expected = vec![0u32; self.buckets.len()];
        for (index, bucket) in self.buckets.iter().enumerate() {
            for way in (0..WAYS).filter(|way| bucket.used & (1 << way) != 0) {
                let mut passed = self.home(bucket.keys[way]);
                while passed != index {
                    expected[passed] += 1;
                    passed = (passed + 1) & self.mask();
                }
            }
        }
        let actual: Vec<u32> = self.buckets.iter().map(|bucket| bucket.overflow).collect();
        if actual != expected {
            return Err(format!("overflow counts {actual:?}, expected {expected:?}"));
        }
        Ok(())
    }

    /// Recounts the entries per port and per tenant over [`Fdb::iter`] and compares every
    /// counter with the recount.
    #[cfg(test)]
    fn check_counts(&self) -> Result<(), String> {
        let mut ports = vec![0u32; self.port_counts.len()];
        let mut tenant_ids = vec![0u32; self.tenant_counts.len()];
        for entry in self.iter() {
            ports[port_index(entry.port)] += 1;
            tenant_ids[tenant_index(entry.tenant_id)] += 1;
        }
        if *ports != *self.port_counts {
            return Err(format!(
                "port counts drifted: {:?}",
                diff(&ports, &self.port_counts)
            ));
        }
        if *tenant_ids != *self.tenant_counts {
            return Err(format!(
                "tenant_id counts drifted: {:?}",
                diff(&tenant_ids, &self.tenant_counts)
            ));
        }
        Ok(())
    }
}

/// `(index, recounted, stored)` wherever the two disagree.
#[cfg(test)]
fn diff(recounted: &[u32], stored: &[u32]) -> Vec<(usize, u32, u32)> {
    recounted
        .iter()
        .zip(stored)
        .enumerate()
        .filter(|(_, (a, b))| a != b)
        .map(|(i, (a, b))| (i, *a, *b))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    const AGING: u64 = 1_000;

    fn mac(n: u8) -> MacAddr {
        MacAddr([0x02, 0, 0, 0, 0, n])
    }

    #[test]
    fn learns_then_refreshes() {
        let mut fdb = Fdb::new(16, AGING);
        assert_eq!(fdb.lookup(0, mac(1), 0), None);
        assert_eq!(fdb.learn(0, mac(1), 3, 10), Learned::New);
        assert_eq!(fdb.lookup(0, mac(1), 10), Some(3));
        assert_eq!(fdb.learn(0, mac(1), 3, 20), Learned::Refreshed);
        assert_eq!(fdb.get(0, mac(1)).unwrap().last_seen_ns, 20);
        assert_eq!(fdb.len(), 1);
    }

    #[test]
    fn host_moving_ports_is_reported_and_followed() {
        let mut fdb = Fdb::new(16, AGING);
        fdb.learn(0, mac(1), 1, 0);
        assert_eq!(fdb.learn(0, mac(1), 2, 5), Learned::Moved { from: 1 });
        assert_eq!(fdb.lookup(0, mac(1), 5), Some(2));
        assert_eq!(fdb.len(), 1);
    }

    #[test]
    fn dynamic_entry_disappears_after_aging_time() {
        let mut fdb = Fdb::new(16, AGING);
        fdb.learn(0, mac(1), 1, 100);
        assert_eq!(fdb.lookup(0, mac(1), 100 + AGING - 1), Some(1));
        assert_eq!(fdb.lookup(0, mac(1), 100 + AGING), None);
        assert_eq!(fdb.expire(100 + AGING - 1), 0);
        assert_eq!(fdb.expire(100 + AGING), 1);
        assert!(fdb.is_empty());
    }

    #[test]
    fn refresh_postpones_aging() {
        let mut fdb = Fdb::new(16, AGING);
        fdb.learn(0, mac(1), 1, 0);
        fdb.learn(0, mac(1), 1, AGING - 1);
        assert_eq!(fdb.lookup(0, mac(1), AGING + 10), Some(1));
    }

    #[test]
    fn expired_entry_is_learned_as_new() {
        let mut fdb = Fdb::new(16, AGING);
        fdb.learn(0, mac(1), 1, 0);
        assert_eq!(fdb.learn(0, mac(1), 2, AGING), Learned::New);
        assert_eq!(fdb.lookup(0, mac(1), AGING), Some(2));
    }

    #[test]
    fn static_entries_never_age_nor_yield_to_learning() {
        let mut fdb = Fdb::new(16, AGING);
        fdb.insert_static(0, mac(1), 4).unwrap();
        assert_eq!(fdb.lookup(0, mac(1), u64::MAX), Some(4));
        assert_eq!(fdb.expire(u64::MAX), 0);
        assert_eq!(fdb.learn(0, mac(1), 5, 10), Learned::StaticKept);
        assert_eq!(fdb.get(0, mac(1)).unwrap().port, 4);
        assert_eq!(fdb.get(0, mac(1)).unwrap().last_seen_ns, 0);
    }

    #[test]
    fn static_insert_replaces_learned_entry() {
        let mut fdb = Fdb::new(16, AGING);
        fdb.learn(0, mac(1), 1, 0);
        fdb.insert_static(0, mac(1), 2).unwrap();
        let entry = fdb.get(0, mac(1)).unwrap();
        assert!(entry.is_static);
        assert_eq!(entry.port, 2);
        assert_eq!(fdb.len(), 1);
    }

    #[test]
    fn aging_change_applies_to_existing_entries() {
        let mut fdb = Fdb::new(16, AGING);
        fdb.learn(0, mac(1), 1, 0);
        fdb.set_aging_ns(10);
        assert_eq!(fdb.aging_ns(), 10);
        assert_eq!(fdb.lookup(0, mac(1), 10), None);
    }

    #[test]
    fn clock_stepping_back_keeps_entry_live() {
        let mut fdb = Fdb::new(16, AGING);
        fdb.learn(0, mac(1), 1, 5_000);
        assert_eq!(fdb.lookup(0, mac(1), 0), Some(1));
        assert_eq!(fdb.expire(0), 0);
    }

    #[test]
    fn a_full_table_makes_room_from_the_busiest_port() {
        let mut fdb = Fdb::new(2, AGING);
        assert_eq!(fdb.learn(0, mac(1), 1, 0), Learned::New);
        assert_eq!(fdb.learn(0, mac(2), 1, 0), Learned::New);
        assert_eq!(
            fdb.learn(0, mac(3), 2, 0),
            Learned::Evicted {
                from: 1,
                flow_destination: false
            }
        );
        assert_eq!(fdb.len(), 2);
        assert_eq!(fdb.lookup(0, mac(3), 0), Some(2));
        assert_eq!(fdb.port_entries(1), 1);
        assert_counts(&fdb);
        // Static entries never give way, and a static insert never evicts.
        assert_eq!(fdb.insert_static(0, mac(4), 1), Err(FdbError::TableFull));
        assert_counts(&fdb);
    }

    #[test]
    fn a_port_spraying_addresses_recycles_its_own_entries_and_others_still_learn() {
        let mut fdb = Fdb::new(100, AGING);
        let sprayed = |n: u64| MacAddr::from_u64(0x0200_0000_0000 | n);
        for n in 0..1_000 {
            let learned = fdb.learn(0, sprayed(n), 9, n);
            assert!(
                matches!(learned, Learned::New | Learned::Evicted { from: 9, .. }),
                "{learned:?}"
            );
        }
        assert_eq!(fdb.len(), 100);
        // A host on another port, in another tenant: learned, at the sprayer's expense.
        assert_eq!(
            fdb.learn(7, mac(1), 1, 2_000),
            Learned::Evicted {
                from: 9,
                flow_destination: false
            }
        );
        assert_eq!(fdb.lookup(7, mac(1), 2_000), Some(1));
        assert_eq!(fdb.port_entries(9), 99);
        assert_counts(&fdb);
    }

    #[test]
    fn evicting_a_flow_destination_says_so() {
        let mut fdb = Fdb::new(1, AGING);
        fdb.learn(0, mac(1), 1, 0);
        fdb.mark_flow_destination(0, mac(1));
        assert_eq!(
            fdb.learn(0, mac(2), 2, 0),
            Learned::Evicted {
                from: 1,
                flow_destination: true
            }
        );
        // The mark went with the entry.
        assert_eq!(
            fdb.learn(0, mac(3), 3, 0),
            Learned::Evicted {
                from: 2,
                flow_destination: false
            }
        );
    }

    #[test]
    fn a_table_of_static_entries_refuses_learning() {
        let mut fdb = Fdb::new(1, AGING);
        assert_eq!(fdb.insert_static(0, mac(1), 1), Ok(()));
        assert_eq!(fdb.learn(0, mac(2), 2, 0), Learned::TableFull);
    }

    #[test]
    fn zero_capacity_learns_nothing() {
        let mut fdb = Fdb::new(0, AGING);
        assert_eq!(fdb.learn(0, mac(1), 1, 0), Learned::TableFull);
        assert!(fdb.is_empty());
    }

    #[test]
    fn churn_at_capacity_never_reallocates() {
        // 7/8 of a power of two: the std table's own load limit, the worst case for tombstones.
        let capacity = 1792;
        let mut fdb = Fdb::new(capacity, AGING);
        let allocated = fdb.allocated_capacity();
        let address = |n: u64| MacAddr::from_u64(0x0200_0000_0000 | n);
        for n in 0..capacity as u64 {
            assert_eq!(fdb.learn(0, address(n), 1, 0), Learned::New);
        }
        // Each removal leaves a tombstone; enough of them force the table to reclaim space.
        for n in capacity as u64..50 * capacity as u64 {
            assert!(fdb.remove(0, address(n - capacity as u64)));
            assert_eq!(fdb.learn(0, address(n), 1, 0), Learned::New);
            assert!(fdb.allocated_capacity() <= allocated, "reallocated at {n}");
        }
        assert_eq!(fdb.len(), capacity);
    }

    #[test]
    fn flush_port_removes_static_and_dynamic_entries_of_that_port_only() {
        let mut fdb = Fdb::new(16, AGING);
        fdb.learn(0, mac(1), 1, 0);
        fdb.learn(1, mac(2), 1, 0);
        fdb.insert_static(0, mac(3), 1).unwrap();
        fdb.learn(0, mac(4), 2, 0);
        assert_eq!(fdb.flush_port(1), 3);
        assert_eq!(fdb.len(), 1);
        assert_eq!(fdb.lookup(0, mac(4), 0), Some(2));
        assert_eq!(fdb.flush_port(1), 0);
    }

    #[test]
    fn remove_reports_whether_an_entry_existed() {
        let mut fdb = Fdb::new(16, AGING);
        fdb.insert_static(0, mac(1), 1).unwrap();
        assert!(fdb.remove(0, mac(1)));
        assert!(!fdb.remove(0, mac(1)));
        assert_eq!(fdb.lookup(0, mac(1), 0), None);
    }

    #[test]
    fn tenants_are_isolated() {
        let mut fdb = Fdb::new(16, AGING);
        assert_eq!(fdb.learn(0, mac(1), 1, 0), Learned::New);
        assert_eq!(fdb.lookup(1, mac(1), 0), None);
        assert_eq!(fdb.learn(1, mac(1), 2, 0), Learned::New);
        assert_eq!(fdb.len(), 2);
        assert_eq!(fdb.lookup(0, mac(1), 0), Some(1));
        assert_eq!(fdb.lookup(1, mac(1), 0), Some(2));
        assert!(fdb.remove(1, mac(1)));
        assert_eq!(fdb.lookup(0, mac(1), 0), Some(1));
    }

    #[test]
    fn iter_reports_every_field() {
        let mut fdb = Fdb::new(16, AGING);
        let far = MacAddr([0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54]);
        fdb.learn(u16::MAX, far, 7, 42);
        fdb.insert_static(3, mac(9), 8).unwrap();
        let mut entries: Vec<FdbEntry> = fdb.iter().collect();
        entries.sort_by_key(|e| e.tenant_id);
        assert_eq!(
            entries,
            [
                FdbEntry {
                    tenant_id: 3,
                    mac: mac(9),
                    port: 8,
                    is_static: true,
                    last_seen_ns: 0,
                    remote: 0,
                },
                FdbEntry {
                    tenant_id: u16::MAX,
                    mac: far,
                    port: 7,
                    is_static: false,
                    last_seen_ns: 42,
                    remote: 0,
                },
            ]
        );
    }

    fn assert_counts(fdb: &Fdb) {
        if let Err(drift) = fdb.check_counts() {
            panic!("{drift}");
        }
    }

    #[test]
    fn no_limits_by_default() {
        let fdb = Fdb::new(16, AGING);
        assert_eq!(fdb.limits(), (None, None));
    }

    #[test]
    fn port_limit_refuses_one_more_address_on_that_port_only() {
        let mut fdb = Fdb::new(16, AGING);
        fdb.set_limits(Some(2), None);
        assert_eq!(fdb.limits(), (Some(2), None));
        assert_eq!(fdb.learn(0, mac(1), 1, 0), Learned::New);
        assert_eq!(fdb.learn(0, mac(2), 1, 0), Learned::New);
        assert_eq!(fdb.learn(0, mac(3), 1, 0), Learned::LimitReached);
        assert_eq!(fdb.get(0, mac(3)), None);
        assert_eq!(fdb.port_entries(1), 2);
        // Same tenant, another port: room.
        assert_eq!(fdb.learn(0, mac(3), 2, 0), Learned::New);
        // Another tenant, same port: the port is still full.
        assert_eq!(fdb.learn(1, mac(4), 1, 0), Learned::LimitReached);
        // Known addresses on the full port are refreshed.
        assert_eq!(fdb.learn(0, mac(1), 1, 10), Learned::Refreshed);
        assert_eq!(fdb.get(0, mac(1)).unwrap().last_seen_ns, 10);
        assert_eq!(fdb.port_entries(1), 2);
        assert_eq!(fdb.port_entries(2), 1);
        assert_eq!(fdb.tenant_entries(0), 3);
        assert_eq!(fdb.tenant_entries(1), 0);
        assert_counts(&fdb);
    }

    #[test]
    fn tenant_limit_counts_across_ports_of_the_tenant_only() {
        let mut fdb = Fdb::new(16, AGING);
        fdb.set_limits(None, Some(2));
        assert_eq!(fdb.learn(7, mac(1), 1, 0), Learned::New);
        assert_eq!(fdb.learn(7, mac(2), 2, 0), Learned::New);
        assert_eq!(fdb.learn(7, mac(3), 3, 0), Learned::LimitReached);
        assert_eq!(fdb.tenant_entries(7), 2);
        // Another tenant has its own count, even on the same ports.
        assert_eq!(fdb.learn(8, mac(3), 1, 0), Learned::New);
        assert_eq!(fdb.learn(8, mac(4), 2, 0), Learned::New);
        assert_eq!(fdb.tenant_entries(8), 2);
        // A move stays in its tenant: not refused by the tenant limit.
        assert_eq!(fdb.learn(7, mac(1), 3, 5), Learned::Moved { from: 1 });
        assert_eq!(fdb.tenant_entries(7), 2);
        assert_eq!(fdb.port_entries(3), 1);
        assert_counts(&fdb);
    }

    #[test]
    fn both_limits_apply_together() {
        let mut fdb = Fdb::new(16, AGING);
        fdb.set_limits(Some(1), Some(2));
        assert_eq!(fdb.learn(0, mac(1), 1, 0), Learned::New);
        assert_eq!(fdb.learn(0, mac(2), 1, 0), Learned::LimitReached);
        assert_eq!(fdb.learn(0, mac(2), 2, 0), Learned::New);
        assert_eq!(fdb.learn(0, mac(3), 3, 0), Learned::LimitReached);
        assert_counts(&fdb);
    }

    #[test]
    fn limit_is_checked_before_capacity() {
        let mut fdb = Fdb::new(1, AGING);
        fdb.set_limits(Some(1), None);
        assert_eq!(fdb.learn(0, mac(1), 1, 0), Learned::New);
        assert_eq!(fdb.learn(0, mac(2), 1, 0), Learned::LimitReached);
        assert_eq!(
            fdb.learn(0, mac(2), 2, 0),
            Learned::Evicted {
                from: 1,
                flow_destination: false
            }
        );
    }

    #[test]
    fn zero_limit_learns_nothing() {
        let mut fdb = Fdb::new(16, AGING);
        fdb.set_limits(Some(0), None);
        assert_eq!(fdb.learn(0, mac(1), 1, 0), Learned::LimitReached);
        fdb.set_limits(None, Some(0));
        assert_eq!(fdb.learn(0, mac(1), 1, 0), Learned::LimitReached);
        assert!(fdb.is_empty());
    }

    #[test]
    fn remove_expire_and_flush_free_room() {
        let mut fdb = Fdb::new(16, AGING);
        fdb.set_limits(Some(2), Some(3));
        fdb.learn(0, mac(1), 1, 0);
        fdb.learn(0, mac(2), 1, 500);
        assert_eq!(fdb.learn(0, mac(3), 1, 500), Learned::LimitReached);

        assert!(fdb.remove(0, mac(1)));
        assert_eq!(fdb.port_entries(1), 1);
        assert_eq!(fdb.learn(0, mac(3), 1, 600), Learned::New);
        assert_eq!(fdb.learn(0, mac(4), 2, 600), Learned::New);
        assert_eq!(
            fdb.learn(0, mac(5), 2, 600),
            Learned::LimitReached,
            "tenant_id full"
        );

        // mac(2) expires at 1500; until reclaimed it still counts.
        assert_eq!(fdb.learn(0, mac(5), 1, 1_500), Learned::LimitReached);
        assert_eq!(fdb.expire(1_500), 1);
        assert_eq!((fdb.port_entries(1), fdb.tenant_entries(0)), (1, 2));
        assert_eq!(fdb.learn(0, mac(5), 1, 1_500), Learned::New);

        assert_eq!(fdb.flush_port(1), 2);
        assert_eq!((fdb.port_entries(1), fdb.tenant_entries(0)), (0, 1));
        assert_eq!(fdb.learn(0, mac(6), 1, 1_500), Learned::New);
        assert_eq!(fdb.learn(0, mac(7), 1, 1_500), Learned::New);
        assert_counts(&fdb);
    }

    #[test]
    fn lowering_a_limit_keeps_entries_and_refuses_new_ones_until_below() {
        let mut fdb = Fdb::new(16, AGING);
        for n in 1..=4 {
            assert_eq!(fdb.learn(0, mac(n), 1, 0), Learned::New);
        }
        fdb.set_limits(Some(2), None);
        assert_eq!(fdb.port_entries(1), 4);
        for n in 1..=4 {
            assert_eq!(fdb.lookup(0, mac(n), 0), Some(1));
            assert_eq!(fdb.learn(0, mac(n), 1, 1), Learned::Refreshed);
        }
        assert_eq!(fdb.learn(0, mac(5), 1, 1), Learned::LimitReached);
        fdb.remove(0, mac(1));
        fdb.remove(0, mac(2));
        assert_eq!(
            fdb.learn(0, mac(5), 1, 1),
            Learned::LimitReached,
            "2 left, limit 2"
        );
        fdb.remove(0, mac(3));
        assert_eq!(fdb.learn(0, mac(5), 1, 1), Learned::New);
        assert_eq!(fdb.learn(0, mac(6), 1, 1), Learned::LimitReached);
        // Raising it again lets learning resume.
        fdb.set_limits(None, None);
        assert_eq!(fdb.learn(0, mac(6), 1, 1), Learned::New);
        assert_counts(&fdb);
    }

    #[test]
    fn expired_entry_relearned_on_its_full_port_is_not_refused() {
        let mut fdb = Fdb::new(16, AGING);
        fdb.learn(0, mac(1), 1, 0);
        fdb.learn(0, mac(2), 1, 0);
        fdb.set_limits(Some(1), Some(1));
        // Still stored and counted: re-learning it there adds nothing to either count.
        assert_eq!(fdb.learn(0, mac(1), 1, AGING), Learned::New);
        assert_eq!(fdb.lookup(0, mac(1), AGING), Some(1));
        assert_eq!((fdb.port_entries(1), fdb.tenant_entries(0)), (2, 2));
        assert_counts(&fdb);
    }

    #[test]
    fn move_onto_a_full_port_is_refused_and_entry_stays_put() {
        let mut fdb = Fdb::new(16, AGING);
        fdb.set_limits(Some(1), None);
        fdb.learn(0, mac(1), 1, 0);
        fdb.learn(0, mac(2), 2, 0);
        assert_eq!(fdb.learn(0, mac(1), 2, 10), Learned::LimitReached);
        // Untouched: old port, old timestamp, so it ages out if the host really left.
        let entry = fdb.get(0, mac(1)).unwrap();
        assert_eq!((entry.port, entry.last_seen_ns), (1, 0));
        assert_eq!(fdb.lookup(0, mac(1), AGING), None);
        assert_eq!((fdb.port_entries(1), fdb.port_entries(2)), (1, 1));
        // An expired entry moving onto the full port is refused as well.
        assert_eq!(fdb.learn(0, mac(1), 2, AGING), Learned::LimitReached);
        assert_eq!(fdb.get(0, mac(1)).unwrap().port, 1);
        // Once the new port has room, the host is followed.
        fdb.remove(0, mac(2));
        assert_eq!(fdb.learn(0, mac(1), 2, AGING), Learned::New);
        assert_eq!((fdb.port_entries(1), fdb.port_entries(2)), (0, 1));
        assert_counts(&fdb);
    }

    #[test]
    fn move_updates_both_port_counts() {
        let mut fdb = Fdb::new(16, AGING);
        fdb.set_limits(Some(1), None);
        fdb.learn(0, mac(1), 1, 0);
        assert_eq!(fdb.learn(0, mac(1), 2, 5), Learned::Moved { from: 1 });
        assert_eq!((fdb.port_entries(1), fdb.port_entries(2)), (0, 1));
        assert_eq!(fdb.learn(0, mac(2), 1, 5), Learned::New);
        assert_counts(&fdb);
    }

    #[test]
    fn static_inserts_ignore_limits_but_count() {
        let mut fdb = Fdb::new(4, AGING);
        fdb.set_limits(Some(1), Some(1));
        fdb.insert_static(0, mac(1), 1).unwrap();
        fdb.insert_static(0, mac(2), 1).unwrap();
        assert_eq!((fdb.port_entries(1), fdb.tenant_entries(0)), (2, 2));
        assert_eq!(fdb.learn(0, mac(3), 1, 0), Learned::LimitReached);
        assert_eq!(
            fdb.learn(0, mac(3), 2, 0),
            Learned::LimitReached,
            "tenant_id full"
        );
        assert_eq!(fdb.learn(0, mac(1), 2, 0), Learned::StaticKept);
        // Replacing moves the count between ports, without growing the tenant's.
        fdb.insert_static(0, mac(2), 3).unwrap();
        assert_eq!((fdb.port_entries(1), fdb.port_entries(3)), (1, 1));
        assert_eq!(fdb.tenant_entries(0), 2);
        // Replacing a learned entry keeps one count.
        fdb.set_limits(None, None);
        fdb.learn(1, mac(9), 5, 0);
        fdb.set_limits(Some(1), Some(1));
        fdb.insert_static(1, mac(9), 6).unwrap();
        assert_eq!((fdb.port_entries(5), fdb.port_entries(6)), (0, 1));
        assert_eq!(fdb.tenant_entries(1), 1);
        // Capacity still binds.
        fdb.insert_static(2, mac(1), 1).unwrap();
        assert_eq!(fdb.insert_static(2, mac(2), 1), Err(FdbError::TableFull));
        assert_counts(&fdb);
    }

    #[test]
    fn ids_beyond_the_counters_share_one_and_never_panic() {
        let mut fdb = Fdb::new(16, AGING);
        fdb.set_limits(Some(2), Some(3));
        let big_port = MAX_PORTS as PortId;
        let big_tenant = FDB_MAX_TENANTS as TenantId;
        assert_eq!(fdb.learn(u16::MAX, mac(1), PortId::MAX, 0), Learned::New);
        assert_eq!(fdb.learn(big_tenant, mac(2), big_port, 0), Learned::New);
        assert_eq!(
            fdb.learn(big_tenant, mac(3), big_port + 1, 0),
            Learned::LimitReached
        );
        assert_eq!(fdb.learn(big_tenant + 1, mac(3), 1, 0), Learned::New);
        assert_eq!(
            fdb.learn(big_tenant + 2, mac(4), 2, 0),
            Learned::LimitReached
        );
        assert_eq!(fdb.port_entries(big_port), 2);
        assert_eq!(fdb.tenant_entries(u16::MAX), 3);
        assert_eq!(fdb.port_entries(MAX_PORTS as PortId - 1), 0);
        assert_eq!(fdb.tenant_entries(FDB_MAX_TENANTS as TenantId - 1), 0);
        assert_counts(&fdb);
        assert_eq!(fdb.flush_port(PortId::MAX), 1);
        assert_eq!(fdb.expire(AGING), 2);
        assert_eq!(
            (fdb.port_entries(big_port), fdb.tenant_entries(big_tenant)),
            (0, 0)
        );
        assert_counts(&fdb);
    }

    #[test]
    fn removing_what_is_not_there_never_underflows() {
        let mut fdb = Fdb::new(16, AGING);
        assert!(!fdb.remove(0, mac(1)));
        assert_eq!(fdb.flush_port(1), 0);
        assert_eq!(fdb.expire(u64::MAX), 0);
        assert_eq!((fdb.port_entries(1), fdb.tenant_entries(0)), (0, 0));
        assert_counts(&fdb);
    }

    #[test]
    fn churn_under_limits_keeps_counts_exact() {
        let mut fdb = Fdb::new(64, AGING);
        fdb.set_limits(Some(5), Some(20));
        let allocated = fdb.allocated_capacity();
        for n in 0..5_000u64 {
            let address = MacAddr::from_u64(0x0200_0000_0000 | (n % 97));
            let port = (n % 7) as PortId;
            let tenant_id = (n % 3) as TenantId;
            fdb.learn(tenant_id, address, port, n * 37);
            if n % 11 == 0 {
                fdb.remove((n % 5) as TenantId, address);
            }
            if n % 101 == 0 {
                fdb.expire(n * 37);
            }
            if n % 499 == 0 {
                fdb.flush_port((n % 7) as PortId);
            }
            assert!(fdb.port_entries(port) <= 5);
            assert!(fdb.tenant_entries(tenant_id) <= 20);
        }
        assert!(fdb.allocated_capacity() <= allocated);
        assert_counts(&fdb);
    }

    /// Deliberately naive restatement of the table's contract.
    struct Model {
        entries: BTreeMap<(TenantId, MacAddr), (PortId, bool, u64)>,
        capacity: usize,
        aging_ns: u64,
        per_port: Option<u32>,
        per_tenant: Option<u32>,
    }

    impl Model {
        fn live(&self, (_, is_static, seen): (PortId, bool, u64), now: u64) -> bool {
            is_static || now - seen < self.aging_ns
        }

        fn on_port(&self, port: PortId) -> usize {
            self.entries.values().filter(|e| e.0 == port).count()
        }

        fn in_tenant(&self, tenant_id: TenantId) -> usize {
            self.entries.keys().filter(|k| k.0 == tenant_id).count()
        }

        /// Whether one more entry fits under `limit` given `count`.
        fn room(limit: Option<u32>, count: usize) -> bool {
            limit.is_none_or(|limit| count < limit as usize)
        }

        fn learn(&mut self, key: (TenantId, MacAddr), port: PortId, now: u64) -> Learned {
            match self.entries.get(&key).copied() {
                Some((_, true, _)) => Learned::StaticKept,
                Some(old) if old.0 == port && self.live(old, now) => {
                    self.entries.insert(key, (port, false, now));
                    Learned::Refreshed
                }
                Some(old) => {
                    if old.0 != port && !Self::room(self.per_port, self.on_port(port)) {
                        return Learned::LimitReached;
                    }
                    self.entries.insert(key, (port, false, now));
                    if !self.live(old, now) {
                        Learned::New
                    } else {
                        Learned::Moved { from: old.0 }
                    }
                }
                None if !Self::room(self.per_port, self.on_port(port))
                    || !Self::room(self.per_tenant, self.in_tenant(key.0)) =>
                {
                    Learned::LimitReached
                }
                None if self.entries.len() >= self.capacity => {
                    // Fairness: the port holding the most entries (the last of
                    // equals, as the table counts) gives up a dynamic one, which
                    // the caller removes (it knows which one the table chose).
                    let Some(busiest) = (0..3).max_by_key(|p| self.on_port(*p)) else {
                        return Learned::TableFull;
                    };
                    let has_dynamic = self.entries.values().any(|e| e.0 == busiest && !e.1);
                    if self.capacity == 0 || !has_dynamic {
                        return Learned::TableFull;
                    }
                    self.entries.insert(key, (port, false, now));
                    Learned::Evicted {
                        from: busiest,
                        flow_destination: false,
                    }
                }
                None => {
                    self.entries.insert(key, (port, false, now));
                    Learned::New
                }
            }
        }

        fn lookup(&self, key: (TenantId, MacAddr), now: u64) -> Option<PortId> {
            let entry = *self.entries.get(&key)?;
            self.live(entry, now).then_some(entry.0)
        }
    }

    #[derive(Clone, Debug)]
    enum Op {
        Learn(TenantId, u8, PortId),
        Lookup(TenantId, u8),
        Remove(TenantId, u8),
        InsertStatic(TenantId, u8, PortId),
        FlushPort(PortId),
        Expire,
        SetLimits(Option<u32>, Option<u32>),
    }

    fn limit() -> impl Strategy<Value = Option<u32>> {
        prop_oneof![1 => Just(None), 3 => (0..5u32).prop_map(Some)]
    }

    fn op(addresses: u8) -> impl Strategy<Value = Op> {
        let tenant_id = 0..2u16;
        let address = 0..addresses;
        let port = 0..3u16;
        prop_oneof![
            6 => (tenant_id.clone(), address.clone(), port.clone()).prop_map(|(d, m, p)| Op::Learn(d, m, p)),
            4 => (tenant_id.clone(), address.clone()).prop_map(|(d, m)| Op::Lookup(d, m)),
            1 => (tenant_id.clone(), address.clone()).prop_map(|(d, m)| Op::Remove(d, m)),
            1 => (tenant_id, address, port.clone()).prop_map(|(d, m, p)| Op::InsertStatic(d, m, p)),
            1 => port.prop_map(Op::FlushPort),
            1 => Just(Op::Expire),
            1 => (limit(), limit()).prop_map(|(p, d)| Op::SetLimits(p, d)),
        ]
    }

    /// Runs `steps` on `fdb` and on the model side by side, comparing every answer, the
    /// whole contents and the counts after each step.
    fn agrees_with_model(
        mut fdb: Fdb,
        steps: Vec<(u64, Op)>,
        (per_port, per_tenant): (Option<u32>, Option<u32>),
    ) -> Result<(), TestCaseError> {
        let capacity = fdb.capacity();
        let aging_ns = fdb.aging_ns();
        fdb.set_limits(per_port, per_tenant);
        let mut model = Model {
            entries: BTreeMap::new(),
            capacity,
            aging_ns,
            per_port,
            per_tenant,
        };
        let mut now = 0u64;
        for (advance, op) in steps {
            now += advance;
            match op {
                Op::Learn(d, m, p) => {
                    let learned = fdb.learn(d, mac(m), p, now);
                    prop_assert_eq!(learned, model.learn((d, mac(m)), p, now));
                    if let Learned::Evicted { from, .. } = learned {
                        // Which entry of `from` went is the table's choice.
                        let victim = model
                            .entries
                            .iter()
                            .find(|(k, e)| e.0 == from && !e.1 && fdb.get(k.0, k.1).is_none())
                            .map(|(k, _)| *k);
                        prop_assert!(victim.is_some(), "no entry of port {} was evicted", from);
                        if let Some(victim) = victim {
                            model.entries.remove(&victim);
                        }
                    }
                }
                Op::Lookup(d, m) => {
                    prop_assert_eq!(fdb.lookup(d, mac(m), now), model.lookup((d, mac(m)), now));
                }
                Op::Remove(d, m) => {
                    prop_assert_eq!(
                        fdb.remove(d, mac(m)),
                        model.entries.remove(&(d, mac(m))).is_some()
                    );
                }
                Op::InsertStatic(d, m, p) => {
                    let key = (d, mac(m));
                    let expected =
                        if model.entries.contains_key(&key) || model.entries.len() < capacity {
                            model.entries.insert(key, (p, true, 0));
                            Ok(())
                        } else {
                            Err(FdbError::TableFull)
                        };
                    prop_assert_eq!(fdb.insert_static(d, mac(m), p), expected);
                }
                Op::FlushPort(p) => {
                    let before = model.entries.len();
                    model.entries.retain(|_, e| e.0 != p);
                    prop_assert_eq!(fdb.flush_port(p), before - model.entries.len());
                }
                Op::Expire => {
                    let before = model.entries.len();
                    let live: BTreeMap<_, _> = model
                        .entries
                        .iter()
                        .filter(|(_, e)| model.live(**e, now))
                        .map(|(k, e)| (*k, *e))
                        .collect();
                    model.entries = live;
                    prop_assert_eq!(fdb.expire(now), before - model.entries.len());
                }
                Op::SetLimits(p, d) => {
                    fdb.set_limits(p, d);
                    (model.per_port, model.per_tenant) = (p, d);
                    prop_assert_eq!(fdb.limits(), (p, d));
                }
            }
            let mut actual: Vec<_> = fdb
                .iter()
                .map(|e| ((e.tenant_id, e.mac), (e.port, e.is_static, e.last_seen_ns)))
                .collect();
            actual.sort_unstable();
            let expected: Vec<_> = model.entries.iter().map(|(k, e)| (*k, *e)).collect();
            prop_assert_eq!(actual, expected);
            prop_assert_eq!(fdb.len(), model.entries.len());
            prop_assert!(fdb.len() <= capacity);
            // Every stored entry is found where a lookup looks for it.
            for entry in fdb.iter() {
                prop_assert_eq!(fdb.get(entry.tenant_id, entry.mac), Some(entry));
            }
            fdb.check_overflow_counts().map_err(TestCaseError::fail)?;
            if let Err(drift) = fdb.check_counts() {
                return Err(TestCaseError::fail(drift));
            }
            for port in 0..3 {
                prop_assert_eq!(fdb.port_entries(port) as usize, model.on_port(port));
            }
            for tenant_id in 0..2 {
                prop_assert_eq!(
                    fdb.tenant_entries(tenant_id) as usize,
                    model.in_tenant(tenant_id)
                );
            }
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn behaves_like_reference_model(
            steps in prop::collection::vec((0..400u64, op(6)), 1..200),
            capacity in 0..8usize,
            limits in (limit(), limit()),
        ) {
            agrees_with_model(Fdb::new(capacity, 1_000), steps, limits)?;
        }

        /// Every key in the same home bucket (a multiplier of 1 hashes by the tenant's top
        /// bits): chains as long as the table, wrapping around its end, through removals.
        #[test]
        fn behaves_like_reference_model_when_every_key_collides(
            steps in prop::collection::vec((0..400u64, op(40)), 1..300),
            capacity in 0..40usize,
            limits in (limit(), limit()),
        ) {
            agrees_with_model(Fdb::with_multiplier(capacity, 1_000, 1), steps, limits)?;
        }

        #[test]
        fn behaves_like_reference_model_when_crowded(
            steps in prop::collection::vec((0..400u64, op(64)), 1..300),
            capacity in 16..64usize,
        ) {
            agrees_with_model(Fdb::new(capacity, 1_000), steps, (None, None))?;
        }
    }

    #[test]
    fn remote_endpoint_follows_its_entry() {
        let mut fdb = Fdb::new(16, AGING);
        assert_eq!(std::mem::size_of::<Bucket>(), 64, "one cache line");
        fdb.learn(0, mac(1), 5, 0);
        assert!(fdb.set_remote(0, mac(1), 5, 2));
        assert!(!fdb.set_remote(0, mac(1), 5, 2), "unchanged");
        assert!(!fdb.set_remote(0, mac(1), 6, 1), "bound to another port");
        assert_eq!(fdb.get(0, mac(1)).map(|e| e.remote), Some(2));
        assert_eq!(fdb.learn(0, mac(1), 5, 1), Learned::Refreshed);
        assert_eq!(
            fdb.get(0, mac(1)).map(|e| e.remote),
            Some(2),
            "a refresh keeps it"
        );
        assert_eq!(fdb.learn(0, mac(1), 6, 2), Learned::Moved { from: 5 });
        assert_eq!(
            fdb.get(0, mac(1)).map(|e| e.remote),
            Some(0),
            "a move forgets it"
        );
        fdb.insert_static(0, mac(2), 5).unwrap();
        assert!(fdb.set_remote(0, mac(2), 5, 1));
        assert_eq!(
            fdb.iter().find(|e| e.mac == mac(2)).map(|e| e.remote),
            Some(1)
        );
        assert!(fdb.remove(0, mac(2)));
        fdb.insert_static(0, mac(2), 5).unwrap();
        assert_eq!(
            fdb.get(0, mac(2)).map(|e| e.remote),
            Some(0),
            "a new entry has none"
        );
    }
}
