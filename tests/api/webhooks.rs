//! Webhooks, black-box: the seed's "Webhooks" (list, create, delete) and "Webhook Event
//! Payloads", DESIGN's `/v1/webhooks` (adds `reward.queued`, `reward.paid`), and what the
//! webhook issue adds: the deliveries log, redelivery, secret rotation, re-enabling, Standard
//! Webhooks signatures, retries (500 and timeouts), no delivery lost across a restart, a slow
//! endpoint not delaying a healthy one, the private-address guard and the delivery metrics;
//! and changes made while an attempt is in flight (a deletion stays, a rotated secret signs
//! the next retry) or at the same time as others (none lost).
//!
//! Receivers here are small actix servers on 127.0.0.1 ([`Receiver`]) that keep every request
//! (raw body bytes included, so signatures are checked over exactly what arrived) and answer
//! by a rule of the request and how many times its `webhook-id` came before.
//!
//! Real backends (`HISSABACK_TEST_BACKENDS=real`): every app of the test process shares one
//! keyspace and one set of topics and consumer groups, so any instance may fan out and send a
//! delivery, every webhook of every test receives every product event, and each starting
//! instance reloads all pending deliveries. Tests therefore filter what they receive by their
//! own ids, and:
//! - apps whose settings change how deliveries go (empty allowlist, 300 ms timeout, disable at
//!   the first failure) run on the embedded backends in both modes, so that they never send
//!   another test's deliveries with those settings;
//! - the tests that expect deliveries get their own topic prefix (still real Kafka and
//!   Cassandra) so their own instance fans out and sends them: with shared consumer groups the
//!   instance holding a partition may belong to a test that just ended, and its partitions
//!   (and the deliveries it queued) wait for the group's session timeout or the next start;
//! - the restart test builds its own embedded apps on one data directory;
//! - request counts are exact on the embedded backends and lower bounds on the real ones
//!   ([`assert_sent`]): a starting instance resends the pending deliveries it reloads.

use crate::helpers::{eventually, real_backends, spawn_app_with, test_settings, Answer, Partner, TestApp};
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use base64::Engine;
use hissaback::configuration::Settings;
use hmac::{Hmac, Mac};
use reqwest::Method;
use serde_json::{json, Value};
use sha2::Sha256;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// Receivers

/// One request a receiver got.
#[derive(Clone, Debug)]
pub struct Hit {
    pub at: Instant,
    pub path: String,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub raw: Vec<u8>,
    pub body: Value,
}

impl Hit {
    pub fn header(&self, name: &str) -> &str {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).unwrap_or("")
    }

    pub fn webhook_id(&self) -> &str {
        self.header("webhook-id")
    }
}

/// How a receiver answers.
#[derive(Clone, Copy, Debug)]
pub enum Reply {
    Status(u16),
    /// Sleeps, then answers with the status.
    After(Duration, u16),
}

type Rule = Arc<dyn Fn(&Hit, usize) -> Reply + Send + Sync>;

/// A receiver on 127.0.0.1 whose answers follow a rule of the request and of how many earlier
/// requests carried the same `webhook-id` (0 for the first).
pub struct Receiver {
    pub base: String,
    hits: Arc<Mutex<Vec<Hit>>>,
    /// `(webhook-id, when the answer went out)` of every request answered.
    answered: Arc<Mutex<Vec<(String, Instant)>>>,
    rule: Arc<RwLock<Rule>>,
}

