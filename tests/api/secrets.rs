//! Secrets at rest: webhook secrets encrypted in the store yet signing deliveries, postback
//! tokens stored as hashes (shown once, rotatable), and short peppers and keys refused.

use crate::helpers::{spawn_app, spawn_app_with, test_settings, TestApp};
use crate::partner::postback;
use crate::webhooks::{Hit, Receiver};
use hissaback::store::NetworkRecord;
use reqwest::Method;
use secrecy::ExposeSecret;
use serde_json::json;
use std::time::Duration;

fn tag() -> String {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("sec{}", t % 1_000_000_000_000)
}

async fn create_network(app: &TestApp) -> (u64, String) {
    let n = app.admin(Method::POST, "/networks", Some(json!({"name": format!("Net {}", tag())}))).await;
    assert_eq!(n.status, 201, "{}", n.text);
    let token = n.body["data"]["network"]["postback_token"].as_str().unwrap().to_string();
    (n.body["data"]["network"]["id"].as_u64().unwrap(), token)
}

/// A postback that passes authentication answers 422 for an unknown click; a refused token 401.
async fn assert_token_accepted(app: &TestApp, token: &str) {
    let r = postback(app, &format!("token={token}&click_id=cNoSuchClick&txn_id=x1&payout=1&currency=USD&status=pending")).await;
    assert_eq!(r.status, 422, "token {token} should be accepted: {}", r.text);
    assert!(r.body["errors"]["click_id"].is_array(), "{}", r.text);
}

async fn assert_token_refused(app: &TestApp, token: &str) {
    let r = postback(app, &format!("token={token}&click_id=cNoSuchClick&txn_id=x1&payout=1&currency=USD&status=pending")).await;
    r.assert_error(401, "Postback token is invalid.", "unauthenticated");
}

