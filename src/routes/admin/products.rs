//! Admin: products (`POST /products`, `PATCH /products/{id}`, `GET /products/{id}`) and their
//! coupons (`POST /products/{id}/coupons`).
//!
//! Every change is written to the store, swapped into this instance's catalogue snapshot,
//! then published on `product-changes` (`product.published` when a product becomes
//! published, `product.unpublished` when it stops being, `product.updated` for any other
//! change to a published product) for the other instances and the webhook dispatcher.

use crate::auth::Admin;
use crate::catalogue::actor::Refresh;
use crate::catalogue::BUNDLE_TYPE;
use crate::error::{ApiError, FieldErrors};
use crate::events::emit_change;
use crate::extract::JsonBody;
use crate::json;
use crate::routes::admin::categories::is_slug;
use crate::state::AppState;
use crate::store::{CouponRecord, CouponTier, EditAttempts, ProductRecord, Sequence, TeacherRecord, EDIT_CONFLICT};
use crate::domain::Amount;
use crate::validation::{coupon_tier, percentage, required};
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use hissaback_topics::events::ContentChange;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use validator::Validate;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/products", web::post().to(create))
        .route("/products/{id}", web::get().to(show))
        .route("/products/{id}", web::patch().to(update))
        .route("/products/{id}/coupons", web::post().to(add_coupon));
}

#[derive(Deserialize, Validate, ToSchema, Clone)]
pub struct TeacherInput {
    #[validate(range(min = 1, message = "The teacher id must be a positive integer."))]
    pub id: u64,
    #[serde(default, deserialize_with = "json::trimmed")]
    #[validate(custom(function = "required"), length(max = 255))]
    pub name: String,
}

#[derive(Deserialize, Validate, ToSchema)]
pub struct CreateProduct {
    #[serde(default, deserialize_with = "json::trimmed")]
    #[validate(custom(function = "required"), length(max = 255, message = "The title field must not be greater than 255 characters."))]
    pub title: String,
    #[serde(default, deserialize_with = "json::trimmed")]
    #[validate(custom(function = "required"))]
    pub slug: String,
    #[serde(default)]
    #[validate(length(max = 65535))]
    pub description: String,
    #[validate(url(message = "The image field must be a valid URL."))]
    pub image: Option<String>,
    /// USD: a plain decimal with at most two decimals (no exponent), see [`Amount`].
    #[schema(value_type = f64)]
    #[validate(required(message = "The price field is required."))]
    pub price: Option<Amount>,
    /// e.g. `App\\Models\\Course`, `App\\Models\\ProductBundle`.
    #[serde(default, rename = "type", deserialize_with = "json::trimmed")]
    #[validate(custom(function = "required"), length(max = 255))]
    pub model_type: String,
    pub category_slug: Option<String>,
    #[serde(default)]
    pub published: bool,
    #[validate(url(message = "The introduction video url field must be a valid URL."))]
    pub introduction_video_url: Option<String>,
    #[serde(default)]
    pub bundle_product_ids: Vec<u64>,
    #[serde(default)]
    #[validate(nested)]
    pub teachers: Vec<TeacherInput>,
}

#[derive(Deserialize, Validate, ToSchema)]
pub struct UpdateProduct {
    #[serde(default, deserialize_with = "json::opt_trimmed")]
    #[validate(custom(function = "required"), length(max = 255, message = "The title field must not be greater than 255 characters."))]
    pub title: Option<String>,
    #[serde(default, deserialize_with = "json::opt_trimmed")]
    #[validate(custom(function = "required"))]
    pub slug: Option<String>,
    #[validate(length(max = 65535))]
    pub description: Option<String>,
    #[serde(default, deserialize_with = "json::double_option")]
    #[schema(value_type = Option<String>)]
    pub image: Option<Option<String>>,
    #[schema(value_type = Option<f64>)]
    pub price: Option<Amount>,
    #[serde(default, rename = "type", deserialize_with = "json::opt_trimmed")]
    #[validate(custom(function = "required"), length(max = 255))]
    pub model_type: Option<String>,
    #[serde(default, deserialize_with = "json::double_option")]
    #[schema(value_type = Option<String>)]
    pub category_slug: Option<Option<String>>,
    pub published: Option<bool>,
    #[serde(default, deserialize_with = "json::double_option")]
    #[schema(value_type = Option<String>)]
    pub introduction_video_url: Option<Option<String>>,
    pub bundle_product_ids: Option<Vec<u64>>,
    #[validate(nested)]
    pub teachers: Option<Vec<TeacherInput>>,
}

