//! The API's errors, in one visible place.
//!
//! Every failure leaves the service in the seeds' envelope:
//! `{"success": false, "message": "...", "code": "..."}`, plus `errors: {field: [messages]}`
//! on 422. `code` is stable and machine-readable; `message` is for people and, where a seed
//! gives one, is the seed's text word for word. Unexpected errors are logged with their
//! chain and answered as a plain 500 that never leaks internals.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

/// Field name → messages, as in Laravel's validation errors.
pub type FieldErrors = BTreeMap<String, Vec<String>>;

/// Seed messages, word for word.
pub mod messages {
    pub const KEY_MISSING: &str = "API key is missing.";
    pub const KEY_INVALID: &str = "API key is invalid.";
    pub const AFFILIATE_INACTIVE: &str = "Affiliate account is not active.";
    pub const AFFILIATE_NOT_RESOLVED: &str = "Affiliate not resolved for the request.";
    pub const INSUFFICIENT_SCOPE: &str = "Insufficient scope.";
    pub const BLOG_APPROVAL_REQUIRED: &str = "Blog management scopes require approval.";
    pub const AFFILIATE_USER_UNAVAILABLE: &str = "Affiliate user account is unavailable.";
    pub const BLOG_NOT_FOUND: &str = "Blog not found.";
    pub const WEBHOOK_NOT_FOUND: &str = "Webhook not found.";
}

/// An error answer: status, stable code, message and, for validation, field errors.
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: Cow<'static, str>,
    errors: Option<FieldErrors>,
    source: Option<anyhow::Error>,
    /// Extra response headers (`Retry-After`, rate-limit information).
    headers: Vec<(&'static str, String)>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Self { status, code, message: message.into(), errors: None, source: None, headers: Vec::new() }
    }

    /// 401 `unauthenticated` with one of the seed's messages.
    pub fn unauthenticated(message: &'static str) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", message)
    }

    /// 403 `insufficient_scope`: "Insufficient scope."
    pub fn insufficient_scope() -> Self {
        Self::new(StatusCode::FORBIDDEN, "insufficient_scope", messages::INSUFFICIENT_SCOPE)
    }

    /// 404 `not_found`.
    pub fn not_found(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 409 `conflict`.
    pub fn conflict(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    /// 400 with a specific code (malformed JSON, bad query string).
    pub fn bad_request(code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 413 `payload_too_large`: the body passes the configured limit (JSON and postback bodies).
    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", format!("The request body is larger than the limit of {limit} bytes."))
    }

    /// 422 `validation_failed` with field errors; the message is the first error, Laravel style.
    pub fn validation(errors: FieldErrors) -> Self {
        let total: usize = errors.values().map(Vec::len).sum();
        let first = errors
            .values()
            .flat_map(|v| v.first())
            .next()
            .cloned()
            .unwrap_or_else(|| "The given data was invalid.".to_string());
        let message = match total {
            0 | 1 => first,
            2 => format!("{first} (and 1 more error)"),
            n => format!("{first} (and {} more errors)", n - 1),
        };
        let mut e = Self::new(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed", message);
        e.errors = Some(errors);
        e
    }

    /// 422 on one field.
    pub fn invalid_field(field: &str, message: impl Into<String>) -> Self {
        let mut errors = FieldErrors::new();
        errors.insert(field.to_string(), vec![message.into()]);
        Self::validation(errors)
    }

    /// 500 `internal_error`; the cause is logged, never sent.
    pub fn internal(err: impl Into<anyhow::Error>) -> Self {
        let mut e = Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", "Internal server error.");
        e.source = Some(err.into());
        e
    }

    /// 503 `unavailable` (a dependency such as the store is unreachable).
    pub fn unavailable(err: impl Into<anyhow::Error>) -> Self {
        let mut e = Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "Service temporarily unavailable.");
        e.source = Some(err.into());
        e.with_header("retry-after", "1".into())
    }

    /// Replaces the human message (e.g. a seed's exact text for a 422).
    pub fn set_message(&mut self, message: impl Into<Cow<'static, str>>) {
        self.message = message.into();
    }

    /// 429 `rate_limited` with `Retry-After`.
    pub fn rate_limited(message: &'static str, retry_after_secs: u64) -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message).with_header("retry-after", retry_after_secs.to_string())
    }

    /// Adds a response header (rate-limit information on a 429).
    pub fn with_header(mut self, name: &'static str, value: String) -> Self {
        self.headers.push((name, value));
        self
    }

    pub fn code(&self) -> &'static str {
        self.code
    }

    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Debug for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiError")
            .field("status", &self.status.as_u16())
            .field("code", &self.code)
            .field("message", &self.message)
            .field("source", &self.source)
            .finish()
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.code, self.message)
    }
}

#[derive(Serialize)]
struct Envelope<'a> {
    success: bool,
    message: &'a str,
    code: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    errors: Option<&'a FieldErrors>,
}

/// The requests answered 503 because a backend was unavailable.
static UNAVAILABLE: std::sync::LazyLock<hissaback_topics::lograte::LogRate> =
    std::sync::LazyLock::new(|| hissaback_topics::lograte::LogRate::new("requests answered 503 (a backend is unavailable)"));

