//! Wartime: modes (平战转换): reach, TTL, the own-community rule.

use super::*;

// ---------------------------------------------------------------------------------------
// Modes: reach, TTL, the own-community rule
// ---------------------------------------------------------------------------------------

#[test]
fn switching_to_wartime_refills_an_open_call_with_the_wider_reach_and_the_wartime_ttl() {
    let mut w =
        world(vec![member("near", "g1").at("g2"), member("far", "g1").at("g3"), member("next_door", "g4").at("g4")]);
    let (inc, out) = w.raise(&city_command(), rescue("g1", Level::IV, 5));
    assert_eq!(sent_to(&out), ["near"], "peacetime IV reaches the grid and its neighbours");
    assert_eq!(w.state.incidents[&inc].offers[0].expires_at, T0 + 60_000, "the peacetime TTL");

    let out = w.at(5).ok(&city_command(), wartime("d1"));
    assert_eq!(kinds(&out)[0], "mode_switched");
    assert_eq!(sent_to(&out), ["far"], "wartime IV reaches the whole community, and no further");
    let far = &w.state.incidents[&inc].offers[1];
    assert_eq!(far.expires_at, T0 + 5_000 + 30_000, "the wartime TTL");
    assert_eq!(w.state.incidents[&inc].status, Status::Open);
    // mode.switched goes to the city's and the district's command streams
    for s in ["city", "district:d1"] {
        let f = frames_of(&w.frames, s, "mode.switched");
        assert_eq!(f.len(), 1, "{s}");
        assert_eq!(f[0].data["mode"], "wartime");
        assert_eq!(f[0].data["district_id"], "d1");
    }
    assert!(frames_of(&w.frames, "district:d2", "mode.switched").is_empty());
}

/// Every member offered a fresh call of this level in g1, in the current mode.
fn reached(w: &mut World, level: Level) -> BTreeSet<String> {
    let (inc, out) = w.raise(&city_command(), rescue("g1", level, 20));
    let now = w.now;
    w.at((now - T0) / 1000 + 1).ok(&city_command(), cancel(&inc));
    as_set(sent_to(&out))
}

#[test]
fn the_same_level_reaches_farther_in_wartime() {
    let mut w =
        world(vec![member("c1", "g1").at("g3"), member("c2", "g4").at("g5"), member("c3", "g6"), member("c4", "g7")]);
    let peace: Vec<_> = [Level::IV, Level::III, Level::II, Level::I].iter().map(|&l| reached(&mut w, l)).collect();
    let t = (w.now - T0) / 1000;
    w.at(t + 1).ok(&city_command(), wartime("d1"));
    let war: Vec<_> = [Level::IV, Level::III, Level::II, Level::I].iter().map(|&l| reached(&mut w, l)).collect();
    assert_eq!(peace[0], set(&[]), "IV: g1 and g2 only");
    assert_eq!(war[0], set(&["c1"]), "IV: the community");
    assert_eq!(peace[1], set(&["c1"]), "III: the community");
    assert_eq!(war[1], set(&["c1", "c2", "c3"]), "III: the street, then the district");
    assert_eq!(peace[2], set(&["c1", "c2", "c3"]), "II: the street, then the district");
    assert_eq!(war[2], set(&["c1", "c2", "c3", "c4"]), "II: the district, then the city");
    assert_eq!(peace[3], war[3], "I: the city either way");
}

#[test]
fn a_district_in_peacetime_keeps_the_peacetime_reach_when_another_goes_to_war() {
    let mut w = world(vec![member("c4", "g7")]);
    w.ok(&city_command(), wartime("d1"));
    // an incident in d2 (g7): peacetime TTL and reach
    let (inc, out) = w.raise(&city_command(), rescue("g7", Level::IV, 1));
    assert_eq!(sent_to(&out), ["c4"]);
    assert_eq!(w.state.incidents[&inc].offers[0].expires_at, T0 + 60_000);
}

fn own_community_world() -> World {
    let mut rules = Rules::for_tests();
    rules.peacetime_own_community = true;
    World::with_city_and_rules(
        war_city(vec![
            member("resident", "g1").at("g2"),
            member("visitor", "g4").at("g2"),
            member("paired", "g4").team("w1").at("g2"),
            member("moved", "g4").at("g4"),
        ]),
        rules,
    )
}

#[test]
fn in_peacetime_a_call_below_level_ii_goes_only_to_the_communitys_own_members() {
    let mut w = own_community_world();
    // Wartime in d1: the rule does not hold; every member standing in c1 is offered, and
    // c1's deficit is balanced from c2's surplus ("moved" is re-pointed to c1).
    w.ok(&city_command(), wartime("d1"));
    let (inc, out) = w.raise(&city_command(), rescue("g3", Level::IV, 3));
    assert_eq!(as_set(sent_to(&out)), set(&["resident", "visitor", "paired"]));
    let proposals = balance::proposals(&w.state, &w.rules, w.now);
    assert_eq!(proposals.len(), 1, "{proposals:?}");
    assert_eq!((proposals[0].from.as_str(), proposals[0].to.as_str()), ("c2", "c1"));
    assert_eq!(proposals[0].members, ["moved"]);
    let out = w.at(1).ok(&city_command(), transfer("c2", "c1", &proposals[0].members));
    assert_eq!(kinds(&out), ["members_transferred"]);
    let c1 = w.state.city.community_by_id["c1"];
    assert_eq!(w.rt("moved").home, Some(c1));
    let f = frames_of(&w.frames, "member:moved", "transfer");
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].data["to"], "c1");
    w.at(2).ok(&city_command(), cancel(&inc));
    w.at(3).ok(&city_command(), peacetime("d1"));
    w.at(4).ok(&as_member("moved"), Command::Location { position: in_cell("g3", 0) });

    // Peacetime, level III (the community): the resident, the paired team's member and the
    // transferred member; not the visitor who merely stands there.
    let (inc, out) = w.at(5).raise(&city_command(), rescue("g1", Level::III, 10));
    assert_eq!(as_set(sent_to(&out)), set(&["resident", "paired", "moved"]));
    w.at(6).ok(&city_command(), cancel(&inc));

    // Level IV, then escalated to III: the escalation lifts the rule.
    let (inc, out) = w.at(7).raise(&city_command(), rescue("g1", Level::IV, 10));
    assert_eq!(as_set(sent_to(&out)), set(&["resident", "paired"]), "IV reaches g1 and g2; moved stands in g3");
    let out = w.at(8).ok(&staff("c1"), Command::Escalate { incident_id: inc.clone() });
    assert_eq!(w.state.incidents[&inc].level, Level::III);
    assert_eq!(as_set(sent_to(&out)), set(&["visitor", "moved"]), "escalated: no longer only the community's own");
}

