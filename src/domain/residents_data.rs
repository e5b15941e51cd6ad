//! The residents feature's values (issue #20): residents who sign in with a one-time code
//! to their phone, the requests they place (群众点单), the members' proposals (创单), and the
//! commands and events that change them.
//!
//! Apart from the handlers (`residents`) so that the log, the state, the snapshot and
//! `scope` can name them without depending on the feature.
//!
//! A resident's phone number is kept here (staff of the resident's community call back),
//! but it is in no frame, no audit entry and no log line: views show it masked, and only
//! to staff and command of the community (`scope::request`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::service_data::Rating;
use super::time::Ts;

/// Wrong codes a challenge takes before it is dropped (a new code must be asked for).
pub const CODE_ATTEMPTS: u8 = 5;
/// Longest description of a request or a proposal.
pub const MAX_TEXT: usize = 1000;
/// Open challenges kept at once, city-wide; past it the oldest go (the gateway's limits
/// per phone and per address keep the number far below this).
pub const MAX_CHALLENGES: usize = 10_000;

/// A resident: one phone number in one community (the same phone in another community is
/// another resident, with its own requests).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resident {
    /// `r-1`…, in order of first sign-in.
    pub id: String,
    pub community_id: String,
    pub phone: String,
    pub created_at: Ts,
}

/// A one-time code sent to a phone, waiting to be confirmed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Challenge {
    pub id: String,
    pub community_id: String,
    pub phone: String,
    /// SHA-256 of `<challenge id>:<code>`, hex.
    pub code_hash: String,
    pub expires_at: Ts,
    pub attempts_left: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RequestState {
    /// Placed, waiting for the community.
    Submitted,
    /// Turned into an order, or merged into one (`order_id`).
    Dispatched,
    /// Declined by the community, with a reason the resident sees.
    Declined,
    /// The resident confirmed the service and rated it.
    Confirmed,
}

/// 群众点单: what a resident asks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// `req-1`…
    pub id: String,
    pub resident_id: String,
    pub community_id: String,
    pub grid_id: String,
    pub category: String,
    pub description: String,
    pub preferred_start: Ts,
    pub preferred_end: Ts,
    pub placed_at: Ts,
    pub state: RequestState,
    pub order_id: Option<String>,
    /// Merged into an order that existed (not one made for it).
    pub merged: bool,
    pub reason: Option<String>,
    pub rating: Option<Rating>,
    pub comment: Option<String>,
    pub closed_at: Option<Ts>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProposalState {
    Proposed,
    Approved,
    Declined,
}

/// 创单: a service a member proposes to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Proposal {
    /// `prop-1`…
    pub id: String,
    pub member_id: String,
    pub community_id: String,
    pub grid_id: String,
    pub category: String,
    pub title: String,
    pub description: Option<String>,
    /// For whom (a household, a group: free text).
    pub for_whom: String,
    pub window_start: Ts,
    pub window_end: Ts,
    pub slots: u32,
    pub proposed_at: Ts,
    pub state: ProposalState,
    pub order_id: Option<String>,
    pub reason: Option<String>,
    pub closed_at: Option<Ts>,
}

/// Everything of the feature in the state (and, whole, in a snapshot: ordered maps, so a
/// snapshot of one state is always the same bytes).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Residents {
    pub residents: BTreeMap<String, Resident>,
    /// (community id, phone) -> resident id.
    pub by_phone: BTreeMap<String, String>,
    pub challenges: BTreeMap<String, Challenge>,
    pub requests: BTreeMap<String, Request>,
    pub proposals: BTreeMap<String, Proposal>,
    /// Order id -> the requests it serves (made for one, or merged into it).
    pub order_requests: BTreeMap<String, Vec<String>>,
    /// Order id -> the member who created it (an approved proposal).
    pub created_by: BTreeMap<String, String>,
    pub residents_created: u64,
    pub requests_placed: u64,
    pub proposals_made: u64,
}

impl Residents {
    pub fn phone_key(community_id: &str, phone: &str) -> String {
        format!("{community_id}\n{phone}")
    }
}

