//! Logs never contain tokens: the real binary logging at debug (JSON and text), driven
//! with tokens in the Authorization header, in `?access_token=` and in the websocket
//! subprotocol, accepted and refused; then its stderr is searched for every token, its
//! payload and its signature.

use std::time::Duration;

use futures_util::StreamExt;
use muster::gateway::auth::{Claims, Role, TokenKeys};
use serde_json::json;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use crate::helpers::*;

fn now_s() -> u64 {
    muster::engine::now_ms() as u64 / 1000
}

/// Opens a websocket with this request; true if it got its hello. The socket is closed.
async fn ws_open(req: tokio_tungstenite::tungstenite::handshake::client::Request) -> bool {
    match tokio_tungstenite::connect_async(req).await {
        Ok((mut s, _)) => {
            let ok = matches!(tokio::time::timeout(WAIT, s.next()).await, Ok(Some(Ok(_))));
            let _ = s.close(None).await;
            ok
        }
        Err(_) => false,
    }
}

/// Drives a child logging at `filter` in `format` and returns its stderr and the tokens used.
async fn drive(format: &str, filter: &str) -> (String, Vec<(String, String)>) {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("stderr.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let data = dir.path().join("data");
    let p = start_child_with(
        &data,
        ChildOptions {
            env: &[("MUSTER_LOG__FILTER", filter), ("MUSTER_LOG__FORMAT", format)],
            stderr: Some(log),
            ..Default::default()
        },
    );
    let app = child_client(&p.addr);
    let keys = TokenKeys::new(SECRET);
    let now = now_s();
    let member = app.city.members[0].id.clone();
    let mut tokens: Vec<(String, String)> = vec![
        ("command".into(), app.command()),
        ("staff".into(), app.staff("c001")),
        ("member".into(), app.member(&member)),
        ("member for the subprotocol".into(), app.member(&app.city.members[1].id)),
        ("expired".into(), keys.sign(&Claims::new(Role::Staff, Some("c001".into()), now - 100, 10).unwrap())),
        (
            "wrong secret".into(),
            TokenKeys::new("another-secret-0123456789").sign(&Claims::new(Role::Command, None, now, 3600).unwrap()),
        ),
        ("unit_admin".into(), app.token(Role::UnitAdmin, Some(&app.city.members[0].unit_id))),
    ];
    let tamper = {
        let t = app.staff("c002");
        let (head, sig) = t.rsplit_once('.').unwrap();
        format!("{head}.{}x", &sig[..sig.len() - 1])
    };
    tokens.push(("tampered".into(), tamper));
    let t = |name: &str| tokens.iter().find(|(n, _)| n == name).unwrap().1.clone();

    // Header: accepted and refused, reads and writes, 2xx and 4xx.
    assert_eq!(app.put_city(&t("command"), &app.city).await.status(), 200);
    let body = json!({"grid_id": "c001-g1", "category": "patrol", "level": "III", "headcount": 1});
    assert_eq!(app.post(&t("staff"), "/v1/incidents", body.clone()).await.status(), 201);
    assert_eq!(app.get(&t("staff"), "/v1/incidents/inc-999999").await.status(), 404);
    assert_eq!(app.post(&t("member"), "/v1/incidents", body.clone()).await.status(), 403);
    for bad in ["expired", "wrong secret", "tampered"] {
        assert_eq!(app.get(&t(bad), "/v1/incidents").await.status(), 401, "{bad}");
        assert_eq!(app.post(&t(bad), "/v1/incidents", body.clone()).await.status(), 401, "{bad}");
    }
    let raw = app.http.get(app.url("/v1/incidents")).header("authorization", t("staff")).send().await.unwrap();
    assert_eq!(raw.status(), 401, "a token without 'Bearer '");
    let resp = app.http.get(app.url(&format!("/v1/incidents?access_token={}", t("staff")))).send().await.unwrap();
    assert_eq!(resp.status(), 401, "a token in an HTTP query is not a credential");
    let resp = app
        .http
        .get(app.url(&format!("/v1/incidents?access_token={}", t("staff"))))
        .bearer_auth(t("staff"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400, "an unknown query parameter");
    let resp = app.http.get(app.url(&format!("/nowhere/{}", t("unit_admin")))).send().await.unwrap();
    assert_eq!(resp.status(), 404, "a token in an unknown path");

    // Websocket: query and subprotocol, accepted and refused, with a refused origin too.
    let url = |tok: &str| format!("ws://{}/v1/ws?access_token={tok}&after_seq=0", app.addr);
    assert!(ws_open(url(&t("member")).into_client_request().unwrap()).await);
    for bad in ["expired", "wrong secret", "tampered"] {
        assert!(!ws_open(url(&t(bad)).into_client_request().unwrap()).await, "{bad}");
    }
    let mut req = format!("ws://{}/v1/ws", app.addr).into_client_request().unwrap();
    let proto = format!("muster.v1, bearer.{}", t("member for the subprotocol"));
    req.headers_mut().insert("sec-websocket-protocol", HeaderValue::from_str(&proto).unwrap());
    assert!(ws_open(req).await);
    for bad in ["expired", "tampered"] {
        let mut req = format!("ws://{}/v1/ws", app.addr).into_client_request().unwrap();
        let proto = format!("muster.v1, bearer.{}", t(bad));
        req.headers_mut().insert("sec-websocket-protocol", HeaderValue::from_str(&proto).unwrap());
        assert!(!ws_open(req).await, "{bad}");
    }
    let mut req = url(&t("member")).into_client_request().unwrap();
    req.headers_mut().insert("origin", HeaderValue::from_static("http://evil.example"));
    assert!(!ws_open(req).await, "foreign origin");
    // A websocket message that echoes nothing of the token either.
    let mut ws = app.ws(&t("member"), None).await;
    assert_eq!(ws.request("accept", json!({"offer_id": t("member")})).await["type"], "error");
    drop(ws);

    tokio::time::sleep(Duration::from_millis(300)).await;
    p.kill9();
    let text = std::fs::read_to_string(&log_path).unwrap();
    (text, tokens)
}

fn assert_no_token(log: &str, tokens: &[(String, String)], what: &str) {
    // The log is not empty: requests were logged at debug, so the search means something.
    assert!(log.contains("/v1/incidents") && log.contains("/v1/ws"), "{what}: requests are not logged:\n{log:.2000}");
    for (name, token) in tokens {
        let mut parts = token.split('.');
        let (_header, payload, signature) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap());
        assert!(!log.contains(token.as_str()), "{what}: the {name} token is in the log");
        assert!(!log.contains(payload), "{what}: the {name} token's payload is in the log");
        assert!(!log.contains(signature), "{what}: the {name} token's signature is in the log");
    }
}

#[tokio::test]
async fn debug_logs_in_json_never_contain_a_token() {
    let (log, tokens) = drive("json", "debug").await;
    assert_no_token(&log, &tokens, "json, debug");
}

#[tokio::test]
async fn debug_logs_in_text_never_contain_a_token() {
    let (log, tokens) = drive("text", "debug").await;
    assert_no_token(&log, &tokens, "text, debug");
}

/// Issue #20: `serve --demo` (the real binary) has no SMS gateway, so it writes a resident's
/// sign-in code to its log, by the code's challenge id, at the default level; the code read
/// from there signs the resident in. The phone number is never in the log, in any spelling,
/// even at debug.
#[tokio::test]
async fn the_demo_logs_a_residents_code_by_challenge_id_and_never_the_phone() {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("stderr.log");
    let demo = crate::readme::start_demo_with(
        &dir.path().join("data"),
        &["--demo-members", "400"],
        &[("MUSTER_LOG__FILTER", "debug"), ("MUSTER_LOG__FORMAT", "text")],
        std::fs::File::create(&log_path).unwrap().into(),
    );
    let addr = demo.addr.clone();
    let http = reqwest::Client::new();
    let mut challenges = Vec::new();
    for phone in ["138 0013 8000", "+8613900139000"] {
        let resp = http
            .post(format!("http://{addr}/v1/residents/code"))
            .json(&json!({"community_id": "c001", "phone": phone}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 202, "{}", resp.text().await.unwrap());
        let v: serde_json::Value = resp.json().await.unwrap();
        challenges.push(v["challenge_id"].as_str().unwrap().to_string());
    }
    // The code, from the log line of its challenge (the line may take a moment to land;
    // the text format colours its fields).
    let code_of = |log: &str, challenge: &str| -> Option<String> {
        let log = without_ansi(log);
        let line = log.lines().find(|l| l.contains("resident sign-in code") && l.contains(challenge))?;
        let code: String = line.split("code=").nth(1)?.chars().take_while(char::is_ascii_digit).collect();
        (code.len() == 6).then_some(code)
    };
    let mut code = None;
    for _ in 0..100 {
        code = code_of(&std::fs::read_to_string(&log_path).unwrap(), &challenges[0]);
        if code.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let code = code.expect("the demo logs the code by its challenge id");
    let resp = http
        .post(format!("http://{addr}/v1/session/resident"))
        .json(&json!({"challenge_id": challenges[0], "code": code}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "the logged code signs the resident in");
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["role"], "resident");

    drop(demo);
    let log = without_ansi(&std::fs::read_to_string(&log_path).unwrap());
    assert!(code_of(&log, &challenges[1]).is_some(), "the second code is logged too:\n{log:.3000}");
    assert!(log.contains("/v1/residents/code"), "requests are logged at debug, so the search means something");
    for phone in ["13800138000", "138 0013 8000", "13900139000", "+8613900139000"] {
        assert!(!log.contains(phone), "the phone ({phone}) is in the log");
    }
}

/// The text without its terminal colour codes (`ESC [ … letter`).
fn without_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
