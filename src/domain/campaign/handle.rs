//! Campaign commands and their `apply`: the dispatcher routes `Command::Campaign` here and
//! `EventBody::Campaign` to `apply`. Rostering runs in the handler (deterministic in the
//! state, the seed and the budget); the roster it publishes is an event, so a replay never
//! runs the solver again.

use super::super::command::{Actor, Reply, Tx};
use super::super::errors::{Code, DomainError, ErrorKind, err, err_as};
use super::super::event::EventBody;
use super::super::org::TeamKind;
use super::super::response::Rules;
use super::super::scope::{self, Action};
use super::super::state::State;
use super::super::time::Ts;
use super::model::*;
use super::plan::compute;
use super::roster::Budget;
use super::serve::{self, Answer};

/// Most local-search iterations one command may ask for (the engine's thread runs it).
pub const MAX_ITERATIONS: u64 = 5_000_000;

fn unknown(id: &str) -> DomainError {
    err_as(ErrorKind::NotFound, Code::UnknownCampaign, format!("campaign '{id}' not found"))
}

/// The campaign, if it is in the actor's scope (foreign and missing look alike).
pub fn visible<'s>(state: &'s State, actor: &Actor, id: &str) -> Result<&'s Campaign, DomainError> {
    state.campaigns.get(id).filter(|c| scope::campaign(actor, c.district_id.as_deref())).ok_or_else(|| unknown(id))
}

pub fn open<'s>(state: &'s State, actor: &Actor, id: &str) -> Result<&'s Campaign, DomainError> {
    let c = visible(state, actor, id)?;
    if c.closed {
        return Err(err(Code::CampaignClosed, format!("campaign '{id}' is closed")));
    }
    Ok(c)
}

/// A refusal of what the campaign holds now (a closed site, a full campaign, a rostered
/// shift): 409, as every refusal that depends on the present state; a 422 is a request
/// wrong whatever the state.
fn conflict(code: Code, detail: impl Into<String>) -> DomainError {
    err_as(ErrorKind::Conflict, code, detail)
}

fn event(tx: &mut Tx<'_>, e: CampaignEvent) {
    tx.emit(EventBody::Campaign { event: Box::new(e) });
}

