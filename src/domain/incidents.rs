//! The incident feature: raising an incident, offering it (refill), members' answers
//! (accept, decline, arrive), escalation, resolving and cancelling, the incident deadlines
//! `tick` fires, and the `apply` arms of the incident events, with their frames.
//!
//! A room of its own as `wartime` and `service` are: it depends on `state`, `command`,
//! `errors`, `scope` and `matching`; the kernel (`dispatcher`) routes commands, deadlines and
//! events to it. `wartime` uses `refill`, `close`, `closed` and `scope_frames` from here.

use std::sync::Arc;

use serde_json::{Value, json};

use super::command::{Actor, Answer, RaiseIncident, Reply, Tx, acting_member, check_note};
use super::errors::{Code, DomainError, err};
use super::event::{EscalationReason, Event, EventBody, Frame, RevokeReason, stream};
use super::incident::{Incident, Offer, OfferState, Status};
use super::matching::{self, Target};
use super::response::{Level, Rules};
use super::scope;
use super::state::{Deadline, State, end_duty_unless_mobilized};
use super::time::{Ts, rfc3339};
use super::workload::TaskClass;

/// The incident's counts, carried by every `incident.*` frame so a dashboard needs no lookup.
pub fn summary(inc: &Incident) -> Value {
    json!({
        "status": inc.status.as_str(),
        "level": inc.level,
        "headcount": inc.headcount,
        "accepted": inc.accepted(),
        "arrived": inc.arrived(),
        "open_offers": inc.open_offers(),
    })
}

/// Where a call in `grid` at `level` is offered: wartime or not (its district's mode), and
/// in peacetime a call that was not escalated and is below level Ⅱ stays within the
/// community's own members (when the rules say so). `refill` and `first_offers` share it.
#[derive(Clone, Copy)]
struct Area {
    wartime: bool,
    own_community: Option<u32>,
}

fn area(state: &State, rules: &Rules, district_id: &str, grid: u32, level: Level, escalated: bool) -> Area {
    let community = state.city.grid_places[grid as usize].community;
    let wartime = state.wartime(district_id);
    let own = rules.peacetime_own_community && !wartime && !escalated && level <= Level::III;
    Area { wartime, own_community: own.then_some(community) }
}

/// What matching looks for on the incident's behalf.
fn target_of(inc: &Incident, area: Area) -> Target<'_> {
    Target {
        location: inc.location,
        grid: inc.grid,
        skills: &inc.skills,
        offered: &inc.offered,
        difficulty: inc.difficulty,
        class: inc.class,
        own_community: area.own_community,
        wartime: area.wartime,
    }
}

/// Sends as many offers as the incident wants, reach by reach. In peacetime a call
/// that was not escalated and is below level Ⅱ stays within the community's own members.
pub(super) fn refill(tx: &mut Tx<'_>, incident_id: &str) {
    let Some(inc) = tx.state.incidents.get(incident_id) else { return };
    let mut wanted = inc.offers_wanted(tx.rules.overbook) as usize;
    if wanted == 0 {
        return;
    }
    let area = area(tx.state, tx.rules, &inc.district_id, inc.grid, inc.level, inc.escalated);
    let ttl_ms = tx.rules.offer_ttl_ms(area.wartime);
    let reaches = tx.rules.reach(inc.level, area.wartime).to_vec();
    for reach in reaches {
        let target = target_of(&tx.state.incidents[incident_id], area);
        let found = matching::find(&tx.state.city, &tx.state.roster, tx.rules, &target, reach, wanted, tx.now);
        for c in found {
            let member_id = tx.state.city.members()[c.member as usize].id.clone();
            // Built again: the offer just emitted changed the incident's `offered`.
            let target = target_of(&tx.state.incidents[incident_id], area);
            let why = matching::why(&tx.state.city, &tx.state.roster, tx.rules, &target, &c, tx.now);
            tx.emit(EventBody::OfferSent {
                offer_id: format!("off-{}", tx.state.offers_sent + 1),
                incident_id: incident_id.to_string(),
                member_id,
                distance_m: (c.distance_m * 10.0).round() / 10.0,
                expires_at: tx.now + ttl_ms,
                whistle_id: None,
                why,
            });
            wanted -= 1;
        }
        if wanted == 0 {
            return;
        }
    }
    // Short of candidates: look again later (soft, recomputed after a restart).
    tx.state.schedule_retry(incident_id, tx.now + tx.rules.retry_s as i64 * 1000);
}

