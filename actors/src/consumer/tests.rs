//! The consumer actor against the in-memory bus: handling, dead letters, retries, restarts.

use super::*;
use hissaback_topics::bus::embedded::EmbeddedBus;
use hissaback_topics::bus::publish_event;
use hissaback_topics::events::{ContentChange, ProductChanged};
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

fn change(product_id: u64) -> ProductChanged {
    ProductChanged { change: ContentChange::ProductUpdated { product_id }, occurred_at_ms: 0 }
}

async fn wait_for(mut check: impl FnMut() -> bool) {
    for _ in 0..500 {
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

#[actix_rt::test]
async fn poison_goes_to_the_dead_letter_topic_and_does_not_block() {
    let bus: SharedBus = Arc::new(EmbeddedBus::in_memory(1).unwrap());
    let metrics = ConsumerMetrics::new();
    let handler = Arc::new(Recorder::default());
    publish_event(bus.as_ref(), &change(1)).await.unwrap();
    bus.publish("product-changes", "product:2", vec![1, 0xff, 0xff, 0xff]).await.unwrap();
    bus.publish("product-changes", "product:3", vec![]).await.unwrap();
    publish_event(bus.as_ref(), &change(4)).await.unwrap();
    ConsumerActor::new("test", bus.clone(), "g", handler.clone(), metrics.clone()).with_backoff(fast()).start_supervised();
    wait_for(|| handler.seen.lock().unwrap().len() == 2).await;
    assert_eq!(*handler.seen.lock().unwrap(), vec![1, 4]);
    assert_eq!(metrics.dead_letters.with_label_values(&["product-changes", "g"]).get(), 2);
    let mut dlq = bus.subscribe("product-changes.dead-letter", "inspect").await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(5), dlq.next()).await.unwrap().unwrap();
    assert_eq!(first.key, "product:2");
    assert_eq!(first.payload, vec![1, 0xff, 0xff, 0xff]);
}

#[actix_rt::test]
async fn handler_errors_are_retried_on_the_same_delivery() {
    let bus: SharedBus = Arc::new(EmbeddedBus::in_memory(1).unwrap());
    let metrics = ConsumerMetrics::new();
    let handler = Arc::new(Recorder { fail_first: AtomicU32::new(3), ..Default::default() });
    publish_event(bus.as_ref(), &change(7)).await.unwrap();
    publish_event(bus.as_ref(), &change(8)).await.unwrap();
    ConsumerActor::new("test", bus.clone(), "g", handler.clone(), metrics.clone()).with_backoff(fast()).start_supervised();
    wait_for(|| handler.seen.lock().unwrap().len() == 2).await;
    assert_eq!(*handler.seen.lock().unwrap(), vec![7, 8]);
    assert_eq!(metrics.handler_errors.with_label_values(&["product-changes", "g"]).get(), 3);
}

#[actix_rt::test]
async fn a_panic_restarts_the_consumer_from_the_last_commit() {
    let bus: SharedBus = Arc::new(EmbeddedBus::in_memory(1).unwrap());
    let metrics = ConsumerMetrics::new();
    let handler = Arc::new(Recorder { panic_on: Mutex::new(Some(2)), ..Default::default() });
    for id in 1..=3 {
        publish_event(bus.as_ref(), &change(id)).await.unwrap();
    }
    // The supervisor restarts an actor only while someone holds its address.
    let _addr = ConsumerActor::new("panicky", bus.clone(), "g", handler.clone(), metrics.clone()).with_backoff(fast()).start_supervised();
    wait_for(|| handler.seen.lock().unwrap().len() == 3).await;
    // 1 was committed before the panic, so only 2 and 3 are handled again.
    assert_eq!(*handler.seen.lock().unwrap(), vec![1, 2, 3]);
    assert_eq!(metrics.restarts.with_label_values(&["panicky"]).get(), 1);
    assert_eq!(metrics.consumed.with_label_values(&["product-changes", "g"]).get(), 3);
}

#[test]
fn backoff_doubles_and_is_capped() {
    let b = Backoff { first: Duration::from_millis(100), max: Duration::from_secs(1) };
    assert_eq!(b.delay(1), Duration::from_millis(100));
    assert_eq!(b.delay(2), Duration::from_millis(200));
    assert_eq!(b.delay(4), Duration::from_millis(800));
    assert_eq!(b.delay(5), Duration::from_secs(1));
    assert_eq!(b.delay(500), Duration::from_secs(1));
}
