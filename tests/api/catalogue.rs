//! The catalogue as affiliates see it (seed "Products": List Products, Retrieve Product;
//! seed "Promotions") and the admin calls that shape it (DESIGN "Admin API" rows for
//! products, coupons, promotions and exchange rates; "Data rules" for money rounding).
//!
//! Products, categories and promotions are global to a deployment, and the real-backend run
//! shares one keyspace (and one Kafka topic set) between tests: every slug and title here
//! carries a per-test tag, listings are restricted with `search=<tag>`, and promotion
//! assertions look only at this test's own ids. Exchange rates are set by each test that
//! converts, right before it asserts.

use crate::helpers::{real_backends, spawn_app, spawn_app_with, Answer, TestApp};
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::Duration;

const COURSE: &str = "App\\Models\\Course";
const BUNDLE: &str = "App\\Models\\ProductBundle";
const UNSUPPORTED: &str = "Unsupported currency, use USD, GBP, EUR, INR, BGN";
const FUTURE: &str = "2099-06-15T23:59:59Z";
const PAST: &str = "2020-01-01T00:00:00Z";

/// A tag no other test of the run carries (lowercase, digits; safe in slugs and searches:
/// the `t…z` frame keeps one tag from being a substring of another).
fn tag() -> String {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("t{n}x{}z", t % 1_000_000_000)
}

// ---------------------------------------------------------------------------------------
// Requests

fn qs(pairs: &[(&str, &str)]) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

async fn products(app: &TestApp, key: &str, pairs: &[(&str, &str)]) -> Answer {
    app.get_with_key(&format!("/api/v1/products?{}", qs(pairs)), key).await
}

async fn one_product(app: &TestApp, key: &str, id: impl std::fmt::Display, pairs: &[(&str, &str)]) -> Answer {
    app.get_with_key(&format!("/api/v1/products/{id}?{}", qs(pairs)), key).await
}

async fn promotions(app: &TestApp, key: &str, pairs: &[(&str, &str)]) -> Answer {
    app.get_with_key(&format!("/api/v1/promotions?{}", qs(pairs)), key).await
}

/// `base` with the fields of `extra` set on it.
fn with(mut base: Value, extra: Value) -> Value {
    for (k, v) in extra.as_object().unwrap() {
        base[k] = v.clone();
    }
    base
}

/// A published course body: title `"{name} {t}"`, slug `"{name}-{t}"`.
fn course(t: &str, name: &str, price: Value) -> Value {
    json!({
        "title": format!("{name} {t}"),
        "slug": format!("{name}-{t}"),
        "description": format!("About {name}."),
        "image": format!("https://cdn.example.com/{name}.png"),
        "price": price,
        "type": COURSE,
        "published": true,
    })
}

/// A published bundle body of `children`.
fn bundle(t: &str, name: &str, price: Value, children: &[u64]) -> Value {
    with(course(t, name, price), json!({"type": BUNDLE, "bundle_product_ids": children}))
}

/// `POST /admin/v1/products`, asserting 201; the new product's id.
async fn create_product(app: &TestApp, body: Value) -> u64 {
    let r = app.admin(Method::POST, "/products", Some(body)).await;
    assert_eq!(r.status, 201, "creating a product: {}", r.text);
    r.body["data"]["product"]["id"].as_u64().unwrap_or_else(|| panic!("data.product.id in {}", r.text))
}

async fn patch_product(app: &TestApp, id: u64, body: Value) -> Answer {
    app.admin(Method::PATCH, &format!("/products/{id}"), Some(body)).await
}

async fn add_coupon(app: &TestApp, id: u64, body: Value) -> Answer {
    app.admin(Method::POST, &format!("/products/{id}/coupons"), Some(body)).await
}

async fn coupon_ok(app: &TestApp, id: u64, body: Value) {
    let r = add_coupon(app, id, body).await;
    assert_eq!(r.status, 201, "adding a coupon: {}", r.text);
}

/// `POST /admin/v1/categories`; the category's id.
async fn create_category(app: &TestApp, name: &str, slug: &str) -> u64 {
    let r = app.admin(Method::POST, "/categories", Some(json!({"name": name, "slug": slug}))).await;
    assert_eq!(r.status, 201, "creating a category: {}", r.text);
    r.body["data"]["category"]["id"].as_u64().unwrap()
}

async fn create_promotion(app: &TestApp, body: Value) -> u64 {
    let r = app.admin(Method::POST, "/promotions", Some(body)).await;
    assert_eq!(r.status, 201, "creating a promotion: {}", r.text);
    r.body["data"]["promotion"]["id"].as_u64().unwrap_or_else(|| panic!("data.promotion.id in {}", r.text))
}

/// The rates every test here sets and converts with: GBP 0.5, EUR 0.92, INR 83.1, BGN 1.5
/// per USD. One table for all: the rates are global on the shared real store (a PUT reloads
/// them from the store), so tests setting different tables would see each other's.
fn test_rates() -> Value {
    json!({"GBP": 0.5, "EUR": 0.92, "INR": 83.1, "BGN": 1.5})
}

async fn set_rates(app: &TestApp, rates: Value) {
    let r = app.admin(Method::PUT, "/exchange-rates", Some(json!({ "rates": rates }))).await;
    assert_eq!(r.status, 200, "setting exchange rates: {}", r.text);
}

// ---------------------------------------------------------------------------------------
// Reading answers

fn listed(r: &Answer) -> &Vec<Value> {
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["success"], json!(true), "{}", r.text);
    r.body["data"]["products"].as_array().unwrap_or_else(|| panic!("data.products in {}", r.text))
}

fn ids(r: &Answer) -> Vec<u64> {
    listed(r).iter().map(|p| p["id"].as_u64().unwrap()).collect()
}

fn entry(r: &Answer, id: u64) -> Value {
    listed(r)
        .iter()
        .find(|p| p["id"] == json!(id))
        .cloned()
        .unwrap_or_else(|| panic!("product {id} not in {}", r.text))
}

fn single(r: &Answer) -> Value {
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["success"], json!(true), "{}", r.text);
    assert!(r.body["data"]["product"].is_object(), "data.product in {}", r.text);
    r.body["data"]["product"].clone()
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("{v} is not a number"))
}

/// JSON equality where numbers compare by value (79 and 79.0 are the same amount).
fn same(actual: &Value, expected: &Value) -> bool {
    match (actual, expected) {
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (Value::Array(a), Value::Array(b)) => a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same(x, y)),
        (Value::Object(a), Value::Object(b)) => a.len() == b.len() && a.iter().all(|(k, v)| b.get(k).is_some_and(|w| same(v, w))),
        _ => actual == expected,
    }
}

#[track_caller]
fn assert_same(actual: &Value, expected: &Value, what: &str) {
    assert!(same(actual, expected), "{what}\n  actual:   {actual}\n  expected: {expected}");
}

/// A course without an introduction video may omit the key or give `null`: reads both as
/// "absent" (recursively, for bundle children too).
fn without_null_videos(mut v: Value) -> Value {
    if let Some(o) = v.as_object_mut() {
        if o.get("introduction_video_url").is_some_and(Value::is_null) {
            o.remove("introduction_video_url");
        }
        if let Some(Value::Array(children)) = o.get_mut("bundle_products") {
            for c in children.iter_mut() {
                *c = without_null_videos(c.take());
            }
        }
    }
    v
}

#[track_caller]
fn assert_unsupported_currency(r: &Answer, what: &str) {
    assert_eq!(r.status, 422, "{what}: {}", r.text);
    assert_eq!(r.body["success"], json!(false), "{what}: {}", r.text);
    assert_eq!(r.body["message"], json!(UNSUPPORTED), "{what}: {}", r.text);
}

/// The query of a pagination link, sorted, after checking it points at the listing.
fn link_params(app: &TestApp, link: &Value) -> Vec<(String, String)> {
    let s = link.as_str().unwrap_or_else(|| panic!("{link} is not a URL"));
    let prefix = format!("{}/api/v1/products?", app.address);
    assert!(s.starts_with(&prefix), "{s} does not start with {prefix}");
    let mut v: Vec<(String, String)> = url::form_urlencoded::parse(s[prefix.len()..].as_bytes()).into_owned().collect();
    v.sort();
    v
}

fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    v.sort();
    v
}

// ---------------------------------------------------------------------------------------
// 1. Listing: order, pagination, per_page, published only, auth and scope

#[actix_web::test]
async fn the_listing_is_newest_first_and_paginated() {
    let app = spawn_app().await;
    let p = app.partner(Some(&["products.list"])).await;
    let t = tag();
    let mut created = vec![];
    for i in 0..17 {
        created.push(create_product(&app, course(&t, &format!("page-{i}"), json!(10))).await);
    }
    let hidden = create_product(&app, with(course(&t, "hidden", json!(10)), json!({"published": false}))).await;
    let newest_first: Vec<u64> = created.iter().rev().copied().collect();

    // Default: 15 per page, newest first, only published products.
    let r = products(&app, &p.key, &[("search", &t)]).await;
    assert_eq!(ids(&r), newest_first[..15].to_vec(), "page 1, newest first");
    let pg = &r.body["data"]["pagination"];
    assert_eq!(
        pg.as_object().unwrap().keys().cloned().collect::<BTreeSet<_>>(),
        BTreeSet::from(["current_page", "last_page", "next_page_url", "per_page", "prev_page_url", "total"].map(String::from)),
        "pagination keys of {pg}"
    );
    assert_eq!((&pg["current_page"], &pg["per_page"], &pg["total"], &pg["last_page"]), (&json!(1), &json!(15), &json!(17), &json!(2)), "{pg}");
    assert_eq!(pg["prev_page_url"], Value::Null, "{pg}");
    assert_eq!(link_params(&app, &pg["next_page_url"]), params(&[("search", &t), ("page", "2")]));

    let r = products(&app, &p.key, &[("search", &t), ("page", "2")]).await;
    assert_eq!(ids(&r), newest_first[15..].to_vec(), "page 2");
    let pg = &r.body["data"]["pagination"];
    assert_eq!((&pg["current_page"], &pg["per_page"], &pg["total"], &pg["last_page"]), (&json!(2), &json!(15), &json!(17), &json!(2)), "{pg}");
    assert_eq!(pg["next_page_url"], Value::Null, "{pg}");
    assert_eq!(link_params(&app, &pg["prev_page_url"]), params(&[("search", &t), ("page", "1")]));
    assert!(!created.contains(&hidden));
    assert!(!ids(&r).contains(&hidden));

    // Beyond the last page: 200 and no products.
    let r = products(&app, &p.key, &[("search", &t), ("page", "3")]).await;
    assert_eq!(ids(&r), Vec::<u64>::new(), "page beyond the last");
    let pg = &r.body["data"]["pagination"];
    assert_eq!((&pg["current_page"], &pg["total"], &pg["last_page"], &pg["next_page_url"]), (&json!(3), &json!(17), &json!(2), &Value::Null), "{pg}");

    // per_page bounds: 1 and 100 are accepted.
    let r = products(&app, &p.key, &[("search", &t), ("per_page", "1")]).await;
    assert_eq!(ids(&r), vec![newest_first[0]]);
    let pg = &r.body["data"]["pagination"];
    assert_eq!((&pg["per_page"], &pg["total"], &pg["last_page"]), (&json!(1), &json!(17), &json!(17)), "{pg}");
    assert_eq!(link_params(&app, &pg["next_page_url"]), params(&[("search", &t), ("per_page", "1"), ("page", "2")]));
    let r = products(&app, &p.key, &[("search", &t), ("per_page", "100")]).await;
    assert_eq!(ids(&r), newest_first, "per_page=100 lists every published product of the test");
    let pg = &r.body["data"]["pagination"];
    assert_eq!((&pg["per_page"], &pg["total"], &pg["last_page"]), (&json!(100), &json!(17), &json!(1)), "{pg}");
    assert_eq!((&pg["next_page_url"], &pg["prev_page_url"]), (&Value::Null, &Value::Null), "{pg}");
    for bad in ["0", "101", "abc", "-1", "1.5"] {
        let r = products(&app, &p.key, &[("search", &t), ("per_page", bad)]).await;
        assert_eq!(r.status, 422, "per_page={bad}: {}", r.text);
        r.assert_invalid("per_page");
    }

    // Links keep the other query parameters and never carry the API key.
    let query = qs(&[("api_key", &p.key), ("search", &t), ("currency_code", "EUR"), ("per_page", "5"), ("type", COURSE)]);
    let r = app.get(&format!("/api/v1/products?{query}")).await;
    assert_eq!(ids(&r), newest_first[..5].to_vec());
    let next = r.body["data"]["pagination"]["next_page_url"].clone();
    assert!(!next.as_str().unwrap_or("").contains(&p.key) && !next.as_str().unwrap_or("").contains("api_key"), "{next}");
    assert_eq!(
        link_params(&app, &next),
        params(&[("search", &t), ("currency_code", "EUR"), ("per_page", "5"), ("type", COURSE), ("page", "2")])
    );
    let follow = next.as_str().unwrap().strip_prefix(&app.address).unwrap().to_string();
    let r2 = app.get_with_key(&follow, &p.key).await;
    assert_eq!(ids(&r2), newest_first[5..10].to_vec(), "following next_page_url");
    assert_eq!(listed(&r2)[0]["currency"], "EUR");
    let prev = &r2.body["data"]["pagination"]["prev_page_url"];
    assert!(!prev.as_str().unwrap_or("").contains("api_key"), "{prev}");
    assert_eq!(
        link_params(&app, prev),
        params(&[("search", &t), ("currency_code", "EUR"), ("per_page", "5"), ("type", COURSE), ("page", "1")])
    );
}

#[actix_web::test]
async fn the_listing_needs_a_key_with_products_list() {
    let app = spawn_app().await;
    app.get("/api/v1/products").await.assert_error(401, "API key is missing.", "unauthenticated");
    app.get_with_key("/api/v1/products", "hb_sk_not-a-real-key").await.assert_error(401, "API key is invalid.", "unauthenticated");
    for scopes in [&["products.view", "promotions.view"][..], &["webhooks.manage"][..]] {
        let p = app.partner(Some(scopes)).await;
        products(&app, &p.key, &[]).await.assert_error(403, "Insufficient scope.", "insufficient_scope");
    }
    let p = app.partner(Some(&["products.list"])).await;
    let r = products(&app, &p.key, &[]).await;
    assert_eq!(r.status, 200, "{}", r.text);
}

// ---------------------------------------------------------------------------------------
// 2. Currencies

