//! The usage recorder: counts API requests per key, minute, route and status class, counts
//! clicks per campaign and day, and keeps the audit log, all written in batches.
//!
//! The request path only pushes notes onto a bounded lock-free queue through the [`Usage`]
//! facade (no wake of the recorder's thread, no system call: a mailbox message cost one per
//! request); the actor drains the queue every [`DRAIN_EVERY`], and every `flush_every` the actor writes the counters it summed and the audit rows it
//! queued, one batch per kind. A failed write keeps its batch for the next flush (counters
//! are merged back, so nothing counted is lost while the store is down). The audit queue is
//! bounded: beyond `max_pending_audit` rows the oldest are dropped and counted in
//! `hissaback_audit_dropped_total`, so a long store outage cannot exhaust memory.

mod handlers;

use crate::ports::{AuditEntry, ClickCell, UsageCell, UsageCounts, UsageSink};
use actix::prelude::*;
use chrono::{DateTime, Utc};
use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

pub use handlers::{Answered, Audited, Clicked, Flush, Requested};

/// The recorder's own metrics.
#[derive(Clone)]
pub struct UsageMetrics {
    /// `hissaback_usage_flushes_total{kind, outcome}` (`usage`/`clicks`/`audit`, `ok`/`error`)
    pub flushes: IntCounterVec,
    /// `hissaback_audit_dropped_total`: audit rows dropped because the queue was full
    pub audit_dropped: IntCounter,
    /// `hissaback_audit_pending`: audit rows waiting for the next flush
    pub audit_pending: IntGauge,
    /// `hissaback_usage_notes_dropped_total`: notes refused by a full mailbox
    pub notes_dropped: IntCounter,
}

impl UsageMetrics {
    pub fn new() -> Self {
        let flushes = IntCounterVec::new(
            Opts::new("hissaback_usage_flushes_total", "Batched writes of usage counters, clicks and audit rows"),
            &["kind", "outcome"],
        )
        .expect("valid metric");
        for kind in ["usage", "clicks", "audit"] {
            for outcome in ["ok", "error"] {
                flushes.with_label_values(&[kind, outcome]);
            }
        }
        Self {
            flushes,
            audit_dropped: IntCounter::new("hissaback_audit_dropped_total", "Audit rows dropped because the queue was full")
                .expect("valid metric"),
            audit_pending: IntGauge::new("hissaback_audit_pending", "Audit rows waiting for the next flush").expect("valid metric"),
            notes_dropped: IntCounter::new("hissaback_usage_notes_dropped_total", "Usage and audit notes dropped because the recorder's mailbox was full")
                .expect("valid metric"),
        }
    }

    pub fn register(&self, registry: &Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.flushes.clone()))?;
        registry.register(Box::new(self.audit_dropped.clone()))?;
        registry.register(Box::new(self.notes_dropped.clone()))?;
        registry.register(Box::new(self.audit_pending.clone()))
    }
}

impl Default for UsageMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The start of the minute `at` falls in.
pub fn minute_of(at: DateTime<Utc>) -> DateTime<Utc> {
    crate::ports::UsageResolution::Minute.floor(at)
}

/// `2xx` for 200–299 and so on.
pub fn status_class(status: u16) -> String {
    format!("{}xx", (status / 100).clamp(1, 5))
}

/// The actor. Create it with [`UsageRecorder::start`], talk to it through [`Usage`].
pub struct UsageRecorder {
    /// Notes from the request path (absent for a recorder fed by messages only, in tests).
    notes: Option<crossbeam_channel::Receiver<Note>>,
    usage: HashMap<UsageCell, UsageCounts>,
    clicks: HashMap<ClickCell, u64>,
    audit: VecDeque<AuditEntry>,
    sink: Arc<dyn UsageSink>,
    flush_every: Duration,
    max_pending_audit: usize,
    metrics: UsageMetrics,
    /// Failed flushes (a store outage fails one a second): logged once, then a reminder a minute.
    failing: hissaback_topics::lograte::LogRate,
}

