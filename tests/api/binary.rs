//! The real `hissaback` binary as a child process (DESIGN "Operator surfaces",
//! "Configuration"): `serve` survives a restart on the same data directory (affiliates, keys,
//! revocations and the `last_used_at` flushed at SIGTERM), shuts down gracefully with exit
//! code 0, `demo` prints a working key, admin token and curl calls that work as printed and
//! reuses its affiliate on a second run, and `migrate` on the embedded default exits 0.
//!
//! Every child is killed by a drop guard, so a failing assertion leaks no process.

use reqwest::Method;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub(crate) const ADMIN: &str = "binary-test-admin-token-0123456789";
const START_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// A free local port: bound once by us, then released for the child.
pub(crate) fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().unwrap().port()
}

/// A running child; killed (SIGKILL) and reaped on drop unless it already exited.
pub(crate) struct Proc {
    pub(crate) child: Child,
    stderr: PathBuf,
    stdout_lines: Arc<Mutex<Vec<String>>>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Proc {
    pub(crate) fn logs(&self) -> String {
        format!(
            "stdout:\n{}\nstderr:\n{}",
            self.stdout_lines.lock().unwrap().join("\n"),
            std::fs::read_to_string(&self.stderr).unwrap_or_default()
        )
    }

    /// Sends SIGTERM and waits for the exit; returns the status and how long it took.
    pub(crate) async fn terminate(&mut self) -> (ExitStatus, Duration) {
        let started = Instant::now();
        let sent = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status().expect("run kill");
        assert!(sent.success(), "kill -TERM failed");
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return (status, started.elapsed());
            }
            assert!(started.elapsed() < STOP_TIMEOUT, "no exit {STOP_TIMEOUT:?} after SIGTERM\n{}", self.logs());
            actix_web::rt::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits for the process to exit on its own.
    pub(crate) async fn exit(&mut self, timeout: Duration) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(started.elapsed() < timeout, "no exit within {timeout:?}\n{}", self.logs());
            actix_web::rt::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The stdout lines read so far.
    fn lines(&self) -> Vec<String> {
        self.stdout_lines.lock().unwrap().clone()
    }
}

/// `hissaback <sub>` with no inherited `HISSABACK_*` variable, run in `root` (so no stray
/// `hissaback.toml` is read), with the given contract variables.
pub(crate) fn start(root: &Path, sub: &str, vars: &[(&str, String)]) -> Proc {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hissaback"));
    cmd.arg(sub).current_dir(root);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("HISSABACK_") {
            cmd.env_remove(k);
        }
    }
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let n = std::fs::read_dir(root).map(|d| d.count()).unwrap_or(0);
    let stderr = root.join(format!("{sub}-{n}.stderr.log"));
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(std::fs::File::create(&stderr).expect("stderr log file")));
    let mut child = cmd.spawn().expect("spawn hissaback");
    let stdout = child.stdout.take().unwrap();
    let stdout_lines = Arc::new(Mutex::new(Vec::new()));
    let sink = stdout_lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            match line {
                Ok(l) => sink.lock().unwrap().push(l),
                Err(_) => break,
            }
        }
    });
    Proc { child, stderr, stdout_lines }
}

pub(crate) fn serve_vars(data_dir: &Path, port: u16) -> Vec<(&'static str, String)> {
    vec![
        ("HISSABACK_LISTEN", format!("127.0.0.1:{port}")),
        ("HISSABACK_DATA_DIR", data_dir.display().to_string()),
        ("HISSABACK_ADMIN_TOKEN", ADMIN.to_string()),
        // Only the flush at shutdown can write last_used_at during these tests.
        ("HISSABACK_AUTH__LAST_USED_FLUSH_MS", "600000".to_string()),
    ]
}

