//! Production logs and metrics (issue 14, "Logs" and "Metrics"): build and process metrics,
//! the request duration histogram by status, `/metrics` on a listener of its own, JSON logs
//! with one access line per request (request id, route, status and key id, never the key),
//! no colour codes when stderr is not a terminal, and `/readyz` 503 during the drain delay
//! after SIGTERM while requests are still served.

use crate::binary::{free_port, serve_vars, start, wait_healthy, Proc, ADMIN};
use crate::helpers::spawn_app;
use serde_json::{json, Value};
use std::process::Command;
use std::time::{Duration, Instant};

/// The lines of a Prometheus exposition for `metric` whose labels include every one of `labels`.
fn samples<'a>(text: &'a str, metric: &str, labels: &[&str]) -> Vec<&'a str> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{metric}{{")) || l.starts_with(&format!("{metric} ")))
        .filter(|l| labels.iter().all(|lab| l.contains(lab)))
        .collect()
}

/// What the child wrote on stderr so far.
fn stderr_of(proc: &Proc) -> String {
    proc.logs().split_once("\nstderr:\n").map(|(_, e)| e.to_string()).unwrap_or_default()
}

fn sigterm(proc: &Proc) {
    let sent = Command::new("kill").arg("-TERM").arg(proc.child.id().to_string()).status().expect("run kill");
    assert!(sent.success(), "kill -TERM failed");
}

async fn get(client: &reqwest::Client, url: &str) -> (u16, String) {
    match client.get(url).send().await {
        Ok(r) => {
            let s = r.status().as_u16();
            (s, r.text().await.unwrap_or_default())
        }
        Err(e) => (0, e.to_string()),
    }
}

#[actix_web::test]
async fn metrics_expose_the_build_the_process_and_durations_by_status() {
    let app = spawn_app().await;
    assert_eq!(app.get("/healthz").await.status, 200);
    assert_eq!(app.get("/api/v1/test").await.status, 401);
    let r = app.get("/metrics").await;
    assert_eq!(r.status, 200, "{}", r.text);
    let text = &r.text;
    let build = samples(text, "hissaback_build_info", &[&format!("version=\"{}\"", env!("CARGO_PKG_VERSION")), "commit=\""]);
    assert_eq!(build.len(), 1, "{text}");
    assert!(build[0].ends_with(" 1"), "{}", build[0]);
    #[cfg(target_os = "linux")]
    {
        assert_eq!(samples(text, "process_cpu_seconds_total", &[]).len(), 1, "{text}");
        assert_eq!(samples(text, "process_resident_memory_bytes", &[]).len(), 1, "{text}");
    }
    let ok = samples(text, "hissaback_http_request_duration_seconds_count", &["route=\"/healthz\"", "method=\"GET\"", "status=\"200\""]);
    assert_eq!(ok.len(), 1, "{text}");
    assert!(ok[0].ends_with(" 1"), "{}", ok[0]);
    let refused = samples(text, "hissaback_http_request_duration_seconds_bucket", &["route=\"/api/v1/test\"", "status=\"401\"", "le=\"+Inf\""]);
    assert_eq!(refused.len(), 1, "{text}");
}

