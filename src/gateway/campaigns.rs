//! Campaign endpoints (issue #19) for those who run them: create, read (the site × shift ×
//! role grid with its gaps and fatigue warnings), sites, shifts, requirements, a CSV
//! import, the roster and closing. Command owns campaigns (`scope::campaign`); staff read
//! their community's sites (`scope::campaign_site`). The member's side is `campaign_member`.
//!
//! The roster is computed here, not in the engine's writer: its inputs are read under the
//! read lock (`plan::prepare`, milliseconds), solved on a blocking thread (seconds for a
//! city-sized campaign, during which the writer goes on with everyone else's commands),
//! and published by a `publish` command that the writer accepts only if the campaign is
//! still at the revision the inputs were read at; otherwise it is computed again.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::auth::{Caller, require};
use super::error::{ApiError, Problem, optional_body, require_csv};
use super::service::{csv_text, parse_time};
use crate::domain::campaign::handle::{self, Item, MAX_ITERATIONS};
use crate::domain::campaign::{
    self as cmp, Campaign, CampaignCommand, CampaignRules, Requirement, SiteSpec, plan, view,
};
use crate::domain::dispatcher::{Actor, Code, Command, Reply, State as DomainState, rfc3339};
use crate::domain::geo::Position;
use crate::domain::scope::{self, Action};
use crate::engine::{EngineError, now_ms};

fn unknown(id: &str) -> ApiError {
    ApiError::not_found("unknown_campaign", format!("campaign '{id}' not found"))
}

/// The campaign if the caller may read it (foreign and missing look alike).
pub(super) fn seen<'s>(state: &'s DomainState, actor: &Actor, id: &str) -> Result<&'s Campaign, ApiError> {
    state.campaigns.get(id).filter(|c| scope::campaign_seen(actor, c)).ok_or_else(|| unknown(id))
}

async fn submit(app: &AppState, caller: &Caller, action: CampaignCommand) -> Result<Reply, ApiError> {
    Ok(app.engine.submit(caller.actor.clone(), Command::Campaign { action: Box::new(action) }).await?)
}

// ------------------------------------------------------------------ views

#[derive(Debug, Serialize, ToSchema)]
pub struct SiteView {
    pub id: String,
    pub name: String,
    pub location: Position,
    pub grid_id: Option<String>,
    pub community_id: Option<String>,
    pub closed: bool,
}

