//! Stream consumers: a supervised actor that reads one topic as one consumer group, in
//! batches, and hands each partition's share of a batch to a [`BatchHandler`]
//! ([`OneByOne`] runs a plain [`EventHandler`] as one).
//!
//! # Batches
//!
//! A consumer takes what is ready, up to `batch_max` messages (waiting at most `linger` for
//! more once the first arrived), and commits once per batch: a round trip to the broker or
//! the disk per message is what makes a stream processor slow, and a handler that sees many
//! events at once can write their effects in one store call too.
//!
//! # Order: partitions in parallel, each in order
//!
//! Order is promised per key, and a key always lands on the same partition. So a batch is
//! split by partition and the partitions' slices run concurrently, each slice in offset
//! order; the next batch is read only once the whole batch is committed, so one partition's
//! events are never applied out of order nor two at a time.
//!
//! # At least once
//!
//! The batch is committed (one `commit_batch`) only after every slice returned `Ok`, i.e.
//! after its effects are stored. A bus error, a panic or a crash before that means the whole
//! batch is delivered again and applied again: handlers must be idempotent.
//!
//! # Failures and parking
//!
//! - A message that does not decode can never succeed: it is parked at once on the topic's
//!   dead-letter twin (`<topic>.dead-letter`, a [`DeadLetter`] envelope) and counted.
//! - A failing slice is retried with capped exponential backoff, up to `max_attempts`. If it
//!   still fails, its events are handled one at a time, each with its own attempts, so that
//!   only the event that keeps failing on its own is parked (with its error) and the
//!   partition moves on: the events before it are applied, the ones after it too, in order.
//!   Skipping an event is a loss until it is replayed (`hissaback dead-letters replay`), so
//!   parking is held back where the failure is not the event's fault:
//!   - an error that says a dependency is unreachable ([`BusError::Unavailable`] in its
//!     chain, or what [`ConsumerActor::with_transient`] recognises) is retried until it
//!     passes, never parked;
//!   - after `max_dead_letters_in_a_row` events parked with no success in between, the
//!     consumer stops parking and retries: many events failing one after the other is an
//!     outage, not poison, and parking them all would reorder their keys' events. It parks
//!     again as soon as any event of the consumer succeeds.
//! - A panic in a handler, or a bus error, stops the actor; its supervisor restarts it, it
//!   subscribes again and resumes at the last committed offset. Restarts are counted.
//! - A consumer that cannot get past a batch is reported by [`ConsumerHealth`] (`/readyz`
//!   answers 503) and by `hissaback_consumer_stuck_seconds`.

mod dead_letter;
mod handlers;
mod health;

use crate::metrics::ConsumerMetrics;
use actix::prelude::*;
use async_trait::async_trait;
use futures_util::FutureExt;
use hissaback_topics::bus::{BusError, Delivery, SharedBus, Subscription};
use hissaback_topics::lograte::LogRate;
use hissaback_topics::{decode_event, CodecError, Event, Topic};
use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub use dead_letter::{DeadLetter, DeadLetterReason, REPLAY_GROUP};
pub use handlers::Stop;
pub use health::{ConsumerHealth, ConsumerProbe, ConsumerStatus};

/// What a consumer does with each event.
#[async_trait]
pub trait EventHandler: Send + Sync + 'static {
    type Event: Event;
    /// Applies the event; `Ok` means its effect is stored and the delivery may be committed.
    async fn handle(&self, event: Self::Event, delivery: &Delivery) -> anyhow::Result<()>;
}

/// What a batch consumer does with the events of one partition (the consumer splits each
/// batch it reads by partition and runs the partitions concurrently, each in offset order).
#[async_trait]
pub trait BatchHandler: Send + Sync + 'static {
    type Event: Event;
    /// Applies the events of one partition, in offset order. `Ok` means every effect is
    /// stored and the batch may be committed; an error retries the whole slice (effects
    /// must be idempotent under redelivery).
    async fn handle_batch(&self, batch: Vec<(Self::Event, Delivery)>) -> anyhow::Result<()>;
}

