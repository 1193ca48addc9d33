//! Webhook management (seed "Webhooks"): `GET|POST /webhooks`, `DELETE /webhooks/{webhook}`
//! under `/api/v1` (the seed's six events) and `/v1` (the same resource, plus
//! `reward.queued`, `reward.paid`, `reward.rejected` and `reward.reversed`), all with scope
//! `webhooks.manage`.
//!
//! Beyond the seed, as partners know them from Stripe or Svix: a webhook's recent delivery
//! attempts (`GET /webhooks/{id}/deliveries`), a redelivery (`POST
//! /webhooks/{id}/deliveries/{delivery}/redeliver`), a new secret (`POST
//! /webhooks/{id}/rotate-secret`) and re-enabling an endpoint the dispatcher disabled
//! (`POST /webhooks/{id}/enable`).

use crate::auth::Authenticated;
use crate::domain::Scope;
use crate::error::{messages, ApiError, FieldErrors};
use crate::extract::read_json;
use crate::json;
use crate::state::AppState;
use crate::store::{DeliveryRecord, DeliveryState, Sequence, WebhookChange, WebhookRecord};
use crate::webhooks::{guard, new_secret, AFFILIATE_EVENTS, PARTNER_EVENTS};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Utc;
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::ToSchema;
use validator::Validate;

/// Which API a route belongs to decides the events it accepts.
#[derive(Clone, Copy)]
pub struct Events(pub &'static [&'static str]);

/// Mounts the resource for one API.
pub fn configure(events: &'static [&'static str]) -> impl Fn(&mut web::ServiceConfig) {
    move |cfg: &mut web::ServiceConfig| {
        cfg.app_data(web::Data::new(Events(events)))
            .route("/webhooks", web::get().to(list))
            .route("/webhooks", web::post().to(create))
            .route("/webhooks/{webhook}", web::delete().to(delete))
            .route("/webhooks/{webhook}/deliveries", web::get().to(deliveries))
            .route("/webhooks/{webhook}/deliveries/{delivery}/redeliver", web::post().to(redeliver))
            .route("/webhooks/{webhook}/rotate-secret", web::post().to(rotate_secret))
            .route("/webhooks/{webhook}/enable", web::post().to(enable));
    }
}

/// The Affiliate API's webhook events.
pub fn affiliate(cfg: &mut web::ServiceConfig) {
    configure(&AFFILIATE_EVENTS)(cfg)
}

/// The partner API's webhook events.
pub fn partner(cfg: &mut web::ServiceConfig) {
    configure(&PARTNER_EVENTS)(cfg)
}

#[derive(Deserialize, Validate, ToSchema)]
pub struct CreateWebhook {
    /// One of the API's events (`supported_events` of the listing).
    #[schema(value_type = String, required = true)]
    pub event: Option<String>,
    /// Where deliveries are POSTed.
    #[schema(value_type = String, required = true)]
    pub url: Option<String>,
}

fn view(w: &WebhookRecord) -> Value {
    json!({
        "id": w.id,
        "event": w.event,
        "url": w.url,
        "created_at": json::format_time(&w.created_at),
        "updated_at": json::format_time(&w.updated_at),
        "status": if w.disabled_at.is_some() { "disabled" } else { "active" },
        "disabled_at": w.disabled_at.as_ref().map(json::format_time),
        "disabled_reason": w.disabled_reason,
    })
}

/// The seed's creation answer: the webhook with its plain secret (`w` holds it encrypted),
/// shown only here and on rotation.
fn with_secret(w: &WebhookRecord, secret: &str) -> Value {
    json!({
        "id": w.id,
        "event": w.event,
        "url": w.url,
        "secret": secret,
        "created_at": json::format_time(&w.created_at),
        "updated_at": json::format_time(&w.updated_at),
    })
}

fn delivery_view(d: &DeliveryRecord) -> Value {
    json!({
        "id": d.id,
        "event": d.event,
        "state": d.state,
        "attempts": d.attempts.iter().map(|a| json!({
            "at": json::format_time(&a.at),
            "status_code": a.status_code,
            "latency_ms": a.latency_ms,
            "error": a.error,
        })).collect::<Vec<_>>(),
        "next_attempt_at": d.next_attempt_at.as_ref().map(json::format_time),
        "created_at": json::format_time(&d.created_at),
        "updated_at": json::format_time(&d.updated_at),
    })
}

fn not_found() -> ApiError {
    ApiError::not_found(messages::WEBHOOK_NOT_FOUND)
}

/// The caller's webhook named in the path; anything else (another affiliate's, unknown,
/// non-numeric) is "Webhook not found.".
async fn own_webhook(state: &AppState, auth: &Authenticated, raw: &str) -> Result<WebhookRecord, ApiError> {
    let id: u64 = raw.parse().map_err(|_| not_found())?;
    state.store.get_webhook(auth.affiliate.id, id).await?.ok_or_else(not_found)
}

