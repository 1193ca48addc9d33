//! The dispatcher actor: a queue of due deliveries, sent with a global and a per-endpoint
//! cap so one slow or dead endpoint never delays the others, and the intake that turns
//! `webhook-jobs` into stored, queued deliveries.
//!
//! At start the dispatcher reloads the pending deliveries it owns (`server.instance_id`), so a
//! restarted instance carries on and, in a cluster, never sends another instance's retries
//! twice. Every `sweep_every` it says it is alive (a heartbeat row) and adopts pending
//! deliveries overdue by more than `orphan_grace` whose owner has been silent that long: the
//! owner stopped or died, and without the sweep they would wait for its restart. A busy
//! owner keeps its backlog. (An attempt re-reads the delivery and does nothing when it is no
//! longer pending.)

use super::sender::{Next, Sender};
use crate::metrics::Metrics;
use crate::store::{DeliveryRecord, DeliveryState, SharedStore};
use actix::prelude::*;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use hissaback_actors::consumer::EventHandler;
use hissaback_topics::events::WebhookJob;
use hissaback_topics::Delivery;
use sha2::{Digest, Sha256};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

/// How often the queue is looked at for due deliveries.
const TICK: Duration = Duration::from_millis(50);

/// A queued delivery: due time first, so the set is ordered by it.
type Entry = (DateTime<Utc>, u64, u64, String); // (due, webhook_id, affiliate_id, delivery_id)

pub struct Dispatcher {
    sender: Arc<Sender>,
    store: SharedStore,
    queue: BTreeSet<Entry>,
    /// Every delivery this dispatcher holds, queued or in flight: (webhook_id, delivery_id).
    held: HashSet<(u64, String)>,
    /// Deliveries asked for again while in flight (a manual redelivery): queued again, at
    /// this time, once the attempt in flight ends.
    rerun: HashMap<(u64, String), DateTime<Utc>>,
    /// This instance's `server.instance_id`: the owner of the deliveries it queues.
    instance_id: Arc<str>,
    sweep_every: Duration,
    orphan_grace: chrono::Duration,
    in_flight: usize,
    per_endpoint: HashMap<u64, usize>,
    max_in_flight: usize,
    max_per_endpoint: usize,
    metrics: Metrics,
}

/// Queue a delivery for its next attempt.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Schedule {
    pub webhook_id: u64,
    pub affiliate_id: u64,
    pub delivery_id: String,
    pub due: DateTime<Utc>,
}

impl Dispatcher {
    fn enqueue(&mut self, s: Schedule) {
        let key = (s.webhook_id, s.delivery_id.clone());
        if !self.held.insert(key) {
            // Already held here: keep one copy, due at the earlier time (a manual redelivery
            // of a delivery waiting for its retry goes now). One in flight is queued again
            // when its attempt ends.
            let queued = self.queue.iter().find(|e| e.1 == s.webhook_id && e.3 == s.delivery_id).cloned();
            match queued {
                Some(old) if s.due < old.0 => {
                    self.queue.remove(&old);
                    self.queue.insert((s.due, old.1, old.2, old.3));
                }
                Some(_) => {}
                None => {
                    let due = self.rerun.entry((s.webhook_id, s.delivery_id)).or_insert(s.due);
                    *due = (*due).min(s.due);
                }
            }
            return;
        }
        self.queue.insert((s.due, s.webhook_id, s.affiliate_id, s.delivery_id));
        self.metrics.webhook_queue_depth.set(self.queue.len() as i64);
    }

    /// Queues every pending delivery not held here that `take` accepts.
    fn adopt(&mut self, pending: Vec<DeliveryRecord>, take: impl Fn(&DeliveryRecord) -> bool) -> usize {
        let now = Utc::now();
        let mut adopted = 0;
        for d in pending {
            if self.held.contains(&(d.webhook_id, d.id.clone())) || !take(&d) {
                continue;
            }
            let due = d.next_attempt_at.unwrap_or(now);
            self.enqueue(Schedule { webhook_id: d.webhook_id, affiliate_id: d.affiliate_id, delivery_id: d.id, due });
            adopted += 1;
        }
        adopted
    }

    /// Starts every due delivery the caps allow.
    fn dispatch_due(&mut self, ctx: &mut Context<Self>) {
        let now = Utc::now();
        let mut skipped = Vec::new();
        while self.in_flight < self.max_in_flight {
            let Some(first) = self.queue.first().cloned() else { break };
            if first.0 > now {
                break;
            }
            self.queue.remove(&first);
            let (_, webhook_id, affiliate_id, delivery_id) = first.clone();
            let busy = self.per_endpoint.get(&webhook_id).copied().unwrap_or(0);
            if busy >= self.max_per_endpoint {
                skipped.push(first);
                continue;
            }
            self.in_flight += 1;
            *self.per_endpoint.entry(webhook_id).or_default() += 1;
            let sender = self.sender.clone();
            let fut = async move {
                let next = sender.attempt(webhook_id, affiliate_id, &delivery_id).await;
                (webhook_id, affiliate_id, delivery_id, next)
            };
            ctx.spawn(fut.into_actor(self).map(|(webhook_id, affiliate_id, delivery_id, next), act, _ctx| {
                act.in_flight -= 1;
                if let Some(n) = act.per_endpoint.get_mut(&webhook_id) {
                    *n -= 1;
                    if *n == 0 {
                        act.per_endpoint.remove(&webhook_id);
                    }
                }
                act.held.remove(&(webhook_id, delivery_id.clone()));
                if let Some(due) = act.rerun.remove(&(webhook_id, delivery_id.clone())) {
                    act.enqueue(Schedule { webhook_id, affiliate_id, delivery_id: delivery_id.clone(), due });
                }
                match next {
                    Ok(Next::RetryAt(due)) => act.enqueue(Schedule { webhook_id, affiliate_id, delivery_id, due }),
                    Ok(Next::Done) => {}
                    Err(e) => {
                        // The store failed: the delivery is still pending there; try again soon.
                        tracing::warn!(error = %e, webhook = webhook_id, "webhook attempt could not be recorded; retrying");
                        let due = Utc::now() + chrono::Duration::seconds(5);
                        act.enqueue(Schedule { webhook_id, affiliate_id, delivery_id, due });
                    }
                }
            }));
        }
        for entry in skipped {
            self.queue.insert(entry);
        }
        self.metrics.webhook_queue_depth.set(self.queue.len() as i64);
    }
}

