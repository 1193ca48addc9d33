//! Admin: API keys (`POST /affiliates/{id}/keys`, `GET /affiliates/{id}/keys`,
//! `GET /keys/{id}`, `POST /keys/{id}/rotate`, `DELETE /keys/{id}`).

use crate::accounts::{self, IssuedKey, NewKey};
use crate::auth::Admin;
use crate::domain::{KeyKind, Scope};
use crate::error::{ApiError, FieldErrors};
use crate::extract::JsonBody;
use crate::json;
use crate::state::AppState;
use crate::store::{ApiKeyRecord, RatePlan};
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use validator::Validate;

/// Longest grace window a rotation accepts: 30 days.
const MAX_GRACE_SECONDS: u64 = 30 * 24 * 3600;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/affiliates/{id}/keys", web::post().to(create))
        .route("/affiliates/{id}/keys", web::get().to(list))
        .route("/keys/{id}", web::get().to(show))
        .route("/keys/{id}", web::delete().to(revoke))
        .route("/keys/{id}/rotate", web::post().to(rotate));
}

#[derive(Deserialize, Validate, ToSchema, Clone, Copy)]
pub struct RateLimitInput {
    #[validate(range(min = 1, max = 1_000_000, message = "The rate limit per minute must be between 1 and 1000000."))]
    pub per_minute: u32,
    #[validate(range(min = 1, max = 1_000_000, message = "The rate limit burst must be between 1 and 1000000."))]
    pub burst: u32,
}

#[derive(Deserialize, Validate, ToSchema)]
pub struct CreateKey {
    /// Default: every supported scope (secret keys) or every read scope (publishable keys).
    pub scopes: Option<Vec<String>>,
    /// `secret` (default) or `publishable`.
    pub kind: Option<String>,
    #[serde(default)]
    pub allowed_brand_ids: Vec<u64>,
    #[serde(default)]
    pub allowed_offer_ids: Vec<u64>,
    #[validate(nested)]
    pub rate_limit: Option<RateLimitInput>,
}

#[derive(Deserialize, Validate, ToSchema, Default)]
pub struct RotateKey {
    /// How long the old key keeps working (default 86400; 0 stops it at once).
    #[validate(range(max = 2_592_000, message = "The grace seconds field must not be greater than 2592000."))]
    pub grace_seconds: Option<u64>,
}

#[derive(Serialize, ToSchema)]
pub struct RateLimitView {
    pub per_minute: u32,
    pub burst: u32,
}

#[derive(Serialize, ToSchema)]
pub struct KeyView {
    pub id: u64,
    /// The plain key: present only in the answer that issued it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    pub prefix: String,
    pub kind: KeyKind,
    pub affiliate_id: u64,
    pub scopes: Vec<Scope>,
    pub allowed_brand_ids: Vec<u64>,
    pub allowed_offer_ids: Vec<u64>,
    pub rate_limit: RateLimitView,
    #[serde(serialize_with = "json::time")]
    #[schema(value_type = String)]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "json::opt_time")]
    #[schema(value_type = Option<String>)]
    pub last_used_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "json::opt_time")]
    #[schema(value_type = Option<String>)]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "json::opt_time")]
    #[schema(value_type = Option<String>)]
    pub revoked_at: Option<DateTime<Utc>>,
    pub rotated_to: Option<u64>,
}

impl KeyView {
    fn of(k: &ApiKeyRecord, plain: Option<String>) -> Self {
        KeyView {
            id: k.id,
            key: plain,
            prefix: k.prefix.clone(),
            kind: k.kind,
            affiliate_id: k.affiliate_id,
            scopes: k.scopes.clone(),
            allowed_brand_ids: k.allowed_brand_ids.clone(),
            allowed_offer_ids: k.allowed_offer_ids.clone(),
            rate_limit: RateLimitView { per_minute: k.rate_limit.per_minute, burst: k.rate_limit.burst },
            created_at: k.created_at,
            last_used_at: k.last_used_at,
            expires_at: k.expires_at,
            revoked_at: k.revoked_at,
            rotated_to: k.rotated_to,
        }
    }

    fn issued(issued: &IssuedKey) -> Self {
        Self::of(&issued.record, Some(issued.plain.expose().to_string()))
    }
}