pub(in crate::domain) fn execute(tx: &mut Tx<'_>, actor: &Actor, cmd: CampaignCommand) -> Result<Reply, DomainError> {
    if let CampaignCommand::Unavailable { campaign_id, member_id, start, end } = cmd {
        return unavailable(tx, actor, campaign_id, member_id, start, end);
    }
    let cmd = match cmd {
        CampaignCommand::Acknowledge { campaign_id, shift_id } => {
            return serve::answer(tx, actor, campaign_id, shift_id, Answer::Acknowledge);
        }
        CampaignCommand::CheckIn { campaign_id, shift_id, position } => {
            return serve::answer(tx, actor, campaign_id, shift_id, Answer::CheckIn(position));
        }
        CampaignCommand::CheckOut { campaign_id, shift_id, position } => {
            return serve::answer(tx, actor, campaign_id, shift_id, Answer::CheckOut(position));
        }
        cmd => cmd,
    };
    scope::require(actor, Action::ManageCampaigns)?;
    let now = tx.now;
    match cmd {
        CampaignCommand::Create { name, district_id, start, end, rules } => {
            check_name(&name, Code::InvalidCampaign)?;
            rules.check()?;
            if !(end > start && end - start <= MAX_DAYS * 86_400_000) {
                return Err(err(Code::InvalidCampaign, "end after start, at most 120 days"));
            }
            if let Some(d) = &district_id
                && !tx.state.city.district_by_id.contains_key(d)
            {
                return Err(err_as(
                    ErrorKind::Invalid,
                    Code::UnknownDistrict,
                    format!("district '{d}' is not in the city"),
                ));
            }
            if !scope::campaign(actor, district_id.as_deref()) {
                return Err(err(Code::OutsideScope, "a district's command creates campaigns of its district only"));
            }
            let campaign_id = format!("cmp-{}", tx.state.campaigns_created + 1);
            event(
                tx,
                CampaignEvent::Created {
                    campaign_id: campaign_id.clone(),
                    name,
                    district_id,
                    start,
                    end,
                    rules,
                    no_show_after_s: Some(tx.rules.campaign.no_show_after_s),
                },
            );
            Ok(Reply::Campaign(campaign_id))
        }
        CampaignCommand::SetSite { campaign_id, site } => {
            let c = open(tx.state, actor, &campaign_id)?;
            let site = resolve_site(tx.state, c, site)?;
            event(tx, CampaignEvent::SiteSet { campaign_id, site });
            Ok(Reply::Done)
        }
        CampaignCommand::CloseSite { campaign_id, site_id } => {
            let c = open(tx.state, actor, &campaign_id)?;
            c.site(&site_id)
                .ok_or_else(|| err(Code::UnknownSite, format!("site '{site_id}' is not in the campaign")))?;
            event(tx, CampaignEvent::SiteClosed { campaign_id, site_id });
            Ok(Reply::Done)
        }
        CampaignCommand::SetShift { campaign_id, shift } => {
            let c = open(tx.state, actor, &campaign_id)?;
            check_id(&shift.id, Code::InvalidShift, "shift")?;
            if !(shift.end > shift.start
                && shift.start >= c.start
                && shift.end <= c.end
                && shift.end - shift.start <= 86_400_000)
            {
                return Err(err(
                    Code::InvalidShift,
                    "a shift ends after it starts, lasts at most 24 h, within the campaign",
                ));
            }
            if let Some(s) = &shift.site_id
                && c.site(s).is_none()
            {
                return Err(conflict(Code::UnknownSite, format!("site '{s}' is not in the campaign")));
            }
            // Refusals of what the campaign holds now (409): the same shift is fine elsewhere.
            if c.shift(&shift.id).is_none() && c.shifts.len() >= MAX_SHIFTS {
                return Err(conflict(Code::InvalidShift, format!("a campaign has at most {MAX_SHIFTS} shifts")));
            }
            if let Some(old) = c.shift(&shift.id).map(|i| &c.shifts[i])
                && c.roster.is_some()
                && (old.start, old.end) != (shift.start, shift.end)
            {
                return Err(conflict(
                    Code::InvalidShift,
                    "a rostered shift keeps its times; add another shift instead",
                ));
            }
            event(tx, CampaignEvent::ShiftSet { campaign_id, shift });
            Ok(Reply::Done)
        }
        CampaignCommand::SetRequirement { campaign_id, requirement: r } => {
            let c = open(tx.state, actor, &campaign_id)?;
            check_requirement(tx.rules, c, &r)?;
            event(tx, CampaignEvent::RequirementSet { campaign_id, requirement: r });
            Ok(Reply::Done)
        }
        CampaignCommand::Roster { campaign_id, seed, iterations } => {
            let c = open(tx.state, actor, &campaign_id)?;
            if iterations > MAX_ITERATIONS {
                return Err(err(Code::InvalidCampaign, format!("iterations 0–{MAX_ITERATIONS}")));
            }
            let roster = compute(tx.state, tx.rules, c, Budget { iterations, seed }, now);
            event(tx, CampaignEvent::RosterPublished { campaign_id: campaign_id.clone(), roster: Box::new(roster) });
            Ok(Reply::Campaign(campaign_id))
        }
        CampaignCommand::NoShow { campaign_id, shift_id, members } => {
            let c = open(tx.state, actor, &campaign_id)?;
            let si = c
                .shift(&shift_id)
                .ok_or_else(|| err(Code::UnknownShift, format!("shift '{shift_id}' is not in the campaign")))?;
            let Some(published) = &c.roster else {
                return Err(err(Code::InvalidShift, "the campaign has no published roster yet"));
            };
            if members.is_empty() || members.len() > 100_000 {
                return Err(err(Code::UnknownMember, "name 1–100000 members"));
            }
            let on_shift = rostered_in(c, published, si);
            if let Some(m) = members.iter().find(|m| !on_shift.contains(m.as_str())) {
                return Err(err_as(
                    ErrorKind::Invalid,
                    Code::UnknownMember,
                    format!("member '{m}' is not rostered in shift '{shift_id}'"),
                ));
            }
            replace(tx, &campaign_id, si, members, false);
            Ok(Reply::Campaign(campaign_id))
        }
        CampaignCommand::Publish { campaign_id, basis, roster } => {
            let c = open(tx.state, actor, &campaign_id)?;
            check_published(tx.state, c, basis, &roster)?;
            event(tx, CampaignEvent::RosterPublished { campaign_id: campaign_id.clone(), roster });
            Ok(Reply::Campaign(campaign_id))
        }
        CampaignCommand::Import { campaign_id, sites, requirements } => {
            let c = open(tx.state, actor, &campaign_id)?;
            let (events, errors) = import(tx.state, tx.rules, c, sites, requirements);
            if let Some((_, e)) = errors.into_iter().next() {
                return Err(e);
            }
            for e in events {
                event(tx, e);
            }
            Ok(Reply::Done)
        }
        CampaignCommand::Close { campaign_id } => {
            open(tx.state, actor, &campaign_id)?;
            event(tx, CampaignEvent::Closed { campaign_id });
            Ok(Reply::Done)
        }
        CampaignCommand::Unavailable { .. }
        | CampaignCommand::Acknowledge { .. }
        | CampaignCommand::CheckIn { .. }
        | CampaignCommand::CheckOut { .. } => unreachable!("handled above"),
    }
}

