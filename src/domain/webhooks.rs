//! Outbound webhooks (issue 18, item 3): the endpoints command registers, which logged
//! events each one is sent, and what a delivery says about an event.
//!
//! An endpoint is data in the log (`WebhookRegistered`, `WebhookEnabled`,
//! `WebhookDisabled`, `WebhookSecretRotated`, `WebhookDeleted`), so it replicates and is
//! audited like every other decision. Delivering is not the domain's: the deliverer
//! (`crate::webhooks`) follows the log beside the engine and asks here whether an event is
//! for an endpoint (`message_for`), and what its body says.
//!
//! Who may manage an endpoint is `scope::webhook`: city command every endpoint, a
//! district's command the endpoints scoped to its district. An endpoint scoped to a
//! district is sent only the events about that district (`districts_of`) and the
//! city-wide mode switches; a city endpoint every event of its types.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::audit;
use super::command::{Actor, Reply, Tx};
use super::errors::{Code, DomainError, ErrorKind, err, err_as};
use super::event::{EventBody, Frame, Ts, stream};
use super::scope::{self, Action};
use super::state::State;

/// The public event types an endpoint may subscribe to, and the log's event each one is.
pub const TYPES: &[(&str, &str)] = &[
    ("incident.raised", "incident_raised"),
    ("incident.filled", "incident_filled"),
    ("incident.escalated", "incident_escalated"),
    ("incident.whistle_blown", "whistle_blown"),
    ("incident.resolved", "incident_resolved"),
    ("incident.cancelled", "incident_cancelled"),
    ("units.whistled", "units_whistled"),
    ("units.whistle_overdue", "whistle_overdue"),
    ("mode.switched", "mode_switched"),
    ("mobilization.ordered", "mobilization_ordered"),
    ("mobilization.deadline_passed", "mobilization_deadline_passed"),
    ("mobilization.closed", "mobilization_closed"),
    ("members.transferred", "members_transferred"),
];

/// Most endpoints the city holds.
pub const MAX_ENDPOINTS: usize = 100;
/// Longest URL taken.
pub const MAX_URL_CHARS: usize = 2000;

/// The public type of a logged event, if webhooks carry it.
pub fn public_type(body: &EventBody) -> Option<&'static str> {
    let kind = body.kind();
    TYPES.iter().find(|(_, k)| *k == kind).map(|(t, _)| *t)
}

pub fn is_type(t: &str) -> bool {
    TYPES.iter().any(|(p, _)| *p == t)
}

/// A registered endpoint. Its secret is the signing key (`whsec_` and base64): in the log
/// because every node that may deliver needs it; never answered after its creation or
/// rotation, never in the audit (`audit::data`), never logged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Endpoint {
    pub id: String,
    pub url: String,
    pub types: Vec<String>,
    /// `None`: the city.
    pub district_id: Option<String>,
    pub secret: String,
    pub active: bool,
    /// Why it is disabled (`manual`, or what failed).
    pub disabled_reason: Option<String>,
    pub registered_by: String,
    pub registered_at: Ts,
    /// The seq of its registration: it is sent the events after it.
    pub registered_seq: u64,
    pub changed_at: Ts,
}

/// The districts an event is about, for the scope of district endpoints: `None` for the
/// whole city (a city-wide mode switch).
pub fn districts_of(state: &State, body: &EventBody) -> Option<Vec<String>> {
    if let Some(id) = body.incident_id() {
        return Some(state.incidents.get(id).map(|i| vec![i.district_id.clone()]).unwrap_or_default());
    }
    match body {
        EventBody::MobilizationDeadlinePassed { mobilization_id } => {
            Some(state.mobilizations.get(mobilization_id).map(|m| m.districts.to_vec()).unwrap_or_default())
        }
        _ => {
            let place = audit::place(state, body);
            if place.city_wide { None } else { Some(place.districts) }
        }
    }
}

/// Is this event for this endpoint: one of its types, after its registration, in its scope?
pub fn wants(state: &State, ep: &Endpoint, seq: u64, body: &EventBody) -> bool {
    let Some(t) = public_type(body) else { return false };
    if seq <= ep.registered_seq || !ep.types.iter().any(|x| x == t) {
        return false;
    }
    match &ep.district_id {
        None => true,
        Some(d) => districts_of(state, body).is_none_or(|ds| ds.contains(d)),
    }
}

