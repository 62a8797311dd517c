//! Rule sets shaped like ClassBench's seeds, for benchmarks and tests of the classifier.
//!
//! ClassBench (Taylor & Turner, "ClassBench: A Packet Classification Benchmark", IEEE/ACM
//! ToN 15(3), 2007) describes real filter sets by their *seeds*: the protocol mix, for each
//! protocol the mix of port-pair classes (each port a wildcard `WC`, the high ports
//! 1024-65535 `HI`, the low ports 0-1023 `LO`, an arbitrary range `AR` or an exact port
//! `EM`), for each port-pair class the joint distribution of source and destination prefix
//! lengths, and lists of the ranges and exact ports seen. This generator draws rules from
//! those distributions, reduced to their heaviest entries (the weights below), for three
//! seeds:
//!
//! - [`Seed::Acl`]: `acl1_seed` of the ClassBench distribution, transcribed: 87% TCP, most
//!   rules an exact destination port with both prefixes /32 (`wc_em` at total length 64),
//!   ranges like 1600-1649, 9% of TCP rules `--established`.
//! - [`Seed::Fw`]: firewall sets, after the paper's summary of the fw seeds: many wildcard
//!   source addresses (/0 next to a /32 or /24 destination), more arbitrary ranges and
//!   `HI` ports, 12% of rules with any protocol.
//! - [`Seed::Ipc`]: IP-chain sets, after the paper's summary of the ipc seeds: the most
//!   even spread of prefix-length pairs (/32, /24, /16 and /0 on either side), a quarter
//!   UDP, 10% ICMP.
//!
//! The fw and ipc weights are read off the paper's published summaries, not transcribed
//! from their seed files; they keep what matters to a tuple classifier: how many distinct
//! (source length, destination length, port class, protocol) shapes a set has and how much
//! its wildcards overlap.
//!
//! Addresses are clustered as in real sets (ClassBench's prefix trees are skewed): each
//! prefix is a random host inside one of a few dozen /8-/16 "sites" per set, truncated to
//! its length, so rules share leading bits and nest. Everything is deterministic for a
//! given `(seed, count, random_seed)`, so runs compare.
//!
//! [`keys_for`] makes lookup keys: half aimed inside a random rule (they match it or an
//! earlier one), half random within the sets' sites (most match nothing, the classifier's
//! worst case: it must rule every shape out).
//!
//! Public rather than `cfg(test)`: the criterion benchmarks are a separate crate that sees
//! only the library's public items, and a cargo feature would hide the benchmark from
//! `cargo build --all-targets`. It needs no dependency and nothing in the switch calls it.

use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;

use super::rule::{AclAction, AclKey, AclRule, PortRange, PROTO_ICMP, PROTO_TCP, PROTO_UDP};

/// Which published seed a rule set is shaped like.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Seed {
    Acl,
    Fw,
    Ipc,
}

impl Seed {
    pub const ALL: [Seed; 3] = [Seed::Acl, Seed::Fw, Seed::Ipc];

    pub fn name(self) -> &'static str {
        match self {
            Seed::Acl => "acl",
            Seed::Fw => "fw",
            Seed::Ipc => "ipc",
        }
    }

    fn parameters(self) -> &'static Parameters {
        match self {
            Seed::Acl => &ACL1,
            Seed::Fw => &FW,
            Seed::Ipc => &IPC,
        }
    }
}

/// One port's class in a port pair (ClassBench's five).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum PortClass {
    /// Any port: no `--sport`/`--dport`.
    Wc,
    /// 1024-65535.
    Hi,
    /// 0-1023.
    Lo,
    /// One of the seed's arbitrary ranges.
    Ar,
    /// One of the seed's exact ports.
    Em,
}

use PortClass::{Ar, Em, Hi, Lo, Wc};

/// A seed's distributions, each a list of (value, weight); weights need not sum to 1.
struct Parameters {
    /// Protocol (None: any) and weight.
    protocols: &'static [(Option<u8>, f64)],
    /// For TCP and UDP rules: (source class, destination class) and weight.
    port_pairs: &'static [((PortClass, PortClass), f64)],
    /// (source prefix length, destination prefix length) and weight.
    prefix_lengths: &'static [((u8, u8), f64)],
    /// Share of TCP rules that match established segments only (the seeds' ACK flag).
    established: f64,
    /// Arbitrary ranges (first, last) and exact ports, each drawn uniformly.
    ranges: &'static [(u16, u16)],
    exact_ports: &'static [u16],
}