/// A site as asked for, checked against the campaign and resolved (position, community).
pub(super) fn resolve_site(state: &State, c: &Campaign, site: SiteSpec) -> Result<Site, DomainError> {
    check_id(&site.id, Code::InvalidSite, "site")?;
    check_name(&site.name, Code::InvalidSite)?;
    if c.site(&site.id).is_none() && c.sites.len() >= MAX_SITES {
        return Err(conflict(Code::InvalidSite, format!("a campaign has at most {MAX_SITES} sites")));
    }
    let city = &state.city;
    let (position, community) = match (&site.location, &site.grid_id) {
        (Some(p), None) => (*p, city.cell_to_grid.get(&p.cell()).copied()),
        (None, Some(g)) => {
            let &flat = city
                .grid_flat
                .get(g)
                .ok_or_else(|| err(Code::UnknownGrid, format!("grid '{g}' is not in the city")))?;
            (city.grid_centers[flat as usize], Some(flat))
        }
        _ => return Err(err(Code::GridOrLocation, "give a site either a location or a grid_id")),
    };
    let community_id = community.and_then(|g| {
        let ci = city.grid_places[g as usize].community;
        city.city().map(|x| x.communities[ci as usize].id.clone())
    });
    if let (Some(d), Some(g)) = (&c.district_id, community)
        && city.district_by_id.get(d) != Some(&city.grid_places[g as usize].district)
    {
        return Err(err(Code::InvalidSite, format!("site '{}' is outside the campaign's district {d}", site.id)));
    }
    let site = Site { id: site.id, name: site.name, position, grid_id: site.grid_id, community_id, closed: false };
    Ok(site)
}

/// A requirement's checks against the campaign and the configured roles and skills. What
/// the campaign holds now (its sites and shifts, closed or not, whose) is a 409; roles,
/// skills and headcount, a 422.
pub(super) fn check_requirement(rules: &Rules, c: &Campaign, r: &Requirement) -> Result<(), DomainError> {
    let site = c
        .site(&r.site_id)
        .ok_or_else(|| conflict(Code::UnknownSite, format!("site '{}' is not in the campaign", r.site_id)))?;
    let shift = c
        .shift(&r.shift_id)
        .ok_or_else(|| conflict(Code::UnknownShift, format!("shift '{}' is not in the campaign", r.shift_id)))?;
    if c.sites[site].closed {
        return Err(conflict(Code::InvalidRequirement, format!("site '{}' is closed", r.site_id)));
    }
    if c.shifts[shift].site_id.as_ref().is_some_and(|s| *s != r.site_id) {
        return Err(conflict(Code::InvalidRequirement, format!("shift '{}' belongs to another site", r.shift_id)));
    }
    if !rules.campaign.roles.iter().any(|x| x.id == r.role) {
        return Err(err(Code::UnknownRole, format!("role '{}' is not in the configured roles", r.role)));
    }
    if r.headcount > MAX_HEADCOUNT || r.skills.len() > 16 {
        return Err(err(Code::InvalidRequirement, format!("headcount 0–{MAX_HEADCOUNT}, at most 16 skills")));
    }
    if let Some(s) = r.skills.iter().find(|s| !rules.has_skill(s)) {
        return Err(err(Code::UnknownSkill, format!("skill '{s}' is not in the catalog")));
    }
    if c.requirement(&r.site_id, &r.shift_id, &r.role).is_none() && c.requirements.len() >= MAX_REQUIREMENTS {
        return Err(conflict(
            Code::InvalidRequirement,
            format!("a campaign has at most {MAX_REQUIREMENTS} requirements"),
        ));
    }
    Ok(())
}

