//! The event log's vocabulary. Every decision and every answer is one of these, appended
//! durably before anyone hears "done"; `State` is nothing but their fold.

use std::fmt::Write as _;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::geo::Position;
use super::mobilization::Site;
use super::org::City;
use super::response::Level;
use super::service_data::{Currency, Rating};
use super::workload::TaskClass;

/// Peacetime (平时) or wartime (战时).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    #[default]
    Peacetime,
    Wartime,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Peacetime => "peacetime",
            Mode::Wartime => "wartime",
        }
    }
}

/// One team of a mobilization order and where it reports (`None`: the order's site).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TeamOrder {
    pub team_id: String,
    pub community_id: Option<String>,
}

pub use super::time::Ts;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Position in the log, from 1, without gaps.
    pub seq: u64,
    pub at: Ts,
    /// Who caused it: `command`, `command:d01`, `staff:c001`, `member:m00001`, `system`.
    pub actor: String,
    pub body: EventBody,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevokeReason {
    Filled,
    Cancelled,
    Expired,
    Resolved,
}

impl RevokeReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RevokeReason::Filled => "filled",
            RevokeReason::Cancelled => "cancelled",
            RevokeReason::Expired => "expired",
            RevokeReason::Resolved => "resolved",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EscalationReason {
    /// Not filled by the level's deadline.
    Timeout,
    /// Escalated by hand by staff or command.
    Manual,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventBody {
    CityImported {
        city: Box<City>,
    },
    /// Campaigns (issue #19): `{"type":"campaign","event":{"op":"created",…}}`.
    Campaign {
        event: Box<crate::domain::campaign::CampaignEvent>,
    },
    IncidentRaised {
        incident_id: String,
        community_id: String,
        grid_id: String,
        location: Position,
        category: String,
        level: Level,
        headcount: u32,
        skills: Vec<String>,
        note: Option<String>,
        idempotency_key: Option<String>,
        escalate_at: Option<Ts>,
        difficulty: u8,
        class: TaskClass,
    },
    OfferSent {
        offer_id: String,
        incident_id: String,
        member_id: String,
        distance_m: f64,
        expires_at: Ts,
        /// Set when the offer answers a whistle (吹哨) to the member's unit.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        whistle_id: Option<String>,
        /// Why this member ("why you"): codes such as `near`, `skills`, `lives_here`,
        /// `team_paired`, `reliable`, `less_hard_work`, `rested`, `whistle`.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        why: Vec<String>,
    },
    OfferAccepted {
        offer_id: String,
        incident_id: String,
        member_id: String,
        /// The client's id of this answer (`domain::answers`), when it sent one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        answer_id: Option<String>,
    },
    OfferDeclined {
        offer_id: String,
        incident_id: String,
        member_id: String,
        reason: Option<String>,
        /// The client's id of this answer (`domain::answers`), when it sent one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        answer_id: Option<String>,
    },
    OfferExpired {
        offer_id: String,
        incident_id: String,
        member_id: String,
    },
    OfferRevoked {
        offer_id: String,
        incident_id: String,
        member_id: String,
        reason: RevokeReason,
    },
    MemberArrived {
        offer_id: String,
        incident_id: String,
        member_id: String,
        position: Position,
        distance_m: f64,
        /// The client's id of this answer (`domain::answers`), when it sent one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        answer_id: Option<String>,
    },
    IncidentFilled {
        incident_id: String,
    },
    IncidentEscalated {
        incident_id: String,
        from: Level,
        to: Level,
        reason: EscalationReason,
        escalate_at: Option<Ts>,
    },
    /// 吹哨: an escalation that obliges the wider area to answer; visible to command.
    WhistleBlown {
        incident_id: String,
        level: Level,
        /// The areas now obliged to answer, e.g. `["street", "district"]`.
        reach: Vec<String>,
        reason: EscalationReason,
    },
    IncidentResolved {
        incident_id: String,
        note: Option<String>,
    },
    IncidentCancelled {
        incident_id: String,
        reason: Option<String>,
    },
    DutyChanged {
        member_id: String,
        on_call: bool,
    },
    /// 平战转换 for one district, or the city when `district_id` is `None`.
    ModeSwitched {
        district_id: Option<String>,
        mode: Mode,
        reason: String,
    },
    MobilizationOrdered {
        mobilization_id: String,
        teams: Vec<TeamOrder>,
        site: Option<Site>,
        deadline: Ts,
        note: Option<String>,
    },
    MobilizationAcknowledged {
        mobilization_id: String,
        member_id: String,
        /// Its progress frames wait for the batch's `MobilizationTallied`. False in logs
        /// written before progress was batched: those events publish their own.
        #[serde(default)]
        batched: bool,
        /// The client's id of this answer (`domain::answers`), when it sent one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        answer_id: Option<String>,
    },
    MobilizationReported {
        mobilization_id: String,
        member_id: String,
        position: Position,
        distance_m: f64,
        /// As for `MobilizationAcknowledged`.
        #[serde(default)]
        batched: bool,
        /// The client's id of this answer (`domain::answers`), when it sent one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        answer_id: Option<String>,
    },
    /// Closes a batch of acknowledgements and reports: one `mobilization.progress` frame
    /// per stream that follows the mobilization, listing what changed since the last one.
    MobilizationTallied {
        mobilization_id: String,
    },
    MobilizationDeadlinePassed {
        mobilization_id: String,
    },
    MobilizationClosed {
        mobilization_id: String,
        reason: String,
    },
    /// 吹哨报到: named units must report (answer) on an incident by the deadline.
    UnitsWhistled {
        incident_id: String,
        whistle_id: String,
        units: Vec<String>,
        deadline: Ts,
    },
    WhistleOverdue {
        incident_id: String,
        whistle_id: String,
        /// Units that had not reported by the deadline.
        units: Vec<String>,
    },
    /// 力量统筹: members re-pointed from a surplus community to a deficit one.
    MembersTransferred {
        from: String,
        to: String,
        members: Vec<String>,
    },
    /// 双报到: members report at their residence community (new ones join the city).
    MembersRegistered {
        members: Vec<crate::domain::org::Member>,
    },
    /// 单位报到: a unit reports to a community one of its teams is paired with.
    UnitRegistered {
        unit_id: String,
        community_id: String,
    },
    /// 群众点单、社区派单: a community posts a service order.
    OrderPosted {
        order_id: String,
        community_id: String,
        grid_id: String,
        location: Position,
        category: String,
        difficulty: u8,
        class: TaskClass,
        title: String,
        note: Option<String>,
        window_start: Ts,
        window_end: Ts,
        slots: u32,
        skills: Vec<String>,
        /// A hard order is reserved until then for the members named.
        priority_until: Option<Ts>,
        priority_members: Vec<String>,
    },
    /// 党员接单 (or assigned by staff).
    OrderClaimed {
        order_id: String,
        member_id: String,
        assigned: bool,
    },
    OrderCancelled {
        order_id: String,
        reason: Option<String>,
    },
    /// 服务纪实: a check-in at the order's place (flagged outside the geofence).
    CheckedIn {
        order_id: String,
        member_id: String,
        position: Position,
        distance_m: f64,
        flagged: bool,
    },
    CheckedOut {
        order_id: String,
        member_id: String,
        position: Position,
        distance_m: f64,
        flagged: bool,
        hours: f64,
    },
    /// 一事一评: a rating of one member's work on one task, and the points it earns.
    Rated {
        order_id: Option<String>,
        offer_id: Option<String>,
        incident_id: Option<String>,
        member_id: String,
        rating: Rating,
        hours: f64,
        difficulty: u8,
        points: f64,
    },
    /// Every token of `subject` issued at or before `before_s` (seconds) is refused from now on.
    TokensRevoked {
        subject: String,
        before_s: u64,
    },
    Exchanged {
        member_id: String,
        from: Currency,
        amount: f64,
        points_delta: f64,
        hours_delta: f64,
    },
    /// A sign-in link for `invitee` (role and scope); only the code's SHA-256 is logged.
    InvitationIssued {
        invitation_id: String,
        invitee: super::command::Actor,
        expires_at: Ts,
        code_hash: String,
        issued_by: String,
    },
    /// The link was opened: session `family` begins, with its first refresh credential's hash.
    InvitationRedeemed {
        invitation_id: String,
        family: String,
        device: String,
        refresh_hash: String,
        expires_at: Ts,
    },
    InvitationRevoked {
        invitation_id: String,
    },
    /// The family's refresh credential was rotated.
    SessionRefreshed {
        family: String,
        refresh_hash: String,
        expires_at: Ts,
    },
    /// The family ended: its refresh and access tokens are refused from now on.
    SessionRevoked {
        family: String,
        reason: super::access::SessionEnd,
    },
    /// An outbound webhook endpoint (`domain::webhooks`), with its signing secret: the
    /// nodes that deliver need it; the audit never shows it.
    WebhookRegistered {
        webhook_id: String,
        url: String,
        types: Vec<String>,
        district_id: Option<String>,
        secret: String,
    },
    WebhookEnabled {
        webhook_id: String,
        district_id: Option<String>,
    },
    /// By command (`manual`), or by the deliverer after repeated dead letters.
    WebhookDisabled {
        webhook_id: String,
        district_id: Option<String>,
        reason: String,
    },
    WebhookSecretRotated {
        webhook_id: String,
        district_id: Option<String>,
        secret: String,
    },
    WebhookDeleted {
        webhook_id: String,
        district_id: Option<String>,
    },
    /// Web Push (`domain::push`): a member's browser subscribed. Its endpoint and keys
    /// never leave the log and the pusher (no frame, no audit).
    PushSubscribed {
        member_id: String,
        subscription_id: String,
        endpoint: String,
        p256dh: String,
        auth: String,
    },
    /// `member` (the member removed it), `gone` (the push service said 404 or 410),
    /// `renewed` or `replaced` (subscribed again, or by another member, or one too many).
    PushUnsubscribed {
        member_id: String,
        subscription_id: String,
        reason: String,
    },
    /// One try of one push and its result.
    PushAttempted(Box<crate::domain::push::PushAttempt>),
    /// Residents' requests and members' proposals (issue #20):
    /// `{"type":"residents","event":{"op":"request_placed",…}}`.
    Residents {
        event: Box<super::residents_data::ResidentEvent>,
    },
}

impl EventBody {
    /// The `type` name, as in the log and the timeline.
    pub fn kind(&self) -> &'static str {
        match self {
            EventBody::CityImported { .. } => "city_imported",
            EventBody::IncidentRaised { .. } => "incident_raised",
            EventBody::OfferSent { .. } => "offer_sent",
            EventBody::OfferAccepted { .. } => "offer_accepted",
            EventBody::OfferDeclined { .. } => "offer_declined",
            EventBody::OfferExpired { .. } => "offer_expired",
            EventBody::OfferRevoked { .. } => "offer_revoked",
            EventBody::MemberArrived { .. } => "member_arrived",
            EventBody::IncidentFilled { .. } => "incident_filled",
            EventBody::IncidentEscalated { .. } => "incident_escalated",
            EventBody::WhistleBlown { .. } => "whistle_blown",
            EventBody::IncidentResolved { .. } => "incident_resolved",
            EventBody::IncidentCancelled { .. } => "incident_cancelled",
            EventBody::DutyChanged { .. } => "duty_changed",
            EventBody::ModeSwitched { .. } => "mode_switched",
            EventBody::MobilizationOrdered { .. } => "mobilization_ordered",
            EventBody::MobilizationAcknowledged { .. } => "mobilization_acknowledged",
            EventBody::MobilizationReported { .. } => "mobilization_reported",
            EventBody::MobilizationTallied { .. } => "mobilization_tallied",
            EventBody::MobilizationDeadlinePassed { .. } => "mobilization_deadline_passed",
            EventBody::MobilizationClosed { .. } => "mobilization_closed",
            EventBody::UnitsWhistled { .. } => "units_whistled",
            EventBody::WhistleOverdue { .. } => "whistle_overdue",
            EventBody::MembersTransferred { .. } => "members_transferred",
            EventBody::Campaign { .. } => "campaign",
            EventBody::MembersRegistered { .. } => "members_registered",
            EventBody::UnitRegistered { .. } => "unit_registered",
            EventBody::OrderPosted { .. } => "order_posted",
            EventBody::OrderClaimed { .. } => "order_claimed",
            EventBody::OrderCancelled { .. } => "order_cancelled",
            EventBody::CheckedIn { .. } => "checked_in",
            EventBody::CheckedOut { .. } => "checked_out",
            EventBody::Rated { .. } => "rated",
            EventBody::Exchanged { .. } => "exchanged",
            EventBody::TokensRevoked { .. } => "tokens_revoked",
            EventBody::InvitationIssued { .. } => "invitation_issued",
            EventBody::InvitationRedeemed { .. } => "invitation_redeemed",
            EventBody::InvitationRevoked { .. } => "invitation_revoked",
            EventBody::SessionRefreshed { .. } => "session_refreshed",
            EventBody::SessionRevoked { .. } => "session_revoked",
            EventBody::WebhookRegistered { .. } => "webhook_registered",
            EventBody::WebhookEnabled { .. } => "webhook_enabled",
            EventBody::WebhookDisabled { .. } => "webhook_disabled",
            EventBody::WebhookSecretRotated { .. } => "webhook_secret_rotated",
            EventBody::WebhookDeleted { .. } => "webhook_deleted",
            EventBody::PushSubscribed { .. } => "push_subscribed",
            EventBody::PushUnsubscribed { .. } => "push_unsubscribed",
            EventBody::PushAttempted(_) => "push_attempted",
            EventBody::Residents { event } => event.kind(),
        }
    }

    /// The incident this event belongs to, for the timeline index.
    pub fn incident_id(&self) -> Option<&str> {
        match self {
            EventBody::IncidentRaised { incident_id, .. }
            | EventBody::OfferSent { incident_id, .. }
            | EventBody::OfferAccepted { incident_id, .. }
            | EventBody::OfferDeclined { incident_id, .. }
            | EventBody::OfferExpired { incident_id, .. }
            | EventBody::OfferRevoked { incident_id, .. }
            | EventBody::MemberArrived { incident_id, .. }
            | EventBody::IncidentFilled { incident_id }
            | EventBody::IncidentEscalated { incident_id, .. }
            | EventBody::WhistleBlown { incident_id, .. }
            | EventBody::IncidentResolved { incident_id, .. }
            | EventBody::IncidentCancelled { incident_id, .. }
            | EventBody::UnitsWhistled { incident_id, .. }
            | EventBody::WhistleOverdue { incident_id, .. } => Some(incident_id),
            EventBody::PushAttempted(a) => a.incident_id.as_deref(),
            _ => None,
        }
    }
}

