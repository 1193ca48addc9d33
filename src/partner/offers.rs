//! The offer catalogue in memory: offers with their brand names, read from the store at
//! start, after every admin change on this instance, and at least every
//! `partner.offers_refresh_seconds` (changes made on other instances), so listing never
//! queries the store. Each offer keeps its JSON once rendered ([`ListedOffer::json`]), so a
//! page is concatenated bytes; publishable keys' answers are also cached whole, as bytes, for
//! `partner.public_cache_seconds` (the spec's 5-minute TTL for public keys).

use crate::error::ApiError;
use crate::state::AppState;
use crate::store::{ApiKeyRecord, OfferRecord, SharedStore};
use actix_web::web::Bytes;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

/// An offer as partners see it.
#[derive(Clone, Debug)]
pub struct ListedOffer {
    pub offer: OfferRecord,
    pub brand_name: String,
    /// Name, brand name and category, lower-cased, for `q`.
    pub haystack: String,
    /// The offer's JSON, rendered on first use; an offer never changes within a snapshot.
    rendered: OnceLock<Box<[u8]>>,
}

impl ListedOffer {
    pub fn new(offer: OfferRecord, brand_name: String) -> Self {
        let haystack = format!("{}\n{}\n{}", offer.name, brand_name, offer.category).to_lowercase();
        ListedOffer { offer, brand_name, haystack, rendered: OnceLock::new() }
    }

    /// The offer's JSON as `render` makes it, rendered once per snapshot.
    pub fn json(&self, render: impl FnOnce(&ListedOffer) -> Vec<u8>) -> &[u8] {
        self.rendered.get_or_init(|| render(self).into_boxed_slice())
    }
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
    public: Mutex<PublicCache>,
}

/// Whole answers by key id, then query string (looked up without copying the query).
#[derive(Default)]
struct PublicCache {
    by_key: HashMap<u64, HashMap<String, (Instant, Bytes)>>,
    entries: usize,
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
            ListedOffer::new(o, brand_name)
        })
        .collect();
    offers.sort_by_key(|o| o.offer.id);
    Ok(OfferSnapshot { offers, loaded: Instant::now() })
}

impl OfferCatalogue {
    pub async fn start(store: &SharedStore, max_age: Duration, public_ttl: Duration) -> anyhow::Result<Self> {
        Ok(Self { current: RwLock::new(Arc::new(load(store).await?)), max_age, public_ttl, public: Mutex::default() })
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

    /// A cached answer body for a publishable key and query, if still fresh.
    pub fn cached(&self, key_id: u64, query: &str) -> Option<Bytes> {
        let cache = self.public.lock().unwrap_or_else(|p| p.into_inner());
        let (at, body) = cache.by_key.get(&key_id)?.get(query)?;
        (at.elapsed() < self.public_ttl).then(|| body.clone())
    }

    pub fn remember(&self, key_id: u64, query: &str, body: Bytes) {
        let mut cache = self.public.lock().unwrap_or_else(|p| p.into_inner());
        if cache.entries >= PUBLIC_CACHE_ENTRIES {
            *cache = PublicCache::default();
        }
        if cache.by_key.entry(key_id).or_default().insert(query.to_string(), (Instant::now(), body)).is_none() {
            cache.entries += 1;
        }
    }

    pub fn public_ttl(&self) -> Duration {
        self.public_ttl
    }
}

/// Reloads this instance's offer catalogue after an admin change.
pub async fn refresh_offers(state: &AppState) -> Result<(), ApiError> {
    state.offers.reload(&state.store).await.map(|_| ()).map_err(ApiError::internal)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalogue(public_ttl: Duration) -> OfferCatalogue {
        let snapshot = OfferSnapshot { offers: vec![], loaded: Instant::now() };
        OfferCatalogue { current: RwLock::new(Arc::new(snapshot)), max_age: Duration::from_secs(60), public_ttl, public: Mutex::default() }
    }

    #[test]
    fn public_answers_are_kept_per_key_and_query_until_their_ttl() {
        let c = catalogue(Duration::from_secs(60));
        c.remember(1, "per_page=15", Bytes::from_static(b"{\"a\":1}"));
        assert_eq!(c.cached(1, "per_page=15").as_deref(), Some(&b"{\"a\":1}"[..]));
        assert_eq!(c.cached(2, "per_page=15"), None);
        assert_eq!(c.cached(1, "per_page=16"), None);
        let expired = catalogue(Duration::ZERO);
        expired.remember(1, "", Bytes::from_static(b"{}"));
        assert_eq!(expired.cached(1, ""), None);
    }

    #[test]
    fn the_public_cache_empties_when_full() {
        let c = catalogue(Duration::from_secs(60));
        for i in 0..PUBLIC_CACHE_ENTRIES - 1 {
            c.remember(i as u64 % 7, &i.to_string(), Bytes::new());
        }
        c.remember(1, "1", Bytes::new()); // a replacement: no growth
        c.remember(8, "last", Bytes::new());
        assert!(c.cached(0, "0").is_some() && c.cached(8, "last").is_some());
        c.remember(9, "new", Bytes::new());
        assert!(c.cached(0, "0").is_none() && c.cached(9, "new").is_some());
    }

    #[test]
    fn an_offer_is_rendered_once() {
        let now = chrono::Utc::now();
        let offer = OfferRecord {
            id: 1,
            brand_id: 1,
            name: "N".into(),
            category: "c".into(),
            base_commission: Default::default(),
            default_share_pct: Default::default(),
            tracking_url: String::new(),
            currency: "USD".into(),
            external_id: None,
            created_at: now,
            updated_at: now,
        };
        let o = ListedOffer::new(offer, "B".into());
        assert_eq!(o.haystack, "n\nb\nc");
        assert_eq!(o.json(|_| b"first".to_vec()), b"first");
        assert_eq!(o.json(|_| b"second".to_vec()), b"first");
    }
}
