//! Residents (issue #20): sign-in with a one-time code to a phone, requests (群众点单) and
//! their answers (社区派单), and members' proposals (创单). The rules are
//! `domain::residents` and `domain::scope`; here is what only the edge can do: draw the
//! code and the session's secrets, send the code (an HTTP SMS gateway, or the log in
//! `--demo`), sign the access token and set the refresh cookie (`gateway::access`, whose
//! refresh, sign-out and devices work for residents unchanged), and draw the community's QR
//! code.
//!
//! A phone number is never logged: the log line of a code names its challenge id only.

use std::sync::OnceLock;
use std::time::Duration;

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::AppState;
use super::access::{ClientIp, random_base32, refused, session_answer, set_cookie, sha256_hex, with_cookie};
use super::auth::{Caller, require};
use super::error::{ApiError, Problem};
use super::service::parse_time;
use crate::domain::dispatcher::{Actor, Command, Reply, rfc3339};
use crate::domain::residents::{
    self, DispatchOrder, Proposal, ProposalState, Request, ResidentCommand, proposal_json, request_json,
};
use crate::domain::scope::{self, Action};
use crate::domain::service_data::Rating;
use crate::engine::now_ms;

pub fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/v1/residents/code", post(send_code))
        .route("/v1/session/resident", post(verify))
        .route("/v1/communities/{id}/resident-link", get(resident_link))
        .route("/v1/requests", post(place).get(list_requests))
        .route("/v1/requests/{id}", get(get_request))
        .route("/v1/requests/{id}/dispatch", post(dispatch))
        .route("/v1/requests/{id}/merge", post(merge))
        .route("/v1/requests/{id}/decline", post(decline))
        .route("/v1/requests/{id}/confirm", post(confirm))
        .route("/v1/proposals", post(propose).get(list_proposals))
        .route("/v1/proposals/{id}/approve", post(approve))
        .route("/v1/proposals/{id}/decline", post(decline_proposal))
}

fn residents(action: ResidentCommand) -> Command {
    Command::Residents { action: Box::new(action) }
}

// ---------------------------------------------------------------- sign-in

/// A phone number as typed (spaces, dashes, parentheses, a +86 prefix), normalized as the
/// domain takes it. "+86" comes off a mainland mobile number only: any other "+" and 8 to
/// 15 digits (an 11-digit landline of +86 among them) stays as it is, and is valid as such.
fn normalize_phone(raw: &str) -> String {
    let kept: String = raw.chars().filter(|c| !matches!(c, ' ' | '-' | '(' | ')')).collect();
    match kept.strip_prefix("+86") {
        Some(rest) if rest.len() == 11 && residents::is_phone(rest) => rest.to_string(),
        _ => kept,
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CodeBody {
    /// The community of the QR code the resident scanned.
    #[schema(min_length = 1, example = "c001")]
    pub community_id: String,
    /// A mainland mobile number (11 digits, 13… to 19…), or + and 8 to 15 digits. Spaces,
    /// dashes and parentheses typed between them are ignored, and so is a +86 before a
    /// mainland mobile number; the pattern is the number without them.
    #[schema(pattern = "^(1[3-9][0-9]{9}|\\+[0-9]{8,15})(?![\\s\\S])", example = "13800138000")]
    pub phone: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CodeSent {
    /// Send it back with the code (`POST /v1/session/resident`).
    pub challenge_id: String,
    pub expires_at: String,
}

/// The SMS gateway's client (one, reused: its connection pool).
fn sms_client(timeout_ms: u64) -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .timeout(Duration::from_millis(timeout_ms))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("a plain HTTP client")
    })
}

