//! `spawn_app()` starts the real application on a random port with a fresh data directory;
//! `TestApp` has a method per endpoint so tests read as what they check.

#![allow(dead_code)]

use hissaback::configuration::Settings;
use hissaback::startup::Application;
use serde_json::{json, Value};
use std::path::PathBuf;

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

pub struct TestApp {
    pub address: String,
    pub port: u16,
    pub client: reqwest::Client,
    pub data_dir: tempfile::TempDir,
    pub handle: actix_web::dev::ServerHandle,
    pub state: actix_web::web::Data<hissaback::state::AppState>,
}

/// Settings for a test: defaults, a random port, the given data directory, a fast
/// last-used flush and a known admin token. `HISSABACK_*` environment variables still apply
/// (scripts/test.sh sets `HISSABACK_GEOIP_DB`, for one).
pub fn test_settings(data_dir: &std::path::Path) -> Settings {
    let mut s = Settings::load(Some(&defaults_file())).expect("defaults load");
    s.server.listen = "127.0.0.1:0".into();
    s.server.workers = 2;
    s.server.shutdown_timeout_seconds = 1;
    s.store.data_dir = data_dir.to_path_buf();
    s.admin.token = Some(ADMIN_TOKEN.to_string().into());
    s.auth.last_used_flush_ms = 100;
    // Webhook tests deliver to receivers on 127.0.0.1, quickly retried.
    s.webhooks.allow = vec!["127.0.0.1".into()];
    s.webhooks.retry_schedule = vec!["0s".into(), "200ms".into(), "400ms".into()];
    s.webhooks.retry_jitter = 0.0;
    s.server.instance_id = format!("test-{}", uuid_like());
    s
}

fn uuid_like() -> String {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{}-{}-{t}", std::process::id(), N.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
}

fn defaults_file() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("configuration/defaults.toml")
}

/// `HISSABACK_TEST_BACKENDS=real` runs every black-box test on ScyllaDB/Cassandra and Kafka
/// instead of the embedded defaults (scripts/test.sh runs the suite both ways).
pub fn real_backends() -> bool {
    std::env::var("HISSABACK_TEST_BACKENDS").is_ok_and(|v| v == "real")
}

