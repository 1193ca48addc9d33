//! The dispatcher actor: a queue of due deliveries, sent with a global and a per-endpoint
//! cap so one slow or dead endpoint never delays the others, and the intake that turns
//! `webhook-jobs` into stored, queued deliveries.
//!
//! # What it holds
//!
//! Every delivery it holds is kept whole (payload included), so an attempt costs no store
//! read: queued in its endpoint's queue, in flight, or being written. (Past
//! [`LOADED_PER_ENDPOINT`] queued for one endpoint, a dead one's backlog say, deliveries are
//! held by key and read at their attempt, as are orphans adopted from another instance, which
//! may have finished them meanwhile.) Webhooks are cached for
//! [`WEBHOOK_TTL`] for first attempts; the intake hands over the webhooks it read with each
//! batch of new deliveries, and a manual redelivery drops the cached one.
//!
//! # Webhooks change under it
//!
//! The dispatcher never writes a webhook back: the sender changes only an endpoint's health,
//! through [`crate::store::Store::update_webhook`] (on the webhook as stored then; a deleted
//! one stays deleted). What it signs with is the webhook as stored when the attempt starts:
//! - the routes report each change (a rotated secret, re-enabling, a deletion) with its
//!   version (`updated_at`, which only moves forward); the cached copy is dropped (a deletion
//!   is cached as gone) and, for a while ([`FLOOR_KEEP`]), no copy older than that version is
//!   cached again, such as one an attempt in flight or the intake read before the change;
//! - a retry (an attempt after a failed one) reads the webhook from the store rather than the
//!   cache: a change made through another instance counts for it at once. Retries follow
//!   failures, so these reads are few; first attempts, most of the traffic, use the cache.
//!
//! # Queues and caps
//!
//! Each endpoint (webhook) has its own queue, ordered by due time, and at most
//! `per_endpoint_concurrency` attempts in flight; `ready` orders by their first due time the
//! endpoints that have something queued and a free slot. An endpoint at its cap (a receiver
//! that never answers, say) leaves `ready`, so its backlog costs nothing to skip, and it
//! never takes more than its own slots of the global `max_concurrency`. An endpoint whose
//! last attempt got no answer at all (a timeout, a refused connection) gets one slot until it
//! answers again: once its first attempts timed out, a dead receiver holds one slot, not
//! `per_endpoint_concurrency`, so even many of them leave the global cap to the healthy ones.
//!
//! # Bookkeeping in batches
//!
//! A finished attempt's record (the attempt appended, its state and next due time) waits in
//! `unwritten` and is written with the others of its tick in one `put_deliveries`. Only once
//! written is a delivery queued for its retry, or let go when done: what is sent is never
//! ahead of what the store says by more than one attempt. (A process that dies loses at most
//! a tick of attempt records: those deliveries are still pending in the store and are sent
//! again after the restart, with the same `webhook-id`: at least once, as before.)
//!
//! # Owners and orphans
//!
//! At start the dispatcher reloads the pending deliveries it owns (`server.instance_id`), so a
//! restarted instance carries on and, in a cluster, never sends another instance's retries
//! twice. Every `sweep_every` it says it is alive (a heartbeat row) and adopts pending
//! deliveries overdue by more than `orphan_grace` whose owner has been silent that long: the
//! owner stopped or died, and without the sweep they would wait for its restart. A busy
//! owner keeps its backlog. (An adopted delivery is read again before its attempt here, and
//! let go when it is no longer pending: another instance got to it first.)

use super::sender::{Attempted, Sender};
use crate::metrics::Metrics;
use crate::store::{DeliveryRecord, DeliveryState, SharedStore, StoreResult, WebhookRecord};
use actix::prelude::*;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use hissaback_actors::consumer::BatchHandler;
use hissaback_topics::events::WebhookJob;
use hissaback_topics::Delivery;
use sha2::{Digest, Sha256};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the queues are looked at for due retries and finished attempts are written.
const TICK: Duration = Duration::from_millis(50);
/// Finished attempts written at once without waiting for the tick.
const WRITE_AT: usize = 512;
/// How long a webhook read from the store is used for first attempts before it is read again.
const WEBHOOK_TTL: Duration = Duration::from_secs(5);
/// How long a reported change keeps older copies of its webhook out of the cache: longer
/// than any attempt (or intake read) that started before it can take to come back.
const FLOOR_KEEP: Duration = Duration::from_secs(600);
/// When the store cannot be read for an attempt, it is tried again after this long.
const STORE_RETRY: Duration = Duration::from_secs(5);
/// When finished attempts could not be written, the write is tried again after this long.
const WRITE_RETRY: Duration = Duration::from_secs(1);
/// Deliveries queued for one endpoint beyond this many are held without their record (read
/// again at their attempt): a dead endpoint's backlog must not grow memory by its payloads.
const LOADED_PER_ENDPOINT: usize = 10_000;

/// A delivery's key: (webhook id, delivery id).
type Key = (u64, String);

/// A delivery held here: queued, in flight, or waiting for its record to be written.
struct Held {
    /// The delivery as stored; `None`: read it from the store before its attempt (held
    /// light behind a long backlog, or adopted from another instance, which may have
    /// finished it meanwhile).
    record: Option<DeliveryRecord>,
    /// Set while queued: when it is due.
    due: Option<DateTime<Utc>>,
    /// A manual redelivery asked for while in flight or being written: queued again, at this
    /// time, once its record is written.
    rerun: Option<DateTime<Utc>>,
}

