//! The events of every topic, each with the key that keeps one entity's events in order
//! (same key, same partition, consumed in the order produced).

use crate::names::Topic;
use crate::values::Money;
use bincode::{Decode, Encode};

/// An event type: which topic it travels on and its ordering key.
pub trait Event: Encode + Decode<()> + Send + 'static {
    const TOPIC: Topic;
    /// The codec version this type is written with (see [`crate::codec`]): a topic whose
    /// event type changed shape writes a new version and still reads the older ones.
    const VERSION: u8 = 1;
    /// Events with the same key are delivered in the order they were produced.
    fn key(&self) -> String;
    /// Reads a body written with an older `version` of this topic's type.
    fn decode_older(version: u8, _body: &[u8]) -> Result<Self, crate::codec::CodecError> {
        Err(crate::codec::CodecError::UnknownVersion(version))
    }
}

/// A network's reported conversion status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Encode, Decode)]
pub enum PostbackStatus {
    Pending,
    Approved,
    Rejected,
    Reversed,
}

/// A postback as accepted from a network (topic `postbacks`), durable before the HTTP answer.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct PostbackReceived {
    pub network_id: u64,
    pub click_id: String,
    pub txn_id: String,
    pub payout: Money,
    pub status: PostbackStatus,
    pub goal: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub received_at_ms: i64,
}

impl Event for PostbackReceived {
    const TOPIC: Topic = Topic::Postbacks;
    /// One network transaction's postbacks stay in order.
    fn key(&self) -> String {
        format!("{}:{}", self.network_id, self.txn_id)
    }
}

/// A conversion resolved to its campaign (topic `conversions`).
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct ConversionRecorded {
    pub conversion_id: u64,
    pub network_id: u64,
    pub txn_id: String,
    pub click_id: String,
    pub campaign_id: u64,
    pub affiliate_id: u64,
    pub tenant_id: String,
    pub offer_id: u64,
    pub user_id: Option<String>,
    pub payout: Money,
    pub status: PostbackStatus,
    pub occurred_at_ms: i64,
}

/// Everything that changes a conversion (topic `conversions`), keyed by the conversion: the
/// consumer that owns its partition is the conversion's one writer.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub enum ConversionEvent {
    /// A network's postback, resolved to its campaign.
    Recorded(ConversionRecorded),
    /// Payment asked for (admin `POST /rewards/pay`): a queued reward becomes `paying`.
    PaymentRequested { conversion_id: u64, request_id: String, requested_at_ms: i64 },
    /// The payout provider's outcome for `request_id`: `paid` (with the part of the reward
    /// that recovered an earlier clawback of the user), or back to `queued`.
    PaymentSettled { conversion_id: u64, request_id: String, paid: bool, recovered_minor: i64, error: Option<String>, settled_at_ms: i64 },
    /// The end user asked to be forgotten (`DELETE /v1/users/{user_id}`): the conversion
    /// keeps its amounts and postings, its user id becomes `pseudonym`. Added last, so bytes
    /// of the variants before it (version 2) decode unchanged.
    UserErased { conversion_id: u64, pseudonym: String, erased_at_ms: i64 },
}

impl ConversionEvent {
    pub fn conversion_id(&self) -> u64 {
        match self {
            ConversionEvent::Recorded(c) => c.conversion_id,
            ConversionEvent::PaymentRequested { conversion_id, .. }
            | ConversionEvent::PaymentSettled { conversion_id, .. }
            | ConversionEvent::UserErased { conversion_id, .. } => *conversion_id,
        }
    }
}

impl Event for ConversionEvent {
    const TOPIC: Topic = Topic::Conversions;
    /// Version 1 of this topic carried [`ConversionRecorded`] alone.
    const VERSION: u8 = 2;
    fn key(&self) -> String {
        format!("conversion:{}", self.conversion_id())
    }
    fn decode_older(version: u8, body: &[u8]) -> Result<Self, crate::codec::CodecError> {
        match version {
            1 => crate::codec::decode_body::<ConversionRecorded>(body).map(ConversionEvent::Recorded),
            other => Err(crate::codec::CodecError::UnknownVersion(other)),
        }
    }
}

/// One payment to make (topic `payouts`), derived by the conversion's writer when it moved
/// the reward to `paying`; keyed by end user, so one payer handles a user's payments in
/// order and nets what the user owes back.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct PayoutJob {
    pub conversion_id: u64,
    pub request_id: String,
    pub affiliate_id: u64,
    pub tenant_id: String,
    pub user_id: String,
    pub reward: Money,
}

