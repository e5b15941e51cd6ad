//! Domain tests: the dispatcher driven through `execute`, with time passed in.
//!
//! The fixture is `org::tests::tiny_city`: one district d1, one street s1, communities c1
//! (grids g1, g2) and c2 (grids g3, g4), laid out eastward in a row of res-9 cells about
//! 320 m apart, two cells per grid; unit u1 with assault team t1 paired with c1.
//! `outpost_city` adds a detached grid g5 to c1, west of g1, so that the community reach
//! (level III) is visibly wider than the grid reach (level IV).
//!
//! Rules are `Rules::for_tests()`: offers live 60 s, overbook 1.5, geofence 200 m, and
//! levels IV (grid, escalate after 120 s), III (community, 180 s), II (street then
//! district, 300 s), I (city).

use std::collections::{BTreeSet, HashSet};

use super::dispatcher::{Actor, Command, Deadline, ErrorKind, RaiseIncident, Reply, State, execute};
use super::event::{EscalationReason, EventBody, Frame, RevokeReason, Ts};
use super::geo::{Cell, Position};
use super::incident::{OfferState, Status};
use super::matching::{self, Target};
use super::org::tests::tiny_city;
use super::org::{City, CityIndex, Grid, Member};
use super::response::{Level, Reach, Rules};
use super::testkit::*;

// ---------------------------------------------------------------------------------------
// Fixture: places
// ---------------------------------------------------------------------------------------

/// `tiny_city` plus grid g5 in community c1: one cell three cells west of g1, touching no
/// other grid.
fn outpost_city(members: Vec<Member>) -> City {
    let mut city = tiny_city(members);
    let mut cell = city.communities[0].grids[0].cells[0];
    for _ in 0..3 {
        cell = cell.ring(1).into_iter().min_by(|a, b| a.center().lng.total_cmp(&b.center().lng)).unwrap();
    }
    city.communities[0].grids.push(Grid { id: "g5".into(), cells: vec![cell] });
    city
}

/// The geography only (no members), to compute positions.
fn geography() -> CityIndex {
    CityIndex::build(outpost_city(vec![])).unwrap()
}

/// The i-th cell of a grid (g1..g5).
fn cell_of(grid: &str, i: usize) -> Cell {
    let city = outpost_city(vec![]);
    city.communities
        .iter()
        .flat_map(|c| c.grids.iter())
        .find(|g| g.id == grid)
        .unwrap_or_else(|| panic!("no grid {grid}"))
        .cells[i]
}

/// The centre of the i-th cell of a grid: where members are placed.
fn in_cell(grid: &str, i: usize) -> Position {
    cell_of(grid, i).center()
}

/// Where an incident raised by grid id is located (the mean of the grid's cell centres).
fn grid_center(grid: &str) -> Position {
    let idx = geography();
    idx.grid_centers[idx.grid_flat[grid] as usize]
}

/// A position `east_m` metres east and `north_m` metres north of `p` (flat-earth offset,
/// accurate to well under a metre at these distances).
fn offset(p: Position, east_m: f64, north_m: f64) -> Position {
    const M_PER_DEG: f64 = 111_195.0;
    Position::new(p.lat + north_m / M_PER_DEG, p.lng + east_m / (M_PER_DEG * p.lat.to_radians().cos())).unwrap()
}

// ---------------------------------------------------------------------------------------
// Fixture: members
// ---------------------------------------------------------------------------------------

/// An on-call member of unit u1, in no team, without skills, living in g4 (so that no
/// incident in g1..g3 gives them the residence bonus).
fn member(id: &str, position: Position) -> Member {
    Member {
        id: id.into(),
        name: id.to_uppercase(),
        unit_id: "u1".into(),
        team_id: None,
        residence_grid_id: "g4".into(),
        skills: Vec::new(),
        position,
        on_call: true,
        registered: true,
    }
}

// ---------------------------------------------------------------------------------------
// Fixture: actors and commands
// ---------------------------------------------------------------------------------------

fn accept(offer_id: &str) -> Command {
    Command::Accept { offer_id: offer_id.into() }
}

fn decline(offer_id: &str) -> Command {
    Command::Decline { offer_id: offer_id.into(), reason: None }
}

fn arrive(offer_id: &str, position: Position) -> Command {
    Command::Arrive { offer_id: offer_id.into(), position }
}

fn escalate(incident_id: &str) -> Command {
    Command::Escalate { incident_id: incident_id.into() }
}

// ---------------------------------------------------------------------------------------
// Fixture: the world (the driver is `testkit::World`)
// ---------------------------------------------------------------------------------------

/// `tiny_city` with these members, imported by the system at `T0`.
fn world(members: Vec<Member>) -> World {
    World::with_city(tiny_city(members))
}

/// `outpost_city` (with grid g5 in c1) with these members.
fn outpost_world(members: Vec<Member>) -> World {
    World::with_city(outpost_city(members))
}

impl World {
    fn engaged(&self, member_id: &str) -> Option<String> {
        self.rt(member_id).engaged.clone()
    }

