//! Storage: the records hissaback keeps and the [`Store`] trait every backend implements.
//!
//! The trait is shaped for CQL from day one, so the ScyllaDB backend fits without changing
//! it: every read is by partition key (plus a clustering range), there are no joins and no
//! ad-hoc filtering in the database, writes are whole-row upserts (idempotent), and ids
//! come from [`Store::next_id`], which a distributed backend can serve from reserved blocks
//! instead of an auto-increment. Calls on an affiliate's data take the affiliate id, which
//! is part of every such partition key.
//!
//! # Edits of shared records
//!
//! Records that several requests may edit at once (affiliates, keys, categories, products)
//! carry a `version`. A whole-row `put_*` is for creating one; an edit reads the record,
//! changes its copy and writes it back with `replace_*`, which stores it only if the stored
//! record is still at the version read (and then at that version + 1). When it is not,
//! another edit came first: the caller reads again and re-applies its change to the fresh
//! copy ([`EditAttempts`]), so no edit overwrites another with a stale copy (STYLE 13,
//! DESIGN "Data rules"). SQLite checks the version in the `UPDATE`'s `WHERE` on its one
//! writer; CQL uses a lightweight transaction on the exact stored text (`IF body = ?`):
//! such rows, once created, are only ever rewritten through LWTs.
//!
//! Backends, chosen once at start from configuration: [`embedded`] (SQLite, the default)
//! and [`scylla`] (ScyllaDB or Apache Cassandra).

pub mod embedded;
pub mod scylla;

use crate::configuration::{Settings, StoreBackend};
use crate::domain::{KeyKind, Scope};
use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
pub use hissaback_actors::ports::{AuditActor, AuditEntry, ClickCell, UsageCell, UsageCounts, UsageResolution};
use hissaback_actors::ports::{KeyLastUsed, KeyUsageSink};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// `hissaback_store_operation_duration_seconds{backend}`: every statement (or, embedded,
/// every transaction) a backend runs. One process-wide histogram, registered by each
/// application's [`crate::metrics::Metrics`].
pub static STORE_SECONDS: std::sync::LazyLock<prometheus::HistogramVec> = std::sync::LazyLock::new(|| {
    let h = prometheus::HistogramVec::new(
        prometheus::HistogramOpts::new("hissaback_store_operation_duration_seconds", "Time of store statements, by backend")
            .buckets(vec![0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5]),
        &["backend"],
    )
    .expect("valid metric");
    for backend in ["embedded", "scylla"] {
        h.with_label_values(&[backend]);
    }
    h
});

/// Times one store statement into [`STORE_SECONDS`].
pub(crate) fn observe_store(backend: &str, started: std::time::Instant) {
    STORE_SECONDS.with_label_values(&[backend]).observe(started.elapsed().as_secs_f64());
}

/// Minute cells summed into every resolution's cells, in a stable order (what `add_usage`
/// writes).
pub fn usage_rollups(batch: &[(UsageCell, UsageCounts)]) -> Vec<(UsageResolution, UsageCell, UsageCounts)> {
    let mut sums: std::collections::BTreeMap<(UsageResolution, UsageCell), UsageCounts> = std::collections::BTreeMap::new();
    for (cell, counts) in batch {
        for r in UsageResolution::ALL {
            let key = UsageCell { period: r.floor(cell.period), ..cell.clone() };
            sums.entry((r, key)).or_default().add(*counts);
        }
    }
    sums.into_iter().map(|((r, c), n)| (r, c, n)).collect()
}

/// Why a store call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached; the request may be retried.
    #[error("store unavailable: {0}")]
    Unavailable(anyhow::Error),
    /// A stored value could not be read back (corruption or an incompatible format).
    #[error("stored data is unreadable: {0}")]
    Corrupt(String),
    /// Anything else the driver reported.
    #[error("store error: {0}")]
    Other(anyhow::Error),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Named id sequences. Ids are positive integers, unique per sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Sequence {
    Affiliate,
    User,
    ApiKey,
    Category,
    Product,
    Promotion,
    BlogProfile,
    Blog,
    Webhook,
    Brand,
    Offer,
    Network,
    Campaign,
}

impl Sequence {
    pub fn as_str(self) -> &'static str {
        match self {
            Sequence::Affiliate => "affiliates",
            Sequence::User => "users",
            Sequence::ApiKey => "api_keys",
            Sequence::Category => "categories",
            Sequence::Product => "products",
            Sequence::Promotion => "promotions",
            Sequence::BlogProfile => "blog_profiles",
            Sequence::Blog => "blogs",
            Sequence::Webhook => "webhooks",
            Sequence::Brand => "brands",
            Sequence::Offer => "offers",
            Sequence::Network => "networks",
            Sequence::Campaign => "campaigns",
        }
    }
}

