//! Reports (服务纪实 and 双报告 figures) of a member, a unit or a community, as JSON or CSV
//! (UTF-8 with a BOM). The rows are computed in `domain::reports`; scope is the domain's: an
//! object outside it answers 404.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::AppState;
use super::auth::{Caller, require};
use super::error::{ApiError, Problem};
use super::service::parse_time;
use crate::domain::reports::{self, Period, Report};
use crate::domain::scope::Action;
use crate::engine::now_ms;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ReportQuery {
    /// RFC 3339; the start of time when omitted.
    #[param(format = DateTime)]
    pub from: Option<String>,
    /// RFC 3339; now when omitted.
    #[param(format = DateTime)]
    pub to: Option<String>,
    /// `json` (default) or `csv` (UTF-8 with a BOM; also chosen by `Accept: text/csv`).
    #[param(pattern = "^(json|csv)$")]
    pub format: Option<String>,
    /// The CSV header's language: `zh` (default) or `en`.
    #[param(pattern = "^(zh|en)$")]
    pub lang: Option<String>,
}

/// The CSV's columns: (English, Chinese) header.
const COLUMNS: [(&str, &str); 23] = [
    ("id", "编号"),
    ("name", "名称"),
    ("members", "人数"),
    ("registered", "已报到"),
    ("registration_rate", "报到率"),
    ("hours", "服务时长(小时)"),
    ("points", "积分"),
    ("tasks_d1", "任务(难度1)"),
    ("tasks_d2", "任务(难度2)"),
    ("tasks_d3", "任务(难度3)"),
    ("tasks_d4", "任务(难度4)"),
    ("tasks_d5", "任务(难度5)"),
    ("very_good", "很好"),
    ("good", "好"),
    ("fair", "一般"),
    ("offered", "派发"),
    ("accepted", "接受"),
    ("arrived", "到场"),
    ("reliability", "到场率"),
    ("orders_created", "创单"),
    ("orders_taken", "接单"),
    ("target_hours", "目标时长(小时)"),
    ("members_below_target", "未达标人数"),
];

/// The report as JSON, or as CSV: UTF-8 with a BOM (so spreadsheets read the Chinese),
/// Chinese headers unless `english`, the total first, then one row a member.
fn report_response(r: Report, csv_out: bool, english: bool) -> Result<Response, ApiError> {
    if !csv_out {
        return Ok(Json(r).into_response());
    }
    let mut w = csv::Writer::from_writer("\u{feff}".as_bytes().to_vec());
    let header = COLUMNS.map(|(en, zh)| if english { en } else { zh });
    w.write_record(header).map_err(|e| ApiError::internal("csv", e))?;
    for row in std::iter::once(&r.total).chain(r.members.iter()) {
        let f = &row.figures;
        let mut rec = vec![
            row.id.clone(),
            row.name.clone(),
            row.members.to_string(),
            row.registered.to_string(),
            row.registration_rate.to_string(),
            f.hours.to_string(),
            f.points.to_string(),
        ];
        rec.extend(f.tasks_by_difficulty.iter().map(u32::to_string));
        rec.extend(
            [f.ratings.very_good, f.ratings.good, f.ratings.fair, f.offered, f.accepted, f.arrived]
                .map(|v| v.to_string()),
        );
        rec.push(f.reliability.map(|r| format!("{r:.4}")).unwrap_or_default());
        rec.extend([f.orders_created, f.orders_taken].map(|v| v.to_string()));
        rec.push(row.target_hours.map(|h| h.to_string()).unwrap_or_default());
        rec.push(row.members_below_target.map(|n| n.to_string()).unwrap_or_default());
        w.write_record(&rec).map_err(|e| ApiError::internal("csv", e))?;
    }
    let body = w.into_inner().map_err(|e| ApiError::internal("csv", e))?;
    Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], body).into_response())
}

/// The period of `?from=&to=`: the start of time and now by default.
fn period(q: &ReportQuery) -> Result<Period, ApiError> {
    let from = q.from.as_deref().map(|s| parse_time("from", s)).transpose()?;
    let to = q.to.as_deref().map(|s| parse_time("to", s)).transpose()?.unwrap_or_else(|| now_ms() + 1);
    Ok(Period { from, to })
}

fn wants_csv(q: &ReportQuery, headers: &HeaderMap) -> Result<bool, ApiError> {
    match q.format.as_deref() {
        Some("csv") => Ok(true),
        Some("json") => Ok(false),
        Some(other) => Err(ApiError::bad_request("invalid_query", format!("format '{other}' is not json or csv"))),
        None => Ok(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("text/csv"))),
    }
}

#[utoipa::path(get, path = "/v1/reports/members/{id}", security(("bearer" = [])), params(("id" = String, Path), ReportQuery),
    responses((status = 200, body = Report), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn member_report(
    State(app): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
    q: Result<Query<ReportQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    answer_report(&app, &caller, &headers, q, &id, ReportOn::Member)
}

#[utoipa::path(get, path = "/v1/reports/units/{id}", security(("bearer" = [])), params(("id" = String, Path), ReportQuery),
    responses((status = 200, body = Report), (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn unit_report(
    State(app): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
    q: Result<Query<ReportQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    answer_report(&app, &caller, &headers, q, &id, ReportOn::Unit)
}

#[utoipa::path(get, path = "/v1/reports/communities/{id}", security(("bearer" = [])), params(("id" = String, Path), ReportQuery),
    responses((status = 200, body = Report), (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn community_report(
    State(app): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
    q: Result<Query<ReportQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    answer_report(&app, &caller, &headers, q, &id, ReportOn::Community)
}

/// What a report is on, and how an id outside the caller's scope is answered.
#[derive(Clone, Copy)]
enum ReportOn {
    Member,
    Unit,
    Community,
}

/// A report's answer: the role (member reports are scoped by the domain alone), the period
/// and format from the query, the report built in the
/// caller's scope (`domain::reports`), 404 outside it.
fn answer_report(
    app: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    q: Result<Query<ReportQuery>, QueryRejection>,
    id: &str,
    on: ReportOn,
) -> Result<Response, ApiError> {
    let (action, build, code, what): (_, fn(&_, &_, &str, Period) -> Option<Report>, _, _) = match on {
        ReportOn::Member => (None, reports::member_report, "unknown_member", "member"),
        ReportOn::Unit => (Some(Action::UnitReport), reports::unit_report, "unknown_unit", "unit"),
        ReportOn::Community => {
            (Some(Action::CommunityReport), reports::community_report, "unknown_community", "community")
        }
    };
    if let Some(action) = action {
        require(caller, action)?;
    }
    let Query(q) = q?;
    let csv_out = wants_csv(&q, headers)?;
    let english = match q.lang.as_deref() {
        None | Some("zh") => false,
        Some("en") => true,
        Some(other) => return Err(ApiError::bad_request("invalid_query", format!("lang '{other}' is not zh or en"))),
    };
    let period = period(&q)?;
    let mut r = build(&app.engine.read(), &caller.actor, id, period)
        .ok_or_else(|| ApiError::not_found(code, format!("no {what} '{id}' in your scope")))?;
    reports::apply_target(&mut r, app.settings.dispatch.service.yearly_hours_target, period);
    report_response(r, csv_out, english)
}