pub fn kafka_brokers() -> String {
    std::env::var("HISSABACK_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

/// Where the real CQL database of the test run is (`scripts/services.sh up` starts one on
/// 127.0.0.1:9042; `HISSABACK_SCYLLA_NODES` points elsewhere).
pub fn cql_nodes() -> Vec<String> {
    std::env::var("HISSABACK_SCYLLA_NODES")
        .unwrap_or_else(|_| "127.0.0.1:9042".into())
        .split(',')
        .map(|s| s.trim().to_string())
        .collect()
}

static KEYSPACE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
static MIGRATED: tokio::sync::Mutex<bool> = tokio::sync::Mutex::const_new(false);

/// Settings of this test process's own keyspace on the real CQL database, migrated once
/// (schema changes are serialised: concurrent CREATE TABLE confuses Cassandra).
pub async fn scylla_settings() -> hissaback::configuration::ScyllaSettings {
    let keyspace = KEYSPACE
        .get_or_init(|| {
            let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
            format!("hbtest_{secs}_{}", std::process::id())
        })
        .clone();
    let settings = hissaback::configuration::ScyllaSettings {
        nodes: cql_nodes(),
        keyspace,
        replication_factor: 1,
        // Dozens of test apps share the sequences; larger blocks mean fewer contended LWTs.
        id_block_size: 100,
        ..Default::default()
    };
    let mut migrated = MIGRATED.lock().await;
    if !*migrated {
        hissaback::store::scylla::migrate(&settings).await.unwrap_or_else(|e| {
            panic!("the CQL database at {:?} is needed (start it with `scripts/services.sh up`): {e}", settings.nodes)
        });
        *migrated = true;
    }
    settings
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Like [`spawn_app`], with a hook to change the settings first.
pub async fn spawn_app_with(tweak: impl FnOnce(&mut Settings)) -> TestApp {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let mut settings = test_settings(data_dir.path());
    if real_backends() {
        use hissaback::configuration::{EventsBackend, StoreBackend};
        settings.store.backend = StoreBackend::Scylla;
        settings.store.scylla = scylla_settings().await;
        settings.events.backend = EventsBackend::Kafka;
        settings.events.kafka.brokers = kafka_brokers();
        // Each app has topics of its own (created below), as separate
        // deployments would: with shared topics, one app's consumer group member could take a
        // partition and stop with its test, leaving another test's events to a later member.
        static APP: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = APP.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        settings.events.kafka.topic_prefix = format!("{}.app{n}.", settings.store.scylla.keyspace);
        // Instances sharing a store share a pepper.
        settings.auth.pepper = Some("test-pepper-shared-by-every-test-app-0123456789".to_string().into());
        // ...and a secrets key (any instance may send another's webhook deliveries).
        settings.secrets.key = Some("test-secrets-key-shared-by-every-test-app-0123456789".to_string().into());
    }
    tweak(&mut settings);
    if real_backends() {
        // The app's own topics exist before its consumers subscribe.
        hissaback::events::migrate(&settings).await.expect("creating the app's Kafka topics");
    }
    let app = Application::build(settings).await.expect("app builds");
    let port = app.port();
    let handle = app.handle();
    let state = app.state();
    actix_web::rt::spawn(app.run_until_stopped());
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        port,
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            // Shorter than actix's 5 s keep-alive, so a pooled connection is never reused just as
            // the server closes it.
            .pool_idle_timeout(std::time::Duration::from_secs(1))
            .build()
            .unwrap(),
        data_dir,
        handle,
        state,
    }
}

/// A response read whole: status, headers and JSON body (`Value::Null` when not JSON).
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Answer {
    pub async fn read(res: reqwest::Response) -> Self {
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let text = res.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Answer { status, headers, body, text }
    }

    /// Asserts the seeds' failure envelope with this status, message and code.
    pub fn assert_error(&self, status: u16, message: &str, code: &str) {
        assert_eq!(self.status, status, "status of {}", self.text);
        assert_eq!(self.body["success"], json!(false), "{}", self.text);
        assert_eq!(self.body["message"], json!(message), "{}", self.text);
        assert_eq!(self.body["code"], json!(code), "{}", self.text);
    }
}

/// An affiliate and a key made through the admin API.
pub struct Partner {
    pub affiliate_id: u64,
    pub key_id: u64,
    pub key: String,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn get(&self, path: &str) -> Answer {
        Answer::read(self.client.get(self.url(path)).send().await.expect("request sent")).await
    }

    pub async fn get_with_key(&self, path: &str, key: &str) -> Answer {
        Answer::read(self.client.get(self.url(path)).bearer_auth(key).send().await.expect("request sent")).await
    }

    pub async fn admin(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Answer {
        let mut req = self.client.request(method, self.url(&format!("/admin/v1{path}"))).bearer_auth(ADMIN_TOKEN);
        if let Some(b) = body {
            req = req.json(&b);
        }
        Answer::read(req.send().await.expect("request sent")).await
    }

    pub async fn create_affiliate(&self, body: Value) -> Answer {
        self.admin(reqwest::Method::POST, "/affiliates", Some(body)).await
    }

    pub async fn patch_affiliate(&self, id: u64, body: Value) -> Answer {
        self.admin(reqwest::Method::PATCH, &format!("/affiliates/{id}"), Some(body)).await
    }

    pub async fn create_key(&self, affiliate_id: u64, body: Value) -> Answer {
        self.admin(reqwest::Method::POST, &format!("/affiliates/{affiliate_id}/keys"), Some(body)).await
    }

    pub async fn rotate_key(&self, key_id: u64, body: Option<Value>) -> Answer {
        self.admin(reqwest::Method::POST, &format!("/keys/{key_id}/rotate"), body).await
    }

    pub async fn revoke_key(&self, key_id: u64) -> Answer {
        self.admin(reqwest::Method::DELETE, &format!("/keys/{key_id}"), None).await
    }

    pub async fn show_key(&self, key_id: u64) -> Answer {
        self.admin(reqwest::Method::GET, &format!("/keys/{key_id}"), None).await
    }

    /// An active affiliate with a secret key holding `scopes` (every scope when `None`).
    pub async fn partner(&self, scopes: Option<&[&str]>) -> Partner {
        let a = self.create_affiliate(json!({"name": "Acme Partners", "email": "ops@acme.test"})).await;
        assert_eq!(a.status, 201, "{}", a.text);
        let affiliate_id = a.body["data"]["affiliate"]["id"].as_u64().unwrap();
        let body = match scopes {
            Some(s) => json!({ "scopes": s }),
            None => json!({}),
        };
        let k = self.create_key(affiliate_id, body).await;
        assert_eq!(k.status, 201, "{}", k.text);
        Partner {
            affiliate_id,
            key_id: k.body["data"]["key"]["id"].as_u64().unwrap(),
            key: k.body["data"]["key"]["key"].as_str().unwrap().to_string(),
        }
    }
}

impl TestApp {
    /// Sends a request built by the caller (any method, headers or body) and reads the answer.
    pub async fn send(&self, req: reqwest::RequestBuilder) -> Answer {
        Answer::read(req.send().await.expect("request sent")).await
    }

    /// `GET /api/v1/test` with the key in the given transport.
    pub async fn ping_with(&self, transport: Transport, key: &str) -> Answer {
        let req = self.client.get(self.url("/api/v1/test"));
        let req = match transport {
            Transport::Bearer => req.bearer_auth(key),
            Transport::Header => req.header("X-Affiliate-Api-Key", key),
            Transport::Query => req.query(&[("api_key", key)]),
        };
        self.send(req).await
    }

    /// `GET /api/v1/test` with the key as a bearer token.
    pub async fn ping(&self, key: &str) -> Answer {
        self.ping_with(Transport::Bearer, key).await
    }

    /// An affiliate made through the admin API, returning its `data.affiliate` object.
    pub async fn affiliate(&self, body: Value) -> Value {
        let a = self.create_affiliate(body).await;
        assert_eq!(a.status, 201, "{}", a.text);
        a.body["data"]["affiliate"].clone()
    }
}

/// The seed's three ways of presenting an API key.
#[derive(Clone, Copy, Debug)]
pub enum Transport {
    Bearer,
    Header,
    Query,
}

impl Transport {
    pub const ALL: [Transport; 3] = [Transport::Bearer, Transport::Header, Transport::Query];
}

/// Every supported scope in canonical order: the seed's nine, the partner flow's four, then
/// `stats.read`, `audit.read` and `users.manage`.
pub const ALL_SCOPES: [&str; 16] = [
    "payouts.history.view",
    "payments.view",
    "webhooks.manage",
    "blogs.manage",
    "blogs.accounts.manage",
    "products.list",
    "products.view",
    "products.discounts.manage",
    "promotions.view",
    "offers.read",
    "campaigns.write",
    "links.write",
    "rewards.read",
    "stats.read",
    "audit.read",
    "users.manage",
];

/// Polls `check` every 50 ms until it gives `Some`, or panics with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: std::time::Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(std::time::Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        actix_web::rt::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

impl Answer {
    /// Asserts the failure envelope: this status, `success: false`, a non-empty message and
    /// code, JSON content type (and so never a plain-text or HTML error page).
    pub fn assert_failure(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "status of {}", self.text);
        let ct = self.headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
        assert!(ct.starts_with("application/json"), "content type {ct:?} of {}", self.text);
        assert_eq!(self.body["success"], json!(false), "{}", self.text);
        assert!(self.body["message"].as_str().is_some_and(|m| !m.is_empty()), "message of {}", self.text);
        assert_eq!(self.body["code"], json!(code), "{}", self.text);
    }

    /// Asserts a 422 `validation_failed` whose `errors` object names `field` with at least one
    /// message, and whose `message` is a sentence.
    pub fn assert_invalid(&self, field: &str) {
        self.assert_failure(422, "validation_failed");
        let msgs = self.body["errors"][field].as_array().unwrap_or_else(|| panic!("errors.{field} in {}", self.text));
        assert!(!msgs.is_empty() && msgs.iter().all(|m| m.as_str().is_some_and(|s| !s.is_empty())), "{}", self.text);
        let message = self.body["message"].as_str().unwrap();
        assert!(message.starts_with(|c: char| c.is_uppercase()), "message {message:?} is not a sentence");
        assert!(message.ends_with('.') || message.ends_with(')'), "message {message:?} is not a sentence");
    }
}
