//! `/v1/webhooks`: command's outbound webhook endpoints (`domain::webhooks` decides,
//! `crate::webhooks` delivers). Here is what only the edge does: check where a URL leads
//! (SSRF, `webhooks::guard`), draw the signing secret (shown once, in the 201 or the
//! rotation's answer), and read the deliverer's records (status, dead letters).

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::auth::{Caller, require};
use super::error::{ApiError, Problem, optional_body};
use crate::domain::dispatcher::{Actor, Code, Command, rfc3339};
use crate::domain::scope::Action;
use crate::domain::webhooks::{self, Endpoint};
use crate::webhooks::{DeadLetter, guard, sign};

/// The body of `POST /v1/webhooks`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookBody {
    /// An http or https URL; it must resolve to a public address (or one in
    /// `webhooks.allow_cidrs`).
    #[schema(
        example = "https://ops.example/muster-hooks",
        min_length = 1,
        max_length = 2000,
        pattern = "^[hH][tT][tT][pP][sS]?://"
    )]
    pub url: String,
    /// Event types (`event_types` of `GET /v1/webhooks`), at least one.
    #[schema(schema_with = event_types_schema)]
    pub types: Vec<String>,
    /// The district whose events it is sent; absent: the city (a district's command: its
    /// own district, always).
    pub district_id: Option<String>,
}

/// `types`: one or more of the public event types.
fn event_types_schema() -> utoipa::openapi::schema::Array {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
    let one = ObjectBuilder::new().schema_type(Type::String).enum_values(Some(webhooks::TYPES.iter().map(|(t, _)| *t)));
    ArrayBuilder::new()
        .items(one)
        .min_items(Some(1))
        .examples([serde_json::json!(["incident.raised", "incident.filled"])])
        .build()
}

/// An endpoint as command sees it: never its secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookView {
    pub id: String,
    pub url: String,
    pub types: Vec<String>,
    pub district_id: Option<String>,
    /// `active` or `disabled`.
    pub state: String,
    pub disabled_reason: Option<String>,
    pub registered_by: String,
    pub registered_at: String,
    pub delivered: u64,
    /// Tries that failed (each retry counts).
    pub failed: u64,
    pub dead_letters: usize,
    /// Dead letters since the last delivery.
    pub dead_streak: u32,
    pub last_success_at: Option<String>,
    pub last_failure_at: Option<String>,
    pub last_error: Option<String>,
    /// Events logged after its cursor (not all of them are for it).
    pub backlog: u64,
}

/// A new endpoint, or a rotated secret: the secret is shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookCreated {
    #[serde(flatten)]
    pub webhook: WebhookView,
    /// `whsec_` and base64: the key of the `webhook-signature` HMAC (Standard Webhooks).
    pub secret: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookList {
    /// The event types an endpoint may ask for.
    pub event_types: Vec<String>,
    pub webhooks: Vec<WebhookView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeadLetterView {
    pub seq: u64,
    /// Its `webhook-id`, the same on every try and replay.
    pub message_id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub attempts: u32,
    pub error: String,
    pub dead_at: String,
    /// Waiting to be sent again.
    pub replay: bool,
    /// The body as sent.
    #[schema(value_type = Object)]
    pub body: serde_json::Value,
}

impl From<DeadLetter> for DeadLetterView {
    fn from(l: DeadLetter) -> Self {
        DeadLetterView {
            seq: l.seq,
            message_id: l.message_id,
            kind: l.kind,
            attempts: l.attempts,
            error: l.error,
            dead_at: rfc3339(l.dead_at),
            replay: l.replay,
            body: serde_json::from_str(&l.body).unwrap_or(serde_json::Value::Null),
        }
    }
}

/// Optional body of `POST /v1/webhooks/{id}/dead-letters/replay`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayBody {
    /// The dead letters (their `seq`) to send again; absent: all of them.
    pub seqs: Option<Vec<u64>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Replayed {
    /// Dead letters now waiting to be sent again.
    pub replayed: usize,
}

fn store_error(e: impl std::fmt::Display) -> ApiError {
    ApiError::internal("reading the webhook records", e)
}

/// The endpoint, if the caller may manage it (404 alike for unknown and foreign).
fn endpoint(app: &AppState, actor: &Actor, id: &str) -> Result<Endpoint, ApiError> {
    Ok(webhooks::visible(&app.engine.read(), actor, id)?.clone())
}

async fn view(app: &AppState, ep: Endpoint) -> Result<WebhookView, ApiError> {
    let status = app.hooks.status(&ep.id).await.map_err(store_error)?;
    let cursor = app.hooks.cursor(&ep.id).await.map_err(store_error)?.unwrap_or(ep.registered_seq);
    let dead = app.hooks.dead_letters(&ep.id).await.map_err(store_error)?.len();
    Ok(with_records(app, ep, status, cursor, dead))
}

/// An endpoint just registered, as its first answer shows it: nothing delivered, failed or
/// dead yet, read from nowhere but the state. Its registration is committed when this is
/// built, so no failing read of the delivery records (Redis restarting, a node cut off from
/// it) may turn the answer into an error: the caller would take the endpoint for refused
/// and lose its secret, shown this once (history seed 22 on three nodes: 500 `internal`
/// for a registration the log has).
fn fresh_view(app: &AppState, ep: Endpoint) -> WebhookView {
    let cursor = ep.registered_seq;
    with_records(app, ep, crate::webhooks::Status::default(), cursor, 0)
}

fn with_records(
    app: &AppState,
    ep: Endpoint,
    status: crate::webhooks::Status,
    cursor: u64,
    dead: usize,
) -> WebhookView {
    let last_seq = app.engine.read().last_seq;
    WebhookView {
        state: if ep.active { "active" } else { "disabled" }.into(),
        disabled_reason: ep.disabled_reason,
        registered_at: rfc3339(ep.registered_at),
        id: ep.id,
        url: ep.url,
        types: ep.types,
        district_id: ep.district_id,
        registered_by: ep.registered_by,
        delivered: status.delivered,
        failed: status.failed,
        dead_letters: dead,
        dead_streak: status.dead_streak,
        last_success_at: status.last_success_at.map(rfc3339),
        last_failure_at: status.last_failure_at.map(rfc3339),
        last_error: status.last_error,
        backlog: last_seq.saturating_sub(cursor),
    }
}

#[utoipa::path(post, path = "/v1/webhooks", tag = "webhooks", security(("bearer" = [])), request_body = WebhookBody,
    responses(
    (status = 201, body = WebhookCreated, description = "the endpoint, with its signing secret shown this once"),
    (status = 403, body = Problem, content_type = "application/problem+json", description = "role_not_allowed"),
    (status = 409, body = Problem, content_type = "application/problem+json", description = "too_many_webhooks"),
    (status = 422, body = Problem, content_type = "application/problem+json", description = "invalid_webhook, webhook_url_not_allowed, unknown_event_type, unknown_district (also outside your scope)")))]
