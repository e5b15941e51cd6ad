//! Peacetime service and evaluation: 双报到 registration, service orders (群众点单、社区
//! 派单、党员接单), geofenced service records (服务纪实), per-task ratings (一事一评), points
//! and hours, and reliability. What members earn here feeds wartime matching.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

use super::command::{Actor, Reply, Tx, acting_member, check_note};
use super::errors::{Code, DomainError, ErrorKind, err, err_as};
use super::event::{Event, EventBody, Frame, Ts, stream};
use super::geo::Position;
use super::incident::{OfferState, Status};
use super::incidents::visible_incident;
use super::org::Member;
use super::scope::of_community;
use super::scope::{self, fits};
use super::state::State;
use super::time::rfc3339;

pub use super::service_data::{
    Credit, Currency, Ledger, OrderClaim, OrderStatus, PostOrder, Rating, ServiceOrder, Stamp, TaskRef,
};
use super::workload::TaskClass;

const WEEK_MS: i64 = 7 * 24 * 3_600_000;

/// Registers members at their residence community (双报到): new members join the city;
/// known ones report (their residence grid may change).
pub(super) fn register(tx: &mut Tx<'_>, actor: &Actor, members: Vec<Member>) -> Result<Reply, DomainError> {
    scope::require(actor, scope::Action::RegisterMembers)?;
    if tx.state.city.city().is_none() {
        return Err(err(Code::NoCity, "no city has been imported yet (PUT /v1/city)"));
    }
    if members.is_empty() || members.len() > 20_000 {
        return Err(err(Code::InvalidRegistration, "register 1 to 20,000 members at a time"));
    }
    let mut seen = HashSet::new();
    let mut trial = tx.state.city.clone();
    for m in &members {
        if !seen.insert(m.id.clone()) {
            return Err(err(Code::DuplicateMember, format!("member '{}' is listed twice", m.id)));
        }
        if let Some(s) = m.skills.iter().find(|s| !tx.rules.has_skill(s)) {
            return Err(err(
                Code::UnknownSkill,
                format!("member '{}' has skill '{s}', which is not in the catalog", m.id),
            ));
        }
        let Some(&grid) = tx.state.city.grid_flat.get(&m.residence_grid_id) else {
            return Err(err(Code::UnknownGrid, format!("member '{}': no grid '{}'", m.id, m.residence_grid_id)));
        };
        let community = tx.state.city.grid_places[grid as usize].community;
        let known = tx.state.city.member_by_id.get(&m.id).copied();
        // A known member is changed only by those in whose scope the member is now; to anyone
        // else the id is taken, exactly as when it is taken in their own scope by another
        // unit or team (ids are chosen by whoever registers, so that much is unavoidable).
        if known.is_some_and(|i| !scope::manages_member(tx.state, actor, i)) {
            return Err(taken(&m.id));
        }
        // Where the member is to live (or, for a unit, which unit) must be the caller's too.
        if !scope::places_member(tx.state, actor, &m.unit_id, community) {
            return Err(err(
                Code::OutsideScope,
                format!(
                    "member '{}' is outside your scope (a unit registers its own members; staff, their residents)",
                    m.id
                ),
            ));
        }
        match tx.state.city.member_by_id.get(&m.id) {
            Some(&idx) => {
                let known = &tx.state.city.members()[idx as usize];
                if known.unit_id != m.unit_id || known.team_id != m.team_id {
                    return Err(taken(&m.id));
                }
            }
            None => {
                trial.add_member(m.clone()).map_err(|e| err(Code::InvalidMember, e.0))?;
            }
        }
    }
    tx.emit(EventBody::MembersRegistered { members });
    Ok(Reply::Done)
}

/// The one answer for a member id that cannot be (re)registered as asked, whether the member
/// is elsewhere in the caller's scope or outside it.
fn taken(id: &str) -> DomainError {
    err(
        Code::MemberExists,
        format!("member id '{id}' is taken (by another unit or team, or outside your area); choose another id"),
    )
}