/// Polls `/healthz` until it answers 200; fails early if the child exits.
pub(crate) async fn wait_healthy(proc: &mut Proc, base: &str) {
    let client = reqwest::Client::new();
    let started = Instant::now();
    loop {
        if let Ok(r) = client.get(format!("{base}/healthz")).send().await {
            if r.status() == 200 {
                return;
            }
        }
        if let Some(status) = proc.child.try_wait().unwrap() {
            panic!("exited with {status} before serving\n{}", proc.logs());
        }
        assert!(started.elapsed() < START_TIMEOUT, "/healthz not 200 within {START_TIMEOUT:?}\n{}", proc.logs());
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A JSON call to the child: status and body.
async fn call(client: &reqwest::Client, method: Method, url: String, bearer: Option<&str>, body: Option<Value>) -> (u16, Value) {
    let mut req = client.request(method, &url);
    if let Some(t) = bearer {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await.unwrap_or_else(|e| panic!("{url}: {e}"));
    let status = res.status().as_u16();
    let text = res.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

#[actix_web::test]
async fn data_survives_a_graceful_restart_on_the_same_data_dir() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let client = reqwest::Client::new();

    // First life: an affiliate, a used key and a revoked key.
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut first = start(root.path(), "serve", &serve_vars(&data, port));
    wait_healthy(&mut first, &base).await;
    let (s, a) = call(&client, Method::POST, format!("{base}/admin/v1/affiliates"), Some(ADMIN), Some(json!({"name": "Durable", "email": "d@example.test"}))).await;
    assert_eq!(s, 201, "{a}");
    let affiliate = a["data"]["affiliate"].clone();
    let affiliate_id = affiliate["id"].as_u64().unwrap();
    let keys_url = format!("{base}/admin/v1/affiliates/{affiliate_id}/keys");
    let (s, used) = call(&client, Method::POST, keys_url.clone(), Some(ADMIN), Some(json!({"scopes": ["products.list"]}))).await;
    assert_eq!(s, 201, "{used}");
    let (s, revoked) = call(&client, Method::POST, keys_url, Some(ADMIN), Some(json!({}))).await;
    assert_eq!(s, 201, "{revoked}");
    let used_key = used["data"]["key"]["key"].as_str().unwrap().to_string();
    let used_id = used["data"]["key"]["id"].as_u64().unwrap();
    let revoked_key = revoked["data"]["key"]["key"].as_str().unwrap().to_string();
    let revoked_id = revoked["data"]["key"]["id"].as_u64().unwrap();

    let (s, ok) = call(&client, Method::GET, format!("{base}/api/v1/test"), Some(&used_key), None).await;
    assert_eq!(s, 200, "{ok}");
    let (s, r) = call(&client, Method::DELETE, format!("{base}/admin/v1/keys/{revoked_id}"), Some(ADMIN), None).await;
    assert_eq!(s, 200, "{r}");
    let (s, _) = call(&client, Method::GET, format!("{base}/api/v1/test"), Some(&revoked_key), None).await;
    assert_eq!(s, 401);

    // SIGTERM: a graceful stop, exit code 0, within a few seconds.
    let (status, took) = first.terminate().await;
    assert!(status.success(), "exit status {status} after SIGTERM\n{}", first.logs());
    assert!(took < Duration::from_secs(5), "graceful shutdown took {took:?}");
    drop(first);

    // Second life on the same data directory.
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut second = start(root.path(), "serve", &serve_vars(&data, port));
    wait_healthy(&mut second, &base).await;

    let (s, shown) = call(&client, Method::GET, format!("{base}/admin/v1/affiliates/{affiliate_id}"), Some(ADMIN), None).await;
    assert_eq!(s, 200, "{shown}");
    assert_eq!(shown["data"]["affiliate"], affiliate);

    // Read before any new use: only the first life's shutdown flush can have written it.
    let (s, k) = call(&client, Method::GET, format!("{base}/admin/v1/keys/{used_id}"), Some(ADMIN), None).await;
    assert_eq!(s, 200, "{k}");
    assert!(k["data"]["key"]["last_used_at"].is_string(), "last_used_at not flushed at shutdown: {k}");

    let (s, again) = call(&client, Method::GET, format!("{base}/api/v1/test"), Some(&used_key), None).await;
    assert_eq!(s, 200, "the same plain key must still authenticate: {again}");
    assert_eq!(again["data"]["affiliate_id"], json!(affiliate_id));
    assert_eq!(again["data"]["scopes"], json!(["products.list"]));

    let (s, gone) = call(&client, Method::GET, format!("{base}/api/v1/test"), Some(&revoked_key), None).await;
    assert_eq!(s, 401, "{gone}");
    assert_eq!(gone["message"], "API key is invalid.");
    let (_, rk) = call(&client, Method::GET, format!("{base}/admin/v1/keys/{revoked_id}"), Some(ADMIN), None).await;
    assert!(rk["data"]["key"]["revoked_at"].is_string(), "{rk}");

    // New ids do not reuse old ones.
    let (s, b) = call(&client, Method::POST, format!("{base}/admin/v1/affiliates"), Some(ADMIN), Some(json!({"name": "Next", "email": "n@example.test"}))).await;
    assert_eq!(s, 201, "{b}");
    assert!(b["data"]["affiliate"]["id"].as_u64().unwrap() > affiliate_id, "{b}");

    let (status, _) = second.terminate().await;
    assert!(status.success(), "exit status {status}\n{}", second.logs());
}

/// What `hissaback demo` printed.
struct DemoOutput {
    affiliate_line: String,
    affiliate_id: u64,
    api_key: String,
    admin_token: String,
    curls: Vec<String>,
}

fn token_with_prefix(lines: &[String], prefix: &str) -> Option<String> {
    lines
        .iter()
        .filter(|l| !l.trim_start().starts_with("curl"))
        .flat_map(|l| l.split_whitespace())
        .find(|t| t.starts_with(prefix))
        .map(|t| t.trim_matches(|c: char| !c.is_ascii_alphanumeric() && c != '_').to_string())
}

fn parse_demo(lines: &[String]) -> Option<DemoOutput> {
    let affiliate_line = lines.iter().find(|l| l.contains("Demo affiliate id"))?.trim().to_string();
    let affiliate_id = affiliate_line.rsplit(|c: char| !c.is_ascii_digit()).find(|s| !s.is_empty())?.parse().ok()?;
    let api_key = token_with_prefix(lines, "hb_sk_")?;
    let admin_token = token_with_prefix(lines, "hb_admin_")?;
    let curls: Vec<String> = lines.iter().map(|l| l.trim()).filter(|l| l.starts_with("curl")).map(String::from).collect();
    (curls.len() >= 3).then_some(DemoOutput { affiliate_line, affiliate_id, api_key, admin_token, curls })
}

/// Runs a printed command line through `sh -c`, killing it after `timeout`.
async fn run_shell(line: &str, timeout: Duration) -> (ExitStatus, String, String) {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(line)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sh");
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`{line}` did not finish within {timeout:?}");
        }
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    };
    let mut out = String::new();
    let mut err = String::new();
    child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    (status, out, err)
}

/// Starts `hissaback demo` on `data` and reads its output until everything is printed.
async fn run_demo(root: &Path, data: &Path) -> (Proc, DemoOutput, String) {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let vars = vec![("HISSABACK_LISTEN", format!("127.0.0.1:{port}")), ("HISSABACK_DATA_DIR", data.display().to_string())];
    let mut demo = start(root, "demo", &vars);
    let started = Instant::now();
    let out = loop {
        if let Some(out) = parse_demo(&demo.lines()) {
            break out;
        }
        if let Some(status) = demo.child.try_wait().unwrap() {
            panic!("demo exited with {status} before printing its key\n{}", demo.logs());
        }
        assert!(started.elapsed() < START_TIMEOUT, "demo printed no key within {START_TIMEOUT:?}\n{}", demo.logs());
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    };
    (demo, out, base)
}

async fn check_printed_calls(out: &DemoOutput, base: &str, logs: impl Fn() -> String) {
    assert_eq!(out.curls.len(), 3, "expected three curl lines\n{}", logs());
    for line in &out.curls {
        assert!(line.contains(base), "`{line}` does not call {base}");
        let (status, stdout, stderr) = run_shell(line, Duration::from_secs(20)).await;
        assert!(status.success(), "`{line}` failed with {status}: {stderr}\n{}", logs());
        let body: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("`{line}` printed no JSON ({e}): {stdout}"));
        assert_eq!(body["success"], true, "`{line}` printed {stdout}");
        if line.contains("/api/v1/test") {
            assert_eq!(body["data"]["affiliate_id"], json!(out.affiliate_id), "{stdout}");
        }
    }
}

