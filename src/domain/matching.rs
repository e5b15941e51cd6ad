//! Matching: who is offered an incident.
//!
//! Members are bucketed by the resolution-9 H3 cell of their last known position. A search
//! walks H3 rings outward from the incident's cell, keeping on-call, unengaged members whose
//! position lies in the level's reach, until it holds `candidate_pool` of them; the
//! `candidate_pool` nearest of those are ranked. If rings up to
//! `max_ring` do not fill the pool and the reach is wider than the rings covered, a linear
//! scan of the roster finishes the job: rare (sparse areas, city-wide calls) and still
//! bounded by the roster size.
//!
//! Skills are compared as bit masks (`CityIndex::member_skills`). The pool is ranked by a
//! score in metre-equivalents, lowest first:
//! `distance + missing skills × w + recent-duty penalty − residence-grid bonus − paired-team bonus`,
//! with the member index as the final tie-break so the order is deterministic.

use std::collections::{HashMap, HashSet};

use super::geo::{Cell, Position};
use super::org::{CityIndex, SkillMask};
use super::response::{Reach, Rules};
use super::time::Ts;
use super::workload::{TaskClass, Workload};

/// What the dispatcher knows of a member between events.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MemberRt {
    pub on_call: bool,
    /// Last known position: soft state, from the import and then `location` messages.
    pub position: Position,
    pub cell: Cell,
    /// When the member last accepted a duty (fairness: less recent duty first).
    pub last_duty_at: Option<Ts>,
    pub duties: u32,
    /// The offer that holds the member now: offered, or accepted on an incident not closed.
    pub engaged: Option<String>,
    /// On call because wartime holds where their assault team is paired.
    pub forced: bool,
    /// The community the member reports to when a transfer re-pointed them (else their residence).
    pub home: Option<u32>,
    /// Load, easy tasks and duty time (fairness and fatigue).
    pub work: Workload,
    /// Open mobilizations that ordered this member.
    pub orders: Vec<String>,
    /// Credits, balances and answers (reports, reliability).
    pub ledger: super::service_data::Ledger,
}

/// What the ring search reads for every member it passes, packed in 40 bytes so that a
/// search touches one cache line per member instead of the whole `MemberRt` and `Member`.
/// Derived from `MemberRt` (and the city) by `Roster::refresh`: change a member only
/// through `Roster::edit`, which keeps this in step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hot {
    pub lat: f64,
    pub lng: f64,
    pub residence: u32,
    /// Community the member's team is paired with, `u32::MAX` when none.
    pub paired: u32,
    /// A transfer's community, `u32::MAX` when none.
    pub home: u32,
    /// On call (by choice or wartime) and not engaged.
    pub ready: bool,
    /// Has duty or easy-task history, so fatigue and the easy cap must be looked at.
    pub history: bool,
}

/// The members and the spatial index over them.
#[derive(Debug, Clone, Default)]
pub struct Roster {
    /// Read freely; change through `edit` (or `move_to`) so `hot` follows.
    pub members: Vec<MemberRt>,
    pub buckets: HashMap<Cell, Vec<u32>>,
    pub hot: Vec<Hot>,
    /// How many members are `ready` (on call and free): when none is, a search is skipped
    /// outright instead of walking every ring and scanning the roster for nobody.
    pub ready: usize,
}

impl Roster {
    pub fn from_city(city: &CityIndex) -> Self {
        let mut roster = Roster::default();
        for i in 0..city.members().len() as u32 {
            roster.add(city, i);
        }
        roster
    }

    /// Appends the city's member `idx` (the next one) to the roster.
    pub fn add(&mut self, city: &CityIndex, idx: u32) {
        debug_assert_eq!(idx as usize, self.members.len(), "members are added in order");
        let m = &city.members()[idx as usize];
        let cell = m.position.cell();
        self.members.push(MemberRt {
            on_call: m.on_call,
            position: m.position,
            cell,
            last_duty_at: None,
            duties: 0,
            engaged: None,
            forced: false,
            home: None,
            work: Workload::default(),
            orders: Vec::new(),
            ledger: Default::default(),
        });
        self.buckets.entry(cell).or_default().push(idx);
        self.hot.push(Hot {
            lat: 0.0,
            lng: 0.0,
            residence: city.residence_community(idx),
            paired: city.member_paired_community[idx as usize].unwrap_or(u32::MAX),
            home: u32::MAX,
            ready: false,
            history: false,
        });
        self.refresh(idx);
    }

    /// Changes one member and brings its `Hot` entry up to date.
    pub fn edit<R>(&mut self, idx: u32, f: impl FnOnce(&mut MemberRt) -> R) -> R {
        let r = f(&mut self.members[idx as usize]);
        self.refresh(idx);
        r
    }

    /// Every `Hot` entry agrees with its `MemberRt` (checked after each command in debug builds).
    pub fn hot_in_step(&self) -> bool {
        (0..self.members.len() as u32).all(|i| self.derive_hot(i) == self.hot[i as usize])
            && self.hot.iter().filter(|h| h.ready).count() == self.ready
    }

