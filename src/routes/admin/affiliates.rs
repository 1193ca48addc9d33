//! Admin: affiliates (`POST /affiliates`, `GET|PATCH /affiliates/{id}`).

use crate::accounts::{self, NewAffiliate};
use crate::auth::Admin;
use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::json;
use crate::state::AppState;
use crate::store::{AffiliateRecord, EditAttempts, UserRecord, EDIT_CONFLICT};
use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use crate::validation::required;
use validator::Validate;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/affiliates", web::post().to(create))
        .route("/affiliates/{id}", web::get().to(show))
        .route("/affiliates/{id}", web::patch().to(update));
}

#[derive(Deserialize, Validate, ToSchema)]
pub struct UserInput {
    #[serde(default, deserialize_with = "json::trimmed")]
    #[validate(custom(function = "required"), length(max = 255, message = "The user name field must not be greater than 255 characters."))]
    #[schema(required = true)]
    pub name: String,
    #[serde(default, deserialize_with = "json::trimmed")]
    #[validate(custom(function = "required"), email(message = "The user email field must be a valid email address."), length(max = 255))]
    #[schema(required = true)]
    pub email: String,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize, Validate, ToSchema)]
pub struct CreateAffiliate {
    #[serde(default, deserialize_with = "json::trimmed")]
    #[validate(custom(function = "required"), length(max = 255, message = "The name field must not be greater than 255 characters."))]
    #[schema(required = true)]
    pub name: String,
    #[serde(default, deserialize_with = "json::trimmed")]
    #[validate(custom(function = "required"), email(message = "The email field must be a valid email address."), length(max = 255))]
    #[schema(required = true)]
    pub email: String,
    #[serde(default = "yes")]
    pub active: bool,
    #[serde(default)]
    pub blog_approved: bool,
    /// Absent: a user made from `name` and `email`; `null`: no linked user.
    #[serde(default, deserialize_with = "json::double_option")]
    #[validate(nested)]
    #[schema(value_type = Option<UserInput>)]
    pub user: Option<Option<UserInput>>,
}

#[derive(Deserialize, Validate, ToSchema)]
pub struct UpdateAffiliate {
    #[serde(default, deserialize_with = "json::opt_trimmed")]
    #[validate(custom(function = "required"), length(max = 255, message = "The name field must not be greater than 255 characters."))]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "json::opt_trimmed")]
    #[validate(custom(function = "required"), email(message = "The email field must be a valid email address."), length(max = 255))]
    pub email: Option<String>,
    pub active: Option<bool>,
    pub blog_approved: Option<bool>,
    /// Absent: unchanged; `null`: unlink the user; object: link or update it.
    #[serde(default, deserialize_with = "json::double_option")]
    #[validate(nested)]
    #[schema(value_type = Option<UserInput>)]
    pub user: Option<Option<UserInput>>,
}

#[derive(Serialize, ToSchema)]
pub struct UserView {
    pub id: u64,
    pub name: String,
    pub email: String,
}

#[derive(Serialize, ToSchema)]
pub struct AffiliateView {
    pub id: u64,
    pub name: String,
    pub email: String,
    pub active: bool,
    pub blog_approved: bool,
    pub user: Option<UserView>,
    #[serde(serialize_with = "json::time")]
    #[schema(value_type = String)]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "json::time")]
    #[schema(value_type = String)]
    pub updated_at: DateTime<Utc>,
}

impl From<&AffiliateRecord> for AffiliateView {
    fn from(a: &AffiliateRecord) -> Self {
        AffiliateView {
            id: a.id,
            name: a.name.clone(),
            email: a.email.clone(),
            active: a.active,
            blog_approved: a.blog_approved,
            user: a.user.as_ref().map(|u: &UserRecord| UserView { id: u.id, name: u.name.clone(), email: u.email.clone() }),
            created_at: a.created_at,
            updated_at: a.updated_at,
        }
    }
}

fn answer(status: actix_web::http::StatusCode, a: &AffiliateRecord) -> HttpResponse {
    json::data(status, serde_json::json!({ "affiliate": AffiliateView::from(a) }))
}

/// Creates an affiliate.
#[utoipa::path(post, path = "/admin/v1/affiliates", tag = "admin", request_body = CreateAffiliate,
    responses((status = 201, description = "created"), (status = 401), (status = 422)), security(("admin" = [])))]
pub async fn create(_admin: Admin, state: web::Data<AppState>, body: JsonBody<CreateAffiliate>) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let user = match body.user {
        None => Some((body.name.clone(), body.email.clone())),
        Some(None) => None,
        Some(Some(u)) => Some((u.name, u.email)),
    };
    let affiliate = accounts::create_affiliate(
        &state,
        NewAffiliate { name: body.name, email: body.email, active: body.active, blog_approved: body.blog_approved, user },
    )
    .await?;
    Ok(answer(actix_web::http::StatusCode::CREATED, &affiliate))
}

/// Shows an affiliate.
#[utoipa::path(get, path = "/admin/v1/affiliates/{id}", tag = "admin",
    responses((status = 200, description = "the affiliate"), (status = 404)), security(("admin" = [])))]
pub async fn show(_admin: Admin, state: web::Data<AppState>, id: web::Path<u64>) -> Result<HttpResponse, ApiError> {
    let affiliate = accounts::get_affiliate(&state, id.into_inner()).await?;
    Ok(answer(actix_web::http::StatusCode::OK, &affiliate))
}

/// Updates any of an affiliate's fields.
#[utoipa::path(patch, path = "/admin/v1/affiliates/{id}", tag = "admin", request_body = UpdateAffiliate,
    responses((status = 200, description = "updated"), (status = 404), (status = 409, description = "changed concurrently too often"), (status = 422)),
    security(("admin" = [])))]
pub async fn update(
    _admin: Admin,
    state: web::Data<AppState>,
    id: web::Path<u64>,
    body: JsonBody<UpdateAffiliate>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    if body.name.is_none() && body.email.is_none() && body.active.is_none() && body.blog_approved.is_none() && body.user.is_none() {
        return Err(ApiError::invalid_field("payload", "Provide at least one field to update."));
    }
    // Applied to the affiliate as stored now, and written only if nothing changed it in
    // between (else read again): a concurrent edit of other fields is kept.
    let id = id.into_inner();
    let mut attempts = EditAttempts::new();
    while attempts.next().await {
        let mut affiliate = accounts::get_affiliate(&state, id).await?;
        if let Some(name) = &body.name {
            affiliate.name = name.clone();
        }
        if let Some(email) = &body.email {
            affiliate.email = email.clone();
        }
        if let Some(active) = body.active {
            affiliate.active = active;
        }
        if let Some(approved) = body.blog_approved {
            affiliate.blog_approved = approved;
        }
        match &body.user {
            None => {}
            Some(None) => affiliate.user = None,
            Some(Some(u)) => affiliate.user = Some(accounts::link_user(&state, affiliate.user.as_ref(), u.name.clone(), u.email.clone()).await?),
        }
        affiliate.updated_at = Utc::now();
        if state.store.replace_affiliate(&affiliate).await? {
            affiliate.version += 1;
            accounts::credentials_changed(&state, hissaback_topics::events::CredentialChange::Affiliate { affiliate_id: affiliate.id }).await?;
            return Ok(answer(actix_web::http::StatusCode::OK, &affiliate));
        }
    }
    Err(ApiError::conflict(EDIT_CONFLICT))
}
