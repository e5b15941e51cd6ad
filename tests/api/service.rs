//! Peacetime service through the real server: service orders with real websocket clients
//! (the hard-order reservation, claims, direct assignment, check-in and check-out, ratings
//! and the member's points and hours), registration and the CSV import, the scope of
//! reports in JSON and CSV, and the refusals of the service endpoints (each a clear 4xx
//! problem+json that changes nothing).
//!
//! The clock is the wall clock, so a record here lasts well under a minute: its hours (and
//! so its points) round to 0, and the figures must agree between the rating frame, the
//! member record, the order and the reports. One test moves a check-in back in the log and
//! restarts the server on it, for real hours and points; the rest of the arithmetic is in
//! the domain tests (`domain::service_tests`).

use std::collections::BTreeSet;
use std::time::Duration;

use muster::domain::dispatcher::rfc3339;
use muster::domain::org::City;
use muster::engine::now_ms;
use muster::gateway::auth::Role;
use serde_json::{Value, json};

use crate::helpers::*;

const QUIET: Duration = Duration::from_millis(200);
const DAY_MS: i64 = 24 * 3_600_000;

/// Asserts a problem+json answer with this status and code; returns its body.
async fn problem(resp: reqwest::Response, status: u16, code: &str) -> Value {
    let got = resp.status().as_u16();
    let ct = resp.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    let text = resp.text().await.unwrap();
    assert_eq!(got, status, "{text}");
    assert_eq!(ct, "application/problem+json", "{text}");
    let body: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    assert_eq!(body["status"], status, "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["type"], format!("/problems/{code}"), "{body}");
    assert!(body["detail"].as_str().is_some_and(|d| !d.trim().is_empty()), "{body}");
    body
}

async fn json_of(resp: reqwest::Response, status: u16) -> Value {
    let got = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    assert_eq!(got, status, "{text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

async fn get_json(app: &TestApp, token: &str, path: &str) -> Value {
    json_of(app.get(token, path).await, 200).await
}

/// The members of c001 for service (residents, and members of the teams it hosts), in
/// index order: the reservation takes the first of them when nobody has done hard work.
fn c001_members(city: &City) -> Vec<String> {
    community_members(city, "c001")
}

/// The members of a community for service: residents, and members of the teams it hosts.
fn community_members(city: &City, community: &str) -> Vec<String> {
    let hosted: BTreeSet<&str> =
        city.teams.iter().filter(|t| t.community_id == community).map(|t| t.id.as_str()).collect();
    let grids = format!("{community}-");
    city.members
        .iter()
        .filter(|m| m.residence_grid_id.starts_with(&grids) || m.team_id.as_deref().is_some_and(|t| hosted.contains(t)))
        .map(|m| m.id.clone())
        .collect()
}

/// A member with nothing to do with c001.
fn outsider(city: &City) -> String {
    let c1 = c001_members(city);
    city.members.iter().find(|m| !c1.contains(&m.id)).unwrap().id.clone()
}

fn order_body(grid: &str, category: &str, slots: u32) -> Value {
    let now = now_ms();
    json!({
        "grid_id": grid,
        "category": category,
        "title": format!("{category} at {grid}"),
        "note": "3号楼",
        "window_start": rfc3339(now - 60_000),
        "window_end": rfc3339(now + DAY_MS),
        "slots": slots,
    })
}

async fn post_order(app: &TestApp, token: &str, body: Value) -> Value {
    json_of(app.post(token, "/v1/orders", body).await, 201).await
}

fn place(order: &Value) -> (f64, f64) {
    (order["location"]["lat"].as_f64().unwrap(), order["location"]["lng"].as_f64().unwrap())
}

async fn order(app: &TestApp, id: &str) -> Value {
    get_json(app, &app.command(), &format!("/v1/orders/{id}")).await
}

async fn member(app: &TestApp, id: &str) -> Value {
    get_json(app, &app.command(), &format!("/v1/members/{id}")).await
}

/// Checks in and out at the order's place (or `far` metres north of it, roughly).
async fn work(app: &TestApp, member_id: &str, order: &Value, far_m: f64) -> Value {
    let id = order["id"].as_str().unwrap();
    let (lat, lng) = place(order);
    let at = json!({"lat": lat + far_m / 111_000.0, "lng": lng});
    let token = app.member(member_id);
    json_of(app.post(&token, &format!("/v1/orders/{id}/checkin"), at.clone()).await, 200).await;
    json_of(app.post(&token, &format!("/v1/orders/{id}/checkout"), at).await, 200).await
}

fn claim_of<'a>(order: &'a Value, member_id: &str) -> &'a Value {
    order["claims"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["member_id"] == member_id)
        .unwrap_or_else(|| panic!("{member_id} has no claim: {order}"))
}

/// Frames from a socket until one of `last` kind arrives (inclusive).
async fn frames_until(ws: &mut Ws, last: &str) -> Vec<Value> {
    let mut out = Vec::new();
    loop {
        let f = ws.next_frame().await;
        let done = f["type"] == last;
        out.push(f);
        if done {
            return out;
        }
    }
}

fn kinds(frames: &[Value]) -> Vec<String> {
    frames.iter().map(|f| f["type"].as_str().unwrap().to_string()).collect()
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

// ---------------------------------------------------------------------------------------
// Orders over real sockets
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_hard_order_is_offered_to_the_reserved_members_claimed_worked_rated_and_credited() {
    let app = spawn_app().await;
    let staff = app.staff("c001");
    // The order stands where c001's first member stands. 2 slots × 2 a slot, nobody has
    // done hard work: the four nearest to the order's place, ties by index (the reservation
    // breaks ties in hard work by distance since the fairness bench showed that the first
    // four by index, wherever they stood, seldom took it).
    let place_of = |id: &str| app.city.members.iter().find(|m| m.id == id).unwrap().position;
    let mut c1 = c001_members(&app.city);
    let here = place_of(&c1[0]);
    c1.sort_by(|a, b| here.distance_m(place_of(a)).total_cmp(&here.distance_m(place_of(b))));
    let (reserved, others) = (&c1[..4], &c1[4..6]);
    let mut staff_ws = app.ws(&staff, None).await;
    let mut city_ws = app.ws(&app.command(), None).await;
    let mut other_staff_ws = app.ws(&app.staff("c002"), None).await;
    let mut sockets = Vec::new();
    for m in c1[..6].iter() {
        sockets.push((m.clone(), app.ws(&app.member(m), None).await));
    }

    let mut body = order_body("c001-g1", "emergency_rescue", 2);
    body.as_object_mut().unwrap().remove("grid_id");
    body["location"] = json!({"lat": here.lat, "lng": here.lng});
    let o = post_order(&app, &staff, body).await;
    let id = o["id"].as_str().unwrap().to_string();
    assert_eq!(
        (o["status"].as_str(), o["difficulty"].as_u64(), o["posted_by"].as_str()),
        (Some("open"), Some(5), Some("staff:c001"))
    );
    let until = o["reserved_until"].as_str().expect("a hard order is reserved").to_string();

    // the reserved members get an order.offer; the others nothing, but see it listed
    for (m, ws) in sockets.iter_mut() {
        if reserved.contains(m) {
            let f = ws.expect("order.offer").await;
            assert_eq!(f["data"]["order_id"], id.as_str());
            assert_eq!(f["data"]["reserved_until"], until.as_str());
            assert_eq!(f["data"]["difficulty"], 5);
            assert_eq!(f["data"]["category"], "emergency_rescue");
        } else {
            assert!(ws.quiet_for(QUIET).await, "{m} got a frame");
        }
    }
    for m in others {
        let listed = get_json(&app, &app.member(m), "/v1/orders").await;
        assert!(listed.as_array().unwrap().iter().any(|x| x["id"] == id.as_str()), "{m}: {listed}");
        let before = order(&app, &id).await;
        let body = problem(
            app.post(&app.member(m), &format!("/v1/orders/{id}/claim"), json!({})).await,
            409,
            "priority_window",
        )
        .await;
        assert!(body["detail"].as_str().unwrap().contains(&until), "{body}");
        assert_eq!(order(&app, &id).await, before, "a refused claim changed the order");
    }

    // a reserved member claims: order.assigned on their socket
    let a = reserved[0].clone();
    let view = json_of(app.post(&app.member(&a), &format!("/v1/orders/{id}/claim"), json!({})).await, 200).await;
    assert_eq!(claim_of(&view, &a)["assigned"], false);
    let ia = sockets.iter().position(|(m, _)| *m == a).unwrap();
    let ws = &mut sockets[ia].1;
    let f = ws.expect("order.assigned").await;
    assert_eq!(f["data"]["order_id"], id.as_str());
    assert_eq!(f["data"]["assigned"], false);
    assert_eq!(f["data"]["title"], o["title"]);

    // check-in and check-out at the place
    let (lat, lng) = place(&o);
    let view = json_of(
        app.post(&app.member(&a), &format!("/v1/orders/{id}/checkin"), json!({"lat": lat, "lng": lng})).await,
        200,
    )
    .await;
    let c = claim_of(&view, &a);
    assert_eq!(c["checkin"]["flagged"], false);
    assert_eq!(c["checkin"]["distance_m"], 0.0);
    assert!(c["checkin_at"].is_string() && c["checkout"].is_null(), "{c}");
    let f = ws.expect("order.checked_in").await;
    assert_eq!(f["data"], json!({"order_id": id, "member_id": a, "distance_m": 0.0, "flagged": false}));
    let view = json_of(
        app.post(&app.member(&a), &format!("/v1/orders/{id}/checkout"), json!({"lat": lat, "lng": lng})).await,
        200,
    )
    .await;
    let c = claim_of(&view, &a).clone();
    assert_eq!(c["counted"], true, "{c}");
    let hours = c["hours"].as_f64().unwrap();
    ws.expect("order.checked_out").await;

    // staff rate the work: a rating frame, and the member record shows the credit
    let rated = json_of(
        app.post(&staff, "/v1/ratings", json!({"order_id": id, "member_id": a, "rating": "very_good"})).await,
        200,
    )
    .await;
    assert_eq!(rated["id"], a.as_str());
    let f = ws.expect("rating").await;
    assert_eq!(f["data"]["order_id"], id.as_str());
    assert_eq!(f["data"]["offer_id"], Value::Null);
    assert_eq!(f["data"]["rating"], "very_good");
    assert_eq!(f["data"]["hours"], hours);
    let points = f["data"]["points"].as_f64().unwrap();
    // Seconds of work round to 0.00 h and so earn nothing: the figures below must agree,
    // and the formula with real hours is checked in the next test.
    assert_eq!((hours, points), (0.0, 0.0), "{f}");
    let rec = get_json(&app, &app.member(&a), &format!("/v1/members/{a}")).await;
    for (field, want) in
        [("points_total", points), ("points_balance", points), ("hours_total", hours), ("hours_balance", hours)]
    {
        assert_eq!(rec[field].as_f64(), Some(want), "{field}: {rec}");
    }
    // the answer is the rating, not the member's record
    assert_eq!((rated["points"].as_f64(), rated["hours"].as_f64()), (Some(points), Some(hours)), "{rated}");
    assert_eq!(rated["rating"], "very_good");
    assert!(rated.get("position").is_none(), "{rated}");
    assert_eq!(claim_of(&order(&app, &id).await, &a)["rating"], "very_good");
    // the member's own report counts the task
    let rep = get_json(&app, &app.member(&a), &format!("/v1/reports/members/{a}")).await;
    assert_eq!(rep["total"]["tasks_by_difficulty"], json!([0, 0, 0, 0, 1]));
    assert_eq!(rep["total"]["ratings"], json!({"very_good": 1, "good": 0, "fair": 0}));

    // the community and city streams saw the order's life; another community did not
    for ws in [&mut staff_ws, &mut city_ws] {
        let frames = frames_until(ws, "order.checked_out").await;
        let k = kinds(&frames);
        assert_eq!(k, ["order.posted", "order.claimed", "order.checked_in", "order.checked_out"], "{frames:?}");
        assert_eq!(frames[0]["data"]["order_id"], id.as_str());
        assert_eq!(frames[1]["data"]["member_id"], a.as_str());
        assert_eq!(frames[1]["data"]["order"]["claimed"], 1);
        assert!(ws.quiet_for(QUIET).await, "no rating frame on scope streams");
    }
    assert_eq!(staff_ws.hello["data"]["last_seq"], 0);
    assert!(other_staff_ws.quiet_for(QUIET).await);
    app.stop().await;
}

/// Real hours: the server's only clock is the wall clock, so the check-in is moved 90
/// minutes back in its log and the server restarts on that log. The check-out then counts
/// about 1.5 h, and the rating, the member's record and the report carry hours × 5
/// (difficulty) × 1.2 (very good) points.
#[tokio::test]
async fn the_hours_of_a_long_record_earn_points_on_the_rating_the_record_and_the_report() {
    let mut app = spawn_app().await;
    let staff = app.staff("c001");
    // one slot of a hard order, nobody has done hard work: the first by index is reserved
    let a = c001_members(&app.city)[0].clone();
    let o = post_order(&app, &staff, order_body("c001-g1", "emergency_rescue", 1)).await;
    assert_eq!(o["difficulty"], 5, "{o}");
    let id = o["id"].as_str().unwrap().to_string();
    let view = json_of(app.post(&app.member(&a), &format!("/v1/orders/{id}/claim"), json!({})).await, 200).await;
    assert!(claim_of(&view, &a)["checkin"].is_null(), "{view}");
    let (lat, lng) = place(&o);
    let here = json!({"lat": lat, "lng": lng});
    json_of(app.post(&app.member(&a), &format!("/v1/orders/{id}/checkin"), here.clone()).await, 200).await;

    const BACK_MS: i64 = 90 * 60_000;
    app.restart(|dir| {
        let db = rusqlite::Connection::open(dir.join(muster::store::sqlite::DB_FILE)).unwrap();
        let n = db.execute("UPDATE events SET at = at - ?1 WHERE kind = 'checked_in'", [BACK_MS]).unwrap();
        assert_eq!(n, 1, "one check-in in the log");
    })
    .await;

    let view = json_of(app.post(&app.member(&a), &format!("/v1/orders/{id}/checkout"), here).await, 200).await;
    let c = claim_of(&view, &a).clone();
    assert_eq!(c["counted"], true, "{c}");
    let ms = |v: &Value| chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap()).unwrap().timestamp_millis();
    let span = ms(&c["checkout_at"]) - ms(&c["checkin_at"]);
    assert!((BACK_MS..BACK_MS + 600_000).contains(&span), "the check-in was moved back: {c}");
    let hours = c["hours"].as_f64().unwrap();
    assert_eq!(hours, round2(span as f64 / 3_600_000.0), "hours from check-in to check-out: {c}");
    assert!(hours >= 1.5, "{c}");

    let rated = json_of(
        app.post(&staff, "/v1/ratings", json!({"order_id": id, "member_id": a, "rating": "very_good"})).await,
        200,
    )
    .await;
    let points = rated["points"].as_f64().unwrap();
    assert_eq!(points, round2(hours * 5.0 * 1.2), "points = hours × difficulty × weight: {rated}");
    assert_eq!(rated["hours"].as_f64(), Some(hours), "{rated}");
    let rec = get_json(&app, &app.member(&a), &format!("/v1/members/{a}")).await;
    for (field, want) in
        [("points_total", points), ("points_balance", points), ("hours_total", hours), ("hours_balance", hours)]
    {
        assert_eq!(rec[field].as_f64(), Some(want), "{field}: {rec}");
    }
    let rep = get_json(&app, &app.member(&a), &format!("/v1/reports/members/{a}")).await;
    assert_eq!((rep["total"]["hours"].as_f64(), rep["total"]["points"].as_f64()), (Some(hours), Some(points)), "{rep}");
    assert_eq!(rep["total"]["tasks_by_difficulty"], json!([0, 0, 0, 0, 1]));
    app.stop().await;
}

#[tokio::test]
async fn staff_assign_an_order_directly_and_a_flagged_record_earns_nothing() {
    let app = spawn_app().await;
    let staff = app.staff("c001");
    let c1 = c001_members(&app.city);
    let m = c1[7].clone();
    let mut ws = app.ws(&app.member(&m), None).await;
    let o = post_order(&app, &staff, order_body("c001-g2", "patrol", 1)).await;
    let id = o["id"].as_str().unwrap().to_string();
    assert_eq!(o["reserved_until"], Value::Null, "an easy order is not reserved");

    // only staff or command assign; only members of the community
    problem(
        app.post(&app.member(&m), &format!("/v1/orders/{id}/assign"), json!({"member_id": m})).await,
        403,
        "role_not_allowed",
    )
    .await;
    let out = outsider(&app.city);
    // a member of another community is answered as an unknown id
    problem(
        app.post(&staff, &format!("/v1/orders/{id}/assign"), json!({"member_id": out})).await,
        422,
        "unknown_member",
    )
    .await;
    problem(
        app.post(&staff, &format!("/v1/orders/{id}/assign"), json!({"member_id": "nobody"})).await,
        422,
        "unknown_member",
    )
    .await;
    problem(
        app.post(&app.staff("c002"), &format!("/v1/orders/{id}/assign"), json!({"member_id": m})).await,
        404,
        "unknown_order",
    )
    .await;
    assert_eq!(order(&app, &id).await["claims"], json!([]));

    let view = json_of(app.post(&staff, &format!("/v1/orders/{id}/assign"), json!({"member_id": m})).await, 200).await;
    assert_eq!(view["status"], "full");
    assert_eq!(claim_of(&view, &m)["assigned"], true);
    let f = ws.expect("order.assigned").await;
    assert_eq!(f["data"]["order_id"], id.as_str());
    assert_eq!(f["data"]["assigned"], true);

    // checked in 500 m away: recorded, flagged, not counted, not rateable
    let view = work(&app, &m, &o, 500.0).await;
    let c = claim_of(&view, &m);
    assert_eq!((c["checkin"]["flagged"].as_bool(), c["checkout"]["flagged"].as_bool()), (Some(true), Some(true)));
    assert!(c["checkin"]["distance_m"].as_f64().unwrap() > 450.0, "{c}");
    assert_eq!(c["counted"], false);
    let f = ws.expect("order.checked_in").await;
    assert_eq!(f["data"]["flagged"], true);
    let before = member(&app, &m).await;
    problem(
        app.post(&staff, "/v1/ratings", json!({"order_id": id, "member_id": m, "rating": "good"})).await,
        409,
        "did_not_work",
    )
    .await;
    assert_eq!(member(&app, &m).await, before);
    let rep = get_json(&app, &staff, &format!("/v1/reports/members/{m}")).await;
    assert_eq!(rep["total"]["tasks_by_difficulty"], json!([0, 0, 0, 0, 0]), "a flagged record is not credited");
    app.stop().await;
}

// ---------------------------------------------------------------------------------------
// Registration and the CSV import
// ---------------------------------------------------------------------------------------

async fn registration(app: &TestApp, token: &str) -> Value {
    get_json(app, token, "/v1/registration").await
}

fn row<'a>(reg: &'a Value, list: &str, id: &str) -> &'a Value {
    reg[list].as_array().unwrap().iter().find(|r| r["id"] == id).unwrap_or_else(|| panic!("no {id} in {reg}"))
}