    /// Every member ever offered this incident, in order of offering.
    fn offered(&self, incident_id: &str) -> Vec<String> {
        self.incident(incident_id).offers.iter().map(|o| o.member_id.clone()).collect()
    }
}

// ---------------------------------------------------------------------------------------
// The fixture itself
// ---------------------------------------------------------------------------------------

#[test]
fn fixture_geography_is_as_the_tests_assume() {
    let idx = geography();
    let nbrs = |g: &str| -> BTreeSet<String> {
        idx.grid_neighbours[idx.grid_flat[g] as usize].iter().map(|&n| idx.grid_ids[n as usize].clone()).collect()
    };
    assert_eq!(nbrs("g1"), set(&["g2"]));
    assert_eq!(nbrs("g2"), set(&["g1", "g3"]));
    assert_eq!(nbrs("g4"), set(&["g3"]));
    assert_eq!(nbrs("g5"), set(&[]), "the outpost touches no grid");
    assert_eq!(idx.grid_places[idx.grid_flat["g5"] as usize].community, idx.community_by_id["c1"]);
    assert_eq!(idx.grid_at(nowhere()), None);
    // the members' cells are where we think they are
    for g in ["g1", "g2", "g3", "g4", "g5"] {
        assert_eq!(idx.grid_ids[idx.grid_at(in_cell(g, 0)).unwrap() as usize], g);
    }
    // the offset helper is accurate enough for ranking by tens of metres
    let c = grid_center("g1");
    for d in [50.0, 300.0, 2500.0] {
        let got = c.distance_m(offset(c, d, 0.0));
        assert!((got - d).abs() < 1.0, "{d} m east measured {got}");
    }
}

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

// ---------------------------------------------------------------------------------------
// 4. Expiry
// ---------------------------------------------------------------------------------------

#[test]
fn an_offer_expires_at_its_deadline_and_the_next_candidate_is_offered() {
    let c = grid_center("g1");
    let mut w = world(vec![
        member("a", offset(c, 10.0, 0.0)),
        member("b", offset(c, 100.0, 0.0)),
        member("c", offset(c, 400.0, 0.0)),
        member("d", offset(c, 700.0, 0.0)),
    ]);
    let (inc, out) = w.raise(&city_command(), rescue("g1", Level::IV, 1));
    assert_eq!(sent_to(&out), ["a", "b"]);
    let a_offer = w.offer(&inc, "a").clone();
    assert_eq!(a_offer.expires_at, T0 + 60_000);
    assert_eq!(w.state.next_deadline(), Some(T0 + 60_000), "the offers expire before the escalation");

    // a tick before the deadline does nothing
    let out = w.at_ms(59_999).tick();
    assert!(out.events.is_empty());
    assert_eq!(w.offer(&inc, "a").state, OfferState::Offered);

    // at the deadline: both expire, the next two candidates are offered
    let out = w.at(60).tick();
    assert_eq!(kinds(&out), ["offer_expired", "offer_expired", "offer_sent", "offer_sent"]);
    assert_eq!(sent_to(&out), ["c", "d"]);
    assert_eq!(w.offer(&inc, "a").state, OfferState::Expired);
    assert_eq!(w.offer(&inc, "a").answered_at, Some(T0 + 60_000));
    assert_eq!(w.offer(&inc, "c").expires_at, T0 + 120_000);
    assert_eq!((w.engaged("a"), w.engaged("b")), (None, None));
    // the expired member is told, with the reason
    let revoked: Vec<&Frame> = out.frames.iter().filter(|f| f.stream == "member:a").collect();
    assert_eq!(revoked.len(), 1);
    assert_eq!(revoked[0].kind, "offer.revoked");
    assert_eq!(revoked[0].data["reason"], "expired");
    assert_eq!(revoked[0].data["offer_id"], a_offer.id.as_str());

    // a tick with nothing due does nothing
    let out = w.at(61).tick();
    assert!(out.events.is_empty());
}

#[test]
fn a_late_tick_still_expires_the_offer() {
    let mut w = world(vec![member("a", in_cell("g1", 0))]);
    let (inc, _) = w.raise(&city_command(), rescue("g1", Level::I, 1));
    let out = w.at(3600).tick();
    assert_eq!(kinds(&out), ["offer_expired"]);
    assert_eq!(w.offer(&inc, "a").answered_at, Some(T0 + 3_600_000), "answered when the tick saw it");
}

#[test]
fn accepting_at_or_after_the_deadline_is_refused_even_before_the_tick() {
    let mut w = world(vec![member("a", in_cell("g1", 0))]);
    let (inc, _) = w.raise(&city_command(), rescue("g1", Level::IV, 1));
    let offer = w.offer_id(&inc, "a");
    let e = w.at(60).refuse(&as_member("a"), accept(&offer));
    assert_err(&e, ErrorKind::Conflict, "offer_expired");
    // after the tick: still offer_expired
    w.tick();
    let e = w.refuse(&as_member("a"), accept(&offer));
    assert_err(&e, ErrorKind::Conflict, "offer_expired");
}

