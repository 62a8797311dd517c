//! ACL classifier lookups on ClassBench-shaped rule sets, side by side in one run:
//!
//! - `classifier/SET/N`: [`Classifier::lookup`], the switch's classifier;
//! - `previous/SET/N`: the classifier before it (a copy in `classifier/previous.rs`);
//! - `linear/SET/N`: the first-match scan of [`AclRule::matches`], for scale.
//!
//! SET is `acl`, `fw` or `ipc` (rules from [`classbench::rules`], keys from
//! [`classbench::keys_for`]: half aimed at a rule, half random hosts of the set's networks)
//! at N = 1,000 and 10,000 rules, and `scenario-acl` at 1,000: the rule set and traffic of
//! `bench/scenario.sh acl` (every key matches the last rule). One lookup per iteration,
//! keys cycled, so criterion's time is nanoseconds per lookup.
//!
//! `cargo bench -p xsw --bench classifier [-- FILTER] [--warm-up-time 1 --measurement-time 2]`.
//! Targets (issue 11): at most 60 ns at 1,000 rules and 100 ns at 10,000 for the seeds, and
//! no 10,000-rule set above 200 ns.

use std::hint::black_box;
use std::time::Instant;

use criterion::{BenchmarkId, Criterion};
use xsw::pipeline::acl::classbench::{self, Seed};
use xsw::pipeline::acl::{AclKey, AclRule, Classifier};

#[path = "classifier/previous.rs"]
mod previous;

/// Keys cycled through: enough to defeat branch prediction, a power of two to wrap by mask.
const KEY_COUNT: usize = 4096;

struct RuleSet {
    name: String,
    count: usize,
    rules: Vec<AclRule>,
    keys: Vec<AclKey>,
}

fn rule_sets() -> Vec<RuleSet> {
    let mut sets = Vec::new();
    for seed in Seed::ALL {
        for count in [1_000, 10_000] {
            let rules = classbench::rules(seed, count, 0x5eed + count as u64);
            let keys = classbench::keys_for(&rules, KEY_COUNT, 0x6b65);
            sets.push(RuleSet {
                name: seed.name().to_string(),
                count,
                rules,
                keys,
            });
        }
    }
    let rules = classbench::scenario_acl_rules(2544);
    sets.push(RuleSet {
        name: "scenario-acl".to_string(),
        count: rules.len(),
        keys: classbench::scenario_acl_keys(KEY_COUNT),
        rules,
    });
    sets
}

fn lookups(criterion: &mut Criterion) {
    let sets = rule_sets();
    let mut compiled = Vec::new();
    for set in &sets {
        let started = Instant::now();
        let classifier = Classifier::compile(&set.rules);
        let compile_ms = started.elapsed().as_secs_f64() * 1e3;
        let started = Instant::now();
        let previous = previous::Classifier::compile(&set.rules);
        let previous_ms = started.elapsed().as_secs_f64() * 1e3;
        let mut matched = 0;
        for key in &set.keys {
            let expected = set.rules.iter().position(|rule| rule.matches(key));
            assert_eq!(classifier.lookup(key), expected, "{} {key:?}", set.name);
            assert_eq!(previous.lookup(key), expected, "{} {key:?}", set.name);
            matched += usize::from(expected.is_some());
        }
        println!(
            "{}/{}: {matched}/{} keys match; classifier: {} tables, compiled in {compile_ms:.1} ms; previous: {} tuples, {previous_ms:.1} ms",
            set.name,
            set.count,
            set.keys.len(),
            classifier.tuple_count(),
            previous.tuple_count(),
        );
        compiled.push((classifier, previous));
    }

    let mut group = criterion.benchmark_group("classifier");
    for (set, (classifier, _)) in sets.iter().zip(&compiled) {
        let mut next = 0;
        group.bench_function(BenchmarkId::new(&set.name, set.count), |bencher| {
            bencher.iter(|| {
                next = (next + 1) & (KEY_COUNT - 1);
                classifier.lookup(black_box(&set.keys[next]))
            })
        });
    }
    group.finish();

    let mut group = criterion.benchmark_group("previous");
    for (set, (_, previous)) in sets.iter().zip(&compiled) {
        let mut next = 0;
        group.bench_function(BenchmarkId::new(&set.name, set.count), |bencher| {
            bencher.iter(|| {
                next = (next + 1) & (KEY_COUNT - 1);
                previous.lookup(black_box(&set.keys[next]))
            })
        });
    }
    group.finish();

    let mut group = criterion.benchmark_group("linear");
    for set in &sets {
        let mut next = 0;
        group.bench_function(BenchmarkId::new(&set.name, set.count), |bencher| {
            bencher.iter(|| {
                next = (next + 1) & (KEY_COUNT - 1);
                let key = black_box(&set.keys[next]);
                set.rules.iter().position(|rule| rule.matches(key))
            })
        });
    }
    group.finish();
}

/// The calling thread's CPU time in nanoseconds: on a machine shared with other work, what
/// the lookups cost rather than how long they waited for a core.
fn thread_cpu_ns() -> u128 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable timespec that outlives the call.
    let failed = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) } != 0;
    assert!(!failed, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    now.tv_sec as u128 * 1_000_000_000 + now.tv_nsec as u128
}

/// Nanoseconds of thread CPU time per `lookup`, over `rounds` passes through the keys.
fn cpu_ns_per_lookup(
    keys: &[AclKey],
    rounds: usize,
    lookup: impl Fn(&AclKey) -> Option<usize>,
) -> f64 {
    let started = thread_cpu_ns();
    for _ in 0..rounds {
        for key in keys {
            black_box(lookup(black_box(key)));
        }
    }
    (thread_cpu_ns() - started) as f64 / (rounds * keys.len()) as f64
}

/// One table of all sets in thread CPU time, with the targets: criterion's wall times move
/// with the other work on the machine.
fn summary() {
    println!("\nns per lookup, thread CPU time (target: 60 at 1,000 rules, 100 at 10,000, none above 200)");
    println!(
        "{:<20} {:>11} {:>11} {:>11}",
        "set/rules", "classifier", "previous", "linear"
    );
    for set in rule_sets() {
        let classifier = Classifier::compile(&set.rules);
        let previous = previous::Classifier::compile(&set.rules);
        if std::env::var_os("XSW_BENCH_DESCRIBE").is_some() {
            println!("{}/{}: {}", set.name, set.count, classifier.describe());
        }
        let rounds = 200;
        let new = cpu_ns_per_lookup(&set.keys, rounds, |key| classifier.lookup(key));
        let old = cpu_ns_per_lookup(&set.keys, rounds, |key| previous.lookup(key));
        let linear_rounds = (2_000_000 / set.rules.len()).max(1);
        let linear = cpu_ns_per_lookup(&set.keys[..512], linear_rounds, |key| {
            set.rules.iter().position(|rule| rule.matches(key))
        });
        let target = if set.count >= 10_000 { 100.0 } else { 60.0 };
        println!(
            "{:<20} {new:>11.1} {old:>11.1} {linear:>11.1}  {}",
            format!("{}/{}", set.name, set.count),
            if new <= target { "PASS" } else { "MISS" }
        );
    }
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    if std::env::var_os("XSW_BENCH_SUMMARY_ONLY").is_none() {
        lookups(&mut criterion);
        criterion.final_summary();
    }
    summary();
}
