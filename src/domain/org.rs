//! The organisation: districts, streets, communities with their grids, units, teams and
//! members, as imported with `PUT /v1/city`, and the indexes the dispatcher needs over it.
//!
//! `City` is the wire and log form (plain, serde). `CityIndex` is built from it once per
//! import and answers the questions matching asks in O(1): which grid holds this cell,
//! which community holds this grid, which grids neighbour this one.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::geo::{Cell, Position};

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct City {
    #[serde(default)]
    pub name: String,
    pub districts: Vec<District>,
    pub streets: Vec<Street>,
    pub communities: Vec<Community>,
    pub units: Vec<Unit>,
    pub teams: Vec<Team>,
    pub members: Vec<Member>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct District {
    pub id: String,
    pub name: String,
    pub seat: Position,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Street {
    pub id: String,
    pub name: String,
    pub district_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Community {
    pub id: String,
    pub name: String,
    pub street_id: String,
    pub grids: Vec<Grid>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Grid {
    pub id: String,
    /// Resolution-9 H3 cells, as 15-hex-digit strings.
    #[schema(value_type = Vec<String>)]
    pub cells: Vec<Cell>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Unit {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TeamKind {
    Work,
    Assault,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Team {
    pub id: String,
    pub name: String,
    pub unit_id: String,
    pub kind: TeamKind,
    /// The community this team is paired with (对口联系社区).
    pub community_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Member {
    pub id: String,
    pub name: String,
    pub unit_id: String,
    pub team_id: Option<String>,
    /// The grid of the member's residence community (双报到).
    pub residence_grid_id: String,
    #[serde(default)]
    pub skills: Vec<String>,
    pub position: Position,
    #[serde(default)]
    pub on_call: bool,
    /// Reported (报到) at their residence community; the registration rate counts these.
    #[serde(default = "yes")]
    pub registered: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct CityError(pub String);

/// Where a grid sits in the hierarchy, by index into `City`'s vectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GridPlace {
    pub community: u32,
    pub street: u32,
    pub district: u32,
}

/// A validated city with its lookup tables. Indexes are positions in `city`'s vectors.
#[derive(Debug, Clone, Default)]
pub struct CityIndex {
    pub city: Option<std::sync::Arc<City>>,
    pub district_by_id: HashMap<String, u32>,
    pub street_by_id: HashMap<String, u32>,
    pub community_by_id: HashMap<String, u32>,
    pub unit_by_id: HashMap<String, u32>,
    pub team_by_id: HashMap<String, u32>,
    pub member_by_id: HashMap<String, u32>,
    /// grid id -> (community index, grid index within it)
    pub grid_by_id: HashMap<String, (u32, u32)>,
    /// Flat grid numbering: `grid_places[g]` for the g-th grid in import order.
    pub grid_places: Vec<GridPlace>,
    pub grid_ids: Vec<String>,
    pub grid_flat: HashMap<String, u32>,
    pub grid_centers: Vec<Position>,
    /// Grids sharing an edge or corner with each grid (the reach of a level-Ⅳ call).
    pub grid_neighbours: Vec<Vec<u32>>,
    pub cell_to_grid: HashMap<Cell, u32>,
    pub community_centers: Vec<Position>,
    /// member index -> flat grid index of their residence
    pub member_residence: Vec<u32>,
    /// member index -> community index their team is paired with
    pub member_paired_community: Vec<Option<u32>>,
    /// member index -> their team, and unit
    pub member_team: Vec<Option<u32>>,
    pub member_unit: Vec<u32>,
    /// team index -> its members
    pub team_members: Vec<Vec<u32>>,
    /// team index -> the community it is paired with
    pub team_community: Vec<u32>,
    /// Skills as bits (a city names at most 64 distinct skills), so matching compares
    /// masks instead of strings.
    pub skill_bits: HashMap<String, u32>,
    pub member_skills: Vec<u64>,
}

/// Required skills as a mask, plus those no member of the city has at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SkillMask {
    pub bits: u64,
    pub unheld: u32,
}

impl SkillMask {
    /// How many required skills a member with `have` lacks.
    pub fn missing(self, have: u64) -> u32 {
        (self.bits & !have).count_ones() + self.unheld
    }
}

fn index_unique<'a>(kind: &str, ids: impl Iterator<Item = &'a String>) -> Result<HashMap<String, u32>, CityError> {
    let mut map = HashMap::new();
    for (i, id) in ids.enumerate() {
        if id.is_empty() || id.len() > 64 {
            return Err(CityError(format!("{kind} id '{id}' must be 1 to 64 characters")));
        }
        if map.insert(id.clone(), i as u32).is_some() {
            return Err(CityError(format!("{kind} id '{id}' appears twice")));
        }
    }
    Ok(map)
}

fn lookup(map: &HashMap<String, u32>, kind: &str, id: &str, whose: &str) -> Result<u32, CityError> {
    map.get(id).copied().ok_or_else(|| CityError(format!("{whose} names {kind} '{id}', which is not in the city")))
}

fn mean_position(points: impl Iterator<Item = Position>) -> Option<Position> {
    let (mut lat, mut lng, mut n) = (0.0, 0.0, 0.0);
    for p in points {
        lat += p.lat;
        lng += p.lng;
        n += 1.0;
    }
    (n > 0.0).then(|| Position { lat: lat / n, lng: lng / n })
}

impl CityIndex {
    /// Validates referential integrity and builds every lookup table. A city that fails
    /// here is refused whole; nothing of it is kept.
    pub fn build(mut city: City) -> Result<Self, CityError> {
        let district_by_id = index_unique("district", city.districts.iter().map(|d| &d.id))?;
        let street_by_id = index_unique("street", city.streets.iter().map(|s| &s.id))?;
        let community_by_id = index_unique("community", city.communities.iter().map(|c| &c.id))?;
        let unit_by_id = index_unique("unit", city.units.iter().map(|u| &u.id))?;
        let team_by_id = index_unique("team", city.teams.iter().map(|t| &t.id))?;

        if city.communities.is_empty() {
            return Err(CityError("a city needs at least one community".into()));
        }

        let mut street_district = Vec::with_capacity(city.streets.len());
        for s in &city.streets {
            street_district.push(lookup(&district_by_id, "district", &s.district_id, &format!("street '{}'", s.id))?);
        }

        let mut grid_by_id = HashMap::new();
        let mut grid_flat = HashMap::new();
        let mut grid_places = Vec::new();
        let mut grid_ids = Vec::new();
        let mut grid_centers = Vec::new();
        let mut cell_to_grid: HashMap<Cell, u32> = HashMap::new();
        let mut community_centers = Vec::with_capacity(city.communities.len());
        for (ci, c) in city.communities.iter().enumerate() {
            let street = lookup(&street_by_id, "street", &c.street_id, &format!("community '{}'", c.id))?;
            let district = street_district[street as usize];
            if c.grids.is_empty() {
                return Err(CityError(format!("community '{}' has no grids", c.id)));
            }
            for (gi, g) in c.grids.iter().enumerate() {
                if g.id.is_empty() || g.id.len() > 64 {
                    return Err(CityError(format!("grid id '{}' must be 1 to 64 characters", g.id)));
                }
                if grid_by_id.insert(g.id.clone(), (ci as u32, gi as u32)).is_some() {
                    return Err(CityError(format!("grid id '{}' appears twice", g.id)));
                }
                if g.cells.is_empty() {
                    return Err(CityError(format!("grid '{}' has no cells", g.id)));
                }
                let flat = grid_places.len() as u32;
                for cell in &g.cells {
                    if let Some(other) = cell_to_grid.insert(*cell, flat) {
                        return Err(CityError(format!(
                            "cell {cell} is in both grid '{}' and grid '{}'",
                            grid_ids[other as usize], g.id
                        )));
                    }
                }
                grid_flat.insert(g.id.clone(), flat);
                grid_places.push(GridPlace { community: ci as u32, street, district });
                grid_ids.push(g.id.clone());
                grid_centers.push(mean_position(g.cells.iter().map(|c| c.center())).expect("grid has cells"));
            }
            let first = grid_places.len() - c.grids.len();
            community_centers.push(mean_position(grid_centers[first..].iter().copied()).expect("community has grids"));
        }

        let mut grid_neighbours = vec![Vec::new(); grid_places.len()];
        for (g, nbrs) in grid_neighbours.iter_mut().enumerate() {
            let (ci, gi) = grid_by_id[&grid_ids[g]];
            let mut set = HashSet::new();
            for cell in &city.communities[ci as usize].grids[gi as usize].cells {
                for n in cell.disk1() {
                    if let Some(&other) = cell_to_grid.get(&n)
                        && other as usize != g
                    {
                        set.insert(other);
                    }
                }
            }
            let mut v: Vec<u32> = set.into_iter().collect();
            v.sort_unstable();
            *nbrs = v;
        }

        let mut team_community = Vec::with_capacity(city.teams.len());
        for t in &city.teams {
            let whose = format!("team '{}'", t.id);
            lookup(&unit_by_id, "unit", &t.unit_id, &whose)?;
            team_community.push(lookup(&community_by_id, "community", &t.community_id, &whose)?);
        }

        let members = std::mem::take(&mut city.members);
        let team_count = city.teams.len();
        let mut index = Self {
            city: Some(std::sync::Arc::new(city)),
            district_by_id,
            street_by_id,
            community_by_id,
            unit_by_id,
            team_by_id,
            member_by_id: HashMap::with_capacity(members.len()),
            grid_by_id,
            grid_places,
            grid_ids,
            grid_flat,
            grid_centers,
            grid_neighbours,
            cell_to_grid,
            community_centers,
            member_residence: Vec::with_capacity(members.len()),
            member_paired_community: Vec::with_capacity(members.len()),
            member_team: Vec::with_capacity(members.len()),
            member_unit: Vec::with_capacity(members.len()),
            team_members: vec![Vec::new(); team_count],
            team_community,
            skill_bits: HashMap::new(),
            member_skills: Vec::with_capacity(members.len()),
        };
        for m in members {
            index.add_member(m)?;
        }
        Ok(index)
    }

    /// Validates one member against the city and appends it to every table. Nothing
    /// changes when it fails.
    pub fn add_member(&mut self, m: Member) -> Result<u32, CityError> {
        let whose = format!("member '{}'", m.id);
        if m.id.is_empty() || m.id.len() > 64 {
            return Err(CityError(format!("member id '{}' must be 1 to 64 characters", m.id)));
        }
        if self.member_by_id.contains_key(&m.id) {
            return Err(CityError(format!("member id '{}' appears twice", m.id)));
        }
        let city = self.city.as_ref().expect("index built from a city");
        let unit = lookup(&self.unit_by_id, "unit", &m.unit_id, &whose)?;
        let team = match &m.team_id {
            Some(t) => {
                let ti = lookup(&self.team_by_id, "team", t, &whose)?;
                if city.teams[ti as usize].unit_id != m.unit_id {
                    return Err(CityError(format!("{whose} is in team '{t}' of another unit")));
                }
                Some(ti)
            }
            None => None,
        };
        let residence = lookup(&self.grid_flat, "grid", &m.residence_grid_id, &whose)?;
        let mut bits = self.skill_bits.clone();
        let mut mask = 0u64;
        for s in &m.skills {
            let next = bits.len() as u32;
            let bit = *bits.entry(s.clone()).or_insert(next);
            if bit >= 64 {
                return Err(CityError("a city names at most 64 distinct skills".into()));
            }
            mask |= 1 << bit;
        }
        let idx = city.members.len() as u32;
        self.skill_bits = bits;
        self.member_skills.push(mask);
        self.member_unit.push(unit);
        if let Some(t) = team {
            self.team_members[t as usize].push(idx);
        }
        self.member_paired_community.push(team.map(|t| self.team_community[t as usize]));
        self.member_team.push(team);
        self.member_residence.push(residence);
        self.member_by_id.insert(m.id.clone(), idx);
        std::sync::Arc::make_mut(self.city.as_mut().expect("index built from a city")).members.push(m);
        Ok(idx)
    }

    pub fn city(&self) -> Option<&City> {
        self.city.as_deref()
    }

    pub fn members(&self) -> &[Member] {
        self.city.as_ref().map(|c| c.members.as_slice()).unwrap_or(&[])
    }

    pub fn community(&self, idx: u32) -> &Community {
        &self.city.as_ref().expect("index built from a city").communities[idx as usize]
    }

    pub fn district_id_of_community(&self, idx: u32) -> &str {
        let city = self.city.as_ref().expect("index built from a city");
        let street = self.street_by_id[&city.communities[idx as usize].street_id];
        &city.districts[self.district_of_street(street) as usize].id
    }

    pub fn district_of_street(&self, street: u32) -> u32 {
        let city = self.city.as_ref().expect("index built from a city");
        self.district_by_id[&city.streets[street as usize].district_id]
    }

    pub fn skill_mask(&self, skills: &[String]) -> SkillMask {
        let mut m = SkillMask { bits: 0, unheld: 0 };
        for s in skills {
            match self.skill_bits.get(s) {
                Some(&b) => m.bits |= 1 << b,
                None => m.unheld += 1,
            }
        }
        m
    }

    pub fn is_assault(&self, member: u32) -> bool {
        let city = self.city.as_ref().expect("index built from a city");
        self.member_team[member as usize].is_some_and(|t| city.teams[t as usize].kind == TeamKind::Assault)
    }

    /// The community a member lives in (双报到: their residence grid's community).
    pub fn residence_community(&self, member: u32) -> u32 {
        self.grid_places[self.member_residence[member as usize] as usize].community
    }

    pub fn district_of_community(&self, community: u32) -> u32 {
        let city = self.city.as_ref().expect("index built from a city");
        self.district_of_street(self.street_by_id[&city.communities[community as usize].street_id])
    }

    /// The grid holding a position, if any grid does.
    pub fn grid_at(&self, p: Position) -> Option<u32> {
        self.cell_to_grid.get(&p.cell()).copied()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::domain::fixtures::tiny_city;

    #[test]
    fn builds_indexes_and_neighbours() {
        let idx = CityIndex::build(tiny_city(vec![])).unwrap();
        assert_eq!(idx.grid_places.len(), 4);
        let g1 = idx.grid_flat["g1"];
        let g2 = idx.grid_flat["g2"];
        assert!(idx.grid_neighbours[g1 as usize].contains(&g2));
        assert!(!idx.grid_neighbours[g1 as usize].contains(&idx.grid_flat["g4"]));
        assert_eq!(idx.district_id_of_community(1), "d1");
    }

    #[test]
    fn refuses_dangling_references_and_duplicates() {
        let mut c = tiny_city(vec![]);
        c.teams[0].community_id = "nowhere".into();
        let err = CityIndex::build(c).unwrap_err();
        assert!(err.0.contains("nowhere"), "{err}");

        let mut c = tiny_city(vec![]);
        let cell = c.communities[0].grids[0].cells[0];
        c.communities[1].grids[0].cells.push(cell);
        assert!(CityIndex::build(c).unwrap_err().0.contains("in both grid"));

        let mut c = tiny_city(vec![]);
        c.streets.push(c.streets[0].clone());
        assert!(CityIndex::build(c).unwrap_err().0.contains("appears twice"));
    }
}
