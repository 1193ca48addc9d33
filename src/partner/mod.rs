//! The partner flow's domain: the offer catalogue partners browse ([`offers`]), the
//! macros of tracking URLs ([`tracking`]) and the path from postbacks to the ledger
//! ([`ledger`], [`payouts`]) with the in-memory lookups of the postback path ([`lookups`]).

pub mod ledger;
pub mod lookups;
pub mod offers;
pub mod payouts;
pub mod privacy;
pub mod sync;
pub mod tracking;