/// Times one member may mark in one campaign (one person cannot fill a campaign's list).
const MAX_MARKS_PER_MEMBER: usize = 200;

fn unavailable(
    tx: &mut Tx<'_>,
    actor: &Actor,
    campaign_id: String,
    member_id: String,
    start: Ts,
    end: Ts,
) -> Result<Reply, DomainError> {
    scope::require(actor, Action::MarkUnavailable)?;
    let m = tx.state.member_index(&member_id);
    let c = match actor {
        Actor::Member { member } if *member == member_id => {
            // A campaign of another district is unknown to the member, as a missing one is.
            let c = (tx.state.campaigns.get(&campaign_id))
                .filter(|c| m.is_some_and(|m| eligible(tx.state, m, c)))
                .ok_or_else(|| unknown(&campaign_id))?;
            if c.closed {
                return Err(err(Code::CampaignClosed, format!("campaign '{campaign_id}' is closed")));
            }
            c
        }
        Actor::Member { .. } => return Err(err(Code::OutsideScope, "a member marks their own unavailability")),
        _ => open(tx.state, actor, &campaign_id)?,
    };
    // Command names a member of the campaign's people; another is unknown, as a missing one.
    if !m.is_some_and(|m| eligible(tx.state, m, c)) {
        return Err(err_as(
            ErrorKind::Invalid,
            Code::UnknownMember,
            format!("member '{member_id}' is not among the campaign's people"),
        ));
    }
    if !(end > start && start < c.end && end > c.start) {
        return Err(err(Code::BadWindow, "unavailability ends after it starts, within the campaign"));
    }
    if c.unavailable.iter().any(|(who, s, e)| *who == member_id && *s == start && *e == end) {
        return Ok(Reply::Done); // marked already: nothing to add
    }
    let mine = c.unavailable.iter().filter(|(who, ..)| *who == member_id).count();
    if mine >= MAX_MARKS_PER_MEMBER || c.unavailable.len() >= 200_000 {
        return Err(err(
            Code::InvalidCampaign,
            format!("at most {MAX_MARKS_PER_MEMBER} unavailability marks a member in a campaign"),
        ));
    }
    event(tx, CampaignEvent::Unavailable { campaign_id, member_id, start, end });
    Ok(Reply::Done)
}

/// Records no-shows of shift `si` and re-rosters from its start (or now, if earlier), with
/// no local search: the no-shows' slots are refilled directly or through one exchange.
pub(super) fn replace(tx: &mut Tx<'_>, campaign_id: &str, si: usize, members: Vec<String>, automatic: bool) {
    let c = &tx.state.campaigns[campaign_id];
    let from = c.shifts[si].start.min(tx.now);
    let shift_id = c.shifts[si].id.clone();
    let budget = Budget { iterations: 0, seed: c.roster.as_ref().map_or(0, |p| u64::from(p.version)) };
    event(tx, CampaignEvent::NoShows { campaign_id: campaign_id.to_string(), shift_id, members, automatic });
    let c = &tx.state.campaigns[campaign_id];
    let roster = compute(tx.state, tx.rules, c, budget, from);
    event(tx, CampaignEvent::RosterPublished { campaign_id: campaign_id.to_string(), roster: Box::new(roster) });
}

/// The members rostered in a shift (by id).
pub(super) fn rostered_in<'c>(c: &'c Campaign, p: &'c Published, shift: usize) -> std::collections::HashSet<&'c str> {
    let id = &c.shifts[shift].id;
    c.requirements
        .iter()
        .zip(&p.slots)
        .filter(|(r, _)| r.shift_id == *id)
        .flat_map(|(_, ms)| ms.iter().map(|&m| p.members[m as usize].as_str()))
        .collect()
}

