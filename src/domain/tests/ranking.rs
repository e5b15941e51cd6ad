//! Incidents: who is offered first, how far each level reaches, how many offers go out.

use super::*;

// ---------------------------------------------------------------------------------------
// 1. Candidate order
// ---------------------------------------------------------------------------------------

// Level I reaches everyone, so in these tests only the ranking decides who is offered first.

#[test]
fn the_nearest_member_is_offered_first() {
    let c = grid_center("g1");
    // declared far to near, so the member index cannot explain the order
    let mut w = world(vec![
        member("far", offset(c, 900.0, 0.0)),
        member("mid", offset(c, 0.0, 400.0)),
        member("near", offset(c, -100.0, 0.0)),
    ]);
    let (inc, out) = w.raise(&city_command(), rescue("g1", Level::I, 2));
    assert_eq!(sent_to(&out), ["near", "mid", "far"]);
    let distances: Vec<f64> = w.incident(&inc).offers.iter().map(|o| o.distance_m).collect();
    for (got, want) in distances.iter().zip([100.0, 400.0, 900.0]) {
        assert!((got - want).abs() < 1.0, "distance {got}, expected about {want}");
    }
    // distances are logged to a tenth of a metre
    for d in distances {
        assert_eq!(d, (d * 10.0).round() / 10.0);
    }
}

#[test]
fn a_member_lacking_a_required_skill_ranks_after_a_farther_member_who_has_it() {
    let c = grid_center("g1");
    let mut w = world(vec![
        member("near_unskilled", offset(c, 100.0, 0.0)).skills(&["driving"]),
        member("skilled_1500", offset(c, 1500.0, 0.0)).skills(&["medical"]),
        member("skilled_2500", offset(c, 2500.0, 0.0)).skills(&["medical", "driving"]),
    ]);
    let r = RaiseIncident { skills: vec!["medical".into()], ..rescue("g1", Level::I, 2) };
    let (_, out) = w.raise(&city_command(), r);
    // scores: 1500; 100 + 2000 = 2100; 2500. A missing skill costs exactly 2000 m.
    assert_eq!(sent_to(&out), ["skilled_1500", "near_unskilled", "skilled_2500"]);
}

#[test]
fn each_missing_skill_adds_to_the_handicap() {
    let c = grid_center("g1");
    let mut w = world(vec![
        member("none", offset(c, 100.0, 0.0)),
        member("one", offset(c, 2200.0, 0.0)).skills(&["medical"]),
        member("both", offset(c, 3900.0, 0.0)).skills(&["driving", "medical"]),
    ]);
    let r = RaiseIncident { skills: vec!["medical".into(), "driving".into()], ..rescue("g1", Level::I, 2) };
    let (_, out) = w.raise(&city_command(), r);
    // scores: 3900; 2200 + 2000 = 4200; 100 + 4000 = 4100
    assert_eq!(sent_to(&out), ["both", "none", "one"]);
}

#[test]
fn the_residence_grid_bonus_breaks_a_near_tie() {
    let c = grid_center("g1");
    let mut w = world(vec![
        member("stranger", offset(c, 100.0, 0.0)),
        member("resident_near", offset(c, 200.0, 0.0)).living_in("g1"),
        member("resident_far", offset(c, 300.0, 0.0)).living_in("g1"),
    ]);
    let (_, out) = w.raise(&city_command(), rescue("g1", Level::I, 2));
    // scores: 100; 200 - 150 = 50; 300 - 150 = 150
    assert_eq!(sent_to(&out), ["resident_near", "stranger", "resident_far"]);

    // living in the community but not in the incident's grid earns nothing
    let mut w = world(vec![
        member("stranger", offset(c, 100.0, 0.0)),
        member("neighbour", offset(c, 200.0, 0.0)).living_in("g2"),
    ]);
    let (_, out) = w.raise(&city_command(), rescue("g1", Level::I, 2));
    assert_eq!(sent_to(&out), ["stranger", "neighbour"]);
}

