//! Rate limits: one GCRA bucket per API key (each key has its own plan: requests per minute
//! and burst), one per affiliate network for postbacks, and for failed authentications one per
//! client address and presented credential prefix, with a looser one per address as a whole.
//! Failures only ever refuse further failures: a valid credential is never refused because
//! others at its address failed (see `src/auth.rs`).
//!
//! The request path checks a bucket through the shared [`Limits`] handle, without a mailbox
//! round trip; the [`RateLimiter`] actor owns the housekeeping: it evicts buckets of keys
//! and addresses idle for a while, so a million distinct keys do not stay in memory forever.
//!
//! A check is one read lock on one of [`SHARDS`] maps (fast seeded hash), one clock read (the
//! TSC, through governor's quanta clock) and one compare-and-swap on the bucket's theoretical
//! arrival time, held inline in the map: no allocation, no reference counting, no second
//! lookup. The arithmetic is governor's GCRA (`Quota::per_minute(rate).allow_burst(burst)`,
//! its `remaining_burst_capacity` and `wait_time_from`), checked against governor in the tests.
//!
//! In a cluster every instance limits on its own: give each instance its share of the global
//! quota (plan ÷ instances) or route a key's traffic to one instance (see the README).

use actix::prelude::*;
use governor::clock::{Clock, QuantaClock, QuantaInstant, Reference};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

const NANOS_PER_SEC: u64 = 1_000_000_000;
const NANOS_PER_MINUTE: u64 = 60 * NANOS_PER_SEC;

/// The failure bucket of an address as a whole (any credential prefix).
pub const WHOLE_ADDRESS: u64 = 0;

/// How many more failures an address may have in all than with one credential prefix: a
/// few callers behind one address mistyping their keys do not block each other's failures.
pub const WHOLE_ADDRESS_FACTOR: u32 = 10;

/// How many maps the buckets are spread over: a check locks one, so workers checking
/// different keys rarely meet, and a sweep or a growing map holds up one sixty-fourth of them.
pub const SHARDS: usize = 64;
const SHARD_BITS: u32 = SHARDS.trailing_zeros();

/// A key's plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    pub per_minute: u32,
    pub burst: u32,
}

impl Plan {
    /// Nanoseconds one request weighs: a minute over the rate (governor's `t`).
    fn interval_ns(self) -> u64 {
        (NANOS_PER_MINUTE / u64::from(self.per_minute.max(1))).max(1)
    }

    /// How far ahead of now the bucket may run: the burst beyond the first request
    /// (governor's `tau`).
    fn tolerance_ns(self, interval: u64) -> u64 {
        interval.saturating_mul(u64::from(self.burst.max(1) - 1))
    }

    /// The response-header figures of an outcome of [`Gcra::take`].
    fn decision(self, interval: u64, taken: Result<u64, u64>) -> Decision {
        let per_request = 60.0 / f64::from(self.per_minute.max(1));
        match taken {
            Ok(backlog) => {
                let whole = self.burst.max(1) - 1;
                // governor's `remaining_burst_capacity`: (tau - backlog) / t, the division
                // spared while the bucket was full.
                let remaining = if backlog == 0 {
                    whole
                } else {
                    ((self.tolerance_ns(interval) - backlog) / interval).min(u64::from(whole)) as u32
                };
                let missing = self.burst.saturating_sub(remaining);
                Decision { allowed: true, plan: self, remaining, reset_secs: (f64::from(missing) * per_request).ceil() as u64, retry_after_secs: None }
            }
            Err(wait) => {
                let reset = (f64::from(self.burst) * per_request).ceil() as u64;
                Decision { allowed: false, plan: self, remaining: 0, reset_secs: reset, retry_after_secs: Some(secs_ceil(wait).max(1)) }
            }
        }
    }
}

/// The outcome of one check, with what the response headers say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub plan: Plan,
    /// Requests left in the burst right now.
    pub remaining: u32,
    /// Seconds until the burst is whole again.
    pub reset_secs: u64,
    /// When refused: seconds until one request is allowed.
    pub retry_after_secs: Option<u64>,
}

/// One GCRA cell: the theoretical arrival time of the next request, in nanoseconds since
/// [`Limits`]' epoch (0: a fresh, full bucket).
#[derive(Default)]
struct Gcra(AtomicU64);