pub async fn register(
    State(app): State<AppState>,
    caller: Caller,
    body: Result<Json<WebhookBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    require(&caller, Action::Webhooks)?;
    let Json(b) = body?;
    let url = b.url.trim().to_string();
    if url.chars().count() > webhooks::MAX_URL_CHARS {
        return Err(ApiError::unprocessable(Code::InvalidWebhook.as_str(), "url is at most 2000 characters"));
    }
    guard::parse(&url).map_err(|why| ApiError::unprocessable(Code::InvalidWebhook.as_str(), why))?;
    if let Some(t) = b.types.iter().find(|t| !webhooks::is_type(t)) {
        return Err(ApiError::unprocessable(
            Code::UnknownEventType.as_str(),
            format!("'{t}' is not an event type webhooks carry"),
        ));
    }
    guard::check(&url, &app.hooks.allowed).await.map_err(|why| {
        ApiError::unprocessable("webhook_url_not_allowed", format!("this URL may not be sent webhooks: {why}"))
    })?;
    let secret = sign::new_secret();
    let cmd = Command::RegisterWebhook { url, types: b.types, district_id: b.district_id, secret: secret.clone() };
    let reply = app.engine.submit(caller.actor.clone(), cmd).await?;
    let crate::domain::dispatcher::Reply::Webhook(id) = reply else {
        return Err(ApiError::internal("register webhook", "no id in the reply"));
    };
    let ep = endpoint(&app, &caller.actor, &id)?;
    tracing::info!(webhook = %id, by = %caller.actor.label(), "webhook endpoint registered");
    let webhook = fresh_view(&app, ep);
    Ok((StatusCode::CREATED, Json(WebhookCreated { webhook, secret })).into_response())
}

#[utoipa::path(get, path = "/v1/webhooks", tag = "webhooks", security(("bearer" = [])), responses(
    (status = 200, body = WebhookList, description = "the endpoints the caller manages, and the event types"),
    (status = 403, body = Problem, content_type = "application/problem+json")))]
pub async fn list(State(app): State<AppState>, caller: Caller) -> Result<Json<WebhookList>, ApiError> {
    require(&caller, Action::Webhooks)?;
    let mine: Vec<Endpoint> = {
        let state = app.engine.read();
        state.webhooks.values().filter(|ep| crate::domain::scope::webhook(&caller.actor, ep)).cloned().collect()
    };
    let mut out = Vec::with_capacity(mine.len());
    for ep in mine {
        out.push(view(&app, ep).await?);
    }
    let event_types = webhooks::TYPES.iter().map(|(t, _)| t.to_string()).collect();
    Ok(Json(WebhookList { event_types, webhooks: out }))
}

