//! Metrics the actors maintain, registered once by the service into its registry.

use prometheus::{GaugeVec, IntCounterVec, IntGaugeVec, Opts, Registry};

/// Stream-consumer metrics (shared label names: `topic`, `group`, `actor`).
#[derive(Clone)]
pub struct ConsumerMetrics {
    /// `hissaback_events_consumed_total{topic, group}`: events applied (not parked) and committed
    pub consumed: IntCounterVec,
    /// `hissaback_consumer_dead_letters_total{topic, group, reason}`: messages parked on
    /// `<topic>.dead-letter` (`reason`: `undecodable`, `handler_failed`)
    pub dead_letters: IntCounterVec,
    /// `hissaback_event_handler_errors_total{topic, group}`: failed handler calls (a slice of
    /// a batch or a single event), each retried or followed by parking
    pub handler_errors: IntCounterVec,
    /// `hissaback_actor_restarts_total{actor}`
    pub restarts: IntCounterVec,
    /// `hissaback_consumer_lag{topic, group}`: messages not read yet (this instance's share)
    pub lag: IntGaugeVec,
    /// `hissaback_consumer_stuck_seconds{topic, group}`: how long the batch in hand has been
    /// in progress (0 between batches; updated every second while busy)
    pub stuck_seconds: GaugeVec,
}

impl ConsumerMetrics {
    pub fn new() -> Self {
        let counter = |name: &str, help: &str, labels: &[&str]| IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
        Self {
            consumed: counter("hissaback_events_consumed_total", "Events applied and committed", &["topic", "group"]),
            dead_letters: counter(
                "hissaback_consumer_dead_letters_total",
                "Messages parked on the dead-letter topic, by reason",
                &["topic", "group", "reason"],
            ),
            handler_errors: counter("hissaback_event_handler_errors_total", "Failed handler calls (each retried or followed by parking)", &["topic", "group"]),
            restarts: counter("hissaback_actor_restarts_total", "Actor restarts by their supervisor", &["actor"]),
            lag: IntGaugeVec::new(Opts::new("hissaback_consumer_lag", "Messages not read yet by a consumer group, on this instance's partitions"), &["topic", "group"])
                .expect("valid metric"),
            stuck_seconds: GaugeVec::new(
                Opts::new("hissaback_consumer_stuck_seconds", "How long a consumer's current batch has been in progress (0 between batches)"),
                &["topic", "group"],
            )
            .expect("valid metric"),
        }
    }

    /// Registers every metric in `registry` (once per registry).
    pub fn register(&self, registry: &Registry) -> prometheus::Result<()> {
        for c in [&self.consumed, &self.dead_letters, &self.handler_errors, &self.restarts] {
            registry.register(Box::new(c.clone()))?;
        }
        registry.register(Box::new(self.lag.clone()))?;
        registry.register(Box::new(self.stuck_seconds.clone()))
    }
}

impl Default for ConsumerMetrics {
    fn default() -> Self {
        Self::new()
    }
}
