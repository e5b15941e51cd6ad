//! The driver the domain tests share (`tests`, `wartime_tests`, `service_tests`): a `World`
//! that runs commands through `execute` at a clock the test sets, keeps the log of events
//! and frames, and checks that a refused command changed nothing; and the actors, commands,
//! members and outcome readers all of them use. Each test module brings its own city and
//! adds its own helpers (further `impl World` blocks and free functions).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use super::dispatcher::{
    Actor, Command, Deadline, DomainError, ErrorKind, Outcome, RaiseIncident, Reply, State, apply, execute,
};
use super::event::{Event, EventBody, Frame, Ts};
use super::geo::Position;
use super::incident::{Incident, Offer, OfferState, Status};
use super::matching::MemberRt;
use super::mobilization::OrderState;
use super::org::{City, Member};
use super::response::{Level, Rules};
use super::service_data::{OrderStatus, Rating};
use super::snapshot;

/// An arbitrary, fixed "now" for the start of every scenario: 2023-11-14T22:13:20Z (06:13
/// on the 15th in UTC+8, where the easy-task day begins).
pub(super) const T0: Ts = 1_700_000_000_000;
/// An hour, a day and a week, in seconds (as `World::at` takes them).
pub(super) const H: i64 = 3_600;
pub(super) const DAY: i64 = 24 * H;
pub(super) const WEEK: i64 = 7 * DAY;

// ---------------------------------------------------------------------------------------
// The world
// ---------------------------------------------------------------------------------------

/// A state with a city imported, a clock, and the log of every event and frame so far.
pub(super) struct World {
    pub(super) state: State,
    pub(super) rules: Rules,
    pub(super) now: Ts,
    pub(super) log: Vec<Event>,
    pub(super) frames: Vec<Frame>,
}

impl World {
    /// This city imported by the system at `T0`, under `Rules::for_tests()`.
    pub(super) fn with_city(city: City) -> World {
        World::with_city_and_rules(city, Rules::for_tests())
    }

    pub(super) fn with_city_and_rules(city: City, rules: Rules) -> World {
        let mut w = World { state: State::default(), rules, now: T0, log: Vec::new(), frames: Vec::new() };
        let out = w.ok(&Actor::System, Command::ImportCity(Box::new(city)));
        assert_eq!(kinds(&out), ["city_imported"]);
        w
    }

    /// Another state (a replayed one, say) under this world's rules and clock, with an empty log.
    pub(super) fn beside(&self, state: State) -> World {
        World { state, rules: self.rules.clone(), now: self.now, log: Vec::new(), frames: Vec::new() }
    }

    /// Sets the clock to `secs` seconds after `T0`.
    pub(super) fn at(&mut self, secs: i64) -> &mut Self {
        self.at_ms(secs * 1000)
    }

    /// Sets the clock to `ms` milliseconds after `T0`.
    pub(super) fn at_ms(&mut self, ms: i64) -> &mut Self {
        assert!(T0 + ms >= self.now, "time does not go backwards in a scenario");
        self.now = T0 + ms;
        self
    }

    /// One command as a batch of its own: as the engine does after every batch, a
    /// `Tally` follows when it answered a mobilization, and its events and frames are part
    /// of the outcome.
    pub(super) fn exec(&mut self, actor: &Actor, cmd: Command) -> Result<Outcome, DomainError> {
        let mut out = execute(&mut self.state, &self.rules, actor, cmd, self.now)?;
        if !self.state.untallied.is_empty() {
            let tally = execute(&mut self.state, &self.rules, &Actor::System, Command::Tally, self.now)
                .expect("the engine's tally is never refused");
            out.events.extend(tally.events);
            out.frames.extend(tally.frames);
        }
        self.log.extend(out.events.iter().cloned());
        self.frames.extend(out.frames.iter().cloned());
        Ok(out)
    }

    #[track_caller]
    pub(super) fn ok(&mut self, actor: &Actor, cmd: Command) -> Outcome {
        let what = format!("{cmd:?} by {actor:?}");
        self.exec(actor, cmd).unwrap_or_else(|e| panic!("{what} was refused: {} ({})", e.code, e.detail))
    }

