//! The command line: `hissaback serve`, `hissaback demo`, `hissaback migrate`, `hissaback
//! ledger check`, and `hissaback dead-letters list|replay TOPIC` for the events a consumer
//! parked (see `hissaback_actors::consumer`).
//!
//! Exit codes: 0 success; 1 failure (one line on stderr); `ledger check` also exits 1 when an
//! invariant is broken and 2 when it could not check (configuration, store unreachable or
//! unreadable), so a scheduler can tell a wrong ledger from an outage. clap's usage errors
//! exit 2 as well.

use crate::configuration::{Settings, StoreBackend};
use crate::startup::Application;
use crate::{demo, store, telemetry};
use anyhow::Context;
use clap::{Parser, Subcommand};
use hissaback_actors::consumer::{DeadLetter, REPLAY_GROUP};
use hissaback_topics::bus::{Delivery, EventBus, Subscription};
use hissaback_topics::Topic;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "hissaback",
    version,
    about = "API-only affiliate and partner backend",
    after_help = "Every setting can also come from a HISSABACK_* environment variable: `hissaback --help` lists them.",
    after_long_help = env_help()
)]
pub struct Cli {
    /// TOML configuration file (default: ./hissaback.toml when it exists). Settings in the
    /// environment override the file's.
    #[arg(long, global = true, value_name = "PATH", env = "HISSABACK_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Serve the API with the configured backends.
    Serve,
    /// Serve with a demo data set, printing a working API key and example calls.
    Demo,
    /// Create what the configured backends need (schema, tables, topics), then exit.
    Migrate,
    /// Ledger tools.
    Ledger {
        #[command(subcommand)]
        command: LedgerCommand,
    },
    /// Events parked on a topic's dead-letter topic (`<topic>.dead-letter`).
    DeadLetters {
        #[command(subcommand)]
        command: DeadLettersCommand,
    },
}

#[derive(Subcommand)]
pub enum LedgerCommand {
    /// Check the ledger's invariants: exit 0 when every one holds, 1 when any is broken (each
    /// problem printed), 2 when the check could not run (configuration, store unreachable or
    /// unreadable).
    Check,
}

#[derive(Subcommand)]
pub enum DeadLettersCommand {
    /// Print every event parked for TOPIC: its place in the dead-letter topic, where it came
    /// from, its key, the group that parked it, the error and when.
    List {
        /// Base topic name, e.g. `conversions`.
        topic: String,
    },
    /// Publish the parked events of TOPIC not replayed yet back onto TOPIC (original key and
    /// bytes, in order), remembering how far it got so a second replay does not publish them
    /// again. Every consumer group of TOPIC sees them again; handlers are idempotent.
    Replay {
        /// Base topic name, e.g. `conversions`.
        topic: String,
    },
}

/// A setting and the environment variable that sets it (`hissaback --help` lists them all).
#[derive(Clone, Copy, Debug)]
pub struct EnvSetting {
    /// The variable: a flat name of the design's contract, or `HISSABACK_<SECTION>__<FIELD>`.
    pub var: &'static str,
    /// The field it sets (`section.field`, as in `configuration/defaults.toml`).
    pub field: &'static str,
    /// The compiled-in default, as shown.
    pub default: &'static str,
    /// A valid value other than the default (the unit test sets it and sees it apply).
    pub example: &'static str,
}