/// `HISSABACK_LOG_FORMAT=json` and `HISSABACK_METRICS_LISTEN` on the real binary.
#[actix_web::test]
async fn json_logs_carry_an_access_line_per_request_and_metrics_have_a_listener_of_their_own() {
    let root = tempfile::tempdir().unwrap();
    let (port, metrics_port) = (free_port(), free_port());
    let base = format!("http://127.0.0.1:{port}");
    let metrics_base = format!("http://127.0.0.1:{metrics_port}");
    let mut vars = serve_vars(&root.path().join("data"), port);
    vars.push(("HISSABACK_LOG_FORMAT", "json".into()));
    vars.push(("HISSABACK_METRICS_LISTEN", format!("127.0.0.1:{metrics_port}")));
    let mut proc = start(root.path(), "serve", &vars);
    wait_healthy(&mut proc, &base).await;
    let client = reqwest::Client::new();

    // The second listener: metrics and liveness, nothing else.
    let (s, text) = get(&client, &format!("{metrics_base}/metrics")).await;
    assert_eq!(s, 200, "{text}");
    assert!(text.contains("hissaback_build_info{"), "{text}");
    assert_eq!(get(&client, &format!("{metrics_base}/healthz")).await.0, 200);
    assert_eq!(get(&client, &format!("{metrics_base}/api/v1/test")).await.0, 404);
    // The main listener still serves /metrics.
    assert_eq!(get(&client, &format!("{base}/metrics")).await.0, 200);

    // An affiliate and a key, then a call with a request id of ours.
    let a: Value = client
        .post(format!("{base}/admin/v1/affiliates"))
        .bearer_auth(ADMIN)
        .json(&json!({"name": "Observed", "email": "o@example.test"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let affiliate_id = a["data"]["affiliate"]["id"].as_u64().unwrap_or_else(|| panic!("{a}"));
    let k: Value = client
        .post(format!("{base}/admin/v1/affiliates/{affiliate_id}/keys"))
        .bearer_auth(ADMIN)
        .json(&json!({"scopes": ["products.list"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = k["data"]["key"]["key"].as_str().unwrap_or_else(|| panic!("{k}")).to_string();
    let key_id = k["data"]["key"]["id"].as_u64().unwrap();
    let r = client.get(format!("{base}/api/v1/test")).bearer_auth(&key).header("X-Request-Id", "obs-req-42").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers().get("x-request-id").and_then(|v| v.to_str().ok()), Some("obs-req-42"));
    // The key in the query string too (an accepted transport): still never logged.
    let r = client.get(format!("{base}/api/v1/test?api_key={key}")).header("X-Request-Id", "obs-req-43").send().await.unwrap();
    let second_status = r.status().as_u16();

    let (status, _) = proc.terminate().await;
    assert!(status.success(), "exit status {status}\n{}", proc.logs());
    let stderr = stderr_of(&proc);
    assert!(!stderr.contains('\u{1b}'), "colour codes in piped stderr:\n{stderr}");
    assert!(!stderr.contains(&key), "the API key was logged:\n{stderr}");
    let lines: Vec<Value> = stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}\n{stderr}")))
        .collect();
    assert!(lines.iter().all(|l| l["timestamp"].is_string() && l["level"].is_string() && l["target"].is_string()), "{stderr}");
    let access = |id: &str| {
        lines
            .iter()
            .find(|l| l["target"] == "hissaback::access" && l["request_id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("no access line for {id}:\n{stderr}"))
    };
    let line = access("obs-req-42");
    assert_eq!(line["level"], "INFO", "{line}");
    assert_eq!(line["method"], "GET", "{line}");
    assert_eq!(line["route"], "/api/v1/test", "{line}");
    assert_eq!(line["status"], 200, "{line}");
    assert_eq!(line["key_id"], key_id, "{line}");
    assert_eq!(line["affiliate_id"], affiliate_id, "{line}");
    assert!(line["latency_ms"].as_f64().is_some_and(|ms| ms >= 0.0), "{line}");
    assert_eq!(access("obs-req-43")["status"], second_status);
    // Every request has its line, requests of the metrics listener aside; the admin calls
    // name no key.
    let admin_lines: Vec<&Value> = lines.iter().filter(|l| l["target"] == "hissaback::access" && l["admin"] == true).collect();
    assert_eq!(admin_lines.len(), 2, "{stderr}");
    assert!(admin_lines.iter().all(|l| l.get("key_id").is_none()), "{stderr}");
}

/// After SIGTERM, `/readyz` answers 503 for the drain delay while every other request is
/// still served; then the process stops gracefully. Text logs to a pipe have no colour codes.
#[actix_web::test]
async fn readyz_is_503_during_the_drain_delay_after_sigterm() {
    let root = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut vars = serve_vars(&root.path().join("data"), port);
    vars.push(("HISSABACK_SHUTDOWN_DRAIN_MS", "3000".into()));
    let mut proc = start(root.path(), "serve", &vars);
    wait_healthy(&mut proc, &base).await;
    let client = reqwest::Client::new();
    assert_eq!(get(&client, &format!("{base}/readyz")).await.0, 200);

    let signalled = Instant::now();
    sigterm(&proc);
    // Not ready as soon as the signal is handled...
    let mut unready = None;
    while signalled.elapsed() < Duration::from_secs(2) {
        let (s, body) = get(&client, &format!("{base}/readyz")).await;
        if s == 503 {
            unready = Some(body);
            break;
        }
        assert_eq!(s, 200, "{body}");
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
    let body = unready.unwrap_or_else(|| panic!("/readyz still not 503 2s after SIGTERM\n{}", proc.logs()));
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["code"], "unavailable", "{body}");
    // ...while the listener still serves everything else, and still says not ready.
    assert!(signalled.elapsed() < Duration::from_millis(2500), "too slow to check within the drain delay");
    assert_eq!(get(&client, &format!("{base}/healthz")).await.0, 200);
    assert_eq!(get(&client, &format!("{base}/readyz")).await.0, 503);
    assert_eq!(proc.child.try_wait().unwrap(), None, "exited before the drain delay ended");

    let status = proc.exit(Duration::from_secs(10)).await;
    assert!(status.success(), "exit status {status}\n{}", proc.logs());
    let took = signalled.elapsed();
    assert!(took >= Duration::from_millis(3000), "stopped after {took:?}, before the drain delay ended");
    assert!(took < Duration::from_secs(8), "stopping took {took:?}");
    let stderr = stderr_of(&proc);
    assert!(!stderr.contains('\u{1b}'), "colour codes in piped stderr:\n{stderr}");
    assert!(stderr.contains("shutting down"), "{stderr}");
}
