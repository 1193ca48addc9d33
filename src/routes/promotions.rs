//! `GET /api/v1/promotions` (seed "Promotions"): the bundles featured by running promotions,
//! rendered like products, and the running percentage promotion (or `null`).

use crate::auth::Authenticated;
use crate::domain::Scope;
use crate::error::ApiError;
use crate::json;
use crate::routes::products::{resolve_currency, QueryParams, Render};
use crate::state::AppState;
use crate::catalogue::BUNDLE_TYPE;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Utc;
use serde_json::{json, Value};

/// The promotion type whose percentage applies site-wide.
pub const PERCENTAGE_PROMOTION: &str = "Percentage Promotion";

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/promotions", web::get().to(list));
}

/// Bundles in promotion and the active percentage promotion.
#[utoipa::path(get, path = "/api/v1/promotions", tag = "affiliate",
    params(
        ("currency_code" = Option<crate::routes::openapi::schemas::Currency>, Query, description = "USD (default), GBP, EUR, INR or BGN (case-insensitive)"),
        ("currency_from_ip" = Option<String>, Query, description = "IP address to infer the currency from"),
    ),
    responses((status = 200, description = "bundles and percentage_promotion"), (status = 401), (status = 403), (status = 422)),
    security(("bearer" = []), ("api_key_header" = []), ("api_key_query" = [])))]
pub async fn list(auth: Authenticated, state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    auth.require(Scope::PromotionsView)?;
    let q = QueryParams::parse(req.query_string());
    let currency = resolve_currency(&state, &q)?;
    let snapshot = state.catalogue.snapshot();
    let now = Utc::now();
    let active = snapshot.active_promotions(now);
    let render = Render { snapshot: &snapshot, currency, affiliate_id: auth.affiliate.id, base_url: &state.public_base_url, now };
    let mut seen = std::collections::HashSet::new();
    let bundles: Vec<Value> = active
        .iter()
        .flat_map(|p| p.bundle_ids.iter())
        .filter(|id| seen.insert(**id))
        .filter_map(|id| snapshot.published(*id))
        .filter(|p| p.model_type == BUNDLE_TYPE)
        .map(|p| render.product(p))
        .collect();
    let percentage = active.iter().find(|p| p.promotion_type == PERCENTAGE_PROMOTION).map(|p| {
        json!({
            "id": p.id,
            "title": p.title,
            "text": p.text,
            "type": p.promotion_type,
            "percentage_off": json::number(p.percentage_off),
            "ends_at": p.ends_at.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        })
    });
    Ok(json::ok(json!({ "bundles": bundles, "percentage_promotion": percentage })))
}
