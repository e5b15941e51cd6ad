//! Service: registration, reliability, replay, re-importing the city.

use super::*;

// ---------------------------------------------------------------------------------------
// Registration
// ---------------------------------------------------------------------------------------

/// registered / members of a unit.
fn unit_rate(w: &World, unit: &str) -> f64 {
    let ms: Vec<&Member> = w.state.city.members().iter().filter(|m| m.unit_id == unit).collect();
    ms.iter().filter(|m| m.registered).count() as f64 / ms.len() as f64
}

#[test]
fn a_new_member_joins_a_known_one_reports_at_a_new_residence_and_the_rates_follow() {
    let mut w = world(vec![
        member("a", "g1"),
        member("b", "g1").unregistered(),
        member("c", "g1").unregistered(),
        member("d", "g4").unit("u2").unregistered(),
    ]);
    assert_eq!(unit_rate(&w, "u1"), 1.0 / 3.0);

    // a new member of u1 joins, registered by their unit
    let new = member("n", "g2").team("t1").skills(&["driving"]);
    let out = w.ok(&unit_admin("u1"), register(vec![new.clone()]));
    assert_eq!(kinds(&out), ["members_registered"]);
    assert_eq!(*frames_of(&out.frames, "city", "members.registered")[0].data, json!({"members": ["n"]}));
    let n = w.idx("n");
    assert_eq!(w.state.city.members()[n as usize], Member { registered: true, ..new });
    assert_eq!(w.state.roster.members.len(), 5);
    assert_eq!(w.state.city.residence_community(n), w.state.city.community_by_id["c1"]);
    assert_eq!(unit_rate(&w, "u1"), 2.0 / 4.0);
    // and can take an order of c1 straight away
    let id = w.post(&staff("c1"), with_difficulty(order("g2", "patrol", 2), 3));
    w.claim("n", &id);

    // b reports at c1 (same residence): registered; c moves to g4 in c2
    w.ok(&staff("c1"), register(vec![member("b", "g1").unregistered()]));
    assert!(w.state.city.members()[w.idx("b") as usize].registered, "registering sets the flag");
    w.ok(&unit_admin("u1"), register(vec![member("c", "g4")]));
    let c = w.idx("c");
    assert_eq!(w.state.city.members()[c as usize].residence_grid_id, "g4");
    assert_eq!(w.state.city.residence_community(c), w.state.city.community_by_id["c2"]);
    assert_eq!(w.state.roster.home(c), w.state.city.community_by_id["c2"]);
    assert_eq!(unit_rate(&w, "u1"), 1.0);
    assert_eq!(unit_rate(&w, "u2"), 0.0);
    // c now sees c2's orders, not c1's
    let e = w.refuse(&as_member("c"), claim(&id));
    assert_err(&e, ErrorKind::NotFound, "unknown_order");
    let there = w.post(&staff("c2"), with_difficulty(order("g4", "patrol", 1), 3));
    w.claim("c", &there);
    // and community_members follows the residence
    let c1 = w.state.city.community_by_id["c1"];
    let c2 = w.state.city.community_by_id["c2"];
    assert!(!service::community_members(&w.state, c1).contains(&c));
    assert!(service::community_members(&w.state, c2).contains(&c));
}

