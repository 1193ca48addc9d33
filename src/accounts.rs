//! Affiliate accounts and their API keys: creation, key issue, rotation and revocation.
//!
//! The admin routes and `hissaback demo` both go through these functions, so the demo's
//! key is made exactly like a real one.

use crate::domain::{KeyKind, PlainApiKey, Scope};
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::{AffiliateRecord, ApiKeyRecord, EditAttempts, RatePlan, Sequence, UserRecord, EDIT_CONFLICT};
use chrono::{Duration, Utc};
use hissaback_topics::events::CredentialChange;

/// What a new affiliate is made of (already validated).
pub struct NewAffiliate {
    pub name: String,
    pub email: String,
    pub active: bool,
    pub blog_approved: bool,
    /// `None`: no linked user; `Some((name, email))`: a user with these details.
    pub user: Option<(String, String)>,
}

pub async fn create_affiliate(state: &AppState, new: NewAffiliate) -> Result<AffiliateRecord, ApiError> {
    let id = state.store.next_id(Sequence::Affiliate).await?;
    let user = match new.user {
        Some((name, email)) => Some(UserRecord { id: state.store.next_id(Sequence::User).await?, name, email }),
        None => None,
    };
    let now = Utc::now();
    let affiliate = AffiliateRecord {
        id,
        name: new.name,
        email: new.email,
        active: new.active,
        blog_approved: new.blog_approved,
        user,
        created_at: now,
        updated_at: now,
        version: 0,
    };
    state.store.put_affiliate(&affiliate).await?;
    Ok(affiliate)
}

/// A new user record for an affiliate that had none, or the same id with new details.
pub async fn link_user(
    state: &AppState,
    existing: Option<&UserRecord>,
    name: String,
    email: String,
) -> Result<UserRecord, ApiError> {
    let id = match existing {
        Some(u) => u.id,
        None => state.store.next_id(Sequence::User).await?,
    };
    Ok(UserRecord { id, name, email })
}

/// What a new key is made of (already validated).
pub struct NewKey {
    pub kind: KeyKind,
    pub scopes: Vec<Scope>,
    pub allowed_brand_ids: Vec<u64>,
    pub allowed_offer_ids: Vec<u64>,
    pub rate_limit: Option<RatePlan>,
}

/// A key as just issued: its record and the plain key, which is never available again.
pub struct IssuedKey {
    pub record: ApiKeyRecord,
    pub plain: PlainApiKey,
}

pub async fn issue_key(state: &AppState, affiliate_id: u64, new: NewKey) -> Result<IssuedKey, ApiError> {
    let id = state.store.next_id(Sequence::ApiKey).await?;
    issue_key_with_id(state, id, affiliate_id, new).await
}

async fn issue_key_with_id(state: &AppState, id: u64, affiliate_id: u64, new: NewKey) -> Result<IssuedKey, ApiError> {
    let plain = PlainApiKey::generate(new.kind);
    let defaults = state.settings.auth.default_rate_limit;
    let record = ApiKeyRecord {
        id,
        affiliate_id,
        kind: new.kind,
        prefix: plain.display_prefix(),
        hash: state.hasher.hash(&plain),
        scopes: Scope::canonical(new.scopes),
        allowed_brand_ids: new.allowed_brand_ids,
        allowed_offer_ids: new.allowed_offer_ids,
        rate_limit: new.rate_limit.unwrap_or(RatePlan { per_minute: defaults.per_minute, burst: defaults.burst }),
        created_at: Utc::now(),
        last_used_at: None,
        expires_at: None,
        revoked_at: None,
        rotated_to: None,
        version: 0,
    };
    state.store.put_key(&record).await?;
    Ok(IssuedKey { record, plain })
}

async fn existing_key(state: &AppState, key_id: u64) -> Result<ApiKeyRecord, ApiError> {
    state
        .store
        .key_by_id(key_id)
        .await?
        .ok_or_else(|| ApiError::not_found("API key not found."))
}

/// Why a key cannot be rotated now, if it cannot.
fn refuse_rotation(key: &ApiKeyRecord) -> Result<(), ApiError> {
    if key.revoked_at.is_some() {
        return Err(ApiError::conflict("API key is revoked."));
    }
    if key.rotated_to.is_some() {
        return Err(ApiError::conflict("API key has already been rotated."));
    }
    Ok(())
}

