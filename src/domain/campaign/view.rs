//! What a campaign looks like to the people running it, computed from the model: per site
//! × shift × role the people required, planned (rostered), acknowledged, present (checked
//! in, not yet out) and the gap (required − planned), with the rule that binds where the
//! roster fell short; the fatigue warnings of rostered members; a member's own shifts.
//! Scope is the caller's: `keep` says which sites the viewer sees (`scope::campaign_site`).

use std::collections::{BTreeMap, BTreeSet};

use super::super::time::Ts;
use super::book::{Rule, longest_run};
use super::model::{Campaign, Site};

const HOUR: f64 = 3_600_000.0;
const DAY: i64 = 86_400_000;

/// One site × shift × role.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    pub requirement: usize,
    pub required: u32,
    pub planned: u32,
    pub acknowledged: u32,
    pub present: u32,
    pub gap: u32,
    /// Why the roster left this cell short, when it did.
    pub binding: Option<Rule>,
    pub members: Vec<String>,
}

/// The members holding each requirement's slots in the published roster (by id).
pub fn holders(c: &Campaign, requirement: usize) -> Vec<&str> {
    let Some(p) = &c.roster else { return Vec::new() };
    p.slots
        .get(requirement)
        .map(|ms| ms.iter().filter_map(|&m| p.members.get(m as usize).map(String::as_str)).collect())
        .unwrap_or_default()
}

/// The cells of the sites `keep` lets through, in requirement order.
pub fn cells(c: &Campaign, keep: impl Fn(&Site) -> bool) -> Vec<Cell> {
    let binding: BTreeMap<usize, Rule> = c
        .roster
        .as_ref()
        .map(|p| p.shortfall.iter().map(|&(r, _, rule)| (r as usize, rule)).collect())
        .unwrap_or_default();
    c.requirements
        .iter()
        .enumerate()
        .filter(|(_, r)| c.site(&r.site_id).is_some_and(|s| keep(&c.sites[s])))
        .map(|(i, r)| {
            let members: Vec<String> = holders(c, i).into_iter().map(str::to_string).collect();
            let att = |m: &String| c.attendance(&r.shift_id, m);
            let acknowledged = members.iter().filter(|m| att(m).is_some_and(|a| a.acknowledged_at.is_some())).count();
            let present = members
                .iter()
                .filter(|m| att(m).is_some_and(|a| a.checkin_at.is_some() && a.checkout_at.is_none()))
                .count();
            let closed = c.site(&r.site_id).is_some_and(|s| c.sites[s].closed);
            let required = if closed { 0 } else { r.headcount };
            let planned = members.len() as u32;
            Cell {
                requirement: i,
                required,
                planned,
                acknowledged: acknowledged as u32,
                present: present as u32,
                gap: required.saturating_sub(planned),
                binding: binding.get(&i).copied(),
                members,
            }
        })
        .collect()
}

/// A rostered member close to (or at) a fatigue limit of the campaign.
#[derive(Debug, Clone, PartialEq)]
pub struct Fatigue {
    pub member_id: String,
    /// The most hours on shift in any 24 hours.
    pub most_hours_in_24h: f64,
    /// The most days in a row with a shift.
    pub consecutive_days: u32,
    /// The least rest between two of their shifts, hours (none with one shift).
    pub least_rest_h: Option<f64>,
    /// What is near its limit: `hours` (≥ 90% of the most in 24 h), `days` (at the most
    /// days in a row), `rest` (within an hour of the least rest).
    pub near: Vec<&'static str>,
}

/// The fatigue warnings of the members `keep` lets through, by member id.
pub fn fatigue(c: &Campaign, keep: impl Fn(&str) -> bool) -> Vec<Fatigue> {
    let mut spans: BTreeMap<&str, BTreeSet<(Ts, Ts)>> = BTreeMap::new();
    for (i, r) in c.requirements.iter().enumerate() {
        let Some(s) = c.shift(&r.shift_id) else { continue };
        for m in holders(c, i) {
            spans.entry(m).or_default().insert((c.shifts[s].start, c.shifts[s].end));
        }
    }
    let rules = &c.rules;
    let mut out = Vec::new();
    for (m, set) in spans {
        if !keep(m) {
            continue;
        }
        let v: Vec<(Ts, Ts)> = set.into_iter().collect();
        let covered = |a: Ts| v.iter().map(|&(s, e)| (e.min(a + DAY) - s.max(a)).max(0)).sum::<i64>();
        let most = v.iter().flat_map(|&(s, e)| [covered(s), covered(e - DAY)]).max().unwrap_or(0) as f64 / HOUR;
        let days = v.iter().fold(0u128, |bits, &(s, _)| {
            let d = (s - c.start).div_euclid(DAY);
            if (0..128).contains(&d) { bits | (1u128 << d) } else { bits }
        });
        let run = longest_run(days);
        let rest = v.windows(2).map(|w| (w[1].0 - w[0].1) as f64 / HOUR).reduce(f64::min);
        let mut near = Vec::new();
        if most >= 0.9 * rules.max_hours_in_24h {
            near.push("hours");
        }
        if run >= rules.max_consecutive_days {
            near.push("days");
        }
        if rest.is_some_and(|r| r < rules.min_rest_h + 1.0) {
            near.push("rest");
        }
        if !near.is_empty() {
            out.push(Fatigue {
                member_id: m.to_string(),
                most_hours_in_24h: most,
                consecutive_days: run,
                least_rest_h: rest,
                near,
            });
        }
    }
    out
}

/// A member's shifts in a campaign: (requirement index, the requirement's shift index).
pub fn shifts_of(c: &Campaign, member: &str) -> Vec<(usize, usize)> {
    let Some(p) = &c.roster else { return Vec::new() };
    let Some(me) = p.members.iter().position(|m| m == member) else { return Vec::new() };
    p.slots
        .iter()
        .enumerate()
        .filter(|(_, ms)| ms.contains(&(me as u32)))
        .filter_map(|(i, _)| c.shift(&c.requirements[i].shift_id).map(|s| (i, s)))
        .collect()
}
