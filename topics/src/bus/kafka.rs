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
    security: KafkaSecurity,
    producer: FutureProducer,
}

/// How the clients reach the brokers: TLS, SASL and any other librdkafka property. Applied to
/// every client the bus creates (producer, consumers, admin). Plain data: the caller resolves
/// secrets kept in files. `Debug` never shows the passwords.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct KafkaSecurity {
    /// `security.protocol`: `plaintext` (None), `ssl`, `sasl_plaintext` or `sasl_ssl`.
    pub security_protocol: Option<String>,
    /// `ssl.ca.location`: PEM file of the CA(s) the brokers' certificates chain to. Unset with
    /// TLS on: the system's CA bundle (`probe`), as managed services with public CAs need.
    pub ssl_ca_location: Option<String>,
    /// `ssl.certificate.location`: this client's certificate (PEM), for mutual TLS.
    pub ssl_certificate_location: Option<String>,
    /// `ssl.key.location`: this client's private key (PEM), for mutual TLS.
    pub ssl_key_location: Option<String>,
    /// `ssl.key.password`: the private key's passphrase.
    pub ssl_key_password: Option<String>,
    /// `ssl.endpoint.identification.algorithm`: `https` (verify the broker's name, librdkafka's
    /// default) or `none`.
    pub ssl_endpoint_identification: Option<String>,
    /// `sasl.mechanism`: `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    pub sasl_mechanism: Option<String>,
    /// `sasl.username`.
    pub sasl_username: Option<String>,
    /// `sasl.password`.
    pub sasl_password: Option<String>,
    /// Further librdkafka properties (`ssl.cipher.suites`, `client.id`, ...), set last: they
    /// override everything above and the bus's own tuning.
    pub client: BTreeMap<String, String>,
}

/// librdkafka properties whose values are secrets: redacted wherever properties are shown.
pub const SECRET_PROPERTIES: &[&str] = &["sasl.password", "ssl.key.password", "ssl.keystore.password", "ssl.key.pem", "sasl.oauthbearer.client.secret"];

impl std::fmt::Debug for KafkaSecurity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redact = |v: &Option<String>| v.as_ref().map(|_| "[redacted]");
        let client = redacted(&self.client);
        f.debug_struct("KafkaSecurity")
            .field("security_protocol", &self.security_protocol)
            .field("ssl_ca_location", &self.ssl_ca_location)
            .field("ssl_certificate_location", &self.ssl_certificate_location)
            .field("ssl_key_location", &self.ssl_key_location)
            .field("ssl_key_password", &redact(&self.ssl_key_password))
            .field("ssl_endpoint_identification", &self.ssl_endpoint_identification)
            .field("sasl_mechanism", &self.sasl_mechanism)
            .field("sasl_username", &self.sasl_username)
            .field("sasl_password", &redact(&self.sasl_password))
            .field("client", &client)
            .finish()
    }
}

/// `properties` with the values of [`SECRET_PROPERTIES`] replaced, for `Debug` output.
pub fn redacted(properties: &BTreeMap<String, String>) -> BTreeMap<&str, &str> {
    properties
        .iter()
        .map(|(k, v)| (k.as_str(), if SECRET_PROPERTIES.contains(&k.as_str()) { "[redacted]" } else { v.as_str() }))
        .collect()
}

impl KafkaSecurity {
    /// Whether the protocol encrypts (`ssl`, `sasl_ssl`).
    pub fn uses_tls(&self) -> bool {
        matches!(self.security_protocol.as_deref().map(str::to_ascii_lowercase).as_deref(), Some("ssl" | "sasl_ssl"))
    }

    /// Sets these properties on `config` (the free-form ones last).
    pub fn apply(&self, config: &mut ClientConfig) {
        let fields = [
            ("security.protocol", &self.security_protocol),
            ("ssl.ca.location", &self.ssl_ca_location),
            ("ssl.certificate.location", &self.ssl_certificate_location),
            ("ssl.key.location", &self.ssl_key_location),
            ("ssl.key.password", &self.ssl_key_password),
            ("ssl.endpoint.identification.algorithm", &self.ssl_endpoint_identification),
            ("sasl.mechanism", &self.sasl_mechanism),
            ("sasl.username", &self.sasl_username),
            ("sasl.password", &self.sasl_password),
        ];
        for (key, value) in fields {
            if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
                config.set(key, v);
            }
        }
        if self.uses_tls() && self.ssl_ca_location.as_deref().is_none_or(str::is_empty) {
            // librdkafka's vendored OpenSSL does not know where this system keeps its CAs.
            config.set("ssl.ca.location", "probe");
        }
        for (key, value) in &self.client {
            config.set(key, value);
        }
    }
}

/// A client configuration for `brokers` with `security` applied: the base of every client
/// the bus creates, before the client's own tuning.
pub fn client_config(brokers: &str, security: &KafkaSecurity) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", brokers);
    security.apply(&mut config);
    config
}

fn kafka_error(e: KafkaError) -> BusError {
    BusError::Unavailable(e.to_string())
}

impl KafkaBus {
    /// A producer on `brokers` (plaintext); topic names get `prefix` (e.g. `hissaback.`).
    pub fn new(brokers: &str, prefix: &str) -> Result<Self, BusError> {
        Self::with_security(brokers, prefix, KafkaSecurity::default())
    }