    /// Runs a command that must be refused, and checks it changed nothing.
    #[track_caller]
    pub(super) fn refuse(&mut self, actor: &Actor, cmd: Command) -> DomainError {
        let before = everything(&self.state);
        let what = format!("{cmd:?} by {actor:?}");
        let e = match self.exec(actor, cmd) {
            Ok(out) => panic!("{what} was accepted with events {:?}", kinds(&out)),
            Err(e) => e,
        };
        assert_eq!(everything(&self.state), before, "refused {what} ({}) changed the state", e.code);
        e
    }

    /// Raises an incident and returns its id with the outcome.
    #[track_caller]
    pub(super) fn raise(&mut self, actor: &Actor, r: RaiseIncident) -> (String, Outcome) {
        let out = self.ok(actor, Command::Raise(r));
        (incident_of(&out), out)
    }

    #[track_caller]
    pub(super) fn tick(&mut self) -> Outcome {
        self.ok(&Actor::System, Command::Tick)
    }

    /// The member accepts their offer for this incident.
    #[track_caller]
    pub(super) fn accept(&mut self, member_id: &str, incident_id: &str) -> Outcome {
        let offer = self.offer_id(incident_id, member_id);
        self.ok(&as_member(member_id), Command::Accept { offer_id: offer })
    }

    pub(super) fn incident(&self, id: &str) -> &Incident {
        &self.state.incidents[id]
    }

    /// The member's (only) offer for this incident.
    #[track_caller]
    pub(super) fn offer(&self, incident_id: &str, member_id: &str) -> &Offer {
        let inc = self.incident(incident_id);
        let mine: Vec<&Offer> = inc.offers.iter().filter(|o| o.member_id == member_id).collect();
        assert_eq!(mine.len(), 1, "{member_id} should have exactly one offer for {incident_id}");
        mine[0]
    }

    #[track_caller]
    pub(super) fn offer_id(&self, incident_id: &str, member_id: &str) -> String {
        self.offer(incident_id, member_id).id.clone()
    }

    #[track_caller]
    pub(super) fn idx(&self, member_id: &str) -> u32 {
        self.state.member_index(member_id).unwrap_or_else(|| panic!("no member {member_id}"))
    }

    #[track_caller]
    pub(super) fn rt(&self, member_id: &str) -> &MemberRt {
        &self.state.roster.members[self.idx(member_id) as usize]
    }

    /// The log holds an event of each of these kinds: the scenario covers them.
    #[track_caller]
    pub(super) fn assert_covers(&self, kinds: &[&str]) {
        let seen: BTreeSet<&str> = self.log.iter().map(|e| e.body.kind()).collect();
        for k in kinds {
            assert!(seen.contains(k), "the scenario covers {k}: {seen:?}");
        }
    }

    /// Checks that every stream counts its frames' seqs from 1 without gaps, up to the seq
    /// the state holds for it, and that the state holds no other stream; returns the seqs.
    #[track_caller]
    pub(super) fn assert_streams_count_from_one(&self) -> BTreeMap<&str, Vec<u64>> {
        let mut by_stream: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
        for f in &self.frames {
            by_stream.entry(f.stream.as_str()).or_default().push(f.seq);
        }
        for (stream, seqs) in &by_stream {
            assert!(seqs.iter().copied().eq(1..=seqs.len() as u64), "{stream}: {seqs:?}");
            assert_eq!(self.state.stream_seq(stream), seqs.len() as u64, "{stream}");
        }
        assert_eq!(self.state.streams.len(), by_stream.len());
        by_stream
    }
}

pub(super) fn replay(log: &[Event]) -> (State, Vec<Frame>) {
    let mut state = State::default();
    let mut frames = Vec::new();
    for e in log {
        frames.extend(apply(&mut state, e));
    }
    (state, frames)
}

