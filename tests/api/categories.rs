//! `GET /api/v1/categories` (seed "Categories") and the admin category calls: listing
//! rules, ordering, soft delete, slug validation, and 403 "Insufficient scope.".

use crate::helpers::spawn_app;
use reqwest::Method;
use serde_json::{json, Value};

/// Categories are global to a deployment, and the real-backend run shares one keyspace
/// between tests: every slug here carries a per-test suffix, and listings are read back
/// filtered to this test's own categories.
fn tag() -> String {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("t{}{n}", t % 1_000_000_000)
}

fn own(list: &Value, tag: &str) -> Vec<Value> {
    list.as_array().unwrap().iter().filter(|c| c["slug"].as_str().unwrap().ends_with(tag)).cloned().collect()
}

#[actix_web::test]
async fn lists_only_active_live_categories_with_a_slug_ordered_by_name() {
    let app = spawn_app().await;
    let p = app.partner(Some(&["products.list"])).await;
    let t = tag();
    for body in [
        json!({"name": format!("Development {t}"), "slug": format!("development-{t}")}),
        json!({"name": format!("design {t}"), "slug": format!("design-{t}")}),
        json!({"name": format!("Archived {t}"), "slug": format!("archived-{t}"), "active": false}),
        json!({"name": format!("No Slug {t}")}),
        json!({"name": format!("Blank Slug {t}"), "slug": "   "}),
        json!({"name": format!("Business {t}"), "slug": format!("business-{t}")}),
    ] {
        let a = app.admin(Method::POST, "/categories", Some(body)).await;
        assert_eq!(a.status, 201, "{}", a.text);
    }
    let gone = format!("gone-{t}");
    let deleted = app.admin(Method::POST, "/categories", Some(json!({"name": "Gone", "slug": gone}))).await;
    let gone_id = deleted.body["data"]["category"]["id"].as_u64().unwrap();
    let d = app.admin(Method::DELETE, &format!("/categories/{gone_id}"), None).await;
    assert_eq!(d.status, 200);
    assert!(d.body["data"]["category"]["deleted_at"].is_string());

    let r = app.get_with_key("/api/v1/categories", &p.key).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["success"], true);
    assert_eq!(
        own(&r.body["data"]["categories"], &t),
        vec![
            json!({"name": format!("Business {t}"), "slug": format!("business-{t}")}),
            json!({"name": format!("design {t}"), "slug": format!("design-{t}")}),
            json!({"name": format!("Development {t}"), "slug": format!("development-{t}")}),
        ]
    );
    // Nothing but name and slug, for every listed category.
    for c in r.body["data"]["categories"].as_array().unwrap() {
        assert_eq!(c.as_object().unwrap().len(), 2, "{c}");
        assert!(!c["slug"].as_str().unwrap().trim().is_empty());
    }
    // A deleted category is gone for the admin API too, and its slug is free again.
    assert_eq!(app.admin(Method::DELETE, &format!("/categories/{gone_id}"), None).await.status, 404);
    let again = app.admin(Method::POST, "/categories", Some(json!({"name": "Gone again", "slug": gone}))).await;
    assert_eq!(again.status, 201, "{}", again.text);
}

#[actix_web::test]
async fn a_key_without_products_list_gets_403_insufficient_scope() {
    let app = spawn_app().await;
    let p = app.partner(Some(&["webhooks.manage"])).await;
    let r = app.get_with_key("/api/v1/categories", &p.key).await;
    r.assert_error(403, "Insufficient scope.", "insufficient_scope");
    let none = app.get("/api/v1/categories").await;
    none.assert_error(401, "API key is missing.", "unauthenticated");
}

#[actix_web::test]
async fn slugs_are_validated_and_unique_and_updates_apply() {
    let app = spawn_app().await;
    let bad = app.admin(Method::POST, "/categories", Some(json!({"name": "X", "slug": "Not A Slug"}))).await;
    assert_eq!(bad.status, 422);
    assert!(bad.body["errors"]["slug"].is_array());
    let missing = app.admin(Method::POST, "/categories", Some(json!({"slug": "x"}))).await;
    assert_eq!(missing.status, 422);
    assert_eq!(missing.body["errors"]["name"][0], "The name field is required.");
    let slug = format!("a-{}", tag());
    let first = app.admin(Method::POST, "/categories", Some(json!({"name": "A", "slug": slug}))).await;
    let id = first.body["data"]["category"]["id"].as_u64().unwrap();
    let dup = app.admin(Method::POST, "/categories", Some(json!({"name": "B", "slug": slug}))).await;
    assert_eq!(dup.status, 422);
    assert_eq!(dup.body["errors"]["slug"][0], "The slug has already been taken.");

    let up = app.admin(Method::PATCH, &format!("/categories/{id}"), Some(json!({"name": "Renamed", "active": false}))).await;
    assert_eq!(up.status, 200, "{}", up.text);
    assert_eq!(up.body["data"]["category"]["name"], "Renamed");
    assert_eq!(up.body["data"]["category"]["slug"], json!(slug));
    assert_eq!(up.body["data"]["category"]["active"], false);
    let empty = app.admin(Method::PATCH, &format!("/categories/{id}"), Some(json!({}))).await;
    assert_eq!(empty.status, 422);
    assert!(empty.body["errors"]["payload"].is_array());
    assert_eq!(app.admin(Method::PATCH, "/categories/999999", Some(json!({"name": "x"}))).await.status, 404);
}

/// Concurrent creations (and renames) of one slug: exactly one wins, the others are 422; a
/// deleted or renamed category frees its slug.
#[actix_web::test]
async fn a_slug_is_claimed_once_even_under_concurrency() {
    let app = spawn_app().await;
    let slug = format!("race-{}", crate::partner::tag());
    let create = |n: u32| {
        let app = &app;
        let slug = slug.clone();
        async move { app.admin(Method::POST, "/categories", Some(json!({"name": format!("Race {n}"), "slug": slug}))).await }
    };
    let answers = futures_util::future::join_all((0..8).map(create)).await;
    let won: Vec<&crate::helpers::Answer> = answers.iter().filter(|a| a.status == 201).collect();
    assert_eq!(won.len(), 1, "{:?}", answers.iter().map(|a| a.status).collect::<Vec<_>>());
    for a in answers.iter().filter(|a| a.status != 201) {
        a.assert_invalid("slug");
        assert_eq!(a.body["errors"]["slug"][0], "The slug has already been taken.");
    }
    let winner = won[0].body["data"]["category"]["id"].as_u64().unwrap();
    // Renaming frees the old slug; deleting frees the new one.
    let renamed = format!("{slug}-b");
    let r = app.admin(Method::PATCH, &format!("/categories/{winner}"), Some(json!({"slug": renamed}))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let again = app.admin(Method::POST, "/categories", Some(json!({"name": "Again", "slug": slug}))).await;
    assert_eq!(again.status, 201, "{}", again.text);
    app.admin(Method::POST, "/categories", Some(json!({"name": "Taken", "slug": renamed}))).await.assert_invalid("slug");
    assert_eq!(app.admin(Method::DELETE, &format!("/categories/{winner}"), None).await.status, 200);
    assert_eq!(app.admin(Method::POST, "/categories", Some(json!({"name": "Freed", "slug": renamed}))).await.status, 201);
}