#[actix_web::test]
async fn prices_convert_with_the_admin_rates_rounded_half_away_from_zero() {
    // No GeoIP database here, whatever HISSABACK_GEOIP_DB says (settings read the environment).
    let app = spawn_app_with(|s| s.catalogue.geoip_db = None).await;
    let p = app.partner(Some(&["products.list", "products.view", "promotions.view"])).await;
    let t = tag();
    let a = create_product(&app, course(&t, "conv-a", json!(199.99))).await;
    let b = create_product(&app, course(&t, "conv-b", json!(5.35))).await;
    let c = create_product(&app, course(&t, "conv-c", json!(5.33))).await;
    let d = create_product(&app, course(&t, "conv-d", json!(10.75))).await;
    let e = create_product(&app, course(&t, "conv-e", json!(1.25))).await;
    let f = create_product(&app, course(&t, "conv-f", json!(79.00))).await;
    coupon_ok(&app, f, json!({"tier": "low", "code": format!("AFFL-{t}"), "percent_off": 12.5, "expires_at": FUTURE})).await;
    coupon_ok(&app, f, json!({"tier": "mid", "code": format!("AFFM-{t}"), "percent_off": 25})).await;

    // The admin's rate table reads back as set.
    set_rates(&app, test_rates()).await;
    let g = app.admin(Method::GET, "/exchange-rates", None).await;
    assert_eq!(g.status, 200, "{}", g.text);
    assert_same(&g.body["data"]["rates"], &test_rates(), "GET /admin/v1/exchange-rates");

    let price = |r: &Answer, id: u64| {
        let e = entry(r, id);
        (num(&e["price"]), e["currency"].as_str().unwrap().to_string())
    };

    // USD is the default and the stored price.
    set_rates(&app, test_rates()).await;
    for query in [vec![("search", t.as_str())], vec![("search", t.as_str()), ("currency_code", "USD")]] {
        let r = products(&app, &p.key, &query).await;
        assert_eq!(listed(&r).len(), 6, "{}", r.text);
        assert_eq!(price(&r, a), (199.99, "USD".to_string()), "{query:?}");
        assert_eq!(price(&r, b), (5.35, "USD".to_string()), "{query:?}");
        assert_eq!(price(&r, f), (79.0, "USD".to_string()), "{query:?}");
    }

    // Every currency, with the rounding cases (x = a price, r = a rate).
    let cases: [(&str, &[(u64, f64)]); 4] = [
        // 199.99 × 0.92 = 183.9908
        ("EUR", &[(a, 183.99), (f, 72.68)]),
        // 5.35 × 0.5 = 2.675 (binary floating point would give 2.67); 5.33 × 0.5 = 2.665
        // (half-to-even would give 2.66); 199.99 × 0.5 = 99.995
        ("GBP", &[(a, 100.0), (b, 2.68), (c, 2.67)]),
        // 1.25 × 83.1 = 103.875; 199.99 × 83.1 = 16619.169
        ("INR", &[(a, 16619.17), (e, 103.88)]),
        // 10.75 × 1.5 = 16.125 and 199.99 × 1.5 = 299.985 (half-to-even: 16.12, 299.98)
        ("BGN", &[(a, 299.99), (d, 16.13)]),
    ];
    for (code, expected) in cases {
        for requested in [code.to_string(), code.to_lowercase()] {
            set_rates(&app, test_rates()).await;
            let r = products(&app, &p.key, &[("search", &t), ("currency_code", &requested)]).await;
            for (id, want) in expected {
                assert_eq!(price(&r, *id), (*want, code.to_string()), "product {id} in currency_code={requested}");
            }
            for item in listed(&r) {
                assert_eq!(item["currency"], json!(code), "currency_code={requested}: {item}");
            }
            let one = single(&one_product(&app, &p.key, expected[0].0, &[("currency_code", &requested)]).await);
            assert_eq!((num(&one["price"]), one["currency"].clone()), (expected[0].1, json!(code)), "single, currency_code={requested}");
        }
    }

    // Coupons price from the converted price: 72.68 EUR at 12.5% and 25%.
    set_rates(&app, test_rates()).await;
    let r = products(&app, &p.key, &[("search", &t), ("currency_code", "EUR")]).await;
    let coupons = &entry(&r, f)["affiliate_coupons"];
    assert_eq!(num(&coupons["low"]["new_price"]), 63.6, "{coupons}");
    assert_eq!(num(&coupons["mid"]["new_price"]), 54.51, "{coupons}");
    assert_eq!((num(&coupons["low"]["percent_off"]), num(&coupons["low"]["discount_decimal"])), (12.5, 0.125), "{coupons}");

    // Unsupported currencies: 422 with the seed's message, on all three endpoints.
    for code in ["JPY", "XXX", "jpy", "EURO"] {
        assert_unsupported_currency(&products(&app, &p.key, &[("currency_code", code)]).await, &format!("list, {code}"));
        assert_unsupported_currency(&one_product(&app, &p.key, a, &[("currency_code", code)]).await, &format!("single, {code}"));
        assert_unsupported_currency(&promotions(&app, &p.key, &[("currency_code", code)]).await, &format!("promotions, {code}"));
    }

    // currency_from_ip: a value that is not an IP address is a 422 naming it.
    for bad in ["not-an-ip", "300.1.2.3", "1.2.3"] {
        let q = [("currency_from_ip", bad)];
        let r = products(&app, &p.key, &q).await;
        assert_eq!(r.status, 422, "list, currency_from_ip={bad}: {}", r.text);
        r.assert_invalid("currency_from_ip");
        one_product(&app, &p.key, a, &q).await.assert_invalid("currency_from_ip");
        promotions(&app, &p.key, &q).await.assert_invalid("currency_from_ip");
    }
    // Without a GeoIP database a valid IP resolves nothing: currency_code, else USD, applies.
    set_rates(&app, test_rates()).await;
    for ip in ["81.2.69.142", "5.9.0.1", "2001:4860:4860::8888"] {
        let r = products(&app, &p.key, &[("search", &t), ("currency_from_ip", ip), ("currency_code", "EUR")]).await;
        assert_eq!(price(&r, a), (183.99, "EUR".to_string()), "currency_from_ip={ip} with currency_code=EUR and no GeoIP database");
        let r = products(&app, &p.key, &[("search", &t), ("currency_from_ip", ip)]).await;
        assert_eq!(price(&r, a), (199.99, "USD".to_string()), "currency_from_ip={ip} alone and no GeoIP database");
        let one = single(&one_product(&app, &p.key, a, &[("currency_from_ip", ip), ("currency_code", "INR")]).await);
        assert_eq!((num(&one["price"]), one["currency"].clone()), (16619.17, json!("INR")), "single, currency_from_ip={ip}");
    }
}

#[actix_web::test]
async fn currency_from_ip_uses_the_geoip_database_when_there_is_one() {
    let Some(path) = std::env::var_os("HISSABACK_GEOIP_DB").map(std::path::PathBuf::from).filter(|p| p.is_file()) else {
        eprintln!("note: HISSABACK_GEOIP_DB does not name a file: the GeoIP currency assertions are skipped (see scripts/fetch-geoip.sh)");
        return;
    };
    let app = spawn_app_with(|s| s.catalogue.geoip_db = Some(path)).await;
    let p = app.partner(Some(&["products.list", "products.view", "promotions.view"])).await;
    let t = tag();
    let a = create_product(&app, course(&t, "geo-a", json!(100))).await;
    let child = create_product(&app, course(&t, "geo-child", json!(20))).await;
    let b = create_product(&app, bundle(&t, "geo-bundle", json!(40), &[child])).await;
    let promo = json!({"title": format!("Geo {t}"), "text": "Bundles", "type": "Bundle Promotion", "percentage_off": 10, "bundle_ids": [b]});
    create_promotion(&app, promo).await;

    let cases: [(&[(&str, &str)], f64, &str); 7] = [
        (&[("currency_from_ip", "81.2.69.142")], 50.0, "GBP"),
        (&[("currency_from_ip", "81.2.69.142"), ("currency_code", "EUR")], 50.0, "GBP"),
        (&[("currency_from_ip", "5.9.0.1")], 92.0, "EUR"),
        (&[("currency_from_ip", "5.9.0.1"), ("currency_code", "INR")], 92.0, "EUR"),
        (&[("currency_from_ip", "8.8.8.8")], 100.0, "USD"),
        (&[("currency_from_ip", "8.8.8.8"), ("currency_code", "INR")], 8310.0, "INR"),
        (&[("currency_from_ip", "127.0.0.1"), ("currency_code", "eur")], 92.0, "EUR"),
    ];
    for (query, want, code) in cases {
        set_rates(&app, test_rates()).await;
        let mut q = query.to_vec();
        q.push(("search", t.as_str()));
        let r = products(&app, &p.key, &q).await;
        let e = entry(&r, a);
        assert_eq!((num(&e["price"]), e["currency"].clone()), (want, json!(code)), "list, {query:?}");
        let one = single(&one_product(&app, &p.key, a, query).await);
        assert_eq!((num(&one["price"]), one["currency"].clone()), (want, json!(code)), "single, {query:?}");
        let r = promotions(&app, &p.key, query).await;
        assert_eq!(r.status, 200, "{}", r.text);
        let mine = r.body["data"]["bundles"].as_array().unwrap().iter().find(|x| x["id"] == json!(b)).cloned();
        let mine = mine.unwrap_or_else(|| panic!("bundle {b} in {}", r.text));
        assert_eq!(mine["currency"], json!(code), "promotions, {query:?}");
        assert_eq!(mine["bundle_products"][0]["currency"], json!(code), "promotions child, {query:?}");
    }
}