#[derive(Deserialize, Validate, ToSchema)]
pub struct CreateCoupon {
    /// `low`, `mid` or `high`.
    #[validate(required(message = "The tier field is required."), custom(function = "coupon_tier"))]
    pub tier: Option<String>,
    #[serde(default, deserialize_with = "json::trimmed")]
    #[validate(custom(function = "required"), length(max = 64, message = "The code field must not be greater than 64 characters."))]
    pub code: String,
    #[schema(value_type = f64)]
    #[validate(required(message = "The percent off field is required."), custom(function = "percentage"))]
    pub percent_off: Option<Decimal>,
    /// ISO 8601; absent or null: never expires.
    #[schema(value_type = Option<String>)]
    pub expires_at: Option<DateTime<Utc>>,
}

/// A product as the admin API shows it: everything stored.
#[derive(Serialize, ToSchema)]
pub struct AdminProductView {
    pub id: u64,
    pub title: String,
    pub slug: String,
    pub description: String,
    pub image: Option<String>,
    #[serde(with = "rust_decimal::serde::float")]
    #[schema(value_type = f64)]
    pub price: Decimal,
    #[serde(rename = "type")]
    pub model_type: String,
    pub category_slug: Option<String>,
    pub published: bool,
    pub introduction_video_url: Option<String>,
    pub bundle_product_ids: Vec<u64>,
    #[schema(value_type = Vec<Object>)]
    pub teachers: Vec<serde_json::Value>,
    #[schema(value_type = Vec<Object>)]
    pub coupons: Vec<serde_json::Value>,
    #[serde(serialize_with = "json::time")]
    #[schema(value_type = String)]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "json::time")]
    #[schema(value_type = String)]
    pub updated_at: DateTime<Utc>,
}

fn coupon_json(c: &CouponRecord) -> serde_json::Value {
    serde_json::json!({
        "tier": c.tier,
        "code": c.code,
        "percent_off": json::number(c.percent_off),
        "expires_at": c.expires_at.as_ref().map(json::format_time),
    })
}

fn view(p: &ProductRecord) -> AdminProductView {
    AdminProductView {
        id: p.id,
        title: p.title.clone(),
        slug: p.slug.clone(),
        description: p.description.clone(),
        image: p.image.clone(),
        price: p.price_usd,
        model_type: p.model_type.clone(),
        category_slug: p.category_slug.clone(),
        published: p.published,
        introduction_video_url: p.introduction_video_url.clone(),
        bundle_product_ids: p.bundle_product_ids.clone(),
        teachers: p.teachers.iter().map(|t| serde_json::json!({"id": t.id, "name": t.name})).collect(),
        coupons: p.coupons.iter().map(coupon_json).collect(),
        created_at: p.created_at,
        updated_at: p.updated_at,
    }
}

fn answer(status: StatusCode, p: &ProductRecord) -> HttpResponse {
    json::data(status, serde_json::json!({ "product": view(p) }))
}

/// Checks the references of a product (slug shape, category, bundle children).
async fn check_references(
    state: &AppState,
    product_id: u64,
    slug: Option<&str>,
    category: Option<&str>,
    model_type: &str,
    children: &[u64],
    errors: &mut FieldErrors,
) -> Result<(), ApiError> {
    if let Some(slug) = slug {
        if !is_slug(slug) {
            errors.insert("slug".into(), vec!["The slug field must only contain lowercase letters, digits and hyphens.".into()]);
        }
    }
    if let Some(cat) = category {
        let exists = state.store.categories().await?.iter().any(|c| c.deleted_at.is_none() && c.slug.as_deref() == Some(cat));
        if !exists {
            errors.insert("category_slug".into(), vec!["The selected category slug is invalid.".into()]);
        }
    }
    if !children.is_empty() {
        if model_type != BUNDLE_TYPE {
            errors.insert("bundle_product_ids".into(), vec![format!("Only products of type {BUNDLE_TYPE} have bundle products.")]);
        } else {
            let snapshot = state.catalogue.snapshot();
            let bad: Vec<String> = children
                .iter()
                .filter(|id| **id == product_id || snapshot.product(**id).is_none_or(|c| c.model_type == BUNDLE_TYPE))
                .map(|id| id.to_string())
                .collect();
            if !bad.is_empty() {
                errors.insert(
                    "bundle_product_ids".into(),
                    vec![format!("Bundle products must be existing products that are not bundles: {}.", bad.join(", "))],
                );
            }
        }
    }
    Ok(())
}

/// Claims the slug for the product; a slug another product holds is a 422.
async fn claim_slug(state: &AppState, slug: &str, product_id: u64) -> Result<(), ApiError> {
    if state.store.claim_unique("product_slug", slug, product_id).await? {
        Ok(())
    } else {
        Err(ApiError::invalid_field("slug", "The slug has already been taken."))
    }
}