impl Gcra {
    /// Takes one request at `now` from a bucket where one weighs `interval` and the burst
    /// runs `tolerance` ahead: `Ok(backlog)`, how far the bucket was behind now before this
    /// request (0: full), or `Err(wait)`, the nanoseconds until one request conforms.
    /// Lock-free: concurrent takers retry the compare-and-swap, so no request is admitted
    /// twice.
    #[inline]
    fn take(&self, now: u64, interval: u64, tolerance: u64) -> Result<u64, u64> {
        let mut tat = self.0.load(Ordering::Acquire);
        loop {
            let earliest = tat.saturating_sub(tolerance);
            if now < earliest {
                return Err(earliest - now);
            }
            let next = tat.max(now) + interval;
            match self.0.compare_exchange_weak(tat, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Ok(tat.saturating_sub(now)),
                Err(current) => tat = current,
            }
        }
    }
}

struct Entry {
    plan: Plan,
    /// `plan.interval_ns()`, kept: a division spared per check.
    interval: u64,
    cell: Gcra,
    /// Nanoseconds since the epoch of the last check, updated under the read lock.
    seen: AtomicU64,
}

impl Entry {
    fn new(plan: Plan, now: u64) -> Self {
        Entry { plan, interval: plan.interval_ns(), cell: Gcra::default(), seen: AtomicU64::new(now) }
    }

    /// Takes one request; answers what [`Plan::decision`] needs, to be worked out once the
    /// lock is released.
    #[inline]
    fn take(&self, now: u64) -> (Plan, u64, Result<u64, u64>) {
        self.seen.store(now, Ordering::Relaxed);
        (self.plan, self.interval, self.cell.take(now, self.interval, self.plan.tolerance_ns(self.interval)))
    }
}

/// Whose bucket: an API key's, or an affiliate network's postback traffic (its own, far
/// higher plan). Both live in the same maps, so eviction and metrics treat them alike.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Subject {
    Key(u64),
    Network(u64),
    /// Clicks from one client address (a hash of it).
    ClickAddress(u64),
    /// Clicks on one smart link (a hash of its code).
    ClickLink(u64),
}

impl Subject {
    /// Which shard: Fibonacci hashing of the id (ids are assigned by the server, not chosen
    /// by clients), independent of the maps' own seeded hash.
    fn shard(self) -> usize {
        let id = match self {
            Subject::Key(id) => id,
            Subject::Network(id) => id ^ (1 << 63),
            Subject::ClickAddress(h) => h ^ (1 << 62),
            Subject::ClickLink(h) => h ^ (3 << 62),
        };
        (id.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - SHARD_BITS)) as usize
    }
}

/// One shard of the buckets, on its own cache lines.
#[repr(align(128))]
#[derive(Default)]
struct Shard(RwLock<foldhash::HashMap<Subject, Entry>>);

fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|p| p.into_inner())
}

/// Buckets shared by the request path and the actor.
pub struct Limits {
    clock: QuantaClock,
    epoch: QuantaInstant,
    shards: Box<[Shard]>,
    failures_per_minute: u32,
    /// Per client address and credential prefix (chosen by clients: SipHash here): its
    /// bucket and last failure.
    failures: RwLock<HashMap<(IpAddr, u64), (Gcra, u64)>>,
    /// Failures refused until this time (ns since the epoch) after too many.
    blocked: RwLock<HashMap<(IpAddr, u64), u64>>,
}

fn secs_ceil(ns: u64) -> u64 {
    ns.div_ceil(NANOS_PER_SEC)
}

impl Limits {
    pub fn new(failures_per_minute: u32) -> Self {
        let clock = QuantaClock::default();
        Self {
            epoch: clock.now(),
            clock,
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
            failures_per_minute: failures_per_minute.max(1),
            failures: RwLock::new(HashMap::new()),
            blocked: RwLock::new(HashMap::new()),
        }
    }

    #[inline]
    fn now_ns(&self) -> u64 {
        self.clock.now().duration_since(self.epoch).as_u64()
    }

    /// Takes one request from the key's bucket.
    pub fn check(&self, key_id: u64, plan: Plan) -> Decision {
        self.check_subject(Subject::Key(key_id), plan)
    }

    /// Takes one postback from the network's bucket.
    pub fn check_network(&self, network_id: u64, plan: Plan) -> Decision {
        self.check_subject(Subject::Network(network_id), plan)
    }

    /// Takes one click from the client address's bucket (`address`: a hash of it).
    pub fn check_click_address(&self, address: u64, plan: Plan) -> Decision {
        self.check_subject(Subject::ClickAddress(address), plan)
    }

