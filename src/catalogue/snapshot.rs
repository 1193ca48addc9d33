//! The in-memory catalogue: every product, the published ones pre-sorted newest first with
//! a lower-cased search text each, the listed categories, promotions and exchange rates.
//!
//! A snapshot is immutable; a change builds a new one and swaps it in (see `actor.rs`), so a
//! request reads one consistent catalogue without locks held and never scans the store.
//!
//! Each product also keeps its rendered JSON per currency ([`ProductEntry::rendered`]), filled
//! on first use, so a page is filtered entries and concatenated bytes. What the bytes depend
//! on inside the catalogue (the product, its bundle children, categories, rates) only changes
//! with a new entry; what depends on the clock carries its validity ([`Rendered`]).

use super::is_listed;
use super::pricing::ExchangeRates;
use crate::json::Fragment;
use crate::store::{CategoryRecord, ProductRecord, PromotionRecord};
use chrono::{DateTime, Utc};
use hissaback_topics::CurrencyCode;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// The model type of bundles; every other type is a course-like product with coupons.
pub const BUNDLE_TYPE: &str = "App\\Models\\ProductBundle";

/// A listed category as products show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CategoryRef {
    pub name: String,
    pub slug: String,
}

/// A product's JSON as rendered at some time, for the times it stays the same.
#[derive(Debug)]
pub struct Rendered {
    pub fragment: Fragment,
    /// From when (inclusive) and until when (exclusive) the rendering holds; `None`: unbounded.
    pub valid_from: Option<DateTime<Utc>>,
    pub valid_until: Option<DateTime<Utc>>,
}

impl Rendered {
    pub fn valid_at(&self, now: DateTime<Utc>) -> bool {
        self.valid_from.is_none_or(|f| f <= now) && self.valid_until.is_none_or(|u| now < u)
    }
}

/// A product and its renderings, one slot per currency.
///
/// Entries are shared between snapshots only while everything a rendering reads stays the
/// same (see [`Snapshot::with_product`]), so a slot never holds bytes of another catalogue.
pub struct ProductEntry {
    pub product: Arc<ProductRecord>,
    rendered: [RwLock<Option<Rendered>>; CurrencyCode::ALL.len()],
}

impl ProductEntry {
    fn new(product: Arc<ProductRecord>) -> Arc<Self> {
        Arc::new(Self { product, rendered: Default::default() })
    }

    /// Calls `with` on the rendering in `currency` valid at `now`, rendering it with `render`
    /// first (and keeping it) when there is none yet or it has expired.
    pub fn rendered<R>(&self, currency: CurrencyCode, now: DateTime<Utc>, render: impl FnOnce() -> Rendered, with: impl FnOnce(&Rendered) -> R) -> R {
        let slot = &self.rendered[currency as usize];
        if let Some(r) = slot.read().unwrap_or_else(|p| p.into_inner()).as_ref().filter(|r| r.valid_at(now)) {
            return with(r);
        }
        // Rendered without the lock: two requests may both render, the last one is kept.
        let fresh = render();
        let answer = with(&fresh);
        *slot.write().unwrap_or_else(|p| p.into_inner()) = Some(fresh);
        answer
    }
}

struct Listed {
    entry: Arc<ProductEntry>,
    /// Title, slug, description, category name and slug, lower-cased, newline-separated.
    haystack: String,
}

/// Filters of a product listing (already validated).
#[derive(Clone, Debug, Default)]
pub struct ListQuery {
    /// Model types; empty means any.
    pub types: Vec<String>,
    /// Category slugs; empty means any.
    pub category_slugs: Vec<String>,
    /// Lower-cased search terms; each must occur in the product's search text.
    pub terms: Vec<String>,
    pub offset: usize,
    pub limit: usize,
}

pub struct Snapshot {
    products: HashMap<u64, Arc<ProductEntry>>,
    listing: Vec<Listed>,
    categories: HashMap<String, CategoryRef>,
    promotions: Vec<PromotionRecord>,
    rates: ExchangeRates,
}

impl Snapshot {
    pub fn build(products: Vec<ProductRecord>, categories: &[CategoryRecord], promotions: Vec<PromotionRecord>, rates: ExchangeRates) -> Self {
        let products = products.into_iter().map(|p| (p.id, ProductEntry::new(Arc::new(p)))).collect();
        Self::assemble(products, listed_categories(categories), promotions, rates)
    }

