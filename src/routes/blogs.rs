//! Blog profiles and blogs (seed "Blog Profiles" and "Blogs"): `GET|POST /blog-profiles`
//! (scope `blogs.accounts.manage`), `POST /blogs` and `PUT|PATCH /blogs/{blog}` (scope
//! `blogs.manage`, approval-gated, written by the affiliate's linked user).
//!
//! Rules the seed leaves open, as decided here:
//! - a profile `identifier` is ASCII: lowercase letters, digits, `-` and `_`; it is claimed
//!   system-wide through [`Store::claim_unique`](crate::store::Store::claim_unique);
//! - `category_slug` must name a category affiliates can see (the listing rule of
//!   [`categories::is_listed`]: active, not deleted, with that slug);
//! - a blog's slug is made once from its title (Laravel's `Str::slug`: transliterated to
//!   ASCII, punctuation dropped, words joined by `-`, `blog` when nothing is left), made
//!   unique system-wide with `-2`, `-3`... and never changed by an update;
//! - a blog belongs to the affiliate (the tenant of every store call); another affiliate's
//!   blog answers 404 like an unknown one;
//! - bodies are read after the scope, approval and user checks, so those answer first.
//!
//! Identifiers and slugs are claimed before the record is written (the claim is what makes
//! them unique across instances); a store failure between the two leaves the value claimed
//! by an id that holds nothing, so a retry gets the next slug or a "taken" identifier.

use crate::auth::Authenticated;
use crate::content::contains_script;
use crate::domain::Scope;
use crate::error::{messages, ApiError, FieldErrors};
use crate::extract::read_json;
use crate::json;
use crate::routes::categories;
use crate::state::AppState;
use crate::store::{BlogProfileRecord, BlogRecord, Sequence, UserRecord};
use crate::validation::required;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use validator::{Validate, ValidationError};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/blog-profiles", web::get().to(list_profiles))
        .route("/blog-profiles", web::post().to(create_profile))
        .route("/blogs", web::post().to(create))
        .route("/blogs/{blog}", web::put().to(update))
        .route("/blogs/{blog}", web::patch().to(update));
}

/// The namespaces of [`Store::claim_unique`](crate::store::Store::claim_unique) used here.
const IDENTIFIER_NAMESPACE: &str = "blog_profile_identifier";
const SLUG_NAMESPACE: &str = "blog_slug";

/// Room left in a 255-character slug for a `-n` or `-{id}` suffix.
const SLUG_BASE_MAX: usize = 230;
/// Numbered slugs tried (`-2` up to this) before the blog's own id is used as the suffix.
const NUMBERED_SLUGS: u64 = 50;

const CONTENT_HAS_SCRIPT: &str = "The content field must not contain scripts.";

#[derive(Deserialize, Validate, ToSchema)]
pub struct CreateProfile {
    #[serde(default, deserialize_with = "json::trimmed")]
    #[validate(custom(function = "required"), length(max = 255, message = "The name field must not be greater than 255 characters."))]
    #[schema(required = true, max_length = 255)]
    pub name: String,
    /// Lowercase letters, digits, `-` and `_`; unique across the system.
    #[serde(default, deserialize_with = "json::trimmed")]
    #[validate(
        custom(function = "required"),
        length(max = 255, message = "The identifier field must not be greater than 255 characters."),
        custom(function = "identifier_chars")
    )]
    #[schema(required = true, max_length = 255)]
    pub identifier: String,
}

#[derive(Deserialize, Validate, ToSchema)]
pub struct CreateBlog {
    #[serde(default, deserialize_with = "json::trimmed")]
    #[validate(custom(function = "required"), length(max = 255, message = "The title field must not be greater than 255 characters."))]
    #[schema(required = true, max_length = 255)]
    pub title: String,
    /// HTML; refused when it carries script (see [`crate::content`]).
    #[serde(default, deserialize_with = "json::trimmed")]
    #[validate(custom(function = "required"), custom(function = "script_free"))]
    #[schema(required = true)]
    pub content: String,
    /// The slug of a listed category.
    #[serde(default, deserialize_with = "json::trimmed")]
    #[validate(custom(function = "required"))]
    #[schema(required = true)]
    pub category_slug: String,
    /// One of the affiliate's blog profiles.
    #[validate(required)]
    #[schema(value_type = u64, required = true)]
    pub blog_profile_id: Option<u64>,
}