/// A unit reports (单位报到) to a community one of its teams is paired with.
pub(super) fn register_unit(
    tx: &mut Tx<'_>,
    actor: &Actor,
    unit_id: &str,
    community_id: &str,
) -> Result<Reply, DomainError> {
    let Some(city) = tx.state.city.city() else {
        return Err(err(Code::NoCity, "no city has been imported yet (PUT /v1/city)"));
    };
    scope::require(actor, scope::Action::RegisterUnit)?;
    let visible = tx.state.city.unit_by_id.get(unit_id).is_some_and(|&u| scope::unit(tx.state, actor, u));
    if !visible {
        return Err(err_as(ErrorKind::NotFound, Code::UnknownUnit, format!("no unit '{unit_id}' in your scope")));
    }
    let paired = city.teams.iter().any(|t| t.unit_id == unit_id && t.community_id == community_id);
    if !paired {
        return Err(err(Code::NotPaired, format!("no team of {unit_id} is paired with community '{community_id}'")));
    }
    if tx.state.unit_registrations.contains(&(unit_id.to_string(), community_id.to_string())) {
        return Ok(Reply::Done);
    }
    tx.emit(EventBody::UnitRegistered { unit_id: unit_id.into(), community_id: community_id.into() });
    Ok(Reply::Done)
}

pub(super) fn post_order(tx: &mut Tx<'_>, actor: &Actor, o: PostOrder) -> Result<Reply, DomainError> {
    scope::require(actor, scope::Action::PostOrder)?;
    let state = &*tx.state;
    if state.city.city().is_none() {
        return Err(err(Code::NoCity, "no city has been imported yet (PUT /v1/city)"));
    }
    let grid = match (&o.grid_id, o.location) {
        (Some(g), None) => state.city.grid_flat.get(g).copied(),
        (None, Some(p)) => state.city.grid_at(p),
        _ => return Err(err(Code::GridOrLocation, "give exactly one of grid_id or location")),
    };
    let grid = grid
        .filter(|&g| scope::community(state, actor, state.city.grid_places[g as usize].community))
        .ok_or_else(|| err(Code::OutsideScope, "that place is not in a grid of your area"))?;
    let community = state.city.grid_places[grid as usize].community;
    let Some(category) = tx.rules.category(&o.category) else {
        return Err(err(Code::UnknownCategory, format!("category '{}' is not in the catalog", o.category)));
    };
    let difficulty = o.difficulty.unwrap_or(category.difficulty);
    if difficulty < category.difficulty || difficulty > 5 {
        return Err(err(
            Code::DifficultyOutOfRange,
            format!("difficulty {difficulty} is not between {} and 5", category.difficulty),
        ));
    }
    if o.slots == 0 || o.slots > tx.rules.service.max_slots {
        return Err(err(Code::SlotsOutOfRange, format!("slots must be 1 to {}", tx.rules.service.max_slots)));
    }
    if o.window_end <= o.window_start || o.window_end <= tx.now {
        return Err(err(Code::BadWindow, "the time window must end after it starts, and in the future"));
    }
    if o.title.trim().is_empty() || o.title.chars().count() > 200 {
        return Err(err(Code::BadTitle, "a title is 1 to 200 characters"));
    }
    check_note(o.note.as_deref())?;
    if let Some(s) = o.skills.iter().find(|s| !tx.rules.has_skill(s)) {
        return Err(err(Code::UnknownSkill, format!("skill '{s}' is not in the catalog")));
    }
    let class = TaskClass::of(difficulty, tx.rules);
    let location = o.location.unwrap_or(state.city.grid_centers[grid as usize]);
    // A hard order is reserved at first for the members who have done the least hard work;
    // among equals (in peacetime, most of a community has none), the nearest to the order's
    // place, who are the ones likely to take it, then by index. By index alone the reserved
    // were the lowest-numbered members wherever they stood, who seldom took it, so the order
    // waited out the window (docs/PERFORMANCE.md, Fairness).
    let (priority_until, priority_members) = if class == TaskClass::Hard && tx.rules.service.hard_priority_s > 0 {
        let mut pool: Vec<(f64, f64, u32)> = (0..state.roster.members.len() as u32)
            .filter(|&m| of_community(state, m, community))
            .filter(|&m| o.skills.iter().all(|s| state.city.members()[m as usize].skills.contains(s)))
            .map(|m| {
                let rt = &state.roster.members[m as usize];
                (rt.work.hard_load, rt.position.distance_m(location), m)
            })
            .collect();
        pool.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)).then(a.2.cmp(&b.2)));
        pool.truncate((o.slots * tx.rules.service.hard_priority_per_slot) as usize);
        let ids: Vec<String> = pool.iter().map(|&(_, _, m)| state.city.members()[m as usize].id.clone()).collect();
        (Some(tx.now + tx.rules.service.hard_priority_s as i64 * 1000).filter(|_| !ids.is_empty()), ids)
    } else {
        (None, Vec::new())
    };
    let order_id = format!("ord-{}", state.orders_posted + 1);
    tx.emit(EventBody::OrderPosted {
        order_id: order_id.clone(),
        community_id: state.city.community(community).id.clone(),
        grid_id: state.city.grid_ids[grid as usize].clone(),
        location,
        category: o.category,
        difficulty,
        class,
        title: o.title,
        note: o.note,
        window_start: o.window_start,
        window_end: o.window_end,
        slots: o.slots,
        skills: o.skills,
        priority_until,
        priority_members,
    });
    Ok(Reply::Order(order_id))
}