/// Every setting that the environment can set, in the order of `configuration/defaults.toml`.
/// A unit test below checks that each variable reaches its setting and that every setting of
/// the defaults is listed, so the list cannot drift from `src/configuration.rs`.
pub const ENV_SETTINGS: &[EnvSetting] = &[
    EnvSetting { var: "HISSABACK_LISTEN", field: "server.listen", default: "127.0.0.1:8080", example: "0.0.0.0:9000" },
    EnvSetting { var: "HISSABACK_PUBLIC_BASE_URL", field: "server.public_base_url", default: "empty", example: "https://api.example.test" },
    EnvSetting { var: "HISSABACK_SERVER__WORKERS", field: "server.workers", default: "0", example: "1" },
    EnvSetting { var: "HISSABACK_SERVER__BODY_LIMIT_BYTES", field: "server.body_limit_bytes", default: "1048576", example: "1048577" },
    EnvSetting { var: "HISSABACK_SERVER__SHUTDOWN_TIMEOUT_SECONDS", field: "server.shutdown_timeout_seconds", default: "30", example: "31" },
    EnvSetting { var: "HISSABACK_SERVER__BACKGROUND_NICE", field: "server.background_nice", default: "0", example: "5" },
    EnvSetting { var: "HISSABACK_SHUTDOWN_DRAIN_MS", field: "server.shutdown_drain_ms", default: "0", example: "1500" },
    EnvSetting { var: "HISSABACK_METRICS_LISTEN", field: "server.metrics_listen", default: "(unset)", example: "127.0.0.1:9109" },
    EnvSetting { var: "HISSABACK_SERVER__INSTANCE_ID", field: "server.instance_id", default: "local", example: "node-2" },
    EnvSetting { var: "HISSABACK_TRUSTED_PROXIES", field: "server.trusted_proxies", default: "empty", example: "10.0.0.0/8" },
    EnvSetting { var: "HISSABACK_STORE_BACKEND", field: "store.backend", default: "embedded", example: "scylla" },
    EnvSetting { var: "HISSABACK_DATA_DIR", field: "store.data_dir", default: "./data", example: "/var/lib/hissaback" },
    EnvSetting { var: "HISSABACK_STORE__READ_CONNECTIONS", field: "store.read_connections", default: "0", example: "1" },
    EnvSetting { var: "HISSABACK_SCYLLA_NODES", field: "store.scylla.nodes", default: "127.0.0.1:9042", example: "10.0.0.1:9042,10.0.0.2:9042" },
    EnvSetting { var: "HISSABACK_SCYLLA_KEYSPACE", field: "store.scylla.keyspace", default: "hissaback", example: "hissaback_prod" },
    EnvSetting { var: "HISSABACK_STORE__SCYLLA__REPLICATION_FACTOR", field: "store.scylla.replication_factor", default: "1", example: "2" },
    EnvSetting { var: "HISSABACK_STORE__SCYLLA__ID_BLOCK_SIZE", field: "store.scylla.id_block_size", default: "10", example: "11" },
    EnvSetting { var: "HISSABACK_STORE__SCYLLA__USERNAME", field: "store.scylla.username", default: "unset", example: "hissaback" },
    EnvSetting { var: "HISSABACK_STORE__SCYLLA__TLS", field: "store.scylla.tls", default: "false", example: "true" },
    EnvSetting { var: "HISSABACK_STORE__SCYLLA__TLS_CA_FILE", field: "store.scylla.tls_ca_file", default: "unset", example: "/dev/null" },
    EnvSetting { var: "HISSABACK_STORE__SCYLLA__TLS_CERT_FILE", field: "store.scylla.tls_cert_file", default: "unset", example: "/dev/zero" },
    EnvSetting { var: "HISSABACK_STORE__SCYLLA__TLS_KEY_FILE", field: "store.scylla.tls_key_file", default: "unset", example: "/dev/zero" },
    EnvSetting { var: "HISSABACK_STORE__SCYLLA__TLS_SERVER_NAME", field: "store.scylla.tls_server_name", default: "unset", example: "*.scylla.example.test" },
    EnvSetting { var: "HISSABACK_STORE__SCYLLA__TLS_VERIFY_HOSTNAME", field: "store.scylla.tls_verify_hostname", default: "true", example: "false" },
    EnvSetting { var: "HISSABACK_EVENTS_BACKEND", field: "events.backend", default: "embedded", example: "kafka" },
    EnvSetting { var: "HISSABACK_EVENTS__EMBEDDED_PARTITIONS", field: "events.embedded_partitions", default: "4", example: "5" },
    EnvSetting { var: "HISSABACK_EVENTS__BATCH_MAX", field: "events.batch_max", default: "500", example: "501" },
    EnvSetting { var: "HISSABACK_EVENTS__BATCH_LINGER_MS", field: "events.batch_linger_ms", default: "5", example: "6" },
    EnvSetting { var: "HISSABACK_EVENTS__HANDLER_BACKOFF_FIRST_MS", field: "events.handler_backoff_first_ms", default: "100", example: "101" },
    EnvSetting { var: "HISSABACK_EVENTS__HANDLER_BACKOFF_MAX_MS", field: "events.handler_backoff_max_ms", default: "30000", example: "30001" },
    EnvSetting { var: "HISSABACK_EVENTS__HANDLER_MAX_ATTEMPTS", field: "events.handler_max_attempts", default: "5", example: "6" },
    EnvSetting { var: "HISSABACK_EVENTS__MAX_DEAD_LETTERS_IN_A_ROW", field: "events.max_dead_letters_in_a_row", default: "1", example: "2" },
    EnvSetting { var: "HISSABACK_EVENTS__STUCK_AFTER_SECONDS", field: "events.stuck_after_seconds", default: "30", example: "31" },
    EnvSetting { var: "HISSABACK_KAFKA_BROKERS", field: "events.kafka.brokers", default: "127.0.0.1:9092", example: "kafka:9092" },
    EnvSetting { var: "HISSABACK_KAFKA_TOPIC_PREFIX", field: "events.kafka.topic_prefix", default: "hissaback.", example: "prod." },
    EnvSetting { var: "HISSABACK_EVENTS__KAFKA__PARTITIONS", field: "events.kafka.partitions", default: "3", example: "4" },
    EnvSetting { var: "HISSABACK_EVENTS__KAFKA__REPLICATION_FACTOR", field: "events.kafka.replication_factor", default: "1", example: "2" },
    EnvSetting { var: "HISSABACK_EVENTS__KAFKA__SECURITY_PROTOCOL", field: "events.kafka.security_protocol", default: "plaintext", example: "ssl" },
    EnvSetting { var: "HISSABACK_EVENTS__KAFKA__SSL_CA_LOCATION", field: "events.kafka.ssl_ca_location", default: "unset", example: "/dev/null" },
    EnvSetting { var: "HISSABACK_EVENTS__KAFKA__SSL_CERTIFICATE_LOCATION", field: "events.kafka.ssl_certificate_location", default: "unset", example: "/dev/zero" },
    EnvSetting { var: "HISSABACK_EVENTS__KAFKA__SSL_KEY_LOCATION", field: "events.kafka.ssl_key_location", default: "unset", example: "/dev/zero" },
    EnvSetting { var: "HISSABACK_EVENTS__KAFKA__SSL_KEY_PASSWORD", field: "events.kafka.ssl_key_password", default: "unset", example: "a-key-passphrase" },
    EnvSetting { var: "HISSABACK_EVENTS__KAFKA__SSL_ENDPOINT_IDENTIFICATION", field: "events.kafka.ssl_endpoint_identification", default: "unset", example: "none" },
    EnvSetting { var: "HISSABACK_EVENTS__KAFKA__SASL_MECHANISM", field: "events.kafka.sasl_mechanism", default: "unset", example: "SCRAM-SHA-512" },
    EnvSetting { var: "HISSABACK_EVENTS__KAFKA__SASL_USERNAME", field: "events.kafka.sasl_username", default: "unset", example: "hissaback" },
    EnvSetting { var: "HISSABACK_EVENTS__KAFKA__SASL_PASSWORD", field: "events.kafka.sasl_password", default: "unset", example: "a-sasl-password" },
    EnvSetting { var: "HISSABACK_EVENTS__KAFKA__SASL_PASSWORD_FILE", field: "events.kafka.sasl_password_file", default: "unset", example: "/dev/null" },
    EnvSetting { var: "HISSABACK_EVENTS__KAFKA__CLIENT", field: "events.kafka.client", default: "empty", example: "client.id=hissaback-eu" },
    EnvSetting { var: "HISSABACK_AUTH__LAST_USED_FLUSH_MS", field: "auth.last_used_flush_ms", default: "1000", example: "1001" },
    EnvSetting { var: "HISSABACK_AUTH_FAILURES_PER_MINUTE", field: "auth.failures_per_minute", default: "30", example: "31" },
    EnvSetting { var: "HISSABACK_AUTH__ROTATION_GRACE_SECONDS", field: "auth.rotation_grace_seconds", default: "86400", example: "86401" },
    EnvSetting { var: "HISSABACK_AUTH__KEY_CACHE_CAPACITY", field: "auth.key_cache_capacity", default: "100000", example: "100001" },
    EnvSetting { var: "HISSABACK_AUTH__KEY_CACHE_TTL_SECONDS", field: "auth.key_cache_ttl_seconds", default: "30", example: "31" },
    EnvSetting { var: "HISSABACK_AUTH__DEFAULT_RATE_LIMIT__PER_MINUTE", field: "auth.default_rate_limit.per_minute", default: "300", example: "301" },
    EnvSetting { var: "HISSABACK_AUTH__DEFAULT_RATE_LIMIT__BURST", field: "auth.default_rate_limit.burst", default: "1000", example: "1001" },
    EnvSetting { var: "HISSABACK_AUTH__PEPPER", field: "auth.pepper", default: "unset", example: "pppppppppppppppppppppppppppppppp" },
    EnvSetting { var: "HISSABACK_AUTH__PEPPER_FILE", field: "auth.pepper_file", default: "unset", example: "/run/secrets/pepper" },
    EnvSetting { var: "HISSABACK_WEBHOOK_ALLOW", field: "webhooks.allow", default: "empty", example: "10.0.0.0/8" },
    EnvSetting { var: "HISSABACK_WEBHOOK_HTTPS_ONLY", field: "webhooks.https_only", default: "true", example: "false" },
    EnvSetting { var: "HISSABACK_WEBHOOK_RETRY_SCHEDULE", field: "webhooks.retry_schedule", default: "0s,5s,5m,30m,2h,5h,10h,10h", example: "0s,1m" },
    EnvSetting { var: "HISSABACK_WEBHOOKS__RETRY_JITTER", field: "webhooks.retry_jitter", default: "0.2", example: "0.3" },
    EnvSetting { var: "HISSABACK_WEBHOOKS__CONNECT_TIMEOUT_MS", field: "webhooks.connect_timeout_ms", default: "5000", example: "5001" },
    EnvSetting { var: "HISSABACK_WEBHOOKS__TIMEOUT_MS", field: "webhooks.timeout_ms", default: "15000", example: "15001" },
    EnvSetting { var: "HISSABACK_WEBHOOKS__MAX_CONCURRENCY", field: "webhooks.max_concurrency", default: "64", example: "65" },
    EnvSetting { var: "HISSABACK_WEBHOOKS__PER_ENDPOINT_CONCURRENCY", field: "webhooks.per_endpoint_concurrency", default: "4", example: "5" },
    EnvSetting { var: "HISSABACK_WEBHOOKS__DISABLE_AFTER_HOURS", field: "webhooks.disable_after_hours", default: "120", example: "121" },
    EnvSetting { var: "HISSABACK_WEBHOOKS__RESPONSE_BODY_LIMIT_BYTES", field: "webhooks.response_body_limit_bytes", default: "4096", example: "4097" },
    EnvSetting { var: "HISSABACK_WEBHOOKS__SWEEP_SECONDS", field: "webhooks.sweep_seconds", default: "60", example: "61" },
    EnvSetting { var: "HISSABACK_WEBHOOKS__ORPHAN_GRACE_SECONDS", field: "webhooks.orphan_grace_seconds", default: "120", example: "121" },
    EnvSetting { var: "HISSABACK_WEBHOOKS__DELIVERY_LOG_DAYS", field: "webhooks.delivery_log_days", default: "30", example: "31" },
    EnvSetting { var: "HISSABACK_PARTNER__OFFERS_REFRESH_SECONDS", field: "partner.offers_refresh_seconds", default: "60", example: "61" },
    EnvSetting { var: "HISSABACK_PARTNER__PUBLIC_CACHE_SECONDS", field: "partner.public_cache_seconds", default: "300", example: "301" },
    EnvSetting { var: "HISSABACK_OFFERS_SYNC_INTERVAL", field: "partner.offers_sync_interval", default: "5m", example: "10m" },
    EnvSetting { var: "HISSABACK_PARTNER__CLICK_CACHE_CAPACITY", field: "partner.click_cache_capacity", default: "1000000", example: "1000001" },
    EnvSetting { var: "HISSABACK_PARTNER__CLICK_CACHE_IDLE_SECONDS", field: "partner.click_cache_idle_seconds", default: "86400", example: "86401" },
    EnvSetting { var: "HISSABACK_PARTNER__NETWORK_CACHE_SECONDS", field: "partner.network_cache_seconds", default: "30", example: "31" },
    EnvSetting { var: "HISSABACK_PARTNER__POSTBACK_RATE_LIMIT__PER_MINUTE", field: "partner.postback_rate_limit.per_minute", default: "60000", example: "60001" },
    EnvSetting { var: "HISSABACK_PARTNER__POSTBACK_RATE_LIMIT__BURST", field: "partner.postback_rate_limit.burst", default: "20000", example: "20001" },
    EnvSetting { var: "HISSABACK_PARTNER__CLICK_RATE_LIMIT_PER_ADDRESS__PER_MINUTE", field: "partner.click_rate_limit_per_address.per_minute", default: "600", example: "601" },
    EnvSetting { var: "HISSABACK_PARTNER__CLICK_RATE_LIMIT_PER_ADDRESS__BURST", field: "partner.click_rate_limit_per_address.burst", default: "300", example: "301" },
    EnvSetting { var: "HISSABACK_PARTNER__CLICK_RATE_LIMIT_PER_LINK__PER_MINUTE", field: "partner.click_rate_limit_per_link.per_minute", default: "60000", example: "60001" },
    EnvSetting { var: "HISSABACK_PARTNER__CLICK_RATE_LIMIT_PER_LINK__BURST", field: "partner.click_rate_limit_per_link.burst", default: "20000", example: "20001" },
    EnvSetting { var: "HISSABACK_OFFERS_FEED_URL", field: "partner.offers_feed_url", default: "unset", example: "https://network.example.test/feed.json" },
    EnvSetting { var: "HISSABACK_USAGE__FLUSH_MS", field: "usage.flush_ms", default: "1000", example: "1001" },
    EnvSetting { var: "HISSABACK_USAGE__AUDIT_RETENTION_DAYS", field: "usage.audit_retention_days", default: "90", example: "91" },
    EnvSetting { var: "HISSABACK_USAGE__MAX_PENDING_AUDIT", field: "usage.max_pending_audit", default: "100000", example: "100001" },
    EnvSetting { var: "HISSABACK_PRIVACY__CLICK_PERSONAL_DATA_DAYS", field: "privacy.click_personal_data_days", default: "30", example: "31" },
    EnvSetting { var: "HISSABACK_PRIVACY__SWEEP_SECONDS", field: "privacy.sweep_seconds", default: "3600", example: "3601" },
    EnvSetting { var: "HISSABACK_PAYOUTS__PROVIDER", field: "payouts.provider", default: "manual", example: "http" },
    EnvSetting { var: "HISSABACK_PAYOUTS__HTTP_URL", field: "payouts.http_url", default: "empty", example: "https://payouts.example.test/pay" },
    EnvSetting { var: "HISSABACK_PAYOUTS__TIMEOUT_MS", field: "payouts.timeout_ms", default: "10000", example: "10001" },
    EnvSetting { var: "HISSABACK_PAYOUTS__WAIT_MS", field: "payouts.wait_ms", default: "15000", example: "15001" },
    EnvSetting { var: "HISSABACK_ADMIN_TOKEN", field: "admin.token", default: "unset", example: "an-admin-token-0123456789" },
    EnvSetting { var: "HISSABACK_GEOIP_DB", field: "catalogue.geoip_db", default: "unset", example: "/srv/geoip.mmdb" },
    EnvSetting { var: "HISSABACK_SECRETS_KEY", field: "secrets.key", default: "unset", example: "kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk" },
    EnvSetting { var: "HISSABACK_SECRETS__KEY_FILE", field: "secrets.key_file", default: "unset", example: "/run/secrets/secrets-key" },
];

