//! Metrics the actors maintain, registered once by the service into its registry.

use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};

/// Stream-consumer metrics (shared label names: `topic`, `group`, `actor`).
#[derive(Clone)]
pub struct ConsumerMetrics {
    /// `hissaback_events_consumed_total{topic, group}`
    pub consumed: IntCounterVec,
    /// `hissaback_events_dead_lettered_total{topic, group}`
    pub dead_letters: IntCounterVec,
    /// `hissaback_event_handler_errors_total{topic, group}`
    pub handler_errors: IntCounterVec,
    /// `hissaback_actor_restarts_total{actor}`
    pub restarts: IntCounterVec,
    /// `hissaback_consumer_lag{topic, group}`: messages not read yet (this instance's share)
    pub lag: IntGaugeVec,
}

impl ConsumerMetrics {
    pub fn new() -> Self {
        let counter = |name: &str, help: &str, labels: &[&str]| IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
        Self {
            consumed: counter("hissaback_events_consumed_total", "Events handled and committed", &["topic", "group"]),
            dead_letters: counter("hissaback_events_dead_lettered_total", "Undecodable events moved to the dead-letter topic", &["topic", "group"]),
            handler_errors: counter("hissaback_event_handler_errors_total", "Handler failures (each retried)", &["topic", "group"]),
            restarts: counter("hissaback_actor_restarts_total", "Actor restarts by their supervisor", &["actor"]),
            lag: IntGaugeVec::new(Opts::new("hissaback_consumer_lag", "Messages not read yet by a consumer group, on this instance's partitions"), &["topic", "group"])
                .expect("valid metric"),
        }
    }

    /// Registers every metric in `registry` (once per registry).
    pub fn register(&self, registry: &Registry) -> prometheus::Result<()> {
        for c in [&self.consumed, &self.dead_letters, &self.handler_errors, &self.restarts] {
            registry.register(Box::new(c.clone()))?;
        }
        registry.register(Box::new(self.lag.clone()))
    }
}

impl Default for ConsumerMetrics {
    fn default() -> Self {
        Self::new()
    }
}
