//! Outbound webhooks (issue 18, item 3) through the real server and a real receiver on
//! loopback: a small HTTP server of the test's own that checks every Standard Webhooks
//! signature with its own HMAC (not the server's code), records ids and bodies, and can be
//! told to fail (500, 429, 410, a timeout, a dropped connection, a redirect).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use muster::domain::org::City;
use muster::gateway::auth::Role;
use serde_json::{Value, json};

use crate::helpers::*;

// ---------------------------------------------------------------- the receiver

#[derive(Clone, Copy, Debug, PartialEq)]
enum Fail {
    S500,
    S429,
    S410,
    /// Answers nothing for longer than the server waits.
    Timeout,
    /// Closes the connection without an answer.
    Drop,
    /// 302 to another path of the receiver.
    Redirect,
}

#[derive(Clone, Debug)]
struct Hit {
    path: String,
    id: String,
    timestamp: String,
    signature: String,
    body: String,
    /// 0: no answer (dropped, timed out).
    status: u16,
}

#[derive(Default)]
struct Script {
    hits: Vec<Hit>,
    next: VecDeque<Fail>,
    always: Option<Fail>,
    /// Each 2xx waits this long first.
    delay_ms: u64,
}

#[derive(Clone)]
struct Receiver {
    addr: std::net::SocketAddr,
    script: Arc<Mutex<Script>>,
}

impl Receiver {
    async fn start() -> Receiver {
        let script = Arc::new(Mutex::new(Script::default()));
        let s = script.clone();
        let addr = loopback(move |req| answer(req, &s)).await;
        Receiver { addr, script }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn fail_next(&self, fails: &[Fail]) {
        self.script.lock().unwrap().next.extend(fails);
    }

    fn fail_always(&self, f: Option<Fail>) {
        self.script.lock().unwrap().always = f;
    }

    fn hits(&self) -> Vec<Hit> {
        self.script.lock().unwrap().hits.clone()
    }

    /// The hits it answered 2xx.
    fn acked(&self) -> Vec<Hit> {
        self.hits().into_iter().filter(|h| (200..300).contains(&h.status)).collect()
    }
}

/// Records the request as it arrives, before it answers (a 2xx recorded is one the server
/// may have heard, or not, if it was killed meanwhile: the one in flight), and answers as
/// scripted.
fn answer(req: &LoopbackRequest, script: &Mutex<Script>) -> LoopbackReply {
    let (fail, delay) = {
        let mut s = script.lock().unwrap();
        (s.next.pop_front().or(s.always), s.delay_ms)
    };
    let status = match fail {
        None => 200,
        Some(Fail::S500) => 500,
        Some(Fail::S429) => 429,
        Some(Fail::S410) => 410,
        Some(Fail::Redirect) => 302,
        Some(Fail::Timeout | Fail::Drop) => 0,
    };
    let hit = Hit {
        path: req.path.clone(),
        id: req.header("webhook-id"),
        timestamp: req.header("webhook-timestamp"),
        signature: req.header("webhook-signature"),
        body: req.body_text(),
        status,
    };
    script.lock().unwrap().hits.push(hit);
    match fail {
        Some(Fail::Drop) => LoopbackReply::silent(Duration::ZERO),
        Some(Fail::Timeout) => LoopbackReply::silent(Duration::from_secs(3)),
        Some(Fail::Redirect) => {
            LoopbackReply::status(302).header("location", &format!("http://{}/elsewhere", req.local))
        }
        _ if status == 200 => LoopbackReply::status(200).after(Duration::from_millis(delay)),
        _ => LoopbackReply::status(status),
    }
}

/// The test's own check of a Standard Webhooks signature: HMAC-SHA256 keyed with the
/// secret's base64-decoded bytes over `id.timestamp.body`, one of the `v1,` signatures.
fn verify(secret: &str, h: &Hit) -> bool {
    let key = BASE64.decode(secret.strip_prefix("whsec_").expect("whsec_")).expect("base64");
    let mut mac = Hmac::<sha2_digest010::Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{}.{}.{}", h.id, h.timestamp, h.body).as_bytes());
    let want = format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()));
    let now = muster::engine::now_ms() / 1000;
    let fresh = h.timestamp.parse::<i64>().is_ok_and(|t| (t - now).abs() < 300);
    fresh && h.signature.split(' ').any(|s| s == want)
}

