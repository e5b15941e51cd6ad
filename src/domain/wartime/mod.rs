//! Wartime operation: the 平战转换 switch, mass mobilization of assault teams, whistles
//! that oblige units to report (吹哨报到), and transfers between communities (力量统筹).
//!
//! The handlers validate, then emit through the dispatcher's `Tx`; `apply` folds their
//! events into the state and derives the frames, as the dispatcher does for incidents.

use std::collections::{BTreeSet, HashSet};

use crate::domain::balance;
pub use crate::domain::command::{MobilizeOrder, WhistleTarget};

use crate::domain::command::{Actor, Reply, Tx, acting_member, check_note};
use crate::domain::errors::{Code, DomainError, ErrorKind, err, err_as};
use crate::domain::event::{EventBody, Mode, TeamOrder, Ts};
use crate::domain::geo::Position;
use crate::domain::incident::{OfferState, Status};
use crate::domain::incidents::{self, closed};
use crate::domain::mobilization::{Mobilization, OrderState};
use crate::domain::org::TeamKind;
use crate::domain::scope::{self, Action};
use crate::domain::state::State;
use crate::domain::workload::TaskClass;

mod apply;
pub(super) use apply::apply;

fn need_city(state: &State) -> Result<(), DomainError> {
    match state.city.city() {
        Some(_) => Ok(()),
        None => Err(err(Code::NoCity, "no city has been imported yet (PUT /v1/city)")),
    }
}

pub(super) fn switch_mode(
    tx: &mut Tx<'_>,
    actor: &Actor,
    district_id: Option<String>,
    mode: Mode,
    reason: String,
) -> Result<Reply, DomainError> {
    scope::require(actor, Action::SwitchMode)?;
    if reason.trim().is_empty() {
        return Err(err(Code::ReasonRequired, "a mode switch needs a reason"));
    }
    check_note(Some(&reason))?;
    let current = match &district_id {
        None => {
            if !scope::city_wide(actor) {
                return Err(err(Code::CityCommandOnly, "only city-wide command switches the city"));
            }
            tx.state.city_mode
        }
        Some(d) => {
            need_city(tx.state)?;
            if !tx.state.city.district_by_id.contains_key(d) || !scope::district(actor, d) {
                return Err(err_as(
                    ErrorKind::NotFound,
                    Code::UnknownDistrict,
                    format!("no district '{d}' in your scope"),
                ));
            }
            if tx.state.wartime_districts.contains(d) { Mode::Wartime } else { Mode::Peacetime }
        }
    };
    if current == mode {
        let what = district_id.as_deref().map_or("the city".to_string(), |d| format!("district {d}"));
        return Err(err(Code::AlreadyInMode, format!("{what} is already in {}", mode.as_str())));
    }
    tx.emit(EventBody::ModeSwitched { district_id: district_id.clone(), mode, reason: reason.clone() });
    if mode == Mode::Peacetime {
        // Standing down releases the members of mobilizations wholly within the scope.
        let done: Vec<String> = tx
            .state
            .mobilizations
            .values()
            .filter(|m| m.is_open())
            .filter(|m| district_id.as_ref().is_none_or(|d| wholly_in(m, d)))
            .filter(|m| m.districts.iter().all(|d| !tx.state.wartime(d)))
            .map(|m| m.id.clone())
            .collect();
        for id in done {
            tx.emit(EventBody::MobilizationClosed { mobilization_id: id, reason: "stand_down".into() });
        }
    } else {
        // New reach, shorter TTLs and the assault teams on call: look again at once.
        let open: Vec<String> = tx
            .state
            .incidents
            .values()
            .filter(|i| i.status == Status::Open && tx.state.wartime(&i.district_id))
            .map(|i| i.id.clone())
            .collect();
        for id in open {
            incidents::refill(tx, &id);
        }
    }
    Ok(Reply::Done)
}