fn order_in_scope<'a>(state: &'a State, actor: &Actor, id: &str) -> Result<&'a ServiceOrder, DomainError> {
    state
        .orders
        .get(id)
        .filter(|o| scope::order(state, actor, o))
        .ok_or_else(|| err(Code::UnknownOrder, format!("no order '{id}' in your scope")))
}

/// A member claims an order (党员接单), or staff assign one (社区派单).
pub(super) fn claim(
    tx: &mut Tx<'_>,
    actor: &Actor,
    order_id: &str,
    assign_to: Option<String>,
) -> Result<Reply, DomainError> {
    let action = if assign_to.is_some() { scope::Action::AssignOrder } else { scope::Action::ClaimOrder };
    scope::require(actor, action)?;
    let o = order_in_scope(tx.state, actor, order_id)?;
    let member = match &assign_to {
        None => acting_member(tx.state, actor)?,
        // Staff assign a member of the order's community (living there, transferred there or
        // in a team serving it); anyone else is answered as an unknown id.
        Some(m) => tx.state.member_index(m).filter(|&i| of_community(tx.state, i, o.community)).ok_or_else(|| {
            err_as(ErrorKind::Invalid, Code::UnknownMember, format!("no member '{m}' in this community"))
        })?,
    };
    if o.claim_of(member).is_some() {
        return Ok(Reply::Order(order_id.into()));
    }
    match o.status {
        OrderStatus::Open => {}
        OrderStatus::Full => {
            return Err(err(Code::OrderFull, format!("order {order_id} has no free slot")));
        }
        OrderStatus::Cancelled => {
            return Err(err(Code::OrderClosed, format!("order {order_id} is cancelled")));
        }
    }
    if tx.now >= o.window_end {
        return Err(err(Code::OrderClosed, format!("order {order_id}'s time window is over")));
    }
    if !fits(tx.state, member, o) {
        return Err(err(Code::NotEligible, "the member is not of this community or lacks a required skill"));
    }
    if assign_to.is_none()
        && let Some(until) = o.priority_until
        && tx.now < until
        && !o.priority.contains(&member)
    {
        return Err(err(
            Code::PriorityWindow,
            format!(
                "this hard order is reserved until {} for members who have done the least hard work",
                rfc3339(until)
            ),
        ));
    }
    if o.class == TaskClass::Easy {
        let taken = tx.state.roster.members[member as usize]
            .ledger
            .easy_orders
            .iter()
            .filter(|&&t| tx.now - t < WEEK_MS)
            .count();
        if taken as u32 >= tx.rules.service.easy_orders_per_week {
            return Err(err(
                Code::EasyCap,
                format!(
                    "{} easy orders in 7 days is the most one member may take",
                    tx.rules.service.easy_orders_per_week
                ),
            ));
        }
    }
    let member_id = tx.state.city.members()[member as usize].id.clone();
    tx.emit(EventBody::OrderClaimed { order_id: order_id.into(), member_id, assigned: assign_to.is_some() });
    Ok(Reply::Order(order_id.into()))
}

