//! The city as GeoJSON through the real server: the export of the test (demo) city imports
//! into an empty muster as the same city; a dry run changes nothing; bad files are refused
//! with the feature named; only city command may import or export.

use std::collections::BTreeSet;

use muster::app::{self, Options};
use muster::domain::geo::Cell;
use muster::domain::org::City;
use muster::gateway::auth::{Role, TokenKeys};
use serde_json::{Value, json};

use crate::helpers::{SECRET, TestApp, assert_problem, spawn_app, test_settings};

/// A server with no city at all.
async fn spawn_empty(overrides: &[(&str, &str)]) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let app = app::build(test_settings(dir.path(), overrides), Options::default()).await.expect("app starts");
    TestApp {
        addr: format!("127.0.0.1:{}", app.port()),
        app: Some(app),
        http: reqwest::Client::new(),
        keys: TokenKeys::new(SECRET),
        city: crate::helpers::test_city(),
        _dir: Some(dir),
    }
}

async fn export(app: &TestApp) -> (String, Value) {
    let resp = app.get(&app.command(), "/v1/city/geojson").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/geo+json");
    let text = resp.text().await.unwrap();
    let v = serde_json::from_str(&text).unwrap();
    (text, v)
}

async fn import(app: &TestApp, token: &str, body: &Value, dry_run: bool) -> reqwest::Response {
    let path = if dry_run { "/v1/city/geojson?dry_run=true" } else { "/v1/city/geojson" };
    app.http.post(app.url(path)).bearer_auth(token).json(body).send().await.unwrap()
}

/// Everything a GET shows of the city, byte for byte.
async fn snapshot(app: &TestApp) -> Vec<String> {
    let mut out = Vec::new();
    for path in ["/v1/city/geojson", "/v1/communities", "/v1/units", "/v1/geo/city", "/v1/members"] {
        out.push(app.get(&app.command(), path).await.text().await.unwrap());
    }
    out
}

/// Removes every `center` member, returning the numbers it held.
fn take_centers(v: &mut Value) -> Vec<f64> {
    let mut out = Vec::new();
    match v {
        Value::Object(m) => {
            if let Some(c) = m.remove("center") {
                out.extend([c["lat"].as_f64().unwrap(), c["lng"].as_f64().unwrap()]);
            }
            m.values_mut().for_each(|x| out.extend(take_centers(x)));
        }
        Value::Array(a) => a.iter_mut().for_each(|x| out.extend(take_centers(x))),
        _ => {}
    }
    out
}

type Geography = (Vec<(String, String, BTreeSet<Cell>)>, Vec<(String, String, String)>, Vec<(String, String, String)>);

/// Grid → community and cell set; community → name and street; street → name and district.
fn geography(c: &City) -> Geography {
    let grids = c
        .communities
        .iter()
        .flat_map(|co| co.grids.iter().map(move |g| (g.id.clone(), co.id.clone(), g.cells.iter().copied().collect())))
        .collect();
    let communities = c.communities.iter().map(|co| (co.id.clone(), co.name.clone(), co.street_id.clone())).collect();
    let streets = c.streets.iter().map(|s| (s.id.clone(), s.name.clone(), s.district_id.clone())).collect();
    (grids, communities, streets)
}

