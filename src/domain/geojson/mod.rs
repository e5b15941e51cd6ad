//! The city's geography as GeoJSON: import (polygons → resolution-9 H3 cell sets, with a
//! report of everything doubtful) and export (cell sets → traced polygons). Pure: no IO.
//!
//! **Property schema** (every feature; docs/PROTOCOL.md "City as GeoJSON" has the same):
//! `kind` (`district` | `street` | `community` | `grid`), `id` (1 to 64 bytes, unique per
//! kind), `name` (districts, streets and communities), `parent` (a street's district, a
//! community's street, a grid's community; none for a district), and for a district
//! optionally `seat` `{lat, lng}` (default: the mean of its grids' cell centres).
//!
//! **Containment rule**: a resolution-9 cell belongs to a grid when the cell's centroid lies
//! inside the grid's (Multi)Polygon, holes excluded (h3o's `ContainmentMode::ContainsCentroid`).
//! A cell claimed by two or more grids goes to the grid whose id is the lowest (byte order);
//! each such overlap is a warning. A grid left with no cell is an error.
//!
//! District, street and community polygons are optional and only checked: each child's cells
//! must lie in its parent's polygon (a warning otherwise), and cells of a community polygon
//! that no grid holds are gaps (a warning). Cells not held by any grid but enclosed by grids
//! (at least four of their six neighbours held) are gaps too.

mod export;
#[cfg(test)]
mod tests;

pub use export::{export, preview};

use std::collections::{BTreeMap, BTreeSet, HashMap};

use geo::Validation;
use geojson::{FeatureCollection, GeometryValue, JsonObject, PolygonType};
use h3o::geom::{ContainmentMode, TilerBuilder};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::geo::{Cell, MATCH_RES, Position};
use super::org::{City, Community, District, Grid, Member, Street, Team, Unit};

/// How many cells a warning lists as a sample.
pub const SAMPLE: usize = 10;

/// The most cells one feature's polygon may span (h3o's estimate from its bounding box):
/// about 100,000 km² at resolution 9, more than any city's district. Larger is an error
/// (`too_large`), so that no upload can make the server tile a continent.
pub const MAX_FEATURE_CELLS: usize = 1_000_000;
/// The most cells all the features of one file together may span.
pub const MAX_FILE_CELLS: usize = 4_000_000;

/// The roster that travels with the geography as the FeatureCollection's `roster` member.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Roster {
    #[serde(default)]
    pub units: Vec<Unit>,
    #[serde(default)]
    pub teams: Vec<Team>,
    #[serde(default)]
    pub members: Vec<Member>,
}

/// One problem found in the upload. `feature` names the feature's id (or `#n`, its
/// position, when it has none); `count` and `sample` are cells, for overlaps and gaps.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
pub struct Finding {
    pub code: String,
    pub feature: Option<String>,
    pub message: String,
    /// Cells concerned (overlaps, gaps, cells outside a parent); 0 for the others.
    pub count: usize,
    /// Up to ten of those cells.
    #[schema(value_type = Vec<String>)]
    pub sample: Vec<Cell>,
}

/// A grid as the tiling made it.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
pub struct GridReport {
    pub id: String,
    pub community_id: String,
    /// How many cells the grid holds after overlaps were given out.
    pub cell_count: usize,
    /// The cells themselves, for a preview on the map.
    #[schema(value_type = Vec<String>)]
    pub cells: Vec<Cell>,
}

/// What an import would do (the dry run) or did.
#[derive(Debug, Clone, Default, Serialize, ToSchema, PartialEq)]
pub struct GeoReport {
    /// No errors: the geography can be applied.
    pub ok: bool,
    /// Whether the city was replaced by this request.
    pub applied: bool,
    pub districts: usize,
    pub streets: usize,
    pub communities: usize,
    pub grids: usize,
    /// Cells held by all grids together.
    pub cells: usize,
    pub grid_cells: Vec<GridReport>,
    pub errors: Vec<Finding>,
    pub warnings: Vec<Finding>,
}