/// One endpoint's queue and attempts in flight.
#[derive(Default)]
struct Endpoint {
    queue: BTreeSet<(DateTime<Utc>, String)>,
    in_flight: usize,
    /// Its entry in `Dispatcher::ready`, if any.
    ready_at: Option<DateTime<Utc>>,
}

/// A webhook as last read or changed here (`None`: deleted).
struct Cached {
    webhook: Option<WebhookRecord>,
    at: Instant,
}

/// The oldest copy of a webhook the cache may take, after a change the routes reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Floor {
    /// Copies older than this version (`updated_at`) are stale.
    Version(DateTime<Utc>),
    /// Deleted: every copy is stale.
    Deleted,
}

pub struct Dispatcher {
    sender: Arc<Sender>,
    store: SharedStore,
    held: HashMap<Key, Held>,
    endpoints: HashMap<u64, Endpoint>,
    /// Endpoints with something queued and a free slot, by their first due time.
    ready: BTreeSet<(DateTime<Utc>, u64)>,
    webhooks: HashMap<u64, Cached>,
    /// Webhooks changed lately through the API: the oldest copy of each the cache may take,
    /// and when the change was reported.
    floors: HashMap<u64, (Floor, Instant)>,
    /// Endpoints whose last attempt got no answer: one attempt at a time.
    unreachable: HashSet<u64>,
    /// Finished attempts not yet written.
    unwritten: Vec<DeliveryRecord>,
    writing: bool,
    /// After a failed write: no other before this time.
    write_after: Option<Instant>,
    queued: usize,
    /// This instance's `server.instance_id`: the owner of the deliveries it queues.
    instance_id: Arc<str>,
    sweep_every: Duration,
    orphan_grace: chrono::Duration,
    in_flight: usize,
    max_in_flight: usize,
    max_per_endpoint: usize,
    metrics: Metrics,
    /// Store reads and writes that fail (an outage fails each tick): logged once, then a reminder a minute.
    store_failing: hissaback_topics::lograte::LogRate,
}

/// Queue a stored, pending delivery for its next attempt (a manual redelivery, a reload).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Schedule {
    pub delivery: DeliveryRecord,
    pub due: DateTime<Utc>,
}

/// Queue new deliveries the intake stored, with the webhooks they go to as just read.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ScheduleNew {
    pub deliveries: Vec<DeliveryRecord>,
    pub webhooks: Vec<WebhookRecord>,
}

/// A webhook changed or was deleted through the API: drop the cached copy and any older one.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Forget {
    pub webhook_id: u64,
    pub floor: Floor,
}

impl Dispatcher {
    /// `caps`: attempts in flight at most, in all and per endpoint.
    fn new(
        sender: Arc<Sender>,
        store: SharedStore,
        caps: (usize, usize),
        instance_id: Arc<str>,
        sweep_every: Duration,
        orphan_grace: chrono::Duration,
        metrics: Metrics,
    ) -> Self {
        Dispatcher {
            sender,
            store,
            held: HashMap::new(),
            endpoints: HashMap::new(),
            ready: BTreeSet::new(),
            webhooks: HashMap::new(),
            floors: HashMap::new(),
            unreachable: HashSet::new(),
            unwritten: Vec::new(),
            writing: false,
            write_after: None,
            queued: 0,
            instance_id,
            sweep_every,
            orphan_grace,
            in_flight: 0,
            max_in_flight: caps.0.max(1),
            max_per_endpoint: caps.1.max(1),
            metrics,
            store_failing: hissaback_topics::lograte::LogRate::new("webhook dispatcher: store unreachable, retrying").warn(),
        }
    }

    fn set_depth(&self) {
        self.metrics.webhook_queue_depth.set(self.queued as i64);
    }

    /// Puts the endpoint's entry in `ready` right after its queue or slots changed.
    fn refresh_ready(&mut self, webhook_id: u64) {
        let Some(ep) = self.endpoints.get_mut(&webhook_id) else { return };
        if let Some(at) = ep.ready_at.take() {
            self.ready.remove(&(at, webhook_id));
        }
        let cap = if self.unreachable.contains(&webhook_id) { 1 } else { self.max_per_endpoint };
        if ep.in_flight < cap {
            if let Some((due, _)) = ep.queue.first() {
                ep.ready_at = Some(*due);
                self.ready.insert((*due, webhook_id));
            }
        }
        if ep.queue.is_empty() && ep.in_flight == 0 {
            self.endpoints.remove(&webhook_id);
        }
    }

    fn push(&mut self, webhook_id: u64, id: String, due: DateTime<Utc>) {
        let ep = self.endpoints.entry(webhook_id).or_default();
        if ep.queue.len() >= LOADED_PER_ENDPOINT {
            if let Some(h) = self.held.get_mut(&(webhook_id, id.clone())) {
                h.record = None;
            }
        }
        ep.queue.insert((due, id));
        self.queued += 1;
        self.refresh_ready(webhook_id);
    }

