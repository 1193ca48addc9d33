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
    for alert in ["HissabackHighErrorRate", "HissabackLatencyP99High", "HissabackWebhookFailures", "HissabackOfferSyncStale", "HissabackConsumerStalled"] {
        assert!(alerts.contains(alert), "{alert}");
    }

    let app = spawn_app().await;
    assert_eq!(app.get("/healthz").await.status, 200);
    let exported = app.get("/metrics").await.text;
    let missing: Vec<&String> = referenced.iter().filter(|m| !exported.contains(m.as_str())).collect();
    assert!(missing.is_empty(), "referenced but not exported: {missing:?}");
}