/// The user account linked to an affiliate (authors its blogs).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    pub id: u64,
    pub name: String,
    pub email: String,
}

/// An affiliate (partner) account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AffiliateRecord {
    pub id: u64,
    pub name: String,
    pub email: String,
    pub active: bool,
    pub blog_approved: bool,
    pub user: Option<UserRecord>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Bumped by every conditional write ([`Store::replace_affiliate`]); documents stored before
    /// versions were kept read as 0.
    #[serde(default)]
    pub version: u64,
}

/// A key's rate plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RatePlan {
    pub per_minute: u32,
    pub burst: u32,
}

/// An API key as stored: never the plain key, only its peppered hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    pub id: u64,
    pub affiliate_id: u64,
    pub kind: KeyKind,
    /// The recognisable start of the plain key (`hb_sk_Ab3dE9xQ`), safe to show.
    pub prefix: String,
    /// Hex HMAC-SHA256 of the plain key under the pepper.
    pub hash: String,
    pub scopes: Vec<Scope>,
    pub allowed_brand_ids: Vec<u64>,
    pub allowed_offer_ids: Vec<u64>,
    pub rate_limit: RatePlan,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    /// Set by a rotation: the key stops working at this time.
    pub expires_at: Option<DateTime<Utc>>,
    /// Set by a revocation: the key stopped working at this time.
    pub revoked_at: Option<DateTime<Utc>>,
    /// The key that replaced this one in a rotation.
    pub rotated_to: Option<u64>,
    /// Bumped by every conditional write ([`Store::replace_key`]); documents stored before
    /// versions were kept read as 0.
    #[serde(default)]
    pub version: u64,
}

impl ApiKeyRecord {
    /// Whether the key authenticates at `now`.
    pub fn is_usable_at(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|t| now < t)
    }
}

/// A storefront category. Soft-deleted categories keep their row with `deleted_at` set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CategoryRecord {
    pub id: u64,
    pub name: String,
    /// May be absent or blank: such categories are not listed to affiliates.
    pub slug: Option<String>,
    pub active: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
    /// Bumped by every conditional write ([`Store::replace_category`]); documents stored before
    /// versions were kept read as 0.
    #[serde(default)]
    pub version: u64,
}

/// A coupon tier of a course.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CouponTier {
    Low,
    Mid,
    High,
}

impl CouponTier {
    pub const ALL: [CouponTier; 3] = [CouponTier::Low, CouponTier::Mid, CouponTier::High];
}

/// An affiliate coupon of a product (one per tier; a newer one replaces the tier's older one).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CouponRecord {
    pub tier: CouponTier,
    pub code: String,
    pub percent_off: Decimal,
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TeacherRecord {
    pub id: u64,
    pub name: String,
}

/// A storefront product: a course or a bundle of products. Prices are kept in USD.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductRecord {
    pub id: u64,
    pub title: String,
    pub slug: String,
    pub description: String,
    pub image: Option<String>,
    pub price_usd: Decimal,
    /// The model type, e.g. `App\Models\Course`, `App\Models\ProductBundle`.
    pub model_type: String,
    pub category_slug: Option<String>,
    pub published: bool,
    pub introduction_video_url: Option<String>,
    pub bundle_product_ids: Vec<u64>,
    pub teachers: Vec<TeacherRecord>,
    pub coupons: Vec<CouponRecord>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Bumped by every conditional write ([`Store::replace_product`]); documents stored before
    /// versions were kept read as 0.
    #[serde(default)]
    pub version: u64,
}

/// A promotion: a site-wide percentage and the bundles it features.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromotionRecord {
    pub id: u64,
    pub title: String,
    pub text: String,
    /// e.g. `Percentage Promotion`.
    pub promotion_type: String,
    pub percentage_off: Decimal,
    pub ends_at: Option<DateTime<Utc>>,
    pub bundle_ids: Vec<u64>,
    pub created_at: DateTime<Utc>,
}

/// An author identity an affiliate publishes blogs under.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlogProfileRecord {
    pub id: u64,
    pub affiliate_id: u64,
    pub name: String,
    /// Unique across the system (claimed through [`Store::claim_unique`]).
    pub identifier: String,
    pub created_at: DateTime<Utc>,
}