// ---------------------------------------------------------------------------------------
// 3 and 4. Product fields, coupons, bundles

/// The seed's catalogue: a category, the two bundle children of the seed's example with
/// their coupons, an unpublished course and a bundle of all three.
struct DesignCatalogue {
    t: String,
    ui: u64,
    brand: u64,
    draft: u64,
    toolkit: u64,
}

async fn design_catalogue(app: &TestApp) -> DesignCatalogue {
    let t = tag();
    create_category(app, &format!("Design {t}"), &format!("design-{t}")).await;
    let ui = create_product(
        app,
        json!({
            "title": format!("Advanced UI Design {t}"),
            "slug": format!("advanced-ui-{t}"),
            "description": "Pixel-perfect interfaces.",
            "image": "https://cdn.example.com/products/455.png",
            "price": 79.00,
            "type": COURSE,
            "category_slug": format!("design-{t}"),
            "published": true,
            "introduction_video_url": "https://videos.example.com/ui-intro.mp4",
            "teachers": [{"id": 7, "name": "Ada"}],
        }),
    )
    .await;
    coupon_ok(app, ui, json!({"tier": "low", "code": format!("AFFL-UI-{t}"), "percent_off": 12.5, "expires_at": FUTURE})).await;
    coupon_ok(app, ui, json!({"tier": "mid", "code": format!("AFFM-UI-{t}"), "percent_off": 25, "expires_at": null})).await;
    let brand = create_product(
        app,
        json!({
            "title": format!("Brand Identity Masterclass {t}"),
            "slug": format!("brand-identity-{t}"),
            "description": "Logos and voice.",
            "price": 69.00,
            "type": COURSE,
            "category_slug": format!("design-{t}"),
            "published": true,
        }),
    )
    .await;
    coupon_ok(app, brand, json!({"tier": "low", "code": format!("AFFL-OLD-{t}"), "percent_off": 40, "expires_at": PAST})).await;
    coupon_ok(app, brand, json!({"tier": "mid", "code": format!("AFFM-BRAND-{t}"), "percent_off": 22.5, "expires_at": "2099-07-01T00:00:00Z"})).await;
    coupon_ok(app, brand, json!({"tier": "high", "code": format!("AFFH-BRAND-{t}"), "percent_off": 55})).await;
    let draft = create_product(app, with(course(&t, "draft", json!(30)), json!({"published": false, "category_slug": format!("design-{t}")}))).await;
    let toolkit = create_product(
        app,
        json!({
            "title": format!("Designer Toolkit Bundle {t}"),
            "slug": format!("designer-toolkit-{t}"),
            "description": "Save on our most popular design courses.",
            "image": "https://cdn.example.com/products/901.png",
            "price": 129.00,
            "type": BUNDLE,
            "category_slug": format!("design-{t}"),
            "published": true,
            "bundle_product_ids": [ui, brand, draft],
        }),
    )
    .await;
    DesignCatalogue { t, ui, brand, draft, toolkit }
}

impl DesignCatalogue {
    fn category(&self) -> Value {
        json!({"name": format!("Design {}", self.t), "slug": format!("design-{}", self.t)})
    }

    fn ui_coupons(&self) -> Value {
        json!({
            "low": {"code": format!("AFFL-UI-{}", self.t), "percent_off": 12.5, "discount_decimal": 0.125, "new_price": 69.13, "expires_at": FUTURE},
            "mid": {"code": format!("AFFM-UI-{}", self.t), "percent_off": 25, "discount_decimal": 0.25, "new_price": 59.25, "expires_at": null},
            "high": null,
        })
    }

    fn brand_coupons(&self) -> Value {
        json!({
            "low": null,
            "mid": {"code": format!("AFFM-BRAND-{}", self.t), "percent_off": 22.5, "discount_decimal": 0.225, "new_price": 53.48, "expires_at": "2099-07-01T00:00:00Z"},
            "high": {"code": format!("AFFH-BRAND-{}", self.t), "percent_off": 55, "discount_decimal": 0.55, "new_price": 31.05, "expires_at": null},
        })
    }

    fn ui(&self, app: &TestApp, affiliate: u64) -> Value {
        let t = &self.t;
        json!({
            "id": self.ui,
            "title": format!("Advanced UI Design {t}"),
            "description": "Pixel-perfect interfaces.",
            "image": "https://cdn.example.com/products/455.png",
            "url": format!("{}/course/advanced-ui-{t}?affiliate={affiliate}", app.address),
            "price": 79.0,
            "currency": "USD",
            "type": COURSE,
            "affiliate_coupons": self.ui_coupons(),
            "introduction_video_url": "https://videos.example.com/ui-intro.mp4",
            "category": self.category(),
        })
    }

    fn brand(&self, app: &TestApp, affiliate: u64) -> Value {
        let t = &self.t;
        json!({
            "id": self.brand,
            "title": format!("Brand Identity Masterclass {t}"),
            "description": "Logos and voice.",
            "image": null,
            "url": format!("{}/course/brand-identity-{t}?affiliate={affiliate}", app.address),
            "price": 69.0,
            "currency": "USD",
            "type": COURSE,
            "affiliate_coupons": self.brand_coupons(),
            "category": self.category(),
        })
    }

    fn toolkit(&self, app: &TestApp, affiliate: u64) -> Value {
        let t = &self.t;
        json!({
            "id": self.toolkit,
            "title": format!("Designer Toolkit Bundle {t}"),
            "description": "Save on our most popular design courses.",
            "image": "https://cdn.example.com/products/901.png",
            "url": format!("{}/bundles/designer-toolkit-{t}?affiliate={affiliate}", app.address),
            "price": 129.0,
            "currency": "USD",
            "type": BUNDLE,
            "category": self.category(),
            "bundle_products": [
                {
                    "id": self.ui,
                    "title": format!("Advanced UI Design {t}"),
                    "type": COURSE,
                    "price": 79.0,
                    "currency": "USD",
                    "url": format!("{}/course/advanced-ui-{t}?affiliate={affiliate}", app.address),
                    "affiliate_coupons": self.ui_coupons(),
                    "introduction_video_url": "https://videos.example.com/ui-intro.mp4",
                },
                {
                    "id": self.brand,
                    "title": format!("Brand Identity Masterclass {t}"),
                    "type": COURSE,
                    "price": 69.0,
                    "currency": "USD",
                    "url": format!("{}/course/brand-identity-{t}?affiliate={affiliate}", app.address),
                    "affiliate_coupons": self.brand_coupons(),
                },
            ],
        })
    }
}

#[actix_web::test]
async fn courses_carry_the_seed_fields_and_coupon_tiers() {
    let app = spawn_app().await;
    let p = app.partner(Some(&["products.list", "products.view"])).await;
    let cat = design_catalogue(&app).await;

    let r = products(&app, &p.key, &[("search", &cat.t), ("type", COURSE)]).await;
    assert_eq!(ids(&r), vec![cat.brand, cat.ui], "published courses, newest first");
    assert_same(&entry(&r, cat.ui), &cat.ui(&app, p.affiliate_id), "the 79.00 course in the listing");
    assert_same(&without_null_videos(entry(&r, cat.brand)), &cat.brand(&app, p.affiliate_id), "the 69.00 course in the listing");

    let one = single(&one_product(&app, &p.key, cat.ui, &[]).await);
    assert_same(&one, &cat.ui(&app, p.affiliate_id), "the 79.00 course alone");
    let one = single(&one_product(&app, &p.key, cat.brand, &[]).await);
    assert_same(&without_null_videos(one), &cat.brand(&app, p.affiliate_id), "the 69.00 course alone");

    // The same product gives each affiliate its own link.
    let other = app.partner(Some(&["products.view"])).await;
    let one = single(&one_product(&app, &other.key, cat.ui, &[]).await);
    assert_eq!(one["url"], json!(format!("{}/course/advanced-ui-{}?affiliate={}", app.address, cat.t, other.affiliate_id)));

    // A course with no coupon at all still has the three keys.
    let plain = create_product(&app, course(&cat.t, "plain", json!(15))).await;
    let one = single(&one_product(&app, &p.key, plain, &[]).await);
    assert_same(&one["affiliate_coupons"], &json!({"low": null, "mid": null, "high": null}), "a course without coupons");

    // A coupon that expires replaces nothing else; a later coupon of a tier replaces the earlier.
    coupon_ok(&app, plain, json!({"tier": "high", "code": format!("H1-{}", cat.t), "percent_off": 10})).await;
    coupon_ok(&app, plain, json!({"tier": "high", "code": format!("H2-{}", cat.t), "percent_off": 20, "expires_at": FUTURE})).await;
    let one = single(&one_product(&app, &p.key, plain, &[]).await);
    assert_same(
        &one["affiliate_coupons"],
        &json!({"low": null, "mid": null, "high": {"code": format!("H2-{}", cat.t), "percent_off": 20, "discount_decimal": 0.2, "new_price": 12.0, "expires_at": FUTURE}}),
        "the tier's newer coupon",
    );
}

