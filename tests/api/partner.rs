//! The partner flow's front half: admin brands, offers and networks; `GET /v1/offers` with
//! filters, key restrictions and the public-key cache; campaigns; smart links; click
//! redirects; tenant isolation.

use crate::helpers::{spawn_app, TestApp};
use reqwest::Method;
use serde_json::{json, Value};

pub(crate) fn tag() -> String {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("t{}{}", t % 1_000_000_000, N.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
}

pub(crate) async fn post(app: &TestApp, key: &str, path: &str, body: Value) -> crate::helpers::Answer {
    crate::helpers::Answer::read(app.client.post(app.url(path)).bearer_auth(key).json(&body).send().await.unwrap()).await
}

/// A brand with two offers (12.5% and 30% base commission) named with `t`.
pub(crate) async fn catalogue(app: &TestApp, t: &str) -> (u64, u64, u64) {
    let b = app.admin(Method::POST, "/brands", Some(json!({"name": format!("Brand {t}")}))).await;
    assert_eq!(b.status, 201, "{}", b.text);
    let brand = b.body["data"]["brand"]["id"].as_u64().unwrap();
    let mut ids = vec![];
    for (name, commission, category) in [("Card", 12.5, "finance"), ("Loan", 30.0, "Lending")] {
        let o = app
            .admin(Method::POST, "/offers", Some(json!({
                "brand_id": brand, "name": format!("{name} {t}"), "category": category, "base_commission": commission,
                "default_share_pct": 50, "tracking_url": "https://net.example/c?click={click_id}&aff={pid}&o={offer_id}&u={user_id}&t={tenant_id}",
            })))
            .await;
        assert_eq!(o.status, 201, "{}", o.text);
        ids.push(o.body["data"]["offer"]["id"].as_u64().unwrap());
    }
    (brand, ids[0], ids[1])
}

#[actix_web::test]
async fn offers_are_listed_filtered_and_restricted_to_the_key() {
    let app = spawn_app().await;
    let t = tag();
    let (brand, card, loan) = catalogue(&app, &t).await;
    let p = app.partner(None).await;
    let r = app.get_with_key(&format!("/v1/offers?q={t}"), &p.key).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let offers = r.body["data"]["offers"].as_array().unwrap();
    assert_eq!(offers.len(), 2);
    assert_eq!(
        offers[0],
        json!({"id": card, "name": format!("Card {t}"), "brand_id": brand, "brand_name": format!("Brand {t}"), "category": "finance",
               "base_commission": 12.5, "default_share_pct": 50, "currency": "USD"})
    );
    assert_eq!(r.body["data"]["pagination"]["total"], 2);
    let ids = |r: &crate::helpers::Answer| r.body["data"]["offers"].as_array().unwrap().iter().map(|o| o["id"].as_u64().unwrap()).collect::<Vec<_>>();
    assert_eq!(ids(&app.get_with_key(&format!("/v1/offers?q={t}&min_commission=20"), &p.key).await), vec![loan]);
    assert_eq!(ids(&app.get_with_key(&format!("/v1/offers?q={t}&category=lending"), &p.key).await), vec![loan]);
    assert_eq!(ids(&app.get_with_key(&format!("/v1/offers?q=card+{t}"), &p.key).await), vec![card]);
    assert_eq!(ids(&app.get_with_key(&format!("/v1/offers?brand_id={brand}"), &p.key).await), vec![card, loan]);
    let bad = app.get_with_key("/v1/offers?brand_id=x&per_page=500&min_commission=-1", &p.key).await;
    assert_eq!(bad.status, 422);
    for f in ["brand_id", "per_page", "min_commission"] {
        assert!(bad.body["errors"][f].is_array(), "{f}: {}", bad.text);
    }
    // A key restricted to one offer sees only that one.
    let k = app.create_key(p.affiliate_id, json!({"allowed_offer_ids": [loan]})).await;
    let restricted = k.body["data"]["key"]["key"].as_str().unwrap().to_string();
    assert_eq!(ids(&app.get_with_key(&format!("/v1/offers?q={t}"), &restricted).await), vec![loan]);
    let none = app.partner(Some(&["products.list"])).await;
    app.get_with_key("/v1/offers", &none.key).await.assert_error(403, "Insufficient scope.", "insufficient_scope");
}

#[actix_web::test]
async fn publishable_keys_get_a_cached_public_answer() {
    let app = spawn_app().await;
    let t = tag();
    catalogue(&app, &t).await;
    let p = app.partner(None).await;
    let k = app.create_key(p.affiliate_id, json!({"kind": "publishable"})).await;
    let public = k.body["data"]["key"]["key"].as_str().unwrap().to_string();
    let path = format!("/v1/offers?q={t}");
    let first = app.client.get(app.url(&path)).bearer_auth(&public).send().await.unwrap();
    assert_eq!(first.headers()["cache-control"], "public, max-age=300");
    let first: Value = first.json().await.unwrap();
    // A new offer does not show to the public key within the cache's lifetime...
    let brand = first["data"]["offers"][0]["brand_id"].as_u64().unwrap();
    app.admin(Method::POST, "/offers", Some(json!({"brand_id": brand, "name": format!("Late {t}"), "category": "x", "base_commission": 5, "default_share_pct": 5, "tracking_url": "https://n.example/?c={click_id}"}))).await;
    let again: Value = app.client.get(app.url(&path)).bearer_auth(&public).send().await.unwrap().json().await.unwrap();
    assert_eq!(again, first);
    // ...but does at once to a secret key, which is never cached.
    let secret = app.get_with_key(&path, &p.key).await;
    assert_eq!(secret.body["data"]["offers"].as_array().unwrap().len(), 3);
    assert!(secret.headers.get("cache-control").is_none());
}

#[actix_web::test]
async fn campaigns_links_and_clicks() {
    let app = spawn_app().await;
    let t = tag();
    let (_, card, loan) = catalogue(&app, &t).await;
    let a = app.partner(None).await;
    let c = post(&app, &a.key, "/v1/campaigns", json!({"offer_id": card, "share_pct": 40, "tenant_id": "site-a"})).await;
    assert_eq!(c.status, 201, "{}", c.text);
    let campaign = c.body["data"]["campaign"].clone();
    assert_eq!(campaign["offer_id"], json!(card));
    assert_eq!(campaign["share_pct"], json!(40));
    assert_eq!(campaign["flat_reward"], Value::Null);
    assert_eq!(campaign["tenant_id"], "site-a");
    let campaign_id = campaign["campaign_id"].as_u64().unwrap();
    let flat = post(&app, &a.key, "/v1/campaigns", json!({"offer_id": loan, "flat_reward": 2.5, "tenant_id": "site-a"})).await;
    assert_eq!((flat.status, flat.body["data"]["campaign"]["flat_reward"].clone()), (201, json!(2.5)));

    for (body, field) in [
        (json!({"offer_id": card, "tenant_id": "x"}), "share_pct"),
        (json!({"offer_id": card, "share_pct": 10, "flat_reward": 1, "tenant_id": "x"}), "share_pct"),
        (json!({"offer_id": card, "share_pct": 0, "tenant_id": "x"}), "share_pct"),
        (json!({"offer_id": card, "share_pct": 101, "tenant_id": "x"}), "share_pct"),
        (json!({"offer_id": card, "flat_reward": -1, "tenant_id": "x"}), "flat_reward"),
        (json!({"offer_id": 987654321, "share_pct": 10, "tenant_id": "x"}), "offer_id"),
        (json!({"share_pct": 10, "tenant_id": "x"}), "offer_id"),
        (json!({"offer_id": card, "share_pct": 10}), "tenant_id"),
    ] {
        let r = post(&app, &a.key, "/v1/campaigns", body.clone()).await;
        assert_eq!(r.status, 422, "{body}: {}", r.text);
        assert!(r.body["errors"][field].is_array(), "{body} should name {field}: {}", r.text);
    }
    // An offer outside the key's allowed set is a 422 on offer_id.
    let k = app.create_key(a.affiliate_id, json!({"allowed_offer_ids": [loan]})).await;
    let restricted = k.body["data"]["key"]["key"].as_str().unwrap().to_string();
    let r = post(&app, &restricted, "/v1/campaigns", json!({"offer_id": card, "share_pct": 10, "tenant_id": "x"})).await;
    assert!(r.status == 422 && r.body["errors"]["offer_id"].is_array(), "{}", r.text);

    let l = post(&app, &a.key, "/v1/links", json!({"campaign_id": campaign_id})).await;
    assert_eq!(l.status, 201, "{}", l.text);
    let link = l.body["data"]["link"].clone();
    let code = link["code"].as_str().unwrap().to_string();
    assert!(code.len() >= 12 && code.chars().all(|c| c.is_ascii_alphanumeric()));
    assert_eq!(link["url"], json!(format!("{}/r/{code}", app.address)));
    assert_eq!((link["campaign_id"].clone(), link["pid"].clone(), link["offer_id"].clone()), (json!(campaign_id), json!(a.affiliate_id), json!(card)));
    assert_eq!(link["raw_url"], json!(format!("https://net.example/c?click={{click_id}}&aff={}&o={card}&u=&t=site-a", a.affiliate_id)));

    let click = app.client.get(app.url(&format!("/r/{code}?uid=user%2042"))).send().await.unwrap();
    assert_eq!(click.status(), 302);
    let location = click.headers()["location"].to_str().unwrap().to_string();
    let click_id = location.split("click=").nth(1).unwrap().split('&').next().unwrap().to_string();
    assert!(click_id.len() >= 20, "{location}");
    assert_eq!(location, format!("https://net.example/c?click={click_id}&aff={}&o={card}&u=user+42&t=site-a", a.affiliate_id));
    let stored = app.state.store.get_click(&click_id).await.unwrap().unwrap();
    assert_eq!((stored.campaign_id, stored.user_id.as_deref(), stored.tenant_id.as_str()), (campaign_id, Some("user 42"), "site-a"));
    let second = app.client.get(app.url(&format!("/r/{code}?sub1=u2"))).send().await.unwrap();
    assert_ne!(second.headers()["location"].to_str().unwrap(), location, "every click has its own id");
    let unknown = crate::helpers::Answer::read(app.client.get(app.url("/r/NoSuchCode123")).send().await.unwrap()).await;
    unknown.assert_error(404, "Link not found.", "not_found");

    // Partner B can neither use nor see partner A's campaign.
    let b = app.partner(None).await;
    post(&app, &b.key, "/v1/links", json!({"campaign_id": campaign_id})).await.assert_error(404, "Campaign not found.", "not_found");
}

pub(crate) async fn postback(app: &TestApp, query: &str) -> crate::helpers::Answer {
    crate::helpers::Answer::read(app.client.get(app.url(&format!("/v1/postbacks?{query}"))).send().await.unwrap()).await
}

pub(crate) async fn click(app: &TestApp, code: &str, uid: &str) -> String {
    let r = app.client.get(app.url(&format!("/r/{code}?uid={uid}"))).send().await.unwrap();
    let location = r.headers()["location"].to_str().unwrap().to_string();
    location.split("click=").nth(1).unwrap().split('&').next().unwrap().to_string()
}

async fn eventually<F: Fn(&Value) -> bool>(app: &TestApp, key: &str, path: &str, ok: F) -> Value {
    let mut last = Value::Null;
    for _ in 0..300 {
        last = app.get_with_key(path, key).await.body;
        if ok(&last) {
            return last;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("condition not reached; last answer {last}");
}

/// Admin sets up brand, offer and network; the partner lists offers, makes campaigns and
/// links; clicks redirect; the network posts pending then approved postbacks, some twice,
/// some out of order; rewards show the right amounts and statuses; payment emits
/// `reward.paid` to a local receiver; the ledger check passes; another partner sees nothing.
#[actix_web::test]
async fn the_whole_flow_from_click_to_paid_reward() {
    let app = spawn_app().await;
    let t = tag();
    let (_, card, loan) = catalogue(&app, &t).await;
    let n = app.admin(Method::POST, "/networks", Some(json!({"name": format!("Trackier {t}")}))).await;
    assert_eq!(n.status, 201, "{}", n.text);
    let token = n.body["data"]["network"]["postback_token"].as_str().unwrap().to_string();
    assert!(token.starts_with("hb_pb_"));

    let a = app.partner(None).await;
    let (hook_url, received) = crate::webhook_smoke::receiver().await;
    for event in ["reward.queued", "reward.paid"] {
        let w = post(&app, &a.key, "/v1/webhooks", json!({"event": event, "url": hook_url})).await;
        assert_eq!(w.status, 201, "{}", w.text);
    }
    let share = post(&app, &a.key, "/v1/campaigns", json!({"offer_id": card, "share_pct": 40, "tenant_id": "site-a"})).await;
    let flat = post(&app, &a.key, "/v1/campaigns", json!({"offer_id": loan, "flat_reward": 5, "tenant_id": "site-a"})).await;
    let link = |c: &crate::helpers::Answer| json!({"campaign_id": c.body["data"]["campaign"]["campaign_id"]});
    let share_code = post(&app, &a.key, "/v1/links", link(&share)).await.body["data"]["link"]["code"].as_str().unwrap().to_string();
    let flat_code = post(&app, &a.key, "/v1/links", link(&flat)).await.body["data"]["link"]["code"].as_str().unwrap().to_string();
    let user = format!("user-{t}");
    let c1 = click(&app, &share_code, &user).await;
    let c2 = click(&app, &flat_code, &user).await;
    let c3 = click(&app, &share_code, &user).await;

    // Bad postbacks: token, fields, unknown click.
    postback(&app, "click_id=x").await.assert_error(401, "Postback token is missing.", "unauthenticated");
    postback(&app, "token=nope&click_id=x").await.assert_error(401, "Postback token is invalid.", "unauthenticated");
    let bad = postback(&app, &format!("token={token}&payout=1.234&currency=JPY&status=won")).await;
    assert_eq!(bad.status, 422, "{}", bad.text);
    for f in ["click_id", "txn_id", "payout", "currency", "status"] {
        assert!(bad.body["errors"][f].is_array(), "{f}: {}", bad.text);
    }
    let unknown = postback(&app, &format!("token={token}&click_id=cNoSuchClick&txn_id=x&payout=1&currency=USD&status=pending")).await;
    assert!(unknown.status == 422 && unknown.body["errors"]["click_id"].is_array(), "{}", unknown.text);

    let pb = |click: &str, txn: &str, payout: &str, status: &str| format!("token={token}&click_id={click}&txn_id={txn}-{t}&payout={payout}&currency=USD&status={status}");
    // A: pending twice, then approved twice. B: approved before pending. C: pending, then rejected.
    for q in [pb(&c1, "A", "10.00", "pending"), pb(&c1, "A", "10.00", "pending")] {
        let r = postback(&app, &q).await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.body["data"]["status"], "accepted");
    }
    let form = app
        .client
        .post(app.url("/v1/postbacks"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(pb(&c1, "A", "10.00", "approved"))
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), 200);
    let as_json: Value = serde_json::from_str(&format!(
        r#"{{"token":"{token}","click_id":"{c1}","txn_id":"A-{t}","payout":10.00,"currency":"USD","status":"approved"}}"#
    ))
    .unwrap();
    assert_eq!(app.client.post(app.url("/v1/postbacks")).json(&as_json).send().await.unwrap().status(), 200);
    assert_eq!(postback(&app, &pb(&c2, "B", "3.00", "approved")).await.status, 200);
    assert_eq!(postback(&app, &pb(&c2, "B", "3.00", "pending")).await.status, 200);
    assert_eq!(postback(&app, &pb(&c3, "C", "8.00", "pending")).await.status, 200);
    assert_eq!(postback(&app, &pb(&c3, "C", "8.00", "rejected")).await.status, 200);

    let path = format!("/v1/rewards/user?user_id={user}&tenant_id=site-a");
    let statuses = |v: &Value| {
        let mut s: Vec<(f64, String)> = v["data"]["rewards"]
            .as_array()
            .map(|a| a.iter().map(|r| (r["amount"].as_f64().unwrap(), r["status"].as_str().unwrap().to_string())).collect())
            .unwrap_or_default();
        s.sort_by(|a, b| a.partial_cmp(b).unwrap());
        s
    };
    let want = vec![(3.0, "queued".to_string()), (3.2, "rejected".to_string()), (4.0, "queued".to_string())];
    let body = eventually(&app, &a.key, &path, |v| statuses(v) == want).await;
    assert_eq!(body["data"]["totals"]["queued"]["USD"], json!(7.0), "{body}");
    let first = &body["data"]["rewards"][0];
    for f in ["reward_id", "conversion_id", "campaign_id", "offer_id", "amount", "currency", "status", "created_at", "updated_at", "paid_at"] {
        assert!(first.get(f).is_some(), "{f} in {first}");
    }

    // Without reward_ids every queued reward is paid; the real-backend run shares its keyspace
    // with other tests, so it names its own.
    let own: Vec<Value> = body["data"]["rewards"].as_array().unwrap().iter().filter(|r| r["status"] == "queued").map(|r| r["reward_id"].clone()).collect();
    let pay_body = if crate::helpers::real_backends() { json!({"reward_ids": own}) } else { json!({}) };
    let paid = app.admin(Method::POST, "/rewards/pay", Some(pay_body)).await;
    assert_eq!(paid.status, 200, "{}", paid.text);
    assert!(paid.body["data"]["paid"].as_u64().unwrap() >= 2);
    let body = eventually(&app, &a.key, &path, |v| v["data"]["totals"]["paid"]["USD"] == json!(7.0)).await;
    assert!(body["data"]["rewards"].as_array().unwrap().iter().filter(|r| r["status"] == "paid").all(|r| r["paid_at"].is_string()));

    // Webhooks: reward.queued and reward.paid for A and B, with the reward and its user.
    for _ in 0..300 {
        if received.lock().unwrap().iter().filter(|(b, _)| b["reward"]["user_id"] == json!(user)).count() >= 4 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let got: Vec<Value> = received.lock().unwrap().iter().map(|(b, _)| b.clone()).filter(|b| b["reward"]["user_id"] == json!(user)).collect();
    let mut events: Vec<&str> = got.iter().map(|b| b["event"].as_str().unwrap()).collect();
    events.sort();
    assert_eq!(events, vec!["reward.paid", "reward.paid", "reward.queued", "reward.queued"], "{got:?}");
    assert!(got.iter().all(|b| b["reward"]["tenant_id"] == "site-a" && b["webhook_id"].is_u64() && b["occurred_at"].is_string()));

    // On real backends the store is shared with tests running at the same time: a payment
    // between its legs and its status is seen for a moment, so the check may be repeated.
    let mut outcome = hissaback::partner::ledger::check(&app.state.store).await.unwrap();
    for _ in 0..10 {
        if outcome.1.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        outcome = hissaback::partner::ledger::check(&app.state.store).await.unwrap();
    }
    let (checked, problems) = outcome;
    assert!(checked >= 3 && problems.is_empty(), "{problems:?}");

    // Another partner sees none of these rewards.
    let b = app.partner(None).await;
    let other = app.get_with_key(&path, &b.key).await;
    assert_eq!(other.body["data"]["rewards"], json!([]));
    app.get_with_key("/v1/rewards/user?tenant_id=site-a", &a.key).await.assert_failure(422, "validation_failed");
}

/// A partner with one approved conversion (reward 4.00 USD, queued); answers the partner
/// and the rewards path of its end user.
async fn queued_reward(app: &TestApp) -> (crate::helpers::Partner, String) {
    let t = tag();
    let (_, card, _) = catalogue(app, &t).await;
    let n = app.admin(Method::POST, "/networks", Some(json!({"name": "Net"}))).await;
    let token = n.body["data"]["network"]["postback_token"].as_str().unwrap().to_string();
    let p = app.partner(None).await;
    let c = post(app, &p.key, "/v1/campaigns", json!({"offer_id": card, "share_pct": 40, "tenant_id": "t1"})).await;
    let code = post(app, &p.key, "/v1/links", json!({"campaign_id": c.body["data"]["campaign"]["campaign_id"]})).await.body["data"]["link"]["code"]
        .as_str()
        .unwrap()
        .to_string();
    let user = format!("u-{t}");
    let click_id = click(app, &code, &user).await;
    let r = postback(app, &format!("token={token}&click_id={click_id}&txn_id=T-{t}&payout=10&currency=USD&status=approved")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let path = format!("/v1/rewards/user?user_id={user}&tenant_id=t1");
    eventually(app, &p.key, &path, |v| v["data"]["rewards"][0]["status"] == "queued").await;
    (p, path)
}

#[actix_web::test]
async fn the_http_payout_provider_is_called_with_an_idempotency_key() {
    use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
    use std::sync::{Arc, Mutex};
    let calls: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
    let failing = Arc::new(Mutex::new(true));
    let (sink, fail) = (calls.clone(), failing.clone());
    let server = HttpServer::new(move || {
        let (sink, fail) = (sink.clone(), fail.clone());
        App::new().default_service(web::to(move |req: HttpRequest, body: web::Bytes| {
            let (sink, fail) = (sink.clone(), fail.clone());
            async move {
                let key = req.headers().get("idempotency-key").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
                sink.lock().unwrap().push((key, serde_json::from_slice(&body).unwrap_or(Value::Null)));
                if *fail.lock().unwrap() { HttpResponse::ServiceUnavailable().finish() } else { HttpResponse::Ok().finish() }
            }
        }))
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .unwrap();
    let url = format!("http://{}/payouts", server.addrs()[0]);
    actix_web::rt::spawn(server.run());
    let app = crate::helpers::spawn_app_with(|s| {
        s.payouts.provider = "http".into();
        s.payouts.http_url = url.clone();
    })
    .await;
    let (p, path) = queued_reward(&app).await;
    let reward_id = app.get_with_key(&path, &p.key).await.body["data"]["rewards"][0]["reward_id"].as_u64().unwrap();

    // The provider refuses: nothing is paid, the reward stays queued.
    let r = app.admin(Method::POST, "/rewards/pay", Some(json!({"reward_ids": [reward_id]}))).await;
    assert_eq!(r.body["data"], json!({"paid": 0, "failed": 1, "pending": 0, "provider": "http"}), "{}", r.text);
    assert_eq!(app.get_with_key(&path, &p.key).await.body["data"]["rewards"][0]["status"], "queued");
    // It accepts: paid, with the same idempotency key both times.
    *failing.lock().unwrap() = false;
    // A reward named twice (and an unknown id) is still paid once.
    let r = app.admin(Method::POST, "/rewards/pay", Some(json!({"reward_ids": [reward_id, 987654321, reward_id]}))).await;
    assert_eq!(r.body["data"]["paid"], 1, "{}", r.text);
    assert_eq!(app.get_with_key(&path, &p.key).await.body["data"]["rewards"][0]["status"], "paid");
    let calls = calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 2);
    assert!(calls.iter().all(|(k, _)| *k == format!("reward-{reward_id}")));
    assert_eq!(calls[1].1["amount"], json!(4.0));
    assert_eq!(calls[1].1["tenant_id"], "t1");
    // Paying again pays nothing twice.
    let again = app.admin(Method::POST, "/rewards/pay", Some(json!({"reward_ids": [reward_id]}))).await;
    assert_eq!(again.body["data"]["paid"], 0);
}

/// The sync job pulls the network feed, creates brands and offers, updates a changed offer,
/// skips invalid entries, survives a broken feed, and reports itself in the metrics.
#[actix_web::test]
async fn offers_are_synced_from_the_network_feed() {
    use actix_web::{web, App, HttpResponse, HttpServer};
    use std::sync::{Arc, Mutex};
    let t = tag();
    let feed = Arc::new(Mutex::new(json!({"offers": [
        {"id": format!("trk-1-{t}"), "brand": format!("Feed Brand {t}"), "name": format!("Feed Card {t}"), "category": "finance",
         "payout_percent": 12.5, "default_share_pct": 40, "currency": "USD", "tracking_url": "https://trk.example/c?o=1&click_id={click_id}", "extra": true},
        {"id": format!("trk-2-{t}"), "brand": format!("Feed Brand {t}"), "name": format!("Feed Loan {t}"), "category": "lending",
         "payout_percent": 30, "tracking_url": "https://trk.example/c?o=2&click_id={click_id}"},
        {"id": format!("trk-3-{t}"), "brand": "X", "name": format!("No macro {t}"), "payout_percent": 5, "tracking_url": "https://trk.example/c"},
    ]})));
    let served = feed.clone();
    let server = HttpServer::new(move || {
        let served = served.clone();
        App::new().default_service(web::to(move || {
            let body = served.lock().unwrap().clone();
            async move {
                if body.is_null() { HttpResponse::InternalServerError().finish() } else { HttpResponse::Ok().json(body) }
            }
        }))
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .unwrap();
    let url = format!("http://{}/feed.json", server.addrs()[0]);
    actix_web::rt::spawn(server.run());
    let app = crate::helpers::spawn_app_with(|s| {
        s.partner.offers_feed_url = Some(url.clone());
        s.partner.offers_sync_interval = "200ms".into();
    })
    .await;
    let p = app.partner(None).await;
    let path = format!("/v1/offers?q={t}");
    let listed = eventually(&app, &p.key, &path, |v| v["data"]["offers"].as_array().is_some_and(|a| a.len() == 2)).await;
    let card = listed["data"]["offers"].as_array().unwrap().iter().find(|o| o["name"] == json!(format!("Feed Card {t}"))).unwrap().clone();
    assert_eq!((card["base_commission"].clone(), card["default_share_pct"].clone(), card["brand_name"].clone()), (json!(12.5), json!(40), json!(format!("Feed Brand {t}"))));
    let brand_ids: Vec<u64> = listed["data"]["offers"].as_array().unwrap().iter().map(|o| o["brand_id"].as_u64().unwrap()).collect();
    assert_eq!(brand_ids[0], brand_ids[1], "one brand, found by name");

    // The feed changes an offer: the same offer id is updated.
    feed.lock().unwrap()["offers"][0]["payout_percent"] = json!(15);
    let updated = eventually(&app, &p.key, &path, |v| v["data"]["offers"].as_array().is_some_and(|a| a.iter().any(|o| o["base_commission"] == json!(15)))).await;
    let again = updated["data"]["offers"].as_array().unwrap().iter().find(|o| o["base_commission"] == json!(15)).unwrap();
    assert_eq!(again["id"], card["id"]);
    assert_eq!(updated["data"]["offers"].as_array().unwrap().len(), 2);

    // A broken feed is a counted failure and changes nothing.
    *feed.lock().unwrap() = Value::Null;
    for _ in 0..100 {
        if app.get("/metrics").await.text.contains("hissaback_offer_sync_runs_total{outcome=\"failure\"}") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let metrics = app.get("/metrics").await.text;
    for name in ["hissaback_offer_sync_runs_total{outcome=\"success\"}", "hissaback_offer_sync_runs_total{outcome=\"failure\"}", "hissaback_offer_sync_duration_seconds_bucket", "hissaback_offer_sync_last_success_timestamp_seconds", "hissaback_offer_sync_feed_offers 3"] {
        assert!(metrics.contains(name), "{name} missing from /metrics");
    }
    assert_eq!(app.get_with_key(&path, &p.key).await.body["data"]["offers"].as_array().unwrap().len(), 2);
}
