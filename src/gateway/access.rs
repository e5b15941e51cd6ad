//! Sign-in without pasted tokens: sign-in links (invitations), the sessions they open, and
//! the devices a person has signed in. The rules are `domain::access` and `domain::scope`;
//! here is what only the edge can do: draw random codes and ids, hash them (the log holds
//! hashes only), sign access tokens, set the refresh cookie, draw QR codes.
//!
//! - A link is `<base>/join#<code>`: the code (128 random bits, base32) rides in the
//!   fragment, which browsers send to no server and put in no Referer, so it stays out of
//!   access logs and proxies. It is shown once, in the 201; only its SHA-256 is kept.
//! - Redeeming it (`POST /v1/session`) answers a short-lived access token (the usual JWT,
//!   `auth.access_ttl_s`, with the family as `sid`) and sets the refresh credential as a
//!   cookie: `muster_refresh=<family>.<secret>; HttpOnly; SameSite=Strict;
//!   Path=/v1/session` (and `Secure` over https), so page scripts never hold it and it
//!   goes only to `/v1/session/…`. Each refresh rotates it; the domain revokes the family
//!   when a rotated one comes back.
//! - Redeem and refresh have their own per-IP limit (`limits.session_per_ip_*`).

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use super::AppState;
use super::auth::{Caller, Claims, Role, require};
use super::error::{ApiError, Problem, require_csv};
use crate::domain::access::{self, Invitation, InvitationState, Invite, Session};
use crate::domain::dispatcher::{Actor, Code, Command, DomainError, Reply, State as DomainState, rfc3339};
use crate::domain::scope::{self, Action};
use crate::engine::{EngineHandle, now_ms};
use crate::settings::Settings;

/// The refresh cookie's name.
pub const COOKIE: &str = "muster_refresh";
/// Where the refresh cookie goes: the session endpoints only.
const COOKIE_PATH: &str = "/v1/session";

// ---------------------------------------------------------------- secrets and hashes