    fn derive_hot(&self, idx: u32) -> Hot {
        let m = &self.members[idx as usize];
        let w = &m.work;
        Hot {
            lat: m.position.lat,
            lng: m.position.lng,
            home: m.home.unwrap_or(u32::MAX),
            ready: (m.on_call || m.forced) && m.engaged.is_none(),
            history: w.duty_since.is_some() || !w.duty_log.is_empty() || !w.easy_accepts.is_empty(),
            ..self.hot[idx as usize]
        }
    }

    /// Recomputes a member's `Hot` entry from `MemberRt`.
    pub fn refresh(&mut self, idx: u32) {
        let new = self.derive_hot(idx);
        let old = std::mem::replace(&mut self.hot[idx as usize], new);
        match (old.ready, new.ready) {
            (false, true) => self.ready += 1,
            (true, false) => self.ready -= 1,
            _ => {}
        }
    }

    /// Moves a member to a new position, re-bucketing when the cell changes.
    pub fn move_to(&mut self, idx: u32, p: Position) {
        let cell = p.cell();
        self.hot[idx as usize].lat = p.lat;
        self.hot[idx as usize].lng = p.lng;
        let m = &mut self.members[idx as usize];
        m.position = p;
        if cell == m.cell {
            return;
        }
        let old = std::mem::replace(&mut m.cell, cell);
        if let Some(b) = self.buckets.get_mut(&old) {
            if let Some(i) = b.iter().position(|&x| x == idx) {
                b.swap_remove(i);
            }
            if b.is_empty() {
                self.buckets.remove(&old);
            }
        }
        self.buckets.entry(cell).or_default().push(idx);
    }

    /// On call (by choice or by wartime), free, and not at the fatigue cap.
    pub fn available(&self, idx: u32, rules: &Rules, now: Ts) -> bool {
        let h = &self.hot[idx as usize];
        h.ready && !(h.history && self.members[idx as usize].work.fatigued(now, rules))
    }

    /// The community a member answers to: a transfer's, else their residence's.
    pub fn home(&self, idx: u32) -> u32 {
        let h = &self.hot[idx as usize];
        if h.home == u32::MAX { h.residence } else { h.home }
    }
}

/// The incident side of a search.
pub struct Target<'a> {
    pub location: Position,
    pub grid: u32,
    pub skills: &'a [String],
    /// Members already offered this incident.
    pub offered: &'a HashSet<u32>,
    pub difficulty: u8,
    pub class: TaskClass,
    /// Peacetime, not escalated: only members whose home is this community.
    pub own_community: Option<u32>,
    /// Wartime: reliability breaks ties.
    pub wartime: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    pub member: u32,
    pub distance_m: f64,
    pub score: f64,
}

/// Is a member positioned in `cell` within `reach` of the incident's grid?
fn in_reach(city: &CityIndex, reach: Reach, incident_grid: u32, cell: Cell) -> bool {
    if reach == Reach::City {
        return true;
    }
    let Some(&g) = city.cell_to_grid.get(&cell) else {
        return false;
    };
    let (here, there) = (city.grid_places[g as usize], city.grid_places[incident_grid as usize]);
    match reach {
        Reach::Grid => g == incident_grid || city.grid_neighbours[incident_grid as usize].contains(&g),
        Reach::Community => here.community == there.community,
        Reach::Street => here.street == there.street,
        Reach::District => here.district == there.district,
        Reach::City => true,
    }
}

