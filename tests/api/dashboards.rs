//! The SRE surfaces agree with the service: every metric the Grafana dashboard and the
//! Prometheus alert rules in `docker/` reference is exported by a running service; the
//! dashboard is valid JSON, every panel has a unit and every target a legend and the
//! `$instance` filter; every alert has its runbook; and `scripts/dashboard-check.sh` (promtool:
//! the rules check, the alerts' unit tests, every dashboard query evaluated against synthetic
//! series and required to return data) passes.

use crate::helpers::spawn_app;
use std::collections::BTreeSet;
use std::path::PathBuf;

fn read(rel: &str) -> String {
    std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Every `hissaback_…` and `process_…` metric name in a text.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    for prefix in ["hissaback_", "process_"] {
        let mut i = 0;
        while let Some(at) = text[i..].find(prefix) {
            let start = i + at;
            let end = start + bytes[start..].iter().take_while(|b| b.is_ascii_alphanumeric() || **b == b'_').count();
            // A whole name, not the tail of another one.
            if start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_') {
                names.insert(text[start..end].to_string());
            }
            i = end;
        }
    }
    names
}

#[actix_web::test]
async fn every_metric_of_the_dashboard_and_the_alerts_is_exported() {
    let dashboard: serde_json::Value = serde_json::from_str(&read("docker/grafana/dashboards/hissaback.json")).expect("dashboard JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 10);
    assert_eq!(dashboard["templating"]["list"][0]["name"], "instance");
    for p in panels {
        let title = p["title"].as_str().unwrap_or_default();
        assert!(p["fieldConfig"]["defaults"]["unit"].as_str().is_some_and(|u| !u.is_empty()), "panel {title}: no unit");
        let targets = p["targets"].as_array().unwrap_or_else(|| panic!("panel {title}: no targets"));
        assert!(!targets.is_empty(), "panel {title}: no targets");
        for t in targets {
            let expr = t["expr"].as_str().unwrap_or_else(|| panic!("panel {title}: a target without expr"));
            assert!(expr.contains("hissaback"), "panel {title}: {expr}");
            assert!(expr.contains(r#"instance=~"$instance""#), "panel {title}: not filtered by $instance: {expr}");
            assert!(!expr.contains(" or "), "panel {title}: `or` hides series, use one target per series: {expr}");
            assert!(t["legendFormat"].as_str().is_some_and(|l| !l.is_empty()), "panel {title}: a target without legend");
        }
    }
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

/// Every alert names its runbook, and the runbook exists and is about that alert.
#[test]
fn every_alert_has_a_runbook() {
    let alerts = read("docker/prometheus/alerts.yml");
    let names: Vec<&str> = alerts.lines().filter_map(|l| l.trim().strip_prefix("- alert: ")).map(str::trim).collect();
    let runbooks: Vec<&str> = alerts.lines().filter_map(|l| l.trim().strip_prefix("runbook_url: ")).map(str::trim).collect();
    assert!(names.len() >= 12, "{names:?}");
    assert_eq!(names.len(), runbooks.len(), "one runbook_url per alert: {names:?} {runbooks:?}");
    for (name, url) in names.iter().zip(&runbooks) {
        assert_eq!(*url, format!("docker/runbooks/{name}.md"), "{name}");
        let page = read(url);
        assert!(page.starts_with(&format!("# {name}\n")), "{url} must start with `# {name}`");
        assert!(page.contains("**Means:**") && page.contains("**Check:**") && page.contains("**Do:**"), "{url}: means, check, do");
    }
    for alert in ["HissabackDown", "HissabackTargetMissing"] {
        assert!(names.contains(&alert), "{alert}");
    }
}

/// `scripts/dashboard-check.sh`: promtool checks the rules, runs the alerts' unit tests and
/// evaluates every dashboard query against synthetic series, each of which must return data.
/// It installs promtool when missing (as root with apt-get) and fails when it cannot: nothing
/// is skipped.
#[test]
fn dashboard_check_script_passes() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new("bash")
        .arg(root.join("scripts/dashboard-check.sh"))
        .current_dir(&root)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run bash scripts/dashboard-check.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "scripts/dashboard-check.sh failed ({:?})\nstdout:\n{stdout}\nstderr:\n{stderr}", out.status.code());
    assert!(stdout.contains("every dashboard target returns data"), "{stdout}");
}
