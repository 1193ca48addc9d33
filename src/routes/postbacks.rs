//! `GET` or `POST /v1/postbacks`: conversions reported by affiliate networks, authenticated by
//! the network's postback token (`token`). Parameters come from the query string and, for
//! POST, a form or JSON body: `click_id`, `txn_id`, `payout` (or `commission`), `currency`,
//! `status` (`pending`, `approved`, `rejected`, `reversed`), `goal`. The answer is 200 only
//! once the postback is durable on the `postbacks` topic; a repeated postback is harmless.
//!
//! Each network has its own rate limit (`partner.postback_rate_limit`, far above API keys'
//! plans) with the same headers and 429 as keys; wrong tokens count against the caller's
//! address like wrong API keys.

use crate::domain::amount::{self, Amount};
use crate::error::{ApiError, FieldErrors};
use crate::extract::{parse_json, read_decoded_body};
use crate::json;
use crate::state::AppState;
use actix_web::http::header::CONTENT_TYPE;
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use hissaback_actors::rate_limit::Plan;
use hissaback_topics::bus::publish_event;
use hissaback_topics::events::{PostbackReceived, PostbackStatus};
use hissaback_topics::CurrencyCode;
use std::collections::HashMap;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/postbacks", web::get().to(receive)).route("/postbacks", web::post().to(receive));
}

/// A JSON body: any object of parameters (each checked below).
#[derive(serde::Deserialize)]
#[serde(transparent)]
struct JsonParams(HashMap<String, serde_json::Value>);

impl validator::Validate for JsonParams {
    fn validate(&self) -> Result<(), validator::ValidationErrors> {
        Ok(())
    }
}

/// Query parameters, then body parameters (the body wins).
fn params(req: &HttpRequest, body: &[u8]) -> Result<HashMap<String, String>, ApiError> {
    let mut out: HashMap<String, String> = url::form_urlencoded::parse(req.query_string().as_bytes()).into_owned().collect();
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(out);
    }
    let ct = req.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
    if ct.starts_with("application/x-www-form-urlencoded") {
        out.extend(url::form_urlencoded::parse(body).into_owned());
    } else {
        let JsonParams(map) = parse_json(body, Some(ct.as_str()))?;
        for (k, v) in map {
            let s = match v {
                serde_json::Value::String(s) => s,
                serde_json::Value::Null => continue,
                // A number as written (`1e5` stays `1e5`, and is refused as an amount).
                other => amount::json_text(&other).unwrap_or_else(|| other.to_string()),
            };
            out.insert(k, s);
        }
    }
    Ok(out)
}

fn status(raw: &str) -> Option<PostbackStatus> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "pending" => Some(PostbackStatus::Pending),
        "approved" => Some(PostbackStatus::Approved),
        "rejected" => Some(PostbackStatus::Rejected),
        "reversed" => Some(PostbackStatus::Reversed),
        _ => None,
    }
}

fn id_like(v: &str, max: usize) -> bool {
    !v.is_empty() && v.len() <= max && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

/// Accepts a postback once it is durable.
#[utoipa::path(method(get, post), path = "/v1/postbacks", tag = "partner",
    params(
        ("token" = String, Query, description = "the network's postback token"),
        ("click_id" = String, Query, description = "click id from the redirect"),
        ("txn_id" = String, Query, description = "the network's transaction id"),
        ("payout" = f64, Query, description = "what the network pays (or `commission`)"),
        ("currency" = crate::routes::openapi::schemas::Currency, Query, description = "USD, GBP, EUR, INR or BGN (case-insensitive)"),
        ("status" = crate::routes::openapi::schemas::PostbackStatus, Query, description = "pending, approved, rejected or reversed (case-insensitive)"),
        ("goal" = Option<String>, Query, description = "conversion goal"),
    ),
    responses((status = 200, description = "accepted and durable"),
        (status = 400, description = "invalid_json / invalid_body: a JSON body that is not JSON, or a body that could not be read."),
        (status = 413, description = "payload_too_large: the body is larger than the configured limit."),
        (status = 415, description = "unsupported_media_type: a body that is neither a form nor JSON."), (status = 401, description = "Postback token is missing. / Postback token is invalid."), (status = 422), (status = 429, description = "Postback rate limit exceeded. (per network) / Too many failed authentications; retry later. (per address)")))]
