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
        let limit = req
            .app_data::<web::Data<AppState>>()
            .map(|s| s.settings.server.body_limit_bytes)
            .unwrap_or(1 << 20);
        let content_type = req
            .headers()
            .get(CONTENT_TYPE)
            .map(|v| v.to_str().unwrap_or("").to_string());
        let declared_len = req
            .headers()
            .get(actix_web::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let mut payload = payload.take();
        Box::pin(async move {
            if declared_len.is_some_and(|n| n > limit) {
                return Err(too_large(limit));
            }
            let mut body = web::BytesMut::new();
            while let Some(chunk) = payload.next().await {
                let chunk = chunk.map_err(|e| ApiError::bad_request("invalid_body", format!("Could not read the request body: {e}.")))?;
                if body.len() + chunk.len() > limit {
                    return Err(too_large(limit));
                }
                body.extend_from_slice(&chunk);
            }
            let value: T = parse_json(&body, content_type.as_deref())?;
            value.validate().map_err(|e| ApiError::validation(from_validation(&e)))?;
            Ok(JsonBody(value))
        })
    }
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("The request body is larger than the limit of {limit} bytes."),
    )
}

fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Parses a body as JSON into `T`, mapping each kind of failure to its answer.
pub fn parse_json<T: DeserializeOwned>(body: &[u8], content_type: Option<&str>) -> Result<T, ApiError> {
    let blank = body.iter().all(u8::is_ascii_whitespace);
    if !blank && !content_type.is_some_and(is_json) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "Requests with a body must set Content-Type: application/json.",
        ));
    }
    let body: &[u8] = if blank { b"{}" } else { body };
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') && serde_json::from_slice::<serde_json::Value>(body).is_ok() {
        return Err(ApiError::invalid_field("payload", "The request body must be a JSON object."));
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let path = err.path().to_string();
        json_error(&path, err.into_inner())
    })?;
    de.end().map_err(|e| json_error(".", e))?;
    Ok(value)
}

fn json_error(path: &str, inner: serde_json::Error) -> ApiError {
    match inner.classify() {
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof | serde_json::error::Category::Io => {
            ApiError::bad_request("invalid_json", format!("The request body is not valid JSON: {inner}."))
        }
        serde_json::error::Category::Data => {
            let text = strip_position(&inner.to_string());
            let mut errors = FieldErrors::new();
            if let Some(field) = missing_field(&text) {
                let full = if path == "." { field.to_string() } else { format!("{path}.{field}") };
                errors.insert(full.clone(), vec![format!("The {} field is required.", human(&full))]);
            } else if path == "." {
                errors.insert("payload".into(), vec![format!("The request body must be a JSON object ({text}).")]);
            } else {
                errors.insert(path.to_string(), vec![format!("The {} field is invalid: {text}.", human(path))]);
            }
            ApiError::validation(errors)
        }
    }
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

    #[derive(Debug, Deserialize)]
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
        assert!(v["errors"]["name"][0].as_str().unwrap().starts_with("The name field is invalid"));
        let (status, _, v) = err("{}", json);
        assert_eq!(status, 422);
        assert_eq!(v["errors"]["name"][0], "The name field is required.");
        let (status, _, v) = err("[1]", json);
        assert_eq!(status, 422);
        assert!(v["errors"]["payload"].is_array());
        assert_eq!(err("{\"name\": \"x\"} trailing", json).0, 400);
    }

    #[test]
    fn blank_bodies_read_as_an_empty_object_and_json_variants_are_accepted() {
        let (status, _, v) = err("", None);
        assert_eq!(status, 422);
        assert_eq!(v["errors"]["name"][0], "The name field is required.");
        assert!(parse_json::<Body>(b"{\"name\":\"x\"}", Some("application/merge-patch+json; charset=utf-8")).is_ok());
    }
}