#[test]
fn the_paired_team_bonus_breaks_a_near_tie_in_the_paired_community_only() {
    let c1 = grid_center("g1");
    let members = |c: Position| {
        vec![
            member("stranger", offset(c, 100.0, 0.0)),
            member("teammate_near", offset(c, 350.0, 0.0)).team("t1"),
            member("teammate_far", offset(c, 450.0, 0.0)).team("t1"),
        ]
    };
    let mut w = world(members(c1));
    let (_, out) = w.raise(&city_command(), rescue("g1", Level::I, 2));
    // t1 is paired with c1: scores 100; 350 - 300 = 50; 450 - 300 = 150
    assert_eq!(sent_to(&out), ["teammate_near", "stranger", "teammate_far"]);

    // in g3 (community c2) the team has no pairing: plain distance
    let c3 = grid_center("g3");
    let mut w = world(members(c3));
    let (_, out) = w.raise(&city_command(), rescue("g3", Level::I, 2));
    assert_eq!(sent_to(&out), ["stranger", "teammate_near", "teammate_far"]);
}

#[test]
fn a_recent_duty_ranks_a_member_after_an_equally_placed_one_and_the_penalty_fades() {
    let spot = offset(grid_center("g1"), 200.0, 0.0);
    // "busy" has the lower index, so wins every exact tie
    let mut w = world(vec![member("busy", spot), member("fresh", spot)]);

    let (a, out) = w.raise(&city_command(), rescue("g1", Level::I, 1));
    assert_eq!(sent_to(&out), ["busy", "fresh"], "an exact tie goes to the lower member index");
    w.at(5).accept("busy", &a);
    w.at(10).ok(&city_command(), resolve(&a));
    let busy = w.state.member_index("busy").unwrap() as usize;
    assert_eq!(w.state.roster.members[busy].last_duty_at, Some(T0 + 5_000));
    assert_eq!(w.state.roster.members[busy].duties, 1);

    // 15 s after the duty the penalty is almost the whole 1000 m
    let (b, out) = w.at(20).raise(&city_command(), rescue("g1", Level::I, 1));
    assert_eq!(sent_to(&out), ["fresh", "busy"]);
    w.ok(&city_command(), cancel(&b));

    // the penalty fades linearly over the hour: half of it after 30 minutes
    let offered = HashSet::new();
    let target = Target {
        location: grid_center("g1"),
        grid: w.state.city.grid_flat["g1"],
        skills: &[],
        offered: &offered,
        difficulty: 5,
        class: crate::domain::workload::TaskClass::Hard,
        own_community: None,
        wartime: false,
    };
    let score_gap = |w: &World, now: Ts| {
        let found = matching::find(&w.state.city, &w.state.roster, &w.rules, &target, Reach::City, 10, now);
        let score = |id: &str| found.iter().find(|c| c.member == w.state.member_index(id).unwrap()).unwrap().score;
        score("busy") - score("fresh")
    };
    let duty = T0 + 5_000;
    assert!((score_gap(&w, duty) - 1000.0).abs() < 1e-6);
    assert!((score_gap(&w, duty + 1_800_000) - 500.0).abs() < 1e-6);
    assert!((score_gap(&w, duty + 2_700_000) - 250.0).abs() < 1e-6);
    assert!(score_gap(&w, duty + 3_600_000).abs() < 1e-6);
    assert!(score_gap(&w, duty + 7_200_000).abs() < 1e-6, "no bonus for a duty long ago");

    // an hour after the duty, the two are equal again and the index decides
    let (_, out) = w.at(5 + 3600).raise(&city_command(), rescue("g1", Level::I, 1));
    assert_eq!(sent_to(&out), ["busy", "fresh"]);
}

#[test]
fn ties_are_broken_by_member_index_deterministically() {
    let spot = in_cell("g1", 1);
    let members = || vec![member("zulu", spot), member("yankee", spot), member("xray", spot), member("whiskey", spot)];
    let mut orders = Vec::new();
    for _ in 0..3 {
        let mut w = world(members());
        let (_, out) = w.raise(&city_command(), rescue("g1", Level::IV, 2));
        orders.push(sent_to(&out));
    }
    assert_eq!(orders[0], ["zulu", "yankee", "xray"], "declaration order, not id order");
    assert!(orders.iter().all(|o| *o == orders[0]));
}

// ---------------------------------------------------------------------------------------
// 2. Reach per level
// ---------------------------------------------------------------------------------------

