//! `GET /r/{code}`: records a click (click id, campaign, partner, offer, tenant, end user from
//! `uid` or `sub1`, IP, user agent, time; one write) and redirects (302) to the offer's
//! tracking URL with its macros filled. Unknown codes answer 404. Clicks are recorded within
//! a limit per client address and per link (`partner.click_rate_limit_per_*`): beyond it the
//! redirect is still served, but the click is not recorded and is counted as refused, so a
//! flood can neither fill the store nor slow postbacks, and no link ever breaks. The IP and user agent are
//! personal data: kept in full for `privacy.click_personal_data_days` only (0: truncated
//! before they are stored), and never in the in-memory click cache, which needs attribution
//! alone.

use crate::error::ApiError;
use crate::partner::tracking::{fill, Macros};
use crate::routes::products::QueryParams;
use crate::state::AppState;
use crate::store::ClickRecord;
use actix_web::http::header::{LOCATION, USER_AGENT};
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Utc;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/r/{code}", web::get().to(redirect));
}

/// Whether this click may be recorded: one from the address's bucket and one from the
/// link's. A refusal is counted in `hissaback_rate_limited_total{kind}`.
fn click_allowed(state: &AppState, req: &HttpRequest, code: &str) -> bool {
    use hissaback_actors::rate_limit::Plan;
    use std::hash::BuildHasher;
    let hasher = std::hash::BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default();
    let p = &state.settings.partner;
    if let Some(ip) = crate::auth::client_ip(req) {
        let plan = Plan { per_minute: p.click_rate_limit_per_address.per_minute, burst: p.click_rate_limit_per_address.burst };
        if !state.limits.check_click_address(hasher.hash_one(ip), plan).allowed {
            state.metrics.rate_limited.with_label_values(&["click_address"]).inc();
            return false;
        }
    }
    let plan = Plan { per_minute: p.click_rate_limit_per_link.per_minute, burst: p.click_rate_limit_per_link.burst };
    if !state.limits.check_click_link(hasher.hash_one(code), plan).allowed {
        state.metrics.rate_limited.with_label_values(&["click_link"]).inc();
        return false;
    }
    true
}

/// Redirects a smart link to the network, recording the click.
#[utoipa::path(get, path = "/r/{code}", tag = "partner",
    params(("code" = String, Path, description = "link code"), ("uid" = Option<String>, Query, description = "end user id (or sub1)")),
    responses((status = 302, description = "to the tracking URL"), (status = 404, description = "Link not found.")))]
pub async fn redirect(state: web::Data<AppState>, req: HttpRequest, code: web::Path<String>) -> Result<HttpResponse, ApiError> {
    use rand::distr::{Alphanumeric, SampleString};
    let not_found = || ApiError::not_found("Link not found.");
    if code.len() > 64 || !code.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(not_found());
    }
    let link = state.store.get_link(&code).await?.ok_or_else(not_found)?;
    let snapshot = state.offers.snapshot(&state.store).await.map_err(ApiError::unavailable)?;
    let offer = snapshot.get(link.offer_id).ok_or_else(not_found)?;
    let q = QueryParams::parse(req.query_string());
    let user_id = q.one("uid").or_else(|| q.one("sub1")).map(|u| u.chars().take(128).collect::<String>());
    let mut click = ClickRecord {
        click_id: format!("c{}", Alphanumeric.sample_string(&mut rand::rng(), 23)),
        code: link.code.clone(),
        affiliate_id: link.affiliate_id,
        campaign_id: link.campaign_id,
        offer_id: link.offer_id,
        tenant_id: link.tenant_id.clone(),
        user_id,
        // The client as the trusted proxies name it (a spoofable `X-Forwarded-For` from
        // anyone else is not recorded as the end user's address).
        ip: crate::auth::client_ip(&req).map(|ip| ip.to_string()),
        user_agent: req.headers().get(USER_AGENT).and_then(|v| v.to_str().ok()).map(|s| s.chars().take(512).collect()),
        at: Utc::now(),
    };
    if state.settings.privacy.click_personal_data_days == 0 {
        click = click.without_personal_data();
    }
    if click_allowed(&state, &req, &link.code) {
        state.store.put_click(&click).await?;
        state.clicks.remember(ClickRecord { ip: None, user_agent: None, ..click.clone() });
        // Counted for `/v1/stats/campaigns` once the click is stored (batched by the recorder).
        state.usage.clicked(click.affiliate_id, click.campaign_id, click.at);
    }
    let macros = Macros {
        click_id: Some(&click.click_id),
        pid: Some(click.affiliate_id),
        offer_id: Some(click.offer_id),
        tenant_id: Some(&click.tenant_id),
        user_id: click.user_id.as_deref(),
    };
    Ok(HttpResponse::Found().insert_header((LOCATION, fill(&offer.offer.tracking_url, &macros, false))).finish())
}
