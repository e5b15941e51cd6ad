//! Incidents: escalation up the levels, and geofenced arrival.

use super::*;

// ---------------------------------------------------------------------------------------
// 6. Escalation
// ---------------------------------------------------------------------------------------

/// A level-IV call in g1 that nobody there answers: `a` in g1 ignores it; `e` waits in the
/// outpost g5 (community c1, out of the grid reach); `f` in g3 (c2); `x` outside every grid.
fn unanswered_call() -> (World, String) {
    let mut w = outpost_world(vec![
        member("a", in_cell("g1", 0)),
        member("e", in_cell("g5", 0)),
        member("f", in_cell("g3", 0)),
        member("x", nowhere()),
    ]);
    let (inc, out) = w.raise(&staff("c1"), rescue("g1", Level::IV, 1));
    assert_eq!(sent_to(&out), ["a"]);
    assert_eq!(w.incident(&inc).escalate_at, Some(T0 + 120_000));
    (w, inc)
}

#[test]
fn an_unfilled_level_iv_call_escalates_after_120_s_and_widens_its_reach() {
    let (mut w, inc) = unanswered_call();

    // just before the deadline: a's offer expires (at 60 s), nothing escalates
    let out = w.at_ms(119_999).tick();
    assert_eq!(kinds(&out), ["offer_expired"]);
    assert_eq!(w.incident(&inc).level, Level::IV);

    let out = w.at(120).tick();
    assert_eq!(kinds(&out), ["incident_escalated", "whistle_blown", "offer_sent"]);
    assert_eq!(
        out.events[0].body,
        EventBody::IncidentEscalated {
            incident_id: inc.clone(),
            from: Level::IV,
            to: Level::III,
            reason: EscalationReason::Timeout,
            escalate_at: Some(T0 + 120_000 + 180_000),
        }
    );
    assert_eq!(
        out.events[1].body,
        EventBody::WhistleBlown {
            incident_id: inc.clone(),
            level: Level::III,
            reach: vec!["community".into()],
            reason: EscalationReason::Timeout,
        }
    );
    assert_eq!(out.events[0].actor, "system");
    // the reach widened to the community: the outpost member, not the one in c2
    assert_eq!(sent_to(&out), ["e"]);
    let i = w.incident(&inc);
    assert_eq!((i.level, i.escalate_at, i.status), (Level::III, Some(T0 + 300_000), Status::Open));
    // command sees the whistle
    assert!(w.frames.iter().any(|f| f.stream == "city" && f.kind == "incident.whistle"));
}

#[test]
fn unanswered_timeouts_climb_the_ladder_to_level_i_and_stop_there() {
    let (mut w, inc) = unanswered_call();
    w.at(120).tick(); // IV -> III, e offered

    let out = w.at_ms(299_999).tick();
    assert!(!kinds(&out).contains(&"incident_escalated"), "III lasts 180 s");

    let out = w.at(300).tick();
    assert_eq!(kinds(&out), ["incident_escalated", "whistle_blown", "offer_sent"]);
    assert!(matches!(out.events[0].body,
        EventBody::IncidentEscalated { from: Level::III, to: Level::II, escalate_at: Some(t), .. } if t == T0 + 600_000));
    assert!(matches!(&out.events[1].body, EventBody::WhistleBlown { reach, .. } if *reach == ["street", "district"]));
    assert_eq!(sent_to(&out), ["f"], "the street reaches c2");

    let out = w.at(600).tick();
    // f's offer (sent at 300 s) expired at 360 s; then II -> I
    assert_eq!(kinds(&out), ["offer_expired", "incident_escalated", "whistle_blown", "offer_sent"]);
    assert!(matches!(
        out.events[1].body,
        EventBody::IncidentEscalated { from: Level::II, to: Level::I, escalate_at: None, .. }
    ));
    assert!(
        matches!(&out.events[2].body, EventBody::WhistleBlown { reach, level: Level::I, .. } if *reach == ["city"])
    );
    assert_eq!(sent_to(&out), ["x"], "the city reaches beyond the grids");
    assert_eq!(w.incident(&inc).escalate_at, None);

    // at level I time alone escalates no further
    let out = w.at(100_000).tick();
    assert!(!kinds(&out).contains(&"incident_escalated"));
    assert_eq!(w.incident(&inc).level, Level::I);
    let e = w.refuse(&staff("c1"), escalate(&inc));
    assert_err(&e, ErrorKind::Conflict, "top_level");
}

#[test]
fn a_filled_incident_never_escalates() {
    let mut w = world(vec![member("a", in_cell("g1", 0))]);
    let (inc, _) = w.raise(&staff("c1"), rescue("g1", Level::IV, 1));
    w.at(30).accept("a", &inc);
    for t in [120, 300, 3600, 86_400] {
        let out = w.at(t).tick();
        assert!(out.events.is_empty(), "at {t} s: {:?}", kinds(&out));
    }
    assert_eq!(w.incident(&inc).level, Level::IV);
    let e = w.refuse(&staff("c1"), escalate(&inc));
    assert_err(&e, ErrorKind::Conflict, "incident_filled");
}

#[test]
fn a_closed_incident_never_escalates() {
    let mut w = world(vec![member("a", in_cell("g1", 0))]);
    let (inc, _) = w.raise(&staff("c1"), rescue("g1", Level::IV, 1));
    w.at(30).ok(&staff("c1"), cancel(&inc));
    let out = w.at(120).tick();
    assert!(out.events.is_empty(), "{:?}", kinds(&out));
    let e = w.refuse(&staff("c1"), escalate(&inc));
    assert_err(&e, ErrorKind::Conflict, "incident_closed");
}

