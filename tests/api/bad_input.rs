//! Bad input, through the real server: every refusal is a clear 4xx problem+json with a
//! stable `code` and a `detail` a person can act on, and changes nothing. On the
//! websocket, a bad message answers `error` and the socket stays usable; a bad frame
//! closes it with the documented code; other sockets never notice.

use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

use crate::helpers::*;

/// Asserts a problem+json answer with this status (and code, when given); returns its body.
async fn problem(resp: reqwest::Response, status: u16, code: Option<&str>) -> Value {
    let got = resp.status().as_u16();
    let ct = resp.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    let text = resp.text().await.unwrap();
    assert_eq!(got, status, "{text}");
    assert_eq!(ct, "application/problem+json", "{text}");
    let body: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    assert_eq!(body["status"], status, "{body}");
    assert!(body["detail"].as_str().is_some_and(|d| !d.trim().is_empty()), "{body}");
    assert!(body["title"].as_str().is_some_and(|d| !d.is_empty()), "{body}");
    let code_got = body["code"].as_str().expect("a code");
    assert_eq!(body["type"], format!("/problems/{code_got}"), "{body}");
    if let Some(code) = code {
        assert_eq!(code_got, code, "{body}");
    }
    body
}

fn valid() -> Value {
    json!({"grid_id": "c001-g1", "category": "patrol", "level": "III", "headcount": 2})
}

/// `valid()` with some fields replaced (a null removes the field).
fn with(changes: Value) -> Value {
    let mut b = valid();
    for (k, v) in changes.as_object().unwrap() {
        if v.is_null() {
            b.as_object_mut().unwrap().remove(k);
        } else {
            b[k] = v.clone();
        }
    }
    b
}

async fn assert_no_incidents(app: &TestApp) {
    let resp = app.get(&app.command(), "/v1/incidents").await;
    assert_eq!(resp.status(), 200);
    let list: Vec<Value> = resp.json().await.unwrap();
    assert!(list.is_empty(), "a refused request created {list:?}");
}

async fn timeline(app: &TestApp, id: &str) -> Vec<Value> {
    app.get(&app.command(), &format!("/v1/incidents/{id}/timeline")).await.json().await.unwrap()
}

/// Posts a raw body with a content type (None: no content-type header).
async fn post_raw(
    app: &TestApp,
    token: &str,
    path: &str,
    content_type: Option<&str>,
    body: String,
) -> reqwest::Response {
    let mut req = app.http.post(app.url(path)).bearer_auth(token).body(body);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    req.send().await.unwrap()
}

/// A POST with a chunked body (no content-length), over a raw connection: (status,
/// content-type, body).
async fn chunked_post(app: &TestApp, token: &str, path: &str, chunks: &[String]) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(&app.addr).await.unwrap();
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        app.addr
    );
    for c in chunks {
        req.push_str(&format!("{:x}\r\n{c}\r\n", c.len()));
    }
    req.push_str("0\r\n\r\n");
    // The server may answer and close before it has read everything: ignore write errors.
    let _ = tcp.write_all(req.as_bytes()).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(WAIT, tcp.read_to_end(&mut out)).await.expect("an answer arrives");
    let text = String::from_utf8_lossy(&out).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no HTTP answer: {text}"));
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let content_type = head
        .lines()
        .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("content-type")))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_default();
    let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        // one chunk is enough for a small problem document
        body.split("\r\n").nth(1).unwrap_or("").to_string()
    } else {
        body.to_string()
    };
    (status, content_type, body)
}

fn c001_center(app: &TestApp) -> (f64, f64) {
    let p = app.city.communities.iter().find(|c| c.id == "c001").unwrap().grids[0].cells[0].center();
    (p.lat, p.lng)
}

// ---------------------------------------------------------------- raise

#[tokio::test]
async fn an_unknown_grid_is_outside_a_staffs_scope_and_unknown_to_city_command() {
    let app = spawn_app().await;
    let body = with(json!({"grid_id": "c001-g99"}));
    problem(app.post(&app.staff("c001"), "/v1/incidents", body.clone()).await, 403, Some("outside_scope")).await;
    problem(app.post(&app.command(), "/v1/incidents", body).await, 422, Some("unknown_grid")).await;
    let body = with(json!({"grid_id": ""}));
    problem(app.post(&app.command(), "/v1/incidents", body).await, 422, Some("unknown_grid")).await;
    // a valid position that lies in no grid of the city (the Atlantic)
    let body = with(json!({"grid_id": null, "location": {"lat": 0.0, "lng": -30.0}}));
    problem(app.post(&app.command(), "/v1/incidents", body.clone()).await, 422, Some("unknown_grid")).await;
    problem(app.post(&app.staff("c001"), "/v1/incidents", body).await, 403, Some("outside_scope")).await;
    assert_no_incidents(&app).await;
    app.stop().await;
}

