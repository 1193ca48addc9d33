//! Building and running the application: open the backends, start the actors, bind the
//! listener (and the metrics listener, when `server.metrics_listen` is set), serve until
//! SIGINT/SIGTERM, then drain and flush.
//!
//! Shutdown (the signals are handled here, not by actix):
//! - SIGTERM: `/readyz` answers 503 at once; requests are still served for
//!   `server.shutdown_drain_ms` (load balancers take the instance out meanwhile); then the
//!   listeners close and in-flight requests get `server.shutdown_timeout_seconds` to finish.
//! - SIGINT (Ctrl-C): the same without the drain delay.
//! - A second signal, or SIGQUIT: stop at once, without waiting for in-flight requests.

use crate::configuration::Settings;
use crate::credentials::{CredentialFollower, Credentials};
use crate::domain::KeyHasher;
use crate::extract;
use crate::metrics::{self, Metrics};
use crate::routes;
use crate::secrets::SecretBox;
use crate::state::AppState;
use crate::store::{self, StoreKeyUsageSink};
use actix_web::dev::Server;
use actix_web::middleware::{from_fn, Compress};
use actix_web::{web, App, HttpServer};
use anyhow::Context;
use crate::catalogue::actor::CatalogueFollower;
use crate::catalogue::geoip::GeoIp;
use crate::catalogue::Catalogue;
use crate::partner::ledger::{LedgerWriter, PostbackProcessor, StoreCampaignSource};
use crate::partner::lookups::{ClickCache, NetworkCache};
use crate::partner::payouts::Payer;
use hissaback_actors::campaigns::Campaigns;
use hissaback_actors::rate_limit::{Limits, RateLimiter};
use crate::partner::offers::OfferCatalogue;
use crate::partner::sync::OfferSync;
use actix::Supervisor;
use crate::webhooks::dispatcher::WebhookIntake;
use crate::webhooks::fanout::WebhookFanOut;
use crate::webhooks::guard::Allowlist;
use crate::webhooks::sender::Sender;
use crate::webhooks::WebhookDispatcher;
use hissaback_actors::consumer::{Backoff, ConsumerActor, ConsumerHealth, ConsumerOptions, Stop};
use hissaback_actors::usage::{Usage, UsageRecorder};
use hissaback_actors::{KeyUsage, KeyUsageRecorder};
use secrecy::SecretString;
use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub struct Application {
    port: u16,
    server: Server,
    /// The `/metrics` (and `/healthz`) listener of `server.metrics_listen`, and its port.
    metrics_server: Option<(Server, u16)>,
    /// Set at SIGTERM: `/readyz` answers 503 during the drain delay.
    draining: web::Data<routes::health::Draining>,
    drain: Duration,
    /// `server.background_nice`, when set.
    background_nice: Option<i32>,
    state: web::Data<AppState>,
    key_usage: KeyUsage,
    usage: Usage,
    /// Addresses of the stream consumers: supervisors restart an actor only while its
    /// address is held.
    _consumers: Vec<actix::Recipient<Stop>>,
    /// The offer feed sync actor, when a feed is configured.
    _offer_sync: Option<actix::Addr<OfferSync>>,
    _click_sweeper: actix::Addr<crate::partner::privacy::ClickSweeper>,
    _rate_limiter: actix::Addr<RateLimiter>,
}

