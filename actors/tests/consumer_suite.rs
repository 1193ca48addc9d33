//! The consumer actor against every bus backend (in-memory, embedded file, a real Kafka
//! broker on `HISSABACK_KAFKA_BROKERS`, default 127.0.0.1:9092): batches committed once each,
//! partitions handled concurrently and each in order, undecodable messages and poison events
//! parked on the dead-letter topic while their partition moves on, outages retried rather
//! than parked, stuck consumers reported, and restarts from the last commit re-applying the
//! uncommitted batch.

use actix::Addr;
use async_trait::async_trait;
use hissaback_actors::consumer::{
    Backoff, BatchHandler, ConsumerActor, ConsumerHealth, ConsumerOptions, DeadLetter, DeadLetterReason, EventHandler, Stop,
};
use hissaback_actors::metrics::ConsumerMetrics;
use hissaback_topics::bus::embedded::EmbeddedBus;
use hissaback_topics::bus::kafka::KafkaBus;
use hissaback_topics::bus::{BusError, Delivery, EventBus, SharedBus, Subscription};
use hissaback_topics::events::{ContentChange, ProductChanged};
use hissaback_topics::Topic;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const TOPIC: &str = "product-changes";

/// An idempotent handler that records what it applied and fails or panics on demand.
#[derive(Default)]
struct Recorder {
    /// Applied events, each once (a redelivered event changes nothing): (key, partition,
    /// offset, product id).
    applied: Mutex<Vec<(String, i32, i64, u64)>>,
    /// Handler calls per product id, failed ones included.
    calls: Mutex<HashMap<u64, u32>>,
    fail_first: AtomicU32,
    /// Fails this many calls with an unreachable bus (never parked).
    unreachable_first: AtomicU32,
    /// Every call fails while set (a store outage).
    outage: AtomicBool,
    /// These ids fail every time.
    poison: Mutex<HashSet<u64>>,
    panic_on: Mutex<Option<u64>>,
}

impl Recorder {
    fn ids(&self) -> Vec<u64> {
        self.applied.lock().unwrap().iter().map(|a| a.3).collect()
    }

    fn calls(&self, id: u64) -> u32 {
        self.calls.lock().unwrap().get(&id).copied().unwrap_or(0)
    }

    /// The ids applied for `key`, in the order applied.
    fn ids_of(&self, key: &str) -> Vec<u64> {
        self.applied.lock().unwrap().iter().filter(|a| a.0 == key).map(|a| a.3).collect()
    }

    fn applied(&self, id: u64) -> Option<(String, i32, i64, u64)> {
        self.applied.lock().unwrap().iter().find(|a| a.3 == id).cloned()
    }
}

fn take_one(counter: &AtomicU32) -> bool {
    counter.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok()
}

#[async_trait]
impl EventHandler for Recorder {
    type Event = ProductChanged;

    async fn handle(&self, event: ProductChanged, d: &Delivery) -> anyhow::Result<()> {
        let ContentChange::ProductUpdated { product_id } = event.change else { return Ok(()) };
        *self.calls.lock().unwrap().entry(product_id).or_default() += 1;
        let panic_now = {
            let mut p = self.panic_on.lock().unwrap();
            let hit = *p == Some(product_id);
            if hit {
                *p = None;
            }
            hit
        };
        if panic_now {
            panic!("handler bug on {product_id}");
        }
        if self.outage.load(Ordering::SeqCst) {
            anyhow::bail!("store down");
        }
        if take_one(&self.unreachable_first) {
            return Err(anyhow::Error::new(BusError::Unavailable("broker gone".into())).context("publishing the follow-up"));
        }
        if take_one(&self.fail_first) {
            anyhow::bail!("store down");
        }
        if self.poison.lock().unwrap().contains(&product_id) {
            anyhow::bail!("poison {product_id}");
        }
        let mut applied = self.applied.lock().unwrap();
        if !applied.iter().any(|a| a.3 == product_id) {
            applied.push((d.key.clone(), d.partition, d.offset, product_id));
        }
        Ok(())
    }
}

fn change(product_id: u64) -> ProductChanged {
    ProductChanged { change: ContentChange::ProductUpdated { product_id }, occurred_at_ms: 0 }
}