#[utoipa::path(get, path = "/v1/webhooks/{id}", tag = "webhooks", security(("bearer" = [])), params(("id" = String, Path)), responses(
    (status = 200, body = WebhookView), (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json", description = "unknown_webhook")))]
pub async fn get_one(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<WebhookView>, ApiError> {
    require(&caller, Action::Webhooks)?;
    let ep = endpoint(&app, &caller.actor, &id)?;
    Ok(Json(view(&app, ep).await?))
}

async fn set_active(app: AppState, caller: Caller, id: String, active: bool) -> Result<Json<WebhookView>, ApiError> {
    require(&caller, Action::Webhooks)?;
    endpoint(&app, &caller.actor, &id)?;
    let cmd = Command::SetWebhook { webhook_id: id.clone(), active, reason: None };
    app.engine.submit(caller.actor.clone(), cmd).await?;
    let ep = endpoint(&app, &caller.actor, &id)?;
    Ok(Json(view(&app, ep).await?))
}

#[utoipa::path(post, path = "/v1/webhooks/{id}/disable", tag = "webhooks", security(("bearer" = [])), params(("id" = String, Path)), responses(
    (status = 200, body = WebhookView, description = "disabled (already so: unchanged); its cursor stays where it was"),
    (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json", description = "unknown_webhook")))]
pub async fn disable(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<WebhookView>, ApiError> {
    set_active(app, caller, id, false).await
}

#[utoipa::path(post, path = "/v1/webhooks/{id}/enable", tag = "webhooks", security(("bearer" = [])), params(("id" = String, Path)), responses(
    (status = 200, body = WebhookView, description = "enabled: delivery goes on from its cursor"),
    (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json", description = "unknown_webhook")))]
pub async fn enable(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<WebhookView>, ApiError> {
    set_active(app, caller, id, true).await
}

#[utoipa::path(delete, path = "/v1/webhooks/{id}", tag = "webhooks", security(("bearer" = [])), params(("id" = String, Path)), responses(
    (status = 204, description = "deleted, with its dead letters"),
    (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json", description = "unknown_webhook")))]
pub async fn delete(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    require(&caller, Action::Webhooks)?;
    endpoint(&app, &caller.actor, &id)?;
    app.engine.submit(caller.actor.clone(), Command::DeleteWebhook { webhook_id: id.clone() }).await?;
    if let Err(e) = app.hooks.forget(&id).await {
        tracing::warn!(webhook = %id, error = %e, "the deleted webhook's records stay");
    }
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/webhooks/{id}/rotate", tag = "webhooks", security(("bearer" = [])), params(("id" = String, Path)), responses(
    (status = 200, body = WebhookCreated, description = "a new secret, shown this once; the next try is signed with it"),
    (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json", description = "unknown_webhook")))]
pub async fn rotate(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<WebhookCreated>, ApiError> {
    require(&caller, Action::Webhooks)?;
    endpoint(&app, &caller.actor, &id)?;
    let secret = sign::new_secret();
    let cmd = Command::RotateWebhookSecret { webhook_id: id.clone(), secret: secret.clone() };
    app.engine.submit(caller.actor.clone(), cmd).await?;
    let ep = endpoint(&app, &caller.actor, &id)?;
    Ok(Json(WebhookCreated { webhook: view(&app, ep).await?, secret }))
}

#[utoipa::path(get, path = "/v1/webhooks/{id}/dead-letters", tag = "webhooks", security(("bearer" = [])), params(("id" = String, Path)), responses(
    (status = 200, body = Vec<DeadLetterView>, description = "oldest first"),
    (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json", description = "unknown_webhook")))]
pub async fn dead_letters(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Vec<DeadLetterView>>, ApiError> {
    require(&caller, Action::Webhooks)?;
    endpoint(&app, &caller.actor, &id)?;
    let letters = app.hooks.dead_letters(&id).await.map_err(store_error)?;
    Ok(Json(letters.into_iter().map(DeadLetterView::from).collect()))
}

#[utoipa::path(post, path = "/v1/webhooks/{id}/dead-letters/replay", tag = "webhooks", security(("bearer" = [])), params(("id" = String, Path)),
    request_body(content = Option<ReplayBody>), responses(
    (status = 200, body = Replayed, description = "sent again, in order, before the endpoint's next messages (an enabled endpoint's)"),
    (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json", description = "unknown_webhook"),
    (status = 422, body = Problem, content_type = "application/problem+json", description = "invalid_body")))]
pub async fn replay(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Replayed>, ApiError> {
    require(&caller, Action::Webhooks)?;
    endpoint(&app, &caller.actor, &id)?;
    let b: ReplayBody = optional_body(&body)?;
    let replayed = app.hooks.replay(&id, b.seqs).await.map_err(store_error)?;
    tracing::info!(webhook = %id, replayed, by = %caller.actor.label(), "webhook dead letters replayed");
    Ok(Json(Replayed { replayed }))
}
