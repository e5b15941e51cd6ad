//! The dispatcher: `State`, the commands it takes, and the one rule of change.
//!
//! `execute(state, rules, actor, command, now)` first validates the command against the
//! state (an invalid command returns an error and changes nothing), then decides step by
//! step: each decision is an `Event`, applied at once with `apply`, so that the next
//! decision sees it (a refill after an expiry must not offer the same member twice). The
//! engine appends the events, with the frames `apply` derived from them, in one durable
//! transaction before anyone hears "done"; if that append fails it rebuilds the state from
//! the log, so nothing unconfirmed survives.
//!
//! `apply` is the only way events change the state, and replaying the log through it
//! rebuilds the same state, frames and stream counters. Deadlines (offer expiry,
//! escalation) are data in the state, set by `apply`, so they resume after a restart.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Value, json};

use super::event::{EscalationReason, Event, EventBody, Frame, FrameData, Mode, RevokeReason, Ts, stream};
use super::geo::Position;
use super::incident::{Incident, Offer, OfferState, Status};
use super::matching::{self, Roster, Target};
use super::mobilization::{Mobilization, OrderState};
use super::org::{City, CityIndex};
use super::response::{Level, Rules};
use super::scope;
use super::service::{self, Currency, PostOrder, Rating, ServiceOrder, TaskRef};
use super::wartime::{self, MobilizeOrder, WhistleTarget};
use super::workload::TaskClass;

/// Who is acting, with the scope their token grants.
///
/// Wire form (between nodes): `{"type":"command","district":null}`, `{"type":"system"}`…
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Actor {
    /// City-wide when `district` is `None`.
    Command {
        district: Option<String>,
    },
    Staff {
        community: String,
    },
    UnitAdmin {
        unit: String,
    },
    Member {
        member: String,
    },
    /// Deadlines and the demo loader.
    System,
}

impl Actor {
    /// How the actor is written in the log.
    pub fn label(&self) -> String {
        match self {
            Actor::Command { district: None } => "command".into(),
            Actor::Command { district: Some(d) } => format!("command:{d}"),
            Actor::Staff { community } => format!("staff:{community}"),
            Actor::UnitAdmin { unit } => format!("unit_admin:{unit}"),
            Actor::Member { member } => format!("member:{member}"),
            Actor::System => "system".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RaiseIncident {
    pub grid_id: Option<String>,
    pub location: Option<Position>,
    pub category: String,
    pub level: Level,
    pub headcount: u32,
    pub skills: Vec<String>,
    pub note: Option<String>,
    pub idempotency_key: Option<String>,
    /// 1–5; at least the category's, which is the default.
    pub difficulty: Option<u8>,
}

/// Wire form (between nodes): internally tagged by `name()`, e.g.
/// `{"type":"accept","offer_id":"off-1"}`, `{"type":"tick"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Command {
    ImportCity(Box<City>),
    Raise(RaiseIncident),
    Escalate {
        incident_id: String,
    },
    Resolve {
        incident_id: String,
        note: Option<String>,
    },
    Cancel {
        incident_id: String,
        reason: Option<String>,
    },
    Accept {
        offer_id: String,
    },
    Decline {
        offer_id: String,
        reason: Option<String>,
    },
    Arrive {
        offer_id: String,
        position: Position,
    },
    Location {
        position: Position,
    },
    Duty {
        on_call: bool,
    },
    /// 平战转换 of a district, or of the city when `district_id` is `None`.
    SwitchMode {
        district_id: Option<String>,
        mode: Mode,
        reason: String,
    },
    Mobilize(MobilizeOrder),
    CloseMobilization {
        mobilization_id: String,
        reason: Option<String>,
    },
    #[serde(rename = "mobilization_ack")]
    AcknowledgeOrder {
        mobilization_id: String,
    },
    #[serde(rename = "mobilization_report")]
    ReportArrival {
        mobilization_id: String,
        position: Position,
    },
    Whistle {
        incident_id: String,
        to: WhistleTarget,
    },
    Transfer {
        from: String,
        to: String,
        members: Vec<String>,
    },
    /// 双报到: register (or re-register) members at their residence community.
    Register {
        members: Vec<super::org::Member>,
    },
    RegisterUnit {
        unit_id: String,
        community_id: String,
    },
    PostOrder(PostOrder),
    /// A member claims an order, or staff assign it to `assign_to`.
    ClaimOrder {
        order_id: String,
        assign_to: Option<String>,
    },
    CancelOrder {
        order_id: String,
        reason: Option<String>,
    },
    CheckIn {
        order_id: String,
        position: Position,
    },
    CheckOut {
        order_id: String,
        position: Position,
    },
    Rate {
        task: TaskRef,
        member_id: String,
        rating: Rating,
    },
    Exchange {
        member_id: String,
        from: Currency,
        amount: f64,
    },
    /// Revoke every token of a subject (`member:m00001`, `staff:c001`…) issued until now.
    RevokeTokens {
        subject: String,
    },
    /// Fire every deadline due at `now`.
    Tick,
    /// Publish the progress of the mobilizations acknowledged or reported to since the
    /// last tally (the engine's, once per batch).
    Tally,
}

impl Command {
    pub fn name(&self) -> &'static str {
        match self {
            Command::ImportCity(_) => "import_city",
            Command::Raise(_) => "raise",
            Command::Escalate { .. } => "escalate",
            Command::Resolve { .. } => "resolve",
            Command::Cancel { .. } => "cancel",
            Command::Accept { .. } => "accept",
            Command::Decline { .. } => "decline",
            Command::Arrive { .. } => "arrive",
            Command::Location { .. } => "location",
            Command::Duty { .. } => "duty",
            Command::SwitchMode { .. } => "switch_mode",
            Command::Mobilize(_) => "mobilize",
            Command::CloseMobilization { .. } => "close_mobilization",
            Command::AcknowledgeOrder { .. } => "mobilization_ack",
            Command::ReportArrival { .. } => "mobilization_report",
            Command::Whistle { .. } => "whistle",
            Command::Transfer { .. } => "transfer",
            Command::Register { .. } => "register",
            Command::RegisterUnit { .. } => "register_unit",
            Command::PostOrder(_) => "post_order",
            Command::ClaimOrder { .. } => "claim_order",
            Command::CancelOrder { .. } => "cancel_order",
            Command::CheckIn { .. } => "check_in",
            Command::CheckOut { .. } => "check_out",
            Command::Rate { .. } => "rate",
            Command::Exchange { .. } => "exchange",
            Command::RevokeTokens { .. } => "revoke_tokens",
            Command::Tick => "tick",
            Command::Tally => "tally",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The input is malformed or names something unknown (HTTP 422 / 400).
    Invalid,
    /// The actor may not do this (HTTP 403).
    Forbidden,
    /// Unknown, or outside the actor's scope: the two are answered alike (HTTP 404).
    NotFound,
    /// Valid, but not in the current state (HTTP 409).
    Conflict,
}

/// A refusal. `code` is stable and documented in docs/PROTOCOL.md; `detail` is for people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct DomainError {
    pub kind: ErrorKind,
    pub code: &'static str,
    pub detail: String,
}

pub(super) fn err(kind: ErrorKind, code: &'static str, detail: impl Into<String>) -> DomainError {
    DomainError { kind, code, detail: detail.into() }
}

/// Every code the domain refuses with, so that a `DomainError` read off the wire gets its
/// `&'static str` back. `wire_tests::every_code_is_listed` keeps this list complete.
pub const CODES: &[&str] = &[
    "already_checked_in",
    "already_checked_out",
    "already_in_mode",
    "already_rated",
    "bad_amount",
    "bad_idempotency_key",
    "bad_title",
    "bad_window",
    "city_command_only",
    "deadline_out_of_range",
    "did_not_work",
    "difficulty_out_of_range",
    "duplicate_member",
    "easy_cap",
    "grid_or_location",
    "headcount_out_of_range",
    "incident_closed",
    "incident_filled",
    "insufficient_balance",
    "invalid_city",
    "invalid_member",
    "invalid_registration",
    "invalid_site",
    "invalid_subject",
    "invalid_transfer",
    "member_exists",
    "members_only",
    "mobilization_closed",
    "no_city",
    "no_teams",
    "no_units",
    "not_accepted",
    "not_checked_in",
    "not_claimed",
    "not_eligible",
    "not_paired",
    "not_wartime",
    "offer_accepted",
    "offer_declined",
    "offer_expired",
    "offer_not_open",
    "offer_revoked",
    "one_destination",
    "one_selector",
    "open_incidents",
    "open_mobilizations",
    "open_orders",
    "order_closed",
    "order_full",
    "outside_geofence",
    "outside_scope",
    "priority_window",
    "reason_required",
    "role_not_allowed",
    "slots_out_of_range",
    "stale_proposal",
    "task_not_finished",
    "text_too_long",
    "too_many_skills",
    "top_level",
    "unknown_category",
    "unknown_community",
    "unknown_district",
    "unknown_grid",
    "unknown_incident",
    "unknown_member",
    "unknown_mobilization",
    "unknown_offer",
    "unknown_order",
    "unknown_skill",
    "unknown_task",
    "unknown_team",
    "unknown_unit",
];

/// The code a `DomainError` read off the wire carries: the domain's own `&'static str`,
/// or `"remote_error"` for a code this build does not know (a newer node's).
pub fn known_code(code: &str) -> &'static str {
    CODES.iter().copied().find(|c| *c == code).unwrap_or("remote_error")
}

/// Wire form: `{"kind":"not_found","code":"unknown_offer","detail":"…"}`.
impl Serialize for DomainError {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Wire<'a> {
            kind: ErrorKind,
            code: &'a str,
            detail: &'a str,
        }
        Wire { kind: self.kind, code: self.code, detail: &self.detail }.serialize(s)
    }
}

