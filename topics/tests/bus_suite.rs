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

/// Takes batches until `n` deliveries arrived, failing after `secs`.
async fn batches_until(sub: &mut Box<dyn Subscription>, n: usize, max: usize, secs: u64) -> Vec<Vec<Delivery>> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    let mut batches = Vec::new();
    let mut seen = 0;
    while seen < n {
        let batch = tokio::time::timeout_at(deadline, sub.next_batch(max, Duration::from_millis(200)))
            .await
            .unwrap_or_else(|_| panic!("{n} deliveries in time, {seen} seen"))
            .expect("a batch");
        assert!(!batch.is_empty() && batch.len() <= max, "a batch of 1..={max}, not {}", batch.len());
        seen += batch.len();
        batches.push(batch);
    }
    assert_eq!(seen, n, "no more than was published");
    batches
}

/// Nothing more arrives within `millis`.
async fn nothing_more(sub: &mut Box<dyn Subscription>, millis: u64) {
    if let Ok(more) = tokio::time::timeout(Duration::from_millis(millis), sub.next_batch(10, Duration::ZERO)).await {
        panic!("unexpected deliveries: {:?}", more.map(|b| b.into_iter().map(|d| (d.partition, d.offset)).collect::<Vec<_>>()));
    }
}

fn number(d: &Delivery) -> u32 {
    u32::from_be_bytes(d.payload[..4].try_into().unwrap())
}

/// Within each partition offsets only grow; within each key payload numbers only grow.
fn assert_ordered(deliveries: &[Delivery]) {
    let mut last_offset: HashMap<i32, i64> = HashMap::new();
    let mut last_number: HashMap<&str, u32> = HashMap::new();
    for d in deliveries {
        if let Some(prev) = last_offset.insert(d.partition, d.offset) {
            assert!(d.offset > prev, "partition {} went from offset {prev} to {}", d.partition, d.offset);
        }
        if let Some(prev) = last_number.insert(&d.key, number(d)) {
            assert!(number(d) > prev, "key {} went from {prev} to {}", d.key, number(d));
        }
    }
}

/// A batch holds several deliveries, never more than asked, each partition in order.
async fn next_batch_takes_several_in_partition_order(bus: Arc<dyn EventBus>, topic: String) {
    for i in 0..30u32 {
        bus.publish(&topic, &format!("k{}", i % 6), i.to_be_bytes().to_vec()).await.unwrap();
    }
    let mut sub = bus.subscribe(&topic, &unique("batch")).await.unwrap();
    let batches = batches_until(&mut sub, 30, 8, 60).await;
    assert!(batches.iter().any(|b| b.len() > 1), "batches of one only: {:?}", batches.iter().map(Vec::len).collect::<Vec<_>>());
    let all: Vec<Delivery> = batches.into_iter().flatten().collect();
    assert_ordered(&all);
    let mut numbers: Vec<u32> = all.iter().map(number).collect();
    numbers.sort();
    assert_eq!(numbers, (0..30).collect::<Vec<_>>());
    nothing_more(&mut sub, 500).await;
}

/// After `commit_batch`, the group's next consumer starts after the batch in every partition.
async fn commit_batch_resumes_after_the_batch(bus: Arc<dyn EventBus>, topic: String) {
    let group = unique("commit-batch");
    for i in 0..24u32 {
        bus.publish(&topic, &format!("k{}", i % 8), i.to_be_bytes().to_vec()).await.unwrap();
    }
    let mut sub = bus.subscribe(&topic, &group).await.unwrap();
    let mut handled = Vec::new();
    for batch in batches_until(&mut sub, 12, 4, 60).await {
        sub.commit_batch(&batch).await.unwrap();
        handled.extend(batch);
    }
    drop(sub);

    let mut sub = bus.subscribe(&topic, &group).await.unwrap();
    let rest: Vec<Delivery> = batches_until(&mut sub, 12, 50, 60).await.into_iter().flatten().collect();
    for d in &rest {
        assert!(!handled.iter().any(|h| (h.partition, h.offset) == (d.partition, d.offset)), "committed {d:?} came back");
    }
    let mut numbers: Vec<u32> = handled.iter().chain(&rest).map(number).collect();
    numbers.sort();
    assert_eq!(numbers, (0..24).collect::<Vec<_>>());
    nothing_more(&mut sub, 500).await;
}

/// A batch handed out but not committed is delivered again to the group's next consumer.
async fn an_uncommitted_batch_is_redelivered(bus: Arc<dyn EventBus>, topic: String) {
    let group = unique("uncommitted");
    for i in 0..10u32 {
        bus.publish(&topic, &format!("k{}", i % 4), i.to_be_bytes().to_vec()).await.unwrap();
    }
    let mut sub = bus.subscribe(&topic, &group).await.unwrap();
    let first = sub.next_batch(3, Duration::from_millis(200)).await.unwrap();
    sub.commit_batch(&first).await.unwrap();
    let second = tokio::time::timeout(Duration::from_secs(30), sub.next_batch(3, Duration::from_millis(200)))
        .await
        .unwrap()
        .unwrap();
    drop(sub); // crash before committing the second batch

    let mut sub = bus.subscribe(&topic, &group).await.unwrap();
    let again: Vec<Delivery> = batches_until(&mut sub, 10 - first.len(), 50, 60).await.into_iter().flatten().collect();
    for d in &second {
        assert!(again.contains(d), "uncommitted {d:?} not redelivered");
    }
    for d in &first {
        assert!(!again.contains(d), "committed {d:?} redelivered");
    }
    assert_ordered(&again);
}