#[test]
fn accepting_one_millisecond_before_the_deadline_counts() {
    let mut w = world(vec![member("a", in_cell("g1", 0))]);
    let (inc, _) = w.raise(&city_command(), rescue("g1", Level::IV, 1));
    let offer = w.offer_id(&inc, "a");
    let out = w.at_ms(59_999).ok(&as_member("a"), accept(&offer));
    assert_eq!(kinds(&out), ["offer_accepted", "incident_filled"]);
    // the stale expiry deadline fires harmlessly
    let out = w.at(60).tick();
    assert!(out.events.is_empty());
    assert_eq!(w.offer(&inc, "a").state, OfferState::Accepted);
}

#[test]
fn next_deadline_reports_the_earliest_deadline() {
    let mut w = world(vec![member("a", in_cell("g1", 0))]);
    assert_eq!(w.state.next_deadline(), None, "nothing pending after an import");

    // a level-I call: an offer expiry, no escalation
    w.raise(&city_command(), rescue("g1", Level::I, 1));
    // one offer out of two wanted: a retry in 10 s comes first
    assert_eq!(w.state.next_deadline(), Some(T0 + 10_000));
    w.at(10).tick();
    assert_eq!(w.state.next_deadline(), Some(T0 + 20_000), "still short: the next retry");

    let mut w = world(vec![member("a", in_cell("g1", 0)), member("b", in_cell("g1", 1))]);
    w.at(5).raise(&city_command(), rescue("g1", Level::IV, 1));
    assert_eq!(w.state.next_deadline(), Some(T0 + 65_000), "the offers' expiry, before the escalation at 125 s");
    let pending: Vec<Ts> = w.state.deadlines.iter().map(|(t, _)| *t).collect();
    assert_eq!(pending, [T0 + 65_000, T0 + 65_000, T0 + 125_000]);
    assert!(w.state.deadlines.contains(&(T0 + 125_000, Deadline::Escalation("inc-000001".into()))));
}

#[test]
fn an_incident_short_of_candidates_looks_again_after_retry_s() {
    let mut w = world(vec![member("a", in_cell("g1", 0)), member("late", in_cell("g2", 0)).off_call()]);
    let (inc, _) = w.raise(&city_command(), rescue("g1", Level::I, 1));
    assert_eq!(w.state.next_deadline(), Some(T0 + 10_000), "one offer out of two wanted: look again in 10 s");
    w.at(3).ok(&as_member("late"), Command::Duty { on_call: true });
    assert_eq!(w.offered(&inc), ["a"], "coming on call does not by itself trigger a refill");
    let out = w.at_ms(9_999).tick();
    assert!(out.events.is_empty());
    let out = w.at(10).tick();
    assert_eq!(sent_to(&out), ["late"]);
    assert!(retries(&w, &inc).is_empty(), "nothing more wanted: the retries stop");
}

/// Retry deadlines pending for an incident.
fn retries(w: &World, incident_id: &str) -> Vec<Ts> {
    w.state
        .deadlines
        .iter()
        .filter(|(_, d)| matches!(d, Deadline::Retry(i) if i == incident_id))
        .map(|(t, _)| *t)
        .collect()
}

#[test]
fn an_incident_short_of_candidates_keeps_a_single_retry_pending() {
    let mut w = world(vec![member("a", in_cell("g1", 0)), member("b", in_cell("g1", 1))]);
    let (inc, _) = w.raise(&city_command(), rescue("g1", Level::IV, 2)); // 3 wanted, 2 found
    assert_eq!(retries(&w, &inc), [T0 + 10_000]);
    let b_offer = w.offer_id(&inc, "b");
    w.at(5).ok(&as_member("b"), decline(&b_offer)); // refill, still short
    assert_eq!(retries(&w, &inc).len(), 1, "pending retries: {:?}", retries(&w, &inc));
    // ticking at every retry: attempts should be retry_s (10 s) apart, not 5 s
    let mut attempts = Vec::new();
    for t in [10, 15, 20, 25, 30] {
        w.at(t).tick();
        attempts.push(retries(&w, &inc));
    }
    assert!(attempts.iter().all(|r| r.len() <= 1), "{attempts:?}");
}

// ---------------------------------------------------------------------------------------
// 5. Filling
// ---------------------------------------------------------------------------------------

