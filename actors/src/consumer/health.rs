//! Stuck detection: a registry every consumer reports its batches to, read by `/readyz`.
//!
//! A consumer that cannot get past a batch (its handler keeps failing on an outage, a
//! poison event it may not park, a panic that restarts it on the same batch over and over)
//! does not stop: it retries. Its lag grows, but lag also grows under plain load. What tells
//! the two apart is how long the batch in hand has been in progress, so each consumer notes
//! when its current batch started and when it was committed, and the service answers `/readyz`
//! with 503 while any consumer has been on one batch longer than its threshold. The start is
//! kept across restarts of the actor, so a consumer that crashes on the same batch again and
//! again stays stuck.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug)]
struct Entry {
    name: &'static str,
    topic: &'static str,
    group: String,
    busy_since: Option<Instant>,
    failing_since: Option<Instant>,
    last_error: Option<String>,
}

#[derive(Default)]
struct Inner {
    entries: Mutex<BTreeMap<u64, Entry>>,
    next_id: AtomicU64,
}

/// The shared registry (cheap to clone: every clone is the same registry).
#[derive(Clone, Default)]
pub struct ConsumerHealth {
    inner: Arc<Inner>,
}

/// What one consumer looks like now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumerStatus {
    pub name: &'static str,
    pub topic: &'static str,
    pub group: String,
    /// How long its current batch has been in progress (`None`: waiting for messages).
    pub busy_for: Option<Duration>,
    /// How long its current batch has been failing (`None`: no failure in this batch).
    pub failing_for: Option<Duration>,
    /// The handler's last error on the current batch (for logs and operators, not for
    /// public answers: it may name internals).
    pub last_error: Option<String>,
}

impl ConsumerHealth {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a consumer; it reports through the returned probe.
    pub fn register(&self, name: &'static str, topic: &'static str, group: &str) -> ConsumerProbe {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let entry = Entry { name, topic, group: group.to_string(), busy_since: None, failing_since: None, last_error: None };
        self.lock().insert(id, entry);
        ConsumerProbe { health: self.clone(), id }
    }

    /// Every registered consumer, in registration order.
    pub fn statuses(&self) -> Vec<ConsumerStatus> {
        let now = Instant::now();
        self.lock()
            .values()
            .map(|e| ConsumerStatus {
                name: e.name,
                topic: e.topic,
                group: e.group.clone(),
                busy_for: e.busy_since.map(|t| now.saturating_duration_since(t)),
                failing_for: e.failing_since.map(|t| now.saturating_duration_since(t)),
                last_error: e.last_error.clone(),
            })
            .collect()
    }

    /// The consumers whose current batch has been in progress for longer than `after`.
    pub fn stuck(&self, after: Duration) -> Vec<ConsumerStatus> {
        self.statuses().into_iter().filter(|s| s.busy_for.is_some_and(|d| d > after)).collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Entry>> {
        // The map holds plain values: a panic elsewhere cannot leave it half-changed.
        self.inner.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn update(&self, id: u64, f: impl FnOnce(&mut Entry)) {
        if let Some(e) = self.lock().get_mut(&id) {
            f(e);
        }
    }
}

/// One consumer's handle on the registry.
pub struct ConsumerProbe {
    health: ConsumerHealth,
    id: u64,
}

impl ConsumerProbe {
    /// A batch is in hand. An earlier start that was never finished (the actor restarted on
    /// the same batch) is kept.
    pub fn batch_started(&self) {
        self.health.update(self.id, |e| {
            e.busy_since.get_or_insert_with(Instant::now);
        });
    }

    /// The handler failed on the current batch.
    pub fn failed(&self, error: &anyhow::Error) {
        let text = format!("{error:#}");
        self.health.update(self.id, |e| {
            e.failing_since.get_or_insert_with(Instant::now);
            e.last_error = Some(text);
        });
    }

    /// The batch is committed, or the consumer was stopped: nothing in progress.
    pub fn idle(&self) {
        self.health.update(self.id, |e| {
            e.busy_since = None;
            e.failing_since = None;
            e.last_error = None;
        });
    }

    /// How long the current batch has been in progress.
    pub fn busy_for(&self) -> Option<Duration> {
        self.health.lock().get(&self.id).and_then(|e| e.busy_since).map(|t| t.elapsed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_in_progress_longer_than_the_threshold_is_stuck_until_it_is_done() {
        let health = ConsumerHealth::new();
        let ledger = health.register("ledger", "conversions", "ledger");
        let other = health.register("webhook-fanout", "conversions", "webhook-fanout");
        assert!(health.stuck(Duration::ZERO).is_empty());
        ledger.batch_started();
        other.batch_started();
        other.idle();
        ledger.failed(&anyhow::anyhow!("store down"));
        std::thread::sleep(Duration::from_millis(30));
        let stuck = health.stuck(Duration::from_millis(20));
        assert_eq!(stuck.len(), 1);
        assert_eq!((stuck[0].name, stuck[0].topic, stuck[0].group.as_str()), ("ledger", "conversions", "ledger"));
        assert_eq!(stuck[0].last_error.as_deref(), Some("store down"));
        assert!(stuck[0].failing_for.is_some());
        assert!(health.stuck(Duration::from_secs(60)).is_empty());
        // A restart on the same batch keeps the first start.
        let before = ledger.busy_for().unwrap();
        ledger.batch_started();
        assert!(ledger.busy_for().unwrap() >= before);
        ledger.idle();
        assert!(health.stuck(Duration::ZERO).is_empty());
        assert_eq!(health.statuses().len(), 2);
        assert_eq!(ledger.busy_for(), None);
    }
}