#[utoipa::path(post, path = "/v1/residents/code", tag = "residents", request_body = CodeBody, responses(
    (status = 202, body = CodeSent, description = "a code is on its way to the phone"),
    (status = 422, body = Problem, content_type = "application/problem+json", description = "unknown_community, invalid_phone"),
    (status = 429, body = Problem, content_type = "application/problem+json", description = "too many codes for this phone or from this address"),
    (status = 502, body = Problem, content_type = "application/problem+json", description = "sms_failed: the SMS gateway did not take it"),
    (status = 503, body = Problem, content_type = "application/problem+json", description = "sms_unavailable: no SMS gateway is configured")))]
pub async fn send_code(
    State(app): State<AppState>,
    ClientIp(ip): ClientIp,
    body: Result<Json<CodeBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(b) = body?;
    let cfg = &app.settings.residents;
    let phone = normalize_phone(&b.phone);
    if !residents::is_phone(&phone) {
        return Err(ApiError::unprocessable(
            "invalid_phone",
            "a phone number is 11 digits (13…19…), or + and 8 to 15 digits",
        ));
    }
    if cfg.sms_url.is_empty() && !cfg.log_codes {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "sms_unavailable",
            "codes cannot be sent: no SMS gateway is configured ([residents] sms_url)",
        ));
    }
    app.limits.check_code(&sha256_hex(&phone), ip)?;
    let challenge_id = random_base32(16);
    let code = format!("{:06}", rand::rngs::OsRng.gen_range(0..1_000_000u32));
    let cmd = residents(ResidentCommand::Challenge {
        challenge_id: challenge_id.clone(),
        community_id: b.community_id.clone(),
        phone: phone.clone(),
        code_hash: sha256_hex(&format!("{challenge_id}:{code}")),
        ttl_s: cfg.code_ttl_s,
    });
    app.engine.submit(Actor::System, cmd).await?;
    let expires_at = rfc3339(now_ms() + cfg.code_ttl_s as i64 * 1000);
    if cfg.log_codes {
        // Development only: the code by its challenge, never with the phone.
        tracing::info!(challenge_id = %challenge_id, code = %code, "resident sign-in code");
    }
    if !cfg.sms_url.is_empty() {
        let text =
            format!("【muster】您的验证码 {code}，{} 分钟内有效。Your code: {code}", cfg.code_ttl_s.div_ceil(60));
        let sent = sms_client(cfg.sms_timeout_ms)
            .post(&cfg.sms_url)
            .json(&serde_json::json!({"to": phone, "text": text}))
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => {}
            Ok(r) => {
                tracing::warn!(challenge_id = %challenge_id, status = r.status().as_u16(), "the SMS gateway refused a code");
                return Err(sms_failed());
            }
            Err(e) => {
                tracing::warn!(challenge_id = %challenge_id, error = %e.without_url(), "the SMS gateway could not be reached");
                return Err(sms_failed());
            }
        }
    }
    Ok((StatusCode::ACCEPTED, Json(CodeSent { challenge_id, expires_at })).into_response())
}

fn sms_failed() -> ApiError {
    ApiError::new(StatusCode::BAD_GATEWAY, "sms_failed", "the code could not be sent; try again in a moment")
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyBody {
    pub challenge_id: String,
    /// The six digits sent to the phone.
    #[schema(example = "123456")]
    pub code: String,
    /// A name for the device (default: the browser's User-Agent).
    pub device: Option<String>,
}

#[utoipa::path(post, path = "/v1/session/resident", tag = "residents", request_body = VerifyBody, responses(
    (status = 200, body = super::access::SessionAnswer, description = "signed in as the resident of that phone and community; Set-Cookie: muster_refresh"),
    (status = 401, body = Problem, content_type = "application/problem+json", description = "wrong_code (an attempt is used up), unknown_challenge (unknown, expired, used, or out of attempts)"),
    (status = 429, body = Problem, content_type = "application/problem+json")))]