/// A blog post written by an affiliate's user, reviewed before it is published.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlogRecord {
    pub id: u64,
    pub affiliate_id: u64,
    pub author_user_id: u64,
    pub profile_id: u64,
    pub title: String,
    /// Unique across the system (claimed through [`Store::claim_unique`]).
    pub slug: String,
    pub content: String,
    pub category_slug: String,
    pub published: bool,
    pub unpublished_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A webhook endpoint of an affiliate, for one event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookRecord {
    pub id: u64,
    pub affiliate_id: u64,
    pub event: String,
    pub url: String,
    /// Shown once at creation; sent as `X-Affiliate-Webhook-Key` and the HMAC key of
    /// `webhook-signature`. Stored encrypted (`enc:v1:...`, see [`crate::secrets`]); a value
    /// without that prefix is a plain one from before, encrypted on its record's next write.
    pub secret: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// First failure of the current run of failures; cleared by a success.
    pub failing_since: Option<DateTime<Utc>>,
    /// Set when the endpoint kept failing too long; no deliveries are attempted then.
    pub disabled_at: Option<DateTime<Utc>>,
    pub disabled_reason: Option<String>,
}

/// Where a delivery stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    Pending,
    Succeeded,
    Failed,
}

/// One HTTP attempt of a delivery.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryAttempt {
    pub at: DateTime<Utc>,
    pub status_code: Option<u16>,
    pub latency_ms: u64,
    pub error: Option<String>,
}

/// One event to one webhook, with every attempt made.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryRecord {
    /// Time-ordered and stable across retries (the `webhook-id` header): `msg_<ms>_<hash>`.
    pub id: String,
    pub webhook_id: u64,
    pub affiliate_id: u64,
    pub event: String,
    /// The JSON body sent.
    pub payload: String,
    pub state: DeliveryState,
    pub attempts: Vec<DeliveryAttempt>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// A redelivery asked for by the affiliate: one attempt, no retries after it.
    #[serde(default)]
    pub manual: bool,
    /// The instance (`server.instance_id`) that queued it: the one that reloads it at start.
    /// Others adopt it only once it is overdue (its instance stopped). `None` in rows written
    /// before owners were kept: any instance reloads those.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

/// A brand whose offers partners promote.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrandRecord {
    pub id: u64,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

/// An offer of the catalogue: what a conversion pays and where clicks go.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfferRecord {
    pub id: u64,
    pub brand_id: u64,
    pub name: String,
    pub category: String,
    /// Percent of the sale the network pays.
    pub base_commission: Decimal,
    /// Share of the payout passed to end users by default, percent.
    pub default_share_pct: Decimal,
    /// The network's tracking URL, with a `{click_id}` macro.
    pub tracking_url: String,
    pub currency: String,
    /// The offer's id in the network feed it was synced from, if any.
    pub external_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// An affiliate network that sends postbacks, authenticated by its token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkRecord {
    pub id: u64,
    pub name: String,
    /// The HMAC-SHA256 (hex, under the pepper) of the plain token, which is shown once, at
    /// creation or rotation (see [`crate::partner::lookups::NetworkCache`]). A plain
    /// `hb_pb_...` value is a token stored before hashing, still accepted until rotated.
    pub postback_token: String,
    pub created_at: DateTime<Utc>,
}

/// A partner's campaign on an offer: how its conversions are split with end users.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CampaignRecord {
    pub id: u64,
    pub affiliate_id: u64,
    pub offer_id: u64,
    pub tenant_id: String,
    pub share_pct: Option<Decimal>,
    pub flat_reward: Option<Decimal>,
    pub created_at: DateTime<Utc>,
}

/// A smart link: an unguessable code naming a campaign.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkRecord {
    pub code: String,
    pub affiliate_id: u64,
    pub campaign_id: u64,
    pub offer_id: u64,
    pub tenant_id: String,
    pub created_at: DateTime<Utc>,
}

/// A click on a smart link.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClickRecord {
    pub click_id: String,
    pub code: String,
    pub affiliate_id: u64,
    pub campaign_id: u64,
    pub offer_id: u64,
    pub tenant_id: String,
    pub user_id: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub at: DateTime<Utc>,
}

impl ClickRecord {
    /// The click past its personal-data retention: the IP truncated to its network (/24 for
    /// IPv4, /48 for IPv6), no user agent; attribution (ids, end user, time) unchanged.
    pub fn without_personal_data(&self) -> ClickRecord {
        ClickRecord { ip: self.ip.as_deref().and_then(truncate_ip), user_agent: None, ..self.clone() }
    }
}