/// One frame of one recipient stream, derived from an event when it is applied and
/// stored with it in the same transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    /// `member:<id>`, `community:<id>`, `district:<id>` or `city`.
    pub stream: String,
    pub seq: u64,
    pub kind: &'static str,
    /// Shared: one event's frames to several streams (a mobilization order to each of a
    /// team's members, a progress frame to the city and a district) hold the same data,
    /// built once, not a deep copy per stream.
    pub data: FrameData,
}

/// A frame's data: a JSON value, or its JSON text written directly (the progress frames,
/// built per batch with a change per answer, skip the value: building, cloning and
/// dropping it was most of the tally's cost). Either reads as a `serde_json::Value`
/// (`Deref`: the text is parsed on first read, which only tests and diagnostics do); the
/// encoder uses the text as it is.
#[derive(Debug, Clone)]
pub enum FrameData {
    Value(Arc<serde_json::Value>),
    Json(Arc<JsonText>),
}

/// JSON text, and its value once someone reads it as one.
#[derive(Debug)]
pub struct JsonText {
    text: String,
    parsed: std::sync::OnceLock<serde_json::Value>,
}

impl FrameData {
    /// Data written as JSON by the caller, who makes sure it is valid JSON.
    pub fn json(text: String) -> FrameData {
        debug_assert!(serde_json::from_str::<serde_json::Value>(&text).is_ok(), "frame data is JSON: {text}");
        FrameData::Json(Arc::new(JsonText { text, parsed: std::sync::OnceLock::new() }))
    }

