//! Admin: `POST /rewards/pay` pays queued rewards (all, or `reward_ids`) through the
//! configured payout provider and queues `reward.paid` webhooks; `{paid, failed}`.

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
    responses((status = 200, description = "{paid: n}")), security(("admin" = [])))]
pub async fn pay(_admin: Admin, state: web::Data<AppState>, body: JsonBody<PayRewards>) -> Result<HttpResponse, ApiError> {
    let ids = body.into_inner().reward_ids;
    let (paid, failed) = crate::partner::ledger::pay(&state.store, &state.bus, state.payouts.as_ref(), ids.as_deref())
        .await
        .map_err(ApiError::unavailable)?;
    Ok(json::ok(serde_json::json!({ "paid": paid, "failed": failed, "provider": state.payouts.name() })))
}
