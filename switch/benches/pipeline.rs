//! Per-frame cost of the pipeline, stage by stage and as a whole, side by side in one run:
//!
//! - `parse/udp4`: [`parse_frame`] on one 60-byte UDP/IPv4 frame.
//! - `antispoof/from_port`: [`PortGuard::check_from_port`] on a parsed frame of a guarded
//!   port (4 MACs, one /24).
//! - `acl_lookup/rules/N`: one ACL evaluation against N realistic rules (most keys match
//!   nothing and get the default, the classifier's worst case), and
//!   `acl_linear_scan/rules/N`, the naive scan, for scale.
//! - `fdb_lookup/entries/N`: one MAC-table lookup in a table of N entries.
//! - `pipeline_batch/{1k_mac_1k_rules,1m_mac_10k_rules}`: everything the worker does to
//!   decide a batch of 64 frames, ingress and egress, by the very functions worker.rs
//!   calls (`dataplane::delivery`, see [`run_batch`]), minus the I/O and the counters.
//!   The targets are for these.
//!
//! Every benchmark declares its frames as `Throughput::Elements`, and a table of nanoseconds
//! per frame, with the targets, closes the run. `cargo bench -p xsw --bench pipeline
//! [-- FILTER]`. Wall time by default; `XSW_BENCH_CLOCK=thread` measures the thread's CPU
//! time instead, for a machine shared with other work.

// A benchmark set-up that fails should stop loudly: expect is its error report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::measurement::{Measurement, ValueFormatter};
use criterion::{BenchmarkId, Criterion, Throughput};
use etherparse::PacketBuilder;
use ipnet::{IpNet, Ipv4Net};
use xsw::dataplane::delivery;
use xsw::dataplane::snapshot::{AclHits, PortView, Snapshot, TenantView};
use xsw::packet::{parse_frame, FrameInfo, MacAddr};
use xsw::pipeline::acl::{AclAction, AclKey, AclRule, PortRange, TenantAcl};
use xsw::pipeline::stages::{PortPolicy, TenantPolicy, Verdict};
use xsw::pipeline::tenant::PortMode;
use xsw::pipeline::{Decision, Fdb, Learned, PortGuard, PortId, TenantId};

const ACL_SIZES: [usize; 3] = [10, 1_000, 10_000];
const FDB_SIZES: [usize; 3] = [10, 1_000, 1_000_000];
const BATCH: usize = 64;
/// Keys cycled through per benchmark: enough to defeat branch prediction, a power of two so
/// the index wraps with a mask.
const KEY_COUNT: usize = 4096;

const TCP: u8 = 6;
const UDP: u8 = 17;
const ICMP: u8 = 1;
const ICMPV6: u8 = 58;

/// SplitMix64: deterministic, so every run benchmarks the same rules and keys.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `low..=high`.
    fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low + 1)
    }

    fn percent(&mut self, chance: u64) -> bool {
        self.next() % 100 < chance
    }

    fn pick<T: Copy>(&mut self, choices: &[T]) -> T {
        choices[(self.next() % choices.len() as u64) as usize]
    }

    fn address(&mut self, ipv6: bool) -> IpAddr {
        if ipv6 {
            let random = u128::from(self.next()) << 64 | u128::from(self.next());
            // Global unicast (2000::/3) or unique local (fd00::/8), as tenants number.
            let address = if self.percent(50) {
                (0b001 << 125) | (random >> 3)
            } else {
                (0xfd << 120) | (random >> 8)
            };
            IpAddr::V6(Ipv6Addr::from(address))
        } else {
            IpAddr::V4(Ipv4Addr::from(self.next() as u32))
        }
    }
}

const COMMON_PORTS: [u16; 12] = [22, 25, 53, 80, 123, 443, 3306, 5432, 6379, 8080, 8443, 9100];
const ICMP_TYPES: [u8; 4] = [0, 3, 8, 11];
const ICMPV6_TYPES: [u8; 6] = [1, 128, 129, 133, 135, 136];

