//! The state the log folds into: `State`, its deadlines, the frame filter, and the stream
//! counters that number every recipient's frames (`push_frame`).
//!
//! Separate from the kernel and the features so that all of them (and `scope`, `snapshot`,
//! `balance`, `reports`) can read and write the state without depending on each other.
//! Nothing here decides anything: the features do, through `command::Tx`.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use super::access::{Invitation, Session};
use super::event::{Frame, FrameData, Mode};
use super::incident::{Incident, OfferState, Status};
use super::matching::Roster;
use super::mobilization::{Mobilization, OrderState};
use super::org::CityIndex;
use super::service_data::ServiceOrder;
use super::time::Ts;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Deadline {
    OfferExpiry(String),
    Escalation(String),
    /// Soft: look again for candidates for an incident short of offers.
    Retry(String),
    /// A mobilization's reporting deadline.
    Mobilization(String),
    /// (incident id, whistle id): the whistled units' deadline to report.
    Whistle(String, String),
    /// (campaign id, shift id): rostered members not checked in by now are no-shows.
    CampaignShift(String, String),
}

/// Which streams' frames to build (see `State::frame_filter`).
#[derive(Clone, Default)]
pub struct FrameFilter(Option<std::sync::Arc<WantsStream>>);

type WantsStream = dyn Fn(&str) -> bool + Send + Sync;

impl FrameFilter {
    pub fn only(wants: impl Fn(&str) -> bool + Send + Sync + 'static) -> Self {
        FrameFilter(Some(std::sync::Arc::new(wants)))
    }
    pub fn wants(&self, stream: &str) -> bool {
        self.0.as_ref().is_none_or(|f| f(stream))
    }
}

impl std::fmt::Debug for FrameFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "FrameFilter(some streams)" } else { "FrameFilter(all)" })
    }
}

#[derive(Debug, Default)]
pub struct State {
    pub city: CityIndex,
    pub roster: Roster,
    /// By id; ids are `inc-000001`… so the map is also in order of raising.
    pub incidents: BTreeMap<String, Incident>,
    /// offer id -> incident id
    pub offer_index: HashMap<String, String>,
    /// "<actor label>\n<key>" -> incident id
    pub idempotency: HashMap<String, String>,
    /// Each recipient stream's last frame seq (a fast hash: every frame looks its stream up here).
    pub streams: HashMap<String, u64, foldhash::fast::RandomState>,
    /// While a node follows the log: the streams whose frames it needs (its own sockets');
    /// hot paths skip building the rest (their seqs still advance). Empty: all of them.
    pub frame_filter: FrameFilter,
    pub last_seq: u64,
    pub incidents_raised: u64,
    pub offers_sent: u64,
    pub deadlines: BTreeSet<(Ts, Deadline)>,
    /// Incidents with a `Retry` deadline pending (soft, like the retries themselves).
    pub retrying: std::collections::HashSet<String>,
    /// 平战: the city's mode, and the districts switched to wartime on their own.
    pub city_mode: Mode,
    pub wartime_districts: BTreeSet<String>,
    /// By id (`mob-1`…).
    pub mobilizations: BTreeMap<String, Mobilization>,
    /// Mobilizations with acknowledgements or reports not yet in a progress frame
    /// (derived: those whose `untallied` is not empty).
    pub untallied: BTreeSet<String>,
    pub mobilizations_ordered: u64,
    pub whistles_blown: u64,
    /// Service orders by id (`ord-1`…).
    pub orders: BTreeMap<String, ServiceOrder>,
    pub orders_posted: u64,
    /// (unit id, community id) of every 单位报到.
    pub unit_registrations: BTreeSet<(String, String)>,
    /// Token subject -> tokens issued at or before this second are revoked.
    /// Shared with `EngineHandle::is_revoked` (copy on write), which checks every request
    /// without the state's lock.
    /// Also `sid:<family>` for every ended session family (`access`), so that its access
    /// tokens are refused from the same copy.
    pub revoked: std::sync::Arc<HashMap<String, u64>>,
    /// Sign-in links by id (`inv-000001`…), and their ids by code hash (derived).
    pub invitations: BTreeMap<String, Invitation>,
    pub invitation_by_code: HashMap<String, String>,
    pub invitations_issued: u64,
    /// Open session families (devices signed in) by family id.
    pub sessions: BTreeMap<String, Session>,
    /// Outbound webhook endpoints by id (`wh-1`…).
    pub webhooks: BTreeMap<String, super::webhooks::Endpoint>,
    pub webhooks_registered: u64,
    /// Campaigns by id (`cmp-1`…), and how many were ever created.
    pub campaigns: BTreeMap<String, super::campaign::Campaign>,
    pub campaigns_created: u64,
    /// Web Push subscriptions and confirmed pushes (`domain::push`).
    pub push: super::push::PushState,
    /// Residents, their sign-in codes and requests, and members' proposals (issue #20).
    pub residents: super::residents_data::Residents,
    /// Members' answers with a client id, lately (`domain::answers`).
    pub answered: super::answers::Answered,
}