// ---------------------------------------------------------------------------------------
// Comparing states
// ---------------------------------------------------------------------------------------

/// What the live state keeps in step beside its durable part, which a snapshot leaves out
/// and rebuilds: the offer index, each incident's members offered, each mobilization's
/// orders by member, each member's residence grid.
#[derive(Debug, PartialEq)]
pub(super) struct Derived {
    offer_index: HashMap<String, String>,
    offered: Vec<(String, HashSet<u32>)>,
    by_member: Vec<(String, HashMap<u32, usize>)>,
    untallied: BTreeSet<String>,
    member_residence: Vec<u32>,
}

fn derived(s: &State) -> Derived {
    Derived {
        offer_index: s.offer_index.clone(),
        offered: s.incidents.values().map(|i| (i.id.clone(), i.offered.clone())).collect(),
        by_member: s
            .mobilizations
            .values()
            .map(|m| (m.id.clone(), m.by_member.iter().map(|(k, v)| (*k, *v)).collect()))
            .collect(),
        untallied: s.untallied.clone(),
        member_residence: s.city.member_residence.clone(),
    }
}

/// Everything a test can observe of a state, to check that a step changed nothing: the
/// durable state (`snapshot::encode`), what is derived from it, and the soft retries
/// (`Deadline::Retry` and `retrying`, which a snapshot leaves out).
#[derive(Debug, PartialEq)]
pub(super) struct Everything {
    durable: String,
    derived: Derived,
    retries: BTreeSet<(Ts, Deadline)>,
    retrying: HashSet<String>,
}

pub(super) fn everything(s: &State) -> Everything {
    Everything {
        durable: String::from_utf8(snapshot::encode(s)).unwrap(),
        derived: derived(s),
        retries: s.deadlines.iter().filter(|(_, d)| matches!(d, Deadline::Retry(_))).cloned().collect(),
        retrying: s.retrying.clone(),
    }
}

/// The durable state and what is derived from it, deadlines aside: a replay also holds the
/// deadlines already fired (they fire harmlessly) and retries are soft. Two states equal
/// here decide alike.
#[derive(Debug, PartialEq)]
pub(super) struct Durable {
    durable: serde_json::Value,
    derived: Derived,
}

pub(super) fn durable(s: &State) -> Durable {
    let mut v: serde_json::Value = serde_json::from_slice(&snapshot::encode(s)).unwrap();
    v.as_object_mut().unwrap().remove("deadlines");
    Durable { durable: v, derived: derived(s) }
}

// ---------------------------------------------------------------------------------------
// What a log says, read without `apply`
// ---------------------------------------------------------------------------------------

/// The facts a log states, as a client or an auditor reads them: each incident's status,
/// each offer's state and the incident's accepted and arrived counts, each mobilization's
/// orders and counts, each member's duty (on call, and the offer that holds them), each
/// service order's status and claims. The live state and a replayed one are both built by
/// `apply`, so comparing the two cannot catch an `apply` that, say, forgets to mark an
/// offer accepted; comparing either with these facts can.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Facts {
    incidents: BTreeMap<String, Status>,
    /// offer id -> (incident id, member id, state)
    offers: BTreeMap<String, (String, String, OfferState)>,
    /// incident id -> (accepted, arrived); an arrived member counts as accepted too
    answered: BTreeMap<String, (u32, u32)>,
    /// mobilization id -> each ordered member's state, and whether it was closed
    mobilizations: BTreeMap<String, (BTreeMap<String, OrderState>, bool)>,
    /// mobilization id -> (ordered, acknowledged, reported, missing)
    progress: BTreeMap<String, (u32, u32, u32, u32)>,
    /// member id -> (on call, the offer that holds them: offered, or accepted or arrived
    /// on an incident not closed)
    duty: BTreeMap<String, (bool, Option<String>)>,
    orders: BTreeMap<String, OrderStatus>,
    /// (order id, member id) -> (checked in, checked out, rating)
    claims: BTreeMap<(String, String), (bool, bool, Option<Rating>)>,
}

