//! # hissaback-topics
//!
//! The vocabulary shared by everything that produces or consumes hissaback's events:
//!
//! - [`values`]: the values events carry (money in integer minor units, currency codes, ids);
//! - [`names`]: the topics the system uses and how their names are formed on a broker;
//! - [`codec`]: the versioned binary codec every event goes through (bincode 2 behind a
//!   version byte, so a format change never breaks a consumer that reads older events).
//!
//! Dependencies point one way: the service depends on the actors, the actors on this crate,
//! and this crate on nothing of hissaback's.

pub mod codec;
pub mod names;
pub mod values;

pub use codec::{decode, encode, CodecError, CODEC_VERSION};
pub use names::Topic;
pub use values::{CurrencyCode, Money};
