//! Rate limits: each key's plan with the `X-RateLimit-*` and IETF `RateLimit` headers, 429
//! with `Retry-After` in the envelope, per-key overrides, and failed authentications limited
//! per client address and presented credential prefix (valid credentials always pass).

use crate::helpers::{spawn_app, spawn_app_with};
use serde_json::json;

#[actix_web::test]
async fn a_key_gets_its_burst_with_headers_counting_down_then_429() {
    let app = spawn_app().await;
    let p = app.partner(None).await;
    let k = app.create_key(p.affiliate_id, json!({"rate_limit": {"per_minute": 60, "burst": 5}})).await;
    let key = k.body["data"]["key"]["key"].as_str().unwrap().to_string();
    let mut remaining = Vec::new();
    for _ in 0..5 {
        let r = app.get_with_key("/api/v1/test", &key).await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.headers["x-ratelimit-limit"], "60");
        assert_eq!(r.headers["ratelimit-policy"], "60;w=60;burst=5");
        remaining.push(r.headers["x-ratelimit-remaining"].to_str().unwrap().parse::<u32>().unwrap());
        assert!(r.headers["ratelimit"].to_str().unwrap().starts_with("limit=60, remaining="));
    }
    assert_eq!(remaining, vec![4, 3, 2, 1, 0]);
    let refused = app.get_with_key("/api/v1/test", &key).await;
    refused.assert_error(429, "Rate limit exceeded.", "rate_limited");
    assert_eq!(refused.headers["retry-after"], "1");
    assert_eq!(refused.headers["x-ratelimit-remaining"], "0");
    // A wrong URL takes from the same bucket: no way around the limit.
    app.get_with_key("/api/v1/no-such-route", &key).await.assert_error(429, "Rate limit exceeded.", "rate_limited");
    // Another key of the same affiliate has its own bucket, with the default plan.
    let other = app.get_with_key("/api/v1/test", &p.key).await;
    assert_eq!(other.status, 200);
    assert_eq!(other.headers["x-ratelimit-limit"], "300");
    assert_eq!(other.headers["ratelimit-policy"], "300;w=60;burst=1000");
}

#[actix_web::test]
async fn failed_authentications_are_limited_per_address() {
    let app = spawn_app_with(|s| s.auth.failures_per_minute = 5).await;
    let p = app.partner(None).await;
    for _ in 0..5 {
        app.get_with_key("/api/v1/test", &format!("hb_sk_{}", "x".repeat(40))).await.assert_error(401, "API key is invalid.", "unauthenticated");
    }
    let blocked = app.get_with_key("/api/v1/test", &format!("hb_sk_{}", "x".repeat(40))).await;
    blocked.assert_error(429, "Too many failed authentications; retry later.", "rate_limited");
    assert!(blocked.headers["retry-after"].to_str().unwrap().parse::<u64>().unwrap() >= 1);
    // A valid key from the address is never refused for others' failures (issue 13: behind
    // a load balancer every caller shares one address).
    assert_eq!(app.get_with_key("/api/v1/test", &p.key).await.status, 200);
    assert!(app.get("/metrics").await.text.contains("hissaback_rate_limited_total{kind=\"auth_failures\"}"));
}

/// The default plan (300 per minute, burst 1,000): the burst is spent, then only the
/// minute's rate refills the bucket (one request every 200 ms), with headers saying so.
#[actix_web::test]
async fn the_default_plan_allows_the_burst_then_300_per_minute() {
    let app = spawn_app().await;
    let p = app.partner(None).await;
    let started = std::time::Instant::now();
    let mut allowed = 0u32;
    let refused = loop {
        let r = app.get_with_key("/api/v1/test", &p.key).await;
        if r.status != 200 {
            break r;
        }
        allowed += 1;
        assert!(allowed <= 2000, "the bucket never ran dry");
    };
    let elapsed = started.elapsed().as_secs_f64();
    // The burst, plus what refilled while it was being spent (5 per second), and no more.
    let ceiling = 1000 + (elapsed * 5.0).ceil() as u32 + 1;
    assert!((1000..=ceiling).contains(&allowed), "{allowed} allowed in {elapsed:.2}s (ceiling {ceiling})");
    refused.assert_error(429, "Rate limit exceeded.", "rate_limited");
    assert_eq!(refused.headers["retry-after"], "1");
    assert_eq!(refused.headers["x-ratelimit-limit"], "300");
    assert_eq!(refused.headers["x-ratelimit-remaining"], "0");
    assert_eq!(refused.headers["x-ratelimit-reset"], "200", "a whole burst takes 200 s to refill");
    assert_eq!(refused.headers["ratelimit-policy"], "300;w=60;burst=1000");
    assert_eq!(refused.headers["ratelimit"], "limit=300, remaining=0, reset=200");
    // A second later about five more are let through (one per 200 ms), then 429 again.
    tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
    let mut again = 0;
    while app.get_with_key("/api/v1/test", &p.key).await.status == 200 {
        again += 1;
        assert!(again <= 10, "the rate after the burst is 300 per minute");
    }
    assert!((4..=7).contains(&again), "{again} allowed one second after the burst was spent");
}

#[actix_web::test]
async fn wrong_admin_tokens_are_limited_per_address_too() {
    let app = spawn_app_with(|s| s.auth.failures_per_minute = 3).await;
    let wrong = |n: u32| app.send(app.client.get(app.url("/admin/v1/audit")).bearer_auth(format!("hb_admin_wrong_guess_{n}")));
    for n in 0..3 {
        wrong(n).await.assert_error(401, "Admin token is invalid.", "unauthenticated");
    }
    let blocked = wrong(3).await;
    blocked.assert_error(429, "Too many failed authentications; retry later.", "rate_limited");
    assert!(blocked.headers["retry-after"].to_str().unwrap().parse::<u64>().unwrap() >= 1);
    // The right token is never refused for the failures of others at its address.
    assert_eq!(app.admin(reqwest::Method::GET, "/audit", None).await.status, 200);
}