/// Raises the incident one level, whistles the wider reach, and refills.
fn escalate_one(tx: &mut Tx<'_>, incident_id: &str, reason: EscalationReason) -> Result<(), DomainError> {
    let inc = &tx.state.incidents[incident_id];
    let from = inc.level;
    let Some(to) = from.next() else {
        return Err(err(Code::TopLevel, format!("incident {incident_id} is already at level I")));
    };
    let escalate_at = tx.rules.level(to).escalate_after_s.map(|s| tx.now + s as i64 * 1000);
    let wartime = tx.state.wartime(&inc.district_id);
    tx.emit(EventBody::IncidentEscalated { incident_id: incident_id.into(), from, to, reason, escalate_at });
    let reach = tx.rules.reach(to, wartime).iter().map(|r| r.as_str().to_string()).collect();
    tx.emit(EventBody::WhistleBlown { incident_id: incident_id.into(), level: to, reach, reason });
    refill(tx, incident_id);
    Ok(())
}

/// Revokes the incident's open offers.
pub(super) fn close(tx: &mut Tx<'_>, incident_id: &str, revoke: RevokeReason) {
    let inc = &tx.state.incidents[incident_id];
    let open: Vec<(String, String)> = inc
        .offers
        .iter()
        .filter(|o| o.state == OfferState::Offered)
        .map(|o| (o.id.clone(), o.member_id.clone()))
        .collect();
    for (offer_id, member_id) in open {
        tx.emit(EventBody::OfferRevoked { offer_id, incident_id: incident_id.into(), member_id, reason: revoke });
    }
}

/// `POST /v1/incidents/{id}/escalate`: one level up, now.
pub(super) fn escalate(tx: &mut Tx<'_>, actor: &Actor, incident_id: &str) -> Result<Reply, DomainError> {
    let id = visible_incident(tx.state, actor, incident_id)?;
    match tx.state.incidents[&id].status {
        Status::Open => {}
        Status::Filled => {
            return Err(err(Code::IncidentFilled, format!("incident {id} is already filled")));
        }
        _ => return Err(closed(&id)),
    }
    escalate_one(tx, &id, EscalationReason::Manual)?;
    Ok(Reply::Incident(id))
}

/// Resolves or cancels an incident (`how`: `Resolved` or `Cancelled`, with its note or
/// reason): revokes its open offers, then closes it.
pub(super) fn conclude(
    tx: &mut Tx<'_>,
    actor: &Actor,
    incident_id: &str,
    how: RevokeReason,
    text: Option<String>,
) -> Result<Reply, DomainError> {
    let id = visible_incident(tx.state, actor, incident_id)?;
    check_note(text.as_deref())?;
    if tx.state.incidents[&id].status.is_closed() {
        return Err(closed(&id));
    }
    close(tx, &id, how);
    let incident_id = id.clone();
    tx.emit(match how {
        RevokeReason::Resolved => EventBody::IncidentResolved { incident_id, note: text },
        _ => EventBody::IncidentCancelled { incident_id, reason: text },
    });
    Ok(Reply::Incident(id))
}

pub(super) fn decline(
    tx: &mut Tx<'_>,
    actor: &Actor,
    offer_id: &str,
    reason: Option<String>,
) -> Result<Reply, DomainError> {
    check_note(reason.as_deref())?;
    answer(tx, actor, offer_id, Answer::Decline(reason))
}

pub(super) fn closed(id: &str) -> DomainError {
    err(Code::IncidentClosed, format!("incident {id} is already resolved or cancelled"))
}

pub(super) fn visible_incident(state: &State, actor: &Actor, id: &str) -> Result<String, DomainError> {
    match state.incidents.get(id) {
        Some(inc) if scope::incident(actor, inc) => Ok(inc.id.clone()),
        _ => Err(err(Code::UnknownIncident, format!("no incident '{id}' in your scope"))),
    }
}

