//! The wartime events folded into the state, and the frames they derive: mode switches,
//! mobilization orders and their tallied progress, whistles and transfers.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

use serde_json::json;

use crate::domain::event::{Event, EventBody, Frame, FrameData, Mode, stream};
use crate::domain::incident::{OfferState, Whistle};
use crate::domain::incidents::scope_frames;
use crate::domain::mobilization::{MemberOrder, Mobilization, OrderState, Progress};
use crate::domain::state::{Deadline, State, end_duty_unless_mobilized};
use crate::domain::time::rfc3339;

use super::{on_assignment, recompute_forced};

fn command_streams(districts: &[String]) -> Vec<String> {
    std::iter::once(stream::CITY.to_string()).chain(districts.iter().map(|d| stream::district(d))).collect()
}

/// Appends a value's JSON to `out`.
fn json<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, v: &T) {
    serde_json::to_writer(out, v).expect("plain data serializes");
}

fn progress_json(p: Progress) -> serde_json::Value {
    json!({"ordered": p.ordered, "acknowledged": p.acknowledged, "reported": p.reported, "missing": p.missing})
}

/// The `mobilization.progress` frames of what changed since the last tally: the city's
/// with every change, a district's with those of members who report to a place in it (a
/// city-wide order would otherwise send every answer to every district). A follower builds
/// only the frames its sockets want (`frame_filter`); the others just take their seq.
fn tally_frames(state: &mut State, mobilization_id: &str, frames: &mut Vec<Frame>) {
    state.untallied.remove(mobilization_id);
    let m = state.mobilizations.get_mut(mobilization_id).expect("known mobilization");
    let changes = std::mem::take(&mut m.untallied);
    if changes.is_empty() {
        return;
    }
    let m = &state.mobilizations[mobilization_id];
    // stream -> its changes (indices into `changes`); the city's has them all.
    let mut by_stream: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, (idx, _)) in changes.iter().enumerate() {
        let o = &m.orders[m.by_member[idx]];
        match o.community {
            Some(c) => by_stream.entry(stream::district(state.city.district_id_of_community(c))).or_default().push(i),
            None => {
                for d in &m.districts {
                    by_stream.entry(stream::district(d)).or_default().push(i);
                }
            }
        }
    }
    by_stream.insert(stream::CITY.to_string(), (0..changes.len()).collect());
    // Each change's JSON is written once, then copied into each stream's list; the frame's
    // data is that text (`FrameData::json`), with its keys in the order serde_json's map
    // gives (sorted), as when it was built as a value.
    let mut built: Vec<Option<std::ops::Range<usize>>> = vec![None; changes.len()];
    let mut texts: Vec<u8> = Vec::new();
    let tail = {
        let mut t = Vec::new();
        t.extend_from_slice(b"],\"mobilization_id\":");
        json(&mut t, &mobilization_id);
        t.extend_from_slice(b",\"progress\":");
        json(&mut t, &progress_json(m.counts));
        t.push(b'}');
        t
    };
    let mut out: Vec<(String, Option<FrameData>)> = Vec::with_capacity(by_stream.len());
    // The city first, then the districts in order, as the frames' seqs were always given.
    let city_first = by_stream.remove_entry(stream::CITY).into_iter().chain(by_stream);
    for (stream, mine) in city_first {
        if !state.frame_filter.wants(&stream) {
            out.push((stream, None));
            continue;
        }
        let mut data: Vec<u8> = Vec::with_capacity(mine.len() * 96 + tail.len() + 16);
        data.extend_from_slice(b"{\"changes\":[");
        for (n, i) in mine.into_iter().enumerate() {
            let range = built[i].get_or_insert_with(|| {
                let (idx, to) = changes[i];
                let o = &m.orders[m.by_member[&idx]];
                let start = texts.len();
                texts.extend_from_slice(b"{\"community_id\":");
                json(&mut texts, &o.community.map(|c| state.city.community(c).id.as_str()));
                texts.extend_from_slice(b",\"member_id\":");
                json(&mut texts, &o.member_id);
                texts.extend_from_slice(b",\"state\":");
                json(&mut texts, &to);
                texts.extend_from_slice(b",\"team_id\":");
                json(&mut texts, &state.city.city().expect("a mobilization implies a city").teams[o.team as usize].id);
                texts.push(b'}');
                start..texts.len()
            });
            if n > 0 {
                data.push(b',');
            }
            data.extend_from_slice(&texts[range.clone()]);
        }
        data.extend_from_slice(&tail);
        let data = String::from_utf8(data).expect("serde_json writes UTF-8");
        out.push((stream, Some(FrameData::json(data))));
    }
    for (stream, data) in out {
        match data {
            Some(data) => state.push_frame(frames, stream, "mobilization.progress", data),
            None => state.skip_frame(stream),
        };
    }
}