pub async fn receive(state: web::Data<AppState>, req: HttpRequest, payload: web::Payload) -> Result<HttpResponse, ApiError> {
    let ip = crate::auth::client_ip(&req);
    // Read here rather than by actix's `Bytes` extractor, whose 413 is plain text.
    let body = read_decoded_body(&req, payload).await?;
    let p = params(&req, &body)?;
    let token = p.get("token").map(|t| t.trim()).filter(|t| !t.is_empty());
    let found = match token {
        None => None,
        Some(t) => state.networks.by_token(&state.store, t).await?,
    };
    let Some(network) = found else {
        // Wrong tokens count against the address like wrong API keys: no brute force.
        let refused = ApiError::unauthenticated(if token.is_none() { "Postback token is missing." } else { "Postback token is invalid." });
        return Err(crate::auth::count_failure(&state, ip, "postback_token", crate::auth::credential_prefix("postback_token", token), refused));
    };
    req.extensions_mut().insert(crate::usage::Caller::Network { network_id: network.id });
    let limit = state.settings.partner.postback_rate_limit;
    let decision = state.limits.check_network(network.id, Plan { per_minute: limit.per_minute, burst: limit.burst });
    req.extensions_mut().insert(crate::auth::RateInfo(decision));
    crate::auth::refuse_spent(&state, &decision, "network", "Postback rate limit exceeded.")?;
    let get = |k: &str| p.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    let mut errors = FieldErrors::new();
    let mut need = |field: &str, ok: bool, message: &str| {
        if !ok {
            errors.insert(field.into(), vec![message.into()]);
        }
    };
    let click_id = get("click_id").unwrap_or("");
    need("click_id", id_like(click_id, 64), "The click id field is required and must be a click id from a hissaback redirect.");
    let txn_id = get("txn_id").unwrap_or("");
    need("txn_id", id_like(txn_id, 128), "The txn id field is required: letters, digits, '-', '_', '.', ':' (at most 128).");
    let currency = get("currency").and_then(CurrencyCode::parse);
    // The amount as sent (not trimmed: white space is not part of a plain decimal), to the
    // currency's minor digits once the currency is known.
    let raw_payout = ["payout", "commission"].iter().find_map(|k| p.get(*k).filter(|v| !v.trim().is_empty()));
    let digits = currency.map_or(amount::MAX_MINOR_DIGITS, amount::minor_digits);
    let payout = raw_payout.and_then(|v| Amount::parse(v, digits).ok());
    match raw_payout {
        None => need("payout", false, "The payout field is required: a non-negative amount with at most two decimals."),
        Some(_) => need("payout", payout.is_some(), &amount::field_message("payout", digits)),
    }
    need("currency", currency.is_some(), "The currency field is required: USD, GBP, EUR, INR or BGN.");
    let status = get("status").and_then(status);
    need("status", status.is_some(), "The status field is required: pending, approved, rejected or reversed.");
    let goal = get("goal").map(|g| g.chars().take(64).collect::<String>());
    if errors.is_empty() && state.clicks.get(&state.store, click_id).await?.is_none() {
        errors.insert("click_id".into(), vec!["The click id is unknown.".into()]);
    }
    let (Some(payout), Some(currency), Some(status), true) = (payout, currency, status, errors.is_empty()) else {
        return Err(ApiError::validation(errors));
    };
    let money = payout.to_money(currency).map_err(|_| ApiError::invalid_field("payout", amount::field_message("payout", amount::minor_digits(currency))))?;
    let event = PostbackReceived {
        network_id: network.id,
        click_id: click_id.to_string(),
        txn_id: txn_id.to_string(),
        payout: money,
        status,
        goal,
        received_at_ms: chrono::Utc::now().timestamp_millis(),
    };
    publish_event(state.bus.as_ref(), &event).await.map_err(ApiError::unavailable)?;
    Ok(json::ok(serde_json::json!({
        "status": "accepted",
        "network_id": network.id,
        "txn_id": event.txn_id,
        "conversion_id": crate::partner::ledger::conversion_id(network.id, &event.txn_id),
    })))
}
