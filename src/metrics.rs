//! Prometheus metrics: one registry per application, registered once at start, with the
//! HTTP middleware that measures every request. Metric names are listed in the README.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage};
use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder};
use std::time::Instant;

/// The request id header, echoed when the caller sends a sane one, generated otherwise.
pub const REQUEST_ID: &str = "x-request-id";

/// The commit the binary was built from: `HISSABACK_COMMIT` in the build's environment
/// (`HISSABACK_COMMIT=$(git rev-parse --short HEAD) cargo build --release`, or a Docker build
/// argument), `unknown` otherwise. Not read from `.git` by a build script: builds from a
/// source archive or a container context have no `.git`, and a build script would rebuild
/// the crate on every commit.
pub const COMMIT: &str = match option_env!("HISSABACK_COMMIT") {
    Some(c) if !c.is_empty() => c,
    _ => "unknown",
};

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// `hissaback_http_requests_total{method, route, status}`
    pub http_requests: IntCounterVec,
    /// `hissaback_http_request_duration_seconds{method, route, status}`
    pub http_duration: HistogramVec,
    /// `hissaback_auth_failures_total{kind}` (`api_key`, `admin`, `postback_token`)
    pub auth_failures: IntCounterVec,
    /// `hissaback_rate_limited_total{kind}` (`key`, `network`, `auth_failures`; clicks not
    /// recorded: `click_address`, `click_link`)
    pub rate_limited: IntCounterVec,
    /// Stream-consumer metrics (consumed, dead-lettered, handler errors, actor restarts).
    pub consumers: hissaback_actors::metrics::ConsumerMetrics,
    /// `hissaback_webhook_deliveries_total{event, outcome}` (`success`, `retry`, `failed`)
    pub webhook_deliveries: IntCounterVec,
    /// `hissaback_webhook_attempt_duration_seconds{outcome}`
    pub webhook_attempt_seconds: HistogramVec,
    /// `hissaback_webhook_queue_depth`: deliveries waiting in the dispatcher.
    pub webhook_queue_depth: prometheus::IntGauge,
    /// `hissaback_webhook_endpoints_disabled_total`
    pub webhook_endpoints_disabled: prometheus::IntCounter,
    /// `hissaback_webhook_orphans_adopted_total`: overdue deliveries of a stopped instance sent here
    pub webhook_orphans_adopted: prometheus::IntCounter,
    /// `hissaback_offer_sync_runs_total{outcome}` (`success`, `failure`)
    pub offer_sync_runs: IntCounterVec,
    /// `hissaback_offer_sync_duration_seconds`
    pub offer_sync_duration: prometheus::Histogram,
    /// `hissaback_offer_sync_last_success_timestamp_seconds`
    pub offer_sync_last_success: prometheus::Gauge,
    /// `hissaback_offer_sync_feed_offers`: offers in the last feed read
    pub offer_sync_offers: prometheus::IntGauge,
    /// The usage recorder's flushes and audit queue.
    pub usage: hissaback_actors::usage::UsageMetrics,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let http_requests = IntCounterVec::new(
            Opts::new("hissaback_http_requests_total", "HTTP requests answered, by route pattern and status"),
            &["method", "route", "status"],
        )
        .expect("valid metric");
        let http_duration = HistogramVec::new(
            HistogramOpts::new("hissaback_http_request_duration_seconds", "Time to answer an HTTP request")
                .buckets(vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]),
            &["method", "route", "status"],
        )
        .expect("valid metric");
        let auth_failures = IntCounterVec::new(
            Opts::new("hissaback_auth_failures_total", "Failed authentications, by credential kind"),
            &["kind"],
        )
        .expect("valid metric");
        for c in [Box::new(http_requests.clone()) as Box<dyn prometheus::core::Collector>, Box::new(http_duration.clone()), Box::new(auth_failures.clone())] {
            registry.register(c).expect("metric registered once");
        }
        let rate_limited = IntCounterVec::new(Opts::new("hissaback_rate_limited_total", "Requests refused with 429, by limit"), &["kind"])
            .expect("valid metric");
        registry.register(Box::new(rate_limited.clone())).expect("metric registered once");
        let consumers = hissaback_actors::metrics::ConsumerMetrics::new();
        consumers.register(&registry).expect("metric registered once");
        let webhook_deliveries = IntCounterVec::new(
            Opts::new("hissaback_webhook_deliveries_total", "Webhook delivery attempts by event and outcome"),
            &["event", "outcome"],
        )
        .expect("valid metric");
        let webhook_attempt_seconds = HistogramVec::new(
            HistogramOpts::new("hissaback_webhook_attempt_duration_seconds", "Duration of webhook delivery attempts")
                .buckets(vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0]),
            &["outcome"],
        )
        .expect("valid metric");
        let webhook_queue_depth =
            prometheus::IntGauge::new("hissaback_webhook_queue_depth", "Webhook deliveries waiting in the dispatcher").expect("valid metric");
        let webhook_endpoints_disabled = prometheus::IntCounter::new(
            "hissaback_webhook_endpoints_disabled_total",
            "Webhook endpoints disabled after failing too long",
        )
        .expect("valid metric");
        registry.register(Box::new(webhook_deliveries.clone())).expect("metric registered once");
        registry.register(Box::new(webhook_attempt_seconds.clone())).expect("metric registered once");
        registry.register(Box::new(webhook_queue_depth.clone())).expect("metric registered once");
        registry.register(Box::new(webhook_endpoints_disabled.clone())).expect("metric registered once");
        let webhook_orphans_adopted = prometheus::IntCounter::new(
            "hissaback_webhook_orphans_adopted_total",
            "Pending webhook deliveries overdue on a stopped instance, adopted by this one",
        )
        .expect("valid metric");
        registry.register(Box::new(webhook_orphans_adopted.clone())).expect("metric registered once");
        let offer_sync_runs =
            IntCounterVec::new(Opts::new("hissaback_offer_sync_runs_total", "Offer feed sync runs by outcome"), &["outcome"]).expect("valid metric");
        let offer_sync_duration = prometheus::Histogram::with_opts(
            HistogramOpts::new("hissaback_offer_sync_duration_seconds", "Duration of offer feed sync runs")
                .buckets(vec![0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0]),
        )
        .expect("valid metric");
        let offer_sync_last_success =
            prometheus::Gauge::new("hissaback_offer_sync_last_success_timestamp_seconds", "Unix time of the last successful offer sync")
                .expect("valid metric");
        let offer_sync_offers =
            prometheus::IntGauge::new("hissaback_offer_sync_feed_offers", "Offers in the last feed read").expect("valid metric");
        registry.register(Box::new(offer_sync_runs.clone())).expect("metric registered once");
        registry.register(Box::new(offer_sync_duration.clone())).expect("metric registered once");
        registry.register(Box::new(offer_sync_last_success.clone())).expect("metric registered once");
        registry.register(Box::new(offer_sync_offers.clone())).expect("metric registered once");
        let usage = hissaback_actors::usage::UsageMetrics::new();
        usage.register(&registry).expect("metric registered once");
        registry.register(Box::new(crate::store::STORE_SECONDS.clone())).expect("metric registered once");
        registry.register(Box::new(crate::events::PRODUCED.0.clone())).expect("metric registered once");
        registry.register(Box::new(crate::events::PRODUCED.1.clone())).expect("metric registered once");
        registry.register(Box::new(crate::partner::ledger::POSTINGS.clone())).expect("metric registered once");
        // `hissaback_build_info{version, commit} 1`: which build answers, for dashboards
        // and for joining on other series.
        let build_info = prometheus::IntGaugeVec::new(
            Opts::new("hissaback_build_info", "The running build: version and commit (value 1)"),
            &["version", "commit"],
        )
        .expect("valid metric");
        build_info.with_label_values(&[env!("CARGO_PKG_VERSION"), COMMIT]).set(1);
        registry.register(Box::new(build_info)).expect("metric registered once");
        // `process_cpu_seconds_total`, `process_resident_memory_bytes`, `process_open_fds`,
        // `process_start_time_seconds`, ... (Linux; the collector reports nothing elsewhere).
        registry
            .register(Box::new(prometheus::process_collector::ProcessCollector::for_self()))
            .expect("metric registered once");
        // Series with fixed label values exist from the start, so dashboards and alerts see a
        // zero rather than no data.
        for kind in ["api_key", "admin", "postback_token"] {
            auth_failures.with_label_values(&[kind]);
        }
        for kind in ["key", "network", "auth_failures", "click_address", "click_link"] {
            rate_limited.with_label_values(&[kind]);
        }
        for outcome in ["success", "retry", "failed"] {
            webhook_attempt_seconds.with_label_values(&[outcome]);
            for event in crate::webhooks::PARTNER_EVENTS {
                webhook_deliveries.with_label_values(&[event, outcome]);
            }
        }
        for outcome in ["success", "failure"] {
            offer_sync_runs.with_label_values(&[outcome]);
        }
        Self {
            registry,
            usage,
            offer_sync_runs,
            offer_sync_duration,
            offer_sync_last_success,
            offer_sync_offers,
            http_requests,
            http_duration,
            auth_failures,
            rate_limited,
            consumers,
            webhook_deliveries,
            webhook_attempt_seconds,
            webhook_queue_depth,
            webhook_endpoints_disabled,
            webhook_orphans_adopted,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buf).expect("text encoding cannot fail");
        String::from_utf8(buf).expect("exposition is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn sane_request_id(v: &HeaderValue) -> Option<HeaderValue> {
    let s = v.to_str().ok()?;
    // Letters, digits and a few separators: enough for UUIDs and tracing ids, nothing that
    // could mean markup or a list when echoed or logged.
    (!s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:/+=@".contains(&b))).then(|| v.clone())
}

/// A random (v4) UUID from the thread's generator: no system call per request.
fn new_request_id() -> HeaderValue {
    let id = uuid::Builder::from_random_bytes(rand::random()).into_uuid();
    let mut buf = uuid::Uuid::encode_buffer();
    HeaderValue::from_str(id.hyphenated().encode_lower(&mut buf)).expect("uuid is a valid header")
}

/// The `method` label: a standard method, or `OTHER`, so clients cannot mint new series
/// by sending made-up methods.
pub fn method_label(method: &actix_web::http::Method) -> &'static str {
    use actix_web::http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "OTHER",
    }
}

