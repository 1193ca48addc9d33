//! From postbacks to the ledger:
//!
//! - [`PostbackProcessor`] (topic `postbacks`, group `postback-processor`): resolves each
//!   click of a batch to its campaign (from the in-memory click cache) and emits the batch's
//!   `ConversionEvent::Recorded`s together, keyed by the conversion, whose id derives from
//!   (network, transaction) so every postback of one transaction lands on one conversion, in
//!   order.
//! - [`LedgerWriter`] (topic `conversions`, group `ledger`): the one writer of every
//!   conversion. Each event that changes a conversion (postbacks, payment requests, payment
//!   outcomes) is keyed by it, so the consumer owning its partition applies them in order:
//!   the state machine of `hissaback_actors::ledger`, double-entry legs keyed by conversion
//!   and leg (a redelivered event rewrites the same rows), one store write per batch, then
//!   the effects (reward webhooks, payout jobs) derived from the change and kept with it
//!   (the outbox) until published.
//! - [`request_payment`]: what `POST /admin/v1/rewards/pay` does: a payment request event per
//!   queued reward, then a bounded wait for the outcomes. The payer
//!   ([`crate::partner::payouts::Payer`]) calls the provider and sends the outcome back.

use crate::store::{CampaignRecord, ConversionRecord, OutboxItem, PaymentOutcome, PaymentRecord, PostingRecord, RewardStatus, SharedStore};
use async_trait::async_trait;
use chrono::Utc;
use hissaback_actors::consumer::BatchHandler;
use hissaback_actors::ledger::{apply, expected_balances, reward_minor, Book, Command, Leg, Split};
use hissaback_topics::bus::publish_events;
use hissaback_topics::events::{ConversionEvent, ConversionRecorded, PayoutJob, PostbackReceived, WebhookJob};
use hissaback_topics::{CurrencyCode, Delivery, Money, SharedBus};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

/// The conversion id of a network's transaction: 52 bits of SHA-256, a positive integer that
/// JSON carries exactly.
pub fn conversion_id(network_id: u64, txn_id: &str) -> u64 {
    let d = Sha256::digest(format!("{network_id}:{txn_id}").as_bytes());
    let v = u64::from_be_bytes(d[..8].try_into().expect("8 bytes")) >> 12;
    v.max(1)
}

pub struct PostbackProcessor {
    pub store: SharedStore,
    pub bus: SharedBus,
    pub clicks: crate::partner::lookups::ClickCache,
}

#[async_trait]
impl BatchHandler for PostbackProcessor {
    type Event = PostbackReceived;

    async fn handle_batch(&self, batch: Vec<(PostbackReceived, Delivery)>) -> anyhow::Result<()> {
        let mut out = Vec::with_capacity(batch.len());
        for (p, _) in batch {
            let Some(click) = self.clicks.get(&self.store, &p.click_id).await? else {
                // Checked when the postback was accepted; a click can only vanish by its TTL.
                tracing::warn!(click = %p.click_id, txn = %p.txn_id, "postback for an unknown click dropped");
                continue;
            };
            out.push(ConversionEvent::Recorded(ConversionRecorded {
                conversion_id: conversion_id(p.network_id, &p.txn_id),
                network_id: p.network_id,
                txn_id: p.txn_id,
                click_id: p.click_id,
                campaign_id: click.campaign_id,
                affiliate_id: click.affiliate_id,
                tenant_id: click.tenant_id.clone(),
                offer_id: click.offer_id,
                user_id: click.user_id.clone(),
                payout: p.payout,
                status: p.status,
                occurred_at_ms: p.received_at_ms,
            }));
        }
        publish_events(self.bus.as_ref(), &out).await?;
        Ok(())
    }
}

/// A campaign's split rule.
pub fn split_of(c: &CampaignRecord) -> Split {
    match (c.share_pct, c.flat_reward) {
        (Some(pct), _) => Split::Share(pct),
        (None, Some(flat)) => Split::Flat((flat * rust_decimal::Decimal::ONE_HUNDRED).try_into().unwrap_or(0)),
        (None, None) => Split::Flat(0),
    }
}

