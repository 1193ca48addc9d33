//! From postbacks to the ledger:
//!
//! - [`PostbackProcessor`] (topic `postbacks`, group `postback-processor`): resolves the click
//!   to its campaign and emits a `ConversionRecorded` keyed by the conversion, whose id is
//!   derived from (network, transaction) so every postback of one transaction lands on one
//!   conversion, in order.
//! - [`LedgerWriter`] (topic `conversions`, group `ledger`): applies the campaign's split and
//!   the reward state machine (`hissaback_actors::ledger`), writes the double-entry legs
//!   (keyed by conversion and leg: a redelivered event rewrites the same rows), then the
//!   conversion, then queues `reward.queued` webhooks. Splits come from the campaign
//!   registry actor (in memory). A repeated (network, txn, status)
//!   changes nothing.
//! - [`pay`]: pays queued rewards through the payout provider and queues `reward.paid`.

use crate::store::{CampaignRecord, ConversionRecord, PostingRecord, RewardStatus, SharedStore};
use async_trait::async_trait;
use chrono::Utc;
use hissaback_actors::consumer::EventHandler;
use hissaback_actors::ledger::{payment_legs, reward_minor, transition, Leg, Split};
use hissaback_topics::bus::publish_event;
use hissaback_topics::events::{ConversionRecorded, PostbackReceived, WebhookJob};
use hissaback_topics::{Delivery, SharedBus};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

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
}

#[async_trait]
impl EventHandler for PostbackProcessor {
    type Event = PostbackReceived;