pub(super) fn cancel_order(
    tx: &mut Tx<'_>,
    actor: &Actor,
    order_id: &str,
    reason: Option<String>,
) -> Result<Reply, DomainError> {
    scope::require(actor, scope::Action::CancelOrder)?;
    check_note(reason.as_deref())?;
    let o = order_in_scope(tx.state, actor, order_id)?;
    if o.status == OrderStatus::Cancelled {
        return Err(err(Code::OrderClosed, format!("order {order_id} is already cancelled")));
    }
    tx.emit(EventBody::OrderCancelled { order_id: order_id.into(), reason });
    Ok(Reply::Order(order_id.into()))
}

/// Check-in (`out` false) or check-out at the order's place. Outside the geofence the
/// stamp is recorded and flagged: a position and a time are the proof, not a photo.
pub(super) fn stamp(
    tx: &mut Tx<'_>,
    actor: &Actor,
    order_id: &str,
    position: Position,
    out: bool,
) -> Result<Reply, DomainError> {
    let member = acting_member(tx.state, actor)?;
    let o = order_in_scope(tx.state, actor, order_id)?;
    let Some(c) = o.claim_of(member) else {
        return Err(err(Code::NotClaimed, format!("you have not taken order {order_id}")));
    };
    if o.status == OrderStatus::Cancelled {
        return Err(err(Code::OrderClosed, format!("order {order_id} is cancelled")));
    }
    let distance_m = (position.distance_m(o.location) * 10.0).round() / 10.0;
    let flagged = distance_m > tx.rules.service.geofence_m;
    let member_id = c.member_id.clone();
    if !out {
        if c.checkin.is_some() {
            return Err(err(Code::AlreadyCheckedIn, format!("you checked in to {order_id} already")));
        }
        tx.emit(EventBody::CheckedIn { order_id: order_id.into(), member_id, position, distance_m, flagged });
    } else {
        let Some(checkin) = &c.checkin else {
            return Err(err(Code::NotCheckedIn, format!("check in to {order_id} before checking out")));
        };
        if c.checkout.is_some() {
            return Err(err(Code::AlreadyCheckedOut, format!("you checked out of {order_id} already")));
        }
        let hours = ((tx.now - checkin.at).max(0) as f64 / 3_600_000.0 * 100.0).round() / 100.0;
        tx.emit(EventBody::CheckedOut { order_id: order_id.into(), member_id, position, distance_m, flagged, hours });
    }
    Ok(Reply::Done)
}

/// 一事一评: the community rates one member's work on one task.
pub(super) fn rate(
    tx: &mut Tx<'_>,
    actor: &Actor,
    task: TaskRef,
    member_id: &str,
    rating: Rating,
) -> Result<Reply, DomainError> {
    scope::require(actor, scope::Action::Rate)?;
    let did_not = || err(Code::DidNotWork, format!("member '{member_id}' did not work that task"));
    let member = tx.state.member_index(member_id).ok_or_else(did_not)?;
    let weight = match rating {
        Rating::VeryGood => tx.rules.service.rating_weights.very_good,
        Rating::Good => tx.rules.service.rating_weights.good,
        Rating::Fair => tx.rules.service.rating_weights.fair,
    };
    let (hours, difficulty, order_id, offer_id, incident_id) = match &task {
        TaskRef::Order(id) => {
            let o = order_in_scope(tx.state, actor, id)?;
            let c = o.claim_of(member).filter(|c| c.counted()).ok_or_else(did_not)?;
            if c.rating.is_some() {
                return Err(err(Code::AlreadyRated, format!("{member_id}'s work on {id} is rated already")));
            }
            (c.hours, o.difficulty, Some(id.clone()), None, None)
        }
        TaskRef::Offer(id) => {
            let unknown = || err(Code::UnknownTask, format!("no assignment '{id}' in your scope"));
            let incident_id = tx.state.offer_index.get(id).cloned().ok_or_else(unknown)?;
            let incident_id = visible_incident(tx.state, actor, &incident_id).map_err(|_| unknown())?;
            let inc = &tx.state.incidents[&incident_id];
            let o = inc.offer(id).ok_or_else(unknown)?;
            if o.member != member || o.state != OfferState::Arrived {
                return Err(did_not());
            }
            if inc.status != Status::Resolved {
                return Err(err(Code::TaskNotFinished, format!("rate once incident {incident_id} is resolved")));
            }
            if tx.state.roster.members[member as usize].ledger.credits.iter().any(|c| c.task == format!("offer:{id}")) {
                return Err(err(Code::AlreadyRated, format!("{member_id}'s work on {id} is rated already")));
            }
            let start = o.answered_at.unwrap_or(o.sent_at);
            let hours = ((inc.closed_at.unwrap_or(tx.now) - start).max(0) as f64 / 3_600_000.0 * 100.0).round() / 100.0;
            (hours, inc.difficulty, None, Some(id.clone()), Some(incident_id))
        }
    };
    let points = (hours * difficulty as f64 * weight * 100.0).round() / 100.0;
    tx.emit(EventBody::Rated {
        order_id,
        offer_id,
        incident_id,
        member_id: member_id.into(),
        rating,
        hours,
        difficulty,
        points,
    });
    Ok(Reply::Done)
}

