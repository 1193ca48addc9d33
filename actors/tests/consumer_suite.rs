//! The consumer actor against every bus backend (in-memory, embedded file, a real Kafka
//! broker on `HISSABACK_KAFKA_BROKERS`, default 127.0.0.1:9092): handling in order, dead
//! letters for poison, retries on handler errors, restarts from the last commit.

use async_trait::async_trait;
use hissaback_actors::consumer::{Backoff, ConsumerActor, EventHandler};
use hissaback_actors::metrics::ConsumerMetrics;
use hissaback_topics::bus::embedded::EmbeddedBus;
use hissaback_topics::bus::kafka::KafkaBus;
use hissaback_topics::bus::{Delivery, SharedBus};
use hissaback_topics::events::{ContentChange, ProductChanged};
use hissaback_topics::Topic;
use std::sync::Arc;
use std::time::Duration;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

#[derive(Default)]
struct Recorder {
    seen: Mutex<Vec<u64>>,
    fail_first: AtomicU32,
    panic_on: Mutex<Option<u64>>,
}

#[async_trait]
impl EventHandler for Recorder {
    type Event = ProductChanged;

    async fn handle(&self, event: ProductChanged, _d: &Delivery) -> anyhow::Result<()> {
        let ContentChange::ProductUpdated { product_id } = event.change else { return Ok(()) };
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
        if self.fail_first.load(Ordering::SeqCst) > 0 {
            self.fail_first.fetch_sub(1, Ordering::SeqCst);
            anyhow::bail!("store down");
        }
        self.seen.lock().unwrap().push(product_id);
        Ok(())
    }
}

/// Every event of these tests carries the same key so that it lands in one partition and
/// order is defined on every backend; the product id inside varies.
fn change(product_id: u64) -> ProductChanged {
    ProductChanged { change: ContentChange::ProductUpdated { product_id }, occurred_at_ms: 0 }
}

async fn publish_change(bus: &SharedBus, product_id: u64) {
    let payload = hissaback_topics::encode(&change(product_id)).unwrap();
    bus.publish(Topic::ProductChanges.as_str(), "product:1", payload).await.unwrap();
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

async fn poison_goes_to_the_dead_letter_topic_and_does_not_block(bus: SharedBus) {
    let metrics = ConsumerMetrics::new();
    let handler = Arc::new(Recorder::default());
    publish_change(&bus, 1).await;
    // Same key as the good events, so on every backend they share one partition and order.
    bus.publish("product-changes", "product:1", vec![1, 0xff, 0xff, 0xff]).await.unwrap();
    bus.publish("product-changes", "product:1", vec![]).await.unwrap();
    publish_change(&bus, 4).await;
    let _addr = ConsumerActor::new("test", bus.clone(), "g", handler.clone(), metrics.clone()).with_backoff(fast()).start_supervised();
    wait_for(|| handler.seen.lock().unwrap().len() == 2).await;
    assert_eq!(*handler.seen.lock().unwrap(), vec![1, 4]);
    assert_eq!(metrics.dead_letters.with_label_values(&["product-changes", "g"]).get(), 2);
    let mut dlq = bus.subscribe(&Topic::ProductChanges.dead_letter(), "inspect").await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(60), dlq.next()).await.unwrap().unwrap();
    assert_eq!(first.key, "product:1");
    assert_eq!(first.payload, vec![1, 0xff, 0xff, 0xff]);
}

async fn handler_errors_are_retried_on_the_same_delivery(bus: SharedBus) {
    let metrics = ConsumerMetrics::new();
    let handler = Arc::new(Recorder { fail_first: AtomicU32::new(3), ..Default::default() });
    publish_change(&bus, 7).await;
    publish_change(&bus, 8).await;
    let _addr = ConsumerActor::new("test", bus.clone(), "g", handler.clone(), metrics.clone()).with_backoff(fast()).start_supervised();
    wait_for(|| handler.seen.lock().unwrap().len() == 2).await;
    assert_eq!(*handler.seen.lock().unwrap(), vec![7, 8]);
    assert_eq!(metrics.handler_errors.with_label_values(&["product-changes", "g"]).get(), 3);
}

async fn a_panic_restarts_the_consumer_from_the_last_commit(bus: SharedBus) {
    let metrics = ConsumerMetrics::new();
    let handler = Arc::new(Recorder { panic_on: Mutex::new(Some(2)), ..Default::default() });
    for id in 1..=3 {
        publish_change(&bus, id).await;
    }
    // The supervisor restarts an actor only while someone holds its address.
    let _addr = ConsumerActor::new("panicky", bus.clone(), "g", handler.clone(), metrics.clone()).with_backoff(fast()).start_supervised();
    wait_for(|| handler.seen.lock().unwrap().len() == 3).await;
    // 1 was committed before the panic, so only 2 and 3 are handled again.
    assert_eq!(*handler.seen.lock().unwrap(), vec![1, 2, 3]);
    assert_eq!(metrics.restarts.with_label_values(&["panicky"]).get(), 1);
    assert_eq!(metrics.consumed.with_label_values(&["product-changes", "g"]).get(), 3);
}


macro_rules! consumer_suite {
    ($backend:ident, $open:expr) => {
        mod $backend {
            use super::*;
            consumer_suite!(@tests $open;
                poison_goes_to_the_dead_letter_topic_and_does_not_block,
                handler_errors_are_retried_on_the_same_delivery,
                a_panic_restarts_the_consumer_from_the_last_commit,
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
