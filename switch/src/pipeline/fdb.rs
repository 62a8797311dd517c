//! The forwarding database (MAC table) of one worker.
//!
//! Each worker owns its table outright, so the data path takes no lock; workers keep their
//! tables in step by exchanging learn events outside this module.

use std::collections::HashMap;

use rustc_hash::FxBuildHasher;

use super::decision::{DomainId, PortId};
use crate::packet::MacAddr;

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
}

/// One row of the table, as shown to the control plane.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct FdbEntry {
    pub domain: DomainId,
    pub mac: MacAddr,
    pub port: PortId,
    pub is_static: bool,
    /// When the address was last learned; 0 for static entries, which do not age.
    pub last_seen_ns: u64,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FdbError {
    #[error("MAC table is full: raise [dataplane] fdb_capacity or delete entries")]
    TableFull,
}

#[derive(Copy, Clone, Debug)]
struct Slot {
    port: PortId,
    is_static: bool,
    last_seen_ns: u64,
}

impl Slot {
    fn is_live(&self, aging_ns: u64, now_ns: u64) -> bool {
        // saturating_sub: a clock that steps backwards must not make entries immortal or panic.
        self.is_static || now_ns.saturating_sub(self.last_seen_ns) < aging_ns
    }
}

/// A MAC table keyed by (domain, MAC), bounded to a fixed number of entries.
///
/// The table is allocated once in [`Fdb::new`] and never reallocates afterwards, so learning
/// on the data path cannot allocate: an unknown address arriving at capacity is refused.
/// Dynamic entries are live for `aging_ns` after they were last learned (`u64::MAX`: never
/// age); an expired entry is invisible to [`Fdb::lookup`] and is reclaimed by [`Fdb::expire`].
#[derive(Debug, Clone)]
pub struct Fdb {
    slots: HashMap<u64, Slot, FxBuildHasher>,
    capacity: usize,
    aging_ns: u64,
}

/// Domain in the top 16 bits, MAC in the low 48: one integer compare and cheap to hash.
fn pack_key(domain: DomainId, mac: MacAddr) -> u64 {
    (u64::from(domain) << 48) | mac.to_u64()
}

fn unpack_key(key: u64) -> (DomainId, MacAddr) {
    ((key >> 48) as DomainId, MacAddr::from_u64(key))
}