impl<'de> Deserialize<'de> for DomainError {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Wire {
            kind: ErrorKind,
            code: String,
            detail: String,
        }
        let w = Wire::deserialize(d)?;
        Ok(DomainError { kind: w.kind, code: known_code(&w.code), detail: w.detail })
    }
}

/// What a successful command answers.
///
/// Wire form: `{"type":"done"}`, `{"type":"incident","id":"inc-000001"}`…
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "id", rename_all = "snake_case")]
pub enum Reply {
    Done,
    Incident(String),
    Mobilization(String),
    Order(String),
}

#[derive(Debug, Default)]
pub struct Outcome {
    pub events: Vec<Event>,
    pub frames: Vec<Frame>,
    pub reply: Option<Reply>,
}

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
    pub revoked: std::sync::Arc<HashMap<String, u64>>,
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
    fn schedule_retry(&mut self, incident_id: &str, at: Ts) {
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

/// The incident's counts, carried by every `incident.*` frame so a dashboard needs no lookup.
pub fn summary(inc: &Incident) -> Value {
    json!({
        "status": inc.status.as_str(),
        "level": inc.level,
        "headcount": inc.headcount,
        "accepted": inc.accepted(),
        "arrived": inc.arrived(),
        "open_offers": inc.open_offers(),
    })
}

/// A command in progress: emits events one at a time, applying each at once.
pub(super) struct Tx<'a> {
    pub(super) state: &'a mut State,
    pub(super) rules: &'a Rules,
    pub(super) actor: String,
    pub(super) now: Ts,
    out: Outcome,
}

impl Tx<'_> {
    pub(super) fn emit(&mut self, body: EventBody) {
        let event = Event { seq: self.state.last_seq + 1, at: self.now, actor: self.actor.clone(), body };
        let frames = apply(self.state, &event);
        self.out.frames.extend(frames);
        self.out.events.push(event);
    }

    /// Sends as many offers as the incident wants, reach by reach. In peacetime a call
    /// that was not escalated and is below level Ⅱ stays within the community's own members.
    pub(super) fn refill(&mut self, incident_id: &str) {
        let Some(inc) = self.state.incidents.get(incident_id) else { return };
        let mut wanted = inc.offers_wanted(self.rules.overbook) as usize;
        if wanted == 0 {
            return;
        }
        let wartime = self.state.wartime(&inc.district_id);
        let own_community =
            (self.rules.peacetime_own_community && !wartime && !inc.escalated && inc.level <= Level::III)
                .then(|| self.state.city.grid_places[inc.grid as usize].community);
        let ttl_ms = self.rules.offer_ttl_ms(wartime);
        let reaches = self.rules.reach(inc.level, wartime).to_vec();
        for reach in reaches {
            let inc = &self.state.incidents[incident_id];
            let target = Target {
                location: inc.location,
                grid: inc.grid,
                skills: &inc.skills,
                offered: &inc.offered,
                difficulty: inc.difficulty,
                class: inc.class,
                own_community,
                wartime,
            };
            let found =
                matching::find(&self.state.city, &self.state.roster, self.rules, &target, reach, wanted, self.now);
            for c in found {
                let member_id = self.state.city.members()[c.member as usize].id.clone();
                let inc = &self.state.incidents[incident_id];
                let target = Target {
                    location: inc.location,
                    grid: inc.grid,
                    skills: &inc.skills,
                    offered: &inc.offered,
                    difficulty: inc.difficulty,
                    class: inc.class,
                    own_community,
                    wartime,
                };
                let why = matching::why(&self.state.city, &self.state.roster, self.rules, &target, &c, self.now);
                self.emit(EventBody::OfferSent {
                    offer_id: format!("off-{}", self.state.offers_sent + 1),
                    incident_id: incident_id.to_string(),
                    member_id,
                    distance_m: (c.distance_m * 10.0).round() / 10.0,
                    expires_at: self.now + ttl_ms,
                    whistle_id: None,
                    why,
                });
                wanted -= 1;
            }
            if wanted == 0 {
                return;
            }
        }
        // Short of candidates: look again later (soft, recomputed after a restart).
        self.state.schedule_retry(incident_id, self.now + self.rules.retry_s as i64 * 1000);
    }

    fn escalate(&mut self, incident_id: &str, reason: EscalationReason) -> Result<(), DomainError> {
        let inc = &self.state.incidents[incident_id];
        let from = inc.level;
        let Some(to) = from.next() else {
            return Err(err(ErrorKind::Conflict, "top_level", format!("incident {incident_id} is already at level I")));
        };
        let escalate_at = self.rules.level(to).escalate_after_s.map(|s| self.now + s as i64 * 1000);
        let wartime = self.state.wartime(&inc.district_id);
        self.emit(EventBody::IncidentEscalated { incident_id: incident_id.into(), from, to, reason, escalate_at });
        let reach = self.rules.reach(to, wartime).iter().map(|r| r.as_str().to_string()).collect();
        self.emit(EventBody::WhistleBlown { incident_id: incident_id.into(), level: to, reach, reason });
        self.refill(incident_id);
        Ok(())
    }

    pub(super) fn close(&mut self, incident_id: &str, revoke: RevokeReason) {
        let inc = &self.state.incidents[incident_id];
        let open: Vec<(String, String)> = inc
            .offers
            .iter()
            .filter(|o| o.state == OfferState::Offered)
            .map(|o| (o.id.clone(), o.member_id.clone()))
            .collect();
        for (offer_id, member_id) in open {
            self.emit(EventBody::OfferRevoked { offer_id, incident_id: incident_id.into(), member_id, reason: revoke });
        }
    }
}

