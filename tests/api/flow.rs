//! The whole dispatch flow through the real server: raise → offer → accept → fill →
//! revoke → arrive → resolve, with expiry, escalation and resume.

use std::time::Duration;

use serde_json::json;

use crate::helpers::*;

fn c001_members(app: &TestApp) -> Vec<String> {
    app.city.members.iter().filter(|m| m.on_call).map(|m| m.id.clone()).collect()
}

#[tokio::test]
async fn an_incident_is_offered_accepted_filled_arrived_and_resolved() {
    let app = spawn_app().await;
    let staff = app.staff("c001");
    let mut staff_ws = app.ws(&staff, None).await;
    let mut city_ws = app.ws(&app.command(), None).await;
    let mut other_staff_ws = app.ws(&app.staff("c002"), None).await;
    let mut sockets = Vec::new();
    for id in c001_members(&app) {
        let ws = app.ws(&app.member(&id), None).await;
        assert_eq!(ws.hello["data"]["member_id"], id.as_str());
        sockets.push((id, ws));
    }

    let inc = app
        .raise(
            &staff,
            json!({"grid_id": "c001-g1", "category": "patrol", "level": "III", "headcount": 2, "note": "楼栋排查"}),
        )
        .await;
    let id = inc["id"].as_str().unwrap().to_string();
    assert_eq!(inc["status"], "open");
    // headcount 2 × overbook 1.5 = 3 offers at once
    let offered = app.offered(&id, "offered").await;
    assert_eq!(offered.len(), 3, "{inc}");

    // Exactly the offered members receive an offer, each their own.
    for (member, ws) in sockets.iter_mut() {
        match offered.iter().find(|(m, _)| m == member) {
            Some((_, offer_id)) => {
                let f = ws.expect("offer").await;
                assert_eq!(f["data"]["offer_id"], offer_id.as_str());
                assert_eq!(f["data"]["incident_id"], id.as_str());
                assert_eq!(f["data"]["level"], "III");
                assert!(f["data"]["distance_m"].as_f64().is_some() && f["data"]["expires_at"].is_string());
                assert_eq!(f["seq"], 1);
            }
            None => assert!(ws.quiet_for(Duration::from_millis(100)).await, "{member} got a frame"),
        }
    }
    let socket = |sockets: &mut Vec<(String, Ws)>, m: &str| sockets.iter().position(|(id, _)| id == m).unwrap();
    let (a, a_offer) = offered[0].clone();
    let (b, b_offer) = offered[1].clone();
    let (c, c_offer) = offered[2].clone();

    // A member cannot answer someone else's offer.
    let ia = socket(&mut sockets, &a);
    let r = sockets[ia].1.request("accept", json!({"offer_id": b_offer})).await;
    assert_eq!(r["type"], "error");
    assert_eq!(r["data"]["code"], "unknown_offer");

    let r = sockets[ia].1.request("accept", json!({"offer_id": a_offer})).await;
    assert_eq!(r["type"], "ok", "{r}");
    let f = sockets[ia].1.expect("assignment").await;
    assert_eq!(f["data"]["offer_id"], a_offer.as_str());
    // repeated accept: ok again, nothing new
    let r = sockets[ia].1.request("accept", json!({"offer_id": a_offer})).await;
    assert_eq!(r["type"], "ok");

    let ib = socket(&mut sockets, &b);
    assert_eq!(sockets[ib].1.request("accept", json!({"offer_id": b_offer})).await["type"], "ok");
    // filled: the surplus offer is revoked, and a late accept is refused
    let ic = socket(&mut sockets, &c);
    let f = sockets[ic].1.expect("offer.revoked").await;
    assert_eq!(f["data"], json!({"offer_id": c_offer, "incident_id": id, "reason": "filled"}));
    let r = sockets[ic].1.request("accept", json!({"offer_id": c_offer})).await;
    assert_eq!(r["data"]["code"], "offer_revoked");

    let inc = app.incident(&id).await;
    assert_eq!(inc["status"], "filled");
    assert_eq!(inc["accepted"], 2);

    // Arrival is geofenced.
    let loc = &inc["location"];
    let (lat, lng) = (loc["lat"].as_f64().unwrap(), loc["lng"].as_f64().unwrap());
    let r = sockets[ia].1.request("arrive", json!({"offer_id": a_offer, "lat": lat + 0.05, "lng": lng})).await;
    assert_eq!(r["data"]["code"], "outside_geofence");
    assert!(r["data"]["detail"].as_str().unwrap().contains(" m from the incident"), "{r}");
    let r = sockets[ia].1.request("arrive", json!({"offer_id": a_offer, "lat": lat, "lng": lng})).await;
    assert_eq!(r["type"], "ok", "{r}");
    assert_eq!(app.incident(&id).await["arrived"], 1);

    // Staff and command streams saw the incident; another community's staff did not.
    let kinds = |frames: Vec<serde_json::Value>| {
        frames.into_iter().map(|f| f["type"].as_str().unwrap().to_string()).collect::<Vec<_>>()
    };
    // The arrival was answered ok, so its frame is published: read up to it, then nothing
    // more is on the way.
    let mut staff_frames = Vec::new();
    loop {
        staff_frames.push(staff_ws.next_frame().await);
        if staff_frames.last().unwrap()["type"] == "incident.member_arrived" {
            break;
        }
    }
    assert!(staff_ws.quiet_for(Duration::from_millis(10)).await, "a staff frame after the arrival");
    let staff_kinds = kinds(staff_frames.clone());
    for k in [
        "incident.raised",
        "incident.offer_sent",
        "incident.offer_accepted",
        "incident.filled",
        "incident.offer_revoked",
        "incident.member_arrived",
    ] {
        assert!(staff_kinds.iter().any(|s| s == k), "staff stream lacks {k}: {staff_kinds:?}");
    }
    let seqs: Vec<u64> = staff_frames.iter().map(|f| f["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "seqs count from 1 without gaps");
    assert_eq!(city_ws.expect("incident.raised").await["data"]["incident_id"], id.as_str());
    assert!(other_staff_ws.quiet_for(Duration::from_millis(10)).await, "c002 staff heard of a c001 incident");

    // Resolve: the accepted members' assignments close.
    let resp = app.post(&staff, &format!("/v1/incidents/{id}/resolve"), json!({"note": "done"})).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<serde_json::Value>().await.unwrap()["status"], "resolved");
    assert_eq!(sockets[ib].1.expect("assignment.closed").await["data"]["reason"], "resolved");

    // The timeline has every event in order, with actors.
    let tl: Vec<serde_json::Value> =
        app.get(&staff, &format!("/v1/incidents/{id}/timeline")).await.json().await.unwrap();
    let types: Vec<&str> = tl.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types[0], "incident_raised");
    assert_eq!(*types.last().unwrap(), "incident_resolved");
    assert!(
        types.contains(&"offer_accepted") && types.contains(&"member_arrived") && types.contains(&"incident_filled")
    );
    assert!(tl.windows(2).all(|w| w[0]["seq"].as_u64() < w[1]["seq"].as_u64()));
    assert_eq!(tl[0]["actor"], "staff:c001");
    assert!(tl.iter().any(|e| e["type"] == "offer_accepted" && e["actor"] == format!("member:{a}")));
    app.stop().await;
}

