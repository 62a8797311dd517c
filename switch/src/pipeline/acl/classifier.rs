//! First-match classification of a key against an ordered rule list, at a per-frame cost
//! that does not grow with the number of rules.
//!
//! # Design: an address index for IPv4, tuple-space search for the rest
//!
//! Most rules of a realistic list name an address prefix, and a prefix is what tells them
//! apart best. So IPv4 rules with a prefix of at least 8 bits go to an [`AddressIndex`]:
//! lists of rules by the leading bits (8 to 16, more for longer lists) of the address their
//! longer prefix is on, a shorter prefix copied into every list it covers. A lookup reads
//! the two lists of its key (by source, by destination), one bit each says whether they
//! hold anything at all, and only then checks their rules in full: as many as have a prefix
//! containing the key's addresses, about 2 at 10,000 realistic rules. The rules left (no
//! prefix, a prefix under /8, all of IPv6, whose addresses share their leading bits) go to
//! tuples, as below; for realistic IPv4 lists there are none, and a key whose lists are
//! both empty is answered from two bits ([`Classifier::may_match_ipv4`]).
//!
//! Measured with `benches/pipeline.rs` (realistic rules, 80% of keys IPv4, most matching
//! nothing), the index took a lookup from 103 to 44 ns at 1,000 rules and from 214 to
//! 92 ns at 10,000, where tuples alone held buckets of 15 rules sharing a /8 with the key.
//!
//! A list holds at most [`INDEX_LIST_LIMIT`] rules. Prefixes that cluster (the 999
//! prefixes inside one /16 of `bench/scenario.sh acl`, a ClassBench site's hosts) share
//! their leading bits, so an uncapped list held them all and every key of that network
//! scanned them: 1.8 µs a lookup there. Rules that would go into a longer list go to the
//! tuples instead, where their other fields (protocol, ports, longer address bits) tell
//! them apart: 22 ns on that set (`benches/classifier.rs`).
//!
//! # Tuple-space search with merged tuples
//!
//! A rule's *shape* is which bits of the key it looks at: the source and destination prefix
//! lengths, whether it fixes the protocol, the ICMP type and the established bit, and how
//! many leading bits of each port its range pins down. All rules of one shape can be found
//! with a single hash probe: mask the key with the shape, look the result up. Classic
//! tuple-space search keeps one hash table (a *tuple*) per shape and probes every one, so
//! its cost is the number of distinct shapes, which grows with the rule set (25 source
//! lengths times 25 destination lengths times the port variants...).
//!
//! Here, as in TupleMerge (Daly et al., 2019), a tuple may hold rules *more* specific than
//! its mask: the mask only selects a short bucket of candidates, and each candidate is then
//! checked in full. A rule fits a tuple when the tuple hashes no bit the rule leaves open (a
//! /24 rule fits a /16 tuple; a 1000-2000 port range fits a tuple that ignores ports).
//! [`Classifier::compile`] works in three steps:
//!
//! 1. Rules in priority order go into the fullest tuple they fit whose bucket for them
//!    holds fewer than [`BUCKET_LIMIT`] rules. When none has room, a new tuple opens, as
//!    coarse as will serve: first one hashing only the rule's more specific address, its
//!    prefix length rounded down to a level (IPv4: 8, 16, 24, 32; IPv6: 16, 32, 48, 64, 96,
//!    128), so that later rules of nearby lengths join it; if that tuple exists and is full
//!    for the rule, one hashing both addresses, then one adding the protocol, the leading
//!    bits each port range pins down rounded down to a port level (0, 8, 12, 16: a range
//!    1000-1002 hashes 12 bits, a single port 16), ICMP type and established bit, and last
//!    the rule's exact shape. (Rules without addresses start at the third.) A rule matching
//!    exactly what an earlier one matches is left out: it can never be the first match.
//! 2. Each tuple costs every lookup a probe, however few rules it holds, while one more
//!    rule in a bucket costs only the keys landing there one more compare. So tuples are
//!    emptied, smallest first, when all their rules fit into bigger tuples with buckets
//!    under [`OVERFLOW_LIMIT`], or (for tuples of three rules or fewer) into a *tail* of at
//!    most [`TAIL_LIMIT`] rules that every lookup checks one by one.
//! 3. Each tuple becomes an open-addressed table, at most half full, of 32-bit fingerprints
//!    of its masked keys, pointing at its buckets in one flat array of compiled rules
//!    (integer value/mask pairs and port ranges). A fingerprint shared by two keys merges
//!    their buckets, which costs compares, never correctness.
//!
//! The number of tuples is thus bounded by the levels, not by the rules: realistic IPv6 sets
//! of up to 2,000 rules compile to 3 tuples (see `benches/pipeline.rs`).
//!
//! Port ranges are never expanded into prefix blocks (up to 30 per range, 900 per rule with
//! both ports): a range pins down the leading bits its two ends share, a tuple hashes at most
//! those, and the range itself is checked on the candidates.
//!
//! IPv4 and IPv6 keys go to separate tables (a rule without prefixes is in both), so IPv4
//! lookups hash 16 bytes of key, not 40. A key whose source and destination are of different
//! families, which no IP header produces, is answered by a linear scan, as are all keys of a
//! list too long for 32-bit rule indexes.
//!
//! # Lookup and its cost
//!
//! An IPv4 lookup first checks its two index lists (each in rule order), which gives the
//! best match among indexed rules. Tuples are sorted by the best (lowest) rule index they
//! hold, each bucket holds its rules in index order, and so does the tail. A lookup then
//! checks the tail, then walks the tuples:
//! mask, hash, probe, check the bucket's rules until one matches. It stops as soon as the
//! next tuple's best rule cannot beat the match in hand. The cost is therefore at most
//!
//! `tail × compare + tuples × (hash + probe) + hit buckets × their length × compare`
//!
//! with a compare about 2 ns and a probe about 10 ns on the development machine; nothing
//! allocates, locks or panics. A key that matches nothing (the usual case for a
//! deny-by-default ACL) visits every tuple of its family, so the tuple count
//! ([`Classifier::tuple_count`]) is the figure to watch. A bucket passes [`OVERFLOW_LIMIT`]
//! only when more rules than that are identical apart from their port ranges; those are then
//! checked one after another, as any classifier that does not expand ranges must.
//!
//! Compiling is about `rules × tuples` bucket probes, plus the index's copies (at most
//! [`AddressIndex::COPIES_PER_RULE`] per rule and one per list): 10-20 ms for 10,000 rules.

use std::cmp::Reverse;
use std::collections::HashMap;
use std::fmt::Debug;
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;
use rustc_hash::FxBuildHasher;

use super::rule::{AclKey, AclRule, PortRange};

/// Rules sharing one bucket of a tuple before the compiler looks elsewhere for a new rule:
/// the most full compares a hit bucket costs, in rule sets without duplicate-like rules.
pub const BUCKET_LIMIT: usize = 12;

/// How long a bucket may grow when the rules of a small tuple move into it, to save every
/// lookup that tuple's probe (see `merge_minor_tuples`): the most full compares a hit bucket
/// costs.
pub const OVERFLOW_LIMIT: usize = 2 * BUCKET_LIMIT;

/// Tuples this small may move their rules into the tail: a probe costs about as much as
/// checking this many rules in a row.
const SMALL_TUPLE: usize = 3;

/// The most rules checked one by one outside any tuple, by every lookup.
pub const TAIL_LIMIT: usize = 16;

/// Leading port bits new tuples hash, ascending from 0: a range's shared leading bits are
/// rounded down to one of these (0-65535 hashes none, a single port all 16).
const PORT_LEVELS: &[u8] = &[0, 8, 12, 16];

/// The longest list of the IPv4 [`AddressIndex`]: rules that would go into a longer one
/// (rules clustered in a few networks, such as 1,000 prefixes inside one /16) go to the
/// tuples instead, where their other fields tell them apart. A list of this length costs
/// about what two tuple probes do.
const INDEX_LIST_LIMIT: usize = 24;

// Where the fields other than the addresses sit in `KeyFields::rest`. One integer, so masking
// and comparing them is one AND and one compare.
const PROTO_SHIFT: u32 = 56;
const SPORT_SHIFT: u32 = 40;
const DPORT_SHIFT: u32 = 24;
const ICMP_SHIFT: u32 = 15;
/// Set in the ICMP field when the key has an ICMP type, so type 0 differs from "no type".
const ICMP_PRESENT: u64 = 0x100;
const ICMP_FIELD: u64 = 0x1ff << ICMP_SHIFT;
const PROTO_FIELD: u64 = 0xff << PROTO_SHIFT;
const ESTABLISHED_BIT: u64 = 1 << 14;

/// An address family's addresses as integers, most significant bit first.
trait Address: Copy + Eq + Hash + Default + Debug {
    const ADDRESS_BITS: u8;
    /// Prefix lengths new tuples hash, ascending from 0: a rule's length is rounded down to
    /// one of these, so that rules of nearby lengths share a tuple.
    const LEVELS: &'static [u8];
    fn prefix_mask(len: u8) -> Self;
    fn and(self, other: Self) -> Self;
    /// The address folded into 64 bits, for hashing.
    fn fold(self) -> u64;
    /// The prefix's address, or None if the prefix is of the other family.
    fn from_prefix(prefix: &IpNet) -> Option<Self>;
    /// Whether rules of this family with an address prefix go to an [`AddressIndex`].
    const INDEXED: bool;
    /// The address's leading `bits` bits (1..=16), as an index.
    fn leading(self, bits: u32) -> usize;
}

impl Address for u32 {
    const ADDRESS_BITS: u8 = 32;
    const LEVELS: &'static [u8] = &[0, 8, 16, 24, 32];

    fn prefix_mask(len: u8) -> u32 {
        u32::MAX
            .checked_shl(u32::from(Self::ADDRESS_BITS.saturating_sub(len)))
            .unwrap_or(0)
    }

    fn and(self, other: u32) -> u32 {
        self & other
    }

    fn fold(self) -> u64 {
        u64::from(self)
    }

    fn from_prefix(prefix: &IpNet) -> Option<u32> {
        match prefix {
            IpNet::V4(prefix) => Some(u32::from(prefix.addr())),
            IpNet::V6(_) => None,
        }
    }

    const INDEXED: bool = true;

    #[inline]
    fn leading(self, bits: u32) -> usize {
        // `bits` is 1 to 16 (see the trait), so the shift is in range.
        self.wrapping_shr(32 - bits) as usize
    }
}

impl Address for u128 {
    const ADDRESS_BITS: u8 = 128;
    /// Where IPv6 address plans put their boundaries: sites, subnets, hosts.
    const LEVELS: &'static [u8] = &[0, 16, 32, 48, 64, 96, 128];