/// Validates and carries out one command. On error nothing has changed.
pub fn execute(state: &mut State, rules: &Rules, actor: &Actor, cmd: Command, now: Ts) -> Result<Outcome, DomainError> {
    let mut tx = Tx { state, rules, actor: actor.label(), now, out: Outcome::default() };
    let reply = match cmd {
        Command::ImportCity(city) => import_city(&mut tx, actor, *city)?,
        Command::Raise(r) => raise(&mut tx, actor, r)?,
        Command::Escalate { incident_id } => {
            let id = visible_incident(tx.state, actor, &incident_id)?;
            match tx.state.incidents[&id].status {
                Status::Open => {}
                Status::Filled => {
                    return Err(err(
                        ErrorKind::Conflict,
                        "incident_filled",
                        format!("incident {id} is already filled"),
                    ));
                }
                _ => return Err(closed(&id)),
            }
            tx.escalate(&id, EscalationReason::Manual)?;
            Reply::Incident(id)
        }
        Command::Resolve { incident_id, note } => {
            let id = visible_incident(tx.state, actor, &incident_id)?;
            check_note(note.as_deref())?;
            if tx.state.incidents[&id].status.is_closed() {
                return Err(closed(&id));
            }
            tx.close(&id, RevokeReason::Resolved);
            tx.emit(EventBody::IncidentResolved { incident_id: id.clone(), note });
            Reply::Incident(id)
        }
        Command::Cancel { incident_id, reason } => {
            let id = visible_incident(tx.state, actor, &incident_id)?;
            check_note(reason.as_deref())?;
            if tx.state.incidents[&id].status.is_closed() {
                return Err(closed(&id));
            }
            tx.close(&id, RevokeReason::Cancelled);
            tx.emit(EventBody::IncidentCancelled { incident_id: id.clone(), reason });
            Reply::Incident(id)
        }
        Command::Accept { offer_id } => answer(&mut tx, actor, &offer_id, Answer::Accept)?,
        Command::Decline { offer_id, reason } => {
            check_note(reason.as_deref())?;
            answer(&mut tx, actor, &offer_id, Answer::Decline(reason))?
        }
        Command::Arrive { offer_id, position } => answer(&mut tx, actor, &offer_id, Answer::Arrive(position))?,
        Command::Location { position } => {
            let idx = acting_member(tx.state, actor)?;
            tx.state.roster.move_to(idx, position);
            Reply::Done
        }
        Command::Duty { on_call } => {
            let idx = acting_member(tx.state, actor)?;
            if tx.state.roster.members[idx as usize].on_call != on_call {
                let member_id = tx.state.city.members()[idx as usize].id.clone();
                tx.emit(EventBody::DutyChanged { member_id, on_call });
            }
            Reply::Done
        }
        Command::SwitchMode { district_id, mode, reason } => {
            wartime::switch_mode(&mut tx, actor, district_id, mode, reason)?
        }
        Command::Mobilize(order) => wartime::mobilize(&mut tx, actor, order)?,
        Command::CloseMobilization { mobilization_id, reason } => {
            wartime::close_mobilization(&mut tx, actor, &mobilization_id, reason)?
        }
        Command::AcknowledgeOrder { mobilization_id } => wartime::acknowledge(&mut tx, actor, &mobilization_id)?,
        Command::ReportArrival { mobilization_id, position } => {
            wartime::report(&mut tx, actor, &mobilization_id, position)?
        }
        Command::Whistle { incident_id, to } => {
            let id = visible_incident(tx.state, actor, &incident_id)?;
            wartime::whistle(&mut tx, actor, &id, to)?
        }
        Command::Transfer { from, to, members } => wartime::transfer(&mut tx, actor, &from, &to, members)?,
        Command::Register { members } => service::register(&mut tx, actor, members)?,
        Command::RegisterUnit { unit_id, community_id } => {
            service::register_unit(&mut tx, actor, &unit_id, &community_id)?
        }
        Command::PostOrder(o) => service::post_order(&mut tx, actor, o)?,
        Command::ClaimOrder { order_id, assign_to } => service::claim(&mut tx, actor, &order_id, assign_to)?,
        Command::CancelOrder { order_id, reason } => service::cancel_order(&mut tx, actor, &order_id, reason)?,
        Command::CheckIn { order_id, position } => service::stamp(&mut tx, actor, &order_id, position, false)?,
        Command::CheckOut { order_id, position } => service::stamp(&mut tx, actor, &order_id, position, true)?,
        Command::Rate { task, member_id, rating } => service::rate(&mut tx, actor, task, &member_id, rating)?,
        Command::Exchange { member_id, from, amount } => service::exchange(&mut tx, actor, &member_id, from, amount)?,
        Command::RevokeTokens { subject } => {
            scope::require(actor, scope::Action::RevokeTokens)?;
            if subject.is_empty() || subject.len() > 200 {
                return Err(err(ErrorKind::Invalid, "invalid_subject", "name a token subject, e.g. member:m00001"));
            }
            tx.emit(EventBody::TokensRevoked { subject, before_s: (now / 1000).max(0) as u64 });
            Reply::Done
        }
        Command::Tick => {
            tick(&mut tx);
            Reply::Done
        }
        Command::Tally => wartime::tally(&mut tx),
    };
    tx.out.reply = Some(reply);
    debug_assert!(tx.state.roster.hot_in_step(), "Roster::hot drifted from MemberRt");
    Ok(tx.out)
}

pub(super) fn closed(id: &str) -> DomainError {
    err(ErrorKind::Conflict, "incident_closed", format!("incident {id} is already resolved or cancelled"))
}

pub(super) fn check_note(note: Option<&str>) -> Result<(), DomainError> {
    match note {
        Some(n) if n.chars().count() > 1000 => {
            Err(err(ErrorKind::Invalid, "text_too_long", "a note or reason is at most 1000 characters"))
        }
        _ => Ok(()),
    }
}

pub(super) fn visible_incident(state: &State, actor: &Actor, id: &str) -> Result<String, DomainError> {
    match state.incidents.get(id) {
        Some(inc) if scope::incident(actor, inc) => Ok(inc.id.clone()),
        _ => Err(err(ErrorKind::NotFound, "unknown_incident", format!("no incident '{id}' in your scope"))),
    }
}

pub(super) fn acting_member(state: &State, actor: &Actor) -> Result<u32, DomainError> {
    match actor {
        Actor::Member { member } => state
            .member_index(member)
            .ok_or_else(|| err(ErrorKind::NotFound, "unknown_member", format!("member '{member}' is not in the city"))),
        _ => Err(err(ErrorKind::Forbidden, "members_only", "only a member can do this")),
    }
}

fn import_city(tx: &mut Tx<'_>, actor: &Actor, city: City) -> Result<Reply, DomainError> {
    scope::require(actor, scope::Action::ImportCity)?;
    if let Some(open) = tx.state.incidents.values().find(|i| !i.status.is_closed()) {
        return Err(err(
            ErrorKind::Conflict,
            "open_incidents",
            format!("incident {} is still open; resolve or cancel every incident before importing a city", open.id),
        ));
    }
    if let Some(m) = tx.state.mobilizations.values().find(|m| m.is_open()) {
        return Err(err(
            ErrorKind::Conflict,
            "open_mobilizations",
            format!("mobilization {} is still open; close every mobilization before importing a city", m.id),
        ));
    }
    for m in &city.members {
        if let Some(s) = m.skills.iter().find(|s| !tx.rules.has_skill(s)) {
            return Err(err(
                ErrorKind::Invalid,
                "unknown_skill",
                format!("member '{}' has skill '{s}', which is not in the catalog", m.id),
            ));
        }
    }
    let index = CityIndex::build(city.clone()).map_err(|e| err(ErrorKind::Invalid, "invalid_city", e.0))?;
    if let Some(o) = tx
        .state
        .orders
        .values()
        .find(|o| o.status != service::OrderStatus::Cancelled && !index.grid_flat.contains_key(&o.grid_id))
    {
        return Err(err(
            ErrorKind::Conflict,
            "open_orders",
            format!("order {} is in grid {}, which the new city drops; cancel it first", o.id, o.grid_id),
        ));
    }
    tx.emit(EventBody::CityImported { city: Box::new(city) });
    Ok(Reply::Done)
}

