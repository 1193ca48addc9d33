//! The failure envelope everywhere (DESIGN "Contract beyond the seeds"): unknown routes,
//! bodies that are malformed, of the wrong media type, not an object or too large all answer
//! `{"success": false, "message", "code"}` JSON with the right status and never a 500; and
//! every response carries an `x-request-id`.

use crate::helpers::{spawn_app, spawn_app_with, Answer, TestApp, ADMIN_TOKEN};
use reqwest::Method;
use serde_json::json;

/// A raw admin request: the admin token, this content type and this body, as given.
async fn raw_admin(app: &TestApp, method: Method, path: &str, content_type: &str, body: impl Into<reqwest::Body>) -> Answer {
    let req = app
        .client
        .request(method, app.url(&format!("/admin/v1{path}")))
        .bearer_auth(ADMIN_TOKEN)
        .header("Content-Type", content_type)
        .body(body);
    app.send(req).await
}

/// The admin routes that read a JSON body, on an existing affiliate and key.
async fn body_routes(app: &TestApp) -> Vec<(Method, String)> {
    let p = app.partner(None).await;
    vec![
        (Method::POST, "/affiliates".to_string()),
        (Method::PATCH, format!("/affiliates/{}", p.affiliate_id)),
        (Method::POST, format!("/affiliates/{}/keys", p.affiliate_id)),
        (Method::POST, format!("/keys/{}/rotate", p.key_id)),
    ]
}

#[actix_web::test]
async fn unknown_routes_are_404_route_not_found() {
    let app = spawn_app().await;
    let r = app.get("/nope").await;
    assert_eq!(r.status, 404, "{}", r.text);
    assert_eq!(r.body, json!({"success": false, "message": "Route not found.", "code": "not_found"}));
    let p = app.partner(None).await;
    for r in [
        app.send(app.client.post(app.url("/nope")).json(&json!({}))).await,
        app.get("/api/v1/nope").await,
        app.get_with_key("/api/v1/nope", &p.key).await,
        app.get("/api/v2/test").await,
        app.admin(Method::GET, "/nope", None).await,
    ] {
        r.assert_error(404, "Route not found.", "not_found");
    }
}

#[actix_web::test]
async fn a_wrong_method_on_a_known_route_answers_in_the_envelope() {
    let app = spawn_app().await;
    let p = app.partner(None).await;
    for (r, allow) in [
        (app.send(app.client.post(app.url("/api/v1/test")).bearer_auth(&p.key)).await, "GET, HEAD"),
        (app.send(app.client.delete(app.url("/healthz"))).await, "GET, HEAD"),
        (app.admin(Method::PUT, "/affiliates", Some(json!({}))).await, "POST"),
        (app.send(app.client.delete(app.url("/api/v1/products/1"))).await, "GET, HEAD"),
        (app.send(app.client.post(app.url("/openapi.json"))).await, "GET, HEAD"),
        (app.admin(Method::POST, "/categories/5", None).await, "PATCH, DELETE"),
        (app.send(app.client.put(app.url("/v1/postbacks"))).await, "GET, POST"),
    ] {
        r.assert_error(405, "Method not allowed.", "method_not_allowed");
        assert_eq!(r.headers["allow"], allow, "{}", r.text);
    }
    // HEAD is served wherever GET is: same status and headers, no body.
    let head = app.send(app.client.head(app.url("/api/v1/test")).bearer_auth(&p.key)).await;
    assert_eq!(head.status, 200);
    assert!(head.text.is_empty());
    assert_eq!(head.headers["x-ratelimit-limit"], "300");
    assert_eq!(app.send(app.client.head(app.url("/healthz"))).await.status, 200);
    assert_eq!(app.send(app.client.head(app.url("/api/v1/test"))).await.status, 401);
    // Not where GET has an effect: a HEAD never records a click or a conversion.
    let r = app.send(app.client.head(app.url("/v1/postbacks?token=x"))).await;
    assert_eq!((r.status, r.headers["allow"].to_str().unwrap()), (405, "GET, POST"));
    let r = app.send(app.client.head(app.url("/r/SomeLinkCode123"))).await;
    assert_eq!((r.status, r.headers["allow"].to_str().unwrap()), (405, "GET"));
}