#[test]
fn registration_is_refused_outside_the_registrars_scope_or_when_it_does_not_fit_and_changes_nothing() {
    let mut w = world(vec![member("a", "g1"), member("d", "g4").unit("u2")]);
    let cases: Vec<(Actor, Vec<Member>, ErrorKind, &str)> = vec![
        // a unit admin registers only their own unit's members, new or known; a known member
        // outside the caller's scope is a taken id, like any other
        (unit_admin("u1"), vec![member("d", "g4").unit("u2")], ErrorKind::Conflict, "member_exists"),
        (unit_admin("u1"), vec![member("new", "g1").unit("u2")], ErrorKind::Forbidden, "outside_scope"),
        // staff register residents of their own community only
        (staff("c1"), vec![member("new", "g4")], ErrorKind::Forbidden, "outside_scope"),
        (staff("c2"), vec![member("a", "g1")], ErrorKind::Conflict, "member_exists"),
        (staff("c2"), vec![member("a", "g4")], ErrorKind::Conflict, "member_exists"),
        (as_member("a"), vec![member("a", "g1")], ErrorKind::Forbidden, "role_not_allowed"),
        // a known member is not moved to another unit or team
        (city_command(), vec![member("a", "g1").unit("u2")], ErrorKind::Conflict, "member_exists"),
        (city_command(), vec![member("a", "g1").team("t1")], ErrorKind::Conflict, "member_exists"),
        (
            city_command(),
            vec![Member { residence_grid_id: "g9".into(), ..member("new", "g1") }],
            ErrorKind::Invalid,
            "unknown_grid",
        ),
        (city_command(), vec![member("new", "g1").skills(&["juggling"])], ErrorKind::Invalid, "unknown_skill"),
        (city_command(), vec![member("new", "g1"), member("new", "g2")], ErrorKind::Invalid, "duplicate_member"),
        (city_command(), vec![member("new", "g1").team("t3").unit("u1")], ErrorKind::Invalid, "invalid_member"),
        (city_command(), vec![member("new", "g1").unit("u9")], ErrorKind::Invalid, "invalid_member"),
        (city_command(), vec![], ErrorKind::Invalid, "invalid_registration"),
        // all or nothing: a good row with a bad one
        (
            unit_admin("u1"),
            vec![member("ok", "g1"), member("bad", "g1").unit("u2")],
            ErrorKind::Forbidden,
            "outside_scope",
        ),
    ];
    for (actor, members, kind, code) in cases {
        let what = format!("{actor:?} {:?}", members.iter().map(|m| &m.id).collect::<Vec<_>>());
        let e = w.refuse(&actor, register(members));
        assert_eq!((e.kind, e.code.as_str()), (kind, code), "{what}: {}", e.detail);
    }
    assert_eq!(w.state.member_index("ok"), None);
}

#[test]
fn a_unit_reports_once_to_a_community_its_teams_are_paired_with() {
    let mut w = world(vec![member("a", "g1")]);
    let reg =
        |unit: &str, community: &str| Command::RegisterUnit { unit_id: unit.into(), community_id: community.into() };
    let out = w.ok(&unit_admin("u1"), reg("u1", "c1"));
    assert_eq!(kinds(&out), ["unit_registered"]);
    for s in ["community:c1", "city"] {
        assert_eq!(
            *frames_of(&out.frames, s, "unit.registered")[0].data,
            json!({"unit_id": "u1", "community_id": "c1"})
        );
    }
    assert!(w.ok(&unit_admin("u1"), reg("u1", "c1")).events.is_empty(), "again: nothing new");
    let e = w.refuse(&unit_admin("u1"), reg("u1", "c2"));
    assert_err(&e, ErrorKind::Invalid, "not_paired");
    let e = w.refuse(&unit_admin("u2"), reg("u1", "c1"));
    assert_err(&e, ErrorKind::NotFound, "unknown_unit");
    let e = w.refuse(&staff("c1"), reg("u2", "c1"));
    assert_err(&e, ErrorKind::Forbidden, "role_not_allowed");
    w.ok(&city_command(), reg("u3", "c2"));
    assert_eq!(
        w.state.unit_registrations,
        BTreeSet::from([("u1".to_string(), "c1".to_string()), ("u3".to_string(), "c2".to_string())])
    );
}

#[test]
fn a_community_reports_on_its_residents_and_the_members_of_the_teams_it_hosts() {
    let w = world(vec![
        member("a", "g1"),
        member("b", "g3").team("t3"),
        member("p", "g4").team("t1"),
        member("q", "g6").team("w1"),
        member("x", "g4").team("t3"),
        member("y", "g7"),
    ]);
    let of = |c: &str| -> BTreeSet<String> {
        service::community_members(&w.state, w.state.city.community_by_id[c])
            .into_iter()
            .map(|i| w.state.city.members()[i as usize].id.clone())
            .collect()
    };
    let set = |ids: &[&str]| ids.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(of("c1"), set(&["a", "b", "p", "q"]));
    assert_eq!(of("c2"), set(&["b", "p", "x"]));
    assert_eq!(of("c3"), set(&["q"]));
    assert_eq!(of("c4"), set(&["y"]));
}

