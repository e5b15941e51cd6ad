//! The member's side of campaigns (issue #19): their own shifts (`GET /v1/campaigns/mine`,
//! with the site, the time and how far it is from where they are), acknowledging a shift,
//! checking in and out at its site. A member sees a campaign only while rostered in it.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::auth::{Caller, require};
use super::campaigns::SiteView;
use super::error::{ApiError, Problem};
use super::service::parse_time;
use crate::domain::campaign::{CampaignCommand, view};
use crate::domain::dispatcher::{Actor, Command, rfc3339};
use crate::domain::geo::Position;
use crate::domain::scope::Action;

#[derive(Debug, Serialize, ToSchema)]
pub struct MyShift {
    pub campaign_id: String,
    pub campaign_name: String,
    pub shift_id: String,
    pub start: String,
    pub end: String,
    pub role: String,
    pub site: SiteView,
    /// From the member's last known position to the site, metres.
    pub distance_m: f64,
    pub acknowledged_at: Option<String>,
    pub checkin_at: Option<String>,
    pub checkout_at: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MyShifts {
    /// Open campaigns' shifts, by start.
    pub shifts: Vec<MyShift>,
}

fn mine(app: &AppState, member: &str) -> MyShifts {
    let state = app.engine.read();
    let here = state.member_index(member).map(|i| state.roster.members[i as usize].position);
    let mut shifts = Vec::new();
    for c in state.campaigns.values().filter(|c| !c.closed) {
        for (r, s) in view::shifts_of(c, member) {
            let (req, shift) = (&c.requirements[r], &c.shifts[s]);
            let Some(site) = c.site(&req.site_id).map(|i| &c.sites[i]) else { continue };
            let att = c.attendance(&shift.id, member);
            shifts.push(MyShift {
                campaign_id: c.id.clone(),
                campaign_name: c.name.clone(),
                shift_id: shift.id.clone(),
                start: rfc3339(shift.start),
                end: rfc3339(shift.end),
                role: req.role.clone(),
                site: SiteView::from(site),
                distance_m: here.map_or(0.0, |p| (p.distance_m(site.position) * 10.0).round() / 10.0),
                acknowledged_at: att.and_then(|a| a.acknowledged_at).map(rfc3339),
                checkin_at: att.and_then(|a| a.checkin_at).map(rfc3339),
                checkout_at: att.and_then(|a| a.checkout_at).map(rfc3339),
            });
        }
    }
    shifts.sort_by(|a, b| (&a.start, &a.campaign_id, &a.shift_id).cmp(&(&b.start, &b.campaign_id, &b.shift_id)));
    MyShifts { shifts }
}

fn member_of(caller: &Caller) -> Result<String, ApiError> {
    match &caller.actor {
        Actor::Member { member } => Ok(member.clone()),
        _ => Err(ApiError::forbidden("role_not_allowed", "a member's own shifts are for members")),
    }
}

#[utoipa::path(get, path = "/v1/campaigns/mine", security(("bearer" = [])),
    responses((status = 200, body = MyShifts), (status = 403, body = Problem, content_type = "application/problem+json")))]
pub async fn get_mine(State(app): State<AppState>, caller: Caller) -> Result<Json<MyShifts>, ApiError> {
    require(&caller, Action::ServeCampaign)?;
    let member = member_of(&caller)?;
    Ok(Json(mine(&app, &member)))
}

async fn answer(
    app: &AppState,
    caller: &Caller,
    action: CampaignCommand,
    shift_id: &str,
) -> Result<Json<MyShift>, ApiError> {
    require(caller, Action::ServeCampaign)?;
    let member = member_of(caller)?;
    let campaign_id = action.campaign_id().unwrap_or_default().to_string();
    app.engine.submit(caller.actor.clone(), Command::Campaign { action: Box::new(action) }).await?;
    mine(app, &member)
        .shifts
        .into_iter()
        .find(|s| s.campaign_id == campaign_id && s.shift_id == shift_id)
        .map(Json)
        .ok_or_else(|| ApiError::internal("shift answer", "the shift answered is not the member's"))
}

