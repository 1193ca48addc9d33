//! The success side of the seeds' envelope and the shared JSON conventions (timestamps).

use actix_web::http::header::ContentType;
use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Serialize, Serializer};
use serde_json::Value;
use std::borrow::Cow;

/// `{"success": true, "data": data}` with the given status.
pub fn data<T: Serialize>(status: StatusCode, data: T) -> HttpResponse {
    HttpResponse::build(status).json(serde_json::json!({ "success": true, "data": data }))
}

/// `{"success": true, "data": data}`, 200.
pub fn ok<T: Serialize>(value: T) -> HttpResponse {
    data(StatusCode::OK, value)
}

/// Opens the envelope of an answer written as bytes: what [`data`] would print before `data`.
pub const DATA_OPEN: &[u8] = br#"{"success":true,"data":"#;

/// A 200 answer whose body is already-written JSON (e.g. [`DATA_OPEN`] … `}`): the same
/// headers as [`ok`], without a `Value` in between.
pub fn ok_bytes(body: Vec<u8>) -> HttpResponse {
    HttpResponse::Ok().content_type(ContentType::json()).body(body)
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

/// A JSON fragment rendered once and reused by many requests: bytes with holes where each
/// request writes its own values ([`Fragment::write`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fragment {
    bytes: Box<[u8]>,
    /// (offset in `bytes`, fill index), in order.
    holes: Box<[(u32, u8)]>,
}

impl Fragment {
    /// The fragment with `fills[i]` written at every hole `i`.
    pub fn write(&self, out: &mut Vec<u8>, fills: &[&[u8]]) {
        let mut at = 0;
        for &(pos, fill) in self.holes.iter() {
            out.extend_from_slice(&self.bytes[at..pos as usize]);
            out.extend_from_slice(fills[fill as usize]);
            at = pos as usize;
        }
        out.extend_from_slice(&self.bytes[at..]);
    }

    /// Bytes without the fills.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

/// Writes a [`Fragment`]: compact JSON exactly as `serde_json` prints it, plus holes.
#[derive(Default)]
pub struct FragmentBuilder {
    bytes: Vec<u8>,
    holes: Vec<(u32, u8)>,
}

impl FragmentBuilder {
    pub fn raw(&mut self, b: &[u8]) -> &mut Self {
        self.bytes.extend_from_slice(b);
        self
    }

    /// A string's contents, escaped, without the quotes.
    pub fn str_contents(&mut self, s: &str) -> &mut Self {
        self.bytes.extend_from_slice(escaped_contents(s).as_bytes());
        self
    }

    pub fn hole(&mut self, fill: u8) -> &mut Self {
        let at = u32::try_from(self.bytes.len()).expect("a fragment under 4 GiB");
        self.holes.push((at, fill));
        self
    }

    /// `v` as `serde_json::to_writer` prints it (compact, keys in map order); `visit` may
    /// write any object member itself (it gets the key, the value and the builder, the key and
    /// colon already written) and answers whether it did.
    pub fn value(&mut self, v: &Value, visit: &mut impl FnMut(&str, &Value, &mut Self) -> bool) -> &mut Self {
        match v {
            Value::Array(items) => {
                self.bytes.push(b'[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        self.bytes.push(b',');
                    }
                    self.value(item, visit);
                }
                self.bytes.push(b']');
            }
            Value::Object(map) => {
                self.bytes.push(b'{');
                for (i, (k, item)) in map.iter().enumerate() {
                    if i > 0 {
                        self.bytes.push(b',');
                    }
                    self.scalar(k);
                    self.bytes.push(b':');
                    if !visit(k, item, self) {
                        self.value(item, visit);
                    }
                }
                self.bytes.push(b'}');
            }
            scalar => self.scalar(scalar),
        }
        self
    }

    fn scalar<T: Serialize + ?Sized>(&mut self, v: &T) {
        serde_json::to_writer(&mut self.bytes, v).expect("strings, numbers and null always serialize");
    }

    pub fn finish(self) -> Fragment {
        Fragment { bytes: self.bytes.into_boxed_slice(), holes: self.holes.into_boxed_slice() }
    }
}

/// A string's contents as a JSON string literal holds them (without the quotes); borrowed
/// when nothing needs escaping, the usual case.
pub fn escaped_contents(s: &str) -> Cow<'_, str> {
    // What serde_json escapes: control characters, `"` and `\`; nothing else.
    if !s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
        return Cow::Borrowed(s);
    }
    let quoted = serde_json::to_string(s).expect("a string always serializes");
    Cow::Owned(quoted[1..quoted.len() - 1].to_string())
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

    #[test]
    fn fragments_print_like_serde_json_with_their_holes_filled() {
        let v = serde_json::json!({
            "a": [1, 2.5, null, true, "x\"y\\z\n\u{1}é/"],
            "url": "/course/s?affiliate=0",
            "o": {"url": "/b", "n": {}, "e": []},
        });
        let mut b = FragmentBuilder::default();
        b.value(&v, &mut |k, v, b| {
            let Some(s) = v.as_str().filter(|_| k == "url") else { return false };
            b.raw(b"\"").hole(0).str_contents(s).hole(1).raw(b"\"");
            true
        });
        let f = b.finish();
        let mut out = Vec::new();
        f.write(&mut out, &[b"https://h", b"7"]);
        let mut expected = v.clone();
        expected["url"] = "https://h/course/s?affiliate=07".into();
        expected["o"]["url"] = "https://h/b7".into();
        assert_eq!(String::from_utf8(out).unwrap(), serde_json::to_string(&expected).unwrap());
    }

    #[test]
    fn escaping_matches_serde_json() {
        for s in ["plain", "q\"uote", "back\\slash", "nl\n", "\u{0}\u{1f}\u{7f}", "é ü 🚀 /", ""] {
            let quoted = serde_json::to_string(s).unwrap();
            assert_eq!(escaped_contents(s), &quoted[1..quoted.len() - 1], "{s:?}");
        }
        assert!(matches!(escaped_contents("https://example.com/x"), Cow::Borrowed(_)));
    }
}
