//! Fan-out: each `product-changes` event that a webhook event names becomes one job per
//! subscribed, enabled webhook on `webhook-jobs` (blog reviews: the author's webhooks only). Job ids derive from the source message's
//! position, so a redelivered event produces the same jobs and the intake drops repeats.

use super::payloads;
use crate::store::SharedStore;
use async_trait::async_trait;
use hissaback_actors::consumer::EventHandler;
use hissaback_topics::bus::publish_event;
use hissaback_topics::events::{ProductChanged, WebhookJob};
use hissaback_topics::{Delivery, SharedBus};

pub struct WebhookFanOut {
    pub store: SharedStore,
    pub bus: SharedBus,
    pub base_url: String,
}

#[async_trait]
impl EventHandler for WebhookFanOut {
    type Event = ProductChanged;

    async fn handle(&self, event: ProductChanged, delivery: &Delivery) -> anyhow::Result<()> {
        let Some(out) = payloads::for_change(&self.store, &self.base_url, &event.change).await? else {
            return Ok(());
        };
        let (name, key, object) = (out.event, out.key, &out.object);
        for webhook in self.store.webhooks_for_event(name).await? {
            // A blog's review goes to its author only; catalogue events to every subscriber.
            if webhook.disabled_at.is_some() || out.audience.is_some_and(|a| a != webhook.affiliate_id) {
                continue;
            }
            let job = WebhookJob {
                job_id: format!("{}:{}:{}:{}", delivery.topic, delivery.partition, delivery.offset, webhook.id),
                webhook_id: webhook.id,
                affiliate_id: webhook.affiliate_id,
                event: name.to_string(),
                payload_json: payloads::wrap(name, webhook.id, event.occurred_at_ms, key, object),
                occurred_at_ms: event.occurred_at_ms,
            };
            publish_event(self.bus.as_ref(), &job).await?;
        }
        Ok(())
    }
}