#[tokio::test]
async fn exactly_one_of_grid_id_and_location() {
    let app = spawn_app().await;
    let (lat, lng) = c001_center(&app);
    for body in [
        with(json!({"location": {"lat": lat, "lng": lng}})),
        with(json!({"grid_id": null})),
        with(json!({"grid_id": null, "location": null})),
    ] {
        for token in [app.command(), app.staff("c001")] {
            problem(app.post(&token, "/v1/incidents", body.clone()).await, 422, Some("grid_or_location")).await;
        }
    }
    // explicit nulls count as absent
    let mut body = valid();
    body["grid_id"] = Value::Null;
    body["location"] = Value::Null;
    problem(app.post(&app.command(), "/v1/incidents", body).await, 422, Some("grid_or_location")).await;
    assert_no_incidents(&app).await;
    app.stop().await;
}

#[tokio::test]
async fn positions_out_of_range_or_not_numbers_are_refused() {
    let app = spawn_app().await;
    let (lat, lng) = c001_center(&app);
    let staff = app.staff("c001");
    let bad_locations = [
        json!({"lat": 91.0, "lng": lng}),
        json!({"lat": -90.5, "lng": lng}),
        json!({"lat": lat, "lng": 200.0}),
        json!({"lat": lat, "lng": -180.01}),
        json!({"lat": "NaN", "lng": lng}),
        json!({"lat": lat, "lng": "Infinity"}),
        json!({"lat": lat}),
        json!({"lat": lat, "lng": lng, "alt": 10}),
        json!("30.5,114.3"),
    ];
    for loc in bad_locations {
        let body = with(json!({"grid_id": null, "location": loc}));
        problem(app.post(&staff, "/v1/incidents", body).await, 422, Some("invalid_body")).await;
    }
    // A detail that names the field.
    let body = with(json!({"grid_id": null, "location": {"lat": 91.0, "lng": lng}}));
    let p = problem(app.post(&staff, "/v1/incidents", body).await, 422, Some("invalid_body")).await;
    assert!(p["detail"].as_str().unwrap().contains("latitude"), "{p}");
    // JSON cannot carry NaN or Infinity: a literal is malformed JSON.
    for literal in ["NaN", "Infinity", "-Infinity", "1e999"] {
        let raw = format!(
            r#"{{"location": {{"lat": {literal}, "lng": {lng}}}, "category": "patrol", "level": "III", "headcount": 1}}"#
        );
        let resp = post_raw(&app, &staff, "/v1/incidents", Some("application/json"), raw).await;
        let status = resp.status().as_u16();
        assert!(status == 400 || status == 422, "{literal}: {status}");
        problem(resp, status, None).await;
    }
    assert_no_incidents(&app).await;
    app.stop().await;
}

#[tokio::test]
async fn headcount_out_of_range_is_refused() {
    let app = spawn_app().await;
    let staff = app.staff("c001");
    for n in [0, 501, 100_000] {
        let p = problem(
            app.post(&staff, "/v1/incidents", with(json!({"headcount": n}))).await,
            422,
            Some("headcount_out_of_range"),
        )
        .await;
        assert!(p["detail"].as_str().unwrap().contains("500"), "{p}");
    }
    for n in [json!(-1), json!(1.5), json!("2"), json!(4_294_967_296u64), json!(null)] {
        problem(app.post(&staff, "/v1/incidents", with(json!({"headcount": n}))).await, 422, Some("invalid_body"))
            .await;
    }
    // The bounds themselves are fine.
    app.raise(&staff, with(json!({"headcount": 500}))).await;
    app.raise(&staff, with(json!({"headcount": 1}))).await;
    let list: Vec<Value> = app.get(&app.command(), "/v1/incidents").await.json().await.unwrap();
    assert_eq!(list.len(), 2);
    app.stop().await;
}

