//! Wartime domain tests: 平战转换 (modes, reach, TTLs, forced assault teams, the peacetime
//! own-community rule), mass mobilization, whistles (吹哨报到), cross-community balance
//! (力量统筹), fairness (the easy-task cap, load ranking) and fatigue, all driven through
//! `execute` with time passed in, and replayed through `apply`.
//!
//! The fixture is `war_city`: a row of resolution-9 cells running east, two cells per grid:
//!
//! ```text
//! district d1                                                       | d2
//! street s1                                          | s2           | s3
//! c1: g1 g2 g3                  | c2: g4 g5          | c3: g6       | c4: g7
//! ```
//!
//! g1 touches g2 only, so level IV (grid) in peacetime reaches g1 and g2, while the wartime
//! level IV (community) reaches g3 as well. Units u1..u4; assault teams t1 (u1) and t2 (u2)
//! are paired with c1, t3 (u3) with c2, t4 (u4) with c4 (district d2); work team w1 (u1) is
//! paired with c1.

use std::collections::{BTreeSet, HashSet};

use super::balance;
use super::dispatcher::{self, Actor, Command, Deadline, ErrorKind, FrameFilter, RaiseIncident, Reply, State, execute};
use super::event::{Event, EventBody, Frame, FrameData, Mode};
use super::fixtures::{GRIDS, in_cell, member};
use super::geo::Position;
use super::incident::Status;
use super::mobilization::{Mobilization, OrderState, Progress, Site};
use super::org::{City, CityIndex, Member};
use super::response::{Level, Rules};
use super::testkit::*;
use super::wartime::{MobilizeOrder, WhistleTarget};

// ---------------------------------------------------------------------------------------
// Fixture: places
// ---------------------------------------------------------------------------------------

fn war_city(members: Vec<Member>) -> City {
    super::fixtures::two_districts("war", members)
}

fn geography() -> CityIndex {
    CityIndex::build(war_city(vec![])).unwrap()
}

fn community_center(id: &str) -> Position {
    let idx = geography();
    idx.community_centers[idx.community_by_id[id] as usize]
}

// ---------------------------------------------------------------------------------------
// Fixture: actors and commands
// ---------------------------------------------------------------------------------------

fn patrol(grid: &str, level: Level, headcount: u32) -> RaiseIncident {
    call(grid, "patrol", level, headcount)
}

fn switch(district: Option<&str>, mode: Mode) -> Command {
    Command::SwitchMode { district_id: district.map(str::to_string), mode, reason: "drill".into() }
}

fn wartime(district: &str) -> Command {
    switch(Some(district), Mode::Wartime)
}

fn peacetime(district: &str) -> Command {
    switch(Some(district), Mode::Peacetime)
}

fn mobilize_teams(teams: &[&str]) -> Command {
    Command::Mobilize(MobilizeOrder { teams: teams.iter().map(|t| t.to_string()).collect(), ..Default::default() })
}

fn ack(id: &str) -> Command {
    Command::AcknowledgeOrder { mobilization_id: id.into() }
}

fn report(id: &str, position: Position) -> Command {
    Command::ReportArrival { mobilization_id: id.into(), position }
}

fn transfer(from: &str, to: &str, members: &[String]) -> Command {
    Command::Transfer { from: from.into(), to: to.into(), members: members.to_vec() }
}

// ---------------------------------------------------------------------------------------
// Fixture: the world (the driver is `testkit::World`)
// ---------------------------------------------------------------------------------------

/// `war_city` with these members, imported by the system at `T0`.
fn world(members: Vec<Member>) -> World {
    World::with_city(war_city(members))
}

impl World {
    #[track_caller]
    fn mobilize(&mut self, actor: &Actor, cmd: Command) -> String {
        match self.ok(actor, cmd).reply {
            Some(Reply::Mobilization(id)) => id,
            other => panic!("expected a mobilization reply, got {other:?}"),
        }
    }

    fn mob(&self, id: &str) -> &Mobilization {
        &self.state.mobilizations[id]
    }

    /// The balance row of a community now.
    fn balance(&self, community: &str) -> i64 {
        balance::balances(&self.state, &self.rules, self.now)
            .into_iter()
            .find(|b| b.community_id == community)
            .unwrap()
            .balance
    }
}

fn progress(ordered: u32, acknowledged: u32, reported: u32, missing: u32) -> Progress {
    Progress { ordered, acknowledged, reported, missing }
}

#[test]
fn fixture_geography_is_as_the_tests_assume() {
    let idx = geography();
    let nbrs = |g: &str| -> BTreeSet<String> {
        idx.grid_neighbours[idx.grid_flat[g] as usize].iter().map(|&n| idx.grid_ids[n as usize].clone()).collect()
    };
    assert_eq!(nbrs("g1"), set(&["g2"]), "g1 does not touch g3: the community is wider than the grid reach");
    assert_eq!(nbrs("g3"), set(&["g2", "g4"]));
    for g in GRIDS {
        assert_eq!(idx.grid_ids[idx.grid_at(in_cell(g, 0)).unwrap() as usize], g);
    }
    assert_eq!(idx.grid_at(nowhere()), None);
    assert_eq!(idx.district_id_of_community(idx.community_by_id["c4"]), "d2");
    // the centre of c1 lies within the report geofence; g1's first cell does not
    let c1 = community_center("c1");
    assert!(idx.grid_at(c1).is_some());
    assert!(c1.distance_m(in_cell("g1", 0)) > 500.0, "{}", c1.distance_m(in_cell("g1", 0)));
}

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

