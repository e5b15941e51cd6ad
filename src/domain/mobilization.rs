//! Mass mobilization (应急突击队集结): a set of teams ordered to report by a deadline, each
//! to its paired community or to a named community or site; per-member progress from
//! ordered to acknowledged to reported (geofenced).

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::geo::Position;
use super::time::Ts;

/// A named place to report to, other than a community.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Site {
    /// 1 to 200 characters, not all blank.
    #[schema(min_length = 1, max_length = 200, pattern = "\\S", example = "Wuhan Sports Centre")]
    pub name: String,
    pub location: Position,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderState {
    Ordered,
    Acknowledged,
    Reported,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberOrder {
    pub member: u32,
    pub member_id: String,
    pub team: u32,
    /// Community index to report to, or `None` for the mobilization's site.
    pub community: Option<u32>,
    pub state: OrderState,
    /// Seq of the `mobilization.order` frame in the member's stream.
    pub frame_seq: u64,
    /// Seq of the latest `mobilization.state` frame (the member's own ack or report).
    pub state_seq: Option<u64>,
    pub acknowledged_at: Option<Ts>,
    pub reported_at: Option<Ts>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mobilization {
    pub id: String,
    pub ordered_at: Ts,
    pub ordered_by: String,
    pub deadline: Ts,
    pub note: Option<String>,
    pub site: Option<Site>,
    /// (team index, community index it reports to, or None for the site)
    pub teams: Vec<(u32, Option<u32>)>,
    pub orders: Vec<MemberOrder>,
    /// member index -> position in `orders` (not in snapshots: derived from `orders`)
    #[serde(skip)]
    pub by_member: HashMap<u32, usize, foldhash::fast::RandomState>,
    pub closed: Option<(Ts, String)>,
    pub deadline_passed: bool,
    /// Districts whose command streams follow it (those of the places reported to).
    pub districts: Vec<String>,
    /// Kept as orders change, so a progress frame costs nothing per member.
    pub counts: Progress,
    /// (member index, new state) since the last tally, for the next progress frame.
    #[serde(default)]
    pub untallied: Vec<(u32, OrderState)>,
    /// The data of the `mobilization.state` frames (acknowledged, reported), the same for
    /// every member: built once and shared, so a batch's frames encode it once.
    #[serde(skip)]
    state_data: [Option<Arc<serde_json::Value>>; 2],
}

/// Counts of one slice of a mobilization.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Progress {
    pub ordered: u32,
    pub acknowledged: u32,
    pub reported: u32,
    pub missing: u32,
}

impl Progress {
    /// An order moves from one state to a later one.
    pub fn advance(&mut self, from: OrderState, to: OrderState) {
        if from == OrderState::Ordered && to != OrderState::Ordered {
            self.acknowledged += 1;
        }
        if to == OrderState::Reported && from != OrderState::Reported {
            self.reported += 1;
            self.missing -= 1;
        }
    }

    pub fn add(&mut self, s: OrderState) {
        self.ordered += 1;
        match s {
            OrderState::Ordered => self.missing += 1,
            OrderState::Acknowledged => {
                self.acknowledged += 1;
                self.missing += 1;
            }
            OrderState::Reported => {
                self.acknowledged += 1;
                self.reported += 1;
            }
        }
    }
}

impl Mobilization {
    pub fn new(
        id: String,
        ordered_at: Ts,
        ordered_by: String,
        deadline: Ts,
        note: Option<String>,
        site: Option<Site>,
    ) -> Mobilization {
        Mobilization {
            id,
            ordered_at,
            ordered_by,
            deadline,
            note,
            site,
            teams: Vec::new(),
            orders: Vec::new(),
            by_member: HashMap::default(),
            closed: None,
            deadline_passed: false,
            districts: Vec::new(),
            counts: Progress::default(),
            untallied: Vec::new(),
            state_data: [None, None],
        }
    }

    /// `{mobilization_id, state}`, the data of a member's `mobilization.state` frame.
    pub fn state_data(&mut self, state: OrderState) -> Arc<serde_json::Value> {
        let slot = &mut self.state_data[usize::from(state == OrderState::Reported)];
        slot.get_or_insert_with(|| Arc::new(serde_json::json!({"mobilization_id": self.id, "state": state}))).clone()
    }

    pub fn is_open(&self) -> bool {
        self.closed.is_none()
    }

    /// Counts by team or by community, and who is missing, for the progress view.
    pub fn breakdown(&self, key: impl Fn(&MemberOrder) -> u32) -> Vec<(u32, Progress, Vec<&MemberOrder>)> {
        breakdown(self.orders.iter(), key)
    }
}

/// Counts of some of a mobilization's orders (those a caller may see) by team or by
/// community, and who is missing.
pub fn breakdown<'a>(
    orders: impl IntoIterator<Item = &'a MemberOrder>,
    key: impl Fn(&MemberOrder) -> u32,
) -> Vec<(u32, Progress, Vec<&'a MemberOrder>)> {
    let mut by: std::collections::BTreeMap<u32, (Progress, Vec<&MemberOrder>)> = Default::default();
    for o in orders {
        let e = by.entry(key(o)).or_default();
        e.0.add(o.state);
        if o.state != OrderState::Reported {
            e.1.push(o);
        }
    }
    by.into_iter().map(|(k, (p, missing))| (k, p, missing)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_counts_reported_as_acknowledged_and_missing_until_reported() {
        let mut p = Progress::default();
        for s in [OrderState::Ordered, OrderState::Acknowledged, OrderState::Reported, OrderState::Reported] {
            p.add(s);
        }
        assert_eq!(p, Progress { ordered: 4, acknowledged: 3, reported: 2, missing: 2 });
        let mut q = Progress::default();
        for _ in 0..4 {
            q.add(OrderState::Ordered);
        }
        q.advance(OrderState::Ordered, OrderState::Acknowledged);
        q.advance(OrderState::Ordered, OrderState::Reported);
        q.advance(OrderState::Acknowledged, OrderState::Reported);
        q.advance(OrderState::Ordered, OrderState::Reported);
        assert_eq!(q, Progress { ordered: 4, acknowledged: 3, reported: 3, missing: 1 });
    }
}