/// The target of the access log: one INFO line per answered request
/// (`RUST_LOG=info,hissaback::access=off` turns it off).
pub const ACCESS_LOG: &str = "hissaback::access";

/// Middleware: request id in and out, request count and latency by route pattern, and the
/// access log line. The request runs in a span `request{request_id}` (target
/// `hissaback::request`), so what its handler logs carries the id.
pub async fn track(req: ServiceRequest, next: Next<impl MessageBody>) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    use tracing::Instrument;
    let started = Instant::now();
    let state = req.app_data::<web::Data<crate::state::AppState>>().cloned();
    let request_id = req.headers().get(REQUEST_ID).and_then(sane_request_id).unwrap_or_else(new_request_id);
    let id = request_id.to_str().unwrap_or_default();
    req.extensions_mut().insert(RequestId(id.to_string()));
    let method = method_label(req.method());
    let span = tracing::info_span!(target: "hissaback::request", "request", request_id = id);
    let mut res = next.call(req).instrument(span).await?;
    // Unmatched paths share one label so scanners cannot explode the series count.
    let route = res.request().match_pattern();
    let route = route.as_deref().unwrap_or("unmatched");
    let status = res.status().as_u16();
    if status < 500 {
        crate::error::note_answered();
    }
    let elapsed = started.elapsed();
    if let Some(state) = state {
        let mut buf = [0; 3];
        let status = status_label(status, &mut buf);
        state.metrics.http_requests.with_label_values(&[method, route, status]).inc();
        state.metrics.http_duration.with_label_values(&[method, route, status]).observe(elapsed.as_secs_f64());
        crate::usage::record(&state, &res, route, id, elapsed);
    }
    if tracing::enabled!(target: ACCESS_LOG, tracing::Level::INFO) {
        // Who called: ids only, never a credential.
        let caller = res.request().extensions().get::<crate::usage::Caller>().copied();
        let (key_id, affiliate_id, network_id, admin) = match caller {
            Some(crate::usage::Caller::Key { affiliate_id, key_id }) => (Some(key_id), Some(affiliate_id), None, false),
            Some(crate::usage::Caller::Network { network_id }) => (None, None, Some(network_id), false),
            Some(crate::usage::Caller::Admin) => (None, None, None, true),
            None => (None, None, None, false),
        };
        tracing::info!(
            target: ACCESS_LOG,
            request_id = id,
            method,
            route,
            status,
            latency_ms = elapsed.as_secs_f64() * 1000.0,
            key_id,
            affiliate_id,
            network_id,
            admin = admin.then_some(true),
            "request"
        );
    }
    res.headers_mut().insert(HeaderName::from_static(REQUEST_ID), request_id);
    Ok(res)
}

/// The `status` label: the three digits of the code, written into `buf` (no allocation).
fn status_label(status: u16, buf: &mut [u8; 3]) -> &str {
    let status = status.clamp(100, 999);
    *buf = [b'0' + (status / 100) as u8, b'0' + (status / 10 % 10) as u8, b'0' + (status % 10) as u8];
    std::str::from_utf8(buf).unwrap_or("000")
}

/// The id of the current request, for logs and audit rows.
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_labels_are_the_three_digits() {
        let mut buf = [0; 3];
        assert_eq!(status_label(200, &mut buf), "200");
        assert_eq!(status_label(404, &mut buf), "404");
        assert_eq!(status_label(503, &mut buf), "503");
        assert_eq!(status_label(42, &mut buf), "100", "out of range: clamped, still three digits");
    }

    #[test]
    fn the_exposition_has_build_info_and_process_metrics() {
        let text = Metrics::new().render();
        let line = format!("hissaback_build_info{{commit=\"{COMMIT}\",version=\"{}\"}} 1", env!("CARGO_PKG_VERSION"));
        assert!(text.contains(&line), "{text}");
        #[cfg(target_os = "linux")]
        assert!(text.contains("process_cpu_seconds_total"), "{text}");
    }
}