pub async fn verify(
    State(app): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: Result<Json<VerifyBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    app.limits.check_session(ip)?;
    let Json(b) = body?;
    let secure = super::access::secure(&app.settings, &headers);
    let code: String = b.code.chars().filter(char::is_ascii_digit).collect();
    let family = random_base32(16);
    let secret = random_base32(32);
    let ttl_s = app.settings.auth.session_ttl_s;
    let cmd = residents(ResidentCommand::Verify {
        challenge_id: b.challenge_id.clone(),
        code_hash: sha256_hex(&format!("{}:{code}", b.challenge_id)),
        family: family.clone(),
        refresh_hash: sha256_hex(&secret),
        device: super::access::device_label(b.device, &headers),
        ttl_s,
    });
    if let Err(e) = app.engine.submit(Actor::System, cmd).await {
        return Ok(refused(e.into(), secure));
    }
    let subject = app.engine.read().sessions.get(&family).map(|s| s.subject.clone());
    let Some(subject) = subject else {
        let e = ApiError::new(
            StatusCode::UNAUTHORIZED,
            "wrong_code",
            "that code is not right; check the SMS and try again",
        );
        return Ok(refused(e, secure));
    };
    let answer = session_answer(&app, &subject, &family);
    let cookie = set_cookie(&format!("{family}.{secret}"), ttl_s, secure);
    Ok(with_cookie(Json(answer).into_response(), cookie))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ResidentLink {
    pub community_id: String,
    /// The resident page of the community (`/r#<community>`).
    pub link: String,
    /// The link as a QR code, an SVG document, to print.
    pub qr_svg: String,
}

#[utoipa::path(get, path = "/v1/communities/{id}/resident-link", tag = "residents", security(("bearer" = [])), params(("id" = String, Path)),
    responses(
    (status = 200, body = ResidentLink),
    (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json", description = "unknown_community (also outside your scope)")))]
pub async fn resident_link(
    State(app): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<ResidentLink>, ApiError> {
    require(&caller, Action::DispatchRequest)?;
    let visible = {
        let state = app.engine.read();
        state.city.community_by_id.get(&id).is_some_and(|&c| scope::community(&state, &caller.actor, c))
    };
    if !visible {
        return Err(ApiError::not_found("unknown_community", format!("no community '{id}' in your scope")));
    }
    let link = format!("{}/r#{id}", super::access::base_url(&app.settings, &headers));
    Ok(Json(ResidentLink { community_id: id, qr_svg: super::access::qr_svg(&link), link }))
}

// ---------------------------------------------------------------- requests

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestBody {
    /// A category id of `GET /v1/catalog`.
    #[schema(example = "elderly_help")]
    pub category: String,
    #[schema(example = "帮忙买药")]
    pub description: String,
    /// A grid of the resident's community.
    #[schema(example = "c001-g1")]
    pub grid_id: String,
    /// When the resident would like it: RFC 3339.
    #[schema(example = "2030-01-01T09:00:00Z")]
    pub preferred_start: String,
    #[schema(example = "2030-01-01T12:00:00Z")]
    pub preferred_end: String,
}

/// A request: `status` is `submitted`, `dispatched`, `claimed`, `in_service`, `served`,
/// `confirmed`, `declined` or `cancelled` (its order was). Staff and command also see the
/// resident's id and phone (to call back); a resident sees only their own requests.
#[derive(Debug, Serialize, ToSchema)]
pub struct RequestView {
    pub id: String,
    pub status: String,
    pub community_id: String,
    pub grid_id: String,
    pub category: String,
    pub description: String,
    pub preferred_start: String,
    pub preferred_end: String,
    pub placed_at: String,
    pub order_id: Option<String>,
    pub merged: bool,
    /// Why it was declined.
    pub reason: Option<String>,
    pub rating: Option<Rating>,
    pub comment: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resident_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
}

fn request_view(state: &crate::domain::dispatcher::State, actor: &Actor, r: &Request) -> Value {
    let mut v = request_json(state, r);
    if !matches!(actor, Actor::Resident { .. })
        && let Some(map) = v.as_object_mut()
    {
        map.insert("resident_id".into(), r.resident_id.clone().into());
        let phone = state.residents.residents.get(&r.resident_id).map(|x| x.phone.clone());
        map.insert("phone".into(), phone.into());
    }
    v
}

fn answer_request(app: &AppState, actor: &Actor, id: &str) -> Result<Json<Value>, ApiError> {
    let state = app.engine.read();
    let r = residents::visible_request(&state, actor, id)?;
    Ok(Json(request_view(&state, actor, r)))
}

#[utoipa::path(post, path = "/v1/requests", tag = "residents", security(("bearer" = [])), request_body = RequestBody, responses(
    (status = 201, body = RequestView),
    (status = 403, body = Problem, content_type = "application/problem+json", description = "role_not_allowed: residents only"),
    (status = 422, body = Problem, content_type = "application/problem+json", description = "unknown_grid (not of your community), unknown_category, bad_text, bad_window")))]
pub async fn place(
    State(app): State<AppState>,
    caller: Caller,
    body: Result<Json<RequestBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    require(&caller, Action::PlaceRequest)?;
    let Json(b) = body?;
    let cmd = residents(ResidentCommand::Place {
        category: b.category,
        description: b.description,
        grid_id: b.grid_id,
        preferred_start: parse_time("preferred_start", &b.preferred_start)?,
        preferred_end: parse_time("preferred_end", &b.preferred_end)?,
    });
    let Reply::Request(id) = app.engine.submit(caller.actor.clone(), cmd).await? else {
        return Err(ApiError::internal("place", "no request id"));
    };
    Ok((StatusCode::CREATED, answer_request(&app, &caller.actor, &id)?).into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RequestQuery {
    /// Only those `submitted` (the inbox), or of another status.
    pub status: Option<String>,
    pub community_id: Option<String>,
}

#[utoipa::path(get, path = "/v1/requests", tag = "residents", security(("bearer" = [])), params(RequestQuery), responses(
    (status = 200, body = Vec<RequestView>, description = "a resident's own requests; staff and command, their communities'; newest first"),
    (status = 403, body = Problem, content_type = "application/problem+json")))]
