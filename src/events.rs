//! The event bus backend chosen by configuration, and the topic set `migrate` creates.

use crate::configuration::{EventsBackend, Settings};
use anyhow::Context;
use hissaback_topics::bus::embedded::EmbeddedBus;
use hissaback_topics::bus::kafka::KafkaBus;
use hissaback_topics::{SharedBus, Topic};
use std::sync::Arc;

/// Opens the configured bus: the embedded log in the data directory, or Kafka.
pub fn open(settings: &Settings) -> anyhow::Result<SharedBus> {
    Ok(match settings.events.backend {
        EventsBackend::Embedded => Arc::new(
            EmbeddedBus::open(&settings.store.data_dir, settings.events.embedded_partitions)
                .context("opening the embedded event log")?,
        ),
        EventsBackend::Kafka => {
            let k = &settings.events.kafka;
            Arc::new(KafkaBus::new(&k.brokers, &k.topic_prefix).context("creating the Kafka producer")?)
        }
    })
}

/// Creates every topic and its dead-letter topic on Kafka (nothing to do for the embedded log).
pub async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    if settings.events.backend == EventsBackend::Kafka {
        let k = &settings.events.kafka;
        let bus = KafkaBus::new(&k.brokers, &k.topic_prefix)?;
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