/// The facts, folded from the events by the rules of docs/PROTOCOL.md, without `apply`.
pub(super) fn facts_of_log(log: &[Event]) -> Facts {
    let mut f = Facts::default();
    // member id -> (team, on call), from the city and the registrations
    let mut members: BTreeMap<String, (Option<String>, bool)> = BTreeMap::new();
    let mut slots: BTreeMap<String, u32> = BTreeMap::new();
    let answer = |f: &mut Facts, offer_id: &str, to: OfferState| {
        f.offers.get_mut(offer_id).unwrap_or_else(|| panic!("{offer_id} was never sent")).2 = to;
    };
    for e in log {
        match &e.body {
            EventBody::CityImported { city } => {
                members = city.members.iter().map(|m| (m.id.clone(), (m.team_id.clone(), m.on_call))).collect();
            }
            EventBody::MembersRegistered { members: new } => {
                for m in new {
                    members.entry(m.id.clone()).or_insert((m.team_id.clone(), m.on_call));
                }
            }
            EventBody::DutyChanged { member_id, on_call } => {
                members.get_mut(member_id).expect("a known member").1 = *on_call;
            }
            EventBody::IncidentRaised { incident_id, .. } => {
                f.incidents.insert(incident_id.clone(), Status::Open);
            }
            EventBody::IncidentFilled { incident_id } => {
                f.incidents.insert(incident_id.clone(), Status::Filled);
            }
            EventBody::IncidentResolved { incident_id, .. } => {
                f.incidents.insert(incident_id.clone(), Status::Resolved);
            }
            EventBody::IncidentCancelled { incident_id, .. } => {
                f.incidents.insert(incident_id.clone(), Status::Cancelled);
            }
            EventBody::OfferSent { offer_id, incident_id, member_id, .. } => {
                f.offers.insert(offer_id.clone(), (incident_id.clone(), member_id.clone(), OfferState::Offered));
            }
            EventBody::OfferAccepted { offer_id, .. } => answer(&mut f, offer_id, OfferState::Accepted),
            EventBody::OfferDeclined { offer_id, .. } => answer(&mut f, offer_id, OfferState::Declined),
            EventBody::OfferExpired { offer_id, .. } => answer(&mut f, offer_id, OfferState::Expired),
            EventBody::OfferRevoked { offer_id, .. } => answer(&mut f, offer_id, OfferState::Revoked),
            EventBody::MemberArrived { offer_id, .. } => answer(&mut f, offer_id, OfferState::Arrived),
            EventBody::MobilizationOrdered { mobilization_id, teams, .. } => {
                let teams: BTreeSet<&str> = teams.iter().map(|t| t.team_id.as_str()).collect();
                let ordered = members
                    .iter()
                    .filter(|(_, (team, _))| team.as_deref().is_some_and(|t| teams.contains(t)))
                    .map(|(id, _)| (id.clone(), OrderState::Ordered))
                    .collect();
                f.mobilizations.insert(mobilization_id.clone(), (ordered, false));
            }
            EventBody::MobilizationAcknowledged { mobilization_id, member_id, .. } => {
                let s = f.mobilizations.get_mut(mobilization_id).unwrap().0.get_mut(member_id).expect("ordered");
                if *s == OrderState::Ordered {
                    *s = OrderState::Acknowledged;
                }
            }
            EventBody::MobilizationReported { mobilization_id, member_id, .. } => {
                *f.mobilizations.get_mut(mobilization_id).unwrap().0.get_mut(member_id).expect("ordered") =
                    OrderState::Reported;
            }
            EventBody::MobilizationClosed { mobilization_id, .. } => {
                f.mobilizations.get_mut(mobilization_id).unwrap().1 = true;
            }
            EventBody::OrderPosted { order_id, slots: n, .. } => {
                f.orders.insert(order_id.clone(), OrderStatus::Open);
                slots.insert(order_id.clone(), *n);
            }
            EventBody::OrderClaimed { order_id, member_id, .. } => {
                f.claims.insert((order_id.clone(), member_id.clone()), (false, false, None));
                if f.claims.keys().filter(|(o, _)| o == order_id).count() as u32 >= slots[order_id] {
                    f.orders.insert(order_id.clone(), OrderStatus::Full);
                }
            }
            EventBody::OrderCancelled { order_id, .. } => {
                f.orders.insert(order_id.clone(), OrderStatus::Cancelled);
            }
            EventBody::CheckedIn { order_id, member_id, .. } => {
                f.claims.get_mut(&(order_id.clone(), member_id.clone())).expect("a claim").0 = true;
            }
            EventBody::CheckedOut { order_id, member_id, .. } => {
                f.claims.get_mut(&(order_id.clone(), member_id.clone())).expect("a claim").1 = true;
            }
            EventBody::Rated { order_id: Some(order_id), member_id, rating, .. } => {
                f.claims.get_mut(&(order_id.clone(), member_id.clone())).expect("a claim").2 = Some(*rating);
            }
            _ => {}
        }
    }
    f.answered = f.incidents.keys().map(|id| (id.clone(), (0, 0))).collect();
    for (incident_id, _, state) in f.offers.values() {
        let (accepted, arrived) = f.answered.get_mut(incident_id).expect("an offer of a raised incident");
        *accepted += matches!(state, OfferState::Accepted | OfferState::Arrived) as u32;
        *arrived += (*state == OfferState::Arrived) as u32;
    }
    for (id, (orders, _)) in &f.mobilizations {
        let n = |want: &[OrderState]| orders.values().filter(|s| want.contains(s)).count() as u32;
        let (ordered, reported) = (orders.len() as u32, n(&[OrderState::Reported]));
        let acknowledged = n(&[OrderState::Acknowledged, OrderState::Reported]);
        f.progress.insert(id.clone(), (ordered, acknowledged, reported, ordered - reported));
    }
    for (id, (_, on_call)) in members {
        let holding: Vec<&String> = f
            .offers
            .iter()
            .filter(|(_, (inc, m, state))| {
                *m == id
                    && match state {
                        OfferState::Offered => true,
                        OfferState::Accepted | OfferState::Arrived => {
                            !matches!(f.incidents[inc], Status::Resolved | Status::Cancelled)
                        }
                        _ => false,
                    }
            })
            .map(|(o, _)| o)
            .collect();
        assert!(holding.len() <= 1, "{id} is held by several offers: {holding:?}");
        f.duty.insert(id, (on_call, holding.first().map(|o| o.to_string())));
    }
    f
}