#[test]
fn accepts_up_to_the_headcount_fill_the_incident_and_revoke_the_surplus() {
    let c = grid_center("g1");
    let mut w = world(vec![
        member("a", offset(c, 10.0, 0.0)),
        member("b", offset(c, 100.0, 0.0)),
        member("c", offset(c, 200.0, 0.0)),
    ]);
    let (inc, out) = w.raise(&staff("c1"), rescue("g1", Level::IV, 2));
    assert_eq!(sent_to(&out), ["a", "b", "c"]);

    let out = w.at(3).accept("a", &inc);
    assert_eq!(kinds(&out), ["offer_accepted"]);
    assert_eq!(w.incident(&inc).status, Status::Open);
    assert_eq!(w.incident(&inc).accepted(), 1);

    let out = w.at(4).accept("b", &inc);
    assert_eq!(kinds(&out), ["offer_accepted", "incident_filled", "offer_revoked"]);
    let c_offer = w.offer_id(&inc, "c");
    match &out.events[2].body {
        EventBody::OfferRevoked { offer_id, member_id, reason, .. } => {
            assert_eq!((offer_id.as_str(), member_id.as_str(), *reason), (c_offer.as_str(), "c", RevokeReason::Filled));
        }
        other => panic!("{other:?}"),
    }
    let i = w.incident(&inc);
    assert_eq!(i.status, Status::Filled);
    assert_eq!(i.filled_at, Some(T0 + 4_000));
    assert_eq!(i.escalate_at, None);
    assert_eq!(i.open_offers(), 0);
    assert_eq!(w.offer(&inc, "c").state, OfferState::Revoked);
    assert_eq!(w.engaged("c"), None, "the surplus member is free");
    // c hears why
    let to_c: Vec<&Frame> = out.frames.iter().filter(|f| f.stream == "member:c").collect();
    assert_eq!(to_c.len(), 1);
    assert_eq!((to_c[0].kind, to_c[0].data["reason"].as_str()), ("offer.revoked", Some("filled")));
    // a and b each got an assignment
    for m in ["a", "b"] {
        assert!(w.frames.iter().any(|f| f.stream == format!("member:{m}") && f.kind == "assignment"));
    }

    // a late accept of the revoked offer
    let e = w.at(5).refuse(&as_member("c"), accept(&c_offer));
    assert_err(&e, ErrorKind::Conflict, "offer_revoked");

    // accepting again is idempotent
    let a_offer = w.offer_id(&inc, "a");
    let out = w.ok(&as_member("a"), accept(&a_offer));
    assert!(out.events.is_empty() && out.frames.is_empty());
    assert_eq!(out.reply, Some(Reply::Done));
    assert_eq!(w.incident(&inc).accepted(), 2);
}

#[test]
fn a_decline_of_an_open_offer_sends_a_replacement() {
    let c = grid_center("g1");
    let mut w = world(vec![
        member("a", offset(c, 10.0, 0.0)),
        member("b", offset(c, 100.0, 0.0)),
        member("c", offset(c, 200.0, 0.0)),
    ]);
    let (inc, out) = w.raise(&city_command(), rescue("g1", Level::IV, 1));
    assert_eq!(sent_to(&out), ["a", "b"]);
    let a_offer = w.offer_id(&inc, "a");

    let out = w.at(2).ok(&as_member("a"), Command::Decline { offer_id: a_offer.clone(), reason: Some("sick".into()) });
    assert_eq!(kinds(&out), ["offer_declined", "offer_sent"]);
    assert_eq!(sent_to(&out), ["c"]);
    assert!(matches!(&out.events[0].body, EventBody::OfferDeclined { reason: Some(r), .. } if r == "sick"));
    assert_eq!(w.offer(&inc, "a").state, OfferState::Declined);
    assert_eq!(w.engaged("a"), None);
    assert_eq!(w.incident(&inc).open_offers(), 2);

    // declining again is idempotent; accepting after a decline is refused
    let out = w.ok(&as_member("a"), decline(&a_offer));
    assert!(out.events.is_empty());
    let e = w.refuse(&as_member("a"), accept(&a_offer));
    assert_err(&e, ErrorKind::Conflict, "offer_declined");
}

#[test]
fn an_accepted_offer_cannot_be_declined() {
    let mut w = world(vec![member("a", in_cell("g1", 0))]);
    let (inc, _) = w.raise(&city_command(), rescue("g1", Level::IV, 2));
    w.accept("a", &inc);
    let offer = w.offer_id(&inc, "a");
    let e = w.refuse(&as_member("a"), decline(&offer));
    assert_err(&e, ErrorKind::Conflict, "offer_accepted");
}

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

/// `a` has accepted a call in g1 (located at g1's centre).
fn accepted_call() -> (World, String, String) {
    let mut w = world(vec![member("a", in_cell("g1", 0)), member("b", in_cell("g1", 1))]);
    let (inc, _) = w.raise(&staff("c1"), rescue("g1", Level::IV, 2));
    w.at(10).accept("a", &inc);
    let offer = w.offer_id(&inc, "a");
    (w, inc, offer)
}

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

// ---------------------------------------------------------------------------------------
// 8. Authorization and validation in the domain
// ---------------------------------------------------------------------------------------

#[test]
fn a_member_cannot_answer_another_members_offer() {
    let (mut w, inc, a_offer) = accepted_call();
    let b_offer = w.offer_id(&inc, "b");
    for cmd in [accept(&a_offer), decline(&a_offer), arrive(&a_offer, grid_center("g1"))] {
        let e = w.refuse(&as_member("b"), cmd);
        assert_err(&e, ErrorKind::NotFound, "unknown_offer");
    }
    let e = w.refuse(&as_member("a"), accept(&b_offer));
    assert_err(&e, ErrorKind::NotFound, "unknown_offer");
    // an offer that does not exist is answered alike
    let e = w.refuse(&as_member("a"), accept("off-999"));
    assert_err(&e, ErrorKind::NotFound, "unknown_offer");
    // a member not in the city
    let e = w.refuse(&as_member("ghost"), accept(&b_offer));
    assert_err(&e, ErrorKind::NotFound, "unknown_member");
    // staff and command cannot answer for a member
    for actor in [staff("c1"), city_command(), Actor::System] {
        let e = w.refuse(&actor, accept(&b_offer));
        assert_err(&e, ErrorKind::Forbidden, "members_only");
    }
}

