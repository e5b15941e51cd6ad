//! The rostering problem as numbers: members, sites, shifts and requirements by compact
//! index (`u32`), the hard rules in milliseconds and metres, the soft weights. Built from a
//! campaign and a pool of members (`plan`), or directly by tests and the bench.
//!
//! Slots are the requirements unrolled: requirement `r` owns the slots
//! `first_slot[r] .. first_slot[r] + headcount`, in requirement order, so that a roster is
//! one `u32` per slot (`NONE` when empty) and encodes compactly.

use ::geo::{Distance, Haversine, Point};
use h3o::{CellIndex, LatLng, Resolution};

use super::super::geo::Position;
use super::super::time::Ts;

/// An empty slot.
pub const NONE: u32 = u32::MAX;

/// The hard rules (the campaign's), in the units the solver counts in.
#[derive(Debug, Clone, PartialEq)]
pub struct HardRules {
    /// Most time on shift in any 24 hours (ms).
    pub max_in_24h_ms: i64,
    /// Least time off between the end of one shift and the start of the next (ms).
    pub min_rest_ms: i64,
    /// Most calendar days in a row with a shift (days counted from `day0`).
    pub max_consecutive_days: u32,
    /// A member may serve at a site this close to their home or to their team's paired
    /// community (metres).
    pub max_distance_m: f64,
}

/// The soft objective's weights, in metre-equivalents (the objective is minimized; see
/// docs/ARCHITECTURE.md, "Campaigns").
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Weights {
    /// Per (hour of a member's total)²: spreads hours, so their Gini stays low.
    pub fair_m_per_h2: f64,
    /// Subtracted per pair of teammates on the same site and shift.
    pub team_pair_m: f64,
    /// Subtracted when the site is in the member's own (residence or paired) community.
    pub own_community_m: f64,
    /// Added per slot whose member differs from the published roster (re-rostering).
    pub change_m: f64,
}

