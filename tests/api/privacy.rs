//! Issue 13, "Privacy" (seed: Data privacy compliance): export and erasure of an end user's
//! personal data (partner and admin API), the ledger untouched by an erasure, events consumed
//! after it not bringing the user id back, the retention of clicks' IPs and user agents, and
//! no personal data in the logs or metric labels of a full run of the real binary.

use crate::helpers::{eventually, real_backends, spawn_app_with, Answer, TestApp};
use crate::partner::{catalogue, post, tag};
use hissaback::store::ClickRecord;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;

fn patience() -> Duration {
    Duration::from_secs(if real_backends() { 60 } else { 30 })
}

/// An app that believes `X-Forwarded-For` from the test client (so clicks get the IPs the
/// test chooses).
async fn app() -> TestApp {
    spawn_app_with(|s| s.server.trusted_proxies = vec!["127.0.0.1".into()]).await
}

/// A partner with a 40% campaign on its own tenant, a link and a network.
struct Setup {
    affiliate_id: u64,
    key: String,
    token: String,
    code: String,
    tenant: String,
    t: String,
}

async fn setup(app: &TestApp, tenant: Option<&str>) -> Setup {
    let t = tag();
    let (_, card, _) = catalogue(app, &t).await;
    let n = app.admin(Method::POST, "/networks", Some(json!({"name": format!("Net {t}")}))).await;
    assert_eq!(n.status, 201, "{}", n.text);
    let token = n.body["data"]["network"]["postback_token"].as_str().unwrap().to_string();
    let p = app.partner(None).await;
    let tenant = tenant.map(String::from).unwrap_or_else(|| format!("tenant-{t}"));
    let c = post(app, &p.key, "/v1/campaigns", json!({"offer_id": card, "share_pct": 40, "tenant_id": tenant})).await;
    assert_eq!(c.status, 201, "{}", c.text);
    let l = post(app, &p.key, "/v1/links", json!({"campaign_id": c.body["data"]["campaign"]["campaign_id"]})).await;
    assert_eq!(l.status, 201, "{}", l.text);
    let code = l.body["data"]["link"]["code"].as_str().unwrap().to_string();
    Setup { affiliate_id: p.affiliate_id, key: p.key, token, code, tenant, t }
}

