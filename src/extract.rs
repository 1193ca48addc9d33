//! Request extractors that turn bad input into the seeds' envelope instead of actix's
//! plain-text errors: JSON bodies (content type, size limit, syntax, field types,
//! validation rules) and the configs for path and query extraction.

use crate::error::{from_validation, ApiError, FieldErrors};
use crate::state::AppState;
use actix_web::dev::Payload;
use actix_web::http::header::CONTENT_TYPE;
use actix_web::http::StatusCode;
use actix_web::{web, FromRequest, HttpRequest};
use futures_util::future::LocalBoxFuture;
use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use validator::Validate;

/// A JSON body that is well-formed, within the size limit, of the right types and valid by
/// its `validator` rules. An empty body reads as `{}`, so required fields report as missing.
pub struct JsonBody<T>(pub T);

impl<T> JsonBody<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T: DeserializeOwned + Validate + 'static> FromRequest for JsonBody<T> {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let content_type = req
            .headers()
            .get(CONTENT_TYPE)
            .map(|v| v.to_str().unwrap_or("").to_string());
        let body = read_body(req, payload.take());
        Box::pin(async move {
            let body = body.await?;
            parse_json(&body, content_type.as_deref()).map(JsonBody)
        })
    }
}

/// The configured body limit (`server.body_limit_bytes`).
fn body_limit(req: &HttpRequest) -> usize {
    req.app_data::<web::Data<AppState>>().map(|s| s.settings.server.body_limit_bytes).unwrap_or(1 << 20)
}

/// Reads a request body of at most the configured limit: 413 `payload_too_large` in the
/// envelope when the declared length or the bytes read pass it (actix's own `Bytes`, `Form`
/// and `Json` extractors answer a plain-text 413 instead), 400 `invalid_body` when the body
/// cannot be read. The stream is read as it is: callers that accept a `Content-Encoding`
/// wrap it first (see [`read_decoded_body`]).
pub fn read_body<S>(req: &HttpRequest, stream: S) -> LocalBoxFuture<'static, Result<web::BytesMut, ApiError>>
where
    S: futures_util::Stream<Item = Result<web::Bytes, actix_web::error::PayloadError>> + 'static,
{
    let limit = body_limit(req);
    let declared_len = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    Box::pin(async move {
        if declared_len.is_some_and(|n| n > limit) {
            return Err(ApiError::payload_too_large(limit));
        }
        let mut stream = Box::pin(stream);
        let mut body = web::BytesMut::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| ApiError::bad_request("invalid_body", format!("Could not read the request body: {e}.")))?;
            if body.len() + chunk.len() > limit {
                return Err(ApiError::payload_too_large(limit));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    })
}

/// [`read_body`] after undoing the request's `Content-Encoding` (gzip), as actix's `Bytes`
/// extractor does: the limit applies to the decoded bytes.
pub async fn read_decoded_body(req: &HttpRequest, payload: web::Payload) -> Result<web::BytesMut, ApiError> {
    let decoded = actix_web::dev::Decompress::from_headers(payload.into_inner(), req.headers());
    read_body(req, decoded).await
}

/// Reads a [`JsonBody`] inside a handler, after the handler's own checks (scope, approval).
/// Extractors are polled together, so a body taken as an extractor can answer its 422 before
/// the caller's 401 or 403 is known; reading it here keeps the seed's order of answers.
pub async fn read_json<T: DeserializeOwned + Validate + 'static>(req: &HttpRequest, payload: web::Payload) -> Result<T, ApiError> {
    JsonBody::<T>::from_request(req, &mut payload.into_inner()).await.map(JsonBody::into_inner)
}

fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Parses a body as JSON into `T`, mapping each kind of failure to its answer: not JSON at
/// all is a 400; a JSON document of the wrong shape is a 422 that names every field with a
/// wrong type (each bad field is set aside and the rest read again) and, once the types are
/// right, every field that breaks a validation rule.
pub fn parse_json<T: DeserializeOwned + Validate>(body: &[u8], content_type: Option<&str>) -> Result<T, ApiError> {
    let blank = body.iter().all(u8::is_ascii_whitespace);
    if !blank && !content_type.is_some_and(is_json) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "Requests with a body must set Content-Type: application/json.",
        ));
    }
    let body: &[u8] = if blank { b"{}" } else { body };
    let mut doc: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request("invalid_json", format!("The request body is not valid JSON: {e}.")))?;
    if !doc.is_object() {
        return Err(ApiError::invalid_field("payload", "The request body must be a JSON object."));
    }
    if let Some(marked) = mark_inexact_numbers(body) {
        doc = serde_json::from_slice(&marked)
            .map_err(|e| ApiError::bad_request("invalid_json", format!("The request body is not valid JSON: {e}.")))?;
    }
    let mut errors = FieldErrors::new();
    for _ in 0..64 {
        match serde_path_to_error::deserialize::<_, T>(&doc) {
            Ok(value) => {
                if let Err(e) = value.validate() {
                    for (field, messages) in from_validation(&e) {
                        errors.entry(field).or_insert(messages);
                    }
                }
                return if errors.is_empty() { Ok(value) } else { Err(ApiError::validation(errors)) };
            }
            Err(err) => {
                let path: Vec<serde_path_to_error::Segment> = err.path().iter().cloned().collect();
                let shown = dotted(&path);
                let text = strip_position(&err.into_inner().to_string());
                let (field, message) = match missing_field(&text) {
                    Some(f) => {
                        let full = if shown == "." { f.to_string() } else { format!("{shown}.{f}") };
                        let msg = format!("The {} field is required.", human(&full));
                        (full, msg)
                    }
                    None => (shown.clone(), type_message(&human(&shown), &text)),
                };
                let repeated = errors.contains_key(&field);
                if !repeated {
                    errors.insert(field, vec![message]);
                }
                // Set the bad field aside and read the rest again, unless that cannot help.
                if repeated || shown == "." || !remove_at(&mut doc, &path) {
                    break;
                }
            }
        }
    }
    Err(ApiError::validation(errors))
}

/// The body with every number literal that a double would not hold as written (an exponent,
/// or more than 15 significant digits) turned into a string of that literal; `None` when there
/// is none. Only for a body already read as valid JSON.
///
/// JSON readers make a double of a number, so `1e5` and `100000` are the same to them, and
/// `19.999999999999999` is 20. As a string, the literal reaches each type as written: an
/// amount ([`crate::domain::Amount`]) refuses what is not a plain decimal; a `Decimal` field
/// (a percentage, a rate) reads it exactly (exponents included, as before); an integer field
/// refuses it as it refused the number ("must be a whole number").
fn mark_inexact_numbers(body: &[u8]) -> Option<Vec<u8>> {
    let mut out: Option<Vec<u8>> = None;
    let (mut i, mut copied, mut in_string) = (0usize, 0usize, false);
    while i < body.len() {
        let b = body[i];
        if in_string {
            match b {
                b'\\' => i += 2,
                b'"' => {
                    in_string = false;
                    i += 1;
                }
                _ => i += 1,
            }
            continue;
        }
        match b {
            b'"' => {
                in_string = true;
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i < body.len() && matches!(body[i], b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E') {
                    i += 1;
                }
                let literal = &body[start..i];
                if !held_exactly(literal) {
                    let o = out.get_or_insert_with(|| Vec::with_capacity(body.len() + 64));
                    o.extend_from_slice(&body[copied..start]);
                    o.push(b'"');
                    o.extend_from_slice(literal);
                    o.push(b'"');
                    copied = i;
                }
            }
            _ => i += 1,
        }
    }
    out.map(|mut o| {
        o.extend_from_slice(&body[copied..]);
        o
    })
}