/// `bytes` random bytes in lowercase base32 (RFC 4648, no padding): 16 bytes, 26 characters.
pub(super) fn random_base32(bytes: usize) -> String {
    const A: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut buf = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    let mut out = String::with_capacity(bytes * 8 / 5 + 1);
    let (mut acc, mut bits) = (0u32, 0u32);
    for b in buf {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(A[((acc >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(A[((acc << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// SHA-256 in hex: what the log holds of a code or a refresh credential.
pub fn sha256_hex(s: &str) -> String {
    Sha256::digest(s.trim().as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// The refresh credential in a request's cookie: (family, secret).
fn refresh_cookie(headers: &HeaderMap) -> Option<(String, String)> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .and_then(|(_, v)| v.split_once('.'))
        .map(|(f, s)| (f.to_string(), s.to_string()))
}

/// Came the request over https (directly, through a proxy that says so, or as configured)?
pub(super) fn secure(settings: &Settings, headers: &HeaderMap) -> bool {
    settings.auth.secure_cookie
        || settings.auth.public_url.starts_with("https://")
        || headers.get("x-forwarded-proto").is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"))
}

pub(super) fn set_cookie(value: &str, max_age_s: u64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{COOKIE}={value}; HttpOnly; SameSite=Strict; Path={COOKIE_PATH}; Max-Age={max_age_s}{secure}"
    ))
    .expect("a cookie of base32 and ASCII")
}

/// Where sign-in links point: `auth.public_url`, else the scheme and Host of the request.
pub(super) fn base_url(settings: &Settings, headers: &HeaderMap) -> String {
    if !settings.auth.public_url.is_empty() {
        return settings.auth.public_url.trim_end_matches('/').to_string();
    }
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("localhost");
    let scheme = if secure(settings, headers) { "https" } else { "http" };
    format!("{scheme}://{host}")
}

/// The link a code opens.
pub fn link(base: &str, code: &str) -> String {
    format!("{base}/join#{code}")
}

/// The link as a QR code, an SVG document (drawn here: no image from anywhere else).
pub fn qr_svg(link: &str) -> String {
    match qrcode::QrCode::with_error_correction_level(link.as_bytes(), qrcode::EcLevel::M) {
        Ok(code) => code
            .render::<qrcode::render::svg::Color>()
            .min_dimensions(200, 200)
            .dark_color(qrcode::render::svg::Color("#000000"))
            .light_color(qrcode::render::svg::Color("#ffffff"))
            .build(),
        Err(_) => String::new(),
    }
}

// ---------------------------------------------------------------- actors and claims

/// The role and scope id of an actor, as tokens and invitations write them.
pub fn role_and_scope(actor: &Actor) -> Option<(Role, Option<String>)> {
    Some(match actor {
        Actor::Command { district } => (Role::Command, district.clone()),
        Actor::Staff { community } => (Role::Staff, Some(community.clone())),
        Actor::UnitAdmin { unit } => (Role::UnitAdmin, Some(unit.clone())),
        Actor::Member { member } => (Role::Member, Some(member.clone())),
        Actor::Resident { resident } => (Role::Resident, Some(resident.clone())),
        Actor::System => return None,
    })
}

/// Whom an invitation or a session names: its role and the one id of its scope.
#[derive(Debug, Serialize, ToSchema)]
pub struct Person {
    pub role: Role,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub district_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub community_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub member_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resident_id: Option<String>,
}

impl Person {
    fn of(actor: &Actor) -> Person {
        let (role, id) = role_and_scope(actor).unwrap_or((Role::Command, None));
        let mut p =
            Person { role, district_id: None, community_id: None, unit_id: None, member_id: None, resident_id: None };
        match role {
            Role::Command => p.district_id = id,
            Role::Staff => p.community_id = id,
            Role::UnitAdmin => p.unit_id = id,
            Role::Member => p.member_id = id,
            Role::Resident => p.resident_id = id,
        }
        p
    }
}

/// The page a role starts on.
fn home(role: Role) -> &'static str {
    match role {
        Role::Command => "/dashboard",
        Role::Staff => "/console",
        Role::UnitAdmin => "/unit",
        Role::Member => "/m",
        Role::Resident => "/r",
    }
}

/// An access token for a session family's person.
fn access_token(keys: &super::auth::TokenKeys, settings: &Settings, subject: &Actor, family: &str) -> (String, u64) {
    let (role, id) = role_and_scope(subject).expect("a session's subject is a person");
    let now = now_ms() as u64 / 1000;
    let mut claims = Claims::new(role, id, now, settings.auth.access_ttl_s).expect("a session names a whole scope");
    claims.sid = Some(family.to_string());
    (keys.sign(&claims), claims.exp)
}

fn ts(ms: i64) -> String {
    rfc3339(ms)
}

// ---------------------------------------------------------------- invitations

/// The body of `POST /v1/invitations`: a role and the one id of its scope.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InviteBody {
    pub role: Role,
    pub district_id: Option<String>,
    pub community_id: Option<String>,
    pub unit_id: Option<String>,
    pub member_id: Option<String>,
    /// Seconds the link is valid (default `auth.invitation_ttl_s`, at most `auth.invitation_max_ttl_s`).
    pub ttl_s: Option<u64>,
}

/// The schema of `InviteBody`: one branch per role, each with the one scope field that
/// role's invitation names (a command invitation may name a district, or none: the city).
pub(super) fn invite_body_schema() -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
    use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
    let id = |example: &str| {
        ObjectBuilder::new().schema_type(Type::String).min_length(Some(1)).examples([serde_json::json!(example)])
    };
    let branch = |role: &str, field: &str, example: &str, required: bool| {
        let mut b = ObjectBuilder::new()
            .property("role", ObjectBuilder::new().schema_type(Type::String).enum_values(Some([role])))
            .required("role")
            .property(field, id(example))
            .property(
                "ttl_s",
                ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(1)).description(Some(
                    "Seconds the link is valid (default `auth.invitation_ttl_s`, at most `auth.invitation_max_ttl_s`).",
                )),
            )
            .additional_properties(Some(utoipa::openapi::schema::AdditionalProperties::FreeForm(false)));
        if required {
            b = b.required(field);
        }
        b
    };
    OneOfBuilder::new()
        .item(branch("command", "district_id", "d01", false))
        .item(branch("staff", "community_id", "c001", true))
        .item(branch("unit_admin", "unit_id", "u001", true))
        .item(branch("member", "member_id", "m00007", true))
        .description(Some("A role and the one id of its scope."))
        .into()
}

impl InviteBody {
    fn invitee(&self) -> Result<Actor, ApiError> {
        let given = [&self.district_id, &self.community_id, &self.unit_id, &self.member_id];
        if self.role == Role::Resident {
            return Err(ApiError::unprocessable(
                "invalid_body",
                "residents are not invited: they sign in with a code to their phone (/r#<community>)",
            ));
        }
        let (field, actor) = match self.role {
            Role::Command => ("district_id", Actor::Command { district: self.district_id.clone() }),
            Role::Staff => ("community_id", Actor::Staff { community: self.community_id.clone().unwrap_or_default() }),
            Role::UnitAdmin => ("unit_id", Actor::UnitAdmin { unit: self.unit_id.clone().unwrap_or_default() }),
            Role::Member | Role::Resident => {
                ("member_id", Actor::Member { member: self.member_id.clone().unwrap_or_default() })
            }
        };
        let own = match self.role {
            Role::Command => 0,
            Role::Staff => 1,
            Role::UnitAdmin => 2,
            Role::Member | Role::Resident => 3,
        };
        let others = given.iter().enumerate().any(|(i, v)| i != own && v.is_some());
        let missing = self.role != Role::Command && given[own].as_deref().is_none_or(str::is_empty);
        if others || missing {
            return Err(ApiError::unprocessable(
                "invalid_body",
                format!("a {} invitation names {field} and no other scope", self.role.as_str()),
            ));
        }
        Ok(actor)
    }
}

fn ttl(settings: &Settings, ttl_s: Option<u64>) -> Result<u64, ApiError> {
    let a = &settings.auth;
    match ttl_s.unwrap_or(a.invitation_ttl_s) {
        t if (1..=a.invitation_max_ttl_s).contains(&t) => Ok(t),
        _ => Err(ApiError::unprocessable(
            Code::InvalidInvitation.as_str(),
            format!("ttl_s must be 1 to {}", a.invitation_max_ttl_s),
        )),
    }
}

/// A link just made: the code is shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct IssuedInvitation {
    pub id: String,
    #[serde(flatten)]
    pub invitee: Person,
    pub link: String,
    pub code: String,
    pub expires_at: String,
    /// The link as a QR code, an SVG document (show it as an image, e.g. a `data:` URL).
    pub qr_svg: String,
}

/// An invitation as lists show it: never its code.
#[derive(Debug, Serialize, ToSchema)]
pub struct InvitationView {
    pub id: String,
    #[serde(flatten)]
    pub invitee: Person,
    pub issued_by: String,
    pub issued_at: String,
    pub expires_at: String,
    /// `open`, `expired`, `redeemed` or `revoked`.
    pub state: String,
    pub closed_at: Option<String>,
}

impl InvitationView {
    fn new(i: &Invitation, now: i64) -> Self {
        let state = match i.state {
            InvitationState::Open if now >= i.expires_at => "expired",
            InvitationState::Open => "open",
            InvitationState::Redeemed => "redeemed",
            InvitationState::Revoked => "revoked",
        };
        InvitationView {
            id: i.id.clone(),
            invitee: Person::of(&i.invitee),
            issued_by: i.issued_by.clone(),
            issued_at: ts(i.issued_at),
            expires_at: ts(i.expires_at),
            state: state.into(),
            closed_at: i.closed_at.map(ts),
        }
    }
}

/// Issues invitations through the engine and answers each with its code and link.
async fn issue(
    engine: &EngineHandle,
    actor: Actor,
    invitees: Vec<Actor>,
    ttl_s: u64,
    base: &str,
) -> Result<Vec<IssuedInvitation>, ApiError> {
    let codes: Vec<String> = invitees.iter().map(|_| random_base32(16)).collect();
    let invitations = invitees
        .into_iter()
        .zip(&codes)
        .map(|(invitee, code)| Invite { invitee, ttl_s, code_hash: sha256_hex(code) })
        .collect();
    engine.submit(actor, Command::Invite { invitations }).await?;
    let state = engine.read();
    codes
        .into_iter()
        .map(|code| {
            let inv = state
                .invitation_by_code
                .get(&sha256_hex(&code))
                .and_then(|id| state.invitations.get(id))
                .ok_or_else(|| ApiError::internal("invite", "an invitation just made is missing"))?;
            let link = link(base, &code);
            Ok(IssuedInvitation {
                id: inv.id.clone(),
                invitee: Person::of(&inv.invitee),
                qr_svg: qr_svg(&link),
                link,
                code,
                expires_at: ts(inv.expires_at),
            })
        })
        .collect()
}

/// Sign-in links for the demo (`serve --demo`), made as `Actor::System`: one per person.
pub async fn demo_links(
    engine: &EngineHandle,
    settings: &Settings,
    base: &str,
    invitees: Vec<Actor>,
) -> Result<Vec<String>, ApiError> {
    let made = issue(engine, Actor::System, invitees, settings.auth.invitation_max_ttl_s, base).await?;
    Ok(made.into_iter().map(|i| i.link).collect())
}

#[utoipa::path(post, path = "/v1/invitations", tag = "access", security(("bearer" = [])), request_body = InviteBody,
    responses(
    (status = 201, body = IssuedInvitation, description = "the link and its code, shown this once"),
    (status = 403, body = Problem, content_type = "application/problem+json", description = "role_not_allowed, invitee_not_allowed"),
    (status = 422, body = Problem, content_type = "application/problem+json", description = "unknown_community, unknown_unit, unknown_member (also outside your scope), invalid_invitation")))]
pub async fn invite(
    State(app): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Json<InviteBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    require(&caller, Action::Invite)?;
    let Json(b) = body?;
    let invitee = b.invitee()?;
    let ttl_s = ttl(&app.settings, b.ttl_s)?;
    let base = base_url(&app.settings, &headers);
    let mut made = issue(&app.engine, caller.actor, vec![invitee], ttl_s, &base).await?;
    Ok((StatusCode::CREATED, Json(made.remove(0))).into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct BatchQuery {
    /// Seconds each link is valid (as for one).
    #[param(minimum = 1)]
    pub ttl_s: Option<u64>,
}

/// The body of `POST /v1/invitations/batch`: a `member_id` header and 1 to 5000 member
/// ids, one a line (the file may have other columns; this is the shape a client needs).
pub struct MembersCsv;

impl utoipa::PartialSchema for MembersCsv {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some("^member_id\r?\n([0-9A-Za-z_-]{1,64}\r?\n){1,5000}$"))
            .into()
    }
}

impl ToSchema for MembersCsv {}

#[derive(Debug, Serialize, ToSchema)]
pub struct IssuedBatch {
    pub invitations: Vec<IssuedInvitation>,
}

/// `POST /v1/invitations/batch`: CSV with a `member_id` column (other columns are
/// ignored), one link per member, all or none; a refusal names every bad row (row 1 is
/// the first after the header).
#[utoipa::path(post, path = "/v1/invitations/batch", tag = "access", security(("bearer" = [])), params(BatchQuery),
    request_body(content = MembersCsv, content_type = "text/csv", example = "member_id\nm00007\n"),
    responses(
    (status = 201, body = IssuedBatch),
    (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 415, body = Problem, content_type = "application/problem+json"),
    (status = 422, body = Problem, content_type = "application/problem+json", description = "invalid_csv, or the domain's code with every bad row in the detail")))]