    fn prefix_mask(len: u8) -> u128 {
        u128::MAX
            .checked_shl(u32::from(Self::ADDRESS_BITS.saturating_sub(len)))
            .unwrap_or(0)
    }

    fn and(self, other: u128) -> u128 {
        self & other
    }

    fn fold(self) -> u64 {
        (self as u64) ^ ((self >> 64) as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }

    fn from_prefix(prefix: &IpNet) -> Option<u128> {
        match prefix {
            IpNet::V6(prefix) => Some(u128::from(prefix.addr())),
            IpNet::V4(_) => None,
        }
    }

    /// IPv6 rules and addresses share their leading bits (2000::/3, fd00::/8), so an index
    /// of them would tell nothing apart.
    const INDEXED: bool = false;

    fn leading(self, bits: u32) -> usize {
        self.wrapping_shr(128 - bits) as usize
    }
}

/// A key, a mask, or a masked key of one family: what the tuples hash.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
struct KeyFields<A> {
    src: A,
    dst: A,
    /// Protocol, ports, ICMP type and established bit (see the `*_SHIFT` constants).
    rest: u64,
}

impl<A: Address> KeyFields<A> {
    fn masked(&self, mask: &KeyFields<A>) -> KeyFields<A> {
        KeyFields {
            src: self.src.and(mask.src),
            dst: self.dst.and(mask.dst),
            rest: self.rest & mask.rest,
        }
    }

    /// Mixes all fields so that every bit of the key moves the low bits (the slot) and the
    /// high bits (the fingerprint). Two different keys that collide only share a bucket,
    /// whose rules are checked in full anyway.
    fn hash(&self) -> u64 {
        let mut hash = self.src.fold().wrapping_mul(0x9e37_79b9_7f4a_7c15)
            ^ self
                .dst
                .fold()
                .wrapping_mul(0xc2b2_ae3d_27d4_eb4f)
                .rotate_left(23)
            ^ self
                .rest
                .wrapping_mul(0x1656_67b1_9e37_79f9)
                .rotate_left(47);
        hash ^= hash >> 32;
        hash = hash.wrapping_mul(0xd6e8_feb8_6659_fd93);
        hash ^ (hash >> 29)
    }

    fn sport(&self) -> u16 {
        (self.rest >> SPORT_SHIFT) as u16
    }

    fn dport(&self) -> u16 {
        (self.rest >> DPORT_SHIFT) as u16
    }
}

#[inline]
fn pack_rest(proto: u8, sport: u16, dport: u16, icmp_type: Option<u8>, established: bool) -> u64 {
    let icmp = icmp_type.map_or(0, |icmp_type| ICMP_PRESENT | u64::from(icmp_type));
    u64::from(proto) << PROTO_SHIFT
        | u64::from(sport) << SPORT_SHIFT
        | u64::from(dport) << DPORT_SHIFT
        | icmp << ICMP_SHIFT
        | if established { ESTABLISHED_BIT } else { 0 }
}

fn port_prefix_mask(len: u8) -> u64 {
    u64::from(
        u16::MAX
            .checked_shl(16u32.saturating_sub(u32::from(len)))
            .unwrap_or(0),
    )
}

/// How many leading bits all ports of the range share: the prefix length of the smallest
/// aligned block that holds the whole range (16 for a single port, 0 for 0-65535).
fn port_block_len(range: PortRange) -> u8 {
    (range.first ^ range.last).leading_zeros() as u8
}

/// Which bits of the key a rule pins down, or a tuple hashes.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
struct Shape {
    src_len: u8,
    dst_len: u8,
    proto: bool,
    sport_len: u8,
    dport_len: u8,
    icmp_type: bool,
    established: bool,
}

impl Shape {
    /// Whether a tuple of this shape can hold a rule of `rule`'s: every bit the tuple
    /// hashes is one the rule pins down, so every key the rule matches lands in its bucket.
    fn fits_within(&self, rule: &Shape) -> bool {
        self.src_len <= rule.src_len
            && self.dst_len <= rule.dst_len
            && (!self.proto || rule.proto)
            && self.sport_len <= rule.sport_len
            && self.dport_len <= rule.dport_len
            && (!self.icmp_type || rule.icmp_type)
            && (!self.established || rule.established)
    }

    /// Shapes for a new tuple that would hold this rule, coarsest first and ending with the
    /// rule's own shape: each next one hashes more of the rule's fields, for when the rule's
    /// bucket in the previous one is full.
    ///
    /// The coarsest hashes only the more specific of the two addresses, rounded down to a
    /// level, since an address spreads rules over buckets far better than a protocol or port
    /// does, and a tuple that ignores those can hold rules of every protocol. Rules without
    /// addresses hash their protocol, single ports, ICMP type and established bit instead.
    fn refinements<A: Address>(&self) -> [Shape; 4] {
        let level = |len: u8| {
            A::LEVELS
                .iter()
                .copied()
                .filter(|&level| level <= len)
                .max()
                .unwrap_or(0)
        };
        // A range pins the leading bits its two ends share; hashing them, rounded down to a
        // port level, spreads rules of narrow ranges (1000-1002) over buckets as well as
        // single ports, where hashing no port bits put them all in one.
        let port_level = |len: u8| {
            PORT_LEVELS
                .iter()
                .copied()
                .filter(|&level| level <= len)
                .max()
                .unwrap_or(0)
        };
        let hashes_nothing = Shape {
            src_len: 0,
            dst_len: 0,
            proto: false,
            sport_len: 0,
            dport_len: 0,
            icmp_type: false,
            established: false,
        };
        let (src_level, dst_level) = (level(self.src_len), level(self.dst_len));
        let more_specific_address = if src_level >= dst_level {
            Shape {
                src_len: src_level,
                ..hashes_nothing
            }
        } else {
            Shape {
                dst_len: dst_level,
                ..hashes_nothing
            }
        };
        let both_addresses = Shape {
            src_len: src_level,
            dst_len: dst_level,
            ..hashes_nothing
        };
        let with_other_fields = Shape {
            sport_len: port_level(self.sport_len),
            dport_len: port_level(self.dport_len),
            src_len: src_level,
            dst_len: dst_level,
            ..*self
        };
        if src_level == 0 && dst_level == 0 {
            [
                with_other_fields,
                with_other_fields,
                with_other_fields,
                *self,
            ]
        } else {
            [
                more_specific_address,
                both_addresses,
                with_other_fields,
                *self,
            ]
        }
    }

    fn mask<A: Address>(&self) -> KeyFields<A> {
        let mut rest = port_prefix_mask(self.sport_len) << SPORT_SHIFT
            | port_prefix_mask(self.dport_len) << DPORT_SHIFT;
        if self.proto {
            rest |= PROTO_FIELD;
        }
        if self.icmp_type {
            rest |= ICMP_FIELD;
        }
        if self.established {
            rest |= ESTABLISHED_BIT;
        }
        KeyFields {
            src: A::prefix_mask(self.src_len),
            dst: A::prefix_mask(self.dst_len),
            rest,
        }
    }
}

/// A rule reduced to integer compares, for one family.
#[derive(Copy, Clone, Debug)]
struct CompiledRule<A> {
    /// The rule's index in the list: lower wins.
    priority: usize,
    /// The exact fields (addresses, protocol, ICMP type, established) as `key & mask == value`.
    value: KeyFields<A>,
    mask: KeyFields<A>,
    /// Ranges do not fit a mask; `PortRange::ANY` when the rule has none.
    sport: PortRange,
    dport: PortRange,
}

impl<A: Address> CompiledRule<A> {
    #[inline]
    fn matches(&self, key: &KeyFields<A>) -> bool {
        key.masked(&self.mask) == self.value
            && self.sport.contains(key.sport())
            && self.dport.contains(key.dport())
    }
}

/// A rule on its way into a tuple: its compiled form, shape, and the fields to hash it by.
struct Candidate<A> {
    compiled: CompiledRule<A>,
    shape: Shape,
    /// Every field the rule pins, ports as their ranges' first port.
    fields: KeyFields<A>,
}

impl<A: Address> Candidate<A> {
    /// None when the rule can never match a key of family `A` (a prefix of the other
    /// family, or an upside-down range): such a rule is left out of this family's tuples.
    fn new(priority: usize, rule: &AclRule) -> Option<Candidate<A>> {
        let prefix = |prefix: Option<IpNet>| match prefix {
            None => Some((A::default(), 0)),
            Some(prefix) => {
                let len = prefix.prefix_len();
                Some((A::from_prefix(&prefix)?.and(A::prefix_mask(len)), len))
            }
        };
        let (src, src_len) = prefix(rule.src)?;
        let (dst, dst_len) = prefix(rule.dst)?;
        let sport = rule.sport.unwrap_or(PortRange::ANY);
        let dport = rule.dport.unwrap_or(PortRange::ANY);
        if sport.first > sport.last || dport.first > dport.last {
            return None;
        }
        let shape = Shape {
            src_len,
            dst_len,
            proto: rule.proto.is_some(),
            sport_len: port_block_len(sport),
            dport_len: port_block_len(dport),
            icmp_type: rule.icmp_type.is_some(),
            established: rule.established,
        };
        let fields = KeyFields {
            src,
            dst,
            rest: pack_rest(
                rule.proto.unwrap_or(0),
                sport.first,
                dport.first,
                rule.icmp_type,
                rule.established,
            ),
        };
        // Ports are checked as ranges, everything else as `key & mask == value`.
        let without_ports = Shape {
            sport_len: 0,
            dport_len: 0,
            ..shape
        };
        let mask = without_ports.mask();
        Some(Candidate {
            compiled: CompiledRule {
                priority,
                value: fields.masked(&mask),
                mask,
                sport,
                dport,
            },
            shape,
            fields,
        })
    }
}

/// A tuple while rules are being assigned: buckets of candidate positions.
struct TupleBuilder<A> {
    shape: Shape,
    mask: KeyFields<A>,
    buckets: HashMap<KeyFields<A>, Vec<usize>, FxBuildHasher>,
    rule_count: usize,
}

impl<A: Address> TupleBuilder<A> {
    fn new(shape: Shape) -> TupleBuilder<A> {
        TupleBuilder {
            shape,
            mask: shape.mask(),
            buckets: HashMap::default(),
            rule_count: 0,
        }
    }

    fn bucket_len(&self, candidate: &Candidate<A>) -> usize {
        self.buckets
            .get(&candidate.fields.masked(&self.mask))
            .map_or(0, Vec::len)
    }

    fn positions(&self) -> Vec<usize> {
        self.buckets.values().flatten().copied().collect()
    }

