//! Campaign commands and their `apply`: the dispatcher routes `Command::Campaign` here and
//! `EventBody::Campaign` to `apply`. Rostering runs in the handler (deterministic in the
//! state, the seed and the budget); the roster it publishes is an event, so a replay never
//! runs the solver again.

use std::collections::HashMap;

use super::super::command::{Actor, Reply, Tx};
use super::super::errors::{Code, DomainError, ErrorKind, err, err_as};
use super::super::event::EventBody;
use super::super::org::TeamKind;
use super::super::scope::{self, Action};
use super::super::state::State;
use super::super::time::Ts;
use super::instance::{Instance, NONE, Reach, Req, SitePlace, Span, pool_from_city, skills_mask};
use super::model::*;
use super::roster::{Budget, changes, reroster, solve};

/// Most local-search iterations one command may ask for (the engine's thread runs it).
pub const MAX_ITERATIONS: u64 = 5_000_000;

fn unknown(id: &str) -> DomainError {
    err_as(ErrorKind::NotFound, Code::UnknownCampaign, format!("campaign '{id}' not found"))
}

/// The campaign, if it is in the actor's scope (foreign and missing look alike).
fn visible<'s>(state: &'s State, actor: &Actor, id: &str) -> Result<&'s Campaign, DomainError> {
    state.campaigns.get(id).filter(|c| scope::campaign(actor, c.district_id.as_deref())).ok_or_else(|| unknown(id))
}

fn open<'s>(state: &'s State, actor: &Actor, id: &str) -> Result<&'s Campaign, DomainError> {
    let c = visible(state, actor, id)?;
    if c.closed {
        return Err(err(Code::CampaignClosed, format!("campaign '{id}' is closed")));
    }
    Ok(c)
}

fn event(tx: &mut Tx<'_>, e: CampaignEvent) {
    tx.emit(EventBody::Campaign { event: Box::new(e) });
}

pub(in crate::domain) fn execute(tx: &mut Tx<'_>, actor: &Actor, cmd: CampaignCommand) -> Result<Reply, DomainError> {
    if let CampaignCommand::Unavailable { campaign_id, member_id, start, end } = cmd {
        return unavailable(tx, actor, campaign_id, member_id, start, end);
    }
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
                CampaignEvent::Created { campaign_id: campaign_id.clone(), name, district_id, start, end, rules },
            );
            Ok(Reply::Campaign(campaign_id))
        }
        CampaignCommand::SetSite { campaign_id, site } => {
            let c = open(tx.state, actor, &campaign_id)?;
            check_id(&site.id, Code::InvalidSite, "site")?;
            check_name(&site.name, Code::InvalidSite)?;
            if c.site(&site.id).is_none() && c.sites.len() >= MAX_SITES {
                return Err(err(Code::InvalidSite, format!("a campaign has at most {MAX_SITES} sites")));
            }
            let city = &tx.state.city;
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
                return Err(err(
                    Code::InvalidSite,
                    format!("site '{}' is outside the campaign's district {d}", site.id),
                ));
            }
            let site =
                Site { id: site.id, name: site.name, position, grid_id: site.grid_id, community_id, closed: false };
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
                return Err(err(Code::UnknownSite, format!("site '{s}' is not in the campaign")));
            }
            if c.shift(&shift.id).is_none() && c.shifts.len() >= MAX_SHIFTS {
                return Err(err(Code::InvalidShift, format!("a campaign has at most {MAX_SHIFTS} shifts")));
            }
            if let Some(old) = c.shift(&shift.id).map(|i| &c.shifts[i])
                && c.roster.is_some()
                && (old.start, old.end) != (shift.start, shift.end)
            {
                return Err(err(Code::InvalidShift, "a rostered shift keeps its times; add another shift instead"));
            }
            event(tx, CampaignEvent::ShiftSet { campaign_id, shift });
            Ok(Reply::Done)
        }
        CampaignCommand::SetRequirement { campaign_id, requirement: r } => {
            let c = open(tx.state, actor, &campaign_id)?;
            let site = c
                .site(&r.site_id)
                .ok_or_else(|| err(Code::UnknownSite, format!("site '{}' is not in the campaign", r.site_id)))?;
            let shift = c
                .shift(&r.shift_id)
                .ok_or_else(|| err(Code::UnknownShift, format!("shift '{}' is not in the campaign", r.shift_id)))?;
            if c.sites[site].closed {
                return Err(err(Code::InvalidRequirement, format!("site '{}' is closed", r.site_id)));
            }
            if c.shifts[shift].site_id.as_ref().is_some_and(|s| *s != r.site_id) {
                return Err(err(Code::InvalidRequirement, format!("shift '{}' belongs to another site", r.shift_id)));
            }
            if !tx.rules.campaign.roles.iter().any(|x| x.id == r.role) {
                return Err(err(Code::UnknownRole, format!("role '{}' is not in the configured roles", r.role)));
            }
            if r.headcount > MAX_HEADCOUNT || r.skills.len() > 16 {
                return Err(err(Code::InvalidRequirement, format!("headcount 0–{MAX_HEADCOUNT}, at most 16 skills")));
            }
            if let Some(s) = r.skills.iter().find(|s| !tx.rules.has_skill(s)) {
                return Err(err(Code::UnknownSkill, format!("skill '{s}' is not in the catalog")));
            }
            if c.requirement(&r.site_id, &r.shift_id, &r.role).is_none() && c.requirements.len() >= MAX_REQUIREMENTS {
                return Err(err(
                    Code::InvalidRequirement,
                    format!("a campaign has at most {MAX_REQUIREMENTS} requirements"),
                ));
            }
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
            let from = c.shifts[si].start.min(now);
            let budget = Budget { iterations: 0, seed: u64::from(published.version) };
            event(tx, CampaignEvent::NoShows { campaign_id: campaign_id.clone(), shift_id, members });
            let c = &tx.state.campaigns[&campaign_id];
            let roster = compute(tx.state, tx.rules, c, budget, from);
            event(tx, CampaignEvent::RosterPublished { campaign_id: campaign_id.clone(), roster: Box::new(roster) });
            Ok(Reply::Campaign(campaign_id))
        }
        CampaignCommand::Close { campaign_id } => {
            open(tx.state, actor, &campaign_id)?;
            event(tx, CampaignEvent::Closed { campaign_id });
            Ok(Reply::Done)
        }
        CampaignCommand::Unavailable { .. } => unreachable!("handled above"),
    }
}

