//! Campaigns over HTTP (issue #19): command creates one, imports its sites and
//! requirements from CSV (all or nothing, every refused row answered), rosters it outside
//! the writer and reads the site × shift × role grid; staff read their community's sites
//! only; a foreign campaign answers like a missing one.

use reqwest::header::CONTENT_TYPE;
use serde_json::{Value, json};

use crate::helpers::*;

const HOUR: i64 = 3_600_000;

pub fn rfc(ms: i64) -> String {
    muster::domain::dispatcher::rfc3339(ms)
}

/// The district of a community of the test city.
pub fn district_of(app: &TestApp, community: &str) -> String {
    let c = app.city.communities.iter().find(|c| c.id == community).unwrap();
    app.city.streets.iter().find(|s| s.id == c.street_id).unwrap().district_id.clone()
}

/// A community of another district than `community`'s.
pub fn elsewhere(app: &TestApp, community: &str) -> (String, String) {
    let d = district_of(app, community);
    let c = app.city.communities.iter().find(|c| district_of(app, &c.id) != d).unwrap();
    (c.id.clone(), district_of(app, &c.id))
}

pub async fn send(
    app: &TestApp,
    method: reqwest::Method,
    token: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = app.http.request(method, app.url(path)).bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

pub async fn csv(app: &TestApp, token: &str, path: &str, content_type: &str, body: Vec<u8>) -> (u16, Value) {
    let resp = app
        .http
        .post(app.url(path))
        .bearer_auth(token)
        .header(CONTENT_TYPE, content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

/// Creates a campaign in `community`'s district starting now, with a shift `am` of 6 h
/// beginning `starts_in` ms from now (shared by every site).
pub async fn campaign(app: &TestApp, community: &str, starts_in: i64) -> (String, i64) {
    let now = muster::engine::now_ms();
    let start = now - HOUR;
    let body = json!({
        "name": "测试采样",
        "district_id": district_of(app, community),
        "start": rfc(start),
        "end": rfc(start + 72 * HOUR),
        "rules": {"max_hours_in_24h": 12.0, "min_rest_h": 8.0, "max_consecutive_days": 3, "max_distance_m": 20000.0},
    });
    let (s, v) = send(app, reqwest::Method::POST, &app.command(), "/v1/campaigns", Some(body)).await;
    assert_eq!(s, 201, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    let shift_start = now + starts_in;
    let (s, v) = send(
        app,
        reqwest::Method::PUT,
        &app.command(),
        &format!("/v1/campaigns/{id}/shifts/am"),
        Some(json!({"start": rfc(shift_start), "end": rfc(shift_start + 6 * HOUR)})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    (id, shift_start)
}

#[tokio::test]
async fn a_csv_import_is_all_or_nothing_and_answers_every_refused_row() {
    let app = spawn_app().await;
    let (id, _) = campaign(&app, "c001", 2 * HOUR).await;
    let path = format!("/v1/campaigns/{id}/import");
    let header = "site_id,site_name,lat,lng,grid_id,shift_id,role,headcount,skills\n";
    // UTF-8 with a BOM; lines 3 (unknown role), 4 (unknown grid) and 6 (unknown shift) refused.
    let bad = format!(
        "\u{feff}{header}s1,学校门口,,,c001-g1,am,queue_order,2,\n\
         s1,学校门口,,,c001-g1,am,juggler,1,\n\
         s2,Gate,,,c999-g9,,,,\n\
         s3,Park,,,c001-g2,am,registration,1,\n\
         s3,,,,,pm,registration,1,\n"
    );
    let (s, v) = csv(&app, &app.command(), &path, "text/csv", bad.into_bytes()).await;
    assert_eq!(s, 422, "{v}");
    assert_eq!(v["code"], "invalid_csv");
    let lines: Vec<(u64, &str)> = v["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["line"].as_u64().unwrap(), e["code"].as_str().unwrap()))
        .collect();
    assert_eq!(lines, vec![(3, "unknown_role"), (4, "unknown_grid"), (6, "unknown_shift")], "{v}");
    let (_, got) = send(&app, reqwest::Method::GET, &app.command(), &format!("/v1/campaigns/{id}"), None).await;
    assert_eq!(got["sites"], json!([]), "a refused file changes nothing: {got}");
    assert_eq!(got["cells"], json!([]));

    // GB18030, as a spreadsheet here saves it.
    let good = format!("{header}s1,学校门口,,,c001-g1,am,queue_order,2,\ns3,公园,,,c001-g2,am,registration,1,\n");
    let (bytes, _, _) = encoding_rs::GB18030.encode(&good);
    let (s, v) = csv(&app, &app.command(), &path, "text/csv; charset=gb18030", bytes.into_owned()).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v, json!({"sites": 2, "requirements": 2}));
    let (_, got) = send(&app, reqwest::Method::GET, &app.command(), &format!("/v1/campaigns/{id}"), None).await;
    let names: Vec<&str> = got["sites"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["学校门口", "公园"]);
    assert_eq!(got["sites"][0]["community_id"], "c001");
    assert_eq!(got["required"], 3);
    assert_eq!(got["gap"], 3);
}

#[tokio::test]
async fn a_roster_fills_what_it_can_and_names_the_shortfall_and_its_rule() {
    let app = spawn_app().await;
    let (id, _) = campaign(&app, "c001", 2 * HOUR).await;
    let cmd = app.command();
    let put = |site: &str, body: Value| {
        let path = format!("/v1/campaigns/{id}/sites/{site}");
        let app = &app;
        let cmd = cmd.clone();
        async move { send(app, reqwest::Method::PUT, &cmd, &path, Some(body)).await }
    };
    let (s, v) = put("s1", json!({"name": "School", "grid_id": "c001-g1"})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["community_id"], "c001");
    let req = |role: &str, n: u32| json!({"site_id": "s1", "shift_id": "am", "role": role, "headcount": n});
    let path = format!("/v1/campaigns/{id}/requirements");
    let (s, v) = send(&app, reqwest::Method::PUT, &cmd, &path, Some(req("queue_order", 2))).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!((v["required"].as_u64(), v["planned"].as_u64(), v["gap"].as_u64()), (Some(2), Some(0), Some(2)));
    // More than the pool holds: the roster says how many are missing and why.
    let (s, v) = send(&app, reqwest::Method::PUT, &cmd, &path, Some(req("registration", 500))).await;
    assert_eq!(s, 200, "{v}");

    let (s, r) = send(&app, reqwest::Method::POST, &cmd, &format!("/v1/campaigns/{id}/roster"), None).await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["version"], 1);
    assert_eq!(r["required"], 502);
    let filled = r["filled"].as_u64().unwrap();
    assert!((2..502).contains(&filled), "{r}");
    // Everyone in reach holds a slot of the shift: what is left is short, by overlap.
    let short = r["shortfall"].as_array().unwrap();
    let missing: u64 = short.iter().map(|x| x["missing"].as_u64().unwrap()).sum();
    assert_eq!(missing, 502 - filled, "{r}");
    assert!(short.iter().all(|x| x["binding"] == "overlap" && x["shift_id"] == "am"), "{r}");

    let (_, got) = send(&app, reqwest::Method::GET, &cmd, &format!("/v1/campaigns/{id}"), None).await;
    assert_eq!(got["roster_version"], 1);
    let cells = got["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 2);
    for cell in cells {
        let (planned, gap) = (cell["planned"].as_u64().unwrap(), cell["gap"].as_u64().unwrap());
        assert_eq!(planned + gap, cell["required"].as_u64().unwrap(), "{cell}");
        assert_eq!(cell["members"].as_array().unwrap().len() as u64, planned);
        assert_eq!(cell["binding"].is_null(), gap == 0, "{cell}");
    }
    assert_eq!(got["planned"].as_u64(), Some(filled));

    // Closing the site and re-rostering frees its people; closing the campaign ends writes.
    let (s, v) = send(&app, reqwest::Method::POST, &cmd, &format!("/v1/campaigns/{id}/sites/s1/close"), None).await;
    assert_eq!((s, v["closed"].as_bool()), (200, Some(true)), "{v}");
    let (s, r) =
        send(&app, reqwest::Method::POST, &cmd, &format!("/v1/campaigns/{id}/roster"), Some(json!({"seed": 7}))).await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(
        (r["version"].as_u64(), r["required"].as_u64(), r["filled"].as_u64()),
        (Some(2), Some(0), Some(0)),
        "{r}"
    );
    let (s, _) = send(&app, reqwest::Method::POST, &cmd, &format!("/v1/campaigns/{id}/close"), None).await;
    assert_eq!(s, 200);
    let (s, v) = send(&app, reqwest::Method::POST, &cmd, &format!("/v1/campaigns/{id}/roster"), None).await;
    assert_eq!((s, v["code"].as_str()), (409, Some("campaign_closed")), "{v}");
}

#[tokio::test]
async fn what_a_campaign_holds_now_is_a_409_bad_input_a_422_and_its_view_names_each_key_once() {
    let app = spawn_app().await;
    let (id, _) = campaign(&app, "c001", HOUR).await;
    let put = |path: String, body: Value| {
        let app = &app;
        async move { send(app, reqwest::Method::PUT, &app.command(), &path, Some(body)).await }
    };
    let req =
        |site: &str, shift: &str| json!({"site_id": site, "shift_id": shift, "role": "queue_order", "headcount": 1});
    // A site or shift the campaign does not hold (yet): 409, and fine once it does.
    let (s, v) = put(format!("/v1/campaigns/{id}/requirements"), req("s1", "am")).await;
    assert_eq!((s, v["code"].as_str()), (409, Some("unknown_site")), "{v}");
    let far = json!({"name": "Depot", "location": {"lat": 1.0, "lng": 1.0}});
    let (s, v) = put(format!("/v1/campaigns/{id}/sites/s1"), far).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = put(format!("/v1/campaigns/{id}/requirements"), req("s1", "pm")).await;
    assert_eq!((s, v["code"].as_str()), (409, Some("unknown_shift")), "{v}");
    let (s, v) = put(format!("/v1/campaigns/{id}/requirements"), req("s1", "am")).await;
    assert_eq!(s, 200, "{v}");
    // A headcount is JSON Schema's integer: 2.0 is 2, 2.5 is refused.
    let mut whole = req("s1", "am");
    whole["headcount"] = json!(2.0);
    let (s, v) = put(format!("/v1/campaigns/{id}/requirements"), whole.clone()).await;
    assert_eq!((s, v["required"].as_u64()), (200, Some(2)), "{v}");
    whole["headcount"] = json!(2.5);
    let (s, v) = put(format!("/v1/campaigns/{id}/requirements"), whole).await;
    assert_eq!((s, v["code"].as_str()), (422, Some("invalid_body")), "{v}");
    // A name is 1 to 200 characters as sent (the document's maxLength), not all blank.
    let long = format!("{} ", "a".repeat(200));
    for name in [long.as_str(), "   "] {
        let (s, v) =
            put(format!("/v1/campaigns/{id}/sites/s2"), json!({"name": name, "location": {"lat": 1.0, "lng": 1.0}}))
                .await;
        assert_eq!((s, v["code"].as_str()), (422, Some("invalid_site")), "{name:?}: {v}");
    }
    // A closed site wants nobody: its requirements are refused for what it is now.
    let (s, v) =
        send(&app, reqwest::Method::POST, &app.command(), &format!("/v1/campaigns/{id}/sites/s1/close"), None).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = put(format!("/v1/campaigns/{id}/requirements"), req("s1", "am")).await;
    assert_eq!((s, v["code"].as_str()), (409, Some("invalid_requirement")), "{v}");
    // The view's `sites` is the list; the summary's count is `site_count` (it was `sites`
    // too: one key twice in one object).
    let text = app
        .http
        .get(app.url(&format!("/v1/campaigns/{id}")))
        .bearer_auth(app.command())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(text.matches("\"sites\":").count(), 1, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!((v["site_count"].as_u64(), v["sites"].as_array().map(Vec::len)), (Some(1), Some(1)), "{v}");
    app.stop().await;
}

#[tokio::test]
async fn command_owns_its_campaigns_staff_see_their_sites_and_foreign_is_unknown() {
    let app = spawn_app().await;
    let (id, _) = campaign(&app, "c001", 2 * HOUR).await;
    let (other_c, other_d) = elsewhere(&app, "c001");
    let cmd = app.command();
    for (site, grid) in [("here", "c001-g1".to_string()), ("there", format!("{other_c}-g1"))] {
        let (s, v) = send(
            &app,
            reqwest::Method::PUT,
            &cmd,
            &format!("/v1/campaigns/{id}/sites/{site}"),
            Some(json!({"name": site, "grid_id": grid})),
        )
        .await;
        // The campaign is of c001's district: a site elsewhere is refused.
        if site == "there" {
            assert_eq!((s, v["code"].as_str()), (422, Some("invalid_site")), "{v}");
        } else {
            assert_eq!(s, 200, "{v}");
        }
    }
    let mine = app.token(muster::gateway::auth::Role::Command, Some(&district_of(&app, "c001")));
    let foreign = app.token(muster::gateway::auth::Role::Command, Some(&other_d));
    let (s, v) = send(&app, reqwest::Method::GET, &mine, &format!("/v1/campaigns/{id}"), None).await;
    assert_eq!((s, v["sites"].as_array().map(Vec::len)), (200, Some(1)), "{v}");
    // A foreign campaign and a missing one answer alike, for reads and writes.
    for (method, tail, body) in [
        (reqwest::Method::GET, "", None),
        (reqwest::Method::POST, "/roster", None),
        (reqwest::Method::POST, "/close", None),
        (reqwest::Method::PUT, "/sites/x", Some(json!({"name": "x", "grid_id": "c001-g1"}))),
    ] {
        let (s1, a) = send(&app, method.clone(), &foreign, &format!("/v1/campaigns/{id}{tail}"), body.clone()).await;
        let (_, mut b) = send(&app, method, &foreign, &format!("/v1/campaigns/cmp-999{tail}"), body).await;
        b["detail"] = json!(b["detail"].as_str().unwrap().replace("cmp-999", &id));
        assert_eq!((s1, &a), (404, &b), "{tail}");
        assert_eq!(a["code"], "unknown_campaign");
    }
    let (_, list) = send(&app, reqwest::Method::GET, &foreign, "/v1/campaigns", None).await;
    assert_eq!(list["campaigns"], json!([]));
    // Staff: their community's sites only; writes are command's.
    let (s, v) = send(&app, reqwest::Method::GET, &app.staff("c001"), &format!("/v1/campaigns/{id}"), None).await;
    assert_eq!((s, v["sites"][0]["id"].as_str()), (200, Some("here")), "{v}");
    let (s, _) = send(&app, reqwest::Method::GET, &app.staff(&other_c), &format!("/v1/campaigns/{id}"), None).await;
    assert_eq!(s, 404);
    let (_, list) = send(&app, reqwest::Method::GET, &app.staff(&other_c), "/v1/campaigns", None).await;
    assert_eq!(list["campaigns"], json!([]));
    let (s, v) =
        send(&app, reqwest::Method::POST, &app.staff("c001"), &format!("/v1/campaigns/{id}/close"), None).await;
    assert_eq!((s, v["code"].as_str()), (403, Some("role_not_allowed")));
    // A member reads their own shifts elsewhere (`/v1/campaigns/mine`), not the campaigns.
    let member = app.city.members[0].id.clone();
    let (s, _) = send(&app, reqwest::Method::GET, &app.member(&member), "/v1/campaigns", None).await;
    assert_eq!(s, 403);
}

#[tokio::test]
async fn a_rostered_member_sees_their_shift_acknowledges_and_checks_in_at_the_site_across_a_restart() {
    let mut app = spawn_app().await;
    let (id, _) = campaign(&app, "c001", HOUR).await;
    let cmd = app.command();
    let (s, _) = send(
        &app,
        reqwest::Method::PUT,
        &cmd,
        &format!("/v1/campaigns/{id}/sites/s1"),
        Some(json!({"name": "School", "grid_id": "c001-g1"})),
    )
    .await;
    assert_eq!(s, 200);
    let req = json!({"site_id": "s1", "shift_id": "am", "role": "queue_order", "headcount": 1});
    let (s, _) = send(&app, reqwest::Method::PUT, &cmd, &format!("/v1/campaigns/{id}/requirements"), Some(req)).await;
    assert_eq!(s, 200);
    let (s, r) = send(&app, reqwest::Method::POST, &cmd, &format!("/v1/campaigns/{id}/roster"), None).await;
    assert_eq!((s, r["filled"].as_u64()), (200, Some(1)), "{r}");
    let (_, got) = send(&app, reqwest::Method::GET, &cmd, &format!("/v1/campaigns/{id}"), None).await;
    let who = got["cells"][0]["members"][0].as_str().unwrap().to_string();
    let site = got["sites"][0]["location"].clone();
    let (lat, lng) = (site["lat"].as_f64().unwrap(), site["lng"].as_f64().unwrap());
    let other = app.city.members.iter().find(|m| m.id != who).unwrap().id.clone();
    let shift = |what: &str| format!("/v1/campaigns/{id}/shifts/am/{what}");

    // Someone not rostered sees nothing and answers as for a missing campaign.
    let (s, v) = send(&app, reqwest::Method::GET, &app.member(&other), "/v1/campaigns/mine", None).await;
    assert_eq!((s, &v), (200, &json!({"shifts": []})));
    let (s, v) = send(&app, reqwest::Method::POST, &app.member(&other), &shift("ack"), None).await;
    assert_eq!((s, v["code"].as_str()), (404, Some("unknown_campaign")), "{v}");
    let (s, v) = send(&app, reqwest::Method::POST, &cmd, &shift("ack"), None).await;
    assert_eq!((s, v["code"].as_str()), (403, Some("role_not_allowed")), "{v}");

    let me = app.member(&who);
    let (_, v) = send(&app, reqwest::Method::GET, &me, "/v1/campaigns/mine", None).await;
    let mine = v["shifts"].as_array().unwrap();
    assert_eq!(mine.len(), 1, "{v}");
    assert_eq!((mine[0]["campaign_id"].as_str(), mine[0]["site"]["id"].as_str()), (Some(id.as_str()), Some("s1")));
    assert!(mine[0]["distance_m"].as_f64().unwrap() >= 0.0);
    assert!(mine[0]["acknowledged_at"].is_null());
    let (s, v) = send(&app, reqwest::Method::POST, &me, &shift("ack"), None).await;
    assert_eq!(s, 200, "{v}");
    assert!(v["acknowledged_at"].is_string(), "{v}");
    // Geofenced like an arrival: 0.05° north is over 5 km away.
    let (s, v) =
        send(&app, reqwest::Method::POST, &me, &shift("checkin"), Some(json!({"lat": lat + 0.05, "lng": lng}))).await;
    assert_eq!((s, v["code"].as_str()), (422, Some("outside_geofence")), "{v}");
    let (s, v) =
        send(&app, reqwest::Method::POST, &me, &shift("checkout"), Some(json!({"lat": lat, "lng": lng}))).await;
    assert_eq!((s, v["code"].as_str()), (409, Some("not_checked_in")), "{v}");
    let (s, v) = send(&app, reqwest::Method::POST, &me, &shift("checkin"), Some(json!({"lat": lat, "lng": lng}))).await;
    assert_eq!(s, 200, "{v}");
    assert!(v["checkin_at"].is_string());
    let (s, v) = send(&app, reqwest::Method::POST, &me, &shift("checkin"), Some(json!({"lat": lat, "lng": lng}))).await;
    assert_eq!((s, v["code"].as_str()), (409, Some("already_checked_in")), "{v}");
    let (_, got) = send(&app, reqwest::Method::GET, &cmd, &format!("/v1/campaigns/{id}"), None).await;
    let cell = &got["cells"][0];
    assert_eq!(
        (cell["planned"].as_u64(), cell["acknowledged"].as_u64(), cell["present"].as_u64()),
        (Some(1), Some(1), Some(1))
    );

    // A restart keeps the roster and the answers, once each.
    app.restart(|_| {}).await;
    let cmd = app.command();
    let (_, after) = send(&app, reqwest::Method::GET, &cmd, &format!("/v1/campaigns/{id}"), None).await;
    assert_eq!(after, got);
    let me = app.member(&who);
    let (s, v) =
        send(&app, reqwest::Method::POST, &me, &shift("checkout"), Some(json!({"lat": lat, "lng": lng}))).await;
    assert_eq!(s, 200, "{v}");
    let (_, got) = send(&app, reqwest::Method::GET, &cmd, &format!("/v1/campaigns/{id}"), None).await;
    assert_eq!((got["cells"][0]["present"].as_u64(), got["cells"][0]["acknowledged"].as_u64()), (Some(0), Some(1)));
}

/// Issue 19: a member marks a time they cannot serve (`POST /v1/campaigns/{id}/unavailability`),
/// their own only; command names the member; a re-roster leaves them out of the shift.
#[tokio::test]
async fn a_member_marks_a_time_they_cannot_serve_and_the_roster_leaves_them_out() {
    let app = spawn_app().await;
    let (id, shift_start) = campaign(&app, "c001", 2 * HOUR).await;
    let cmd = app.command();
    let post = reqwest::Method::POST;
    let (s, v) = send(
        &app,
        reqwest::Method::PUT,
        &cmd,
        &format!("/v1/campaigns/{id}/sites/s1"),
        Some(json!({"name": "School", "grid_id": "c001-g1"})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let req = json!({"site_id": "s1", "shift_id": "am", "role": "queue_order", "headcount": 1});
    let (s, v) = send(&app, reqwest::Method::PUT, &cmd, &format!("/v1/campaigns/{id}/requirements"), Some(req)).await;
    assert_eq!(s, 200, "{v}");
    let roster = format!("/v1/campaigns/{id}/roster");
    let (s, r) = send(&app, post.clone(), &cmd, &roster, Some(json!({"iterations": 1000}))).await;
    assert_eq!((s, r["filled"].as_u64()), (200, Some(1)), "{r}");
    let (_, got) = send(&app, reqwest::Method::GET, &cmd, &format!("/v1/campaigns/{id}"), None).await;
    let x = got["cells"][0]["members"][0].as_str().unwrap().to_string();
    // The districts a member belongs to: where they live, where their team serves.
    let districts = |m: &muster::domain::org::Member| -> Vec<String> {
        let home = app.city.communities.iter().find(|c| c.grids.iter().any(|g| g.id == m.residence_grid_id));
        let team = m.team_id.as_ref().and_then(|t| app.city.teams.iter().find(|x| &x.id == t));
        home.map(|c| c.id.clone())
            .into_iter()
            .chain(team.map(|t| t.community_id.clone()))
            .map(|c| district_of(&app, &c))
            .collect()
    };
    let d = district_of(&app, "c001");
    let y = app.city.members.iter().find(|m| m.id != x && districts(m).contains(&d)).unwrap().id.clone();
    // one of the campaign's people only: z belongs to another district altogether
    let z = app.city.members.iter().find(|m| !districts(m).contains(&d)).unwrap().id.clone();

    let path = format!("/v1/campaigns/{id}/unavailability");
    let span = json!({"start": rfc(shift_start - HOUR), "end": rfc(shift_start + HOUR)});
    // Their own time (no member_id: the caller).
    let (s, v) = send(&app, post.clone(), &app.member(&x), &path, Some(span.clone())).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!((v["campaign_id"].as_str(), v["member_id"].as_str()), (Some(id.as_str()), Some(x.as_str())), "{v}");
    assert_eq!(v["start"], span["start"]);
    // Not another's; command names whom; staff may not.
    let theirs = json!({"start": span["start"], "end": span["end"], "member_id": y});
    let (s, v) = send(&app, post.clone(), &app.member(&x), &path, Some(theirs.clone())).await;
    assert_eq!((s, v["code"].as_str()), (403, Some("outside_scope")), "{v}");
    let (s, v) = send(&app, post.clone(), &cmd, &path, Some(span.clone())).await;
    assert_eq!((s, v["code"].as_str()), (422, Some("invalid_body")), "{v}");
    let (s, v) = send(&app, post.clone(), &app.staff("c001"), &path, Some(theirs.clone())).await;
    assert_eq!((s, v["code"].as_str()), (403, Some("role_not_allowed")), "{v}");
    // Another district's command: the campaign is unknown to it, like a missing one.
    let (_, other_d) = elsewhere(&app, "c001");
    let foreign = app.token(muster::gateway::auth::Role::Command, Some(&other_d));
    let (s, v) = send(&app, post.clone(), &foreign, &path, Some(theirs.clone())).await;
    assert_eq!((s, v["code"].as_str()), (404, Some("unknown_campaign")), "{v}");
    let (s, v) = send(&app, post.clone(), &cmd, &path, Some(theirs)).await;
    assert_eq!((s, v["member_id"].as_str()), (201, Some(y.as_str())), "{v}");
    // A member of another district: the campaign is unknown to them, like a missing one;
    // and command cannot name them (unknown, like a member not in the city).
    let (s, v) = send(&app, post.clone(), &app.member(&z), &path, Some(span.clone())).await;
    assert_eq!((s, v["code"].as_str()), (404, Some("unknown_campaign")), "{v}");
    let zs = json!({"start": span["start"], "end": span["end"], "member_id": z});
    let (s, v) = send(&app, post.clone(), &cmd, &path, Some(zs)).await;
    assert_eq!((s, v["code"].as_str()), (422, Some("unknown_member")), "{v}");
    let nobody = json!({"start": span["start"], "end": span["end"], "member_id": "m-nobody"});
    let (s, v) = send(&app, post.clone(), &cmd, &path, Some(nobody)).await;
    assert_eq!((s, v["code"].as_str()), (422, Some("unknown_member")), "{v}");
    // The same mark again adds nothing and is answered as done.
    let (s, _) = send(&app, post.clone(), &app.member(&x), &path, Some(span.clone())).await;
    assert_eq!(s, 201);
    // A time that ends before it starts, a campaign that is not there.
    let backwards = json!({"start": span["end"], "end": span["start"]});
    let (s, v) = send(&app, post.clone(), &app.member(&x), &path, Some(backwards)).await;
    assert_eq!((s, v["code"].as_str()), (422, Some("bad_window")), "{v}");
    let (s, v) =
        send(&app, post.clone(), &app.member(&x), "/v1/campaigns/cmp-404/unavailability", Some(span.clone())).await;
    assert_eq!((s, v["code"].as_str()), (404, Some("unknown_campaign")), "{v}");

    // Re-rostered, the shift goes to someone who can serve.
    let (s, r) = send(&app, post.clone(), &cmd, &roster, Some(json!({"iterations": 1000}))).await;
    assert_eq!((s, r["filled"].as_u64()), (200, Some(1)), "{r}");
    let (_, got) = send(&app, reqwest::Method::GET, &cmd, &format!("/v1/campaigns/{id}"), None).await;
    let now = got["cells"][0]["members"][0].as_str().unwrap();
    assert!(now != x && now != y, "{got}");

    let (s, _) = send(&app, post.clone(), &cmd, &format!("/v1/campaigns/{id}/close"), None).await;
    assert_eq!(s, 200);
    let (s, v) = send(&app, post, &app.member(&x), &path, Some(span)).await;
    assert_eq!((s, v["code"].as_str()), (409, Some("campaign_closed")), "{v}");
}