#[actix_web::test]
async fn bundles_list_their_published_children_with_coupons() {
    let app = spawn_app().await;
    let p = app.partner(Some(&["products.list", "products.view"])).await;
    let cat = design_catalogue(&app).await;
    let expected = cat.toolkit(&app, p.affiliate_id);

    let r = products(&app, &p.key, &[("search", &cat.t)]).await;
    assert_eq!(ids(&r), vec![cat.toolkit, cat.brand, cat.ui], "newest first, the draft course left out");
    let listed_bundle = without_null_videos(entry(&r, cat.toolkit));
    assert!(listed_bundle.get("affiliate_coupons").is_none(), "a bundle has no affiliate_coupons: {listed_bundle}");
    assert_same(&listed_bundle, &expected, "the bundle in the listing");
    let one = without_null_videos(single(&one_product(&app, &p.key, cat.toolkit, &[]).await));
    assert_same(&one, &expected, "the bundle alone");
    assert!(!one["bundle_products"].as_array().unwrap().iter().any(|c| c["id"] == json!(cat.draft)), "unpublished child listed");

    // Publishing the draft child adds it to the bundle at once.
    let r = patch_product(&app, cat.draft, json!({"published": true})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let one = single(&one_product(&app, &p.key, cat.toolkit, &[]).await);
    let children: Vec<&Value> = one["bundle_products"].as_array().unwrap().iter().map(|c| &c["id"]).collect();
    assert_eq!(children, vec![&json!(cat.ui), &json!(cat.brand), &json!(cat.draft)], "{one}");
}

// ---------------------------------------------------------------------------------------
// 5. Filters

#[actix_web::test]
async fn type_category_and_search_filters_combine() {
    let app = spawn_app().await;
    let p = app.partner(Some(&["products.list"])).await;
    let t = tag();
    let (astro, bota, misc) = (format!("astroslug-{t}"), format!("botaslug-{t}"), format!("misc-{t}"));
    create_category(&app, &format!("Astroname {t}"), &astro).await;
    create_category(&app, &format!("Botaname {t}"), &bota).await;
    create_category(&app, &format!("Misc {t}"), &misc).await;
    let p1 = create_product(
        &app,
        json!({"title": format!("Rocket Quasar {t}"), "slug": format!("course-zebraslug-{t}"), "description": "Mentions the Nebulaword.",
               "price": 10, "type": COURSE, "category_slug": astro, "published": true}),
    )
    .await;
    let p2 = create_product(
        &app,
        json!({"title": format!("Garden Rocket {t}"), "slug": format!("course-b-{t}"), "description": "Other text.",
               "price": 10, "type": COURSE, "category_slug": bota, "published": true}),
    )
    .await;
    let p3 = create_product(&app, with(bundle(&t, "bundle-c", json!(30), &[p1, p2]), json!({"category_slug": astro}))).await;
    let p4 = create_product(&app, with(course(&t, "course-d", json!(10)), json!({"category_slug": misc}))).await;
    let _hidden = create_product(&app, with(course(&t, "rocket-hidden", json!(10)), json!({"category_slug": astro, "published": false}))).await;

    let got = |r: Answer| -> BTreeSet<u64> { ids(&r).into_iter().collect() };
    let set = |v: &[u64]| -> BTreeSet<u64> { v.iter().copied().collect() };
    let all = set(&[p1, p2, p3, p4]);
    assert_eq!(got(products(&app, &p.key, &[("search", &t)]).await), all);

    // type: one, repeated, bracketed.
    assert_eq!(got(products(&app, &p.key, &[("search", &t), ("type", COURSE)]).await), set(&[p1, p2, p4]), "type=Course");
    assert_eq!(got(products(&app, &p.key, &[("search", &t), ("type", BUNDLE)]).await), set(&[p3]), "type=ProductBundle");
    assert_eq!(got(products(&app, &p.key, &[("search", &t), ("type", COURSE), ("type", BUNDLE)]).await), all, "type repeated");
    assert_eq!(got(products(&app, &p.key, &[("search", &t), ("type[]", BUNDLE)]).await), set(&[p3]), "type[]");
    assert_eq!(got(products(&app, &p.key, &[("search", &t), ("type[]", COURSE), ("type[]", BUNDLE)]).await), all, "type[] repeated");
    assert_eq!(got(products(&app, &p.key, &[("search", &t), ("type", "App\\Models\\Nothing")]).await), set(&[]), "unknown type");
    // The same with the brackets and backslashes left unencoded, as a browser might send them.
    let raw = app.get_with_key(&format!("/api/v1/products?search={t}&type[]=App\\Models\\ProductBundle"), &p.key).await;
    assert_eq!(got(raw), set(&[p3]), "raw type[]");

    // category_slug: one, comma-separated, repeated.
    assert_eq!(got(products(&app, &p.key, &[("search", &t), ("category_slug", &astro)]).await), set(&[p1, p3]), "one slug");
    let both = format!("{astro},{bota}");
    assert_eq!(got(products(&app, &p.key, &[("search", &t), ("category_slug", &both)]).await), set(&[p1, p2, p3]), "comma-separated");
    let spaced = format!("{astro} , {misc}");
    assert_eq!(got(products(&app, &p.key, &[("search", &t), ("category_slug", &spaced)]).await), set(&[p1, p3, p4]), "comma and spaces");
    assert_eq!(
        got(products(&app, &p.key, &[("search", &t), ("category_slug", &bota), ("category_slug", &misc)]).await),
        set(&[p2, p4]),
        "repeated"
    );
    assert_eq!(got(products(&app, &p.key, &[("search", &t), ("category_slug", &format!("nothing-{t}"))]).await), set(&[]), "unknown slug");

    // search: every whitespace-separated term, case-insensitive, across the searchable fields.
    let search = |terms: &str| {
        let q = format!("{terms} {t}");
        let app = &app;
        let key = p.key.clone();
        async move { got(products(app, &key, &[("search", &q)]).await) }
    };
    assert_eq!(search("ROCKET").await, set(&[p1, p2]), "title, any case");
    assert_eq!(search("quasar").await, set(&[p1]), "title");
    assert_eq!(search("ZebraSlug").await, set(&[p1]), "slug");
    assert_eq!(search("nebulaword").await, set(&[p1]), "description");
    assert_eq!(search("ASTRONAME").await, set(&[p1, p3]), "category name");
    assert_eq!(search("botaslug").await, set(&[p2]), "category slug");
    assert_eq!(search("  rocket \t  quasar  ").await, set(&[p1]), "several spaces and tabs");
    assert_eq!(search("rocket nebulaword astroname zebraslug").await, set(&[p1]), "terms matching different fields");
    assert_eq!(search("quasar botaname").await, set(&[]), "all terms required");
    assert_eq!(search("rocket unmatchedterm").await, set(&[]), "all terms required");

    // Filters combine with each other and with pagination.
    let r = products(&app, &p.key, &[("search", &format!("rocket {t}")), ("type", COURSE), ("category_slug", &both), ("per_page", "1")]).await;
    assert_eq!(ids(&r), vec![p2], "newest of the two matches");
    assert_eq!(r.body["data"]["pagination"]["total"], json!(2), "{}", r.text);
    assert_eq!(r.body["data"]["pagination"]["last_page"], json!(2), "{}", r.text);
}

// ---------------------------------------------------------------------------------------
// 6. One product

#[actix_web::test]
async fn a_single_product_is_published_or_not_found() {
    let app = spawn_app().await;
    let p = app.partner(Some(&["products.view"])).await;
    let t = tag();
    let live = create_product(&app, course(&t, "live", json!(12.5))).await;
    let draft = create_product(&app, with(course(&t, "draft", json!(12.5)), json!({"published": false}))).await;

    let r = one_product(&app, &p.key, live, &[]).await;
    assert_eq!(r.body, json!({"success": true, "data": {"product": r.body["data"]["product"].clone()}}), "envelope of {}", r.text);
    let one = single(&r);
    assert_eq!((one["id"].clone(), one["title"].clone(), num(&one["price"]), one["currency"].clone()), (json!(live), json!(format!("live {t}")), 12.5, json!("USD")));

    let not_found = |r: Answer, what: &str| {
        r.assert_error(404, "Product not found.", "not_found");
        assert_eq!(r.body["success"], json!(false), "{what}");
    };
    not_found(one_product(&app, &p.key, draft, &[]).await, "unpublished");
    not_found(one_product(&app, &p.key, 999_999_999u64, &[]).await, "unknown id");
    not_found(one_product(&app, &p.key, "abc", &[]).await, "non-numeric id");
    not_found(one_product(&app, &p.key, "-1", &[]).await, "negative id");
    assert_unsupported_currency(&one_product(&app, &p.key, live, &[("currency_code", "JPY")]).await, "single, JPY");

    app.get(&format!("/api/v1/products/{live}")).await.assert_error(401, "API key is missing.", "unauthenticated");
    let lister = app.partner(Some(&["products.list", "promotions.view"])).await;
    one_product(&app, &lister.key, live, &[]).await.assert_error(403, "Insufficient scope.", "insufficient_scope");
    // products.view alone does not list.
    products(&app, &p.key, &[]).await.assert_error(403, "Insufficient scope.", "insufficient_scope");
}

// ---------------------------------------------------------------------------------------
// 7. Promotions

#[actix_web::test]
async fn promotions_show_running_bundles_and_the_newest_percentage_promotion() {
    let app = spawn_app().await;
    let p = app.partner(Some(&["promotions.view", "products.view"])).await;
    let cat = design_catalogue(&app).await;
    let t = cat.t.clone();
    let side = create_product(&app, bundle(&t, "side-bundle", json!(49), &[])).await;
    let draft_bundle = create_product(&app, with(bundle(&t, "draft-bundle", json!(10), &[cat.ui]), json!({"published": false}))).await;
    let stale = create_product(&app, bundle(&t, "stale-bundle", json!(10), &[cat.ui])).await;
    let mine = [cat.toolkit, side, draft_bundle, stale];
    let own_bundles = |r: &Answer| -> Vec<Value> {
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.body["success"], json!(true), "{}", r.text);
        let list = r.body["data"]["bundles"].as_array().unwrap_or_else(|| panic!("data.bundles in {}", r.text));
        list.iter().filter(|b| b["id"].as_u64().is_some_and(|id| mine.contains(&id))).cloned().collect()
    };
    let own_ids = |r: &Answer| -> BTreeSet<u64> { own_bundles(r).iter().map(|b| b["id"].as_u64().unwrap()).collect() };

    let r = promotions(&app, &p.key, &[]).await;
    assert_eq!(own_ids(&r), BTreeSet::new(), "no promotion names these bundles yet");
    if !real_backends() {
        assert_eq!(r.body["data"]["percentage_promotion"], Value::Null, "no promotion at all: {}", r.text);
    }

    // An ended percentage promotion runs no more: its bundles are not listed and it is not
    // the percentage promotion.
    let ended = create_promotion(
        &app,
        json!({"title": format!("Ended {t}"), "text": "Over", "type": "Percentage Promotion", "percentage_off": 40, "ends_at": PAST, "bundle_ids": [stale]}),
    )
    .await;
    let r = promotions(&app, &p.key, &[]).await;
    assert_eq!(own_ids(&r), BTreeSet::new(), "an ended promotion lists nothing: {}", r.text);
    assert_ne!(r.body["data"]["percentage_promotion"]["id"], json!(ended), "an ended promotion is not running");
    if !real_backends() {
        assert_eq!(r.body["data"]["percentage_promotion"], Value::Null, "only an ended promotion: {}", r.text);
    }

    // A running promotion of another type lists its bundles but is no percentage promotion.
    let other = create_promotion(
        &app,
        json!({"title": format!("Bundle deals {t}"), "text": "Bundles", "type": "Bundle Promotion", "percentage_off": 10, "ends_at": null, "bundle_ids": [side]}),
    )
    .await;
    let r = promotions(&app, &p.key, &[]).await;
    assert_eq!(own_ids(&r), BTreeSet::from([side]));
    assert_ne!(r.body["data"]["percentage_promotion"]["id"], json!(other), "a Bundle Promotion is not a percentage promotion");
    if !real_backends() {
        assert_eq!(r.body["data"]["percentage_promotion"], Value::Null, "no running percentage promotion: {}", r.text);
    }

    // The newest running percentage promotion; an unpublished bundle of it is not listed.
    let running = create_promotion(
        &app,
        json!({"title": format!("Spring Savings {t}"), "text": "25% off all courses", "type": "Percentage Promotion",
               "percentage_off": 25, "ends_at": "2099-03-10T17:00:00Z", "bundle_ids": [cat.toolkit, draft_bundle]}),
    )
    .await;
    let r = promotions(&app, &p.key, &[]).await;
    assert_same(
        &r.body["data"]["percentage_promotion"],
        &json!({"id": running, "title": format!("Spring Savings {t}"), "text": "25% off all courses", "type": "Percentage Promotion",
                "percentage_off": 25, "ends_at": "2099-03-10T17:00:00Z"}),
        "the running percentage promotion",
    );
    assert_eq!(own_ids(&r), BTreeSet::from([cat.toolkit, side]), "bundles of running promotions, published only");

    // Bundle entries mirror the products endpoint, bundle_products included.
    let toolkit = own_bundles(&r).into_iter().find(|b| b["id"] == json!(cat.toolkit)).unwrap();
    assert_same(&without_null_videos(toolkit.clone()), &cat.toolkit(&app, p.affiliate_id), "the promoted bundle");
    let alone = single(&one_product(&app, &p.key, cat.toolkit, &[]).await);
    assert_same(&toolkit, &alone, "a promoted bundle is the product endpoint's bundle");

    // Prices convert like the products endpoint's.
    set_rates(&app, test_rates()).await;
    let r = promotions(&app, &p.key, &[("currency_code", "EUR")]).await;
    let toolkit = own_bundles(&r).into_iter().find(|b| b["id"] == json!(cat.toolkit)).unwrap();
    assert_eq!((num(&toolkit["price"]), toolkit["currency"].clone()), (118.68, json!("EUR")), "129.00 × 0.92");
    let ui = &toolkit["bundle_products"][0];
    assert_eq!((num(&ui["price"]), ui["currency"].clone()), (72.68, json!("EUR")), "79.00 × 0.92: {ui}");
    assert_eq!(num(&ui["affiliate_coupons"]["low"]["new_price"]), 63.6, "{ui}");
    assert_eq!(num(&ui["affiliate_coupons"]["mid"]["new_price"]), 54.51, "{ui}");
    let brand = &toolkit["bundle_products"][1];
    assert_eq!((num(&brand["price"]), brand["currency"].clone()), (63.48, json!("EUR")), "69.00 × 0.92: {brand}");
    let side_entry = own_bundles(&r).into_iter().find(|b| b["id"] == json!(side)).unwrap();
    assert_eq!((num(&side_entry["price"]), side_entry["currency"].clone()), (45.08, json!("EUR")), "49.00 × 0.92");
    assert_same(&side_entry["bundle_products"], &json!([]), "a bundle without children");

    assert_unsupported_currency(&promotions(&app, &p.key, &[("currency_code", "JPY")]).await, "promotions, JPY");
    app.get("/api/v1/promotions").await.assert_error(401, "API key is missing.", "unauthenticated");
    let lister = app.partner(Some(&["products.list", "products.view"])).await;
    promotions(&app, &lister.key, &[]).await.assert_error(403, "Insufficient scope.", "insufficient_scope");
}