/// The best `want` candidates for `target` within `reach`, best first.
pub fn find(
    city: &CityIndex,
    roster: &Roster,
    rules: &Rules,
    target: &Target<'_>,
    reach: Reach,
    want: usize,
    now: Ts,
) -> Vec<Candidate> {
    if want == 0 || roster.ready == 0 {
        return Vec::new();
    }
    let pool_size = rules.candidate_pool.max(want);
    let origin = target.location.cell();
    let mut pool: Vec<u32> = Vec::with_capacity(pool_size * 2);
    let easy = target.class == TaskClass::Easy;
    let eligible = |idx: u32| {
        let h = &roster.hot[idx as usize];
        if !h.ready {
            return false;
        }
        if let Some(c) = target.own_community {
            let home = if h.home == u32::MAX { h.residence } else { h.home };
            if home != c && h.paired != c {
                return false;
            }
        }
        if target.offered.contains(&idx) {
            return false;
        }
        if h.history {
            let w = &roster.members[idx as usize].work;
            if w.fatigued(now, rules) || (easy && w.easy_capped(now, rules)) {
                return false;
            }
        }
        true
    };

    // Rings until the pool is full. The nearest member may sit one ring further than the
    // ring that filled it (a cell is not a circle): at resolution 9 that is an error of at
    // most a cell's width, ~350 m, well inside the score's other terms. Taking one more
    // ring every time would cost seven times the members for that.
    let mut k = 0;
    while k <= rules.max_ring && pool.len() < pool_size {
        for cell in origin.ring(k) {
            let Some(bucket) = roster.buckets.get(&cell) else { continue };
            if !in_reach(city, reach, target.grid, cell) {
                continue;
            }
            pool.extend(bucket.iter().copied().filter(|&i| eligible(i)));
        }
        k += 1;
    }
    // A grid and its neighbours lie well within `max_ring`; any wider reach may not.
    if pool.len() < pool_size && reach != Reach::Grid {
        // Sparse: scan the whole roster for the members the rings did not reach.
        let mut seen = vec![false; roster.members.len()];
        for &i in &pool {
            seen[i as usize] = true;
        }
        pool.extend(
            (0..roster.members.len() as u32)
                .filter(|&i| eligible(i) && !seen[i as usize])
                .filter(|&i| in_reach(city, reach, target.grid, roster.members[i as usize].cell)),
        );
    }

    // Rank only the `pool_size` nearest: distance first (cheap), the full score after.
    // Pre-select on a flat-earth squared distance (no trigonometry per member; the order
    // it gives is the haversine's to within a fraction of a metre at city scale).
    let kx = target.location.lat.to_radians().cos();
    let flat = |idx: u32| {
        let h = &roster.hot[idx as usize];
        let (dx, dy) = ((h.lng - target.location.lng) * kx, h.lat - target.location.lat);
        dx * dx + dy * dy
    };
    let mut near: Vec<(f64, u32)> = pool.into_iter().map(|idx| (flat(idx), idx)).collect();
    if near.len() > pool_size {
        near.select_nth_unstable_by(pool_size - 1, |a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        near.truncate(pool_size);
    }
    for n in &mut near {
        let h = &roster.hot[n.1 as usize];
        n.0 = Position { lat: h.lat, lng: h.lng }.distance_m(target.location);
    }
    let need = city.skill_mask(target.skills);
    let mut ranked: Vec<Candidate> = near
        .into_iter()
        .map(|(distance_m, idx)| Candidate {
            member: idx,
            distance_m,
            score: score(city, roster, rules, target, need, idx, distance_m, now),
        })
        .collect();
    ranked.sort_by(|a, b| a.score.total_cmp(&b.score).then(a.member.cmp(&b.member)));
    ranked.truncate(want);
    ranked
}

/// The reasons a candidate was chosen, as short codes for the offer's "why you".
pub fn why(
    city: &CityIndex,
    roster: &Roster,
    rules: &Rules,
    target: &Target<'_>,
    c: &Candidate,
    now: Ts,
) -> Vec<String> {
    let rt = &roster.members[c.member as usize];
    let mut why = Vec::new();
    if c.distance_m <= 500.0 {
        why.push("near");
    }
    if !target.skills.is_empty() && city.skill_mask(target.skills).missing(city.member_skills[c.member as usize]) == 0 {
        why.push("skills");
    }
    if city.member_residence[c.member as usize] == target.grid {
        why.push("lives_here");
    }
    let community = city.grid_places[target.grid as usize].community;
    if city.member_paired_community[c.member as usize] == Some(community) {
        why.push("team_paired");
    }
    if rt.ledger.offered >= 3 && rt.ledger.reliability().is_some_and(|r| r >= 0.8) {
        why.push("reliable");
    }
    if target.class == TaskClass::Hard && rt.work.load > 0.0 && rt.work.hard_load < rt.work.load / 2.0 {
        why.push("less_hard_work");
    }
    let window = rules.weights.recent_duty_window_s as i64 * 1000;
    if rt.last_duty_at.is_none_or(|t| now - t >= window) {
        why.push("rested");
    }
    why.into_iter().map(str::to_string).collect()
}

#[allow(clippy::too_many_arguments)]
fn score(
    city: &CityIndex,
    roster: &Roster,
    rules: &Rules,
    target: &Target<'_>,
    need: SkillMask,
    idx: u32,
    distance_m: f64,
    now: Ts,
) -> f64 {
    let w = &rules.weights;
    let rt = &roster.members[idx as usize];
    let missing = need.missing(city.member_skills[idx as usize]) as f64;
    let mut score = distance_m + missing * w.missing_skill_m + rt.work.score_m(target.difficulty, rules);
    if let Some(last) = rt.last_duty_at {
        let window_ms = (w.recent_duty_window_s as f64 * 1000.0).max(1.0);
        let fade = 1.0 - ((now - last).max(0) as f64 / window_ms);
        score += w.recent_duty_m * fade.max(0.0);
    }
    if city.member_residence[idx as usize] == target.grid {
        score -= w.residence_grid_m;
    }
    if target.wartime
        && let Some(r) = rt.ledger.reliability()
    {
        score -= w.reliability_m * r;
    }
    let community = city.grid_places[target.grid as usize].community;
    if city.member_paired_community[idx as usize] == Some(community) {
        score -= w.paired_team_m;
    }
    score
}
