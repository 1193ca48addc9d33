//! A typed client generated from the OpenAPI document compiles and runs the demo calls
//! (issue 14, "OpenAPI", last point): the app is seeded through the admin API like `hissaback
//! demo`'s data (a category, two courses with coupons, a bundle, a running percentage
//! promotion, a brand with an offer, an affiliate with a secret key), its `/openapi.json` is
//! saved, and `scripts/client-check.sh` generates a Python client from it with
//! openapi-generator, installs and compiles it and runs `scripts/client_demo.py` against the app
//! through the typed API classes. Nothing is skipped: without Java, Maven Central or PyPI the
//! test fails (the generator jar and the venv are cached under `$HOME/.cache/hissaback`).

use crate::helpers::{eventually, spawn_app, TestApp, ADMIN_TOKEN};
use reqwest::Method;
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Generous: a cold run downloads the generator (32 MB) and creates the venv.
const CHECK_TIMEOUT: Duration = Duration::from_secs(600);

/// A tag for this test's slugs and names (the real-backend run shares one store).
fn tag() -> String {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("c{}x{}z", std::process::id(), t % 1_000_000_000)
}

async fn created(app: &TestApp, path: &str, body: Value, what: &str) -> u64 {
    let r = app.admin(Method::POST, path, Some(body)).await;
    assert_eq!(r.status, 201, "creating {what}: {}", r.text);
    r.body["data"][what]["id"].as_u64().unwrap_or_else(|| panic!("data.{what}.id in {}", r.text))
}

/// The demo's catalogue and an offer, made through the admin API.
async fn seed_catalogue(app: &TestApp, t: &str) {
    let category = format!("design-{t}");
    created(app, "/categories", json!({"name": format!("Design {t}"), "slug": category}), "category").await;
    let course = |name: &str, price: f64| {
        json!({
            "title": format!("{name} {t}"),
            "slug": format!("{}-{t}", name.to_lowercase().replace(' ', "-")),
            "description": format!("{name}: a hands-on course."),
            "image": "https://cdn.example.com/products/course.png",
            "price": price,
            "type": "App\\Models\\Course",
            "category_slug": category,
            "introduction_video_url": "https://videos.example.com/intro.mp4",
            "published": true,
        })
    };
    let ui = created(app, "/products", course("Advanced UI Design", 79.0), "product").await;
    let rust = created(app, "/products", course("Rocket Engines in Rust", 69.0), "product").await;
    for (id, coupon) in [
        (ui, json!({"tier": "low", "code": format!("AFFL-{t}"), "percent_off": 12.5})),
        (ui, json!({"tier": "mid", "code": format!("AFFM-{t}"), "percent_off": 25})),
        (rust, json!({"tier": "high", "code": format!("AFFH-{t}"), "percent_off": 55, "expires_at": "2099-06-15T23:59:59Z"})),
    ] {
        let r = app.admin(Method::POST, &format!("/products/{id}/coupons"), Some(coupon)).await;
        assert_eq!(r.status, 201, "adding a coupon: {}", r.text);
    }
    let mut bundle = course("Designer Toolkit Bundle", 129.0);
    bundle["type"] = json!("App\\Models\\ProductBundle");
    bundle["bundle_product_ids"] = json!([ui, rust]);
    bundle.as_object_mut().unwrap().remove("introduction_video_url");
    let bundle = created(app, "/products", bundle, "product").await;
    created(
        app,
        "/promotions",
        json!({"title": format!("Spring Savings {t}"), "text": "25% off all courses", "type": "Percentage Promotion",
               "percentage_off": 25, "ends_at": "2099-06-15T23:59:59Z", "bundle_ids": [bundle]}),
        "promotion",
    )
    .await;
    let brand = created(app, "/brands", json!({"name": format!("Brand {t}")}), "brand").await;
    created(
        app,
        "/offers",
        json!({"brand_id": brand, "name": format!("Card {t}"), "category": "cards", "base_commission": 10,
               "default_share_pct": 40, "tracking_url": "https://n.example/?c={click_id}"}),
        "offer",
    )
    .await;
}

/// Runs `bash scripts/client-check.sh doc` with `vars`, without blocking the test's runtime
/// (the app's actors live on it); returns whether it succeeded and its output.
async fn client_check(dir: &Path, doc: &Path, vars: &[(&str, String)]) -> (bool, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/client-check.sh");
    let log_path = dir.join("client-check.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let mut cmd = Command::new("bash");
    cmd.arg(&script).arg(doc).current_dir(dir).stdin(Stdio::null());
    cmd.stdout(log.try_clone().unwrap()).stderr(log);
    for k in ["HB_BASE_URL", "HB_API_KEY", "HB_PUBLISHABLE_KEY", "HB_ADMIN_TOKEN", "HISSABACK_CLIENT_OUT"] {
        cmd.env_remove(k);
    }
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn bash scripts/client-check.sh");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if started.elapsed() > CHECK_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            let out = std::fs::read_to_string(&log_path).unwrap_or_default();
            panic!("scripts/client-check.sh did not finish within {CHECK_TIMEOUT:?}; its output so far:\n{out}");
        }
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    };
    let out = std::fs::read_to_string(&log_path).unwrap_or_default();
    (status.success(), format!("{status}\n{out}"))
}

#[actix_web::test]
async fn a_generated_typed_client_compiles_and_runs_the_demo_calls() {
    let app = spawn_app().await;
    let t = tag();
    seed_catalogue(&app, &t).await;
    let partner = app.partner(None).await;
    // The catalogue is served from a cache refreshed after admin writes: wait for this
    // test's products and promotion to be listed.
    eventually(Duration::from_secs(20), "the seeded catalogue to be listed", || async {
        let p = app.get_with_key(&format!("/api/v1/products?search={t}"), &partner.key).await;
        let listed = p.body["data"]["products"].as_array().map_or(0, |a| a.len());
        let r = app.get_with_key("/api/v1/promotions", &partner.key).await;
        let promoted = r.body["data"]["bundles"].as_array().is_some_and(|b| !b.is_empty());
        (listed == 3 && promoted).then_some(())
    })
    .await;

    let doc = app.get("/openapi.json").await;
    assert_eq!(doc.status, 200, "{}", doc.text);
    let dir = tempfile::tempdir().unwrap();
    let doc_path = dir.path().join("openapi.json");
    std::fs::write(&doc_path, &doc.text).unwrap();

    let started = Instant::now();
    let (ok, out) = client_check(
        dir.path(),
        &doc_path,
        &[("HB_BASE_URL", app.address.clone()), ("HB_API_KEY", partner.key.clone()), ("HB_ADMIN_TOKEN", ADMIN_TOKEN.to_string())],
    )
    .await;
    assert!(ok, "scripts/client-check.sh failed after {:?}: {out}", started.elapsed());
    for expected in [
        "ok   AffiliateApi.test_api_key",
        "ok   AffiliateApi.list_products",
        "ok   AffiliateApi.list_promotions",
        "ok   PartnerApi.list_offers",
        "ok   AdminApi.admin_list_keys",
        "ok   AffiliateApi.list_webhooks -> 403 ErrorResponse(code='insufficient_scope')",
        "client_demo: every demo call answered as documented",
    ] {
        assert!(out.contains(expected), "no `{expected}` in the output of scripts/client-check.sh: {out}");
    }
}
