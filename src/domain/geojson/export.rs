//! The city as a GeoJSON FeatureCollection: every grid's outline traced from its cells
//! (h3o's `Solvent`), a community, street or district as the outline of all its grids, with
//! the import's property schema; the roster (units, teams, members) and the city's name ride
//! along as the collection's `roster` and `name` members, so the file imports back whole.

use geojson::{Feature, FeatureCollection, Geometry, GeometryValue, JsonObject};
use h3o::geom::SolventBuilder;
use serde_json::{Value, json};

use super::{GridReport, Roster};
use crate::domain::geo::Cell;
use crate::domain::org::{City, Member};

fn outline<'a>(cells: impl Iterator<Item = &'a Cell>) -> Option<Geometry> {
    let mut all: Vec<h3o::CellIndex> = cells.map(|c| c.0).collect();
    all.sort_unstable();
    all.dedup();
    if all.is_empty() {
        return None;
    }
    // Cells of one city are unique and all of resolution 9: dissolving cannot fail.
    let shape = SolventBuilder::new().build().dissolve(all).ok()?;
    Some(Geometry::new(GeometryValue::from(&shape)))
}

fn feature(kind: &str, id: &str, name: Option<&str>, parent: Option<&str>, geometry: Option<Geometry>) -> Feature {
    let mut props = JsonObject::new();
    props.insert("kind".into(), Value::from(kind));
    props.insert("id".into(), Value::from(id));
    if let Some(n) = name {
        props.insert("name".into(), Value::from(n));
    }
    if let Some(p) = parent {
        props.insert("parent".into(), Value::from(p));
    }
    Feature {
        bbox: None,
        geometry,
        id: Some(geojson::feature::Id::String(format!("{kind}:{id}"))),
        properties: Some(props),
        foreign_members: None,
    }
}

fn street_cells(city: &City, street: String) -> impl Iterator<Item = &Cell> {
    city.communities
        .iter()
        .filter(move |c| c.street_id == street)
        .flat_map(|c| c.grids.iter().flat_map(|g| g.cells.iter()))
}

/// The whole city (its geography from `city`, its members from `members`, since the index
/// keeps them apart) as one FeatureCollection that `import` reads back to the same city.
pub fn export(city: &City, members: &[Member]) -> FeatureCollection {
    let mut features = Vec::new();
    let grids_of_street = |street: &str| street_cells(city, street.to_string());
    for d in &city.districts {
        let cells = city.streets.iter().filter(|s| s.district_id == d.id).flat_map(|s| grids_of_street(&s.id));
        let mut f = feature("district", &d.id, Some(&d.name), None, outline(cells));
        if let Some(p) = f.properties.as_mut() {
            p.insert("seat".into(), json!({ "lat": d.seat.lat, "lng": d.seat.lng }));
        }
        features.push(f);
    }
    for s in &city.streets {
        features.push(feature("street", &s.id, Some(&s.name), Some(&s.district_id), outline(grids_of_street(&s.id))));
    }
    for c in &city.communities {
        let cells = c.grids.iter().flat_map(|g| g.cells.iter());
        features.push(feature("community", &c.id, Some(&c.name), Some(&c.street_id), outline(cells)));
    }
    for c in &city.communities {
        for g in &c.grids {
            features.push(feature("grid", &g.id, None, Some(&c.id), outline(g.cells.iter())));
        }
    }
    let roster = Roster { units: city.units.clone(), teams: city.teams.clone(), members: members.to_vec() };
    let mut extra = JsonObject::new();
    extra.insert("name".into(), Value::from(city.name.as_str()));
    extra.insert("roster".into(), serde_json::to_value(&roster).unwrap_or(Value::Null));
    FeatureCollection { bbox: None, features, foreign_members: Some(extra) }
}

/// The grids of a dry run, each traced from the cells the tiling gave it: what the city's
/// grids will look like, for a preview on the map (`kind`, `id`, `parent`, `cells`).
pub fn preview(grids: &[GridReport]) -> FeatureCollection {
    let features = grids
        .iter()
        .map(|g| {
            let mut f = feature("grid", &g.id, None, Some(&g.community_id), outline(g.cells.iter()));
            if let Some(p) = f.properties.as_mut() {
                p.insert("cells".into(), Value::from(g.cell_count));
            }
            f
        })
        .collect();
    FeatureCollection { bbox: None, features, foreign_members: None }
}