/// The settings that only a configuration file sets (the environment's keys are lowercased,
/// these fields are upper case).
pub const FILE_ONLY_SETTINGS: &[&str] = &["catalogue.default_rates.GBP", "catalogue.default_rates.EUR", "catalogue.default_rates.INR", "catalogue.default_rates.BGN"];

/// The `--help` epilogue: every environment variable, the setting and its default.
pub fn env_help() -> String {
    let width = ENV_SETTINGS.iter().map(|s| s.var.len()).max().unwrap_or(0);
    let mut out = String::from(
        "Exit codes: 0 ok; 1 failed (`ledger check`: an invariant is broken); 2 `ledger check` could not run, or a usage error.\n\n\
         Environment (overrides --config/hissaback.toml, which overrides the defaults of configuration/defaults.toml;\n\
         any field can also be set as HISSABACK_<SECTION>__<FIELD>, lists comma-separated):\n",
    );
    out.push_str(&format!("  {:width$}  configuration file (default: ./hissaback.toml when it exists)\n", "HISSABACK_CONFIG"));
    for s in ENV_SETTINGS {
        out.push_str(&format!("  {:width$}  {} [default: {}]\n", s.var, s.field, s.default));
    }
    out.push_str(&format!("Configuration file only: {}.", FILE_ONLY_SETTINGS.join(", ")));
    out
}

