//! # hissaback
//!
//! The service: an actix-web front end over supervised actors, a store and an event bus.
//!
//! # Layout
//!
//! - [`cli`]: `hissaback serve | demo | migrate`.
//! - [`configuration`]: defaults, file and `HISSABACK_*` environment, validated at start.
//! - [`startup`]: builds the application (store, actors, HTTP server) and runs it.
//! - [`routes`]: one module per resource; [`auth`] and [`extract`] turn requests into
//!   trusted values; [`error`] turns failures into the seeds' envelope.
//! - [`domain`]: values parsed at the edge (API keys, scopes).
//! - [`content`]: screening of affiliate-written HTML (blog content) for script.
//! - [`accounts`]: affiliates and the lifecycle of their keys.
//! - [`catalogue`]: pricing, currencies, the in-memory catalogue snapshot and its actor.
//! - [`store`]: the storage trait and its backends; [`events`]: the event bus backend.
//! - [`metrics`]: Prometheus metrics and the request middleware; [`usage`]: what that
//!   middleware counts and audits for every API call.
//! - [`webhooks`]: webhook events, payloads, the private-address guard and the dispatcher.
//! - [`partner`]: the partner flow's offer catalogue and tracking-URL macros.
//! - [`demo`]: the demo data set.

pub mod accounts;
pub mod auth;
pub mod catalogue;
pub mod cli;
pub mod configuration;
pub mod content;
pub mod credentials;
pub mod demo;
pub mod domain;
pub mod error;
pub mod events;
pub mod extract;
pub mod json;
pub mod metrics;
pub mod partner;
pub mod priority;
pub mod routes;
pub mod secrets;
pub mod startup;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod usage;
pub mod validation;
pub mod webhooks;