/// Runs an [`EventHandler`] as a [`BatchHandler`]: one event after the other.
pub struct OneByOne<H>(pub Arc<H>);

#[async_trait]
impl<H: EventHandler> BatchHandler for OneByOne<H> {
    type Event = H::Event;
    async fn handle_batch(&self, batch: Vec<(Self::Event, Delivery)>) -> anyhow::Result<()> {
        for (event, delivery) in batch {
            self.0.handle(event, &delivery).await?;
        }
        Ok(())
    }
}

/// Why a consumer loop ended (the supervisor then restarts it).
#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    #[error("bus: {0}")]
    Bus(#[from] BusError),
    #[error("handler panicked")]
    Panicked,
}

impl From<CodecError> for ConsumerError {
    fn from(e: CodecError) -> Self {
        ConsumerError::Bus(e.into())
    }
}

/// Retry pacing for handler errors.
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { first: Duration::from_millis(100), max: Duration::from_secs(30) }
    }
}

impl Backoff {
    /// Delay before retry number `attempt` (1-based): doubling from `first`, capped at `max`.
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(20));
        self.first.saturating_mul(factor).min(self.max)
    }
}

/// How a consumer reads, retries and parks (the service fills it from `[events]`).
#[derive(Clone, Copy, Debug)]
pub struct ConsumerOptions {
    /// Most messages in one batch.
    pub batch_max: usize,
    /// How long a batch waits for more messages once the first one arrived.
    pub linger: Duration,
    /// Pacing of handler retries (and of restarts after a crash).
    pub backoff: Backoff,
    /// Attempts on a failing slice, then on each of its events alone, before the event that
    /// keeps failing is parked (at least 1).
    pub max_attempts: u32,
    /// Events parked in a row, with no success in between, after which the consumer retries
    /// instead of parking (0: handler failures never park an event).
    pub max_dead_letters_in_a_row: u32,
}

impl Default for ConsumerOptions {
    fn default() -> Self {
        Self { batch_max: 500, linger: Duration::from_millis(5), backoff: Backoff::default(), max_attempts: 5, max_dead_letters_in_a_row: 1 }
    }
}

/// How often a busy consumer reports its lag (`hissaback_consumer_lag`) and how long its
/// batch has been in progress (`hissaback_consumer_stuck_seconds`).
const LAG_EVERY: Duration = Duration::from_secs(1);
/// How often an idle consumer reports its lag.
const IDLE_LAG_EVERY: Duration = Duration::from_secs(5);

/// Reports the lag; true when the bus answered (the lag is known).
async fn report_lag(sub: &mut dyn Subscription, metrics: &ConsumerMetrics, labels: &[&str; 2]) -> bool {
    match sub.lag().await {
        Ok(Some(lag)) => {
            metrics.lag.with_label_values(labels).set(i64::try_from(lag).unwrap_or(i64::MAX));
            true
        }
        Ok(None) => false,
        Err(e) => {
            tracing::debug!(error = %e, "consumer lag unknown");
            false
        }
    }
}

/// Whether `error` says that something the handler needs is unreachable (never parked).
fn bus_unavailable(error: &anyhow::Error) -> bool {
    error.chain().any(|c| matches!(c.downcast_ref::<BusError>(), Some(BusError::Unavailable(_))))
}

/// The consumer actor for handler `H`.
pub struct ConsumerActor<H: BatchHandler> {
    name: &'static str,
    bus: SharedBus,
    group: String,
    handler: Arc<H>,
    metrics: ConsumerMetrics,
    options: ConsumerOptions,
    transient: fn(&anyhow::Error) -> bool,
    probe: Arc<ConsumerProbe>,
    /// Kept across restarts, like the probe: both describe the consumer, not one run.
    parked_in_a_row: Arc<AtomicU32>,
    /// Runs that ended in an error (a bus outage restarts the consumer over and over): the
    /// first logged, then a reminder a minute, and `recovered` once the bus answers again.
    stopped: Arc<LogRate>,
    /// Handler failures (retried), likewise: one line per outage, not one per attempt.
    handler_failing: Arc<LogRate>,
    restarts: u32,
}

