//! One error type for the HTTP API, answered as RFC 9457 problem+json. A 5xx is logged
//! once here; its internals never reach the client.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::dispatcher::DomainError;
use crate::engine::EngineError;

/// An RFC 9457 problem document. `code` is stable; `detail` is for people.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// `/problems/<code>`, a relative URI naming the kind of problem.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    pub code: String,
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub detail: String,
    /// Seconds, for 503 and 429.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self { status, code, detail: detail.into(), retry_after: None }
    }
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
    }
    pub fn forbidden(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, detail)
    }
    pub fn not_found(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, detail)
    }
    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, detail)
    }
    pub fn unprocessable(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, detail)
    }
    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self { retry_after: Some(1), ..Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", detail) }
    }
    pub fn internal(context: &str, err: impl std::fmt::Display) -> Self {
        tracing::error!(error = %err, "{context}");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "an internal error occurred; it has been logged")
    }
}

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> Self {
        let status = StatusCode::from_u16(e.kind.http_status()).expect("a domain error's status is a valid one");
        ApiError::new(status, e.code.as_str(), e.detail)
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Domain(d) => d.into(),
            EngineError::Unavailable(_) => {
                ApiError::unavailable("the store cannot take writes right now; nothing was changed, retry shortly")
            }
            EngineError::Unknown(_) => ApiError {
                retry_after: Some(1),
                ..ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "outcome_unknown",
                    "the command may or may not have been done (the engine changed or did not answer in \
                     time); read the state, or retry with the same Idempotency-Key, before doing it again",
                )
            },
            EngineError::Overloaded => ApiError::unavailable("the dispatcher is at capacity; retry shortly"),
            EngineError::NotReady => ApiError::unavailable("muster is starting or stopping; retry shortly"),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        let status = r.status();
        let code = match status {
            StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
            StatusCode::UNPROCESSABLE_ENTITY => "invalid_body",
            _ => "malformed_json",
        };
        let detail = match status {
            StatusCode::PAYLOAD_TOO_LARGE => "the request body is over the configured limit".to_string(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "send the body as JSON with Content-Type: application/json".into(),
            _ => r.body_text(),
        };
        ApiError::new(status, code, detail)
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::bad_request("invalid_query", r.body_text())
    }
}

/// An optional JSON body: empty is the default.
pub(super) fn optional_body<T: Default + serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| ApiError::unprocessable("invalid_body", format!("invalid body: {e}")))
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let title = self.status.canonical_reason().unwrap_or("Error").to_string();
        let body = Problem {
            kind: format!("/problems/{}", self.code),
            title,
            status: self.status.as_u16(),
            detail: self.detail,
            code: self.code.to_string(),
        };
        let mut resp = (self.status, Json(body)).into_response();
        let headers = resp.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if let Some(s) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

/// A body that must be sent as `text/csv` (member imports, batch invitations): 415 otherwise,
/// with `detail` saying what to send.
pub fn require_csv(headers: &axum::http::HeaderMap, detail: &str) -> Result<(), ApiError> {
    let csv = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/csv"));
    if csv { Ok(()) } else { Err(ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", detail)) }
}

/// A `?status=` filter: `None` when absent, the value named, or 400 `invalid_query` naming
/// the choices.
pub fn status_filter<T: Copy>(given: Option<&str>, choices: &[(&str, T)]) -> Result<Option<T>, ApiError> {
    let Some(given) = given else { return Ok(None) };
    match choices.iter().find(|(name, _)| *name == given) {
        Some((_, v)) => Ok(Some(*v)),
        None => {
            let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
            Err(ApiError::bad_request("invalid_query", format!("status '{given}' is not one of {}", names.join(", "))))
        }
    }
}

/// A count as JSON Schema's `integer` has it: `3` and `3.0` alike (serde's `u32` refuses
/// the second, which a client may well send and the document allows). Anything else, a
/// fraction, a negative number or one too big, is refused as serde would.
pub(super) fn whole_u32<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    use serde::de::{Deserialize, Error};
    let n = serde_json::Number::deserialize(d)?;
    let whole = n.as_u64().or_else(|| n.as_f64().filter(|f| f.fract() == 0.0 && *f >= 0.0).map(|f| f as u64));
    whole
        .and_then(|w| u32::try_from(w).ok())
        .ok_or_else(|| D::Error::custom(format!("invalid value: {n}, expected a whole number from 0 to {}", u32::MAX)))
}

/// `whole_u32` for an optional count (absent or `null`: `None`); use with `#[serde(default)]`.
pub(super) fn whole_u32_opt<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    #[derive(serde::Deserialize)]
    struct Whole(#[serde(deserialize_with = "whole_u32")] u32);
    use serde::Deserialize;
    Ok(Option::<Whole>::deserialize(d)?.map(|w| w.0))
}
