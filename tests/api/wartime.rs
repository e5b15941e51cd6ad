//! Wartime through the real server: mode switches with incidents open, a mass mobilization
//! of thousands of members over real websockets with exact progress counts, reconnects
//! during a mobilization, and the refusals of the wartime endpoints (each a clear 4xx
//! problem+json that changes nothing).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use muster::domain::org::{City, TeamKind};
use muster::gateway::auth::Role;
use serde_json::{Value, json};

use crate::helpers::*;

const QUIET: Duration = Duration::from_millis(300);

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
    assert!(body["title"].as_str().is_some_and(|d| !d.is_empty()), "{body}");
    body
}

async fn put(app: &TestApp, token: &str, path: &str, body: Value) -> reqwest::Response {
    app.http.put(app.url(path)).bearer_auth(token).json(&body).send().await.unwrap()
}

async fn json_of(resp: reqwest::Response, status: u16) -> Value {
    let got = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    assert_eq!(got, status, "{text}");
    serde_json::from_str(&text).unwrap()
}

/// City command puts a district in wartime; answers the modes, the district's row checked.
async fn district_to_wartime(app: &TestApp, d: &str) -> Value {
    let view =
        json_of(put(app, &app.command(), &format!("/v1/districts/{d}/mode"), mode_body("wartime")).await, 200).await;
    let row = view["districts"].as_array().unwrap().iter().find(|r| r["id"] == d).unwrap_or_else(|| panic!("{view}"));
    assert_eq!((&row["mode"], &row["effective"]), (&json!("wartime"), &json!("wartime")), "{view}");
    view
}

async fn modes(app: &TestApp) -> Value {
    json_of(app.get(&app.command(), "/v1/modes").await, 200).await
}

async fn mobilizations(app: &TestApp) -> Vec<Value> {
    json_of(app.get(&app.command(), "/v1/mobilizations").await, 200).await.as_array().unwrap().clone()
}

/// The district of a community, from GET /v1/communities.
async fn district_of(app: &TestApp, community: &str) -> String {
    let list: Vec<Value> = app.get(&app.command(), "/v1/communities").await.json().await.unwrap();
    let c = list.iter().find(|c| c["id"] == community).expect("the community is listed");
    c["district_id"].as_str().unwrap().to_string()
}

/// Assault teams (with at least one member) paired with communities of this district.
fn assault_teams_in(city: &City, district: &str) -> Vec<String> {
    let street_district = |s: &str| city.streets.iter().find(|x| x.id == s).unwrap().district_id.clone();
    let community_district = |c: &str| street_district(&city.communities.iter().find(|x| x.id == c).unwrap().street_id);
    city.teams
        .iter()
        .filter(|t| t.kind == TeamKind::Assault && community_district(&t.community_id) == district)
        .filter(|t| city.members.iter().any(|m| m.team_id.as_deref() == Some(&t.id)))
        .map(|t| t.id.clone())
        .collect()
}

fn mode_body(mode: &str) -> Value {
    json!({"mode": mode, "reason": "演练"})
}

