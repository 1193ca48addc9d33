//! Admin: categories (`POST /categories`, `PATCH /categories/{id}`, `DELETE /categories/{id}`,
//! a soft delete).

use crate::auth::Admin;
use crate::catalogue::actor::Refresh;
use crate::events::emit_change;
use hissaback_topics::events::ContentChange;
use crate::error::{ApiError, FieldErrors};
use crate::extract::JsonBody;
use crate::json;
use crate::state::AppState;
use crate::store::{CategoryRecord, EditAttempts, Sequence, EDIT_CONFLICT};
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use crate::validation::required;
use validator::Validate;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/categories", web::post().to(create))
        .route("/categories/{id}", web::patch().to(update))
        .route("/categories/{id}", web::delete().to(delete));
}

fn yes() -> bool {
    true
}

#[derive(Deserialize, Validate, ToSchema)]
pub struct CreateCategory {
    #[serde(default, deserialize_with = "json::trimmed")]
    #[validate(custom(function = "required"), length(max = 255, message = "The name field must not be greater than 255 characters."))]
    #[schema(required = true)]
    pub name: String,
    /// Lowercase letters, digits and single hyphens; unique among live categories.
    #[serde(default, deserialize_with = "json::opt_trimmed")]
    pub slug: Option<String>,
    #[serde(default = "yes")]
    pub active: bool,
}

#[derive(Deserialize, Validate, ToSchema)]
pub struct UpdateCategory {
    #[serde(default, deserialize_with = "json::opt_trimmed")]
    #[validate(custom(function = "required"), length(max = 255, message = "The name field must not be greater than 255 characters."))]
    pub name: Option<String>,
    /// Absent: unchanged; `null`: cleared (the category is then no longer listed).
    #[serde(default, deserialize_with = "json::double_option")]
    #[schema(value_type = Option<String>)]
    pub slug: Option<Option<String>>,
    pub active: Option<bool>,
}

#[derive(Serialize, ToSchema)]
pub struct AdminCategoryView {
    pub id: u64,
    pub name: String,
    pub slug: Option<String>,
    pub active: bool,
    #[serde(serialize_with = "json::opt_time")]
    #[schema(value_type = Option<String>)]
    pub deleted_at: Option<DateTime<Utc>>,
}

fn answer(status: StatusCode, c: &CategoryRecord) -> HttpResponse {
    json::data(
        status,
        serde_json::json!({ "category": AdminCategoryView {
            id: c.id, name: c.name.clone(), slug: c.slug.clone(), active: c.active, deleted_at: c.deleted_at,
        }}),
    )
}

/// Lowercase ASCII letters and digits in hyphen-separated words.
pub fn is_slug(s: &str) -> bool {
    !s.is_empty() && s.len() <= 255 && s.split('-').all(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
}

/// The namespace of [`crate::store::Store::claim_unique`] that makes category slugs unique.
pub const SLUG_NAMESPACE: &str = "category_slug";

/// Claims the slug for the category, atomically (two concurrent creations cannot both win).
async fn claim_slug(state: &AppState, slug: Option<&str>, id: u64) -> Result<(), ApiError> {
    match slug {
        Some(slug) if !state.store.claim_unique(SLUG_NAMESPACE, slug, id).await? => {
            Err(ApiError::invalid_field("slug", "The slug has already been taken."))
        }
        _ => Ok(()),
    }
}

/// Checks a slug's shape and that no other live category has it (categories stored before
/// slugs were claimed have no claim, so the live set is checked too).
async fn check_slug(state: &AppState, slug: Option<&str>, own_id: Option<u64>) -> Result<(), ApiError> {
    let Some(slug) = slug.filter(|s| !s.is_empty()) else { return Ok(()) };
    let mut errors = FieldErrors::new();
    if !is_slug(slug) {
        errors.insert("slug".into(), vec!["The slug field must only contain lowercase letters, digits and hyphens.".into()]);
    } else {
        let taken = state
            .store
            .categories()
            .await?
            .iter()
            .any(|c| c.deleted_at.is_none() && Some(c.id) != own_id && c.slug.as_deref() == Some(slug));
        if taken {
            errors.insert("slug".into(), vec!["The slug has already been taken.".into()]);
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::validation(errors))
    }
}

async fn existing(state: &AppState, id: u64) -> Result<CategoryRecord, ApiError> {
    state
        .store
        .get_category(id)
        .await?
        .filter(|c| c.deleted_at.is_none())
        .ok_or_else(|| ApiError::not_found("Category not found."))
}

/// Creates a category.
#[utoipa::path(post, path = "/admin/v1/categories", tag = "admin", request_body = CreateCategory,
    responses((status = 201, description = "created"), (status = 422)), security(("admin" = [])))]
pub async fn create(_admin: Admin, state: web::Data<AppState>, body: JsonBody<CreateCategory>) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let slug = body.slug.filter(|s| !s.is_empty());
    check_slug(&state, slug.as_deref(), None).await?;
    let id = state.store.next_id(Sequence::Category).await?;
    claim_slug(&state, slug.as_deref(), id).await?;
    let now = Utc::now();
    let category = CategoryRecord {
        id,
        name: body.name,
        slug,
        active: body.active,
        created_at: now,
        updated_at: now,
        deleted_at: None,
        version: 0,
    };
    if let Err(e) = state.store.put_category(&category).await {
        // The category was not stored: its slug is free again.
        if let Some(slug) = &category.slug {
            let _ = state.store.release_unique(SLUG_NAMESPACE, slug, category.id).await;
        }
        return Err(e.into());
    }
    state.catalogue.refresh(Refresh::Categories).await.map_err(ApiError::internal)?;
    emit_change(state.bus.as_ref(), ContentChange::CategoryChanged { category_id: category.id }).await?;
    Ok(answer(StatusCode::CREATED, &category))
}

