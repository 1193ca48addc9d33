//! Admin: promotions (`POST /promotions`, emits `promotion.created`) and exchange rates
//! (`GET|PUT /exchange-rates`, units per 1 USD).

use crate::auth::Admin;
use crate::catalogue::actor::Refresh;
use crate::catalogue::{ExchangeRates, BUNDLE_TYPE, RATES_SETTING};
use crate::error::{ApiError, FieldErrors};
use crate::events::emit_change;
use crate::extract::JsonBody;
use crate::json;
use crate::routes::promotions::PERCENTAGE_PROMOTION;
use crate::state::AppState;
use crate::store::{PromotionRecord, Sequence};
use crate::validation::{percentage, required};
use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use hissaback_topics::events::ContentChange;
use rust_decimal::Decimal;
use serde::Deserialize;
use utoipa::ToSchema;
use validator::Validate;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/promotions", web::post().to(create))
        .route("/exchange-rates", web::get().to(rates))
        .route("/exchange-rates", web::put().to(set_rates));
}

#[derive(Deserialize, Validate, ToSchema)]
pub struct CreatePromotion {
    #[serde(default, deserialize_with = "json::trimmed")]
    #[validate(custom(function = "required"), length(max = 255, message = "The title field must not be greater than 255 characters."))]
    pub title: String,
    #[serde(default)]
    #[validate(length(max = 1000))]
    pub text: String,
    /// Default `Percentage Promotion`.
    #[serde(rename = "type")]
    #[validate(length(min = 1, max = 255))]
    pub promotion_type: Option<String>,
    #[schema(value_type = f64)]
    #[validate(required(message = "The percentage off field is required."), custom(function = "percentage"))]
    pub percentage_off: Option<Decimal>,
    #[schema(value_type = Option<String>)]
    pub ends_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub bundle_ids: Vec<u64>,
}

fn promotion_json(p: &PromotionRecord) -> serde_json::Value {
    serde_json::json!({
        "id": p.id,
        "title": p.title,
        "text": p.text,
        "type": p.promotion_type,
        "percentage_off": json::number(p.percentage_off),
        "ends_at": p.ends_at.as_ref().map(json::format_time),
        "bundle_ids": p.bundle_ids,
        "created_at": json::format_time(&p.created_at),
    })
}

/// Creates a promotion; emits `promotion.created`.
#[utoipa::path(post, path = "/admin/v1/promotions", tag = "admin", request_body = CreatePromotion,
    responses((status = 201, description = "created"), (status = 422)), security(("admin" = [])))]
pub async fn create(_admin: Admin, state: web::Data<AppState>, body: JsonBody<CreatePromotion>) -> Result<HttpResponse, ApiError> {
    let b = body.into_inner();
    let mut errors = FieldErrors::new();
    let snapshot = state.catalogue.snapshot();
    let bad: Vec<String> = b
        .bundle_ids
        .iter()
        .filter(|id| snapshot.product(**id).is_none_or(|p| p.model_type != BUNDLE_TYPE))
        .map(|id| id.to_string())
        .collect();
    if !bad.is_empty() {
        errors.insert("bundle_ids".into(), vec![format!("Every id must name an existing bundle: {}.", bad.join(", "))]);
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let promotion = PromotionRecord {
        id: state.store.next_id(Sequence::Promotion).await?,
        title: b.title,
        text: b.text,
        promotion_type: b.promotion_type.unwrap_or_else(|| PERCENTAGE_PROMOTION.to_string()),
        percentage_off: b.percentage_off.unwrap_or_default().normalize(),
        ends_at: b.ends_at,
        bundle_ids: b.bundle_ids,
        created_at: Utc::now(),
    };
    state.store.put_promotion(&promotion).await?;
    state.catalogue.refresh(Refresh::Promotions).await.map_err(ApiError::internal)?;
    emit_change(state.bus.as_ref(), ContentChange::PromotionCreated { promotion_id: promotion.id }).await?;
    Ok(json::created(serde_json::json!({ "promotion": promotion_json(&promotion) })))
}

#[derive(Deserialize, Validate, ToSchema)]
pub struct SetRates {
    /// Units per 1 USD of any of GBP, EUR, INR, BGN; the others keep their value.
    #[schema(value_type = Object)]
    pub rates: Option<std::collections::BTreeMap<String, Decimal>>,
}

fn rates_json(r: &ExchangeRates) -> serde_json::Value {
    let f = json::number;
    serde_json::json!({ "base": "USD", "rates": { "GBP": f(r.gbp), "EUR": f(r.eur), "INR": f(r.inr), "BGN": f(r.bgn) } })
}

/// The exchange rates in force.
#[utoipa::path(get, path = "/admin/v1/exchange-rates", tag = "admin", responses((status = 200, description = "rates per 1 USD")), security(("admin" = [])))]
pub async fn rates(_admin: Admin, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    Ok(json::ok(rates_json(state.catalogue.snapshot().rates())))
}

/// Sets exchange rates; prices in those currencies change at once.
#[utoipa::path(put, path = "/admin/v1/exchange-rates", tag = "admin", request_body = SetRates,
    responses((status = 200, description = "rates per 1 USD"), (status = 422)), security(("admin" = [])))]
pub async fn set_rates(_admin: Admin, state: web::Data<AppState>, body: JsonBody<SetRates>) -> Result<HttpResponse, ApiError> {
    let Some(given) = body.into_inner().rates.filter(|r| !r.is_empty()) else {
        return Err(ApiError::invalid_field("rates", "The rates field is required: an object of GBP, EUR, INR or BGN per 1 USD."));
    };
    let mut next = state.catalogue.snapshot().rates().clone();
    let mut errors = FieldErrors::new();
    for (code, value) in given {
        let slot = match code.to_ascii_uppercase().as_str() {
            "GBP" => &mut next.gbp,
            "EUR" => &mut next.eur,
            "INR" => &mut next.inr,
            "BGN" => &mut next.bgn,
            _ => {
                errors.insert(format!("rates.{code}"), vec!["Rates can be set for GBP, EUR, INR and BGN.".into()]);
                continue;
            }
        };
        if value <= Decimal::ZERO || value > Decimal::from(1_000_000) {
            errors.insert(format!("rates.{code}"), vec!["A rate must be a positive number up to 1000000.".into()]);
            continue;
        }
        *slot = value.normalize();
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    state.store.put_setting(RATES_SETTING, &serde_json::to_string(&next).map_err(ApiError::internal)?).await?;
    state.catalogue.refresh(Refresh::Rates).await.map_err(ApiError::internal)?;
    emit_change(state.bus.as_ref(), ContentChange::ExchangeRatesChanged).await?;
    Ok(json::ok(rates_json(&next)))
}
