//! Domain tests: the dispatcher driven through `execute`, with time passed in.
//!
//! The fixture is `fixtures::tiny_city`: one district d1, one street s1, communities c1
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
use super::fixtures::tiny_city;
use super::geo::{Cell, Position};
use super::incident::{OfferState, Status};
use super::matching::{self, Target};
use super::org::{City, CityIndex, Grid, Member};
use super::response::{Level, Reach, Rules};
use crate::domain::testkit::*;

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

/// `a` has accepted a call in g1 (located at g1's centre).
fn accepted_call() -> (World, String, String) {
    let mut w = world(vec![member("a", in_cell("g1", 0)), member("b", in_cell("g1", 1))]);
    let (inc, _) = w.raise(&staff("c1"), rescue("g1", Level::IV, 2));
    w.at(10).accept("a", &inc);
    let offer = w.offer_id(&inc, "a");
    (w, inc, offer)
}

mod answers;
mod escalation;
mod ranking;
mod replay;
mod rules;
