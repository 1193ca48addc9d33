//! Rate limits: each key's plan with the `X-RateLimit-*` and IETF `RateLimit` headers, 429
//! with `Retry-After` in the envelope, per-key overrides, and failed authentications limited
//! per client address.

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
    let blocked = app.get_with_key("/api/v1/test", "hb_sk_wrong").await;
    blocked.assert_error(429, "Too many failed authentications; retry later.", "rate_limited");
    assert!(blocked.headers["retry-after"].to_str().unwrap().parse::<u64>().unwrap() >= 1);
    // While blocked, even a valid key from the address is refused, so guesses reveal nothing.
    app.get_with_key("/api/v1/test", &p.key).await.assert_error(429, "Too many failed authentications; retry later.", "rate_limited");
    assert!(app.get("/metrics").await.text.contains("hissaback_rate_limited_total{kind=\"auth_failures\"}"));
}
