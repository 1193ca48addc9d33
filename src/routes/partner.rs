//! The partner API under `/v1` (spec "Partner Discovery", "Campaign Creation Flow"):
//! `GET /offers`, `POST /campaigns`, `POST /links`. Every object belongs to the calling
//! partner: another partner's campaign answers 404, never 403.

use crate::auth::Authenticated;
use crate::domain::{KeyKind, Scope};
use crate::error::{ApiError, FieldErrors};
use crate::extract::read_json;
use crate::json;
use crate::partner::offers::{allowed, ListedOffer};
use crate::partner::tracking::{fill, Macros};
use crate::routes::pagination::{int_param, Page};
use crate::json::number;
use crate::routes::products::QueryParams;
use crate::state::AppState;
use crate::store::{CampaignRecord, LinkRecord, Sequence};
use actix_web::http::header::{CacheControl, CacheDirective, ContentType};
use actix_web::web::Bytes;
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
        ("brand_id" = Option<u64>, Query, minimum = 1, description = "Only this brand's offers"),
        ("category" = Option<String>, Query, description = "Only this category (case-insensitive)"),
        ("q" = Option<String>, Query, description = "Whitespace-separated terms, all required, over name, brand name and category"),
        ("min_commission" = Option<f64>, Query, minimum = 0, description = "Lowest base commission, percent"),
        crate::routes::pagination::PageParams,
    ),
    responses((status = 200, description = "offers and pagination"), (status = 401), (status = 403), (status = 422)),
    security(("bearer" = []), ("api_key_header" = []), ("api_key_query" = [])))]
pub async fn offers(auth: Authenticated, state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    auth.require(Scope::OffersRead)?;
    let public = auth.key.kind == KeyKind::Publishable;
    let query = req.query_string();
    let cache_header = || CacheControl(vec![CacheDirective::Public, CacheDirective::MaxAge(state.offers.public_ttl().as_secs() as u32)]);
    if public {
        if let Some(body) = state.offers.cached(auth.key.id, query) {
            return Ok(HttpResponse::Ok().insert_header(cache_header()).content_type(ContentType::json()).body(body));
        }
    }
    let q = QueryParams::parse(query);
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
    let visible = |o: &ListedOffer| {
        allowed(&auth.key, &o.offer)
            && brand_id.is_none_or(|b| o.offer.brand_id == b)
            && category.as_ref().is_none_or(|c| o.offer.category.to_lowercase() == *c)
            && min_commission.is_none_or(|m| o.offer.base_commission >= m)
            && terms.iter().all(|t| o.haystack.contains(t.as_str()))
    };
    let body = offers_body(&snapshot.offers, visible, &paging, &q, &state.public_base_url);
    if public {
        let body = Bytes::from(body);
        state.offers.remember(auth.key.id, query, body.clone());
        return Ok(HttpResponse::Ok().insert_header(cache_header()).content_type(ContentType::json()).body(body));
    }
    Ok(json::ok_bytes(body))
}

/// An offer as partners see it.
fn offer_view(o: &ListedOffer) -> Value {
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
}

/// Room reserved per offer of a page (typically 150 to 250 bytes) and for the rest.
const BYTES_PER_OFFER: usize = 256;
const PAGE_OVERHEAD: usize = 512;