// ---------------------------------------------------------------------------------------
// Reliability
// ---------------------------------------------------------------------------------------

#[test]
fn reliability_is_arrived_over_offered() {
    // r stands alone in c4 (g7), so every call there is offered to r only
    let mut w = world(vec![member("r", "g7"), member("other", "g1")]);
    assert_eq!(w.ledger("r").reliability(), None);
    assert_eq!(w.figures("r").reliability, None);
    let mut t = 0;
    let mut call = |w: &mut World, answer: &str| {
        t += 2 * H;
        let (inc, out) = w.at(t).raise(&city_command(), rescue("g7", Level::IV, 1));
        assert_eq!(sent_to(&out), ["r"]);
        let offer = w.offer_id(&inc, "r");
        match answer {
            "arrive" => {
                w.at(t + 10).accept("r", &inc);
                w.at(t + 20).arrive("r", &inc);
            }
            "accept" => {
                w.at(t + 10).accept("r", &inc);
            }
            "decline" => {
                w.at(t + 10).ok(&as_member("r"), Command::Decline { offer_id: offer, reason: None });
            }
            "expire" => {
                w.at(t + 61).ok(&Actor::System, Command::Tick);
            }
            _ => unreachable!(),
        }
        w.at(t + 100).ok(&city_command(), resolve(&inc));
        // why "reliable": offered at least 3 times and arrived at least 80% of them
        match &out.events[..] {
            [.., Event { body: EventBody::OfferSent { why, .. }, .. }] => why.contains(&"reliable".to_string()),
            other => panic!("{other:?}"),
        }
    };
    let reliable: Vec<bool> = ["arrive", "arrive", "arrive", "arrive", "decline", "expire", "accept"]
        .iter()
        .map(|a| call(&mut w, a))
        .collect();
    // the 6th offer: 4 arrived of 5 offered is 80%
    assert_eq!(reliable, [false, false, false, true, true, true, false]);
    let l = w.ledger("r");
    assert_eq!((l.offered, l.accepted, l.arrived), (7, 5, 4));
    assert_close(l.reliability().unwrap(), 4.0 / 7.0);
    let fig = w.figures("r");
    assert_eq!((fig.offered, fig.accepted, fig.arrived), (7, 5, 4));
    assert_close(fig.reliability.unwrap(), 4.0 / 7.0);
    // a period holding only the first two calls
    let early = service::figures(&w.state, w.idx("r"), T0, T0 + 5 * H * 1000);
    assert_eq!((early.offered, early.arrived, early.reliability), (2, 2, Some(1.0)));
}

#[test]
fn in_wartime_reliability_breaks_a_tie_between_equally_placed_members() {
    // twins in the same cell: u (the lower index) declined once, r arrived once
    let mut w = world(vec![member("u", "g1"), member("r", "g1")]);
    let (inc, out) = w.raise(&city_command(), rescue("g1", Level::IV, 1));
    assert_eq!(sent_to(&out), ["u", "r"]);
    let off_u = w.offer_id(&inc, "u");
    w.at(10).ok(&as_member("u"), Command::Decline { offer_id: off_u, reason: None });
    w.at(20).accept("r", &inc);
    w.at(30).arrive("r", &inc);
    w.at(40).ok(&city_command(), resolve(&inc));
    assert_eq!((w.ledger("u").reliability(), w.ledger("r").reliability()), (Some(0.0), Some(1.0)));
    // arriving moved r: both stand in the same place again
    for m in ["u", "r"] {
        w.ok(&as_member(m), Command::Location { position: in_cell("g1", 0) });
    }

    let ranking = |w: &mut World, at: i64| {
        let (inc, out) = w.at(at).raise(&city_command(), rescue("g1", Level::IV, 1));
        w.ok(&city_command(), Command::Cancel { incident_id: inc, reason: None });
        sent_to(&out)
    };
    // past the recent-duty window, nothing else tells them apart
    assert_eq!(ranking(&mut w, 2 * H), ["u", "r"], "peacetime: the member index");
    w.rules.weights.reliability_m = 50.0;
    assert_eq!(ranking(&mut w, 2 * H + 1), ["u", "r"], "reliability counts only in wartime");
    w.at(2 * H + 2).ok(
        &city_command(),
        Command::SwitchMode { district_id: Some("d1".into()), mode: Mode::Wartime, reason: "drill".into() },
    );
    assert_eq!(ranking(&mut w, 2 * H + 3), ["r", "u"], "wartime: the reliable member first");
    w.rules.weights.reliability_m = 0.0;
    assert_eq!(ranking(&mut w, 2 * H + 4), ["u", "r"], "reliability_m 0: no tie-break");
}

