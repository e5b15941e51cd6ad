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
    pub levels: LevelRules,
    pub weights: Weights,
    pub categories: Vec<Category>,
    pub skills: Vec<Skill>,
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
            },
            categories: vec![
                Category { id: "patrol".into(), name: "巡查".into(), difficulty: 1 },
                Category { id: "rescue".into(), name: "救援".into(), difficulty: 5 },
            ],
            skills: vec![
                Skill { id: "medical".into(), name: "医疗".into() },
                Skill { id: "driving".into(), name: "驾驶".into() },
            ],
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
