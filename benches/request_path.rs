//! The request path beside the framework (issue 12, "Request path at the speed of the
//! framework"), every figure beside its ceiling measured in the same run
//! (`cargo bench --bench request_path`):
//!
//! 1. The release binary (`serve`, embedded backends, fresh data dir) pinned to core 0 with one
//!    HTTP worker, seeded through the admin API only: an affiliate, one secret key (`hb_sk_`,
//!    catalogue scopes) per `/api/v1` endpoint measured and a publishable key (`hb_pk_`,
//!    `offers.read`) for `/v1/offers`, each with its plan raised to the maximum
//!    (1,000,000/min, burst 1,000,000) so nothing is refused but every call takes the limiter
//!    check; categories, 60 products (20 with "Rocket" in the title, so
//!    `per_page=15&search=rocket` is a full page of about 6.9 kB) with coupons; brands and 24
//!    offers.
//! 2. The bare ceiling: this bench re-executed on core 0 as a one-worker actix-web server that
//!    answers, at `/bare/test`, `/bare/products15` and `/bare/offers15`, exactly the bytes the
//!    service answered once at the matching endpoint (`content-type: application/json`).
//! 3. Maximum rate: `wrk -t1 -c64 -d<SECONDS>s --latency`, pinned to core 1, on `GET /healthz`,
//!    `/api/v1/test`, `/api/v1/categories`, `/api/v1/products?per_page=1`,
//!    `/api/v1/products?per_page=15&search=rocket`, `/v1/offers?per_page=15` and the bare
//!    twins; each endpoint beside its twin in alternating rounds (A B, then B A, with the
//!    endpoint order reversed too) so drift on a shared machine hits both alike, with a 1.2 s
//!    pause after each run on the service so its last usage and audit flush (every second)
//!    lands before the next run. Printed as the
//!    issue's table (req/s: mean of the rounds; p99: the worst round), then the ratios against
//!    the targets (>= 0.7 for `/api/v1/test`, >= 0.6 for the products page and the offers page).
//! 4. Latency at half the maximum: for the three target endpoints an open-loop load at half the
//!    rate measured in 3 (this process on core 1: 64 keep-alive connections speaking raw
//!    HTTP/1.1, one blocking thread each, each sending on a fixed schedule at rate/64; threads
//!    because `thread::sleep` is precise to tens of µs where tokio's timer ticks every 1 ms),
//!    latency counted from each request's intended send time, so a slow answer delays the
//!    count of those behind it (no coordinated omission); p50/p99 against the 5 ms target, and
//!    the generator's own lateness (p99) so a busy core 1 shows.
//! 5. Usage and audit: every request the run sent with each key (exact for the bodies fetched
//!    and the open-loop runs; wrk's completed count plus up to 64 requests in flight when each
//!    wrk run stops), then the service is stopped with SIGTERM (it drains usage and audit) and
//!    `<data_dir>/hissaback.db` is read: `usage_rollups.requests` at resolution `minute` and the
//!    `audit_log` rows of each key. Exits non-zero when any request is missing (or more were
//!    recorded than could have been sent).
//!
//! Environment: `SECONDS` (per run, default 5), `ROUNDS` (default 2). Needs `wrk` and
//! `taskset`; `scripts/bench-tools.sh` installs wrk when it is missing (the bench calls it).

#[path = "support/http.rs"]
#[allow(dead_code)]
mod http;
#[path = "support/process.rs"]
#[allow(dead_code)]
mod process;

use process::{free_port, service, spawn_bare, ADMIN};
use serde_json::{json, Value};
use std::process::Command;
use std::time::{Duration, Instant};

const CONNS: usize = 64;
/// Pause after each run on the service, so its last usage and audit flush (every second) lands
/// before the next measurement starts.
const SETTLE: Duration = Duration::from_millis(1200);