    /// Takes one click from the smart link's bucket (`link`: a hash of its code).
    pub fn check_click_link(&self, link: u64, plan: Plan) -> Decision {
        self.check_subject(Subject::ClickLink(link), plan)
    }

    #[inline]
    fn check_subject(&self, subject: Subject, plan: Plan) -> Decision {
        let now = self.now_ns();
        let shard = &self.shards[subject.shard()].0;
        // The read guard must be gone before `take_new` asks for the write lock.
        let hit = read(shard).get(&subject).filter(|e| e.plan == plan).map(|e| e.take(now));
        let (plan, interval, taken) = match hit {
            Some(hit) => hit,
            None => Self::take_new(shard, subject, plan, now),
        };
        plan.decision(interval, taken)
    }

    /// A key seen for the first time (or since it was evicted), or whose plan changed.
    #[cold]
    #[inline(never)]
    fn take_new(shard: &RwLock<foldhash::HashMap<Subject, Entry>>, subject: Subject, plan: Plan, now: u64) -> (Plan, u64, Result<u64, u64>) {
        let mut map = write(shard);
        let entry = map.entry(subject).or_insert_with(|| Entry::new(plan, now));
        if entry.plan != plan {
            // A changed plan starts a fresh bucket, at once.
            *entry = Entry::new(plan, now);
        }
        entry.take(now)
    }

    /// Seconds failures of this credential prefix (`prefix`, a hash the caller makes; or
    /// [`WHOLE_ADDRESS`]) from the address must still wait.
    pub fn auth_blocked(&self, ip: IpAddr, prefix: u64) -> Option<u64> {
        let until = *read(&self.blocked).get(&(ip, prefix))?;
        let now = self.now_ns();
        (until > now).then(|| secs_ceil(until - now).max(1))
    }

    /// Counts a failed authentication against the address and the presented credential's
    /// prefix, and against the address as a whole (allowed [`WHOLE_ADDRESS_FACTOR`] times
    /// more); when either is over its allowance, it is blocked and the wait in seconds is
    /// returned.
    pub fn auth_failed(&self, ip: IpAddr, prefix: u64) -> Option<u64> {
        let narrow = self.count_failure((ip, prefix), self.failures_per_minute);
        let whole = self.count_failure((ip, WHOLE_ADDRESS), self.failures_per_minute.saturating_mul(WHOLE_ADDRESS_FACTOR));
        narrow.max(whole)
    }

    /// Seconds failures from this address must still wait, for this prefix or as a whole.
    pub fn auth_failures_blocked(&self, ip: IpAddr, prefix: u64) -> Option<u64> {
        self.auth_blocked(ip, prefix).max(self.auth_blocked(ip, WHOLE_ADDRESS))
    }

    fn count_failure(&self, subject: (IpAddr, u64), per_minute: u32) -> Option<u64> {
        let plan = Plan { per_minute, burst: per_minute };
        let interval = plan.interval_ns();
        let now = self.now_ns();
        let taken = {
            let mut failures = write(&self.failures);
            let e = failures.entry(subject).or_insert_with(|| (Gcra::default(), now));
            e.1 = now;
            e.0.take(now, interval, plan.tolerance_ns(interval))
        };
        match taken {
            Ok(_) => None,
            Err(wait) => {
                let wait = wait.max(NANOS_PER_SEC);
                write(&self.blocked).insert(subject, now + wait);
                Some(secs_ceil(wait))
            }
        }
    }

    /// Drops buckets idle for longer than `idle` (and gives back the room of a map that
    /// emptied); answers how many key and network buckets remain.
    pub fn evict_idle(&self, idle: Duration) -> usize {
        let idle = u64::try_from(idle.as_nanos()).unwrap_or(u64::MAX);
        let mut left = 0;
        for shard in self.shards.iter() {
            // One shard at a time: checks on the others go on meanwhile.
            let now = self.now_ns();
            let mut map = write(&shard.0);
            map.retain(|_, e| now.saturating_sub(e.seen.load(Ordering::Relaxed)) < idle);
            if map.capacity() > 64 && map.len() < map.capacity() / 4 {
                let len = map.len();
                map.shrink_to(len * 2);
            }
            left += map.len();
        }
        let now = self.now_ns();
        write(&self.failures).retain(|_, (_, seen)| now.saturating_sub(*seen) < idle);
        write(&self.blocked).retain(|_, until| *until > now);
        left
    }

