//! The kernel: the one rule of change, and the two matches that route to the features.
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
//!
//! Here are only `execute` (which command goes to which feature: `incidents`, `wartime`,
//! `service`, `access`), `tick` (which deadline goes where), `apply` (which event goes where), the
//! city import and the few member and token arms of their own. The features depend on
//! `state`, `command` and `errors`, never on this file; this file depends on them.
//!
//! The names other code has always imported from here (`dispatcher::{State, Command,
//! DomainError, rfc3339, …}`) are re-exported below.

use std::collections::BTreeSet;

use serde_json::json;

use super::access;
use super::answers;
use super::campaign;
use super::command::{Answer, Tx, acting_member};
use super::errors::err;
use super::event::{Event, EventBody, Frame, RevokeReason, stream};
use super::incidents;
use super::matching::Roster;
use super::org::{City, CityIndex};
use super::push;
use super::residents;
use super::response::Rules;
use super::scope;
use super::service;
use super::service_data::OrderStatus;
use super::wartime;
use super::webhooks;

pub use super::command::{Actor, Command, Outcome, RaiseIncident, Reply};
pub use super::errors::{Code, DomainError, ErrorKind};
pub use super::incidents::summary;
pub use super::state::{Deadline, FrameFilter, State, is_revoked};
use super::time::Ts;
pub use super::time::rfc3339;

/// Validates and carries out one command. On error nothing has changed.
pub fn execute(state: &mut State, rules: &Rules, actor: &Actor, cmd: Command, now: Ts) -> Result<Outcome, DomainError> {
    // An answer with the client's id: decided once (`answers`), then as the answer itself.
    let (cmd, answer_id) = match cmd {
        Command::Answer { answer_id, answer } => match answers::prior(state, actor, &answer_id, &answer)? {
            Some(reply) => return Ok(Outcome { reply: Some(reply), ..Outcome::default() }),
            None => (*answer, Some(answer_id)),
        },
        cmd => (cmd, None),
    };
    let mut tx = Tx::new(state, rules, actor.label(), now, apply);
    tx.answer_id = answer_id;
    let reply = match cmd {
        Command::ImportCity(city) => import_city(&mut tx, actor, *city)?,
        Command::Raise(r) => incidents::raise(&mut tx, actor, r)?,
        Command::Escalate { incident_id } => incidents::escalate(&mut tx, actor, &incident_id)?,
        Command::Resolve { incident_id, note } => {
            incidents::conclude(&mut tx, actor, &incident_id, RevokeReason::Resolved, note)?
        }
        Command::Cancel { incident_id, reason } => {
            incidents::conclude(&mut tx, actor, &incident_id, RevokeReason::Cancelled, reason)?
        }
        Command::Accept { offer_id } => incidents::answer(&mut tx, actor, &offer_id, Answer::Accept)?,
        Command::Decline { offer_id, reason } => incidents::decline(&mut tx, actor, &offer_id, reason)?,
        Command::Arrive { offer_id, position } => {
            incidents::answer(&mut tx, actor, &offer_id, Answer::Arrive(position))?
        }
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
            let id = incidents::visible_incident(tx.state, actor, &incident_id)?;
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
                return Err(err(Code::InvalidSubject, "name a token subject, e.g. member:m00001"));
            }
            tx.emit(EventBody::TokensRevoked { subject, before_s: (now / 1000).max(0) as u64 });
            Reply::Done
        }
        Command::Invite { invitations } => access::invite(&mut tx, actor, invitations)?,
        Command::RevokeInvitation { invitation_id } => access::revoke_invitation(&mut tx, actor, &invitation_id)?,
        Command::Redeem { code_hash, family, refresh_hash, device, ttl_s } => {
            access::redeem(&mut tx, &code_hash, &family, &refresh_hash, &device, ttl_s)?
        }
        Command::Refresh { family, presented_hash, refresh_hash, ttl_s } => {
            access::refresh(&mut tx, &family, &presented_hash, &refresh_hash, ttl_s)?
        }
        Command::SignOut { family, refresh_hash } => {
            access::sign_out(&mut tx, actor, &family, refresh_hash.as_deref())?
        }
        Command::RevokeSession { family } => access::revoke_session(&mut tx, actor, &family)?,
        Command::RegisterWebhook { url, types, district_id, secret } => {
            webhooks::register(&mut tx, actor, url, types, district_id, secret)?
        }
        Command::SetWebhook { webhook_id, active, reason } => {
            webhooks::set_active(&mut tx, actor, &webhook_id, active, reason)?
        }
        Command::DeleteWebhook { webhook_id } => webhooks::delete(&mut tx, actor, &webhook_id)?,
        Command::RotateWebhookSecret { webhook_id, secret } => webhooks::rotate(&mut tx, actor, &webhook_id, secret)?,
        Command::Campaign { action } => campaign::handle::execute(&mut tx, actor, *action)?,
        Command::PushSubscribe { endpoint, p256dh, auth } => push::subscribe(&mut tx, actor, endpoint, p256dh, auth)?,
        Command::PushUnsubscribe { subscription_id, reason } => {
            push::unsubscribe(&mut tx, actor, &subscription_id, reason)?
        }
        Command::PushRecord { attempts } => push::record(&mut tx, actor, attempts)?,
        Command::Residents { action } => residents::execute(&mut tx, actor, *action)?,
        Command::Tick => {
            tick(&mut tx);
            Reply::Done
        }
        Command::Tally => wartime::tally(&mut tx),
        Command::Answer { .. } => unreachable!("an answer is unwrapped above, and `answers::prior` refuses one inside"),
    };
    debug_assert!(tx.state.roster.hot_in_step(), "Roster::hot drifted from MemberRt");
    Ok(tx.finish(reply))
}