// ---------------------------------------------------------------------------------------
// Replay
// ---------------------------------------------------------------------------------------

fn service_scenario() -> World {
    let mut w = world(vec![
        member("a", "g1"),
        member("b", "g1"),
        member("c", "g2").unregistered(),
        member("h", "g1").at("g7"),
        member("p", "g4").team("t1"),
    ]);
    w.at(1).ok(&unit_admin("u1"), register(vec![member("n", "g3").team("w1")]));
    w.at(2).ok(&unit_admin("u1"), register(vec![member("c", "g2")]));
    w.at(3).ok(&unit_admin("u1"), Command::RegisterUnit { unit_id: "u1".into(), community_id: "c1".into() });
    let (inc, _) = w.at(4).raise(&city_command(), rescue("g7", Level::IV, 1));
    w.at(5).accept("h", &inc);
    let off = w.offer_id(&inc, "h");
    w.at(6).arrive("h", &inc);
    w.at(H).ok(&city_command(), resolve(&inc));
    let easy = w.at(H + 1).post(&staff("c1"), order("g1", "patrol", 2));
    w.at(H + 2).claim("a", &easy);
    w.at(H + 3).ok(&staff("c1"), assign(&easy, "n"));
    let hard = w.at(H + 4).post(&staff("c1"), order("g2", "rescue", 2));
    w.at(H + 5).claim("b", &hard);
    // p (team t1, living in c2's g4) is the farthest of the five without hard work from the
    // order in g2, so the reservation (least hard work, then nearest) leaves p out; staff
    // assign p instead of p claiming inside the window, as before the tie-break by distance.
    w.at(H + 6).ok(&staff("c1"), assign(&hard, "p"));
    let here = w.place(&hard);
    w.at(H + 7).ok(&as_member("b"), checkin(&hard, here));
    w.at(H + 8).ok(&as_member("p"), checkin(&hard, north_of(here, 500.0)));
    w.at(3 * H).ok(&as_member("b"), checkout(&hard, here));
    w.at(3 * H).ok(&as_member("p"), checkout(&hard, here));
    w.at(3 * H + 1).ok(&staff("c1"), rate_order(&hard, "b", Rating::VeryGood));
    w.at(3 * H + 2).ok(&city_command(), rate_offer(&off, "h", Rating::Fair));
    w.at(3 * H + 3).ok(&as_member("b"), exchange("b", Currency::Points, 5.5));
    w.at(3 * H + 4).ok(&as_member("h"), exchange("h", Currency::Hours, 0.25));
    w.at(3 * H + 5).ok(&staff("c1"), cancel_order(&easy));
    let later = w.at(3 * H + 6).post(&staff("c1"), with_difficulty(order("g3", "patrol", 3), 3));
    w.at(3 * H + 7).claim("c", &later);
    w
}