fn port_range(random: &mut Random) -> PortRange {
    if random.percent(30) {
        return random.pick(&[
            PortRange {
                first: 1024,
                last: 65535,
            },
            PortRange {
                first: 49152,
                last: 65535,
            },
            PortRange {
                first: 30000,
                last: 32767,
            },
            PortRange {
                first: 6000,
                last: 6063,
            },
        ]);
    }
    let first = random.between(1, 60_000) as u16;
    let width = random.pick(&[1u16, 9, 99, 999]);
    PortRange {
        first,
        last: first + width,
    }
}

/// Rules as a security-group style ACL has them: a remote prefix (/8-/32, /32-/128) on one
/// side or both, a protocol, mostly a destination port or range; a few ICMP and
/// "established" rules. Every rule is valid.
fn realistic_rules(count: usize, random: &mut Random) -> Vec<AclRule> {
    (0..count)
        .map(|_| {
            let ipv6 = random.percent(20);
            let mut rule = AclRule::any(if random.percent(75) {
                AclAction::Allow
            } else {
                AclAction::Deny
            });
            let prefix = |random: &mut Random| {
                let len = if ipv6 {
                    random.between(32, 128)
                } else {
                    random.between(8, 32)
                };
                let network = IpNet::new(random.address(ipv6), len as u8).map(|net| net.trunc());
                network.ok()
            };
            match random.next() % 100 {
                0..=64 => rule.src = prefix(random),
                65..=84 => rule.dst = prefix(random),
                _ => {
                    rule.src = prefix(random);
                    rule.dst = prefix(random);
                }
            }
            match random.next() % 100 {
                0..=44 => {
                    rule.proto = Some(TCP);
                    rule.established = random.percent(10);
                }
                45..=79 => rule.proto = Some(UDP),
                80..=94 => {
                    rule.proto = Some(if ipv6 { ICMPV6 } else { ICMP });
                    if random.percent(60) {
                        let types: &[u8] = if ipv6 { &ICMPV6_TYPES } else { &ICMP_TYPES };
                        rule.icmp_type = Some(random.pick(types));
                    }
                }
                _ => {}
            }
            if matches!(rule.proto, Some(TCP | UDP)) {
                match random.next() % 100 {
                    0..=59 => {
                        let port = if random.percent(50) {
                            random.pick(&COMMON_PORTS)
                        } else {
                            random.between(1, 65535) as u16
                        };
                        rule.dport = Some(PortRange::single(port));
                    }
                    60..=89 => rule.dport = Some(port_range(random)),
                    _ => {}
                }
                if random.percent(5) {
                    rule.sport = Some(port_range(random));
                }
            }
            if let Err(error) = rule.validate() {
                panic!("the generator made an invalid rule, {rule}: {error}");
            }
            rule
        })
        .collect()
}

fn random_key(random: &mut Random) -> AclKey {
    let ipv6 = random.percent(20);
    let proto = random.pick(&[TCP, TCP, TCP, UDP, UDP, if ipv6 { ICMPV6 } else { ICMP }]);
    let ports = matches!(proto, TCP | UDP);
    AclKey {
        src: random.address(ipv6),
        dst: random.address(ipv6),
        proto,
        sport: if ports {
            random.between(1024, 65535) as u16
        } else {
            0
        },
        dport: if ports { random.pick(&COMMON_PORTS) } else { 0 },
        icmp_type: (!ports).then(|| random.pick(&[0u8, 8, 128, 129])),
        tcp_flags: if proto == TCP {
            random.pick(&[0x02u8, 0x10, 0x18])
        } else {
            0
        },
    }
}

