//! Incidents: replaying the log, and the frames each stream gets.

use super::*;

// ---------------------------------------------------------------------------------------
// 11. Replay
// ---------------------------------------------------------------------------------------

/// A long day: raises, offers, accepts, a decline, a duty change, expiries, an escalation,
/// an arrival, an idempotent retry, a resolve, a cancel, and one incident left open.
fn long_scenario() -> World {
    let mut w = outpost_world(vec![
        member("a", in_cell("g1", 0)).skills(&["medical"]).team("t1"),
        member("b", in_cell("g1", 1)).living_in("g1"),
        member("c", in_cell("g2", 0)).skills(&["driving"]),
        member("d", in_cell("g2", 1)).off_call(),
        member("e", in_cell("g5", 0)),
        member("f", in_cell("g3", 0)),
        member("g", in_cell("g4", 1)),
        member("h", nowhere()).skills(&["medical", "driving"]),
    ]);
    let keyed = RaiseIncident {
        idempotency_key: Some("k1".into()),
        skills: vec!["medical".into()],
        ..rescue("g1", Level::IV, 2)
    };
    let (inc1, out) = w.raise(&staff("c1"), keyed.clone());
    assert_eq!(as_set(sent_to(&out)), set(&["a", "b", "c"]));
    w.at(5).accept("a", &inc1);
    let b1 = w.offer_id(&inc1, "b");
    w.at(10).ok(&as_member("b"), Command::Decline { offer_id: b1, reason: Some("busy".into()) });
    w.at(12).ok(&as_member("d"), Command::Duty { on_call: true });
    let out = w.at(20).tick(); // retry after the decline
    assert_eq!(sent_to(&out), ["d"]);
    let out = w.at(30).ok(&staff("c1"), Command::Raise(keyed));
    assert_eq!(out.reply, Some(Reply::Incident(inc1.clone())));
    let (inc2, out) = w.at(40).raise(&city_command(), rescue("g4", Level::I, 1));
    assert_eq!(sent_to(&out), ["g", "f"]);
    let out = w.at(60).tick(); // c's offer expires
    assert_eq!(kinds(&out), ["offer_expired"]);
    w.at(70).accept("g", &inc2); // filled, f revoked
    let out = w.at(80).tick(); // d's offer expires
    assert_eq!(kinds(&out), ["offer_expired"]);
    let out = w.at(120).tick(); // IV -> III: e in the outpost
    assert_eq!(kinds(&out), ["incident_escalated", "whistle_blown", "offer_sent"]);
    w.at(130).accept("e", &inc1); // filled
    assert_eq!(w.incident(&inc1).status, Status::Filled);
    let a1 = w.offer_id(&inc1, "a");
    w.at(140).ok(&as_member("a"), arrive(&a1, offset(grid_center("g1"), 30.0, 30.0)));
    w.at(150).ok(&staff("c1"), resolve(&inc1));
    w.at(160).ok(&city_command(), cancel(&inc2));
    let (inc3, out) = w.at(170).raise(&staff("c2"), rescue("g3", Level::III, 1));
    assert_eq!(sent_to(&out), ["f", "g"]);
    w.at(175).ok(&as_member("f"), Command::Duty { on_call: false });
    assert_eq!(w.incident(&inc3).status, Status::Open);
    w
}

#[test]
fn replaying_the_log_rebuilds_the_same_state_and_frames() {
    let w = long_scenario();
    let n = w.log.len() as u64;
    assert!(n >= 25, "a long scenario: {n} events");
    assert!(w.log.iter().map(|e| e.seq).eq(1..=n), "events are numbered from 1 without gaps");
    assert_eq!(w.state.last_seq, n);

    let (r, frames) = replay(&w.log);
    assert_eq!(r.last_seq, w.state.last_seq);
    crate::domain::testkit::assert_restores_at_every_cut(&w.log, &w.rules);
    assert_eq!(r.incidents, w.state.incidents, "incidents, levels, statuses and offers");
    assert_eq!(r.streams, w.state.streams);
    assert_eq!(frames, w.frames, "the same frames, with the same seqs");
    assert_eq!(r.offer_index, w.state.offer_index);
    assert_eq!(r.idempotency, w.state.idempotency);
    assert_eq!((r.incidents_raised, r.offers_sent), (w.state.incidents_raised, w.state.offers_sent));
    // the durable part of each member's record
    let durable = |s: &State| -> Vec<_> {
        s.roster.members.iter().map(|m| (m.on_call, m.engaged.clone(), m.last_duty_at, m.duties)).collect()
    };
    assert_eq!(durable(&r), durable(&w.state));
    // every deadline still pending live is pending after the replay (the replay may also hold
    // stale ones, which fire harmlessly; retries are soft and rescheduled after a restart)
    for d in w.state.deadlines.iter().filter(|(_, d)| !matches!(d, Deadline::Retry(_))) {
        assert!(r.deadlines.contains(d), "{d:?} lost in the replay");
    }
}