/// Most tests use one key, so that every event lands in one partition and order is defined
/// on every backend; the product id inside varies.
async fn publish_change(bus: &SharedBus, product_id: u64) {
    publish_keyed(bus, "product:1", product_id).await;
}

async fn publish_keyed(bus: &SharedBus, key: &str, product_id: u64) {
    let payload = hissaback_topics::encode(&change(product_id)).unwrap();
    bus.publish(TOPIC, key, payload).await.unwrap();
}

async fn wait_for(mut check: impl FnMut() -> bool) {
    for _ in 0..6000 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not reached in time");
}

fn fast() -> Backoff {
    Backoff { first: Duration::from_millis(5), max: Duration::from_millis(20) }
}

/// Fast retries; a long linger so that events published before the consumer starts arrive
/// in one batch on every backend.
fn options(max_attempts: u32) -> ConsumerOptions {
    ConsumerOptions { linger: Duration::from_millis(300), backoff: fast(), max_attempts, ..ConsumerOptions::default() }
}

fn dead_letters(metrics: &ConsumerMetrics, reason: DeadLetterReason) -> u64 {
    metrics.dead_letters.with_label_values(&[TOPIC, "g", reason.as_str()]).get()
}

/// The next message of the dead-letter topic, as an envelope.
async fn next_dead_letter(sub: &mut Box<dyn Subscription>) -> DeadLetter {
    let d = tokio::time::timeout(Duration::from_secs(60), sub.next()).await.expect("a dead letter in time").unwrap();
    let parked = DeadLetter::decode(&d.payload).expect("a dead-letter envelope");
    assert_eq!(d.key, parked.key, "dead letters keep their original key");
    parked
}

/// Stops `addr`'s consumer, then shows that group `group` committed everything: a fresh
/// consumer of the group sees only an event published after it started.
async fn everything_was_committed<H: BatchHandler>(bus: &SharedBus, group: &str, addr: Addr<ConsumerActor<H>>) {
    addr.do_send(Stop);
    drop(addr);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let fresh = Arc::new(Recorder::default());
    let _addr = ConsumerActor::one_by_one("fresh", bus.clone(), group, fresh.clone(), ConsumerMetrics::new()).with_backoff(fast()).start_supervised();
    publish_change(bus, 999).await;
    wait_for(|| fresh.ids().contains(&999)).await;
    assert_eq!(fresh.ids(), vec![999], "events applied before the restart were delivered again");
}

async fn undecodable_messages_are_parked_and_do_not_block(bus: SharedBus) {
    let metrics = ConsumerMetrics::new();
    let handler = Arc::new(Recorder::default());
    publish_change(&bus, 1).await;
    // Same key as the good events, so on every backend they share one partition and order.
    bus.publish(TOPIC, "product:1", vec![1, 0xff, 0xff, 0xff]).await.unwrap();
    bus.publish(TOPIC, "product:1", vec![]).await.unwrap();
    publish_change(&bus, 4).await;
    let _addr = ConsumerActor::one_by_one("test", bus.clone(), "g", handler.clone(), metrics.clone()).with_backoff(fast()).start_supervised();
    wait_for(|| handler.ids().len() == 2).await;
    assert_eq!(handler.ids(), vec![1, 4]);
    assert_eq!(dead_letters(&metrics, DeadLetterReason::Undecodable), 2);
    assert_eq!(dead_letters(&metrics, DeadLetterReason::HandlerFailed), 0);
    let mut dlq = bus.subscribe(&Topic::ProductChanges.dead_letter(), "inspect").await.unwrap();
    let first = next_dead_letter(&mut dlq).await;
    assert_eq!((first.topic.as_str(), first.key.as_str(), first.offset), (TOPIC, "product:1", 1));
    assert_eq!(first.payload, vec![1, 0xff, 0xff, 0xff]);
    assert_eq!((first.reason, first.attempts, first.group.as_str()), (DeadLetterReason::Undecodable, 0, "g"));
    assert!(!first.error.is_empty());
    let second = next_dead_letter(&mut dlq).await;
    assert_eq!((second.offset, second.payload.len()), (2, 0));
}