pub async fn invite_batch(
    State(app): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    q: Result<Query<BatchQuery>, QueryRejection>,
    body: Bytes,
) -> Result<Response, ApiError> {
    require(&caller, Action::Invite)?;
    let Query(q) = q?;
    require_csv(&headers, "send the members as text/csv with a member_id column")?;
    let mut rdr = csv::ReaderBuilder::new().trim(csv::Trim::All).flexible(true).from_reader(body.as_ref());
    let column = rdr
        .headers()
        .map_err(|e| ApiError::unprocessable("invalid_csv", format!("the header: {e}")))?
        .iter()
        .position(|h| h == "member_id")
        .ok_or_else(|| ApiError::unprocessable("invalid_csv", "the header has no member_id column"))?;
    let mut invitees = Vec::new();
    for (i, rec) in rdr.records().enumerate() {
        let rec = rec.map_err(|e| ApiError::unprocessable("invalid_csv", format!("row {}: {e}", i + 1)))?;
        let id = rec.get(column).unwrap_or("").to_string();
        if id.is_empty() {
            return Err(ApiError::unprocessable("invalid_csv", format!("row {}: member_id is empty", i + 1)));
        }
        invitees.push(Actor::Member { member: id });
    }
    if invitees.is_empty() {
        return Err(ApiError::unprocessable("invalid_csv", "no members: one member_id per row after the header"));
    }
    let ttl_s = ttl(&app.settings, q.ttl_s)?;
    let base = base_url(&app.settings, &headers);
    let invitations = issue(&app.engine, caller.actor, invitees, ttl_s, &base).await?;
    Ok((StatusCode::CREATED, Json(IssuedBatch { invitations })).into_response())
}