async fn import(app: &TestApp, token: &str, csv: &str) -> reqwest::Response {
    app.http
        .post(app.url("/v1/members/import"))
        .bearer_auth(token)
        .header("content-type", "text/csv")
        .body(csv.to_string())
        .send()
        .await
        .unwrap()
}

const HEADER: &str = "id,name,team_id,residence_grid_id,skills,lat,lng,on_call";

#[tokio::test]
async fn a_unit_admin_imports_three_members_and_the_registration_figures_follow() {
    let app = spawn_app().await;
    let admin = app.token(Role::UnitAdmin, Some("u001"));
    let team = app.city.teams.iter().find(|t| t.unit_id == "u001").unwrap().id.clone();
    let before = registration(&app, &admin).await;
    assert_eq!(before["units"].as_array().unwrap().len(), 1, "a unit admin sees their unit only: {before}");
    assert_eq!(before["communities"], json!([]));
    let u = row(&before, "units", "u001").clone();
    let c_before = row(&registration(&app, &app.command()).await, "communities", "c001").clone();
    let mut city_ws = app.ws(&app.command(), None).await;

    let csv = format!(
        "{HEADER}\nimp-1,新一,{team},c001-g1,medical;driving,,,true\nimp-2,新二,,c001-g2,,30.6,114.3,false\nimp-3,新三,,c001-g3,elderly_care,,,\n"
    );
    let r = json_of(import(&app, &admin, &csv).await, 200).await;
    assert_eq!(r, json!({"registered": 3}));
    let f = city_ws.expect("members.registered").await;
    assert_eq!(f["data"]["members"], json!(["imp-1", "imp-2", "imp-3"]));

    let after = registration(&app, &admin).await;
    let ua = row(&after, "units", "u001");
    assert_eq!(ua["members"], u["members"].as_u64().unwrap() + 3);
    assert_eq!(ua["registered"], u["registered"].as_u64().unwrap() + 3);
    let c_after = row(&registration(&app, &app.command()).await, "communities", "c001").clone();
    assert_eq!(c_after["residents"], c_before["residents"].as_u64().unwrap() + 3);
    assert_eq!(c_after["registered"], c_before["registered"].as_u64().unwrap() + 3);

    let m1 = get_json(&app, &admin, "/v1/members/imp-1").await;
    assert_eq!(m1["unit_id"], "u001");
    assert_eq!(m1["team_id"], team.as_str());
    assert_eq!(m1["residence_community_id"], "c001");
    assert_eq!(m1["skills"], json!(["medical", "driving"]));
    assert_eq!(m1["on_call"], true);
    assert_eq!(m1["registered"], true);
    let m2 = get_json(&app, &admin, "/v1/members/imp-2").await;
    assert_eq!(m2["position"], json!({"lat": 30.6, "lng": 114.3}));
    assert_eq!(m2["team_id"], Value::Null);
    let listed = get_json(&app, &admin, "/v1/members?unit_id=u001").await;
    let ids: Vec<&str> = listed.as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert!(["imp-1", "imp-2", "imp-3"].iter().all(|i| ids.contains(i)), "{ids:?}");
    // and an imported member of c001 can take c001's orders at once
    let o = post_order(&app, &app.staff("c001"), order_body("c001-g3", "patrol", 1)).await;
    let id = o["id"].as_str().unwrap();
    json_of(app.post(&app.member("imp-3"), &format!("/v1/orders/{id}/claim"), json!({})).await, 200).await;
    app.stop().await;
}