// ---------------------------------------------------------------------------------------
// Mobilization
// ---------------------------------------------------------------------------------------

fn mobilization_world() -> World {
    world(vec![
        member("a", "g1").team("t1").at("g7"),
        member("b", "g1").team("t1").at("g7"),
        member("c", "g6").team("t1").at("g7").off_call(),
        member("d", "g4").team("t3").at("g7"),
        member("e", "g7").team("t4"),
    ])
}

#[test]
fn mobilization_progress_counts_are_exact_through_acknowledgements_and_geofenced_reports() {
    let mut w = mobilization_world();
    let id = w.mobilize(&city_command(), mobilize_teams(&["t1", "t3"]));
    assert_eq!(id, "mob-1");
    let m = w.mob(&id);
    assert_eq!(m.counts, progress(4, 0, 0, 4), "off-call members are ordered too");
    assert_eq!(m.districts, ["d1"]);
    assert_eq!(m.deadline, T0 + 3_600_000);
    for (member, community) in [("a", "c1"), ("b", "c1"), ("c", "c1"), ("d", "c2")] {
        let f = frames_of(&w.frames, &format!("member:{member}"), "mobilization.order");
        assert_eq!(f.len(), 1, "{member}");
        assert_eq!(f[0].data["mobilization_id"], "mob-1");
        assert_eq!(f[0].data["report_to"]["community_id"], community);
        let loc: Position = serde_json::from_value(f[0].data["report_to"]["location"].clone()).unwrap();
        assert_eq!(loc, community_center(community));
        assert_eq!(w.state.open_frames(&format!("member:{member}")), [f[0].seq], "the order is open for {member}");
    }
    assert!(frames_of(&w.frames, "member:e", "mobilization.order").is_empty());
    assert_eq!(frames_of(&w.frames, "city", "mobilization.ordered").len(), 1);
    assert_eq!(frames_of(&w.frames, "district:d1", "mobilization.ordered").len(), 1);
    assert!(frames_of(&w.frames, "district:d2", "mobilization.ordered").is_empty());

    // a acknowledges; again is a no-op
    let out = w.at(10).ok(&as_member("a"), ack(&id));
    assert_eq!(kinds(&out), ["mobilization_acknowledged", "mobilization_tallied"], "a batch of one");
    assert_eq!(w.mob(&id).counts, progress(4, 1, 0, 4));
    let before = everything(&w.state);
    let out = w.at(11).ok(&as_member("a"), ack(&id));
    assert!(out.events.is_empty() && out.frames.is_empty());
    assert_eq!(everything(&w.state), before);

    // b reports without acknowledging first, at the community's centre
    let out = w.at(20).ok(&as_member("b"), report(&id, community_center("c1")));
    assert_eq!(kinds(&out), ["mobilization_reported", "mobilization_tallied"]);
    assert_eq!(w.mob(&id).counts, progress(4, 2, 1, 3));
    assert_eq!(w.rt("b").position, community_center("c1"), "the report moves the member");
    assert_eq!(w.rt("b").work.duty_since, Some(T0 + 20_000), "a report starts duty");
    assert!(w.state.open_frames("member:b").is_empty(), "a reported order is no longer resent");
    // again: a no-op
    let before = everything(&w.state);
    let out = w.at(21).ok(&as_member("b"), report(&id, community_center("c1")));
    assert!(out.events.is_empty());
    assert_eq!(everything(&w.state), before);

    // c reports from far away: refused, nothing changes
    let e = w.at(30).refuse(&as_member("c"), report(&id, nowhere()));
    assert_err(&e, ErrorKind::Invalid, "outside_geofence");
    // in a grid of c1 beyond 500 m of the centre: counts
    w.at(31).ok(&as_member("c"), report(&id, in_cell("g1", 0)));
    // d reports into c1, the wrong community: refused
    let e = w.at(32).refuse(&as_member("d"), report(&id, community_center("c1")));
    assert_err(&e, ErrorKind::Invalid, "outside_geofence");
    w.at(33).ok(&as_member("d"), ack(&id));
    w.at(34).ok(&as_member("a"), report(&id, community_center("c1")));
    // e was not ordered
    let e = w.at(35).refuse(&as_member("e"), ack(&id));
    assert_err(&e, ErrorKind::NotFound, "unknown_mobilization");
    let e = w.refuse(&as_member("a"), ack("mob-9"));
    assert_err(&e, ErrorKind::NotFound, "unknown_mobilization");

    let m = w.mob(&id);
    assert_eq!(m.counts, progress(4, 4, 3, 1));
    let by_team: Vec<(u32, Progress, Vec<String>)> = m
        .breakdown(|o| o.team)
        .into_iter()
        .map(|(t, p, miss)| (t, p, miss.iter().map(|o| o.member_id.clone()).collect()))
        .collect();
    let (t1, t3) = (w.state.city.team_by_id["t1"], w.state.city.team_by_id["t3"]);
    assert_eq!(by_team, [(t1, progress(3, 3, 3, 0), vec![]), (t3, progress(1, 1, 0, 1), vec!["d".to_string()])]);
    // every progress frame carries the counts; the last one is exact
    let progress_frames = frames_of(&w.frames, "city", "mobilization.progress");
    assert_eq!(progress_frames.len(), 5, "one per batch, and each answer was a batch of its own");
    let last = &progress_frames.last().unwrap().data["progress"];
    assert_eq!(*last, serde_json::json!({"ordered": 4, "acknowledged": 4, "reported": 3, "missing": 1}));
    assert_eq!(frames_of(&w.frames, "district:d1", "mobilization.progress").len(), 5);
}