#[utoipa::path(get, path = "/v1/invitations", tag = "access", security(("bearer" = [])), responses(
    (status = 200, body = Vec<InvitationView>, description = "the links the caller may see (whoever may invite their invitee), newest first, without codes"),
    (status = 403, body = Problem, content_type = "application/problem+json")))]
pub async fn list_invitations(
    State(app): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<InvitationView>>, ApiError> {
    require(&caller, Action::Invite)?;
    let state = app.engine.read();
    let now = now_ms();
    let max = app.settings.server.max_list;
    Ok(Json(
        state
            .invitations
            .values()
            .rev()
            .filter(|i| scope::invitation(&state, &caller.actor, i))
            .take(max)
            .map(|i| InvitationView::new(i, now))
            .collect(),
    ))
}

#[utoipa::path(post, path = "/v1/invitations/{id}/revoke", tag = "access", security(("bearer" = [])), params(("id" = String, Path)),
    responses(
    (status = 200, body = InvitationView),
    (status = 404, body = Problem, content_type = "application/problem+json", description = "unknown_invitation (also outside your scope)"),
    (status = 409, body = Problem, content_type = "application/problem+json", description = "invitation_used")))]
pub async fn revoke_invitation(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<InvitationView>, ApiError> {
    require(&caller, Action::Invite)?;
    app.engine.submit(caller.actor.clone(), Command::RevokeInvitation { invitation_id: id.clone() }).await?;
    let state = app.engine.read();
    let inv = access::visible_invitation(&state, &caller.actor, &id)?;
    Ok(Json(InvitationView::new(inv, now_ms())))
}

// ---------------------------------------------------------------- sessions

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RedeemBody {
    /// The code from the link (after `#`; the `#` may be kept), letters and digits, at most
    /// 100; surrounding whitespace is ignored.
    #[schema(pattern = "^#?[0-9A-Za-z]{1,100}$", example = "f57qup7fknvix4wp4bt26yinv4")]
    pub code: String,
    /// A name for the device in "my devices" (default: the browser's User-Agent); cut to
    /// 100 characters.
    pub device: Option<String>,
}

/// A signed-in page's access token.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionAnswer {
    pub access_token: String,
    pub expires_at: String,
    /// Seconds until then.
    pub expires_in: u64,
    #[serde(flatten)]
    pub person: Person,
    /// The token's `sub`, e.g. `member:m00001`.
    pub sub: String,
    /// This device's session (the family id, `sid` in the token).
    pub session_id: String,
    /// The page the role starts on.
    pub home: String,
}