    fn assemble(
        products: HashMap<u64, Arc<ProductEntry>>,
        categories: HashMap<String, CategoryRef>,
        promotions: Vec<PromotionRecord>,
        rates: ExchangeRates,
    ) -> Self {
        let mut listing: Vec<Listed> = products
            .values()
            .filter(|e| e.product.published)
            .map(|e| {
                let p = &e.product;
                let cat = p.category_slug.as_ref().and_then(|s| categories.get(s));
                let haystack = format!(
                    "{}\n{}\n{}\n{}\n{}",
                    p.title,
                    p.slug,
                    p.description,
                    cat.map(|c| c.name.as_str()).unwrap_or(""),
                    cat.map(|c| c.slug.as_str()).unwrap_or("")
                )
                .to_lowercase();
                Listed { entry: e.clone(), haystack }
            })
            .collect();
        listing.sort_by(|a, b| {
            let (a, b) = (&a.entry.product, &b.entry.product);
            b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id))
        });
        Self { products, listing, categories, promotions, rates }
    }

    /// The same products, each with fresh (empty) renderings.
    fn fresh_entries(&self) -> HashMap<u64, Arc<ProductEntry>> {
        self.products.iter().map(|(id, e)| (*id, ProductEntry::new(e.product.clone()))).collect()
    }

    /// The same catalogue with `product` added or replaced. Renderings are kept but for the
    /// product and the bundles that contain it (their `bundle_products` show it).
    pub fn with_product(&self, product: ProductRecord) -> Self {
        let id = product.id;
        let mut products: HashMap<u64, Arc<ProductEntry>> = self
            .products
            .iter()
            .map(|(k, e)| {
                let e = if e.product.bundle_product_ids.contains(&id) { ProductEntry::new(e.product.clone()) } else { e.clone() };
                (*k, e)
            })
            .collect();
        products.insert(id, ProductEntry::new(Arc::new(product)));
        Self::assemble(products, self.categories.clone(), self.promotions.clone(), self.rates.clone())
    }

    /// The same catalogue with other promotions (products do not show them: renderings kept).
    pub fn with_promotions(&self, promotions: Vec<PromotionRecord>) -> Self {
        Self::assemble(self.products.clone(), self.categories.clone(), promotions, self.rates.clone())
    }

    /// The same catalogue with other exchange rates.
    pub fn with_rates(&self, rates: ExchangeRates) -> Self {
        Self::assemble(self.fresh_entries(), self.categories.clone(), self.promotions.clone(), rates)
    }

    /// The same catalogue with other categories.
    pub fn with_categories(&self, categories: &[CategoryRecord]) -> Self {
        Self::assemble(self.fresh_entries(), listed_categories(categories), self.promotions.clone(), self.rates.clone())
    }

    /// Calls `each` on the page of published products matching the filters, in order, and
    /// answers how many match in all.
    pub fn page(&self, q: &ListQuery, mut each: impl FnMut(&ProductEntry)) -> usize {
        let mut total = 0;
        let mut taken = 0;
        for item in &self.listing {
            let p = &item.entry.product;
            if !q.types.is_empty() && !q.types.iter().any(|t| *t == p.model_type) {
                continue;
            }
            if !q.category_slugs.is_empty() && !p.category_slug.as_ref().is_some_and(|s| q.category_slugs.contains(s)) {
                continue;
            }
            if !q.terms.iter().all(|t| item.haystack.contains(t.as_str())) {
                continue;
            }
            if total >= q.offset && taken < q.limit {
                each(&item.entry);
                taken += 1;
            }
            total += 1;
        }
        total
    }

    /// One page of published products matching the filters, and the total that match.
    pub fn list(&self, q: &ListQuery) -> (Vec<Arc<ProductRecord>>, usize) {
        let mut page = Vec::with_capacity(q.limit.min(100));
        let total = self.page(q, |e| page.push(e.product.clone()));
        (page, total)
    }

    /// How many products are listed (published).
    pub fn listed_len(&self) -> usize {
        self.listing.len()
    }

    /// A published product with its renderings.
    pub fn published_entry(&self, id: u64) -> Option<&ProductEntry> {
        self.products.get(&id).map(|e| &**e).filter(|e| e.product.published)
    }

    /// Any product, published or not.
    pub fn product(&self, id: u64) -> Option<&Arc<ProductRecord>> {
        self.products.get(&id).map(|e| &e.product)
    }

    /// A product affiliates may see.
    pub fn published(&self, id: u64) -> Option<&Arc<ProductRecord>> {
        self.product(id).filter(|p| p.published)
    }

    pub fn category(&self, slug: Option<&str>) -> Option<&CategoryRef> {
        slug.and_then(|s| self.categories.get(s))
    }

    pub fn rates(&self) -> &ExchangeRates {
        &self.rates
    }

    pub fn len(&self) -> usize {
        self.products.len()
    }

    pub fn is_empty(&self) -> bool {
        self.products.is_empty()
    }

    /// Promotions running at `now` (no end, or an end still ahead), newest first.
    pub fn active_promotions(&self, now: DateTime<Utc>) -> Vec<&PromotionRecord> {
        let mut active: Vec<_> = self.promotions.iter().filter(|p| p.ends_at.is_none_or(|e| e > now)).collect();
        active.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
        active
    }
}