impl<H: BatchHandler> ConsumerActor<H> {
    pub fn new(name: &'static str, bus: SharedBus, group: impl Into<String>, handler: Arc<H>, metrics: ConsumerMetrics) -> Self {
        let group = group.into();
        let topic = H::Event::TOPIC.as_str();
        // The consumer's series exist from the start (a zero, not no data).
        let labels = [topic, group.as_str()];
        metrics.consumed.with_label_values(&labels);
        for reason in [DeadLetterReason::Undecodable, DeadLetterReason::HandlerFailed] {
            metrics.dead_letters.with_label_values(&[topic, group.as_str(), reason.as_str()]);
        }
        metrics.handler_errors.with_label_values(&labels);
        metrics.restarts.with_label_values(&[name]);
        metrics.lag.with_label_values(&labels);
        metrics.stuck_seconds.with_label_values(&labels);
        // Reported to a registry of its own until `with_health` names the shared one.
        let probe = Arc::new(ConsumerHealth::new().register(name, topic, &group));
        Self {
            name,
            bus,
            group,
            handler,
            metrics,
            options: ConsumerOptions::default(),
            transient: |_| false,
            probe,
            parked_in_a_row: Arc::new(AtomicU32::new(0)),
            stopped: Arc::new(LogRate::new(format!("consumer {name}: stopped, restarting from the last committed offset"))),
            handler_failing: Arc::new(LogRate::new(format!("consumer {name}: handler failed, retrying")).warn()),
            restarts: 0,
        }
    }

    pub fn with_options(mut self, options: ConsumerOptions) -> Self {
        self.options = options;
        self
    }

    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.options.backoff = backoff;
        self
    }

    /// Reports this consumer's batches to `health` (read by `/readyz`).
    pub fn with_health(mut self, health: ConsumerHealth) -> Self {
        self.probe = Arc::new(health.register(self.name, H::Event::TOPIC.as_str(), &self.group));
        self
    }

    /// Handler errors that `transient` recognises (a store that cannot be reached, say) are
    /// retried until they pass and never park an event, like an unreachable bus.
    pub fn with_transient(mut self, transient: fn(&anyhow::Error) -> bool) -> Self {
        self.transient = transient;
        self
    }

    /// Starts the consumer under a supervisor on the current arbiter. Keep the address: the
    /// supervisor restarts the actor only while an address to it is alive.
    pub fn start_supervised(self) -> Addr<Self> {
        Supervisor::start(move |_| self)
    }

    fn run(&self) -> impl std::future::Future<Output = Result<(), ConsumerError>> + 'static {
        let worker = Arc::new(Worker {
            name: self.name,
            topic: H::Event::TOPIC,
            group: self.group.clone(),
            bus: self.bus.clone(),
            handler: self.handler.clone(),
            metrics: self.metrics.clone(),
            options: self.options,
            transient: self.transient,
            probe: self.probe.clone(),
            parked_in_a_row: self.parked_in_a_row.clone(),
            stopped: self.stopped.clone(),
            handler_failing: self.handler_failing.clone(),
        });
        async move { worker.run().await }
    }
}

impl<E: EventHandler> ConsumerActor<OneByOne<E>> {
    /// A consumer for a handler of single events (run one after the other within each
    /// partition's slice of a batch).
    pub fn one_by_one(name: &'static str, bus: SharedBus, group: impl Into<String>, handler: Arc<E>, metrics: ConsumerMetrics) -> Self {
        Self::new(name, bus, group, Arc::new(OneByOne(handler)), metrics)
    }
}

/// What one partition's slice came to.
#[derive(Default)]
struct SliceOutcome {
    applied: u64,
    parked: u64,
}

/// The outcome of attempting a slice (or a single event) until it passed or attempts ran out.
enum Tried {
    Applied,
    GaveUp { error: anyhow::Error, attempts: u32 },
}