/// A key inside `rule`: each field the rule pins is set to a value it accepts.
fn key_hitting(rule: &AclRule, random: &mut Random) -> AclKey {
    let ipv6 = matches!(rule.src.or(rule.dst), Some(IpNet::V6(_)));
    let mut key = random_key(random);
    key.src = random.address(ipv6);
    key.dst = random.address(ipv6);
    let mut inside = |network: IpNet| match network {
        IpNet::V4(net) => {
            let host = random.next() as u32 & !u32::from(net.netmask());
            IpAddr::V4(Ipv4Addr::from(u32::from(net.network()) | host))
        }
        IpNet::V6(net) => {
            let host = (u128::from(random.next()) << 64 | u128::from(random.next()))
                & !u128::from(net.netmask());
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
    if let Some(range) = rule.sport {
        key.sport = random.between(range.first.into(), range.last.into()) as u16;
    }
    if let Some(range) = rule.dport {
        key.dport = random.between(range.first.into(), range.last.into()) as u16;
    }
    if rule.icmp_type.is_some() {
        key.icmp_type = rule.icmp_type;
    }
    if rule.established {
        key.tcp_flags = 0x10;
    }
    key
}

/// One key in ten aimed at a random rule, the rest random traffic (which mostly matches
/// nothing and gets the default).
fn acl_keys(rules: &[AclRule], random: &mut Random) -> Vec<AclKey> {
    (0..KEY_COUNT)
        .map(|_| {
            if random.percent(10) {
                let rule = &rules[(random.next() % rules.len() as u64) as usize];
                key_hitting(rule, random)
            } else {
                random_key(random)
            }
        })
        .collect()
}

fn acl_benches<M: Measurement>(criterion: &mut Criterion<M>) {
    let mut random = Random(0x05ee_dac1);
    let mut lists = Vec::new();
    for count in ACL_SIZES {
        let rules = realistic_rules(count, &mut random);
        let started = Instant::now();
        let acl = TenantAcl::new(rules, AclAction::Deny).expect("generated rules are valid");
        let compile_time = started.elapsed();
        let keys = acl_keys(acl.rules(), &mut random);
        let matched = keys
            .iter()
            .filter(|key| acl.evaluate(key).1.is_some())
            .count();
        println!(
            "acl: {count} rules: compiled in {:.2} ms, {} tuples, {matched}/{} keys match a rule",
            compile_time.as_secs_f64() * 1e3,
            acl.classifier().tuple_count(),
            keys.len(),
        );
        println!("{}", acl.classifier().describe());
        lists.push((count, acl, keys));
    }

    let mut group = criterion.benchmark_group("acl_lookup");
    group.throughput(Throughput::Elements(1));
    for (count, acl, keys) in &lists {
        group.bench_with_input(BenchmarkId::new("rules", count), count, |bencher, _| {
            let mut next = 0;
            bencher.iter(|| {
                next = (next + 1) & (KEY_COUNT - 1);
                acl.evaluate(black_box(&keys[next]))
            });
        });
    }
    group.finish();

    let mut group = criterion.benchmark_group("acl_linear_scan");
    group.throughput(Throughput::Elements(1));
    for (count, acl, keys) in &lists {
        group.bench_with_input(BenchmarkId::new("rules", count), count, |bencher, _| {
            let mut next = 0;
            bencher.iter(|| {
                next = (next + 1) & (KEY_COUNT - 1);
                let key = black_box(&keys[next]);
                acl.rules().iter().position(|rule| rule.matches(key))
            });
        });
    }
    group.finish();
}

fn host_mac(n: u64) -> MacAddr {
    // Locally administered unicast, the rest spread so hashing sees realistic variety.
    MacAddr::from_u64(0x0200_0000_0000 | (n.wrapping_mul(0x9e37_79b9) & 0xff_ffff_ffff))
}

fn fdb_benches<M: Measurement>(criterion: &mut Criterion<M>) {
    let mut random = Random(0xfdb);
    let mut group = criterion.benchmark_group("fdb_lookup");
    group.throughput(Throughput::Elements(1));
    for entries in FDB_SIZES {
        let mut fdb = Fdb::new(entries, u64::MAX);
        for n in 0..entries as u64 {
            let learned = fdb.learn(0, host_mac(n), (n % 16) as u16, 0);
            assert_eq!(learned, Learned::New, "capacity too small");
        }
        // As many addresses as the pipeline benchmarks' frames: in a big table, the lines
        // they hit do not all fit in the core's caches.
        let macs: Vec<MacAddr> = (0..POOL_FRAMES)
            .map(|_| host_mac(random.next() % entries as u64))
            .collect();
        group.bench_with_input(
            BenchmarkId::new("entries", entries),
            &entries,
            |bencher, _| {
                let mut next = 0;
                bencher.iter(|| {
                    next = (next + 1) & (POOL_FRAMES - 1);
                    fdb.lookup(0, black_box(macs[next]), 1)
                });
            },
        );
    }
    group.finish();
}

/// Frames the stage and whole-pipeline benchmarks cycle through: 1,024 batches of 64, 4 MiB
/// of frames (twice a core's L2 cache) with as many random destinations, so neither the
/// frames nor the MAC-table and ACL lines they hit stay in the core's caches from one pass
/// to the next. A power of two, so the index wraps with a mask.
const POOL_FRAMES: usize = 1 << 16;
const POOL_BATCHES: usize = POOL_FRAMES / BATCH;
/// Room per frame in the pool; every frame is 60 bytes (64 on the wire with the FCS).
const FRAME_STRIDE: usize = 64;
const FRAME_LEN: usize = 60;
/// The default `[dataplane] fdb_capacity`.
const DEFAULT_FDB_CAPACITY: usize = 65_536;
/// The default MAC aging time (300 s); every entry stays live through the run.
const AGING_NS: u64 = 300_000_000_000;
const NOW_NS: u64 = 1_000;

/// The guarded port the benchmarked batches come in on: a guest with four MACs and one /24.
const GUEST_PORT: PortId = 1;
const GUEST_MACS: u64 = 4;
const GUEST_NET: [u8; 4] = [198, 18, 7, 0];
/// Ports 2..=9: unguarded uplinks behind which all the other MACs are learned.
const UPLINKS: u16 = 8;
const TENANT: TenantId = 0;

fn guest_mac(n: u64) -> MacAddr {
    MacAddr([0x02, 0xb5, 0, 0, 0, n as u8])
}

fn guest_guard() -> PortGuard {
    PortGuard {
        macs: (0..GUEST_MACS).map(guest_mac).collect(),
        ipv4: vec![Ipv4Net::new(Ipv4Addr::from(GUEST_NET), 24).expect("a /24 is valid")],
        ipv6: Vec::new(),
        restrict_to_port: false,
    }
}

/// A rule a guest's frame can hit: IPv4 or family-free, no source prefix (the guest's
/// sources are pinned by anti-spoofing), TCP, UDP or any protocol.
fn aimable(rule: &AclRule) -> bool {
    rule.src.is_none()
        && !matches!(rule.dst, Some(IpNet::V6(_)))
        && matches!(rule.proto, None | Some(TCP | UDP))
}

/// One frame of the benchmarked traffic, see [`traffic`].
fn guest_frame(random: &mut Random, macs: u64, aim: Option<&AclRule>, udp_only: bool) -> Vec<u8> {
    let src_mac = guest_mac(random.next() % GUEST_MACS);
    let dst_mac = host_mac(random.next() % macs);
    let mut src = GUEST_NET;
    src[3] = random.between(1, 254) as u8;
    let mut dst = (random.next() as u32).to_be_bytes();
    let mut proto = if udp_only || random.percent(40) {
        UDP
    } else {
        TCP
    };
    let mut sport = random.between(1024, 65535) as u16;
    let mut dport = random.pick(&COMMON_PORTS);
    let mut ack = random.percent(70);
    if let Some(rule) = aim {
        if let Some(IpNet::V4(net)) = rule.dst {
            let host = random.next() as u32 & !u32::from(net.netmask());
            dst = (u32::from(net.network()) | host).to_be_bytes();
        }
        if let Some(wanted) = rule.proto {
            proto = wanted;
        }
        if let Some(range) = rule.sport {
            sport = random.between(range.first.into(), range.last.into()) as u16;
        }
        if let Some(range) = rule.dport {
            dport = random.between(range.first.into(), range.last.into()) as u16;
        }
        if rule.established {
            proto = TCP;
            ack = true;
        }
    }
    let ip = PacketBuilder::ethernet2(src_mac.0, dst_mac.0).ipv4(src, dst, 64);
    let mut bytes = Vec::with_capacity(FRAME_LEN);
    let written = if proto == TCP {
        let tcp = ip.tcp(sport, dport, random.next() as u32, 64_240);
        let tcp = if ack { tcp.ack(1) } else { tcp.syn() };
        tcp.write(&mut bytes, &[0; FRAME_LEN - 54])
    } else {
        ip.udp(sport, dport).write(&mut bytes, &[0; FRAME_LEN - 42])
    };
    written.expect("a Vec grows as needed");
    assert_eq!(bytes.len(), FRAME_LEN);
    bytes
}

/// The benchmarked traffic, [`POOL_FRAMES`] frames laid out [`FRAME_STRIDE`] apart like
/// a ring of receive buffers. Each is what a guest behind [`GUEST_PORT`] sends: from one
/// of its 4 MACs and an address in its /24 (so anti-spoofing passes it and it goes on
/// through every stage), to a MAC drawn at random among the `macs` learned behind the
/// uplinks and a random IPv4 address, TCP (60%, SYN or ACK) or UDP, random source port,
/// a common destination port. One frame in ten is aimed at a random rule of `rules` that
/// a guest can hit (its destination prefix, protocol and ports); the rest mostly match no
/// rule and get the default, the classifier's worst case. `udp_only` makes every frame
/// UDP (for the parse benchmark).
fn traffic(random: &mut Random, macs: u64, rules: &[AclRule], udp_only: bool) -> Vec<u8> {
    let targets: Vec<&AclRule> = rules.iter().filter(|rule| aimable(rule)).collect();
    let mut pool = vec![0u8; POOL_FRAMES * FRAME_STRIDE];
    for slot in pool.chunks_exact_mut(FRAME_STRIDE) {
        let aim = (!targets.is_empty() && random.percent(10))
            .then(|| targets[(random.next() % targets.len() as u64) as usize]);
        let frame = guest_frame(random, macs, aim, udp_only);
        slot[..FRAME_LEN].copy_from_slice(&frame);
    }
    pool
}

fn pool_frame(pool: &[u8], index: usize) -> &[u8] {
    let start = index * FRAME_STRIDE;
    &pool[start..start + FRAME_LEN]
}

/// One benchmarked configuration: the worker's MAC table and the config snapshot it
/// switches by, with `macs` addresses learned and a tenant of `rules` ingress rules.
struct Switch {
    fdb: Fdb,
    snapshot: Snapshot,
    pool: Vec<u8>,
}

/// The configuration: port 1 a guest's access port with anti-spoofing, ports 2..=9 plain
/// access ports (uplinks), all in tenant 0. The tenant's ingress ACL holds `rules`
/// realistic rules with a default of allow, so every frame no rule denies goes through
/// every stage; its egress ACL is empty (allow), as security groups usually leave egress.
fn switch(macs: usize, rules: usize, seed: u64) -> Switch {
    let mut random = Random(seed);
    let rules = realistic_rules(rules, &mut random);
    let ingress = TenantAcl::new(rules, AclAction::Allow).expect("generated rules are valid");
    let pool = traffic(&mut random, macs as u64, ingress.rules(), false);
    let tenant = TenantPolicy {
        ingress,
        egress: TenantAcl::empty(AclAction::Allow),
    };
    let hits = AclHits::new(1, tenant.ingress.len(), tenant.egress.len());
    let mut snapshot = Snapshot {
        ports: vec![None],
        tenant_members: vec![Vec::new()],
        tenants: vec![Some(TenantView {
            policy: Arc::new(tenant),
            hits: Arc::new(hits),
        })],
        tunnel_endpoints: Vec::new(),
    };
    for port in GUEST_PORT..=GUEST_PORT + UPLINKS {
        let guard = (port == GUEST_PORT).then(guest_guard);
        snapshot.ports.push(Some(PortView {
            policy: Arc::new(PortPolicy {
                mode: PortMode::Access(TENANT),
                guard,
                // As xswd runs by default: untrusted, storm control on.
                trust: Default::default(),
                storm: Default::default(),
            }),
            link_up: true,
            tx_worker: 0,
            ifindex: 0,
            fast: None,
            into_peer: false,
            tunnel: None,
        }));
        snapshot.tenant_members[usize::from(TENANT)].push(port);
    }

    let mut fdb = Fdb::new((macs + 1_024).max(DEFAULT_FDB_CAPACITY), AGING_NS);
    for n in 0..macs as u64 {
        let port = GUEST_PORT + 1 + (n % u64::from(UPLINKS)) as u16;
        let learned = fdb.learn(TENANT, host_mac(n), port, 0);
        assert_eq!(learned, Learned::New, "capacity too small or MACs repeat");
    }
    for n in 0..GUEST_MACS {
        assert_eq!(fdb.learn(TENANT, guest_mac(n), GUEST_PORT, 0), Learned::New);
    }
    Switch {
        fdb,
        snapshot,
        pool,
    }
}

/// The frames of batch `batch` of the pool, as the worker hands them over: one slice per
/// frame.
fn batch_frames(pool: &[u8], batch: usize) -> [&[u8]; BATCH] {
    std::array::from_fn(|index| pool_frame(pool, batch * BATCH + index))
}

/// What the worker's `receive` does to switch a batch, by the same calls, minus the I/O
/// and the counters: `delivery::decide_batch` decides the batch, then
/// `delivery::offer_to_egress` settles each frame's egress ports and tag edits. Returns
/// how many copies would leave, for `black_box`.
fn run_batch(
    fdb: &mut Fdb,
    snapshot: &Snapshot,
    pool: &[u8],
    batch: usize,
    verdicts: &mut [Verdict; BATCH],
) -> usize {
    let decided = delivery::decide_batch(
        fdb,
        snapshot,
        GUEST_PORT,
        &batch_frames(pool, batch),
        NOW_NS,
        verdicts,
    );
    let mut leaving = 0;
    for verdict in &verdicts[..decided] {
        delivery::offer_to_egress(snapshot, GUEST_PORT, verdict, |_, edit| {
            leaving += usize::from(edit.is_ok());
        });
    }
    leaving
}

/// `pipeline_batch`: what the worker runs for a batch (see [`run_batch`]).
const PIPELINE_GROUPS: [&str; 1] = ["pipeline_batch"];

/// The configurations: (benchmark id, MACs learned, ingress rules, most ns/frame).
const PIPELINE_TARGETS: [(&str, usize, usize, f64); 2] = [
    ("1k_mac_1k_rules", 1_000, 1_000, 40.0),
    ("1m_mac_10k_rules", 1_000_000, 10_000, 60.0),
];

fn pipeline_benches<M: Measurement>(criterion: &mut Criterion<M>) {
    let mut switches = Vec::new();
    for (index, (name, macs, rules, _)) in PIPELINE_TARGETS.iter().enumerate() {
        let started = Instant::now();
        let mut switch = switch(*macs, *rules, 0x5eed_0000 + index as u64);
        // One pass over the pool: checks the traffic does what the docs say, and warms up.
        let mut outcomes = std::collections::BTreeMap::new();
        let mut verdicts = [Verdict::default(); BATCH];
        for batch in 0..POOL_BATCHES {
            let decided = delivery::decide_batch(
                &mut switch.fdb,
                &switch.snapshot,
                GUEST_PORT,
                &batch_frames(&switch.pool, batch),
                NOW_NS,
                &mut verdicts,
            );
            for verdict in &verdicts[..decided] {
                let outcome = match verdict.decision {
                    Decision::Forward(_) => "forwarded".to_string(),
                    Decision::Drop(reason) => format!("dropped ({reason})"),
                    Decision::Flood => "flooded".to_string(),
                };
                *outcomes.entry(outcome).or_insert(0usize) += 1;
            }
        }
        assert!(
            outcomes.get("forwarded").copied().unwrap_or(0) > POOL_FRAMES * 9 / 10,
            "most frames should be forwarded: {outcomes:?}"
        );
        println!(
            "pipeline {name}: set up in {:.1} s, {} MACs, {} ACL tuples; {POOL_FRAMES} frames: {outcomes:?}",
            started.elapsed().as_secs_f64(),
            switch.fdb.len(),
            switch
                .snapshot
                .tenant(TENANT)
                .map_or(0, |t| t.policy.ingress.classifier().tuple_count()),
        );
        switches.push((*name, switch));
    }

    let mut group = criterion.benchmark_group("pipeline_batch");
    group.throughput(Throughput::Elements(BATCH as u64));
    for (name, switch) in &mut switches {
        let Switch {
            fdb,
            snapshot,
            pool,
        } = switch;
        let mut verdicts = [Verdict::default(); BATCH];
        group.bench_function(*name, |bencher| {
            let mut batch = 0;
            bencher.iter(|| {
                batch = (batch + 1) & (POOL_BATCHES - 1);
                run_batch(fdb, snapshot, black_box(pool), batch, &mut verdicts)
            });
        });
    }
    group.finish();
}

/// Parsing and anti-spoofing alone, on the UDP/IPv4 frames of a guest (see [`traffic`]),
/// the first [`KEY_COUNT`] of the pool: 256 KiB of frames, 416 KiB of their summaries,
/// in the core's L2 cache, as a frame just received and just parsed are. (The pipeline
/// benchmarks take frames from further away.)
fn stage_benches<M: Measurement>(criterion: &mut Criterion<M>) {
    let mut random = Random(0x9a55);
    let pool = traffic(&mut random, 1_000, &[], true);
    let mut group = criterion.benchmark_group("parse");
    group.throughput(Throughput::Elements(1));
    group.bench_function("udp4", |bencher| {
        let mut next = 0;
        bencher.iter(|| {
            next = (next + 1) & (KEY_COUNT - 1);
            parse_frame(black_box(pool_frame(&pool, next)))
        });
    });
    group.finish();

    let infos: Vec<FrameInfo> = (0..KEY_COUNT)
        .map(|index| parse_frame(pool_frame(&pool, index)).expect("whole frames"))
        .collect();
    let guard = guest_guard();
    assert!(infos.iter().all(|info| guard.check_from_port(info).is_ok()));
    let mut group = criterion.benchmark_group("antispoof");
    group.throughput(Throughput::Elements(1));
    group.bench_function("from_port", |bencher| {
        let mut next = 0;
        bencher.iter(|| {
            next = (next + 1) & (KEY_COUNT - 1);
            guard.check_from_port(black_box(&infos[next]))
        });
    });
    group.finish();
}

/// Criterion's estimate of one benchmark, in nanoseconds per iteration, read back from the
/// report it just wrote (the slope where it fitted one, the mean otherwise).
fn estimate_ns(output: &std::path::Path, id: &str) -> Option<f64> {
    let text = std::fs::read_to_string(output.join(id).join("new/estimates.json")).ok()?;
    let estimates: serde_json::Value = serde_json::from_str(&text).ok()?;
    ["slope", "mean"]
        .iter()
        .find_map(|kind| estimates.get(kind)?.get("point_estimate")?.as_f64())
}

/// Where criterion writes its reports: `$CRITERION_HOME`, else `criterion/` in the target
/// directory, which holds this executable as `<target>/release/deps/<bench>`.
fn criterion_output() -> Option<PathBuf> {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return Some(PathBuf::from(home));
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            let executable = std::env::current_exe().ok()?;
            Some(executable.parent()?.parent()?.parent()?.to_path_buf())
        })?;
    Some(target.join("criterion"))
}

