//! Residents and members who create work (issue #20): 群众点单、社区派单 and 创单.
//!
//! - A resident signs in with a one-time code sent to their phone (`Challenge`, `Verify`):
//!   the gateway draws the code and the session's secrets and sends the code; here are
//!   only the decisions (a code is right once, before it expires, within
//!   `CODE_ATTEMPTS`), so they are in the log, replay, and hold across nodes and restarts.
//!   The session is an `access::Session` like an invitation's: refresh, sign-out and
//!   revocation are the same.
//! - A resident places a request in a grid of their community; staff (or command) turn it
//!   into an order, merge it into an order, or decline it with a reason. The resident
//!   follows it on their own stream (`resident:<id>`) as the order is taken, served and
//!   checked out, then confirms and rates it: the rating is the 一事一评 of every member
//!   whose counted work on the order is not rated yet.
//! - A member proposes a service (创单); staff approve it (an order with the member as its
//!   first claimant) or decline it. Reports count orders created apart from those taken.
//!
//! Who sees what: `scope::request`, `scope::proposal` (a resident sees only their own
//! requests; anyone else's and a missing one answer alike).

use serde_json::{Value, json};

use super::command::{Actor, Reply, Tx, acting_member, check_note};
use super::errors::{Code, DomainError, ErrorKind, err, err_as};
use super::event::{Event, EventBody, Frame, stream};
use super::scope::{self, Action};
use super::service;
use super::service_data::{OrderStatus, PostOrder, Rating, ServiceOrder};
use super::state::State;
use super::time::{Ts, rfc3339};

pub use super::residents_data::*;

/// Routes one of the feature's commands.
pub(super) fn execute(tx: &mut Tx<'_>, actor: &Actor, cmd: ResidentCommand) -> Result<Reply, DomainError> {
    match cmd {
        ResidentCommand::Challenge { challenge_id, community_id, phone, code_hash, ttl_s } => {
            challenge(tx, actor, challenge_id, community_id, phone, code_hash, ttl_s)
        }
        ResidentCommand::Verify { challenge_id, code_hash, family, refresh_hash, device, ttl_s } => {
            verify(tx, &challenge_id, &code_hash, &family, &refresh_hash, &device, ttl_s)
        }
        ResidentCommand::Place { category, description, grid_id, preferred_start, preferred_end } => {
            place(tx, actor, category, description, grid_id, preferred_start, preferred_end)
        }
        ResidentCommand::Dispatch { request_id, order } => dispatch(tx, actor, &request_id, order),
        ResidentCommand::Merge { request_id, order_id } => merge(tx, actor, &request_id, &order_id),
        ResidentCommand::Decline { request_id, reason } => decline(tx, actor, &request_id, reason),
        ResidentCommand::Confirm { request_id, rating, comment } => confirm(tx, actor, &request_id, rating, comment),
        ResidentCommand::Propose {
            category,
            title,
            description,
            grid_id,
            for_whom,
            window_start,
            window_end,
            slots,
        } => {
            let p = NewProposal { category, title, description, grid_id, for_whom, window_start, window_end, slots };
            propose(tx, actor, p)
        }
        ResidentCommand::Approve { proposal_id } => approve(tx, actor, &proposal_id),
        ResidentCommand::DeclineProposal { proposal_id, reason } => decline_proposal(tx, actor, &proposal_id, reason),
    }
}

// ---------------------------------------------------------------- sign-in

/// A phone number as the gateway sends it (normalized): a mainland mobile number (11
/// digits from 13…19), or `+` and 8 to 15 digits.
pub fn is_phone(p: &str) -> bool {
    let b = p.as_bytes();
    let mainland = b.len() == 11 && b[0] == b'1' && (b'3'..=b'9').contains(&b[1]) && b.iter().all(u8::is_ascii_digit);
    let intl = b.first() == Some(&b'+') && (9..=16).contains(&b.len()) && b[1..].iter().all(u8::is_ascii_digit);
    mainland || intl
}

