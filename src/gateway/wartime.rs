//! Wartime endpoints: modes (平战转换), mobilizations, whistles, balance (力量统筹) and
//! fairness. Like `http`, they parse, check the role, and leave scope to the domain.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::auth::Caller;
use super::auth::require;
use super::error::{ApiError, Problem, status_filter};
use super::views::IncidentView;
use crate::domain::balance::{self, CommunityBalance, Proposal};
use crate::domain::dispatcher::{self, Actor, Command, Reply, rfc3339};
use crate::domain::event::Mode;
use crate::domain::mobilization::{MemberOrder, Mobilization, OrderState, Progress, Site, breakdown};
use crate::domain::reports::{self, FairnessView};
use crate::domain::scope::{self, Action};
use crate::domain::wartime::{MobilizeOrder, WhistleTarget};
use crate::engine::now_ms;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ModeBody {
    pub mode: Mode,
    /// 1 to 1000 characters, not all blank.
    #[schema(min_length = 1, max_length = 1000, pattern = "\\S", example = "flood warning for the river districts")]
    pub reason: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DistrictMode {
    pub id: String,
    pub name: String,
    /// The district's own switch.
    pub mode: Mode,
    /// What holds there: wartime if the district or the city is in wartime.
    pub effective: Mode,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ModesView {
    pub city: Mode,
    pub districts: Vec<DistrictMode>,
}

fn modes(state: &dispatcher::State) -> ModesView {
    let districts = state
        .city
        .city()
        .map(|c| {
            c.districts
                .iter()
                .map(|d| DistrictMode {
                    id: d.id.clone(),
                    name: d.name.clone(),
                    mode: if state.wartime_districts.contains(&d.id) { Mode::Wartime } else { Mode::Peacetime },
                    effective: if state.wartime(&d.id) { Mode::Wartime } else { Mode::Peacetime },
                })
                .collect()
        })
        .unwrap_or_default();
    ModesView { city: state.city_mode, districts }
}

#[utoipa::path(get, path = "/v1/modes", security(("bearer" = [])), responses((status = 200, body = ModesView)))]
pub async fn get_modes(State(app): State<AppState>, _caller: Caller) -> Json<ModesView> {
    Json(modes(&app.engine.read()))
}

async fn switch(
    app: AppState,
    caller: Caller,
    district_id: Option<String>,
    body: Result<Json<ModeBody>, JsonRejection>,
) -> Result<Json<ModesView>, ApiError> {
    require(&caller, Action::SwitchMode)?;
    let Json(b) = body?;
    app.engine.submit(caller.actor, Command::SwitchMode { district_id, mode: b.mode, reason: b.reason }).await?;
    Ok(Json(modes(&app.engine.read())))
}

#[utoipa::path(put, path = "/v1/city/mode", security(("bearer" = [])), request_body = ModeBody, responses(
    (status = 200, body = ModesView), (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 409, body = Problem, content_type = "application/problem+json", description = "already in that mode")))]
pub async fn put_city_mode(
    State(app): State<AppState>,
    caller: Caller,
    body: Result<Json<ModeBody>, JsonRejection>,
) -> Result<Json<ModesView>, ApiError> {
    switch(app, caller, None, body).await
}

#[utoipa::path(put, path = "/v1/districts/{id}/mode", security(("bearer" = [])), params(("id" = String, Path)), request_body = ModeBody,
    responses((status = 200, body = ModesView), (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 409, body = Problem, content_type = "application/problem+json", description = "already in that mode")))]
pub async fn put_district_mode(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Json<ModeBody>, JsonRejection>,
) -> Result<Json<ModesView>, ApiError> {
    switch(app, caller, Some(id), body).await
}

