//! Amounts of money as they enter the API (postback payouts, product prices, flat rewards),
//! parsed at the edge into [`Amount`].
//!
//! An amount is written as a plain decimal: ASCII digits, then optionally a point and one to
//! N more digits, N being the currency's minor digits (`^[0-9]+(\.[0-9]{1,N})?$`). Nothing
//! else is an amount: no sign, exponent (`1e5`), digit separator (`1_000`), bare point
//! (`.5`, `10.`), white space or non-ASCII digit. `rust_decimal`'s own parser accepts all of
//! these, which is why no handler parses an amount with it.
//!
//! JSON bodies: a JSON number is judged by its literal text, not by the double that JSON
//! readers make of it. [`crate::extract::parse_json`] hands every literal that a double would
//! not keep as written (one with an exponent, or with more than 15 significant digits) to the
//! types as a string of that literal, which [`Amount`] judges like the same text in a query
//! string; every other literal (no exponent, at most 15 significant digits) is held by its
//! double exactly, and the double's shortest decimal form (`f64`'s `Display`, which never uses
//! an exponent) is the literal's value. So `12.5` and `100000` are amounts, `1e5` and
//! `19.999999999999999` are not. Trailing zeros of a JSON number are not counted (`12.500` is
//! the number 12.5); a string (`"12.50"`) is judged by the text rule.

use hissaback_topics::{CurrencyCode, Money};
use rust_decimal::Decimal;
use std::fmt;

/// Largest amount accepted anywhere (prices, rewards, payouts): one billion.
pub const MAX_AMOUNT: i64 = crate::validation::MAX_AMOUNT;

/// The most minor digits of any supported currency: amounts whose currency is not known when
/// they are read (JSON fields) are read to this precision, then checked with [`Amount::fits`].
pub const MAX_MINOR_DIGITS: u32 = 2;

/// Digits after the point in the currency's minor unit (ISO 4217's exponent). Every supported
/// currency has two; the match is exhaustive so that a new currency has to say how many.
/// (`Money` counts in hundredths, so a currency with other than two needs it changed too.)
pub const fn minor_digits(currency: CurrencyCode) -> u32 {
    match currency {
        CurrencyCode::USD | CurrencyCode::GBP | CurrencyCode::EUR | CurrencyCode::INR | CurrencyCode::BGN => 2,
    }
}

/// A non-negative amount of at most [`MAX_AMOUNT`], with the decimals it was written with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Amount(Decimal);

/// Why a text is not an amount.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("not a plain decimal")]
    NotPlain,
    #[error("more than {max} decimals")]
    TooPrecise { max: u32 },
    #[error("more than {MAX_AMOUNT}")]
    OutOfRange,
}

impl Amount {
    /// Parses a plain decimal with at most `minor_digits` decimals (see the module docs).
    pub fn parse(text: &str, minor_digits: u32) -> Result<Amount, AmountError> {
        let (int, frac) = match text.split_once('.') {
            Some((int, frac)) => (int, Some(frac)),
            None => (text, None),
        };
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(int) || frac.is_some_and(|f| !digits(f)) {
            return Err(AmountError::NotPlain);
        }
        let frac = frac.unwrap_or("");
        // No currency has more than four minor digits; more would not fit the mantissa below.
        if frac.len() > minor_digits.min(8) as usize {
            return Err(AmountError::TooPrecise { max: minor_digits });
        }
        let int = int.trim_start_matches('0');
        // MAX_AMOUNT has ten digits: anything longer is out of range, and what is left fits an i64.
        if int.len() > 10 {
            return Err(AmountError::OutOfRange);
        }
        let whole: i64 = if int.is_empty() { 0 } else { int.parse().map_err(|_| AmountError::OutOfRange)? };
        let part: i64 = if frac.is_empty() { 0 } else { frac.parse().map_err(|_| AmountError::NotPlain)? };
        let scale = frac.len() as u32;
        let mantissa = whole.checked_mul(10i64.pow(scale)).and_then(|m| m.checked_add(part)).ok_or(AmountError::OutOfRange)?;
        let value = Decimal::new(mantissa, scale);
        if value > Decimal::from(MAX_AMOUNT) {
            return Err(AmountError::OutOfRange);
        }
        Ok(Amount(value))
    }

    /// Parses an amount in `currency`: at most its minor digits.
    pub fn parse_in(text: &str, currency: CurrencyCode) -> Result<Amount, AmountError> {
        Amount::parse(text, minor_digits(currency))
    }

    /// The amount, with the decimals it was written with (`12.50` keeps its scale of 2).
    pub fn value(self) -> Decimal {
        self.0
    }

    pub fn is_zero(self) -> bool {
        self.0.is_zero()
    }

    /// Whether the amount has no more decimals than `currency`'s minor unit.
    pub fn fits(self, currency: CurrencyCode) -> bool {
        self.0.scale() <= minor_digits(currency)
    }

