//! Admin: `POST /rewards/pay` pays queued rewards (all, or `reward_ids`) through the
//! configured payout provider: each becomes `paying`, is paid by the payer and settles
//! `paid` (with its `reward.paid` webhook) or back to `queued`. The answer counts what
//! settled within `payouts.wait_ms`: `{paid, failed, pending, provider}`; `pending` ones
//! settle later.

use crate::auth::Admin;
use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::json;
use crate::state::AppState;
use actix_web::{web, HttpResponse};
use serde::Deserialize;
use utoipa::ToSchema;
use validator::Validate;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/rewards/pay", web::post().to(pay));
}

#[derive(Deserialize, Validate, ToSchema, Default)]
pub struct PayRewards {
    /// Rewards to pay; every queued reward when absent.
    pub reward_ids: Option<Vec<u64>>,
}

/// Pays queued rewards.
#[utoipa::path(post, path = "/admin/v1/rewards/pay", tag = "admin", request_body = PayRewards,
    responses((status = 200, description = "{paid, failed, pending, provider}: what settled within the wait, and what is still in flight"),
        (status = 422, description = "reward_ids is not a list of whole numbers"), (status = 503, description = "the store or the event bus is unreachable")), security(("admin" = [])))]
pub async fn pay(_admin: Admin, state: web::Data<AppState>, body: JsonBody<PayRewards>) -> Result<HttpResponse, ApiError> {
    let ids = body.into_inner().reward_ids;
    let wait = std::time::Duration::from_millis(state.settings.payouts.wait_ms);
    let s = crate::partner::ledger::request_payment(&state.store, &state.bus, ids.as_deref(), wait).await.map_err(ApiError::unavailable)?;
    Ok(json::ok(serde_json::json!({ "paid": s.paid, "failed": s.failed, "pending": s.pending, "provider": state.payouts.name() })))
}