async fn handler_errors_are_retried_on_the_same_delivery(bus: SharedBus) {
    let metrics = ConsumerMetrics::new();
    let handler = Arc::new(Recorder { fail_first: AtomicU32::new(3), ..Default::default() });
    publish_change(&bus, 7).await;
    publish_change(&bus, 8).await;
    let _addr = ConsumerActor::one_by_one("test", bus.clone(), "g", handler.clone(), metrics.clone()).with_backoff(fast()).start_supervised();
    wait_for(|| handler.ids().len() == 2).await;
    assert_eq!(handler.ids(), vec![7, 8]);
    assert_eq!(metrics.handler_errors.with_label_values(&[TOPIC, "g"]).get(), 3);
    assert_eq!(dead_letters(&metrics, DeadLetterReason::HandlerFailed), 0);
}

async fn a_panic_restarts_the_consumer_from_the_last_commit(bus: SharedBus) {
    let metrics = ConsumerMetrics::new();
    let handler = Arc::new(Recorder { panic_on: Mutex::new(Some(2)), ..Default::default() });
    for id in 1..=3 {
        publish_change(&bus, id).await;
    }
    // The supervisor restarts an actor only while someone holds its address.
    let _addr = ConsumerActor::one_by_one("panicky", bus.clone(), "g", handler.clone(), metrics.clone()).with_options(options(5)).start_supervised();
    wait_for(|| handler.ids().len() == 3).await;
    assert_eq!(handler.ids(), vec![1, 2, 3]);
    // The batch was not committed when 2 panicked: 1 was handled again after the restart.
    assert_eq!(handler.calls(1), 2);
    assert_eq!(metrics.restarts.with_label_values(&["panicky"]).get(), 1);
    wait_for(|| metrics.consumed.with_label_values(&[TOPIC, "g"]).get() == 3).await;
}

/// Counts what the consumer asks of its subscription; can fail commits on demand.
#[derive(Default)]
struct Counts {
    batches: AtomicU32,
    commit_batches: AtomicU32,
    commits: AtomicU32,
    fail_commits: AtomicU32,
}

struct CountingBus {
    inner: SharedBus,
    counts: Arc<Counts>,
}

#[async_trait]
impl EventBus for CountingBus {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    async fn publish(&self, topic: &str, key: &str, payload: Vec<u8>) -> Result<(), BusError> {
        self.inner.publish(topic, key, payload).await
    }
    async fn publish_batch(&self, topic: &str, messages: Vec<(String, Vec<u8>)>) -> Result<(), BusError> {
        self.inner.publish_batch(topic, messages).await
    }
    async fn subscribe(&self, topic: &str, group: &str) -> Result<Box<dyn Subscription>, BusError> {
        Ok(Box::new(CountingSubscription { inner: self.inner.subscribe(topic, group).await?, counts: self.counts.clone() }))
    }
    async fn ping(&self) -> Result<(), BusError> {
        self.inner.ping().await
    }
}

struct CountingSubscription {
    inner: Box<dyn Subscription>,
    counts: Arc<Counts>,
}

#[async_trait]
impl Subscription for CountingSubscription {
    async fn next(&mut self) -> Result<Delivery, BusError> {
        self.inner.next().await
    }
    async fn commit(&mut self, delivery: &Delivery) -> Result<(), BusError> {
        self.counts.commits.fetch_add(1, Ordering::SeqCst);
        self.inner.commit(delivery).await
    }
    async fn lag(&mut self) -> Result<Option<u64>, BusError> {
        self.inner.lag().await
    }
    async fn next_batch(&mut self, max: usize, linger: Duration) -> Result<Vec<Delivery>, BusError> {
        let batch = self.inner.next_batch(max, linger).await?;
        if !batch.is_empty() {
            self.counts.batches.fetch_add(1, Ordering::SeqCst);
        }
        Ok(batch)
    }
    async fn commit_batch(&mut self, batch: &[Delivery]) -> Result<(), BusError> {
        if take_one(&self.counts.fail_commits) {
            return Err(BusError::Unavailable("commit refused by the test".into()));
        }
        self.counts.commit_batches.fetch_add(1, Ordering::SeqCst);
        self.inner.commit_batch(batch).await
    }
}

