//! Hostile and concurrent input found by a black-box audit: each case answers in the
//! envelope, quickly, and keeps one tenant's data away from another.

use crate::blogs::{blog_body, blogger, create_blog, post, tag};
use crate::helpers::spawn_app;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

#[actix_web::test]
async fn deeply_nested_content_is_refused_before_it_is_parsed() {
    let app = spawn_app().await;
    let p = blogger(&app).await;
    let mut body = blog_body(&app, &p).await;
    body["content"] = json!("<div>".repeat(150_000));
    let started = Instant::now();
    let r = post(&app, "/blogs", &p.key, body).await;
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    assert_eq!(r.status, 422, "{}", r.text);
    assert!(r.body["errors"]["content"][0].as_str().unwrap().contains("nest"), "{}", r.text);
    // The service still answers.
    assert_eq!(app.get("/healthz").await.status, 200);
}

#[actix_web::test]
async fn scripts_in_unclosed_tags_are_refused() {
    let app = spawn_app().await;
    let p = blogger(&app).await;
    for content in ["<p>Hi</p><img src=x onerror=alert(1)// ", "<svg/onload=alert(1)", "<a href=\"javascript:alert(1)\"", "<script"] {
        let mut body = blog_body(&app, &p).await;
        body["content"] = json!(content);
        let r = post(&app, "/blogs", &p.key, body).await;
        assert_eq!(r.status, 422, "{content}: {}", r.text);
        assert_eq!(r.body["errors"]["content"][0], "The content field must not contain scripts.");
    }
}

