//! What every handler can reach: settings, the store, the key hasher, actor facades, metrics.

use crate::configuration::Settings;
use crate::domain::KeyHasher;
use crate::metrics::Metrics;
use crate::store::SharedStore;
use hissaback_actors::KeyUsage;
use hissaback_topics::SharedBus;
use secrecy::SecretString;
use std::sync::Arc;

pub struct AppState {
    pub settings: Arc<Settings>,
    pub store: SharedStore,
    pub bus: SharedBus,
    pub hasher: KeyHasher,
    /// Encrypts and decrypts webhook secrets kept in the store.
    pub secrets: crate::secrets::SecretBox,
    /// API keys and their affiliates in memory, kept current by `credential-changes`.
    pub credentials: crate::credentials::Credentials,
    pub key_usage: KeyUsage,
    /// Usage counters, campaign clicks and the audit log (batched by the usage recorder).
    pub usage: hissaback_actors::usage::Usage,
    pub admin_token: Option<SecretString>,
    /// Base of every URL the service hands out, without a trailing slash.
    pub public_base_url: String,
    pub metrics: Metrics,
    pub catalogue: crate::catalogue::Catalogue,
    /// Country database for `currency_from_ip`, when configured.
    pub geoip: Option<Arc<crate::catalogue::geoip::GeoIp>>,
    /// Queues webhook deliveries (new and redelivered ones).
    pub dispatcher: crate::webhooks::WebhookDispatcher,
    /// Hosts and networks exempt from the webhook private-address guard.
    pub webhook_allow: crate::webhooks::guard::Allowlist,
    /// The partner flow's offer catalogue.
    pub offers: Arc<crate::partner::offers::OfferCatalogue>,
    /// Campaign split rules in memory (the campaign registry actor).
    pub campaigns: hissaback_actors::campaigns::Campaigns,
    /// How queued rewards are paid.
    pub payouts: Arc<dyn crate::partner::payouts::PayoutProvider>,
    /// Clicks in memory for the postback path (shared with the postback processor).
    pub clicks: crate::partner::lookups::ClickCache,
    /// Networks by postback token, kept a short while.
    pub networks: crate::partner::lookups::NetworkCache,
    /// Pseudonyms of erased end users (keyed by the pepper; the ledger writer holds the same).
    pub pseudonyms: crate::partner::privacy::Pseudonyms,
    /// Proxies whose `X-Forwarded-For` is believed (`server.trusted_proxies`).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Rate-limit buckets (per key, and failed authentications per address).
    pub limits: Arc<hissaback_actors::rate_limit::Limits>,
    /// What every stream consumer reports about its batches (`/readyz` names stuck ones).
    pub consumer_health: hissaback_actors::consumer::ConsumerHealth,
}