/// The pool of a campaign: assault-team members and on-call members whose residence or
/// team's paired community lies in the campaign's district (any, for a city campaign).
pub fn pool(state: &State, c: &Campaign) -> Vec<u32> {
    let city = &state.city;
    let Some(x) = city.city() else { return Vec::new() };
    let district = c.district_id.as_ref().and_then(|d| city.district_by_id.get(d).copied());
    (0..x.members.len() as u32)
        .filter(|&m| {
            let assault = city.member_team[m as usize].is_some_and(|t| x.teams[t as usize].kind == TeamKind::Assault);
            let on_call = state.roster.members.get(m as usize).is_some_and(|r| r.on_call);
            if !(assault || on_call) {
                return false;
            }
            district.is_none_or(|d| in_district(state, m, d))
        })
        .collect()
}

/// The member lives in district `d`, or their team is paired with a community there.
fn in_district(state: &State, m: u32, d: u32) -> bool {
    let city = &state.city;
    let Some(x) = city.city() else { return false };
    let home = city.grid_places[city.member_residence[m as usize] as usize].district;
    let paired = city.member_paired_community[m as usize].and_then(|ci| {
        let grid = x.communities[ci as usize].grids.first()?;
        city.grid_flat.get(&grid.id).map(|&g| city.grid_places[g as usize].district)
    });
    home == d || paired == Some(d)
}

/// Member `m` belongs to campaign `c`'s people: a city campaign's, or one of its district
/// (`pool`'s rule, whatever their duty now), or already in its roster. Only they may have
/// times marked in it (scope.rs, `MarkUnavailable`).
pub fn eligible(state: &State, m: u32, c: &Campaign) -> bool {
    let district = c.district_id.as_ref().and_then(|d| state.city.district_by_id.get(d).copied());
    let in_roster = || {
        let id = state.city.members().get(m as usize).map(|x| x.id.as_str());
        c.roster.as_ref().is_some_and(|r| r.members.iter().any(|x| Some(x.as_str()) == id))
    };
    match (&c.district_id, district) {
        (None, _) => true,
        (Some(_), Some(d)) => in_district(state, m, d) || in_roster(),
        (Some(_), None) => in_roster(),
    }
}

/// A roster computed outside the writer (`plan::prepare`) may be published while the
/// campaign is still at the revision it was computed from, and if it is well formed.
fn check_published(state: &State, c: &Campaign, basis: u64, p: &Published) -> Result<(), DomainError> {
    if c.revision != basis {
        return Err(err(
            Code::RosterStale,
            format!("campaign '{}' changed while its roster was computed; compute it again", c.id),
        ));
    }
    let version = c.roster.as_ref().map_or(1, |r| r.version + 1);
    let members = p.members.len() as u32;
    let well_formed = p.version == version
        && p.slots.len() == c.requirements.len()
        && p.slots.iter().flatten().all(|&m| m < members)
        && p.shortfall.iter().all(|&(r, _, _)| (r as usize) < c.requirements.len())
        && p.members.iter().all(|m| state.member_index(m).is_some());
    if !well_formed {
        return Err(err(Code::InvalidCampaign, "the roster does not fit the campaign"));
    }
    Ok(())
}

/// A member's answers to a shift, made on first use.
fn attendance<'c>(c: &'c mut Campaign, shift: &str, member: &str) -> &'c mut Attendance {
    c.attendance.entry(shift.to_string()).or_default().entry(member.to_string()).or_default()
}

/// What is wrong with an item of an import: a site (by its index) or a requirement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Item {
    Site(usize),
    Requirement(usize),
}

/// The events of an import (sites first, then requirements, each checked against the
/// campaign as the earlier ones leave it), and every item's refusal. All or nothing: the
/// events are emitted only when there is no refusal.
pub fn import(
    state: &State,
    rules: &Rules,
    c: &Campaign,
    sites: Vec<SiteSpec>,
    requirements: Vec<Requirement>,
) -> (Vec<CampaignEvent>, Vec<(Item, DomainError)>) {
    let mut draft = c.clone();
    let mut events = Vec::new();
    let mut errors = Vec::new();
    for (i, spec) in sites.into_iter().enumerate() {
        match resolve_site(state, &draft, spec) {
            Ok(site) => {
                let e = CampaignEvent::SiteSet { campaign_id: c.id.clone(), site };
                apply_to(&mut draft, &e, 0);
                events.push(e);
            }
            Err(e) => errors.push((Item::Site(i), e)),
        }
    }
    for (i, r) in requirements.into_iter().enumerate() {
        match check_requirement(rules, &draft, &r) {
            Ok(()) => {
                let e = CampaignEvent::RequirementSet { campaign_id: c.id.clone(), requirement: r };
                apply_to(&mut draft, &e, 0);
                events.push(e);
            }
            Err(e) => errors.push((Item::Requirement(i), e)),
        }
    }
    (events, errors)
}

