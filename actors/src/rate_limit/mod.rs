//! Rate limits: GCRA buckets from `governor`, one per API key (each key has its own plan:
//! requests per minute and burst), and one per client address for failed authentications.
//!
//! The request path checks a bucket through the shared [`Limits`] handle, without a mailbox
//! round trip; the [`RateLimiter`] actor owns the housekeeping: it evicts buckets of keys
//! and addresses idle for a while, so a million distinct keys do not stay in memory forever.
//!
//! In a cluster every instance limits on its own: give each instance its share of the global
//! quota (plan ÷ instances) or route a key's traffic to one instance (see the README).

use actix::prelude::*;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter as Gcra};
use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

type Bucket = Gcra<NotKeyed, InMemoryState, DefaultClock, StateInformationMiddleware>;

/// A key's plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    pub per_minute: u32,
    pub burst: u32,
}

impl Plan {
    fn quota(self) -> Quota {
        let per_minute = NonZeroU32::new(self.per_minute.max(1)).expect("positive");
        let burst = NonZeroU32::new(self.burst.max(1)).expect("positive");
        Quota::per_minute(per_minute).allow_burst(burst)
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

struct Entry {
    plan: Plan,
    bucket: Arc<Bucket>,
    /// Milliseconds since `Limits::epoch` of the last check, updated under the read lock.
    last_seen_ms: AtomicU64,
}

/// Whose bucket: an API key's, or an affiliate network's postback traffic (its own, far
/// higher plan). Both live in one map, so eviction and metrics treat them alike.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Subject {
    Key(u64),
    Network(u64),
}

/// Buckets shared by the request path and the actor.
pub struct Limits {
    clock: DefaultClock,
    epoch: Instant,
    keys: RwLock<HashMap<Subject, Entry>>,
    failures_per_minute: u32,
    failures: RwLock<HashMap<IpAddr, (Arc<Bucket>, Instant)>>,
    /// Addresses refused until this time after too many failures.
    blocked: RwLock<HashMap<IpAddr, Instant>>,
}

fn secs_ceil(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

impl Limits {
    pub fn new(failures_per_minute: u32) -> Self {
        Self {
            clock: DefaultClock::default(),
            epoch: Instant::now(),
            keys: RwLock::new(HashMap::new()),
            failures_per_minute: failures_per_minute.max(1),
            failures: RwLock::new(HashMap::new()),
            blocked: RwLock::new(HashMap::new()),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn bucket(&self, subject: Subject, plan: Plan) -> Arc<Bucket> {
        let now = self.now_ms();
        if let Some(e) = self.keys.read().unwrap_or_else(|p| p.into_inner()).get(&subject) {
            if e.plan == plan {
                e.last_seen_ms.store(now, Ordering::Relaxed);
                return e.bucket.clone();
            }
        }
        let fresh = || Entry { plan, bucket: Arc::new(Gcra::direct(plan.quota()).with_middleware()), last_seen_ms: AtomicU64::new(now) };
        let mut keys = self.keys.write().unwrap_or_else(|p| p.into_inner());
        let entry = keys.entry(subject).or_insert_with(fresh);
        if entry.plan != plan {
            // A changed plan starts a fresh bucket.
            *entry = fresh();
        }
        entry.last_seen_ms.store(now, Ordering::Relaxed);
        entry.bucket.clone()
    }

    /// Takes one request from the key's bucket.
    pub fn check(&self, key_id: u64, plan: Plan) -> Decision {
        self.check_subject(Subject::Key(key_id), plan)
    }

    /// Takes one postback from the network's bucket.
    pub fn check_network(&self, network_id: u64, plan: Plan) -> Decision {
        self.check_subject(Subject::Network(network_id), plan)
    }

    fn check_subject(&self, subject: Subject, plan: Plan) -> Decision {
        let per_request = 60.0 / f64::from(plan.per_minute.max(1));
        match self.bucket(subject, plan).check() {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                let missing = plan.burst.saturating_sub(remaining);
                Decision { allowed: true, plan, remaining, reset_secs: (f64::from(missing) * per_request).ceil() as u64, retry_after_secs: None }
            }
            Err(not_until) => {
                let wait = secs_ceil(not_until.wait_time_from(self.clock.now())).max(1);
                let reset = (f64::from(plan.burst) * per_request).ceil() as u64;
                Decision { allowed: false, plan, remaining: 0, reset_secs: reset, retry_after_secs: Some(wait) }
            }
        }
    }

    /// Seconds the address must still wait after too many failed authentications.
    pub fn auth_blocked(&self, ip: IpAddr) -> Option<u64> {
        let until = *self.blocked.read().unwrap_or_else(|p| p.into_inner()).get(&ip)?;
        let now = Instant::now();
        (until > now).then(|| secs_ceil(until - now).max(1))
    }

    /// Counts a failed authentication; when the address is over its allowance, it is blocked
    /// and the wait in seconds is returned.
    pub fn auth_failed(&self, ip: IpAddr) -> Option<u64> {
        let bucket = {
            let mut failures = self.failures.write().unwrap_or_else(|p| p.into_inner());
            let quota = Plan { per_minute: self.failures_per_minute, burst: self.failures_per_minute }.quota();
            let e = failures.entry(ip).or_insert_with(|| (Arc::new(Gcra::direct(quota).with_middleware()), Instant::now()));
            e.1 = Instant::now();
            e.0.clone()
        };
        match bucket.check() {
            Ok(_) => None,
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.clock.now()).max(Duration::from_secs(1));
                self.blocked.write().unwrap_or_else(|p| p.into_inner()).insert(ip, Instant::now() + wait);
                Some(secs_ceil(wait))
            }
        }
    }

    /// Drops buckets idle for longer than `idle`; answers how many remain.
    pub fn evict_idle(&self, idle: Duration) -> usize {
        let now = Instant::now();
        let now_ms = self.now_ms();
        let idle_ms = idle.as_millis() as u64;
        let mut keys = self.keys.write().unwrap_or_else(|p| p.into_inner());
        keys.retain(|_, e| now_ms.saturating_sub(e.last_seen_ms.load(Ordering::Relaxed)) < idle_ms);
        self.failures.write().unwrap_or_else(|p| p.into_inner()).retain(|_, (_, seen)| now.duration_since(*seen) < idle);
        self.blocked.write().unwrap_or_else(|p| p.into_inner()).retain(|_, until| *until > now);
        keys.len()
    }

    pub fn tracked_keys(&self) -> usize {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).len()
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
        assert_eq!(limits.auth_blocked(ip), None);
        for _ in 0..3 {
            assert_eq!(limits.auth_failed(ip), None);
        }
        assert!(limits.auth_failed(ip).is_some());
        assert!(limits.auth_blocked(ip).is_some());
        assert_eq!(limits.auth_blocked("203.0.113.8".parse().unwrap()), None);
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
}