/// Stores a new product, refreshes this instance's snapshot, then publishes the change.
async fn save(state: &AppState, product: &ProductRecord, change: Option<ContentChange>) -> Result<(), ApiError> {
    state.store.put_product(product).await?;
    announce(state, product.id, change).await
}

/// Stores an edit if the product is still at the version it was read at, then refreshes and
/// publishes like [`save`]. False: another edit came first and nothing was done (read again).
async fn save_edit(state: &AppState, product: &mut ProductRecord, change: Option<ContentChange>) -> Result<bool, ApiError> {
    if !state.store.replace_product(product).await? {
        return Ok(false);
    }
    product.version += 1;
    announce(state, product.id, change).await?;
    Ok(true)
}

/// Refreshes this instance's snapshot of a stored product, then publishes its change.
async fn announce(state: &AppState, product_id: u64, change: Option<ContentChange>) -> Result<(), ApiError> {
    state.catalogue.refresh(Refresh::Product(product_id)).await.map_err(ApiError::internal)?;
    if let Some(change) = change {
        emit_change(state.bus.as_ref(), change).await?;
    }
    Ok(())
}

/// The event a change from `was` (None: a new product) to `now` publishes.
fn change_of(was: Option<bool>, now: bool, product_id: u64) -> Option<ContentChange> {
    match (was, now) {
        (None | Some(false), true) => Some(ContentChange::ProductPublished { product_id }),
        (Some(true), false) => Some(ContentChange::ProductUnpublished { product_id }),
        (Some(true), true) => Some(ContentChange::ProductUpdated { product_id }),
        (_, false) => None,
    }
}

fn teachers(list: Vec<TeacherInput>) -> Vec<TeacherRecord> {
    list.into_iter().map(|t| TeacherRecord { id: t.id, name: t.name }).collect()
}

fn blank_to_none(v: Option<String>) -> Option<String> {
    v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

/// Creates a product; emits `product.published` when created published.
#[utoipa::path(post, path = "/admin/v1/products", tag = "admin", request_body = CreateProduct,
    responses((status = 201, description = "created"), (status = 422)), security(("admin" = [])))]
pub async fn create(_admin: Admin, state: web::Data<AppState>, body: JsonBody<CreateProduct>) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let mut errors = FieldErrors::new();
    let id = state.store.next_id(Sequence::Product).await?;
    let category = blank_to_none(body.category_slug);
    check_references(&state, id, Some(&body.slug), category.as_deref(), &body.model_type, &body.bundle_product_ids, &mut errors).await?;
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    claim_slug(&state, &body.slug, id).await?;
    let now = Utc::now();
    let product = ProductRecord {
        id,
        title: body.title,
        slug: body.slug,
        description: body.description,
        image: blank_to_none(body.image),
        price_usd: body.price.map(Amount::value).unwrap_or_default(),
        model_type: body.model_type,
        category_slug: category,
        published: body.published,
        introduction_video_url: blank_to_none(body.introduction_video_url),
        bundle_product_ids: body.bundle_product_ids,
        teachers: teachers(body.teachers),
        coupons: vec![],
        created_at: now,
        updated_at: now,
        version: 0,
    };
    save(&state, &product, change_of(None, product.published, id)).await?;
    Ok(answer(StatusCode::CREATED, &product))
}

async fn existing(state: &AppState, id: u64) -> Result<ProductRecord, ApiError> {
    state.store.get_product(id).await?.ok_or_else(|| ApiError::not_found("Product not found."))
}

/// Shows a product, published or not.
#[utoipa::path(get, path = "/admin/v1/products/{id}", tag = "admin",
    responses((status = 200, description = "the product"), (status = 404)), security(("admin" = [])))]
pub async fn show(_admin: Admin, state: web::Data<AppState>, id: web::Path<u64>) -> Result<HttpResponse, ApiError> {
    Ok(answer(StatusCode::OK, &existing(&state, id.into_inner()).await?))
}

/// Updates any field; emits `product.published`, `product.updated` or `product.unpublished`.
#[utoipa::path(patch, path = "/admin/v1/products/{id}", tag = "admin", request_body = UpdateProduct,
    responses((status = 200, description = "updated"), (status = 404), (status = 409, description = "changed concurrently too often"), (status = 422)),
    security(("admin" = [])))]