// ---------------------------------------------------------------------------------------
// Mode switches with incidents open
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_district_goes_to_war_and_stands_down_while_an_incident_is_open() {
    let app = spawn_app().await;
    let d = district_of(&app, "c001").await;
    let mut city_ws = app.ws(&app.command(), None).await;
    let mut district_ws = app.ws(&app.token(Role::Command, Some(&d)), None).await;
    let mut staff_ws = app.ws(&app.staff("c001"), None).await;

    // More than the 20 on-call members of c001 can fill: short of candidates.
    let inc = app
        .raise(&app.staff("c001"), json!({"grid_id": "c001-g1", "category": "patrol", "level": "III", "headcount": 30}))
        .await;
    let id = inc["id"].as_str().unwrap().to_string();
    let before = app.offered(&id, "offered").await;
    assert_eq!(before.len(), 20, "peacetime: the community's own on-call members");

    let resp = put(&app, &app.command(), &format!("/v1/districts/{d}/mode"), mode_body("wartime")).await;
    let view = json_of(resp, 200).await;
    assert_eq!(view["city"], "peacetime");
    let row = view["districts"].as_array().unwrap().iter().find(|r| r["id"] == d.as_str()).unwrap().clone();
    assert_eq!((row["mode"].clone(), row["effective"].clone()), (json!("wartime"), json!("wartime")));
    for ws in [&mut city_ws, &mut district_ws] {
        let f = ws.expect("mode.switched").await;
        assert_eq!(f["data"]["mode"], "wartime", "{f}");
        assert_eq!(f["data"]["district_id"], d.as_str(), "{f}");
    }
    assert_eq!(modes(&app).await, view);

    // The open incident was looked at again at once: the district's assault teams are on
    // call and the wartime reach (street, then district) is wider.
    let inc = app.incident(&id).await;
    assert_eq!(inc["status"], "open");
    let offers = inc["offers"].as_array().unwrap();
    assert!(offers.len() > before.len(), "wartime found more candidates: {}", offers.len());
    let new: Vec<&Value> =
        offers.iter().filter(|o| !before.iter().any(|(m, _)| o["member_id"] == m.as_str())).collect();
    for o in &new {
        let ttl = chrono_ms(&o["expires_at"]) - chrono_ms(&o["sent_at"]);
        assert_eq!(ttl, 45_000, "the wartime TTL: {o}");
    }
    // a wartime offer is answered as any other
    let member = new[0]["member_id"].as_str().unwrap();
    let mut ws = app.ws(&app.member(member), None).await;
    let f = ws.expect("offer").await;
    assert_eq!(f["data"]["offer_id"], new[0]["offer_id"]);
    let r = ws.request("accept", json!({"offer_id": new[0]["offer_id"]})).await;
    assert_eq!(r["type"], "ok", "{r}");
    staff_ws.expect("incident.offer_accepted").await;

    // Standing down keeps the incident open.
    let resp = put(&app, &app.command(), &format!("/v1/districts/{d}/mode"), mode_body("peacetime")).await;
    let view = json_of(resp, 200).await;
    let row = view["districts"].as_array().unwrap().iter().find(|r| r["id"] == d.as_str()).unwrap().clone();
    assert_eq!(row["effective"], "peacetime");
    let f = city_ws.expect("mode.switched").await;
    assert_eq!(f["data"]["mode"], "peacetime");
    let inc = app.incident(&id).await;
    assert_eq!(inc["status"], "open");
    assert_eq!(inc["accepted"], 1, "{inc}");
    app.stop().await;
}

fn chrono_ms(v: &Value) -> i64 {
    chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap()).unwrap().timestamp_millis()
}

