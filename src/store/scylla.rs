//! The distributed store: ScyllaDB through the `scylla` driver (Apache Cassandra 5 speaks
//! the same CQL and is what the tests run against).
//!
//! Tables are designed for their queries: every read names a full partition key, there is
//! no `ALLOW FILTERING` and no secondary index. Lookup tables (`api_keys_by_hash`,
//! `api_keys_by_affiliate`) are written beside the main row. Statements are prepared once at
//! start, so requests are token-aware. Lightweight transactions are used only where
//! uniqueness needs them: reserving blocks of ids on `id_sequences` (and claims), and where
//! writers share a record: every write of a `webhooks` row is a compare-and-set on the row as
//! read (partner changes and the dispatcher's health changes, both rare); so is every edit
//! of an affiliate, key, category or product (`IF body = ?` on the text read, admin edits
//! being rare too; their creation is a plain insert). `last_used_at` is
//! written `USING TIMESTAMP` of the observation, so an older observation can never
//! overwrite a newer one, without a read.
//!
//! Kept out on purpose so Cassandra works too: `USING TIMEOUT`, `BYPASS CACHE`, tablets,
//! Scylla-only table options.

use super::{
    AuditEntry, ClickCell, UsageCell, UsageCounts, UsageResolution, AffiliateRecord, ApiKeyRecord, BlogProfileRecord, BlogRecord, BrandRecord, CampaignRecord, CategoryRecord, ClickRecord, ConversionRecord, DeliveryRecord, LinkRecord, PostingRecord, NetworkRecord, OfferRecord, DeliveryState, ProductRecord,
    PromotionRecord, Sequence, Store, StoreError, StoreResult, WebhookRecord,
};
use super::WebhookChange;
use crate::configuration::ScyllaSettings;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use hissaback_actors::ports::KeyLastUsed;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::statement::prepared::PreparedStatement;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::Mutex;

/// One partition holds every category (and every promotion): small sets, always read whole.
const CATEGORY_BUCKET: i32 = 0;

/// The schema, in creation order. `{ks}` is replaced by the keyspace.
const TABLES: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS {ks}.id_sequences (name text PRIMARY KEY, next bigint)",
    "CREATE TABLE IF NOT EXISTS {ks}.settings (name text PRIMARY KEY, value text)",
    "CREATE TABLE IF NOT EXISTS {ks}.affiliates (id bigint PRIMARY KEY, body text)",
    "CREATE TABLE IF NOT EXISTS {ks}.api_keys (id bigint PRIMARY KEY, body text, last_used_at timestamp)",
    "CREATE TABLE IF NOT EXISTS {ks}.api_keys_by_hash (hash text PRIMARY KEY, key_id bigint)",
    "CREATE TABLE IF NOT EXISTS {ks}.api_keys_by_affiliate (affiliate_id bigint, key_id bigint, PRIMARY KEY (affiliate_id, key_id))",
    "CREATE TABLE IF NOT EXISTS {ks}.categories (bucket int, id bigint, body text, PRIMARY KEY (bucket, id))",
    "CREATE TABLE IF NOT EXISTS {ks}.unique_claims (namespace text, value text, owner bigint, PRIMARY KEY ((namespace, value)))",
    "CREATE TABLE IF NOT EXISTS {ks}.products (bucket int, id bigint, body text, PRIMARY KEY (bucket, id))",
    "CREATE TABLE IF NOT EXISTS {ks}.promotions (bucket int, id bigint, body text, PRIMARY KEY (bucket, id))",
    "CREATE TABLE IF NOT EXISTS {ks}.blog_profiles (affiliate_id bigint, id bigint, body text, PRIMARY KEY (affiliate_id, id))",
    "CREATE TABLE IF NOT EXISTS {ks}.blogs (affiliate_id bigint, id bigint, body text, PRIMARY KEY (affiliate_id, id))",
    "CREATE TABLE IF NOT EXISTS {ks}.blogs_by_id (id bigint PRIMARY KEY, affiliate_id bigint)",
    "CREATE TABLE IF NOT EXISTS {ks}.webhooks (affiliate_id bigint, id bigint, body text, PRIMARY KEY (affiliate_id, id))",
    "CREATE TABLE IF NOT EXISTS {ks}.webhooks_by_event (event text, id bigint, body text, PRIMARY KEY (event, id))",
    "CREATE TABLE IF NOT EXISTS {ks}.deliveries (webhook_id bigint, id text, body text, PRIMARY KEY (webhook_id, id)) WITH CLUSTERING ORDER BY (id DESC)",
    "CREATE TABLE IF NOT EXISTS {ks}.pending_deliveries (shard int, webhook_id bigint, id text, PRIMARY KEY (shard, webhook_id, id))",
    "CREATE TABLE IF NOT EXISTS {ks}.brands (bucket int, id bigint, body text, PRIMARY KEY (bucket, id))",
    "CREATE TABLE IF NOT EXISTS {ks}.offers (bucket int, id bigint, body text, PRIMARY KEY (bucket, id))",
    "CREATE TABLE IF NOT EXISTS {ks}.networks_by_token (postback_token text PRIMARY KEY, body text)",
    "CREATE TABLE IF NOT EXISTS {ks}.networks (id bigint PRIMARY KEY, body text)",
    "CREATE TABLE IF NOT EXISTS {ks}.campaigns (affiliate_id bigint, id bigint, body text, PRIMARY KEY (affiliate_id, id))",
    "CREATE TABLE IF NOT EXISTS {ks}.links (code text PRIMARY KEY, body text)",
    "CREATE TABLE IF NOT EXISTS {ks}.clicks (click_id text PRIMARY KEY, body text) WITH default_time_to_live = 7776000",
    // A click's IP and user agent in full, written `USING TTL` (privacy.click_personal_data_days);
    // the click's body keeps the truncated IP. Reads merge the two.
    "CREATE TABLE IF NOT EXISTS {ks}.click_personal (click_id text PRIMARY KEY, ip text, user_agent text)",
    "CREATE TABLE IF NOT EXISTS {ks}.clicks_by_user (affiliate_id bigint, tenant_id text, user_id text, click_id text, PRIMARY KEY ((affiliate_id, tenant_id, user_id), click_id)) WITH default_time_to_live = 7776000",
    "CREATE TABLE IF NOT EXISTS {ks}.erasures (pseudonym text PRIMARY KEY, at timestamp)",
    "CREATE TABLE IF NOT EXISTS {ks}.conversions (id bigint PRIMARY KEY, body text)",
    "CREATE TABLE IF NOT EXISTS {ks}.conversions_by_shard (shard int, id bigint, PRIMARY KEY (shard, id))",
    "CREATE TABLE IF NOT EXISTS {ks}.rewards_by_user (affiliate_id bigint, tenant_id text, user_id text, conversion_id bigint, PRIMARY KEY ((affiliate_id, tenant_id, user_id), conversion_id))",
    "CREATE TABLE IF NOT EXISTS {ks}.postings (conversion_id bigint, leg text, body text, PRIMARY KEY (conversion_id, leg))",
    "CREATE TABLE IF NOT EXISTS {ks}.queued_rewards (shard int, conversion_id bigint, PRIMARY KEY (shard, conversion_id))",
    "CREATE TABLE IF NOT EXISTS {ks}.conversions_by_affiliate (affiliate_id bigint, campaign_id bigint, id bigint, body text, PRIMARY KEY (affiliate_id, campaign_id, id))",
    "CREATE TABLE IF NOT EXISTS {ks}.usage_rollups (affiliate_id bigint, resolution text, bucket text, period timestamp, key_id bigint, route text, status_class text, requests counter, rate_limited counter, PRIMARY KEY ((affiliate_id, resolution, bucket), period, key_id, route, status_class))",
    "CREATE TABLE IF NOT EXISTS {ks}.campaign_clicks (affiliate_id bigint, campaign_id bigint, day date, clicks counter, PRIMARY KEY (affiliate_id, campaign_id, day))",
    "CREATE TABLE IF NOT EXISTS {ks}.audit_log (affiliate_id bigint, day date, at timestamp, request_id text, nonce bigint, body text, PRIMARY KEY ((affiliate_id, day), at, request_id, nonce)) WITH CLUSTERING ORDER BY (at DESC, request_id ASC, nonce ASC)",
];

/// Pending deliveries are indexed over this many partitions (`webhook_id % PENDING_SHARDS`).
const PENDING_SHARDS: i32 = 8;

fn shard_of(webhook_id: i64) -> i32 {
    (webhook_id % i64::from(PENDING_SHARDS)) as i32
}

/// Products are spread over this many partitions (`id % PRODUCT_BUCKETS`) so no partition
/// grows with the whole catalogue; the snapshot reads them all at start.
const PRODUCT_BUCKETS: i32 = 16;

fn bucket_of(product_id: i64) -> i32 {
    (product_id % i64::from(PRODUCT_BUCKETS)) as i32
}

/// Writes of a batch run concurrently, this many at a time.
const WRITE_CHUNK: usize = 64;

fn driver_error(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    // Connection-level trouble is worth a retry; the driver's Display says which it is.
    let text = e.to_string().to_ascii_lowercase();
    if ["connection", "timed out", "timeout", "unavailable", "no known", "broken pipe", "overloaded"]
        .iter()
        .any(|w| text.contains(w))
    {
        StoreError::Unavailable(anyhow::Error::new(e))
    } else {
        StoreError::Other(anyhow::Error::new(e))
    }
}

/// Longest a session may take to start: the driver bounds the TCP connect only, and a node
/// that accepts but never answers (a wrong port, a TLS mismatch) would hold the start forever.
const CONNECT_DEADLINE: Duration = Duration::from_secs(60);

async fn connect(settings: &ScyllaSettings) -> anyhow::Result<Session> {
    connect_within(settings, CONNECT_DEADLINE).await
}