    /// The same for frames that share their data (clones of one `FrameData`).
    pub fn ptr(&self) -> *const () {
        match self {
            FrameData::Value(v) => Arc::as_ptr(v).cast(),
            FrameData::Json(j) => Arc::as_ptr(j).cast(),
        }
    }

    /// Its JSON text, if it was written as text.
    fn text(&self) -> Option<&str> {
        match self {
            FrameData::Value(_) => None,
            FrameData::Json(j) => Some(&j.text),
        }
    }
}

impl std::ops::Deref for FrameData {
    type Target = serde_json::Value;
    fn deref(&self) -> &serde_json::Value {
        match self {
            FrameData::Value(v) => v,
            FrameData::Json(j) => {
                j.parsed.get_or_init(|| serde_json::from_str(&j.text).expect("frame data written as JSON"))
            }
        }
    }
}

impl PartialEq for FrameData {
    fn eq(&self, other: &FrameData) -> bool {
        **self == **other
    }
}

impl From<Arc<serde_json::Value>> for FrameData {
    fn from(v: Arc<serde_json::Value>) -> FrameData {
        FrameData::Value(v)
    }
}

impl From<serde_json::Value> for FrameData {
    fn from(v: serde_json::Value) -> FrameData {
        FrameData::Value(Arc::new(v))
    }
}

