//! Hostile input, generated: proptest drives the websocket message decoder
//! (`muster::gateway::ws::decode`) with arbitrary text and arbitrary JSON envelopes, and the
//! real server's JSON endpoints with arbitrary JSON trees, mutations of valid bodies and
//! JSON-ish character soup. Nothing panics, every refusal is a 4xx problem+json (never a
//! 5xx), and inputs are bounded (the server's own limits bound the rest: 413, 1009).

use muster::gateway::ws::{ClientMessage, decode};
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, RngSeed, TestCaseError, TestRunner};
use serde_json::{Map, Value, json};

use crate::helpers::*;

/// Field names and values the API knows, so generated input reaches past the first check.
const WORDS: &[&str] = &[
    "id",
    "type",
    "data",
    "offer_id",
    "lat",
    "lng",
    "on_call",
    "mobilization_id",
    "reason",
    "grid_id",
    "location",
    "category",
    "level",
    "headcount",
    "skills",
    "note",
    "difficulty",
    "mode",
    "teams",
    "unit_id",
    "district_id",
    "all_assault",
    "community_id",
    "site",
    "name",
    "deadline_s",
    "to",
    "from",
    "members",
    "accept",
    "decline",
    "arrive",
    "duty",
    "ping",
    "mobilization.ack",
    "mobilization.report",
    "IV",
    "III",
    "II",
    "I",
    "patrol",
    "medical",
    "c001",
    "c002",
    "c001-g1",
    "wartime",
    "peacetime",
    "paired_units",
    "street_units",
    "off-1",
    "inc-000001",
    "mob-1",
    "m00001",
    "t0001",
    "u001",
    "d01",
    "",
];

fn word() -> impl Strategy<Value = String> {
    prop_oneof![3 => prop::sample::select(WORDS).prop_map(str::to_string), 1 => "\\PC{0,24}"]
}

fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1000i64..1000).prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f).map(Value::Number)),
        (-200.0f64..200.0).prop_map(Value::from),
    ]
}

/// Arbitrary JSON: at most 4 deep, 8 wide, ~64 nodes.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf =
        prop_oneof![Just(Value::Null), any::<bool>().prop_map(Value::from), number(), word().prop_map(Value::from)];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::vec((word(), inner), 0..8)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// JSON-ish character soup: brackets, quotes, digits and words, up to ~300 characters.
fn soup() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            prop::sample::select(
                &["{", "}", "[", "]", "\"", ":", ",", "-", ".", "e", "null", "true", "1e999", "\\u0000", "\\", " "][..]
            )
            .prop_map(str::to_string),
            word().prop_map(|w| format!("\"{w}\"")),
            "[0-9]{1,6}",
        ],
        0..60,
    )
    .prop_map(|parts| parts.concat())
}

/// A client message: a known or random type, random id and data.
fn envelope() -> impl Strategy<Value = String> {
    (prop::option::of(json_value()), word(), prop::option::of(json_value())).prop_map(|(id, kind, data)| {
        let mut m = Map::new();
        if let Some(id) = id {
            m.insert("id".into(), id);
        }
        m.insert("type".into(), Value::from(kind));
        if let Some(d) = data {
            m.insert("data".into(), d);
        }
        Value::Object(m).to_string()
    })
}

/// A well-formed message of a known type with one field of its data replaced or removed.
fn near_valid_message() -> impl Strategy<Value = String> {
    let bases = vec![
        json!({"id": 1, "type": "accept", "data": {"offer_id": "off-1"}}),
        json!({"id": 2, "type": "decline", "data": {"offer_id": "off-1", "reason": "busy"}}),
        json!({"id": 3, "type": "arrive", "data": {"offer_id": "off-1", "lat": 30.6, "lng": 114.3}}),
        json!({"id": 4, "type": "location", "data": {"lat": 30.6, "lng": 114.3}}),
        json!({"id": 5, "type": "duty", "data": {"on_call": true}}),
        json!({"id": 6, "type": "mobilization.ack", "data": {"mobilization_id": "mob-1"}}),
        json!({"id": 7, "type": "mobilization.report", "data": {"mobilization_id": "mob-1", "lat": 30.6, "lng": 114.3}}),
    ];
    (prop::sample::select(bases), word(), prop::option::of(json_value())).prop_map(|(mut base, key, value)| {
        let data = base["data"].as_object_mut().unwrap();
        match value {
            Some(v) => data.insert(key, v),
            None => data.remove(&key),
        };
        base.to_string()
    })
}

const DECODE_CODES: &[&str] = &["malformed", "unknown_type", "invalid_data", "invalid_position"];

