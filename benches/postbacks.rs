//! Postbacks through the partner flow, as a high-volume postback provider sends them, each
//! figure beside its ceiling measured in the same run (`cargo bench --bench postbacks`):
//!
//! 1. Embedded backends, the service pinned to core 0 (`taskset`, one HTTP worker), the load
//!    generator pinned to core 1 (64 keep-alive connections, raw HTTP/1.1):
//!    - a bare actix-web handler (this bench re-executed as a one-worker server on core 0);
//!    - `GET /v1/postbacks` answered 200 (durable in the `postbacks` topic) per second;
//!    - the rate at which those conversions reach the ledger (postings), same process.
//! 2. Kafka + Cassandra (when `scripts/services.sh up` is running), 64 concurrent senders:
//!    - the raw rdkafka producer with the service's settings and the same concurrency;
//!    - postbacks accepted per second over a sustained run (`SUSTAIN` seconds, default 60),
//!      with the largest consumer lag seen (`hissaback_consumer_lag`, sampled every 500 ms);
//!    - ledger consumption per second over the same run, until the last conversion is booked;
//!    - raw CQL: the same rows (conversion, its index rows, three postings) inserted straight
//!      through the store's prepared statements, 64 conversions at a time.
//!
//! Environment: `SECONDS` (embedded measuring window, default 10), `SUSTAIN` (default 60),
//! `REAL=0` to skip Kafka + Cassandra.

#[path = "../tests/support/flow.rs"]
#[allow(dead_code)]
mod flow;

#[path = "support/http.rs"]
#[allow(dead_code)]
mod http;
#[path = "support/process.rs"]
#[allow(dead_code)]
mod process;

use process::{free_port, service, spawn_bare, ADMIN};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CONNS: usize = 64;

/// A provider's burst must not meet the per-network limit here: this measures throughput.
fn postback_limits() -> Vec<(&'static str, String)> {
    vec![
        ("HISSABACK_PARTNER__POSTBACK_RATE_LIMIT__PER_MINUTE", "1000000000".to_string()),
        ("HISSABACK_PARTNER__POSTBACK_RATE_LIMIT__BURST", "1000000000".to_string()),
    ]
}

/// Sends `GET path(i)` on `CONNS` keep-alive connections for `window`, counting 200s.
/// Returns (answered 200 per second, non-200 answers).
async fn load(port: u16, path: Arc<dyn Fn(u64) -> String + Send + Sync>, window: Duration, next: Arc<AtomicU64>) -> (f64, u64) {
    let ok = Arc::new(AtomicU64::new(0));
    let bad = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CONNS {
        let (path, ok, bad, stop, next) = (path.clone(), ok.clone(), bad.clone(), stop.clone(), next.clone());
        tasks.push(tokio::task::spawn_local(async move {
            let mut s = http::connect(port).await;
            let mut buf = vec![0u8; 64 * 1024];
            let mut req: Vec<u8> = Vec::with_capacity(512);
            while !stop.load(Ordering::Relaxed) {
                let i = next.fetch_add(1, Ordering::Relaxed);
                http::get_request(&mut req, &path(i), "");
                let (status, have) = http::exchange(&mut s, &req, &mut buf).await;
                if status == 200 {
                    ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    if bad.fetch_add(1, Ordering::Relaxed) == 0 {
                        eprintln!("first non-200: {}", String::from_utf8_lossy(&buf[..have]));
                    }
                }
            }
        }));
    }
    tokio::time::sleep(window).await;
    stop.store(true, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    for t in tasks {
        t.await.unwrap();
    }
    (ok.load(Ordering::Relaxed) as f64 / elapsed, bad.load(Ordering::Relaxed))
}

/// What postbacks need: (network token, click id).
async fn set_up(port: u16) -> (String, String) {
    let flow = flow::set_up(&format!("http://127.0.0.1:{port}"), ADMIN, 1).await;
    (flow.token, flow.clicks[0].clone())
}

/// Sums a metric's series whose labels contain `filter` in the service's `/metrics`.
async fn metric(port: u16, name: &str, filter: &str) -> f64 {
    let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await.unwrap().text().await.unwrap();
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with('{') && l.contains(filter))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum()
}

/// Conversions booked: one network-receivable leg per approved conversion.
async fn booked(port: u16) -> f64 {
    metric(port, "hissaback_ledger_postings_total", "account=\"network_receivable\"").await
}

