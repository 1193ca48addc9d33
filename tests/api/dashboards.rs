//! The SRE surfaces agree with the service: every metric the Grafana dashboard and the
//! Prometheus alert rules in `docker/` reference is exported by a running service, and the
//! dashboard is valid JSON with a query per panel.

use crate::helpers::spawn_app;
use std::collections::BTreeSet;
use std::path::PathBuf;

fn read(rel: &str) -> String {
    std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Every `hissaback_…` metric name in a text.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("hissaback_") {
        let start = i + at;
        let end = start + bytes[start..].iter().take_while(|b| b.is_ascii_alphanumeric() || **b == b'_').count();
        names.insert(text[start..end].to_string());
        i = end;
    }
    names
}

#[actix_web::test]
async fn every_metric_of_the_dashboard_and_the_alerts_is_exported() {
    let dashboard: serde_json::Value = serde_json::from_str(&read("docker/grafana/dashboards/hissaback.json")).expect("dashboard JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 10);
    assert!(panels.iter().all(|p| p["targets"][0]["expr"].as_str().is_some_and(|e| e.contains("hissaback_"))));
    let alerts = read("docker/prometheus/alerts.yml");
    let referenced: BTreeSet<String> = metric_names(&dashboard.to_string()).union(&metric_names(&alerts)).cloned().collect();
    assert!(referenced.len() >= 12, "{referenced:?}");
    for alert in ["HissabackHighErrorRate", "HissabackLatencyP99High", "HissabackWebhookFailures", "HissabackOfferSyncStale", "HissabackConsumerStalled", "HissabackConsumerLag", "HissabackStoreSlow"] {
        assert!(alerts.contains(alert), "{alert}");
    }

    let app = spawn_app().await;
    assert_eq!(app.get("/healthz").await.status, 200);
    let exported = app.get("/metrics").await.text;
    let missing: Vec<&String> = referenced.iter().filter(|m| !exported.contains(m.as_str())).collect();
    assert!(missing.is_empty(), "referenced but not exported: {missing:?}");
}

/// A sample's value in the exposition: the first line starting with `series`.
fn sample(exposition: &str, series: &str) -> Option<f64> {
    exposition.lines().find(|l| l.starts_with(series)).and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse().ok())
}

#[actix_web::test]
async fn stream_store_and_usage_metrics_move_with_the_work() {
    let app = crate::helpers::spawn_app_with(|s| s.usage.flush_ms = 50).await;
    let created = app.admin(reqwest::Method::POST, "/categories", Some(serde_json::json!({"name": "Metered", "slug": format!("metered-{}", crate::partner::tag())}))).await;
    assert_eq!(created.status, 201, "{}", created.text);
    let backend = app.state.store.backend();
    let m = crate::helpers::eventually(std::time::Duration::from_secs(10), "usage flushes", || async {
        let m = app.get("/metrics").await.text;
        (sample(&m, "hissaback_usage_flushes_total{kind=\"audit\",outcome=\"ok\"}").unwrap_or(0.0) >= 1.0).then_some(m)
    })
    .await;
    assert!(sample(&m, "hissaback_events_produced_total{outcome=\"ok\",topic=\"product-changes\"}").unwrap() >= 1.0, "{m}");
    assert!(sample(&m, "hissaback_event_publish_duration_seconds_count{topic=\"product-changes\"}").unwrap() >= 1.0);
    assert!(sample(&m, &format!("hissaback_store_operation_duration_seconds_count{{backend=\"{backend}\"}}")).unwrap() >= 1.0);
    for (topic, group) in [("postbacks", "postback-processor"), ("conversions", "ledger"), ("webhook-jobs", "webhook-dispatch")] {
        let lag = sample(&m, &format!("hissaback_consumer_lag{{group=\"{group}\",topic=\"{topic}\"}}"));
        assert!(lag.is_some(), "lag of {group} on {topic} in {m}");
    }
    assert!(m.contains("hissaback_ledger_postings_total{account=\"network_receivable\"}"));
}
