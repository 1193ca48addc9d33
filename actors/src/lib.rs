//! # hissaback-actors
//!
//! The long-lived, stateful parts of hissaback, each a supervised actix actor:
//!
//! - [`campaigns`]: the campaign registry, every campaign's split in memory for the ledger;
//! - [`consumer`]: a stream consumer per topic and group: batches committed once each,
//!   partitions in parallel and each in order, retries, poison events parked on the
//!   dead-letter topic, stuck detection, restarts from the last committed offset;
//! - [`ledger`]: the rules the ledger applies: the commission split and the reward state
//!   machine with the double-entry legs of each transition;
//! - [`rate_limit`]: per-key GCRA buckets and failed-authentication limits per address;
//! - [`key_usage`]: batches "this API key was just used" notes from the request path and
//!   writes `last_used_at` in one store call per flush, never one write per request;
//! - [`usage`]: usage counters (per key, minute, route, status class), campaign clicks and
//!   the audit log, written in batches.
//!
//! Later issues add the rate limiter, campaign registry, webhook dispatcher and the stream
//! consumers here, each in a folder of its own (`mod.rs` for state and plain methods,
//! `handlers.rs` for message handlers).
//!
//! An actor that needs storage declares it as a trait in [`ports`]; the service implements
//! those traits once per store backend and hands them over at start, so this crate never
//! depends on a database driver.

pub mod campaigns;
pub mod consumer;
pub mod key_usage;
pub mod ledger;
pub mod metrics;
pub mod ports;
pub mod rate_limit;
pub mod usage;

pub use key_usage::{KeyUsage, KeyUsageRecorder};
