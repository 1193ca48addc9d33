//! The admin API (`/admin/v1`, DESIGN "Admin API" rows for affiliates and keys): the admin
//! bearer token, creating, showing and updating affiliates with their linked user, issuing
//! keys (scopes, kinds, restrictions, rate plans) and the 404/422 answers around them.

use crate::helpers::{spawn_app, spawn_app_with, ADMIN_TOKEN, ALL_SCOPES};
use chrono::{DateTime, Utc};
use reqwest::Method;
use serde_json::{json, Value};

fn time(v: &Value) -> DateTime<Utc> {
    v.as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .unwrap_or_else(|| panic!("{v} is not an ISO 8601 timestamp"))
        .to_utc()
}

/// One call of every admin route this module covers.
fn admin_calls() -> Vec<(Method, &'static str, Option<Value>)> {
    vec![
        (Method::POST, "/affiliates", Some(json!({"name": "A", "email": "a@example.test"}))),
        (Method::GET, "/affiliates/1", None),
        (Method::PATCH, "/affiliates/1", Some(json!({"active": false}))),
        (Method::POST, "/affiliates/1/keys", Some(json!({}))),
        (Method::GET, "/affiliates/1/keys", None),
        (Method::GET, "/keys/1", None),
        (Method::POST, "/keys/1/rotate", Some(json!({}))),
        (Method::DELETE, "/keys/1", None),
    ]
}

#[actix_web::test]
async fn the_admin_api_needs_the_admin_bearer_token() {
    // Four refusals per admin call: more than the default per-address allowance.
    let app = crate::helpers::spawn_app_with(|s| s.auth.failures_per_minute = 10_000).await;
    let p = app.partner(None).await;
    for (method, path, body) in admin_calls() {
        let url = app.url(&format!("/admin/v1{path}"));
        let with_body = |req: reqwest::RequestBuilder| match &body {
            Some(b) => req.json(b),
            None => req,
        };
        let missing = app.send(with_body(app.client.request(method.clone(), &url))).await;
        missing.assert_error(401, "Admin token is missing.", "unauthenticated");
        let basic = app.send(with_body(app.client.request(method.clone(), &url).header("Authorization", format!("Basic {ADMIN_TOKEN}")))).await;
        basic.assert_failure(401, "unauthenticated");
        let wrong = app.send(with_body(app.client.request(method.clone(), &url).bearer_auth("wrong-token-0123456789"))).await;
        wrong.assert_error(401, "Admin token is invalid.", "unauthenticated");
        // An affiliate's API key is not an admin token.
        let api_key = app.send(with_body(app.client.request(method.clone(), &url).bearer_auth(&p.key))).await;
        api_key.assert_error(401, "Admin token is invalid.", "unauthenticated");
    }
    // Nothing was changed by the refused calls.
    let a = app.admin(Method::GET, &format!("/affiliates/{}", p.affiliate_id), None).await;
    assert_eq!(a.body["data"]["affiliate"]["active"], true);
    assert_eq!(app.ping(&p.key).await.status, 200);
    // And the admin token is not an API key.
    app.ping(ADMIN_TOKEN).await.assert_error(401, "API key is invalid.", "unauthenticated");
}

#[actix_web::test]
async fn the_token_is_checked_before_the_body_is_read() {
    let app = spawn_app().await;
    let res = app
        .client
        .post(app.url("/admin/v1/affiliates"))
        .header("Content-Type", "application/json")
        .body("{\"name\": ")
        .send()
        .await
        .unwrap();
    crate::helpers::Answer::read(res).await.assert_error(401, "Admin token is missing.", "unauthenticated");
}

#[actix_web::test]
async fn without_a_configured_token_the_admin_api_is_disabled() {
    let app = spawn_app_with(|s| s.admin.token = None).await;
    for (method, path, body) in admin_calls() {
        let url = app.url(&format!("/admin/v1{path}"));
        for req in [
            app.client.request(method.clone(), &url),
            app.client.request(method.clone(), &url).bearer_auth(ADMIN_TOKEN),
        ] {
            let req = match &body {
                Some(b) => req.json(b),
                None => req,
            };
            app.send(req).await.assert_failure(401, "admin_disabled");
        }
    }
    // The rest of the service works without it.
    assert_eq!(app.get("/healthz").await.status, 200);
    app.get("/api/v1/test").await.assert_error(401, "API key is missing.", "unauthenticated");
}

