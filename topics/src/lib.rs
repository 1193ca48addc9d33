//! # hissaback-topics
//!
//! The vocabulary shared by everything that produces or consumes hissaback's events:
//!
//! - [`values`]: the values events carry (money in integer minor units, currency codes);
//! - [`names`]: the topics the system uses and how their names are formed on a broker;
//! - [`events`]: the event types of every topic, each with its ordering key;
//! - [`codec`]: the versioned binary codec every event goes through (bincode 2 behind a
//!   version byte, so a format change never breaks a consumer that reads older events);
//! - [`bus`]: the event-bus trait and its embedded and Kafka backends.
//!
//! Dependencies point one way: the service depends on the actors, the actors on this crate,
//! and this crate on nothing of hissaback's.

pub mod bus;
pub mod codec;
pub mod events;
pub mod lograte;
pub mod names;
pub mod values;

pub use bus::{BusError, Delivery, EventBus, SharedBus, Subscription};
pub use codec::{decode, decode_event, encode, encode_event, CodecError, CODEC_VERSION};
pub use events::Event;
pub use names::Topic;
pub use values::{CurrencyCode, Money};