pub(super) fn raise(tx: &mut Tx<'_>, actor: &Actor, r: RaiseIncident) -> Result<Reply, DomainError> {
    scope::require(actor, scope::Action::Incidents)?;
    let state = &*tx.state;
    if state.city.city().is_none() {
        return Err(err(Code::NoCity, "no city has been imported yet (PUT /v1/city)"));
    }
    if let Some(key) = &r.idempotency_key {
        if key.is_empty() || key.len() > 200 {
            return Err(err(Code::BadIdempotencyKey, "Idempotency-Key must be 1 to 200 characters"));
        }
        if let Some(id) = state.idempotency.get(&format!("{}\n{key}", tx.actor)) {
            return Ok(Reply::Incident(id.clone()));
        }
    }
    let scoped = !scope::city_wide(actor);
    let outside = |what: String| {
        if scoped {
            err(Code::OutsideScope, format!("{what} is not in your area; you may raise incidents only there"))
        } else {
            err(Code::UnknownGrid, format!("{what} is not in any grid of the city"))
        }
    };
    let grid = match (&r.grid_id, r.location) {
        (Some(_), Some(_)) | (None, None) => {
            return Err(err(Code::GridOrLocation, "give exactly one of grid_id or location"));
        }
        (Some(g), None) => *state.city.grid_flat.get(g).ok_or_else(|| outside(format!("grid '{g}'")))?,
        (None, Some(p)) => state.city.grid_at(p).ok_or_else(|| outside(format!("location {},{}", p.lat, p.lng)))?,
    };
    let place = state.city.grid_places[grid as usize];
    if !scope::community(state, actor, place.community) {
        return Err(outside(format!("grid '{}'", state.city.grid_ids[grid as usize])));
    }
    let Some(category) = tx.rules.category(&r.category).cloned() else {
        let known: Vec<&str> = tx.rules.categories.iter().map(|c| c.id.as_str()).collect();
        return Err(err(
            Code::UnknownCategory,
            format!("category '{}' is not one of {}", r.category, known.join(", ")),
        ));
    };
    let difficulty = r.difficulty.unwrap_or(category.difficulty);
    if difficulty < category.difficulty || difficulty > 5 {
        return Err(err(
            Code::DifficultyOutOfRange,
            format!("difficulty {difficulty} is not between the category's {} and 5", category.difficulty),
        ));
    }
    if r.headcount == 0 || r.headcount > tx.rules.max_headcount {
        return Err(err(
            Code::HeadcountOutOfRange,
            format!("headcount {} is not between 1 and {}", r.headcount, tx.rules.max_headcount),
        ));
    }
    if r.skills.len() > 16 {
        return Err(err(Code::TooManySkills, "an incident names at most 16 skills"));
    }
    let mut skills = Vec::with_capacity(r.skills.len());
    for s in r.skills {
        if !tx.rules.has_skill(&s) {
            return Err(err(Code::UnknownSkill, format!("skill '{s}' is not in the catalog (GET /v1/catalog)")));
        }
        if !skills.contains(&s) {
            skills.push(s);
        }
    }
    check_note(r.note.as_deref())?;

    let incident_id = format!("inc-{:06}", state.incidents_raised + 1);
    let location = r.location.unwrap_or(state.city.grid_centers[grid as usize]);
    let escalate_at = tx.rules.level(r.level).escalate_after_s.map(|s| tx.now + s as i64 * 1000);
    tx.emit(EventBody::IncidentRaised {
        incident_id: incident_id.clone(),
        community_id: state.city.community(place.community).id.clone(),
        grid_id: state.city.grid_ids[grid as usize].clone(),
        location,
        category: r.category,
        level: r.level,
        headcount: r.headcount,
        skills,
        note: r.note,
        idempotency_key: r.idempotency_key,
        escalate_at,
        difficulty,
        class: TaskClass::of(difficulty, tx.rules),
    });
    refill(tx, &incident_id);
    Ok(Reply::Incident(incident_id))
}