/// Points and hours exchange at `points_per_hour`.
pub(super) fn exchange(
    tx: &mut Tx<'_>,
    actor: &Actor,
    member_id: &str,
    from: Currency,
    amount: f64,
) -> Result<Reply, DomainError> {
    let member = tx
        .state
        .member_index(member_id)
        .filter(|_| scope::permits(actor, scope::Action::Exchange))
        .filter(|&m| scope::member(tx.state, actor, m))
        .ok_or_else(|| {
            err_as(ErrorKind::NotFound, Code::UnknownMember, format!("no member '{member_id}' in your scope"))
        })?;
    if !(amount.is_finite() && amount > 0.0 && amount <= 1e6) {
        return Err(err(Code::BadAmount, "amount must be a positive number"));
    }
    let l = &tx.state.roster.members[member as usize].ledger;
    let rate = tx.rules.service.points_per_hour;
    let (points_delta, hours_delta, have) = match from {
        Currency::Points => (-amount, amount / rate, l.points_balance),
        Currency::Hours => (amount * rate, -amount, l.hours_balance),
    };
    if have + 1e-9 < amount {
        return Err(err(Code::InsufficientBalance, format!("the balance is {have:.2}, less than {amount}")));
    }
    // Unrounded, so an exchange neither creates nor destroys value.
    tx.emit(EventBody::Exchanged { member_id: member_id.into(), from, amount, points_delta, hours_delta });
    Ok(Reply::Done)
}

fn order_streams(state: &State, o: &ServiceOrder) -> [String; 3] {
    [
        stream::community(&o.community_id),
        stream::district(state.city.district_id_of_community(o.community)),
        stream::CITY.into(),
    ]
}

fn order_summary(o: &ServiceOrder) -> serde_json::Value {
    json!({
        "order_id": o.id,
        "status": o.status,
        "slots": o.slots,
        "claimed": o.claims.len(),
        "category": o.category,
        "difficulty": o.difficulty,
        "title": o.title,
    })
}

