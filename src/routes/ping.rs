//! `GET /api/v1/test`: confirms the key, echoes its scopes and the approval-gated scopes
//! the affiliate still lacks (seed "Health Check").

use crate::auth::Authenticated;
use crate::domain::Scope;
use actix_web::{web, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/test", web::get().to(test));
}

#[derive(Serialize, ToSchema)]
pub struct TestData {
    pub affiliate_id: u64,
    pub scopes: Vec<Scope>,
    pub restrictions: Vec<Scope>,
}

#[derive(Serialize, ToSchema)]
pub struct TestResponse {
    pub success: bool,
    pub message: &'static str,
    pub data: TestData,
}

/// Verifies the API key.
#[utoipa::path(
    get, path = "/api/v1/test", tag = "affiliate",
    responses(
        (status = 200, description = "Key is valid", body = TestResponse),
        (status = 401, description = "API key is missing. / API key is invalid. / Affiliate account is not active."),
    ),
    security(("bearer" = []), ("api_key_header" = []), ("api_key_query" = []))
)]
pub async fn test(auth: Authenticated) -> HttpResponse {
    HttpResponse::Ok().json(TestResponse {
        success: true,
        message: "Affiliate API key authenticated successfully.",
        data: TestData { affiliate_id: auth.affiliate.id, scopes: auth.key.scopes.clone(), restrictions: auth.restrictions() },
    })
}
