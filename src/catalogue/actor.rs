//! The catalogue actor: owns the snapshot, rebuilds it from the store at start and swaps in a
//! new one on every change: directly from the admin handlers of this instance (so a change
//! is visible to the next request) and from `product-changes` events (so every instance
//! follows changes made on the others; reapplying a change is harmless).
//!
//! Readers never wait for the actor: [`Catalogue::snapshot`] clones an `Arc` under a
//! read lock held for nanoseconds.

use super::pricing::ExchangeRates;
use super::snapshot::Snapshot;
use crate::store::SharedStore;
use actix::prelude::*;
use async_trait::async_trait;
use hissaback_actors::consumer::EventHandler;
use hissaback_topics::events::{ContentChange, ProductChanged};
use hissaback_topics::Delivery;
use std::sync::{Arc, RwLock};

type Current = Arc<RwLock<Arc<Snapshot>>>;

pub struct CatalogueActor {
    store: SharedStore,
    current: Current,
    default_rates: ExchangeRates,
}

/// What to refresh from the store.
#[derive(Message, Clone, Copy, Debug)]
#[rtype(result = "Result<(), String>")]
pub enum Refresh {
    Everything,
    Product(u64),
    Promotions,
    Categories,
    Rates,
}

impl Actor for CatalogueActor {
    type Context = Context<Self>;
}

impl Supervised for CatalogueActor {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        tracing::warn!("catalogue actor restarting");
    }
}

async fn load_everything(store: &SharedStore, default_rates: &ExchangeRates) -> anyhow::Result<Snapshot> {
    let products = store.products().await?;
    let categories = store.categories().await?;
    let promotions = store.promotions().await?;
    let rates = super::load_rates(store, default_rates).await?;
    Ok(Snapshot::build(products, &categories, promotions, rates))
}

impl Handler<Refresh> for CatalogueActor {
    type Result = AtomicResponse<Self, Result<(), String>>;

    /// One refresh at a time (atomic), so two changes never race to swap snapshots.
    fn handle(&mut self, what: Refresh, _ctx: &mut Self::Context) -> Self::Result {
        let store = self.store.clone();
        let current = self.current.clone();
        let defaults = self.default_rates.clone();
        AtomicResponse::new(Box::pin(
            async move {
                let base = current.read().unwrap_or_else(|p| p.into_inner()).clone();
                let next = match what {
                    Refresh::Everything => load_everything(&store, &defaults).await?,
                    Refresh::Product(id) => match store.get_product(id).await? {
                        Some(p) => base.with_product(p),
                        None => return Ok(()),
                    },
                    Refresh::Promotions => base.with_promotions(store.promotions().await?),
                    Refresh::Categories => base.with_categories(&store.categories().await?),
                    Refresh::Rates => base.with_rates(super::load_rates(&store, &defaults).await?),
                };
                *current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(next);
                Ok::<(), anyhow::Error>(())
            }
            .into_actor(self)
            .map(|r, _, _| r.map_err(|e| e.to_string())),
        ))
    }
}

/// The facade: read the snapshot, ask for refreshes.
#[derive(Clone)]
pub struct Catalogue {
    current: Current,
    addr: Addr<CatalogueActor>,
}

impl Catalogue {
    /// Loads the whole catalogue from the store and starts the actor under a supervisor.
    pub async fn start(store: SharedStore, default_rates: ExchangeRates) -> anyhow::Result<Self> {
        let snapshot = load_everything(&store, &default_rates).await?;
        let current: Current = Arc::new(RwLock::new(Arc::new(snapshot)));
        let state = current.clone();
        let addr = Supervisor::start(move |_| CatalogueActor { store, current: state, default_rates });
        Ok(Self { current, addr })
    }

    /// The catalogue as it is now.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Refreshes part of the snapshot from the store and waits until it is swapped in.
    pub async fn refresh(&self, what: Refresh) -> anyhow::Result<()> {
        self.addr.send(what).await?.map_err(anyhow::Error::msg)
    }
}

/// Follows `product-changes` so changes made on other instances reach this snapshot.
pub struct CatalogueFollower(pub Catalogue);

#[async_trait]
impl EventHandler for CatalogueFollower {
    type Event = ProductChanged;

    async fn handle(&self, event: ProductChanged, _delivery: &Delivery) -> anyhow::Result<()> {
        match event.change {
            ContentChange::ProductPublished { product_id }
            | ContentChange::ProductUpdated { product_id }
            | ContentChange::ProductUnpublished { product_id } => self.0.refresh(Refresh::Product(product_id)).await,
            ContentChange::PromotionCreated { .. } => self.0.refresh(Refresh::Promotions).await,
            ContentChange::ExchangeRatesChanged => self.0.refresh(Refresh::Rates).await,
            ContentChange::CategoryChanged { .. } => self.0.refresh(Refresh::Categories).await,
            ContentChange::BlogPublished { .. } | ContentChange::BlogUnpublished { .. } | ContentChange::OfferChanged { .. } => Ok(()),
        }
    }
}