#[actix_web::test]
async fn demo_prints_a_working_key_admin_token_and_calls_and_reuses_its_affiliate() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");

    let (mut demo, out, base) = run_demo(root.path(), &data).await;
    assert!(
        out.api_key.len() == 46 && out.api_key[6..].bytes().all(|b| b.is_ascii_alphanumeric()),
        "API key {:?}",
        out.api_key
    );
    assert!(out.admin_token.len() > "hb_admin_".len() + 15, "admin token {:?}", out.admin_token);
    let logs = || demo.logs();
    check_printed_calls(&out, &base, logs).await;
    // The printed admin token works on the admin API and the printed key on /api/v1/test.
    let client = reqwest::Client::new();
    let (s, body) = call(&client, Method::GET, format!("{base}/admin/v1/affiliates/{}", out.affiliate_id), Some(&out.admin_token), None).await;
    assert_eq!(s, 200, "{body}");
    let (s, body) = call(&client, Method::GET, format!("{base}/api/v1/test"), Some(&out.api_key), None).await;
    assert_eq!(s, 200, "{body}");
    drop(client);
    let (status, _) = demo.terminate().await;
    assert!(status.success(), "demo exit status {status}\n{}", demo.logs());
    drop(demo);

    // Second run on the same data directory: same affiliate, a new working key.
    let (mut again, out2, base2) = run_demo(root.path(), &data).await;
    assert_eq!(out2.affiliate_line, out.affiliate_line);
    assert_eq!(out2.affiliate_id, out.affiliate_id);
    assert_ne!(out2.api_key, out.api_key, "a new key is printed");
    let logs = || again.logs();
    check_printed_calls(&out2, &base2, logs).await;
    let (status, _) = again.terminate().await;
    assert!(status.success(), "demo exit status {status}\n{}", again.logs());
}

