//! Credentials in memory (issue 12): a key's credential is cached after its first use, and
//! every change (revocation, rotation, affiliate deactivation) still applies to the very
//! next request on the instance that made it, to requests already racing it, and through
//! `credential-changes` to other instances within a second.

use crate::helpers::{eventually, real_backends, spawn_app, spawn_app_with, Answer, TestApp};
use hissaback_topics::events::{CredentialChange, CredentialChanged};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

const INVALID: &str = "API key is invalid.";
const INACTIVE: &str = "Affiliate account is not active.";

#[actix_web::test]
async fn a_revoked_key_fails_on_the_next_request_though_it_was_cached() {
    let app = spawn_app().await;
    let p = app.partner(None).await;
    for _ in 0..3 {
        assert_eq!(app.ping(&p.key).await.status, 200);
    }
    assert_eq!(app.revoke_key(p.key_id).await.status, 200);
    app.ping(&p.key).await.assert_error(401, INVALID, "unauthenticated");
    // Revoking again answers the same and the key stays refused.
    assert_eq!(app.revoke_key(p.key_id).await.status, 200);
    app.ping(&p.key).await.assert_error(401, INVALID, "unauthenticated");
}

#[actix_web::test]
async fn a_rotation_without_grace_stops_the_cached_old_key_and_the_new_one_works() {
    let app = spawn_app().await;
    let p = app.partner(None).await;
    assert_eq!(app.ping(&p.key).await.status, 200);
    let r = app.rotate_key(p.key_id, Some(json!({"grace_seconds": 0}))).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let successor = r.body["data"]["key"]["key"].as_str().unwrap().to_string();
    app.ping(&p.key).await.assert_error(401, INVALID, "unauthenticated");
    assert_eq!(app.ping(&successor).await.status, 200);
}

#[actix_web::test]
async fn deactivating_an_affiliate_stops_its_cached_keys_and_reactivating_restores_them() {
    let app = spawn_app().await;
    let p = app.partner(None).await;
    let other = app.partner(None).await;
    assert_eq!(app.ping(&p.key).await.status, 200);
    assert_eq!(app.ping(&other.key).await.status, 200);
    assert_eq!(app.patch_affiliate(p.affiliate_id, json!({"active": false})).await.status, 200);
    app.ping(&p.key).await.assert_error(401, INACTIVE, "unauthenticated");
    assert_eq!(app.ping(&other.key).await.status, 200, "another affiliate is untouched");
    assert_eq!(app.patch_affiliate(p.affiliate_id, json!({"active": true})).await.status, 200);
    assert_eq!(app.ping(&p.key).await.status, 200);
    // Approving blogs changes `restrictions` at once too.
    assert_eq!(app.ping(&p.key).await.body["data"]["restrictions"], json!(["blogs.manage"]));
    assert_eq!(app.patch_affiliate(p.affiliate_id, json!({"blog_approved": true})).await.status, 200);
    assert_eq!(app.ping(&p.key).await.body["data"]["restrictions"], json!([]));
}

/// Requests racing a revocation: none that *starts* after the revocation was answered may
/// succeed, whatever the cache held when it started filling.
#[actix_web::test]
async fn no_request_started_after_a_revocation_succeeds_under_concurrent_load() {
    // Failed authentications would soon be answered 429 per address; this counts 401s.
    let app = Arc::new(spawn_app_with(|s| s.auth.failures_per_minute = 1_000_000).await);
    for round in 0..3 {
        let p = app.partner(None).await;
        assert_eq!(app.ping(&p.key).await.status, 200);
        let revoked_at: Arc<std::sync::Mutex<Option<Instant>>> = Arc::default();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut callers = Vec::new();
        for _ in 0..16 {
            let (app, key, revoked_at, stop) = (app.clone(), p.key.clone(), revoked_at.clone(), stop.clone());
            callers.push(actix_web::rt::spawn(async move {
                let mut late_successes = Vec::new();
                let mut after = 0;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let started = Instant::now();
                    let status = app.ping(&key).await.status;
                    let done = *revoked_at.lock().unwrap();
                    if let Some(done) = done {
                        if started > done {
                            after += 1;
                            if status != 401 {
                                late_successes.push(status);
                            }
                        }
                    }
                }
                (late_successes, after)
            }));
        }
        actix_web::rt::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(app.revoke_key(p.key_id).await.status, 200);
        *revoked_at.lock().unwrap() = Some(Instant::now());
        actix_web::rt::time::sleep(Duration::from_millis(1000)).await;
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let mut checked = 0;
        for c in callers {
            let (late, after) = c.await.unwrap();
            assert!(late.is_empty(), "round {round}: requests started after the revocation answered {late:?}");
            checked += after;
        }
        assert!(checked >= 16, "round {round}: only {checked} requests started after the revocation");
    }
}