    fn remove(&mut self, position: usize, candidate: &Candidate<A>) {
        if let Some(bucket) = self.buckets.get_mut(&candidate.fields.masked(&self.mask)) {
            if let Some(at) = bucket.iter().position(|&member| member == position) {
                bucket.remove(at);
                self.rule_count -= 1;
            }
            if bucket.is_empty() {
                self.buckets.remove(&candidate.fields.masked(&self.mask));
            }
        }
    }

    fn clear(&mut self) {
        self.buckets.clear();
        self.rule_count = 0;
    }

    fn insert(&mut self, position: usize, candidate: &Candidate<A>) {
        self.buckets
            .entry(candidate.fields.masked(&self.mask))
            .or_default()
            .push(position);
        self.rule_count += 1;
    }
}

/// One hash table of the lookup: masked key → the rules of that bucket in `entries`.
///
/// Open addressing with linear probing over at most half-full slots, each holding a 32-bit
/// fingerprint of its masked key rather than the key: a probe is one hash and, nearly always,
/// one 16-byte load. A different key with the same fingerprint costs a few wasted compares,
/// never a wrong answer, since every candidate rule is checked in full. (At compile time,
/// keys whose probe sequences meet on one fingerprint share the slot, so a lookup never
/// stops at a slot that is not its own.)
#[derive(Clone, Debug)]
struct Tuple<A> {
    mask: KeyFields<A>,
    /// The lowest rule index in the tuple: no rule here can beat a match at or below it.
    best_priority: usize,
    /// A power of two in length, at least twice the buckets, so probing always meets an
    /// empty slot.
    slots: Box<[Slot]>,
    /// Where the tuple's rules are in `FamilyTable::entries` (for diagnostics).
    entries: std::ops::Range<usize>,
}

#[derive(Copy, Clone, Debug, Default)]
struct Slot {
    fingerprint: u32,
    /// Rules in the bucket; 0 for an empty slot.
    len: u32,
    /// Where the bucket's rules start in `FamilyTable::entries`.
    start: u32,
}

fn fingerprint(hash: u64) -> u32 {
    (hash >> 32) as u32
}

impl<A: Address> Tuple<A> {
    /// Lays out `buckets` (candidate positions by masked key) as slots over `entries`.
    fn build(
        mask: KeyFields<A>,
        buckets: HashMap<KeyFields<A>, Vec<usize>, FxBuildHasher>,
        candidates: &[Candidate<A>],
        entries: &mut Vec<CompiledRule<A>>,
    ) -> Tuple<A> {
        let slot_count = buckets.len().saturating_mul(2).next_power_of_two().max(2);
        let slot_mask = slot_count - 1;
        let mut fingerprints = vec![0u32; slot_count];
        let mut members_by_slot: Vec<Vec<usize>> = vec![Vec::new(); slot_count];
        for (masked, members) in buckets {
            let hash = masked.hash();
            let mut index = hash as usize & slot_mask;
            // Ends: at most half the slots are taken.
            loop {
                if members_by_slot[index].is_empty() {
                    fingerprints[index] = fingerprint(hash);
                    members_by_slot[index] = members;
                    break;
                }
                if fingerprints[index] == fingerprint(hash) {
                    members_by_slot[index].extend(members);
                    break;
                }
                index = (index + 1) & slot_mask;
            }
        }

        let mut best_priority = usize::MAX;
        let first_entry = entries.len();
        let mut slots = vec![Slot::default(); slot_count];
        for ((slot, mut members), fingerprint) in
            slots.iter_mut().zip(members_by_slot).zip(fingerprints)
        {
            if members.is_empty() {
                continue;
            }
            // Positions follow priority; merged buckets, and rules placed by the second
            // pass, may have come in out of order.
            members.sort_unstable();
            // Entries never outnumber the rules, which `Classifier::compile` keeps in u32.
            let start = u32::try_from(entries.len()).unwrap_or(u32::MAX);
            for candidate in members
                .iter()
                .filter_map(|&position| candidates.get(position))
            {
                best_priority = best_priority.min(candidate.compiled.priority);
                entries.push(candidate.compiled);
            }
            *slot = Slot {
                fingerprint,
                len: u32::try_from(members.len()).unwrap_or(u32::MAX),
                start,
            };
        }
        Tuple {
            mask,
            best_priority,
            slots: slots.into_boxed_slice(),
            entries: first_entry..entries.len(),
        }
    }

    /// The slot holding `key`'s bucket, if any.
    fn find(&self, key: &KeyFields<A>) -> Option<&Slot> {
        let hash = key.masked(&self.mask).hash();
        let slot_mask = self.slots.len().wrapping_sub(1);
        let mut index = hash as usize;
        // Bounded, though an empty slot always comes first: a table cannot be full.
        for _ in 0..self.slots.len() {
            index &= slot_mask;
            let slot = self.slots.get(index)?;
            if slot.len == 0 {
                return None;
            }
            if slot.fingerprint == fingerprint(hash) {
                return Some(slot);
            }
            index += 1;
        }
        None
    }
}

/// The shortest prefix the [`AddressIndex`] takes: a /8 is copied into 256 lists of a 16-bit
/// index.
const MIN_INDEXED_LEN: u8 = 8;

/// The rules that have an address prefix, listed by the leading bits of an address: each
/// list holds, in priority order, the rules whose prefix on that side admits some address
/// with those leading bits (a rule shorter than the index is copied into every list it
/// covers). A lookup reads two lists, by the key's source and by its destination, and
/// checks their rules in full.
///
/// Tuples gather rules by shape, so a key matching nothing probes every tuple and, in
/// each, compares a bucket of rules that merely share a /8 with it: on the realistic IPv4
/// sets of `benches/pipeline.rs`, 3 tuples with buckets of 15 rules on average at 10,000
/// rules, 214 ns per IPv4 key. An address prefix is what sets those rules apart, so here
/// they are found by it: the two lists a key reads hold about as many rules as have a
/// prefix containing its addresses, 2 or so in those sets, and the lookup took 67 ns.
///
/// A rule with both prefixes is listed on the side of the longer one, the side on which it
/// is copied least. Rules with no prefix of at least [`MIN_INDEXED_LEN`] bits stay in the
/// tuples, as do, when copies would pass [`AddressIndex::COPIES_PER_RULE`] per rule, the
/// ones with the shortest prefixes.
#[derive(Clone, Debug)]
struct AddressIndex<A> {
    /// Leading address bits the lists are chosen by: about four lists per rule, 8 to 16.
    bits: u32,
    /// The indexed rules, in priority order.
    rules: Vec<CompiledRule<A>>,
    /// By source, then by destination.
    sides: [IndexSide; 2],
}

/// One side's lists, packed: list `i` is `positions[starts[i]..starts[i + 1]]`.
#[derive(Clone, Debug, Default)]
struct IndexSide {
    starts: Box<[u32]>,
    /// Positions in `AddressIndex::rules`, ascending in each list.
    positions: Box<[u32]>,
    /// Bit `i % 64` of word `i / 64` set when list `i` holds a rule: a key's lists are
    /// nearly always empty, and this says so from one word (8 KiB for 16 index bits,
    /// against 256 KiB of `starts`).
    occupied: Box<[u64]>,
}

impl IndexSide {
    #[inline(always)]
    fn is_occupied(&self, index: usize) -> bool {
        self.occupied
            .get(index / 64)
            .is_some_and(|word| word >> (index % 64) & 1 != 0)
    }

    #[inline(always)]
    fn list(&self, index: usize) -> &[u32] {
        match self.starts.get(index..index + 2) {
            Some(&[start, end]) => self
                .positions
                .get(start as usize..end as usize)
                .unwrap_or_default(),
            _ => &[],
        }
    }
}

impl<A: Address> AddressIndex<A> {
    /// Copies into lists allowed per indexed rule, beyond one list per index entry.
    const COPIES_PER_RULE: usize = 8;

    /// The side a candidate is listed on, and its prefix length there; None if it has no
    /// prefix of at least `shortest` bits.
    fn side(candidate: &Candidate<A>, shortest: u8) -> Option<(usize, u8)> {
        let (src, dst) = (candidate.shape.src_len, candidate.shape.dst_len);
        if src.max(dst) < shortest {
            None
        } else if src >= dst {
            Some((0, src))
        } else {
            Some((1, dst))
        }
    }

    /// Splits candidate positions into those the index takes and those left for tuples, and
    /// says how many leading bits the index's lists are chosen by.
    fn split(candidates: &[Candidate<A>]) -> (u32, Vec<usize>, Vec<usize>) {
        let with_prefix = candidates
            .iter()
            .filter(|candidate| Self::side(candidate, MIN_INDEXED_LEN).is_some())
            .count();
        let bits = Self::bits_for(with_prefix);
        let copies = |len: u8| 1usize << bits.saturating_sub(u32::from(len));
        let budget = Self::COPIES_PER_RULE * with_prefix + (1 << bits);
        // The shortest prefix whose rules, with all longer ones, stay within the budget.
        let mut shortest = MIN_INDEXED_LEN;
        while shortest < A::ADDRESS_BITS {
            let total: usize = candidates
                .iter()
                .filter_map(|candidate| Self::side(candidate, shortest))
                .map(|(_, len)| copies(len))
                .sum();
            if total <= budget {
                break;
            }
            shortest += 1;
        }
        let mut lengths = [vec![0usize; 1 << bits], vec![0usize; 1 << bits]];
        let placed: Vec<Option<(usize, std::ops::RangeInclusive<usize>)>> = candidates
            .iter()
            .map(|candidate| {
                Self::side(candidate, shortest)?;
                Some(Self::lists_of(candidate, bits))
            })
            .collect();
        for (side, lists) in placed.iter().flatten() {
            for list in lists.clone() {
                if let Some(length) = lengths.get_mut(*side).and_then(|side| side.get_mut(list)) {
                    *length += 1;
                }
            }
        }
        // A rule in a list past the limit goes to the tuples: clustered prefixes would make
        // every key of their network scan them all.
        let (indexed, tupled) = (0..candidates.len()).partition(|&position| {
            placed
                .get(position)
                .and_then(Option::as_ref)
                .is_some_and(|(side, lists)| {
                    lists.clone().all(|list| {
                        lengths
                            .get(*side)
                            .and_then(|side| side.get(list))
                            .is_some_and(|&length| length <= INDEX_LIST_LIMIT)
                    })
                })
        });
        (bits, indexed, tupled)
    }