/// One member in each grid (g1..g5) and one outside every grid; who is offered a call of
/// this level in this grid, with plenty of offers to go round?
fn reached(level: Level, grid: &str) -> BTreeSet<String> {
    let mut w = outpost_world(vec![
        member("in_g1", in_cell("g1", 0)),
        member("in_g2", in_cell("g2", 1)),
        member("in_g3", in_cell("g3", 0)),
        member("in_g4", in_cell("g4", 1)),
        member("in_g5", in_cell("g5", 0)),
        member("nowhere", nowhere()),
    ]);
    let (inc, _) = w.raise(&city_command(), rescue(grid, level, 10));
    as_set(w.offered(&inc))
}

#[test]
fn level_iv_reaches_the_grid_and_its_neighbours_only() {
    assert_eq!(reached(Level::IV, "g1"), set(&["in_g1", "in_g2"]));
    assert_eq!(reached(Level::IV, "g4"), set(&["in_g3", "in_g4"]));
}

#[test]
fn level_iv_on_a_community_border_reaches_into_the_neighbouring_community() {
    // g2 (c1) touches g3 (c2)
    assert_eq!(reached(Level::IV, "g2"), set(&["in_g1", "in_g2", "in_g3"]));
}

#[test]
fn level_iii_reaches_the_whole_community_only() {
    assert_eq!(reached(Level::III, "g1"), set(&["in_g1", "in_g2", "in_g5"]));
    assert_eq!(reached(Level::III, "g2"), set(&["in_g1", "in_g2", "in_g5"]));
    assert_eq!(reached(Level::III, "g3"), set(&["in_g3", "in_g4"]));
}

#[test]
fn level_ii_reaches_the_street_and_district_but_not_outside_the_grids() {
    assert_eq!(reached(Level::II, "g1"), set(&["in_g1", "in_g2", "in_g3", "in_g4", "in_g5"]));
}

#[test]
fn level_i_reaches_anyone_even_outside_every_grid() {
    assert_eq!(reached(Level::I, "g1"), set(&["in_g1", "in_g2", "in_g3", "in_g4", "in_g5", "nowhere"]));
}

#[test]
fn reach_follows_the_last_known_position_not_the_residence() {
    let mut w = world(vec![
        member("lives_in_g1_now_in_g4", in_cell("g4", 0)).living_in("g1"),
        member("lives_in_g4_now_in_g1", in_cell("g4", 1)),
    ]);
    w.ok(&as_member("lives_in_g4_now_in_g1"), Command::Location { position: in_cell("g1", 0) });
    let (inc, _) = w.raise(&city_command(), rescue("g1", Level::IV, 1));
    assert_eq!(w.offered(&inc), ["lives_in_g4_now_in_g1"]);
}

// ---------------------------------------------------------------------------------------
// 3. How many offers, and to whom
// ---------------------------------------------------------------------------------------

#[test]
fn offers_sent_are_the_headcount_times_the_overbook_rounded_up() {
    let crowd = || (0..12).map(|i| member(&format!("m{i:02}"), in_cell("g1", i % 2))).collect::<Vec<_>>();
    for (headcount, offers) in [(1, 2), (2, 3), (3, 5), (4, 6), (8, 12)] {
        let mut w = world(crowd());
        let (inc, out) = w.raise(&city_command(), rescue("g1", Level::IV, headcount));
        assert_eq!(sent_to(&out).len(), offers, "headcount {headcount}");
        assert_eq!(w.incident(&inc).open_offers(), offers as u32);
        assert_eq!(w.incident(&inc).offers_wanted(w.rules.overbook), 0);
    }
    // short of candidates: everyone available is offered and a retry is scheduled
    let mut w = world(crowd());
    let (inc, out) = w.raise(&city_command(), rescue("g1", Level::IV, 9));
    assert_eq!(sent_to(&out).len(), 12);
    assert_eq!(w.incident(&inc).offers_wanted(w.rules.overbook), 2);
    assert_eq!(w.state.next_deadline(), Some(T0 + 10_000), "retry after retry_s");
}

