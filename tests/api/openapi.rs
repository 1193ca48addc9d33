//! The OpenAPI document (issue 14, "OpenAPI"): valid (unique operationIds, resolvable
//! references), complete (every route the service mounts is documented and every documented
//! operation is served) and truthful (the bounds, enums, bodies and failures the server has).
//! `scripts/openapi-check.sh` validates it with openapi-spec-validator; `scripts/fuzz.sh`
//! runs that check and schemathesis against the served document.

use crate::helpers::{spawn_app, Answer, TestApp, ADMIN_TOKEN};
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

async fn document(app: &TestApp) -> Value {
    let r = app.get("/openapi.json").await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body
}

/// Every documented operation: (path, lower-case method, operation object).
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in METHODS {
            if let Some(op) = item.get(method) {
                out.push((path.clone(), method.to_string(), op.clone()));
            }
        }
    }
    out
}

/// The routes the service mounts, read from `src/routes/**`: every
/// `.route("/pattern", web::method()` with the scope its module is mounted under (see
/// `routes::configure`). A new module must be added to `prefixes` here, so that no route
/// escapes the comparison with the document.
fn mounted_routes() -> BTreeSet<(String, String)> {
    fn prefixes(file: &Path, pattern: &str) -> Vec<&'static str> {
        let name = file.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let admin = file.parent().and_then(|p| p.file_name()).is_some_and(|d| d == "admin");
        if admin {
            return vec!["/admin/v1"];
        }
        match name {
            "health.rs" | "clicks.rs" | "mod.rs" => vec![""],
            "ping.rs" | "categories.rs" | "products.rs" | "promotions.rs" | "blogs.rs" => vec!["/api/v1"],
            // `webhooks::affiliate` under /api/v1 and `webhooks::partner` under /v1.
            "webhooks.rs" => vec!["/api/v1", "/v1"],
            "partner.rs" | "postbacks.rs" | "rewards.rs" | "stats.rs" => vec!["/v1"],
            // `privacy::partner` under /v1, `privacy::admin` under /admin/v1.
            "privacy.rs" if pattern.starts_with("/affiliates/") => vec!["/admin/v1"],
            "privacy.rs" => vec!["/v1"],
            "openapi.rs" | "pagination.rs" => vec![],
            other => panic!("src/routes/{other} is not known to tests/api/openapi.rs: add the scope its routes are mounted under"),
        }
    }
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("src/routes readable") {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src/routes"), &mut files);
    let mut routes = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        // `.route("/pattern", web::get()`, possibly across lines.
        let compact: String = text.split_whitespace().collect::<Vec<_>>().join("");
        for piece in compact.split(".route(\"").skip(1) {
            let Some((pattern, rest)) = piece.split_once('"') else { continue };
            let Some(method) = rest.strip_prefix(",web::").and_then(|r| r.split_once("()")).map(|(m, _)| m) else { continue };
            if !METHODS.contains(&method) {
                continue;
            }
            for prefix in prefixes(&file, pattern) {
                routes.insert((format!("{prefix}{pattern}"), method.to_string()));
            }
        }
    }
    routes
}

/// A concrete path for a documented pattern: every `{param}` is `1`.
fn concrete(pattern: &str) -> String {
    let mut out = String::new();
    let mut rest = pattern;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        out.push('1');
        rest = &rest[rest[start..].find('}').map_or(rest.len(), |e| start + e + 1)..];
    }
    out.push_str(rest);
    out
}