/// Applies a partner's change to the caller's webhook as stored now (never a copy read
/// earlier: the dispatcher's health fields and concurrent changes stay as they are) and tells
/// the dispatcher, whose next attempt then reads the webhook again.
async fn change_own_webhook(state: &AppState, auth: &Authenticated, raw: &str, change: WebhookChange) -> Result<WebhookRecord, ApiError> {
    let id: u64 = raw.parse().map_err(|_| not_found())?;
    let webhook = state.store.update_webhook(auth.affiliate.id, id, change).await?.ok_or_else(not_found)?;
    state.dispatcher.webhook_changed(&webhook).await;
    Ok(webhook)
}

/// Lists the affiliate's webhooks and the supported events.
#[utoipa::path(get, path = "/api/v1/webhooks", tag = "affiliate",
    responses((status = 200, description = "webhooks and supported_events"), (status = 401), (status = 403, description = "Insufficient scope.")),
    security(("bearer" = []), ("api_key_header" = []), ("api_key_query" = [])))]
pub async fn list(auth: Authenticated, state: web::Data<AppState>, events: web::Data<Events>) -> Result<HttpResponse, ApiError> {
    auth.require(Scope::WebhooksManage)?;
    let hooks: Vec<Value> = state.store.webhooks_of(auth.affiliate.id).await?.iter().map(view).collect();
    Ok(json::ok(json!({ "webhooks": hooks, "supported_events": events.0 })))
}

/// Registers a webhook; the answer carries its secret, shown only here.
#[utoipa::path(post, path = "/api/v1/webhooks", tag = "affiliate", request_body = CreateWebhook,
    responses((status = 201, description = "created, with `secret`"), (status = 401), (status = 403), (status = 422)),
    security(("bearer" = []), ("api_key_header" = []), ("api_key_query" = [])))]
pub async fn create(
    auth: Authenticated,
    state: web::Data<AppState>,
    events: web::Data<Events>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    auth.require(Scope::WebhooksManage)?;
    let body: CreateWebhook = read_json(&req, payload).await?;
    let mut errors = FieldErrors::new();
    let event = body.event.as_deref().map(str::trim).unwrap_or("");
    if event.is_empty() {
        errors.insert("event".into(), vec!["The event field is required.".into()]);
    } else if !events.0.contains(&event) {
        errors.insert("event".into(), vec![format!("The selected event is invalid. Use one of: {}.", events.0.join(", "))]);
    }
    let raw_url = body.url.as_deref().map(str::trim).unwrap_or("");
    let url = if raw_url.is_empty() {
        errors.insert("url".into(), vec!["The url field is required.".into()]);
        None
    } else {
        match guard::check_url(raw_url, state.settings.webhooks.https_only, &state.webhook_allow) {
            Ok(u) => Some(u.to_string()),
            Err(m) => {
                errors.insert("url".into(), vec![m]);
                None
            }
        }
    };
    if let (Some(url), true) = (&url, errors.is_empty()) {
        let taken = state.store.webhooks_of(auth.affiliate.id).await?.iter().any(|w| w.event == event && w.url == *url);
        if taken {
            errors.insert("url".into(), vec!["The url has already been taken for this event.".into()]);
        }
    }
    let (Some(url), true) = (url, errors.is_empty()) else {
        return Err(ApiError::validation(errors));
    };
    let id = state.store.next_id(Sequence::Webhook).await?;
    // The claim makes "unique per affiliate and event" hold under concurrent requests too.
    if !state.store.claim_unique("webhook_url", &format!("{}:{event}:{url}", auth.affiliate.id), id).await? {
        return Err(ApiError::invalid_field("url", "The url has already been taken for this event."));
    }
    let now = Utc::now();
    let secret = new_secret();
    let webhook = WebhookRecord {
        id,
        affiliate_id: auth.affiliate.id,
        event: event.to_string(),
        url,
        secret: state.secrets.seal(&secret),
        created_at: now,
        updated_at: now,
        failing_since: None,
        disabled_at: None,
        disabled_reason: None,
    };
    state.store.put_webhook(&webhook).await?;
    Ok(json::created(with_secret(&webhook, &secret)))
}

/// Deletes one of the affiliate's webhooks.
#[utoipa::path(delete, path = "/api/v1/webhooks/{webhook}", tag = "affiliate",
    responses((status = 200, description = "{\"success\": true}"), (status = 404, description = "Webhook not found.")),
    security(("bearer" = []), ("api_key_header" = []), ("api_key_query" = [])))]
pub async fn delete(auth: Authenticated, state: web::Data<AppState>, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    auth.require(Scope::WebhooksManage)?;
    let webhook = own_webhook(&state, &auth, &path).await?;
    state.store.delete_webhook(&webhook).await?;
    state.dispatcher.webhook_deleted(webhook.id).await;
    let claim = format!("{}:{}:{}", webhook.affiliate_id, webhook.event, webhook.url);
    state.store.release_unique("webhook_url", &claim, webhook.id).await?;
    Ok(HttpResponse::Ok().json(json!({ "success": true })))
}