#[actix_web::test]
async fn migrate_on_the_embedded_default_exits_0() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let mut migrate = start(root.path(), "migrate", &[("HISSABACK_DATA_DIR", data.display().to_string())]);
    let status = migrate.exit(Duration::from_secs(30)).await;
    assert!(status.success(), "migrate exit status {status}\n{}", migrate.logs());
    // Migrating twice is harmless.
    let mut again = start(root.path(), "migrate", &[("HISSABACK_DATA_DIR", data.display().to_string())]);
    let status = again.exit(Duration::from_secs(30)).await;
    assert!(status.success(), "second migrate exit status {status}\n{}", again.logs());
}

/// The distributed shape from the command line: `migrate` then `serve` with
/// `HISSABACK_STORE_BACKEND=scylla HISSABACK_EVENTS_BACKEND=kafka` against the real servers
/// (scripts/services.sh), passing the seed's authentication checks, across a restart.
#[actix_web::test]
async fn migrate_then_serve_on_scylla_and_kafka() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let keyspace = format!("hbbin_{secs}_{}", std::process::id());
    let distributed = |port: u16| {
        let mut vars = serve_vars(&data, port);
        vars.retain(|(k, _)| *k != "HISSABACK_AUTH__LAST_USED_FLUSH_MS");
        vars.extend([
            ("HISSABACK_STORE_BACKEND", "scylla".to_string()),
            ("HISSABACK_SCYLLA_NODES", crate::helpers::cql_nodes().join(",")),
            ("HISSABACK_SCYLLA_KEYSPACE", keyspace.clone()),
            ("HISSABACK_EVENTS_BACKEND", "kafka".to_string()),
            ("HISSABACK_KAFKA_BROKERS", crate::helpers::kafka_brokers()),
            ("HISSABACK_KAFKA_TOPIC_PREFIX", format!("{keyspace}.")),
            ("HISSABACK_AUTH__LAST_USED_FLUSH_MS", "200".to_string()),
        ]);
        vars
    };

    let mut migrate = start(root.path(), "migrate", &distributed(free_port()));
    let status = migrate.exit(Duration::from_secs(120)).await;
    assert!(status.success(), "migrate exit status {status}\n{}", migrate.logs());
    assert!(migrate.lines().iter().any(|l| l.contains(&keyspace)), "{:?}", migrate.lines());

    let client = reqwest::Client::new();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut server = start(root.path(), "serve", &distributed(port));
    wait_healthy(&mut server, &base).await;
    let (s, ready) = call(&client, Method::GET, format!("{base}/readyz"), None, None).await;
    assert_eq!(s, 200, "{ready}");
    assert_eq!(ready["data"]["store"], "scylla");
    assert_eq!(ready["data"]["events"], "kafka");

    let (s, a) = call(&client, Method::POST, format!("{base}/admin/v1/affiliates"), Some(ADMIN), Some(json!({"name": "Dist", "email": "d@example.test"}))).await;
    assert_eq!(s, 201, "{a}");
    let affiliate_id = a["data"]["affiliate"]["id"].as_u64().unwrap();
    let keys = format!("{base}/admin/v1/affiliates/{affiliate_id}/keys");
    let (s, k) = call(&client, Method::POST, keys.clone(), Some(ADMIN), Some(json!({"scopes": ["products.list"]}))).await;
    assert_eq!(s, 201, "{k}");
    let key = k["data"]["key"]["key"].as_str().unwrap().to_string();
    let key_id = k["data"]["key"]["id"].as_u64().unwrap();

    let expected = json!({"success": true, "message": "Affiliate API key authenticated successfully.",
        "data": {"affiliate_id": affiliate_id, "scopes": ["products.list"], "restrictions": ["blogs.manage"]}});
    for req in [
        client.get(format!("{base}/api/v1/test")).bearer_auth(&key),
        client.get(format!("{base}/api/v1/test")).header("X-Affiliate-Api-Key", &key),
        client.get(format!("{base}/api/v1/test?api_key={key}")),
    ] {
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.json::<Value>().await.unwrap(), expected);
    }
    let (s, missing) = call(&client, Method::GET, format!("{base}/api/v1/test"), None, None).await;
    assert_eq!((s, missing["message"].as_str()), (401, Some("API key is missing.")));
    let (s, invalid) = call(&client, Method::GET, format!("{base}/api/v1/test"), Some(&format!("hb_sk_{}", "x".repeat(40))), None).await;
    assert_eq!((s, invalid["message"].as_str()), (401, Some("API key is invalid.")));
    let (s, _) = call(&client, Method::PATCH, format!("{base}/admin/v1/affiliates/{affiliate_id}"), Some(ADMIN), Some(json!({"active": false}))).await;
    assert_eq!(s, 200);
    let (s, inactive) = call(&client, Method::GET, format!("{base}/api/v1/test"), Some(&key), None).await;
    assert_eq!((s, inactive["message"].as_str()), (401, Some("Affiliate account is not active.")));
    let (s, _) = call(&client, Method::PATCH, format!("{base}/admin/v1/affiliates/{affiliate_id}"), Some(ADMIN), Some(json!({"active": true}))).await;
    assert_eq!(s, 200);

    let (status, _) = server.terminate().await;
    assert!(status.success(), "serve exit status {status}\n{}", server.logs());

    // A second life on the same keyspace: the key still works and its use was recorded.
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut again = start(root.path(), "serve", &distributed(port));
    wait_healthy(&mut again, &base).await;
    let (s, _) = call(&client, Method::GET, format!("{base}/api/v1/test"), Some(&key), None).await;
    assert_eq!(s, 200);
    let (s, shown) = call(&client, Method::GET, format!("{base}/admin/v1/keys/{key_id}"), Some(ADMIN), None).await;
    assert_eq!(s, 200);
    assert!(shown["data"]["key"]["last_used_at"].is_string(), "{shown}");
    let (s, _) = call(&client, Method::DELETE, format!("{base}/admin/v1/keys/{key_id}"), Some(ADMIN), None).await;
    assert_eq!(s, 200);
    let (s, revoked) = call(&client, Method::GET, format!("{base}/api/v1/test"), Some(&key), None).await;
    assert_eq!((s, revoked["message"].as_str()), (401, Some("API key is invalid.")));
    let (status, _) = again.terminate().await;
    assert!(status.success(), "serve exit status {status}\n{}", again.logs());
}