/// The order a request becomes (`POST /v1/requests/{id}/dispatch`): the request gives its
/// place, category and description; staff give the window and the slots.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DispatchOrder {
    pub title: Option<String>,
    pub difficulty: Option<u8>,
    pub window_start: Ts,
    pub window_end: Ts,
    pub slots: u32,
    pub skills: Vec<String>,
    pub note: Option<String>,
}

/// Wire form: `{"type":"residents","action":{"op":"place",…}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum ResidentCommand {
    /// A code was drawn for this phone (the gateway's, as the system).
    Challenge {
        challenge_id: String,
        community_id: String,
        phone: String,
        code_hash: String,
        ttl_s: u64,
    },
    /// The code's hash is presented: right, a session opens for the resident (made on the
    /// first sign-in); wrong, an attempt is used up.
    Verify {
        challenge_id: String,
        code_hash: String,
        family: String,
        refresh_hash: String,
        device: String,
        ttl_s: u64,
    },
    Place {
        category: String,
        description: String,
        grid_id: String,
        preferred_start: Ts,
        preferred_end: Ts,
    },
    Dispatch {
        request_id: String,
        order: DispatchOrder,
    },
    Merge {
        request_id: String,
        order_id: String,
    },
    Decline {
        request_id: String,
        reason: String,
    },
    Confirm {
        request_id: String,
        rating: Rating,
        comment: Option<String>,
    },
    Propose {
        category: String,
        title: String,
        description: Option<String>,
        grid_id: String,
        for_whom: String,
        window_start: Ts,
        window_end: Ts,
        slots: Option<u32>,
    },
    Approve {
        proposal_id: String,
    },
    DeclineProposal {
        proposal_id: String,
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum ResidentEvent {
    CodeSent {
        challenge_id: String,
        community_id: String,
        phone: String,
        code_hash: String,
        expires_at: Ts,
    },
    CodeFailed {
        challenge_id: String,
    },
    /// The code was right: the resident (new: `created`) signs in on session `family`.
    Verified {
        challenge_id: String,
        resident_id: String,
        created: bool,
        family: String,
        device: String,
        refresh_hash: String,
        expires_at: Ts,
    },
    RequestPlaced {
        request_id: String,
        resident_id: String,
        community_id: String,
        grid_id: String,
        category: String,
        description: String,
        preferred_start: Ts,
        preferred_end: Ts,
    },
    RequestDispatched {
        request_id: String,
        order_id: String,
        merged: bool,
    },
    RequestDeclined {
        request_id: String,
        reason: String,
    },
    RequestConfirmed {
        request_id: String,
        rating: Rating,
        comment: Option<String>,
    },
    ProposalMade {
        proposal_id: String,
        member_id: String,
        community_id: String,
        grid_id: String,
        category: String,
        title: String,
        description: Option<String>,
        for_whom: String,
        window_start: Ts,
        window_end: Ts,
        slots: u32,
    },
    ProposalApproved {
        proposal_id: String,
        order_id: String,
    },
    ProposalDeclined {
        proposal_id: String,
        reason: String,
    },
}

impl ResidentEvent {
    /// The kind the log's readers (timeline, audit) name it by.
    pub fn kind(&self) -> &'static str {
        match self {
            ResidentEvent::CodeSent { .. } => "resident_code_sent",
            ResidentEvent::CodeFailed { .. } => "resident_code_failed",
            ResidentEvent::Verified { .. } => "resident_verified",
            ResidentEvent::RequestPlaced { .. } => "request_placed",
            ResidentEvent::RequestDispatched { .. } => "request_dispatched",
            ResidentEvent::RequestDeclined { .. } => "request_declined",
            ResidentEvent::RequestConfirmed { .. } => "request_confirmed",
            ResidentEvent::ProposalMade { .. } => "proposal_made",
            ResidentEvent::ProposalApproved { .. } => "proposal_approved",
            ResidentEvent::ProposalDeclined { .. } => "proposal_declined",
        }
    }
}