/// Makes sure `wrk` is on the PATH, installing it with `scripts/bench-tools.sh` when missing.
fn ensure_wrk() {
    let present = || Command::new("wrk").arg("-v").output().is_ok();
    if present() {
        return;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/bench-tools.sh");
    let installed = Command::new("bash").arg(script).status().is_ok_and(|s| s.success());
    if !installed || !present() {
        eprintln!("request_path: wrk is needed and could not be installed; run `bash scripts/bench-tools.sh` (as root on Debian) or install wrk yourself");
        std::process::exit(2);
    }
}

/// One wrk run.
#[derive(Clone, Copy, Default)]
struct Wrk {
    rps: f64,
    p99_ms: f64,
    /// Completed answers ("N requests in ...").
    requests: u64,
    non_2xx: u64,
    /// Socket errors (connect, read, write, timeout).
    errors: u64,
}

/// wrk's durations: `850.00us`, `2.03ms`, `1.20s`, `1.00m`.
fn wrk_ms(s: &str) -> f64 {
    let at = s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len());
    let v: f64 = s[..at].parse().unwrap_or(f64::NAN);
    v * match &s[at..] {
        "us" => 0.001,
        "ms" => 1.0,
        "s" => 1000.0,
        "m" => 60_000.0,
        "h" => 3_600_000.0,
        _ => f64::NAN,
    }
}

fn parse_wrk(out: &str) -> Wrk {
    let mut w = Wrk::default();
    for line in out.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["99%", v] => w.p99_ms = wrk_ms(v),
            ["Requests/sec:", v] => w.rps = v.parse().unwrap(),
            [n, "requests", "in", ..] => w.requests = n.parse().unwrap(),
            ["Non-2xx", "or", "3xx", "responses:", n] => w.non_2xx = n.parse().unwrap(),
            ["Socket", "errors:", rest @ ..] => w.errors = rest.iter().filter_map(|x| x.trim_end_matches(',').parse::<u64>().ok()).sum(),
            _ => {}
        }
    }
    assert!(w.requests > 0 && w.p99_ms.is_finite(), "unexpected wrk output:\n{out}");
    w
}

/// `wrk -t1 -c64 -d<secs>s --latency` on core 1.
fn wrk(port: u16, path: &str, key: Option<&str>, secs: u64) -> Wrk {
    let mut cmd = Command::new("taskset");
    cmd.args(["-c", "1", "wrk", "-t1", &format!("-c{CONNS}"), &format!("-d{secs}s"), "--latency"]);
    if let Some(k) = key {
        cmd.args(["-H", &format!("Authorization: Bearer {k}")]);
    }
    let out = cmd.arg(format!("http://127.0.0.1:{port}{path}")).output().expect("run wrk");
    assert!(out.status.success(), "wrk failed: {}", String::from_utf8_lossy(&out.stderr));
    parse_wrk(&String::from_utf8_lossy(&out.stdout))
}

/// A key as issued: its id and the plain key.
#[derive(Clone)]
struct Key {
    id: u64,
    plain: String,
}

/// An endpoint measured, with what was sent with its key.
struct Endpoint {
    label: String,
    path: String,
    key: Option<Key>,
    /// The bare twin's path and the ratio target.
    bare: Option<(String, f64)>,
    body: Vec<u8>,
    runs: Vec<Wrk>,
    bare_runs: Vec<Wrk>,
    /// Requests known exactly (fetches, open-loop runs).
    exact: u64,
    /// Answers wrk completed, and how many wrk runs (each may leave 64 more answered).
    wrk_completed: u64,
    wrk_runs: u64,
}

impl Endpoint {
    fn new(label: &str, path: &str, key: Option<Key>, bare: Option<(&str, f64)>) -> Self {
        Endpoint {
            label: label.into(),
            path: path.into(),
            key,
            bare: bare.map(|(p, t)| (p.into(), t)),
            body: vec![],
            runs: vec![],
            bare_runs: vec![],
            exact: 0,
            wrk_completed: 0,
            wrk_runs: 0,
        }
    }

    fn plain(&self) -> Option<&str> {
        self.key.as_ref().map(|k| k.plain.as_str())
    }

