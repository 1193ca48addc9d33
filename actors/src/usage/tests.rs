use super::*;
use crate::ports::AuditActor;
use async_trait::async_trait;
use std::sync::Mutex;

#[derive(Default)]
struct MemorySink {
    usage: Mutex<Vec<(UsageCell, UsageCounts)>>,
    clicks: Mutex<Vec<(ClickCell, u64)>>,
    audit: Mutex<Vec<AuditEntry>>,
    fail: Mutex<bool>,
}

impl MemorySink {
    fn check(&self) -> anyhow::Result<()> {
        if *self.fail.lock().unwrap() {
            anyhow::bail!("store down");
        }
        Ok(())
    }
}

#[async_trait]
impl UsageSink for MemorySink {
    async fn add_usage(&self, batch: &[(UsageCell, UsageCounts)]) -> anyhow::Result<()> {
        self.check()?;
        self.usage.lock().unwrap().extend_from_slice(batch);
        Ok(())
    }
    async fn add_clicks(&self, batch: &[(ClickCell, u64)]) -> anyhow::Result<()> {
        self.check()?;
        self.clicks.lock().unwrap().extend_from_slice(batch);
        Ok(())
    }
    async fn append_audit(&self, batch: &[AuditEntry]) -> anyhow::Result<()> {
        self.check()?;
        self.audit.lock().unwrap().extend_from_slice(batch);
        Ok(())
    }
}

fn t(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap()
}

fn cell(key_id: u64, at: DateTime<Utc>, status: u16) -> UsageCell {
    UsageCell { affiliate_id: 1, period: minute_of(at), key_id, route: "/api/v1/test".into(), status_class: status_class(status) }
}

fn entry(n: u64) -> AuditEntry {
    AuditEntry {
        at: t(n as i64),
        affiliate_id: 1,
        key_id: Some(n),
        network_id: None,
        actor: AuditActor::Key,
        method: "GET".into(),
        route: "/api/v1/test".into(),
        path: "/api/v1/test".into(),
        status: 200,
        latency_us: 10,
        client_ip: None,
        request_id: format!("r{n}"),
    }
}

#[test]
fn minutes_and_status_classes() {
    assert_eq!(minute_of(t(39)), t(-20));
    assert_eq!(minute_of(t(40)), t(40));
    assert_eq!(status_class(200), "2xx");
    assert_eq!(status_class(429), "4xx");
    assert_eq!(status_class(503), "5xx");
    assert_eq!(status_class(0), "1xx");
    assert_eq!(status_class(999), "5xx");
}

#[test]
fn requests_in_one_cell_are_summed() {
    let metrics = UsageMetrics::new();
    let mut r = UsageRecorder::new(Arc::new(MemorySink::default()), Duration::from_secs(1), 10, metrics);
    r.count(cell(1, t(0), 200), UsageCounts { requests: 1, rate_limited: 0 });
    r.count(cell(1, t(1), 204), UsageCounts { requests: 1, rate_limited: 0 });
    r.count(cell(1, t(2), 429), UsageCounts { requests: 1, rate_limited: 1 });
    assert_eq!(r.usage.len(), 2);
    assert_eq!(r.usage[&cell(1, t(0), 200)], UsageCounts { requests: 2, rate_limited: 0 });
}

#[test]
fn the_audit_queue_is_bounded_and_drops_the_oldest() {
    let metrics = UsageMetrics::new();
    let mut r = UsageRecorder::new(Arc::new(MemorySink::default()), Duration::from_secs(1), 3, metrics.clone());
    for n in 0..5 {
        r.audit(entry(n));
    }
    let ids: Vec<_> = r.audit.iter().map(|e| e.key_id.unwrap()).collect();
    assert_eq!(ids, vec![2, 3, 4]);
    assert_eq!(metrics.audit_dropped.get(), 2);
    assert_eq!(metrics.audit_pending.get(), 3);
}

