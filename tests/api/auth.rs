//! API key authentication on `GET /api/v1/test` (seed "Authentication", "Health Check",
//! "Error Handling Summary") and the key life cycle behind it: the three transports, the
//! seed's exact 401 messages, inactive affiliates, `restrictions`, scopes echoed in canonical
//! order, `last_used_at` written by the batching actor, rotation with a grace window,
//! revocation, and the plain key shown only once.

use crate::helpers::{eventually, spawn_app, Transport, ALL_SCOPES};
use chrono::{DateTime, Utc};
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;

const SUCCESS: &str = "Affiliate API key authenticated successfully.";

fn is_plain_key(key: &str, prefix: &str) -> bool {
    key.len() == 46 && key.starts_with(prefix) && key[6..].bytes().all(|b| b.is_ascii_alphanumeric())
}

fn time(v: &Value) -> DateTime<Utc> {
    v.as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .unwrap_or_else(|| panic!("{v} is not an ISO 8601 timestamp"))
        .to_utc()
}

#[actix_web::test]
async fn each_transport_authenticates_with_the_seed_body() {
    let app = spawn_app().await;
    let p = app.partner(None).await;
    for transport in Transport::ALL {
        let r = app.ping_with(transport, &p.key).await;
        assert_eq!(r.status, 200, "{transport:?}: {}", r.text);
        assert_eq!(
            r.body,
            json!({
                "success": true,
                "message": SUCCESS,
                "data": {"affiliate_id": p.affiliate_id, "scopes": ALL_SCOPES, "restrictions": ["blogs.manage"]},
            }),
            "{transport:?}"
        );
    }
}

#[actix_web::test]
async fn no_usable_key_in_any_transport_is_key_is_missing() {
    let app = spawn_app().await;
    app.get("/api/v1/test").await.assert_error(401, "API key is missing.", "unauthenticated");
    let url = app.url("/api/v1/test");
    let requests = [
        ("Basic scheme", app.client.get(&url).header("Authorization", "Basic xyz")),
        ("empty bearer", app.client.get(&url).header("Authorization", "Bearer ")),
        ("bare Bearer", app.client.get(&url).header("Authorization", "Bearer")),
        ("empty custom header", app.client.get(&url).header("X-Affiliate-Api-Key", "")),
        ("empty query", app.client.get(format!("{url}?api_key="))),
    ];
    for (what, req) in requests {
        let r = app.send(req).await;
        assert_eq!(r.status, 401, "{what}: {}", r.text);
        r.assert_error(401, "API key is missing.", "unauthenticated");
    }
}

#[actix_web::test]
async fn garbage_and_unknown_keys_are_key_is_invalid() {
    let app = spawn_app().await;
    let _someone = app.partner(None).await;
    let unknown_secret = format!("hb_sk_{}", "Ab3dE9xQ".repeat(5));
    let unknown_publishable = format!("hb_pk_{}", "Zz09yY18".repeat(5));
    for key in ["garbage", "hb_sk_short", unknown_secret.as_str(), unknown_publishable.as_str()] {
        for transport in Transport::ALL {
            let r = app.ping_with(transport, key).await;
            assert_eq!(r.status, 401, "{key} via {transport:?}: {}", r.text);
            r.assert_error(401, "API key is invalid.", "unauthenticated");
        }
    }
}

#[actix_web::test]
async fn an_inactive_affiliate_is_refused_until_reactivated() {
    let app = spawn_app().await;
    let p = app.partner(None).await;
    assert_eq!(app.ping(&p.key).await.status, 200);

    let off = app.patch_affiliate(p.affiliate_id, json!({"active": false})).await;
    assert_eq!(off.status, 200, "{}", off.text);
    for transport in Transport::ALL {
        app.ping_with(transport, &p.key)
            .await
            .assert_error(401, "Affiliate account is not active.", "unauthenticated");
    }

    let on = app.patch_affiliate(p.affiliate_id, json!({"active": true})).await;
    assert_eq!(on.status, 200, "{}", on.text);
    let r = app.ping(&p.key).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["data"]["affiliate_id"], p.affiliate_id);
}