#[tokio::test]
async fn expired_and_declined_offers_pass_to_the_next_candidate() {
    let app = spawn_app_with(&[("MUSTER_DISPATCH__OFFER_TTL_S", "1")]).await;
    let staff = app.staff("c001");
    let inc =
        app.raise(&staff, json!({"grid_id": "c001-g2", "category": "patrol", "level": "III", "headcount": 1})).await;
    let id = inc["id"].as_str().unwrap();
    let first = app.offered(id, "offered").await;
    assert_eq!(first.len(), 2);

    // Decline one: a new candidate is offered at once.
    let (m, o) = &first[0];
    let mut ws = app.ws(&app.member(m), None).await;
    assert_eq!(ws.expect("offer").await["data"]["offer_id"], o.as_str());
    assert_eq!(ws.request("decline", json!({"offer_id": o, "reason": "sick"})).await["type"], "ok");
    let after_decline = app.offered(id, "offered").await;
    assert_eq!(after_decline.len(), 2);
    assert!(!after_decline.iter().any(|(mm, _)| mm == m));

    // Wait for expiry: every open offer expires and new members are offered.
    let (m2, o2) = after_decline[0].clone();
    let mut ws2 = app.ws(&app.member(&m2), None).await;
    let revoked = ws2.expect("offer.revoked").await;
    assert_eq!(revoked["data"]["offer_id"], o2.as_str());
    assert_eq!(revoked["data"]["reason"], "expired");
    let r = ws2.request("accept", json!({"offer_id": o2})).await;
    assert_eq!(r["data"]["code"], "offer_expired");
    let expired =
        |inc: &serde_json::Value| inc["offers"].as_array().unwrap().iter().filter(|o| o["state"] == "expired").count();
    let mut inc = app.incident(id).await;
    // (1 s offers: about 2 s; up to 15 s on a loaded machine)
    for _ in 0..150 {
        if expired(&inc) >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        inc = app.incident(id).await;
    }
    assert!(expired(&inc) >= 2, "{inc}");
    let members: Vec<&str> =
        inc["offers"].as_array().unwrap().iter().map(|o| o["member_id"].as_str().unwrap()).collect();
    let mut unique = members.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), members.len(), "nobody is offered the same incident twice");
    app.stop().await;
}

