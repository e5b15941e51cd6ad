//! The audit (issue 17): which logged events are decisions someone made, and the place
//! each one is about, read from the present state. Who sees an entry is
//! `scope::audit_entry`; the reading is `GET /v1/audit` (gateway::audit).

use serde_json::Value;

use super::command::Actor;
use super::event::EventBody;
use super::state::State;

/// The kinds of event the audit lists: mode switches, mobilizations ordered and closed,
/// whistles to units, transfers, registrations (members, units), ratings, exchanges, token
/// revocations, sign-in links issued and revoked, sessions ended, and outbound webhooks
/// registered, enabled, disabled (by command or for failing), re-keyed and deleted. Not the answers,
/// offers, tallies and refreshes that follow from them.
pub const KINDS: &[&str] = &[
    "mode_switched",
    "mobilization_ordered",
    "mobilization_closed",
    "units_whistled",
    "members_transferred",
    "members_registered",
    "unit_registered",
    "rated",
    "exchanged",
    "tokens_revoked",
    "invitation_issued",
    "invitation_revoked",
    "session_revoked",
    "webhook_registered",
    "webhook_enabled",
    "webhook_disabled",
    "webhook_secret_rotated",
    "webhook_deleted",
    "request_dispatched",
    "request_declined",
    "proposal_approved",
    "proposal_declined",
];

pub fn is_audit_kind(kind: &str) -> bool {
    KINDS.contains(&kind)
}

/// What an entry is about: the whole city (a city-wide mode switch), or some districts
/// and communities. Neither (a place the present state cannot tell, such as an ended
/// session's subject): only city command sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Place {
    pub city_wide: bool,
    /// Sorted, without repeats; every community's district is here.
    pub districts: Vec<String>,
    /// Sorted, without repeats.
    pub communities: Vec<String>,
}

impl Place {
    fn community(&mut self, state: &State, id: &str) {
        if let Some(&c) = state.city.community_by_id.get(id) {
            self.add_community_index(state, c);
        }
    }

    fn add_community_index(&mut self, state: &State, c: u32) {
        let Some(city) = state.city.city() else { return };
        let id = city.communities[c as usize].id.clone();
        if !self.communities.contains(&id) {
            self.communities.push(id);
        }
        self.district(state.city.district_id_of_community(c));
    }

    fn district(&mut self, id: &str) {
        if !self.districts.iter().any(|d| d == id) {
            self.districts.push(id.to_string());
        }
    }

    fn member(&mut self, state: &State, id: &str) {
        if let Some(&m) = state.city.member_by_id.get(id) {
            self.add_community_index(state, state.city.residence_community(m));
        }
    }

    /// Where a person acting (or invited, or revoked) belongs.
    fn actor(&mut self, state: &State, actor: &Actor) {
        match actor {
            Actor::Command { district: Some(d) } => self.district(d),
            Actor::Command { district: None } | Actor::System => {}
            Actor::Staff { community } => self.community(state, community),
            Actor::UnitAdmin { unit } => {
                let Some(city) = state.city.city() else { return };
                for (t, team) in city.teams.iter().enumerate() {
                    if &team.unit_id == unit {
                        self.add_community_index(state, state.city.team_community[t]);
                    }
                }
            }
            Actor::Member { member } => self.member(state, member),
            Actor::Resident { resident } => {
                if let Some(r) = state.residents.residents.get(resident) {
                    self.community(state, &r.community_id);
                }
            }
        }
    }
}

/// The actor a token subject (`Actor::label`) names, if it is one.
fn actor_of_label(label: &str) -> Option<Actor> {
    let (role, id) = label.split_once(':').unwrap_or((label, ""));
    let id = id.to_string();
    Some(match (role, id.is_empty()) {
        ("command", true) => Actor::Command { district: None },
        ("command", false) => Actor::Command { district: Some(id) },
        ("staff", false) => Actor::Staff { community: id },
        ("unit_admin", false) => Actor::UnitAdmin { unit: id },
        ("member", false) => Actor::Member { member: id },
        ("resident", false) => Actor::Resident { resident: id },
        _ => return None,
    })
}