async fn batches_are_committed_once_per_batch(bus: SharedBus) {
    let counts = Arc::new(Counts::default());
    let counting: SharedBus = Arc::new(CountingBus { inner: bus.clone(), counts: counts.clone() });
    let metrics = ConsumerMetrics::new();
    let handler = Arc::new(Recorder::default());
    for id in 1..=30 {
        publish_keyed(&bus, &format!("product:{}", id % 5), id).await;
    }
    let addr = ConsumerActor::one_by_one("batched", counting, "g", handler.clone(), metrics.clone()).with_options(options(5)).start_supervised();
    let consumed = metrics.consumed.with_label_values(&[TOPIC, "g"]);
    // Counted once the last batch's commit returned.
    wait_for(|| consumed.get() == 30).await;
    assert_eq!(handler.ids().len(), 30);
    assert_eq!(counts.batches.load(Ordering::SeqCst), counts.commit_batches.load(Ordering::SeqCst), "one commit per batch");
    let batches = counts.batches.load(Ordering::SeqCst);
    assert!((1..30).contains(&batches), "{batches} batches for 30 events");
    assert_eq!(counts.commits.load(Ordering::SeqCst), 0, "no delivery is committed on its own");
    for k in 0..5 {
        let ids = handler.ids_of(&format!("product:{k}"));
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "key product:{k} applied out of order: {ids:?}");
    }
    everything_was_committed(&bus, "g", addr).await;
}

/// Holds partition 0's slices until a partition-1 slice was handled (or gives up after a
/// while and notes the violation): a consumer that runs partitions one after the other
/// cannot satisfy it.
#[derive(Default)]
struct Gate {
    partition_1_done: AtomicBool,
    handled: Mutex<Vec<(i32, String)>>,
    violations: AtomicU32,
    slices: AtomicU32,
}

#[async_trait]
impl BatchHandler for Gate {
    type Event = ProductChanged;

