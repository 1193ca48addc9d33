//! Liveness, readiness and metrics for operators.

use crate::error::ApiError;
use crate::json;
use crate::state::AppState;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use hissaback_actors::consumer::ConsumerStatus;
use hissaback_topics::lograte::LogRate;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::LazyLock;

/// Set when shutdown begins (SIGTERM): `/readyz` answers 503 from then on, while the
/// listener still serves requests for the drain delay (`server.shutdown_drain_ms`).
/// Shared with the handlers as application data.
#[derive(Debug, Default)]
pub struct Draining(AtomicBool);

impl Draining {
    pub fn begin(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Why the instance is unready, logged when it turns so and once a minute while it stays so
/// (probes come every few seconds; one ERROR line each would bury the outage's start).
static UNREADY: LazyLock<LogRate> = LazyLock::new(|| LogRate::new("readiness: unready").warn());

/// 503 `unavailable` without a logged source (the reason went through [`UNREADY`]).
fn unready(message: impl Into<std::borrow::Cow<'static, str>>) -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message).with_header("retry-after", "1".into())
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(metrics));
}

/// The process is up and serving.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "alive")))]
pub async fn healthz() -> HttpResponse {
    json::ok(serde_json::json!({ "status": "ok" }))
}

/// The store and the event bus answer, no stream consumer is stuck and shutdown has not
/// begun; 503 otherwise.
#[utoipa::path(get, path = "/readyz", tag = "operations", responses((status = 200, description = "ready"), (status = 503, description = "shutting down, a dependency is unreachable or a stream consumer is stuck")))]
pub async fn readyz(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    if req.app_data::<web::Data<Draining>>().is_some_and(|d| d.is_draining()) {
        return Err(unready("Shutting down."));
    }
    if let Err(e) = state.store.ping().await {
        UNREADY.failure(&format_args!("store: {e}"));
        return Err(unready("Service temporarily unavailable."));
    }
    if let Err(e) = state.bus.ping().await {
        UNREADY.failure(&format_args!("event bus: {e}"));
        return Err(unready("Service temporarily unavailable."));
    }
    let stuck_after = std::time::Duration::from_secs(state.settings.events.stuck_after_seconds);
    if let Some(e) = stuck_consumers(&state.consumer_health.stuck(stuck_after)) {
        return Err(e);
    }
    UNREADY.success();
    Ok(json::ok(serde_json::json!({ "status": "ready", "store": state.store.backend(), "events": state.bus.backend() })))
}

/// A consumer on one batch for longer than the threshold (an outage its handler cannot get
/// past, or an event it may not park) makes the instance unready: a 503 naming the consumers.
/// Their errors are logged, not answered: they may name internals.
fn stuck_consumers(stuck: &[ConsumerStatus]) -> Option<ApiError> {
    if stuck.is_empty() {
        return None;
    }
    let named: Vec<String> = stuck
        .iter()
        .map(|s| format!("{} (topic {}, group {}) for {}s", s.name, s.topic, s.group, s.busy_for.unwrap_or_default().as_secs()))
        .collect();
    let errors: Vec<String> = stuck.iter().map(|s| format!("{}: {}", s.name, s.last_error.as_deref().unwrap_or("no error (slow handler)"))).collect();
    UNREADY.failure(&format_args!("stream consumers stuck: {}", errors.join("; ")));
    Some(unready(format!("Stream consumer stuck on one batch: {}.", named.join(", "))))
}

/// Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text format")))]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render())
}