/// One run of a consumer (from subscribing to the error that ends it), shared by the
/// futures of the partitions of a batch.
struct Worker<H: BatchHandler> {
    name: &'static str,
    topic: Topic,
    group: String,
    bus: SharedBus,
    handler: Arc<H>,
    metrics: ConsumerMetrics,
    options: ConsumerOptions,
    transient: fn(&anyhow::Error) -> bool,
    probe: Arc<ConsumerProbe>,
    parked_in_a_row: Arc<AtomicU32>,
    stopped: Arc<LogRate>,
    handler_failing: Arc<LogRate>,
}

impl<H: BatchHandler> Worker<H> {
    fn labels(&self) -> [&str; 2] {
        [self.topic.as_str(), self.group.as_str()]
    }

    async fn run(self: Arc<Self>) -> Result<(), ConsumerError> {
        let topic = self.topic;
        let mut sub = self.bus.subscribe(topic.as_str(), &self.group).await?;
        tracing::info!(consumer = self.name, topic = %topic, group = %self.group, "consumer subscribed");
        let labels = self.labels();
        let stuck_gauge = self.metrics.stuck_seconds.with_label_values(&labels);
        let mut lag_reported = tokio::time::Instant::now();
        loop {
            // While idle, the lag is reported every IDLE_LAG_EVERY; `next_batch` is
            // cancel-safe (nothing is taken from the log until it returns), and the tick is
            // long enough that a slow fetch is not abandoned over and over.
            let batch = loop {
                match tokio::time::timeout(IDLE_LAG_EVERY, sub.next_batch(self.options.batch_max, self.options.linger)).await {
                    Ok(batch) => break batch?,
                    Err(_) => {
                        if report_lag(sub.as_mut(), &self.metrics, &labels).await {
                            // The bus answers: a run of restarts (an outage) is over.
                            self.stopped.success();
                        }
                        lag_reported = tokio::time::Instant::now();
                    }
                }
            };
            if batch.is_empty() {
                continue;
            }
            self.probe.batch_started();
            let (marks, slices, undecodable) = self.split(batch);
            if !undecodable.is_empty() {
                self.park_undecodable(undecodable).await?;
            }
            // The partitions run concurrently; a panic or a bus error in one ends the run (and
            // drops the others) without a commit.
            let work = futures_util::future::try_join_all(slices.into_values().map(|slice| {
                let worker = self.clone();
                async move { AssertUnwindSafe(worker.partition(slice)).catch_unwind().await.unwrap_or(Err(ConsumerError::Panicked)) }
            }));
            let mut work = std::pin::pin!(work);
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + LAG_EVERY, LAG_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let outcomes = loop {
                tokio::select! {
                    outcomes = &mut work => break outcomes?,
                    _ = tick.tick() => {
                        // A batch that takes long is when the lag and its age matter most.
                        report_lag(sub.as_mut(), &self.metrics, &labels).await;
                        lag_reported = tokio::time::Instant::now();
                        stuck_gauge.set(self.probe.busy_for().unwrap_or_default().as_secs_f64());
                    }
                }
            };
            sub.commit_batch(&marks).await?;
            self.stopped.success();
            self.probe.idle();
            stuck_gauge.set(0.0);
            let applied: u64 = outcomes.iter().map(|o| o.applied).sum();
            self.metrics.consumed.with_label_values(&labels).inc_by(applied);
            if lag_reported.elapsed() >= LAG_EVERY {
                report_lag(sub.as_mut(), &self.metrics, &labels).await;
                lag_reported = tokio::time::Instant::now();
            }
        }
    }

    /// Splits a batch into what to commit (the last delivery of each partition, without its
    /// payload), each partition's decoded events in offset order, and what does not decode.
    #[allow(clippy::type_complexity)]
    fn split(&self, batch: Vec<Delivery>) -> (Vec<Delivery>, BTreeMap<i32, Vec<(H::Event, Delivery)>>, Vec<(Delivery, CodecError)>) {
        let mut marks: BTreeMap<i32, Delivery> = BTreeMap::new();
        let mut slices: BTreeMap<i32, Vec<(H::Event, Delivery)>> = BTreeMap::new();
        let mut undecodable = Vec::new();
        for d in batch {
            let mark = marks.entry(d.partition).or_insert_with(|| Delivery { payload: Vec::new(), ..d.clone() });
            if d.offset > mark.offset {
                *mark = Delivery { payload: Vec::new(), ..d.clone() };
            }
            match decode_event::<H::Event>(&d.payload) {
                Ok(event) => slices.entry(d.partition).or_default().push((event, d)),
                Err(e) => undecodable.push((d, e)),
            }
        }
        (marks.into_values().collect(), slices, undecodable)
    }