/// Recent deliveries of a webhook with every attempt (status code, latency, error, time).
#[utoipa::path(get, path = "/api/v1/webhooks/{webhook}/deliveries", tag = "affiliate",
    params(("limit" = Option<u32>, Query, minimum = 1, maximum = 100, description = "1 to 100, default 50")),
    responses((status = 200, description = "deliveries, newest first"), (status = 404, description = "Webhook not found."), (status = 422, description = "The limit field must be an integer between 1 and 100.")),
    security(("bearer" = []), ("api_key_header" = []), ("api_key_query" = [])))]
pub async fn deliveries(auth: Authenticated, state: web::Data<AppState>, path: web::Path<String>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    auth.require(Scope::WebhooksManage)?;
    let webhook = own_webhook(&state, &auth, &path).await?;
    let q = crate::routes::products::QueryParams::parse(req.query_string());
    let limit = match q.one("limit") {
        None => 50,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=100).contains(&n) => n,
            _ => return Err(ApiError::invalid_field("limit", "The limit field must be an integer between 1 and 100.")),
        },
    };
    let list: Vec<Value> = state.store.deliveries_of(webhook.id, limit).await?.iter().map(delivery_view).collect();
    Ok(json::ok(json!({ "deliveries": list })))
}

/// Sends a delivery again now (one attempt, whatever its state).
#[utoipa::path(post, path = "/api/v1/webhooks/{webhook}/deliveries/{delivery}/redeliver", tag = "affiliate",
    responses((status = 202, description = "queued"), (status = 404, description = "Webhook not found. / Delivery not found.")),
    security(("bearer" = []), ("api_key_header" = []), ("api_key_query" = [])))]
pub async fn redeliver(auth: Authenticated, state: web::Data<AppState>, path: web::Path<(String, String)>) -> Result<HttpResponse, ApiError> {
    auth.require(Scope::WebhooksManage)?;
    let (hook, delivery_id) = path.into_inner();
    let webhook = own_webhook(&state, &auth, &hook).await?;
    let mut d = state
        .store
        .get_delivery(webhook.id, &delivery_id)
        .await?
        .ok_or_else(|| ApiError::not_found("Delivery not found."))?;
    if webhook.disabled_at.is_some() {
        return Err(ApiError::conflict("The webhook is disabled; enable it before redelivering."));
    }
    d.state = DeliveryState::Pending;
    d.manual = true;
    // This instance queues it now, so it is this instance's to reload after a restart.
    d.owner = Some(state.dispatcher.instance_id().to_string());
    d.next_attempt_at = Some(Utc::now());
    d.updated_at = Utc::now();
    state.store.put_delivery(&d).await?;
    state.dispatcher.schedule(&d);
    Ok(json::data(StatusCode::ACCEPTED, json!({ "delivery": delivery_view(&d) })))
}

/// Replaces the secret; the answer shows the new one, once.
#[utoipa::path(post, path = "/api/v1/webhooks/{webhook}/rotate-secret", tag = "affiliate",
    responses((status = 200, description = "the webhook with its new secret"), (status = 404)),
    security(("bearer" = []), ("api_key_header" = []), ("api_key_query" = [])))]
pub async fn rotate_secret(auth: Authenticated, state: web::Data<AppState>, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    auth.require(Scope::WebhooksManage)?;
    let secret = new_secret();
    // Sealed once: a retried compare-and-set writes the same stored value.
    let sealed = state.secrets.seal(&secret);
    let change: WebhookChange = Box::new(move |w| {
        w.secret = sealed.clone();
        w.touch();
        true
    });
    let webhook = change_own_webhook(&state, &auth, &path, change).await?;
    Ok(json::ok(with_secret(&webhook, &secret)))
}

/// Re-enables an endpoint the dispatcher disabled after it kept failing.
#[utoipa::path(post, path = "/api/v1/webhooks/{webhook}/enable", tag = "affiliate",
    responses((status = 200, description = "the webhook, active again"), (status = 404)),
    security(("bearer" = []), ("api_key_header" = []), ("api_key_query" = [])))]
pub async fn enable(auth: Authenticated, state: web::Data<AppState>, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    auth.require(Scope::WebhooksManage)?;
    // Re-enabling is the partner's say over the endpoint's health: a fresh start.
    let secrets = state.secrets.clone();
    let change: WebhookChange = Box::new(move |w| {
        w.disabled_at = None;
        w.disabled_reason = None;
        w.failing_since = None;
        // A secret stored in plain text before encryption is encrypted by this write.
        if let Some(sealed) = secrets.reseal(&w.secret) {
            w.secret = sealed;
        }
        w.touch();
        true
    });
    let webhook = change_own_webhook(&state, &auth, &path, change).await?;
    Ok(json::ok(json!({ "webhook": view(&webhook) })))
}