#[tokio::test]
async fn unknown_vocabulary_and_unknown_fields_are_refused() {
    let app = spawn_app().await;
    let staff = app.staff("c001");
    for level in [json!("V"), json!("iv"), json!("4"), json!(""), json!("Ⅳ")] {
        let p =
            problem(app.post(&staff, "/v1/incidents", with(json!({"level": level}))).await, 422, Some("invalid_body"))
                .await;
        assert!(p["detail"].as_str().unwrap().contains("IV"), "names the known levels: {p}");
    }
    // A number is not a level either (serde_json calls this a syntax error, hence 400 or 422).
    let resp = app.post(&staff, "/v1/incidents", with(json!({"level": 4}))).await;
    let status = resp.status().as_u16();
    assert!(status == 400 || status == 422, "{status}");
    problem(resp, status, None).await;
    let p = problem(
        app.post(&staff, "/v1/incidents", with(json!({"skills": ["flying"]}))).await,
        422,
        Some("unknown_skill"),
    )
    .await;
    assert!(p["detail"].as_str().unwrap().contains("flying"), "{p}");
    let body = with(json!({"skills": ["medical", "flying"]}));
    problem(app.post(&staff, "/v1/incidents", body).await, 422, Some("unknown_skill")).await;
    let body = with(json!({"skills": "medical"}));
    problem(app.post(&staff, "/v1/incidents", body).await, 422, Some("invalid_body")).await;
    let p = problem(
        app.post(&staff, "/v1/incidents", with(json!({"category": "party"}))).await,
        422,
        Some("unknown_category"),
    )
    .await;
    assert!(p["detail"].as_str().unwrap().contains("patrol"), "lists the known categories: {p}");
    problem(app.post(&staff, "/v1/incidents", with(json!({"category": null}))).await, 422, Some("invalid_body")).await;
    let p =
        problem(app.post(&staff, "/v1/incidents", with(json!({"priority": "high"}))).await, 422, Some("invalid_body"))
            .await;
    assert!(p["detail"].as_str().unwrap().contains("priority"), "{p}");
    let long = "x".repeat(1001);
    problem(app.post(&staff, "/v1/incidents", with(json!({"note": long}))).await, 422, Some("text_too_long")).await;
    let many: Vec<&str> = std::iter::repeat_n("medical", 17).collect();
    problem(app.post(&staff, "/v1/incidents", with(json!({"skills": many}))).await, 422, Some("too_many_skills")).await;
    problem(app.post(&staff, "/v1/incidents", json!([])).await, 422, Some("invalid_body")).await;
    problem(app.post(&staff, "/v1/incidents", json!({})).await, 422, Some("invalid_body")).await;
    // Idempotency keys: visible ASCII, 1 to 200 characters.
    let raise_with_key = |key: reqwest::header::HeaderValue| {
        app.http.post(app.url("/v1/incidents")).bearer_auth(&staff).header("idempotency-key", key).json(&valid()).send()
    };
    let key = reqwest::header::HeaderValue::from_bytes(b"k\xff").unwrap();
    problem(raise_with_key(key).await.unwrap(), 400, Some("bad_idempotency_key")).await;
    for key in ["".to_string(), "k".repeat(201)] {
        let key = reqwest::header::HeaderValue::from_str(&key).unwrap();
        problem(raise_with_key(key).await.unwrap(), 422, Some("bad_idempotency_key")).await;
    }
    assert_no_incidents(&app).await;
    // No refusal used up an incident id or an offer id.
    let inc = app.raise(&staff, valid()).await;
    assert_eq!(inc["id"], "inc-000001");
    let offers = app.offered("inc-000001", "offered").await;
    assert!(offers.iter().any(|(_, o)| o == "off-1"), "{offers:?}");
    app.stop().await;
}