/// The outcome of converting a FeatureCollection: the report, and the city's geography
/// (districts, streets, communities with their grids; no roster) when there is no error.
#[derive(Debug, Clone)]
pub struct GeoImport {
    pub report: GeoReport,
    pub city: Option<City>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Kind {
    District,
    Street,
    Community,
    Grid,
}

struct Item {
    kind: Kind,
    id: String,
    name: String,
    parent: Option<String>,
    seat: Option<Position>,
    /// The cells whose centroid lies in the feature's polygon; `None` without a geometry.
    tiled: Option<BTreeSet<Cell>>,
}

struct Collector {
    errors: Vec<Finding>,
    warnings: Vec<Finding>,
}

impl Collector {
    fn error(&mut self, code: &str, feature: &str, message: String) {
        self.errors.push(Finding {
            code: code.into(),
            feature: Some(feature.into()),
            message,
            count: 0,
            sample: vec![],
        });
    }
    fn warn(&mut self, code: &str, feature: Option<&str>, message: String, cells: &BTreeSet<Cell>) {
        self.warnings.push(Finding {
            code: code.into(),
            feature: feature.map(Into::into),
            message,
            count: cells.len(),
            sample: cells.iter().take(SAMPLE).copied().collect(),
        });
    }
}

/// Reads the `roster` and `name` members of the FeatureCollection, if present.
pub fn roster_of(fc: &FeatureCollection) -> Result<(Option<String>, Option<Roster>), String> {
    let Some(extra) = &fc.foreign_members else { return Ok((None, None)) };
    let name = match extra.get("name") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(_) => return Err("the collection's `name` must be a string".into()),
    };
    let roster = match extra.get("roster") {
        None | Some(serde_json::Value::Null) => None,
        Some(v) => Some(Roster::deserialize(v).map_err(|e| format!("the collection's `roster`: {e}"))?),
    };
    Ok((name, roster))
}