#[actix_web::test]
async fn authentication_is_checked_before_scopes() {
    // A key without `products.list` gets 403 on categories, but only once it authenticates.
    let app = spawn_app().await;
    let p = app.partner(Some(&["webhooks.manage"])).await;
    app.get_with_key("/api/v1/categories", &p.key).await.assert_error(403, "Insufficient scope.", "insufficient_scope");
    app.patch_affiliate(p.affiliate_id, json!({"active": false})).await;
    app.get_with_key("/api/v1/categories", &p.key)
        .await
        .assert_error(401, "Affiliate account is not active.", "unauthenticated");
    app.patch_affiliate(p.affiliate_id, json!({"active": true})).await;
    assert_eq!(app.revoke_key(p.key_id).await.status, 200);
    app.get_with_key("/api/v1/categories", &p.key).await.assert_error(401, "API key is invalid.", "unauthenticated");
}

#[actix_web::test]
async fn restrictions_list_blogs_manage_until_blogs_are_approved() {
    let app = spawn_app().await;
    let p = app.partner(None).await;
    assert_eq!(app.ping(&p.key).await.body["data"]["restrictions"], json!(["blogs.manage"]));

    let approved = app.patch_affiliate(p.affiliate_id, json!({"blog_approved": true})).await;
    assert_eq!(approved.status, 200, "{}", approved.text);
    assert_eq!(app.ping(&p.key).await.body["data"]["restrictions"], json!([]));

    app.patch_affiliate(p.affiliate_id, json!({"blog_approved": false})).await;
    assert_eq!(app.ping(&p.key).await.body["data"]["restrictions"], json!(["blogs.manage"]));

    // An affiliate created already approved has no restriction from the start.
    let a = app.affiliate(json!({"name": "Blogger", "email": "b@example.test", "blog_approved": true})).await;
    let k = app.create_key(a["id"].as_u64().unwrap(), json!({"scopes": ["products.list"]})).await;
    let r = app.ping(k.body["data"]["key"]["key"].as_str().unwrap()).await;
    assert_eq!(r.body["data"]["restrictions"], json!([]), "{}", r.text);
}

#[actix_web::test]
async fn scopes_echo_the_keys_scopes_in_canonical_order() {
    let app = spawn_app().await;
    let p = app.partner(Some(&["rewards.read", "products.list", "webhooks.manage", "payouts.history.view"])).await;
    let r = app.ping(&p.key).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.body["data"]["scopes"],
        json!(["payouts.history.view", "webhooks.manage", "products.list", "rewards.read"])
    );

    // Every single scope round-trips on its own.
    for scope in ALL_SCOPES {
        let k = app.create_key(p.affiliate_id, json!({"scopes": [scope]})).await;
        assert_eq!(k.status, 201, "{scope}: {}", k.text);
        assert_eq!(k.body["data"]["key"]["scopes"], json!([scope]));
        let r = app.ping(k.body["data"]["key"]["key"].as_str().unwrap()).await;
        assert_eq!(r.body["data"]["scopes"], json!([scope]), "{scope}: {}", r.text);
    }

    // No scopes given: every one of the thirteen.
    let all = app.partner(None).await;
    assert_eq!(app.ping(&all.key).await.body["data"]["scopes"], json!(ALL_SCOPES));
    // An explicitly empty list is a key that can only ping.
    let none = app.create_key(p.affiliate_id, json!({"scopes": []})).await;
    assert_eq!(none.status, 201, "{}", none.text);
    let r = app.ping(none.body["data"]["key"]["key"].as_str().unwrap()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["data"]["scopes"], json!([]));
}

