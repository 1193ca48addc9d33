//! Kafka through `rdkafka`: an idempotent producer with `acks=all` (a publish returns once
//! the broker has it durably), consumer groups with auto-commit off, and commits of
//! `offset + 1` made only when the consumer says its effect is stored. The rdkafka client
//! types and settings live here and nowhere else.

use super::{BusError, Delivery, EventBus, Subscription};
use async_trait::async_trait;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
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
            .set("linger.ms", "5")
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

    async fn subscribe(&self, topic: &str, group: &str) -> Result<Box<dyn Subscription>, BusError> {
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .set("group.id", format!("{}{}", self.prefix, group))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "10000")
            .create()
            .map_err(kafka_error)?;
        consumer.subscribe(&[&self.name(topic)]).map_err(kafka_error)?;
        Ok(Box::new(KafkaSubscription { consumer: Some(consumer), topic: topic.to_string(), producer: self.producer.clone() }))
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

struct KafkaSubscription {
    /// Always `Some` until dropped (see `Drop`).
    consumer: Option<StreamConsumer>,
    topic: String,
    /// The bus's producer, whose client answers watermark queries off the consumer's path.
    producer: FutureProducer,
}

impl KafkaSubscription {
    fn consumer(&self) -> &StreamConsumer {
        self.consumer.as_ref().expect("present until drop")
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
        let msg = self.consumer().recv().await.map_err(kafka_error)?;
        Ok(Delivery {
            topic: self.topic.clone(),
            partition: msg.partition(),
            offset: msg.offset(),
            key: msg.key().map(|k| String::from_utf8_lossy(k).into_owned()).unwrap_or_default(),
            payload: msg.payload().map(<[u8]>::to_vec).unwrap_or_default(),
        })
    }

    async fn commit(&mut self, delivery: &Delivery) -> Result<(), BusError> {
        let mut tpl = TopicPartitionList::new();
        let name = self
            .consumer()
            .subscription()
            .map_err(kafka_error)?
            .elements()
            .first()
            .map(|e| e.topic().to_string())
            .unwrap_or_default();
        tpl.add_partition_offset(&name, delivery.partition, Offset::Offset(delivery.offset + 1))
            .map_err(kafka_error)?;
        self.consumer().commit(&tpl, CommitMode::Sync).map_err(kafka_error)
    }

    /// High watermark (asked of the broker on a blocking thread) minus this member's read
    /// position, over its assigned partitions.
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
        tokio::task::spawn_blocking(move || {
            let mut lag = 0u64;
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