    /// A wrk run on the service, counted.
    async fn measure(&mut self, port: u16, secs: u64) -> Wrk {
        let w = wrk(port, &self.path, self.plain(), secs);
        self.wrk_completed += w.requests;
        self.wrk_runs += 1;
        tokio::time::sleep(SETTLE).await;
        w
    }
}

fn mean(runs: &[Wrk]) -> f64 {
    runs.iter().map(|w| w.rps).sum::<f64>() / runs.len().max(1) as f64
}

fn worst_p99(runs: &[Wrk]) -> f64 {
    runs.iter().map(|w| w.p99_ms).fold(0.0, f64::max)
}

fn thousands(v: f64) -> String {
    let s = format!("{:.0}", v);
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "PASS"
    } else {
        "MISS"
    }
}

async fn admin(http: &reqwest::Client, base: &str, path: &str, body: Value) -> Value {
    let r = http.post(format!("{base}/admin/v1{path}")).bearer_auth(ADMIN).json(&body).send().await.unwrap();
    let status = r.status();
    let answer: Value = r.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "POST /admin/v1{path}: {status} {answer}");
    answer
}

/// The "Rocket" courses: with their short descriptions, a page of 15 is about 6.9 kB.
const ROCKET_TITLES: [&str; 20] = [
    "Rocket Engines in Rust",
    "Rocket Propulsion 101",
    "Rocket Flight Computers",
    "Rocket Science for Devs",
    "Rocket Web APIs in Rust",
    "Model Rocket Design",
    "Rocket Telemetry",
    "Liquid Rocket Engines",
    "Rocket Trajectories",
    "Reusable Rocket Landing",
    "Rocket Avionics on STM32",
    "Hybrid Rocket Motors",
    "Rocket GNC Essentials",
    "Rocket Payload Design",
    "Rocket Structures",
    "Rocket Launch Safety",
    "Solid Rocket Motors",
    "Rocket Nozzles with CFD",
    "Rocket Recovery Systems",
    "Rocket Test Stand Data",
];
const ROCKET_BLURBS: [&str; 3] = ["Labs, a capstone project, lifetime access.", "Video lessons, worksheets, a certificate.", "Step by step, a graded lab per chapter."];

const OTHER_SUBJECTS: [&str; 10] =
    ["UI Design", "Kubernetes", "PostgreSQL", "TypeScript", "Go Services", "Data Visualisation", "Figma Prototyping", "Linux Kernel", "Distributed Systems", "Machine Learning"];
const OTHER_LEVELS: [&str; 4] = ["Foundations of", "Practical", "Advanced", "Production"];

/// Blurbs of about 150 characters; none says "rocket".
const BLURBS: [&str; 4] = [
    "Twelve hands-on modules with exercises, a capstone project reviewed by the instructor and lifetime access to updates and the community forum.",
    "From first principles to production: short video lessons, downloadable worksheets, weekly live Q&A sessions and a certificate on completion.",
    "Learn by building: every chapter ends with a graded lab, and the final project is a portfolio piece you can show to employers and clients.",
    "Self-paced lessons with quizzes after each section, source code for every example, and mentoring office hours twice a month for questions.",
];

