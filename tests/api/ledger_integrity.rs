//! Issue 11, "one writer per conversion": the ledger stays exact however postbacks, payments
//! and their outcomes interleave. Later payouts adjust the booked amounts until payment;
//! payment is two-phase (queued → paying → paid, or back to queued); a reversal that meets a
//! payment in flight waits for its outcome (a clawback after a successful payment, an
//! ordinary reversal after a failed one); a clawback is netted by the user's next payment;
//! concurrent postbacks and payment calls change a conversion once; every reward webhook goes
//! out exactly once per transition; `ledger::check` finds nothing wrong.
//!
//! Each test has its own app, payout provider, webhook receiver, tag, tenant and end user, so
//! the real-backend run (one keyspace shared by every test) does not mix them up.

use crate::helpers::{eventually, real_backends, spawn_app, spawn_app_with, Answer, TestApp};
use crate::partner::{catalogue, post, tag};
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use reqwest::Method;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

const REWARD_EVENTS: [&str; 4] = ["reward.queued", "reward.paid", "reward.rejected", "reward.reversed"];

/// How long a condition reached through the event bus may take (Kafka is slower to start).
fn patience() -> Duration {
    Duration::from_secs(if real_backends() { 60 } else { 30 })
}

/// How long to keep watching after a count was reached, so a duplicate would show.
fn quiet_period() -> Duration {
    Duration::from_millis(if real_backends() { 3000 } else { 1500 })
}

/// A local payout endpoint for the `http` provider: records each call (its `Idempotency-Key`
/// and JSON body), answers with the status set by [`Provider::answer`], and while
/// [`Provider::hold`] is in force keeps every request open until [`Provider::release`].
#[derive(Clone)]
struct Provider {
    url: String,
    calls: Arc<Mutex<Vec<(String, Value)>>>,
    status: Arc<AtomicU16>,
    gate: Arc<tokio::sync::watch::Sender<bool>>,
}

impl Provider {
    async fn start() -> Provider {
        let calls: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
        let status = Arc::new(AtomicU16::new(200));
        let gate = Arc::new(tokio::sync::watch::channel(false).0);
        let (c, s, g) = (calls.clone(), status.clone(), gate.clone());
        let server = HttpServer::new(move || {
            let (c, s, g) = (c.clone(), s.clone(), g.clone());
            App::new().default_service(web::to(move |req: HttpRequest, body: web::Bytes| {
                let (c, s, g) = (c.clone(), s.clone(), g.clone());
                async move {
                    let key = req.headers().get("idempotency-key").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
                    c.lock().unwrap().push((key, serde_json::from_slice(&body).unwrap_or(Value::Null)));
                    let mut open = g.subscribe();
                    let _ = open.wait_for(|held| !*held).await;
                    let code = actix_web::http::StatusCode::from_u16(s.load(Ordering::SeqCst)).unwrap();
                    HttpResponse::build(code).finish()
                }
            }))
        })
        .workers(1)
        .bind("127.0.0.1:0")
        .unwrap();
        let url = format!("http://{}/pay", server.addrs()[0]);
        actix_web::rt::spawn(server.run());
        Provider { url, calls, status, gate }
    }