fn print_summary(clock: &str) {
    let Some(output) = criterion_output() else {
        return;
    };
    let mut rows: Vec<(String, f64)> = vec![
        ("parse/udp4".to_string(), 1.0),
        ("antispoof/from_port".to_string(), 1.0),
    ];
    for count in ACL_SIZES {
        rows.push((format!("acl_lookup/rules/{count}"), 1.0));
        rows.push((format!("acl_linear_scan/rules/{count}"), 1.0));
    }
    for entries in FDB_SIZES {
        rows.push((format!("fdb_lookup/entries/{entries}"), 1.0));
    }
    for group in PIPELINE_GROUPS {
        for (name, ..) in PIPELINE_TARGETS {
            rows.push((format!("{group}/{name}"), BATCH as f64));
        }
    }
    let per_frame = |id: &str, frames: f64| Some(estimate_ns(&output, id)? / frames);
    let lines: Vec<String> = rows
        .iter()
        .filter_map(|(id, frames)| {
            let nanoseconds = per_frame(id, *frames)?;
            Some(format!("  {id:<34} {nanoseconds:>10.1} ns/frame"))
        })
        .collect();
    if !lines.is_empty() {
        println!("\nper frame, {clock} time (this run or the last that ran each benchmark):");
        for line in lines {
            println!("{line}");
        }
    }
    println!("\ntargets (whole pipeline, batch of {BATCH}, anti-spoofing on, {clock} time):");
    for group in PIPELINE_GROUPS {
        for (name, macs, rules, most) in PIPELINE_TARGETS {
            let measured = per_frame(&format!("{group}/{name}"), BATCH as f64);
            let (value, verdict) = match measured {
                Some(ns) if ns <= most => (format!("{ns:.1}"), "PASS"),
                Some(ns) => (format!("{ns:.1}"), "MISS"),
                None => ("-".to_string(), "not run"),
            };
            println!(
                "  {group:<18} {macs:>9} MACs, {rules:>6} rules: at most {most:>3.0} ns/frame, measured {value:>6}  {verdict}"
            );
        }
    }
}

