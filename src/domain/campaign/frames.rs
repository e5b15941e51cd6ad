//! The frames a campaign's events make, and the no-show deadlines a published roster sets.
//!
//! - `campaign.shift` to `member:<id>`: a shift of theirs `assigned`, `changed` (another
//!   site or role in the same shift) or `removed`, from the difference between the roster
//!   before and after a publish; with the site, the time and the role.
//! - `campaign.progress` to `city` and the campaign's `district:<id>` (and, for a member's
//!   answer, to the site's `community:<id>`): a roster published (filled, changed,
//!   missing), no-shows found, a member's acknowledgement, check-in or check-out.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::super::event::{Frame, stream};
use super::super::state::{Deadline, State};
use super::super::time::{Ts, rfc3339};
use super::model::{Campaign, CampaignEvent, Published};

/// Per member, per shift id: the requirement they hold there.
fn assignments<'c>(c: &'c Campaign, p: Option<&'c Published>) -> BTreeMap<&'c str, BTreeMap<&'c str, usize>> {
    let mut out: BTreeMap<&str, BTreeMap<&str, usize>> = BTreeMap::new();
    let Some(p) = p else { return out };
    for (ri, ms) in p.slots.iter().enumerate() {
        let Some(r) = c.requirements.get(ri) else { continue };
        for &m in ms {
            if let Some(id) = p.members.get(m as usize) {
                out.entry(id.as_str()).or_default().insert(r.shift_id.as_str(), ri);
            }
        }
    }
    out
}

fn shift_frame(c: &Campaign, shift_id: &str, ri: usize, change: &str) -> Value {
    let r = &c.requirements[ri];
    let shift = c.shift(shift_id).map(|s| &c.shifts[s]);
    let site = c.site(&r.site_id).map(|s| &c.sites[s]);
    json!({
        "campaign_id": c.id,
        "campaign_name": c.name,
        "shift_id": shift_id,
        "change": change,
        "start": shift.map(|s| rfc3339(s.start)),
        "end": shift.map(|s| rfc3339(s.end)),
        "role": r.role,
        "site": site.map(|s| json!({"id": s.id, "name": s.name, "location": s.position, "community_id": s.community_id})),
    })
}

/// The `campaign.shift` frames of a publish: what changed for each member.
fn roster_changes(c: &Campaign, before: Option<&Published>) -> Vec<(String, Value)> {
    let old = assignments(c, before);
    let new = assignments(c, c.roster.as_ref());
    let empty = BTreeMap::new();
    let mut out = Vec::new();
    let members: std::collections::BTreeSet<&str> = old.keys().chain(new.keys()).copied().collect();
    for m in members {
        let (o, n) = (old.get(m).unwrap_or(&empty), new.get(m).unwrap_or(&empty));
        for (&shift, &ri) in n {
            match o.get(shift) {
                None => out.push((m.to_string(), shift_frame(c, shift, ri, "assigned"))),
                Some(&was) if was != ri => out.push((m.to_string(), shift_frame(c, shift, ri, "changed"))),
                Some(_) => {}
            }
        }
        for (&shift, &ri) in o {
            if !n.contains_key(shift) {
                out.push((m.to_string(), shift_frame(c, shift, ri, "removed")));
            }
        }
    }
    out
}

/// Sets the no-show deadline of every shift of a published roster that ends after the
/// publish (`at`) and has not been checked yet; the deadline fires once per shift
/// (`no_show_checked`), so a replay that sets it again finds it done.
fn set_deadlines(state: &mut State, campaign_id: &str, at: Ts) {
    let Some(c) = state.campaigns.get(campaign_id) else { return };
    let Some(after) = c.no_show_after_s else { return };
    let due: Vec<(Ts, Deadline)> = c
        .shifts
        .iter()
        .filter(|s| s.end > at && !c.no_show_checked.contains(&s.id))
        .map(|s| (s.start + after as i64 * 1000, Deadline::CampaignShift(c.id.clone(), s.id.clone())))
        .collect();
    state.deadlines.extend(due);
}

/// The frames of an applied campaign event (`before`: the roster it replaced, for a publish).
pub(super) fn frames(state: &mut State, e: &CampaignEvent, at: Ts, before: Option<&Published>, out: &mut Vec<Frame>) {
    let Some(c) = state.campaigns.get(e.campaign_id()) else { return };
    let mut member_frames = Vec::new();
    let mut community = None;
    let progress = match e {
        CampaignEvent::RosterPublished { .. } => {
            member_frames = roster_changes(c, before);
            let p = c.roster.as_ref();
            let filled: usize = p.map_or(0, |p| p.slots.iter().map(Vec::len).sum());
            let missing: u32 = p.map_or(0, |p| p.shortfall.iter().map(|s| s.1).sum());
            Some(json!({"campaign_id": c.id, "op": "roster_published", "version": p.map(|p| p.version),
                "filled": filled, "missing": missing, "changed": p.map(|p| p.changed)}))
        }
        CampaignEvent::NoShows { shift_id, members, .. } => {
            Some(json!({"campaign_id": c.id, "op": "no_shows", "shift_id": shift_id, "members": members}))
        }
        CampaignEvent::Acknowledged { shift_id, member_id, .. }
        | CampaignEvent::CheckedIn { shift_id, member_id, .. }
        | CampaignEvent::CheckedOut { shift_id, member_id, .. } => {
            let op = match e {
                CampaignEvent::Acknowledged { .. } => "acknowledged",
                CampaignEvent::CheckedIn { .. } => "checked_in",
                _ => "checked_out",
            };
            let site = assignments(c, c.roster.as_ref())
                .get(member_id.as_str())
                .and_then(|s| s.get(shift_id.as_str()).copied())
                .and_then(|ri| c.site(&c.requirements[ri].site_id))
                .map(|s| &c.sites[s]);
            community = site.and_then(|s| s.community_id.clone());
            Some(json!({"campaign_id": c.id, "op": op, "shift_id": shift_id, "member_id": member_id,
                "site_id": site.map(|s| s.id.clone())}))
        }
        CampaignEvent::Closed { .. } => Some(json!({"campaign_id": c.id, "op": "closed"})),
        _ => None,
    };
    let district = c.district_id.clone();
    let campaign_id = c.id.clone();
    if matches!(e, CampaignEvent::RosterPublished { .. }) {
        set_deadlines(state, &campaign_id, at);
    }
    for (m, data) in member_frames {
        state.push_frame(out, stream::member(&m), "campaign.shift", data);
    }
    if let Some(p) = progress {
        let p = std::sync::Arc::new(p);
        let streams = std::iter::once(stream::CITY.to_string())
            .chain(district.as_deref().map(stream::district))
            .chain(community.as_deref().map(stream::community));
        for s in streams {
            state.push_frame(out, s, "campaign.progress", p.clone());
        }
    }
}
