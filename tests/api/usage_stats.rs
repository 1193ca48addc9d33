//! Usage counters, the audit log and partner stats, checked against the traffic each test
//! sends: `/v1/stats/usage`, `/v1/audit`, `/admin/v1/audit`, `/v1/stats/campaigns`,
//! `/v1/stats/payouts`; and per-network postback limits.

use crate::helpers::{spawn_app_with, Answer, TestApp};
use crate::partner::{catalogue, click, post, postback, tag};
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;

/// An app whose usage recorder flushes every 50 ms.
async fn app() -> TestApp {
    spawn_app_with(|s| s.usage.flush_ms = 50).await
}

/// Polls `path` with `key` until `ok` holds, answering the last body.
async fn until(app: &TestApp, key: &str, path: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    for _ in 0..200 {
        let r = app.get_with_key(path, key).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text);
        last = r.body;
        if ok(&last) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{path}: condition not reached; last answer {last}");
}

async fn key_of(app: &TestApp, affiliate_id: u64, body: Value) -> (u64, String) {
    let k = app.create_key(affiliate_id, body).await;
    assert_eq!(k.status, 201, "{}", k.text);
    (k.body["data"]["key"]["id"].as_u64().unwrap(), k.body["data"]["key"]["key"].as_str().unwrap().to_string())
}

