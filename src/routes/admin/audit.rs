//! Admin: `GET /audit?affiliate_id=&date=&limit=`: any affiliate's audit rows of one UTC
//! day, newest first. Affiliate 0 (the default) holds admin actions, postbacks and calls
//! that failed to authenticate.

use crate::auth::Admin;
use crate::error::FieldErrors;
use crate::json;
use crate::routes::pagination::int_param;
use crate::routes::products::QueryParams;
use crate::routes::stats::{audit_query, audit_view};
use crate::state::AppState;
use actix_web::{web, HttpRequest, HttpResponse};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/audit", web::get().to(audit));
}

/// Audit rows of one affiliate and day.
#[utoipa::path(get, path = "/admin/v1/audit", tag = "admin",
    params(
        ("affiliate_id" = Option<u64>, Query, minimum = 0, description = "affiliate; 0 (default): admin, postbacks, failed authentications"),
        ("date" = Option<String>, Query, description = "UTC day, `YYYY-MM-DD`; default today"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "1–1000, default 100"),
    ),
    responses((status = 200, description = "audit rows, newest first"), (status = 401), (status = 422)), security(("admin" = [])))]
pub async fn audit(_admin: Admin, state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, crate::error::ApiError> {
    let q = QueryParams::parse(req.query_string());
    let mut errors = FieldErrors::new();
    let affiliate_id = int_param(&q, "affiliate_id", 0, u64::MAX, &mut errors).unwrap_or(0);
    let (date, limit) = audit_query(&q, &mut errors);
    if !errors.is_empty() {
        return Err(crate::error::ApiError::validation(errors));
    }
    let rows = state.store.audit_of(affiliate_id, date, limit).await?;
    Ok(json::ok(serde_json::json!({
        "affiliate_id": affiliate_id,
        "date": date.to_string(),
        "entries": rows.iter().map(audit_view).collect::<Vec<_>>(),
    })))
}