/// What one flush wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flushed {
    pub usage_cells: usize,
    pub click_cells: usize,
    pub audit_rows: usize,
}

impl UsageRecorder {
    pub fn new(sink: Arc<dyn UsageSink>, flush_every: Duration, max_pending_audit: usize, metrics: UsageMetrics) -> Self {
        Self {
            notes: None,
            usage: HashMap::new(),
            clicks: HashMap::new(),
            audit: VecDeque::new(),
            sink,
            flush_every,
            max_pending_audit: max_pending_audit.max(1),
            metrics,
            failing: hissaback_topics::lograte::LogRate::new("usage recorder: writing usage batches (will retry)").warn(),
        }
    }

    /// Starts the recorder under a supervisor on the current arbiter and returns its facade.
    pub fn start(sink: Arc<dyn UsageSink>, flush_every: Duration, max_pending_audit: usize, metrics: UsageMetrics) -> Usage {
        let facade_metrics = metrics.clone();
        let (tx, rx) = crossbeam_channel::bounded(MAILBOX_CAPACITY);
        let addr = Supervisor::start(move |_| UsageRecorder { notes: Some(rx), ..UsageRecorder::new(sink, flush_every, max_pending_audit, metrics) });
        Usage { addr, metrics: facade_metrics, notes: tx }
    }

    /// Takes every note waiting in the queue.
    pub fn drain(&mut self) {
        let Some(notes) = self.notes.clone() else { return };
        while let Ok(note) = notes.try_recv() {
            match note {
                Note::Answered(Answered { usage, audit }) => {
                    if let Some((cell, counts)) = usage {
                        self.count(cell, counts);
                    }
                    self.audit(audit);
                }
                Note::Clicked(cell) => self.click(cell, 1),
            }
        }
    }

    pub fn count(&mut self, cell: UsageCell, counts: UsageCounts) {
        self.usage.entry(cell).or_default().add(counts);
    }

    pub fn click(&mut self, cell: ClickCell, n: u64) {
        *self.clicks.entry(cell).or_default() += n;
    }

    pub fn audit(&mut self, entry: AuditEntry) {
        if self.audit.len() >= self.max_pending_audit {
            self.audit.pop_front();
            self.metrics.audit_dropped.inc();
        }
        self.audit.push_back(entry);
        self.metrics.audit_pending.set(self.audit.len() as i64);
    }

    pub fn is_idle(&self) -> bool {
        self.usage.is_empty() && self.clicks.is_empty() && self.audit.is_empty()
    }

    fn flush_future(&mut self) -> ResponseActFuture<Self, Result<Flushed, String>> {
        self.drain();
        let mut usage: Vec<_> = self.usage.drain().collect();
        usage.sort_by(|a, b| a.0.cmp(&b.0));
        let mut clicks: Vec<_> = self.clicks.drain().collect();
        clicks.sort_by(|a, b| a.0.cmp(&b.0));
        let audit: Vec<_> = self.audit.drain(..).collect();
        self.metrics.audit_pending.set(0);
        let sink = self.sink.clone();
        Box::pin(
            async move {
                let u = if usage.is_empty() { Ok(()) } else { sink.add_usage(&usage).await };
                let c = if clicks.is_empty() { Ok(()) } else { sink.add_clicks(&clicks).await };
                let a = if audit.is_empty() { Ok(()) } else { sink.append_audit(&audit).await };
                (usage, u, clicks, c, audit, a)
            }
            .into_actor(self)
            .map(|(usage, u, clicks, c, audit, a), act, _ctx| {
                let mut flushed = Flushed::default();
                let mut errors = Vec::new();
                let outcome = |kind: &str, r: &anyhow::Result<()>| {
                    act.metrics.flushes.with_label_values(&[kind, if r.is_ok() { "ok" } else { "error" }]).inc();
                };
                outcome("usage", &u);
                outcome("clicks", &c);
                outcome("audit", &a);
                match u {
                    Ok(()) => flushed.usage_cells = usage.len(),
                    Err(e) => {
                        errors.push(format!("usage: {e}"));
                        for (cell, counts) in usage {
                            act.count(cell, counts);
                        }
                    }
                }
                match c {
                    Ok(()) => flushed.click_cells = clicks.len(),
                    Err(e) => {
                        errors.push(format!("clicks: {e}"));
                        for (cell, n) in clicks {
                            act.click(cell, n);
                        }
                    }
                }
                match a {
                    Ok(()) => flushed.audit_rows = audit.len(),
                    Err(e) => {
                        errors.push(format!("audit: {e}"));
                        // Older rows go back in front of newer ones, within the bound.
                        let newer: Vec<_> = act.audit.drain(..).collect();
                        for entry in audit.into_iter().chain(newer) {
                            act.audit(entry);
                        }
                    }
                }
                if errors.is_empty() {
                    act.failing.success();
                    Ok(flushed)
                } else {
                    let message = errors.join("; ");
                    act.failing.failure(&message);
                    Err(message)
                }
            }),
        )
    }
}