/// `hissaback ledger check` could not check (exit code 2): the configuration, the store or a
/// read of it failed. Attached as context, so the cause still prints.
#[derive(Debug, thiserror::Error)]
#[error("ledger check could not run")]
struct CheckDidNotRun;

/// `hissaback ledger check` found broken invariants (exit code 1; each printed on stdout).
#[derive(Debug, thiserror::Error)]
#[error("ledger check: {0} problems")]
struct LedgerBroken(usize);

/// Exit code 2: `ledger check` could not check.
pub const EXIT_CHECK_DID_NOT_RUN: u8 = 2;

/// Runs the command; a failure is one line on stderr (`hissaback: <error>: <cause>...`) and
/// exit code 1, or 2 when `ledger check` could not run.
pub fn run() -> std::process::ExitCode {
    match main() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hissaback: {}", one_line(&e));
            exit_code(&e)
        }
    }
}

/// The exit code of a failure.
fn exit_code(e: &anyhow::Error) -> std::process::ExitCode {
    if e.downcast_ref::<CheckDidNotRun>().is_some() {
        std::process::ExitCode::from(EXIT_CHECK_DID_NOT_RUN)
    } else {
        std::process::ExitCode::FAILURE
    }
}

/// The error and its causes on one line, each cause once (a cause whose text its error
/// already shows is left out).
pub fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string().split_whitespace().collect::<Vec<_>>().join(" ");
        if text.is_empty() || line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