/// Any of the blog's fields, with the rules of [`CreateBlog`]; at least one is needed.
#[derive(Deserialize, Validate, ToSchema)]
pub struct UpdateBlog {
    #[serde(default, deserialize_with = "json::opt_trimmed")]
    #[validate(custom(function = "required"), length(max = 255, message = "The title field must not be greater than 255 characters."))]
    pub title: Option<String>,
    #[serde(default, deserialize_with = "json::opt_trimmed")]
    #[validate(custom(function = "required"), custom(function = "script_free"))]
    pub content: Option<String>,
    #[serde(default, deserialize_with = "json::opt_trimmed")]
    #[validate(custom(function = "required"))]
    pub category_slug: Option<String>,
    pub blog_profile_id: Option<u64>,
}

#[derive(Serialize, ToSchema)]
pub struct BlogProfileView {
    pub id: u64,
    pub name: String,
    pub identifier: String,
}

impl From<&BlogProfileRecord> for BlogProfileView {
    fn from(p: &BlogProfileRecord) -> Self {
        BlogProfileView { id: p.id, name: p.name.clone(), identifier: p.identifier.clone() }
    }
}

#[derive(Serialize, ToSchema)]
pub struct BlogView {
    pub id: u64,
    pub title: String,
    pub slug: String,
    pub published: bool,
}

fn blog_answer(status: StatusCode, b: &BlogRecord) -> HttpResponse {
    json::data(
        status,
        serde_json::json!({ "blog": BlogView { id: b.id, title: b.title.clone(), slug: b.slug.clone(), published: b.published } }),
    )
}

/// Lowercase ASCII letters, digits, `-` and `_` only.
fn identifier_chars(value: &str) -> Result<(), ValidationError> {
    if value.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_') {
        Ok(())
    } else {
        Err(ValidationError::new("identifier")
            .with_message("The identifier field must only contain lowercase letters, numbers, dashes and underscores.".into()))
    }
}

/// Deepest element nesting accepted before parsing (browsers themselves stop near 512).
const MAX_NESTING: usize = 256;

fn script_free(content: &str) -> Result<(), ValidationError> {
    if crate::content::nesting_depth(content) > MAX_NESTING {
        return Err(ValidationError::new("nesting").with_message(format!("The content field must not nest elements more than {MAX_NESTING} deep.").into()));
    }
    if contains_script(content) {
        Err(ValidationError::new("no_scripts").with_message(CONTENT_HAS_SCRIPT.into()))
    } else {
        Ok(())
    }
}

/// Lists the affiliate's blog profiles.
#[utoipa::path(get, path = "/api/v1/blog-profiles", tag = "affiliate",
    responses((status = 200, description = "`profiles`, by id"), (status = 401), (status = 403, description = "Insufficient scope.")),
    security(("bearer" = []), ("api_key_header" = []), ("api_key_query" = [])))]
pub async fn list_profiles(auth: Authenticated, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    auth.require(Scope::BlogsAccountsManage)?;
    let profiles: Vec<BlogProfileView> = state.store.blog_profiles(auth.affiliate.id).await?.iter().map(BlogProfileView::from).collect();
    Ok(json::ok(serde_json::json!({ "profiles": profiles })))
}

/// Creates a blog profile; its identifier must be free across the system.
#[utoipa::path(post, path = "/api/v1/blog-profiles", tag = "affiliate", request_body = CreateProfile,
    responses((status = 201, description = "`profile`"), (status = 401), (status = 403, description = "Insufficient scope."),
        (status = 422, description = "`errors` by field; `identifier`: The identifier has already been taken.")),
    security(("bearer" = []), ("api_key_header" = []), ("api_key_query" = [])))]
pub async fn create_profile(
    auth: Authenticated,
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    auth.require(Scope::BlogsAccountsManage)?;
    let body: CreateProfile = read_json(&req, payload).await?;
    let id = state.store.next_id(Sequence::BlogProfile).await?;
    if !state.store.claim_unique(IDENTIFIER_NAMESPACE, &body.identifier, id).await? {
        return Err(ApiError::invalid_field("identifier", "The identifier has already been taken."));
    }
    let profile = BlogProfileRecord {
        id,
        affiliate_id: auth.affiliate.id,
        name: body.name,
        identifier: body.identifier,
        created_at: Utc::now(),
    };
    state.store.put_blog_profile(&profile).await?;
    Ok(json::created(serde_json::json!({ "profile": BlogProfileView::from(&profile) })))
}

