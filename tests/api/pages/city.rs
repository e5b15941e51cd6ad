//! The dashboard's GeoJSON control in Chromium (issue 23): city command chooses a file (set
//! on the file input over WebDriver), sees the dry run's figures, errors and preview, applies
//! it after the confirmation, and the city map shows the new city. A child of `pages`, whose
//! driver it uses.

use fantoccini::Locator;
use serde_json::{Value, json};

use super::Driver;
use crate::helpers::spawn_app;

fn square(x: f64, y: f64) -> Value {
    let s = 0.01;
    json!({"type": "Polygon", "coordinates": [[[x, y], [x + s, y], [x + s, y + s], [x, y + s], [x, y]]]})
}

/// A small city: one district, one street, communities k1 (grids k1-a, k1-b) and k2 (k2-a),
/// with an empty roster.
fn small_city(extra: Option<Value>) -> Value {
    let (x, y) = (114.30, 30.59);
    let grid = |id: &str, parent: &str, g: Value| json!({"type": "Feature", "properties": {"kind": "grid", "id": id, "parent": parent}, "geometry": g});
    let mut features = vec![
        json!({"type": "Feature", "properties": {"kind": "district", "id": "kd", "name": "试点区", "seat": {"lat": y, "lng": x}}, "geometry": null}),
        json!({"type": "Feature", "properties": {"kind": "street", "id": "ks", "name": "试点街道", "parent": "kd"}, "geometry": null}),
        json!({"type": "Feature", "properties": {"kind": "community", "id": "k1", "name": "一社区", "parent": "ks"}, "geometry": null}),
        json!({"type": "Feature", "properties": {"kind": "community", "id": "k2", "name": "二社区", "parent": "ks"}, "geometry": null}),
        grid("k1-a", "k1", square(x, y)),
        grid("k1-b", "k1", square(x + 0.01, y)),
        grid("k2-a", "k2", square(x + 0.02, y)),
    ];
    features.extend(extra);
    json!({"type": "FeatureCollection", "name": "试点市", "features": features,
           "roster": {"units": [], "teams": [], "members": []}})
}

#[tokio::test]
async fn city_command_previews_and_applies_a_geojson_city_on_the_dashboard() {
    let app = spawn_app().await;
    let driver = Driver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.geojson");
    let bowtie = json!({"type": "Feature", "properties": {"kind": "grid", "id": "bow", "parent": "k2"},
        "geometry": {"type": "Polygon", "coordinates": [[[114.4, 30.6], [114.41, 30.61], [114.41, 30.6], [114.4, 30.61], [114.4, 30.6]]]}});
    std::fs::write(&bad, small_city(Some(bowtie)).to_string()).unwrap();
    let good = dir.path().join("city.geojson");
    std::fs::write(&good, small_city(None).to_string()).unwrap();

    let dash = driver.browser("dashboard-geojson").await;
    dash.goto(&app.url("/dashboard")).await;
    dash.sign_in(&app.command()).await;
    let communities = app.city.communities.len();
    dash.wait(
        "the demo city on the map",
        &format!("return document.querySelectorAll('#citymap path.area').length === {communities}"),
    )
    .await;
    dash.wait("the GeoJSON control", "return !document.querySelector('#city-geo').hidden").await;
    let input = dash.client.find(Locator::Css("#geo-file")).await.unwrap();

    // A file with a self-intersecting grid: the error names it, applying stays disabled.
    input.send_keys(bad.to_str().unwrap()).await.unwrap();
    dash.wait(
        "the error",
        "return !!document.querySelector('#geo-errors li[data-feature=\"bow\"][data-code=\"invalid_polygon\"]')",
    )
    .await;
    assert_eq!(dash.js("return document.querySelector('#geo-apply').disabled").await, json!(true));

    // The good file: figures, no error, three grids on the preview, then apply.
    input.send_keys(good.to_str().unwrap()).await.unwrap();
    dash.wait("the report", "return document.querySelector('#geo-fig-grids')?.textContent === '3' && !document.querySelector('#geo-apply').disabled")
        .await;
    assert_eq!(dash.text("#geo-fig-communities").await, "2");
    assert_eq!(dash.text("#geo-fig-members").await, "0");
    assert_eq!(dash.js("return document.querySelectorAll('#geo-errors li[data-code]').length").await, json!(0));
    assert_eq!(dash.js("return document.querySelectorAll('#geo-preview path.area').length").await, json!(3));
    // Nothing changed yet.
    let before: Value = app.get(&app.command(), "/v1/communities").await.json().await.unwrap();
    assert_eq!(before.as_array().unwrap().len(), communities);
    dash.screenshot("dashboard-geojson-preview").await;

    dash.click("#geo-apply").await;
    dash.wait("the confirmation", "return document.querySelector('#ask').open").await;
    dash.click("#ask-ok").await;
    dash.wait("the new city on the map", "return document.querySelectorAll('#citymap path.area').length === 2").await;
    dash.wait(
        "the message",
        "const m = document.querySelector('#geo-msg'); return m.dataset.kind === 'ok' && m.textContent.includes('3')",
    )
    .await;
    let after: Value = app.get(&app.command(), "/v1/communities").await.json().await.unwrap();
    let ids: Vec<&str> = after.as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["k1", "k2"]);
    // The export downloads the new city (the blob handed to the link is read back).
    dash.js("const keep = URL.createObjectURL; URL.createObjectURL = (b) => { b.text().then((t) => { window.savedText = t; }); return keep(b); }; return true;")
        .await;
    dash.click("#geo-export").await;
    dash.wait("the download", "return typeof window.savedText === 'string'").await;
    let saved: Value = serde_json::from_str(dash.js("return window.savedText").await.as_str().unwrap()).unwrap();
    let grids: Vec<&str> = saved["features"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["properties"]["kind"] == "grid")
        .map(|f| f["properties"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(grids, ["k1-a", "k1-b", "k2-a"]);
    assert_eq!(saved["name"], "试点市");
    dash.no_console_errors(&[]).await;
    dash.close().await;
    app.stop().await;
}
