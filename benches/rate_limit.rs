//! The rate limiter's check, as the request path makes it, beside governor's bare *keyed*
//! check (`DefaultKeyedRateLimiter<u64>::check_key`, same quota): ns per call for one hot key
//! and for 10,000 keys round robin, the ratios (target ≤ 2.0), and the memory one million
//! distinct keys take in each (resident set before and after, each in a fresh process).
//!
//! `cargo bench --bench rate_limit` (about ten seconds once built).

use criterion::{criterion_group, Criterion};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use hissaback_actors::rate_limit::{Limits, Plan};
use std::hint::black_box;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

/// A plan that never runs dry while benched (one request per 14 ns refills faster than any
/// check takes), so both limiters measure the allowing path, the common one.
const PLAN: Plan = Plan { per_minute: u32::MAX, burst: u32::MAX };
/// A plan spent at once: every further check is refused (a client hammering past its limit).
const SPENT: Plan = Plan { per_minute: 1, burst: 1 };
const KEYS: u64 = 10_000;
const MEMORY_KEYS: u32 = 1_000_000;
/// Set in the child process that measures the memory of one limiter.
const MEMORY_ENV: &str = "HISSABACK_RATE_LIMIT_BENCH_MEMORY";

fn quota(plan: Plan) -> Quota {
    Quota::per_minute(NonZeroU32::new(plan.per_minute).unwrap()).allow_burst(NonZeroU32::new(plan.burst).unwrap())
}

fn governor_keyed(plan: Plan) -> DefaultKeyedRateLimiter<u64> {
    RateLimiter::keyed(quota(plan))
}

fn warm(limits: &Limits, governor: &DefaultKeyedRateLimiter<u64>, plan: Plan) {
    for k in 0..KEYS {
        limits.check(k, plan);
        let _ = governor.check_key(&k);
    }
}

fn checks(c: &mut Criterion) {
    let mut g = c.benchmark_group("rate_limit_check");
    let limits = Limits::new(30);
    let keyed = governor_keyed(PLAN);
    warm(&limits, &keyed, PLAN);
    g.bench_function("limits_one_key", |b| b.iter(|| black_box(limits.check(black_box(42), PLAN))));
    g.bench_function("governor_keyed_one_key", |b| b.iter(|| black_box(keyed.check_key(black_box(&42)).is_ok())));
    let mut k = 0u64;
    g.bench_function("limits_10k_keys_round_robin", |b| {
        b.iter(|| {
            k = if k + 1 == KEYS { 0 } else { k + 1 };
            black_box(limits.check(black_box(k), PLAN))
        })
    });
    g.bench_function("governor_keyed_10k_keys_round_robin", |b| {
        b.iter(|| {
            k = if k + 1 == KEYS { 0 } else { k + 1 };
            black_box(keyed.check_key(black_box(&k)).is_ok())
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(20);
    targets = checks
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(0)
}

fn ns_per_call(n: u64, mut f: impl FnMut(u64)) -> f64 {
    let t = Instant::now();
    for i in 0..n {
        f(i);
    }
    t.elapsed().as_nanos() as f64 / n as f64
}

/// The child process: fills one limiter with a million distinct keys and prints
/// `rss_before_kib rss_after_kib ns_per_first_check`.
fn memory_child(which: &str) {
    fn fill<T>(limiter: T, check: impl Fn(&T, u64), len: impl Fn(&T) -> usize) {
        let before = rss_kib();
        let ns = ns_per_call(u64::from(MEMORY_KEYS), |i| check(&limiter, i));
        let after = rss_kib();
        assert_eq!(len(&limiter), MEMORY_KEYS as usize);
        println!("{before} {after} {ns}");
    }
    match which {
        "limits" => fill(Limits::new(30), |l, i| { black_box(l.check(i, PLAN)); }, Limits::tracked_keys),
        _ => fill(governor_keyed(PLAN), |l, i| { black_box(l.check_key(&i).is_ok()); }, |l| l.len()),
    }
}

/// (MiB resident for a million keys, bytes per key, ns per first check) of one limiter,
/// measured in a fresh process so neither limiter's heap skews the other's.
fn memory(which: &str) -> (f64, u64, f64) {
    let out = std::process::Command::new(std::env::current_exe().expect("own path"))
        .env(MEMORY_ENV, which)
        .output()
        .expect("memory child runs");
    assert!(out.status.success(), "memory child failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let f: Vec<f64> = text.split_whitespace().map(|v| v.parse().expect("a number")).collect();
    let kib = (f[1] - f[0]).max(0.0);
    (kib / 1024.0, (kib * 1024.0 / f64::from(MEMORY_KEYS)) as u64, f[2])
}

fn main() {
    if let Ok(which) = std::env::var(MEMORY_ENV) {
        memory_child(&which);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();

    let limits = Limits::new(30);
    let keyed = governor_keyed(PLAN);
    warm(&limits, &keyed, PLAN);
    let spent = Limits::new(30);
    let keyed_spent = governor_keyed(SPENT);
    warm(&spent, &keyed_spent, SPENT);
    // Best of several interleaved rounds: robust to other work on the machine.
    let rr = |i: u64| i % KEYS;
    let calls = 1_000_000;
    let mut best = [f64::INFINITY; 6];
    for _ in 0..7 {
        let round = [
            ns_per_call(calls, |_| {
                black_box(limits.check(black_box(42), PLAN));
            }),
            ns_per_call(calls, |_| {
                black_box(keyed.check_key(black_box(&42)).is_ok());
            }),
            ns_per_call(calls, |i| {
                black_box(limits.check(black_box(rr(i)), PLAN));
            }),
            ns_per_call(calls, |i| {
                black_box(keyed.check_key(black_box(&rr(i))).is_ok());
            }),
            ns_per_call(calls, |_| {
                black_box(spent.check(black_box(42), SPENT));
            }),
            ns_per_call(calls, |_| {
                black_box(keyed_spent.check_key(black_box(&42)).is_ok());
            }),
        ];
        for (b, r) in best.iter_mut().zip(round) {
            *b = b.min(r);
        }
    }
    let (ours_mib, ours_bytes, ours_fill) = memory("limits");
    let (gov_mib, gov_bytes, gov_fill) = memory("governor");

    println!("\nrate-limit check, one run, side by side (best of 7 rounds of 1,000,000 calls):");
    println!("  {:<28} {:>12} {:>16} {:>8}", "", "Limits::check", "governor keyed", "ratio");
    for (name, i) in [("one hot key", 0), ("10,000 keys round robin", 2), ("refused (spent bucket)", 4)] {
        let ratio = best[i] / best[i + 1];
        let mark = if i == 4 { "" } else if ratio <= 2.0 { "  ok (≤ 2.0)" } else { "  OVER 2.0" };
        println!("  {name:<28} {:>9.1} ns {:>13.1} ns {:>7.2}x{mark}", best[i], best[i + 1], ratio);
    }
    println!("  first check of 1,000,000 distinct keys: {ours_fill:.0} ns/call ours, {gov_fill:.0} ns/call governor keyed");
    let mark = if ours_mib * 1_048_576.0 <= 200e6 { "ok (≤ 200 MB)" } else { "OVER 200 MB" };
    println!(
        "  memory for 1,000,000 keys: {ours_mib:.0} MiB ({:.0} MB, {ours_bytes} bytes/key) ours, {mark}; governor keyed {gov_mib:.0} MiB ({gov_bytes} bytes/key)",
        ours_mib * 1.048_576
    );
}