#[actix_web::test]
async fn operation_ids_are_present_unique_and_references_resolve() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    let mut seen = HashSet::new();
    for (path, method, op) in operations(&doc) {
        let id = op["operationId"].as_str().unwrap_or_else(|| panic!("{method} {path} has no operationId"));
        assert!(!id.is_empty(), "{method} {path}");
        assert!(seen.insert(id.to_string()), "operationId {id:?} of {method} {path} is used twice");
    }
    assert!(seen.len() >= 70, "only {} operations", seen.len());
    // Stable names for generated clients.
    assert_eq!(doc["paths"]["/api/v1/webhooks"]["post"]["operationId"], "createWebhook");
    assert_eq!(doc["paths"]["/v1/webhooks"]["post"]["operationId"], "createPartnerWebhook");
    assert_eq!(doc["paths"]["/v1/postbacks"]["get"]["operationId"], "receivePostbackByGet");
    // Every `$ref` names a component.
    let text = doc.to_string();
    let schemas = doc["components"]["schemas"].as_object().expect("components.schemas");
    for piece in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
        let name = piece.split('"').next().unwrap();
        assert!(schemas.contains_key(name), "$ref to missing schema {name}");
    }
    assert!(doc["servers"].as_array().is_some_and(|s| !s.is_empty()), "servers: {}", doc["servers"]);
}

/// The document next to the code: every route mounted in `src/routes/**` is documented, and
/// nothing else is.
#[actix_web::test]
async fn the_document_lists_exactly_the_mounted_routes() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    let documented: BTreeSet<(String, String)> = operations(&doc).into_iter().map(|(p, m, _)| (p, m)).collect();
    let mounted = mounted_routes();
    assert!(mounted.len() >= 70, "only {} routes read from src/routes: {mounted:?}", mounted.len());
    let undocumented: Vec<_> = mounted.difference(&documented).collect();
    assert!(undocumented.is_empty(), "mounted but not documented: {undocumented:?}");
    let unmounted: Vec<_> = documented.difference(&mounted).collect();
    assert!(unmounted.is_empty(), "documented but not mounted: {unmounted:?}");
    for (path, method) in [
        ("/v1/webhooks", "get"),
        ("/v1/webhooks", "post"),
        ("/v1/webhooks/{webhook}", "delete"),
        ("/v1/webhooks/{webhook}/deliveries", "get"),
        ("/v1/webhooks/{webhook}/deliveries/{delivery}/redeliver", "post"),
        ("/v1/webhooks/{webhook}/rotate-secret", "post"),
        ("/v1/webhooks/{webhook}/enable", "post"),
    ] {
        let op = &doc["paths"][path][method];
        assert!(op.is_object(), "{method} {path} missing");
        // Authenticated like /api/v1 (an API key in any of the three transports).
        assert_eq!(op["security"], doc["paths"][path.replacen("/v1", "/api/v1", 1)][method]["security"], "{method} {path}");
        assert_eq!(op["tags"], json!(["partner"]), "{method} {path}");
    }
}

/// Every documented operation is served: called with its path parameters set to `1`, it
/// answers anything but the fallback's 404 "Route not found." or 405.
#[actix_web::test]
async fn every_documented_operation_is_served() {
    let app = spawn_app().await;
    let p = app.partner(None).await;
    let doc = document(&app).await;
    for (path, method, _) in operations(&doc) {
        let url = app.url(&concrete(&path));
        let token = if path.starts_with("/admin/") { ADMIN_TOKEN } else { p.key.as_str() };
        let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let r = app.send(app.client.request(method.clone(), url).bearer_auth(token)).await;
        assert_ne!(r.status, 405, "{method} {path}: {}", r.text);
        assert!(!(r.status == 404 && r.body["message"] == "Route not found."), "{method} {path} is not served: {}", r.text);
    }
}

#[actix_web::test]
async fn a_documented_path_called_with_another_method_is_405_with_allow() {
    let app = spawn_app().await;
    for path in ["/v1/webhooks", "/api/v1/webhooks", "/v1/webhooks/1/enable"] {
        let r = app.send(app.client.put(app.url(path))).await;
        r.assert_error(405, "Method not allowed.", "method_not_allowed");
        let allow = r.headers.get("allow").and_then(|v| v.to_str().ok()).unwrap_or_else(|| panic!("no Allow on PUT {path}"));
        let expected = if path.ends_with("/enable") { vec!["POST"] } else { vec!["GET", "HEAD", "POST"] };
        assert_eq!(allow.split(", ").collect::<Vec<_>>(), expected, "PUT {path}");
    }
}

