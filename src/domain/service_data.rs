//! The service feature's values: orders and their claims and stamps, ratings, currencies
//! and members' ledgers, and the payloads of its commands (`PostOrder`, `TaskRef`).
//!
//! Apart from the handlers (`service`) so that the event log, matching, the state and
//! `scope` can name them without depending on the feature, which depends on all of them.

use std::collections::HashSet;

use serde::{Deserialize, Serialize, Serializer};
use utoipa::ToSchema;

use super::geo::Position;
use super::time::Ts;
use super::workload::TaskClass;

/// 很好、好、一般.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Rating {
    VeryGood,
    Good,
    Fair,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Currency {
    Points,
    Hours,
}

/// One credited task: hours from a service record or an assignment, points once rated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Credit {
    pub at: Ts,
    /// `order:<id>` or `offer:<id>`.
    pub task: String,
    pub hours: f64,
    pub difficulty: u8,
    pub rating: Option<Rating>,
    pub points: f64,
}

/// What a member has earned and how they answered.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Ledger {
    pub credits: Vec<Credit>,
    pub points_balance: f64,
    pub hours_balance: f64,
    /// Offers received, accepted, and arrived on (reliability = arrived / offered).
    pub offered: u32,
    pub accepted: u32,
    pub arrived: u32,
    /// When easy orders were taken (the last week).
    pub easy_orders: Vec<Ts>,
}

impl Ledger {
    pub fn reliability(&self) -> Option<f64> {
        (self.offered > 0).then(|| self.arrived as f64 / self.offered as f64)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    Open,
    Full,
    Cancelled,
}

/// A check-in or check-out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stamp {
    pub at: Ts,
    pub position: Position,
    pub distance_m: f64,
    /// Outside the geofence: recorded, flagged, not counted.
    pub flagged: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderClaim {
    pub member: u32,
    pub member_id: String,
    pub claimed_at: Ts,
    pub assigned: bool,
    pub checkin: Option<Stamp>,
    pub checkout: Option<Stamp>,
    pub hours: f64,
    pub rating: Option<Rating>,
}

impl OrderClaim {
    /// Worked and counted: checked in and out, neither flagged.
    pub fn counted(&self) -> bool {
        matches!((&self.checkin, &self.checkout), (Some(i), Some(o)) if !i.flagged && !o.flagged)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceOrder {
    pub id: String,
    pub community: u32,
    pub community_id: String,
    pub grid_id: String,
    pub location: Position,
    pub category: String,
    pub difficulty: u8,
    pub class: TaskClass,
    pub title: String,
    pub note: Option<String>,
    pub window_start: Ts,
    pub window_end: Ts,
    pub slots: u32,
    pub skills: Vec<String>,
    pub posted_at: Ts,
    pub posted_by: String,
    pub status: OrderStatus,
    pub priority_until: Option<Ts>,
    #[serde(serialize_with = "sorted")]
    pub priority: HashSet<u32>,
    pub claims: Vec<OrderClaim>,
}

impl ServiceOrder {
    pub fn claim_of(&self, member: u32) -> Option<&OrderClaim> {
        self.claims.iter().find(|c| c.member == member)
    }
}

/// `POST /v1/orders`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostOrder {
    pub grid_id: Option<String>,
    pub location: Option<Position>,
    pub category: String,
    pub difficulty: Option<u8>,
    pub title: String,
    pub note: Option<String>,
    pub window_start: Ts,
    pub window_end: Ts,
    pub slots: u32,
    pub skills: Vec<String>,
}

/// A rated task: a service order, or a wartime assignment (an offer on an incident).
///
/// Wire form: `{"type":"order","id":"ord-1"}`, `{"type":"offer","id":"off-1"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "id", rename_all = "snake_case")]
pub enum TaskRef {
    Order(String),
    Offer(String),
}

/// Serializes a set in order, so that a snapshot of one state is always the same bytes.
pub(super) fn sorted<S: Serializer, T: Ord + Serialize>(set: &HashSet<T>, s: S) -> Result<S::Ok, S::Error> {
    let mut items: Vec<&T> = set.iter().collect();
    items.sort();
    s.collect_seq(items)
}