    async fn park_undecodable(&self, undecodable: Vec<(Delivery, CodecError)>) -> Result<(), ConsumerError> {
        let mut messages = Vec::with_capacity(undecodable.len());
        for (d, e) in undecodable {
            tracing::error!(consumer = self.name, topic = %self.topic, partition = d.partition, offset = d.offset, error = %e, "undecodable message parked on the dead-letter topic");
            messages.push(DeadLetter::new(d, &self.group, DeadLetterReason::Undecodable, &e.to_string(), 0).to_message()?);
        }
        let n = messages.len() as u64;
        self.bus.publish_batch(&self.topic.dead_letter(), messages).await?;
        self.dead_letters(DeadLetterReason::Undecodable).inc_by(n);
        Ok(())
    }

    fn dead_letters(&self, reason: DeadLetterReason) -> prometheus::IntCounter {
        self.metrics.dead_letters.with_label_values(&[self.topic.as_str(), self.group.as_str(), reason.as_str()])
    }

    /// Handles one partition's slice: whole, and when it keeps failing, one event at a time.
    async fn partition(&self, slice: Vec<(H::Event, Delivery)>) -> Result<SliceOutcome, ConsumerError> {
        // Kept to rebuild the slice for each retry (events are decoded again from them).
        let deliveries: Vec<Delivery> = slice.iter().map(|(_, d)| d.clone()).collect();
        let (error, attempts) = match self.attempt(&deliveries, Some(slice)).await? {
            Tried::Applied => return Ok(SliceOutcome { applied: deliveries.len() as u64, parked: 0 }),
            Tried::GaveUp { error, attempts } => (error, attempts),
        };
        let mut outcome = SliceOutcome::default();
        if deliveries.len() == 1 {
            // The slice was this event alone: its attempts are spent.
            let d = deliveries.into_iter().next().expect("one delivery");
            self.park_or_insist(d, error, attempts, &mut outcome).await?;
            return Ok(outcome);
        }
        let first = &deliveries[0];
        tracing::warn!(consumer = self.name, topic = %self.topic, partition = first.partition, from_offset = first.offset, events = deliveries.len(), error = %format!("{error:#}"), "slice keeps failing; handling its events one at a time");
        for d in deliveries {
            match self.attempt(std::slice::from_ref(&d), None).await? {
                Tried::Applied => outcome.applied += 1,
                Tried::GaveUp { error, attempts } => self.park_or_insist(d, error, attempts, &mut outcome).await?,
            }
        }
        Ok(outcome)
    }

    /// The events of `deliveries` decoded again (they decoded once already).
    fn decode_again(deliveries: &[Delivery]) -> Result<Vec<(H::Event, Delivery)>, ConsumerError> {
        deliveries.iter().map(|d| Ok((decode_event::<H::Event>(&d.payload)?, d.clone()))).collect()
    }

