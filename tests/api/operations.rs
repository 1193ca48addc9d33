//! Operator surfaces (DESIGN "Operator surfaces"): `/healthz`, `/readyz`, the Prometheus
//! `/metrics` (request counts by route pattern, latency histogram, auth failures) and the
//! generated `/openapi.json`.

use crate::helpers::spawn_app;
use serde_json::Value;

/// The sum of every sample of `metric` (any labels) in a Prometheus text exposition.
fn sample_sum(text: &str, metric: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.strip_prefix(metric).is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' ')))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The samples of `metric` whose label set contains every one of `labels` (`name="value"`).
fn samples<'a>(text: &'a str, metric: &str, labels: &[&str]) -> Vec<&'a str> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{metric}{{")))
        .filter(|l| labels.iter().all(|lab| l.contains(lab)))
        .collect()
}

#[actix_web::test]
async fn healthz_is_200_json_success() {
    let app = spawn_app().await;
    let r = app.get("/healthz").await;
    assert_eq!(r.status, 200, "{}", r.text);
    let ct = r.headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
    assert!(ct.starts_with("application/json"), "{ct}");
    assert_eq!(r.body["success"], true, "{}", r.text);
}

#[actix_web::test]
async fn readyz_reports_the_backends_in_use() {
    let app = spawn_app().await;
    let r = app.get("/readyz").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["success"], true, "{}", r.text);
    let (store, events) = if crate::helpers::real_backends() { ("scylla", "kafka") } else { ("embedded", "embedded") };
    assert_eq!(r.body["data"]["store"], store, "{}", r.text);
    assert_eq!(r.body["data"]["events"], events, "{}", r.text);
}

