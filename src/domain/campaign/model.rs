//! The campaign as the log keeps it: its rules, sites, shifts, requirements, members'
//! unavailability and no-shows, and the published roster; the commands that change it and
//! the events they decide, with the checks of their input.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::super::errors::{Code, DomainError, err};
use super::super::geo::Position;
use super::super::time::Ts;

/// Longest campaign: 120 days (days in a row are counted in 128 bits).
pub const MAX_DAYS: i64 = 120;
pub const MAX_SITES: usize = 5_000;
pub const MAX_SHIFTS: usize = 2_000;
pub const MAX_REQUIREMENTS: usize = 200_000;
pub const MAX_HEADCOUNT: u32 = 500;
const HOUR: f64 = 3_600_000.0;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CampaignRules {
    /// Most hours on shift in any 24 hours (1–24).
    #[schema(minimum = 1, maximum = 24, example = 12)]
    pub max_hours_in_24h: f64,
    /// Least hours off between two shifts (0–48).
    #[schema(minimum = 0, maximum = 48, example = 8)]
    pub min_rest_h: f64,
    /// Most days in a row with a shift (1–120).
    #[schema(minimum = 1, maximum = 120, example = 6)]
    pub max_consecutive_days: u32,
    /// Furthest a site may be from a member's home or their team's paired community, in
    /// metres (100–100,000).
    #[schema(minimum = 100, maximum = 100_000, example = 5000)]
    pub max_distance_m: f64,
}

impl CampaignRules {
    pub fn check(&self) -> Result<(), DomainError> {
        let ok = (1.0..=24.0).contains(&self.max_hours_in_24h)
            && (0.0..=48.0).contains(&self.min_rest_h)
            && (1..=MAX_DAYS as u32).contains(&self.max_consecutive_days)
            && (100.0..=100_000.0).contains(&self.max_distance_m);
        if ok {
            Ok(())
        } else {
            Err(err(
                Code::InvalidCampaign,
                "rules: max_hours_in_24h 1–24, min_rest_h 0–48, max_consecutive_days 1–120, max_distance_m 100–100000",
            ))
        }
    }

    pub fn hard(&self) -> super::HardRules {
        super::HardRules {
            max_in_24h_ms: (self.max_hours_in_24h * HOUR).round() as i64,
            min_rest_ms: (self.min_rest_h * HOUR).round() as i64,
            max_consecutive_days: self.max_consecutive_days,
            max_distance_m: self.max_distance_m,
        }
    }
}

/// A site as asked for: a location, or a grid (its centre).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteSpec {
    pub id: String,
    pub name: String,
    pub location: Option<Position>,
    pub grid_id: Option<String>,
}

/// A site as kept: its position and community resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Site {
    pub id: String,
    pub name: String,
    pub position: Position,
    pub grid_id: Option<String>,
    pub community_id: Option<String>,
    #[serde(default)]
    pub closed: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Shift {
    pub id: String,
    pub start: Ts,
    pub end: Ts,
    /// A shift of one site; shared by every site when `None`.
    pub site_id: Option<String>,
}

/// People wanted on a site in a shift in a role. Setting one again replaces it; headcount
/// 0 wants nobody.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Requirement {
    pub site_id: String,
    pub shift_id: String,
    pub role: String,
    pub headcount: u32,
    #[serde(default)]
    pub skills: Vec<String>,
}