/// Creates a draft blog written by the affiliate's user.
#[utoipa::path(post, path = "/api/v1/blogs", tag = "affiliate", request_body = CreateBlog,
    responses((status = 201, description = "`blog` {id, title, slug, published: false}"), (status = 401),
        (status = 403, description = "Insufficient scope. / Blog management scopes require approval."),
        (status = 422, description = "`errors` by field, or Affiliate user account is unavailable.")),
    security(("bearer" = []), ("api_key_header" = []), ("api_key_query" = [])))]
pub async fn create(auth: Authenticated, state: web::Data<AppState>, req: HttpRequest, payload: web::Payload) -> Result<HttpResponse, ApiError> {
    let author = blog_author(&auth)?;
    let body: CreateBlog = read_json(&req, payload).await?;
    let profile_id = body.blog_profile_id.unwrap_or_default();
    check_references(&state, auth.affiliate.id, Some(&body.category_slug), Some(profile_id)).await?;
    let id = state.store.next_id(Sequence::Blog).await?;
    let slug = claim_slug(&state, &slugify(&body.title), id).await?;
    let now = Utc::now();
    let blog = BlogRecord {
        id,
        affiliate_id: auth.affiliate.id,
        author_user_id: author.id,
        profile_id,
        title: body.title,
        slug,
        content: body.content,
        category_slug: body.category_slug,
        published: false,
        unpublished_reason: None,
        created_at: now,
        updated_at: now,
    };
    state.store.put_blog(&blog).await?;
    Ok(blog_answer(StatusCode::CREATED, &blog))
}

/// Updates any of a blog's fields; the blog goes back to review (`published: false`).
#[utoipa::path(method(put, patch), path = "/api/v1/blogs/{blog}", tag = "affiliate", request_body = UpdateBlog,
    params(("blog" = u64, Path, description = "one of the affiliate's blogs")),
    responses((status = 200, description = "`blog` {id, title, slug, published: false}"), (status = 401),
        (status = 403, description = "Insufficient scope. / Blog management scopes require approval."),
        (status = 404, description = "Blog not found."),
        (status = 422, description = "`errors` by field (`payload` when no field is given), or Affiliate user account is unavailable.")),
    security(("bearer" = []), ("api_key_header" = []), ("api_key_query" = [])))]
pub async fn update(
    auth: Authenticated,
    state: web::Data<AppState>,
    blog: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    blog_author(&auth)?;
    let not_found = || ApiError::not_found(messages::BLOG_NOT_FOUND);
    let id: u64 = blog.parse().map_err(|_| not_found())?;
    let mut blog = state.store.get_blog(auth.affiliate.id, id).await?.ok_or_else(not_found)?;
    let body: UpdateBlog = read_json(&req, payload).await?;
    if body.title.is_none() && body.content.is_none() && body.category_slug.is_none() && body.blog_profile_id.is_none() {
        return Err(ApiError::invalid_field(
            "payload",
            "Provide at least one of the fields title, content, category_slug and blog_profile_id.",
        ));
    }
    check_references(&state, auth.affiliate.id, body.category_slug.as_deref(), body.blog_profile_id).await?;
    if let Some(title) = body.title {
        blog.title = title;
    }
    if let Some(content) = body.content {
        blog.content = content;
    }
    if let Some(slug) = body.category_slug {
        blog.category_slug = slug;
    }
    if let Some(profile_id) = body.blog_profile_id {
        blog.profile_id = profile_id;
    }
    blog.published = false;
    blog.updated_at = Utc::now();
    state.store.put_blog(&blog).await?;
    Ok(blog_answer(StatusCode::OK, &blog))
}

/// The user who writes the affiliate's blogs, once the key may manage blogs: 403 without the
/// scope or the approval, 422 without a linked user.
fn blog_author(auth: &Authenticated) -> Result<&UserRecord, ApiError> {
    auth.require(Scope::BlogsManage)?;
    if auth.restrictions().contains(&Scope::BlogsManage) {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "approval_required", messages::BLOG_APPROVAL_REQUIRED));
    }
    auth.affiliate.user.as_ref().ok_or_else(|| ApiError::invalid_field("user", messages::AFFILIATE_USER_UNAVAILABLE))
}