    async fn handle_batch(&self, batch: Vec<(ProductChanged, Delivery)>) -> anyhow::Result<()> {
        self.slices.fetch_add(1, Ordering::SeqCst);
        let partition = batch[0].1.partition;
        assert!(batch.iter().all(|(_, d)| d.partition == partition), "a slice mixes partitions");
        assert!(batch.windows(2).all(|w| w[0].1.offset < w[1].1.offset), "a slice is out of order");
        if partition == 0 {
            let mut waited = Duration::ZERO;
            while !self.partition_1_done.load(Ordering::SeqCst) {
                if waited > Duration::from_secs(10) {
                    self.violations.fetch_add(1, Ordering::SeqCst);
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
                waited += Duration::from_millis(10);
            }
        }
        self.handled.lock().unwrap().extend(batch.iter().map(|(_, d)| (d.partition, d.key.clone())));
        if partition == 1 {
            self.partition_1_done.store(true, Ordering::SeqCst);
        }
        Ok(())
    }
}

async fn partitions_are_handled_concurrently(bus: SharedBus) {
    let gate = Arc::new(Gate::default());
    // Eight keys: on two partitions, both get some (checked below).
    for k in 0..8 {
        publish_keyed(&bus, &format!("key-{k}"), k).await;
    }
    let options = ConsumerOptions { linger: Duration::from_secs(1), ..options(5) };
    let _addr = ConsumerActor::new("gate", bus.clone(), "g", gate.clone(), ConsumerMetrics::new()).with_options(options).start_supervised();
    wait_for(|| gate.handled.lock().unwrap().len() == 8).await;
    let partitions: HashSet<i32> = gate.handled.lock().unwrap().iter().map(|h| h.0).collect();
    assert_eq!(partitions, HashSet::from([0, 1]), "the test needs events on both partitions");
    assert_eq!(gate.violations.load(Ordering::SeqCst), 0, "partition 0 waited for partition 1 in vain: partitions ran one after the other");
}

async fn a_poison_event_is_parked_and_its_partition_moves_on(bus: SharedBus) {
    let metrics = ConsumerMetrics::new();
    let handler = Arc::new(Recorder { poison: Mutex::new(HashSet::from([2])), ..Default::default() });
    for id in 1..=3 {
        publish_change(&bus, id).await;
    }
    for (key, id) in [("product:5", 10), ("product:6", 11), ("product:5", 12)] {
        publish_keyed(&bus, key, id).await;
    }
    let addr = ConsumerActor::one_by_one("poisoned", bus.clone(), "g", handler.clone(), metrics.clone()).with_options(options(3)).start_supervised();
    wait_for(|| handler.ids().len() == 5 && dead_letters(&metrics, DeadLetterReason::HandlerFailed) == 1).await;
    assert_eq!(handler.ids_of("product:1"), vec![1, 3], "the events around the poison are applied, in order");
    assert_eq!(handler.ids_of("product:5"), vec![10, 12]);
    assert_eq!(handler.ids_of("product:6"), vec![11]);
    assert!(handler.calls(2) >= 3, "the poison event was tried {} times", handler.calls(2));
    assert!(metrics.handler_errors.with_label_values(&[TOPIC, "g"]).get() >= 3);
    wait_for(|| metrics.consumed.with_label_values(&[TOPIC, "g"]).get() == 5).await;

    let mut dlq = bus.subscribe(&Topic::ProductChanges.dead_letter(), "inspect").await.unwrap();
    let parked = next_dead_letter(&mut dlq).await;
    let (_, partition, offset, _) = handler.applied(1).unwrap();
    assert_eq!((parked.topic.as_str(), parked.partition, parked.offset), (TOPIC, partition, offset + 1));
    assert_eq!((parked.key.as_str(), parked.group.as_str()), ("product:1", "g"));
    assert_eq!((parked.reason, parked.attempts), (DeadLetterReason::HandlerFailed, 3));
    assert!(parked.error.contains("poison 2"), "{}", parked.error);
    assert_eq!(hissaback_topics::decode::<ProductChanged>(&parked.payload).unwrap(), change(2));
    everything_was_committed(&bus, "g", addr).await;
}

async fn an_outage_parks_no_more_than_allowed_in_a_row(bus: SharedBus) {
    let metrics = ConsumerMetrics::new();
    let handler = Arc::new(Recorder { outage: AtomicBool::new(true), ..Default::default() });
    for id in 1..=3 {
        publish_change(&bus, id).await;
    }
    let options = ConsumerOptions { max_dead_letters_in_a_row: 1, ..options(2) };
    let _addr = ConsumerActor::one_by_one("outage", bus.clone(), "g", handler.clone(), metrics.clone()).with_options(options).start_supervised();
    wait_for(|| dead_letters(&metrics, DeadLetterReason::HandlerFailed) == 1).await;
    // The next event fails as well: that is an outage, not poison; it is retried, not parked.
    wait_for(|| handler.calls(2) > 4).await;
    assert_eq!(dead_letters(&metrics, DeadLetterReason::HandlerFailed), 1);
    assert!(handler.ids().is_empty());
    handler.outage.store(false, Ordering::SeqCst);
    wait_for(|| handler.ids() == vec![2, 3]).await;
    assert_eq!(dead_letters(&metrics, DeadLetterReason::HandlerFailed), 1);
}

async fn an_unreachable_dependency_is_retried_and_never_parked(bus: SharedBus) {
    let metrics = ConsumerMetrics::new();
    let handler = Arc::new(Recorder { unreachable_first: AtomicU32::new(4), ..Default::default() });
    publish_change(&bus, 1).await;
    let _addr = ConsumerActor::one_by_one("unreachable", bus.clone(), "g", handler.clone(), metrics.clone()).with_options(options(2)).start_supervised();
    wait_for(|| handler.ids() == vec![1]).await;
    assert_eq!(metrics.handler_errors.with_label_values(&[TOPIC, "g"]).get(), 4);
    assert_eq!(dead_letters(&metrics, DeadLetterReason::HandlerFailed), 0);
}

async fn a_stuck_consumer_is_reported_until_it_moves_on(bus: SharedBus) {
    let metrics = ConsumerMetrics::new();
    let health = ConsumerHealth::new();
    let handler = Arc::new(Recorder { outage: AtomicBool::new(true), ..Default::default() });
    let _addr = ConsumerActor::one_by_one("stuck", bus.clone(), "g", handler.clone(), metrics.clone())
        .with_options(options(u32::MAX))
        .with_health(health.clone())
        .start_supervised();
    assert_eq!(health.statuses().len(), 1);
    assert!(health.stuck(Duration::ZERO).is_empty(), "an idle consumer is not stuck");
    publish_change(&bus, 1).await;
    wait_for(|| !health.stuck(Duration::from_millis(300)).is_empty()).await;
    let stuck = health.stuck(Duration::from_millis(300));
    assert_eq!((stuck[0].name, stuck[0].topic, stuck[0].group.as_str()), ("stuck", TOPIC, "g"));
    assert_eq!(stuck[0].last_error.as_deref(), Some("store down"));
    let gauge = metrics.stuck_seconds.with_label_values(&[TOPIC, "g"]);
    wait_for(|| gauge.get() >= 1.0).await;
    handler.outage.store(false, Ordering::SeqCst);
    wait_for(|| handler.ids() == vec![1] && health.stuck(Duration::ZERO).is_empty()).await;
    wait_for(|| gauge.get() == 0.0).await;
    assert_eq!(dead_letters(&metrics, DeadLetterReason::HandlerFailed), 0);
}

async fn an_uncommitted_batch_is_applied_again_after_a_failed_commit(bus: SharedBus) {
    let counts = Arc::new(Counts { fail_commits: AtomicU32::new(1), ..Default::default() });
    let counting: SharedBus = Arc::new(CountingBus { inner: bus.clone(), counts: counts.clone() });
    let metrics = ConsumerMetrics::new();
    let handler = Arc::new(Recorder::default());
    publish_change(&bus, 1).await;
    publish_change(&bus, 2).await;
    let addr = ConsumerActor::one_by_one("flaky-commit", counting, "g", handler.clone(), metrics.clone()).with_options(options(5)).start_supervised();
    wait_for(|| handler.ids() == vec![1, 2] && counts.commit_batches.load(Ordering::SeqCst) >= 1 && handler.calls(1) == 2).await;
    assert_eq!(metrics.restarts.with_label_values(&["flaky-commit"]).get(), 1);
    everything_was_committed(&bus, "g", addr).await;
}

macro_rules! consumer_suite {
    ($backend:ident, $open:expr) => {
        mod $backend {
            use super::*;
            consumer_suite!(@tests $open;
                undecodable_messages_are_parked_and_do_not_block,
                handler_errors_are_retried_on_the_same_delivery,
                a_panic_restarts_the_consumer_from_the_last_commit,
                batches_are_committed_once_per_batch,
                partitions_are_handled_concurrently,
                a_poison_event_is_parked_and_its_partition_moves_on,
                an_outage_parks_no_more_than_allowed_in_a_row,
                an_unreachable_dependency_is_retried_and_never_parked,
                a_stuck_consumer_is_reported_until_it_moves_on,
                an_uncommitted_batch_is_applied_again_after_a_failed_commit,
            );
        }
    };
    (@tests $open:expr; $($name:ident),* $(,)?) => {
        $(
            #[actix_rt::test]
            async fn $name() {
                let (bus, _guard) = $open.await;
                super::$name(bus).await;
            }
        )*
    };
}

async fn in_memory() -> (SharedBus, ()) {
    (Arc::new(EmbeddedBus::in_memory(2).unwrap()), ())
}

async fn embedded() -> (SharedBus, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    (Arc::new(EmbeddedBus::open(dir.path(), 2).unwrap()), dir)
}

/// A fresh topic prefix per test, so each test has its own topics on the shared broker.
async fn kafka() -> (SharedBus, ()) {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let brokers = std::env::var("HISSABACK_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let prefix = format!("hbconsumer.{secs}.{}.{n}.", std::process::id());
    let bus = KafkaBus::new(&brokers, &prefix).unwrap();
    bus.create_topics(&[Topic::ProductChanges.as_str().to_string(), Topic::ProductChanges.dead_letter()], 2, 1)
        .await
        .unwrap_or_else(|e| panic!("a Kafka broker is needed at {brokers} (start it with `scripts/services.sh up`): {e}"));
    (Arc::new(bus), ())
}

consumer_suite!(in_memory_log, in_memory());
consumer_suite!(embedded_log, embedded());
consumer_suite!(kafka_broker, kafka());
