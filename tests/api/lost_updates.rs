//! Lost updates (issue 13): requests that change the same record at the same time must not
//! overwrite each other with stale copies. One test per mutable resource — keys, affiliates,
//! categories, products — races many concurrent callers (each changing a field of its own, or
//! conflicting operations) for several rounds and checks that every answered change is
//! there; campaigns are never changed after creation, so theirs checks that concurrent
//! creations are all kept and read back. Every test runs on both store backends
//! (`HISSABACK_TEST_BACKENDS=real`: Cassandra and Kafka).

use crate::helpers::{spawn_app_with, TestApp};
use crate::partner::{post, tag};
use futures_util::future::join_all;
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// The app, with a client that drops connections idle for a second: these tests open dozens
/// of connections at once, and reusing one just as the server closes it for idling (actix's
/// 5 s keep-alive) would fail a request for no fault of the app.
async fn spawn_app() -> TestApp {
    spawn(|_| {}).await
}

async fn spawn(tweak: impl FnOnce(&mut hissaback::configuration::Settings)) -> TestApp {
    let mut app = spawn_app_with(tweak).await;
    app.client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_idle_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    app
}

/// A key issued for `affiliate_id`: (id, plain key).
async fn new_key(app: &TestApp, affiliate_id: u64) -> (u64, String) {
    let k = app.create_key(affiliate_id, json!({})).await;
    assert_eq!(k.status, 201, "{}", k.text);
    (k.body["data"]["key"]["id"].as_u64().unwrap(), k.body["data"]["key"]["key"].as_str().unwrap().to_string())
}

