//! Payouts: the payer and the providers it calls.
//!
//! The [`Payer`] consumes `payouts` (jobs the conversion writer derives when it moves a reward
//! to `paying`), keyed by end user: one payer handles a user's payments in order. For each it
//! checks the payment is still the one in flight, nets what the user owes back from earlier
//! clawbacks (it alone writes the user's recovery record, so two payments never recover the
//! same debt), calls the provider with the idempotency key `reward-{id}`, and sends the
//! outcome back to the conversion's writer as `PaymentSettled`.
//!
//! Providers: `manual` (the default) records the payment the operator made by other means;
//! `http` calls a payout endpoint with an `Idempotency-Key` of `reward-{id}`, so a retried
//! payment is never paid twice by a provider that honours the key.

use crate::configuration::PayoutSettings;
use crate::store::{ConversionRecord, RewardStatus, SharedStore};
use async_trait::async_trait;
use hissaback_actors::consumer::BatchHandler;
use hissaback_topics::bus::publish_events;
use hissaback_topics::events::{ConversionEvent, PayoutJob};
use hissaback_topics::{Delivery, SharedBus};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

#[async_trait]
pub trait PayoutProvider: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    /// Pays `amount_minor` of the reward (the reward less what recovered an earlier
    /// clawback); `Ok` means the money is on its way and the reward may be marked paid.
    async fn pay(&self, reward: &ConversionRecord, amount_minor: i64, idempotency_key: &str) -> anyhow::Result<()>;
}

/// The settings row holding what a user's payments recovered of their clawbacks, per
/// conversion paid: written by the user's payer only.
fn recoveries_key(job: &PayoutJob) -> String {
    format!("payouts.recovered.{}.{}.{}", job.affiliate_id, job.tenant_id, job.user_id)
}

async fn recoveries(store: &SharedStore, job: &PayoutJob) -> anyhow::Result<BTreeMap<u64, i64>> {
    Ok(match store.get_setting(&recoveries_key(job)).await? {
        Some(raw) => serde_json::from_str(&raw)?,
        None => BTreeMap::new(),
    })
}

/// Calls the provider for each payment in flight and reports the outcome (see the module).
pub struct Payer {
    pub store: SharedStore,
    pub bus: SharedBus,
    pub provider: Arc<dyn PayoutProvider>,
}

impl Payer {
    /// The part of this payment that recovers what the user owes (decided once per payment
    /// and kept, so a retried job recovers the same amount).
    async fn recovery(&self, job: &PayoutJob, c: &ConversionRecord) -> anyhow::Result<i64> {
        let mut taken = recoveries(&self.store, job).await?;
        if let Some(x) = taken.get(&c.id) {
            return Ok(*x);
        }
        let clawbacks: i64 = self
            .store
            .rewards_of_user(job.affiliate_id, &job.tenant_id, &job.user_id)
            .await?
            .iter()
            .filter(|o| o.currency == c.currency)
            .map(|o| o.clawback_minor)
            .sum();
        let recovered: i64 = taken.values().sum();
        let x = (clawbacks - recovered).clamp(0, c.reward_minor);
        if x > 0 {
            taken.insert(c.id, x);
            self.store.put_setting(&recoveries_key(job), &serde_json::to_string(&taken)?).await?;
        }
        Ok(x)
    }

    /// Gives a failed payment's recovery back: the user still owes it.
    async fn release(&self, job: &PayoutJob) -> anyhow::Result<()> {
        let mut taken = recoveries(&self.store, job).await?;
        if taken.remove(&job.conversion_id).is_some() {
            self.store.put_setting(&recoveries_key(job), &serde_json::to_string(&taken)?).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl BatchHandler for Payer {
    type Event = PayoutJob;

    async fn handle_batch(&self, batch: Vec<(PayoutJob, Delivery)>) -> anyhow::Result<()> {
        let mut outcomes = Vec::new();
        for (job, _) in batch {
            let Some(c) = self.store.get_conversion(job.conversion_id).await? else { continue };
            // A job whose payment settled already (a republished job) or was replaced.
            let in_flight = c.status == RewardStatus::Paying && c.payment.as_ref().is_some_and(|p| p.request_id == job.request_id && p.outcome.is_none());
            if !in_flight {
                continue;
            }
            let recovered = self.recovery(&job, &c).await?;
            let amount = c.reward_minor - recovered;
            let result = if amount > 0 { self.provider.pay(&c, amount, &format!("reward-{}", c.id)).await } else { Ok(()) };
            if let Err(e) = &result {
                tracing::warn!(reward = c.id, provider = self.provider.name(), error = %e, "payout failed; the reward goes back to queued");
                self.release(&job).await?;
            }
            outcomes.push(ConversionEvent::PaymentSettled {
                conversion_id: c.id,
                request_id: job.request_id,
                paid: result.is_ok(),
                recovered_minor: if result.is_ok() { recovered } else { 0 },
                error: result.err().map(|e| format!("{e:#}")),
                settled_at_ms: chrono::Utc::now().timestamp_millis(),
            });
        }
        publish_events(self.bus.as_ref(), &outcomes).await?;
        Ok(())
    }
}

/// The operator pays outside hissaback; marking paid is the whole job.
pub struct ManualProvider;

#[async_trait]
impl PayoutProvider for ManualProvider {
    fn name(&self) -> &'static str {
        "manual"
    }

    async fn pay(&self, _reward: &ConversionRecord, _amount_minor: i64, _key: &str) -> anyhow::Result<()> {
        Ok(())
    }
}

/// POSTs `{reward_id, affiliate_id, tenant_id, user_id, amount, currency}` to a payout
/// endpoint; any 2xx is success.
pub struct HttpProvider {
    client: reqwest::Client,
    url: String,
}

#[async_trait]
impl PayoutProvider for HttpProvider {
    fn name(&self) -> &'static str {
        "http"
    }

    async fn pay(&self, r: &ConversionRecord, amount_minor: i64, key: &str) -> anyhow::Result<()> {
        let body = serde_json::json!({
            "reward_id": r.id,
            "affiliate_id": r.affiliate_id,
            "tenant_id": r.tenant_id,
            "user_id": r.user_id,
            "amount": amount_minor as f64 / 100.0,
            "currency": r.currency,
        });
        let res = self.client.post(&self.url).header("Idempotency-Key", key).json(&body).send().await?;
        anyhow::ensure!(res.status().is_success(), "payout endpoint answered {}", res.status());
        Ok(())
    }
}

/// The provider the configuration names.
pub fn from_settings(s: &PayoutSettings) -> anyhow::Result<Arc<dyn PayoutProvider>> {
    match s.provider.as_str() {
        "manual" => Ok(Arc::new(ManualProvider)),
        "http" => {
            anyhow::ensure!(!s.http_url.is_empty(), "payouts.http_url is required with the http provider");
            let client = reqwest::Client::builder().timeout(Duration::from_millis(s.timeout_ms)).build()?;
            Ok(Arc::new(HttpProvider { client, url: s.http_url.clone() }))
        }
        other => anyhow::bail!("payouts.provider `{other}` is not one of manual, http"),
    }
}