/// `hissaback_ledger_postings_total{account}`: ledger legs written (a replayed event rewrites
/// the same rows and counts again: this measures work, the ledger itself stays exact).
pub static POSTINGS: std::sync::LazyLock<prometheus::IntCounterVec> = std::sync::LazyLock::new(|| {
    let c = prometheus::IntCounterVec::new(prometheus::Opts::new("hissaback_ledger_postings_total", "Ledger legs written, by account"), &["account"])
        .expect("valid metric");
    use hissaback_actors::ledger::accounts::*;
    for account in [NETWORK_RECEIVABLE, USER_REWARD_PAYABLE, PLATFORM_REVENUE, CASH] {
        c.with_label_values(&[account]);
    }
    c
});

fn postings(conversion: &ConversionRecord, legs: Vec<Leg>, at: chrono::DateTime<Utc>) -> Vec<PostingRecord> {
    legs.into_iter()
        .map(|l| PostingRecord {
            conversion_id: conversion.id,
            leg: l.leg,
            account: l.account.to_string(),
            amount_minor: l.amount_minor,
            currency: conversion.currency.clone(),
            at,
        })
        .collect()
}

/// Rewards summed per status (every status present) and currency, in minor units.
pub fn reward_totals<'a>(conversions: impl IntoIterator<Item = &'a ConversionRecord>) -> Vec<(RewardStatus, std::collections::BTreeMap<String, i64>)> {
    let mut totals: Vec<_> = RewardStatus::ALL.iter().map(|s| (*s, std::collections::BTreeMap::new())).collect();
    for c in conversions {
        if let Some((_, per)) = totals.iter_mut().find(|(s, _)| *s == c.status) {
            *per.entry(c.currency.clone()).or_default() += c.reward_minor;
        }
    }
    totals
}

/// What end users owe back per currency, in minor units (zero or negative): rewards reversed
/// after payment, less what later payments recovered.
pub fn owed_totals<'a>(conversions: impl IntoIterator<Item = &'a ConversionRecord>) -> std::collections::BTreeMap<String, i64> {
    let mut owed = std::collections::BTreeMap::new();
    for c in conversions {
        *owed.entry(c.currency.clone()).or_default() -= c.clawback_minor - c.recovered_minor;
    }
    owed
}

fn money(minor: i64) -> Value {
    json!(minor as f64 / 100.0)
}

/// The reward as `/v1/rewards/user` shows it.
pub fn reward_view(c: &ConversionRecord) -> Value {
    json!({
        "reward_id": c.id,
        "conversion_id": c.id,
        "campaign_id": c.campaign_id,
        "offer_id": c.offer_id,
        "amount": money(c.reward_minor),
        "currency": c.currency,
        "status": c.status,
        "clawback": money(c.clawback_minor),
        "created_at": crate::json::format_time(&c.created_at),
        "updated_at": crate::json::format_time(&c.updated_at),
        "paid_at": c.paid_at.as_ref().map(crate::json::format_time),
    })
}

/// The reward object of reward webhooks: the view plus the end user and tenant.
fn reward_object(c: &ConversionRecord) -> Value {
    let mut object = reward_view(c);
    object["user_id"] = json!(c.user_id);
    object["tenant_id"] = json!(c.tenant_id);
    object
}

/// Lets the campaign registry read campaigns from the store.
pub struct StoreCampaignSource(pub SharedStore);

#[async_trait]
impl hissaback_actors::ports::CampaignSource for StoreCampaignSource {
    async fn split_of(&self, affiliate_id: u64, campaign_id: u64) -> anyhow::Result<Option<Split>> {
        Ok(self.0.get_campaign(affiliate_id, campaign_id).await?.as_ref().map(split_of))
    }
}

/// The ledger's view of a stored conversion.
fn book_of(c: &ConversionRecord, split: Split) -> Book {
    Book {
        status: c.status,
        payout: c.payout_minor,
        reward: c.reward_minor,
        split,
        held: c.held,
        paid: c.paid_at.is_some(),
        recovered: c.recovered_minor,
        clawback: c.clawback_minor,
    }
}

fn store_book(c: &mut ConversionRecord, b: &Book) {
    c.status = b.status;
    c.payout_minor = b.payout;
    c.reward_minor = b.reward;
    c.split = Some(b.split);
    c.held = b.held;
    c.recovered_minor = b.recovered;
    c.clawback_minor = b.clawback;
}

