//! Kafka through `rdkafka`: an idempotent producer with `acks=all` (a publish returns once
//! the broker has it durably), consumer groups with auto-commit off, and commits of
//! `offset + 1` made only when the consumer says its effect is stored. The rdkafka client
//! types and settings live here and nowhere else.
//!
//! Batches: the producer lingers a few milliseconds and compresses (lz4) so concurrent
//! publishes share produce requests; `publish_batch` enqueues every message in order and then
//! awaits every delivery report. A consumer's `next_batch` takes the first message, then
//! whatever else the client has fetched (the broker is asked with a short `fetch.wait.max.ms`)
//! until the batch is full or its linger is over; `commit_batch` is one asynchronous commit
//! of each partition's next offset. Committed offsets are also stored in the client, and a
//! member whose partitions are revoked (a rebalance, or its close) commits them synchronously
//! first, so the next owner starts after everything this member reported handled.

use super::{BusError, Delivery, EventBus, Subscription};
use async_trait::async_trait;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

/// Longest a publish may wait for the broker before failing.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(15);

/// Kafka-backed [`EventBus`].
pub struct KafkaBus {
    brokers: String,
    prefix: String,
    producer: FutureProducer,
}

fn kafka_error(e: KafkaError) -> BusError {
    BusError::Unavailable(e.to_string())
}

impl KafkaBus {
    /// A producer on `brokers`; topic names get `prefix` (e.g. `hissaback.`).
    pub fn new(brokers: &str, prefix: &str) -> Result<Self, BusError> {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            // Concurrent publishes share produce requests: a few milliseconds of linger, large
            // batches, room for a burst in the client's queue, lz4 (built into librdkafka).
            .set("linger.ms", "5")
            .set("batch.num.messages", "10000")
            .set("batch.size", "1000000")
            .set("queue.buffering.max.messages", "500000")
            .set("compression.type", "lz4")
            .set("message.timeout.ms", "30000")
            .create()
            .map_err(kafka_error)?;
        Ok(Self { brokers: brokers.to_string(), prefix: prefix.to_string(), producer })
    }

    fn name(&self, topic: &str) -> String {
        format!("{}{}", self.prefix, topic)
    }

    /// Creates the topics (base names) with `partitions` partitions and replication factor
    /// `replication`; topics that exist already are left as they are.
    pub async fn create_topics(&self, topics: &[String], partitions: i32, replication: i32) -> Result<(), BusError> {
        let admin: AdminClient<DefaultClientContext> =
            ClientConfig::new().set("bootstrap.servers", &self.brokers).create().map_err(kafka_error)?;
        let names: Vec<String> = topics.iter().map(|t| self.name(t)).collect();
        let new: Vec<NewTopic> = names
            .iter()
            .map(|n| NewTopic::new(n, partitions, TopicReplication::Fixed(replication)))
            .collect();
        let results = admin
            .create_topics(&new, &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))))
            .await
            .map_err(kafka_error)?;
        for r in results {
            match r {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((name, code)) => return Err(BusError::Other(format!("creating topic {name}: {code}"))),
            }
        }
        Ok(())
    }
}

#[async_trait]
impl EventBus for KafkaBus {
    fn backend(&self) -> &'static str {
        "kafka"
    }

    async fn publish(&self, topic: &str, key: &str, payload: Vec<u8>) -> Result<(), BusError> {
        let name = self.name(topic);
        self.producer
            .send(FutureRecord::to(&name).key(key).payload(&payload), PUBLISH_TIMEOUT)
            .await
            .map(|_| ())
            .map_err(|(e, _)| kafka_error(e))
    }

    /// Enqueues every message in order (waiting, in order, while the client's queue is
    /// full), then awaits every delivery report.
    async fn publish_batch(&self, topic: &str, messages: Vec<(String, Vec<u8>)>) -> Result<(), BusError> {
        let name = self.name(topic);
        let deadline = tokio::time::Instant::now() + PUBLISH_TIMEOUT;
        let mut reports: Vec<DeliveryFuture> = Vec::with_capacity(messages.len());
        for (key, payload) in &messages {
            let mut record = FutureRecord::to(&name).key(key.as_str()).payload(payload.as_slice());
            loop {
                match self.producer.send_result(record) {
                    Ok(report) => {
                        reports.push(report);
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                        if tokio::time::Instant::now() < deadline =>
                    {
                        record = back;
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    Err((e, _)) => return Err(kafka_error(e)),
                }
            }
        }
        for report in reports {
            match report.await {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => return Err(kafka_error(e)),
                Err(_) => return Err(BusError::Unavailable("the Kafka producer dropped a delivery report".into())),
            }
        }
        Ok(())
    }

    async fn subscribe(&self, topic: &str, group: &str) -> Result<Box<dyn Subscription>, BusError> {
        let consumer: StreamConsumer<CommitOnRevoke> = ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .set("group.id", format!("{}{}", self.prefix, group))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "10000")
            // A fetch returns as soon as there is data, or after 10 ms: batches fill from
            // what is there, not from waiting on the broker.
            .set("fetch.wait.max.ms", "10")
            .create_with_context(CommitOnRevoke::default())
            .map_err(kafka_error)?;
        let name = self.name(topic);
        consumer.subscribe(&[&name]).map_err(kafka_error)?;
        Ok(Box::new(KafkaSubscription {
            consumer: Some(consumer),
            topic: topic.to_string(),
            name,
            producer: self.producer.clone(),
            pending: VecDeque::new(),
        }))
    }

    async fn ping(&self) -> Result<(), BusError> {
        let producer = self.producer.clone();
        tokio::task::spawn_blocking(move || {
            use rdkafka::producer::Producer;
            producer.client().fetch_metadata(None, Duration::from_secs(3)).map(|_| ()).map_err(kafka_error)
        })
        .await
        .map_err(|e| BusError::Other(e.to_string()))?
    }
}