pub(in crate::domain) fn apply(
    state: &mut State,
    e: &CampaignEvent,
    at: Ts,
    frames: &mut Vec<super::super::event::Frame>,
) {
    if let CampaignEvent::Created { campaign_id, name, district_id, start, end, rules, no_show_after_s } = e {
        state.campaigns_created += 1;
        state.campaigns.insert(
            campaign_id.clone(),
            Campaign {
                id: campaign_id.clone(),
                name: name.clone(),
                district_id: district_id.clone(),
                start: *start,
                end: *end,
                rules: rules.clone(),
                sites: Vec::new(),
                shifts: Vec::new(),
                requirements: Vec::new(),
                unavailable: Vec::new(),
                no_shows: Vec::new(),
                roster: None,
                closed: false,
                revision: 0,
                attendance: Default::default(),
                no_show_after_s: *no_show_after_s,
                no_show_checked: Default::default(),
            },
        );
        return;
    }
    let Some(c) = state.campaigns.get_mut(e.campaign_id()) else {
        debug_assert!(false, "a logged campaign event names a campaign: {e:?}");
        return;
    };
    let before = match e {
        CampaignEvent::RosterPublished { .. } => c.roster.take(),
        _ => None,
    };
    apply_to(c, e, at);
    super::frames::frames(state, e, at, before.as_ref(), frames);
}

/// A campaign event on its campaign (`Created` aside, which makes it).
fn apply_to(c: &mut Campaign, e: &CampaignEvent, at: Ts) {
    let answers = matches!(
        e,
        CampaignEvent::Acknowledged { .. } | CampaignEvent::CheckedIn { .. } | CampaignEvent::CheckedOut { .. }
    );
    if !answers && !matches!(e, CampaignEvent::Created { .. } | CampaignEvent::Closed { .. }) {
        c.revision += 1;
    }
    match e {
        CampaignEvent::Created { .. } => {}
        CampaignEvent::SiteSet { site, .. } => match c.site(&site.id) {
            Some(i) => c.sites[i] = site.clone(),
            None => c.sites.push(site.clone()),
        },
        CampaignEvent::SiteClosed { site_id, .. } => {
            if let Some(i) = c.site(site_id) {
                c.sites[i].closed = true;
            }
        }
        CampaignEvent::ShiftSet { shift, .. } => match c.shift(&shift.id) {
            Some(i) => c.shifts[i] = shift.clone(),
            None => c.shifts.push(shift.clone()),
        },
        CampaignEvent::RequirementSet { requirement: r, .. } => match c.requirement(&r.site_id, &r.shift_id, &r.role) {
            Some(i) => c.requirements[i] = r.clone(),
            None => c.requirements.push(r.clone()),
        },
        CampaignEvent::Unavailable { member_id, start, end, .. } => {
            c.unavailable.push((member_id.clone(), *start, *end))
        }
        CampaignEvent::RosterPublished { roster, .. } => c.roster = Some((**roster).clone()),
        CampaignEvent::NoShows { shift_id, members, automatic, .. } => {
            c.no_shows.extend(members.iter().map(|m| (shift_id.clone(), m.clone())));
            if *automatic {
                c.no_show_checked.insert(shift_id.clone());
            }
        }
        CampaignEvent::Closed { .. } => c.closed = true,
        CampaignEvent::Acknowledged { shift_id, member_id, .. } => {
            attendance(c, shift_id, member_id).acknowledged_at = Some(at);
        }
        CampaignEvent::CheckedIn { shift_id, member_id, .. } => {
            attendance(c, shift_id, member_id).checkin_at = Some(at);
        }
        CampaignEvent::CheckedOut { shift_id, member_id, .. } => {
            attendance(c, shift_id, member_id).checkout_at = Some(at);
        }
    }
}