#[actix_web::test]
async fn a_revocation_racing_a_rotation_is_never_lost() {
    // Every revoked key is then presented: more refusals than the per-address default.
    let app = spawn(|s| s.auth.failures_per_minute = 100_000).await;
    let p = app.partner(None).await;
    let mut successors = BTreeSet::new();
    for round in 0..2 {
        let mut keys = Vec::new();
        for _ in 0..20 {
            keys.push(new_key(&app, p.affiliate_id).await);
        }
        // Each key rotated and revoked at the same time, all keys at once; some revocations
        // start a little later, so both orders happen.
        let app = &app;
        let races = keys.iter().enumerate().map(|(i, (id, _))| async move {
            let revoke = async move {
                actix_web::rt::time::sleep(Duration::from_millis(i as u64 % 5 * 25)).await;
                app.revoke_key(*id).await
            };
            tokio::join!(app.rotate_key(*id, Some(json!({"grace_seconds": 3600}))), revoke)
        });
        let answers = join_all(races).await;
        let (mut rotated_first, mut revoked_first) = (0, 0);
        for ((id, plain), (rotated, revoked)) in keys.iter().zip(&answers) {
            assert_eq!(revoked.status, 200, "round {round}, revoking key {id}: {}", revoked.text);
            let shown = app.show_key(*id).await;
            assert!(shown.body["data"]["key"]["revoked_at"].is_string(), "round {round}: key {id} answered revoked but is stored as {}", shown.text);
            app.ping(plain).await.assert_error(401, "API key is invalid.", "unauthenticated");
            match rotated.status {
                201 => {
                    // The rotation came first, and the revocation did not undo it.
                    rotated_first += 1;
                    let successor = rotated.body["data"]["key"]["id"].as_u64().unwrap();
                    assert_eq!(shown.body["data"]["key"]["rotated_to"], json!(successor), "round {round}, key {id}: {}", shown.text);
                    let plain = rotated.body["data"]["key"]["key"].as_str().unwrap();
                    assert_eq!(app.ping(plain).await.status, 200, "the successor of key {id} works");
                    successors.insert(successor);
                }
                409 => {
                    revoked_first += 1;
                    rotated.assert_error(409, "API key is revoked.", "conflict");
                }
                _ => panic!("round {round}, rotating key {id}: {}", rotated.text),
            }
        }
        eprintln!("round {round}: {rotated_first} rotations came first, {revoked_first} revocations");
    }
    // The only keys that still work: the partner's own and the successors handed out (a
    // rotation that lost to a revocation leaves no working key behind).
    let listed = app.admin(Method::GET, &format!("/affiliates/{}/keys", p.affiliate_id), None).await;
    let usable: BTreeSet<u64> = listed.body["data"]["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["revoked_at"].is_null() && k["expires_at"].is_null())
        .map(|k| k["id"].as_u64().unwrap())
        .collect();
    let mut expected = successors.clone();
    expected.insert(p.key_id);
    assert_eq!(usable, expected, "{}", listed.text);
}

#[actix_web::test]
async fn concurrent_edits_of_an_affiliate_all_land() {
    let app = spawn_app().await;
    let t = tag();
    let mut ids = Vec::new();
    for i in 0..8 {
        ids.push(app.affiliate(json!({"name": format!("Affiliate {i} {t}"), "email": format!("a{i}@{t}.test")})).await["id"].as_u64().unwrap());
    }
    for round in 0..3u64 {
        let expect = |i: usize| {
            json!({
                "name": format!("Renamed {i} r{round} {t}"),
                "email": format!("r{round}.a{i}@{t}.test"),
                "active": round % 2 == 1,
                "blog_approved": round % 2 == 0,
                "user": {"name": format!("User {i} r{round}"), "email": format!("u{round}.a{i}@{t}.test")},
            })
        };
        // One PATCH per field, every field of every affiliate at once.
        let patches = ids.iter().enumerate().flat_map(|(i, id)| {
            let fields = expect(i);
            fields.as_object().unwrap().clone().into_iter().map(move |(k, v)| (*id, json!({ k: v })))
        });
        let patched = join_all(patches.map(|(id, body)| {
            let app = &app;
            async move { (id, app.patch_affiliate(id, body).await) }
        }))
        .await;
        for (id, r) in &patched {
            assert_eq!(r.status, 200, "round {round}, affiliate {id}: {}", r.text);
        }
        for (i, id) in ids.iter().enumerate() {
            let got = app.admin(Method::GET, &format!("/affiliates/{id}"), None).await;
            let a = &got.body["data"]["affiliate"];
            let want = expect(i);
            for field in ["name", "email", "active", "blog_approved"] {
                assert_eq!(a[field], want[field], "round {round}, affiliate {id}: the {field} edit was lost: {}", got.text);
            }
            assert_eq!(a["user"]["name"], want["user"]["name"], "round {round}, affiliate {id}: the user edit was lost: {}", got.text);
            assert_eq!(a["user"]["email"], want["user"]["email"], "round {round}, affiliate {id}: {}", got.text);
        }
    }
}

/// `POST /admin/v1/categories`; the new category's id.
async fn new_category(app: &TestApp, name: &str, slug: &str) -> u64 {
    let r = app.admin(Method::POST, "/categories", Some(json!({"name": name, "slug": slug}))).await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.body["data"]["category"]["id"].as_u64().unwrap()
}

#[actix_web::test]
async fn concurrent_edits_of_a_category_all_land() {
    let app = spawn_app().await;
    let t = tag();
    let mut ids = Vec::new();
    for i in 0..8 {
        ids.push(new_category(&app, &format!("Category {i} {t}"), &format!("c{i}-{t}")).await);
    }
    for round in 0..3u64 {
        let expect = |i: usize| (format!("Category {i} r{round} {t}"), round % 2 == 1, format!("c{i}-r{round}-{t}"));
        let patches = ids.iter().enumerate().flat_map(|(i, id)| {
            let (name, active, slug) = expect(i);
            [json!({ "name": name }), json!({ "active": active }), json!({ "slug": slug })].map(|body| (*id, body))
        });
        let patched = join_all(patches.map(|(id, body)| {
            let app = &app;
            async move { (id, app.admin(Method::PATCH, &format!("/categories/{id}"), Some(body)).await) }
        }))
        .await;
        for (id, r) in &patched {
            assert_eq!(r.status, 200, "round {round}, category {id}: {}", r.text);
        }
        for (i, id) in ids.iter().enumerate() {
            let stored = app.state.store.get_category(*id).await.unwrap().unwrap();
            let (name, active, slug) = expect(i);
            assert_eq!((&stored.name, stored.active, stored.slug.as_deref()), (&name, active, Some(slug.as_str())), "round {round}: an edit was lost");
        }
    }
    // The slugs' claims followed: the current slug is taken, the ones replaced are free.
    for (i, _) in ids.iter().enumerate() {
        app.admin(Method::POST, "/categories", Some(json!({"name": "Taken", "slug": format!("c{i}-r2-{t}")}))).await.assert_invalid("slug");
        new_category(&app, "Freed", &format!("c{i}-r1-{t}")).await;
    }
}

#[actix_web::test]
async fn an_edit_racing_a_delete_never_brings_the_category_back() {
    let app = spawn_app().await;
    let reader = app.partner(Some(&["products.list"])).await;
    let t = tag();
    for round in 0..2 {
        let mut ids = Vec::new();
        for i in 0..20 {
            ids.push((i, new_category(&app, &format!("Doomed {i} {t}"), &format!("d{round}x{i}-{t}")).await));
        }
        let races = ids.iter().map(|(i, id)| {
            let app = &app;
            let rename = json!({"name": format!("Renamed {i} {t}")});
            let path = format!("/categories/{id}");
            async move { tokio::join!(app.admin(Method::PATCH, &path, Some(rename)), app.admin(Method::DELETE, &path, None)) }
        });
        let answers = join_all(races).await;
        for ((i, id), (renamed, deleted)) in ids.iter().zip(&answers) {
            assert_eq!(deleted.status, 200, "round {round}, deleting category {id}: {}", deleted.text);
            match renamed.status {
                200 => {}
                404 => renamed.assert_error(404, "Category not found.", "not_found"),
                _ => panic!("round {round}, renaming category {id}: {}", renamed.text),
            }
            let stored = app.state.store.get_category(*id).await.unwrap().unwrap();
            assert!(stored.deleted_at.is_some(), "round {round}: category {id} was deleted, then brought back by a stale edit");
            if renamed.status == 200 {
                // The rename came first, and the delete kept it.
                assert_eq!(stored.name, format!("Renamed {i} {t}"));
            }
            // A deleted category's slug is free again.
            new_category(&app, "Again", &format!("d{round}x{i}-{t}")).await;
        }
        let listed = app.get_with_key("/api/v1/categories", &reader.key).await;
        assert_eq!(listed.status, 200, "{}", listed.text);
        let names: Vec<&str> = listed.body["data"]["categories"].as_array().unwrap().iter().filter_map(|c| c["name"].as_str()).collect();
        assert!(!names.iter().any(|n| n.contains(&t) && !n.starts_with("Again")), "a deleted category is listed: {names:?}");
    }
}

/// A course body (published or not) named with `t`.
fn course(t: &str, i: usize, published: bool) -> Value {
    json!({
        "title": format!("Course {i} {t}"),
        "slug": format!("course-{i}-{t}"),
        "description": "About it.",
        "price": 49,
        "type": "App\\Models\\Course",
        "published": published,
    })
}

async fn new_product(app: &TestApp, body: Value) -> u64 {
    let r = app.admin(Method::POST, "/products", Some(body)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.body["data"]["product"]["id"].as_u64().unwrap()
}

#[actix_web::test]
async fn concurrent_edits_of_a_product_all_land() {
    let app = spawn_app().await;
    let t = tag();
    let mut ids = Vec::new();
    for i in 0..6 {
        ids.push(new_product(&app, course(&t, i, i % 2 == 0)).await);
    }
    for round in 0..3u64 {
        let fields = |i: usize| {
            json!({
                "title": format!("Course {i} r{round} {t}"),
                "description": format!("Round {round} of course {i}."),
                "image": format!("https://cdn.example.com/{i}-{round}.png"),
                "introduction_video_url": format!("https://videos.example.com/{i}-{round}.mp4"),
                "teachers": [{"id": round + 1, "name": format!("Teacher {round}")}],
            })
        };
        let coupon = |tier: &str| json!({"tier": tier, "code": format!("{}-R{round}", tier.to_uppercase()), "percent_off": 10 + round});
        // A PATCH per field and a coupon per tier, for every product at once.
        let mut calls = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            for (k, v) in fields(i).as_object().unwrap() {
                calls.push((Method::PATCH, format!("/products/{id}"), json!({ k: v })));
            }
            for tier in ["low", "mid", "high"] {
                calls.push((Method::POST, format!("/products/{id}/coupons"), coupon(tier)));
            }
        }
        let answers = join_all(calls.into_iter().map(|(m, path, body)| {
            let app = &app;
            async move { (path.clone(), app.admin(m, &path, Some(body)).await) }
        }))
        .await;
        for (path, r) in &answers {
            assert!(r.status == 200 || r.status == 201, "round {round}, {path}: {}", r.text);
        }
        for (i, id) in ids.iter().enumerate() {
            let got = app.admin(Method::GET, &format!("/products/{id}"), None).await;
            let p = &got.body["data"]["product"];
            for (k, v) in fields(i).as_object().unwrap() {
                assert_eq!(&p[k], v, "round {round}, product {id}: the {k} edit was lost: {}", got.text);
            }
            let codes: Vec<&str> = p["coupons"].as_array().unwrap().iter().map(|c| c["code"].as_str().unwrap()).collect();
            assert_eq!(codes, [format!("LOW-R{round}"), format!("MID-R{round}"), format!("HIGH-R{round}")], "round {round}, product {id}: {}", got.text);
            assert_eq!(p["published"], json!(i % 2 == 0), "round {round}, product {id}: {}", got.text);
        }
    }
}

#[actix_web::test]
async fn concurrent_publishing_publishes_once() {
    use hissaback_topics::events::{ContentChange, ProductChanged};
    let app = spawn_app().await;
    let t = tag();
    let id = new_product(&app, course(&t, 0, false)).await;
    const CALLERS: usize = 12;
    const ROUNDS: usize = 3;
    for round in 0..ROUNDS {
        for published in [true, false] {
            let path = format!("/products/{id}");
            let answers = join_all((0..CALLERS).map(|_| app.admin(Method::PATCH, &path, Some(json!({"published": published}))))).await;
            for r in &answers {
                assert_eq!(r.status, 200, "round {round}, published {published}: {}", r.text);
            }
        }
    }
    let got = app.admin(Method::GET, &format!("/products/{id}"), None).await;
    assert_eq!(got.body["data"]["product"]["published"], json!(false), "{}", got.text);

    // Each round: the PATCH that published it says so, the others were updates of a
    // published product; then one unpublishing, the other PATCHes changed nothing.
    let per_round = CALLERS + 1;
    let mut sub = app.state.bus.subscribe("product-changes", &format!("lost-updates-{t}")).await.expect("subscribing to product-changes");
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    // Read until every expected event is in, then a little longer for any extra one.
    let mut settle_until = None;
    loop {
        let now = std::time::Instant::now();
        let until = settle_until.unwrap_or(deadline);
        if now >= until {
            break;
        }
        match actix_web::rt::time::timeout(until - now, sub.next()).await {
            Err(_) => break,
            Ok(Err(e)) => {
                eprintln!("product-changes subscription: {e}");
                actix_web::rt::time::sleep(Duration::from_millis(200)).await;
            }
            Ok(Ok(delivery)) => {
                let event = hissaback_topics::decode::<ProductChanged>(&delivery.payload).expect("a ProductChanged event");
                match event.change {
                    ContentChange::ProductPublished { product_id } | ContentChange::ProductUpdated { product_id } | ContentChange::ProductUnpublished { product_id }
                        if product_id == id =>
                    {
                        seen.push(event.change);
                        if seen.len() == ROUNDS * per_round {
                            settle_until = Some(std::time::Instant::now() + Duration::from_secs(2));
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    let count = |events: &[ContentChange]| {
        let mut n = BTreeMap::new();
        for e in events {
            let kind = match e {
                ContentChange::ProductPublished { .. } => "published",
                ContentChange::ProductUpdated { .. } => "updated",
                _ => "unpublished",
            };
            *n.entry(kind).or_insert(0) += 1;
        }
        n
    };
    let rounds: Vec<_> = seen.chunks(per_round).map(count).collect();
    let want = BTreeMap::from([("published", 1), ("unpublished", 1), ("updated", CALLERS - 1)]);
    assert_eq!(rounds, vec![want; ROUNDS], "events per round, as published: {seen:?}");
}

#[actix_web::test]
async fn concurrent_campaign_creations_are_all_kept() {
    // Campaigns are never changed once created (no route updates one): concurrent creations
    // must each get a campaign of their own, all read back as created.
    let app = spawn_app().await;
    let t = tag();
    let (_, card, loan) = crate::partner::catalogue(&app, &t).await;
    let p = app.partner(None).await;
    let offers = [card, loan];
    let bodies: Vec<Value> = (0..30).map(|i| json!({"offer_id": offers[i % 2], "share_pct": i + 1, "tenant_id": format!("tenant-{i}")})).collect();
    let created = join_all(bodies.iter().map(|b| post(&app, &p.key, "/v1/campaigns", b.clone()))).await;
    let mut by_id = BTreeMap::new();
    for (b, r) in bodies.iter().zip(&created) {
        assert_eq!(r.status, 201, "{}", r.text);
        let c = &r.body["data"]["campaign"];
        assert_eq!((&c["offer_id"], &c["tenant_id"], &c["share_pct"]), (&b["offer_id"], &b["tenant_id"], &b["share_pct"]), "{}", r.text);
        assert!(by_id.insert(c["campaign_id"].as_u64().unwrap(), b.clone()).is_none(), "a campaign id was handed out twice");
    }
    let stats = app.get_with_key("/v1/stats/campaigns", &p.key).await;
    assert_eq!(stats.status, 200, "{}", stats.text);
    let listed: BTreeMap<u64, (Value, Value)> = stats.body["data"]["campaigns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["campaign_id"].as_u64().unwrap(), (c["offer_id"].clone(), c["tenant_id"].clone())))
        .collect();
    let expected: BTreeMap<u64, (Value, Value)> = by_id.iter().map(|(id, b)| (*id, (b["offer_id"].clone(), b["tenant_id"].clone()))).collect();
    assert_eq!(listed, expected);
    // And links for all of them at once, each naming its own campaign.
    let links = join_all(by_id.keys().map(|id| post(&app, &p.key, "/v1/links", json!({"campaign_id": id})))).await;
    for ((id, b), r) in by_id.iter().zip(&links) {
        assert_eq!(r.status, 201, "{}", r.text);
        let link = &r.body["data"]["link"];
        assert_eq!((&link["campaign_id"], &link["offer_id"]), (&json!(id), &b["offer_id"]), "{}", r.text);
        let raw = link["raw_url"].as_str().unwrap();
        assert!(raw.contains(&format!("t={}", b["tenant_id"].as_str().unwrap())), "{raw}");
    }
}
