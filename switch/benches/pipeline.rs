//! Per-frame cost of the pipeline's lookups, side by side in one run:
//!
//! - `acl_lookup/rules/N`: one ACL evaluation against N realistic rules (most keys fall to
//!   the default, which is the classifier's worst case: it probes every tuple), and
//!   `acl_linear_scan/rules/N`, the naive scan, for scale.
//! - `fdb_lookup/entries/N`: one MAC-table lookup in a table of N entries.
//! - `l2_decide_batch/frames/64`: learning and forwarding decisions for a batch of 64 frames
//!   with 1,000 MACs known.
//!
//! Every benchmark declares its frames as `Throughput::Elements`, and a table of nanoseconds
//! per frame closes the run. `cargo bench -p xsw --bench pipeline [-- FILTER]`.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use etherparse::PacketBuilder;
use ipnet::IpNet;
use xsw::packet::MacAddr;
use xsw::pipeline::acl::{AclAction, AclKey, AclRule, PortRange, TenantAcl};
use xsw::pipeline::{decide_batch, Decision, Fdb, IngressPort, Learned};

const ACL_SIZES: [usize; 3] = [10, 1_000, 10_000];
const FDB_SIZES: [usize; 2] = [10, 1_000_000];
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

fn acl_benches(criterion: &mut Criterion) {
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

fn fdb_benches(criterion: &mut Criterion) {
    let mut random = Random(0xfdb);
    let mut group = criterion.benchmark_group("fdb_lookup");
    group.throughput(Throughput::Elements(1));
    for entries in FDB_SIZES {
        let mut fdb = Fdb::new(entries, u64::MAX);
        for n in 0..entries as u64 {
            let learned = fdb.learn(0, host_mac(n), (n % 16) as u16, 0);
            assert_eq!(learned, Learned::New, "capacity too small");
        }
        let macs: Vec<MacAddr> = (0..KEY_COUNT)
            .map(|_| host_mac(random.next() % entries as u64))
            .collect();
        group.bench_with_input(
            BenchmarkId::new("entries", entries),
            &entries,
            |bencher, _| {
                let mut next = 0;
                bencher.iter(|| {
                    next = (next + 1) & (KEY_COUNT - 1);
                    fdb.lookup(0, black_box(macs[next]), 1)
                });
            },
        );
    }
    group.finish();
}

fn frame(src: MacAddr, dst: MacAddr) -> Vec<u8> {
    let builder = PacketBuilder::ethernet2(src.0, dst.0)
        .ipv4([198, 18, 0, 1], [198, 18, 0, 2], 64)
        .udp(40000, 5001);
    let payload = [0u8; 18];
    let mut bytes = Vec::with_capacity(builder.size(payload.len()));
    builder
        .write(&mut bytes, &payload)
        .expect("a Vec grows as needed");
    bytes
}

fn decide_benches(criterion: &mut Criterion) {
    const KNOWN_MACS: u64 = 1_000;
    let ingress = IngressPort { id: 1, domain: 0 };
    let mut random = Random(0x12);
    let mut fdb = Fdb::new(4_096, u64::MAX);
    // Hosts 0..64 sit behind the ingress port; the others behind ports 2..=9.
    for n in 0..KNOWN_MACS {
        let port = if n < BATCH as u64 {
            ingress.id
        } else {
            2 + (n % 8) as u16
        };
        fdb.learn(0, host_mac(n), port, 0);
    }
    let frames_owned: Vec<Vec<u8>> = (0..BATCH as u64)
        .map(|n| {
            let dst = host_mac(random.between(BATCH as u64, KNOWN_MACS - 1));
            frame(host_mac(n), dst)
        })
        .collect();
    let frames: Vec<&[u8]> = frames_owned.iter().map(Vec::as_slice).collect();
    let mut decisions = [Decision::Flood; BATCH];
    let mut learned = [Learned::Nothing; BATCH];
    decide_batch(&mut fdb, ingress, &frames, 1, &mut decisions, &mut learned);
    assert!(
        decisions.iter().all(|d| matches!(d, Decision::Forward(_))),
        "the batch should be all known unicast: {decisions:?}"
    );

    let mut group = criterion.benchmark_group("l2_decide_batch");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_with_input(BenchmarkId::new("frames", BATCH), &BATCH, |bencher, _| {
        bencher.iter(|| {
            decide_batch(
                &mut fdb,
                ingress,
                black_box(&frames),
                1,
                &mut decisions,
                &mut learned,
            )
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

fn print_summary() {
    let Some(output) = criterion_output() else {
        return;
    };
    let mut rows: Vec<(String, f64)> = Vec::new();
    for count in ACL_SIZES {
        rows.push((format!("acl_lookup/rules/{count}"), 1.0));
        rows.push((format!("acl_linear_scan/rules/{count}"), 1.0));
    }
    for entries in FDB_SIZES {
        rows.push((format!("fdb_lookup/entries/{entries}"), 1.0));
    }
    rows.push((format!("l2_decide_batch/frames/{BATCH}"), BATCH as f64));
    let lines: Vec<String> = rows
        .iter()
        .filter_map(|(id, frames)| {
            let nanoseconds = estimate_ns(&output, id)? / frames;
            Some(format!("  {id:<32} {nanoseconds:>10.1} ns/frame"))
        })
        .collect();
    if !lines.is_empty() {
        println!("\nper frame (this run or the last that ran each benchmark):");
        for line in lines {
            println!("{line}");
        }
    }
}

fn main() {
    let mut criterion = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    acl_benches(&mut criterion);
    fdb_benches(&mut criterion);
    decide_benches(&mut criterion);
    criterion.final_summary();
    print_summary();
}