impl Actor for UsageRecorder {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // The request path uses `try_send`, so this bounds what waits while a flush runs.
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
        ctx.run_interval(DRAIN_EVERY, |act, _ctx| act.drain());
        ctx.run_interval(self.flush_every, |act, ctx| {
            act.drain();
            if !act.is_idle() {
                // `wait` serialises flushes: an older batch never lands after a newer one.
                ctx.wait(act.flush_future().map(|_, _, _| ()));
            }
        });
    }
}

impl Supervised for UsageRecorder {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        tracing::warn!(cells = self.usage.len(), audit = self.audit.len(), "usage recorder restarting");
    }
}

/// Messages the recorder's mailbox holds while it is busy (a flush waiting on the store).
/// Beyond it the request path drops the note rather than grow memory or wait, and counts it
/// in `hissaback_usage_notes_dropped_total`.
pub const MAILBOX_CAPACITY: usize = 100_000;

/// How often the recorder takes the notes waiting in its queue.
pub const DRAIN_EVERY: Duration = Duration::from_millis(20);

/// A note from the request path.
pub enum Note {
    Answered(Answered),
    Clicked(ClickCell),
}

/// The facade the rest of the service uses.
#[derive(Clone)]
pub struct Usage {
    addr: Addr<UsageRecorder>,
    metrics: UsageMetrics,
    notes: crossbeam_channel::Sender<Note>,
}

impl Usage {
    fn dropped<M>(&self, sent: Result<(), SendError<M>>) {
        if sent.is_err() {
            self.metrics.notes_dropped.inc();
        }
    }

    fn noted(&self, note: Note) {
        if self.notes.try_send(note).is_err() {
            self.metrics.notes_dropped.inc();
        }
    }

    /// Fire-and-forget: one answered request of a key.
    pub fn requested(&self, cell: UsageCell, rate_limited: bool) {
        self.dropped(self.addr.try_send(Requested { cell, counts: UsageCounts { requests: 1, rate_limited: u64::from(rate_limited) } }));
    }

    /// Fire-and-forget: one answered request, its usage count (when a key was presented) and
    /// its audit row together.
    pub fn answered(&self, usage: Option<UsageCell>, rate_limited: bool, audit: AuditEntry) {
        let usage = usage.map(|cell| (cell, UsageCounts { requests: 1, rate_limited: u64::from(rate_limited) }));
        self.noted(Note::Answered(Answered { usage, audit }));
    }

    /// Fire-and-forget: one click on a campaign's link.
    pub fn clicked(&self, affiliate_id: u64, campaign_id: u64, at: DateTime<Utc>) {
        self.noted(Note::Clicked(ClickCell { affiliate_id, campaign_id, day: at.date_naive() }));
    }

    /// Fire-and-forget: one audit row.
    pub fn audited(&self, entry: AuditEntry) {
        self.dropped(self.addr.try_send(Audited(entry)));
    }

    /// Writes everything pending now and waits for it (shutdown, tests).
    pub async fn flush(&self) -> Result<Flushed, String> {
        self.addr.send(Flush).await.map_err(|e| e.to_string())?
    }
}

#[cfg(test)]
mod tests;