fn is_token_id(s: &str) -> bool {
    (16..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn is_hash(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn challenge(
    tx: &mut Tx<'_>,
    actor: &Actor,
    challenge_id: String,
    community_id: String,
    phone: String,
    code_hash: String,
    ttl_s: u64,
) -> Result<Reply, DomainError> {
    if *actor != Actor::System {
        return Err(err(Code::RoleNotAllowed, "codes are drawn by the server"));
    }
    if !tx.state.city.community_by_id.contains_key(&community_id) {
        return Err(err_as(ErrorKind::Invalid, Code::UnknownCommunity, format!("no community '{community_id}'")));
    }
    if !is_phone(&phone) {
        return Err(err(Code::InvalidPhone, "a phone number is 11 digits (13…19…), or + and 8 to 15 digits"));
    }
    let fresh = is_token_id(&challenge_id) && !tx.state.residents.challenges.contains_key(&challenge_id);
    if !fresh || !is_hash(&code_hash) || ttl_s == 0 || ttl_s > 3600 {
        return Err(err(Code::InvalidChallenge, "a new challenge id, a SHA-256 and a lifetime of 1 to 3600 s"));
    }
    tx.emit(EventBody::Residents {
        event: Box::new(ResidentEvent::CodeSent {
            challenge_id,
            community_id,
            phone,
            code_hash,
            expires_at: tx.now + ttl_s as i64 * 1000,
        }),
    });
    Ok(Reply::Done)
}

fn verify(
    tx: &mut Tx<'_>,
    challenge_id: &str,
    code_hash: &str,
    family: &str,
    refresh_hash: &str,
    device: &str,
    ttl_s: u64,
) -> Result<Reply, DomainError> {
    let unknown = || err(Code::UnknownChallenge, "this code is not known or has expired; ask for a new one");
    let ch = tx.state.residents.challenges.get(challenge_id).filter(|c| tx.now < c.expires_at).ok_or_else(unknown)?;
    if !tx.state.city.community_by_id.contains_key(&ch.community_id) {
        return Err(unknown());
    }
    super::access::check_new_family(tx.state, family, refresh_hash, ttl_s)?;
    if device.chars().count() > super::access::MAX_DEVICE_CHARS {
        return Err(err(Code::TextTooLong, "a device label is at most 200 characters"));
    }
    if ch.code_hash != code_hash {
        // Not a refusal: the attempt is used up (durably), and the gateway, finding no
        // session, answers that the code is wrong.
        let challenge_id = challenge_id.to_string();
        tx.emit(EventBody::Residents { event: Box::new(ResidentEvent::CodeFailed { challenge_id }) });
        return Ok(Reply::Done);
    }
    let key = Residents::phone_key(&ch.community_id, &ch.phone);
    let (resident_id, created) = match tx.state.residents.by_phone.get(&key) {
        Some(id) => (id.clone(), false),
        None => (format!("r-{}", tx.state.residents.residents_created + 1), true),
    };
    tx.emit(EventBody::Residents {
        event: Box::new(ResidentEvent::Verified {
            challenge_id: challenge_id.to_string(),
            resident_id,
            created,
            family: family.to_string(),
            device: device.to_string(),
            refresh_hash: refresh_hash.to_string(),
            expires_at: tx.now + ttl_s as i64 * 1000,
        }),
    });
    Ok(Reply::Done)
}

// ---------------------------------------------------------------- requests

fn check_text(text: &str, max: usize, what: &str) -> Result<(), DomainError> {
    let n = text.trim().chars().count();
    if n == 0 || text.chars().count() > max {
        return Err(err(Code::BadText, format!("{what} is 1 to {max} characters")));
    }
    Ok(())
}

fn check_window(now: Ts, start: Ts, end: Ts) -> Result<(), DomainError> {
    if end <= start || end <= now {
        return Err(err(Code::BadWindow, "the time must end after it starts, and in the future"));
    }
    Ok(())
}

/// The resident acting, with their community.
fn acting_resident<'a>(state: &'a State, actor: &Actor) -> Result<&'a Resident, DomainError> {
    match actor {
        Actor::Resident { resident } => state
            .residents
            .residents
            .get(resident)
            .ok_or_else(|| err(Code::RoleNotAllowed, "sign in again as a resident")),
        _ => Err(err(Code::RoleNotAllowed, "placing requests is for residents")),
    }
}

fn place(
    tx: &mut Tx<'_>,
    actor: &Actor,
    category: String,
    description: String,
    grid_id: String,
    preferred_start: Ts,
    preferred_end: Ts,
) -> Result<Reply, DomainError> {
    scope::require(actor, Action::PlaceRequest)?;
    let r = acting_resident(tx.state, actor)?;
    let in_community = tx.state.city.grid_flat.get(&grid_id).is_some_and(|&g| {
        let c = tx.state.city.grid_places[g as usize].community;
        tx.state.city.community(c).id == r.community_id
    });
    if !in_community {
        return Err(err(Code::UnknownGrid, format!("no grid '{grid_id}' in your community")));
    }
    if tx.rules.category(&category).is_none() {
        return Err(err(Code::UnknownCategory, format!("category '{category}' is not in the catalog")));
    }
    check_text(&description, MAX_TEXT, "a description")?;
    check_window(tx.now, preferred_start, preferred_end)?;
    let request_id = format!("req-{}", tx.state.residents.requests_placed + 1);
    let (resident_id, community_id) = (r.id.clone(), r.community_id.clone());
    tx.emit(EventBody::Residents {
        event: Box::new(ResidentEvent::RequestPlaced {
            request_id: request_id.clone(),
            resident_id,
            community_id,
            grid_id,
            category,
            description,
            preferred_start,
            preferred_end,
        }),
    });
    Ok(Reply::Request(request_id))
}

/// The request, if the actor may see it; else the same 404 as for one that does not exist.
pub fn visible_request<'a>(state: &'a State, actor: &Actor, id: &str) -> Result<&'a Request, DomainError> {
    state
        .residents
        .requests
        .get(id)
        .filter(|r| scope::request(state, actor, r))
        .ok_or_else(|| err(Code::UnknownRequest, format!("no request '{id}' in your scope")))
}