    /// The status later answers get (200 or 500).
    fn answer(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    /// Requests from now on wait for [`Provider::release`].
    fn hold(&self) {
        self.gate.send_replace(true);
    }

    /// Answers the held requests (and later ones) with `status`.
    fn release(&self, status: u16) {
        self.answer(status);
        self.gate.send_replace(false);
    }

    /// The calls made for one reward: (idempotency key, body).
    fn calls_for(&self, reward_id: u64) -> Vec<(String, Value)> {
        self.calls.lock().unwrap().iter().filter(|(_, b)| b["reward_id"] == json!(reward_id)).cloned().collect()
    }
}

/// An app paying through `provider` (the `http` payout provider), with a long provider
/// timeout (held requests must not time out) and the given `payouts.wait_ms`.
async fn app_paying_through(provider: &Provider, wait_ms: Option<u64>) -> TestApp {
    let url = provider.url.clone();
    spawn_app_with(move |s| {
        s.payouts.provider = "http".into();
        s.payouts.http_url = url;
        s.payouts.timeout_ms = 120_000;
        if let Some(w) = wait_ms {
            s.payouts.wait_ms = w;
        }
    })
    .await
}

/// One partner's setup: a network (its postback token), a campaign giving the end user 40%
/// of the payout on a tenant of its own, a link to it and the end user.
struct Flow {
    key: String,
    token: String,
    code: String,
    user: String,
    tenant: String,
    t: String,
}

impl Flow {
    async fn new(app: &TestApp) -> Flow {
        let t = tag();
        let (_, card, _) = catalogue(app, &t).await;
        let n = app.admin(Method::POST, "/networks", Some(json!({"name": format!("Net {t}")}))).await;
        assert_eq!(n.status, 201, "{}", n.text);
        let token = n.body["data"]["network"]["postback_token"].as_str().unwrap().to_string();
        let p = app.partner(None).await;
        let tenant = format!("tenant-{t}");
        let c = post(app, &p.key, "/v1/campaigns", json!({"offer_id": card, "share_pct": 40, "tenant_id": tenant})).await;
        assert_eq!(c.status, 201, "{}", c.text);
        let l = post(app, &p.key, "/v1/links", json!({"campaign_id": c.body["data"]["campaign"]["campaign_id"]})).await;
        assert_eq!(l.status, 201, "{}", l.text);
        let code = l.body["data"]["link"]["code"].as_str().unwrap().to_string();
        Flow { key: p.key, token, code, user: format!("user-{t}"), tenant, t }
    }

    /// A click of the end user (a new click id).
    async fn click(&self, app: &TestApp) -> String {
        crate::partner::click(app, &self.code, &self.user).await
    }

    fn query(&self, click: &str, txn: &str, payout: &str, status: &str) -> String {
        format!("token={}&click_id={click}&txn_id={txn}-{}&payout={payout}&currency=USD&status={status}", self.token, self.t)
    }

    /// Posts a postback (GET), asserts it was accepted and answers its conversion id.
    async fn postback(&self, app: &TestApp, click: &str, txn: &str, payout: &str, status: &str) -> u64 {
        let r = crate::partner::postback(app, &self.query(click, txn, payout, status)).await;
        assert_eq!(r.status, 200, "postback {txn} {payout} {status}: {}", r.text);
        assert_eq!(r.body["data"]["status"], "accepted", "{}", r.text);
        r.body["data"]["conversion_id"].as_u64().unwrap_or_else(|| panic!("conversion_id in {}", r.text))
    }

    /// A click and an approved postback for it; waits for the reward to be queued.
    async fn queued(&self, app: &TestApp, txn: &str, payout: &str) -> (String, u64) {
        let click = self.click(app).await;
        let id = self.postback(app, &click, txn, payout, "approved").await;
        self.wait_for(app, id, "queued", |r| r["status"] == "queued").await;
        (click, id)
    }

    /// `data` of `/v1/rewards/user` for the end user.
    async fn rewards(&self, app: &TestApp) -> Value {
        let r = app.get_with_key(&format!("/v1/rewards/user?user_id={}&tenant_id={}", self.user, self.tenant), &self.key).await;
        assert_eq!(r.status, 200, "{}", r.text);
        r.body["data"].clone()
    }

    /// The reward `id` in the user's rewards (`Null` when not there).
    async fn reward(&self, app: &TestApp, id: u64) -> Value {
        let data = self.rewards(app).await;
        data["rewards"].as_array().unwrap().iter().find(|r| r["reward_id"] == json!(id)).cloned().unwrap_or(Value::Null)
    }