/// The place an audit entry is about, from the present state: a district's switch is its
/// district's; a mobilization, the districts it reports into (and the communities named);
/// a whistle, its incident's community; a transfer, both communities; a registration, the
/// members' residence communities (a unit's, the community it reported to); a rating, the
/// community of the order or incident rated (else the member's residence); an exchange,
/// the member's residence; a revocation or a sign-in link, where its subject belongs.
pub fn place(state: &State, body: &EventBody) -> Place {
    let mut p = Place::default();
    match body {
        EventBody::ModeSwitched { district_id: None, .. } => p.city_wide = true,
        EventBody::ModeSwitched { district_id: Some(d), .. } => p.district(d),
        EventBody::MobilizationOrdered { mobilization_id, teams, .. } => {
            for t in teams {
                if let Some(c) = &t.community_id {
                    p.community(state, c);
                }
            }
            if let Some(m) = state.mobilizations.get(mobilization_id) {
                for d in &m.districts {
                    p.district(d);
                }
            }
        }
        EventBody::MobilizationClosed { mobilization_id, .. } => {
            if let Some(m) = state.mobilizations.get(mobilization_id) {
                for d in &m.districts {
                    p.district(d);
                }
                for &(_, c) in &m.teams {
                    if let Some(c) = c {
                        p.add_community_index(state, c);
                    }
                }
            }
        }
        EventBody::UnitsWhistled { incident_id, .. } => {
            if let Some(inc) = state.incidents.get(incident_id) {
                p.community(state, &inc.community_id);
            }
        }
        EventBody::MembersTransferred { from, to, .. } => {
            p.community(state, from);
            p.community(state, to);
        }
        EventBody::MembersRegistered { members } => {
            for m in members {
                p.member(state, &m.id);
            }
        }
        EventBody::UnitRegistered { community_id, .. } => p.community(state, community_id),
        EventBody::Rated { order_id, incident_id, member_id, .. } => {
            let order = order_id.as_ref().and_then(|o| state.orders.get(o)).map(|o| o.community);
            let incident = incident_id.as_ref().and_then(|i| state.incidents.get(i));
            match (order, incident) {
                (Some(c), _) => p.add_community_index(state, c),
                (None, Some(inc)) => p.community(state, &inc.community_id),
                (None, None) => p.member(state, member_id),
            }
        }
        EventBody::Exchanged { member_id, .. } => p.member(state, member_id),
        EventBody::TokensRevoked { subject, .. } => {
            if let Some(a) = actor_of_label(subject) {
                p.actor(state, &a);
            }
        }
        EventBody::InvitationIssued { invitee, .. } => p.actor(state, invitee),
        EventBody::InvitationRevoked { invitation_id } => {
            if let Some(inv) = state.invitations.get(invitation_id) {
                p.actor(state, &inv.invitee);
            }
        }
        EventBody::SessionRevoked { family, .. } => {
            if let Some(s) = state.sessions.get(family) {
                p.actor(state, &s.subject);
            }
        }
        EventBody::WebhookRegistered { district_id, .. }
        | EventBody::WebhookEnabled { district_id, .. }
        | EventBody::WebhookDisabled { district_id, .. }
        | EventBody::WebhookSecretRotated { district_id, .. }
        | EventBody::WebhookDeleted { district_id, .. } => {
            if let Some(d) = district_id {
                p.district(d);
            }
        }
        EventBody::Residents { event } => {
            use super::residents_data::ResidentEvent as R;
            match &**event {
                R::RequestDispatched { request_id, .. } | R::RequestDeclined { request_id, .. } => {
                    if let Some(r) = state.residents.requests.get(request_id) {
                        p.community(state, &r.community_id);
                    }
                }
                R::ProposalApproved { proposal_id, .. } | R::ProposalDeclined { proposal_id, .. } => {
                    if let Some(x) = state.residents.proposals.get(proposal_id) {
                        p.community(state, &x.community_id);
                    }
                }
                _ => {}
            }
        }
        _ => {}
    }
    p.districts.sort();
    p.communities.sort();
    p
}

/// What a district's command is shown of an entry it sees (`scope::audit_entry`): the
/// place cut to its district, and of an entry about several districts, its part (the teams
/// of a mobilization reporting into it, the members registered living in it), as a
/// mobilization's view is cut (`scope::mobilization_part`). Everyone else: all of it.
pub fn part_for(state: &State, actor: &Actor, body: &EventBody, place: &mut Place) -> EventBody {
    let Actor::Command { district: Some(d) } = actor else { return body.clone() };
    let in_district = |c: u32| state.city.district_id_of_community(c) == d;
    let community_in = |id: &str| state.city.community_by_id.get(id).is_some_and(|&c| in_district(c));
    place.districts.retain(|x| x == d);
    place.communities.retain(|c| community_in(c));
    match body {
        EventBody::MobilizationOrdered { mobilization_id, teams, site, deadline, note } => {
            let team_in = |t: &super::event::TeamOrder| match &t.community_id {
                Some(c) => community_in(c),
                None => state.city.city().is_some_and(|city| {
                    city.teams
                        .iter()
                        .position(|x| x.id == t.team_id)
                        .is_some_and(|i| in_district(state.city.team_community[i]))
                }),
            };
            EventBody::MobilizationOrdered {
                mobilization_id: mobilization_id.clone(),
                teams: teams.iter().filter(|t| team_in(t)).cloned().collect(),
                site: site.clone(),
                deadline: *deadline,
                note: note.clone(),
            }
        }
        EventBody::MembersRegistered { members } => EventBody::MembersRegistered {
            members: members
                .iter()
                .filter(|m| {
                    state.city.member_by_id.get(&m.id).is_some_and(|&i| in_district(state.city.residence_community(i)))
                })
                .cloned()
                .collect(),
        },
        other => other.clone(),
    }
}

