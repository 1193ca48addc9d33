//! Stream consumers: a supervised actor that reads one topic as one consumer group and
//! hands each decoded event to an [`EventHandler`].
//!
//! - At-least-once: a delivery is committed only after the handler returned `Ok`, i.e.
//!   after its effect is stored; handlers must be idempotent.
//! - A handler error is retried with capped exponential backoff on the same delivery (the
//!   partition waits: skipping would lose an effect).
//! - A message that does not decode can never succeed: it goes to the topic's dead-letter
//!   topic (`<topic>.dead-letter`), is counted, and is committed, so it never blocks the
//!   partition.
//! - A panic in a handler or a bus error stops the actor; its supervisor restarts it, it
//!   subscribes again and resumes at the last committed offset. Restarts are counted.

mod handlers;

use crate::metrics::ConsumerMetrics;
use actix::prelude::*;
use async_trait::async_trait;
use futures_util::FutureExt;
use hissaback_topics::bus::{BusError, Delivery, SharedBus};
use hissaback_topics::{decode, Event};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

pub use handlers::Stop;

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

/// How often a busy consumer reports its lag (`hissaback_consumer_lag`).
const LAG_EVERY: Duration = Duration::from_secs(1);
/// How often an idle consumer does.
const IDLE_LAG_EVERY: Duration = Duration::from_secs(5);

async fn report_lag(sub: &mut dyn hissaback_topics::bus::Subscription, metrics: &ConsumerMetrics, labels: &[&str; 2]) {
    match sub.lag().await {
        Ok(Some(lag)) => metrics.lag.with_label_values(labels).set(i64::try_from(lag).unwrap_or(i64::MAX)),
        Ok(None) => {}
        Err(e) => tracing::debug!(error = %e, "consumer lag unknown"),
    }
}

/// The consumer actor for handler `H`.
pub struct ConsumerActor<H: EventHandler> {
    name: &'static str,
    bus: SharedBus,
    group: String,
    handler: Arc<H>,
    metrics: ConsumerMetrics,
    backoff: Backoff,
    restarts: u32,
}

impl<H: EventHandler> ConsumerActor<H> {
    pub fn new(name: &'static str, bus: SharedBus, group: impl Into<String>, handler: Arc<H>, metrics: ConsumerMetrics) -> Self {
        let group = group.into();
        // The consumer's series exist from the start (a zero, not no data).
        let labels = [H::Event::TOPIC.as_str(), group.as_str()];
        metrics.consumed.with_label_values(&labels);
        metrics.dead_letters.with_label_values(&labels);
        metrics.handler_errors.with_label_values(&labels);
        metrics.restarts.with_label_values(&[name]);
        metrics.lag.with_label_values(&labels);
        Self { name, bus, group, handler, metrics, backoff: Backoff::default(), restarts: 0 }
    }

    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Starts the consumer under a supervisor on the current arbiter. Keep the address: the
    /// supervisor restarts the actor only while an address to it is alive.
    pub fn start_supervised(self) -> Addr<Self> {
        Supervisor::start(move |_| self)
    }

    fn run(&self) -> impl std::future::Future<Output = Result<(), ConsumerError>> + 'static {
        let (bus, group, handler, metrics, backoff, name) =
            (self.bus.clone(), self.group.clone(), self.handler.clone(), self.metrics.clone(), self.backoff, self.name);
        async move {
            let topic = H::Event::TOPIC;
            let mut sub = bus.subscribe(topic.as_str(), &group).await?;
            tracing::info!(consumer = name, topic = %topic, group = %group, "consumer subscribed");
            let labels = [topic.as_str(), group.as_str()];
            let mut lag_reported = tokio::time::Instant::now();
            loop {
                // While idle, the lag is reported every IDLE_LAG_EVERY; `next` is cancel-safe
                // on every backend (nothing is taken from the log until it is returned), and
                // the tick is long enough that a slow fetch is not abandoned over and over.
                let delivery = loop {
                    match tokio::time::timeout(IDLE_LAG_EVERY, sub.next()).await {
                        Ok(d) => break d?,
                        Err(_) => {
                            report_lag(sub.as_mut(), &metrics, &labels).await;
                            lag_reported = tokio::time::Instant::now();
                        }
                    }
                };
                match decode::<H::Event>(&delivery.payload) {
                    Err(e) => {
                        tracing::error!(consumer = name, topic = %topic, partition = delivery.partition, offset = delivery.offset, error = %e, "undecodable message sent to the dead-letter topic");
                        bus.publish(&topic.dead_letter(), &delivery.key, delivery.payload.clone()).await?;
                        metrics.dead_letters.with_label_values(&labels).inc();
                    }
                    Ok(event) => {
                        let mut attempt = 0u32;
                        let mut event = Some(event);
                        loop {
                            // The event is cloned only when a retry may need it again.
                            let this = if attempt == 0 { event.take() } else { None };
                            let ev = match this {
                                Some(ev) => ev,
                                None => decode::<H::Event>(&delivery.payload).map_err(BusError::from)?,
                            };
                            let outcome = AssertUnwindSafe(handler.handle(ev, &delivery)).catch_unwind().await;
                            match outcome {
                                Ok(Ok(())) => break,
                                Ok(Err(e)) => {
                                    attempt += 1;
                                    // A stuck partition is when the lag matters most.
                                    if lag_reported.elapsed() >= LAG_EVERY {
                                        report_lag(sub.as_mut(), &metrics, &labels).await;
                                        lag_reported = tokio::time::Instant::now();
                                    }
                                    metrics.handler_errors.with_label_values(&labels).inc();
                                    let delay = backoff.delay(attempt);
                                    tracing::warn!(consumer = name, topic = %topic, attempt, error = %e, ?delay, "handler failed; retrying");
                                    tokio::time::sleep(delay).await;
                                }
                                Err(_) => return Err(ConsumerError::Panicked),
                            }
                        }
                        metrics.consumed.with_label_values(&labels).inc();
                    }
                }
                sub.commit(&delivery).await?;
                if lag_reported.elapsed() >= LAG_EVERY {
                    report_lag(sub.as_mut(), &metrics, &labels).await;
                    lag_reported = tokio::time::Instant::now();
                }
            }
        }
    }
}

impl<H: EventHandler> Actor for ConsumerActor<H> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // After a restart, wait a little so a broker outage is not a tight loop.
        let pause = if self.restarts == 0 { Duration::ZERO } else { self.backoff.delay(self.restarts.min(8)) };
        let run = self.run();
        let fut = async move {
            tokio::time::sleep(pause).await;
            run.await
        };
        ctx.spawn(fut.into_actor(self).map(|result, act, ctx| {
            if let Err(e) = result {
                tracing::error!(consumer = act.name, error = %e, "consumer stopped; restarting from the last committed offset");
            }
            ctx.stop();
        }));
    }
}

impl<H: EventHandler> Supervised for ConsumerActor<H> {
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
