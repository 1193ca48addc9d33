//! The rate limiter's check, as the request path makes it: ns per call for one hot key and
//! spread over many keys, beside governor's bare direct check (the ceiling), and the memory
//! one million distinct keys take (resident set before and after).
//!
//! `cargo bench --bench rate_limit`

use criterion::{criterion_group, Criterion};
use governor::{Quota, RateLimiter};
use hissaback_actors::rate_limit::{Limits, Plan};
use std::hint::black_box;
use std::num::NonZeroU32;
use std::time::Instant;

const PLAN: Plan = Plan { per_minute: 1_000_000, burst: 1_000_000 };

fn checks(c: &mut Criterion) {
    let mut g = c.benchmark_group("rate_limit_check");
    let limits = Limits::new(30);
    g.bench_function("limits_one_key", |b| b.iter(|| black_box(limits.check(black_box(42), PLAN))));
    let mut k = 0u64;
    g.bench_function("limits_10k_keys_round_robin", |b| {
        b.iter(|| {
            k = (k + 1) % 10_000;
            black_box(limits.check(black_box(k), PLAN))
        })
    });
    let bare = RateLimiter::direct(Quota::per_minute(NonZeroU32::new(1_000_000).unwrap()));
    g.bench_function("governor_direct_ceiling", |b| b.iter(|| black_box(bare.check())));
    g.finish();
}

criterion_group!(benches, checks);

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(0)
}

fn ns_per_call(n: u32, mut f: impl FnMut(u32)) -> f64 {
    let t = Instant::now();
    for i in 0..n {
        f(i);
    }
    t.elapsed().as_nanos() as f64 / f64::from(n)
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();

    let limits = Limits::new(30);
    let one = ns_per_call(2_000_000, |_| {
        black_box(limits.check(42, PLAN));
    });
    let bare = RateLimiter::direct(Quota::per_minute(NonZeroU32::new(1_000_000).unwrap()));
    let ceiling = ns_per_call(2_000_000, |_| {
        black_box(bare.check().is_ok());
    });
    let before = rss_kib();
    let many = Limits::new(30);
    let fill = ns_per_call(1_000_000, |i| {
        black_box(many.check(u64::from(i), PLAN));
    });
    let after = rss_kib();
    println!("\nrate-limit check, one run, side by side:");
    println!("  hot key through Limits: {one:.0} ns/call; bare governor direct check: {ceiling:.0} ns/call; ratio {:.1}x", one / ceiling);
    println!("  first check of 1,000,000 distinct keys: {fill:.0} ns/call");
    println!(
        "  memory for 1,000,000 keys: {} MiB resident ({} bytes per key); idle keys are evicted by the actor",
        (after.saturating_sub(before)) / 1024,
        (after.saturating_sub(before)) * 1024 / 1_000_000
    );
    assert_eq!(many.tracked_keys(), 1_000_000);
}
