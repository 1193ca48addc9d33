//! Configuration: compiled-in defaults (`configuration/defaults.toml`), then an optional TOML
//! file, then `HISSABACK_*` environment variables, validated once at start.
//!
//! The flat variables of the design's contract (`HISSABACK_LISTEN`, `HISSABACK_DATA_DIR`, ...)
//! map to their fields below; any field can also be set as `HISSABACK_<SECTION>__<FIELD>`
//! (e.g. `HISSABACK_AUTH__LAST_USED_FLUSH_MS=200`). Other `HISSABACK_` variables are ignored,
//! so tooling may use the prefix freely.

use figment::providers::{Env, Format, Toml};
use figment::Figment;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Shortest pepper or secrets key accepted, wherever it comes from (configuration, a file,
/// the environment).
pub const MIN_SECRET_BYTES: usize = 32;

const DEFAULTS: &str = include_str!("../configuration/defaults.toml");

/// The flat environment variables of the contract and the field each one sets.
const FLAT_ENV: &[(&str, &str)] = &[
    ("listen", "server.listen"),
    ("public_base_url", "server.public_base_url"),
    ("data_dir", "store.data_dir"),
    ("admin_token", "admin.token"),
    ("store_backend", "store.backend"),
    ("scylla_nodes", "store.scylla.nodes"),
    ("scylla_keyspace", "store.scylla.keyspace"),
    ("events_backend", "events.backend"),
    ("kafka_brokers", "events.kafka.brokers"),
    ("kafka_topic_prefix", "events.kafka.topic_prefix"),
    ("geoip_db", "catalogue.geoip_db"),
    ("auth_failures_per_minute", "auth.failures_per_minute"),
    ("webhook_allow", "webhooks.allow"),
    ("webhook_https_only", "webhooks.https_only"),
    ("webhook_retry_schedule", "webhooks.retry_schedule"),
    ("offers_feed_url", "partner.offers_feed_url"),
    ("offers_sync_interval", "partner.offers_sync_interval"),
    ("secrets_key", "secrets.key"),
    ("trusted_proxies", "server.trusted_proxies"),
    ("metrics_listen", "server.metrics_listen"),
    ("shutdown_drain_ms", "server.shutdown_drain_ms"),
];

/// Everything the service reads at start.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    #[serde(default)]
    pub admin: AdminSettings,
    pub store: StoreSettings,
    pub events: EventsSettings,
    pub auth: AuthSettings,
    pub catalogue: CatalogueSettings,
    pub webhooks: WebhookSettings,
    pub partner: PartnerSettings,
    pub payouts: PayoutSettings,
    pub usage: UsageSettings,
    #[serde(default)]
    pub secrets: SecretsSettings,
    #[serde(default)]
    pub privacy: PrivacySettings,
}

/// Retention of end users' personal data (issue 13, "Data privacy compliance").
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrivacySettings {
    /// Days a click keeps its full IP and user agent (attribution needs them no longer); then
    /// the IP is truncated (/24, /48) and the user agent dropped. 0: never stored in full.
    pub click_personal_data_days: u32,
    /// How often the embedded store's sweep truncates clicks past that age (ScyllaDB: a TTL).
    pub sweep_seconds: u64,
}

impl Default for PrivacySettings {
    fn default() -> Self {
        Self { click_personal_data_days: 30, sweep_seconds: 3600 }
    }
}

/// The key that encrypts secrets kept in the store (webhook secrets).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretsSettings {
    /// At least 32 bytes (`HISSABACK_SECRETS_KEY`). Every instance sharing a store must use
    /// the same key. Unset: read from `key_file`, else from `<data_dir>/secrets.key`, created
    /// once (random, owner-only).
    pub key: Option<SecretString>,
    /// A file holding the key (e.g. a mounted secret), instead of `key`.
    pub key_file: Option<PathBuf>,
}