pub async fn list_requests(
    State(app): State<AppState>,
    caller: Caller,
    q: Result<Query<RequestQuery>, QueryRejection>,
) -> Result<Json<Vec<Value>>, ApiError> {
    require(&caller, Action::ReadRequests)?;
    let Query(q) = q?;
    let state = app.engine.read();
    Ok(Json(
        state
            .residents
            .requests
            .values()
            .rev()
            .filter(|r| scope::request(&state, &caller.actor, r))
            .filter(|r| q.community_id.as_ref().is_none_or(|c| &r.community_id == c))
            .filter(|r| q.status.as_ref().is_none_or(|s| residents::status(&state, r) == s))
            .take(app.settings.server.max_list)
            .map(|r| request_view(&state, &caller.actor, r))
            .collect(),
    ))
}

#[utoipa::path(get, path = "/v1/requests/{id}", tag = "residents", security(("bearer" = [])), params(("id" = String, Path)), responses(
    (status = 200, body = RequestView),
    (status = 404, body = Problem, content_type = "application/problem+json", description = "unknown_request (also anyone else's)")))]
pub async fn get_request(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    require(&caller, Action::ReadRequests)?;
    answer_request(&app, &caller.actor, &id)
}

/// The order a request becomes (an example without `difficulty`: the request's category's
/// is the default, and a lower one is refused).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"title": "帮忙买药", "window_start": "2030-01-01T09:00:00Z",
    "window_end": "2030-01-01T12:00:00Z", "slots": 1, "skills": [], "note": "3栋2单元"}))]