pub(super) fn session_answer(app: &AppState, subject: &Actor, family: &str) -> SessionAnswer {
    let (token, exp) = access_token(&app.keys, &app.settings, subject, family);
    let person = Person::of(subject);
    SessionAnswer {
        access_token: token,
        expires_at: ts(exp as i64 * 1000),
        expires_in: app.settings.auth.access_ttl_s,
        home: home(person.role).into(),
        person,
        sub: subject.label(),
        session_id: family.to_string(),
    }
}

/// An answer with a fresh refresh cookie, or with the cookie cleared.
pub(super) fn with_cookie(mut resp: Response, cookie: HeaderValue) -> Response {
    resp.headers_mut().append(header::SET_COOKIE, cookie);
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// A refusal of a sign-in or a refresh: 401 with the domain's code, the cookie cleared.
pub(super) fn refused(e: ApiError, secure: bool) -> Response {
    let e = if e.status == StatusCode::NOT_FOUND || e.status == StatusCode::CONFLICT {
        ApiError::new(StatusCode::UNAUTHORIZED, e.code, e.detail)
    } else {
        e
    };
    with_cookie(e.into_response(), set_cookie("", 0, secure))
}

pub(super) fn device_label(body: Option<String>, headers: &HeaderMap) -> String {
    let raw = body
        .filter(|d| !d.trim().is_empty())
        .or_else(|| headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(str::to_string))
        .unwrap_or_else(|| "unknown device".into());
    raw.trim().chars().take(100).collect()
}

/// The client's address, for the sign-in limit (unspecified where the server does not say,
/// as in a router test without a listener).
pub struct ClientIp(pub std::net::IpAddr);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Self, Self::Rejection> {
        let ip = parts.extensions.get::<ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip());
        Ok(ClientIp(ip.unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))))
    }
}

