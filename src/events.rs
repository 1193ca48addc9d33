//! The event bus backend chosen by configuration, and the topic set `migrate` creates.

use crate::configuration::{EventsBackend, Settings};
use anyhow::Context;
use hissaback_topics::bus::embedded::EmbeddedBus;
use hissaback_topics::bus::kafka::KafkaBus;
use hissaback_topics::bus::{BusError, EventBus, Subscription};
use hissaback_topics::{SharedBus, Topic};
use std::sync::Arc;

/// `hissaback_events_produced_total{topic, outcome}` (`ok`, `error`) and
/// `hissaback_event_publish_duration_seconds{topic}`: every publish of this process, by base
/// topic name. Process-wide, registered by each application's [`crate::metrics::Metrics`].
pub static PRODUCED: std::sync::LazyLock<(prometheus::IntCounterVec, prometheus::HistogramVec)> = std::sync::LazyLock::new(|| {
    let produced = prometheus::IntCounterVec::new(
        prometheus::Opts::new("hissaback_events_produced_total", "Events published, by topic and outcome"),
        &["topic", "outcome"],
    )
    .expect("valid metric");
    let seconds = prometheus::HistogramVec::new(
        prometheus::HistogramOpts::new("hissaback_event_publish_duration_seconds", "Time until a published event is durable")
            .buckets(vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5]),
        &["topic"],
    )
    .expect("valid metric");
    for topic in Topic::ALL {
        seconds.with_label_values(&[topic.as_str()]);
        for outcome in ["ok", "error"] {
            produced.with_label_values(&[topic.as_str(), outcome]);
        }
    }
    (produced, seconds)
});

/// The configured bus, measured: publishes are counted and timed per topic.
struct MeteredBus(SharedBus);

#[async_trait::async_trait]
impl EventBus for MeteredBus {
    fn backend(&self) -> &'static str {
        self.0.backend()
    }

    async fn publish(&self, topic: &str, key: &str, payload: Vec<u8>) -> Result<(), BusError> {
        let started = std::time::Instant::now();
        let result = self.0.publish(topic, key, payload).await;
        let (produced, seconds) = &*PRODUCED;
        produced.with_label_values(&[topic, if result.is_ok() { "ok" } else { "error" }]).inc();
        seconds.with_label_values(&[topic]).observe(started.elapsed().as_secs_f64());
        result
    }

    async fn publish_batch(&self, topic: &str, messages: Vec<(String, Vec<u8>)>) -> Result<(), BusError> {
        let started = std::time::Instant::now();
        let n = messages.len() as u64;
        let result = self.0.publish_batch(topic, messages).await;
        let (produced, seconds) = &*PRODUCED;
        produced.with_label_values(&[topic, if result.is_ok() { "ok" } else { "error" }]).inc_by(n);
        seconds.with_label_values(&[topic]).observe(started.elapsed().as_secs_f64());
        result
    }

    async fn subscribe(&self, topic: &str, group: &str) -> Result<Box<dyn Subscription>, BusError> {
        self.0.subscribe(topic, group).await
    }

    async fn ping(&self) -> Result<(), BusError> {
        self.0.ping().await
    }
}

/// Opens the configured bus: the embedded log in the data directory, or Kafka.
pub fn open(settings: &Settings) -> anyhow::Result<SharedBus> {
    Ok(Arc::new(MeteredBus(open_backend(settings)?)))
}

fn open_backend(settings: &Settings) -> anyhow::Result<SharedBus> {
    Ok(match settings.events.backend {
        EventsBackend::Embedded => Arc::new(
            EmbeddedBus::open(&settings.store.data_dir, settings.events.embedded_partitions)
                .context("opening the embedded event log")?,
        ),
        EventsBackend::Kafka => {
            let k = &settings.events.kafka;
            Arc::new(KafkaBus::with_security(&k.brokers, &k.topic_prefix, k.security()?).context("creating the Kafka producer")?)
        }
    })
}

/// Creates every topic and its dead-letter topic on Kafka (nothing to do for the embedded log).
pub async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    if settings.events.backend == EventsBackend::Kafka {
        let k = &settings.events.kafka;
        let bus = KafkaBus::with_security(&k.brokers, &k.topic_prefix, k.security()?)?;
        bus.create_topics(&Topic::all_with_dead_letters(), k.partitions, k.replication_factor)
            .await
            .with_context(|| format!("creating Kafka topics on {}", k.brokers))?;
    }
    Ok(())
}

/// Publishes a catalogue or content change made through the admin API. The store write has
/// happened already: a bus failure answers 503 so the caller retries the (idempotent) call.
pub async fn emit_change(
    bus: &dyn hissaback_topics::EventBus,
    change: hissaback_topics::events::ContentChange,
) -> Result<(), crate::error::ApiError> {
    let event = hissaback_topics::events::ProductChanged { change, occurred_at_ms: chrono::Utc::now().timestamp_millis() };
    hissaback_topics::bus::publish_event(bus, &event).await.map_err(crate::error::ApiError::unavailable)
}

/// Publishes a credential change (key revoked or rotated, affiliate changed) so every
/// instance drops what it cached. As with [`emit_change`], the store write has happened: a
/// bus failure answers 503 and the caller retries.
pub async fn emit_credential_change(
    bus: &dyn hissaback_topics::EventBus,
    change: hissaback_topics::events::CredentialChange,
) -> Result<(), crate::error::ApiError> {
    let event = hissaback_topics::events::CredentialChanged { change, occurred_at_ms: chrono::Utc::now().timestamp_millis() };
    hissaback_topics::bus::publish_event(bus, &event).await.map_err(crate::error::ApiError::unavailable)
}
