//! `/openapi.json`: the OpenAPI 3.1 document, generated from the handlers' annotations.

use crate::routes::{postbacks, privacy, rewards, clicks, partner, webhooks, admin, blogs, categories, health, ping, products, promotions, stats};
use actix_web::HttpResponse;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "hissaback", description = "Affiliate API (/api/v1), partner flow (/v1) and admin API (/admin/v1)."),
    paths(
        health::healthz, health::readyz, health::metrics, document,
        webhooks::list, webhooks::create, webhooks::delete, webhooks::deliveries, webhooks::redeliver, webhooks::rotate_secret, webhooks::enable,
        postbacks::receive, rewards::user_rewards, admin::rewards::pay,
        privacy::export, privacy::erase, privacy::admin_export, privacy::admin_erase,
        stats::usage, stats::campaigns, stats::payouts, stats::audit, admin::audit::audit,
        partner::offers, partner::create_campaign, partner::create_link, clicks::redirect,
        admin::partners::create_brand, admin::partners::create_offer, admin::partners::create_network, admin::partners::rotate_network_token,
        ping::test, categories::list, products::list, products::show, promotions::list,
        admin::products::create, admin::products::show, admin::products::update, admin::products::add_coupon,
        admin::promotions::create, admin::promotions::rates, admin::promotions::set_rates,
        admin::categories::create, admin::categories::update, admin::categories::delete,
        admin::affiliates::create, admin::affiliates::show, admin::affiliates::update,
        admin::keys::create, admin::keys::list, admin::keys::show, admin::keys::rotate, admin::keys::revoke,
        blogs::list_profiles, blogs::create_profile, blogs::create, blogs::update,
        admin::blogs::show, admin::blogs::publish, admin::blogs::unpublish,
    ),
    components(schemas(
        categories::CategoryView, admin::categories::CreateCategory, admin::categories::UpdateCategory, admin::categories::AdminCategoryView,
        admin::products::CreateProduct, admin::products::UpdateProduct, admin::products::CreateCoupon, admin::products::TeacherInput, admin::products::AdminProductView,
        admin::promotions::CreatePromotion, admin::promotions::SetRates,
        admin::rewards::PayRewards,
        webhooks::CreateWebhook, partner::CreateCampaign, partner::CreateLink, admin::partners::CreateNamed, admin::partners::CreateOffer,
        ping::TestResponse, ping::TestData, crate::domain::Scope, crate::domain::KeyKind,
        admin::affiliates::CreateAffiliate, admin::affiliates::UpdateAffiliate, admin::affiliates::UserInput,
        admin::affiliates::AffiliateView, admin::affiliates::UserView,
        admin::keys::CreateKey, admin::keys::RotateKey, admin::keys::RateLimitInput, admin::keys::KeyView, admin::keys::RateLimitView,
        blogs::CreateProfile, blogs::BlogProfileView, blogs::CreateBlog, blogs::UpdateBlog, blogs::BlogView,
        admin::blogs::UnpublishBlog, admin::blogs::AdminBlogView,
    )),
    modifiers(&Security)
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let bearer = || SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build());
        components.add_security_scheme("bearer", bearer());
        components.add_security_scheme("admin", bearer());
        components.add_security_scheme("api_key_header", SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-Affiliate-Api-Key"))));
        components.add_security_scheme("api_key_query", SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::new("api_key"))));
        for item in openapi.paths.paths.values_mut() {
            for op in [&mut item.get, &mut item.post, &mut item.put, &mut item.patch, &mut item.delete].into_iter().flatten() {
                let mut document = |status: &str, description: &str| {
                    if !op.responses.responses.contains_key(status) {
                        op.responses.responses.insert(
                            status.to_string(),
                            utoipa::openapi::RefOr::T(utoipa::openapi::ResponseBuilder::new().description(description).build()),
                        );
                    }
                };
                // Every call that presents a credential can be refused by a rate limit: the
                // key's bucket, or the address's failed-authentication allowance (admin token
                // included).
                if op.security.as_ref().is_some_and(|s| !s.is_empty()) {
                    document("429", "Rate limit exceeded. / Too many failed authentications; retry later. (with Retry-After)");
                }
                // Every body is read by `crate::extract` (`JsonBody`, `read_json`,
                // `read_decoded_body` + `parse_json`), whose answers these are.
                if op.request_body.is_some() {
                    document("400", "invalid_json: the request body is not valid JSON (or could not be read).");
                    document("413", "payload_too_large: the request body is larger than the configured limit.");
                    document("415", "unsupported_media_type: Requests with a body must set Content-Type: application/json.");
                }
            }
        }
    }
}

#[utoipa::path(get, path = "/openapi.json", tag = "operations", responses((status = 200, description = "this document")))]
pub async fn document() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}

/// Every documented route: its pattern (in actix's `{name}` syntax, as OpenAPI writes it) and
/// the methods it answers, for the 405 of a known path called with another method.
static ROUTES: std::sync::LazyLock<Vec<(actix_web::dev::ResourceDef, Vec<&'static str>)>> = std::sync::LazyLock::new(|| {
    use utoipa::openapi::path::HttpMethod;
    let doc = ApiDoc::openapi();
    doc.paths
        .paths
        .iter()
        .map(|(path, item)| {
            let mut methods = Vec::new();
            for (method, op) in [
                (HttpMethod::Get, &item.get),
                (HttpMethod::Post, &item.post),
                (HttpMethod::Put, &item.put),
                (HttpMethod::Patch, &item.patch),
                (HttpMethod::Delete, &item.delete),
            ] {
                if op.is_some() {
                    methods.push(match method {
                        HttpMethod::Get => "GET",
                        HttpMethod::Post => "POST",
                        HttpMethod::Put => "PUT",
                        HttpMethod::Patch => "PATCH",
                        _ => "DELETE",
                    });
                }
            }
            (actix_web::dev::ResourceDef::new(path.as_str()), methods)
        })
        .collect()
});

/// The methods a documented route answers at `path`, when there is such a route.
pub fn allowed_methods(path: &str) -> Option<Vec<&'static str>> {
    let mut out: Vec<&'static str> = Vec::new();
    for (def, methods) in ROUTES.iter() {
        if def.is_match(path) {
            for m in methods {
                if !out.contains(m) {
                    out.push(m);
                }
            }
        }
    }
    if out.contains(&"GET") && head_is_safe(path) {
        // HEAD is answered wherever GET is safe (see `head_as_get`).
        out.insert(out.iter().position(|m| *m == "GET").unwrap_or(0) + 1, "HEAD");
    }
    (!out.is_empty()).then_some(out)
}

/// GETs with effects, which a HEAD (a link checker, a crawler) must not trigger: a click
/// redirect records a click, a postback records a conversion.
fn head_is_safe(path: &str) -> bool {
    !(path.starts_with("/r/") || path == "/v1/postbacks")
}

/// Middleware: a HEAD request is served by the route's GET handler where that GET is safe;
/// the answer keeps its status and headers (`Content-Length` included) and the HTTP layer
/// sends no body for HEAD.
pub async fn head_as_get(
    mut req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody + 'static>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    if req.method() == actix_web::http::Method::HEAD && head_is_safe(req.path()) {
        req.head_mut().method = actix_web::http::Method::GET;
    }
    next.call(req).await
}