#[actix_web::test]
async fn last_used_at_is_written_by_the_batching_actor() {
    let app = spawn_app().await;
    let p = app.partner(None).await;
    let before = app.show_key(p.key_id).await;
    assert_eq!(before.status, 200, "{}", before.text);
    assert!(before.body["data"]["key"]["last_used_at"].is_null(), "{}", before.text);

    // A failed authentication with another key does not touch this one.
    app.ping("garbage").await;
    let started = Utc::now();
    assert_eq!(app.ping(&p.key).await.status, 200);
    let used = eventually(Duration::from_secs(5), "last_used_at to be written", || async {
        let k = app.show_key(p.key_id).await;
        let v = k.body["data"]["key"]["last_used_at"].clone();
        (!v.is_null()).then_some(v)
    })
    .await;
    let used = time(&used);
    assert!(used >= started - chrono::Duration::seconds(1) && used <= Utc::now(), "last_used_at {used} vs start {started}");

    // Later use moves it forward.
    actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(app.ping_with(Transport::Query, &p.key).await.status, 200);
    eventually(Duration::from_secs(5), "last_used_at to move forward", || async {
        let k = app.show_key(p.key_id).await;
        let now = time(&k.body["data"]["key"]["last_used_at"]);
        (now > used).then_some(())
    })
    .await;
}

#[actix_web::test]
async fn a_pending_last_used_write_does_not_undo_a_revocation() {
    let app = spawn_app().await;
    let p = app.partner(None).await;
    assert_eq!(app.ping(&p.key).await.status, 200);
    assert_eq!(app.revoke_key(p.key_id).await.status, 200);
    // Let the recorder flush what it held (test settings flush every 100 ms).
    eventually(Duration::from_secs(5), "last_used_at to be written", || async {
        (!app.show_key(p.key_id).await.body["data"]["key"]["last_used_at"].is_null()).then_some(())
    })
    .await;
    let k = app.show_key(p.key_id).await;
    assert!(k.body["data"]["key"]["revoked_at"].is_string(), "{}", k.text);
    app.ping(&p.key).await.assert_error(401, "API key is invalid.", "unauthenticated");
}

#[actix_web::test]
async fn rotation_issues_a_successor_and_keeps_the_old_key_for_the_grace_window() {
    let app = spawn_app().await;
    let p = app.partner(Some(&["products.list", "webhooks.manage"])).await;
    let original = app.show_key(p.key_id).await.body["data"]["key"].clone();

    let started = Utc::now();
    let r = app.rotate_key(p.key_id, None).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["success"], true);
    let new = &r.body["data"]["key"];
    let new_key = new["key"].as_str().expect("the new plain key");
    assert!(is_plain_key(new_key, "hb_sk_"), "{new_key}");
    assert_ne!(new_key, p.key);
    assert_ne!(new["id"], json!(p.key_id));
    assert!(new["id"].as_u64().is_some_and(|id| id > 0));
    assert_eq!(new["prefix"], json!(&new_key[..14]));
    assert_eq!(new["kind"], "secret");
    assert_eq!(new["scopes"], json!(["webhooks.manage", "products.list"]));
    assert_eq!(new["scopes"], original["scopes"]);
    assert_eq!(new["rate_limit"], original["rate_limit"]);

    // Default grace: 86400 seconds from now.
    let from = &r.body["data"]["rotated_from"];
    assert_eq!(from["id"], json!(p.key_id));
    let expires = time(&from["expires_at"]);
    let expected = started + chrono::Duration::seconds(86_400);
    assert!((expires - expected).num_seconds().abs() <= 5, "expires_at {expires}, expected about {expected}");

    // Both keys work during the grace window and resolve the same affiliate.
    for key in [p.key.as_str(), new_key] {
        let ok = app.ping(key).await;
        assert_eq!(ok.status, 200, "{}", ok.text);
        assert_eq!(ok.body["data"]["affiliate_id"], p.affiliate_id);
        assert_eq!(ok.body["data"]["scopes"], json!(["webhooks.manage", "products.list"]));
    }

    // A key is rotated once: the old one cannot be rotated again.
    app.rotate_key(p.key_id, None).await.assert_failure(409, "conflict");
    // The successor can be rotated in its turn.
    let next = app.rotate_key(new["id"].as_u64().unwrap(), Some(json!({"grace_seconds": 60}))).await;
    assert_eq!(next.status, 201, "{}", next.text);
}

