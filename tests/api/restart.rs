//! kill -9 and restart on the same data directory: the real binary as a child process.
//! Everything that got a 201 or an `ok` is still there; open offers and deadlines resume.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use muster::gateway::auth::TokenKeys;
use serde_json::{Value, json};

use crate::helpers::*;

pub(super) struct Proc {
    child: Child,
    pub(super) addr: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(super) fn start(data: &Path, env: &[(&str, &str)]) -> Proc {
    start_at("127.0.0.1:0", data, env)
}

/// `start` listening on `listen` (a page's origin stays the same across restarts).
pub(super) fn start_at(listen: &str, data: &Path, env: &[(&str, &str)]) -> Proc {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_muster"));
    cmd.args(["serve", "--listen", listen, "--data"])
        .arg(data)
        .env("MUSTER_AUTH__SECRET", SECRET)
        .env("MUSTER_LOG__FILTER", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("the muster binary starts");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(addr) = line.strip_prefix("listening on http://") {
                let _ = tx.send(addr.to_string());
            }
        }
    });
    let addr = rx.recv_timeout(Duration::from_secs(60)).expect("muster prints its address");
    Proc { child, addr }
}

/// A TestApp-like client for a child process.
pub(super) fn client(addr: &str) -> TestApp {
    TestApp {
        app: None,
        addr: addr.to_string(),
        http: reqwest::Client::new(),
        keys: TokenKeys::new(SECRET),
        city: test_city(),
        _dir: None,
    }
}

/// The seq of the saved snapshot (`snapshot-<seq>.json` in the data directory), if any.
fn snapshot_seq(dir: &Path) -> Option<u64> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_prefix("snapshot-")?.strip_suffix(".json")?.parse().ok()
        })
        .max()
}

/// The seq of the last logged event, read from the database.
pub(super) fn last_seq(dir: &Path) -> u64 {
    let db = rusqlite::Connection::open(dir.join(muster::store::sqlite::DB_FILE)).unwrap();
    db.query_row("SELECT max(seq) FROM events", [], |r| r.get(0)).unwrap()
}

pub(super) fn kill9(mut p: Proc) {
    p.child.kill().unwrap(); // SIGKILL on Unix
    p.child.wait().unwrap();
}

#[tokio::test]
async fn offers_answers_and_deadlines_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    // Snapshots every 4 events: the restart restores one and replays the events after it.
    let env = [
        ("MUSTER_DISPATCH__LEVELS__IV__ESCALATE_AFTER_S", "3"),
        ("MUSTER_DISPATCH__OFFER_TTL_S", "600"),
        ("MUSTER_ENGINE__SNAPSHOT_EVERY", "4"),
    ];
    let p = start(dir.path(), &env);
    let app = client(&p.addr);
    assert_eq!(app.put_city(&app.command(), &app.city).await.status(), 200);
    let staff = app.staff("c001");

    // A: offers out, one accepted, one arrived.
    let a =
        app.raise(&staff, json!({"grid_id": "c001-g1", "category": "patrol", "level": "III", "headcount": 3})).await;
    let a_id = a["id"].as_str().unwrap().to_string();
    let offered = app.offered(&a_id, "offered").await;
    let (m1, o1) = offered[0].clone();
    let (m2, o2) = offered[1].clone();
    let mut ws1 = app.ws(&app.member(&m1), None).await;
    assert_eq!(ws1.request("accept", json!({"offer_id": o1})).await["type"], "ok");
    let seen = ws1.expect("assignment").await["seq"].as_u64().unwrap();
    let mut ws2 = app.ws(&app.member(&m2), None).await;
    assert_eq!(ws2.request("accept", json!({"offer_id": o2})).await["type"], "ok");
    let loc = a["location"].clone();
    assert_eq!(
        ws2.request("arrive", json!({"offer_id": o2, "lat": loc["lat"], "lng": loc["lng"]})).await["type"],
        "ok"
    );
    // B: level IV, more than anyone can fill, escalates 3 s after raising.
    let b =
        app.raise(&staff, json!({"grid_id": "c001-g2", "category": "patrol", "level": "IV", "headcount": 40})).await;
    let b_id = b["id"].as_str().unwrap().to_string();
    let before_a = app.incident(&a_id).await;
    drop((ws1, ws2));
    // The snapshotter follows the log beside the engine: wait for its snapshot.
    for _ in 0..300 {
        if snapshot_seq(dir.path()).is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    kill9(p);
    let (snap, last) = (snapshot_seq(dir.path()).expect("a snapshot was saved"), last_seq(dir.path()));
    assert!(snap >= 4 && snap <= last, "a snapshot at {snap}, the log at {last}");
    let p = start(dir.path(), &env);
    let app = client(&p.addr);

    let after_a = app.incident(&a_id).await;
    assert_eq!(after_a["offers"], before_a["offers"], "offers, states and expiry times are all back");
    assert_eq!(after_a["accepted"], 2);
    assert_eq!(after_a["arrived"], 1);
    assert_eq!(after_a["escalate_at"], before_a["escalate_at"]);

    // The member resumes after the last seq it saw; a fresh socket of an offered member
    // gets its open offer with its original seq.
    let mut ws1 = app.ws(&app.member(&m1), Some(seen)).await;
    assert_eq!(ws1.hello["data"]["last_seq"], seen);
    assert!(ws1.quiet_for(Duration::from_millis(200)).await);
    let (m3, o3) = app.offered(&a_id, "offered").await[0].clone();
    let mut ws3 = app.ws(&app.member(&m3), None).await;
    assert_eq!(ws3.expect("offer").await["data"]["offer_id"], o3.as_str());

    // B's escalation deadline fires after the restart.
    let mut b_now = app.incident(&b_id).await;
    // (3 s after the raise; up to 20 s on a loaded machine)
    for _ in 0..200 {
        if b_now["level"] != "IV" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        b_now = app.incident(&b_id).await;
    }
    assert_eq!(b_now["level"], "III", "{b_now}");
    let tl: Vec<Value> = app.get(&staff, &format!("/v1/incidents/{b_id}/timeline")).await.json().await.unwrap();
    assert!(tl.iter().any(|e| e["type"] == "whistle_blown"));
    drop(p);
}

