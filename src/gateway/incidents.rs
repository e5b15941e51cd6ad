//! HTTP handlers of incidents: parse, authorize the role, hand the command to the engine or
//! read the committed state, answer a view. Who may do and see what is `domain::scope` (the
//! role table, then one predicate per kind of object): an object outside the caller's scope
//! answers 404, exactly like one that does not exist.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::ToSchema;

use super::auth::{Caller, require};
use super::error::{ApiError, Problem, optional_body, status_filter};
use super::views::IncidentView;
use super::{API_TAG, AppState};
use crate::domain::dispatcher::{Actor, Command, RaiseIncident, Reply};
use crate::domain::geo::Position;
use crate::domain::incident::Status;
use crate::domain::response::Level;
use crate::domain::scope::{self, Action};
use crate::store::TimelineEntry;

/// The body of `POST /v1/incidents`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RaiseBody {
    /// Exactly one of grid_id or location: a grid of the city in the caller's area.
    #[schema(min_length = 1, example = "c001-g1")]
    pub grid_id: Option<String>,
    /// A position inside a grid of the caller's area.
    pub location: Option<Position>,
    /// A category id of `GET /v1/catalog`.
    #[schema(min_length = 1, example = "patrol")]
    pub category: String,
    pub level: Level,
    /// 1 to `dispatch.max_headcount`.
    #[schema(minimum = 1, example = 2)]
    #[serde(deserialize_with = "super::error::whole_u32")]
    pub headcount: u32,
    /// Skill ids of `GET /v1/catalog`, at most 16.
    #[serde(default)]
    #[schema(max_items = 16, example = json!(["medical"]))]
    pub skills: Vec<String>,
    #[schema(max_length = 1000, example = "two trees down across the road")]
    pub note: Option<String>,
    /// 1–5; defaults to the category's difficulty and may only raise it.
    #[schema(minimum = 1, maximum = 5, example = 3)]
    pub difficulty: Option<u8>,
}

#[utoipa::path(post, path = "/v1/incidents", tag = API_TAG, security(("bearer" = [])),
    request_body(content = RaiseBody, example = json!({"grid_id": "c001-g1", "category": "patrol", "level": "III", "headcount": 2, "note": "two trees down across the road"})),
    params(("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]{1,200}(?![\\s\\S])", example = "raise-7f3a",
        description = "1 to 200 visible ASCII characters; a retry with the same key answers the same incident")),
    responses(
        (status = 201, body = IncidentView, description = "durable; offers follow"),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json")))]
pub async fn raise(
    State(app): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Json<RaiseBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    require(&caller, Action::Incidents)?;
    let Json(b) = body?;
    let idempotency_key = match headers.get("idempotency-key") {
        Some(v) => Some(
            v.to_str()
                .map_err(|_| ApiError::bad_request("bad_idempotency_key", "Idempotency-Key must be visible ASCII"))?
                .to_string(),
        ),
        None => None,
    };
    let cmd = Command::Raise(RaiseIncident {
        grid_id: b.grid_id,
        location: b.location,
        category: b.category,
        level: b.level,
        headcount: b.headcount,
        skills: b.skills,
        note: b.note,
        idempotency_key,
        difficulty: b.difficulty,
    });
    let Reply::Incident(id) = app.engine.submit(caller.actor.clone(), cmd).await? else {
        return Err(ApiError::internal("raise", "the engine answered without an incident"));
    };
    let view = incident_view(&app, &caller.actor, &id)?;
    let mut resp = (StatusCode::CREATED, Json(view)).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("/v1/incidents/{id}")) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

pub(super) fn incident_view(app: &AppState, actor: &Actor, id: &str) -> Result<IncidentView, ApiError> {
    let state = app.engine.read();
    match state.incidents.get(id) {
        Some(inc) if scope::incident(actor, inc) => Ok(IncidentView::new(inc)),
        _ => Err(ApiError::not_found("unknown_incident", format!("no incident '{id}' in your scope"))),
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// open, filled, resolved or cancelled; all when omitted.
    #[param(pattern = "^(open|filled|resolved|cancelled)$")]
    pub status: Option<String>,
}

#[utoipa::path(get, path = "/v1/incidents", tag = API_TAG, security(("bearer" = [])), params(ListParams), responses(
    (status = 200, body = Vec<IncidentView>), (status = 400, body = Problem, content_type = "application/problem+json"),
    (status = 403, body = Problem, content_type = "application/problem+json")))]
