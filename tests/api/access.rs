//! Access (issue 13): failed authentications are counted per address and presented
//! credential prefix and only ever refuse further failures, never a valid credential; the
//! client address is the peer, or what a trusted proxy forwarded.

use crate::helpers::{spawn_app_with, Answer, TestApp, ADMIN_TOKEN};
use serde_json::Value;
use std::time::Duration;

const TOO_MANY: &str = "Too many failed authentications; retry later.";

fn wrong_key(prefix: &str, n: u32) -> String {
    // Well-formed secret keys that do not exist; `prefix` (8 characters) picks the bucket.
    format!("hb_sk_{prefix}{:032}", n)
}

async fn postback(app: &TestApp, token: &str, txn: &str, click: &str) -> Answer {
    let q = format!("token={token}&click_id={click}&txn_id={txn}&payout=1.00&currency=USD&status=pending");
    app.send(app.client.get(app.url(&format!("/v1/postbacks?{q}")))).await
}

#[actix_web::test]
async fn others_failures_at_an_address_never_refuse_a_valid_credential() {
    let app = spawn_app_with(|s| s.auth.failures_per_minute = 30).await;
    let flow = crate::flow::set_up(&app.address, ADMIN_TOKEN, 1).await;
    let p = app.partner(None).await;
    // 31 wrong keys from this address: the last ones are answered 429.
    let mut statuses = Vec::new();
    for n in 0..31 {
        statuses.push(app.ping(&wrong_key("Guessing", n)).await.status);
    }
    assert_eq!(statuses.iter().filter(|s| **s == 401).count(), 30, "{statuses:?}");
    app.ping(&wrong_key("Guessing", 99)).await.assert_error(429, TOO_MANY, "rate_limited");
    // Everyone with a valid credential at the same address goes on working.
    assert_eq!(app.ping(&p.key).await.status, 200, "a valid key");
    assert_eq!(app.admin(reqwest::Method::GET, &format!("/affiliates/{}", p.affiliate_id), None).await.status, 200, "the admin token");
    let r = postback(&app, &flow.token, "access-1", &flow.clicks[0]).await;
    assert_eq!(r.status, 200, "a network's postback: {}", r.text);
    // Wrong admin tokens and postback tokens are refused on their own count.
    let wrong_admin = app.send(app.client.get(app.url("/admin/v1/affiliates/1")).bearer_auth("not-the-admin-token")).await;
    assert_eq!(wrong_admin.status, 401, "{}", wrong_admin.text);
}

#[actix_web::test]
async fn failures_are_counted_per_credential_prefix_and_per_address() {
    let app = spawn_app_with(|s| s.auth.failures_per_minute = 3).await;
    for n in 0..3 {
        app.ping(&wrong_key("AAAAAAAA", n)).await.assert_error(401, "API key is invalid.", "unauthenticated");
    }
    let blocked = app.ping(&wrong_key("AAAAAAAA", 3)).await;
    blocked.assert_error(429, TOO_MANY, "rate_limited");
    assert!(blocked.headers.get("retry-after").is_some(), "429 carries Retry-After");
    // Another prefix from the same address has its own allowance...
    app.ping(&wrong_key("BBBBBBBB", 0)).await.assert_error(401, "API key is invalid.", "unauthenticated");
    // ...up to the address's allowance as a whole (10 times one prefix's).
    let mut refused_at = None;
    for n in 0..40u32 {
        let prefix = format!("C{n:07}");
        if app.ping(&wrong_key(&prefix, 0)).await.status == 429 {
            refused_at = Some(n);
            break;
        }
    }
    let refused_at = refused_at.expect("the address as a whole is limited");
    assert!((20..=30).contains(&refused_at), "refused after {refused_at} more prefixes");
}

