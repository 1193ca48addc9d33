//! In-memory lookups on the postback path, so that a steady stream of postbacks costs no
//! store read per postback:
//!
//! - [`ClickCache`]: clicks by id. A click never changes once recorded, so a cached click is
//!   never stale; the redirect puts each click it records here, and a click recorded by
//!   another instance is read from the store once, then kept. Unknown ids are not cached
//!   (they are answered 422, and a network's postbacks are rate-limited).
//! - [`NetworkCache`]: networks by postback token, kept a short while (a changed or removed
//!   token stops working within that time).

use crate::store::{ClickRecord, NetworkRecord, SharedStore, StoreResult};
use std::sync::Arc;
use std::time::Duration;

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

/// Networks by postback token (see the module).
#[derive(Clone)]
pub struct NetworkCache(moka::sync::Cache<String, Arc<NetworkRecord>>);

impl NetworkCache {
    pub fn new(ttl: Duration) -> Self {
        Self(moka::sync::Cache::builder().max_capacity(100_000).time_to_live(ttl).build())
    }

    /// The network whose token this is, from memory or from the store.
    pub async fn by_token(&self, store: &SharedStore, token: &str) -> StoreResult<Option<Arc<NetworkRecord>>> {
        if let Some(n) = self.0.get(token) {
            return Ok(Some(n));
        }
        let found = store.network_by_token(token).await?.map(Arc::new);
        if let Some(n) = &found {
            self.0.insert(token.to_string(), n.clone());
        }
        Ok(found)
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
}