#[tokio::test]
async fn malformed_unlabelled_and_oversized_bodies_are_refused() {
    let app = spawn_app().await;
    let staff = app.staff("c001");
    for raw in [
        r#"{"grid_id": "c001-g1", "#,
        "not json",
        "",
        r#"{"grid_id": "c001-g1", "category": "patrol", "level": "III", "headcount": 1}}"#,
        "\u{feff}{}",
    ] {
        let resp = post_raw(&app, &staff, "/v1/incidents", Some("application/json"), raw.to_string()).await;
        problem(resp, 400, Some("malformed_json")).await;
    }
    let body = valid().to_string();
    problem(post_raw(&app, &staff, "/v1/incidents", None, body.clone()).await, 415, Some("unsupported_media_type"))
        .await;
    let resp = post_raw(&app, &staff, "/v1/incidents", Some("text/plain"), body.clone()).await;
    problem(resp, 415, Some("unsupported_media_type")).await;
    let note = "x".repeat(100 * 1024);
    problem(app.post(&staff, "/v1/incidents", with(json!({"note": note}))).await, 413, Some("body_too_large")).await;
    // Just over the limit, too; and a body without content-length (chunked).
    let pad = "x".repeat(65536);
    problem(app.post(&staff, "/v1/incidents", with(json!({"note": pad}))).await, 413, Some("body_too_large")).await;
    let json_start = r#"{"grid_id": "c001-g1", "category": "patrol", "level": "III", "headcount": 1, "note": ""#;
    let chunks = [json_start.to_string(), "y".repeat(70_000), "\"}".to_string()];
    let (status, content_type, body) = chunked_post(&app, &staff, "/v1/incidents", &chunks).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(content_type, "application/problem+json");
    let p: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(p["code"], "body_too_large");
    assert_no_incidents(&app).await;
    app.stop().await;
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_problem_json() {
    let app = spawn_app().await;
    let t = app.command();
    problem(app.get(&t, "/v1/nothing").await, 404, Some("no_route")).await;
    problem(app.get(&t, "/v2/incidents").await, 404, Some("no_route")).await;
    let resp = app.http.get(app.url("/nothing")).send().await.unwrap();
    problem(resp, 404, Some("no_route")).await;
    let resp = app.http.delete(app.url("/v1/incidents")).bearer_auth(&t).send().await.unwrap();
    problem(resp, 405, Some("method_not_allowed")).await;
    let resp = app.http.patch(app.url("/v1/incidents/inc-000001")).bearer_auth(&t).send().await.unwrap();
    problem(resp, 405, Some("method_not_allowed")).await;
    let resp = app.http.get(app.url("/v1/incidents/inc-000001/resolve")).bearer_auth(&t).send().await.unwrap();
    problem(resp, 405, Some("method_not_allowed")).await;
    let resp = app.http.post(app.url("/v1/city")).bearer_auth(&t).json(&json!({})).send().await.unwrap();
    problem(resp, 405, Some("method_not_allowed")).await;
    assert_no_incidents(&app).await;
    app.stop().await;
}

#[tokio::test]
async fn a_bad_list_query_is_refused() {
    let app = spawn_app().await;
    app.raise(&app.staff("c001"), valid()).await;
    let t = app.command();
    let p = problem(app.get(&t, "/v1/incidents?status=bogus").await, 400, Some("invalid_query")).await;
    assert!(p["detail"].as_str().unwrap().contains("bogus"), "{p}");
    problem(app.get(&t, "/v1/incidents?status=OPEN").await, 400, Some("invalid_query")).await;
    problem(app.get(&t, "/v1/incidents?colour=red").await, 400, Some("invalid_query")).await;
    let ok: Vec<Value> = app.get(&t, "/v1/incidents?status=open").await.json().await.unwrap();
    assert_eq!(ok.len(), 1);
    let none: Vec<Value> = app.get(&t, "/v1/incidents?status=resolved").await.json().await.unwrap();
    assert!(none.is_empty());
    app.stop().await;
}

#[tokio::test]
async fn acting_on_a_closed_incident_or_past_the_top_level_conflicts_and_changes_nothing() {
    let app = spawn_app().await;
    let staff = app.staff("c001");
    // resolve twice
    let id = app.raise(&staff, valid()).await["id"].as_str().unwrap().to_string();
    let resp = app.post(&staff, &format!("/v1/incidents/{id}/resolve"), json!({"note": "done"})).await;
    assert_eq!(resp.status(), 200);
    let resolved = app.incident(&id).await;
    let events = timeline(&app, &id).await.len();
    for action in ["resolve", "cancel", "escalate"] {
        let resp = app.post(&staff, &format!("/v1/incidents/{id}/{action}"), json!({})).await;
        problem(resp, 409, Some("incident_closed")).await;
    }
    assert_eq!(app.incident(&id).await, resolved);
    assert_eq!(timeline(&app, &id).await.len(), events);

    // escalate at level I
    let id = app.raise(&staff, with(json!({"level": "I", "headcount": 50}))).await["id"].as_str().unwrap().to_string();
    let before = app.incident(&id).await;
    let events = timeline(&app, &id).await.len();
    let p = problem(app.post(&staff, &format!("/v1/incidents/{id}/escalate"), json!({})).await, 409, Some("top_level"))
        .await;
    assert!(p["detail"].as_str().unwrap().contains(&id), "{p}");
    let after = app.incident(&id).await;
    assert_eq!(after["level"], "I");
    assert_eq!(after["status"], before["status"]);
    assert_eq!(timeline(&app, &id).await.len(), events);

    // bad action bodies
    let path = format!("/v1/incidents/{id}/resolve");
    problem(app.post(&staff, &path, json!({"colour": "red"})).await, 422, Some("invalid_body")).await;
    let resp = post_raw(&app, &staff, &path, Some("application/json"), "{not json".into()).await;
    let status = resp.status().as_u16();
    assert!(status == 400 || status == 422, "{status}");
    problem(resp, status, None).await;
    let long = "x".repeat(1001);
    problem(app.post(&staff, &path, json!({"note": long})).await, 422, Some("text_too_long")).await;
    assert_eq!(app.incident(&id).await["status"], "open", "no refused resolve took effect");
    assert_eq!(timeline(&app, &id).await.len(), events);
    app.stop().await;
}

#[tokio::test]
async fn an_oversized_action_body_answers_413_problem_json_and_changes_nothing() {
    let app = spawn_app().await;
    let staff = app.staff("c001");
    let id = app.raise(&staff, valid()).await["id"].as_str().unwrap().to_string();
    let before = app.incident(&id).await;
    let big = "x".repeat(100 * 1024);
    for action in ["escalate", "resolve", "cancel"] {
        let resp = app.post(&staff, &format!("/v1/incidents/{id}/{action}"), json!({"note": big})).await;
        assert_eq!(resp.status(), 413, "{action}");
        problem(resp, 413, Some("body_too_large")).await;
    }
    assert_eq!(app.incident(&id).await, before);
    app.stop().await;
}

// ---------------------------------------------------------------- websocket

/// The next ok/error answer on a socket, skipping stream frames.
async fn next_answer(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(WAIT, ws.socket.next()).await.expect("an answer arrives");
        match msg {
            Some(Ok(Message::Text(t))) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["type"] == "ok" || v["type"] == "error" {
                    return v;
                }
            }
            Some(Ok(_)) => continue,
            other => panic!("the socket ended: {other:?}"),
        }
    }
}

