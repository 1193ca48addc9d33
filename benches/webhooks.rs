//! Webhook fan-out: 10,000 `product.updated` events through the real pipeline
//! (product-changes → fan-out → webhook-jobs → intake → dispatcher → HTTP) to a receiver on
//! 127.0.0.1, on the embedded backends. Prints deliveries per second and the p50/p99 delay
//! from event to delivery, beside the ceiling: the same number of POSTs sent straight to the
//! receiver with the same concurrency.
//!
//! `cargo bench --bench webhooks` (EVENTS=2000 for a shorter run).

use actix_web::{web, App, HttpResponse, HttpServer};
use hissaback::configuration::Settings;
use hissaback::startup::Application;
use hissaback_topics::bus::publish_event;
use hissaback_topics::events::{ContentChange, ProductChanged};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const ADMIN: &str = "bench-admin-token-0123456789";

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Receiver: records (delay from `occurred_at` to arrival in ms) per delivery.
async fn receiver(delays: Arc<Mutex<Vec<i64>>>) -> String {
    let server = HttpServer::new(move || {
        let delays = delays.clone();
        App::new().default_service(web::to(move |body: web::Bytes| {
            let delays = delays.clone();
            async move {
                if let Ok(v) = serde_json::from_slice::<Value>(&body) {
                    if let Some(at) = v["occurred_at"].as_str().and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok()) {
                        delays.lock().unwrap().push(now_ms() - at.timestamp_millis());
                    }
                }
                HttpResponse::Ok().finish()
            }
        }))
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .unwrap();
    let addr = server.addrs()[0];
    actix_web::rt::spawn(server.run());
    format!("http://{addr}/hook")
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn pipeline(events: usize, concurrency: usize) -> (f64, i64, i64) {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Settings::load(Some(&std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("configuration/defaults.toml"))).unwrap();
    s.server.listen = "127.0.0.1:0".into();
    s.store.data_dir = dir.path().to_path_buf();
    s.admin.token = Some(ADMIN.to_string().into());
    s.webhooks.allow = vec!["127.0.0.1".into()];
    s.webhooks.max_concurrency = concurrency;
    s.webhooks.per_endpoint_concurrency = concurrency;
    let app = Application::build(s).await.unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    let state = app.state();
    actix_web::rt::spawn(app.run_until_stopped());

    let delays = Arc::new(Mutex::new(Vec::with_capacity(events)));
    let url = receiver(delays.clone()).await;
    let http = reqwest::Client::new();
    let admin = |path: &str, body: Value| http.post(format!("{base}/admin/v1{path}")).bearer_auth(ADMIN).json(&body).send();
    let a: Value = admin("/affiliates", json!({"name": "Bench", "email": "b@example.test"})).await.unwrap().json().await.unwrap();
    let aid = a["data"]["affiliate"]["id"].as_u64().unwrap();
    let k: Value = admin(&format!("/affiliates/{aid}/keys"), json!({})).await.unwrap().json().await.unwrap();
    let key = k["data"]["key"]["key"].as_str().unwrap().to_string();
    let w = http.post(format!("{base}/api/v1/webhooks")).bearer_auth(&key).json(&json!({"event": "product.updated", "url": url})).send().await.unwrap();
    assert_eq!(w.status(), 201);
    let p: Value = admin("/products", json!({"title": "Bench", "slug": "bench", "price": 10, "type": "App\\Models\\Course", "published": false}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let product_id = p["data"]["product"]["id"].as_u64().unwrap();

    let started = Instant::now();
    for _ in 0..events {
        let e = ProductChanged { change: ContentChange::ProductUpdated { product_id }, occurred_at_ms: now_ms() };
        publish_event(state.bus.as_ref(), &e).await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(900);
    while delays.lock().unwrap().len() < events && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let mut d = delays.lock().unwrap().clone();
    assert_eq!(d.len(), events, "every event delivered");
    d.sort_unstable();
    (events as f64 / elapsed, percentile(&d, 0.5), percentile(&d, 0.99))
}

/// The ceiling: the same POSTs sent straight to a receiver, `concurrency` at a time.
async fn direct(events: usize, concurrency: usize) -> f64 {
    let delays = Arc::new(Mutex::new(Vec::new()));
    let url = receiver(delays.clone()).await;
    let client = reqwest::Client::new();
    let body = json!({"event": "product.updated", "webhook_id": 1, "occurred_at": "2026-01-01T00:00:00.000Z", "product": {"id": 1}}).to_string();
    let started = Instant::now();
    let sem = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let mut tasks = Vec::with_capacity(events);
    for _ in 0..events {
        let permit = sem.clone().acquire_owned().await.unwrap();
        let (c, u, b) = (client.clone(), url.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let _p = permit;
            c.post(u).header("content-type", "application/json").body(b).send().await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    events as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let events: usize = std::env::var("EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    actix_web::rt::System::new().block_on(async move {
        let ceiling = direct(events, 4).await;
        let (rate4, p50_4, p99_4) = pipeline(events, 4).await;
        let (rate64, p50_64, p99_64) = pipeline(events, 64).await;
        println!("\nwebhook fan-out of {events} events to one local receiver, embedded backends, one run:");
        println!("  {:<60} {:>12} {:>10} {:>10}", "case", "deliveries/s", "p50 ms", "p99 ms");
        println!("  {:<60} {:>12.0} {:>10} {:>10}", "direct POSTs, 4 at a time (ceiling)", ceiling, "-", "-");
        println!("  {:<60} {:>12.0} {:>10} {:>10}", "pipeline, per-endpoint concurrency 4 (default)", rate4, p50_4, p99_4);
        println!("  {:<60} {:>12.0} {:>10} {:>10}", "pipeline, per-endpoint concurrency 64", rate64, p50_64, p99_64);
        println!("  pipeline (default) / ceiling: {:.2}", rate4 / ceiling);
    });
}