/// `X-Forwarded-For` counts only from a configured trusted proxy: then the forwarded client
/// is what the audit log records and what failures are counted against.
#[actix_web::test]
async fn forwarded_addresses_are_believed_only_from_trusted_proxies() {
    for trusted in [false, true] {
        let app = spawn_app_with(|s| {
            s.usage.flush_ms = 50;
            s.auth.failures_per_minute = 2;
            if trusted {
                s.server.trusted_proxies = vec!["127.0.0.0/8".into()];
            }
        })
        .await;
        let p = app.partner(None).await;
        let as_client = |client: &str, key: &str| {
            app.send(app.client.get(app.url("/api/v1/test")).bearer_auth(key).header("X-Forwarded-For", format!("{client}, 127.0.0.1")))
        };
        assert_eq!(as_client("198.51.100.7", &p.key).await.status, 200);
        // Failures of two forwarded clients: separate when trusted, one address when not.
        for n in 0..2 {
            assert_eq!(as_client("198.51.100.8", &wrong_key("Forwardd", n)).await.status, 401);
        }
        let other = as_client("198.51.100.9", &wrong_key("Forwardd", 9)).await;
        assert_eq!(other.status, if trusted { 401 } else { 429 }, "trusted={trusted}: {}", other.text);
        // The audit row names the forwarded client only when the proxy is trusted.
        let want = if trusted { "198.51.100.7" } else { "127.0.0.1" };
        let mut seen = Value::Null;
        for _ in 0..100 {
            let r = app.get_with_key("/v1/audit", &p.key).await;
            assert_eq!(r.status, 200, "{}", r.text);
            let ok = r.body["data"]["entries"].as_array().unwrap().iter().find(|e| e["route"] == "/api/v1/test" && e["status"] == 200).cloned();
            if let Some(row) = ok {
                seen = row;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(seen["client_ip"], want, "trusted={trusted}: {seen}");
    }
}

/// Clicks beyond the per-address and per-link limits still redirect (no link breaks) but are
/// not recorded, and are counted as refused.
#[actix_web::test]
async fn clicks_beyond_their_limits_redirect_but_are_not_recorded() {
    use crate::partner::{catalogue, post, tag};
    let app = spawn_app_with(|s| {
        s.usage.flush_ms = 50;
        s.server.trusted_proxies = vec!["127.0.0.0/8".into()];
        s.partner.click_rate_limit_per_address = hissaback::configuration::RatePlanSettings { per_minute: 1, burst: 3 };
        s.partner.click_rate_limit_per_link = hissaback::configuration::RatePlanSettings { per_minute: 1, burst: 8 };
    })
    .await;
    let t = tag();
    let (_, card, _) = catalogue(&app, &t).await;
    let p = app.partner(None).await;
    let campaign = post(&app, &p.key, "/v1/campaigns", serde_json::json!({"offer_id": card, "share_pct": 40, "tenant_id": "site"})).await;
    let campaign_id = campaign.body["data"]["campaign"]["campaign_id"].as_u64().unwrap();
    let link = post(&app, &p.key, "/v1/links", serde_json::json!({"campaign_id": campaign_id})).await;
    let code = link.body["data"]["link"]["code"].as_str().unwrap().to_string();
    let click_from = |addr: String| {
        let req = app.client.get(app.url(&format!("/r/{code}?uid=u"))).header("X-Forwarded-For", addr);
        async move { req.send().await.unwrap() }
    };
    // One address: 5 clicks, 3 recorded. Then 7 more addresses: the link's 8 fill up.
    for n in 0..5 {
        let r = click_from("198.51.100.1".into()).await;
        assert_eq!(r.status(), 302, "click {n}");
        assert!(r.headers()["location"].to_str().unwrap().contains("click="), "the redirect is served");
    }
    for n in 2..=8 {
        assert_eq!(click_from(format!("198.51.100.{n}")).await.status(), 302);
    }
    let mut recorded = Value::Null;
    for _ in 0..100 {
        recorded = app.get_with_key(&format!("/v1/stats/campaigns?campaign_id={campaign_id}"), &p.key).await.body["data"]["totals"]["clicks"].clone();
        if recorded == 8 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(recorded, 8, "3 from the first address, then 5 more until the link's 8");
    let metrics = app.get("/metrics").await.text;
    let refused = |kind: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(&format!("hissaback_rate_limited_total{{kind=\"{kind}\"}}")))
            .and_then(|l| l.rsplit(' ').next())
            .map(|v| v.parse::<u64>().unwrap())
    };
    assert_eq!(refused("click_address"), Some(2), "{metrics}");
    assert_eq!(refused("click_link"), Some(2), "{metrics}");
}
