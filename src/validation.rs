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

fn fail(code: &'static str, message: &'static str) -> ValidationError {
    ValidationError::new(code).with_message(message.into())
}

/// Largest amount accepted anywhere (prices, rewards, payouts): one billion. Amounts
/// themselves are read by [`crate::domain::Amount`], which refuses what is not a plain
/// decimal (`1e5`, `1_000`, `.5`) before any rule here could see it.
pub const MAX_AMOUNT: i64 = 1_000_000_000;

/// A percentage above 0 and at most 100, with at most two decimals.
pub fn percentage(value: &rust_decimal::Decimal) -> Result<(), ValidationError> {
    if *value <= rust_decimal::Decimal::ZERO || *value > rust_decimal::Decimal::ONE_HUNDRED || value.normalize().scale() > 2 {
        Err(fail("percentage", "The percentage must be more than 0 and at most 100, with at most two decimals."))
    } else {
        Ok(())
    }
}

/// A coupon tier: `low`, `mid` or `high`.
pub fn coupon_tier(value: &str) -> Result<(), ValidationError> {
    match value {
        "low" | "mid" | "high" => Ok(()),
        _ => Err(fail("tier", "The selected tier is invalid. Use low, mid or high.")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::Decimal;

    #[test]
    fn rules_accept_and_refuse_what_they_say() {
        assert!(required("x").is_ok() && required("  ").is_err());
        assert!(percentage(&Decimal::new(125, 1)).is_ok() && percentage(&Decimal::ZERO).is_err() && percentage(&Decimal::new(101, 0)).is_err());
        assert!(coupon_tier("mid").is_ok() && coupon_tier("top").is_err());
    }
}
