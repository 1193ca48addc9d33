//! The admin API under `/admin/v1`, guarded by the admin bearer token (see [`crate::auth::Admin`]).

pub mod affiliates;
pub mod audit;
pub mod blogs;
pub mod categories;
pub mod keys;
pub mod partners;
pub mod products;
pub mod promotions;
pub mod rewards;

use actix_web::web;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.configure(affiliates::configure).configure(audit::configure).configure(categories::configure).configure(keys::configure).configure(partners::configure).configure(rewards::configure).configure(products::configure).configure(promotions::configure).configure(blogs::configure);
}