#[actix_web::test]
async fn usage_stats_count_requests_errors_and_rejections_per_key_route_and_period() {
    let app = app().await;
    let p = app.partner(None).await;
    let (limited_id, limited) = key_of(&app, p.affiliate_id, json!({"rate_limit": {"per_minute": 60, "burst": 2}})).await;
    // Stats are read with a third key, so the polling itself is counted apart.
    let (_, reader) = key_of(&app, p.affiliate_id, json!({})).await;
    for _ in 0..3 {
        assert_eq!(app.get_with_key("/api/v1/test", &p.key).await.status, 200);
    }
    app.get_with_key("/api/v1/products/987654321", &p.key).await.assert_failure(404, "not_found");
    // A wrong URL with a valid key is still the key's request (and its error).
    app.get_with_key("/api/v1/no-such-route", &p.key).await.assert_error(404, "Route not found.", "not_found");
    assert_eq!(app.get_with_key("/api/v1/test", &limited).await.status, 200);
    assert_eq!(app.get_with_key("/api/v1/test", &limited).await.status, 200);
    app.get_with_key("/api/v1/test", &limited).await.assert_error(429, "Rate limit exceeded.", "rate_limited");

    let path = format!("/v1/stats/usage?granularity=minute&key_id={}", p.key_id);
    let body = until(&app, &reader, &path, |v| v["data"]["totals"]["requests"] == json!(5)).await;
    let d = &body["data"];
    assert_eq!(d["granularity"], "minute");
    assert_eq!(d["key_id"], json!(p.key_id));
    assert_eq!(
        d["totals"],
        json!({"requests": 5, "errors": {"total": 2, "4xx": 2, "5xx": 0}, "error_rate": 40, "rate_limited": 0,
               "by_status_class": {"2xx": 3, "3xx": 0, "4xx": 2, "5xx": 0}})
    );
    let series = d["series"].as_array().unwrap();
    assert_eq!(series.len(), 60, "the last 60 minutes, one entry each");
    assert_eq!(series.iter().map(|s| s["requests"].as_u64().unwrap()).sum::<u64>(), 5);
    assert!(series[0]["period"].as_str().unwrap().ends_with(":00.000000Z"));
    let routes: Vec<(String, u64)> =
        d["routes"].as_array().unwrap().iter().map(|r| (r["route"].as_str().unwrap().to_string(), r["requests"].as_u64().unwrap())).collect();
    assert_eq!(
        routes,
        vec![("/api/v1/test".to_string(), 3), ("/api/v1/products/{product}".to_string(), 1), ("unmatched".to_string(), 1)]
    );

    let limited_path = format!("/v1/stats/usage?granularity=hour&key_id={limited_id}");
    let body = until(&app, &reader, &limited_path, |v| v["data"]["totals"]["requests"] == json!(3)).await;
    assert_eq!(body["data"]["totals"]["rate_limited"], 1);
    assert_eq!(body["data"]["totals"]["errors"]["4xx"], 1);
    assert_eq!(body["data"]["series"].as_array().unwrap().len(), 24);

    // Every key of the affiliate, per day (the default): the reader's own polls included.
    let all = until(&app, &reader, "/v1/stats/usage", |v| v["data"]["keys"].as_array().is_some_and(|k| k.len() == 3)).await;
    assert_eq!(all["data"]["granularity"], "day");
    assert_eq!(all["data"]["series"].as_array().unwrap().len(), 7);
    let per_key: Vec<u64> = all["data"]["keys"].as_array().unwrap().iter().map(|k| k["key_id"].as_u64().unwrap()).collect();
    assert!(per_key.contains(&p.key_id) && per_key.contains(&limited_id));
    assert!(all["data"]["totals"]["requests"].as_u64().unwrap() >= 8);

    // Another partner sees none of it, and not the first partner's key either.
    let other = app.partner(None).await;
    let theirs = app.get_with_key("/v1/stats/usage", &other.key).await;
    assert_eq!(theirs.body["data"]["totals"]["requests"], 0, "{}", theirs.text);
    app.get_with_key(&format!("/v1/stats/usage?key_id={}", p.key_id), &other.key).await.assert_error(404, "API key not found.", "not_found");

    for (query, field) in [
        ("granularity=week", "granularity"),
        ("from=yesterday", "from"),
        ("to=2026-13-01", "to"),
        ("key_id=abc", "key_id"),
        ("from=2026-01-10&to=2026-01-09", "to"),
        ("granularity=minute&from=2026-01-01&to=2026-01-03", "to"),
        ("granularity=day&from=2025-01-01&to=2026-01-01", "to"),
        // Extreme dates are refused, never overflowed.
        ("to=%2B262142-12-31", "to"),
        ("to=-262143-01-01", "to"),
        ("from=-262143-01-01&to=2026-01-01", "from"),
        ("to=%2B10000-01-01", "to"),
        ("from=1969-12-31", "from"),
    ] {
        app.get_with_key(&format!("/v1/stats/usage?{query}"), &reader).await.assert_invalid(field);
    }
    app.get("/v1/stats/usage").await.assert_error(401, "API key is missing.", "unauthenticated");
    // Only `to`: whole periods ending with it, as many as the default window holds.
    for (query, periods, first) in [
        ("granularity=minute&to=2026-11-23T15:00:00Z", 60, "2026-11-23T14:00:00.000000Z"),
        ("granularity=minute&to=2026-11-23T15:00:30Z", 60, "2026-11-23T14:01:00.000000Z"),
        ("granularity=hour&to=2026-11-23T12:00:00Z", 24, "2026-11-22T12:00:00.000000Z"),
        ("granularity=day&to=2026-11-20", 7, "2026-11-14T00:00:00.000000Z"),
        ("granularity=day&to=9999-12-31", 7, "9999-12-25T00:00:00.000000Z"),
        ("granularity=hour&from=2263-04-11T10:30:00Z&to=2263-04-11T12:00:00Z", 2, "2263-04-11T10:00:00.000000Z"),
    ] {
        let r = app.get_with_key(&format!("/v1/stats/usage?{query}"), &reader).await;
        assert_eq!(r.status, 200, "{query}: {}", r.text);
        let series = r.body["data"]["series"].as_array().unwrap();
        assert_eq!((series.len(), series[0]["period"].as_str().unwrap()), (periods, first), "{query}");
    }
    app.get_with_key("/v1/stats/usage?granularity=hour&to=1970-01-01T00:00:00Z", &reader).await.assert_invalid("to");
    app.get_with_key("/v1/stats/usage?from=9999-01-01", &reader).await.assert_invalid("from");
}