/// The replay tests also compare the replayed state with a fold of the log that does not
/// go through `apply` (`testkit::Facts`): it tells a state that missed an acceptance, or
/// an arrival, from one that did not, which comparing two states built by `apply` cannot.
#[test]
fn a_state_that_missed_an_acceptance_or_an_arrival_does_not_state_the_log() {
    let w = long_scenario();
    let (r, _) = replay(&w.log);
    assert_states_the_log(&r, &w.log, "the replay");
    for (from, to) in [(OfferState::Accepted, OfferState::Offered), (OfferState::Arrived, OfferState::Accepted)] {
        let mut missed = replay(&w.log).0;
        let offer = missed.incidents.values_mut().flat_map(|i| i.offers.iter_mut()).find(|o| o.state == from);
        offer.unwrap_or_else(|| panic!("the scenario has an offer {from:?}")).state = to;
        assert_ne!(facts_of_state(&missed), facts_of_log(&w.log), "{from:?} left {to:?}");
    }
}

#[test]
fn a_replayed_state_decides_the_next_steps_as_the_live_one_does() {
    let mut live = long_scenario();
    let (mut replayed, _) = replay(&live.log);
    let now = live.now;
    replayed.schedule_retries(now); // as the engine does after a restart

    // an hour later: expiries, escalations and retries, decided by both
    live.at(3600);
    let a = execute(&mut live.state, &live.rules, &Actor::System, Command::Tick, live.now).unwrap();
    let b = execute(&mut replayed, &live.rules, &Actor::System, Command::Tick, live.now).unwrap();
    assert!(!a.events.is_empty());
    assert_eq!(a.events, b.events);
    assert_eq!(a.frames, b.frames);
    assert_eq!(live.state.incidents, replayed.incidents);
}

#[test]
fn replay_restores_idempotency_keys() {
    let w = long_scenario();
    let (mut r, _) = replay(&w.log);
    let again = RaiseIncident { idempotency_key: Some("k1".into()), ..rescue("g1", Level::IV, 1) };
    let out = execute(&mut r, &w.rules, &staff("c1"), Command::Raise(again), w.now).unwrap();
    assert_eq!(out.reply, Some(Reply::Incident("inc-000001".into())));
    assert!(out.events.is_empty());
}

#[test]
fn replay_restores_the_arrival_position() {
    let w = long_scenario();
    let (r, _) = replay(&w.log);
    let a = w.state.member_index("a").unwrap() as usize;
    assert_eq!(
        r.roster.members[a].position, w.state.roster.members[a].position,
        "MemberArrived carries the position the live state moved the member to"
    );
}

// ---------------------------------------------------------------------------------------
// 12. Frames
// ---------------------------------------------------------------------------------------

const SCOPE_C1: [&str; 3] = ["community:c1", "district:d1", "city"];

#[test]
fn an_offer_frame_goes_only_to_the_members_stream() {
    let mut w = world(vec![member("a", in_cell("g1", 0)), member("b", in_cell("g1", 1))]);
    let (inc, out) = w.raise(&staff("c1"), rescue("g1", Level::IV, 1));
    let offers: Vec<&Frame> = out.frames.iter().filter(|f| f.kind == "offer").collect();
    assert_eq!(offers.len(), 2);
    for f in offers {
        let offer_id = f.data["offer_id"].as_str().unwrap();
        let o = w.incident(&inc).offer(offer_id).unwrap();
        assert_eq!(f.stream, format!("member:{}", o.member_id));
        assert_eq!(f.seq, o.frame_seq);
        assert_eq!(f.data["incident_id"], inc.as_str());
        assert_eq!(f.data["expires_at"], "2023-11-14T22:14:20.000Z");
        // a fresh connection is sent the open offer again, with its own seq
        assert_eq!(w.state.open_frames(&f.stream), [o.frame_seq]);
    }
    // nothing for members goes to the scope streams, nothing of the incident to members
    for f in &out.frames {
        if f.stream.starts_with("member:") {
            assert_eq!(f.kind, "offer");
        } else {
            assert!(f.kind.starts_with("incident."), "{}: {}", f.stream, f.kind);
        }
    }
    // once the offer is answered it is no longer an open offer; scope streams have none
    let b_offer = w.offer_id(&inc, "b");
    w.ok(&as_member("b"), decline(&b_offer));
    assert!(w.state.open_frames("member:b").is_empty());
    assert!(w.state.open_frames("community:c1").is_empty());
    assert!(w.state.open_frames("city").is_empty());
}

