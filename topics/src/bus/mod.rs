//! The event bus: a producer side ([`EventBus::publish`]) and a consumer side
//! ([`Subscription`]) with at-least-once delivery: a delivery is seen again after a restart
//! until it is committed, and a consumer commits only after its effect is stored.
//!
//! Backends, chosen once at start: [`embedded::EmbeddedBus`] (durable append-only logs in a
//! SQLite file of the data directory, with consumer-group offsets; `in_memory` for unit
//! tests) and [`kafka::KafkaBus`] (rdkafka: idempotent producer, `acks=all`, consumer
//! groups, manual commits). One test suite runs against each.
//!
//! Topic names given to the bus are base names (`postbacks`, `postbacks.dead-letter`); the
//! Kafka backend adds the configured prefix.

pub mod embedded;
pub mod kafka;

use crate::codec::{self, CodecError};
use crate::events::Event;
use async_trait::async_trait;
use std::sync::Arc;

/// Why a bus call failed.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The broker or log cannot be reached now; retrying later may work.
    #[error("event bus unavailable: {0}")]
    Unavailable(String),
    #[error("event codec: {0}")]
    Codec(#[from] CodecError),
    #[error("event bus: {0}")]
    Other(String),
}

/// One message as a consumer sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// Base topic name.
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: String,
    pub payload: Vec<u8>,
}

/// A consumer group's position on one topic.
#[async_trait]
pub trait Subscription: Send {
    /// The next delivery, waiting for one to arrive.
    async fn next(&mut self) -> Result<Delivery, BusError>;
    /// Marks `delivery` (and everything before it in its partition) as done for the group.
    async fn commit(&mut self, delivery: &Delivery) -> Result<(), BusError>;
    /// Messages of this subscription's partitions not read yet (`None`: unknown). Kafka
    /// reports the partitions assigned to this member only; a group's lag is the sum over
    /// its members.
    async fn lag(&mut self) -> Result<Option<u64>, BusError> {
        Ok(None)
    }
    /// Waits for at least one delivery, then takes whatever else is ready (across every
    /// partition of this subscription, each partition's deliveries in offset order) until
    /// `max` deliveries or until `linger` has passed since the first one. Cancel-safe:
    /// nothing is lost when the future is dropped before it returns.
    async fn next_batch(&mut self, max: usize, linger: std::time::Duration) -> Result<Vec<Delivery>, BusError> {
        let first = self.next().await?;
        let mut out = vec![first];
        let deadline = tokio::time::Instant::now() + linger;
        while out.len() < max.max(1) {
            match tokio::time::timeout_at(deadline, self.next()).await {
                Ok(d) => out.push(d?),
                Err(_) => break,
            }
        }
        Ok(out)
    }
    /// Commits a handled batch: for each partition present, the position after its highest
    /// offset in `batch`. One write (embedded) or one asynchronous commit request (Kafka) per
    /// call, never one per delivery.
    async fn commit_batch(&mut self, batch: &[Delivery]) -> Result<(), BusError> {
        let mut last: std::collections::BTreeMap<i32, &Delivery> = std::collections::BTreeMap::new();
        for d in batch {
            let e = last.entry(d.partition).or_insert(d);
            if d.offset > e.offset {
                *e = d;
            }
        }
        for d in last.into_values() {
            self.commit(d).await?;
        }
        Ok(())
    }
}

/// Producer and consumer factory of one backend.
#[async_trait]
pub trait EventBus: Send + Sync + 'static {
    /// Short backend name for logs and metrics (`embedded`, `kafka`).
    fn backend(&self) -> &'static str;
    /// Appends one message; returns once it is durable.
    async fn publish(&self, topic: &str, key: &str, payload: Vec<u8>) -> Result<(), BusError>;
    /// Appends several messages of one topic (each with its key); returns once every one is
    /// durable. Messages with the same key keep their order. Embedded: one transaction;
    /// Kafka: produced together, every delivery report awaited.
    async fn publish_batch(&self, topic: &str, messages: Vec<(String, Vec<u8>)>) -> Result<(), BusError> {
        for (key, payload) in messages {
            self.publish(topic, &key, payload).await?;
        }
        Ok(())
    }
    /// Joins consumer group `group` on `topic`, resuming at the group's committed position
    /// (the beginning when it has none).
    async fn subscribe(&self, topic: &str, group: &str) -> Result<Box<dyn Subscription>, BusError>;
    /// Cheap reachability check for `/readyz`.
    async fn ping(&self) -> Result<(), BusError>;
}

pub type SharedBus = Arc<dyn EventBus>;

/// Encodes a typed event and publishes it on its topic with its key.
pub async fn publish_event<E: Event>(bus: &dyn EventBus, event: &E) -> Result<(), BusError> {
    let payload = codec::encode_event(event)?;
    bus.publish(E::TOPIC.as_str(), &event.key(), payload).await
}

/// Encodes typed events of one topic and publishes them together.
pub async fn publish_events<E: Event>(bus: &dyn EventBus, events: &[E]) -> Result<(), BusError> {
    if events.is_empty() {
        return Ok(());
    }
    let mut messages = Vec::with_capacity(events.len());
    for e in events {
        messages.push((e.key(), codec::encode_event(e)?));
    }
    bus.publish_batch(E::TOPIC.as_str(), messages).await
}

/// The partition a key goes to: FNV-1a, stable across builds and platforms.
pub fn partition_for(key: &str, partitions: u32) -> i32 {
    let mut hash: u32 = 0x811c_9dc5;
    for b in key.bytes() {
        hash ^= u32::from(b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    (hash % partitions.max(1)) as i32
}

#[cfg(test)]
mod tests {
    use super::partition_for;

    #[test]
    fn partitioning_is_stable_and_in_range() {
        assert_eq!(partition_for("a", 4), partition_for("a", 4));
        for k in ["", "x", "3:t-9", "conversion:18446744073709551615"] {
            assert!((0..4).contains(&partition_for(k, 4)));
        }
        assert_eq!(partition_for("anything", 1), 0);
    }
}