impl Setup {
    /// A click of `user` from `ip` with `agent`; answers the click id.
    async fn click(&self, app: &TestApp, user: &str, ip: &str, agent: &str) -> String {
        let r = app
            .client
            .get(app.url(&format!("/r/{}?uid={user}", self.code)))
            .header("x-forwarded-for", ip)
            .header("user-agent", agent)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 302);
        let location = r.headers()["location"].to_str().unwrap().to_string();
        location.split("click=").nth(1).unwrap().split('&').next().unwrap().to_string()
    }

    async fn postback(&self, app: &TestApp, click: &str, txn: &str, status: &str) -> u64 {
        let q = format!("token={}&click_id={click}&txn_id={txn}-{}&payout=25.00&currency=USD&status={status}", self.token, self.t);
        let r = crate::partner::postback(app, &q).await;
        assert_eq!(r.status, 200, "{}", r.text);
        r.body["data"]["conversion_id"].as_u64().unwrap()
    }

    async fn rewards(&self, app: &TestApp, user: &str) -> Vec<Value> {
        let r = app.get_with_key(&format!("/v1/rewards/user?user_id={user}&tenant_id={}", self.tenant), &self.key).await;
        assert_eq!(r.status, 200, "{}", r.text);
        r.body["data"]["rewards"].as_array().unwrap().clone()
    }

    async fn wait_rewards(&self, app: &TestApp, user: &str, n: usize) -> Vec<Value> {
        let started = std::time::Instant::now();
        loop {
            let r = self.rewards(app, user).await;
            if r.len() == n {
                return r;
            }
            assert!(started.elapsed() < patience(), "{user}: {} rewards, not {n}", r.len());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn export(&self, app: &TestApp, user: &str) -> Answer {
        app.get_with_key(&format!("/v1/users/{user}/export?tenant_id={}", self.tenant), &self.key).await
    }

    async fn erase(&self, app: &TestApp, key: &str, user: &str) -> Answer {
        app.send(app.client.delete(app.url(&format!("/v1/users/{user}?tenant_id={}", self.tenant))).bearer_auth(key)).await
    }
}

fn ids(list: &Value, field: &str) -> Vec<String> {
    let mut out: Vec<String> = list.as_array().unwrap().iter().map(|v| v[field].to_string().trim_matches('"').to_string()).collect();
    out.sort();
    out
}

#[actix_web::test]
async fn export_and_erasure_of_an_end_user() {
    // Boxed: the flow's future is large (the CQL driver's futures are), too large for the
    // test thread's stack in debug builds.
    Box::pin(export_and_erasure_flow()).await
}

async fn export_and_erasure_flow() {
    let app = app().await;
    let s = setup(&app, None).await;
    let (user, other) = (format!("privacy-u-{}", s.t), format!("privacy-v-{}", s.t));
    let c1 = s.click(&app, &user, "203.0.113.77", "ProbeAgent/1.0").await;
    let c2 = s.click(&app, &user, "2001:db8:abcd:12::5", "ProbeAgent/2.0").await;
    let cv = s.click(&app, &other, "198.51.100.9", "OtherAgent/1.0").await;
    let k1 = s.postback(&app, &c1, "a", "approved").await;
    let k2 = s.postback(&app, &c2, "b", "pending").await;
    s.postback(&app, &cv, "c", "approved").await;
    // Another partner with the same tenant name and end user id: not this partner's data.
    let s2 = setup(&app, Some(&s.tenant)).await;
    let c3 = s2.click(&app, &user, "192.0.2.1", "ThirdAgent").await;
    s2.postback(&app, &c3, "d", "approved").await;
    s.wait_rewards(&app, &user, 2).await;
    s.wait_rewards(&app, &other, 1).await;
    s2.wait_rewards(&app, &user, 1).await;

    // Export: the user's clicks (with IP and user agent), conversions and rewards, nothing else.
    let e = s.export(&app, &user).await;
    assert_eq!(e.status, 200, "{}", e.text);
    assert_eq!(e.body["success"], true);
    let d = &e.body["data"];
    assert_eq!(d["user_id"], json!(user));
    assert_eq!(ids(&d["clicks"], "click_id"), { let mut v = vec![c1.clone(), c2.clone()]; v.sort(); v });
    let ips: Vec<&str> = d["clicks"].as_array().unwrap().iter().map(|c| c["ip"].as_str().unwrap()).collect();
    assert!(ips.contains(&"203.0.113.77") && ips.contains(&"2001:db8:abcd:12::5"), "{ips:?}");
    assert_eq!(ids(&d["conversions"], "conversion_id"), { let mut v = vec![k1.to_string(), k2.to_string()]; v.sort(); v });
    assert_eq!(d["rewards"].as_array().unwrap().len(), 2);
    assert!(d["rewards"].as_array().unwrap().iter().all(|r| r["amount"] == json!(10.0)), "{}", d["rewards"]);
    assert!(!e.text.contains(&cv) && !e.text.contains(&c3) && !e.text.contains(&other), "{}", e.text);
    // The admin sees the same for the partner.
    let a = app.admin(Method::GET, &format!("/affiliates/{}/users/{user}/export?tenant_id={}", s.affiliate_id, s.tenant), None).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.body["data"]["clicks"], d["clicks"]);
    let missing = app.admin(Method::GET, &format!("/affiliates/999999999/users/{user}/export?tenant_id=x"), None).await;
    missing.assert_error(404, "Affiliate not found.", "not_found");
    // An unknown end user exports nothing; a missing tenant is 422.
    let none = s.export(&app, "nobody-here").await;
    assert_eq!(none.status, 200, "{}", none.text);
    assert_eq!(none.body["data"]["clicks"], json!([]));
    assert_eq!(none.body["data"]["rewards"], json!([]));
    let r = app.get_with_key(&format!("/v1/users/{user}/export"), &s.key).await;
    assert_eq!(r.status, 422, "{}", r.text);
    assert!(r.body["errors"]["tenant_id"].is_array(), "{}", r.text);
    let r = s.erase(&app, &s.key.clone(), &format!("{user}?x=1")).await;
    assert_eq!(r.status, 422, "{}", r.text);

    // Publishable keys, and secret keys without the scope, are refused.
    let k = app.create_key(s.affiliate_id, json!({"kind": "publishable"})).await;
    let public = k.body["data"]["key"]["key"].as_str().unwrap().to_string();
    assert_eq!(app.get_with_key(&format!("/v1/users/{user}/export?tenant_id={}", s.tenant), &public).await.status, 403);
    assert_eq!(s.erase(&app, &public, &user).await.status, 403);
    let k = app.create_key(s.affiliate_id, json!({"scopes": ["rewards.read"]})).await;
    let reader = k.body["data"]["key"]["key"].as_str().unwrap().to_string();
    assert_eq!(s.erase(&app, &reader, &user).await.status, 403);

    // Erasure: the ledger as it was, the user id gone from answers and store.
    let store = app.state.store.clone();
    let mut postings_before = Vec::new();
    for id in [k1, k2] {
        postings_before.push(store.postings_of(id).await.unwrap());
    }
    let conv_before = store.get_conversion(k1).await.unwrap().unwrap();
    let gone = s.erase(&app, &s.key.clone(), &user).await;
    assert_eq!(gone.status, 200, "{}", gone.text);
    assert_eq!(gone.body["data"]["erased"], true);
    assert_eq!(gone.body["data"]["clicks"], 2, "{}", gone.text);
    assert_eq!(gone.body["data"]["conversions"], 2, "{}", gone.text);
    assert_eq!(gone.body["data"]["pending"], 0, "{}", gone.text);
    let pseudonym = gone.body["data"]["pseudonym"].as_str().unwrap().to_string();
    assert!(pseudonym.starts_with("erased_") && !pseudonym.contains(&user));
    assert_eq!(s.rewards(&app, &user).await, Vec::<Value>::new());
    let after = s.export(&app, &user).await;
    assert_eq!(after.body["data"]["clicks"], json!([]), "{}", after.text);
    assert_eq!(after.body["data"]["conversions"], json!([]), "{}", after.text);
    let conv = store.get_conversion(k1).await.unwrap().unwrap();
    assert_eq!(conv.user_id, pseudonym);
    assert_eq!((conv.payout_minor, conv.reward_minor, conv.status), (conv_before.payout_minor, conv_before.reward_minor, conv_before.status));
    assert!(!serde_json::to_string(&conv).unwrap().contains(&user));
    for (i, id) in [k1, k2].iter().enumerate() {
        assert_eq!(store.postings_of(*id).await.unwrap(), postings_before[i], "postings of {id}");
    }
    for click in [&c1, &c2] {
        let c = store.get_click(click).await.unwrap().unwrap();
        assert_eq!((c.user_id.as_deref(), c.ip.as_deref(), c.user_agent.as_deref()), (Some(pseudonym.as_str()), None, None), "{c:?}");
    }
    let (_, problems) = hissaback::partner::ledger::check(&store).await.unwrap();
    let ours: Vec<_> = problems.iter().filter(|p| p.contains(&k1.to_string()) || p.contains(&k2.to_string()) || p.contains(&pseudonym)).collect();
    assert!(ours.is_empty(), "{ours:?}");
    // Other users and partners keep their data.
    assert_eq!(s.export(&app, &other).await.body["data"]["clicks"][0]["ip"], "198.51.100.9");
    assert_eq!(s2.rewards(&app, &user).await.len(), 1);
    // The erasure is audited, by pseudonym only.
    let day = chrono::Utc::now().date_naive();
    let affiliate_id = s.affiliate_id;
    let row = eventually(patience(), "the erasure's audit row", || {
        let store = store.clone();
        async move { store.audit_of(affiliate_id, day, 100).await.unwrap().into_iter().find(|r| r.route == "user.erased") }
    })
    .await;
    assert!(row.path.contains(&pseudonym) && row.path.contains("clicks=2") && !row.path.contains(&user), "{row:?}");
    // The calls' own audit rows name the route, not the end user.
    let rows = eventually(patience(), "the export and erase calls' audit rows", || {
        let store = store.clone();
        async move {
            let rows = store.audit_of(affiliate_id, day, 1000).await.unwrap();
            rows.iter().any(|r| r.route.contains("{user_id}")).then_some(rows)
        }
    })
    .await;
    let leaking: Vec<_> = rows.iter().filter(|r| r.path.contains(&user)).collect();
    assert!(leaking.is_empty(), "audit rows naming the end user: {leaking:?}");

    // Events consumed after the erasure do not bring the user id back: a postback on an
    // erased click (the click cache still knows the user), and a conversion event produced
    // before the erasure and delivered now.
    let late = s.postback(&app, &c1, "late", "approved").await;
    let conv = eventually(patience(), "the late conversion", || {
        let store = store.clone();
        async move { store.get_conversion(late).await.unwrap() }
    })
    .await;
    assert_eq!(conv.user_id, pseudonym);
    let replayed_id = late ^ 0x5a5a;
    let event = hissaback_topics::events::ConversionEvent::Recorded(hissaback_topics::events::ConversionRecorded {
        conversion_id: replayed_id,
        network_id: conv.network_id,
        txn_id: format!("replayed-{}", s.t),
        click_id: c2.clone(),
        campaign_id: conv.campaign_id,
        affiliate_id: s.affiliate_id,
        tenant_id: s.tenant.clone(),
        offer_id: conv.offer_id,
        user_id: Some(user.clone()),
        payout: hissaback_topics::Money { minor: 1000, currency: hissaback_topics::CurrencyCode::USD },
        status: hissaback_topics::events::PostbackStatus::Approved,
        occurred_at_ms: chrono::Utc::now().timestamp_millis(),
    });
    hissaback_topics::bus::publish_events(app.state.bus.as_ref(), &[event]).await.unwrap();
    let conv = eventually(patience(), "the replayed conversion", || {
        let store = store.clone();
        async move { store.get_conversion(replayed_id).await.unwrap() }
    })
    .await;
    assert_eq!(conv.user_id, pseudonym);
    assert_eq!(s.rewards(&app, &user).await, Vec::<Value>::new());

    // The admin erases for any partner: the other partner's user.
    let a = app.send(app.client.delete(app.url(&format!("/admin/v1/affiliates/{}/users/{user}?tenant_id={}", s2.affiliate_id, s.tenant))).bearer_auth(crate::helpers::ADMIN_TOKEN)).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.body["data"]["clicks"], 1);
    assert_ne!(a.body["data"]["pseudonym"], json!(pseudonym), "pseudonyms differ per partner");
    assert_eq!(s2.rewards(&app, &user).await, Vec::<Value>::new());
}