// ---------------------------------------------------------------------------------------
// 8. Admin validation

#[actix_web::test]
async fn a_product_missing_its_required_fields_names_every_one_of_them() {
    let app = spawn_app().await;
    let t = tag();
    let mut failures = vec![];
    let cases = [
        (json!({}), vec!["title", "slug", "type", "price"]),
        (json!({"description": "x", "published": true}), vec!["title", "slug", "type", "price"]),
        (json!({"title": "No type", "slug": format!("no-type-{t}"), "price": 10}), vec!["type"]),
        (json!({"title": "No price", "slug": format!("no-price-{t}"), "type": COURSE}), vec!["price"]),
    ];
    for (body, fields) in cases {
        let r = app.admin(Method::POST, "/products", Some(body.clone())).await;
        r.assert_failure(422, "validation_failed");
        let named: BTreeSet<String> = r.body["errors"].as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default();
        let missing: Vec<&str> = fields.iter().copied().filter(|f| !named.contains(*f)).collect();
        if !missing.is_empty() {
            failures.push(format!("{body}: errors should name {fields:?}; {missing:?} not named (errors named {named:?}): {}", r.text));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[actix_web::test]
async fn admin_products_are_validated() {
    let app = spawn_app().await;
    let t = tag();
    let r = app.send(app.client.post(app.url("/admin/v1/products")).json(&course(&t, "no-token", json!(1)))).await;
    assert_eq!(r.status, 401, "{}", r.text);

    for bad in ["Not A Slug", "UPPER", "under_score", "sl/ash"] {
        app.admin(Method::POST, "/products", Some(course(&t, "x", json!(1)).tap_slug(bad))).await.assert_invalid("slug");
    }
    let first = create_product(&app, course(&t, "taken", json!(1))).await;
    let dup = app.admin(Method::POST, "/products", Some(with(course(&t, "taken", json!(2)), json!({"title": "Other"})))).await;
    dup.assert_invalid("slug");
    assert_eq!(dup.body["errors"]["slug"][0], "The slug has already been taken.", "{}", dup.text);

    let r = app.admin(Method::POST, "/products", Some(with(course(&t, "nocat", json!(1)), json!({"category_slug": format!("nothing-{t}")})))).await;
    r.assert_invalid("category_slug");

    let bundle_id = create_product(&app, bundle(&t, "inner-bundle", json!(5), &[first])).await;
    for children in [json!([bundle_id]), json!([999_999_999u64]), json!([first, 999_999_998u64])] {
        let r = app.admin(Method::POST, "/products", Some(bundle(&t, "outer-bundle", json!(5), &[]).tap_children(children.clone()))).await;
        r.assert_invalid("bundle_product_ids");
    }
    let r = patch_product(&app, bundle_id, json!({"bundle_product_ids": [bundle_id]})).await;
    r.assert_invalid("bundle_product_ids");

    for price in [json!(-1), json!(-0.01), json!(1.234), json!(10.001)] {
        let r = app.admin(Method::POST, "/products", Some(course(&t, "priced", price.clone()))).await;
        assert_eq!(r.status, 422, "price {price}: {}", r.text);
        r.assert_invalid("price");
        patch_product(&app, first, json!({ "price": price })).await.assert_invalid("price");
    }
    // Two decimals are fine, and are kept exactly.
    let priced = create_product(&app, course(&t, "priced", json!(19.99))).await;
    let shown = app.admin(Method::GET, &format!("/products/{priced}"), None).await;
    assert_eq!(shown.status, 200, "{}", shown.text);
    let admin_view = &shown.body["data"]["product"];
    assert_eq!(
        (admin_view["id"].clone(), admin_view["slug"].clone(), num(&admin_view["price"]), admin_view["type"].clone(), admin_view["published"].clone()),
        (json!(priced), json!(format!("priced-{t}")), 19.99, json!(COURSE), json!(true)),
        "{}",
        shown.text
    );

    let empty = patch_product(&app, first, json!({})).await;
    empty.assert_invalid("payload");
    let r = patch_product(&app, priced, json!({"slug": format!("taken-{t}")})).await;
    assert_eq!(r.body["errors"]["slug"][0], "The slug has already been taken.", "{}", r.text);

    for (method, path, body) in [
        (Method::GET, "/products/999999999".to_string(), None),
        (Method::PATCH, "/products/999999999".to_string(), Some(json!({"title": "x"}))),
        (Method::POST, "/products/999999999/coupons".to_string(), Some(json!({"tier": "low", "code": "X", "percent_off": 10}))),
    ] {
        let r = app.admin(method.clone(), &path, body).await;
        assert_eq!(r.status, 404, "{method} {path}: {}", r.text);
        r.assert_failure(404, "not_found");
    }
}

trait Tap {
    fn tap_slug(self, slug: &str) -> Value;
    fn tap_children(self, children: Value) -> Value;
}

impl Tap for Value {
    fn tap_slug(self, slug: &str) -> Value {
        with(self, json!({ "slug": slug }))
    }
    fn tap_children(self, children: Value) -> Value {
        with(self, json!({ "bundle_product_ids": children }))
    }
}

#[actix_web::test]
async fn coupons_are_validated() {
    let app = spawn_app().await;
    let t = tag();
    let c = create_product(&app, course(&t, "coupon-course", json!(50))).await;
    let b = create_product(&app, bundle(&t, "coupon-bundle", json!(50), &[c])).await;
    let ok = json!({"tier": "low", "code": format!("OK-{t}"), "percent_off": 10, "expires_at": FUTURE});

    for tier in [json!("ultra"), json!("LOWEST"), json!(null)] {
        add_coupon(&app, c, with(ok.clone(), json!({ "tier": tier }))).await.assert_invalid("tier");
    }
    for pct in [json!(0), json!(101), json!(-5), json!(100.5)] {
        let r = add_coupon(&app, c, with(ok.clone(), json!({ "percent_off": pct }))).await;
        assert_eq!(r.status, 422, "percent_off {pct}: {}", r.text);
        r.assert_invalid("percent_off");
    }
    let r = add_coupon(&app, b, ok.clone()).await;
    r.assert_failure(422, "validation_failed");

    let r = add_coupon(&app, c, ok.clone()).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let coupon = &r.body["data"]["coupon"];
    assert_eq!((coupon["tier"].clone(), coupon["code"].clone(), num(&coupon["percent_off"])), (json!("low"), json!(format!("OK-{t}")), 10.0), "{}", r.text);
    let at = coupon["expires_at"].as_str().unwrap_or_else(|| panic!("expires_at in {}", r.text));
    assert_eq!(chrono::DateTime::parse_from_rfc3339(at).unwrap().to_utc(), chrono::DateTime::parse_from_rfc3339(FUTURE).unwrap().to_utc());
    let r = add_coupon(&app, c, json!({"tier": "high", "code": format!("HUNDRED-{t}"), "percent_off": 100})).await;
    assert_eq!(r.status, 201, "100% is allowed: {}", r.text);
}

#[actix_web::test]
async fn exchange_rates_are_validated_and_read_back() {
    let app = spawn_app().await;
    // The one rate table of this module (rates are global on the shared real store); it
    // differs from the defaults (GBP 0.79, INR 83.00, BGN 1.80).
    let set = test_rates();
    let r = app.admin(Method::PUT, "/exchange-rates", Some(json!({ "rates": set }))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_same(&r.body["data"]["rates"], &set, "PUT answer");
    let g = app.admin(Method::GET, "/exchange-rates", None).await;
    assert_eq!(g.status, 200, "{}", g.text);
    assert_same(&g.body["data"]["rates"], &set, "GET after PUT");

    for (rates, currency) in [
        (json!({"JPY": 150}), "JPY"),
        (json!({"EUR": 0}), "EUR"),
        (json!({"EUR": -1}), "EUR"),
        (json!({"EUR": 0.5, "XXX": 2}), "XXX"),
        (json!({"GBP": 0.5, "BGN": -0.1}), "BGN"),
    ] {
        let r = app.admin(Method::PUT, "/exchange-rates", Some(json!({ "rates": rates }))).await;
        r.assert_failure(422, "validation_failed");
        let errors = r.body["errors"].as_object().unwrap_or_else(|| panic!("errors in {}", r.text));
        assert!(errors.keys().any(|k| k.contains(currency)), "errors name {currency}: {}", r.text);
    }
    for body in [json!({}), json!({"rates": {}})] {
        app.admin(Method::PUT, "/exchange-rates", Some(body)).await.assert_failure(422, "validation_failed");
    }
    // A refused update changes nothing.
    let g = app.admin(Method::GET, "/exchange-rates", None).await;
    assert_same(&g.body["data"]["rates"], &set, "GET after refused updates");
    let r = app.send(app.client.get(app.url("/admin/v1/exchange-rates"))).await;
    assert_eq!(r.status, 401, "{}", r.text);
}

// ---------------------------------------------------------------------------------------
// 9. Changes are visible at once and go on the bus

#[actix_web::test]
async fn admin_changes_show_at_once_and_are_published_on_the_bus() {
    use hissaback_topics::events::{ContentChange, ProductChanged};
    let app = spawn_app().await;
    let p = app.partner(Some(&["products.list", "products.view"])).await;
    let t = tag();
    let cat_id = create_category(&app, &format!("Cloud {t}"), &format!("cloud-{t}")).await;
    let x = create_product(&app, with(course(&t, "live-x", json!(40)), json!({"category_slug": format!("cloud-{t}")}))).await;
    let y = create_product(&app, with(course(&t, "live-y", json!(30)), json!({"category_slug": format!("cloud-{t}"), "published": false}))).await;
    let mine = |pairs: &[(&str, &str)]| {
        let mut q = vec![("search", t.as_str())];
        q.extend_from_slice(pairs);
        let q: Vec<(String, String)> = q.into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let (app, key) = (&app, p.key.clone());
        async move {
            let q: Vec<(&str, &str)> = q.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            products(app, &key, &q).await
        }
    };

    assert_eq!(ids(&mine(&[]).await), vec![x], "an unpublished product is not listed");
    one_product(&app, &p.key, y, &[]).await.assert_error(404, "Product not found.", "not_found");

    // Publish via PATCH.
    let r = patch_product(&app, y, json!({"published": true})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["data"]["product"]["published"], json!(true), "{}", r.text);
    assert_eq!(ids(&mine(&[]).await), vec![y, x], "published at once, still ordered by creation");
    single(&one_product(&app, &p.key, y, &[]).await);

    // Price change of a published product.
    let r = patch_product(&app, x, json!({"price": 50.25, "title": format!("live-x renamed {t}")})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let e = entry(&mine(&[]).await, x);
    assert_eq!((num(&e["price"]), e["title"].clone()), (50.25, json!(format!("live-x renamed {t}"))), "{e}");

    // Category rename shows on the product and in search.
    let r = app.admin(Method::PATCH, &format!("/categories/{cat_id}"), Some(json!({"name": format!("Stratus {t}")}))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let e = entry(&mine(&[]).await, y);
    assert_eq!(e["category"], json!({"name": format!("Stratus {t}"), "slug": format!("cloud-{t}")}), "{e}");
    assert_eq!(ids(&mine(&[("search", &format!("stratus {t}"))]).await), vec![y, x], "search by the new category name");

    // A bundle follows its children.
    let z = create_product(&app, bundle(&t, "live-z", json!(60), &[x, y])).await;
    let children = |r: Value| -> Vec<Value> { r["bundle_products"].as_array().unwrap().iter().map(|c| c["id"].clone()).collect() };
    assert_eq!(children(single(&one_product(&app, &p.key, z, &[]).await)), vec![json!(x), json!(y)]);

    // Unpublish via PATCH.
    let r = patch_product(&app, x, json!({"published": false})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(ids(&mine(&[]).await), vec![z, y], "unpublished at once");
    one_product(&app, &p.key, x, &[]).await.assert_error(404, "Product not found.", "not_found");
    assert_eq!(children(single(&one_product(&app, &p.key, z, &[]).await)), vec![json!(y)], "an unpublished child leaves its bundle");
    // A change to an unpublished product publishes nothing and shows nothing.
    assert_eq!(patch_product(&app, x, json!({"price": 55})).await.status, 200);
    assert_eq!(ids(&mine(&[]).await), vec![z, y]);

    let promotion = create_promotion(
        &app,
        json!({"title": format!("Live {t}"), "text": "Bundles", "type": "Bundle Promotion", "percentage_off": 5, "bundle_ids": [z]}),
    )
    .await;

    // The events, in order per product, decoded from the topic.
    let expected_x = vec![
        ContentChange::ProductPublished { product_id: x },
        ContentChange::ProductUpdated { product_id: x },
        ContentChange::ProductUnpublished { product_id: x },
    ];
    let expected_y = vec![ContentChange::ProductPublished { product_id: y }];
    let expected_z = vec![ContentChange::ProductPublished { product_id: z }];
    let expected_promotion = vec![ContentChange::PromotionCreated { promotion_id: promotion }];
    let mut sub = app.state.bus.subscribe("product-changes", &format!("catalogue-test-{t}")).await.expect("subscribing to product-changes");
    let (mut got_x, mut got_y, mut got_z, mut got_promotion) = (vec![], vec![], vec![], vec![]);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let done = |x: &Vec<ContentChange>, y: &Vec<ContentChange>, z: &Vec<ContentChange>, pr: &Vec<ContentChange>| {
        x.len() >= expected_x.len() && y.len() >= expected_y.len() && z.len() >= expected_z.len() && pr.len() >= expected_promotion.len()
    };
    while !done(&got_x, &got_y, &got_z, &got_promotion) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        assert!(
            !left.is_zero(),
            "timed out waiting for product-changes events; got x={got_x:?} y={got_y:?} z={got_z:?} promotion={got_promotion:?}"
        );
        match actix_web::rt::time::timeout(left, sub.next()).await {
            Err(_) => continue,
            Ok(Err(e)) => {
                eprintln!("product-changes subscription: {e}");
                actix_web::rt::time::sleep(Duration::from_millis(200)).await;
            }
            Ok(Ok(delivery)) => {
                let event = hissaback_topics::decode::<ProductChanged>(&delivery.payload)
                    .unwrap_or_else(|e| panic!("undecodable product-changes event at offset {}: {e}", delivery.offset));
                assert!(event.occurred_at_ms > 0, "{event:?}");
                match &event.change {
                    ContentChange::ProductPublished { product_id }
                    | ContentChange::ProductUpdated { product_id }
                    | ContentChange::ProductUnpublished { product_id } => {
                        if *product_id == x {
                            got_x.push(event.change.clone());
                        } else if *product_id == y {
                            got_y.push(event.change.clone());
                        } else if *product_id == z {
                            got_z.push(event.change.clone());
                        }
                    }
                    ContentChange::PromotionCreated { promotion_id } if *promotion_id == promotion => got_promotion.push(event.change.clone()),
                    _ => {}
                }
            }
        }
    }
    assert_eq!(got_x, expected_x, "events of the product created published, changed, unpublished, changed");
    assert_eq!(got_y, expected_y, "events of the product created unpublished, then published");
    assert_eq!(got_z, expected_z, "events of the bundle created published");
    assert_eq!(got_promotion, expected_promotion, "the promotion's event");
}
