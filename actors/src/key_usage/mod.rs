//! The key-usage recorder: keeps the latest use time of every API key seen since the last
//! flush and writes them in one batch every `flush_every`.
//!
//! The request path only pushes a note onto a bounded lock-free queue, which the actor
//! drains every few milliseconds: authentication never waits for a write, and a note does
//! not wake the actor's thread (a mailbox message did, a system call per request). When the
//! queue is full a note is dropped: `last_used_at` is approximate by nature, and the key's
//! next use notes it again. A failed write keeps the batch for the next flush; a restart of
//! the actor by its supervisor keeps the pending map (the actor value survives restarts).

mod handlers;

use crate::ports::{KeyLastUsed, KeyUsageSink};
use actix::prelude::*;
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

pub use handlers::{Flush, KeyUsed};

/// The actor. Create it with [`KeyUsageRecorder::start`], talk to it through [`KeyUsage`].
pub struct KeyUsageRecorder {
    pending: HashMap<u64, DateTime<Utc>>,
    sink: Arc<dyn KeyUsageSink>,
    flush_every: Duration,
    notes: crossbeam_channel::Receiver<(u64, DateTime<Utc>)>,
    /// Failed flushes (a store outage fails each one): logged once, then a reminder a minute.
    failing: hissaback_topics::lograte::LogRate,
}

/// Notes the queue holds between drains.
pub const QUEUE_CAPACITY: usize = 100_000;

/// How often the actor drains the queue.
pub const DRAIN_EVERY: Duration = Duration::from_millis(20);

impl KeyUsageRecorder {
    pub fn new(sink: Arc<dyn KeyUsageSink>, flush_every: Duration, notes: crossbeam_channel::Receiver<(u64, DateTime<Utc>)>) -> Self {
        let failing = hissaback_topics::lograte::LogRate::new("key-usage recorder: writing last_used_at (will retry)").warn();
        Self { pending: HashMap::new(), sink, flush_every, notes, failing }
    }

    /// Starts the recorder under a supervisor on the current arbiter and returns its facade.
    pub fn start(sink: Arc<dyn KeyUsageSink>, flush_every: Duration) -> KeyUsage {
        let (tx, rx) = crossbeam_channel::bounded(QUEUE_CAPACITY);
        let addr = Supervisor::start(move |_| KeyUsageRecorder::new(sink, flush_every, rx));
        KeyUsage { addr, notes: tx }
    }

    /// Takes every note waiting in the queue.
    pub fn drain(&mut self) {
        while let Ok((key_id, at)) = self.notes.try_recv() {
            self.note(key_id, at);
        }
    }

    /// Notes one use; keeps the latest time per key.
    pub fn note(&mut self, key_id: u64, at: DateTime<Utc>) {
        let slot = self.pending.entry(key_id).or_insert(at);
        if at > *slot {
            *slot = at;
        }
    }

    /// Takes everything pending as a batch, sorted by key for deterministic writes.
    pub fn take_batch(&mut self) -> Vec<KeyLastUsed> {
        let mut batch: Vec<_> = self
            .pending
            .drain()
            .map(|(key_id, at)| KeyLastUsed { key_id, at })
            .collect();
        batch.sort_by_key(|u| u.key_id);
        batch
    }

    /// Puts a batch that could not be written back, without losing newer observations.
    pub fn restore(&mut self, batch: Vec<KeyLastUsed>) {
        for u in batch {
            self.note(u.key_id, u.at);
        }
    }

    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }
}

impl Actor for KeyUsageRecorder {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(DRAIN_EVERY, |act, _ctx| act.drain());
        ctx.run_interval(self.flush_every, |act, ctx| {
            act.drain();
            if act.pending_len() > 0 {
                // `wait` serialises flushes: an older batch never lands after a newer one.
                ctx.wait(act.flush_future().map(|_, _, _| ()));
            }
        });
    }
}

impl Supervised for KeyUsageRecorder {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        tracing::warn!(pending = self.pending.len(), "key-usage recorder restarting");
    }
}