/// Categories, 60 products (20 "Rocket" courses among 40 others, newest first interleaved)
/// with coupons, brands and 24 offers, all through the admin API.
async fn seed_catalogue(http: &reqwest::Client, base: &str) {
    let categories = [("Aerospace Engineering", "aerospace"), ("Web Development", "web-development"), ("Design", "design"), ("Data Science", "data-science"), ("Systems Programming", "systems-programming"), ("Operations", "operations")];
    for (name, slug) in categories {
        admin(http, base, "/categories", json!({"name": name, "slug": slug, "active": true})).await;
    }
    let mut others = OTHER_LEVELS.iter().flat_map(|l| OTHER_SUBJECTS.iter().map(move |s| format!("{l} {s}")));
    for i in 0..60usize {
        // Every third product is a "Rocket" course (`r` counts them): a short description, a
        // video on one in five, a coupon on another one in five. The others have longer
        // descriptions (never saying "rocket"), a video and a coupon each.
        let (rocket, r) = (i % 3 == 1, i / 3);
        let title = if rocket { ROCKET_TITLES[r].to_string() } else { others.next().unwrap() };
        let slug: String = title.to_lowercase().split(|c: char| !c.is_ascii_alphanumeric()).filter(|p| !p.is_empty()).collect::<Vec<_>>().join("-");
        let (description, category) =
            if rocket { (ROCKET_BLURBS[r % 3].to_string(), categories[r % 2 * 4].1) } else { (format!("{title}. {}", BLURBS[i % BLURBS.len()]), categories[1 + i % 4].1) };
        let mut body = json!({
            "title": title,
            "slug": slug,
            "description": description,
            "image": format!("https://cdn.example.com/p/{slug}.png"),
            "price": format!("{}.99", 29 + (i % 7) * 10).parse::<f64>().unwrap(),
            "type": "App\\Models\\Course",
            "category_slug": category,
            "published": true,
            "teachers": [{"id": 1 + i % 5, "name": "Jamie Rivera"}],
        });
        if !rocket || r % 5 == 0 {
            body["introduction_video_url"] = json!(format!("https://videos.example.com/{slug}-intro.mp4"));
        }
        let id = admin(http, base, "/products", body).await["data"]["product"]["id"].as_u64().unwrap();
        if !rocket || r % 5 == 2 {
            admin(http, base, &format!("/products/{id}/coupons"), json!({"tier": "mid", "code": format!("AFFMID-{id}"), "percent_off": 25})).await;
        }
    }
    let brands = ["Acme Travel", "Northwind Finance", "Contoso Mobile"];
    let mut brand_ids = vec![];
    for name in brands {
        brand_ids.push(admin(http, base, "/brands", json!({"name": name})).await["data"]["brand"]["id"].clone());
    }
    let kinds = [("Rewards Card", "finance"), ("Weekend Getaway", "travel"), ("Unlimited Plan", "telecom"), ("Premium Membership", "shopping")];
    for i in 0..24usize {
        let (kind, category) = kinds[i % kinds.len()];
        admin(
            http,
            base,
            "/offers",
            json!({
                "brand_id": brand_ids[i % brands.len()],
                "name": format!("{} {kind} {}", brands[i % brands.len()], i + 1),
                "category": category,
                "base_commission": 5 + i % 10,
                "default_share_pct": 40,
                "tracking_url": format!("https://track.example.net/c?o={}&click_id={{click_id}}", 100 + i),
                "currency": "USD",
            }),
        )
        .await;
    }
}

/// The affiliate and its keys: one secret key with the catalogue scopes per `/api/v1` endpoint
/// (so each key's usage is one endpoint's), and a publishable key for the offers.
async fn issue_keys(http: &reqwest::Client, base: &str, secret: usize) -> (Vec<Key>, Key) {
    let affiliate = admin(http, base, "/affiliates", json!({"name": "Request Path", "email": "path@example.test"})).await["data"]["affiliate"]["id"].as_u64().unwrap();
    let plan = json!({"per_minute": 1_000_000, "burst": 1_000_000});
    let issue = |body: Value| async move {
        let k = admin(http, base, &format!("/affiliates/{affiliate}/keys"), body).await;
        Key { id: k["data"]["key"]["id"].as_u64().unwrap(), plain: k["data"]["key"]["key"].as_str().unwrap().to_string() }
    };
    let mut keys = vec![];
    for _ in 0..secret {
        keys.push(issue(json!({"kind": "secret", "scopes": ["products.list", "products.view", "promotions.view"], "rate_limit": plan})).await);
    }
    let public = issue(json!({"kind": "publishable", "scopes": ["offers.read"], "rate_limit": plan})).await;
    assert!(keys.iter().all(|k| k.plain.starts_with("hb_sk_")) && public.plain.starts_with("hb_pk_"));
    (keys, public)
}

/// The open-loop run at a fixed rate.
struct Paced {
    sent: u64,
    non_200: u64,
    /// Latency from the intended send time, µs, sorted.
    latency: Vec<u64>,
    /// How late the generator sent requests whose connection was free in time, µs, sorted.
    lag: Vec<u64>,
    secs: f64,
}