pub fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    telemetry::init();
    let checking = matches!(cli.command, Command::Ledger { command: LedgerCommand::Check });
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(s) => s,
        Err(e) if checking => return Err(anyhow::Error::new(e).context(CheckDidNotRun)),
        Err(e) => return Err(e.into()),
    };
    // The system arbiter's blocking threads (the store and log calls of consumers and
    // recorders) start at the background priority; the arbiter's own thread is lowered once
    // the HTTP workers have started (`Application::run_until_stopped`).
    let nice = i32::from(settings.server.background_nice);
    let system = actix_web::rt::System::with_tokio_rt(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .on_thread_start(move || crate::priority::lower_current_thread(nice))
            .build()
            .expect("the system runtime starts")
    });
    system.block_on(async move {
        match cli.command {
            Command::Serve => serve(settings).await,
            Command::Demo => demo::run(settings).await,
            Command::Migrate => migrate(settings).await,
            Command::Ledger { command: LedgerCommand::Check } => ledger_check(settings).await,
            Command::DeadLetters { command: DeadLettersCommand::List { topic } } => dead_letters_list(settings, &topic).await,
            Command::DeadLetters { command: DeadLettersCommand::Replay { topic } } => dead_letters_replay(settings, &topic).await,
        }
    })
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let app = Application::build(settings).await?;
    tracing::info!(url = %app.state().public_base_url, port = app.port(), "hissaback serving");
    app.run_until_stopped().await
}

