//! The partner API under `/v1` (spec "Partner Discovery", "Campaign Creation Flow"):
//! `GET /offers`, `POST /campaigns`, `POST /links`. Every object belongs to the calling
//! partner: another partner's campaign answers 404, never 403.

use crate::auth::Authenticated;
use crate::domain::{KeyKind, Scope};
use crate::error::{ApiError, FieldErrors};
use crate::extract::read_json;
use crate::json;
use crate::partner::offers::allowed;
use crate::partner::tracking::{fill, Macros};
use crate::routes::pagination::{int_param, Page};
use crate::json::number;
use crate::routes::products::QueryParams;
use crate::state::AppState;
use crate::store::{CampaignRecord, LinkRecord, Sequence};
use actix_web::http::header::{CacheControl, CacheDirective};
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Utc;
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::ToSchema;
use validator::Validate;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/offers", web::get().to(offers))
        .route("/campaigns", web::post().to(create_campaign))
        .route("/links", web::post().to(create_link));
}

/// The partner's offer catalogue: filtered by `brand_id`, `category`, `q`, `min_commission`,
/// limited to the key's allowed brands and offers, paginated.
#[utoipa::path(get, path = "/v1/offers", tag = "partner",
    params(
        ("brand_id" = Option<u64>, Query, description = "Only this brand's offers"),
        ("category" = Option<String>, Query, description = "Only this category (case-insensitive)"),
        ("q" = Option<String>, Query, description = "Whitespace-separated terms, all required, over name, brand name and category"),
        ("min_commission" = Option<f64>, Query, description = "Lowest base commission, percent"),
        ("page" = Option<u32>, Query, description = "Page, from 1"),
        ("per_page" = Option<u32>, Query, description = "1 to 100, default 15"),
    ),
    responses((status = 200, description = "offers and pagination"), (status = 401), (status = 403), (status = 422)),
    security(("bearer" = []), ("api_key_header" = []), ("api_key_query" = [])))]
pub async fn offers(auth: Authenticated, state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    auth.require(Scope::OffersRead)?;
    let public = auth.key.kind == KeyKind::Publishable;
    let query = req.query_string().to_string();
    let cache_header = || CacheControl(vec![CacheDirective::Public, CacheDirective::MaxAge(state.offers.public_ttl().as_secs() as u32)]);
    if public {
        if let Some(answer) = state.offers.cached(auth.key.id, &query) {
            return Ok(HttpResponse::Ok().insert_header(cache_header()).json(answer));
        }
    }
    let q = QueryParams::parse(&query);
    let mut errors = FieldErrors::new();
    let brand_id = int_param(&q, "brand_id", 1, u64::MAX, &mut errors);
    let paging = Page::parse(&q, &mut errors);
    let min_commission = match q.one("min_commission") {
        None => None,
        Some(raw) => match raw.parse::<Decimal>() {
            Ok(v) if v >= Decimal::ZERO => Some(v),
            _ => {
                errors.insert("min_commission".into(), vec!["The min commission field must be a non-negative number.".into()]);
                None
            }
        },
    };
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let category = q.one("category").map(str::to_lowercase);
    let terms: Vec<String> = q.one("q").map(|s| s.split_whitespace().map(str::to_lowercase).collect()).unwrap_or_default();
    let snapshot = state.offers.snapshot(&state.store).await.map_err(ApiError::unavailable)?;
    let matching: Vec<&crate::partner::offers::ListedOffer> = snapshot
        .offers
        .iter()
        .filter(|o| allowed(&auth.key, &o.offer))
        .filter(|o| brand_id.is_none_or(|b| o.offer.brand_id == b))
        .filter(|o| category.as_ref().is_none_or(|c| o.offer.category.to_lowercase() == *c))
        .filter(|o| min_commission.is_none_or(|m| o.offer.base_commission >= m))
        .filter(|o| terms.iter().all(|t| o.haystack.contains(t.as_str())))
        .collect();
    let total = matching.len();
    let list: Vec<Value> = matching
        .iter()
        .skip(paging.offset())
        .take(paging.per_page)
        .map(|o| {
            json!({
                "id": o.offer.id,
                "name": o.offer.name,
                "brand_id": o.offer.brand_id,
                "brand_name": o.brand_name,
                "category": o.offer.category,
                "base_commission": number(o.offer.base_commission),
                "default_share_pct": number(o.offer.default_share_pct),
                "currency": o.offer.currency,
            })
        })
        .collect();
    let answer = json!({
        "success": true,
        "data": {
            "offers": list,
            "pagination": paging.block(total, &state.public_base_url, "/v1/offers", &q),
        }
    });
    if public {
        state.offers.remember(auth.key.id, &query, answer.clone());
        return Ok(HttpResponse::Ok().insert_header(cache_header()).json(answer));
    }
    Ok(HttpResponse::Ok().json(answer))
}

#[derive(Deserialize, Validate, ToSchema)]
pub struct CreateCampaign {
    #[validate(required(message = "The offer id field is required."))]
    pub offer_id: Option<u64>,
    /// Share of each payout for the end user, percent in (0, 100]; or give `flat_reward`.
    #[schema(value_type = Option<f64>)]
    #[validate(custom(function = "crate::validation::percentage"))]
    pub share_pct: Option<Decimal>,
    /// A fixed reward per conversion (capped at the payout); or give `share_pct`.
    #[schema(value_type = Option<f64>)]
    pub flat_reward: Option<Decimal>,
    /// The partner's own tenant (site, app, customer) the campaign serves.
    #[serde(default, deserialize_with = "json::trimmed")]
    #[validate(custom(function = "crate::validation::required"), length(max = 128, message = "The tenant id field must not be greater than 128 characters."))]
    pub tenant_id: String,
}