/// The same facts, as a state holds them.
pub(super) fn facts_of_state(s: &State) -> Facts {
    let mut f = Facts::default();
    for inc in s.incidents.values() {
        f.incidents.insert(inc.id.clone(), inc.status);
        f.answered.insert(inc.id.clone(), (inc.accepted(), inc.arrived()));
        for o in &inc.offers {
            f.offers.insert(o.id.clone(), (inc.id.clone(), o.member_id.clone(), o.state));
        }
    }
    for m in s.mobilizations.values() {
        let orders = m.orders.iter().map(|o| (o.member_id.clone(), o.state)).collect();
        f.mobilizations.insert(m.id.clone(), (orders, m.closed.is_some()));
        let c = m.counts;
        f.progress.insert(m.id.clone(), (c.ordered, c.acknowledged, c.reported, c.missing));
    }
    for (member, rt) in s.city.members().iter().zip(&s.roster.members) {
        f.duty.insert(member.id.clone(), (rt.on_call, rt.engaged.clone()));
    }
    for o in s.orders.values() {
        f.orders.insert(o.id.clone(), o.status);
        for c in &o.claims {
            f.claims.insert((o.id.clone(), c.member_id.clone()), (c.checkin.is_some(), c.checkout.is_some(), c.rating));
        }
    }
    f
}

