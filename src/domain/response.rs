//! Tiered response (分级响应): the four levels, how far each reaches, and the rules of
//! dispatch that come from configuration (TTLs, overbooking, geofence, ranking weights).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// China's emergency response levels, from the least to the most severe.
/// Ⅳ 一般 (blue) < Ⅲ 较大 (yellow) < Ⅱ 重大 (orange) < Ⅰ 特别重大 (red).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema)]
pub enum Level {
    IV,
    III,
    II,
    I,
}

impl Level {
    pub const ALL: [Level; 4] = [Level::IV, Level::III, Level::II, Level::I];

    /// The next, more severe level; `None` at Ⅰ.
    pub fn next(self) -> Option<Level> {
        match self {
            Level::IV => Some(Level::III),
            Level::III => Some(Level::II),
            Level::II => Some(Level::I),
            Level::I => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Level::IV => "IV",
            Level::III => "III",
            Level::II => "II",
            Level::I => "I",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Level {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "IV" => Ok(Level::IV),
            "III" => Ok(Level::III),
            "II" => Ok(Level::II),
            "I" => Ok(Level::I),
            other => Err(format!("level '{other}' is not one of IV, III, II, I")),
        }
    }
}

/// How far a call reaches: a member is a candidate when their last known position lies in
/// a grid of this area (or anywhere, for `City`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reach {
    /// The incident's grid and the grids that touch it.
    Grid,
    Community,
    Street,
    District,
    City,
}

