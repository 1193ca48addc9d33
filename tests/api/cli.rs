//! The `hissaback` binary's exit codes (DESIGN "Operator surfaces"): `ledger check` exits 0 on
//! an exact ledger, 1 when an invariant is broken and 2 when it could not check (the store
//! cannot be opened or read, or the configuration is wrong), so a scheduler can tell a wrong
//! ledger from an outage; other commands' failures stay 1. `--help` names the environment
//! variables.
//!
//! Always on the embedded store (these tests break its files on purpose), whatever
//! `HISSABACK_TEST_BACKENDS` says.

use hissaback::configuration::StoreBackend;
use hissaback::store::ConversionRecord;
use std::path::Path;
use std::process::{Command, Output};

/// `hissaback ARGS...` in `root` with no inherited `HISSABACK_*` variable, the embedded
/// backends and `data` as the data directory; waits for it (at most a minute).
fn hissaback(root: &Path, data: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hissaback"));
    cmd.args(args).current_dir(root);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("HISSABACK_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("HISSABACK_DATA_DIR", data).env("HISSABACK_STORE_BACKEND", "embedded").env("HISSABACK_EVENTS_BACKEND", "embedded");
    let mut child = cmd.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().expect("spawn hissaback");
    let started = std::time::Instant::now();
    while child.try_wait().expect("try_wait").is_none() {
        if started.elapsed() > std::time::Duration::from_secs(60) {
            let _ = child.kill();
            panic!("hissaback {args:?} did not exit within a minute");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

fn describe(out: &Output) -> String {
    format!("status {:?}\nstdout:\n{}\nstderr:\n{}", out.status.code(), String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn check(root: &Path, data: &Path) -> Output {
    hissaback(root, data, &["ledger", "check"])
}

#[test]
fn ledger_check_exits_0_on_a_clean_store() {
    let root = tempfile::tempdir().unwrap();
    let out = check(root.path(), &root.path().join("data"));
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("0 conversions, every invariant holds"), "{}", describe(&out));
}

#[test]
fn ledger_check_exits_2_when_the_store_cannot_be_opened() {
    let root = tempfile::tempdir().unwrap();
    // The data directory is a file: the store cannot even be created.
    let not_a_dir = root.path().join("data");
    std::fs::write(&not_a_dir, b"a file, not a directory").unwrap();
    let out = check(root.path(), &not_a_dir);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("hissaback: ledger check could not run: cannot create data directory"), "{}", describe(&out));

    // The database file is not a database.
    let data = root.path().join("garbage");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("hissaback.db"), vec![0x5a; 8192]).unwrap();
    let out = check(root.path(), &data);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ledger check could not run"), "{}", describe(&out));
}

#[test]
fn ledger_check_exits_2_when_a_conversion_cannot_be_read() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let out = check(root.path(), &data);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    // A row the store cannot decode (JSON, but not a conversion): the check knows nothing
    // about the ledger, which is not the same as a broken invariant.
    let db = rusqlite::Connection::open(data.join("hissaback.db")).unwrap();
    db.execute("INSERT INTO conversions (id, affiliate_id, tenant_id, user_id, body) VALUES (1, 1, 't', 'u', '{\"id\": \"not a number\"}')", []).unwrap();
    drop(db);
    let out = check(root.path(), &data);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ledger check could not run"), "{}", describe(&out));
}

#[actix_web::test]
async fn ledger_check_exits_1_on_a_broken_invariant() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    {
        let mut settings = crate::helpers::test_settings(&data);
        settings.store.backend = StoreBackend::Embedded;
        let store = hissaback::store::open(&settings).await.expect("open the embedded store");
        // A reward larger than what the network pays, and no postings at all.
        let broken: ConversionRecord = serde_json::from_value(serde_json::json!({
            "id": 7, "network_id": 1, "txn_id": "txn-7", "click_id": "click-7", "campaign_id": 1,
            "affiliate_id": 1, "tenant_id": "tenant", "offer_id": 1, "user_id": "user",
            "currency": "USD", "payout_minor": 100, "reward_minor": 500, "status": "queued",
            "goal": null, "created_at": "2025-01-01T00:00:00Z", "updated_at": "2025-01-01T00:00:00Z",
            "paid_at": null
        }))
        .expect("a conversion record");
        store.put_conversion(&broken).await.expect("write it");
    }
    let out = check(root.path(), &data);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("conversion 7: reward 500 exceeds payout 100"), "{}", describe(&out));
    assert!(stdout.contains("1 conversions,") && stdout.contains("problems"), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("hissaback: ledger check:"), "{}", describe(&out));
}

#[test]
fn a_bad_configuration_is_2_for_ledger_check_and_1_for_other_commands() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let out = hissaback(root.path(), &data, &["--config", "missing.toml", "ledger", "check"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"), "{}", describe(&out));
    let out = hissaback(root.path(), &data, &["--config", "missing.toml", "migrate"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let out = hissaback(root.path(), &data, &["dead-letters", "list", "no-such-topic"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown topic"), "{}", describe(&out));
}

#[test]
fn help_names_each_environment_variable_and_the_config_variable() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let out = hissaback(root.path(), &data, &["--help"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in ["[env: HISSABACK_CONFIG", "HISSABACK_LISTEN", "server.listen [default: 127.0.0.1:8080]", "HISSABACK_STORE_BACKEND", "HISSABACK_AUTH__PEPPER", "HISSABACK_EVENTS__HANDLER_MAX_ATTEMPTS"] {
        assert!(help.contains(needle), "{needle} not in\n{help}");
    }
    for s in hissaback::cli::ENV_SETTINGS {
        assert!(help.contains(s.var), "{} not in --help", s.var);
    }
    let out = hissaback(root.path(), &data, &["--config", "chosen.toml", "ledger", "check", "--help"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("2 when the check could not run"), "{}", describe(&out));
}