#[actix_web::test]
async fn metrics_count_requests_by_route_and_time_them() {
    let app = spawn_app().await;
    let p = app.partner(None).await;
    for _ in 0..3 {
        assert_eq!(app.ping(&p.key).await.status, 200);
    }
    app.get("/api/v1/test").await; // one 401 on the same route

    let r = app.get("/metrics").await;
    assert_eq!(r.status, 200, "{}", r.text);
    let ct = r.headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
    assert!(ct.starts_with("text/plain"), "{ct}");
    let text = &r.text;
    assert!(text.contains("# TYPE hissaback_http_requests_total counter"), "{text}");
    let ok = samples(text, "hissaback_http_requests_total", &[r#"route="/api/v1/test""#, r#"status="200""#, r#"method="GET""#]);
    assert_eq!(ok.len(), 1, "{text}");
    assert!(ok[0].ends_with(" 3"), "{}", ok[0]);
    let unauthorized = samples(text, "hissaback_http_requests_total", &[r#"route="/api/v1/test""#, r#"status="401""#]);
    assert_eq!(unauthorized.len(), 1, "{text}");
    assert!(unauthorized[0].ends_with(" 1"), "{}", unauthorized[0]);
    // Admin routes are labelled by pattern, not by the concrete id.
    assert!(!text.contains(&format!("/affiliates/{}", p.affiliate_id)), "{text}");

    assert!(text.contains("# TYPE hissaback_http_request_duration_seconds histogram"), "{text}");
    let buckets = samples(text, "hissaback_http_request_duration_seconds_bucket", &[r#"route="/api/v1/test""#]);
    assert!(!buckets.is_empty(), "{text}");
    // Timed per status too: three answered 200, one 401.
    let inf = samples(text, "hissaback_http_request_duration_seconds_bucket", &[r#"route="/api/v1/test""#, r#"status="200""#, r#"le="+Inf""#]);
    assert_eq!(inf.len(), 1, "{text}");
    assert!(inf[0].ends_with(" 3"), "{}", inf[0]);
    let inf = samples(text, "hissaback_http_request_duration_seconds_bucket", &[r#"route="/api/v1/test""#, r#"status="401""#, r#"le="+Inf""#]);
    assert_eq!(inf.len(), 1, "{text}");
    assert!(inf[0].ends_with(" 1"), "{}", inf[0]);

    // Unknown paths do not each get their own series.
    app.get("/scanner/probe-1").await;
    app.get("/scanner/probe-2").await;
    let after = app.get("/metrics").await.text;
    assert!(!after.contains("probe-1") && !after.contains("probe-2"), "{after}");
}

/// Made-up methods share one `OTHER` label: 100 requests with random methods add at most
/// one series per route and status, not one per method.
#[actix_web::test]
async fn metrics_label_unknown_methods_as_other() {
    let app = spawn_app().await;
    let series = |text: &str| text.lines().filter(|l| l.starts_with("hissaback_http_requests_total{")).count();
    let before = series(&app.get("/metrics").await.text);
    for i in 0..100 {
        let method = reqwest::Method::from_bytes(format!("X{i}RANDOM").as_bytes()).unwrap();
        let r = app.send(app.client.request(method, app.url("/api/v1/test"))).await;
        assert!(r.status == 405 || r.status == 401 || r.status == 404, "{}: {}", r.status, r.text);
        assert_eq!(r.body["success"], false, "{}", r.text);
    }
    let text = app.get("/metrics").await.text;
    assert!(series(&text) <= before + 3, "{} series after 100 random methods (was {before})", series(&text));
    assert!(!text.contains("X1RANDOM"), "a made-up method became a label");
    let other = samples(&text, "hissaback_http_requests_total", &[r#"method="OTHER""#]);
    let counted: u64 = other.iter().map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap()).sum();
    assert_eq!(counted, 100, "{other:?}");
}

#[actix_web::test]
async fn metrics_count_failed_authentications() {
    let app = spawn_app().await;
    let p = app.partner(None).await;
    let before = sample_sum(&app.get("/metrics").await.text, "hissaback_auth_failures_total");

    app.ping("garbage").await.assert_error(401, "API key is invalid.", "unauthenticated");
    let once = app.get("/metrics").await.text;
    assert_eq!(sample_sum(&once, "hissaback_auth_failures_total"), before + 1.0, "{once}");

    app.get("/api/v1/test").await; // missing key
    let twice = app.get("/metrics").await.text;
    assert_eq!(sample_sum(&twice, "hissaback_auth_failures_total"), before + 2.0, "{twice}");

    // Successful authentications do not count as failures.
    assert_eq!(app.ping(&p.key).await.status, 200);
    let still = app.get("/metrics").await.text;
    assert_eq!(sample_sum(&still, "hissaback_auth_failures_total"), before + 2.0, "{still}");
}

#[actix_web::test]
async fn openapi_document_describes_the_api() {
    let app = spawn_app().await;
    let r = app.get("/openapi.json").await;
    assert_eq!(r.status, 200, "{}", r.text);
    let ct = r.headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
    assert!(ct.starts_with("application/json"), "{ct}");
    let version = r.body["openapi"].as_str().unwrap_or("");
    assert!(version.starts_with("3."), "openapi version {version:?}");
    let paths = r.body["paths"].as_object().expect("paths object");
    for path in ["/api/v1/test", "/admin/v1/affiliates", "/admin/v1/affiliates/{id}", "/admin/v1/affiliates/{id}/keys", "/admin/v1/keys/{id}/rotate", "/healthz"] {
        assert!(paths.contains_key(path), "{path} missing from {:?}", paths.keys().collect::<Vec<_>>());
    }
    assert!(r.body["paths"]["/api/v1/test"]["get"].is_object());
    assert!(r.body["paths"]["/admin/v1/affiliates"]["post"].is_object());
    assert!(matches!(r.body["info"]["title"], Value::String(_)));
    // Every call with a credential documents its 429; the open ones do not.
    for (path, method) in [("/api/v1/test", "get"), ("/v1/stats/usage", "get"), ("/admin/v1/affiliates", "post"), ("/v1/offers", "get")] {
        assert!(r.body["paths"][path][method]["responses"]["429"].is_object(), "{method} {path}");
    }
    assert!(r.body["paths"]["/healthz"]["get"]["responses"]["429"].is_null());
    for path in ["/v1/stats/usage", "/v1/stats/campaigns", "/v1/stats/payouts", "/v1/audit", "/admin/v1/audit", "/openapi.json"] {
        assert!(paths.contains_key(path), "{path}");
    }
}

/// A stream consumer on one batch for longer than `events.stuck_after_seconds` makes the
/// instance unready: 503 in the seeds' envelope, naming the consumer (not its error, which
/// may name internals); ready again once the batch is done. The probe is the one every
/// consumer of the app reports through (a real stuck consumer is not provoked black-box).
#[actix_web::test]
async fn readyz_is_503_while_a_consumer_is_stuck_and_names_it() {
    let app = crate::helpers::spawn_app_with(|s| s.events.stuck_after_seconds = 1).await;
    assert_eq!(app.get("/readyz").await.status, 200);
    let health = &app.state.consumer_health;
    assert!(health.statuses().iter().any(|s| s.name == "ledger"), "the app's consumers report to the registry");
    let probe = health.register("test-consumer", "conversions", "test-group");
    probe.batch_started();
    probe.failed(&anyhow::anyhow!("secret internal detail"));
    assert_eq!(app.get("/readyz").await.status, 200, "not stuck before the threshold");
    actix_web::rt::time::sleep(std::time::Duration::from_millis(1200)).await;
    let r = app.get("/readyz").await;
    assert_eq!(r.status, 503, "{}", r.text);
    assert_eq!(r.body["success"], false, "{}", r.text);
    assert_eq!(r.body["code"], "unavailable", "{}", r.text);
    let message = r.body["message"].as_str().unwrap_or_default();
    assert!(message.contains("test-consumer (topic conversions, group test-group)"), "{message}");
    assert!(!r.text.contains("secret"), "{}", r.text);
    probe.idle();
    assert_eq!(app.get("/readyz").await.status, 200);
}