#[test]
fn members_off_call_are_never_offered() {
    let mut w = world(vec![member("resting", in_cell("g1", 0)).off_call(), member("ready", in_cell("g2", 0))]);
    let (inc, out) = w.raise(&city_command(), rescue("g1", Level::I, 1));
    assert_eq!(sent_to(&out), ["ready"], "only the on-call member, though the resting one is nearer");

    // still not offered when looking again
    let out = w.at(10).tick();
    assert!(sent_to(&out).is_empty());

    // back on call: the next retry offers them
    let out = w.at(12).ok(&as_member("resting"), Command::Duty { on_call: true });
    assert_eq!(kinds(&out), ["duty_changed"]);
    let out = w.at(20).tick();
    assert_eq!(sent_to(&out), ["resting"]);
    assert_eq!(as_set(w.offered(&inc)), set(&["ready", "resting"]));

    // a duty command that changes nothing logs nothing
    let out = w.ok(&as_member("resting"), Command::Duty { on_call: true });
    assert!(out.events.is_empty());
}

#[test]
fn members_engaged_with_another_open_offer_are_never_offered() {
    let mut w = world(vec![member("a", in_cell("g1", 0)), member("b", in_cell("g1", 1))]);
    let (first, out) = w.raise(&city_command(), rescue("g1", Level::IV, 1));
    assert_eq!(as_set(sent_to(&out)), set(&["a", "b"]));
    assert_eq!(w.engaged("a"), Some(w.offer_id(&first, "a")));

    let (second, out) = w.at(1).raise(&city_command(), rescue("g1", Level::IV, 1));
    assert!(sent_to(&out).is_empty(), "both members hold an open offer");
    assert!(w.incident(&second).offers.is_empty());

    // a accepts the first: filled, b's surplus offer is revoked and b is free again
    w.at(2).accept("a", &first);
    assert_eq!(w.engaged("b"), None);
    assert_eq!(w.engaged("a"), Some(w.offer_id(&first, "a")), "an accepted member stays engaged");

    // the second incident's retry offers b, never a (still on duty)
    let out = w.at(11).tick();
    assert_eq!(sent_to(&out), ["b"]);
    assert_eq!(w.offered(&second), ["b"]);
}

#[test]
fn a_member_is_never_offered_the_same_incident_twice() {
    let mut w = world(vec![member("a", in_cell("g1", 0)), member("b", in_cell("g1", 1))]);
    let (inc, _) = w.raise(&city_command(), rescue("g1", Level::IV, 1));
    let b_offer = w.offer_id(&inc, "b");
    // b declines, a lets the offer expire; both are free and on call afterwards
    let out = w.at(1).ok(&as_member("b"), decline(&b_offer));
    assert_eq!(kinds(&out), ["offer_declined"], "no one left to offer");
    let out = w.at(60).tick();
    assert_eq!(kinds(&out), ["offer_expired"]);
    assert_eq!((w.engaged("a"), w.engaged("b")), (None, None));
    // retries for the rest of level IV's time find no one new
    for t in (70..120).step_by(10) {
        let out = w.at(t).tick();
        assert!(sent_to(&out).is_empty(), "at {t} s: {:?}", kinds(&out));
    }
    assert_eq!(w.incident(&inc).offers.len(), 2);
}

/// `first_offers` (the demo's choice of the member it prints) predicts, without emitting
/// anything, exactly the members a raise in that grid then offers, in order: at level III
/// (the community's reach; peacetime's own-community rule) and at level I (the whole city).
#[test]
fn first_offers_predicts_whom_a_raise_offers() {
    use crate::domain::incidents::first_offers;
    let c = grid_center("g1");
    let members = || {
        vec![
            member("near", offset(c, 150.0, 0.0)),
            member("mid", offset(c, 0.0, 450.0)),
            member("far", offset(c, 1900.0, 0.0)),
            member("farther", offset(c, -2600.0, 0.0)),
        ]
    };
    for (level, headcount) in [(Level::III, 2), (Level::I, 1), (Level::I, 3)] {
        let mut w = world(members());
        let grid = *w.state.city.grid_flat.get("g1").unwrap();
        let predicted: Vec<String> = first_offers(&w.state, &w.rules, grid, "rescue", level, headcount, w.now)
            .into_iter()
            .map(|i| w.state.city.members()[i as usize].id.clone())
            .collect();
        let (_, out) = w.raise(&city_command(), rescue("g1", level, headcount));
        assert!(!predicted.is_empty());
        assert_eq!(predicted, sent_to(&out), "level {level:?}, headcount {headcount}");
    }
}
