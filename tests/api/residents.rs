//! Residents (issue #20) over HTTP and websockets: a code sent through a real HTTP SMS
//! gateway on loopback (which can be told to fail), sign-in with it (a wrong code uses up
//! an attempt), a request placed, followed live on the resident's own stream while staff
//! dispatch it and a member takes, serves and checks out of its order, then confirmed and
//! rated; scope (another resident, another community's staff: the same 404 as a missing
//! request; a resident reads nothing else of the city); rate limits per phone and per
//! address; merge, decline and 创单 (a member's proposal approved into an order they hold).

use std::sync::{Arc, Mutex};

use axum::routing::post;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::helpers::*;

/// An HTTP SMS gateway on loopback: takes `POST /sms {"to", "text"}`, hands each message
/// to the test, and answers `fail` when told to.
pub(crate) struct Sms {
    url: String,
    rx: mpsc::UnboundedReceiver<Value>,
    fail: Arc<Mutex<Option<u16>>>,
}

pub(crate) async fn sms_gateway() -> Sms {
    let (tx, rx) = mpsc::unbounded_channel();
    let fail: Arc<Mutex<Option<u16>>> = Arc::default();
    let f = fail.clone();
    let router = axum::Router::new().route(
        "/sms",
        post(move |axum::Json(body): axum::Json<Value>| {
            let (tx, f) = (tx.clone(), f.clone());
            async move {
                if let Some(status) = *f.lock().unwrap() {
                    return axum::http::StatusCode::from_u16(status).unwrap();
                }
                tx.send(body).unwrap();
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/sms", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    Sms { url, rx, fail }
}

impl Sms {
    /// The next message's recipient and its six-digit code.
    pub(crate) async fn code(&mut self) -> (String, String) {
        let m = tokio::time::timeout(WAIT, self.rx.recv()).await.expect("an SMS arrives").unwrap();
        let text = m["text"].as_str().unwrap();
        let code: String = text.chars().filter(char::is_ascii_digit).take(6).collect();
        assert_eq!(code.len(), 6, "{text}");
        (m["to"].as_str().unwrap().to_string(), code)
    }
}

pub(crate) async fn spawn_with_sms(extra: &[(&str, &str)]) -> (TestApp, Sms) {
    let sms = sms_gateway().await;
    let url = format!("\"{}\"", sms.url);
    let mut overrides = vec![("MUSTER_RESIDENTS__SMS_URL", url.as_str())];
    overrides.extend_from_slice(extra);
    (spawn_app_with(&overrides).await, sms)
}

fn phone() -> reqwest::Client {
    reqwest::Client::builder().cookie_store(true).build().unwrap()
}

async fn ask_code(app: &TestApp, community: &str, phone: &str) -> reqwest::Response {
    app.http
        .post(app.url("/v1/residents/code"))
        .json(&json!({"community_id": community, "phone": phone}))
        .send()
        .await
        .unwrap()
}

/// Signs a resident in through the SMS gateway; answers their access token.
async fn sign_in(app: &TestApp, sms: &mut Sms, community: &str, number: &str) -> String {
    let resp = ask_code(app, community, number).await;
    assert_eq!(resp.status(), 202);
    let challenge = resp.json::<Value>().await.unwrap()["challenge_id"].as_str().unwrap().to_string();
    let (to, code) = sms.code().await;
    assert_eq!(to, number);
    let resp = phone()
        .post(app.url("/v1/session/resident"))
        .json(&json!({"challenge_id": challenge, "code": code}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!((v["role"].as_str(), v["home"].as_str()), (Some("resident"), Some("/r")), "{v}");
    v["access_token"].as_str().unwrap().to_string()
}

fn at(offset_s: i64) -> String {
    muster::domain::dispatcher::rfc3339(muster::engine::now_ms() + offset_s * 1000)
}

async fn place(app: &TestApp, token: &str, grid: &str) -> Value {
    let body = json!({
        "category": "elderly_help", "description": "帮忙取药", "grid_id": grid,
        "preferred_start": at(0), "preferred_end": at(86_400),
    });
    let resp = app.post(token, "/v1/requests", body).await;
    assert_eq!(resp.status(), 201);
    resp.json().await.unwrap()
}

fn dispatch_body() -> Value {
    json!({"window_start": at(-60), "window_end": at(86_400), "slots": 1})
}

#[tokio::test]
async fn a_resident_signs_in_by_sms_places_a_request_follows_it_live_and_confirms_and_rates_it() {
    let (app, mut sms) = spawn_with_sms(&[]).await;
    // A wrong code uses up an attempt and signs nobody in; the right one then does.
    let resp = ask_code(&app, "c001", "138 0013 8000").await;
    assert_eq!(resp.status(), 202);
    let challenge = resp.json::<Value>().await.unwrap()["challenge_id"].as_str().unwrap().to_string();
    let (to, code) = sms.code().await;
    assert_eq!(to, "13800138000", "the number is normalized");
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let p = phone();
    let verify = |code: String| {
        p.post(app.url("/v1/session/resident")).json(&json!({"challenge_id": challenge, "code": code})).send()
    };
    assert_problem(verify(wrong.into()).await.unwrap(), 401, Some("wrong_code")).await;
    let resp = verify(code.clone()).await.unwrap();
    assert_eq!(resp.status(), 200);
    let me = resp.json::<Value>().await.unwrap();
    let token = me["access_token"].as_str().unwrap().to_string();
    assert_eq!(me["resident_id"], "r-1");
    // The refresh cookie works as for any session. Used, the same code is unknown (and, as
    // any refused sign-in, clears the cookie).
    let refreshed = p.post(app.url("/v1/session/refresh")).send().await.unwrap();
    assert_eq!(refreshed.status(), 200);
    assert_problem(verify(code).await.unwrap(), 401, Some("unknown_challenge")).await;

    let mut live = app.ws(&token, None).await;
    assert_eq!(live.hello["data"]["role"], "resident");
    let mut staff_ws = app.ws(&app.staff("c001"), None).await;
    let req = place(&app, &token, "c001-g1").await;
    let id = req["id"].as_str().unwrap().to_string();
    assert_eq!(req["status"], "submitted");
    assert!(req.get("phone").is_none(), "{req}");
    assert_eq!(live.expect("request.updated").await["data"]["status"], "submitted");
    let placed = staff_ws.expect("request.placed").await;
    assert_eq!(placed["data"]["id"], id.as_str());
    assert!(!placed.to_string().contains("13800138000"), "no phone in a frame: {placed}");
    // Staff see the phone, to call back.
    let inbox: Value = app.get(&app.staff("c001"), "/v1/requests?status=submitted").await.json().await.unwrap();
    assert_eq!(inbox[0]["phone"], "13800138000");

    let resp = app.post(&app.staff("c001"), &format!("/v1/requests/{id}/dispatch"), dispatch_body()).await;
    assert_eq!(resp.status(), 200);
    let order = resp.json::<Value>().await.unwrap()["order_id"].as_str().unwrap().to_string();
    assert_eq!(live.expect("request.updated").await["data"]["status"], "dispatched");

    // A member of c001 takes the order, checks in and out where it is.
    let m = app.city.members[0].id.clone();
    let mt = app.member(&m);
    assert_eq!(app.post(&mt, &format!("/v1/orders/{order}/claim"), json!({})).await.status(), 200);
    assert_eq!(live.expect("request.updated").await["data"]["status"], "claimed");
    let o: Value = app.get(&mt, &format!("/v1/orders/{order}")).await.json().await.unwrap();
    let here = o["location"].clone();
    assert_eq!(app.post(&mt, &format!("/v1/orders/{order}/checkin"), here.clone()).await.status(), 200);
    assert_eq!(live.expect("request.updated").await["data"]["status"], "in_service");
    assert_eq!(app.post(&mt, &format!("/v1/orders/{order}/checkout"), here).await.status(), 200);
    assert_eq!(live.expect("request.updated").await["data"]["status"], "served");

    // Another resident, of the same community: the request is as missing as one that never was.
    let other = sign_in(&app, &mut sms, "c001", "13900139000").await;
    let theirs = app.get(&other, &format!("/v1/requests/{id}")).await;
    let missing = app.get(&other, "/v1/requests/req-999").await;
    let (a, b) = (assert_problem(theirs, 404, Some("unknown_request")).await, assert_problem(missing, 404, None).await);
    assert_eq!(a["detail"].as_str().unwrap().replace(&id, "X"), b["detail"].as_str().unwrap().replace("req-999", "X"));
    let confirm = json!({"rating": "very_good", "comment": "谢谢"});
    assert_problem(
        app.post(&other, &format!("/v1/requests/{id}/confirm"), confirm.clone()).await,
        404,
        Some("unknown_request"),
    )
    .await;
    let list: Value = app.get(&other, "/v1/requests").await.json().await.unwrap();
    assert_eq!(list, json!([]));
    // Staff of another community, likewise; and nothing else of the city for a resident.
    assert_problem(app.get(&app.staff("c002"), &format!("/v1/requests/{id}")).await, 404, Some("unknown_request"))
        .await;
    assert_problem(app.get(&token, "/v1/orders").await, 403, Some("role_not_allowed")).await;
    assert_problem(app.get(&token, &format!("/v1/members/{m}")).await, 404, None).await;
    assert_problem(app.get(&token, "/v1/incidents").await, 403, Some("role_not_allowed")).await;

    let resp = app.post(&token, &format!("/v1/requests/{id}/confirm"), confirm.clone()).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap()["status"], "confirmed");
    assert_eq!(live.expect("request.updated").await["data"]["rating"], "very_good");
    assert_problem(app.post(&token, &format!("/v1/requests/{id}/confirm"), confirm).await, 409, Some("already_rated"))
        .await;
    // The rating is the member's 一事一评.
    let rating = app.ws(&mt, Some(0)).await.expect("rating").await;
    assert_eq!(rating["data"]["rating"], "very_good");
    assert!(live.quiet_for(std::time::Duration::from_millis(200)).await, "nothing else reaches the resident");
    app.stop().await;
}

#[tokio::test]
async fn codes_are_limited_per_phone_and_per_address_and_a_failing_gateway_is_an_error() {
    let (app, mut sms) = spawn_with_sms(&[
        ("MUSTER_RESIDENTS__CODES_PER_PHONE_PER_HOUR", "2"),
        ("MUSTER_RESIDENTS__CODES_PER_IP_PER_HOUR", "5"),
    ])
    .await;
    for _ in 0..2 {
        assert_eq!(ask_code(&app, "c001", "13800000001").await.status(), 202);
        sms.code().await;
    }
    let third = assert_problem(ask_code(&app, "c001", "13800000001").await, 429, Some("rate_limited")).await;
    assert!(third["detail"].as_str().unwrap().contains("retry"), "{third}");
    // Another phone has room, until the address has asked five times (every ask counts).
    assert_eq!(ask_code(&app, "c001", "13800000002").await.status(), 202);
    sms.code().await;
    *sms.fail.lock().unwrap() = Some(500);
    assert_problem(ask_code(&app, "c001", "13800000003").await, 502, Some("sms_failed")).await;
    assert_problem(ask_code(&app, "c001", "13800000004").await, 429, Some("rate_limited")).await;
    // Bad input: nothing is sent.
    assert_problem(ask_code(&app, "c001", "12345").await, 422, Some("invalid_phone")).await;
    app.stop().await;

    let (app, _sms) = spawn_with_sms(&[]).await;
    assert_problem(ask_code(&app, "c999", "13800000001").await, 422, Some("unknown_community")).await;
    app.stop().await;
    // Without a gateway (and not in --demo), codes cannot be sent.
    let app = spawn_app().await;
    assert_problem(ask_code(&app, "c001", "13800000001").await, 503, Some("sms_unavailable")).await;
    app.stop().await;
}

#[tokio::test]
async fn a_phone_as_typed_is_the_number_the_document_describes_and_a_plus86_landline_stays_whole() {
    let (app, mut sms) = spawn_with_sms(&[]).await;
    // Spaces, dashes, parentheses and +86 before a mobile number come off.
    assert_eq!(ask_code(&app, "c001", "+86 (138) 0013-8000").await.status(), 202);
    assert_eq!(sms.code().await.0, "13800138000");
    // +86 and 11 digits that are not a mobile number (a Shenzhen landline) is "+ and 8 to 15
    // digits", as the document's pattern says: taken whole, not cut to a wrong mobile number.
    assert_eq!(ask_code(&app, "c001", "+8675512345678").await.status(), 202);
    assert_eq!(sms.code().await.0, "+8675512345678");
    assert_problem(ask_code(&app, "c001", "+86 12345").await, 422, Some("invalid_phone")).await;
    let doc: Value = app.http.get(app.url("/openapi.json")).send().await.unwrap().json().await.unwrap();
    let pattern = doc["components"]["schemas"]["CodeBody"]["properties"]["phone"]["pattern"].as_str().unwrap();
    assert!(pattern.contains("1[3-9][0-9]{9}") && pattern.contains("\\+[0-9]{8,15}"), "{pattern}");
    app.stop().await;
}

#[tokio::test]
async fn staff_merge_or_decline_requests_and_approve_a_members_proposal_into_an_order_they_hold() {
    let (app, mut sms) = spawn_with_sms(&[]).await;
    let token = sign_in(&app, &mut sms, "c001", "13800138000").await;
    let mut live = app.ws(&token, None).await;
    let first = place(&app, &token, "c001-g1").await["id"].as_str().unwrap().to_string();
    let second = place(&app, &token, "c001-g2").await["id"].as_str().unwrap().to_string();
    let third = place(&app, &token, "c001-g3").await["id"].as_str().unwrap().to_string();
    // Only a grid of the resident's own community.
    let body = json!({"category": "elderly_help", "description": "x", "grid_id": "c002-g1",
        "preferred_start": at(0), "preferred_end": at(60)});
    assert_problem(app.post(&token, "/v1/requests", body).await, 422, Some("unknown_grid")).await;
    let st = app.staff("c001");
    let d: Value =
        app.post(&st, &format!("/v1/requests/{first}/dispatch"), dispatch_body()).await.json().await.unwrap();
    let order = d["order_id"].as_str().unwrap();
    let m: Value =
        app.post(&st, &format!("/v1/requests/{second}/merge"), json!({"order_id": order})).await.json().await.unwrap();
    assert_eq!((m["order_id"].as_str(), m["merged"].as_bool()), (Some(order), Some(true)));
    assert_problem(
        app.post(&st, &format!("/v1/requests/{third}/decline"), json!({"reason": " "})).await,
        422,
        Some("reason_required"),
    )
    .await;
    let resp = app.post(&st, &format!("/v1/requests/{third}/decline"), json!({"reason": "请拨打12345"})).await;
    assert_eq!(resp.status(), 200);
    assert_problem(
        app.post(&st, &format!("/v1/requests/{third}/dispatch"), dispatch_body()).await,
        409,
        Some("request_closed"),
    )
    .await;
    let mut declined = None;
    while declined.is_none() {
        let f = live.expect("request.updated").await;
        if f["data"]["status"] == "declined" {
            declined = Some(f);
        }
    }
    assert_eq!(declined.unwrap()["data"]["reason"], "请拨打12345");

    // 创单.
    let who = app.city.members[1].id.clone();
    let mt = app.member(&who);
    let mut mws = app.ws(&mt, None).await;
    let body = json!({"category": "skills_training", "title": "教老人用智能手机", "grid_id": "c001-g1",
        "for_whom": "3栋老人", "window_start": at(0), "window_end": at(7200), "slots": 2});
    let resp = app.post(&mt, "/v1/proposals", body.clone()).await;
    assert_eq!(resp.status(), 201);
    let p = resp.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string();
    assert_problem(app.post(&st, "/v1/proposals", body).await, 403, Some("role_not_allowed")).await;
    assert_problem(
        app.post(&app.staff("c002"), &format!("/v1/proposals/{p}/approve"), json!({})).await,
        404,
        Some("unknown_proposal"),
    )
    .await;
    let mine: Value = app.get(&app.member(&app.city.members[2].id), "/v1/proposals").await.json().await.unwrap();
    assert_eq!(mine, json!([]), "another member sees none");
    let approved: Value = app.post(&st, &format!("/v1/proposals/{p}/approve"), json!({})).await.json().await.unwrap();
    assert_eq!(approved["status"], "approved");
    let order = approved["order_id"].as_str().unwrap();
    let o: Value = app.get(&st, &format!("/v1/orders/{order}")).await.json().await.unwrap();
    assert_eq!(o["claims"][0]["member_id"], who.as_str(), "{o}");
    assert_eq!(mws.expect("proposal.updated").await["data"]["status"], "proposed");
    assert_eq!(mws.expect("proposal.updated").await["data"]["status"], "approved");
    app.stop().await;
}