/// The state holds what the log says (see `Facts`).
#[track_caller]
pub(super) fn assert_states_the_log(s: &State, log: &[Event], what: &str) {
    let (got, want) = (facts_of_state(s), facts_of_log(log));
    // field by field, so a failure names what differs
    assert_eq!(got.incidents, want.incidents, "{what}: incident statuses");
    assert_eq!(got.offers, want.offers, "{what}: offers (incident, member, state)");
    assert_eq!(got.answered, want.answered, "{what}: accepted and arrived per incident");
    assert_eq!(got.mobilizations, want.mobilizations, "{what}: mobilization orders and closing");
    assert_eq!(got.progress, want.progress, "{what}: mobilization counts");
    assert_eq!(got.duty, want.duty, "{what}: members on call and the offers holding them");
    assert_eq!(got.orders, want.orders, "{what}: order statuses");
    assert_eq!(got.claims, want.claims, "{what}: claims (checked in, checked out, rating)");
}

// ---------------------------------------------------------------------------------------
// Actors and commands
// ---------------------------------------------------------------------------------------

pub(super) fn city_command() -> Actor {
    Actor::Command { district: None }
}

pub(super) fn district_command(d: &str) -> Actor {
    Actor::Command { district: Some(d.into()) }
}

pub(super) fn staff(community: &str) -> Actor {
    Actor::Staff { community: community.into() }
}

pub(super) fn unit_admin(unit: &str) -> Actor {
    Actor::UnitAdmin { unit: unit.into() }
}

pub(super) fn as_member(id: &str) -> Actor {
    Actor::Member { member: id.into() }
}

/// A call of this category by grid id, needing no skill.
pub(super) fn call(grid: &str, category: &str, level: Level, headcount: u32) -> RaiseIncident {
    RaiseIncident {
        grid_id: Some(grid.into()),
        location: None,
        category: category.into(),
        level,
        headcount,
        skills: Vec::new(),
        note: None,
        idempotency_key: None,
        difficulty: None,
    }
}

/// A rescue call (hard) by grid id, needing no skill.
pub(super) fn rescue(grid: &str, level: Level, headcount: u32) -> RaiseIncident {
    call(grid, "rescue", level, headcount)
}

pub(super) fn resolve(incident_id: &str) -> Command {
    Command::Resolve { incident_id: incident_id.into(), note: None }
}

pub(super) fn cancel(incident_id: &str) -> Command {
    Command::Cancel { incident_id: incident_id.into(), reason: None }
}

/// About 11 km north of the cities' rows of grids: in no grid at all.
pub(super) fn nowhere() -> Position {
    Position::new(30.69, 114.30).unwrap()
}

// ---------------------------------------------------------------------------------------
// Members
// ---------------------------------------------------------------------------------------

pub(super) trait MemberExt {
    /// Joins a team, and its unit (as in `tiny_city` and `fixtures::two_districts`: t1 and
    /// w1 in u1, t2..t4 in u2..u4).
    fn team(self, team: &str) -> Self;
    /// Stands in the first cell of this grid of `fixtures::two_districts` instead.
    fn at(self, grid: &str) -> Self;
    fn unit(self, unit: &str) -> Self;
    fn skills(self, skills: &[&str]) -> Self;
    fn living_in(self, grid: &str) -> Self;
    fn off_call(self) -> Self;
    fn unregistered(self) -> Self;
}

impl MemberExt for Member {
    fn team(mut self, team: &str) -> Self {
        self.unit_id = match team {
            "t1" | "w1" => "u1",
            "t2" => "u2",
            "t3" => "u3",
            "t4" => "u4",
            other => panic!("no team {other}"),
        }
        .into();
        self.team_id = Some(team.into());
        self
    }
    fn at(mut self, grid: &str) -> Self {
        self.position = super::fixtures::in_cell(grid, 0);
        self
    }
    fn unit(mut self, unit: &str) -> Self {
        self.unit_id = unit.into();
        self
    }
    fn skills(mut self, skills: &[&str]) -> Self {
        self.skills = skills.iter().map(|s| s.to_string()).collect();
        self
    }
    fn living_in(mut self, grid: &str) -> Self {
        self.residence_grid_id = grid.into();
        self
    }
    fn off_call(mut self) -> Self {
        self.on_call = false;
        self
    }
    fn unregistered(mut self) -> Self {
        self.registered = false;
        self
    }
}