/// The message an endpoint is sent for a logged event, if it wants it: its public type
/// and its data (the event's fields as the audit shows them, with its `seq`, `actor` and
/// `district_ids`; a district endpoint gets its district's part of a mobilization).
pub fn message_for(
    state: &State,
    ep: &Endpoint,
    seq: u64,
    actor: &str,
    body: &EventBody,
) -> Option<(&'static str, Value)> {
    if !wants(state, ep, seq, body) {
        return None;
    }
    let t = public_type(body)?;
    let as_actor = Actor::Command { district: ep.district_id.clone() };
    let mut place = audit::Place::default();
    let body = audit::part_for(state, &as_actor, body, &mut place);
    let mut data = audit::data(&body);
    if let Some(map) = data.as_object_mut() {
        if let Some(t) = map.get("escalate_at").and_then(Value::as_i64) {
            map.insert("escalate_at".into(), super::time::rfc3339(t).into());
        }
        map.insert("seq".into(), seq.into());
        map.insert("actor".into(), actor.into());
        let districts = districts_of(state, &body);
        map.insert("district_ids".into(), districts.map_or(Value::Null, |d| json!(d)));
    }
    Some((t, data))
}

/// The endpoint with this id, if the actor may manage it; unknown and foreign alike.
pub fn visible<'a>(state: &'a State, actor: &Actor, id: &str) -> Result<&'a Endpoint, DomainError> {
    state
        .webhooks
        .get(id)
        .filter(|ep| scope::webhook(actor, ep))
        .ok_or_else(|| err(Code::UnknownWebhook, format!("webhook '{id}' not found")))
}

/// A signing secret as the gateway draws it: `whsec_` and the base64 of 24 to 64 bytes.
fn check_secret(secret: &str) -> Result<(), DomainError> {
    let body = secret.strip_prefix("whsec_").unwrap_or("");
    let ok = (32..=88).contains(&body.len())
        && body.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='));
    if ok { Ok(()) } else { Err(err(Code::InvalidWebhook, "a secret is whsec_ and base64")) }
}

/// `POST /v1/webhooks`.
pub(super) fn register(
    tx: &mut Tx,
    actor: &Actor,
    url: String,
    types: Vec<String>,
    district_id: Option<String>,
    secret: String,
) -> Result<Reply, DomainError> {
    scope::require(actor, Action::Webhooks)?;
    let url = url.trim().to_string();
    let lower = url.to_ascii_lowercase();
    if url.chars().count() > MAX_URL_CHARS
        || !(lower.starts_with("http://") || lower.starts_with("https://"))
        || url.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(err(
            Code::InvalidWebhook,
            format!("url must be an http or https URL of at most {MAX_URL_CHARS} characters"),
        ));
    }
    if types.is_empty() {
        return Err(err(Code::UnknownEventType, "name at least one event type"));
    }
    let mut wanted: Vec<String> = Vec::new();
    for t in types {
        if !is_type(&t) {
            return Err(err(Code::UnknownEventType, format!("'{t}' is not an event type webhooks carry")));
        }
        if !wanted.contains(&t) {
            wanted.push(t);
        }
    }
    check_secret(&secret)?;
    let district_id = match (actor, district_id) {
        (Actor::Command { district: Some(own) }, None) => Some(own.clone()),
        (_, None) => None,
        (_, Some(d)) => {
            if !tx.state.city.district_by_id.contains_key(&d) || !scope::district(actor, &d) {
                return Err(err_as(ErrorKind::Invalid, Code::UnknownDistrict, format!("district '{d}' not found")));
            }
            Some(d)
        }
    };
    if tx.state.webhooks.len() >= MAX_ENDPOINTS {
        return Err(err(Code::TooManyWebhooks, format!("the city holds at most {MAX_ENDPOINTS} webhooks")));
    }
    let id = format!("wh-{}", tx.state.webhooks_registered + 1);
    tx.emit(EventBody::WebhookRegistered { webhook_id: id.clone(), url, types: wanted, district_id, secret });
    Ok(Reply::Webhook(id))
}

/// Enable or disable (`reason`: why; `manual` when command asks). Already so: nothing.
pub(super) fn set_active(
    tx: &mut Tx,
    actor: &Actor,
    id: &str,
    active: bool,
    reason: Option<String>,
) -> Result<Reply, DomainError> {
    scope::require(actor, Action::Webhooks)?;
    super::command::check_note(reason.as_deref())?;
    let ep = visible(tx.state, actor, id)?;
    if ep.active == active {
        return Ok(Reply::Webhook(id.to_string()));
    }
    let (webhook_id, district_id) = (ep.id.clone(), ep.district_id.clone());
    if active {
        tx.emit(EventBody::WebhookEnabled { webhook_id, district_id });
    } else {
        let reason = reason.filter(|r| !r.trim().is_empty()).unwrap_or_else(|| "manual".into());
        tx.emit(EventBody::WebhookDisabled { webhook_id, district_id, reason });
    }
    Ok(Reply::Webhook(id.to_string()))
}

