//! The classifier as of commit 02eb3f7 (address index with unbounded lists, tuples refined
//! on single ports only), kept as the benchmark's baseline; the switch does not use it.
//! Its text is unchanged apart from its imports and these lines.
#![allow(dead_code)]

// First-match classification of a key against an ordered rule list, at a per-frame cost
// that does not grow with the number of rules.
//
// # Design: an address index for IPv4, tuple-space search for the rest
//
// Most rules of a realistic list name an address prefix, and a prefix is what tells them
// apart best. So IPv4 rules with a prefix of at least 8 bits go to an [`AddressIndex`]:
// lists of rules by the leading bits (8 to 16, more for longer lists) of the address their
// longer prefix is on, a shorter prefix copied into every list it covers. A lookup reads
// the two lists of its key (by source, by destination), one bit each says whether they
// hold anything at all, and only then checks their rules in full: as many as have a prefix
// containing the key's addresses, about 2 at 10,000 realistic rules. The rules left (no
// prefix, a prefix under /8, all of IPv6, whose addresses share their leading bits) go to
// tuples, as below; for realistic IPv4 lists there are none, and a key whose lists are
// both empty is answered from two bits ([`Classifier::may_match_ipv4`]).
//
// Measured with `benches/pipeline.rs` (realistic rules, 80% of keys IPv4, most matching
// nothing), the index took a lookup from 103 to 44 ns at 1,000 rules and from 214 to
// 92 ns at 10,000, where tuples alone held buckets of 15 rules sharing a /8 with the key.
//
// # Tuple-space search with merged tuples
//
// A rule's *shape* is which bits of the key it looks at: the source and destination prefix
// lengths, whether it fixes the protocol, the ICMP type and the established bit, and how
// many leading bits of each port its range pins down. All rules of one shape can be found
// with a single hash probe: mask the key with the shape, look the result up. Classic
// tuple-space search keeps one hash table (a *tuple*) per shape and probes every one, so
// its cost is the number of distinct shapes, which grows with the rule set (25 source
// lengths times 25 destination lengths times the port variants...).
//
// Here, as in TupleMerge (Daly et al., 2019), a tuple may hold rules *more* specific than
// its mask: the mask only selects a short bucket of candidates, and each candidate is then
// checked in full. A rule fits a tuple when the tuple hashes no bit the rule leaves open (a
// /24 rule fits a /16 tuple; a 1000-2000 port range fits a tuple that ignores ports).
// [`Classifier::compile`] works in three steps:
//
// 1. Rules in priority order go into the fullest tuple they fit whose bucket for them
//    holds fewer than [`BUCKET_LIMIT`] rules. When none has room, a new tuple opens, as
//    coarse as will serve: first one hashing only the rule's more specific address, its
//    prefix length rounded down to a level (IPv4: 8, 16, 24, 32; IPv6: 16, 32, 48, 64, 96,
//    128), so that later rules of nearby lengths join it; if that tuple exists and is full
//    for the rule, one hashing both addresses, then one adding the protocol, single ports,
//    ICMP type and established bit, and last the rule's exact shape. (Rules without
//    addresses start at the third.)
// 2. Each tuple costs every lookup a probe, however few rules it holds, while one more
//    rule in a bucket costs only the keys landing there one more compare. So tuples are
//    emptied, smallest first, when all their rules fit into bigger tuples with buckets
//    under [`OVERFLOW_LIMIT`], or (for tuples of three rules or fewer) into a *tail* of at
//    most [`TAIL_LIMIT`] rules that every lookup checks one by one.
// 3. Each tuple becomes an open-addressed table, at most half full, of 32-bit fingerprints
//    of its masked keys, pointing at its buckets in one flat array of compiled rules
//    (integer value/mask pairs and port ranges). A fingerprint shared by two keys merges
//    their buckets, which costs compares, never correctness.
//
// The number of tuples is thus bounded by the levels, not by the rules: realistic IPv6 sets
// of up to 2,000 rules compile to 3 tuples (see `benches/pipeline.rs`).
//
// Port ranges are never expanded into prefix blocks (up to 30 per range, 900 per rule with
// both ports): a range pins down the leading bits its two ends share, a tuple hashes at most
// those, and the range itself is checked on the candidates.
//
// IPv4 and IPv6 keys go to separate tables (a rule without prefixes is in both), so IPv4
// lookups hash 16 bytes of key, not 40. A key whose source and destination are of different
// families, which no IP header produces, is answered by a linear scan, as are all keys of a
// list too long for 32-bit rule indexes.
//
// # Lookup and its cost
//
// An IPv4 lookup first checks its two index lists (each in rule order), which gives the
// best match among indexed rules. Tuples are sorted by the best (lowest) rule index they
// hold, each bucket holds its rules in index order, and so does the tail. A lookup then
// checks the tail, then walks the tuples:
// mask, hash, probe, check the bucket's rules until one matches. It stops as soon as the
// next tuple's best rule cannot beat the match in hand. The cost is therefore at most
//
// `tail × compare + tuples × (hash + probe) + hit buckets × their length × compare`
//
// with a compare about 2 ns and a probe about 10 ns on the development machine; nothing
// allocates, locks or panics. A key that matches nothing (the usual case for a
// deny-by-default ACL) visits every tuple of its family, so the tuple count
// ([`Classifier::tuple_count`]) is the figure to watch. A bucket passes [`OVERFLOW_LIMIT`]
// only when more rules than that are identical apart from their port ranges; those are then
// checked one after another, as any classifier that does not expand ranges must.
//
// Compiling is about `rules × tuples` bucket probes, plus the index's copies (at most
// [`AddressIndex::COPIES_PER_RULE`] per rule and one per list): 10-20 ms for 10,000 rules.

