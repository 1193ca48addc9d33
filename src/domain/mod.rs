//! Domain values, parsed at the edge: a handler receives values that are already valid, so
//! the code behind it has no "is this valid?" branches.

pub mod amount;
pub mod api_key;
pub mod scope;

pub use amount::Amount;
pub use api_key::{KeyHasher, KeyKind, PlainApiKey};
pub use scope::Scope;