#[tokio::test]
async fn a_bad_csv_is_refused_whole_and_nothing_changes() {
    let app = spawn_app().await;
    let admin = app.token(Role::UnitAdmin, Some("u001"));
    let good = "ok-1,好,,c001-g1,,,,";
    let cases: Vec<(String, u16, &str)> = vec![
        (format!("{HEADER}\n{good}\nbad-1,坏,,c999-g9,,,,\n"), 422, "unknown_grid"),
        (format!("{HEADER}\n{good}\nbad-1,坏,,c001-g1,juggling,,,\n"), 422, "unknown_skill"),
        (format!("{HEADER}\n{good}\nbad-1,坏,,c001-g1,,north,114.3,\n"), 422, "invalid_csv"),
        (format!("{HEADER}\n{good}\nbad-1,坏,,c001-g1,,30.6,,\n"), 422, "invalid_csv"),
        (format!("{HEADER}\n{good}\nbad-1,坏,,c001-g1,,95,114.3,\n"), 422, "invalid_csv"),
        (format!("{HEADER}\n{good}\nbad-1,坏,,c001-g1,,,,maybe\n"), 422, "invalid_csv"),
        (format!("{HEADER}\n{good}\nok-1,again,,c001-g1,,,,\n"), 422, "duplicate_member"),
        (format!("{HEADER}\n{good}\nbad-1,坏,t9999,c001-g1,,,,\n"), 422, "invalid_member"),
        ("id,name\nbad-1,坏\n".to_string(), 422, "invalid_csv"),
        (format!("{HEADER},unit_id\n{good},u002\n"), 403, "outside_scope"),
    ];
    let members_before = get_json(&app, &app.command(), "/v1/members").await;
    let reg_before = registration(&app, &app.command()).await;
    for (csv, status, code) in cases {
        let body = problem(import(&app, &admin, &csv).await, status, code).await;
        if status == 422 && code != "duplicate_member" && code != "invalid_member" && code != "unknown_skill" {
            assert!(body["detail"].as_str().unwrap().contains("line 3") || csv.starts_with("id,name\n"), "{body}");
        }
    }
    // a command import without unit_id; the wrong content type; a staff token
    problem(import(&app, &app.command(), &format!("{HEADER}\n{good}\n")).await, 422, "invalid_csv").await;
    let resp = app
        .http
        .post(app.url("/v1/members/import"))
        .bearer_auth(&admin)
        .json(&json!({"id": "ok-1"}))
        .send()
        .await
        .unwrap();
    problem(resp, 415, "unsupported_media_type").await;
    problem(import(&app, &app.staff("c001"), &format!("{HEADER}\n{good}\n")).await, 403, "role_not_allowed").await;
    assert_eq!(get_json(&app, &app.command(), "/v1/members").await, members_before);
    assert_eq!(registration(&app, &app.command()).await, reg_before);
    problem(app.get(&app.command(), "/v1/members/ok-1").await, 404, "unknown_member").await;
    app.stop().await;
}