/// The consumers' context: before partitions are taken away (a rebalance, or the consumer's
/// close), the offsets stored by `commit`/`commit_batch` are committed synchronously, so an
/// asynchronous commit still in flight (or lost) does not make the next owner repeat work.
/// The revoked partitions are noted so the subscription drops what it received from them
/// and has not handed out: the next owner starts from the committed offset, and a message
/// the old owner handled after that would be a second writer of the same state.
#[derive(Default)]
struct CommitOnRevoke {
    revoked: std::sync::Mutex<Vec<i32>>,
}

impl ClientContext for CommitOnRevoke {}

impl ConsumerContext for CommitOnRevoke {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(revoked) = rebalance {
            if revoked.count() == 0 {
                return;
            }
            self.revoked
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend(revoked.elements().iter().map(|e| e.partition()));
            match consumer.commit_consumer_state(CommitMode::Sync) {
                Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
                Err(e) => tracing::warn!(error = %e, "kafka: committing stored offsets on revoke failed"),
            }
        }
    }
}

struct KafkaSubscription {
    /// Always `Some` until dropped (see `Drop`).
    consumer: Option<StreamConsumer<CommitOnRevoke>>,
    /// Base topic name (what deliveries carry).
    topic: String,
    /// Topic name on the broker (with the prefix).
    name: String,
    /// The bus's producer, whose client answers watermark queries off the consumer's path.
    producer: FutureProducer,
    /// Received but not handed out yet: a `next_batch` dropped while lingering leaves its
    /// deliveries here for the next call.
    pending: VecDeque<Delivery>,
}

impl KafkaSubscription {
    fn consumer(&self) -> &StreamConsumer<CommitOnRevoke> {
        self.consumer.as_ref().expect("present until drop")
    }

    /// Drops the received, not handed out, messages of partitions revoked since the last
    /// call. Revocations happen only inside `recv` (the handler never runs during one), so
    /// calling this after every `recv` and before keeping its message drops exactly what was
    /// received before the revocation: a partition assigned back starts again from its
    /// committed offset.
    fn drop_revoked(&mut self) {
        let revoked = std::mem::take(&mut *self.consumer().context().revoked.lock().unwrap_or_else(|p| p.into_inner()));
        if !revoked.is_empty() {
            let before = self.pending.len();
            self.pending.retain(|d| !revoked.contains(&d.partition));
            if before != self.pending.len() {
                tracing::info!(dropped = before - self.pending.len(), partitions = ?revoked, "kafka: partitions revoked; their unhandled messages are left to the next owner");
            }
        }
    }

    /// Stores `offsets` (so a revoke commits them too) and commits them.
    fn commit_offsets(&self, offsets: &TopicPartitionList, mode: CommitMode) -> Result<(), BusError> {
        if offsets.count() == 0 {
            return Ok(());
        }
        // Fails only for partitions no longer assigned, whose commit below fails too (or the
        // next owner has them): the stored copy is a best effort.
        if let Err(e) = self.consumer().store_offsets(offsets) {
            tracing::debug!(error = %e, "kafka: storing offsets");
        }
        self.consumer().commit(offsets, mode).map_err(kafka_error)
    }
}

