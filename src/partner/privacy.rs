//! End users' personal data (issue 13, seed "Data privacy compliance").
//!
//! - Retention: a click keeps its full IP and user agent for `privacy.click_personal_data_days`
//!   (attribution needs them no longer), then only the IP's /24 (/48 for IPv6) and no user
//!   agent. ScyllaDB keeps the full fields in a table of their own written `USING TTL`; the
//!   embedded store is swept by [`ClickSweeper`] (at start, then every
//!   `privacy.sweep_seconds`), in batches.
//! - Export ([`export_user`]): everything held about one end user of one partner and tenant:
//!   clicks, conversions and rewards.
//! - Erasure ([`erase_user`]): the end user's id becomes a pseudonym (an HMAC under the
//!   server's pepper, [`Pseudonyms`]: the same user always maps to the same pseudonym, so the
//!   ledger's per-user netting still adds up, and nobody without the pepper can map it
//!   back); clicks lose their IP and user agent. Conversions have one writer, the ledger
//!   writer: erasure reaches them as `ConversionEvent::UserErased`, keyed by conversion, so
//!   it is applied in order with their other events, amounts and postings untouched. The
//!   pseudonym is also put on an erasure list that the ledger writer reads when an event
//!   creates a conversion, so an event already in the log for the erased user (consumed
//!   later) does not bring the user id back.

use crate::store::{ClickRecord, ConversionRecord, SharedStore};
use actix::prelude::*;
use chrono::Utc;
use hissaback_topics::bus::publish_events;
use hissaback_topics::events::ConversionEvent;
use hissaback_topics::SharedBus;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use std::collections::BTreeSet;
use std::time::Duration;

/// Maps an end user (partner, tenant, user id) to a stable pseudonym: `erased_` and 32 hex
/// digits of an HMAC-SHA256 under the pepper.
#[derive(Clone)]
pub struct Pseudonyms {
    keyed: Hmac<Sha256>,
}

impl Pseudonyms {
    pub fn new(pepper: &SecretString) -> Self {
        Self { keyed: Hmac::<Sha256>::new_from_slice(pepper.expose_secret().as_bytes()).expect("HMAC accepts keys of any length") }
    }

    pub fn of(&self, affiliate_id: u64, tenant_id: &str, user_id: &str) -> String {
        let mut mac = self.keyed.clone();
        // Lengths first, so no two (tenant, user) pairs hash the same text.
        mac.update(format!("privacy:{affiliate_id}:{}:{tenant_id}:{user_id}", tenant_id.len()).as_bytes());
        format!("erased_{}", &hex::encode(mac.finalize().into_bytes())[..32])
    }
}

/// What is held about one end user of one partner and tenant.
pub struct UserData {
    pub clicks: Vec<ClickRecord>,
    pub conversions: Vec<ConversionRecord>,
}

/// The end user's clicks (by the click index, and those their conversions name) and
/// conversions (each with its reward).
pub async fn export_user(store: &SharedStore, affiliate_id: u64, tenant_id: &str, user_id: &str) -> anyhow::Result<UserData> {
    let conversions = store.rewards_of_user(affiliate_id, tenant_id, user_id).await?;
    let mut clicks = store.clicks_of_user(affiliate_id, tenant_id, user_id).await?;
    let known: BTreeSet<String> = clicks.iter().map(|c| c.click_id.clone()).collect();
    let named: BTreeSet<&str> = conversions.iter().map(|c| c.click_id.as_str()).filter(|id| !known.contains(*id)).collect();
    for id in named {
        // A click made before the click index existed; it must be this partner's.
        if let Some(c) = store.get_click(id).await? {
            if c.affiliate_id == affiliate_id && c.tenant_id == tenant_id {
                clicks.push(c);
            }
        }
    }
    clicks.sort_by(|a, b| a.at.cmp(&b.at).then_with(|| a.click_id.cmp(&b.click_id)));
    Ok(UserData { clicks, conversions })
}

/// What an erasure did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ErasureSummary {
    pub pseudonym: String,
    /// Clicks whose personal data was erased.
    pub clicks: usize,
    /// Conversions handed to the ledger writer for pseudonymisation.
    pub conversions: usize,
    /// Of those, the ones not yet pseudonymised when the wait ended (they are later).
    pub pending: usize,
}