fn check_decoded(text: &str) -> Result<(), TestCaseError> {
    let id_ok = |id: &Value| id.is_null() || id.is_string() || id.is_number();
    match decode(text) {
        Ok((id, msg)) => {
            prop_assert!(id_ok(&id), "id {id} for {text}");
            if let ClientMessage::Arrive { position, .. }
            | ClientMessage::Location { position }
            | ClientMessage::MobilizationReport { position, .. } = &msg
            {
                prop_assert!(position.lat.abs() <= 90.0 && position.lng.abs() <= 180.0, "{msg:?} from {text}");
            }
        }
        Err((id, code, detail)) => {
            prop_assert!(id_ok(&id), "id {id} for {text}");
            prop_assert!(DECODE_CODES.contains(&code.as_str()), "code {code} for {text}");
            prop_assert!(!detail.trim().is_empty());
        }
    }
    Ok(())
}

// Where each generator keeps the seeds of the cases that failed (see the README there).
const DECODER_REGRESSIONS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/api/proptest-regressions/decoder.txt");
const BODIES_REGRESSIONS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/api/proptest-regressions/bodies.txt");
const QUERIES_REGRESSIONS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/api/proptest-regressions/queries.txt");

/// A runner for `cases` generated cases. Its seed comes from `test_seed` (printed;
/// `MUSTER_TEST_SEED` replays a run), and a failing case's seed is appended to
/// `regressions`, whose cases every later run tries first: commit that file with the fix.
fn runner(test: &str, regressions: &'static str, cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases,
        rng_seed: RngSeed::Fixed(test_seed(test)),
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(regressions))),
        ..Config::default()
    })
}

#[test]
fn the_message_decoder_takes_anything_and_answers_a_known_code() {
    let strategy = prop_oneof![
        "\\PC{0,200}",
        ".{0,200}",
        soup(),
        envelope(),
        near_valid_message(),
        json_value().prop_map(|v| v.to_string()),
    ];
    let mut runner = runner("the_message_decoder_takes_anything_and_answers_a_known_code", DECODER_REGRESSIONS, 4000);
    runner.run(&strategy, |text| check_decoded(&text)).unwrap();
}

