//! Webhook delivery through the real pipeline (product-changes → fan-out → webhook-jobs →
//! intake → dispatcher → HTTP) to receivers on 127.0.0.1, on the embedded backends with the
//! default webhook settings (64 in flight, 4 per endpoint, 15 s timeout). One run prints,
//! side by side:
//!
//! - the ceiling: the same number of POSTs sent straight to the receiver, as many at a time
//!   as the dispatcher may have in flight to those webhooks;
//! - (a) deliveries per second of a burst of `EVENTS` `product.updated` events, each to
//!   `WEBHOOKS` subscribed webhooks (target >= 5,000/s);
//! - (b) the p50/p99 delay from event to delivery with events produced for `PACED_SECONDS`
//!   at half the rate a burst just measured in the same app (target p99 <= 1 s);
//! - (c) (a) again with one more webhook whose receiver accepts connections and never
//!   answers: the healthy webhooks' deliveries per second, and its ratio to (a) (target at
//!   least 0.9); beside it, the control: one more webhook to a healthy receiver instead (any
//!   extra subscriber costs its share of fan-out, intake and store writes; a dead one should
//!   cost no more than that).
//!
//! Each case runs in an app of its own (its own actix system on its own thread, its own data
//! directory), ended before the next starts.
//!
//! (a), (c) and the control run in turns, `ROUNDS` times each (the order rotated every
//! round): the best of each is shown, and the median of the rounds' ratios to (a), each
//! round's cases having run back to back (the machine's other load comes and goes).
//!
//! `cargo bench --bench webhooks` (`EVENTS`, default 5000; `WEBHOOKS`, default 8;
//! `PACED_SECONDS`, default 10; `ROUNDS`, default 4). Not run by scripts/test.sh.

use actix_web::{web, App, HttpResponse, HttpServer};
use hissaback::configuration::Settings;
use hissaback::startup::Application;
use hissaback_topics::bus::publish_events;
use hissaback_topics::events::{ContentChange, ProductChanged};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const ADMIN: &str = "bench-admin-token-0123456789";

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// This process's CPU time so far (user and system, every thread), from /proc/self/stat.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are the 14th and 15th fields, in clock ticks (100 per second on Linux).
    (ticks(11) + ticks(12)) / 100.0
}

/// Deliveries per second of wall-clock time and of this process's CPU time: the first is
/// what the target is about, the second holds still while the machine's other load comes
/// and goes (this machine's cores are shared).
#[derive(Clone, Copy, Default)]
struct Rate {
    per_s: f64,
    per_cpu_s: f64,
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// What a receiver saw: deliveries counted, and the delay from `occurred_at` to arrival (ms)
/// of each while `recording`.
#[derive(Default)]
struct Seen {
    count: AtomicUsize,
    recording: std::sync::atomic::AtomicBool,
    delays: Mutex<Vec<i64>>,
}

impl Seen {
    fn start_recording(&self) {
        self.delays.lock().unwrap().clear();
        self.recording.store(true, Ordering::SeqCst);
    }

    fn delays(&self) -> Vec<i64> {
        self.recording.store(false, Ordering::SeqCst);
        let mut d = std::mem::take(&mut *self.delays.lock().unwrap());
        d.sort_unstable();
        d
    }

    async fn wait_for(&self, n: usize, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(600);
        while self.count.load(Ordering::SeqCst) < n {
            assert!(Instant::now() < deadline, "{what}: {} of {n} deliveries arrived", self.count.load(Ordering::SeqCst));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// A receiver answering 200 at once; its base URL.
async fn receiver(seen: Arc<Seen>) -> String {
    let server = HttpServer::new(move || {
        let seen = seen.clone();
        App::new().default_service(web::to(move |body: web::Bytes| {
            let seen = seen.clone();
            async move {
                let at = serde_json::from_slice::<Value>(&body)
                    .ok()
                    .and_then(|v| v["occurred_at"].as_str().and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok()));
                if seen.recording.load(Ordering::Relaxed) {
                    if let Some(at) = at {
                        seen.delays.lock().unwrap().push(now_ms() - at.timestamp_millis());
                    }
                }
                seen.count.fetch_add(1, Ordering::SeqCst);
                HttpResponse::Ok().finish()
            }
        }))
    })
    .workers(2)
    .disable_signals()
    .bind("127.0.0.1:0")
    .unwrap();
    let addr = server.addrs()[0];
    actix_web::rt::spawn(server.run());
    format!("http://{addr}")
}

/// A receiver that accepts connections and never answers (nor closes them); its base URL.
async fn black_hole() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    actix_web::rt::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = listener.accept().await {
            held.push(conn);
        }
    });
    format!("http://{addr}")
}

