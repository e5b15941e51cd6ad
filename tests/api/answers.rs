//! Answers with the client's id (issue 18): the member app resends what it queued while
//! offline, and the server applies each answer id once, also across a kill -9 restart of
//! the real binary (docs/PROTOCOL.md, "Answer ids").

use serde_json::json;

use crate::restart::{client, kill9, last_seq, start};

#[tokio::test]
async fn the_same_answer_id_is_applied_once_also_after_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    // Snapshots every 4 events: the restart restores one (with the answer ids) and replays after it.
    let env = [("MUSTER_DISPATCH__OFFER_TTL_S", "600"), ("MUSTER_ENGINE__SNAPSHOT_EVERY", "4")];
    let p = start(dir.path(), &env);
    let app = client(&p.addr);
    assert_eq!(app.put_city(&app.command(), &app.city).await.status(), 200);
    let staff = app.staff("c001");
    let inc =
        app.raise(&staff, json!({"grid_id": "c001-g1", "category": "patrol", "level": "III", "headcount": 3})).await;
    let inc_id = inc["id"].as_str().unwrap().to_string();
    let offered = app.offered(&inc_id, "offered").await;
    let (m1, o1) = offered[0].clone();
    let (m2, o2) = offered[1].clone();

    // m1 accepts with an id, and sends it again (the first ok was "lost"): applied once.
    let mut ws1 = app.ws(&app.member(&m1), None).await;
    let first = ws1.request("accept", json!({"offer_id": o1, "answer_id": "q-accept-1"})).await;
    assert_eq!(first["type"], "ok", "{first}");
    assert_eq!(first["data"].get("duplicate"), None, "the first is not a repeat: {first}");
    ws1.expect("assignment").await;
    let after_first = last_seq(dir.path());
    let again = ws1.request("accept", json!({"offer_id": o1, "answer_id": "q-accept-1"})).await;
    assert_eq!((again["type"].as_str(), again["data"]["duplicate"].as_bool()), (Some("ok"), Some(true)), "{again}");
    // m2 declines with an id.
    let mut ws2 = app.ws(&app.member(&m2), None).await;
    let declined = ws2.request("decline", json!({"offer_id": o2, "reason": "busy", "answer_id": "q-decline-1"})).await;
    assert_eq!(declined["type"], "ok", "{declined}");
    assert!(last_seq(dir.path()) > after_first, "the decline was logged");
    let logged = last_seq(dir.path());
    drop((ws1, ws2));

    // kill -9 right after the oks; the app resends both from its queue after the restart.
    kill9(p);
    let p = start(dir.path(), &env);
    let app = client(&p.addr);
    let mut ws1 = app.ws(&app.member(&m1), None).await;
    let mut ws2 = app.ws(&app.member(&m2), None).await;
    for (ws, kind, data) in [
        (&mut ws1, "accept", json!({"offer_id": o1, "answer_id": "q-accept-1"})),
        (&mut ws2, "decline", json!({"offer_id": o2, "reason": "busy", "answer_id": "q-decline-1"})),
    ] {
        let r = ws.request(kind, data).await;
        assert_eq!((r["type"].as_str(), r["data"]["duplicate"].as_bool()), (Some("ok"), Some(true)), "{kind}: {r}");
    }
    assert_eq!(last_seq(dir.path()), logged, "the resends after the restart logged nothing");
    let view = app.incident(&inc_id).await;
    let accepted = view["offers"].as_array().unwrap().iter().filter(|o| o["state"] == "accepted").count();
    assert_eq!(accepted, 1, "{view}");
    assert_eq!(view["offers"].as_array().unwrap().iter().filter(|o| o["member_id"] == json!(m2)).count(), 1);

    // The same id for another answer is refused, and says why; a bad id is refused too.
    let reused = ws2.request("accept", json!({"offer_id": o2, "answer_id": "q-decline-1"})).await;
    assert_eq!((reused["type"].as_str(), reused["data"]["code"].as_str()), (Some("error"), Some("answer_id_reused")));
    let bad = ws2.request("accept", json!({"offer_id": o2, "answer_id": "has space"})).await;
    assert_eq!((bad["type"].as_str(), bad["data"]["code"].as_str()), (Some("error"), Some("invalid_data")));
    // An old client (no id) is answered as before.
    let plain = ws1.request("accept", json!({"offer_id": o1})).await;
    assert_eq!(plain["type"], "ok");
    assert_eq!(plain["data"].get("duplicate"), None);
    assert_eq!(last_seq(dir.path()), logged);
    drop(p);
}
