//! The embedded store: SQLite (bundled, through `rusqlite`) in one file of the data
//! directory.
//!
//! Why SQLite: a single-file, crash-safe (WAL with `synchronous=FULL`) database that needs
//! no server, is among the most tested pieces of software there is, and is compiled into
//! the binary, so the embedded default needs nothing installed. Records are kept as JSON
//! documents keyed the way the CQL tables are keyed, so both backends serve the same
//! access patterns.
//!
//! rusqlite is blocking: every call runs on tokio's blocking pool and holds a connection
//! only for the statement itself. Writes (and anything that reads then writes in one
//! transaction) go through the one writer connection; pure reads go to a pool of read-only
//! connections (`r2d2` + `r2d2_sqlite`) on the same WAL file, so a read never queues behind a
//! write batch. A WAL reader sees everything committed before its read transaction began,
//! and a reader's transaction lasts one statement (statements are reset when their rows are
//! dropped), so a read issued after a write has returned sees that write.

use super::{AuditEntry, ClickCell, UsageCell, UsageCounts, UsageResolution, AffiliateRecord, ApiKeyRecord, BlogProfileRecord, BlogRecord, BrandRecord, CampaignRecord, CategoryRecord, ClickRecord, DeliveryRecord, DeliveryState, ConversionRecord, LinkRecord, NetworkRecord, OfferRecord, PostingRecord, ProductRecord, PromotionRecord, WebhookRecord, Sequence, Store, StoreError, StoreResult};
use super::WebhookChange;
use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use hissaback_actors::ports::KeyLastUsed;
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use serde::de::DeserializeOwned;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a statement waits for a SQLite lock, and a read for a free reader.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Prepared statements each connection keeps (the store has a few dozen distinct ones).
const STATEMENT_CACHE: usize = 64;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS sequences (name TEXT PRIMARY KEY, next INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS settings (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS affiliates (id INTEGER PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS api_keys (
    id INTEGER PRIMARY KEY,
    affiliate_id INTEGER NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    body TEXT NOT NULL,
    last_used_at TEXT
);
CREATE INDEX IF NOT EXISTS api_keys_by_affiliate ON api_keys (affiliate_id, id);
CREATE TABLE IF NOT EXISTS categories (id INTEGER PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS products (id INTEGER PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS promotions (id INTEGER PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS unique_claims (
    namespace TEXT NOT NULL,
    value TEXT NOT NULL,
    owner INTEGER NOT NULL,
    PRIMARY KEY (namespace, value)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS blog_profiles (id INTEGER PRIMARY KEY, affiliate_id INTEGER NOT NULL, body TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS blog_profiles_by_affiliate ON blog_profiles (affiliate_id, id);
CREATE TABLE IF NOT EXISTS blogs (id INTEGER PRIMARY KEY, affiliate_id INTEGER NOT NULL, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS webhooks (id INTEGER PRIMARY KEY, affiliate_id INTEGER NOT NULL, event TEXT NOT NULL, body TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS webhooks_by_affiliate ON webhooks (affiliate_id, id);
CREATE INDEX IF NOT EXISTS webhooks_by_event ON webhooks (event, id);
CREATE TABLE IF NOT EXISTS deliveries (
    webhook_id INTEGER NOT NULL,
    id TEXT NOT NULL,
    pending INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (webhook_id, id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS deliveries_pending ON deliveries (pending) WHERE pending = 1;
CREATE TABLE IF NOT EXISTS brands (id INTEGER PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS offers (id INTEGER PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS networks (id INTEGER PRIMARY KEY, token TEXT NOT NULL UNIQUE, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS campaigns (id INTEGER PRIMARY KEY, affiliate_id INTEGER NOT NULL, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS conversions (
    id INTEGER PRIMARY KEY,
    affiliate_id INTEGER NOT NULL,
    tenant_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS rewards_by_user ON conversions (affiliate_id, tenant_id, user_id);
CREATE INDEX IF NOT EXISTS conversions_queued ON conversions (id) WHERE json_extract(body, '$.status') = 'queued';
CREATE TABLE IF NOT EXISTS postings (conversion_id INTEGER NOT NULL, leg TEXT NOT NULL, body TEXT NOT NULL, PRIMARY KEY (conversion_id, leg)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS usage_rollups (
    affiliate_id INTEGER NOT NULL,
    resolution TEXT NOT NULL,
    period INTEGER NOT NULL,
    key_id INTEGER NOT NULL,
    route TEXT NOT NULL,
    status_class TEXT NOT NULL,
    requests INTEGER NOT NULL,
    rate_limited INTEGER NOT NULL,
    PRIMARY KEY (affiliate_id, resolution, period, key_id, route, status_class)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS campaign_clicks (
    affiliate_id INTEGER NOT NULL,
    campaign_id INTEGER NOT NULL,
    day TEXT NOT NULL,
    clicks INTEGER NOT NULL,
    PRIMARY KEY (affiliate_id, campaign_id, day)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS audit_log (seq INTEGER PRIMARY KEY, affiliate_id INTEGER NOT NULL, at INTEGER NOT NULL, expires_at INTEGER NOT NULL, body TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS audit_by_affiliate ON audit_log (affiliate_id, at);
CREATE INDEX IF NOT EXISTS audit_by_expiry ON audit_log (expires_at);
CREATE INDEX IF NOT EXISTS campaigns_by_affiliate ON campaigns (affiliate_id, id);
CREATE TABLE IF NOT EXISTS keyed_docs (kind TEXT NOT NULL, key TEXT NOT NULL, body TEXT NOT NULL, PRIMARY KEY (kind, key)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS click_subjects (
    click_id TEXT PRIMARY KEY,
    affiliate_id INTEGER NOT NULL,
    tenant_id TEXT NOT NULL,
    user_id TEXT,
    at INTEGER NOT NULL,
    personal INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS click_subjects_by_user ON click_subjects (affiliate_id, tenant_id, user_id);
CREATE INDEX IF NOT EXISTS click_subjects_personal ON click_subjects (at) WHERE personal = 1;
"#;

/// SQLite-backed [`Store`].
#[derive(Clone)]
pub struct EmbeddedStore {
    /// The one writer.
    conn: Arc<Mutex<Connection>>,
    /// Read-only connections serving pure reads.
    readers: r2d2::Pool<SqliteConnectionManager>,
}

/// The reader pool's size for `read_connections = 0`: one per core, at least 2.
pub fn default_read_connections() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()).max(2)
}

impl EmbeddedStore {
    /// Opens (creating when missing) `<data_dir>/hissaback.db` and its schema, with the
    /// default number of readers.
    pub async fn open(data_dir: &Path) -> anyhow::Result<Self> {
        Self::open_with(data_dir, 0).await
    }

    /// [`EmbeddedStore::open`] with `read_connections` read-only connections beside the
    /// writer (0: [`default_read_connections`]).
    pub async fn open_with(data_dir: &Path, read_connections: usize) -> anyhow::Result<Self> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| anyhow::anyhow!("cannot create data directory {}: {e}", data_dir.display()))?;
        let path = data_dir.join("hissaback.db");
        let readers = match read_connections {
            0 => default_read_connections(),
            n => n,
        };
        let readers = u32::try_from(readers).map_err(|_| anyhow::anyhow!("store.read_connections is too large: {readers}"))?;
        let (conn, readers) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            // The writer first: it turns WAL on and creates the schema the readers see.
            let conn = Connection::open(&path)?;
            hissaback_topics::bus::embedded::tune(&conn)?;
            conn.pragma_update(None, "journal_mode", "WAL")?;
            conn.pragma_update(None, "synchronous", "FULL")?;
            conn.pragma_update(None, "foreign_keys", "ON")?;
            conn.busy_timeout(BUSY_TIMEOUT)?;
            conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
            conn.execute_batch(SCHEMA)?;
            backfill_click_subjects(&conn)?;
            let manager = SqliteConnectionManager::file(&path)
                .with_flags(OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
                .with_init(|c| {
                    hissaback_topics::bus::embedded::tune(c)?;
                    c.busy_timeout(BUSY_TIMEOUT)?;
                    c.pragma_update(None, "query_only", true)?;
                    c.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
                    Ok(())
                });
            // Every reader is opened now and kept for the store's life: no reaping (it would
            // drop the statement caches) and no check on checkout (a local file does not
            // break the way a socket does).
            let readers = r2d2::Pool::builder()
                .max_size(readers)
                .min_idle(None)
                .max_lifetime(None)
                .idle_timeout(None)
                .test_on_check_out(false)
                .connection_timeout(BUSY_TIMEOUT)
                .build(manager)
                .map_err(|e| anyhow::anyhow!("cannot open the store's readers on {}: {e}", path.display()))?;
            Ok((conn, readers))
        })
        .await??;
        Ok(Self { conn: Arc::new(Mutex::new(conn)), readers })
    }

    /// The number of read-only connections.
    pub fn read_connections(&self) -> usize {
        self.readers.max_size() as usize
    }

    /// Runs `f` on the writer (writes, and reads that must share a write's transaction).
    async fn with<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let started = std::time::Instant::now();
            let result = f(&mut guard).map_err(sqlite_error);
            super::observe_store("embedded", started);
            result
        })
        .await
        .map_err(|e| StoreError::Other(e.into()))?
    }

    /// Runs the pure read `f` on a free reader: it never waits for the writer. Waits up to
    /// [`BUSY_TIMEOUT`] for a reader when all are busy, then reports the store unavailable.
    async fn read<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let readers = self.readers.clone();
        tokio::task::spawn_blocking(move || {
            let conn = readers.get().map_err(|e| StoreError::Unavailable(e.into()))?;
            let started = std::time::Instant::now();
            let result = f(&conn).map_err(sqlite_error);
            super::observe_store("embedded", started);
            // A reader goes back to the pool outside any transaction, so its next read starts
            // a fresh snapshot (the closures never open one; this only guards against it).
            if !conn.is_autocommit() {
                let _ = conn.execute_batch("ROLLBACK");
            }
            result
        })
        .await
        .map_err(|e| StoreError::Other(e.into()))?
    }
}

/// Tables that hold one JSON document per id (`id INTEGER PRIMARY KEY, body TEXT`).
#[derive(Clone, Copy)]
enum DocTable {
    Affiliates,
    Categories,
    Products,
    Promotions,
    Brands,
    Offers,
}

impl DocTable {
    fn name(self) -> &'static str {
        match self {
            DocTable::Affiliates => "affiliates",
            DocTable::Categories => "categories",
            DocTable::Products => "products",
            DocTable::Promotions => "promotions",
            DocTable::Brands => "brands",
            DocTable::Offers => "offers",
        }
    }
}

impl EmbeddedStore {
    async fn put_doc<T: serde::Serialize>(&self, table: DocTable, id: u64, doc: &T) -> StoreResult<()> {
        let body = to_json(doc);
        let sql = format!(
            "INSERT INTO {} (id, body) VALUES (?1, ?2) ON CONFLICT (id) DO UPDATE SET body = excluded.body",
            table.name()
        );
        self.with(move |c| c.prepare_cached(&sql)?.execute(params![id as i64, body]).map(|_| ()))
            .await
    }

    /// Writes `body` over row `id` of `table` only if the stored document is still at
    /// `read_version` (documents from before versions were kept count as 0): one statement on
    /// the one writer, so no write comes between the check and the write.
    async fn replace_doc(&self, table: &'static str, id: u64, read_version: u64, body: String) -> StoreResult<bool> {
        let sql = format!("UPDATE {table} SET body = ?1 WHERE id = ?2 AND coalesce(json_extract(body, '$.version'), 0) = ?3");
        let read_version = i64::try_from(read_version).map_err(|_| StoreError::Corrupt(format!("version {read_version} is too large")))?;
        self.with(move |c| c.prepare_cached(&sql)?.execute(params![body, id as i64, read_version]).map(|n| n == 1))
            .await
    }

    async fn get_doc<T: DeserializeOwned>(&self, table: DocTable, id: u64) -> StoreResult<Option<T>> {
        let sql = format!("SELECT body FROM {} WHERE id = ?1", table.name());
        let body: Option<String> = self
            .read(move |c| c.prepare_cached(&sql)?.query_row(params![id as i64], |r| r.get(0)).optional())
            .await?;
        body.map(|b| from_json(&b)).transpose()
    }

    async fn all_docs<T: DeserializeOwned>(&self, table: DocTable) -> StoreResult<Vec<T>> {
        let sql = format!("SELECT body FROM {} ORDER BY id", table.name());
        let bodies: Vec<String> = self
            .read(move |c| {
                let mut stmt = c.prepare_cached(&sql)?;
                let rows = stmt.query_map([], |r| r.get(0))?;
                rows.collect()
            })
            .await?;
        bodies.iter().map(|b| from_json(b)).collect()
    }
}

/// A conversion as its row: (id, affiliate, tenant, user, body).
type ConversionRow = (i64, i64, String, String, String);

fn conversion_row(c: &ConversionRecord) -> ConversionRow {
    (c.id as i64, c.affiliate_id as i64, c.tenant_id.clone(), c.user_id.clone(), to_json(c))
}

fn write_conversion(conn: &Connection, (id, affiliate, tenant, user, body): &ConversionRow) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO conversions (id, affiliate_id, tenant_id, user_id, body) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (id) DO UPDATE SET affiliate_id = excluded.affiliate_id, tenant_id = excluded.tenant_id,
             user_id = excluded.user_id, body = excluded.body",
    )?
    .execute(params![id, affiliate, tenant, user, body])
    .map(|_| ())
}

/// Upserts a click's document.
/// `PRAGMA user_version` once [`backfill_click_subjects`] ran.
const CLICK_SUBJECTS_BACKFILLED: i64 = 1;

/// Indexes in `click_subjects` the clicks stored before that table existed, so export,
/// erasure and the retention sweep find them too. Runs once per data directory (marked in
/// `user_version`), in one transaction, from the clicks' own documents.
fn backfill_click_subjects(conn: &Connection) -> rusqlite::Result<usize> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version >= CLICK_SUBJECTS_BACKFILLED {
        return Ok(0);
    }
    let tx = conn.unchecked_transaction()?;
    let n = tx.execute(
        "INSERT OR IGNORE INTO click_subjects (click_id, affiliate_id, tenant_id, user_id, at, personal)
         SELECT key, json_extract(body, '$.affiliate_id'), coalesce(json_extract(body, '$.tenant_id'), ''),
                json_extract(body, '$.user_id'),
                coalesce(CAST(unixepoch(json_extract(body, '$.at'), 'subsec') * 1000 AS INTEGER), 0),
                json_extract(body, '$.ip') IS NOT NULL OR json_extract(body, '$.user_agent') IS NOT NULL
         FROM keyed_docs WHERE kind = 'click' AND json_valid(body) AND json_extract(body, '$.affiliate_id') IS NOT NULL",
        [],
    )?;
    tx.pragma_update(None, "user_version", CLICK_SUBJECTS_BACKFILLED)?;
    tx.commit()?;
    if n > 0 {
        tracing::info!(clicks = n, "clicks stored before the click_subjects index were indexed");
    }
    Ok(n)
}

fn write_click(conn: &Connection, click_id: &str, body: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO keyed_docs (kind, key, body) VALUES ('click', ?1, ?2)
         ON CONFLICT (kind, key) DO UPDATE SET body = excluded.body",
    )?
    .execute(params![click_id, body])
    .map(|_| ())
}

/// Writes postings by (conversion, leg): a replayed leg replaces itself.
fn write_postings(conn: &Connection, rows: &[(i64, String, String)]) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO postings (conversion_id, leg, body) VALUES (?1, ?2, ?3)
         ON CONFLICT (conversion_id, leg) DO UPDATE SET body = excluded.body",
    )?;
    for (id, leg, body) in rows {
        stmt.execute(params![id, leg, body])?;
    }
    Ok(())
}

fn sqlite_error(e: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode;
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked | ErrorCode::CannotOpen | ErrorCode::DiskFull) => {
            StoreError::Unavailable(e.into())
        }
        _ => StoreError::Other(e.into()),
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("records serialise to JSON")
}

fn from_json<T: DeserializeOwned>(body: &str) -> StoreResult<T> {
    serde_json::from_str(body).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn key_from_row(body: String, last_used: Option<String>) -> StoreResult<ApiKeyRecord> {
    let mut key: ApiKeyRecord = from_json(&body)?;
    if let Some(t) = last_used {
        key.last_used_at = Some(
            chrono::DateTime::parse_from_rfc3339(&t)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?
                .to_utc(),
        );
    }
    Ok(key)
}

#[async_trait]
impl Store for EmbeddedStore {
    fn backend(&self) -> &'static str {
        "embedded"
    }

    async fn ping(&self) -> StoreResult<()> {
        self.read(|c| c.query_row("SELECT 1", [], |_| Ok(()))).await
    }

    async fn next_id(&self, seq: Sequence) -> StoreResult<u64> {
        let name = seq.as_str();
        self.with(move |c| {
            c.query_row(
                "INSERT INTO sequences (name, next) VALUES (?1, 2)
                 ON CONFLICT (name) DO UPDATE SET next = next + 1
                 RETURNING next - 1",
                params![name],
                |r| r.get::<_, i64>(0),
            )
            .map(|v| v as u64)
        })
        .await
    }

    async fn get_setting(&self, name: &str) -> StoreResult<Option<String>> {
        let name = name.to_string();
        self.read(move |c| {
            c.prepare_cached("SELECT value FROM settings WHERE name = ?1")?.query_row(params![name], |r| r.get(0)).optional()
        })
        .await
    }

    async fn put_setting(&self, name: &str, value: &str) -> StoreResult<()> {
        let (name, value) = (name.to_string(), value.to_string());
        self.with(move |c| {
            c.execute(
                "INSERT INTO settings (name, value) VALUES (?1, ?2)
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                params![name, value],
            )
            .map(|_| ())
        })
        .await
    }

    async fn put_affiliate(&self, affiliate: &AffiliateRecord) -> StoreResult<()> {
        self.put_doc(DocTable::Affiliates, affiliate.id, affiliate).await
    }

    async fn replace_affiliate(&self, affiliate: &AffiliateRecord) -> StoreResult<bool> {
        let next = AffiliateRecord { version: affiliate.version + 1, ..affiliate.clone() };
        self.replace_doc(DocTable::Affiliates.name(), affiliate.id, affiliate.version, to_json(&next)).await
    }

    async fn get_affiliate(&self, id: u64) -> StoreResult<Option<AffiliateRecord>> {
        self.get_doc(DocTable::Affiliates, id).await
    }

    async fn put_key(&self, key: &ApiKeyRecord) -> StoreResult<()> {
        let (id, affiliate, hash) = (key.id as i64, key.affiliate_id as i64, key.hash.clone());
        // last_used_at lives in its own column, written only by record_last_used.
        let mut doc = key.clone();
        doc.last_used_at = None;
        let body = to_json(&doc);
        self.with(move |c| {
            c.execute(
                "INSERT INTO api_keys (id, affiliate_id, hash, body) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (id) DO UPDATE SET affiliate_id = excluded.affiliate_id,
                     hash = excluded.hash, body = excluded.body",
                params![id, affiliate, hash, body],
            )
            .map(|_| ())
        })
        .await
    }

    async fn replace_key(&self, key: &ApiKeyRecord) -> StoreResult<bool> {
        // last_used_at stays in its own column, as in put_key.
        let next = ApiKeyRecord { version: key.version + 1, last_used_at: None, ..key.clone() };
        self.replace_doc("api_keys", key.id, key.version, to_json(&next)).await
    }

    async fn key_by_hash(&self, hash: &str) -> StoreResult<Option<ApiKeyRecord>> {
        let hash = hash.to_string();
        let row: Option<(String, Option<String>)> = self
            .read(move |c| {
                c.prepare_cached("SELECT body, last_used_at FROM api_keys WHERE hash = ?1")?
                    .query_row(params![hash], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()
            })
            .await?;
        row.map(|(b, t)| key_from_row(b, t)).transpose()
    }

    async fn key_by_id(&self, id: u64) -> StoreResult<Option<ApiKeyRecord>> {
        let row: Option<(String, Option<String>)> = self
            .read(move |c| {
                c.prepare_cached("SELECT body, last_used_at FROM api_keys WHERE id = ?1")?
                    .query_row(params![id as i64], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()
            })
            .await?;
        row.map(|(b, t)| key_from_row(b, t)).transpose()
    }

    async fn keys_of_affiliate(&self, affiliate_id: u64) -> StoreResult<Vec<ApiKeyRecord>> {
        let rows: Vec<(String, Option<String>)> = self
            .read(move |c| {
                let mut stmt =
                    c.prepare_cached("SELECT body, last_used_at FROM api_keys WHERE affiliate_id = ?1 ORDER BY id")?;
                let rows = stmt.query_map(params![affiliate_id as i64], |r| Ok((r.get(0)?, r.get(1)?)))?;
                rows.collect()
            })
            .await?;
        rows.into_iter().map(|(b, t)| key_from_row(b, t)).collect()
    }

    async fn record_last_used(&self, batch: &[KeyLastUsed]) -> StoreResult<()> {
        let batch: Vec<(i64, String)> = batch
            .iter()
            .map(|u| (u.key_id as i64, u.at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)))
            .collect();
        self.with(move |c| {
            let tx = c.transaction()?;
            {
                // Fixed-width RFC 3339 UTC strings compare in time order.
                let mut stmt = tx.prepare_cached(
                    "UPDATE api_keys SET last_used_at = ?2
                     WHERE id = ?1 AND (last_used_at IS NULL OR last_used_at < ?2)",
                )?;
                for (id, at) in &batch {
                    stmt.execute(params![id, at])?;
                }
            }
            tx.commit()
        })
        .await
    }

    async fn put_category(&self, category: &CategoryRecord) -> StoreResult<()> {
        self.put_doc(DocTable::Categories, category.id, category).await
    }

    async fn replace_category(&self, category: &CategoryRecord) -> StoreResult<bool> {
        let next = CategoryRecord { version: category.version + 1, ..category.clone() };
        self.replace_doc(DocTable::Categories.name(), category.id, category.version, to_json(&next)).await
    }

    async fn get_category(&self, id: u64) -> StoreResult<Option<CategoryRecord>> {
        self.get_doc(DocTable::Categories, id).await
    }

    async fn categories(&self) -> StoreResult<Vec<CategoryRecord>> {
        self.all_docs(DocTable::Categories).await
    }

    async fn claim_unique(&self, namespace: &str, value: &str, owner: u64) -> StoreResult<bool> {
        let (ns, v) = (namespace.to_string(), value.to_string());
        self.with(move |c| {
            c.execute(
                "INSERT INTO unique_claims (namespace, value, owner) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
                params![ns, v, owner as i64],
            )?;
            let holder: i64 = c.query_row(
                "SELECT owner FROM unique_claims WHERE namespace = ?1 AND value = ?2",
                params![ns, v],
                |r| r.get(0),
            )?;
            Ok(holder == owner as i64)
        })
        .await
    }

    async fn release_unique(&self, namespace: &str, value: &str, owner: u64) -> StoreResult<()> {
        let (ns, v) = (namespace.to_string(), value.to_string());
        self.with(move |c| {
            c.execute("DELETE FROM unique_claims WHERE namespace = ?1 AND value = ?2 AND owner = ?3", params![ns, v, owner as i64]).map(|_| ())
        })
        .await
    }

    async fn put_product(&self, product: &ProductRecord) -> StoreResult<()> {
        self.put_doc(DocTable::Products, product.id, product).await
    }

    async fn replace_product(&self, product: &ProductRecord) -> StoreResult<bool> {
        let next = ProductRecord { version: product.version + 1, ..product.clone() };
        self.replace_doc(DocTable::Products.name(), product.id, product.version, to_json(&next)).await
    }

    async fn get_product(&self, id: u64) -> StoreResult<Option<ProductRecord>> {
        self.get_doc(DocTable::Products, id).await
    }

    async fn products(&self) -> StoreResult<Vec<ProductRecord>> {
        self.all_docs(DocTable::Products).await
    }

    async fn put_promotion(&self, promotion: &PromotionRecord) -> StoreResult<()> {
        self.put_doc(DocTable::Promotions, promotion.id, promotion).await
    }

    async fn promotions(&self) -> StoreResult<Vec<PromotionRecord>> {
        self.all_docs(DocTable::Promotions).await
    }

    async fn put_blog_profile(&self, profile: &BlogProfileRecord) -> StoreResult<()> {
        self.put_owned("blog_profiles", profile.id, profile.affiliate_id, profile).await
    }

    async fn blog_profiles(&self, affiliate_id: u64) -> StoreResult<Vec<BlogProfileRecord>> {
        self.owned_docs("blog_profiles", affiliate_id).await
    }

    async fn put_blog(&self, blog: &BlogRecord) -> StoreResult<()> {
        self.put_owned("blogs", blog.id, blog.affiliate_id, blog).await
    }

    async fn get_blog(&self, affiliate_id: u64, id: u64) -> StoreResult<Option<BlogRecord>> {
        Ok(self.get_blog_by_id(id).await?.filter(|b| b.affiliate_id == affiliate_id))
    }

    async fn get_blog_by_id(&self, id: u64) -> StoreResult<Option<BlogRecord>> {
        let body: Option<String> = self
            .read(move |c| {
                c.prepare_cached("SELECT body FROM blogs WHERE id = ?1")?.query_row(params![id as i64], |r| r.get(0)).optional()
            })
            .await?;
        body.map(|b| from_json(&b)).transpose()
    }

    async fn put_webhook(&self, webhook: &WebhookRecord) -> StoreResult<()> {
        let (id, affiliate, event, body) = (webhook.id as i64, webhook.affiliate_id as i64, webhook.event.clone(), to_json(webhook));
        self.with(move |c| {
            c.prepare_cached(
                "INSERT INTO webhooks (id, affiliate_id, event, body) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (id) DO UPDATE SET affiliate_id = excluded.affiliate_id, event = excluded.event, body = excluded.body",
            )?
            .execute(params![id, affiliate, event, body])
            .map(|_| ())
        })
        .await
    }

    async fn get_webhook(&self, affiliate_id: u64, id: u64) -> StoreResult<Option<WebhookRecord>> {
        let body: Option<String> = self
            .read(move |c| {
                c.prepare_cached("SELECT body FROM webhooks WHERE id = ?1 AND affiliate_id = ?2")?
                    .query_row(params![id as i64, affiliate_id as i64], |r| r.get(0))
                    .optional()
            })
            .await?;
        body.map(|b| from_json(&b)).transpose()
    }

    async fn webhooks_of(&self, affiliate_id: u64) -> StoreResult<Vec<WebhookRecord>> {
        self.owned_docs("webhooks", affiliate_id).await
    }

    async fn webhooks_for_event(&self, event: &str) -> StoreResult<Vec<WebhookRecord>> {
        let event = event.to_string();
        let bodies: Vec<String> = self
            .read(move |c| {
                let mut stmt = c.prepare_cached("SELECT body FROM webhooks WHERE event = ?1 ORDER BY id")?;
                let rows = stmt.query_map(params![event], |r| r.get(0))?;
                rows.collect()
            })
            .await?;
        bodies.iter().map(|b| from_json(b)).collect()
    }

    async fn delete_webhook(&self, webhook: &WebhookRecord) -> StoreResult<()> {
        let id = webhook.id as i64;
        self.with(move |c| c.execute("DELETE FROM webhooks WHERE id = ?1", params![id]).map(|_| ())).await
    }

    async fn put_delivery(&self, delivery: &DeliveryRecord) -> StoreResult<()> {
        let (webhook, id, pending, body) = (
            delivery.webhook_id as i64,
            delivery.id.clone(),
            i64::from(delivery.state == DeliveryState::Pending),
            to_json(delivery),
        );
        self.with(move |c| {
            c.prepare_cached(
                "INSERT INTO deliveries (webhook_id, id, pending, body) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (webhook_id, id) DO UPDATE SET pending = excluded.pending, body = excluded.body",
            )?
            .execute(params![webhook, id, pending, body])
            .map(|_| ())
        })
        .await
    }

    async fn get_delivery(&self, webhook_id: u64, id: &str) -> StoreResult<Option<DeliveryRecord>> {
        let id = id.to_string();
        let body: Option<String> = self
            .read(move |c| {
                c.prepare_cached("SELECT body FROM deliveries WHERE webhook_id = ?1 AND id = ?2")?
                    .query_row(params![webhook_id as i64, id], |r| r.get(0))
                    .optional()
            })
            .await?;
        body.map(|b| from_json(&b)).transpose()
    }

    async fn deliveries_of(&self, webhook_id: u64, limit: usize) -> StoreResult<Vec<DeliveryRecord>> {
        let bodies: Vec<String> = self
            .read(move |c| {
                let mut stmt = c.prepare_cached("SELECT body FROM deliveries WHERE webhook_id = ?1 ORDER BY id DESC LIMIT ?2")?;
                let rows = stmt.query_map(params![webhook_id as i64, limit as i64], |r| r.get(0))?;
                rows.collect()
            })
            .await?;
        bodies.iter().map(|b| from_json(b)).collect()
    }

    async fn pending_deliveries(&self) -> StoreResult<Vec<DeliveryRecord>> {
        let bodies: Vec<String> = self
            .read(|c| {
                let mut stmt = c.prepare_cached("SELECT body FROM deliveries WHERE pending = 1")?;
                let rows = stmt.query_map([], |r| r.get(0))?;
                rows.collect()
            })
            .await?;
        bodies.iter().map(|b| from_json(b)).collect()
    }

    async fn put_brand(&self, brand: &BrandRecord) -> StoreResult<()> {
        self.put_doc(DocTable::Brands, brand.id, brand).await
    }

    async fn brands(&self) -> StoreResult<Vec<BrandRecord>> {
        self.all_docs(DocTable::Brands).await
    }

    async fn put_offer(&self, offer: &OfferRecord) -> StoreResult<()> {
        self.put_doc(DocTable::Offers, offer.id, offer).await
    }

    async fn offers(&self) -> StoreResult<Vec<OfferRecord>> {
        self.all_docs(DocTable::Offers).await
    }

    async fn put_network(&self, network: &NetworkRecord) -> StoreResult<()> {
        let (id, token, body) = (network.id as i64, network.postback_token.clone(), to_json(network));
        self.with(move |c| {
            c.prepare_cached(
                "INSERT INTO networks (id, token, body) VALUES (?1, ?2, ?3)
                 ON CONFLICT (id) DO UPDATE SET token = excluded.token, body = excluded.body",
            )?
            .execute(params![id, token, body])
            .map(|_| ())
        })
        .await
    }

    async fn network_by_token(&self, token: &str) -> StoreResult<Option<NetworkRecord>> {
        let token = token.to_string();
        let body: Option<String> = self
            .read(move |c| c.prepare_cached("SELECT body FROM networks WHERE token = ?1")?.query_row(params![token], |r| r.get(0)).optional())
            .await?;
        body.map(|b| from_json(&b)).transpose()
    }

    async fn get_network(&self, id: u64) -> StoreResult<Option<NetworkRecord>> {
        let body: Option<String> = self
            .read(move |c| c.prepare_cached("SELECT body FROM networks WHERE id = ?1")?.query_row(params![id as i64], |r| r.get(0)).optional())
            .await?;
        body.map(|b| from_json(&b)).transpose()
    }

    async fn put_campaign(&self, campaign: &CampaignRecord) -> StoreResult<()> {
        self.put_owned("campaigns", campaign.id, campaign.affiliate_id, campaign).await
    }

    async fn get_campaign(&self, affiliate_id: u64, id: u64) -> StoreResult<Option<CampaignRecord>> {
        let body: Option<String> = self
            .read(move |c| {
                c.prepare_cached("SELECT body FROM campaigns WHERE id = ?1 AND affiliate_id = ?2")?
                    .query_row(params![id as i64, affiliate_id as i64], |r| r.get(0))
                    .optional()
            })
            .await?;
        body.map(|b| from_json(&b)).transpose()
    }

    async fn put_link(&self, link: &LinkRecord) -> StoreResult<()> {
        self.put_keyed("link", &link.code, link).await
    }

    async fn get_link(&self, code: &str) -> StoreResult<Option<LinkRecord>> {
        self.get_keyed("link", code).await
    }

    async fn put_click(&self, click: &ClickRecord) -> StoreResult<()> {
        // The click and its row in `click_subjects` (who it is about, and whether it still
        // holds an IP or user agent): what export, erasure and the retention sweep look up.
        let body = to_json(click);
        let c = click.clone();
        self.with(move |conn| {
            let tx = conn.transaction()?;
            write_click(&tx, &c.click_id, &body)?;
            tx.prepare_cached(
                "INSERT INTO click_subjects (click_id, affiliate_id, tenant_id, user_id, at, personal) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (click_id) DO UPDATE SET affiliate_id = excluded.affiliate_id, tenant_id = excluded.tenant_id,
                     user_id = excluded.user_id, at = excluded.at, personal = excluded.personal",
            )?
            .execute(params![
                c.click_id,
                c.affiliate_id as i64,
                c.tenant_id,
                c.user_id,
                c.at.timestamp_millis(),
                i64::from(c.ip.is_some() || c.user_agent.is_some())
            ])?;
            tx.commit()
        })
        .await
    }

    async fn clicks_of_user(&self, affiliate_id: u64, tenant_id: &str, user_id: &str) -> StoreResult<Vec<ClickRecord>> {
        let (tenant, user) = (tenant_id.to_string(), user_id.to_string());
        let bodies: Vec<String> = self
            .read(move |c| {
                let mut stmt = c.prepare_cached(
                    "SELECT d.body FROM click_subjects s JOIN keyed_docs d ON d.kind = 'click' AND d.key = s.click_id
                     WHERE s.affiliate_id = ?1 AND s.tenant_id = ?2 AND s.user_id = ?3 ORDER BY s.click_id",
                )?;
                let rows = stmt.query_map(params![affiliate_id as i64, tenant, user], |r| r.get(0))?;
                rows.collect()
            })
            .await?;
        bodies.iter().map(|b| from_json(b)).collect()
    }

    async fn erase_clicks_of_user(&self, affiliate_id: u64, tenant_id: &str, user_id: &str, pseudonym: &str) -> StoreResult<usize> {
        let (tenant, user, pseudonym) = (tenant_id.to_string(), user_id.to_string(), pseudonym.to_string());
        self.with(move |conn| {
            let tx = conn.transaction()?;
            let bodies: Vec<(String, String)> = {
                let mut stmt = tx.prepare_cached(
                    "SELECT s.click_id, d.body FROM click_subjects s JOIN keyed_docs d ON d.kind = 'click' AND d.key = s.click_id
                     WHERE s.affiliate_id = ?1 AND s.tenant_id = ?2 AND s.user_id = ?3",
                )?;
                let rows = stmt.query_map(params![affiliate_id as i64, tenant, user], |r| Ok((r.get(0)?, r.get(1)?)))?;
                rows.collect::<rusqlite::Result<_>>()?
            };
            for (id, body) in &bodies {
                let mut click: ClickRecord = serde_json::from_str(body).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
                click.user_id = Some(pseudonym.clone());
                click.ip = None;
                click.user_agent = None;
                write_click(&tx, id, &to_json(&click))?;
                tx.prepare_cached("UPDATE click_subjects SET user_id = ?2, personal = 0 WHERE click_id = ?1")?.execute(params![id, pseudonym])?;
            }
            tx.commit()?;
            Ok(bodies.len())
        })
        .await
    }

    async fn expire_click_personal_data(&self, before: DateTime<Utc>, limit: usize) -> StoreResult<usize> {
        let before = before.timestamp_millis();
        self.with(move |conn| {
            let tx = conn.transaction()?;
            let bodies: Vec<(String, Option<String>)> = {
                let mut stmt = tx.prepare_cached(
                    "SELECT s.click_id, d.body FROM click_subjects s LEFT JOIN keyed_docs d ON d.kind = 'click' AND d.key = s.click_id
                     WHERE s.personal = 1 AND s.at < ?1 LIMIT ?2",
                )?;
                let rows = stmt.query_map(params![before, limit as i64], |r| Ok((r.get(0)?, r.get(1)?)))?;
                rows.collect::<rusqlite::Result<_>>()?
            };
            for (id, body) in &bodies {
                if let Some(body) = body {
                    let click: ClickRecord = serde_json::from_str(body).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
                    write_click(&tx, id, &to_json(&click.without_personal_data()))?;
                }
                tx.prepare_cached("UPDATE click_subjects SET personal = 0 WHERE click_id = ?1")?.execute(params![id])?;
            }
            tx.commit()?;
            Ok(bodies.len())
        })
        .await
    }

    async fn expire_deliveries(&self, before: DateTime<Utc>, limit: usize) -> StoreResult<usize> {
        // Delivery ids are `msg_<13-digit queued-at ms>_<hash>`, ordered by time as text: a
        // delivery last attempted before `before` was queued before it too. `updated_at` is
        // RFC 3339 in UTC, which orders as text to the second.
        let bound = format!("msg_{:013}", before.timestamp_millis().max(0));
        let at = before.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        self.with(move |conn| {
            conn.prepare_cached(
                "DELETE FROM deliveries WHERE (webhook_id, id) IN
                   (SELECT webhook_id, id FROM deliveries
                     WHERE pending = 0 AND id < ?1 AND json_extract(body, '$.updated_at') < ?3 LIMIT ?2)",
            )?
            .execute(params![bound, limit as i64, at])
        })
        .await
    }

    async fn put_erasure(&self, pseudonym: &str, at: DateTime<Utc>) -> StoreResult<()> {
        self.put_keyed("erasure", pseudonym, &serde_json::json!({ "at": at })).await
    }

    async fn erased(&self, pseudonyms: &[String]) -> StoreResult<Vec<String>> {
        let wanted = pseudonyms.to_vec();
        self.read(move |c| {
            let mut stmt = c.prepare_cached("SELECT 1 FROM keyed_docs WHERE kind = 'erasure' AND key = ?1")?;
            let mut out = Vec::new();
            for p in wanted {
                if stmt.exists(params![p])? {
                    out.push(p);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn forget_user_index(&self, _affiliate_id: u64, _tenant_id: &str, _user_id: &str) -> StoreResult<()> {
        Ok(())
    }

    async fn get_click(&self, click_id: &str) -> StoreResult<Option<ClickRecord>> {
        self.get_keyed("click", click_id).await
    }

    async fn put_conversion(&self, c: &ConversionRecord) -> StoreResult<()> {
        let row = conversion_row(c);
        self.with(move |conn| write_conversion(conn, &row)).await
    }

    async fn get_conversions(&self, ids: &[u64]) -> StoreResult<Vec<ConversionRecord>> {
        let ids: Vec<i64> = ids.iter().map(|i| *i as i64).collect();
        let bodies: Vec<String> = self
            .read(move |c| {
                let mut stmt = c.prepare_cached("SELECT body FROM conversions WHERE id = ?1")?;
                let mut out = Vec::with_capacity(ids.len());
                for id in ids {
                    if let Some(body) = stmt.query_row(params![id], |r| r.get(0)).optional()? {
                        out.push(body);
                    }
                }
                Ok(out)
            })
            .await?;
        bodies.iter().map(|b| from_json(b)).collect()
    }

    async fn write_ledger_batch(&self, postings: &[PostingRecord], conversions: &[ConversionRecord]) -> StoreResult<()> {
        let legs: Vec<(i64, String, String)> = postings.iter().map(|p| (p.conversion_id as i64, p.leg.clone(), to_json(p))).collect();
        let rows: Vec<ConversionRow> = conversions.iter().map(conversion_row).collect();
        self.with(move |c| {
            let tx = c.transaction()?;
            write_postings(&tx, &legs)?;
            for row in &rows {
                write_conversion(&tx, row)?;
            }
            tx.commit()
        })
        .await
    }

    async fn get_conversion(&self, id: u64) -> StoreResult<Option<ConversionRecord>> {
        let body: Option<String> = self
            .read(move |c| c.prepare_cached("SELECT body FROM conversions WHERE id = ?1")?.query_row(params![id as i64], |r| r.get(0)).optional())
            .await?;
        body.map(|b| from_json(&b)).transpose()
    }

    async fn queued_conversions(&self) -> StoreResult<Vec<ConversionRecord>> {
        let bodies: Vec<String> = self
            .read(|c| {
                let mut stmt = c.prepare_cached("SELECT body FROM conversions WHERE json_extract(body, '$.status') = 'queued' ORDER BY id")?;
                let rows = stmt.query_map([], |r| r.get(0))?;
                rows.collect()
            })
            .await?;
        bodies.iter().map(|b| from_json(b)).collect()
    }

    async fn rewards_of_user(&self, affiliate_id: u64, tenant_id: &str, user_id: &str) -> StoreResult<Vec<ConversionRecord>> {
        let (tenant, user) = (tenant_id.to_string(), user_id.to_string());
        let bodies: Vec<String> = self
            .read(move |c| {
                let mut stmt = c.prepare_cached("SELECT body FROM conversions WHERE affiliate_id = ?1 AND tenant_id = ?2 AND user_id = ?3 ORDER BY id")?;
                let rows = stmt.query_map(params![affiliate_id as i64, tenant, user], |r| r.get(0))?;
                rows.collect()
            })
            .await?;
        bodies.iter().map(|b| from_json(b)).collect()
    }

    async fn conversions(&self) -> StoreResult<Vec<ConversionRecord>> {
        let bodies: Vec<String> = self
            .read(|c| {
                let mut stmt = c.prepare_cached("SELECT body FROM conversions ORDER BY id")?;
                let rows = stmt.query_map([], |r| r.get(0))?;
                rows.collect()
            })
            .await?;
        bodies.iter().map(|b| from_json(b)).collect()
    }

    async fn put_postings(&self, postings: &[PostingRecord]) -> StoreResult<()> {
        let rows: Vec<(i64, String, String)> = postings.iter().map(|p| (p.conversion_id as i64, p.leg.clone(), to_json(p))).collect();
        self.with(move |c| {
            let tx = c.transaction()?;
            write_postings(&tx, &rows)?;
            tx.commit()
        })
        .await
    }

    async fn postings_of(&self, conversion_id: u64) -> StoreResult<Vec<PostingRecord>> {
        let bodies: Vec<String> = self
            .read(move |c| {
                let mut stmt = c.prepare_cached("SELECT body FROM postings WHERE conversion_id = ?1 ORDER BY leg")?;
                let rows = stmt.query_map(params![conversion_id as i64], |r| r.get(0))?;
                rows.collect()
            })
            .await?;
        bodies.iter().map(|b| from_json(b)).collect()
    }

    async fn campaigns_of(&self, affiliate_id: u64) -> StoreResult<Vec<CampaignRecord>> {
        self.owned_docs("campaigns", affiliate_id).await
    }

    async fn conversions_of_affiliate(&self, affiliate_id: u64) -> StoreResult<Vec<ConversionRecord>> {
        let bodies: Vec<String> = self
            .read(move |c| {
                let mut stmt = c.prepare_cached("SELECT body FROM conversions WHERE affiliate_id = ?1")?;
                let rows = stmt.query_map(params![affiliate_id as i64], |r| r.get(0))?;
                rows.collect()
            })
            .await?;
        let mut out: Vec<ConversionRecord> = bodies.iter().map(|b| from_json(b)).collect::<StoreResult<_>>()?;
        out.sort_by_key(|c| (c.campaign_id, c.id));
        Ok(out)
    }

    async fn add_usage(&self, batch: &[(UsageCell, UsageCounts)]) -> StoreResult<()> {
        let rows: Vec<_> = super::usage_rollups(batch)
            .into_iter()
            .map(|(r, c, n)| (c.affiliate_id as i64, r.name(), c.period.timestamp(), c.key_id as i64, c.route, c.status_class, n.requests as i64, n.rate_limited as i64))
            .collect();
        self.with(move |conn| {
            let tx = conn.transaction()?;
            {
                let mut stmt = tx.prepare_cached(
                    "INSERT INTO usage_rollups (affiliate_id, resolution, period, key_id, route, status_class, requests, rate_limited)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                     ON CONFLICT DO UPDATE SET requests = requests + excluded.requests, rate_limited = rate_limited + excluded.rate_limited",
                )?;
                for r in &rows {
                    stmt.execute(params![r.0, r.1, r.2, r.3, r.4, r.5, r.6, r.7])?;
                }
            }
            tx.commit()
        })
        .await
    }

    async fn usage_of(
        &self,
        affiliate_id: u64,
        resolution: UsageResolution,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> StoreResult<Vec<(UsageCell, UsageCounts)>> {
        let rows: Vec<(i64, i64, String, String, i64, i64)> = self
            .read(move |c| {
                let mut stmt = c.prepare_cached(
                    "SELECT period, key_id, route, status_class, requests, rate_limited FROM usage_rollups
                     WHERE affiliate_id = ?1 AND resolution = ?2 AND period >= ?3 AND period < ?4
                     ORDER BY period, key_id, route, status_class",
                )?;
                let rows = stmt.query_map(params![affiliate_id as i64, resolution.name(), from.timestamp(), to.timestamp()], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
                })?;
                rows.collect()
            })
            .await?;
        rows.into_iter()
            .map(|(period, key_id, route, status_class, requests, rate_limited)| {
                let period = DateTime::from_timestamp(period, 0).ok_or_else(|| StoreError::Corrupt(format!("usage period {period}")))?;
                Ok((
                    UsageCell { affiliate_id, period, key_id: key_id as u64, route, status_class },
                    UsageCounts { requests: requests as u64, rate_limited: rate_limited as u64 },
                ))
            })
            .collect()
    }

    async fn add_clicks(&self, batch: &[(ClickCell, u64)]) -> StoreResult<()> {
        let rows: Vec<_> = batch.iter().map(|(c, n)| (c.affiliate_id as i64, c.campaign_id as i64, c.day.to_string(), *n as i64)).collect();
        self.with(move |conn| {
            let tx = conn.transaction()?;
            {
                let mut stmt = tx.prepare_cached(
                    "INSERT INTO campaign_clicks (affiliate_id, campaign_id, day, clicks) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT DO UPDATE SET clicks = clicks + excluded.clicks",
                )?;
                for r in &rows {
                    stmt.execute(params![r.0, r.1, r.2, r.3])?;
                }
            }
            tx.commit()
        })
        .await
    }

    async fn clicks_of(&self, affiliate_id: u64) -> StoreResult<Vec<(ClickCell, u64)>> {
        let rows: Vec<(i64, String, i64)> = self
            .read(move |c| {
                let mut stmt = c.prepare_cached("SELECT campaign_id, day, clicks FROM campaign_clicks WHERE affiliate_id = ?1 ORDER BY campaign_id, day")?;
                let rows = stmt.query_map(params![affiliate_id as i64], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
                rows.collect()
            })
            .await?;
        rows.into_iter()
            .map(|(campaign_id, day, clicks)| {
                let day = NaiveDate::parse_from_str(&day, "%Y-%m-%d").map_err(|e| StoreError::Corrupt(e.to_string()))?;
                Ok((ClickCell { affiliate_id, campaign_id: campaign_id as u64, day }, clicks as u64))
            })
            .collect()
    }

    async fn append_audit(&self, batch: &[AuditEntry], retention: std::time::Duration) -> StoreResult<()> {
        let now = Utc::now().timestamp();
        let keep = i64::try_from(retention.as_secs()).unwrap_or(i64::MAX / 2);
        let rows: Vec<_> = batch.iter().map(|e| (e.affiliate_id as i64, e.at.timestamp_micros(), now.saturating_add(keep), to_json(e))).collect();
        self.with(move |conn| {
            let tx = conn.transaction()?;
            {
                let mut stmt = tx.prepare_cached("INSERT INTO audit_log (affiliate_id, at, expires_at, body) VALUES (?1, ?2, ?3, ?4)")?;
                for r in &rows {
                    stmt.execute(params![r.0, r.1, r.2, r.3])?;
                }
                // The TTL of the embedded backend (counted from the write, as CQL does): expired rows
                // go with each batch.
                tx.prepare_cached("DELETE FROM audit_log WHERE expires_at <= ?1")?.execute(params![now])?;
            }
            tx.commit()
        })
        .await
    }

    async fn audit_of(&self, affiliate_id: u64, day: NaiveDate, limit: usize) -> StoreResult<Vec<AuditEntry>> {
        let start = day.and_hms_opt(0, 0, 0).map(|t| t.and_utc().timestamp_micros()).unwrap_or_default();
        let end = start + 86_400_000_000;
        let now = Utc::now().timestamp();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let bodies: Vec<String> = self
            .read(move |c| {
                let mut stmt = c.prepare_cached(
                    "SELECT body FROM audit_log WHERE affiliate_id = ?1 AND at >= ?2 AND at < ?3 AND expires_at > ?4
                     ORDER BY at DESC, seq DESC LIMIT ?5",
                )?;
                let rows = stmt.query_map(params![affiliate_id as i64, start, end, now, limit], |r| r.get(0))?;
                rows.collect()
            })
            .await?;
        bodies.iter().map(|b| from_json(b)).collect()
    }

    async fn get_deliveries(&self, keys: &[(u64, String)]) -> StoreResult<Vec<DeliveryRecord>> {
        let keys: Vec<(i64, String)> = keys.iter().map(|(w, id)| (*w as i64, id.clone())).collect();
        let bodies: Vec<String> = self
            .read(move |c| {
                let mut stmt = c.prepare_cached("SELECT body FROM deliveries WHERE webhook_id = ?1 AND id = ?2")?;
                let mut out = Vec::with_capacity(keys.len());
                for (webhook, id) in keys {
                    if let Some(body) = stmt.query_row(params![webhook, id], |r| r.get(0)).optional()? {
                        out.push(body);
                    }
                }
                Ok(out)
            })
            .await?;
        bodies.iter().map(|b| from_json(b)).collect()
    }

    async fn put_deliveries(&self, deliveries: &[DeliveryRecord]) -> StoreResult<()> {
        if deliveries.is_empty() {
            return Ok(());
        }
        // Serialised on the blocking thread: a copy is cheaper than the JSON for the caller
        // (the dispatcher's one thread).
        let deliveries = deliveries.to_vec();
        self.with(move |c| {
            let tx = c.transaction()?;
            {
                let mut stmt = tx.prepare_cached(
                    "INSERT INTO deliveries (webhook_id, id, pending, body) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (webhook_id, id) DO UPDATE SET pending = excluded.pending, body = excluded.body",
                )?;
                for d in &deliveries {
                    let pending = i64::from(d.state == DeliveryState::Pending);
                    stmt.execute(params![d.webhook_id as i64, d.id, pending, to_json(d)])?;
                }
            }
            tx.commit()
        })
        .await
    }

    async fn get_webhooks(&self, keys: &[(u64, u64)]) -> StoreResult<Vec<WebhookRecord>> {
        let keys: Vec<(i64, i64)> = keys.iter().map(|(a, w)| (*a as i64, *w as i64)).collect();
        let bodies: Vec<String> = self
            .read(move |c| {
                let mut stmt = c.prepare_cached("SELECT body FROM webhooks WHERE id = ?1 AND affiliate_id = ?2")?;
                let mut out = Vec::with_capacity(keys.len());
                for (affiliate, id) in keys {
                    if let Some(body) = stmt.query_row(params![id, affiliate], |r| r.get(0)).optional()? {
                        out.push(body);
                    }
                }
                Ok(out)
            })
            .await?;
        bodies.iter().map(|b| from_json(b)).collect()
    }

    async fn update_webhook(&self, affiliate_id: u64, id: u64, change: WebhookChange) -> StoreResult<Option<WebhookRecord>> {
        // Read, edit and write under one transaction (and the connection's lock): no other
        // write of the row comes in between.
        let (affiliate, id) = (affiliate_id as i64, id as i64);
        let body: Option<String> = self
            .with(move |c| {
                let tx = c.transaction()?;
                let Some(body) = tx
                    .prepare_cached("SELECT body FROM webhooks WHERE id = ?1 AND affiliate_id = ?2")?
                    .query_row(params![id, affiliate], |r| r.get::<_, String>(0))
                    .optional()?
                else {
                    return Ok(None);
                };
                let mut webhook: WebhookRecord = match serde_json::from_str(&body) {
                    Ok(w) => w,
                    Err(e) => return Err(rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))),
                };
                if !change(&mut webhook) {
                    return Ok(Some(body));
                }
                let body = to_json(&webhook);
                tx.prepare_cached("UPDATE webhooks SET body = ?1 WHERE id = ?2")?.execute(params![body, id])?;
                tx.commit()?;
                Ok(Some(body))
            })
            .await?;
        body.map(|b| from_json(&b)).transpose()
    }
}

impl EmbeddedStore {
    /// Upserts a document keyed by a string (links by code, clicks by click id).
    async fn put_keyed<T: serde::Serialize>(&self, kind: &'static str, key: &str, doc: &T) -> StoreResult<()> {
        let (key, body) = (key.to_string(), to_json(doc));
        self.with(move |c| {
            c.prepare_cached(
                "INSERT INTO keyed_docs (kind, key, body) VALUES (?1, ?2, ?3)
                 ON CONFLICT (kind, key) DO UPDATE SET body = excluded.body",
            )?
            .execute(params![kind, key, body])
            .map(|_| ())
        })
        .await
    }

    async fn get_keyed<T: DeserializeOwned>(&self, kind: &'static str, key: &str) -> StoreResult<Option<T>> {
        let key = key.to_string();
        let body: Option<String> = self
            .read(move |c| {
                c.prepare_cached("SELECT body FROM keyed_docs WHERE kind = ?1 AND key = ?2")?.query_row(params![kind, key], |r| r.get(0)).optional()
            })
            .await?;
        body.map(|b| from_json(&b)).transpose()
    }
}

impl EmbeddedStore {
    /// Upserts a document that belongs to an affiliate (`id, affiliate_id, body` tables).
    async fn put_owned<T: serde::Serialize>(&self, table: &'static str, id: u64, affiliate_id: u64, doc: &T) -> StoreResult<()> {
        let body = to_json(doc);
        let sql = format!(
            "INSERT INTO {table} (id, affiliate_id, body) VALUES (?1, ?2, ?3)
             ON CONFLICT (id) DO UPDATE SET affiliate_id = excluded.affiliate_id, body = excluded.body"
        );
        self.with(move |c| c.prepare_cached(&sql)?.execute(params![id as i64, affiliate_id as i64, body]).map(|_| ()))
            .await
    }

    /// An affiliate's documents of a table, ordered by id.
    async fn owned_docs<T: DeserializeOwned>(&self, table: &'static str, affiliate_id: u64) -> StoreResult<Vec<T>> {
        let sql = format!("SELECT body FROM {table} WHERE affiliate_id = ?1 ORDER BY id");
        let bodies: Vec<String> = self
            .read(move |c| {
                let mut stmt = c.prepare_cached(&sql)?;
                let rows = stmt.query_map(params![affiliate_id as i64], |r| r.get(0))?;
                rows.collect()
            })
            .await?;
        bodies.iter().map(|b| from_json(b)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::KeyKind;
    use crate::store::RatePlan;
    use std::time::Instant;

    /// A data directory written before `click_subjects` existed: its clicks are indexed at the
    /// next open, once, so export, erasure and the retention sweep see them.
    #[tokio::test]
    async fn clicks_stored_before_the_subject_index_are_backfilled_once() {
        let dir = tempfile::tempdir().unwrap();
        let old_at = Utc::now() - chrono::Duration::days(45);
        let click = |id: &str, user: Option<&str>, at: DateTime<Utc>| ClickRecord {
            click_id: id.into(),
            code: "c".into(),
            affiliate_id: 7,
            campaign_id: 1,
            offer_id: 2,
            tenant_id: "t".into(),
            user_id: user.map(Into::into),
            ip: Some("203.0.113.9".into()),
            user_agent: Some("UA".into()),
            at,
        };
        {
            let store = EmbeddedStore::open(dir.path()).await.unwrap();
            store.put_click(&click("new", Some("u1"), Utc::now())).await.unwrap();
        }
        {
            // What an older release left: click documents without index rows, version 0.
            let conn = Connection::open(dir.path().join("hissaback.db")).unwrap();
            for (id, user) in [("old-1", Some("u1")), ("old-2", None)] {
                write_click(&conn, id, &to_json(&click(id, user, old_at))).unwrap();
            }
            conn.execute("DELETE FROM click_subjects WHERE click_id LIKE 'old-%'", []).unwrap();
            conn.pragma_update(None, "user_version", 0).unwrap();
        }
        let store = EmbeddedStore::open(dir.path()).await.unwrap();
        let mut ids: Vec<String> = store.clicks_of_user(7, "t", "u1").await.unwrap().into_iter().map(|c| c.click_id).collect();
        ids.sort();
        assert_eq!(ids, vec!["new".to_string(), "old-1".to_string()]);
        // The backfilled rows carry the click's time and personal flag: the sweep finds both
        // old clicks (the user-less one too) and not the new one.
        assert_eq!(store.expire_click_personal_data(Utc::now() - chrono::Duration::days(30), 100).await.unwrap(), 2);
        let swept = store.get_click("old-2").await.unwrap().unwrap();
        assert_eq!((swept.ip.as_deref(), swept.user_agent.as_deref()), (Some("203.0.113.0"), None));
        drop(store);
        let conn = Connection::open(dir.path().join("hissaback.db")).unwrap();
        assert_eq!(conn.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0)).unwrap(), CLICK_SUBJECTS_BACKFILLED);
        assert_eq!(backfill_click_subjects(&conn).unwrap(), 0, "runs once");
    }

    fn affiliate(id: u64, name: &str) -> AffiliateRecord {
        let now = Utc::now();
        AffiliateRecord {
            id,
            name: name.into(),
            email: format!("a{id}@example.test"),
            active: true,
            blog_approved: false,
            user: None,
            created_at: now,
            updated_at: now,
            version: 0,
        }
    }

    fn key(id: u64, affiliate_id: u64, hash: &str) -> ApiKeyRecord {
        ApiKeyRecord {
            id,
            affiliate_id,
            kind: KeyKind::Secret,
            prefix: "hb_sk_abcdefgh".into(),
            hash: hash.into(),
            scopes: vec![],
            allowed_brand_ids: vec![],
            allowed_offer_ids: vec![],
            rate_limit: RatePlan { per_minute: 300, burst: 1000 },
            created_at: Utc::now(),
            last_used_at: None,
            expires_at: None,
            revoked_at: None,
            rotated_to: None,
            version: 0,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reads_do_not_wait_for_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).await.unwrap();
        store.put_affiliate(&affiliate(7, "Committed")).await.unwrap();
        store.put_key(&key(70, 7, "hash-70")).await.unwrap();

        // Hold the writer for 2 s: its lock, and inside it an open write transaction that has
        // deleted both rows without committing.
        let writer = store.conn.clone();
        let (held, is_held) = std::sync::mpsc::channel();
        let holder = std::thread::spawn(move || {
            let conn = writer.lock().unwrap();
            conn.execute_batch("BEGIN IMMEDIATE; DELETE FROM affiliates WHERE id = 7; DELETE FROM api_keys WHERE id = 70;")
                .unwrap();
            held.send(()).unwrap();
            std::thread::sleep(Duration::from_secs(2));
            conn.execute_batch("ROLLBACK").unwrap();
        });
        tokio::task::spawn_blocking(move || is_held.recv().unwrap()).await.unwrap();

        let started = Instant::now();
        let within = Duration::from_millis(500);
        let found = tokio::time::timeout(within, store.get_affiliate(7)).await.expect("the read waited for the writer");
        assert_eq!(found.unwrap().expect("the committed affiliate").name, "Committed");
        let found = tokio::time::timeout(within, store.key_by_hash("hash-70")).await.expect("the read waited for the writer");
        assert_eq!(found.unwrap().expect("the committed key").id, 70);
        assert!(started.elapsed() < within, "reads took {:?}", started.elapsed());

        // The premise: the writer really was held all along.
        assert!(!holder.is_finished());
        let write = tokio::time::timeout(Duration::from_millis(200), store.put_setting("probe", "1")).await;
        assert!(write.is_err(), "a write went through while the writer was held");
        holder.join().unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_read_after_a_write_sees_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open_with(dir.path(), 2).await.unwrap();
        let mut tasks = tokio::task::JoinSet::new();
        for t in 0..8u64 {
            let store = store.clone();
            tasks.spawn(async move {
                let mut affiliate = affiliate(t + 1, "");
                let mut api_key = key(t + 1, t + 1, "");
                for i in 0..200 {
                    if i % 2 == 0 {
                        affiliate.name = format!("{t}-{i}");
                        store.put_affiliate(&affiliate).await.unwrap();
                        let got = store.get_affiliate(t + 1).await.unwrap().expect("the affiliate just written");
                        assert_eq!(got.name, affiliate.name);
                    } else {
                        api_key.hash = format!("hash-{t}-{i}");
                        store.put_key(&api_key).await.unwrap();
                        let got = store.key_by_hash(&api_key.hash).await.unwrap().expect("the key just written");
                        assert_eq!(got.id, t + 1);
                        assert_eq!(store.key_by_id(t + 1).await.unwrap().unwrap().hash, api_key.hash);
                    }
                }
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap();
        }
    }

    #[tokio::test]
    async fn the_reader_count_follows_the_setting() {
        let dir = tempfile::tempdir().unwrap();
        assert!(default_read_connections() >= 2);
        let store = EmbeddedStore::open_with(dir.path(), 0).await.unwrap();
        assert_eq!(store.read_connections(), default_read_connections());
        assert_eq!(store.readers.state().connections as usize, default_read_connections(), "readers are opened up front");
        drop(store);
        let store = EmbeddedStore::open_with(dir.path(), 3).await.unwrap();
        assert_eq!(store.read_connections(), 3);
        assert_eq!(store.readers.state().connections, 3);
        drop(store);
        let store = EmbeddedStore::open(dir.path()).await.unwrap();
        assert_eq!(store.read_connections(), default_read_connections());
    }

    #[tokio::test]
    async fn readers_cannot_write() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).await.unwrap();
        let write = store.read(|c| c.execute("INSERT INTO settings (name, value) VALUES ('x', 'y')", [])).await;
        assert!(write.is_err());
        assert_eq!(store.get_setting("x").await.unwrap(), None);
    }
}