#[test]
fn staff_may_raise_only_in_their_own_community() {
    let mut w = world(vec![member("a", in_cell("g1", 0))]);
    let e = w.refuse(&staff("c2"), Command::Raise(rescue("g1", Level::IV, 1)));
    assert_err(&e, ErrorKind::Forbidden, "outside_scope");
    // by location too
    let r = RaiseIncident { grid_id: None, location: Some(in_cell("g2", 0)), ..rescue("g1", Level::IV, 1) };
    let e = w.refuse(&staff("c2"), Command::Raise(r));
    assert_err(&e, ErrorKind::Forbidden, "outside_scope");
    // a scoped actor naming an unknown grid is told it is outside their area
    let e = w.refuse(&staff("c1"), Command::Raise(rescue("g99", Level::IV, 1)));
    assert_err(&e, ErrorKind::Forbidden, "outside_scope");
    // a district command outside its district
    let e = w.refuse(&Actor::Command { district: Some("d9".into()) }, Command::Raise(rescue("g1", Level::IV, 1)));
    assert_err(&e, ErrorKind::Forbidden, "outside_scope");

    let (_, out) = w.raise(&staff("c2"), rescue("g3", Level::IV, 1));
    assert_eq!(out.events[0].actor, "staff:c2");
    w.raise(&Actor::Command { district: Some("d1".into()) }, rescue("g4", Level::IV, 1));
    let (inc, _) = w.raise(&staff("c1"), rescue("g1", Level::IV, 1));
    assert_eq!(w.incident(&inc).raised_by, "staff:c1");
}

#[test]
fn members_and_unit_admins_cannot_raise() {
    let mut w = world(vec![member("a", in_cell("g1", 0))]);
    for actor in [as_member("a"), Actor::UnitAdmin { unit: "u1".into() }] {
        let e = w.refuse(&actor, Command::Raise(rescue("g1", Level::IV, 1)));
        assert_err(&e, ErrorKind::Forbidden, "role_not_allowed");
    }
}

#[test]
fn an_unknown_grid_or_a_location_outside_every_grid_is_invalid_for_city_command() {
    let mut w = world(vec![member("a", in_cell("g1", 0))]);
    let e = w.refuse(&city_command(), Command::Raise(rescue("g99", Level::IV, 1)));
    assert_err(&e, ErrorKind::Invalid, "unknown_grid");
    assert!(e.detail.contains("g99"), "{}", e.detail);
    let r = RaiseIncident { grid_id: None, location: Some(nowhere()), ..rescue("g1", Level::IV, 1) };
    let e = w.refuse(&city_command(), Command::Raise(r));
    assert_err(&e, ErrorKind::Invalid, "unknown_grid");
}

#[test]
fn a_location_inside_a_grid_raises_there_at_that_exact_spot() {
    let mut w = world(vec![member("a", in_cell("g1", 0))]);
    let spot = offset(in_cell("g2", 1), 20.0, 20.0);
    let r = RaiseIncident { grid_id: None, location: Some(spot), ..rescue("g1", Level::IV, 1) };
    let (inc, out) = w.raise(&staff("c1"), r);
    assert!(
        matches!(&out.events[0].body, EventBody::IncidentRaised { grid_id, community_id, .. } if grid_id == "g2" && community_id == "c1")
    );
    assert_eq!(w.incident(&inc).location, spot);
}

#[test]
fn give_exactly_one_of_grid_or_location() {
    let mut w = world(vec![member("a", in_cell("g1", 0))]);
    let both = RaiseIncident { location: Some(in_cell("g1", 0)), ..rescue("g1", Level::IV, 1) };
    let neither = RaiseIncident { grid_id: None, ..rescue("g1", Level::IV, 1) };
    for r in [both, neither] {
        let e = w.refuse(&city_command(), Command::Raise(r));
        assert_err(&e, ErrorKind::Invalid, "grid_or_location");
    }
}

#[test]
fn headcount_must_be_between_one_and_the_maximum() {
    let mut w = world(vec![member("a", in_cell("g1", 0))]);
    for headcount in [0, 51, u32::MAX] {
        let e = w.refuse(&city_command(), Command::Raise(rescue("g1", Level::IV, headcount)));
        assert_err(&e, ErrorKind::Invalid, "headcount_out_of_range");
    }
    w.raise(&city_command(), rescue("g1", Level::IV, 50));
}

