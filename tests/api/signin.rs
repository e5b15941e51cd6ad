//! Sign-in without pasted tokens (issue 17): invitations over HTTP, the session they open
//! (access token + HttpOnly refresh cookie), rotation, reuse detection, sign-out, an admin
//! revoking a device, expired and reused links, and a session that survives kill -9.
//! Clients are real reqwest clients; a phone's cookie jar is reqwest's cookie store.

use std::time::Duration;

use reqwest::header::{COOKIE, SET_COOKIE};
use serde_json::{Value, json};

use crate::helpers::*;

/// A client that keeps cookies, as a browser does.
fn phone() -> reqwest::Client {
    reqwest::Client::builder().cookie_store(true).build().unwrap()
}

/// The `muster_refresh=…` pair of a Set-Cookie, and the whole header.
fn refresh_cookie(resp: &reqwest::Response) -> (String, String) {
    let h = resp
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|v| v.starts_with("muster_refresh="))
        .expect("a refresh cookie is set");
    (h.split(';').next().unwrap().to_string(), h)
}

/// A member living in c001 (the test city puts the first 20 there).
fn resident(app: &TestApp, i: usize) -> String {
    app.city.members[i].id.clone()
}

async fn invite(app: &TestApp, token: &str, body: Value) -> Value {
    let resp = app.post(token, "/v1/invitations", body).await;
    let status = resp.status();
    let v: Value = resp.json().await.unwrap();
    assert_eq!(status, 201, "{v}");
    v
}

async fn redeem(app: &TestApp, client: &reqwest::Client, code: &str) -> reqwest::Response {
    client.post(app.url("/v1/session")).json(&json!({"code": code, "device": "test phone"})).send().await.unwrap()
}