pub struct DispatchBody {
    /// 1 to 200 characters, not all blank. Default: the category's name and the start of
    /// the description.
    #[schema(min_length = 1, max_length = 200, pattern = "\\S", example = "帮忙买药")]
    pub title: Option<String>,
    /// 1–5; the request's category's by default, and not lower.
    #[schema(minimum = 1, maximum = 5, example = 5)]
    pub difficulty: Option<u8>,
    /// RFC 3339.
    #[schema(format = DateTime, example = "2030-01-01T09:00:00Z")]
    pub window_start: String,
    /// RFC 3339; after window_start, and in the future.
    #[schema(format = DateTime, example = "2030-01-01T12:00:00Z")]
    pub window_end: String,
    /// 1 to `dispatch.service.max_slots` (`2.0` is 2: JSON Schema's integer).
    #[serde(deserialize_with = "super::error::whole_u32")]
    #[schema(minimum = 1, example = 1)]
    pub slots: u32,
    /// Skill ids of `GET /v1/catalog`.
    #[serde(default)]
    #[schema(example = json!([]))]
    pub skills: Vec<String>,
    /// At most 1000 characters. Default: the resident's description.
    #[schema(max_length = 1000, example = "3栋2单元")]
    pub note: Option<String>,
}

#[utoipa::path(post, path = "/v1/requests/{id}/dispatch", tag = "residents", security(("bearer" = [])), params(("id" = String, Path)), request_body = DispatchBody, responses(
    (status = 200, body = RequestView, description = "the request, dispatched: `order_id` is the order it became, which goes out as any order"),
    (status = 404, body = Problem, content_type = "application/problem+json", description = "unknown_request"),
    (status = 409, body = Problem, content_type = "application/problem+json", description = "request_closed"),
    (status = 422, body = Problem, content_type = "application/problem+json", description = "the order's refusals: bad_window, slots_out_of_range…")))]
pub async fn dispatch(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Json<DispatchBody>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    require(&caller, Action::DispatchRequest)?;
    let Json(b) = body?;
    let order = DispatchOrder {
        title: b.title,
        difficulty: b.difficulty,
        window_start: parse_time("window_start", &b.window_start)?,
        window_end: parse_time("window_end", &b.window_end)?,
        slots: b.slots,
        skills: b.skills,
        note: b.note,
    };
    app.engine
        .submit(caller.actor.clone(), residents(ResidentCommand::Dispatch { request_id: id.clone(), order }))
        .await?;
    answer_request(&app, &caller.actor, &id)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MergeBody {
    #[schema(example = "ord-1")]
    pub order_id: String,
}

#[utoipa::path(post, path = "/v1/requests/{id}/merge", tag = "residents", security(("bearer" = [])), params(("id" = String, Path)), request_body = MergeBody, responses(
    (status = 200, body = RequestView),
    (status = 404, body = Problem, content_type = "application/problem+json", description = "unknown_request"),
    (status = 409, body = Problem, content_type = "application/problem+json", description = "request_closed, order_closed"),
    (status = 422, body = Problem, content_type = "application/problem+json", description = "unknown_order (not of the request's community)")))]
pub async fn merge(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Json<MergeBody>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    require(&caller, Action::DispatchRequest)?;
    let Json(b) = body?;
    let cmd = residents(ResidentCommand::Merge { request_id: id.clone(), order_id: b.order_id });
    app.engine.submit(caller.actor.clone(), cmd).await?;
    answer_request(&app, &caller.actor, &id)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReasonBody {
    /// Shown to the resident (or the member).
    #[schema(example = "不在服务范围")]
    pub reason: String,
}

#[utoipa::path(post, path = "/v1/requests/{id}/decline", tag = "residents", security(("bearer" = [])), params(("id" = String, Path)), request_body = ReasonBody, responses(
    (status = 200, body = RequestView),
    (status = 404, body = Problem, content_type = "application/problem+json", description = "unknown_request"),
    (status = 409, body = Problem, content_type = "application/problem+json", description = "request_closed"),
    (status = 422, body = Problem, content_type = "application/problem+json", description = "reason_required, text_too_long")))]