/// Whether serde_json's reading of a JSON number literal keeps its value exactly: integers
/// within `u64`/`i64` are kept as integers; a literal with a fraction, without an exponent,
/// of at most 15 significant digits is held exactly by a double (any two such decimals are
/// different doubles), so the double's shortest form is the literal's value.
fn held_exactly(literal: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(literal) else { return false };
    if text.contains(['e', 'E']) {
        return false;
    }
    let digits = text.trim_start_matches('-');
    match digits.split_once('.') {
        None => text.parse::<u64>().is_ok() || text.parse::<i64>().is_ok(),
        Some((int, frac)) => {
            let (int, frac) = (int.trim_start_matches('0'), frac.trim_end_matches('0'));
            let significant = if int.is_empty() { frac.trim_start_matches('0').len() } else { int.len() + frac.len() };
            significant <= 15
        }
    }
}

/// A field path the way 422 errors name fields: `user.email`, `scopes.0`.
fn dotted(path: &[serde_path_to_error::Segment]) -> String {
    use serde_path_to_error::Segment;
    let parts: Vec<String> = path
        .iter()
        .filter_map(|s| match s {
            Segment::Map { key } => Some(key.clone()),
            Segment::Seq { index } => Some(index.to_string()),
            Segment::Enum { variant } => Some(variant.clone()),
            Segment::Unknown => None,
        })
        .collect();
    if parts.is_empty() { ".".to_string() } else { parts.join(".") }
}

/// Removes the value at `path` from a JSON document; false when there is nothing to remove.
fn remove_at(doc: &mut serde_json::Value, path: &[serde_path_to_error::Segment]) -> bool {
    use serde_path_to_error::Segment;
    if let Some(Segment::Seq { .. }) = path.last() {
        // Removing one element would shift the others: set the whole list aside.
        return remove_at(doc, &path[..path.len() - 1]);
    }
    let Some((last, parents)) = path.split_last() else { return false };
    let mut node = doc;
    for seg in parents {
        node = match (seg, node) {
            (Segment::Map { key }, serde_json::Value::Object(m)) => match m.get_mut(key) {
                Some(n) => n,
                None => return false,
            },
            (Segment::Seq { index }, serde_json::Value::Array(a)) => match a.get_mut(*index) {
                Some(n) => n,
                None => return false,
            },
            _ => return false,
        };
    }
    match (last, node) {
        (Segment::Map { key }, serde_json::Value::Object(m)) => m.remove(key).is_some(),
        _ => false,
    }
}

/// A sentence for a value of the wrong type, without Rust type names.
fn type_message(field: &str, serde_text: &str) -> String {
    if let Some(requirement) = serde_text.strip_prefix(crate::domain::amount::SERDE_ERROR_PREFIX) {
        return format!("The {field} field {requirement}.");
    }
    if serde_text.ends_with("expected an amount") {
        return format!("The {field} field {}.", crate::domain::amount::requirement(crate::domain::amount::MAX_MINOR_DIGITS));
    }
    let expected = serde_text.rsplit("expected ").next().unwrap_or("");
    if serde_text.starts_with("invalid type: null") && expected.contains("string") {
        return format!("The {field} field is required.");
    }
    let what = match expected {
        e if ["u8", "u16", "u32", "u64", "usize"].contains(&e) => "a whole number of at least 0",
        e if ["i8", "i16", "i32", "i64", "isize"].contains(&e) => "a whole number",
        e if e.contains("string") => "a string",
        e if e.contains("bool") => "true or false",
        e if e.contains("sequence") => "a list",
        e if e.contains("map") || e.contains("struct") => "an object",
        e if e.contains("Decimal") || e.contains("decimal") || e.contains("number") => "a number",
        e if e.contains("RFC 3339") || e.contains("datetime") => "an ISO 8601 date and time",
        _ => return format!("The {field} field is invalid: {serde_text}."),
    };
    format!("The {field} field must be {what}.")
}