/// The calling thread's CPU time, for `XSW_BENCH_CLOCK=thread`: on a machine shared with
/// other work, wall time counts the time the benchmark waited for a core; this does not.
struct ThreadCpuTime;

fn thread_cpu_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid timespec for clock_gettime to write; the thread CPU clock
    // exists on every Linux the switch runs on.
    let failed = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) } != 0;
    assert!(!failed, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

impl Measurement for ThreadCpuTime {
    type Intermediate = u64;
    type Value = u64;

    fn start(&self) -> u64 {
        thread_cpu_ns()
    }

    fn end(&self, started: u64) -> u64 {
        thread_cpu_ns().saturating_sub(started)
    }

    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }

    fn zero(&self) -> u64 {
        0
    }

    fn to_f64(&self, value: &u64) -> f64 {
        *value as f64
    }

    fn formatter(&self) -> &dyn ValueFormatter {
        &Nanoseconds
    }
}

/// Formats CPU time like criterion's wall time, in ns (the benchmarks here are short).
struct Nanoseconds;

impl ValueFormatter for Nanoseconds {
    fn scale_values(&self, typical: f64, values: &mut [f64]) -> &'static str {
        let (factor, unit) = if typical < 1e3 {
            (1.0, "ns")
        } else if typical < 1e6 {
            (1e-3, "µs")
        } else {
            (1e-6, "ms")
        };
        values.iter_mut().for_each(|value| *value *= factor);
        unit
    }

    fn scale_throughputs(
        &self,
        _typical: f64,
        throughput: &Throughput,
        values: &mut [f64],
    ) -> &'static str {
        let per_iteration = match throughput {
            Throughput::Elements(n) | Throughput::Bytes(n) | Throughput::BytesDecimal(n) => {
                *n as f64
            }
        };
        // Millions per CPU-second.
        values
            .iter_mut()
            .for_each(|value| *value = per_iteration * 1e3 / *value);
        "M/s"
    }

    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns"
    }
}

fn run<M: Measurement>(criterion: Criterion<M>) {
    let mut criterion = criterion
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    stage_benches(&mut criterion);
    acl_benches(&mut criterion);
    fdb_benches(&mut criterion);
    pipeline_benches(&mut criterion);
    criterion.final_summary();
}

fn main() {
    // Wall time by default, as the targets are stated; the thread's CPU time on request.
    let clock = std::env::var("XSW_BENCH_CLOCK").unwrap_or_else(|_| "wall".to_string());
    match clock.as_str() {
        "wall" => run(Criterion::default()),
        "thread" => run(Criterion::default().with_measurement(ThreadCpuTime)),
        other => {
            eprintln!("XSW_BENCH_CLOCK={other:?}: use wall (the default) or thread");
            std::process::exit(2);
        }
    }
    print_summary(&clock);
}
