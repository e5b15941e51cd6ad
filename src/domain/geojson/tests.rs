//! The tiling rule on hand-made polygons near (30.59 N, 114.30 E), where a resolution-9
//! cell is about 0.1 km² (a 0.02° square holds some 40 of them).

use std::collections::BTreeSet;

use geo::Contains;
use geojson::FeatureCollection;
use serde_json::{Value, json};

use super::{GeoImport, export, import};
use crate::domain::fixtures::{tiny_city, two_districts};
use crate::domain::geo::{Cell, Position};
use crate::domain::org::{City, CityIndex};

const X: f64 = 114.30;
const Y: f64 = 30.59;

fn square(x: f64, y: f64, side: f64) -> Vec<[f64; 2]> {
    vec![[x, y], [x + side, y], [x + side, y + side], [x, y + side], [x, y]]
}

fn grid(id: &str, rings: Vec<Vec<[f64; 2]>>) -> Value {
    json!({"type": "Feature", "properties": {"kind": "grid", "id": id, "parent": "c1"},
           "geometry": {"type": "Polygon", "coordinates": rings}})
}

fn collection(mut features: Vec<Value>, community: Option<Vec<Vec<[f64; 2]>>>) -> FeatureCollection {
    let geometry = community.map(|r| json!({"type": "Polygon", "coordinates": r}));
    features.splice(
        0..0,
        [
            json!({"type": "Feature", "properties": {"kind": "district", "id": "d1", "name": "区"}, "geometry": null}),
            json!({"type": "Feature", "properties": {"kind": "street", "id": "s1", "name": "街", "parent": "d1"}, "geometry": null}),
            json!({"type": "Feature", "properties": {"kind": "community", "id": "c1", "name": "社区", "parent": "s1"}, "geometry": geometry}),
        ],
    );
    serde_json::from_value(json!({"type": "FeatureCollection", "features": features})).unwrap()
}

fn cells_of(out: &GeoImport, id: &str) -> BTreeSet<Cell> {
    out.report.grid_cells.iter().find(|g| g.id == id).unwrap().cells.iter().copied().collect()
}

fn codes(findings: &[super::Finding]) -> Vec<(String, Option<String>)> {
    findings.iter().map(|f| (f.code.clone(), f.feature.clone())).collect()
}

fn poly(rings: &[Vec<[f64; 2]>]) -> geo::Polygon {
    let ls = |r: &Vec<[f64; 2]>| geo::LineString::from(r.iter().map(|p| (p[0], p[1])).collect::<Vec<_>>());
    geo::Polygon::new(ls(&rings[0]), rings[1..].iter().map(ls).collect())
}

fn inside(p: &geo::Polygon, c: Cell) -> bool {
    let at = c.center();
    p.contains(&geo::Point::new(at.lng, at.lat))
}

/// Every cell whose centroid is inside is taken and no other: checked against `geo`'s own
/// containment on the cells around the polygon.
fn assert_centroid_rule(rings: &[Vec<[f64; 2]>], got: &BTreeSet<Cell>) {
    let p = poly(rings);
    assert!(!got.is_empty());
    for c in got {
        assert!(inside(&p, *c), "cell {c} taken but its centroid is outside");
    }
    let around: BTreeSet<Cell> = got.iter().flat_map(|c| c.ring(2)).collect();
    for c in around.difference(got) {
        assert!(!inside(&p, *c), "cell {c} left out but its centroid is inside");
    }
}

#[test]
fn a_concave_polygon_takes_the_cells_whose_centroid_is_inside() {
    let l = vec![vec![
        [X, Y],
        [X + 0.03, Y],
        [X + 0.03, Y + 0.01],
        [X + 0.01, Y + 0.01],
        [X + 0.01, Y + 0.03],
        [X, Y + 0.03],
        [X, Y],
    ]];
    let out = import(&collection(vec![grid("g1", l.clone())], None));
    assert!(out.report.ok, "{:?}", out.report.errors);
    let got = cells_of(&out, "g1");
    assert_centroid_rule(&l, &got);
    let notch = Position::new(Y + 0.02, X + 0.02).unwrap().cell();
    assert!(!got.contains(&notch), "the notch of the L is not the grid's");
    assert_eq!(out.city.unwrap().communities[0].grids[0].cells.len(), got.len());
}