/// `publish_batch` returns once every message can be read, each key's messages in order.
async fn publish_batch_is_durable_and_ordered_per_key(bus: Arc<dyn EventBus>, topic: String) {
    let messages: Vec<(String, Vec<u8>)> = (0..60u32).map(|i| (format!("k{}", i % 5), i.to_be_bytes().to_vec())).collect();
    bus.publish_batch(&topic, messages).await.unwrap();
    bus.publish_batch(&topic, Vec::new()).await.unwrap();
    let mut sub = bus.subscribe(&topic, &unique("publish-batch")).await.unwrap();
    let all: Vec<Delivery> = batches_until(&mut sub, 60, 100, 60).await.into_iter().flatten().collect();
    assert_ordered(&all);
    let mut per_key: HashMap<&str, usize> = HashMap::new();
    for d in &all {
        *per_key.entry(&d.key).or_default() += 1;
    }
    assert_eq!(per_key.len(), 5);
    assert!(per_key.values().all(|n| *n == 12));
}

/// Publishes made at once are all kept, with distinct, gapless offsets per partition.
async fn concurrent_publishes_are_all_kept(bus: Arc<dyn EventBus>, topic: String) {
    let tasks: Vec<_> = (0..200u32)
        .map(|i| {
            let (bus, topic) = (bus.clone(), topic.clone());
            tokio::spawn(async move { bus.publish(&topic, &format!("c{i}"), i.to_be_bytes().to_vec()).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let mut sub = bus.subscribe(&topic, &unique("concurrent")).await.unwrap();
    let all: Vec<Delivery> = batches_until(&mut sub, 200, 64, 60).await.into_iter().flatten().collect();
    let mut numbers: Vec<u32> = all.iter().map(number).collect();
    numbers.sort();
    assert_eq!(numbers, (0..200).collect::<Vec<_>>());
    let mut offsets: HashMap<i32, Vec<i64>> = HashMap::new();
    for d in &all {
        offsets.entry(d.partition).or_default().push(d.offset);
    }
    assert!(offsets.len() > 1, "200 keys over several partitions");
    for (partition, seen) in offsets {
        assert_eq!(seen, (0..seen.len() as i64).collect::<Vec<_>>(), "partition {partition}");
    }
}

/// Dropping `next_batch` while it waits, or while it lingers over deliveries it already
/// has, loses nothing: every message still arrives, once, in order.
async fn next_batch_is_cancel_safe(bus: Arc<dyn EventBus>, topic: String) {
    let mut sub = bus.subscribe(&topic, &unique("cancel")).await.unwrap();
    // Dropped while waiting on an empty topic.
    for _ in 0..3 {
        assert!(tokio::time::timeout(Duration::from_millis(300), sub.next_batch(100, Duration::from_secs(30))).await.is_err());
    }
    for i in 0..10u32 {
        bus.publish(&topic, &format!("k{}", i % 3), i.to_be_bytes().to_vec()).await.unwrap();
    }
    // Dropped while lingering (a batch of 100 with 30 s of linger never completes here).
    for _ in 0..4 {
        assert!(tokio::time::timeout(Duration::from_millis(1500), sub.next_batch(100, Duration::from_secs(30))).await.is_err());
    }
    let publisher = bus.clone();
    let t = topic.clone();
    tokio::spawn(async move {
        for i in 10..20u32 {
            publisher.publish(&t, &format!("k{}", i % 3), i.to_be_bytes().to_vec()).await.unwrap();
        }
    });
    let all: Vec<Delivery> = batches_until(&mut sub, 20, 7, 60).await.into_iter().flatten().collect();
    assert_ordered(&all);
    let mut numbers: Vec<u32> = all.iter().map(number).collect();
    numbers.sort();
    assert_eq!(numbers, (0..20).collect::<Vec<_>>());
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
                next_batch_takes_several_in_partition_order,
                commit_batch_resumes_after_the_batch,
                an_uncommitted_batch_is_redelivered,
                publish_batch_is_durable_and_ordered_per_key,
                concurrent_publishes_are_all_kept,
                next_batch_is_cancel_safe,
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

/// Concurrent publishes and a batch (group-committed) are all in the file after reopening.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_embedded_publishes_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    {
        let bus: Arc<dyn EventBus> = Arc::new(EmbeddedBus::open(dir.path(), 4).unwrap());
        let mut tasks: Vec<_> = (0..200u32)
            .map(|i| {
                let bus = bus.clone();
                tokio::spawn(async move { bus.publish("many", &format!("c{i}"), i.to_be_bytes().to_vec()).await })
            })
            .collect();
        let batch: Vec<(String, Vec<u8>)> = (200..250u32).map(|i| (format!("c{i}"), i.to_be_bytes().to_vec())).collect();
        let publisher = bus.clone();
        tasks.push(tokio::spawn(async move { publisher.publish_batch("many", batch).await }));
        for t in tasks {
            t.await.unwrap().unwrap();
        }
    }
    let bus = EmbeddedBus::open(dir.path(), 4).unwrap();
    let mut sub = bus.subscribe("many", "g").await.unwrap();
    let all: Vec<Delivery> = batches_until(&mut sub, 250, 100, 10).await.into_iter().flatten().collect();
    let mut numbers: Vec<u32> = all.iter().map(number).collect();
    numbers.sort();
    assert_eq!(numbers, (0..250).collect::<Vec<_>>());
    nothing_more(&mut sub, 300).await;
    // Appends continue after the offsets already in the file.
    bus.publish("many", "c0", 250u32.to_be_bytes().to_vec()).await.unwrap();
    let d = next_within(&mut sub, 5).await;
    assert_eq!(number(&d), 250);
    assert!(d.offset > all.iter().filter(|x| x.partition == d.partition).map(|x| x.offset).max().unwrap());
}

/// Another writer on the same file (not how the service runs) makes the cached next offset
/// stale: that group fails as unavailable, and the next one reads the heads again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_head_fails_one_group_then_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let a = EmbeddedBus::open(dir.path(), 1).unwrap();
    let b = EmbeddedBus::open(dir.path(), 1).unwrap();
    a.publish("t", "k", vec![0]).await.unwrap();
    b.publish("t", "k", vec![1]).await.unwrap();
    assert!(matches!(a.publish("t", "k", vec![2]).await, Err(hissaback_topics::BusError::Unavailable(_))));
    a.publish("t", "k", vec![3]).await.unwrap();
    let mut sub = a.subscribe("t", "g").await.unwrap();
    let all: Vec<Delivery> = batches_until(&mut sub, 3, 10, 5).await.into_iter().flatten().collect();
    assert_eq!(all.iter().map(|d| (d.offset, d.payload[0])).collect::<Vec<_>>(), vec![(0, 0), (1, 1), (2, 3)]);
}

/// Kafka only: when a second member joins, the partitions taken from the first are not handed
/// out by it any more, even the messages it had received before the revocation and not
/// handed out yet (a `next_batch` dropped while lingering keeps them): the next owner starts
/// from the committed offset, and the old owner handling them too would make two writers of
/// the same state. Nothing is lost: every message comes out of one member or the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_a_revoked_partition_is_not_handed_out_by_its_old_owner() {
    let topic = unique("revoke");
    let (bus, _guard) = kafka(topic.clone()).await;
    for i in 0..30u32 {
        bus.publish(&topic, &format!("k{}", i % 9), i.to_be_bytes().to_vec()).await.unwrap();
    }
    let group = unique("revoke-group");
    let mut a = bus.subscribe(&topic, &group).await.unwrap();
    // A receives everything but hands nothing out: each call is dropped while lingering.
    for _ in 0..2 {
        assert!(tokio::time::timeout(Duration::from_secs(8), a.next_batch(1000, Duration::from_secs(60))).await.is_err());
    }
    // B joins and polls (nothing is ever committed, so B starts from offset 0).
    let mut b = bus.subscribe(&topic, &group).await.unwrap();
    let b_seen = Arc::new(std::sync::Mutex::new(Vec::<Delivery>::new()));
    let seen = b_seen.clone();
    let b_task = tokio::spawn(async move {
        let until = tokio::time::Instant::now() + Duration::from_secs(40);
        while tokio::time::Instant::now() < until {
            if let Ok(Ok(batch)) = tokio::time::timeout(Duration::from_secs(1), b.next_batch(1000, Duration::from_millis(100))).await {
                seen.lock().unwrap().extend(batch);
            }
        }
    });
    // Long enough for A's heartbeat to learn of the rebalance: its next receive revokes.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let mut a_seen: Vec<Delivery> = Vec::new();
    let until = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::time::Instant::now() < until {
        if let Ok(Ok(batch)) = tokio::time::timeout(Duration::from_secs(1), a.next_batch(1000, Duration::from_millis(100))).await {
            a_seen.extend(batch);
        }
        let b_has = b_seen.lock().unwrap().len();
        if b_has > 0 && a_seen.len() + b_has >= 30 {
            break;
        }
    }
    b_task.abort();
    let b_seen = b_seen.lock().unwrap().clone();
    assert!(!b_seen.is_empty(), "the second member got no partition");
    let a_parts: std::collections::BTreeSet<i32> = a_seen.iter().map(|d| d.partition).collect();
    let b_parts: std::collections::BTreeSet<i32> = b_seen.iter().map(|d| d.partition).collect();
    assert!(
        a_parts.is_disjoint(&b_parts),
        "partitions handed out by both members after the rebalance: A {a_parts:?}, B {b_parts:?}"
    );
    let mut numbers: Vec<u32> = a_seen.iter().chain(b_seen.iter()).map(number).collect();
    numbers.sort();
    numbers.dedup();
    assert_eq!(numbers, (0..30).collect::<Vec<_>>(), "every message comes out of one member");
}