impl KeyUsageRecorder {
    fn flush_future(&mut self) -> ResponseActFuture<Self, Result<usize, String>> {
        let batch = self.take_batch();
        let sink = self.sink.clone();
        Box::pin(
            async move {
                let result = if batch.is_empty() { Ok(()) } else { sink.record_last_used(&batch).await };
                (batch, result)
            }
            .into_actor(self)
            .map(|(batch, result), act, _ctx| match result {
                Ok(()) => {
                    act.failing.success();
                    Ok(batch.len())
                }
                Err(err) => {
                    tracing::debug!(error = %err, keys = batch.len(), "writing last_used_at failed; will retry");
                    act.failing.failure(&err);
                    act.restore(batch);
                    Err(err.to_string())
                }
            }),
        )
    }
}

/// The facade the rest of the service uses.
#[derive(Clone)]
pub struct KeyUsage {
    addr: Addr<KeyUsageRecorder>,
    notes: crossbeam_channel::Sender<(u64, DateTime<Utc>)>,
}

impl KeyUsage {
    /// Fire-and-forget: note that `key_id` was used now (one bounded queue push).
    pub fn used(&self, key_id: u64) {
        let _ = self.notes.try_send((key_id, Utc::now()));
    }

    /// Writes everything pending now and waits for it (shutdown, tests).
    pub async fn flush(&self) -> Result<usize, String> {
        self.addr.send(Flush).await.map_err(|e| e.to_string())?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use std::sync::Mutex;

    #[derive(Default)]
    struct MemorySink {
        written: Mutex<Vec<KeyLastUsed>>,
        fail: Mutex<bool>,
    }

    #[async_trait]
    impl KeyUsageSink for MemorySink {
        async fn record_last_used(&self, batch: &[KeyLastUsed]) -> anyhow::Result<()> {
            if *self.fail.lock().unwrap() {
                anyhow::bail!("store down");
            }
            self.written.lock().unwrap().extend_from_slice(batch);
            Ok(())
        }
    }

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap()
    }

    #[test]
    fn keeps_the_latest_time_per_key() {
        let mut r = KeyUsageRecorder::new(Arc::new(MemorySink::default()), Duration::from_secs(1), crossbeam_channel::bounded(1).1);
        r.note(7, t(5));
        r.note(7, t(3));
        r.note(2, t(1));
        let batch = r.take_batch();
        assert_eq!(batch, vec![KeyLastUsed { key_id: 2, at: t(1) }, KeyLastUsed { key_id: 7, at: t(5) }]);
        assert_eq!(r.pending_len(), 0);
    }

    #[test]
    fn restore_does_not_overwrite_newer_notes() {
        let mut r = KeyUsageRecorder::new(Arc::new(MemorySink::default()), Duration::from_secs(1), crossbeam_channel::bounded(1).1);
        r.note(1, t(10));
        r.restore(vec![KeyLastUsed { key_id: 1, at: t(4) }, KeyLastUsed { key_id: 3, at: t(4) }]);
        let batch = r.take_batch();
        assert_eq!(batch, vec![KeyLastUsed { key_id: 1, at: t(10) }, KeyLastUsed { key_id: 3, at: t(4) }]);
    }

    #[actix_rt::test]
    async fn flush_writes_one_batch_and_failures_are_retried() {
        let sink = Arc::new(MemorySink::default());
        let usage = KeyUsageRecorder::start(sink.clone(), Duration::from_secs(3600));
        *sink.fail.lock().unwrap() = true;
        usage.used(1);
        usage.used(1);
        usage.used(2);
        assert!(usage.flush().await.is_err());
        assert!(sink.written.lock().unwrap().is_empty());
        *sink.fail.lock().unwrap() = false;
        assert_eq!(usage.flush().await, Ok(2));
        let keys: Vec<_> = sink.written.lock().unwrap().iter().map(|u| u.key_id).collect();
        assert_eq!(keys, vec![1, 2]);
    }

    #[actix_rt::test]
    async fn the_interval_flushes_without_being_asked() {
        let sink = Arc::new(MemorySink::default());
        let usage = KeyUsageRecorder::start(sink.clone(), Duration::from_millis(20));
        usage.used(9);
        for _ in 0..100 {
            if !sink.written.lock().unwrap().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(sink.written.lock().unwrap()[0].key_id, 9);
    }
}