#[test]
fn unknown_skills_and_categories_are_refused() {
    let mut w = world(vec![member("a", in_cell("g1", 0))]);
    let r = RaiseIncident { skills: vec!["medical".into(), "flying".into()], ..rescue("g1", Level::IV, 1) };
    let e = w.refuse(&city_command(), Command::Raise(r));
    assert_err(&e, ErrorKind::Invalid, "unknown_skill");
    assert!(e.detail.contains("flying"), "{}", e.detail);

    let r = RaiseIncident { category: "party".into(), ..rescue("g1", Level::IV, 1) };
    let e = w.refuse(&city_command(), Command::Raise(r));
    assert_err(&e, ErrorKind::Invalid, "unknown_category");
    assert!(e.detail.contains("patrol") && e.detail.contains("rescue"), "lists the known ones: {}", e.detail);

    let r = RaiseIncident { skills: vec!["driving".into(); 17], ..rescue("g1", Level::IV, 1) };
    let e = w.refuse(&city_command(), Command::Raise(r));
    assert_err(&e, ErrorKind::Invalid, "too_many_skills");

    // repeated skills are kept once
    let r = RaiseIncident {
        category: "patrol".into(),
        skills: vec!["driving".into(), "driving".into()],
        ..rescue("g1", Level::IV, 1)
    };
    let (inc, _) = w.raise(&city_command(), r);
    assert_eq!(w.incident(&inc).skills, ["driving"]);
}

#[test]
fn notes_are_at_most_1000_characters() {
    let mut w = world(vec![member("a", in_cell("g1", 0))]);
    let r = RaiseIncident { note: Some("水".repeat(1001)), ..rescue("g1", Level::IV, 1) };
    let e = w.refuse(&city_command(), Command::Raise(r));
    assert_err(&e, ErrorKind::Invalid, "text_too_long");
    let r = RaiseIncident { note: Some("水".repeat(1000)), ..rescue("g1", Level::IV, 1) };
    let (inc, _) = w.raise(&city_command(), r);
    let e = w.refuse(&city_command(), Command::Resolve { incident_id: inc, note: Some("x".repeat(1001)) });
    assert_err(&e, ErrorKind::Invalid, "text_too_long");
}

#[test]
fn raising_before_any_city_is_imported_is_refused() {
    let mut state = State::default();
    let e = execute(&mut state, &Rules::for_tests(), &city_command(), Command::Raise(rescue("g1", Level::IV, 1)), T0)
        .unwrap_err();
    assert_err(&e, ErrorKind::Conflict, "no_city");
    assert_eq!(state.last_seq, 0);
}

#[test]
fn only_city_command_or_the_system_imports_a_city() {
    let mut w = world(vec![member("a", in_cell("g1", 0))]);
    // a district's command is told it takes the city's; other roles, that it is not theirs
    let e = w.refuse(&Actor::Command { district: Some("d1".into()) }, Command::ImportCity(Box::new(tiny_city(vec![]))));
    assert_err(&e, ErrorKind::Forbidden, "city_command_only");
    for actor in [staff("c1"), as_member("a")] {
        let e = w.refuse(&actor, Command::ImportCity(Box::new(tiny_city(vec![]))));
        assert_err(&e, ErrorKind::Forbidden, "role_not_allowed");
    }
    let out = w.ok(&city_command(), Command::ImportCity(Box::new(tiny_city(vec![]))));
    assert_eq!(kinds(&out), ["city_imported"]);
    assert_eq!(out.events[0].actor, "command");
}

#[test]
fn an_import_is_refused_while_an_incident_is_open_or_the_city_is_invalid() {
    let mut w = world(vec![member("a", in_cell("g1", 0))]);
    let (inc, _) = w.raise(&city_command(), rescue("g1", Level::IV, 1));
    let e = w.refuse(&city_command(), Command::ImportCity(Box::new(tiny_city(vec![]))));
    assert_err(&e, ErrorKind::Conflict, "open_incidents");
    w.ok(&city_command(), cancel(&inc));

    let e = w.refuse(
        &city_command(),
        Command::ImportCity(Box::new(tiny_city(vec![member("z", nowhere()).skills(&["juggling"])]))),
    );
    assert_err(&e, ErrorKind::Invalid, "unknown_skill");
    let e = w.refuse(
        &city_command(),
        Command::ImportCity(Box::new(tiny_city(vec![member("z", nowhere()).living_in("g99")]))),
    );
    assert_err(&e, ErrorKind::Invalid, "invalid_city");
}

#[test]
fn a_reimport_keeps_the_fairness_history_of_members_still_there() {
    let mut w = world(vec![member("a", in_cell("g1", 0))]);
    let (inc, _) = w.raise(&city_command(), rescue("g1", Level::IV, 1));
    w.at(5).accept("a", &inc);
    w.at(6).ok(&city_command(), resolve(&inc));
    // a moves to the end of the roster; a newcomer takes index 0
    w.at(7).ok(
        &city_command(),
        Command::ImportCity(Box::new(tiny_city(vec![member("new", in_cell("g2", 0)), member("a", in_cell("g1", 0))]))),
    );
    let a = &w.state.roster.members[w.state.member_index("a").unwrap() as usize];
    assert_eq!((a.last_duty_at, a.duties), (Some(T0 + 5_000), 1));
    let new = &w.state.roster.members[w.state.member_index("new").unwrap() as usize];
    assert_eq!((new.last_duty_at, new.duties), (None, 0));
}