/// A conversion's first row, from its first postback.
fn new_conversion(e: &ConversionRecorded, split: Split, now: chrono::DateTime<Utc>) -> ConversionRecord {
    ConversionRecord {
        id: e.conversion_id,
        network_id: e.network_id,
        txn_id: e.txn_id.clone(),
        click_id: e.click_id.clone(),
        campaign_id: e.campaign_id,
        affiliate_id: e.affiliate_id,
        tenant_id: e.tenant_id.clone(),
        offer_id: e.offer_id,
        user_id: e.user_id.clone().unwrap_or_default(),
        currency: e.payout.currency.as_str().to_string(),
        payout_minor: e.payout.minor,
        reward_minor: reward_minor(e.payout.minor, split),
        status: RewardStatus::Pending,
        goal: None,
        created_at: now,
        updated_at: now,
        paid_at: None,
        split: Some(split),
        held: None,
        recovered_minor: 0,
        clawback_minor: 0,
        payment: None,
        applied: None,
        outbox: Vec::new(),
    }
}

/// Partners' enabled webhooks, read once per partner per batch: deciding which reward events
/// to keep and publishing them use the same read.
#[derive(Default)]
struct EnabledWebhooks(HashMap<u64, Vec<crate::store::WebhookRecord>>);

impl EnabledWebhooks {
    async fn of(&mut self, store: &SharedStore, affiliate_id: u64) -> anyhow::Result<&[crate::store::WebhookRecord]> {
        if !self.0.contains_key(&affiliate_id) {
            let enabled = store.webhooks_of(affiliate_id).await?.into_iter().filter(|w| w.disabled_at.is_none()).collect();
            self.0.insert(affiliate_id, enabled);
        }
        Ok(&self.0[&affiliate_id])
    }
}

/// The one writer of conversions (see the module docs).
pub struct LedgerWriter {
    pub store: SharedStore,
    pub bus: SharedBus,
    /// Split rules in memory (the campaign registry actor).
    pub campaigns: hissaback_actors::campaigns::Campaigns,
    /// Pseudonyms of erased end users: a conversion created for one carries the pseudonym.
    pub pseudonyms: crate::partner::privacy::Pseudonyms,
}

/// Pseudonymises a conversion of an erased end user (`UserErased`): the user id, also in the
/// reward payloads of its outbox; amounts, status and postings stay.
fn erase_user_of(row: &mut ConversionRecord, pseudonym: &str) {
    row.user_id = pseudonym.to_string();
    for item in &mut row.outbox {
        if let OutboxItem::Reward { reward, .. } = item {
            if reward.get("user_id").is_some() {
                reward["user_id"] = json!(pseudonym);
            }
        }
    }
}

impl LedgerWriter {
    /// The split of a conversion: the one it was booked with, else its campaign's.
    async fn split(&self, existing: Option<&ConversionRecord>, affiliate_id: u64, campaign_id: u64) -> anyhow::Result<Option<Split>> {
        match existing.and_then(|c| c.split) {
            Some(s) => Ok(Some(s)),
            None => self.campaigns.split_of(affiliate_id, campaign_id).await,
        }
    }

    /// Publishes the outbox of `conversions`: reward webhook jobs (ids from the causing
    /// event's position, so a republished job is dropped by the intake) and payout jobs (the
    /// payer skips a payment that is no longer in flight).
    async fn publish_outbox(&self, conversions: &[&ConversionRecord], webhooks: &mut EnabledWebhooks) -> anyhow::Result<()> {
        let (mut jobs, mut payouts) = (Vec::new(), Vec::new());
        for c in conversions {
            for item in &c.outbox {
                match item {
                    OutboxItem::Reward { event, source, occurred_at_ms, reward } => {
                        for w in webhooks.of(&self.store, c.affiliate_id).await? {
                            if &w.event != event {
                                continue;
                            }
                            jobs.push(WebhookJob {
                                job_id: format!("{source}:{event}:{}", w.id),
                                webhook_id: w.id,
                                affiliate_id: w.affiliate_id,
                                event: event.clone(),
                                payload_json: crate::webhooks::payloads::wrap(event, w.id, *occurred_at_ms, "reward", reward),
                                occurred_at_ms: *occurred_at_ms,
                            });
                        }
                    }
                    OutboxItem::Payout { request_id } => payouts.push(PayoutJob {
                        conversion_id: c.id,
                        request_id: request_id.clone(),
                        affiliate_id: c.affiliate_id,
                        tenant_id: c.tenant_id.clone(),
                        user_id: c.user_id.clone(),
                        reward: Money { minor: c.reward_minor, currency: CurrencyCode::parse(&c.currency).unwrap_or(CurrencyCode::USD) },
                    }),
                }
            }
        }
        publish_events(self.bus.as_ref(), &jobs).await?;
        publish_events(self.bus.as_ref(), &payouts).await?;
        Ok(())
    }
}