fn import_city(tx: &mut Tx<'_>, actor: &Actor, city: City) -> Result<Reply, DomainError> {
    scope::require(actor, scope::Action::ImportCity)?;
    if let Some(open) = tx.state.incidents.values().find(|i| !i.status.is_closed()) {
        return Err(err(
            Code::OpenIncidents,
            format!("incident {} is still open; resolve or cancel every incident before importing a city", open.id),
        ));
    }
    if let Some(m) = tx.state.mobilizations.values().find(|m| m.is_open()) {
        return Err(err(
            Code::OpenMobilizations,
            format!("mobilization {} is still open; close every mobilization before importing a city", m.id),
        ));
    }
    for m in &city.members {
        if let Some(s) = m.skills.iter().find(|s| !tx.rules.has_skill(s)) {
            return Err(err(
                Code::UnknownSkill,
                format!("member '{}' has skill '{s}', which is not in the catalog", m.id),
            ));
        }
    }
    let index = CityIndex::build(city.clone()).map_err(|e| err(Code::InvalidCity, e.0))?;
    if let Some(o) = tx
        .state
        .orders
        .values()
        .find(|o| o.status != OrderStatus::Cancelled && !index.grid_flat.contains_key(&o.grid_id))
    {
        return Err(err(
            Code::OpenOrders,
            format!("order {} is in grid {}, which the new city drops; cancel it first", o.id, o.grid_id),
        ));
    }
    tx.emit(EventBody::CityImported { city: Box::new(city) });
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
                if let Some(incident_id) = incidents::offer_deadline(tx, &offer_id, at) {
                    refill.insert(incident_id);
                }
            }
            Deadline::Escalation(incident_id) => incidents::escalation_deadline(tx, &incident_id, at),
            Deadline::Retry(incident_id) => {
                tx.state.retrying.remove(&incident_id);
                refill.insert(incident_id);
            }
            Deadline::Mobilization(id) => wartime::mobilization_deadline(tx, &id, at),
            Deadline::Whistle(incident_id, whistle_id) => wartime::whistle_deadline(tx, &incident_id, &whistle_id),
            Deadline::CampaignShift(campaign_id, shift_id) => {
                campaign::serve::no_show_deadline(tx, &campaign_id, &shift_id)
            }
        }
    }
    for id in refill {
        incidents::refill(tx, &id);
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
    answers::apply(state, &event.body);
    let mut frames = Vec::new();
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
        EventBody::IncidentRaised { .. }
        | EventBody::OfferSent { .. }
        | EventBody::OfferAccepted { .. }
        | EventBody::OfferDeclined { .. }
        | EventBody::OfferExpired { .. }
        | EventBody::OfferRevoked { .. }
        | EventBody::MemberArrived { .. }
        | EventBody::IncidentFilled { .. }
        | EventBody::IncidentEscalated { .. }
        | EventBody::WhistleBlown { .. }
        | EventBody::IncidentResolved { .. }
        | EventBody::IncidentCancelled { .. } => incidents::apply(state, event, &mut frames),
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
        | EventBody::Exchanged { .. } => {
            service::apply(state, event, &mut frames);
            residents::follow_order(state, &event.body, &mut frames);
        }
        EventBody::TokensRevoked { subject, before_s } => {
            std::sync::Arc::make_mut(&mut state.revoked).insert(subject.clone(), *before_s);
            access::tokens_revoked(state, subject, *before_s);
        }
        EventBody::InvitationIssued { .. }
        | EventBody::InvitationRedeemed { .. }
        | EventBody::InvitationRevoked { .. }
        | EventBody::SessionRefreshed { .. }
        | EventBody::SessionRevoked { .. } => access::apply(state, event),
        EventBody::WebhookRegistered { .. }
        | EventBody::WebhookEnabled { .. }
        | EventBody::WebhookDisabled { .. }
        | EventBody::WebhookSecretRotated { .. }
        | EventBody::WebhookDeleted { .. } => {
            webhooks::apply(state, event.seq, event.at, &event.actor, &event.body, &mut frames)
        }
        EventBody::Campaign { event: e } => campaign::handle::apply(state, e, event.at, &mut frames),
        EventBody::PushSubscribed { .. } | EventBody::PushUnsubscribed { .. } | EventBody::PushAttempted(_) => {
            push::apply(state, event.at, &event.body)
        }
        EventBody::Residents { event: e } => residents::apply(state, event, e, &mut frames),
        EventBody::DutyChanged { member_id, on_call } => {
            let idx = state.city.member_by_id[member_id];
            state.roster.edit(idx, |m| m.on_call = *on_call);
            state.push_frame(&mut frames, stream::member(member_id), "duty", json!({"on_call": on_call}));
        }
    }
    frames
}