    /// As [`KafkaBus::new`], every client reaching the brokers as `security` says.
    pub fn with_security(brokers: &str, prefix: &str, security: KafkaSecurity) -> Result<Self, BusError> {
        let producer: FutureProducer = Self::producer_config(brokers, &security).create().map_err(kafka_error)?;
        Ok(Self { brokers: brokers.to_string(), prefix: prefix.to_string(), security, producer })
    }

    /// The producer's configuration: `security` over the bus's tuning (whose `client`
    /// properties may override it).
    pub fn producer_config(brokers: &str, security: &KafkaSecurity) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
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
            .set("message.timeout.ms", "30000");
        security.apply(&mut config);
        config
    }

    /// A consumer's configuration in `group` (already prefixed).
    pub fn consumer_config(&self, group: &str) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.brokers)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "10000")
            // A fetch returns as soon as there is data, or after 10 ms: batches fill from
            // what is there, not from waiting on the broker.
            .set("fetch.wait.max.ms", "10");
        self.security.apply(&mut config);
        config
    }

    fn name(&self, topic: &str) -> String {
        format!("{}{}", self.prefix, topic)
    }

    /// Creates the topics (base names) with `partitions` partitions and replication factor
    /// `replication`; topics that exist already are left as they are.
    pub async fn create_topics(&self, topics: &[String], partitions: i32, replication: i32) -> Result<(), BusError> {
        let admin: AdminClient<DefaultClientContext> =
            client_config(&self.brokers, &self.security).create().map_err(kafka_error)?;
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
        let consumer: StreamConsumer<CommitOnRevoke> = self
            .consumer_config(&format!("{}{}", self.prefix, group))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn scram() -> KafkaSecurity {
        KafkaSecurity {
            security_protocol: Some("sasl_ssl".into()),
            ssl_endpoint_identification: Some("none".into()),
            sasl_mechanism: Some("SCRAM-SHA-256".into()),
            sasl_username: Some("hb".into()),
            sasl_password: Some("hunter2-secret".into()),
            ssl_key_password: Some("key-secret".into()),
            client: BTreeMap::from([("client.id".to_string(), "hissaback-test".to_string()), ("linger.ms".to_string(), "7".to_string())]),
            ..KafkaSecurity::default()
        }
    }

    #[tokio::test]
    async fn the_security_settings_reach_every_client_the_bus_creates() {
        let security = scram();
        let producer = KafkaBus::producer_config("127.0.0.1:1", &security);
        let admin = client_config("127.0.0.1:1", &security);
        // Creating the clients checks the properties (librdkafka refuses unknown ones and a
        // protocol it was built without) and connects to nothing yet.
        let bus = KafkaBus::with_security("127.0.0.1:1", "t.", security).unwrap();
        let consumer = bus.consumer_config("t.group");
        for config in [&producer, &admin, &consumer] {
            assert_eq!(config.get("bootstrap.servers"), Some("127.0.0.1:1"));
            assert_eq!(config.get("security.protocol"), Some("sasl_ssl"));
            assert_eq!(config.get("sasl.mechanism"), Some("SCRAM-SHA-256"));
            assert_eq!(config.get("sasl.username"), Some("hb"));
            assert_eq!(config.get("sasl.password"), Some("hunter2-secret"));
            assert_eq!(config.get("ssl.endpoint.identification.algorithm"), Some("none"));
            assert_eq!(config.get("ssl.ca.location"), Some("probe"), "TLS without a CA file uses the system's CAs");
            assert_eq!(config.get("client.id"), Some("hissaback-test"));
        }
        // The free-form properties come last: they override the bus's tuning.
        assert_eq!(producer.get("linger.ms"), Some("7"));
        assert_eq!(producer.get("acks"), Some("all"));
        assert_eq!(consumer.get("group.id"), Some("t.group"));
        let _: AdminClient<DefaultClientContext> = admin.create().unwrap();
        let _: StreamConsumer<CommitOnRevoke> = consumer.create_with_context(CommitOnRevoke::default()).unwrap();
    }

    #[test]
    fn plaintext_sets_nothing_and_a_ca_file_is_kept() {
        let plain = client_config("b:9092", &KafkaSecurity::default());
        assert_eq!(plain.get("security.protocol"), None);
        assert_eq!(plain.get("ssl.ca.location"), None);
        let tls = KafkaSecurity { security_protocol: Some("ssl".into()), ssl_ca_location: Some("/etc/ca.pem".into()), ..Default::default() };
        assert_eq!(client_config("b:9092", &tls).get("ssl.ca.location"), Some("/etc/ca.pem"));
    }

    #[test]
    fn debug_never_shows_a_password() {
        let mut security = scram();
        security.client.insert("ssl.keystore.password".into(), "store-secret".into());
        let shown = format!("{security:?}");
        for secret in ["hunter2-secret", "key-secret", "store-secret"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains("[redacted]") && shown.contains("\"hb\"") && shown.contains("hissaback-test"), "{shown}");
        assert!(format!("{:?}", KafkaSecurity::default()).contains("sasl_password: None"));
    }
}