impl Reach {
    pub fn as_str(self) -> &'static str {
        match self {
            Reach::Grid => "grid",
            Reach::Community => "community",
            Reach::Street => "street",
            Reach::District => "district",
            Reach::City => "city",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LevelRule {
    pub name: String,
    pub colour: String,
    /// Areas tried in order until enough candidates are found (Ⅱ: street, then district).
    pub reach: Vec<Reach>,
    /// Escalate one level when not filled this many seconds after reaching this level.
    /// `None` (omitted) at the top level.
    pub escalate_after_s: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Category {
    pub id: String,
    pub name: String,
    /// 1 (easy) to 5 (hard).
    pub difficulty: u8,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Skill {
    pub id: String,
    pub name: String,
}

/// Ranking weights, in metre-equivalents: a candidate's score is its distance plus
/// penalties minus bonuses, and the lowest score is offered first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Weights {
    /// Added per required skill the member lacks.
    pub missing_skill_m: f64,
    /// Subtracted when the incident is in the member's residence grid.
    pub residence_grid_m: f64,
    /// Subtracted when the member's team is paired with the incident's community.
    pub paired_team_m: f64,
    /// Added for a duty taken just now, fading linearly to 0 over `recent_duty_window_s`.
    pub recent_duty_m: f64,
    pub recent_duty_window_s: u64,
    /// In wartime, subtracted in proportion to reliability (arrived over offered).
    #[serde(default)]
    pub reliability_m: f64,
}

/// Every dispatch rule the domain needs, from `[dispatch]` in the configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rules {
    pub offer_ttl_s: u64,
    /// Offers out at once = ceil(open headcount × overbook).
    pub overbook: f64,
    pub max_headcount: u32,
    pub geofence_m: f64,
    /// Nearest candidates collected by H3 rings before ranking.
    pub candidate_pool: usize,
    /// Widest H3 ring (resolution 9) searched before a linear scan of the reach.
    pub max_ring: u32,
    /// Seconds between attempts to find more candidates for an incident short of offers.
    pub retry_s: u64,
    /// In peacetime, offer a call below level Ⅱ that was never escalated only to the
    /// community's own members (residence, team pairing, or transfer).
    pub peacetime_own_community: bool,
    pub levels: LevelRules,
    pub weights: Weights,
    pub categories: Vec<Category>,
    pub skills: Vec<Skill>,
    pub wartime: WartimeRules,
    pub fairness: FairnessRules,
    pub fatigue: FatigueRules,
    pub mobilization: MobilizationRules,
    pub service: ServiceRules,
    /// Campaigns (issue #19): the roles of their requirements and the roster's weights.
    #[serde(default)]
    pub campaign: CampaignConfig,
}

/// `[dispatch.campaign]`: the roles a requirement may name, and the rostering objective's
/// weights (docs/ARCHITECTURE.md, "Campaigns").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CampaignConfig {
    pub roles: Vec<CampaignRole>,
    pub weights: super::campaign::Weights,
    /// Seconds after a shift's start at which rostered members not checked in are
    /// no-shows, replaced at once (kept per campaign from its creation).
    pub no_show_after_s: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CampaignRole {
    pub id: String,
    pub zh: String,
    pub en: String,
}

impl Default for CampaignConfig {
    fn default() -> Self {
        let role = |id: &str, zh: &str, en: &str| CampaignRole { id: id.into(), zh: zh.into(), en: en.into() };
        CampaignConfig {
            roles: vec![
                role("queue_order", "秩序维护", "queue order"),
                role("registration", "信息登记", "registration"),
                role("logistics", "后勤保障", "logistics"),
                role("sampling_helper", "采样辅助", "sampling helper"),
            ],
            weights: super::campaign::Weights::default(),
            no_show_after_s: 900,
        }
    }
}

/// Peacetime service (群众点单、社区派单、党员接单) and evaluation (一事一评).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceRules {
    /// Metres from an order's place within which a check-in or check-out counts.
    pub geofence_m: f64,
    /// Easy orders one member may take in any 7 days.
    pub easy_orders_per_week: u32,
    /// Seconds a hard order is reserved for the members who have done the least hard work.
    pub hard_priority_s: u64,
    /// Members named per slot in that reservation.
    pub hard_priority_per_slot: u32,
    pub max_slots: u32,
    /// Points = hours × difficulty × the rating's weight.
    pub rating_weights: RatingWeights,
    /// Points one hour is worth when points and hours are exchanged.
    pub points_per_hour: f64,
    /// Hours of service each member should give per year (the report: at least 20); the
    /// reports compare every member and unit with it.
    #[serde(default = "default_yearly_hours")]
    pub yearly_hours_target: f64,
}

fn default_yearly_hours() -> f64 {
    20.0
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RatingWeights {
    pub very_good: f64,
    pub good: f64,
    pub fair: f64,
}

/// What changes in a district in wartime (战时): shorter offer TTLs and a wider reach per
/// level; besides, every assault-team member paired there is on call and dispatch crosses
/// community lines.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WartimeRules {
    pub offer_ttl_s: u64,
    pub reach: ReachTable,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReachTable {
    #[serde(rename = "IV")]
    pub iv: Vec<Reach>,
    #[serde(rename = "III")]
    pub iii: Vec<Reach>,
    #[serde(rename = "II")]
    pub ii: Vec<Reach>,
    #[serde(rename = "I")]
    pub i: Vec<Reach>,
}

/// Against cherry-picking (秒光) and uneven load.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FairnessRules {
    /// Difficulty at or below which a task is easy.
    pub easy_max_difficulty: u8,
    /// Easy tasks one member may accept per day.
    pub easy_cap_per_day: u32,
    /// Difficulty at or above which a task is hard.
    pub hard_min_difficulty: u8,
    /// Added per point of difficulty-weighted load a member carries.
    pub load_m: f64,
    /// Subtracted, for a hard task, in proportion to how little of a member's load was hard.
    pub hard_first_m: f64,
    /// Hours east of UTC where the day of the easy-task cap begins (8: China).
    pub day_offset_h: i64,
}

/// Against exhaustion over a multi-day surge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FatigueRules {
    /// Most on-duty hours within the window.
    pub max_duty_h: f64,
    pub window_h: f64,
    /// A member at the cap is offered nothing until rested this long since their last duty.
    pub min_rest_h: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MobilizationRules {
    pub default_deadline_s: u64,
    pub max_deadline_s: u64,
    /// Seconds whistled units have to report before command is told who has not.
    pub whistle_deadline_s: u64,
    /// Metres from a named site within which a report counts (a community counts its grids too).
    pub report_geofence_m: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LevelRules {
    #[serde(rename = "IV")]
    pub iv: LevelRule,
    #[serde(rename = "III")]
    pub iii: LevelRule,
    #[serde(rename = "II")]
    pub ii: LevelRule,
    #[serde(rename = "I")]
    pub i: LevelRule,
}

impl Rules {
    pub fn level(&self, l: Level) -> &LevelRule {
        match l {
            Level::IV => &self.levels.iv,
            Level::III => &self.levels.iii,
            Level::II => &self.levels.ii,
            Level::I => &self.levels.i,
        }
    }

    /// The areas a level reaches, in peacetime or in wartime.
    pub fn reach(&self, l: Level, wartime: bool) -> &[Reach] {
        if !wartime {
            return &self.level(l).reach;
        }
        let t = &self.wartime.reach;
        match l {
            Level::IV => &t.iv,
            Level::III => &t.iii,
            Level::II => &t.ii,
            Level::I => &t.i,
        }
    }

    pub fn offer_ttl_ms(&self, wartime: bool) -> i64 {
        1000 * if wartime { self.wartime.offer_ttl_s } else { self.offer_ttl_s } as i64
    }

    /// The day (for daily caps) a time falls in, in the configured time zone.
    pub fn day_of(&self, ts: i64) -> i64 {
        (ts + self.fairness.day_offset_h * 3_600_000).div_euclid(86_400_000)
    }

    pub fn category(&self, id: &str) -> Option<&Category> {
        self.categories.iter().find(|c| c.id == id)
    }

    pub fn has_skill(&self, id: &str) -> bool {
        self.skills.iter().any(|s| s.id == id)
    }

    /// Checks the rules make sense; called when the configuration is loaded.
    pub fn validate(&self) -> Result<(), String> {
        if self.offer_ttl_s == 0 {
            return Err("dispatch.offer_ttl_s must be at least 1".into());
        }
        if !(self.overbook.is_finite() && self.overbook >= 1.0 && self.overbook <= 10.0) {
            return Err("dispatch.overbook must be between 1.0 and 10.0".into());
        }
        if self.max_headcount == 0 {
            return Err("dispatch.max_headcount must be at least 1".into());
        }
        if !(self.geofence_m.is_finite() && self.geofence_m > 0.0) {
            return Err("dispatch.geofence_m must be positive".into());
        }
        if self.candidate_pool == 0 || self.retry_s == 0 {
            return Err("dispatch.candidate_pool and dispatch.retry_s must be at least 1".into());
        }
        for l in Level::ALL {
            let r = self.level(l);
            if r.reach.is_empty() {
                return Err(format!("dispatch.levels.{l}.reach must name at least one area"));
            }
            if l != Level::I && r.escalate_after_s.is_none() {
                return Err(format!("dispatch.levels.{l}.escalate_after_s is required below level I"));
            }
        }
        if self.categories.is_empty() {
            return Err("dispatch.categories must not be empty".into());
        }
        if let Some(c) = self.categories.iter().find(|c| !(1..=5).contains(&c.difficulty)) {
            return Err(format!("dispatch.categories: '{}' difficulty must be 1 to 5", c.id));
        }
        if self.wartime.offer_ttl_s == 0 {
            return Err("dispatch.wartime.offer_ttl_s must be at least 1".into());
        }
        for l in Level::ALL {
            if self.reach(l, true).is_empty() {
                return Err(format!("dispatch.wartime.reach.{l} must name at least one area"));
            }
        }
        let f = &self.fatigue;
        if !(f.max_duty_h > 0.0 && f.window_h >= f.max_duty_h && f.min_rest_h >= 0.0) {
            return Err("dispatch.fatigue: need 0 < max_duty_h <= window_h and min_rest_h >= 0".into());
        }
        let s = &self.service;
        let w = &s.rating_weights;
        if !(s.geofence_m > 0.0
            && s.points_per_hour > 0.0
            && s.yearly_hours_target >= 0.0
            && s.yearly_hours_target <= 8_760.0
            && s.max_slots > 0
            && w.very_good >= 0.0
            && w.good >= 0.0
            && w.fair >= 0.0)
        {
            return Err("dispatch.service: geofence_m, points_per_hour, max_slots must be positive, weights >= 0, \
                 yearly_hours_target within 0..=8760"
                .into());
        }
        let c = &self.campaign;
        let w = &c.weights;
        if c.roles.is_empty()
            || c.roles.len() > u16::MAX as usize
            || ![w.fair_m_per_h2, w.team_pair_m, w.own_community_m, w.change_m]
                .iter()
                .all(|x| x.is_finite() && *x >= 0.0)
        {
            return Err("dispatch.campaign: at least one role; weights finite and >= 0".into());
        }
        if !(1..=86_400).contains(&c.no_show_after_s) {
            return Err("dispatch.campaign.no_show_after_s: 1 to 86400".into());
        }
        let m = &self.mobilization;
        if m.default_deadline_s == 0 || m.max_deadline_s < m.default_deadline_s || m.whistle_deadline_s == 0 {
            return Err("dispatch.mobilization: deadlines must be positive, default <= max".into());
        }
        Ok(())
    }

    /// Rules for domain tests: short, round numbers.
    #[cfg(test)]
    pub fn for_tests() -> Rules {
        let lr = |reach: Vec<Reach>, esc: Option<u64>| LevelRule {
            name: String::new(),
            colour: String::new(),
            reach,
            escalate_after_s: esc,
        };
        Rules {
            offer_ttl_s: 60,
            overbook: 1.5,
            max_headcount: 50,
            geofence_m: 200.0,
            candidate_pool: 50,
            max_ring: 30,
            retry_s: 10,
            peacetime_own_community: false,
            levels: LevelRules {
                iv: lr(vec![Reach::Grid], Some(120)),
                iii: lr(vec![Reach::Community], Some(180)),
                ii: lr(vec![Reach::Street, Reach::District], Some(300)),
                i: lr(vec![Reach::City], None),
            },
            weights: Weights {
                missing_skill_m: 2_000.0,
                residence_grid_m: 150.0,
                paired_team_m: 300.0,
                recent_duty_m: 1_000.0,
                recent_duty_window_s: 3_600,
                reliability_m: 0.0,
            },
            categories: vec![
                Category { id: "patrol".into(), name: "巡查".into(), difficulty: 1 },
                Category { id: "rescue".into(), name: "救援".into(), difficulty: 5 },
            ],
            skills: vec![
                Skill { id: "medical".into(), name: "医疗".into() },
                Skill { id: "driving".into(), name: "驾驶".into() },
            ],
            wartime: WartimeRules {
                offer_ttl_s: 30,
                reach: ReachTable {
                    iv: vec![Reach::Community],
                    iii: vec![Reach::Street, Reach::District],
                    ii: vec![Reach::District, Reach::City],
                    i: vec![Reach::City],
                },
            },
            fairness: FairnessRules {
                easy_max_difficulty: 2,
                easy_cap_per_day: 3,
                hard_min_difficulty: 4,
                load_m: 0.0,
                hard_first_m: 0.0,
                day_offset_h: 8,
            },
            fatigue: FatigueRules { max_duty_h: 12.0, window_h: 24.0, min_rest_h: 8.0 },
            mobilization: MobilizationRules {
                default_deadline_s: 3600,
                max_deadline_s: 86_400,
                whistle_deadline_s: 600,
                report_geofence_m: 500.0,
            },
            service: ServiceRules {
                geofence_m: 200.0,
                easy_orders_per_week: 3,
                hard_priority_s: 600,
                hard_priority_per_slot: 2,
                max_slots: 100,
                rating_weights: RatingWeights { very_good: 1.2, good: 1.0, fair: 0.6 },
                points_per_hour: 10.0,
                yearly_hours_target: 20.0,
            },
            campaign: CampaignConfig::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_order_and_escalate_upwards() {
        assert!(Level::IV < Level::I);
        assert_eq!(Level::IV.next(), Some(Level::III));
        assert_eq!(Level::I.next(), None);
        assert_eq!("II".parse::<Level>(), Ok(Level::II));
        assert!("V".parse::<Level>().is_err());
        assert_eq!(serde_json::to_string(&Level::III).unwrap(), "\"III\"");
    }

    #[test]
    fn test_rules_are_valid() {
        assert_eq!(Rules::for_tests().validate(), Ok(()));
        let mut r = Rules::for_tests();
        r.overbook = 0.5;
        assert!(r.validate().is_err());
    }
}