/// Converts a FeatureCollection into the city's geography, tiling every polygon at
/// resolution 9, and reports what it found. Never panics on any input.
pub fn import(fc: &FeatureCollection) -> GeoImport {
    let mut out = Collector { errors: Vec::new(), warnings: Vec::new() };
    let mut items: Vec<Item> = Vec::new();
    let mut seen: HashMap<(Kind, String), usize> = HashMap::new();
    let mut budget = MAX_FILE_CELLS;
    for (n, feature) in fc.features.iter().enumerate() {
        let label = feature_label(feature.properties.as_ref(), feature.id.as_ref(), n);
        let Some(item) = read_feature(feature, &label, &mut out, &mut budget) else { continue };
        if seen.insert((item.kind, item.id.clone()), items.len()).is_some() {
            out.error("duplicate_id", &label, format!("{} id '{}' appears twice", kind_name(item.kind), item.id));
            continue;
        }
        items.push(item);
    }
    let find = |kind: Kind, id: &str| seen.get(&(kind, id.to_string())).copied();

    // Parents.
    for it in &items {
        let Some(parent_kind) = parent_kind(it.kind) else { continue };
        match &it.parent {
            Some(p) if find(parent_kind, p).is_some() => {}
            Some(p) => out.error(
                "unknown_parent",
                &it.id,
                format!(
                    "{} '{}' names {} '{p}' as parent, which is not in the file",
                    kind_name(it.kind),
                    it.id,
                    kind_name(parent_kind)
                ),
            ),
            None => out.error("bad_properties", &it.id, format!("{} '{}' needs a `parent`", kind_name(it.kind), it.id)),
        }
    }

    // Overlaps: every cell goes to the lowest grid id that claims it.
    let mut claims: BTreeMap<Cell, Vec<&str>> = BTreeMap::new();
    for it in items.iter().filter(|i| i.kind == Kind::Grid) {
        for c in it.tiled.iter().flatten() {
            claims.entry(*c).or_default().push(&it.id);
        }
    }
    let mut owner: BTreeMap<Cell, &str> = BTreeMap::new();
    let mut overlaps: BTreeMap<(&str, &str), BTreeSet<Cell>> = BTreeMap::new();
    for (cell, mut who) in claims {
        who.sort_unstable();
        for loser in &who[1..] {
            overlaps.entry((who[0], loser)).or_default().insert(cell);
        }
        owner.insert(cell, who[0]);
    }
    for ((winner, loser), cells) in &overlaps {
        out.warn(
            "overlap",
            Some(loser),
            format!(
                "{} cells are claimed by grids '{winner}' and '{loser}'; they go to '{winner}' (the lower id)",
                cells.len()
            ),
            cells,
        );
    }
    let mut grid_cells: HashMap<&str, BTreeSet<Cell>> = HashMap::new();
    for (cell, g) in &owner {
        grid_cells.entry(g).or_default().insert(*cell);
    }
    for it in items.iter().filter(|i| i.kind == Kind::Grid && i.tiled.is_some()) {
        if !grid_cells.contains_key(it.id.as_str()) {
            let why = if it.tiled.as_ref().is_some_and(|t| t.is_empty()) {
                "its polygon holds no resolution-9 cell centroid (too small)"
            } else {
                "every cell it covers went to a grid with a lower id"
            };
            out.error("grid_too_small", &it.id, format!("grid '{}' holds no cell: {why}", it.id));
        }
    }

    // The cells of each place: a grid's own, a parent's the union of its children's.
    let mut held: HashMap<(Kind, &str), BTreeSet<Cell>> = HashMap::new();
    for kind in [Kind::Grid, Kind::Community, Kind::Street] {
        for it in items.iter().filter(|i| i.kind == kind) {
            let cells = if kind == Kind::Grid {
                grid_cells.get(it.id.as_str()).cloned().unwrap_or_default()
            } else {
                held.get(&(kind, it.id.as_str())).cloned().unwrap_or_default()
            };
            if let (Some(pk), Some(p)) = (parent_kind(kind), &it.parent)
                && let Some(pi) = find(pk, p)
            {
                if let Some(poly) = &items[pi].tiled {
                    let outside: BTreeSet<Cell> = cells.difference(poly).copied().collect();
                    if !outside.is_empty() {
                        out.warn(
                            "outside_parent",
                            Some(&it.id),
                            format!(
                                "{} cells of {} '{}' lie outside the polygon of {} '{p}'",
                                outside.len(),
                                kind_name(kind),
                                it.id,
                                kind_name(pk)
                            ),
                            &outside,
                        );
                    }
                }
                held.entry((pk, items[pi].id.as_str())).or_default().extend(cells.iter().copied());
            }
            held.insert((kind, it.id.as_str()), cells);
        }
    }

    // Gaps.
    let mut reported = BTreeSet::new();
    for it in items.iter().filter(|i| i.kind == Kind::Community) {
        let Some(poly) = &it.tiled else { continue };
        let gap: BTreeSet<Cell> = poly.iter().filter(|c| !owner.contains_key(c)).copied().collect();
        if !gap.is_empty() {
            out.warn(
                "gap",
                Some(&it.id),
                format!("{} cells inside community '{}' belong to no grid", gap.len(), it.id),
                &gap,
            );
            reported.extend(gap);
        }
    }
    let mut enclosed = BTreeSet::new();
    for cell in owner.keys() {
        for n in cell.disk1() {
            if owner.contains_key(&n) || reported.contains(&n) || enclosed.contains(&n) {
                continue;
            }
            if n.disk1().iter().filter(|m| owner.contains_key(m)).count() >= 4 {
                enclosed.insert(n);
            }
        }
    }
    if !enclosed.is_empty() {
        out.warn("gap", None, format!("{} cells between grids belong to no grid", enclosed.len()), &enclosed);
    }

    for it in items.iter().filter(|i| i.kind == Kind::Community) {
        if !items.iter().any(|g| g.kind == Kind::Grid && g.parent.as_deref() == Some(it.id.as_str())) {
            out.error("empty_community", &it.id, format!("community '{}' has no grids", it.id));
        }
    }
    if !items.iter().any(|i| i.kind == Kind::Community) {
        out.errors.push(Finding {
            code: "no_community".into(),
            feature: None,
            message: "the file holds no community (a city needs at least one)".into(),
            count: 0,
            sample: vec![],
        });
    }

    let mut report = GeoReport {
        ok: false,
        applied: false,
        districts: items.iter().filter(|i| i.kind == Kind::District).count(),
        streets: items.iter().filter(|i| i.kind == Kind::Street).count(),
        communities: items.iter().filter(|i| i.kind == Kind::Community).count(),
        grids: items.iter().filter(|i| i.kind == Kind::Grid).count(),
        cells: owner.len(),
        grid_cells: items
            .iter()
            .filter(|i| i.kind == Kind::Grid)
            .map(|g| {
                let cells: Vec<Cell> =
                    grid_cells.get(g.id.as_str()).map(|s| s.iter().copied().collect()).unwrap_or_default();
                GridReport {
                    id: g.id.clone(),
                    community_id: g.parent.clone().unwrap_or_default(),
                    cell_count: cells.len(),
                    cells,
                }
            })
            .collect(),
        errors: out.errors,
        warnings: out.warnings,
    };
    report.ok = report.errors.is_empty();
    let city = report.ok.then(|| build_city(&items, &report.grid_cells));
    GeoImport { report, city }
}