fn quantile(sorted: &[u64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1] as f64 / 1000.0
}

/// `rate` requests per second for `window` on `CONNS` keep-alive connections, connection `c`
/// sending at `start + (c + 64k) / rate`; each latency counts from that intended time. One OS
/// thread per connection (on core 1 with this process), blocking: `thread::sleep` wakes within
/// tens of µs of the send time, where tokio's timer has 1 ms ticks (and spinning to beat them
/// would take core 1 from whatever else runs there, delaying the sends more).
fn paced(port: u16, path: &str, key: Option<&str>, rate: f64, window: Duration) -> Paced {
    let mut req = Vec::new();
    http::get_request(&mut req, path, &key.map(|k| format!("Authorization: Bearer {k}\r\n")).unwrap_or_default());
    let req = std::sync::Arc::new(req);
    let start = Instant::now() + Duration::from_millis(300);
    let end = start + window;
    let period = Duration::from_secs_f64(CONNS as f64 / rate);
    let threads: Vec<_> = (0..CONNS)
        .map(|c| {
            let req = req.clone();
            std::thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || {
                    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
                    s.set_nodelay(true).unwrap();
                    let mut buf = Vec::new();
                    let (mut latency, mut lag, mut non_200) = (vec![], vec![], 0u64);
                    let mut intended = start + Duration::from_secs_f64(c as f64 / rate);
                    let mut free_at = Instant::now();
                    while intended < end {
                        std::thread::sleep(intended.saturating_duration_since(Instant::now()));
                        let sent = Instant::now();
                        if free_at <= intended {
                            lag.push((sent - intended).as_micros() as u64);
                        }
                        let (status, _) = http::exchange_blocking(&mut s, &req, &mut buf);
                        free_at = Instant::now();
                        latency.push((free_at - intended).as_micros() as u64);
                        non_200 += u64::from(status != 200);
                        intended += period;
                    }
                    (latency, lag, non_200)
                })
                .unwrap()
        })
        .collect();
    let mut out = Paced { sent: 0, non_200: 0, latency: vec![], lag: vec![], secs: 0.0 };
    for t in threads {
        let (latency, lag, non_200) = t.join().unwrap();
        out.sent += latency.len() as u64;
        out.latency.extend(latency);
        out.lag.extend(lag);
        out.non_200 += non_200;
    }
    out.secs = window.as_secs_f64();
    out.latency.sort_unstable();
    out.lag.sort_unstable();
    out
}

/// What the service recorded for a key: (usage requests at minute resolution, 429s among
/// them, audit rows).
fn recorded(db: &rusqlite::Connection, key: u64) -> (u64, u64, u64) {
    let (requests, limited): (i64, i64) = db
        .query_row(
            "SELECT COALESCE(SUM(requests), 0), COALESCE(SUM(rate_limited), 0) FROM usage_rollups WHERE resolution = 'minute' AND key_id = ?1",
            [key as i64],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let audited: i64 = db.query_row("SELECT COUNT(*) FROM audit_log WHERE json_extract(body, '$.key_id') = ?1", [key as i64], |r| r.get(0)).unwrap();
    (requests as u64, limited as u64, audited as u64)
}

fn main() {
    process::serve_bare_if_asked();
    ensure_wrk();
    // This process (the open-loop generator) and wrk run on core 1, the servers on core 0.
    process::pin_self_to_core1();
    let env = |name: &str, default: u64| std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    let (secs, rounds) = (env("SECONDS", 5), env("ROUNDS", 2));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let local = tokio::task::LocalSet::new();
    let complete = local.block_on(&rt, run(secs, rounds));
    if !complete {
        eprintln!("\nrequest_path: FAILED: requests are missing from the usage counters or the audit log (see above)");
        std::process::exit(1);
    }
}

/// The 1-minute load average: other work on the machine moves every figure.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg").ok().and_then(|l| l.split_whitespace().next().map(String::from)).unwrap_or_else(|| "?".into())
}

