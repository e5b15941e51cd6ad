//! Cross-community balance (力量统筹): for each community, the members it could send now
//! against the headcount its open incidents still need; and, in wartime, transfers from
//! surplus communities to the nearest deficit ones that never leave a giver in deficit.

use std::collections::HashMap;

use serde::Serialize;
use utoipa::ToSchema;

use super::incident::Status;
use super::response::Rules;
use super::state::State;
use super::time::Ts;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct CommunityBalance {
    pub community_id: String,
    pub district_id: String,
    /// Members whose home is the community and who could take an offer now.
    pub available: u32,
    /// Headcount still open on the community's incidents.
    pub demand: u32,
    /// available − demand: positive is surplus, negative deficit.
    pub balance: i64,
    pub wartime: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Proposal {
    /// `<from>><to>`: stable for as long as the proposal holds.
    pub id: String,
    pub from: String,
    pub to: String,
    pub members: Vec<String>,
    /// H3 grid distance between the two communities' centres (resolution 9).
    pub cells_apart: i64,
}

/// Members available now, by home community index.
fn available_by_community(state: &State, rules: &Rules, now: Ts) -> HashMap<u32, Vec<u32>> {
    let mut by: HashMap<u32, Vec<u32>> = HashMap::new();
    for idx in 0..state.roster.members.len() as u32 {
        if state.roster.available(idx, rules, now) {
            by.entry(state.roster.home(idx)).or_default().push(idx);
        }
    }
    by
}

fn demand_by_community(state: &State) -> HashMap<u32, u32> {
    let mut by = HashMap::new();
    for inc in state.incidents.values().filter(|i| i.status == Status::Open) {
        let c = state.city.grid_places[inc.grid as usize].community;
        *by.entry(c).or_insert(0) += inc.headcount.saturating_sub(inc.accepted());
    }
    by
}

pub fn balances(state: &State, rules: &Rules, now: Ts) -> Vec<CommunityBalance> {
    let Some(city) = state.city.city() else { return Vec::new() };
    let available = available_by_community(state, rules, now);
    let demand = demand_by_community(state);
    city.communities
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let a = available.get(&(i as u32)).map_or(0, Vec::len) as u32;
            let d = demand.get(&(i as u32)).copied().unwrap_or(0);
            let district_id = state.city.district_id_of_community(i as u32).to_string();
            CommunityBalance {
                community_id: c.id.clone(),
                wartime: state.wartime(&district_id),
                district_id,
                available: a,
                demand: d,
                balance: a as i64 - d as i64,
            }
        })
        .collect()
}

fn cells_apart(state: &State, a: u32, b: u32) -> i64 {
    let (ca, cb) = (state.city.community_centers[a as usize], state.city.community_centers[b as usize]);
    match ca.cell().0.grid_distance(cb.cell().0) {
        Ok(d) => d as i64,
        // Too far apart for a local IJ path: fall back to distance over a cell's width.
        Err(_) => (ca.distance_m(cb) / 350.0).round() as i64,
    }
}

/// Transfers for the deficit communities in wartime, nearest surplus first. A giver gives
/// at most its surplus, so no transfer moves a community into deficit.
pub fn proposals(state: &State, rules: &Rules, now: Ts) -> Vec<Proposal> {
    let rows = balances(state, rules, now);
    let mut available = available_by_community(state, rules, now);
    let mut surplus: HashMap<u32, i64> = rows
        .iter()
        .enumerate()
        .filter(|(_, r)| r.wartime && r.balance > 0)
        .map(|(i, r)| (i as u32, r.balance))
        .collect();
    let mut deficits: Vec<(u32, i64)> = rows
        .iter()
        .enumerate()
        .filter(|(_, r)| r.wartime && r.balance < 0)
        .map(|(i, r)| (i as u32, -r.balance))
        .collect();
    deficits.sort_by_key(|&(i, need)| (-need, i));
    let mut out = Vec::new();
    for (to, mut need) in deficits {
        let mut givers: Vec<(i64, u32)> =
            surplus.iter().filter(|(_, s)| **s > 0).map(|(&from, _)| (cells_apart(state, from, to), from)).collect();
        givers.sort_unstable();
        for (apart, from) in givers {
            if need == 0 {
                break;
            }
            let give = need.min(surplus[&from]);
            let target = state.city.community_centers[to as usize];
            let pool = available.get_mut(&from).expect("a giver has available members");
            pool.sort_by(|&a, &b| {
                let (pa, pb) = (state.roster.members[a as usize].position, state.roster.members[b as usize].position);
                pb.distance_m(target).total_cmp(&pa.distance_m(target)).then(b.cmp(&a))
            });
            let chosen: Vec<u32> = (0..give).filter_map(|_| pool.pop()).collect();
            if chosen.is_empty() {
                continue;
            }
            need -= chosen.len() as i64;
            *surplus.get_mut(&from).expect("giver") -= chosen.len() as i64;
            let (from_id, to_id) = (&state.city.community(from).id, &state.city.community(to).id);
            let mut members: Vec<String> =
                chosen.iter().map(|&m| state.city.members()[m as usize].id.clone()).collect();
            members.sort();
            out.push(Proposal {
                id: format!("{from_id}>{to_id}"),
                from: from_id.clone(),
                to: to_id.clone(),
                members,
                cells_apart: apart,
            });
        }
    }
    out
}
