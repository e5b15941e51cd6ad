//! What the HTTP API answers: views built from the committed state.

use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::dispatcher::{State, rfc3339};
use crate::domain::event::Ts;
use crate::domain::geo::Position;
use crate::domain::incident::{Incident, OfferState, Status};
use crate::domain::response::{Level, Rules};

#[derive(Debug, Serialize, ToSchema)]
pub struct OfferView {
    pub offer_id: String,
    pub member_id: String,
    pub state: OfferState,
    pub distance_m: f64,
    pub sent_at: String,
    pub expires_at: String,
    pub answered_at: Option<String>,
    /// Set when the offer answered a whistle to the member's unit.
    pub whistle_id: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WhistleUnitView {
    pub unit_id: String,
    /// A member of the unit accepted an offer on the incident.
    pub reported: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WhistleView {
    pub whistle_id: String,
    pub at: String,
    pub deadline: String,
    /// The deadline passed with units not reported.
    pub overdue: bool,
    pub units: Vec<WhistleUnitView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct IncidentView {
    pub id: String,
    pub status: Status,
    pub level: Level,
    pub category: String,
    pub headcount: u32,
    pub accepted: u32,
    pub arrived: u32,
    pub grid_id: String,
    pub community_id: String,
    pub district_id: String,
    pub location: Position,
    pub skills: Vec<String>,
    pub note: Option<String>,
    pub raised_at: String,
    pub raised_by: String,
    /// When it escalates if still unfilled; null once filled, closed or at level I.
    pub escalate_at: Option<String>,
    /// 1 (easy) to 5 (hard).
    pub difficulty: u8,
    /// Escalated at least once.
    pub escalated: bool,
    pub whistles: Vec<WhistleView>,
    pub filled_at: Option<String>,
    pub closed_at: Option<String>,
    pub offers: Vec<OfferView>,
}

impl IncidentView {
    pub fn new(inc: &Incident) -> Self {
        IncidentView {
            id: inc.id.clone(),
            status: inc.status,
            level: inc.level,
            category: inc.category.clone(),
            headcount: inc.headcount,
            accepted: inc.accepted(),
            arrived: inc.arrived(),
            grid_id: inc.grid_id.clone(),
            community_id: inc.community_id.clone(),
            district_id: inc.district_id.clone(),
            location: inc.location,
            skills: inc.skills.clone(),
            note: inc.note.clone(),
            raised_at: rfc3339(inc.raised_at),
            raised_by: inc.raised_by.clone(),
            escalate_at: inc.escalate_at.map(rfc3339),
            difficulty: inc.difficulty,
            escalated: inc.escalated,
            whistles: inc
                .whistles
                .iter()
                .map(|w| WhistleView {
                    whistle_id: w.id.clone(),
                    at: rfc3339(w.at),
                    deadline: rfc3339(w.deadline),
                    overdue: w.overdue,
                    units: w.units.iter().map(|u| WhistleUnitView { unit_id: u.1.clone(), reported: u.2 }).collect(),
                })
                .collect(),
            filled_at: inc.filled_at.map(rfc3339),
            closed_at: inc.closed_at.map(rfc3339),
            offers: inc
                .offers
                .iter()
                .map(|o| OfferView {
                    offer_id: o.id.clone(),
                    member_id: o.member_id.clone(),
                    state: o.state,
                    distance_m: o.distance_m,
                    sent_at: rfc3339(o.sent_at),
                    expires_at: rfc3339(o.expires_at),
                    answered_at: o.answered_at.map(rfc3339),
                    whistle_id: o.whistle_id.clone(),
                })
                .collect(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MemberView {
    pub id: String,
    pub name: String,
    pub unit_id: String,
    pub team_id: Option<String>,
    pub residence_grid_id: String,
    pub residence_community_id: String,
    pub skills: Vec<String>,
    pub position: Position,
    pub on_call: bool,
    /// The offer holding the member now (offered, or accepted on an open incident).
    pub engaged_offer_id: Option<String>,
    /// On call because wartime holds where their assault team is paired.
    pub wartime_on_call: bool,
    /// The community they report to (a transfer's, else their residence's).
    pub home_community_id: String,
    /// Difficulty-weighted load carried, and its hard part.
    pub load: f64,
    pub hard_load: f64,
    /// Hours on duty in the fatigue window, and whether the cap holds them back now.
    pub duty_hours: f64,
    pub fatigued: bool,
    /// Reported at the residence community (双报到).
    pub registered: bool,
    /// Points and hours earned and credited, and the balances after exchanges.
    pub points_total: f64,
    pub hours_total: f64,
    pub points_balance: f64,
    pub hours_balance: f64,
    /// Arrived over offered, once offered.
    pub reliability: Option<f64>,
    pub duties: u32,
    pub last_duty_at: Option<String>,
}

impl MemberView {
    pub fn new(state: &State, rules: &Rules, idx: u32, now: Ts) -> Self {
        let m = &state.city.members()[idx as usize];
        let rt = &state.roster.members[idx as usize];
        let grid = state.city.member_residence[idx as usize];
        let community = state.city.grid_places[grid as usize].community;
        MemberView {
            id: m.id.clone(),
            name: m.name.clone(),
            unit_id: m.unit_id.clone(),
            team_id: m.team_id.clone(),
            residence_grid_id: m.residence_grid_id.clone(),
            residence_community_id: state.city.community(community).id.clone(),
            skills: m.skills.clone(),
            position: rt.position,
            on_call: rt.on_call,
            engaged_offer_id: rt.engaged.clone(),
            wartime_on_call: rt.forced,
            home_community_id: state.city.community(state.roster.home(idx)).id.clone(),
            load: rt.work.load,
            hard_load: rt.work.hard_load,
            duty_hours: (rt.work.worked_ms(now, rules) as f64 / 36_000.0).round() / 100.0,
            fatigued: rt.work.fatigued(now, rules),
            registered: m.registered,
            points_total: (rt.ledger.credits.iter().map(|c| c.points).sum::<f64>() * 100.0).round() / 100.0,
            hours_total: (rt.ledger.credits.iter().map(|c| c.hours).sum::<f64>() * 100.0).round() / 100.0,
            points_balance: (rt.ledger.points_balance * 100.0).round() / 100.0,
            hours_balance: (rt.ledger.hours_balance * 100.0).round() / 100.0,
            reliability: rt.ledger.reliability(),
            duties: rt.duties,
            last_duty_at: rt.last_duty_at.map(rfc3339),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct GridView {
    pub id: String,
    /// Resolution-9 H3 cells.
    pub cells: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CommunityView {
    pub id: String,
    pub name: String,
    pub street_id: String,
    pub district_id: String,
    pub center: Position,
    pub grids: Vec<GridView>,
}

pub fn communities(state: &State) -> Vec<CommunityView> {
    let Some(city) = state.city.city() else { return Vec::new() };
    city.communities
        .iter()
        .enumerate()
        .map(|(i, c)| CommunityView {
            id: c.id.clone(),
            name: c.name.clone(),
            street_id: c.street_id.clone(),
            district_id: state.city.district_id_of_community(i as u32).to_string(),
            center: state.city.community_centers[i],
            grids: c
                .grids
                .iter()
                .map(|g| GridView { id: g.id.clone(), cells: g.cells.iter().map(|c| c.to_string()).collect() })
                .collect(),
        })
        .collect()
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CategoryView {
    pub id: String,
    pub name: String,
    pub difficulty: u8,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SkillView {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LevelView {
    pub id: Level,
    pub name: String,
    pub colour: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Catalog {
    pub categories: Vec<CategoryView>,
    pub skills: Vec<SkillView>,
    pub levels: Vec<LevelView>,
    /// The roles a campaign's requirement may name (`[[dispatch.campaign.roles]]`), with
    /// their Chinese and English names for the pages.
    pub campaign_roles: Vec<CampaignRoleView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CampaignRoleView {
    pub id: String,
    pub zh: String,
    pub en: String,
}

impl Catalog {
    pub fn new(rules: &Rules) -> Self {
        Catalog {
            categories: rules
                .categories
                .iter()
                .map(|c| CategoryView { id: c.id.clone(), name: c.name.clone(), difficulty: c.difficulty })
                .collect(),
            skills: rules.skills.iter().map(|s| SkillView { id: s.id.clone(), name: s.name.clone() }).collect(),
            levels: Level::ALL
                .iter()
                .map(|&l| LevelView { id: l, name: rules.level(l).name.clone(), colour: rules.level(l).colour.clone() })
                .collect(),
            campaign_roles: rules
                .campaign
                .roles
                .iter()
                .map(|r| CampaignRoleView { id: r.id.clone(), zh: r.zh.clone(), en: r.en.clone() })
                .collect(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CityImportedView {
    pub districts: usize,
    pub streets: usize,
    pub communities: usize,
    pub units: usize,
    pub teams: usize,
    pub members: usize,
}