/// Counts an answer below 500: ends a run of 503s in the log (one atomic load otherwise).
pub fn note_answered() {
    if UNAVAILABLE.is_failing() {
        UNAVAILABLE.success();
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        if let Some(source) = &self.source {
            if self.status == StatusCode::SERVICE_UNAVAILABLE {
                // An outage of the store or the event log fails every request that needs it:
                // one line when it starts, a reminder a minute, `recovered` at the first
                // answer below 500 after it (see `note_answered`).
                UNAVAILABLE.failure(&format_args!("{}: {source:?}", self.code));
            } else {
                tracing::error!(code = self.code, error = ?source, "request failed");
            }
        }
        let mut res = HttpResponse::build(self.status);
        for (name, value) in &self.headers {
            res.insert_header((*name, value.clone()));
        }
        res.json(Envelope {
            success: false,
            message: &self.message,
            code: self.code,
            errors: self.errors.as_ref(),
        })
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(err: crate::store::StoreError) -> Self {
        match err {
            crate::store::StoreError::Unavailable(e) => ApiError::unavailable(e),
            other => ApiError::internal(other),
        }
    }
}

/// Rust field names whose wire name differs (`#[serde(rename = "type")]`): `validator`
/// reports the Rust name, the 422 must name the field the caller sent.
const WIRE_NAMES: [(&str, &str); 2] = [("model_type", "type"), ("promotion_type", "type")];

/// Turns `validator` errors into the field map of a 422.
pub fn from_validation(errors: &validator::ValidationErrors) -> FieldErrors {
    let mut out = FieldErrors::new();
    collect(errors, "", &mut out);
    out.into_iter()
        .map(|(field, messages)| {
            let wire = WIRE_NAMES.iter().find(|(rust, _)| *rust == field).map(|(_, w)| w.to_string());
            let messages = match &wire {
                Some(w) => messages.into_iter().map(|m| m.replace(&field.replace('_', " "), w)).collect(),
                None => messages,
            };
            (wire.unwrap_or(field), messages)
        })
        .collect()
}

fn collect(errors: &validator::ValidationErrors, prefix: &str, out: &mut FieldErrors) {
    collect_all(errors, prefix, out);
    // A missing value fails `required`; its other rules would only repeat that.
    for messages in out.values_mut() {
        if let Some(req) = messages.iter().find(|m| m.ends_with("field is required.")).cloned() {
            *messages = vec![req];
        }
    }
}

fn collect_all(errors: &validator::ValidationErrors, prefix: &str, out: &mut FieldErrors) {
    use validator::ValidationErrorsKind;
    for (field, kind) in errors.errors() {
        let path = if prefix.is_empty() { field.to_string() } else { format!("{prefix}.{field}") };
        match kind {
            ValidationErrorsKind::Field(list) => {
                let msgs = out.entry(path.clone()).or_default();
                for e in list {
                    msgs.push(e.message.as_ref().map(|m| m.to_string()).unwrap_or_else(|| default_message(&path, e)));
                }
            }
            ValidationErrorsKind::Struct(inner) => collect_all(inner, &path, out),
            ValidationErrorsKind::List(items) => {
                for (i, inner) in items {
                    collect_all(inner, &format!("{path}.{i}"), out);
                }
            }
        }
    }
}

fn default_message(field: &str, e: &validator::ValidationError) -> String {
    let human = field.replace('_', " ");
    match e.code.as_ref() {
        "length" => match e.params.get("max") {
            Some(max) => format!("The {human} field must not be greater than {max} characters."),
            None => format!("The {human} field has an invalid length."),
        },
        "email" => format!("The {human} field must be a valid email address."),
        "url" => format!("The {human} field must be a valid URL."),
        "range" => format!("The {human} field is out of range."),
        "required" => format!("The {human} field is required."),
        other => format!("The {human} field is invalid ({other})."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::MessageBody;

    fn body(e: ApiError) -> serde_json::Value {
        let res = e.error_response();
        let bytes = res.into_body().try_into_bytes().unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[test]
    fn envelope_has_success_message_and_code() {
        let v = body(ApiError::unauthenticated(messages::KEY_MISSING));
        assert_eq!(v, serde_json::json!({"success": false, "message": "API key is missing.", "code": "unauthenticated"}));
    }

    #[test]
    fn validation_carries_errors_and_a_laravel_style_message() {
        let mut errors = FieldErrors::new();
        errors.insert("email".into(), vec!["The email field is required.".into()]);
        errors.insert("name".into(), vec!["The name field is required.".into()]);
        let v = body(ApiError::validation(errors));
        assert_eq!(v["message"], "The email field is required. (and 1 more error)");
        assert_eq!(v["code"], "validation_failed");
        assert_eq!(v["errors"]["name"][0], "The name field is required.");
    }

    #[test]
    fn internal_errors_do_not_leak() {
        let v = body(ApiError::internal(anyhow::anyhow!("disk /secret/path is full")));
        assert_eq!(v["message"], "Internal server error.");
        assert!(!v.to_string().contains("secret"));
    }
}