impl Receiver {
    pub async fn start(rule: impl Fn(&Hit, usize) -> Reply + Send + Sync + 'static) -> Self {
        let hits: Arc<Mutex<Vec<Hit>>> = Arc::default();
        let answered: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
        let rule: Arc<RwLock<Rule>> = Arc::new(RwLock::new(Arc::new(rule)));
        let (h, a, r) = (hits.clone(), answered.clone(), rule.clone());
        let server = HttpServer::new(move || {
            let (h, a, r) = (h.clone(), a.clone(), r.clone());
            App::new().default_service(web::to(move |req: HttpRequest, body: web::Bytes| {
                let (h, a, r) = (h.clone(), a.clone(), r.clone());
                async move {
                    let hit = Hit {
                        at: Instant::now(),
                        path: req.path().to_string(),
                        headers: req
                            .headers()
                            .iter()
                            .map(|(k, v)| (k.as_str().to_ascii_lowercase(), v.to_str().unwrap_or("").to_string()))
                            .collect(),
                        raw: body.to_vec(),
                        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
                    };
                    let earlier = {
                        let mut all = h.lock().unwrap();
                        let n = all.iter().filter(|x| !hit.webhook_id().is_empty() && x.webhook_id() == hit.webhook_id()).count();
                        all.push(hit.clone());
                        n
                    };
                    let rule = r.read().unwrap().clone();
                    let status = match rule(&hit, earlier) {
                        Reply::Status(s) => s,
                        Reply::After(d, s) => {
                            actix_web::rt::time::sleep(d).await;
                            s
                        }
                    };
                    a.lock().unwrap().push((hit.webhook_id().to_string(), Instant::now()));
                    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap()).body(format!("answered {status}"))
                }
            }))
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(0)
        .bind("127.0.0.1:0")
        .unwrap();
        let addr = server.addrs()[0];
        actix_web::rt::spawn(server.run());
        Receiver { base: format!("http://{addr}"), hits, answered, rule }
    }

    /// A receiver answering 200 at once.
    pub async fn ok() -> Self {
        Self::start(|_, _| Reply::Status(200)).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn port(&self) -> u16 {
        self.base.rsplit(':').next().unwrap().parse().unwrap()
    }

    pub fn set_rule(&self, rule: impl Fn(&Hit, usize) -> Reply + Send + Sync + 'static) {
        *self.rule.write().unwrap() = Arc::new(rule);
    }

    pub fn hits_where(&self, f: impl Fn(&Hit) -> bool) -> Vec<Hit> {
        self.hits.lock().unwrap().iter().filter(|h| f(h)).cloned().collect()
    }

    /// How many requests with one of these webhook-ids were answered.
    pub fn answered_of(&self, ids: &[String]) -> usize {
        self.answered.lock().unwrap().iter().filter(|(id, _)| ids.contains(id)).count()
    }

    /// Waits until at least `n` requests match `f`; returns them all.
    pub async fn wait_for(&self, n: usize, timeout: Duration, what: &str, f: impl Fn(&Hit) -> bool) -> Vec<Hit> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.hits_where(&f);
            if got.len() >= n {
                return got;
            }
            if Instant::now() >= deadline {
                let seen: Vec<(String, String, Value)> = got.iter().map(|h| (h.path.clone(), h.webhook_id().to_string(), h.body["event"].clone())).collect();
                panic!("timed out after {timeout:?} waiting for {what}: {} of {n} matching requests {seen:?}", got.len());
            }
            actix_web::rt::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Asserts how many requests a delivery produced: exactly `expected` on the embedded
/// backends; at least `expected` on the real ones, where an instance starting elsewhere in the
/// test process reloads every pending delivery of the shared keyspace and may send it too
/// (at-least-once; the copies carry the same webhook-id).
fn assert_sent(got: usize, expected: usize, what: &str) {
    if real_backends() {
        assert!(got >= expected, "{what}: {got} requests, expected at least {expected}");
    } else {
        assert_eq!(got, expected, "{what}");
    }
}

/// Requests carrying the product `id`.
fn product_is(id: u64) -> impl Fn(&Hit) -> bool {
    move |h| h.body["product"]["id"] == json!(id)
}

// ---------------------------------------------------------------------------------------------
// Apps, calls and small helpers

fn tag() -> String {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("wh{}{n}", t % 1_000_000_000)
}

/// An app on the embedded store and event log whatever the mode (see the module docs).
async fn spawn_embedded_app(tweak: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_app_with(|s| {
        use hissaback::configuration::{EventsBackend, StoreBackend};
        s.store.backend = StoreBackend::Embedded;
        s.events.backend = EventsBackend::Embedded;
        tweak(s);
    })
    .await
}

/// An app whose webhook jobs only it handles: on real backends its own topic prefix (the
/// keyspace stays shared); embedded apps are alone anyway.
async fn spawn_own_topics_app(tweak: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_app_with(|s| {
        if real_backends() {
            s.events.kafka.topic_prefix = format!("{}{}.", s.events.kafka.topic_prefix, tag());
        }
        tweak(s);
    })
    .await
}

async fn call(app: &TestApp, method: Method, path: &str, key: Option<&str>, body: Option<Value>) -> Answer {
    let mut req = app.client.request(method, app.url(path));
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    app.send(req).await
}

async fn create(app: &TestApp, key: &str, event: &str, url: &str) -> Answer {
    call(app, Method::POST, "/api/v1/webhooks", Some(key), Some(json!({"event": event, "url": url}))).await
}

/// A webhook registered through `/api/v1`, asserting 201: `(id, secret)`.
async fn hook(app: &TestApp, key: &str, event: &str, url: &str) -> (u64, String) {
    let r = create(app, key, event, url).await;
    assert_eq!(r.status, 201, "creating a {event} webhook to {url}: {}", r.text);
    (r.body["data"]["id"].as_u64().unwrap(), r.body["data"]["secret"].as_str().unwrap().to_string())
}

async fn list(app: &TestApp, prefix: &str, key: &str) -> Answer {
    call(app, Method::GET, &format!("{prefix}/webhooks"), Some(key), None).await
}

async fn deliveries(app: &TestApp, key: &str, hook_id: u64) -> Vec<Value> {
    let r = call(app, Method::GET, &format!("/api/v1/webhooks/{hook_id}/deliveries"), Some(key), None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["data"]["deliveries"].as_array().unwrap_or_else(|| panic!("data.deliveries in {}", r.text)).clone()
}

/// The logged delivery `id` of a webhook, once `done` holds for it.
async fn delivery_when(app: &TestApp, key: &str, hook_id: u64, id: &str, timeout: Duration, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let log = deliveries(app, key, hook_id).await;
        if let Some(d) = log.iter().find(|d| d["id"] == json!(id) && done(d)) {
            return d.clone();
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}; the log of webhook {hook_id}: {}", json!(log));
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
}

fn states_of(d: &Value) -> Vec<Value> {
    d["attempts"].as_array().unwrap().iter().map(|a| a["status_code"].clone()).collect()
}

/// `POST /admin/v1/products` of a published course; its id.
async fn publish_product(app: &TestApp, t: &str) -> u64 {
    let r = app
        .admin(
            Method::POST,
            "/products",
            Some(json!({"title": format!("Hooked {t}"), "slug": format!("hooked-{t}"), "price": 10, "type": "App\\Models\\Course", "published": true})),
        )
        .await;
    assert_eq!(r.status, 201, "creating a product: {}", r.text);
    r.body["data"]["product"]["id"].as_u64().unwrap()
}

/// Asserts the Standard Webhooks signature and the seed's key header of a request, over the
/// raw bytes received, with the service's own function and an independent HMAC.
fn assert_signed(hit: &Hit, secret: &str) {
    assert_eq!(hit.header("x-affiliate-webhook-key"), secret, "X-Affiliate-Webhook-Key of {hit:?}");
    let id = hit.webhook_id();
    assert!(!id.is_empty(), "webhook-id of {hit:?}");
    let ts_text = hit.header("webhook-timestamp");
    let ts: i64 = ts_text.parse().unwrap_or_else(|_| panic!("webhook-timestamp {ts_text:?} is not integer seconds"));
    let now = chrono::Utc::now().timestamp();
    assert!((now - ts).abs() <= 300, "webhook-timestamp {ts} is not the send time (now {now})");
    let body = std::str::from_utf8(&hit.raw).expect("a UTF-8 body");
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(ts_text.as_bytes());
    mac.update(b".");
    mac.update(&hit.raw);
    let independent = format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()));
    assert_eq!(hissaback::webhooks::signature(secret, id, ts, body), independent, "the service's signature function");
    let sent = hit.header("webhook-signature");
    assert!(sent.split(' ').any(|s| s == independent), "webhook-signature {sent:?} is not {independent:?} (id {id}, ts {ts}, body {body})");
    assert!(hit.header("content-type").starts_with("application/json"), "content-type of {hit:?}");
}

/// `2024-06-07T10:15:21.000000Z`, the seed's resource timestamps.
fn assert_seed_time(v: &Value, what: &str) {
    let s = v.as_str().unwrap_or_else(|| panic!("{what}: {v} is not a string"));
    let shape: String = s.chars().map(|c| if c.is_ascii_digit() { 'd' } else { c }).collect();
    assert_eq!(shape, "dddd-dd-ddTdd:dd:dd.ddddddZ", "{what}: {s}");
}

/// An ISO 8601 UTC time within `window` of now.
fn assert_recent(v: &Value, window: chrono::Duration, what: &str) {
    let s = v.as_str().unwrap_or_else(|| panic!("{what}: {v} is not a string"));
    let t = chrono::DateTime::parse_from_rfc3339(s).unwrap_or_else(|e| panic!("{what}: {s} is not ISO 8601: {e}"));
    assert!(s.ends_with('Z'), "{what}: {s} is not UTC");
    let age = chrono::Utc::now() - t.with_timezone(&chrono::Utc);
    assert!(age >= -chrono::Duration::seconds(5) && age <= window, "{what}: {s} is not recent");
}

/// Asserts the envelope and that the seed's keys of `payload` are `event`, `webhook_id`,
/// `occurred_at` and `object_key`.
fn assert_envelope(payload: &Value, event: &str, hook_id: u64, object_key: &str) {
    assert_eq!(payload["event"], json!(event), "{payload}");
    assert_eq!(payload["webhook_id"], json!(hook_id), "{payload}");
    assert_recent(&payload["occurred_at"], chrono::Duration::seconds(120), "occurred_at");
    assert!(payload[object_key].is_object(), "{object_key} in {payload}");
}

/// Asserts that `object` has every key of `expected` with its value.
fn assert_has(object: &Value, expected: &Value) {
    for (k, v) in expected.as_object().unwrap() {
        assert_eq!(&object[k], v, "{k} of {object}");
    }
}

// ---------------------------------------------------------------------------------------------
// Management: list, create, delete (seed) and the /v1 resource (DESIGN)

const SEED_EVENTS: [&str; 6] =
    ["product.published", "product.updated", "product.unpublished", "blog.published", "blog.unpublished", "promotion.created"];

#[actix_web::test]
async fn webhooks_are_listed_with_the_supported_events_and_the_secret_is_shown_only_at_creation() {
    let app = spawn_app_with(|_| {}).await;
    let p = app.partner(Some(&["webhooks.manage"])).await;

    let empty = list(&app, "/api/v1", &p.key).await;
    assert_eq!(empty.status, 200, "{}", empty.text);
    assert_eq!(empty.body, json!({"success": true, "data": {"webhooks": [], "supported_events": SEED_EVENTS}}));

    let url = "https://hooks.example.com/product-updated";
    let r = create(&app, &p.key, "product.updated", url).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["success"], json!(true));
    let data = &r.body["data"];
    let keys: Vec<&str> = data.as_object().unwrap().keys().map(String::as_str).collect();
    for k in ["id", "event", "url", "secret", "created_at", "updated_at"] {
        assert!(keys.contains(&k), "{k} in {}", r.text);
    }
    let id = data["id"].as_u64().filter(|id| *id > 0).unwrap_or_else(|| panic!("a positive id in {}", r.text));
    assert_eq!(data["event"], "product.updated");
    assert_eq!(data["url"], url);
    let secret = data["secret"].as_str().unwrap();
    assert_eq!(secret.len(), 64, "a 64-character secret: {secret}");
    assert!(secret.chars().all(|c| c.is_ascii_alphanumeric()), "{secret}");
    assert_seed_time(&data["created_at"], "created_at");
    assert_seed_time(&data["updated_at"], "updated_at");

    // A second webhook: its own secret.
    let r2 = create(&app, &p.key, "product.published", url).await;
    assert_eq!(r2.status, 201, "{}", r2.text);
    let id2 = r2.body["data"]["id"].as_u64().unwrap();
    let secret2 = r2.body["data"]["secret"].as_str().unwrap();
    assert_ne!(secret, secret2);
    assert_ne!(id, id2);

    let listed = list(&app, "/api/v1", &p.key).await;
    assert_eq!(listed.status, 200, "{}", listed.text);
    assert_eq!(listed.body["data"]["supported_events"], json!(SEED_EVENTS));
    let hooks = listed.body["data"]["webhooks"].as_array().unwrap();
    assert_eq!(hooks.len(), 2, "{}", listed.text);
    let first = hooks.iter().find(|h| h["id"] == json!(id)).unwrap_or_else(|| panic!("{id} in {}", listed.text));
    assert_has(first, &json!({"id": id, "event": "product.updated", "url": url, "created_at": data["created_at"], "updated_at": data["updated_at"]}));
    for h in hooks {
        assert!(h.get("secret").is_none(), "no secret in the list: {h}");
    }
    assert!(!listed.text.contains(secret) && !listed.text.contains(secret2), "a secret leaks in {}", listed.text);
    // Nor through the deliveries log.
    let log = call(&app, Method::GET, &format!("/api/v1/webhooks/{id}/deliveries"), Some(&p.key), None).await;
    assert_eq!(log.status, 200, "{}", log.text);
    assert!(!log.text.contains(secret), "{}", log.text);
}

#[actix_web::test]
async fn webhook_creation_is_validated_with_field_errors() {
    let app = spawn_app_with(|_| {}).await;
    let p = app.partner(Some(&["webhooks.manage"])).await;
    let post = |body: Value| call(&app, Method::POST, "/api/v1/webhooks", Some(&p.key), Some(body));

    let missing = post(json!({})).await;
    missing.assert_invalid("event");
    missing.assert_invalid("url");
    let blank = post(json!({"event": " ", "url": ""})).await;
    blank.assert_invalid("event");
    blank.assert_invalid("url");

    for event in ["order.created", "product.deleted", "PRODUCT.PUBLISHED", "reward.queued", "reward.paid", "reward.reversed"] {
        let r = post(json!({"event": event, "url": "https://hooks.example.com/x"})).await;
        r.assert_invalid("event");
        assert!(r.body["errors"].get("url").is_none(), "only event is wrong: {}", r.text);
    }
    for url in ["not a url", "hooks.example.com/x", "https://", "ftp://hooks.example.com/x"] {
        let r = post(json!({"event": "product.published", "url": url})).await;
        r.assert_invalid("url");
        assert!(r.body["errors"].get("event").is_none(), "only url is wrong: {}", r.text);
    }
    // At most 2048 characters.
    let base = "https://hooks.example.com/";
    let exact = format!("{base}{}", "a".repeat(2048 - base.len()));
    assert_eq!(exact.len(), 2048);
    let r = post(json!({"event": "product.published", "url": exact})).await;
    assert_eq!(r.status, 201, "a 2048-character url is valid: {}", r.text);
    let long = format!("{exact}b");
    let r = post(json!({"event": "product.published", "url": long})).await;
    r.assert_invalid("url");
    assert!(r.body["errors"]["url"][0].as_str().unwrap().contains("2048"), "{}", r.text);

    // Unique per affiliate and event.
    let url = "https://hooks.example.com/unique";
    assert_eq!(post(json!({"event": "product.published", "url": url})).await.status, 201);
    let again = post(json!({"event": "product.published", "url": url})).await;
    again.assert_invalid("url");
    assert_eq!(post(json!({"event": "product.updated", "url": url})).await.status, 201, "another event, same url");
    let other = app.partner(Some(&["webhooks.manage"])).await;
    assert_eq!(create(&app, &other.key, "product.published", url).await.status, 201, "another affiliate, same event and url");
    // Nothing was stored for the refused requests.
    let listed = list(&app, "/api/v1", &p.key).await;
    assert_eq!(listed.body["data"]["webhooks"].as_array().unwrap().len(), 3, "{}", listed.text);

    // Every seed event is accepted.
    for event in SEED_EVENTS {
        let r = post(json!({"event": event, "url": format!("https://hooks.example.com/{event}")})).await;
        assert_eq!(r.status, 201, "{event}: {}", r.text);
        assert_eq!(r.body["data"]["event"], json!(event));
    }
}

#[actix_web::test]
async fn the_partner_api_is_the_same_resource_with_the_reward_events() {
    let app = spawn_app_with(|_| {}).await;
    let p = app.partner(Some(&["webhooks.manage"])).await;
    let mut partner_events = SEED_EVENTS.to_vec();
    partner_events.extend(["reward.queued", "reward.paid", "reward.rejected", "reward.reversed"]);

    let empty = list(&app, "/v1", &p.key).await;
    assert_eq!(empty.status, 200, "{}", empty.text);
    assert_eq!(empty.body, json!({"success": true, "data": {"webhooks": [], "supported_events": partner_events}}));

    let mut ids = vec![];
    for event in ["reward.queued", "reward.paid", "product.published"] {
        let r = call(&app, Method::POST, "/v1/webhooks", Some(&p.key), Some(json!({"event": event, "url": "https://hooks.example.com/rewards"}))).await;
        assert_eq!(r.status, 201, "{event} on /v1: {}", r.text);
        assert_eq!(r.body["data"]["event"], json!(event));
        assert_eq!(r.body["data"]["secret"].as_str().map(str::len), Some(64), "{}", r.text);
        ids.push(r.body["data"]["id"].as_u64().unwrap());
    }
    let r = call(&app, Method::POST, "/v1/webhooks", Some(&p.key), Some(json!({"event": "reward.created", "url": "https://hooks.example.com/rewards"}))).await;
    r.assert_invalid("event");
    // /api/v1 still refuses the reward events.
    for event in ["reward.queued", "reward.paid", "reward.rejected", "reward.reversed"] {
        create(&app, &p.key, event, "https://hooks.example.com/other").await.assert_invalid("event");
    }
    // One resource: the same webhooks on both lists, each with its API's events.
    let on_v1 = list(&app, "/v1", &p.key).await;
    let on_api = list(&app, "/api/v1", &p.key).await;
    let ids_of = |a: &Answer| a.body["data"]["webhooks"].as_array().unwrap().iter().map(|h| h["id"].as_u64().unwrap()).collect::<Vec<_>>();
    assert_eq!(ids_of(&on_v1), ids, "{}", on_v1.text);
    assert_eq!(ids_of(&on_api), ids, "{}", on_api.text);
    assert_eq!(on_api.body["data"]["supported_events"], json!(SEED_EVENTS));
    // Uniqueness spans both APIs.
    create(&app, &p.key, "product.published", "https://hooks.example.com/rewards").await.assert_invalid("url");
    // Deleting through one API removes it from both.
    let d = call(&app, Method::DELETE, &format!("/api/v1/webhooks/{}", ids[0]), Some(&p.key), None).await;
    assert_eq!(d.status, 200, "{}", d.text);
    assert_eq!(d.body, json!({"success": true}));
    let d = call(&app, Method::DELETE, &format!("/v1/webhooks/{}", ids[1]), Some(&p.key), None).await;
    assert_eq!(d.body, json!({"success": true}), "{}", d.text);
    assert_eq!(ids_of(&list(&app, "/v1", &p.key).await), vec![ids[2]]);
    assert_eq!(ids_of(&list(&app, "/api/v1", &p.key).await), vec![ids[2]]);
}

#[actix_web::test]
async fn webhooks_need_a_key_the_scope_and_ownership() {
    let app = spawn_app_with(|_| {}).await;
    let owner = app.partner(Some(&["webhooks.manage"])).await;
    let (id, _) = hook(&app, &owner.key, "product.published", "https://hooks.example.com/owned").await;
    let routes = |prefix: &str, id: u64| {
        vec![
            (Method::GET, format!("{prefix}/webhooks")),
            (Method::POST, format!("{prefix}/webhooks")),
            (Method::DELETE, format!("{prefix}/webhooks/{id}")),
            (Method::GET, format!("{prefix}/webhooks/{id}/deliveries")),
            (Method::POST, format!("{prefix}/webhooks/{id}/deliveries/msg_1/redeliver")),
            (Method::POST, format!("{prefix}/webhooks/{id}/rotate-secret")),
            (Method::POST, format!("{prefix}/webhooks/{id}/enable")),
        ]
    };
    let body = json!({"event": "product.published", "url": "https://hooks.example.com/new"});
    let unscoped = app.partner(Some(&["products.list", "products.view", "promotions.view", "blogs.manage"])).await;
    for prefix in ["/api/v1", "/v1"] {
        for (method, path) in routes(prefix, id) {
            call(&app, method.clone(), &path, None, Some(body.clone())).await.assert_error(401, "API key is missing.", "unauthenticated");
            call(&app, method.clone(), &path, Some("hb_sk_not-a-real-key"), Some(body.clone()))
                .await
                .assert_error(401, "API key is invalid.", "unauthenticated");
            call(&app, method.clone(), &path, Some(&unscoped.key), Some(body.clone()))
                .await
                .assert_error(403, "Insufficient scope.", "insufficient_scope");
        }
    }
    // Another affiliate's webhook, an unknown one and a non-numeric id: "Webhook not found.".
    let stranger = app.partner(Some(&["webhooks.manage"])).await;
    for prefix in ["/api/v1", "/v1"] {
        for target in [id.to_string(), "999999999".to_string(), "abc".to_string()] {
            for (method, path) in routes(prefix, 0).into_iter().skip(2) {
                let path = path.replace("/webhooks/0", &format!("/webhooks/{target}"));
                call(&app, method, &path, Some(&stranger.key), None).await.assert_error(404, "Webhook not found.", "not_found");
            }
        }
    }
    // The stranger's list is empty; the owner's webhook is untouched.
    assert_eq!(list(&app, "/api/v1", &stranger.key).await.body["data"]["webhooks"], json!([]));
    let owned = list(&app, "/api/v1", &owner.key).await;
    assert_eq!(owned.body["data"]["webhooks"][0]["id"], json!(id), "{}", owned.text);
    // The owner deletes it; it is gone for good.
    let d = call(&app, Method::DELETE, &format!("/api/v1/webhooks/{id}"), Some(&owner.key), None).await;
    assert_eq!(d.status, 200, "{}", d.text);
    assert_eq!(d.body, json!({"success": true}));
    assert_eq!(list(&app, "/api/v1", &owner.key).await.body["data"]["webhooks"], json!([]));
    call(&app, Method::DELETE, &format!("/api/v1/webhooks/{id}"), Some(&owner.key), None)
        .await
        .assert_error(404, "Webhook not found.", "not_found");
}

// ---------------------------------------------------------------------------------------------
// Deliveries: payloads and signatures

#[actix_web::test]
async fn product_events_are_delivered_signed_with_the_seed_payload() {
    let app = spawn_own_topics_app(|_| {}).await;
    let p = app.partner(Some(&["webhooks.manage"])).await;
    let rx = Receiver::ok().await;
    let mut hooks = std::collections::HashMap::new();
    for event in ["product.published", "product.updated", "product.unpublished"] {
        let path = format!("/{event}");
        hooks.insert(event, (path.clone(), hook(&app, &p.key, event, &rx.url(&path)).await));
    }
    let t = tag();
    let image = "https://cdn.example.com/images/complete-course.png";
    let r = app
        .admin(
            Method::POST,
            "/products",
            Some(json!({
                "title": format!("Complete Course {t}"),
                "slug": format!("complete-course-{t}"),
                "description": "Course description.",
                "image": image,
                "price": 215.49,
                "type": "App\\Models\\Course",
                "published": true,
                "teachers": [{"id": 12, "name": "Jamie Rivera"}],
            })),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let pid = r.body["data"]["product"]["id"].as_u64().unwrap();
    let product = |title: String, description: &str, published: bool| {
        json!({
            "id": pid,
            "title": title,
            "description": description,
            "image_url": image,
            "type": "Course",
            "published": published,
            "price": {"amount": 215.49, "currency": "USD"},
            "teachers": [{"id": 12, "name": "Jamie Rivera"}],
        })
    };
    let check = |event: &'static str, expected: Value| {
        let rx = &rx;
        let (path, (hook_id, secret)) = hooks[event].clone();
        async move {
            let got = rx.wait_for(1, Duration::from_secs(30), event, |h| h.path == path && h.body["product"]["id"] == json!(pid)).await;
            let hit = &got[0];
            assert_signed(hit, &secret);
            assert!(hit.webhook_id().starts_with("msg_"), "{}", hit.webhook_id());
            assert_envelope(&hit.body, event, hook_id, "product");
            assert_has(&hit.body["product"], &expected);
        }
    };
    check("product.published", product(format!("Complete Course {t}"), "Course description.", true)).await;

    let r = app.admin(Method::PATCH, &format!("/products/{pid}"), Some(json!({"title": format!("Complete Course {t} v2"), "description": "Updated course description."}))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    check("product.updated", product(format!("Complete Course {t} v2"), "Updated course description.", true)).await;

    let r = app.admin(Method::PATCH, &format!("/products/{pid}"), Some(json!({"published": false}))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    check("product.unpublished", product(format!("Complete Course {t} v2"), "Updated course description.", false)).await;

    // Each webhook got only its own event, once, for this product.
    actix_web::rt::time::sleep(Duration::from_millis(500)).await;
    for (event, (path, (hook_id, _))) in &hooks {
        let got = rx.hits_where(|h| h.path == *path && h.body["product"]["id"] == json!(pid));
        assert_sent(got.len(), 1, event);
        for h in &got {
            assert_eq!(h.body["event"], json!(event));
            assert_eq!(h.body["webhook_id"], json!(hook_id));
            assert_eq!(h.webhook_id(), got[0].webhook_id(), "one delivery");
        }
    }
    // The deliveries log knows each by the webhook-id it was sent with.
    let (path, (hook_id, _)) = &hooks["product.published"];
    let sent = rx.hits_where(|h| h.path == *path && h.body["product"]["id"] == json!(pid))[0].clone();
    let d = delivery_when(&app, &p.key, *hook_id, sent.webhook_id(), Duration::from_secs(10), "the logged delivery", |d| d["state"] == "succeeded").await;
    assert_eq!(d["event"], "product.published");
    let attempts = d["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1, "{d}");
    assert_eq!(attempts[0]["status_code"], json!(200), "{d}");
    assert_eq!(attempts[0]["error"], Value::Null, "{d}");
    assert!(attempts[0]["latency_ms"].is_u64(), "{d}");
    assert_recent(&attempts[0]["at"], chrono::Duration::seconds(60), "attempt at");
}

/// A blog by `p`'s affiliate through the Affiliate API: `(blog, profile)`.
async fn create_blog(app: &TestApp, p: &Partner, t: &str) -> (Value, Value) {
    let c = app.admin(Method::POST, "/categories", Some(json!({"name": "News", "slug": format!("news-{t}")}))).await;
    assert_eq!(c.status, 201, "{}", c.text);
    let r = call(app, Method::POST, "/api/v1/blog-profiles", Some(&p.key), Some(json!({"name": "My Affiliate Blog", "identifier": format!("affiliate-blog-{t}")}))).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let profile = r.body["data"]["profile"].clone();
    let r = call(
        app,
        Method::POST,
        "/api/v1/blogs",
        Some(&p.key),
        Some(json!({"title": format!("Spring Updates {t}"), "content": "<p>Latest platform news...</p>", "category_slug": format!("news-{t}"), "blog_profile_id": profile["id"]})),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    (r.body["data"]["blog"].clone(), profile)
}

#[actix_web::test]
async fn blog_reviews_are_delivered_with_the_seed_payload() {
    let app = spawn_own_topics_app(|_| {}).await;
    let t = tag();
    let affiliate = app
        .affiliate(json!({"name": "Blog Partner", "email": format!("{t}@partner.test"), "blog_approved": true, "user": {"name": "Taylor Gray", "email": format!("taylor-{t}@example.com")}}))
        .await;
    let aid = affiliate["id"].as_u64().unwrap();
    let k = app.create_key(aid, json!({})).await;
    assert_eq!(k.status, 201, "{}", k.text);
    let p = Partner { affiliate_id: aid, key_id: 0, key: k.body["data"]["key"]["key"].as_str().unwrap().to_string() };
    let rx = Receiver::ok().await;
    let (pub_id, pub_secret) = hook(&app, &p.key, "blog.published", &rx.url("/published")).await;
    let (unpub_id, unpub_secret) = hook(&app, &p.key, "blog.unpublished", &rx.url("/unpublished")).await;
    let (blog, profile) = create_blog(&app, &p, &t).await;
    let blog_id = blog["id"].as_u64().unwrap();
    let slug = blog["slug"].as_str().unwrap().to_string();
    let expected = |published: bool| {
        json!({
            "id": blog_id,
            "title": format!("Spring Updates {t}"),
            "slug": slug,
            "url": format!("{}/blog/{slug}", app.address),
            "published": published,
            "profile": {"id": profile["id"], "name": "My Affiliate Blog", "identifier": format!("affiliate-blog-{t}")},
            "author": {"id": affiliate["user"]["id"], "name": "Taylor Gray", "email": format!("taylor-{t}@example.com")},
        })
    };
    let of_blog = move |path: &'static str| move |h: &Hit| h.path == path && h.body["blog"]["id"] == json!(blog_id);

    let r = app.admin(Method::POST, &format!("/blogs/{blog_id}/publish"), None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let hit = rx.wait_for(1, Duration::from_secs(30), "blog.published", of_blog("/published")).await.remove(0);
    assert_signed(&hit, &pub_secret);
    assert_envelope(&hit.body, "blog.published", pub_id, "blog");
    assert_has(&hit.body["blog"], &expected(true));
    assert_seed_time(&hit.body["blog"]["updated_at"], "blog.updated_at");

    let r = app.admin(Method::POST, &format!("/blogs/{blog_id}/unpublish"), Some(json!({"reason": "Content requires updates"}))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let hit = rx.wait_for(1, Duration::from_secs(30), "blog.unpublished", of_blog("/unpublished")).await.remove(0);
    assert_signed(&hit, &unpub_secret);
    assert_envelope(&hit.body, "blog.unpublished", unpub_id, "blog");
    let mut unpublished = expected(false);
    unpublished["unpublished_reason"] = json!("Content requires updates");
    assert_has(&hit.body["blog"], &unpublished);
    assert_seed_time(&hit.body["blog"]["updated_at"], "blog.updated_at");
    // Each webhook got its own event only, once.
    actix_web::rt::time::sleep(Duration::from_millis(500)).await;
    assert_sent(rx.hits_where(of_blog("/published")).len(), 1, "blog.published");
    assert_sent(rx.hits_where(of_blog("/unpublished")).len(), 1, "blog.unpublished");
    assert!(rx.hits_where(|h| h.body["blog"]["id"] == json!(blog_id)).iter().all(|h| h.body["event"] == json!(format!("blog{}", h.path.replace('/', ".")))));
}

#[actix_web::test]
async fn new_promotions_are_delivered_with_the_seed_payload() {
    let app = spawn_own_topics_app(|_| {}).await;
    let p = app.partner(Some(&["webhooks.manage"])).await;
    let rx = Receiver::ok().await;
    let (hook_id, secret) = hook(&app, &p.key, "promotion.created", &rx.url("/promotions")).await;
    let t = tag();
    let r = app
        .admin(
            Method::POST,
            "/promotions",
            Some(json!({"title": format!("Winter Warmers {t}"), "text": "20% off all bundles", "type": "Percentage Promotion", "percentage_off": 20, "ends_at": "2099-02-18T23:59:59Z"})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let promo_id = r.body["data"]["promotion"]["id"].as_u64().unwrap();
    let hit = rx.wait_for(1, Duration::from_secs(30), "promotion.created", |h| h.body["promotion"]["id"] == json!(promo_id)).await.remove(0);
    assert_signed(&hit, &secret);
    assert_envelope(&hit.body, "promotion.created", hook_id, "promotion");
    assert_has(
        &hit.body["promotion"],
        &json!({
            "id": promo_id,
            "title": format!("Winter Warmers {t}"),
            "text": "20% off all bundles",
            "ends_at": "2099-02-18T23:59:59Z",
            "type": "Percentage Promotion",
            "details": {"percentage_off": 20},
        }),
    );
}

// ---------------------------------------------------------------------------------------------
// Retries, the deliveries log, redelivery, rotation, enabling

#[actix_web::test]
async fn a_receiver_answering_500_gets_the_delivery_again_with_the_same_id() {
    let app = spawn_own_topics_app(|_| {}).await;
    let p = app.partner(Some(&["webhooks.manage"])).await;
    // 500 to the first request of each delivery, then 200.
    let rx = Receiver::start(|_, earlier| Reply::Status(if earlier == 0 { 500 } else { 200 })).await;
    let (hook_id, secret) = hook(&app, &p.key, "product.published", &rx.url("/flaky")).await;
    let pid = publish_product(&app, &tag()).await;
    let got = rx.wait_for(2, Duration::from_secs(30), "the retry", product_is(pid)).await;
    let id = got[0].webhook_id().to_string();
    assert!(got.iter().all(|h| h.webhook_id() == id), "one webhook-id across retries: {:?}", got.iter().map(Hit::webhook_id).collect::<Vec<_>>());
    assert_eq!(got[0].raw, got[1].raw, "the same body");
    for h in &got {
        assert_signed(h, &secret);
    }
    let gap = got[1].at - got[0].at;
    if !real_backends() {
        // (On the real backends another instance's copy may arrive at any time.)
        assert!(gap >= Duration::from_millis(150), "the retry waits for the schedule's 200ms: {gap:?}");
    }
    let d = delivery_when(&app, &p.key, hook_id, &id, Duration::from_secs(10), "a succeeded delivery", |d| d["state"] == "succeeded").await;
    let attempts = d["attempts"].as_array().unwrap();
    assert!(attempts.len() >= 2, "{d}");
    assert_eq!(attempts[0]["status_code"], json!(500), "{d}");
    assert!(attempts[0]["error"].as_str().is_some_and(|e| e.contains("500")), "the failed attempt's error: {d}");
    assert_eq!(attempts.last().unwrap()["status_code"], json!(200), "{d}");
    assert_eq!(attempts.last().unwrap()["error"], Value::Null, "{d}");
    assert_eq!(d["next_attempt_at"], Value::Null, "{d}");
    for a in attempts {
        assert!(a["latency_ms"].is_u64(), "{d}");
        assert_recent(&a["at"], chrono::Duration::seconds(60), "attempt at");
    }
}

#[actix_web::test]
async fn a_receiver_past_the_timeout_is_retried_and_the_log_says_timeout() {
    let app = spawn_embedded_app(|s| s.webhooks.timeout_ms = 300).await;
    let p = app.partner(Some(&["webhooks.manage"])).await;
    // The first request of each delivery answers after 1.5 s, later ones at once.
    let rx = Receiver::start(|_, earlier| if earlier == 0 { Reply::After(Duration::from_millis(1500), 200) } else { Reply::Status(200) }).await;
    let (hook_id, secret) = hook(&app, &p.key, "product.published", &rx.url("/slow")).await;
    let pid = publish_product(&app, &tag()).await;
    let got = rx.wait_for(2, Duration::from_secs(30), "the retry after a timeout", product_is(pid)).await;
    let id = got[0].webhook_id().to_string();
    assert_eq!(got[1].webhook_id(), id);
    assert_signed(&got[1], &secret);
    let d = delivery_when(&app, &p.key, hook_id, &id, Duration::from_secs(10), "a succeeded delivery", |d| d["state"] == "succeeded").await;
    let attempts = d["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{d}");
    assert_eq!(attempts[0]["status_code"], Value::Null, "{d}");
    assert!(attempts[0]["error"].as_str().is_some_and(|e| e.contains("timeout")), "the first attempt timed out: {d}");
    assert!(attempts[0]["latency_ms"].as_u64().is_some_and(|ms| (250..1400).contains(&ms)), "cut at the 300 ms timeout: {d}");
    assert_eq!(attempts[1]["status_code"], json!(200), "{d}");
}

#[actix_web::test]
async fn a_delivery_failing_every_attempt_ends_failed_and_can_be_redelivered() {
    let app = spawn_own_topics_app(|_| {}).await;
    let p = app.partner(Some(&["webhooks.manage"])).await;
    let rx = Receiver::start(|_, _| Reply::Status(500)).await;
    let (hook_id, secret) = hook(&app, &p.key, "product.published", &rx.url("/down")).await;
    let pid = publish_product(&app, &tag()).await;
    // The test schedule has three attempts: 0s, 200ms, 400ms.
    let got = rx.wait_for(3, Duration::from_secs(30), "three attempts", product_is(pid)).await;
    let id = got[0].webhook_id().to_string();
    let d = delivery_when(&app, &p.key, hook_id, &id, Duration::from_secs(10), "a failed delivery", |d| d["state"] == "failed").await;
    assert_eq!(states_of(&d), vec![json!(500); 3], "{d}");
    assert_eq!(d["next_attempt_at"], Value::Null, "{d}");
    // Nothing more is sent.
    let at_failure = rx.hits_where(product_is(pid)).len();
    actix_web::rt::time::sleep(Duration::from_millis(1500)).await;
    let all = rx.hits_where(product_is(pid));
    assert_eq!(all.len(), at_failure, "no attempt after the delivery failed");
    assert_sent(all.len(), 3, "one request per attempt");
    assert!(all.iter().all(|h| h.webhook_id() == id));

    // Redeliver (202) once the receiver is back: one more attempt, same webhook-id.
    rx.set_rule(|_, _| Reply::Status(200));
    let path = format!("/api/v1/webhooks/{hook_id}/deliveries/{id}/redeliver");
    let r = call(&app, Method::POST, &path, Some(&p.key), None).await;
    assert_eq!(r.status, 202, "{}", r.text);
    assert_eq!(r.body["success"], json!(true), "{}", r.text);
    let got = rx.wait_for(at_failure + 1, Duration::from_secs(10), "the redelivery", product_is(pid)).await;
    assert_eq!(got.last().unwrap().webhook_id(), id);
    assert_signed(got.last().unwrap(), &secret);
    let d = delivery_when(&app, &p.key, hook_id, &id, Duration::from_secs(10), "the redelivery logged", |d| d["state"] == "succeeded").await;
    assert_eq!(states_of(&d), vec![json!(500), json!(500), json!(500), json!(200)], "{d}");
    // An unknown delivery and another affiliate's webhook.
    call(&app, Method::POST, &format!("/api/v1/webhooks/{hook_id}/deliveries/msg_0_nope/redeliver"), Some(&p.key), None)
        .await
        .assert_error(404, "Delivery not found.", "not_found");
    let stranger = app.partner(Some(&["webhooks.manage"])).await;
    call(&app, Method::POST, &path, Some(&stranger.key), None).await.assert_error(404, "Webhook not found.", "not_found");
    call(&app, Method::GET, &format!("/api/v1/webhooks/{hook_id}/deliveries"), Some(&stranger.key), None)
        .await
        .assert_error(404, "Webhook not found.", "not_found");
    // The log's limit is checked.
    for bad in ["0", "101", "x"] {
        call(&app, Method::GET, &format!("/api/v1/webhooks/{hook_id}/deliveries?limit={bad}"), Some(&p.key), None).await.assert_invalid("limit");
    }
}

#[actix_web::test]
async fn a_rotated_secret_signs_the_next_deliveries() {
    let app = spawn_own_topics_app(|_| {}).await;
    let p = app.partner(Some(&["webhooks.manage"])).await;
    let rx = Receiver::ok().await;
    let (hook_id, old) = hook(&app, &p.key, "product.published", &rx.url("/rotating")).await;
    let first = publish_product(&app, &tag()).await;
    let hit = rx.wait_for(1, Duration::from_secs(30), "the first delivery", product_is(first)).await.remove(0);
    assert_signed(&hit, &old);

    let r = call(&app, Method::POST, &format!("/api/v1/webhooks/{hook_id}/rotate-secret"), Some(&p.key), None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let new = r.body["data"]["secret"].as_str().unwrap_or_else(|| panic!("data.secret in {}", r.text)).to_string();
    assert_eq!(new.len(), 64);
    assert_ne!(new, old);
    assert_eq!(r.body["data"]["id"], json!(hook_id));
    let listed = list(&app, "/api/v1", &p.key).await;
    assert!(!listed.text.contains(&new), "the new secret is not listed: {}", listed.text);

    let second = publish_product(&app, &tag()).await;
    let hit = rx.wait_for(1, Duration::from_secs(30), "the next delivery", product_is(second)).await.remove(0);
    assert_signed(&hit, &new);
    // A redelivery of the earlier event is signed with the new secret too.
    let r = call(&app, Method::POST, &format!("/api/v1/webhooks/{hook_id}/deliveries/{}/redeliver", hit.webhook_id()), Some(&p.key), None).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let again = rx.wait_for(2, Duration::from_secs(10), "the redelivery", product_is(second)).await;
    assert_eq!(again.last().unwrap().webhook_id(), hit.webhook_id());
    assert_signed(again.last().unwrap(), &new);
}

#[actix_web::test]
async fn an_endpoint_disabled_after_failing_is_enabled_again() {
    // disable_after_hours = 0: the first failure disables the endpoint.
    let app = spawn_embedded_app(|s| s.webhooks.disable_after_hours = 0).await;
    let p = app.partner(Some(&["webhooks.manage"])).await;
    let rx = Receiver::start(|_, _| Reply::Status(503)).await;
    let (hook_id, secret) = hook(&app, &p.key, "product.published", &rx.url("/dead")).await;
    let pid = publish_product(&app, &tag()).await;
    let hit = rx.wait_for(1, Duration::from_secs(30), "the first attempt", product_is(pid)).await.remove(0);
    let id = hit.webhook_id().to_string();
    let d = delivery_when(&app, &p.key, hook_id, &id, Duration::from_secs(10), "the delivery given up", |d| d["state"] == "failed").await;
    assert_eq!(d["attempts"][0]["status_code"], json!(503), "{d}");
    assert_eq!(rx.hits_where(product_is(pid)).len(), 1, "a disabled endpoint gets no retries");
    let listed = list(&app, "/api/v1", &p.key).await;
    assert_eq!(listed.body["data"]["webhooks"][0]["status"], "disabled", "{}", listed.text);
    let path = format!("/api/v1/webhooks/{hook_id}/deliveries/{id}/redeliver");
    assert_eq!(call(&app, Method::POST, &path, Some(&p.key), None).await.status, 409);

    let r = call(&app, Method::POST, &format!("/api/v1/webhooks/{hook_id}/enable"), Some(&p.key), None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["data"]["webhook"]["status"], "active", "{}", r.text);
    assert!(!r.text.contains(&secret), "{}", r.text);
    rx.set_rule(|_, _| Reply::Status(200));
    let r = call(&app, Method::POST, &path, Some(&p.key), None).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let got = rx.wait_for(2, Duration::from_secs(10), "the redelivery", product_is(pid)).await;
    assert_signed(&got[1], &secret);
    delivery_when(&app, &p.key, hook_id, &id, Duration::from_secs(10), "the redelivery logged", |d| d["state"] == "succeeded").await;
    assert_eq!(list(&app, "/api/v1", &p.key).await.body["data"]["webhooks"][0]["status"], "active");
}

// ---------------------------------------------------------------------------------------------
// Changes while deliveries are in flight, and concurrent changes

/// Retries a second apart: an attempt in flight for 2 s ends well before the cached webhook
/// (5 s) would have been read again.
fn slow_retries(s: &mut Settings) {
    s.webhooks.retry_schedule = ["0s", "1s", "1s", "1s", "1s"].map(String::from).to_vec();
}

/// For each delivery: 500 at once (the endpoint starts failing), then 500 after 2 s (the
/// attempt in flight while the test changes the webhook), then 200.
async fn failing_then_slow_receiver() -> Receiver {
    Receiver::start(|_, earlier| match earlier {
        0 => Reply::Status(500),
        1 => Reply::After(Duration::from_secs(2), 500),
        _ => Reply::Status(200),
    })
    .await
}

#[actix_web::test]
async fn a_webhook_deleted_while_an_attempt_is_in_flight_stays_deleted() {
    let app = spawn_own_topics_app(slow_retries).await;
    let p = app.partner(Some(&["webhooks.manage"])).await;
    let rx = failing_then_slow_receiver().await;
    let url = rx.url("/deleted-in-flight");
    let (hook_id, _) = hook(&app, &p.key, "product.published", &url).await;
    let pid = publish_product(&app, &tag()).await;
    let got = rx.wait_for(2, Duration::from_secs(30), "the second attempt (in flight for 2 s)", product_is(pid)).await;
    let id = got[0].webhook_id().to_string();

    let d = call(&app, Method::DELETE, &format!("/api/v1/webhooks/{hook_id}"), Some(&p.key), None).await;
    assert_eq!(d.status, 200, "{}", d.text);
    let deleted_at = Instant::now();
    assert_eq!(rx.answered_of(std::slice::from_ref(&id)), 1, "the second attempt is still in flight when the webhook is deleted");
    // The attempt in flight ends (a failure the sender records), then the retries' times pass.
    let (rx_ref, id_ref) = (&rx, &id);
    eventually(Duration::from_secs(10), "the attempt in flight answered", || async move { (rx_ref.answered_of(std::slice::from_ref(id_ref)) >= 2).then_some(()) }).await;
    actix_web::rt::time::sleep(Duration::from_secs(4)).await;
    let late: Vec<Duration> = rx.hits_where(product_is(pid)).iter().filter(|h| h.at > deleted_at).map(|h| h.at - deleted_at).collect();
    assert!(late.is_empty(), "requests to the deleted webhook after its deletion: {late:?}");

    // Still gone: not listed, and every route on it answers 404.
    let listed = list(&app, "/api/v1", &p.key).await;
    assert_eq!(listed.body["data"]["webhooks"], json!([]), "{}", listed.text);
    for (method, path) in [
        (Method::GET, format!("/api/v1/webhooks/{hook_id}/deliveries")),
        (Method::POST, format!("/api/v1/webhooks/{hook_id}/rotate-secret")),
        (Method::POST, format!("/api/v1/webhooks/{hook_id}/enable")),
        (Method::DELETE, format!("/api/v1/webhooks/{hook_id}")),
    ] {
        call(&app, method, &path, Some(&p.key), None).await.assert_error(404, "Webhook not found.", "not_found");
    }
    assert_eq!(list(&app, "/api/v1", &p.key).await.body["data"]["webhooks"], json!([]), "a 404 change brought nothing back");

    // Its URL can be registered again, exactly once (two registrations at once).
    let (a, b) = futures_util::future::join(create(&app, &p.key, "product.published", &url), create(&app, &p.key, "product.published", &url)).await;
    let mut statuses = [a.status, b.status];
    statuses.sort();
    assert_eq!(statuses, [201, 422], "{} / {}", a.text, b.text);
    let listed = list(&app, "/api/v1", &p.key).await;
    let hooks = listed.body["data"]["webhooks"].as_array().unwrap();
    assert_eq!(hooks.len(), 1, "{}", listed.text);
    assert_ne!(hooks[0]["id"], json!(hook_id));
}

#[actix_web::test]
async fn a_secret_rotated_while_an_attempt_is_in_flight_signs_the_next_retry() {
    let app = spawn_own_topics_app(slow_retries).await;
    let p = app.partner(Some(&["webhooks.manage"])).await;
    let rx = failing_then_slow_receiver().await;
    let (hook_id, old) = hook(&app, &p.key, "product.published", &rx.url("/rotated-in-flight")).await;
    let pid = publish_product(&app, &tag()).await;
    let got = rx.wait_for(2, Duration::from_secs(30), "the second attempt (in flight for 2 s)", product_is(pid)).await;
    let id = got[0].webhook_id().to_string();

    let r = call(&app, Method::POST, &format!("/api/v1/webhooks/{hook_id}/rotate-secret"), Some(&p.key), None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let new = r.body["data"]["secret"].as_str().unwrap().to_string();
    assert_ne!(new, old);
    assert_eq!(rx.answered_of(std::slice::from_ref(&id)), 1, "the second attempt is still in flight when the secret is rotated");

    let got = rx.wait_for(3, Duration::from_secs(30), "the retry after the rotation", product_is(pid)).await;
    assert!(got.iter().all(|h| h.webhook_id() == id));
    assert_signed(&got[0], &old);
    assert_signed(&got[1], &old);
    assert_signed(&got[2], &new);
    let d = delivery_when(&app, &p.key, hook_id, &id, Duration::from_secs(10), "the delivery succeeded", |d| d["state"] == "succeeded").await;
    assert_eq!(states_of(&d), vec![json!(500), json!(500), json!(200)], "{d}");
}

#[actix_web::test]
async fn concurrent_changes_of_a_webhook_all_land() {
    let app = spawn_own_topics_app(|_| {}).await;
    let p = app.partner(Some(&["webhooks.manage"])).await;
    let rx = Receiver::ok().await;
    let (hook_id, original) = hook(&app, &p.key, "product.published", &rx.url("/busy")).await;

    // Ten rotations and ten re-enablings at once.
    let path = |what: &str| format!("/api/v1/webhooks/{hook_id}/{what}");
    let calls = (0..20).map(|i| {
        let what = if i % 2 == 0 { "rotate-secret" } else { "enable" };
        let path = path(what);
        let (app, key) = (&app, &p.key);
        async move { (what, call(app, Method::POST, &path, Some(key), None).await) }
    });
    let answers = futures_util::future::join_all(calls).await;
    let mut versions = vec![];
    let mut rotations = vec![];
    for (what, r) in &answers {
        assert_eq!(r.status, 200, "{what}: {}", r.text);
        if *what == "rotate-secret" {
            let v = r.body["data"]["updated_at"].as_str().unwrap().to_string();
            rotations.push((v.clone(), r.body["data"]["secret"].as_str().unwrap().to_string()));
            versions.push(v);
        } else {
            assert_eq!(r.body["data"]["webhook"]["status"], "active", "{}", r.text);
            versions.push(r.body["data"]["webhook"]["updated_at"].as_str().unwrap().to_string());
        }
    }
    // Twenty changes, twenty versions, one after the other.
    versions.sort();
    versions.dedup();
    assert_eq!(versions.len(), 20, "each change is its own version: {versions:?}");
    // The stored secret is the one of the last rotation: no re-enabling wrote an older copy
    // back (the original secret, say), and no rotation was undone by another.
    let latest = rotations.iter().max().unwrap().1.clone();
    assert!(rotations.iter().all(|(_, s)| *s != original));
    let pid = publish_product(&app, &tag()).await;
    let hit = rx.wait_for(1, Duration::from_secs(30), "a delivery after the changes", product_is(pid)).await.remove(0);
    assert_signed(&hit, &latest);
    let listed = list(&app, "/api/v1", &p.key).await;
    assert_eq!(listed.body["data"]["webhooks"][0]["status"], "active", "{}", listed.text);
    assert_eq!(listed.body["data"]["webhooks"][0]["updated_at"].as_str(), versions.last().map(String::as_str), "the last version is the one stored: {}", listed.text);

    // Deletions racing rotations and re-enablings: every deleted webhook stays deleted.
    let mut ids = vec![];
    for i in 0..8 {
        ids.push(hook(&app, &p.key, "product.updated", &rx.url(&format!("/race/{i}"))).await.0);
    }
    let calls = ids.iter().flat_map(|id| {
        ["rotate-secret", "enable", "", "rotate-secret", "enable"].map(|what| {
            let (method, path) = if what.is_empty() {
                (Method::DELETE, format!("/api/v1/webhooks/{id}"))
            } else {
                (Method::POST, format!("/api/v1/webhooks/{id}/{what}"))
            };
            let (app, key) = (&app, &p.key);
            async move { (method.clone(), call(app, method, &path, Some(key), None).await) }
        })
    });
    for (method, r) in futures_util::future::join_all(calls).await {
        if method == Method::DELETE {
            assert_eq!(r.status, 200, "the deletion: {}", r.text);
        } else {
            assert!(r.status == 200 || r.status == 404, "a change before or after the deletion: {}", r.text);
        }
    }
    let listed = list(&app, "/api/v1", &p.key).await;
    let left: Vec<u64> = listed.body["data"]["webhooks"].as_array().unwrap().iter().map(|h| h["id"].as_u64().unwrap()).collect();
    assert_eq!(left, vec![hook_id], "deleted webhooks came back: {}", listed.text);
    for id in ids {
        call(&app, Method::POST, &format!("/api/v1/webhooks/{id}/rotate-secret"), Some(&p.key), None).await.assert_error(404, "Webhook not found.", "not_found");
    }
}

/// The store's side of the rules above, on each backend: an update of a deleted webhook
/// writes nothing, and concurrent updates of different fields all land (in the by-event copy
/// the fan-out reads too).
#[actix_web::test]
async fn the_store_never_brings_a_deleted_webhook_back_nor_loses_a_concurrent_change() {
    use hissaback::store::{Sequence, WebhookChange, WebhookRecord};
    let app = spawn_app_with(|_| {}).await;
    let store = app.state.store.clone();
    let event = format!("test.concurrent.{}", tag());
    let now = chrono::Utc::now();
    let affiliate = store.next_id(Sequence::Affiliate).await.unwrap();
    let record = |id: u64| WebhookRecord {
        id,
        affiliate_id: affiliate,
        event: event.clone(),
        url: format!("https://hooks.example.com/{id}"),
        secret: "s".repeat(64),
        created_at: now,
        updated_at: now,
        failing_since: None,
        disabled_at: None,
        disabled_reason: None,
    };
    let w = record(store.next_id(Sequence::Webhook).await.unwrap());
    store.put_webhook(&w).await.unwrap();

    // Twenty writers at once, each adding its own mark (and one of them its own secret).
    let updates = (0..20).map(|i| {
        let store = store.clone();
        let change: WebhookChange = Box::new(move |w| {
            w.disabled_reason = Some(format!("{}[{i}]", w.disabled_reason.clone().unwrap_or_default()));
            if i == 7 {
                w.secret = "rotated".into();
            }
            w.touch();
            true
        });
        async move { store.update_webhook(affiliate, w.id, change).await.unwrap().expect("the webhook exists") }
    });
    let answers = futures_util::future::join_all(updates).await;
    let stored = store.get_webhook(affiliate, w.id).await.unwrap().unwrap();
    let reason = stored.disabled_reason.clone().unwrap();
    for i in 0..20 {
        assert!(reason.contains(&format!("[{i}]")), "change {i} was lost: {reason}");
    }
    assert_eq!(stored.secret, "rotated");
    assert_eq!(Some(&stored), answers.iter().max_by_key(|a| a.updated_at), "the last change answers the webhook as stored");
    let indexed = store.webhooks_for_event(&event).await.unwrap();
    assert_eq!(indexed, vec![stored.clone()], "the by-event copy is the last version");

    // A change that changes nothing writes nothing.
    let same = store.update_webhook(affiliate, w.id, Box::new(|_| false)).await.unwrap();
    assert_eq!(same.as_ref(), Some(&stored));

    // Deleted: an update (a health change landing late, say) finds nothing and writes nothing.
    store.delete_webhook(&w).await.unwrap();
    let late = store.update_webhook(affiliate, w.id, Box::new(|w| {
        w.failing_since = Some(chrono::Utc::now());
        w.touch();
        true
    }));
    assert_eq!(late.await.unwrap(), None);
    assert_eq!(store.get_webhook(affiliate, w.id).await.unwrap(), None);
    assert!(store.webhooks_of(affiliate).await.unwrap().is_empty());
    assert!(store.webhooks_for_event(&event).await.unwrap().is_empty(), "the by-event copy is gone too");

    // A deletion racing updates: once it answered, the webhook stays gone.
    let w2 = record(store.next_id(Sequence::Webhook).await.unwrap());
    store.put_webhook(&w2).await.unwrap();
    let racing = (0..10).map(|i| {
        let store = store.clone();
        let w2 = w2.clone();
        async move {
            if i == 5 {
                store.delete_webhook(&w2).await.unwrap();
            } else {
                let change: WebhookChange = Box::new(move |w| {
                    w.url = format!("https://hooks.example.com/changed/{i}");
                    w.touch();
                    true
                });
                store.update_webhook(w2.affiliate_id, w2.id, change).await.unwrap();
            }
        }
    });
    futures_util::future::join_all(racing).await;
    assert_eq!(store.get_webhook(affiliate, w2.id).await.unwrap(), None);
    assert!(store.webhooks_for_event(&event).await.unwrap().is_empty());
}

// ---------------------------------------------------------------------------------------------
// Durability and isolation

/// An app in its own actix system on its own thread: stopping it ends its actors too, as
/// the end of the process would (an app in the test's system keeps its dispatcher running).
struct Instance {
    port: u16,
    handle: actix_web::dev::ServerHandle,
    thread: std::thread::JoinHandle<()>,
}

impl Instance {
    async fn start(settings: Settings) -> Self {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let thread = std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let app = hissaback::startup::Application::build(settings).await.expect("app builds");
                tx.send((app.port(), app.handle())).ok();
                app.run_until_stopped().await.expect("the app runs");
            });
            // Leaving block_on drops the system and with it every actor of this instance.
        });
        let (port, handle) = rx.await.expect("the app started");
        Instance { port, handle, thread }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    async fn stop(self) {
        self.handle.stop(true).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.thread.is_finished() {
            assert!(Instant::now() < deadline, "the stopped instance's thread did not end");
            actix_web::rt::time::sleep(Duration::from_millis(20)).await;
        }
        self.thread.join().expect("the instance's thread");
    }
}

async fn instance_call(client: &reqwest::Client, method: Method, url: String, bearer: &str, body: Option<Value>) -> Answer {
    let mut req = client.request(method, url).bearer_auth(bearer);
    if let Some(b) = body {
        req = req.json(&b);
    }
    Answer::read(req.send().await.expect("request sent")).await
}

#[actix_web::test]
async fn a_delivery_pending_at_shutdown_is_delivered_after_the_restart() {
    let dir = tempfile::tempdir().unwrap();
    // The same instance restarting: its id (and so its deliveries) stays the same.
    let instance = format!("durable-{}", tag());
    let settings = || {
        let mut s = test_settings(dir.path());
        s.server.instance_id = instance.clone();
        s.webhooks.retry_schedule = vec!["0s".into(), "3s".into()];
        s
    };
    let client = reqwest::Client::new();
    let admin = crate::helpers::ADMIN_TOKEN;
    let rx = Receiver::start(|_, _| Reply::Status(500)).await;

    let first = Instance::start(settings()).await;
    let a = instance_call(&client, Method::POST, first.url("/admin/v1/affiliates"), admin, Some(json!({"name": "Durable", "email": "d@acme.test"}))).await;
    assert_eq!(a.status, 201, "{}", a.text);
    let aid = a.body["data"]["affiliate"]["id"].as_u64().unwrap();
    let k = instance_call(&client, Method::POST, first.url(&format!("/admin/v1/affiliates/{aid}/keys")), admin, Some(json!({"scopes": ["webhooks.manage"]}))).await;
    assert_eq!(k.status, 201, "{}", k.text);
    let key = k.body["data"]["key"]["key"].as_str().unwrap().to_string();
    let h = instance_call(&client, Method::POST, first.url("/api/v1/webhooks"), &key, Some(json!({"event": "product.published", "url": rx.url("/durable")}))).await;
    assert_eq!(h.status, 201, "{}", h.text);
    let hook_id = h.body["data"]["id"].as_u64().unwrap();
    let secret = h.body["data"]["secret"].as_str().unwrap().to_string();
    let t = tag();
    let pr = instance_call(
        &client,
        Method::POST,
        first.url("/admin/v1/products"),
        admin,
        Some(json!({"title": format!("Durable {t}"), "slug": format!("durable-{t}"), "price": 10, "type": "App\\Models\\Course", "published": true})),
    )
    .await;
    assert_eq!(pr.status, 201, "{}", pr.text);
    let pid = pr.body["data"]["product"]["id"].as_u64().unwrap();

    let hit = rx.wait_for(1, Duration::from_secs(30), "the first attempt", product_is(pid)).await.remove(0);
    let id = hit.webhook_id().to_string();
    let log_url = first.url(&format!("/api/v1/webhooks/{hook_id}/deliveries"));
    let (client_ref, key_ref, id_ref, log_ref) = (&client, &key, &id, &log_url);
    eventually(Duration::from_secs(2), "the failed first attempt logged, retry pending", || async move {
        let r = instance_call(client_ref, Method::GET, log_ref.clone(), key_ref, None).await;
        r.body["data"]["deliveries"].as_array()?.iter().find(|d| d["id"] == json!(id_ref) && d["attempts"].as_array().is_some_and(|a| a.len() == 1) && d["state"] == "pending").cloned()
    })
    .await;
    first.stop().await;
    assert!(hit.at.elapsed() < Duration::from_secs(3), "stopped before the retry was due ({:?})", hit.at.elapsed());
    // Past the retry's due time nothing arrives: the stopped instance sends nothing.
    actix_web::rt::time::sleep(Duration::from_secs(3).saturating_sub(hit.at.elapsed()) + Duration::from_millis(700)).await;
    assert_eq!(rx.hits_where(product_is(pid)).len(), 1, "nothing is sent while the service is down");

    rx.set_rule(|_, _| Reply::Status(200));
    let second = Instance::start(settings()).await;
    let got = rx.wait_for(2, Duration::from_secs(30), "the delivery after the restart", product_is(pid)).await;
    assert_eq!(got[1].webhook_id(), id, "the same webhook-id after the restart");
    assert_eq!(got[1].raw, hit.raw, "the same body");
    assert_signed(&got[1], &secret);
    let log_url = second.url(&format!("/api/v1/webhooks/{hook_id}/deliveries"));
    let log_ref = &log_url;
    let d = eventually(Duration::from_secs(10), "both attempts logged", || async move {
        let r = instance_call(client_ref, Method::GET, log_ref.clone(), key_ref, None).await;
        r.body["data"]["deliveries"].as_array()?.iter().find(|d| d["id"] == json!(id_ref) && d["state"] == "succeeded").cloned()
    })
    .await;
    assert_eq!(states_of(&d), vec![json!(500), json!(200)], "{d}");
    actix_web::rt::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rx.hits_where(product_is(pid)).len(), 2, "delivered once after the restart");
    second.stop().await;
}

#[actix_web::test]
async fn a_slow_endpoint_does_not_delay_a_healthy_one() {
    let app = spawn_own_topics_app(|_| {}).await;
    let p = app.partner(Some(&["webhooks.manage"])).await;
    let slow = Receiver::start(|_, _| Reply::After(Duration::from_secs(3), 200)).await;
    let healthy = Receiver::ok().await;
    hook(&app, &p.key, "product.published", &slow.url("/slow")).await;
    hook(&app, &p.key, "product.published", &healthy.url("/healthy")).await;
    // Warm up the pipeline (consumer groups joined, topics made) before timing anything.
    let warm = publish_product(&app, &tag()).await;
    healthy.wait_for(1, Duration::from_secs(60), "the warm-up delivery", product_is(warm)).await;

    let mut published = vec![];
    for _ in 0..8 {
        let id = publish_product(&app, &tag()).await;
        published.push((id, Instant::now()));
    }
    let ids: Vec<u64> = published.iter().map(|(id, _)| *id).collect();
    let mine = |h: &Hit| h.body["product"]["id"].as_u64().is_some_and(|id| ids.contains(&id));
    let got = healthy.wait_for(8, Duration::from_secs(10), "the healthy endpoint's deliveries", mine).await;
    let slow_ids: Vec<String> = slow.hits_where(mine).iter().map(|h| h.webhook_id().to_string()).collect();
    let slow_done = slow.answered_of(&slow_ids);
    let lags: Vec<Duration> = published
        .iter()
        .map(|(id, at)| got.iter().find(|h| h.body["product"]["id"] == json!(id)).unwrap().at.saturating_duration_since(*at))
        .collect();
    eprintln!("healthy endpoint lags after each change: {lags:?}; slow endpoint answered {slow_done} of 8");
    // Blocked behind the slow endpoint, a delivery would wait its 3 s. On the real backends the
    // shared keyspace holds every test's product.published webhooks, and the fan-out of each
    // change publishes a job to each of them first: allow 2 s there.
    let bound = if real_backends() { Duration::from_secs(2) } else { Duration::from_secs(1) };
    for ((id, _), lag) in published.iter().zip(&lags) {
        assert!(*lag < bound, "product {id} reached the healthy endpoint {lag:?} after the change (all: {lags:?})");
    }
    assert!(slow_done < 8, "the slow endpoint is still busy ({slow_done} of 8 answered) while the healthy one has all");
    // The slow endpoint gets every delivery too, in time.
    slow.wait_for(8, Duration::from_secs(30), "the slow endpoint's deliveries", mine).await;
}

// ---------------------------------------------------------------------------------------------
// The private-address guard

#[actix_web::test]
async fn private_addresses_and_plain_http_are_refused_at_registration() {
    let app = spawn_embedded_app(|s| s.webhooks.allow.clear()).await;
    let p = app.partner(Some(&["webhooks.manage"])).await;
    let rx = Receiver::ok().await;
    for url in [
        rx.url("/hook"),
        "https://127.0.0.1/".into(),
        "https://localhost/".into(),
        "https://169.254.169.254/latest/meta-data".into(),
        "https://10.0.0.1/".into(),
        "https://[::1]/".into(),
        "https://192.168.1.1/".into(),
        "https://172.16.0.1/".into(),
        "https://0.0.0.0/".into(),
        "https://[::ffff:127.0.0.1]/".into(),
        "https://2130706433/".into(),
        "https://[fd00::1]/".into(),
        "https://[fe80::1]/".into(),
        "https://hooks.localhost/".into(),
    ] {
        let r = create(&app, &p.key, "product.published", &url).await;
        r.assert_invalid("url");
        assert!(r.body["errors"].get("event").is_none(), "{url}: {}", r.text);
        if url.starts_with("https") {
            let m = r.body["errors"]["url"][0].as_str().unwrap();
            assert!(m.contains("private"), "{url}: {m}");
        }
    }
    // Plain http needs an allowed host while https_only holds (the default).
    let r = create(&app, &p.key, "product.published", "http://example.com/hook").await;
    r.assert_invalid("url");
    assert_eq!(r.body["errors"]["url"], json!(["The url field must use https."]), "{}", r.text);
    assert_eq!(create(&app, &p.key, "product.published", "https://example.com/hook").await.status, 201);
    assert_eq!(list(&app, "/api/v1", &p.key).await.body["data"]["webhooks"].as_array().unwrap().len(), 1);

    // https_only off: plain http to a public host is fine, private addresses still are not.
    let lax = spawn_embedded_app(|s| {
        s.webhooks.allow.clear();
        s.webhooks.https_only = false;
    })
    .await;
    let q = lax.partner(Some(&["webhooks.manage"])).await;
    assert_eq!(create(&lax, &q.key, "product.published", "http://example.com/hook").await.status, 201);
    create(&lax, &q.key, "product.published", &rx.url("/hook")).await.assert_invalid("url");

    // With 127.0.0.1 allowed (the test settings), plain http to it is accepted.
    let allowed = spawn_app_with(|_| {}).await;
    let a = allowed.partner(Some(&["webhooks.manage"])).await;
    assert_eq!(create(&allowed, &a.key, "product.published", &rx.url("/hook")).await.status, 201);
    create(&allowed, &a.key, "product.published", "http://example.com/hook").await.assert_invalid("url");
    create(&allowed, &a.key, "product.published", "https://10.0.0.1/").await.assert_invalid("url");
}

#[actix_web::test]
async fn ipv6_forms_of_private_addresses_are_refused_at_registration() {
    let app = spawn_embedded_app(|s| s.webhooks.allow.clear()).await;
    let p = app.partner(Some(&["webhooks.manage"])).await;
    for url in [
        "https://[::ffff:0:127.0.0.1]/",   // IPv4-translated
        "https://[::ffff:0:10.0.0.1]/",
        "https://[64:ff9b::127.0.0.1]/",   // NAT64 well-known prefix
        "https://[64:ff9b::a9fe:a9fe]/",   // ... 169.254.169.254
        "https://[64:ff9b:1::a00:1]/",     // local-use NAT64
        "https://[2002:7f00:1::]/",        // 6to4 of 127.0.0.1
        "https://[2002:c0a8:101::1]/",     // 6to4 of 192.168.1.1
        "https://[fec0::1]/",              // site-local
        "https://[fc00::1]/",              // unique local
        "https://[ff02::1]/",              // multicast
        "https://[::]/",                   // unspecified
        "https://[2001:db8::1]/",          // documentation
    ] {
        let r = create(&app, &p.key, "product.published", url).await;
        r.assert_invalid("url");
        assert_eq!(r.body["errors"]["url"], json!(["The url field must not point to a private, loopback or link-local address."]), "{url}: {}", r.text);
    }
    // The same forms carrying a public IPv4 address are accepted.
    for url in ["https://[64:ff9b::808:808]/", "https://[2002:808:808::]/"] {
        assert_eq!(create(&app, &p.key, "product.published", url).await.status, 201, "{url}");
    }
}

/// A host name other than `localhost` that resolves only to 127.0.0.1 (the machine's name,
/// or another /etc/hosts alias): registration cannot tell it is private, sending can.
async fn loopback_alias() -> String {
    let mut candidates: Vec<String> = vec![];
    if let Ok(h) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        candidates.push(h.trim().to_string());
    }
    if let Ok(hosts) = std::fs::read_to_string("/etc/hosts") {
        for line in hosts.lines() {
            let mut fields = line.split('#').next().unwrap_or("").split_whitespace();
            if fields.next() == Some("127.0.0.1") {
                candidates.extend(fields.map(str::to_string));
            }
        }
    }
    for name in candidates {
        let lower = name.to_ascii_lowercase();
        if name.is_empty() || lower == "localhost" || lower.ends_with(".localhost") || name.parse::<std::net::IpAddr>().is_ok() {
            continue;
        }
        let addrs: Vec<std::net::SocketAddr> = match tokio::net::lookup_host((name.as_str(), 80)).await {
            Ok(addrs) => addrs.collect(),
            Err(_) => continue,
        };
        if !addrs.is_empty() && addrs.iter().all(|a| a.ip() == std::net::IpAddr::from([127, 0, 0, 1])) {
            return name;
        }
    }
    panic!("no host name besides localhost resolves to 127.0.0.1 only (needed to test the send-time guard; add one to /etc/hosts)");
}

#[actix_web::test]
async fn a_name_resolving_to_a_private_address_is_refused_at_send_time() {
    let alias = loopback_alias().await;
    let rx = Receiver::ok().await;
    let url = format!("http://{alias}:{}/hook", rx.port());

    // No allowlist: the name passes registration, every attempt is refused when it resolves.
    let guarded = spawn_embedded_app(|s| {
        s.webhooks.allow.clear();
        s.webhooks.https_only = false;
    })
    .await;
    let p = guarded.partner(Some(&["webhooks.manage"])).await;
    let (hook_id, _) = hook(&guarded, &p.key, "product.published", &url).await;
    publish_product(&guarded, &tag()).await;
    let key = &p.key;
    let guarded_ref = &guarded;
    let d = eventually(Duration::from_secs(30), "the refused delivery to fail", || async move {
        deliveries(guarded_ref, key, hook_id).await.into_iter().find(|d| d["state"] == "failed")
    })
    .await;
    let attempts = d["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 3, "{d}");
    for a in attempts {
        assert_eq!(a["status_code"], Value::Null, "{d}");
        assert!(a["error"].as_str().is_some_and(|e| e.contains("private")), "refused by the guard: {d}");
    }
    assert!(rx.hits_where(|_| true).is_empty(), "nothing reached the private address");

    // The same URL with 127.0.0.1 allowed is delivered: the refusal was the guard's.
    let open = spawn_embedded_app(|s| s.webhooks.https_only = false).await;
    let q = open.partner(Some(&["webhooks.manage"])).await;
    let (_, secret) = hook(&open, &q.key, "product.published", &url).await;
    let pid = publish_product(&open, &tag()).await;
    let hit = rx.wait_for(1, Duration::from_secs(30), "the allowed delivery", product_is(pid)).await.remove(0);
    assert_signed(&hit, &secret);
}

// ---------------------------------------------------------------------------------------------
// Metrics

/// The value of `hissaback_webhook_deliveries_total` for an event and outcome (0 if absent).
fn deliveries_total(metrics: &str, event: &str, outcome: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("hissaback_webhook_deliveries_total{"))
        .filter(|l| l.contains(&format!("event=\"{event}\"")) && l.contains(&format!("outcome=\"{outcome}\"")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[actix_web::test]
async fn delivery_outcomes_are_counted_in_the_metrics() {
    let app = spawn_own_topics_app(|_| {}).await;
    let p = app.partner(Some(&["webhooks.manage"])).await;
    let flaky = Receiver::start(|_, earlier| Reply::Status(if earlier == 0 { 500 } else { 200 })).await;
    let down = Receiver::start(|_, _| Reply::Status(500)).await;
    let (flaky_hook, _) = hook(&app, &p.key, "product.published", &flaky.url("/flaky")).await;
    let (down_hook, _) = hook(&app, &p.key, "product.published", &down.url("/down")).await;
    let pid = publish_product(&app, &tag()).await;
    let id = flaky.wait_for(2, Duration::from_secs(60), "the retried delivery", product_is(pid)).await[0].webhook_id().to_string();
    delivery_when(&app, &p.key, flaky_hook, &id, Duration::from_secs(10), "success", |d| d["state"] == "succeeded").await;
    let id = down.wait_for(3, Duration::from_secs(30), "three attempts", product_is(pid)).await[0].webhook_id().to_string();
    delivery_when(&app, &p.key, down_hook, &id, Duration::from_secs(10), "failure", |d| d["state"] == "failed").await;

    let m = app.get("/metrics").await;
    assert_eq!(m.status, 200);
    assert!(m.text.contains("# TYPE hissaback_webhook_deliveries_total counter"), "{}", m.text);
    let of = |outcome| deliveries_total(&m.text, "product.published", outcome);
    assert!(of("success") >= 1.0, "success outcomes: {}", m.text);
    assert!(of("retry") >= 3.0, "retry outcomes (1 flaky + 2 down): {}", m.text);
    assert!(of("failed") >= 1.0, "failed outcomes: {}", m.text);
}

/// A pending delivery whose instance stopped (overdue beyond the grace) is adopted by the
/// sweep of a running instance and delivered; one not yet due is left to its owner.
#[actix_web::test]
async fn an_orphaned_pending_delivery_is_adopted_by_the_sweep() {
    use hissaback::store::{DeliveryRecord, DeliveryState};
    // On real backends the keyspace is shared with other tests' apps (default grace 120 s):
    // the orphan is overdue by 90 s, past this app's grace (60 s) and short of theirs.
    let app = spawn_own_topics_app(|s| {
        s.webhooks.sweep_seconds = 1;
        s.webhooks.orphan_grace_seconds = 60;
    })
    .await;
    let rx = Receiver::ok().await;
    let p = app.partner(Some(&["webhooks.manage"])).await;
    let h = create(&app, &p.key, "product.updated", &rx.url("/orphans")).await;
    assert_eq!(h.status, 201, "{}", h.text);
    let hook = h.body["data"]["id"].as_u64().unwrap();
    let now = chrono::Utc::now();
    let t = tag();
    let orphan = |id: &str, due: chrono::DateTime<chrono::Utc>| DeliveryRecord {
        id: id.to_string(),
        webhook_id: hook,
        affiliate_id: p.affiliate_id,
        event: "product.updated".into(),
        payload: format!(r#"{{"event":"product.updated","tag":"{t}"}}"#),
        state: DeliveryState::Pending,
        attempts: vec![],
        next_attempt_at: Some(due),
        created_at: now - chrono::Duration::minutes(10),
        updated_at: now - chrono::Duration::minutes(10),
        manual: false,
        owner: Some("an-instance-that-died".into()),
    };
    // Stored by "another instance" that then died: the running app never queued them.
    let (overdue, future) = (format!("msg_0000000000001_{t}a"), format!("msg_0000000000002_{t}b"));
    app.state.store.put_delivery(&orphan(&overdue, now - chrono::Duration::seconds(90))).await.unwrap();
    app.state.store.put_delivery(&orphan(&future, now + chrono::Duration::hours(1))).await.unwrap();
    // Due a moment ago (within the grace): its owner's to send, not ours.
    let recent = format!("msg_0000000000003_{t}c");
    app.state.store.put_delivery(&orphan(&recent, now - chrono::Duration::seconds(5))).await.unwrap();
    // Overdue, but its owner is alive (busy, behind): it keeps it.
    let busy = format!("msg_0000000000004_{t}d");
    let busy_owner = format!("busy-{t}");
    app.state.store.put_setting(&format!("webhooks.instance_alive.{busy_owner}"), &now.to_rfc3339()).await.unwrap();
    app.state.store.put_delivery(&DeliveryRecord { owner: Some(busy_owner.clone()), ..orphan(&busy, now - chrono::Duration::seconds(90)) }).await.unwrap();
    let got = rx.wait_for(1, Duration::from_secs(20), "the adopted orphan", |hit| hit.webhook_id() == overdue).await;
    assert_eq!(got[0].webhook_id(), overdue);
    let done = app.state.store.get_delivery(hook, &overdue).await.unwrap().unwrap();
    let done = if done.state == DeliveryState::Succeeded {
        done
    } else {
        eventually(Duration::from_secs(5), "the adopted delivery recorded", || async {
            app.state.store.get_delivery(hook, &overdue).await.unwrap().filter(|d| d.state == DeliveryState::Succeeded)
        })
        .await
    };
    assert_eq!(done.attempts.len(), 1);
    // Swept again and again, it is sent once; the one not yet due stays with its owner.
    actix_web::rt::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(rx.hits_where(|hit| hit.webhook_id() == overdue).len(), 1);
    assert!(rx.hits_where(|hit| hit.webhook_id() == future).is_empty());
    assert!(rx.hits_where(|hit| hit.webhook_id() == recent).is_empty());
    assert!(rx.hits_where(|hit| hit.webhook_id() == busy).is_empty());
    // The adopted delivery now belongs to this instance (it reloads it after a restart).
    assert_eq!(done.owner.as_deref(), Some(app.state.settings.server.instance_id.as_str()));
    let metrics = app.get("/metrics").await.text;
    let adopted: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("hissaback_webhook_orphans_adopted_total "))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(adopted >= 1, "{metrics}");
}