async fn connect_within(settings: &ScyllaSettings, deadline: Duration) -> anyhow::Result<Session> {
    let mut builder = SessionBuilder::new().known_nodes(&settings.nodes).connection_timeout(Duration::from_secs(5));
    if let Some((user, password)) = settings.credentials()? {
        use secrecy::ExposeSecret;
        builder = builder.user(user, password.expose_secret());
    }
    if settings.tls {
        builder = builder.tls_context(Some(tls_context(settings)?));
    }
    let tls = if settings.tls { " over TLS" } else { "" };
    let session = tokio::time::timeout(deadline, builder.build())
        .await
        .map_err(|_| anyhow::anyhow!("connecting to CQL nodes {:?}{tls}: no answer within {deadline:?} (is it the CQL port, with TLS on as the nodes expect?)", settings.nodes))?
        .map_err(|e| anyhow::anyhow!("connecting to CQL nodes {:?}{tls}: {e}", settings.nodes))?;
    Ok(session)
}

/// Where distributions keep the system's CA bundle: the vendored OpenSSL's default paths are
/// its own build prefix, not the system's.
const SYSTEM_CA_BUNDLES: &[&str] = &["/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/ca-bundle.pem", "/etc/ssl/cert.pem"];

/// OpenSSL's `X509_V_ERR_IP_ADDRESS_MISMATCH`: the driver verifies each node's certificate
/// against the node's IP address.
const IP_ADDRESS_MISMATCH: i32 = 64;

/// The TLS context of every connection: the nodes' certificates must chain to the configured
/// CA (or the system's) and name the node's IP address, or `tls_server_name`.
fn tls_context(settings: &ScyllaSettings) -> anyhow::Result<scylla::client::session::TlsContext> {
    use anyhow::Context;
    use openssl::ssl::{SslConnector, SslFiletype, SslMethod, SslVerifyMode};
    let mut builder = SslConnector::builder(SslMethod::tls_client())?;
    match &settings.tls_ca_file {
        Some(ca) => builder.set_ca_file(ca).with_context(|| format!("store.scylla.tls_ca_file: loading {}", ca.display()))?,
        None => {
            builder.set_default_verify_paths()?;
            if let Some(bundle) = SYSTEM_CA_BUNDLES.iter().find(|p| std::path::Path::new(p).is_file()) {
                builder.set_ca_file(bundle).with_context(|| format!("loading the system's CAs from {bundle}"))?;
            }
        }
    }
    if let (Some(cert), Some(key)) = (&settings.tls_cert_file, &settings.tls_key_file) {
        builder.set_certificate_chain_file(cert).with_context(|| format!("store.scylla.tls_cert_file: loading {}", cert.display()))?;
        builder.set_private_key_file(key, SslFiletype::PEM).with_context(|| format!("store.scylla.tls_key_file: loading {}", key.display()))?;
        builder.check_private_key().context("store.scylla.tls_key_file does not match tls_cert_file")?;
    }
    let server_name = settings.tls_server_name.clone();
    let verify_name = settings.tls_verify_hostname;
    builder.set_verify_callback(SslVerifyMode::PEER, move |ok, ctx| {
        if ok {
            return true;
        }
        // Only the name check of the node's own certificate may be answered otherwise.
        if ctx.error().as_raw() != IP_ADDRESS_MISMATCH || ctx.error_depth() != 0 {
            return false;
        }
        if !verify_name {
            return true;
        }
        match (&server_name, ctx.current_cert()) {
            (Some(name), Some(cert)) => certificate_names(cert, name),
            _ => false,
        }
    });
    Ok(builder.into())
}

/// Whether `cert` carries `name` among its DNS names (either side may be a `*.` wildcard).
fn certificate_names(cert: &openssl::x509::X509Ref, name: &str) -> bool {
    cert.subject_alt_names().is_some_and(|names| {
        names.iter().filter_map(|n| n.dnsname()).any(|dns| dns_name_matches(dns, name) || dns_name_matches(name, dns))
    })
}

/// `pattern` (`*.example.com` or a plain name) matches `host`, case-insensitively; a wildcard
/// stands for exactly one label.
fn dns_name_matches(pattern: &str, host: &str) -> bool {
    let (pattern, host) = (pattern.to_ascii_lowercase(), host.to_ascii_lowercase());
    match pattern.strip_prefix("*.") {
        Some(rest) => host.split_once('.').is_some_and(|(first, tail)| !first.is_empty() && first != "*" && tail == rest),
        None => pattern == host,
    }
}

/// Creates the keyspace (SimpleStrategy with the configured factor) and every table; safe to
/// run again. Schema changes are awaited until the cluster agrees on them.
pub async fn migrate(settings: &ScyllaSettings) -> anyhow::Result<()> {
    let session = connect(settings).await?;
    let ks = &settings.keyspace;
    session
        .query_unpaged(
            format!(
                "CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': {}}}",
                settings.replication_factor
            ),
            &[],
        )
        .await?;
    for table in TABLES {
        session.query_unpaged(table.replace("{ks}", ks), &[]).await?;
    }
    session.await_schema_agreement().await?;
    // Index tables added after conversions were written are filled from the conversions
    // themselves (idempotent upserts, so running `migrate` again is harmless).
    // Boxed: opening prepares every statement, a large future for the caller's stack.
    let store = Box::pin(ScyllaStore::open(settings)).await?;
    for c in store.conversions().await? {
        store.write(&store.st.conversion_affiliate_put, (id(c.affiliate_id), id(c.campaign_id), id(c.id), to_json(&c))).await?;
        store.index_queued(&c).await?;
    }
    Ok(())
}

struct Statements {
    seq_get: PreparedStatement,
    seq_insert: PreparedStatement,
    seq_update: PreparedStatement,
    setting_get: PreparedStatement,
    setting_put: PreparedStatement,
    affiliate_get: PreparedStatement,
    affiliate_put: PreparedStatement,
    affiliate_cas: PreparedStatement,
    key_get: PreparedStatement,
    key_put: PreparedStatement,
    key_body_get: PreparedStatement,
    key_cas: PreparedStatement,
    key_hash_get: PreparedStatement,
    key_hash_put: PreparedStatement,
    key_affiliate_put: PreparedStatement,
    key_affiliate_list: PreparedStatement,
    key_last_used: PreparedStatement,
    category_get: PreparedStatement,
    category_put: PreparedStatement,
    category_cas: PreparedStatement,
    category_all: PreparedStatement,
    ping: PreparedStatement,
    claim_insert: PreparedStatement,
    claim_get: PreparedStatement,
    claim_release: PreparedStatement,
    product_get: PreparedStatement,
    product_put: PreparedStatement,
    product_cas: PreparedStatement,
    product_bucket: PreparedStatement,
    promotion_put: PreparedStatement,
    promotion_all: PreparedStatement,
    profile_put: PreparedStatement,
    profile_list: PreparedStatement,
    blog_put: PreparedStatement,
    blog_get: PreparedStatement,
    blog_index_put: PreparedStatement,
    blog_index_get: PreparedStatement,
    webhook_insert: PreparedStatement,
    webhook_cas: PreparedStatement,
    webhook_get: PreparedStatement,
    webhook_list: PreparedStatement,
    webhook_delete: PreparedStatement,
    webhook_event_put: PreparedStatement,
    webhook_event_list: PreparedStatement,
    webhook_event_delete: PreparedStatement,
    delivery_put: PreparedStatement,
    delivery_get: PreparedStatement,
    delivery_list: PreparedStatement,
    pending_put: PreparedStatement,
    pending_delete: PreparedStatement,
    pending_shard: PreparedStatement,
    brand_put: PreparedStatement,
    brand_all: PreparedStatement,
    offer_put: PreparedStatement,
    offer_all: PreparedStatement,
    network_put: PreparedStatement,
    network_get: PreparedStatement,
    network_id_put: PreparedStatement,
    network_id_get: PreparedStatement,
    network_token_delete: PreparedStatement,
    campaign_put: PreparedStatement,
    campaign_get: PreparedStatement,
    link_put: PreparedStatement,
    link_get: PreparedStatement,
    click_put: PreparedStatement,
    click_get: PreparedStatement,
    conversion_put: PreparedStatement,
    conversion_get: PreparedStatement,
    conversion_shard_put: PreparedStatement,
    conversion_shard: PreparedStatement,
    reward_user_put: PreparedStatement,
    reward_user_list: PreparedStatement,
    posting_put: PreparedStatement,
    posting_list: PreparedStatement,
    campaign_list: PreparedStatement,
    queued_put: PreparedStatement,
    queued_delete: PreparedStatement,
    queued_shard: PreparedStatement,
    conversion_affiliate_put: PreparedStatement,
    conversion_affiliate_list: PreparedStatement,
    usage_add: PreparedStatement,
    usage_list: PreparedStatement,
    clicks_add: PreparedStatement,
    clicks_list: PreparedStatement,
    audit_put: PreparedStatement,
    audit_list: PreparedStatement,
    click_personal_put: PreparedStatement,
    click_personal_get: PreparedStatement,
    click_personal_delete: PreparedStatement,
    click_user_put: PreparedStatement,
    click_user_list: PreparedStatement,
    click_user_delete: PreparedStatement,
    click_rewrite: PreparedStatement,
    erasure_put: PreparedStatement,
    erasure_get: PreparedStatement,
    reward_user_delete: PreparedStatement,
}

/// A block of ids reserved with one lightweight transaction: `next..end`.
#[derive(Default, Clone, Copy)]
struct IdBlock {
    next: i64,
    end: i64,
}

/// ScyllaDB/Cassandra-backed [`Store`].
pub struct ScyllaStore {
    session: Session,
    st: Statements,
    block_size: i64,
    blocks: Mutex<HashMap<&'static str, IdBlock>>,
    /// Seconds a click's full IP and user agent are kept (their TTL); 0: not written.
    click_personal_ttl: std::sync::atomic::AtomicI32,
    /// Seconds a webhook delivery (and its pending index row) is kept: its TTL.
    delivery_ttl: std::sync::atomic::AtomicI32,
}

/// The `clicks` table's TTL (90 days): a click is kept no longer.
const CLICK_TTL_SECONDS: i64 = 7_776_000;

impl ScyllaStore {
    /// Keeps `queued_rewards` in step with a conversion's status. Only the statuses that can
    /// follow `queued` remove the row, so pending conversions leave no tombstones.
    async fn index_queued(&self, c: &ConversionRecord) -> StoreResult<()> {
        use super::RewardStatus::*;
        let key = ((id(c.id) % i64::from(PENDING_SHARDS)) as i32, id(c.id));
        match c.status {
            Queued => self.write(&self.st.queued_put, key).await,
            Paying | Paid | Rejected | Reversed => self.write(&self.st.queued_delete, key).await,
            Pending => Ok(()),
        }
    }

