//! Rosters from spreadsheets (issue 23, item 2, in part): `POST /v1/members/import` takes
//! the files spreadsheets here save, UTF-8 with a BOM or GB18030, and places a member by
//! coordinates when the row names no grid.

use serde_json::Value;

use crate::helpers::{TestApp, assert_problem, spawn_app};

const HEADER: &str = "id,name,unit_id,team_id,residence_grid_id,skills,lat,lng,on_call";

async fn import(app: &TestApp, content_type: &str, body: Vec<u8>) -> reqwest::Response {
    app.http
        .post(app.url("/v1/members/import"))
        .bearer_auth(app.command())
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn member(app: &TestApp, id: &str) -> Value {
    let resp = app.get(&app.command(), &format!("/v1/members/{id}")).await;
    assert_eq!(resp.status(), 200, "{id}");
    resp.json().await.unwrap()
}

#[tokio::test]
async fn gb18030_and_bom_files_import_with_their_chinese_names() {
    let app = spawn_app().await;
    let gb = |text: &str| encoding_rs::GB18030.encode(text).0.into_owned();
    let one = format!("{HEADER}\nm90101,王芳,u001,,c001-g1,,,,false\n");
    assert!(std::str::from_utf8(&gb(&one)).is_err(), "the test file must not be UTF-8");
    let resp = import(&app, "text/csv; charset=gb18030", gb(&one)).await;
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    assert_eq!(member(&app, "m90101").await["name"], "王芳");
    // Without a charset: not UTF-8, so read as GB18030.
    let two = format!("{HEADER}\nm90102,李娜,u001,,c001-g1,,,,false\n");
    assert_eq!(import(&app, "text/csv", gb(&two)).await.status(), 200);
    assert_eq!(member(&app, "m90102").await["name"], "李娜");
    // UTF-8 with a BOM: the first column is still `id`.
    let three = format!("\u{FEFF}{HEADER}\nm90103,张伟,u001,,c001-g1,,,,false\n");
    assert_eq!(import(&app, "text/csv; charset=utf-8", three.into_bytes()).await.status(), 200);
    assert_eq!(member(&app, "m90103").await["name"], "张伟");
    // Bytes that are no text at all.
    assert_problem(import(&app, "text/csv", vec![0xff, 0xff, 0x0a]).await, 422, Some("invalid_csv")).await;
    app.stop().await;
}

#[tokio::test]
async fn a_row_without_a_grid_is_placed_by_its_coordinates() {
    let app = spawn_app().await;
    let c001 = app.city.communities.iter().find(|c| c.id == "c001").unwrap();
    let g2 = c001.grids.iter().find(|g| g.id == "c001-g2").unwrap();
    let at = g2.cells[0].center();
    let csv = format!("{HEADER}\nm90201,赵敏,u001,,,,{},{},false\n", at.lat, at.lng);
    let resp = import(&app, "text/csv", csv.into_bytes()).await;
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    assert_eq!(member(&app, "m90201").await["residence_grid_id"], "c001-g2");
    // Neither a grid nor coordinates; coordinates no grid holds: refused, line named.
    let csv = format!("{HEADER}\nm90202,钱多,u001,,,,,,false\n");
    let body = assert_problem(import(&app, "text/csv", csv.into_bytes()).await, 422, Some("invalid_csv")).await;
    assert!(body["detail"].as_str().unwrap().contains("line 2"), "{body}");
    let csv = format!("{HEADER}\nm90203,孙立,u001,,,,0.5,0.5,false\n");
    assert_problem(import(&app, "text/csv", csv.into_bytes()).await, 422, Some("invalid_csv")).await;
    assert_eq!(app.get(&app.command(), "/v1/members/m90202").await.status(), 404);
    app.stop().await;
}