#[tokio::test]
async fn every_incident_that_got_201_survives_kill_9_at_a_random_moment() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("MUSTER_ENGINE__SNAPSHOT_EVERY", "40"), ("MUSTER_SERVER__MAX_LIST", "100000")];
    let mut confirmed: Vec<String> = Vec::new();
    let mut first = true;
    for round in 0..3u64 {
        // Snapshots too are saved while the kill may come; the list holds every incident.
        let p = start(dir.path(), &env);
        let app = Arc::new(client(&p.addr));
        if first {
            assert_eq!(app.put_city(&app.command(), &app.city).await.status(), 200);
            first = false;
        }
        // Everything confirmed before is still there.
        let list: Vec<Value> = app.get(&app.command(), "/v1/incidents").await.json().await.unwrap();
        let ids: Vec<&str> = list.iter().map(|i| i["id"].as_str().unwrap()).collect();
        for id in &confirmed {
            assert!(ids.contains(&id.as_str()), "round {round}: {id} got 201 and is gone");
        }
        // Raise from four clients at once, then kill at a moment that varies by round.
        let got = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for t in 0..4 {
            let (app, got) = (app.clone(), got.clone());
            tasks.push(tokio::spawn(async move {
                let staff = app.staff("c001");
                for i in 0..200 {
                    let body = json!({"grid_id": "c001-g3", "category": "patrol", "level": "I", "headcount": 1, "note": format!("r{round} t{t} i{i}")});
                    match app.http.post(app.url("/v1/incidents")).bearer_auth(&staff).json(&body).send().await {
                        Ok(r) if r.status() == 201 => {
                            let v: Value = match r.json().await {
                                Ok(v) => v,
                                Err(_) => return,
                            };
                            got.lock().unwrap().push(v["id"].as_str().unwrap().to_string());
                        }
                        _ => return,
                    }
                }
            }));
        }
        // The kill comes a varying time after the first 201 (not after a fixed time from the
        // start: on a loaded machine nothing may be confirmed yet, and the round proves
        // nothing then).
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while got.lock().unwrap().is_empty() && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(50 + 170 * round)).await;
        kill9(p);
        for t in tasks {
            let _ = t.await;
        }
        let got = got.lock().unwrap().clone();
        assert!(!got.is_empty(), "round {round}: some incidents were confirmed before the kill");
        confirmed.extend(got);
    }
    let p = start(dir.path(), &env);
    let app = client(&p.addr);
    let list: Vec<Value> = app.get(&app.command(), "/v1/incidents").await.json().await.unwrap();
    let ids: Vec<&str> = list.iter().map(|i| i["id"].as_str().unwrap()).collect();
    for id in &confirmed {
        assert!(ids.contains(&id.as_str()), "{id} got 201 and is gone");
    }
}