/// `page` and `per_page` have the bounds `Page::parse` enforces (page ≥ 1, per_page 1–100),
/// on every listing that takes them, and the server answers 422 outside them.
#[actix_web::test]
async fn paging_parameters_have_the_servers_bounds() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    let mut listings = BTreeSet::new();
    for (path, method, op) in operations(&doc) {
        for param in op["parameters"].as_array().into_iter().flatten() {
            let schema = &param["schema"];
            match param["name"].as_str() {
                Some("page") => {
                    assert_eq!(schema["minimum"], json!(1), "page of {method} {path}: {schema}");
                    listings.insert(path.clone());
                }
                Some("per_page") => {
                    assert_eq!(schema["minimum"], json!(1), "per_page of {method} {path}: {schema}");
                    assert_eq!(schema["maximum"], json!(100), "per_page of {method} {path}: {schema}");
                }
                Some("limit") => assert!(schema["minimum"] == json!(1) && schema["maximum"].is_u64(), "limit of {method} {path}: {schema}"),
                _ => {}
            }
        }
    }
    assert_eq!(listings, BTreeSet::from(["/api/v1/products".to_string(), "/v1/offers".to_string()]));
    let p = app.partner(None).await;
    for path in ["/api/v1/products", "/v1/offers"] {
        for (query, status) in [("per_page=0", 422), ("per_page=101", 422), ("page=0", 422), ("per_page=100", 200), ("page=1&per_page=1", 200)] {
            let r = app.get_with_key(&format!("{path}?{query}"), &p.key).await;
            assert_eq!(r.status, status, "{path}?{query}: {}", r.text);
        }
    }
}

/// The currencies the server accepts are an enum, and what the server refuses is outside it.
#[actix_web::test]
async fn currency_parameters_are_the_servers_set() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    assert_eq!(doc["components"]["schemas"]["Currency"]["enum"], json!(["USD", "GBP", "EUR", "INR", "BGN"]));
    for (path, method, name) in [
        ("/api/v1/products", "get", "currency_code"),
        ("/api/v1/products/{product}", "get", "currency_code"),
        ("/api/v1/promotions", "get", "currency_code"),
        ("/v1/postbacks", "get", "currency"),
    ] {
        let params = doc["paths"][path][method]["parameters"].as_array().unwrap();
        let param = params.iter().find(|p| p["name"] == name).unwrap_or_else(|| panic!("{name} of {method} {path}"));
        assert_eq!(param["schema"]["$ref"], "#/components/schemas/Currency", "{name} of {method} {path}");
    }
    let p = app.partner(None).await;
    assert_eq!(app.get_with_key("/api/v1/products?currency_code=EUR", &p.key).await.status, 200);
    let r = app.get_with_key("/api/v1/products?currency_code=JPY", &p.key).await;
    r.assert_error(422, "Unsupported currency, use USD, GBP, EUR, INR, BGN", "validation_failed");
}

/// `/v1/postbacks` takes a form or JSON body (POST), never `text/plain`, which the server
/// refuses with 415.
#[actix_web::test]
async fn postbacks_document_the_bodies_the_server_reads() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    let get = &doc["paths"]["/v1/postbacks"]["get"];
    assert!(get["requestBody"].is_null(), "GET documents a body: {}", get["requestBody"]);
    let post = &doc["paths"]["/v1/postbacks"]["post"];
    let content = post["requestBody"]["content"].as_object().expect("POST body");
    let types: BTreeSet<&str> = content.keys().map(String::as_str).collect();
    assert_eq!(types, BTreeSet::from(["application/json", "application/x-www-form-urlencoded"]));
    for op in [get, post] {
        for status in ["200", "400", "401", "413", "415", "422", "429"] {
            assert!(op["responses"][status].is_object(), "{status} of /v1/postbacks: {}", op["responses"]);
        }
    }
    let r = app.send(app.client.post(app.url("/v1/postbacks")).header("content-type", "text/plain").body("token=x")).await;
    r.assert_failure(415, "unsupported_media_type");
    let r = app.send(app.client.post(app.url("/v1/postbacks")).form(&[("token", "nope")])).await;
    r.assert_error(401, "Postback token is invalid.", "unauthenticated");
}

