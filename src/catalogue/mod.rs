//! The catalogue: prices and currencies ([`pricing`], [`geoip`]), the in-memory snapshot
//! products are listed from ([`snapshot`]), and the actor that owns and refreshes it
//! ([`actor`]).

pub mod actor;
pub mod geoip;
pub mod pricing;
pub mod snapshot;

pub use actor::Catalogue;
pub use pricing::ExchangeRates;
pub use snapshot::{ListQuery, ProductEntry, Rendered, Snapshot, BUNDLE_TYPE};

use crate::store::{CategoryRecord, SharedStore};

/// Where the admin's exchange rates are kept (a store setting, JSON).
pub const RATES_SETTING: &str = "catalogue.exchange_rates";

/// Whether affiliates see a category at all: active, not deleted, with a non-blank slug.
pub fn is_listed(c: &CategoryRecord) -> bool {
    c.active && c.deleted_at.is_none() && c.slug.as_deref().is_some_and(|s| !s.trim().is_empty())
}

/// The rates in force: the admin's, or the configured defaults until the admin sets some.
pub async fn load_rates(store: &SharedStore, defaults: &ExchangeRates) -> anyhow::Result<ExchangeRates> {
    Ok(match store.get_setting(RATES_SETTING).await? {
        Some(json) => serde_json::from_str(&json)?,
        None => defaults.clone(),
    })
}