#[test]
fn a_hole_is_left_out() {
    let rings = vec![square(X, Y, 0.03), square(X + 0.01, Y + 0.01, 0.01).into_iter().rev().collect()];
    let out = import(&collection(vec![grid("g1", rings.clone())], None));
    assert!(out.report.ok, "{:?}", out.report.errors);
    let got = cells_of(&out, "g1");
    assert_centroid_rule(&rings, &got);
    assert!(!got.contains(&Position::new(Y + 0.015, X + 0.015).unwrap().cell()));
    // The hole is enclosed by the grid: reported as a gap.
    assert!(out.report.warnings.iter().any(|w| w.code == "gap" && w.count > 0));
}

#[test]
fn overlapping_grids_give_shared_cells_to_the_lower_id() {
    let a = vec![square(X, Y, 0.02)];
    let b = vec![square(X + 0.01, Y, 0.02)];
    let out = import(&collection(vec![grid("g2", b.clone()), grid("g1", a.clone())], None));
    assert!(out.report.ok, "{:?}", out.report.errors);
    let (g1, g2) = (cells_of(&out, "g1"), cells_of(&out, "g2"));
    assert!(g1.is_disjoint(&g2));
    let (pa, pb) = (poly(&a), poly(&b));
    let shared: BTreeSet<Cell> = g1.iter().filter(|c| inside(&pb, **c)).copied().collect();
    assert!(!shared.is_empty(), "the squares share cells");
    assert!(g2.iter().all(|c| !inside(&pa, *c)), "g2 keeps none of g1's");
    let w = out.report.warnings.iter().find(|w| w.code == "overlap").expect("an overlap warning");
    assert_eq!(w.feature.as_deref(), Some("g2"));
    assert_eq!(w.count, shared.len());
    assert!(w.message.contains("go to 'g1'"));
}

#[test]
fn a_grid_too_small_for_any_cell_is_an_error() {
    let tiny = vec![square(X + 0.0001, Y + 0.0001, 0.00001)];
    let out = import(&collection(vec![grid("g1", vec![square(X, Y, 0.02)]), grid("tiny", tiny)], None));
    assert!(!out.report.ok);
    assert!(out.city.is_none());
    assert_eq!(codes(&out.report.errors), vec![("grid_too_small".into(), Some("tiny".into()))]);
}

#[test]
fn a_self_intersecting_polygon_is_refused_with_its_id() {
    let bowtie = vec![vec![[X, Y], [X + 0.02, Y + 0.02], [X + 0.02, Y], [X, Y + 0.02], [X, Y]]];
    let out = import(&collection(vec![grid("bow", bowtie)], None));
    assert_eq!(codes(&out.report.errors), vec![("invalid_polygon".into(), Some("bow".into()))]);
    assert!(out.city.is_none());
}

#[test]
fn open_rings_and_short_rings_are_refused_with_their_ids() {
    let open = vec![vec![[X, Y], [X + 0.02, Y], [X + 0.02, Y + 0.02], [X, Y + 0.02]]];
    let short = vec![vec![[X, Y], [X + 0.02, Y], [X, Y]]];
    let far = vec![vec![[X, Y], [200.0, Y], [X, Y + 0.02], [X, Y]]];
    let out = import(&collection(vec![grid("open", open), grid("short", short), grid("far", far)], None));
    assert_eq!(
        codes(&out.report.errors),
        vec![
            ("open_ring".into(), Some("open".into())),
            ("too_few_points".into(), Some("short".into())),
            ("out_of_range".into(), Some("far".into())),
        ]
    );
}

#[test]
fn bad_properties_and_parents_name_the_feature() {
    let mut orphan = grid("g9", vec![square(X, Y, 0.02)]);
    orphan["properties"]["parent"] = json!("nowhere");
    let mut nameless = grid("g1", vec![square(X, Y, 0.02)]);
    nameless["properties"]["kind"] = json!("village");
    let line = json!({"type": "Feature", "properties": {"kind": "grid", "id": "ln", "parent": "c1"},
                      "geometry": {"type": "LineString", "coordinates": [[X, Y], [X + 0.1, Y]]}});
    let out = import(&collection(vec![orphan, nameless, line], None));
    assert_eq!(
        codes(&out.report.errors),
        vec![
            ("unknown_kind".into(), Some("g1".into())),
            ("bad_geometry".into(), Some("ln".into())),
            ("unknown_parent".into(), Some("g9".into())),
        ]
    );
}