use std::cmp::Reverse;
use std::collections::HashMap;
use std::fmt::Debug;
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;
use rustc_hash::FxBuildHasher;

use xsw::pipeline::acl::{AclKey, AclRule, PortRange};

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
        let single_port_or_none = |len: u8| if len == 16 { 16 } else { 0 };
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
            sport_len: single_port_or_none(self.sport_len),
            dport_len: single_port_or_none(self.dport_len),
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

    /// Splits candidate positions into those the index takes and those left for tuples.
    fn split(candidates: &[Candidate<A>]) -> (Vec<usize>, Vec<usize>) {
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
        (0..candidates.len()).partition(|&position| {
            candidates
                .get(position)
                .is_some_and(|candidate| Self::side(candidate, shortest).is_some())
        })
    }

    fn bits_for(rules: usize) -> u32 {
        (usize::BITS - rules.leading_zeros() + 2).clamp(8, 16)
    }

    /// `positions`: the candidates [`AddressIndex::split`] gave the index, in priority order.
    fn build(candidates: &[Candidate<A>], positions: &[usize]) -> AddressIndex<A> {
        let bits = Self::bits_for(positions.len());
        let lists = 1usize << bits;
        let members: Vec<&Candidate<A>> = positions
            .iter()
            .filter_map(|&position| candidates.get(position))
            .collect();
        // Each member's side and the range of lists it goes into.
        let placed: Vec<(usize, std::ops::RangeInclusive<usize>)> = members
            .iter()
            .map(|candidate| {
                let (side, _) = Self::side(candidate, 0).unwrap_or((0, 0));
                let (value, mask) = if side == 0 {
                    (candidate.compiled.value.src, candidate.compiled.mask.src)
                } else {
                    (candidate.compiled.value.dst, candidate.compiled.mask.dst)
                };
                let first = value.leading(bits);
                (side, first..=first | (!mask.leading(bits) & (lists - 1)))
            })
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
        let candidates: Vec<Candidate<A>> = rules
            .iter()
            .enumerate()
            .filter_map(|(priority, rule)| Candidate::new(priority, rule))
            .collect();

        let (indexed, tupled) = if A::INDEXED {
            AddressIndex::split(&candidates)
        } else {
            (Vec::new(), (0..candidates.len()).collect())
        };
        let index = (!indexed.is_empty()).then(|| AddressIndex::build(&candidates, &indexed));

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