fn click_at(affiliate_id: u64, t: &str, n: u32, ip: &str, at: chrono::DateTime<chrono::Utc>) -> ClickRecord {
    ClickRecord {
        click_id: format!("cret{t}{n}"),
        code: "code".into(),
        affiliate_id,
        campaign_id: 1,
        offer_id: 1,
        tenant_id: format!("tenant-{t}"),
        user_id: Some(format!("ret-user-{t}")),
        ip: Some(ip.into()),
        user_agent: Some("RetentionAgent".into()),
        at,
    }
}

/// Clicks older than `privacy.click_personal_data_days` lose their full IP and user agent on
/// the sweep (embedded; ScyllaDB: a TTL on those fields, not testable in a test's time); with
/// 0 days they are never stored in full, on either backend.
#[actix_web::test]
async fn clicks_keep_ip_and_user_agent_only_for_the_retention() {
    Box::pin(retention_flow()).await
}

async fn retention_flow() {
    let app = app().await;
    let store = app.state.store.clone();
    let t = tag();
    let now = chrono::Utc::now();
    let old4 = click_at(9_000_001, &t, 1, "203.0.113.200", now - chrono::Duration::days(31));
    let old6 = click_at(9_000_001, &t, 2, "2001:db8:abcd:12::1", now - chrono::Duration::days(40));
    let fresh = click_at(9_000_001, &t, 3, "203.0.113.201", now - chrono::Duration::days(2));
    for c in [&old4, &old6, &fresh] {
        store.put_click(c).await.unwrap();
    }
    // (The app's own sweeper, which runs at start, may have come first: the count may be 0.)
    hissaback::partner::privacy::sweep_clicks(&store, Duration::from_secs(30 * 86_400)).await.unwrap();
    if !real_backends() {
        let c = store.get_click(&old4.click_id).await.unwrap().unwrap();
        assert_eq!((c.ip.as_deref(), c.user_agent.as_deref(), c.user_id.as_deref()), (Some("203.0.113.0"), None, old4.user_id.as_deref()));
        assert_eq!(c.campaign_id, old4.campaign_id);
        let c = store.get_click(&old6.click_id).await.unwrap().unwrap();
        assert_eq!((c.ip.as_deref(), c.user_agent.as_deref()), (Some("2001:db8:abcd::"), None));
    }
    assert_eq!(store.get_click(&fresh.click_id).await.unwrap().unwrap(), fresh, "a fresh click keeps its data");

    // 0 days: the redirect stores only the truncated IP, no user agent.
    let app0 = spawn_app_with(|s| {
        s.server.trusted_proxies = vec!["127.0.0.1".into()];
        s.privacy.click_personal_data_days = 0;
    })
    .await;
    let s = setup(&app0, None).await;
    let id = s.click(&app0, "zero-days", "198.51.100.123", "ZeroAgent").await;
    let c = app0.state.store.get_click(&id).await.unwrap().unwrap();
    assert_eq!((c.ip.as_deref(), c.user_agent.as_deref(), c.user_id.as_deref()), (Some("198.51.100.0"), None, Some("zero-days")));
}

