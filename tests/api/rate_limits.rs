//! Rate limits through the real server, with low limits set by environment: per token
//! subject and per client address over HTTP (429 problem+json with Retry-After, others
//! unaffected), and per socket on the websocket (`rate_limited`, then close 4029 for a
//! flood, while another socket on the same server carries on).

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::*;

/// Sends GETs until one answers 429 (at most `n`); returns how many passed and the 429.
async fn until_429(app: &TestApp, http: &reqwest::Client, token: &str, n: usize) -> (usize, reqwest::Response) {
    for passed in 0..n {
        let resp = http.get(app.url("/v1/catalog")).bearer_auth(token).send().await.unwrap();
        match resp.status().as_u16() {
            200 => continue,
            429 => return (passed, resp),
            other => panic!("answered {other}"),
        }
    }
    panic!("no 429 after {n} requests");
}

async fn assert_429(resp: reqwest::Response) -> u64 {
    let retry = resp.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
    let p = assert_problem(resp, 429, Some("rate_limited")).await;
    assert!(p["detail"].as_str().unwrap().contains("retry"), "{p}");
    let secs: u64 = retry.expect("Retry-After").parse().expect("Retry-After in seconds");
    assert!((1..=2).contains(&secs), "Retry-After {secs}");
    secs
}

#[tokio::test]
async fn a_token_over_its_rate_gets_429_with_retry_after_and_others_do_not() {
    let app = spawn_app_with(&[
        ("MUSTER_LIMITS__HTTP_PER_SUBJECT_PER_S", "2"),
        ("MUSTER_LIMITS__HTTP_PER_SUBJECT_BURST", "3"),
    ])
    .await;
    let staff = app.staff("c001");
    let (passed, resp) = until_429(&app, &app.http, &staff, 20).await;
    assert!((2..=4).contains(&passed), "{passed} requests passed before the first 429 (burst 3)");
    let retry = assert_429(resp).await;
    // Writes are limited alike, and a refused one changes nothing.
    let body = json!({"grid_id": "c001-g1", "category": "patrol", "level": "III", "headcount": 1});
    let resp = app.post(&staff, "/v1/incidents", body.clone()).await;
    assert_429(resp).await;
    // Another subject, and the probes, are not limited by this one.
    let other = app.staff("c002");
    assert_eq!(app.get(&other, "/v1/catalog").await.status(), 200);
    assert_eq!(app.http.get(app.url("/healthz")).send().await.unwrap().status(), 200);
    // Two tokens of the same subject share its budget (the limit is per subject, not per
    // token string).
    let same_subject = app.token(muster::gateway::auth::Role::Staff, Some("c001"));
    assert_eq!(app.get(&same_subject, "/v1/catalog").await.status(), 429);
    // After Retry-After it passes again.
    tokio::time::sleep(Duration::from_secs(retry)).await;
    assert_eq!(app.raise(&staff, body).await["status"], "open");
    let list: Vec<Value> = app.get(&app.command(), "/v1/incidents").await.json().await.unwrap();
    assert_eq!(list.len(), 1, "only the accepted raise created an incident");
    app.stop().await;
}

#[tokio::test]
async fn an_address_over_its_rate_gets_429_and_another_address_does_not() {
    let app =
        spawn_app_with(&[("MUSTER_LIMITS__HTTP_PER_IP_PER_S", "3"), ("MUSTER_LIMITS__HTTP_PER_IP_BURST", "5")]).await;
    // The import used some of 127.0.0.1's budget: let it refill.
    tokio::time::sleep(Duration::from_millis(1800)).await;
    let tokens: Vec<String> = app.city.members.iter().take(12).map(|m| app.member(&m.id)).collect();
    // Different subjects from one address: the address's limit applies.
    let mut passed = 0;
    let mut refused = None;
    for t in &tokens {
        let resp = app.get(t, "/v1/catalog").await;
        match resp.status().as_u16() {
            200 => passed += 1,
            429 => {
                refused = Some(resp);
                break;
            }
            other => panic!("{other}"),
        }
    }
    assert!((4..=6).contains(&passed), "{passed} passed before the first 429 (burst 5)");
    assert_429(refused.expect("a 429")).await;
    // Unauthenticated requests from the address are limited too (before any token check).
    let resp = app.http.get(app.url("/v1/catalog")).send().await.unwrap();
    assert_eq!(resp.status(), 429);
    // The probes are not.
    assert_eq!(app.http.get(app.url("/readyz")).send().await.unwrap().status(), 200);
    // Another loopback address has its own budget.
    let other_ip = reqwest::Client::builder().local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))).build().unwrap();
    let resp = other_ip.get(app.url("/v1/catalog")).bearer_auth(&tokens[0]).send().await.unwrap();
    assert_eq!(resp.status(), 200, "127.0.0.2 is limited by 127.0.0.1's requests");
    app.stop().await;
}