impl Application {
    /// Opens the store, starts the actors and binds `server.listen` (port 0: any free port).
    /// Must run inside an actix system (`#[actix_web::main]`, `#[actix_web::test]`).
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        // On the heap: the whole build (the CQL driver's connection set-up included) is a
        // large future for the caller's stack, a test thread's 2 MiB among them.
        Box::pin(Self::build_on_heap(settings)).await
    }

    async fn build_on_heap(settings: Settings) -> anyhow::Result<Self> {
        // Bound first: an address in use fails here, before any actor or worker thread starts
        // (whose shutdown on the error path would otherwise print panics before the error).
        let listener = TcpListener::bind(&settings.server.listen)
            .with_context(|| format!("cannot listen on {}", settings.server.listen))?;
        let local = listener.local_addr()?;
        let metrics_listener = match settings.server.metrics_listen.as_deref().filter(|a| !a.is_empty()) {
            Some(addr) => Some(TcpListener::bind(addr).with_context(|| format!("cannot listen on {addr} (server.metrics_listen)"))?),
            None => None,
        };
        let pepper = load_secret(
            "auth.pepper",
            settings.auth.pepper.as_ref(),
            settings.auth.pepper_file.as_deref(),
            &settings.store.data_dir.join("pepper"),
        )?;
        let secrets = SecretBox::new(&load_secret(
            "secrets.key",
            settings.secrets.key.as_ref(),
            settings.secrets.key_file.as_deref(),
            &settings.store.data_dir.join("secrets.key"),
        )?);
        let store = store::open(&settings).await.context("opening the store")?;
        let bus = crate::events::open(&settings)?;
        let catalogue = Catalogue::start(store.clone(), settings.catalogue.default_rates.clone())
            .await
            .context("loading the catalogue")?;
        let metrics = Metrics::new();
        // Every stream consumer reports its batches here; /readyz reads it.
        let consumer_health = ConsumerHealth::new();
        let consumer_options = consumer_options(&settings.events);
        let catalogue_follower = ConsumerActor::one_by_one(
            "catalogue-follower",
            bus.clone(),
            format!("catalogue.{}", settings.server.instance_id),
            Arc::new(CatalogueFollower(catalogue.clone())),
            metrics.consumers.clone(),
        )
        .with_options(consumer_options)
        .with_health(consumer_health.clone())
        .with_transient(store_unavailable)
        .start_supervised();
        let credentials = Credentials::new(settings.auth.key_cache_capacity, Duration::from_secs(settings.auth.key_cache_ttl_seconds));
        let credential_follower = ConsumerActor::one_by_one(
            "credential-follower",
            bus.clone(),
            format!("credentials.{}", settings.server.instance_id),
            Arc::new(CredentialFollower(credentials.clone())),
            metrics.consumers.clone(),
        )
        .with_options(consumer_options)
        .with_health(consumer_health.clone())
        .start_supervised();
        let offers: Arc<OfferCatalogue> = Arc::new(
            OfferCatalogue::start(
                &store,
                Duration::from_secs(settings.partner.offers_refresh_seconds),
                Duration::from_secs(settings.partner.public_cache_seconds),
            )
            .await
            .context("loading the offer catalogue")?,
        );
        let limits = Arc::new(Limits::new(settings.auth.failures_per_minute));
        let rate_limiter = RateLimiter::start(limits.clone(), Duration::from_secs(600));
        let trusted_proxies = settings
            .server
            .trusted_proxies
            .iter()
            .map(|cidr| parse_network(cidr).with_context(|| format!("server.trusted_proxies: {cidr} is not an address or CIDR")))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let webhook_allow = Allowlist::parse(&settings.webhooks.allow).map_err(anyhow::Error::msg)?;
        let dispatcher = WebhookDispatcher::start(
            Sender::new(&settings.webhooks, store.clone(), secrets.clone(), metrics.clone())?,
            store.clone(),
            settings.webhooks.max_concurrency,
            settings.webhooks.per_endpoint_concurrency,
            &settings.server.instance_id,
            Duration::from_secs(settings.webhooks.sweep_seconds),
            chrono::Duration::seconds(settings.webhooks.orphan_grace_seconds as i64),
            metrics.clone(),
        );
        let webhook_intake = ConsumerActor::new(
            "webhook-intake",
            bus.clone(),
            "webhook-dispatch",
            Arc::new(WebhookIntake { store: store.clone(), dispatcher: dispatcher.clone() }),
            metrics.consumers.clone(),
        )
        .with_options(consumer_options)
        .with_health(consumer_health.clone())
        .with_transient(store_unavailable)
        .start_supervised();
        let clicks = ClickCache::new(settings.partner.click_cache_capacity, Duration::from_secs(settings.partner.click_cache_idle_seconds));
        let networks = NetworkCache::new(Duration::from_secs(settings.partner.network_cache_seconds), &pepper);
        let payouts = crate::partner::payouts::from_settings(&settings.payouts)?;
        let payer = ConsumerActor::new(
            "payer",
            bus.clone(),
            "payer",
            Arc::new(Payer { store: store.clone(), bus: bus.clone(), provider: payouts.clone() }),
            metrics.consumers.clone(),
        )
        .with_options(consumer_options)
        .with_health(consumer_health.clone())
        .with_transient(store_unavailable)
        .start_supervised();
        let postback_processor = ConsumerActor::new(
            "postback-processor",
            bus.clone(),
            "postback-processor",
            Arc::new(PostbackProcessor { store: store.clone(), bus: bus.clone(), clicks: clicks.clone() }),
            metrics.consumers.clone(),
        )
        .with_options(consumer_options)
        .with_health(consumer_health.clone())
        .with_transient(store_unavailable)
        .start_supervised();
        let campaigns = Campaigns::start(Arc::new(StoreCampaignSource(store.clone())));
        let pseudonyms = crate::partner::privacy::Pseudonyms::new(&pepper);
        let ledger_writer = ConsumerActor::new(
            "ledger",
            bus.clone(),
            "ledger",
            Arc::new(LedgerWriter {
                store: store.clone(),
                bus: bus.clone(),
                campaigns: campaigns.clone(),
                pseudonyms: pseudonyms.clone(),
            }),
            metrics.consumers.clone(),
        )
        .with_options(consumer_options)
        .with_health(consumer_health.clone())
        .with_transient(store_unavailable)
        .start_supervised();
        let offer_sync = match &settings.partner.offers_feed_url {
            Some(url) if !url.is_empty() => {
                let sync = OfferSync {
                    url: url.clone(),
                    every: humantime::parse_duration(&settings.partner.offers_sync_interval)?,
                    client: reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?,
                    store: store.clone(),
                    bus: bus.clone(),
                    offers: offers.clone(),
                    metrics: metrics.clone(),
                };
                Some(Supervisor::start(move |_| sync))
            }
            _ => None,
        };
        // Clicks' IPs and user agents past `privacy.click_personal_data_days` (embedded store).
        let click_sweeper = actix::Actor::start(crate::partner::privacy::ClickSweeper::new(
            store.clone(),
            Duration::from_secs(u64::from(settings.privacy.click_personal_data_days) * 86_400),
            Duration::from_secs(settings.privacy.sweep_seconds),
        )
        .with_delivery_retention(Duration::from_secs(u64::from(settings.webhooks.delivery_log_days) * 86_400)));
        let geoip = match &settings.catalogue.geoip_db {
            Some(path) => Some(Arc::new(GeoIp::open(path)?)),
            None => None,
        };
        let key_usage = KeyUsageRecorder::start(
            Arc::new(StoreKeyUsageSink(store.clone())),
            Duration::from_millis(settings.auth.last_used_flush_ms),
        );
        let usage = UsageRecorder::start(
            Arc::new(store::StoreUsageSink {
                store: store.clone(),
                audit_retention: Duration::from_secs(u64::from(settings.usage.audit_retention_days) * 86_400),
            }),
            Duration::from_millis(settings.usage.flush_ms),
            settings.usage.max_pending_audit,
            metrics.usage.clone(),
        );
        let public_base_url = if settings.server.public_base_url.is_empty() {
            format!("http://{local}")
        } else {
            settings.server.public_base_url.trim_end_matches('/').to_string()
        };
        let webhook_fanout = ConsumerActor::new(
            "webhook-fanout",
            bus.clone(),
            "webhook-fanout",
            Arc::new(WebhookFanOut { store: store.clone(), bus: bus.clone(), base_url: public_base_url.clone() }),
            metrics.consumers.clone(),
        )
        .with_options(consumer_options)
        .with_health(consumer_health.clone())
        .with_transient(store_unavailable)
        .start_supervised();
        let state = web::Data::new(AppState {
            admin_token: settings.admin.token.clone(),
            settings: Arc::new(settings.clone()),
            store,
            bus,
            hasher: KeyHasher::new(pepper),
            secrets,
            credentials,
            key_usage: key_usage.clone(),
            usage: usage.clone(),
            public_base_url,
            metrics,
            catalogue,
            geoip,
            dispatcher,
            webhook_allow,
            offers,
            campaigns,
            payouts,
            clicks,
            networks,
            pseudonyms,
            limits: limits.clone(),
            trusted_proxies,
            consumer_health,
        });
        let app_state = state.clone();
        let draining = web::Data::new(routes::health::Draining::default());
        let app_draining = draining.clone();
        let mut server = HttpServer::new(move || {
            App::new()
                .app_data(app_state.clone())
                .app_data(app_draining.clone())
                .app_data(extract::path_config())
                .app_data(extract::query_config())
                .wrap(Compress::default())
                .wrap(from_fn(crate::auth::rate_limit_headers))
                .wrap(from_fn(metrics::track))
                .wrap(from_fn(routes::openapi::head_as_get))
                .configure(routes::configure)
                .default_service(web::to(routes::not_found))
        })
        .listen(listener)?
        .disable_signals()
        .shutdown_timeout(settings.server.shutdown_timeout_seconds);
        if settings.server.workers > 0 {
            server = server.workers(settings.server.workers);
        }
        let metrics_server = match metrics_listener {
            Some(listener) => {
                let port = listener.local_addr()?.port();
                let app_state = state.clone();
                let server = HttpServer::new(move || {
                    App::new()
                        .app_data(app_state.clone())
                        .route("/metrics", web::get().to(routes::health::metrics))
                        .route("/healthz", web::get().to(routes::health::healthz))
                })
                .listen(listener)?
                .disable_signals()
                .workers(1)
                .shutdown_timeout(settings.server.shutdown_timeout_seconds)
                .run();
                Some((server, port))
            }
            None => None,
        };
        let drain = Duration::from_millis(settings.server.shutdown_drain_ms);
        let background_nice = Some(i32::from(settings.server.background_nice)).filter(|n| *n > 0);
        Ok(Self { port: local.port(), server: server.run(), metrics_server, draining, drain, background_nice, state, key_usage, usage, _consumers: vec![catalogue_follower.recipient(), credential_follower.recipient(), webhook_intake.recipient(), webhook_fanout.recipient(), postback_processor.recipient(), ledger_writer.recipient(), payer.recipient()], _offer_sync: offer_sync, _click_sweeper: click_sweeper, _rate_limiter: rate_limiter })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The port of the `server.metrics_listen` listener, when there is one.
    pub fn metrics_port(&self) -> Option<u16> {
        self.metrics_server.as_ref().map(|(_, port)| *port)
    }

    pub fn state(&self) -> web::Data<AppState> {
        self.state.clone()
    }

    /// A handle that stops the server (`stop(true)`: gracefully, as SIGTERM does after the
    /// drain delay); the metrics listener stops with it.
    pub fn handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    /// Serves until a signal (or [`Self::handle`]) stops the server, lets in-flight requests
    /// finish, then flushes what the actors still hold.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let main = self.server.handle();
        // A server serves only while polled: the metrics listener on a task of its own.
        let metrics = self.metrics_server.map(|(server, _)| (server.handle(), actix_web::rt::spawn(server)));
        let signals = actix_web::rt::spawn(stop_on_signals(main, self.draining.clone(), self.drain));
        if let Some(nice) = self.background_nice {
            // Runs once the listeners' first poll below has started their worker threads
            // (they keep the default priority): from then on this thread (the system
            // arbiter: consumers, recorders, sweepers, webhook dispatch) and the threads it
            // starts yield the core to the HTTP workers.
            actix_web::rt::spawn(async move { crate::priority::lower_current_thread(nice) });
        }
        let served = self.server.await;
        signals.abort();
        if let Some((handle, task)) = metrics {
            // Stopped with the main listener, however that one was stopped.
            handle.stop(true).await;
            if let Ok(Err(e)) = task.await {
                tracing::warn!(error = %e, "metrics listener stopped with an error");
            }
        }
        served?;
        if let Err(e) = self.key_usage.flush().await {
            tracing::warn!(error = %e, "final last_used_at flush failed");
        }
        if let Err(e) = self.usage.flush().await {
            tracing::warn!(error = %e, "final usage and audit flush failed");
        }
        tracing::info!("stopped");
        Ok(())
    }
}