pub async fn update(_admin: Admin, state: web::Data<AppState>, id: web::Path<u64>, body: JsonBody<UpdateProduct>) -> Result<HttpResponse, ApiError> {
    let b = body.into_inner();
    let nothing = b.title.is_none()
        && b.slug.is_none()
        && b.description.is_none()
        && b.image.is_none()
        && b.price.is_none()
        && b.model_type.is_none()
        && b.category_slug.is_none()
        && b.published.is_none()
        && b.introduction_video_url.is_none()
        && b.bundle_product_ids.is_none()
        && b.teachers.is_none();
    if nothing {
        return Err(ApiError::invalid_field("payload", "Provide at least one field to update."));
    }
    // Applied to the product as stored now, and written only if nothing changed it in
    // between (else read again): a concurrent edit of other fields is kept, and the event
    // follows the publication state this edit actually replaced.
    let id = id.into_inner();
    let mut attempts = EditAttempts::new();
    while attempts.next().await {
        let mut p = existing(&state, id).await?;
        let was_published = p.published;
        let mut errors = FieldErrors::new();
        let model_type = b.model_type.clone().unwrap_or_else(|| p.model_type.clone());
        let children = b.bundle_product_ids.clone().unwrap_or_else(|| p.bundle_product_ids.clone());
        let category = match &b.category_slug {
            Some(c) => blank_to_none(c.clone()),
            None => p.category_slug.clone(),
        };
        let new_category = b.category_slug.is_some().then_some(category.as_deref()).flatten();
        check_references(&state, p.id, b.slug.as_deref(), new_category, &model_type, &children, &mut errors).await?;
        if model_type == BUNDLE_TYPE && !p.coupons.is_empty() && p.model_type != BUNDLE_TYPE {
            errors.insert("type".into(), vec!["A product with coupons cannot become a bundle.".into()]);
        }
        if !errors.is_empty() {
            return Err(ApiError::validation(errors));
        }
        if let Some(slug) = &b.slug {
            if *slug != p.slug {
                claim_slug(&state, slug, p.id).await?;
                p.slug = slug.clone();
            }
        }
        if let Some(v) = &b.title {
            p.title = v.clone();
        }
        if let Some(v) = &b.description {
            p.description = v.clone();
        }
        if let Some(v) = &b.image {
            p.image = blank_to_none(v.clone());
        }
        if let Some(v) = b.price {
            p.price_usd = v.value();
        }
        if let Some(v) = b.published {
            p.published = v;
        }
        if let Some(v) = &b.introduction_video_url {
            p.introduction_video_url = blank_to_none(v.clone());
        }
        if let Some(v) = &b.teachers {
            p.teachers = teachers(v.clone());
        }
        p.model_type = model_type;
        p.bundle_product_ids = children;
        p.category_slug = category;
        p.updated_at = Utc::now();
        let change = change_of(Some(was_published), p.published, p.id);
        if save_edit(&state, &mut p, change).await? {
            return Ok(answer(StatusCode::OK, &p));
        }
    }
    Err(ApiError::conflict(EDIT_CONFLICT))
}

/// Adds a coupon to a course (replacing the tier's coupon); emits `product.updated` when the
/// product is published.
#[utoipa::path(post, path = "/admin/v1/products/{id}/coupons", tag = "admin", request_body = CreateCoupon,
    responses((status = 201, description = "the coupon"), (status = 404), (status = 422)), security(("admin" = [])))]
pub async fn add_coupon(_admin: Admin, state: web::Data<AppState>, id: web::Path<u64>, body: JsonBody<CreateCoupon>) -> Result<HttpResponse, ApiError> {
    let b = body.into_inner();
    let mut errors = FieldErrors::new();
    let tier = match b.tier.as_deref() {
        Some("low") => CouponTier::Low,
        Some("mid") => CouponTier::Mid,
        _ => CouponTier::High,
    };
    if !b.code.is_empty() && !b.code.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_') {
        errors.insert("code".into(), vec!["The code field must only contain letters, digits, hyphens and underscores.".into()]);
    }
    let percent_off = b.percent_off.unwrap_or_default().normalize();
    let coupon = CouponRecord { tier, code: b.code, percent_off, expires_at: b.expires_at };
    // Added to the product as stored now (see `update`): a concurrent edit or coupon is kept.
    let id = id.into_inner();
    let mut attempts = EditAttempts::new();
    while attempts.next().await {
        let mut p = existing(&state, id).await?;
        if p.model_type == BUNDLE_TYPE {
            errors.insert("product".into(), vec!["Coupons apply to courses, not to bundles.".into()]);
        }
        if !errors.is_empty() {
            return Err(ApiError::validation(errors));
        }
        p.coupons.retain(|c| c.tier != tier);
        p.coupons.push(coupon.clone());
        p.coupons.sort_by_key(|c| c.tier as u8);
        p.updated_at = Utc::now();
        let change = p.published.then_some(ContentChange::ProductUpdated { product_id: p.id });
        if save_edit(&state, &mut p, change).await? {
            let mut out = coupon_json(&coupon);
            out["product_id"] = serde_json::json!(p.id);
            return Ok(json::created(serde_json::json!({ "coupon": out })));
        }
    }
    Err(ApiError::conflict(EDIT_CONFLICT))
}
