//! HTTP handlers of incidents, members and the city: parse, authorize the role, hand the
//! command to the engine or read the committed state, answer a view. Who may do and see
//! what is `domain::scope` (the role table, then one predicate per kind of object): an
//! object outside the caller's scope answers 404, exactly like one that does not exist.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::ToSchema;

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, Problem};
use super::views::{Catalog, CityImportedView, CommunityView, IncidentView, MemberView, communities};
use crate::domain::dispatcher::{Actor, Command, RaiseIncident, Reply};
use crate::domain::geo::Position;
use crate::domain::incident::Status;
use crate::domain::org::City;
use crate::domain::response::Level;
use crate::domain::scope::{self, Action};
use crate::store::TimelineEntry;

/// The role table (`scope::permits`): 403 when the caller's role may never do this.
pub(super) fn require(caller: &Caller, action: Action) -> Result<(), ApiError> {
    Ok(scope::require(&caller.actor, action)?)
}

#[utoipa::path(get, path = "/healthz", responses((status = 200, description = "the process is up")))]
pub async fn healthz() -> &'static str {
    "ok"
}

#[utoipa::path(get, path = "/readyz", responses(
    (status = 200, description = "the store is open and the log replayed"),
    (status = 503, description = "starting, or the store is unavailable", body = Problem, content_type = "application/problem+json")))]
pub async fn readyz(State(app): State<AppState>) -> Result<&'static str, ApiError> {
    if app.engine.is_ready() {
        Ok("ready")
    } else {
        Err(ApiError::unavailable("not ready: the log is being replayed or the store is unavailable"))
    }
}

#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub async fn metrics(State(app): State<AppState>) -> Response {
    let body = app.metrics.as_ref().map(|h| h.render()).unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

#[utoipa::path(get, path = "/v1/catalog", security(("bearer" = [])), responses(
    (status = 200, body = Catalog), (status = 401, body = Problem, content_type = "application/problem+json")))]
pub async fn catalog(State(app): State<AppState>, _caller: Caller) -> Json<Catalog> {
    Json(Catalog::new(&app.engine.rules))
}

#[utoipa::path(put, path = "/v1/city", security(("bearer" = [])), request_body = City, responses(
    (status = 200, body = CityImportedView),
    (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 409, body = Problem, content_type = "application/problem+json"),
    (status = 413, body = Problem, content_type = "application/problem+json"),
    (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn put_city(
    State(app): State<AppState>,
    caller: Caller,
    body: Result<Json<City>, JsonRejection>,
) -> Result<Json<CityImportedView>, ApiError> {
    require(&caller, Action::ImportCity)?;
    let Json(city) = body?;
    let view = CityImportedView {
        districts: city.districts.len(),
        streets: city.streets.len(),
        communities: city.communities.len(),
        units: city.units.len(),
        teams: city.teams.len(),
        members: city.members.len(),
    };
    app.engine.submit(caller.actor, Command::ImportCity(Box::new(city))).await?;
    Ok(Json(view))
}

#[utoipa::path(get, path = "/v1/communities", security(("bearer" = [])), responses((status = 200, body = Vec<CommunityView>)))]
pub async fn list_communities(State(app): State<AppState>, _caller: Caller) -> Json<Vec<CommunityView>> {
    Json(communities(&app.engine.read()))
}

/// A unit (单位) and its teams.
#[derive(Debug, serde::Serialize, ToSchema)]
pub struct UnitView {
    pub id: String,
    pub name: String,
    pub teams: Vec<TeamView>,
}

#[derive(Debug, serde::Serialize, ToSchema)]
pub struct TeamView {
    pub id: String,
    pub name: String,
    pub kind: crate::domain::org::TeamKind,
    /// The community the team is paired with.
    pub community_id: String,
    pub members: usize,
}

#[utoipa::path(get, path = "/v1/units", security(("bearer" = [])), responses((status = 200, body = Vec<UnitView>)))]
pub async fn list_units(State(app): State<AppState>, _caller: Caller) -> Json<Vec<UnitView>> {
    let state = app.engine.read();
    let Some(city) = state.city.city() else { return Json(Vec::new()) };
    let mut units: Vec<UnitView> =
        city.units.iter().map(|u| UnitView { id: u.id.clone(), name: u.name.clone(), teams: Vec::new() }).collect();
    for (t, team) in city.teams.iter().enumerate() {
        units[state.city.unit_by_id[&team.unit_id] as usize].teams.push(TeamView {
            id: team.id.clone(),
            name: team.name.clone(),
            kind: team.kind,
            community_id: team.community_id.clone(),
            members: state.city.team_members[t].len(),
        });
    }
    Json(units)
}

#[utoipa::path(get, path = "/v1/members/{id}", security(("bearer" = [])), params(("id" = String, Path)), responses(
    (status = 200, body = MemberView), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn get_member(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<MemberView>, ApiError> {
    let state = app.engine.read();
    match state.member_index(&id) {
        Some(idx) if scope::member(&state, &caller.actor, idx) => {
            Ok(Json(MemberView::new(&state, &app.engine.rules, idx, crate::engine::now_ms())))
        }
        _ => Err(ApiError::not_found("unknown_member", format!("no member '{id}' in your scope"))),
    }
}

/// The body of `POST /v1/incidents`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RaiseBody {
    /// Exactly one of grid_id or location.
    pub grid_id: Option<String>,
    pub location: Option<Position>,
    pub category: String,
    pub level: Level,
    pub headcount: u32,
    #[serde(default)]
    pub skills: Vec<String>,
    pub note: Option<String>,
    /// 1–5; defaults to the category's difficulty and may only raise it.
    pub difficulty: Option<u8>,
}

#[utoipa::path(post, path = "/v1/incidents", security(("bearer" = [])), request_body = RaiseBody,
    params(("Idempotency-Key" = Option<String>, Header, description = "a retry with the same key answers the same incident")),
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
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// open, filled, resolved or cancelled; all when omitted.
    pub status: Option<String>,
}