/// Parses and checks the requested kind and scopes.
fn key_request(body: &CreateKey) -> Result<(KeyKind, Vec<Scope>), ApiError> {
    let mut errors = FieldErrors::new();
    let kind = match body.kind.as_deref() {
        None => KeyKind::Secret,
        Some(k) => KeyKind::parse(k).unwrap_or_else(|| {
            errors.insert("kind".into(), vec!["The selected kind is invalid. Use secret or publishable.".into()]);
            KeyKind::Secret
        }),
    };
    let scopes = match &body.scopes {
        None => match kind {
            KeyKind::Secret => Scope::ALL.to_vec(),
            KeyKind::Publishable => Scope::PUBLISHABLE.to_vec(),
        },
        Some(names) => {
            let mut scopes = Vec::new();
            for (i, name) in names.iter().enumerate() {
                match Scope::parse(name) {
                    Some(s) => scopes.push(s),
                    None => {
                        errors.insert(format!("scopes.{i}"), vec![format!("The scope `{name}` is not supported.")]);
                    }
                }
            }
            scopes
        }
    };
    if kind == KeyKind::Publishable && scopes.iter().any(|s| !Scope::PUBLISHABLE.contains(s)) {
        let allowed: Vec<_> = Scope::PUBLISHABLE.iter().map(|s| s.as_str()).collect();
        errors.insert("scopes".into(), vec![format!("Publishable keys may only hold read scopes: {}.", allowed.join(", "))]);
    }
    if body.allowed_brand_ids.contains(&0) {
        errors.insert("allowed_brand_ids".into(), vec!["Brand ids must be positive integers.".into()]);
    }
    if body.allowed_offer_ids.contains(&0) {
        errors.insert("allowed_offer_ids".into(), vec!["Offer ids must be positive integers.".into()]);
    }
    if errors.is_empty() {
        Ok((kind, scopes))
    } else {
        Err(ApiError::validation(errors))
    }
}

/// Issues a key for an affiliate; the plain key is in this answer only.
#[utoipa::path(post, path = "/admin/v1/affiliates/{id}/keys", tag = "admin", request_body = CreateKey,
    responses((status = 201, description = "issued; `key` is the plain key, shown only here"), (status = 404), (status = 422)),
    security(("admin" = [])))]
pub async fn create(_admin: Admin, state: web::Data<AppState>, id: web::Path<u64>, body: JsonBody<CreateKey>) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let (kind, scopes) = key_request(&body)?;
    let affiliate = accounts::get_affiliate(&state, id.into_inner()).await?;
    let issued = accounts::issue_key(
        &state,
        affiliate.id,
        NewKey {
            kind,
            scopes,
            allowed_brand_ids: body.allowed_brand_ids,
            allowed_offer_ids: body.allowed_offer_ids,
            rate_limit: body.rate_limit.map(|r| RatePlan { per_minute: r.per_minute, burst: r.burst }),
        },
    )
    .await?;
    Ok(json::created(serde_json::json!({ "key": KeyView::issued(&issued) })))
}

/// Lists an affiliate's keys (never the plain keys).
#[utoipa::path(get, path = "/admin/v1/affiliates/{id}/keys", tag = "admin",
    responses((status = 200, description = "the keys"), (status = 404)), security(("admin" = [])))]
pub async fn list(_admin: Admin, state: web::Data<AppState>, id: web::Path<u64>) -> Result<HttpResponse, ApiError> {
    let affiliate = accounts::get_affiliate(&state, id.into_inner()).await?;
    let keys = state.store.keys_of_affiliate(affiliate.id).await?;
    let views: Vec<_> = keys.iter().map(|k| KeyView::of(k, None)).collect();
    Ok(json::ok(serde_json::json!({ "keys": views })))
}

/// Shows one key, with `last_used_at`.
#[utoipa::path(get, path = "/admin/v1/keys/{id}", tag = "admin",
    responses((status = 200, description = "the key"), (status = 404)), security(("admin" = [])))]
pub async fn show(_admin: Admin, state: web::Data<AppState>, id: web::Path<u64>) -> Result<HttpResponse, ApiError> {
    let key = accounts::get_key(&state, id.into_inner()).await?;
    Ok(json::ok(serde_json::json!({ "key": KeyView::of(&key, None) })))
}

/// Rotates a key: a new plain key now, the old one valid until the grace window ends.
#[utoipa::path(post, path = "/admin/v1/keys/{id}/rotate", tag = "admin", request_body = RotateKey,
    responses((status = 201, description = "the new key"), (status = 404), (status = 409, description = "revoked or already rotated"), (status = 422, description = "grace_seconds out of range")),
    security(("admin" = [])))]
pub async fn rotate(_admin: Admin, state: web::Data<AppState>, id: web::Path<u64>, body: JsonBody<RotateKey>) -> Result<HttpResponse, ApiError> {
    let grace = body.into_inner().grace_seconds.unwrap_or(state.settings.auth.rotation_grace_seconds).min(MAX_GRACE_SECONDS);
    let (issued, old) = accounts::rotate_key(&state, id.into_inner(), grace).await?;
    Ok(json::data(
        StatusCode::CREATED,
        serde_json::json!({
            "key": KeyView::issued(&issued),
            "rotated_from": { "id": old.id, "expires_at": old.expires_at.as_ref().map(json::format_time) },
        }),
    ))
}

/// Revokes a key; it fails at once with "API key is invalid.".
#[utoipa::path(delete, path = "/admin/v1/keys/{id}", tag = "admin",
    responses((status = 200, description = "revoked"), (status = 404), (status = 409, description = "changed concurrently too often")),
    security(("admin" = [])))]
pub async fn revoke(_admin: Admin, state: web::Data<AppState>, id: web::Path<u64>) -> Result<HttpResponse, ApiError> {
    let key = accounts::revoke_key(&state, id.into_inner()).await?;
    Ok(json::ok(serde_json::json!({ "key": KeyView::of(&key, None) })))
}
