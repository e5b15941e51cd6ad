//! `/v1/push`: a member's Web Push subscriptions (`domain::push` decides, `crate::push`
//! sends). Here is what only the edge does: read the browser's `PushSubscription` JSON,
//! check that its key is a P-256 point and where its endpoint leads (the webhooks' SSRF
//! guard, with `push.allow_cidrs`), and hand out the VAPID public key.

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::auth::{Caller, require};
use super::error::{ApiError, Problem};
use crate::domain::dispatcher::{Code, Command, Reply, rfc3339};
use crate::domain::push::{self, Subscription};
use crate::domain::scope::{self, Action};
use crate::webhooks::guard;

#[derive(Debug, Serialize, ToSchema)]
pub struct PushKey {
    /// The VAPID public key, base64url (65 bytes uncompressed): `applicationServerKey`.
    pub public_key: String,
}

/// The browser's keys, as `PushSubscription.toJSON()` gives them.
#[derive(Debug, Deserialize, ToSchema)]
pub struct PushKeys {
    /// The browser's P-256 public key, uncompressed (65 bytes, the first 0x04), base64url
    /// with or without padding; it must be a point of the curve.
    #[schema(
        pattern = "^B[A-P][A-Za-z0-9_-]{84}[AEIMQUYcgkosw048]=?(?![\\s\\S])",
        example = "BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQtUbVlUls0VJXg7A8u-Ts1XbjhazAkj7I99e8QcYP7DkM"
    )]
    pub p256dh: String,
    /// The browser's 16-byte secret, base64url with or without padding.
    #[schema(pattern = "^[A-Za-z0-9_-]{21}[AQgw](==)?(?![\\s\\S])", example = "tBHItJI5svbpez7KI4CCXg")]
    pub auth: String,
}

/// `PushSubscription.toJSON()` (its `expirationTime` is taken and ignored).
#[derive(Debug, Deserialize, ToSchema)]
pub struct SubscriptionBody {
    /// The push service's URL for this browser: http(s), at most 2000 characters, whose host
    /// resolves to public addresses only (or to those of `push.allow_cidrs`).
    #[schema(
        example = "https://203.0.113.7/fcm/send/abc123",
        pattern = "^https://[a-z0-9]+(\\.[a-z0-9]+)*(:[1-9][0-9]{0,3})?(/[A-Za-z0-9._~/-]*)?(?![\\s\\S])",
        min_length = 1,
        max_length = 2000
    )]
    pub endpoint: String,
    pub keys: PushKeys,
    #[serde(default, rename = "expirationTime")]
    #[schema(value_type = Option<f64>)]
    pub expiration_time: Option<serde_json::Value>,
}

/// `{endpoint}`, or the whole `PushSubscription.toJSON()` (its other fields are ignored).
#[derive(Debug, Deserialize, ToSchema)]
pub struct UnsubscribeBody {
    /// The endpoint of the subscription to remove.
    #[schema(example = "https://fcm.googleapis.com/fcm/send/abc123", min_length = 1)]
    pub endpoint: String,
}

/// A subscription as its member sees it: never its keys; the endpoint's origin only.
#[derive(Debug, Serialize, ToSchema)]
pub struct SubscriptionView {
    pub id: String,
    /// The push service (scheme, host, port).
    pub push_service: String,
    pub created_at: String,
}

fn view(s: &Subscription) -> SubscriptionView {
    let push_service = url::Url::parse(&s.endpoint).map(|u| u.origin().ascii_serialization()).unwrap_or_default();
    SubscriptionView { id: s.id.clone(), push_service, created_at: rfc3339(s.created_at) }
}

fn not_configured() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        Code::PushNotConfigured.as_str(),
        "push notifications are not configured on this server (push.vapid_private_key)",
    )
}

#[utoipa::path(get, path = "/v1/push/key", tag = "push", security(("bearer" = [])), responses(
    (status = 200, body = PushKey), (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 409, body = Problem, content_type = "application/problem+json", description = "push_not_configured")))]
pub async fn key(State(app): State<AppState>, caller: Caller) -> Result<Json<PushKey>, ApiError> {
    require(&caller, Action::Push)?;
    let public_key = app.push.public_key().ok_or_else(not_configured)?.to_string();
    Ok(Json(PushKey { public_key }))
}

