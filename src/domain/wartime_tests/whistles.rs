//! Wartime: whistles (吹哨报到) and balance (力量统筹).

use super::*;

// ---------------------------------------------------------------------------------------
// Whistles (吹哨报到)
// ---------------------------------------------------------------------------------------

fn whistle_world() -> World {
    // Everyone stands in d2, out of reach of a level III call in c1.
    world(vec![
        member("u1a", "g7").team("t1"),
        member("u1b", "g7").team("w1"),
        member("u1off", "g7").team("t1").off_call(),
        member("u2a", "g7").team("t2"),
        member("u3a", "g7").team("t3"),
        member("u4a", "g7").team("t4"),
    ])
}

#[test]
fn a_whistle_offers_the_incident_to_every_available_member_of_the_paired_units() {
    let mut w = whistle_world();
    let (inc, out) = w.raise(&city_command(), rescue("g1", Level::III, 2));
    assert!(sent_to(&out).is_empty());
    let out = w.at(5).ok(&staff("c1"), whistle(&inc, WhistleTarget::PairedUnits));
    assert_eq!(
        out.events[0].body,
        EventBody::UnitsWhistled {
            incident_id: inc.clone(),
            whistle_id: "wh-1".into(),
            units: vec!["u1".into(), "u2".into()],
            deadline: T0 + 5_000 + 600_000,
        }
    );
    assert_eq!(as_set(sent_to(&out)), set(&["u1a", "u1b", "u2a"]), "not the off-call member, not u3");
    for e in &out.events[1..] {
        match &e.body {
            EventBody::OfferSent { whistle_id, expires_at, .. } => {
                assert_eq!(whistle_id.as_deref(), Some("wh-1"));
                assert_eq!(*expires_at, T0 + 5_000 + 60_000);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let f = frames_of(&out.frames, "member:u2a", "offer");
    assert_eq!(f[0].data["whistle"], true);
    assert_eq!(frames_of(&out.frames, "community:c1", "incident.units_whistled").len(), 1);
    // Each unit named hears it on its own stream; a unit not named does not.
    for u in ["u1", "u2"] {
        let f = frames_of(&out.frames, &format!("unit:{u}"), "unit.whistled");
        assert_eq!(f.len(), 1, "{u}");
        assert_eq!(
            (f[0].data["incident_id"].as_str(), f[0].data["community_id"].as_str()),
            (Some(inc.as_str()), Some("c1"))
        );
    }
    assert!(out.frames.iter().all(|f| f.stream != "unit:u3" && f.stream != "unit:u4"), "only the units named");

    // a unit has reported once one of its members accepts
    w.at(10).accept("u1b", &inc);
    let reported = |w: &World| -> Vec<(String, bool)> {
        w.state.incidents[&inc].whistles[0].units.iter().map(|u| (u.1.clone(), u.2)).collect()
    };
    assert_eq!(reported(&w), [("u1".into(), true), ("u2".into(), false)]);

    // the street's units: those of teams paired with any community of s1 (c1, c2)
    let out = w.at(20).ok(&city_command(), whistle(&inc, WhistleTarget::StreetUnits));
    match &out.events[0].body {
        EventBody::UnitsWhistled { whistle_id, units, .. } => {
            assert_eq!(whistle_id, "wh-2");
            assert_eq!(units, &["u1", "u2", "u3"]);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(sent_to(&out), ["u3a"], "the others were offered already");
    assert!(w.state.incidents[&inc].whistles[1].units[0].2, "u1 had reported before the whistle");

    // unknown units are refused
    let e = w.refuse(&city_command(), whistle(&inc, WhistleTarget::Units(vec!["u4".into(), "u9".into()])));
    assert_err(&e, ErrorKind::Invalid, "unknown_unit");
}

#[test]
fn at_the_whistle_deadline_the_units_that_have_not_reported_are_overdue() {
    let mut w = whistle_world();
    let (inc, _) = w.raise(&city_command(), rescue("g1", Level::III, 3));
    w.at(5).ok(&staff("c1"), whistle(&inc, WhistleTarget::PairedUnits));
    w.at(10).accept("u1a", &inc);
    let out = w.at(604).tick();
    assert!(!kinds(&out).contains(&"whistle_overdue"), "{:?}", kinds(&out));
    let out = w.at(605).tick();
    let overdue: Vec<&EventBody> =
        out.events.iter().map(|e| &e.body).filter(|b| matches!(b, EventBody::WhistleOverdue { .. })).collect();
    assert_eq!(
        overdue,
        [&EventBody::WhistleOverdue { incident_id: inc.clone(), whistle_id: "wh-1".into(), units: vec!["u2".into()] }]
    );
    assert!(w.state.incidents[&inc].whistles[0].overdue);
    for s in ["community:c1", "district:d1", "city"] {
        assert_eq!(frames_of(&w.frames, s, "incident.whistle_overdue").len(), 1, "{s}");
    }
    let out = w.at(2_000).tick();
    assert!(!kinds(&out).contains(&"whistle_overdue"));
}

#[test]
fn no_unit_is_overdue_when_every_whistled_unit_reported() {
    let mut w = whistle_world();
    let (inc, _) = w.raise(&city_command(), rescue("g1", Level::III, 2));
    w.at(5).ok(&staff("c1"), whistle(&inc, WhistleTarget::PairedUnits));
    w.at(10).accept("u1a", &inc);
    w.at(11).accept("u2a", &inc);
    assert_eq!(w.state.incidents[&inc].status, Status::Filled);
    let out = w.at(700).tick();
    assert!(!kinds(&out).contains(&"whistle_overdue"), "{:?}", kinds(&out));
    assert!(!w.state.incidents[&inc].whistles[0].overdue);
}

#[test]
fn whistling_a_closed_or_filled_incident_is_a_conflict() {
    let mut w = whistle_world();
    let (inc, _) = w.raise(&city_command(), rescue("g1", Level::III, 1));
    w.at(5).ok(&city_command(), resolve(&inc));
    let e = w.refuse(&staff("c1"), whistle(&inc, WhistleTarget::PairedUnits));
    assert_err(&e, ErrorKind::Conflict, "incident_closed");
    let (inc, _) = w.raise(&city_command(), rescue("g1", Level::III, 1));
    w.at(6).ok(&staff("c1"), whistle(&inc, WhistleTarget::PairedUnits));
    w.at(7).accept("u1a", &inc);
    let e = w.refuse(&staff("c1"), whistle(&inc, WhistleTarget::PairedUnits));
    assert_err(&e, ErrorKind::Conflict, "incident_filled");
    // staff of another community do not see it
    let e = w.refuse(&staff("c2"), whistle(&inc, WhistleTarget::PairedUnits));
    assert_err(&e, ErrorKind::NotFound, "unknown_incident");
}

// ---------------------------------------------------------------------------------------
// Balance (力量统筹)
// ---------------------------------------------------------------------------------------

/// d1 at war. c3 has `surplus` available members (standing in g6); c1 needs 3 and c2
/// needs 2, with nobody standing there to be offered; c4 (d2, peacetime) has a surplus of 1.
fn balance_world(surplus: usize) -> (World, String, String) {
    let mut members: Vec<Member> = (0..surplus).map(|i| member(&format!("s{i}"), "g6")).collect();
    members.push(member("p1", "g7"));
    members.push(member("busy", "g6").off_call());
    let mut w = world(members);
    w.ok(&city_command(), wartime("d1"));
    let (c1_inc, out) = w.raise(&city_command(), rescue("g1", Level::IV, 3));
    assert!(sent_to(&out).is_empty());
    let (c2_inc, out) = w.raise(&city_command(), rescue("g4", Level::IV, 2));
    assert!(sent_to(&out).is_empty());
    (w, c1_inc, c2_inc)
}

#[test]
fn a_proposal_never_moves_a_giver_into_deficit_when_deficits_compete_for_a_small_surplus() {
    for surplus in [1, 2, 3, 4] {
        let (mut w, _, _) = balance_world(surplus);
        assert_eq!(w.balance("c3"), surplus as i64);
        assert_eq!((w.balance("c1"), w.balance("c2"), w.balance("c4")), (-3, -2, 1));
        let proposals = balance::proposals(&w.state, &w.rules, w.now);
        let given: usize = proposals.iter().map(|p| p.members.len()).sum();
        assert_eq!(given, surplus.min(5), "surplus {surplus}: {proposals:?}");
        assert!(proposals.iter().all(|p| p.from == "c3"), "c4 is in peacetime: {proposals:?}");
        // the biggest deficit is served first
        assert_eq!(proposals[0].to, "c1", "{proposals:?}");
        let moved: Vec<&String> = proposals.iter().flat_map(|p| &p.members).collect();
        assert_eq!(moved.iter().collect::<HashSet<_>>().len(), moved.len(), "nobody is moved twice");
        for p in &proposals {
            assert_eq!(p.id, format!("{}>{}", p.from, p.to));
            let out = w.ok(&city_command(), transfer(&p.from, &p.to, &p.members));
            assert_eq!(kinds(&out), ["members_transferred"]);
            assert!(w.balance(&p.from) >= 0, "surplus {surplus}: {} went into deficit", p.from);
        }
        assert_eq!(w.balance("c3"), 0, "surplus {surplus}");
        assert_eq!(w.balance("c1") + w.balance("c2"), -5 + given as i64);
        assert!(w.balance("c1") <= 0 && w.balance("c2") <= 0, "no receiver is given more than it needs");
        assert!(balance::proposals(&w.state, &w.rules, w.now).is_empty(), "surplus {surplus}: nothing left to give");
    }
}

#[test]
fn applying_a_proposal_whose_member_is_no_longer_available_is_stale_and_changes_nothing() {
    let (mut w, _, _) = balance_world(2);
    let p = balance::proposals(&w.state, &w.rules, w.now).remove(0);
    assert_eq!(p.members, ["s0", "s1"]);
    w.at(1).ok(&as_member("s1"), Command::Duty { on_call: false });
    let e = w.refuse(&city_command(), transfer(&p.from, &p.to, &p.members));
    assert_err(&e, ErrorKind::Conflict, "stale_proposal");
    // members who never were available, or live elsewhere, or are unknown
    for who in ["busy", "p1", "nobody"] {
        let e = w.refuse(&city_command(), transfer("c3", "c1", &[who.to_string()]));
        assert_err(&e, ErrorKind::Conflict, "stale_proposal");
    }
    // the same member twice
    let e = w.refuse(&city_command(), transfer("c3", "c1", &["s0".into(), "s0".into()]));
    assert_err(&e, ErrorKind::Conflict, "stale_proposal");
    // the fresh proposal still applies
    let p = balance::proposals(&w.state, &w.rules, w.now).remove(0);
    assert_eq!(p.members, ["s0"]);
    w.ok(&city_command(), transfer(&p.from, &p.to, &p.members));
}

#[test]
fn applying_a_proposal_whose_deficit_is_gone_is_stale_and_changes_nothing() {
    let (mut w, c1_inc, _) = balance_world(2);
    let p = balance::proposals(&w.state, &w.rules, w.now).remove(0);
    assert_eq!(p.to, "c1");
    w.at(1).ok(&city_command(), cancel(&c1_inc));
    let e = w.refuse(&city_command(), transfer(&p.from, &p.to, &p.members));
    assert_err(&e, ErrorKind::Conflict, "stale_proposal");
    // more than the deficit is stale too
    let e = w.refuse(&city_command(), transfer("c3", "c2", &["s0".into(), "s1".into(), "s2".into()]));
    assert_eq!(e.kind, ErrorKind::Conflict);
    // a receiver in peacetime
    let e = w.refuse(&city_command(), transfer("c3", "c4", &["s0".into()]));
    assert_err(&e, ErrorKind::Conflict, "not_wartime");
    // district command: only within its district
    let e = w.refuse(&district_command("d2"), transfer("c3", "c2", &["s0".into()]));
    assert_err(&e, ErrorKind::NotFound, "unknown_community");
    w.ok(&district_command("d1"), transfer("c3", "c2", &["s0".into()]));
}
