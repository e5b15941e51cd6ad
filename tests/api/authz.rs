//! Who may do what, through the real server: roles (403), scope (404, exactly like an
//! unknown id), tokens (401 over HTTP and at the websocket handshake), token expiry on an
//! open socket (1008), and the Origin check of the websocket upgrade.

use std::time::Duration;

use muster::gateway::auth::{Claims, Role, TokenKeys};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use crate::helpers::*;

fn now_s() -> u64 {
    muster::engine::now_ms() as u64 / 1000
}

/// Asserts a problem+json answer with this status (and code, when given); returns its body.
async fn problem(resp: reqwest::Response, status: u16, code: Option<&str>) -> Value {
    let got = resp.status().as_u16();
    let ct = resp.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    let www = resp.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_string());
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    assert_eq!(got, status, "{body}");
    assert_eq!(ct, "application/problem+json", "{body}");
    assert_eq!(body["status"], status, "{body}");
    assert!(body["detail"].as_str().is_some_and(|d| !d.is_empty()), "{body}");
    assert!(body["title"].as_str().is_some_and(|d| !d.is_empty()), "{body}");
    assert!(body["type"].as_str().is_some_and(|t| t.starts_with("/problems/")), "{body}");
    if let Some(code) = code {
        assert_eq!(body["code"], code, "{body}");
    }
    if status == 401 {
        assert_eq!(www.as_deref(), Some("Bearer"), "a 401 names the Bearer scheme");
    }
    body
}

fn raise_body(grid: &str) -> Value {
    json!({"grid_id": grid, "category": "patrol", "level": "III", "headcount": 2})
}