#[actix_web::test]
async fn rotation_keeps_kind_restrictions_and_rate_plan() {
    let app = spawn_app().await;
    let a = app.affiliate(json!({"name": "Widget shop", "email": "w@example.test"})).await;
    let k = app
        .create_key(
            a["id"].as_u64().unwrap(),
            json!({"kind": "publishable", "allowed_brand_ids": [4, 2], "allowed_offer_ids": [9], "rate_limit": {"per_minute": 10, "burst": 20}}),
        )
        .await;
    assert_eq!(k.status, 201, "{}", k.text);
    let old = &k.body["data"]["key"];
    let r = app.rotate_key(old["id"].as_u64().unwrap(), Some(json!({"grace_seconds": 120}))).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let new = &r.body["data"]["key"];
    assert!(is_plain_key(new["key"].as_str().unwrap(), "hb_pk_"), "{}", r.text);
    for field in ["kind", "scopes", "allowed_brand_ids", "allowed_offer_ids", "rate_limit", "affiliate_id"] {
        assert_eq!(new[field], old[field], "{field}");
    }
}

#[actix_web::test]
async fn rotation_with_zero_grace_stops_the_old_key_at_once() {
    let app = spawn_app().await;
    let p = app.partner(None).await;
    let r = app.rotate_key(p.key_id, Some(json!({"grace_seconds": 0}))).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let new_key = r.body["data"]["key"]["key"].as_str().unwrap();
    app.ping(&p.key).await.assert_error(401, "API key is invalid.", "unauthenticated");
    let ok = app.ping(new_key).await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    assert_eq!(ok.body["data"]["affiliate_id"], p.affiliate_id);
}

#[actix_web::test]
async fn rotation_refuses_revoked_and_unknown_keys_and_overlong_grace() {
    let app = spawn_app().await;
    let p = app.partner(None).await;

    let too_long = app.rotate_key(p.key_id, Some(json!({"grace_seconds": 2_592_001}))).await;
    too_long.assert_invalid("grace_seconds");
    // The refused rotation changed nothing: the key is still rotatable and the longest grace is fine.
    let longest = app.rotate_key(p.key_id, Some(json!({"grace_seconds": 2_592_000}))).await;
    assert_eq!(longest.status, 201, "{}", longest.text);

    let other = app.create_key(p.affiliate_id, json!({})).await;
    let other_id = other.body["data"]["key"]["id"].as_u64().unwrap();
    app.rotate_key(other_id, Some(json!({"grace_seconds": -1}))).await.assert_invalid("grace_seconds");
    assert_eq!(app.revoke_key(other_id).await.status, 200);
    app.rotate_key(other_id, None).await.assert_failure(409, "conflict");

    app.rotate_key(999_999, None).await.assert_failure(404, "not_found");
}

#[actix_web::test]
async fn revocation_is_effective_at_once_and_idempotent() {
    let app = spawn_app().await;
    let p = app.partner(None).await;
    let spare = app.create_key(p.affiliate_id, json!({})).await.body["data"]["key"]["key"].as_str().unwrap().to_string();
    assert_eq!(app.ping(&p.key).await.status, 200);

    let r = app.revoke_key(p.key_id).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["success"], true);
    assert_eq!(r.body["data"]["key"]["id"], json!(p.key_id));
    let revoked_at = time(&r.body["data"]["key"]["revoked_at"]);
    for transport in Transport::ALL {
        app.ping_with(transport, &p.key).await.assert_error(401, "API key is invalid.", "unauthenticated");
    }
    // Other keys of the same affiliate are untouched.
    assert_eq!(app.ping(&spare).await.status, 200);

    let again = app.revoke_key(p.key_id).await;
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(time(&again.body["data"]["key"]["revoked_at"]), revoked_at, "a second revoke keeps the first time");
    let shown = app.show_key(p.key_id).await;
    assert_eq!(time(&shown.body["data"]["key"]["revoked_at"]), revoked_at);

    app.revoke_key(999_999).await.assert_failure(404, "not_found");
}