pub(super) fn delete(tx: &mut Tx, actor: &Actor, id: &str) -> Result<Reply, DomainError> {
    scope::require(actor, Action::Webhooks)?;
    let ep = visible(tx.state, actor, id)?;
    let (webhook_id, district_id) = (ep.id.clone(), ep.district_id.clone());
    tx.emit(EventBody::WebhookDeleted { webhook_id, district_id });
    Ok(Reply::Done)
}

pub(super) fn rotate(tx: &mut Tx, actor: &Actor, id: &str, secret: String) -> Result<Reply, DomainError> {
    scope::require(actor, Action::Webhooks)?;
    check_secret(&secret)?;
    let ep = visible(tx.state, actor, id)?;
    let (webhook_id, district_id) = (ep.id.clone(), ep.district_id.clone());
    tx.emit(EventBody::WebhookSecretRotated { webhook_id, district_id, secret });
    Ok(Reply::Webhook(id.to_string()))
}

/// What command's streams hear of an endpoint: never its secret.
fn frame_data(ep: &Endpoint, change: &str) -> Value {
    json!({
        "webhook_id": ep.id,
        "change": change,
        "active": ep.active,
        "disabled_reason": ep.disabled_reason,
        "district_id": ep.district_id,
    })
}

pub(super) fn apply(state: &mut State, seq: u64, at: Ts, actor: &str, body: &EventBody, frames: &mut Vec<Frame>) {
    let (id, change) = match body {
        EventBody::WebhookRegistered { webhook_id, url, types, district_id, secret } => {
            state.webhooks_registered += 1;
            let ep = Endpoint {
                id: webhook_id.clone(),
                url: url.clone(),
                types: types.clone(),
                district_id: district_id.clone(),
                secret: secret.clone(),
                active: true,
                disabled_reason: None,
                registered_by: actor.to_string(),
                registered_at: at,
                registered_seq: seq,
                changed_at: at,
            };
            state.webhooks.insert(webhook_id.clone(), ep);
            (webhook_id, "registered")
        }
        EventBody::WebhookEnabled { webhook_id, .. } => {
            if let Some(ep) = state.webhooks.get_mut(webhook_id) {
                ep.active = true;
                ep.disabled_reason = None;
                ep.changed_at = at;
            }
            (webhook_id, "enabled")
        }
        EventBody::WebhookDisabled { webhook_id, reason, .. } => {
            if let Some(ep) = state.webhooks.get_mut(webhook_id) {
                ep.active = false;
                ep.disabled_reason = Some(reason.clone());
                ep.changed_at = at;
            }
            (webhook_id, "disabled")
        }
        EventBody::WebhookSecretRotated { webhook_id, secret, .. } => {
            if let Some(ep) = state.webhooks.get_mut(webhook_id) {
                ep.secret = secret.clone();
                ep.changed_at = at;
            }
            (webhook_id, "secret_rotated")
        }
        EventBody::WebhookDeleted { webhook_id, district_id } => {
            let mut ep = state.webhooks.remove(webhook_id).unwrap_or_else(|| Endpoint {
                id: webhook_id.clone(),
                url: String::new(),
                types: vec![],
                district_id: district_id.clone(),
                secret: String::new(),
                active: false,
                disabled_reason: None,
                registered_by: String::new(),
                registered_at: at,
                registered_seq: seq,
                changed_at: at,
            });
            ep.active = false;
            let data = frame_data(&ep, "deleted");
            push(state, frames, &ep.district_id, data);
            return;
        }
        _ => return,
    };
    let Some(ep) = state.webhooks.get(id) else { return };
    let data = frame_data(ep, change);
    let district = ep.district_id.clone();
    push(state, frames, &district, data);
}

/// `webhook.changed` to city command, and to the endpoint's district's command.
fn push(state: &mut State, frames: &mut Vec<Frame>, district: &Option<String>, data: Value) {
    if let Some(d) = district {
        state.push_frame(frames, stream::district(d), "webhook.changed", data.clone());
    }
    state.push_frame(frames, stream::CITY.into(), "webhook.changed", data);
}
