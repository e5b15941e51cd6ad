//! Web Push (issue 18, items 2 and 5's push step): the browsers a member subscribed, and
//! the record of every push tried. Sending is not the domain's: the pusher
//! (`crate::push`) follows the log beside the engine, asks here what an event means for a
//! member's browsers (`wanted`) and whether a queued push still matters (`still_open`), and
//! records each try through `PushRecord` (`PushAttempted` events, in the incident's
//! timeline when it is about an incident).
//!
//! A subscription is data in the log (`PushSubscribed`, `PushUnsubscribed`) because every
//! node that may become the engine needs it. Its endpoint is a capability URL and its
//! keys decrypt the member's notifications: never in a frame, the audit or a log line.
//! Its id is derived from the endpoint, so a browser that subscribes again replaces its
//! record, and a browser that another member signs in on moves to them.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::command::{Actor, Reply, Tx, acting_member};
use super::errors::{Code, DomainError, err};
use super::event::{EventBody, Ts};
use super::incident::OfferState;
use super::mobilization::OrderState;
use super::state::State;

/// Browsers one member may have subscribed; a new one beyond replaces the oldest.
pub const MAX_PER_MEMBER: usize = 5;
/// Longest endpoint taken.
pub const MAX_ENDPOINT_CHARS: usize = 2000;
/// How long a confirmed push is remembered (so that a resumed pusher does not send it
/// again): longer than any offer or order stays open.
pub const REMEMBER_MS: Ts = 3 * 24 * 3600 * 1000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subscription {
    pub id: String,
    pub member_id: String,
    /// The push service's URL for this browser (RFC 8030 push resource).
    pub endpoint: String,
    /// The browser's P-256 public key, base64url (65 bytes uncompressed).
    pub p256dh: String,
    /// The browser's 16-byte authentication secret, base64url.
    pub auth: String,
    pub created_at: Ts,
}

/// The subscriptions, and the pushes the push services confirmed.
#[derive(Debug, Clone, Default)]
pub struct PushState {
    /// By subscription id.
    pub subs: BTreeMap<String, Subscription>,
    /// Member id -> their subscription ids, oldest first (derived from `subs`).
    pub by_member: HashMap<String, Vec<String>>,
    /// Message id -> when its push was confirmed (kept `REMEMBER_MS`).
    pub delivered: HashMap<String, Ts>,
}

impl PushState {
    pub fn of_member(&self, member_id: &str) -> impl Iterator<Item = &Subscription> {
        self.by_member.get(member_id).into_iter().flatten().filter_map(|id| self.subs.get(id))
    }

    /// Rebuilds the derived index (after a snapshot is restored).
    pub fn restore(subs: Vec<Subscription>, delivered: Vec<(String, Ts)>) -> PushState {
        let mut me = PushState { delivered: delivered.into_iter().collect(), ..PushState::default() };
        let mut subs = subs;
        subs.sort_by_key(|s| s.created_at);
        for s in subs {
            me.by_member.entry(s.member_id.clone()).or_default().push(s.id.clone());
            me.subs.insert(s.id.clone(), s);
        }
        me
    }

    fn remove(&mut self, id: &str) {
        if let Some(s) = self.subs.remove(id)
            && let Some(ids) = self.by_member.get_mut(&s.member_id)
        {
            ids.retain(|x| x != id);
            if ids.is_empty() {
                self.by_member.remove(&s.member_id);
            }
        }
    }
}

/// What a push is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PushKind {
    Offer,
    /// An offer that answers a whistle (吹哨) to the member's unit.
    Whistle,
    /// A mobilization order.
    Order,
}

impl PushKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PushKind::Offer => "offer",
            PushKind::Whistle => "whistle",
            PushKind::Order => "order",
        }
    }
}

/// What became of one try.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PushOutcome {
    /// The push service took it (2xx).
    Delivered,
    /// 429, 5xx or no answer: tried again after a backoff.
    Retry,
    /// 404 or 410: the subscription is gone and removed.
    Gone,
    /// Refused for good (another 4xx), or the last try failed.
    Failed,
}

/// One try of one push, as the pusher reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PushAttempt {
    /// `push_<seq of the event>_<subscription id>`, the same on every try.
    pub message_id: String,
    pub member_id: String,
    pub subscription_id: String,
    pub kind: PushKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offer_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mobilization_id: Option<String>,
    /// 1 for the first try.
    pub attempt: u32,
    /// The push service's HTTP status; none when it did not answer.
    pub status: Option<u16>,
    pub outcome: PushOutcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A subscription's id: `ps-` and the first 12 bytes of the endpoint's SHA-256, hex.