pub async fn decline(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Json<ReasonBody>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    require(&caller, Action::DispatchRequest)?;
    let Json(b) = body?;
    app.engine
        .submit(caller.actor.clone(), residents(ResidentCommand::Decline { request_id: id.clone(), reason: b.reason }))
        .await?;
    answer_request(&app, &caller.actor, &id)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfirmBody {
    /// 很好、好、一般: it rates every member whose work on the order counted.
    pub rating: Rating,
    pub comment: Option<String>,
}

#[utoipa::path(post, path = "/v1/requests/{id}/confirm", tag = "residents", security(("bearer" = [])), params(("id" = String, Path)), request_body = ConfirmBody, responses(
    (status = 200, body = RequestView),
    (status = 403, body = Problem, content_type = "application/problem+json", description = "role_not_allowed: the resident only"),
    (status = 404, body = Problem, content_type = "application/problem+json", description = "unknown_request (also anyone else's)"),
    (status = 409, body = Problem, content_type = "application/problem+json", description = "request_not_served, already_rated")))]
pub async fn confirm(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Json<ConfirmBody>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    require(&caller, Action::PlaceRequest)?;
    let Json(b) = body?;
    let cmd = residents(ResidentCommand::Confirm { request_id: id.clone(), rating: b.rating, comment: b.comment });
    app.engine.submit(caller.actor.clone(), cmd).await?;
    answer_request(&app, &caller.actor, &id)
}

// ---------------------------------------------------------------- proposals (创单)

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProposalBody {
    /// A category id of `GET /v1/catalog`.
    #[schema(example = "skills_training")]
    pub category: String,
    /// 1 to 200 characters, not all blank.
    #[schema(min_length = 1, max_length = 200, pattern = "\\S", example = "教老人用智能手机")]
    pub title: String,
    /// 1 to 1000 characters, not all blank.
    #[schema(min_length = 1, max_length = 1000, pattern = "\\S", example = "每周六上午")]
    pub description: Option<String>,
    /// A grid of a community the member serves (lives in, or their team is paired with).
    #[schema(min_length = 1, example = "c001-g1")]
    pub grid_id: String,
    /// 1 to 200 characters, not all blank.
    #[schema(min_length = 1, max_length = 200, pattern = "\\S", example = "3栋独居老人")]
    pub for_whom: String,
    /// RFC 3339.
    #[schema(format = DateTime, example = "2030-01-01T09:00:00Z")]
    pub window_start: String,
    /// RFC 3339; after window_start, and in the future.
    #[schema(format = DateTime, example = "2030-01-01T12:00:00Z")]
    pub window_end: String,
    /// Members the order takes, the proposer included: 1 to `dispatch.service.max_slots`
    /// (default 1).
    #[schema(minimum = 1, example = 1)]
    #[serde(default, deserialize_with = "super::error::whole_u32_opt")]
    pub slots: Option<u32>,
}

/// A proposal: `status` is `proposed`, `approved` (then `order_id`) or `declined` (`reason`).
#[derive(Debug, Serialize, ToSchema)]
pub struct ProposalView {
    pub id: String,
    pub status: ProposalState,
    pub member_id: String,
    pub community_id: String,
    pub grid_id: String,
    pub category: String,
    pub title: String,
    pub description: Option<String>,
    pub for_whom: String,
    pub window_start: String,
    pub window_end: String,
    pub slots: u32,
    pub proposed_at: String,
    pub order_id: Option<String>,
    pub reason: Option<String>,
}

fn answer_proposal(app: &AppState, actor: &Actor, id: &str) -> Result<Json<Value>, ApiError> {
    let state = app.engine.read();
    let p: &Proposal = residents::visible_proposal(&state, actor, id)?;
    Ok(Json(proposal_json(p)))
}