#[actix_web::test]
async fn every_api_call_is_audited_with_who_what_and_how_long() {
    let app = app().await;
    let p = app.partner(None).await;
    let (_, reader) = key_of(&app, p.affiliate_id, json!({})).await;
    let ok = app.client.get(app.url("/api/v1/test")).bearer_auth(&p.key).header("x-request-id", "audit-me-1").send().await.unwrap();
    assert_eq!(ok.headers()["x-request-id"], "audit-me-1");
    // The key in the query string never reaches the audit log.
    let by_query = app.send(app.client.get(app.url("/api/v1/test")).query(&[("api_key", p.key.as_str())]).header("x-request-id", "audit-me-2")).await;
    assert_eq!(by_query.status, 200);
    app.send(app.client.get(app.url("/api/v1/test")).bearer_auth("hb_sk_wrongwrongwrong").header("x-request-id", "audit-anon")).await;
    let created = app.create_affiliate(json!({"name": "Audited", "email": "a@audit.test"})).await;
    let admin_request_id = created.headers["x-request-id"].to_str().unwrap().to_string();

    let today = chrono::Utc::now().date_naive().to_string();
    let body = until(&app, &reader, &format!("/v1/audit?date={today}"), |v| {
        v["data"]["entries"].as_array().is_some_and(|e| e.iter().filter(|r| r["request_id"].as_str().is_some_and(|id| id.starts_with("audit-me"))).count() == 2)
    })
    .await;
    let entries = body["data"]["entries"].as_array().unwrap();
    let row = entries.iter().find(|r| r["request_id"] == "audit-me-1").unwrap();
    assert_eq!(row["actor"], "key");
    assert_eq!(row["affiliate_id"], json!(p.affiliate_id));
    assert_eq!(row["key_id"], json!(p.key_id));
    assert_eq!(row["method"], "GET");
    assert_eq!(row["route"], "/api/v1/test");
    assert_eq!(row["path"], "/api/v1/test");
    assert_eq!(row["status"], 200);
    assert_eq!(row["client_ip"], "127.0.0.1");
    assert!(row["latency_ms"].as_f64().unwrap() > 0.0, "{row}");
    assert!(chrono::DateTime::parse_from_rfc3339(row["at"].as_str().unwrap()).is_ok());
    let queried = entries.iter().find(|r| r["request_id"] == "audit-me-2").unwrap();
    assert_eq!(queried["path"], "/api/v1/test");
    assert!(!body.to_string().contains(&p.key), "the plain key must not be stored");
    // Newest first.
    let ats: Vec<&str> = entries.iter().map(|r| r["at"].as_str().unwrap()).collect();
    assert!(ats.windows(2).all(|w| w[0] >= w[1]), "{ats:?}");

    // Admin actions and failed authentications are under affiliate 0, read by the admin.
    let admin_rows = crate::helpers::eventually(Duration::from_secs(10), "admin audit rows", || async {
        let r = app.admin(Method::GET, &format!("/audit?date={today}&limit=1000"), None).await;
        assert_eq!(r.status, 200, "{}", r.text);
        let entries = r.body["data"]["entries"].as_array().cloned().unwrap_or_default();
        let has = |id: &str| entries.iter().any(|e| e["request_id"] == id);
        (has(&admin_request_id) && has("audit-anon")).then_some(entries)
    })
    .await;
    let admin = admin_rows.iter().find(|e| e["request_id"] == json!(admin_request_id)).unwrap();
    assert_eq!((admin["actor"].clone(), admin["method"].clone(), admin["route"].clone(), admin["status"].clone()), (json!("admin"), json!("POST"), json!("/admin/v1/affiliates"), json!(201)));
    let anon = admin_rows.iter().find(|e| e["request_id"] == "audit-anon").unwrap();
    assert_eq!((anon["actor"].clone(), anon["status"].clone(), anon["key_id"].clone()), (json!("anonymous"), json!(401), Value::Null));
    // The admin reads a partner's rows too; the partner never reads another's.
    let theirs = app.admin(Method::GET, &format!("/audit?affiliate_id={}&date={today}", p.affiliate_id), None).await;
    assert!(theirs.body["data"]["entries"].as_array().unwrap().iter().any(|e| e["request_id"] == "audit-me-1"));
    let other = app.partner(None).await;
    let r = app.get_with_key("/v1/audit", &other.key).await;
    assert!(r.body["data"]["entries"].as_array().unwrap().iter().all(|e| e["affiliate_id"] == json!(other.affiliate_id)), "{}", r.text);
    app.get_with_key("/v1/audit?date=23-11-2026&limit=0", &reader).await.assert_invalid("date");
    app.get_with_key("/v1/audit?limit=5000", &reader).await.assert_invalid("limit");
    app.send(app.client.get(app.url("/admin/v1/audit"))).await.assert_error(401, "Admin token is missing.", "unauthenticated");
}