#[test]
fn a_batch_of_answers_makes_one_progress_frame_per_stream_listing_them_all() {
    let mut w = mobilization_world();
    let id = w.mobilize(&city_command(), mobilize_teams(&["t1", "t3", "t4"]));
    assert_eq!(w.mob(&id).districts, ["d1", "d2"]);
    // One engine batch: a (c1) and d (c2) report to places in d1, e (c4) to one in d2.
    for (who, cmd) in [("a", ack(&id)), ("d", ack(&id)), ("e", report(&id, community_center("c4")))] {
        let out = execute(&mut w.state, &w.rules, &as_member(who), cmd, w.now).unwrap();
        assert_eq!(frames_of(&out.frames, &format!("member:{who}"), "mobilization.state").len(), 1);
        assert!(out.frames.iter().all(|f| f.kind != "mobilization.progress"), "progress waits for the tally");
    }
    assert_eq!(w.state.untallied, set(&["mob-1"]));
    let out = execute(&mut w.state, &w.rules, &Actor::System, Command::Tally, w.now).unwrap();
    assert_eq!(kinds(&out), ["mobilization_tallied"]);
    assert!(w.state.untallied.is_empty() && w.mob(&id).untallied.is_empty());
    let changes = |stream: &str| -> Vec<(String, String)> {
        let f = frames_of(&out.frames, stream, "mobilization.progress");
        assert_eq!(f.len(), 1, "one frame for {stream}");
        assert_eq!(
            f[0].data["progress"],
            serde_json::json!({"ordered": 5, "acknowledged": 3, "reported": 1, "missing": 4})
        );
        f[0].data["changes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["member_id"].as_str().unwrap().to_string(), c["state"].as_str().unwrap().to_string()))
            .collect()
    };
    let pair = |m: &str, s: &str| (m.to_string(), s.to_string());
    assert_eq!(changes("city"), [pair("a", "acknowledged"), pair("d", "acknowledged"), pair("e", "reported")]);
    assert_eq!(changes("district:d1"), [pair("a", "acknowledged"), pair("d", "acknowledged")]);
    assert_eq!(changes("district:d2"), [pair("e", "reported")]);
    // Nothing answered since: a tally logs nothing.
    let out = execute(&mut w.state, &w.rules, &Actor::System, Command::Tally, w.now).unwrap();
    assert!(out.events.is_empty() && out.frames.is_empty());
}

#[test]
fn answers_logged_before_progress_was_batched_still_publish_their_own_progress() {
    let mut w = mobilization_world();
    let id = w.mobilize(&city_command(), mobilize_teams(&["t1"]));
    w.at(10).ok(&as_member("a"), ack(&id));
    w.at(20).ok(&as_member("b"), report(&id, community_center("c1")));
    // The same log as an older build wrote it: unbatched answers, no tallies.
    let mut old: Vec<Event> = w.log.iter().filter(|e| e.body.kind() != "mobilization_tallied").cloned().collect();
    for (i, e) in old.iter_mut().enumerate() {
        e.seq = i as u64 + 1;
        let json = serde_json::to_string(&*e).unwrap();
        if let EventBody::MobilizationAcknowledged { batched, .. } | EventBody::MobilizationReported { batched, .. } =
            &mut e.body
        {
            assert!(json.contains("\"batched\":true"), "{json}");
            *batched = false;
        }
    }
    // An older event has no `batched` field at all: it reads as false.
    let text = serde_json::to_string(&old[old.len() - 1]).unwrap().replace(",\"batched\":false", "");
    assert!(!text.contains("batched"), "{text}");
    assert_eq!(serde_json::from_str::<Event>(&text).unwrap(), old[old.len() - 1]);

    let (state, frames) = replay(&old);
    let progress = frames_of(&frames, "city", "mobilization.progress");
    assert_eq!(progress.len(), 2, "one per answer, as that build published them");
    assert_eq!(
        progress[1].data["progress"],
        serde_json::json!({"ordered": 3, "acknowledged": 2, "reported": 1, "missing": 2})
    );
    assert!(state.untallied.is_empty());
    assert_eq!(state.stream_seq("city"), w.state.stream_seq("city"), "the same seqs as the batched log");
}

#[test]
fn a_follower_builds_only_the_progress_frames_it_wants_and_keeps_every_seq() {
    let mut w = mobilization_world();
    let id = w.mobilize(&city_command(), mobilize_teams(&["t1", "t3", "t4"]));
    // One engine batch of three answers and its tally.
    let mut log = w.log.clone();
    for (who, cmd) in [("a", ack(&id)), ("d", ack(&id)), ("e", report(&id, community_center("c4")))] {
        log.extend(execute(&mut w.state, &w.rules, &as_member(who), cmd, w.now).unwrap().events);
    }
    log.extend(execute(&mut w.state, &w.rules, &Actor::System, Command::Tally, w.now).unwrap().events);
    let (all, all_frames) = replay(&log);
    let mut follower =
        State { frame_filter: FrameFilter::only(|s| s == "district:d2" || s == "member:e"), ..Default::default() };
    let mut frames = Vec::new();
    for e in &log {
        frames.extend(dispatcher::apply(&mut follower, e));
    }
    assert_eq!(follower.streams, all.streams, "the same seqs, built or not");
    let wanted = |f: &&Frame| f.stream == "district:d2" || f.stream == "member:e";
    let expected: Vec<&Frame> = all_frames.iter().filter(wanted).collect();
    let progress: Vec<&Frame> =
        frames.iter().filter(|f| f.kind == "mobilization.progress" && f.stream != "district:d2").collect();
    assert!(progress.is_empty(), "no progress frame for streams it does not want: {progress:?}");
    let built: Vec<&Frame> = frames.iter().filter(wanted).collect();
    assert_eq!(built, expected);
    assert_eq!(frames_of(&frames, "district:d2", "mobilization.progress").len(), 1);
}

#[test]
fn the_mobilization_deadline_passes_once() {
    let mut w = mobilization_world();
    let id = w.mobilize(
        &city_command(),
        Command::Mobilize(MobilizeOrder { teams: vec!["t1".into()], deadline_s: Some(600), ..Default::default() }),
    );
    w.at(10).ok(&as_member("a"), report(&id, community_center("c1")));
    assert_eq!(w.state.next_deadline(), Some(T0 + 600_000));
    let out = w.at(599).tick();
    assert!(out.events.is_empty());
    let out = w.at(600).tick();
    assert_eq!(kinds(&out), ["mobilization_deadline_passed"]);
    assert!(w.mob(&id).deadline_passed && w.mob(&id).is_open());
    let f = frames_of(&w.frames, "city", "mobilization.deadline");
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].data["progress"]["missing"], 2);
    let out = w.at(1_200).tick();
    assert!(out.events.is_empty(), "{:?}", kinds(&out));
    // late reports still count
    w.at(1_300).ok(&as_member("b"), report(&id, community_center("c1")));
    assert_eq!(w.mob(&id).counts, progress(3, 2, 2, 1));
    let out = w.at(5_000).tick();
    assert!(out.events.is_empty());
    // a deadline out of range is refused
    let e = w.refuse(
        &city_command(),
        Command::Mobilize(MobilizeOrder { teams: vec!["t1".into()], deadline_s: Some(0), ..Default::default() }),
    );
    assert_err(&e, ErrorKind::Invalid, "deadline_out_of_range");
}