impl Frame {
    /// The wire form, `{"type":..,"seq":..,"data":..}`, encoded once and shared by every
    /// socket of the stream.
    pub fn to_text(&self) -> String {
        FrameEncoder::default().encode(self)
    }
}

/// Encodes frames to their wire text; consecutive frames that share their data (the same
/// `Arc`) encode it once (a surge's order is 16,000 frames of 312 teams' data).
#[derive(Default)]
pub struct FrameEncoder {
    /// The data last encoded, kept alive so its address cannot be reused meanwhile.
    last: Option<(FrameData, String)>,
}

impl FrameEncoder {
    /// `{"type":<kind>,"seq":<seq>,"data":<data>}`, byte for byte what serializing a
    /// struct with those fields in that order gives.
    pub fn encode(&mut self, f: &Frame) -> String {
        if let Some(text) = f.data.text() {
            return frame_text(f.kind, f.seq, text);
        }
        let fresh = self.last.as_ref().is_none_or(|(d, _)| d.ptr() != f.data.ptr());
        if fresh {
            let text = serde_json::to_string(&*f.data).expect("frames serialize");
            self.last = Some((f.data.clone(), text));
        }
        frame_text(f.kind, f.seq, &self.last.as_ref().expect("set above").1)
    }
}

/// `{"type":<kind>,"seq":<seq>,"data":`, what precedes a frame's data in its wire text.
fn frame_head(kind: &str, seq: u64, capacity: usize) -> String {
    let mut out = String::with_capacity(capacity + kind.len() + 40);
    out.push_str("{\"type\":");
    if kind.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push('"');
        out.push_str(kind);
        out.push('"');
    } else {
        out.push_str(&serde_json::to_string(kind).expect("a str serializes"));
    }
    out.push_str(",\"seq\":");
    let _ = write!(out, "{seq}");
    out.push_str(",\"data\":");
    out
}