#[actix_web::test]
async fn campaign_and_payout_stats_agree_with_clicks_and_postbacks() {
    let app = app().await;
    let t = tag();
    let (_, card, loan) = catalogue(&app, &t).await;
    let n = app.admin(Method::POST, "/networks", Some(json!({"name": format!("Net {t}")}))).await;
    let token = n.body["data"]["network"]["postback_token"].as_str().unwrap().to_string();
    let p = app.partner(None).await;
    let share = post(&app, &p.key, "/v1/campaigns", json!({"offer_id": card, "share_pct": 40, "tenant_id": "site"})).await;
    let share_id = share.body["data"]["campaign"]["campaign_id"].as_u64().unwrap();
    let quiet = post(&app, &p.key, "/v1/campaigns", json!({"offer_id": loan, "flat_reward": 1, "tenant_id": "site"})).await;
    let quiet_id = quiet.body["data"]["campaign"]["campaign_id"].as_u64().unwrap();
    let link = post(&app, &p.key, "/v1/links", json!({"campaign_id": share_id})).await;
    let code = link.body["data"]["link"]["code"].as_str().unwrap().to_string();
    let clicks: Vec<String> = futures_util::future::join_all((0..4).map(|i| click(&app, &code, if i < 2 { "u1" } else { "u2" }))).await;
    let pb = |c: &str, txn: &str, payout: &str, status: &str| format!("token={token}&click_id={c}&txn_id={txn}-{t}&payout={payout}&currency=USD&status={status}");
    for q in [
        pb(&clicks[0], "A", "10.00", "approved"),
        pb(&clicks[1], "B", "5.50", "pending"),
        pb(&clicks[2], "C", "7.00", "pending"),
        pb(&clicks[2], "C", "7.00", "rejected"),
        // A duplicate changes nothing.
        pb(&clicks[0], "A", "10.00", "approved"),
    ] {
        assert_eq!(postback(&app, &q).await.status, 200);
    }
    let body = until(&app, &p.key, "/v1/stats/campaigns", |v| {
        let c = &v["data"]["campaigns"][0];
        // Postbacks are processed asynchronously (and on Kafka not in the order sent).
        c["clicks"] == json!(4)
            && c["conversions_by_status"]["pending"] == json!(1)
            && c["conversions_by_status"]["rejected"] == json!(1)
            && c["conversions_by_status"]["queued"] == json!(1)
    })
    .await;
    let campaigns = body["data"]["campaigns"].as_array().unwrap();
    assert_eq!(campaigns.len(), 2);
    assert_eq!(
        campaigns[0],
        json!({"campaign_id": share_id, "offer_id": card, "tenant_id": "site", "clicks": 4, "conversions": 3, "conversion_rate": 75,
               "conversions_by_status": {"pending": 1, "queued": 1, "paying": 0, "paid": 0, "rejected": 1, "reversed": 0},
               "commission": {"USD": 15.5}, "rewards": {"USD": 6.2}})
    );
    assert_eq!(
        campaigns[1],
        json!({"campaign_id": quiet_id, "offer_id": loan, "tenant_id": "site", "clicks": 0, "conversions": 0, "conversion_rate": 0,
               "conversions_by_status": {"pending": 0, "queued": 0, "paying": 0, "paid": 0, "rejected": 0, "reversed": 0},
               "commission": {}, "rewards": {}})
    );
    assert_eq!(body["data"]["totals"]["clicks"], 4);
    assert_eq!(body["data"]["totals"]["conversion_rate"], 75);
    let one = app.get_with_key(&format!("/v1/stats/campaigns?campaign_id={quiet_id}"), &p.key).await;
    assert_eq!(one.body["data"]["campaigns"].as_array().unwrap().len(), 1);

    let payouts = app.get_with_key("/v1/stats/payouts", &p.key).await;
    assert_eq!(payouts.status, 200, "{}", payouts.text);
    assert_eq!(
        payouts.body["data"]["totals"],
        json!({"pending": {"USD": 2.2}, "queued": {"USD": 4}, "paying": {}, "paid": {}, "rejected": {"USD": 2.8}, "reversed": {}})
    );
    assert_eq!(payouts.body["data"]["counts"], json!({"pending": 1, "queued": 1, "paying": 0, "paid": 0, "rejected": 1, "reversed": 0}));
    assert_eq!(payouts.body["data"]["last_paid_at"], Value::Null);
    // Its own rewards only: on real backends other tests' apps share the store.
    let own: Vec<Value> = app.get_with_key("/v1/rewards/user?user_id=u1&tenant_id=site", &p.key).await.body["data"]["rewards"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["status"] == "queued")
        .map(|r| r["reward_id"].clone())
        .collect();
    assert_eq!(own.len(), 1);
    let paid = app.admin(Method::POST, "/rewards/pay", Some(json!({"reward_ids": own}))).await;
    assert_eq!(paid.status, 200, "{}", paid.text);
    let after = until(&app, &p.key, "/v1/stats/payouts", |v| v["data"]["counts"]["paid"] == json!(1)).await;
    assert_eq!(after["data"]["totals"]["paid"], json!({"USD": 4}));
    assert_eq!(after["data"]["totals"]["queued"], json!({}));
    assert!(after["data"]["last_paid_at"].is_string());

    // Scoped to the caller: scopes, other partners, unknown campaigns.
    let (_, narrow) = key_of(&app, p.affiliate_id, json!({"scopes": ["products.list"]})).await;
    app.get_with_key("/v1/stats/campaigns", &narrow).await.assert_error(403, "Insufficient scope.", "insufficient_scope");
    app.get_with_key("/v1/stats/payouts", &narrow).await.assert_error(403, "Insufficient scope.", "insufficient_scope");
    let other = app.partner(None).await;
    let theirs = app.get_with_key("/v1/stats/campaigns", &other.key).await;
    assert_eq!(theirs.body["data"]["campaigns"], json!([]));
    assert_eq!(theirs.body["data"]["totals"]["clicks"], 0);
    app.get_with_key(&format!("/v1/stats/campaigns?campaign_id={share_id}"), &other.key).await.assert_error(404, "Campaign not found.", "not_found");
    app.get_with_key("/v1/stats/campaigns?campaign_id=x", &other.key).await.assert_invalid("campaign_id");
    let theirs = app.get_with_key("/v1/stats/payouts", &other.key).await;
    assert_eq!(theirs.body["data"]["counts"]["queued"], 0);
}

