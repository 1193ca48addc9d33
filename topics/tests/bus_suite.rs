//! The event-bus suite: written once against `EventBus`/`Subscription` and run for every
//! backend: in-memory, embedded (SQLite file) and Kafka (a real broker on
//! `HISSABACK_KAFKA_BROKERS`, default 127.0.0.1:9092, started by `scripts/services.sh up`).

use hissaback_topics::bus::embedded::EmbeddedBus;
use hissaback_topics::bus::kafka::KafkaBus;
use hissaback_topics::{Delivery, EventBus, Subscription};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Waits for the next delivery, failing the test after `secs`.
async fn next_within(sub: &mut Box<dyn Subscription>, secs: u64) -> Delivery {
    tokio::time::timeout(Duration::from_secs(secs), sub.next())
        .await
        .expect("a delivery in time")
        .expect("a delivery")
}

fn unique(name: &str) -> String {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    format!("{name}-{}", N.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
}

/// Per key, deliveries come in the order published.
async fn ordering_per_key(bus: Arc<dyn EventBus>, topic: String) {
    for i in 0..40u32 {
        let key = format!("k{}", i % 5);
        bus.publish(&topic, &key, i.to_be_bytes().to_vec()).await.unwrap();
    }
    let mut sub = bus.subscribe(&topic, &unique("order")).await.unwrap();
    let mut per_key: HashMap<String, Vec<u32>> = HashMap::new();
    for _ in 0..40 {
        let d = next_within(&mut sub, 60).await;
        per_key.entry(d.key.clone()).or_default().push(u32::from_be_bytes(d.payload[..4].try_into().unwrap()));
        sub.commit(&d).await.unwrap();
    }
    assert_eq!(per_key.len(), 5);
    for (key, seen) in per_key {
        let mut sorted = seen.clone();
        sorted.sort();
        assert_eq!(seen, sorted, "key {key} out of order");
        assert_eq!(seen.len(), 8);
    }
}

/// What is not committed is delivered again to the group's next consumer; what is
/// committed is not.
async fn at_least_once_across_a_consumer_restart(bus: Arc<dyn EventBus>, topic: String) {
    let group = unique("restart");
    for i in 0..3u8 {
        bus.publish(&topic, "same-key", vec![i]).await.unwrap();
    }
    let mut sub = bus.subscribe(&topic, &group).await.unwrap();
    let first = next_within(&mut sub, 60).await;
    assert_eq!(first.payload, vec![0]);
    sub.commit(&first).await.unwrap();
    let second = next_within(&mut sub, 10).await;
    assert_eq!(second.payload, vec![1]);
    drop(sub); // crash before committing the second

    let mut sub = bus.subscribe(&topic, &group).await.unwrap();
    let again = next_within(&mut sub, 60).await;
    assert_eq!(again.payload, vec![1], "the uncommitted delivery comes back");
    sub.commit(&again).await.unwrap();
    let third = next_within(&mut sub, 10).await;
    assert_eq!(third.payload, vec![2]);
    sub.commit(&third).await.unwrap();
    drop(sub);

    let mut sub = bus.subscribe(&topic, &group).await.unwrap();
    bus.publish(&topic, "same-key", vec![3]).await.unwrap();
    let fourth = next_within(&mut sub, 60).await;
    assert_eq!(fourth.payload, vec![3], "committed deliveries are not repeated");
}

/// Each group has its own position.
async fn groups_are_independent(bus: Arc<dyn EventBus>, topic: String) {
    bus.publish(&topic, "k", b"one".to_vec()).await.unwrap();
    let mut a = bus.subscribe(&topic, &unique("ga")).await.unwrap();
    let d = next_within(&mut a, 60).await;
    a.commit(&d).await.unwrap();
    let mut b = bus.subscribe(&topic, &unique("gb")).await.unwrap();
    assert_eq!(next_within(&mut b, 60).await.payload, b"one".to_vec());
}

/// A consumer waiting on an empty topic wakes up for a new message.
async fn a_waiting_consumer_sees_new_messages(bus: Arc<dyn EventBus>, topic: String) {
    bus.publish(&topic, "warm", b"0".to_vec()).await.unwrap();
    let mut sub = bus.subscribe(&topic, &unique("wait")).await.unwrap();
    let warm = next_within(&mut sub, 60).await;
    sub.commit(&warm).await.unwrap();
    let publisher = bus.clone();
    let t = topic.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        publisher.publish(&t, "late", b"late".to_vec()).await.unwrap();
    });
    assert_eq!(next_within(&mut sub, 30).await.payload, b"late".to_vec());
    bus.ping().await.unwrap();
}

