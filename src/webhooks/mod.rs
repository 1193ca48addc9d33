//! Webhooks: what they may subscribe to, how deliveries are signed, the payloads of each
//! event, and the delivery engine.
//!
//! Flow (each step durable before the previous one is acknowledged; consumers take batches,
//! a partition's slice at a time):
//!
//! ```text
//! product-changes ──▶ fanout (group webhook-fanout): payload per subscribed webhook
//!                       └─▶ topic webhook-jobs (every job of the slice, one publish) ─ commit
//! webhook-jobs ──▶ intake (group webhook-dispatch): new delivery rows (pending), one read
//!                  and one write per slice; repeats dropped ─▶ dispatcher queue ─ commit
//! dispatcher actor: due deliveries, at most `max_concurrency` in flight and
//!   `per_endpoint_concurrency` per webhook, POST with the seed's and the Standard Webhooks
//!   headers, retries on the schedule with jitter, failed after the last attempt, endpoint
//!   disabled after failing for `disable_after_hours`; finished attempts written in batches
//!   before a retry is queued; pending deliveries are reloaded from the store at start.
//! ```

pub mod dispatcher;
pub mod fanout;
pub mod guard;
pub mod payloads;
pub mod sender;

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

pub use dispatcher::WebhookDispatcher;

/// The events of the Affiliate API (`/api/v1/webhooks`), in the seed's order.
pub const AFFILIATE_EVENTS: [&str; 6] =
    ["product.published", "product.updated", "product.unpublished", "blog.published", "blog.unpublished", "promotion.created"];

/// The events of the partner API (`/v1/webhooks`): the same plus the reward events.
pub const PARTNER_EVENTS: [&str; 10] = [
    "product.published",
    "product.updated",
    "product.unpublished",
    "blog.published",
    "blog.unpublished",
    "promotion.created",
    "reward.queued",
    "reward.paid",
    "reward.rejected",
    "reward.reversed",
];

/// `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">` (Standard Webhooks), keyed with the
/// webhook's secret as bytes.
pub fn signature(secret: &str, id: &str, timestamp: i64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()))
}

/// A new 64-character secret.
pub fn new_secret() -> String {
    use rand::distr::{Alphanumeric, SampleString};
    Alphanumeric.sample_string(&mut rand::rng(), 64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_follow_standard_webhooks() {
        // Same inputs, same signature; any change to id, time or body changes it.
        let s = signature("secret", "msg_1", 1_700_000_000, "{}");
        assert!(s.starts_with("v1,"));
        assert_eq!(s, signature("secret", "msg_1", 1_700_000_000, "{}"));
        assert_ne!(s, signature("secret", "msg_2", 1_700_000_000, "{}"));
        assert_ne!(s, signature("secret", "msg_1", 1_700_000_001, "{}"));
        assert_ne!(s, signature("secret", "msg_1", 1_700_000_000, "{ }"));
        assert_ne!(s, signature("other", "msg_1", 1_700_000_000, "{}"));
        assert_eq!(new_secret().len(), 64);
    }
}