pub(super) fn mobilize(tx: &mut Tx<'_>, actor: &Actor, o: MobilizeOrder) -> Result<Reply, DomainError> {
    scope::require(actor, Action::Mobilize)?;
    need_city(tx.state)?;
    let state = &*tx.state;
    let city = state.city.city().expect("checked");
    let idx = &tx.state.city;
    let selectors = [!o.teams.is_empty(), o.unit_id.is_some(), o.district_id.is_some(), o.all_assault];
    if selectors.iter().filter(|s| **s).count() != 1 {
        return Err(err(
            Code::OneSelector,
            "name the teams by exactly one of teams, unit_id, district_id or all_assault",
        ));
    }
    // Teams, units, districts and communities outside the caller's scope are unknown to it:
    // a district command mobilizes only teams paired in its district.
    let assault = |t: &u32| city.teams[*t as usize].kind == TeamKind::Assault;
    let commanded = |t: &u32| scope::team(state, actor, *t);
    let mut teams: Vec<u32> = if !o.teams.is_empty() {
        let known = |t: &String| idx.team_by_id.get(t).is_some_and(&commanded);
        let unknown: Vec<&str> = o.teams.iter().filter(|t| !known(t)).map(String::as_str).collect();
        if !unknown.is_empty() {
            return Err(err(Code::UnknownTeam, format!("unknown teams: {}", unknown.join(", "))));
        }
        o.teams.iter().map(|t| idx.team_by_id[t]).collect()
    } else if let Some(u) = &o.unit_id {
        if !idx.unit_by_id.get(u).is_some_and(|&ui| scope::unit(state, actor, ui)) {
            return Err(err_as(ErrorKind::Invalid, Code::UnknownUnit, format!("unknown unit '{u}'")));
        }
        (0..city.teams.len() as u32)
            .filter(|t| &city.teams[*t as usize].unit_id == u && assault(t) && commanded(t))
            .collect()
    } else if let Some(d) = &o.district_id {
        let Some(&di) = idx.district_by_id.get(d).filter(|_| scope::district(actor, d)) else {
            return Err(err_as(ErrorKind::Invalid, Code::UnknownDistrict, format!("unknown district '{d}'")));
        };
        (0..city.teams.len() as u32)
            .filter(|t| assault(t) && idx.district_of_community(idx.team_community[*t as usize]) == di)
            .collect()
    } else {
        (0..city.teams.len() as u32).filter(|t| assault(t) && commanded(t)).collect()
    };
    teams.sort_unstable();
    teams.dedup();
    if teams.is_empty() {
        return Err(err(Code::NoTeams, "that selection names no team"));
    }
    if o.community_id.is_some() && o.site.is_some() {
        return Err(err(Code::OneDestination, "give at most one of community_id or site"));
    }
    let target =
        match &o.community_id {
            Some(c) => Some(*idx.community_by_id.get(c).filter(|&&ci| scope::community(state, actor, ci)).ok_or_else(
                || err_as(ErrorKind::Invalid, Code::UnknownCommunity, format!("unknown community '{c}'")),
            )?),
            None => None,
        };
    if let Some(site) = &o.site
        && (site.name.trim().is_empty() || site.name.chars().count() > 200)
    {
        return Err(err(Code::InvalidSite, "a site needs a name of 1 to 200 characters"));
    }
    let deadline_s = o.deadline_s.unwrap_or(tx.rules.mobilization.default_deadline_s);
    if deadline_s == 0 || deadline_s > tx.rules.mobilization.max_deadline_s {
        return Err(err(
            Code::DeadlineOutOfRange,
            format!("deadline_s must be between 1 and {}", tx.rules.mobilization.max_deadline_s),
        ));
    }
    check_note(o.note.as_deref())?;
    let orders: Vec<TeamOrder> = teams
        .iter()
        .map(|&t| {
            let community =
                if o.site.is_some() { None } else { Some(target.unwrap_or(idx.team_community[t as usize])) };
            TeamOrder {
                team_id: city.teams[t as usize].id.clone(),
                community_id: community.map(|c| city.communities[c as usize].id.clone()),
            }
        })
        .collect();
    // A site is a place, not an id: outside the caller's area it is refused as such.
    if let Some(site) = &o.site {
        let inside = match idx.grid_at(site.location) {
            Some(g) => scope::community(state, actor, idx.grid_places[g as usize].community),
            None => scope::city_wide(actor),
        };
        if !inside {
            return Err(err(Code::OutsideScope, "a district command mobilizes only to places in its district"));
        }
    }
    let id = format!("mob-{}", tx.state.mobilizations_ordered + 1);
    let deadline = tx.now + deadline_s as i64 * 1000;
    tx.emit(EventBody::MobilizationOrdered {
        mobilization_id: id.clone(),
        teams: orders,
        site: o.site,
        deadline,
        note: o.note,
    });
    Ok(Reply::Mobilization(id))
}

