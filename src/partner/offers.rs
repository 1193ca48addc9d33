//! The offer catalogue in memory: offers with their brand names, read from the store at
//! start, after every admin change on this instance, and at least every
//! `partner.offers_refresh_seconds` (changes made on other instances), so listing never
//! queries the store. Publishable keys' answers are also cached whole for
//! `partner.public_cache_seconds` (the spec's 5-minute TTL for public keys).

use crate::error::ApiError;
use crate::state::AppState;
use crate::store::{ApiKeyRecord, OfferRecord, SharedStore};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// An offer as partners see it.
#[derive(Clone, Debug)]
pub struct ListedOffer {
    pub offer: OfferRecord,
    pub brand_name: String,
    /// Name, brand name and category, lower-cased, for `q`.
    pub haystack: String,
}

pub struct OfferSnapshot {
    pub offers: Vec<ListedOffer>,
    loaded: Instant,
}

impl OfferSnapshot {
    pub fn get(&self, id: u64) -> Option<&ListedOffer> {
        self.offers.iter().find(|o| o.offer.id == id)
    }
}

/// Whether a key may see and use an offer: no restriction, or the offer's brand or the offer
/// itself is on the key's allowed lists.
pub fn allowed(key: &ApiKeyRecord, offer: &OfferRecord) -> bool {
    (key.allowed_brand_ids.is_empty() && key.allowed_offer_ids.is_empty())
        || key.allowed_brand_ids.contains(&offer.brand_id)
        || key.allowed_offer_ids.contains(&offer.id)
}

/// The catalogue plus the publishable-key answer cache.
pub struct OfferCatalogue {
    current: RwLock<Arc<OfferSnapshot>>,
    max_age: Duration,
    public_ttl: Duration,
    public: Mutex<HashMap<(u64, String), (Instant, serde_json::Value)>>,
}

/// Most cached public answers kept; the cache is emptied when it would grow beyond.
const PUBLIC_CACHE_ENTRIES: usize = 10_000;

async fn load(store: &SharedStore) -> anyhow::Result<OfferSnapshot> {
    let brands: HashMap<u64, String> = store.brands().await?.into_iter().map(|b| (b.id, b.name)).collect();
    let mut offers: Vec<ListedOffer> = store
        .offers()
        .await?
        .into_iter()
        .map(|o| {
            let brand_name = brands.get(&o.brand_id).cloned().unwrap_or_default();
            let haystack = format!("{}\n{}\n{}", o.name, brand_name, o.category).to_lowercase();
            ListedOffer { offer: o, brand_name, haystack }
        })
        .collect();
    offers.sort_by_key(|o| o.offer.id);
    Ok(OfferSnapshot { offers, loaded: Instant::now() })
}

impl OfferCatalogue {
    pub async fn start(store: &SharedStore, max_age: Duration, public_ttl: Duration) -> anyhow::Result<Self> {
        Ok(Self { current: RwLock::new(Arc::new(load(store).await?)), max_age, public_ttl, public: Mutex::new(HashMap::new()) })
    }

    /// The catalogue, reloaded first when older than its maximum age.
    pub async fn snapshot(&self, store: &SharedStore) -> anyhow::Result<Arc<OfferSnapshot>> {
        let current = self.current.read().unwrap_or_else(|p| p.into_inner()).clone();
        if current.loaded.elapsed() < self.max_age {
            return Ok(current);
        }
        self.reload(store).await
    }

    pub async fn reload(&self, store: &SharedStore) -> anyhow::Result<Arc<OfferSnapshot>> {
        let fresh = Arc::new(load(store).await?);
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = fresh.clone();
        Ok(fresh)
    }

    /// A cached answer for a publishable key and query, if still fresh.
    pub fn cached(&self, key_id: u64, query: &str) -> Option<serde_json::Value> {
        let cache = self.public.lock().unwrap_or_else(|p| p.into_inner());
        cache.get(&(key_id, query.to_string())).filter(|(at, _)| at.elapsed() < self.public_ttl).map(|(_, v)| v.clone())
    }

    pub fn remember(&self, key_id: u64, query: &str, answer: serde_json::Value) {
        let mut cache = self.public.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= PUBLIC_CACHE_ENTRIES {
            cache.clear();
        }
        cache.insert((key_id, query.to_string()), (Instant::now(), answer));
    }

    pub fn public_ttl(&self) -> Duration {
        self.public_ttl
    }
}

/// Reloads this instance's offer catalogue after an admin change.
pub async fn refresh_offers(state: &AppState) -> Result<(), ApiError> {
    state.offers.reload(&state.store).await.map(|_| ()).map_err(ApiError::internal)
}
