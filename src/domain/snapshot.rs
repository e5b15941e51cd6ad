//! Snapshots: the state at a seq, serialized, so that a restart or a new node restores it
//! and replays only the events after it instead of the whole log.
//!
//! A snapshot holds what the log has decided (incidents, offers, mobilizations, orders,
//! members' duty, workload and ledgers, stream seqs, deadlines, 平战 mode, sign-in links
//! and open sessions, webhook endpoints, campaigns with their published rosters, members'
//! answer ids lately) and the city as
//! last imported or registered into. What is derived is not in it and is rebuilt on
//! restore: the city's lookup tables (`CityIndex::build`), `invitation_by_code`, the
//! spatial index and the hot
//! entries of the roster, `offer_index`, `Incident::offered`, `Mobilization::by_member`, `State::untallied`.
//! Soft state is left out as after any restart: retries (`Deadline::Retry`) are
//! re-armed by the engine. Positions are in it as the snapshotting node knew them; the
//! engine then lays the stored positions over them, as after a replay.
//!
//! The encoding is JSON with sorted maps, so one state always gives the same bytes. A
//! snapshot of another `FORMAT` is not read: the engine replays the log from the start.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::access::{Invitation, Session};
use super::event::{Mode, Ts};
use super::incident::Incident;
use super::matching::{MemberRt, Roster};
use super::mobilization::Mobilization;
use super::org::{City, CityIndex};
use super::service_data::ServiceOrder;
use super::state::{Deadline, State};

/// Bumped whenever the shape below (or of any type in it) changes so that an older snapshot
/// would be read wrong. A field added with its empty default (`Mobilization::untallied`:
/// a snapshot before it had nothing untallied) reads older snapshots right and keeps it.
pub const FORMAT: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot format {0}, this build reads {FORMAT}")]
    Format(u32),
    #[error("snapshot unreadable: {0}")]
    Decode(String),
}

#[derive(Serialize, Deserialize)]
struct Body {
    format: u32,
    seq: u64,
    city: Option<std::sync::Arc<City>>,
    /// In the city's member order.
    members: Vec<MemberRt>,
    incidents: Vec<Incident>,
    idempotency: BTreeMap<String, String>,
    streams: BTreeMap<String, u64>,
    incidents_raised: u64,
    offers_sent: u64,
    deadlines: Vec<(Ts, Deadline)>,
    city_mode: Mode,
    wartime_districts: BTreeSet<String>,
    mobilizations: Vec<Mobilization>,
    mobilizations_ordered: u64,
    whistles_blown: u64,
    orders: Vec<ServiceOrder>,
    orders_posted: u64,
    unit_registrations: BTreeSet<(String, String)>,
    revoked: BTreeMap<String, u64>,
    /// Absent before sign-in links existed: none then.
    #[serde(default)]
    invitations: Vec<Invitation>,
    #[serde(default)]
    invitations_issued: u64,
    #[serde(default)]
    sessions: Vec<Session>,
    /// Absent before outbound webhooks existed: none then.
    #[serde(default)]
    webhooks: Vec<super::webhooks::Endpoint>,
    #[serde(default)]
    webhooks_registered: u64,
    /// Campaigns, with their published rosters (absent in a snapshot taken before them).
    #[serde(default)]
    campaigns: Vec<super::campaign::Campaign>,
    #[serde(default)]
    campaigns_created: u64,
    /// Web Push subscriptions and the pushes confirmed lately (absent before them).
    #[serde(default)]
    push_subscriptions: Vec<super::push::Subscription>,
    #[serde(default)]
    push_delivered: Vec<(String, super::time::Ts)>,
    /// Residents, requests and proposals (issue #20; absent before them).
    #[serde(default)]
    residents: super::residents_data::Residents,
    /// Members' answer ids lately (issue 18; absent before them).
    #[serde(default)]
    answered: super::answers::Answered,
}

/// The state at its `last_seq`, encoded.
pub fn encode(state: &State) -> Vec<u8> {
    let sorted = |m: &std::collections::HashMap<String, String>| -> BTreeMap<String, String> {
        m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    };
    let body = Body {
        format: FORMAT,
        seq: state.last_seq,
        city: state.city.city.clone(),
        members: state.roster.members.clone(),
        incidents: state.incidents.values().cloned().collect(),
        idempotency: sorted(&state.idempotency),
        streams: state.streams.iter().map(|(k, v)| (k.clone(), *v)).collect(),
        incidents_raised: state.incidents_raised,
        offers_sent: state.offers_sent,
        deadlines: state.deadlines.iter().filter(|(_, d)| !matches!(d, Deadline::Retry(_))).cloned().collect(),
        city_mode: state.city_mode,
        wartime_districts: state.wartime_districts.clone(),
        mobilizations: state.mobilizations.values().cloned().collect(),
        mobilizations_ordered: state.mobilizations_ordered,
        whistles_blown: state.whistles_blown,
        orders: state.orders.values().cloned().collect(),
        orders_posted: state.orders_posted,
        unit_registrations: state.unit_registrations.clone(),
        revoked: state.revoked.iter().map(|(k, v)| (k.clone(), *v)).collect(),
        invitations: state.invitations.values().cloned().collect(),
        invitations_issued: state.invitations_issued,
        sessions: state.sessions.values().cloned().collect(),
        webhooks: state.webhooks.values().cloned().collect(),
        webhooks_registered: state.webhooks_registered,
        campaigns: state.campaigns.values().cloned().collect(),
        campaigns_created: state.campaigns_created,
        push_subscriptions: state.push.subs.values().cloned().collect(),
        push_delivered: {
            let mut d: Vec<(String, super::time::Ts)> =
                state.push.delivered.iter().map(|(k, v)| (k.clone(), *v)).collect();
            d.sort();
            d
        },
        residents: state.residents.clone(),
        answered: state.answered.clone(),
    };
    serde_json::to_vec(&body).expect("a state serializes")
}

