//! Admin: the review of affiliate-written blogs (`GET /blogs/{id}`,
//! `POST /blogs/{id}/publish`, `POST /blogs/{id}/unpublish` with a `reason`).
//!
//! Each review is written to the store, then published on the `product-changes` topic as a
//! `ProductChanged` event (`BlogPublished` / `BlogUnpublished` with the reason) keyed
//! `blog:{id}`, so one blog's reviews stay in order; the webhook fan-out turns them into
//! `blog.published` / `blog.unpublished`. Every call emits, even when the blog was already
//! in that state, so a call retried after a 503 (bus unavailable) still delivers its event.

use crate::auth::Admin;
use crate::error::{messages, ApiError};
use crate::events::emit_change;
use crate::extract::JsonBody;
use crate::json;
use crate::state::AppState;
use crate::store::BlogRecord;
use crate::validation::required;
use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use hissaback_topics::events::ContentChange;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use validator::Validate;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/blogs/{id}", web::get().to(show))
        .route("/blogs/{id}/publish", web::post().to(publish))
        .route("/blogs/{id}/unpublish", web::post().to(unpublish));
}

#[derive(Deserialize, Validate, ToSchema)]
pub struct UnpublishBlog {
    /// Why the blog is taken down; sent to the affiliate with `blog.unpublished`.
    #[serde(default, deserialize_with = "json::trimmed")]
    #[validate(custom(function = "required"), length(max = 1000, message = "The reason field must not be greater than 1000 characters."))]
    #[schema(required = true)]
    pub reason: String,
}

/// A blog with everything the review needs.
#[derive(Serialize, ToSchema)]
pub struct AdminBlogView {
    pub id: u64,
    pub affiliate_id: u64,
    pub author_user_id: u64,
    pub profile_id: u64,
    pub title: String,
    pub slug: String,
    pub content: String,
    pub category_slug: String,
    pub published: bool,
    pub unpublished_reason: Option<String>,
    #[serde(serialize_with = "json::time")]
    #[schema(value_type = String)]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "json::time")]
    #[schema(value_type = String)]
    pub updated_at: DateTime<Utc>,
}

impl From<&BlogRecord> for AdminBlogView {
    fn from(b: &BlogRecord) -> Self {
        AdminBlogView {
            id: b.id,
            affiliate_id: b.affiliate_id,
            author_user_id: b.author_user_id,
            profile_id: b.profile_id,
            title: b.title.clone(),
            slug: b.slug.clone(),
            content: b.content.clone(),
            category_slug: b.category_slug.clone(),
            published: b.published,
            unpublished_reason: b.unpublished_reason.clone(),
            created_at: b.created_at,
            updated_at: b.updated_at,
        }
    }
}

fn answer(b: &BlogRecord) -> HttpResponse {
    json::ok(serde_json::json!({ "blog": AdminBlogView::from(b) }))
}

async fn existing(state: &AppState, id: u64) -> Result<BlogRecord, ApiError> {
    state.store.get_blog_by_id(id).await?.ok_or_else(|| ApiError::not_found(messages::BLOG_NOT_FOUND))
}

/// Stores the reviewed blog and announces the review.
async fn review(state: &AppState, mut blog: BlogRecord, reason: Option<String>) -> Result<HttpResponse, ApiError> {
    blog.published = reason.is_none();
    blog.unpublished_reason = reason.clone();
    blog.updated_at = Utc::now();
    state.store.put_blog(&blog).await?;
    let change = match reason {
        None => ContentChange::BlogPublished { blog_id: blog.id },
        Some(reason) => ContentChange::BlogUnpublished { blog_id: blog.id, reason },
    };
    emit_change(state.bus.as_ref(), change).await?;
    Ok(answer(&blog))
}

/// Shows a blog, whoever wrote it.
#[utoipa::path(get, path = "/admin/v1/blogs/{id}", tag = "admin",
    responses((status = 200, description = "`blog` with content and review state"), (status = 404, description = "Blog not found.")),
    security(("admin" = [])))]
pub async fn show(_admin: Admin, state: web::Data<AppState>, id: web::Path<u64>) -> Result<HttpResponse, ApiError> {
    Ok(answer(&existing(&state, id.into_inner()).await?))
}

/// Publishes a blog (clearing any earlier unpublish reason); emits `blog.published`.
#[utoipa::path(post, path = "/admin/v1/blogs/{id}/publish", tag = "admin",
    responses((status = 200, description = "`blog`"), (status = 404, description = "Blog not found."), (status = 503, description = "event bus unavailable; retry")),
    security(("admin" = [])))]
pub async fn publish(_admin: Admin, state: web::Data<AppState>, id: web::Path<u64>) -> Result<HttpResponse, ApiError> {
    let blog = existing(&state, id.into_inner()).await?;
    review(&state, blog, None).await
}

/// Unpublishes a blog with a reason; emits `blog.unpublished`.
#[utoipa::path(post, path = "/admin/v1/blogs/{id}/unpublish", tag = "admin", request_body = UnpublishBlog,
    responses((status = 200, description = "`blog`"), (status = 404, description = "Blog not found."), (status = 422),
        (status = 503, description = "event bus unavailable; retry")),
    security(("admin" = [])))]
pub async fn unpublish(
    _admin: Admin,
    state: web::Data<AppState>,
    id: web::Path<u64>,
    body: JsonBody<UnpublishBlog>,
) -> Result<HttpResponse, ApiError> {
    let blog = existing(&state, id.into_inner()).await?;
    review(&state, blog, Some(body.into_inner().reason)).await
}