#[utoipa::path(post, path = "/v1/push/subscriptions", tag = "push", security(("bearer" = [])),
    request_body = SubscriptionBody, responses(
    (status = 201, body = SubscriptionView, description = "subscribed (again: the same id; another member's browser moves to this member)"),
    (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 409, body = Problem, content_type = "application/problem+json", description = "push_not_configured"),
    (status = 422, body = Problem, content_type = "application/problem+json", description = "invalid_push_subscription, push_endpoint_not_allowed")))]
pub async fn subscribe(
    State(app): State<AppState>,
    caller: Caller,
    body: Result<Json<SubscriptionBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    require(&caller, Action::Push)?;
    let Json(b) = body?;
    if app.push.public_key().is_none() {
        return Err(not_configured());
    }
    let invalid = |m: &str| ApiError::unprocessable(Code::InvalidPushSubscription.as_str(), m.to_string());
    let endpoint = b.endpoint.trim().to_string();
    if endpoint.chars().count() > push::MAX_ENDPOINT_CHARS {
        return Err(invalid("endpoint is at most 2000 characters"));
    }
    guard::parse(&endpoint).map_err(|why| invalid(&format!("endpoint: {why}")))?;
    let point = B64.decode(b.keys.p256dh.trim_end_matches('=')).ok();
    if point.as_deref().and_then(|p| p256::PublicKey::from_sec1_bytes(p).ok()).is_none()
        || point.map(|p| p.len()) != Some(65)
    {
        return Err(invalid("keys.p256dh must be the browser's uncompressed P-256 public key, base64url"));
    }
    if B64.decode(b.keys.auth.trim_end_matches('=')).map(|a| a.len()).ok() != Some(16) {
        return Err(invalid("keys.auth must be the browser's 16-byte secret, base64url"));
    }
    guard::check(&endpoint, &app.push.allowed).await.map_err(|why| {
        ApiError::unprocessable("push_endpoint_not_allowed", format!("this push service may not be used: {why}"))
    })?;
    let cmd = Command::PushSubscribe {
        endpoint,
        p256dh: b.keys.p256dh.trim_end_matches('=').to_string(),
        auth: b.keys.auth.trim_end_matches('=').to_string(),
    };
    let Reply::PushSubscription(id) = app.engine.submit(caller.actor.clone(), cmd).await? else {
        return Err(ApiError::internal("push subscribe", "no id in the reply"));
    };
    let sub = app.engine.read().push.subs.get(&id).map(view);
    let sub = sub.ok_or_else(|| ApiError::internal("push subscribe", "the subscription is not in the state"))?;
    Ok((StatusCode::CREATED, Json(sub)).into_response())
}

#[utoipa::path(get, path = "/v1/push/subscriptions", tag = "push", security(("bearer" = [])), responses(
    (status = 200, body = Vec<SubscriptionView>, description = "the caller's own, oldest first"),
    (status = 403, body = Problem, content_type = "application/problem+json")))]
pub async fn list(State(app): State<AppState>, caller: Caller) -> Result<Json<Vec<SubscriptionView>>, ApiError> {
    require(&caller, Action::Push)?;
    let state = app.engine.read();
    let crate::domain::dispatcher::Actor::Member { member } = &caller.actor else { return Ok(Json(Vec::new())) };
    Ok(Json(state.push.of_member(member).filter(|s| scope::push_subscription(&caller.actor, s)).map(view).collect()))
}

#[utoipa::path(delete, path = "/v1/push/subscriptions", tag = "push", security(("bearer" = [])),
    request_body = UnsubscribeBody, responses(
    (status = 204, description = "removed: nothing more is pushed to that browser"),
    (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json", description = "unknown_push_subscription (also another member's)")))]
pub async fn unsubscribe(
    State(app): State<AppState>,
    caller: Caller,
    body: Result<Json<UnsubscribeBody>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    require(&caller, Action::Push)?;
    let Json(b) = body?;
    let subscription_id = push::subscription_id(b.endpoint.trim());
    app.engine.submit(caller.actor.clone(), Command::PushUnsubscribe { subscription_id, reason: None }).await?;
    Ok(StatusCode::NO_CONTENT)
}