    /// Queues a delivery (`manual`: asked for by the affiliate, which wins over what is held).
    fn enqueue(&mut self, d: DeliveryRecord, due: DateTime<Utc>, manual: bool) {
        let key = (d.webhook_id, d.id.clone());
        let Some(h) = self.held.get_mut(&key) else {
            self.held.insert(key.clone(), Held { record: Some(d), due: Some(due), rerun: None });
            self.push(key.0, key.1, due);
            return;
        };
        match h.due {
            // Queued: keep one copy, due at the earlier time (a manual redelivery of a delivery
            // waiting for its retry goes now), with the redelivery's record.
            Some(old) => {
                if manual {
                    h.record = Some(d);
                }
                if due < old {
                    h.due = Some(due);
                    if let Some(ep) = self.endpoints.get_mut(&key.0) {
                        ep.queue.remove(&(old, key.1.clone()));
                        ep.queue.insert((due, key.1));
                    }
                    self.refresh_ready(key.0);
                }
            }
            // In flight or being written: a redelivery runs once that ends; anything else
            // (a reload, an adoption) is the attempt under way.
            None if manual => h.rerun = Some(h.rerun.map_or(due, |r| r.min(due))),
            None => {}
        }
    }

    /// Queues every pending delivery not held here that `take` accepts (`orphans`: another
    /// instance's, read again before their attempt here).
    fn adopt(&mut self, pending: Vec<DeliveryRecord>, orphans: bool, take: impl Fn(&DeliveryRecord) -> bool) -> usize {
        let now = Utc::now();
        let mut adopted = 0;
        for d in pending {
            let key = (d.webhook_id, d.id.clone());
            if self.held.contains_key(&key) || !take(&d) {
                continue;
            }
            let due = d.next_attempt_at.unwrap_or(now);
            self.enqueue(d, due, false);
            if orphans {
                if let Some(h) = self.held.get_mut(&key) {
                    h.record = None;
                }
            }
            adopted += 1;
        }
        self.set_depth();
        adopted
    }

    /// The webhook to attempt with, if cached and fresh (`Some(None)`: known to be gone).
    fn cached_webhook(&self, webhook_id: u64) -> Option<Option<WebhookRecord>> {
        self.webhooks.get(&webhook_id).filter(|c| c.at.elapsed() < WEBHOOK_TTL).map(|c| c.webhook.clone())
    }

    /// Caches a copy of a webhook (`None`: gone) read or written by an attempt or the
    /// intake, unless it is older than the one held here (an endpoint transition written
    /// after that read; or the webhook is known gone) or than a change the routes reported
    /// (see [`Floor`]).
    fn cache_webhook(&mut self, webhook_id: u64, webhook: Option<WebhookRecord>) {
        if let Some(w) = &webhook {
            let stale = match self.floors.get(&webhook_id) {
                Some((Floor::Deleted, _)) => true,
                Some((Floor::Version(v), _)) => w.updated_at < *v,
                None => false,
            };
            // Known gone stays gone (ids are never used again).
            let newer_here = self.webhooks.get(&webhook_id).is_some_and(|c| c.webhook.as_ref().is_none_or(|mine| mine.updated_at > w.updated_at));
            if stale || newer_here {
                return;
            }
        }
        self.webhooks.insert(webhook_id, Cached { webhook, at: Instant::now() });
    }

    /// A change the routes reported: the cached copy goes unless it is that version or newer;
    /// a deleted webhook is cached as gone.
    fn forget_webhook(&mut self, webhook_id: u64, floor: Floor) {
        let floor = match (self.floors.get(&webhook_id), floor) {
            (Some((Floor::Deleted, _)), _) | (_, Floor::Deleted) => Floor::Deleted,
            (Some((Floor::Version(old), _)), Floor::Version(new)) => Floor::Version((*old).max(new)),
            (None, f) => f,
        };
        self.floors.insert(webhook_id, (floor, Instant::now()));
        match floor {
            Floor::Deleted => {
                self.webhooks.insert(webhook_id, Cached { webhook: None, at: Instant::now() });
            }
            Floor::Version(v) => {
                let current = self.webhooks.get(&webhook_id).and_then(|c| c.webhook.as_ref()).is_some_and(|w| w.updated_at >= v);
                if !current {
                    self.webhooks.remove(&webhook_id);
                }
            }
        }
    }

    /// Lets go of floors older than [`FLOOR_KEEP`].
    fn prune_floors(&mut self) {
        if !self.floors.is_empty() {
            self.floors.retain(|_, (_, at)| at.elapsed() < FLOOR_KEEP);
        }
    }

