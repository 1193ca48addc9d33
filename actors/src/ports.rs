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
    /// The start of the period: a minute as the request path notes it; a minute, hour or
    /// day as the store reads it back (see [`UsageResolution`]).
    pub period: DateTime<Utc>,
    pub key_id: u64,
    /// The route pattern (`/api/v1/products/{id}`), never the raw path.
    pub route: String,
    /// `2xx`, `3xx`, `4xx` or `5xx`.
    pub status_class: String,
}

/// The resolutions usage counters are kept at: each request adds to its minute, its hour and
/// its day, so a long window is read from a few coarse rows rather than every minute.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum UsageResolution {
    Minute,
    Hour,
    Day,
}

impl UsageResolution {
    pub const ALL: [UsageResolution; 3] = [UsageResolution::Minute, UsageResolution::Hour, UsageResolution::Day];

    pub fn name(self) -> &'static str {
        match self {
            Self::Minute => "minute",
            Self::Hour => "hour",
            Self::Day => "day",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.name() == raw)
    }

    pub fn step(self) -> chrono::Duration {
        match self {
            Self::Minute => chrono::Duration::minutes(1),
            Self::Hour => chrono::Duration::hours(1),
            Self::Day => chrono::Duration::days(1),
        }
    }

    /// The start of the period `t` falls in (in whole seconds, so any year works).
    pub fn floor(self, t: DateTime<Utc>) -> DateTime<Utc> {
        let (secs, step) = (t.timestamp(), self.step().num_seconds());
        DateTime::from_timestamp(secs - secs.rem_euclid(step), 0).unwrap_or(t)
    }

    /// The end of the period `t` falls in, or `t` itself when it starts a period.
    pub fn ceil(self, t: DateTime<Utc>) -> DateTime<Utc> {
        let floor = self.floor(t);
        if floor == t {
            t
        } else {
            floor.checked_add_signed(self.step()).unwrap_or(t)
        }
    }

    /// The storage bucket of a period (a CQL partition holds one): the UTC day of a minute,
    /// the month of an hour, the year of a day. At most 1,440, 744 or 366 periods each.
    pub fn bucket(self, t: DateTime<Utc>) -> String {
        match self {
            Self::Minute => t.format("%Y-%m-%d").to_string(),
            Self::Hour => t.format("%Y-%m").to_string(),
            Self::Day => t.format("%Y").to_string(),
        }
    }

    /// Every bucket a window `[from, to)` touches, in order.
    pub fn buckets(self, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut t = self.floor(from);
        while t < to {
            let b = self.bucket(t);
            if out.last() != Some(&b) {
                out.push(b);
            }
            t += match self {
                Self::Minute => chrono::Duration::hours(1),
                Self::Hour | Self::Day => chrono::Duration::days(1),
            };
        }
        if let Some(last) = to.checked_sub_signed(chrono::Duration::nanoseconds(1)).map(|t| self.bucket(t)) {
            if to > from && out.last() != Some(&last) {
                out.push(last);
            }
        }
        out
    }
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
    /// Adds minute cells to the stored counters (at every resolution).
    async fn add_usage(&self, batch: &[(UsageCell, UsageCounts)]) -> anyhow::Result<()>;
    /// Adds clicks per campaign and day.
    async fn add_clicks(&self, batch: &[(ClickCell, u64)]) -> anyhow::Result<()>;
    /// Appends audit rows; the sink applies the retention (a TTL).
    async fn append_audit(&self, batch: &[AuditEntry]) -> anyhow::Result<()>;
}
