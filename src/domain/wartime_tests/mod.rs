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
use super::wartime::{MobilizeOrder, WhistleTarget};
use crate::domain::testkit::*;

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

fn mobilization_world() -> World {
    world(vec![
        member("a", "g1").team("t1").at("g7"),
        member("b", "g1").team("t1").at("g7"),
        member("c", "g6").team("t1").at("g7").off_call(),
        member("d", "g4").team("t3").at("g7"),
        member("e", "g7").team("t4"),
    ])
}

fn whistle(incident_id: &str, to: WhistleTarget) -> Command {
    Command::Whistle { incident_id: incident_id.into(), to }
}

mod fairness;
mod mobilization;
mod modes;
mod whistles;
