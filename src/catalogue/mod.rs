//! The catalogue: prices and currencies ([`pricing`], [`geoip`]), the in-memory snapshot
//! products are listed from ([`snapshot`]), and the actor that owns and refreshes it
//! ([`actor`]).

pub mod actor;
pub mod geoip;
pub mod pricing;
pub mod snapshot;

pub use actor::Catalogue;
pub use pricing::ExchangeRates;
pub use snapshot::{ListQuery, Snapshot, BUNDLE_TYPE};

use crate::store::SharedStore;

/// Where the admin's exchange rates are kept (a store setting, JSON).
pub const RATES_SETTING: &str = "catalogue.exchange_rates";

/// The rates in force: the admin's, or the configured defaults until the admin sets some.
pub async fn load_rates(store: &SharedStore, defaults: &ExchangeRates) -> anyhow::Result<ExchangeRates> {
    Ok(match store.get_setting(RATES_SETTING).await? {
        Some(json) => serde_json::from_str(&json)?,
        None => defaults.clone(),
    })
}