    /// Starts every due delivery the caps allow.
    fn dispatch_due(&mut self, ctx: &mut Context<Self>) {
        let now = Utc::now();
        while self.in_flight < self.max_in_flight {
            let Some(&(due, webhook_id)) = self.ready.first() else { break };
            if due > now {
                break;
            }
            let Some(ep) = self.endpoints.get_mut(&webhook_id) else {
                self.ready.remove(&(due, webhook_id));
                continue;
            };
            let Some((_, id)) = ep.queue.pop_first() else {
                self.refresh_ready(webhook_id);
                continue;
            };
            self.queued -= 1;
            let key = (webhook_id, id);
            let Some(h) = self.held.get_mut(&key) else {
                self.refresh_ready(webhook_id);
                continue;
            };
            h.due = None;
            let record = h.record.clone();
            ep.in_flight += 1;
            self.in_flight += 1;
            self.refresh_ready(webhook_id);
            let cached = self.cached_webhook(webhook_id);
            let (sender, store) = (self.sender.clone(), self.store.clone());
            let delivery_id = key.1.clone();
            let attempt = async move {
                let record = match record {
                    Some(r) => r,
                    None => match store.get_delivery(webhook_id, &delivery_id).await? {
                        Some(r) if r.state == DeliveryState::Pending => r,
                        _ => return Ok(None),
                    },
                };
                // A retry reads the webhook as stored now (see "Webhooks change under it"),
                // unless it is known to be gone.
                let cached = cached.filter(|w| w.is_none() || record.attempts.is_empty());
                let (webhook, fetched) = match cached {
                    Some(w) => (w, false),
                    None => (store.get_webhook(record.affiliate_id, record.webhook_id).await?, true),
                };
                let mut done = sender.attempt(webhook.as_ref(), record).await;
                if fetched && done.webhook.is_none() {
                    done.webhook = Some(webhook);
                }
                StoreResult::Ok(Some(done))
            };
            ctx.spawn(attempt.into_actor(self).map(move |result, act, ctx| {
                act.finished(key, result);
                act.dispatch_due(ctx);
                if act.unwritten.len() >= WRITE_AT {
                    act.write(ctx);
                }
            }));
        }
        self.set_depth();
    }

    /// An attempt ended: its slot is free, its record waits for the next write (`None`: an
    /// adopted delivery found finished elsewhere, let go).
    fn finished(&mut self, key: Key, mut result: StoreResult<Option<Attempted>>) {
        self.in_flight -= 1;
        if let Some(ep) = self.endpoints.get_mut(&key.0) {
            ep.in_flight -= 1;
        }
        if let Ok(Some(done)) = &mut result {
            if let Some(w) = done.webhook.take() {
                self.cache_webhook(key.0, w);
            }
            if done.unreachable {
                self.unreachable.insert(key.0);
            } else {
                self.unreachable.remove(&key.0);
            }
        }
        self.refresh_ready(key.0);
        let Some(h) = self.held.get_mut(&key) else { return };
        match result {
            // Not pending in the store (finished elsewhere, or gone): let go, unless the
            // affiliate asked for it again meanwhile (then the store has it pending again).
            Ok(None) => match h.rerun.take() {
                Some(due) => {
                    h.due = Some(due);
                    self.push(key.0, key.1, due);
                }
                None => {
                    self.held.remove(&key);
                }
            },
            Ok(Some(Attempted { delivery, .. })) => {
                let mut delivery = delivery;
                if let Some(due) = h.rerun.take() {
                    redeliver(&mut delivery, due, &self.instance_id);
                }
                h.record = Some(delivery.clone());
                self.unwritten.push(delivery);
            }
            Err(e) => {
                // The webhook could not be read: nothing was sent and the store still has the
                // delivery pending as held here; try again a little later.
                tracing::debug!(error = %e, webhook = key.0, "webhook attempt could not read its endpoint; retrying");
                self.store_failing.failure(&format_args!("reading webhook {}: {e}", key.0));
                let due = h.rerun.take().unwrap_or_else(|| Utc::now() + chrono::Duration::from_std(STORE_RETRY).unwrap_or_default());
                h.due = Some(due);
                self.push(key.0, key.1, due);
            }
        }
    }

    /// Writes the finished attempts in one `put_deliveries` (one at a time), then queues the
    /// retries and lets go of the deliveries that are done.
    fn write(&mut self, ctx: &mut Context<Self>) {
        if self.writing || self.unwritten.is_empty() || self.write_after.is_some_and(|t| Instant::now() < t) {
            return;
        }
        self.writing = true;
        let batch = std::mem::take(&mut self.unwritten);
        let store = self.store.clone();
        let fut = async move {
            let result = store.put_deliveries(&batch).await;
            (batch, result)
        };
        ctx.spawn(fut.into_actor(self).map(|(batch, result), act, ctx| {
            act.writing = false;
            match result {
                Ok(()) => {
                    act.store_failing.success();
                    act.write_after = None;
                    for d in batch {
                        act.written(d);
                    }
                    act.dispatch_due(ctx);
                }
                Err(e) => {
                    // Held until written: nothing is retried or let go before the store knows.
                    tracing::debug!(error = %e, deliveries = batch.len(), "webhook attempts could not be recorded; retrying");
                    act.store_failing.failure(&format_args!("recording {} attempts: {e}", batch.len()));
                    let mut batch = batch;
                    batch.append(&mut act.unwritten);
                    act.unwritten = batch;
                    act.write_after = Some(Instant::now() + WRITE_RETRY);
                }
            }
        }));
    }

    /// A delivery's record is written: queue its retry, or let it go.
    fn written(&mut self, d: DeliveryRecord) {
        let key = (d.webhook_id, d.id.clone());
        let Some(h) = self.held.get_mut(&key) else { return };
        if let Some(due) = h.rerun.take() {
            // Redelivery asked for while being written: write that too, then queue it.
            let mut d = d;
            redeliver(&mut d, due, &self.instance_id);
            h.record = Some(d.clone());
            self.unwritten.push(d);
            return;
        }
        match (d.state, d.next_attempt_at) {
            (DeliveryState::Pending, due) => {
                let due = due.unwrap_or_else(Utc::now);
                h.due = Some(due);
                self.push(key.0, key.1, due);
            }
            _ => {
                self.held.remove(&key);
            }
        }
    }
}