#[actix_web::test]
async fn webhook_secrets_are_encrypted_in_the_store_and_still_sign_deliveries() {
    let app = spawn_app().await;
    let p = app.partner(Some(&["webhooks.manage"])).await;
    let rx = Receiver::ok().await;
    let r = app
        .send(app.client.post(app.url("/api/v1/webhooks")).bearer_auth(&p.key).json(&json!({"event": "product.published", "url": rx.url("/sealed")})))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let (hook_id, secret) = (r.body["data"]["id"].as_u64().unwrap(), r.body["data"]["secret"].as_str().unwrap().to_string());
    assert_eq!(secret.len(), 64);
    let stored = app.state.store.get_webhook(p.affiliate_id, hook_id).await.unwrap().unwrap();
    assert!(stored.secret.starts_with("enc:v1:"), "stored secret {}", stored.secret);
    assert!(!stored.secret.contains(&secret));
    assert_eq!(app.state.secrets.open(&stored.secret).unwrap(), secret);

    let t = tag();
    let product = app
        .admin(Method::POST, "/products", Some(json!({"title": format!("Sealed {t}"), "slug": format!("sealed-{t}"), "price": 10, "type": "App\\Models\\Course", "published": true})))
        .await;
    assert_eq!(product.status, 201, "{}", product.text);
    let id = product.body["data"]["product"]["id"].clone();
    let hit = rx.wait_for(1, Duration::from_secs(30), "the delivery", move |h: &Hit| h.body["product"]["id"] == id).await.remove(0);
    assert_eq!(hit.header("x-affiliate-webhook-key"), secret);
    let ts: i64 = hit.header("webhook-timestamp").parse().unwrap();
    let expected = hissaback::webhooks::signature(&secret, hit.header("webhook-id"), ts, std::str::from_utf8(&hit.raw).unwrap());
    assert!(hit.header("webhook-signature").split(' ').any(|s| s == expected), "signature of {hit:?}");

    // Rotation stores the new secret encrypted too.
    let r = app.send(app.client.post(app.url(&format!("/api/v1/webhooks/{hook_id}/rotate-secret"))).bearer_auth(&p.key)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let new = r.body["data"]["secret"].as_str().unwrap().to_string();
    let stored = app.state.store.get_webhook(p.affiliate_id, hook_id).await.unwrap().unwrap();
    assert!(stored.secret.starts_with("enc:v1:") && !stored.secret.contains(&new));
    assert_eq!(app.state.secrets.open(&stored.secret).unwrap(), new);
}

#[actix_web::test]
async fn postback_tokens_are_stored_as_hashes_and_work_in_plain() {
    let app = spawn_app().await;
    let (id, token) = create_network(&app).await;
    assert!(token.starts_with("hb_pb_") && token.len() == 46, "{token}");
    // The store knows only the hash: the plain token finds nothing there.
    assert_eq!(app.state.store.network_by_token(&token).await.unwrap(), None);
    let hash = app.state.networks.hash(&token);
    let stored = app.state.store.network_by_token(&hash).await.unwrap().expect("the network by its token's hash");
    assert_eq!(stored.id, id);
    assert_eq!(stored.postback_token, hash);
    assert!(!stored.postback_token.contains(&token[6..]));
    assert_token_accepted(&app, &token).await;
    assert_token_refused(&app, &hash).await;
}

#[actix_web::test]
async fn a_rotated_token_stops_at_once_and_the_new_one_works() {
    let app = spawn_app().await;
    let (id, old) = create_network(&app).await;
    assert_token_accepted(&app, &old).await; // now cached
    let r = app.admin(Method::POST, &format!("/networks/{id}/rotate-token"), None).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let new = r.body["data"]["network"]["postback_token"].as_str().unwrap().to_string();
    assert_eq!(r.body["data"]["network"]["id"], json!(id));
    assert!(new.starts_with("hb_pb_") && new != old);
    assert_token_refused(&app, &old).await;
    assert_token_accepted(&app, &new).await;
    assert_eq!(app.state.store.network_by_token(&app.state.networks.hash(&old)).await.unwrap(), None);
    let missing = app.admin(Method::POST, "/networks/987654321/rotate-token", None).await;
    assert_eq!(missing.status, 404, "{}", missing.text);
}

#[actix_web::test]
async fn a_token_stored_in_plain_before_hashing_still_works_and_is_hashed_on_use() {
    let app = spawn_app().await;
    let (id, _) = create_network(&app).await;
    let legacy = format!("hb_pb_{}", "L".repeat(30) + &tag()[..10]);
    let record = NetworkRecord { id, name: "Legacy".into(), postback_token: legacy.clone(), created_at: chrono::Utc::now() };
    // Boxed: the CQL store's futures are large for the test thread's stack.
    Box::pin(app.state.store.put_network(&record)).await.unwrap();
    assert_token_accepted(&app, &legacy).await;
    let stored = Box::pin(app.state.store.get_network(id)).await.unwrap().unwrap();
    assert_eq!(stored.postback_token, app.state.networks.hash(&legacy), "hashed on first use");
    assert_token_accepted(&app, &legacy).await;
    let r = app.admin(Method::POST, &format!("/networks/{id}/rotate-token"), None).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_token_refused(&app, &legacy).await;
}

#[test]
fn short_peppers_and_secrets_keys_are_refused_by_validation() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = test_settings(dir.path());
    s.auth.pepper = Some("x".to_string().into());
    assert_eq!(s.validate().unwrap_err().to_string(), "configuration: auth.pepper must be at least 32 bytes");
    s.auth.pepper = Some("p".repeat(32).into());
    s.secrets.key = Some("k".to_string().into());
    assert_eq!(s.validate().unwrap_err().to_string(), "configuration: secrets.key must be at least 32 bytes");
    s.secrets.key = Some("k".repeat(32).into());
    assert!(s.validate().is_ok());
    assert_eq!(s.secrets.key.as_ref().unwrap().expose_secret().len(), 32);
}

#[actix_web::test]
async fn the_embedded_default_generates_its_secrets_key_in_its_own_owner_only_file() {
    let app = spawn_app_with(|s| {
        s.secrets.key = None;
    })
    .await;
    let path = app.data_dir.path().join("secrets.key");
    let key = std::fs::read_to_string(&path).expect("secrets.key in the data directory");
    assert_eq!(key.len(), 64);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }
}