fn settings(dir: &std::path::Path) -> Settings {
    let mut s = Settings::load(Some(&std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("configuration/defaults.toml"))).unwrap();
    s.server.listen = "127.0.0.1:0".into();
    s.store.data_dir = dir.to_path_buf();
    s.admin.token = Some(ADMIN.to_string().into());
    s.webhooks.allow = vec!["127.0.0.1".into()];
    s
}

/// How many POSTs the dispatcher may have in flight to `webhooks` endpoints.
fn concurrency(s: &Settings, webhooks: usize) -> usize {
    s.webhooks.max_concurrency.min(s.webhooks.per_endpoint_concurrency * webhooks)
}

/// Runs `case` in an actix system of its own on a thread of its own: leaving it ends the
/// app's actors too.
fn isolated<T: Send + 'static, F: std::future::Future<Output = T> + 'static>(case: impl FnOnce() -> F + Send + 'static) -> T {
    std::thread::spawn(move || actix_web::rt::System::new().block_on(case())).join().expect("the case ran")
}

/// A webhook subscribed besides the measured ones.
#[derive(Clone, Copy, PartialEq)]
enum Extra {
    None,
    /// To a receiver that accepts connections and never answers.
    Dead,
    /// To a receiver of its own that answers at once (not counted): the control for `Dead`.
    Healthy,
}

/// An app on fresh embedded backends with `healthy` webhooks subscribed to `product.updated`
/// (and `extra`), warmed up.
struct Bench {
    app: actix_web::dev::ServerHandle,
    state: actix_web::web::Data<hissaback::state::AppState>,
    seen: Arc<Seen>,
    product_id: u64,
    healthy: usize,
    _dir: tempfile::TempDir,
}

impl Bench {
    async fn start(healthy: usize, extra: Extra) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let app = Application::build(settings(dir.path())).await.unwrap();
        let base = format!("http://127.0.0.1:{}", app.port());
        let state = app.state();
        let handle = app.handle();
        actix_web::rt::spawn(app.run_until_stopped());

