//! The solver's own accounting of a roster in progress: who holds which slot, each
//! member's shifts, hours and days, and the teammates on each site and shift; with the
//! hard-rule test (`blocked`) and the marginal cost of adding or removing one assignment.
//! The independent checker (`check`) shares none of this.

use std::collections::HashMap;

use super::instance::{Instance, NONE};

/// The hard rule that keeps a member from a slot (also the shortfall's "binding" rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// Nobody in the pool has the skills.
    Skill,
    /// Nobody with the skills lives (or is paired) within the distance limit.
    Distance,
    /// Everyone in reach marked the time unavailable.
    Availability,
    /// Everyone available holds a shift that overlaps this one.
    Overlap,
    /// Too little rest between shifts.
    Rest,
    /// Too many hours in some 24 hours.
    Hours,
    /// Too many days in a row.
    ConsecutiveDays,
}

pub struct Book<'a> {
    pub inst: &'a Instance,
    pub assign: Vec<u32>,
    /// Per member: the slots held.
    pub held: Vec<Vec<u32>>,
    pub hours: Vec<f64>,
    /// (site × shifts + shift, team) -> members of the team there.
    team_at: HashMap<(u32, u32), u32, foldhash::fast::FixedState>,
    /// Per slot: the member of the published roster (re-rostering), or `NONE`.
    pub published: Option<&'a [u32]>,
}

impl<'a> Book<'a> {
    pub fn new(inst: &'a Instance, published: Option<&'a [u32]>) -> Book<'a> {
        Book {
            inst,
            assign: vec![NONE; inst.slots()],
            held: vec![Vec::new(); inst.members.len()],
            hours: inst.members.iter().map(|m| m.hours_before.max(0.0)).collect(),
            team_at: HashMap::default(),
            published,
        }
    }

    fn group(&self, slot: u32) -> u32 {
        let r = self.inst.req_of(slot);
        r.site * self.inst.shifts.len() as u32 + r.shift
    }

    /// Teammates of `m` on the slot's site and shift (not counting `m`).
    pub fn teammates(&self, m: u32, slot: u32) -> u32 {
        let Some(team) = self.inst.members[m as usize].team else { return 0 };
        let n = self.team_at.get(&(self.group(slot), team)).copied().unwrap_or(0);
        if self.held[m as usize].iter().any(|&s| self.group(s) == self.group(slot)) { n - 1 } else { n }
    }

    pub fn put(&mut self, slot: u32, m: u32) {
        debug_assert_eq!(self.assign[slot as usize], NONE);
        self.assign[slot as usize] = m;
        self.held[m as usize].push(slot);
        self.hours[m as usize] += self.inst.hours(self.inst.req_of(slot).shift);
        if let Some(team) = self.inst.members[m as usize].team {
            *self.team_at.entry((self.group(slot), team)).or_insert(0) += 1;
        }
    }

    pub fn take(&mut self, slot: u32) -> u32 {
        let m = self.assign[slot as usize];
        debug_assert_ne!(m, NONE);
        self.assign[slot as usize] = NONE;
        self.held[m as usize].retain(|&s| s != slot);
        self.hours[m as usize] -= self.inst.hours(self.inst.req_of(slot).shift);
        if let Some(team) = self.inst.members[m as usize].team {
            let key = (self.group(slot), team);
            if let Some(n) = self.team_at.get_mut(&key) {
                *n -= 1;
                if *n == 0 {
                    self.team_at.remove(&key);
                }
            }
        }
        m
    }

    /// Why `m` may not also take a slot of `shift` (time rules only: overlap, rest, hours
    /// in 24 h, days in a row, availability), `ignoring` one slot they hold.
    pub fn blocked(&self, m: u32, shift: u32, ignoring: u32) -> Option<Rule> {
        let inst = self.inst;
        if inst.unavailable(m, shift) {
            return Some(Rule::Availability);
        }
        let new = inst.shifts[shift as usize];
        let rules = &inst.rules;
        let mut rest_short = false;
        // Only shifts within a day of the new one share a 24 h window with it.
        let mut near = Near::default();
        near.push((new.start, new.end));
        let mut days: u128 = 0;
        for &s in &self.held[m as usize] {
            if s == ignoring {
                continue;
            }
            let sh = inst.req_of(s).shift;
            let o = inst.shifts[sh as usize];
            if o.start < new.end && new.start < o.end {
                return Some(Rule::Overlap);
            }
            let gap = if o.end <= new.start { new.start - o.end } else { o.start - new.end };
            rest_short |= gap < rules.min_rest_ms;
            if o.end > new.start - DAY_MS && o.start < new.end + DAY_MS {
                near.push((o.start, o.end));
            }
            days |= day_bit(inst.day(sh));
        }
        if rest_short {
            return Some(Rule::Rest);
        }
        if most_in_a_day(near.as_slice()) > rules.max_in_24h_ms {
            return Some(Rule::Hours);
        }
        days |= day_bit(inst.day(shift));
        if longest_run(days) > rules.max_consecutive_days {
            return Some(Rule::ConsecutiveDays);
        }
        None
    }

    /// The cost of `m` taking `slot`, where `travel` is their travel to its site (metres):
    /// travel, minus the own-community and teammate bonuses, plus the growth of
    /// the fairness term and the change term.
    pub fn add_cost(&self, m: u32, slot: u32, travel: f64) -> f64 {
        let h = self.hours[m as usize];
        self.cost(m, slot, travel, h, h + self.inst.hours(self.inst.req_of(slot).shift))
    }

    /// What `m` holding `slot` costs now (for removing it: the saving).
    pub fn held_cost(&self, m: u32, slot: u32, travel: f64) -> f64 {
        let h = self.hours[m as usize];
        self.cost(m, slot, travel, h - self.inst.hours(self.inst.req_of(slot).shift), h)
    }

    /// `add_cost` without the teammate bonus (which looks up the team's members on the
    /// site and shift, the costliest part): `add_cost = add_cost_alone - team_bonus`.
    pub fn add_cost_alone(&self, m: u32, slot: u32, travel: f64) -> f64 {
        let h = self.hours[m as usize];
        self.cost_alone(m, slot, travel, h, h + self.inst.hours(self.inst.req_of(slot).shift))
    }

    /// The teammate bonus of `m` on `slot` (metres).
    pub fn team_bonus(&self, m: u32, slot: u32) -> f64 {
        self.inst.weights.team_pair_m * self.teammates(m, slot) as f64
    }

    /// The objective's part that `m` on `slot` adds, their hours going from `without` to `with`.
    fn cost(&self, m: u32, slot: u32, travel: f64, without: f64, with: f64) -> f64 {
        self.cost_alone(m, slot, travel, without, with) - self.team_bonus(m, slot)
    }

    fn cost_alone(&self, m: u32, slot: u32, travel: f64, without: f64, with: f64) -> f64 {
        let w = &self.inst.weights;
        let mut c = travel + w.fair_m_per_h2 * (with * with - without * without);
        if self.inst.own(m, self.inst.req_of(slot).site) {
            c -= w.own_community_m;
        }
        c + self.change_cost(m, slot)
    }

    pub fn change_cost(&self, m: u32, slot: u32) -> f64 {
        match self.published {
            Some(p) if p[slot as usize] != m => self.inst.weights.change_m,
            _ => 0.0,
        }
    }

    /// The slot `m` holds in `shift`, if any.
    pub fn slot_in(&self, m: u32, shift: u32) -> Option<u32> {
        self.held[m as usize].iter().copied().find(|&s| self.inst.req_of(s).shift == shift)
    }
}