fn unavailable(
    tx: &mut Tx<'_>,
    actor: &Actor,
    campaign_id: String,
    member_id: String,
    start: Ts,
    end: Ts,
) -> Result<Reply, DomainError> {
    scope::require(actor, Action::MarkUnavailable)?;
    let c = match actor {
        Actor::Member { member } if *member == member_id => {
            let c = tx.state.campaigns.get(&campaign_id).ok_or_else(|| unknown(&campaign_id))?;
            if c.closed {
                return Err(err(Code::CampaignClosed, format!("campaign '{campaign_id}' is closed")));
            }
            c
        }
        Actor::Member { .. } => return Err(err(Code::OutsideScope, "a member marks their own unavailability")),
        _ => open(tx.state, actor, &campaign_id)?,
    };
    if tx.state.member_index(&member_id).is_none() {
        return Err(err_as(
            ErrorKind::Invalid,
            Code::UnknownMember,
            format!("member '{member_id}' is not in the city"),
        ));
    }
    if !(end > start && start < c.end && end > c.start) {
        return Err(err(Code::BadWindow, "unavailability ends after it starts, within the campaign"));
    }
    if c.unavailable.len() >= 200_000 {
        return Err(err(Code::InvalidCampaign, "too many unavailability marks in this campaign"));
    }
    event(tx, CampaignEvent::Unavailable { campaign_id, member_id, start, end });
    Ok(Reply::Done)
}

/// The members rostered in a shift (by id).
fn rostered_in<'c>(c: &'c Campaign, p: &'c Published, shift: usize) -> std::collections::HashSet<&'c str> {
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
            let Some(d) = district else { return true };
            let home = city.grid_places[city.member_residence[m as usize] as usize].district;
            let paired = city.member_paired_community[m as usize].and_then(|ci| {
                let grid = x.communities[ci as usize].grids.first()?;
                city.grid_flat.get(&grid.id).map(|&g| city.grid_places[g as usize].district)
            });
            home == d || paired == Some(d)
        })
        .collect()
}

