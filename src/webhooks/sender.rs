//! One delivery attempt: the HTTP client (timeouts, no redirects, no proxy, the guard as its
//! DNS resolver), the headers, the attempt's record, and the decision about what comes next.

use super::guard::Allowlist;
use super::signature;
use crate::configuration::WebhookSettings;
use crate::metrics::Metrics;
use crate::secrets::SecretBox;
use crate::store::{DeliveryAttempt, DeliveryRecord, DeliveryState, SharedStore, WebhookChange, WebhookRecord};
use chrono::{DateTime, Utc};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Resolves names and keeps only the addresses the guard permits.
struct GuardResolver {
    allow: Allowlist,
}

impl Resolve for GuardResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow = self.allow.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let all: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let exempt = allow.allows_host(&host);
            let permitted: Vec<SocketAddr> = all.into_iter().filter(|a| exempt || allow.permits(a.ip())).collect();
            if permitted.is_empty() {
                let err = std::io::Error::new(std::io::ErrorKind::PermissionDenied, format!("{host} resolves only to private or special addresses"));
                return Err(Box::new(err) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(permitted.into_iter()) as Addrs)
        })
    }
}

/// What an attempt came to, for the dispatcher to write and act on.
pub struct Attempted {
    /// The delivery with the attempt appended and its state, `next_attempt_at` and `manual`
    /// updated: pending with a due time (a retry), succeeded or failed.
    pub delivery: DeliveryRecord,
    /// The webhook as later attempts should see it, when the attempt changed it (an endpoint
    /// that starts or stops failing, or is disabled); `Some(None)`: it is gone.
    pub webhook: Option<Option<WebhookRecord>>,
    /// The endpoint did not answer at all (timeout, connection refused or failed): the
    /// dispatcher gives it one attempt at a time until it answers again.
    pub unreachable: bool,
}

pub struct Sender {
    client: reqwest::Client,
    store: SharedStore,
    allow: Allowlist,
    schedule: Vec<Duration>,
    jitter: f64,
    disable_after: chrono::Duration,
    body_limit: usize,
    /// Opens the stored (encrypted) secret of each webhook for the attempt's headers.
    secrets: SecretBox,
    metrics: Metrics,
}