pub fn subscription_id(endpoint: &str) -> String {
    let digest = Sha256::digest(endpoint.as_bytes());
    let mut id = String::from("ps-");
    for b in &digest[..12] {
        id.push_str(&format!("{b:02x}"));
    }
    id
}

fn is_b64url(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The checks the domain makes (the gateway also checks that the key is a curve point and
/// where the endpoint leads).
fn check(endpoint: &str, p256dh: &str, auth: &str) -> Result<(), DomainError> {
    let bad = |m: &str| Err(err(Code::InvalidPushSubscription, m));
    if endpoint.chars().count() > MAX_ENDPOINT_CHARS
        || !(endpoint.starts_with("https://") || endpoint.starts_with("http://"))
    {
        return bad("endpoint must be an http(s) URL of at most 2000 characters");
    }
    // 65 bytes are 87 base64url characters unpadded, 16 bytes are 22.
    if p256dh.len() != 87 || !is_b64url(p256dh) {
        return bad("keys.p256dh must be the browser's P-256 public key, base64url (87 characters)");
    }
    if auth.len() != 22 || !is_b64url(auth) {
        return bad("keys.auth must be the browser's 16-byte secret, base64url (22 characters)");
    }
    Ok(())
}

pub(super) fn subscribe(
    tx: &mut Tx,
    actor: &Actor,
    endpoint: String,
    p256dh: String,
    auth: String,
) -> Result<Reply, DomainError> {
    super::scope::require(actor, super::scope::Action::Push)?;
    let idx = acting_member(tx.state, actor)?;
    check(&endpoint, &p256dh, &auth)?;
    let member_id = tx.state.city.members()[idx as usize].id.clone();
    let id = subscription_id(&endpoint);
    if let Some(old) = tx.state.push.subs.get(&id) {
        if old.member_id == member_id && old.p256dh == p256dh && old.auth == auth {
            return Ok(Reply::PushSubscription(id));
        }
        let reason = if old.member_id == member_id { "renewed" } else { "replaced" };
        let (m, s) = (old.member_id.clone(), old.id.clone());
        tx.emit(EventBody::PushUnsubscribed { member_id: m, subscription_id: s, reason: reason.into() });
    }
    let mine: Vec<String> = tx.state.push.by_member.get(&member_id).cloned().unwrap_or_default();
    if mine.len() >= MAX_PER_MEMBER {
        for s in &mine[..=mine.len() - MAX_PER_MEMBER] {
            let ev = EventBody::PushUnsubscribed {
                member_id: member_id.clone(),
                subscription_id: s.clone(),
                reason: "replaced".into(),
            };
            tx.emit(ev);
        }
    }
    tx.emit(EventBody::PushSubscribed { member_id, subscription_id: id.clone(), endpoint, p256dh, auth });
    Ok(Reply::PushSubscription(id))
}

/// A member removes one of their own (another's and an unknown one look alike); the
/// system removes one the push service said is gone.
pub(super) fn unsubscribe(
    tx: &mut Tx,
    actor: &Actor,
    subscription_id: &str,
    reason: Option<String>,
) -> Result<Reply, DomainError> {
    let unknown = || err(Code::UnknownPushSubscription, format!("push subscription '{subscription_id}' not found"));
    if !matches!(actor, Actor::System) {
        super::scope::require(actor, super::scope::Action::Push)?;
    }
    let sub = tx.state.push.subs.get(subscription_id).ok_or_else(unknown)?;
    if !super::scope::push_subscription(actor, sub) {
        return Err(unknown());
    }
    let reason = match actor {
        Actor::System => reason.unwrap_or_else(|| "gone".into()),
        _ => "member".into(),
    };
    super::command::check_note(Some(&reason))?;
    let member_id = sub.member_id.clone();
    tx.emit(EventBody::PushUnsubscribed { member_id, subscription_id: subscription_id.into(), reason });
    Ok(Reply::Done)
}

/// The pusher's tries (the system's only): one event each; a gone subscription is removed.
pub(super) fn record(tx: &mut Tx, actor: &Actor, attempts: Vec<PushAttempt>) -> Result<Reply, DomainError> {
    if *actor != Actor::System {
        return Err(err(Code::RoleNotAllowed, "push results are the system's to record"));
    }
    for a in attempts {
        let gone = (a.outcome == PushOutcome::Gone).then(|| (a.member_id.clone(), a.subscription_id.clone()));
        tx.emit(EventBody::PushAttempted(Box::new(a)));
        if let Some((member_id, subscription_id)) = gone
            && tx.state.push.subs.get(&subscription_id).is_some_and(|s| s.member_id == member_id)
        {
            tx.emit(EventBody::PushUnsubscribed { member_id, subscription_id, reason: "gone".into() });
        }
    }
    Ok(Reply::Done)
}

pub(super) fn apply(state: &mut State, at: Ts, body: &EventBody) {
    let push = &mut state.push;
    match body {
        EventBody::PushSubscribed { member_id, subscription_id, endpoint, p256dh, auth } => {
            push.remove(subscription_id);
            let sub = Subscription {
                id: subscription_id.clone(),
                member_id: member_id.clone(),
                endpoint: endpoint.clone(),
                p256dh: p256dh.clone(),
                auth: auth.clone(),
                created_at: at,
            };
            push.by_member.entry(member_id.clone()).or_default().push(subscription_id.clone());
            push.subs.insert(subscription_id.clone(), sub);
        }
        EventBody::PushUnsubscribed { subscription_id, .. } => push.remove(subscription_id),
        EventBody::PushAttempted(a) if a.outcome == PushOutcome::Delivered => {
            push.delivered.insert(a.message_id.clone(), at);
            // Forget the old ones now and then (amortised: at each power of two).
            if push.delivered.len() >= 1024 && push.delivered.len().is_power_of_two() {
                push.delivered.retain(|_, t| *t + REMEMBER_MS > at);
            }
        }
        _ => {}
    }
}

/// One push the pusher should queue for an event: to whom, about what.
#[derive(Debug, Clone, PartialEq)]
pub struct Wanted {
    pub member_id: String,
    pub kind: PushKind,
    pub incident_id: Option<String>,
    pub offer_id: Option<String>,
    pub mobilization_id: Option<String>,
    /// When it stops mattering (an offer's expiry, an order's deadline).
    pub until: Ts,
    /// The notification's JSON (the plaintext the browser decrypts).
    pub payload: serde_json::Value,
}

/// The pushes an event calls for (members with at least one subscription), as the state
/// after it says.
pub fn wanted(state: &State, body: &EventBody) -> Vec<Wanted> {
    match body {
        EventBody::OfferSent { offer_id, incident_id, member_id, distance_m, expires_at, whistle_id, .. } => {
            if !state.push.by_member.contains_key(member_id) {
                return Vec::new();
            }
            let Some(inc) = state.incidents.get(incident_id) else { return Vec::new() };
            let kind = if whistle_id.is_some() { PushKind::Whistle } else { PushKind::Offer };
            let payload = serde_json::json!({
                "type": kind.as_str(),
                "offer_id": offer_id,
                "incident_id": incident_id,
                "category": inc.category,
                "level": inc.level,
                "distance_m": distance_m.round(),
                "expires_at": super::time::rfc3339(*expires_at),
                "url": format!("/m#offer={offer_id}"),
            });
            vec![Wanted {
                member_id: member_id.clone(),
                kind,
                incident_id: Some(incident_id.clone()),
                offer_id: Some(offer_id.clone()),
                mobilization_id: None,
                until: *expires_at,
                payload,
            }]
        }
        EventBody::MobilizationOrdered { mobilization_id, deadline, site, note, .. } => {
            let Some(m) = state.mobilizations.get(mobilization_id) else { return Vec::new() };
            let site = site.as_ref().map(|s| s.name.clone());
            m.orders
                .iter()
                .filter(|o| state.push.by_member.contains_key(&o.member_id))
                .map(|o| Wanted {
                    member_id: o.member_id.clone(),
                    kind: PushKind::Order,
                    incident_id: None,
                    offer_id: None,
                    mobilization_id: Some(mobilization_id.clone()),
                    until: *deadline,
                    payload: serde_json::json!({
                        "type": "order",
                        "mobilization_id": mobilization_id,
                        "site": site,
                        "note": note,
                        "deadline": super::time::rfc3339(*deadline),
                        "url": format!("/m#mobilization={mobilization_id}"),
                    }),
                })
                .collect()
        }
        _ => Vec::new(),
    }
}

/// Does a queued push still matter: its offer still waits for an answer, its order for an
/// acknowledgement, and it was not confirmed already?
pub fn still_open(state: &State, message_id: &str, w: &Wanted) -> bool {
    if state.push.delivered.contains_key(message_id) {
        return false;
    }
    if let Some(offer_id) = &w.offer_id {
        let inc = state.offer_index.get(offer_id).and_then(|i| state.incidents.get(i));
        return inc.and_then(|i| i.offer(offer_id)).is_some_and(|o| o.state == OfferState::Offered);
    }
    if let Some(id) = &w.mobilization_id {
        let Some(m) = state.mobilizations.get(id).filter(|m| m.is_open()) else { return false };
        let Some(idx) = state.member_index(&w.member_id) else { return false };
        return m.by_member.get(&idx).is_some_and(|&i| m.orders[i].state == OrderState::Ordered);
    }
    false
}
