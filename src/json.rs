//! The success side of the seeds' envelope and the shared JSON conventions (timestamps).

use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Serialize, Serializer};

/// `{"success": true, "data": data}` with the given status.
pub fn data<T: Serialize>(status: StatusCode, data: T) -> HttpResponse {
    HttpResponse::build(status).json(serde_json::json!({ "success": true, "data": data }))
}

/// `{"success": true, "data": data}`, 200.
pub fn ok<T: Serialize>(value: T) -> HttpResponse {
    data(StatusCode::OK, value)
}

/// `{"success": true, "data": data}`, 201.
pub fn created<T: Serialize>(value: T) -> HttpResponse {
    data(StatusCode::CREATED, value)
}

/// A percentage or rate as a JSON number: whole numbers print without a fraction (`15`, not
/// `15.0`), as the seed shows percentages.
pub fn number(d: rust_decimal::Decimal) -> serde_json::Value {
    use rust_decimal::prelude::ToPrimitive;
    let n = d.normalize();
    if n.fract().is_zero() {
        if let Some(i) = n.to_i64() {
            return serde_json::json!(i);
        }
    }
    serde_json::json!(n.to_f64().unwrap_or_default())
}

/// ISO 8601 UTC with microseconds, as the seed shows (`2024-06-07T10:15:21.000000Z`).
pub fn format_time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

pub fn time<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_time(t))
}

pub fn opt_time<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&format_time(t)),
        None => s.serialize_none(),
    }
}

/// Deserializes a field that distinguishes "absent" (outer `None`, with `#[serde(default)]`)
/// from "null" (`Some(None)`).
pub fn double_option<'de, T, D>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    T: serde::Deserialize<'de>,
    D: serde::Deserializer<'de>,
{
    serde::Deserialize::deserialize(d).map(Some)
}

/// Surrounding white space and control characters (NUL included) removed.
fn clean(s: &str) -> String {
    s.trim_matches(|c: char| c.is_whitespace() || c.is_control()).to_string()
}

/// Trims surrounding white space from a string field as it is read.
pub fn trimmed<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s: String = serde::Deserialize::deserialize(d)?;
    Ok(clean(&s))
}

/// Like [`trimmed`], for optional fields.
pub fn opt_trimmed<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let s: Option<String> = serde::Deserialize::deserialize(d)?;
    Ok(s.map(|s| clean(&s)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_numbers_print_without_fraction() {
        use rust_decimal::Decimal;
        assert_eq!(number(Decimal::new(150, 1)), serde_json::json!(15));
        assert_eq!(number(Decimal::new(125, 1)), serde_json::json!(12.5));
    }

    #[test]
    fn timestamps_have_microseconds_and_z() {
        let t = DateTime::parse_from_rfc3339("2024-06-07T10:15:21Z").unwrap().to_utc();
        assert_eq!(format_time(&t), "2024-06-07T10:15:21.000000Z");
    }
}