#[test]
fn closing_a_mobilization_tells_every_ordered_member_and_ends_their_duty() {
    let mut w = mobilization_world();
    let id = w.mobilize(&city_command(), mobilize_teams(&["t1", "t3"]));
    w.at(10).ok(&as_member("a"), report(&id, community_center("c1")));
    w.at(20).ok(&as_member("d"), ack(&id));
    assert_eq!(w.rt("a").work.duty_since, Some(T0 + 10_000));
    let out = w.at(100).ok(&city_command(), Command::CloseMobilization { mobilization_id: id.clone(), reason: None });
    assert_eq!(kinds(&out), ["mobilization_closed"]);
    assert_eq!(out.reply, Some(Reply::Mobilization(id.clone())));
    for member in ["a", "b", "c", "d"] {
        let f = frames_of(&out.frames, &format!("member:{member}"), "mobilization.closed");
        assert_eq!(f.len(), 1, "{member}");
        assert_eq!(f[0].data["mobilization_id"], id.as_str());
        assert!(w.state.open_frames(&format!("member:{member}")).is_empty(), "{member}: nothing left open");
        assert!(w.rt(member).orders.is_empty());
    }
    assert!(frames_of(&out.frames, "member:e", "mobilization.closed").is_empty());
    assert_eq!(frames_of(&out.frames, "city", "mobilization.closed").len(), 1);
    assert_eq!(w.rt("a").work.duty_since, None, "closing ends the reported members' duty");
    assert_eq!(w.rt("a").work.duty_log, [(T0 + 10_000, T0 + 100_000)]);
    assert!(!w.mob(&id).is_open());

    let e = w.refuse(&as_member("b"), ack(&id));
    assert_err(&e, ErrorKind::Conflict, "mobilization_closed");
    let e = w.refuse(&city_command(), Command::CloseMobilization { mobilization_id: id.clone(), reason: None });
    assert_err(&e, ErrorKind::Conflict, "mobilization_closed");
    // the deadline of a closed mobilization passes silently
    let out = w.at(3_600).tick();
    assert!(out.events.is_empty(), "{:?}", kinds(&out));
}

#[test]
fn standing_down_closes_the_mobilizations_wholly_in_the_stood_down_scope() {
    let mut w = mobilization_world();
    w.ok(&city_command(), wartime("d1"));
    w.ok(&city_command(), wartime("d2"));
    let in_d1 = w.mobilize(&city_command(), mobilize_teams(&["t1"]));
    let in_d2 = w.mobilize(&city_command(), mobilize_teams(&["t4"]));
    let both = w.mobilize(&city_command(), mobilize_teams(&["t3", "t4"]));
    assert_eq!(w.mob(&both).districts, ["d1", "d2"]);

    let out = w.at(10).ok(&city_command(), peacetime("d1"));
    assert_eq!(kinds(&out), ["mode_switched", "mobilization_closed"]);
    assert!(!w.mob(&in_d1).is_open());
    assert_eq!(w.mob(&in_d1).closed.as_ref().unwrap().1, "stand_down");
    assert_eq!(frames_of(&out.frames, "member:a", "mobilization.closed").len(), 1);
    assert!(w.mob(&in_d2).is_open() && w.mob(&both).is_open());

    let out = w.at(20).ok(&city_command(), peacetime("d2"));
    assert_eq!(kinds(&out), ["mode_switched", "mobilization_closed"]);
    assert!(!w.mob(&in_d2).is_open());
    assert!(w.mob(&both).is_open(), "not wholly within d2");

    // A district standing down while the city is at war stays at war: nothing closes.
    w.at(30).ok(&city_command(), switch(None, Mode::Wartime));
    w.ok(&city_command(), wartime("d1"));
    let again = w.mobilize(&city_command(), mobilize_teams(&["t1"]));
    let out = w.at(40).ok(&city_command(), peacetime("d1"));
    assert_eq!(kinds(&out), ["mode_switched"]);
    assert!(w.mob(&again).is_open());
    // The city standing down closes everything no longer at war.
    let out = w.at(50).ok(&city_command(), switch(None, Mode::Peacetime));
    assert_eq!(kinds(&out), ["mode_switched", "mobilization_closed", "mobilization_closed"]);
    assert!(!w.mob(&again).is_open() && !w.mob(&both).is_open());
}