fn outsider_of_unit(city: &City, unit: &str) -> String {
    city.members.iter().find(|m| m.unit_id != unit).unwrap().id.clone()
}

#[tokio::test]
async fn a_member_reports_at_a_new_residence_and_registering_another_units_member_is_forbidden() {
    let app = spawn_app().await;
    // m00003 (u001) has not reported yet
    let mut city = app.city.clone();
    let i = city.members.iter().position(|m| m.id == "m00003").unwrap();
    city.members[i].registered = false;
    json_of(app.put_city(&app.command(), &city).await, 200).await;
    let m = city.members[i].clone();
    let admin = app.token(Role::UnitAdmin, Some("u001"));
    let u = row(&registration(&app, &admin).await, "units", "u001").clone();
    let (n, r) = (u["members"].as_u64().unwrap(), u["registered"].as_u64().unwrap());
    assert_eq!(u["rate"].as_f64().unwrap(), round4(r as f64 / n as f64));
    assert!(r < n);

    let body =
        json!({"id": m.id, "name": m.name, "unit_id": "u001", "team_id": m.team_id, "residence_grid_id": "c001-g2"});
    let rec = json_of(app.post(&admin, "/v1/members", body).await, 201).await;
    assert_eq!(rec["registered"], true);
    assert_eq!(rec["residence_grid_id"], "c001-g2");
    assert_eq!(rec["residence_community_id"], "c001");
    let u = row(&registration(&app, &admin).await, "units", "u001").clone();
    assert_eq!(u["registered"], r + 1);
    assert_eq!(u["rate"].as_f64().unwrap(), round4((r + 1) as f64 / n as f64));
    // now a resident of c001: c001's staff see them
    json_of(app.get(&app.staff("c001"), &format!("/v1/members/{}", m.id)).await, 200).await;

    // 单位报到: u001 reports to c001, which one of its teams is paired with
    let paired: Vec<String> =
        app.city.teams.iter().filter(|t| t.unit_id == "u001").map(|t| t.community_id.clone()).collect();
    assert!(paired.iter().any(|c| c == "c001"), "{paired:?}");
    let unpaired = if paired.iter().any(|c| c == "c002") { "c003" } else { "c002" };
    let view = json_of(app.post(&admin, "/v1/units/u001/register", json!({"community_id": "c001"})).await, 200).await;
    assert_eq!(row(&view, "units", "u001")["registered_communities"], json!(["c001"]));
    // staff see the units serving their community (one of u001's teams is paired with c001)
    let staff_view = registration(&app, &app.staff("c001")).await;
    let serving: BTreeSet<String> =
        app.city.teams.iter().filter(|t| t.community_id == "c001").map(|t| t.unit_id.clone()).collect();
    let shown: BTreeSet<String> =
        staff_view["units"].as_array().unwrap().iter().map(|u| u["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(shown, serving);
    assert!(row(&staff_view, "communities", "c001")["units_registered"].as_array().unwrap().contains(&json!("u001")));
    let reg_before = registration(&app, &app.command()).await;
    problem(app.post(&admin, "/v1/units/u001/register", json!({"community_id": unpaired})).await, 422, "not_paired")
        .await;
    problem(app.post(&admin, "/v1/units/u002/register", json!({"community_id": "c001"})).await, 404, "unknown_unit")
        .await;
    problem(
        app.post(&app.staff("c001"), "/v1/units/u001/register", json!({"community_id": "c001"})).await,
        403,
        "role_not_allowed",
    )
    .await;
    assert_eq!(registration(&app, &app.command()).await, reg_before);

    // a unit admin may not register another unit's member, known (the id is taken) or new
    let other = app.city.members.iter().find(|x| x.unit_id == "u002").unwrap().clone();
    let before = get_json(&app, &app.command(), "/v1/members?unit_id=u002").await;
    let reg_before = registration(&app, &app.command()).await;
    let known = json!({"id": other.id, "name": other.name, "unit_id": "u002", "team_id": other.team_id, "residence_grid_id": "c001-g1"});
    problem(app.post(&admin, "/v1/members", known).await, 409, "member_exists").await;
    let new = json!({"id": "new-1", "name": "新", "unit_id": "u002", "residence_grid_id": "c001-g1"});
    problem(app.post(&admin, "/v1/members", new).await, 403, "outside_scope").await;
    // staff register residents of their own community only; members register nobody
    let elsewhere = json!({"id": "new-2", "name": "新", "unit_id": "u001", "residence_grid_id": "c002-g1"});
    problem(app.post(&app.staff("c001"), "/v1/members", elsewhere).await, 403, "outside_scope").await;
    let me =
        json!({"id": m.id, "name": m.name, "unit_id": "u001", "team_id": m.team_id, "residence_grid_id": "c001-g1"});
    problem(app.post(&app.member(&m.id), "/v1/members", me).await, 403, "role_not_allowed").await;
    assert_eq!(get_json(&app, &app.command(), "/v1/members?unit_id=u002").await, before);
    assert_eq!(registration(&app, &app.command()).await, reg_before);
    app.stop().await;
}

fn round4(v: f64) -> f64 {
    (v * 10_000.0).round() / 10_000.0
}

// ---------------------------------------------------------------------------------------
// Reports
// ---------------------------------------------------------------------------------------

/// Some of everything: two members of u001 living in c001 work an order and are rated, and
/// an incident offers, accepts and arrives.
async fn busy_app() -> TestApp {
    let app = spawn_app().await;
    let staff = app.staff("c001");
    let o = post_order(&app, &staff, order_body("c001-g1", "patrol", 2)).await;
    let id = o["id"].as_str().unwrap();
    for (m, rating) in [("m00001", "very_good"), ("m00002", "fair")] {
        json_of(app.post(&app.member(m), &format!("/v1/orders/{id}/claim"), json!({})).await, 200).await;
        work(&app, m, &o, 0.0).await;
        json_of(app.post(&staff, "/v1/ratings", json!({"order_id": id, "member_id": m, "rating": rating})).await, 200)
            .await;
    }
    let inc =
        app.raise(&staff, json!({"grid_id": "c001-g1", "category": "patrol", "level": "III", "headcount": 1})).await;
    let inc_id = inc["id"].as_str().unwrap();
    let (m, offer) = app.offered(inc_id, "offered").await.remove(0);
    let mut ws = app.ws(&app.member(&m), None).await;
    assert_eq!(ws.request("accept", json!({"offer_id": offer})).await["type"], "ok");
    let loc = app.incident(inc_id).await["location"].clone();
    let r = ws.request("arrive", json!({"offer_id": offer, "lat": loc["lat"], "lng": loc["lng"]})).await;
    assert_eq!(r["type"], "ok", "{r}");
    app
}

fn ids_of(report: &Value) -> BTreeSet<String> {
    report["members"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_string()).collect()
}

/// A member's report, allowed: its scope is the member, its total their own row.
async fn member_report(app: &TestApp, token: &str, id: &str) -> Value {
    let r = get_json(app, token, &format!("/v1/reports/members/{id}")).await;
    assert_eq!(r["scope"], format!("member:{id}"), "{r}");
    assert_eq!(r["total"]["id"], id, "{r}");
    assert_eq!(r["members"], json!([]), "{r}");
    r
}

#[tokio::test]
async fn reports_are_scoped_to_the_role() {
    let app = busy_app().await;
    let city = app.city.clone();
    let of_unit = |u: &str| -> BTreeSet<String> {
        city.members.iter().filter(|m| m.unit_id == u).map(|m| m.id.clone()).collect()
    };
    let c1: BTreeSet<String> = c001_members(&city).into_iter().collect();
    let other_unit_member = outsider_of_unit(&city, "u001");
    let out = outsider(&city);
    // a member of a team c001 hosts who lives elsewhere
    let hosted = c001_members(&city)
        .into_iter()
        .find(|id| !city.members.iter().any(|m| &m.id == id && m.residence_grid_id.starts_with("c001-")))
        .expect("the test city has a hosted member living elsewhere");

    // unit admin: own unit and its members
    let admin = app.token(Role::UnitAdmin, Some("u001"));
    let r = get_json(&app, &admin, "/v1/reports/units/u001").await;
    assert_eq!(r["scope"], "unit:u001");
    assert_eq!(ids_of(&r), of_unit("u001"));
    assert_eq!(r["total"]["members"], of_unit("u001").len());
    problem(app.get(&admin, "/v1/reports/units/u002").await, 404, "unknown_unit").await;
    member_report(&app, &admin, "m00001").await;
    problem(app.get(&admin, &format!("/v1/reports/members/{other_unit_member}")).await, 404, "unknown_member").await;
    problem(app.get(&admin, "/v1/reports/communities/c001").await, 403, "role_not_allowed").await;

    // staff: own community, its residents and the members of the teams it hosts
    let staff = app.staff("c001");
    let r = get_json(&app, &staff, "/v1/reports/communities/c001").await;
    assert_eq!(r["scope"], "community:c001");
    assert_eq!(ids_of(&r), c1);
    member_report(&app, &staff, &hosted).await;
    member_report(&app, &staff, "m00001").await;
    problem(app.get(&staff, &format!("/v1/reports/members/{out}")).await, 404, "unknown_member").await;
    problem(app.get(&staff, "/v1/reports/communities/c002").await, 404, "unknown_community").await;
    problem(app.get(&staff, "/v1/reports/units/u001").await, 403, "role_not_allowed").await;

    // member: self only
    let me = app.member("m00001");
    let r = get_json(&app, &me, "/v1/reports/members/m00001").await;
    assert_eq!(r["scope"], "member:m00001");
    assert_eq!(r["total"]["id"], "m00001");
    assert_eq!(r["members"], json!([]));
    problem(app.get(&me, "/v1/reports/members/m00002").await, 404, "unknown_member").await;
    problem(app.get(&me, "/v1/reports/units/u001").await, 403, "role_not_allowed").await;
    problem(app.get(&me, "/v1/reports/communities/c001").await, 403, "role_not_allowed").await;

    // command: everything
    let cmd = app.command();
    for unit in ["u001", "u002"] {
        let r = get_json(&app, &cmd, &format!("/v1/reports/units/{unit}")).await;
        assert_eq!(r["scope"], format!("unit:{unit}"));
        assert_eq!(ids_of(&r), of_unit(unit), "{unit}");
    }
    for community in ["c001", "c002"] {
        let r = get_json(&app, &cmd, &format!("/v1/reports/communities/{community}")).await;
        assert_eq!(r["scope"], format!("community:{community}"));
        assert_eq!(ids_of(&r), community_members(&city, community).into_iter().collect(), "{community}");
    }
    member_report(&app, &cmd, &out).await;
    problem(app.get(&cmd, "/v1/reports/units/u999").await, 404, "unknown_unit").await;
    app.stop().await;
}

/// The CSV's rows as maps from column to cell (after the BOM, where the client kept it).
fn csv_rows(text: &str) -> Vec<std::collections::BTreeMap<String, String>> {
    let text = text.trim_start_matches('\u{feff}');
    csv::Reader::from_reader(text.as_bytes()).deserialize().map(|r| r.unwrap()).collect()
}

#[tokio::test]
async fn json_and_csv_reports_agree_on_the_totals() {
    let app = busy_app().await;
    let staff = app.staff("c001");
    let path = "/v1/reports/communities/c001";
    let j = get_json(&app, &staff, path).await;
    let t = &j["total"];
    assert_eq!(t["ratings"], json!({"very_good": 1, "good": 0, "fair": 1}), "{t}");
    assert_eq!(t["tasks_by_difficulty"], json!([2, 0, 0, 0, 0]));
    assert!(t["offered"].as_u64().unwrap() >= 1);
    assert_eq!((t["accepted"].as_u64(), t["arrived"].as_u64()), (Some(1), Some(1)));

    // Chinese headers by default, for spreadsheets here; English on request
    let zh = app.get(&staff, &format!("{path}?format=csv")).await.bytes().await.unwrap();
    assert!(zh.starts_with(b"\xef\xbb\xbf"), "a UTF-8 BOM first, so spreadsheets read the Chinese");
    let zh = String::from_utf8(zh.to_vec()).unwrap();
    let zh_rows = csv_rows(&zh);
    assert_eq!(zh_rows[0]["编号"], "c001", "{zh}");
    assert_eq!(zh_rows[0]["服务时长(小时)"], t["hours"].as_f64().unwrap().to_string());
    let resp = app.get(&staff, &format!("{path}?format=csv&lang=en")).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/csv"));
    let csv = resp.text().await.unwrap();
    let by_accept = app
        .http
        .get(app.url(&format!("{path}?lang=en")))
        .bearer_auth(&staff)
        .header("accept", "text/csv")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(csv, by_accept, "?format=csv and Accept: text/csv answer alike");

    let rows = csv_rows(&csv);
    assert_eq!(rows.len(), 1 + j["members"].as_array().unwrap().len(), "the total, then one row a member");
    let total = &rows[0];
    assert_eq!(total["id"], "c001");
    let num = |s: &str| s.parse::<f64>().unwrap_or_else(|_| panic!("'{s}' is not a number"));
    for (col, v) in [
        ("members", &t["members"]),
        ("registered", &t["registered"]),
        ("hours", &t["hours"]),
        ("points", &t["points"]),
        ("very_good", &t["ratings"]["very_good"]),
        ("good", &t["ratings"]["good"]),
        ("fair", &t["ratings"]["fair"]),
        ("offered", &t["offered"]),
        ("accepted", &t["accepted"]),
        ("arrived", &t["arrived"]),
        ("registration_rate", &t["registration_rate"]),
    ] {
        assert_eq!(num(&total[col]), v.as_f64().unwrap(), "{col}");
    }
    for d in 0..5 {
        assert_eq!(num(&total[&format!("tasks_d{}", d + 1)]), t["tasks_by_difficulty"][d].as_f64().unwrap());
    }
    let rel = t["reliability"].as_f64().unwrap();
    assert_eq!(num(&total["reliability"]), round4(rel));
    // the member rows add up to the total
    let sum = |col: &str| rows[1..].iter().map(|r| num(&r[col])).sum::<f64>();
    for col in ["very_good", "fair", "offered", "accepted", "arrived", "tasks_d1", "registered", "members"] {
        assert_eq!(sum(col), num(&total[col]), "{col}");
    }
    // a row without offers has an empty reliability
    assert!(rows[1..].iter().any(|r| r["reliability"].is_empty()));

    // a period before anything happened is empty, in both forms
    let from = rfc3339(now_ms() + DAY_MS);
    let to = rfc3339(now_ms() + 2 * DAY_MS);
    let q = format!("{path}?from={from}&to={to}");
    let e = get_json(&app, &staff, &q).await;
    assert_eq!(e["total"]["offered"], 0);
    assert_eq!(e["total"]["ratings"], json!({"very_good": 0, "good": 0, "fair": 0}));
    assert_eq!(e["from"], from.as_str());
    let ecsv = app.get(&staff, &format!("{q}&format=csv&lang=en")).await.text().await.unwrap();
    assert_eq!(csv_rows(&ecsv)[0]["offered"], "0");
    // without `from` the period has no length, so no target; with one, each member owes
    // the yearly target prorated (20 h a year: a day is 20/365 h) and every member of the
    // empty period is below it
    assert_eq!(j["yearly_hours_target"], 20.0);
    assert!(t["target_hours"].is_null() && t["members_below_target"].is_null(), "{t}");
    let members = e["total"]["members"].as_f64().unwrap();
    let owed = 20.0 / 365.0 * members;
    assert!((e["total"]["target_hours"].as_f64().unwrap() - owed).abs() < 0.006, "{owed} {}", e["total"]);
    assert_eq!(e["total"]["members_below_target"].as_f64().unwrap(), members);
    assert!(e["members"].as_array().unwrap().iter().all(|m| m["members_below_target"] == 1), "{e}");
    assert_eq!(csv_rows(&ecsv)[0]["members_below_target"], members.to_string());

    problem(app.get(&staff, &format!("{path}?format=xml")).await, 400, "invalid_query").await;
    problem(app.get(&staff, &format!("{path}?format=csv&lang=fr")).await, 400, "invalid_query").await;
    problem(app.get(&staff, &format!("{path}?from=yesterday")).await, 422, "invalid_body").await;
    app.stop().await;
}

// ---------------------------------------------------------------------------------------
// Bad input
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn refused_order_actions_are_clear_and_change_nothing() {
    let app = spawn_app().await;
    let staff = app.staff("c001");
    let c1 = c001_members(&app.city);
    let (a, b, c) = (c1[0].clone(), c1[1].clone(), c1[2].clone());
    let o = post_order(&app, &staff, order_body("c001-g1", "patrol", 1)).await;
    let full = o["id"].as_str().unwrap().to_string();
    json_of(app.post(&app.member(&a), &format!("/v1/orders/{full}/claim"), json!({})).await, 200).await;
    let cancelled =
        post_order(&app, &staff, order_body("c001-g2", "patrol", 2)).await["id"].as_str().unwrap().to_string();
    json_of(app.post(&app.member(&c), &format!("/v1/orders/{cancelled}/claim"), json!({})).await, 200).await;
    let v =
        json_of(app.post(&staff, &format!("/v1/orders/{cancelled}/cancel"), json!({"reason": "雨"})).await, 200).await;
    assert_eq!(v["status"], "cancelled");

    let (lat, lng) = place(&o);
    let here = json!({"lat": lat, "lng": lng});
    let cases: Vec<(String, String, Value, u16, &str)> = vec![
        (app.member(&b), format!("/v1/orders/{full}/claim"), json!({}), 409, "order_full"),
        (staff.clone(), format!("/v1/orders/{full}/assign"), json!({"member_id": b}), 409, "order_full"),
        (app.member(&b), format!("/v1/orders/{cancelled}/claim"), json!({}), 409, "order_closed"),
        (app.member(&c), format!("/v1/orders/{cancelled}/checkin"), here.clone(), 409, "order_closed"),
        (staff.clone(), format!("/v1/orders/{cancelled}/cancel"), json!({}), 409, "order_closed"),
        (app.member(&a), format!("/v1/orders/{full}/checkout"), here.clone(), 409, "not_checked_in"),
        (app.member(&b), format!("/v1/orders/{full}/checkin"), here.clone(), 409, "not_claimed"),
        (
            app.member(&a),
            format!("/v1/orders/{full}/checkin"),
            json!({"lat": 91.0, "lng": 0.0}),
            422,
            "invalid_position",
        ),
        (app.member(&a), format!("/v1/orders/{full}/checkin"), json!({"lat": "x"}), 422, "invalid_body"),
        (staff.clone(), format!("/v1/orders/{full}/checkin"), here.clone(), 403, "role_not_allowed"),
        (app.member(&a), format!("/v1/orders/{full}/cancel"), json!({}), 403, "role_not_allowed"),
        (app.member(&outsider(&app.city)), format!("/v1/orders/{full}/claim"), json!({}), 404, "unknown_order"),
        (app.member(&a), "/v1/orders/ord-999/claim".to_string(), json!({}), 404, "unknown_order"),
        (
            staff.clone(),
            "/v1/ratings".to_string(),
            json!({"order_id": full, "member_id": b, "rating": "good"}),
            409,
            "did_not_work",
        ),
        (
            staff.clone(),
            "/v1/ratings".to_string(),
            json!({"order_id": full, "member_id": a, "rating": "good"}),
            409,
            "did_not_work",
        ),
        (staff.clone(), "/v1/ratings".to_string(), json!({"member_id": a, "rating": "good"}), 422, "order_or_offer"),
        (
            staff.clone(),
            "/v1/ratings".to_string(),
            json!({"order_id": full, "member_id": a, "rating": "superb"}),
            422,
            "invalid_body",
        ),
        (
            app.member(&a),
            "/v1/ratings".to_string(),
            json!({"order_id": full, "member_id": a, "rating": "good"}),
            403,
            "role_not_allowed",
        ),
        (
            app.member(&a),
            format!("/v1/members/{a}/exchange"),
            json!({"from": "points", "amount": 1.0}),
            409,
            "insufficient_balance",
        ),
        (
            app.member(&a),
            format!("/v1/members/{a}/exchange"),
            json!({"from": "hours", "amount": -1.0}),
            422,
            "bad_amount",
        ),
        (
            app.member(&a),
            format!("/v1/members/{b}/exchange"),
            json!({"from": "hours", "amount": 1.0}),
            404,
            "unknown_member",
        ),
        (
            staff.clone(),
            format!("/v1/members/{a}/exchange"),
            json!({"from": "hours", "amount": 1.0}),
            403,
            "role_not_allowed",
        ),
        (
            staff.clone(),
            "/v1/orders".to_string(),
            json!({"grid_id": "c002-g1", "category": "patrol", "title": "x", "window_start": rfc3339(now_ms()), "window_end": rfc3339(now_ms() + DAY_MS), "slots": 1}),
            403,
            "outside_scope",
        ),
        (
            staff.clone(),
            "/v1/orders".to_string(),
            json!({"grid_id": "c001-g1", "category": "patrol", "title": "x", "window_start": "soon", "window_end": rfc3339(now_ms() + DAY_MS), "slots": 1}),
            422,
            "invalid_body",
        ),
        (
            staff.clone(),
            "/v1/orders".to_string(),
            json!({"grid_id": "c001-g1", "category": "patrol", "title": "x", "window_start": rfc3339(now_ms()), "window_end": rfc3339(now_ms() + DAY_MS), "slots": 0}),
            422,
            "slots_out_of_range",
        ),
        (
            staff.clone(),
            "/v1/orders".to_string(),
            json!({"grid_id": "c001-g1", "category": "patrol", "difficulty": 6, "title": "x", "window_start": rfc3339(now_ms()), "window_end": rfc3339(now_ms() + DAY_MS), "slots": 1}),
            422,
            "difficulty_out_of_range",
        ),
        (app.member(&a), "/v1/orders".to_string(), order_body("c001-g1", "patrol", 1), 403, "role_not_allowed"),
    ];

    let before = snapshot(&app, &[&a, &b, &c]).await;
    for (token, path, body, status, code) in cases {
        let resp = app.post(&token, &path, body.clone()).await;
        let got = resp.status().as_u16();
        if got != status {
            panic!("POST {path} {body}: want {status} {code}, got {got} {}", resp.text().await.unwrap());
        }
        problem(resp, status, code).await;
    }
    assert_eq!(snapshot(&app, &[&a, &b, &c]).await, before, "a refused request changed something");
    // reads: a bad status filter; another community's order is not there for its members
    problem(app.get(&staff, "/v1/orders?status=done").await, 400, "invalid_query").await;
    problem(app.get(&app.member(&outsider(&app.city)), &format!("/v1/orders/{full}")).await, 404, "unknown_order")
        .await;
    problem(app.get(&app.staff("c002"), &format!("/v1/orders/{full}")).await, 404, "unknown_order").await;
    let open = get_json(&app, &staff, "/v1/orders?status=open").await;
    assert!(open.as_array().unwrap().iter().all(|o| o["status"] == "open"), "{open}");
    app.stop().await;
}

/// Every order, and these members' records, as command sees them.
async fn snapshot(app: &TestApp, members: &[&String]) -> (Value, Vec<Value>) {
    let orders = get_json(app, &app.command(), "/v1/orders").await;
    let mut records = Vec::new();
    for m in members {
        records.push(member(app, m).await);
    }
    (orders, records)
}

#[tokio::test]
async fn a_unit_admin_cannot_tell_another_units_members_from_unknown_ids() {
    let app = spawn_app().await;
    let admin = app.token(Role::UnitAdmin, Some("u001"));
    let other = app.city.members.iter().find(|m| m.unit_id != "u001").unwrap().clone();
    let before = get_json(&app, &app.command(), "/v1/members").await;
    // another unit's member: the id is taken, as one of the unit's own is when asked to
    // change team; the two answers differ only in the id
    let body = json!({"id": other.id, "name": "x", "unit_id": "u001", "residence_grid_id": "c001-g1"});
    let foreign = problem(app.post(&admin, "/v1/members", body).await, 409, "member_exists").await;
    let own = app.city.members.iter().find(|m| m.unit_id == "u001" && m.team_id.is_some()).unwrap().clone();
    let body = json!({"id": own.id, "name": "x", "unit_id": "u001", "residence_grid_id": "c001-g1"});
    let taken = problem(app.post(&admin, "/v1/members", body).await, 409, "member_exists").await;
    assert_eq!(
        foreign["detail"].as_str().unwrap().replace(other.id.as_str(), "<id>"),
        taken["detail"].as_str().unwrap().replace(own.id.as_str(), "<id>")
    );
    let csv = format!("{HEADER}\n{},x,,c001-g1,,,,\n", other.id);
    problem(import(&app, &admin, &csv).await, 409, "member_exists").await;
    assert_eq!(get_json(&app, &app.command(), "/v1/members").await, before);
    app.stop().await;
}

#[tokio::test]
async fn a_reimport_that_renumbers_members_keeps_order_claims_with_their_members() {
    let app = spawn_app().await;
    let o = post_order(&app, &app.staff("c001"), order_body("c001-g1", "patrol", 2)).await;
    let id = o["id"].as_str().unwrap();
    json_of(app.post(&app.member("m00001"), &format!("/v1/orders/{id}/claim"), json!({})).await, 200).await;
    // the same city, m00001 and m00002 listed the other way round
    let mut city = app.city.clone();
    city.members.swap(0, 1);
    assert_eq!(app.put_city(&app.command(), &city).await.status(), 200);
    let (lat, lng) = place(&o);
    let here = json!({"lat": lat, "lng": lng});
    // m00002 took nothing
    // (a bound that only ends a hung test)
    let resp = tokio::time::timeout(
        Duration::from_secs(30),
        app.post(&app.member("m00002"), &format!("/v1/orders/{id}/checkin"), here.clone()),
    )
    .await
    .expect("the server answers");
    problem(resp, 409, "not_claimed").await;
    // m00001 did, and the server still works
    let view = json_of(app.post(&app.member("m00001"), &format!("/v1/orders/{id}/checkin"), here).await, 200).await;
    assert_eq!(claim_of(&view, "m00001")["checkin"]["flagged"], false);
    app.stop().await;
}