    /// Hands `deliveries` to the handler until it succeeds or `max_attempts` failed (an error
    /// that says a dependency is unreachable is retried until it passes).
    async fn attempt(&self, deliveries: &[Delivery], decoded: Option<Vec<(H::Event, Delivery)>>) -> Result<Tried, ConsumerError> {
        let mut decoded = decoded;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let batch = match decoded.take() {
                Some(batch) => batch,
                None => Self::decode_again(deliveries)?,
            };
            match self.handler.handle_batch(batch).await {
                Ok(()) => {
                    self.parked_in_a_row.store(0, Ordering::SeqCst);
                    self.handler_failing.success();
                    return Ok(Tried::Applied);
                }
                Err(error) => {
                    self.failed(&error);
                    let transient = bus_unavailable(&error) || (self.transient)(&error);
                    if attempt >= self.options.max_attempts.max(1) && !transient {
                        return Ok(Tried::GaveUp { error, attempts: attempt });
                    }
                    let delay = self.options.backoff.delay(attempt);
                    let text = format!("{error:#}");
                    tracing::debug!(consumer = self.name, topic = %self.topic, partition = deliveries[0].partition, from_offset = deliveries[0].offset, events = deliveries.len(), attempt, transient, error = %text, ?delay, "handler failed; retrying");
                    self.handler_failing.failure(&text);
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    fn failed(&self, error: &anyhow::Error) {
        self.metrics.handler_errors.with_label_values(&self.labels()).inc();
        self.probe.failed(error);
    }

    /// Whether one more event may be parked now (and counts it when so).
    fn may_park(&self) -> bool {
        let limit = self.options.max_dead_letters_in_a_row;
        self.parked_in_a_row.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| (n < limit).then_some(n + 1)).is_ok()
    }

    /// Parks an event that failed every attempt on its own; while parking is held back (too
    /// many in a row), keeps retrying it, and parks it once parking is allowed again.
    async fn park_or_insist(&self, d: Delivery, error: anyhow::Error, attempts: u32, outcome: &mut SliceOutcome) -> Result<(), ConsumerError> {
        let (mut error, mut attempts) = (error, attempts);
        let mut warned = false;
        loop {
            if self.may_park() {
                let text = format!("{error:#}");
                tracing::error!(consumer = self.name, topic = %self.topic, group = %self.group, partition = d.partition, offset = d.offset, key = %d.key, attempts, error = %text, "event failed every attempt; parked on the dead-letter topic");
                let (key, bytes) = DeadLetter::new(d, &self.group, DeadLetterReason::HandlerFailed, &text, attempts).to_message()?;
                self.bus.publish(&self.topic.dead_letter(), &key, bytes).await?;
                self.dead_letters(DeadLetterReason::HandlerFailed).inc();
                outcome.parked += 1;
                return Ok(());
            }
            if !warned {
                warned = true;
                tracing::error!(consumer = self.name, topic = %self.topic, partition = d.partition, offset = d.offset, error = %format!("{error:#}"), "events keep failing one after the other: not parking this one (an outage, not poison?); retrying");
            }
            let delay = self.options.backoff.delay(attempts);
            tokio::time::sleep(delay).await;
            attempts = attempts.saturating_add(1);
            match self.handler.handle_batch(Self::decode_again(std::slice::from_ref(&d))?).await {
                Ok(()) => {
                    self.parked_in_a_row.store(0, Ordering::SeqCst);
                    self.handler_failing.success();
                    outcome.applied += 1;
                    return Ok(());
                }
                Err(e) => {
                    self.failed(&e);
                    error = e;
                }
            }
        }
    }
}

impl<H: BatchHandler> Actor for ConsumerActor<H> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // After a restart, wait a little so a broker outage is not a tight loop.
        let pause = if self.restarts == 0 { Duration::ZERO } else { self.options.backoff.delay(self.restarts.min(8)) };
        let run = self.run();
        let fut = async move {
            tokio::time::sleep(pause).await;
            run.await
        };
        ctx.spawn(fut.into_actor(self).map(|result, act, ctx| {
            if let Err(e) = result {
                tracing::debug!(consumer = act.name, error = %e, "consumer stopped; restarting from the last committed offset");
                act.stopped.failure(&e);
            }
            ctx.stop();
        }));
    }
}

impl<H: BatchHandler> Supervised for ConsumerActor<H> {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        self.restarts += 1;
        self.metrics.restarts.with_label_values(&[self.name]).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::Backoff;
    use std::time::Duration;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let b = Backoff { first: Duration::from_millis(100), max: Duration::from_secs(1) };
        assert_eq!(b.delay(1), Duration::from_millis(100));
        assert_eq!(b.delay(2), Duration::from_millis(200));
        assert_eq!(b.delay(4), Duration::from_millis(800));
        assert_eq!(b.delay(5), Duration::from_secs(1));
        assert_eq!(b.delay(500), Duration::from_secs(1));
    }
}
