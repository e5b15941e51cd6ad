//! Peacetime endpoints: registration (双报到), service orders (群众点单、社区派单、党员接单),
//! service records (服务纪实), ratings (一事一评), points and hours, and reports (JSON or
//! CSV). Scope is the domain's: an object outside it answers 404.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::auth::Caller;
use super::auth::require;
use super::error::{ApiError, Problem, require_csv, status_filter};
use super::views::MemberView;
use crate::domain::dispatcher::{self, Actor, Command, Reply, rfc3339};
use crate::domain::geo::Position;
use crate::domain::org::Member;
use crate::domain::reports::{self, RegistrationView};
use crate::domain::scope::{self, Action};
use crate::domain::service::{Currency, OrderStatus, PostOrder, Rating, ServiceOrder, Stamp, TaskRef};
use crate::engine::now_ms;

pub(super) fn parse_time(field: &str, s: &str) -> Result<i64, ApiError> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .map_err(|_| ApiError::unprocessable("invalid_body", format!("{field}: '{s}' is not an RFC 3339 time")))
}

/// The body of `POST /v1/members`: a member reporting at their residence community.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterBody {
    /// 1 to 64 bytes, chosen by whoever registers.
    #[schema(pattern = "^[!-~]{1,64}(?![\\s\\S])", example = "m90001")]
    pub id: String,
    #[schema(example = "Li Wei")]
    pub name: String,
    /// A unit in the caller's scope (a unit admin's own).
    #[schema(min_length = 1, example = "u001")]
    pub unit_id: String,
    /// A team of that unit.
    #[schema(min_length = 1, example = "t0001")]
    pub team_id: Option<String>,
    /// A grid of the city (for staff, of their community).
    #[schema(min_length = 1, example = "c001-g1")]
    pub residence_grid_id: String,
    /// Skill ids of `GET /v1/catalog`.
    #[serde(default)]
    #[schema(example = json!(["driving"]))]
    pub skills: Vec<String>,
    /// Defaults to the centre of the residence grid.
    pub position: Option<Position>,
    #[serde(default)]
    pub on_call: bool,
}

fn member_of(state: &dispatcher::State, b: RegisterBody) -> Result<Member, ApiError> {
    let position = match b.position {
        Some(p) => p,
        None => {
            let g =
                state.city.grid_flat.get(&b.residence_grid_id).ok_or_else(|| {
                    ApiError::unprocessable("unknown_grid", format!("no grid '{}'", b.residence_grid_id))
                })?;
            state.city.grid_centers[*g as usize]
        }
    };
    Ok(Member {
        id: b.id,
        name: b.name,
        unit_id: b.unit_id,
        team_id: b.team_id,
        residence_grid_id: b.residence_grid_id,
        skills: b.skills,
        position,
        on_call: b.on_call,
        registered: true,
    })
}