/// What the redelivery route writes: pending, one manual attempt at `due`, owned here.
fn redeliver(d: &mut DeliveryRecord, due: DateTime<Utc>, me: &str) {
    d.state = DeliveryState::Pending;
    d.manual = true;
    d.next_attempt_at = Some(due);
    d.owner = Some(me.to_string());
    d.updated_at = Utc::now();
}

impl Actor for Dispatcher {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Deliveries that were pending when the service stopped carry on where they were.
        let store = self.store.clone();
        ctx.spawn(
            async move { store.pending_deliveries().await }.into_actor(self).map(|pending, act, ctx| match pending {
                Ok(list) => {
                    // Its own (and owner-less old rows); other instances' wait for the sweep.
                    let me = act.instance_id.clone();
                    act.adopt(list, false, |d| d.owner.as_deref().is_none_or(|o| o == &*me));
                    act.dispatch_due(ctx);
                }
                Err(e) => tracing::error!(error = %e, "could not reload pending webhook deliveries"),
            }),
        );
        ctx.run_interval(TICK, |act, ctx| {
            act.write(ctx);
            act.dispatch_due(ctx);
            act.prune_floors();
        });
        ctx.run_interval(self.sweep_every, |act, ctx| {
            let (store, me, grace) = (act.store.clone(), act.instance_id.clone(), act.orphan_grace);
            ctx.spawn(sweep(store, me, grace).into_actor(act).map(|orphans, act, ctx| match orphans {
                Ok(list) => {
                    let adopted = act.adopt(list, true, |_| true);
                    if adopted > 0 {
                        tracing::warn!(adopted, "adopted overdue webhook deliveries of a stopped instance");
                        act.metrics.webhook_orphans_adopted.inc_by(adopted as u64);
                        act.dispatch_due(ctx);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "could not sweep pending webhook deliveries"),
            }));
        });
    }
}

/// The settings row where an instance says it is alive (written every sweep).
fn heartbeat_key(instance: &str) -> String {
    format!("webhooks.instance_alive.{instance}")
}

/// One sweep: says this instance is alive, then takes over the pending deliveries overdue by
/// more than `grace` whose owner has not said so for `grace` (it stopped or died; a busy but
/// live owner keeps its deliveries). Taken deliveries are written with this instance as
/// their owner (one batch) before they are queued.
async fn sweep(store: SharedStore, me: Arc<str>, grace: chrono::Duration) -> anyhow::Result<Vec<DeliveryRecord>> {
    let now = Utc::now();
    store.put_setting(&heartbeat_key(&me), &now.to_rfc3339()).await?;
    let overdue = now - grace;
    let mut alive: HashMap<String, bool> = HashMap::new();
    let mut taken = Vec::new();
    for mut d in store.pending_deliveries().await? {
        if d.owner.as_deref() == Some(&*me) || d.next_attempt_at.is_none_or(|due| due >= overdue) {
            continue;
        }
        let owner_alive = match d.owner.clone() {
            None => false,
            Some(owner) => match alive.get(&owner) {
                Some(a) => *a,
                None => {
                    let seen = store.get_setting(&heartbeat_key(&owner)).await?;
                    let a = seen
                        .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
                        .is_some_and(|t| t.to_utc() > overdue);
                    alive.insert(owner, a);
                    a
                }
            },
        };
        if owner_alive {
            continue;
        }
        d.owner = Some(me.to_string());
        taken.push(d);
    }
    store.put_deliveries(&taken).await?;
    Ok(taken)
}

impl Supervised for Dispatcher {
    /// A restarted dispatcher forgets what it held (the attempts in flight and the unwritten
    /// records were dropped with the old context; the store still has those deliveries
    /// pending) and reloads its pending deliveries in `started`.
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        self.held.clear();
        self.endpoints.clear();
        self.ready.clear();
        self.webhooks.clear();
        self.unreachable.clear();
        self.unwritten.clear();
        self.writing = false;
        self.write_after = None;
        self.queued = 0;
        self.in_flight = 0;
        self.metrics.webhook_queue_depth.set(0);
    }
}

impl Handler<Schedule> for Dispatcher {
    type Result = ();

    fn handle(&mut self, msg: Schedule, ctx: &mut Self::Context) {
        let manual = msg.delivery.manual;
        if manual {
            // The affiliate may have rotated the secret or re-enabled the endpoint first.
            self.webhooks.remove(&msg.delivery.webhook_id);
        }
        self.enqueue(msg.delivery, msg.due, manual);
        self.dispatch_due(ctx);
    }
}

impl Handler<ScheduleNew> for Dispatcher {
    type Result = ();

    fn handle(&mut self, msg: ScheduleNew, ctx: &mut Self::Context) {
        for w in msg.webhooks {
            self.cache_webhook(w.id, Some(w));
        }
        let now = Utc::now();
        for d in msg.deliveries {
            let due = d.next_attempt_at.unwrap_or(now);
            self.enqueue(d, due, false);
        }
        self.dispatch_due(ctx);
    }
}

impl Handler<Forget> for Dispatcher {
    type Result = ();

    fn handle(&mut self, msg: Forget, _ctx: &mut Self::Context) {
        self.forget_webhook(msg.webhook_id, msg.floor);
    }
}

