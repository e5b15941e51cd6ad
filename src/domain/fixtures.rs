//! The domain tests' geography: one row of resolution-9 cells running east from a fixed
//! origin, laid out two ways, two cells per grid:
//! - `tiny_city` (the incident tests, the city index's): one district, one street,
//!   communities c1 (g1, g2) and c2 (g3, g4); unit u1 with assault team t1 paired with c1;
//! - `two_districts` (the wartime and service tests): two districts, three streets, four
//!   communities, four units with their teams.

use super::geo::{Cell, Position};
use super::org::{City, Community, District, Grid, Member, Street, Team, TeamKind, Unit};

/// 14 res-9 cells in a row, walking east from a fixed origin.
pub(super) fn row() -> Vec<Cell> {
    let origin = Position::new(30.59, 114.30).unwrap().cell();
    (0..14u32)
        .scan(origin, |c, _| {
            let here = *c;
            *c = c.ring(1).into_iter().max_by(|a, b| a.center().lng.total_cmp(&b.center().lng)).unwrap();
            Some(here)
        })
        .collect()
}

/// A small city: one district, one street, two communities side by side, each with two
/// grids of two cells (the first eight cells of the row); one unit with an assault team
/// paired with community c1.
pub(super) fn tiny_city(members: Vec<Member>) -> City {
    let cells = row();
    let grid = |id: &str, i: usize| Grid { id: id.into(), cells: cells[i..i + 2].to_vec() };
    let community = |id: &str, grids: Vec<Grid>| Community {
        id: id.into(),
        name: id.to_uppercase(),
        street_id: "s1".into(),
        grids,
    };
    City {
        name: "tiny".into(),
        districts: vec![District { id: "d1".into(), name: "D1".into(), seat: cells[0].center() }],
        streets: vec![Street { id: "s1".into(), name: "S1".into(), district_id: "d1".into() }],
        communities: vec![
            community("c1", vec![grid("g1", 0), grid("g2", 2)]),
            community("c2", vec![grid("g3", 4), grid("g4", 6)]),
        ],
        units: vec![Unit { id: "u1".into(), name: "U1".into() }],
        teams: vec![Team {
            id: "t1".into(),
            name: "T1".into(),
            unit_id: "u1".into(),
            kind: TeamKind::Assault,
            community_id: "c1".into(),
        }],
        members,
    }
}

/// The grid ids, in order along the row (two cells each).
pub(super) const GRIDS: [&str; 7] = ["g1", "g2", "g3", "g4", "g5", "g6", "g7"];

/// Communities c1 (g1–g3) and c2 (g4, g5) in street s1, c3 (g6) in s2 (district d1), c4
/// (g7) in s3 (district d2); units u1–u4 with assault teams t1–t4 and work team w1.
pub(super) fn two_districts(name: &str, members: Vec<Member>) -> City {
    let cells = row();
    let grid = |id: &str| {
        let i = GRIDS.iter().position(|g| *g == id).unwrap();
        Grid { id: id.into(), cells: cells[2 * i..2 * i + 2].to_vec() }
    };
    let community = |id: &str, street: &str, grids: &[&str]| Community {
        id: id.into(),
        name: id.to_uppercase(),
        street_id: street.into(),
        grids: grids.iter().map(|g| grid(g)).collect(),
    };
    let team = |id: &str, unit: &str, kind: TeamKind, community: &str| Team {
        id: id.into(),
        name: id.to_uppercase(),
        unit_id: unit.into(),
        kind,
        community_id: community.into(),
    };
    City {
        name: name.into(),
        districts: vec![
            District { id: "d1".into(), name: "D1".into(), seat: cells[0].center() },
            District { id: "d2".into(), name: "D2".into(), seat: cells[12].center() },
        ],
        streets: vec![
            Street { id: "s1".into(), name: "S1".into(), district_id: "d1".into() },
            Street { id: "s2".into(), name: "S2".into(), district_id: "d1".into() },
            Street { id: "s3".into(), name: "S3".into(), district_id: "d2".into() },
        ],
        communities: vec![
            community("c1", "s1", &["g1", "g2", "g3"]),
            community("c2", "s1", &["g4", "g5"]),
            community("c3", "s2", &["g6"]),
            community("c4", "s3", &["g7"]),
        ],
        units: ["u1", "u2", "u3", "u4"].iter().map(|u| Unit { id: u.to_string(), name: u.to_uppercase() }).collect(),
        teams: vec![
            team("t1", "u1", TeamKind::Assault, "c1"),
            team("t2", "u2", TeamKind::Assault, "c1"),
            team("t3", "u3", TeamKind::Assault, "c2"),
            team("t4", "u4", TeamKind::Assault, "c4"),
            team("w1", "u1", TeamKind::Work, "c1"),
        ],
        members,
    }
}

/// The centre of the i-th cell of a grid.
pub(super) fn in_cell(grid: &str, i: usize) -> Position {
    let g = GRIDS.iter().position(|g| *g == grid).unwrap_or_else(|| panic!("no grid {grid}"));
    row()[2 * g + i].center()
}

/// An on-call member of unit u1 in no team, living in `home` and standing in its first cell.
pub(super) fn member(id: &str, home: &str) -> Member {
    Member {
        id: id.into(),
        name: id.to_uppercase(),
        unit_id: "u1".into(),
        team_id: None,
        residence_grid_id: home.into(),
        skills: Vec::new(),
        position: in_cell(home, 0),
        on_call: true,
        registered: true,
    }
}