/// Usage counters and the audit log.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageSettings {
    /// How often the usage recorder writes its batches.
    pub flush_ms: u64,
    /// How long audit rows are kept.
    pub audit_retention_days: u32,
    /// Audit rows held in memory while the store is unreachable.
    pub max_pending_audit: usize,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PayoutSettings {
    /// `manual` or `http`.
    pub provider: String,
    /// The payout endpoint of the `http` provider.
    pub http_url: String,
    pub timeout_ms: u64,
    /// How long `POST /admin/v1/rewards/pay` waits for the payments it asked for to settle;
    /// those still in flight then are answered as `pending` and settle later.
    pub wait_ms: u64,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartnerSettings {
    /// Longest the in-memory offer catalogue goes without a reload.
    pub offers_refresh_seconds: u64,
    /// How long publishable keys' offer listings are cached.
    pub public_cache_seconds: u64,
    /// A network's JSON offer feed (`HISSABACK_OFFERS_FEED_URL`).
    pub offers_feed_url: Option<String>,
    /// How often the feed is polled, e.g. `5m` (`HISSABACK_OFFERS_SYNC_INTERVAL`).
    pub offers_sync_interval: String,
    /// Each network's postback allowance.
    pub postback_rate_limit: RatePlanSettings,
    /// Clicks recorded per client address: beyond it the redirect is still served, the click
    /// is not recorded (and counted as refused).
    pub click_rate_limit_per_address: RatePlanSettings,
    /// Clicks recorded per smart link, likewise.
    pub click_rate_limit_per_link: RatePlanSettings,
    /// Clicks kept in memory for the postback path (each about 300 bytes).
    pub click_cache_capacity: u64,
    /// A cached click is dropped after this long without a postback.
    pub click_cache_idle_seconds: u64,
    /// How long a network's postback token is trusted from memory.
    pub network_cache_seconds: u64,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    /// Hosts or CIDRs reachable despite the private-address guard (`HISSABACK_WEBHOOK_ALLOW`).
    #[serde(deserialize_with = "list_or_comma_separated")]
    pub allow: Vec<String>,
    /// Refuse plain-http URLs except allowed hosts (`HISSABACK_WEBHOOK_HTTPS_ONLY`).
    pub https_only: bool,
    /// Delays before each attempt, e.g. `0s`, `5s`, `5m` (`HISSABACK_WEBHOOK_RETRY_SCHEDULE`).
    #[serde(deserialize_with = "list_or_comma_separated")]
    pub retry_schedule: Vec<String>,
    /// Fraction of each delay added at random.
    pub retry_jitter: f64,
    pub connect_timeout_ms: u64,
    pub timeout_ms: u64,
    pub max_concurrency: usize,
    pub per_endpoint_concurrency: usize,
    /// An endpoint failing this long without a success is disabled.
    pub disable_after_hours: u64,
    pub response_body_limit_bytes: usize,
    /// How often pending deliveries are swept for orphans.
    pub sweep_seconds: u64,
    /// A pending delivery overdue by more than this is adopted by the sweeping instance.
    pub orphan_grace_seconds: u64,
    /// Days the delivery log keeps a delivery after its last attempt (1 to 3650).
    pub delivery_log_days: u32,
}

impl WebhookSettings {
    /// The retry schedule as durations.
    pub fn schedule(&self) -> Result<Vec<std::time::Duration>, String> {
        self.retry_schedule
            .iter()
            .map(|d| humantime::parse_duration(d.trim()).map_err(|e| format!("webhooks.retry_schedule `{d}`: {e}")))
            .collect()
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogueSettings {
    /// MaxMind-format country database for `currency_from_ip` (`HISSABACK_GEOIP_DB`).
    pub geoip_db: Option<PathBuf>,
    /// Exchange rates (per 1 USD) in force until the admin API sets some.
    pub default_rates: crate::catalogue::ExchangeRates,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    /// Address and port to serve on (`HISSABACK_LISTEN`); port 0 picks a free port.
    pub listen: String,
    /// Base of product, link and click URLs (`HISSABACK_PUBLIC_BASE_URL`); empty means
    /// `http://` + the bound address.
    pub public_base_url: String,
    /// HTTP worker threads; 0 means one per core.
    pub workers: usize,
    /// Largest request body accepted; larger bodies answer 413.
    pub body_limit_bytes: usize,
    /// How long in-flight requests may take to finish after SIGINT/SIGTERM.
    pub shutdown_timeout_seconds: u64,
    /// This instance's name in per-instance consumer groups.
    pub instance_id: String,
    /// Proxies (addresses or CIDRs) whose `X-Forwarded-For` names the client
    /// (`HISSABACK_TRUSTED_PROXIES`, comma-separated). Empty: the peer is the client.
    #[serde(deserialize_with = "list_or_comma_separated")]
    pub trusted_proxies: Vec<String>,
    /// A second address serving only `/metrics` and `/healthz` (`HISSABACK_METRICS_LISTEN`),
    /// e.g. `0.0.0.0:9100` for a scraper on a private network. Unset: none. The main listener
    /// serves `/metrics` either way.
    #[serde(default)]
    pub metrics_listen: Option<String>,
    /// At SIGTERM, how long `/readyz` answers 503 while requests are still served, so load
    /// balancers stop sending new ones before the listener closes
    /// (`HISSABACK_SHUTDOWN_DRAIN_MS`). 0: close at once (then in-flight requests finish
    /// within `shutdown_timeout_seconds`). A few seconds in production behind a balancer.
    #[serde(default)]
    pub shutdown_drain_ms: u64,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSettings {
    /// Bearer token of the admin API (`HISSABACK_ADMIN_TOKEN`); unset disables the admin API.
    pub token: Option<SecretString>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreBackend {
    /// SQLite in `data_dir`: one machine, no servers.
    Embedded,
    /// ScyllaDB (or Apache Cassandra) through the `scylla` driver.
    Scylla,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSettings {
    /// `HISSABACK_STORE_BACKEND`.
    pub backend: StoreBackend,
    /// Embedded store and embedded topic data (`HISSABACK_DATA_DIR`).
    pub data_dir: PathBuf,
    /// Embedded store: read-only WAL connections beside the writer (0: one per core, at least 2).
    pub read_connections: usize,
    pub scylla: ScyllaSettings,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScyllaSettings {
    /// CQL contact points (`HISSABACK_SCYLLA_NODES`, comma-separated in the environment).
    #[serde(deserialize_with = "list_or_comma_separated")]
    pub nodes: Vec<String>,
    /// `HISSABACK_SCYLLA_KEYSPACE`.
    pub keyspace: String,
    /// Replication factor `hissaback migrate` creates the keyspace with (SimpleStrategy).
    pub replication_factor: u32,
    /// Ids reserved per lightweight transaction on an id sequence.
    pub id_block_size: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventsBackend {
    /// Durable topic logs inside the embedded store.
    Embedded,
    /// Apache Kafka through `rdkafka`.
    Kafka,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsSettings {
    /// `HISSABACK_EVENTS_BACKEND`.
    pub backend: EventsBackend,
    /// Partitions of each embedded topic log.
    pub embedded_partitions: u32,
    /// Most messages a stream consumer takes in one batch (handled partition by partition,
    /// committed at once).
    pub batch_max: usize,
    /// How long a consumer waits for more messages once a batch has its first one.
    pub batch_linger_ms: u64,
    /// Delay before the first retry of a failing handler; it doubles with each retry.
    pub handler_backoff_first_ms: u64,
    /// Longest delay between handler retries (and between restarts of a crashed consumer).
    pub handler_backoff_max_ms: u64,
    /// Attempts on a failing batch slice, then on each of its events alone, before the event
    /// that keeps failing is parked on `<topic>.dead-letter` (see `hissaback dead-letters`).
    pub handler_max_attempts: u32,
    /// Events parked in a row, with no success in between, after which a consumer stops
    /// parking and retries instead: many failures in a row are an outage, not poison. 0: a
    /// handler failure never parks an event.
    pub max_dead_letters_in_a_row: u32,
    /// `/readyz` answers 503 while a consumer has been on one batch for longer than this.
    pub stuck_after_seconds: u64,
    pub kafka: KafkaSettings,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSettings {
    /// Bootstrap servers (`HISSABACK_KAFKA_BROKERS`).
    pub brokers: String,
    /// Prefix of every topic name (`HISSABACK_KAFKA_TOPIC_PREFIX`).
    pub topic_prefix: String,
    /// Partitions `hissaback migrate` creates each topic with.
    pub partitions: i32,
    /// Replication factor `hissaback migrate` creates each topic with.
    pub replication_factor: i32,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    /// Server-side pepper for API key and postback token hashes, at least 32 bytes. Unset: read
    /// from `pepper_file`, else from `<data_dir>/pepper`, created once. Every instance sharing
    /// a store must use the same pepper.
    pub pepper: Option<SecretString>,
    /// A file holding the pepper (e.g. a mounted secret, away from the data), instead of `pepper`.
    #[serde(default)]
    pub pepper_file: Option<PathBuf>,
    /// How often the key-usage recorder writes `last_used_at`.
    pub last_used_flush_ms: u64,
    /// Failed authentications allowed per client address per minute
    /// (`HISSABACK_AUTH_FAILURES_PER_MINUTE`).
    pub failures_per_minute: u32,
    /// Default grace window of a key rotation.
    pub rotation_grace_seconds: u64,
    /// Rate plan of keys issued without one.
    pub default_rate_limit: RatePlanSettings,
    /// Credentials kept in memory (entries).
    pub key_cache_capacity: u64,
    /// Backstop lifetime of a cached credential, should a change event be missed.
    pub key_cache_ttl_seconds: u64,
}

#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RatePlanSettings {
    pub per_minute: u32,
    pub burst: u32,
}

fn list_or_comma_separated<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        List(Vec<String>),
        One(String),
    }
    Ok(match Either::deserialize(d)? {
        Either::List(v) => v,
        Either::One(s) => s.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect(),
    })
}

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    // Not `#[from]`: that would make the figment error the source too, and its message
    // would print twice (as the error and as its cause).
    #[error("configuration: {0}")]
    Load(Box<figment::Error>),
    #[error("configuration: {0}")]
    Invalid(String),
}

impl Settings {
    /// Defaults, then `path` (or `./hissaback.toml` when it exists), then the environment.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Toml::string(DEFAULTS));
        match path {
            Some(p) => {
                if !p.exists() {
                    return Err(ConfigError::Invalid(format!("config file {} does not exist", p.display())));
                }
                figment = figment.merge(Toml::file(p));
            }
            None => figment = figment.merge(Toml::file("hissaback.toml")),
        }
        figment = figment.merge(environment());
        let settings: Settings = figment.extract().map_err(|e| ConfigError::Load(Box::new(e)))?;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks that no two settings contradict each other; the service refuses to start otherwise.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: &str| Err(ConfigError::Invalid(m.to_string()));
        if self.server.listen.parse::<SocketAddr>().is_err() {
            return invalid("server.listen must be an address such as 127.0.0.1:8080");
        }
        if !self.server.public_base_url.is_empty() {
            match url::Url::parse(&self.server.public_base_url) {
                Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {}
                _ => return invalid("server.public_base_url must be an http(s) URL"),
            }
        }
        let r = &self.catalogue.default_rates;
        if [r.gbp, r.eur, r.inr, r.bgn].iter().any(|v| *v <= rust_decimal::Decimal::ZERO) {
            return invalid("catalogue.default_rates must all be positive");
        }
        let w = &self.webhooks;
        let schedule = w.schedule().map_err(ConfigError::Invalid)?;
        if schedule.is_empty() {
            return invalid("webhooks.retry_schedule needs at least one attempt");
        }
        if !(0.0..=1.0).contains(&w.retry_jitter) || w.max_concurrency == 0 || w.per_endpoint_concurrency == 0 || w.timeout_ms == 0 {
            return invalid("webhooks: retry_jitter must be within 0..1 and concurrency and timeouts positive");
        }
        if !(1..=86_400).contains(&w.sweep_seconds) || !(10..=604_800).contains(&w.orphan_grace_seconds) {
            return invalid("webhooks.sweep_seconds must be 1 to 86400 and webhooks.orphan_grace_seconds 10 to 604800");
        }
        if !(1..=3650).contains(&w.delivery_log_days) {
            return invalid("webhooks.delivery_log_days must be 1 to 3650");
        }
        crate::webhooks::guard::Allowlist::parse(&w.allow).map_err(ConfigError::Invalid)?;
        if !["manual", "http"].contains(&self.payouts.provider.as_str()) || (self.payouts.provider == "http" && self.payouts.http_url.is_empty()) {
            return invalid("payouts.provider must be manual, or http with payouts.http_url");
        }
        let every = humantime::parse_duration(&self.partner.offers_sync_interval)
            .map_err(|e| ConfigError::Invalid(format!("partner.offers_sync_interval: {e}")))?;
        if every.is_zero() {
            return invalid("partner.offers_sync_interval must be positive");
        }
        if let Some(addr) = self.server.metrics_listen.as_deref().filter(|a| !a.is_empty()) {
            if addr.parse::<SocketAddr>().is_err() {
                return invalid("server.metrics_listen must be an address such as 127.0.0.1:9100");
            }
            if addr == self.server.listen && !addr.ends_with(":0") {
                return invalid("server.metrics_listen must differ from server.listen");
            }
        }
        if self.server.shutdown_drain_ms > 600_000 {
            return invalid("server.shutdown_drain_ms must be at most 600000 (10 minutes)");
        }
        if self.server.instance_id.is_empty() {
            return invalid("server.instance_id must not be empty");
        }
        if self.server.body_limit_bytes == 0 {
            return invalid("server.body_limit_bytes must be positive");
        }
        if self.auth.default_rate_limit.per_minute == 0 || self.auth.default_rate_limit.burst == 0 {
            return invalid("auth.default_rate_limit values must be positive");
        }
        if self.partner.postback_rate_limit.per_minute == 0 || self.partner.postback_rate_limit.burst == 0 {
            return invalid("partner.postback_rate_limit values must be positive");
        }
        for (name, plan) in [("click_rate_limit_per_address", self.partner.click_rate_limit_per_address), ("click_rate_limit_per_link", self.partner.click_rate_limit_per_link)] {
            if plan.per_minute == 0 || plan.burst == 0 {
                return Err(ConfigError::Invalid(format!("partner.{name} values must be positive")));
            }
        }
        if self.usage.flush_ms == 0 || self.usage.audit_retention_days == 0 || self.usage.max_pending_audit == 0 {
            return invalid("usage.flush_ms, audit_retention_days and max_pending_audit must be positive");
        }
        if self.privacy.click_personal_data_days > 7300 || self.privacy.sweep_seconds == 0 {
            return invalid("privacy.click_personal_data_days must be at most 7300 and privacy.sweep_seconds positive");
        }
        if self.usage.audit_retention_days > 7300 {
            // CQL refuses a TTL over 20 years.
            return invalid("usage.audit_retention_days must be at most 7300 (20 years)");
        }
        if self.auth.last_used_flush_ms == 0 {
            return invalid("auth.last_used_flush_ms must be positive");
        }
        if let Some(token) = &self.admin.token {
            if token.expose_secret().len() < 16 {
                return invalid("admin.token must be at least 16 characters");
            }
        }
        for (name, inline, file) in [
            ("auth.pepper", &self.auth.pepper, &self.auth.pepper_file),
            ("secrets.key", &self.secrets.key, &self.secrets.key_file),
        ] {
            if let Some(value) = inline {
                if value.expose_secret().trim().len() < MIN_SECRET_BYTES {
                    return Err(ConfigError::Invalid(format!("{name} must be at least {MIN_SECRET_BYTES} bytes")));
                }
                if file.is_some() {
                    return Err(ConfigError::Invalid(format!("{name} and {name}_file are both set; set one")));
                }
            }
        }
        if self.store.scylla.id_block_size == 0 || self.store.scylla.replication_factor == 0 {
            return invalid("store.scylla.id_block_size and replication_factor must be positive");
        }
        let keyspace = &self.store.scylla.keyspace;
        if keyspace.is_empty() || keyspace.len() > 48 || !keyspace.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return invalid("store.scylla.keyspace must be 1 to 48 letters, digits or underscores");
        }
        if self.events.embedded_partitions == 0 || self.events.kafka.partitions <= 0 || self.events.kafka.replication_factor <= 0 {
            return invalid("events partitions and replication_factor must be positive");
        }
        let e = &self.events;
        if e.batch_max == 0 || e.handler_max_attempts == 0 || e.stuck_after_seconds == 0 {
            return invalid("events.batch_max, handler_max_attempts and stuck_after_seconds must be at least 1");
        }
        if e.handler_backoff_first_ms == 0 || e.handler_backoff_max_ms < e.handler_backoff_first_ms {
            return invalid("events.handler_backoff_first_ms must be positive and at most events.handler_backoff_max_ms");
        }
        if self.store.scylla.nodes.is_empty() {
            return invalid("store.scylla.nodes must name at least one node");
        }
        Ok(())
    }
}

fn environment() -> Env {
    Env::prefixed("HISSABACK_").filter_map(|key| {
        let key = key.as_str().to_ascii_lowercase();
        let key = key.as_str();
        if let Some((_, field)) = FLAT_ENV.iter().find(|(name, _)| *name == key) {
            return Some((*field).into());
        }
        key.contains("__").then(|| key.replace("__", ".").into())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_give_the_embedded_system_on_8080() {
        figment::Jail::expect_with(|_jail| {
            let s = Settings::load(None).unwrap();
            assert_eq!(s.server.listen, "127.0.0.1:8080");
            assert_eq!(s.store.backend, StoreBackend::Embedded);
            assert_eq!(s.events.backend, EventsBackend::Embedded);
            assert_eq!(s.store.data_dir, PathBuf::from("./data"));
            assert!(s.admin.token.is_none());
            assert_eq!(s.auth.default_rate_limit.per_minute, 300);
            assert_eq!(s.auth.default_rate_limit.burst, 1000);
            Ok(())
        });
    }

    #[test]
    fn contract_variables_and_nested_overrides_apply_and_others_are_ignored() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("HISSABACK_LISTEN", "0.0.0.0:9000");
            jail.set_env("HISSABACK_STORE_BACKEND", "scylla");
            jail.set_env("HISSABACK_SCYLLA_NODES", "10.0.0.1:9042, 10.0.0.2:9042");
            jail.set_env("HISSABACK_AUTH__LAST_USED_FLUSH_MS", "250");
            jail.set_env("HISSABACK_SOMETHING_ELSE", "ignored");
            let s = Settings::load(None).unwrap();
            assert_eq!(s.server.listen, "0.0.0.0:9000");
            assert_eq!(s.store.backend, StoreBackend::Scylla);
            assert_eq!(s.store.scylla.nodes, vec!["10.0.0.1:9042", "10.0.0.2:9042"]);
            assert_eq!(s.auth.last_used_flush_ms, 250);
            Ok(())
        });
    }

    #[test]
    fn a_file_overrides_defaults_and_bad_values_are_refused() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("custom.toml", "[server]\nlisten = \"127.0.0.1:7000\"\n")?;
            let s = Settings::load(Some(Path::new("custom.toml"))).unwrap();
            assert_eq!(s.server.listen, "127.0.0.1:7000");
            jail.create_file("bad.toml", "[server]\nlisten = \"nowhere\"\n")?;
            assert!(Settings::load(Some(Path::new("bad.toml"))).is_err());
            jail.create_file("typo.toml", "[server]\nlisen = \"127.0.0.1:1\"\n")?;
            assert!(Settings::load(Some(Path::new("typo.toml"))).is_err());
            assert!(Settings::load(Some(Path::new("missing.toml"))).is_err());
            Ok(())
        });
    }

    #[test]
    fn short_peppers_and_secrets_keys_are_refused_from_the_environment() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("HISSABACK_AUTH__PEPPER", "x");
            let e = Settings::load(None).unwrap_err().to_string();
            assert_eq!(e, "configuration: auth.pepper must be at least 32 bytes");
            jail.set_env("HISSABACK_AUTH__PEPPER", "p".repeat(32));
            jail.set_env("HISSABACK_SECRETS_KEY", "k");
            let e = Settings::load(None).unwrap_err().to_string();
            assert_eq!(e, "configuration: secrets.key must be at least 32 bytes");
            jail.set_env("HISSABACK_SECRETS_KEY", "k".repeat(32));
            let s = Settings::load(None).unwrap();
            assert_eq!(s.secrets.key.unwrap().expose_secret().len(), 32);
            jail.set_env("HISSABACK_SECRETS__KEY_FILE", "/run/secrets/hissaback");
            assert!(Settings::load(None).unwrap_err().to_string().contains("both set"));
            Ok(())
        });
    }

    #[test]
    fn the_metrics_listener_and_the_drain_delay_are_off_by_default_and_set_by_flat_variables() {
        figment::Jail::expect_with(|jail| {
            let s = Settings::load(None).unwrap();
            assert_eq!(s.server.metrics_listen, None);
            assert_eq!(s.server.shutdown_drain_ms, 0);
            jail.set_env("HISSABACK_METRICS_LISTEN", "127.0.0.1:9100");
            jail.set_env("HISSABACK_SHUTDOWN_DRAIN_MS", "5000");
            let s = Settings::load(None).unwrap();
            assert_eq!(s.server.metrics_listen.as_deref(), Some("127.0.0.1:9100"));
            assert_eq!(s.server.shutdown_drain_ms, 5000);
            jail.set_env("HISSABACK_METRICS_LISTEN", "nowhere");
            assert!(Settings::load(None).unwrap_err().to_string().contains("server.metrics_listen"));
            jail.set_env("HISSABACK_METRICS_LISTEN", "127.0.0.1:8080");
            assert!(Settings::load(None).unwrap_err().to_string().contains("must differ"));
            Ok(())
        });
    }
}