/// Builds the instance and rosters it: from scratch without a published roster, else a
/// re-roster of the shifts from `from` on.
fn compute(state: &State, rules: &super::super::response::Rules, c: &Campaign, budget: Budget, from: Ts) -> Published {
    let city = &state.city;
    let members = pool(state, c);
    let ids: Vec<&str> = members.iter().map(|&m| city.members()[m as usize].id.as_str()).collect();
    let by_id: HashMap<&str, u32> = ids.iter().enumerate().map(|(i, id)| (*id, i as u32)).collect();
    let mut away: HashMap<&str, Vec<(Ts, Ts)>> = HashMap::new();
    for (m, a, b) in &c.unavailable {
        away.entry(m.as_str()).or_default().push((*a, *b));
    }
    for (shift, m) in &c.no_shows {
        if let Some(s) = c.shift(shift) {
            away.entry(m.as_str()).or_default().push((c.shifts[s].start, c.shifts[s].end));
        }
    }
    let mut pm = pool_from_city(city, &members, |_| 0.0, |_| Vec::new());
    for (i, p) in pm.iter_mut().enumerate() {
        p.unavailable = away.get(ids[i]).cloned().unwrap_or_default();
    }
    let community = |id: &Option<String>| id.as_ref().and_then(|c| city.community_by_id.get(c).copied());
    let sites: Vec<SitePlace> =
        c.sites.iter().map(|s| SitePlace { position: s.position, community: community(&s.community_id) }).collect();
    let shifts: Vec<Span> = c.shifts.iter().map(|s| Span { start: s.start, end: s.end }).collect();
    // Instance requirements: those of open sites wanting someone; `of` maps them back.
    let mut reqs = Vec::new();
    let mut of = Vec::new();
    for (ri, r) in c.requirements.iter().enumerate() {
        let (Some(site), Some(shift)) = (c.site(&r.site_id), c.shift(&r.shift_id)) else { continue };
        if c.sites[site].closed || r.headcount == 0 {
            continue;
        }
        let role = rules.campaign.roles.iter().position(|x| x.id == r.role).unwrap_or(0) as u16;
        reqs.push(Req {
            site: site as u32,
            shift: shift as u32,
            role,
            headcount: r.headcount,
            skills: skills_mask(city, &r.skills),
        });
        of.push(ri);
    }
    let inst = Instance::new(c.rules.hard(), rules.campaign.weights.clone(), c.start, pm, sites, shifts, reqs);
    let reach = Reach::build(&inst);
    let previous: Option<Vec<u32>> = c.roster.as_ref().map(|p| {
        let mut v = vec![NONE; inst.slots()];
        for (k, &ri) in of.iter().enumerate() {
            let first = inst.first_slot[k] as usize;
            let held = p.slots.get(ri).map(Vec::as_slice).unwrap_or(&[]);
            for (j, &m) in held.iter().take(inst.reqs[k].headcount as usize).enumerate() {
                if let Some(&pi) = p.members.get(m as usize).and_then(|id| by_id.get(id.as_str())) {
                    v[first + j] = pi;
                }
            }
        }
        v
    });
    let sol = match &previous {
        Some(prev) => reroster(&inst, &reach, prev, from, budget),
        None => solve(&inst, &reach, budget),
    };
    let changed = previous.as_ref().map_or(sol.filled(), |p| changes(p, &sol.assign)) as u32;
    // Encode: the dictionary of members used, and per campaign requirement its members.
    let mut dict: Vec<String> = Vec::new();
    let mut index: HashMap<u32, u32> = HashMap::new();
    let mut slots = vec![Vec::new(); c.requirements.len()];
    for (k, &ri) in of.iter().enumerate() {
        for s in inst.first_slot[k]..inst.first_slot[k + 1] {
            let m = sol.assign[s as usize];
            if m != NONE {
                let d = *index.entry(m).or_insert_with(|| {
                    dict.push(ids[m as usize].to_string());
                    dict.len() as u32 - 1
                });
                slots[ri].push(d);
            }
        }
    }
    let shortfall = sol.shortfall.iter().map(|s| (of[s.req as usize] as u32, s.missing, s.binding)).collect();
    let version = c.roster.as_ref().map_or(1, |p| p.version + 1);
    Published { version, from, members: dict, slots, shortfall, changed }
}

pub(in crate::domain) fn apply(state: &mut State, e: &CampaignEvent) {
    if let CampaignEvent::Created { campaign_id, name, district_id, start, end, rules } = e {
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
            },
        );
        return;
    }
    let Some(c) = state.campaigns.get_mut(e.campaign_id()) else {
        debug_assert!(false, "a logged campaign event names a campaign: {e:?}");
        return;
    };
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
        CampaignEvent::NoShows { shift_id, members, .. } => {
            c.no_shows.extend(members.iter().map(|m| (shift_id.clone(), m.clone())));
        }
        CampaignEvent::Closed { .. } => c.closed = true,
    }
}