    /// The amount as exact [`Money`] in `currency`.
    pub fn to_money(self, currency: CurrencyCode) -> Result<Money, AmountError> {
        if !self.fits(currency) {
            return Err(AmountError::TooPrecise { max: minor_digits(currency) });
        }
        Money::from_decimal(self.0, currency).map_err(|_| AmountError::OutOfRange)
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// What an amount field must be, as the end of a sentence that starts "The price field ":
/// "must be an amount from 0 to 1000000000 with at most two decimals, written as plain digits
/// (such as 12.50)".
pub fn requirement(minor_digits: u32) -> String {
    let (decimals, example) = match minor_digits {
        0 => ("no decimals".to_string(), "12".to_string()),
        1 => ("at most one decimal".to_string(), "12.5".to_string()),
        2 => ("at most two decimals".to_string(), "12.50".to_string()),
        n => (format!("at most {n} decimals"), format!("12.{}", "5".repeat(n as usize))),
    };
    format!("must be an amount from 0 to {MAX_AMOUNT} with {decimals}, written as plain digits (such as {example})")
}

/// The 422 message for an amount field: `field` as sent (`flat_reward`), read as words.
pub fn field_message(field: &str, minor_digits: u32) -> String {
    format!("The {} field {}.", field.replace('_', " "), requirement(minor_digits))
}

/// How a deserialization error of an [`Amount`] starts; the rest is [`requirement`], which
/// [`crate::extract`] turns into "The {field} field {requirement}.".
pub const SERDE_ERROR_PREFIX: &str = "amount: ";

/// The text of an amount in a JSON value read by [`crate::extract::parse_json`]: a string as
/// it is (a literal a double would not hold arrives as one), a number as its double's shortest
/// form (see the module documentation), `None` for anything else.
pub fn json_text(value: &serde_json::Value) -> Option<String> {
    use serde_json::Value;
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(match (n.as_u64(), n.as_i64(), n.as_f64()) {
            (Some(u), _, _) => u.to_string(),
            (None, Some(i), _) => i.to_string(),
            (None, None, Some(f)) => f.to_string(),
            (None, None, None) => n.to_string(),
        }),
        _ => None,
    }
}

/// As the decimal it holds (a JSON number).
impl serde::Serialize for Amount {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serde::Serialize::serialize(&self.0, serializer)
    }
}

impl<'de> serde::Deserialize<'de> for Amount {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(AmountVisitor)
    }
}

struct AmountVisitor;

impl AmountVisitor {
    fn read<E: serde::de::Error>(text: &str) -> Result<Amount, E> {
        Amount::parse(text, MAX_MINOR_DIGITS).map_err(|_| E::custom(format!("{SERDE_ERROR_PREFIX}{}", requirement(MAX_MINOR_DIGITS))))
    }
}