/// Updates a category.
#[utoipa::path(patch, path = "/admin/v1/categories/{id}", tag = "admin", request_body = UpdateCategory,
    responses((status = 200, description = "updated"), (status = 404), (status = 409, description = "changed concurrently too often"), (status = 422)),
    security(("admin" = [])))]
pub async fn update(
    _admin: Admin,
    state: web::Data<AppState>,
    id: web::Path<u64>,
    body: JsonBody<UpdateCategory>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    if body.name.is_none() && body.slug.is_none() && body.active.is_none() {
        return Err(ApiError::invalid_field("payload", "Provide at least one field to update."));
    }
    let id = id.into_inner();
    let slug: Option<Option<String>> = body.slug.as_ref().map(|s| s.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(String::from));
    let category = match edit(&state, id, &body, slug.as_ref()).await {
        Ok((category, released)) => {
            if slug.is_some() {
                settle_slugs(&state, id, released.as_deref()).await?;
            }
            category
        }
        Err(e) => {
            // Not stored: the slug claimed for this edit is free again, unless the category
            // has it after all.
            if let Some(Some(new)) = &slug {
                let _ = settle_slugs(&state, id, Some(new)).await;
            }
            return Err(e);
        }
    };
    state.catalogue.refresh(Refresh::Categories).await.map_err(ApiError::internal)?;
    emit_change(state.bus.as_ref(), ContentChange::CategoryChanged { category_id: category.id }).await?;
    Ok(answer(StatusCode::OK, &category))
}

/// Applies an update to the category as stored now, written only if nothing changed it in
/// between (else read again), so a concurrent edit of other fields is kept. Answers the
/// stored category and the slug it no longer has.
async fn edit(state: &AppState, id: u64, body: &UpdateCategory, slug: Option<&Option<String>>) -> Result<(CategoryRecord, Option<String>), ApiError> {
    let mut attempts = EditAttempts::new();
    while attempts.next().await {
        let mut category = existing(state, id).await?;
        let mut released = None;
        if let Some(slug) = slug {
            let slug = slug.as_deref();
            check_slug(state, slug, Some(id)).await?;
            // Claims are per category, so claiming again on a retry is harmless.
            claim_slug(state, slug, id).await?;
            released = category.slug.clone().filter(|old| Some(old.as_str()) != slug);
            category.slug = slug.map(String::from);
        }
        if let Some(name) = &body.name {
            category.name = name.clone();
        }
        if let Some(active) = body.active {
            category.active = active;
        }
        category.updated_at = Utc::now();
        if state.store.replace_category(&category).await? {
            category.version += 1;
            return Ok((category, released));
        }
    }
    Err(ApiError::conflict(EDIT_CONFLICT))
}

/// After an edit of a category's slug: frees `released`, then claims the slug the category
/// has as stored now. Concurrent edits of one category share its claims, so one edit's
/// release may come after another's claim of the same slug; whichever settles last sees the
/// final slug and claims it again.
async fn settle_slugs(state: &AppState, id: u64, released: Option<&str>) -> Result<(), ApiError> {
    if let Some(old) = released {
        state.store.release_unique(SLUG_NAMESPACE, old, id).await?;
    }
    let stored = state.store.get_category(id).await?.filter(|c| c.deleted_at.is_none()).and_then(|c| c.slug);
    if let Some(slug) = stored {
        state.store.claim_unique(SLUG_NAMESPACE, &slug, id).await?;
    }
    Ok(())
}

/// Soft-deletes a category: it disappears from listings and frees its slug.
#[utoipa::path(delete, path = "/admin/v1/categories/{id}", tag = "admin",
    responses((status = 200, description = "deleted"), (status = 404), (status = 409, description = "changed concurrently too often")),
    security(("admin" = [])))]
pub async fn delete(_admin: Admin, state: web::Data<AppState>, id: web::Path<u64>) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let mut attempts = EditAttempts::new();
    while attempts.next().await {
        // Conditional on the category as read, like an update: a concurrent update cannot
        // bring a deleted category back, nor be lost to the delete's stale copy.
        let mut category = existing(&state, id).await?;
        let now = Utc::now();
        category.deleted_at = Some(now);
        category.updated_at = now;
        if !state.store.replace_category(&category).await? {
            continue;
        }
        category.version += 1;
        // A deleted category frees its slug (after the delete is stored: a failure keeps it).
        if let Some(slug) = &category.slug {
            state.store.release_unique(SLUG_NAMESPACE, slug, category.id).await?;
        }
        state.catalogue.refresh(Refresh::Categories).await.map_err(ApiError::internal)?;
        emit_change(state.bus.as_ref(), ContentChange::CategoryChanged { category_id: category.id }).await?;
        return Ok(answer(StatusCode::OK, &category));
    }
    Err(ApiError::conflict(EDIT_CONFLICT))
}

#[cfg(test)]
mod tests {
    use super::is_slug;

    #[test]
    fn slugs_are_lowercase_words_joined_by_single_hyphens() {
        assert!(is_slug("low-level-programming"));
        assert!(is_slug("design2"));
        for bad in ["", "Design", "a--b", "-a", "a-", "a b", "a_b", "ü"] {
            assert!(!is_slug(bad), "{bad}");
        }
    }
}