/// One line saying what was decided (English, for people and the CSV).
pub fn summary(body: &EventBody) -> String {
    let name = |v: &dyn erased::Named| v.name();
    match body {
        EventBody::ModeSwitched { district_id, mode, reason } => {
            format!("{} → {}: {reason}", district_id.as_deref().unwrap_or("city"), name(mode))
        }
        EventBody::MobilizationOrdered { mobilization_id, teams, .. } => {
            format!("{mobilization_id}: {} team(s) ordered", teams.len())
        }
        EventBody::MobilizationClosed { mobilization_id, reason } => format!("{mobilization_id} closed: {reason}"),
        EventBody::UnitsWhistled { incident_id, units, .. } => format!("{incident_id}: {}", units.join(", ")),
        EventBody::MembersTransferred { from, to, members } => format!("{} member(s) {from} → {to}", members.len()),
        EventBody::MembersRegistered { members } => {
            let ids: Vec<&str> = members.iter().take(5).map(|m| m.id.as_str()).collect();
            let more = if members.len() > 5 { ", …" } else { "" };
            format!("{} member(s): {}{more}", members.len(), ids.join(", "))
        }
        EventBody::UnitRegistered { unit_id, community_id } => format!("{unit_id} at {community_id}"),
        EventBody::Rated { member_id, rating, points, .. } => {
            format!("{member_id}: {}, {points} point(s)", name(rating))
        }
        EventBody::Exchanged { member_id, from, amount, .. } => format!("{member_id}: {amount} {}", name(from)),
        EventBody::TokensRevoked { subject, .. } => format!("tokens of {subject}"),
        EventBody::InvitationIssued { invitation_id, invitee, .. } => {
            format!("{invitation_id} for {}", invitee.label())
        }
        EventBody::InvitationRevoked { invitation_id } => invitation_id.clone(),
        EventBody::SessionRevoked { reason, .. } => format!("a session ended: {}", name(reason)),
        EventBody::WebhookRegistered { webhook_id, url, .. } => format!("{webhook_id}: {}", redact_url(url)),
        EventBody::WebhookDisabled { webhook_id, reason, .. } => format!("{webhook_id} disabled: {reason}"),
        EventBody::WebhookEnabled { webhook_id, .. }
        | EventBody::WebhookSecretRotated { webhook_id, .. }
        | EventBody::WebhookDeleted { webhook_id, .. } => webhook_id.clone(),
        other => other.kind().to_string(),
    }
}

/// The event's fields as the audit shows them: without its `type`, times as RFC 3339,
/// and without the hashes of sign-in codes and refresh credentials.
pub fn data(body: &EventBody) -> Value {
    // A nested feature's event (`{"type":"residents","event":{"op":..}}`) shows its fields.
    let mut v = match body {
        EventBody::Residents { event } => serde_json::to_value(event).unwrap_or(Value::Null),
        _ => serde_json::to_value(body).unwrap_or(Value::Null),
    };
    if let Some(map) = v.as_object_mut() {
        map.remove("op");
        // Never a resident's phone, should a decision ever carry one.
        map.remove("phone");
    }
    if let Some(map) = v.as_object_mut() {
        map.remove("type");
        map.remove("code_hash");
        map.remove("refresh_hash");
        map.remove("secret");
        if let Some(url) = map.get("url").and_then(Value::as_str) {
            let url = redact_url(url);
            map.insert("url".into(), url.into());
        }
        for key in ["deadline", "expires_at"] {
            if let Some(t) = map.get(key).and_then(Value::as_i64) {
                map.insert(key.into(), super::time::rfc3339(t).into());
            }
        }
    }
    v
}

/// A webhook URL without what may be a credential in it (user info, the query): the
/// scheme, host and path.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let rest = rest.split(['?', '#']).next().unwrap_or("");
    let rest = match rest.split_once('/') {
        Some((auth, path)) => format!("{}/{path}", auth.rsplit('@').next().unwrap_or(auth)),
        None => rest.rsplit('@').next().unwrap_or(rest).to_string(),
    };
    format!("{scheme}://{rest}")
}

/// The snake_case name a unit-like enum serializes to.
mod erased {
    pub trait Named {
        fn name(&self) -> String;
    }
    impl<T: serde::Serialize> Named for T {
        fn name(&self) -> String {
            match serde_json::to_value(self) {
                Ok(serde_json::Value::String(s)) => s,
                Ok(other) => other.to_string(),
                Err(_) => String::new(),
            }
        }
    }
}