impl Fdb {
    /// A table for up to `capacity` entries.
    ///
    /// # Panics
    /// If memory for `capacity` entries cannot be allocated; bound `fdb_capacity` in config.
    pub fn new(capacity: usize, aging_ns: u64) -> Fdb {
        // Twice the entries: the std (hashbrown) table reuses slots freed by removals through
        // an in-place rehash only while it is at most half full; fuller, an insert after
        // removals would reallocate on the data path.
        let reserved = capacity.saturating_mul(2);
        Fdb {
            slots: HashMap::with_capacity_and_hasher(reserved, FxBuildHasher),
            capacity,
            aging_ns,
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Entries held, including expired dynamic ones not yet reclaimed by [`Fdb::expire`].
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub fn aging_ns(&self) -> u64 {
        self.aging_ns
    }

    /// Applies to existing entries too: their age is measured against the new limit.
    pub fn set_aging_ns(&mut self, aging_ns: u64) {
        self.aging_ns = aging_ns;
    }

    /// Binds `mac` to `port` in `domain` as seen at `now_ns`.
    pub fn learn(&mut self, domain: DomainId, mac: MacAddr, port: PortId, now_ns: u64) -> Learned {
        let aging_ns = self.aging_ns;
        let key = pack_key(domain, mac);
        if let Some(slot) = self.slots.get_mut(&key) {
            if slot.is_static {
                return Learned::StaticKept;
            }
            let was_live = slot.is_live(aging_ns, now_ns);
            let from = slot.port;
            slot.port = port;
            slot.last_seen_ns = now_ns;
            return if !was_live {
                Learned::New
            } else if from == port {
                Learned::Refreshed
            } else {
                Learned::Moved { from }
            };
        }
        if self.slots.len() >= self.capacity {
            return Learned::TableFull;
        }
        self.slots.insert(
            key,
            Slot {
                port,
                is_static: false,
                last_seen_ns: now_ns,
            },
        );
        Learned::New
    }

    /// The port `mac` was learned on in `domain`, unless unknown or expired at `now_ns`.
    pub fn lookup(&self, domain: DomainId, mac: MacAddr, now_ns: u64) -> Option<PortId> {
        self.slots
            .get(&pack_key(domain, mac))
            .filter(|slot| slot.is_live(self.aging_ns, now_ns))
            .map(|slot| slot.port)
    }

    /// The stored entry for `mac` in `domain`, expired or not.
    pub fn get(&self, domain: DomainId, mac: MacAddr) -> Option<FdbEntry> {
        let key = pack_key(domain, mac);
        self.slots.get(&key).map(|slot| entry(key, slot))
    }

    /// Binds `mac` to `port` permanently, replacing any entry for it.
    pub fn insert_static(
        &mut self,
        domain: DomainId,
        mac: MacAddr,
        port: PortId,
    ) -> Result<(), FdbError> {
        let key = pack_key(domain, mac);
        if !self.slots.contains_key(&key) && self.slots.len() >= self.capacity {
            return Err(FdbError::TableFull);
        }
        self.slots.insert(
            key,
            Slot {
                port,
                is_static: true,
                last_seen_ns: 0,
            },
        );
        Ok(())
    }

    /// Removes the entry for `mac` in `domain`, static or not; false if there was none.
    pub fn remove(&mut self, domain: DomainId, mac: MacAddr) -> bool {
        self.slots.remove(&pack_key(domain, mac)).is_some()
    }

    /// Removes every entry, static or dynamic, bound to `port`; returns how many.
    pub fn flush_port(&mut self, port: PortId) -> usize {
        let before = self.slots.len();
        self.slots.retain(|_, slot| slot.port != port);
        before - self.slots.len()
    }

    /// Reclaims dynamic entries expired at `now_ns`; returns how many. A full scan: call it
    /// periodically (about once a second), not per frame.
    pub fn expire(&mut self, now_ns: u64) -> usize {
        let aging_ns = self.aging_ns;
        let before = self.slots.len();
        self.slots.retain(|_, slot| slot.is_live(aging_ns, now_ns));
        before - self.slots.len()
    }

    /// Every stored entry, expired or not, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = FdbEntry> + '_ {
        self.slots.iter().map(|(&key, slot)| entry(key, slot))
    }

    /// How many entries fit without reallocating; must never change after `new`.
    #[cfg(test)]
    fn allocated_capacity(&self) -> usize {
        self.slots.capacity()
    }
}

fn entry(key: u64, slot: &Slot) -> FdbEntry {
    let (domain, mac) = unpack_key(key);
    FdbEntry {
        domain,
        mac,
        port: slot.port,
        is_static: slot.is_static,
        last_seen_ns: slot.last_seen_ns,
    }
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
    fn full_table_refuses_new_addresses_but_serves_known_ones() {
        let mut fdb = Fdb::new(2, AGING);
        assert_eq!(fdb.learn(0, mac(1), 1, 0), Learned::New);
        assert_eq!(fdb.learn(0, mac(2), 1, 0), Learned::New);
        assert_eq!(fdb.learn(0, mac(3), 1, 0), Learned::TableFull);
        assert_eq!(fdb.len(), 2);
        assert_eq!(fdb.lookup(0, mac(3), 0), None);
        assert_eq!(fdb.learn(0, mac(1), 1, 50), Learned::Refreshed);
        assert_eq!(fdb.learn(0, mac(2), 2, 50), Learned::Moved { from: 1 });
        assert_eq!(fdb.insert_static(0, mac(3), 1), Err(FdbError::TableFull));
        assert_eq!(fdb.insert_static(0, mac(1), 1), Ok(()));
        assert_eq!(fdb.len(), 2);
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
        let never_fits = address(0xdead_beef);
        for n in 0..capacity as u64 {
            assert_eq!(fdb.learn(0, address(n), 1, 0), Learned::New);
        }
        // Each removal leaves a tombstone; enough of them force the table to reclaim space.
        for n in capacity as u64..50 * capacity as u64 {
            assert!(fdb.remove(0, address(n - capacity as u64)));
            assert_eq!(fdb.learn(0, address(n), 1, 0), Learned::New);
            assert_eq!(fdb.learn(0, never_fits, 1, 0), Learned::TableFull);
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
    fn domains_are_isolated() {
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
        entries.sort_by_key(|e| e.domain);
        assert_eq!(
            entries,
            [
                FdbEntry {
                    domain: 3,
                    mac: mac(9),
                    port: 8,
                    is_static: true,
                    last_seen_ns: 0
                },
                FdbEntry {
                    domain: u16::MAX,
                    mac: far,
                    port: 7,
                    is_static: false,
                    last_seen_ns: 42
                },
            ]
        );
    }

    /// Deliberately naive restatement of the table's contract.
    struct Model {
        entries: BTreeMap<(DomainId, MacAddr), (PortId, bool, u64)>,
        capacity: usize,
        aging_ns: u64,
    }

    impl Model {
        fn live(&self, (_, is_static, seen): (PortId, bool, u64), now: u64) -> bool {
            is_static || now - seen < self.aging_ns
        }

        fn learn(&mut self, key: (DomainId, MacAddr), port: PortId, now: u64) -> Learned {
            match self.entries.get(&key).copied() {
                Some((_, true, _)) => Learned::StaticKept,
                Some(old) => {
                    self.entries.insert(key, (port, false, now));
                    if !self.live(old, now) {
                        Learned::New
                    } else if old.0 == port {
                        Learned::Refreshed
                    } else {
                        Learned::Moved { from: old.0 }
                    }
                }
                None if self.entries.len() >= self.capacity => Learned::TableFull,
                None => {
                    self.entries.insert(key, (port, false, now));
                    Learned::New
                }
            }
        }

        fn lookup(&self, key: (DomainId, MacAddr), now: u64) -> Option<PortId> {
            let entry = *self.entries.get(&key)?;
            self.live(entry, now).then_some(entry.0)
        }
    }

    #[derive(Clone, Debug)]
    enum Op {
        Learn(DomainId, u8, PortId),
        Lookup(DomainId, u8),
        Remove(DomainId, u8),
        InsertStatic(DomainId, u8, PortId),
        FlushPort(PortId),
        Expire,
    }

    fn op() -> impl Strategy<Value = Op> {
        let domain = 0..2u16;
        let address = 0..6u8;
        let port = 0..3u16;
        prop_oneof![
            6 => (domain.clone(), address.clone(), port.clone()).prop_map(|(d, m, p)| Op::Learn(d, m, p)),
            4 => (domain.clone(), address.clone()).prop_map(|(d, m)| Op::Lookup(d, m)),
            1 => (domain.clone(), address.clone()).prop_map(|(d, m)| Op::Remove(d, m)),
            1 => (domain, address, port.clone()).prop_map(|(d, m, p)| Op::InsertStatic(d, m, p)),
            1 => port.prop_map(Op::FlushPort),
            1 => Just(Op::Expire),
        ]
    }

    proptest! {
        #[test]
        fn behaves_like_reference_model(
            steps in prop::collection::vec((0..400u64, op()), 1..200),
            capacity in 0..8usize,
        ) {
            let aging_ns = 1_000;
            let mut fdb = Fdb::new(capacity, aging_ns);
            let mut model = Model { entries: BTreeMap::new(), capacity, aging_ns };
            let mut now = 0u64;
            for (advance, op) in steps {
                now += advance;
                match op {
                    Op::Learn(d, m, p) => {
                        prop_assert_eq!(fdb.learn(d, mac(m), p, now), model.learn((d, mac(m)), p, now));
                    }
                    Op::Lookup(d, m) => {
                        prop_assert_eq!(fdb.lookup(d, mac(m), now), model.lookup((d, mac(m)), now));
                    }
                    Op::Remove(d, m) => {
                        prop_assert_eq!(fdb.remove(d, mac(m)), model.entries.remove(&(d, mac(m))).is_some());
                    }
                    Op::InsertStatic(d, m, p) => {
                        let key = (d, mac(m));
                        let expected = if model.entries.contains_key(&key) || model.entries.len() < capacity {
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
                }
                let mut actual: Vec<_> = fdb
                    .iter()
                    .map(|e| ((e.domain, e.mac), (e.port, e.is_static, e.last_seen_ns)))
                    .collect();
                actual.sort_unstable();
                let expected: Vec<_> = model.entries.iter().map(|(k, e)| (*k, *e)).collect();
                prop_assert_eq!(actual, expected);
                prop_assert!(fdb.len() <= capacity);
            }
        }
    }
}