/// A request the community has yet to answer.
fn open_request<'a>(state: &'a State, actor: &Actor, id: &str) -> Result<&'a Request, DomainError> {
    scope::require(actor, Action::DispatchRequest)?;
    let r = visible_request(state, actor, id)?;
    if r.state != RequestState::Submitted {
        return Err(err(Code::RequestClosed, format!("request {id} was already answered")));
    }
    Ok(r)
}

fn dispatch(tx: &mut Tx<'_>, actor: &Actor, request_id: &str, o: DispatchOrder) -> Result<Reply, DomainError> {
    let r = open_request(tx.state, actor, request_id)?;
    let title = match o.title {
        Some(t) => t,
        None => {
            let cat = tx.rules.category(&r.category).map(|c| c.name.clone()).unwrap_or_default();
            let text: String = r.description.chars().take(40).collect();
            format!("{cat}: {text}")
        }
    };
    let post = PostOrder {
        grid_id: Some(r.grid_id.clone()),
        location: None,
        category: r.category.clone(),
        difficulty: o.difficulty,
        title,
        note: o.note.or_else(|| Some(r.description.clone())),
        window_start: o.window_start,
        window_end: o.window_end,
        slots: o.slots,
        skills: o.skills,
    };
    let Reply::Order(order_id) = service::post_order(tx, actor, post)? else {
        unreachable!("post_order answers an order id")
    };
    tx.emit(EventBody::Residents {
        event: Box::new(ResidentEvent::RequestDispatched {
            request_id: request_id.into(),
            order_id: order_id.clone(),
            merged: false,
        }),
    });
    Ok(Reply::Order(order_id))
}

fn merge(tx: &mut Tx<'_>, actor: &Actor, request_id: &str, order_id: &str) -> Result<Reply, DomainError> {
    let r = open_request(tx.state, actor, request_id)?;
    let o = tx
        .state
        .orders
        .get(order_id)
        .filter(|o| scope::order(tx.state, actor, o) && o.community_id == r.community_id)
        .ok_or_else(|| {
            err_as(ErrorKind::Invalid, Code::UnknownOrder, format!("no order '{order_id}' of the request's community"))
        })?;
    if o.status == OrderStatus::Cancelled {
        return Err(err(Code::OrderClosed, format!("order {order_id} is cancelled")));
    }
    tx.emit(EventBody::Residents {
        event: Box::new(ResidentEvent::RequestDispatched {
            request_id: request_id.into(),
            order_id: order_id.into(),
            merged: true,
        }),
    });
    Ok(Reply::Order(order_id.into()))
}

fn decline(tx: &mut Tx<'_>, actor: &Actor, request_id: &str, reason: String) -> Result<Reply, DomainError> {
    open_request(tx.state, actor, request_id)?;
    if reason.trim().is_empty() {
        return Err(err(Code::ReasonRequired, "say why: the resident sees the reason"));
    }
    check_note(Some(&reason))?;
    tx.emit(EventBody::Residents {
        event: Box::new(ResidentEvent::RequestDeclined { request_id: request_id.into(), reason }),
    });
    Ok(Reply::Done)
}

