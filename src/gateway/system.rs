//! The probes, the metrics and the router's fallbacks: what answers without a caller.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::error::{ApiError, Problem};
use super::{API_TAG, AppState};

#[utoipa::path(get, path = "/healthz", tag = API_TAG, responses((status = 200, description = "the process is up")))]
pub async fn healthz() -> &'static str {
    "ok"
}

#[utoipa::path(get, path = "/readyz", tag = API_TAG, responses(
    (status = 200, description = "the store is open and the log replayed"),
    (status = 503, description = "starting, or the store is unavailable", body = Problem, content_type = "application/problem+json")))]
pub async fn readyz(State(app): State<AppState>) -> Result<&'static str, ApiError> {
    if app.engine.is_ready() {
        Ok("ready")
    } else {
        Err(ApiError::unavailable("not ready: the log is being replayed or the store is unavailable"))
    }
}

#[utoipa::path(get, path = "/metrics", tag = API_TAG, responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub async fn metrics(State(app): State<AppState>) -> Response {
    let body = app.metrics.as_ref().map(|h| h.render()).unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

pub async fn not_found() -> ApiError {
    ApiError::not_found("no_route", "no such endpoint; see /openapi.json")
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "this endpoint does not take that method")
}