fn strip_position(text: &str) -> String {
    match text.find(" at line ") {
        Some(i) => text[..i].to_string(),
        None => text.to_string(),
    }
}

fn missing_field(text: &str) -> Option<&str> {
    text.strip_prefix("missing field `")?.split('`').next()
}

fn human(path: &str) -> String {
    path.replace('_', " ")
}

/// Path parameters that do not parse (e.g. a non-numeric id) name no resource: 404.
pub fn path_config() -> web::PathConfig {
    web::PathConfig::default().error_handler(|_err, _req| ApiError::not_found("Resource not found.").into())
}

/// Query strings of the wrong shape answer 422 naming the problem.
pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|err, _req| {
        ApiError::invalid_field("query", format!("The query string is invalid: {err}.")).into()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, validator::Validate)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        #[serde(default)]
        active: bool,
    }

    fn err(body: &str, ct: Option<&str>) -> (u16, String, serde_json::Value) {
        let e = parse_json::<Body>(body.as_bytes(), ct).unwrap_err();
        use actix_web::ResponseError;
        let status = e.status_code().as_u16();
        let res = e.error_response();
        let bytes = actix_web::body::MessageBody::try_into_bytes(res.into_body()).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        (status, v["code"].as_str().unwrap().to_string(), v)
    }

    #[test]
    fn each_kind_of_bad_body_has_its_status() {
        let json = Some("application/json");
        assert_eq!(err("{\"name\": ", json).0, 400);
        assert_eq!(err("{\"name\": \"x\"}", Some("text/plain")).0, 415);
        assert_eq!(err("{\"name\": \"x\"}", None).0, 415);
        let (status, code, v) = err("{\"name\": 5}", json);
        assert_eq!((status, code.as_str()), (422, "validation_failed"));
        assert_eq!(v["errors"]["name"][0], "The name field must be a string.");
        let (status, _, v) = err("{}", json);
        assert_eq!(status, 422);
        assert_eq!(v["errors"]["name"][0], "The name field is required.");
        let (status, _, v) = err("[1]", json);
        assert_eq!(status, 422);
        assert!(v["errors"]["payload"].is_array());
        assert_eq!(err("{\"name\": \"x\"} trailing", json).0, 400);
    }

    #[derive(Debug, Deserialize, validator::Validate)]
    #[allow(dead_code)]
    struct Priced {
        price: Option<crate::domain::Amount>,
        #[serde(default)]
        count: Option<u64>,
        #[serde(default)]
        share: Option<rust_decimal::Decimal>,
        #[serde(default)]
        title: Option<String>,
    }

    fn priced(body: &str) -> Result<Priced, (u16, serde_json::Value)> {
        use actix_web::ResponseError;
        parse_json::<Priced>(body.as_bytes(), Some("application/json")).map_err(|e| {
            let status = e.status_code().as_u16();
            let bytes = actix_web::body::MessageBody::try_into_bytes(e.error_response().into_body()).unwrap();
            (status, serde_json::from_slice(&bytes).unwrap())
        })
    }

    #[test]
    fn amounts_are_read_from_the_literal_as_written() {
        use rust_decimal::Decimal;
        use std::str::FromStr;
        for (body, value) in [
            (r#"{"price": 12.5}"#, "12.5"),
            (r#"{"price": 100000}"#, "100000"),
            (r#"{"price": 19.99}"#, "19.99"),
            (r#"{"price": 0.1}"#, "0.1"),
            (r#"{"price": 1000000000}"#, "1000000000"),
            (r#"{"price": 12.500}"#, "12.5"),
            (r#"{"price": "12.50"}"#, "12.50"),
            (r#"{"price": 0}"#, "0"),
        ] {
            let p = priced(body).unwrap_or_else(|e| panic!("{body}: {e:?}"));
            assert_eq!(p.price.unwrap().value(), Decimal::from_str(value).unwrap(), "{body}");
        }
        for body in [
            r#"{"price": 1e5}"#,
            r#"{"price": 1E2}"#,
            r#"{"price": 1.5e0}"#,
            r#"{"price": 100000e-5}"#,
            r#"{"price": 19.999999999999999}"#,
            r#"{"price": 1.005}"#,
            r#"{"price": -1}"#,
            r#"{"price": -0.01}"#,
            r#"{"price": 1000000000.01}"#,
            r#"{"price": 9999999999999999999}"#,
            r#"{"price": 99999999999999999999999}"#,
            r#"{"price": "1e5"}"#,
            r#"{"price": "1_000"}"#,
            r#"{"price": ".5"}"#,
            r#"{"price": "10."}"#,
            r#"{"price": " 12"}"#,
            r#"{"price": true}"#,
            r#"{"price": [1]}"#,
            r#"{"price": {"x": 1}}"#,
        ] {
            let (status, v) = priced(body).err().unwrap_or_else(|| panic!("{body} was accepted"));
            assert_eq!(status, 422, "{body}: {v}");
            let message = v["errors"]["price"][0].as_str().unwrap_or_else(|| panic!("{body}: {v}"));
            assert!(message.starts_with("The price field must be"), "{body}: {message}");
        }
        let (_, v) = priced(r#"{"price": 1e5}"#).unwrap_err();
        assert_eq!(
            v["errors"]["price"][0],
            "The price field must be an amount from 0 to 1000000000 with at most two decimals, written as plain digits (such as 12.50)."
        );
    }

    #[test]
    fn other_fields_read_a_literal_handed_on_as_text_as_before() {
        use rust_decimal::Decimal;
        use std::str::FromStr;
        // An integer field refuses it with the same message as the number; a decimal reads
        // it exactly (an exponent as before, more digits than a double holds now kept).
        let (_, v) = priced(r#"{"price": 1, "count": 1e2}"#).unwrap_err();
        assert_eq!(v["errors"]["count"][0], "The count field must be a whole number of at least 0.");
        let p = priced(r#"{"share": 1.25e1, "title": "t"}"#).unwrap();
        assert_eq!(p.share, Some(Decimal::new(125, 1)));
        let p = priced(r#"{"share": 0.7913270554720265}"#).unwrap();
        assert_eq!(p.share, Some(Decimal::from_str("0.7913270554720265").unwrap()));
        // Strings that look like numbers, escapes and nesting are left alone.
        let p = priced(r#"{"price": 2.5, "title": "1e5 \"2e3\" \\", "share": 12.5, "count": 3}"#).unwrap();
        assert_eq!(p.title.as_deref(), Some(r#"1e5 "2e3" \"#));
        assert_eq!(mark_inexact_numbers(br#"{"a": [1, 2.5, -3, "4e4", 18446744073709551615, -9223372036854775808], "b": {"c": 0.25}}"#), None);
        assert_eq!(
            mark_inexact_numbers(br#"{"a": [1e5, -2E-3], "b": 0.30000000000000004, "c": 18446744073709551616}"#).unwrap(),
            br#"{"a": ["1e5", "-2E-3"], "b": "0.30000000000000004", "c": "18446744073709551616"}"#.to_vec()
        );
        // A body that is one number stays a 422 on the payload.
        assert_eq!(priced("1e5").unwrap_err().1["errors"]["payload"][0], "The request body must be a JSON object.");
    }

    #[test]
    fn blank_bodies_read_as_an_empty_object_and_json_variants_are_accepted() {
        let (status, _, v) = err("", None);
        assert_eq!(status, 422);
        assert_eq!(v["errors"]["name"][0], "The name field is required.");
        assert!(parse_json::<Body>(b"{\"name\":\"x\"}", Some("application/merge-patch+json; charset=utf-8")).is_ok());
    }
}
