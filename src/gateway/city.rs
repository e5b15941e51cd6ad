//! HTTP handlers of the city and what it holds: its import, the catalog, communities, units
//! and members, and token revocation. Reads are scoped by `domain::scope`: a member outside
//! the caller's scope answers 404, exactly like one that does not exist.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::ToSchema;

use super::auth::{Caller, require};
use super::error::{ApiError, Problem};
use super::views::{Catalog, CityImportedView, CommunityView, MemberView, communities};
use super::{API_TAG, AppState};
use crate::domain::dispatcher::Command;
use crate::domain::org::City;
use crate::domain::scope::{self, Action};

#[utoipa::path(get, path = "/v1/catalog", tag = API_TAG, security(("bearer" = [])), responses(
    (status = 200, body = Catalog), (status = 401, body = Problem, content_type = "application/problem+json")))]
pub async fn catalog(State(app): State<AppState>, _caller: Caller) -> Json<Catalog> {
    Json(Catalog::new(&app.engine.rules))
}

#[utoipa::path(put, path = "/v1/city", tag = API_TAG, security(("bearer" = [])), request_body = City, responses(
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

#[utoipa::path(get, path = "/v1/communities", tag = API_TAG, security(("bearer" = [])), responses((status = 200, body = Vec<CommunityView>)))]
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

#[utoipa::path(get, path = "/v1/units", tag = API_TAG, security(("bearer" = [])), responses((status = 200, body = Vec<UnitView>)))]
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

#[utoipa::path(get, path = "/v1/members/{id}", tag = API_TAG, security(("bearer" = [])), params(("id" = String, Path)), responses(
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

/// The body of `POST /v1/tokens/revoke`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeBody {
    /// A token's `sub`: `member:m00001`, `staff:c001`, `unit_admin:u001`, `command:d01`, `command`
    /// (1 to 200 bytes; subjects are ASCII).
    #[schema(pattern = "^[ -~]{1,200}(?![\\s\\S])", example = "member:m00001")]
    pub subject: String,
}

#[utoipa::path(post, path = "/v1/tokens/revoke", tag = API_TAG, security(("bearer" = [])), request_body = RevokeBody, responses(
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