#[test]
fn without_the_own_community_rule_a_peacetime_call_reaches_visitors_too() {
    let mut w = own_community_world();
    w.rules.peacetime_own_community = false;
    let (_, out) = w.raise(&city_command(), rescue("g1", Level::III, 10));
    assert_eq!(as_set(sent_to(&out)), set(&["resident", "visitor", "paired"]));
}

#[test]
fn switching_to_the_mode_already_in_is_a_conflict() {
    let mut w = world(vec![member("a", "g1")]);
    let e = w.refuse(&city_command(), switch(None, Mode::Peacetime));
    assert_err(&e, ErrorKind::Conflict, "already_in_mode");
    let e = w.refuse(&city_command(), peacetime("d1"));
    assert_err(&e, ErrorKind::Conflict, "already_in_mode");
    w.ok(&city_command(), wartime("d1"));
    let e = w.refuse(&district_command("d1"), wartime("d1"));
    assert_err(&e, ErrorKind::Conflict, "already_in_mode");
    w.ok(&city_command(), switch(None, Mode::Wartime));
    let e = w.refuse(&city_command(), switch(None, Mode::Wartime));
    assert_err(&e, ErrorKind::Conflict, "already_in_mode");
    // a mode switch needs a reason
    let e = w
        .refuse(&city_command(), Command::SwitchMode { district_id: None, mode: Mode::Peacetime, reason: "  ".into() });
    assert_err(&e, ErrorKind::Invalid, "reason_required");
}

#[test]
fn district_command_switches_only_its_own_district_and_only_city_command_switches_the_city() {
    let mut w = world(vec![member("a", "g1")]);
    let e = w.refuse(&district_command("d1"), wartime("d2"));
    assert_err(&e, ErrorKind::NotFound, "unknown_district");
    let e = w.refuse(&city_command(), wartime("d9"));
    assert_err(&e, ErrorKind::NotFound, "unknown_district");
    let e = w.refuse(&district_command("d1"), switch(None, Mode::Wartime));
    assert_err(&e, ErrorKind::Forbidden, "city_command_only");
    let e = w.refuse(&staff("c1"), wartime("d1"));
    assert_eq!(e.kind, ErrorKind::Forbidden, "{}", e.code);
    let e = w.refuse(&as_member("a"), wartime("d1"));
    assert_eq!(e.kind, ErrorKind::Forbidden, "{}", e.code);

    let out = w.ok(&district_command("d1"), wartime("d1"));
    assert_eq!(out.events[0].actor, "command:d1");
    assert!(w.state.wartime("d1") && !w.state.wartime("d2"));
    w.ok(&city_command(), switch(None, Mode::Wartime));
    assert!(w.state.wartime("d2"));
    assert_eq!(frames_of(&w.frames, "district:d2", "mode.switched").len(), 1, "a city switch reaches every district");
}

#[test]
fn wartime_forces_the_assault_members_paired_in_the_district_on_call_and_standing_down_releases_them() {
    let mut w = world(vec![
        member("assault_d1", "g1").team("t1").at("g3").off_call(),
        member("assault_d2", "g7").team("t4").off_call(),
        member("work_d1", "g1").team("w1").at("g3").off_call(),
        member("loner", "g1").at("g3").off_call(),
    ]);
    let forced = |w: &World| -> BTreeSet<String> {
        ["assault_d1", "assault_d2", "work_d1", "loner"]
            .iter()
            .filter(|m| w.rt(m).forced)
            .map(|m| m.to_string())
            .collect()
    };
    assert_eq!(forced(&w), set(&[]));
    w.ok(&city_command(), wartime("d1"));
    assert_eq!(forced(&w), set(&["assault_d1"]));
    assert!(!w.rt("assault_d1").on_call, "forced is not the member's own choice");
    let (inc, out) = w.raise(&city_command(), rescue("g1", Level::IV, 5));
    assert_eq!(sent_to(&out), ["assault_d1"], "forced members are available; the others stay off call");
    w.ok(&city_command(), cancel(&inc));

    w.ok(&city_command(), switch(None, Mode::Wartime));
    assert_eq!(forced(&w), set(&["assault_d1", "assault_d2"]));
    w.ok(&city_command(), switch(None, Mode::Peacetime));
    assert_eq!(forced(&w), set(&["assault_d1"]), "d1 is still at war on its own switch");
    w.ok(&city_command(), peacetime("d1"));
    assert_eq!(forced(&w), set(&[]));
    let (_, out) = w.raise(&city_command(), rescue("g1", Level::I, 5));
    assert_eq!(sent_to(&out), Vec::<String>::new(), "released: off call again");
}
