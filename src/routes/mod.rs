//! HTTP routes, one module per resource, each exposing what it mounts.

pub mod admin;
pub mod blogs;
pub mod categories;
pub mod clicks;
pub mod health;
pub mod openapi;
pub mod pagination;
pub mod partner;
pub mod ping;
pub mod postbacks;
pub mod privacy;
pub mod products;
pub mod promotions;
pub mod rewards;
pub mod stats;
pub mod webhooks;

use crate::error::ApiError;
use actix_web::web;

/// Mounts every route of the service.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.configure(health::configure)
        .service(web::scope("/api/v1").configure(ping::configure).configure(categories::configure).configure(products::configure).configure(promotions::configure).configure(blogs::configure).configure(webhooks::affiliate))
        .service(web::scope("/v1").configure(webhooks::partner).configure(partner::configure).configure(postbacks::configure).configure(rewards::configure).configure(stats::configure).configure(privacy::partner))
        .configure(clicks::configure)
        .service(web::scope("/admin/v1").configure(admin::configure).configure(privacy::admin))
        .route("/openapi.json", web::get().to(openapi::document));
}

/// Anything no route matches: 405 with `Allow` when the path is a route called with another
/// method, 404 otherwise, in the envelope. A call of an API path that presents a
/// valid key still counts for that key (usage stats show partners their wrong URLs) and
/// takes from its bucket, so a spent bucket answers 429 here too.
pub async fn not_found(req: actix_web::HttpRequest) -> Result<actix_web::HttpResponse, ApiError> {
    use actix_web::FromRequest;
    if crate::usage::is_api_path(req.path()) && crate::auth::presents_key(&req) {
        if let Err(e) = crate::auth::Authenticated::from_request(&req, &mut actix_web::dev::Payload::None).await {
            if e.code() == "rate_limited" {
                return Err(e);
            }
        }
    }
    if let Some(allowed) = openapi::allowed_methods(req.path()) {
        return Err(ApiError::new(actix_web::http::StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "Method not allowed.")
            .with_header("allow", allowed.join(", ")));
    }
    Err(ApiError::not_found("Route not found."))
}