impl Default for Weights {
    fn default() -> Self {
        Weights { fair_m_per_h2: 4.0, team_pair_m: 60.0, own_community_m: 300.0, change_m: 20_000.0 }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct PoolMember {
    pub home: Position,
    /// Residence community (index), if known.
    pub community: Option<u32>,
    pub team: Option<u32>,
    /// The team's paired community (index) and its centre.
    pub paired: Option<(u32, Position)>,
    pub skills: u64,
    /// Hours served before this roster (fairness counts them).
    pub hours_before: f64,
    /// Times the member cannot serve, half-open `[start, end)`.
    pub unavailable: Vec<(Ts, Ts)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SitePlace {
    pub position: Position,
    pub community: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Span {
    pub start: Ts,
    pub end: Ts,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Req {
    pub site: u32,
    pub shift: u32,
    pub role: u16,
    pub headcount: u32,
    pub skills: u64,
}

#[derive(Debug, Clone)]
pub struct Instance {
    pub rules: HardRules,
    pub weights: Weights,
    /// Day 0 starts here (the campaign's start).
    pub day0: Ts,
    pub members: Vec<PoolMember>,
    pub sites: Vec<SitePlace>,
    pub shifts: Vec<Span>,
    pub reqs: Vec<Req>,
    /// Derived by `new`: the first slot of each requirement, and each slot's requirement.
    pub first_slot: Vec<u32>,
    pub slot_req: Vec<u32>,
}

/// Metres between two positions (geo's haversine on the IUGG mean radius).
pub fn metres(a: Position, b: Position) -> f64 {
    Haversine.distance(Point::new(a.lng, a.lat), Point::new(b.lng, b.lat))
}

impl Instance {
    pub fn new(
        rules: HardRules,
        weights: Weights,
        day0: Ts,
        members: Vec<PoolMember>,
        sites: Vec<SitePlace>,
        shifts: Vec<Span>,
        reqs: Vec<Req>,
    ) -> Instance {
        let mut first_slot = Vec::with_capacity(reqs.len() + 1);
        let mut slot_req = Vec::new();
        for (r, q) in reqs.iter().enumerate() {
            first_slot.push(slot_req.len() as u32);
            slot_req.extend(std::iter::repeat_n(r as u32, q.headcount as usize));
        }
        first_slot.push(slot_req.len() as u32);
        Instance { rules, weights, day0, members, sites, shifts, reqs, first_slot, slot_req }
    }

    pub fn slots(&self) -> usize {
        self.slot_req.len()
    }

    /// The requirement of a slot.
    pub fn req_of(&self, slot: u32) -> &Req {
        &self.reqs[self.slot_req[slot as usize] as usize]
    }

    pub fn hours(&self, shift: u32) -> f64 {
        let s = self.shifts[shift as usize];
        (s.end - s.start) as f64 / 3_600_000.0
    }

    /// The day (from `day0`) a shift starts on.
    pub fn day(&self, shift: u32) -> i64 {
        (self.shifts[shift as usize].start - self.day0).div_euclid(86_400_000)
    }

    /// Is the member unavailable at any time of the shift?
    pub fn unavailable(&self, m: u32, shift: u32) -> bool {
        let s = self.shifts[shift as usize];
        self.members[m as usize].unavailable.iter().any(|&(a, b)| a < s.end && s.start < b)
    }

    /// Within the distance limit of the site, from home or from the paired community?
    pub fn in_reach(&self, m: u32, site: u32) -> bool {
        self.travel(m, site) <= self.rules.max_distance_m
    }

    /// Travel to the site in metres: from home, or from the team's paired community where
    /// the member serves, whichever is nearer.
    pub fn travel(&self, m: u32, site: u32) -> f64 {
        let p = self.sites[site as usize].position;
        let mem = &self.members[m as usize];
        let home = metres(mem.home, p);
        mem.paired.map_or(home, |(_, c)| home.min(metres(c, p)))
    }

    /// Is the site in the member's own community (residence or paired)?
    pub fn own(&self, m: u32, site: u32) -> bool {
        let mem = &self.members[m as usize];
        self.sites[site as usize]
            .community
            .is_some_and(|c| mem.community == Some(c) || mem.paired.is_some_and(|(p, _)| p == c))
    }
}

/// Per site: the members within reach, nearest first, with their travel (`travel`) in
/// metres. Found through an H3 index of homes (resolution 7) and the paired communities'
/// centres, then measured exactly.
pub struct Reach {
    pub by_site: Vec<Vec<(u32, f32)>>,
}

impl Reach {
    pub fn build(inst: &Instance) -> Reach {
        let res = Resolution::Seven;
        let limit = inst.rules.max_distance_m;
        // Neighbouring res-7 centres are √3 edges apart; a ring of k covers at least
        // (k - 1) × 0.75 of that in every direction (with H3's distortion to spare).
        let spacing = res.edge_length_m() * 3f64.sqrt();
        let k = (limit / (0.75 * spacing)).ceil() as u32 + 2;
        let cell = |p: Position| LatLng::new(p.lat, p.lng).map(|ll| ll.to_cell(res)).ok();
        // Homes by cell, paired communities by their centre.
        let mut homes: std::collections::HashMap<CellIndex, Vec<u32>> = std::collections::HashMap::new();
        let mut paired: std::collections::BTreeMap<u32, (Position, Vec<u32>)> = std::collections::BTreeMap::new();
        for (i, m) in inst.members.iter().enumerate() {
            if let Some(c) = cell(m.home) {
                homes.entry(c).or_default().push(i as u32);
            }
            if let Some((c, p)) = m.paired {
                paired.entry(c).or_insert_with(|| (p, Vec::new())).1.push(i as u32);
            }
        }
        let linear = k > 40;
        let mut seen = vec![u32::MAX; inst.members.len()];
        let mut by_site = Vec::with_capacity(inst.sites.len());
        for (s, site) in inst.sites.iter().enumerate() {
            let mut list: Vec<(u32, f32)> = Vec::new();
            let mut consider = |m: u32, list: &mut Vec<(u32, f32)>| {
                if seen[m as usize] == s as u32 {
                    return;
                }
                seen[m as usize] = s as u32;
                let t = inst.travel(m, s as u32);
                if t <= limit {
                    list.push((m, t as f32));
                }
            };
            match cell(site.position) {
                Some(c) if !linear => {
                    for near in c.grid_disk::<Vec<_>>(k) {
                        for &m in homes.get(&near).map(Vec::as_slice).unwrap_or(&[]) {
                            consider(m, &mut list);
                        }
                    }
                    for (centre, ms) in paired.values() {
                        if metres(*centre, site.position) <= limit {
                            for &m in ms {
                                consider(m, &mut list);
                            }
                        }
                    }
                }
                _ => (0..inst.members.len() as u32).for_each(|m| consider(m, &mut list)),
            }
            // Nearest first, ties by member: travel is never negative, so its bits order
            // as the numbers do, and one u64 key sorts both (each member once: unstable
            // is deterministic).
            list.sort_unstable_by_key(|&(m, t)| (u64::from(t.to_bits()) << 32) | u64::from(m));
            by_site.push(list);
        }
        Reach { by_site }
    }
}

/// The pool as the solver sees it, from the city: each member's home is the centre of
/// their residence grid (not their last known position), their community that grid's,
/// their team and its paired community from the city.
pub fn pool_from_city(
    city: &super::super::org::CityIndex,
    members: &[u32],
    hours_before: impl Fn(u32) -> f64,
    unavailable: impl Fn(u32) -> Vec<(Ts, Ts)>,
) -> Vec<PoolMember> {
    members
        .iter()
        .map(|&m| {
            let grid = city.member_residence[m as usize];
            PoolMember {
                home: city.grid_centers[grid as usize],
                community: Some(city.grid_places[grid as usize].community),
                team: city.member_team[m as usize],
                paired: city.member_paired_community[m as usize].map(|c| (c, city.community_centers[c as usize])),
                skills: city.member_skills[m as usize],
                hours_before: hours_before(m),
                unavailable: unavailable(m),
            }
        })
        .collect()
}

/// Required skills as a mask. A skill no member of the city holds makes the mask
/// all-ones, which no member matches (a city names at most 63 skills in practice; with
/// 64 a member holding every one would match).
pub fn skills_mask(city: &super::super::org::CityIndex, skills: &[String]) -> u64 {
    let m = city.skill_mask(skills);
    if m.unheld > 0 { u64::MAX } else { m.bits }
}