/// `hissaback ledger check` on a fresh store: exits 0 and says every invariant holds.
#[actix_web::test]
async fn ledger_check_passes_on_a_fresh_store() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let mut check = start(root.path(), "ledger", &[("HISSABACK_DATA_DIR", data.display().to_string())]);
    let _ = &mut check;
    let status = check.exit(Duration::from_secs(30)).await;
    // `ledger` without a subcommand is a usage error; `ledger check` is the command.
    assert!(!status.success());
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_hissaback"));
    let out = cmd.args(["ledger", "check"]).current_dir(root.path()).env("HISSABACK_DATA_DIR", &data).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("every invariant holds"));
}

/// `hissaback <args>` run to its end in `root` on the embedded backends in `data`, with no
/// inherited `HISSABACK_*` variable: exit status and stdout.
fn run_cli(root: &Path, data: &Path, args: &[&str]) -> (ExitStatus, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hissaback"));
    cmd.args(args).current_dir(root);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("HISSABACK_") {
            cmd.env_remove(k);
        }
    }
    let out = cmd.env("HISSABACK_DATA_DIR", data).output().expect("run hissaback");
    (out.status, String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// `hissaback dead-letters list` prints each parked event (where it was, its key, group,
/// error) and changes nothing; `replay` puts the original messages back on their topic, and
/// a second replay publishes nothing. A raw message parked by an older build is listed and
/// replayed as it is.
#[actix_web::test]
async fn dead_letters_are_listed_and_replayed_once() {
    use hissaback_actors::consumer::{DeadLetter, DeadLetterReason};
    use hissaback_topics::bus::embedded::EmbeddedBus;
    use hissaback_topics::bus::{Delivery, EventBus};

    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let original = Delivery { topic: "conversions".into(), partition: 3, offset: 41, key: "conversion:42".into(), payload: vec![1, 7, 7, 7] };
    let parked = DeadLetter::new(original, "ledger", DeadLetterReason::HandlerFailed, "ledger said no\ncaused by: a rule", 5);
    {
        let bus = EmbeddedBus::open(&data, 4).unwrap();
        let (key, bytes) = parked.to_message().unwrap();
        bus.publish("conversions.dead-letter", &key, bytes).await.unwrap();
        bus.publish("conversions.dead-letter", "conversion:9", vec![1, 0xff]).await.unwrap();
    }

    let (status, out, err) = run_cli(root.path(), &data, &["dead-letters", "list", "conversions"]);
    assert!(status.success(), "{out}\n{err}");
    let line = out.lines().find(|l| l.contains("key=conversion:42")).unwrap_or_else(|| panic!("{out}"));
    for part in ["conversions 3/41", "group=ledger", "reason=handler_failed", "attempts=5", "error=ledger said no caused by: a rule", "parked=20"] {
        assert!(line.contains(part), "`{part}` missing from `{line}`");
    }
    assert!(out.contains("not an envelope (2 bytes, key=conversion:9)"), "{out}");
    assert!(out.contains("2 parked events in conversions.dead-letter"), "{out}");

    let (status, out, err) = run_cli(root.path(), &data, &["dead-letters", "replay", "conversions"]);
    assert!(status.success(), "{out}\n{err}");
    assert!(out.contains("replayed 2 parked events"), "{out}");
    let (status, out, err) = run_cli(root.path(), &data, &["dead-letters", "replay", "conversions"]);
    assert!(status.success(), "{out}\n{err}");
    assert!(out.contains("replayed 0 parked events"), "a second replay re-injected: {out}");
    // Listing still shows them: the dead-letter topic is a log, replaying does not empty it.
    let (_, out, _) = run_cli(root.path(), &data, &["dead-letters", "list", "conversions"]);
    assert!(out.contains("2 parked events"), "{out}");

    let bus = EmbeddedBus::open(&data, 4).unwrap();
    let mut sub = bus.subscribe("conversions", "check").await.unwrap();
    let batch = tokio::time::timeout(Duration::from_secs(10), sub.next_batch(10, Duration::from_millis(200))).await.unwrap().unwrap();
    let mut replayed: Vec<(String, Vec<u8>)> = batch.into_iter().map(|d| (d.key, d.payload)).collect();
    replayed.sort();
    assert_eq!(replayed, vec![("conversion:42".to_string(), vec![1, 7, 7, 7]), ("conversion:9".to_string(), vec![1, 0xff])]);
    assert_eq!(sub.lag().await.unwrap(), Some(0), "each parked event was replayed once");

    let (status, _, err) = run_cli(root.path(), &data, &["dead-letters", "list", "nope"]);
    assert!(!status.success());
    assert!(err.contains("unknown topic `nope`"), "{err}");
}

/// The stderr of a child that exited on its own, and its status.
async fn failed_start(root: &Path, vars: &[(&str, String)]) -> (ExitStatus, Vec<String>) {
    let mut proc = start(root, "serve", vars);
    let status = proc.exit(START_TIMEOUT).await;
    let stderr = std::fs::read_to_string(&proc.stderr).unwrap_or_default();
    (status, stderr.lines().map(String::from).collect())
}

/// A port already in use: one clear line on stderr (no panic from actix first), exit code 1.
#[actix_web::test]
async fn a_port_in_use_is_one_line_on_stderr_and_exit_code_1() {
    let root = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let (status, lines) = failed_start(root.path(), &serve_vars(&root.path().join("data"), port)).await;
    assert_eq!(status.code(), Some(1), "{lines:?}");
    assert_eq!(lines.len(), 1, "exactly one line on stderr: {lines:#?}");
    assert!(lines[0].contains(&format!("cannot listen on 127.0.0.1:{port}")) && lines[0].contains("in use"), "{}", lines[0]);
    assert!(!lines[0].contains("panicked"), "{}", lines[0]);
}

/// Bad configuration values (a malformed one, a short pepper or secrets key): one line
/// naming the problem once, exit code 1.
#[actix_web::test]
async fn a_bad_configuration_is_one_line_on_stderr_and_exit_code_1() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    for (var, value, says) in [
        ("HISSABACK_LISTEN", "nowhere", "server.listen must be an address"),
        ("HISSABACK_SERVER__WORKERS", "many", "expected usize"),
        ("HISSABACK_AUTH__PEPPER", "x", "auth.pepper must be at least 32 bytes"),
        ("HISSABACK_SECRETS_KEY", "short", "secrets.key must be at least 32 bytes"),
    ] {
        let mut vars = serve_vars(&data, free_port());
        vars.retain(|(k, _)| *k != var);
        vars.push((var, value.to_string()));
        let (status, lines) = failed_start(root.path(), &vars).await;
        assert_eq!(status.code(), Some(1), "{var}={value}: {lines:?}");
        assert_eq!(lines.len(), 1, "{var}={value}: exactly one line on stderr: {lines:#?}");
        assert!(lines[0].contains(says), "{var}={value}: {}", lines[0]);
        let message = lines[0].split_once("configuration: ").map(|(_, m)| m).unwrap_or(&lines[0]);
        assert_eq!(lines[0].matches(message).count(), 1, "the message once: {}", lines[0]);
        assert!(!lines[0].contains(value) || value == "nowhere" || value == "many", "a secret value is never echoed: {}", lines[0]);
    }
    assert!(!data.join("pepper").exists() && !data.join("secrets.key").exists(), "nothing created by a refused start");
}