    /// How many key and network buckets are held.
    pub fn tracked_keys(&self) -> usize {
        self.shards.iter().map(|s| read(&s.0).len()).sum()
    }
}

/// The housekeeping actor.
pub struct RateLimiter {
    limits: Arc<Limits>,
    idle: Duration,
}

impl RateLimiter {
    /// Starts the actor under a supervisor; it evicts buckets idle for `idle`.
    pub fn start(limits: Arc<Limits>, idle: Duration) -> Addr<Self> {
        Supervisor::start(move |_| RateLimiter { limits, idle })
    }
}

impl Actor for RateLimiter {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let every = (self.idle / 4).max(Duration::from_secs(1));
        ctx.run_interval(every, |act, _| {
            let left = act.limits.evict_idle(act.idle);
            tracing::debug!(keys = left, "rate-limit buckets evicted");
        });
    }
}

impl Supervised for RateLimiter {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_refuses_with_a_wait() {
        let limits = Limits::new(30);
        let plan = Plan { per_minute: 60, burst: 5 };
        let remaining: Vec<u32> = (0..5).map(|_| limits.check(7, plan)).map(|d| {
            assert!(d.allowed);
            d.remaining
        }).collect();
        assert_eq!(remaining, vec![4, 3, 2, 1, 0]);
        let refused = limits.check(7, plan);
        assert!(!refused.allowed);
        assert_eq!(refused.retry_after_secs, Some(1));
        assert!(limits.check(8, plan).allowed, "another key has its own bucket");
        assert!(limits.check(7, Plan { per_minute: 60, burst: 6 }).allowed, "a changed plan starts afresh");
    }

    #[test]
    fn failed_authentications_block_the_address() {
        let limits = Limits::new(3);
        let ip: IpAddr = "203.0.113.7".parse().unwrap();
        assert_eq!(limits.auth_blocked(ip, 7), None);
        for _ in 0..3 {
            assert_eq!(limits.auth_failed(ip, 7), None);
        }
        assert!(limits.auth_failed(ip, 7).is_some());
        assert!(limits.auth_blocked(ip, 7).is_some());
        assert_eq!(limits.auth_blocked(ip, 8), None, "another prefix from the address is not blocked");
        assert_eq!(limits.auth_blocked("203.0.113.8".parse().unwrap(), 7), None);
    }

    #[test]
    fn a_network_and_a_key_with_the_same_id_have_their_own_buckets() {
        let limits = Limits::new(3);
        let plan = Plan { per_minute: 1, burst: 1 };
        assert!(limits.check(9, plan).allowed);
        assert!(!limits.check(9, plan).allowed);
        assert!(limits.check_network(9, plan).allowed);
        assert!(!limits.check_network(9, plan).allowed);
        assert_eq!(limits.tracked_keys(), 2);
    }

    #[test]
    fn the_headers_of_a_refusal_and_of_a_partly_spent_bucket() {
        let limits = Limits::new(3);
        // 300 a minute, burst 1,000: a whole burst takes 200 s to refill.
        let plan = Plan { per_minute: 300, burst: 1000 };
        let first = limits.check(1, plan);
        assert_eq!((first.allowed, first.remaining, first.reset_secs, first.retry_after_secs), (true, 999, 1, None));
        for _ in 0..998 {
            assert!(limits.check(1, plan).allowed);
        }
        let last = limits.check(1, plan);
        assert_eq!((last.allowed, last.remaining, last.reset_secs), (true, 0, 200));
        let refused = limits.check(1, plan);
        assert_eq!(refused, Decision { allowed: false, plan, remaining: 0, reset_secs: 200, retry_after_secs: Some(1) });
    }

