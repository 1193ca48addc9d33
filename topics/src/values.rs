//! Values carried by events: exact money and currency codes.
//!
//! Money travels as integer minor units (cents) with its currency, never as a float: the
//! ledger sums these values and must be exact.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The currencies hissaback prices and pays in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[derive(bincode::Encode, bincode::Decode)]
pub enum CurrencyCode {
    USD,
    GBP,
    EUR,
    INR,
    BGN,
}

impl CurrencyCode {
    /// Every supported currency, in the order the API names them.
    pub const ALL: [CurrencyCode; 5] = [
        CurrencyCode::USD,
        CurrencyCode::GBP,
        CurrencyCode::EUR,
        CurrencyCode::INR,
        CurrencyCode::BGN,
    ];

    /// Parses a three-letter code, case-insensitively.
    pub fn parse(code: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|c| c.as_str().eq_ignore_ascii_case(code.trim()))
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CurrencyCode::USD => "USD",
            CurrencyCode::GBP => "GBP",
            CurrencyCode::EUR => "EUR",
            CurrencyCode::INR => "INR",
            CurrencyCode::BGN => "BGN",
        }
    }
}

impl fmt::Display for CurrencyCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An exact amount: integer minor units (1/100 of the currency unit) and the currency.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[derive(bincode::Encode, bincode::Decode)]
pub struct Money {
    pub minor: i64,
    pub currency: CurrencyCode,
}

/// Why a decimal amount cannot become [`Money`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MoneyError {
    #[error("amount has more than two decimals")]
    TooPrecise,
    #[error("amount is out of range")]
    OutOfRange,
}

impl Money {
    /// Exact conversion from a decimal amount; more than two decimals is an error, not a rounding.
    pub fn from_decimal(amount: Decimal, currency: CurrencyCode) -> Result<Self, MoneyError> {
        let scaled = amount.checked_mul(Decimal::ONE_HUNDRED).ok_or(MoneyError::OutOfRange)?;
        if scaled.fract() != Decimal::ZERO {
            return Err(MoneyError::TooPrecise);
        }
        let minor = i64::try_from(scaled.trunc()).map_err(|_| MoneyError::OutOfRange)?;
        Ok(Money { minor, currency })
    }

    /// The amount as a decimal with two places.
    pub fn to_decimal(self) -> Decimal {
        Decimal::new(self.minor, 2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn currency_codes_parse_case_insensitively() {
        assert_eq!(CurrencyCode::parse("eur"), Some(CurrencyCode::EUR));
        assert_eq!(CurrencyCode::parse("JPY"), None);
    }

    #[test]
    fn money_is_exact() {
        let m = Money::from_decimal(Decimal::from_str("199.99").unwrap(), CurrencyCode::USD).unwrap();
        assert_eq!(m.minor, 19999);
        assert_eq!(m.to_decimal().to_string(), "199.99");
        assert_eq!(
            Money::from_decimal(Decimal::from_str("0.005").unwrap(), CurrencyCode::USD),
            Err(MoneyError::TooPrecise)
        );
    }
}