fn raise(tx: &mut Tx<'_>, actor: &Actor, r: RaiseIncident) -> Result<Reply, DomainError> {
    scope::require(actor, scope::Action::Incidents)?;
    let state = &*tx.state;
    if state.city.city().is_none() {
        return Err(err(ErrorKind::Conflict, "no_city", "no city has been imported yet (PUT /v1/city)"));
    }
    if let Some(key) = &r.idempotency_key {
        if key.is_empty() || key.len() > 200 {
            return Err(err(ErrorKind::Invalid, "bad_idempotency_key", "Idempotency-Key must be 1 to 200 characters"));
        }
        if let Some(id) = state.idempotency.get(&format!("{}\n{key}", tx.actor)) {
            return Ok(Reply::Incident(id.clone()));
        }
    }
    let scoped = !scope::city_wide(actor);
    let outside = |what: String| {
        if scoped {
            err(
                ErrorKind::Forbidden,
                "outside_scope",
                format!("{what} is not in your area; you may raise incidents only there"),
            )
        } else {
            err(ErrorKind::Invalid, "unknown_grid", format!("{what} is not in any grid of the city"))
        }
    };
    let grid = match (&r.grid_id, r.location) {
        (Some(_), Some(_)) | (None, None) => {
            return Err(err(ErrorKind::Invalid, "grid_or_location", "give exactly one of grid_id or location"));
        }
        (Some(g), None) => *state.city.grid_flat.get(g).ok_or_else(|| outside(format!("grid '{g}'")))?,
        (None, Some(p)) => state.city.grid_at(p).ok_or_else(|| outside(format!("location {},{}", p.lat, p.lng)))?,
    };
    let place = state.city.grid_places[grid as usize];
    if !scope::community(state, actor, place.community) {
        return Err(outside(format!("grid '{}'", state.city.grid_ids[grid as usize])));
    }
    let Some(category) = tx.rules.category(&r.category).cloned() else {
        let known: Vec<&str> = tx.rules.categories.iter().map(|c| c.id.as_str()).collect();
        return Err(err(
            ErrorKind::Invalid,
            "unknown_category",
            format!("category '{}' is not one of {}", r.category, known.join(", ")),
        ));
    };
    let difficulty = r.difficulty.unwrap_or(category.difficulty);
    if difficulty < category.difficulty || difficulty > 5 {
        return Err(err(
            ErrorKind::Invalid,
            "difficulty_out_of_range",
            format!("difficulty {difficulty} is not between the category's {} and 5", category.difficulty),
        ));
    }
    if r.headcount == 0 || r.headcount > tx.rules.max_headcount {
        return Err(err(
            ErrorKind::Invalid,
            "headcount_out_of_range",
            format!("headcount {} is not between 1 and {}", r.headcount, tx.rules.max_headcount),
        ));
    }
    if r.skills.len() > 16 {
        return Err(err(ErrorKind::Invalid, "too_many_skills", "an incident names at most 16 skills"));
    }
    let mut skills = Vec::with_capacity(r.skills.len());
    for s in r.skills {
        if !tx.rules.has_skill(&s) {
            return Err(err(
                ErrorKind::Invalid,
                "unknown_skill",
                format!("skill '{s}' is not in the catalog (GET /v1/catalog)"),
            ));
        }
        if !skills.contains(&s) {
            skills.push(s);
        }
    }
    check_note(r.note.as_deref())?;

    let incident_id = format!("inc-{:06}", state.incidents_raised + 1);
    let location = r.location.unwrap_or(state.city.grid_centers[grid as usize]);
    let escalate_at = tx.rules.level(r.level).escalate_after_s.map(|s| tx.now + s as i64 * 1000);
    tx.emit(EventBody::IncidentRaised {
        incident_id: incident_id.clone(),
        community_id: state.city.community(place.community).id.clone(),
        grid_id: state.city.grid_ids[grid as usize].clone(),
        location,
        category: r.category,
        level: r.level,
        headcount: r.headcount,
        skills,
        note: r.note,
        idempotency_key: r.idempotency_key,
        escalate_at,
        difficulty,
        class: TaskClass::of(difficulty, tx.rules),
    });
    tx.refill(&incident_id);
    Ok(Reply::Incident(incident_id))
}

enum Answer {
    Accept,
    Decline(Option<String>),
    Arrive(Position),
}

fn answer(tx: &mut Tx<'_>, actor: &Actor, offer_id: &str, answer: Answer) -> Result<Reply, DomainError> {
    let idx = acting_member(tx.state, actor)?;
    let member_id = tx.state.city.members()[idx as usize].id.clone();
    let unknown = || err(ErrorKind::NotFound, "unknown_offer", format!("you have no offer '{offer_id}'"));
    let incident_id = tx.state.offer_index.get(offer_id).cloned().ok_or_else(unknown)?;
    let inc = &tx.state.incidents[&incident_id];
    let offer = inc.offer(offer_id).filter(|o| o.member_id == member_id).ok_or_else(unknown)?;
    let ended = |state: OfferState| {
        err(
            ErrorKind::Conflict,
            match state {
                OfferState::Expired => "offer_expired",
                OfferState::Revoked => "offer_revoked",
                OfferState::Declined => "offer_declined",
                _ => "offer_not_open",
            },
            format!("offer {offer_id} is {}", state.as_str()),
        )
    };
    let expired_now = offer.state == OfferState::Offered && offer.expires_at <= tx.now;
    match answer {
        Answer::Accept => match offer.state {
            OfferState::Accepted | OfferState::Arrived => {}
            OfferState::Offered if expired_now => return Err(ended(OfferState::Expired)),
            OfferState::Offered => {
                tx.emit(EventBody::OfferAccepted {
                    offer_id: offer_id.into(),
                    incident_id: incident_id.clone(),
                    member_id,
                });
                let inc = &tx.state.incidents[&incident_id];
                if inc.accepted() >= inc.headcount {
                    tx.emit(EventBody::IncidentFilled { incident_id: incident_id.clone() });
                    tx.close(&incident_id, RevokeReason::Filled);
                }
            }
            s => return Err(ended(s)),
        },
        Answer::Decline(reason) => match offer.state {
            OfferState::Declined | OfferState::Expired | OfferState::Revoked => {}
            OfferState::Offered => {
                tx.emit(EventBody::OfferDeclined {
                    offer_id: offer_id.into(),
                    incident_id: incident_id.clone(),
                    member_id,
                    reason,
                });
                tx.refill(&incident_id);
            }
            OfferState::Accepted | OfferState::Arrived => {
                return Err(err(
                    ErrorKind::Conflict,
                    "offer_accepted",
                    format!("offer {offer_id} is already accepted; ask the community staff to release you"),
                ));
            }
        },
        Answer::Arrive(position) => match offer.state {
            OfferState::Arrived => {}
            OfferState::Accepted if inc.status.is_closed() => return Err(closed(&incident_id)),
            OfferState::Accepted => {
                let distance_m = position.distance_m(inc.location);
                if distance_m > tx.rules.geofence_m {
                    return Err(err(
                        ErrorKind::Invalid,
                        "outside_geofence",
                        format!(
                            "you are {:.0} m from the incident; arrival counts within {:.0} m",
                            distance_m, tx.rules.geofence_m
                        ),
                    ));
                }
                let distance_m = (distance_m * 10.0).round() / 10.0;
                tx.emit(EventBody::MemberArrived {
                    offer_id: offer_id.into(),
                    incident_id,
                    member_id,
                    position,
                    distance_m,
                });
                tx.state.roster.move_to(idx, position);
            }
            OfferState::Offered => {
                return Err(err(
                    ErrorKind::Conflict,
                    "not_accepted",
                    format!("accept offer {offer_id} before arriving"),
                ));
            }
            s => return Err(ended(s)),
        },
    }
    Ok(Reply::Done)
}