/// Another instance's change arrives as an event only: the store changes behind this
/// instance's back (as another instance would write it), the cache keeps serving the old
/// credential (so requests do not read the store), and the event drops it within a second.
#[actix_web::test]
async fn a_change_announced_on_the_topic_reaches_this_cache_within_a_second() {
    let app = spawn_app().await;
    // A fresh consumer group takes a few seconds to join on Kafka: wait until the follower
    // applies events at all, then measure one.
    revoke_behind_the_back(&app, Duration::from_secs(60)).await;
    revoke_behind_the_back(&app, Duration::from_secs(1)).await;
}

/// Revokes a cached key in the store only (as another instance would), checks the cache
/// still serves it, then announces the change and expects a refusal within `limit`.
async fn revoke_behind_the_back(app: &TestApp, limit: Duration) {
    let p = app.partner(None).await;
    assert_eq!(app.ping(&p.key).await.status, 200);
    let mut key = app.state.store.key_by_id(p.key_id).await.unwrap().unwrap();
    key.revoked_at = Some(chrono::Utc::now());
    app.state.store.put_key(&key).await.unwrap();
    // Without the event, the cached credential is what answers: no store read per request.
    assert_eq!(app.ping(&p.key).await.status, 200, "the credential is served from memory");
    let event = CredentialChanged { change: CredentialChange::Key { key_id: p.key_id, affiliate_id: p.affiliate_id }, occurred_at_ms: 0 };
    let sent = Instant::now();
    hissaback_topics::bus::publish_event(app.state.bus.as_ref(), &event).await.unwrap();
    refused_within(app, &p.key, INVALID, sent, limit).await;
}

/// Two instances sharing the store and the bus (real backends: the embedded log belongs to
/// one process): a revocation on the first stops the key on the second within a second.
#[actix_web::test]
async fn a_revocation_on_one_instance_stops_the_key_on_a_second_within_a_second() {
    if !real_backends() {
        // The embedded store and log are one process's files; the topic path is covered on
        // the embedded backends by the test above.
        return;
    }
    let first = spawn_app().await;
    let prefix = first.state.settings.events.kafka.topic_prefix.clone();
    let second = spawn_app_with(move |s| s.events.kafka.topic_prefix = prefix).await;
    // Wait until the second instance follows the topic: a deactivation made on the first
    // eventually shows on the second.
    let probe = first.partner(None).await;
    assert_eq!(second.ping(&probe.key).await.status, 200);
    assert_eq!(first.patch_affiliate(probe.affiliate_id, json!({"active": false})).await.status, 200);
    eventually(Duration::from_secs(60), "the second instance follows credential-changes", || async {
        (second.ping(&probe.key).await.status == 401).then_some(())
    })
    .await;

    let p = first.partner(None).await;
    assert_eq!(second.ping(&p.key).await.status, 200);
    assert_eq!(first.ping(&p.key).await.status, 200);
    let revoked = Instant::now();
    assert_eq!(first.revoke_key(p.key_id).await.status, 200);
    first.ping(&p.key).await.assert_error(401, INVALID, "unauthenticated");
    refused_within(&second, &p.key, INVALID, revoked, Duration::from_secs(1)).await;

    // Deactivation, the same way.
    let q = first.partner(None).await;
    assert_eq!(second.ping(&q.key).await.status, 200);
    let changed = Instant::now();
    assert_eq!(first.patch_affiliate(q.affiliate_id, json!({"active": false})).await.status, 200);
    refused_within(&second, &q.key, INACTIVE, changed, Duration::from_secs(1)).await;
}

/// Polls until `key` is refused with `message`, failing if that takes longer than `limit`
/// counted from `since`.
async fn refused_within(app: &TestApp, key: &str, message: &str, since: Instant, limit: Duration) {
    loop {
        let r: Answer = app.ping(key).await;
        if r.status == 401 {
            r.assert_error(401, message, "unauthenticated");
            let took = since.elapsed();
            assert!(took <= limit, "refused only after {took:?}");
            return;
        }
        assert_eq!(r.status, 200, "{}", r.text);
        assert!(since.elapsed() <= limit, "still accepted {:?} after the change", since.elapsed());
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
}