async fn migrate(settings: Settings) -> anyhow::Result<()> {
    if settings.store.backend == StoreBackend::Scylla {
        store::scylla::migrate(&settings.store.scylla).await?;
    }
    store::open(&settings).await?;
    crate::events::migrate(&settings).await?;
    match settings.store.backend {
        StoreBackend::Embedded => println!(
            "embedded store ready in {} (schema created on start; nothing else to migrate)",
            settings.store.data_dir.display()
        ),
        StoreBackend::Scylla => println!("scylla keyspace `{}` ready", settings.store.scylla.keyspace),
    }
    if settings.events.backend == crate::configuration::EventsBackend::Kafka {
        println!("kafka topics ready on {} (prefix `{}`)", settings.events.kafka.brokers, settings.events.kafka.topic_prefix);
    }
    Ok(())
}

/// Exit 0: every invariant holds; 1 (`LedgerBroken`): some do not; 2 (`CheckDidNotRun`): the
/// store could not be opened or read, so nothing is known about the ledger.
async fn ledger_check(settings: Settings) -> anyhow::Result<()> {
    let store = store::open(&settings).await.context(CheckDidNotRun)?;
    let (checked, problems) = crate::partner::ledger::check(&store).await.context(CheckDidNotRun)?;
    if problems.is_empty() {
        println!("ledger check: {checked} conversions, every invariant holds");
        Ok(())
    } else {
        for p in &problems {
            println!("ledger check: {p}");
        }
        println!("ledger check: {checked} conversions, {} problems", problems.len());
        Err(LedgerBroken(problems.len()).into())
    }
}

/// `TOPIC` as given on the command line (a base name; `<topic>.dead-letter` is accepted too).
fn parse_topic(name: &str) -> anyhow::Result<Topic> {
    let base = name.strip_suffix(".dead-letter").unwrap_or(name);
    Topic::ALL.into_iter().find(|t| t.as_str() == base).ok_or_else(|| {
        let known: Vec<&str> = Topic::ALL.iter().map(|t| t.as_str()).collect();
        anyhow::anyhow!("unknown topic `{name}`; topics: {}", known.join(", "))
    })
}

/// How long to wait for a first message (a Kafka consumer joins its group first), then for
/// each further batch, before taking the dead-letter topic as read to its end.
fn read_waits(bus: &dyn EventBus) -> (Duration, Duration) {
    match bus.backend() {
        "kafka" => (Duration::from_secs(15), Duration::from_secs(3)),
        _ => (Duration::from_secs(2), Duration::from_secs(1)),
    }
}

/// The next batch of `sub`, or `None` at the end of the topic: nothing left to read (when
/// the backend can tell) or nothing arrived within `wait`.
async fn next_or_end(sub: &mut Box<dyn Subscription>, wait: Duration) -> anyhow::Result<Option<Vec<Delivery>>> {
    if sub.lag().await? == Some(0) {
        return Ok(None);
    }
    match tokio::time::timeout(wait, sub.next_batch(500, Duration::from_millis(5))).await {
        Ok(batch) => Ok(Some(batch?)),
        Err(_) => Ok(None),
    }
}

