//! The partner flow set up over HTTP on a running service, as a network's test needs it: a
//! brand and an offer, a network, a partner with a key, a 40% campaign on tenant `t`, a link,
//! and one click per end user `u0`, `u1`, … Shared by the crash and outage tests and the
//! postback benchmark (each includes it with `#[path]`).

use serde_json::{json, Value};

/// What postbacks need: the network's token, the partner's key, one click id per user.
pub struct Flow {
    pub token: String,
    pub key: String,
    pub clicks: Vec<String>,
}

async fn admin(client: &reqwest::Client, base: &str, token: &str, path: &str, body: Value) -> Value {
    let r = client.post(format!("{base}/admin/v1{path}")).bearer_auth(token).json(&body).send().await.unwrap();
    assert!(r.status().is_success(), "{path}: {}", r.status());
    r.json().await.unwrap()
}

async fn partner(client: &reqwest::Client, base: &str, key: &str, path: &str, body: Value) -> Value {
    let r = client.post(format!("{base}/v1{path}")).bearer_auth(key).json(&body).send().await.unwrap();
    assert!(r.status().is_success(), "{path}: {}", r.status());
    r.json().await.unwrap()
}

/// Sets the flow up on the service at `base` with the admin token `admin_token`.
pub async fn set_up(base: &str, admin_token: &str, users: usize) -> Flow {
    let client = reqwest::Client::new();
    let brand = admin(&client, base, admin_token, "/brands", json!({"name": "Brand"})).await["data"]["brand"]["id"].clone();
    let offer = admin(&client, base, admin_token, "/offers", json!({"brand_id": brand, "name": "O", "category": "c", "base_commission": 10, "default_share_pct": 40, "tracking_url": "https://n.example/?c={click_id}"})).await["data"]["offer"]["id"].clone();
    let token = admin(&client, base, admin_token, "/networks", json!({"name": "N"})).await["data"]["network"]["postback_token"].as_str().unwrap().to_string();
    let affiliate = admin(&client, base, admin_token, "/affiliates", json!({"name": "P", "email": "p@example.test"})).await["data"]["affiliate"]["id"].clone();
    let key = admin(&client, base, admin_token, &format!("/affiliates/{affiliate}/keys"), json!({})).await["data"]["key"]["key"].as_str().unwrap().to_string();
    let campaign = partner(&client, base, &key, "/campaigns", json!({"offer_id": offer, "share_pct": 40, "tenant_id": "t"})).await;
    let link = partner(&client, base, &key, "/links", json!({"campaign_id": campaign["data"]["campaign"]["campaign_id"]})).await;
    let code = link["data"]["link"]["code"].as_str().unwrap().to_string();
    let no_redirect = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let mut clicks = Vec::with_capacity(users);
    for u in 0..users {
        let r = no_redirect.get(format!("{base}/r/{code}?uid=u{u}")).send().await.unwrap();
        clicks.push(r.headers()["location"].to_str().unwrap().split("c=").nth(1).unwrap().to_string());
    }
    Flow { token, key, clicks }
}
