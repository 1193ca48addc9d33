//! The seed's webhook payloads: the object of each event (`product`, `blog`, `promotion`),
//! wrapped per webhook with `event`, `webhook_id` and `occurred_at`.

use crate::store::{SharedStore, StoreResult};
use chrono::{DateTime, SecondsFormat, Utc};
use hissaback_topics::events::ContentChange;
use rust_decimal::prelude::ToPrimitive;
use serde_json::{json, Value};

/// `occurred_at` with milliseconds, as the seed shows (`2024-06-07T10:21:15.482Z`).
pub fn occurred_at(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default().to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The body sent to one webhook.
pub fn wrap(event: &str, webhook_id: u64, occurred_at_ms: i64, key: &str, object: &Value) -> String {
    wrap_json(event, webhook_id, occurred_at_ms, key, &object.to_string())
}

/// [`wrap`] of an object already serialised (`object_json`), for an object sent to many
/// webhooks: the same bytes, without serialising the object again for each.
pub fn wrap_json(event: &str, webhook_id: u64, occurred_at_ms: i64, key: &str, object_json: &str) -> String {
    let text = |s: &str| Value::from(s).to_string();
    format!(
        "{{\"event\":{},\"webhook_id\":{webhook_id},\"occurred_at\":{},{}:{object_json}}}",
        text(event),
        text(&occurred_at(occurred_at_ms)),
        text(key)
    )
}

/// What a change delivers: the webhook event, the payload key, the object, and who may
/// receive it (`None`: every affiliate subscribed, as for catalogue events; `Some(id)`: only
/// that affiliate, as for the review of its own blog).
pub struct Outgoing {
    pub event: &'static str,
    pub key: &'static str,
    pub object: Value,
    pub audience: Option<u64>,
}

/// What a change delivers; `None` for changes no webhook event names or whose subject no
/// longer exists.
pub async fn for_change(store: &SharedStore, base_url: &str, change: &ContentChange) -> StoreResult<Option<Outgoing>> {
    let product_event = match change {
        ContentChange::ProductPublished { product_id } => Some(("product.published", *product_id)),
        ContentChange::ProductUpdated { product_id } => Some(("product.updated", *product_id)),
        ContentChange::ProductUnpublished { product_id } => Some(("product.unpublished", *product_id)),
        _ => None,
    };
    if let Some((event, id)) = product_event {
        let Some(p) = store.get_product(id).await? else { return Ok(None) };
        let short_type = p.model_type.rsplit('\\').next().unwrap_or(&p.model_type).to_string();
        let object = json!({
            "id": p.id,
            "title": p.title,
            "description": p.description,
            "image_url": p.image,
            "type": short_type,
            "published": p.published,
            "price": { "amount": p.price_usd.to_f64().unwrap_or_default(), "currency": "USD" },
            "teachers": p.teachers.iter().map(|t| json!({"id": t.id, "name": t.name})).collect::<Vec<_>>(),
        });
        return Ok(Some(Outgoing { event, key: "product", object, audience: None }));
    }
    match change {
        ContentChange::BlogPublished { blog_id } | ContentChange::BlogUnpublished { blog_id, .. } => {
            let Some(b) = store.get_blog_by_id(*blog_id).await? else { return Ok(None) };
            let profile = store.blog_profiles(b.affiliate_id).await?.into_iter().find(|p| p.id == b.profile_id);
            let author = store.get_affiliate(b.affiliate_id).await?.and_then(|a| a.user);
            let mut object = json!({
                "id": b.id,
                "title": b.title,
                "slug": b.slug,
                "url": format!("{base_url}/blog/{}", b.slug),
                "published": b.published,
            });
            let event = if let ContentChange::BlogUnpublished { reason, .. } = change {
                object["unpublished_reason"] = json!(b.unpublished_reason.clone().unwrap_or_else(|| reason.clone()));
                "blog.unpublished"
            } else {
                "blog.published"
            };
            object["updated_at"] = json!(crate::json::format_time(&b.updated_at));
            object["profile"] = profile.map(|p| json!({"id": p.id, "name": p.name, "identifier": p.identifier})).unwrap_or(Value::Null);
            object["author"] = author.map(|u| json!({"id": u.id, "name": u.name, "email": u.email})).unwrap_or(Value::Null);
            Ok(Some(Outgoing { event, key: "blog", object, audience: Some(b.affiliate_id) }))
        }
        ContentChange::PromotionCreated { promotion_id } => {
            let Some(p) = store.promotions().await?.into_iter().find(|p| p.id == *promotion_id) else { return Ok(None) };
            let object = json!({
                "id": p.id,
                "title": p.title,
                "text": p.text,
                "ends_at": p.ends_at.map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true)),
                "type": p.promotion_type,
                "details": { "percentage_off": crate::json::number(p.percentage_off) },
            });
            Ok(Some(Outgoing { event: "promotion.created", key: "promotion", object, audience: None }))
        }
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_envelope_is_the_event_the_webhook_the_time_then_the_object() {
        let object = json!({"id": 7, "title": "A \"quoted\" title", "price": {"amount": 215.49, "currency": "USD"}});
        let body = wrap("product.updated", 12, 1_717_755_675_482, "product", &object);
        let mut expected = json!({"event": "product.updated", "webhook_id": 12, "occurred_at": "2024-06-07T10:21:15.482Z"});
        expected["product"] = object.clone();
        assert_eq!(body, expected.to_string());
        assert_eq!(body, wrap_json("product.updated", 12, 1_717_755_675_482, "product", &object.to_string()));
    }
}