fn build_city(items: &[Item], grids: &[GridReport]) -> City {
    let of = |k: Kind| items.iter().filter(move |i| i.kind == k);
    let communities: Vec<Community> = of(Kind::Community)
        .map(|c| Community {
            id: c.id.clone(),
            name: c.name.clone(),
            street_id: c.parent.clone().unwrap_or_default(),
            grids: grids
                .iter()
                .filter(|g| g.community_id == c.id)
                .map(|g| Grid { id: g.id.clone(), cells: g.cells.clone() })
                .collect(),
        })
        .collect();
    let streets: Vec<Street> = of(Kind::Street)
        .map(|s| Street { id: s.id.clone(), name: s.name.clone(), district_id: s.parent.clone().unwrap_or_default() })
        .collect();
    let districts = of(Kind::District)
        .map(|d| {
            let seat = d.seat.unwrap_or_else(|| {
                let cells = communities
                    .iter()
                    .filter(|c| streets.iter().any(|s| s.id == c.street_id && s.district_id == d.id))
                    .flat_map(|c| c.grids.iter().flat_map(|g| g.cells.iter()));
                mean_center(cells).unwrap_or(Position { lat: 0.0, lng: 0.0 })
            });
            District { id: d.id.clone(), name: d.name.clone(), seat }
        })
        .collect();
    City { name: String::new(), districts, streets, communities, units: vec![], teams: vec![], members: vec![] }
}

fn mean_center<'a>(cells: impl Iterator<Item = &'a Cell>) -> Option<Position> {
    use geo::Centroid;
    let points: geo::MultiPoint = cells
        .map(|c| {
            let p = c.center();
            geo::Point::new(p.lng, p.lat)
        })
        .collect();
    points.centroid().map(|p| Position { lat: p.y(), lng: p.x() })
}

fn feature_label(props: Option<&JsonObject>, id: Option<&geojson::feature::Id>, n: usize) -> String {
    match props.and_then(|p| p.get("id")).and_then(|v| v.as_str()) {
        Some(s) if !s.is_empty() => s.chars().take(64).collect(),
        _ => match id {
            Some(geojson::feature::Id::String(s)) => s.chars().take(64).collect(),
            Some(geojson::feature::Id::Number(n)) => n.to_string(),
            None => format!("#{n}"),
        },
    }
}

fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::District => "district",
        Kind::Street => "street",
        Kind::Community => "community",
        Kind::Grid => "grid",
    }
}

fn parent_kind(k: Kind) -> Option<Kind> {
    match k {
        Kind::District => None,
        Kind::Street => Some(Kind::District),
        Kind::Community => Some(Kind::Street),
        Kind::Grid => Some(Kind::Community),
    }
}

fn string_prop(props: &JsonObject, key: &str, label: &str, out: &mut Collector) -> Option<Option<String>> {
    match props.get(key) {
        None | Some(serde_json::Value::Null) => Some(None),
        Some(serde_json::Value::String(s)) if !s.is_empty() && s.len() <= 200 => Some(Some(s.clone())),
        Some(_) => {
            out.error(
                "bad_properties",
                label,
                format!("feature '{label}': `{key}` must be a string of 1 to 200 bytes"),
            );
            None
        }
    }
}