/// A resolved incident of c1 (g1), then a re-import of `city`.
fn reimported(city: City) -> (World, String) {
    let mut w = world(vec![member("a", in_cell("g1", 0)).living_in("g1")]);
    let (inc, _) = w.raise(&staff("c1"), rescue("g1", Level::IV, 1));
    w.at(10).ok(&staff("c1"), resolve(&inc));
    w.at(20).ok(&city_command(), Command::ImportCity(Box::new(city)));
    (w, inc)
}

#[test]
fn after_a_reimport_that_reorders_communities_old_incidents_stay_in_their_community() {
    let mut city = tiny_city(vec![member("a", in_cell("g1", 0)).living_in("g1")]);
    city.communities.reverse();
    let (mut w, inc) = reimported(city);
    let i = w.incident(&inc).clone();
    assert!(crate::domain::scope::incident(&staff("c1"), &i), "c1 raised it");
    assert!(!crate::domain::scope::incident(&staff("c2"), &i), "c2 never had it");
    let e = w.refuse(&staff("c1"), resolve(&inc));
    assert_err(&e, ErrorKind::Conflict, "incident_closed");
}

#[test]
fn after_a_reimport_that_drops_a_community_scope_checks_do_not_panic() {
    let mut w = world(vec![member("a", in_cell("g3", 0)).living_in("g3")]);
    let (inc, _) = w.raise(&staff("c2"), rescue("g3", Level::IV, 1));
    w.at(10).ok(&staff("c2"), cancel(&inc));
    let mut city = tiny_city(vec![member("a", in_cell("g1", 0)).living_in("g1")]);
    city.communities.truncate(1); // c2 is gone
    w.at(20).ok(&city_command(), Command::ImportCity(Box::new(city)));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        w.exec(&Actor::Command { district: Some("d1".into()) }, resolve(&inc)).map(|_| ())
    }));
    let answer = result.expect("a district command asking about an old incident must not crash the dispatcher");
    assert!(answer.is_err(), "the incident is closed");
}

// ---------------------------------------------------------------------------------------
// 9. Idempotency keys
// ---------------------------------------------------------------------------------------

#[test]
fn the_same_idempotency_key_from_the_same_actor_returns_the_same_incident() {
    let mut w = world(vec![member("a", in_cell("g1", 0)), member("b", in_cell("g3", 0))]);
    let keyed =
        |grid: &str, key: &str| RaiseIncident { idempotency_key: Some(key.into()), ..rescue(grid, Level::IV, 1) };

    let (first, out) = w.raise(&staff("c1"), keyed("g1", "k-1"));
    assert!(!out.events.is_empty());
    let seq = w.state.last_seq;

    // the same request again, or even a different one with the same key: the same incident
    for r in [keyed("g1", "k-1"), RaiseIncident { headcount: 5, ..keyed("g2", "k-1") }] {
        let out = w.at(30).ok(&staff("c1"), Command::Raise(r));
        assert_eq!(out.reply, Some(Reply::Incident(first.clone())));
        assert!(out.events.is_empty() && out.frames.is_empty());
        assert_eq!(w.state.last_seq, seq);
        assert_eq!(w.state.incidents.len(), 1);
    }

    // another key, or the same key from another actor, is another incident
    let (second, _) = w.raise(&staff("c1"), keyed("g1", "k-2"));
    let (third, _) = w.raise(&staff("c2"), keyed("g3", "k-1"));
    let (fourth, _) = w.raise(&city_command(), keyed("g1", "k-1"));
    let ids = set(&[&first, &second, &third, &fourth]);
    assert_eq!(ids.len(), 4);

    // the key is remembered after the incident is closed
    w.ok(&staff("c1"), resolve(&first));
    let out = w.ok(&staff("c1"), Command::Raise(keyed("g1", "k-1")));
    assert_eq!(out.reply, Some(Reply::Incident(first.clone())));

    // empty or oversized keys are refused
    for key in [String::new(), "k".repeat(201)] {
        let e = w.refuse(&staff("c1"), Command::Raise(keyed("g1", &key)));
        assert_err(&e, ErrorKind::Invalid, "bad_idempotency_key");
    }
}

// ---------------------------------------------------------------------------------------
// 10. Resolve and cancel
// ---------------------------------------------------------------------------------------

/// `a` accepted a call for two in g1; `b` and `c` still hold open offers.
fn half_staffed_call() -> (World, String) {
    let c = grid_center("g1");
    let mut w = world(vec![
        member("a", offset(c, 10.0, 0.0)),
        member("b", offset(c, 100.0, 0.0)),
        member("c", offset(c, 200.0, 0.0)),
    ]);
    let (inc, out) = w.raise(&staff("c1"), rescue("g1", Level::IV, 2));
    assert_eq!(sent_to(&out), ["a", "b", "c"]);
    w.at(5).accept("a", &inc);
    (w, inc)
}