#[test]
fn incident_frames_go_to_the_community_the_district_and_the_city() {
    let mut w = world(vec![member("a", in_cell("g1", 0)), member("f", in_cell("g3", 0))]);
    let (inc, out) = w.raise(&staff("c1"), rescue("g1", Level::IV, 1));
    // each incident event: one frame for each scope stream, in that order
    let raised: Vec<&str> =
        out.frames.iter().filter(|f| f.kind == "incident.raised").map(|f| f.stream.as_str()).collect();
    assert_eq!(raised, SCOPE_C1);
    let sent: Vec<&str> =
        out.frames.iter().filter(|f| f.kind == "incident.offer_sent").map(|f| f.stream.as_str()).collect();
    assert_eq!(sent, SCOPE_C1);
    let f = out.frames.iter().find(|f| f.kind == "incident.raised").unwrap();
    assert_eq!(f.data["incident_id"], inc.as_str());
    assert_eq!(f.data["incident"]["status"], "open");
    assert_eq!(f.data["incident"]["headcount"], 1);
    assert_eq!(f.data["escalate_at"], "2023-11-14T22:15:20.000Z", "times are RFC 3339 on the wire");
    assert!(f.data.get("type").is_none());

    let out = w.at(1).accept("a", &inc);
    for kind in ["incident.offer_accepted", "incident.filled"] {
        let streams: Vec<&str> = out.frames.iter().filter(|f| f.kind == kind).map(|f| f.stream.as_str()).collect();
        assert_eq!(streams, SCOPE_C1, "{kind}");
    }
    let filled = out.frames.iter().find(|f| f.kind == "incident.filled").unwrap();
    assert_eq!(
        (filled.data["incident"]["status"].as_str(), filled.data["incident"]["accepted"].as_u64()),
        (Some("filled"), Some(1))
    );

    // c2's incident goes to c2's stream, not c1's
    let (_, out) = w.raise(&staff("c2"), rescue("g3", Level::IV, 1));
    let streams: BTreeSet<&str> =
        out.frames.iter().filter(|f| f.kind.starts_with("incident.")).map(|f| f.stream.as_str()).collect();
    assert_eq!(streams, ["city", "community:c2", "district:d1"].into_iter().collect());
}

#[test]
fn a_fresh_connection_is_resent_the_current_assignment() {
    let mut w = world(vec![member("a", in_cell("g1", 0))]);
    let (inc, out) = w.raise(&staff("c1"), rescue("g1", Level::IV, 2));
    assert_eq!(sent_to(&out), ["a"]);
    let out = w.at(5).accept("a", &inc);
    let assignment = out.frames.iter().find(|f| f.stream == "member:a" && f.kind == "assignment").unwrap();
    // the offer (what and where) and then the assignment, each with its own seq
    let offer = w.frames.iter().find(|f| f.stream == "member:a" && f.kind == "offer").unwrap();
    assert_eq!(w.state.open_frames("member:a"), [offer.seq, assignment.seq]);
}

#[test]
fn every_stream_counts_its_seqs_from_one_without_gaps() {
    let w = long_scenario();
    let by_stream = w.assert_streams_count_from_one();
    assert!(by_stream.len() >= 10, "{:?}", by_stream.keys());
    // the city stream starts with the import
    assert_eq!(w.frames[0].stream, "city");
    assert_eq!((w.frames[0].kind, w.frames[0].seq), ("city.imported", 1));
    // a member's stream carries only what is theirs
    for f in w.frames.iter().filter(|f| f.stream.starts_with("member:")) {
        assert!(
            ["offer", "offer.revoked", "assignment", "assignment.closed", "arrival", "duty"].contains(&f.kind),
            "{}: {}",
            f.stream,
            f.kind
        );
    }
    // a member who was never offered anything has no stream
    assert_eq!(w.state.stream_seq("member:nobody"), 0);
}

/// The frame router and the read rule are one rule: an incident's frames go to exactly the
/// streams of the actors who may read it, and to no other actor's stream.
#[test]
fn an_incidents_frames_reach_exactly_the_streams_of_those_who_see_it() {
    use crate::domain::scope;
    let mut w = world(vec![member("a", in_cell("g1", 0)).living_in("g1")]);
    let (inc, _) = w.raise(&staff("c1"), rescue("g1", Level::IV, 1));
    let i = w.incident(&inc).clone();
    let actors = [
        city_command(),
        Actor::Command { district: Some("d1".into()) },
        Actor::Command { district: Some("d2".into()) },
        staff("c1"),
        staff("c2"),
        Actor::UnitAdmin { unit: "u1".into() },
        as_member("a"),
    ];
    let streams = scope::incident_streams(&i);
    for actor in &actors {
        assert_eq!(
            scope::incident(actor, &i),
            streams.contains(&scope::stream_of(actor)),
            "{actor:?}: read rule and frame routing disagree"
        );
    }
    // and what the oracle of this fixture says, independently of both
    let sees: Vec<bool> = actors.iter().map(|a| scope::incident(a, &i)).collect();
    assert_eq!(sees, [true, true, false, true, false, false, false]);
}