#[actix_web::test]
async fn malformed_json_is_400_invalid_json() {
    let app = spawn_app().await;
    for (method, path) in body_routes(&app).await {
        for body in ["{\"name\": ", "{name: 1}", r#"{"name": "A", "email": "a@example.test"} trailing"#, "not json at all"] {
            let r = raw_admin(&app, method.clone(), &path, "application/json", body).await;
            assert_eq!(r.status, 400, "{method} {path} {body:?}: {}", r.text);
            r.assert_failure(400, "invalid_json");
        }
    }
}

#[actix_web::test]
async fn malformed_json_is_400_even_when_it_also_lacks_fields() {
    // The body is not JSON at all, so it cannot be judged field by field.
    let app = spawn_app().await;
    let mut wrong = Vec::new();
    for body in [r#"{"name": "x"} trailing"#, r#"{"name": "x"}}"#, r#"{"name": "x", "#, r#"{"name": 5,"#, r#"{"active": "yes""#] {
        let r = raw_admin(&app, Method::POST, "/affiliates", "application/json", body).await;
        if r.status != 400 || r.body["code"] != "invalid_json" {
            wrong.push(format!("{body} -> {} {}", r.status, r.text));
        }
        assert!(r.status != 500, "{}", r.text);
    }
    assert!(wrong.is_empty(), "expected 400 invalid_json for:\n{}", wrong.join("\n"));
}