const DAY_MS: i64 = 86_400_000;

/// The spans near a new shift: on the stack, unless there are many.
#[derive(Default)]
struct Near {
    fixed: [(i64, i64); 16],
    n: usize,
    more: Vec<(i64, i64)>,
}

impl Near {
    fn push(&mut self, span: (i64, i64)) {
        if self.n < self.fixed.len() {
            self.fixed[self.n] = span;
            self.n += 1;
        } else {
            if self.more.is_empty() {
                self.more.extend_from_slice(&self.fixed);
            }
            self.more.push(span);
        }
    }
    fn as_slice(&self) -> &[(i64, i64)] {
        if self.more.is_empty() { &self.fixed[..self.n] } else { &self.more }
    }
}

/// The most time the spans cover in any 24 h window: the maximum is reached by a window
/// that starts at a span's start or ends at a span's end.
fn most_in_a_day(spans: &[(i64, i64)]) -> i64 {
    let covered = |a: i64| spans.iter().map(|&(s, e)| (e.min(a + DAY_MS) - s.max(a)).max(0)).sum::<i64>();
    spans.iter().flat_map(|&(s, e)| [covered(s), covered(e - DAY_MS)]).max().unwrap_or(0)
}

fn day_bit(day: i64) -> u128 {
    if (0..128).contains(&day) { 1u128 << day } else { 0 }
}

/// The longest run of consecutive set bits.
pub fn longest_run(mut bits: u128) -> u32 {
    let mut n = 0;
    while bits != 0 {
        bits &= bits << 1;
        n += 1;
    }
    n
}