#[actix_web::test]
async fn creating_an_affiliate_returns_it_with_a_user_made_from_its_name_and_email() {
    let app = spawn_app().await;
    let started = Utc::now();
    let r = app.create_affiliate(json!({"name": "Acme Partners", "email": "ops@acme.test"})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["success"], true);
    let a = &r.body["data"]["affiliate"];
    assert!(a["id"].as_u64().is_some_and(|id| id > 0), "{}", r.text);
    assert_eq!(a["name"], "Acme Partners");
    assert_eq!(a["email"], "ops@acme.test");
    assert_eq!(a["active"], true);
    assert_eq!(a["blog_approved"], false);
    assert!(a["user"]["id"].as_u64().is_some_and(|id| id > 0), "{}", r.text);
    assert_eq!(a["user"]["name"], "Acme Partners");
    assert_eq!(a["user"]["email"], "ops@acme.test");
    let created = time(&a["created_at"]);
    assert!(created >= started - chrono::Duration::seconds(1) && created <= Utc::now());
    assert_eq!(time(&a["updated_at"]), created);
    let mut fields: Vec<_> = a.as_object().unwrap().keys().cloned().collect();
    fields.sort();
    assert_eq!(fields, ["active", "blog_approved", "created_at", "email", "id", "name", "updated_at", "user"]);

    // GET shows the same affiliate.
    let shown = app.admin(Method::GET, &format!("/affiliates/{}", a["id"]), None).await;
    assert_eq!(shown.status, 200, "{}", shown.text);
    assert_eq!(shown.body, json!({"success": true, "data": {"affiliate": a}}));
}

#[actix_web::test]
async fn the_linked_user_can_be_none_or_given_and_flags_can_be_set() {
    let app = spawn_app().await;
    let none = app.affiliate(json!({"name": "No User", "email": "n@example.test", "user": null})).await;
    assert!(none["user"].is_null(), "{none}");
    assert!(none.get("user").is_some(), "user is present as null: {none}");

    let given = app
        .affiliate(json!({"name": "Given", "email": "g@example.test", "user": {"name": "Jane Author", "email": "jane@example.test"}}))
        .await;
    assert_eq!(given["user"]["name"], "Jane Author");
    assert_eq!(given["user"]["email"], "jane@example.test");
    assert!(given["user"]["id"].as_u64().is_some_and(|id| id > 0));

    let flags = app.affiliate(json!({"name": "Flags", "email": "f@example.test", "active": false, "blog_approved": true})).await;
    assert_eq!(flags["active"], false);
    assert_eq!(flags["blog_approved"], true);
}

#[actix_web::test]
async fn affiliate_ids_are_positive_and_increase() {
    let app = spawn_app().await;
    let mut last = 0;
    for i in 0..5 {
        let a = app.affiliate(json!({"name": format!("Affiliate {i}"), "email": format!("a{i}@example.test")})).await;
        let id = a["id"].as_u64().unwrap();
        assert!(id > last, "id {id} after {last}");
        last = id;
    }
}

#[actix_web::test]
async fn invalid_affiliates_are_refused_with_field_errors() {
    let app = spawn_app().await;
    let long = "x".repeat(256);
    let cases = [
        (json!({"email": "a@example.test"}), "name"),
        (json!({"name": "", "email": "a@example.test"}), "name"),
        (json!({"name": "   ", "email": "a@example.test"}), "name"),
        (json!({"name": long, "email": "a@example.test"}), "name"),
        (json!({"name": "A"}), "email"),
        (json!({"name": "A", "email": "not-an-email"}), "email"),
        (json!({"name": "A", "email": "a@example.test", "user": {"name": "U", "email": "nope"}}), "user.email"),
        (json!({"name": "A", "email": "a@example.test", "active": "yes"}), "active"),
        (json!({"name": "A", "email": "a@example.test", "blog_approved": 1}), "blog_approved"),
        (json!({"name": 5, "email": "a@example.test"}), "name"),
    ];
    for (body, field) in cases {
        let r = app.create_affiliate(body.clone()).await;
        assert_eq!(r.status, 422, "{body}: {}", r.text);
        r.assert_invalid(field);
    }
    // 255 characters is still fine.
    let ok = app.create_affiliate(json!({"name": "y".repeat(255), "email": "a@example.test"})).await;
    assert_eq!(ok.status, 201, "{}", ok.text);
}