impl Actor for Dispatcher {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Deliveries that were pending when the service stopped carry on where they were.
        let store = self.store.clone();
        ctx.spawn(
            async move { store.pending_deliveries().await }.into_actor(self).map(|pending, act, _ctx| match pending {
                Ok(list) => {
                    // Its own (and owner-less old rows); other instances' wait for the sweep.
                    let me = act.instance_id.clone();
                    act.adopt(list, |d| d.owner.as_deref().is_none_or(|o| o == &*me));
                }
                Err(e) => tracing::error!(error = %e, "could not reload pending webhook deliveries"),
            }),
        );
        ctx.run_interval(TICK, |act, ctx| act.dispatch_due(ctx));
        ctx.run_interval(self.sweep_every, |act, ctx| {
            let (store, me, grace) = (act.store.clone(), act.instance_id.clone(), act.orphan_grace);
            ctx.spawn(sweep(store, me, grace).into_actor(act).map(|orphans, act, _ctx| match orphans {
                Ok(list) => {
                    let adopted = act.adopt(list, |_| true);
                    if adopted > 0 {
                        tracing::warn!(adopted, "adopted overdue webhook deliveries of a stopped instance");
                        act.metrics.webhook_orphans_adopted.inc_by(adopted as u64);
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
/// their owner before they are queued.
async fn sweep(store: SharedStore, me: Arc<str>, grace: chrono::Duration) -> anyhow::Result<Vec<DeliveryRecord>> {
    let now = Utc::now();
    store.put_setting(&heartbeat_key(&me), &now.to_rfc3339()).await?;
    let overdue = now - grace;
    let mut alive: HashMap<String, bool> = HashMap::new();
    let mut taken = Vec::new();
    for mut d in store.pending_deliveries().await? {
        if d.owner.as_deref() == Some(&*me) || !d.next_attempt_at.is_some_and(|due| due < overdue) {
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
        store.put_delivery(&d).await?;
        taken.push(d);
    }
    Ok(taken)
}

impl Supervised for Dispatcher {
    /// A restarted dispatcher forgets what it held (the attempts in flight were dropped with
    /// the old context) and reloads its pending deliveries in `started`.
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        self.queue.clear();
        self.held.clear();
        self.rerun.clear();
        self.in_flight = 0;
        self.per_endpoint.clear();
        self.metrics.webhook_queue_depth.set(0);
    }
}

impl Handler<Schedule> for Dispatcher {
    type Result = ();

    fn handle(&mut self, msg: Schedule, ctx: &mut Self::Context) {
        self.enqueue(msg);
        self.dispatch_due(ctx);
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
        let addr = Supervisor::start(move |_| Dispatcher {
            sender: s,
            store,
            queue: BTreeSet::new(),
            held: HashSet::new(),
            rerun: HashMap::new(),
            instance_id: id,
            sweep_every,
            orphan_grace,
            in_flight: 0,
            per_endpoint: HashMap::new(),
            max_in_flight,
            max_per_endpoint,
            metrics,
        });
        Self { addr, sender, instance_id }
    }

    /// The owner this instance writes on the deliveries it queues.
    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }

    /// Queues a stored, pending delivery for its `next_attempt_at` (now when unset).
    pub fn schedule(&self, d: &DeliveryRecord) {
        self.addr.do_send(Schedule {
            webhook_id: d.webhook_id,
            affiliate_id: d.affiliate_id,
            delivery_id: d.id.clone(),
            due: d.next_attempt_at.unwrap_or_else(Utc::now),
        });
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

/// Stores each job as a pending delivery (once) and queues it.
pub struct WebhookIntake {
    pub store: SharedStore,
    pub dispatcher: WebhookDispatcher,
}

#[async_trait]
impl EventHandler for WebhookIntake {
    type Event = WebhookJob;

    async fn handle(&self, job: WebhookJob, _delivery: &Delivery) -> anyhow::Result<()> {
        let id = delivery_id(&job);
        if self.store.get_delivery(job.webhook_id, &id).await?.is_some() {
            return Ok(()); // a redelivered job: already stored and queued
        }
        let now = Utc::now();
        let d = DeliveryRecord {
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
            owner: Some(self.dispatcher.instance_id().to_string()),
        };
        self.store.put_delivery(&d).await?;
        self.dispatcher.schedule(&d);
        Ok(())
    }
}