/// Folds a service event into the state and derives its frames.
pub(super) fn apply(state: &mut State, event: &Event, frames: &mut Vec<Frame>) {
    let at = event.at;
    match &event.body {
        EventBody::MembersRegistered { members } => {
            for m in members {
                match state.city.member_by_id.get(&m.id).copied() {
                    Some(idx) => {
                        let grid = state.city.grid_flat[&m.residence_grid_id];
                        state.city.member_residence[idx as usize] = grid;
                        let c = std::sync::Arc::make_mut(state.city.city.as_mut().expect("a city"));
                        c.members[idx as usize].residence_grid_id = m.residence_grid_id.clone();
                        c.members[idx as usize].registered = true;
                        state.roster.hot[idx as usize].residence = state.city.grid_places[grid as usize].community;
                    }
                    None => {
                        let mut m = m.clone();
                        m.registered = true;
                        let idx = state.city.add_member(m).expect("a logged registration was validated");
                        state.roster.add(&state.city, idx);
                    }
                }
            }
            let data = json!({"members": members.iter().map(|m| &m.id).collect::<Vec<_>>()});
            state.push_frame(frames, stream::CITY.into(), "members.registered", data);
        }
        EventBody::UnitRegistered { unit_id, community_id } => {
            state.unit_registrations.insert((unit_id.clone(), community_id.clone()));
            let data = json!({"unit_id": unit_id, "community_id": community_id});
            state.push_frame(frames, stream::community(community_id), "unit.registered", data.clone());
            state.push_frame(frames, stream::CITY.into(), "unit.registered", data);
        }
        EventBody::OrderPosted {
            order_id,
            community_id,
            grid_id,
            location,
            category,
            difficulty,
            class,
            title,
            note,
            window_start,
            window_end,
            slots,
            skills,
            priority_until,
            priority_members,
        } => {
            let priority: HashSet<u32> = priority_members.iter().map(|m| state.city.member_by_id[m]).collect();
            let o = ServiceOrder {
                id: order_id.clone(),
                community: state.city.community_by_id[community_id],
                community_id: community_id.clone(),
                grid_id: grid_id.clone(),
                location: *location,
                category: category.clone(),
                difficulty: *difficulty,
                class: *class,
                title: title.clone(),
                note: note.clone(),
                window_start: *window_start,
                window_end: *window_end,
                slots: *slots,
                skills: skills.clone(),
                posted_at: at,
                posted_by: event.actor.clone(),
                status: OrderStatus::Open,
                priority_until: *priority_until,
                priority,
                claims: Vec::new(),
            };
            let offer = json!({
                "order_id": order_id,
                "title": title,
                "category": category,
                "difficulty": difficulty,
                "location": location,
                "window_start": rfc3339(*window_start),
                "window_end": rfc3339(*window_end),
                "reserved_until": priority_until.map(rfc3339),
            });
            for m in priority_members {
                state.push_frame(frames, stream::member(m), "order.offer", offer.clone());
            }
            let summary = order_summary(&o);
            for s in order_streams(state, &o) {
                state.push_frame(frames, s, "order.posted", summary.clone());
            }
            state.orders_posted += 1;
            state.orders.insert(order_id.clone(), o);
        }
        EventBody::OrderClaimed { order_id, member_id, assigned } => {
            let member = state.city.member_by_id[member_id];
            let o = state.orders.get_mut(order_id).expect("known order");
            o.claims.push(OrderClaim {
                member,
                member_id: member_id.clone(),
                claimed_at: at,
                assigned: *assigned,
                checkin: None,
                checkout: None,
                hours: 0.0,
                rating: None,
            });
            if o.claims.len() as u32 >= o.slots {
                o.status = OrderStatus::Full;
            }
            if o.class == TaskClass::Easy {
                let l = &mut state.roster.members[member as usize].ledger;
                l.easy_orders.retain(|&t| at - t < WEEK_MS);
                l.easy_orders.push(at);
            }
            let o = &state.orders[order_id];
            let summary = order_summary(o);
            let streams = order_streams(state, o);
            let mine = json!({"order_id": order_id, "title": o.title, "location": o.location, "assigned": assigned,
                "window_start": rfc3339(o.window_start), "window_end": rfc3339(o.window_end)});
            state.push_frame(frames, stream::member(member_id), "order.assigned", mine);
            for s in streams {
                state.push_frame(frames, s, "order.claimed", json!({"member_id": member_id, "order": summary}));
            }
        }
        EventBody::OrderCancelled { order_id, reason } => {
            let o = state.orders.get_mut(order_id).expect("known order");
            o.status = OrderStatus::Cancelled;
            let members: Vec<String> = o.claims.iter().map(|c| c.member_id.clone()).collect();
            let o = &state.orders[order_id];
            let summary = order_summary(o);
            for s in order_streams(state, o) {
                state.push_frame(frames, s, "order.cancelled", summary.clone());
            }
            for m in members {
                state.push_frame(
                    frames,
                    stream::member(&m),
                    "order.cancelled",
                    json!({"order_id": order_id, "reason": reason}),
                );
            }
        }
        EventBody::CheckedIn { order_id, member_id, position, distance_m, flagged }
        | EventBody::CheckedOut { order_id, member_id, position, distance_m, flagged, .. } => {
            let member = state.city.member_by_id[member_id];
            let o = state.orders.get_mut(order_id).expect("known order");
            let difficulty = o.difficulty;
            let c = o.claims.iter_mut().find(|c| c.member == member).expect("a claim");
            let stamp = Stamp { at, position: *position, distance_m: *distance_m, flagged: *flagged };
            let kind = if let EventBody::CheckedOut { hours, .. } = &event.body {
                c.checkout = Some(stamp);
                c.hours = *hours;
                if c.counted() {
                    let hours = *hours;
                    let class = o.class;
                    state.roster.edit(member, |m| m.work.credit(difficulty, class));
                    let l = &mut state.roster.members[member as usize].ledger;
                    l.credits.push(Credit {
                        at,
                        task: format!("order:{order_id}"),
                        hours,
                        difficulty,
                        rating: None,
                        points: 0.0,
                    });
                    l.hours_balance += hours;
                }
                "order.checked_out"
            } else {
                c.checkin = Some(stamp);
                "order.checked_in"
            };
            state.roster.move_to(member, *position);
            let o = &state.orders[order_id];
            let data =
                json!({"order_id": order_id, "member_id": member_id, "distance_m": distance_m, "flagged": flagged});
            let data = Arc::new(data);
            for s in order_streams(state, o) {
                state.push_frame(frames, s, kind, data.clone());
            }
            state.push_frame(frames, stream::member(member_id), kind, data);
        }
        EventBody::Rated { order_id, offer_id, member_id, rating, hours, difficulty, points, .. } => {
            let member = state.city.member_by_id[member_id];
            let l = &mut state.roster.members[member as usize].ledger;
            match (order_id, offer_id) {
                (Some(o), _) => {
                    let task = format!("order:{o}");
                    if let Some(c) = l.credits.iter_mut().find(|c| c.task == task) {
                        c.rating = Some(*rating);
                        c.points = *points;
                    }
                    if let Some(c) =
                        state.orders.get_mut(o).and_then(|o| o.claims.iter_mut().find(|c| c.member == member))
                    {
                        c.rating = Some(*rating);
                    }
                }
                (None, Some(off)) => {
                    l.credits.push(Credit {
                        at,
                        task: format!("offer:{off}"),
                        hours: *hours,
                        difficulty: *difficulty,
                        rating: Some(*rating),
                        points: *points,
                    });
                    l.hours_balance += hours;
                }
                (None, None) => {}
            }
            let l = &mut state.roster.members[member as usize].ledger;
            l.points_balance += points;
            let data =
                json!({"order_id": order_id, "offer_id": offer_id, "rating": rating, "hours": hours, "points": points});
            state.push_frame(frames, stream::member(member_id), "rating", data);
        }
        EventBody::Exchanged { member_id, points_delta, hours_delta, .. } => {
            let member = state.city.member_by_id[member_id];
            let l = &mut state.roster.members[member as usize].ledger;
            l.points_balance += points_delta;
            l.hours_balance += hours_delta;
            let data = json!({"points_balance": l.points_balance, "hours_balance": l.hours_balance});
            state.push_frame(frames, stream::member(member_id), "balance", data);
        }
        _ => unreachable!("dispatcher::apply sends only service events here"),
    }
}

