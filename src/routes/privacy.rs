//! Export and erasure of one end user's personal data (issue 13, seed "Data privacy
//! compliance"; see [`crate::partner::privacy`]):
//!
//! - `GET /v1/users/{user_id}/export?tenant_id=` (secret key with `rewards.read`): the
//!   calling partner's clicks, conversions and rewards of the end user. An end user the
//!   partner holds nothing about exports empty lists (200): there is no user record to miss.
//! - `DELETE /v1/users/{user_id}?tenant_id=` (secret key with `users.manage`): erases it. The
//!   user id becomes a pseudonym everywhere, clicks lose IP and user agent, amounts and
//!   ledger postings stay; an audit row says what was erased (with the pseudonym, never the
//!   user id).
//! - The admin API does the same for any partner: `GET
//!   /admin/v1/affiliates/{id}/users/{user_id}/export?tenant_id=` and `DELETE
//!   /admin/v1/affiliates/{id}/users/{user_id}?tenant_id=` (unknown affiliate: 404).
//!
//! Publishable keys hold neither scope, so they are refused (403).

use crate::auth::{Admin, Authenticated};
use crate::domain::{KeyKind, Scope};
use crate::error::{ApiError, FieldErrors};
use crate::json;
use crate::metrics::RequestId;
use crate::partner::ledger::reward_view;
use crate::partner::privacy::{erase_user, export_user, ErasureSummary};
use crate::routes::products::QueryParams;
use crate::state::AppState;
use crate::store::{AuditActor, AuditEntry};
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use chrono::Utc;
use serde_json::{json, Value};
use std::time::Duration;

/// The partner's routes (under `/v1`).
pub fn partner(cfg: &mut web::ServiceConfig) {
    cfg.route("/users/{user_id}/export", web::get().to(export))
        .route("/users/{user_id}", web::delete().to(erase));
}

/// The admin's routes (under `/admin/v1`).
pub fn admin(cfg: &mut web::ServiceConfig) {
    cfg.route("/affiliates/{id}/users/{user_id}/export", web::get().to(admin_export))
        .route("/affiliates/{id}/users/{user_id}", web::delete().to(admin_erase));
}

/// How long an erasure waits for the ledger writer to pseudonymise the user's conversions.
const ERASURE_WAIT: Duration = Duration::from_secs(10);

/// The longest end user id a click records.
const MAX_USER_ID: usize = 128;

/// The end user and tenant of a call: 422 without `tenant_id` or with an unusable user id.
fn subject(req: &HttpRequest, user_id: &str) -> Result<(String, String), ApiError> {
    let q = QueryParams::parse(req.query_string());
    let mut errors = FieldErrors::new();
    let tenant = q.one("tenant_id").map(str::trim).filter(|t| !t.is_empty());
    if tenant.is_none() {
        errors.insert("tenant_id".into(), vec!["The tenant id field is required.".into()]);
    }
    if user_id.trim().is_empty() || user_id.chars().count() > MAX_USER_ID {
        errors.insert("user_id".into(), vec![format!("The user id must be 1 to {MAX_USER_ID} characters.")]);
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    Ok((user_id.to_string(), tenant.unwrap_or_default().to_string()))
}

/// Personal data may only be read or erased with a secret key (server side) holding `scope`.
fn require_secret(auth: &Authenticated, scope: Scope) -> Result<(), ApiError> {
    auth.require(scope)?;
    if auth.key.kind != KeyKind::Secret {
        return Err(ApiError::insufficient_scope());
    }
    Ok(())
}

async fn export_of(state: &AppState, affiliate_id: u64, user: &str, tenant: &str) -> Result<HttpResponse, ApiError> {
    let data = export_user(&state.store, affiliate_id, tenant, user).await.map_err(ApiError::unavailable)?;
    let money = |minor: i64| json!(minor as f64 / 100.0);
    let clicks: Vec<Value> = data
        .clicks
        .iter()
        .map(|c| {
            json!({
                "click_id": c.click_id,
                "code": c.code,
                "campaign_id": c.campaign_id,
                "offer_id": c.offer_id,
                "ip": c.ip,
                "user_agent": c.user_agent,
                "clicked_at": json::format_time(&c.at),
            })
        })
        .collect();
    let conversions: Vec<Value> = data
        .conversions
        .iter()
        .map(|c| {
            json!({
                "conversion_id": c.id,
                "click_id": c.click_id,
                "campaign_id": c.campaign_id,
                "offer_id": c.offer_id,
                "network_id": c.network_id,
                "txn_id": c.txn_id,
                "goal": c.goal,
                "payout": money(c.payout_minor),
                "currency": c.currency,
                "status": c.status,
                "created_at": json::format_time(&c.created_at),
                "updated_at": json::format_time(&c.updated_at),
            })
        })
        .collect();
    Ok(json::ok(json!({
        "user_id": user,
        "tenant_id": tenant,
        "clicks": clicks,
        "conversions": conversions,
        "rewards": data.conversions.iter().map(reward_view).collect::<Vec<_>>(),
    })))
}

async fn erase_of(state: &AppState, req: &HttpRequest, caller: (AuditActor, Option<u64>), affiliate_id: u64, user: &str, tenant: &str) -> Result<HttpResponse, ApiError> {
    let s: ErasureSummary =
        erase_user(&state.store, &state.bus, &state.pseudonyms, affiliate_id, tenant, user, ERASURE_WAIT).await.map_err(ApiError::unavailable)?;
    // What was erased, beside the request's own audit row; by pseudonym, never the user id.
    state.usage.audited(AuditEntry {
        at: Utc::now(),
        affiliate_id,
        key_id: caller.1,
        network_id: None,
        actor: caller.0,
        method: "DELETE".into(),
        route: "user.erased".into(),
        path: format!("/users/{}?tenant_id={tenant}&clicks={}&conversions={}&pending={}", s.pseudonym, s.clicks, s.conversions, s.pending),
        status: 200,
        latency_us: 0,
        client_ip: crate::auth::client_ip(req).map(|ip| ip.to_string()),
        request_id: req.extensions().get::<RequestId>().map(|r| r.0.clone()).unwrap_or_default(),
    });
    Ok(json::ok(json!({
        "erased": true,
        "tenant_id": tenant,
        "pseudonym": s.pseudonym,
        "clicks": s.clicks,
        "conversions": s.conversions,
        "pending": s.pending,
    })))
}

/// Everything held about an end user.
#[utoipa::path(get, path = "/v1/users/{user_id}/export", tag = "partner",
    params(("user_id" = String, Path, description = "end user id (uid/sub1 of the clicks)"), ("tenant_id" = String, Query, description = "tenant")),
    responses((status = 200, description = "{user_id, tenant_id, clicks, conversions, rewards} (empty lists for an unknown end user)"), (status = 401), (status = 403, description = "Insufficient scope. (needs `rewards.read` on a secret key)"), (status = 422)),
    security(("bearer" = []), ("api_key_header" = []), ("api_key_query" = [])))]