// ---------------------------------------------------------------------------------------
// Reading outcomes
// ---------------------------------------------------------------------------------------

pub(super) fn kinds(out: &Outcome) -> Vec<&'static str> {
    out.events.iter().map(|e| e.body.kind()).collect()
}

#[track_caller]
pub(super) fn incident_of(out: &Outcome) -> String {
    match &out.reply {
        Some(Reply::Incident(id)) => id.clone(),
        other => panic!("expected an incident reply, got {other:?}"),
    }
}

/// The members offered in this outcome, in the order the offers were sent (best first).
pub(super) fn sent_to(out: &Outcome) -> Vec<String> {
    out.events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::OfferSent { member_id, .. } => Some(member_id.clone()),
            _ => None,
        })
        .collect()
}

/// Frames of this kind on this stream, in order.
pub(super) fn frames_of<'a>(frames: &'a [Frame], stream: &str, kind: &str) -> Vec<&'a Frame> {
    frames.iter().filter(|f| f.stream == stream && f.kind == kind).collect()
}

pub(super) fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

pub(super) fn as_set(ids: Vec<String>) -> BTreeSet<String> {
    ids.into_iter().collect()
}

#[track_caller]
pub(super) fn assert_err(e: &DomainError, kind: ErrorKind, code: &str) {
    assert_eq!((e.kind, e.code.as_str()), (kind, code), "{}", e.detail);
}

/// For the scenario tests: a snapshot taken after any prefix of a log, restored, and fed the
/// rest of the log, gives the frames and the state a replay of the whole log gives, and
/// then decides as the replayed state does. At every cut the replayed and the restored
/// states must also hold what the events say (`assert_states_the_log`, a fold that does
/// not use `apply`).
pub fn assert_restores_at_every_cut(log: &[Event], rules: &Rules) {
    use super::dispatcher::{Actor, Command, apply, execute};
    use super::snapshot::{decode, encode, seq_of};

    let mut whole = State::default();
    let mut frames = Vec::new();
    for e in log {
        frames.push(apply(&mut whole, e));
    }
    let end = encode(&whole);
    let later = log.last().map_or(0, |e| e.at) + 86_400_000;
    let mut prefix = State::default();
    for cut in 0..=log.len() {
        if cut > 0 {
            apply(&mut prefix, &log[cut - 1]);
        }
        // The replayed state says what the events say, by a fold of their own.
        assert_states_the_log(&prefix, &log[..cut], &format!("replayed to cut {cut}"));
        let bytes = encode(&prefix);
        assert_eq!(seq_of(&bytes).unwrap(), cut as u64);
        let mut restored = decode(&bytes).unwrap_or_else(|e| panic!("cut {cut}: {e}"));
        assert_eq!(encode(&restored), bytes, "cut {cut}: restoring changes nothing");
        assert_states_the_log(&restored, &log[..cut], &format!("restored at cut {cut}"));
        for (e, want) in log[cut..].iter().zip(&frames[cut..]) {
            assert_eq!(&apply(&mut restored, e), want, "cut {cut}: the frames of event {}", e.seq);
        }
        assert!(encode(&restored) == end, "cut {cut}: the state after the rest of the log");
        // and it decides the next step as the replayed state does
        let mut replayed = decode(&end).unwrap();
        restored.schedule_retries(later);
        replayed.schedule_retries(later);
        let a = execute(&mut restored, rules, &Actor::System, Command::Tick, later);
        let b = execute(&mut replayed, rules, &Actor::System, Command::Tick, later);
        match (a, b) {
            (Ok(a), Ok(b)) => assert_eq!((a.events, a.frames), (b.events, b.frames), "cut {cut}: a tick a day later"),
            (a, b) => assert_eq!(a.is_ok(), b.is_ok(), "cut {cut}"),
        }
    }
}