/// The facade the rest of the service uses.
#[derive(Clone)]
pub struct WebhookDispatcher {
    addr: Addr<Dispatcher>,
    sender: Arc<Sender>,
    instance_id: Arc<str>,
}

impl WebhookDispatcher {
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        sender: Sender,
        store: SharedStore,
        max_in_flight: usize,
        max_per_endpoint: usize,
        instance_id: &str,
        sweep_every: Duration,
        orphan_grace: chrono::Duration,
        metrics: Metrics,
    ) -> Self {
        let sender = Arc::new(sender);
        let s = sender.clone();
        let instance_id: Arc<str> = Arc::from(instance_id);
        let id = instance_id.clone();
        let caps = (max_in_flight, max_per_endpoint);
        let addr = Supervisor::start(move |_| Dispatcher::new(s, store, caps, id, sweep_every, orphan_grace, metrics));
        Self { addr, sender, instance_id }
    }

    /// The owner this instance writes on the deliveries it queues.
    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }

    /// Queues a stored, pending delivery for its `next_attempt_at` (now when unset). A
    /// manual one (a redelivery) is attempted with the webhook as stored now.
    pub fn schedule(&self, d: &DeliveryRecord) {
        self.addr.do_send(Schedule { delivery: d.clone(), due: d.next_attempt_at.unwrap_or_else(Utc::now) });
    }

    /// Queues new, stored deliveries, with the webhooks they go to as just read.
    pub fn schedule_new(&self, deliveries: Vec<DeliveryRecord>, webhooks: Vec<WebhookRecord>) {
        if !deliveries.is_empty() {
            self.addr.do_send(ScheduleNew { deliveries, webhooks });
        }
    }

    /// A webhook was changed through the API (`webhook` as stored after the change): once
    /// this returns, every attempt starting here signs with it or a newer version.
    pub async fn webhook_changed(&self, webhook: &WebhookRecord) {
        self.forget(Forget { webhook_id: webhook.id, floor: Floor::Version(webhook.updated_at) }).await;
    }

    /// A webhook was deleted through the API: once this returns, no attempt to it starts here.
    pub async fn webhook_deleted(&self, webhook_id: u64) {
        self.forget(Forget { webhook_id, floor: Floor::Deleted }).await;
    }

    async fn forget(&self, msg: Forget) {
        if let Err(e) = self.addr.send(msg).await {
            // The actor is gone: the service is stopping.
            tracing::warn!(error = %e, "the webhook dispatcher did not take a webhook change");
        }
    }

    /// When a new delivery's first attempt is due.
    pub fn first_due(&self) -> DateTime<Utc> {
        self.sender.first_due(Utc::now())
    }
}

/// The delivery id of a job: time-ordered, and the same for the same job.
pub fn delivery_id(job: &WebhookJob) -> String {
    let digest = hex::encode(Sha256::digest(job.job_id.as_bytes()));
    format!("msg_{:013}_{}", job.occurred_at_ms.max(0), &digest[..16])
}

/// Stores each job of a slice as a pending delivery (once) and queues them: one read of the
/// slice's deliveries that exist already (a redelivered job, or the same job twice in the
/// slice, is dropped: the delivery id derives from the job id, which is how a reward event is
/// never sent twice), one read of their webhooks, one write of the new deliveries.
pub struct WebhookIntake {
    pub store: SharedStore,
    pub dispatcher: WebhookDispatcher,
}

#[async_trait]
impl BatchHandler for WebhookIntake {
    type Event = WebhookJob;

