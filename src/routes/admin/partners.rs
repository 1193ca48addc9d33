//! Admin: the partner-flow catalogue: brands (`POST /brands`), offers (`POST /offers`,
//! `PATCH /offers/{id}`) and the networks that send postbacks (`POST /networks`, answering
//! the network's postback token; `POST /networks/{id}/rotate-token`, answering a new one).
//! A plain postback token is shown only in those two answers: the store keeps its hash.

use crate::auth::Admin;
use crate::error::{ApiError, FieldErrors};
use crate::extract::JsonBody;
use crate::json;
use crate::partner::lookups::{NetworkCache, TOKEN_PREFIX};
use crate::partner::offers::refresh_offers;
use crate::state::AppState;
use crate::store::{BrandRecord, NetworkRecord, OfferRecord, Sequence};
use crate::validation::{percentage, required};
use actix_web::{web, HttpResponse};
use chrono::Utc;
use hissaback_topics::CurrencyCode;
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::ToSchema;
use validator::Validate;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/brands", web::post().to(create_brand))
        .route("/offers", web::post().to(create_offer))
        .route("/networks", web::post().to(create_network))
        .route("/networks/{id}/rotate-token", web::post().to(rotate_network_token));
}

#[derive(Deserialize, Validate, ToSchema)]
pub struct CreateNamed {
    #[serde(default, deserialize_with = "json::trimmed")]
    #[validate(custom(function = "required"), length(max = 255, message = "The name field must not be greater than 255 characters."))]
    #[schema(required = true)]
    pub name: String,
}

/// Creates a brand.
#[utoipa::path(post, path = "/admin/v1/brands", tag = "admin", request_body = CreateNamed,
    responses((status = 201, description = "brand {id, name}"), (status = 422)), security(("admin" = [])))]
pub async fn create_brand(_admin: Admin, state: web::Data<AppState>, body: JsonBody<CreateNamed>) -> Result<HttpResponse, ApiError> {
    let brand = BrandRecord { id: state.store.next_id(Sequence::Brand).await?, name: body.into_inner().name, created_at: Utc::now() };
    state.store.put_brand(&brand).await?;
    refresh_offers(&state).await?;
    Ok(json::created(json!({ "brand": { "id": brand.id, "name": brand.name } })))
}

#[derive(Deserialize, Validate, ToSchema)]
pub struct CreateOffer {
    #[validate(required(message = "The brand id field is required."))]
    #[schema(value_type = u64, required = true)]
    pub brand_id: Option<u64>,
    #[serde(default, deserialize_with = "json::trimmed")]
    #[validate(custom(function = "required"), length(max = 255))]
    #[schema(required = true)]
    pub name: String,
    #[serde(default, deserialize_with = "json::trimmed")]
    #[validate(custom(function = "required"), length(max = 100))]
    #[schema(required = true)]
    pub category: String,
    /// Percent of the sale the network pays.
    #[schema(value_type = f64)]
    #[validate(required(message = "The base commission field is required."), custom(function = "percentage"))]
    pub base_commission: Option<Decimal>,
    /// Default share of the payout for end users, percent.
    #[schema(value_type = f64)]
    #[validate(required(message = "The default share pct field is required."), custom(function = "percentage"))]
    pub default_share_pct: Option<Decimal>,
    /// The network's tracking URL with a `{click_id}` macro.
    #[serde(default, deserialize_with = "json::trimmed")]
    #[validate(custom(function = "required"), url(message = "The tracking url field must be a valid URL."), length(max = 2048))]
    #[schema(required = true)]
    pub tracking_url: String,
    /// USD (default), GBP, EUR, INR or BGN (case-insensitive).
    #[schema(value_type = Option<crate::routes::openapi::schemas::Currency>)]
    pub currency: Option<String>,
}

pub fn offer_view(o: &OfferRecord) -> Value {
    json!({
        "id": o.id,
        "brand_id": o.brand_id,
        "name": o.name,
        "category": o.category,
        "base_commission": json::number(o.base_commission),
        "default_share_pct": json::number(o.default_share_pct),
        "tracking_url": o.tracking_url,
        "currency": o.currency,
        "created_at": json::format_time(&o.created_at),
    })
}

