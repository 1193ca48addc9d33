//! The offer sync job: an actor that polls an affiliate network's JSON feed every
//! `partner.offers_sync_interval` and upserts its offers (brands by name, offers by the
//! feed's id), then reloads the offer catalogue and publishes an `OfferChanged` event per new
//! or changed offer. Runs, failures, duration, size and the last success time are metrics.
//!
//! Feed format (Trackier-like; unknown fields are ignored):
//!
//! ```json
//! {"offers": [{"id": "trk-101", "brand": "Acme", "name": "Acme Card", "category": "finance",
//!              "payout_percent": 12.5, "default_share_pct": 50, "currency": "USD",
//!              "tracking_url": "https://trk.example/click?o=101&click_id={click_id}"}]}
//! ```

use crate::metrics::Metrics;
use crate::partner::offers::OfferCatalogue;
use crate::store::{BrandRecord, OfferRecord, Sequence, SharedStore};
use actix::prelude::*;
use chrono::Utc;
use hissaback_topics::events::ContentChange;
use hissaback_topics::{CurrencyCode, SharedBus};
use rust_decimal::Decimal;
use serde::Deserialize;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Deserialize)]
struct Feed {
    offers: Vec<FeedOffer>,
}

#[derive(Deserialize)]
struct FeedOffer {
    id: String,
    brand: String,
    name: String,
    #[serde(default)]
    category: String,
    payout_percent: Decimal,
    #[serde(default)]
    default_share_pct: Option<Decimal>,
    tracking_url: String,
    #[serde(default)]
    currency: Option<String>,
}

pub struct OfferSync {
    pub url: String,
    pub every: Duration,
    pub client: reqwest::Client,
    pub store: SharedStore,
    pub bus: SharedBus,
    pub offers: Arc<OfferCatalogue>,
    pub metrics: Metrics,
}

/// What one run did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SyncReport {
    pub seen: usize,
    pub created: usize,
    pub updated: usize,
    pub skipped: usize,
}

impl OfferSync {
    /// One sync run.
    pub async fn run_once(
        client: &reqwest::Client,
        url: &str,
        store: &SharedStore,
        bus: &SharedBus,
        offers: &OfferCatalogue,
    ) -> anyhow::Result<SyncReport> {
        let res = client.get(url).send().await?;
        anyhow::ensure!(res.status().is_success(), "feed answered {}", res.status());
        let feed: Feed = res.json().await?;
        let mut report = SyncReport { seen: feed.offers.len(), ..Default::default() };
        let mut brands = store.brands().await?;
        let existing = store.offers().await?;
        let now = Utc::now();
        for f in feed.offers {
            let valid = !f.id.is_empty()
                && !f.name.trim().is_empty()
                && f.tracking_url.contains("{click_id}")
                && url::Url::parse(&f.tracking_url).is_ok()
                && f.payout_percent > Decimal::ZERO
                && f.payout_percent <= Decimal::ONE_HUNDRED;
            let currency = f.currency.as_deref().map(CurrencyCode::parse).unwrap_or(Some(CurrencyCode::USD));
            let (true, Some(currency)) = (valid, currency) else {
                report.skipped += 1;
                continue;
            };
            let brand_id = match brands.iter().find(|b| b.name.eq_ignore_ascii_case(f.brand.trim())) {
                Some(b) => b.id,
                None => {
                    let b = BrandRecord { id: store.next_id(Sequence::Brand).await?, name: f.brand.trim().to_string(), created_at: now };
                    store.put_brand(&b).await?;
                    brands.push(b.clone());
                    b.id
                }
            };
            let share = f.default_share_pct.unwrap_or(Decimal::new(50, 0)).clamp(Decimal::ZERO, Decimal::ONE_HUNDRED);
            let current = existing.iter().find(|o| o.external_id.as_deref() == Some(f.id.as_str()));
            let mut next = OfferRecord {
                id: 0,
                brand_id,
                name: f.name.trim().to_string(),
                category: f.category.trim().to_string(),
                base_commission: f.payout_percent.normalize(),
                default_share_pct: share.normalize(),
                tracking_url: f.tracking_url,
                currency: currency.as_str().to_string(),
                external_id: Some(f.id.clone()),
                created_at: now,
                updated_at: now,
            };
            match current {
                Some(c) => {
                    next.id = c.id;
                    next.created_at = c.created_at;
                    next.updated_at = c.updated_at;
                    if next == *c {
                        continue;
                    }
                    next.updated_at = now;
                    report.updated += 1;
                }
                None => {
                    next.id = store.next_id(Sequence::Offer).await?;
                    report.created += 1;
                }
            }
            store.put_offer(&next).await?;
            crate::events::emit_change(bus.as_ref(), ContentChange::OfferChanged { offer_id: next.id })
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        offers.reload(store).await?;
        Ok(report)
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        let (client, url, store, bus, offers, metrics) =
            (self.client.clone(), self.url.clone(), self.store.clone(), self.bus.clone(), self.offers.clone(), self.metrics.clone());
        // `wait`: one run at a time; a slow feed delays the next run instead of piling up.
        ctx.wait(
            async move {
                let started = Instant::now();
                let result = Self::run_once(&client, &url, &store, &bus, &offers).await;
                metrics.offer_sync_duration.observe(started.elapsed().as_secs_f64());
                match result {
                    Ok(report) => {
                        metrics.offer_sync_runs.with_label_values(&["success"]).inc();
                        metrics.offer_sync_last_success.set(Utc::now().timestamp() as f64);
                        metrics.offer_sync_offers.set(report.seen as i64);
                        tracing::info!(?report, "offer feed synced");
                    }
                    Err(e) => {
                        metrics.offer_sync_runs.with_label_values(&["failure"]).inc();
                        tracing::warn!(error = %e, "offer feed sync failed");
                    }
                }
            }
            .into_actor(self),
        );
    }
}

impl Actor for OfferSync {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.tick(ctx);
        ctx.run_interval(self.every, |act, ctx| act.tick(ctx));
    }
}

impl Supervised for OfferSync {}