fn read_feature(feature: &geojson::Feature, label: &str, out: &mut Collector, budget: &mut usize) -> Option<Item> {
    let Some(props) = &feature.properties else {
        out.error("bad_properties", label, format!("feature '{label}' has no properties (it needs `kind` and `id`)"));
        return None;
    };
    let kind = match props.get("kind").and_then(|v| v.as_str()) {
        Some("district") => Kind::District,
        Some("street") => Kind::Street,
        Some("community") => Kind::Community,
        Some("grid") => Kind::Grid,
        _ => {
            out.error(
                "unknown_kind",
                label,
                format!("feature '{label}': `kind` must be district, street, community or grid"),
            );
            return None;
        }
    };
    let id = string_prop(props, "id", label, out)?;
    let Some(id) = id.filter(|s| s.len() <= 64) else {
        out.error("bad_properties", label, format!("feature '{label}': `id` must be a string of 1 to 64 bytes"));
        return None;
    };
    let name = string_prop(props, "name", label, out)?;
    if kind != Kind::Grid && name.is_none() {
        out.error("bad_properties", label, format!("{} '{id}' needs a `name`", kind_name(kind)));
        return None;
    }
    let parent = string_prop(props, "parent", label, out)?;
    let seat = match (kind, props.get("seat")) {
        (Kind::District, Some(v)) if !v.is_null() => match Position::deserialize(v) {
            Ok(p) => Some(p),
            Err(e) => {
                out.error("bad_properties", label, format!("district '{id}': `seat` must be {{lat, lng}}: {e}"));
                return None;
            }
        },
        _ => None,
    };
    let tiled = match &feature.geometry {
        None if kind == Kind::Grid => {
            out.error(
                "bad_geometry",
                label,
                format!("grid '{id}' has no geometry (it needs a Polygon or MultiPolygon)"),
            );
            return None;
        }
        None => None,
        // A geometry that fails was reported; the feature still stands as a parent.
        Some(g) => tile(&g.value, label, out, budget),
    };
    Some(Item { kind, id, name: name.unwrap_or_default(), parent, seat, tiled })
}

/// Checks every ring as written (closed, at least four positions, in range), then the
/// polygons with `geo`'s validation (self-intersections and the like), then tiles them.
fn tile(value: &GeometryValue, label: &str, out: &mut Collector, budget: &mut usize) -> Option<BTreeSet<Cell>> {
    let polygons: Vec<&PolygonType> = match value {
        GeometryValue::Polygon { coordinates } => vec![coordinates],
        GeometryValue::MultiPolygon { coordinates } => coordinates.iter().collect(),
        other => {
            out.error(
                "bad_geometry",
                label,
                format!("feature '{label}' is a {}; only Polygon and MultiPolygon are accepted", other.type_name()),
            );
            return None;
        }
    };
    let mut geoms = Vec::with_capacity(polygons.len());
    for rings in polygons {
        if rings.is_empty() {
            out.error("too_few_points", label, format!("feature '{label}' has a polygon without rings"));
            return None;
        }
        for ring in rings {
            if ring.len() < 4 {
                out.error(
                    "too_few_points",
                    label,
                    format!("feature '{label}' has a ring of {} positions; a ring needs at least 4", ring.len()),
                );
                return None;
            }
            if let Some(bad) = ring
                .iter()
                .find(|p| p.len() < 2 || !(-180.0..=180.0).contains(&p[0]) || !(-90.0..=90.0).contains(&p[1]))
            {
                out.error(
                    "out_of_range",
                    label,
                    format!(
                        "feature '{label}' has a position {:?} that is not [longitude, latitude] in range",
                        bad.as_slice()
                    ),
                );
                return None;
            }
            if ring.first().map(|p| &p.as_slice()[..2]) != ring.last().map(|p| &p.as_slice()[..2]) {
                out.error(
                    "open_ring",
                    label,
                    format!("feature '{label}' has a ring whose last position is not its first"),
                );
                return None;
            }
        }
        let ls = |r: &Vec<geojson::Position>| geo::LineString::from(r.iter().map(|p| (p[0], p[1])).collect::<Vec<_>>());
        geoms.push(geo::Polygon::new(ls(&rings[0]), rings[1..].iter().map(ls).collect()));
    }
    let multi = geo::MultiPolygon::new(geoms);
    if let Err(e) = multi.check_validation() {
        out.error("invalid_polygon", label, format!("feature '{label}' is not a valid polygon: {e}"));
        return None;
    }
    let mut tiler = TilerBuilder::new(MATCH_RES).containment_mode(ContainmentMode::ContainsCentroid).build();
    for p in multi {
        if let Err(e) = tiler.add(p) {
            out.error("invalid_polygon", label, format!("feature '{label}' cannot be tiled: {e}"));
            return None;
        }
    }
    let span = tiler.coverage_size_hint();
    if span > MAX_FEATURE_CELLS || span > *budget {
        out.error(
            "too_large",
            label,
            format!(
                "feature '{label}' spans about {span} cells; at most {MAX_FEATURE_CELLS} per feature and {MAX_FILE_CELLS} per file"
            ),
        );
        return None;
    }
    *budget -= span;
    Some(tiler.into_coverage().map(Cell).collect())
}