#[actix_rt::test]
async fn a_failed_flush_keeps_everything_for_the_next_one() {
    let sink = Arc::new(MemorySink::default());
    let usage = UsageRecorder::start(sink.clone(), Duration::from_secs(3600), 100, UsageMetrics::new());
    *sink.fail.lock().unwrap() = true;
    usage.requested(cell(1, t(0), 200), false);
    usage.requested(cell(1, t(0), 200), false);
    usage.clicked(1, 7, t(0));
    usage.audited(entry(1));
    assert!(usage.flush().await.is_err());
    // Counted while the store was down, merged with what the failed batch held.
    usage.requested(cell(1, t(0), 200), false);
    usage.audited(entry(2));
    *sink.fail.lock().unwrap() = false;
    let flushed = usage.flush().await.unwrap();
    assert_eq!(flushed, Flushed { usage_cells: 1, click_cells: 1, audit_rows: 2 });
    assert_eq!(sink.usage.lock().unwrap()[0].1, UsageCounts { requests: 3, rate_limited: 0 });
    assert_eq!(sink.clicks.lock().unwrap()[0].1, 1);
    let order: Vec<_> = sink.audit.lock().unwrap().iter().map(|e| e.request_id.clone()).collect();
    assert_eq!(order, vec!["r1", "r2"]);
    assert_eq!(usage.flush().await.unwrap(), Flushed::default());
}

#[actix_rt::test]
async fn the_interval_flushes_without_being_asked() {
    let sink = Arc::new(MemorySink::default());
    let usage = UsageRecorder::start(sink.clone(), Duration::from_millis(20), 100, UsageMetrics::new());
    usage.audited(entry(9));
    for _ in 0..100 {
        if !sink.audit.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(sink.audit.lock().unwrap().len(), 1);
}

#[test]
fn resolutions_floor_and_bucket_periods() {
    use crate::ports::UsageResolution::{Day, Hour, Minute};
    let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().to_utc();
    assert_eq!(Hour.floor(t("2026-11-23T14:37:12Z")), t("2026-11-23T14:00:00Z"));
    assert_eq!(Day.floor(t("2026-11-23T14:37:12Z")), t("2026-11-23T00:00:00Z"));
    assert_eq!(Minute.bucket(t("2026-11-23T14:37:12Z")), "2026-11-23");
    assert_eq!(Hour.bucket(t("2026-11-23T14:37:12Z")), "2026-11");
    assert_eq!(Day.bucket(t("2026-11-23T14:37:12Z")), "2026");
    assert_eq!(Minute.buckets(t("2026-11-23T23:00:00Z"), t("2026-11-24T00:00:00Z")), vec!["2026-11-23"]);
    assert_eq!(Minute.buckets(t("2026-11-23T23:59:00Z"), t("2026-11-24T00:01:00Z")), vec!["2026-11-23", "2026-11-24"]);
    assert_eq!(Hour.buckets(t("2026-11-28T00:00:00Z"), t("2026-12-02T00:00:00Z")), vec!["2026-11", "2026-12"]);
    assert_eq!(Day.buckets(t("2026-11-01T00:00:00Z"), t("2027-02-01T00:00:00Z")), vec!["2026", "2027"]);
    assert_eq!(Day.buckets(t("2026-11-01T00:00:00Z"), t("2026-11-01T00:00:00Z")), Vec::<String>::new());
    assert_eq!(Hour.floor(t("2263-04-11T10:30:00Z")), t("2263-04-11T10:00:00Z"), "past the nanosecond range too");
    assert_eq!(Minute.floor(t("9999-12-31T23:59:59Z")), t("9999-12-31T23:59:00Z"));
    assert_eq!(Hour.floor(t("1970-01-01T00:30:00Z")), t("1970-01-01T00:00:00Z"));
    assert_eq!(Hour.ceil(t("2026-11-23T14:00:00Z")), t("2026-11-23T14:00:00Z"));
    assert_eq!(Hour.ceil(t("2026-11-23T14:00:01Z")), t("2026-11-23T15:00:00Z"));
    assert_eq!(crate::ports::UsageResolution::parse("hour"), Some(Hour));
    assert_eq!(crate::ports::UsageResolution::parse("week"), None);
}