/// Every operation with a credential documents the 401 it answers without one, in the
/// envelope, with the server's messages.
#[actix_web::test]
async fn every_secured_operation_documents_its_401() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    let error = json!("#/components/schemas/ErrorResponse");
    let mut admin = 0;
    for (path, method, op) in operations(&doc) {
        let schemes: Vec<String> = op["security"].as_array().into_iter().flatten().flat_map(|s| s.as_object().unwrap().keys().cloned()).collect();
        if schemes.is_empty() {
            continue;
        }
        let unauthorised = &op["responses"]["401"];
        assert!(unauthorised.is_object(), "{method} {path} has security but no 401");
        assert_eq!(unauthorised["content"]["application/json"]["schema"]["$ref"], error, "{method} {path}");
        let description = unauthorised["description"].as_str().unwrap_or_default();
        if schemes.iter().any(|s| s == "admin") {
            admin += 1;
            assert!(description.contains("Admin token is missing."), "{method} {path}: {description}");
        } else {
            assert!(description.contains("API key is missing."), "{method} {path}: {description}");
            assert!(op["responses"]["429"].is_object(), "{method} {path}");
        }
    }
    assert!(admin >= 29, "only {admin} admin operations");
    // What the server answers.
    app.get("/admin/v1/audit").await.assert_error(401, "Admin token is missing.", "unauthenticated");
    app.get("/api/v1/categories").await.assert_error(401, "API key is missing.", "unauthenticated");
    app.get("/v1/webhooks").await.assert_error(401, "API key is missing.", "unauthenticated");
}

/// The affiliate API's and the partner flow's success answers have a body schema (all but
/// the redirect), and one the server's answer fits at the top: the envelope's keys.
#[actix_web::test]
async fn success_answers_have_body_schemas() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    for (path, method, op) in operations(&doc) {
        if path.starts_with("/r/") {
            continue;
        }
        for (status, response) in op["responses"].as_object().unwrap() {
            if status.starts_with('2') {
                assert!(
                    response["content"].as_object().is_some_and(|c| !c.is_empty()),
                    "{status} of {method} {path} has no body schema"
                );
            }
        }
    }
    let p = app.partner(None).await;
    let schemas = &doc["components"]["schemas"];
    for (path, schema) in [
        ("/api/v1/categories", "CategoriesResponse"),
        ("/api/v1/products", "ProductsResponse"),
        ("/api/v1/webhooks", "WebhooksResponse"),
        ("/v1/webhooks", "WebhooksResponse"),
        ("/v1/offers", "OffersResponse"),
        ("/v1/stats/payouts", "PayoutStatsResponse"),
    ] {
        let r: Answer = app.get_with_key(path, &p.key).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text);
        let documented = &doc["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"];
        assert_eq!(documented, &json!(format!("#/components/schemas/{schema}")), "{path}");
        let data_schema = schemas[schema]["properties"]["data"]["$ref"].as_str().unwrap().rsplit('/').next().unwrap();
        for key in schemas[data_schema]["required"].as_array().unwrap() {
            assert!(r.body["data"].get(key.as_str().unwrap()).is_some(), "{path}: data.{key} missing from {}", r.text);
        }
    }
}

/// The document passes openapi-spec-validator (`scripts/openapi-check.sh` installs it from
/// PyPI into its venv the first time).
#[actix_web::test]
async fn the_document_passes_openapi_spec_validator() {
    let app = spawn_app().await;
    let r = app.get("/openapi.json").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, &r.text).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/openapi-check.sh");
    let out = std::process::Command::new("bash").arg(script).arg(&file).output().expect("bash runs");
    assert!(
        out.status.success(),
        "openapi-spec-validator: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