#[async_trait]
impl BatchHandler for LedgerWriter {
    type Event = ConversionEvent;

    async fn handle_batch(&self, batch: Vec<(ConversionEvent, Delivery)>) -> anyhow::Result<()> {
        let mut ids: Vec<u64> = batch.iter().map(|(e, _)| e.conversion_id()).collect();
        ids.sort_unstable();
        ids.dedup();
        let mut rows: HashMap<u64, ConversionRecord> = self.store.get_conversions(&ids).await?.into_iter().map(|c| (c.id, c)).collect();
        // Conversions this batch changes (written once at the end), and those whose stored
        // outbox is republished because the events that made it are delivered again.
        let (mut changed, mut replayed) = (BTreeSet::new(), BTreeSet::new());
        let mut legs = Vec::new();
        let mut webhooks = EnabledWebhooks::default();
        let now = Utc::now();
        // Conversions this batch creates for end users on the erasure list get the pseudonym
        // (an event produced before the erasure, consumed after it).
        let created: Vec<(u64, String)> = batch
            .iter()
            .filter_map(|(e, _)| match e {
                ConversionEvent::Recorded(r) if !rows.contains_key(&r.conversion_id) => {
                    r.user_id.as_deref().map(|u| (r.conversion_id, self.pseudonyms.of(r.affiliate_id, &r.tenant_id, u)))
                }
                _ => None,
            })
            .collect();
        let erased: std::collections::HashSet<String> =
            if created.is_empty() { Default::default() } else { self.store.erased(&created.iter().map(|(_, p)| p.clone()).collect::<Vec<_>>()).await?.into_iter().collect() };
        let erased_users: HashMap<u64, String> = created.into_iter().filter(|(_, p)| erased.contains(p)).collect();
        for (event, d) in batch {
            let id = event.conversion_id();
            let position = (d.partition, d.offset);
            if let Some(row) = rows.get(&id) {
                if row.applied.is_some_and(|(p, o)| p == position.0 && o >= position.1) {
                    replayed.insert(id);
                    continue;
                }
            }
            if let ConversionEvent::UserErased { pseudonym, .. } = &event {
                let Some(row) = rows.get_mut(&id) else { continue };
                if changed.insert(id) && !replayed.contains(&id) {
                    row.outbox.clear();
                }
                erase_user_of(row, pseudonym);
                row.applied = Some(position);
                continue;
            }
            let (command, split) = match &event {
                ConversionEvent::Recorded(e) => {
                    let Some(split) = self.split(rows.get(&id), e.affiliate_id, e.campaign_id).await? else {
                        tracing::warn!(conversion = id, "conversion for an unknown campaign dropped");
                        continue;
                    };
                    (Command::Postback { status: e.status, payout: e.payout.minor }, split)
                }
                ConversionEvent::PaymentRequested { .. } => match rows.get(&id) {
                    Some(row) => (Command::StartPayment, row.split.unwrap_or(Split::Flat(row.reward_minor))),
                    None => continue,
                },
                ConversionEvent::PaymentSettled { request_id, paid, recovered_minor, .. } => match rows.get(&id) {
                    // Only the outcome of the payment in flight settles it.
                    Some(row) if row.payment.as_ref().is_some_and(|p| &p.request_id == request_id && p.outcome.is_none()) => {
                        (Command::Settle { paid: *paid, recovered: *recovered_minor }, row.split.unwrap_or(Split::Flat(row.reward_minor)))
                    }
                    _ => continue,
                },
                ConversionEvent::UserErased { .. } => continue,
            };
            let book = rows.get(&id).map(|row| book_of(row, split));
            let tag = format!("{}.{}", d.partition, d.offset);
            let Some((book, step)) = apply(book, split, command, &tag) else { continue };
            let row = match &event {
                ConversionEvent::Recorded(e) => rows.entry(id).or_insert_with(|| {
                    let mut row = new_conversion(e, split, now);
                    if let Some(pseudonym) = erased_users.get(&id) {
                        erase_user_of(&mut row, pseudonym);
                    }
                    row
                }),
                _ => rows.get_mut(&id).expect("checked above"),
            };
            if changed.insert(id) && !replayed.contains(&id) {
                // The stored outbox was published with the events that made it (they are
                // committed, or they would be replayed here).
                row.outbox.clear();
            }
            store_book(row, &book);
            row.updated_at = now;
            row.applied = Some(position);
            match &event {
                ConversionEvent::PaymentRequested { request_id, .. } => {
                    row.payment = Some(PaymentRecord { request_id: request_id.clone(), requested_at: now, outcome: None });
                    row.outbox.push(OutboxItem::Payout { request_id: request_id.clone() });
                }
                ConversionEvent::PaymentSettled { paid, error, .. } => {
                    if *paid {
                        row.paid_at = Some(now);
                    }
                    if let Some(p) = row.payment.as_mut() {
                        p.outcome = Some(if *paid {
                            PaymentOutcome::Paid { at: now }
                        } else {
                            PaymentOutcome::Failed { error: error.clone().unwrap_or_default() }
                        });
                    }
                }
                ConversionEvent::Recorded(_) | ConversionEvent::UserErased { .. } => {}
            }
            legs.extend(postings(row, step.legs, now));
            // A reward event is kept only when one of the partner's enabled webhooks takes it
            // (read once per partner per batch): most conversions notify nobody.
            let source = format!("{}:{}:{}", d.topic, d.partition, d.offset);
            let affiliate = row.affiliate_id;
            let subscribed: BTreeSet<&str> =
                if step.events.is_empty() { BTreeSet::new() } else { webhooks.of(&self.store, affiliate).await?.iter().map(|w| w.event.as_str()).collect() };
            let row = rows.get_mut(&id).expect("written above");
            for name in step.events {
                if subscribed.contains(name) {
                    row.outbox.push(OutboxItem::Reward { event: name.to_string(), source: source.clone(), occurred_at_ms: now.timestamp_millis(), reward: reward_object(row) });
                }
            }
        }
        let written: Vec<ConversionRecord> = changed.iter().filter_map(|id| rows.get(id).cloned()).collect();
        self.store.write_ledger_batch(&legs, &written).await?;
        for l in &legs {
            POSTINGS.with_label_values(&[&l.account]).inc();
        }
        let outbox: Vec<&ConversionRecord> = changed.union(&replayed).filter_map(|id| rows.get(id)).filter(|c| !c.outbox.is_empty()).collect();
        self.publish_outbox(&outbox, &mut webhooks).await
    }
}