#[tokio::test]
async fn websocket_messages_over_the_rate_get_rate_limited_then_a_flood_is_closed_with_4029() {
    let app = spawn_app_with(&[
        ("MUSTER_LIMITS__WS_MESSAGES_PER_S", "5"),
        ("MUSTER_LIMITS__WS_MESSAGES_BURST", "5"),
        ("MUSTER_LIMITS__WS_FLOOD_CLOSE_AFTER", "20"),
    ])
    .await;
    let m = app.city.members[0].id.clone();
    let mut control = app.ws(&app.member(&app.city.members[1].id), None).await;
    let mut flood = app.ws(&app.member(&m), None).await;

    // 200 pings at once, without waiting for answers.
    for i in 0..200 {
        let msg = json!({"id": i, "type": "ping"}).to_string();
        if flood.socket.send(Message::Text(msg.into())).await.is_err() {
            break;
        }
    }
    let (mut ok, mut limited, mut code) = (0, 0, None);
    // Bounds that only end a hung test: the answers come at once.
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(10), flood.socket.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                let f: Value = serde_json::from_str(&t).unwrap();
                match f["type"].as_str().unwrap() {
                    "ok" => {
                        assert_eq!(limited, 0, "an ok after a rate_limited in the same burst");
                        ok += 1;
                    }
                    "error" => {
                        assert_eq!(f["data"]["code"], "rate_limited", "{f}");
                        assert!(f["data"]["re"].is_number(), "the error names the message: {f}");
                        limited += 1;
                    }
                    _ => {}
                }
            }
            Ok(Some(Ok(Message::Close(f)))) => {
                code = f.map(|f| u16::from(f.code));
                break;
            }
            Ok(Some(Ok(_))) => {}
            _ => break,
        }
    }
    assert!((5..=7).contains(&ok), "{ok} pings passed (burst 5)");
    assert_eq!(limited, 20, "20 rate_limited answers, then the close");
    assert_eq!(code, Some(4029));
    // The control socket on the same server never noticed: it answers at once (a few ms;
    // 5 s is the margin a loaded 2-core run of the whole suite needs).
    let t = Instant::now();
    assert_eq!(control.request("ping", json!({})).await["type"], "ok");
    let took = t.elapsed();
    eprintln!("after a flood: the control socket answered in {took:?}");
    assert!(took < Duration::from_secs(5), "the control socket answered after {took:?}");
    // A member whose socket was closed for flooding may connect again.
    let mut again = app.ws(&app.member(&m), None).await;
    assert_eq!(again.request("ping", json!({})).await["type"], "ok");
    app.stop().await;
}

#[tokio::test]
async fn a_socket_under_its_rate_is_never_limited() {
    let app =
        spawn_app_with(&[("MUSTER_LIMITS__WS_MESSAGES_PER_S", "20"), ("MUSTER_LIMITS__WS_MESSAGES_BURST", "5")]).await;
    let mut ws = app.ws(&app.member(&app.city.members[0].id), None).await;
    for _ in 0..15 {
        assert_eq!(ws.request("ping", json!({})).await["type"], "ok");
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    app.stop().await;
}