/// A full flow through the real binary at `RUST_LOG=debug`: none of the personal data or
/// secrets it used (end user id, IP, user agent, e-mail, API key, postback token, webhook
/// secret) shows in its logs or in `/metrics`.
#[actix_web::test]
async fn no_personal_data_in_logs_or_metrics() {
    use crate::binary::{free_port, serve_vars, start, wait_healthy};
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut vars = serve_vars(&data, port);
    vars.push(("RUST_LOG", "debug".into()));
    vars.push(("HISSABACK_TRUSTED_PROXIES", "127.0.0.1".into()));
    vars.push(("HISSABACK_WEBHOOK_ALLOW", "127.0.0.1".into()));
    vars.push(("HISSABACK_USAGE__FLUSH_MS", "100".into()));
    let mut proc = start(root.path(), "serve", &vars);
    wait_healthy(&mut proc, &base).await;
    let admin_token = vars.iter().find(|(k, _)| *k == "HISSABACK_ADMIN_TOKEN").unwrap().1.clone();
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let admin = |path: &str, body: Value| {
        let req = client.post(format!("{base}/admin/v1{path}")).bearer_auth(&admin_token).json(&body);
        async move {
            let r = req.send().await.unwrap();
            assert!(r.status().is_success(), "{}", r.status());
            r.json::<Value>().await.unwrap()
        }
    };
    let t = tag();
    let (user, ip, agent, email) = (format!("loguser{t}"), "203.0.113.199", format!("LogProbeAgent{t}"), format!("probe{t}@privacy.test"));
    let brand = admin("/brands", json!({"name": "B"})).await["data"]["brand"]["id"].clone();
    let offer = admin("/offers", json!({"brand_id": brand, "name": "O", "category": "c", "base_commission": 10, "default_share_pct": 40, "tracking_url": "https://n.example/?c={click_id}&u={user_id}"})).await["data"]["offer"]["id"].clone();
    let token = admin("/networks", json!({"name": "N"})).await["data"]["network"]["postback_token"].as_str().unwrap().to_string();
    let affiliate = admin("/affiliates", json!({"name": "P", "email": email})).await["data"]["affiliate"]["id"].clone();
    let key = admin(&format!("/affiliates/{affiliate}/keys"), json!({})).await["data"]["key"]["key"].as_str().unwrap().to_string();
    let partner = |path: &str, body: Value| {
        let req = client.post(format!("{base}/v1{path}")).bearer_auth(&key).json(&body);
        async move {
            let r = req.send().await.unwrap();
            assert!(r.status().is_success(), "{}", r.status());
            r.json::<Value>().await.unwrap()
        }
    };
    let (hook_url, _received) = crate::webhook_smoke::receiver().await;
    let hook = partner("/webhooks", json!({"event": "reward.queued", "url": hook_url})).await;
    let secret = hook["data"]["webhook"]["secret"].as_str().or_else(|| hook["data"]["secret"].as_str()).unwrap_or_else(|| panic!("{hook}")).to_string();
    let campaign = partner("/campaigns", json!({"offer_id": offer, "share_pct": 40, "tenant_id": "t"})).await;
    let link = partner("/links", json!({"campaign_id": campaign["data"]["campaign"]["campaign_id"]})).await;
    let code = link["data"]["link"]["code"].as_str().unwrap().to_string();
    let r = client.get(format!("{base}/r/{code}?uid={user}")).header("x-forwarded-for", ip).header("user-agent", &agent).send().await.unwrap();
    let click = r.headers()["location"].to_str().unwrap().split("c=").nth(1).unwrap().split('&').next().unwrap().to_string();
    let r = client.get(format!("{base}/v1/postbacks?token={token}&click_id={click}&txn_id=x{t}&payout=10&currency=USD&status=approved")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let rewards = format!("{base}/v1/rewards/user?user_id={user}&tenant_id=t");
    let started = std::time::Instant::now();
    loop {
        let v: Value = client.get(&rewards).bearer_auth(&key).send().await.unwrap().json().await.unwrap();
        if v["data"]["rewards"].as_array().is_some_and(|r| !r.is_empty()) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "no reward: {v}\n{}", proc.logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let e = client.get(format!("{base}/v1/users/{user}/export?tenant_id=t")).bearer_auth(&key).send().await.unwrap();
    assert_eq!(e.status(), 200);
    let d = client.delete(format!("{base}/v1/users/{user}?tenant_id=t")).bearer_auth(&key).send().await.unwrap();
    assert_eq!(d.status(), 200);
    // A failed authentication with the key in the query, too.
    let _ = client.get(format!("{base}/v1/offers?api_key={key}x")).send().await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let metrics = client.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    proc.terminate().await;
    let logs = proc.logs();
    assert!(logs.contains("DEBUG") || logs.contains("debug"), "RUST_LOG=debug took effect:\n{logs}");
    let probes = [("user id", user.as_str()), ("IP", ip), ("user agent", agent.as_str()), ("e-mail", email.as_str()), ("API key", key.as_str()), ("postback token", token.as_str()), ("webhook secret", secret.as_str())];
    for (what, value) in probes {
        assert!(!logs.contains(value), "the {what} `{value}` is in the logs:\n{}", logs.lines().filter(|l| l.contains(value)).collect::<Vec<_>>().join("\n"));
        assert!(!metrics.contains(value), "the {what} `{value}` is in /metrics");
    }
}
