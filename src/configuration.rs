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
    /// The nice value (0 to 19) of the background threads: consumers, recorders, sweeps and
    /// webhook dispatch (see `crate::priority`); 0 keeps them at the HTTP workers' priority.
    #[serde(default)]
    pub background_nice: u8,
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
    /// Password authentication (`PasswordAuthenticator`): the role, with `password` or
    /// `password_file` (`HISSABACK_STORE__SCYLLA__USERNAME`). Unset: no authentication.
    #[serde(default)]
    pub username: Option<String>,
    /// The role's password (`HISSABACK_STORE__SCYLLA__PASSWORD`).
    #[serde(default)]
    pub password: Option<SecretString>,
    /// A file holding the password (e.g. a mounted secret), instead of `password`.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// TLS to every node (`HISSABACK_STORE__SCYLLA__TLS`). The node's certificate must chain to
    /// `tls_ca_file` (unset: the system's CAs) and name the node's IP address, or
    /// `tls_server_name` when set.
    #[serde(default)]
    pub tls: bool,
    /// PEM file of the CA(s) the nodes' certificates chain to.
    #[serde(default)]
    pub tls_ca_file: Option<PathBuf>,
    /// This client's certificate chain and private key (PEM), for clusters requiring mutual TLS.
    #[serde(default)]
    pub tls_cert_file: Option<PathBuf>,
    #[serde(default)]
    pub tls_key_file: Option<PathBuf>,
    /// The name the nodes' certificates carry (a DNS name, `*.` wildcards allowed), when they do
    /// not name the nodes' IP addresses.
    #[serde(default)]
    pub tls_server_name: Option<String>,
    /// `false`: the certificate chain is verified, the name it carries is not (development only).
    #[serde(default = "yes")]
    pub tls_verify_hostname: bool,
}

fn yes() -> bool {
    true
}

/// The compiled-in defaults (`configuration/defaults.toml`): one local node, no
/// authentication, no TLS. For code building settings by hand (`..Default::default()`).
impl Default for ScyllaSettings {
    fn default() -> Self {
        Self {
            nodes: vec!["127.0.0.1:9042".into()],
            keyspace: "hissaback".into(),
            replication_factor: 1,
            id_block_size: 10,
            username: None,
            password: None,
            password_file: None,
            tls: false,
            tls_ca_file: None,
            tls_cert_file: None,
            tls_key_file: None,
            tls_server_name: None,
            tls_verify_hostname: true,
        }
    }
}

impl ScyllaSettings {
    /// The configured role and its password (read from `password_file` when that is set).
    pub fn credentials(&self) -> Result<Option<(String, SecretString)>, ConfigError> {
        let Some(user) = self.username.clone() else { return Ok(None) };
        let password = match (&self.password, &self.password_file) {
            (Some(p), _) => p.clone(),
            (None, Some(file)) => read_secret_file("store.scylla.password_file", file)?,
            (None, None) => return Err(ConfigError::Invalid("store.scylla.username needs password or password_file".into())),
        };
        Ok(Some((user, password)))
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: &str| Err(ConfigError::Invalid(m.to_string()));
        match (&self.username, &self.password, &self.password_file) {
            (_, Some(_), Some(_)) => return invalid("store.scylla.password and store.scylla.password_file are both set; set one"),
            (Some(_), None, None) => return invalid("store.scylla.username needs store.scylla.password or store.scylla.password_file"),
            (None, Some(_), _) | (None, _, Some(_)) => return invalid("store.scylla.password needs store.scylla.username"),
            _ => {}
        }
        if self.tls_cert_file.is_some() != self.tls_key_file.is_some() {
            return invalid("store.scylla.tls_cert_file and store.scylla.tls_key_file go together");
        }
        for (name, file) in [
            ("store.scylla.password_file", &self.password_file),
            ("store.scylla.tls_ca_file", &self.tls_ca_file),
            ("store.scylla.tls_cert_file", &self.tls_cert_file),
            ("store.scylla.tls_key_file", &self.tls_key_file),
        ] {
            file_exists(name, file.as_deref())?;
        }
        if self.tls_server_name.as_deref().is_some_and(|n| n.is_empty() || n.contains(char::is_whitespace)) {
            return invalid("store.scylla.tls_server_name must be a host name");
        }
        Ok(())
    }
}

