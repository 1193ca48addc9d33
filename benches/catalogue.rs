//! Catalogue listing over 10,000 products: the in-memory snapshot that serves
//! `GET /api/v1/products`, with and without search and filters, beside what a per-request
//! read of the embedded store would cost. Criterion measures each; the closing table prints
//! the ratios of the same run side by side (`cargo bench --bench catalogue`).
//!
//! Also a page's body: 15 products rendered per request as `serde_json::Value`s and serialized
//! (how the handler answered before issue 12) beside the same bytes from the snapshot's cached
//! renderings (how it answers now), with the equality of both checked first.

use chrono::{Duration, Utc};
use criterion::{criterion_group, Criterion};
use std::hint::black_box;
use hissaback::catalogue::{ExchangeRates, ListQuery, Snapshot, BUNDLE_TYPE};
use hissaback::routes::pagination::Page;
use hissaback::routes::products::{list_body, QueryParams, Render};
use hissaback_topics::CurrencyCode;
use serde_json::{json, Value};
use hissaback::store::embedded::EmbeddedStore;
use hissaback::store::{CategoryRecord, CouponRecord, CouponTier, ProductRecord, Store};
use rust_decimal::Decimal;
use std::time::Instant;

const PRODUCTS: u64 = 10_000;
const WORDS: [&str; 16] = [
    "rocket", "design", "rust", "async", "data", "kernel", "graphics", "audio", "network", "compiler", "secure", "cloud",
    "mobile", "pixel", "vector", "systems",
];
const CATEGORIES: [&str; 8] = ["design", "development", "business", "music", "photo", "security", "data", "games"];

fn products() -> Vec<ProductRecord> {
    products_up_to(PRODUCTS)
}

fn products_up_to(n: u64) -> Vec<ProductRecord> {
    let now = Utc::now();
    (1..=n)
        .map(|id| {
            let w = |k: u64| WORDS[((id * 7 + k * 13) % WORDS.len() as u64) as usize];
            let title = format!("{} {} {} {id}", w(1), w(2), w(3));
            ProductRecord {
                id,
                slug: title.to_lowercase().replace(' ', "-"),
                description: format!("Learn {} and {} from scratch, then {}.", w(4), w(5), w(6)),
                title,
                image: None,
                price_usd: Decimal::new(1999 + (id as i64 % 300) * 100, 2),
                model_type: if id % 10 == 0 { BUNDLE_TYPE.into() } else { "App\\Models\\Course".into() },
                category_slug: Some(CATEGORIES[(id % CATEGORIES.len() as u64) as usize].into()),
                published: id % 20 != 0,
                introduction_video_url: None,
                bundle_product_ids: vec![],
                teachers: vec![],
                coupons: vec![CouponRecord { tier: CouponTier::Low, code: format!("C{id}"), percent_off: Decimal::new(15, 0), expires_at: None }],
                created_at: now - Duration::seconds(id as i64),
                updated_at: now,
                version: 0,
            }
        })
        .collect()
}

fn categories() -> Vec<CategoryRecord> {
    let now = Utc::now();
    CATEGORIES
        .iter()
        .enumerate()
        .map(|(i, slug)| CategoryRecord {
            id: i as u64 + 1,
            name: slug.to_uppercase(),
            slug: Some(slug.to_string()),
            active: true,
            created_at: now,
            updated_at: now,
            deleted_at: None,
            version: 0,
        })
        .collect()
}

fn rates() -> ExchangeRates {
    ExchangeRates { gbp: Decimal::new(79, 2), eur: Decimal::new(92, 2), inr: Decimal::new(8300, 2), bgn: Decimal::new(180, 2) }
}

fn snapshot() -> Snapshot {
    Snapshot::build(products(), &categories(), vec![], rates())
}

fn first_page() -> ListQuery {
    ListQuery { limit: 15, ..Default::default() }
}

fn search_and_filters() -> ListQuery {
    ListQuery {
        types: vec!["App\\Models\\Course".into()],
        category_slugs: vec!["design".into(), "development".into()],
        terms: vec!["rocket".into(), "rust".into()],
        offset: 15,
        limit: 15,
    }
}

fn search_miss() -> ListQuery {
    ListQuery { terms: vec!["nowhere-to-be-found".into()], limit: 15, ..Default::default() }
}

/// An embedded store holding the same 10,000 products.
fn store() -> (EmbeddedStore, tempfile::TempDir, tokio::runtime::Runtime) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = rt.block_on(async {
        let s = EmbeddedStore::open(dir.path()).await.unwrap();
        for p in products() {
            s.put_product(&p).await.unwrap();
        }
        s
    });
    (store, dir, rt)
}