        let seen = Arc::new(Seen::default());
        let url = receiver(seen.clone()).await;
        let http = reqwest::Client::new();
        let admin = |path: &str, body: Value| http.post(format!("{base}/admin/v1{path}")).bearer_auth(ADMIN).json(&body).send();
        let a: Value = admin("/affiliates", json!({"name": "Bench", "email": "b@example.test"})).await.unwrap().json().await.unwrap();
        let aid = a["data"]["affiliate"]["id"].as_u64().unwrap();
        let k: Value = admin(&format!("/affiliates/{aid}/keys"), json!({})).await.unwrap().json().await.unwrap();
        let key = k["data"]["key"]["key"].as_str().unwrap().to_string();
        let mut urls: Vec<String> = (0..healthy).map(|i| format!("{url}/hook{i}")).collect();
        match extra {
            Extra::None => {}
            Extra::Dead => urls.push(format!("{}/never", black_hole().await)),
            Extra::Healthy => urls.push(format!("{}/extra", receiver(Arc::new(Seen::default())).await)),
        }
        for u in urls {
            let w = http.post(format!("{base}/api/v1/webhooks")).bearer_auth(&key).json(&json!({"event": "product.updated", "url": u})).send().await.unwrap();
            assert_eq!(w.status(), 201);
        }
        let p: Value = admin("/products", json!({"title": "Bench", "slug": "bench", "price": 10, "type": "App\\Models\\Course", "published": false}))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let product_id = p["data"]["product"]["id"].as_u64().unwrap();
        let bench = Bench { app: handle, state, seen, product_id, healthy, _dir: dir };
        // Warm-up: consumer groups joined, connections open, a first burst through.
        bench.publish(1).await;
        bench.seen.wait_for(healthy, "warm-up").await;
        bench.burst(500).await;
        bench
    }

    /// Publishes `events` changes of the product, 500 at a time, stamped as they go.
    async fn publish(&self, events: usize) {
        let mut left = events;
        while left > 0 {
            let n = left.min(500);
            let e = ProductChanged { change: ContentChange::ProductUpdated { product_id: self.product_id }, occurred_at_ms: now_ms() };
            publish_events(self.state.bus.as_ref(), &vec![e; n]).await.unwrap();
            left -= n;
        }
    }

    /// A burst of `events`: healthy deliveries per second until the last arrived, and per
    /// second of this process's CPU time meanwhile.
    async fn burst(&self, events: usize) -> Rate {
        let target = self.seen.count.load(Ordering::SeqCst) + events * self.healthy;
        let (started, cpu) = (Instant::now(), cpu_seconds());
        self.publish(events).await;
        self.seen.wait_for(target, "burst").await;
        let delivered = (events * self.healthy) as f64;
        Rate { per_s: delivered / started.elapsed().as_secs_f64(), per_cpu_s: delivered / (cpu_seconds() - cpu).max(0.01) }
    }

    /// Events at `deliveries_per_s` / webhooks per second for `seconds`: the delays (sorted).
    async fn paced(&self, deliveries_per_s: f64, seconds: u64) -> (f64, Vec<i64>) {
        let events_per_s = deliveries_per_s / self.healthy as f64;
        let total = (events_per_s * seconds as f64).round() as usize;
        let target = self.seen.count.load(Ordering::SeqCst) + total * self.healthy;
        self.seen.start_recording();
        let started = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        let mut sent = 0;
        while sent < total {
            tick.tick().await;
            let due = ((started.elapsed().as_secs_f64() * events_per_s) as usize).min(total);
            if due > sent {
                self.publish(due - sent).await;
                sent = due;
            }
        }
        self.seen.wait_for(target, "paced").await;
        (total as f64 * self.healthy as f64 / started.elapsed().as_secs_f64(), self.seen.delays())
    }

    async fn stop(self) {
        self.app.stop(false).await;
    }
}