/// A secret kept in a file (a mounted secret): its content without the final line break.
fn read_secret_file(name: &str, file: &Path) -> Result<SecretString, ConfigError> {
    let text = std::fs::read_to_string(file).map_err(|e| ConfigError::Invalid(format!("{name}: reading {}: {e}", file.display())))?;
    let secret = text.trim_end_matches(['\n', '\r']);
    if secret.is_empty() {
        return Err(ConfigError::Invalid(format!("{name}: {} is empty", file.display())));
    }
    Ok(SecretString::from(secret.to_string()))
}

fn file_exists(name: &str, file: Option<&Path>) -> Result<(), ConfigError> {
    match file {
        Some(f) if !f.exists() || f.is_dir() => Err(ConfigError::Invalid(format!("{name}: no file {}", f.display()))),
        _ => Ok(()),
    }
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

#[derive(Clone, Deserialize)]
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
    /// `plaintext`, `ssl`, `sasl_plaintext` or `sasl_ssl` (`HISSABACK_EVENTS__KAFKA__SECURITY_PROTOCOL`).
    #[serde(default)]
    pub security_protocol: KafkaSecurityProtocol,
    /// PEM file of the CA(s) the brokers' certificates chain to; unset with TLS: the system's CAs.
    #[serde(default)]
    pub ssl_ca_location: Option<PathBuf>,
    /// This client's certificate and private key (PEM), for brokers requiring mutual TLS.
    #[serde(default)]
    pub ssl_certificate_location: Option<PathBuf>,
    #[serde(default)]
    pub ssl_key_location: Option<PathBuf>,
    /// The private key's passphrase.
    #[serde(default)]
    pub ssl_key_password: Option<SecretString>,
    /// `https` (the brokers' certificates must name them; librdkafka's default) or `none`.
    #[serde(default)]
    pub ssl_endpoint_identification: Option<String>,
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`; required by the `sasl_*` protocols.
    #[serde(default)]
    pub sasl_mechanism: Option<String>,
    #[serde(default)]
    pub sasl_username: Option<String>,
    #[serde(default)]
    pub sasl_password: Option<SecretString>,
    /// A file holding the SASL password (e.g. a mounted secret), instead of `sasl_password`.
    #[serde(default)]
    pub sasl_password_file: Option<PathBuf>,
    /// Further librdkafka properties, set on every client last (`"client.id" = "..."`;
    /// in the environment `{"client.id"="a", "socket.timeout.ms"="30000"}` or `client.id=a,...`).
    #[serde(default, deserialize_with = "map_or_comma_separated")]
    pub client: std::collections::BTreeMap<String, String>,
}

/// Passwords (and secret `client` properties) redacted.
impl std::fmt::Debug for KafkaSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSettings")
            .field("brokers", &self.brokers)
            .field("topic_prefix", &self.topic_prefix)
            .field("partitions", &self.partitions)
            .field("replication_factor", &self.replication_factor)
            .field("security_protocol", &self.security_protocol)
            .field("ssl_ca_location", &self.ssl_ca_location)
            .field("ssl_certificate_location", &self.ssl_certificate_location)
            .field("ssl_key_location", &self.ssl_key_location)
            .field("ssl_key_password", &self.ssl_key_password)
            .field("ssl_endpoint_identification", &self.ssl_endpoint_identification)
            .field("sasl_mechanism", &self.sasl_mechanism)
            .field("sasl_username", &self.sasl_username)
            .field("sasl_password", &self.sasl_password)
            .field("sasl_password_file", &self.sasl_password_file)
            .field("client", &hissaback_topics::bus::kafka::redacted(&self.client))
            .finish()
    }
}

/// `events.kafka.security_protocol`, librdkafka's `security.protocol`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KafkaSecurityProtocol {
    #[default]
    #[serde(alias = "PLAINTEXT")]
    Plaintext,
    #[serde(alias = "SSL")]
    Ssl,
    #[serde(alias = "SASL_PLAINTEXT")]
    SaslPlaintext,
    #[serde(alias = "SASL_SSL")]
    SaslSsl,
}

impl KafkaSecurityProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plaintext => "plaintext",
            Self::Ssl => "ssl",
            Self::SaslPlaintext => "sasl_plaintext",
            Self::SaslSsl => "sasl_ssl",
        }
    }

    fn is_sasl(self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }
}

impl KafkaSettings {
    /// What every Kafka client is configured with: the security settings, with the SASL
    /// password read from `sasl_password_file` when that is set.
    pub fn security(&self) -> Result<hissaback_topics::bus::kafka::KafkaSecurity, ConfigError> {
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
        let sasl_password = match (&self.sasl_password, &self.sasl_password_file) {
            (Some(p), _) => Some(p.expose_secret().to_string()),
            (None, Some(file)) => Some(read_secret_file("events.kafka.sasl_password_file", file)?.expose_secret().to_string()),
            (None, None) => None,
        };
        Ok(hissaback_topics::bus::kafka::KafkaSecurity {
            security_protocol: (self.security_protocol != KafkaSecurityProtocol::Plaintext).then(|| self.security_protocol.as_str().to_string()),
            ssl_ca_location: path(&self.ssl_ca_location),
            ssl_certificate_location: path(&self.ssl_certificate_location),
            ssl_key_location: path(&self.ssl_key_location),
            ssl_key_password: self.ssl_key_password.as_ref().map(|p| p.expose_secret().to_string()),
            ssl_endpoint_identification: self.ssl_endpoint_identification.clone(),
            sasl_mechanism: self.sasl_mechanism.as_ref().map(|m| m.to_ascii_uppercase()),
            sasl_username: self.sasl_username.clone(),
            sasl_password,
            client: self.client.clone(),
        })
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: &str| Err(ConfigError::Invalid(m.to_string()));
        let sasl_set = self.sasl_mechanism.is_some() || self.sasl_username.is_some() || self.sasl_password.is_some() || self.sasl_password_file.is_some();
        if self.security_protocol.is_sasl() {
            // The password may also come as a free-form `sasl.password` property.
            let password = self.sasl_password.is_some() || self.sasl_password_file.is_some() || self.client.contains_key("sasl.password");
            if self.sasl_username.as_deref().is_none_or(str::is_empty) || !password {
                return invalid("events.kafka.security_protocol sasl_* needs sasl_username and sasl_password (or sasl_password_file)");
            }
            match self.sasl_mechanism.as_deref().map(str::to_ascii_uppercase).as_deref() {
                Some("PLAIN" | "SCRAM-SHA-256" | "SCRAM-SHA-512") => {}
                _ => return invalid("events.kafka.sasl_mechanism must be PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"),
            }
        } else if sasl_set {
            return invalid("events.kafka.sasl_* settings need security_protocol sasl_ssl (or sasl_plaintext)");
        }
        if self.sasl_password.is_some() && self.sasl_password_file.is_some() {
            return invalid("events.kafka.sasl_password and events.kafka.sasl_password_file are both set; set one");
        }
        if let Some(e) = self.ssl_endpoint_identification.as_deref() {
            if e != "https" && e != "none" {
                return invalid("events.kafka.ssl_endpoint_identification must be https or none");
            }
        }
        if self.ssl_certificate_location.is_some() != self.ssl_key_location.is_some() {
            return invalid("events.kafka.ssl_certificate_location and ssl_key_location go together");
        }
        for (name, file) in [
            ("events.kafka.ssl_ca_location", &self.ssl_ca_location),
            ("events.kafka.ssl_certificate_location", &self.ssl_certificate_location),
            ("events.kafka.ssl_key_location", &self.ssl_key_location),
            ("events.kafka.sasl_password_file", &self.sasl_password_file),
        ] {
            file_exists(name, file.as_deref())?;
        }
        if self.client.keys().any(|k| k.is_empty() || k == "bootstrap.servers") {
            return invalid("events.kafka.client: property names must not be empty, and the brokers are set by events.kafka.brokers");
        }
        Ok(())
    }
}

fn map_or_comma_separated<'de, D: Deserializer<'de>>(d: D) -> Result<std::collections::BTreeMap<String, String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Map(std::collections::BTreeMap<String, String>),
        One(String),
    }
    match Either::deserialize(d)? {
        Either::Map(m) => Ok(m),
        Either::One(s) => s
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| match p.split_once('=') {
                Some((k, v)) => Ok((k.trim().to_string(), v.trim().to_string())),
                None => Err(serde::de::Error::custom(format!("`{p}` is not name=value"))),
            })
            .collect(),
    }
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
        if self.server.background_nice > 19 {
            return invalid("server.background_nice must be 0 to 19");
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
        self.store.scylla.validate()?;
        self.events.kafka.validate()?;
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
    fn kafka_tls_and_sasl_settings_reach_the_client_and_passwords_stay_hidden() {
        figment::Jail::expect_with(|jail| {
            let s = Settings::load(None).unwrap();
            assert_eq!(s.events.kafka.security_protocol, KafkaSecurityProtocol::Plaintext);
            assert_eq!(s.events.kafka.security().unwrap(), hissaback_topics::bus::kafka::KafkaSecurity::default());
            jail.create_file("ca.pem", "not parsed here")?;
            jail.create_file("kafka-password", "from-a-file\n")?;
            jail.set_env("HISSABACK_EVENTS__KAFKA__SECURITY_PROTOCOL", "SASL_SSL");
            jail.set_env("HISSABACK_EVENTS__KAFKA__SSL_CA_LOCATION", "ca.pem");
            jail.set_env("HISSABACK_EVENTS__KAFKA__SASL_MECHANISM", "scram-sha-512");
            jail.set_env("HISSABACK_EVENTS__KAFKA__SASL_USERNAME", "hb");
            jail.set_env("HISSABACK_EVENTS__KAFKA__SASL_PASSWORD_FILE", "kafka-password");
            jail.set_env("HISSABACK_EVENTS__KAFKA__CLIENT", "client.id=hb-eu, socket.keepalive.enable=true");
            let s = Settings::load(None).unwrap();
            let security = s.events.kafka.security().unwrap();
            assert_eq!(security.security_protocol.as_deref(), Some("sasl_ssl"));
            assert_eq!(security.sasl_mechanism.as_deref(), Some("SCRAM-SHA-512"));
            assert_eq!(security.sasl_password.as_deref(), Some("from-a-file"));
            assert_eq!(security.ssl_ca_location.as_deref(), Some("ca.pem"));
            assert_eq!(security.client.get("client.id").map(String::as_str), Some("hb-eu"));
            assert_eq!(security.client.get("socket.keepalive.enable").map(String::as_str), Some("true"));
            let config = hissaback_topics::bus::kafka::client_config(&s.events.kafka.brokers, &security);
            assert_eq!(config.get("sasl.password"), Some("from-a-file"));
            assert!(!format!("{security:?}").contains("from-a-file"));
            jail.set_env("HISSABACK_EVENTS__KAFKA__SASL_PASSWORD", "inline-secret");
            assert!(Settings::load(None).unwrap_err().to_string().contains("both set"));
            jail.clear_env();
            jail.set_env("HISSABACK_EVENTS__KAFKA__SECURITY_PROTOCOL", "sasl_ssl");
            jail.set_env("HISSABACK_EVENTS__KAFKA__SASL_MECHANISM", "PLAIN");
            jail.set_env("HISSABACK_EVENTS__KAFKA__SASL_USERNAME", "hb");
            jail.set_env("HISSABACK_EVENTS__KAFKA__SASL_PASSWORD", "inline-secret");
            jail.set_env("HISSABACK_EVENTS__KAFKA__SSL_KEY_PASSWORD", "key-secret");
            let s = Settings::load(None).unwrap();
            let shown = format!("{s:?} {:?}", s.events.kafka.security().unwrap());
            assert!(!shown.contains("inline-secret") && !shown.contains("key-secret"), "{shown}");
            assert_eq!(s.events.kafka.security().unwrap().sasl_password.as_deref(), Some("inline-secret"));
            // The free-form properties from a file, as a table.
            jail.create_file("hissaback.toml", "[events.kafka.client]\n\"client.id\" = \"from-toml\"\n")?;
            let s = Settings::load(None).unwrap();
            assert_eq!(s.events.kafka.client.get("client.id").map(String::as_str), Some("from-toml"));
            Ok(())
        });
    }

    #[test]
    fn inconsistent_kafka_security_settings_are_refused_with_the_reason() {
        for (vars, reason) in [
            (&[("SASL_USERNAME", "hb"), ("SASL_PASSWORD", "p")][..], "need security_protocol sasl_ssl"),
            (&[("SECURITY_PROTOCOL", "sasl_ssl"), ("SASL_USERNAME", "hb"), ("SASL_PASSWORD", "p")][..], "sasl_mechanism must be"),
            (&[("SECURITY_PROTOCOL", "sasl_plaintext"), ("SASL_MECHANISM", "PLAIN")][..], "needs sasl_username and sasl_password"),
            (&[("SECURITY_PROTOCOL", "ssl"), ("SSL_CA_LOCATION", "/nonexistent/ca.pem")][..], "events.kafka.ssl_ca_location: no file /nonexistent/ca.pem"),
            (&[("SECURITY_PROTOCOL", "ssl"), ("SSL_ENDPOINT_IDENTIFICATION", "maybe")][..], "https or none"),
            (&[("SECURITY_PROTOCOL", "ssl"), ("SSL_CERTIFICATE_LOCATION", "/dev/null")][..], "go together"),
            (&[("SECURITY_PROTOCOL", "tls")][..], "security_protocol"),
            (&[("CLIENT", "client.id")][..], "not name=value"),
        ] {
            figment::Jail::expect_with(|jail| {
                for (k, v) in vars {
                    jail.set_env(format!("HISSABACK_EVENTS__KAFKA__{k}"), v);
                }
                let e = Settings::load(None).expect_err("refused").to_string();
                assert!(e.to_lowercase().contains(&reason.to_lowercase()), "{vars:?}: {e}");
                Ok(())
            });
        }
    }

    #[test]
    fn scylla_credentials_and_tls_settings_are_read_and_checked() {
        figment::Jail::expect_with(|jail| {
            let s = Settings::load(None).unwrap();
            assert!(!s.store.scylla.tls && s.store.scylla.tls_verify_hostname);
            assert!(s.store.scylla.credentials().unwrap().is_none());
            jail.create_file("scylla-password", "file-secret\n")?;
            jail.create_file("ca.pem", "not parsed here")?;
            jail.set_env("HISSABACK_STORE__SCYLLA__USERNAME", "hb");
            jail.set_env("HISSABACK_STORE__SCYLLA__PASSWORD_FILE", "scylla-password");
            jail.set_env("HISSABACK_STORE__SCYLLA__TLS", "true");
            jail.set_env("HISSABACK_STORE__SCYLLA__TLS_CA_FILE", "ca.pem");
            jail.set_env("HISSABACK_STORE__SCYLLA__TLS_SERVER_NAME", "*.db.example.test");
            let s = Settings::load(None).unwrap();
            let (user, password) = s.store.scylla.credentials().unwrap().unwrap();
            assert_eq!((user.as_str(), password.expose_secret()), ("hb", "file-secret"));
            assert!(s.store.scylla.tls);
            assert_eq!(s.store.scylla.tls_ca_file.as_deref(), Some(Path::new("ca.pem")));
            assert!(!format!("{s:?}").contains("file-secret"));
            jail.set_env("HISSABACK_STORE__SCYLLA__PASSWORD", "inline-secret");
            assert!(Settings::load(None).unwrap_err().to_string().contains("both set"));
            jail.clear_env();
            jail.set_env("HISSABACK_STORE__SCYLLA__USERNAME", "hb");
            let e = Settings::load(None).unwrap_err().to_string();
            assert!(e.contains("store.scylla.username needs"), "{e}");
            jail.set_env("HISSABACK_STORE__SCYLLA__PASSWORD", "inline-secret");
            let s = Settings::load(None).unwrap();
            assert!(!format!("{s:?}").contains("inline-secret"));
            jail.set_env("HISSABACK_STORE__SCYLLA__TLS_CA_FILE", "/nonexistent/ca.pem");
            let e = Settings::load(None).unwrap_err().to_string();
            assert!(e.contains("store.scylla.tls_ca_file: no file /nonexistent/ca.pem"), "{e}");
            jail.clear_env();
            jail.set_env("HISSABACK_STORE__SCYLLA__PASSWORD", "inline-secret");
            assert!(Settings::load(None).unwrap_err().to_string().contains("needs store.scylla.username"));
            jail.clear_env();
            jail.set_env("HISSABACK_STORE__SCYLLA__TLS_KEY_FILE", "ca.pem");
            assert!(Settings::load(None).unwrap_err().to_string().contains("go together"));
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