/// `acl1_seed`: `-prots`, the TCP and UDP rows' port-pair columns, `-wc_em`/`-wc_ar`/`-wc_wc`
/// length pairs, `-flags`, `-dpar` and `-dpem`, heaviest entries.
const ACL1: Parameters = Parameters {
    protocols: &[
        (Some(PROTO_TCP), 0.873),
        (None, 0.085),
        (Some(PROTO_ICMP), 0.031),
        (Some(PROTO_UDP), 0.011),
    ],
    port_pairs: &[((Wc, Em), 0.65), ((Wc, Wc), 0.22), ((Wc, Ar), 0.13)],
    prefix_lengths: &[
        ((32, 32), 0.70),
        ((32, 24), 0.07),
        ((23, 32), 0.07),
        ((32, 22), 0.06),
        ((31, 32), 0.03),
        ((30, 22), 0.02),
        ((23, 16), 0.02),
        ((32, 31), 0.015),
        ((24, 23), 0.01),
        ((8, 0), 0.005),
        ((0, 0), 0.005),
    ],
    established: 0.094,
    ranges: &[
        (1600, 1649),
        (1300, 1349),
        (1300, 1350),
        (7500, 7599),
        (2200, 2210),
        (1025, 65535),
        (1700, 1750),
        (5001, 65535),
        (32200, 32207),
        (8000, 8100),
        (61700, 61709),
        (61500, 61509),
        (62000, 62009),
        (61100, 61119),
        (20000, 20010),
        (62200, 62239),
    ],
    exact_ports: &[
        1521, 1526, 1221, 1433, 1525, 135, 14753, 1712, 1711, 1704, 1708, 5555, 1705, 6000, 20, 21,
        1724, 1717, 1707, 1733, 1706, 5540, 5541, 1734, 1489, 1490, 5632, 5631, 6789, 1715, 2121,
        6790, 32200, 443, 80,
    ],
};

/// Firewall seeds (fw1-fw5 in the paper): wildcard sources, ranges and high ports.
const FW: Parameters = Parameters {
    protocols: &[
        (Some(PROTO_TCP), 0.60),
        (Some(PROTO_UDP), 0.25),
        (None, 0.12),
        (Some(PROTO_ICMP), 0.03),
    ],
    port_pairs: &[
        ((Wc, Em), 0.35),
        ((Wc, Wc), 0.15),
        ((Hi, Em), 0.10),
        ((Wc, Ar), 0.10),
        ((Wc, Hi), 0.08),
        ((Ar, Ar), 0.06),
        ((Em, Wc), 0.06),
        ((Hi, Hi), 0.05),
        ((Lo, Em), 0.03),
        ((Em, Em), 0.02),
    ],
    prefix_lengths: &[
        ((0, 32), 0.25),
        ((32, 32), 0.20),
        ((24, 32), 0.10),
        ((32, 0), 0.10),
        ((0, 24), 0.10),
        ((0, 0), 0.05),
        ((16, 32), 0.05),
        ((24, 24), 0.05),
        ((32, 24), 0.05),
        ((8, 32), 0.03),
        ((0, 16), 0.02),
    ],
    established: 0.05,
    ranges: &[
        (1024, 65535),
        (6000, 6063),
        (137, 139),
        (5000, 5010),
        (8000, 8080),
        (20, 21),
        (1, 1023),
        (33434, 33534),
        (49152, 65535),
        (3000, 3999),
    ],
    exact_ports: &[
        80, 443, 25, 53, 22, 23, 21, 110, 143, 389, 636, 1433, 3306, 3389, 8080, 8443, 123, 161,
        162, 514, 5060, 1812, 1813,
    ],
};