/// What a payment call achieved within its wait.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PaymentSummary {
    /// Settled as paid by this call.
    pub paid: usize,
    /// Refused by the provider (back to queued).
    pub failed: usize,
    /// Still in flight when the wait ended: they settle later, each with its webhook.
    pub pending: usize,
}

/// Asks for the payment of queued rewards (all of them, or those named): one
/// `PaymentRequested` per reward to its conversion's writer, which moves it to `paying` and
/// has the payer call the provider; then waits up to `wait` for the outcomes of this call's
/// requests. A reward another call is paying, or that stopped being queued before its
/// request was applied, is not this call's and counts nowhere.
pub async fn request_payment(store: &SharedStore, bus: &SharedBus, only: Option<&[u64]>, wait: Duration) -> anyhow::Result<PaymentSummary> {
    let candidates = match only {
        Some(ids) => {
            let mut ids = ids.to_vec();
            ids.sort_unstable();
            ids.dedup();
            store.get_conversions(&ids).await?
        }
        None => store.queued_conversions().await?,
    };
    let request_id = uuid::Uuid::new_v4().to_string();
    let requested_at_ms = Utc::now().timestamp_millis();
    let events: Vec<ConversionEvent> = candidates
        .iter()
        .filter(|c| c.status == RewardStatus::Queued)
        .map(|c| ConversionEvent::PaymentRequested { conversion_id: c.id, request_id: request_id.clone(), requested_at_ms })
        .collect();
    let mut waiting: Vec<u64> = events.iter().map(ConversionEvent::conversion_id).collect();
    publish_events(bus.as_ref(), &events).await?;
    let deadline = tokio::time::Instant::now() + wait;
    let mut summary = PaymentSummary::default();
    let mut pause = Duration::from_millis(5);
    while !waiting.is_empty() {
        let mut still = Vec::new();
        // The read itself is bounded by the wait: thousands of rewards on a busy store must
        // not hold the answer past it (what is not read yet counts as pending).
        let Ok(read) = tokio::time::timeout_at(deadline, store.get_conversions(&waiting)).await else { break };
        for c in read? {
            match c.payment.as_ref().filter(|p| p.request_id == request_id) {
                Some(p) => match &p.outcome {
                    Some(PaymentOutcome::Paid { .. }) => summary.paid += 1,
                    Some(PaymentOutcome::Failed { .. }) => summary.failed += 1,
                    None => still.push(c.id),
                },
                // Not applied yet while still queued; otherwise taken by another request or
                // rejected first: not this call's.
                None if c.status == RewardStatus::Queued => still.push(c.id),
                None => {}
            }
        }
        waiting = still;
        if waiting.is_empty() || tokio::time::Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(100));
    }
    summary.pending = waiting.len();
    Ok(summary)
}