/// A frame's wire text from its parts, `data` being its data's JSON: what
/// `FrameEncoder::encode` gives, byte for byte.
pub fn frame_text(kind: &str, seq: u64, data: &str) -> String {
    let mut out = frame_head(kind, seq, data.len());
    out.push_str(data);
    out.push('}');
    out
}

/// The data's JSON inside a frame's wire text (the inverse of `frame_text`).
pub fn frame_data<'a>(text: &'a str, kind: &str, seq: u64) -> Option<&'a str> {
    text.strip_prefix(frame_head(kind, seq, 0).as_str())?.strip_suffix('}')
}

/// Stream names.
pub mod stream {
    pub const CITY: &str = "city";
    pub fn member(id: &str) -> String {
        format!("member:{id}")
    }
    pub fn community(id: &str) -> String {
        format!("community:{id}")
    }
    pub fn district(id: &str) -> String {
        format!("district:{id}")
    }
    /// A unit's admin: whistles to the unit and mobilizations of its teams.
    pub fn unit(id: &str) -> String {
        format!("unit:{id}")
    }
    /// A resident's own requests (issue #20).
    pub fn resident(id: &str) -> String {
        format!("resident:{id}")
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// What `to_text` gave before the encoder: serde's encoding of the three fields.
    fn by_serde(f: &Frame) -> String {
        #[derive(Serialize)]
        struct Wire<'a> {
            #[serde(rename = "type")]
            kind: &'a str,
            seq: u64,
            data: &'a serde_json::Value,
        }
        serde_json::to_string(&Wire { kind: f.kind, seq: f.seq, data: &f.data }).unwrap()
    }

    #[test]
    fn the_encoder_writes_what_serde_wrote_and_shares_data_only_when_it_is_shared() {
        let shared =
            Arc::new(json!({"mobilization_id": "mob-1", "note": "é \"quoted\"\n", "progress": {"ordered": 3}}));
        let other = Arc::new(json!({"mobilization_id": "mob-1", "note": null}));
        let frames = [
            Frame { stream: "member:a".into(), seq: 1, kind: "mobilization.order", data: shared.clone().into() },
            Frame {
                stream: "member:b".into(),
                seq: 18_446_744_073_709_551_615,
                kind: "mobilization.order",
                data: shared.into(),
            },
            Frame { stream: "city".into(), seq: 7, kind: "mobilization.progress", data: other.into() },
            Frame { stream: "city".into(), seq: 8, kind: "odd\"kind", data: json!([1, 2.5, "x"]).into() },
            Frame {
                stream: "city".into(),
                seq: 9,
                kind: "mobilization.progress",
                data: FrameData::json(r#"{"changes":[{"member_id":"m\"1"}],"note":null}"#.into()),
            },
        ];
        let mut enc = FrameEncoder::default();
        for f in &frames {
            assert_eq!(enc.encode(f), by_serde(f));
            assert_eq!(f.to_text(), by_serde(f));
        }
    }
}