    /// Waits until the reward `id` satisfies `ok`; answers it.
    async fn wait_for(&self, app: &TestApp, id: u64, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
        let last = Arc::new(Mutex::new(Value::Null));
        let seen = last.clone();
        let found = tokio::time::timeout(patience(), async {
            loop {
                let r = self.reward(app, id).await;
                *seen.lock().unwrap() = r.clone();
                if !r.is_null() && ok(&r) {
                    return r;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        found.unwrap_or_else(|_| panic!("timed out waiting for reward {id} to be {what}; last seen {}", last.lock().unwrap()))
    }
}

/// A webhook receiver with a webhook of the partner for each of `events`.
async fn hooks(app: &TestApp, flow: &Flow, events: &[&str]) -> Arc<Mutex<Vec<(Value, Vec<(String, String)>)>>> {
    let (url, received) = crate::webhook_smoke::receiver().await;
    for event in events {
        let w = post(app, &flow.key, "/v1/webhooks", json!({"event": event, "url": url})).await;
        assert_eq!(w.status, 201, "webhook {event}: {}", w.text);
    }
    received
}

/// The events the receiver got for reward `id`, sorted.
fn events_of(received: &Arc<Mutex<Vec<(Value, Vec<(String, String)>)>>>, id: u64) -> Vec<String> {
    let mut e: Vec<String> = received
        .lock()
        .unwrap()
        .iter()
        .filter(|(b, _)| b["reward"]["reward_id"] == json!(id))
        .map(|(b, _)| b["event"].as_str().unwrap_or("?").to_string())
        .collect();
    e.sort();
    e
}

/// Waits until the receiver has as many events for reward `id` as `want` (or the patience
/// runs out), watches for a quiet period more, then asserts it got exactly `want`.
async fn assert_webhooks(received: &Arc<Mutex<Vec<(Value, Vec<(String, String)>)>>>, id: u64, want: &[&str]) {
    let deadline = std::time::Instant::now() + patience();
    while events_of(received, id).len() < want.len() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(quiet_period()).await;
    let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
    want.sort();
    let got = events_of(received, id);
    let bodies: Vec<Value> = received.lock().unwrap().iter().map(|(b, _)| b.clone()).filter(|b| b["reward"]["reward_id"] == json!(id)).collect();
    assert_eq!(got, want, "reward webhooks for reward {id}: {bodies:#?}");
    for b in &bodies {
        assert!(b["webhook_id"].is_u64() && b["occurred_at"].is_string(), "{b}");
        for f in ["reward_id", "conversion_id", "campaign_id", "offer_id", "amount", "currency", "status", "clawback", "user_id", "tenant_id"] {
            assert!(b["reward"].get(f).is_some(), "{f} in {b}");
        }
    }
}

async fn pay(app: &TestApp, ids: &[u64]) -> Answer {
    let r = app.admin(Method::POST, "/rewards/pay", Some(json!({ "reward_ids": ids }))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r
}

/// `ledger::check` finds no problem (on real backends the keyspace is shared with tests
/// running now, whose payments may be between two writes: the check is repeated for a few
/// seconds). Answers the number of conversions checked.
async fn assert_ledger_clean(app: &TestApp) -> usize {
    let deadline = std::time::Instant::now() + Duration::from_secs(if real_backends() { 10 } else { 3 });
    loop {
        let (count, problems) = hissaback::partner::ledger::check(&app.state.store).await.expect("ledger check runs");
        if problems.is_empty() {
            return count;
        }
        assert!(std::time::Instant::now() < deadline, "ledger check problems: {problems:#?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A per-currency total of `totals` (`None` when the currency is not listed).
fn total(data: &Value, which: &str, currency: &str) -> Option<f64> {
    data["totals"][which].get(currency).map(|v| v.as_f64().unwrap_or_else(|| panic!("totals.{which}.{currency} is {v}")))
}

/// The provider's calls for reward `id`, after a quiet period in which no more arrive.
async fn settled_calls(provider: &Provider, id: u64) -> Vec<(String, Value)> {
    tokio::time::sleep(quiet_period()).await;
    provider.calls_for(id)
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

/// `/v1/webhooks` offers the four reward events, `reward.rejected` and `reward.reversed`
/// included, and accepts webhooks for them.
#[actix_web::test]
async fn the_reward_webhook_events_are_supported() {
    let app = spawn_app().await;
    let flow = Flow::new(&app).await;
    let listed = app.get_with_key("/v1/webhooks", &flow.key).await;
    assert_eq!(listed.status, 200, "{}", listed.text);
    let supported = listed.body["data"]["supported_events"].as_array().unwrap_or_else(|| panic!("supported_events in {}", listed.text));
    for event in REWARD_EVENTS {
        assert!(supported.contains(&json!(event)), "{event} in {supported:?}");
    }
    hooks(&app, &flow, &REWARD_EVENTS).await;
}

/// A reversal that arrives while the payment is in flight (the provider holds the request)
/// waits for it: the reward stays `paying`; when the provider then pays, the reversal is a
/// clawback (status `reversed`, clawback 4.00, the user owes 4.00), the provider was called
/// once, each transition's webhook went out once, and the ledger is exact.
#[actix_web::test]
async fn reversal_during_payment_in_flight_is_a_clawback_not_a_payment() {
    reversal_during_payment_in_flight(200).await;
}

/// The same reversal in flight, the provider then refusing the payment: an ordinary
/// reversal (status `reversed`, no clawback, nothing owed, never paid), no `reward.paid`.
#[actix_web::test]
async fn reversal_during_a_failing_payment_in_flight_is_an_ordinary_reversal() {
    reversal_during_payment_in_flight(500).await;
}

async fn reversal_during_payment_in_flight(outcome: u16) {
    let provider = Provider::start().await;
    // The pay call answers quickly (`pending`) while the provider holds the payment.
    let app = app_paying_through(&provider, Some(300)).await;
    let flow = Flow::new(&app).await;
    let received = hooks(&app, &flow, &REWARD_EVENTS).await;
    let (click, id) = flow.queued(&app, "A", "10.00").await;
    assert_eq!(flow.reward(&app, id).await["amount"], json!(4.0));

    provider.hold();
    let r = pay(&app, &[id]).await;
    assert_eq!(r.body["data"], json!({"paid": 0, "failed": 0, "pending": 1, "provider": "http"}), "{}", r.text);
    eventually(patience(), "the provider to be called", || async { (!provider.calls_for(id).is_empty()).then_some(()) }).await;
    assert_eq!(flow.reward(&app, id).await["status"], "paying");

    // The network reverses the conversion while the provider still holds the payment.
    flow.postback(&app, &click, "A", "10.00", "reversed").await;
    let store = app.state.store.clone();
    eventually(patience(), "the writer to hold the reversal (or apply it)", || {
        let store = store.clone();
        async move {
            let c = store.get_conversion(id).await.unwrap().unwrap();
            (c.held.is_some() || c.status.as_str() != "paying").then_some(())
        }
    })
    .await;
    let during = flow.reward(&app, id).await;
    assert_eq!(during["status"], "paying", "a reversal must wait for the payment in flight: {during}");

    provider.release(outcome);
    let r = flow.wait_for(&app, id, "reversed", |r| r["status"] == "reversed").await;
    assert_eq!(r["amount"], json!(4.0), "{r}");
    let data = flow.rewards(&app).await;
    let calls = settled_calls(&provider, id).await;
    assert_eq!(calls.len(), 1, "the provider is called once: {calls:?}");
    assert_eq!(calls[0].0, format!("reward-{id}"));
    assert_eq!(calls[0].1["amount"], json!(4.0));
    if outcome == 200 {
        // Paid, then reversed: the user owes the reward back.
        assert_eq!(r["clawback"], json!(4.0), "{r}");
        assert!(r["paid_at"].is_string(), "the payment happened: {r}");
        assert_eq!(total(&data, "owed", "USD"), Some(-4.0), "{}", data["totals"]);
        assert_eq!(total(&data, "balance", "USD"), Some(-4.0), "{}", data["totals"]);
        assert_eq!(total(&data, "paid", "USD"), None, "{}", data["totals"]);
        assert_webhooks(&received, id, &["reward.queued", "reward.paid", "reward.reversed"]).await;
    } else {
        // Never paid: an ordinary reversal.
        assert_eq!(r["clawback"], json!(0.0), "{r}");
        assert_eq!(r["paid_at"], Value::Null, "{r}");
        assert!(total(&data, "owed", "USD").unwrap_or(0.0) == 0.0, "nothing is owed: {}", data["totals"]);
        assert!(total(&data, "balance", "USD").unwrap_or(0.0) == 0.0, "{}", data["totals"]);
        assert_webhooks(&received, id, &["reward.queued", "reward.reversed"]).await;
    }
    for which in ["queued", "paying"] {
        assert_eq!(total(&data, which, "USD").unwrap_or(0.0), 0.0, "totals.{which}: {}", data["totals"]);
    }
    assert!(assert_ledger_clean(&app).await >= 1);
}

/// Eight concurrent `POST /admin/v1/rewards/pay` for one reward: the provider is called
/// once, the answers' `paid` sum to 1 (none failed, none left pending), `reward.paid` goes
/// out once, the reward is paid and the ledger is exact.
#[actix_web::test]
async fn concurrent_pay_calls_pay_a_reward_once() {
    let provider = Provider::start().await;
    let app = app_paying_through(&provider, None).await;
    let flow = Flow::new(&app).await;
    let received = hooks(&app, &flow, &REWARD_EVENTS).await;
    let (_, id) = flow.queued(&app, "A", "10.00").await;

    // The provider holds the first payment a moment so the calls overlap it.
    provider.hold();
    let release = async {
        eventually(patience(), "the provider to be called", || async { (!provider.calls_for(id).is_empty()).then_some(()) }).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        provider.release(200);
    };
    let ids = [id];
    let calls = futures_util::future::join_all((0..8).map(|_| pay(&app, &ids)));
    let (answers, ()) = futures_util::future::join(calls, release).await;
    let sum = |f: &str| answers.iter().map(|a| a.body["data"][f].as_u64().unwrap_or_else(|| panic!("{f} in {}", a.text))).sum::<u64>();
    let texts: Vec<&str> = answers.iter().map(|a| a.text.as_str()).collect();
    assert_eq!((sum("paid"), sum("failed"), sum("pending")), (1, 0, 0), "{texts:#?}");

    let r = flow.wait_for(&app, id, "paid", |r| r["status"] == "paid").await;
    assert!(r["paid_at"].is_string(), "{r}");
    let calls = settled_calls(&provider, id).await;
    assert_eq!(calls.len(), 1, "the provider is called once: {calls:?}");
    assert_webhooks(&received, id, &["reward.queued", "reward.paid"]).await;
    let data = flow.rewards(&app).await;
    assert_eq!(total(&data, "paid", "USD"), Some(4.0), "{}", data["totals"]);
    // Paying it again pays nothing.
    assert_eq!(pay(&app, &[id]).await.body["data"], json!({"paid": 0, "failed": 0, "pending": 0, "provider": "http"}));
    assert_eq!(settled_calls(&provider, id).await.len(), 1);
    assert_ledger_clean(&app).await;
}

/// Redelivery idempotence (a stand-in for "webhooks survive a publish failure", which a
/// black-box test cannot provoke): the same approved postback 20 times at once makes one
/// queued reward and one `reward.queued`; paying it makes one `reward.paid`.
#[actix_web::test]
async fn reward_webhooks_go_out_once_however_often_the_postback_comes() {
    let app = spawn_app().await;
    let flow = Flow::new(&app).await;
    let received = hooks(&app, &flow, &REWARD_EVENTS).await;
    let click = flow.click(&app).await;
    let ids = futures_util::future::join_all((0..20).map(|_| flow.postback(&app, &click, "A", "10.00", "approved"))).await;
    let id = ids[0];
    assert!(ids.iter().all(|x| *x == id), "{ids:?}");
    let r = flow.wait_for(&app, id, "queued", |r| r["status"] == "queued").await;
    assert_eq!(r["amount"], json!(4.0));
    assert_webhooks(&received, id, &["reward.queued"]).await;
    assert_eq!(flow.rewards(&app).await["rewards"].as_array().unwrap().len(), 1);

    let p = pay(&app, &[id]).await;
    assert_eq!(p.body["data"], json!({"paid": 1, "failed": 0, "pending": 0, "provider": "manual"}), "{}", p.text);
    flow.wait_for(&app, id, "paid", |r| r["status"] == "paid").await;
    assert_webhooks(&received, id, &["reward.queued", "reward.paid"]).await;
    assert_ledger_clean(&app).await;
}

/// A later postback adjusts the booked amounts until payment: `pending 10.00` books a 4.00
/// pending reward, `approved 250.00` queues 100.00, `approved 200.00` adjusts it to 80.00
/// (the same postback again changes nothing); once paid, `approved 300.00` changes nothing.
/// The ledger is exact at each stage; the adjustments send no extra `reward.queued`.
#[actix_web::test]
async fn a_later_payout_adjusts_the_booked_amounts() {
    let app = spawn_app().await;
    let flow = Flow::new(&app).await;
    let received = hooks(&app, &flow, &REWARD_EVENTS).await;
    let click = flow.click(&app).await;

    let id = flow.postback(&app, &click, "A", "10.00", "pending").await;
    let r = flow.wait_for(&app, id, "pending", |r| r["status"] == "pending").await;
    assert_eq!(r["amount"], json!(4.0), "{r}");
    assert_eq!(total(&flow.rewards(&app).await, "pending", "USD"), Some(4.0));

    flow.postback(&app, &click, "A", "250.00", "approved").await;
    let r = flow.wait_for(&app, id, "queued", |r| r["status"] == "queued").await;
    assert_eq!(r["amount"], json!(100.0), "the approval books the later payout: {r}");
    let data = flow.rewards(&app).await;
    assert_eq!((total(&data, "queued", "USD"), total(&data, "pending", "USD")), (Some(100.0), None), "{}", data["totals"]);
    assert_ledger_clean(&app).await;

    flow.postback(&app, &click, "A", "200.00", "approved").await;
    let r = flow.wait_for(&app, id, "adjusted to 80.00", |r| r["amount"] == json!(80.0)).await;
    assert_eq!(r["status"], "queued", "{r}");
    assert_eq!(app.state.store.get_conversion(id).await.unwrap().unwrap().payout_minor, 20000);
    flow.postback(&app, &click, "A", "200.00", "approved").await;
    assert_eq!(total(&flow.rewards(&app).await, "queued", "USD"), Some(80.0));
    assert_ledger_clean(&app).await;

    let p = pay(&app, &[id]).await;
    assert_eq!(p.body["data"], json!({"paid": 1, "failed": 0, "pending": 0, "provider": "manual"}), "{}", p.text);
    flow.wait_for(&app, id, "paid", |r| r["status"] == "paid").await;

    // After payment a new payout changes nothing, for as long as we watch.
    flow.postback(&app, &click, "A", "300.00", "approved").await;
    let until = std::time::Instant::now() + quiet_period() * 2;
    while std::time::Instant::now() < until {
        let r = flow.reward(&app, id).await;
        assert_eq!((r["status"].clone(), r["amount"].clone()), (json!("paid"), json!(80.0)), "a paid reward is not adjusted: {r}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let c = app.state.store.get_conversion(id).await.unwrap().unwrap();
    assert_eq!((c.payout_minor, c.reward_minor), (20000, 8000));
    let data = flow.rewards(&app).await;
    assert_eq!(total(&data, "paid", "USD"), Some(80.0), "{}", data["totals"]);
    assert_eq!(data["rewards"].as_array().unwrap().len(), 1);
    assert_webhooks(&received, id, &["reward.queued", "reward.paid"]).await;
    assert_ledger_clean(&app).await;
}

/// A reversal after payment is a clawback: reward A (4.00) paid then reversed shows
/// `reversed` with clawback 4.00, `owed` -4.00 and one `reward.reversed`; the user's next
/// reward B (10.00) is paid net of it (the provider is asked for 6.00) and nothing is owed
/// any more. A rejection of a queued reward C is no clawback: `rejected`, one
/// `reward.rejected`, nothing owed.
#[actix_web::test]
async fn reversal_after_payment_is_clawed_back_and_netted() {
    let provider = Provider::start().await;
    let app = app_paying_through(&provider, None).await;
    let flow = Flow::new(&app).await;
    let received = hooks(&app, &flow, &REWARD_EVENTS).await;

    let (click_a, a) = flow.queued(&app, "A", "10.00").await;
    let p = pay(&app, &[a]).await;
    assert_eq!(p.body["data"], json!({"paid": 1, "failed": 0, "pending": 0, "provider": "http"}), "{}", p.text);
    flow.wait_for(&app, a, "paid", |r| r["status"] == "paid").await;
    flow.postback(&app, &click_a, "A", "10.00", "reversed").await;
    let r = flow.wait_for(&app, a, "reversed", |r| r["status"] == "reversed").await;
    assert_eq!((r["amount"].clone(), r["clawback"].clone()), (json!(4.0), json!(4.0)), "{r}");
    let data = flow.rewards(&app).await;
    assert_eq!(total(&data, "owed", "USD"), Some(-4.0), "{}", data["totals"]);
    assert_eq!(total(&data, "balance", "USD"), Some(-4.0), "{}", data["totals"]);
    assert_webhooks(&received, a, &["reward.queued", "reward.paid", "reward.reversed"]).await;
    assert_ledger_clean(&app).await;

    // The next reward nets what the user owes.
    let (_, b) = flow.queued(&app, "B", "25.00").await;
    let data = flow.rewards(&app).await;
    assert_eq!(flow.reward(&app, b).await["amount"], json!(10.0));
    assert_eq!((total(&data, "queued", "USD"), total(&data, "balance", "USD")), (Some(10.0), Some(6.0)), "{}", data["totals"]);
    let p = pay(&app, &[b]).await;
    assert_eq!(p.body["data"], json!({"paid": 1, "failed": 0, "pending": 0, "provider": "http"}), "{}", p.text);
    let r = flow.wait_for(&app, b, "paid", |r| r["status"] == "paid").await;
    assert_eq!(r["amount"], json!(10.0), "the reward itself is still 10.00: {r}");
    let calls = settled_calls(&provider, b).await;
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].0, format!("reward-{b}"));
    assert_eq!(calls[0].1["amount"], json!(6.0), "paid net of the 4.00 owed: {}", calls[0].1);
    assert_eq!(provider.calls_for(a).len(), 1, "A was paid once");
    let data = flow.rewards(&app).await;
    assert_eq!(total(&data, "owed", "USD").unwrap_or(0.0), 0.0, "nothing is owed any more: {}", data["totals"]);
    assert_eq!(total(&data, "balance", "USD").unwrap_or(0.0), 0.0, "{}", data["totals"]);
    assert_eq!(total(&data, "paid", "USD"), Some(10.0), "{}", data["totals"]);
    assert_webhooks(&received, b, &["reward.queued", "reward.paid"]).await;
    assert_ledger_clean(&app).await;

    // A rejection before payment: no clawback.
    let (click_c, c) = flow.queued(&app, "C", "5.00").await;
    flow.postback(&app, &click_c, "C", "5.00", "rejected").await;
    let r = flow.wait_for(&app, c, "rejected", |r| r["status"] == "rejected").await;
    assert_eq!((r["amount"].clone(), r["clawback"].clone(), r["paid_at"].clone()), (json!(2.0), json!(0.0), Value::Null), "{r}");
    let data = flow.rewards(&app).await;
    assert_eq!(total(&data, "owed", "USD").unwrap_or(0.0), 0.0, "{}", data["totals"]);
    assert_eq!(total(&data, "queued", "USD").unwrap_or(0.0), 0.0, "{}", data["totals"]);
    assert_webhooks(&received, c, &["reward.queued", "reward.rejected"]).await;
    assert!(provider.calls_for(c).is_empty());
    assert_ledger_clean(&app).await;
}

/// A provider answering 500: the pay call reports `failed: 1` and the reward is `queued`
/// again (no webhook); paid later through a provider answering 200, with the same
/// `Idempotency-Key: reward-{id}` both times and one `reward.paid`.
#[actix_web::test]
async fn a_failing_payment_returns_the_reward_to_queued() {
    let provider = Provider::start().await;
    let app = app_paying_through(&provider, None).await;
    let flow = Flow::new(&app).await;
    let received = hooks(&app, &flow, &REWARD_EVENTS).await;
    let (_, id) = flow.queued(&app, "A", "10.00").await;

    provider.answer(500);
    let p = pay(&app, &[id]).await;
    assert_eq!(p.body["data"], json!({"paid": 0, "failed": 1, "pending": 0, "provider": "http"}), "{}", p.text);
    let r = flow.reward(&app, id).await;
    assert_eq!((r["status"].clone(), r["paid_at"].clone()), (json!("queued"), Value::Null), "{r}");
    let data = flow.rewards(&app).await;
    assert_eq!((total(&data, "queued", "USD"), total(&data, "paying", "USD")), (Some(4.0), None), "{}", data["totals"]);
    assert_ledger_clean(&app).await;

    provider.answer(200);
    let p = pay(&app, &[id]).await;
    assert_eq!(p.body["data"], json!({"paid": 1, "failed": 0, "pending": 0, "provider": "http"}), "{}", p.text);
    let r = flow.reward(&app, id).await;
    assert_eq!(r["status"], "paid", "{r}");
    assert!(r["paid_at"].is_string(), "{r}");
    let calls = settled_calls(&provider, id).await;
    assert_eq!(calls.len(), 2, "{calls:?}");
    for (key, body) in &calls {
        assert_eq!(key, &format!("reward-{id}"));
        assert_eq!(body["amount"], json!(4.0), "{body}");
        assert_eq!((body["tenant_id"].clone(), body["user_id"].clone(), body["currency"].clone()), (json!(flow.tenant), json!(flow.user), json!("USD")), "{body}");
    }
    assert_webhooks(&received, id, &["reward.queued", "reward.paid"]).await;
    assert_ledger_clean(&app).await;
}

/// 50 concurrent postbacks of one transaction, pending and approved mixed (same payout):
/// one conversion, queued at 4.00, one `reward.queued`, an exact ledger.
#[actix_web::test]
async fn many_postbacks_concurrently_one_conversion() {
    let app = spawn_app().await;
    let flow = Flow::new(&app).await;
    let received = hooks(&app, &flow, &REWARD_EVENTS).await;
    let click = flow.click(&app).await;
    let ids = futures_util::future::join_all((0..50).map(|i| {
        let status = if i % 2 == 0 { "pending" } else { "approved" };
        let (flow, app, click) = (&flow, &app, &click);
        async move { flow.postback(app, click, "A", "10.00", status).await }
    }))
    .await;
    let id = ids[0];
    assert!(ids.iter().all(|x| *x == id), "{ids:?}");
    let r = flow.wait_for(&app, id, "queued", |r| r["status"] == "queued").await;
    assert_eq!(r["amount"], json!(4.0), "{r}");
    assert_webhooks(&received, id, &["reward.queued"]).await;
    let data = flow.rewards(&app).await;
    let rewards = data["rewards"].as_array().unwrap();
    assert_eq!(rewards.len(), 1, "one conversion: {rewards:?}");
    assert_eq!((rewards[0]["status"].clone(), rewards[0]["amount"].clone()), (json!("queued"), json!(4.0)));
    assert_eq!((total(&data, "queued", "USD"), total(&data, "pending", "USD")), (Some(4.0), None), "{}", data["totals"]);
    let c = app.state.store.get_conversion(id).await.unwrap().unwrap();
    assert_eq!((c.payout_minor, c.reward_minor, c.status.as_str()), (1000, 400, "queued"));
    assert_ledger_clean(&app).await;
}