/// IP-chain seeds (ipc1, ipc2 in the paper): the most even mix of lengths and classes.
const IPC: Parameters = Parameters {
    protocols: &[
        (Some(PROTO_TCP), 0.45),
        (Some(PROTO_UDP), 0.25),
        (None, 0.20),
        (Some(PROTO_ICMP), 0.10),
    ],
    port_pairs: &[
        ((Wc, Wc), 0.40),
        ((Wc, Em), 0.30),
        ((Em, Wc), 0.10),
        ((Wc, Ar), 0.08),
        ((Hi, Em), 0.05),
        ((Em, Hi), 0.04),
        ((Lo, Lo), 0.03),
    ],
    prefix_lengths: &[
        ((32, 32), 0.25),
        ((24, 32), 0.10),
        ((32, 24), 0.10),
        ((24, 24), 0.10),
        ((0, 32), 0.10),
        ((32, 0), 0.10),
        ((16, 16), 0.05),
        ((0, 0), 0.05),
        ((16, 32), 0.05),
        ((28, 28), 0.05),
        ((8, 8), 0.05),
    ],
    established: 0.10,
    ranges: &[
        (1024, 65535),
        (0, 1023),
        (6000, 6010),
        (137, 139),
        (2000, 2999),
        (10000, 20000),
    ],
    exact_ports: &[
        80, 443, 53, 22, 25, 110, 123, 161, 139, 445, 1080, 3128, 8080, 2049, 111, 514,
    ],
};

/// SplitMix64: a deterministic stream of 64-bit numbers (not for anything but test data).
pub struct Random(u64);