pub async fn list_incidents(
    State(app): State<AppState>,
    caller: Caller,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<Vec<IncidentView>>, ApiError> {
    require(&caller, Action::Incidents)?;
    let Query(p) = params?;
    let choices = [
        ("open", Status::Open),
        ("filled", Status::Filled),
        ("resolved", Status::Resolved),
        ("cancelled", Status::Cancelled),
    ];
    let status = status_filter(p.status.as_deref(), &choices)?;
    let state = app.engine.read();
    let list = state
        .incidents
        .values()
        .rev()
        .filter(|i| status.is_none_or(|s| i.status == s) && scope::incident(&caller.actor, i))
        .take(app.settings.server.max_list)
        .map(IncidentView::new)
        .collect();
    Ok(Json(list))
}

#[utoipa::path(get, path = "/v1/incidents/{id}", tag = API_TAG, security(("bearer" = [])), params(("id" = String, Path)), responses(
    (status = 200, body = IncidentView), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn get_incident(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<IncidentView>, ApiError> {
    require(&caller, Action::Incidents)?;
    Ok(Json(incident_view(&app, &caller.actor, &id)?))
}

#[utoipa::path(get, path = "/v1/incidents/{id}/timeline", tag = API_TAG, security(("bearer" = [])), params(("id" = String, Path)), responses(
    (status = 200, body = Vec<TimelineEntry>), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn timeline(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Vec<TimelineEntry>>, ApiError> {
    require(&caller, Action::Incidents)?;
    incident_view(&app, &caller.actor, &id)?;
    let reader = app.reader.clone();
    let entries = tokio::task::spawn_blocking(move || reader.timeline(&id))
        .await
        .map_err(|e| ApiError::internal("timeline task", e))?
        .map_err(|e| ApiError::internal("reading the timeline", e))?;
    Ok(Json(entries))
}

/// Optional body of escalate, resolve and cancel.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActionBody {
    #[schema(max_length = 1000, example = "the crew has left the site")]
    pub note: Option<String>,
    #[schema(max_length = 1000, example = "raised by mistake")]
    pub reason: Option<String>,
}

/// Escalate, resolve and cancel: the role, the optional body, the command `make` builds
/// from the id and the body, and the incident as it is after it.
async fn act(
    app: AppState,
    caller: Caller,
    id: String,
    body: &Bytes,
    make: fn(String, ActionBody) -> Command,
) -> Result<Json<IncidentView>, ApiError> {
    require(&caller, Action::Incidents)?;
    let b: ActionBody = optional_body(body)?;
    app.engine.submit(caller.actor.clone(), make(id.clone(), b)).await?;
    Ok(Json(incident_view(&app, &caller.actor, &id)?))
}

#[utoipa::path(post, path = "/v1/incidents/{id}/escalate", tag = API_TAG, security(("bearer" = [])), params(("id" = String, Path)),
    request_body(content = Option<ActionBody>), responses((status = 200, body = IncidentView),
    (status = 404, body = Problem, content_type = "application/problem+json"), (status = 409, body = Problem, content_type = "application/problem+json")))]
pub async fn escalate(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<IncidentView>, ApiError> {
    act(app, caller, id, &body, |incident_id, _| Command::Escalate { incident_id }).await
}

#[utoipa::path(post, path = "/v1/incidents/{id}/resolve", tag = API_TAG, security(("bearer" = [])), params(("id" = String, Path)),
    request_body(content = Option<ActionBody>), responses((status = 200, body = IncidentView),
    (status = 404, body = Problem, content_type = "application/problem+json"), (status = 409, body = Problem, content_type = "application/problem+json")))]
pub async fn resolve(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<IncidentView>, ApiError> {
    act(app, caller, id, &body, |incident_id, b| Command::Resolve { incident_id, note: b.note.or(b.reason) }).await
}

#[utoipa::path(post, path = "/v1/incidents/{id}/cancel", tag = API_TAG, security(("bearer" = [])), params(("id" = String, Path)),
    request_body(content = Option<ActionBody>), responses((status = 200, body = IncidentView),
    (status = 404, body = Problem, content_type = "application/problem+json"), (status = 409, body = Problem, content_type = "application/problem+json")))]
pub async fn cancel(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<IncidentView>, ApiError> {
    act(app, caller, id, &body, |incident_id, b| Command::Cancel { incident_id, reason: b.reason.or(b.note) }).await
}