#[test]
fn community_staff_may_escalate_by_hand_and_the_timer_restarts() {
    let (mut w, inc) = unanswered_call();

    // staff of another community do not see the incident at all
    let e = w.at(10).refuse(&staff("c2"), escalate(&inc));
    assert_err(&e, ErrorKind::NotFound, "unknown_incident");
    // nor does a member
    let e = w.refuse(&as_member("a"), escalate(&inc));
    assert_err(&e, ErrorKind::NotFound, "unknown_incident");

    let out = w.ok(&staff("c1"), escalate(&inc));
    assert_eq!(out.reply, Some(Reply::Incident(inc.clone())));
    assert_eq!(kinds(&out), ["incident_escalated", "whistle_blown", "offer_sent"]);
    assert_eq!(
        out.events[0].body,
        EventBody::IncidentEscalated {
            incident_id: inc.clone(),
            from: Level::IV,
            to: Level::III,
            reason: EscalationReason::Manual,
            escalate_at: Some(T0 + 10_000 + 180_000),
        }
    );
    assert!(matches!(out.events[1].body, EventBody::WhistleBlown { reason: EscalationReason::Manual, .. }));
    assert_eq!(out.events[0].actor, "staff:c1");
    assert_eq!(sent_to(&out), ["e"]);

    // level IV's old deadline (120 s) no longer fires
    let out = w.at(120).tick();
    assert!(!kinds(&out).contains(&"incident_escalated"), "{:?}", kinds(&out));
    assert_eq!(w.incident(&inc).level, Level::III);
    // level III's does, 180 s after the manual escalation
    let out = w.at(190).tick();
    assert!(matches!(
        out.events.iter().find(|e| e.body.kind() == "incident_escalated").map(|e| &e.body),
        Some(EventBody::IncidentEscalated { from: Level::III, to: Level::II, reason: EscalationReason::Timeout, .. })
    ));
}

#[test]
fn city_and_district_command_may_escalate_too() {
    let (mut w, inc) = unanswered_call();
    let e = w.refuse(&Actor::Command { district: Some("d9".into()) }, escalate(&inc));
    assert_err(&e, ErrorKind::NotFound, "unknown_incident");
    w.ok(&Actor::Command { district: Some("d1".into()) }, escalate(&inc));
    w.ok(&city_command(), escalate(&inc));
    assert_eq!(w.incident(&inc).level, Level::II);
}

#[test]
fn escalating_at_level_i_is_refused() {
    let mut w = world(vec![member("a", in_cell("g1", 0))]);
    let (inc, _) = w.raise(&staff("c1"), rescue("g1", Level::I, 1));
    assert_eq!(w.incident(&inc).escalate_at, None, "level I has no deadline");
    let e = w.refuse(&staff("c1"), escalate(&inc));
    assert_err(&e, ErrorKind::Conflict, "top_level");
}

// ---------------------------------------------------------------------------------------
// 7. Geofenced arrival
// ---------------------------------------------------------------------------------------

#[test]
fn arrival_within_the_geofence_is_recorded() {
    let (mut w, inc, offer) = accepted_call();
    let here = offset(grid_center("g1"), 0.0, 150.0);
    let out = w.at(100).ok(&as_member("a"), arrive(&offer, here));
    assert_eq!(kinds(&out), ["member_arrived"]);
    match &out.events[0].body {
        EventBody::MemberArrived { member_id, position, distance_m, .. } => {
            assert_eq!((member_id.as_str(), *position), ("a", here));
            assert!((distance_m - 150.0).abs() < 1.0, "{distance_m}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(w.offer(&inc, "a").state, OfferState::Arrived);
    assert_eq!(w.incident(&inc).arrived(), 1);
    assert_eq!(w.incident(&inc).accepted(), 1, "an arrived member still counts as accepted");
    assert!(out.frames.iter().any(|f| f.stream == "member:a" && f.kind == "arrival"));
    let idx = w.state.member_index("a").unwrap() as usize;
    assert_eq!(w.state.roster.members[idx].position, here, "the arrival is the last known position");

    // arriving twice is idempotent
    let out = w.ok(&as_member("a"), arrive(&offer, here));
    assert!(out.events.is_empty());
}

#[test]
fn arrival_outside_the_geofence_is_refused_with_the_distance() {
    let (mut w, _inc, offer) = accepted_call();
    let there = offset(grid_center("g1"), 0.0, 350.0);
    let distance = there.distance_m(grid_center("g1"));
    let e = w.at(100).refuse(&as_member("a"), arrive(&offer, there));
    assert_err(&e, ErrorKind::Invalid, "outside_geofence");
    assert!(e.detail.contains(&format!("{distance:.0} m")), "{}", e.detail);
    assert!(e.detail.contains("200 m"), "{}", e.detail);

    // just inside, just outside
    let e = w.refuse(&as_member("a"), arrive(&offer, offset(grid_center("g1"), 201.0, 0.0)));
    assert_err(&e, ErrorKind::Invalid, "outside_geofence");
    w.ok(&as_member("a"), arrive(&offer, offset(grid_center("g1"), 199.0, 0.0)));
}

#[test]
fn arriving_before_accepting_is_refused() {
    let (mut w, inc, _) = accepted_call();
    let b_offer = w.offer_id(&inc, "b");
    let e = w.refuse(&as_member("b"), arrive(&b_offer, grid_center("g1")));
    assert_err(&e, ErrorKind::Conflict, "not_accepted");
}

#[test]
fn arriving_after_the_incident_closed_is_refused() {
    let (mut w, inc, offer) = accepted_call();
    w.at(20).ok(&staff("c1"), resolve(&inc));
    let e = w.refuse(&as_member("a"), arrive(&offer, grid_center("g1")));
    assert_err(&e, ErrorKind::Conflict, "incident_closed");
}