fn tick(tx: &mut Tx<'_>) {
    let mut refill = BTreeSet::new();
    while let Some((at, _)) = tx.state.deadlines.first() {
        if *at > tx.now {
            break;
        }
        let (at, deadline) = tx.state.deadlines.pop_first().expect("checked non-empty");
        match deadline {
            Deadline::OfferExpiry(offer_id) => {
                let Some(incident_id) = tx.state.offer_index.get(&offer_id).cloned() else { continue };
                let Some(o) = tx.state.incidents[&incident_id].offer(&offer_id) else { continue };
                if o.state == OfferState::Offered && o.expires_at <= at {
                    let member_id = o.member_id.clone();
                    tx.emit(EventBody::OfferExpired { offer_id, incident_id: incident_id.clone(), member_id });
                    refill.insert(incident_id);
                }
            }
            Deadline::Escalation(incident_id) => {
                let Some(inc) = tx.state.incidents.get(&incident_id) else { continue };
                if inc.status == Status::Open && inc.escalate_at == Some(at) && inc.level.next().is_some() {
                    tx.escalate(&incident_id, EscalationReason::Timeout).expect("level checked");
                }
            }
            Deadline::Retry(incident_id) => {
                tx.state.retrying.remove(&incident_id);
                refill.insert(incident_id);
            }
            Deadline::Mobilization(id) => wartime::mobilization_deadline(tx, &id, at),
            Deadline::Whistle(incident_id, whistle_id) => wartime::whistle_deadline(tx, &incident_id, &whistle_id),
        }
    }
    for id in refill {
        tx.refill(&id);
    }
}

/// A log read from elsewhere (a replay, a follower's tail) jumps past the state's seq.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a gap in the log: expected event {expected}, got {got}")]
pub struct Gap {
    pub expected: u64,
    pub got: u64,
}

/// Applies the events of a log read from elsewhere, in order: those the state already has
/// are skipped, a gap stops it. The frames of the events applied go to `frames`.
pub fn apply_in_order<'a>(
    state: &mut State,
    events: impl IntoIterator<Item = &'a Event>,
    frames: &mut Vec<Frame>,
) -> Result<(), Gap> {
    for e in events {
        if e.seq <= state.last_seq {
            continue;
        }
        if e.seq != state.last_seq + 1 {
            return Err(Gap { expected: state.last_seq + 1, got: e.seq });
        }
        frames.extend(apply(state, e));
    }
    Ok(())
}