/// The members a call raised now at the centre of `grid` (this category, level and
/// headcount; no skills) would be offered first, best first, as `refill` would choose them:
/// read-only, nothing is emitted. The demo picks the member it prints among these, so the
/// README's walkthrough (staff raise in the printed grid, the printed member accepts) works.
pub fn first_offers(
    state: &State,
    rules: &Rules,
    grid: u32,
    category: &str,
    level: Level,
    headcount: u32,
    now: Ts,
) -> Vec<u32> {
    let Some(cat) = rules.category(category) else { return Vec::new() };
    let Some(&location) = state.city.grid_centers.get(grid as usize) else { return Vec::new() };
    let district = state.city.district_id_of_community(state.city.grid_places[grid as usize].community);
    let area = area(state, rules, district, grid, level, false);
    let mut wanted = (headcount as f64 * rules.overbook).ceil() as usize;
    let mut offered = std::collections::HashSet::new();
    let mut out = Vec::new();
    for &reach in rules.reach(level, area.wartime) {
        let target = Target {
            location,
            grid,
            skills: &[],
            offered: &offered,
            difficulty: cat.difficulty,
            class: TaskClass::of(cat.difficulty, rules),
            own_community: area.own_community,
            wartime: area.wartime,
        };
        let found = matching::find(&state.city, &state.roster, rules, &target, reach, wanted, now);
        wanted -= found.len().min(wanted);
        for c in found {
            offered.insert(c.member);
            out.push(c.member);
        }
        if wanted == 0 {
            break;
        }
    }
    out
}

pub(super) fn answer(tx: &mut Tx<'_>, actor: &Actor, offer_id: &str, answer: Answer) -> Result<Reply, DomainError> {
    let idx = acting_member(tx.state, actor)?;
    let member_id = tx.state.city.members()[idx as usize].id.clone();
    let unknown = || err(Code::UnknownOffer, format!("you have no offer '{offer_id}'"));
    let incident_id = tx.state.offer_index.get(offer_id).cloned().ok_or_else(unknown)?;
    let inc = &tx.state.incidents[&incident_id];
    let offer = inc.offer(offer_id).filter(|o| o.member_id == member_id).ok_or_else(unknown)?;
    let ended = |state: OfferState| {
        err(
            match state {
                OfferState::Expired => Code::OfferExpired,
                OfferState::Revoked => Code::OfferRevoked,
                OfferState::Declined => Code::OfferDeclined,
                _ => Code::OfferNotOpen,
            },
            format!("offer {offer_id} is {}", state.as_str()),
        )
    };
    let expired_now = offer.state == OfferState::Offered && offer.expires_at <= tx.now;
    match answer {
        Answer::Accept => match offer.state {
            OfferState::Accepted | OfferState::Arrived => {}
            OfferState::Offered if expired_now => return Err(ended(OfferState::Expired)),
            OfferState::Offered => {
                tx.emit(EventBody::OfferAccepted {
                    offer_id: offer_id.into(),
                    incident_id: incident_id.clone(),
                    member_id,
                    answer_id: tx.answer_id.clone(),
                });
                let inc = &tx.state.incidents[&incident_id];
                if inc.accepted() >= inc.headcount {
                    tx.emit(EventBody::IncidentFilled { incident_id: incident_id.clone() });
                    close(tx, &incident_id, RevokeReason::Filled);
                }
            }
            s => return Err(ended(s)),
        },
        Answer::Decline(reason) => match offer.state {
            OfferState::Declined | OfferState::Expired | OfferState::Revoked => {}
            OfferState::Offered => {
                tx.emit(EventBody::OfferDeclined {
                    offer_id: offer_id.into(),
                    incident_id: incident_id.clone(),
                    member_id,
                    reason,
                    answer_id: tx.answer_id.clone(),
                });
                refill(tx, &incident_id);
            }
            OfferState::Accepted | OfferState::Arrived => {
                return Err(err(
                    Code::OfferAccepted,
                    format!("offer {offer_id} is already accepted; ask the community staff to release you"),
                ));
            }
        },
        Answer::Arrive(position) => match offer.state {
            OfferState::Arrived => {}
            OfferState::Accepted if inc.status.is_closed() => return Err(closed(&incident_id)),
            OfferState::Accepted => {
                let distance_m = position.distance_m(inc.location);
                if distance_m > tx.rules.geofence_m {
                    return Err(err(
                        Code::OutsideGeofence,
                        format!(
                            "you are {:.0} m from the incident; arrival counts within {:.0} m",
                            distance_m, tx.rules.geofence_m
                        ),
                    ));
                }
                let distance_m = (distance_m * 10.0).round() / 10.0;
                tx.emit(EventBody::MemberArrived {
                    offer_id: offer_id.into(),
                    incident_id,
                    member_id,
                    position,
                    distance_m,
                    answer_id: tx.answer_id.clone(),
                });
                tx.state.roster.move_to(idx, position);
            }
            OfferState::Offered => {
                return Err(err(Code::NotAccepted, format!("accept offer {offer_id} before arriving")));
            }
            s => return Err(ended(s)),
        },
    }
    Ok(Reply::Done)
}

