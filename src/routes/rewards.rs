//! `GET /v1/rewards/user?user_id=&tenant_id=` (scope `rewards.read`): the calling partner's
//! rewards for one end user of one tenant, with totals per status and currency, what the
//! user owes back after reversals of paid rewards (`owed`) and the resulting `balance`.

use crate::auth::Authenticated;
use crate::domain::Scope;
use crate::error::{ApiError, FieldErrors};
use crate::json;
use crate::partner::ledger::{owed_totals, reward_totals, reward_view};
use crate::routes::products::QueryParams;
use crate::state::AppState;
use crate::store::RewardStatus;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/rewards/user", web::get().to(user_rewards));
}

/// An end user's rewards.
#[utoipa::path(get, path = "/v1/rewards/user", tag = "partner",
    params(("user_id" = String, Query, description = "end user id (uid/sub1 of the click)"), ("tenant_id" = String, Query, description = "tenant")),
    responses((status = 200, description = "rewards and totals"), (status = 401), (status = 403), (status = 422)),
    security(("bearer" = []), ("api_key_header" = []), ("api_key_query" = [])))]
pub async fn user_rewards(auth: Authenticated, state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    auth.require(Scope::RewardsRead)?;
    let q = QueryParams::parse(req.query_string());
    let mut errors = FieldErrors::new();
    for field in ["user_id", "tenant_id"] {
        if q.one(field).is_none() {
            errors.insert(field.into(), vec![format!("The {} field is required.", field.replace('_', " "))]);
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let (user, tenant) = (q.one("user_id").unwrap_or_default(), q.one("tenant_id").unwrap_or_default());
    let rewards = state.store.rewards_of_user(auth.affiliate.id, tenant, user).await?;
    // Pending, queued, paying and paid per currency; `owed` is what the user owes back
    // after reversals of paid rewards (zero or negative), netted against their next rewards;
    // `balance` = queued + paying + owed, what the next payments come to (can go negative).
    let mut totals: BTreeMap<String, BTreeMap<String, i64>> = reward_totals(&rewards)
        .into_iter()
        .filter(|(s, _)| matches!(s, RewardStatus::Pending | RewardStatus::Queued | RewardStatus::Paying | RewardStatus::Paid))
        .map(|(s, per)| (s.as_str().to_string(), per))
        .collect();
    let owed = owed_totals(&rewards);
    let mut balance: BTreeMap<String, i64> = owed.clone();
    for status in ["queued", "paying"] {
        for (currency, amount) in &totals[status] {
            *balance.entry(currency.clone()).or_default() += amount;
        }
    }
    totals.insert("owed".into(), owed.into_iter().filter(|(_, m)| *m != 0).collect());
    totals.insert("balance".into(), balance.into_iter().filter(|(c, m)| *m != 0 || totals["queued"].contains_key(c)).collect());
    let totals: Map<String, Value> = totals
        .into_iter()
        .map(|(k, per)| (k, Value::Object(per.into_iter().map(|(c, m)| (c, json!(m as f64 / 100.0))).collect())))
        .collect();
    Ok(json::ok(json!({
        "user_id": user,
        "tenant_id": tenant,
        "rewards": rewards.iter().map(reward_view).collect::<Vec<_>>(),
        "totals": totals,
    })))
}