/// Applies one event: the only way the state changes from the log. Returns the frames the
/// event produces for recipient streams, with their seqs.
pub fn apply(state: &mut State, event: &Event) -> Vec<Frame> {
    debug_assert_eq!(event.seq, state.last_seq + 1, "events are applied in order, without gaps");
    state.last_seq = event.seq;
    let mut frames = Vec::new();
    let at = event.at;
    match &event.body {
        EventBody::CityImported { city } => {
            let index = CityIndex::build((**city).clone()).expect("a logged city was validated before it was logged");
            let mut roster = Roster::from_city(&index);
            // Fairness history survives a re-import for members who are still there.
            for (i, m) in index.members().iter().enumerate() {
                if let Some(old) = state.member_index(&m.id) {
                    let prev = &state.roster.members[old as usize];
                    roster.members[i].last_duty_at = prev.last_duty_at;
                    roster.members[i].duties = prev.duties;
                    roster.members[i].work = prev.work.clone();
                    roster.members[i].ledger = prev.ledger.clone();
                    roster.refresh(i as u32);
                }
            }
            let counts = json!({
                "districts": city.districts.len(),
                "communities": city.communities.len(),
                "units": city.units.len(),
                "teams": city.teams.len(),
                "members": city.members.len(),
            });
            // Incidents keep their ids; their indexes follow the new numbering. Grids that
            // are gone can only belong to closed incidents (an import waits for none open).
            for inc in state.incidents.values_mut() {
                inc.grid = index.grid_flat.get(&inc.grid_id).copied().unwrap_or(u32::MAX);
                inc.offered.clear();
                for o in &mut inc.offers {
                    o.member = index.member_by_id.get(&o.member_id).copied().unwrap_or(u32::MAX);
                    inc.offered.insert(o.member);
                }
            }
            service::renumber(state, &index);
            state.city = index;
            state.roster = roster;
            wartime::recompute_forced(state);
            state.push_frame(&mut frames, stream::CITY.into(), "city.imported", counts);
        }
        EventBody::IncidentRaised {
            incident_id,
            community_id,
            grid_id,
            location,
            category,
            level,
            headcount,
            skills,
            note,
            idempotency_key,
            escalate_at,
            difficulty,
            class,
        } => {
            let grid = state.city.grid_flat[grid_id];
            let district_id = state.city.city().expect("a city").districts
                [state.city.grid_places[grid as usize].district as usize]
                .id
                .clone();
            let inc = Incident {
                id: incident_id.clone(),
                community_id: community_id.clone(),
                district_id,
                grid_id: grid_id.clone(),
                grid,
                location: *location,
                category: category.clone(),
                level: *level,
                headcount: *headcount,
                skills: skills.clone(),
                note: note.clone(),
                difficulty: *difficulty,
                class: *class,
                escalated: false,
                whistles: Vec::new(),
                status: Status::Open,
                raised_at: at,
                raised_by: event.actor.clone(),
                escalate_at: *escalate_at,
                filled_at: None,
                closed_at: None,
                offers: Vec::new(),
                offered: Default::default(),
            };
            state.incidents_raised += 1;
            if let Some(key) = idempotency_key {
                state.idempotency.insert(format!("{}\n{key}", event.actor), incident_id.clone());
            }
            if let Some(t) = escalate_at {
                state.deadlines.insert((*t, Deadline::Escalation(incident_id.clone())));
            }
            state.incidents.insert(incident_id.clone(), inc);
            scope_frames(state, &mut frames, incident_id, "incident.raised", &event.body, at);
        }
        EventBody::OfferSent { offer_id, incident_id, member_id, distance_m, expires_at, whistle_id, why } => {
            let idx = state.city.member_by_id[member_id];
            let inc = &state.incidents[incident_id];
            let data = json!({
                "offer_id": offer_id,
                "incident_id": incident_id,
                "category": inc.category,
                "level": inc.level,
                "location": inc.location,
                "distance_m": distance_m,
                "expires_at": rfc3339(*expires_at),
                "headcount": inc.headcount,
                                "skills": inc.skills,
                "note": inc.note,
                                "difficulty": inc.difficulty,
                "whistle": whistle_id.is_some(),
                "why": why,
            });
            let frame_seq = state.push_frame(&mut frames, stream::member(member_id), "offer", data);
            let inc = state.incidents.get_mut(incident_id).expect("offer for a known incident");
            inc.offers.push(Offer {
                id: offer_id.clone(),
                member_id: member_id.clone(),
                member: idx,
                state: OfferState::Offered,
                sent_at: at,
                expires_at: *expires_at,
                distance_m: *distance_m,
                frame_seq,
                whistle_id: whistle_id.clone(),
                assignment_seq: None,
                answered_at: None,
            });
            inc.offered.insert(idx);
            state.roster.edit(idx, |m| {
                m.engaged = Some(offer_id.clone());
                m.ledger.offered += 1;
            });
            state.offer_index.insert(offer_id.clone(), incident_id.clone());
            state.offers_sent += 1;
            state.deadlines.insert((*expires_at, Deadline::OfferExpiry(offer_id.clone())));
            scope_frames(state, &mut frames, incident_id, "incident.offer_sent", &event.body, at);
        }
        EventBody::OfferAccepted { offer_id, incident_id, member_id } => {
            let idx = set_offer_state(state, incident_id, offer_id, OfferState::Accepted, at);
            let inc = state.incidents.get_mut(incident_id).expect("known incident");
            let unit = state.city.member_unit[idx as usize];
            for w in &mut inc.whistles {
                for u in w.units.iter_mut().filter(|u| u.0 == unit) {
                    u.2 = true;
                }
            }
            let (difficulty, class) = (inc.difficulty, inc.class);
            state.roster.edit(idx, |rt| {
                rt.last_duty_at = Some(at);
                rt.duties += 1;
                rt.work.accept(difficulty, class, at);
                rt.work.start_duty(at);
                rt.ledger.accepted += 1;
            });
            let data = json!({"offer_id": offer_id, "incident_id": incident_id});
            let seq = state.push_frame(&mut frames, stream::member(member_id), "assignment", data);
            let inc = state.incidents.get_mut(incident_id).expect("known incident");
            inc.offer_mut(offer_id).expect("known offer").assignment_seq = Some(seq);
            scope_frames(state, &mut frames, incident_id, "incident.offer_accepted", &event.body, at);
        }
        EventBody::OfferDeclined { offer_id, incident_id, .. } => {
            let idx = set_offer_state(state, incident_id, offer_id, OfferState::Declined, at);
            release(state, idx, offer_id);
            scope_frames(state, &mut frames, incident_id, "incident.offer_declined", &event.body, at);
        }
        EventBody::OfferExpired { offer_id, incident_id, member_id } => {
            let idx = set_offer_state(state, incident_id, offer_id, OfferState::Expired, at);
            release(state, idx, offer_id);
            let data =
                json!({"offer_id": offer_id, "incident_id": incident_id, "reason": RevokeReason::Expired.as_str()});
            state.push_frame(&mut frames, stream::member(member_id), "offer.revoked", data);
            scope_frames(state, &mut frames, incident_id, "incident.offer_expired", &event.body, at);
        }
        EventBody::OfferRevoked { offer_id, incident_id, member_id, reason } => {
            let idx = set_offer_state(state, incident_id, offer_id, OfferState::Revoked, at);
            release(state, idx, offer_id);
            let data = json!({"offer_id": offer_id, "incident_id": incident_id, "reason": reason.as_str()});
            state.push_frame(&mut frames, stream::member(member_id), "offer.revoked", data);
            scope_frames(state, &mut frames, incident_id, "incident.offer_revoked", &event.body, at);
        }
        EventBody::MemberArrived { offer_id, incident_id, member_id, distance_m, position } => {
            let idx = set_offer_state(state, incident_id, offer_id, OfferState::Arrived, at);
            state.roster.move_to(idx, *position);
            state.roster.members[idx as usize].ledger.arrived += 1;
            let data = json!({"offer_id": offer_id, "incident_id": incident_id, "distance_m": distance_m});
            state.push_frame(&mut frames, stream::member(member_id), "arrival", data);
            scope_frames(state, &mut frames, incident_id, "incident.member_arrived", &event.body, at);
        }
        EventBody::IncidentFilled { incident_id } => {
            let inc = state.incidents.get_mut(incident_id).expect("known incident");
            inc.status = Status::Filled;
            inc.filled_at = Some(at);
            inc.escalate_at = None;
            scope_frames(state, &mut frames, incident_id, "incident.filled", &event.body, at);
        }
        EventBody::IncidentEscalated { incident_id, to, escalate_at, .. } => {
            let inc = state.incidents.get_mut(incident_id).expect("known incident");
            inc.level = *to;
            inc.escalated = true;
            inc.escalate_at = *escalate_at;
            if let Some(t) = escalate_at {
                state.deadlines.insert((*t, Deadline::Escalation(incident_id.clone())));
            }
            scope_frames(state, &mut frames, incident_id, "incident.escalated", &event.body, at);
        }
        EventBody::WhistleBlown { incident_id, .. } => {
            scope_frames(state, &mut frames, incident_id, "incident.whistle", &event.body, at);
        }
        EventBody::IncidentResolved { incident_id, .. } | EventBody::IncidentCancelled { incident_id, .. } => {
            let (status, kind, reason) = match &event.body {
                EventBody::IncidentResolved { .. } => (Status::Resolved, "incident.resolved", "resolved"),
                _ => (Status::Cancelled, "incident.cancelled", "cancelled"),
            };
            let inc = state.incidents.get_mut(incident_id).expect("known incident");
            inc.status = status;
            inc.closed_at = Some(at);
            inc.escalate_at = None;
            let working: Vec<(u32, String, String)> = inc
                .offers
                .iter()
                .filter(|o| matches!(o.state, OfferState::Accepted | OfferState::Arrived))
                .map(|o| (o.member, o.id.clone(), o.member_id.clone()))
                .collect();
            for (idx, offer_id, member_id) in working {
                release(state, idx, &offer_id);
                wartime::end_duty_unless_mobilized(state, idx, at);
                let data = json!({"offer_id": offer_id, "incident_id": incident_id, "reason": reason});
                state.push_frame(&mut frames, stream::member(&member_id), "assignment.closed", data);
            }
            scope_frames(state, &mut frames, incident_id, kind, &event.body, at);
        }
        EventBody::ModeSwitched { .. }
        | EventBody::MobilizationOrdered { .. }
        | EventBody::MobilizationAcknowledged { .. }
        | EventBody::MobilizationReported { .. }
        | EventBody::MobilizationTallied { .. }
        | EventBody::MobilizationDeadlinePassed { .. }
        | EventBody::MobilizationClosed { .. }
        | EventBody::UnitsWhistled { .. }
        | EventBody::WhistleOverdue { .. }
        | EventBody::MembersTransferred { .. } => wartime::apply(state, event, &mut frames),
        EventBody::MembersRegistered { .. }
        | EventBody::UnitRegistered { .. }
        | EventBody::OrderPosted { .. }
        | EventBody::OrderClaimed { .. }
        | EventBody::OrderCancelled { .. }
        | EventBody::CheckedIn { .. }
        | EventBody::CheckedOut { .. }
        | EventBody::Rated { .. }
        | EventBody::Exchanged { .. } => service::apply(state, event, &mut frames),
        EventBody::TokensRevoked { subject, before_s } => {
            std::sync::Arc::make_mut(&mut state.revoked).insert(subject.clone(), *before_s);
        }
        EventBody::DutyChanged { member_id, on_call } => {
            let idx = state.city.member_by_id[member_id];
            state.roster.edit(idx, |m| m.on_call = *on_call);
            state.push_frame(&mut frames, stream::member(member_id), "duty", json!({"on_call": on_call}));
        }
    }
    frames
}

fn set_offer_state(state: &mut State, incident_id: &str, offer_id: &str, to: OfferState, at: Ts) -> u32 {
    let inc = state.incidents.get_mut(incident_id).expect("known incident");
    let offer = inc.offer_mut(offer_id).expect("known offer");
    offer.state = to;
    if offer.answered_at.is_none() {
        offer.answered_at = Some(at);
    }
    offer.member
}