/// The seq a snapshot was taken at, without restoring it.
pub fn seq_of(bytes: &[u8]) -> Result<u64, SnapshotError> {
    #[derive(Deserialize)]
    struct Head {
        format: u32,
        seq: u64,
    }
    let head: Head = serde_json::from_slice(bytes).map_err(|e| SnapshotError::Decode(e.to_string()))?;
    if head.format != FORMAT {
        return Err(SnapshotError::Format(head.format));
    }
    Ok(head.seq)
}

/// The state a snapshot holds, with everything derived rebuilt.
pub fn decode(bytes: &[u8]) -> Result<State, SnapshotError> {
    let body: Body = match serde_json::from_slice(bytes) {
        Ok(body) => body,
        // Another format may not even parse as this one: say which it is.
        Err(e) => return Err(seq_of(bytes).err().unwrap_or(SnapshotError::Decode(e.to_string()))),
    };
    if body.format != FORMAT {
        return Err(SnapshotError::Format(body.format));
    }
    let bad = |what: String| SnapshotError::Decode(what);
    let mut state = State::default();
    if let Some(city) = body.city {
        state.city =
            CityIndex::build(std::sync::Arc::unwrap_or_clone(city)).map_err(|e| bad(format!("its city: {e}")))?;
    }
    if body.members.len() != state.city.members().len() {
        return Err(bad(format!("{} members for a city of {}", body.members.len(), state.city.members().len())));
    }
    state.roster = Roster::from_city(&state.city);
    for (i, m) in body.members.into_iter().enumerate() {
        let i = i as u32;
        state.roster.move_to(i, m.position);
        state.roster.edit(i, |rt| *rt = MemberRt { cell: rt.cell, ..m });
    }
    for mut inc in body.incidents {
        inc.offered = inc.offers.iter().map(|o| o.member).collect();
        for o in &inc.offers {
            state.offer_index.insert(o.id.clone(), inc.id.clone());
        }
        state.incidents.insert(inc.id.clone(), inc);
    }
    for mut m in body.mobilizations {
        m.by_member = m.orders.iter().enumerate().map(|(i, o)| (o.member, i)).collect();
        if !m.untallied.is_empty() {
            state.untallied.insert(m.id.clone());
        }
        state.mobilizations.insert(m.id.clone(), m);
    }
    state.orders = body.orders.into_iter().map(|o| (o.id.clone(), o)).collect();
    state.idempotency = body.idempotency.into_iter().collect();
    state.streams = body.streams.into_iter().collect();
    state.revoked = std::sync::Arc::new(body.revoked.into_iter().collect());
    state.deadlines = body.deadlines.into_iter().collect();
    state.last_seq = body.seq;
    state.incidents_raised = body.incidents_raised;
    state.offers_sent = body.offers_sent;
    state.city_mode = body.city_mode;
    state.wartime_districts = body.wartime_districts;
    state.mobilizations_ordered = body.mobilizations_ordered;
    state.whistles_blown = body.whistles_blown;
    state.orders_posted = body.orders_posted;
    state.unit_registrations = body.unit_registrations;
    state.invitation_by_code = body.invitations.iter().map(|i| (i.code_hash.clone(), i.id.clone())).collect();
    state.invitations = body.invitations.into_iter().map(|i| (i.id.clone(), i)).collect();
    state.invitations_issued = body.invitations_issued;
    state.sessions = body.sessions.into_iter().map(|s| (s.family.clone(), s)).collect();
    state.webhooks = body.webhooks.into_iter().map(|w| (w.id.clone(), w)).collect();
    state.webhooks_registered = body.webhooks_registered;
    state.campaigns = body.campaigns.into_iter().map(|c| (c.id.clone(), c)).collect();
    state.campaigns_created = body.campaigns_created;
    state.push = super::push::PushState::restore(body.push_subscriptions, body.push_delivered);
    state.residents = body.residents;
    state.answered = body.answered;
    debug_assert!(state.roster.hot_in_step());
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_state_round_trips() {
        let bytes = encode(&State::default());
        let back = decode(&bytes).unwrap();
        assert_eq!(back.last_seq, 0);
        assert_eq!(encode(&back), bytes);
    }

    #[test]
    fn another_format_or_garbage_is_refused() {
        let mut v: serde_json::Value = serde_json::from_slice(&encode(&State::default())).unwrap();
        v["format"] = (FORMAT + 1).into();
        let other = serde_json::to_vec(&v).unwrap();
        assert!(matches!(decode(&other), Err(SnapshotError::Format(f)) if f == FORMAT + 1));
        assert!(matches!(decode(b"{\"format\":1"), Err(SnapshotError::Decode(_))));
        v["format"] = FORMAT.into();
        v["members"] = serde_json::json!([{}]);
        assert!(matches!(decode(&serde_json::to_vec(&v).unwrap()), Err(SnapshotError::Decode(_))));
    }
}