/// The roster as published: `members` is the dictionary of member ids, `slots[r]` the
/// members (indexes into it) holding requirement `r`'s slots, in the campaign's
/// requirement order. Compact on purpose: 84,000 slots are about 0.5 MB of JSON.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Published {
    pub version: u32,
    /// Shifts starting from here were (re)rostered; earlier ones were kept.
    pub from: Ts,
    pub members: Vec<String>,
    pub slots: Vec<Vec<u32>>,
    /// Requirements short of people: (requirement index, missing, binding rule).
    pub shortfall: Vec<(u32, u32, super::Rule)>,
    /// Slots whose member changed from the previous version.
    pub changed: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Campaign {
    pub id: String,
    pub name: String,
    /// City-wide when `None`.
    pub district_id: Option<String>,
    pub start: Ts,
    pub end: Ts,
    pub rules: CampaignRules,
    pub sites: Vec<Site>,
    pub shifts: Vec<Shift>,
    pub requirements: Vec<Requirement>,
    /// (member id, from, until): times the member cannot serve.
    pub unavailable: Vec<(String, Ts, Ts)>,
    /// (shift id, member id): who did not come.
    pub no_shows: Vec<(String, String)>,
    pub roster: Option<Published>,
    pub closed: bool,
    /// Bumped by every event that changes what a roster is computed from (sites, shifts,
    /// requirements, unavailability, no-shows) and by each published roster: a roster
    /// computed off the writer from revision `r` is published only while the campaign is
    /// still at `r` (`CampaignCommand::Publish`).
    #[serde(default)]
    pub revision: u64,
    /// Per shift id, per member id: their acknowledgement, check-in and check-out.
    #[serde(default)]
    pub attendance: BTreeMap<String, BTreeMap<String, Attendance>>,
    /// Members rostered in a shift and not checked in this long after its start are
    /// no-shows (`dispatch.campaign.no_show_after_s` when the campaign was created; none
    /// for a campaign logged before it).
    #[serde(default)]
    pub no_show_after_s: Option<u64>,
    /// Shifts whose no-show deadline has fired (each fires once, replays included).
    #[serde(default)]
    pub no_show_checked: std::collections::BTreeSet<String>,
}

/// A member's answers to one shift of theirs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attendance {
    pub acknowledged_at: Option<Ts>,
    pub checkin_at: Option<Ts>,
    pub checkout_at: Option<Ts>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum CampaignCommand {
    Create {
        name: String,
        district_id: Option<String>,
        start: Ts,
        end: Ts,
        rules: CampaignRules,
    },
    SetSite {
        campaign_id: String,
        site: SiteSpec,
    },
    CloseSite {
        campaign_id: String,
        site_id: String,
    },
    SetShift {
        campaign_id: String,
        shift: Shift,
    },
    SetRequirement {
        campaign_id: String,
        requirement: Requirement,
    },
    /// A member (or command for them) marks a time they cannot serve.
    Unavailable {
        campaign_id: String,
        member_id: String,
        start: Ts,
        end: Ts,
    },
    /// Compute and publish the roster (or re-roster a published one from now on).
    Roster {
        campaign_id: String,
        seed: u64,
        iterations: u64,
    },
    /// Members who did not come to a shift: re-roster from its start.
    NoShow {
        campaign_id: String,
        shift_id: String,
        members: Vec<String>,
    },
    Close {
        campaign_id: String,
    },
    /// Publish a roster computed outside the engine's writer from the campaign at revision
    /// `basis` (`handle::prepare`); refused with `roster_stale` if the campaign changed since.
    Publish {
        campaign_id: String,
        basis: u64,
        roster: Box<Published>,
    },
    /// A member acknowledges a shift of theirs.
    Acknowledge {
        campaign_id: String,
        shift_id: String,
    },
    /// A member checks in (or out) at the site of a shift of theirs.
    CheckIn {
        campaign_id: String,
        shift_id: String,
        position: Position,
    },
    CheckOut {
        campaign_id: String,
        shift_id: String,
        position: Position,
    },
    /// Sites and requirements of a CSV file: all of them, or none (`errors` by row).
    Import {
        campaign_id: String,
        sites: Vec<SiteSpec>,
        requirements: Vec<Requirement>,
    },
}