impl Sender {
    pub fn new(settings: &WebhookSettings, store: SharedStore, secrets: SecretBox, metrics: Metrics) -> anyhow::Result<Self> {
        let allow = Allowlist::parse(&settings.allow).map_err(anyhow::Error::msg)?;
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_millis(settings.connect_timeout_ms))
            .timeout(Duration::from_millis(settings.timeout_ms))
            .redirect(reqwest::redirect::Policy::none())
            // Straight to the target: through a proxy (reqwest follows HTTP_PROXY/HTTPS_PROXY
            // by default) the proxy would resolve the host and the guard below never would.
            .no_proxy()
            .user_agent(concat!("hissaback-webhooks/", env!("CARGO_PKG_VERSION")))
            .dns_resolver(Arc::new(GuardResolver { allow: allow.clone() }))
            .build()?;
        Ok(Self {
            client,
            store,
            allow,
            schedule: settings.schedule().map_err(anyhow::Error::msg)?,
            jitter: settings.retry_jitter,
            disable_after: chrono::Duration::hours(i64::try_from(settings.disable_after_hours).unwrap_or(i64::MAX / 3_600_000)),
            body_limit: settings.response_body_limit_bytes,
            secrets,
            metrics,
        })
    }

    /// The delay before attempt number `n` (0-based), with jitter.
    fn delay_before(&self, n: usize) -> Option<Duration> {
        let base = *self.schedule.get(n)?;
        let extra = base.mul_f64(self.jitter * rand::random::<f64>());
        Some(base + extra)
    }

    /// When the first attempt of a new delivery is due.
    pub fn first_due(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now + chrono::Duration::from_std(self.delay_before(0).unwrap_or_default()).unwrap_or_default()
    }

    /// POSTs the delivery once to `webhook` (`None`: deleted) and answers the delivery with
    /// the attempt recorded; writing it is the caller's (the dispatcher writes finished
    /// attempts in batches). The webhook is written only when the endpoint's health changes
    /// (it starts or stops failing, or is disabled): rare, and never per attempt.
    pub async fn attempt(&self, webhook: Option<&WebhookRecord>, mut d: DeliveryRecord) -> Attempted {
        if d.state != DeliveryState::Pending {
            return Attempted { delivery: d, webhook: None, unreachable: false };
        }
        let now = Utc::now();
        let webhook = match webhook {
            Some(w) if w.disabled_at.is_none() => w,
            Some(w) => {
                let why = format!("endpoint disabled: {}", w.disabled_reason.clone().unwrap_or_default());
                return self.give_up(d, now, why);
            }
            None => return self.give_up(d, now, "webhook deleted".into()),
        };
        let started = Instant::now();
        let outcome = self.post(webhook, &d).await;
        let latency = started.elapsed();
        let (status_code, error) = match &outcome {
            Ok((code, _)) if (200..300).contains(code) => (Some(*code), None),
            Ok((code, body)) => (Some(*code), Some(format!("HTTP {code}: {body}"))),
            Err(e) => (None, Some(e.clone())),
        };
        d.attempts.push(DeliveryAttempt { at: now, status_code, latency_ms: latency.as_millis() as u64, error: error.clone() });
        d.updated_at = Utc::now();
        let next = if error.is_none() {
            d.state = DeliveryState::Succeeded;
            d.next_attempt_at = None;
            "success"
        } else {
            let retry = if d.manual { None } else { self.delay_before(d.attempts.len()) };
            match retry {
                Some(delay) => {
                    d.next_attempt_at = Some(Utc::now() + chrono::Duration::from_std(delay).unwrap_or_default());
                    "retry"
                }
                None => {
                    d.state = DeliveryState::Failed;
                    d.next_attempt_at = None;
                    "failed"
                }
            }
        };
        // The delivery id is the `webhook-id` header the endpoint saw: what an affiliate quotes.
        // Per attempt at DEBUG (`hissaback::webhooks::sender=debug`); a delivery given up on at INFO.
        if next == "failed" {
            tracing::info!(delivery = %d.id, webhook = webhook.id, event = %d.event, attempts = d.attempts.len(), status = ?status_code, error = error.as_deref().unwrap_or(""), "webhook delivery failed; no more attempts");
        } else {
            tracing::debug!(delivery = %d.id, webhook = webhook.id, event = %d.event, attempt = d.attempts.len(), outcome = next, status = ?status_code, latency_ms = latency.as_millis() as u64, "webhook attempt");
        }
        let webhook = match &error {
            None => self.endpoint_succeeded(webhook).await,
            Some(e) => self.endpoint_failed(webhook, e).await,
        };
        d.manual = false;
        self.metrics.webhook_deliveries.with_label_values(&[&d.event, next]).inc();
        self.metrics.webhook_attempt_seconds.with_label_values(&[next]).observe(latency.as_secs_f64());
        Attempted { delivery: d, webhook, unreachable: outcome.is_err() }
    }

    fn give_up(&self, mut d: DeliveryRecord, now: DateTime<Utc>, why: String) -> Attempted {
        d.attempts.push(DeliveryAttempt { at: now, status_code: None, latency_ms: 0, error: Some(why) });
        d.state = DeliveryState::Failed;
        d.next_attempt_at = None;
        d.updated_at = now;
        d.manual = false;
        self.metrics.webhook_deliveries.with_label_values(&[&d.event, "failed"]).inc();
        Attempted { delivery: d, webhook: None, unreachable: false }
    }

    /// The HTTP exchange: status and the first bytes of the answer, or why there was none.
    async fn post(&self, webhook: &WebhookRecord, d: &DeliveryRecord) -> Result<(u16, String), String> {
        let url = url::Url::parse(&webhook.url).map_err(|e| format!("invalid url: {e}"))?;
        if let Some(host) = url.host_str() {
            let bare = host.trim_start_matches('[').trim_end_matches(']');
            if let Ok(ip) = bare.parse::<IpAddr>() {
                if !self.allow.permits(ip) {
                    return Err(format!("refused: {ip} is a private or special address"));
                }
            }
        }
        // Plain only for these headers: the store keeps it encrypted.
        let secret = self.secrets.open(&webhook.secret).map_err(|e| format!("webhook secret unreadable: {e}"))?;
        let ts = Utc::now().timestamp();
        let res = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .header("X-Affiliate-Webhook-Key", &secret)
            .header("webhook-id", &d.id)
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", signature(&secret, &d.id, ts, &d.payload))
            .body(d.payload.clone())
            .send()
            .await
            .map_err(|e| describe(&e))?;
        let status = res.status().as_u16();
        let mut res = res;
        let mut body = Vec::new();
        while let Ok(Some(chunk)) = res.chunk().await {
            body.extend_from_slice(&chunk[..chunk.len().min(self.body_limit.saturating_sub(body.len()))]);
            if body.len() >= self.body_limit {
                break;
            }
        }
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }

    /// A success ends the endpoint's run of failures: written only when `webhook` (as the
    /// dispatcher last saw it) was failing.
    async fn endpoint_succeeded(&self, webhook: &WebhookRecord) -> Option<Option<WebhookRecord>> {
        webhook.failing_since?;
        let change: WebhookChange = Box::new(|w: &mut WebhookRecord| {
            let changed = w.failing_since.take().is_some();
            if changed {
                w.touch();
            }
            changed
        });
        self.update_health(webhook, change).await
    }

    /// A failure starts the endpoint's run of failures, or disables it once the run is
    /// `disable_after` long: written only at those two transitions.
    async fn endpoint_failed(&self, webhook: &WebhookRecord, error: &str) -> Option<Option<WebhookRecord>> {
        let now = Utc::now();
        let due_to_disable = webhook.failing_since.is_some_and(|since| now - since >= self.disable_after);
        if webhook.failing_since.is_some() && !due_to_disable {
            return None;
        }
        let (disable_after, error) = (self.disable_after, error.chars().take(200).collect::<String>());
        let change: WebhookChange = Box::new(move |w: &mut WebhookRecord| {
            let started = w.failing_since.is_none();
            let since = *w.failing_since.get_or_insert(now);
            let disable = w.disabled_at.is_none() && now - since >= disable_after;
            if disable {
                w.disabled_at = Some(now);
                w.disabled_reason =
                    Some(format!("Deliveries failed for {} hours without a success (last error: {error}).", disable_after.num_hours()));
            }
            if started || disable {
                w.touch();
            }
            started || disable
        });
        let updated = self.update_health(webhook, change).await;
        if let Some(Some(w)) = &updated {
            if w.disabled_at.is_some_and(|at| at == now) {
                self.metrics.webhook_endpoints_disabled.inc();
                tracing::warn!(webhook = w.id, "webhook endpoint disabled after failing too long");
            }
        }
        updated
    }

    /// Applies a health change (`failing_since`, `disabled_at`, `disabled_reason`: the only
    /// fields the dispatcher writes) to the webhook as stored now, never to the copy the
    /// attempt was sent with: the API may have rotated its secret, re-enabled it or deleted it
    /// meanwhile, and those changes stand (a deleted webhook stays deleted).
    /// A secret still stored in plain text (from before encryption) is encrypted by the same
    /// write.
    async fn update_health(&self, webhook: &WebhookRecord, change: WebhookChange) -> Option<Option<WebhookRecord>> {
        let secrets = self.secrets.clone();
        let change: WebhookChange = Box::new(move |w: &mut WebhookRecord| {
            let changed = change(w);
            if let (true, Some(sealed)) = (changed, secrets.reseal(&w.secret)) {
                w.secret = sealed;
            }
            changed
        });
        match self.store.update_webhook(webhook.affiliate_id, webhook.id, change).await {
            Ok(stored) => Some(stored),
            Err(e) => {
                // The delivery's own record matters more; the transition is tried again at
                // the endpoint's next attempt.
                tracing::warn!(error = %e, webhook = webhook.id, "webhook endpoint health could not be recorded");
                None
            }
        }
    }
}

/// A short, useful reason for a transport failure.
fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(e);
    let mut detail = String::new();
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if detail.is_empty() { kind.to_string() } else { format!("{kind}: {detail}") }
}
