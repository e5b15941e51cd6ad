//! Issue 17, Command: the dashboard orders a mobilization (confirmed in the page's dialog),
//! members acknowledge it over their websockets, the progress panel follows live and command
//! closes it; a balance proposal is applied with a click and the map recolours; the sign-in
//! links issued are listed and one is revoked.

use super::*;
use muster::domain::org::TeamKind;

/// An assault team with members: (team id, its members' ids).
fn assault_team(app: &TestApp) -> (String, Vec<String>) {
    let city = &app.city;
    city.teams
        .iter()
        .filter(|t| t.kind == TeamKind::Assault)
        .map(|t| {
            let members: Vec<String> =
                city.members.iter().filter(|m| m.team_id.as_deref() == Some(&t.id)).map(|m| m.id.clone()).collect();
            (t.id.clone(), members)
        })
        .find(|(_, m)| !m.is_empty())
        .expect("the test city has an assault team with members")
}

async fn confirm(b: &Browser) {
    b.wait("the confirm dialog", "return document.querySelector('#ask').open").await;
    b.click("#ask-ok").await;
    b.wait("the dialog closed", "return !document.querySelector('#ask').open").await;
}

#[tokio::test]
async fn command_orders_a_mobilization_members_acknowledge_live_and_command_closes_it() {
    let app = spawn_app().await;
    let (team, members) = assault_team(&app);
    let mut sockets = Vec::new();
    for m in &members {
        sockets.push(app.ws(&app.member(m), None).await);
    }
    let driver = Driver::start().await;
    let dash = driver.browser("dashboard-mobilize").await;
    dash.goto(&app.url("/dashboard")).await;
    dash.sign_in(&app.command()).await;
    dash.wait(
        "the order form",
        "return !!document.querySelector('#mobo-form') && !document.querySelector('#app').hidden",
    )
    .await;

    // A refusal by code: an unknown team, in Chinese, and nothing ordered.
    dash.type_into("#mobo-teams", "t-nope").await;
    dash.click("#mobo-submit").await;
    confirm(&dash).await;
    dash.wait(
        "the refusal",
        "const m = document.querySelector('#mobo-msg'); return m.dataset.kind === 'error' && m.textContent.includes('没有这支队伍')",
    )
    .await;
    let open: Value = app.get(&app.command(), "/v1/mobilizations?status=open").await.json().await.unwrap();
    assert_eq!(open, json!([]), "a refused order ordered something");

    // The order: named team, to its paired community, with a note; confirmed.
    dash.type_into("#mobo-teams", &team).await;
    dash.type_into("#mobo-note", "防汛集结").await;
    dash.click("#mobo-submit").await;
    dash.wait(
        "the dialog names the team",
        &format!("return document.querySelector('#ask-message').textContent.includes('{team}')"),
    )
    .await;
    confirm(&dash).await;
    dash.wait("ordered", "return document.querySelector('#mobo-msg').dataset.kind === 'ok'").await;
    let open: Value = app.get(&app.command(), "/v1/mobilizations?status=open").await.json().await.unwrap();
    let mob = open[0]["id"].as_str().expect("one open mobilization").to_string();
    assert_eq!(open[0]["note"], "防汛集结", "{open}");
    assert_eq!(open[0]["ordered"], members.len(), "{open}");
    let panel = format!("#mobs article[data-mobilization=\"{mob}\"]");
    dash.wait("the progress panel", &format!("return !!document.querySelector('{panel}')")).await;

    // Each member acknowledges through their socket; the panel counts them live.
    for (i, ws) in sockets.iter_mut().enumerate() {
        let order = ws.expect("mobilization.order").await;
        assert_eq!(order["data"]["mobilization_id"], mob.as_str(), "{order}");
        let r = ws.request("mobilization.ack", json!({"mobilization_id": mob})).await;
        assert_eq!(r["type"], "ok", "{r}");
        let n = i + 1;
        dash.wait(
            &format!("{n} acknowledged on the panel"),
            &format!("return /确认 {n}\\b/.test(document.querySelector('{panel} .counts').textContent)"),
        )
        .await;
    }
    dash.accessible("a mobilization ordered and acknowledged").await;
    dash.fits_360().await;
    dash.screenshot("dashboard-mobilize").await;

    // Closed from its card, with a reason typed in the dialog.
    dash.click(&format!("{panel} button.close-mob")).await;
    dash.wait(
        "the close dialog",
        "return document.querySelector('#ask').open && document.activeElement.id === 'ask-input'",
    )
    .await;
    dash.type_into("#ask-input", "演练结束").await;
    dash.click("#ask-ok").await;
    dash.wait("the card gone", &format!("return !document.querySelector('{panel}')")).await;
    let view: Value = app.get(&app.command(), &format!("/v1/mobilizations/{mob}")).await.json().await.unwrap();
    assert_eq!(view["status"], "closed", "{view}");
    for ws in sockets.iter_mut() {
        let f = ws.expect("mobilization.closed").await;
        assert_eq!(f["data"]["mobilization_id"], mob.as_str(), "{f}");
    }
    dash.no_console_errors(&["/v1/mobilizations"]).await;
    dash.close().await;
    app.stop().await;
}