#[test]
fn community_polygons_report_gaps_and_cells_outside() {
    let community = vec![square(X, Y, 0.03)];
    let g = [square(X, Y, 0.02), square(X + 0.025, Y + 0.025, 0.01)];
    let out =
        import(&collection(vec![grid("g1", vec![g[0].clone()]), grid("g2", vec![g[1].clone()])], Some(community)));
    assert!(out.report.ok, "{:?}", out.report.errors);
    let gap = out.report.warnings.iter().find(|w| w.code == "gap").expect("a gap");
    assert_eq!(gap.feature.as_deref(), Some("c1"));
    assert!(gap.count > 0 && gap.sample.len() <= super::SAMPLE);
    let outside = out.report.warnings.iter().find(|w| w.code == "outside_parent").expect("g2 sticks out");
    assert_eq!(outside.feature.as_deref(), Some("g2"));
}

fn same_geography(a: &City, b: &City) {
    let grids = |c: &City| {
        c.communities
            .iter()
            .flat_map(|co| {
                co.grids
                    .iter()
                    .map(move |g| (g.id.clone(), co.id.clone(), g.cells.iter().copied().collect::<BTreeSet<_>>()))
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(grids(a), grids(b));
    let names = |c: &City| {
        (
            c.districts.iter().map(|d| (d.id.clone(), d.name.clone(), d.seat)).collect::<Vec<_>>(),
            c.streets.clone(),
            c.communities.iter().map(|co| (co.id.clone(), co.name.clone(), co.street_id.clone())).collect::<Vec<_>>(),
        )
    };
    assert_eq!(names(a), names(b));
}

#[test]
fn an_export_imports_back_to_the_same_city() {
    for city in [tiny_city(vec![]), two_districts("two", vec![])] {
        let index = CityIndex::build(city.clone()).unwrap();
        let fc = export(index.city().unwrap(), index.members());
        let text = serde_json::to_string(&fc).unwrap();
        let back: FeatureCollection = serde_json::from_str(&text).unwrap();
        let out = import(&back);
        assert!(out.report.ok, "{:?}", out.report.errors);
        assert!(out.report.warnings.iter().all(|w| w.code != "overlap"), "{:?}", out.report.warnings);
        same_geography(&city, out.city.as_ref().unwrap());
        let (name, roster) = super::roster_of(&back).unwrap();
        assert_eq!(name.as_deref(), Some(city.name.as_str()));
        let roster = roster.unwrap();
        assert_eq!(
            (roster.units, roster.teams, roster.members),
            (city.units.clone(), city.teams.clone(), city.members.clone())
        );
    }
}

#[test]
fn degenerate_and_huge_polygons_are_refused_without_a_panic() {
    let same = vec![vec![[X, Y], [X, Y], [X, Y], [X, Y]]];
    let flat = vec![vec![[X, Y], [X + 0.01, Y], [X + 0.02, Y], [X, Y]]];
    let continent = vec![square(70.0, 10.0, 40.0)];
    let antimeridian = vec![vec![[179.99, 0.0], [-179.99, 0.0], [-179.99, 0.01], [179.99, 0.01], [179.99, 0.0]]];
    let out = import(&collection(
        vec![
            grid("same", same),
            grid("flat", flat),
            grid("huge", continent),
            grid("g1", vec![square(X, Y, 0.02)]),
            grid("am", antimeridian),
        ],
        None,
    ));
    let got = codes(&out.report.errors);
    for id in ["same", "flat", "huge"] {
        assert!(got.iter().any(|(_, f)| f.as_deref() == Some(id)), "{id} not refused: {got:?}");
    }
    assert!(got.contains(&("too_large".into(), Some("huge".into()))), "{got:?}");
    assert!(out.city.is_none());
}