#[test]
fn a_mobilization_names_known_teams_by_exactly_one_selector() {
    let mut w = mobilization_world();
    let e = w.refuse(&city_command(), mobilize_teams(&["t1", "nope"]));
    assert_err(&e, ErrorKind::Invalid, "unknown_team");
    assert!(e.detail.contains("nope") && !e.detail.contains("t1"), "{}", e.detail);
    let e = w.refuse(&city_command(), Command::Mobilize(MobilizeOrder::default()));
    assert_err(&e, ErrorKind::Invalid, "one_selector");
    let e = w.refuse(
        &city_command(),
        Command::Mobilize(MobilizeOrder { teams: vec!["t1".into()], all_assault: true, ..Default::default() }),
    );
    assert_err(&e, ErrorKind::Invalid, "one_selector");
    let e = w.refuse(
        &city_command(),
        Command::Mobilize(MobilizeOrder {
            unit_id: Some("u1".into()),
            district_id: Some("d1".into()),
            ..Default::default()
        }),
    );
    assert_err(&e, ErrorKind::Invalid, "one_selector");
    let e = w.refuse(&staff("c1"), mobilize_teams(&["t1"]));
    assert_eq!(e.kind, ErrorKind::Forbidden);
    // district command: only its own district's teams (another's are unknown to it), only
    // to places in its district
    let e = w.refuse(&district_command("d1"), mobilize_teams(&["t4"]));
    assert_err(&e, ErrorKind::Invalid, "unknown_team");
    let e = w.refuse(
        &district_command("d2"),
        Command::Mobilize(MobilizeOrder {
            teams: vec!["t4".into()],
            site: Some(Site { name: "depot".into(), location: in_cell("g1", 0) }),
            ..Default::default()
        }),
    );
    assert_err(&e, ErrorKind::Forbidden, "outside_scope");
    let id = w.mobilize(&district_command("d1"), mobilize_teams(&["t1"]));
    assert_eq!(w.mob(&id).counts.ordered, 3);
    // the other selectors name assault teams only
    let id = w.mobilize(
        &city_command(),
        Command::Mobilize(MobilizeOrder { unit_id: Some("u1".into()), ..Default::default() }),
    );
    assert_eq!(w.mob(&id).teams.len(), 1, "u1's work team w1 is not mobilized");
    let id = w.mobilize(&city_command(), Command::Mobilize(MobilizeOrder { all_assault: true, ..Default::default() }));
    assert_eq!(w.mob(&id).counts.ordered, 5);
}

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