/// A control socket of an uninvolved member still answers.
async fn still_works(control: &mut Ws) {
    let r = control.request("ping", json!({})).await;
    assert_eq!(r["type"], "ok", "{r}");
}

fn off_call_member(app: &TestApp, n: usize) -> String {
    app.city.members.iter().filter(|m| !m.on_call).nth(n).unwrap().id.clone()
}

#[tokio::test]
async fn a_too_big_text_message_closes_the_socket_with_1009() {
    let app = spawn_app().await;
    let mut control = app.ws(&app.member(&off_call_member(&app, 0)), None).await;
    let mut ws = app.ws(&app.member(&off_call_member(&app, 1)), None).await;
    let big = format!(r#"{{"type":"ping","data":{{"pad":"{}"}}}}"#, "x".repeat(70_000));
    ws.send_raw(Message::Text(big.into())).await;
    assert_eq!(ws.close_code().await, Some(1009));
    still_works(&mut control).await;
    // Just under the limit is only a message, answered.
    let mut ws = app.ws(&app.member(&off_call_member(&app, 1)), None).await;
    let fits = format!(r#"{{"id":1,"type":"ping","data":{{"pad":"{}"}}}}"#, "x".repeat(60_000));
    ws.send_raw(Message::Text(fits.into())).await;
    assert_eq!(next_answer(&mut ws).await["type"], "ok");
    app.stop().await;
}

#[tokio::test]
async fn a_binary_frame_closes_the_socket_with_1003() {
    let app = spawn_app().await;
    let mut control = app.ws(&app.member(&off_call_member(&app, 0)), None).await;
    let mut ws = app.ws(&app.member(&off_call_member(&app, 1)), None).await;
    ws.send_raw(Message::Binary(br#"{"type":"ping"}"#.to_vec().into())).await;
    assert_eq!(ws.close_code().await, Some(1003));
    still_works(&mut control).await;
    app.stop().await;
}

#[tokio::test]
async fn invalid_utf8_closes_the_socket_with_1007() {
    let app = spawn_app().await;
    let mut control = app.ws(&app.member(&off_call_member(&app, 0)), None).await;
    let mut ws = app.ws(&app.member(&off_call_member(&app, 1)), None).await;
    // Message::Text only carries valid UTF-8; a raw text frame carries anything.
    let bytes = b"{\"type\":\"ping\",\"data\":{\"x\":\"\xff\xfe\"}}".to_vec();
    ws.send_raw(Message::Frame(Frame::message(bytes, OpCode::Data(Data::Text), true))).await;
    assert_eq!(ws.close_code().await, Some(1007));
    still_works(&mut control).await;
    app.stop().await;
}

#[tokio::test]
async fn bad_messages_answer_error_and_the_socket_stays_open() {
    let app = spawn_app().await;
    let m = off_call_member(&app, 1);
    let mut control = app.ws(&app.member(&off_call_member(&app, 0)), None).await;
    let mut ws = app.ws(&app.member(&m), None).await;

    let r = ws.request("fly", json!({})).await;
    assert_eq!(r["type"], "error");
    assert_eq!(r["data"]["code"], "unknown_type", "{r}");
    assert!(r["data"]["detail"].as_str().unwrap().contains("fly"), "{r}");
    assert_eq!(ws.request("ping", json!({})).await["type"], "ok");
    still_works(&mut control).await;

    for raw in ["not json", "{", "[]", r#"{"data":{}}"#, r#"{"id":{"a":1},"type":"ping"}"#, "null"] {
        ws.send_raw(Message::Text(raw.into())).await;
        let r = next_answer(&mut ws).await;
        assert_eq!(r["type"], "error", "{raw}: {r}");
        assert_eq!(r["data"]["code"], "malformed", "{raw}: {r}");
        assert!(r["data"]["detail"].as_str().is_some_and(|d| !d.is_empty()), "{r}");
        assert_eq!(ws.request("ping", json!({})).await["type"], "ok", "after {raw}");
    }
    still_works(&mut control).await;

    for (kind, data) in [
        ("accept", json!({})),
        ("accept", json!({"offer_id": 7})),
        ("decline", json!({"offer_id": "off-1", "why": "x"})),
        ("duty", json!({"on_call": "yes"})),
        ("location", json!({"lat": "x", "lng": 0})),
        ("arrive", json!({"lat": 30.5, "lng": 114.3})),
    ] {
        let r = ws.request(kind, data.clone()).await;
        assert_eq!(r["type"], "error", "{kind} {data}: {r}");
        assert_eq!(r["data"]["code"], "invalid_data", "{kind} {data}: {r}");
    }
    for data in [json!({"lat": 200.0, "lng": 114.3}), json!({"lat": 30.5, "lng": 200.0}), json!({"lat": -91, "lng": 0})]
    {
        let r = ws.request("location", data.clone()).await;
        assert_eq!(r["data"]["code"], "invalid_position", "{data}: {r}");
    }
    // The member's record did not move or change duty.
    let me: Value = app.get(&app.command(), &format!("/v1/members/{m}")).await.json().await.unwrap();
    let original = app.city.members.iter().find(|x| x.id == m).unwrap().position;
    assert_eq!(me["on_call"], false);
    assert!((me["position"]["lat"].as_f64().unwrap() - original.lat).abs() < 1e-9, "{me}");
    assert_eq!(ws.request("ping", json!({})).await["type"], "ok");
    still_works(&mut control).await;
    app.stop().await;
}

#[tokio::test]
async fn an_arrival_out_of_range_is_refused_and_the_offer_is_unchanged() {
    let app = spawn_app().await;
    let id = app.raise(&app.staff("c001"), valid()).await["id"].as_str().unwrap().to_string();
    let (m, o) = app.offered(&id, "offered").await[0].clone();
    let mut ws = app.ws(&app.member(&m), None).await;
    assert_eq!(ws.expect("offer").await["data"]["offer_id"], o.as_str());
    assert_eq!(ws.request("accept", json!({"offer_id": o})).await["type"], "ok");
    let mut control = app.ws(&app.member(&off_call_member(&app, 0)), None).await;
    for (lat, lng) in [(200.0, 114.3), (30.5, 200.0), (-90.1, 0.0)] {
        let r = ws.request("arrive", json!({"offer_id": o, "lat": lat, "lng": lng})).await;
        assert_eq!(r["type"], "error");
        assert_eq!(r["data"]["code"], "invalid_position", "{r}");
        assert!(r["data"]["detail"].as_str().unwrap().contains("between"), "{r}");
    }
    let inc = app.incident(&id).await;
    assert_eq!(inc["arrived"], 0);
    assert!(inc["offers"].as_array().unwrap().iter().any(|x| x["offer_id"] == o.as_str() && x["state"] == "accepted"));
    assert_eq!(ws.request("ping", json!({})).await["type"], "ok");
    still_works(&mut control).await;
    app.stop().await;
}

#[tokio::test]
async fn accepting_an_expired_offer_is_refused() {
    let app = spawn_app_with(&[("MUSTER_DISPATCH__OFFER_TTL_S", "1")]).await;
    let id = app.raise(&app.staff("c001"), with(json!({"headcount": 1}))).await["id"].as_str().unwrap().to_string();
    let (m, o) = app.offered(&id, "offered").await[0].clone();
    let mut ws = app.ws(&app.member(&m), None).await;
    let mut control = app.ws(&app.member(&off_call_member(&app, 0)), None).await;
    assert_eq!(ws.expect("offer").await["data"]["offer_id"], o.as_str());
    let revoked = ws.expect("offer.revoked").await;
    assert_eq!(revoked["data"]["offer_id"], o.as_str());
    assert_eq!(revoked["data"]["reason"], "expired");
    let r = ws.request("accept", json!({"offer_id": o})).await;
    assert_eq!(r["type"], "error");
    assert_eq!(r["data"]["code"], "offer_expired", "{r}");
    // Declining an offer that has already ended is a no-op, answered ok.
    assert_eq!(ws.request("decline", json!({"offer_id": o})).await["type"], "ok");
    let inc = app.incident(&id).await;
    assert_eq!(inc["accepted"], 0, "{inc}");
    let offer = inc["offers"].as_array().unwrap().iter().find(|x| x["offer_id"] == o.as_str()).unwrap().clone();
    assert_eq!(offer["state"], "expired");
    assert_eq!(ws.request("ping", json!({})).await["type"], "ok");
    still_works(&mut control).await;
    app.stop().await;
}

#[tokio::test]
async fn accepting_a_revoked_offer_is_refused() {
    let app = spawn_app().await;
    let staff = app.staff("c001");
    let id = app.raise(&staff, with(json!({"headcount": 1}))).await["id"].as_str().unwrap().to_string();
    let (m, o) = app.offered(&id, "offered").await[0].clone();
    let mut ws = app.ws(&app.member(&m), None).await;
    let mut control = app.ws(&app.member(&off_call_member(&app, 0)), None).await;
    assert_eq!(ws.expect("offer").await["data"]["offer_id"], o.as_str());
    let resp = app.post(&staff, &format!("/v1/incidents/{id}/cancel"), json!({"reason": "false alarm"})).await;
    assert_eq!(resp.status(), 200);
    let revoked = ws.expect("offer.revoked").await;
    assert_eq!(revoked["data"]["reason"], "cancelled");
    let events = timeline(&app, &id).await.len();
    let r = ws.request("accept", json!({"offer_id": o})).await;
    assert_eq!(r["type"], "error");
    assert_eq!(r["data"]["code"], "offer_revoked", "{r}");
    // Declining an offer that has already ended is a no-op, answered ok.
    assert_eq!(ws.request("decline", json!({"offer_id": o})).await["type"], "ok");
    let inc = app.incident(&id).await;
    assert_eq!(inc["status"], "cancelled");
    assert_eq!(inc["accepted"], 0);
    let offer = inc["offers"].as_array().unwrap().iter().find(|x| x["offer_id"] == o.as_str()).unwrap().clone();
    assert_eq!(offer["state"], "revoked");
    assert_eq!(timeline(&app, &id).await.len(), events);
    let me: Value = app.get(&app.command(), &format!("/v1/members/{m}")).await.json().await.unwrap();
    assert_eq!(me["engaged_offer_id"], Value::Null, "{me}");
    assert_eq!(ws.request("ping", json!({})).await["type"], "ok");
    still_works(&mut control).await;
    app.stop().await;
}

#[tokio::test]
async fn a_bad_websocket_query_is_refused_at_the_handshake() {
    let app = spawn_app().await;
    let token = app.member(&off_call_member(&app, 0));
    for query in [format!("?access_token={token}&after_seq=-1"), format!("?access_token={token}&after_seq=abc")] {
        match tokio_tungstenite::connect_async(format!("ws://{}/v1/ws{query}", app.addr)).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                assert_eq!(resp.status(), 400, "{query}");
                assert_eq!(resp.headers().get("content-type").unwrap(), "application/problem+json");
            }
            Ok(_) => panic!("{query}: connected"),
            Err(e) => panic!("{query}: {e}"),
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn a_plain_get_of_the_websocket_endpoint_answers_problem_json() {
    let app = spawn_app().await;
    let token = app.member(&off_call_member(&app, 0));
    let resp = app.http.get(app.url(&format!("/v1/ws?access_token={token}"))).send().await.unwrap();
    let status = resp.status().as_u16();
    assert!(status == 400 || status == 426, "{status}");
    problem(resp, status, None).await;
    app.stop().await;
}

#[tokio::test]
async fn an_id_that_is_not_utf8_answers_problem_json() {
    let app = spawn_app().await;
    let t = app.command();
    for path in ["/v1/incidents/%FF", "/v1/incidents/%C0/timeline", "/v1/members/%FF%FE"] {
        let resp = app.get(&t, path).await;
        let status = resp.status().as_u16();
        assert!(status == 400 || status == 404, "{path}: {status}");
        problem(resp, status, None).await;
    }
    let resp = app.post(&t, "/v1/incidents/%FF/resolve", json!({})).await;
    let status = resp.status().as_u16();
    assert!(status == 400 || status == 404, "{status}");
    problem(resp, status, None).await;
    app.stop().await;
}

/// The OpenAPI document puts each parameter where the server reads it: a parameter `in:
/// path` is one of the path's `{…}`, and every `{…}` of a path is a path parameter. (Query
/// structs derived without `parameter_in = Query` were listed as required path
/// parameters, which sent schemathesis and generated clients to the wrong place.)
#[tokio::test]
async fn every_path_parameter_of_the_openapi_document_is_in_its_path() {
    let app = spawn_app().await;
    let doc: Value = app.http.get(app.url("/openapi.json")).send().await.unwrap().json().await.unwrap();
    let mut wrong = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        let holes: Vec<&str> = path.split('{').skip(1).filter_map(|s| s.split('}').next()).collect();
        for (method, op) in item.as_object().unwrap() {
            let params = op["parameters"].as_array().cloned().unwrap_or_default();
            for p in &params {
                let name = p["name"].as_str().unwrap();
                if p["in"] == "path" && !holes.contains(&name) {
                    wrong.push(format!("{method} {path}: '{name}' is not in the path"));
                }
            }
            for hole in &holes {
                if !params.iter().any(|p| p["in"] == "path" && p["name"] == *hole) {
                    wrong.push(format!("{method} {path}: '{{{hole}}}' has no path parameter"));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

/// The document says what this server enforces: the limits that are configuration are
/// the `maximum` of their fields as configured, and an invitation's body is one branch per
/// role, each naming its own scope field only.
#[tokio::test]
async fn the_served_document_carries_the_configured_limits_and_one_invitation_shape_per_role() {
    let app = spawn_app_with(&[
        ("MUSTER_AUTH__INVITATION_MAX_TTL_S", "7200"),
        ("MUSTER_AUTH__INVITATION_TTL_S", "3600"),
        ("MUSTER_DISPATCH__MAX_HEADCOUNT", "40"),
        ("MUSTER_DISPATCH__SERVICE__MAX_SLOTS", "7"),
    ])
    .await;
    let doc: Value = app.http.get(app.url("/openapi.json")).send().await.unwrap().json().await.unwrap();
    // The slots of the orders a request or a proposal becomes, and the configured ids the
    // campaign and resident bodies name, as this server has them.
    for pointer in
        ["/components/schemas/DispatchBody/properties/slots", "/components/schemas/ProposalBody/properties/slots"]
    {
        assert_eq!(doc.pointer(&format!("{pointer}/maximum")), Some(&serde_json::json!(7)), "{pointer}");
    }
    let catalog: Value =
        app.http.get(app.url("/v1/catalog")).bearer_auth(app.command()).send().await.unwrap().json().await.unwrap();
    let ids = |list: &Value| -> Vec<Value> { list.as_array().unwrap().iter().map(|x| x["id"].clone()).collect() };
    let schemas = &doc["components"]["schemas"];
    assert_eq!(schemas["ProposalBody"]["properties"]["category"]["enum"], Value::from(ids(&catalog["categories"])));
    assert_eq!(schemas["DispatchBody"]["properties"]["skills"]["items"]["enum"], Value::from(ids(&catalog["skills"])));
    assert_eq!(
        schemas["RequirementBody"]["properties"]["skills"]["items"]["enum"],
        Value::from(ids(&catalog["skills"]))
    );
    assert!(!ids(&catalog["skills"]).is_empty(), "{catalog}");
    // `[[dispatch.campaign.roles]]` of config/default.toml.
    let roles = serde_json::json!(["queue_order", "registration", "logistics", "sampling_helper"]);
    assert_eq!(schemas["RequirementBody"]["properties"]["role"]["enum"], roles);
    let invite = &doc["components"]["schemas"]["InviteBody"]["oneOf"];
    let branches = invite.as_array().expect("InviteBody is a oneOf");
    let mut roles = Vec::new();
    for b in branches {
        assert_eq!(b["properties"]["ttl_s"]["maximum"], 7200, "{b}");
        assert_eq!(b["additionalProperties"], false, "{b}");
        let scope: Vec<&String> =
            b["properties"].as_object().unwrap().keys().filter(|k| *k != "role" && *k != "ttl_s").collect();
        assert_eq!(scope.len(), 1, "{b}");
        roles.push((b["properties"]["role"]["enum"][0].as_str().unwrap().to_string(), scope[0].clone()));
    }
    roles.sort();
    let want =
        [("command", "district_id"), ("member", "member_id"), ("staff", "community_id"), ("unit_admin", "unit_id")];
    assert_eq!(roles, want.map(|(r, f)| (r.to_string(), f.to_string())));
    let headcount = doc.pointer("/components/schemas/RaiseBody/allOf/0/properties/headcount/maximum");
    assert_eq!(headcount, Some(&serde_json::json!(40)), "dispatch.max_headcount as configured");
    let batch = doc.pointer("/paths/~1v1~1invitations~1batch/post/parameters/0/schema/maximum");
    assert_eq!(batch, Some(&serde_json::json!(7200)));
    // A ttl over the configured maximum is what the server refuses.
    let token = app.token(muster::gateway::auth::Role::Command, None);
    let body = serde_json::json!({"role": "staff", "community_id": "c001", "ttl_s": 7201});
    let r = app.http.post(app.url("/v1/invitations")).bearer_auth(&token).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 422);
    let problem: Value = r.json().await.unwrap();
    assert_eq!(problem["code"], "invalid_invitation", "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("7200"), "{problem}");
    app.stop().await;
}

/// A count is JSON Schema's `integer`, which `2.0` is (the document allows it, clients send
/// it): a headcount of 2.0 raises with 2; 2.5, -1 and a string are refused and change nothing.
#[tokio::test]
async fn a_whole_count_sent_as_2_0_is_2_and_a_fraction_is_refused() {
    let app = spawn_app().await;
    for bad in [json!(2.5), json!(-1), json!("2")] {
        let body = with(json!({"headcount": bad}));
        problem(app.post(&app.command(), "/v1/incidents", body).await, 422, Some("invalid_body")).await;
    }
    assert_no_incidents(&app).await;
    let resp = app.post(&app.command(), "/v1/incidents", with(json!({"headcount": 2.0}))).await;
    assert_eq!(resp.status(), 201);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["headcount"], 2, "{v}");
    app.stop().await;
}
