//! A roster's computation in two halves, so that it can run outside the engine's writer:
//! `prepare` reads the state (the pool, the campaign, the published roster) into an owned
//! `Prepared` in milliseconds, under the read lock; `Prepared::run` solves it (seconds for
//! a city-sized campaign) with no access to the state; the result is published by
//! `CampaignCommand::Publish`, which the writer accepts only while the campaign is still at
//! the revision the inputs were read at (`Prepared::basis`). In-writer commands (`roster`,
//! `no_show`) run both halves at once.

use std::collections::HashMap;

use super::super::response::Rules;
use super::super::state::State;
use super::super::time::Ts;
use super::handle::pool;
use super::instance::{Instance, NONE, Reach, Req, SitePlace, Span, pool_from_city, skills_mask};
use super::model::{Campaign, Published};
use super::roster::{Budget, changes, reroster, solve};

/// The inputs of one roster, owned: nothing here borrows the state.
pub struct Prepared {
    pub campaign_id: String,
    /// The campaign's revision the inputs were read at.
    pub basis: u64,
    /// Shifts starting from here are (re)rostered.
    pub from: Ts,
    inst: Instance,
    /// Instance requirement -> campaign requirement index.
    of: Vec<usize>,
    /// Pool index -> member id.
    ids: Vec<String>,
    previous: Option<Vec<u32>>,
    version: u32,
    requirements: usize,
}

/// Reads the inputs of a roster of `c` from the state: from scratch without a published
/// roster, else a re-roster of the shifts from `from` on.
pub fn prepare(state: &State, rules: &Rules, c: &Campaign, from: Ts) -> Prepared {
    let city = &state.city;
    let members = pool(state, c);
    let ids: Vec<String> = members.iter().map(|&m| city.members()[m as usize].id.clone()).collect();
    let by_id: HashMap<&str, u32> = ids.iter().enumerate().map(|(i, id)| (id.as_str(), i as u32)).collect();
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
        p.unavailable = away.get(ids[i].as_str()).cloned().unwrap_or_default();
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
    Prepared {
        campaign_id: c.id.clone(),
        basis: c.revision,
        from,
        inst,
        of,
        ids,
        previous,
        version: c.roster.as_ref().map_or(1, |p| p.version + 1),
        requirements: c.requirements.len(),
    }
}

impl Prepared {
    /// Solves (or re-rosters) and encodes the roster to publish.
    pub fn run(self, budget: Budget) -> Published {
        let Prepared { from, inst, of, ids, previous, version, requirements, .. } = self;
        let reach = Reach::build(&inst);
        let sol = match &previous {
            Some(prev) => reroster(&inst, &reach, prev, from, budget),
            None => solve(&inst, &reach, budget),
        };
        let changed = previous.as_ref().map_or(sol.filled(), |p| changes(p, &sol.assign)) as u32;
        // Encode: the dictionary of members used, and per campaign requirement its members.
        let mut dict: Vec<String> = Vec::new();
        let mut index: HashMap<u32, u32> = HashMap::new();
        let mut slots = vec![Vec::new(); requirements];
        for (k, &ri) in of.iter().enumerate() {
            for s in inst.first_slot[k]..inst.first_slot[k + 1] {
                let m = sol.assign[s as usize];
                if m != NONE {
                    let d = *index.entry(m).or_insert_with(|| {
                        dict.push(ids[m as usize].clone());
                        dict.len() as u32 - 1
                    });
                    slots[ri].push(d);
                }
            }
        }
        let shortfall = sol.shortfall.iter().map(|s| (of[s.req as usize] as u32, s.missing, s.binding)).collect();
        Published { version, from, members: dict, slots, shortfall, changed }
    }
}

/// Both halves at once (the in-writer commands).
pub fn compute(state: &State, rules: &Rules, c: &Campaign, budget: Budget, from: Ts) -> Published {
    prepare(state, rules, c, from).run(budget)
}