#[actix_web::test]
async fn every_invalid_field_is_reported_in_one_answer() {
    // Laravel style: a partner fixes all problems after one round trip, not one per request.
    let app = spawn_app().await;
    let mut wrong = Vec::new();
    for body in [
        json!({"name": "x".repeat(256), "email": "nope"}),
        json!({}),
        json!({"email": "nope"}),
        json!({"name": "A", "email": "nope", "active": "yes"}),
    ] {
        let r = app.create_affiliate(body.clone()).await;
        assert_eq!(r.status, 422, "{body}: {}", r.text);
        let errors = r.body["errors"].as_object().cloned().unwrap_or_default();
        let expected: &[&str] = if body.get("active").is_some() { &["active", "email"] } else { &["name", "email"] };
        if !expected.iter().all(|f| errors.contains_key(*f)) {
            wrong.push(format!("{body} -> errors {:?}, expected {expected:?}", errors.keys().collect::<Vec<_>>()));
        }
    }
    assert!(wrong.is_empty(), "not every invalid field was reported:\n{}", wrong.join("\n"));
}

#[actix_web::test]
async fn patching_one_field_changes_only_that_field() {
    let app = spawn_app().await;
    let mut current = app.affiliate(json!({"name": "Before", "email": "before@example.test"})).await;
    let id = current["id"].as_u64().unwrap();
    let changes = [
        ("name", json!("After")),
        ("email", json!("after@example.test")),
        ("active", json!(false)),
        ("blog_approved", json!(true)),
        ("user", json!({"name": "Linked Person", "email": "linked@example.test"})),
    ];
    for (field, value) in changes {
        let r = app.patch_affiliate(id, json!({ field: value.clone() })).await;
        assert_eq!(r.status, 200, "{field}: {}", r.text);
        assert_eq!(r.body["success"], true);
        let next = r.body["data"]["affiliate"].clone();
        for (k, v) in current.as_object().unwrap() {
            if k == field || k == "updated_at" {
                continue;
            }
            assert_eq!(&next[k], v, "PATCH {field} changed {k}");
        }
        if field == "user" {
            assert_eq!(next["user"]["name"], value["name"]);
            assert_eq!(next["user"]["email"], value["email"]);
            assert!(next["user"]["id"].as_u64().is_some_and(|id| id > 0));
        } else {
            assert_eq!(next[field], value, "{field}");
        }
        assert!(time(&next["updated_at"]) >= time(&current["updated_at"]));
        // The change is stored, not only answered.
        let shown = app.admin(Method::GET, &format!("/affiliates/{id}"), None).await;
        assert_eq!(shown.body["data"]["affiliate"], next);
        current = next;
    }
}

#[actix_web::test]
async fn patching_user_null_unlinks_and_an_object_links_again() {
    let app = spawn_app().await;
    let a = app.affiliate(json!({"name": "Linked", "email": "l@example.test"})).await;
    let id = a["id"].as_u64().unwrap();
    assert!(a["user"].is_object());
    let r = app.patch_affiliate(id, json!({"user": null})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.body["data"]["affiliate"]["user"].is_null(), "{}", r.text);
    assert_eq!(r.body["data"]["affiliate"]["name"], "Linked");
    let shown = app.admin(Method::GET, &format!("/affiliates/{id}"), None).await;
    assert!(shown.body["data"]["affiliate"]["user"].is_null());

    let relinked = app.patch_affiliate(id, json!({"user": {"name": "New User", "email": "nu@example.test"}})).await;
    assert_eq!(relinked.status, 200, "{}", relinked.text);
    assert_eq!(relinked.body["data"]["affiliate"]["user"]["name"], "New User");
}

