//! Storage ports: what the actors need from a store, as traits the service implements.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

/// One "key was used at" observation, coalesced per key before it reaches the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyLastUsed {
    pub key_id: u64,
    pub at: DateTime<Utc>,
}

/// Where the key-usage recorder writes `last_used_at` values.
#[async_trait]
pub trait KeyUsageSink: Send + Sync + 'static {
    /// Writes the batch; an error keeps the batch in the recorder for the next flush.
    async fn record_last_used(&self, batch: &[KeyLastUsed]) -> anyhow::Result<()>;
}

/// Where the campaign registry reads a campaign it has not seen yet.
#[async_trait]
pub trait CampaignSource: Send + Sync + 'static {
    /// The split of the partner's campaign, `None` when there is no such campaign.
    async fn split_of(&self, affiliate_id: u64, campaign_id: u64) -> anyhow::Result<Option<crate::ledger::Split>>;
}