#[tokio::test]
async fn a_link_signs_in_refresh_rotates_and_a_reused_refresh_revokes_the_device() {
    let app = spawn_app().await;
    let m = resident(&app, 0);
    let inv = invite(&app, &app.staff("c001"), json!({"role": "member", "member_id": m})).await;
    let code = inv["code"].as_str().unwrap();
    assert_eq!(inv["link"], format!("http://{}/join#{code}", app.addr));
    assert_eq!(code.len(), 26);
    assert!(inv["qr_svg"].as_str().unwrap().contains("<svg"));
    assert_eq!(inv["member_id"], m);

    let p = phone();
    let resp = redeem(&app, &p, code).await;
    assert_eq!(resp.status(), 200);
    let (first, header) = refresh_cookie(&resp);
    for part in ["HttpOnly", "SameSite=Strict", "Path=/v1/session", "Max-Age="] {
        assert!(header.contains(part), "{header}");
    }
    assert!(!header.contains("Secure"), "plain http: {header}");
    let s: Value = resp.json().await.unwrap();
    assert_eq!(
        (s["role"].as_str(), s["member_id"].as_str(), s["home"].as_str()),
        (Some("member"), Some(&*m), Some("/m"))
    );
    assert_eq!(s["expires_in"], 900);
    let access = s["access_token"].as_str().unwrap().to_string();
    assert_eq!(app.get(&access, &format!("/v1/members/{m}")).await.status(), 200);

    // Refresh: a new access token and a rotated cookie.
    let resp = p.post(app.url("/v1/session/refresh")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let (second, _) = refresh_cookie(&resp);
    assert_ne!(first, second);
    let s: Value = resp.json().await.unwrap();
    let access2 = s["access_token"].as_str().unwrap().to_string();
    assert_eq!(app.get(&access2, &format!("/v1/members/{m}")).await.status(), 200);

    // The old cookie, from elsewhere: 401, and the whole family is revoked.
    let thief = reqwest::Client::new();
    let resp = thief.post(app.url("/v1/session/refresh")).header(COOKIE, &first).send().await.unwrap();
    assert_problem(resp, 401, Some("refresh_reused")).await;
    for t in [&access, &access2] {
        assert_problem(app.get(t, &format!("/v1/members/{m}")).await, 401, Some("unauthorized")).await;
    }
    let resp = p.post(app.url("/v1/session/refresh")).send().await.unwrap();
    assert_problem(resp, 401, Some("unknown_session")).await;
    // A socket with the family's token is refused too.
    let ws = tokio_tungstenite::connect_async(format!("ws://{}/v1/ws?access_token={access2}", app.addr)).await;
    assert!(ws.is_err(), "the handshake is refused");
    app.stop().await;
}

#[tokio::test]
async fn used_expired_revoked_and_unknown_links_sign_nobody_in() {
    let app = spawn_app().await;
    let staff = app.staff("c001");
    let m = resident(&app, 1);
    let used = invite(&app, &staff, json!({"role": "member", "member_id": m})).await;
    assert_eq!(redeem(&app, &phone(), used["code"].as_str().unwrap()).await.status(), 200);
    assert_problem(redeem(&app, &phone(), used["code"].as_str().unwrap()).await, 401, Some("invitation_used")).await;

    let short = invite(&app, &staff, json!({"role": "member", "member_id": m, "ttl_s": 1})).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let resp = redeem(&app, &phone(), short["code"].as_str().unwrap()).await;
    assert_problem(resp, 401, Some("invitation_expired")).await;

    let revoked = invite(&app, &staff, json!({"role": "member", "member_id": m})).await;
    let id = revoked["id"].as_str().unwrap();
    let resp = app.post(&staff, &format!("/v1/invitations/{id}/revoke"), json!({})).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap()["state"], "revoked");
    let resp = redeem(&app, &phone(), revoked["code"].as_str().unwrap()).await;
    assert_problem(resp, 401, Some("invitation_revoked")).await;
    assert_problem(redeem(&app, &phone(), "aaaaaaaaaaaaaaaaaaaaaaaaaa").await, 401, Some("unknown_invitation")).await;

    // The list shows each state, and never a code.
    let list: Value = app.get(&staff, "/v1/invitations").await.json().await.unwrap();
    let states: Vec<&str> = list.as_array().unwrap().iter().map(|i| i["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["revoked", "expired", "redeemed"]);
    assert!(!list.to_string().contains(used["code"].as_str().unwrap()));
    assert!(list.as_array().unwrap().iter().all(|i| i.get("code").is_none()));
    app.stop().await;
}

#[tokio::test]
async fn who_may_invite_whom_and_see_the_links() {
    let app = spawn_app().await;
    let m = resident(&app, 2);
    let (staff, other) = (app.staff("c001"), app.staff("c002"));
    assert_problem(
        app.post(&app.member(&m), "/v1/invitations", json!({"role": "member", "member_id": m})).await,
        403,
        Some("role_not_allowed"),
    )
    .await;
    let resp = app.post(&app.command(), "/v1/invitations", json!({"role": "member", "member_id": m})).await;
    assert_problem(resp, 403, Some("invitee_not_allowed")).await;
    let resp = app.post(&other, "/v1/invitations", json!({"role": "member", "member_id": m})).await;
    assert_problem(resp, 422, Some("unknown_member")).await;
    let resp = app.post(&other, "/v1/invitations", json!({"role": "member", "member_id": "nobody"})).await;
    assert_problem(resp, 422, Some("unknown_member")).await;
    let resp = app.post(&staff, "/v1/invitations", json!({"role": "member", "community_id": "c001"})).await;
    assert_problem(resp, 422, Some("invalid_body")).await;
    // Command invites staff; staff invites its residents.
    let s = invite(&app, &app.command(), json!({"role": "staff", "community_id": "c002"})).await;
    assert_eq!(s["community_id"], "c002");
    let inv = invite(&app, &staff, json!({"role": "member", "member_id": m})).await;
    let id = inv["id"].as_str().unwrap();
    let seen =
        |v: Value| v.as_array().unwrap().iter().map(|i| i["id"].as_str().unwrap().to_string()).collect::<Vec<_>>();
    assert_eq!(seen(app.get(&other, "/v1/invitations").await.json().await.unwrap()), Vec::<String>::new());
    assert!(seen(app.get(&staff, "/v1/invitations").await.json().await.unwrap()).contains(&id.to_string()));
    let resp = app.post(&other, &format!("/v1/invitations/{id}/revoke"), json!({})).await;
    assert_problem(resp, 404, Some("unknown_invitation")).await;
    let resp = app.post(&other, "/v1/invitations/inv-999999/revoke", json!({})).await;
    assert_problem(resp, 404, Some("unknown_invitation")).await;

    // A batch: one link per member, all or none, bad rows named.
    let csv = |rows: &[&str]| {
        format!("member_id,name\n{}\n", rows.iter().map(|r| format!("{r},x")).collect::<Vec<_>>().join("\n"))
    };
    let ids: Vec<String> = (3..6).map(|i| resident(&app, i)).collect();
    let send = |body: String| {
        app.http
            .post(app.url("/v1/invitations/batch"))
            .bearer_auth(&staff)
            .header("content-type", "text/csv")
            .body(body)
            .send()
    };
    let resp = send(csv(&[&ids[0], "nobody", &ids[1], "ghost"])).await.unwrap();
    let p = assert_problem(resp, 422, Some("unknown_member")).await;
    let detail = p["detail"].as_str().unwrap();
    assert!(detail.contains("row 2") && detail.contains("row 4") && !detail.contains("row 1"), "{detail}");
    let before = app.get(&staff, "/v1/invitations").await.json::<Value>().await.unwrap();
    let resp = send(csv(&ids.iter().map(String::as_str).collect::<Vec<_>>())).await.unwrap();
    assert_eq!(resp.status(), 201);
    let b: Value = resp.json().await.unwrap();
    let made = b["invitations"].as_array().unwrap();
    assert_eq!(made.iter().map(|i| i["member_id"].as_str().unwrap()).collect::<Vec<_>>(), ids);
    assert!(made.iter().all(|i| i["qr_svg"].as_str().unwrap().contains("<svg")));
    let after = app.get(&staff, "/v1/invitations").await.json::<Value>().await.unwrap();
    assert_eq!(after.as_array().unwrap().len(), before.as_array().unwrap().len() + 3);
    app.stop().await;
}

#[tokio::test]
async fn sign_out_and_an_admin_revoking_a_device() {
    let app = spawn_app().await;
    let staff = app.staff("c001");
    let m = resident(&app, 4);

    // Sign-out with the cookie: 204, the cookie cleared, the tokens refused.
    let p = phone();
    let inv = invite(&app, &staff, json!({"role": "member", "member_id": m})).await;
    let s: Value = redeem(&app, &p, inv["code"].as_str().unwrap()).await.json().await.unwrap();
    let access = s["access_token"].as_str().unwrap().to_string();
    let resp = p.post(app.url("/v1/session/signout")).send().await.unwrap();
    assert_eq!(resp.status(), 204);
    assert!(refresh_cookie(&resp).1.contains("Max-Age=0"));
    assert_problem(app.get(&access, &format!("/v1/members/{m}")).await, 401, None).await;
    assert_problem(p.post(app.url("/v1/session/refresh")).send().await.unwrap(), 401, None).await;

    // Two devices: the member sees both, staff of c001 sees them, staff of c002 does not.
    let (a, b) = (phone(), phone());
    let mut tokens = Vec::new();
    for client in [&a, &b] {
        let inv = invite(&app, &staff, json!({"role": "member", "member_id": m})).await;
        let s: Value = redeem(&app, client, inv["code"].as_str().unwrap()).await.json().await.unwrap();
        tokens.push((s["access_token"].as_str().unwrap().to_string(), s["session_id"].as_str().unwrap().to_string()));
    }
    let mine: Value = app.get(&tokens[0].0, "/v1/sessions").await.json().await.unwrap();
    let mine = mine.as_array().unwrap();
    assert_eq!(mine.len(), 2);
    assert_eq!(mine.iter().filter(|d| d["current"] == true).count(), 1);
    assert!(mine.iter().all(|d| d["device"] == "test phone" && d["member_id"] == m));
    let listed: Value = app.get(&staff, &format!("/v1/sessions?member_id={m}")).await.json().await.unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 2);
    let other = app.staff("c002");
    let listed: Value = app.get(&other, &format!("/v1/sessions?member_id={m}")).await.json().await.unwrap();
    assert_eq!(listed, json!([]));
    let family = &tokens[1].1;
    assert_problem(
        app.post(&other, &format!("/v1/sessions/{family}/revoke"), json!({})).await,
        404,
        Some("unknown_session"),
    )
    .await;
    assert_problem(app.post(&other, "/v1/sessions/nope/revoke", json!({})).await, 404, Some("unknown_session")).await;
    assert_eq!(app.post(&staff, &format!("/v1/sessions/{family}/revoke"), json!({})).await.status(), 204);
    // That device is out; the other goes on.
    assert_problem(app.get(&tokens[1].0, &format!("/v1/members/{m}")).await, 401, None).await;
    assert_problem(b.post(app.url("/v1/session/refresh")).send().await.unwrap(), 401, Some("unknown_session")).await;
    assert_eq!(app.get(&tokens[0].0, &format!("/v1/members/{m}")).await.status(), 200);
    assert_eq!(a.post(app.url("/v1/session/refresh")).send().await.unwrap().status(), 200);
    // Revoking every token of the member ends the other device too.
    assert_eq!(
        app.post(&app.command(), "/v1/tokens/revoke", json!({"subject": format!("member:{m}")})).await.status(),
        204
    );
    assert_problem(a.post(app.url("/v1/session/refresh")).send().await.unwrap(), 401, Some("unknown_session")).await;
    app.stop().await;
}

#[tokio::test]
async fn a_session_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let child = start_child(dir.path(), &[]);
    let app = child_client(&child.addr);
    assert_eq!(app.put_city(&app.command(), &app.city).await.status(), 200);
    let m = resident(&app, 5);
    let inv = invite(&app, &app.staff("c001"), json!({"role": "member", "member_id": m})).await;
    let resp = redeem(&app, &reqwest::Client::new(), inv["code"].as_str().unwrap()).await;
    assert_eq!(resp.status(), 200);
    let (cookie, _) = refresh_cookie(&resp);
    let s: Value = resp.json().await.unwrap();
    let access = s["access_token"].as_str().unwrap().to_string();
    child.kill9();

    let child = start_child(dir.path(), &[]);
    let app = child_client(&child.addr);
    assert_eq!(app.get(&access, &format!("/v1/members/{m}")).await.status(), 200);
    let resp = app.http.post(app.url("/v1/session/refresh")).header(COOKIE, &cookie).send().await.unwrap();
    assert_eq!(resp.status(), 200, "the session is still there after kill -9");
    // And the link stays used.
    let resp = redeem(&app, &reqwest::Client::new(), inv["code"].as_str().unwrap()).await;
    assert_problem(resp, 401, Some("invitation_used")).await;
}

#[tokio::test]
async fn sign_ins_are_rate_limited_per_address() {
    let app =
        spawn_app_with(&[("MUSTER_LIMITS__SESSION_PER_IP_PER_MIN", "1"), ("MUSTER_LIMITS__SESSION_PER_IP_BURST", "3")])
            .await;
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(redeem(&app, &phone(), "aaaaaaaaaaaaaaaaaaaaaaaaaa").await.status().as_u16());
    }
    assert_eq!(statuses, [401, 401, 401, 429, 429]);
    app.stop().await;
}
