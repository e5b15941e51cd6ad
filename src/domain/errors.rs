//! Refusals as data: `Code`, the stable name of every refusal the domain answers with
//! (documented in docs/PROTOCOL.md), its `ErrorKind` (and so its HTTP status class), and
//! `DomainError`, a code with a detail for people.
//!
//! Separate from the features so that every room (state lookups, scope, incidents, wartime,
//! service) can refuse without depending on another; the codes are one enum, so a new one
//! is a new variant with its kind, checked by the compiler instead of by scanning sources.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

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

impl ErrorKind {
    /// The HTTP status a refusal of this kind is answered with.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorKind::Invalid => 422,
            ErrorKind::Forbidden => 403,
            ErrorKind::NotFound => 404,
            ErrorKind::Conflict => 409,
        }
    }
}

/// One table: variant = wire name => kind. Gives the enum, `as_str` and `kind`, each an
/// exhaustive match, so the three cannot drift apart.
macro_rules! codes {
    ($($(#[$doc:meta])* $name:ident = $text:literal => $kind:ident,)*) => {
        /// Every code the domain refuses with. Serialized as its snake_case name, the string
        /// clients see (`Code::UnknownIncident` is `"unknown_incident"`).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum Code {
            $($(#[$doc])* $name,)*
        }

        impl Code {
            /// Every code, in the table's (alphabetical) order.
            pub const ALL: &[Code] = &[$(Code::$name,)*];

            /// The wire name.
            pub fn as_str(&self) -> &'static str {
                match self {
                    $(Code::$name => $text,)*
                }
            }

            /// The kind `err` gives it (the status class).
            pub fn kind(self) -> ErrorKind {
                match self {
                    $(Code::$name => ErrorKind::$kind,)*
                }
            }
        }
    };
}

codes! {
    AlreadyCheckedIn = "already_checked_in" => Conflict,
    AlreadyCheckedOut = "already_checked_out" => Conflict,
    AlreadyInMode = "already_in_mode" => Conflict,
    AlreadyRated = "already_rated" => Conflict,
    AnswerIdReused = "answer_id_reused" => Conflict,
    BadAmount = "bad_amount" => Invalid,
    BadAnswerId = "bad_answer_id" => Invalid,
    BadIdempotencyKey = "bad_idempotency_key" => Invalid,
    BadText = "bad_text" => Invalid,
    BadTitle = "bad_title" => Invalid,
    BadWindow = "bad_window" => Invalid,
    CampaignClosed = "campaign_closed" => Conflict,
    CityCommandOnly = "city_command_only" => Forbidden,
    DeadlineOutOfRange = "deadline_out_of_range" => Invalid,
    DidNotWork = "did_not_work" => Conflict,
    DifficultyOutOfRange = "difficulty_out_of_range" => Invalid,
    DuplicateMember = "duplicate_member" => Invalid,
    EasyCap = "easy_cap" => Conflict,
    GridOrLocation = "grid_or_location" => Invalid,
    HeadcountOutOfRange = "headcount_out_of_range" => Invalid,
    IncidentClosed = "incident_closed" => Conflict,
    IncidentFilled = "incident_filled" => Conflict,
    InsufficientBalance = "insufficient_balance" => Conflict,
    InvalidCampaign = "invalid_campaign" => Invalid,
    InvalidChallenge = "invalid_challenge" => Invalid,
    InvalidCity = "invalid_city" => Invalid,
    InvalidInvitation = "invalid_invitation" => Invalid,
    InvalidMember = "invalid_member" => Invalid,
    InvalidPhone = "invalid_phone" => Invalid,
    InvalidPushSubscription = "invalid_push_subscription" => Invalid,
    InvalidRegistration = "invalid_registration" => Invalid,
    InvalidRequirement = "invalid_requirement" => Invalid,
    InvalidShift = "invalid_shift" => Invalid,
    InvalidSite = "invalid_site" => Invalid,
    InvalidSubject = "invalid_subject" => Invalid,
    InvalidTransfer = "invalid_transfer" => Invalid,
    InvalidWebhook = "invalid_webhook" => Invalid,
    InvitationExpired = "invitation_expired" => Conflict,
    InvitationRevoked = "invitation_revoked" => Conflict,
    InvitationUsed = "invitation_used" => Conflict,
    InviteeNotAllowed = "invitee_not_allowed" => Forbidden,
    MemberExists = "member_exists" => Conflict,
    MembersOnly = "members_only" => Forbidden,
    MobilizationClosed = "mobilization_closed" => Conflict,
    NoCity = "no_city" => Conflict,
    NoTeams = "no_teams" => Invalid,
    NoUnits = "no_units" => Invalid,
    NotAccepted = "not_accepted" => Conflict,
    NotCheckedIn = "not_checked_in" => Conflict,
    NotClaimed = "not_claimed" => Conflict,
    NotEligible = "not_eligible" => Conflict,
    NotPaired = "not_paired" => Invalid,
    NotWartime = "not_wartime" => Conflict,
    OfferAccepted = "offer_accepted" => Conflict,
    OfferDeclined = "offer_declined" => Conflict,
    OfferExpired = "offer_expired" => Conflict,
    OfferNotOpen = "offer_not_open" => Conflict,
    OfferRevoked = "offer_revoked" => Conflict,
    OneDestination = "one_destination" => Invalid,
    OneSelector = "one_selector" => Invalid,
    OpenIncidents = "open_incidents" => Conflict,
    OpenMobilizations = "open_mobilizations" => Conflict,
    OpenOrders = "open_orders" => Conflict,
    OrderClosed = "order_closed" => Conflict,
    OrderFull = "order_full" => Conflict,
    OutsideGeofence = "outside_geofence" => Invalid,
    OutsideScope = "outside_scope" => Forbidden,
    PriorityWindow = "priority_window" => Conflict,
    ProposalClosed = "proposal_closed" => Conflict,
    PushNotConfigured = "push_not_configured" => Conflict,
    ReasonRequired = "reason_required" => Invalid,
    /// A refresh credential its session had rotated past: the session is revoked (never a
    /// domain refusal: `Reply::RefreshReused`, which the gateway answers 401 with this code).
    RefreshReused = "refresh_reused" => Conflict,
    RequestClosed = "request_closed" => Conflict,
    RequestNotServed = "request_not_served" => Conflict,
    RoleNotAllowed = "role_not_allowed" => Forbidden,
    /// The campaign changed while its roster was computed (issue #19).
    RosterStale = "roster_stale" => Conflict,
    SessionExpired = "session_expired" => Conflict,
    SlotsOutOfRange = "slots_out_of_range" => Invalid,
    StaleProposal = "stale_proposal" => Conflict,
    TaskNotFinished = "task_not_finished" => Conflict,
    TextTooLong = "text_too_long" => Invalid,
    TooManySkills = "too_many_skills" => Invalid,
    TooManyWebhooks = "too_many_webhooks" => Conflict,
    TopLevel = "top_level" => Conflict,
    UnknownCampaign = "unknown_campaign" => NotFound,
    UnknownCategory = "unknown_category" => Invalid,
    UnknownChallenge = "unknown_challenge" => NotFound,
    /// Also `Invalid` where the id is input to check rather than something to find: the
    /// calls say which (`err_as`).
    UnknownCommunity = "unknown_community" => NotFound,
    /// Also `Invalid` where the id is input to check rather than something to find: the
    /// calls say which (`err_as`).
    UnknownDistrict = "unknown_district" => NotFound,
    UnknownEventType = "unknown_event_type" => Invalid,
    UnknownGrid = "unknown_grid" => Invalid,
    UnknownIncident = "unknown_incident" => NotFound,
    UnknownInvitation = "unknown_invitation" => NotFound,
    /// Also `Invalid` where the id is input to check rather than something to find: the
    /// calls say which (`err_as`).
    UnknownMember = "unknown_member" => NotFound,
    UnknownMobilization = "unknown_mobilization" => NotFound,
    UnknownOffer = "unknown_offer" => NotFound,
    UnknownOrder = "unknown_order" => NotFound,
    UnknownProposal = "unknown_proposal" => NotFound,
    UnknownPushSubscription = "unknown_push_subscription" => NotFound,
    UnknownRequest = "unknown_request" => NotFound,
    UnknownRole = "unknown_role" => Invalid,
    UnknownSession = "unknown_session" => NotFound,
    UnknownShift = "unknown_shift" => Invalid,
    UnknownSite = "unknown_site" => Invalid,
    UnknownSkill = "unknown_skill" => Invalid,
    UnknownTask = "unknown_task" => NotFound,
    UnknownTeam = "unknown_team" => Invalid,
    /// Also `Invalid` where the id is input to check rather than something to find: the
    /// calls say which (`err_as`).
    UnknownUnit = "unknown_unit" => NotFound,
    UnknownWebhook = "unknown_webhook" => NotFound,

    /// Read off the wire from a node that knows a code this build does not (a newer
    /// one's); never refused with here. Its kind is the one on the wire.
    RemoteError = "remote_error" => Conflict,
}

impl Code {
    /// The code of a wire name; `RemoteError` for a name this build does not know.
    pub fn parse(name: &str) -> Code {
        use serde::de::IntoDeserializer;
        let name: serde::de::value::StrDeserializer<'_, serde::de::value::Error> = name.into_deserializer();
        Code::deserialize(name).unwrap_or(Code::RemoteError)
    }

    /// The HTTP status of its kind.
    pub fn http_status(self) -> u16 {
        self.kind().http_status()
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refusal: its kind (the status class), its code (data, matched exhaustively; the wire
/// and problem documents use `code.as_str()`), and a detail for people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct DomainError {
    pub kind: ErrorKind,
    pub code: Code,
    pub detail: String,
}

/// A refusal of the code's own kind.
pub fn err(code: Code, detail: impl Into<String>) -> DomainError {
    err_as(code.kind(), code, detail)
}

/// A refusal whose kind the call decides: the `unknown_*` codes that are `NotFound` when
/// the id is looked up in the actor's scope and `Invalid` when it is input being checked.
pub fn err_as(kind: ErrorKind, code: Code, detail: impl Into<String>) -> DomainError {
    DomainError { kind, code, detail: detail.into() }
}

/// Wire form: `{"kind":"not_found","code":"unknown_offer","detail":"…"}`.
impl Serialize for DomainError {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Wire<'a> {
            kind: ErrorKind,
            code: Code,
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
        Ok(err_as(w.kind, Code::parse(&w.code), w.detail))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_errors_round_trip_and_unknown_codes_become_remote_error() {
        for code in [Code::TextTooLong, Code::RoleNotAllowed, Code::UnknownOffer, Code::OfferExpired] {
            let e = err(code, format!("{code} happened"));
            let json = serde_json::to_string(&e).unwrap();
            let back: DomainError = serde_json::from_str(&json).unwrap_or_else(|x| panic!("{json}: {x}"));
            assert_eq!(back, e, "{json}");
            assert_eq!(back.code, code);
        }
        let json = serde_json::to_string(&err(Code::UnknownOffer, "no offer")).unwrap();
        assert_eq!(json, r#"{"kind":"not_found","code":"unknown_offer","detail":"no offer"}"#);
        let e: DomainError =
            serde_json::from_str(r#"{"kind":"conflict","code":"from_the_future","detail":"newer node"}"#).unwrap();
        assert_eq!(e, err_as(ErrorKind::Conflict, Code::RemoteError, "newer node"));
        assert_eq!(e.code.as_str(), "remote_error");
        assert!(serde_json::from_str::<DomainError>(r#"{"kind":"Conflict","code":"x","detail":""}"#).is_err());
        assert_eq!(Code::parse("no_city"), Code::NoCity);
        assert_eq!(Code::parse(""), Code::RemoteError);
    }

    #[test]
    fn every_code_is_its_serde_name_and_has_a_kind() {
        for c in Code::ALL {
            assert_eq!(serde_json::to_value(c).unwrap(), c.as_str(), "{c:?}");
            assert_eq!(Code::parse(c.as_str()), *c);
        }
        let refused = &Code::ALL[..Code::ALL.len() - 1];
        assert!(refused.windows(2).all(|w| w[0].as_str() < w[1].as_str()), "the table is sorted, once each");
        assert!(Code::ALL.len() > 60);
        assert_eq!(Code::UnknownIncident.as_str(), "unknown_incident");
        assert_eq!(Code::UnknownOffer.http_status(), 404);
        assert_eq!(Code::OfferExpired.kind(), ErrorKind::Conflict);
    }
}