#[utoipa::path(post, path = "/v1/session", tag = "access", request_body = RedeemBody, responses(
    (status = 200, body = SessionAnswer, description = "signed in; Set-Cookie: muster_refresh (HttpOnly, SameSite=Strict, Path=/v1/session)"),
    (status = 401, body = Problem, content_type = "application/problem+json", description = "unknown_invitation, invitation_used, invitation_expired, invitation_revoked"),
    (status = 429, body = Problem, content_type = "application/problem+json")))]
pub async fn redeem(
    State(app): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: Result<Json<RedeemBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    app.limits.check_session(ip)?;
    let Json(b) = body?;
    let secure = secure(&app.settings, &headers);
    let code = b.code.trim().trim_start_matches('#').to_ascii_lowercase();
    if code.is_empty() || code.len() > 100 {
        return Ok(refused(ApiError::unprocessable("invalid_body", "send the code from the sign-in link"), secure));
    }
    let family = random_base32(16);
    let secret = random_base32(32);
    let cmd = Command::Redeem {
        code_hash: sha256_hex(&code),
        family: family.clone(),
        refresh_hash: sha256_hex(&secret),
        device: device_label(b.device, &headers),
        ttl_s: app.settings.auth.session_ttl_s,
    };
    if let Err(e) = app.engine.submit(Actor::System, cmd).await {
        return Ok(refused(e.into(), secure));
    }
    let subject = {
        let state = app.engine.read();
        match state.sessions.get(&family) {
            Some(s) => s.subject.clone(),
            None => return Err(ApiError::internal("redeem", "the session just opened is missing")),
        }
    };
    let answer = session_answer(&app, &subject, &family);
    let cookie = set_cookie(&format!("{family}.{secret}"), app.settings.auth.session_ttl_s, secure);
    Ok(with_cookie(Json(answer).into_response(), cookie))
}