/// Waits until `n` conversions are booked; returns the time that took since `since` and the
/// largest consumer lag seen meanwhile (postbacks + conversions).
async fn drain(port: u16, n: f64, since: Instant, mut max_lag: f64) -> (f64, f64) {
    let deadline = Instant::now() + Duration::from_secs(1800);
    loop {
        let lag = metric(port, "hissaback_consumer_lag", "topic=\"postbacks\"").await + metric(port, "hissaback_consumer_lag", "topic=\"conversions\"").await;
        max_lag = max_lag.max(lag);
        if booked(port).await >= n {
            return (since.elapsed().as_secs_f64(), max_lag);
        }
        assert!(Instant::now() < deadline, "the ledger did not catch up");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn postback_path(token: String, click: String, run: &'static str) -> Arc<dyn Fn(u64) -> String + Send + Sync> {
    Arc::new(move |i| format!("/v1/postbacks?token={token}&click_id={click}&txn_id={run}-{i}&payout=10&currency=USD&status=approved"))
}

struct Embedded {
    bare: f64,
    accepted: f64,
    refused: u64,
    ledger: f64,
}

async fn embedded(window: Duration) -> Embedded {
    // The bare ceiling, on core 0.
    let (bare_child, port) = spawn_bare(&[("/v1/postbacks".to_string(), r#"{"success":true,"data":{"status":"accepted"}}"#.to_string())]);
    let path: Arc<dyn Fn(u64) -> String + Send + Sync> = Arc::new(|i| format!("/v1/postbacks?txn_id=bare-{i}"));
    load(port, path.clone(), Duration::from_secs(1), Arc::new(AtomicU64::new(0))).await;
    let (bare, _) = load(port, path, window, Arc::new(AtomicU64::new(0))).await;
    drop(bare_child);

    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _svc = service(port, dir.path(), &postback_limits(), true);
    let (token, click) = set_up(port).await;
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let (accepted, refused) = load(port, postback_path(token, click, "emb"), window, next.clone()).await;
    let sent = next.load(Ordering::Relaxed) as f64;
    let (secs, _) = drain(port, sent - refused as f64, started, 0.0).await;
    Embedded { bare, accepted, refused, ledger: booked(port).await / secs }
}

struct Real {
    raw_producer: f64,
    accepted: f64,
    refused: u64,
    ledger: f64,
    max_lag: f64,
    raw_cql: f64,
}

async fn real(sustain: Duration) -> Real {
    let run = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let keyspace = format!("hbbench_{run}");
    let prefix = format!("hbbench.{run}.");
    let mut env = postback_limits();
    env.extend([
        ("HISSABACK_STORE_BACKEND", "scylla".to_string()),
        ("HISSABACK_SCYLLA_KEYSPACE", keyspace.clone()),
        ("HISSABACK_EVENTS_BACKEND", "kafka".to_string()),
        ("HISSABACK_KAFKA_TOPIC_PREFIX", prefix.clone()),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let status = Command::new(env!("CARGO_BIN_EXE_hissaback"))
        .arg("migrate")
        .env("HISSABACK_DATA_DIR", dir.path())
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .status()
        .unwrap();
    assert!(status.success(), "migrate");

    // Raw producer: the bus's own Kafka producer (same settings), 64 publishes in flight.
    let bus = Arc::new(hissaback_topics::bus::kafka::KafkaBus::new("127.0.0.1:9092", &prefix).unwrap());
    bus.create_topics(&["bench-raw".to_string()], 4, 1).await.unwrap();
    let raw_producer = per_second(Duration::from_secs(10), move |i| {
        let bus = bus.clone();
        async move {
            use hissaback_topics::EventBus;
            bus.publish("bench-raw", &format!("k{i}"), vec![7u8; 100]).await.unwrap();
        }
    })
    .await;

    let port = free_port();
    let svc = service(port, dir.path(), &env, false);
    let (token, click) = set_up(port).await;
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    // Sample the lag while sending.
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let sampling = sampling.clone();
        tokio::task::spawn_local(async move {
            let mut max: f64 = 0.0;
            while sampling.load(Ordering::Relaxed) {
                let lag = metric(port, "hissaback_consumer_lag", "topic=\"postbacks\"").await + metric(port, "hissaback_consumer_lag", "topic=\"conversions\"").await;
                max = max.max(lag);
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            max
        })
    };
    let template_path = postback_path(token.clone(), click.clone(), "template");
    let (accepted, refused) = load(port, postback_path(token, click, "real"), sustain, next.clone()).await;
    sampling.store(false, Ordering::Relaxed);
    let max_lag = sampler.await.unwrap();
    let sent = next.load(Ordering::Relaxed) as f64;
    let (secs, max_lag) = drain(port, sent - refused as f64, started, max_lag).await;
    let booked_before = booked(port).await;
    let ledger = booked_before / secs;
    // One more conversion, whose id the answer gives: the template of the raw inserts.
    let answer: serde_json::Value = reqwest::get(format!("http://127.0.0.1:{port}{}", template_path(0)))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = answer["data"]["conversion_id"].as_u64().expect("a conversion id");
    drain(port, booked_before + 1.0, Instant::now(), 0.0).await;
    drop(svc);

    // Raw CQL: the rows a booked conversion has, inserted through the store's statements.
    let settings = hissaback::configuration::ScyllaSettings { nodes: vec!["127.0.0.1:9042".into()], keyspace, replication_factor: 1, id_block_size: 100, ..Default::default() };
    let store: Arc<dyn hissaback::store::Store> = Arc::new(hissaback::store::scylla::ScyllaStore::open(&settings).await.unwrap());
    let raw_cql = raw_inserts(store, id).await;
    Real { raw_producer, accepted, refused, ledger, max_lag, raw_cql }
}

/// Conversions per second written as plain inserts: the conversion row with its index rows
/// and its three approval postings, 64 conversions at a time, for 10 seconds.
async fn raw_inserts(store: Arc<dyn hissaback::store::Store>, id: u64) -> f64 {
    let template = store.get_conversion(id).await.unwrap().expect("the template conversion is booked");
    let legs = store.postings_of(template.id).await.unwrap();
    per_second(Duration::from_secs(10), move |i| {
        let (store, mut c, mut legs) = (store.clone(), template.clone(), legs.clone());
        async move {
            c.id = (1u64 << 53) + i;
            for l in &mut legs {
                l.conversion_id = c.id;
            }
            store.put_postings(&legs).await.unwrap();
            store.put_conversion(&c).await.unwrap();
        }
    })
    .await
}

/// Runs `op(i)` for i = 0, 1, … on `CONNS` tasks for `window`; operations per second.
async fn per_second<F, Fut>(window: Duration, op: F) -> f64
where
    F: Fn(u64) -> Fut + Clone + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    let n = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let tasks: Vec<_> = (0..CONNS)
        .map(|_| {
            let (n, stop, op) = (n.clone(), stop.clone(), op.clone());
            tokio::task::spawn_local(async move {
                while !stop.load(Ordering::Relaxed) {
                    op(n.fetch_add(1, Ordering::Relaxed)).await;
                }
            })
        })
        .collect();
    tokio::time::sleep(window).await;
    stop.store(true, Ordering::Relaxed);
    let secs = started.elapsed().as_secs_f64();
    for t in tasks {
        t.await.unwrap();
    }
    n.load(Ordering::Relaxed) as f64 / secs
}

fn main() {
    process::serve_bare_if_asked();
    // The load generator runs on core 1, the service on core 0.
    process::pin_self_to_core1();
    let seconds = |name: &str, default: u64| Duration::from_secs(std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default));
    let (window, sustain) = (seconds("SECONDS", 10), seconds("SUSTAIN", 60));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let e = embedded(window).await;
        println!("\nembedded backends, service on core 0 (one worker), 64 connections from core 1, {}s:", window.as_secs());
        println!("  bare actix-web handler        {:>10.0} req/s", e.bare);
        println!("  postbacks accepted (durable)  {:>10.0} /s   ratio {:.2} (target >= 0.25 and >= 20,000/s); non-200: {}", e.accepted, e.accepted / e.bare, e.refused);
        println!("  conversions into the ledger   {:>10.0} /s   ({:.2} of accepted)", e.ledger, e.ledger / e.accepted);
        let servers = std::net::TcpStream::connect("127.0.0.1:9042").is_ok() && std::net::TcpStream::connect("127.0.0.1:9092").is_ok();
        if std::env::var("REAL").as_deref() == Ok("0") || !servers {
            println!("\nKafka + Cassandra: not measured (start them with scripts/services.sh up)");
            return;
        }
        let r = real(sustain).await;
        println!("\nKafka + Cassandra, 64 concurrent senders, sustained {}s:", sustain.as_secs());
        println!("  raw rdkafka producer          {:>10.0} /s", r.raw_producer);
        println!("  postbacks accepted            {:>10.0} /s   ratio {:.2} (target >= 0.5 and >= 5,000/s); non-200: {}", r.accepted, r.accepted / r.raw_producer, r.refused);
        println!("  ledger consumption            {:>10.0} /s   ratio {:.2} of accepted (target >= 0.9); max lag {:.0}", r.ledger, r.ledger / r.accepted, r.max_lag);
        println!("  raw CQL inserts, same rows    {:>10.0} conversions/s; ledger ratio {:.2} (target >= 0.5)", r.raw_cql, r.ledger / r.raw_cql);
    });
}