    async fn handle_batch(&self, batch: Vec<(WebhookJob, Delivery)>) -> anyhow::Result<()> {
        let mut seen = HashSet::new();
        let jobs: Vec<(String, WebhookJob)> = batch
            .into_iter()
            .filter_map(|(job, _)| {
                let id = delivery_id(&job);
                seen.insert((job.webhook_id, id.clone())).then_some((id, job))
            })
            .collect();
        let keys: Vec<(u64, String)> = jobs.iter().map(|(id, job)| (job.webhook_id, id.clone())).collect();
        let stored: HashSet<(u64, String)> = self.store.get_deliveries(&keys).await?.into_iter().map(|d| (d.webhook_id, d.id)).collect();
        let now = Utc::now();
        let owner = self.dispatcher.instance_id().to_string();
        let fresh: Vec<DeliveryRecord> = jobs
            .into_iter()
            .filter(|(id, job)| !stored.contains(&(job.webhook_id, id.clone())))
            .map(|(id, job)| DeliveryRecord {
                id,
                webhook_id: job.webhook_id,
                affiliate_id: job.affiliate_id,
                event: job.event,
                payload: job.payload_json,
                state: DeliveryState::Pending,
                attempts: vec![],
                next_attempt_at: Some(self.dispatcher.first_due()),
                created_at: now,
                updated_at: now,
                manual: false,
                owner: Some(owner.clone()),
            })
            .collect();
        if fresh.is_empty() {
            return Ok(());
        }
        let endpoints: Vec<(u64, u64)> =
            fresh.iter().map(|d| (d.affiliate_id, d.webhook_id)).collect::<BTreeSet<_>>().into_iter().collect();
        let webhooks = self.store.get_webhooks(&endpoints).await?;
        self.store.put_deliveries(&fresh).await?;
        self.dispatcher.schedule_new(fresh, webhooks);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::configuration::Settings;
    use crate::store::embedded::EmbeddedStore;

    fn settings() -> Settings {
        Settings::load(Some(&std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("configuration/defaults.toml"))).unwrap()
    }

    async fn store(dir: &tempfile::TempDir) -> SharedStore {
        Arc::new(EmbeddedStore::open(dir.path()).await.unwrap())
    }

    fn pending(webhook_id: u64, id: &str, due: DateTime<Utc>) -> DeliveryRecord {
        DeliveryRecord {
            id: id.into(),
            webhook_id,
            affiliate_id: 1,
            event: "product.updated".into(),
            payload: "{}".into(),
            state: DeliveryState::Pending,
            attempts: vec![],
            next_attempt_at: Some(due),
            created_at: due,
            updated_at: due,
            manual: false,
            owner: Some("me".into()),
        }
    }

    fn test_secrets() -> crate::secrets::SecretBox {
        crate::secrets::SecretBox::new(&"dispatcher-tests-secrets-key-0123456789".to_string().into())
    }

    fn dispatcher(store: SharedStore, per_endpoint: usize) -> Dispatcher {
        let metrics = Metrics::new();
        let sender = Sender::new(&settings().webhooks, store.clone(), test_secrets(), metrics.clone()).unwrap();
        Dispatcher::new(Arc::new(sender), store, (64, per_endpoint), Arc::from("me"), Duration::from_secs(60), chrono::Duration::seconds(120), metrics)
    }

    #[actix_web::test]
    async fn an_endpoint_at_its_cap_leaves_the_ready_set_and_its_backlog_costs_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut d = dispatcher(store(&dir).await, 2);
        let t0 = Utc::now() - chrono::Duration::seconds(10);
        for i in 0..1000 {
            d.enqueue(pending(1, &format!("msg_{i:04}"), t0), t0, false);
        }
        d.enqueue(pending(2, "msg_b", t0 + chrono::Duration::seconds(1)), t0 + chrono::Duration::seconds(1), false);
        assert_eq!(d.queued, 1001);
        // One entry per endpoint, by its first due time.
        assert_eq!(d.ready.iter().map(|e| e.1).collect::<Vec<_>>(), vec![1, 2]);
        // Endpoint 1 at its cap (two attempts that never end): only endpoint 2 is ready.
        d.endpoints.get_mut(&1).unwrap().in_flight = 2;
        d.refresh_ready(1);
        assert_eq!(d.ready.iter().map(|e| e.1).collect::<Vec<_>>(), vec![2]);
        // A slot frees: endpoint 1 is back, first again.
        d.endpoints.get_mut(&1).unwrap().in_flight = 1;
        d.refresh_ready(1);
        assert_eq!(d.ready.first().map(|e| e.1), Some(1));
        // An endpoint that did not answer gets one slot: with one in flight it is not ready.
        d.unreachable.insert(1);
        d.refresh_ready(1);
        assert_eq!(d.ready.iter().map(|e| e.1).collect::<Vec<_>>(), vec![2]);
        d.unreachable.remove(&1);
        d.refresh_ready(1);
        assert_eq!(d.ready.first().map(|e| e.1), Some(1));
        // Its backlog past LOADED_PER_ENDPOINT is held by key only.
        for i in 1000..LOADED_PER_ENDPOINT + 5 {
            d.enqueue(pending(1, &format!("msg_{i:05}"), t0), t0, false);
        }
        let light = d.held.values().filter(|h| h.record.is_none()).count();
        assert_eq!(light, 5);
    }

    #[actix_web::test]
    async fn a_delivery_is_held_once_and_a_redelivery_waits_for_the_attempt_under_way() {
        let dir = tempfile::tempdir().unwrap();
        let mut d = dispatcher(store(&dir).await, 4);
        let now = Utc::now();
        let later = now + chrono::Duration::seconds(30);
        d.enqueue(pending(1, "msg_a", later), later, false);
        // The same delivery again (a reload, a redelivered job): one copy.
        d.enqueue(pending(1, "msg_a", later), later, false);
        assert_eq!(d.queued, 1);
        // A manual redelivery of a queued delivery moves it forward, with its record.
        let mut manual = pending(1, "msg_a", now);
        manual.manual = true;
        d.enqueue(manual.clone(), now, true);
        assert_eq!(d.queued, 1);
        assert_eq!(d.endpoints[&1].queue.first().map(|e| e.0), Some(now));
        assert!(d.held[&(1, "msg_a".to_string())].record.as_ref().unwrap().manual);
        // In flight: a reload is ignored, a redelivery runs after the attempt is written.
        let key = (1, "msg_a".to_string());
        d.endpoints.get_mut(&1).unwrap().queue.clear();
        d.queued = 0;
        d.held.get_mut(&key).unwrap().due = None;
        d.enqueue(pending(1, "msg_a", now), now, false);
        assert!(d.held[&key].rerun.is_none());
        d.enqueue(manual, now, true);
        assert_eq!(d.held[&key].rerun, Some(now));
        // The attempt ends (succeeded): written as the redelivery asks, then queued again.
        d.endpoints.get_mut(&1).unwrap().in_flight = 1;
        d.in_flight = 1;
        let mut done = pending(1, "msg_a", now);
        done.state = DeliveryState::Succeeded;
        done.next_attempt_at = None;
        d.finished(key.clone(), Ok(Some(Attempted { delivery: done, webhook: None, unreachable: false })));
        assert_eq!(d.unwritten.len(), 1);
        assert_eq!(d.unwritten[0].state, DeliveryState::Pending);
        assert!(d.unwritten[0].manual);
        let written = d.unwritten.pop().unwrap();
        d.written(written);
        assert_eq!(d.queued, 1);
        assert_eq!(d.held[&key].due, Some(now));
    }