/// Was the order served: someone's work on it counted (checked in and out in place)?
fn served(o: &ServiceOrder) -> bool {
    o.claims.iter().any(|c| c.counted())
}

fn confirm(
    tx: &mut Tx<'_>,
    actor: &Actor,
    request_id: &str,
    rating: Rating,
    comment: Option<String>,
) -> Result<Reply, DomainError> {
    scope::require(actor, Action::PlaceRequest)?;
    let r = visible_request(tx.state, actor, request_id)?;
    match r.state {
        RequestState::Dispatched => {}
        RequestState::Confirmed => {
            return Err(err(Code::AlreadyRated, format!("request {request_id} is confirmed and rated already")));
        }
        RequestState::Submitted | RequestState::Declined => {
            return Err(err(Code::RequestNotServed, format!("request {request_id} has not been served")));
        }
    }
    let order = r.order_id.as_ref().and_then(|o| tx.state.orders.get(o));
    let Some(order) = order.filter(|o| served(o)) else {
        return Err(err(Code::RequestNotServed, format!("request {request_id} has not been served yet")));
    };
    check_note(comment.as_deref())?;
    let weight = match rating {
        Rating::VeryGood => tx.rules.service.rating_weights.very_good,
        Rating::Good => tx.rules.service.rating_weights.good,
        Rating::Fair => tx.rules.service.rating_weights.fair,
    };
    let rated: Vec<EventBody> = order
        .claims
        .iter()
        .filter(|c| c.counted() && c.rating.is_none())
        .map(|c| EventBody::Rated {
            order_id: Some(order.id.clone()),
            offer_id: None,
            incident_id: None,
            member_id: c.member_id.clone(),
            rating,
            hours: c.hours,
            difficulty: order.difficulty,
            points: (c.hours * order.difficulty as f64 * weight * 100.0).round() / 100.0,
        })
        .collect();
    tx.emit(EventBody::Residents {
        event: Box::new(ResidentEvent::RequestConfirmed { request_id: request_id.into(), rating, comment }),
    });
    for e in rated {
        tx.emit(e);
    }
    Ok(Reply::Done)
}

// ---------------------------------------------------------------- proposals (创单)

struct NewProposal {
    category: String,
    title: String,
    description: Option<String>,
    grid_id: String,
    for_whom: String,
    window_start: Ts,
    window_end: Ts,
    slots: Option<u32>,
}

fn propose(tx: &mut Tx<'_>, actor: &Actor, p: NewProposal) -> Result<Reply, DomainError> {
    scope::require(actor, Action::Propose)?;
    let member = acting_member(tx.state, actor)?;
    let community = tx
        .state
        .city
        .grid_flat
        .get(&p.grid_id)
        .map(|&g| tx.state.city.grid_places[g as usize].community)
        .filter(|&c| scope::of_community(tx.state, member, c))
        .ok_or_else(|| err(Code::UnknownGrid, format!("no grid '{}' in a community you serve", p.grid_id)))?;
    if tx.rules.category(&p.category).is_none() {
        return Err(err(Code::UnknownCategory, format!("category '{}' is not in the catalog", p.category)));
    }
    check_text(&p.title, 200, "a title")?;
    check_text(&p.for_whom, 200, "for whom")?;
    if let Some(d) = &p.description {
        check_text(d, MAX_TEXT, "a description")?;
    }
    check_window(tx.now, p.window_start, p.window_end)?;
    let slots = p.slots.unwrap_or(1);
    if slots == 0 || slots > tx.rules.service.max_slots {
        return Err(err(Code::SlotsOutOfRange, format!("slots must be 1 to {}", tx.rules.service.max_slots)));
    }
    let proposal_id = format!("prop-{}", tx.state.residents.proposals_made + 1);
    let member_id = tx.state.city.members()[member as usize].id.clone();
    let community_id = tx.state.city.community(community).id.clone();
    tx.emit(EventBody::Residents {
        event: Box::new(ResidentEvent::ProposalMade {
            proposal_id: proposal_id.clone(),
            member_id,
            community_id,
            grid_id: p.grid_id,
            category: p.category,
            title: p.title,
            description: p.description,
            for_whom: p.for_whom,
            window_start: p.window_start,
            window_end: p.window_end,
            slots,
        }),
    });
    Ok(Reply::Proposal(proposal_id))
}

