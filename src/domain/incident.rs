//! An incident and its offers, as the dispatcher holds them.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::geo::Position;
use super::response::Level;
use super::time::Ts;
use super::workload::TaskClass;

/// A whistle (吹哨) on an incident: the units named, and which of them have reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Whistle {
    pub id: String,
    pub at: Ts,
    pub deadline: Ts,
    /// (unit index, unit id, reported: a member of it accepted an offer on the incident)
    pub units: Vec<(u32, String, bool)>,
    pub overdue: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Open,
    Filled,
    Resolved,
    Cancelled,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Open => "open",
            Status::Filled => "filled",
            Status::Resolved => "resolved",
            Status::Cancelled => "cancelled",
        }
    }

    /// Resolved and cancelled incidents take no more answers.
    pub fn is_closed(self) -> bool {
        matches!(self, Status::Resolved | Status::Cancelled)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OfferState {
    Offered,
    Accepted,
    Declined,
    Expired,
    Revoked,
    Arrived,
}

impl OfferState {
    pub fn as_str(self) -> &'static str {
        match self {
            OfferState::Offered => "offered",
            OfferState::Accepted => "accepted",
            OfferState::Declined => "declined",
            OfferState::Expired => "expired",
            OfferState::Revoked => "revoked",
            OfferState::Arrived => "arrived",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Offer {
    pub id: String,
    pub member_id: String,
    pub member: u32,
    pub state: OfferState,
    pub sent_at: Ts,
    pub expires_at: Ts,
    pub distance_m: f64,
    /// The seq of the `offer` frame in the member's stream, so a fresh connection can be
    /// sent its open offers with their own seq.
    pub frame_seq: u64,
    pub whistle_id: Option<String>,
    /// The seq of the `assignment` frame, once accepted.
    pub assignment_seq: Option<u64>,
    pub answered_at: Option<Ts>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    pub id: String,
    /// Ids are the incident's place for good; a later city import may renumber the city.
    pub community_id: String,
    pub district_id: String,
    pub grid_id: String,
    /// Index of the grid in the current city (matching needs it; an import renumbers it,
    /// and refuses to run while any incident is open, so an open incident's grid exists).
    pub grid: u32,
    pub location: Position,
    pub category: String,
    pub level: Level,
    pub headcount: u32,
    pub skills: Vec<String>,
    pub note: Option<String>,
    pub difficulty: u8,
    pub class: TaskClass,
    /// Escalated at least once (by timeout or by hand): peacetime's own-community rule lifts.
    pub escalated: bool,
    pub whistles: Vec<Whistle>,
    pub status: Status,
    pub raised_at: Ts,
    pub raised_by: String,
    pub escalate_at: Option<Ts>,
    pub filled_at: Option<Ts>,
    pub closed_at: Option<Ts>,
    pub offers: Vec<Offer>,
    /// Members already offered this incident, in any state: never offered twice.
    /// Not in snapshots: it is the members of `offers`.
    #[serde(skip)]
    pub offered: HashSet<u32>,
}

impl Incident {
    pub fn accepted(&self) -> u32 {
        self.offers.iter().filter(|o| matches!(o.state, OfferState::Accepted | OfferState::Arrived)).count() as u32
    }

    pub fn arrived(&self) -> u32 {
        self.offers.iter().filter(|o| o.state == OfferState::Arrived).count() as u32
    }

    pub fn open_offers(&self) -> u32 {
        self.offers.iter().filter(|o| o.state == OfferState::Offered).count() as u32
    }

    pub fn offer(&self, id: &str) -> Option<&Offer> {
        self.offers.iter().find(|o| o.id == id)
    }

    pub fn offer_mut(&mut self, id: &str) -> Option<&mut Offer> {
        self.offers.iter_mut().find(|o| o.id == id)
    }

    /// How many more offers should be out now: ceil(open headcount × overbook) minus the
    /// offers still waiting for an answer.
    pub fn offers_wanted(&self, overbook: f64) -> u32 {
        if self.status != Status::Open {
            return 0;
        }
        let open_headcount = self.headcount.saturating_sub(self.accepted());
        let target = (open_headcount as f64 * overbook).ceil() as u32;
        target.saturating_sub(self.open_offers())
    }
}
