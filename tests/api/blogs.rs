//! Blog profiles and blogs (seed "Blog Profiles" and "Blogs") and the admin review of blogs
//! (DESIGN "Admin API": publish, unpublish with a reason): every status and message, the
//! no-script rule through the API, slug uniqueness, the update rules, and the
//! `ProductChanged` events a review puts on the bus.
//!
//! Identifiers, slugs and titles are global to a deployment, and the real-backend run shares
//! one keyspace between tests: each carries a per-test suffix from [`tag`].

use crate::helpers::{spawn_app, Answer, Partner, TestApp};
use hissaback_topics::events::{ContentChange, ProductChanged};
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;

pub fn tag() -> String {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("t{}{n}", t % 1_000_000_000)
}

async fn call(app: &TestApp, method: Method, path: &str, key: &str, body: Option<Value>) -> Answer {
    let mut req = app.client.request(method, app.url(&format!("/api/v1{path}"))).bearer_auth(key);
    if let Some(b) = body {
        req = req.json(&b);
    }
    app.send(req).await
}

pub async fn post(app: &TestApp, path: &str, key: &str, body: Value) -> Answer {
    call(app, Method::POST, path, key, Some(body)).await
}

/// An affiliate approved for blog management, with a key holding every scope.
pub async fn blogger(app: &TestApp) -> Partner {
    let p = app.partner(None).await;
    let a = app.patch_affiliate(p.affiliate_id, json!({"blog_approved": true})).await;
    assert_eq!(a.status, 200, "{}", a.text);
    p
}

/// A new listed category; returns its slug.
async fn category(app: &TestApp) -> String {
    let slug = format!("low-level-programming-{}", tag());
    let c = app.admin(Method::POST, "/categories", Some(json!({"name": "Low-level programming", "slug": slug}))).await;
    assert_eq!(c.status, 201, "{}", c.text);
    slug
}