#[utoipa::path(get, path = "/v1/incidents", security(("bearer" = [])), params(ListParams), responses(
    (status = 200, body = Vec<IncidentView>), (status = 400, body = Problem, content_type = "application/problem+json"),
    (status = 403, body = Problem, content_type = "application/problem+json")))]
pub async fn list_incidents(
    State(app): State<AppState>,
    caller: Caller,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<Vec<IncidentView>>, ApiError> {
    require(&caller, Action::Incidents)?;
    let Query(p) = params?;
    let status = match p.status.as_deref() {
        None => None,
        Some("open") => Some(Status::Open),
        Some("filled") => Some(Status::Filled),
        Some("resolved") => Some(Status::Resolved),
        Some("cancelled") => Some(Status::Cancelled),
        Some(other) => {
            return Err(ApiError::bad_request(
                "invalid_query",
                format!("status '{other}' is not one of open, filled, resolved, cancelled"),
            ));
        }
    };
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

#[utoipa::path(get, path = "/v1/incidents/{id}", security(("bearer" = [])), params(("id" = String, Path)), responses(
    (status = 200, body = IncidentView), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn get_incident(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<IncidentView>, ApiError> {
    require(&caller, Action::Incidents)?;
    Ok(Json(incident_view(&app, &caller.actor, &id)?))
}

#[utoipa::path(get, path = "/v1/incidents/{id}/timeline", security(("bearer" = [])), params(("id" = String, Path)), responses(
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
    pub note: Option<String>,
    pub reason: Option<String>,
}

/// An optional JSON body: empty is the default.
pub(super) fn optional_body<T: Default + serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| ApiError::unprocessable("invalid_body", format!("invalid body: {e}")))
}

fn action_body(body: &Bytes) -> Result<ActionBody, ApiError> {
    optional_body(body)
}

async fn act(app: AppState, caller: Caller, cmd: Command, id: &str) -> Result<Json<IncidentView>, ApiError> {
    app.engine.submit(caller.actor.clone(), cmd).await?;
    Ok(Json(incident_view(&app, &caller.actor, id)?))
}

#[utoipa::path(post, path = "/v1/incidents/{id}/escalate", security(("bearer" = [])), params(("id" = String, Path)),
    request_body(content = Option<ActionBody>), responses((status = 200, body = IncidentView),
    (status = 404, body = Problem, content_type = "application/problem+json"), (status = 409, body = Problem, content_type = "application/problem+json")))]
pub async fn escalate(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<IncidentView>, ApiError> {
    require(&caller, Action::Incidents)?;
    action_body(&body)?;
    act(app, caller, Command::Escalate { incident_id: id.clone() }, &id).await
}

#[utoipa::path(post, path = "/v1/incidents/{id}/resolve", security(("bearer" = [])), params(("id" = String, Path)),
    request_body(content = Option<ActionBody>), responses((status = 200, body = IncidentView),
    (status = 404, body = Problem, content_type = "application/problem+json"), (status = 409, body = Problem, content_type = "application/problem+json")))]
pub async fn resolve(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<IncidentView>, ApiError> {
    require(&caller, Action::Incidents)?;
    let b = action_body(&body)?;
    act(app, caller, Command::Resolve { incident_id: id.clone(), note: b.note.or(b.reason) }, &id).await
}

#[utoipa::path(post, path = "/v1/incidents/{id}/cancel", security(("bearer" = [])), params(("id" = String, Path)),
    request_body(content = Option<ActionBody>), responses((status = 200, body = IncidentView),
    (status = 404, body = Problem, content_type = "application/problem+json"), (status = 409, body = Problem, content_type = "application/problem+json")))]
pub async fn cancel(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<IncidentView>, ApiError> {
    require(&caller, Action::Incidents)?;
    let b = action_body(&body)?;
    act(app, caller, Command::Cancel { incident_id: id.clone(), reason: b.reason.or(b.note) }, &id).await
}

/// The body of `POST /v1/tokens/revoke`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeBody {
    /// A token's `sub`: `member:m00001`, `staff:c001`, `unit_admin:u001`, `command:d01`, `command`.
    pub subject: String,
}

#[utoipa::path(post, path = "/v1/tokens/revoke", security(("bearer" = [])), request_body = RevokeBody, responses(
    (status = 204, description = "every token of the subject issued until now is refused; its sockets close within a ping interval"),
    (status = 403, body = Problem, content_type = "application/problem+json")))]
pub async fn revoke(
    State(app): State<AppState>,
    caller: Caller,
    body: Result<Json<RevokeBody>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    require(&caller, Action::RevokeTokens)?;
    let Json(b) = body?;
    app.engine.submit(caller.actor, Command::RevokeTokens { subject: b.subject }).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn not_found() -> ApiError {
    ApiError::not_found("no_route", "no such endpoint; see /openapi.json")
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "this endpoint does not take that method")
}
