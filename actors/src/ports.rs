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

/// One usage counter cell: requests of one key, in one minute, on one route, in one status
/// class (`2xx` … `5xx`). Counters feed dashboards and stats, not money.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UsageCell {
    pub affiliate_id: u64,
    /// The start of the minute (seconds are zero).
    pub minute: DateTime<Utc>,
    pub key_id: u64,
    /// The route pattern (`/api/v1/products/{id}`), never the raw path.
    pub route: String,
    /// `2xx`, `3xx`, `4xx` or `5xx`.
    pub status_class: String,
}

/// What a cell counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UsageCounts {
    pub requests: u64,
    /// Of those, refused with 429 by the key's rate limit.
    pub rate_limited: u64,
}

impl UsageCounts {
    pub fn add(&mut self, other: UsageCounts) {
        self.requests += other.requests;
        self.rate_limited += other.rate_limited;
    }
}

/// Clicks on one campaign's links in one UTC day.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClickCell {
    pub affiliate_id: u64,
    pub campaign_id: u64,
    pub day: chrono::NaiveDate,
}

/// Who made an audited call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditActor {
    /// An affiliate's API key (`key_id` is set).
    Key,
    /// The operator, through the admin API.
    Admin,
    /// A network posting back (`key_id` is unset; `affiliate_id` is 0).
    Network,
    /// Nobody authenticated: a missing or wrong credential.
    Anonymous,
}

/// One audited API call. `affiliate_id` 0 holds calls that belong to no affiliate
/// (admin actions, anonymous failures, postbacks).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AuditEntry {
    pub at: DateTime<Utc>,
    pub affiliate_id: u64,
    pub key_id: Option<u64>,
    /// The network, for postbacks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_id: Option<u64>,
    pub actor: AuditActor,
    pub method: String,
    pub route: String,
    /// The path without its query string (a query may carry `api_key`).
    pub path: String,
    pub status: u16,
    pub latency_us: u64,
    pub client_ip: Option<String>,
    pub request_id: String,
}

/// Where the usage recorder writes counters and audit rows.
#[async_trait]
pub trait UsageSink: Send + Sync + 'static {
    /// Adds the counts to the stored counters.
    async fn add_usage(&self, batch: &[(UsageCell, UsageCounts)]) -> anyhow::Result<()>;
    /// Adds clicks per campaign and day.
    async fn add_clicks(&self, batch: &[(ClickCell, u64)]) -> anyhow::Result<()>;
    /// Appends audit rows; the sink applies the retention (a TTL).
    async fn append_audit(&self, batch: &[AuditEntry]) -> anyhow::Result<()>;
}