/// The body of `POST /v1/mobilizations`: name the teams by exactly one of `teams`,
/// `unit_id` (its assault teams), `district_id` (assault teams paired there) or
/// `all_assault`; they report to their paired community unless `community_id` or `site`
/// names another place.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MobilizeBody {
    /// Team ids (`GET /v1/units`).
    #[serde(default)]
    #[schema(example = json!(["t0002"]))]
    pub teams: Vec<String>,
    #[schema(min_length = 1, example = "u001")]
    pub unit_id: Option<String>,
    #[schema(min_length = 1, example = "d01")]
    pub district_id: Option<String>,
    #[serde(default)]
    #[schema(example = true)]
    pub all_assault: bool,
    #[schema(min_length = 1, example = "c001")]
    pub community_id: Option<String>,
    pub site: Option<Site>,
    /// Seconds from now, 1 to `dispatch.mobilization.max_deadline_s` (default
    /// `dispatch.mobilization.default_deadline_s`).
    #[schema(minimum = 1, example = 3600)]
    pub deadline_s: Option<u64>,
    #[schema(max_length = 1000, example = "bring sandbags")]
    pub note: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MissingMember {
    pub member_id: String,
    pub name: String,
    pub state: OrderState,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProgressSlice {
    /// A team id or a community id (`site` for a site).
    pub id: String,
    #[serde(flatten)]
    pub progress: Progress,
    pub missing_members: Vec<MissingMember>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MobilizationView {
    pub id: String,
    pub status: String,
    pub ordered_at: String,
    pub ordered_by: String,
    pub deadline: String,
    pub deadline_passed: bool,
    pub note: Option<String>,
    pub site: Option<Site>,
    pub closed_reason: Option<String>,
    #[serde(flatten)]
    pub progress: Progress,
    pub teams: Vec<ProgressSlice>,
    pub communities: Vec<ProgressSlice>,
}

impl MobilizationView {
    /// The mobilization as `actor` sees it: a district's command, the orders that report
    /// into its district (counts, rows and missing members alike).
    fn new(state: &dispatcher::State, m: &Mobilization, actor: &Actor, detail: bool) -> Self {
        let city = state.city.city().expect("a mobilization implies a city");
        let visible: Vec<&MemberOrder> =
            m.orders.iter().filter(|o| scope::mobilization_part(state, actor, m, o)).collect();
        let progress = if visible.len() == m.orders.len() {
            m.counts
        } else {
            let mut p = Progress::default();
            visible.iter().for_each(|o| p.add(o.state));
            p
        };
        let missing = |orders: Vec<&MemberOrder>| {
            orders
                .into_iter()
                .map(|o| MissingMember {
                    member_id: o.member_id.clone(),
                    name: city.members[o.member as usize].name.clone(),
                    state: o.state,
                })
                .collect()
        };
        let (teams, communities) = if detail {
            let teams = breakdown(visible.iter().copied(), |o| o.team)
                .into_iter()
                .map(|(t, p, miss)| ProgressSlice {
                    id: city.teams[t as usize].id.clone(),
                    progress: p,
                    missing_members: missing(miss),
                })
                .collect();
            let communities = breakdown(visible.iter().copied(), |o| o.community.unwrap_or(u32::MAX))
                .into_iter()
                .map(|(c, p, miss)| ProgressSlice {
                    id: if c == u32::MAX { "site".into() } else { city.communities[c as usize].id.clone() },
                    progress: p,
                    missing_members: missing(miss),
                })
                .collect();
            (teams, communities)
        } else {
            (Vec::new(), Vec::new())
        };
        MobilizationView {
            id: m.id.clone(),
            status: if m.is_open() { "open".into() } else { "closed".into() },
            ordered_at: rfc3339(m.ordered_at),
            ordered_by: m.ordered_by.clone(),
            deadline: rfc3339(m.deadline),
            deadline_passed: m.deadline_passed,
            note: m.note.clone(),
            site: m.site.clone(),
            closed_reason: m.closed.as_ref().map(|c| c.1.clone()),
            progress,
            teams,
            communities,
        }
    }
}

fn mobilization_view(app: &AppState, actor: &Actor, id: &str, detail: bool) -> Result<MobilizationView, ApiError> {
    let state = app.engine.read();
    match state.mobilizations.get(id) {
        Some(m) if scope::mobilization(actor, m) => Ok(MobilizationView::new(&state, m, actor, detail)),
        _ => Err(ApiError::not_found("unknown_mobilization", format!("no mobilization '{id}' in your scope"))),
    }
}

#[utoipa::path(post, path = "/v1/mobilizations", security(("bearer" = [])), request_body = MobilizeBody, responses(
    (status = 201, body = MobilizationView, description = "durable; every ordered member's order is in their stream"),
    (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn mobilize(
    State(app): State<AppState>,
    caller: Caller,
    body: Result<Json<MobilizeBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    require(&caller, Action::Mobilize)?;
    let Json(b) = body?;
    let order = MobilizeOrder {
        teams: b.teams,
        unit_id: b.unit_id,
        district_id: b.district_id,
        all_assault: b.all_assault,
        community_id: b.community_id,
        site: b.site,
        deadline_s: b.deadline_s,
        note: b.note,
    };
    let Reply::Mobilization(id) = app.engine.submit(caller.actor.clone(), Command::Mobilize(order)).await? else {
        return Err(ApiError::internal("mobilize", "the engine answered without a mobilization"));
    };
    let view = mobilization_view(&app, &caller.actor, &id, false)?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct MobilizationList {
    /// open or closed; all when omitted.
    #[param(pattern = "^(open|closed)$")]
    pub status: Option<String>,
}

#[utoipa::path(get, path = "/v1/mobilizations", security(("bearer" = [])), params(MobilizationList),
    responses((status = 200, body = Vec<MobilizationView>)))]
pub async fn list_mobilizations(
    State(app): State<AppState>,
    caller: Caller,
    q: Result<Query<MobilizationList>, QueryRejection>,
) -> Result<Json<Vec<MobilizationView>>, ApiError> {
    require(&caller, Action::ReadMobilizations)?;
    let Query(q) = q?;
    let want_open = status_filter(q.status.as_deref(), &[("open", true), ("closed", false)])?;
    let state = app.engine.read();
    Ok(Json(
        state
            .mobilizations
            .values()
            .rev()
            .filter(|m| scope::mobilization(&caller.actor, m) && want_open.is_none_or(|o| m.is_open() == o))
            .map(|m| MobilizationView::new(&state, m, &caller.actor, false))
            .collect(),
    ))
}

#[utoipa::path(get, path = "/v1/mobilizations/{id}", security(("bearer" = [])), params(("id" = String, Path)), responses(
    (status = 200, body = MobilizationView, description = "progress per team and per community, with who is missing"),
    (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn get_mobilization(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<MobilizationView>, ApiError> {
    require(&caller, Action::ReadMobilizations)?;
    Ok(Json(mobilization_view(&app, &caller.actor, &id, true)?))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CloseBody {
    #[schema(max_length = 1000, example = "every team has reported")]
    pub reason: Option<String>,
}

#[utoipa::path(post, path = "/v1/mobilizations/{id}/close", security(("bearer" = [])), params(("id" = String, Path)),
    request_body(content = Option<CloseBody>), responses((status = 200, body = MobilizationView),
    (status = 404, body = Problem, content_type = "application/problem+json"), (status = 409, body = Problem, content_type = "application/problem+json")))]
pub async fn close_mobilization(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<MobilizationView>, ApiError> {
    require(&caller, Action::Mobilize)?;
    let b: CloseBody = super::error::optional_body(&body)?;
    app.engine
        .submit(caller.actor.clone(), Command::CloseMobilization { mobilization_id: id.clone(), reason: b.reason })
        .await?;
    Ok(Json(mobilization_view(&app, &caller.actor, &id, false)?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum WhistleTo {
    /// `"paired_units"` or `"street_units"`.
    Named(String),
    /// Unit ids.
    Units(Vec<String>),
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WhistleBody {
    /// `"paired_units"`, `"street_units"`, or 1 to 500 unit ids.
    #[schema(schema_with = whistle_to)]
    pub to: WhistleTo,
}

/// The schema of `WhistleBody::to`: what `whistle` accepts, which the untagged enum does not say.
fn whistle_to() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, Type};
    let one_of = OneOfBuilder::new()
        .item(ObjectBuilder::new().schema_type(Type::String).enum_values(Some(["paired_units", "street_units"])))
        .item(
            ArrayBuilder::new()
                .items(ObjectBuilder::new().schema_type(Type::String).min_length(Some(1)))
                .min_items(Some(1))
                .max_items(Some(500)),
        )
        .examples([serde_json::json!("paired_units")])
        .build();
    Schema::OneOf(one_of)
}

#[utoipa::path(post, path = "/v1/incidents/{id}/whistle", security(("bearer" = [])), params(("id" = String, Path)),
    request_body = WhistleBody, responses((status = 200, body = IncidentView),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 409, body = Problem, content_type = "application/problem+json"),
    (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn whistle(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Json<WhistleBody>, JsonRejection>,
) -> Result<Json<IncidentView>, ApiError> {
    require(&caller, Action::Incidents)?;
    let Json(b) = body?;
    let to = match b.to {
        WhistleTo::Named(n) if n == "paired_units" => WhistleTarget::PairedUnits,
        WhistleTo::Named(n) if n == "street_units" => WhistleTarget::StreetUnits,
        WhistleTo::Named(n) => {
            return Err(ApiError::unprocessable(
                "invalid_body",
                format!("to: '{n}' is not paired_units, street_units or a list of unit ids"),
            ));
        }
        WhistleTo::Units(u) if u.is_empty() || u.len() > 500 => {
            return Err(ApiError::unprocessable("invalid_body", "to: name 1 to 500 units"));
        }
        WhistleTo::Units(u) => WhistleTarget::Units(u),
    };
    app.engine.submit(caller.actor.clone(), Command::Whistle { incident_id: id.clone(), to }).await?;
    Ok(Json(super::incidents::incident_view(&app, &caller.actor, &id)?))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BalanceView {
    pub communities: Vec<CommunityBalance>,
    /// Transfers proposed for wartime deficits (command only).
    pub proposals: Vec<Proposal>,
}

#[utoipa::path(get, path = "/v1/balance", security(("bearer" = [])), responses((status = 200, body = BalanceView),
    (status = 403, body = Problem, content_type = "application/problem+json")))]
pub async fn get_balance(State(app): State<AppState>, caller: Caller) -> Result<Json<BalanceView>, ApiError> {
    require(&caller, Action::ReadBalance)?;
    let state = app.engine.read();
    let now = now_ms();
    let rules = &app.engine.rules;
    // One row per community of the city, in order: row i is community i.
    let communities: Vec<CommunityBalance> = balance::balances(&state, rules, now)
        .into_iter()
        .enumerate()
        .filter(|(i, _)| scope::community(&state, &caller.actor, *i as u32))
        .map(|(_, c)| c)
        .collect();
    let proposals = if scope::permits(&caller.actor, Action::ApplyTransfer) {
        let ids: std::collections::HashSet<&str> = communities.iter().map(|c| c.community_id.as_str()).collect();
        balance::proposals(&state, rules, now)
            .into_iter()
            .filter(|p| ids.contains(p.from.as_str()) && ids.contains(p.to.as_str()))
            .collect()
    } else {
        Vec::new()
    };
    Ok(Json(BalanceView { communities, proposals }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApplyBody {
    /// A proposal's `from` (`GET /v1/balance`): a community of the caller's with a surplus.
    #[schema(min_length = 1, example = "c002")]
    pub from: String,
    /// A proposal's `to`: another community of the caller's, with a deficit.
    #[schema(min_length = 1, example = "c001")]
    pub to: String,
    /// A proposal's `members`: 1 to 10,000 available members living in `from`.
    #[schema(min_items = 1, max_items = 10000, example = json!(["m00002"]))]
    pub members: Vec<String>,
}

#[utoipa::path(post, path = "/v1/balance/apply", security(("bearer" = [])), request_body = ApplyBody, responses(
    (status = 200, body = BalanceView), (status = 409, body = Problem, content_type = "application/problem+json", description = "the proposal is stale")))]
pub async fn apply_proposal(
    State(app): State<AppState>,
    caller: Caller,
    body: Result<Json<ApplyBody>, JsonRejection>,
) -> Result<Json<BalanceView>, ApiError> {
    require(&caller, Action::ApplyTransfer)?;
    let Json(b) = body?;
    if b.members.len() > 10_000 {
        return Err(ApiError::unprocessable("invalid_body", "a transfer moves at most 10,000 members"));
    }
    app.engine.submit(caller.actor.clone(), Command::Transfer { from: b.from, to: b.to, members: b.members }).await?;
    get_balance(State(app), caller).await
}

#[utoipa::path(get, path = "/v1/fairness", security(("bearer" = [])), responses((status = 200, body = FairnessView),
    (status = 403, body = Problem, content_type = "application/problem+json")))]
pub async fn get_fairness(State(app): State<AppState>, caller: Caller) -> Result<Json<FairnessView>, ApiError> {
    require(&caller, Action::ReadFairness)?;
    Ok(Json(reports::fairness(&app.engine.read(), &caller.actor)))
}