impl From<&cmp::Site> for SiteView {
    fn from(s: &cmp::Site) -> Self {
        SiteView {
            id: s.id.clone(),
            name: s.name.clone(),
            location: s.position,
            grid_id: s.grid_id.clone(),
            community_id: s.community_id.clone(),
            closed: s.closed,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ShiftView {
    pub id: String,
    pub start: String,
    pub end: String,
    /// The shift's site; every site's when absent.
    pub site_id: Option<String>,
}

impl From<&cmp::Shift> for ShiftView {
    fn from(s: &cmp::Shift) -> Self {
        ShiftView { id: s.id.clone(), start: rfc3339(s.start), end: rfc3339(s.end), site_id: s.site_id.clone() }
    }
}

/// One site × shift × role: required, planned (rostered), acknowledged, present (checked
/// in and not out) and gap (required − planned), with the rule that binds when the roster
/// fell short.
#[derive(Debug, Serialize, ToSchema)]
pub struct CellView {
    pub site_id: String,
    pub shift_id: String,
    pub role: String,
    pub skills: Vec<String>,
    pub required: u32,
    pub planned: u32,
    pub acknowledged: u32,
    pub present: u32,
    pub gap: u32,
    /// `skill`, `distance`, `availability`, `overlap`, `rest`, `hours` or `consecutive_days`.
    pub binding: Option<String>,
    pub members: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FatigueView {
    pub member_id: String,
    pub most_hours_in_24h: f64,
    pub consecutive_days: u32,
    pub least_rest_h: Option<f64>,
    /// `hours`, `days`, `rest`: what is at or near the campaign's limit.
    pub near: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CampaignSummary {
    pub id: String,
    pub name: String,
    pub district_id: Option<String>,
    pub start: String,
    pub end: String,
    pub closed: bool,
    /// The published roster's version (0: none yet).
    pub roster_version: u32,
    /// Sites in the caller's scope. (Not `sites`: the campaign's view, which flattens this
    /// summary, lists them under that name, and a key twice in one object is not JSON.)
    pub site_count: usize,
    pub required: u32,
    pub planned: u32,
    pub gap: u32,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CampaignView {
    #[serde(flatten)]
    pub summary: CampaignSummary,
    pub rules: CampaignRules,
    pub sites: Vec<SiteView>,
    pub shifts: Vec<ShiftView>,
    pub cells: Vec<CellView>,
    pub fatigue: Vec<FatigueView>,
}

fn rule_name(r: cmp::Rule) -> String {
    serde_json::to_value(r).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

fn cells(actor: &Actor, c: &Campaign) -> Vec<CellView> {
    view::cells(c, |s| scope::campaign_site(actor, c, s))
        .into_iter()
        .map(|x| {
            let r = &c.requirements[x.requirement];
            CellView {
                site_id: r.site_id.clone(),
                shift_id: r.shift_id.clone(),
                role: r.role.clone(),
                skills: r.skills.clone(),
                required: x.required,
                planned: x.planned,
                acknowledged: x.acknowledged,
                present: x.present,
                gap: x.gap,
                binding: x.binding.map(rule_name),
                members: x.members,
            }
        })
        .collect()
}

fn summary(actor: &Actor, c: &Campaign, cells: &[CellView]) -> CampaignSummary {
    CampaignSummary {
        id: c.id.clone(),
        name: c.name.clone(),
        district_id: c.district_id.clone(),
        start: rfc3339(c.start),
        end: rfc3339(c.end),
        closed: c.closed,
        roster_version: c.roster.as_ref().map_or(0, |p| p.version),
        site_count: c.sites.iter().filter(|s| scope::campaign_site(actor, c, s)).count(),
        required: cells.iter().map(|x| x.required).sum(),
        planned: cells.iter().map(|x| x.planned).sum(),
        gap: cells.iter().map(|x| x.gap).sum(),
    }
}

fn campaign_view(actor: &Actor, c: &Campaign) -> CampaignView {
    let cells = cells(actor, c);
    let seen: std::collections::BTreeSet<&str> =
        cells.iter().flat_map(|x| x.members.iter().map(String::as_str)).collect();
    let fatigue = view::fatigue(c, |m| seen.contains(m))
        .into_iter()
        .map(|f| FatigueView {
            member_id: f.member_id,
            most_hours_in_24h: f.most_hours_in_24h,
            consecutive_days: f.consecutive_days,
            least_rest_h: f.least_rest_h,
            near: f.near.into_iter().map(str::to_string).collect(),
        })
        .collect();
    let sites = c.sites.iter().filter(|s| scope::campaign_site(actor, c, s)).map(SiteView::from).collect();
    // Staff see the shifts of their sites and the shared ones.
    let shifts = c
        .shifts
        .iter()
        .filter(|s| {
            s.site_id.as_ref().is_none_or(|id| c.site(id).is_some_and(|i| scope::campaign_site(actor, c, &c.sites[i])))
        })
        .map(ShiftView::from)
        .collect();
    CampaignView { summary: summary(actor, c, &cells), rules: c.rules.clone(), sites, shifts, cells, fatigue }
}

fn read_view(app: &AppState, caller: &Caller, id: &str) -> Result<CampaignView, ApiError> {
    let state = app.engine.read();
    Ok(campaign_view(&caller.actor, seen(&state, &caller.actor, id)?))
}

// ------------------------------------------------------------------ create, read, list

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    /// 1 to 200 characters, not all blank.
    #[schema(min_length = 1, max_length = 200, pattern = "\\S", example = "Citywide testing, August")]
    pub name: String,
    /// The campaign's district; city-wide when absent (city command only).
    #[schema(min_length = 1, example = "d01")]
    pub district_id: Option<String>,
    /// RFC 3339.
    #[schema(format = DateTime, example = "2026-08-02T00:00:00Z")]
    pub start: String,
    /// RFC 3339, after `start`, at most 120 days later.
    #[schema(format = DateTime, example = "2026-08-05T00:00:00Z")]
    pub end: String,
    pub rules: CampaignRules,
}

#[utoipa::path(post, path = "/v1/campaigns", security(("bearer" = [])), request_body = CreateBody,
    responses((status = 201, body = CampaignView), (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn create(
    State(app): State<AppState>,
    caller: Caller,
    body: Result<Json<CreateBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    require(&caller, Action::ManageCampaigns)?;
    let Json(b) = body?;
    let (start, end) = (parse_time("start", &b.start)?, parse_time("end", &b.end)?);
    let action = CampaignCommand::Create { name: b.name, district_id: b.district_id, start, end, rules: b.rules };
    let Reply::Campaign(id) = submit(&app, &caller, action).await? else {
        return Err(ApiError::internal("create campaign", "the engine answered without a campaign"));
    };
    Ok((StatusCode::CREATED, Json(read_view(&app, &caller, &id)?)).into_response())
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CampaignList {
    pub campaigns: Vec<CampaignSummary>,
}

#[utoipa::path(get, path = "/v1/campaigns", security(("bearer" = [])),
    responses((status = 200, body = CampaignList), (status = 403, body = Problem, content_type = "application/problem+json")))]
pub async fn list(State(app): State<AppState>, caller: Caller) -> Result<Json<CampaignList>, ApiError> {
    require(&caller, Action::ReadCampaigns)?;
    let state = app.engine.read();
    let campaigns = state
        .campaigns
        .values()
        .filter(|c| scope::campaign_seen(&caller.actor, c))
        .map(|c| summary(&caller.actor, c, &cells(&caller.actor, c)))
        .collect();
    Ok(Json(CampaignList { campaigns }))
}

#[utoipa::path(get, path = "/v1/campaigns/{id}", security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 200, body = CampaignView), (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn get_one(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<CampaignView>, ApiError> {
    require(&caller, Action::ReadCampaigns)?;
    Ok(Json(read_view(&app, &caller, &id)?))
}

// ------------------------------------------------------------------ sites, shifts, requirements

/// A site: exactly one of `location` and `grid_id` (whose centre it takes).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SiteBody {
    /// 1 to 200 characters, not all blank.
    #[schema(min_length = 1, max_length = 200, pattern = "\\S", example = "Riverside school gate")]
    pub name: String,
    pub location: Option<Position>,
    #[schema(min_length = 1, example = "c001-g1")]
    pub grid_id: Option<String>,
}

fn site_view(app: &AppState, caller: &Caller, id: &str, site_id: &str) -> Result<SiteView, ApiError> {
    let state = app.engine.read();
    let c = seen(&state, &caller.actor, id)?;
    c.site(site_id)
        .map(|i| SiteView::from(&c.sites[i]))
        .ok_or_else(|| ApiError::internal("site view", "a site just set is not in the campaign"))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // the document's; the handler reads the path as a tuple
pub struct SitePath {
    id: String,
    /// 1 to 64 letters, digits, `-` or `_` (chosen by whoever sets it).
    #[param(pattern = "^[A-Za-z0-9_-]{1,64}(?![\\s\\S])", example = "s1")]
    site_id: String,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // the document's; the handler reads the path as a tuple
pub struct ShiftPath {
    id: String,
    /// 1 to 64 letters, digits, `-` or `_` (chosen by whoever sets it).
    #[param(pattern = "^[A-Za-z0-9_-]{1,64}(?![\\s\\S])", example = "day1-am")]
    shift_id: String,
}

#[utoipa::path(put, path = "/v1/campaigns/{id}/sites/{site_id}", security(("bearer" = [])),
    params(SitePath), request_body = SiteBody,
    responses((status = 200, body = SiteView), (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 409, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn put_site(
    State(app): State<AppState>,
    caller: Caller,
    Path((id, site_id)): Path<(String, String)>,
    body: Result<Json<SiteBody>, JsonRejection>,
) -> Result<Json<SiteView>, ApiError> {
    require(&caller, Action::ManageCampaigns)?;
    let Json(b) = body?;
    let site = SiteSpec { id: site_id.clone(), name: b.name, location: b.location, grid_id: b.grid_id };
    submit(&app, &caller, CampaignCommand::SetSite { campaign_id: id.clone(), site }).await?;
    Ok(Json(site_view(&app, &caller, &id, &site_id)?))
}

#[utoipa::path(post, path = "/v1/campaigns/{id}/sites/{site_id}/close", security(("bearer" = [])),
    params(("id" = String, Path), ("site_id" = String, Path)),
    responses((status = 200, body = SiteView), (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 409, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn close_site(
    State(app): State<AppState>,
    caller: Caller,
    Path((id, site_id)): Path<(String, String)>,
) -> Result<Json<SiteView>, ApiError> {
    require(&caller, Action::ManageCampaigns)?;
    submit(&app, &caller, CampaignCommand::CloseSite { campaign_id: id.clone(), site_id: site_id.clone() }).await?;
    Ok(Json(site_view(&app, &caller, &id, &site_id)?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ShiftBody {
    /// RFC 3339, within the campaign.
    #[schema(format = DateTime, example = "2026-08-02T08:00:00Z")]
    pub start: String,
    /// RFC 3339, after `start`, at most 24 h later.
    #[schema(format = DateTime, example = "2026-08-02T14:00:00Z")]
    pub end: String,
    /// A shift of this site only; shared by every site when absent.
    #[schema(min_length = 1, example = "s1")]
    pub site_id: Option<String>,
}

#[utoipa::path(put, path = "/v1/campaigns/{id}/shifts/{shift_id}", security(("bearer" = [])),
    params(ShiftPath), request_body = ShiftBody,
    responses((status = 200, body = ShiftView), (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 409, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn put_shift(
    State(app): State<AppState>,
    caller: Caller,
    Path((id, shift_id)): Path<(String, String)>,
    body: Result<Json<ShiftBody>, JsonRejection>,
) -> Result<Json<ShiftView>, ApiError> {
    require(&caller, Action::ManageCampaigns)?;
    let Json(b) = body?;
    let shift = cmp::Shift {
        id: shift_id.clone(),
        start: parse_time("start", &b.start)?,
        end: parse_time("end", &b.end)?,
        site_id: b.site_id,
    };
    submit(&app, &caller, CampaignCommand::SetShift { campaign_id: id.clone(), shift }).await?;
    let state = app.engine.read();
    let c = seen(&state, &caller.actor, &id)?;
    c.shift(&shift_id)
        .map(|i| Json(ShiftView::from(&c.shifts[i])))
        .ok_or_else(|| ApiError::internal("shift view", "a shift just set is not in the campaign"))
}

/// People wanted on a site in a shift in a role (one of `[[dispatch.campaign.roles]]`: the
/// served document's `enum`).
/// Setting one again replaces it; headcount 0 wants nobody.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RequirementBody {
    #[schema(min_length = 1, example = "s1")]
    pub site_id: String,
    #[schema(min_length = 1, example = "day1-am")]
    pub shift_id: String,
    #[schema(min_length = 1, example = "queue_order")]
    pub role: String,
    /// 0 to 500 (`3.0` is 3: JSON Schema's integer).
    #[serde(deserialize_with = "super::error::whole_u32")]
    #[schema(minimum = 0, maximum = 500, example = 3)]
    pub headcount: u32,
    /// Skill ids of `GET /v1/catalog`, at most 16.
    #[serde(default)]
    #[schema(max_items = 16, example = json!([]))]
    pub skills: Vec<String>,
}

#[utoipa::path(put, path = "/v1/campaigns/{id}/requirements", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = RequirementBody,
    responses((status = 200, body = CellView), (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 409, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn put_requirement(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Json<RequirementBody>, JsonRejection>,
) -> Result<Json<CellView>, ApiError> {
    require(&caller, Action::ManageCampaigns)?;
    let Json(b) = body?;
    let requirement = Requirement {
        site_id: b.site_id,
        shift_id: b.shift_id,
        role: b.role,
        headcount: b.headcount,
        skills: b.skills,
    };
    let key = (requirement.site_id.clone(), requirement.shift_id.clone(), requirement.role.clone());
    submit(&app, &caller, CampaignCommand::SetRequirement { campaign_id: id.clone(), requirement }).await?;
    let state = app.engine.read();
    let c = seen(&state, &caller.actor, &id)?;
    cells(&caller.actor, c)
        .into_iter()
        .find(|x| (&x.site_id, &x.shift_id, &x.role) == (&key.0, &key.1, &key.2))
        .map(Json)
        .ok_or_else(|| ApiError::internal("requirement view", "a requirement just set is not in the campaign"))
}

// ------------------------------------------------------------------ roster, close

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RosterBody {
    /// The local search's seed (default 1).
    #[schema(example = 1)]
    pub seed: Option<u64>,
    /// The local search's budget, 0 to 5,000,000 (default 100,000).
    #[schema(minimum = 0, maximum = 5_000_000, example = 100_000)]
    pub iterations: Option<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ShortfallView {
    pub site_id: String,
    pub shift_id: String,
    pub role: String,
    pub missing: u32,
    /// The rule that leaves nobody: `skill`, `distance`, `availability`, `overlap`, `rest`,
    /// `hours` or `consecutive_days`.
    pub binding: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RosterView {
    pub version: u32,
    /// Shifts starting from here were (re)rostered; earlier ones kept.
    pub from: String,
    pub required: u32,
    pub filled: u32,
    /// Slots whose member changed from the previous version.
    pub changed: u32,
    pub shortfall: Vec<ShortfallView>,
}

/// Tries to publish this many times when the campaign keeps changing under the solver.
const PUBLISH_TRIES: usize = 3;

#[utoipa::path(post, path = "/v1/campaigns/{id}/roster", security(("bearer" = [])), params(("id" = String, Path)),
    request_body(content = Option<RosterBody>),
    responses((status = 200, body = RosterView), (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 409, body = Problem, content_type = "application/problem+json", description = "closed, or changed while computed (roster_stale)"),
    (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn roster(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<RosterView>, ApiError> {
    require(&caller, Action::ManageCampaigns)?;
    let b: RosterBody = optional_body(&body)?;
    let iterations = b.iterations.unwrap_or(100_000);
    if iterations > MAX_ITERATIONS {
        return Err(ApiError::unprocessable("invalid_campaign", format!("iterations 0–{MAX_ITERATIONS}")));
    }
    let budget = cmp::Budget { iterations, seed: b.seed.unwrap_or(1) };
    let mut tries = 0;
    loop {
        tries += 1;
        let prepared = {
            let state = app.engine.read();
            let c = handle::open(&state, &caller.actor, &id)?;
            plan::prepare(&state, &app.engine.rules, c, now_ms())
        };
        let basis = prepared.basis;
        let started = std::time::Instant::now();
        let published = tokio::task::spawn_blocking(move || prepared.run(budget))
            .await
            .map_err(|e| ApiError::internal("roster", e))?;
        tracing::info!(campaign_id = %id, ms = started.elapsed().as_millis() as u64, "roster computed");
        let action = CampaignCommand::Publish { campaign_id: id.clone(), basis, roster: Box::new(published) };
        match app.engine.submit(caller.actor.clone(), Command::Campaign { action: Box::new(action) }).await {
            Err(EngineError::Domain(e)) if e.code == Code::RosterStale && tries < PUBLISH_TRIES => continue,
            r => {
                r?;
                break;
            }
        }
    }
    let state = app.engine.read();
    let c = seen(&state, &caller.actor, &id)?;
    let p = c.roster.as_ref().ok_or_else(|| ApiError::internal("roster", "no roster after publishing"))?;
    let shortfall = p
        .shortfall
        .iter()
        .filter_map(|&(ri, missing, rule)| {
            let r = c.requirements.get(ri as usize)?;
            Some(ShortfallView {
                site_id: r.site_id.clone(),
                shift_id: r.shift_id.clone(),
                role: r.role.clone(),
                missing,
                binding: rule_name(rule),
            })
        })
        .collect();
    let all = view::cells(c, |_| true);
    Ok(Json(RosterView {
        version: p.version,
        from: rfc3339(p.from),
        required: all.iter().map(|x| x.required).sum(),
        filled: all.iter().map(|x| x.planned).sum(),
        changed: p.changed,
        shortfall,
    }))
}

#[utoipa::path(post, path = "/v1/campaigns/{id}/close", security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 200, body = CampaignSummary), (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 409, body = Problem, content_type = "application/problem+json")))]
pub async fn close(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<CampaignSummary>, ApiError> {
    require(&caller, Action::ManageCampaigns)?;
    submit(&app, &caller, CampaignCommand::Close { campaign_id: id.clone() }).await?;
    Ok(Json(read_view(&app, &caller, &id)?.summary))
}

// ------------------------------------------------------------------ CSV import

#[derive(Debug, Serialize, ToSchema)]
pub struct ImportReport {
    pub sites: usize,
    pub requirements: usize,
}

/// One refused row of an import.
#[derive(Debug, Serialize, ToSchema)]
pub struct RowError {
    /// The file's line (the header is line 1).
    pub line: usize,
    pub code: String,
    pub detail: String,
}

/// 422 `invalid_csv` with every refused row (`errors`): problem+json with one more member.
fn rows_refused(errors: Vec<RowError>) -> Response {
    let detail = format!("{} row(s) refused; nothing was imported", errors.len());
    let body = serde_json::json!({
        "type": "/problems/invalid_csv",
        "title": "Unprocessable Entity",
        "status": 422,
        "detail": detail,
        "code": "invalid_csv",
        "errors": errors,
    });
    let mut resp = (StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/problem+json"));
    resp
}

/// `POST /v1/campaigns/{id}/import`: CSV with the header
/// `site_id,site_name,lat,lng,grid_id,shift_id,role,headcount,skills`. A row with a
/// `site_name` sets the site (at `lat`,`lng` or the centre of `grid_id`); a row with a
/// `shift_id` sets a requirement of the site (shifts must exist); a row may do both. Skills
/// are separated by `;`. UTF-8 (with or without BOM) or GB18030. All rows or none: a
/// refused file answers every refused row.
#[utoipa::path(post, path = "/v1/campaigns/{id}/import", security(("bearer" = [])), params(("id" = String, Path)),
    request_body(content = String, content_type = "text/csv",
        example = "site_id,site_name,lat,lng,grid_id,shift_id,role,headcount,skills\ns1,Riverside school,,,c001-g1,day1-am,queue_order,2,\n"),
    responses((status = 200, body = ImportReport), (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 409, body = Problem, content_type = "application/problem+json"), (status = 415, body = Problem, content_type = "application/problem+json"),
    (status = 422, body = Problem, content_type = "application/problem+json", description = "invalid_csv, with `errors`: line, code, detail")))]
pub async fn import(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    require(&caller, Action::ManageCampaigns)?;
    {
        let state = app.engine.read();
        handle::open(&state, &caller.actor, &id)?;
    }
    require_csv(&headers, "send the sites and requirements as text/csv")?;
    let text = csv_text(&body, &headers)?;
    let (sites, site_lines, requirements, req_lines, mut errors) = super::campaign_csv::parse(&text);
    if errors.is_empty() {
        let state = app.engine.read();
        let c = handle::open(&state, &caller.actor, &id)?;
        let (_, refused) = handle::import(&state, &app.engine.rules, c, sites.clone(), requirements.clone());
        for (item, e) in refused {
            let line = match item {
                Item::Site(i) => site_lines[i],
                Item::Requirement(i) => req_lines[i],
            };
            errors.push(RowError { line, code: e.code.as_str().to_string(), detail: e.detail });
        }
    }
    if !errors.is_empty() {
        errors.sort_by_key(|e| e.line);
        return Ok(rows_refused(errors));
    }
    let report = ImportReport { sites: sites.len(), requirements: requirements.len() };
    submit(&app, &caller, CampaignCommand::Import { campaign_id: id, sites, requirements }).await?;
    Ok(Json(report).into_response())
}