/// Before a new city replaces the old: orders keep their ids, their indexes follow the
/// new numbering (a member who is gone matches no one any more).
pub(super) fn renumber(state: &mut State, new: &super::org::CityIndex) {
    let old = &state.city;
    for o in state.orders.values_mut() {
        let at = |id: &str| new.member_by_id.get(id).copied().unwrap_or(u32::MAX);
        for c in &mut o.claims {
            c.member = at(&c.member_id);
        }
        o.priority = o.priority.iter().map(|&m| at(&old.members()[m as usize].id)).collect();
        if let Some(&g) = new.grid_flat.get(&o.grid_id) {
            o.community = new.grid_places[g as usize].community;
        }
    }
}

/// A member's figures over a period (reports).
#[derive(Debug, Clone, Default, PartialEq, Serialize, ToSchema)]
pub struct Figures {
    pub hours: f64,
    pub points: f64,
    /// Tasks credited, by difficulty 1..5.
    pub tasks_by_difficulty: [u32; 5],
    pub ratings: RatingCounts,
    pub offered: u32,
    pub accepted: u32,
    pub arrived: u32,
    /// arrived / offered, when offered.
    pub reliability: Option<f64>,
    /// Service orders worked and counted in the period (credited at check-out): those the
    /// member created (an approved proposal, 创单) and those they took (接单), apart.
    pub orders_created: u32,
    pub orders_taken: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, ToSchema)]