/// Folds a wartime event into the state and derives its frames.
pub(in crate::domain) fn apply(state: &mut State, event: &Event, frames: &mut Vec<Frame>) {
    let at = event.at;
    match &event.body {
        EventBody::ModeSwitched { district_id, mode, reason } => {
            match district_id {
                None => state.city_mode = *mode,
                Some(d) if *mode == Mode::Wartime => {
                    state.wartime_districts.insert(d.clone());
                }
                Some(d) => {
                    state.wartime_districts.remove(d);
                }
            }
            recompute_forced(state);
            let data = json!({
                "district_id": district_id,
                "mode": mode,
                "reason": reason,
                "city_mode": state.city_mode,
                "wartime_districts": state.wartime_districts,
            });
            let districts: Vec<String> = match district_id {
                Some(d) => vec![d.clone()],
                None => {
                    state.city.city().map(|c| c.districts.iter().map(|d| d.id.clone()).collect()).unwrap_or_default()
                }
            };
            let data = Arc::new(data);
            for s in command_streams(&districts) {
                state.push_frame(frames, s, "mode.switched", data.clone());
            }
        }
        EventBody::MobilizationOrdered { mobilization_id, teams, site, deadline, note } => {
            let city = state.city.city.clone().expect("a mobilization implies a city");
            let mut m = Mobilization::new(
                mobilization_id.clone(),
                at,
                event.actor.clone(),
                *deadline,
                note.clone(),
                site.clone(),
            );
            let ordered: usize = teams
                .iter()
                .map(|t| {
                    state.city.team_by_id.get(&t.team_id).map_or(0, |&i| state.city.team_members[i as usize].len())
                })
                .sum();
            m.orders.reserve(ordered);
            m.by_member.reserve(ordered);
            let mut districts = BTreeSet::new();
            if let Some(s) = site
                && let Some(g) = state.city.grid_at(s.location)
            {
                districts.insert(city.districts[state.city.grid_places[g as usize].district as usize].id.clone());
            }
            for t in teams {
                let team = state.city.team_by_id[&t.team_id];
                let community = t.community_id.as_ref().map(|c| state.city.community_by_id[c]);
                m.teams.push((team, community));
                let report_to = match (community, site) {
                    (Some(c), _) => {
                        districts.insert(state.city.district_id_of_community(c).to_string());
                        let com = &city.communities[c as usize];
                        json!({"community_id": com.id, "name": com.name, "location": state.city.community_centers[c as usize]})
                    }
                    (None, Some(s)) => json!({"site": s.name, "name": s.name, "location": s.location}),
                    (None, None) => json!(null),
                };
                // One order per team, copied to each member (a surge builds tens of thousands).
                let data = json!({
                    "mobilization_id": mobilization_id,
                    "team_id": t.team_id,
                    "report_to": report_to,
                    "deadline": rfc3339(*deadline),
                    "note": note,
                });
                let data = Arc::new(data);
                for &member in &state.city.team_members[team as usize].clone() {
                    let std::collections::hash_map::Entry::Vacant(slot) = m.by_member.entry(member) else {
                        continue;
                    };
                    slot.insert(m.orders.len());
                    let member_id = city.members[member as usize].id.clone();
                    let stream = stream::member(&member_id);
                    let frame_seq = if state.frame_filter.wants(&stream) {
                        state.push_frame(frames, stream, "mobilization.order", data.clone())
                    } else {
                        state.skip_frame(stream)
                    };
                    m.orders.push(MemberOrder {
                        member,
                        member_id,
                        team,
                        community,
                        state: OrderState::Ordered,
                        frame_seq,
                        state_seq: None,
                        acknowledged_at: None,
                        reported_at: None,
                    });
                    m.counts.add(OrderState::Ordered);
                    state.roster.members[member as usize].orders.push(mobilization_id.clone());
                }
            }
            m.districts = districts.into_iter().collect();
            // Each unit whose teams are ordered hears of it, with its own teams only.
            let mut by_unit: BTreeMap<&str, Vec<serde_json::Value>> = BTreeMap::new();
            for t in teams {
                let team = &city.teams[state.city.team_by_id[&t.team_id] as usize];
                by_unit
                    .entry(team.unit_id.as_str())
                    .or_default()
                    .push(json!({"team_id": t.team_id, "community_id": t.community_id}));
            }
            for (unit, teams) in by_unit {
                let data = json!({
                    "mobilization_id": mobilization_id,
                    "unit_id": unit,
                    "teams": teams,
                    "site": site.as_ref().map(|s| s.name.clone()),
                    "deadline": rfc3339(*deadline),
                    "note": note,
                });
                state.push_frame(frames, stream::unit(unit), "unit.mobilized", data);
            }
            let data = json!({
                "mobilization_id": mobilization_id,
                "teams": teams.len(),
                "deadline": rfc3339(*deadline),
                "note": note,
                "progress": progress_json(m.counts),
            });
            let data = Arc::new(data);
            for s in command_streams(&m.districts) {
                state.push_frame(frames, s, "mobilization.ordered", data.clone());
            }
            state.deadlines.insert((*deadline, Deadline::Mobilization(mobilization_id.clone())));
            state.mobilizations_ordered += 1;
            state.mobilizations.insert(mobilization_id.clone(), m);
        }
        EventBody::MobilizationAcknowledged { mobilization_id, member_id, batched, .. }
        | EventBody::MobilizationReported { mobilization_id, member_id, batched, .. } => {
            let idx = state.city.member_by_id[member_id];
            let m = state.mobilizations.get_mut(mobilization_id).expect("known mobilization");
            let o = &mut m.orders[m.by_member[&idx]];
            let from = o.state;
            let to = match &event.body {
                EventBody::MobilizationReported { .. } => OrderState::Reported,
                _ => OrderState::Acknowledged,
            };
            o.state = to;
            o.acknowledged_at.get_or_insert(at);
            if to == OrderState::Reported {
                o.reported_at = Some(at);
            }
            m.counts.advance(from, to);
            m.untallied.push((idx, to));
            let own = m.state_data(to);
            let seq = state.push_frame(frames, stream::member(member_id), "mobilization.state", own);
            let m = state.mobilizations.get_mut(mobilization_id).expect("known mobilization");
            let o = &mut m.orders[m.by_member[&idx]];
            o.state_seq = Some(seq);
            if let EventBody::MobilizationReported { position, .. } = &event.body {
                state.roster.move_to(idx, *position);
                state.roster.edit(idx, |m| m.work.start_duty(at));
            }
            if *batched {
                state.untallied.insert(mobilization_id.clone());
            } else {
                // Logged before progress was batched: this event's frames are its own.
                tally_frames(state, mobilization_id, frames);
            }
        }
        EventBody::MobilizationTallied { mobilization_id } => tally_frames(state, mobilization_id, frames),
        EventBody::MobilizationDeadlinePassed { mobilization_id } => {
            let m = state.mobilizations.get_mut(mobilization_id).expect("known mobilization");
            m.deadline_passed = true;
            let data = json!({"mobilization_id": mobilization_id, "progress": progress_json(m.counts)});
            let data = Arc::new(data);
            for s in command_streams(&m.districts.clone()) {
                state.push_frame(frames, s, "mobilization.deadline", data.clone());
            }
        }
        EventBody::MobilizationClosed { mobilization_id, reason } => {
            let m = state.mobilizations.get_mut(mobilization_id).expect("known mobilization");
            m.closed = Some((at, reason.clone()));
            let orders: Vec<(u32, String, OrderState)> =
                m.orders.iter().map(|o| (o.member, o.member_id.clone(), o.state)).collect();
            let data =
                json!({"mobilization_id": mobilization_id, "reason": reason, "progress": progress_json(m.counts)});
            let districts = m.districts.clone();
            for (member, member_id, st) in orders {
                state.roster.members[member as usize].orders.retain(|x| x != mobilization_id);
                if st == OrderState::Reported && !on_assignment(state, member) {
                    end_duty_unless_mobilized(state, member, at);
                }
                let d = json!({"mobilization_id": mobilization_id, "reason": reason});
                state.push_frame(frames, stream::member(&member_id), "mobilization.closed", d);
            }
            let data = Arc::new(data);
            for s in command_streams(&districts) {
                state.push_frame(frames, s, "mobilization.closed", data.clone());
            }
        }
        EventBody::UnitsWhistled { incident_id, whistle_id, units, deadline } => {
            let inc = state.incidents.get_mut(incident_id).expect("known incident");
            let reported: HashSet<u32> = inc
                .offers
                .iter()
                .filter(|o| matches!(o.state, OfferState::Accepted | OfferState::Arrived))
                .map(|o| state.city.member_unit[o.member as usize])
                .collect();
            let whistled = units
                .iter()
                .map(|u| {
                    let ui = state.city.unit_by_id[u];
                    (ui, u.clone(), reported.contains(&ui))
                })
                .collect();
            inc.whistles.push(Whistle {
                id: whistle_id.clone(),
                at,
                deadline: *deadline,
                units: whistled,
                overdue: false,
            });
            state.whistles_blown += 1;
            state.deadlines.insert((*deadline, Deadline::Whistle(incident_id.clone(), whistle_id.clone())));
            scope_frames(state, frames, incident_id, "incident.units_whistled", &event.body, at);
            // Each unit whistled hears where to go: the incident's place, level and category.
            let inc = &state.incidents[incident_id];
            let community =
                state.city.community_by_id.get(&inc.community_id).map(|&c| state.city.community(c).name.clone());
            let data = Arc::new(json!({
                "incident_id": incident_id,
                "whistle_id": whistle_id,
                "community_id": inc.community_id,
                "community": community,
                "level": inc.level,
                "category": inc.category,
                "location": inc.location,
                "deadline": rfc3339(*deadline),
            }));
            for u in units {
                state.push_frame(frames, stream::unit(u), "unit.whistled", data.clone());
            }
        }
        EventBody::WhistleOverdue { incident_id, whistle_id, .. } => {
            let inc = state.incidents.get_mut(incident_id).expect("known incident");
            if let Some(w) = inc.whistles.iter_mut().find(|w| &w.id == whistle_id) {
                w.overdue = true;
            }
            scope_frames(state, frames, incident_id, "incident.whistle_overdue", &event.body, at);
        }
        EventBody::MembersTransferred { from, to, members } => {
            let ti = state.city.community_by_id[to];
            let fi = state.city.community_by_id[from];
            let target = state.city.community(ti);
            let data = Arc::new(
                json!({"from": from, "to": to, "community": {"id": target.id, "name": target.name, "center": state.city.community_centers[ti as usize]}}),
            );
            for m in members {
                let idx = state.city.member_by_id[m];
                state.roster.edit(idx, |m| m.home = Some(ti));
                state.push_frame(frames, stream::member(m), "transfer", data.clone());
            }
            let districts: BTreeSet<String> =
                [fi, ti].iter().map(|&c| state.city.district_id_of_community(c).to_string()).collect();
            let data = json!({"from": from, "to": to, "members": members});
            let data = Arc::new(data);
            for s in command_streams(&districts.into_iter().collect::<Vec<_>>()) {
                state.push_frame(frames, s, "balance.transferred", data.clone());
            }
        }
        _ => unreachable!("dispatcher::apply sends only wartime events here"),
    }
}