/// Was a token of this subject, issued at `iat` (seconds), revoked? (`State::revoked`, or
/// the engine's shared copy of it.)
pub fn is_revoked(revoked: &HashMap<String, u64>, subject: &str, iat: u64) -> bool {
    revoked.get(subject).is_some_and(|&before| iat <= before)
}

impl State {
    /// Is wartime in force in this district (its own switch, or the city's)?
    pub fn wartime(&self, district_id: &str) -> bool {
        self.city_mode == Mode::Wartime || self.wartime_districts.contains(district_id)
    }

    pub fn next_deadline(&self) -> Option<Ts> {
        self.deadlines.first().map(|(t, _)| *t)
    }

    pub fn stream_seq(&self, stream: &str) -> u64 {
        self.streams.get(stream).copied().unwrap_or(0)
    }

    pub fn member_index(&self, id: &str) -> Option<u32> {
        self.city.member_by_id.get(id).copied()
    }

    /// After a restart: look again for candidates for every open incident short of offers.
    pub fn schedule_retries(&mut self, now: Ts) {
        let ids: Vec<String> =
            self.incidents.values().filter(|i| i.status == Status::Open).map(|i| i.id.clone()).collect();
        for id in ids {
            self.schedule_retry(&id, now);
        }
    }

    /// One pending retry per incident, however many refills come up short.
    pub(super) fn schedule_retry(&mut self, incident_id: &str, at: Ts) {
        if self.retrying.insert(incident_id.to_string()) {
            self.deadlines.insert((at, Deadline::Retry(incident_id.to_string())));
        }
    }

    /// Seqs of the frames still open for a stream (a member's open offers and current
    /// assignment), resent with their own seq to a client that connects without `after_seq`.
    pub fn open_frames(&self, stream_name: &str) -> Vec<u64> {
        let Some(member_id) = stream_name.strip_prefix("member:") else {
            return Vec::new();
        };
        let Some(idx) = self.member_index(member_id) else { return Vec::new() };
        let rt = &self.roster.members[idx as usize];
        // Orders not yet reported on, then the offer or assignment in hand.
        let mut seqs: Vec<u64> = rt
            .orders
            .iter()
            .filter_map(|m| self.mobilizations.get(m))
            .filter_map(|m| m.by_member.get(&idx).map(|&i| &m.orders[i]))
            .filter(|o| o.state != OrderState::Reported)
            .flat_map(|o| std::iter::once(o.frame_seq).chain(o.state_seq))
            .collect();
        seqs.extend(self.open_offer_frames(idx));
        seqs.sort_unstable();
        seqs
    }

    fn open_offer_frames(&self, idx: u32) -> Vec<u64> {
        let Some(offer_id) = &self.roster.members[idx as usize].engaged else {
            return Vec::new();
        };
        let Some(inc) = self.offer_index.get(offer_id).and_then(|i| self.incidents.get(i)) else {
            return Vec::new();
        };
        match inc.offer(offer_id) {
            Some(o) if o.state == OfferState::Offered => vec![o.frame_seq],
            Some(o) if inc.status.is_closed() => {
                debug_assert!(false, "a closed incident holds nobody: {}", o.id);
                Vec::new()
            }
            Some(o) => std::iter::once(o.frame_seq).chain(o.assignment_seq).collect(),
            None => Vec::new(),
        }
    }

    pub(super) fn push_frame(
        &mut self,
        frames: &mut Vec<Frame>,
        stream: String,
        kind: &'static str,
        data: impl Into<FrameData>,
    ) -> u64 {
        // Most streams have had a frame before: find without copying the name.
        let seq = match self.streams.get_mut(stream.as_str()) {
            Some(seq) => {
                *seq += 1;
                *seq
            }
            None => {
                self.streams.insert(stream.clone(), 1);
                1
            }
        };
        frames.push(Frame { stream, seq, kind, data: data.into() });
        seq
    }

    /// The next seq of `stream`, for a frame not built here (see `frame_filter`).
    pub(super) fn skip_frame(&mut self, stream: String) -> u64 {
        let seq = self.streams.entry(stream).or_insert(0);
        *seq += 1;
        *seq
    }
}

/// Ends a member's duty unless a reported, open mobilization still holds them.
pub(super) fn end_duty_unless_mobilized(state: &mut State, idx: u32, at: Ts) {
    let mobilized = state.roster.members[idx as usize].orders.iter().any(|id| {
        state.mobilizations.get(id).is_some_and(|m| {
            m.is_open() && m.by_member.get(&idx).is_some_and(|&o| m.orders[o].state == OrderState::Reported)
        })
    });
    if !mobilized {
        state.roster.edit(idx, |m| m.work.end_duty(at));
    }
}