/// The proposal, if the actor may see it; else the same 404 as for one that does not exist.
pub fn visible_proposal<'a>(state: &'a State, actor: &Actor, id: &str) -> Result<&'a Proposal, DomainError> {
    state
        .residents
        .proposals
        .get(id)
        .filter(|p| scope::proposal(state, actor, p))
        .ok_or_else(|| err(Code::UnknownProposal, format!("no proposal '{id}' in your scope")))
}

fn open_proposal<'a>(state: &'a State, actor: &Actor, id: &str) -> Result<&'a Proposal, DomainError> {
    scope::require(actor, Action::DecideProposal)?;
    let p = visible_proposal(state, actor, id)?;
    if p.state != ProposalState::Proposed {
        return Err(err(Code::ProposalClosed, format!("proposal {id} was already decided")));
    }
    Ok(p)
}

fn approve(tx: &mut Tx<'_>, actor: &Actor, proposal_id: &str) -> Result<Reply, DomainError> {
    let p = open_proposal(tx.state, actor, proposal_id)?;
    let community = tx.state.city.community_by_id.get(&p.community_id).copied();
    let member = tx.state.member_index(&p.member_id);
    let (Some(community), Some(member)) = (community, member) else {
        return Err(err(Code::NotEligible, "the member who proposed it is no longer in the city"));
    };
    if !scope::of_community(tx.state, member, community) {
        return Err(err(Code::NotEligible, "the member who proposed it no longer serves this community"));
    }
    let member_id = p.member_id.clone();
    let post = PostOrder {
        grid_id: Some(p.grid_id.clone()),
        location: None,
        category: p.category.clone(),
        difficulty: None,
        title: p.title.clone(),
        note: Some(match &p.description {
            Some(d) => format!("{} · {d}", p.for_whom),
            None => p.for_whom.clone(),
        })
        .map(|n| n.chars().take(1000).collect()),
        window_start: p.window_start,
        window_end: p.window_end,
        slots: p.slots,
        skills: Vec::new(),
    };
    let Reply::Order(order_id) = service::post_order(tx, actor, post)? else {
        unreachable!("post_order answers an order id")
    };
    tx.emit(EventBody::OrderClaimed { order_id: order_id.clone(), member_id, assigned: false });
    tx.emit(EventBody::Residents {
        event: Box::new(ResidentEvent::ProposalApproved {
            proposal_id: proposal_id.into(),
            order_id: order_id.clone(),
        }),
    });
    Ok(Reply::Order(order_id))
}

fn decline_proposal(tx: &mut Tx<'_>, actor: &Actor, proposal_id: &str, reason: String) -> Result<Reply, DomainError> {
    open_proposal(tx.state, actor, proposal_id)?;
    if reason.trim().is_empty() {
        return Err(err(Code::ReasonRequired, "say why: the member sees the reason"));
    }
    check_note(Some(&reason))?;
    tx.emit(EventBody::Residents {
        event: Box::new(ResidentEvent::ProposalDeclined { proposal_id: proposal_id.into(), reason }),
    });
    Ok(Reply::Done)
}

// ---------------------------------------------------------------- views and frames

/// Where a request stands: its own state, and while dispatched, its order's progress
/// (`dispatched`, `claimed`, `in_service`, `served`, `cancelled`).
pub fn status(state: &State, r: &Request) -> &'static str {
    match r.state {
        RequestState::Submitted => "submitted",
        RequestState::Declined => "declined",
        RequestState::Confirmed => "confirmed",
        RequestState::Dispatched => match r.order_id.as_ref().and_then(|o| state.orders.get(o)) {
            None => "dispatched",
            Some(o) if o.status == OrderStatus::Cancelled => "cancelled",
            Some(o) if served(o) => "served",
            Some(o) if o.claims.iter().any(|c| c.checkin.is_some()) => "in_service",
            Some(o) if !o.claims.is_empty() => "claimed",
            Some(_) => "dispatched",
        },
    }
}

/// A request as its resident and its community see it (never the phone).
pub fn request_json(state: &State, r: &Request) -> Value {
    json!({
        "id": r.id,
        "status": status(state, r),
        "community_id": r.community_id,
        "grid_id": r.grid_id,
        "category": r.category,
        "description": r.description,
        "preferred_start": rfc3339(r.preferred_start),
        "preferred_end": rfc3339(r.preferred_end),
        "placed_at": rfc3339(r.placed_at),
        "order_id": r.order_id,
        "merged": r.merged,
        "reason": r.reason,
        "rating": r.rating,
        "comment": r.comment,
    })
}