impl CampaignCommand {
    pub fn campaign_id(&self) -> Option<&str> {
        match self {
            CampaignCommand::Create { .. } => None,
            CampaignCommand::SetSite { campaign_id, .. }
            | CampaignCommand::CloseSite { campaign_id, .. }
            | CampaignCommand::SetShift { campaign_id, .. }
            | CampaignCommand::SetRequirement { campaign_id, .. }
            | CampaignCommand::Unavailable { campaign_id, .. }
            | CampaignCommand::Roster { campaign_id, .. }
            | CampaignCommand::NoShow { campaign_id, .. }
            | CampaignCommand::Publish { campaign_id, .. }
            | CampaignCommand::Acknowledge { campaign_id, .. }
            | CampaignCommand::CheckIn { campaign_id, .. }
            | CampaignCommand::CheckOut { campaign_id, .. }
            | CampaignCommand::Import { campaign_id, .. }
            | CampaignCommand::Close { campaign_id } => Some(campaign_id),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum CampaignEvent {
    Created {
        campaign_id: String,
        name: String,
        district_id: Option<String>,
        start: Ts,
        end: Ts,
        rules: CampaignRules,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        no_show_after_s: Option<u64>,
    },
    SiteSet {
        campaign_id: String,
        site: Site,
    },
    SiteClosed {
        campaign_id: String,
        site_id: String,
    },
    ShiftSet {
        campaign_id: String,
        shift: Shift,
    },
    RequirementSet {
        campaign_id: String,
        requirement: Requirement,
    },
    Unavailable {
        campaign_id: String,
        member_id: String,
        start: Ts,
        end: Ts,
    },
    RosterPublished {
        campaign_id: String,
        roster: Box<Published>,
    },
    NoShows {
        campaign_id: String,
        shift_id: String,
        members: Vec<String>,
        /// Found by the shift's no-show deadline (not named by command).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        automatic: bool,
    },
    Closed {
        campaign_id: String,
    },
    Acknowledged {
        campaign_id: String,
        shift_id: String,
        member_id: String,
    },
    CheckedIn {
        campaign_id: String,
        shift_id: String,
        member_id: String,
        position: Position,
        distance_m: f64,
    },
    CheckedOut {
        campaign_id: String,
        shift_id: String,
        member_id: String,
        position: Position,
        distance_m: f64,
    },
}

impl CampaignEvent {
    pub fn campaign_id(&self) -> &str {
        match self {
            CampaignEvent::Created { campaign_id, .. }
            | CampaignEvent::SiteSet { campaign_id, .. }
            | CampaignEvent::SiteClosed { campaign_id, .. }
            | CampaignEvent::ShiftSet { campaign_id, .. }
            | CampaignEvent::RequirementSet { campaign_id, .. }
            | CampaignEvent::Unavailable { campaign_id, .. }
            | CampaignEvent::RosterPublished { campaign_id, .. }
            | CampaignEvent::NoShows { campaign_id, .. }
            | CampaignEvent::Acknowledged { campaign_id, .. }
            | CampaignEvent::CheckedIn { campaign_id, .. }
            | CampaignEvent::CheckedOut { campaign_id, .. }
            | CampaignEvent::Closed { campaign_id } => campaign_id,
        }
    }
}

/// An id names a site, shift or requirement role: 1–64 letters, digits, `-` or `_`.
pub fn check_id(id: &str, code: Code, what: &str) -> Result<(), DomainError> {
    let ok = !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok { Ok(()) } else { Err(err(code, format!("{what} id '{id}' must be 1–64 letters, digits, '-' or '_'"))) }
}

/// 1 to 200 characters, not all blank (as the document says: `minLength`, `maxLength` and
/// a non-blank `pattern` on the name as sent).
pub fn check_name(name: &str, code: Code) -> Result<(), DomainError> {
    let ok = !name.trim().is_empty() && name.chars().count() <= 200;
    if ok { Ok(()) } else { Err(err(code, "a name is 1–200 characters, not all blank")) }
}

impl Campaign {
    pub fn site(&self, id: &str) -> Option<usize> {
        self.sites.iter().position(|s| s.id == id)
    }
    pub fn shift(&self, id: &str) -> Option<usize> {
        self.shifts.iter().position(|s| s.id == id)
    }
    pub fn requirement(&self, site: &str, shift: &str, role: &str) -> Option<usize> {
        self.requirements.iter().position(|r| r.site_id == site && r.shift_id == shift && r.role == role)
    }
    /// The member's answers to a shift, if any.
    pub fn attendance(&self, shift: &str, member: &str) -> Option<&Attendance> {
        self.attendance.get(shift).and_then(|m| m.get(member))
    }
}
