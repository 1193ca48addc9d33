//! A crash in the middle of a postback burst (issue 11): the real binary takes 20,000
//! postbacks from 64 concurrent senders (duplicates, status changes, payout adjustments, a
//! payment in flight), is killed with SIGKILL part-way, and restarted on the same data (the
//! embedded backends, or the same keyspace and topics on Cassandra + Kafka). The senders then
//! finish. Every postback that was answered 200 has its effect, no conversion is counted
//! twice, every transaction ends in the status its last postback says, and
//! `hissaback ledger check` is clean.

use crate::binary::{free_port, serve_vars, start, wait_healthy, Proc, ADMIN};
use serde_json::{json, Value};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const POSTBACKS: usize = 20_000;
const SENDERS: usize = 64;
const USERS: usize = 50;

/// The environment of one service life: embedded on `data`, or the shared real servers with a
/// keyspace and topic prefix of this test's own.
fn vars(data: &Path, port: u16, space: &str) -> Vec<(&'static str, String)> {
    let mut vars = serve_vars(data, port);
    if crate::helpers::real_backends() {
        vars.extend([
            ("HISSABACK_STORE_BACKEND", "scylla".to_string()),
            ("HISSABACK_SCYLLA_NODES", crate::helpers::cql_nodes().join(",")),
            ("HISSABACK_SCYLLA_KEYSPACE", space.to_string()),
            ("HISSABACK_EVENTS_BACKEND", "kafka".to_string()),
            ("HISSABACK_KAFKA_BROKERS", crate::helpers::kafka_brokers()),
            ("HISSABACK_KAFKA_TOPIC_PREFIX", format!("{space}.")),
        ]);
    }
    vars
}

/// One network transaction's postbacks, sent in order: what kind it is decides its final
/// status and amounts.
#[derive(Clone, Copy, Debug)]
enum Kind {
    /// pending 10.00, approved 25.00, approved 25.00 again: queued (or paid) on 25.00.
    Adjusted,
    /// approved 8.00, reversed: reversed (a clawback when the payment came in between).
    Reversed,
    /// pending 5.00, rejected: rejected.
    Rejected,
}

impl Kind {
    fn of(txn: usize) -> Self {
        match txn % 5 {
            0..=2 => Kind::Adjusted,
            3 => Kind::Reversed,
            _ => Kind::Rejected,
        }
    }

    fn steps(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Kind::Adjusted => &[("10.00", "pending"), ("25.00", "approved"), ("25.00", "approved")],
            Kind::Reversed => &[("8.00", "approved"), ("8.00", "reversed")],
            Kind::Rejected => &[("5.00", "pending"), ("5.00", "rejected")],
        }
    }
}