pub fn proposal_json(p: &Proposal) -> Value {
    json!({
        "id": p.id,
        "status": p.state,
        "member_id": p.member_id,
        "community_id": p.community_id,
        "grid_id": p.grid_id,
        "category": p.category,
        "title": p.title,
        "description": p.description,
        "for_whom": p.for_whom,
        "window_start": rfc3339(p.window_start),
        "window_end": rfc3339(p.window_end),
        "slots": p.slots,
        "proposed_at": rfc3339(p.proposed_at),
        "order_id": p.order_id,
        "reason": p.reason,
    })
}

/// A request's frames: `request.updated` to its resident and to its community.
fn push_request(state: &mut State, frames: &mut Vec<Frame>, id: &str, community_kind: &'static str) {
    let Some(r) = state.residents.requests.get(id) else { return };
    let data = std::sync::Arc::new(request_json(state, r));
    let (resident, community) = (stream::resident(&r.resident_id), stream::community(&r.community_id));
    state.push_frame(frames, resident, "request.updated", data.clone());
    state.push_frame(frames, community, community_kind, data);
}

fn push_proposal(state: &mut State, frames: &mut Vec<Frame>, id: &str, community_kind: &'static str) {
    let Some(p) = state.residents.proposals.get(id) else { return };
    let data = std::sync::Arc::new(proposal_json(p));
    let (member, community) = (stream::member(&p.member_id), stream::community(&p.community_id));
    state.push_frame(frames, member, "proposal.updated", data.clone());
    state.push_frame(frames, community, community_kind, data);
}

/// After an order's event: the residents whose requests it serves hear how it goes.
pub(super) fn follow_order(state: &mut State, body: &EventBody, frames: &mut Vec<Frame>) {
    let order_id = match body {
        EventBody::OrderClaimed { order_id, .. }
        | EventBody::OrderCancelled { order_id, .. }
        | EventBody::CheckedIn { order_id, .. }
        | EventBody::CheckedOut { order_id, .. } => order_id,
        _ => return,
    };
    let Some(ids) = state.residents.order_requests.get(order_id).cloned() else { return };
    for id in ids {
        let Some(r) = state.residents.requests.get(&id).filter(|r| r.state == RequestState::Dispatched) else {
            continue;
        };
        let data = request_json(state, r);
        let s = stream::resident(&r.resident_id);
        state.push_frame(frames, s, "request.updated", data);
    }
}