/// An IP address truncated to its /24 (IPv4) or /48 (IPv6) network, as an address
/// (`203.0.113.0`, `2001:db8:1::`); `None` for what is not an address.
pub fn truncate_ip(ip: &str) -> Option<String> {
    match ip.trim().parse::<std::net::IpAddr>().ok()? {
        std::net::IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            Some(std::net::Ipv4Addr::new(a, b, c, 0).to_string())
        }
        std::net::IpAddr::V6(v6) => {
            let s = v6.segments();
            Some(std::net::Ipv6Addr::new(s[0], s[1], s[2], 0, 0, 0, 0, 0).to_string())
        }
    }
}

pub use hissaback_actors::ledger::RewardStatus;

/// A conversion and the end user's reward for it (one reward per conversion; the reward id is
/// the conversion id). Ids derive from (network, transaction), so a redelivered postback
/// lands on the same row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversionRecord {
    pub id: u64,
    pub network_id: u64,
    pub txn_id: String,
    pub click_id: String,
    pub campaign_id: u64,
    pub affiliate_id: u64,
    pub tenant_id: String,
    pub offer_id: u64,
    pub user_id: String,
    pub currency: String,
    /// What the network pays, in minor units.
    pub payout_minor: i64,
    /// The end user's reward, in minor units (never more than the payout).
    pub reward_minor: i64,
    pub status: RewardStatus,
    pub goal: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub paid_at: Option<DateTime<Utc>>,
    /// The campaign's split, kept so later postbacks recompute the reward the same way
    /// (absent in rows written before adjustments existed: the campaign registry's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<hissaback_actors::ledger::Split>,
    /// A rejection or reversal that arrived while the payment was in flight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<RewardStatus>,
    /// Part of the reward that recovered an earlier clawback of the user instead of cash.
    #[serde(default)]
    pub recovered_minor: i64,
    /// What the user owes back for this conversion (reversed after payment).
    #[serde(default)]
    pub clawback_minor: i64,
    /// The latest payment asked for and its outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment: Option<PaymentRecord>,
    /// The position (partition, offset) of the last `conversions` event applied: the writer
    /// skips what it applied already when a batch is redelivered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied: Option<(i32, i64)>,
    /// Effects of the last write not known to be published yet (the outbox): republished
    /// when the events that caused them are redelivered; consumers drop repeats by id.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outbox: Vec<OutboxItem>,
}

/// One payment of a reward: which request started it and how it ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentRecord {
    pub request_id: String,
    pub requested_at: DateTime<Utc>,
    /// `None` while the payment is in flight.
    pub outcome: Option<PaymentOutcome>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "result")]
pub enum PaymentOutcome {
    Paid { at: DateTime<Utc> },
    Failed { error: String },
}

/// An effect derived from a state change, published by the same idempotent step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum OutboxItem {
    /// A reward webhook event (`reward.queued` …) with the reward as it was then; `source`
    /// is the causing event's position, from which job ids derive.
    Reward { event: String, source: String, occurred_at_ms: i64, reward: serde_json::Value },
    /// A payment for the payout provider.
    Payout { request_id: String },
}

/// One leg of a double-entry posting; a conversion's legs for one event sum to zero.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostingRecord {
    pub conversion_id: u64,
    /// Unique per conversion, e.g. `approve:network_receivable`; rewriting it is harmless.
    pub leg: String,
    pub account: String,
    pub amount_minor: i64,
    pub currency: String,
    pub at: DateTime<Utc>,
}