    /// The conversions a sharded id index (`index` selects the ids of one shard) names, by id.
    async fn indexed_conversions(&self, index: &PreparedStatement) -> StoreResult<Vec<ConversionRecord>> {
        let mut out = Vec::new();
        for shard in 0..PENDING_SHARDS {
            for cid in self.ids(index, (shard,)).await? {
                if let Some(c) = self.doc::<ConversionRecord>(&self.st.conversion_get, (cid,)).await? {
                    out.push(c);
                }
            }
        }
        out.sort_by_key(|c| c.id);
        Ok(out)
    }

    /// Runs one prepared statement, timed into the store-latency histogram.
    async fn exec(
        &self,
        st: &PreparedStatement,
        values: impl scylla::serialize::row::SerializeRow,
    ) -> Result<scylla::response::query_result::QueryResult, scylla::errors::ExecutionError> {
        let started = std::time::Instant::now();
        let result = self.session.execute_unpaged(st, values).await;
        super::observe_store("scylla", started);
        result
    }

    async fn ids(&self, st: &PreparedStatement, values: impl scylla::serialize::row::SerializeRow) -> StoreResult<Vec<i64>> {
        let rows = self.exec(st, values).await.map_err(driver_error)?.into_rows_result().map_err(driver_error)?;
        rows.rows::<(i64,)>().map_err(driver_error)?.map(|r| r.map(|(v,)| v).map_err(driver_error)).collect()
    }

    /// Connects and prepares every statement; the schema must exist (`hissaback migrate`).
    pub async fn open(settings: &ScyllaSettings) -> anyhow::Result<Self> {
        let session = connect(settings).await?;
        let ks = &settings.keyspace;
        let prepare = |cql: &str| {
            let cql = cql.replace("{ks}", ks);
            let session = &session;
            async move {
                session.prepare(cql.clone()).await.map_err(|e| {
                    anyhow::anyhow!("preparing `{cql}`: {e} (has `hissaback migrate` created keyspace `{ks}`?)")
                })
            }
        };
        let st = Statements {
            seq_get: prepare("SELECT next FROM {ks}.id_sequences WHERE name = ?").await?,
            seq_insert: prepare("INSERT INTO {ks}.id_sequences (name, next) VALUES (?, ?) IF NOT EXISTS").await?,
            seq_update: prepare("UPDATE {ks}.id_sequences SET next = ? WHERE name = ? IF next = ?").await?,
            setting_get: prepare("SELECT value FROM {ks}.settings WHERE name = ?").await?,
            setting_put: prepare("INSERT INTO {ks}.settings (name, value) VALUES (?, ?)").await?,
            affiliate_get: prepare("SELECT body FROM {ks}.affiliates WHERE id = ?").await?,
            affiliate_put: prepare("INSERT INTO {ks}.affiliates (id, body) VALUES (?, ?)").await?,
            affiliate_cas: prepare("UPDATE {ks}.affiliates SET body = ? WHERE id = ? IF body = ?").await?,
            key_get: prepare("SELECT body, last_used_at FROM {ks}.api_keys WHERE id = ?").await?,
            key_put: prepare("INSERT INTO {ks}.api_keys (id, body) VALUES (?, ?)").await?,
            key_body_get: prepare("SELECT body FROM {ks}.api_keys WHERE id = ?").await?,
            key_cas: prepare("UPDATE {ks}.api_keys SET body = ? WHERE id = ? IF body = ?").await?,
            key_hash_get: prepare("SELECT key_id FROM {ks}.api_keys_by_hash WHERE hash = ?").await?,
            key_hash_put: prepare("INSERT INTO {ks}.api_keys_by_hash (hash, key_id) VALUES (?, ?)").await?,
            key_affiliate_put: prepare("INSERT INTO {ks}.api_keys_by_affiliate (affiliate_id, key_id) VALUES (?, ?)").await?,
            key_affiliate_list: prepare("SELECT key_id FROM {ks}.api_keys_by_affiliate WHERE affiliate_id = ?").await?,
            key_last_used: prepare("UPDATE {ks}.api_keys USING TIMESTAMP ? SET last_used_at = ? WHERE id = ?").await?,
            category_get: prepare("SELECT body FROM {ks}.categories WHERE bucket = ? AND id = ?").await?,
            category_put: prepare("INSERT INTO {ks}.categories (bucket, id, body) VALUES (?, ?, ?)").await?,
            category_cas: prepare("UPDATE {ks}.categories SET body = ? WHERE bucket = ? AND id = ? IF body = ?").await?,
            category_all: prepare("SELECT body FROM {ks}.categories WHERE bucket = ?").await?,
            ping: prepare("SELECT release_version FROM system.local").await?,
            claim_insert: prepare("INSERT INTO {ks}.unique_claims (namespace, value, owner) VALUES (?, ?, ?) IF NOT EXISTS").await?,
            claim_get: prepare("SELECT owner FROM {ks}.unique_claims WHERE namespace = ? AND value = ?").await?,
            claim_release: prepare("DELETE FROM {ks}.unique_claims WHERE namespace = ? AND value = ? IF owner = ?").await?,
            product_get: prepare("SELECT body FROM {ks}.products WHERE bucket = ? AND id = ?").await?,
            product_put: prepare("INSERT INTO {ks}.products (bucket, id, body) VALUES (?, ?, ?)").await?,
            product_cas: prepare("UPDATE {ks}.products SET body = ? WHERE bucket = ? AND id = ? IF body = ?").await?,
            product_bucket: prepare("SELECT body FROM {ks}.products WHERE bucket = ?").await?,
            promotion_put: prepare("INSERT INTO {ks}.promotions (bucket, id, body) VALUES (?, ?, ?)").await?,
            promotion_all: prepare("SELECT body FROM {ks}.promotions WHERE bucket = ?").await?,
            profile_put: prepare("INSERT INTO {ks}.blog_profiles (affiliate_id, id, body) VALUES (?, ?, ?)").await?,
            profile_list: prepare("SELECT body FROM {ks}.blog_profiles WHERE affiliate_id = ?").await?,
            blog_put: prepare("INSERT INTO {ks}.blogs (affiliate_id, id, body) VALUES (?, ?, ?)").await?,
            blog_get: prepare("SELECT body FROM {ks}.blogs WHERE affiliate_id = ? AND id = ?").await?,
            blog_index_put: prepare("INSERT INTO {ks}.blogs_by_id (id, affiliate_id) VALUES (?, ?)").await?,
            blog_index_get: prepare("SELECT affiliate_id FROM {ks}.blogs_by_id WHERE id = ?").await?,
            // Every write of a webhook row is a lightweight transaction (mixed with plain
            // writes, a plain write's timestamp could shadow a later compare-and-set).
            webhook_insert: prepare("INSERT INTO {ks}.webhooks (affiliate_id, id, body) VALUES (?, ?, ?) IF NOT EXISTS").await?,
            webhook_cas: prepare("UPDATE {ks}.webhooks SET body = ? WHERE affiliate_id = ? AND id = ? IF body = ?").await?,
            webhook_get: prepare("SELECT body FROM {ks}.webhooks WHERE affiliate_id = ? AND id = ?").await?,
            webhook_list: prepare("SELECT body FROM {ks}.webhooks WHERE affiliate_id = ?").await?,
            webhook_delete: prepare("DELETE FROM {ks}.webhooks WHERE affiliate_id = ? AND id = ? IF body = ?").await?,
            // The by-event copy is written at the version's `updated_at`: of two copies the
            // newer version wins whatever order they arrive in, and a deletion (written past
            // the last version) is never undone by a late copy.
            webhook_event_put: prepare("INSERT INTO {ks}.webhooks_by_event (event, id, body) VALUES (?, ?, ?) USING TIMESTAMP ?").await?,
            webhook_event_list: prepare("SELECT body FROM {ks}.webhooks_by_event WHERE event = ?").await?,
            webhook_event_delete: prepare("DELETE FROM {ks}.webhooks_by_event USING TIMESTAMP ? WHERE event = ? AND id = ?").await?,
            delivery_put: prepare("INSERT INTO {ks}.deliveries (webhook_id, id, body) VALUES (?, ?, ?) USING TTL ?").await?,
            delivery_get: prepare("SELECT body FROM {ks}.deliveries WHERE webhook_id = ? AND id = ?").await?,
            delivery_list: prepare("SELECT body FROM {ks}.deliveries WHERE webhook_id = ? LIMIT ?").await?,
            pending_put: prepare("INSERT INTO {ks}.pending_deliveries (shard, webhook_id, id) VALUES (?, ?, ?) USING TTL ?").await?,
            pending_delete: prepare("DELETE FROM {ks}.pending_deliveries WHERE shard = ? AND webhook_id = ? AND id = ?").await?,
            pending_shard: prepare("SELECT webhook_id, id FROM {ks}.pending_deliveries WHERE shard = ?").await?,
            brand_put: prepare("INSERT INTO {ks}.brands (bucket, id, body) VALUES (?, ?, ?)").await?,
            brand_all: prepare("SELECT body FROM {ks}.brands WHERE bucket = ?").await?,
            offer_put: prepare("INSERT INTO {ks}.offers (bucket, id, body) VALUES (?, ?, ?)").await?,
            offer_all: prepare("SELECT body FROM {ks}.offers WHERE bucket = ?").await?,
            network_put: prepare("INSERT INTO {ks}.networks_by_token (postback_token, body) VALUES (?, ?)").await?,
            network_get: prepare("SELECT body FROM {ks}.networks_by_token WHERE postback_token = ?").await?,
            network_id_put: prepare("INSERT INTO {ks}.networks (id, body) VALUES (?, ?)").await?,
            network_id_get: prepare("SELECT body FROM {ks}.networks WHERE id = ?").await?,
            network_token_delete: prepare("DELETE FROM {ks}.networks_by_token WHERE postback_token = ?").await?,
            campaign_put: prepare("INSERT INTO {ks}.campaigns (affiliate_id, id, body) VALUES (?, ?, ?)").await?,
            campaign_get: prepare("SELECT body FROM {ks}.campaigns WHERE affiliate_id = ? AND id = ?").await?,
            link_put: prepare("INSERT INTO {ks}.links (code, body) VALUES (?, ?)").await?,
            link_get: prepare("SELECT body FROM {ks}.links WHERE code = ?").await?,
            click_put: prepare("INSERT INTO {ks}.clicks (click_id, body) VALUES (?, ?)").await?,
            click_get: prepare("SELECT body FROM {ks}.clicks WHERE click_id = ?").await?,
            conversion_put: prepare("INSERT INTO {ks}.conversions (id, body) VALUES (?, ?)").await?,
            conversion_get: prepare("SELECT body FROM {ks}.conversions WHERE id = ?").await?,
            conversion_shard_put: prepare("INSERT INTO {ks}.conversions_by_shard (shard, id) VALUES (?, ?)").await?,
            conversion_shard: prepare("SELECT id FROM {ks}.conversions_by_shard WHERE shard = ?").await?,
            reward_user_put: prepare("INSERT INTO {ks}.rewards_by_user (affiliate_id, tenant_id, user_id, conversion_id) VALUES (?, ?, ?, ?)").await?,
            reward_user_list: prepare("SELECT conversion_id FROM {ks}.rewards_by_user WHERE affiliate_id = ? AND tenant_id = ? AND user_id = ?").await?,
            posting_put: prepare("INSERT INTO {ks}.postings (conversion_id, leg, body) VALUES (?, ?, ?)").await?,
            posting_list: prepare("SELECT body FROM {ks}.postings WHERE conversion_id = ?").await?,
            campaign_list: prepare("SELECT body FROM {ks}.campaigns WHERE affiliate_id = ?").await?,
            queued_put: prepare("INSERT INTO {ks}.queued_rewards (shard, conversion_id) VALUES (?, ?)").await?,
            queued_delete: prepare("DELETE FROM {ks}.queued_rewards WHERE shard = ? AND conversion_id = ?").await?,
            queued_shard: prepare("SELECT conversion_id FROM {ks}.queued_rewards WHERE shard = ?").await?,
            conversion_affiliate_put: prepare("INSERT INTO {ks}.conversions_by_affiliate (affiliate_id, campaign_id, id, body) VALUES (?, ?, ?, ?)").await?,
            conversion_affiliate_list: prepare("SELECT body FROM {ks}.conversions_by_affiliate WHERE affiliate_id = ?").await?,
            usage_add: prepare(
                "UPDATE {ks}.usage_rollups SET requests = requests + ?, rate_limited = rate_limited + ? \
                 WHERE affiliate_id = ? AND resolution = ? AND bucket = ? AND period = ? AND key_id = ? AND route = ? AND status_class = ?",
            )
            .await?,
            usage_list: prepare(
                "SELECT period, key_id, route, status_class, requests, rate_limited FROM {ks}.usage_rollups \
                 WHERE affiliate_id = ? AND resolution = ? AND bucket = ? AND period >= ? AND period < ?",
            )
            .await?,
            clicks_add: prepare("UPDATE {ks}.campaign_clicks SET clicks = clicks + ? WHERE affiliate_id = ? AND campaign_id = ? AND day = ?").await?,
            clicks_list: prepare("SELECT campaign_id, day, clicks FROM {ks}.campaign_clicks WHERE affiliate_id = ?").await?,
            audit_put: prepare("INSERT INTO {ks}.audit_log (affiliate_id, day, at, request_id, nonce, body) VALUES (?, ?, ?, ?, ?, ?) USING TTL ?").await?,
            audit_list: prepare("SELECT body FROM {ks}.audit_log WHERE affiliate_id = ? AND day = ? LIMIT ?").await?,
            click_personal_put: prepare("INSERT INTO {ks}.click_personal (click_id, ip, user_agent) VALUES (?, ?, ?) USING TTL ?").await?,
            click_personal_get: prepare("SELECT ip, user_agent FROM {ks}.click_personal WHERE click_id = ?").await?,
            click_personal_delete: prepare("DELETE FROM {ks}.click_personal WHERE click_id = ?").await?,
            click_user_put: prepare("INSERT INTO {ks}.clicks_by_user (affiliate_id, tenant_id, user_id, click_id) VALUES (?, ?, ?, ?)").await?,
            click_user_list: prepare("SELECT click_id FROM {ks}.clicks_by_user WHERE affiliate_id = ? AND tenant_id = ? AND user_id = ?").await?,
            click_user_delete: prepare("DELETE FROM {ks}.clicks_by_user WHERE affiliate_id = ? AND tenant_id = ? AND user_id = ?").await?,
            click_rewrite: prepare("UPDATE {ks}.clicks USING TTL ? SET body = ? WHERE click_id = ?").await?,
            erasure_put: prepare("INSERT INTO {ks}.erasures (pseudonym, at) VALUES (?, ?)").await?,
            erasure_get: prepare("SELECT pseudonym FROM {ks}.erasures WHERE pseudonym = ?").await?,
            reward_user_delete: prepare("DELETE FROM {ks}.rewards_by_user WHERE affiliate_id = ? AND tenant_id = ? AND user_id = ?").await?,
        };
        Ok(Self {
            session,
            st,
            block_size: i64::from(settings.id_block_size),
            blocks: Mutex::new(HashMap::new()),
            click_personal_ttl: std::sync::atomic::AtomicI32::new(30 * 86_400),
            delivery_ttl: std::sync::atomic::AtomicI32::new(30 * 86_400),
        })
    }