#[actix_web::test]
async fn a_blog_review_reaches_only_its_authors_webhooks() {
    let app = spawn_app().await;
    let (url, got) = crate::webhook_smoke::receiver().await;
    let author = blogger(&app).await;
    let other = blogger(&app).await;
    for p in [&author, &other] {
        let w = post(&app, "/webhooks", &p.key, json!({"event": "blog.published", "url": format!("{url}?a={}", p.affiliate_id)})).await;
        assert_eq!(w.status, 201, "{}", w.text);
    }
    let blog = create_blog(&app, &author).await;
    let id = blog["id"].as_u64().unwrap();
    assert_eq!(app.admin(Method::POST, &format!("/blogs/{id}/publish"), None).await.status, 200);
    for _ in 0..100 {
        if got.lock().unwrap().iter().any(|(b, _)| b["blog"]["id"] == json!(id)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mine: Vec<Value> = got.lock().unwrap().iter().map(|(b, _)| b.clone()).filter(|b| b["blog"]["id"] == json!(id)).collect();
    assert_eq!(mine.len(), 1, "exactly one delivery, to the author: {mine:?}");
    let hooks = app.get_with_key("/api/v1/webhooks", &author.key).await;
    assert_eq!(mine[0]["webhook_id"], hooks.body["data"]["webhooks"][0]["id"]);
}

#[actix_web::test]
async fn amounts_too_large_to_price_are_refused() {
    let app = spawn_app().await;
    let t = tag();
    let r = app
        .admin(Method::POST, "/products", Some(json!({"title": "Huge", "slug": format!("huge-{t}"), "price": 9999999999999999999u64, "type": "App\\Models\\Course"})))
        .await;
    assert_eq!(r.status, 422, "{}", r.text);
    assert!(r.body["errors"]["price"].is_array());
    let rates = app.admin(Method::PUT, "/exchange-rates", Some(json!({"rates": {"INR": 100000000000u64}}))).await;
    assert_eq!(rates.status, 422, "{}", rates.text);
}

#[actix_web::test]
async fn concurrent_duplicates_make_one_webhook_and_one_rotation() {
    let app = spawn_app().await;
    let p = app.partner(None).await;
    let url = format!("https://race-{}.example.com/x", tag());
    let creates = (0..20).map(|_| post(&app, "/webhooks", &p.key, json!({"event": "product.published", "url": url})));
    let answers = futures_util::future::join_all(creates).await;
    assert_eq!(answers.iter().filter(|a| a.status == 201).count(), 1);
    assert!(answers.iter().all(|a| a.status == 201 || a.status == 422));
    // Deleting frees the URL again.
    let id = app.get_with_key("/api/v1/webhooks", &p.key).await.body["data"]["webhooks"][0]["id"].as_u64().unwrap();
    let del = app.client.delete(app.url(&format!("/api/v1/webhooks/{id}"))).bearer_auth(&p.key).send().await.unwrap();
    assert_eq!(del.status(), 200);
    assert_eq!(post(&app, "/webhooks", &p.key, json!({"event": "product.published", "url": url})).await.status, 201);

    let rotations = (0..10).map(|_| app.rotate_key(p.key_id, Some(json!({"grace_seconds": 60}))));
    let answers = futures_util::future::join_all(rotations).await;
    assert_eq!(answers.iter().filter(|a| a.status == 201).count(), 1, "{:?}", answers.iter().map(|a| a.status).collect::<Vec<_>>());
    assert!(answers.iter().all(|a| a.status == 201 || a.status == 409));
}

#[actix_web::test]
async fn wrong_types_are_explained_without_rust_type_names() {
    let app = spawn_app().await;
    let p = blogger(&app).await;
    let mut body = blog_body(&app, &p).await;
    body["blog_profile_id"] = json!("1");
    body["title"] = json!("\u{0}\u{0}");
    let r = post(&app, "/blogs", &p.key, body).await;
    assert_eq!(r.status, 422, "{}", r.text);
    assert_eq!(r.body["errors"]["blog_profile_id"][0], "The blog profile id field must be a whole number of at least 0.");
    assert_eq!(r.body["errors"]["title"][0], "The title field is required.");
    assert!(!r.text.contains("u64"));
    let k = app.create_key(p.affiliate_id, json!({"rate_limit": {"per_minute": -1, "burst": 5}})).await;
    assert_eq!(k.status, 422);
    assert_eq!(k.body["errors"]["rate_limit.per_minute"].as_array().unwrap().len(), 1, "{}", k.text);
}

/// The postback parameter parser, black-box (its `params` is private to the route): any
/// query string, form body or JSON body answers in the envelope and never a 5xx; repeated
/// keys are read consistently (the last in the query wins; the body wins over the query).
#[actix_web::test]
async fn postback_parameters_of_any_shape_never_answer_a_server_error() {
    use proptest::prelude::*;
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
    let app = spawn_app().await;
    let n = app.admin(Method::POST, "/networks", Some(json!({"name": format!("Fuzz {}", tag())}))).await;
    assert_eq!(n.status, 201, "{}", n.text);
    let token = n.body["data"]["network"]["postback_token"].as_str().unwrap().to_string();
    let postback = |query: String, body: Option<(&'static str, Vec<u8>)>| {
        let url = app.url(&format!("/v1/postbacks?{query}"));
        let req = match body {
            None => app.client.get(url),
            Some((ct, bytes)) => app.client.post(url).header("content-type", ct).body(bytes),
        };
        app.send(req)
    };
    // Raw bytes, percent-encoded where a URL needs it, with the token in front.
    let names = proptest::sample::select(vec!["click_id", "txn_id", "payout", "commission", "currency", "status", "goal", "x"]);
    let text = proptest::collection::vec(any::<char>(), 0..24).prop_map(|c| c.into_iter().collect::<String>());
    let pairs = proptest::collection::vec((names, text), 0..10);
    let raw = proptest::collection::vec(any::<u8>(), 0..120);
    let mut runner = TestRunner::new_with_rng(Config::default(), TestRng::from_seed(RngAlgorithm::ChaCha, &[13; 32]));
    for case in 0..120 {
        let pairs = pairs.new_tree(&mut runner).unwrap().current();
        let raw = raw.new_tree(&mut runner).unwrap().current();
        let mut s = url::form_urlencoded::Serializer::new(String::new());
        s.append_pair("token", &token);
        for (k, v) in &pairs {
            s.append_pair(k, v);
        }
        let encoded = s.finish();
        let escaped: String = raw.iter().map(|b| if b.is_ascii_alphanumeric() || b"=&+%-_.".contains(b) { (*b as char).to_string() } else { format!("%{b:02X}") }).collect();
        let json_body: serde_json::Map<String, Value> = pairs.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
        for (what, r) in [
            ("query", postback(encoded.clone(), None).await),
            ("raw query", postback(format!("token={token}&{escaped}"), None).await),
            ("form", postback(format!("token={token}"), Some(("application/x-www-form-urlencoded", encoded.clone().into_bytes()))).await),
            ("raw form", postback(format!("token={token}"), Some(("application/x-www-form-urlencoded", raw.clone()))).await),
            ("json", postback(format!("token={token}"), Some(("application/json", serde_json::to_vec(&json_body).unwrap()))).await),
            ("raw json", postback(format!("token={token}"), Some(("application/json", raw.clone()))).await),
        ] {
            assert!(r.status < 500, "case {case} {what}: {pairs:?} / {raw:?} answered {}: {}", r.status, r.text);
            assert_eq!(r.body["success"], json!(false), "case {case} {what}: {}", r.text);
            assert!(r.body["code"].is_string() && r.body["message"].is_string(), "case {case} {what}: {}", r.text);
        }
    }
    // Repeated keys: the last in the query wins, and the body wins over the query.
    let base = format!("token={token}&click_id=nope&txn_id=t1&payout=1");
    let errors = |r: &crate::helpers::Answer| r.body["errors"].as_object().map(|e| e.keys().cloned().collect::<Vec<_>>()).unwrap_or_default();
    let r = postback(format!("{base}&currency=XXX&currency=USD&status=bogus&status=pending"), None).await;
    assert_eq!(r.status, 422, "{}", r.text);
    assert_eq!(errors(&r), vec!["click_id".to_string()], "{}", r.text);
    let r = postback(format!("{base}&currency=USD&currency=XXX&status=pending&status=bogus"), None).await;
    assert_eq!(r.status, 422, "{}", r.text);
    assert!(errors(&r).contains(&"currency".to_string()) && errors(&r).contains(&"status".to_string()), "{}", r.text);
    let form = b"currency=USD&status=pending".to_vec();
    let r = postback(format!("{base}&currency=XXX&status=bogus"), Some(("application/x-www-form-urlencoded", form))).await;
    assert_eq!(errors(&r), vec!["click_id".to_string()], "{}", r.text);
    let r = postback(format!("{base}&currency=XXX&status=bogus"), Some(("application/json", br#"{"currency":"USD","status":"pending"}"#.to_vec()))).await;
    assert_eq!(errors(&r), vec!["click_id".to_string()], "{}", r.text);
}