pub async fn export(auth: Authenticated, state: web::Data<AppState>, req: HttpRequest, user_id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    require_secret(&auth, Scope::RewardsRead)?;
    let (user, tenant) = subject(&req, &user_id)?;
    export_of(&state, auth.affiliate.id, &user, &tenant).await
}

/// Erases an end user's personal data.
#[utoipa::path(delete, path = "/v1/users/{user_id}", tag = "partner",
    params(("user_id" = String, Path, description = "end user id (uid/sub1 of the clicks)"), ("tenant_id" = String, Query, description = "tenant")),
    responses((status = 200, description = "{erased, tenant_id, pseudonym, clicks, conversions, pending}"), (status = 401), (status = 403, description = "Insufficient scope. (needs `users.manage` on a secret key)"), (status = 422), (status = 503)),
    security(("bearer" = []), ("api_key_header" = []), ("api_key_query" = [])))]
pub async fn erase(auth: Authenticated, state: web::Data<AppState>, req: HttpRequest, user_id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    require_secret(&auth, Scope::UsersManage)?;
    let (user, tenant) = subject(&req, &user_id)?;
    erase_of(&state, &req, (AuditActor::Key, Some(auth.key.id)), auth.affiliate.id, &user, &tenant).await
}

/// Everything held about an end user of any partner.
#[utoipa::path(get, path = "/admin/v1/affiliates/{id}/users/{user_id}/export", tag = "admin",
    params(("id" = u64, Path, description = "affiliate id"), ("user_id" = String, Path, description = "end user id"), ("tenant_id" = String, Query, description = "tenant")),
    responses((status = 200, description = "{user_id, tenant_id, clicks, conversions, rewards}"), (status = 401), (status = 404, description = "Affiliate not found."), (status = 422)),
    security(("admin" = [])))]
pub async fn admin_export(_admin: Admin, state: web::Data<AppState>, req: HttpRequest, path: web::Path<(u64, String)>) -> Result<HttpResponse, ApiError> {
    let (id, user_id) = path.into_inner();
    let affiliate = crate::accounts::get_affiliate(&state, id).await?;
    let (user, tenant) = subject(&req, &user_id)?;
    export_of(&state, affiliate.id, &user, &tenant).await
}

/// Erases an end user's personal data for any partner.
#[utoipa::path(delete, path = "/admin/v1/affiliates/{id}/users/{user_id}", tag = "admin",
    params(("id" = u64, Path, description = "affiliate id"), ("user_id" = String, Path, description = "end user id"), ("tenant_id" = String, Query, description = "tenant")),
    responses((status = 200, description = "{erased, tenant_id, pseudonym, clicks, conversions, pending}"), (status = 401), (status = 404, description = "Affiliate not found."), (status = 422), (status = 503)),
    security(("admin" = [])))]
pub async fn admin_erase(_admin: Admin, state: web::Data<AppState>, req: HttpRequest, path: web::Path<(u64, String)>) -> Result<HttpResponse, ApiError> {
    let (id, user_id) = path.into_inner();
    let affiliate = crate::accounts::get_affiliate(&state, id).await?;
    let (user, tenant) = subject(&req, &user_id)?;
    erase_of(&state, &req, (AuditActor::Admin, None), affiliate.id, &user, &tenant).await
}
