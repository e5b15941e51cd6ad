//! Answers with a client-generated id (issue 18): the member app keeps answers made while
//! offline in a queue and sends them when it reconnects, so the same answer may arrive
//! twice (the first send went through but its ok was lost with the connection). Each one
//! carries an `answer_id`; the answer's event records it (`answer_id` on `OfferAccepted`,
//! `OfferDeclined`, `MemberArrived`, `MobilizationAcknowledged`, `MobilizationReported`),
//! and a later `Command::Answer` with the same id from the same member is answered
//! `Reply::Duplicate` without being decided again, whatever happened since (the offer
//! revoked, the mobilization closed). Durable as the log is: the records are folded from
//! the events, and kept in snapshots.
//!
//! An answer that changed nothing (accepting an offer already accepted) emits no event and
//! so is not recorded: its resend is decided afresh, and changes nothing either. A refused
//! answer is not recorded either. Each member's last `KEPT_PER_MEMBER` ids are kept.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::command::{Actor, Command, Reply, acting_member};
use super::errors::{Code, DomainError, err};
use super::event::EventBody;
use super::state::State;

/// How many answer ids are kept per member (the oldest go first): far more than a member's
/// queue holds while offline.
pub const KEPT_PER_MEMBER: usize = 64;

/// The longest answer id (a UUID is 36).
pub const MAX_ID_LEN: usize = 100;

/// Member id -> (answer id, what it answered: `accept off-1`), oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Answered(pub BTreeMap<String, Vec<(String, String)>>);

impl Answered {
    fn get(&self, member_id: &str, answer_id: &str) -> Option<&str> {
        self.0.get(member_id)?.iter().find(|(id, _)| id == answer_id).map(|(_, what)| what.as_str())
    }

    fn record(&mut self, member_id: &str, answer_id: &str, what: String) {
        let kept = self.0.entry(member_id.to_string()).or_default();
        if kept.iter().any(|(id, _)| id == answer_id) {
            return;
        }
        if kept.len() >= KEPT_PER_MEMBER {
            kept.remove(0);
        }
        kept.push((answer_id.to_string(), what));
    }
}

/// Is this a valid answer id? 1 to `MAX_ID_LEN` visible ASCII characters.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_ID_LEN && id.bytes().all(|b| b.is_ascii_graphic())
}

/// What an answer command answers (`accept off-1`), or `None` for any other command.
pub fn what(cmd: &Command) -> Option<String> {
    let (kind, target) = match cmd {
        Command::Accept { offer_id } => ("accept", offer_id),
        Command::Decline { offer_id, .. } => ("decline", offer_id),
        Command::Arrive { offer_id, .. } => ("arrive", offer_id),
        Command::AcknowledgeOrder { mobilization_id } => ("mobilization_ack", mobilization_id),
        Command::ReportArrival { mobilization_id, .. } => ("mobilization_report", mobilization_id),
        _ => return None,
    };
    Some(format!("{kind} {target}"))
}

/// Before deciding `Command::Answer`: refuses a bad id or a command that is not an
/// answer, answers `Some(Reply::Duplicate)` for an id this member's same answer already
/// used, refuses an id used for another answer, and otherwise (`None`) lets it be decided.
pub(super) fn prior(
    state: &State,
    actor: &Actor,
    answer_id: &str,
    answer: &Command,
) -> Result<Option<Reply>, DomainError> {
    if !valid_id(answer_id) {
        return Err(err(Code::BadAnswerId, format!("answer_id must be 1 to {MAX_ID_LEN} visible ASCII characters")));
    }
    let Some(what) = what(answer) else {
        return Err(err(Code::BadAnswerId, format!("an answer_id goes with an answer, not with '{}'", answer.name())));
    };
    let idx = acting_member(state, actor)?;
    let member_id = &state.city.members()[idx as usize].id;
    match state.answered.get(member_id, answer_id) {
        None => Ok(None),
        Some(w) if w == what => Ok(Some(Reply::Duplicate)),
        Some(w) => Err(err(
            Code::AnswerIdReused,
            format!("answer_id '{answer_id}' was already used for '{w}'; use a new id for each answer"),
        )),
    }
}

/// Folds an answer's event (one that carries an `answer_id`) into the records.
pub(super) fn apply(state: &mut State, body: &EventBody) {
    let (member_id, answer_id, what) = match body {
        EventBody::OfferAccepted { offer_id, member_id, answer_id: Some(a), .. } => {
            (member_id, a, format!("accept {offer_id}"))
        }
        EventBody::OfferDeclined { offer_id, member_id, answer_id: Some(a), .. } => {
            (member_id, a, format!("decline {offer_id}"))
        }
        EventBody::MemberArrived { offer_id, member_id, answer_id: Some(a), .. } => {
            (member_id, a, format!("arrive {offer_id}"))
        }
        EventBody::MobilizationAcknowledged { mobilization_id, member_id, answer_id: Some(a), .. } => {
            (member_id, a, format!("mobilization_ack {mobilization_id}"))
        }
        EventBody::MobilizationReported { mobilization_id, member_id, answer_id: Some(a), .. } => {
            (member_id, a, format!("mobilization_report {mobilization_id}"))
        }
        _ => return,
    };
    state.answered.record(member_id, answer_id, what);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_keeps_the_last_ids_and_the_oldest_go_first() {
        let mut a = Answered::default();
        for i in 0..KEPT_PER_MEMBER + 2 {
            a.record("m1", &format!("a{i}"), format!("accept off-{i}"));
        }
        a.record("m1", "a5", "decline off-9".into()); // a repeat is not recorded again
        assert_eq!(a.get("m1", "a0"), None);
        assert_eq!(a.get("m1", "a1"), None);
        assert_eq!(a.get("m1", "a2"), Some("accept off-2"));
        assert_eq!(a.get("m1", "a5"), Some("accept off-5"));
        assert_eq!(a.get("m2", "a5"), None);
        assert_eq!(a.0["m1"].len(), KEPT_PER_MEMBER);
    }

    #[test]
    fn ids_are_short_visible_ascii() {
        assert!(valid_id("0b6f2c8e-1d7a-4c1e-9f00-123456789abc"));
        assert!(!valid_id(""));
        assert!(!valid_id("a b"));
        assert!(!valid_id("好"));
        assert!(!valid_id(&"x".repeat(MAX_ID_LEN + 1)));
    }
}