#[utoipa::path(post, path = "/v1/campaigns/{id}/shifts/{shift_id}/ack", security(("bearer" = [])),
    params(("id" = String, Path), ("shift_id" = String, Path)),
    responses((status = 200, body = MyShift), (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json"), (status = 409, body = Problem, content_type = "application/problem+json")))]
pub async fn acknowledge(
    State(app): State<AppState>,
    caller: Caller,
    Path((id, shift_id)): Path<(String, String)>,
) -> Result<Json<MyShift>, ApiError> {
    let action = CampaignCommand::Acknowledge { campaign_id: id, shift_id: shift_id.clone() };
    answer(&app, &caller, action, &shift_id).await
}

/// Where the member stands.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StampBody {
    #[schema(minimum = -90, maximum = 90, example = 30.5971)]
    pub lat: f64,
    #[schema(minimum = -180, maximum = 180, example = 114.309)]
    pub lng: f64,
}

fn position(body: Result<Json<StampBody>, JsonRejection>) -> Result<Position, ApiError> {
    let Json(b) = body?;
    Position::new(b.lat, b.lng).map_err(|e| ApiError::unprocessable("invalid_body", e.to_string()))
}

#[utoipa::path(post, path = "/v1/campaigns/{id}/shifts/{shift_id}/checkin", security(("bearer" = [])),
    params(("id" = String, Path), ("shift_id" = String, Path)), request_body = StampBody,
    responses((status = 200, body = MyShift), (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json"), (status = 409, body = Problem, content_type = "application/problem+json"),
    (status = 422, body = Problem, content_type = "application/problem+json", description = "outside_geofence, bad_window")))]
pub async fn checkin(
    State(app): State<AppState>,
    caller: Caller,
    Path((id, shift_id)): Path<(String, String)>,
    body: Result<Json<StampBody>, JsonRejection>,
) -> Result<Json<MyShift>, ApiError> {
    require(&caller, Action::ServeCampaign)?;
    let position = position(body)?;
    let action = CampaignCommand::CheckIn { campaign_id: id, shift_id: shift_id.clone(), position };
    answer(&app, &caller, action, &shift_id).await
}

#[utoipa::path(post, path = "/v1/campaigns/{id}/shifts/{shift_id}/checkout", security(("bearer" = [])),
    params(("id" = String, Path), ("shift_id" = String, Path)), request_body = StampBody,
    responses((status = 200, body = MyShift), (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json"), (status = 409, body = Problem, content_type = "application/problem+json"),
    (status = 422, body = Problem, content_type = "application/problem+json", description = "outside_geofence")))]
pub async fn checkout(
    State(app): State<AppState>,
    caller: Caller,
    Path((id, shift_id)): Path<(String, String)>,
    body: Result<Json<StampBody>, JsonRejection>,
) -> Result<Json<MyShift>, ApiError> {
    require(&caller, Action::ServeCampaign)?;
    let position = position(body)?;
    let action = CampaignCommand::CheckOut { campaign_id: id, shift_id: shift_id.clone(), position };
    answer(&app, &caller, action, &shift_id).await
}

/// A time a member cannot serve in a campaign: the roster leaves them out of the shifts it
/// overlaps (rule `availability`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UnavailableBody {
    /// RFC 3339.
    #[schema(format = DateTime, example = "2026-08-02T08:00:00Z")]
    pub start: String,
    /// RFC 3339, after `start`; the time must overlap the campaign.
    #[schema(format = DateTime, example = "2026-08-02T14:00:00Z")]
    pub end: String,
    /// Whose time: a member marks their own (absent, or their id); command names the member.
    #[schema(min_length = 1, example = "m0001")]
    pub member_id: Option<String>,
}

/// The mark recorded.
#[derive(Debug, Serialize, ToSchema)]
pub struct UnavailableView {
    pub campaign_id: String,
    pub member_id: String,
    pub start: String,
    pub end: String,
}

#[utoipa::path(post, path = "/v1/campaigns/{id}/unavailability", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = UnavailableBody,
    responses((status = 201, body = UnavailableView), (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json"), (status = 409, body = Problem, content_type = "application/problem+json"),
    (status = 422, body = Problem, content_type = "application/problem+json", description = "bad_window, unknown_member, invalid_body")))]
pub async fn unavailable(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Json<UnavailableBody>, JsonRejection>,
) -> Result<(axum::http::StatusCode, Json<UnavailableView>), ApiError> {
    require(&caller, Action::MarkUnavailable)?;
    if !matches!(caller.actor, Actor::Member { .. }) {
        // Command: a campaign outside its scope is unknown, whatever the body says. (A
        // member's campaign is checked by the domain: one of their district, or a city's.)
        let state = app.engine.read();
        super::campaigns::seen(&state, &caller.actor, &id)?;
    }
    let Json(b) = body?;
    let member_id = match (&caller.actor, b.member_id) {
        (_, Some(m)) => m,
        (Actor::Member { member }, None) => member.clone(),
        (_, None) => return Err(ApiError::unprocessable("invalid_body", "member_id: command names the member")),
    };
    let (start, end) = (parse_time("start", &b.start)?, parse_time("end", &b.end)?);
    let action = CampaignCommand::Unavailable { campaign_id: id.clone(), member_id: member_id.clone(), start, end };
    app.engine.submit(caller.actor.clone(), Command::Campaign { action: Box::new(action) }).await?;
    let view = UnavailableView { campaign_id: id, member_id, start: rfc3339(start), end: rfc3339(end) };
    Ok((axum::http::StatusCode::CREATED, Json(view)))
}