#[utoipa::path(post, path = "/v1/members", security(("bearer" = [])), request_body = RegisterBody, responses(
    (status = 201, body = MemberView), (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 409, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn register(
    State(app): State<AppState>,
    caller: Caller,
    body: Result<Json<RegisterBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    require(&caller, Action::RegisterMembers)?;
    let Json(b) = body?;
    let id = b.id.clone();
    let member = member_of(&app.engine.read(), b)?;
    app.engine.submit(caller.actor.clone(), Command::Register { members: vec![member] }).await?;
    let state = app.engine.read();
    let idx = state.member_index(&id).ok_or_else(|| ApiError::internal("register", "the member is missing"))?;
    Ok((StatusCode::CREATED, Json(MemberView::new(&state, &app.engine.rules, idx, now_ms()))).into_response())
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MemberRow {
    pub id: String,
    pub name: String,
    pub unit_id: String,
    pub team_id: Option<String>,
    pub residence_grid_id: String,
    pub registered: bool,
    pub on_call: bool,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct MemberQuery {
    pub unit_id: Option<String>,
    pub community_id: Option<String>,
}

#[utoipa::path(get, path = "/v1/members", security(("bearer" = [])), params(MemberQuery), responses((status = 200, body = Vec<MemberRow>)))]
pub async fn list_members(
    State(app): State<AppState>,
    caller: Caller,
    q: Result<Query<MemberQuery>, QueryRejection>,
) -> Result<Json<Vec<MemberRow>>, ApiError> {
    let Query(q) = q?;
    let state = app.engine.read();
    let Some(city) = state.city.city() else { return Ok(Json(Vec::new())) };
    let rows = (0..city.members.len() as u32)
        .filter(|&i| scope::member(&state, &caller.actor, i))
        .filter(|&i| q.unit_id.as_ref().is_none_or(|u| &city.members[i as usize].unit_id == u))
        .filter(|&i| {
            q.community_id.as_ref().is_none_or(|c| &state.city.community(state.city.residence_community(i)).id == c)
        })
        .map(|i| {
            let m = &city.members[i as usize];
            MemberRow {
                id: m.id.clone(),
                name: m.name.clone(),
                unit_id: m.unit_id.clone(),
                team_id: m.team_id.clone(),
                residence_grid_id: m.residence_grid_id.clone(),
                registered: m.registered,
                on_call: state.roster.members[i as usize].on_call,
            }
        })
        .collect();
    Ok(Json(rows))
}

/// The text of a CSV file as spreadsheets here save it: UTF-8 with or without a BOM, or
/// GB18030 (said by `charset=gb18030`/`gbk`/`gb2312` in the Content-Type, or found when the
/// bytes are not UTF-8). 422 `invalid_csv` for bytes that are neither.
pub(super) fn csv_text(body: &[u8], headers: &HeaderMap) -> Result<String, ApiError> {
    let charset = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').find_map(|p| p.trim().strip_prefix("charset=")))
        .map(|c| c.trim_matches('"').to_ascii_lowercase());
    let gb = matches!(charset.as_deref(), Some("gb18030" | "gbk" | "gb2312"));
    if !gb {
        let bytes = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
        if let Ok(text) = std::str::from_utf8(bytes) {
            return Ok(text.to_string());
        }
    }
    let (text, _, bad) = encoding_rs::GB18030.decode(body);
    if bad {
        return Err(ApiError::unprocessable("invalid_csv", "the file is neither UTF-8 nor GB18030 text"));
    }
    Ok(text.into_owned())
}

/// `POST /v1/members/import`: CSV with the header
/// `id,name,team_id,residence_grid_id,skills,lat,lng,on_call` (skills separated by `;`,
/// lat/lng may be empty; `residence_grid_id` may be empty when lat/lng are given: the member
/// lives in the grid holding that point); a command token adds a `unit_id` column. UTF-8
/// (with or without BOM) or GB18030 (`csv_text`). All rows or none.
#[utoipa::path(post, path = "/v1/members/import", security(("bearer" = [])), request_body(content = String, content_type = "text/csv",
        example = "id,name,unit_id,team_id,residence_grid_id,skills,lat,lng,on_call\nm90002,Wang Fang,u001,t0001,c001-g1,driving;medical,,,false\n"),
    responses((status = 200, body = ImportResult), (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn import(
    State(app): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<ImportResult>, ApiError> {
    require(&caller, Action::ImportMembers)?;
    require_csv(&headers, "send the members as text/csv")?;
    #[derive(Deserialize)]
    struct Row {
        id: String,
        name: String,
        #[serde(default)]
        unit_id: Option<String>,
        #[serde(default)]
        team_id: Option<String>,
        #[serde(default)]
        residence_grid_id: String,
        #[serde(default)]
        skills: String,
        #[serde(default)]
        lat: Option<f64>,
        #[serde(default)]
        lng: Option<f64>,
        #[serde(default)]
        on_call: Option<bool>,
    }
    // A unit admin's file names no unit: every row is theirs (the domain checks it, with
    // the rest of the scope, on the whole batch).
    let unit = caller.claims.unit.clone();
    let mut members = Vec::new();
    {
        let state = app.engine.read();
        let text = csv_text(&body, &headers)?;
        let mut rdr = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(text.as_bytes());
        for (i, row) in rdr.deserialize::<Row>().enumerate() {
            let line = i + 2;
            let r = row.map_err(|e| ApiError::unprocessable("invalid_csv", format!("line {line}: {e}")))?;
            let unit_id = match (&unit, r.unit_id) {
                (Some(u), None) => u.clone(),
                (_, Some(x)) => x,
                (None, None) => {
                    return Err(ApiError::unprocessable("invalid_csv", format!("line {line}: unit_id is required")));
                }
            };
            let position = match (r.lat, r.lng) {
                (Some(lat), Some(lng)) => Some(
                    Position::new(lat, lng)
                        .map_err(|e| ApiError::unprocessable("invalid_csv", format!("line {line}: {e}")))?,
                ),
                (None, None) => None,
                _ => {
                    return Err(ApiError::unprocessable(
                        "invalid_csv",
                        format!("line {line}: give both lat and lng, or neither"),
                    ));
                }
            };
            let residence_grid_id = match (r.residence_grid_id.is_empty(), position) {
                (false, _) => r.residence_grid_id,
                (true, Some(p)) => match state.city.grid_at(p) {
                    Some(g) => state.city.grid_ids[g as usize].clone(),
                    None => {
                        return Err(ApiError::unprocessable(
                            "invalid_csv",
                            format!("line {line}: no grid holds ({}, {}); give residence_grid_id", p.lat, p.lng),
                        ));
                    }
                },
                (true, None) => {
                    return Err(ApiError::unprocessable(
                        "invalid_csv",
                        format!("line {line}: give residence_grid_id, or lat and lng"),
                    ));
                }
            };
            let skills = r.skills.split(';').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect();
            let b = RegisterBody {
                id: r.id,
                name: r.name,
                unit_id,
                team_id: r.team_id.filter(|t| !t.is_empty()),
                residence_grid_id,
                skills,
                position,
                on_call: r.on_call.unwrap_or(false),
            };
            members.push(
                member_of(&state, b).map_err(|e| ApiError { detail: format!("line {line}: {}", e.detail), ..e })?,
            );
        }
    }
    let n = members.len();
    app.engine.submit(caller.actor, Command::Register { members }).await?;
    Ok(Json(ImportResult { registered: n }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ImportResult {
    pub registered: usize,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UnitRegisterBody {
    /// A community one of the unit's teams is paired with.
    #[schema(min_length = 1, example = "c001")]
    pub community_id: String,
}

#[utoipa::path(post, path = "/v1/units/{id}/register", security(("bearer" = [])), params(("id" = String, Path, example = "u001")),
    request_body = UnitRegisterBody, responses((status = 200, body = RegistrationView),
    (status = 404, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn register_unit(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Json<UnitRegisterBody>, JsonRejection>,
) -> Result<Json<RegistrationView>, ApiError> {
    require(&caller, Action::RegisterUnit)?;
    let Json(b) = body?;
    app.engine
        .submit(caller.actor.clone(), Command::RegisterUnit { unit_id: id, community_id: b.community_id })
        .await?;
    Ok(Json(reports::registration(&app.engine.read(), &caller.actor)))
}

#[utoipa::path(get, path = "/v1/registration", security(("bearer" = [])), responses((status = 200, body = RegistrationView)))]
pub async fn get_registration(State(app): State<AppState>, caller: Caller) -> Result<Json<RegistrationView>, ApiError> {
    require(&caller, Action::ReadRegistration)?;
    Ok(Json(reports::registration(&app.engine.read(), &caller.actor)))
}

/// The body of `POST /v1/orders`: a need posted by the community on behalf of residents.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderBody {
    /// Exactly one of grid_id or location: a grid of the caller's area.
    #[schema(min_length = 1, example = "c001-g1")]
    pub grid_id: Option<String>,
    /// A position inside a grid of the caller's area.
    pub location: Option<Position>,
    /// A category id of `GET /v1/catalog`.
    #[schema(min_length = 1, example = "material_delivery")]
    pub category: String,
    /// 1–5; the category's by default, and not lower.
    #[schema(minimum = 1, maximum = 5, example = 2)]
    pub difficulty: Option<u8>,
    /// 1 to 200 characters, not all blank.
    #[schema(min_length = 1, max_length = 200, pattern = "\\S", example = "Deliver vegetables to building 3")]
    pub title: String,
    #[schema(max_length = 1000, example = "the lift is out of order")]
    pub note: Option<String>,
    /// RFC 3339.
    #[schema(format = DateTime, example = "2030-06-01T08:00:00+08:00")]
    pub window_start: String,
    /// RFC 3339; after window_start, and in the future.
    #[schema(format = DateTime, example = "2030-06-01T12:00:00+08:00")]
    pub window_end: String,
    /// 1 to `dispatch.service.max_slots`.
    #[schema(minimum = 1, example = 2)]
    #[serde(deserialize_with = "super::error::whole_u32")]
    pub slots: u32,
    /// Skill ids of `GET /v1/catalog`.
    #[serde(default)]
    #[schema(example = json!(["driving"]))]
    pub skills: Vec<String>,
}

/// A check-in or check-out as the API shows it (its time is `checkin_at`/`checkout_at`).
#[derive(Debug, Serialize, ToSchema)]
pub struct StampView {
    pub position: Position,
    pub distance_m: f64,
    /// Outside the geofence: recorded, flagged, not counted.
    pub flagged: bool,
}

impl From<&Stamp> for StampView {
    fn from(s: &Stamp) -> Self {
        StampView { position: s.position, distance_m: s.distance_m, flagged: s.flagged }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ClaimView {
    pub member_id: String,
    pub claimed_at: String,
    pub assigned: bool,
    pub checkin: Option<StampView>,
    pub checkin_at: Option<String>,
    pub checkout: Option<StampView>,
    pub checkout_at: Option<String>,
    /// From check-in to check-out; counted only when neither was flagged.
    pub hours: f64,
    pub counted: bool,
    pub rating: Option<Rating>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OrderView {
    pub id: String,
    pub status: OrderStatus,
    pub community_id: String,
    pub grid_id: String,
    pub location: Position,
    pub category: String,
    pub difficulty: u8,
    pub title: String,
    pub note: Option<String>,
    pub window_start: String,
    pub window_end: String,
    pub slots: u32,
    pub skills: Vec<String>,
    pub posted_at: String,
    pub posted_by: String,
    /// A hard order is reserved until then for the members who have done the least hard work.
    pub reserved_until: Option<String>,
    pub claims: Vec<ClaimView>,
}

impl OrderView {
    /// The order as `actor` may see it: a member sees their own claim only.
    fn new(o: &ServiceOrder, actor: &Actor) -> Self {
        OrderView {
            id: o.id.clone(),
            status: o.status,
            community_id: o.community_id.clone(),
            grid_id: o.grid_id.clone(),
            location: o.location,
            category: o.category.clone(),
            difficulty: o.difficulty,
            title: o.title.clone(),
            note: o.note.clone(),
            window_start: rfc3339(o.window_start),
            window_end: rfc3339(o.window_end),
            slots: o.slots,
            skills: o.skills.clone(),
            posted_at: rfc3339(o.posted_at),
            posted_by: o.posted_by.clone(),
            reserved_until: o.priority_until.map(rfc3339),
            claims: o
                .claims
                .iter()
                .filter(|c| scope::claim(actor, &c.member_id))
                .map(|c| ClaimView {
                    member_id: c.member_id.clone(),
                    claimed_at: rfc3339(c.claimed_at),
                    assigned: c.assigned,
                    checkin_at: c.checkin.as_ref().map(|s| rfc3339(s.at)),
                    checkin: c.checkin.as_ref().map(StampView::from),
                    checkout_at: c.checkout.as_ref().map(|s| rfc3339(s.at)),
                    checkout: c.checkout.as_ref().map(StampView::from),
                    hours: c.hours,
                    counted: c.counted(),
                    rating: c.rating,
                })
                .collect(),
        }
    }
}

fn order_view(app: &AppState, actor: &Actor, id: &str) -> Result<OrderView, ApiError> {
    let state = app.engine.read();
    match state.orders.get(id) {
        Some(o) if scope::order(&state, actor, o) => Ok(OrderView::new(o, actor)),
        _ => Err(ApiError::not_found("unknown_order", format!("no order '{id}' in your scope"))),
    }
}

#[utoipa::path(post, path = "/v1/orders", security(("bearer" = [])), request_body = OrderBody, responses(
    (status = 201, body = OrderView), (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn post_order(
    State(app): State<AppState>,
    caller: Caller,
    body: Result<Json<OrderBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    require(&caller, Action::PostOrder)?;
    let Json(b) = body?;
    let cmd = Command::PostOrder(PostOrder {
        grid_id: b.grid_id,
        location: b.location,
        category: b.category,
        difficulty: b.difficulty,
        title: b.title,
        note: b.note,
        window_start: parse_time("window_start", &b.window_start)?,
        window_end: parse_time("window_end", &b.window_end)?,
        slots: b.slots,
        skills: b.skills,
    });
    let Reply::Order(id) = app.engine.submit(caller.actor.clone(), cmd).await? else {
        return Err(ApiError::internal("post order", "the engine answered without an order"));
    };
    Ok((StatusCode::CREATED, Json(order_view(&app, &caller.actor, &id)?)).into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct OrderQuery {
    /// open, full or cancelled; all when omitted.
    #[param(pattern = "^(open|full|cancelled)$")]
    pub status: Option<String>,
}

#[utoipa::path(get, path = "/v1/orders", security(("bearer" = [])), params(OrderQuery), responses((status = 200, body = Vec<OrderView>)))]
pub async fn list_orders(
    State(app): State<AppState>,
    caller: Caller,
    q: Result<Query<OrderQuery>, QueryRejection>,
) -> Result<Json<Vec<OrderView>>, ApiError> {
    require(&caller, Action::ReadOrders)?;
    let Query(q) = q?;
    let choices = [("open", OrderStatus::Open), ("full", OrderStatus::Full), ("cancelled", OrderStatus::Cancelled)];
    let status = status_filter(q.status.as_deref(), &choices)?;
    let state = app.engine.read();
    Ok(Json(
        state
            .orders
            .values()
            .rev()
            .filter(|o| status.is_none_or(|s| o.status == s) && scope::order(&state, &caller.actor, o))
            .take(app.settings.server.max_list)
            .map(|o| OrderView::new(o, &caller.actor))
            .collect(),
    ))
}

#[utoipa::path(get, path = "/v1/orders/{id}", security(("bearer" = [])), params(("id" = String, Path)), responses(
    (status = 200, body = OrderView), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn get_order(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<OrderView>, ApiError> {
    require(&caller, Action::ReadOrders)?;
    Ok(Json(order_view(&app, &caller.actor, &id)?))
}

async fn order_action(app: AppState, caller: Caller, id: String, cmd: Command) -> Result<Json<OrderView>, ApiError> {
    app.engine.submit(caller.actor.clone(), cmd).await?;
    Ok(Json(order_view(&app, &caller.actor, &id)?))
}

#[utoipa::path(post, path = "/v1/orders/{id}/claim", security(("bearer" = [])), params(("id" = String, Path)), responses(
    (status = 200, body = OrderView), (status = 409, body = Problem, content_type = "application/problem+json",
    description = "order_full, order_closed, easy_cap, priority_window, not_eligible")))]
pub async fn claim(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<OrderView>, ApiError> {
    require(&caller, Action::ClaimOrder)?;
    order_action(app, caller, id.clone(), Command::ClaimOrder { order_id: id, assign_to: None }).await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssignBody {
    /// A member of the order's community (living there, transferred there or in a team
    /// serving it): anyone else answers 422 `unknown_member`.
    #[schema(min_length = 1, example = "m00007")]
    pub member_id: String,
}

#[utoipa::path(post, path = "/v1/orders/{id}/assign", security(("bearer" = [])), params(("id" = String, Path)), request_body = AssignBody,
    responses((status = 200, body = OrderView), (status = 409, body = Problem, content_type = "application/problem+json")))]
pub async fn assign(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Json<AssignBody>, JsonRejection>,
) -> Result<Json<OrderView>, ApiError> {
    require(&caller, Action::AssignOrder)?;
    let Json(b) = body?;
    order_action(app, caller, id.clone(), Command::ClaimOrder { order_id: id, assign_to: Some(b.member_id) }).await
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelOrderBody {
    #[schema(max_length = 1000, example = "the resident found help")]
    pub reason: Option<String>,
}

#[utoipa::path(post, path = "/v1/orders/{id}/cancel", security(("bearer" = [])), params(("id" = String, Path)),
    request_body(content = Option<CancelOrderBody>), responses((status = 200, body = OrderView),
    (status = 409, body = Problem, content_type = "application/problem+json")))]
pub async fn cancel(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<OrderView>, ApiError> {
    require(&caller, Action::CancelOrder)?;
    let b: CancelOrderBody = super::error::optional_body(&body)?;
    order_action(app, caller, id.clone(), Command::CancelOrder { order_id: id, reason: b.reason }).await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StampBody {
    #[schema(minimum = -90, maximum = 90, example = 30.5971)]
    pub lat: f64,
    #[schema(minimum = -180, maximum = 180, example = 114.3090)]
    pub lng: f64,
}

fn stamp_position(b: Result<Json<StampBody>, JsonRejection>) -> Result<Position, ApiError> {
    let Json(b) = b?;
    Position::new(b.lat, b.lng).map_err(|e| ApiError::unprocessable("invalid_position", e.to_string()))
}

#[utoipa::path(post, path = "/v1/orders/{id}/checkin", security(("bearer" = [])), params(("id" = String, Path)), request_body = StampBody,
    responses((status = 200, body = OrderView, description = "recorded; flagged when outside the geofence"),
    (status = 409, body = Problem, content_type = "application/problem+json")))]
pub async fn checkin(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Json<StampBody>, JsonRejection>,
) -> Result<Json<OrderView>, ApiError> {
    require(&caller, Action::StampOrder)?;
    let position = stamp_position(body)?;
    order_action(app, caller, id.clone(), Command::CheckIn { order_id: id, position }).await
}

#[utoipa::path(post, path = "/v1/orders/{id}/checkout", security(("bearer" = [])), params(("id" = String, Path)), request_body = StampBody,
    responses((status = 200, body = OrderView), (status = 409, body = Problem, content_type = "application/problem+json",
    description = "not_checked_in, already_checked_out")))]
pub async fn checkout(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Json<StampBody>, JsonRejection>,
) -> Result<Json<OrderView>, ApiError> {
    require(&caller, Action::StampOrder)?;
    let position = stamp_position(body)?;
    order_action(app, caller, id.clone(), Command::CheckOut { order_id: id, position }).await
}

/// The body of `POST /v1/ratings`: exactly one of order_id (a service order) or offer_id
/// (a wartime assignment).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RatingBody {
    #[schema(min_length = 1, example = "ord-1")]
    pub order_id: Option<String>,
    #[schema(min_length = 1, example = "off-1")]
    pub offer_id: Option<String>,
    /// A member who worked the task.
    #[schema(min_length = 1, example = "m00001")]
    pub member_id: String,
    pub rating: Rating,
}

/// The answer to a rating: the rating as recorded, not the member's record (the rater may
/// rate members whose record is not theirs to read: a team serving their community).
#[derive(Debug, Serialize, ToSchema)]
pub struct RatingView {
    /// The member's id.
    pub id: String,
    pub name: String,
    pub order_id: Option<String>,
    pub offer_id: Option<String>,
    pub rating: Rating,
    pub hours: f64,
    pub points: f64,
}

#[utoipa::path(post, path = "/v1/ratings", security(("bearer" = [])), request_body = RatingBody, responses(
    (status = 200, body = RatingView), (status = 404, body = Problem, content_type = "application/problem+json", description = "unknown_task"),
    (status = 409, body = Problem, content_type = "application/problem+json", description = "did_not_work, already_rated, task_not_finished"),
    (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn rate(
    State(app): State<AppState>,
    caller: Caller,
    body: Result<Json<RatingBody>, JsonRejection>,
) -> Result<Json<RatingView>, ApiError> {
    require(&caller, Action::Rate)?;
    let Json(b) = body?;
    let task = match (b.order_id, b.offer_id) {
        (Some(o), None) => TaskRef::Order(o),
        (None, Some(o)) => TaskRef::Offer(o),
        _ => return Err(ApiError::unprocessable("order_or_offer", "give exactly one of order_id or offer_id")),
    };
    let key = match &task {
        TaskRef::Order(id) => format!("order:{id}"),
        TaskRef::Offer(id) => format!("offer:{id}"),
    };
    app.engine
        .submit(
            caller.actor.clone(),
            Command::Rate { task: task.clone(), member_id: b.member_id.clone(), rating: b.rating },
        )
        .await?;
    let state = app.engine.read();
    let idx = state.member_index(&b.member_id).ok_or_else(|| ApiError::internal("rate", "member missing"))?;
    let credit = state.roster.members[idx as usize]
        .ledger
        .credits
        .iter()
        .find(|c| c.task == key)
        .ok_or_else(|| ApiError::internal("rate", "the credit is missing"))?;
    let (order_id, offer_id) = match task {
        TaskRef::Order(id) => (Some(id), None),
        TaskRef::Offer(id) => (None, Some(id)),
    };
    Ok(Json(RatingView {
        id: b.member_id,
        name: state.city.members()[idx as usize].name.clone(),
        order_id,
        offer_id,
        rating: b.rating,
        hours: credit.hours,
        points: credit.points,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExchangeBody {
    pub from: Currency,
    /// More than 0, at most 1,000,000, and no more than the balance.
    #[schema(exclusive_minimum = 0, maximum = 1_000_000, example = 1)]
    pub amount: f64,
}

#[utoipa::path(post, path = "/v1/members/{id}/exchange", security(("bearer" = [])), params(("id" = String, Path)), request_body = ExchangeBody,
    responses((status = 200, body = MemberView), (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 409, body = Problem, content_type = "application/problem+json", description = "insufficient_balance"),
    (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn exchange(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Json<ExchangeBody>, JsonRejection>,
) -> Result<Json<MemberView>, ApiError> {
    require(&caller, Action::Exchange)?;
    let Json(b) = body?;
    app.engine
        .submit(caller.actor.clone(), Command::Exchange { member_id: id.clone(), from: b.from, amount: b.amount })
        .await?;
    let state = app.engine.read();
    let idx = state.member_index(&id).ok_or_else(|| ApiError::internal("exchange", "member missing"))?;
    Ok(Json(MemberView::new(&state, &app.engine.rules, idx, now_ms())))
}