    /// The side a candidate is listed on and the lists (by `bits` leading bits) it goes into.
    fn lists_of(candidate: &Candidate<A>, bits: u32) -> (usize, std::ops::RangeInclusive<usize>) {
        let (side, _) = Self::side(candidate, 0).unwrap_or((0, 0));
        let (value, mask) = if side == 0 {
            (candidate.compiled.value.src, candidate.compiled.mask.src)
        } else {
            (candidate.compiled.value.dst, candidate.compiled.mask.dst)
        };
        let first = value.leading(bits);
        let last = first | (!mask.leading(bits) & ((1usize << bits) - 1));
        (side, first..=last)
    }

    fn bits_for(rules: usize) -> u32 {
        (usize::BITS - rules.leading_zeros() + 2).clamp(8, 16)
    }

    /// `positions`: the candidates [`AddressIndex::split`] gave the index, in priority order.
    fn build(candidates: &[Candidate<A>], bits: u32, positions: &[usize]) -> AddressIndex<A> {
        let lists = 1usize << bits;
        let members: Vec<&Candidate<A>> = positions
            .iter()
            .filter_map(|&position| candidates.get(position))
            .collect();
        // Each member's side and the range of lists it goes into.
        let placed: Vec<(usize, std::ops::RangeInclusive<usize>)> = members
            .iter()
            .map(|candidate| Self::lists_of(candidate, bits))
            .collect();
        let sides = [0, 1].map(|side| {
            let mut counts = vec![0u32; lists + 1];
            for (_, range) in placed.iter().filter(|(s, _)| *s == side) {
                for list in range.clone() {
                    if let Some(count) = counts.get_mut(list + 1) {
                        *count += 1;
                    }
                }
            }
            for list in 0..lists {
                counts[list + 1] += counts[list];
            }
            let mut next: Vec<u32> = counts[..lists].to_vec();
            let mut positions = vec![0u32; counts[lists] as usize];
            for (position, (_, range)) in placed.iter().enumerate().filter(|(_, (s, _))| *s == side)
            {
                for list in range.clone() {
                    if let Some(slot) = next.get_mut(list) {
                        if let Some(entry) = positions.get_mut(*slot as usize) {
                            // Members fit in u32: `Classifier::compile` keeps lists that do.
                            *entry = u32::try_from(position).unwrap_or(u32::MAX);
                        }
                        *slot += 1;
                    }
                }
            }
            let mut occupied = vec![0u64; lists.div_ceil(64)];
            for (list, bounds) in counts.windows(2).enumerate() {
                if bounds[0] != bounds[1] {
                    occupied[list / 64] |= 1 << (list % 64);
                }
            }
            IndexSide {
                starts: counts.into_boxed_slice(),
                positions: positions.into_boxed_slice(),
                occupied: occupied.into_boxed_slice(),
            }
        });
        AddressIndex {
            bits,
            rules: members.iter().map(|candidate| candidate.compiled).collect(),
            sides,
        }
    }

    /// Whether the key's source or destination list holds a rule.
    #[inline(always)]
    fn has_candidates(&self, src: A, dst: A) -> bool {
        let [by_src, by_dst] = &self.sides;
        by_src.is_occupied(src.leading(self.bits)) | by_dst.is_occupied(dst.leading(self.bits))
    }

    /// The better of `best` and the first indexed rule matching `key`.
    #[inline(always)]
    fn lookup(&self, key: &KeyFields<A>, mut best: usize) -> usize {
        let [src, dst] = &self.sides;
        // Most lists are empty, and the test keeps the loop off their path.
        let list = src.list(key.src.leading(self.bits));
        if !list.is_empty() {
            best = self.scan(list, key, best);
        }
        let list = dst.list(key.dst.leading(self.bits));
        if !list.is_empty() {
            best = self.scan(list, key, best);
        }
        best
    }

    /// The better of `best` and the first rule of `list` matching `key`.
    #[inline(always)]
    fn scan(&self, list: &[u32], key: &KeyFields<A>, best: usize) -> usize {
        for &position in list {
            let Some(rule) = self.rules.get(position as usize) else {
                break;
            };
            if rule.priority >= best {
                break;
            }
            if rule.matches(key) {
                return rule.priority;
            }
        }
        best
    }
}

/// All tuples of one address family.
#[derive(Clone, Debug)]
struct FamilyTable<A> {
    /// Sorted by `best_priority`.
    tuples: Vec<Tuple<A>>,
    /// Every bucket's rules, one bucket after another, each in priority order.
    entries: Vec<CompiledRule<A>>,
    /// Rules of shapes too rare to deserve a tuple, checked one by one, in priority order.
    tail: Vec<CompiledRule<A>>,
    /// The rules with an address prefix, for families with an index ([`Address::INDEXED`]).
    index: Option<AddressIndex<A>>,
}

impl<A: Address> FamilyTable<A> {
    fn compile(rules: &[AclRule]) -> FamilyTable<A> {
        // A rule matching exactly what an earlier one matches can never be the first match:
        // leaving it out keeps buckets short when a list repeats itself.
        let mut seen = std::collections::HashSet::with_hasher(FxBuildHasher);
        let candidates: Vec<Candidate<A>> = rules
            .iter()
            .enumerate()
            .filter_map(|(priority, rule)| Candidate::new(priority, rule))
            .filter(|candidate| {
                let rule = &candidate.compiled;
                seen.insert((rule.value, rule.mask, rule.sport, rule.dport))
            })
            .collect();

        let (bits, indexed, tupled) = if A::INDEXED {
            AddressIndex::split(&candidates)
        } else {
            (0, Vec::new(), (0..candidates.len()).collect())
        };
        let index = (!indexed.is_empty()).then(|| AddressIndex::build(&candidates, bits, &indexed));

        let mut builders: Vec<TupleBuilder<A>> = Vec::new();
        for (position, candidate) in tupled
            .iter()
            .filter_map(|&position| Some((position, candidates.get(position)?)))
        {
            let index = Self::tuple_with_room(&builders, candidate, |_| true)
                .unwrap_or_else(|| Self::new_tuple(&mut builders, candidate));
            if let Some(builder) = builders.get_mut(index) {
                builder.insert(position, candidate);
            }
        }
        let tail = Self::merge_minor_tuples(&mut builders, &candidates);

        let mut entries = Vec::with_capacity(candidates.len());
        let mut tuples: Vec<Tuple<A>> = builders
            .into_iter()
            .filter(|tuple| tuple.rule_count > 0)
            .map(|builder| Tuple::build(builder.mask, builder.buckets, &candidates, &mut entries))
            .collect();
        tuples.sort_by_key(|tuple| tuple.best_priority);
        let tail: Vec<CompiledRule<A>> = tail
            .iter()
            .filter_map(|&position| candidates.get(position))
            .map(|candidate| candidate.compiled)
            .collect();
        FamilyTable {
            tuples,
            entries,
            tail,
            index,
        }
    }

    /// The fullest tuple among `eligible` ones that can take `candidate` without its bucket
    /// passing the limit: filling big tuples first keeps the count of tuples down.
    fn tuple_with_room(
        builders: &[TupleBuilder<A>],
        candidate: &Candidate<A>,
        eligible: impl Fn(&TupleBuilder<A>) -> bool,
    ) -> Option<usize> {
        builders
            .iter()
            .enumerate()
            .filter(|(_, tuple)| {
                eligible(tuple)
                    && tuple.shape.fits_within(&candidate.shape)
                    && tuple.bucket_len(candidate) < BUCKET_LIMIT
            })
            .max_by_key(|(index, tuple)| (tuple.rule_count, Reverse(*index)))
            .map(|(index, _)| index)
    }

    /// Opens the coarsest tuple for `candidate` that does not exist yet. If all exist (so
    /// all had a full bucket for it), returns the one of its exact shape, whose bucket then
    /// holds rules that differ only in their port ranges and overflows, as it must.
    fn new_tuple(builders: &mut Vec<TupleBuilder<A>>, candidate: &Candidate<A>) -> usize {
        for shape in candidate.shape.refinements::<A>() {
            if let Some(index) = builders.iter().position(|tuple| tuple.shape == shape) {
                if shape == candidate.shape {
                    return index;
                }
                continue;
            }
            builders.push(TupleBuilder::new(shape));
            return builders.len() - 1;
        }
        // Unreachable: the last refinement is the candidate's own shape.
        builders.len().saturating_sub(1)
    }

    /// Every tuple costs every lookup a probe, whether it holds 3 rules or 3,000, while one
    /// more rule in a bucket costs only the keys landing in that bucket one more compare.
    /// So, smallest first, a tuple is emptied when all its rules fit elsewhere: into a
    /// bigger tuple whose bucket for the rule stays under [`OVERFLOW_LIMIT`], or, for the
    /// rules of tuples of at most [`SMALL_TUPLE`] rules, into the tail, which every lookup
    /// scans and which takes at most [`TAIL_LIMIT`] rules. Returns the tail's candidate
    /// positions, in priority order.
    fn merge_minor_tuples(
        builders: &mut [TupleBuilder<A>],
        candidates: &[Candidate<A>],
    ) -> Vec<usize> {
        let mut order: Vec<usize> = (0..builders.len()).collect();
        order.sort_by_key(|&index| builders.get(index).map_or(0, |tuple| tuple.rule_count));

        let mut tail = Vec::new();
        for index in order {
            let Some(tuple) = builders.get(index) else {
                continue;
            };
            let rule_count = tuple.rule_count;
            if rule_count == 0 {
                continue;
            }
            let members = tuple.positions();
            let tail_before = tail.len();
            let mut moved: Vec<(usize, usize)> = Vec::with_capacity(members.len());
            let mut all_placed = true;
            for &position in &members {
                let Some(candidate) = candidates.get(position) else {
                    continue;
                };
                let target = builders
                    .iter()
                    .enumerate()
                    .filter(|&(other, tuple)| {
                        other != index
                            && tuple.rule_count > rule_count
                            && tuple.shape.fits_within(&candidate.shape)
                            && tuple.bucket_len(candidate) < OVERFLOW_LIMIT
                    })
                    .max_by_key(|(other, tuple)| (tuple.rule_count, Reverse(*other)))
                    .map(|(other, _)| other);
                match target {
                    Some(target) => {
                        if let Some(builder) = builders.get_mut(target) {
                            builder.insert(position, candidate);
                            moved.push((target, position));
                        }
                    }
                    None if rule_count <= SMALL_TUPLE && tail.len() < TAIL_LIMIT => {
                        tail.push(position);
                    }
                    None => {
                        all_placed = false;
                        break;
                    }
                }
            }
            if all_placed {
                if let Some(builder) = builders.get_mut(index) {
                    builder.clear();
                }
            } else {
                for (target, position) in moved {
                    if let (Some(builder), Some(candidate)) =
                        (builders.get_mut(target), candidates.get(position))
                    {
                        builder.remove(position, candidate);
                    }
                }
                tail.truncate(tail_before);
            }
        }
        tail.sort_unstable();
        tail
    }