impl Event for PayoutJob {
    const TOPIC: Topic = Topic::Payouts;
    fn key(&self) -> String {
        format!("user:{}:{}:{}", self.affiliate_id, self.tenant_id, self.user_id)
    }
}

/// What changed in the catalogue or content (topic `product-changes`).
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub enum ContentChange {
    ProductPublished { product_id: u64 },
    ProductUpdated { product_id: u64 },
    ProductUnpublished { product_id: u64 },
    BlogPublished { blog_id: u64 },
    BlogUnpublished { blog_id: u64, reason: String },
    PromotionCreated { promotion_id: u64 },
    /// The admin changed the exchange rates (no webhook event; instances refresh prices).
    ExchangeRatesChanged,
    /// The admin changed a category (no webhook event; instances refresh their catalogue).
    CategoryChanged { category_id: u64 },
    /// An offer was created or changed (admin or feed sync).
    OfferChanged { offer_id: u64 },
}

/// A catalogue or content change with its time.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct ProductChanged {
    pub change: ContentChange,
    pub occurred_at_ms: i64,
}

impl Event for ProductChanged {
    const TOPIC: Topic = Topic::ProductChanges;
    /// One product's (or blog's, or promotion's) changes stay in order.
    fn key(&self) -> String {
        match &self.change {
            ContentChange::ProductPublished { product_id }
            | ContentChange::ProductUpdated { product_id }
            | ContentChange::ProductUnpublished { product_id } => format!("product:{product_id}"),
            ContentChange::BlogPublished { blog_id } | ContentChange::BlogUnpublished { blog_id, .. } => {
                format!("blog:{blog_id}")
            }
            ContentChange::PromotionCreated { promotion_id } => format!("promotion:{promotion_id}"),
            ContentChange::ExchangeRatesChanged => "exchange-rates".to_string(),
            ContentChange::CategoryChanged { category_id } => format!("category:{category_id}"),
            ContentChange::OfferChanged { offer_id } => format!("offer:{offer_id}"),
        }
    }
}

/// One delivery to make (topic `webhook-jobs`): the payload is final JSON.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct WebhookJob {
    pub job_id: String,
    pub webhook_id: u64,
    pub affiliate_id: u64,
    pub event: String,
    pub payload_json: String,
    pub occurred_at_ms: i64,
}

impl Event for WebhookJob {
    const TOPIC: Topic = Topic::WebhookJobs;
    /// One endpoint's deliveries stay in order.
    fn key(&self) -> String {
        format!("webhook:{}", self.webhook_id)
    }
}

/// Whose credentials changed (topic `credential-changes`). The event says only who; a
/// follower drops what it cached and reads the store again on the next request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Encode, Decode)]
pub enum CredentialChange {
    /// A key was revoked, rotated or otherwise changed.
    Key { key_id: u64, affiliate_id: u64 },
    /// An affiliate was changed (deactivated, approved...): every key of it is affected.
    Affiliate { affiliate_id: u64 },
}

impl CredentialChange {
    pub fn affiliate_id(self) -> u64 {
        match self {
            CredentialChange::Key { affiliate_id, .. } | CredentialChange::Affiliate { affiliate_id } => affiliate_id,
        }
    }
}

/// A credential change with its time.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct CredentialChanged {
    pub change: CredentialChange,
    pub occurred_at_ms: i64,
}