#[actix_web::test]
async fn a_json_body_without_a_json_content_type_is_415() {
    let app = spawn_app().await;
    for (method, path) in body_routes(&app).await {
        for content_type in ["text/plain", "application/x-www-form-urlencoded"] {
            let r = raw_admin(&app, method.clone(), &path, content_type, r#"{"name": "A", "email": "a@example.test"}"#).await;
            assert_eq!(r.status, 415, "{method} {path} {content_type}: {}", r.text);
            r.assert_failure(415, "unsupported_media_type");
        }
    }
    // `application/json; charset=utf-8` is JSON.
    let ok = raw_admin(&app, Method::POST, "/affiliates", "application/json; charset=utf-8", r#"{"name": "A", "email": "a@example.test"}"#).await;
    assert_eq!(ok.status, 201, "{}", ok.text);
}

#[actix_web::test]
async fn a_json_body_that_is_not_an_object_is_422() {
    let app = spawn_app().await;
    for (method, path) in body_routes(&app).await {
        for body in ["[]", r#"[{"name": "A", "email": "a@example.test"}]"#, "\"text\"", "42", "null"] {
            let r = raw_admin(&app, method.clone(), &path, "application/json", body).await;
            assert_eq!(r.status, 422, "{method} {path} {body}: {}", r.text);
            r.assert_failure(422, "validation_failed");
            assert!(r.body["errors"].is_object(), "{}", r.text);
        }
    }
}

#[actix_web::test]
async fn a_body_over_the_limit_is_413() {
    let app = spawn_app_with(|s| s.server.body_limit_bytes = 1024).await;
    let big = serde_json::to_string(&json!({"name": "x".repeat(4096), "email": "a@example.test"})).unwrap();
    for (method, path) in body_routes(&app).await {
        let r = raw_admin(&app, method.clone(), &path, "application/json", big.clone()).await;
        assert_eq!(r.status, 413, "{method} {path}: {}", r.text);
        r.assert_failure(413, "payload_too_large");
    }
    // Under the limit still works on the same app.
    let small = raw_admin(&app, Method::POST, "/affiliates", "application/json", r#"{"name": "A", "email": "a@example.test"}"#).await;
    assert_eq!(small.status, 201, "{}", small.text);
}

#[actix_web::test]
async fn every_response_carries_a_request_id() {
    let app = spawn_app().await;
    let p = app.partner(None).await;
    let requests = || {
        vec![
            app.client.get(app.url("/healthz")),
            app.client.get(app.url("/readyz")),
            app.client.get(app.url("/metrics")),
            app.client.get(app.url("/openapi.json")),
            app.client.get(app.url("/nope")),
            app.client.get(app.url("/api/v1/test")),
            app.client.get(app.url("/api/v1/test")).bearer_auth(&p.key),
            app.client.get(app.url("/admin/v1/affiliates/1")),
            app.client.post(app.url("/admin/v1/affiliates")).bearer_auth(ADMIN_TOKEN).header("Content-Type", "application/json").body("{"),
            app.client.post(app.url("/admin/v1/affiliates")).bearer_auth(ADMIN_TOKEN).json(&json!({})),
        ]
    };
    let mut generated = Vec::new();
    for req in requests() {
        let r = app.send(req).await;
        let id = r.headers.get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("");
        assert!(!id.trim().is_empty(), "no x-request-id on {} {}", r.status, r.text);
        generated.push(id.to_string());
    }
    let mut unique = generated.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), generated.len(), "generated request ids repeat: {generated:?}");

    for (i, req) in requests().into_iter().enumerate() {
        let sent = format!("client-req_{i}.7f3a-XYZ");
        let r = app.send(req.header("X-Request-Id", &sent)).await;
        assert_eq!(
            r.headers.get("x-request-id").and_then(|v| v.to_str().ok()),
            Some(sent.as_str()),
            "request id not echoed on {} {}",
            r.status,
            r.text
        );
    }
    // Anything beyond letters, digits and a few separators is replaced, never echoed.
    for odd in ["<script>", "a\"b", "a,b", "a b"] {
        let r = app.send(app.client.get(app.url("/healthz")).header("X-Request-Id", odd)).await;
        let id = r.headers["x-request-id"].to_str().unwrap();
        assert!(id != odd && id.len() == 36, "{odd:?} came back as {id:?}");
    }
}

/// Found by `scripts/fuzz.sh` (schemathesis, status_code_conformance): every operation that
/// reads a body answers the body errors above, so `/openapi.json` documents them on each;
/// and the admin operations whose bodies have rules document their 422.
#[actix_web::test]
async fn the_openapi_document_lists_the_body_errors_of_every_operation_with_a_body() {
    let app = spawn_app().await;
    let doc = app.get("/openapi.json").await;
    assert_eq!(doc.status, 200, "{}", doc.text);
    let mut with_body = 0;
    for (path, item) in doc.body["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if op.get("requestBody").is_none() {
                continue;
            }
            with_body += 1;
            for status in ["400", "413", "415", "422"] {
                assert!(op["responses"].get(status).is_some(), "{method} {path} does not document {status}: {}", op["responses"]);
            }
        }
    }
    assert!(with_body >= 20, "only {with_body} operations with a body");
    // What the fuzzer sent: a grace window past 30 days, and reward ids that are not numbers.
    let p = app.partner(None).await;
    let r = app.admin(Method::POST, &format!("/keys/{}/rotate", p.key_id), Some(json!({"grace_seconds": 2_592_001}))).await;
    assert_eq!(r.status, 422, "{}", r.text);
    assert_eq!(r.body["errors"]["grace_seconds"][0], "The grace seconds field must not be greater than 2592000.");
    let r = app.admin(Method::POST, "/rewards/pay", Some(json!({"reward_ids": [-1]}))).await;
    assert_eq!(r.status, 422, "{}", r.text);
    assert_eq!(r.body["code"], "validation_failed", "{}", r.text);
    let r = raw_admin(&app, Method::POST, "/rewards/pay", "application/json", "9:").await;
    r.assert_error(400, r.body["message"].as_str().unwrap_or(""), "invalid_json");
}
