//! What the dispatcher is asked: who acts (`Actor`), what they ask (`Command` and its
//! payloads), what they are answered (`Reply`, `Outcome`), and the transaction a command
//! runs in (`Tx`), with the two checks every feature makes of its input (`check_note`,
//! `acting_member`).
//!
//! Separate so that the features and `scope` can name the vocabulary without depending on
//! the kernel; `Tx` emits through the kernel's `apply`, which the kernel hands it.

use serde::{Deserialize, Serialize};

use super::errors::{Code, DomainError, ErrorKind, err, err_as};
use super::event::{Event, EventBody, Frame, Mode};
use super::geo::Position;
use super::mobilization::Site;
use super::org::City;
use super::response::{Level, Rules};
use super::service_data::{Currency, PostOrder, Rating, TaskRef};
use super::state::State;
use super::time::Ts;

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
    /// A resident signed in with a code to their phone (issue #20): sees only their own
    /// requests.
    Resident {
        resident: String,
    },
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
            Actor::Resident { resident } => format!("resident:{resident}"),
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
    /// Invitations to sign in (one, or a batch): all or none.
    Invite {
        invitations: Vec<super::access::Invite>,
    },
    RevokeInvitation {
        invitation_id: String,
    },
    /// Opens session `family` with an invitation's code (its hash): the code is the proof.
    Redeem {
        code_hash: String,
        family: String,
        refresh_hash: String,
        device: String,
        ttl_s: u64,
    },
    /// Rotates a session's refresh credential (hashes only); a rotated one revokes the family.
    Refresh {
        family: String,
        presented_hash: String,
        refresh_hash: String,
        ttl_s: u64,
    },
    /// Ends a session, proven by its refresh credential or asked by its person.
    SignOut {
        family: String,
        refresh_hash: Option<String>,
    },
    /// Revokes a device: the person, or whoever may invite them.
    RevokeSession {
        family: String,
    },
    /// Registers an outbound webhook endpoint; the gateway drew its secret.
    RegisterWebhook {
        url: String,
        types: Vec<String>,
        district_id: Option<String>,
        secret: String,
    },
    /// Enables or disables an endpoint (`reason` for a disable; `manual` by default).
    SetWebhook {
        webhook_id: String,
        active: bool,
        reason: Option<String>,
    },
    DeleteWebhook {
        webhook_id: String,
    },
    RotateWebhookSecret {
        webhook_id: String,
        secret: String,
    },
    /// Campaigns (issue #19): `{"type":"campaign","action":{"op":"create",…}}`.
    Campaign {
        action: Box<super::campaign::CampaignCommand>,
    },
    /// Web Push (issue 18): a member subscribes a browser (its PushSubscription).
    PushSubscribe {
        endpoint: String,
        p256dh: String,
        auth: String,
    },
    /// A member removes one of theirs; the system one its push service said is gone.
    PushUnsubscribe {
        subscription_id: String,
        reason: Option<String>,
    },
    /// The pusher's tries and their results (the system's), a batch at a time.
    PushRecord {
        attempts: Vec<super::push::PushAttempt>,
    },
    /// Fire every deadline due at `now`.
    Tick,
    /// Publish the progress of the mobilizations acknowledged or reported to since the
    /// last tally (the engine's, once per batch).
    Tally,
    /// Residents' requests and members' proposals (issue #20):
    /// `{"type":"residents","action":{"op":"place",…}}`.
    Residents {
        action: Box<super::residents_data::ResidentCommand>,
    },
    /// A member's answer (accept, decline, arrive, mobilization ack or report) with the
    /// client's id for it (issue 18, `domain::answers`): decided once; the same id again
    /// is answered `Reply::Duplicate`.
    /// `{"type":"answer","answer_id":"a-1","answer":{"type":"accept","offer_id":"off-1"}}`.
    Answer {
        answer_id: String,
        answer: Box<Command>,
    },
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
            Command::Invite { .. } => "invite",
            Command::RevokeInvitation { .. } => "revoke_invitation",
            Command::Redeem { .. } => "redeem",
            Command::Refresh { .. } => "refresh",
            Command::SignOut { .. } => "sign_out",
            Command::RevokeSession { .. } => "revoke_session",
            Command::RegisterWebhook { .. } => "register_webhook",
            Command::SetWebhook { .. } => "set_webhook",
            Command::DeleteWebhook { .. } => "delete_webhook",
            Command::RotateWebhookSecret { .. } => "rotate_webhook_secret",
            Command::Campaign { .. } => "campaign",
            Command::PushSubscribe { .. } => "push_subscribe",
            Command::PushUnsubscribe { .. } => "push_unsubscribe",
            Command::PushRecord { .. } => "push_record",
            Command::Tick => "tick",
            Command::Tally => "tally",
            Command::Residents { .. } => "residents",
            Command::Answer { .. } => "answer",
        }
    }
}