#[test]
fn replaying_a_service_scenario_rebuilds_the_same_ledgers_orders_and_frames() {
    let w = service_scenario();
    w.assert_covers(&[
        "members_registered",
        "unit_registered",
        "order_posted",
        "order_claimed",
        "order_cancelled",
        "checked_in",
        "checked_out",
        "rated",
        "exchanged",
    ]);
    assert!(w.ledger("b").points_balance > 0.0 && w.ledger("h").credits.len() == 1);
    assert!(w.frames.iter().any(|f| f.kind == "order.offer"), "the hard order was reserved");
    crate::domain::testkit::assert_restores_at_every_cut(&w.log, &w.rules);
    let (state, frames) = replay(&w.log);
    // Deadlines aside (the replay also holds those already fired, and retries are soft)
    assert_eq!(durable(&state), durable(&w.state));
    assert_eq!(frames, w.frames);
    for m in ["a", "b", "c", "h", "p", "n"] {
        assert_eq!(state.roster.members[state.member_index(m).unwrap() as usize].ledger, *w.ledger(m), "{m}'s ledger");
    }

    // every stream counts from 1 without gaps
    w.assert_streams_count_from_one();

    // the replayed state decides the next step as the live one does
    let mut live = w;
    let mut again = live.beside(state);
    let steps: Vec<(Actor, Command)> = vec![
        (staff("c1"), Command::PostOrder(order("g1", "rescue", 1))),
        (as_member("a"), claim("ord-4")),
        (as_member("c"), claim("ord-3")),
        (as_member("b"), exchange("b", Currency::Hours, 1.0)),
    ];
    for (actor, cmd) in steps {
        let a = live.at(4 * H).exec(&actor, cmd.clone());
        let b = again.at(4 * H).exec(&actor, cmd);
        match (a, b) {
            (Ok(a), Ok(b)) => {
                assert_eq!(a.events, b.events);
                assert_eq!(a.frames, b.frames);
            }
            (Err(a), Err(b)) => assert_eq!(a, b),
            (a, b) => panic!("live {a:?}, replayed {b:?}"),
        }
    }
    assert_eq!(durable(&live.state), durable(&again.state));
}

// ---------------------------------------------------------------------------------------
// Re-importing the city
// ---------------------------------------------------------------------------------------

#[test]
fn a_reimport_that_renumbers_members_keeps_each_order_claim_with_its_member() {
    let mut w = world(vec![member("a", "g1"), member("b", "g1")]);
    let id = w.post(&staff("c1"), with_difficulty(order("g1", "patrol", 2), 3));
    w.claim("a", &id);
    // the same people, listed the other way round
    w.at(10)
        .ok(&city_command(), Command::ImportCity(Box::new(service_city(vec![member("b", "g1"), member("a", "g1")]))));
    let here = w.place(&id);
    // a took the order and checks in (today: refused with not_claimed, the claim now
    // points at b's index)
    let e = w.at(20).exec(&as_member("a"), checkin(&id, here)).err();
    assert_eq!(e.map(|e| e.code), None, "a's check-in was refused");
    assert!(w.claim_of(&id, "a").checkin.is_some());
    // b took nothing: b may not stamp a's record (today: accepted, and applying it panics
    // at "a claim" in service::apply)
    let e = w.refuse(&as_member("b"), checkout(&id, here));
    assert_err(&e, ErrorKind::Conflict, "not_claimed");
}

#[test]
fn a_hard_order_worked_counts_as_hard_work_for_the_next_reservation() {
    let mut w = world(vec![member("l1", "g1"), member("l2", "g1"), member("l3", "g1")]);
    let first = w.post(&staff("c1"), order("g1", "rescue", 1));
    assert_eq!(w.state.orders[&first].priority, HashSet::from([w.idx("l1"), w.idx("l2")]));
    w.claim("l1", &first);
    w.work("l1", &first, 3 * H);
    w.ok(&staff("c1"), rate_order(&first, "l1", Rating::Good));
    // l1 has now done 3 h of difficulty-5 work; l2 and l3 none
    let next = w.post(&staff("c1"), order("g1", "rescue", 1));
    assert_eq!(w.state.orders[&next].priority, HashSet::from([w.idx("l2"), w.idx("l3")]));
}