fn body(h: &Hit) -> Value {
    serde_json::from_str(&h.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", h.body))
}

// ---------------------------------------------------------------- the server

/// Short backoffs and polls, loopback allowed.
fn fast(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    let mut v = vec![
        ("MUSTER_WEBHOOKS__ALLOW_CIDRS", r#"["127.0.0.0/8"]"#),
        ("MUSTER_WEBHOOKS__BACKOFF_BASE_MS", "10"),
        ("MUSTER_WEBHOOKS__BACKOFF_MAX_MS", "40"),
        ("MUSTER_WEBHOOKS__POLL_MS", "20"),
        ("MUSTER_WEBHOOKS__TIMEOUT_MS", "500"),
    ];
    v.extend_from_slice(extra);
    v
}

async fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// GETs `path` as city command until `ok` holds of the answer.
async fn poll(app: &TestApp, path: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let v = json_of(app.get(&app.command(), path).await, 200).await;
        if ok(&v) {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "never: {path} gave {v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The next frame of which `ok` holds, skipping others.
async fn frame_where(ws: &mut Ws, ok: impl Fn(&Value) -> bool) -> Value {
    loop {
        let f = ws.next_frame().await;
        if ok(&f) {
            return f;
        }
    }
}

async fn json_of(resp: reqwest::Response, status: u16) -> Value {
    let got = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    assert_eq!(got, status, "{text}");
    serde_json::from_str(&text).unwrap()
}

/// Registers an endpoint; answers (id, secret).
async fn register(app: &TestApp, token: &str, body: Value) -> (String, String) {
    let made = json_of(app.post(token, "/v1/webhooks", body).await, 201).await;
    let secret = made["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_"), "{made}");
    (made["id"].as_str().unwrap().to_string(), secret)
}

fn district_of(city: &City, community: &str) -> String {
    let c = city.communities.iter().find(|c| c.id == community).unwrap();
    city.streets.iter().find(|s| s.id == c.street_id).unwrap().district_id.clone()
}

/// A grid of a community in another district than c001's.
fn foreign_grid(city: &City) -> (String, String) {
    let d = district_of(city, "c001");
    let c = city.communities.iter().find(|c| district_of(city, &c.id) != d).unwrap();
    (district_of(city, &c.id), c.grids[0].id.clone())
}

async fn raise(app: &TestApp, grid: &str) -> String {
    let inc =
        app.raise(&app.command(), json!({"grid_id": grid, "category": "patrol", "level": "III", "headcount": 2})).await;
    inc["id"].as_str().unwrap().to_string()
}

fn seq_of(h: &Hit) -> u64 {
    body(h)["data"]["seq"].as_u64().unwrap()
}

// ---------------------------------------------------------------- the cases

#[tokio::test]
async fn events_arrive_signed_in_order_filtered_by_type_and_scope() {
    let app = spawn_app_with(&fast(&[])).await;
    let cmd = app.command();
    let d = district_of(&app.city, "c001");
    let (other, other_grid) = foreign_grid(&app.city);
    let (city_rx, own_rx, other_rx) = (Receiver::start().await, Receiver::start().await, Receiver::start().await);
    let types = json!(["incident.raised", "incident.cancelled"]);
    let (city_id, city_secret) = register(&app, &cmd, json!({"url": city_rx.url("/in?k=1"), "types": types})).await;
    // A district's command registers for its own district (the body may leave it out).
    let own_token = app.token(Role::Command, Some(&d));
    let (own_id, own_secret) =
        register(&app, &own_token, json!({"url": own_rx.url("/d"), "types": ["incident.raised"]})).await;
    let (_, other_secret) =
        register(&app, &cmd, json!({"url": other_rx.url("/o"), "types": ["incident.raised"], "district_id": other}))
            .await;

    let a = raise(&app, "c001-g1").await;
    let b = raise(&app, "c001-g2").await;
    json_of(app.post(&cmd, &format!("/v1/incidents/{a}/cancel"), json!({"reason": "drill"})).await, 200).await;
    let c = raise(&app, &other_grid).await;

    let got = eventually("the city endpoint's four", || Some(city_rx.acked()).filter(|h| h.len() >= 4)).await;
    let kinds: Vec<(String, String)> = got
        .iter()
        .map(|h| {
            let v = body(h);
            (v["type"].as_str().unwrap().to_string(), v["data"]["incident_id"].as_str().unwrap().to_string())
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("incident.raised".into(), a.clone()),
            ("incident.raised".into(), b.clone()),
            ("incident.cancelled".into(), a.clone()),
            ("incident.raised".into(), c.clone())
        ]
    );
    let seqs: Vec<u64> = got.iter().map(seq_of).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in log order: {seqs:?}");
    for h in &got {
        assert!(verify(&city_secret, h), "signature of {h:?}");
        assert_eq!(h.id, format!("msg_{city_id}_{}", seq_of(h)));
        assert_eq!(h.path, "/in?k=1");
        let v = body(h);
        assert!(v["timestamp"].as_str().unwrap().ends_with('Z'), "{v}");
        assert_eq!(v["data"]["district_ids"], json!([if v["data"]["incident_id"] == c { &other } else { &d }]), "{v}");
    }
    // A signature made with another secret does not pass the receiver's check.
    assert!(!verify(&own_secret, &got[0]));

    // The district endpoints: their own district's raises only. The other district's
    // endpoint got c and nothing before it (one message in flight per endpoint, in order).
    let other_got = eventually("the other district's one", || Some(other_rx.acked()).filter(|h| !h.is_empty())).await;
    let own_got = eventually("the own district's two", || Some(own_rx.acked()).filter(|h| h.len() >= 2)).await;
    let ids = |hs: &[Hit]| {
        hs.iter().map(|h| body(h)["data"]["incident_id"].as_str().unwrap().to_string()).collect::<Vec<_>>()
    };
    assert_eq!(ids(&other_got), [c]);
    assert_eq!(ids(&own_got), [a.clone(), b.clone()]);
    assert!(own_got.iter().all(|h| verify(&own_secret, h) && h.id.starts_with(&format!("msg_{own_id}_"))));
    assert!(verify(&other_secret, &other_got[0]));
    // A later own-district raise reaches the own endpoint right after a and b: c never came.
    let e = raise(&app, "c001-g3").await;
    let own_got = eventually("the own district's third", || Some(own_rx.acked()).filter(|h| h.len() >= 3)).await;
    assert_eq!(ids(&own_got), [a, b, e]);

    // The list shows them, with their delivery state and no secret.
    let list = json_of(app.get(&cmd, "/v1/webhooks").await, 200).await;
    assert_eq!(list["webhooks"].as_array().unwrap().len(), 3, "{list}");
    assert!(!list.to_string().contains("whsec_"), "{list}");
    assert!(list["event_types"].as_array().unwrap().contains(&json!("mobilization.ordered")));
    // A district's command sees its own endpoint only.
    let mine = json_of(app.get(&own_token, "/v1/webhooks").await, 200).await;
    let mine: Vec<&str> = mine["webhooks"].as_array().unwrap().iter().map(|w| w["id"].as_str().unwrap()).collect();
    assert_eq!(mine, [own_id.as_str()]);
    // Registering and the rest are in the audit, without the secret.
    let audit = json_of(app.get(&cmd, "/v1/audit?kind=webhook_registered").await, 200).await;
    assert_eq!(audit["entries"].as_array().unwrap().len(), 3, "{audit}");
    assert!(!audit.to_string().contains("whsec_") && !audit.to_string().contains("k=1"), "{audit}");
    app.stop().await;
}

#[tokio::test]
async fn a_receiver_down_for_a_while_gets_everything_in_order_with_the_same_ids() {
    let app = spawn_app_with(&fast(&[("MUSTER_WEBHOOKS__ATTEMPTS", "20")])).await;
    let rx = Receiver::start().await;
    rx.fail_next(&[Fail::S500, Fail::S429, Fail::Drop, Fail::Timeout, Fail::S500, Fail::Drop]);
    let (id, secret) = register(&app, &app.command(), json!({"url": rx.url("/"), "types": ["incident.raised"]})).await;
    let raised = [raise(&app, "c001-g1").await, raise(&app, "c001-g2").await, raise(&app, "c001-g3").await];

    let acked = eventually("all three", || Some(rx.acked()).filter(|h| h.len() >= 3)).await;
    let hits = rx.hits();
    // The six failures were all tries of the first message, under its one id.
    let first = &hits[0].id;
    assert!(hits[..6].iter().all(|h| &h.id == first && h.body == hits[0].body), "{hits:?}");
    assert_eq!(hits[6].id, *first, "the seventh try delivered it");
    let ids: Vec<&str> = acked.iter().map(|h| h.id.as_str()).collect();
    let mut unique = ids.clone();
    unique.dedup();
    assert_eq!(ids, unique, "each delivered once");
    let incidents: Vec<String> =
        acked.iter().map(|h| body(h)["data"]["incident_id"].as_str().unwrap().to_string()).collect();
    assert_eq!(incidents, raised);
    assert!(hits.iter().all(|h| verify(&secret, h)));

    // The status is recorded after each answer the receiver gave: wait for the third's.
    let view = poll(&app, &format!("/v1/webhooks/{id}"), |v| v["delivered"] == 3).await;
    assert_eq!(view["failed"], 6, "{view}");
    assert_eq!(view["state"], "active");
    assert!(view["last_success_at"].is_string() && view["last_error"].is_string(), "{view}");
    let metrics = app.http.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("muster_webhook_deliveries_total"), "no delivery metrics");
    app.stop().await;
}

#[tokio::test]
async fn a_message_past_its_tries_is_a_dead_letter_that_command_replays() {
    let app = spawn_app_with(&fast(&[("MUSTER_WEBHOOKS__ATTEMPTS", "3")])).await;
    let cmd = app.command();
    let rx = Receiver::start().await;
    rx.fail_next(&[Fail::S500, Fail::S500, Fail::S500]);
    let (id, secret) = register(&app, &cmd, json!({"url": rx.url("/"), "types": ["incident.raised"]})).await;
    let a = raise(&app, "c001-g1").await;
    let b = raise(&app, "c001-g2").await;

    // a is dead after three tries; b, behind it, goes through.
    let acked = eventually("b", || Some(rx.acked()).filter(|h| !h.is_empty())).await;
    assert_eq!(body(&acked[0])["data"]["incident_id"], json!(b));
    let dead = json_of(app.get(&cmd, &format!("/v1/webhooks/{id}/dead-letters")).await, 200).await;
    let letters = dead.as_array().unwrap();
    assert_eq!(letters.len(), 1, "{dead}");
    let a_id = rx.hits()[0].id.clone();
    assert_eq!(letters[0]["message_id"], json!(a_id));
    assert_eq!(letters[0]["attempts"], 3);
    assert_eq!(letters[0]["body"]["data"]["incident_id"], json!(a));
    assert!(letters[0]["error"].as_str().unwrap().contains("500"), "{dead}");

    // Replay: the same message, under the same id, and the list is empty after.
    let r = json_of(app.post(&cmd, &format!("/v1/webhooks/{id}/dead-letters/replay"), json!({})).await, 200).await;
    assert_eq!(r["replayed"], 1);
    let acked = eventually("a again", || Some(rx.acked()).filter(|h| h.len() >= 2)).await;
    assert_eq!(acked[1].id, a_id);
    assert!(verify(&secret, &acked[1]));
    assert_eq!(body(&acked[1])["data"]["incident_id"], json!(a));
    poll(&app, &format!("/v1/webhooks/{id}/dead-letters"), |v| *v == json!([])).await;
    app.stop().await;
}

#[tokio::test]
async fn an_endpoint_that_keeps_failing_is_disabled_and_command_is_told() {
    let app =
        spawn_app_with(&fast(&[("MUSTER_WEBHOOKS__ATTEMPTS", "2"), ("MUSTER_WEBHOOKS__DISABLE_AFTER_DEAD", "2")]))
            .await;
    let cmd = app.command();
    let mut ws = app.ws(&cmd, None).await;
    let rx = Receiver::start().await;
    rx.fail_always(Some(Fail::S500));
    let (id, _) = register(&app, &cmd, json!({"url": rx.url("/"), "types": ["incident.raised"]})).await;
    for g in ["c001-g1", "c001-g2", "c001-g3"] {
        raise(&app, g).await;
    }
    let frame = frame_where(&mut ws, |f| f["type"] == "webhook.changed" && f["data"]["change"] == "disabled").await;
    assert_eq!(frame["data"]["webhook_id"], json!(id));
    let view = json_of(app.get(&cmd, &format!("/v1/webhooks/{id}")).await, 200).await;
    assert_eq!(view["state"], "disabled");
    assert!(view["disabled_reason"].as_str().unwrap().starts_with("failing"), "{view}");
    assert_eq!(view["dead_letters"], 2, "{view}");
    let audit = json_of(app.get(&cmd, "/v1/audit?kind=webhook_disabled").await, 200).await;
    assert_eq!(audit["entries"][0]["actor"], "system", "{audit}");
    // Disabled: nothing more is tried.
    let tries = rx.hits().len();
    assert_eq!(tries, 4, "two messages, two tries each");

    // Enabled again with the receiver back: the third incident arrives (the cursor stayed).
    rx.fail_always(None);
    json_of(app.post(&cmd, &format!("/v1/webhooks/{id}/enable"), json!({})).await, 200).await;
    let acked = eventually("the third", || Some(rx.acked()).filter(|h| !h.is_empty())).await;
    assert_eq!(acked.len(), 1);

    // 410 Gone disables at once.
    let gone = Receiver::start().await;
    gone.fail_always(Some(Fail::S410));
    let (gid, _) = register(&app, &cmd, json!({"url": gone.url("/"), "types": ["incident.raised"]})).await;
    raise(&app, "c001-g1").await;
    let frame = frame_where(&mut ws, |f| {
        f["type"] == "webhook.changed" && f["data"]["webhook_id"] == json!(gid) && f["data"]["change"] == "disabled"
    })
    .await;
    assert!(frame["data"]["disabled_reason"].as_str().unwrap().contains("410"), "{frame}");
    assert_eq!(gone.hits().len(), 1, "a 410 is not retried");
    app.stop().await;
}

#[tokio::test]
async fn private_addresses_are_refused_and_redirects_are_not_followed() {
    // No allow-list: loopback and private addresses are refused at registration.
    let app = spawn_app().await;
    let cmd = app.command();
    let rx = Receiver::start().await;
    for url in [
        rx.url("/"),
        "http://10.0.0.7/hook".to_string(),
        "http://[::1]:8080/hook".to_string(),
        "http://169.254.169.254/latest/meta-data".to_string(),
        format!("http://localhost:{}/", rx.addr.port()),
    ] {
        let resp = app.post(&cmd, "/v1/webhooks", json!({"url": url, "types": ["incident.raised"]})).await;
        assert_problem(resp, 422, Some("webhook_url_not_allowed")).await;
    }
    assert_eq!(json_of(app.get(&cmd, "/v1/webhooks").await, 200).await["webhooks"], json!([]));
    app.stop().await;

    // Allowed on loopback: a redirect is a failure, never followed.
    let app = spawn_app_with(&fast(&[("MUSTER_WEBHOOKS__ATTEMPTS", "2")])).await;
    let cmd = app.command();
    rx.fail_always(Some(Fail::Redirect));
    let (id, _) = register(&app, &cmd, json!({"url": rx.url("/hook"), "types": ["incident.raised"]})).await;
    raise(&app, "c001-g1").await;
    let letters = poll(&app, &format!("/v1/webhooks/{id}/dead-letters"), |v| v != &json!([])).await;
    assert!(letters[0]["error"].as_str().is_some_and(|e| e.contains("302") && e.contains("redirect")), "{letters}");
    let paths: Vec<String> = rx.hits().into_iter().map(|h| h.path).collect();
    assert_eq!(paths, ["/hook", "/hook"], "the redirect's target was never asked");
    app.stop().await;
}

#[tokio::test]
async fn bad_input_is_refused_as_a_problem_and_changes_nothing() {
    let app = spawn_app_with(&fast(&[])).await;
    let cmd = app.command();
    let rx = Receiver::start().await;
    let d = district_of(&app.city, "c001");
    let (other, _) = foreign_grid(&app.city);
    let url = rx.url("/");
    let refused: Vec<(String, Value, u16, &str)> = vec![
        (cmd.clone(), json!({"url": "not a url", "types": ["incident.raised"]}), 422, "invalid_webhook"),
        (cmd.clone(), json!({"url": "ftp://example.com/x", "types": ["incident.raised"]}), 422, "invalid_webhook"),
        (cmd.clone(), json!({"url": "javascript:alert(1)", "types": ["incident.raised"]}), 422, "invalid_webhook"),
        (cmd.clone(), json!({"url": url, "types": ["incident.exploded"]}), 422, "unknown_event_type"),
        (cmd.clone(), json!({"url": url, "types": ["offer_sent"]}), 422, "unknown_event_type"),
        (cmd.clone(), json!({"url": url, "types": []}), 422, "unknown_event_type"),
        (cmd.clone(), json!({"url": url, "types": ["incident.raised"], "district_id": "d99"}), 422, "unknown_district"),
        (cmd.clone(), json!({"types": ["incident.raised"]}), 422, "invalid_body"),
        (cmd.clone(), json!({"url": url}), 422, "invalid_body"),
        (cmd.clone(), json!({"url": url, "types": ["incident.raised"], "secret": "mine"}), 422, "invalid_body"),
        (cmd.clone(), json!({"url": 7, "types": ["incident.raised"]}), 422, "invalid_body"),
        (
            app.token(Role::Command, Some(&d)),
            json!({"url": url, "types": ["incident.raised"], "district_id": other}),
            422,
            "unknown_district",
        ),
        (app.staff("c001"), json!({"url": url, "types": ["incident.raised"]}), 403, "role_not_allowed"),
        (app.member("m00001"), json!({"url": url, "types": ["incident.raised"]}), 403, "role_not_allowed"),
    ];
    for (token, b, status, code) in refused {
        assert_problem(app.post(&token, "/v1/webhooks", b).await, status, Some(code)).await;
    }
    let resp = app
        .http
        .post(app.url("/v1/webhooks"))
        .bearer_auth(&cmd)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_problem(resp, 400, None).await;
    assert_eq!(json_of(app.get(&cmd, "/v1/webhooks").await, 200).await["webhooks"], json!([]));
    let audit = json_of(app.get(&cmd, "/v1/audit?kind=webhook_registered").await, 200).await;
    assert_eq!(audit["entries"], json!([]));

    // A city endpoint is not a district command's: foreign and unknown answer alike.
    let (id, _) = register(&app, &cmd, json!({"url": url, "types": ["mode.switched"]})).await;
    let district = app.token(Role::Command, Some(&d));
    for path in [format!("/v1/webhooks/{id}"), "/v1/webhooks/wh-999".to_string()] {
        let p = assert_problem(app.get(&district, &path).await, 404, Some("unknown_webhook")).await;
        assert!(!p.to_string().contains("mode.switched"));
        assert_problem(app.post(&district, &format!("{path}/disable"), json!({})).await, 404, Some("unknown_webhook"))
            .await;
        let resp = app.http.delete(app.url(&path)).bearer_auth(&district).send().await.unwrap();
        assert_problem(resp, 404, Some("unknown_webhook")).await;
    }
    assert_problem(
        app.post(&cmd, &format!("/v1/webhooks/{id}/dead-letters/replay"), json!({"seqs": "all"})).await,
        422,
        Some("invalid_body"),
    )
    .await;
    // Rotation answers a new secret; delete removes it.
    let rotated = json_of(app.post(&cmd, &format!("/v1/webhooks/{id}/rotate"), json!({})).await, 200).await;
    assert!(rotated["secret"].as_str().unwrap().starts_with("whsec_"));
    let resp = app.http.delete(app.url(&format!("/v1/webhooks/{id}"))).bearer_auth(&cmd).send().await.unwrap();
    assert_eq!(resp.status(), 204);
    assert_problem(app.get(&cmd, &format!("/v1/webhooks/{id}")).await, 404, Some("unknown_webhook")).await;
    let kinds: Vec<String> = json_of(app.get(&cmd, "/v1/audit").await, 200).await["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(kinds, ["webhook_registered", "webhook_secret_rotated", "webhook_deleted"]);
    app.stop().await;
}

/// kill -9 while messages are being delivered, restart on the same data: the receiver gets
/// every event, and of the ids it had acknowledged before the kill at most one (the one in
/// flight, whose acknowledgement the server had not recorded) comes again.
#[tokio::test]
async fn kill_9_during_delivery_resumes_from_the_cursor() {
    const N: usize = 30;
    let dir = tempfile::tempdir().unwrap();
    let env = fast(&[]);
    let p = start_child(dir.path(), &env);
    let app = child_client(&p.addr);
    assert_eq!(app.put_city(&app.command(), &app.city).await.status(), 200);
    let rx = Receiver::start().await;
    rx.script.lock().unwrap().delay_ms = 30;
    let (id, secret) = register(&app, &app.command(), json!({"url": rx.url("/"), "types": ["incident.raised"]})).await;
    let grids = ["c001-g1", "c001-g2", "c001-g3"];
    let mut raised = Vec::new();
    for i in 0..N {
        raised.push(raise(&app, grids[i % 3]).await);
    }
    eventually("some delivered", || Some(()).filter(|_| rx.acked().len() >= 5)).await;
    p.kill9();
    let before: Vec<String> = rx.acked().into_iter().map(|h| h.id).collect();
    assert!(before.len() < N, "the kill came after everything was delivered; nothing was tested");

    let p = start_child(dir.path(), &env);
    let acked = eventually("every event", || {
        let got = rx.acked();
        let mut ids: Vec<&str> = got.iter().map(|h| h.id.as_str()).collect();
        ids.sort();
        ids.dedup();
        (ids.len() >= N).then_some(got)
    })
    .await;
    let mut count: BTreeMap<String, usize> = BTreeMap::new();
    for h in &acked {
        assert!(verify(&secret, h), "{h:?}");
        *count.entry(h.id.clone()).or_default() += 1;
    }
    let again: Vec<&String> = count.iter().filter(|(_, n)| **n > 1).map(|(k, _)| k).collect();
    assert!(again.len() <= 1, "acknowledged ids sent again: {again:?}");
    if let Some(id) = again.first() {
        assert_eq!(before.last(), Some(*id), "only the one in flight at the kill may come again");
    }
    let incidents: Vec<String> = {
        let mut seen = Vec::new();
        for h in &acked {
            let i = body(h)["data"]["incident_id"].as_str().unwrap().to_string();
            if !seen.contains(&i) {
                seen.push(i);
            }
        }
        seen
    };
    assert_eq!(incidents, raised, "every event, in order");
    assert!(count.keys().all(|k| k.starts_with(&format!("msg_{id}_"))));
    drop(p);
}

/// Two nodes on Redis: only the engine's node delivers, so each message arrives once
/// whichever node took the command, and either node answers the endpoint's status (kept
/// in Redis beside the log).
#[tokio::test]
async fn on_several_nodes_only_the_engine_delivers_each_message_once() {
    let url = "redis://127.0.0.1:6379/";
    let prefix = crate::cluster::Prefix::new(url);
    let node = || {
        let prefix = prefix.name.clone();
        async move {
            let dir = tempfile::tempdir().unwrap();
            let mut env: Vec<(&str, &str)> = fast(&[
                ("MUSTER_REDIS_URL", url),
                ("MUSTER_REDIS__LEASE_MS", "1000"),
                ("MUSTER_REDIS__REQUIRE_PERSISTENCE", "false"),
            ]);
            env.push(("MUSTER_REDIS__PREFIX", &prefix));
            let settings = test_settings(dir.path(), &env);
            let app = muster::app::build(settings, muster::app::Options::default()).await.expect("node starts");
            TestApp {
                addr: format!("127.0.0.1:{}", app.port()),
                app: Some(app),
                http: reqwest::Client::new(),
                keys: muster::gateway::auth::TokenKeys::new(SECRET),
                city: test_city(),
                _dir: Some(dir),
            }
        }
    };
    let a = node().await;
    let b = node().await;
    assert_eq!(a.put_city(&a.command(), &a.city).await.status(), 200);
    let rx = Receiver::start().await;
    let (id, secret) = register(&b, &b.command(), json!({"url": rx.url("/"), "types": ["incident.raised"]})).await;
    let mut raised = Vec::new();
    for (i, n) in [&a, &b, &a, &b].into_iter().enumerate() {
        let inc = n
            .raise(&n.command(), json!({"grid_id": format!("c001-g{}", i % 3 + 1), "category": "patrol", "level": "III", "headcount": 1}))
            .await;
        raised.push(inc["id"].as_str().unwrap().to_string());
    }
    let acked = eventually("the four", || Some(rx.acked()).filter(|h| h.len() >= 4)).await;
    let got: Vec<String> = acked.iter().map(|h| body(h)["data"]["incident_id"].as_str().unwrap().to_string()).collect();
    assert_eq!(got, raised, "each once, in order");
    assert!(acked.iter().all(|h| verify(&secret, h)));
    for n in [&a, &b] {
        let path = format!("/v1/webhooks/{id}");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let v = json_of(n.get(&n.command(), &path).await, 200).await;
            if v["delivered"] == 4 {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "{path}: {v}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    assert_eq!(rx.hits().len(), 4, "nothing sent twice");
    b.stop().await;
    a.stop().await;
}