fn delivery(topic: &str, msg: &BorrowedMessage<'_>) -> Delivery {
    Delivery {
        topic: topic.to_string(),
        partition: msg.partition(),
        offset: msg.offset(),
        key: msg.key().map(|k| String::from_utf8_lossy(k).into_owned()).unwrap_or_default(),
        payload: msg.payload().map(<[u8]>::to_vec).unwrap_or_default(),
    }
}

/// Closing a consumer leaves its group, which can wait on the broker (and, in librdkafka, on
/// a rebalance that never completes while the client shuts down). The close happens on a
/// thread of its own so a stopping consumer actor, or the process, never waits for it.
impl Drop for KafkaSubscription {
    fn drop(&mut self) {
        if let Some(consumer) = self.consumer.take() {
            let _ = std::thread::Builder::new().name("kafka-consumer-close".into()).spawn(move || drop(consumer));
        }
    }
}

#[async_trait]
impl Subscription for KafkaSubscription {
    async fn next(&mut self) -> Result<Delivery, BusError> {
        if let Some(d) = self.pending.pop_front() {
            return Ok(d);
        }
        let d = {
            let msg = self.consumer().recv().await.map_err(kafka_error)?;
            delivery(&self.topic, &msg)
        };
        self.drop_revoked();
        Ok(d)
    }

    /// `recv` is cancel-safe and what was received stays in `pending` until the batch is
    /// returned, so dropping this future loses nothing.
    async fn next_batch(&mut self, max: usize, linger: Duration) -> Result<Vec<Delivery>, BusError> {
        let max = max.max(1);
        if self.pending.is_empty() {
            let first = {
                let msg = self.consumer().recv().await.map_err(kafka_error)?;
                delivery(&self.topic, &msg)
            };
            self.drop_revoked();
            self.pending.push_back(first);
        }
        let deadline = tokio::time::Instant::now() + linger;
        while self.pending.len() < max {
            let next = match tokio::time::timeout_at(deadline, self.consumer().recv()).await {
                Ok(Ok(msg)) => delivery(&self.topic, &msg),
                Ok(Err(e)) => {
                    // Hand out what was received; a lasting error shows on the next call.
                    tracing::warn!(error = %e, "kafka: receiving while filling a batch");
                    break;
                }
                Err(_) => break,
            };
            self.drop_revoked();
            self.pending.push_back(next);
        }
        // A receive that timed out or failed may have run a revocation too.
        self.drop_revoked();
        let n = self.pending.len().min(max);
        Ok(self.pending.drain(..n).collect())
    }

    async fn commit(&mut self, delivery: &Delivery) -> Result<(), BusError> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.name, delivery.partition, Offset::Offset(delivery.offset + 1))
            .map_err(kafka_error)?;
        self.commit_offsets(&tpl, CommitMode::Sync)
    }

    /// One asynchronous commit request with each partition's next offset.
    async fn commit_batch(&mut self, batch: &[Delivery]) -> Result<(), BusError> {
        let mut next: BTreeMap<i32, i64> = BTreeMap::new();
        for d in batch {
            let e = next.entry(d.partition).or_insert(d.offset + 1);
            *e = (*e).max(d.offset + 1);
        }
        let mut tpl = TopicPartitionList::new();
        for (partition, offset) in next {
            tpl.add_partition_offset(&self.name, partition, Offset::Offset(offset)).map_err(kafka_error)?;
        }
        self.commit_offsets(&tpl, CommitMode::Async)
    }

    /// High watermark (asked of the broker on a blocking thread) minus this member's read
    /// position, over its assigned partitions, plus what was received but not handed out.
    async fn lag(&mut self) -> Result<Option<u64>, BusError> {
        let positions: Vec<(String, i32, i64)> = self
            .consumer()
            .position()
            .map_err(kafka_error)?
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(pos) => Some((e.topic().to_string(), e.partition(), pos)),
                _ => None,
            })
            .collect();
        if positions.is_empty() {
            return Ok(None);
        }
        let producer = self.producer.clone();
        let pending = self.pending.len() as u64;
        tokio::task::spawn_blocking(move || {
            let mut lag = pending;
            for (topic, partition, pos) in positions {
                let (_, high) = rdkafka::producer::Producer::client(&producer).fetch_watermarks(&topic, partition, Duration::from_secs(2)).map_err(kafka_error)?;
                lag += u64::try_from(high - pos).unwrap_or(0);
            }
            Ok(Some(lag))
        })
        .await
        .map_err(|e| BusError::Other(e.to_string()))?
    }
}