    #[actix_web::test]
    async fn a_reported_change_keeps_older_copies_of_the_webhook_out_of_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let mut d = dispatcher(store(&dir).await, 4);
        let t0 = Utc::now();
        let version = |secret: &str, at: DateTime<Utc>| WebhookRecord {
            id: 7,
            affiliate_id: 1,
            event: "product.updated".into(),
            url: "https://hooks.example.com/".into(),
            secret: secret.into(),
            created_at: t0,
            updated_at: at,
            failing_since: None,
            disabled_at: None,
            disabled_reason: None,
        };
        let old = version("old", t0);
        let new = version("new", t0 + chrono::Duration::seconds(1));
        d.cache_webhook(7, Some(old.clone()));
        assert_eq!(d.cached_webhook(7), Some(Some(old.clone())));
        // A rotation is reported: the next attempt reads the webhook again.
        d.forget_webhook(7, Floor::Version(new.updated_at));
        assert_eq!(d.cached_webhook(7), None);
        // An attempt (or the intake) that read it before comes back with the old copy: kept out.
        d.cache_webhook(7, Some(old.clone()));
        assert_eq!(d.cached_webhook(7), None);
        let key = (7, "msg_a".to_string());
        d.enqueue(pending(7, "msg_a", t0), t0, false);
        d.endpoints.get_mut(&7).unwrap().queue.clear();
        d.queued = 0;
        d.held.get_mut(&key).unwrap().due = None;
        d.endpoints.get_mut(&7).unwrap().in_flight = 1;
        d.in_flight = 1;
        d.finished(key, Ok(Some(Attempted { delivery: pending(7, "msg_a", t0), webhook: Some(Some(old.clone())), unreachable: false })));
        assert_eq!(d.cached_webhook(7), None);
        d.cache_webhook(7, Some(new.clone()));
        assert_eq!(d.cached_webhook(7), Some(Some(new.clone())));
        // A report of an older change (arriving late) keeps the newer copy and the higher floor.
        d.forget_webhook(7, Floor::Version(t0));
        assert_eq!(d.cached_webhook(7), Some(Some(new.clone())));
        d.cache_webhook(7, Some(old.clone()));
        assert_eq!(d.cached_webhook(7), Some(Some(new.clone())));
        // Deleted: known gone at once, and no copy brings it back.
        d.forget_webhook(7, Floor::Deleted);
        assert_eq!(d.cached_webhook(7), Some(None));
        d.cache_webhook(7, Some(new.clone()));
        d.forget_webhook(7, Floor::Version(new.updated_at + chrono::Duration::seconds(1)));
        assert_eq!(d.cached_webhook(7), Some(None));
        // Floors are let go after a while.
        d.floors.get_mut(&7).unwrap().1 = Instant::now() - FLOOR_KEEP;
        d.prune_floors();
        assert!(d.floors.is_empty());
    }

    #[actix_web::test]
    async fn the_intake_stores_each_job_once_and_drops_repeats() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        let s = settings();
        let metrics = Metrics::new();
        // First attempts an hour away: nothing is sent (nor written) while the test looks.
        let mut webhooks = s.webhooks.clone();
        webhooks.retry_schedule = vec!["1h".into()];
        let sender = Sender::new(&webhooks, store.clone(), test_secrets(), metrics.clone()).unwrap();
        let dispatcher = WebhookDispatcher::start(sender, store.clone(), 64, 4, "me", Duration::from_secs(3600), chrono::Duration::seconds(120), metrics);
        let intake = WebhookIntake { store: store.clone(), dispatcher };
        let job = |n: u32| WebhookJob {
            job_id: format!("product-changes:0:{n}:7"),
            webhook_id: 7,
            affiliate_id: 1,
            event: "product.updated".into(),
            payload_json: format!("{{\"n\":{n}}}"),
            occurred_at_ms: 1_700_000_000_000,
        };
        let at = |offset: i64| Delivery { topic: "webhook-jobs".into(), partition: 0, offset, key: "webhook:7".into(), payload: vec![] };
        // The same job twice in one slice, and another.
        intake.handle_batch(vec![(job(1), at(0)), (job(1), at(1)), (job(2), at(2))]).await.unwrap();
        let stored = store.deliveries_of(7, 10).await.unwrap();
        assert_eq!(stored.len(), 2);
        // The slice again (redelivered) and a new job: only the new one is stored.
        let first = store.get_delivery(7, &delivery_id(&job(1))).await.unwrap().unwrap();
        intake.handle_batch(vec![(job(1), at(0)), (job(2), at(2)), (job(3), at(3))]).await.unwrap();
        assert_eq!(store.deliveries_of(7, 10).await.unwrap().len(), 3);
        assert_eq!(store.get_delivery(7, &delivery_id(&job(1))).await.unwrap().unwrap(), first, "a repeat leaves the stored delivery as it was");
    }
}