#[actix_web::test]
async fn postbacks_have_their_own_limit_per_network() {
    let app = spawn_app_with(|s| {
        s.usage.flush_ms = 50;
        s.partner.postback_rate_limit.per_minute = 60;
        s.partner.postback_rate_limit.burst = 3;
        s.auth.failures_per_minute = 4;
    })
    .await;
    let t = tag();
    let token = |n: &Answer| n.body["data"]["network"]["postback_token"].as_str().unwrap().to_string();
    let a = token(&app.admin(Method::POST, "/networks", Some(json!({"name": format!("A {t}")}))).await);
    let b = token(&app.admin(Method::POST, "/networks", Some(json!({"name": format!("B {t}")}))).await);
    let q = |tok: &str| format!("token={tok}&click_id=cUnknownClick&txn_id=x&payout=1&currency=USD&status=pending");
    for _ in 0..3 {
        let r = postback(&app, &q(&a)).await;
        assert_eq!(r.status, 422, "{}", r.text);
        assert_eq!(r.headers["x-ratelimit-limit"], "60");
    }
    let refused = postback(&app, &q(&a)).await;
    refused.assert_error(429, "Postback rate limit exceeded.", "rate_limited");
    assert_eq!(refused.headers["retry-after"], "1");
    assert_eq!(refused.headers["ratelimit-policy"], "60;w=60;burst=3");
    // Network B has its own bucket.
    assert_eq!(postback(&app, &q(&b)).await.status, 422);
    // Postbacks are audited under affiliate 0 with their network.
    let today = chrono::Utc::now().date_naive();
    crate::helpers::eventually(Duration::from_secs(10), "a postback audit row", || async {
        let r = app.admin(Method::GET, &format!("/audit?date={today}&limit=1000"), None).await;
        r.body["data"]["entries"]
            .as_array()
            .and_then(|e| e.iter().find(|e| e["actor"] == "network" && e["status"] == 429 && e["route"] == "/v1/postbacks").cloned())
    })
    .await;
    // Wrong tokens count against the address, as wrong API keys do.
    for _ in 0..4 {
        postback(&app, "token=hb_pb_guess&click_id=x").await.assert_error(401, "Postback token is invalid.", "unauthenticated");
    }
    postback(&app, "token=hb_pb_guess&click_id=x").await.assert_error(429, "Too many failed authentications; retry later.", "rate_limited");
    let metrics = app.get("/metrics").await.text;
    assert!(metrics.contains("hissaback_rate_limited_total{kind=\"network\"} 1"), "{metrics}");
}