/// A new profile of the key's affiliate; returns its id.
async fn profile(app: &TestApp, key: &str) -> u64 {
    let identifier = format!("affiliate-blog-{}", tag());
    let r = post(app, "/blog-profiles", key, json!({"name": "My Affiliate Blog", "identifier": identifier})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.body["data"]["profile"]["id"].as_u64().unwrap()
}

/// A blog ready to be created by `p`: a fresh category and profile, a unique title.
pub async fn blog_body(app: &TestApp, p: &Partner) -> Value {
    json!({
        "title": format!("Spring Updates {}", tag()),
        "content": "<p>Latest platform news...</p>",
        "category_slug": category(app).await,
        "blog_profile_id": profile(app, &p.key).await,
    })
}

pub async fn create_blog(app: &TestApp, p: &Partner) -> Value {
    let r = post(app, "/blogs", &p.key, blog_body(app, p).await).await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.body["data"]["blog"].clone()
}

fn errors(a: &Answer, field: &str) -> Vec<String> {
    a.body["errors"][field]
        .as_array()
        .unwrap_or_else(|| panic!("errors.{field} in {}", a.text))
        .iter()
        .map(|m| m.as_str().unwrap().to_string())
        .collect()
}

/// Asserts a 422 naming `field` with exactly `message`.
fn assert_field(a: &Answer, field: &str, message: &str) {
    a.assert_invalid(field);
    assert_eq!(errors(a, field), vec![message.to_string()], "{}", a.text);
}

#[actix_web::test]
async fn profiles_are_created_and_listed_per_affiliate() {
    let app = spawn_app().await;
    let p = app.partner(Some(&["blogs.accounts.manage"])).await;
    let t = tag();
    let empty = app.get_with_key("/api/v1/blog-profiles", &p.key).await;
    assert_eq!(empty.status, 200, "{}", empty.text);
    assert_eq!(empty.body, json!({"success": true, "data": {"profiles": []}}));

    let r = post(&app, "/blog-profiles", &p.key, json!({"name": "  My Affiliate Blog ", "identifier": format!("affiliate-blog-{t}")})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.body["data"]["profile"]["id"].as_u64().expect("a numeric id");
    assert!(id > 0);
    assert_eq!(
        r.body,
        json!({"success": true, "data": {"profile": {"id": id, "name": "My Affiliate Blog", "identifier": format!("affiliate-blog-{t}")}}})
    );
    let second = post(&app, "/blog-profiles", &p.key, json!({"name": "Second", "identifier": format!("second_{t}")})).await;
    assert_eq!(second.status, 201, "{}", second.text);
    let second_id = second.body["data"]["profile"]["id"].as_u64().unwrap();

    let list = app.get_with_key("/api/v1/blog-profiles", &p.key).await;
    assert_eq!(list.status, 200, "{}", list.text);
    assert_eq!(
        list.body,
        json!({"success": true, "data": {"profiles": [
            {"id": id, "name": "My Affiliate Blog", "identifier": format!("affiliate-blog-{t}")},
            {"id": second_id, "name": "Second", "identifier": format!("second_{t}")},
        ]}})
    );
    // Another affiliate sees none of them.
    let other = app.partner(Some(&["blogs.accounts.manage"])).await;
    let theirs = app.get_with_key("/api/v1/blog-profiles", &other.key).await;
    assert_eq!(theirs.body["data"]["profiles"], json!([]));
}

#[actix_web::test]
async fn profile_fields_are_validated_and_identifiers_unique_across_the_system() {
    let app = spawn_app().await;
    let p = app.partner(Some(&["blogs.accounts.manage"])).await;
    let t = tag();

    let missing = post(&app, "/blog-profiles", &p.key, json!({})).await;
    assert_field(&missing, "name", "The name field is required.");
    assert_field(&missing, "identifier", "The identifier field is required.");
    let blank = post(&app, "/blog-profiles", &p.key, json!({"name": "  ", "identifier": " "})).await;
    assert_field(&blank, "name", "The name field is required.");
    assert_field(&blank, "identifier", "The identifier field is required.");

    let long = post(&app, "/blog-profiles", &p.key, json!({"name": "n".repeat(256), "identifier": "i".repeat(256)})).await;
    assert_field(&long, "name", "The name field must not be greater than 255 characters.");
    assert_field(&long, "identifier", "The identifier field must not be greater than 255 characters.");
    let at_max = post(&app, "/blog-profiles", &p.key, json!({"name": "n".repeat(255), "identifier": format!("{t}{}", "i".repeat(255 - t.len()))})).await;
    assert_eq!(at_max.status, 201, "{}", at_max.text);

    for bad in [format!("Affiliate-{t}"), format!("my blog {t}"), format!("blog.{t}"), format!("blög-{t}")] {
        let r = post(&app, "/blog-profiles", &p.key, json!({"name": "Blog", "identifier": bad})).await;
        assert_field(&r, "identifier", "The identifier field must only contain lowercase letters, numbers, dashes and underscores.");
    }

    let identifier = format!("taken-{t}");
    let first = post(&app, "/blog-profiles", &p.key, json!({"name": "Mine", "identifier": identifier})).await;
    assert_eq!(first.status, 201, "{}", first.text);
    let other = app.partner(Some(&["blogs.accounts.manage"])).await;
    for key in [&other.key, &p.key] {
        let dup = post(&app, "/blog-profiles", key, json!({"name": "Theirs", "identifier": identifier})).await;
        assert_field(&dup, "identifier", "The identifier has already been taken.");
    }
    assert_eq!(app.get_with_key("/api/v1/blog-profiles", &other.key).await.body["data"]["profiles"], json!([]));
    let mine = app.get_with_key("/api/v1/blog-profiles", &p.key).await;
    assert_eq!(mine.body["data"]["profiles"].as_array().unwrap().len(), 2, "{}", mine.text);
}

#[actix_web::test]
async fn each_call_needs_its_scope_and_a_key() {
    let app = spawn_app().await;
    let p = blogger(&app).await;
    let body = blog_body(&app, &p).await;
    let blog_id = create_blog(&app, &p).await["id"].as_u64().unwrap();
    let no_accounts = app.create_key(p.affiliate_id, json!({"scopes": ["blogs.manage"]})).await;
    let no_accounts = no_accounts.body["data"]["key"]["key"].as_str().unwrap().to_string();
    let no_blogs = app.create_key(p.affiliate_id, json!({"scopes": ["blogs.accounts.manage"]})).await;
    let no_blogs = no_blogs.body["data"]["key"]["key"].as_str().unwrap().to_string();

    app.get_with_key("/api/v1/blog-profiles", &no_accounts).await.assert_error(403, "Insufficient scope.", "insufficient_scope");
    post(&app, "/blog-profiles", &no_accounts, json!({"name": "x", "identifier": tag()}))
        .await
        .assert_error(403, "Insufficient scope.", "insufficient_scope");
    post(&app, "/blogs", &no_blogs, body.clone()).await.assert_error(403, "Insufficient scope.", "insufficient_scope");
    for method in [Method::PUT, Method::PATCH] {
        call(&app, method, &format!("/blogs/{blog_id}"), &no_blogs, Some(json!({"title": "x"})))
            .await
            .assert_error(403, "Insufficient scope.", "insufficient_scope");
    }
    // The scope is checked before the body is read.
    post(&app, "/blogs", &no_blogs, json!({})).await.assert_error(403, "Insufficient scope.", "insufficient_scope");
    post(&app, "/blog-profiles", &no_accounts, json!({})).await.assert_error(403, "Insufficient scope.", "insufficient_scope");

    // No key at all: 401 before anything else, whatever the body.
    let anonymous = app.send(app.client.post(app.url("/api/v1/blogs")).json(&json!({}))).await;
    anonymous.assert_error(401, "API key is missing.", "unauthenticated");
    let anonymous = app.send(app.client.post(app.url("/api/v1/blog-profiles")).json(&json!({}))).await;
    anonymous.assert_error(401, "API key is missing.", "unauthenticated");
    let anonymous = app.send(app.client.patch(app.url(&format!("/api/v1/blogs/{blog_id}"))).json(&json!({}))).await;
    anonymous.assert_error(401, "API key is missing.", "unauthenticated");
    app.get("/api/v1/blog-profiles").await.assert_error(401, "API key is missing.", "unauthenticated");
}

#[actix_web::test]
async fn creating_a_blog_answers_a_draft_with_a_slug_from_the_title() {
    let app = spawn_app().await;
    let p = blogger(&app).await;
    let t = tag();
    let category = category(&app).await;
    let profile_id = profile(&app, &p.key).await;
    let content = r#"<p>Latest <strong>platform</strong> news...</p><ul><li><a href="https://example.com/a">one</a></li></ul><img src="https://cdn.example.com/x.png" alt="x">"#;
    let r = post(
        &app,
        "/blogs",
        &p.key,
        json!({"title": format!("  Spring Updates {t} "), "content": content, "category_slug": category, "blog_profile_id": profile_id}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.body["data"]["blog"]["id"].as_u64().expect("a numeric id");
    assert_eq!(
        r.body,
        json!({"success": true, "data": {"blog": {"id": id, "title": format!("Spring Updates {t}"), "slug": format!("spring-updates-{t}"), "published": false}}})
    );

    let shown = app.admin(Method::GET, &format!("/blogs/{id}"), None).await;
    assert_eq!(shown.status, 200, "{}", shown.text);
    let blog = &shown.body["data"]["blog"];
    assert_eq!(blog["content"], content);
    assert_eq!(blog["category_slug"], json!(category));
    assert_eq!(blog["profile_id"], json!(profile_id));
    assert_eq!(blog["affiliate_id"], json!(p.affiliate_id));
    let affiliate = app.admin(Method::GET, &format!("/affiliates/{}", p.affiliate_id), None).await;
    assert_eq!(blog["author_user_id"], affiliate.body["data"]["affiliate"]["user"]["id"]);
    assert_eq!(blog["published"], false);
    assert_eq!(blog["unpublished_reason"], Value::Null);
    assert!(blog["created_at"].as_str().is_some_and(|s| s.ends_with('Z')), "{blog}");
    assert_eq!(blog["created_at"], blog["updated_at"]);
}

#[actix_web::test]
async fn blog_management_needs_approval() {
    let app = spawn_app().await;
    let p = app.partner(None).await;
    let body = blog_body(&app, &p).await;
    for b in [body.clone(), json!({})] {
        post(&app, "/blogs", &p.key, b).await.assert_error(403, "Blog management scopes require approval.", "approval_required");
    }
    for method in [Method::PUT, Method::PATCH] {
        call(&app, method, "/blogs/1", &p.key, Some(json!({"title": "x"})))
            .await
            .assert_error(403, "Blog management scopes require approval.", "approval_required");
    }
    // Profiles are not approval-gated.
    assert_eq!(app.get_with_key("/api/v1/blog-profiles", &p.key).await.status, 200);

    let a = app.patch_affiliate(p.affiliate_id, json!({"blog_approved": true})).await;
    assert_eq!(a.status, 200, "{}", a.text);
    let r = post(&app, "/blogs", &p.key, body).await;
    assert_eq!(r.status, 201, "{}", r.text);

    // Withdrawing the approval closes the door again, updates included.
    let id = r.body["data"]["blog"]["id"].as_u64().unwrap();
    app.patch_affiliate(p.affiliate_id, json!({"blog_approved": false})).await;
    call(&app, Method::PATCH, &format!("/blogs/{id}"), &p.key, Some(json!({"title": "x"})))
        .await
        .assert_error(403, "Blog management scopes require approval.", "approval_required");
}

#[actix_web::test]
async fn an_affiliate_without_a_user_cannot_write_blogs() {
    let app = spawn_app().await;
    let p = blogger(&app).await;
    let body = blog_body(&app, &p).await;
    let id = create_blog(&app, &p).await["id"].as_u64().unwrap();
    let a = app.patch_affiliate(p.affiliate_id, json!({"user": null})).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.body["data"]["affiliate"]["user"], Value::Null);

    let r = post(&app, "/blogs", &p.key, body).await;
    r.assert_error(422, "Affiliate user account is unavailable.", "validation_failed");
    assert_eq!(errors(&r, "user"), vec!["Affiliate user account is unavailable."]);
    for method in [Method::PUT, Method::PATCH] {
        call(&app, method, &format!("/blogs/{id}"), &p.key, Some(json!({"title": "New"})))
            .await
            .assert_error(422, "Affiliate user account is unavailable.", "validation_failed");
    }
}

#[actix_web::test]
async fn blog_fields_are_validated() {
    let app = spawn_app().await;
    let p = blogger(&app).await;
    let good = blog_body(&app, &p).await;
    let with = |field: &str, value: Value| {
        let mut b = good.clone();
        b[field] = value;
        b
    };

    let missing = post(&app, "/blogs", &p.key, json!({})).await;
    assert_field(&missing, "title", "The title field is required.");
    assert_field(&missing, "content", "The content field is required.");
    assert_field(&missing, "category_slug", "The category slug field is required.");
    assert_field(&missing, "blog_profile_id", "The blog profile id field is required.");
    assert_eq!(missing.body["errors"].as_object().unwrap().len(), 4, "{}", missing.text);

    let blank = post(&app, "/blogs", &p.key, with("title", json!("   "))).await;
    assert_field(&blank, "title", "The title field is required.");
    let long = post(&app, "/blogs", &p.key, with("title", json!("t".repeat(256)))).await;
    assert_field(&long, "title", "The title field must not be greater than 255 characters.");
    let empty_content = post(&app, "/blogs", &p.key, with("content", json!(" "))).await;
    assert_field(&empty_content, "content", "The content field is required.");
    let wrong_type = post(&app, "/blogs", &p.key, with("blog_profile_id", json!("12"))).await;
    wrong_type.assert_invalid("blog_profile_id");
    let negative = post(&app, "/blogs", &p.key, with("blog_profile_id", json!(-1))).await;
    negative.assert_invalid("blog_profile_id");

    let unknown = post(&app, "/blogs", &p.key, with("category_slug", json!(format!("no-such-category-{}", tag())))).await;
    assert_field(&unknown, "category_slug", "The selected category slug is invalid.");
    // A category affiliates cannot see is no category for a blog either.
    let hidden = format!("hidden-{}", tag());
    let c = app.admin(Method::POST, "/categories", Some(json!({"name": "Hidden", "slug": hidden, "active": false}))).await;
    assert_eq!(c.status, 201, "{}", c.text);
    let inactive = post(&app, "/blogs", &p.key, with("category_slug", json!(hidden))).await;
    assert_field(&inactive, "category_slug", "The selected category slug is invalid.");
    let gone = format!("gone-{}", tag());
    let c = app.admin(Method::POST, "/categories", Some(json!({"name": "Gone", "slug": gone}))).await;
    let gone_id = c.body["data"]["category"]["id"].as_u64().unwrap();
    assert_eq!(app.admin(Method::DELETE, &format!("/categories/{gone_id}"), None).await.status, 200);
    let deleted = post(&app, "/blogs", &p.key, with("category_slug", json!(gone))).await;
    assert_field(&deleted, "category_slug", "The selected category slug is invalid.");

    let other = blogger(&app).await;
    let theirs = profile(&app, &other.key).await;
    let foreign = post(&app, "/blogs", &p.key, with("blog_profile_id", json!(theirs))).await;
    assert_field(&foreign, "blog_profile_id", "The selected blog profile id is invalid.");
    let nonexistent = post(&app, "/blogs", &p.key, with("blog_profile_id", json!(u32::MAX))).await;
    assert_field(&nonexistent, "blog_profile_id", "The selected blog profile id is invalid.");
    // Both references wrong: both named in one answer.
    let mut both = with("blog_profile_id", json!(theirs));
    both["category_slug"] = json!("missing");
    let both = post(&app, "/blogs", &p.key, both).await;
    assert_field(&both, "category_slug", "The selected category slug is invalid.");
    assert_field(&both, "blog_profile_id", "The selected blog profile id is invalid.");
}

#[actix_web::test]
async fn content_with_script_is_refused_and_rich_text_accepted() {
    let app = spawn_app().await;
    let p = blogger(&app).await;
    let good = blog_body(&app, &p).await;
    let variants = [
        "<p>Hi</p><script>alert(1)</script>",
        "<ScRiPt>alert(1)</sCrIpT>",
        "<img src=x onerror=alert(1)>",
        "<svg onload=alert(1)>",
        "<p ONCLICK=\"alert(1)\">x</p>",
        r#"<a href="JaVaScRiPt:alert(1)">x</a>"#,
        r#"<a href="&#106;avascript:alert(1)">x</a>"#,
        r#"<a href="&#x6A;avascript:alert(1)">x</a>"#,
        r#"<a href="java&#x09;script:alert(1)">x</a>"#,
        "<a href=\"java\nscript:alert(1)\">x</a>",
        r#"<a href="   javascript:alert(1)">x</a>"#,
        r#"<a href="vbscript:msgbox(1)">x</a>"#,
        r#"<a href="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==">x</a>"#,
        r#"<form action="javascript:alert(1)"><button>go</button></form>"#,
        r#"<iframe src="https://example.com"></iframe>"#,
        r#"<object data="x.swf"></object>"#,
        r#"<embed src="x.swf">"#,
        r#"<div srcdoc="<p>x</p>"></div>"#,
        r#"<p style="width: expression(alert(1))">x</p>"#,
        r#"<p style="background: url('javascript:alert(1)')">x</p>"#,
        r#"<svg><a xlink:href="javascript:alert(1)"><text>x</text></a></svg>"#,
    ];
    for content in variants {
        let mut body = good.clone();
        body["content"] = json!(content);
        let r = post(&app, "/blogs", &p.key, body).await;
        assert_field(&r, "content", "The content field must not contain scripts.");
    }
    let mut body = good.clone();
    body["content"] = json!(concat!(
        r#"<h2>Heading</h2><p>Text with <a href="https://example.com/a?b=1&amp;c=2">a link</a>, "#,
        r#"<strong>bold</strong> and <em>emphasis</em>; the word javascript: in prose.</p>"#,
        r#"<img src="https://cdn.example.com/x.png" alt="chart"><ol><li>one</li><li>two</li></ol>"#,
        r#"<pre><code>&lt;script&gt;alert(1)&lt;/script&gt;</code></pre>"#,
    ));
    let r = post(&app, "/blogs", &p.key, body).await;
    assert_eq!(r.status, 201, "{}", r.text);
}

#[actix_web::test]
async fn slugs_are_unique_across_the_system() {
    let app = spawn_app().await;
    let p = blogger(&app).await;
    let other = blogger(&app).await;
    let t = tag();
    let mut mine = blog_body(&app, &p).await;
    mine["title"] = json!(format!("Spring Updates {t}"));
    let mut theirs = blog_body(&app, &other).await;
    theirs["title"] = json!(format!("spring updates {t}!"));

    let first = post(&app, "/blogs", &p.key, mine.clone()).await;
    let second = post(&app, "/blogs", &p.key, mine).await;
    let third = post(&app, "/blogs", &other.key, theirs).await;
    let slugs: Vec<&Value> = [&first, &second, &third]
        .iter()
        .map(|r| {
            assert_eq!(r.status, 201, "{}", r.text);
            &r.body["data"]["blog"]["slug"]
        })
        .collect();
    assert_eq!(slugs, vec![&json!(format!("spring-updates-{t}")), &json!(format!("spring-updates-{t}-2")), &json!(format!("spring-updates-{t}-3"))]);

    let mut accents = blog_body(&app, &p).await;
    accents["title"] = json!(format!("Café Crème à Zürich {t}"));
    let r = post(&app, "/blogs", &p.key, accents).await;
    assert_eq!(r.body["data"]["blog"]["slug"], json!(format!("cafe-creme-a-zurich-{t}")), "{}", r.text);

    let mut nothing = blog_body(&app, &p).await;
    nothing["title"] = json!("!!! ???");
    let r = post(&app, "/blogs", &p.key, nothing).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let slug = r.body["data"]["blog"]["slug"].as_str().unwrap();
    assert!(slug == "blog" || slug.strip_prefix("blog-").is_some_and(|n| n.parse::<u64>().is_ok()), "{slug}");
}

#[actix_web::test]
async fn updates_apply_keep_the_slug_and_send_the_blog_back_to_review() {
    let app = spawn_app().await;
    let p = blogger(&app).await;
    let blog = create_blog(&app, &p).await;
    let id = blog["id"].as_u64().unwrap();
    let slug = blog["slug"].clone();
    let path = format!("/blogs/{id}");

    let t = tag();
    let r = call(&app, Method::PATCH, &path, &p.key, Some(json!({"title": format!(" Spring Updates (Revised) {t} "), "content": "<p>Updated highlights...</p>"}))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.body,
        json!({"success": true, "data": {"blog": {"id": id, "title": format!("Spring Updates (Revised) {t}"), "slug": slug, "published": false}}})
    );

    // An admin publishes it; any update sends it back to review.
    let published = app.admin(Method::POST, &format!("/blogs/{id}/publish"), None).await;
    assert_eq!(published.body["data"]["blog"]["published"], true, "{}", published.text);
    let new_category = category(&app).await;
    let new_profile = profile(&app, &p.key).await;
    let r = call(&app, Method::PUT, &path, &p.key, Some(json!({"category_slug": new_category, "blog_profile_id": new_profile}))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["data"]["blog"]["published"], false);
    assert_eq!(r.body["data"]["blog"]["slug"], slug);
    let shown = app.admin(Method::GET, &path, None).await.body["data"]["blog"].clone();
    assert_eq!(shown["title"], json!(format!("Spring Updates (Revised) {t}")));
    assert_eq!(shown["content"], "<p>Updated highlights...</p>");
    assert_eq!(shown["category_slug"], json!(new_category));
    assert_eq!(shown["profile_id"], json!(new_profile));
    assert_eq!(shown["published"], false);
    assert_eq!(shown["slug"], slug);

    // At least one updatable field; a slug is not one.
    for body in [json!({}), json!({"slug": "my-own-slug", "published": true})] {
        let r = call(&app, Method::PATCH, &path, &p.key, Some(body)).await;
        r.assert_invalid("payload");
    }
    let empty = app.send(app.client.put(app.url(&format!("/api/v1{path}"))).bearer_auth(&p.key)).await;
    empty.assert_invalid("payload");

    // The create rules hold for each given field.
    let r = call(&app, Method::PATCH, &path, &p.key, Some(json!({"title": "", "content": "<svg onload=alert(1)>"}))).await;
    assert_field(&r, "title", "The title field is required.");
    assert_field(&r, "content", "The content field must not contain scripts.");
    let r = call(&app, Method::PATCH, &path, &p.key, Some(json!({"title": "t".repeat(256)}))).await;
    assert_field(&r, "title", "The title field must not be greater than 255 characters.");
    let other = blogger(&app).await;
    let theirs = profile(&app, &other.key).await;
    let r = call(&app, Method::PUT, &path, &p.key, Some(json!({"blog_profile_id": theirs, "category_slug": "missing"}))).await;
    assert_field(&r, "blog_profile_id", "The selected blog profile id is invalid.");
    assert_field(&r, "category_slug", "The selected category slug is invalid.");
    assert_eq!(app.admin(Method::GET, &path, None).await.body["data"]["blog"]["profile_id"], json!(new_profile));

    // Another affiliate's blog, an unknown one and a non-numeric id are all not found.
    for method in [Method::PUT, Method::PATCH] {
        for path in [path.clone(), format!("/blogs/{}", u32::MAX), "/blogs/abc".to_string()] {
            let r = call(&app, method.clone(), &path, &other.key, Some(json!({"title": "Hijacked"}))).await;
            r.assert_error(404, "Blog not found.", "not_found");
        }
    }
    assert_eq!(app.admin(Method::GET, &path, None).await.body["data"]["blog"]["title"], json!(format!("Spring Updates (Revised) {t}")));
}

#[actix_web::test]
async fn admins_publish_and_unpublish_with_a_reason() {
    let app = spawn_app().await;
    let p = blogger(&app).await;
    let id = create_blog(&app, &p).await["id"].as_u64().unwrap();

    let r = app.admin(Method::POST, &format!("/blogs/{id}/publish"), None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["data"]["blog"]["published"], true);
    assert_eq!(r.body["data"]["blog"]["unpublished_reason"], Value::Null);
    assert_eq!(r.body["data"]["blog"]["id"], json!(id));

    for body in [None, Some(json!({})), Some(json!({"reason": "  "}))] {
        let r = app.admin(Method::POST, &format!("/blogs/{id}/unpublish"), body).await;
        assert_field(&r, "reason", "The reason field is required.");
    }
    let r = app.admin(Method::POST, &format!("/blogs/{id}/unpublish"), Some(json!({"reason": "r".repeat(1001)}))).await;
    assert_field(&r, "reason", "The reason field must not be greater than 1000 characters.");
    assert_eq!(app.admin(Method::GET, &format!("/blogs/{id}"), None).await.body["data"]["blog"]["published"], true);

    let r = app.admin(Method::POST, &format!("/blogs/{id}/unpublish"), Some(json!({"reason": " Links to a competitor. "}))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["data"]["blog"]["published"], false);
    assert_eq!(r.body["data"]["blog"]["unpublished_reason"], "Links to a competitor.");
    let shown = app.admin(Method::GET, &format!("/blogs/{id}"), None).await;
    assert_eq!(shown.body["data"]["blog"]["unpublished_reason"], "Links to a competitor.");
    // The affiliate's next read of the blog state agrees: a new publish clears the reason.
    let r = app.admin(Method::POST, &format!("/blogs/{id}/publish"), None).await;
    assert_eq!(r.body["data"]["blog"]["published"], true);
    assert_eq!(r.body["data"]["blog"]["unpublished_reason"], Value::Null);

    let unknown = u32::MAX;
    app.admin(Method::GET, &format!("/blogs/{unknown}"), None).await.assert_error(404, "Blog not found.", "not_found");
    app.admin(Method::POST, &format!("/blogs/{unknown}/publish"), None).await.assert_error(404, "Blog not found.", "not_found");
    app.admin(Method::POST, &format!("/blogs/{unknown}/unpublish"), Some(json!({"reason": "x"})))
        .await
        .assert_error(404, "Blog not found.", "not_found");

    // The admin token is needed; an affiliate key is not one.
    for token in [None, Some(p.key.as_str())] {
        let mut req = app.client.post(app.url(&format!("/admin/v1/blogs/{id}/publish")));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        app.send(req).await.assert_failure(401, "unauthenticated");
    }
}

#[actix_web::test]
async fn reviews_put_product_changed_events_on_the_bus() {
    let app = spawn_app().await;
    let p = blogger(&app).await;
    let id = create_blog(&app, &p).await["id"].as_u64().unwrap();
    assert_eq!(app.admin(Method::POST, &format!("/blogs/{id}/publish"), None).await.status, 200);
    let r = app.admin(Method::POST, &format!("/blogs/{id}/unpublish"), Some(json!({"reason": "Outdated prices."}))).await;
    assert_eq!(r.status, 200, "{}", r.text);

    // A new group reads the topic from its beginning; other entities' events are skipped.
    let key = format!("blog:{id}");
    let mut sub = app.state.bus.subscribe("product-changes", &format!("blogs-test-{}", tag())).await.expect("subscribed");
    let mut seen = Vec::new();
    let read = async {
        while seen.len() < 2 {
            let delivery = sub.next().await.expect("a delivery");
            if delivery.key == key {
                seen.push(hissaback_topics::decode::<ProductChanged>(&delivery.payload).expect("a ProductChanged event"));
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), read).await.expect("both review events within 60 s");
    assert_eq!(seen[0].change, ContentChange::BlogPublished { blog_id: id });
    assert_eq!(seen[1].change, ContentChange::BlogUnpublished { blog_id: id, reason: "Outdated prices.".into() });
    let now = chrono::Utc::now().timestamp_millis();
    for event in &seen {
        assert!((now - 120_000..=now).contains(&event.occurred_at_ms), "{event:?}");
    }
}

#[actix_web::test]
async fn the_openapi_document_lists_the_blog_calls() {
    let app = spawn_app().await;
    let doc = app.get("/openapi.json").await.body;
    for (path, methods) in [
        ("/api/v1/blog-profiles", &["get", "post"][..]),
        ("/api/v1/blogs", &["post"][..]),
        ("/api/v1/blogs/{blog}", &["put", "patch"][..]),
        ("/admin/v1/blogs/{id}", &["get"][..]),
        ("/admin/v1/blogs/{id}/publish", &["post"][..]),
        ("/admin/v1/blogs/{id}/unpublish", &["post"][..]),
    ] {
        for m in methods {
            assert!(doc["paths"][path][m].is_object(), "{m} {path} missing from the OpenAPI document");
        }
    }
}
