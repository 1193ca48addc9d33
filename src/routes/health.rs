//! Liveness, readiness and metrics for operators.

use crate::error::ApiError;
use crate::json;
use crate::state::AppState;
use actix_web::{web, HttpResponse};
use hissaback_actors::consumer::ConsumerStatus;

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

/// The store and the event bus answer and no stream consumer is stuck; 503 otherwise.
#[utoipa::path(get, path = "/readyz", tag = "operations", responses((status = 200, description = "ready"), (status = 503, description = "a dependency is unreachable or a stream consumer is stuck")))]
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    state.store.ping().await.map_err(ApiError::unavailable)?;
    state.bus.ping().await.map_err(ApiError::unavailable)?;
    let stuck_after = std::time::Duration::from_secs(state.settings.events.stuck_after_seconds);
    if let Some(e) = stuck_consumers(&state.consumer_health.stuck(stuck_after)) {
        return Err(e);
    }
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
    let mut e = ApiError::unavailable(anyhow::anyhow!("stream consumers stuck: {}", errors.join("; ")));
    e.set_message(format!("Stream consumer stuck on one batch: {}.", named.join(", ")));
    Some(e)
}

/// Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text format")))]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render())
}