/// `POST /v1/mobilizations`: exactly one way of naming the teams, and where they report.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MobilizeOrder {
    pub teams: Vec<String>,
    pub unit_id: Option<String>,
    pub district_id: Option<String>,
    pub all_assault: bool,
    /// Every team reports here instead of to its paired community.
    pub community_id: Option<String>,
    /// Or every team reports to this site.
    pub site: Option<Site>,
    pub deadline_s: Option<u64>,
    pub note: Option<String>,
}

/// Wire form: `{"type":"paired_units"}`, `{"type":"units","units":["u1"]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "units", rename_all = "snake_case")]
pub enum WhistleTarget {
    /// Units whose teams are paired with the incident's community.
    PairedUnits,
    /// Units whose teams are paired with any community of the incident's street.
    StreetUnits,
    Units(Vec<String>),
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
    /// A refresh presented a credential its family had rotated past: the family (this id)
    /// is revoked, and the caller is refused.
    RefreshReused(String),
    Webhook(String),
    Campaign(String),
    PushSubscription(String),
    Request(String),
    Proposal(String),
    /// A `Command::Answer` whose id this member's same answer already used: nothing done.
    Duplicate,
}

#[derive(Debug, Default)]
pub struct Outcome {
    pub events: Vec<Event>,
    pub frames: Vec<Frame>,
    pub reply: Option<Reply>,
}

/// A command in progress: emits events one at a time, applying each at once.
pub(super) struct Tx<'a> {
    pub(super) state: &'a mut State,
    pub(super) rules: &'a Rules,
    pub(super) actor: String,
    pub(super) now: Ts,
    out: Outcome,
    /// The kernel's `dispatcher::apply`, handed in so that the features, which emit through
    /// a `Tx`, do not depend on the kernel that routes to them.
    apply: fn(&mut State, &Event) -> Vec<Frame>,
    /// The client's id of the answer being decided (`Command::Answer`), which its event
    /// records.
    pub(super) answer_id: Option<String>,
}

impl<'a> Tx<'a> {
    pub(super) fn new(
        state: &'a mut State,
        rules: &'a Rules,
        actor: String,
        now: Ts,
        apply: fn(&mut State, &Event) -> Vec<Frame>,
    ) -> Self {
        Tx { state, rules, actor, now, out: Outcome::default(), apply, answer_id: None }
    }

    pub(super) fn emit(&mut self, body: EventBody) {
        let event = Event { seq: self.state.last_seq + 1, at: self.now, actor: self.actor.clone(), body };
        let frames = (self.apply)(self.state, &event);
        self.out.frames.extend(frames);
        self.out.events.push(event);
    }

    /// The events and frames emitted, with the command's answer.
    pub(super) fn finish(mut self, reply: Reply) -> Outcome {
        self.out.reply = Some(reply);
        self.out
    }
}

/// How a member answers an offer (`incidents::answer`).
pub(super) enum Answer {
    Accept,
    Decline(Option<String>),
    Arrive(Position),
}

/// A note or reason is at most 1000 characters.
pub(super) fn check_note(note: Option<&str>) -> Result<(), DomainError> {
    match note {
        Some(n) if n.chars().count() > 1000 => {
            Err(err(Code::TextTooLong, "a note or reason is at most 1000 characters"))
        }
        _ => Ok(()),
    }
}