/// Does a mobilization report only into this district? (One to a site outside every
/// district belongs to the city.)
fn wholly_in(m: &Mobilization, district: &str) -> bool {
    !m.districts.is_empty() && m.districts.iter().all(|x| x == district)
}

/// The mobilization and the acting member's order in it.
fn member_order(state: &State, actor: &Actor, id: &str) -> Result<(u32, usize), DomainError> {
    let idx = acting_member(state, actor)?;
    let unknown = || err(Code::UnknownMobilization, format!("you have no order in mobilization '{id}'"));
    let m = state.mobilizations.get(id).ok_or_else(unknown)?;
    let at = *m.by_member.get(&idx).ok_or_else(unknown)?;
    if !m.is_open() {
        return Err(err(Code::MobilizationClosed, format!("mobilization {id} is closed")));
    }
    Ok((idx, at))
}

pub(super) fn acknowledge(tx: &mut Tx<'_>, actor: &Actor, id: &str) -> Result<Reply, DomainError> {
    let (idx, at) = member_order(tx.state, actor, id)?;
    if tx.state.mobilizations[id].orders[at].state == OrderState::Ordered {
        let member_id = tx.state.city.members()[idx as usize].id.clone();
        tx.emit(EventBody::MobilizationAcknowledged {
            mobilization_id: id.into(),
            member_id,
            batched: true,
            answer_id: tx.answer_id.clone(),
        });
    }
    Ok(Reply::Done)
}

/// Closes the engine's batch: a `MobilizationTallied` for each mobilization answered in it,
/// so its progress frames go out once per batch, not once per answer.
/// Harmless from anyone (it only publishes what is pending), like `Tick`.
pub(super) fn tally(tx: &mut Tx<'_>) -> Reply {
    for mobilization_id in tx.state.untallied.clone() {
        tx.emit(EventBody::MobilizationTallied { mobilization_id });
    }
    Reply::Done
}

pub(super) fn report(tx: &mut Tx<'_>, actor: &Actor, id: &str, position: Position) -> Result<Reply, DomainError> {
    let (idx, at) = member_order(tx.state, actor, id)?;
    let m = &tx.state.mobilizations[id];
    let order = &m.orders[at];
    if order.state == OrderState::Reported {
        return Ok(Reply::Done);
    }
    let radius = tx.rules.mobilization.report_geofence_m;
    let (distance_m, inside) = match (order.community, &m.site) {
        (Some(c), _) => {
            let d = position.distance_m(tx.state.city.community_centers[c as usize]);
            let in_grids =
                tx.state.city.grid_at(position).is_some_and(|g| tx.state.city.grid_places[g as usize].community == c);
            (d, in_grids || d <= radius)
        }
        (None, Some(site)) => {
            let d = position.distance_m(site.location);
            (d, d <= radius)
        }
        (None, None) => unreachable!("an order reports to a community or to the site"),
    };
    if !inside {
        return Err(err(
            Code::OutsideGeofence,
            format!(
                "you are {distance_m:.0} m from where you report; a report counts within {radius:.0} m or inside the community's grids"
            ),
        ));
    }
    let member_id = tx.state.city.members()[idx as usize].id.clone();
    let distance_m = (distance_m * 10.0).round() / 10.0;
    tx.emit(EventBody::MobilizationReported {
        mobilization_id: id.into(),
        member_id,
        position,
        distance_m,
        batched: true,
        answer_id: tx.answer_id.clone(),
    });
    Ok(Reply::Done)
}

pub(super) fn close_mobilization(
    tx: &mut Tx<'_>,
    actor: &Actor,
    id: &str,
    reason: Option<String>,
) -> Result<Reply, DomainError> {
    scope::require(actor, Action::Mobilize)?;
    check_note(reason.as_deref())?;
    let m = tx
        .state
        .mobilizations
        .get(id)
        .filter(|m| scope::closes_mobilization(actor, m))
        .ok_or_else(|| err(Code::UnknownMobilization, format!("no mobilization '{id}' in your scope")))?;
    if !m.is_open() {
        return Err(err(Code::MobilizationClosed, format!("mobilization {id} is already closed")));
    }
    tx.emit(EventBody::MobilizationClosed {
        mobilization_id: id.into(),
        reason: reason.unwrap_or_else(|| "closed".into()),
    });
    Ok(Reply::Mobilization(id.into()))
}