/// Usage statistics and the audit log (client addresses) need a secret key holding
/// `stats.read` / `audit.read`; a publishable key (browser) can neither hold nor use them.
#[actix_web::test]
async fn usage_and_audit_need_a_secret_key_with_their_scope() {
    let app = app().await;
    let p = app.partner(None).await;
    let (_, publishable) = key_of(&app, p.affiliate_id, json!({"kind": "publishable"})).await;
    let (_, offers_only) = key_of(&app, p.affiliate_id, json!({"scopes": ["offers.read", "rewards.read"]})).await;
    for path in ["/v1/stats/usage", "/v1/audit"] {
        app.get_with_key(path, &publishable).await.assert_error(403, "Insufficient scope.", "insufficient_scope");
        app.get_with_key(path, &offers_only).await.assert_error(403, "Insufficient scope.", "insufficient_scope");
        let ok = app.get_with_key(path, &p.key).await;
        assert_eq!(ok.status, 200, "{path}: {}", ok.text);
    }
    // A publishable key cannot be issued with them either.
    for scope in ["stats.read", "audit.read"] {
        let r = app.create_key(p.affiliate_id, json!({"kind": "publishable", "scopes": [scope]})).await;
        assert_eq!(r.status, 422, "{scope}: {}", r.text);
    }
    let (_, with_scopes) = key_of(&app, p.affiliate_id, json!({"scopes": ["stats.read", "audit.read"]})).await;
    assert_eq!(app.get_with_key("/v1/stats/usage", &with_scopes).await.status, 200);
    assert_eq!(app.get_with_key("/v1/audit", &with_scopes).await.status, 200);
}