async fn list_all(app: &TestApp) -> Vec<Value> {
    let resp = app.get(&app.command(), "/v1/incidents").await;
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

/// (district of c001, a community in another district, that other district)
async fn districts(app: &TestApp) -> (String, String, String) {
    let list: Vec<Value> = app.get(&app.command(), "/v1/communities").await.json().await.unwrap();
    let c001 = list.iter().find(|c| c["id"] == "c001").expect("c001 is listed");
    let d = c001["district_id"].as_str().unwrap().to_string();
    let other = list.iter().find(|c| c["district_id"] != d.as_str()).expect("a community in another district");
    (d, other["id"].as_str().unwrap().to_string(), other["district_id"].as_str().unwrap().to_string())
}

/// Base64url without padding, enough to forge an unsigned token.
fn b64url(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..chunk.len() + 1 {
            out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

#[test]
fn b64url_matches_known_vectors() {
    assert_eq!(b64url(b""), "");
    assert_eq!(b64url(b"f"), "Zg");
    assert_eq!(b64url(b"fo"), "Zm8");
    assert_eq!(b64url(b"foo"), "Zm9v");
    assert_eq!(b64url(b"foob"), "Zm9vYg");
    assert_eq!(b64url(&[0xfb, 0xff]), "-_8");
}

/// Tokens the server must refuse, each with a name for the failure message.
fn bad_tokens() -> Vec<(&'static str, String)> {
    let now = now_s();
    let staff = Claims::new(Role::Staff, Some("c001".into()), now, 3600).unwrap();
    let secret = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes());
    let hs = |alg: jsonwebtoken::Algorithm, claims: &Value| {
        jsonwebtoken::encode(&jsonwebtoken::Header::new(alg), claims, &secret).unwrap()
    };
    let staff_json = serde_json::to_value(&staff).unwrap();
    vec![
        ("garbage", "not-a-jwt".to_string()),
        ("three garbage parts", "a.b.c".to_string()),
        ("wrong secret", TokenKeys::new("another-secret-0123456789").sign(&staff)),
        (
            "expired",
            TokenKeys::new(SECRET).sign(&Claims::new(Role::Staff, Some("c001".into()), now - 100, 10).unwrap()),
        ),
        (
            "alg none",
            format!(
                "{}.{}.",
                b64url(br#"{"alg":"none","typ":"JWT"}"#),
                b64url(serde_json::to_string(&staff).unwrap().as_bytes())
            ),
        ),
        ("HS512 with the right secret", hs(jsonwebtoken::Algorithm::HS512, &staff_json)),
        (
            "no exp",
            hs(
                jsonwebtoken::Algorithm::HS256,
                &json!({"sub": "staff:c001", "role": "staff", "community": "c001", "iat": now}),
            ),
        ),
        (
            "staff without a community",
            hs(
                jsonwebtoken::Algorithm::HS256,
                &json!({"sub": "staff:", "role": "staff", "iat": now, "exp": now + 3600}),
            ),
        ),
        (
            "unknown role",
            hs(jsonwebtoken::Algorithm::HS256, &json!({"sub": "root", "role": "root", "iat": now, "exp": now + 3600})),
        ),
    ]
}

/// Tries a websocket handshake; returns the HTTP status of a refusal (101 when it connects).
async fn handshake_status(request: tungstenite::handshake::client::Request) -> (u16, Option<String>) {
    match tokio_tungstenite::connect_async(request).await {
        Ok((mut socket, resp)) => {
            use futures_util::StreamExt;
            assert_eq!(resp.status().as_u16(), 101);
            let first = tokio::time::timeout(WAIT, socket.next()).await.expect("hello arrives").unwrap().unwrap();
            let hello: Value = serde_json::from_str(first.to_text().unwrap()).unwrap();
            assert_eq!(hello["type"], "hello", "{hello}");
            (101, None)
        }
        Err(tungstenite::Error::Http(resp)) => {
            let ct = resp.headers().get("content-type").map(|v| v.to_str().unwrap().to_string());
            (resp.status().as_u16(), ct)
        }
        Err(e) => panic!("the handshake failed without an HTTP answer: {e}"),
    }
}

fn ws_request(addr: &str, query: &str) -> tungstenite::handshake::client::Request {
    format!("ws://{addr}/v1/ws{query}").into_client_request().unwrap()
}

// ---------------------------------------------------------------- roles and scope (HTTP)

#[tokio::test]
async fn staff_cannot_raise_in_another_community() {
    let app = spawn_app().await;
    let resp = app.post(&app.staff("c002"), "/v1/incidents", raise_body("c001-g1")).await;
    problem(resp, 403, Some("outside_scope")).await;
    // nor by location inside c001
    let p = app.city.communities.iter().find(|c| c.id == "c001").unwrap().grids[0].cells[0].center();
    let body = json!({"location": {"lat": p.lat, "lng": p.lng}, "category": "patrol", "level": "III", "headcount": 1});
    let resp = app.post(&app.staff("c002"), "/v1/incidents", body).await;
    problem(resp, 403, Some("outside_scope")).await;
    assert!(list_all(&app).await.is_empty(), "nothing was created");
    app.stop().await;
}

#[tokio::test]
async fn an_incident_outside_the_staffs_community_answers_exactly_like_an_unknown_one() {
    let app = spawn_app().await;
    let inc = app.raise(&app.staff("c001"), raise_body("c001-g1")).await;
    let id = inc["id"].as_str().unwrap().to_string();
    let before = app.incident(&id).await;
    let other = app.staff("c002");

    let unknown = "inc-999999";
    for (method, suffix) in
        [("GET", ""), ("GET", "/timeline"), ("POST", "/escalate"), ("POST", "/resolve"), ("POST", "/cancel")]
    {
        let call = |target: String| {
            let url = app.url(&format!("/v1/incidents/{target}{suffix}"));
            let req = if method == "GET" {
                app.http.get(url)
            } else {
                app.http.post(url).header("content-type", "application/json").body("{}")
            };
            req.bearer_auth(&other).send()
        };
        let hidden = problem(call(id.clone()).await.unwrap(), 404, Some("unknown_incident")).await;
        let missing = problem(call(unknown.to_string()).await.unwrap(), 404, Some("unknown_incident")).await;
        assert_eq!(hidden["title"], missing["title"], "{method} {suffix}");
        assert_eq!(hidden["type"], missing["type"], "{method} {suffix}");
        assert_eq!(
            hidden["detail"].as_str().unwrap().replace(&id, "ID"),
            missing["detail"].as_str().unwrap().replace(unknown, "ID"),
            "{method} {suffix}: the details differ only by the id"
        );
    }
    // Nor does the incident show up in the other staff's list.
    let list: Vec<Value> = app.get(&other, "/v1/incidents").await.json().await.unwrap();
    assert!(list.is_empty(), "{list:?}");

    // Nothing changed: still open, same level, no new event.
    let after = app.incident(&id).await;
    assert_eq!(after["status"], "open");
    assert_eq!(after["level"], before["level"]);
    let tl: Vec<Value> = app.get(&app.command(), &format!("/v1/incidents/{id}/timeline")).await.json().await.unwrap();
    assert!(tl.iter().all(|e| e["actor"] != "staff:c002"), "{tl:?}");
    assert!(!tl.iter().any(|e| e["type"] == "incident_escalated" || e["type"] == "incident_resolved"));
    app.stop().await;
}

#[tokio::test]
async fn district_command_sees_only_its_district_and_city_command_sees_all() {
    let app = spawn_app().await;
    let (d, other_community, other_d) = districts(&app).await;
    let inc = app.raise(&app.staff("c001"), raise_body("c001-g1")).await;
    let id = inc["id"].as_str().unwrap().to_string();
    assert_eq!(inc["district_id"], d.as_str());

    let mine = app.token(Role::Command, Some(&d));
    let resp = app.get(&mine, &format!("/v1/incidents/{id}")).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap()["id"], id.as_str());
    let list: Vec<Value> = app.get(&mine, "/v1/incidents").await.json().await.unwrap();
    assert_eq!(list.len(), 1);

    let theirs = app.token(Role::Command, Some(&other_d));
    problem(app.get(&theirs, &format!("/v1/incidents/{id}")).await, 404, Some("unknown_incident")).await;
    problem(app.get(&theirs, &format!("/v1/incidents/{id}/timeline")).await, 404, Some("unknown_incident")).await;
    let resp = app.post(&theirs, &format!("/v1/incidents/{id}/resolve"), json!({})).await;
    problem(resp, 404, Some("unknown_incident")).await;
    let list: Vec<Value> = app.get(&theirs, "/v1/incidents").await.json().await.unwrap();
    assert!(list.is_empty());
    // A district command cannot raise outside its district either.
    let resp = app.post(&theirs, "/v1/incidents", raise_body("c001-g1")).await;
    problem(resp, 403, Some("outside_scope")).await;
    // ...but can inside it.
    let other_grid = format!("{other_community}-g1");
    app.raise(&theirs, raise_body(&other_grid)).await;

    let city = app.command();
    assert_eq!(app.get(&city, &format!("/v1/incidents/{id}")).await.status(), 200);
    assert_eq!(list_all(&app).await.len(), 2);
    assert_eq!(app.incident(&id).await["status"], "open", "the refused resolve changed nothing");
    app.stop().await;
}

#[tokio::test]
async fn members_and_unit_admins_may_not_raise_list_or_import_and_only_city_command_imports() {
    let app = spawn_app().await;
    let m = app.city.members[0].clone();
    let tokens = [("member", app.member(&m.id)), ("unit_admin", app.token(Role::UnitAdmin, Some(&m.unit_id)))];
    for (who, t) in &tokens {
        let resp = app.post(t, "/v1/incidents", raise_body("c001-g1")).await;
        let p = problem(resp, 403, Some("role_not_allowed")).await;
        assert!(p["detail"].as_str().unwrap().contains("raising"), "{who}: {p}");
        problem(app.get(t, "/v1/incidents").await, 403, Some("role_not_allowed")).await;
        problem(app.get(t, "/v1/incidents/inc-000001").await, 403, Some("role_not_allowed")).await;
        problem(app.put_city(t, &app.city).await, 403, Some("role_not_allowed")).await;
    }
    problem(app.put_city(&app.staff("c001"), &app.city).await, 403, Some("role_not_allowed")).await;
    let (d, _, _) = districts(&app).await;
    let resp = app.put_city(&app.token(Role::Command, Some(&d)), &app.city).await;
    problem(resp, 403, Some("city_command_only")).await;
    assert!(list_all(&app).await.is_empty(), "nothing was created");

    // Importing again is refused while an incident is open, then works once none is.
    let inc = app.raise(&app.staff("c001"), raise_body("c001-g1")).await;
    problem(app.put_city(&app.command(), &app.city).await, 409, Some("open_incidents")).await;
    let id = inc["id"].as_str().unwrap();
    assert_eq!(app.post(&app.command(), &format!("/v1/incidents/{id}/cancel"), json!({})).await.status(), 200);
    assert_eq!(app.put_city(&app.command(), &app.city).await.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn a_member_record_is_visible_only_to_those_responsible_for_the_member() {
    let app = spawn_app().await;
    let m = app.city.members[0].clone();
    let other_member = app.city.members[1].id.clone();
    let other_unit = app.city.units.iter().find(|u| u.id != m.unit_id).unwrap().id.clone();
    let residence =
        app.city.communities.iter().find(|c| c.grids.iter().any(|g| g.id == m.residence_grid_id)).unwrap().id.clone();
    assert_eq!(residence, "c001");
    let (d, _, other_d) = districts(&app).await;
    let path = format!("/v1/members/{}", m.id);

    let allowed = [
        ("the member", app.member(&m.id)),
        ("their unit_admin", app.token(Role::UnitAdmin, Some(&m.unit_id))),
        ("staff of their residence", app.staff(&residence)),
        ("their district command", app.token(Role::Command, Some(&d))),
        ("city command", app.command()),
    ];
    for (who, t) in &allowed {
        let resp = app.get(t, &path).await;
        assert_eq!(resp.status(), 200, "{who}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["id"], m.id.as_str(), "{who}");
        assert_eq!(body["residence_community_id"], "c001");
    }

    let unknown = problem(app.get(&app.command(), "/v1/members/m99999").await, 404, Some("unknown_member")).await;
    let refused = [
        ("another member", app.member(&other_member)),
        ("another unit's admin", app.token(Role::UnitAdmin, Some(&other_unit))),
        ("staff of another community", app.staff("c002")),
        ("another district's command", app.token(Role::Command, Some(&other_d))),
    ];
    for (who, t) in &refused {
        let p = problem(app.get(t, &path).await, 404, Some("unknown_member")).await;
        assert_eq!(p["title"], unknown["title"], "{who}");
        assert_eq!(
            p["detail"].as_str().unwrap().replace(&m.id, "ID"),
            unknown["detail"].as_str().unwrap().replace("m99999", "ID"),
            "{who}"
        );
    }
    // An unknown id answers 404 to everyone, including the member asking for another id.
    problem(app.get(&app.member(&m.id), "/v1/members/m99999").await, 404, Some("unknown_member")).await;
    app.stop().await;
}

// ---------------------------------------------------------------- websocket streams

#[tokio::test]
async fn a_member_receives_only_their_own_offers_and_cannot_answer_anothers() {
    let app = spawn_app().await;
    let mut sockets = Vec::new();
    for m in app.city.members.iter().filter(|m| m.on_call) {
        let ws = app.ws(&app.member(&m.id), None).await;
        assert_eq!(ws.hello["data"]["member_id"], m.id.as_str());
        sockets.push((m.id.clone(), ws));
    }
    assert_eq!(sockets.len(), 20);
    let inc = app.raise(&app.staff("c001"), raise_body("c001-g1")).await;
    let id = inc["id"].as_str().unwrap().to_string();
    let offered = app.offered(&id, "offered").await;
    assert_eq!(offered.len(), 3, "headcount 2 × overbook 1.5");

    // The raise has answered 201, so its frames are published: `quiet_for`'s probes find
    // any frame a socket was sent, however slowly it travels.
    for (member, ws) in sockets.iter_mut() {
        match offered.iter().find(|(m, _)| m == member) {
            Some((_, offer_id)) => {
                let f = ws.next_frame().await;
                assert_eq!(f["type"], "offer", "{member}: {f}");
                assert_eq!(f["data"]["offer_id"], offer_id.as_str(), "{member}");
                assert_eq!(f["data"]["incident_id"], id.as_str());
                assert!(ws.quiet_for(Duration::from_millis(10)).await, "{member} got a second frame");
            }
            None => assert!(ws.quiet_for(Duration::from_millis(10)).await, "{member} got a frame"),
        }
    }

    // A accepts B's offer: unknown_offer, exactly like an offer that does not exist.
    let (a, a_offer) = offered[0].clone();
    let (_, b_offer) = offered[1].clone();
    let before: Vec<Value> =
        app.get(&app.command(), &format!("/v1/incidents/{id}/timeline")).await.json().await.unwrap();
    let ia = sockets.iter().position(|(m, _)| *m == a).unwrap();
    for verb in ["accept", "decline"] {
        let r = sockets[ia].1.request(verb, json!({"offer_id": b_offer})).await;
        assert_eq!(r["type"], "error", "{r}");
        assert_eq!(r["data"]["code"], "unknown_offer", "{r}");
        let r2 = sockets[ia].1.request(verb, json!({"offer_id": "off-999999"})).await;
        assert_eq!(r2["data"]["code"], "unknown_offer", "{r2}");
    }
    let r = sockets[ia].1.request("arrive", json!({"offer_id": b_offer, "lat": 30.5, "lng": 114.3})).await;
    assert_eq!(r["data"]["code"], "unknown_offer", "{r}");

    // Nothing changed: both offers are still open, no event was written.
    let now = app.offered(&id, "offered").await;
    assert!(now.iter().any(|(_, o)| *o == b_offer) && now.iter().any(|(_, o)| *o == a_offer), "{now:?}");
    let inc = app.incident(&id).await;
    assert_eq!(inc["accepted"], 0);
    assert_eq!(inc["status"], "open");
    let after: Vec<Value> =
        app.get(&app.command(), &format!("/v1/incidents/{id}/timeline")).await.json().await.unwrap();
    assert_eq!(before.len(), after.len());
    // Every refusal was answered: anything they published is found by the probes.
    for (member, ws) in sockets.iter_mut() {
        assert!(ws.quiet_for(Duration::from_millis(10)).await, "{member} got a frame after the refusals");
    }
    app.stop().await;
}

#[tokio::test]
async fn scope_streams_carry_only_the_incidents_of_their_scope() {
    let app = spawn_app().await;
    let (d, _, other_d) = districts(&app).await;
    let mut other_staff = app.ws(&app.staff("c002"), None).await;
    let mut other_district = app.ws(&app.token(Role::Command, Some(&other_d)), None).await;
    let mut own_district = app.ws(&app.token(Role::Command, Some(&d)), None).await;
    let mut own_staff = app.ws(&app.staff("c001"), None).await;
    let mut city = app.ws(&app.command(), None).await;
    let mut unit_admin = app.ws(&app.token(Role::UnitAdmin, Some(&app.city.members[0].unit_id)), None).await;
    let mut off_call = app.ws(&app.member(&app.city.members[100].id), None).await;

    let inc = app.raise(&app.staff("c001"), raise_body("c001-g1")).await;
    let id = inc["id"].as_str().unwrap().to_string();
    for ws in [&mut city, &mut own_district, &mut own_staff] {
        let f = ws.expect("incident.raised").await;
        assert_eq!(f["data"]["incident_id"], id.as_str());
        ws.expect("incident.offer_sent").await;
    }
    // More events: an escalation and a cancel.
    assert_eq!(app.post(&app.command(), &format!("/v1/incidents/{id}/escalate"), json!({})).await.status(), 200);
    assert_eq!(app.post(&app.command(), &format!("/v1/incidents/{id}/cancel"), json!({})).await.status(), 200);
    city.expect("incident.cancelled").await;
    own_staff.expect("incident.cancelled").await;

    // The cancel answered 200 and the sockets of the scope heard it: every frame of the
    // incident was published; the probes find any that reached another socket.
    let short = Duration::from_millis(10);
    assert!(other_staff.quiet_for(short).await, "staff of c002 heard of a c001 incident");
    assert!(other_district.quiet_for(short).await, "another district heard of the incident");
    assert!(unit_admin.quiet_for(short).await, "a unit_admin stream carries no incident");
    assert!(off_call.quiet_for(short).await, "an off-call member heard of the incident");
    app.stop().await;
}

#[tokio::test]
async fn scope_sockets_cannot_send_member_messages() {
    let app = spawn_app().await;
    let inc = app.raise(&app.staff("c001"), raise_body("c001-g1")).await;
    let id = inc["id"].as_str().unwrap().to_string();
    let (_, offer) = app.offered(&id, "offered").await[0].clone();
    for t in [app.staff("c001"), app.command()] {
        let mut ws = app.ws(&t, None).await;
        let r = ws.request("accept", json!({"offer_id": offer})).await;
        assert_eq!(r["type"], "error");
        assert_eq!(r["data"]["code"], "members_only", "{r}");
        assert_eq!(ws.request("ping", json!({})).await["type"], "ok");
    }
    assert!(app.offered(&id, "offered").await.iter().any(|(_, o)| *o == offer));
    assert_eq!(app.incident(&id).await["accepted"], 0);
    app.stop().await;
}

// ---------------------------------------------------------------- tokens

#[tokio::test]
async fn bad_tokens_are_refused_over_http_with_401() {
    let app = spawn_app().await;
    // No Authorization header at all, and headers that are not a bearer token.
    let resp = app.http.get(app.url("/v1/incidents")).send().await.unwrap();
    problem(resp, 401, Some("unauthorized")).await;
    for header in ["Basic dXNlcjpwYXNz", "Bearer", "Bearer    ", app.command().as_str()] {
        let resp = app.http.get(app.url("/v1/incidents")).header("authorization", header).send().await.unwrap();
        problem(resp, 401, Some("unauthorized")).await;
    }
    for (what, token) in bad_tokens() {
        for path in ["/v1/incidents", "/v1/catalog", "/v1/communities"] {
            let resp = app.get(&token, path).await;
            assert_eq!(resp.status(), 401, "{what} on {path}");
            problem(resp, 401, Some("unauthorized")).await;
        }
        let resp = app.post(&token, "/v1/incidents", raise_body("c001-g1")).await;
        assert_eq!(resp.status(), 401, "{what}");
        problem(resp, 401, Some("unauthorized")).await;
    }
    // The detail says what is wrong, without echoing the token.
    let tokens = bad_tokens();
    for (what, says) in [
        ("expired", "expired"),
        ("HS512 with the right secret", "HS256"),
        ("wrong secret", "signature"),
        ("no exp", "exp"),
        ("staff without a community", "community"),
    ] {
        let token = &tokens.iter().find(|(w, _)| *w == what).unwrap().1;
        let p = problem(app.get(token, "/v1/incidents").await, 401, None).await;
        assert!(p["detail"].as_str().unwrap().contains(says), "{what}: {p}");
        assert!(!p.to_string().contains(token.as_str()), "{what}: the token is echoed");
    }
    assert!(list_all(&app).await.is_empty(), "no refused raise created anything");
    // Public endpoints need no token.
    for path in ["/healthz", "/readyz", "/openapi.json"] {
        assert_eq!(app.http.get(app.url(path)).send().await.unwrap().status(), 200, "{path}");
    }
    app.stop().await;
}

#[tokio::test]
async fn bad_tokens_are_refused_at_the_websocket_handshake() {
    let app = spawn_app().await;
    let (status, ct) = handshake_status(ws_request(&app.addr, "")).await;
    assert_eq!(status, 401, "missing token");
    assert_eq!(ct.as_deref(), Some("application/problem+json"));
    let (status, _) = handshake_status(ws_request(&app.addr, "?access_token=")).await;
    assert_eq!(status, 401, "empty token");
    for (what, token) in bad_tokens() {
        let (status, ct) = handshake_status(ws_request(&app.addr, &format!("?access_token={token}"))).await;
        assert_eq!(status, 401, "{what}");
        assert_eq!(ct.as_deref(), Some("application/problem+json"), "{what}");
        // The same token offered as a subprotocol.
        let mut req = ws_request(&app.addr, "");
        req.headers_mut()
            .insert("sec-websocket-protocol", HeaderValue::from_str(&format!("muster.v1, bearer.{token}")).unwrap());
        let (status, _) = handshake_status(req).await;
        assert_eq!(status, 401, "{what} as subprotocol");
    }
    // Control: a good token connects, by query and by subprotocol.
    let good = app.member(&app.city.members[0].id);
    assert_eq!(handshake_status(ws_request(&app.addr, &format!("?access_token={good}"))).await.0, 101);
    let mut req = ws_request(&app.addr, "");
    req.headers_mut()
        .insert("sec-websocket-protocol", HeaderValue::from_str(&format!("muster.v1, bearer.{good}")).unwrap());
    let (mut socket, resp) = tokio_tungstenite::connect_async(req).await.expect("subprotocol token connects");
    assert_eq!(resp.headers().get("sec-websocket-protocol").unwrap(), "muster.v1");
    use futures_util::StreamExt;
    let hello = tokio::time::timeout(WAIT, socket.next()).await.unwrap().unwrap().unwrap();
    assert!(hello.to_text().unwrap().contains("\"hello\""));
    app.stop().await;
}

#[tokio::test]
async fn a_socket_is_closed_with_1008_when_its_token_expires() {
    let app = spawn_app().await;
    let id = app.city.members[0].id.clone();
    let claims = Claims::new(Role::Member, Some(id.clone()), now_s(), 2).unwrap();
    let exp = claims.exp;
    let token = TokenKeys::new(SECRET).sign(&claims);
    let mut ws = app.ws(&token, None).await;
    let mut control = app.ws(&app.member(&app.city.members[1].id), None).await;
    // Still usable before it expires.
    assert_eq!(ws.request("ping", json!({})).await["type"], "ok");
    let started = std::time::Instant::now();
    assert_eq!(ws.close_code().await, Some(1008));
    // Closed by the expiry (≈ 2 s), not by the pings (every 15 s by default); 10 s is the
    // margin a loaded 2-core run of the whole suite needs (docs/PERFORMANCE.md).
    let took = started.elapsed();
    eprintln!("a 2-second token: socket closed after {took:?}");
    assert!(took < Duration::from_secs(10), "closed late: {took:?}");
    // A socket with a long-lived token is untouched.
    assert_eq!(control.request("ping", json!({})).await["type"], "ok");
    // Once past its exp second, the same token can no longer open a socket or call the API.
    while now_s() <= exp {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, _) = handshake_status(ws_request(&app.addr, &format!("?access_token={token}"))).await;
    assert_eq!(status, 401);
    problem(app.get(&token, &format!("/v1/members/{id}")).await, 401, Some("unauthorized")).await;
    app.stop().await;
}

/// RFC 7519 §4.1.4: the current time MUST be before `exp`. jsonwebtoken refuses only when
/// `exp < now` (whole seconds), so with leeway 0 a token is still accepted during the
/// second `now == exp`, while the websocket session closes it at `exp`.
#[tokio::test]
async fn a_token_is_refused_from_its_exp_second_on() {
    let app = spawn_app().await;
    // Start early in a second so that the whole test runs within it.
    while muster::engine::now_ms() % 1000 > 300 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let now = now_s();
    let id = app.city.members[0].id.clone();
    let claims = Claims::new(Role::Member, Some(id.clone()), now - 10, 10).unwrap();
    assert_eq!(claims.exp, now);
    let token = TokenKeys::new(SECRET).sign(&claims);
    let resp = app.get(&token, &format!("/v1/members/{id}")).await;
    assert_eq!(resp.status(), 401, "a token whose exp is now is accepted over HTTP");
    let (status, _) = handshake_status(ws_request(&app.addr, &format!("?access_token={token}"))).await;
    assert_eq!(status, 401, "a token whose exp is now opens a websocket (closed at once with 1008)");
    app.stop().await;
}

// ---------------------------------------------------------------- origin

#[tokio::test]
async fn a_websocket_from_a_foreign_origin_is_refused() {
    let app = spawn_app().await;
    let token = app.member(&app.city.members[0].id);
    let with_origin = |origin: Option<&str>| {
        let mut req = ws_request(&app.addr, &format!("?access_token={token}"));
        if let Some(o) = origin {
            req.headers_mut().insert("origin", HeaderValue::from_str(o).unwrap());
        }
        req
    };
    let (status, ct) = handshake_status(with_origin(Some("http://evil.example"))).await;
    assert_eq!(status, 403, "foreign origin");
    assert_eq!(ct.as_deref(), Some("application/problem+json"));
    let port = app.addr.rsplit(':').next().unwrap().to_string();
    for evil in [
        format!("http://127.0.0.1:{port}.evil.example"),
        format!("http://evil.example/127.0.0.1:{port}"),
        "null".to_string(),
        format!("http://127.0.0.1:{}", port.parse::<u16>().unwrap().wrapping_add(1)),
    ] {
        assert_eq!(handshake_status(with_origin(Some(&evil))).await.0, 403, "{evil}");
    }
    assert_eq!(handshake_status(with_origin(None)).await.0, 101, "no origin");
    let own = format!("http://{}", app.addr);
    assert_eq!(handshake_status(with_origin(Some(&own))).await.0, 101, "own origin {own}");
    app.stop().await;
}

#[tokio::test]
async fn a_configured_origin_is_accepted() {
    let app = spawn_app_with(&[("MUSTER_SERVER__ALLOWED_ORIGINS", r#"["https://ops.example"]"#)]).await;
    let token = app.member(&app.city.members[0].id);
    let mut req = ws_request(&app.addr, &format!("?access_token={token}"));
    req.headers_mut().insert("origin", HeaderValue::from_static("https://ops.example"));
    assert_eq!(handshake_status(req).await.0, 101);
    let mut req = ws_request(&app.addr, &format!("?access_token={token}"));
    req.headers_mut().insert("origin", HeaderValue::from_static("https://evil.example"));
    assert_eq!(handshake_status(req).await.0, 403);
    app.stop().await;
}