/// Frees a member held by this offer (and only by this one).
fn release(state: &mut State, idx: u32, offer_id: &str) {
    state.roster.edit(idx, |rt| {
        if rt.engaged.as_deref() == Some(offer_id) {
            rt.engaged = None;
        }
    });
}

/// The incident's event, pushed to its community's, district's and the city's streams.
pub(super) fn scope_frames(
    state: &mut State,
    frames: &mut Vec<Frame>,
    incident_id: &str,
    kind: &'static str,
    body: &EventBody,
    at: Ts,
) {
    let inc = &state.incidents[incident_id];
    let mut data = serde_json::to_value(body).expect("events serialize");
    if let Value::Object(map) = &mut data {
        map.remove("type");
        map.insert("incident".into(), summary(inc));
        map.insert("at".into(), Value::String(rfc3339(at)));
        if let Some(Value::Number(t)) = map.get("expires_at").cloned() {
            map.insert("expires_at".into(), Value::String(rfc3339(t.as_i64().unwrap_or_default())));
        }
        if let Some(Value::Number(t)) = map.get("escalate_at").cloned() {
            map.insert("escalate_at".into(), Value::String(rfc3339(t.as_i64().unwrap_or_default())));
        }
    }
    let data = Arc::new(data);
    for s in scope::incident_streams(inc) {
        state.push_frame(frames, s, kind, data.clone());
    }
}

