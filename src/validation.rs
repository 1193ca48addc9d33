//! Validation rules shared by request bodies, on top of `validator`'s built-in ones.
//!
//! Required text fields are declared `#[serde(default)]` and checked with [`required`], so a
//! missing field, a blank one and a wrong one are all reported together in one 422 instead
//! of the first missing field stopping the reading of the body.

use validator::ValidationError;

/// Fails with code `required` on an empty or blank string (Laravel's `required`).
pub fn required(value: &str) -> Result<(), ValidationError> {
    if value.trim().is_empty() {
        Err(ValidationError::new("required"))
    } else {
        Ok(())
    }
}
