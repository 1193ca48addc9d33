//! Prices: USD amounts converted with the admin's rate table, coupons applied, every result
//! rounded to two decimals, half away from zero (exact decimal arithmetic throughout).

use hissaback_topics::CurrencyCode;
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};

/// Units of each currency per 1 USD.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExchangeRates {
    #[serde(rename = "GBP")]
    pub gbp: Decimal,
    #[serde(rename = "EUR")]
    pub eur: Decimal,
    #[serde(rename = "INR")]
    pub inr: Decimal,
    #[serde(rename = "BGN")]
    pub bgn: Decimal,
}

impl ExchangeRates {
    pub fn rate(&self, currency: CurrencyCode) -> Decimal {
        match currency {
            CurrencyCode::USD => Decimal::ONE,
            CurrencyCode::GBP => self.gbp,
            CurrencyCode::EUR => self.eur,
            CurrencyCode::INR => self.inr,
            CurrencyCode::BGN => self.bgn,
        }
    }
}

/// Two decimals, half away from zero.
pub fn round2(v: Decimal) -> Decimal {
    v.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero)
}

/// A USD price in `currency`, rounded. Inputs are bounded by validation (prices up to 1e9,
/// rates up to 1e6); the arithmetic saturates rather than panics regardless.
pub fn convert(usd: Decimal, currency: CurrencyCode, rates: &ExchangeRates) -> Decimal {
    round2(usd.checked_mul(rates.rate(currency)).unwrap_or(Decimal::MAX))
}

/// The price after `percent_off`, from an already converted price, rounded.
pub fn discounted(price: Decimal, percent_off: Decimal) -> Decimal {
    let kept = (Decimal::ONE_HUNDRED - percent_off) / Decimal::ONE_HUNDRED;
    round2(price.checked_mul(kept).unwrap_or(Decimal::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn rates() -> ExchangeRates {
        ExchangeRates { gbp: d("0.79"), eur: d("0.92"), inr: d("83.1"), bgn: d("1.8") }
    }

    #[test]
    fn the_seed_examples_hold() {
        // Bundle children of the seed: 79.00 at 12.5% and 25%; 69.00 at 22.5% and 55%.
        assert_eq!(discounted(d("79.0"), d("12.5")), d("69.13"));
        assert_eq!(discounted(d("79.0"), d("25")), d("59.25"));
        assert_eq!(discounted(d("69.0"), d("22.5")), d("53.48"));
        assert_eq!(discounted(d("69.0"), d("55")), d("31.05"));
        // Retrieve Product: 215.49 GBP at 12.5% and 25%.
        assert_eq!(discounted(d("215.49"), d("12.5")), d("188.55"));
        assert_eq!(discounted(d("215.49"), d("25")), d("161.62"));
    }

    #[test]
    fn conversion_rounds_half_away_from_zero() {
        assert_eq!(convert(d("10.005"), CurrencyCode::USD, &rates()), d("10.01"));
        assert_eq!(convert(d("199.99"), CurrencyCode::EUR, &rates()), d("183.99")); // 183.9908
        assert_eq!(convert(d("1.25"), CurrencyCode::INR, &rates()), d("103.88")); // 103.875
        assert_eq!(round2(d("-0.125")), d("-0.13"));
    }
}
