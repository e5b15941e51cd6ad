//! A campaign running (issue #19): members hear their shifts over the websocket
//! (`campaign.shift`), command hears progress (`campaign.progress`); a member not checked
//! in `no_show_after_s` after the shift starts is a no-show and is replaced at once, and
//! the replacement hears their new shift. The no-show deadline is data in the state: it
//! fires after a kill -9 and a restart, once, with no assignment lost or doubled.

use std::collections::BTreeSet;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::campaign::{campaign, send};
use crate::helpers::*;

const NO_SHOW_AFTER: (&str, &str) = ("MUSTER_DISPATCH__CAMPAIGN__NO_SHOW_AFTER_S", "8");

/// A site at c001-g1 wanting two people in shift `am`, which starts now; rostered.
async fn rostered(app: &TestApp) -> (String, Value) {
    let (id, _) = campaign(app, "c001", 0).await;
    let cmd = app.command();
    let site = json!({"name": "School", "grid_id": "c001-g1"});
    let (s, _) = send(app, Method::PUT, &cmd, &format!("/v1/campaigns/{id}/sites/s1"), Some(site)).await;
    assert_eq!(s, 200);
    let req = json!({"site_id": "s1", "shift_id": "am", "role": "queue_order", "headcount": 2});
    let (s, _) = send(app, Method::PUT, &cmd, &format!("/v1/campaigns/{id}/requirements"), Some(req)).await;
    assert_eq!(s, 200);
    let path = format!("/v1/campaigns/{id}/roster");
    let (s, r) = send(app, Method::POST, &cmd, &path, Some(json!({"iterations": 1000}))).await;
    assert_eq!((s, r["filled"].as_u64()), (200, Some(2)), "{r}");
    let (_, got) = send(app, Method::GET, &cmd, &format!("/v1/campaigns/{id}"), None).await;
    (id, got)
}

fn members(view: &Value) -> Vec<String> {
    view["cells"][0]["members"].as_array().unwrap().iter().map(|m| m.as_str().unwrap().to_string()).collect()
}

async fn check_in(app: &TestApp, id: &str, member: &str, view: &Value) {
    let loc = &view["sites"][0]["location"];
    let body = json!({"lat": loc["lat"], "lng": loc["lng"]});
    let path = format!("/v1/campaigns/{id}/shifts/am/checkin");
    let (s, v) = send(app, Method::POST, &app.member(member), &path, Some(body)).await;
    assert_eq!(s, 200, "{v}");
}

/// The next `campaign.progress` frame with this `op`.
async fn progress(ws: &mut Ws, op: &str) -> Value {
    loop {
        let f = ws.expect("campaign.progress").await;
        if f["data"]["op"] == op {
            return f["data"].clone();
        }
    }
}

/// The next `campaign.shift` frame with this `change`.
async fn shift_frame(ws: &mut Ws, change: &str) -> Value {
    loop {
        let f = ws.expect("campaign.shift").await;
        if f["data"]["change"] == change {
            return f["data"].clone();
        }
    }
}

#[tokio::test]
async fn a_no_show_is_replaced_and_the_replacement_hears_their_shift() {
    let app = spawn_app_with(&[NO_SHOW_AFTER]).await;
    let mut city = app.ws(&app.command(), None).await;
    let (id, view) = rostered(&app).await;
    let first = members(&view);
    let (came, absent) = (first[0].clone(), first[1].clone());
    // Both heard their shift (replayed from the start of their stream).
    for m in [&came, &absent] {
        let mut ws = app.ws(&app.member(m), Some(0)).await;
        let f = shift_frame(&mut ws, "assigned").await;
        assert_eq!((f["campaign_id"].as_str(), f["shift_id"].as_str()), (Some(id.as_str()), Some("am")), "{f}");
        assert_eq!((f["site"]["id"].as_str(), f["role"].as_str()), (Some("s1"), Some("queue_order")));
    }
    let published = progress(&mut city, "roster_published").await;
    assert_eq!((published["version"].as_u64(), published["filled"].as_u64()), (Some(1), Some(2)), "{published}");
    let mut absent_ws = app.ws(&app.member(&absent), None).await;
    check_in(&app, &id, &came, &view).await;
    assert_eq!(progress(&mut city, "checked_in").await["member_id"], came.as_str());

    // The deadline: the one who did not come is a no-show, and is replaced.
    let no_shows = progress(&mut city, "no_shows").await;
    assert_eq!(no_shows["members"], json!([absent]), "{no_shows}");
    let republished = progress(&mut city, "roster_published").await;
    assert_eq!(republished["version"], 2);
    let removed = shift_frame(&mut absent_ws, "removed").await;
    assert_eq!(removed["shift_id"], "am");
    let (_, after) = send(&app, Method::GET, &app.command(), &format!("/v1/campaigns/{id}"), None).await;
    let now = members(&after);
    assert_eq!(now.len(), 2, "{after}");
    assert!(now.contains(&came) && !now.contains(&absent), "{now:?}");
    let replacement = now.iter().find(|m| **m != came).unwrap();
    let mut ws = app.ws(&app.member(replacement), Some(0)).await;
    let f = shift_frame(&mut ws, "assigned").await;
    assert_eq!((f["campaign_id"].as_str(), f["shift_id"].as_str()), (Some(id.as_str()), Some("am")));
    // Once: the deadline does not fire again for the replacement, who has not checked in.
    assert!(city.quiet_for(Duration::from_millis(1500)).await, "no second no-show");
}

#[tokio::test]
async fn a_no_show_deadline_survives_kill_9_and_fires_once() {
    let dir = tempfile::tempdir().unwrap();
    let env = [NO_SHOW_AFTER, ("MUSTER_ENGINE__SNAPSHOT_EVERY", "5")];
    let p = start_child(dir.path(), &env);
    let app = child_client(&p.addr);
    assert_eq!(app.put_city(&app.command(), &app.city).await.status(), 200);
    let (id, view) = rostered(&app).await;
    let first = members(&view);
    check_in(&app, &id, &first[0], &view).await;
    p.kill9();

    let p = start_child(dir.path(), &env);
    let app = child_client(&p.addr);
    // Replayed or live, the no-show of the one who did not come, once.
    let mut city = app.ws(&app.command(), Some(0)).await;
    let no_shows = progress(&mut city, "no_shows").await;
    assert_eq!(no_shows["members"], json!([first[1]]), "{no_shows}");
    assert_eq!(progress(&mut city, "roster_published").await["version"], 2);
    assert!(city.quiet_for(Duration::from_millis(1500)).await, "no second no-show");
    let (_, after) = send(&app, Method::GET, &app.command(), &format!("/v1/campaigns/{id}"), None).await;
    assert_eq!(after["roster_version"], 2, "{after}");
    let now = members(&after);
    let distinct: BTreeSet<&String> = now.iter().collect();
    assert_eq!((now.len(), distinct.len()), (2, 2), "none lost, none doubled: {now:?}");
    assert!(now.contains(&first[0]) && !now.contains(&first[1]), "{now:?}");
    assert_eq!(after["cells"][0]["present"], 1, "the check-in survived: {after}");
}