/// The member acting, or a refusal for any other actor.
pub(super) fn acting_member(state: &State, actor: &Actor) -> Result<u32, DomainError> {
    match actor {
        Actor::Member { member } => state.member_index(member).ok_or_else(|| {
            err_as(ErrorKind::NotFound, Code::UnknownMember, format!("member '{member}' is not in the city"))
        }),
        _ => Err(err(Code::MembersOnly, "only a member can do this")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

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
            Command::Invite { .. } => 29,
            Command::RevokeInvitation { .. } => 30,
            Command::Redeem { .. } => 31,
            Command::Refresh { .. } => 32,
            Command::SignOut { .. } => 33,
            Command::RevokeSession { .. } => 34,
            Command::RegisterWebhook { .. } => 35,
            Command::SetWebhook { .. } => 36,
            Command::DeleteWebhook { .. } => 37,
            Command::RotateWebhookSecret { .. } => 38,
            Command::Campaign { .. } => 39,
            Command::PushSubscribe { .. } => 40,
            Command::PushUnsubscribe { .. } => 41,
            Command::PushRecord { .. } => 42,
            Command::Residents { .. } => 43,
            Command::Answer { .. } => 46,
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
            Command::Invite {
                invitations: vec![super::super::access::Invite {
                    invitee: Actor::Member { member: "m1".into() },
                    ttl_s: 600,
                    code_hash: "ab".repeat(32),
                }],
            },
            Command::RevokeInvitation { invitation_id: "inv-000001".into() },
            Command::Redeem {
                code_hash: "ab".repeat(32),
                family: "f".repeat(22),
                refresh_hash: "cd".repeat(32),
                device: "phone \"x\"".into(),
                ttl_s: 86_400,
            },
            Command::Refresh {
                family: "f".repeat(22),
                presented_hash: "cd".repeat(32),
                refresh_hash: "ef".repeat(32),
                ttl_s: 86_400,
            },
            Command::SignOut { family: "f".repeat(22), refresh_hash: None },
            Command::RevokeSession { family: "f".repeat(22) },
            Command::RegisterWebhook {
                url: "https://hooks.example/muster?x=1".into(),
                types: vec!["incident.raised".into()],
                district_id: Some("d1".into()),
                secret: format!("whsec_{}", "A".repeat(32)),
            },
            Command::SetWebhook { webhook_id: "wh-1".into(), active: false, reason: Some("manual".into()) },
            Command::DeleteWebhook { webhook_id: "wh-1".into() },
            Command::RotateWebhookSecret { webhook_id: "wh-1".into(), secret: format!("whsec_{}", "B".repeat(32)) },
            Command::Campaign {
                action: Box::new(super::super::campaign::CampaignCommand::Roster {
                    campaign_id: "cmp-1".into(),
                    seed: 7,
                    iterations: 1000,
                }),
            },
            Command::PushSubscribe {
                endpoint: "https://push.example/send/abc?x=1".into(),
                p256dh: "B".repeat(87),
                auth: "A".repeat(22),
            },
            Command::PushUnsubscribe { subscription_id: "ps-00".into(), reason: Some("gone".into()) },
            Command::PushRecord {
                attempts: vec![super::super::push::PushAttempt {
                    message_id: "push_7_ps-00".into(),
                    member_id: "m1".into(),
                    subscription_id: "ps-00".into(),
                    kind: super::super::push::PushKind::Whistle,
                    incident_id: Some("inc-000001".into()),
                    offer_id: Some("off-1".into()),
                    mobilization_id: None,
                    attempt: 2,
                    status: Some(500),
                    outcome: super::super::push::PushOutcome::Retry,
                    error: Some("answered 500".into()),
                }],
            },
            Command::Residents {
                action: Box::new(super::super::residents_data::ResidentCommand::Place {
                    category: "elderly_help".into(),
                    description: "帮忙买药 \"quoted\"".into(),
                    grid_id: "g1".into(),
                    preferred_start: 1_700_000_000_000,
                    preferred_end: 1_700_003_600_000,
                }),
            },
            Command::Answer {
                answer_id: "0b6f2c8e-1d7a-4c1e-9f00-123456789abc".into(),
                answer: Box::new(Command::Accept { offer_id: "off-1".into() }),
            },
        ]
    }

    #[test]
    fn every_command_round_trips_tagged_by_its_name() {
        let all = commands();
        assert_eq!(all.iter().map(ordinal).collect::<Vec<_>>(), (0..=43).chain([46]).collect::<Vec<_>>());
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
            Actor::Resident { resident: "r-1".into() },
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
            Reply::RefreshReused("f".repeat(22)),
            Reply::Duplicate,
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
}