/// Issues a successor with the same kind, scopes, restrictions and rate plan; the old key
/// keeps working for `grace_seconds` (0: stops at once).
///
/// The successor is stored first, under an id nobody knows yet; the old key then gets its
/// expiry and `rotated_to` through a conditional write on the key as read again, so a
/// concurrent revocation is never overwritten: either it came first and the rotation answers
/// 409 "API key is revoked." (the unseen successor is revoked too), or the rotation came
/// first and the revocation then applies to the rotated key.
pub async fn rotate_key(state: &AppState, key_id: u64, grace_seconds: u64) -> Result<(IssuedKey, ApiKeyRecord), ApiError> {
    let old = existing_key(state, key_id).await?;
    refuse_rotation(&old)?;
    // Concurrent rotations of one key: only the first claim wins; the others answer 409.
    let successor_id = state.store.next_id(Sequence::ApiKey).await?;
    if !state.store.claim_unique("key_rotation", &key_id.to_string(), successor_id).await? {
        return Err(ApiError::conflict("API key has already been rotated."));
    }
    // Until the rotation is stored, a failure lets the key be rotated again.
    let claimed = key_id.to_string();
    let release = || state.store.release_unique("key_rotation", &claimed, successor_id);
    let new = NewKey {
        kind: old.kind,
        scopes: old.scopes.clone(),
        allowed_brand_ids: old.allowed_brand_ids.clone(),
        allowed_offer_ids: old.allowed_offer_ids.clone(),
        rate_limit: Some(old.rate_limit),
    };
    let issued = match issue_key_with_id(state, successor_id, old.affiliate_id, new).await {
        Ok(issued) => issued,
        Err(e) => {
            let _ = release().await;
            return Err(e);
        }
    };
    let grace = Duration::seconds(i64::try_from(grace_seconds).unwrap_or(i64::MAX).min(i64::from(i32::MAX)));
    let key = match mark_rotated(state, key_id, successor_id, grace).await {
        Ok(key) => key,
        // A write whose outcome was unknown (a timed-out LWT) may have landed after all.
        Err(e) => match state.store.key_by_id(key_id).await {
            Ok(Some(key)) if key.rotated_to == Some(successor_id) => key,
            _ => {
                // Not rotated (revoked meanwhile, or the write failed): the successor, never
                // shown, stops working.
                revoke_unseen(state, issued.record).await;
                let _ = release().await;
                return Err(e);
            }
        },
    };
    credentials_changed(state, CredentialChange::Key { key_id: key.id, affiliate_id: key.affiliate_id }).await?;
    Ok((issued, key))
}

/// Gives the key its expiry and successor, on the key as read again each attempt (the
/// rotation's conditional write).
async fn mark_rotated(state: &AppState, key_id: u64, successor_id: u64, grace: Duration) -> Result<ApiKeyRecord, ApiError> {
    let mut attempts = EditAttempts::new();
    while attempts.next().await {
        let mut key = existing_key(state, key_id).await?;
        refuse_rotation(&key)?;
        key.expires_at = Some(Utc::now() + grace);
        key.rotated_to = Some(successor_id);
        if state.store.replace_key(&key).await? {
            key.version += 1;
            return Ok(key);
        }
    }
    Err(ApiError::conflict(EDIT_CONFLICT))
}

/// Revokes a successor a failed rotation stored but never handed out (best effort: nobody
/// holds its plain key either way).
async fn revoke_unseen(state: &AppState, mut successor: ApiKeyRecord) {
    successor.revoked_at = Some(Utc::now());
    if let Err(e) = state.store.replace_key(&successor).await {
        tracing::warn!(key_id = successor.id, error = %e, "could not revoke the successor of a failed rotation");
    }
}

/// Revokes a key at once; revoking a revoked key changes nothing. The revocation is a
/// conditional write on the key as just read, so it never undoes a concurrent rotation (nor
/// is undone by one).
pub async fn revoke_key(state: &AppState, key_id: u64) -> Result<ApiKeyRecord, ApiError> {
    let mut attempts = EditAttempts::new();
    while attempts.next().await {
        let mut key = existing_key(state, key_id).await?;
        if key.revoked_at.is_none() {
            key.revoked_at = Some(Utc::now());
            if !state.store.replace_key(&key).await? {
                continue;
            }
            key.version += 1;
        }
        // Announced on every call, so a retry after a failed publish still reaches every instance.
        credentials_changed(state, CredentialChange::Key { key_id: key.id, affiliate_id: key.affiliate_id }).await?;
        return Ok(key);
    }
    Err(ApiError::conflict(EDIT_CONFLICT))
}

/// A credential change takes effect here at once and on every other instance through
/// `credential-changes` (see `credentials.rs`). Call it after the store write.
pub async fn credentials_changed(state: &AppState, change: CredentialChange) -> Result<(), ApiError> {
    state.credentials.forget(change);
    crate::events::emit_credential_change(state.bus.as_ref(), change).await
}

pub async fn get_key(state: &AppState, key_id: u64) -> Result<ApiKeyRecord, ApiError> {
    existing_key(state, key_id).await
}

pub async fn get_affiliate(state: &AppState, id: u64) -> Result<AffiliateRecord, ApiError> {
    state
        .store
        .get_affiliate(id)
        .await?
        .ok_or_else(|| ApiError::not_found("Affiliate not found."))
}