    async fn handle(&self, p: PostbackReceived, _d: &Delivery) -> anyhow::Result<()> {
        let Some(click) = self.store.get_click(&p.click_id).await? else {
            // Checked when the postback was accepted; a click can only vanish by its TTL.
            tracing::warn!(click = %p.click_id, txn = %p.txn_id, "postback for an unknown click dropped");
            return Ok(());
        };
        let event = ConversionRecorded {
            conversion_id: conversion_id(p.network_id, &p.txn_id),
            network_id: p.network_id,
            txn_id: p.txn_id,
            click_id: p.click_id,
            campaign_id: click.campaign_id,
            affiliate_id: click.affiliate_id,
            tenant_id: click.tenant_id,
            offer_id: click.offer_id,
            user_id: click.user_id,
            payout: p.payout,
            status: p.status,
            occurred_at_ms: p.received_at_ms,
        };
        publish_event(self.bus.as_ref(), &event).await?;
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

/// Writes legs and counts them.
async fn post_legs(store: &SharedStore, legs: &[PostingRecord]) -> Result<(), crate::store::StoreError> {
    store.put_postings(legs).await?;
    for l in legs {
        POSTINGS.with_label_values(&[&l.account]).inc();
    }
    Ok(())
}

fn postings(conversion: &ConversionRecord, legs: Vec<Leg>) -> Vec<PostingRecord> {
    let now = Utc::now();
    legs.into_iter()
        .map(|l| PostingRecord {
            conversion_id: conversion.id,
            leg: l.leg,
            account: l.account.to_string(),
            amount_minor: l.amount_minor,
            currency: conversion.currency.clone(),
            at: now,
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

/// The reward as `/v1/rewards/user` shows it.
pub fn reward_view(c: &ConversionRecord) -> Value {
    json!({
        "reward_id": c.id,
        "conversion_id": c.id,
        "campaign_id": c.campaign_id,
        "offer_id": c.offer_id,
        "amount": c.reward_minor as f64 / 100.0,
        "currency": c.currency,
        "status": c.status,
        "created_at": crate::json::format_time(&c.created_at),
        "updated_at": crate::json::format_time(&c.updated_at),
        "paid_at": c.paid_at.as_ref().map(crate::json::format_time),
    })
}

/// Queues `event` (reward.queued / reward.paid) for the partner's webhooks of that event.
async fn queue_reward_webhooks(store: &SharedStore, bus: &SharedBus, event: &str, c: &ConversionRecord) -> anyhow::Result<()> {
    let mut object = reward_view(c);
    object["user_id"] = json!(c.user_id);
    object["tenant_id"] = json!(c.tenant_id);
    let occurred = c.updated_at.timestamp_millis();
    for w in store.webhooks_of(c.affiliate_id).await? {
        if w.event != event || w.disabled_at.is_some() {
            continue;
        }
        let job = WebhookJob {
            job_id: format!("{event}:{}:{}", c.id, w.id),
            webhook_id: w.id,
            affiliate_id: w.affiliate_id,
            event: event.to_string(),
            payload_json: crate::webhooks::payloads::wrap(event, w.id, occurred, "reward", &object),
            occurred_at_ms: occurred,
        };
        publish_event(bus.as_ref(), &job).await?;
    }
    Ok(())
}

/// Lets the campaign registry read campaigns from the store.
pub struct StoreCampaignSource(pub SharedStore);

#[async_trait]
impl hissaback_actors::ports::CampaignSource for StoreCampaignSource {
    async fn split_of(&self, affiliate_id: u64, campaign_id: u64) -> anyhow::Result<Option<Split>> {
        Ok(self.0.get_campaign(affiliate_id, campaign_id).await?.as_ref().map(split_of))
    }
}

pub struct LedgerWriter {
    pub store: SharedStore,
    pub bus: SharedBus,
    /// Split rules in memory (the campaign registry actor).
    pub campaigns: hissaback_actors::campaigns::Campaigns,
}

#[async_trait]
impl EventHandler for LedgerWriter {
    type Event = ConversionRecorded;

    async fn handle(&self, e: ConversionRecorded, _d: &Delivery) -> anyhow::Result<()> {
        let existing = self.store.get_conversion(e.conversion_id).await?;
        let first_sight = existing.is_none();
        let now = Utc::now();
        let mut conversion = match existing {
            Some(c) => c,
            None => {
                let Some(split) = self.campaigns.split_of(e.affiliate_id, e.campaign_id).await? else {
                    tracing::warn!(conversion = e.conversion_id, "conversion for an unknown campaign dropped");
                    return Ok(());
                };
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
                }
            }
        };
        let current = if first_sight { None } else { Some(conversion.status) };
        let Some((status, legs)) = transition(current, e.status, conversion.payout_minor, conversion.reward_minor) else {
            return Ok(());
        };
        // Legs first, then the status: a crash in between replays the same legs.
        post_legs(&self.store, &postings(&conversion, legs)).await?;
        conversion.status = status;
        conversion.updated_at = now;
        self.store.put_conversion(&conversion).await?;
        if status == RewardStatus::Queued {
            queue_reward_webhooks(&self.store, &self.bus, "reward.queued", &conversion).await?;
        }
        Ok(())
    }
}

/// Pays queued rewards (all of them, or those named) through the payout provider: each one
/// the provider accepts becomes paid, its payment legs are posted and `reward.paid` is
/// queued; one it refuses stays queued. Returns (paid, failed).
pub async fn pay(
    store: &SharedStore,
    bus: &SharedBus,
    provider: &dyn crate::partner::payouts::PayoutProvider,
    only: Option<&[u64]>,
) -> anyhow::Result<(usize, usize)> {
    let (mut paid, mut failed) = (0, 0);
    let candidates = match only {
        // Named rewards are read one by one; otherwise the queued index, never every conversion.
        Some(ids) => {
            let mut ids = ids.to_vec();
            ids.sort_unstable();
            ids.dedup();
            let mut found = Vec::new();
            for id in &ids {
                if let Some(c) = store.get_conversion(*id).await? {
                    found.push(c);
                }
            }
            found
        }
        None => store.queued_conversions().await?,
    };
    for mut c in candidates {
        if c.status != RewardStatus::Queued {
            continue;
        }
        if let Err(e) = provider.pay(&c, &format!("reward-{}", c.id)).await {
            tracing::warn!(reward = c.id, provider = provider.name(), error = %e, "payout failed; the reward stays queued");
            failed += 1;
            continue;
        }
        post_legs(store, &postings(&c, payment_legs(c.reward_minor))).await?;
        let now = Utc::now();
        c.status = RewardStatus::Paid;
        c.paid_at = Some(now);
        c.updated_at = now;
        store.put_conversion(&c).await?;
        queue_reward_webhooks(store, bus, "reward.paid", &c).await?;
        paid += 1;
    }
    Ok((paid, failed))
}

/// `hissaback ledger check`: every conversion's legs sum to zero per event, no reward exceeds
/// its payout, the postings agree with the status, and every account's balance per currency
/// is what the rewards' statuses say it must be (receivable = payouts of approved and paid
/// conversions, payable = rewards still queued, cash = rewards paid). Returns the problems.
pub async fn check(store: &SharedStore) -> anyhow::Result<(usize, Vec<String>)> {
    use hissaback_actors::ledger::accounts;
    use std::collections::BTreeMap;
    let mut problems = Vec::new();
    let conversions = store.conversions().await?;
    // (account, currency) -> (posted, expected)
    let mut balances: BTreeMap<(String, String), (i64, i64)> = BTreeMap::new();
    for c in &conversions {
        let live = matches!(c.status, RewardStatus::Queued | RewardStatus::Paid);
        let expect = |account: &str, amount: i64, b: &mut BTreeMap<(String, String), (i64, i64)>| {
            b.entry((account.to_string(), c.currency.clone())).or_default().1 += amount;
        };
        expect(accounts::NETWORK_RECEIVABLE, if live { c.payout_minor } else { 0 }, &mut balances);
        expect(accounts::USER_REWARD_PAYABLE, if c.status == RewardStatus::Queued { -c.reward_minor } else { 0 }, &mut balances);
        expect(accounts::PLATFORM_REVENUE, if live { -(c.payout_minor - c.reward_minor) } else { 0 }, &mut balances);
        expect(accounts::CASH, if c.status == RewardStatus::Paid { -c.reward_minor } else { 0 }, &mut balances);
        if c.reward_minor > c.payout_minor || c.reward_minor < 0 {
            problems.push(format!("conversion {}: reward {} exceeds payout {}", c.id, c.reward_minor, c.payout_minor));
        }
        let legs = store.postings_of(c.id).await?;
        for l in &legs {
            balances.entry((l.account.clone(), l.currency.clone())).or_default().0 += l.amount_minor;
        }
        for prefix in ["approve:", "reverse:", "pay:"] {
            let sum: i64 = legs.iter().filter(|l| l.leg.starts_with(prefix)).map(|l| l.amount_minor).sum();
            if sum != 0 {
                problems.push(format!("conversion {}: {prefix} legs sum to {sum}, not 0", c.id));
            }
        }
        let has = |p: &str| legs.iter().any(|l| l.leg.starts_with(p));
        let expected = match c.status {
            RewardStatus::Pending => (false, false, false),
            RewardStatus::Queued => (true, false, false),
            RewardStatus::Paid => (true, false, true),
            RewardStatus::Rejected | RewardStatus::Reversed => (has("approve:"), has("approve:"), false),
        };
        if (has("approve:"), has("reverse:"), has("pay:")) != expected {
            problems.push(format!("conversion {}: postings do not match status {}", c.id, c.status.as_str()));
        }
    }
    for ((account, currency), (posted, expected)) in balances {
        if posted != expected {
            problems.push(format!("account {account} ({currency}): postings sum to {posted}, the rewards say {expected}"));
        }
    }
    Ok((conversions.len(), problems))
}