/// RFC 3339 UTC with milliseconds, as every time on the wire.
pub fn rfc3339(ts: Ts) -> String {
    chrono::DateTime::from_timestamp_millis(ts).unwrap_or_default().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod wire_tests {
    use super::*;
    use crate::domain::fixtures::{in_cell, two_districts};
    use crate::domain::mobilization::Site;
    use crate::domain::org::Member;

    fn round_trip<T>(value: &T) -> String
    where
        T: Serialize + for<'de> Deserialize<'de> + PartialEq + std::fmt::Debug,
    {
        let json = serde_json::to_string(value).unwrap();
        let back: T = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{json}: {e}"));
        assert_eq!(&back, value, "{json}");
        json
    }

    fn member(id: &str, grid: &str, team: Option<&str>) -> Member {
        Member {
            id: id.into(),
            name: id.to_uppercase(),
            unit_id: "u1".into(),
            team_id: team.map(Into::into),
            residence_grid_id: grid.into(),
            skills: vec!["first_aid".into()],
            position: in_cell(grid, 1),
            on_call: true,
            registered: false,
        }
    }

    /// Forces a sample per variant: a new variant does not compile until it is added here.
    fn ordinal(c: &Command) -> usize {
        match c {
            Command::ImportCity(_) => 0,
            Command::Raise(_) => 1,
            Command::Escalate { .. } => 2,
            Command::Resolve { .. } => 3,
            Command::Cancel { .. } => 4,
            Command::Accept { .. } => 5,
            Command::Decline { .. } => 6,
            Command::Arrive { .. } => 7,
            Command::Location { .. } => 8,
            Command::Duty { .. } => 9,
            Command::SwitchMode { .. } => 10,
            Command::Mobilize(_) => 11,
            Command::CloseMobilization { .. } => 12,
            Command::AcknowledgeOrder { .. } => 13,
            Command::ReportArrival { .. } => 14,
            Command::Whistle { .. } => 15,
            Command::Transfer { .. } => 16,
            Command::Register { .. } => 17,
            Command::RegisterUnit { .. } => 18,
            Command::PostOrder(_) => 19,
            Command::ClaimOrder { .. } => 20,
            Command::CancelOrder { .. } => 21,
            Command::CheckIn { .. } => 22,
            Command::CheckOut { .. } => 23,
            Command::Rate { .. } => 24,
            Command::Exchange { .. } => 25,
            Command::RevokeTokens { .. } => 26,
            Command::Tick => 27,
            Command::Tally => 28,
        }
    }

    fn commands() -> Vec<Command> {
        let p = Position::new(30.592_812_345_678_9, 114.305_539_876_543_21).unwrap();
        let city = two_districts("wire", vec![member("m1", "g1", Some("t1")), member("m2", "g4", None)]);
        vec![
            Command::ImportCity(Box::new(city)),
            Command::Raise(RaiseIncident {
                grid_id: Some("g1".into()),
                location: Some(p),
                category: "fire".into(),
                level: Level::III,
                headcount: 3,
                skills: vec!["first_aid".into(), "driving".into()],
                note: Some("三楼 \"quoted\"\n".into()),
                idempotency_key: Some("k-1".into()),
                difficulty: Some(4),
            }),
            Command::Escalate { incident_id: "inc-000001".into() },
            Command::Resolve { incident_id: "inc-000001".into(), note: None },
            Command::Cancel { incident_id: "inc-000001".into(), reason: Some("false alarm".into()) },
            Command::Accept { offer_id: "off-1".into() },
            Command::Decline { offer_id: "off-2".into(), reason: None },
            Command::Arrive { offer_id: "off-1".into(), position: p },
            Command::Location { position: Position::new(-90.0, 180.0).unwrap() },
            Command::Duty { on_call: false },
            Command::SwitchMode { district_id: Some("d1".into()), mode: Mode::Wartime, reason: "flood".into() },
            Command::Mobilize(MobilizeOrder {
                teams: vec!["t1".into(), "t2".into()],
                unit_id: Some("u1".into()),
                district_id: None,
                all_assault: true,
                community_id: Some("c1".into()),
                site: Some(Site { name: "levee".into(), location: p }),
                deadline_s: Some(1800),
                note: Some("bring boots".into()),
            }),
            Command::CloseMobilization { mobilization_id: "mob-1".into(), reason: None },
            Command::AcknowledgeOrder { mobilization_id: "mob-1".into() },
            Command::ReportArrival { mobilization_id: "mob-1".into(), position: p },
            Command::Whistle { incident_id: "inc-000001".into(), to: WhistleTarget::Units(vec!["u1".into()]) },
            Command::Transfer { from: "c1".into(), to: "c2".into(), members: vec!["m1".into(), "m2".into()] },
            Command::Register { members: vec![member("m3", "g6", Some("t3"))] },
            Command::RegisterUnit { unit_id: "u2".into(), community_id: "c3".into() },
            Command::PostOrder(PostOrder {
                grid_id: None,
                location: Some(p),
                category: "errand".into(),
                difficulty: None,
                title: "buy medicine".into(),
                note: None,
                window_start: 1_700_000_000_000,
                window_end: 1_700_003_600_000,
                slots: 2,
                skills: vec![],
            }),
            Command::ClaimOrder { order_id: "ord-1".into(), assign_to: Some("m1".into()) },
            Command::CancelOrder { order_id: "ord-1".into(), reason: Some("done elsewhere".into()) },
            Command::CheckIn { order_id: "ord-1".into(), position: p },
            Command::CheckOut { order_id: "ord-1".into(), position: p },
            Command::Rate { task: TaskRef::Offer("off-1".into()), member_id: "m1".into(), rating: Rating::VeryGood },
            Command::Exchange { member_id: "m1".into(), from: Currency::Hours, amount: 0.1 + 0.2 },
            Command::RevokeTokens { subject: "member:m00001".into() },
            Command::Tick,
            Command::Tally,
        ]
    }

    #[test]
    fn every_command_round_trips_tagged_by_its_name() {
        let all = commands();
        assert_eq!(all.iter().map(ordinal).collect::<Vec<_>>(), (0..=28).collect::<Vec<_>>());
        for cmd in &all {
            let json = round_trip(cmd);
            let v: Value = serde_json::from_str(&json).unwrap();
            assert_eq!(v["type"], cmd.name(), "{json}");
        }
        // The other shapes of the nested enums.
        for to in [WhistleTarget::PairedUnits, WhistleTarget::StreetUnits] {
            round_trip(&Command::Whistle { incident_id: "inc-000002".into(), to });
        }
        let rate = Command::Rate { task: TaskRef::Order("ord-2".into()), member_id: "m2".into(), rating: Rating::Fair };
        round_trip(&rate);
        round_trip(&Command::Rate {
            task: TaskRef::Offer("off-3".into()),
            member_id: "m2".into(),
            rating: Rating::Good,
        });
        round_trip(&Command::Exchange { member_id: "m2".into(), from: Currency::Points, amount: 12.5 });
        round_trip(&Command::SwitchMode { district_id: None, mode: Mode::Peacetime, reason: String::new() });
        round_trip(&Command::Mobilize(MobilizeOrder::default()));
    }

    #[test]
    fn every_actor_and_reply_round_trips() {
        let actors = [
            Actor::Command { district: None },
            Actor::Command { district: Some("d1".into()) },
            Actor::Staff { community: "c1".into() },
            Actor::UnitAdmin { unit: "u1".into() },
            Actor::Member { member: "m1".into() },
            Actor::System,
        ];
        for a in &actors {
            let json = round_trip(a);
            let v: Value = serde_json::from_str(&json).unwrap();
            assert!(a.label().starts_with(v["type"].as_str().unwrap()), "{json}");
        }
        let replies = [
            Reply::Done,
            Reply::Incident("inc-000001".into()),
            Reply::Mobilization("mob-1".into()),
            Reply::Order("ord-1".into()),
        ];
        for r in &replies {
            round_trip(r);
        }
        assert_eq!(serde_json::to_string(&Actor::System).unwrap(), r#"{"type":"system"}"#);
        assert_eq!(serde_json::to_string(&Reply::Done).unwrap(), r#"{"type":"done"}"#);
        assert_eq!(
            serde_json::to_string(&Reply::Incident("inc-1".into())).unwrap(),
            r#"{"type":"incident","id":"inc-1"}"#
        );
    }

    #[test]
    fn invalid_positions_and_unknown_fields_are_refused() {
        let bad = r#"{"type":"location","position":{"lat":300.0,"lng":114.3}}"#;
        assert!(serde_json::from_str::<Command>(bad).is_err());
        let bad = r#"{"type":"raise","grid_id":null,"location":{"lat":30.5,"lng":181},"category":"fire","level":"IV","headcount":1,"skills":[],"note":null,"idempotency_key":null,"difficulty":null}"#;
        assert!(serde_json::from_str::<Command>(bad).is_err());
        let good = r#"{"type":"location","position":{"lat":30.5,"lng":114.3}}"#;
        assert!(serde_json::from_str::<Command>(good).is_ok());
        assert!(serde_json::from_str::<Command>(r#"{"type":"accept","offer_id":"o","extra":1}"#).is_err());
        assert!(serde_json::from_str::<Command>(r#"{"type":"launch"}"#).is_err());
        assert!(serde_json::from_str::<Actor>(r#"{"type":"staff","community":"c1","extra":1}"#).is_err());
    }

    #[test]
    fn domain_errors_round_trip_and_unknown_codes_become_remote_error() {
        for (kind, code) in [
            (ErrorKind::Invalid, "text_too_long"),
            (ErrorKind::Forbidden, "role_not_allowed"),
            (ErrorKind::NotFound, "unknown_offer"),
            (ErrorKind::Conflict, "offer_expired"),
        ] {
            let e = err(kind, code, format!("{code} happened"));
            let json = round_trip(&e);
            let back: DomainError = serde_json::from_str(&json).unwrap();
            assert!(std::ptr::eq(back.code, known_code(code)));
        }
        let json = serde_json::to_string(&err(ErrorKind::NotFound, "unknown_offer", "no offer")).unwrap();
        assert_eq!(json, r#"{"kind":"not_found","code":"unknown_offer","detail":"no offer"}"#);
        let e: DomainError =
            serde_json::from_str(r#"{"kind":"conflict","code":"from_the_future","detail":"newer node"}"#).unwrap();
        assert_eq!(e, err(ErrorKind::Conflict, "remote_error", "newer node"));
        assert!(serde_json::from_str::<DomainError>(r#"{"kind":"Conflict","code":"x","detail":""}"#).is_err());
        assert_eq!(known_code("no_city"), "no_city");
        assert_eq!(known_code(""), "remote_error");
    }

    /// The domain's sources: every file that may build a `DomainError`.
    const SOURCES: &[(&str, &str)] = &[
        ("balance.rs", include_str!("balance.rs")),
        ("dispatcher.rs", include_str!("dispatcher.rs")),
        ("event.rs", include_str!("event.rs")),
        ("geo.rs", include_str!("geo.rs")),
        ("incident.rs", include_str!("incident.rs")),
        ("matching.rs", include_str!("matching.rs")),
        ("mobilization.rs", include_str!("mobilization.rs")),
        ("org.rs", include_str!("org.rs")),
        ("response.rs", include_str!("response.rs")),
        ("service.rs", include_str!("service.rs")),
        ("wartime.rs", include_str!("wartime.rs")),
        ("workload.rs", include_str!("workload.rs")),
    ];

    /// The string literals in the code argument (the second) of every call of the error
    /// constructor in `src`, with the line of the call. A code that is not a literal (or a
    /// `match` of literals) is refused, so that it cannot escape the check.
    fn codes_in(file: &str, src: &str) -> Vec<(usize, String)> {
        // Tests build errors of their own; only the domain's count.
        let src = src.split("\n#[cfg(test)]\nmod ").next().unwrap();
        let needle = format!("{}(", "err");
        let bytes = src.as_bytes();
        let mut found = Vec::new();
        let mut from = 0;
        while let Some(at) = src[from..].find(&needle).map(|i| from + i) {
            from = at + needle.len();
            let before = src[..at].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '.' || c == '"')
                || src[..at].ends_with("fn ")
            {
                continue;
            }
            let line = src[..at].matches('\n').count() + 1;
            // Walk the arguments: depth of brackets, strings skipped whole.
            let (mut depth, mut arg, mut i) = (0usize, 0usize, from);
            let mut literals = Vec::new();
            while i < bytes.len() {
                match bytes[i] {
                    b'"' => {
                        let start = i + 1;
                        i = start;
                        while bytes[i] != b'"' {
                            i += if bytes[i] == b'\\' { 2 } else { 1 };
                        }
                        if arg == 1 {
                            literals.push(src[start..i].to_string());
                        }
                    }
                    b'(' | b'[' | b'{' => depth += 1,
                    b')' | b']' | b'}' if depth == 0 => break,
                    b')' | b']' | b'}' => depth -= 1,
                    b',' if depth == 0 => arg += 1,
                    _ => {}
                }
                i += 1;
            }
            assert!(!literals.is_empty(), "{file}:{line}: the error code is not a string literal");
            found.extend(literals.into_iter().map(|c| (line, c)));
        }
        found
    }

    #[test]
    fn every_code_is_listed() {
        let mut seen = 0;
        for (file, src) in SOURCES {
            for (line, code) in codes_in(file, src) {
                assert!(CODES.contains(&code.as_str()), "{file}:{line}: code '{code}' is missing from CODES");
                seen += 1;
            }
        }
        // The scan does find the calls (including the `match` of offer states).
        assert!(seen > 60, "only {seen} codes found");
        for c in ["incident_closed", "offer_expired", "offer_not_open", "unknown_offer"] {
            assert!(SOURCES.iter().flat_map(|(f, s)| codes_in(f, s)).any(|(_, x)| x == c), "{c}");
        }
        assert!(CODES.windows(2).all(|w| w[0] < w[1]), "CODES is sorted and has no duplicates");
        assert!(!CODES.contains(&"remote_error"));
    }
}