/// An offer's expiry came due (`tick`): expires it if still open. Returns the incident to
/// refill, once all due deadlines have fired.
pub(super) fn offer_deadline(tx: &mut Tx<'_>, offer_id: &str, at: Ts) -> Option<String> {
    let incident_id = tx.state.offer_index.get(offer_id).cloned()?;
    let o = tx.state.incidents[&incident_id].offer(offer_id)?;
    if o.state == OfferState::Offered && o.expires_at <= at {
        let member_id = o.member_id.clone();
        tx.emit(EventBody::OfferExpired { offer_id: offer_id.into(), incident_id: incident_id.clone(), member_id });
        return Some(incident_id);
    }
    None
}

/// An incident's escalation came due (`tick`): one level up if it is still open and due.
pub(super) fn escalation_deadline(tx: &mut Tx<'_>, incident_id: &str, at: Ts) {
    let Some(inc) = tx.state.incidents.get(incident_id) else { return };
    if inc.status == Status::Open && inc.escalate_at == Some(at) && inc.level.next().is_some() {
        escalate_one(tx, incident_id, EscalationReason::Timeout).expect("level checked");
    }
}

/// Folds an incident's event into the state; its frames go to `frames`.
pub(super) fn apply(state: &mut State, event: &Event, frames: &mut Vec<Frame>) {
    let at = event.at;
    match &event.body {
        EventBody::IncidentRaised {
            incident_id,
            community_id,
            grid_id,
            location,
            category,
            level,
            headcount,
            skills,
            note,
            idempotency_key,
            escalate_at,
            difficulty,
            class,
        } => {
            let grid = state.city.grid_flat[grid_id];
            let district_id = state.city.city().expect("a city").districts
                [state.city.grid_places[grid as usize].district as usize]
                .id
                .clone();
            let inc = Incident {
                id: incident_id.clone(),
                community_id: community_id.clone(),
                district_id,
                grid_id: grid_id.clone(),
                grid,
                location: *location,
                category: category.clone(),
                level: *level,
                headcount: *headcount,
                skills: skills.clone(),
                note: note.clone(),
                difficulty: *difficulty,
                class: *class,
                escalated: false,
                whistles: Vec::new(),
                status: Status::Open,
                raised_at: at,
                raised_by: event.actor.clone(),
                escalate_at: *escalate_at,
                filled_at: None,
                closed_at: None,
                offers: Vec::new(),
                offered: Default::default(),
            };
            state.incidents_raised += 1;
            if let Some(key) = idempotency_key {
                state.idempotency.insert(format!("{}\n{key}", event.actor), incident_id.clone());
            }
            if let Some(t) = escalate_at {
                state.deadlines.insert((*t, Deadline::Escalation(incident_id.clone())));
            }
            state.incidents.insert(incident_id.clone(), inc);
            scope_frames(state, frames, incident_id, "incident.raised", &event.body, at);
        }
        EventBody::OfferSent { offer_id, incident_id, member_id, distance_m, expires_at, whistle_id, why } => {
            let idx = state.city.member_by_id[member_id];
            let inc = &state.incidents[incident_id];
            let data = json!({
                "offer_id": offer_id,
                "incident_id": incident_id,
                "category": inc.category,
                "level": inc.level,
                "location": inc.location,
                "distance_m": distance_m,
                "expires_at": rfc3339(*expires_at),
                "headcount": inc.headcount,
                                "skills": inc.skills,
                "note": inc.note,
                                "difficulty": inc.difficulty,
                "whistle": whistle_id.is_some(),
                "why": why,
            });
            let frame_seq = state.push_frame(frames, stream::member(member_id), "offer", data);
            let inc = state.incidents.get_mut(incident_id).expect("offer for a known incident");
            inc.offers.push(Offer {
                id: offer_id.clone(),
                member_id: member_id.clone(),
                member: idx,
                state: OfferState::Offered,
                sent_at: at,
                expires_at: *expires_at,
                distance_m: *distance_m,
                frame_seq,
                whistle_id: whistle_id.clone(),
                assignment_seq: None,
                answered_at: None,
            });
            inc.offered.insert(idx);
            state.roster.edit(idx, |m| {
                m.engaged = Some(offer_id.clone());
                m.ledger.offered += 1;
            });
            state.offer_index.insert(offer_id.clone(), incident_id.clone());
            state.offers_sent += 1;
            state.deadlines.insert((*expires_at, Deadline::OfferExpiry(offer_id.clone())));
            scope_frames(state, frames, incident_id, "incident.offer_sent", &event.body, at);
        }
        EventBody::OfferAccepted { offer_id, incident_id, member_id, .. } => {
            let idx = set_offer_state(state, incident_id, offer_id, OfferState::Accepted, at);
            let inc = state.incidents.get_mut(incident_id).expect("known incident");
            let unit = state.city.member_unit[idx as usize];
            for w in &mut inc.whistles {
                for u in w.units.iter_mut().filter(|u| u.0 == unit) {
                    u.2 = true;
                }
            }
            let (difficulty, class) = (inc.difficulty, inc.class);
            state.roster.edit(idx, |rt| {
                rt.last_duty_at = Some(at);
                rt.duties += 1;
                rt.work.accept(difficulty, class, at);
                rt.work.start_duty(at);
                rt.ledger.accepted += 1;
            });
            let data = json!({"offer_id": offer_id, "incident_id": incident_id});
            let seq = state.push_frame(frames, stream::member(member_id), "assignment", data);
            let inc = state.incidents.get_mut(incident_id).expect("known incident");
            inc.offer_mut(offer_id).expect("known offer").assignment_seq = Some(seq);
            scope_frames(state, frames, incident_id, "incident.offer_accepted", &event.body, at);
        }
        EventBody::OfferDeclined { offer_id, incident_id, .. } => {
            let idx = set_offer_state(state, incident_id, offer_id, OfferState::Declined, at);
            release(state, idx, offer_id);
            scope_frames(state, frames, incident_id, "incident.offer_declined", &event.body, at);
        }
        EventBody::OfferExpired { offer_id, incident_id, member_id } => {
            let idx = set_offer_state(state, incident_id, offer_id, OfferState::Expired, at);
            release(state, idx, offer_id);
            let data =
                json!({"offer_id": offer_id, "incident_id": incident_id, "reason": RevokeReason::Expired.as_str()});
            state.push_frame(frames, stream::member(member_id), "offer.revoked", data);
            scope_frames(state, frames, incident_id, "incident.offer_expired", &event.body, at);
        }
        EventBody::OfferRevoked { offer_id, incident_id, member_id, reason } => {
            let idx = set_offer_state(state, incident_id, offer_id, OfferState::Revoked, at);
            release(state, idx, offer_id);
            let data = json!({"offer_id": offer_id, "incident_id": incident_id, "reason": reason.as_str()});
            state.push_frame(frames, stream::member(member_id), "offer.revoked", data);
            scope_frames(state, frames, incident_id, "incident.offer_revoked", &event.body, at);
        }
        EventBody::MemberArrived { offer_id, incident_id, member_id, distance_m, position, .. } => {
            let idx = set_offer_state(state, incident_id, offer_id, OfferState::Arrived, at);
            state.roster.move_to(idx, *position);
            state.roster.members[idx as usize].ledger.arrived += 1;
            let data = json!({"offer_id": offer_id, "incident_id": incident_id, "distance_m": distance_m});
            state.push_frame(frames, stream::member(member_id), "arrival", data);
            scope_frames(state, frames, incident_id, "incident.member_arrived", &event.body, at);
        }
        EventBody::IncidentFilled { incident_id } => {
            let inc = state.incidents.get_mut(incident_id).expect("known incident");
            inc.status = Status::Filled;
            inc.filled_at = Some(at);
            inc.escalate_at = None;
            scope_frames(state, frames, incident_id, "incident.filled", &event.body, at);
        }
        EventBody::IncidentEscalated { incident_id, to, escalate_at, .. } => {
            let inc = state.incidents.get_mut(incident_id).expect("known incident");
            inc.level = *to;
            inc.escalated = true;
            inc.escalate_at = *escalate_at;
            if let Some(t) = escalate_at {
                state.deadlines.insert((*t, Deadline::Escalation(incident_id.clone())));
            }
            scope_frames(state, frames, incident_id, "incident.escalated", &event.body, at);
        }
        EventBody::WhistleBlown { incident_id, .. } => {
            scope_frames(state, frames, incident_id, "incident.whistle", &event.body, at);
        }
        EventBody::IncidentResolved { incident_id, .. } | EventBody::IncidentCancelled { incident_id, .. } => {
            let (status, kind, reason) = match &event.body {
                EventBody::IncidentResolved { .. } => (Status::Resolved, "incident.resolved", "resolved"),
                _ => (Status::Cancelled, "incident.cancelled", "cancelled"),
            };
            let inc = state.incidents.get_mut(incident_id).expect("known incident");
            inc.status = status;
            inc.closed_at = Some(at);
            inc.escalate_at = None;
            let working: Vec<(u32, String, String)> = inc
                .offers
                .iter()
                .filter(|o| matches!(o.state, OfferState::Accepted | OfferState::Arrived))
                .map(|o| (o.member, o.id.clone(), o.member_id.clone()))
                .collect();
            for (idx, offer_id, member_id) in working {
                release(state, idx, &offer_id);
                end_duty_unless_mobilized(state, idx, at);
                let data = json!({"offer_id": offer_id, "incident_id": incident_id, "reason": reason});
                state.push_frame(frames, stream::member(&member_id), "assignment.closed", data);
            }
            scope_frames(state, frames, incident_id, kind, &event.body, at);
        }
        _ => unreachable!("dispatcher::apply sends only incident events here"),
    }
}