#[actix_web::test]
async fn revoking_a_key_inside_its_grace_window_stops_it() {
    let app = spawn_app().await;
    let p = app.partner(None).await;
    let r = app.rotate_key(p.key_id, None).await;
    let new_key = r.body["data"]["key"]["key"].as_str().unwrap().to_string();
    assert_eq!(app.ping(&p.key).await.status, 200);
    assert_eq!(app.revoke_key(p.key_id).await.status, 200);
    app.ping(&p.key).await.assert_error(401, "API key is invalid.", "unauthenticated");
    assert_eq!(app.ping(&new_key).await.status, 200);
}

#[actix_web::test]
async fn the_plain_key_appears_only_in_the_answer_that_issues_it() {
    let app = spawn_app().await;
    let p = app.partner(None).await;
    let rotated = app.rotate_key(p.key_id, Some(json!({"grace_seconds": 60}))).await;
    let new_id = rotated.body["data"]["key"]["id"].as_u64().unwrap();
    let new_key = rotated.body["data"]["key"]["key"].as_str().unwrap().to_string();
    // Use both so every stored field (last_used_at included) is filled in.
    app.ping(&p.key).await;
    app.ping(&new_key).await;

    let mut answers = vec![
        app.show_key(p.key_id).await,
        app.show_key(new_id).await,
        app.admin(Method::GET, &format!("/affiliates/{}/keys", p.affiliate_id), None).await,
        app.admin(Method::GET, &format!("/affiliates/{}", p.affiliate_id), None).await,
    ];
    let list = &answers[2];
    assert_eq!(list.status, 200, "{}", list.text);
    let ids: Vec<_> = list.body["data"]["keys"].as_array().unwrap().iter().map(|k| k["id"].clone()).collect();
    assert_eq!(ids, vec![json!(p.key_id), json!(new_id)]);
    answers.push(app.revoke_key(new_id).await);

    for a in &answers {
        assert_eq!(a.status, 200, "{}", a.text);
        for secret in [&p.key, &new_key] {
            assert!(!a.text.contains(secret.as_str()), "plain key leaked in {}", a.text);
            assert!(!a.text.contains(&secret[6..]), "random part of a key leaked in {}", a.text);
        }
        let keys: Vec<&Value> = match a.body["data"]["keys"].as_array() {
            Some(list) => list.iter().collect(),
            None => vec![&a.body["data"]["key"]],
        };
        for k in keys.into_iter().filter(|k| !k.is_null()) {
            assert!(k.get("key").is_none(), "`key` field in {}", a.text);
            assert!(k.get("hash").is_none(), "`hash` field in {}", a.text);
        }
    }
}

#[actix_web::test]
async fn keys_carry_a_recognisable_prefix_by_kind() {
    let app = spawn_app().await;
    let a = app.affiliate(json!({"name": "Prefixes", "email": "p@example.test"})).await;
    let id = a["id"].as_u64().unwrap();
    for (body, kind, prefix) in [
        (json!({}), "secret", "hb_sk_"),
        (json!({"kind": "secret"}), "secret", "hb_sk_"),
        (json!({"kind": "publishable"}), "publishable", "hb_pk_"),
    ] {
        let k = app.create_key(id, body).await;
        assert_eq!(k.status, 201, "{}", k.text);
        let view = &k.body["data"]["key"];
        let plain = view["key"].as_str().unwrap();
        assert!(is_plain_key(plain, prefix), "{plain}");
        assert_eq!(view["kind"], kind);
        assert_eq!(view["prefix"], json!(&plain[..14]));
        let shown = app.show_key(view["id"].as_u64().unwrap()).await;
        assert_eq!(shown.body["data"]["key"]["prefix"], view["prefix"]);
        assert_eq!(shown.body["data"]["key"]["kind"], kind);
        // Either kind authenticates.
        let r = app.ping(plain).await;
        assert_eq!(r.status, 200, "{kind}: {}", r.text);
        assert_eq!(r.body["data"]["scopes"], view["scopes"]);
    }
}
