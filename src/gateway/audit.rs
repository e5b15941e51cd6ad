//! `GET /v1/audit` (issue 17): the decisions in the log, for command. The store reads them
//! by kind, actor, time and cursor (`LogReader::decisions`); who sees which entry is
//! `scope::audit_entry`, and the place filters read `audit::place`, both over the present
//! state. Oldest first; `next` is the cursor of the following page.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::auth::{Caller, require};
use super::error::{ApiError, Problem};
use crate::domain::audit::{self, KINDS};
use crate::domain::dispatcher::rfc3339;
use crate::domain::scope::{self, Action};
use crate::store::DecisionQuery;

/// Entries per page by default, and at most.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 500;
/// Store reads per request at most (each up to a page, or a bounded slice of the log on
/// Redis): past that, the page is shorter and `next` goes on from where it stopped.
const MAX_ROUNDS: usize = 10;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    /// One decision kind, or several separated by commas; all when omitted. Kinds:
    /// mode_switched, mobilization_ordered, mobilization_closed, units_whistled,
    /// members_transferred, members_registered, unit_registered, rated, exchanged,
    /// tokens_revoked, invitation_issued, invitation_revoked, session_revoked,
    /// webhook_registered, webhook_enabled, webhook_disabled, webhook_secret_rotated,
    /// webhook_deleted.
    #[param(pattern = "^[a-z_]+(,[a-z_]+)*$", example = "mode_switched,mobilization_ordered")]
    pub kind: Option<String>,
    /// The actor as logged: `command`, `command:d01`, `staff:c001`, `system`…
    #[param(min_length = 1, max_length = 200, example = "command")]
    pub actor: Option<String>,
    /// Entries about this community.
    #[param(min_length = 1, max_length = 200, example = "c001")]
    pub community_id: Option<String>,
    /// Entries about this district (or one of its communities).
    #[param(min_length = 1, max_length = 200, example = "d01")]
    pub district_id: Option<String>,
    /// RFC 3339: logged at or after.
    #[param(format = DateTime)]
    pub from: Option<String>,
    /// RFC 3339: logged before.
    #[param(format = DateTime)]
    pub to: Option<String>,
    /// The cursor: entries with a greater seq (the previous page's `next`).
    #[param(minimum = 0, example = 0)]
    pub after: Option<u64>,
    /// 1 to 500; 100 when omitted.
    #[param(minimum = 1, maximum = 500, example = 100)]
    pub limit: Option<u32>,
    /// `json` (default) or `csv` (UTF-8 with a BOM; also chosen by `Accept: text/csv`).
    #[param(pattern = "^(json|csv)$")]
    pub format: Option<String>,
    /// The CSV header's language: `zh` (default) or `en`.
    #[param(pattern = "^(zh|en)$")]
    pub lang: Option<String>,
}

/// Where an entry is: a city-wide decision names no district.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AuditPlace {
    /// The district, when the entry is about exactly one.
    pub district_id: Option<String>,
    /// The community, when the entry is about exactly one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub community_id: Option<String>,
    /// Every district it is about (empty: city-wide, or a place no longer known).
    pub district_ids: Vec<String>,
    pub community_ids: Vec<String>,
    pub city_wide: bool,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AuditEntry {
    pub seq: u64,
    /// RFC 3339 UTC.
    pub at: String,
    pub kind: String,
    pub actor: String,
    pub place: AuditPlace,
    /// One line, English.
    pub summary: String,
    /// The event's fields (hashes of codes and credentials left out).
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    /// `after` for the next page; null at the end of the log.
    pub next: Option<u64>,
}

fn invalid(detail: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalid_query", detail)
}

fn time(field: &str, s: &str) -> Result<i64, ApiError> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .map_err(|_| invalid(format!("{field}: '{s}' is not an RFC 3339 time")))
}

fn text(field: &str, v: &Option<String>) -> Result<Option<String>, ApiError> {
    match v {
        Some(s) if s.is_empty() || s.len() > 200 => Err(invalid(format!("{field} must be 1 to 200 bytes"))),
        other => Ok(other.clone()),
    }
}