#[utoipa::path(post, path = "/v1/session/refresh", tag = "access", responses(
    (status = 200, body = SessionAnswer, description = "a new access token; Set-Cookie: the rotated muster_refresh"),
    (status = 401, body = Problem, content_type = "application/problem+json", description = "no_session, unknown_session, session_expired, refresh_reused (the device's sign-in is revoked)"),
    (status = 429, body = Problem, content_type = "application/problem+json")))]
pub async fn refresh(
    State(app): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    app.limits.check_session(ip)?;
    let secure = secure(&app.settings, &headers);
    let Some((family, presented)) = refresh_cookie(&headers) else {
        return Ok(refused(ApiError::unauthorized("not signed in on this device: open a sign-in link"), secure));
    };
    let secret = random_base32(32);
    let cmd = Command::Refresh {
        family: family.clone(),
        presented_hash: sha256_hex(&presented),
        refresh_hash: sha256_hex(&secret),
        ttl_s: app.settings.auth.session_ttl_s,
    };
    match app.engine.submit(Actor::System, cmd).await {
        Ok(Reply::RefreshReused(_)) => {
            tracing::warn!(family = %family, "a rotated refresh credential was presented: the session is revoked");
            return Ok(refused(
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    Code::RefreshReused.as_str(),
                    "this sign-in was used from elsewhere and has been revoked; open a new sign-in link",
                ),
                secure,
            ));
        }
        Ok(_) => {}
        Err(e) => return Ok(refused(e.into(), secure)),
    }
    let subject = match app.engine.read().sessions.get(&family) {
        Some(s) => s.subject.clone(),
        None => return Ok(refused(unknown().into(), secure)),
    };
    let answer = session_answer(&app, &subject, &family);
    let cookie = set_cookie(&format!("{family}.{secret}"), app.settings.auth.session_ttl_s, secure);
    Ok(with_cookie(Json(answer).into_response(), cookie))
}

fn unknown() -> DomainError {
    crate::domain::errors::err(Code::UnknownSession, "this sign-in has ended; open a new sign-in link")
}

#[utoipa::path(post, path = "/v1/session/signout", tag = "access", responses(
    (status = 204, description = "this device is signed out (by its refresh cookie, or the bearer token's session); the cookie is cleared")))]
pub async fn sign_out(State(app): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let secure = secure(&app.settings, &headers);
    let cmd = match refresh_cookie(&headers) {
        Some((family, presented)) => {
            Some((Actor::System, Command::SignOut { family, refresh_hash: Some(sha256_hex(&presented)) }))
        }
        None => {
            let bearer = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::trim);
            match bearer.map(|t| super::auth::authenticate(&app, t)).transpose()? {
                Some((claims, actor)) => {
                    claims.sid.map(|family| (actor, Command::SignOut { family, refresh_hash: None }))
                }
                None => None,
            }
        }
    };
    if let Some((actor, cmd)) = cmd {
        match app.engine.submit(actor, cmd).await {
            Ok(_) => {}
            // Already over: signed out all the same.
            Err(crate::engine::EngineError::Domain(e)) if e.code == Code::UnknownSession => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(with_cookie(StatusCode::NO_CONTENT.into_response(), set_cookie("", 0, secure)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SessionQuery {
    /// Only this member's devices.
    pub member_id: Option<String>,
    /// Only this person's devices, by token subject (`staff:c001`, `unit_admin:u001`…).
    pub subject: Option<String>,
}

/// A signed-in device.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceView {
    /// The session (family) id: `sid` in its access tokens.
    pub id: String,
    #[serde(flatten)]
    pub person: Person,
    pub sub: String,
    pub device: String,
    pub created_at: String,
    pub refreshed_at: Option<String>,
    /// Without a refresh until then, the device must sign in again.
    pub expires_at: String,
    /// The caller's own session.
    pub current: bool,
}

impl DeviceView {
    fn new(s: &Session, current: Option<&str>) -> Self {
        DeviceView {
            id: s.family.clone(),
            person: Person::of(&s.subject),
            sub: s.subject.label(),
            device: s.device.clone(),
            created_at: ts(s.created_at),
            refreshed_at: s.refreshed_at.map(ts),
            expires_at: ts(s.expires_at),
            current: current == Some(s.family.as_str()),
        }
    }
}

#[utoipa::path(get, path = "/v1/sessions", tag = "access", security(("bearer" = [])), params(SessionQuery), responses(
    (status = 200, body = Vec<DeviceView>, description = "the signed-in devices the caller may see: their own, and those of whoever they may invite"),
    (status = 400, body = Problem, content_type = "application/problem+json")))]