#[tokio::test]
async fn an_unfilled_incident_escalates_and_whistles_to_command() {
    let app = spawn_app_with(&[("MUSTER_DISPATCH__LEVELS__IV__ESCALATE_AFTER_S", "1")]).await;
    let mut command = app.ws(&app.command(), None).await;
    // more headcount than the 20 on-call members can give
    let inc = app
        .raise(&app.staff("c001"), json!({"grid_id": "c001-g1", "category": "patrol", "level": "IV", "headcount": 40}))
        .await;
    let id = inc["id"].as_str().unwrap();
    let esc = command.expect("incident.escalated").await;
    assert_eq!(esc["data"]["incident_id"], id);
    assert_eq!(esc["data"]["from"], "IV");
    assert_eq!(esc["data"]["to"], "III");
    assert_eq!(esc["data"]["reason"], "timeout");
    let whistle = command.expect("incident.whistle").await;
    assert_eq!(whistle["data"]["level"], "III");
    assert_eq!(whistle["data"]["reach"], json!(["community"]));
    let inc = app.incident(id).await;
    assert_eq!(inc["level"], "III");
    // by hand, with a staff token: III -> II
    let resp = app.post(&app.staff("c001"), &format!("/v1/incidents/{id}/escalate"), json!({})).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<serde_json::Value>().await.unwrap()["level"], "II");
    app.stop().await;
}

#[tokio::test]
async fn a_member_resumes_from_its_last_seq_and_nothing_is_pushed_twice() {
    let app = spawn_app().await;
    let staff = app.staff("c001");
    let inc =
        app.raise(&staff, json!({"grid_id": "c001-g1", "category": "patrol", "level": "III", "headcount": 1})).await;
    let id = inc["id"].as_str().unwrap().to_string();
    let (m, o) = app.offered(&id, "offered").await[0].clone();
    let token = app.member(&m);

    // Connect fresh: the open offer arrives with its own seq.
    let mut ws = app.ws(&token, None).await;
    let offer = ws.expect("offer").await;
    let seen = offer["seq"].as_u64().unwrap();
    assert_eq!(offer["data"]["offer_id"], o.as_str());
    drop(ws);

    // While it is away the incident is cancelled: its offer is revoked.
    let resp = app.post(&staff, &format!("/v1/incidents/{id}/cancel"), json!({"reason": "false alarm"})).await;
    assert_eq!(resp.status(), 200);

    // Resume after the seq it saw: exactly the missed frame, once.
    let mut ws = app.ws(&token, Some(seen)).await;
    assert_eq!(ws.hello["data"]["last_seq"], seen + 1);
    let f = ws.next_frame().await;
    assert_eq!(f["type"], "offer.revoked");
    assert_eq!(f["seq"], seen + 1);
    assert_eq!(f["data"]["reason"], "cancelled");
    assert!(ws.quiet_for(Duration::from_millis(300)).await);

    // Resume from 0: the whole stream again, in order.
    let mut ws = app.ws(&token, Some(0)).await;
    assert_eq!(ws.next_frame().await["seq"], 1);
    assert_eq!(ws.next_frame().await["seq"], 2);
    assert!(ws.quiet_for(Duration::from_millis(300)).await);

    // A fresh connection now gets nothing: no offer is open.
    let mut ws = app.ws(&token, None).await;
    assert!(ws.quiet_for(Duration::from_millis(300)).await);
    app.stop().await;
}

#[tokio::test]
async fn idempotency_key_answers_the_same_incident() {
    let app = spawn_app().await;
    let staff = app.staff("c001");
    let body = json!({"grid_id": "c001-g1", "category": "patrol", "level": "III", "headcount": 1});
    let send = || {
        app.http
            .post(app.url("/v1/incidents"))
            .bearer_auth(&staff)
            .header("Idempotency-Key", "abc-1")
            .json(&body)
            .send()
    };
    let a: serde_json::Value = send().await.unwrap().json().await.unwrap();
    let b = send().await.unwrap();
    assert_eq!(b.status(), 201);
    let b: serde_json::Value = b.json().await.unwrap();
    assert_eq!(a["id"], b["id"]);
    let list: Vec<serde_json::Value> = app.get(&staff, "/v1/incidents?status=open").await.json().await.unwrap();
    assert_eq!(list.len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn a_location_raises_in_the_grid_that_holds_it_and_members_report_position_and_duty() {
    let app = spawn_app().await;
    let cell = app.city.communities.iter().find(|c| c.id == "c001").unwrap().grids[1].cells[0];
    let p = cell.center();
    let inc = app
        .raise(
            &app.staff("c001"),
            json!({"location": {"lat": p.lat, "lng": p.lng}, "category": "patrol", "level": "IV", "headcount": 1}),
        )
        .await;
    assert_eq!(inc["grid_id"], "c001-g2");

    let m = app.city.members.iter().find(|m| m.on_call).unwrap().id.clone();
    let mut ws = app.ws(&app.member(&m), None).await;
    assert_eq!(ws.request("location", json!({"lat": p.lat, "lng": p.lng})).await["type"], "ok");
    assert_eq!(ws.request("duty", json!({"on_call": false})).await["type"], "ok");
    assert_eq!(ws.expect("duty").await["data"]["on_call"], false);
    let me: serde_json::Value = app.get(&app.member(&m), &format!("/v1/members/{m}")).await.json().await.unwrap();
    assert_eq!(me["on_call"], false);
    assert!((me["position"]["lat"].as_f64().unwrap() - p.lat).abs() < 1e-9);
    app.stop().await;
}