pub(super) fn mobilization_deadline(tx: &mut Tx<'_>, id: &str, at: Ts) {
    if tx.state.mobilizations.get(id).is_some_and(|m| m.is_open() && !m.deadline_passed && m.deadline == at) {
        tx.emit(EventBody::MobilizationDeadlinePassed { mobilization_id: id.into() });
    }
}

pub(super) fn whistle(
    tx: &mut Tx<'_>,
    actor: &Actor,
    incident_id: &str,
    to: WhistleTarget,
) -> Result<Reply, DomainError> {
    let inc = &tx.state.incidents[incident_id];
    match inc.status {
        Status::Open => {}
        Status::Filled => {
            return Err(err(Code::IncidentFilled, format!("incident {incident_id} is already filled")));
        }
        _ => return Err(closed(incident_id)),
    }
    let city = tx.state.city.city().expect("an incident implies a city");
    let idx = &tx.state.city;
    let community = idx.grid_places[inc.grid as usize].community;
    let street = idx.grid_places[inc.grid as usize].street;
    let paired_units = |keep: &dyn Fn(u32) -> bool| -> Vec<u32> {
        let set: BTreeSet<u32> = (0..city.teams.len())
            .filter(|&t| keep(idx.team_community[t]))
            .map(|t| idx.unit_by_id[&city.teams[t].unit_id])
            .collect();
        set.into_iter().collect()
    };
    let units: Vec<u32> = match to {
        WhistleTarget::PairedUnits => paired_units(&|c| c == community),
        WhistleTarget::StreetUnits => {
            let street_id = &city.streets[street as usize].id;
            paired_units(&|c| &city.communities[c as usize].street_id == street_id)
        }
        WhistleTarget::Units(ids) => {
            // Named units: those serving the caller's community or district (city: any).
            let known = |u: &String| idx.unit_by_id.get(u).is_some_and(|&ui| scope::unit(tx.state, actor, ui));
            let unknown: Vec<&str> = ids.iter().filter(|u| !known(u)).map(String::as_str).collect();
            if !unknown.is_empty() {
                return Err(err_as(
                    ErrorKind::Invalid,
                    Code::UnknownUnit,
                    format!("unknown units: {}", unknown.join(", ")),
                ));
            }
            let set: BTreeSet<u32> = ids.iter().map(|u| idx.unit_by_id[u]).collect();
            set.into_iter().collect()
        }
    };
    if units.is_empty() {
        return Err(err(Code::NoUnits, "no unit answers that whistle (no team is paired there)"));
    }
    let whistle_id = format!("wh-{}", tx.state.whistles_blown + 1);
    let unit_ids: Vec<String> = units.iter().map(|&u| city.units[u as usize].id.clone()).collect();
    let deadline = tx.now + tx.rules.mobilization.whistle_deadline_s as i64 * 1000;
    tx.emit(EventBody::UnitsWhistled {
        incident_id: incident_id.into(),
        whistle_id: whistle_id.clone(),
        units: unit_ids,
        deadline,
    });

    // Every available member of the whistled units is offered the incident.
    let wanted: HashSet<u32> = units.into_iter().collect();
    let inc = &tx.state.incidents[incident_id];
    let wartime = tx.state.wartime(&inc.district_id);
    let location = inc.location;
    let picks: Vec<(String, f64)> = (0..tx.state.roster.members.len() as u32)
        .filter(|&m| wanted.contains(&tx.state.city.member_unit[m as usize]))
        .filter(|&m| tx.state.roster.available(m, tx.rules, tx.now) && !inc.offered.contains(&m))
        .filter(|&m| {
            inc.class != TaskClass::Easy || !tx.state.roster.members[m as usize].work.easy_capped(tx.now, tx.rules)
        })
        .map(|m| {
            let d = tx.state.roster.members[m as usize].position.distance_m(location);
            (tx.state.city.members()[m as usize].id.clone(), (d * 10.0).round() / 10.0)
        })
        .collect();
    for (member_id, distance_m) in picks {
        tx.emit(EventBody::OfferSent {
            offer_id: format!("off-{}", tx.state.offers_sent + 1),
            incident_id: incident_id.into(),
            member_id,
            distance_m,
            expires_at: tx.now + tx.rules.offer_ttl_ms(wartime),
            whistle_id: Some(whistle_id.clone()),
            why: vec!["whistle".into()],
        });
    }
    Ok(Reply::Incident(incident_id.into()))
}

