//! In-memory lookups on the postback path, so that a steady stream of postbacks costs no
//! store read per postback:
//!
//! - [`ClickCache`]: clicks by id. A click never changes once recorded, so a cached click is
//!   never stale; the redirect puts each click it records here, and a click recorded by
//!   another instance is read from the store once, then kept. Unknown ids are not cached
//!   (they are answered 422, and a network's postbacks are rate-limited).
//! - [`NetworkCache`]: networks by postback token, kept a short while. A rotated token stops
//!   at once on the instance that rotated it, and within the cache's lifetime
//!   (`partner.network_cache_seconds`) on the others.
//!
//! Postback tokens are stored as API keys are: only an HMAC-SHA256 under the pepper, the
//! plain token shown once (at creation or rotation). A plain token stored before hashing
//! (`hb_pb_...` in `postback_token`) is still accepted, and hashed in the store on its first
//! use, until the network's token is rotated.

use crate::store::{ClickRecord, NetworkRecord, SharedStore, StoreResult};
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use std::sync::Arc;
use std::time::Duration;

/// Prefix of plain postback tokens.
pub const TOKEN_PREFIX: &str = "hb_pb_";

/// Clicks by id (see the module).
#[derive(Clone)]
pub struct ClickCache(moka::sync::Cache<String, Arc<ClickRecord>>);

impl ClickCache {
    /// Keeps at most `capacity` clicks, each for `ttl` after it was last used.
    pub fn new(capacity: u64, ttl: Duration) -> Self {
        Self(moka::sync::Cache::builder().max_capacity(capacity).time_to_idle(ttl).build())
    }

    /// A click just recorded.
    pub fn remember(&self, click: ClickRecord) {
        self.0.insert(click.click_id.clone(), Arc::new(click));
    }

    /// The click, from memory or once from the store.
    pub async fn get(&self, store: &SharedStore, click_id: &str) -> StoreResult<Option<Arc<ClickRecord>>> {
        if let Some(c) = self.0.get(click_id) {
            return Ok(Some(c));
        }
        let found = store.get_click(click_id).await?.map(Arc::new);
        if let Some(c) = &found {
            self.0.insert(click_id.to_string(), c.clone());
        }
        Ok(found)
    }
}

/// Networks by postback token (see the module), cached by the token's hash.
#[derive(Clone)]
pub struct NetworkCache {
    cache: moka::sync::Cache<String, Arc<NetworkRecord>>,
    /// HMAC-SHA256 keyed with the pepper, as API keys are hashed.
    keyed: Hmac<Sha256>,
}

impl NetworkCache {
    pub fn new(ttl: Duration, pepper: &SecretString) -> Self {
        Self {
            cache: moka::sync::Cache::builder().max_capacity(100_000).time_to_live(ttl).build(),
            keyed: Hmac::<Sha256>::new_from_slice(pepper.expose_secret().as_bytes()).expect("HMAC accepts keys of any length"),
        }
    }

    /// A new plain token: `hb_pb_` and 40 random letters and digits (about 238 bits).
    pub fn generate_token() -> String {
        use rand::distr::{Alphanumeric, SampleString};
        format!("{TOKEN_PREFIX}{}", Alphanumeric.sample_string(&mut rand::rng(), 40))
    }

    /// What the store keeps of a plain token: its hex HMAC-SHA256 under the pepper.
    pub fn hash(&self, token: &str) -> String {
        let mut mac = self.keyed.clone();
        mac.update(token.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// The network whose plain token this is, from memory or from the store.
    pub async fn by_token(&self, store: &SharedStore, token: &str) -> StoreResult<Option<Arc<NetworkRecord>>> {
        let hash = self.hash(token);
        if let Some(n) = self.cache.get(&hash) {
            return Ok(Some(n));
        }
        let found = match store.network_by_token(&hash).await? {
            Some(n) => Some(n),
            None if token.starts_with(TOKEN_PREFIX) => self.legacy(store, token, &hash).await?,
            None => None,
        };
        let found = found.map(Arc::new);
        if let Some(n) = &found {
            self.cache.insert(hash, n.clone());
        }
        Ok(found)
    }

    /// A token stored in plain text before hashing: accepted while it is still the network's
    /// token, and hashed in the store as it is used.
    async fn legacy(&self, store: &SharedStore, token: &str, hash: &str) -> StoreResult<Option<NetworkRecord>> {
        let Some(found) = store.network_by_token(token).await?.filter(|n| n.postback_token == token) else {
            return Ok(None);
        };
        // The network as stored by id: a lookup row left by an older store may be stale.
        match store.get_network(found.id).await? {
            Some(current) if current.postback_token == hash => Ok(Some(current)),
            Some(current) if current.postback_token != token => Ok(None),
            _ => {
                let migrated = NetworkRecord { postback_token: hash.to_string(), ..found };
                store.put_network(&migrated).await?;
                tracing::info!(network = migrated.id, "postback token hashed in the store");
                Ok(Some(migrated))
            }
        }
    }

    /// Drops a token (by its hash) from memory, when it was rotated.
    pub fn forget(&self, hash: &str) {
        self.cache.invalidate(hash);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_remembered_click_is_found_without_the_store() {
        let cache = ClickCache::new(10, Duration::from_secs(60));
        let click = ClickRecord {
            click_id: "c1".into(),
            code: "x".into(),
            affiliate_id: 1,
            campaign_id: 2,
            offer_id: 3,
            tenant_id: "t".into(),
            user_id: None,
            ip: None,
            user_agent: None,
            at: chrono::Utc::now(),
        };
        cache.remember(click.clone());
        assert_eq!(cache.0.get("c1").as_deref(), Some(&click));
        assert!(cache.0.get("c2").is_none());
    }

    #[test]
    fn token_hashes_are_peppered_and_never_contain_the_token() {
        let a = NetworkCache::new(Duration::from_secs(1), &"pepper-one-0123456789abcdef0123456789".to_string().into());
        let b = NetworkCache::new(Duration::from_secs(1), &"pepper-two-0123456789abcdef0123456789".to_string().into());
        let token = NetworkCache::generate_token();
        assert!(token.starts_with(TOKEN_PREFIX) && token.len() == 46);
        assert_eq!(a.hash(&token).len(), 64);
        assert_eq!(a.hash(&token), a.hash(&token));
        assert_ne!(a.hash(&token), b.hash(&token));
        assert!(!a.hash(&token).contains(&token[6..]));
    }
}