/// Creates an offer.
#[utoipa::path(post, path = "/admin/v1/offers", tag = "admin", request_body = CreateOffer,
    responses((status = 201, description = "offer"), (status = 422)), security(("admin" = [])))]
pub async fn create_offer(_admin: Admin, state: web::Data<AppState>, body: JsonBody<CreateOffer>) -> Result<HttpResponse, ApiError> {
    let b = body.into_inner();
    let mut errors = FieldErrors::new();
    let brand_id = b.brand_id.unwrap_or_default();
    if !state.store.brands().await?.iter().any(|x| x.id == brand_id) {
        errors.insert("brand_id".into(), vec!["The selected brand id is invalid.".into()]);
    }
    if !b.tracking_url.contains("{click_id}") {
        errors.insert("tracking_url".into(), vec!["The tracking url field must contain the {click_id} macro.".into()]);
    }
    let currency = match b.currency.as_deref() {
        None => CurrencyCode::USD,
        Some(c) => CurrencyCode::parse(c).unwrap_or_else(|| {
            errors.insert("currency".into(), vec![crate::routes::products::UNSUPPORTED_CURRENCY.into()]);
            CurrencyCode::USD
        }),
    };
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let now = Utc::now();
    let offer = OfferRecord {
        id: state.store.next_id(Sequence::Offer).await?,
        brand_id,
        name: b.name,
        category: b.category,
        base_commission: b.base_commission.unwrap_or_default().normalize(),
        default_share_pct: b.default_share_pct.unwrap_or_default().normalize(),
        tracking_url: b.tracking_url,
        currency: currency.as_str().to_string(),
        external_id: None,
        created_at: now,
        updated_at: now,
    };
    state.store.put_offer(&offer).await?;
    refresh_offers(&state).await?;
    Ok(json::created(json!({ "offer": offer_view(&offer) })))
}

/// Creates a network; its postback token authenticates its postbacks.
#[utoipa::path(post, path = "/admin/v1/networks", tag = "admin", request_body = CreateNamed,
    responses((status = 201, description = "network {id, name, postback_token}"), (status = 422)), security(("admin" = [])))]
pub async fn create_network(_admin: Admin, state: web::Data<AppState>, body: JsonBody<CreateNamed>) -> Result<HttpResponse, ApiError> {
    let token = NetworkCache::generate_token();
    let network = NetworkRecord {
        id: state.store.next_id(Sequence::Network).await?,
        name: body.into_inner().name,
        postback_token: state.networks.hash(&token),
        created_at: Utc::now(),
    };
    state.store.put_network(&network).await?;
    Ok(json::created(network_with_token(&network, &token)))
}

/// The answer that shows a network's plain token, once.
fn network_with_token(network: &NetworkRecord, token: &str) -> Value {
    json!({ "network": { "id": network.id, "name": network.name, "postback_token": token } })
}

/// Gives a network a new postback token. The old one stops at once on this instance and
/// within `partner.network_cache_seconds` on the others: no grace window, since a rotation
/// is what an operator does when a token leaked.
#[utoipa::path(post, path = "/admin/v1/networks/{id}/rotate-token", tag = "admin",
    responses((status = 201, description = "network {id, name, postback_token}: the new plain token, shown only here"), (status = 404)),
    security(("admin" = [])))]
pub async fn rotate_network_token(_admin: Admin, state: web::Data<AppState>, id: web::Path<u64>) -> Result<HttpResponse, ApiError> {
    let old = state.store.get_network(id.into_inner()).await?.ok_or_else(|| ApiError::not_found("Network not found."))?;
    let token = NetworkCache::generate_token();
    let network = NetworkRecord { postback_token: state.networks.hash(&token), ..old.clone() };
    state.store.put_network(&network).await?;
    // The cache holds tokens by hash; a legacy token is stored plain, and cached by its hash.
    let old_hash = if old.postback_token.starts_with(TOKEN_PREFIX) { state.networks.hash(&old.postback_token) } else { old.postback_token };
    state.networks.forget(&old_hash);
    Ok(json::created(network_with_token(&network, &token)))
}