/// 422 naming each given reference that does not resolve: a category affiliates cannot see,
/// a profile that is not the affiliate's.
async fn check_references(state: &AppState, affiliate_id: u64, category_slug: Option<&str>, profile_id: Option<u64>) -> Result<(), ApiError> {
    let mut errors = FieldErrors::new();
    if let Some(slug) = category_slug {
        let listed = state.store.categories().await?.iter().any(|c| categories::is_listed(c) && c.slug.as_deref() == Some(slug));
        if !listed {
            errors.insert("category_slug".into(), vec!["The selected category slug is invalid.".into()]);
        }
    }
    if let Some(id) = profile_id {
        if !state.store.blog_profiles(affiliate_id).await?.iter().any(|p| p.id == id) {
            errors.insert("blog_profile_id".into(), vec!["The selected blog profile id is invalid.".into()]);
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::validation(errors))
    }
}

/// A slug from a title, as Laravel's `Str::slug` makes it: transliterated to ASCII, `@` read
/// as `at`, anything but letters, digits, white space, `-` and `_` dropped, the rest joined
/// by single `-`; at most [`SLUG_BASE_MAX`] characters; `blog` when nothing is left.
pub fn slugify(title: &str) -> String {
    let ascii = deunicode::deunicode(title).replace('@', " at ").to_ascii_lowercase();
    let kept: String = ascii.chars().filter(|c| c.is_ascii_alphanumeric() || c.is_ascii_whitespace() || *c == '-' || *c == '_').collect();
    let mut slug = String::new();
    for word in kept.split(|c: char| c.is_ascii_whitespace() || c == '-' || c == '_').filter(|w| !w.is_empty()) {
        let room = SLUG_BASE_MAX - slug.len() - usize::from(!slug.is_empty());
        if word.len() > room {
            if slug.is_empty() {
                slug.push_str(&word[..SLUG_BASE_MAX]);
            }
            break;
        }
        if !slug.is_empty() {
            slug.push('-');
        }
        slug.push_str(word);
    }
    if slug.is_empty() {
        "blog".to_string()
    } else {
        slug
    }
}

/// Claims the first free slug among `base`, `base-2`, ... `base-50`, then `base-{blog_id}`.
/// A title that more than that many blogs share and whose id-suffixed slug is also taken
/// (possible only by titles crafted for it) is refused with a 422 on `title`.
async fn claim_slug(state: &AppState, base: &str, blog_id: u64) -> Result<String, ApiError> {
    let candidates = std::iter::once(base.to_string())
        .chain((2..=NUMBERED_SLUGS).map(|n| format!("{base}-{n}")))
        .chain(std::iter::once(format!("{base}-{blog_id}")));
    for candidate in candidates {
        if state.store.claim_unique(SLUG_NAMESPACE, &candidate, blog_id).await? {
            return Ok(candidate);
        }
    }
    Err(ApiError::invalid_field("title", "A unique slug could not be made from this title; choose another title."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_follow_laravel_str_slug() {
        assert_eq!(slugify("Spring Updates"), "spring-updates");
        assert_eq!(slugify("  Spring   Updates (Revised) "), "spring-updates-revised");
        assert_eq!(slugify("Don't panic: C++ & Rust_2024"), "dont-panic-c-rust-2024");
        assert_eq!(slugify("Café crème à Zürich"), "cafe-creme-a-zurich");
        assert_eq!(slugify("news@home"), "news-at-home");
        assert_eq!(slugify("--"), "blog");
        assert_eq!(slugify("!!!"), "blog");
        assert_eq!(slugify(""), "blog");
    }

    #[test]
    fn long_titles_make_slugs_that_leave_room_for_a_suffix() {
        let long = "word ".repeat(100);
        let slug = slugify(&long);
        assert!(slug.len() <= SLUG_BASE_MAX && slug.ends_with("word"), "{slug}");
        let one_word = "x".repeat(400);
        assert_eq!(slugify(&one_word).len(), SLUG_BASE_MAX);
    }

    #[test]
    fn identifiers_are_lowercase_ascii_words() {
        assert!(identifier_chars("affiliate-blog_1").is_ok());
        for bad in ["Affiliate", "my blog", "blog!", "blög"] {
            assert!(identifier_chars(bad).is_err(), "{bad}");
        }
    }
}