pub async fn list_sessions(
    State(app): State<AppState>,
    caller: Caller,
    q: Result<Query<SessionQuery>, QueryRejection>,
) -> Result<Json<Vec<DeviceView>>, ApiError> {
    let Query(q) = q?;
    let subject = q.subject.or(q.member_id.map(|m| format!("member:{m}")));
    let state: std::sync::RwLockReadGuard<'_, DomainState> = app.engine.read();
    let now = now_ms();
    let current = caller.claims.sid.as_deref();
    Ok(Json(
        state
            .sessions
            .values()
            .filter(|s| now < s.expires_at)
            .filter(|s| subject.as_ref().is_none_or(|sub| s.subject.label() == *sub))
            .filter(|s| scope::session(&state, &caller.actor, s))
            .take(app.settings.server.max_list)
            .map(|s| DeviceView::new(s, current))
            .collect(),
    ))
}

#[utoipa::path(post, path = "/v1/sessions/{id}/revoke", tag = "access", security(("bearer" = [])), params(("id" = String, Path)),
    responses(
    (status = 204, description = "the device is signed out: its refresh and access tokens are refused from now on"),
    (status = 404, body = Problem, content_type = "application/problem+json", description = "unknown_session (also outside your scope)")))]
pub async fn revoke_session(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    app.engine.submit(caller.actor, Command::RevokeSession { family: id }).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_26_base32_characters_and_differ() {
        let a = random_base32(16);
        let b = random_base32(16);
        assert_eq!(a.len(), 26);
        assert!(a.bytes().all(|c| c.is_ascii_lowercase() || (b'2'..=b'7').contains(&c)), "{a}");
        assert_ne!(a, b);
        assert_eq!(sha256_hex("abc").len(), 64);
        assert_eq!(sha256_hex(" abc "), sha256_hex("abc"));
    }

    #[test]
    fn the_refresh_cookie_is_read_among_others() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_static("a=1; muster_refresh=fam.sec; b=2"));
        assert_eq!(refresh_cookie(&h), Some(("fam".into(), "sec".into())));
        h.insert(header::COOKIE, HeaderValue::from_static("muster_refresh="));
        assert_eq!(refresh_cookie(&h), None);
        let c = set_cookie("f.s", 60, true);
        assert_eq!(
            c.to_str().unwrap(),
            "muster_refresh=f.s; HttpOnly; SameSite=Strict; Path=/v1/session; Max-Age=60; Secure"
        );
    }

    #[test]
    fn a_qr_code_is_an_svg() {
        let svg = qr_svg("http://127.0.0.1:8080/join#abcdefghijklmnopqrstuvwxyz");
        assert!(svg.contains("<svg") && svg.contains("</svg>"), "{svg}");
    }
}
