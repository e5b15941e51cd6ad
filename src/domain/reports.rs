//! Read-models that compute: registration rates (双报到), reports per member, unit and
//! community (考核评价), and the fairness figures. Each is built for one caller and holds
//! only the rows in that caller's scope (`scope`), so a handler reads, then serializes.

use std::collections::BTreeSet;

use serde::Serialize;
use utoipa::ToSchema;

use super::command::Actor;
use super::event::Ts;
use super::scope;
use super::service::{self, Figures};
use super::state::State;
use super::time::rfc3339;
use super::workload::LoadStats;

#[derive(Debug, Serialize, ToSchema)]
pub struct UnitRegistration {
    pub id: String,
    pub name: String,
    pub members: u32,
    pub registered: u32,
    /// registered / members.
    pub rate: f64,
    pub paired_communities: Vec<String>,
    pub registered_communities: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CommunityRegistration {
    pub id: String,
    pub name: String,
    pub residents: u32,
    pub registered: u32,
    pub rate: f64,
    pub units_paired: Vec<String>,
    pub units_registered: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RegistrationView {
    pub units: Vec<UnitRegistration>,
    pub communities: Vec<CommunityRegistration>,
}

/// `n / of`, to four decimals; 0 for an empty set.
pub fn share(n: u32, of: u32) -> f64 {
    if of == 0 { 0.0 } else { (n as f64 / of as f64 * 10_000.0).round() / 10_000.0 }
}

/// Registration per unit and per community, the rows the actor may see.
pub fn registration(state: &State, actor: &Actor) -> RegistrationView {
    let Some(city) = state.city.city() else { return RegistrationView { units: Vec::new(), communities: Vec::new() } };
    let mut unit_counts = vec![(0u32, 0u32); city.units.len()];
    let mut community_counts = vec![(0u32, 0u32); city.communities.len()];
    for (i, m) in city.members.iter().enumerate() {
        let u = state.city.member_unit[i] as usize;
        let c = state.city.residence_community(i as u32) as usize;
        unit_counts[u].0 += 1;
        community_counts[c].0 += 1;
        if m.registered {
            unit_counts[u].1 += 1;
            community_counts[c].1 += 1;
        }
    }
    let mut paired: Vec<BTreeSet<String>> = vec![BTreeSet::new(); city.units.len()];
    let mut hosted: Vec<BTreeSet<String>> = vec![BTreeSet::new(); city.communities.len()];
    for t in &city.teams {
        paired[state.city.unit_by_id[&t.unit_id] as usize].insert(t.community_id.clone());
        hosted[state.city.community_by_id[&t.community_id] as usize].insert(t.unit_id.clone());
    }
    let registered_with = |keep: &dyn Fn(&(String, String)) -> Option<String>| -> Vec<String> {
        state.unit_registrations.iter().filter_map(keep).collect()
    };
    // (members, registered, rate) of a row
    let figures = |(n, r): (u32, u32)| (n, r, share(r, n));
    let mut units = Vec::new();
    for (i, u) in city.units.iter().enumerate().filter(|(i, _)| scope::unit(state, actor, *i as u32)) {
        let (members, registered, rate) = figures(unit_counts[i]);
        let (id, name) = (u.id.clone(), u.name.clone());
        let paired_communities = paired[i].iter().cloned().collect();
        let registered_communities = registered_with(&|(uu, c)| (uu == &u.id).then(|| c.clone()));
        units.push(UnitRegistration {
            id,
            name,
            members,
            registered,
            rate,
            paired_communities,
            registered_communities,
        });
    }
    let mut communities = Vec::new();
    for (i, c) in city.communities.iter().enumerate().filter(|(i, _)| scope::community(state, actor, *i as u32)) {
        let (residents, registered, rate) = figures(community_counts[i]);
        let (id, name) = (c.id.clone(), c.name.clone());
        let units_paired = hosted[i].iter().cloned().collect();
        let units_registered = registered_with(&|(u, cc)| (cc == &c.id).then(|| u.clone()));
        communities.push(CommunityRegistration {
            id,
            name,
            residents,
            registered,
            rate,
            units_paired,
            units_registered,
        });
    }
    RegistrationView { units, communities }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReportRow {
    /// member, unit or community id.
    pub id: String,
    pub name: String,
    pub members: u32,
    pub registered: u32,
    pub registration_rate: f64,
    #[serde(flatten)]
    pub figures: Figures,
    /// Hours of service the row's members owe over the period at the yearly target
    /// (`dispatch.service.yearly_hours_target` per member per year, prorated by the
    /// period's length); absent when the period has no `from`.
    pub target_hours: Option<f64>,
    /// Members of the row with fewer hours than their share of `target_hours`; absent
    /// when the period has no `from`.
    pub members_below_target: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Report {
    pub scope: String,
    /// Hours of service each member owes per year (`dispatch.service.yearly_hours_target`).
    pub yearly_hours_target: f64,
    pub from: Option<String>,
    pub to: String,
    pub total: ReportRow,
    /// One row per member (for a unit or community report).
    pub members: Vec<ReportRow>,
}

/// The period of a report: `[from, to)`, in ms.
#[derive(Debug, Clone, Copy)]
pub struct Period {
    pub from: Option<Ts>,
    pub to: Ts,
}

/// The report on a member: for those who may see the member's work; `None` answers 404.
pub fn member_report(state: &State, actor: &Actor, id: &str, period: Period) -> Option<Report> {
    let m = state.member_index(id).filter(|&m| scope::member_work(state, actor, m))?;
    let name = state.city.members()[m as usize].name.clone();
    Some(report(state, format!("member:{id}"), id, name, &[m], period, false))
}

/// The report on a unit, one row per member whose work the actor may see.
pub fn unit_report(state: &State, actor: &Actor, id: &str, period: Period) -> Option<Report> {
    let u = state.city.unit_by_id.get(id).copied().filter(|&u| scope::unit(state, actor, u))?;
    let members: Vec<u32> = (0..state.roster.members.len() as u32)
        .filter(|&m| state.city.member_unit[m as usize] == u && scope::member_work(state, actor, m))
        .collect();
    let name = state.city.city()?.units[u as usize].name.clone();
    Some(report(state, format!("unit:{id}"), id, name, &members, period, true))
}

/// The report on a community: its residents and the members of the teams it hosts.
pub fn community_report(state: &State, actor: &Actor, id: &str, period: Period) -> Option<Report> {
    let c = state.city.community_by_id.get(id).copied().filter(|&c| scope::community(state, actor, c))?;
    let members: Vec<u32> =
        service::community_members(state, c).into_iter().filter(|&m| scope::member_work(state, actor, m)).collect();
    let name = state.city.community(c).name.clone();
    Some(report(state, format!("community:{id}"), id, name, &members, period, true))
}

fn report(
    state: &State,
    scope: String,
    id: &str,
    name: String,
    members: &[u32],
    period: Period,
    per_member: bool,
) -> Report {
    let all = state.city.members();
    let mut total = Figures::default();
    let mut rows = Vec::new();
    let mut registered = 0;
    let figures = service::figures_for(state, members, period.from.unwrap_or(i64::MIN), period.to);
    for (&m, f) in members.iter().zip(figures) {
        total.add(&f);
        let member = &all[m as usize];
        registered += member.registered as u32;
        if per_member {
            rows.push(ReportRow {
                id: member.id.clone(),
                name: member.name.clone(),
                members: 1,
                registered: member.registered as u32,
                registration_rate: member.registered as u32 as f64,
                figures: f,
                target_hours: None,
                members_below_target: None,
            });
        }
    }
    total.hours = (total.hours * 100.0).round() / 100.0;
    total.points = (total.points * 100.0).round() / 100.0;
    let n = members.len() as u32;
    Report {
        scope,
        yearly_hours_target: 0.0,
        from: period.from.map(rfc3339),
        to: rfc3339(period.to),
        total: ReportRow {
            id: id.to_string(),
            name,
            members: n,
            registered,
            registration_rate: share(registered, n),
            figures: total,
            target_hours: None,
            members_below_target: None,
        },
        members: rows,
    }
}

/// A year, for prorating the yearly target: 365 days.
const YEAR_MS: f64 = 365.0 * 86_400_000.0;

/// Fills in the yearly target of service hours (the report's 每人每年服务不少于 20 小时):
/// each member owes `yearly_hours` × the period's length in years; a row's `target_hours`
/// is that times its members, and `members_below_target` counts those under their share.
/// A period without `from` has no length, so it gets no target.
pub fn apply_target(r: &mut Report, yearly_hours: f64, period: Period) {
    r.yearly_hours_target = yearly_hours;
    let Some(from) = period.from else { return };
    let owed = yearly_hours * ((period.to - from).max(0) as f64 / YEAR_MS);
    let round = |h: f64| (h * 100.0).round() / 100.0;
    let below = |hours: f64, members: u32| hours + 1e-9 < owed * members as f64;
    for row in &mut r.members {
        row.target_hours = Some(round(owed * row.members as f64));
        row.members_below_target = Some(below(row.figures.hours, row.members) as u32);
    }
    let t = &mut r.total;
    t.target_hours = Some(round(owed * t.members as f64));
    t.members_below_target = Some(if r.members.is_empty() {
        // a member's own report: the total is the member
        below(t.figures.hours, t.members) as u32
    } else {
        r.members.iter().filter_map(|m| m.members_below_target).sum()
    });
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FairnessRow {
    pub id: String,
    pub name: String,
    pub load: LoadStats,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FairnessView {
    /// By residence community.
    pub communities: Vec<FairnessRow>,
    pub units: Vec<FairnessRow>,
}

/// Difficulty-weighted load per residence community and per unit, the rows in scope.
pub fn fairness(state: &State, actor: &Actor) -> FairnessView {
    let Some(city) = state.city.city() else {
        return FairnessView { communities: Vec::new(), units: Vec::new() };
    };
    let mut by_community = vec![Vec::new(); city.communities.len()];
    let mut by_unit = vec![Vec::new(); city.units.len()];
    for i in 0..city.members.len() {
        let load = state.roster.members[i].work.load;
        by_community[state.city.residence_community(i as u32) as usize].push(load);
        by_unit[state.city.member_unit[i] as usize].push(load);
    }
    let communities = city
        .communities
        .iter()
        .enumerate()
        .filter(|(i, _)| scope::community(state, actor, *i as u32))
        .map(|(i, c)| FairnessRow { id: c.id.clone(), name: c.name.clone(), load: LoadStats::of(&by_community[i]) })
        .collect();
    let units = city
        .units
        .iter()
        .enumerate()
        .filter(|(i, _)| scope::unit(state, actor, *i as u32))
        .map(|(i, u)| FairnessRow { id: u.id.clone(), name: u.name.clone(), load: LoadStats::of(&by_unit[i]) })
        .collect();
    FairnessView { communities, units }
}