#[actix_web::test]
async fn bad_patches_are_refused_and_change_nothing() {
    let app = spawn_app().await;
    let a = app.affiliate(json!({"name": "Stable", "email": "s@example.test"})).await;
    let id = a["id"].as_u64().unwrap();

    app.patch_affiliate(id, json!({})).await.assert_invalid("payload");
    for (body, field) in [
        (json!({"name": ""}), "name"),
        (json!({"name": "z".repeat(256)}), "name"),
        (json!({"email": "nope"}), "email"),
        (json!({"active": "yes"}), "active"),
        (json!({"user": {"name": "U", "email": "nope"}}), "user.email"),
    ] {
        let r = app.patch_affiliate(id, body.clone()).await;
        assert_eq!(r.status, 422, "{body}: {}", r.text);
        r.assert_invalid(field);
    }
    let shown = app.admin(Method::GET, &format!("/affiliates/{id}"), None).await;
    assert_eq!(shown.body["data"]["affiliate"], a);

    app.patch_affiliate(999_999, json!({"name": "Ghost"})).await.assert_error(404, "Affiliate not found.", "not_found");
}

#[actix_web::test]
async fn unknown_and_non_numeric_ids_are_404_in_the_envelope() {
    let app = spawn_app().await;
    app.admin(Method::GET, "/affiliates/999999", None).await.assert_error(404, "Affiliate not found.", "not_found");
    app.admin(Method::GET, "/affiliates/999999/keys", None).await.assert_error(404, "Affiliate not found.", "not_found");
    app.admin(Method::GET, "/keys/999999", None).await.assert_failure(404, "not_found");
    for (method, path, body) in [
        (Method::GET, "/affiliates/abc", None),
        (Method::PATCH, "/affiliates/abc", Some(json!({"name": "x"}))),
        (Method::GET, "/affiliates/-1", None),
        (Method::POST, "/affiliates/abc/keys", Some(json!({}))),
        (Method::GET, "/affiliates/abc/keys", None),
        (Method::GET, "/keys/abc", None),
        (Method::POST, "/keys/abc/rotate", Some(json!({}))),
        (Method::DELETE, "/keys/abc", None),
        (Method::GET, "/affiliates/99999999999999999999999", None),
    ] {
        let r = app.admin(method.clone(), path, body).await;
        assert_eq!(r.status, 404, "{method} {path}: {}", r.text);
        r.assert_failure(404, "not_found");
    }
}

#[actix_web::test]
async fn issuing_a_key_answers_the_key_once_with_its_settings() {
    let app = spawn_app().await;
    let a = app.affiliate(json!({"name": "Keys", "email": "k@example.test"})).await;
    let id = a["id"].as_u64().unwrap();
    let started = Utc::now();
    let r = app.create_key(id, json!({})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["success"], true);
    let k = &r.body["data"]["key"];
    assert!(k["id"].as_u64().is_some_and(|id| id > 0));
    assert!(k["key"].as_str().is_some_and(|s| s.starts_with("hb_sk_")));
    assert_eq!(k["prefix"], json!(&k["key"].as_str().unwrap()[..14]));
    assert_eq!(k["kind"], "secret");
    assert_eq!(k["affiliate_id"], json!(id));
    assert_eq!(k["scopes"], json!(ALL_SCOPES));
    assert_eq!(k["allowed_brand_ids"], json!([]));
    assert_eq!(k["allowed_offer_ids"], json!([]));
    assert_eq!(k["rate_limit"], json!({"per_minute": 300, "burst": 1000}));
    let created = time(&k["created_at"]);
    assert!(created >= started - chrono::Duration::seconds(1) && created <= Utc::now());
    assert!(k["last_used_at"].is_null());
    assert!(k["revoked_at"].is_null());

    let custom = app
        .create_key(
            id,
            json!({"scopes": ["offers.read"], "allowed_brand_ids": [7, 3], "allowed_offer_ids": [11], "rate_limit": {"per_minute": 10, "burst": 20}}),
        )
        .await;
    assert_eq!(custom.status, 201, "{}", custom.text);
    let c = &custom.body["data"]["key"];
    assert_eq!(c["rate_limit"], json!({"per_minute": 10, "burst": 20}));
    assert_eq!(c["allowed_brand_ids"], json!([7, 3]));
    assert_eq!(c["allowed_offer_ids"], json!([11]));
    assert_eq!(c["scopes"], json!(["offers.read"]));
    assert!(c["id"].as_u64().unwrap() > k["id"].as_u64().unwrap());
    // Stored as answered.
    let shown = app.show_key(c["id"].as_u64().unwrap()).await;
    for field in ["id", "prefix", "kind", "affiliate_id", "scopes", "allowed_brand_ids", "allowed_offer_ids", "rate_limit", "created_at"] {
        assert_eq!(shown.body["data"]["key"][field], c[field], "{field}");
    }
}