#[test]
fn resolving_revokes_open_offers_and_releases_accepted_members() {
    let (mut w, inc) = half_staffed_call();
    let out = w.at(50).ok(&staff("c1"), Command::Resolve { incident_id: inc.clone(), note: Some("done".into()) });
    assert_eq!(out.reply, Some(Reply::Incident(inc.clone())));
    assert_eq!(kinds(&out), ["offer_revoked", "offer_revoked", "incident_resolved"]);
    let revoked: Vec<(&str, RevokeReason)> = out
        .events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::OfferRevoked { member_id, reason, .. } => Some((member_id.as_str(), *reason)),
            _ => None,
        })
        .collect();
    assert_eq!(revoked, [("b", RevokeReason::Resolved), ("c", RevokeReason::Resolved)]);

    let i = w.incident(&inc);
    assert_eq!((i.status, i.closed_at, i.escalate_at), (Status::Resolved, Some(T0 + 50_000), None));
    assert_eq!(w.offer(&inc, "a").state, OfferState::Accepted, "the accepted offer keeps its record");
    for m in ["a", "b", "c"] {
        assert_eq!(w.engaged(m), None, "{m} is released");
    }
    // a is told the assignment is over; b and c that their offers are gone
    let closed: Vec<&Frame> = out.frames.iter().filter(|f| f.kind == "assignment.closed").collect();
    assert_eq!(closed.len(), 1);
    assert_eq!((closed[0].stream.as_str(), closed[0].data["reason"].as_str()), ("member:a", Some("resolved")));
    assert!(
        out.frames
            .iter()
            .any(|f| f.stream == "member:b" && f.kind == "offer.revoked" && f.data["reason"] == "resolved")
    );

    // a second resolve, or a cancel, is refused
    let e = w.at(60).refuse(&staff("c1"), resolve(&inc));
    assert_err(&e, ErrorKind::Conflict, "incident_closed");
    let e = w.refuse(&staff("c1"), cancel(&inc));
    assert_err(&e, ErrorKind::Conflict, "incident_closed");
    // the revoked offers stay revoked
    let b_offer = w.offer_id(&inc, "b");
    let e = w.refuse(&as_member("b"), accept(&b_offer));
    assert_err(&e, ErrorKind::Conflict, "offer_revoked");
    // nothing is left to fire
    let out = w.at(1000).tick();
    assert!(out.events.is_empty(), "{:?}", kinds(&out));

    // the released members can be called again at once; a, who has just done a duty,
    // ranks last (penalty ~724 m, 995 s after accepting)
    let (next, out) = w.raise(&staff("c1"), rescue("g1", Level::IV, 2));
    assert_eq!(sent_to(&out), ["b", "c", "a"]);
    assert_eq!(w.offered(&next).len(), 3);
}

#[test]
fn cancelling_revokes_open_offers_with_reason_cancelled() {
    let (mut w, inc) = half_staffed_call();
    let out =
        w.at(50).ok(&city_command(), Command::Cancel { incident_id: inc.clone(), reason: Some("false alarm".into()) });
    assert_eq!(kinds(&out), ["offer_revoked", "offer_revoked", "incident_cancelled"]);
    assert!(
        out.events[..2]
            .iter()
            .all(|e| matches!(e.body, EventBody::OfferRevoked { reason: RevokeReason::Cancelled, .. }))
    );
    assert_eq!(w.incident(&inc).status, Status::Cancelled);
    for m in ["a", "b", "c"] {
        assert_eq!(w.engaged(m), None, "{m} is released");
    }
    assert!(
        out.frames
            .iter()
            .any(|f| f.stream == "member:a" && f.kind == "assignment.closed" && f.data["reason"] == "cancelled")
    );
    let e = w.refuse(&city_command(), cancel(&inc));
    assert_err(&e, ErrorKind::Conflict, "incident_closed");
    let e = w.refuse(&city_command(), resolve(&inc));
    assert_err(&e, ErrorKind::Conflict, "incident_closed");
}

#[test]
fn a_filled_incident_can_still_be_resolved() {
    let mut w = world(vec![member("a", in_cell("g1", 0))]);
    let (inc, _) = w.raise(&staff("c1"), rescue("g1", Level::IV, 1));
    w.accept("a", &inc);
    assert_eq!(w.incident(&inc).status, Status::Filled);
    let out = w.at(10).ok(&staff("c1"), resolve(&inc));
    assert_eq!(kinds(&out), ["incident_resolved"]);
    assert_eq!(w.engaged("a"), None);
}

#[test]
fn only_those_who_see_the_incident_may_close_it() {
    let (mut w, inc) = half_staffed_call();
    for actor in [
        staff("c2"),
        as_member("a"),
        Actor::UnitAdmin { unit: "u1".into() },
        Actor::Command { district: Some("d2".into()) },
    ] {
        for cmd in [resolve(&inc), cancel(&inc)] {
            let e = w.refuse(&actor, cmd);
            assert_err(&e, ErrorKind::NotFound, "unknown_incident");
        }
    }
    let e = w.refuse(&city_command(), resolve("inc-999999"));
    assert_err(&e, ErrorKind::NotFound, "unknown_incident");
}

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
    super::testkit::assert_restores_at_every_cut(&w.log, &w.rules);
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
    use super::scope;
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