/// The listing's body, `{"success":true,"data":{"offers":[…],"pagination":{…}}}`: the page of
/// `visible` offers written into one buffer from their cached renderings.
fn offers_body(offers: &[ListedOffer], visible: impl Fn(&ListedOffer) -> bool, paging: &Page, q: &QueryParams, base_url: &str) -> Vec<u8> {
    let offset = paging.offset();
    let expected = paging.per_page.min(offers.len().saturating_sub(offset));
    let mut out = Vec::with_capacity(PAGE_OVERHEAD + expected * BYTES_PER_OFFER);
    out.extend_from_slice(json::DATA_OPEN);
    out.extend_from_slice(br#"{"offers":["#);
    let mut total = 0;
    for o in offers.iter().filter(|o| visible(o)) {
        if total >= offset && total - offset < paging.per_page {
            if total > offset {
                out.push(b',');
            }
            out.extend_from_slice(o.json(|o| serde_json::to_vec(&offer_view(o)).expect("a JSON value always serializes")));
        }
        total += 1;
    }
    out.extend_from_slice(br#"],"pagination":"#);
    serde_json::to_writer(&mut out, &paging.block(total, base_url, "/v1/offers", q)).expect("a JSON value always serializes");
    out.extend_from_slice(b"}}");
    out
}

#[derive(Deserialize, Validate, ToSchema)]
pub struct CreateCampaign {
    #[validate(required(message = "The offer id field is required."))]
    #[schema(value_type = u64, required = true)]
    pub offer_id: Option<u64>,
    /// Share of each payout for the end user, percent in (0, 100]; or give `flat_reward`.
    #[schema(value_type = Option<f64>)]
    #[validate(custom(function = "crate::validation::percentage"))]
    pub share_pct: Option<Decimal>,
    /// A fixed reward per conversion (capped at the payout); or give `share_pct`. A plain
    /// decimal with at most the offer currency's minor digits (see [`crate::domain::Amount`]).
    #[schema(value_type = Option<f64>)]
    pub flat_reward: Option<crate::domain::Amount>,
    /// The partner's own tenant (site, app, customer) the campaign serves.
    #[serde(default, deserialize_with = "json::trimmed")]
    #[validate(custom(function = "crate::validation::required"), length(max = 128, message = "The tenant id field must not be greater than 128 characters."))]
    #[schema(required = true, min_length = 1, max_length = 128)]
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
        (None, Some(f)) if f.is_zero() => {
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
    // The reward is paid in the offer's currency: no more decimals than its minor unit.
    if let (Some(f), Some(o)) = (b.flat_reward, snapshot.get(offer_id)) {
        let currency = hissaback_topics::CurrencyCode::parse(&o.offer.currency).unwrap_or(hissaback_topics::CurrencyCode::USD);
        if !f.fits(currency) {
            errors.insert("flat_reward".into(), vec![crate::domain::amount::field_message("flat_reward", crate::domain::amount::minor_digits(currency))]);
        }
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
        flat_reward: b.flat_reward.map(|d| d.value().normalize()),
        created_at: Utc::now(),
    };
    state.store.put_campaign(&campaign).await?;
    state.campaigns.known(campaign.id, crate::partner::ledger::split_of(&campaign));
    Ok(json::created(json!({ "campaign": campaign_view(&campaign) })))
}

#[derive(Deserialize, Validate, ToSchema)]
pub struct CreateLink {
    #[validate(required(message = "The campaign id field is required."))]
    #[schema(value_type = u64, required = true)]
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::OfferRecord;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use std::str::FromStr;

    /// The oracle: the listing as the handler rendered it before the cached renderings.
    fn offers_body_oracle(offers: &[ListedOffer], visible: impl Fn(&ListedOffer) -> bool, paging: &Page, q: &QueryParams, base_url: &str) -> Vec<u8> {
        let matching: Vec<&ListedOffer> = offers.iter().filter(|o| visible(o)).collect();
        let total = matching.len();
        let list: Vec<Value> = matching.iter().skip(paging.offset()).take(paging.per_page).map(|o| offer_view(o)).collect();
        let answer = json!({
            "success": true,
            "data": {
                "offers": list,
                "pagination": paging.block(total, base_url, "/v1/offers", q),
            }
        });
        serde_json::to_vec(&answer).unwrap()
    }

    fn offers() -> Vec<ListedOffer> {
        let names = ["Rocket VPN", "Café \"Crème\" ☕", "back\\slash\tand\nnewline", "", "\u{1}ctrl\u{7f}", "Plain"];
        let categories = ["vpn", "Food & Drink", "VPN", "ünï", ""];
        let commissions = ["0", "12.5", "15", "15.00", "33.3333", "100", "0.001"];
        (1..=37u64)
            .map(|id| {
                let i = id as usize;
                let now = chrono::Utc::now();
                let offer = OfferRecord {
                    id,
                    brand_id: id % 4 + 1,
                    name: format!("{} {id}", names[i % names.len()]),
                    category: categories[i % categories.len()].into(),
                    base_commission: Decimal::from_str(commissions[i % commissions.len()]).unwrap(),
                    default_share_pct: Decimal::from_str(commissions[(i + 3) % commissions.len()]).unwrap(),
                    tracking_url: format!("https://track.example/{id}?click={{click_id}}"),
                    currency: ["USD", "EUR", "GBP"][i % 3].into(),
                    external_id: None,
                    created_at: now,
                    updated_at: now,
                };
                let brand = ["Brand \"One\"", "Ünï Brand", "", "Brand/4"][i % 4];
                ListedOffer::new(offer, brand.into())
            })
            .collect()
    }

    fn assert_same(offers: &[ListedOffer], visible: &dyn Fn(&ListedOffer) -> bool, query: &str, base: &str) {
        let q = QueryParams::parse(query);
        let mut errors = FieldErrors::new();
        let paging = Page::parse(&q, &mut errors);
        assert!(errors.is_empty(), "{query}");
        let old = offers_body_oracle(offers, visible, &paging, &q, base);
        for _ in 0..2 {
            let new = offers_body(offers, visible, &paging, &q, base);
            assert_eq!(String::from_utf8_lossy(&new), String::from_utf8_lossy(&old), "{query}");
        }
    }

    #[test]
    fn offer_pages_are_byte_identical_to_the_serde_rendering() {
        let offers = offers();
        let everything = |_: &ListedOffer| true;
        let brand_two = |o: &ListedOffer| o.offer.brand_id == 2;
        let vpn_rocket = |o: &ListedOffer| o.offer.category.to_lowercase() == "vpn" && o.haystack.contains("rocket");
        let nothing = |_: &ListedOffer| false;
        let filters: [&dyn Fn(&ListedOffer) -> bool; 4] = [&everything, &brand_two, &vpn_rocket, &nothing];
        let queries = ["", "per_page=15", "per_page=1", "per_page=100", "per_page=15&page=3", "per_page=15&page=4", "page=99", "q=rocket&category=VPN&x=%22y%22&api_key=k"];
        for base in ["https://example.com", "http://h/\"q\"\\"] {
            for visible in filters {
                for query in queries {
                    assert_same(&offers, visible, query, base);
                }
            }
        }
    }

    #[test]
    fn random_offer_queries_are_byte_identical() {
        let offers = offers();
        let mut rng = StdRng::seed_from_u64(12);
        for _ in 0..300 {
            let brand: u64 = rng.random_range(0..=5);
            let min = Decimal::new(rng.random_range(0..=2000), 2);
            let term = ["", "rocket", "ü", "\"", "1", "brand", "zzz"][rng.random_range(0..7)];
            let visible = |o: &ListedOffer| (brand == 0 || o.offer.brand_id == brand) && o.offer.base_commission >= min && o.haystack.contains(term);
            let query = format!("per_page={}&page={}", rng.random_range(1..=100), rng.random_range(1..=8));
            assert_same(&offers, &visible, &query, "https://example.com");
        }
    }
}