fn listing(c: &mut Criterion) {
    let snap = snapshot();
    let mut g = c.benchmark_group("catalogue_listing_10k");
    g.bench_function("snapshot_first_page", |b| b.iter(|| black_box(snap.list(black_box(&first_page())))));
    g.bench_function("snapshot_search_two_terms_two_categories_type_page_2", |b| {
        b.iter(|| black_box(snap.list(black_box(&search_and_filters()))))
    });
    g.bench_function("snapshot_search_miss_full_scan", |b| b.iter(|| black_box(snap.list(black_box(&search_miss())))));
    let (store, _dir, rt) = store();
    g.sample_size(10);
    g.bench_function("embedded_store_read_all_products", |b| b.iter(|| black_box(rt.block_on(store.products()).unwrap().len())));
    g.finish();
}

/// The body as the handler built it before: a `Value` per product, serialized whole.
fn page_with_values(render: &Render, query: &ListQuery, paging: &Page, q: &QueryParams) -> Vec<u8> {
    let (items, total) = render.snapshot.list(query);
    let products: Vec<Value> = items.iter().map(|p| render.product(p)).collect();
    let data = json!({ "products": products, "pagination": paging.block(total, render.base_url, "/api/v1/products", q) });
    serde_json::to_vec(&json!({ "success": true, "data": data })).unwrap()
}

/// A 15-product page of a "rocket" search in EUR, as the handler reads it.
fn rocket_page() -> (QueryParams, Page, ListQuery) {
    let q = QueryParams::parse("per_page=15&search=rocket&currency_code=EUR");
    let paging = Page { page: 1, per_page: 15 };
    let query = ListQuery { terms: vec!["rocket".into()], limit: 15, ..Default::default() };
    (q, paging, query)
}

/// A catalogue the size `benches/request_path.rs` seeds, where rendering, not the scan, is
/// the cost of a page.
fn small_snapshot() -> Snapshot {
    Snapshot::build(products_up_to(60), &categories(), vec![], rates())
}

fn page_bodies(c: &mut Criterion) {
    let snap = small_snapshot();
    let render = Render { snapshot: &snap, currency: CurrencyCode::EUR, affiliate_id: 123, base_url: "https://example.com", now: Utc::now() };
    let (q, paging, query) = rocket_page();
    assert_eq!(list_body(&render, &query, &paging, &q), page_with_values(&render, &query, &paging, &q), "byte-identical");
    let mut g = c.benchmark_group("products_page_body_15");
    g.bench_function("values_serialized", |b| b.iter(|| black_box(page_with_values(&render, black_box(&query), &paging, &q))));
    g.bench_function("cached_bytes", |b| b.iter(|| black_box(list_body(&render, black_box(&query), &paging, &q))));
    g.finish();
}

criterion_group!(benches, listing, page_bodies);

/// Median time of `f` over `runs` batches of `per_batch` calls, in microseconds per call.
fn median_us(runs: usize, per_batch: usize, mut f: impl FnMut()) -> f64 {
    let mut v: Vec<f64> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..per_batch {
                f();
            }
            t.elapsed().as_secs_f64() * 1e6 / per_batch as f64
        })
        .collect();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn ratios() {
    let snap = snapshot();
    let (store, _dir, rt) = store();
    let first = median_us(21, 200, || {
        black_box(snap.list(&first_page()));
    });
    let filtered = median_us(21, 50, || {
        black_box(snap.list(&search_and_filters()));
    });
    let miss = median_us(21, 50, || {
        black_box(snap.list(&search_miss()));
    });
    let scan = median_us(7, 2, || {
        black_box(rt.block_on(store.products()).unwrap().len());
    });
    println!("\ncatalogue listing over {PRODUCTS} products, medians of one run, side by side:");
    println!("  {:<58} {:>12}", "case", "µs per call");
    for (name, us) in [
        ("snapshot: first page, no filters", first),
        ("snapshot: 2 search terms + 2 categories + type, page 2", filtered),
        ("snapshot: search that matches nothing (full scan)", miss),
        ("embedded store: read every product (per-request scan)", scan),
    ] {
        println!("  {name:<58} {us:>12.1}");
    }
    println!("  ratio store read / filtered snapshot listing: {:.0}x", scan / filtered);
    println!("  ratio filtered / first page: {:.1}x", filtered / first);

    let small = small_snapshot();
    for (snap, what) in [(&small, "60 products"), (&snap, "10,000 products: the search scan dominates")] {
        let render = Render { snapshot: snap, currency: CurrencyCode::EUR, affiliate_id: 123, base_url: "https://example.com", now: Utc::now() };
        let (q, paging, query) = rocket_page();
        let values = median_us(21, 200, || {
            black_box(page_with_values(&render, &query, &paging, &q));
        });
        let cached = median_us(21, 200, || {
            black_box(list_body(&render, &query, &paging, &q));
        });
        let size = list_body(&render, &query, &paging, &q).len();
        println!("\nbody of a 15-product page over {what} (search=rocket, EUR, {size} bytes):");
        println!("  {:<58} {:>12.2}", "Values rendered and serialized per request (before)", values);
        println!("  {:<58} {:>12.2}", "cached renderings concatenated (now)", cached);
        println!("  ratio before / now: {:.1}x", values / cached);
    }
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    ratios();
}