/// Erases the end user's personal data (see the module): the erasure list first (so a
/// conversion the ledger writer creates from now on is pseudonymised), then the clicks, then
/// a `UserErased` per conversion to its writer, waiting up to `wait` until none of the
/// user's conversions carries the user id any more (a conversion created meanwhile from an
/// older event is found by the next look and erased too); then the index rows keyed by the
/// user id are dropped. Repeating an erasure is harmless.
pub async fn erase_user(
    store: &SharedStore,
    bus: &SharedBus,
    pseudonyms: &Pseudonyms,
    affiliate_id: u64,
    tenant_id: &str,
    user_id: &str,
    wait: Duration,
) -> anyhow::Result<ErasureSummary> {
    let pseudonym = pseudonyms.of(affiliate_id, tenant_id, user_id);
    store.put_erasure(&pseudonym, Utc::now()).await?;
    let clicks = store.erase_clicks_of_user(affiliate_id, tenant_id, user_id, &pseudonym).await?;
    let deadline = tokio::time::Instant::now() + wait;
    let mut sent: BTreeSet<u64> = BTreeSet::new();
    let mut pause = Duration::from_millis(5);
    let pending = loop {
        let left = store.rewards_of_user(affiliate_id, tenant_id, user_id).await?;
        if left.is_empty() {
            break 0;
        }
        let erased_at_ms = Utc::now().timestamp_millis();
        let events: Vec<ConversionEvent> = left
            .iter()
            .filter(|c| sent.insert(c.id))
            .map(|c| ConversionEvent::UserErased { conversion_id: c.id, pseudonym: pseudonym.clone(), erased_at_ms })
            .collect();
        publish_events(bus.as_ref(), &events).await?;
        if tokio::time::Instant::now() >= deadline {
            break left.len();
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(100));
    };
    if pending == 0 {
        store.forget_user_index(affiliate_id, tenant_id, user_id).await?;
    }
    Ok(ErasureSummary { pseudonym, clicks, conversions: sent.len(), pending })
}

/// Clicks truncated per store call of a sweep.
const SWEEP_BATCH: usize = 500;

/// Truncates every click older than `retention` that still holds its full IP or user agent
/// (embedded store; ScyllaDB answers 0: a TTL does it). Answers how many.
pub async fn sweep_clicks(store: &SharedStore, retention: Duration) -> anyhow::Result<usize> {
    let before = Utc::now() - chrono::Duration::from_std(retention)?;
    let mut total = 0;
    loop {
        let n = store.expire_click_personal_data(before, SWEEP_BATCH).await?;
        total += n;
        if n < SWEEP_BATCH {
            return Ok(total);
        }
    }
}

/// Deletes every finished webhook delivery last attempted more than `retention` ago
/// (embedded store; ScyllaDB answers 0: a TTL does it). Answers how many.
pub async fn sweep_deliveries(store: &SharedStore, retention: Duration) -> anyhow::Result<usize> {
    let before = Utc::now() - chrono::Duration::from_std(retention)?;
    let mut total = 0;
    loop {
        let n = store.expire_deliveries(before, SWEEP_BATCH).await?;
        total += n;
        if n < SWEEP_BATCH {
            return Ok(total);
        }
    }
}

/// Runs [`sweep_clicks`] (and [`sweep_deliveries`] when a delivery-log retention is set) at
/// start and then every `every`; one sweep at a time.
pub struct ClickSweeper {
    pub store: SharedStore,
    pub retention: Duration,
    pub every: Duration,
    /// `webhooks.delivery_log_days`.
    pub delivery_retention: Option<Duration>,
    running: bool,
}

impl ClickSweeper {
    pub fn new(store: SharedStore, retention: Duration, every: Duration) -> Self {
        Self { store, retention, every, delivery_retention: None, running: false }
    }

    /// Also deletes the delivery log's rows past `retention`.
    pub fn with_delivery_retention(mut self, retention: Duration) -> Self {
        self.delivery_retention = Some(retention);
        self
    }

    fn sweep(&mut self, ctx: &mut Context<Self>) {
        if self.running {
            return;
        }
        self.running = true;
        let (store, retention, deliveries) = (self.store.clone(), self.retention, self.delivery_retention);
        ctx.spawn(
            async move {
                match sweep_clicks(&store, retention).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(clicks = n, "personal data of old clicks truncated"),
                    Err(e) => tracing::warn!(error = %e, "click retention sweep failed; retried at the next one"),
                }
                if let Some(keep) = deliveries {
                    match sweep_deliveries(&store, keep).await {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(deliveries = n, "webhook deliveries past the delivery log's retention deleted"),
                        Err(e) => tracing::warn!(error = %e, "delivery log retention sweep failed; retried at the next one"),
                    }
                }
            }
            .into_actor(self)
            .map(|_, actor, _| actor.running = false),
        );
    }
}

impl Actor for ClickSweeper {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.sweep(ctx);
        ctx.run_interval(self.every, |actor, ctx| actor.sweep(ctx));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudonyms_are_stable_per_user_and_differ_across_users_tenants_and_partners() {
        let p = Pseudonyms::new(&SecretString::from("p".repeat(32)));
        let a = p.of(1, "t", "u");
        assert_eq!(a, p.of(1, "t", "u"));
        assert!(a.starts_with("erased_") && a.len() == 39);
        assert_ne!(a, p.of(2, "t", "u"));
        assert_ne!(a, p.of(1, "t2", "u"));
        assert_ne!(a, p.of(1, "t", "u2"));
        assert_ne!(p.of(1, "a:b", "c"), p.of(1, "a", "b:c"));
        assert_ne!(a, Pseudonyms::new(&SecretString::from("q".repeat(32))).of(1, "t", "u"));
    }

    #[test]
    fn ips_are_truncated_to_their_network() {
        use crate::store::truncate_ip;
        assert_eq!(truncate_ip("203.0.113.77").as_deref(), Some("203.0.113.0"));
        assert_eq!(truncate_ip("2001:db8:abcd:12:1:2:3:4").as_deref(), Some("2001:db8:abcd::"));
        assert_eq!(truncate_ip("not an ip"), None);
    }
}
