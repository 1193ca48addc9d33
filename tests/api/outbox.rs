//! The ledger writer's outbox (issue 11, defect 3): a reward webhook job caused by a state
//! change is derived from that change and published by the same idempotent step. When the
//! publish fails after the state was written, the redelivered event (it was never committed)
//! republishes the same job; a redelivery after a successful publish sends the same job id
//! again, which the intake drops. Driven through the writer itself, with a bus that refuses
//! `webhook-jobs` once: a failure no black-box caller can provoke on demand.

use async_trait::async_trait;
use hissaback::partner::ledger::{LedgerWriter, StoreCampaignSource};
use hissaback::store::{CampaignRecord, RewardStatus, SharedStore, WebhookRecord};
use hissaback_actors::campaigns::Campaigns;
use hissaback_actors::consumer::BatchHandler;
use hissaback_topics::bus::embedded::EmbeddedBus;
use hissaback_topics::bus::{BusError, Delivery, EventBus, Subscription};
use hissaback_topics::events::{ConversionEvent, ConversionRecorded, PostbackStatus, WebhookJob};
use hissaback_topics::{CurrencyCode, Money};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The embedded bus, refusing the first publish to `webhook-jobs`.
struct RefuseOnce {
    inner: EmbeddedBus,
    refused: AtomicBool,
}

#[async_trait]
impl EventBus for RefuseOnce {
    fn backend(&self) -> &'static str {
        "embedded"
    }
    async fn publish(&self, topic: &str, key: &str, payload: Vec<u8>) -> Result<(), BusError> {
        self.publish_batch(topic, vec![(key.to_string(), payload)]).await
    }
    async fn publish_batch(&self, topic: &str, messages: Vec<(String, Vec<u8>)>) -> Result<(), BusError> {
        if topic == "webhook-jobs" && !self.refused.swap(true, Ordering::SeqCst) {
            return Err(BusError::Unavailable("refused once by the test".into()));
        }
        self.inner.publish_batch(topic, messages).await
    }
    async fn subscribe(&self, topic: &str, group: &str) -> Result<Box<dyn Subscription>, BusError> {
        self.inner.subscribe(topic, group).await
    }
    async fn ping(&self) -> Result<(), BusError> {
        Ok(())
    }
}

/// Every job on `webhook-jobs` so far.
async fn jobs(bus: &EmbeddedBus, group: &str) -> Vec<WebhookJob> {
    let mut sub = bus.subscribe("webhook-jobs", group).await.unwrap();
    let mut out = Vec::new();
    while let Ok(Ok(batch)) = tokio::time::timeout(Duration::from_millis(300), sub.next_batch(100, Duration::from_millis(5))).await {
        out.extend(batch.iter().map(|d| hissaback_topics::decode_event::<WebhookJob>(&d.payload).unwrap()));
    }
    out
}

#[actix_web::test]
async fn a_reward_job_lost_to_a_failed_publish_is_republished_and_never_doubled() {
    let dir = tempfile::tempdir().unwrap();
    let store: SharedStore = Arc::new(hissaback::store::embedded::EmbeddedStore::open(dir.path()).await.unwrap());
    let now = chrono::Utc::now();
    store
        .put_campaign(&CampaignRecord { id: 11, affiliate_id: 5, offer_id: 3, tenant_id: "t".into(), share_pct: Some(rust_decimal::Decimal::new(40, 0)), flat_reward: None, created_at: now })
        .await
        .unwrap();
    store
        .put_webhook(&WebhookRecord {
            id: 21,
            affiliate_id: 5,
            event: "reward.queued".into(),
            url: "https://hooks.example.com/r".into(),
            secret: "s".repeat(64),
            created_at: now,
            updated_at: now,
            failing_since: None,
            disabled_at: None,
            disabled_reason: None,
        })
        .await
        .unwrap();
    let inner = EmbeddedBus::in_memory(1).unwrap();
    let bus = Arc::new(RefuseOnce { inner: inner.clone(), refused: AtomicBool::new(false) });
    let writer = LedgerWriter {
        store: store.clone(),
        bus,
        campaigns: Campaigns::start(Arc::new(StoreCampaignSource(store.clone()))),
        pseudonyms: hissaback::partner::privacy::Pseudonyms::new(&secrecy::SecretString::from("p".repeat(32))),
    };

    let event = ConversionEvent::Recorded(ConversionRecorded {
        conversion_id: 99,
        network_id: 1,
        txn_id: "txn".into(),
        click_id: "c".into(),
        campaign_id: 11,
        affiliate_id: 5,
        tenant_id: "t".into(),
        offer_id: 3,
        user_id: Some("u".into()),
        payout: Money { minor: 1000, currency: CurrencyCode::USD },
        status: PostbackStatus::Approved,
        occurred_at_ms: 1,
    });
    let delivery = Delivery { topic: "conversions".into(), partition: 0, offset: 7, key: "conversion:99".into(), payload: vec![] };

    // The state is written, then the job's publish fails: the batch is not committed.
    assert!(writer.handle_batch(vec![(event.clone(), delivery.clone())]).await.is_err());
    let c = store.get_conversion(99).await.unwrap().unwrap();
    assert_eq!((c.status, c.reward_minor), (RewardStatus::Queued, 400));
    assert!(jobs(&inner, "peek-1").await.is_empty(), "nothing went out yet");

    // Redelivered: the state is not applied twice, the job goes out.
    writer.handle_batch(vec![(event.clone(), delivery.clone())]).await.unwrap();
    let sent = jobs(&inner, "peek-2").await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].event, "reward.queued");
    assert_eq!(sent[0].webhook_id, 21);
    assert_eq!(sent[0].job_id, "conversions:0:7:reward.queued:21", "the job's id is the causing event's position");
    let payload: serde_json::Value = serde_json::from_str(&sent[0].payload_json).unwrap();
    assert_eq!((payload["reward"]["status"].as_str(), payload["reward"]["amount"].as_f64()), (Some("queued"), Some(4.0)));
    let legs = store.postings_of(99).await.unwrap();
    assert_eq!(legs.len(), 3, "the approval legs once: {legs:?}");

    // Redelivered again (a crash after the publish, before the commit): the same job id, so
    // the webhook intake keeps one delivery; the books do not move.
    writer.handle_batch(vec![(event, delivery)]).await.unwrap();
    let sent = jobs(&inner, "peek-3").await;
    assert!(sent.iter().all(|j| j.job_id == "conversions:0:7:reward.queued:21"), "{sent:?}");
    let ids: std::collections::BTreeSet<String> = sent.iter().map(hissaback::webhooks::dispatcher::delivery_id).collect();
    assert_eq!(ids.len(), 1, "one delivery id");
    assert_eq!(store.postings_of(99).await.unwrap().len(), 3);
    let (_, problems) = hissaback::partner::ledger::check(&store).await.unwrap();
    assert!(problems.is_empty(), "{problems:?}");
}