/// Everything the service keeps. One implementation per backend.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Short backend name for logs and metrics (`embedded`, `scylla`).
    fn backend(&self) -> &'static str;

    /// Cheap round trip to the database, for `/readyz`.
    async fn ping(&self) -> StoreResult<()>;

    /// The next id of a sequence: positive, never handed out twice.
    async fn next_id(&self, seq: Sequence) -> StoreResult<u64>;

    /// A small named setting (e.g. which affiliate the demo made).
    async fn get_setting(&self, name: &str) -> StoreResult<Option<String>>;
    async fn put_setting(&self, name: &str, value: &str) -> StoreResult<()>;

    /// Insert or replace an affiliate (whole row): for creating one; edits use
    /// [`Store::replace_affiliate`].
    async fn put_affiliate(&self, affiliate: &AffiliateRecord) -> StoreResult<()>;
    /// Stores `affiliate` at `affiliate.version + 1` if the stored one is still at
    /// `affiliate.version` (the version the caller read). False: another write came first, or
    /// the affiliate does not exist; nothing was written.
    async fn replace_affiliate(&self, affiliate: &AffiliateRecord) -> StoreResult<bool>;
    async fn get_affiliate(&self, id: u64) -> StoreResult<Option<AffiliateRecord>>;

    /// Insert or replace a key (whole row, including its hash lookup): for issuing one; edits
    /// use [`Store::replace_key`].
    async fn put_key(&self, key: &ApiKeyRecord) -> StoreResult<()>;
    /// Like [`Store::replace_affiliate`], for a key (rotation, revocation). A key's hash and
    /// affiliate never change, so its lookups are not rewritten; `last_used_at` is kept.
    async fn replace_key(&self, key: &ApiKeyRecord) -> StoreResult<bool>;
    async fn key_by_hash(&self, hash: &str) -> StoreResult<Option<ApiKeyRecord>>;
    async fn key_by_id(&self, id: u64) -> StoreResult<Option<ApiKeyRecord>>;
    /// An affiliate's keys, ordered by id.
    async fn keys_of_affiliate(&self, affiliate_id: u64) -> StoreResult<Vec<ApiKeyRecord>>;
    /// Sets `last_used_at` for each key, never moving it backwards.
    async fn record_last_used(&self, batch: &[KeyLastUsed]) -> StoreResult<()>;

    /// Insert or replace a category (whole row): for creating one; edits use
    /// [`Store::replace_category`].
    async fn put_category(&self, category: &CategoryRecord) -> StoreResult<()>;
    /// Like [`Store::replace_affiliate`], for a category (edits and soft deletes).
    async fn replace_category(&self, category: &CategoryRecord) -> StoreResult<bool>;
    async fn get_category(&self, id: u64) -> StoreResult<Option<CategoryRecord>>;
    /// Every category, soft-deleted ones included, ordered by id. The set is small (one
    /// partition in CQL).
    async fn categories(&self) -> StoreResult<Vec<CategoryRecord>>;

    /// Claims `value` in `namespace` (e.g. a blog slug) for `owner`. True when the value is
    /// now owned by `owner` (newly, or already); false when another owner holds it. This is
    /// the one place that needs a lightweight transaction in CQL.
    async fn claim_unique(&self, namespace: &str, value: &str, owner: u64) -> StoreResult<bool>;
    /// Gives a claimed value up, if `owner` holds it.
    async fn release_unique(&self, namespace: &str, value: &str, owner: u64) -> StoreResult<()>;

    /// Insert or replace a product (whole row, coupons included): for creating one; edits use
    /// [`Store::replace_product`].
    async fn put_product(&self, product: &ProductRecord) -> StoreResult<()>;
    /// Like [`Store::replace_affiliate`], for a product (edits, publishing, coupons).
    async fn replace_product(&self, product: &ProductRecord) -> StoreResult<bool>;
    async fn get_product(&self, id: u64) -> StoreResult<Option<ProductRecord>>;
    /// Every product, for the catalogue snapshot (read whole at start, then kept current
    /// from change events).
    async fn products(&self) -> StoreResult<Vec<ProductRecord>>;

    async fn put_promotion(&self, promotion: &PromotionRecord) -> StoreResult<()>;
    async fn promotions(&self) -> StoreResult<Vec<PromotionRecord>>;

    async fn put_blog_profile(&self, profile: &BlogProfileRecord) -> StoreResult<()>;
    /// An affiliate's blog profiles, ordered by id.
    async fn blog_profiles(&self, affiliate_id: u64) -> StoreResult<Vec<BlogProfileRecord>>;

    async fn put_blog(&self, blog: &BlogRecord) -> StoreResult<()>;
    /// One of the affiliate's blogs; another affiliate's blog is `None`.
    async fn get_blog(&self, affiliate_id: u64, id: u64) -> StoreResult<Option<BlogRecord>>;
    /// A blog by id alone, for the admin review.
    async fn get_blog_by_id(&self, id: u64) -> StoreResult<Option<BlogRecord>>;

    /// Insert or replace a webhook (with its by-event index row). For creating one: a change
    /// of a stored webhook goes through [`Store::update_webhook`], which never writes back
    /// fields another writer changed meanwhile.
    async fn put_webhook(&self, webhook: &WebhookRecord) -> StoreResult<()>;
    /// One of the affiliate's webhooks; another affiliate's is `None`.
    async fn get_webhook(&self, affiliate_id: u64, id: u64) -> StoreResult<Option<WebhookRecord>>;
    /// An affiliate's webhooks, ordered by id.
    async fn webhooks_of(&self, affiliate_id: u64) -> StoreResult<Vec<WebhookRecord>>;
    /// Every webhook subscribed to `event`, across affiliates (the dispatcher's fan-out).
    async fn webhooks_for_event(&self, event: &str) -> StoreResult<Vec<WebhookRecord>>;
    /// Deletes the webhook (as stored now, whatever changed since `webhook` was read): no
    /// [`Store::update_webhook`] after it brings it back.
    async fn delete_webhook(&self, webhook: &WebhookRecord) -> StoreResult<()>;

    /// Insert or replace a delivery; pending ones are also kept in the pending index.
    async fn put_delivery(&self, delivery: &DeliveryRecord) -> StoreResult<()>;
    async fn get_delivery(&self, webhook_id: u64, id: &str) -> StoreResult<Option<DeliveryRecord>>;
    /// A webhook's most recent deliveries, newest first.
    async fn deliveries_of(&self, webhook_id: u64, limit: usize) -> StoreResult<Vec<DeliveryRecord>>;
    /// Every pending delivery (read at start to rebuild the dispatcher's queue).
    async fn pending_deliveries(&self) -> StoreResult<Vec<DeliveryRecord>>;

    async fn put_brand(&self, brand: &BrandRecord) -> StoreResult<()>;
    /// Every brand (a small set, one partition in CQL).
    async fn brands(&self) -> StoreResult<Vec<BrandRecord>>;
    async fn put_offer(&self, offer: &OfferRecord) -> StoreResult<()>;
    /// Every offer (the offer catalogue is read whole and cached).
    async fn offers(&self) -> StoreResult<Vec<OfferRecord>>;
    /// Insert or replace a network (with its token lookup). A new `postback_token` for a
    /// stored network (a rotation) replaces the old token's lookup: the old one stops at once.
    async fn put_network(&self, network: &NetworkRecord) -> StoreResult<()>;
    async fn network_by_token(&self, token: &str) -> StoreResult<Option<NetworkRecord>>;
    async fn get_network(&self, id: u64) -> StoreResult<Option<NetworkRecord>>;

    async fn put_campaign(&self, campaign: &CampaignRecord) -> StoreResult<()>;
    /// One of the affiliate's campaigns; another affiliate's is `None`.
    async fn get_campaign(&self, affiliate_id: u64, id: u64) -> StoreResult<Option<CampaignRecord>>;
    async fn put_link(&self, link: &LinkRecord) -> StoreResult<()>;
    async fn get_link(&self, code: &str) -> StoreResult<Option<LinkRecord>>;
    async fn put_click(&self, click: &ClickRecord) -> StoreResult<()>;
    async fn get_click(&self, click_id: &str) -> StoreResult<Option<ClickRecord>>;

    // End users' personal data (issue 13; see `crate::privacy`).
    /// The partner's clicks of one end user (`uid`/`sub1`) of one tenant, by click id.
    async fn clicks_of_user(&self, affiliate_id: u64, tenant_id: &str, user_id: &str) -> StoreResult<Vec<ClickRecord>>;
    /// Erases the personal data of those clicks: the end user becomes `pseudonym`, IP and user
    /// agent are dropped, attribution (campaign, offer, time) stays. Answers how many. Clicks
    /// are otherwise never rewritten, so this write owns every field it changes.
    async fn erase_clicks_of_user(&self, affiliate_id: u64, tenant_id: &str, user_id: &str, pseudonym: &str) -> StoreResult<usize>;
    /// Truncates the IP and drops the user agent of up to `limit` clicks made before `before`
    /// that still hold them ([`ClickRecord::without_personal_data`]); answers how many (0:
    /// none left). The embedded store's retention sweep; ScyllaDB keeps those fields under a
    /// TTL instead and answers 0.
    async fn expire_click_personal_data(&self, before: DateTime<Utc>, limit: usize) -> StoreResult<usize>;
    /// Deletes up to `limit` finished (not pending) webhook deliveries queued before `before`;
    /// answers how many (0: none left). The embedded store's delivery-log retention sweep;
    /// ScyllaDB writes deliveries `USING TTL` instead and answers 0.
    async fn expire_deliveries(&self, before: DateTime<Utc>, limit: usize) -> StoreResult<usize>;
    /// Records that the end user behind `pseudonym` was erased (the pseudonym is a keyed hash:
    /// the list holds no user id), so events consumed later pseudonymise them too.
    async fn put_erasure(&self, pseudonym: &str, at: DateTime<Utc>) -> StoreResult<()>;
    /// Which of `pseudonyms` were erased.
    async fn erased(&self, pseudonyms: &[String]) -> StoreResult<Vec<String>>;
    /// Drops what still indexes the end user's rewards under their user id once its
    /// conversions carry the pseudonym (ScyllaDB's `rewards_by_user` partition; embedded: the
    /// index is the conversion's own column, nothing to do).
    async fn forget_user_index(&self, affiliate_id: u64, tenant_id: &str, user_id: &str) -> StoreResult<()>;

    /// Insert or replace a conversion (with its per-user reward index row).
    async fn put_conversion(&self, conversion: &ConversionRecord) -> StoreResult<()>;
    async fn get_conversion(&self, id: u64) -> StoreResult<Option<ConversionRecord>>;
    /// A partner's rewards for one end user of one tenant.
    async fn rewards_of_user(&self, affiliate_id: u64, tenant_id: &str, user_id: &str) -> StoreResult<Vec<ConversionRecord>>;
    /// Every conversion (ledger checks).
    async fn conversions(&self) -> StoreResult<Vec<ConversionRecord>>;
    /// Every conversion whose reward is queued for payment, from an index `put_conversion`
    /// keeps, so paying never reads the whole ledger.
    async fn queued_conversions(&self) -> StoreResult<Vec<ConversionRecord>>;
    /// Writes postings; a posting with the same (conversion, leg) is replaced, not added.
    async fn put_postings(&self, postings: &[PostingRecord]) -> StoreResult<()>;
    async fn postings_of(&self, conversion_id: u64) -> StoreResult<Vec<PostingRecord>>;
    /// Several conversions by id (the ledger writer's read of a batch); unknown ids are left
    /// out.
    async fn get_conversions(&self, ids: &[u64]) -> StoreResult<Vec<ConversionRecord>>;
    /// The ledger writer's write of a batch: the postings, then the conversions (legs first:
    /// a crash in between replays the same legs). One transaction on the embedded store;
    /// concurrent idempotent statements on ScyllaDB.
    async fn write_ledger_batch(&self, postings: &[PostingRecord], conversions: &[ConversionRecord]) -> StoreResult<()>;

    // Partner stats.
    /// The partner's campaigns, by id.
    async fn campaigns_of(&self, affiliate_id: u64) -> StoreResult<Vec<CampaignRecord>>;
    /// The partner's conversions (every campaign), by campaign then id.
    async fn conversions_of_affiliate(&self, affiliate_id: u64) -> StoreResult<Vec<ConversionRecord>>;

    // Usage counters, clicks and the audit log (written in batches by the usage recorder).
    /// Adds minute cells to the usage counters at every resolution (ScyllaDB counter columns;
    /// not idempotent, and need not be: they feed stats and dashboards, never money).
    async fn add_usage(&self, batch: &[(UsageCell, UsageCounts)]) -> StoreResult<()>;
    /// The partner's counters at `resolution` with `from <= period < to` (callers bound the
    /// window: a day of minutes, a week of hours, a quarter of days).
    async fn usage_of(
        &self,
        affiliate_id: u64,
        resolution: UsageResolution,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> StoreResult<Vec<(UsageCell, UsageCounts)>>;
    /// Adds clicks per campaign and day.
    async fn add_clicks(&self, batch: &[(ClickCell, u64)]) -> StoreResult<()>;
    /// The partner's click counters, every campaign and day.
    async fn clicks_of(&self, affiliate_id: u64) -> StoreResult<Vec<(ClickCell, u64)>>;
    /// Appends audit rows kept for `retention` (a TTL), then gone.
    async fn append_audit(&self, batch: &[AuditEntry], retention: std::time::Duration) -> StoreResult<()>;
    /// The newest audit rows of one affiliate (0: admin, networks, anonymous) on one UTC day.
    async fn audit_of(&self, affiliate_id: u64, day: NaiveDate, limit: usize) -> StoreResult<Vec<AuditEntry>>;

    // Webhook deliveries in batches (the intake and the dispatcher's bookkeeping).
    /// Several deliveries by `(webhook_id, delivery_id)`; unknown ones are left out.
    async fn get_deliveries(&self, keys: &[(u64, String)]) -> StoreResult<Vec<DeliveryRecord>>;
    /// Inserts or replaces deliveries (and their pending index rows) like `put_delivery`, in
    /// one transaction on the embedded store and as concurrent idempotent statements on
    /// ScyllaDB.
    async fn put_deliveries(&self, deliveries: &[DeliveryRecord]) -> StoreResult<()>;
    /// Several webhooks by `(affiliate_id, webhook_id)`; unknown ones are left out.
    async fn get_webhooks(&self, keys: &[(u64, u64)]) -> StoreResult<Vec<WebhookRecord>>;
    /// Reads a webhook as stored now, lets `change` edit it and writes it back when `change`
    /// says it changed something; answers the webhook as stored afterwards (`None`: gone, and
    /// nothing is written: an update never brings a deleted webhook back). Every change of a
    /// stored webhook goes through here, each writer editing only the fields it owns (the
    /// dispatcher an endpoint's health; the partner its secret, or re-enabling it), so no
    /// writer puts back what another changed meanwhile and concurrent changes all land.
    /// Atomic on the embedded store (one transaction); on ScyllaDB a compare-and-set
    /// conditional on the row as read (a lightweight transaction: webhook changes are rare),
    /// with `change` applied again to the newer row when another write came first, so
    /// `change` may run more than once and must depend only on the record it is handed.
    async fn update_webhook(&self, affiliate_id: u64, id: u64, change: WebhookChange) -> StoreResult<Option<WebhookRecord>>;
}