fn listed_categories(categories: &[CategoryRecord]) -> HashMap<String, CategoryRef> {
    categories
        .iter()
        .filter(|c| is_listed(c))
        .filter_map(|c| {
            let slug = c.slug.clone()?;
            Some((slug.clone(), CategoryRef { name: c.name.clone(), slug }))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::Decimal;

    pub fn product(id: u64, title: &str, model_type: &str, category: Option<&str>, published: bool, age_secs: i64) -> ProductRecord {
        let t = Utc::now() - chrono::Duration::seconds(age_secs);
        ProductRecord {
            id,
            title: title.into(),
            slug: title.to_lowercase().replace(' ', "-"),
            description: format!("About {title}"),
            image: None,
            price_usd: Decimal::new(1000, 2),
            model_type: model_type.into(),
            category_slug: category.map(String::from),
            published,
            introduction_video_url: None,
            bundle_product_ids: vec![],
            teachers: vec![],
            coupons: vec![],
            created_at: t,
            updated_at: t,
            version: 0,
        }
    }

    fn category(name: &str, slug: &str) -> CategoryRecord {
        let now = Utc::now();
        CategoryRecord { id: 1, name: name.into(), slug: Some(slug.into()), active: true, created_at: now, updated_at: now, deleted_at: None, version: 0 }
    }

    fn rates() -> ExchangeRates {
        ExchangeRates { gbp: Decimal::ONE, eur: Decimal::ONE, inr: Decimal::ONE, bgn: Decimal::ONE }
    }

    fn snapshot() -> Snapshot {
        Snapshot::build(
            vec![
                product(1, "Rocket Science", "App\\Models\\Course", Some("dev"), true, 30),
                product(2, "Rocket Design", "App\\Models\\Course", Some("design"), true, 20),
                product(3, "Hidden Rocket", "App\\Models\\Course", Some("dev"), false, 10),
                product(4, "Designer Bundle", BUNDLE_TYPE, Some("design"), true, 5),
            ],
            &[category("Development", "dev"), category("Design", "design")],
            vec![],
            rates(),
        )
    }

    fn ids(v: &[Arc<ProductRecord>]) -> Vec<u64> {
        v.iter().map(|p| p.id).collect()
    }

    #[test]
    fn lists_published_products_newest_first() {
        let (page, total) = snapshot().list(&ListQuery { limit: 15, ..Default::default() });
        assert_eq!((ids(&page), total), (vec![4, 2, 1], 3));
    }

    #[test]
    fn every_search_term_must_match_somewhere() {
        let q = |terms: &[&str]| ListQuery { terms: terms.iter().map(|t| t.to_string()).collect(), limit: 15, ..Default::default() };
        let s = snapshot();
        assert_eq!(ids(&s.list(&q(&["rocket"])).0), vec![2, 1]);
        assert_eq!(ids(&s.list(&q(&["rocket", "development"])).0), vec![1], "category name matches");
        assert_eq!(ids(&s.list(&q(&["rocket", "nothing"])).0), Vec::<u64>::new());
    }

    #[test]
    fn filters_and_pages_combine() {
        let s = snapshot();
        let q = ListQuery { category_slugs: vec!["design".into()], limit: 1, offset: 1, ..Default::default() };
        assert_eq!(s.list(&q).1, 2);
        assert_eq!(ids(&s.list(&q).0), vec![2]);
        let q = ListQuery { types: vec![BUNDLE_TYPE.into()], limit: 15, ..Default::default() };
        assert_eq!(ids(&s.list(&q).0), vec![4]);
    }

    #[test]
    fn a_changed_product_replaces_the_old_one() {
        let s = snapshot().with_product(product(3, "Hidden Rocket", "App\\Models\\Course", Some("dev"), true, 10));
        assert_eq!(ids(&s.list(&ListQuery { limit: 15, ..Default::default() }).0), vec![4, 3, 2, 1]);
        assert!(s.published(3).is_some());
    }
}