impl Random {
    pub fn new(seed: u64) -> Random {
        Random(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..bound` (0 when `bound` is 0).
    pub fn below(&mut self, bound: u64) -> u64 {
        if bound == 0 {
            0
        } else {
            self.next_u64() % bound
        }
    }

    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn weighted<T: Copy>(&mut self, choices: &[(T, f64)]) -> T {
        let total: f64 = choices.iter().map(|(_, weight)| weight).sum();
        let mut point = self.unit() * total;
        for &(value, weight) in choices {
            if point < weight {
                return value;
            }
            point -= weight;
        }
        choices[choices.len() - 1].0
    }

    fn pick<T: Copy>(&mut self, values: &[T]) -> T {
        values[self.below(values.len() as u64) as usize]
    }
}

/// The sites a set's addresses cluster in: `sites` networks of /8 to /16.
fn sites(random: &mut Random, sites: usize) -> Vec<(u32, u8)> {
    (0..sites)
        .map(|_| {
            let len = [8u8, 12, 16][random.below(3) as usize];
            let network = (random.next_u64() as u32) & (u32::MAX << (32 - len));
            (network, len)
        })
        .collect()
}

/// A host address inside one of `sites`.
fn address_in(random: &mut Random, sites: &[(u32, u8)]) -> u32 {
    let (network, len) = random.pick(sites);
    let host_bits = u32::MAX.checked_shr(u32::from(len)).unwrap_or(0);
    network | ((random.next_u64() as u32) & host_bits)
}

fn prefix_of(address: u32, len: u8) -> Option<IpNet> {
    if len == 0 {
        return None;
    }
    let mask = u32::MAX << (32 - u32::from(len));
    IpNet::new(IpAddr::V4(Ipv4Addr::from(address & mask)), len).ok()
}

fn port_range(random: &mut Random, class: PortClass, parameters: &Parameters) -> Option<PortRange> {
    match class {
        Wc => None,
        Hi => Some(PortRange {
            first: 1024,
            last: 65535,
        }),
        Lo => Some(PortRange {
            first: 0,
            last: 1023,
        }),
        Ar => {
            let (first, last) = random.pick(parameters.ranges);
            Some(PortRange { first, last })
        }
        Em => Some(PortRange::single(random.pick(parameters.exact_ports))),
    }
}

/// How many address sites a set of `count` rules draws from: real sets name a few dozen
/// networks at 1,000 rules and a few hundred at 10,000.
fn site_count(count: usize) -> usize {
    (count / 25).clamp(8, 400)
}

/// `count` valid IPv4 rules shaped like `seed`, deterministic for `random_seed`. Actions
/// alternate in runs (mostly deny, as in a firewall's list); the caller adds any catch-all.
pub fn rules(seed: Seed, count: usize, random_seed: u64) -> Vec<AclRule> {
    let parameters = seed.parameters();
    let mut random = Random::new(random_seed);
    let sites = sites(&mut random, site_count(count));
    let mut rules = Vec::with_capacity(count);
    let mut distinct = std::collections::HashSet::new();
    while rules.len() < count {
        let rule = {
            let action = if random.below(4) == 0 {
                AclAction::Allow
            } else {
                AclAction::Deny
            };
            let mut rule = AclRule::any(action);
            let (src_len, dst_len) = random.weighted(parameters.prefix_lengths);
            rule.src = prefix_of(address_in(&mut random, &sites), src_len);
            rule.dst = prefix_of(address_in(&mut random, &sites), dst_len);
            rule.proto = random.weighted(parameters.protocols);
            match rule.proto {
                Some(PROTO_TCP | PROTO_UDP) => {
                    let (sport, dport) = random.weighted(parameters.port_pairs);
                    rule.sport = port_range(&mut random, sport, parameters);
                    rule.dport = port_range(&mut random, dport, parameters);
                    rule.established =
                        rule.proto == Some(PROTO_TCP) && random.unit() < parameters.established;
                }
                Some(PROTO_ICMP) if random.below(2) == 0 => {
                    rule.icmp_type = Some(random.pick(&[0u8, 3, 8, 11]));
                }
                _ => {}
            }
            rule
        };
        // A rule that matches every packet would decide every key at its position; a list
        // says that with its default policy instead.
        // ClassBench drops redundant filters too: a copy of an earlier rule never decides.
        let matches_everything = rule.src.is_none() && rule.dst.is_none() && rule.proto.is_none();
        if !matches_everything
            && distinct.insert(AclRule {
                action: AclAction::Allow,
                ..rule.clone()
            })
        {
            rules.push(rule);
        }
    }
    rules
}

/// `count` IPv4 keys for `rules`: half fall inside a random rule, half are random hosts of
/// the rules' sites (most of those match nothing).
pub fn keys_for(rules: &[AclRule], count: usize, random_seed: u64) -> Vec<AclKey> {
    let mut random = Random::new(random_seed);
    let networks: Vec<(u32, u8)> = rules
        .iter()
        .flat_map(|rule| [rule.src, rule.dst])
        .flatten()
        .filter_map(|network| match network {
            IpNet::V4(network) => Some((u32::from(network.network()), network.prefix_len())),
            IpNet::V6(_) => None,
        })
        .collect();
    let anywhere = [(0u32, 0u8)];
    let sites = if networks.is_empty() {
        &anywhere[..]
    } else {
        &networks[..]
    };
    (0..count)
        .map(|n| {
            let proto = random.pick(&[PROTO_TCP, PROTO_TCP, PROTO_UDP, PROTO_ICMP]);
            let mut key = AclKey {
                src: IpAddr::V4(Ipv4Addr::from(address_in(&mut random, sites))),
                dst: IpAddr::V4(Ipv4Addr::from(address_in(&mut random, sites))),
                proto,
                sport: if proto == PROTO_ICMP {
                    0
                } else {
                    1024 + random.below(64_512) as u16
                },
                dport: if proto == PROTO_ICMP {
                    0
                } else {
                    random.below(65_536) as u16
                },
                icmp_type: (proto == PROTO_ICMP).then_some(8),
                tcp_flags: if proto == PROTO_TCP {
                    random.pick(&[0x02u8, 0x10, 0x18])
                } else {
                    0
                },
            };
            if n % 2 == 0 && !rules.is_empty() {
                key = key_inside(
                    &rules[random.below(rules.len() as u64) as usize],
                    key,
                    &mut random,
                );
            }
            key
        })
        .collect()
}

/// `key` moved inside `rule` on every field the rule pins down.
pub fn key_inside(rule: &AclRule, mut key: AclKey, random: &mut Random) -> AclKey {
    let inside = |network: Option<IpNet>, current: IpAddr, random: &mut Random| match network {
        Some(IpNet::V4(network)) => {
            let host = (random.next_u64() as u32) & !u32::from(network.netmask());
            IpAddr::V4(Ipv4Addr::from(u32::from(network.network()) | host))
        }
        _ => current,
    };
    key.src = inside(rule.src, key.src, random);
    key.dst = inside(rule.dst, key.dst, random);
    if let Some(proto) = rule.effective_proto() {
        key.proto = proto;
    }
    let within = |range: Option<PortRange>, current: u16, random: &mut Random| match range {
        Some(range) if range.first <= range.last => {
            let span = u64::from(range.last - range.first) + 1;
            range.first + random.below(span) as u16
        }
        _ => current,
    };
    key.sport = within(rule.sport, key.sport, random);
    key.dport = within(rule.dport, key.dport, random);
    if key.proto == PROTO_ICMP {
        key.sport = 0;
        key.dport = 0;
        key.icmp_type = rule.icmp_type.or(key.icmp_type).or(Some(8));
    } else {
        key.icmp_type = None;
    }
    if rule.established {
        key.tcp_flags = 0x10;
    }
    key
}

/// The rule set of `bench/scenario.sh acl` (lib.sh, the `acl` case), rebuilt here: 999 deny
/// rules for destinations /16 to /32 inside 198.19.0.0/16, UDP or TCP, a destination port
/// or a range of up to 3 ports, then `allow --proto udp --dport 9 --dst 198.18.0.2/32`, the
/// rule the scenario's traffic matches. The awk script draws with its own generator, so the
/// prefixes differ; the shape distribution is the same.
pub fn scenario_acl_rules(random_seed: u64) -> Vec<AclRule> {
    let mut random = Random::new(random_seed);
    let mut rules: Vec<AclRule> = (0..999)
        .map(|_| {
            let len = 16 + random.below(17) as u8;
            let low = random.next_u64() as u32 & 0xffff;
            let mut rule = AclRule::any(AclAction::Deny);
            rule.dst = prefix_of(0xc613_0000 | low, len);
            rule.proto = Some(if random.below(2) == 0 {
                PROTO_UDP
            } else {
                PROTO_TCP
            });
            let first = 1 + random.below(60_000) as u16;
            rule.dport = Some(PortRange {
                first,
                last: first + random.below(3) as u16,
            });
            rule
        })
        .collect();
    let mut allow = AclRule::any(AclAction::Allow);
    allow.dst = prefix_of(0xc612_0002, 32);
    allow.proto = Some(PROTO_UDP);
    allow.dport = Some(PortRange::single(9));
    rules.push(allow);
    rules
}

/// The scenario's traffic: UDP from 198.18.0.1 to 198.18.0.2 port 9 (it matches the last
/// rule), with the generator's varying source port.
pub fn scenario_acl_keys(count: usize) -> Vec<AclKey> {
    (0..count)
        .map(|n| AclKey {
            src: IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1)),
            dst: IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2)),
            proto: PROTO_UDP,
            sport: 1024 + (n % 4096) as u16,
            dport: 9,
            icmp_type: None,
            tcp_flags: 0,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_rules_are_valid_and_follow_their_seed() {
        for seed in Seed::ALL {
            let rules = rules(seed, 2_000, 7);
            assert_eq!(rules.len(), 2_000);
            for rule in &rules {
                rule.validate()
                    .unwrap_or_else(|error| panic!("{rule}: {error}"));
            }
            let tcp = rules
                .iter()
                .filter(|rule| rule.proto == Some(PROTO_TCP))
                .count();
            let expected = seed
                .parameters()
                .protocols
                .iter()
                .find(|(proto, _)| *proto == Some(PROTO_TCP))
                .map(|(_, weight)| weight)
                .unwrap();
            let share = tcp as f64 / 2_000.0;
            assert!((share - expected).abs() < 0.05, "{seed:?}: tcp {share}");
        }
        let acl = rules(Seed::Acl, 2_000, 7);
        let both_hosts = acl
            .iter()
            .filter(|rule| {
                rule.src.is_some_and(|net| net.prefix_len() == 32)
                    && rule.dst.is_some_and(|net| net.prefix_len() == 32)
            })
            .count();
        assert!(both_hosts > 1_200, "{both_hosts}");
        let fw = rules(Seed::Fw, 2_000, 7);
        assert!(fw.iter().filter(|rule| rule.src.is_none()).count() > 600);
    }

    #[test]
    fn generation_is_deterministic_and_seeds_differ() {
        assert_eq!(rules(Seed::Ipc, 300, 1), rules(Seed::Ipc, 300, 1));
        assert_ne!(rules(Seed::Ipc, 300, 1), rules(Seed::Ipc, 300, 2));
        let list = rules(Seed::Fw, 300, 1);
        assert_eq!(keys_for(&list, 100, 3), keys_for(&list, 100, 3));
    }

    #[test]
    fn aimed_keys_match_their_rule() {
        let list = rules(Seed::Acl, 500, 11);
        let mut random = Random::new(5);
        for rule in &list {
            let base = keys_for(&list, 1, random.next_u64())[0];
            let key = key_inside(rule, base, &mut random);
            assert!(rule.matches(&key), "{rule} {key:?}");
        }
    }

    #[test]
    fn scenario_rules_end_with_the_rule_its_traffic_matches() {
        let rules = scenario_acl_rules(2544);
        assert_eq!(rules.len(), 1_000);
        for rule in &rules {
            rule.validate().unwrap();
        }
        for key in scenario_acl_keys(16) {
            assert_eq!(rules.iter().position(|rule| rule.matches(&key)), Some(999));
        }
    }
}