/// An edit of a stored webhook for [`Store::update_webhook`]: true when it changed something
/// (and then it calls [`WebhookRecord::touch`]). May be applied more than once, each time to
/// the webhook as stored then.
pub type WebhookChange = Box<dyn Fn(&mut WebhookRecord) -> bool + Send + Sync>;

impl WebhookRecord {
    /// Marks a change: `updated_at` becomes now, and always moves forward (at least a
    /// microsecond past the version it replaces, whatever the clocks of the instances), so it
    /// orders the versions of a webhook: the dispatcher drops a copy older than a change it
    /// was told about, and ScyllaDB's by-event copy is written at that time.
    pub fn touch(&mut self) {
        let now = Utc::now();
        let floor = self.updated_at + chrono::Duration::microseconds(1);
        self.updated_at = now.max(floor);
    }
}

/// The retries of an edit whose conditional write (`replace_*`) lost to another write:
/// `while attempts.next().await { read; change; if replace { return } }`, then answer
/// [`EDIT_CONFLICT`]. Each retry waits a short random while, longer as attempts pile up, so
/// contenders spread out instead of colliding again.
pub struct EditAttempts {
    made: u32,
}

/// How many times an edit is tried before it gives up: enough for dozens of concurrent
/// edits of one record (each round, one of them lands).
pub const EDIT_ATTEMPTS: u32 = 64;