/// Each thread of a process: (name, nice value), from `/proc/<pid>/task/*/stat` (field 19).
fn thread_priorities(pid: u32) -> Vec<(String, i64)> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).expect("the child's /proc") {
        let stat = std::fs::read_to_string(task.unwrap().path().join("stat")).unwrap_or_default();
        // `pid (comm) state ppid ...`: the name may hold spaces, so split after its `)`.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else { continue };
        let name = stat[open + 1..close].to_string();
        let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
        // After the name: state is field 3, nice field 19 (1-based in proc(5)).
        if let Some(nice) = fields.get(19 - 3).and_then(|n| n.parse().ok()) {
            out.push((name, nice));
        }
    }
    out
}

/// `server.background_nice`: the HTTP workers keep the default priority, the system
/// arbiter's thread (consumers, recorders, sweeps) and its blocking threads run niced, so on
/// a saturated core requests go first. 0 turns it off.
#[cfg(target_os = "linux")]
#[actix_web::test]
async fn background_threads_run_at_a_lower_priority_than_the_http_workers() {
    for (nice, expected) in [("10", 10), ("0", 0)] {
        let root = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut vars = serve_vars(&root.path().join("data"), port);
        vars.push(("HISSABACK_SERVER__BACKGROUND_NICE", nice.to_string()));
        vars.push(("HISSABACK_SERVER__WORKERS", "2".to_string()));
        let mut proc = start(root.path(), "serve", &vars);
        let base = format!("http://127.0.0.1:{port}");
        wait_healthy(&mut proc, &base).await;
        // The main thread is lowered just after the listeners start: give it a moment.
        let pid = proc.child.id();
        let started = Instant::now();
        let threads = loop {
            let threads = thread_priorities(pid);
            let main = threads.iter().find(|(name, _)| name == "hissaback").map(|(_, n)| *n);
            if main == Some(expected) || started.elapsed() > Duration::from_secs(5) {
                break threads;
            }
            actix_web::rt::time::sleep(Duration::from_millis(50)).await;
        };
        // The workers' threads are `actix-rt|system:0|arbiter:N` (the kernel keeps 15 bytes).
        let workers: Vec<_> = threads.iter().filter(|(name, _)| name.starts_with("actix-rt|system")).collect();
        assert_eq!(workers.len(), 2, "two HTTP workers: {threads:?}");
        assert!(workers.iter().all(|(_, n)| *n == 0), "HTTP workers at the default priority: {threads:?}");
        let main = threads.iter().find(|(name, _)| name == "hissaback");
        assert_eq!(main.map(|(_, n)| *n), Some(expected), "the system arbiter's thread with background_nice={nice}: {threads:?}");
        // The service still answers, and stops cleanly.
        assert_eq!(reqwest::get(format!("{base}/healthz")).await.unwrap().status(), 200);
        let (status, _) = proc.terminate().await;
        assert!(status.success(), "{}", proc.logs());
    }
}