fn whistle(incident_id: &str, to: WhistleTarget) -> Command {
    Command::Whistle { incident_id: incident_id.into(), to }
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

// ---------------------------------------------------------------------------------------
// Fairness and fatigue
// ---------------------------------------------------------------------------------------

#[test]
fn a_member_with_three_easy_tasks_today_is_offered_no_fourth_easy_task_but_a_hard_one_and_again_tomorrow() {
    let mut w = world(vec![member("eager", "g1")]);
    for i in 0..3 {
        let t = i * 600;
        let (inc, out) = w.at(t).raise(&city_command(), patrol("g1", Level::IV, 1));
        assert_eq!(sent_to(&out), ["eager"], "easy task {}", i + 1);
        w.at(t + 10).accept("eager", &inc);
        w.at(t + 60).ok(&city_command(), resolve(&inc));
    }
    assert_eq!(w.rt("eager").work.easy_accepts.len(), 3);
    let (easy, out) = w.at(2_000).raise(&city_command(), patrol("g1", Level::IV, 1));
    assert!(sent_to(&out).is_empty(), "capped for easy tasks today");
    let (hard, out) = w.at(2_001).raise(&city_command(), rescue("g1", Level::IV, 1));
    assert_eq!(sent_to(&out), ["eager"], "a hard task is not capped");
    w.ok(&city_command(), cancel(&hard));
    // staff may raise the difficulty of an easy category: then it is no longer easy
    let mut raised = patrol("g1", Level::IV, 1);
    raised.difficulty = Some(3);
    let out = w.at(2_002).ok(&staff("c1"), Command::Raise(raised));
    assert_eq!(sent_to(&out), ["eager"], "a patrol raised to difficulty 3 is a normal task");
    let Some(Reply::Incident(normal)) = out.reply else { panic!() };
    w.ok(&city_command(), cancel(&normal));
    w.ok(&city_command(), cancel(&easy));
    // the next day
    let (_, out) = w.at(24 * H).raise(&city_command(), patrol("g1", Level::IV, 1));
    assert_eq!(sent_to(&out), ["eager"], "the cap resets the next day");
}

#[test]
fn difficulty_may_be_raised_but_not_below_the_categorys() {
    let mut w = world(vec![member("a", "g1")]);
    for (category, difficulty, ok) in [
        ("patrol", 1, true),
        ("patrol", 5, true),
        ("rescue", 5, true),
        ("rescue", 4, false),
        ("patrol", 0, false),
        ("patrol", 6, false),
    ] {
        let mut r = call("g1", category, Level::IV, 1);
        r.difficulty = Some(difficulty);
        if ok {
            let out = w.ok(&staff("c1"), Command::Raise(r));
            let Some(Reply::Incident(id)) = out.reply else { panic!() };
            assert_eq!(w.state.incidents[&id].difficulty, difficulty);
            w.ok(&staff("c1"), cancel(&id));
        } else {
            let e = w.refuse(&staff("c1"), Command::Raise(r));
            assert_err(&e, ErrorKind::Invalid, "difficulty_out_of_range");
        }
    }
}

/// Two members standing in the same cell: without fairness, `a` (the lower index) ranks first.
fn twins() -> World {
    world(vec![member("a", "g1"), member("b", "g1")])
}

/// The order of offers for a fresh call, then cancelled.
fn ranking(w: &mut World, at: i64, r: RaiseIncident) -> Vec<String> {
    let (inc, out) = w.at(at).raise(&city_command(), r);
    w.ok(&city_command(), cancel(&inc));
    sent_to(&out)
}

#[test]
fn with_load_m_a_member_carrying_more_load_ranks_after_an_equally_placed_one() {
    let mut w = twins();
    let (inc, out) = w.raise(&city_command(), rescue("g1", Level::IV, 1));
    assert_eq!(sent_to(&out), ["a", "b"]);
    w.at(10).accept("a", &inc);
    w.at(20).ok(&city_command(), resolve(&inc));
    // past the recent-duty window, so only the load tells them apart
    assert_eq!(ranking(&mut w, 2 * H, rescue("g1", Level::IV, 1)), ["a", "b"], "load_m is 0");
    w.rules.fairness.load_m = 50.0;
    assert_eq!(ranking(&mut w, 2 * H + 1, rescue("g1", Level::IV, 1)), ["b", "a"]);
    assert_eq!(ranking(&mut w, 2 * H + 2, patrol("g1", Level::IV, 1)), ["b", "a"]);
}

#[test]
fn with_hard_first_m_a_member_whose_load_was_all_easy_ranks_first_for_a_hard_task() {
    let mut w = twins();
    let (inc, _) = w.raise(&city_command(), rescue("g1", Level::IV, 1));
    w.at(10).accept("a", &inc);
    w.at(20).ok(&city_command(), resolve(&inc));
    let (inc, out) = w.at(30).raise(&city_command(), patrol("g1", Level::IV, 1));
    assert_eq!(sent_to(&out), ["b", "a"], "a's recent duty");
    w.at(40).accept("b", &inc);
    w.at(50).ok(&city_command(), resolve(&inc));
    let (a, b) = (&w.rt("a").work, &w.rt("b").work);
    assert_eq!((a.load, a.hard_load, b.load, b.hard_load), (5.0, 5.0, 1.0, 0.0));

    let t = 2 * H;
    assert_eq!(ranking(&mut w, t, rescue("g1", Level::IV, 1)), ["a", "b"], "hard_first_m is 0");
    w.rules.fairness.hard_first_m = 600.0;
    assert_eq!(ranking(&mut w, t + 1, rescue("g1", Level::IV, 1)), ["b", "a"], "easy-only load first for hard");
    assert_eq!(ranking(&mut w, t + 2, patrol("g1", Level::IV, 1)), ["a", "b"], "not for an easy task");
}

#[test]
fn a_member_on_duty_12_hours_in_24_is_offered_nothing_until_rested_8_hours() {
    let mut w = world(vec![member("tired", "g1")]);
    let (inc, _) = w.raise(&city_command(), rescue("g1", Level::IV, 1));
    w.at(10).accept("tired", &inc);
    assert_eq!(w.rt("tired").work.duty_since, Some(T0 + 10_000), "an accepted task starts duty");
    w.at(10 + 12 * H).ok(&city_command(), resolve(&inc));
    let work = &w.rt("tired").work;
    assert_eq!(work.duty_since, None, "resolving ends duty");
    assert_eq!(work.duty_log, [(T0 + 10_000, T0 + (10 + 12 * H) * 1000)]);

    let offered = |w: &mut World, t: i64| !ranking(w, t, rescue("g1", Level::IV, 1)).is_empty();
    assert!(!offered(&mut w, 10 + 12 * H), "12 h on duty");
    assert!(!offered(&mut w, 10 + 15 * H), "3 h of rest");
    assert!(!offered(&mut w, 9 + 20 * H), "just short of 8 h of rest");
    assert!(offered(&mut w, 10 + 20 * H), "8 h of rest");
    // fatigued members are not available for a transfer either (balance counts them out)
    let (inc, _) = w.at(11 + 20 * H).raise(&city_command(), rescue("g1", Level::IV, 1));
    w.at(12 + 20 * H).accept("tired", &inc);
    w.at(12 + 32 * H).ok(&city_command(), resolve(&inc));
    assert_eq!(w.balance("c1"), 0, "{:?}", w.rt("tired").work);
}

#[test]
fn an_offer_out_when_the_member_reaches_the_cap_is_not_followed_by_another() {
    // 11.5 h on duty, then a short task of 30 min: at the cap, nothing more until rested.
    let mut w = world(vec![member("m", "g1"), member("fresh", "g7")]);
    let (inc, _) = w.raise(&city_command(), rescue("g1", Level::IV, 1));
    w.at(1).accept("m", &inc);
    w.at(1 + 11 * H + H / 2).ok(&city_command(), resolve(&inc));
    let (inc, out) = w.at(2 + 11 * H + H / 2).raise(&city_command(), rescue("g1", Level::IV, 1));
    assert_eq!(sent_to(&out), ["m"], "11.5 h: not yet at the cap");
    w.at(3 + 11 * H + H / 2).accept("m", &inc);
    w.at(3 + 12 * H).ok(&city_command(), resolve(&inc));
    assert!(w.rt("m").work.fatigued(w.now, &w.rules));
    assert!(ranking(&mut w, 4 + 12 * H, rescue("g1", Level::IV, 1)).is_empty());
}

// ---------------------------------------------------------------------------------------
// Replay
// ---------------------------------------------------------------------------------------

fn wartime_scenario() -> World {
    let mut w = world(vec![
        member("a", "g1").team("t1").at("g2"),
        member("b", "g1").team("t1").at("g3").off_call(),
        member("c", "g4").team("t3"),
        member("d", "g6").unit("u4"),
        member("e", "g6").unit("u4"),
        member("f", "g7").team("t4"),
    ]);
    w.at(1).ok(&city_command(), wartime("d1"));
    let (inc, _) = w.at(2).raise(&city_command(), rescue("g1", Level::IV, 4));
    w.at(3).ok(&staff("c1"), whistle(&inc, WhistleTarget::StreetUnits));
    w.at(4).accept("a", &inc);
    let mob = w.at(5).mobilize(&city_command(), mobilize_teams(&["t3", "t4"]));
    w.at(6).ok(&as_member("c"), ack(&mob));
    w.at(7).ok(&as_member("f"), report(&mob, community_center("c4")));
    let (inc2, _) = w.at(8).raise(&city_command(), rescue("g4", Level::IV, 3));
    let p = balance::proposals(&w.state, &w.rules, w.now).remove(0);
    w.at(9).ok(&city_command(), transfer(&p.from, &p.to, &p.members));
    w.at(700).tick();
    w.at(3_700).tick();
    w.at(3_701).ok(&city_command(), cancel(&inc2));
    w.at(3_702).ok(&city_command(), resolve(&inc));
    w.at(3_703).ok(&city_command(), peacetime("d1"));
    w.at(3_704).ok(&city_command(), switch(None, Mode::Wartime));
    w
}

#[test]
fn replaying_a_wartime_scenario_rebuilds_the_same_state_and_frames() {
    let w = wartime_scenario();
    w.assert_covers(&[
        "mode_switched",
        "units_whistled",
        "whistle_overdue",
        "mobilization_ordered",
        "mobilization_acknowledged",
        "mobilization_reported",
        "mobilization_deadline_passed",
        "members_transferred",
    ]);
    assert!(w.state.roster.members.iter().any(|m| m.home.is_some()), "a transfer happened");
    super::testkit::assert_restores_at_every_cut(&w.log, &w.rules);
    let (state, frames) = replay(&w.log);
    // Deadlines aside (the replay also holds those already fired, which fire harmlessly, and
    // retries are soft), the replayed state is the live one.
    assert_eq!(durable(&state), durable(&w.state));
    for d in w.state.deadlines.iter().filter(|(_, d)| !matches!(d, Deadline::Retry(_))) {
        assert!(state.deadlines.contains(d), "{d:?} lost in the replay");
    }
    assert_eq!(frames, w.frames);
    assert_eq!(state.city_mode, Mode::Wartime);
    assert_eq!(state.wartime_districts, w.state.wartime_districts);
    // the replayed state decides the next step as the live one does
    let mut live = w;
    let mut again = live.beside(state);
    again.state.schedule_retries(live.now); // as the engine does after a restart
    for t in [3_800, 7_400] {
        let a = live.at(t).tick();
        let b = again.at(t).tick();
        assert_eq!(a.events, b.events);
        assert_eq!(a.frames, b.frames);
    }
    let a = live.at(7_500).ok(&city_command(), Command::Raise(rescue("g1", Level::II, 3)));
    let b = again.at(7_500).ok(&city_command(), Command::Raise(rescue("g1", Level::II, 3)));
    assert!(!sent_to(&a).is_empty());
    assert_eq!(a.events, b.events);
    assert_eq!(a.frames, b.frames);
    assert_eq!(live.state.mobilizations, again.state.mobilizations);
}

#[test]
fn every_stream_counts_its_seqs_from_one_without_gaps_in_a_wartime_scenario() {
    let w = wartime_scenario();
    w.assert_streams_count_from_one();
}

#[test]
fn mobilization_order_frames_stay_open_until_reported_and_status_counts_match_orders() {
    let w = wartime_scenario();
    let m = w.mob("mob-1");
    let count = |s: OrderState| m.orders.iter().filter(|o| o.state == s).count() as u32;
    assert_eq!(m.counts.ordered, m.orders.len() as u32);
    assert_eq!(m.counts.reported, count(OrderState::Reported));
    assert_eq!(m.counts.acknowledged, count(OrderState::Reported) + count(OrderState::Acknowledged));
    assert_eq!(m.counts.missing, m.counts.ordered - m.counts.reported);
}

// ---------------------------------------------------------------------------------------
// Edges
// ---------------------------------------------------------------------------------------

#[test]
fn a_member_stays_on_duty_while_a_reported_mobilization_holds_them_after_their_incident_closes() {
    let mut w = mobilization_world();
    let (inc, _) = w.raise(&city_command(), rescue("g7", Level::IV, 1));
    w.at(10).accept("e", &inc);
    let id = w.at(20).mobilize(&city_command(), mobilize_teams(&["t4"]));
    w.at(30).ok(&as_member("e"), report(&id, community_center("c4")));
    assert_eq!(w.rt("e").work.duty_since, Some(T0 + 10_000));
    w.at(40).ok(&city_command(), resolve(&inc));
    assert_eq!(w.rt("e").work.duty_since, Some(T0 + 10_000), "still held by the mobilization");
    w.at(50).ok(&city_command(), Command::CloseMobilization { mobilization_id: id, reason: Some("done".into()) });
    assert_eq!(w.rt("e").work.duty_since, None);
    assert_eq!(w.rt("e").work.duty_log, [(T0 + 10_000, T0 + 50_000)]);
}

#[test]
fn a_whistle_does_not_offer_an_easy_task_to_a_member_at_the_easy_cap() {
    let mut w = world(vec![member("eager", "g1").team("t1"), member("fresh", "g7").team("t2")]);
    for i in 0..3 {
        let t = i * 600;
        let (inc, _) = w.at(t).raise(&city_command(), patrol("g1", Level::IV, 1));
        w.at(t + 10).accept("eager", &inc);
        w.at(t + 60).ok(&city_command(), resolve(&inc));
    }
    let (inc, out) = w.at(2_000).raise(&city_command(), patrol("g1", Level::IV, 1));
    assert!(sent_to(&out).is_empty());
    let out = w.at(2_001).ok(&staff("c1"), whistle(&inc, WhistleTarget::PairedUnits));
    assert_eq!(sent_to(&out), ["fresh"], "eager has had three easy tasks today");
}

#[test]
fn a_reimport_during_an_open_mobilization_keeps_each_order_with_its_member() {
    let mut w = mobilization_world();
    let id = w.mobilize(&city_command(), mobilize_teams(&["t1", "t3"]));
    // the same members, in another order (e, who was not ordered, now has a's old index)
    let city = war_city(vec![
        member("e", "g7").team("t4"),
        member("d", "g4").team("t3").at("g7"),
        member("c", "g6").team("t1").at("g7").off_call(),
        member("b", "g1").team("t1").at("g7"),
        member("a", "g1").team("t1").at("g7"),
    ]);
    // refused while a mobilization is open: orders are keyed by member index
    let e = w.at(10).refuse(&city_command(), Command::ImportCity(Box::new(city)));
    assert_err(&e, ErrorKind::Conflict, "open_mobilizations");
    assert_eq!(w.state.open_frames("member:a").len(), 1, "a's order is still open for a (resent on connect)");
    w.at(21).ok(&as_member("a"), ack(&id));
    let m = w.mob(&id);
    let state_of = |who: &str| m.orders.iter().find(|o| o.member_id == who).map(|o| o.state);
    assert_eq!(state_of("a"), Some(OrderState::Acknowledged), "a acknowledged their own order");
    assert_eq!(state_of("b"), Some(OrderState::Ordered));
}

#[test]
fn a_mobilization_to_a_site_outside_every_district_is_not_closed_by_another_districts_command() {
    let mut w = mobilization_world();
    let order = MobilizeOrder {
        teams: vec!["t1".into()],
        site: Some(Site { name: "airfield".into(), location: nowhere() }),
        ..Default::default()
    };
    let id = w.mobilize(&city_command(), Command::Mobilize(order));
    assert!(w.mob(&id).districts.is_empty());
    let e = w.refuse(&district_command("d2"), Command::CloseMobilization { mobilization_id: id.clone(), reason: None });
    assert_err(&e, ErrorKind::NotFound, "unknown_mobilization");
    w.ok(&city_command(), wartime("d2"));
    let out = w.at(10).ok(&city_command(), peacetime("d2"));
    assert_eq!(kinds(&out), ["mode_switched"], "d2 standing down does not close a mobilization outside d2");
    assert!(w.mob(&id).is_open());
}

/// Progress frames are written as JSON text, not built as values: the text is what the
/// value would encode to, byte for byte (keys sorted, as serde_json's map writes them),
/// in the city's frame and a district's, with and without a community to report to.
#[test]
fn a_progress_frame_is_written_as_the_json_its_value_encodes_to() {
    let mut w = mobilization_world();
    let to_site = Command::Mobilize(MobilizeOrder {
        teams: vec!["t1".into()],
        site: Some(Site { name: "a \"site\"".into(), location: community_center("c1") }),
        ..Default::default()
    });
    let site = w.mobilize(&city_command(), to_site);
    let id = w.mobilize(&city_command(), mobilize_teams(&["t3", "t4"]));
    let mut frames = Vec::new();
    for (who, cmd) in [("a", ack(&site)), ("d", ack(&id)), ("e", report(&id, community_center("c4")))] {
        frames.extend(execute(&mut w.state, &w.rules, &as_member(who), cmd, w.now).unwrap().frames);
    }
    frames.extend(execute(&mut w.state, &w.rules, &Actor::System, Command::Tally, w.now).unwrap().frames);
    let progress: Vec<&Frame> = frames.iter().filter(|f| f.kind == "mobilization.progress").collect();
    assert!(progress.len() >= 4, "the city's and a district's for each mobilization: {progress:?}");
    for f in progress {
        let as_value = Frame { data: FrameData::from((*f.data).clone()), ..f.clone() };
        assert_eq!(f.to_text(), as_value.to_text());
        assert!(f.data["changes"].as_array().is_some_and(|c| !c.is_empty()), "{f:?}");
    }
}