/// Waits for SIGTERM, SIGINT or SIGQUIT and stops the server as the module documentation
/// says: not ready at once, serving on for `drain` (SIGTERM only), then a graceful stop; a
/// second signal (or SIGQUIT) stops it at once.
async fn stop_on_signals(server: actix_web::dev::ServerHandle, draining: web::Data<routes::health::Draining>, drain: Duration) {
    let Some(mut signals) = Signals::new() else {
        tracing::warn!("cannot listen for signals; stop the server with its handle");
        return;
    };
    let first = signals.next().await;
    draining.begin();
    if first == Signal::Quit {
        tracing::info!("SIGQUIT: stopping now");
        server.stop(false).await;
        return;
    }
    let drain = if first == Signal::Term { drain } else { Duration::ZERO };
    tracing::info!(signal = ?first, drain_ms = drain.as_millis() as u64, "shutting down: /readyz answers 503 from now on");
    let stop = async {
        actix_web::rt::time::sleep(drain).await;
        tracing::info!("closing the listeners; in-flight requests finish");
        server.stop(true).await;
    };
    tokio::select! {
        _ = stop => {}
        again = signals.next() => {
            tracing::warn!(signal = ?again, "second signal: stopping now");
            server.stop(false).await;
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Signal {
    Term,
    Int,
    Quit,
}

/// The shutdown signals (on Unix; Ctrl-C elsewhere).
struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
    #[cfg(unix)]
    quit: tokio::signal::unix::Signal,
}

impl Signals {
    #[cfg(unix)]
    fn new() -> Option<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Some(Self { term: signal(SignalKind::terminate()).ok()?, int: signal(SignalKind::interrupt()).ok()?, quit: signal(SignalKind::quit()).ok()? })
    }

    #[cfg(not(unix))]
    fn new() -> Option<Self> {
        Some(Self {})
    }

    #[cfg(unix)]
    async fn next(&mut self) -> Signal {
        tokio::select! {
            _ = self.term.recv() => Signal::Term,
            _ = self.int.recv() => Signal::Int,
            _ = self.quit.recv() => Signal::Quit,
        }
    }

    #[cfg(not(unix))]
    async fn next(&mut self) -> Signal {
        let _ = tokio::signal::ctrl_c().await;
        Signal::Int
    }
}

/// An address (`10.0.0.7`) or a network (`10.0.0.0/8`).
fn parse_network(s: &str) -> anyhow::Result<ipnet::IpNet> {
    let s = s.trim();
    match s.parse::<ipnet::IpNet>() {
        Ok(net) => Ok(net),
        Err(_) => Ok(ipnet::IpNet::from(s.parse::<std::net::IpAddr>()?)),
    }
}

/// How stream consumers batch, retry and park, from `[events]`.
/// A store that cannot be reached is an outage, not a poison event: retried, never parked.
fn store_unavailable(e: &anyhow::Error) -> bool {
    e.chain().any(|c| matches!(c.downcast_ref::<crate::store::StoreError>(), Some(crate::store::StoreError::Unavailable(_))))
}

fn consumer_options(events: &crate::configuration::EventsSettings) -> ConsumerOptions {
    ConsumerOptions {
        batch_max: events.batch_max,
        linger: Duration::from_millis(events.batch_linger_ms),
        backoff: Backoff {
            first: Duration::from_millis(events.handler_backoff_first_ms),
            max: Duration::from_millis(events.handler_backoff_max_ms),
        },
        max_attempts: events.handler_max_attempts,
        max_dead_letters_in_a_row: events.max_dead_letters_in_a_row,
    }
}

/// A pepper or key: from configuration, else from `file`, else from `default_file` (created
/// once, random and owner-only, on first start). At least
/// [`MIN_SECRET_BYTES`](crate::configuration::MIN_SECRET_BYTES) bytes wherever it comes from.
fn load_secret(name: &str, configured: Option<&SecretString>, file: Option<&Path>, default_file: &Path) -> anyhow::Result<SecretString> {
    use crate::configuration::MIN_SECRET_BYTES;
    use secrecy::ExposeSecret;
    if let Some(value) = configured {
        // Validation refused shorter ones already; trimmed like the files below.
        return Ok(value.expose_secret().trim().to_string().into());
    }
    let path = file.unwrap_or(default_file);
    match std::fs::read_to_string(path) {
        Ok(existing) if file.is_some() || !existing.trim().is_empty() => {
            let existing = existing.trim();
            anyhow::ensure!(existing.len() >= MIN_SECRET_BYTES, "{name} in {} must be at least {MIN_SECRET_BYTES} bytes", path.display());
            return Ok(existing.to_string().into());
        }
        // Empty: left by a crash of an older version between creating and writing it, so
        // nothing was ever hashed or encrypted with it; made anew below.
        Ok(_) => tracing::warn!(path = %path.display(), "{name} file is empty; creating a new one"),
        Err(e) if file.is_some() || e.kind() != std::io::ErrorKind::NotFound => {
            return Err(anyhow::Error::new(e).context(format!("reading {name} from {}", path.display())));
        }
        Err(_) => {}
    }
    use rand::distr::{Alphanumeric, SampleString};
    let value = Alphanumeric.sample_string(&mut rand::rng(), 64);
    write_atomically(path, value.as_bytes()).with_context(|| format!("creating {}", path.display()))?;
    tracing::info!(path = %path.display(), "created {name}");
    Ok(value.into())
}

/// Writes `bytes` to `path` so that a crash leaves either no file or the whole one: an
/// owner-only temporary file beside it, synced, renamed over `path`, then the directory synced
/// so the rename itself is durable.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("secret");
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let written = (|| {
        let mut file = options.open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written?;
    #[cfg(unix)]
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_file_is_created_once_owner_only_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("pepper");
        let first = load_secret("auth.pepper", None, None, &path).unwrap();
        use secrecy::ExposeSecret;
        assert_eq!(first.expose_secret().len(), 64);
        let again = load_secret("auth.pepper", None, None, &path).unwrap();
        assert_eq!(again.expose_secret(), first.expose_secret());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        // No temporary file left beside it.
        assert_eq!(std::fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);
    }

    #[test]
    fn an_empty_file_is_replaced_and_a_short_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.key");
        std::fs::write(&path, "").unwrap();
        use secrecy::ExposeSecret;
        assert_eq!(load_secret("secrets.key", None, None, &path).unwrap().expose_secret().len(), 64);
        std::fs::write(&path, "short\n").unwrap();
        let e = load_secret("secrets.key", None, None, &path).unwrap_err().to_string();
        assert!(e.contains("at least 32 bytes"), "{e}");
        let named = dir.path().join("mounted");
        assert!(load_secret("auth.pepper", None, Some(&named), &path).is_err(), "a named file must exist");
        std::fs::write(&named, format!("{}\n", "m".repeat(40))).unwrap();
        assert_eq!(load_secret("auth.pepper", None, Some(&named), &path).unwrap().expose_secret(), &"m".repeat(40));
    }
}