#[actix_web::test]
async fn a_killed_service_loses_no_accepted_postback_and_counts_none_twice() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let space = format!("hbcrash_{}_{}", std::process::id(), std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis());
    if crate::helpers::real_backends() {
        let mut migrate = start(root.path(), "migrate", &vars(&data, free_port(), &space));
        let status = migrate.exit(Duration::from_secs(120)).await;
        assert!(status.success(), "migrate: {}", migrate.logs());
    }
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let port = free_port();
    let mut base = format!("http://127.0.0.1:{port}");
    let mut server: Proc = start(root.path(), "serve", &vars(&data, port, &space));
    wait_healthy(&mut server, &base).await;

    // The catalogue, a partner's campaign (40% share) and one click per end user.
    let crate::flow::Flow { token, key, clicks } = crate::flow::set_up(&base, ADMIN, USERS).await;

    // The transactions and their postbacks: about 20,000 requests in all.
    let mut txns = Vec::new();
    let mut total = 0;
    while total < POSTBACKS {
        let kind = Kind::of(txns.len());
        total += kind.steps().len();
        txns.push(kind);
    }
    // Per transaction: how many of its steps were answered 200 (steps are sent in order and a
    // step is retried until it is, so this is also "the last step accepted").
    let accepted: Arc<Vec<AtomicUsize>> = Arc::new((0..txns.len()).map(|_| AtomicUsize::new(0)).collect());
    let answered = Arc::new(AtomicUsize::new(0));
    let next = Arc::new(AtomicUsize::new(0));
    let base_now = Arc::new(Mutex::new(base.clone()));

    // Senders run until every transaction is done or the service stops answering.
    let send_all = || {
        let mut tasks = Vec::new();
        for _ in 0..SENDERS {
            let (client, token, clicks, accepted, answered, next, base_now, txns) =
                (client.clone(), token.clone(), clicks.clone(), accepted.clone(), answered.clone(), next.clone(), base_now.clone(), txns.clone());
            tasks.push(actix_web::rt::spawn(async move {
                loop {
                    let t = next.fetch_add(1, Ordering::Relaxed);
                    let Some(kind) = txns.get(t).copied() else { return };
                    for (i, (payout, status)) in kind.steps().iter().enumerate().skip(accepted[t].load(Ordering::Relaxed)) {
                        let base = base_now.lock().unwrap().clone();
                        let url = format!(
                            "{base}/v1/postbacks?token={token}&click_id={}&txn_id=T{t}&payout={payout}&currency=USD&status={status}",
                            clicks[t % USERS]
                        );
                        match client.get(url).send().await {
                            Ok(r) if r.status() == 200 => {
                                accepted[t].store(i + 1, Ordering::Relaxed);
                                answered.fetch_add(1, Ordering::Relaxed);
                            }
                            // Refused or cut off by the crash: the transaction is finished
                            // after the restart, from this step on.
                            _ => return,
                        }
                    }
                }
            }));
        }
        tasks
    };

    // First life: a payment runs while postbacks stream in; SIGKILL after 8,000 answers.
    let senders = send_all();
    let pay_client = client.clone();
    let pay_base = base.clone();
    let payment = actix_web::rt::spawn(async move {
        actix_web::rt::time::sleep(Duration::from_millis(300)).await;
        let _ = pay_client.post(format!("{pay_base}/admin/v1/rewards/pay")).bearer_auth(ADMIN).json(&json!({})).send().await;
    });
    let deadline = Instant::now() + Duration::from_secs(300);
    while answered.load(Ordering::Relaxed) < 8_000 {
        assert!(Instant::now() < deadline, "8,000 postbacks not answered: {}\n{}", answered.load(Ordering::Relaxed), server.logs());
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    for t in senders {
        t.await.unwrap();
    }
    let _ = payment.await;
    let before = answered.load(Ordering::Relaxed);

    // Second life on the same data: the senders finish every transaction.
    let port = free_port();
    base = format!("http://127.0.0.1:{port}");
    *base_now.lock().unwrap() = base.clone();
    let mut server = start(root.path(), "serve", &vars(&data, port, &space));
    wait_healthy(&mut server, &base).await;
    // Transactions cut off mid-way are taken up again from their first unanswered step.
    next.store(0, Ordering::Relaxed);
    for t in send_all() {
        t.await.unwrap();
    }
    let done: usize = accepted.iter().map(|a| a.load(Ordering::Relaxed)).sum();
    assert_eq!(done, total, "every postback answered 200 by the end ({before} before the crash)");

    // Every transaction ends as its last postback says: read each user's rewards until the
    // ledger has caught up.
    let wanted = |kind: Kind, status: &str, amount: f64, clawback: f64| match kind {
        Kind::Adjusted => matches!(status, "queued" | "paying" | "paid") && amount == 10.0,
        Kind::Reversed => status == "reversed" && amount == 3.2 && (clawback == 0.0 || clawback == 3.2),
        Kind::Rejected => status == "rejected" && amount == 2.0,
    };
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let mut rewards: Vec<Value> = Vec::new();
        for u in 0..USERS {
            let r: Value = client.get(format!("{base}/v1/rewards/user?user_id=u{u}&tenant_id=t")).bearer_auth(&key).send().await.unwrap().json().await.unwrap();
            rewards.extend(r["data"]["rewards"].as_array().cloned().unwrap_or_default());
        }
        let good = rewards.len() == txns.len()
            && rewards.iter().all(|r| {
                // Each kind has its own reward amount, so a reward names its kind.
                let (status, amount, clawback) = (r["status"].as_str().unwrap_or(""), r["amount"].as_f64().unwrap_or(-1.0), r["clawback"].as_f64().unwrap_or(0.0));
                [Kind::Adjusted, Kind::Reversed, Kind::Rejected].iter().any(|k| wanted(*k, status, amount, clawback))
            });
        let counts = |s: &str| rewards.iter().filter(|r| r["status"] == s).count();
        let adjusted = txns.iter().filter(|k| matches!(k, Kind::Adjusted)).count();
        let reversed = txns.iter().filter(|k| matches!(k, Kind::Reversed)).count();
        let rejected = txns.iter().filter(|k| matches!(k, Kind::Rejected)).count();
        if good && counts("reversed") == reversed && counts("rejected") == rejected && counts("queued") + counts("paying") + counts("paid") == adjusted && counts("paying") == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the ledger did not reach the final statuses: {} rewards for {} transactions; queued {} paying {} paid {} reversed {} rejected {} pending {}\n{}",
            rewards.len(),
            txns.len(),
            counts("queued"),
            counts("paying"),
            counts("paid"),
            counts("reversed"),
            counts("rejected"),
            counts("pending"),
            server.logs()
        );
        actix_web::rt::time::sleep(Duration::from_millis(500)).await;
    }

    // Pay everything queued, then the books must balance.
    // Thousands of rewards: the answer may take the whole wait (`payouts.wait_ms`) and more
    // on a busy machine, beyond the 30 s the other calls allow.
    let paid: Value = client.post(format!("{base}/admin/v1/rewards/pay")).timeout(Duration::from_secs(180)).bearer_auth(ADMIN).json(&json!({})).send().await.unwrap().json().await.unwrap();
    assert!(paid["data"]["paid"].as_u64().is_some(), "{paid}");
    let (status, _) = server.terminate().await;
    assert!(status.success(), "{}", server.logs());
    let mut check = std::process::Command::new(env!("CARGO_BIN_EXE_hissaback"));
    check.args(["ledger", "check"]).current_dir(root.path());
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("HISSABACK_") {
            check.env_remove(k);
        }
    }
    for (k, v) in vars(&data, free_port(), &space) {
        check.env(k, v);
    }
    let out = check.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && stdout.contains("every invariant holds"), "ledger check:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
}