impl Event for CredentialChanged {
    const TOPIC: Topic = Topic::CredentialChanges;
    /// One affiliate's changes stay in order.
    fn key(&self) -> String {
        format!("affiliate:{}", self.change.affiliate_id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{decode, encode};
    use crate::values::CurrencyCode;

    fn postback() -> PostbackReceived {
        PostbackReceived {
            network_id: 3,
            click_id: "c-1".into(),
            txn_id: "t-9".into(),
            payout: Money { minor: 1250, currency: CurrencyCode::EUR },
            status: PostbackStatus::Approved,
            goal: Some("sale".into()),
            received_at_ms: 1_700_000_000_000,
        }
    }

    fn recorded() -> ConversionRecorded {
        ConversionRecorded {
            conversion_id: 7,
            network_id: 3,
            txn_id: "t".into(),
            click_id: "c".into(),
            campaign_id: 1,
            affiliate_id: 2,
            tenant_id: "tenant-a".into(),
            offer_id: 4,
            user_id: None,
            payout: Money { minor: 1, currency: CurrencyCode::USD },
            status: PostbackStatus::Pending,
            occurred_at_ms: 5,
        }
    }

    #[test]
    fn every_event_round_trips_through_the_codec() {
        let p = postback();
        assert_eq!(decode::<PostbackReceived>(&encode(&p).unwrap()).unwrap(), p);
        let c = recorded();
        assert_eq!(decode::<ConversionRecorded>(&encode(&c).unwrap()).unwrap(), c);
        let pc = ProductChanged { change: ContentChange::BlogUnpublished { blog_id: 5, reason: "r".into() }, occurred_at_ms: 1 };
        assert_eq!(decode::<ProductChanged>(&encode(&pc).unwrap()).unwrap(), pc);
        for change in [CredentialChange::Key { key_id: 4, affiliate_id: 2 }, CredentialChange::Affiliate { affiliate_id: 2 }] {
            let cc = CredentialChanged { change, occurred_at_ms: 3 };
            assert_eq!(decode::<CredentialChanged>(&encode(&cc).unwrap()).unwrap(), cc);
            assert_eq!(cc.key(), "affiliate:2");
        }
        let w = WebhookJob {
            job_id: "j".into(),
            webhook_id: 9,
            affiliate_id: 1,
            event: "product.updated".into(),
            payload_json: "{}".into(),
            occurred_at_ms: 2,
        };
        assert_eq!(decode::<WebhookJob>(&encode(&w).unwrap()).unwrap(), w);
    }

    /// The bytes of version 1 are frozen: an event written by this build must decode in every
    /// later build. If this fails, the format changed: add version 2 instead.
    #[test]
    fn version_one_bytes_are_stable() {
        let bytes = encode(&postback()).unwrap();
        assert_eq!(
            bytes,
            vec![1, 3, 3, 99, 45, 49, 3, 116, 45, 57, 251, 196, 9, 2, 1, 1, 4, 115, 97, 108, 101, 253, 0, 208, 202, 159, 23, 3, 0, 0]
        );
    }

    #[test]
    fn conversion_events_of_version_one_still_decode() {
        use crate::codec::{decode_event, encode_event};
        let c = ConversionRecorded { user_id: Some("u".into()), status: PostbackStatus::Approved, ..recorded() };
        // What the previous build wrote on `conversions`: version 1, a bare ConversionRecorded.
        let old = encode(&c).unwrap();
        assert_eq!(old[0], 1);
        assert_eq!(decode_event::<ConversionEvent>(&old).unwrap(), ConversionEvent::Recorded(c.clone()));
        let settled = ConversionEvent::PaymentSettled { conversion_id: 7, request_id: "r".into(), paid: true, recovered_minor: 0, error: None, settled_at_ms: 9 };
        let new = encode_event(&settled).unwrap();
        assert_eq!(new[0], 2);
        assert_eq!(decode_event::<ConversionEvent>(&new).unwrap(), settled);
        assert_eq!(ConversionEvent::Recorded(c).key(), "conversion:7");
    }

    /// `UserErased` came after the other variants: what earlier builds wrote with version 2
    /// still decodes to the same event, and the new variant round-trips on the same key.
    #[test]
    fn erasure_variant_keeps_version_two_bytes_decodable() {
        use crate::codec::{decode_event, encode_event};
        let requested = ConversionEvent::PaymentRequested { conversion_id: 7, request_id: "r".into(), requested_at_ms: 1 };
        // Frozen bytes of version 2 as written before `UserErased` existed.
        let frozen = vec![2, 1, 7, 1, 114, 2];
        assert_eq!(encode_event(&requested).unwrap(), frozen);
        assert_eq!(decode_event::<ConversionEvent>(&frozen).unwrap(), requested);
        let erased = ConversionEvent::UserErased { conversion_id: 7, pseudonym: "erased_ab".into(), erased_at_ms: 9 };
        let bytes = encode_event(&erased).unwrap();
        assert_eq!(bytes[0], 2);
        assert_eq!(decode_event::<ConversionEvent>(&bytes).unwrap(), erased);
        assert_eq!(erased.key(), "conversion:7");
    }

    #[test]
    fn keys_group_one_entity() {
        assert_eq!(postback().key(), "3:t-9");
        let a = ProductChanged { change: ContentChange::ProductPublished { product_id: 1 }, occurred_at_ms: 0 };
        let b = ProductChanged { change: ContentChange::ProductUnpublished { product_id: 1 }, occurred_at_ms: 0 };
        assert_eq!(a.key(), b.key());
    }
}