    /// How long clicks keep their full IP and user agent (`privacy.click_personal_data_days`).
    pub fn set_click_personal_days(&self, days: u32) {
        let seconds = i32::try_from(u64::from(days) * 86_400).unwrap_or(i32::MAX);
        self.click_personal_ttl.store(seconds, std::sync::atomic::Ordering::Relaxed);
    }

    /// How long webhook deliveries are kept (`webhooks.delivery_log_days`).
    pub fn set_delivery_log_days(&self, days: u32) {
        self.set_delivery_log_ttl(std::time::Duration::from_secs(u64::from(days) * 86_400));
    }

    /// The delivery log's TTL (at least a second).
    pub fn set_delivery_log_ttl(&self, keep: std::time::Duration) {
        let seconds = i32::try_from(keep.as_secs()).unwrap_or(i32::MAX).max(1);
        self.delivery_ttl.store(seconds, std::sync::atomic::Ordering::Relaxed);
    }

    /// Reads the single text column of at most one row.
    async fn one_text(&self, st: &PreparedStatement, values: impl scylla::serialize::row::SerializeRow) -> StoreResult<Option<String>> {
        let rows = self.exec(st, values).await.map_err(driver_error)?.into_rows_result().map_err(driver_error)?;
        let row = rows.maybe_first_row::<(Option<String>,)>().map_err(driver_error)?;
        Ok(row.and_then(|(v,)| v))
    }

    async fn doc<T: DeserializeOwned>(&self, st: &PreparedStatement, values: impl scylla::serialize::row::SerializeRow) -> StoreResult<Option<T>> {
        self.one_text(st, values).await?.map(|b| from_json(&b)).transpose()
    }

    /// Every document (`body` column) a statement returns, in clustering order.
    async fn docs<T: DeserializeOwned>(&self, st: &PreparedStatement, values: impl scylla::serialize::row::SerializeRow) -> StoreResult<Vec<T>> {
        let rows = self.exec(st, values).await.map_err(driver_error)?.into_rows_result().map_err(driver_error)?;
        rows.rows::<(String,)>()
            .map_err(driver_error)?
            .map(|r| r.map_err(driver_error).and_then(|(b,)| from_json(&b)))
            .collect()
    }

    /// The single bigint column of at most one row.
    async fn one_id(&self, st: &PreparedStatement, values: impl scylla::serialize::row::SerializeRow) -> StoreResult<Option<i64>> {
        let rows = self.exec(st, values).await.map_err(driver_error)?.into_rows_result().map_err(driver_error)?;
        Ok(rows.maybe_first_row::<(Option<i64>,)>().map_err(driver_error)?.and_then(|(v,)| v))
    }

    async fn write(&self, st: &PreparedStatement, values: impl scylla::serialize::row::SerializeRow) -> StoreResult<()> {
        self.exec(st, values).await.map_err(driver_error)?;
        Ok(())
    }

    /// Runs a lightweight transaction and says whether it applied. Cassandra answers only
    /// `[applied]` when it did and adds the current row when not; ScyllaDB always adds the
    /// row; so the column is found by name.
    async fn lwt(&self, st: &PreparedStatement, values: impl scylla::serialize::row::SerializeRow) -> StoreResult<bool> {
        let rows = self.exec(st, values).await.map_err(driver_error)?.into_rows_result().map_err(driver_error)?;
        let index = rows
            .column_specs()
            .iter()
            .position(|c| c.name() == "[applied]")
            .ok_or_else(|| StoreError::Corrupt("LWT answer without [applied]".into()))?;
        let row = rows
            .maybe_first_row::<scylla::value::Row>()
            .map_err(driver_error)?
            .ok_or_else(|| StoreError::Corrupt("LWT answer without a row".into()))?;
        match row.columns.get(index) {
            Some(Some(scylla::value::CqlValue::Boolean(applied))) => Ok(*applied),
            _ => Err(StoreError::Corrupt("LWT [applied] is not a boolean".into())),
        }
    }