pub(super) fn whistle_deadline(tx: &mut Tx<'_>, incident_id: &str, whistle_id: &str) {
    let Some(inc) = tx.state.incidents.get(incident_id) else { return };
    if inc.status.is_closed() {
        return;
    }
    let Some(w) = inc.whistles.iter().find(|w| w.id == whistle_id && !w.overdue) else { return };
    let missing: Vec<String> = w.units.iter().filter(|u| !u.2).map(|u| u.1.clone()).collect();
    if !missing.is_empty() {
        tx.emit(EventBody::WhistleOverdue {
            incident_id: incident_id.into(),
            whistle_id: whistle_id.into(),
            units: missing,
        });
    }
}

pub(super) fn transfer(
    tx: &mut Tx<'_>,
    actor: &Actor,
    from: &str,
    to: &str,
    members: Vec<String>,
) -> Result<Reply, DomainError> {
    scope::require(actor, Action::ApplyTransfer)?;
    need_city(tx.state)?;
    let idx = &tx.state.city;
    let find = |c: &str| {
        idx.community_by_id.get(c).copied().filter(|&ci| scope::community(tx.state, actor, ci)).ok_or_else(|| {
            err_as(ErrorKind::NotFound, Code::UnknownCommunity, format!("no community '{c}' in your scope"))
        })
    };
    let (fi, ti) = (find(from)?, find(to)?);
    if fi == ti || members.is_empty() {
        return Err(err(Code::InvalidTransfer, "a transfer moves at least one member between two communities"));
    }
    let stale = |why: String| err(Code::StaleProposal, format!("{why}; fetch GET /v1/balance again"));
    let rows = balance::balances(tx.state, tx.rules, tx.now);
    let (bf, bt) = (&rows[fi as usize], &rows[ti as usize]);
    if !(bt.wartime && bf.wartime) {
        return Err(err(
            Code::NotWartime,
            format!("{from} and {to} must both be in wartime; transfers balance wartime deficits"),
        ));
    }
    let mut seen = HashSet::new();
    for m in &members {
        let Some(mi) = idx.member_by_id.get(m).copied() else {
            return Err(stale(format!("member {m} is unknown")));
        };
        if !seen.insert(mi) || tx.state.roster.home(mi) != fi || !tx.state.roster.available(mi, tx.rules, tx.now) {
            return Err(stale(format!("member {m} is not available in {from}")));
        }
    }
    let n = members.len() as i64;
    if bf.balance < n {
        return Err(stale(format!("{from} has a surplus of {}, not {n}", bf.balance.max(0))));
    }
    if -bt.balance < n {
        return Err(stale(format!("{to} needs {}, not {n}", (-bt.balance).max(0))));
    }
    tx.emit(EventBody::MembersTransferred { from: from.into(), to: to.into(), members });
    Ok(Reply::Done)
}

/// Assault-team members are on call while wartime holds where their team is paired.
pub(super) fn recompute_forced(state: &mut State) {
    for i in 0..state.roster.members.len() {
        let forced = state.city.is_assault(i as u32)
            && state.city.member_paired_community[i]
                .is_some_and(|c| state.wartime(state.city.district_id_of_community(c)));
        state.roster.edit(i as u32, |m| m.forced = forced);
    }
}

/// Is the member working an accepted task?
fn on_assignment(state: &State, idx: u32) -> bool {
    let Some(offer) = &state.roster.members[idx as usize].engaged else { return false };
    state
        .offer_index
        .get(offer)
        .and_then(|i| state.incidents.get(i))
        .and_then(|i| i.offer(offer))
        .is_some_and(|o| matches!(o.state, OfferState::Accepted | OfferState::Arrived))
}