/// What an edit that kept losing answers (409).
pub const EDIT_CONFLICT: &str = "The record was changed by another request at the same time. Try again.";

impl EditAttempts {
    pub fn new() -> Self {
        Self { made: 0 }
    }

    /// Whether to try (again): true for the first [`EDIT_ATTEMPTS`] calls, pausing before
    /// every retry.
    pub async fn next(&mut self) -> bool {
        if self.made >= EDIT_ATTEMPTS {
            return false;
        }
        if self.made > 0 {
            let ms = rand::random_range(1..=4) * u64::from(self.made.min(10));
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        }
        self.made += 1;
        true
    }
}

impl Default for EditAttempts {
    fn default() -> Self {
        Self::new()
    }
}

/// The store behind an `Arc`, as the rest of the service holds it.
pub type SharedStore = Arc<dyn Store>;

/// Opens the backend the configuration names, creating its schema when needed.
pub async fn open(settings: &Settings) -> anyhow::Result<SharedStore> {
    match settings.store.backend {
        StoreBackend::Embedded => Ok(Arc::new(embedded::EmbeddedStore::open_with(&settings.store.data_dir, settings.store.read_connections).await?)),
        StoreBackend::Scylla => {
            let store = scylla::ScyllaStore::open(&settings.store.scylla).await?;
            store.set_click_personal_days(settings.privacy.click_personal_data_days);
            store.set_delivery_log_days(settings.webhooks.delivery_log_days);
            Ok(Arc::new(store))
        }
    }
}

/// Lets the key-usage recorder write through any store.
pub struct StoreKeyUsageSink(pub SharedStore);

/// The usage recorder's port, over the store; audit rows are kept for `audit_retention`.
pub struct StoreUsageSink {
    pub store: SharedStore,
    pub audit_retention: std::time::Duration,
}

#[async_trait]
impl hissaback_actors::ports::UsageSink for StoreUsageSink {
    async fn add_usage(&self, batch: &[(UsageCell, UsageCounts)]) -> anyhow::Result<()> {
        Ok(self.store.add_usage(batch).await?)
    }
    async fn add_clicks(&self, batch: &[(ClickCell, u64)]) -> anyhow::Result<()> {
        Ok(self.store.add_clicks(batch).await?)
    }
    async fn append_audit(&self, batch: &[AuditEntry]) -> anyhow::Result<()> {
        Ok(self.store.append_audit(batch, self.audit_retention).await?)
    }
}

#[async_trait]
impl KeyUsageSink for StoreKeyUsageSink {
    async fn record_last_used(&self, batch: &[KeyLastUsed]) -> anyhow::Result<()> {
        Ok(self.0.record_last_used(batch).await?)
    }
}