    /// N workers × M checks on one key: never more than the burst plus what the rate refilled
    /// meanwhile, and each allowed request saw its own `remaining`.
    #[test]
    fn concurrent_checks_of_one_key_never_admit_more_than_the_burst_and_rate_allow() {
        const THREADS: usize = 4;
        const CHECKS: usize = 20_000;
        // A minute's rate of 1 refills nothing while the test runs: exactly the burst passes.
        let limits = Limits::new(3);
        let plan = Plan { per_minute: 1, burst: 500 };
        let mut remaining: Vec<u32> = std::thread::scope(|s| {
            let workers: Vec<_> = (0..THREADS)
                .map(|_| s.spawn(|| (0..CHECKS).map(|_| limits.check(7, plan)).filter(|d| d.allowed).map(|d| d.remaining).collect::<Vec<_>>()))
                .collect();
            workers.into_iter().flat_map(|w| w.join().unwrap()).collect()
        });
        remaining.sort_unstable();
        assert_eq!(remaining, (0..500).collect::<Vec<u32>>(), "each of the burst's requests admitted once");

        // 600,000 a minute (one per 100 µs), burst 20: the refill counts too.
        let plan = Plan { per_minute: 600_000, burst: 20 };
        let started = std::time::Instant::now();
        let allowed: usize = std::thread::scope(|s| {
            let workers: Vec<_> = (0..THREADS).map(|_| s.spawn(|| (0..CHECKS).filter(|_| limits.check(8, plan).allowed).count())).collect();
            workers.into_iter().map(|w| w.join().unwrap()).sum()
        });
        let ceiling = 20 + (started.elapsed().as_nanos() / 100_000) as usize + 1;
        assert!((20..=ceiling).contains(&allowed), "{allowed} allowed, at most {ceiling}");
    }

    proptest::proptest! {
        /// The cell and the header figures are governor's GCRA to the nanosecond: the same
        /// plan, the same checks at the same times give the same answers and remaining
        /// burst, and the same wait when refused.
        #[test]
        fn the_arithmetic_is_governors(
            per_minute in 1u32..100_000,
            burst in 1u32..50,
            steps in proptest::collection::vec((0u8..5, 0u64..3_000_000_000), 1..200),
        ) {
            use governor::clock::FakeRelativeClock;
            use governor::middleware::StateInformationMiddleware;
            use std::num::NonZeroU32;
            let plan = Plan { per_minute, burst };
            let quota = governor::Quota::per_minute(NonZeroU32::new(per_minute).unwrap()).allow_burst(NonZeroU32::new(burst).unwrap());
            let clock = FakeRelativeClock::default();
            let reference = governor::RateLimiter::direct_with_clock(quota, clock.clone()).with_middleware::<StateInformationMiddleware>();
            let cell = Gcra::default();
            let interval = plan.interval_ns();
            let mut now = 0u64;
            for (kind, n) in steps {
                // Checks at the same instant, a little later, a whole number of intervals
                // later (on the boundary, a nanosecond either side) or after a pause.
                let step = match kind {
                    0 => 0,
                    1 => n % 1_000,
                    2 => interval * (n % 3),
                    3 => (interval * (1 + n % 2)).saturating_add_signed(if n % 4 < 2 { 1 } else { -1 }),
                    _ => n,
                };
                now += step;
                clock.advance(Duration::from_nanos(step));
                let ours = plan.decision(interval, cell.take(now, interval, plan.tolerance_ns(interval)));
                match reference.check() {
                    Ok(snapshot) => {
                        proptest::prop_assert!(ours.allowed);
                        proptest::prop_assert_eq!(ours.remaining, snapshot.remaining_burst_capacity());
                    }
                    Err(not_until) => {
                        proptest::prop_assert!(!ours.allowed);
                        let wait = not_until.wait_time_from(clock.now()).as_nanos() as u64;
                        proptest::prop_assert_eq!(ours.retry_after_secs, Some(secs_ceil(wait).max(1)));
                    }
                }
            }
        }
    }

    #[test]
    fn idle_buckets_are_evicted_and_used_ones_kept() {
        let limits = Limits::new(3);
        limits.check(1, Plan { per_minute: 1, burst: 1 });
        assert_eq!(limits.tracked_keys(), 1);
        std::thread::sleep(Duration::from_millis(30));
        limits.check(1, Plan { per_minute: 1, burst: 1 });
        assert_eq!(limits.evict_idle(Duration::from_millis(20)), 1, "used within the window: kept");
        assert_eq!(limits.evict_idle(Duration::ZERO), 0);
    }

    #[test]
    fn a_sweep_gives_back_the_room_of_emptied_maps() {
        let limits = Limits::new(3);
        let plan = Plan { per_minute: 60, burst: 5 };
        for k in 0..50_000 {
            limits.check(k, plan);
        }
        assert_eq!(limits.tracked_keys(), 50_000);
        let capacity = || limits.shards.iter().map(|s| read(&s.0).capacity()).sum::<usize>();
        let before = capacity();
        assert_eq!(limits.evict_idle(Duration::ZERO), 0);
        assert!(capacity() * 10 < before, "{} of {before} slots kept", capacity());
        assert!(limits.check(1, plan).allowed, "an evicted key starts afresh");
    }
}