/// `hissaback ledger check`: for every conversion, each step's legs sum to zero, no reward
/// exceeds its payout, and every account holds exactly what the conversion's state says
/// (`hissaback_actors::ledger::expected_balances`: receivable and revenue while accrued,
/// payable while queued or paying, cash once paid, the clawback owed after a reversal of a
/// paid reward less what it recovered); no end user has recovered more than they owed.
/// Returns the number of conversions and the problems.
pub async fn check(store: &SharedStore) -> anyhow::Result<(usize, Vec<String>)> {
    use std::collections::BTreeMap;
    let mut problems = Vec::new();
    let conversions = store.conversions().await?;
    let mut owed: BTreeMap<(u64, &str, &str, &str), i64> = BTreeMap::new();
    for c in &conversions {
        if c.reward_minor > c.payout_minor.max(0) || c.reward_minor < 0 {
            problems.push(format!("conversion {}: reward {} exceeds payout {}", c.id, c.reward_minor, c.payout_minor));
        }
        if c.recovered_minor > c.reward_minor || c.recovered_minor < 0 {
            problems.push(format!("conversion {}: recovered {} is not within the reward {}", c.id, c.recovered_minor, c.reward_minor));
        }
        if (c.status == RewardStatus::Paid) != c.paid_at.is_some() && !c.status.is_final() {
            problems.push(format!("conversion {}: status {} but paid_at {:?}", c.id, c.status.as_str(), c.paid_at));
        }
        let legs = store.postings_of(c.id).await?;
        let mut steps: BTreeMap<&str, i64> = BTreeMap::new();
        let mut posted: BTreeMap<&str, i64> = BTreeMap::new();
        for l in &legs {
            *steps.entry(Leg::step_of(&l.leg)).or_default() += l.amount_minor;
            *posted.entry(l.account.as_str()).or_default() += l.amount_minor;
            if l.currency != c.currency {
                problems.push(format!("conversion {}: leg {} in {}, the conversion is in {}", c.id, l.leg, l.currency, c.currency));
            }
        }
        for (step, sum) in steps {
            if sum != 0 {
                problems.push(format!("conversion {}: {step} legs sum to {sum}, not 0", c.id));
            }
        }
        let book = book_of(c, c.split.unwrap_or(Split::Flat(c.reward_minor)));
        for (account, expected) in expected_balances(&book) {
            let got = posted.remove(account).unwrap_or(0);
            if got != expected {
                problems.push(format!("conversion {} ({}): {account} postings sum to {got}, status {} says {expected}", c.id, c.currency, c.status.as_str()));
            }
        }
        for (account, got) in posted {
            problems.push(format!("conversion {}: unknown account {account} holds {got}", c.id));
        }
        *owed.entry((c.affiliate_id, c.tenant_id.as_str(), c.user_id.as_str(), c.currency.as_str())).or_default() += c.clawback_minor - c.recovered_minor;
    }
    for ((affiliate, tenant, user, currency), balance) in owed {
        if balance < 0 {
            problems.push(format!("user {user} of tenant {tenant} (affiliate {affiliate}): recovered {} {currency} more than owed", -balance));
        }
    }
    Ok((conversions.len(), problems))
}