/// The whole run; false when a request is missing from the usage counters or the audit log.
async fn run(secs: u64, rounds: u64) -> bool {
    let load_before = load_average();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let svc = service(port, dir.path(), &[], true);
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    seed_catalogue(&http, &base).await;
    let (keys, public) = issue_keys(&http, &base, 4).await;
    let mut eps = vec![
        Endpoint::new("`GET /healthz` (same middleware)", "/healthz", None, None),
        Endpoint::new("`GET /api/v1/test` (key, limiter, usage, audit)", "/api/v1/test", Some(keys[0].clone()), Some(("/bare/test", 0.7))),
        Endpoint::new("`GET /api/v1/categories`", "/api/v1/categories", Some(keys[1].clone()), None),
        Endpoint::new("`GET /api/v1/products?per_page=1`", "/api/v1/products?per_page=1", Some(keys[2].clone()), None),
        Endpoint::new("`GET /api/v1/products?per_page=15&search=rocket`", "/api/v1/products?per_page=15&search=rocket", Some(keys[3].clone()), Some(("/bare/products15", 0.6))),
        Endpoint::new("`GET /v1/offers?per_page=15` (publishable key)", "/v1/offers?per_page=15", Some(public), Some(("/bare/offers15", 0.6))),
    ];

    // Each endpoint's real answer, once: the bare twins serve exactly these bytes.
    let mut odd = vec![];
    for e in &mut eps {
        let mut r = http.get(format!("{base}{}", e.path));
        if let Some(k) = e.plain() {
            r = r.bearer_auth(k);
        }
        let r = r.send().await.unwrap();
        e.exact += u64::from(e.key.is_some());
        let status = r.status();
        e.body = r.bytes().await.unwrap().to_vec();
        if status != 200 {
            odd.push(format!("{} answered {status}: {}", e.path, String::from_utf8_lossy(&e.body)));
        }
        e.label = e.label.replace("rocket`", &format!("rocket` ({:.1} kB)", e.body.len() as f64 / 1000.0));
    }
    for o in &odd {
        eprintln!("warning: {o}");
    }
    let routes: Vec<(String, String)> = eps.iter().filter_map(|e| e.bare.as_ref().map(|(p, _)| (p.clone(), String::from_utf8(e.body.clone()).unwrap()))).collect();
    let (bare_child, bare_port) = spawn_bare(&routes);
    for (path, body) in &routes {
        let got = http.get(format!("http://127.0.0.1:{bare_port}{path}")).send().await.unwrap().bytes().await.unwrap();
        assert_eq!(got.as_ref(), body.as_bytes(), "the bare twin {path} answers the same bytes");
    }

    // Warm-up (connections, caches, buckets), then alternating rounds.
    eprintln!("warming up, then {rounds} rounds of {secs}s runs ...");
    for e in &mut eps {
        e.measure(port, 1).await;
        if let Some((p, _)) = &e.bare {
            wrk(bare_port, p, None, 1);
        }
    }
    for round in 0..rounds {
        let forward = round % 2 == 0;
        let order: Vec<usize> = if forward { (0..eps.len()).collect() } else { (0..eps.len()).rev().collect() };
        for i in order {
            let e = &mut eps[i];
            let bare_path = e.bare.as_ref().map(|(p, _)| p.clone());
            let bare_run = |e: &mut Endpoint| {
                if let Some(p) = &bare_path {
                    let w = wrk(bare_port, p, None, secs);
                    e.bare_runs.push(w);
                }
            };
            if !forward {
                bare_run(e);
            }
            let w = e.measure(port, secs).await;
            e.runs.push(w);
            if forward {
                bare_run(e);
            }
        }
    }
    drop(bare_child);

    println!(
        "\nservice on core 0 (one worker), wrk -t1 -c64 on core 1, {rounds} alternating rounds of {secs}s (req/s: mean; p99: worst round); 1-minute load average {load_before} before, {} after:\n",
        load_average()
    );
    println!("| endpoint | req/s | p99 |");
    println!("| --- | ---: | ---: |");
    let row = |label: &str, runs: &[Wrk]| println!("| {label} | {} | {:.1} ms |", thousands(mean(runs)), worst_p99(runs));
    for e in &eps {
        row(&e.label, &e.runs);
    }
    for e in eps.iter().filter(|e| e.bare.is_some()) {
        row(&format!("bare actix-web handler, `{}`'s body ({} B)", e.path, e.body.len()), &e.bare_runs);
    }
    let bad: Vec<String> = eps
        .iter()
        .flat_map(|e| e.runs.iter().map(move |w| (e, w)))
        .filter(|(_, w)| w.non_2xx + w.errors > 0)
        .map(|(e, w)| format!("{}: {} non-2xx, {} socket errors in one run", e.path, w.non_2xx, w.errors))
        .collect();
    for b in &bad {
        println!("  note: {b}");
    }

    println!("\nratios against the bare handler of the same body, same core, same run:");
    for e in eps.iter().filter(|e| e.bare.is_some()) {
        let target = e.bare.as_ref().unwrap().1;
        let ratio = mean(&e.runs) / mean(&e.bare_runs);
        let per_round: Vec<String> = e.runs.iter().zip(&e.bare_runs).map(|(a, b)| format!("{:.2}", a.rps / b.rps)).collect();
        println!("  {:<48} {ratio:>5.2}  (rounds {})  target >= {target:.1}  {}", e.path, per_round.join(", "), verdict(ratio >= target));
    }

    println!("\nopen-loop at half the maximum rate, {CONNS} connections from core 1, {secs}s, latency from the intended send time:");
    for e in eps.iter_mut().filter(|e| e.bare.is_some()) {
        let rate = mean(&e.runs) / 2.0;
        let p = paced(port, &e.path, e.plain(), rate, Duration::from_secs(secs));
        e.exact += p.sent;
        tokio::time::sleep(SETTLE).await;
        let p99 = quantile(&p.latency, 0.99);
        println!(
            "  {:<48} {:>7} req/s sent (asked {:>7})  p50 {:>6.2} ms  p99 {:>6.2} ms  max {:>7.2} ms  non-200 {}  generator lag p99 {:.2} ms  {}",
            e.path,
            thousands(p.sent as f64 / p.secs),
            thousands(rate),
            quantile(&p.latency, 0.5),
            p99,
            quantile(&p.latency, 1.0),
            p.non_200,
            quantile(&p.lag, 0.99),
            verdict(p99 <= 5.0),
        );
        if quantile(&p.lag, 0.99) > 1.0 {
            println!("    note: the generator itself sent late (core 1 busy with something else?); those latencies include its delay");
        }
    }

    // Stop gracefully (usage and audit are drained), then read what was recorded.
    let stopped = svc.terminate(Duration::from_secs(60));
    let db = rusqlite::Connection::open_with_flags(dir.path().join("hissaback.db"), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    println!("\nusage and audit per key, after SIGTERM (clean exit: {stopped}); sent = exact + wrk's completed, up to +64 per wrk run in flight:");
    println!("  {:<48} {:>9} {:>9} {:>10} {:>10} {:>6}", "endpoint (key)", "sent", "+ at most", "usage", "audit", "429s");
    let mut complete = true;
    for e in &eps {
        let Some(key) = &e.key else { continue };
        let (usage, limited, audited) = recorded(&db, key.id);
        let (sent, slack) = (e.exact + e.wrk_completed, CONNS as u64 * e.wrk_runs);
        let ok = |n: u64| n >= sent && n <= sent + slack;
        let line_ok = ok(usage) && ok(audited);
        complete &= line_ok;
        println!(
            "  {:<48} {sent:>9} {slack:>9} {usage:>10} {audited:>10} {limited:>6}  {}",
            e.path,
            if line_ok { "ok" } else if usage.min(audited) < sent { "MISSING" } else { "MORE THAN SENT" }
        );
        if limited > 0 {
            println!("    note: {limited} of these were refused by the limiter (429): the plan was meant to let every call through");
        }
    }
    complete
}