async fn balance_of(app: &TestApp, community: &str) -> Value {
    let b: Value = app.get(&app.command(), "/v1/balance").await.json().await.unwrap();
    b["communities"].as_array().unwrap().iter().find(|c| c["community_id"] == community).unwrap().clone()
}

#[tokio::test]
async fn command_applies_a_balance_proposal_and_the_map_recolours() {
    let app = spawn_app().await;
    let communities: Value = app.get(&app.command(), "/v1/communities").await.json().await.unwrap();
    let c001 = communities.as_array().unwrap().iter().find(|c| c["id"] == "c001").unwrap();
    let district = c001["district_id"].as_str().unwrap().to_string();
    let resp = app
        .http
        .put(app.url(&format!("/v1/districts/{district}/mode")))
        .bearer_auth(app.command())
        .json(&json!({"mode": "wartime", "reason": "演练"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // A call two members beyond what c001 has: a small deficit a transfer can fill.
    let available = balance_of(&app, "c001").await["available"].as_i64().unwrap();
    app.raise(
        &app.command(),
        json!({"grid_id": "c001-g1", "category": "emergency_rescue", "level": "IV", "headcount": available + 2}),
    )
    .await;
    let before = balance_of(&app, "c001").await["balance"].as_i64().unwrap();
    assert!(before < 0, "c001 is short: {before}");

    // A proposal whose giver or taker changes colour (the dashboard's legend buckets).
    let all: Value = app.get(&app.command(), "/v1/balance").await.json().await.unwrap();
    let bal = |id: &str| balance_in(&all, id);
    let p = all["proposals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| {
            let n = p["members"].as_array().unwrap().len() as i64;
            p["to"] == "c001" && {
                let (g, t) = (bal(p["from"].as_str().unwrap()), bal("c001"));
                bucket(g) != bucket(g - n) || bucket(t) != bucket(t + n)
            }
        })
        .unwrap_or_else(|| panic!("no proposal for c001 that changes a colour: {all}"))
        .clone();
    let from = p["from"].as_str().unwrap().to_string();
    let n = p["members"].as_array().unwrap().len() as i64;

    let driver = Driver::start().await;
    let dash = driver.browser("dashboard-balance").await;
    dash.goto(&app.url("/dashboard")).await;
    dash.sign_in(&app.command()).await;
    let card = format!("#proposals li[data-proposal=\"{}\"]", p["id"].as_str().unwrap());
    dash.wait("the proposal", &format!("return !!document.querySelector('{card}')")).await;
    let area_class = |id: &str| {
        format!("return document.querySelector('#citymap path.area[data-id=\"{id}\"]').getAttribute('class')")
    };
    let painted = |id: &str, b: i64| {
        format!(
            "const a = document.querySelector('#citymap path.area[data-id=\"{id}\"]'); \
             return a.dataset.balance === '{b}' && a.classList.contains('{}')",
            bucket(b)
        )
    };
    for id in [from.as_str(), "c001"] {
        dash.wait(&format!("{id} painted"), &painted(id, bal(id))).await;
    }
    let before = [dash.js(&area_class(&from)).await, dash.js(&area_class("c001")).await];
    dash.click(&format!("{card} button.apply")).await;
    confirm(&dash).await;
    dash.wait("applied", "return document.querySelector('#bal-msg').dataset.kind === 'ok'").await;
    let now: Value = app.get(&app.command(), "/v1/balance").await.json().await.unwrap();
    assert_eq!(balance_in(&now, &from), bal(&from) - n, "{now}");
    assert_eq!(balance_in(&now, "c001"), bal("c001") + n, "{now}");
    for id in [from.as_str(), "c001"] {
        dash.wait(&format!("{id} recoloured"), &painted(id, balance_in(&now, id))).await;
    }
    let after = [dash.js(&area_class(&from)).await, dash.js(&area_class("c001")).await];
    assert_ne!(before, after, "no colour changed on the map");
    dash.accessible("a balance proposal applied").await;
    dash.screenshot("dashboard-balance").await;
    dash.no_console_errors(&[]).await;
    dash.close().await;
    app.stop().await;
}

fn balance_in(all: &Value, id: &str) -> i64 {
    all["communities"].as_array().unwrap().iter().find(|c| c["community_id"] == id).unwrap()["balance"]
        .as_i64()
        .unwrap()
}

/// The dashboard's colour for a balance (its legend: src/web/dashboard.js `bucket`).
fn bucket(n: i64) -> &'static str {
    match n {
        ..=-10 => "b-d3",
        -9..=-3 => "b-d2",
        -2..=-1 => "b-d1",
        0 => "b-0",
        1..=4 => "b-s1",
        5..=19 => "b-s2",
        _ => "b-s3",
    }
}

#[tokio::test]
async fn command_lists_the_links_it_issued_and_revokes_one() {
    let app = spawn_app().await;
    let driver = Driver::start().await;
    let dash = driver.browser("dashboard-invitations").await;
    dash.goto(&app.url("/dashboard")).await;
    dash.sign_in(&app.command()).await;
    dash.wait("the invite panel", "return !document.querySelector('#invite').hidden").await;
    dash.select("#invite-role", "staff").await;
    dash.type_into("#invite-who", "c001").await;
    dash.click("#invite-submit").await;
    dash.wait(
        "the link listed",
        "return document.querySelectorAll('#invitations li[data-state=\"open\"]').length === 1",
    )
    .await;
    dash.click("#invitations li[data-state=\"open\"] button.revoke-link").await;
    confirm(&dash).await;
    dash.wait("the link revoked", "return !!document.querySelector('#invitations li[data-state=\"revoked\"]')").await;
    let list: Value = app.get(&app.command(), "/v1/invitations").await.json().await.unwrap();
    assert_eq!(list[0]["state"], "revoked", "{list}");

    // Every token of a member refused from now on.
    let member = app.city.members[0].id.clone();
    let token = app.member(&member);
    assert_eq!(app.get(&token, &format!("/v1/members/{member}")).await.status(), 200);
    dash.type_into("#revoke-sub", &format!("member:{member}")).await;
    dash.click("#revoke-submit").await;
    confirm(&dash).await;
    dash.wait("revoked", "return document.querySelector('#revoke-msg').dataset.kind === 'ok'").await;
    assert_eq!(app.get(&token, &format!("/v1/members/{member}")).await.status(), 401);
    dash.accessible("the invitations listed").await;
    dash.no_console_errors(&[]).await;
    dash.close().await;
    app.stop().await;
}
