//! Black-box tests of the whole service: one test binary, each test on its own app with its
//! own data directory and a random port (see `helpers::spawn_app`).

mod helpers;
#[path = "../support/flow.rs"]
mod flow;

mod admin;
mod auth;
mod credentials;
mod access;
mod blogs;
mod binary;
mod crash;
mod outbox;
mod catalogue;
mod categories;
mod errors;
mod operations;
mod store_suite;
mod webhook_smoke;
mod webhooks;
mod partner;
mod hardening;
mod rate_limits;
mod dashboards;
mod usage_stats;
mod ledger_integrity;
mod privacy;
mod lost_updates;
mod input;
mod secrets;
mod openapi;
mod client;
mod cli;
mod observability;