    #[inline(always)]
    fn lookup(&self, key: &KeyFields<A>) -> Option<usize> {
        // The index first: it holds most rules of a realistic list, and a match there lets
        // the tuple walk stop early.
        let mut best = match &self.index {
            Some(index) => index.lookup(key, usize::MAX),
            None => usize::MAX,
        };
        if !self.tail.is_empty() || !self.tuples.is_empty() {
            best = self.lookup_tuples(key, best);
        }
        (best != usize::MAX).then_some(best)
    }

    /// The tail and the tuples, for rules without an indexed prefix.
    #[inline(never)]
    fn lookup_tuples(&self, key: &KeyFields<A>, mut best: usize) -> usize {
        // The tail first: it is short and in cache.
        if let Some(rule) = self.tail.iter().find(|rule| rule.matches(key)) {
            best = best.min(rule.priority);
        }
        for tuple in &self.tuples {
            if tuple.best_priority >= best {
                break;
            }
            best = self.search(tuple, key, best);
        }
        best
    }

    /// The best of `best` and the first rule of `tuple` matching `key`.
    #[inline]
    fn search(&self, tuple: &Tuple<A>, key: &KeyFields<A>, best: usize) -> usize {
        let Some(slot) = tuple.find(key) else {
            return best;
        };
        let start = slot.start as usize;
        let bucket = start..start.saturating_add(slot.len as usize);
        for rule in self.entries.get(bucket).unwrap_or_default() {
            if rule.priority >= best {
                break;
            }
            if rule.matches(key) {
                return rule.priority;
            }
        }
        best
    }
}

/// An ordered rule list compiled for lookups: [`Classifier::lookup`] returns the index of the
/// first rule that matches, exactly as `rules.iter().position(|rule| rule.matches(key))`
/// would, at a cost that does not grow with the list (see the module docs).
///
/// Built once per rule change; immutable and `Sync` afterwards, so workers share it.
#[derive(Clone, Debug)]
pub struct Classifier {
    ipv4: FamilyTable<u32>,
    ipv6: FamilyTable<u128>,
    /// For keys mixing families, which only a caller's bug produces: answered by a scan.
    rules: Vec<AclRule>,
    /// Too many rules for the tables: every key is answered by a scan.
    scan_only: bool,
    /// Every rule that can match an IPv4 key is in the IPv4 index (no tail, no tuples, no
    /// scanning): the two index lists of a key then say all (see
    /// [`Classifier::may_match_ipv4`]).
    ipv4_index_only: bool,
}

impl Classifier {
    /// Compiles `rules`, index 0 first. Accepts any rules, valid or not: an invalid rule
    /// matches what [`AclRule::matches`] says it does.
    pub fn compile(rules: &[AclRule]) -> Classifier {
        // Tables index rules with u32; a list longer than that (hundreds of gigabytes) is
        // answered by scanning, so it stays correct.
        let scan_only = u32::try_from(rules.len()).is_err();
        let tabled = if scan_only { &[] } else { rules };
        let ipv4 = FamilyTable::compile(tabled);
        let ipv4_index_only = !scan_only && ipv4.tail.is_empty() && ipv4.tuples.is_empty();
        Classifier {
            ipv4,
            ipv6: FamilyTable::compile(tabled),
            rules: rules.to_vec(),
            scan_only,
            ipv4_index_only,
        }
    }

    /// The index of the first rule matching `key`, or None.
    #[inline(always)]
    pub fn lookup(&self, key: &AclKey) -> Option<usize> {
        let rest = || {
            pack_rest(
                key.proto,
                key.sport,
                key.dport,
                key.icmp_type,
                key.is_established_tcp(),
            )
        };
        match (key.src, key.dst) {
            (IpAddr::V4(src), IpAddr::V4(dst)) if !self.scan_only => self.ipv4.lookup(&KeyFields {
                src: u32::from(src),
                dst: u32::from(dst),
                rest: rest(),
            }),
            (IpAddr::V6(src), IpAddr::V6(dst)) if !self.scan_only => self.ipv6.lookup(&KeyFields {
                src: u128::from(src),
                dst: u128::from(dst),
                rest: rest(),
            }),
            _ => self.scan(*key),
        }
    }

    /// False when no rule can match a key with IPv4 addresses `src` and `dst`, whatever its
    /// other fields: when all rules for IPv4 keys are indexed and neither of the key's
    /// lists holds one. Two loads for most keys of a realistic list (which match nothing),
    /// against the 100 instructions of a whole lookup (callgrind, `benches/pipeline.rs`).
    #[inline(always)]
    pub fn may_match_ipv4(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        match &self.ipv4.index {
            Some(index) if self.ipv4_index_only => {
                index.has_candidates(u32::from(src), u32::from(dst))
            }
            None if self.ipv4_index_only => false,
            _ => true,
        }
    }

    /// [`Classifier::lookup`] for a `key` whose addresses are `src` and `dst`: read from
    /// these, not from the key's `IpAddr`s, so that the compiler can leave the key out of
    /// memory (it is read whole only by lists too long for the tables).
    #[inline(always)]
    pub fn lookup_ipv4(&self, src: Ipv4Addr, dst: Ipv4Addr, key: &AclKey) -> Option<usize> {
        if self.scan_only {
            return self.scan(*key);
        }
        self.ipv4.lookup(&KeyFields {
            src: u32::from(src),
            dst: u32::from(dst),
            rest: pack_rest(
                key.proto,
                key.sport,
                key.dport,
                key.icmp_type,
                key.is_established_tcp(),
            ),
        })
    }

    /// For keys mixing families, and lists too long for the tables. Takes the key by
    /// value: a reference escaping here kept `lookup`'s callers from holding the key in
    /// registers (20 instructions a lookup, copying it to memory and back).
    #[inline(never)]
    fn scan(&self, key: AclKey) -> Option<usize> {
        self.rules.iter().position(|rule| rule.matches(&key))
    }

    /// Rules compiled, including any that can never match.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// One line per family: its tuples (rules / buckets / longest bucket, and the mask's
    /// address lengths), tail and prefilter, for diagnostics.
    pub fn describe(&self) -> String {
        fn family<A: Address>(name: &str, table: &FamilyTable<A>) -> String {
            let tuples: Vec<String> = table
                .tuples
                .iter()
                .map(|tuple| {
                    let buckets = tuple.slots.iter().filter(|slot| slot.len > 0);
                    let longest = buckets.clone().map(|slot| slot.len).max().unwrap_or(0);
                    format!(
                        "{}/{}/{} src {:x} dst {:x} rest {:x}",
                        tuple.entries.len(),
                        buckets.count(),
                        longest,
                        tuple.mask.src.fold(),
                        tuple.mask.dst.fold(),
                        tuple.mask.rest
                    )
                })
                .collect();
            let index = table.index.as_ref().map(|index| {
                let [src, dst] = &index.sides;
                format!(
                    "{} rules by {} bits, {} + {} listed",
                    index.rules.len(),
                    index.bits,
                    src.positions.len(),
                    dst.positions.len()
                )
            });
            format!(
                "{name}: index {index:?}, tuples [{}], tail {}",
                tuples.join("; "),
                table.tail.len(),
            )
        }
        format!(
            "{}\n{}",
            family("ipv4", &self.ipv4),
            family("ipv6", &self.ipv6)
        )
    }

