//! The member's side of a campaign: acknowledging a shift of theirs, checking in and out
//! at its site (geofenced like an incident arrival: within `dispatch.geofence_m`). A
//! member sees a campaign only while rostered in it; any other answers as unknown.

use super::super::command::{Actor, Reply, Tx};
use super::super::errors::{Code, DomainError, ErrorKind, err, err_as};
use super::super::event::EventBody;
use super::super::geo::Position;
use super::super::scope::{self, Action};
use super::super::time::Ts;
use super::model::{Campaign, CampaignEvent, Site};
use super::view::shifts_of;

/// A check-in counts from this long before a shift's start until its end.
pub const CHECKIN_EARLY_MS: i64 = 2 * 3_600_000;

/// The campaign, the site and the shift's start and end of a member's shift, or the
/// refusal: a campaign they are not rostered in is unknown, as is a shift not theirs.
pub fn my_shift<'s>(c: &'s Campaign, member: &str, shift_id: &str) -> Result<(&'s Site, Ts, Ts), DomainError> {
    let mine = shifts_of(c, member);
    if mine.is_empty() {
        return Err(err_as(ErrorKind::NotFound, Code::UnknownCampaign, format!("campaign '{}' not found", c.id)));
    }
    mine.into_iter()
        .find(|&(_, s)| c.shifts[s].id == shift_id)
        .and_then(|(r, s)| {
            let site = c.site(&c.requirements[r].site_id)?;
            Some((&c.sites[site], c.shifts[s].start, c.shifts[s].end))
        })
        .ok_or_else(|| {
            err_as(ErrorKind::NotFound, Code::UnknownShift, format!("shift '{shift_id}' is not one of yours"))
        })
}

fn unknown(id: &str) -> DomainError {
    err_as(ErrorKind::NotFound, Code::UnknownCampaign, format!("campaign '{id}' not found"))
}

/// How a member answers a shift.
pub enum Answer {
    Acknowledge,
    CheckIn(Position),
    CheckOut(Position),
}

pub(in crate::domain) fn answer(
    tx: &mut Tx<'_>,
    actor: &Actor,
    campaign_id: String,
    shift_id: String,
    answer: Answer,
) -> Result<Reply, DomainError> {
    scope::require(actor, Action::ServeCampaign)?;
    let Actor::Member { member } = actor else { return Err(err(Code::MembersOnly, "members answer their shifts")) };
    let c = tx.state.campaigns.get(&campaign_id).ok_or_else(|| unknown(&campaign_id))?;
    let (site, start, end) = my_shift(c, member, &shift_id)?;
    if c.closed {
        return Err(err(Code::CampaignClosed, format!("campaign '{campaign_id}' is closed")));
    }
    let att = c.attendance(&shift_id, member).cloned().unwrap_or_default();
    let member_id = member.clone();
    let e = match answer {
        Answer::Acknowledge => {
            if att.acknowledged_at.is_some() {
                return Ok(Reply::Done);
            }
            CampaignEvent::Acknowledged { campaign_id, shift_id, member_id }
        }
        Answer::CheckIn(position) | Answer::CheckOut(position) => {
            let out = matches!(answer, Answer::CheckOut(_));
            let in_window = (start - CHECKIN_EARLY_MS..end).contains(&tx.now);
            if !out && !in_window {
                return Err(err(Code::BadWindow, "check in from 2 hours before the shift starts until it ends"));
            }
            match (out, att.checkin_at, att.checkout_at) {
                (false, Some(_), _) => return Err(err(Code::AlreadyCheckedIn, "you have checked in already")),
                (true, None, _) => return Err(err(Code::NotCheckedIn, "check in before you check out")),
                (true, _, Some(_)) => return Err(err(Code::AlreadyCheckedOut, "you have checked out already")),
                _ => {}
            }
            let distance_m = position.distance_m(site.position);
            if distance_m > tx.rules.geofence_m {
                return Err(err(
                    Code::OutsideGeofence,
                    format!(
                        "you are {distance_m:.0} m from the site; check-in and check-out count within {:.0} m",
                        tx.rules.geofence_m
                    ),
                ));
            }
            let distance_m = (distance_m * 10.0).round() / 10.0;
            if out {
                CampaignEvent::CheckedOut { campaign_id, shift_id, member_id, position, distance_m }
            } else {
                CampaignEvent::CheckedIn { campaign_id, shift_id, member_id, position, distance_m }
            }
        }
    };
    tx.emit(EventBody::Campaign { event: Box::new(e) });
    Ok(Reply::Done)
}

/// A shift's no-show deadline: members rostered in it and not checked in are no-shows,
/// replaced at once by a re-roster (`handle::replace`), whose `campaign.shift` frames tell
/// the replacements. Fires once per shift (`no_show_checked`); nothing when everyone came.
pub(in crate::domain) fn no_show_deadline(tx: &mut Tx<'_>, campaign_id: &str, shift_id: &str) {
    let Some(c) = tx.state.campaigns.get(campaign_id) else { return };
    let (Some(p), Some(si)) = (&c.roster, c.shift(shift_id)) else { return };
    if c.closed || c.no_show_checked.contains(shift_id) {
        return;
    }
    let mut missing: Vec<String> = super::handle::rostered_in(c, p, si)
        .into_iter()
        .filter(|m| c.attendance(shift_id, m).is_none_or(|a| a.checkin_at.is_none()))
        .map(str::to_string)
        .collect();
    if missing.is_empty() {
        return;
    }
    missing.sort();
    super::handle::replace(tx, campaign_id, si, missing, true);
}
