//! `GET /api/v1/categories` (seed "Categories"): active categories with a non-blank slug,
//! not soft-deleted, ordered by name.

use crate::auth::Authenticated;
/// The rule is the catalogue's; re-exported for `blogs.rs`, which still names it here.
pub use crate::catalogue::is_listed;
use crate::domain::Scope;
use crate::error::ApiError;
use crate::json;
use crate::state::AppState;
use actix_web::{web, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/categories", web::get().to(list));
}

#[derive(Serialize, ToSchema)]
pub struct CategoryView {
    pub name: String,
    pub slug: String,
}

/// Lists the storefront categories.
#[utoipa::path(get, path = "/api/v1/categories", tag = "affiliate",
    responses((status = 200, description = "active categories, by name"), (status = 401), (status = 403, description = "Insufficient scope.")),
    security(("bearer" = []), ("api_key_header" = []), ("api_key_query" = [])))]
pub async fn list(auth: Authenticated, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    auth.require(Scope::ProductsList)?;
    let mut listed: Vec<CategoryView> = state
        .store
        .categories()
        .await?
        .into_iter()
        .filter(is_listed)
        .map(|c| CategoryView { slug: c.slug.unwrap_or_default(), name: c.name })
        .collect();
    listed.sort_by(|a, b| a.name.to_lowercase().cmp(&b.name.to_lowercase()).then_with(|| a.name.cmp(&b.name)));
    Ok(json::ok(serde_json::json!({ "categories": listed })))
}
