//! Payout providers: how a queued reward reaches the end user. `manual` (the default) records
//! the payment the operator made by other means; `http` calls a payout endpoint with an
//! `Idempotency-Key` of `reward-{id}`, so a retried payment is never paid twice by a provider
//! that honours the key.

use crate::configuration::PayoutSettings;
use crate::store::ConversionRecord;
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;

#[async_trait]
pub trait PayoutProvider: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    /// Pays the reward; `Ok` means the money is on its way and the reward may be marked paid.
    async fn pay(&self, reward: &ConversionRecord, idempotency_key: &str) -> anyhow::Result<()>;
}

/// The operator pays outside hissaback; marking paid is the whole job.
pub struct ManualProvider;

#[async_trait]
impl PayoutProvider for ManualProvider {
    fn name(&self) -> &'static str {
        "manual"
    }

    async fn pay(&self, _reward: &ConversionRecord, _key: &str) -> anyhow::Result<()> {
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

    async fn pay(&self, r: &ConversionRecord, key: &str) -> anyhow::Result<()> {
        let body = serde_json::json!({
            "reward_id": r.id,
            "affiliate_id": r.affiliate_id,
            "tenant_id": r.tenant_id,
            "user_id": r.user_id,
            "amount": r.reward_minor as f64 / 100.0,
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