pub struct RatingCounts {
    pub very_good: u32,
    pub good: u32,
    pub fair: u32,
}

impl Figures {
    pub fn add(&mut self, o: &Figures) {
        self.hours += o.hours;
        self.points += o.points;
        for i in 0..5 {
            self.tasks_by_difficulty[i] += o.tasks_by_difficulty[i];
        }
        self.ratings.very_good += o.ratings.very_good;
        self.ratings.good += o.ratings.good;
        self.ratings.fair += o.ratings.fair;
        self.offered += o.offered;
        self.accepted += o.accepted;
        self.arrived += o.arrived;
        self.orders_created += o.orders_created;
        self.orders_taken += o.orders_taken;
        self.reliability = (self.offered > 0).then(|| self.arrived as f64 / self.offered as f64);
    }
}

/// One member's figures for `[from, to)`.
pub fn figures(state: &State, member: u32, from: Ts, to: Ts) -> Figures {
    figures_for(state, &[member], from, to).pop().expect("one member, one row")
}

/// The figures of several members for `[from, to)`, in their order. The offers are
/// tallied in one pass over the incidents, however many members a report covers.
pub fn figures_for(state: &State, members: &[u32], from: Ts, to: Ts) -> Vec<Figures> {
    let row: std::collections::HashMap<u32, usize> = members.iter().enumerate().map(|(i, &m)| (m, i)).collect();
    let mut out = vec![Figures::default(); members.len()];
    for (f, &member) in out.iter_mut().zip(members) {
        for c in state.roster.members[member as usize].ledger.credits.iter().filter(|c| c.at >= from && c.at < to) {
            f.hours += c.hours;
            f.points += c.points;
            f.tasks_by_difficulty[(c.difficulty.clamp(1, 5) - 1) as usize] += 1;
            if let Some(order) = c.task.strip_prefix("order:") {
                let created = state
                    .residents
                    .created_by
                    .get(order)
                    .is_some_and(|m| m == &state.city.members()[member as usize].id);
                if created {
                    f.orders_created += 1;
                } else {
                    f.orders_taken += 1;
                }
            }
            match c.rating {
                Some(Rating::VeryGood) => f.ratings.very_good += 1,
                Some(Rating::Good) => f.ratings.good += 1,
                Some(Rating::Fair) => f.ratings.fair += 1,
                None => {}
            }
        }
    }
    for inc in state.incidents.values() {
        for o in inc.offers.iter().filter(|o| o.sent_at >= from && o.sent_at < to) {
            let Some(&i) = row.get(&o.member) else { continue };
            let f = &mut out[i];
            f.offered += 1;
            if matches!(o.state, OfferState::Accepted | OfferState::Arrived) {
                f.accepted += 1;
            }
            if o.state == OfferState::Arrived {
                f.arrived += 1;
            }
        }
    }
    for f in &mut out {
        f.reliability = (f.offered > 0).then(|| f.arrived as f64 / f.offered as f64);
        f.hours = (f.hours * 100.0).round() / 100.0;
        f.points = (f.points * 100.0).round() / 100.0;
    }
    out
}

/// Members a community sees in reports: its residents and the members of the teams it hosts.
pub fn community_members(state: &State, community: u32) -> BTreeSet<u32> {
    let mut out: BTreeSet<u32> =
        (0..state.roster.members.len() as u32).filter(|&m| state.city.residence_community(m) == community).collect();
    for (t, &c) in state.city.team_community.iter().enumerate() {
        if c == community {
            out.extend(state.city.team_members[t].iter().copied());
        }
    }
    out
}