pub fn campaign_view(c: &CampaignRecord) -> Value {
    json!({
        "campaign_id": c.id,
        "offer_id": c.offer_id,
        "tenant_id": c.tenant_id,
        "share_pct": c.share_pct.map(number),
        "flat_reward": c.flat_reward.map(|d| json!(rust_decimal::prelude::ToPrimitive::to_f64(&d).unwrap_or_default())),
        "created_at": json::format_time(&c.created_at),
    })
}

/// Creates a campaign: an offer and how its conversions are split with end users.
#[utoipa::path(post, path = "/v1/campaigns", tag = "partner", request_body = CreateCampaign,
    responses((status = 201, description = "campaign"), (status = 401), (status = 403), (status = 422)),
    security(("bearer" = []), ("api_key_header" = []), ("api_key_query" = [])))]
pub async fn create_campaign(auth: Authenticated, state: web::Data<AppState>, req: HttpRequest, payload: web::Payload) -> Result<HttpResponse, ApiError> {
    auth.require(Scope::CampaignsWrite)?;
    let b: CreateCampaign = read_json(&req, payload).await?;
    let mut errors = FieldErrors::new();
    match (&b.share_pct, &b.flat_reward) {
        (Some(_), Some(_)) | (None, None) => {
            errors.insert("share_pct".into(), vec!["Provide exactly one of share_pct or flat_reward.".into()]);
        }
        (None, Some(f)) if *f <= Decimal::ZERO || f.normalize().scale() > 2 || *f > Decimal::from(crate::validation::MAX_AMOUNT) => {
            errors.insert("flat_reward".into(), vec!["The flat reward field must be more than 0, with at most two decimals.".into()]);
        }
        _ => {}
    }
    if !b.tenant_id.bytes().all(|c| c.is_ascii_alphanumeric() || b"-_.:".contains(&c)) {
        errors.insert("tenant_id".into(), vec!["The tenant id field may only contain letters, digits, '-', '_', '.' and ':'.".into()]);
    }
    let snapshot = state.offers.snapshot(&state.store).await.map_err(ApiError::unavailable)?;
    let offer_id = b.offer_id.unwrap_or_default();
    if !snapshot.get(offer_id).is_some_and(|o| allowed(&auth.key, &o.offer)) {
        errors.insert("offer_id".into(), vec!["The selected offer id is invalid.".into()]);
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let campaign = CampaignRecord {
        id: state.store.next_id(Sequence::Campaign).await?,
        affiliate_id: auth.affiliate.id,
        offer_id,
        tenant_id: b.tenant_id,
        share_pct: b.share_pct.map(|d| d.normalize()),
        flat_reward: b.flat_reward.map(|d| d.normalize()),
        created_at: Utc::now(),
    };
    state.store.put_campaign(&campaign).await?;
    state.campaigns.known(campaign.id, crate::partner::ledger::split_of(&campaign));
    Ok(json::created(json!({ "campaign": campaign_view(&campaign) })))
}

#[derive(Deserialize, Validate, ToSchema)]
pub struct CreateLink {
    #[validate(required(message = "The campaign id field is required."))]
    pub campaign_id: Option<u64>,
}

/// Makes a smart link for one of the partner's campaigns.
#[utoipa::path(post, path = "/v1/links", tag = "partner", request_body = CreateLink,
    responses((status = 201, description = "link {code, url, campaign_id, pid, offer_id, raw_url}"), (status = 404, description = "Campaign not found."), (status = 422)),
    security(("bearer" = []), ("api_key_header" = []), ("api_key_query" = [])))]
pub async fn create_link(auth: Authenticated, state: web::Data<AppState>, req: HttpRequest, payload: web::Payload) -> Result<HttpResponse, ApiError> {
    use rand::distr::{Alphanumeric, SampleString};
    auth.require(Scope::LinksWrite)?;
    let b: CreateLink = read_json(&req, payload).await?;
    let campaign = state
        .store
        .get_campaign(auth.affiliate.id, b.campaign_id.unwrap_or_default())
        .await?
        .ok_or_else(|| ApiError::not_found("Campaign not found."))?;
    let snapshot = state.offers.snapshot(&state.store).await.map_err(ApiError::unavailable)?;
    let offer = snapshot.get(campaign.offer_id).ok_or_else(|| ApiError::not_found("Offer not found."))?;
    let link = LinkRecord {
        // 14 random alphanumerics: about 83 bits, not guessable; the lookup is the check.
        code: Alphanumeric.sample_string(&mut rand::rng(), 14),
        affiliate_id: auth.affiliate.id,
        campaign_id: campaign.id,
        offer_id: campaign.offer_id,
        tenant_id: campaign.tenant_id.clone(),
        created_at: Utc::now(),
    };
    state.store.put_link(&link).await?;
    let macros = Macros { pid: Some(link.affiliate_id), offer_id: Some(link.offer_id), tenant_id: Some(&link.tenant_id), ..Default::default() };
    Ok(json::created(json!({ "link": {
        "code": link.code,
        "url": format!("{}/r/{}", state.public_base_url, link.code),
        "campaign_id": link.campaign_id,
        "pid": link.affiliate_id,
        "offer_id": link.offer_id,
        "raw_url": fill(&offer.offer.tracking_url, &macros, true),
    }})))
}