#[test]
fn the_message_decoder_survives_deep_nesting_huge_numbers_and_odd_ids() {
    let deep = "[".repeat(60_000);
    assert_eq!(decode(&deep).unwrap_err().1, "malformed");
    let deep_data = format!(r#"{{"type":"accept","data":{}}}"#, "[".repeat(60_000));
    assert!(decode(&deep_data).is_err());
    let deep_obj = format!(r#"{{"type":"ping","data":{}1{}}}"#, r#"{"a":"#.repeat(10_000), "}".repeat(10_000));
    // 10,000 nested objects in `data`: past serde_json's recursion limit (128), refused as
    // malformed without a stack overflow, and its answer is a known code.
    assert_eq!(decode(&deep_obj).unwrap_err().1, "malformed");
    check_decoded(&deep_obj).unwrap();
    // Within the limit the same shape is a ping like any other (`data` is ignored).
    let shallow_obj = format!(r#"{{"type":"ping","data":{}1{}}}"#, r#"{"a":"#.repeat(100), "}".repeat(100));
    assert_eq!(decode(&shallow_obj).unwrap().1, ClientMessage::Ping);
    for text in [
        r#"{"type":"location","data":{"lat":1e999,"lng":0}}"#,
        r#"{"type":"location","data":{"lat":NaN,"lng":0}}"#,
        r#"{"type":"location","data":{"lat":-0.0,"lng":-180.0000000001}}"#,
        r#"{"id":{"x":1},"type":"ping"}"#,
        r#"{"id":[1],"type":"ping"}"#,
        r#"{"id":true,"type":"fly"}"#,
        r#"{"id":18446744073709551616,"type":"ping"}"#,
        r#"{"type":null}"#,
        r#"{"type":"accept","type":"decline","data":{"offer_id":"o"}}"#,
        "\u{feff}{\"type\":\"ping\"}",
        "{\"type\":\"ping\",\"data\":\"\u{0}\"}",
    ] {
        check_decoded(text).unwrap();
    }
}

/// An endpoint that takes a JSON body, with a valid body to mutate (none: random only).
struct Endpoint {
    method: reqwest::Method,
    path: String,
    valid: Option<Value>,
}

fn endpoints(team: &str, district: &str) -> Vec<Endpoint> {
    use reqwest::Method;
    let e = |method: Method, path: &str, valid: Option<Value>| Endpoint { method, path: path.to_string(), valid };
    vec![
        e(
            Method::POST,
            "/v1/incidents",
            Some(json!({"grid_id": "c001-g1", "category": "patrol", "level": "III", "headcount": 1})),
        ),
        e(Method::PUT, "/v1/city", None),
        e(Method::POST, "/v1/mobilizations", Some(json!({"teams": [team], "deadline_s": 600, "note": "x"}))),
        e(Method::PUT, "/v1/city/mode", Some(json!({"mode": "wartime", "reason": "drill"}))),
        e(Method::PUT, &format!("/v1/districts/{district}/mode"), Some(json!({"mode": "wartime", "reason": "drill"}))),
        e(Method::POST, "/v1/incidents/inc-000001/escalate", Some(json!({}))),
        e(Method::POST, "/v1/incidents/inc-000001/resolve", Some(json!({"note": "done"}))),
        e(Method::POST, "/v1/incidents/inc-000001/cancel", Some(json!({"reason": "drill"}))),
        e(Method::POST, "/v1/incidents/inc-000001/whistle", Some(json!({"to": "paired_units"}))),
        e(Method::POST, "/v1/mobilizations/mob-1/close", Some(json!({"reason": "drill"}))),
        e(Method::POST, "/v1/balance/apply", Some(json!({"from": "c001", "to": "c002", "members": ["m00001"]}))),
    ]
}

/// What to send: a random tree, a valid body with one field replaced or removed, or soup.
#[derive(Debug, Clone)]
enum Body {
    Tree(Value),
    Mutated(String, Option<Value>),
    Soup(String),
}

fn body() -> impl Strategy<Value = Body> {
    prop_oneof![
        json_value().prop_map(Body::Tree),
        (word(), prop::option::of(json_value())).prop_map(|(k, v)| Body::Mutated(k, v)),
        soup().prop_map(Body::Soup),
    ]
}

/// Sends one generated request; Err if the answer is a 5xx or a refusal is not problem+json.
async fn send(app: &TestApp, token: &str, ep: &Endpoint, body: &Body, key: &Option<String>) -> Result<u16, String> {
    let text = match (body, &ep.valid) {
        (Body::Tree(v), _) => v.to_string(),
        (Body::Mutated(k, v), Some(valid)) => {
            let mut b = valid.clone();
            match v {
                Some(v) => b[k] = v.clone(),
                None => {
                    b.as_object_mut().unwrap().remove(k);
                }
            }
            b.to_string()
        }
        (Body::Mutated(_, v), None) => v.clone().unwrap_or(Value::Null).to_string(),
        (Body::Soup(s), _) => s.clone(),
    };
    let mut req = app
        .http
        .request(ep.method.clone(), app.url(&ep.path))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(text.clone());
    if let Some(k) = key
        && let Ok(v) = reqwest::header::HeaderValue::from_str(k)
    {
        req = req.header("idempotency-key", v);
    }
    let resp = req.send().await.map_err(|e| format!("{} {}: {e}", ep.method, ep.path))?;
    let status = resp.status().as_u16();
    let ct = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let answer = resp.text().await.unwrap_or_default();
    let what = format!("{} {} {text:.300} -> {status} {answer:.300}", ep.method, ep.path);
    if status >= 500 {
        return Err(format!("a 5xx: {what}"));
    }
    if status >= 400 {
        if ct != "application/problem+json" {
            return Err(format!("not problem+json ({ct}): {what}"));
        }
        let p: Value = serde_json::from_str(&answer).map_err(|e| format!("{e}: {what}"))?;
        if p["status"] != status || !p["code"].is_string() || !p["detail"].is_string() {
            return Err(format!("not a problem document: {what}"));
        }
    }
    Ok(status)
}

/// Generated bodies against the real server's JSON endpoints, as city command (every role
/// check passes, so the bodies reach validation) and as staff.
#[test]
fn generated_bodies_never_get_a_5xx_and_every_refusal_is_problem_json() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let app = rt.block_on(spawn_app());
    let team = app.city.teams[0].id.clone();
    let district = app.city.districts[0].id.clone();
    let eps = endpoints(&team, &district);
    let (command, staff) = (app.command(), app.staff("c001"));
    rt.block_on(async {
        app.raise(&staff, json!({"grid_id": "c001-g1", "category": "patrol", "level": "III", "headcount": 2})).await;
        let resp = app.post(&command, "/v1/mobilizations", json!({"teams": [team.clone()]})).await;
        assert_eq!(resp.status(), 201);
    });

    let strategy = (0..eps.len(), body(), any::<bool>(), prop::option::of("\\PC{0,40}"));
    let mut runner =
        runner("generated_bodies_never_get_a_5xx_and_every_refusal_is_problem_json", BODIES_REGRESSIONS, 400);
    let statuses = std::sync::Mutex::new(std::collections::BTreeMap::<u16, usize>::new());
    let started = std::time::Instant::now();
    runner
        .run(&strategy, |(i, body, as_staff, key)| {
            let token = if as_staff { &staff } else { &command };
            let status = rt.block_on(send(&app, token, &eps[i], &body, &key)).map_err(TestCaseError::fail)?;
            *statuses.lock().unwrap().entry(status).or_default() += 1;
            Ok(())
        })
        .unwrap();
    // The server is still whole: it reads and writes.
    rt.block_on(async {
        assert_eq!(app.http.get(app.url("/readyz")).send().await.unwrap().status(), 200);
        let r = app
            .post(
                &staff,
                "/v1/incidents",
                json!({"grid_id": "c001-g2", "category": "patrol", "level": "IV", "headcount": 1}),
            )
            .await;
        assert_eq!(r.status(), 201);
    });
    let statuses = statuses.into_inner().unwrap();
    eprintln!("generated bodies: {statuses:?} in {:?}", started.elapsed());
    assert!(statuses.keys().any(|s| *s == 422), "generation never reached validation: {statuses:?}");
    rt.block_on(app.stop());
}

/// Generated query strings and path ids: 2xx, 400 or 404, never a 5xx.
#[test]
fn generated_queries_and_path_ids_never_get_a_5xx() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let app = rt.block_on(spawn_app());
    let command = app.command();
    let paths = [
        "/v1/incidents?status=",
        "/v1/mobilizations?status=",
        "/v1/incidents/",
        "/v1/members/",
        "/v1/mobilizations/",
        "/v1/geo/communities/",
        "/v1/incidents?",
        "/v1/ws?after_seq=",
    ];
    let strategy = (0..paths.len(), "\\PC{0,40}");
    let mut runner = runner("generated_queries_and_path_ids_never_get_a_5xx", QUERIES_REGRESSIONS, 300);
    runner
        .run(&strategy, |(i, s)| {
            let encoded: String = s
                .bytes()
                .map(|b| {
                    if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                        (b as char).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect();
            let url = app.url(&format!("{}{encoded}", paths[i]));
            let (status, ct) = rt.block_on(async {
                let resp = app.http.get(&url).bearer_auth(&command).send().await.unwrap();
                let ct = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
                (resp.status().as_u16(), ct)
            });
            prop_assert!(status < 500, "{url} -> {status}");
            prop_assert!(status < 400 || ct == "application/problem+json", "{url} -> {status} {ct}");
            Ok(())
        })
        .unwrap();
    rt.block_on(app.stop());
}

/// A body at the limit made of nesting, a huge number, or a long array: refused as a
/// 4xx, never a stack overflow or a 5xx.
#[tokio::test]
async fn deep_nesting_and_huge_values_in_a_body_are_refused_cleanly() {
    let app = spawn_app().await;
    let staff = app.staff("c001");
    let post = |body: String| {
        app.http
            .post(app.url("/v1/incidents"))
            .bearer_auth(&staff)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let bodies = [
        "[".repeat(60_000),
        format!(r#"{{"note":{}"x"{}}}"#, "[".repeat(30_000), "]".repeat(30_000)),
        format!(r#"{{"grid_id":"c001-g1","category":"patrol","level":"III","headcount":{}}}"#, "9".repeat(50_000)),
        format!(
            r#"{{"grid_id":"c001-g1","category":"patrol","level":"III","headcount":1,"skills":[{}"medical"]}}"#,
            "\"medical\",".repeat(5_000)
        ),
        format!(r#"{{"grid_id":"{}","category":"patrol","level":"III","headcount":1}}"#, "g".repeat(60_000)),
    ];
    for body in bodies {
        let resp = post(body.clone()).await.unwrap();
        let status = resp.status().as_u16();
        assert!((400..500).contains(&status), "{status} for {:.80}", body);
        assert_problem(resp, status, None).await;
    }
    // An upgrade without a token is refused before the websocket starts.
    let resp = app
        .http
        .get(app.url("/v1/ws"))
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .unwrap();
    assert_problem(resp, 401, Some("unauthorized")).await;
    let list: Vec<Value> = app.get(&app.command(), "/v1/incidents").await.json().await.unwrap();
    assert!(list.is_empty());
    app.stop().await;
}