async fn dead_letters_list(settings: Settings, topic: &str) -> anyhow::Result<()> {
    let topic = parse_topic(topic)?;
    let bus = crate::events::open(&settings)?;
    let dead_letter = topic.dead_letter();
    // A group of its own that never commits: listing changes nothing.
    let group = format!("dead-letters.list.{}.{}", std::process::id(), chrono::Utc::now().timestamp_millis());
    let mut sub = bus.subscribe(&dead_letter, &group).await?;
    let (mut wait, then) = read_waits(bus.as_ref());
    let mut count = 0u64;
    while let Some(batch) = next_or_end(&mut sub, wait).await? {
        wait = then;
        for d in batch {
            count += 1;
            let at = format!("{dead_letter} {}/{}", d.partition, d.offset);
            match DeadLetter::decode(&d.payload) {
                Ok(p) => {
                    let parked = chrono::DateTime::from_timestamp_millis(p.parked_at_ms)
                        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
                        .unwrap_or_else(|| p.parked_at_ms.to_string());
                    println!(
                        "{at}: {} {}/{} key={} group={} reason={} attempts={} parked={parked} error={}",
                        p.topic,
                        p.partition,
                        p.offset,
                        p.key,
                        p.group,
                        p.reason.as_str(),
                        p.attempts,
                        p.error.replace(['\n', '\r'], " ")
                    );
                }
                Err(_) => println!("{at}: not an envelope ({} bytes, key={}); a replay publishes it as it is", d.payload.len(), d.key),
            }
        }
    }
    println!("{count} parked events in {dead_letter}");
    Ok(())
}

async fn dead_letters_replay(settings: Settings, topic: &str) -> anyhow::Result<()> {
    let topic = parse_topic(topic)?;
    let bus = crate::events::open(&settings)?;
    let dead_letter = topic.dead_letter();
    // The group's committed position is how far this dead-letter topic has been replayed.
    let mut sub = bus.subscribe(&dead_letter, REPLAY_GROUP).await?;
    let (mut wait, then) = read_waits(bus.as_ref());
    let mut replayed = 0usize;
    while let Some(batch) = next_or_end(&mut sub, wait).await? {
        wait = then;
        let messages: Vec<(String, Vec<u8>)> = batch
            .iter()
            .map(|d| match DeadLetter::decode(&d.payload) {
                Ok(p) => (p.key, p.payload),
                // Parked before envelopes existed: the message itself.
                Err(_) => (d.key.clone(), d.payload.clone()),
            })
            .collect();
        let n = messages.len();
        // Published before the commit: a crash in between replays these again (harmless).
        bus.publish_batch(topic.as_str(), messages).await?;
        sub.commit_batch(&batch).await?;
        replayed += n;
    }
    println!("replayed {replayed} parked events from {dead_letter} onto {topic}");
    Ok(())
}