// ---------------------------------------------------------------------------------------
// A mass mobilization
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_mobilization_of_two_thousand_members_over_websockets_counts_exactly() {
    let started = Instant::now();
    let mut app = spawn_app().await;
    let city = muster::demo::demo_city(2600, 7);
    let resp = app.put_city(&app.command(), &city).await;
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    app.city = city;
    let assault_team = |t: &Option<String>| {
        t.as_ref().is_some_and(|t| app.city.teams.iter().any(|x| &x.id == t && x.kind == TeamKind::Assault))
    };
    let ordered: Vec<String> =
        app.city.members.iter().filter(|m| assault_team(&m.team_id)).map(|m| m.id.clone()).collect();
    let n = ordered.len();
    assert!(n >= 2_000, "{n} assault members");

    // Every ordered member online before the order.
    let addr = app.addr.clone();
    let tokens: Vec<(String, String)> = ordered.iter().map(|m| (m.clone(), app.member(m))).collect();
    let mut sockets: Vec<(String, Ws)> = futures_util::stream::iter(tokens)
        .map(|(m, token)| {
            let addr = addr.clone();
            async move { (m, Ws::connect(&addr, &token, None).await) }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    assert_eq!(sockets.len(), n);
    let connected = started.elapsed();

    // The command stream, read as it comes (a slow reader would be dropped).
    let mut command_ws = app.ws(&app.command(), None).await;
    let reader = tokio::spawn(async move {
        let mut ordered_frame = Value::Null;
        // (frames, (member, state) changes they listed)
        let mut progress = (0usize, HashSet::new());
        loop {
            let f = command_ws.next_frame().await;
            match f["type"].as_str() {
                Some("mobilization.ordered") => ordered_frame = f,
                Some("mobilization.progress") => {
                    progress.0 += 1;
                    for c in f["data"]["changes"].as_array().expect("changes") {
                        let change = (c["member_id"].to_string(), c["state"].to_string());
                        assert!(progress.1.insert(change), "a change listed twice: {c}");
                    }
                    if f["data"]["progress"]["reported"] == f["data"]["progress"]["ordered"] {
                        return (ordered_frame, f, progress, command_ws);
                    }
                }
                _ => {}
            }
        }
    });

    let resp = app.post(&app.command(), "/v1/mobilizations", json!({"all_assault": true, "note": "全员集结"})).await;
    let view = json_of(resp, 201).await;
    let id = view["id"].as_str().unwrap().to_string();
    assert_eq!(view["ordered"], n, "{view}");
    assert_eq!(
        (view["acknowledged"].clone(), view["reported"].clone(), view["missing"].clone()),
        (json!(0), json!(0), json!(n))
    );
    assert_eq!(view["status"], "open");

    // Each member: the order arrives, they acknowledge, then report where they are told.
    let mut tasks = Vec::with_capacity(n);
    for (m, mut ws) in sockets.drain(..) {
        let id = id.clone();
        tasks.push(tokio::spawn(async move {
            let order = ws.expect("mobilization.order").await;
            assert_eq!(order["data"]["mobilization_id"], id.as_str(), "{m}: {order}");
            let r = ws.request("mobilization.ack", json!({"mobilization_id": id})).await;
            assert_eq!(r["type"], "ok", "{m}: {r}");
            let at = &order["data"]["report_to"]["location"];
            let r = ws
                .request("mobilization.report", json!({"mobilization_id": id, "lat": at["lat"], "lng": at["lng"]}))
                .await;
            assert_eq!(r["type"], "ok", "{m}: {r}");
            (m, ws)
        }));
    }
    for t in tasks {
        sockets.push(t.await.expect("a member's task"));
    }
    let answered = started.elapsed();

    let view = json_of(app.get(&app.command(), &format!("/v1/mobilizations/{id}")).await, 200).await;
    assert_eq!(view["ordered"], n);
    assert_eq!(view["acknowledged"], n);
    assert_eq!(view["reported"], n);
    assert_eq!(view["missing"], 0);
    let teams = view["teams"].as_array().unwrap();
    assert!(teams.iter().all(|t| t["missing"] == 0 && t["missing_members"].as_array().unwrap().is_empty()));
    let by_team: u64 = teams.iter().map(|t| t["ordered"].as_u64().unwrap()).sum();
    let by_community: u64 =
        view["communities"].as_array().unwrap().iter().map(|c| c["reported"].as_u64().unwrap()).sum();
    assert_eq!((by_team, by_community), (n as u64, n as u64));

    // Every answer is in; the last progress frame follows at once. The bound only ends a
    // hung test (generous for a loaded 2-core run of the whole suite).
    let (ordered_frame, last, (progress_frames, changes), mut command_ws) =
        tokio::time::timeout(Duration::from_secs(60), reader)
            .await
            .expect("the command stream heard every report")
            .expect("reader");
    assert_eq!(changes.len(), 2 * n, "every acknowledgement and every report is listed once");
    assert!(progress_frames <= 2 * n, "at most one progress frame per engine batch: {progress_frames}");
    assert!(command_ws.quiet_for(QUIET).await, "the last progress frame was the last frame");
    assert_eq!(ordered_frame["data"]["mobilization_id"], id.as_str());
    assert_eq!(ordered_frame["data"]["progress"]["ordered"], n);
    assert_eq!(
        last["data"]["progress"],
        json!({"ordered": n, "acknowledged": n, "reported": n, "missing": 0}),
        "{last}"
    );

    // Closing tells every member.
    let resp = app.post(&app.command(), &format!("/v1/mobilizations/{id}/close"), json!({"reason": "完成"})).await;
    let view = json_of(resp, 200).await;
    assert_eq!(view["status"], "closed");
    assert_eq!(view["closed_reason"], "完成");
    for (m, ws) in sockets.iter_mut().take(50) {
        let f = ws.expect("mobilization.closed").await;
        assert_eq!(f["data"]["mobilization_id"], id.as_str(), "{m}");
    }
    let open = json_of(app.get(&app.command(), "/v1/mobilizations?status=open").await, 200).await;
    assert_eq!(open, json!([]));
    eprintln!(
        "mobilization of {n}: connected in {connected:?}, all answered at {answered:?}, done in {:?}",
        started.elapsed()
    );
    drop(sockets);
    app.stop().await;
}

// ---------------------------------------------------------------------------------------
// Reconnects during a mobilization
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_member_reconnecting_during_a_mobilization_gets_the_order_until_reported() {
    let app = spawn_app().await;
    // An off-call assault member (no offers in their stream), and the team ordered.
    let assault: Vec<&str> =
        app.city.teams.iter().filter(|t| t.kind == TeamKind::Assault).map(|t| t.id.as_str()).collect();
    let m = app
        .city
        .members
        .iter()
        .find(|m| !m.on_call && m.team_id.as_deref().is_some_and(|t| assault.contains(&t)))
        .unwrap()
        .clone();
    let team = m.team_id.clone().unwrap();
    let token = app.member(&m.id);

    let mut ws = app.ws(&token, None).await;
    let resp = app.post(&app.command(), "/v1/mobilizations", json!({"teams": [team]})).await;
    let view = json_of(resp, 201).await;
    let id = view["id"].as_str().unwrap().to_string();
    let order = ws.expect("mobilization.order").await;
    let seq = order["seq"].as_u64().unwrap();
    assert_eq!(order["data"]["mobilization_id"], id.as_str());
    assert_eq!(order["data"]["team_id"], team.as_str());
    let r = ws.request("mobilization.ack", json!({"mobilization_id": id})).await;
    assert_eq!(r["type"], "ok", "{r}");
    let state = ws.expect("mobilization.state").await;
    assert_eq!(state["data"], json!({"mobilization_id": id, "state": "acknowledged"}));
    drop(ws);

    // Resuming after the order: only the member's own acknowledgement, not the order again.
    let mut ws = app.ws(&token, Some(seq)).await;
    assert_eq!(ws.next_frame().await, state);
    assert!(ws.quiet_for(QUIET).await, "the order was sent again after its seq");
    drop(ws);
    // A fresh connection: the order is still open (acknowledged, not reported), once,
    // followed by where the member stands on it.
    let mut ws = app.ws(&token, None).await;
    let again = ws.next_frame().await;
    assert_eq!(again, order, "the same frame, with its own seq");
    assert_eq!(ws.next_frame().await, state);
    assert!(ws.quiet_for(QUIET).await, "the order came once");
    let at = &order["data"]["report_to"]["location"];
    let r = ws.request("mobilization.report", json!({"mobilization_id": id, "lat": at["lat"], "lng": at["lng"]})).await;
    assert_eq!(r["type"], "ok", "{r}");
    drop(ws);
    // Reported: a fresh connection no longer gets it.
    let mut ws = app.ws(&token, None).await;
    assert!(ws.quiet_for(QUIET).await, "a reported order is not resent");
    // the acknowledgement and the report were counted
    let view = json_of(app.get(&app.command(), &format!("/v1/mobilizations/{id}")).await, 200).await;
    let slice = view["teams"].as_array().unwrap().iter().find(|t| t["id"] == team.as_str()).unwrap().clone();
    assert!(slice["missing_members"].as_array().unwrap().iter().all(|x| x["member_id"] != m.id.as_str()));
    assert_eq!(view["reported"], 1, "{view}");
    app.stop().await;
}

#[tokio::test]
async fn a_repeated_acknowledgement_or_report_over_the_websocket_changes_nothing() {
    let app = spawn_app().await;
    let d = district_of(&app, "c001").await;
    let team = assault_teams_in(&app.city, &d).remove(0);
    let m = app.city.members.iter().find(|m| m.team_id.as_deref() == Some(&team)).unwrap().id.clone();
    let mut city_ws = app.ws(&app.command(), None).await;
    let mut ws = app.ws(&app.member(&m), None).await;
    let view = json_of(app.post(&app.command(), "/v1/mobilizations", json!({"teams": [team]})).await, 201).await;
    let id = view["id"].as_str().unwrap().to_string();
    let order = ws.expect("mobilization.order").await;
    for _ in 0..2 {
        let r = ws.request("mobilization.ack", json!({"mobilization_id": id})).await;
        assert_eq!(r["type"], "ok", "{r}");
    }
    city_ws.expect("mobilization.progress").await;
    assert!(city_ws.quiet_for(QUIET).await, "a repeated acknowledgement is not progress");
    // far from where they report: refused with the distance
    let r = ws.request("mobilization.report", json!({"mobilization_id": id, "lat": 31.5, "lng": 115.5})).await;
    assert_eq!(r["type"], "error", "{r}");
    assert_eq!(r["data"]["code"], "outside_geofence", "{r}");
    let at = &order["data"]["report_to"]["location"];
    for _ in 0..2 {
        let r =
            ws.request("mobilization.report", json!({"mobilization_id": id, "lat": at["lat"], "lng": at["lng"]})).await;
        assert_eq!(r["type"], "ok", "{r}");
    }
    let f = city_ws.expect("mobilization.progress").await;
    let changes = f["data"]["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 1, "{f}");
    assert_eq!((&changes[0]["member_id"], &changes[0]["team_id"]), (&json!(m), &json!(team)), "{f}");
    assert_eq!(changes[0]["state"], "reported", "{f}");
    assert!(city_ws.quiet_for(QUIET).await, "a repeated report is not progress");
    let view = json_of(app.get(&app.command(), &format!("/v1/mobilizations/{id}")).await, 200).await;
    assert_eq!((view["acknowledged"].clone(), view["reported"].clone()), (json!(1), json!(1)), "{view}");
    app.stop().await;
}

// ---------------------------------------------------------------------------------------
// Bad input
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn switching_to_the_mode_already_in_is_409_and_changes_nothing() {
    let app = spawn_app().await;
    let d = district_of(&app, "c001").await;
    let before = modes(&app).await;
    let resp = put(&app, &app.command(), &format!("/v1/districts/{d}/mode"), mode_body("peacetime")).await;
    problem(resp, 409, "already_in_mode").await;
    let resp = put(&app, &app.command(), "/v1/city/mode", mode_body("peacetime")).await;
    problem(resp, 409, "already_in_mode").await;
    assert_eq!(modes(&app).await, before);

    let during = district_to_wartime(&app, &d).await;
    assert_eq!(modes(&app).await, during);
    let resp =
        put(&app, &app.token(Role::Command, Some(&d)), &format!("/v1/districts/{d}/mode"), mode_body("wartime")).await;
    problem(resp, 409, "already_in_mode").await;
    assert_eq!(modes(&app).await, during);
    // a mode that is not one, and a missing reason
    let resp = put(&app, &app.command(), "/v1/city/mode", json!({"mode": "martial", "reason": "x"})).await;
    let body = problem(resp, 422, "invalid_body").await;
    assert!(body["detail"].as_str().unwrap().contains("martial"), "{body}");
    let resp = put(&app, &app.command(), "/v1/city/mode", json!({"mode": "wartime", "reason": ""})).await;
    problem(resp, 422, "reason_required").await;
    assert_eq!(modes(&app).await, during);
    app.stop().await;
}

#[tokio::test]
async fn mobilizing_unknown_teams_is_422_and_orders_nobody() {
    let app = spawn_app().await;
    let team = app.city.teams.iter().find(|t| t.kind == TeamKind::Assault).unwrap().id.clone();
    let resp = app.post(&app.command(), "/v1/mobilizations", json!({"teams": [team, "t9999"]})).await;
    let body = problem(resp, 422, "unknown_team").await;
    assert!(body["detail"].as_str().unwrap().contains("t9999"), "{body}");
    let resp = app.post(&app.command(), "/v1/mobilizations", json!({"teams": [team], "all_assault": true})).await;
    problem(resp, 422, "one_selector").await;
    let resp = app.post(&app.command(), "/v1/mobilizations", json!({})).await;
    problem(resp, 422, "one_selector").await;
    assert!(mobilizations(&app).await.is_empty());
    app.stop().await;
}

#[tokio::test]
async fn whistling_a_closed_incident_is_409() {
    let app = spawn_app().await;
    let staff = app.staff("c001");
    let inc =
        app.raise(&staff, json!({"grid_id": "c001-g1", "category": "patrol", "level": "IV", "headcount": 1})).await;
    let id = inc["id"].as_str().unwrap();
    let resolved = json_of(app.post(&staff, &format!("/v1/incidents/{id}/resolve"), json!({})).await, 200).await;
    assert_eq!(resolved["status"], "resolved", "{resolved}");
    let before = app.incident(id).await;
    let resp = app.post(&staff, &format!("/v1/incidents/{id}/whistle"), json!({"to": "paired_units"})).await;
    problem(resp, 409, "incident_closed").await;
    let resp = app.post(&app.command(), &format!("/v1/incidents/{id}/whistle"), json!({"to": ["u001"]})).await;
    problem(resp, 409, "incident_closed").await;
    let after = app.incident(id).await;
    assert_eq!(after, before);
    assert_eq!(after["whistles"], json!([]));
    app.stop().await;
}

#[tokio::test]
async fn applying_a_stale_proposal_is_409_and_changes_nothing() {
    let app = spawn_app().await;
    let d = district_of(&app, "c001").await;
    district_to_wartime(&app, &d).await;
    // A big call in c001 at level IV (in wartime: the community only): a deficit.
    let inc = app
        .raise(
            &app.command(),
            json!({"grid_id": "c001-g1", "category": "emergency_rescue", "level": "IV", "headcount": 100}),
        )
        .await;
    let id = inc["id"].as_str().unwrap();
    let balance = json_of(app.get(&app.command(), "/v1/balance").await, 200).await;
    let row = balance["communities"].as_array().unwrap().iter().find(|c| c["community_id"] == "c001").unwrap().clone();
    assert!(row["balance"].as_i64().unwrap() < 0 && row["wartime"] == true, "{row}");
    let proposals = balance["proposals"].as_array().unwrap();
    let p = proposals
        .iter()
        .find(|p| p["to"] == "c001")
        .unwrap_or_else(|| panic!("a proposal for c001: {balance}"))
        .clone();
    let body = json!({"from": p["from"], "to": p["to"], "members": p["members"]});

    // The deficit is gone: the proposal no longer holds.
    let cancelled =
        json_of(app.post(&app.command(), &format!("/v1/incidents/{id}/cancel"), json!({})).await, 200).await;
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    let before = json_of(app.get(&app.command(), "/v1/balance").await, 200).await;
    let resp = app.post(&app.command(), "/v1/balance/apply", body.clone()).await;
    problem(resp, 409, "stale_proposal").await;
    // a member who is not there
    let resp = app
        .post(&app.command(), "/v1/balance/apply", json!({"from": p["from"], "to": "c001", "members": ["m99999"]}))
        .await;
    problem(resp, 409, "stale_proposal").await;
    let after = json_of(app.get(&app.command(), "/v1/balance").await, 200).await;
    assert_eq!(after, before, "a refused transfer changed the balance");
    let member = p["members"][0].as_str().unwrap();
    let rec = json_of(app.get(&app.command(), &format!("/v1/members/{member}")).await, 200).await;
    assert_ne!(rec["home_community_id"], "c001", "{rec}");
    app.stop().await;
}

#[tokio::test]
async fn mode_switches_and_mobilizations_outside_the_callers_scope_are_refused() {
    let app = spawn_app().await;
    let d = district_of(&app, "c001").await;
    let other = app.city.districts.iter().find(|x| x.id != d).unwrap().id.clone();
    let own = app.token(Role::Command, Some(&d));
    let staff = app.staff("c001");
    let before = modes(&app).await;

    problem(put(&app, &staff, &format!("/v1/districts/{d}/mode"), mode_body("wartime")).await, 403, "role_not_allowed")
        .await;
    problem(put(&app, &staff, "/v1/city/mode", mode_body("wartime")).await, 403, "role_not_allowed").await;
    let resp = put(&app, &app.member("m00001"), &format!("/v1/districts/{d}/mode"), mode_body("wartime")).await;
    problem(resp, 403, "role_not_allowed").await;
    let resp = put(&app, &own, &format!("/v1/districts/{other}/mode"), mode_body("wartime")).await;
    problem(resp, 404, "unknown_district").await;
    let resp = put(&app, &own, "/v1/city/mode", mode_body("wartime")).await;
    problem(resp, 403, "city_command_only").await;
    assert_eq!(modes(&app).await, before);

    let theirs = assault_teams_in(&app.city, &other);
    let mine = assault_teams_in(&app.city, &d);
    // another district's teams and the district itself are unknown to this command, as an
    // id that does not exist is
    let resp = app.post(&own, "/v1/mobilizations", json!({"teams": [theirs[0]]})).await;
    let foreign = problem(resp, 422, "unknown_team").await;
    let resp = app.post(&own, "/v1/mobilizations", json!({"teams": ["t9999"]})).await;
    let unknown = problem(resp, 422, "unknown_team").await;
    assert_eq!(
        foreign["detail"].as_str().unwrap().replace(theirs[0].as_str(), "<id>"),
        unknown["detail"].as_str().unwrap().replace("t9999", "<id>")
    );
    // even to a community of its own
    let resp = app.post(&own, "/v1/mobilizations", json!({"teams": [theirs[0]], "community_id": app.city.communities.iter().find(|c| app.city.streets.iter().any(|s| s.id == c.street_id && s.district_id == d)).unwrap().id})).await;
    problem(resp, 422, "unknown_team").await;
    let resp = app.post(&own, "/v1/mobilizations", json!({"district_id": other})).await;
    problem(resp, 422, "unknown_district").await;
    let resp = app.post(&staff, "/v1/mobilizations", json!({"teams": [mine[0]]})).await;
    problem(resp, 403, "role_not_allowed").await;
    assert!(mobilizations(&app).await.is_empty());
    // within scope it is accepted
    let view = json_of(app.post(&own, "/v1/mobilizations", json!({"teams": [mine[0]]})).await, 201).await;
    assert_eq!(view["ordered_by"], format!("command:{d}"));
    app.stop().await;
}

// ---------------------------------------------------------------------------------------
// Whistles
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn whistled_units_that_do_not_report_by_the_deadline_are_overdue() {
    let app = spawn_app_with(&[("MUSTER_DISPATCH__MOBILIZATION__WHISTLE_DEADLINE_S", "1")]).await;
    let staff = app.staff("c001");
    let mut staff_ws = app.ws(&staff, None).await;
    let inc =
        app.raise(&staff, json!({"grid_id": "c001-g1", "category": "patrol", "level": "IV", "headcount": 2})).await;
    let id = inc["id"].as_str().unwrap();
    // the units of the teams paired with c001
    let units: std::collections::BTreeSet<String> =
        app.city.teams.iter().filter(|t| t.community_id == "c001").map(|t| t.unit_id.clone()).collect();
    let resp = app.post(&staff, &format!("/v1/incidents/{id}/whistle"), json!({"to": "paired_units"})).await;
    let view = json_of(resp, 200).await;
    let whistled: std::collections::BTreeSet<String> = view["whistles"][0]["units"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["unit_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(whistled, units, "{view}");
    let f = staff_ws.expect("incident.units_whistled").await;
    assert_eq!(f["data"]["incident_id"], id);
    let f = staff_ws.expect("incident.whistle_overdue").await;
    let overdue: std::collections::BTreeSet<String> =
        f["data"]["units"].as_array().unwrap().iter().map(|u| u.as_str().unwrap().to_string()).collect();
    assert_eq!(overdue, units, "nobody answered: {f}");
    let inc = app.incident(id).await;
    assert_eq!(inc["whistles"][0]["overdue"], true, "{inc}");
    assert_eq!(inc["status"], "open");
    // an unknown unit is refused
    let resp = app.post(&staff, &format!("/v1/incidents/{id}/whistle"), json!({"to": ["u999"]})).await;
    problem(resp, 422, "unknown_unit").await;
    app.stop().await;
}