#[utoipa::path(post, path = "/v1/proposals", tag = "residents", security(("bearer" = [])), request_body = ProposalBody, responses(
    (status = 201, body = ProposalView),
    (status = 403, body = Problem, content_type = "application/problem+json", description = "role_not_allowed: members only"),
    (status = 422, body = Problem, content_type = "application/problem+json", description = "unknown_grid, unknown_category, bad_text, bad_window, slots_out_of_range")))]
pub async fn propose(
    State(app): State<AppState>,
    caller: Caller,
    body: Result<Json<ProposalBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    require(&caller, Action::Propose)?;
    let Json(b) = body?;
    let cmd = residents(ResidentCommand::Propose {
        category: b.category,
        title: b.title,
        description: b.description,
        grid_id: b.grid_id,
        for_whom: b.for_whom,
        window_start: parse_time("window_start", &b.window_start)?,
        window_end: parse_time("window_end", &b.window_end)?,
        slots: b.slots,
    });
    let Reply::Proposal(id) = app.engine.submit(caller.actor.clone(), cmd).await? else {
        return Err(ApiError::internal("propose", "no proposal id"));
    };
    Ok((StatusCode::CREATED, answer_proposal(&app, &caller.actor, &id)?).into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ProposalQuery {
    /// `proposed`, `approved` or `declined`.
    pub status: Option<ProposalState>,
}

#[utoipa::path(get, path = "/v1/proposals", tag = "residents", security(("bearer" = [])), params(ProposalQuery), responses(
    (status = 200, body = Vec<ProposalView>, description = "a member's own; staff and command, their communities'; newest first"),
    (status = 403, body = Problem, content_type = "application/problem+json")))]
pub async fn list_proposals(
    State(app): State<AppState>,
    caller: Caller,
    q: Result<Query<ProposalQuery>, QueryRejection>,
) -> Result<Json<Vec<Value>>, ApiError> {
    require(&caller, Action::ReadProposals)?;
    let Query(q) = q?;
    let state = app.engine.read();
    Ok(Json(
        state
            .residents
            .proposals
            .values()
            .rev()
            .filter(|p| scope::proposal(&state, &caller.actor, p))
            .filter(|p| q.status.is_none_or(|s| p.state == s))
            .take(app.settings.server.max_list)
            .map(proposal_json)
            .collect(),
    ))
}

#[utoipa::path(post, path = "/v1/proposals/{id}/approve", tag = "residents", security(("bearer" = [])), params(("id" = String, Path)), responses(
    (status = 200, body = ProposalView, description = "approved: `order_id` is the order, with the proposer as its first claimant"),
    (status = 404, body = Problem, content_type = "application/problem+json", description = "unknown_proposal"),
    (status = 409, body = Problem, content_type = "application/problem+json", description = "proposal_closed, not_eligible"),
    (status = 422, body = Problem, content_type = "application/problem+json", description = "bad_window (its time has passed)")))]
pub async fn approve(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    require(&caller, Action::DecideProposal)?;
    app.engine.submit(caller.actor.clone(), residents(ResidentCommand::Approve { proposal_id: id.clone() })).await?;
    answer_proposal(&app, &caller.actor, &id)
}

#[utoipa::path(post, path = "/v1/proposals/{id}/decline", tag = "residents", security(("bearer" = [])), params(("id" = String, Path)), request_body = ReasonBody, responses(
    (status = 200, body = ProposalView),
    (status = 404, body = Problem, content_type = "application/problem+json", description = "unknown_proposal"),
    (status = 409, body = Problem, content_type = "application/problem+json", description = "proposal_closed"),
    (status = 422, body = Problem, content_type = "application/problem+json", description = "reason_required")))]
pub async fn decline_proposal(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Json<ReasonBody>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    require(&caller, Action::DecideProposal)?;
    let Json(b) = body?;
    let cmd = residents(ResidentCommand::DeclineProposal { proposal_id: id.clone(), reason: b.reason });
    app.engine.submit(caller.actor.clone(), cmd).await?;
    answer_proposal(&app, &caller.actor, &id)
}