#[utoipa::path(get, path = "/v1/audit", security(("bearer" = [])), params(AuditParams),
    responses(
        (status = 200, body = AuditPage, description = "oldest first; CSV with `format=csv`"),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json")))]
pub async fn list_audit(
    State(app): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    params: Result<Query<AuditParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    require(&caller, Action::ReadAudit)?;
    let Query(p) = params?;
    let kinds: Vec<String> = match p.kind.as_deref() {
        None => KINDS.iter().map(|k| k.to_string()).collect(),
        Some(list) => list
            .split(',')
            .map(|k| {
                if audit::is_audit_kind(k) {
                    Ok(k.to_string())
                } else {
                    Err(invalid(format!("kind '{k}' is not one of {}", KINDS.join(", "))))
                }
            })
            .collect::<Result<_, _>>()?,
    };
    let limit = match p.limit {
        None => DEFAULT_LIMIT,
        Some(n) if (1..=MAX_LIMIT as u32).contains(&n) => n as usize,
        Some(n) => return Err(invalid(format!("limit {n} is not 1 to {MAX_LIMIT}"))),
    };
    let from = p.from.as_deref().map(|s| time("from", s)).transpose()?;
    let to = p.to.as_deref().map(|s| time("to", s)).transpose()?;
    if let (Some(f), Some(t)) = (from, to)
        && f >= t
    {
        return Err(invalid("from must be before to"));
    }
    let csv = match p.format.as_deref() {
        Some("csv") => true,
        Some("json") => false,
        Some(other) => return Err(invalid(format!("format '{other}' is not json or csv"))),
        None => headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("text/csv")),
    };
    let english = match p.lang.as_deref() {
        None | Some("zh") => false,
        Some("en") => true,
        Some(other) => return Err(invalid(format!("lang '{other}' is not zh or en"))),
    };
    let community = text("community_id", &p.community_id)?;
    let district = text("district_id", &p.district_id)?;
    let mut q = DecisionQuery { kinds, actor: text("actor", &p.actor)?, from, to, after: p.after.unwrap_or(0), limit };

    let mut entries = Vec::new();
    let mut next = None;
    for round in 0.. {
        let reader = app.reader.clone();
        let query = q.clone();
        let page = tokio::task::spawn_blocking(move || reader.decisions(&query))
            .await
            .map_err(|e| ApiError::internal("audit task", e))?
            .map_err(|e| ApiError::internal("reading the audit", e))?;
        {
            let state = app.engine.read();
            for e in page.events {
                if !scope::audit_entry(&state, &caller.actor, &e.body) {
                    continue;
                }
                let mut place = audit::place(&state, &e.body);
                let body = audit::part_for(&state, &caller.actor, &e.body, &mut place);
                if community.as_ref().is_some_and(|c| !place.communities.contains(c))
                    || district.as_ref().is_some_and(|d| !place.districts.contains(d))
                {
                    continue;
                }
                let one = |v: &Vec<String>| if v.len() == 1 { v.first().cloned() } else { None };
                entries.push(AuditEntry {
                    seq: e.seq,
                    at: rfc3339(e.at),
                    kind: body.kind().to_string(),
                    actor: e.actor,
                    summary: audit::summary(&body),
                    data: audit::data(&body),
                    place: AuditPlace {
                        district_id: one(&place.districts),
                        community_id: one(&place.communities),
                        district_ids: place.districts,
                        community_ids: place.communities,
                        city_wide: place.city_wide,
                    },
                });
                if entries.len() == limit {
                    break;
                }
            }
        }
        if entries.len() == limit {
            next = entries.last().map(|e| e.seq);
            break;
        }
        match page.through {
            None => break,
            Some(s) if round + 1 >= MAX_ROUNDS => {
                next = Some(s);
                break;
            }
            Some(s) => {
                q.after = s;
                q.limit = limit - entries.len();
            }
        }
    }
    let page = AuditPage { entries, next };
    if csv { csv_response(&page, english) } else { Ok(Json(page).into_response()) }
}

/// The page as CSV: UTF-8 with a BOM (so spreadsheets read the Chinese), one row per entry.
fn csv_response(page: &AuditPage, english: bool) -> Result<Response, ApiError> {
    let header: [&str; 8] = if english {
        ["seq", "at", "kind", "actor", "district_id", "community_id", "summary", "data"]
    } else {
        ["序号", "时间", "类型", "操作人", "区", "社区", "摘要", "数据"]
    };
    let mut w = csv::Writer::from_writer("\u{feff}".as_bytes().to_vec());
    w.write_record(header).map_err(|e| ApiError::internal("csv", e))?;
    for e in &page.entries {
        let join = |v: &[String]| v.join(" ");
        w.write_record([
            e.seq.to_string(),
            e.at.clone(),
            e.kind.clone(),
            e.actor.clone(),
            join(&e.place.district_ids),
            join(&e.place.community_ids),
            e.summary.clone(),
            e.data.to_string(),
        ])
        .map_err(|e| ApiError::internal("csv", e))?;
    }
    let body = w.into_inner().map_err(|e| ApiError::internal("csv", e))?;
    let mut resp = ([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_DISPOSITION,
        header::HeaderValue::from_static("attachment; filename=\"muster-audit.csv\""),
    );
    if let Some(n) = page.next
        && let Ok(v) = header::HeaderValue::from_str(&n.to_string())
    {
        resp.headers_mut().insert("x-next-after", v);
    }
    Ok(resp)
}