#[actix_web::test]
async fn publishable_keys_hold_read_scopes_only() {
    let app = spawn_app().await;
    let a = app.affiliate(json!({"name": "Browser", "email": "b@example.test"})).await;
    let id = a["id"].as_u64().unwrap();
    let d = app.create_key(id, json!({"kind": "publishable"})).await;
    assert_eq!(d.status, 201, "{}", d.text);
    assert_eq!(d.body["data"]["key"]["kind"], "publishable");
    assert_eq!(d.body["data"]["key"]["scopes"], json!(["products.list", "products.view", "promotions.view", "offers.read"]));
    assert!(d.body["data"]["key"]["key"].as_str().unwrap().starts_with("hb_pk_"));

    let narrow = app.create_key(id, json!({"kind": "publishable", "scopes": ["products.list"]})).await;
    assert_eq!(narrow.status, 201, "{}", narrow.text);
    for write in ["webhooks.manage", "blogs.manage", "campaigns.write", "links.write", "products.discounts.manage", "rewards.read"] {
        let r = app.create_key(id, json!({"kind": "publishable", "scopes": ["products.list", write]})).await;
        assert_eq!(r.status, 422, "{write}: {}", r.text);
        r.assert_invalid("scopes");
    }
}

#[actix_web::test]
async fn invalid_key_requests_are_refused() {
    let app = spawn_app().await;
    let a = app.affiliate(json!({"name": "Strict", "email": "s@example.test"})).await;
    let id = a["id"].as_u64().unwrap();

    app.create_key(999_999, json!({})).await.assert_error(404, "Affiliate not found.", "not_found");
    app.create_key(id, json!({"scopes": ["products.delete"]})).await.assert_invalid("scopes.0");
    let second = app.create_key(id, json!({"scopes": ["products.list", "products.delete"]})).await;
    second.assert_invalid("scopes.1");
    assert!(second.body["errors"].get("scopes.0").is_none(), "{}", second.text);
    app.create_key(id, json!({"kind": "weird"})).await.assert_invalid("kind");
    app.create_key(id, json!({"scopes": "products.list"})).await.assert_invalid("scopes");
    for rate_limit in [json!({"per_minute": 0, "burst": 20}), json!({"per_minute": 10, "burst": 0}), json!({"per_minute": -1, "burst": 1})] {
        let r = app.create_key(id, json!({ "rate_limit": rate_limit })).await;
        assert_eq!(r.status, 422, "{rate_limit}: {}", r.text);
        r.assert_failure(422, "validation_failed");
        let errors = r.body["errors"].as_object().unwrap();
        assert!(errors.keys().any(|k| k.starts_with("rate_limit")), "{}", r.text);
    }
    // Nothing was issued by the refused requests.
    let list = app.admin(Method::GET, &format!("/affiliates/{id}/keys"), None).await;
    assert_eq!(list.status, 200, "{}", list.text);
    assert_eq!(list.body["data"]["keys"], json!([]));
}