    /// Hash tables a lookup may probe, IPv4 and IPv6 together; a lookup that matches
    /// nothing probes all of its family's.
    pub fn tuple_count(&self) -> usize {
        self.ipv4.tuples.len() + self.ipv6.tuples.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::acl::rule::{AclAction, PROTO_ICMP, PROTO_TCP, PROTO_UDP, TCP_FLAG_ACK};
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn rules(texts: &[&str]) -> Vec<AclRule> {
        texts.iter().map(|text| text.parse().unwrap()).collect()
    }

    fn key(src: &str, dst: &str, proto: u8, sport: u16, dport: u16) -> AclKey {
        AclKey {
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            proto,
            sport,
            dport,
            icmp_type: None,
            tcp_flags: 0,
        }
    }

    /// The reference: a first-match scan with its own definition of matching, written from
    /// the rule syntax's documentation (README, ACLs) and sharing no code with
    /// [`AclRule::matches`] or the classifier: addresses compared bit by bit, ranges by
    /// their bounds, `--established` from the TCP flag bits.
    fn linear(rules: &[AclRule], key: &AclKey) -> Option<usize> {
        rules.iter().position(|rule| reference::matches(rule, key))
    }

    mod reference {
        use super::*;

        /// An address as its family and its bytes, most significant first.
        fn bytes(address: IpAddr) -> (bool, [u8; 16]) {
            let mut out = [0u8; 16];
            match address {
                IpAddr::V4(v4) => {
                    out[..4].copy_from_slice(&v4.octets());
                    (true, out)
                }
                IpAddr::V6(v6) => (false, v6.octets()),
            }
        }

        fn bit(bytes: &[u8; 16], index: usize) -> u8 {
            (bytes[index / 8] >> (7 - index % 8)) & 1
        }

        /// Same family, and the first `len` bits of the address equal the prefix's.
        fn admits(prefix: IpNet, address: IpAddr) -> bool {
            let (prefix_is_v4, prefix_bytes) = bytes(prefix.addr());
            let (address_is_v4, address_bytes) = bytes(address);
            prefix_is_v4 == address_is_v4
                && (0..usize::from(prefix.prefix_len()))
                    .all(|index| bit(&prefix_bytes, index) == bit(&address_bytes, index))
        }

        pub fn matches(rule: &AclRule, key: &AclKey) -> bool {
            if rule.src.is_some_and(|prefix| !admits(prefix, key.src)) {
                return false;
            }
            if rule.dst.is_some_and(|prefix| !admits(prefix, key.dst)) {
                return false;
            }
            if rule.proto.is_some_and(|proto| proto != key.proto) {
                return false;
            }
            for (range, port) in [(rule.sport, key.sport), (rule.dport, key.dport)] {
                if let Some(range) = range {
                    if port < range.first || port > range.last {
                        return false;
                    }
                }
            }
            if let Some(icmp_type) = rule.icmp_type {
                if key.icmp_type != Some(icmp_type) {
                    return false;
                }
            }
            // TCP (6) with ACK (0x10) or RST (0x04) set.
            if rule.established && (key.proto != 6 || key.tcp_flags & 0x14 == 0) {
                return false;
            }
            true
        }

        #[test]
        fn the_reference_reads_the_rule_syntax_as_documented() {
            let key = |src: &str, dst: &str, proto: u8, dport: u16, flags: u8| AclKey {
                src: src.parse().unwrap(),
                dst: dst.parse().unwrap(),
                proto,
                sport: 40000,
                dport,
                icmp_type: None,
                tcp_flags: flags,
            };
            let rule = |text: &str| text.parse::<AclRule>().unwrap();
            let k = key("10.1.2.3", "192.0.2.9", 6, 22, 0x02);
            assert!(matches(&rule("allow --src 10.0.0.0/15"), &k));
            assert!(!matches(&rule("allow --src 10.2.0.0/15"), &k));
            assert!(matches(&rule("allow --dst 192.0.2.9"), &k));
            assert!(!matches(&rule("allow --dst ::/0"), &k));
            assert!(matches(&rule("allow --proto tcp --dport 20-22"), &k));
            assert!(!matches(&rule("allow --proto tcp --dport 23-30"), &k));
            assert!(!matches(&rule("allow --established"), &k));
            assert!(matches(
                &rule("allow --established"),
                &key("fd00::1", "fd00::2", 6, 1, 0x04)
            ));
            assert!(!matches(
                &rule("allow --established"),
                &key("fd00::1", "fd00::2", 17, 1, 0x10)
            ));
        }
    }

    /// Looks `key` up and checks the answer against the reference scan.
    fn classify(rules: &[AclRule], key: &AclKey) -> Option<usize> {
        let found = Classifier::compile(rules).lookup(key);
        assert_eq!(found, linear(rules, key), "{key:?}");
        found
    }

    #[test]
    fn empty_classifier_matches_nothing() {
        let classifier = Classifier::compile(&[]);
        assert!(classifier.is_empty());
        assert_eq!(classifier.len(), 0);
        assert_eq!(classifier.tuple_count(), 0);
        assert_eq!(
            classifier.lookup(&key("10.0.0.1", "10.0.0.2", PROTO_TCP, 1, 2)),
            None
        );
    }

    #[test]
    fn first_match_wins_in_list_order() {
        let list = rules(&[
            "deny --proto tcp --dport 22 --src 10.0.0.66",
            "allow --proto tcp --dport 22 --src 10.0.0.0/24",
            "deny --src 10.0.0.0/8",
            "allow",
        ]);
        assert_eq!(
            classify(&list, &key("10.0.0.66", "10.9.9.9", PROTO_TCP, 5, 22)),
            Some(0)
        );
        assert_eq!(
            classify(&list, &key("10.0.0.67", "10.9.9.9", PROTO_TCP, 5, 22)),
            Some(1)
        );
        assert_eq!(
            classify(&list, &key("10.0.1.67", "10.9.9.9", PROTO_TCP, 5, 22)),
            Some(2)
        );
        assert_eq!(
            classify(&list, &key("10.0.0.67", "10.9.9.9", PROTO_TCP, 5, 23)),
            Some(2)
        );
        assert_eq!(
            classify(&list, &key("11.0.0.67", "10.9.9.9", PROTO_TCP, 5, 22)),
            Some(3)
        );
        assert_eq!(
            classify(&list, &key("fd00::1", "fd00::2", PROTO_TCP, 5, 22)),
            Some(3)
        );
    }

    #[test]
    fn a_later_broader_rule_never_shadows_an_earlier_specific_one() {
        let list = rules(&["allow --src 10.1.2.3", "deny --src 10.0.0.0/8", "deny"]);
        assert_eq!(
            classify(&list, &key("10.1.2.3", "1.1.1.1", 0, 0, 0)),
            Some(0)
        );
        let reversed = rules(&["deny", "allow --src 10.1.2.3"]);
        assert_eq!(
            classify(&reversed, &key("10.1.2.3", "1.1.1.1", 0, 0, 0)),
            Some(0)
        );
    }

    #[test]
    fn source_and_destination_prefixes() {
        let list = rules(&[
            "allow --src 198.18.0.0/24 --dst 198.19.0.0/16",
            "allow --dst fd00::/64",
        ]);
        assert_eq!(
            classify(&list, &key("198.18.0.9", "198.19.200.1", 17, 0, 0)),
            Some(0)
        );
        assert_eq!(
            classify(&list, &key("198.18.1.9", "198.19.200.1", 17, 0, 0)),
            None
        );
        assert_eq!(
            classify(&list, &key("198.18.0.9", "198.20.0.1", 17, 0, 0)),
            None
        );
        assert_eq!(
            classify(&list, &key("fd01::1", "fd00::1:2", 17, 0, 0)),
            Some(1)
        );
        assert_eq!(
            classify(&list, &key("fd01::1", "fd00:0:0:1::2", 17, 0, 0)),
            None
        );
    }

    #[test]
    fn protocol_and_port_ranges_are_inclusive() {
        let list = rules(&[
            "allow --proto udp --dport 1000-2000",
            "allow --proto tcp --sport 53",
            "allow --proto sctp --sport 0-65535 --dport 65535",
        ]);
        let k = |proto, sport, dport| key("10.0.0.1", "10.0.0.2", proto, sport, dport);
        assert_eq!(classify(&list, &k(PROTO_UDP, 9, 999)), None);
        assert_eq!(classify(&list, &k(PROTO_UDP, 9, 1000)), Some(0));
        assert_eq!(classify(&list, &k(PROTO_UDP, 9, 2000)), Some(0));
        assert_eq!(classify(&list, &k(PROTO_UDP, 9, 2001)), None);
        assert_eq!(classify(&list, &k(PROTO_TCP, 9, 1500)), None);
        assert_eq!(classify(&list, &k(PROTO_TCP, 53, 1)), Some(1));
        assert_eq!(classify(&list, &k(PROTO_UDP, 53, 1)), None);
        assert_eq!(classify(&list, &k(132, 0, 65535)), Some(2));
        assert_eq!(classify(&list, &k(132, 0, 65534)), None);
    }

    #[test]
    fn icmp_type_and_established() {
        let list = rules(&[
            "allow --proto icmp --icmp-type 0",
            "allow --proto icmpv6 --icmp-type 129",
            "allow --established",
        ]);
        let mut echo_reply = key("10.0.0.1", "10.0.0.2", PROTO_ICMP, 0, 0);
        echo_reply.icmp_type = Some(0);
        assert_eq!(classify(&list, &echo_reply), Some(0));
        echo_reply.icmp_type = Some(8);
        assert_eq!(classify(&list, &echo_reply), None);
        echo_reply.icmp_type = None;
        assert_eq!(classify(&list, &echo_reply), None);
        let mut v6_reply = key("fd00::1", "fd00::2", 58, 0, 0);
        v6_reply.icmp_type = Some(129);
        assert_eq!(classify(&list, &v6_reply), Some(1));

        let mut syn = key("10.0.0.1", "10.0.0.2", PROTO_TCP, 22, 5000);
        syn.tcp_flags = 0x02;
        assert_eq!(classify(&list, &syn), None);
        let mut ack = syn;
        ack.tcp_flags = TCP_FLAG_ACK;
        assert_eq!(classify(&list, &ack), Some(2));
        let mut udp_with_flags = ack;
        udp_with_flags.proto = PROTO_UDP;
        assert_eq!(classify(&list, &udp_with_flags), None);
    }

    #[test]
    fn invalid_rules_match_what_their_fields_say() {
        let mut mixed = AclRule::any(AclAction::Deny);
        mixed.src = Some("10.0.0.0/8".parse().unwrap());
        mixed.dst = Some("fd00::/8".parse().unwrap());
        let mut upside_down = AclRule::any(AclAction::Deny);
        upside_down.dport = Some(PortRange { first: 9, last: 1 });
        let mut host_bits = AclRule::any(AclAction::Deny);
        host_bits.src = Some("10.1.2.3/16".parse().unwrap());
        let list = vec![
            mixed,
            upside_down,
            host_bits,
            AclRule::any(AclAction::Allow),
        ];
        assert_eq!(
            classify(&list, &key("10.0.0.1", "fd00::1", 0, 0, 0)),
            Some(0)
        );
        assert_eq!(
            classify(&list, &key("10.0.0.1", "10.0.0.1", 0, 0, 5)),
            Some(3)
        );
        assert_eq!(
            classify(&list, &key("10.1.200.1", "10.0.0.1", 0, 0, 5)),
            Some(2)
        );
        assert_eq!(
            classify(&list, &key("fd00::1", "10.0.0.1", 0, 0, 5)),
            Some(3)
        );
    }

    #[test]
    fn many_similar_rules_share_few_tuples() {
        // IPv6, which has no index: tuples hold all of these.
        let list: Vec<AclRule> = (0..10_000u128)
            .map(|n| {
                let mut rule = AclRule::any(AclAction::Allow);
                let network = (0xfd00 << 112) | (n << 64);
                rule.src = Some(IpNet::new(IpAddr::V6(Ipv6Addr::from(network)), 64).unwrap());
                rule.proto = Some(PROTO_TCP);
                rule.dport = Some(PortRange::single(n as u16));
                rule
            })
            .collect();
        let classifier = Classifier::compile(&list);
        assert_eq!(classifier.tuple_count(), 1);
        assert_eq!(classifier.len(), 10_000);
        let hit = key("fd00:0:0:2a::7", "fd00::1", PROTO_TCP, 0, 42);
        assert_eq!(classifier.lookup(&hit), Some(42));
    }

    #[test]
    fn ipv4_rules_with_a_prefix_are_indexed() {
        let list: Vec<AclRule> = (0..10_000u32)
            .map(|n| {
                let mut rule = AclRule::any(AclAction::Allow);
                // Spread over the address space (n times an odd number in the top 16 bits),
                // as the index wants them: one /24 per list.
                let network = (n.wrapping_mul(0x9e37) & 0xffff) << 16 | (n & 0xff) << 8;
                rule.src = Some(IpNet::new(IpAddr::V4(Ipv4Addr::from(network)), 24).unwrap());
                rule.proto = Some(PROTO_TCP);
                rule.dport = Some(PortRange::single(n as u16));
                rule
            })
            .collect();
        let classifier = Classifier::compile(&list);
        assert_eq!(classifier.tuple_count(), 0);
        let index = classifier.ipv4.index.as_ref().expect("an index");
        assert_eq!(index.rules.len(), 10_000);
        // Each /24 is in one list of the 16-bit index: no copies.
        assert_eq!(index.bits, 16);
        assert_eq!(index.sides[0].positions.len(), 10_000);
        let host = |n: u32| {
            let network = (n.wrapping_mul(0x9e37) & 0xffff) << 16 | (n & 0xff) << 8;
            Ipv4Addr::from(network | 7).to_string()
        };
        let hit = key(&host(42), "1.1.1.1", PROTO_TCP, 0, 42);
        assert_eq!(classifier.lookup(&hit), Some(42));
        let miss = key(&host(42), "1.1.1.1", PROTO_TCP, 0, 43);
        assert_eq!(classifier.lookup(&miss), None);
    }

    #[test]
    fn prefixes_clustered_in_one_network_go_to_tuples() {
        // The same 10,000 /24s packed into 0.0.0.0/10: 40 lists of 256 under a 16-bit
        // index, far past the cap, so tuples take them and tell them apart by /24.
        let list: Vec<AclRule> = (0..10_000u32)
            .map(|n| {
                let mut rule = AclRule::any(AclAction::Allow);
                rule.src = Some(IpNet::new(IpAddr::V4(Ipv4Addr::from(n << 8)), 24).unwrap());
                rule.proto = Some(PROTO_TCP);
                rule.dport = Some(PortRange::single(n as u16));
                rule
            })
            .collect();
        let classifier = Classifier::compile(&list);
        // Only the last list, 9,984 to 9,999, is short enough for the index.
        let index = classifier.ipv4.index.as_ref().expect("an index");
        assert_eq!(index.rules.len(), 16, "{}", classifier.describe());
        assert_eq!(classifier.ipv4.tuples.len(), 1, "{}", classifier.describe());
        let hit = key("0.0.42.7", "1.1.1.1", PROTO_TCP, 0, 42);
        assert_eq!(classifier.lookup(&hit), Some(42));
        let miss = key("0.0.42.7", "1.1.1.1", PROTO_TCP, 0, 43);
        assert_eq!(classifier.lookup(&miss), None);
    }

    #[test]
    fn index_sides_copies_and_what_stays_in_tuples() {
        let list = rules(&[
            "deny --src 10.1.0.0/16 --dst 192.168.7.0/24",
            "allow --src 10.0.0.0/8",
            "allow --dst 172.16.0.0/12 --proto tcp",
            "deny --src 64.0.0.0/2",
            "allow --proto udp --dport 53",
            "allow --src fd00::/8",
        ]);
        let classifier = Classifier::compile(&list);
        let index = classifier.ipv4.index.as_ref().expect("an index");
        // The first three; the /2 is shorter than MIN_INDEXED_LEN, the UDP rule has no
        // prefix, the last is IPv6.
        assert_eq!(index.rules.len(), 3);
        // 8 index bits: the /8 goes into one list, the /12 and /16 into one each, and the
        // rule with two prefixes is listed by its longer one, the destination.
        assert_eq!(index.bits, 8);
        assert_eq!(index.sides[0].positions.len(), 1);
        assert_eq!(index.sides[1].positions.len(), 2);
        let k = |src, dst, proto, dport| key(src, dst, proto, 1, dport);
        assert_eq!(
            classifier.lookup(&k("10.1.2.3", "192.168.7.9", 6, 1)),
            Some(0)
        );
        assert_eq!(
            classifier.lookup(&k("10.1.2.3", "192.168.8.9", 6, 1)),
            Some(1)
        );
        assert_eq!(
            classifier.lookup(&k("11.1.2.3", "172.17.0.1", 6, 1)),
            Some(2)
        );
        assert_eq!(classifier.lookup(&k("11.1.2.3", "172.17.0.1", 17, 1)), None);
        assert_eq!(
            classifier.lookup(&k("100.1.2.3", "1.1.1.1", 17, 53)),
            Some(3)
        );
        assert_eq!(classifier.lookup(&k("1.1.2.3", "1.1.1.1", 17, 53)), Some(4));
    }

    #[test]
    fn short_prefixes_past_the_copy_budget_go_to_tuples_and_stay_exact() {
        // Each /8 sixteen times over, and as many /20s: copied into every list of the index
        // they cover, the /8s would pass the budget, so they stay out of the index.
        let list: Vec<AclRule> = (0..4096u32)
            .map(|n| {
                let (len, network) = if n % 2 == 0 {
                    (8, n << 23)
                } else {
                    (20, n << 12)
                };
                let mut rule = AclRule::any(AclAction::Allow);
                let network = Ipv4Addr::from(network & u32::MAX << (32 - len));
                rule.src = Some(IpNet::new(IpAddr::V4(network), len).unwrap());
                rule.dport = Some(PortRange::single(n as u16));
                rule.proto = Some(PROTO_UDP);
                rule
            })
            .collect();
        let classifier = Classifier::compile(&list);
        let index = classifier.ipv4.index.as_ref().expect("an index");
        let listed = index.sides[0].positions.len() + index.sides[1].positions.len();
        assert!(
            listed <= AddressIndex::<u32>::COPIES_PER_RULE * list.len() + (1 << index.bits),
            "{listed} copies"
        );
        assert_eq!(index.rules.len(), list.len() / 2, "only the /20s indexed");
        assert!(classifier.tuple_count() > 0);
        for n in 0..4096u32 {
            let src = Ipv4Addr::from(n.wrapping_mul(0x0100_7001)).to_string();
            for dport in [n as u16, (n + 1) as u16] {
                let k = key(&src, "1.1.1.1", PROTO_UDP, 1, dport);
                assert_eq!(classifier.lookup(&k), linear(&list, &k), "{k:?}");
            }
        }
    }

    #[test]
    fn rare_shapes_go_to_the_tail_and_still_match_in_order() {
        let mut texts: Vec<String> = (0..100)
            .map(|n| format!("allow --src fd00:0:0:{n:x}::/64"))
            .collect();
        texts.insert(0, "deny --dst fd99::/32".to_string());
        texts.push("deny --proto udp --dport 53".to_string());
        let list: Vec<AclRule> = texts.iter().map(|text| text.parse().unwrap()).collect();
        let classifier = Classifier::compile(&list);
        assert_eq!(classifier.tuple_count(), 1);
        assert_eq!(classifier.ipv6.tail.len(), 2);
        let k = |src, dst, proto, dport| key(src, dst, proto, 1, dport);
        assert_eq!(
            classifier.lookup(&k("fd00:0:0:7::1", "fd99::1", PROTO_UDP, 53)),
            Some(0)
        );
        assert_eq!(
            classifier.lookup(&k("fd00:0:0:7::1", "fd98::1", PROTO_UDP, 53)),
            Some(8)
        );
        assert_eq!(
            classifier.lookup(&k("fd00:1:0:7::1", "fd98::1", PROTO_UDP, 53)),
            Some(101)
        );
        assert_eq!(
            classifier.lookup(&k("fd00:1:0:7::1", "fd98::1", PROTO_UDP, 54)),
            None
        );
    }

    #[test]
    fn keys_sharing_a_fingerprint_share_a_slot_and_both_are_found() {
        // Four /128 rules make a tuple of 8 slots; find two addresses whose hashes agree in
        // the fingerprint and the slot, which compile must merge into one bucket. (IPv6:
        // IPv4 rules with prefixes go to the index, not to tuples.)
        let base: u128 = 0xfd00 << 112;
        let slot_of = |address: u128| {
            let hash = KeyFields {
                src: address,
                dst: 0,
                rest: 0,
            }
            .hash();
            (fingerprint(hash), hash & 7)
        };
        let mut seen = HashMap::new();
        let (first, second) = (0..1u128 << 22)
            .find_map(|low| {
                seen.insert(slot_of(base | low), base | low)
                    .map(|earlier| (earlier, base | low))
            })
            .expect("a 35-bit collision among 4 million addresses");
        let addresses = [first, base | 0xc000_0201, second, base | 0xc000_0202];
        let list: Vec<AclRule> = addresses
            .iter()
            .map(|&address| {
                format!("allow --src {}", Ipv6Addr::from(address))
                    .parse()
                    .unwrap()
            })
            .collect();
        let classifier = Classifier::compile(&list);
        assert_eq!(classifier.tuple_count(), 1);
        assert!(classifier.ipv6.tail.is_empty());
        let shared = classifier.ipv6.tuples[0]
            .slots
            .iter()
            .find(|slot| slot.len == 2)
            .expect("the colliding addresses share a slot");
        assert_eq!(shared.fingerprint, slot_of(first).0);
        for (index, &address) in addresses.iter().enumerate() {
            let src = Ipv6Addr::from(address).to_string();
            assert_eq!(
                classifier.lookup(&key(&src, "fd00::1", 0, 0, 0)),
                Some(index)
            );
        }
        assert_eq!(
            classifier.lookup(&key("fd00::3:0:0:3", "fd00::1", 0, 0, 0)),
            None
        );
    }

    #[test]
    fn overflowing_buckets_stay_exact() {
        // Identical but for their port ranges: one bucket, longer than BUCKET_LIMIT.
        let list: Vec<AclRule> = (0..100u16)
            .map(|n| {
                let mut rule = AclRule::any(AclAction::Allow);
                rule.proto = Some(PROTO_UDP);
                rule.dport = Some(PortRange {
                    first: n * 10,
                    last: n * 10 + 5,
                });
                rule
            })
            .collect();
        let classifier = Classifier::compile(&list);
        for dport in 0..1100 {
            let k = key("10.0.0.1", "10.0.0.2", PROTO_UDP, 0, dport);
            assert_eq!(classifier.lookup(&k), linear(&list, &k), "dport {dport}");
        }
    }

    // Random rule sets drawn from a few overlapping prefixes and ports, so that rules
    // overlap and keys hit them often.

    const V4_BASES: [u32; 3] = [0x0a00_0000, 0x0a01_0200, 0xc612_0000];
    const V6_BASES: [u128; 2] = [0xfd00 << 112, (0xfd00 << 112) | (0x1234 << 64)];
    const PORTS: [u16; 6] = [0, 22, 53, 80, 1000, 65535];
    const PROTOS: [u8; 6] = [PROTO_TCP, PROTO_UDP, PROTO_ICMP, 58, 132, 47];

    fn v4_address() -> impl Strategy<Value = Ipv4Addr> {
        (
            prop::sample::select(&V4_BASES[..]),
            0..512u32,
            any::<u32>(),
            0..8u32,
        )
            .prop_map(|(base, low, random, pick)| {
                Ipv4Addr::from(if pick == 0 { random } else { base | low })
            })
    }

    fn v6_address() -> impl Strategy<Value = Ipv6Addr> {
        (
            prop::sample::select(&V6_BASES[..]),
            0..512u128,
            any::<u128>(),
            0..8u32,
        )
            .prop_map(|(base, low, random, pick)| {
                Ipv6Addr::from(if pick == 0 { random } else { base | low })
            })
    }

    fn prefix(address: IpAddr, len_fraction: u8) -> IpNet {
        let bits: u16 = if address.is_ipv4() { 32 } else { 128 };
        let len = (u16::from(len_fraction) * (bits + 1) / 256) as u8;
        IpNet::new(address, len).map_or(IpNet::from(address), |net| net.trunc())
    }

    fn port() -> impl Strategy<Value = u16> {
        prop_oneof![prop::sample::select(&PORTS[..]), 990..1010u16, any::<u16>()]
    }

    fn port_range() -> impl Strategy<Value = PortRange> {
        (port(), port()).prop_map(|(a, b)| PortRange {
            first: a.min(b),
            last: a.max(b),
        })
    }

    fn rule() -> impl Strategy<Value = AclRule> {
        let family_v6 = prop::bool::weighted(0.3);
        (
            family_v6,
            (v4_address(), v6_address(), any::<u8>(), any::<u8>()),
            (0..4u8, 0..4u8, prop::bool::weighted(0.05)),
            prop::option::weighted(0.7, prop::sample::select(&PROTOS[..])),
            (
                prop::option::weighted(0.2, port_range()),
                prop::option::weighted(0.5, port_range()),
                prop::option::weighted(0.2, 0..4u8),
                prop::bool::weighted(0.15),
                prop::bool::weighted(0.05),
            ),
        )
            .prop_map(
                |(
                    v6,
                    (v4a, v6a, src_len, dst_len),
                    (src_pick, dst_pick, mix_families),
                    proto,
                    (sport, dport, icmp_type, established, invalid),
                )| {
                    let address = |other: bool| -> IpAddr {
                        if v6 != other {
                            IpAddr::V6(v6a)
                        } else {
                            IpAddr::V4(v4a)
                        }
                    };
                    let mut rule = AclRule::any(if src_len % 2 == 0 {
                        AclAction::Allow
                    } else {
                        AclAction::Deny
                    });
                    rule.src = (src_pick != 0).then(|| prefix(address(false), src_len));
                    rule.dst = (dst_pick != 0).then(|| prefix(address(mix_families), dst_len));
                    rule.proto = proto;
                    rule.sport = sport;
                    rule.dport = dport;
                    rule.icmp_type = icmp_type;
                    rule.established = established;
                    if invalid {
                        rule.dport = Some(PortRange {
                            first: 2000,
                            last: 1000,
                        });
                    }
                    rule
                },
            )
    }

    fn random_key() -> impl Strategy<Value = AclKey> {
        (
            prop::bool::ANY,
            (v4_address(), v4_address(), v6_address(), v6_address()),
            prop::sample::select(&PROTOS[..]),
            (port(), port()),
            prop::option::of(0..4u8),
            prop::sample::select(&[0u8, 0x02, 0x10, 0x04, 0x12][..]),
        )
            .prop_map(
                |(v6, (s4, d4, s6, d6), proto, (sport, dport), icmp_type, tcp_flags)| AclKey {
                    src: if v6 { IpAddr::V6(s6) } else { IpAddr::V4(s4) },
                    dst: if v6 { IpAddr::V6(d6) } else { IpAddr::V4(d4) },
                    proto,
                    sport,
                    dport,
                    icmp_type,
                    tcp_flags,
                },
            )
    }

    /// A random key, a rule to aim at, and bits to fill in what the rule leaves open.
    fn probe() -> impl Strategy<Value = (AclKey, prop::sample::Index, u128)> {
        (random_key(), any::<prop::sample::Index>(), any::<u128>())
    }

    /// A key built to fall inside `rule` where the rule pins a field, random elsewhere.
    fn key_near(rule: &AclRule, mut key: AclKey, host_bits: u128) -> AclKey {
        let inside = |prefix: IpNet| match prefix {
            IpNet::V4(net) => {
                let host = (host_bits as u32) & !u32::from(net.netmask());
                IpAddr::V4(Ipv4Addr::from(u32::from(net.network()) | host))
            }
            IpNet::V6(net) => {
                let host = host_bits & !u128::from(net.netmask());
                IpAddr::V6(Ipv6Addr::from(u128::from(net.network()) | host))
            }
        };
        if let Some(src) = rule.src {
            key.src = inside(src);
        }
        if let Some(dst) = rule.dst {
            key.dst = inside(dst);
        }
        if let Some(proto) = rule.proto {
            key.proto = proto;
        }
        let pick = |range: Option<PortRange>, current: u16| match range {
            Some(range) if range.first <= range.last => {
                range.first
                    + (host_bits as u16) % (range.last - range.first).saturating_add(1).max(1)
            }
            _ => current,
        };
        key.sport = pick(rule.sport, key.sport);
        key.dport = pick(rule.dport, key.dport);
        if rule.icmp_type.is_some() {
            key.icmp_type = rule.icmp_type;
        }
        if rule.established {
            key.proto = PROTO_TCP;
            key.tcp_flags = TCP_FLAG_ACK;
        }
        key
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn lookup_agrees_with_a_linear_scan(
            list in prop::collection::vec(rule(), 0..60),
            probes in prop::collection::vec((probe(), prop::bool::weighted(0.7)), 1..40),
        ) {
            let classifier = Classifier::compile(&list);
            prop_assert_eq!(classifier.len(), list.len());
            for ((random, target, host_bits), near) in probes {
                let key = if near && !list.is_empty() {
                    key_near(target.get(&list), random, host_bits)
                } else {
                    random
                };
                prop_assert_eq!(classifier.lookup(&key), linear(&list, &key), "key {:?}", key);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(40))]

        #[test]
        fn lookup_agrees_on_large_sets(
            // Rules without prefixes would match nearly every key early; leave them to the
            // small sets so that here the search often runs through every tuple.
            list in prop::collection::vec(
                rule().prop_filter("no prefix", |rule| rule.src.is_some() || rule.dst.is_some()),
                200..600,
            ),
            probes in prop::collection::vec(probe(), 50..100),
        ) {
            let classifier = Classifier::compile(&list);
            for (random, target, host_bits) in probes {
                for key in [random, key_near(target.get(&list), random, host_bits)] {
                    prop_assert_eq!(classifier.lookup(&key), linear(&list, &key), "key {:?}", key);
                }
            }
        }
    }

    #[test]
    fn clustered_prefixes_stay_out_of_long_index_lists() {
        // The `bench/scenario.sh acl` set: 999 prefixes inside one /16, all in one list of
        // an index by leading bits; the previous classifier scanned them all (2 µs a key).
        let list = crate::pipeline::acl::classbench::scenario_acl_rules(2544);
        let classifier = Classifier::compile(&list);
        if let Some(index) = &classifier.ipv4.index {
            for side in &index.sides {
                for list in 0..(1usize << index.bits) {
                    // A literal, not the constant: a cap lifted to "no cap" must fail here.
                    assert!(side.list(list).len() <= 32, "list {list}");
                }
            }
        }
        assert!(classifier.tuple_count() <= 6, "{}", classifier.describe());
        for key in crate::pipeline::acl::classbench::scenario_acl_keys(64) {
            assert_eq!(classifier.lookup(&key), Some(999));
            assert_eq!(linear(&list, &key), Some(999));
        }
    }

    #[test]
    fn repeated_rules_are_compiled_once_and_the_first_copy_decides() {
        let list = rules(&[
            "deny --proto udp --dport 53",
            "allow --proto udp --dport 53",
            "allow --proto udp --dport 53-54",
            "allow --proto udp --dport 53",
        ]);
        let classifier = Classifier::compile(&list);
        let entries = classifier.ipv4.entries.len()
            + classifier.ipv4.tail.len()
            + classifier
                .ipv4
                .index
                .as_ref()
                .map_or(0, |index| index.rules.len());
        assert_eq!(entries, 2, "{}", classifier.describe());
        assert_eq!(
            classify(&list, &key("10.0.0.1", "10.0.0.2", PROTO_UDP, 1, 53)),
            Some(0)
        );
        assert_eq!(
            classify(&list, &key("10.0.0.1", "10.0.0.2", PROTO_UDP, 1, 54)),
            Some(2)
        );
    }

    /// An edit to a rule list, as the control plane makes them (`acl add --at`, `acl del`,
    /// `acl move`), each followed by a recompilation.
    #[derive(Clone, Debug)]
    enum Edit {
        Insert(prop::sample::Index, AclRule),
        Delete(prop::sample::Index),
        Move(prop::sample::Index, prop::sample::Index),
    }

    fn edit() -> impl Strategy<Value = Edit> {
        prop_oneof![
            (any::<prop::sample::Index>(), rule()).prop_map(|(at, rule)| Edit::Insert(at, rule)),
            any::<prop::sample::Index>().prop_map(Edit::Delete),
            (any::<prop::sample::Index>(), any::<prop::sample::Index>())
                .prop_map(|(from, to)| Edit::Move(from, to)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(60))]

        #[test]
        fn inserts_deletes_and_moves_keep_lookups_exact(
            mut list in prop::collection::vec(rule(), 1..40),
            edits in prop::collection::vec(edit(), 1..12),
            probes in prop::collection::vec(probe(), 20..40),
        ) {
            for edit in edits {
                match edit {
                    Edit::Insert(at, rule) => {
                        let at = at.index(list.len() + 1);
                        list.insert(at, rule);
                    }
                    Edit::Delete(at) if !list.is_empty() => {
                        list.remove(at.index(list.len()));
                    }
                    Edit::Move(from, to) if !list.is_empty() => {
                        let rule = list.remove(from.index(list.len()));
                        let to = to.index(list.len() + 1);
                        list.insert(to, rule);
                    }
                    _ => {}
                }
                let classifier = Classifier::compile(&list);
                for (random, target, host_bits) in &probes {
                    let key = if list.is_empty() {
                        *random
                    } else {
                        key_near(target.get(&list), *random, *host_bits)
                    };
                    prop_assert_eq!(classifier.lookup(&key), linear(&list, &key), "key {:?}", key);
                    prop_assert_eq!(classifier.lookup(random), linear(&list, random), "key {:?}", random);
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(12))]

        #[test]
        fn lookup_agrees_on_classbench_shaped_sets(
            seed in prop::sample::select(&crate::pipeline::acl::classbench::Seed::ALL[..]),
            count in 100..3000usize,
            random_seed in any::<u64>(),
        ) {
            use crate::pipeline::acl::classbench;
            let list = classbench::rules(seed, count, random_seed);
            let classifier = Classifier::compile(&list);
            for key in classbench::keys_for(&list, 300, random_seed ^ 0x6b65) {
                prop_assert_eq!(classifier.lookup(&key), linear(&list, &key), "{:?} key {:?}", seed, key);
            }
        }
    }
}
