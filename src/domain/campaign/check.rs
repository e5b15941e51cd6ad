//! The independent checker: given an instance and a roster (one member or `NONE` per
//! slot), lists every hard rule the roster breaks and recomputes the objective's figures
//! from scratch. It shares no code with the solver's accounting (`book`), so a bug there
//! cannot hide here: the tests and the bench trust this, not the solver.

use std::collections::{BTreeMap, BTreeSet};

use ::geo::{Distance, Haversine, Point};

use super::super::workload::gini;
use super::book::Rule;
use super::instance::{Instance, NONE};

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Violation {
    pub slot: u32,
    pub member: u32,
    pub rule: Rule,
}

/// What the checker finds.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Verdict {
    pub violations: Vec<Violation>,
    /// Slots given to a member who is not in the pool (a malformed roster).
    pub malformed: usize,
    pub slots: usize,
    pub filled: usize,
    pub travel_total_m: f64,
    pub travel_mean_m: f64,
    /// Gini of the hours (before plus rostered) over every member of the pool.
    pub hours_gini: f64,
    /// Pairs of teammates on the same site and shift.
    pub team_pairs: u64,
    /// Filled slots in the member's own community (residence or paired).
    pub own_community: usize,
    /// The objective as the solver minimizes it, recomputed (without the change term).
    pub objective: f64,
}

fn between(a: crate::domain::geo::Position, b: crate::domain::geo::Position) -> f64 {
    Haversine.distance(Point::new(a.lng, a.lat), Point::new(b.lng, b.lat))
}

pub fn check(inst: &Instance, assign: &[u32]) -> Verdict {
    let mut violations = Vec::new();
    let mut malformed = 0;
    // Requirement of each slot, recomputed from the headcounts.
    let mut req_of_slot = Vec::new();
    for (ri, r) in inst.reqs.iter().enumerate() {
        req_of_slot.extend(std::iter::repeat_n(ri, r.headcount as usize));
    }
    malformed += assign.len().abs_diff(req_of_slot.len());
    let mut by_member: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    let (mut filled, mut travel, mut own) = (0usize, 0.0, 0usize);
    for (slot, &m) in assign.iter().enumerate().take(req_of_slot.len()) {
        if m == NONE {
            continue;
        }
        let Some(mem) = inst.members.get(m as usize) else {
            malformed += 1;
            continue;
        };
        filled += 1;
        let r = &inst.reqs[req_of_slot[slot]];
        let site = &inst.sites[r.site as usize];
        let shift = inst.shifts[r.shift as usize];
        let mut bad = |rule| violations.push(Violation { slot: slot as u32, member: m, rule });
        if r.skills & mem.skills != r.skills {
            bad(Rule::Skill);
        }
        let d_home = between(mem.home, site.position);
        let d_paired = mem.paired.map(|(_, p)| between(p, site.position)).unwrap_or(f64::INFINITY);
        if d_home.min(d_paired) > inst.rules.max_distance_m {
            bad(Rule::Distance);
        }
        if mem.unavailable.iter().any(|&(a, b)| shift.start < b && a < shift.end) {
            bad(Rule::Availability);
        }
        // Travel: from home, or from the paired community where the member serves.
        travel += d_home.min(d_paired);
        if let Some(c) = site.community
            && (mem.community == Some(c) || mem.paired.map(|p| p.0) == Some(c))
        {
            own += 1;
        }
        by_member.entry(m).or_default().push(slot as u32);
    }
    // Time rules per member, over their shifts sorted by start.
    const DAY: i64 = 86_400_000;
    let mut hours: Vec<f64> = inst.members.iter().map(|m| m.hours_before.max(0.0)).collect();
    let mut groups: BTreeMap<(u32, u32, u32), u64> = BTreeMap::new();
    for (&m, slots) in &by_member {
        let mut spans: Vec<(i64, i64, u32)> = slots
            .iter()
            .map(|&s| {
                let r = &inst.reqs[req_of_slot[s as usize]];
                let sh = inst.shifts[r.shift as usize];
                (sh.start, sh.end, s)
            })
            .collect();
        spans.sort();
        for w in spans.windows(2) {
            let ((_, e0, _), (s1, _, slot)) = (w[0], w[1]);
            if s1 < e0 {
                violations.push(Violation { slot, member: m, rule: Rule::Overlap });
            } else if s1 - e0 < inst.rules.min_rest_ms {
                violations.push(Violation { slot, member: m, rule: Rule::Rest });
            }
        }
        // Every window edge that can hold the most: starts, and ends less a day.
        let edges: BTreeSet<i64> = spans.iter().flat_map(|&(s, e, _)| [s, e - DAY]).collect();
        for a in edges {
            let b = a + DAY;
            let on: i64 = spans.iter().map(|&(s, e, _)| (e.min(b) - s.max(a)).max(0)).sum();
            if on > inst.rules.max_in_24h_ms {
                let slot = spans.iter().find(|&&(s, e, _)| s < b && a < e).map_or(0, |x| x.2);
                violations.push(Violation { slot, member: m, rule: Rule::Hours });
                break;
            }
        }
        let days: BTreeSet<i64> = spans.iter().map(|&(s, _, _)| (s - inst.day0).div_euclid(DAY)).collect();
        let (mut run, mut longest, mut prev) = (0u32, 0u32, None);
        for d in days {
            run = if prev == Some(d - 1) { run + 1 } else { 1 };
            longest = longest.max(run);
            prev = Some(d);
        }
        if longest > inst.rules.max_consecutive_days {
            violations.push(Violation { slot: spans[0].2, member: m, rule: Rule::ConsecutiveDays });
        }
        for &(s, e, slot) in &spans {
            hours[m as usize] += (e - s) as f64 / 3_600_000.0;
            let r = &inst.reqs[req_of_slot[slot as usize]];
            if let Some(team) = inst.members[m as usize].team {
                *groups.entry((r.site, r.shift, team)).or_insert(0) += 1;
            }
        }
    }
    let team_pairs: u64 = groups.values().map(|&n| n * n.saturating_sub(1) / 2).sum();
    let w = &inst.weights;
    let objective = travel - w.own_community_m * own as f64
        + w.fair_m_per_h2 * hours.iter().map(|h| h * h).sum::<f64>()
        - w.team_pair_m * team_pairs as f64;
    Verdict {
        violations,
        malformed,
        slots: req_of_slot.len(),
        filled,
        travel_total_m: travel,
        travel_mean_m: if filled == 0 { 0.0 } else { travel / filled as f64 },
        hours_gini: gini(&hours),
        team_pairs,
        own_community: own,
        objective,
    }
}