    /// Reserves the next block of a sequence: read the high-water mark, then move it with a
    /// compare-and-set, retrying when another instance won the race.
    async fn reserve_block(&self, name: &'static str) -> StoreResult<IdBlock> {
        for attempt in 0..100u64 {
            if attempt > 0 {
                // Another instance won the race: back off a random while so contenders spread
                // out instead of colliding again.
                let ms = rand::random_range(1..=5) * attempt.min(20);
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            let current: Option<i64> = {
                let rows = self
                    .exec(&self.st.seq_get, (name,))
                    .await
                    .map_err(driver_error)?
                    .into_rows_result()
                    .map_err(driver_error)?;
                rows.maybe_first_row::<(Option<i64>,)>().map_err(driver_error)?.and_then(|(v,)| v)
            };
            let applied = match current {
                None => self.lwt(&self.st.seq_insert, (name, 1 + self.block_size)).await?.then_some(1),
                Some(next) => self.lwt(&self.st.seq_update, (next + self.block_size, name, next)).await?.then_some(next),
            };
            if let Some(start) = applied {
                return Ok(IdBlock { next: start, end: start + self.block_size });
            }
        }
        Err(StoreError::Unavailable(anyhow::anyhow!("id sequence {name} is too contended")))
    }

    /// The stored text of a versioned document (`get` selects its `body`) when it is at
    /// `read_version`; `None` when it is at another version or gone. A conditional replace then
    /// swaps exactly this text with a lightweight transaction (`IF body = ?`): a write that
    /// lands in between (or that this read missed) changes the text and fails the condition.
    async fn body_at(&self, get: &PreparedStatement, key: impl scylla::serialize::row::SerializeRow, read_version: u64) -> StoreResult<Option<String>> {
        #[derive(serde::Deserialize)]
        struct Versioned {
            #[serde(default)]
            version: u64,
        }
        let Some(body) = self.one_text(get, key).await? else { return Ok(None) };
        let stored: Versioned = from_json(&body)?;
        Ok((stored.version == read_version).then_some(body))
    }

    async fn key_rows(&self, id: i64) -> StoreResult<Option<ApiKeyRecord>> {
        let rows = self
            .exec(&self.st.key_get, (id,))
            .await
            .map_err(driver_error)?
            .into_rows_result()
            .map_err(driver_error)?;
        let Some((body, last_used)) = rows.maybe_first_row::<(Option<String>, Option<DateTime<Utc>>)>().map_err(driver_error)? else {
            return Ok(None);
        };
        // A row with only last_used_at (an observation for a key that does not exist) is no key.
        let Some(body) = body else { return Ok(None) };
        let mut key: ApiKeyRecord = from_json(&body)?;
        key.last_used_at = last_used;
        Ok(Some(key))
    }
}

fn from_json<T: DeserializeOwned>(body: &str) -> StoreResult<T> {
    serde_json::from_str(body).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("records serialise to JSON")
}

fn id(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

#[async_trait]
impl Store for ScyllaStore {
    fn backend(&self) -> &'static str {
        "scylla"
    }

    async fn ping(&self) -> StoreResult<()> {
        self.write(&self.st.ping, ()).await
    }

    async fn next_id(&self, seq: Sequence) -> StoreResult<u64> {
        let name = seq.as_str();
        let mut blocks = self.blocks.lock().await;
        let block = blocks.entry(name).or_default();
        if block.next >= block.end {
            *block = self.reserve_block(name).await?;
        }
        let id = block.next;
        block.next += 1;
        Ok(id as u64)
    }

    async fn get_setting(&self, name: &str) -> StoreResult<Option<String>> {
        self.one_text(&self.st.setting_get, (name,)).await
    }

    async fn put_setting(&self, name: &str, value: &str) -> StoreResult<()> {
        self.write(&self.st.setting_put, (name, value)).await
    }

    async fn put_affiliate(&self, affiliate: &AffiliateRecord) -> StoreResult<()> {
        self.write(&self.st.affiliate_put, (id(affiliate.id), to_json(affiliate))).await
    }

    async fn replace_affiliate(&self, affiliate: &AffiliateRecord) -> StoreResult<bool> {
        let aid = id(affiliate.id);
        let Some(stored) = self.body_at(&self.st.affiliate_get, (aid,), affiliate.version).await? else { return Ok(false) };
        let next = AffiliateRecord { version: affiliate.version + 1, ..affiliate.clone() };
        self.lwt(&self.st.affiliate_cas, (to_json(&next), aid, stored)).await
    }

    async fn get_affiliate(&self, affiliate_id: u64) -> StoreResult<Option<AffiliateRecord>> {
        self.doc(&self.st.affiliate_get, (id(affiliate_id),)).await
    }

    async fn put_key(&self, key: &ApiKeyRecord) -> StoreResult<()> {
        let mut doc = key.clone();
        doc.last_used_at = None;
        // Lookups first: a key row is only reachable once its lookups exist, and rewriting
        // them is idempotent.
        self.write(&self.st.key_hash_put, (key.hash.as_str(), id(key.id))).await?;
        self.write(&self.st.key_affiliate_put, (id(key.affiliate_id), id(key.id))).await?;
        self.write(&self.st.key_put, (id(key.id), to_json(&doc))).await
    }

    async fn replace_key(&self, key: &ApiKeyRecord) -> StoreResult<bool> {
        // The body only: last_used_at is its own column, written without a read.
        let kid = id(key.id);
        let Some(stored) = self.body_at(&self.st.key_body_get, (kid,), key.version).await? else { return Ok(false) };
        let next = ApiKeyRecord { version: key.version + 1, last_used_at: None, ..key.clone() };
        self.lwt(&self.st.key_cas, (to_json(&next), kid, stored)).await
    }

    async fn key_by_hash(&self, hash: &str) -> StoreResult<Option<ApiKeyRecord>> {
        let rows = self
            .exec(&self.st.key_hash_get, (hash,))
            .await
            .map_err(driver_error)?
            .into_rows_result()
            .map_err(driver_error)?;
        match rows.maybe_first_row::<(Option<i64>,)>().map_err(driver_error)? {
            Some((Some(key_id),)) => Ok(self.key_rows(key_id).await?.filter(|k| k.hash == hash)),
            _ => Ok(None),
        }
    }

    async fn key_by_id(&self, key_id: u64) -> StoreResult<Option<ApiKeyRecord>> {
        self.key_rows(id(key_id)).await
    }

    async fn keys_of_affiliate(&self, affiliate_id: u64) -> StoreResult<Vec<ApiKeyRecord>> {
        let rows = self
            .exec(&self.st.key_affiliate_list, (id(affiliate_id),))
            .await
            .map_err(driver_error)?
            .into_rows_result()
            .map_err(driver_error)?;
        let ids: Vec<i64> = rows
            .rows::<(i64,)>()
            .map_err(driver_error)?
            .map(|r| r.map(|(k,)| k).map_err(driver_error))
            .collect::<Result<_, _>>()?;
        let mut keys = Vec::with_capacity(ids.len());
        for key_id in ids {
            if let Some(k) = self.key_rows(key_id).await? {
                keys.push(k);
            }
        }
        Ok(keys)
    }

    async fn record_last_used(&self, batch: &[KeyLastUsed]) -> StoreResult<()> {
        for u in batch {
            // Skip observations for keys that do not exist rather than creating ghost rows.
            if self.key_rows(id(u.key_id)).await?.is_none() {
                continue;
            }
            self.write(&self.st.key_last_used, (u.at.timestamp_micros(), u.at, id(u.key_id))).await?;
        }
        Ok(())
    }

    async fn put_category(&self, category: &CategoryRecord) -> StoreResult<()> {
        self.write(&self.st.category_put, (CATEGORY_BUCKET, id(category.id), to_json(category))).await
    }

    async fn replace_category(&self, category: &CategoryRecord) -> StoreResult<bool> {
        let cid = id(category.id);
        let Some(stored) = self.body_at(&self.st.category_get, (CATEGORY_BUCKET, cid), category.version).await? else { return Ok(false) };
        let next = CategoryRecord { version: category.version + 1, ..category.clone() };
        self.lwt(&self.st.category_cas, (to_json(&next), CATEGORY_BUCKET, cid, stored)).await
    }

    async fn get_category(&self, category_id: u64) -> StoreResult<Option<CategoryRecord>> {
        self.doc(&self.st.category_get, (CATEGORY_BUCKET, id(category_id))).await
    }

    async fn categories(&self) -> StoreResult<Vec<CategoryRecord>> {
        self.docs(&self.st.category_all, (CATEGORY_BUCKET,)).await
    }

    async fn claim_unique(&self, namespace: &str, value: &str, owner: u64) -> StoreResult<bool> {
        if self.lwt(&self.st.claim_insert, (namespace, value, id(owner))).await? {
            return Ok(true);
        }
        Ok(self.one_id(&self.st.claim_get, (namespace, value)).await? == Some(id(owner)))
    }

    async fn release_unique(&self, namespace: &str, value: &str, owner: u64) -> StoreResult<()> {
        self.lwt(&self.st.claim_release, (namespace, value, id(owner))).await.map(|_| ())
    }

    async fn put_product(&self, product: &ProductRecord) -> StoreResult<()> {
        let pid = id(product.id);
        self.write(&self.st.product_put, (bucket_of(pid), pid, to_json(product))).await
    }

    async fn replace_product(&self, product: &ProductRecord) -> StoreResult<bool> {
        let pid = id(product.id);
        let Some(stored) = self.body_at(&self.st.product_get, (bucket_of(pid), pid), product.version).await? else { return Ok(false) };
        let next = ProductRecord { version: product.version + 1, ..product.clone() };
        self.lwt(&self.st.product_cas, (to_json(&next), bucket_of(pid), pid, stored)).await
    }

    async fn get_product(&self, product_id: u64) -> StoreResult<Option<ProductRecord>> {
        let pid = id(product_id);
        self.doc(&self.st.product_get, (bucket_of(pid), pid)).await
    }

    async fn products(&self) -> StoreResult<Vec<ProductRecord>> {
        let mut all = Vec::new();
        for bucket in 0..PRODUCT_BUCKETS {
            all.extend(self.docs::<ProductRecord>(&self.st.product_bucket, (bucket,)).await?);
        }
        all.sort_by_key(|p| p.id);
        Ok(all)
    }

    async fn put_promotion(&self, promotion: &PromotionRecord) -> StoreResult<()> {
        self.write(&self.st.promotion_put, (CATEGORY_BUCKET, id(promotion.id), to_json(promotion))).await
    }

    async fn promotions(&self) -> StoreResult<Vec<PromotionRecord>> {
        self.docs(&self.st.promotion_all, (CATEGORY_BUCKET,)).await
    }

    async fn put_blog_profile(&self, profile: &BlogProfileRecord) -> StoreResult<()> {
        self.write(&self.st.profile_put, (id(profile.affiliate_id), id(profile.id), to_json(profile))).await
    }

    async fn blog_profiles(&self, affiliate_id: u64) -> StoreResult<Vec<BlogProfileRecord>> {
        self.docs(&self.st.profile_list, (id(affiliate_id),)).await
    }

    async fn put_blog(&self, blog: &BlogRecord) -> StoreResult<()> {
        self.write(&self.st.blog_index_put, (id(blog.id), id(blog.affiliate_id))).await?;
        self.write(&self.st.blog_put, (id(blog.affiliate_id), id(blog.id), to_json(blog))).await
    }

    async fn get_blog(&self, affiliate_id: u64, blog_id: u64) -> StoreResult<Option<BlogRecord>> {
        self.doc(&self.st.blog_get, (id(affiliate_id), id(blog_id))).await
    }

    async fn get_blog_by_id(&self, blog_id: u64) -> StoreResult<Option<BlogRecord>> {
        match self.one_id(&self.st.blog_index_get, (id(blog_id),)).await? {
            Some(affiliate_id) => self.doc(&self.st.blog_get, (affiliate_id, id(blog_id))).await,
            None => Ok(None),
        }
    }

    async fn put_webhook(&self, webhook: &WebhookRecord) -> StoreResult<()> {
        let body = to_json(webhook);
        match self.webhook_cas(&self.st.webhook_insert, (id(webhook.affiliate_id), id(webhook.id), body.as_str())).await? {
            Ok(()) => self.index_webhook(None, webhook).await,
            // A replacement: a compare-and-set like any change of the row.
            Err(_) => {
                let replacement = webhook.clone();
                let change: WebhookChange = Box::new(move |w| {
                    *w = WebhookRecord { updated_at: w.updated_at, ..replacement.clone() };
                    w.touch();
                    true
                });
                self.update_webhook(webhook.affiliate_id, webhook.id, change).await.map(|_| ())
            }
        }
    }

    async fn get_webhook(&self, affiliate_id: u64, webhook_id: u64) -> StoreResult<Option<WebhookRecord>> {
        self.doc(&self.st.webhook_get, (id(affiliate_id), id(webhook_id))).await
    }

    async fn webhooks_of(&self, affiliate_id: u64) -> StoreResult<Vec<WebhookRecord>> {
        self.docs(&self.st.webhook_list, (id(affiliate_id),)).await
    }

    async fn webhooks_for_event(&self, event: &str) -> StoreResult<Vec<WebhookRecord>> {
        self.docs(&self.st.webhook_event_list, (event,)).await
    }

    async fn delete_webhook(&self, webhook: &WebhookRecord) -> StoreResult<()> {
        // Conditional on the row as read, like a change, so the version deleted is known and
        // the by-event copy's deletion is written past it.
        let key = (id(webhook.affiliate_id), id(webhook.id));
        let mut current = self.one_text(&self.st.webhook_get, key).await?;
        let mut last = webhook.clone();
        let mut gone = false;
        for attempt in 0..CAS_TRIES {
            let Some(body) = current else {
                gone = true;
                break;
            };
            last = from_json(&body)?;
            match self.webhook_cas(&self.st.webhook_delete, (key.0, key.1, body.as_str())).await? {
                Ok(()) => {
                    gone = true;
                    break;
                }
                Err(now) => current = now,
            }
            cas_backoff(attempt).await;
        }
        if !gone {
            return Err(StoreError::Unavailable(anyhow::anyhow!("webhook {} is too contended", webhook.id)));
        }
        let at = Utc::now().timestamp_micros().max(last.updated_at.timestamp_micros() + 1);
        self.write(&self.st.webhook_event_delete, (at, last.event.as_str(), key.1)).await?;
        if last.event != webhook.event {
            self.write(&self.st.webhook_event_delete, (at, webhook.event.as_str(), key.1)).await?;
        }
        Ok(())
    }

    async fn put_delivery(&self, delivery: &DeliveryRecord) -> StoreResult<()> {
        let wid = id(delivery.webhook_id);
        // The delivery log's retention: each write restarts the row's TTL, counted from the
        // last attempt.
        let ttl = self.delivery_ttl.load(std::sync::atomic::Ordering::Relaxed);
        self.write(&self.st.delivery_put, (wid, delivery.id.as_str(), to_json(delivery), ttl)).await?;
        if delivery.state == DeliveryState::Pending {
            self.write(&self.st.pending_put, (shard_of(wid), wid, delivery.id.as_str(), ttl)).await
        } else {
            self.write(&self.st.pending_delete, (shard_of(wid), wid, delivery.id.as_str())).await
        }
    }

    async fn get_delivery(&self, webhook_id: u64, delivery_id: &str) -> StoreResult<Option<DeliveryRecord>> {
        self.doc(&self.st.delivery_get, (id(webhook_id), delivery_id)).await
    }

    async fn deliveries_of(&self, webhook_id: u64, limit: usize) -> StoreResult<Vec<DeliveryRecord>> {
        let limit = i32::try_from(limit).unwrap_or(i32::MAX);
        self.docs(&self.st.delivery_list, (id(webhook_id), limit)).await
    }

    async fn pending_deliveries(&self) -> StoreResult<Vec<DeliveryRecord>> {
        let mut out = Vec::new();
        for shard in 0..PENDING_SHARDS {
            let rows = self
                .exec(&self.st.pending_shard, (shard,))
                .await
                .map_err(driver_error)?
                .into_rows_result()
                .map_err(driver_error)?;
            let keys: Vec<(i64, String)> = rows.rows::<(i64, String)>().map_err(driver_error)?.collect::<Result<_, _>>().map_err(driver_error)?;
            for (wid, did) in keys {
                if let Some(d) = self.doc::<DeliveryRecord>(&self.st.delivery_get, (wid, did.as_str())).await? {
                    out.push(d);
                }
            }
        }
        Ok(out)
    }

    async fn put_brand(&self, brand: &BrandRecord) -> StoreResult<()> {
        self.write(&self.st.brand_put, (CATEGORY_BUCKET, id(brand.id), to_json(brand))).await
    }

    async fn brands(&self) -> StoreResult<Vec<BrandRecord>> {
        self.docs(&self.st.brand_all, (CATEGORY_BUCKET,)).await
    }

    async fn put_offer(&self, offer: &OfferRecord) -> StoreResult<()> {
        let oid = id(offer.id);
        self.write(&self.st.offer_put, (bucket_of(oid), oid, to_json(offer))).await
    }

    async fn offers(&self) -> StoreResult<Vec<OfferRecord>> {
        let mut all = Vec::new();
        for bucket in 0..PRODUCT_BUCKETS {
            all.extend(self.docs::<OfferRecord>(&self.st.offer_all, (bucket,)).await?);
        }
        all.sort_by_key(|o| o.id);
        Ok(all)
    }

    async fn put_network(&self, network: &NetworkRecord) -> StoreResult<()> {
        let before: Option<NetworkRecord> = self.doc(&self.st.network_id_get, (id(network.id),)).await?;
        let body = to_json(network);
        // The new token's lookup first: a crash before the delete leaves the old token working
        // a while longer, never the network without one.
        self.write(&self.st.network_put, (network.postback_token.as_str(), body.as_str())).await?;
        self.write(&self.st.network_id_put, (id(network.id), body.as_str())).await?;
        if let Some(old) = before.filter(|b| b.postback_token != network.postback_token) {
            self.write(&self.st.network_token_delete, (old.postback_token.as_str(),)).await?;
        }
        Ok(())
    }

    async fn get_network(&self, network_id: u64) -> StoreResult<Option<NetworkRecord>> {
        self.doc(&self.st.network_id_get, (id(network_id),)).await
    }

    async fn network_by_token(&self, token: &str) -> StoreResult<Option<NetworkRecord>> {
        // The lookup row only points at the network; its row by id says which token is
        // current. Two rotations at once each leave a lookup row, and the delete of the old
        // one can miss the other's: a token that is not the network's own never resolves.
        let Some(pointed) = self.doc::<NetworkRecord>(&self.st.network_get, (token,)).await? else {
            return Ok(None);
        };
        Ok(self.get_network(pointed.id).await?.filter(|current| current.postback_token == token))
    }

    async fn put_campaign(&self, campaign: &CampaignRecord) -> StoreResult<()> {
        self.write(&self.st.campaign_put, (id(campaign.affiliate_id), id(campaign.id), to_json(campaign))).await
    }

    async fn get_campaign(&self, affiliate_id: u64, campaign_id: u64) -> StoreResult<Option<CampaignRecord>> {
        self.doc(&self.st.campaign_get, (id(affiliate_id), id(campaign_id))).await
    }

    async fn put_link(&self, link: &LinkRecord) -> StoreResult<()> {
        self.write(&self.st.link_put, (link.code.as_str(), to_json(link))).await
    }

    async fn get_link(&self, code: &str) -> StoreResult<Option<LinkRecord>> {
        self.doc(&self.st.link_get, (code,)).await
    }

    async fn put_click(&self, click: &ClickRecord) -> StoreResult<()> {
        // The body without personal data (kept as long as the click); the full IP and user
        // agent beside it under their own TTL; the end user's index row.
        let ttl = self.click_personal_ttl.load(std::sync::atomic::Ordering::Relaxed);
        let personal = async {
            if ttl > 0 && (click.ip.is_some() || click.user_agent.is_some()) {
                self.write(&self.st.click_personal_put, (click.click_id.as_str(), click.ip.as_deref(), click.user_agent.as_deref(), ttl)).await
            } else {
                Ok(())
            }
        };
        let by_user = async {
            match &click.user_id {
                Some(user) => self.write(&self.st.click_user_put, (id(click.affiliate_id), click.tenant_id.as_str(), user.as_str(), click.click_id.as_str())).await,
                None => Ok(()),
            }
        };
        let (a, b) = tokio::join!(personal, by_user);
        a.and(b)?;
        self.write(&self.st.click_put, (click.click_id.as_str(), to_json(&click.without_personal_data()))).await
    }

    async fn get_click(&self, click_id: &str) -> StoreResult<Option<ClickRecord>> {
        let (body, personal) = tokio::join!(self.doc::<ClickRecord>(&self.st.click_get, (click_id,)), self.exec(&self.st.click_personal_get, (click_id,)));
        let Some(mut click) = body? else { return Ok(None) };
        let rows = personal.map_err(driver_error)?.into_rows_result().map_err(driver_error)?;
        if let Some((ip, user_agent)) = rows.maybe_first_row::<(Option<String>, Option<String>)>().map_err(driver_error)? {
            if ip.is_some() {
                click.ip = ip;
            }
            click.user_agent = user_agent;
        }
        Ok(Some(click))
    }

    async fn clicks_of_user(&self, affiliate_id: u64, tenant_id: &str, user_id: &str) -> StoreResult<Vec<ClickRecord>> {
        let rows = self.exec(&self.st.click_user_list, (id(affiliate_id), tenant_id, user_id)).await.map_err(driver_error)?.into_rows_result().map_err(driver_error)?;
        let ids: Vec<String> = rows.rows::<(String,)>().map_err(driver_error)?.map(|r| r.map(|(v,)| v).map_err(driver_error)).collect::<StoreResult<_>>()?;
        let mut out = Vec::new();
        for click_id in ids {
            // An index row outlives nothing: both expire with the click; a click already
            // erased (another user id) is not this user's any more.
            if let Some(c) = self.get_click(&click_id).await? {
                if c.affiliate_id == affiliate_id && c.tenant_id == tenant_id && c.user_id.as_deref() == Some(user_id) {
                    out.push(c);
                }
            }
        }
        Ok(out)
    }

    async fn erase_clicks_of_user(&self, affiliate_id: u64, tenant_id: &str, user_id: &str, pseudonym: &str) -> StoreResult<usize> {
        let clicks = self.clicks_of_user(affiliate_id, tenant_id, user_id).await?;
        for c in &clicks {
            let erased = ClickRecord { user_id: Some(pseudonym.to_string()), ip: None, user_agent: None, ..c.clone() };
            // Rewritten for what is left of the click's own lifetime, not a new one.
            let left = (CLICK_TTL_SECONDS - (chrono::Utc::now() - c.at).num_seconds()).clamp(1, CLICK_TTL_SECONDS) as i32;
            self.write(&self.st.click_personal_delete, (c.click_id.as_str(),)).await?;
            self.write(&self.st.click_rewrite, (left, to_json(&erased), c.click_id.as_str())).await?;
        }
        self.write(&self.st.click_user_delete, (id(affiliate_id), tenant_id, user_id)).await?;
        Ok(clicks.len())
    }

    async fn expire_click_personal_data(&self, _before: chrono::DateTime<chrono::Utc>, _limit: usize) -> StoreResult<usize> {
        // `click_personal` rows expire by their TTL.
        Ok(0)
    }

    async fn expire_deliveries(&self, _before: chrono::DateTime<chrono::Utc>, _limit: usize) -> StoreResult<usize> {
        // Deliveries are written `USING TTL` (`webhooks.delivery_log_days`).
        Ok(0)
    }

    async fn put_erasure(&self, pseudonym: &str, at: chrono::DateTime<chrono::Utc>) -> StoreResult<()> {
        self.write(&self.st.erasure_put, (pseudonym, at)).await
    }

    async fn erased(&self, pseudonyms: &[String]) -> StoreResult<Vec<String>> {
        let reads = pseudonyms.iter().map(|p| self.one_text(&self.st.erasure_get, (p.as_str(),)));
        let found: Vec<Option<String>> = futures_util::future::join_all(reads).await.into_iter().collect::<StoreResult<_>>()?;
        Ok(found.into_iter().flatten().collect())
    }

    async fn forget_user_index(&self, affiliate_id: u64, tenant_id: &str, user_id: &str) -> StoreResult<()> {
        self.write(&self.st.reward_user_delete, (id(affiliate_id), tenant_id, user_id)).await
    }

    async fn put_conversion(&self, c: &ConversionRecord) -> StoreResult<()> {
        let cid = id(c.id);
        // Index rows first, the conversion's own row last: the ledger writer reads that row to
        // skip events it applied, so once it is there every index row is too (a failure in
        // between is retried in full). The id and end-user indexes never change after the
        // first write (`created_at == updated_at`: written in the batch that made it). A
        // reward becoming queued is indexed before its row says so (a stale index row is
        // filtered on read); one leaving the queue is unindexed with the other index rows.
        let body = to_json(c);
        let first = c.created_at == c.updated_at;
        let once = async {
            if first {
                let (a, b) = tokio::join!(
                    self.write(&self.st.conversion_shard_put, ((cid % i64::from(PENDING_SHARDS)) as i32, cid)),
                    self.write(&self.st.reward_user_put, (id(c.affiliate_id), c.tenant_id.as_str(), c.user_id.as_str(), cid)),
                );
                a.and(b)
            } else {
                Ok(())
            }
        };
        let (a, b, d) = tokio::join!(once, self.index_queued(c), self.write(&self.st.conversion_affiliate_put, (id(c.affiliate_id), id(c.campaign_id), cid, body.as_str())));
        a.and(b).and(d)?;
        self.write(&self.st.conversion_put, (cid, body.as_str())).await
    }

    async fn queued_conversions(&self) -> StoreResult<Vec<ConversionRecord>> {
        // The index may lag a status change by one write; the row itself decides.
        let mut out = self.indexed_conversions(&self.st.queued_shard).await?;
        out.retain(|c| c.status == super::RewardStatus::Queued);
        Ok(out)
    }

    async fn get_conversion(&self, conversion_id: u64) -> StoreResult<Option<ConversionRecord>> {
        self.doc(&self.st.conversion_get, (id(conversion_id),)).await
    }

    async fn rewards_of_user(&self, affiliate_id: u64, tenant_id: &str, user_id: &str) -> StoreResult<Vec<ConversionRecord>> {
        let mut out = Vec::new();
        for cid in self.ids(&self.st.reward_user_list, (id(affiliate_id), tenant_id, user_id)).await? {
            if let Some(c) = self.doc::<ConversionRecord>(&self.st.conversion_get, (cid,)).await? {
                // An erased user's conversions carry a pseudonym; their old index rows are
                // dropped after (`forget_user_index`), and never answer meanwhile.
                if c.user_id == user_id {
                    out.push(c);
                }
            }
        }
        Ok(out)
    }

    async fn conversions(&self) -> StoreResult<Vec<ConversionRecord>> {
        self.indexed_conversions(&self.st.conversion_shard).await
    }

    async fn put_postings(&self, postings: &[PostingRecord]) -> StoreResult<()> {
        let writes = postings.iter().map(|p| self.write(&self.st.posting_put, (id(p.conversion_id), p.leg.as_str(), to_json(p))));
        futures_util::future::join_all(writes).await.into_iter().collect()
    }

    async fn postings_of(&self, conversion_id: u64) -> StoreResult<Vec<PostingRecord>> {
        self.docs(&self.st.posting_list, (id(conversion_id),)).await
    }

    async fn get_conversions(&self, ids: &[u64]) -> StoreResult<Vec<ConversionRecord>> {
        let reads = ids.iter().map(|cid| self.doc::<ConversionRecord>(&self.st.conversion_get, (id(*cid),)));
        let found: Vec<Option<ConversionRecord>> = futures_util::future::join_all(reads).await.into_iter().collect::<StoreResult<_>>()?;
        Ok(found.into_iter().flatten().collect())
    }

    async fn write_ledger_batch(&self, postings: &[PostingRecord], conversions: &[ConversionRecord]) -> StoreResult<()> {
        // Legs first (all at once), then every conversion at once: each write is an
        // idempotent upsert, and a crash in between replays the same legs.
        self.put_postings(postings).await?;
        let writes = conversions.iter().map(|c| self.put_conversion(c));
        futures_util::future::join_all(writes).await.into_iter().collect()
    }

    async fn campaigns_of(&self, affiliate_id: u64) -> StoreResult<Vec<CampaignRecord>> {
        self.docs(&self.st.campaign_list, (id(affiliate_id),)).await
    }

    async fn conversions_of_affiliate(&self, affiliate_id: u64) -> StoreResult<Vec<ConversionRecord>> {
        self.docs(&self.st.conversion_affiliate_list, (id(affiliate_id),)).await
    }

    async fn add_usage(&self, batch: &[(UsageCell, UsageCounts)]) -> StoreResult<()> {
        // Counter updates cannot be batched across partitions cheaply; they go concurrently.
        let rollups = super::usage_rollups(batch);
        for chunk in rollups.chunks(WRITE_CHUNK) {
            let writes = chunk.iter().map(|(r, c, n)| {
                self.write(
                    &self.st.usage_add,
                    (
                        scylla::value::Counter(n.requests as i64),
                        scylla::value::Counter(n.rate_limited as i64),
                        id(c.affiliate_id),
                        r.name(),
                        r.bucket(c.period),
                        c.period,
                        id(c.key_id),
                        c.route.as_str(),
                        c.status_class.as_str(),
                    ),
                )
            });
            futures_util::future::join_all(writes).await.into_iter().collect::<StoreResult<()>>()?;
        }
        Ok(())
    }

    async fn usage_of(
        &self,
        affiliate_id: u64,
        resolution: UsageResolution,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> StoreResult<Vec<(UsageCell, UsageCounts)>> {
        let mut out = Vec::new();
        for bucket in resolution.buckets(from, to) {
            let rows = self
                .exec(&self.st.usage_list, (id(affiliate_id), resolution.name(), bucket.as_str(), from, to))
                .await
                .map_err(driver_error)?
                .into_rows_result()
                .map_err(driver_error)?;
            for row in rows.rows::<(DateTime<Utc>, i64, String, String, Option<scylla::value::Counter>, Option<scylla::value::Counter>)>().map_err(driver_error)? {
                let (period, key_id, route, status_class, requests, rate_limited) = row.map_err(driver_error)?;
                out.push((
                    UsageCell { affiliate_id, period, key_id: key_id as u64, route, status_class },
                    UsageCounts { requests: requests.map_or(0, |c| c.0.max(0) as u64), rate_limited: rate_limited.map_or(0, |c| c.0.max(0) as u64) },
                ));
            }
        }
        Ok(out)
    }

    async fn add_clicks(&self, batch: &[(ClickCell, u64)]) -> StoreResult<()> {
        for chunk in batch.chunks(WRITE_CHUNK) {
            let writes = chunk.iter().map(|(c, n)| self.write(&self.st.clicks_add, (scylla::value::Counter(*n as i64), id(c.affiliate_id), id(c.campaign_id), c.day)));
            futures_util::future::join_all(writes).await.into_iter().collect::<StoreResult<()>>()?;
        }
        Ok(())
    }

    async fn clicks_of(&self, affiliate_id: u64) -> StoreResult<Vec<(ClickCell, u64)>> {
        let rows = self.exec(&self.st.clicks_list, (id(affiliate_id),)).await.map_err(driver_error)?.into_rows_result().map_err(driver_error)?;
        rows.rows::<(i64, chrono::NaiveDate, Option<scylla::value::Counter>)>()
            .map_err(driver_error)?
            .map(|r| {
                let (campaign_id, day, clicks) = r.map_err(driver_error)?;
                Ok((ClickCell { affiliate_id, campaign_id: campaign_id as u64, day }, clicks.map_or(0, |c| c.0.max(0) as u64)))
            })
            .collect()
    }

    async fn append_audit(&self, batch: &[AuditEntry], retention: std::time::Duration) -> StoreResult<()> {
        let ttl = i32::try_from(retention.as_secs()).unwrap_or(i32::MAX).max(1);
        for chunk in batch.chunks(WRITE_CHUNK) {
            let writes = chunk.iter().map(|e| {
                // A random nonce keeps two rows with the same millisecond and (client-chosen)
                // request id apart.
                self.write(&self.st.audit_put, (id(e.affiliate_id), e.at.date_naive(), e.at, e.request_id.as_str(), rand::random::<i64>(), to_json(e), ttl))
            });
            futures_util::future::join_all(writes).await.into_iter().collect::<StoreResult<()>>()?;
        }
        Ok(())
    }

    async fn audit_of(&self, affiliate_id: u64, day: chrono::NaiveDate, limit: usize) -> StoreResult<Vec<AuditEntry>> {
        let limit = i32::try_from(limit).unwrap_or(i32::MAX).max(1);
        self.docs(&self.st.audit_list, (id(affiliate_id), day, limit)).await
    }
    async fn get_deliveries(&self, keys: &[(u64, String)]) -> StoreResult<Vec<DeliveryRecord>> {
        let mut out = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(WRITE_CHUNK) {
            let reads = chunk.iter().map(|(w, d)| self.doc::<DeliveryRecord>(&self.st.delivery_get, (id(*w), d.as_str())));
            for found in futures_util::future::join_all(reads).await {
                out.extend(found?);
            }
        }
        Ok(out)
    }

    async fn put_deliveries(&self, deliveries: &[DeliveryRecord]) -> StoreResult<()> {
        // Each delivery is an idempotent upsert of its row and its pending index row.
        for chunk in deliveries.chunks(WRITE_CHUNK) {
            let writes = chunk.iter().map(|d| self.put_delivery(d));
            futures_util::future::join_all(writes).await.into_iter().collect::<StoreResult<()>>()?;
        }
        Ok(())
    }

    async fn get_webhooks(&self, keys: &[(u64, u64)]) -> StoreResult<Vec<WebhookRecord>> {
        let mut out = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(WRITE_CHUNK) {
            let reads = chunk.iter().map(|(a, w)| self.get_webhook(*a, *w));
            for found in futures_util::future::join_all(reads).await {
                out.extend(found?);
            }
        }
        Ok(out)
    }

    async fn update_webhook(&self, affiliate_id: u64, webhook_id: u64, change: WebhookChange) -> StoreResult<Option<WebhookRecord>> {
        // A compare-and-set on the body as read: a write that came first (another change, a
        // deletion) fails it and answers the row as it is now, which `change` edits again; a
        // missing row is never written (no deleted webhook comes back).
        let key = (id(affiliate_id), id(webhook_id));
        let mut current = self.one_text(&self.st.webhook_get, key).await?;
        for attempt in 0..CAS_TRIES {
            let Some(body) = current else { return Ok(None) };
            let old: WebhookRecord = from_json(&body)?;
            let mut new = old.clone();
            if !change(&mut new) {
                return Ok(Some(old));
            }
            // Versions strictly ordered whatever `change` did with `updated_at`.
            if new.updated_at.timestamp_micros() <= old.updated_at.timestamp_micros() {
                new.updated_at = old.updated_at;
                new.touch();
            }
            let next = to_json(&new);
            match self.webhook_cas(&self.st.webhook_cas, (next.as_str(), key.0, key.1, body.as_str())).await? {
                Ok(()) => {
                    self.index_webhook(Some(&old), &new).await?;
                    return Ok(Some(new));
                }
                Err(now) => current = now,
            }
            cas_backoff(attempt).await;
        }
        Err(StoreError::Unavailable(anyhow::anyhow!("webhook {webhook_id} is too contended")))
    }
}

/// Compare-and-set rounds on one webhook row before giving up.
const CAS_TRIES: u32 = 50;

/// After a lost compare-and-set round or two, waits a random while so contenders spread out.
async fn cas_backoff(attempt: u32) {
    if attempt >= 1 {
        let ms = rand::random_range(1..=5) * u64::from(attempt.min(20));
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
}

impl ScyllaStore {
    /// Runs a webhook row's lightweight transaction: `Ok(())` when it applied, else the row's
    /// body as it is now (`None`: no row). Both Cassandra and ScyllaDB add the conditioned
    /// columns to a refusal; the columns are found by name.
    async fn webhook_cas(&self, st: &PreparedStatement, values: impl scylla::serialize::row::SerializeRow) -> StoreResult<Result<(), Option<String>>> {
        let rows = self.exec(st, values).await.map_err(driver_error)?.into_rows_result().map_err(driver_error)?;
        let specs = rows.column_specs();
        let applied_at = specs
            .iter()
            .position(|c| c.name() == "[applied]")
            .ok_or_else(|| StoreError::Corrupt("LWT answer without [applied]".into()))?;
        let body_at = specs.iter().position(|c| c.name() == "body");
        let row = rows
            .maybe_first_row::<scylla::value::Row>()
            .map_err(driver_error)?
            .ok_or_else(|| StoreError::Corrupt("LWT answer without a row".into()))?;
        match row.columns.get(applied_at) {
            Some(Some(scylla::value::CqlValue::Boolean(true))) => Ok(Ok(())),
            Some(Some(scylla::value::CqlValue::Boolean(false))) => {
                let body = body_at.and_then(|i| row.columns.get(i).cloned().flatten());
                match body {
                    None => Ok(Err(None)),
                    Some(scylla::value::CqlValue::Text(b)) | Some(scylla::value::CqlValue::Ascii(b)) => Ok(Err(Some(b))),
                    Some(_) => Err(StoreError::Corrupt("webhook body is not text".into())),
                }
            }
            _ => Err(StoreError::Corrupt("LWT [applied] is not a boolean".into())),
        }
    }

    /// Writes the by-event copy of a webhook's version `new` (moving it when the event
    /// changed), at the version's time.
    async fn index_webhook(&self, old: Option<&WebhookRecord>, new: &WebhookRecord) -> StoreResult<()> {
        let at = new.updated_at.timestamp_micros();
        if let Some(old) = old.filter(|o| o.event != new.event) {
            self.write(&self.st.webhook_event_delete, (at, old.event.as_str(), id(new.id))).await?;
        }
        self.write(&self.st.webhook_event_put, (new.event.as_str(), id(new.id), to_json(new), at)).await
    }
}

#[cfg(test)]
mod tls_tests {
    use super::*;

    fn settings(nodes: Vec<String>) -> ScyllaSettings {
        ScyllaSettings { nodes, ..ScyllaSettings::default() }
    }

    #[test]
    fn wildcards_stand_for_one_label() {
        assert!(dns_name_matches("*.db.example.com", "node-1.db.example.com"));
        assert!(dns_name_matches("Node-1.DB.example.com", "node-1.db.example.com"));
        assert!(!dns_name_matches("*.db.example.com", "a.node-1.db.example.com"));
        assert!(!dns_name_matches("*.db.example.com", "db.example.com"));
        assert!(!dns_name_matches("node-2.db.example.com", "node-1.db.example.com"));
    }

    #[test]
    fn a_missing_ca_file_is_a_clear_error() {
        let mut s = settings(vec!["127.0.0.1:1".into()]);
        s.tls = true;
        assert!(tls_context(&s).is_ok(), "the system's CAs load");
        s.tls_ca_file = Some("/nonexistent/ca.pem".into());
        let e = tls_context(&s).err().expect("refused").to_string();
        assert!(e.contains("store.scylla.tls_ca_file") && e.contains("/nonexistent/ca.pem"), "{e}");
    }

    /// TLS towards a port that answers in plaintext (as a CQL port without TLS does) or not at
    /// all fails within the connection timeout, saying it was TLS.
    #[tokio::test]
    async fn tls_against_a_plaintext_port_fails_fast_and_says_so() {
        for answer in [true, false] {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let server = tokio::spawn(async move {
                let mut held = Vec::new();
                while let Ok((mut socket, _)) = listener.accept().await {
                    if answer {
                        use tokio::io::AsyncWriteExt;
                        // A CQL v4 ERROR frame's start: not a TLS record.
                        let _ = socket.write_all(&[0x84, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0, 0x0a, 0, 2, b'n', b'o']).await;
                    } else {
                        held.push(socket);
                    }
                }
            });
            let mut s = settings(vec![addr.to_string()]);
            s.tls = true;
            let started = std::time::Instant::now();
            let e = tokio::time::timeout(Duration::from_secs(30), connect_within(&s, Duration::from_secs(3)))
                .await
                .expect("connect gives up by itself")
                .map(|_| ())
                .expect_err("refused");
            assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
            let e = format!("{e:#}");
            assert!(e.contains("over TLS") && e.contains(&addr.to_string()), "{e}");
            let reason = if answer { "wrong version number" } else { "no answer within 3s" };
            assert!(e.contains(reason), "{e}");
            server.abort();
        }
    }

    #[test]
    fn credentials_come_from_the_password_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("password");
        std::fs::write(&file, "s3cret\n").unwrap();
        let mut s = settings(vec!["127.0.0.1:1".into()]);
        s.username = Some("hb".into());
        s.password_file = Some(file);
        let (user, password) = s.credentials().unwrap().unwrap();
        use secrecy::ExposeSecret;
        assert_eq!((user.as_str(), password.expose_secret()), ("hb", "s3cret"));
    }
}