#[cfg(test)]
// figment::Jail's closures return figment::Error, which is large.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use figment::providers::Format;
    use figment::value::Value;
    use figment::Provider;

    /// Variables another one must come with to pass validation.
    fn companions(var: &str) -> &'static [(&'static str, &'static str)] {
        match var {
            "HISSABACK_PAYOUTS__PROVIDER" => &[("HISSABACK_PAYOUTS__HTTP_URL", "https://payouts.example.test/pay")],
            // A role needs a password (the variable itself gives the baseline one); SASL settings
            // need a SASL protocol, a mechanism and credentials (the password may come as a
            // `client` property, so that the password variables start from none).
            "HISSABACK_STORE__SCYLLA__USERNAME" => &[("HISSABACK_STORE__SCYLLA__USERNAME", "baseline"), ("HISSABACK_STORE__SCYLLA__PASSWORD", "a-scylla-password")],
            // A client certificate goes with its key.
            "HISSABACK_STORE__SCYLLA__TLS_CERT_FILE" | "HISSABACK_STORE__SCYLLA__TLS_KEY_FILE" => &[("HISSABACK_STORE__SCYLLA__TLS_CERT_FILE", "/dev/null"), ("HISSABACK_STORE__SCYLLA__TLS_KEY_FILE", "/dev/null")],
            "HISSABACK_EVENTS__KAFKA__SSL_CERTIFICATE_LOCATION" | "HISSABACK_EVENTS__KAFKA__SSL_KEY_LOCATION" => &[("HISSABACK_EVENTS__KAFKA__SSL_CERTIFICATE_LOCATION", "/dev/null"), ("HISSABACK_EVENTS__KAFKA__SSL_KEY_LOCATION", "/dev/null")],
            "HISSABACK_EVENTS__KAFKA__SASL_MECHANISM" | "HISSABACK_EVENTS__KAFKA__SASL_USERNAME" | "HISSABACK_EVENTS__KAFKA__SASL_PASSWORD" | "HISSABACK_EVENTS__KAFKA__SASL_PASSWORD_FILE" => &[
                ("HISSABACK_EVENTS__KAFKA__SECURITY_PROTOCOL", "sasl_ssl"),
                ("HISSABACK_EVENTS__KAFKA__SASL_MECHANISM", "PLAIN"),
                ("HISSABACK_EVENTS__KAFKA__SASL_USERNAME", "baseline"),
                ("HISSABACK_EVENTS__KAFKA__CLIENT", "sasl.password=baseline"),
            ],
            _ => &[],
        }
    }

    #[test]
    fn every_listed_variable_reaches_its_setting() {
        for s in ENV_SETTINGS {
            figment::Jail::expect_with(|jail| {
                for (k, v) in companions(s.var) {
                    jail.set_env(k, v);
                }
                let before = format!("{:?}", Settings::load(None).map_err(|e| format!("{}: baseline: {e}", s.var))?);
                jail.set_env(s.var, s.example);
                let after = format!("{:?}", Settings::load(None).map_err(|e| format!("{}={}: refused: {e}", s.var, s.example))?);
                assert_ne!(before, after, "{}={} did not change {}: the loader ignores the variable", s.var, s.example, s.field);
                Ok(())
            });
        }
    }

    fn leaves(prefix: &str, value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Dict(_, dict) => {
                for (k, v) in dict {
                    let path = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                    leaves(&path, v, out);
                }
            }
            _ => out.push(prefix.to_string()),
        }
    }

    #[test]
    fn every_setting_of_the_defaults_is_listed_once() {
        let defaults = figment::Figment::from(figment::providers::Toml::string(include_str!("../configuration/defaults.toml")));
        let data = defaults.data().expect("defaults parse");
        let mut fields = Vec::new();
        for dict in data.values() {
            for (k, v) in dict {
                leaves(k, v, &mut fields);
            }
        }
        assert!(fields.len() > 50, "{fields:?}");
        for f in &fields {
            let listed = ENV_SETTINGS.iter().filter(|s| s.field == f).count() + FILE_ONLY_SETTINGS.iter().filter(|s| **s == f).count();
            assert_eq!(listed, 1, "setting {f} of configuration/defaults.toml must be listed once in ENV_SETTINGS (or FILE_ONLY_SETTINGS)");
        }
        let mut vars: Vec<&str> = ENV_SETTINGS.iter().map(|s| s.var).collect();
        vars.sort_unstable();
        vars.dedup();
        assert_eq!(vars.len(), ENV_SETTINGS.len(), "a variable is listed twice");
        for s in ENV_SETTINGS {
            assert!(s.var.starts_with("HISSABACK_") && s.var != "HISSABACK_CONFIG", "{s:?}");
            assert_ne!(s.default, s.example, "{s:?}");
        }
    }

    #[test]
    fn long_help_lists_every_variable_with_its_default_and_the_config_variable() {
        Cli::command().debug_assert();
        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains("[env: HISSABACK_CONFIG="), "{help}");
        for s in ENV_SETTINGS {
            let line = help.lines().find(|l| l.trim_start().starts_with(&format!("{} ", s.var))).unwrap_or_else(|| panic!("{} not in\n{help}", s.var));
            assert!(line.contains(s.field) && line.contains(&format!("[default: {}]", s.default)), "{line}");
        }
        let short = Cli::command().render_help().to_string();
        assert!(short.contains("hissaback --help"), "{short}");
    }

    #[test]
    fn the_config_file_comes_from_hissaback_config_too() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("HISSABACK_CONFIG", "custom.toml");
            let cli = Cli::try_parse_from(["hissaback", "ledger", "check"]).unwrap();
            assert_eq!(cli.config.as_deref(), Some(std::path::Path::new("custom.toml")));
            // The loader itself ignores the variable (no `__`, not a contract name).
            assert!(Settings::load(None).is_ok());
            Ok(())
        });
    }

    #[test]
    fn only_a_check_that_could_not_run_exits_2() {
        let code = |e: anyhow::Error| format!("{:?}", exit_code(&e));
        let two = format!("{:?}", std::process::ExitCode::from(2));
        let one = format!("{:?}", std::process::ExitCode::FAILURE);
        assert_eq!(code(anyhow::anyhow!("disk on fire").context(CheckDidNotRun)), two);
        assert_eq!(code(LedgerBroken(3).into()), one);
        assert_eq!(code(anyhow::anyhow!("anything else")), one);
        let e = anyhow::anyhow!("cannot create data directory /x").context(CheckDidNotRun);
        assert_eq!(one_line(&e), "ledger check could not run: cannot create data directory /x");
    }
}
