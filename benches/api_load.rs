//! Load run: p50/p99 latency of an authenticated, rate-limited, counted and audited
//! `GET /api/v1/test` beside a bare handler (`GET /healthz`: static JSON, no key, no store)
//! in the same binary, under the same middleware, measured side by side in one run.
//!
//! Rounds alternate the two endpoints (A B, B A, ...) so drift on a shared machine hits both
//! alike. The key's plan is raised so no request is refused: every call takes the limiter
//! check, the usage counter and an audit row, which the run then verifies were written.
//!
//! `cargo bench --bench api_load` (`REQUESTS=2000` per endpoint per round, `ROUNDS=6`,
//! `CONCURRENCY=16`).

use hissaback::configuration::Settings;
use hissaback::startup::Application;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

const ADMIN: &str = "bench-admin-token-0123456789";

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Sends `n` GETs, `concurrency` at a time, answering each request's latency.
async fn run(http: &reqwest::Client, url: &str, key: Option<&str>, n: usize, concurrency: usize) -> (Vec<Duration>, Duration) {
    let started = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (http, url, key, next) = (http.clone(), url.to_string(), key.map(String::from), next.clone());
        workers.push(actix_web::rt::spawn(async move {
            let mut latencies = Vec::new();
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < n {
                let mut req = http.get(&url);
                if let Some(k) = &key {
                    req = req.bearer_auth(k);
                }
                let t = Instant::now();
                let res = req.send().await.expect("request sent");
                assert_eq!(res.status(), 200);
                res.bytes().await.expect("body read");
                latencies.push(t.elapsed());
            }
            latencies
        }));
    }
    let mut all = Vec::with_capacity(n);
    for w in workers {
        all.extend(w.await.unwrap());
    }
    (all, started.elapsed())
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * q).round() as usize]
}

fn main() {
    let (requests, rounds, concurrency) = (env("REQUESTS", 2_000), env("ROUNDS", 6), env("CONCURRENCY", 16));
    actix_web::rt::System::new().block_on(async move {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Settings::load(Some(&std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("configuration/defaults.toml"))).unwrap();
        s.server.listen = "127.0.0.1:0".into();
        s.store.data_dir = dir.path().to_path_buf();
        s.admin.token = Some(ADMIN.to_string().into());
        let app = Application::build(s).await.unwrap();
        let base = format!("http://127.0.0.1:{}", app.port());
        let state = app.state();
        actix_web::rt::spawn(app.run_until_stopped());
        let http = reqwest::Client::builder().pool_max_idle_per_host(concurrency).build().unwrap();
        let admin = |path: &str, body: Value| http.post(format!("{base}/admin/v1{path}")).bearer_auth(ADMIN).json(&body).send();
        let a: Value = admin("/affiliates", json!({"name": "Load", "email": "load@example.test"})).await.unwrap().json().await.unwrap();
        let affiliate = a["data"]["affiliate"]["id"].as_u64().unwrap();
        let k: Value = admin(&format!("/affiliates/{affiliate}/keys"), json!({"rate_limit": {"per_minute": 1_000_000, "burst": 1_000_000}}))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let key = k["data"]["key"]["key"].as_str().unwrap().to_string();
        let (bare_url, api_url) = (format!("{base}/healthz"), format!("{base}/api/v1/test"));
        // Warm-up: connections, caches, the key's bucket.
        run(&http, &bare_url, None, 500, concurrency).await;
        run(&http, &api_url, Some(&key), 500, concurrency).await;
        let store_hist = hissaback::store::STORE_SECONDS.with_label_values(&["embedded"]);
        let (count0, sum0) = (store_hist.get_sample_count(), store_hist.get_sample_sum());
        let (mut bare, mut api) = (Vec::new(), Vec::new());
        let (mut bare_time, mut api_time) = (Duration::ZERO, Duration::ZERO);
        for round in 0..rounds {
            let order = if round % 2 == 0 { [false, true] } else { [true, false] };
            for is_api in order {
                if is_api {
                    let (l, t) = run(&http, &api_url, Some(&key), requests, concurrency).await;
                    api.extend(l);
                    api_time += t;
                } else {
                    let (l, t) = run(&http, &bare_url, None, requests, concurrency).await;
                    bare.extend(l);
                    bare_time += t;
                }
            }
        }
        let (statements, store_secs) = (store_hist.get_sample_count() - count0, store_hist.get_sample_sum() - sum0);
        bare.sort();
        api.sort();
        // Every audited request left its counter and its audit row.
        state.usage.flush().await.unwrap();
        let total = (500 + requests * rounds) as u64;
        let now = chrono::Utc::now();
        let counted: u64 = state
            .store
            .usage_of(affiliate, hissaback::store::UsageResolution::Minute, now - chrono::Duration::hours(1), now + chrono::Duration::minutes(1))
            .await
            .unwrap()
            .iter()
            .filter(|(c, _)| c.route == "/api/v1/test")
            .map(|(_, n)| n.requests)
            .sum();
        let audited = state.store.audit_of(affiliate, now.date_naive(), usize::MAX / 2).await.unwrap().iter().filter(|e| e.route == "/api/v1/test").count();
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        println!("\nGET latency, {} requests per endpoint ({rounds} alternating rounds of {requests}), {concurrency} concurrent connections, one run:", requests * rounds);
        println!("  {:<58} {:>9} {:>9} {:>9} {:>10}", "endpoint", "p50 µs", "p90 µs", "p99 µs", "req/s");
        let row = |name: &str, l: &[Duration], t: Duration| {
            println!("  {name:<58} {:>9.0} {:>9.0} {:>9.0} {:>10.0}", us(quantile(l, 0.5)), us(quantile(l, 0.9)), us(quantile(l, 0.99)), l.len() as f64 / t.as_secs_f64());
        };
        row("bare handler (GET /healthz)", &bare, bare_time);
        row("key + rate limit + usage + audit (GET /api/v1/test)", &api, api_time);
        println!(
            "  ratio api/bare: p50 {:.2}, p99 {:.2}, throughput {:.2}",
            us(quantile(&api, 0.5)) / us(quantile(&bare, 0.5)),
            us(quantile(&api, 0.99)) / us(quantile(&bare, 0.99)),
            (api.len() as f64 / api_time.as_secs_f64()) / (bare.len() as f64 / bare_time.as_secs_f64()),
        );
        println!(
            "  store statements per API request: {:.2} (authentication reads the key and its affiliate; usage and audit batches), mean {:.0} µs each",
            statements as f64 / api.len() as f64,
            store_secs * 1e6 / statements.max(1) as f64
        );
        println!("  written: usage counters {counted} of {total} requests, audit rows {audited} of {total}");
        assert_eq!(counted, total, "every request counted");
        assert_eq!(audited as u64, total, "every request audited");
    });
}