/// A consumer's lag is what it has not read yet: all of it before, none after.
async fn lag_counts_what_is_not_read_yet(bus: Arc<dyn EventBus>, topic: String) {
    for i in 0..5u8 {
        bus.publish(&topic, "one-partition", vec![i]).await.unwrap();
    }
    let mut sub = bus.subscribe(&topic, &unique("lag")).await.unwrap();
    for _ in 0..2 {
        let d = next_within(&mut sub, 60).await;
        sub.commit(&d).await.unwrap();
    }
    assert_eq!(sub.lag().await.unwrap(), Some(3));
    for _ in 0..3 {
        let d = next_within(&mut sub, 10).await;
        sub.commit(&d).await.unwrap();
    }
    assert_eq!(sub.lag().await.unwrap(), Some(0));
    bus.publish(&topic, "one-partition", vec![9]).await.unwrap();
    // Kafka learns the new high watermark from the broker; the embedded log reads it.
    let mut seen = None;
    for _ in 0..50 {
        seen = sub.lag().await.unwrap();
        if seen == Some(1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(seen, Some(1));
}

macro_rules! bus_suite {
    ($backend:ident, $open:expr) => {
        mod $backend {
            use super::*;
            bus_suite!(@tests $open;
                ordering_per_key,
                at_least_once_across_a_consumer_restart,
                groups_are_independent,
                a_waiting_consumer_sees_new_messages,
                lag_counts_what_is_not_read_yet,
            );
        }
    };
    (@tests $open:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let topic = unique(stringify!($name));
                let (bus, _guard) = $open(topic.clone()).await;
                super::$name(bus, topic).await;
            }
        )*
    };
}

async fn in_memory(_topic: String) -> (Arc<dyn EventBus>, ()) {
    (Arc::new(EmbeddedBus::in_memory(3).unwrap()), ())
}

async fn embedded(_topic: String) -> (Arc<dyn EventBus>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    (Arc::new(EmbeddedBus::open(dir.path(), 3).unwrap()), dir)
}

fn brokers() -> String {
    std::env::var("HISSABACK_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

fn prefix() -> String {
    static PREFIX: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PREFIX
        .get_or_init(|| {
            let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
            format!("hbtest.{secs}.{}.", std::process::id())
        })
        .clone()
}

async fn kafka(topic: String) -> (Arc<dyn EventBus>, ()) {
    let bus = KafkaBus::new(&brokers(), &prefix()).unwrap();
    bus.create_topics(&[topic], 3, 1).await.unwrap_or_else(|e| {
        panic!("a Kafka broker is needed at {} (start it with `scripts/services.sh up`): {e}", brokers())
    });
    (Arc::new(bus), ())
}

bus_suite!(in_memory_log, in_memory);
bus_suite!(embedded_log, embedded);
bus_suite!(kafka_broker, kafka);

#[tokio::test]
async fn the_embedded_log_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    {
        let bus = EmbeddedBus::open(dir.path(), 2).unwrap();
        bus.publish("durable", "k", b"kept".to_vec()).await.unwrap();
        let mut sub = bus.subscribe("durable", "g").await.unwrap();
        let d = next_within(&mut sub, 5).await;
        sub.commit(&d).await.unwrap();
        bus.publish("durable", "k", b"pending".to_vec()).await.unwrap();
    }
    let bus = EmbeddedBus::open(dir.path(), 2).unwrap();
    let mut sub = bus.subscribe("durable", "g").await.unwrap();
    assert_eq!(next_within(&mut sub, 5).await.payload, b"pending".to_vec());
}