impl<'de> serde::de::Visitor<'de> for AmountVisitor {
    type Value = Amount;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an amount")
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Amount, E> {
        Self::read(&v.to_string())
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Amount, E> {
        Self::read(&v.to_string())
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Amount, E> {
        // `Display` is the shortest text that reads back as `v`, never with an exponent.
        Self::read(&v.to_string())
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Amount, E> {
        Self::read(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::str::FromStr;

    #[test]
    fn the_issue_examples_are_refused_and_plain_decimals_accepted() {
        for bad in ["1e5", "1E5", "1_000", ".5", "10.", "+1", "-1", " 1", "1 ", "1\t", "", ".", "1.2.3", "0x10", "1,5", "١٢", "NaN", "inf", "12.345"] {
            assert!(Amount::parse(bad, 2).is_err(), "{bad:?}");
        }
        for (good, value) in [("0", "0"), ("12", "12"), ("12.5", "12.5"), ("12.50", "12.50"), ("007.10", "7.10"), ("1000000000", "1000000000"), ("1000000000.00", "1000000000.00")] {
            assert_eq!(Amount::parse(good, 2).unwrap().value(), Decimal::from_str(value).unwrap(), "{good}");
        }
        assert_eq!(Amount::parse("1000000000.01", 2), Err(AmountError::OutOfRange));
        assert_eq!(Amount::parse("99999999999999999999999999999999", 2), Err(AmountError::OutOfRange));
        assert_eq!(Amount::parse("12.5", 0), Err(AmountError::TooPrecise { max: 0 }));
        assert_eq!(Amount::parse("12.345", 3).unwrap().value(), Decimal::new(12345, 3));
    }

    #[test]
    fn every_supported_currency_fits_the_json_precision_and_money() {
        for c in CurrencyCode::ALL {
            assert!(minor_digits(c) <= MAX_MINOR_DIGITS);
            assert_eq!(Amount::parse_in("19.99", c).unwrap().to_money(c).unwrap().minor, 1999);
        }
        assert_eq!(Amount::parse("1000000000", 2).unwrap().to_money(CurrencyCode::EUR).unwrap().minor, 100_000_000_000);
    }

    #[test]
    fn messages_read_as_sentences() {
        assert_eq!(
            field_message("flat_reward", 2),
            "The flat reward field must be an amount from 0 to 1000000000 with at most two decimals, written as plain digits (such as 12.50)."
        );
        assert!(requirement(0).contains("no decimals") && requirement(3).contains("12.555"));
    }

    #[test]
    fn json_values_give_the_text_of_their_literal() {
        use serde_json::json;
        assert_eq!(json_text(&json!(12.5)).as_deref(), Some("12.5"));
        assert_eq!(json_text(&json!(100000)).as_deref(), Some("100000"));
        assert_eq!(json_text(&json!(-3)).as_deref(), Some("-3"));
        assert_eq!(json_text(&json!("1e5")).as_deref(), Some("1e5"));
        assert_eq!(json_text(&json!({"other": "1"})), None);
        assert_eq!(json_text(&json!(true)), None);
        // A double's `Display` never uses an exponent.
        assert_eq!(json_text(&json!(1e21)).as_deref(), Some("1000000000000000000000"));
    }

    /// A plain decimal as written canonically: no leading zeros, 0 to `n` decimals.
    fn plain(max_minor: u32) -> impl Strategy<Value = String> {
        (0..=MAX_AMOUNT, 0..=max_minor).prop_flat_map(|(whole, scale)| {
            let top = 10i64.pow(scale);
            (Just(whole), Just(scale), 0..top.max(1))
        })
        .prop_map(|(whole, scale, part)| {
            if scale == 0 || whole == MAX_AMOUNT {
                whole.to_string()
            } else {
                format!("{whole}.{part:0width$}", width = scale as usize)
            }
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        #[test]
        fn plain_decimals_in_range_round_trip_exactly(text in plain(2)) {
            let a = Amount::parse(&text, 2).unwrap();
            prop_assert_eq!(a.to_string(), text.clone());
            prop_assert_eq!(a.value(), Decimal::from_str(&text).unwrap());
        }

        #[test]
        fn plain_decimals_round_trip_through_a_json_number(text in plain(2)) {
            // What `parse_json` does with a literal it leaves as a number.
            let v: serde_json::Value = serde_json::from_str(&format!("{{\"a\": {text}}}")).unwrap();
            let a: Amount = serde_json::from_value(v["a"].clone()).unwrap();
            prop_assert_eq!(a.value(), Decimal::from_str(&text).unwrap());
        }

        #[test]
        fn exponents_are_refused(text in plain(2), e in "[eE][+-]?[0-9]{1,3}") {
            let with_exponent = format!("{text}{e}");
            prop_assert!(Amount::parse(&with_exponent, 2).is_err());
        }

        #[test]
        fn underscores_anywhere_are_refused(text in plain(2), at in any::<prop::sample::Index>()) {
            let i = at.index(text.len() + 1);
            let mut with_underscore = text.clone();
            with_underscore.insert(i, '_');
            prop_assert!(Amount::parse(&with_underscore, 2).is_err());
        }

        #[test]
        fn a_leading_or_trailing_point_is_refused(whole in 0..=MAX_AMOUNT, part in 0..100u32) {
            let (leading, trailing) = (format!(".{part}"), format!("{whole}."));
            prop_assert!(Amount::parse(&leading, 2).is_err());
            prop_assert!(Amount::parse(&trailing, 2).is_err());
        }

        #[test]
        fn signs_and_white_space_are_refused(text in plain(2), sign in "[+-]", ws in "[ \t\r\n\u{a0}\u{2003}\u{feff}]") {
            for bad in [format!("{sign}{text}"), format!("{ws}{text}"), format!("{text}{ws}")] {
                prop_assert!(Amount::parse(&bad, 2).is_err(), "{:?}", bad);
            }
        }

        #[test]
        fn more_decimals_than_the_currency_has_are_refused(text in plain(0), extra in "[0-9]{3,6}") {
            let precise = format!("{text}.{extra}");
            prop_assert_eq!(Amount::parse(&precise, 2), Err(AmountError::TooPrecise { max: 2 }));
        }

        #[test]
        fn anything_accepted_is_digits_with_at_most_one_inner_point(s in "\\PC{0,16}") {
            if let Ok(a) = Amount::parse(&s, 2) {
                let (int, frac) = s.split_once('.').unwrap_or((&s, "1"));
                prop_assert!(!int.is_empty() && int.bytes().all(|b| b.is_ascii_digit()));
                prop_assert!(!frac.is_empty() && frac.len() <= 2 && frac.bytes().all(|b| b.is_ascii_digit()));
                prop_assert!(a.value() >= Decimal::ZERO && a.value() <= Decimal::from(MAX_AMOUNT));
            }
        }
    }
}
