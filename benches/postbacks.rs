//! Postbacks through the partner flow, on the embedded backends and on Kafka + Cassandra
//! (when `scripts/services.sh up` is running), each beside its backend's ceiling:
//!
//! - accepted: postbacks per second answered 200 (durable on the `postbacks` topic), sent
//!   over HTTP 32 at a time;
//! - ledger: conversions per second from the first postback until the last one is in the
//!   ledger (postback processor → `conversions` → ledger writer);
//! - raw producer: messages per second published straight to the bus, 32 at a time;
//! - raw insert: single-row store writes per second, 32 at a time.
//!
//! `cargo bench --bench postbacks` (`POSTBACKS=500` for a short run).

use hissaback::configuration::{EventsBackend, ScyllaSettings, Settings, StoreBackend};
use hissaback::startup::Application;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

const ADMIN: &str = "bench-admin-token-0123456789";
const CONCURRENCY: usize = 32;

fn settings(real: bool, dir: &std::path::Path) -> Settings {
    let mut s = Settings::load(Some(&std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("configuration/defaults.toml"))).unwrap();
    s.server.listen = "127.0.0.1:0".into();
    s.store.data_dir = dir.to_path_buf();
    s.admin.token = Some(ADMIN.to_string().into());
    if real {
        let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        s.store.backend = StoreBackend::Scylla;
        s.store.scylla = ScyllaSettings { nodes: vec!["127.0.0.1:9042".into()], keyspace: format!("hbbench_{secs}"), replication_factor: 1, id_block_size: 100 };
        s.events.backend = EventsBackend::Kafka;
        s.events.kafka.topic_prefix = format!("hbbench.{secs}.");
    }
    s
}

async fn concurrently<F, Fut>(n: usize, f: F) -> f64
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = ()> + 'static,
{
    let started = Instant::now();
    let sem = Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let permit = sem.clone().acquire_owned().await.unwrap();
        let fut = f(i);
        tasks.push(actix_web::rt::spawn(async move {
            fut.await;
            drop(permit);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    n as f64 / started.elapsed().as_secs_f64()
}

/// (accepted/s, ledger/s, raw producer/s, raw insert/s)
async fn run(real: bool, n: usize) -> (f64, f64, f64, f64) {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(real, dir.path());
    if real {
        hissaback::store::scylla::migrate(&s.store.scylla).await.unwrap();
        hissaback::events::migrate(&s).await.unwrap();
    }
    let app = Application::build(s).await.unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    let state = app.state();
    actix_web::rt::spawn(app.run_until_stopped());
    let http = reqwest::Client::new();
    let admin = |path: &str, body: Value| http.post(format!("{base}/admin/v1{path}")).bearer_auth(ADMIN).json(&body).send();
    let j = |r: reqwest::Response| async move { r.json::<Value>().await.unwrap() };
    let brand = j(admin("/brands", json!({"name": "B"})).await.unwrap()).await["data"]["brand"]["id"].clone();
    let offer = j(admin("/offers", json!({"brand_id": brand, "name": "O", "category": "c", "base_commission": 10, "default_share_pct": 50, "tracking_url": "https://n.example/?c={click_id}"})).await.unwrap()).await["data"]["offer"]["id"].clone();
    let token = j(admin("/networks", json!({"name": "N"})).await.unwrap()).await["data"]["network"]["postback_token"].as_str().unwrap().to_string();
    let a = j(admin("/affiliates", json!({"name": "P", "email": "p@example.test"})).await.unwrap()).await["data"]["affiliate"]["id"].clone();
    let key = j(admin(&format!("/affiliates/{a}/keys"), json!({})).await.unwrap()).await["data"]["key"]["key"].as_str().unwrap().to_string();
    let partner = |path: &str, body: Value| http.post(format!("{base}/v1{path}")).bearer_auth(&key).json(&body).send();
    let campaign = j(partner("/campaigns", json!({"offer_id": offer, "share_pct": 40, "tenant_id": "t"})).await.unwrap()).await["data"]["campaign"]["campaign_id"].clone();
    let code = j(partner("/links", json!({"campaign_id": campaign})).await.unwrap()).await["data"]["link"]["code"].as_str().unwrap().to_string();
    let r = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap().get(format!("{base}/r/{code}?uid=u1")).send().await.unwrap();
    let click = r.headers()["location"].to_str().unwrap().split("c=").nth(1).unwrap().to_string();

    let aid = a.as_u64().unwrap();
    let count = || async { state.store.rewards_of_user(aid, "t", "u1").await.unwrap().len() };
    let started = Instant::now();
    let accepted = concurrently(n, |i| {
        let (http, base, token, click) = (http.clone(), base.clone(), token.clone(), click.clone());
        async move {
            let url = format!("{base}/v1/postbacks?token={token}&click_id={click}&txn_id=bench-{i}&payout=10&currency=USD&status=approved");
            let res = http.get(url).send().await.unwrap();
            assert_eq!(res.status(), 200);
        }
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(900);
    // One partition read per poll (the end user's rewards), so polling costs the run little.
    while count().await < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let ledger = n as f64 / started.elapsed().as_secs_f64();
    assert_eq!(count().await, n, "every postback reached the ledger");

    let bus = state.bus.clone();
    let producer = concurrently(n, |i| {
        let bus = bus.clone();
        async move { bus.publish("bench-raw", &format!("k{i}"), vec![0u8; 100]).await.unwrap() }
    })
    .await;
    let store = state.store.clone();
    let insert = concurrently(n, |i| {
        let store = store.clone();
        async move { store.put_setting(&format!("bench.raw.{i}"), "x").await.unwrap() }
    })
    .await;
    (accepted, ledger, producer, insert)
}

fn main() {
    let n: usize = std::env::var("POSTBACKS").ok().and_then(|v| v.parse().ok()).unwrap_or(2_000);
    actix_web::rt::System::new().block_on(async move {
        let embedded = run(false, n).await;
        let servers_up = std::net::TcpStream::connect("127.0.0.1:9042").is_ok() && std::net::TcpStream::connect("127.0.0.1:9092").is_ok();
        let real = if servers_up { Some(run(true, n).await) } else { None };
        println!("\npostbacks through the partner flow, {n} approved postbacks, {CONCURRENCY} at a time, one run:");
        println!("  {:<34} {:>14} {:>14} {:>16} {:>14}", "backends", "accepted/s", "ledger/s", "raw producer/s", "raw insert/s");
        let row = |name: &str, (a, l, p, i): (f64, f64, f64, f64)| println!("  {name:<34} {a:>14.0} {l:>14.0} {p:>16.0} {i:>14.0}");
        row("embedded (SQLite log + SQLite)", embedded);
        match real {
            Some(r) => row("Kafka + Cassandra", r),
            None => println!("  Kafka + Cassandra: not measured (start them with scripts/services.sh up)"),
        }
        println!("  embedded accepted / raw producer: {:.2}; ledger / raw insert: {:.3}", embedded.0 / embedded.2, embedded.1 / embedded.3);
        if let Some(r) = real {
            println!("  Kafka+Cassandra accepted / raw producer: {:.2}; ledger / raw insert: {:.3}", r.0 / r.2, r.1 / r.3);
        }
    });
}
