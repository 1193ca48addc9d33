//! The partner flow's domain: the offer catalogue partners browse ([`offers`]) and the
//! macros of tracking URLs ([`tracking`]).

pub mod offers;
pub mod tracking;