#[tokio::test]
async fn the_export_imports_into_an_empty_muster_as_the_same_city() {
    let a = spawn_app().await;
    let (text_a, fc) = export(&a).await;
    assert_eq!(fc["type"], "FeatureCollection");
    let grids = fc["features"].as_array().unwrap().iter().filter(|f| f["properties"]["kind"] == "grid").count();
    assert_eq!(grids, a.city.communities.iter().map(|c| c.grids.len()).sum::<usize>());

    // What the file holds is the city: converted back in the domain, it equals the original.
    let parsed: geojson::FeatureCollection = serde_json::from_str(&text_a).unwrap();
    let converted = muster::domain::geojson::import(&parsed);
    assert!(converted.report.ok, "{:?}", converted.report.errors);
    let back = converted.city.unwrap();
    assert_eq!(geography(&back), geography(&a.city));
    let seats = |c: &City| c.districts.iter().map(|d| (d.id.clone(), d.name.clone(), d.seat)).collect::<Vec<_>>();
    assert_eq!(seats(&back), seats(&a.city));

    let b = spawn_empty(&[]).await;
    let resp = import(&b, &b.command(), &fc, false).await;
    let status = resp.status();
    let report: Value = resp.json().await.unwrap();
    assert_eq!(status, 200, "{}", report["errors"]);
    assert_eq!(report["applied"], true);
    assert_eq!(report["roster"], "file");
    assert_eq!(report["grids"], grids);
    assert_eq!(report["members"], a.city.members.len());
    assert!(report["errors"].as_array().unwrap().is_empty());
    assert!(report["warnings"].as_array().unwrap().iter().all(|w| w["code"] != "overlap"), "{}", report["warnings"]);

    // The same city: the export and the lists answer the same, byte for byte, but for the
    // centres (means over the cells, whose order a file does not keep: equal within 1e-9).
    let (sa, sb) = (snapshot(&a).await, snapshot(&b).await);
    for (x, y) in sa.iter().zip(&sb) {
        let (mut x, mut y): (Value, Value) = (serde_json::from_str(x).unwrap(), serde_json::from_str(y).unwrap());
        let (cx, cy) = (take_centers(&mut x), take_centers(&mut y));
        assert_eq!(x, y);
        assert_eq!(cx.len(), cy.len());
        for (p, q) in cx.iter().zip(&cy) {
            assert!((p - q).abs() < 1e-9, "{p} != {q}");
        }
    }
    assert_eq!(sa[0], sb[0], "the exports differ");
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_dry_run_changes_nothing_and_reports_what_would_be_done() {
    let app = spawn_app().await;
    let before = snapshot(&app).await;
    let (_, mut fc) = export(&app).await;
    // Drop one grid and widen another: the report must show the new tiling.
    let features = fc["features"].as_array_mut().unwrap();
    let gone = features.iter().position(|f| f["properties"]["id"] == "c001-g3").unwrap();
    features.remove(gone);
    let members = fc["roster"]["members"].as_array_mut().unwrap();
    members.retain(|m| m["residence_grid_id"] != "c001-g3");
    let resp = import(&app, &app.command(), &fc, true).await;
    assert_eq!(resp.status(), 200);
    let report: Value = resp.json().await.unwrap();
    assert_eq!(report["ok"], true, "{}", report["errors"]);
    assert_eq!(report["applied"], false);
    assert!(report["grid_cells"].as_array().unwrap().iter().all(|g| g["id"] != "c001-g3"));
    let total: u64 = report["grid_cells"].as_array().unwrap().iter().map(|g| g["cell_count"].as_u64().unwrap()).sum();
    assert_eq!(report["cells"].as_u64(), Some(total));
    assert_eq!(report["preview"]["features"].as_array().unwrap().len(), report["grids"].as_u64().unwrap() as usize);
    assert_eq!(snapshot(&app).await, before, "a dry run changed the city");

    // A bowtie grid: reported in the dry run with its id; refused without one, unchanged.
    let bowtie = json!({"type": "Feature", "properties": {"kind": "grid", "id": "bow", "parent": "c001"},
        "geometry": {"type": "Polygon", "coordinates": [[[114.3, 30.5], [114.32, 30.52], [114.32, 30.5], [114.3, 30.52], [114.3, 30.5]]]}});
    fc["features"].as_array_mut().unwrap().push(bowtie);
    let report: Value = import(&app, &app.command(), &fc, true).await.json().await.unwrap();
    assert_eq!(report["ok"], false);
    assert_eq!(report["errors"][0]["code"], "invalid_polygon");
    assert_eq!(report["errors"][0]["feature"], "bow");
    let body = assert_problem(import(&app, &app.command(), &fc, false).await, 422, Some("invalid_geojson")).await;
    assert!(body["detail"].as_str().unwrap().contains("'bow'"), "{body}");
    for bad in [
        json!({"type": "Feature", "properties": {}, "geometry": null}),
        json!([1, 2]),
        json!({"type": "FeatureCollection"}),
    ] {
        let resp = import(&app, &app.command(), &bad, false).await;
        assert!(resp.status() == 400 || resp.status() == 422, "{}", resp.status());
    }
    let mut roster_bad = fc.clone();
    roster_bad["roster"] = json!({"units": "many"});
    assert_problem(import(&app, &app.command(), &roster_bad, true).await, 422, Some("invalid_roster")).await;
    assert_eq!(snapshot(&app).await, before, "a refused import changed the city");
    app.stop().await;
}

#[tokio::test]
async fn without_a_roster_the_current_one_is_kept_and_must_fit() {
    let app = spawn_app().await;
    let (_, mut fc) = export(&app).await;
    fc.as_object_mut().unwrap().remove("roster");
    let report: Value = import(&app, &app.command(), &fc, true).await.json().await.unwrap();
    assert_eq!((report["ok"].clone(), report["roster"].clone()), (json!(true), json!("kept")), "{}", report["errors"]);
    assert_eq!(report["members"], app.city.members.len());
    // Without grid c001-g1 the members living there have no home: a roster conflict.
    let features = fc["features"].as_array_mut().unwrap();
    features.retain(|f| f["properties"]["id"] != "c001-g1");
    let report: Value = import(&app, &app.command(), &fc, true).await.json().await.unwrap();
    assert_eq!(report["ok"], false);
    assert_eq!(report["errors"][0]["code"], "roster_conflict", "{}", report["errors"]);
    assert_problem(import(&app, &app.command(), &fc, false).await, 422, Some("invalid_geojson")).await;
    // A roster with a skill the catalog does not hold: reported before the import refuses it.
    let (_, mut fc) = export(&app).await;
    fc["roster"]["members"][0]["skills"] = json!(["juggling"]);
    let report: Value = import(&app, &app.command(), &fc, true).await.json().await.unwrap();
    assert_eq!(report["errors"][0]["code"], "unknown_skill", "{}", report["errors"]);
    assert!(report["warnings"].as_array().unwrap().iter().all(|w| w["code"] != "open_incidents"));
    app.stop().await;
}

#[tokio::test]
async fn applying_is_refused_while_an_incident_is_open() {
    let app = spawn_app().await;
    let (_, fc) = export(&app).await;
    app.raise(&app.staff("c001"), json!({"grid_id": "c001-g1", "category": "patrol", "level": "III", "headcount": 1}))
        .await;
    let before = snapshot(&app).await;
    assert_problem(import(&app, &app.command(), &fc, false).await, 409, Some("open_incidents")).await;
    // The dry run still reports, and says the import would be refused.
    let report: Value = import(&app, &app.command(), &fc, true).await.json().await.unwrap();
    assert_eq!(report["ok"], true);
    assert!(
        report["warnings"].as_array().unwrap().iter().any(|w| w["code"] == "open_incidents"),
        "{}",
        report["warnings"]
    );
    assert_eq!(snapshot(&app).await, before);
    app.stop().await;
}

#[tokio::test]
async fn only_city_command_imports_or_exports() {
    let app = spawn_app().await;
    let (_, fc) = export(&app).await;
    let district = app.city.districts[0].id.clone();
    let unit = app.city.units[0].id.clone();
    let member = app.city.members[0].id.clone();
    let tokens = [
        (app.token(Role::Command, Some(&district)), "city_command_only"),
        (app.staff("c001"), "role_not_allowed"),
        (app.token(Role::UnitAdmin, Some(&unit)), "role_not_allowed"),
        (app.member(&member), "role_not_allowed"),
    ];
    for (token, code) in &tokens {
        assert_problem(app.get(token, "/v1/city/geojson").await, 403, Some(code)).await;
        assert_problem(import(&app, token, &fc, true).await, 403, Some(code)).await;
        assert_problem(import(&app, token, &fc, false).await, 403, Some(code)).await;
    }
    let anonymous = app.http.get(app.url("/v1/city/geojson")).send().await.unwrap();
    assert_problem(anonymous, 401, None).await;
    app.stop().await;
}

#[tokio::test]
async fn the_city_body_limit_holds_and_an_empty_muster_exports_an_empty_collection() {
    let app = spawn_empty(&[("MUSTER_SERVER__MAX_CITY_BYTES", "4096")]).await;
    let (_, fc) = export(&app).await;
    assert_eq!(fc, json!({"type": "FeatureCollection", "features": []}));
    let mut big = fc.clone();
    big["name"] = json!("x".repeat(5000));
    assert_problem(import(&app, &app.command(), &big, true).await, 413, Some("body_too_large")).await;
    // Within the limit, an empty collection is reported, not applied.
    let report: Value = import(&app, &app.command(), &fc, true).await.json().await.unwrap();
    assert_eq!(report["errors"][0]["code"], "no_community");
    assert_problem(import(&app, &app.command(), &fc, false).await, 422, Some("invalid_geojson")).await;
    app.stop().await;
}
