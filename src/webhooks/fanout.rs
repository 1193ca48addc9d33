//! Fan-out: each `product-changes` event that a webhook event names becomes one job per
//! subscribed, enabled webhook on `webhook-jobs` (blog reviews: the author's webhooks only).
//! Job ids derive from the source message's position, so a redelivered event produces the
//! same jobs and the intake drops repeats.
//!
//! A partition's slice is fanned out as a whole: each webhook event's subscribers are read
//! once per slice, each distinct change's payload once (it is read from the store as it is
//! now, so two events of one slice for the same product carry the same object anyway), and
//! every job of the slice is published with one `publish_events` (one group commit).

use super::payloads::{self, Outgoing};
use crate::store::{SharedStore, WebhookRecord};
use async_trait::async_trait;
use hissaback_actors::consumer::BatchHandler;
use hissaback_topics::bus::publish_events;
use hissaback_topics::events::{ProductChanged, WebhookJob};
use hissaback_topics::{Delivery, SharedBus};
use std::collections::HashMap;

pub struct WebhookFanOut {
    pub store: SharedStore,
    pub bus: SharedBus,
    pub base_url: String,
}

#[async_trait]
impl BatchHandler for WebhookFanOut {
    type Event = ProductChanged;

    async fn handle_batch(&self, batch: Vec<(ProductChanged, Delivery)>) -> anyhow::Result<()> {
        // Per slice: what each distinct change delivers, and who subscribes to each event.
        let mut outgoing: HashMap<String, Option<(Outgoing, String)>> = HashMap::new();
        let mut subscribers: HashMap<&'static str, Vec<WebhookRecord>> = HashMap::new();
        let mut jobs = Vec::new();
        for (event, delivery) in batch {
            let change = format!("{:?}", event.change);
            if !outgoing.contains_key(&change) {
                let out = payloads::for_change(&self.store, &self.base_url, &event.change).await?;
                outgoing.insert(change.clone(), out.map(|o| {
                    let json = o.object.to_string();
                    (o, json)
                }));
            }
            let Some((out, object_json)) = &outgoing[&change] else { continue };
            if !subscribers.contains_key(out.event) {
                subscribers.insert(out.event, self.store.webhooks_for_event(out.event).await?);
            }
            for webhook in &subscribers[out.event] {
                // A blog's review goes to its author only; catalogue events to every subscriber.
                if webhook.disabled_at.is_some() || out.audience.is_some_and(|a| a != webhook.affiliate_id) {
                    continue;
                }
                jobs.push(WebhookJob {
                    job_id: format!("{}:{}:{}:{}", delivery.topic, delivery.partition, delivery.offset, webhook.id),
                    webhook_id: webhook.id,
                    affiliate_id: webhook.affiliate_id,
                    event: out.event.to_string(),
                    payload_json: payloads::wrap_json(out.event, webhook.id, event.occurred_at_ms, out.key, object_json),
                    occurred_at_ms: event.occurred_at_ms,
                });
            }
        }
        publish_events(self.bus.as_ref(), &jobs).await?;
        Ok(())
    }
}