/// Folds one of the feature's events into the state and derives its frames.
pub(super) fn apply(state: &mut State, event: &Event, e: &ResidentEvent, frames: &mut Vec<Frame>) {
    let at = event.at;
    let rs = &mut state.residents;
    match e {
        ResidentEvent::CodeSent { challenge_id, community_id, phone, code_hash, expires_at } => {
            rs.challenges.retain(|_, c| c.expires_at > at);
            while rs.challenges.len() >= MAX_CHALLENGES {
                let oldest = rs.challenges.values().min_by_key(|c| (c.expires_at, c.id.clone())).map(|c| c.id.clone());
                let Some(oldest) = oldest else { break };
                rs.challenges.remove(&oldest);
            }
            rs.challenges.insert(
                challenge_id.clone(),
                Challenge {
                    id: challenge_id.clone(),
                    community_id: community_id.clone(),
                    phone: phone.clone(),
                    code_hash: code_hash.clone(),
                    expires_at: *expires_at,
                    attempts_left: CODE_ATTEMPTS,
                },
            );
        }
        ResidentEvent::CodeFailed { challenge_id } => {
            if let Some(c) = rs.challenges.get_mut(challenge_id) {
                c.attempts_left = c.attempts_left.saturating_sub(1);
                if c.attempts_left == 0 {
                    rs.challenges.remove(challenge_id);
                }
            }
        }
        ResidentEvent::Verified { challenge_id, resident_id, created, family, device, refresh_hash, expires_at } => {
            let Some(ch) = rs.challenges.remove(challenge_id) else { return };
            if *created {
                rs.residents_created += 1;
                rs.by_phone.insert(Residents::phone_key(&ch.community_id, &ch.phone), resident_id.clone());
                rs.residents.insert(
                    resident_id.clone(),
                    Resident {
                        id: resident_id.clone(),
                        community_id: ch.community_id.clone(),
                        phone: ch.phone.clone(),
                        created_at: at,
                    },
                );
            }
            state.sessions.insert(
                family.clone(),
                super::access::Session {
                    family: family.clone(),
                    subject: Actor::Resident { resident: resident_id.clone() },
                    invitation_id: challenge_id.clone(),
                    device: device.clone(),
                    created_at: at,
                    refreshed_at: None,
                    expires_at: *expires_at,
                    refresh_hash: refresh_hash.clone(),
                    rotated: Vec::new(),
                },
            );
        }
        ResidentEvent::RequestPlaced {
            request_id,
            resident_id,
            community_id,
            grid_id,
            category,
            description,
            preferred_start,
            preferred_end,
        } => {
            rs.requests_placed += 1;
            rs.requests.insert(
                request_id.clone(),
                Request {
                    id: request_id.clone(),
                    resident_id: resident_id.clone(),
                    community_id: community_id.clone(),
                    grid_id: grid_id.clone(),
                    category: category.clone(),
                    description: description.clone(),
                    preferred_start: *preferred_start,
                    preferred_end: *preferred_end,
                    placed_at: at,
                    state: RequestState::Submitted,
                    order_id: None,
                    merged: false,
                    reason: None,
                    rating: None,
                    comment: None,
                    closed_at: None,
                },
            );
            push_request(state, frames, request_id, "request.placed");
        }
        ResidentEvent::RequestDispatched { request_id, order_id, merged } => {
            if let Some(r) = rs.requests.get_mut(request_id) {
                r.state = RequestState::Dispatched;
                r.order_id = Some(order_id.clone());
                r.merged = *merged;
            }
            rs.order_requests.entry(order_id.clone()).or_default().push(request_id.clone());
            push_request(state, frames, request_id, "request.updated");
        }
        ResidentEvent::RequestDeclined { request_id, reason } => {
            if let Some(r) = rs.requests.get_mut(request_id) {
                r.state = RequestState::Declined;
                r.reason = Some(reason.clone());
                r.closed_at = Some(at);
            }
            push_request(state, frames, request_id, "request.updated");
        }
        ResidentEvent::RequestConfirmed { request_id, rating, comment } => {
            if let Some(r) = rs.requests.get_mut(request_id) {
                r.state = RequestState::Confirmed;
                r.rating = Some(*rating);
                r.comment = comment.clone();
                r.closed_at = Some(at);
            }
            push_request(state, frames, request_id, "request.updated");
        }
        ResidentEvent::ProposalMade {
            proposal_id,
            member_id,
            community_id,
            grid_id,
            category,
            title,
            description,
            for_whom,
            window_start,
            window_end,
            slots,
        } => {
            rs.proposals_made += 1;
            rs.proposals.insert(
                proposal_id.clone(),
                Proposal {
                    id: proposal_id.clone(),
                    member_id: member_id.clone(),
                    community_id: community_id.clone(),
                    grid_id: grid_id.clone(),
                    category: category.clone(),
                    title: title.clone(),
                    description: description.clone(),
                    for_whom: for_whom.clone(),
                    window_start: *window_start,
                    window_end: *window_end,
                    slots: *slots,
                    proposed_at: at,
                    state: ProposalState::Proposed,
                    order_id: None,
                    reason: None,
                    closed_at: None,
                },
            );
            push_proposal(state, frames, proposal_id, "proposal.made");
        }
        ResidentEvent::ProposalApproved { proposal_id, order_id } => {
            if let Some(p) = rs.proposals.get_mut(proposal_id) {
                p.state = ProposalState::Approved;
                p.order_id = Some(order_id.clone());
                p.closed_at = Some(at);
                rs.created_by.insert(order_id.clone(), p.member_id.clone());
            }
            push_proposal(state, frames, proposal_id, "proposal.updated");
        }
        ResidentEvent::ProposalDeclined { proposal_id, reason } => {
            if let Some(p) = rs.proposals.get_mut(proposal_id) {
                p.state = ProposalState::Declined;
                p.reason = Some(reason.clone());
                p.closed_at = Some(at);
            }
            push_proposal(state, frames, proposal_id, "proposal.updated");
        }
    }
}