fn set_offer_state(state: &mut State, incident_id: &str, offer_id: &str, to: OfferState, at: Ts) -> u32 {
    let inc = state.incidents.get_mut(incident_id).expect("known incident");
    let offer = inc.offer_mut(offer_id).expect("known offer");
    offer.state = to;
    if offer.answered_at.is_none() {
        offer.answered_at = Some(at);
    }
    offer.member
}

/// Frees a member held by this offer (and only by this one).
fn release(state: &mut State, idx: u32, offer_id: &str) {
    state.roster.edit(idx, |rt| {
        if rt.engaged.as_deref() == Some(offer_id) {
            rt.engaged = None;
        }
    });
}

/// The incident's event, pushed to its community's, district's and the city's streams.
pub(super) fn scope_frames(
    state: &mut State,
    frames: &mut Vec<Frame>,
    incident_id: &str,
    kind: &'static str,
    body: &EventBody,
    at: Ts,
) {
    let inc = &state.incidents[incident_id];
    let mut data = serde_json::to_value(body).expect("events serialize");
    if let Value::Object(map) = &mut data {
        map.remove("type");
        // The member's client's own id for an answer is not the scope's business.
        map.remove("answer_id");
        map.insert("incident".into(), summary(inc));
        map.insert("at".into(), Value::String(rfc3339(at)));
        if let Some(Value::Number(t)) = map.get("expires_at").cloned() {
            map.insert("expires_at".into(), Value::String(rfc3339(t.as_i64().unwrap_or_default())));
        }
        if let Some(Value::Number(t)) = map.get("escalate_at").cloned() {
            map.insert("escalate_at".into(), Value::String(rfc3339(t.as_i64().unwrap_or_default())));
        }
    }
    let data = Arc::new(data);
    for s in scope::incident_streams(inc) {
        state.push_frame(frames, s, kind, data.clone());
    }
}