/// The ceiling: `posts` POSTs of a webhook-sized body straight to a receiver, `concurrency`
/// at a time.
async fn direct(posts: usize, concurrency: usize) -> f64 {
    let seen = Arc::new(Seen::default());
    let url = format!("{}/hook", receiver(seen).await);
    let client = reqwest::Client::new();
    let body = json!({"event": "product.updated", "webhook_id": 1, "occurred_at": "2026-01-01T00:00:00.000Z", "product": {"id": 1, "title": "Bench"}}).to_string();
    let started = Instant::now();
    let sem = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let mut tasks = Vec::with_capacity(posts);
    for _ in 0..posts {
        let permit = sem.clone().acquire_owned().await.unwrap();
        let (c, u, b) = (client.clone(), url.clone(), body.clone());
        tasks.push(actix_web::rt::spawn(async move {
            let _p = permit;
            c.post(u).header("content-type", "application/json").body(b).send().await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    posts as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let events = env_or("EVENTS", 5000);
    let webhooks = env_or("WEBHOOKS", 8).max(1);
    let paced_seconds = env_or("PACED_SECONDS", 10) as u64;
    let rounds = env_or("ROUNDS", 4).max(1);
    let deliveries = events * webhooks;
    let c = concurrency(&settings(std::path::Path::new(".")), webhooks);

    let ceiling = isolated(move || async move { direct(deliveries, c).await });
    let (paced_at, paced_rate, delays) = isolated(move || async move {
        let bench = Bench::start(webhooks, Extra::None).await;
        let rate = bench.burst(events).await.per_s;
        let (paced_rate, delays) = bench.paced(rate / 2.0, paced_seconds).await;
        bench.stop().await;
        (rate / 2.0, paced_rate, delays)
    });
    // (a), (c) and its control in turns, each in a fresh app, `rounds` of each, the order
    // rotated every round: the machine's other load comes and goes, and each should meet the
    // same share of it. Shown: the best of each, and the median of the rounds' ratios to (a)
    // (each round's three ran back to back).
    let burst = move |extra: Extra| {
        isolated(move || async move {
            let bench = Bench::start(webhooks, extra).await;
            let rate = bench.burst(events).await;
            bench.stop().await;
            rate
        })
    };
    let cases = [Extra::None, Extra::Dead, Extra::Healthy];
    let mut runs: [Vec<Rate>; 3] = Default::default();
    for round in 0..rounds {
        let mut got = [Rate::default(); 3];
        for i in 0..3 {
            let case = (round + i) % 3;
            got[case] = burst(cases[case]);
        }
        eprintln!(
            "round {}: (a) {:.0}/s {:.0}/cpu-s, (c) {:.0}/s {:.0}/cpu-s, control {:.0}/s {:.0}/cpu-s",
            round + 1,
            got[0].per_s,
            got[0].per_cpu_s,
            got[1].per_s,
            got[1].per_cpu_s,
            got[2].per_s,
            got[2].per_cpu_s
        );
        for i in 0..3 {
            runs[i].push(got[i]);
        }
    }
    let best = |i: usize, f: fn(&Rate) -> f64| runs[i].iter().map(f).fold(0f64, f64::max);
    let median_ratio = |i: usize, f: fn(&Rate) -> f64| {
        let mut v: Vec<f64> = runs[i].iter().zip(&runs[0]).map(|(x, a)| f(x) / f(a)).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let per_s: fn(&Rate) -> f64 = |r| r.per_s;
    let per_cpu_s: fn(&Rate) -> f64 = |r| r.per_cpu_s;
    let rate = best(0, per_s);
    println!("\nwebhooks: {events} product.updated events x {webhooks} webhooks = {deliveries} deliveries per burst; embedded backends, default webhook settings; one run");
    println!("  {:<74} {:>13} {:>13} {:>8} {:>8}", "case", "deliveries/s", "per CPU-s", "p50 ms", "p99 ms");
    let row = |case: String, rate: f64, cpu: String, p50: String, p99: String| println!("  {case:<74} {rate:>13.0} {cpu:>13} {p50:>8} {p99:>8}");
    let dash = || "-".to_string();
    row(format!("direct POSTs to the receiver, {c} at a time (ceiling)"), ceiling, dash(), dash(), dash());
    for (i, case) in [
        format!("(a) pipeline, burst (best of {rounds})"),
        format!("(c) (a) plus one webhook that never answers: healthy ones (best of {rounds})"),
        format!("    control: (a) plus one more healthy webhook, not counted (best of {rounds})"),
    ]
    .into_iter()
    .enumerate()
    {
        row(case, best(i, per_s), format!("{:.0}", best(i, per_cpu_s)), dash(), dash());
    }
    let (p50, p99) = (percentile(&delays, 0.5), percentile(&delays, 0.99));
    row(format!("(b) pipeline, events at half its burst rate ({paced_at:.0} deliveries/s) for {paced_seconds} s"), paced_rate, dash(), p50.to_string(), p99.to_string());
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    println!("  (a) / ceiling: {:.2}; (a) target >= 5000/s: {}", rate / ceiling, verdict(rate >= 5000.0));
    println!("  (b) p99 {p99} ms over {} deliveries; target <= 1000 ms: {}", delays.len(), verdict(p99 <= 1000));
    let (dead, dead_cpu) = (median_ratio(1, per_s), median_ratio(1, per_cpu_s));
    println!(
        "  (c) / (a), median of the rounds: {dead:.2} per second, {dead_cpu:.2} per CPU-second (best to best {:.2}); target >= 0.90: {}",
        best(1, per_s) / rate,
        verdict(dead >= 0.9)
    );
    println!(
        "  control / (a), median of the rounds: {:.2} per second, {:.2} per CPU-second: what any {}th subscriber costs (its share of fan-out, intake, writes)",
        median_ratio(2, per_s),
        median_ratio(2, per_cpu_s),
        webhooks + 1
    );
}
