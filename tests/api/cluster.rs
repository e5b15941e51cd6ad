//! Several nodes on Redis: the real server, twice or more, on one real Redis.
//!
//! Most tests use the Redis at 127.0.0.1:6379 (which keeps nothing on disk, so they switch
//! the persistence check off) under a key prefix of their own, deleted afterwards. Tests of
//! durability start their own `redis-server` with appendonly on, in a temporary directory
//! on a second port, and stop it by its pid.

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use muster::app::{self, Options};
use serde_json::{Value, json};

use crate::helpers::*;

const SHARED_REDIS: &str = "redis://127.0.0.1:6379/";

/// A key prefix of the test's own; its keys are deleted when it is dropped.
pub struct Prefix {
    pub name: String,
    url: String,
}

impl Prefix {
    pub fn new(url: &str) -> Prefix {
        Prefix { name: format!("test-{}-{:08x}", std::process::id(), rand::random::<u32>()), url: url.into() }
    }
}

impl Drop for Prefix {
    fn drop(&mut self) {
        let Ok(client) = redis::Client::open(self.url.as_str()) else { return };
        let Ok(mut c) = client.get_connection_with_timeout(Duration::from_secs(1)) else { return };
        let keys: Vec<String> =
            redis::cmd("KEYS").arg(format!("{{{}}}:*", self.name)).query(&mut c).unwrap_or_default();
        for chunk in keys.chunks(500) {
            let _: Result<(), _> = redis::cmd("DEL").arg(chunk).query(&mut c);
        }
    }
}

/// One entry of a Redis stream as XRANGE gives it: its id and its fields and values.
type LogEntry = (String, Vec<Vec<u8>>);

fn node_env<'a>(url: &'a str, prefix: &'a str, durable: bool) -> Vec<(&'a str, &'a str)> {
    vec![
        ("MUSTER_REDIS_URL", url),
        ("MUSTER_REDIS__PREFIX", prefix),
        ("MUSTER_REDIS__LEASE_MS", "1000"),
        // Snapshots, and so a trimmed log, within a few commands.
        ("MUSTER_ENGINE__SNAPSHOT_EVERY", "25"),
        ("MUSTER_ENGINE__POSITION_FLUSH_S", "1"),
        ("MUSTER_REDIS__REQUIRE_PERSISTENCE", if durable { "true" } else { "false" }),
    ]
}

/// A node in this process (port 0, its own data directory, which Redis mode does not use).
async fn node(url: &str, prefix: &Prefix, durable: bool) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let settings = test_settings(dir.path(), &node_env(url, &prefix.name, durable));
    let app = app::build(settings, Options::default()).await.expect("node starts");
    TestApp {
        addr: format!("127.0.0.1:{}", app.port()),
        app: Some(app),
        http: reqwest::Client::new(),
        keys: muster::gateway::auth::TokenKeys::new(SECRET),
        city: test_city(),
        _dir: Some(dir),
    }
}

fn on_call(app: &TestApp) -> Vec<String> {
    app.city.members.iter().filter(|m| m.on_call).map(|m| m.id.clone()).collect()
}

/// Polls `f` until it is true. `limit` only ends a hung test: it is no performance figure,
/// and is generous for a loaded 2-core run of the whole suite.
async fn eventually<F: std::future::Future<Output = bool>>(limit: Duration, what: &str, mut f: impl FnMut() -> F) {
    let deadline = Instant::now() + limit;
    while !f().await {
        assert!(Instant::now() < deadline, "{what} did not happen within {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn an_offer_decided_for_an_incident_raised_on_one_node_reaches_a_member_on_another() {
    let prefix = Prefix::new(SHARED_REDIS);
    let leader = |t: &TestApp| t.app.as_ref().unwrap().engine.is_leader();
    let a = node(SHARED_REDIS, &prefix, false).await;
    eventually(Duration::from_secs(30), "node A takes the lease", || async { leader(&a) }).await;
    let b = node(SHARED_REDIS, &prefix, false).await;
    assert!(!leader(&b), "the second node follows");
    assert_eq!(a.put_city(&a.command(), &a.city).await.status(), 200);
    // Node B knows the members only once its replica has applied the import.
    let has_city = |t: &TestApp| t.app.as_ref().unwrap().engine.read().city.city().is_some();
    eventually(Duration::from_secs(5), "node B applies the city", || async { has_city(&b) }).await;

    // Every on-call member listens on node B.
    let mut sockets = Vec::new();
    for id in on_call(&b) {
        sockets.push((id.clone(), b.ws(&b.member(&id), None).await));
    }
    let staff = a.staff("c001");
    let inc =
        a.raise(&staff, json!({"grid_id": "c001-g1", "category": "patrol", "level": "III", "headcount": 1})).await;
    let id = inc["id"].as_str().unwrap().to_string();
    let offered = a.offered(&id, "offered").await;
    assert_eq!(offered.len(), 2, "{inc}");
    let (member, offer_id) = offered[0].clone();
    let ws = &mut sockets.iter_mut().find(|(m, _)| *m == member).unwrap().1;
    let f = ws.expect("offer").await;
    assert_eq!(f["data"]["offer_id"], offer_id.as_str());
    assert_eq!(f["data"]["incident_id"], id.as_str());

    // The member accepts on node B: the command goes to the engine on A through Redis, and
    // node B answers only once its own state has it (read your writes).
    let r = ws.request("accept", json!({"offer_id": offer_id})).await;
    assert_eq!(r["type"], "ok", "{r}");
    ws.expect("assignment").await;
    assert_eq!(b.offered(&id, "accepted").await.len(), 1);

    // An incident raised on node B is decided by the engine on A; B's 201 is readable on B
    // at once and on A.
    let inc2 = b
        .raise(&b.staff("c001"), json!({"grid_id": "c001-g2", "category": "cleaning", "level": "III", "headcount": 1}))
        .await;
    let id2 = inc2["id"].as_str().unwrap();
    assert_eq!(b.get(&b.command(), &format!("/v1/incidents/{id2}")).await.status(), 200);
    assert_eq!(a.get(&a.command(), &format!("/v1/incidents/{id2}")).await.status(), 200);
    // Refusals travel back as they are, with the domain's code.
    let ws = &mut sockets.iter_mut().find(|(m, _)| *m == member).unwrap().1;
    let r = ws.request("accept", json!({"offer_id": "off-999999"})).await;
    assert_eq!((r["type"].as_str(), r["data"]["code"].as_str()), (Some("error"), Some("unknown_offer")), "{r}");

    // Resume after a reconnect works on any node: the frames are in Redis.
    let mut again = a.ws(&a.member(&member), Some(0)).await;
    assert_eq!(again.expect("offer").await["data"]["offer_id"], offer_id.as_str());
    // A fresh connection gets the member's current assignment, read from Redis by seq.
    let mut fresh = b.ws(&b.member(&member), None).await;
    assert_eq!(fresh.expect("assignment").await["data"]["offer_id"], offer_id.as_str());
    // The timeline is read from Redis too.
    let tl: Value = b.get(&b.command(), &format!("/v1/incidents/{id}/timeline")).await.json().await.unwrap();
    let kinds: Vec<_> = tl.as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap().to_string()).collect();
    assert!(
        kinds.contains(&"incident_raised".to_string()) && kinds.contains(&"offer_accepted".to_string()),
        "{kinds:?}"
    );

    // A position sent on node B reaches the engine on A, which saves positions every
    // second; node B takes them from there as often.
    let loc = inc2["location"].clone();
    let r = fresh.request("location", json!({"lat": loc["lat"], "lng": loc["lng"]})).await;
    assert_eq!(r["type"], "ok", "{r}");
    let path = format!("/v1/members/{member}");
    eventually(Duration::from_secs(30), "node B shows the new position", || async {
        let m: Value = b.get(&b.command(), &path).await.json().await.unwrap();
        m["position"] == loc
    })
    .await;

    b.stop().await;
    a.stop().await;
}

#[tokio::test]
async fn a_node_refuses_writes_while_redis_does_not_persist_them() {
    // The shared Redis keeps nothing on disk: with the check on, nothing may be confirmed.
    let prefix = Prefix::new(SHARED_REDIS);
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_muster"));
    cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data"])
        .arg(dir.path())
        .env_remove("RUST_LOG")
        .env("MUSTER_AUTH__SECRET", SECRET)
        .env("MUSTER_LOG__FILTER", "error")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    for (k, v) in node_env(SHARED_REDIS, &prefix.name, true) {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let t = child_client(&format!("127.0.0.1:{port}"));
    eventually(Duration::from_secs(10), "the node answers", || async {
        t.http.get(t.url("/readyz")).send().await.is_ok()
    })
    .await;
    // It serves, says why it is not ready, and refuses writes; a second look, a moment
    // later, says the same.
    for _ in 0..2 {
        assert_problem(t.http.get(t.url("/readyz")).send().await.unwrap(), 503, None).await;
        assert_problem(t.put_city(&t.command(), &t.city).await, 503, None).await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
}

// ------------------------------------------------------------------ the real binary

/// A `redis-server` of the test's own: appendonly on, appendfsync always, in a temporary
/// directory, on a free port; stopped by its pid.
pub struct OwnRedis {
    pub port: u16,
    pub dir: tempfile::TempDir,
    child: Option<std::process::Child>,
}

impl OwnRedis {
    pub fn start() -> OwnRedis {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut r = OwnRedis { port, dir, child: None };
        r.restart();
        r
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Starts it (again) on the same port and directory, and waits until it answers.
    pub fn restart(&mut self) {
        let child = std::process::Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", "yes", "--appendfsync", "always"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server starts (apt-get install redis-server)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(c) = redis::Client::open(self.url())
                && let Ok(mut c) = c.get_connection_with_timeout(Duration::from_millis(200))
                && redis::cmd("PING").query::<String>(&mut c).is_ok()
            {
                return;
            }
            assert!(Instant::now() < deadline, "redis-server did not answer");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL, by pid.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

fn start_node(data: &Path, env: &[(&str, &str)]) -> Child {
    start_child(data, env)
}

/// Two nodes as child processes on `redis`, A started (and so the engine) first.
struct Nodes {
    prefix: Prefix,
    dir: tempfile::TempDir,
    a_proc: Child,
    a: TestApp,
    b_proc: Child,
    b: TestApp,
}

async fn two_nodes(redis: &OwnRedis) -> Nodes {
    let url = redis.url();
    let prefix = Prefix::new(&url);
    let dir = tempfile::tempdir().unwrap();
    let env = node_env(&url, &prefix.name, true);
    let a_proc = start_node(dir.path(), &env);
    let a = child_client(&a_proc.addr);
    eventually(Duration::from_secs(10), "node A ready", || ready(&a)).await;
    let b_proc = start_node(dir.path(), &env);
    let b = child_client(&b_proc.addr);
    eventually(Duration::from_secs(10), "node B ready", || ready(&b)).await;
    Nodes { prefix, dir, a_proc, a, b_proc, b }
}

async fn ready(t: &TestApp) -> bool {
    matches!(t.http.get(t.url("/readyz")).send().await, Ok(r) if r.status() == 200)
}

#[tokio::test]
async fn when_redis_restarts_nodes_refuse_writes_then_recover_and_lose_nothing() {
    let mut redis = OwnRedis::start();
    let Nodes { prefix: _prefix, dir: _dir, a_proc, a, b_proc, b } = two_nodes(&redis).await;
    assert_eq!(a.put_city(&a.command(), &a.city).await.status(), 200);
    let staff = a.staff("c001");
    // Node B answers 503 "does not know the token's scope yet" until its replica has applied
    // the import (as a client would, wait for it rather than race it).
    eventually(Duration::from_secs(10), "node B knows the city", || async {
        b.get(&staff, "/v1/incidents").await.status() == 200
    })
    .await;
    let body = json!({"grid_id": "c001-g1", "category": "patrol", "level": "III", "headcount": 1});
    let mut confirmed = Vec::new();
    for t in [&a, &b] {
        confirmed.push(t.raise(&staff, body.clone()).await["id"].as_str().unwrap().to_string());
    }

    redis.kill();
    for t in [&a, &b] {
        eventually(Duration::from_secs(10), "not ready while Redis is away", || async { !ready(t).await }).await;
        let resp = t.post(&staff, "/v1/incidents", body.clone()).await;
        assert_problem(resp, 503, None).await;
    }

    redis.restart();
    for t in [&a, &b] {
        eventually(Duration::from_secs(15), "ready again", || ready(t)).await;
    }
    // Writes work again, through either node (whichever is the engine now).
    let mut n = 0;
    eventually(Duration::from_secs(10), "a write after the restart", || {
        let (t, body, staff) = (if n % 2 == 0 { &a } else { &b }, body.clone(), staff.clone());
        n += 1;
        async move {
            let r = t.post(&staff, "/v1/incidents", body).await;
            r.status() == 201
        }
    })
    .await;
    for id in &confirmed {
        for t in [&a, &b] {
            assert_eq!(t.get(&t.command(), &format!("/v1/incidents/{id}")).await.status(), 200, "{id} was lost");
        }
    }
    drop((a_proc, b_proc));
}

#[tokio::test]
async fn another_node_takes_over_when_the_engine_is_killed_and_nothing_confirmed_is_lost() {
    let redis = OwnRedis::start();
    let Nodes { prefix, dir, a_proc, a: _, b_proc, b } = two_nodes(&redis).await;
    let url = redis.url();
    let env = node_env(&url, &prefix.name, true);
    assert_eq!(b.put_city(&b.command(), &b.city).await.status(), 200);

    // Assault-team members on node B get a mobilization order; they acknowledge while the
    // engine dies, retrying what is refused, and every `ok` they got must count.
    // The biggest teams of the test city, about 20 members.
    let mut sizes: Vec<(usize, String)> = b
        .city
        .teams
        .iter()
        .map(|t| (b.city.members.iter().filter(|m| m.team_id.as_ref() == Some(&t.id)).count(), t.id.clone()))
        .collect();
    sizes.sort_by(|x, y| y.cmp(x));
    let mut teams = Vec::new();
    let mut total = 0;
    for (n, t) in sizes {
        if total >= 20 {
            break;
        }
        total += n;
        teams.push(t);
    }
    let members: Vec<String> = b
        .city
        .members
        .iter()
        .filter(|m| m.team_id.as_ref().is_some_and(|t| teams.contains(t)))
        .map(|m| m.id.clone())
        .collect();
    assert!(members.len() >= 20, "teams {teams:?}");
    let mut sockets = Vec::new();
    for m in &members {
        sockets.push(b.ws(&b.member(m), None).await);
    }
    let resp = b.post(&b.command(), "/v1/mobilizations", json!({ "teams": teams })).await;
    let view: Value = resp.json().await.unwrap();
    let mob = view["id"].as_str().unwrap_or_else(|| panic!("mobilization ordered: {view}")).to_string();
    assert_eq!(view["ordered"], members.len(), "{view}");
    let mut acks = Vec::new();
    for (i, mut ws) in sockets.into_iter().enumerate() {
        let mob = mob.clone();
        acks.push(tokio::spawn(async move {
            ws.expect("mobilization.order").await;
            // Spread over the kill: some before it, some during the takeover, some after.
            tokio::time::sleep(Duration::from_millis(50 * i as u64)).await;
            let until = Instant::now() + Duration::from_secs(20);
            while Instant::now() < until {
                let r = ws.request("mobilization.ack", json!({"mobilization_id": mob})).await;
                if r["type"] == "ok" {
                    return true;
                }
                // refused before the engine decided, or sent and its answer lost in the
                // takeover: an ack is idempotent, so either way the member sends it again
                let code = r["data"]["code"].as_str().unwrap_or_default();
                assert!(code == "unavailable" || code == "outcome_unknown", "{r}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            false
        }));
    }

    // A surge of incidents through node B while the engine (node A, the first) is killed.
    let staff = b.staff("c001");
    let body = json!({"grid_id": "c001-g1", "category": "patrol", "level": "III", "headcount": 1});
    let mut confirmed = Vec::new();
    let mut killed_at = None;
    let mut a_proc = Some(a_proc);
    let mut first_after_kill = None;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(30) && (first_after_kill.is_none() || confirmed.len() < 60) {
        if confirmed.len() == 20 && killed_at.is_none() {
            a_proc.take().unwrap().kill9();
            killed_at = Some(Instant::now());
        }
        let resp = b.post(&staff, "/v1/incidents", body.clone()).await;
        match resp.status().as_u16() {
            201 => {
                let v: Value = resp.json().await.unwrap();
                confirmed.push(v["id"].as_str().unwrap().to_string());
                if let Some(k) = killed_at
                    && first_after_kill.is_none()
                {
                    first_after_kill = Some(k.elapsed());
                }
            }
            503 => tokio::time::sleep(Duration::from_millis(50)).await,
            s => panic!("unexpected {s}: {}", resp.text().await.unwrap()),
        }
    }
    let took = first_after_kill.expect("node B never confirmed a write after the engine died");
    // The lease is 1 s and a takeover takes about 1–2 s (docs/PERFORMANCE.md). The point is
    // that it happens by itself; 15 s is the margin a loaded 2-core run of the whole suite
    // needs (the members' acks retry for 20 s).
    eprintln!("the engine's node killed: node B confirmed a write {took:?} later");
    assert!(took < Duration::from_secs(15), "the takeover took {took:?}");
    let mut confirmed_acks = 0;
    for t in acks {
        confirmed_acks += t.await.unwrap() as usize;
    }
    assert_eq!(confirmed_acks, members.len(), "every member got an ok in the end");

    // Every 201 is there, and no offer was decided twice: offer ids are unique and nobody
    // holds two offers for one incident.
    let mut offers = HashSet::new();
    for id in &confirmed {
        let resp = b.get(&b.command(), &format!("/v1/incidents/{id}")).await;
        assert_eq!(resp.status(), 200, "{id} got a 201 and was lost");
        let inc: Value = resp.json().await.unwrap();
        let mut members = HashSet::new();
        for o in inc["offers"].as_array().unwrap() {
            assert!(offers.insert(o["offer_id"].as_str().unwrap().to_string()), "offer decided twice: {o}");
            assert!(members.insert(o["member_id"].as_str().unwrap().to_string()), "two offers to one member: {inc}");
        }
    }
    // Snapshots are saved every 25 events (by the engine's node), and the log is trimmed
    // below the one before the latest; more writes until that has happened. A new node
    // starting cold then restores the latest snapshot, replays the rest, and has the same
    // state.
    let mut r = redis::Client::open(url.as_str()).unwrap().get_connection().unwrap();
    let (snap_key, log_key) = (format!("{{{}}}:snap", prefix.name), format!("{{{}}}:log", prefix.name));
    let mut trimmed = (0, 0);
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until {
        // Both in one transaction: a snapshot committed between two reads would trim the
        // log past the snapshot read before it.
        let (snap, first): (Option<u64>, Vec<LogEntry>) = redis::pipe()
            .atomic()
            .cmd("HGET")
            .arg(&snap_key)
            .arg("seq")
            .cmd("XRANGE")
            .arg(&log_key)
            .arg("-")
            .arg("+")
            .arg("COUNT")
            .arg(1)
            .query(&mut r)
            .unwrap();
        let snap = snap.unwrap_or(0);
        let first_seq: u64 = first[0].0.strip_prefix("0-").unwrap().parse().unwrap();
        trimmed = (snap, first_seq);
        if first_seq > 25 {
            break;
        }
        let resp = b.post(&staff, "/v1/incidents", body.clone()).await;
        assert_eq!(resp.status(), 201);
        confirmed.push(resp.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (snap, first_seq) = trimmed;
    assert!(snap > 25 && first_seq > 25 && first_seq <= snap, "snapshot at {snap}, the log starts at {first_seq}");
    let c_proc = start_node(dir.path(), &env);
    let c = child_client(&c_proc.addr);
    eventually(Duration::from_secs(10), "node C ready", || ready(&c)).await;
    for id in &confirmed {
        assert_eq!(c.get(&c.command(), &format!("/v1/incidents/{id}")).await.status(), 200);
    }
    for t in [&b, &c] {
        let view: Value = t.get(&t.command(), &format!("/v1/mobilizations/{mob}")).await.json().await.unwrap();
        assert_eq!(view["acknowledged"], members.len(), "an acknowledgement that got an ok was lost: {view}");
    }
    drop((b_proc, c_proc));
}

#[test]
fn a_deposed_engine_cannot_append_and_its_successor_can() {
    use muster::cluster::{Lease, Node};
    use muster::domain::event::{Event, EventBody};
    use muster::store::EventLog;
    use muster::store::redis::RedisLog;

    let prefix = Prefix::new(SHARED_REDIS);
    let dir = tempfile::tempdir().unwrap();
    let settings = test_settings(dir.path(), &node_env(SHARED_REDIS, &prefix.name, false));
    let (mut a, mut b) = (Node::new(&settings).unwrap(), Node::new(&settings).unwrap());
    let log_of = |n: &Node| RedisLog::new(n.client.clone(), n.keys.clone(), n.fence.clone(), false);
    let (mut log_a, mut log_b) = (log_of(&a), log_of(&b));
    let event = |seq, actor: &str| Event {
        seq,
        at: 1_700_000_000_000,
        actor: actor.into(),
        body: EventBody::DutyChanged { member_id: "m1".into(), on_call: true },
    };

    assert!(matches!(a.try_lead().unwrap(), Lease::Took(_)));
    assert!(matches!(b.try_lead().unwrap(), Lease::HeldBy(_)), "one engine at a time");
    log_a.append(&[event(1, "a")], &[]).unwrap();
    assert!(matches!(log_b.append(&[event(2, "b")], &[]), Err(muster::store::StoreError::Fenced)));

    // A stalls past its lease (simulated: the lease is gone) and B takes over.
    let mut c = redis::Client::open(SHARED_REDIS).unwrap().get_connection().unwrap();
    let _: () = redis::cmd("DEL").arg(a.keys.lease()).query(&mut c).unwrap();
    let Lease::Took(token_b) = b.try_lead().unwrap() else { panic!("B takes the lapsed lease") };
    let Lease::HeldBy(holder) = a.try_lead().unwrap() else { panic!("A sees B") };
    assert_eq!(holder, token_b);
    // A wakes up and tries to log a decision: fenced, and nothing of it is written.
    assert!(matches!(log_a.append(&[event(2, "a")], &[]), Err(muster::store::StoreError::Fenced)));
    assert!(!a.renew().unwrap(), "A's renewal fails too");
    log_b.append(&[event(2, "b")], &[]).unwrap();
    // A stale seq is refused even with the lease (the log's ids only grow).
    assert!(log_b.append(&[event(2, "b")], &[]).is_err());

    let mut seen = Vec::new();
    log_b.replay(&mut |e| seen.push((e.seq, e.actor))).unwrap();
    assert_eq!(seen, vec![(1, "a".to_string()), (2, "b".to_string())]);
}

/// A node on the shared Redis under a prefix of its own (cleaned up when it is dropped),
/// holding the engine lease, and its log.
fn leading_node() -> (Prefix, tempfile::TempDir, muster::cluster::Node, muster::store::redis::RedisLog) {
    use muster::cluster::{Lease, Node};
    let prefix = Prefix::new(SHARED_REDIS);
    let dir = tempfile::tempdir().unwrap();
    let settings = test_settings(dir.path(), &node_env(SHARED_REDIS, &prefix.name, false));
    let mut node = Node::new(&settings).unwrap();
    assert!(matches!(node.try_lead().unwrap(), Lease::Took(_)));
    let log = muster::store::redis::RedisLog::new(node.client.clone(), node.keys.clone(), node.fence.clone(), false);
    (prefix, dir, node, log)
}

/// A replica takes only the positions saved since its last read (a later one for a member
/// after its earlier one); all of them the first time, and all again once the entry it
/// read last has been trimmed away.
#[test]
fn a_replica_takes_only_the_positions_saved_since_it_last_read() {
    use muster::domain::geo::Position;
    use muster::store::EventLog;
    use muster::store::redis::RedisLog;

    let (prefix, _dir, node, mut engine) = leading_node();
    let mut replica = RedisLog::new(node.client.clone(), node.keys.clone(), node.fence.clone(), false);
    let at = |member: &str, lat: f64| (member.to_string(), Position::new(lat, 114.3).unwrap());
    let sorted = |mut v: Vec<(String, Position)>| {
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    };

    assert!(replica.positions_changed().unwrap().is_empty(), "nothing saved yet");
    engine.save_positions(&[at("m1", 30.5), at("m2", 30.6)]).unwrap();
    assert_eq!(sorted(replica.positions_changed().unwrap()), [at("m1", 30.5), at("m2", 30.6)]);
    assert!(replica.positions_changed().unwrap().is_empty(), "nothing new");

    engine.save_positions(&[at("m2", 30.7)]).unwrap();
    engine.save_positions(&[at("m3", 30.8), at("m2", 30.9)]).unwrap();
    assert_eq!(replica.positions_changed().unwrap(), [at("m2", 30.7), at("m3", 30.8), at("m2", 30.9)]);

    // A replica that starts late reads the whole hash, each member where it is now.
    let mut late = RedisLog::new(node.client.clone(), node.keys.clone(), node.fence.clone(), false);
    assert_eq!(sorted(late.positions_changed().unwrap()), [at("m1", 30.5), at("m2", 30.9), at("m3", 30.8)]);

    // Everything the replica has read trimmed away: it cannot tell what it missed.
    let mut c = redis::Client::open(SHARED_REDIS).unwrap().get_connection().unwrap();
    let changes = format!("{{{}}}:positions:changes", prefix.name);
    let _: () = redis::cmd("XTRIM").arg(&changes).arg("MAXLEN").arg(0).query(&mut c).unwrap();
    engine.save_positions(&[at("m4", 31.0)]).unwrap();
    assert_eq!(
        sorted(replica.positions_changed().unwrap()),
        [at("m1", 30.5), at("m2", 30.9), at("m3", 30.8), at("m4", 31.0)]
    );
    assert_eq!(late.positions_changed().unwrap().len(), 4, "the late one's last entry went too");
    assert!(replica.positions_changed().unwrap().is_empty());
}

#[test]
fn frames_that_share_their_data_store_it_once_and_read_back_as_sent() {
    use std::sync::Arc;

    use muster::domain::event::{Event, EventBody, Frame, FrameEncoder};
    use muster::store::redis::RedisReader;
    use muster::store::{EventLog, LogReader};

    let (prefix, _dir, node, mut log) = leading_node();
    let reader = RedisReader::new(node.client.clone(), node.keys.clone());

    // An order to three members (one data, shared), and a frame of its own to one of them.
    let order = Arc::new(json!({"mobilization_id": "mob-1", "note": "全员集结 \"now\"", "deadline": 7}));
    let frames = vec![
        Frame { stream: "member:a".into(), seq: 1, kind: "mobilization.order", data: order.clone().into() },
        Frame { stream: "member:b".into(), seq: 1, kind: "mobilization.order", data: order.clone().into() },
        Frame { stream: "member:c".into(), seq: 1, kind: "mobilization.order", data: order.into() },
        Frame { stream: "member:a".into(), seq: 2, kind: "duty", data: json!({"on_call": true}).into() },
    ];
    let mut encoder = FrameEncoder::default();
    let encoded: Vec<(Frame, String)> = frames.into_iter().map(|f| (f.clone(), encoder.encode(&f))).collect();
    let event = Event {
        seq: 1,
        at: 1_700_000_000_000,
        actor: "system".into(),
        body: EventBody::DutyChanged { member_id: "a".into(), on_call: true },
    };
    log.append(&[event], &encoded).unwrap();

    let texts = |stream: &str| -> Vec<(u64, String)> {
        reader.frames_after(stream, 0, 10).unwrap().into_iter().map(|f| (f.seq, f.text)).collect()
    };
    assert_eq!(texts("member:a"), [(1, encoded[0].1.clone()), (2, encoded[3].1.clone())]);
    assert_eq!(texts("member:b"), [(1, encoded[1].1.clone())]);
    assert_eq!(texts("member:c"), [(1, encoded[2].1.clone())]);
    let at: Vec<(u64, String)> =
        reader.frames_at("member:a", &[2, 1]).unwrap().into_iter().map(|f| (f.seq, f.text)).collect();
    assert_eq!(at, [(1, encoded[0].1.clone()), (2, encoded[3].1.clone())]);
    assert!(reader.frames_after("member:a", 2, 10).unwrap().is_empty());

    // Stored: the shared data once, the order's entries refer to it; the lone frame whole.
    let mut c = redis::Client::open(SHARED_REDIS).unwrap().get_connection().unwrap();
    let payloads: Vec<(String, String)> =
        redis::cmd("HGETALL").arg(format!("{{{}}}:d", prefix.name)).query(&mut c).unwrap();
    assert_eq!(payloads.len(), 1, "{payloads:?}");
    assert_eq!(serde_json::from_str::<Value>(&payloads[0].1).unwrap(), *encoded[0].0.data);
    let entries: Vec<String> =
        redis::cmd("LRANGE").arg(format!("{{{}}}:s:member:a", prefix.name)).arg(0).arg(-1).query(&mut c).unwrap();
    assert_eq!(entries, [format!("&mobilization.order {}", payloads[0].0), encoded[3].1.clone()]);
}

#[test]
fn redis_snapshots_go_in_chunks_keep_the_latest_and_trim_the_log_below_the_one_before() {
    use muster::domain::event::{Event, EventBody};
    use muster::store::redis::RedisSnapshots;
    use muster::store::{EventLog, SnapshotStore};

    let (prefix, _dir, node, mut log) = leading_node();
    let mut snaps = RedisSnapshots::new(node.client.clone(), node.keys.clone(), false);
    for seq in 1..=30 {
        let e = Event {
            seq,
            at: 1_700_000_000_000,
            actor: "system".into(),
            body: EventBody::DutyChanged { member_id: "m1".into(), on_call: seq % 2 == 0 },
        };
        log.append(&[e], &[]).unwrap();
    }
    assert_eq!(snaps.progress().unwrap(), (0, 30));
    assert_eq!(log.load_snapshot().unwrap(), None);

    // Bigger than one chunk (1 MiB), with every byte value.
    let big: Vec<u8> = (0..(2 << 20) + 12_345).map(|i| (i % 251) as u8).collect();
    snaps.save(10, &big).unwrap();
    assert_eq!(log.load_snapshot().unwrap(), Some((10, big.clone())));
    let first = |snaps: &mut RedisSnapshots| snaps.events_after(0, 100).unwrap().first().map(|e| e.seq);
    assert_eq!(first(&mut snaps), Some(1), "the first snapshot trims nothing");

    // An older one is ignored and leaves no chunks behind.
    snaps.save(5, b"older").unwrap();
    assert_eq!(snaps.load().unwrap(), Some((10, big)));
    // A newer one replaces it, and the log goes below the one it replaced.
    snaps.save(20, b"twenty").unwrap();
    assert_eq!(snaps.load().unwrap(), Some((20, b"twenty".to_vec())));
    assert_eq!(snaps.progress().unwrap(), (20, 30));
    assert_eq!(first(&mut snaps), Some(11), "entries up to the previous snapshot (10) are trimmed");
    assert_eq!(
        snaps.events_after(20, 100).unwrap().iter().map(|e| e.seq).collect::<Vec<_>>(),
        (21..=30).collect::<Vec<_>>()
    );

    let mut c = redis::Client::open(SHARED_REDIS).unwrap().get_connection().unwrap();
    let chunk_lists: Vec<String> = redis::cmd("KEYS").arg(format!("{{{}}}:snap:*", prefix.name)).query(&mut c).unwrap();
    assert_eq!(chunk_lists, [format!("{{{}}}:snap:20", prefix.name)], "only the latest snapshot's chunks remain");
}

/// The seq of the last and of the first entry still in the log (0 when empty).
fn log_ends(url: &str, prefix: &Prefix) -> (u64, u64) {
    let mut r = redis::Client::open(url).unwrap().get_connection().unwrap();
    let key = format!("{{{}}}:log", prefix.name);
    let seq = |cmd: &str, from: &str, to: &str, r: &mut redis::Connection| -> u64 {
        let e: Vec<(String, Vec<Vec<u8>>)> =
            redis::cmd(cmd).arg(&key).arg(from).arg(to).arg("COUNT").arg(1).query(r).unwrap();
        e.first().map_or(0, |(id, _)| id.strip_prefix("0-").unwrap().parse().unwrap())
    };
    (seq("XREVRANGE", "+", "-", &mut r), seq("XRANGE", "-", "+", &mut r))
}

#[tokio::test]
async fn a_node_that_fell_behind_the_trimmed_log_restores_the_snapshot_and_catches_up() {
    let redis = OwnRedis::start();
    let url = redis.url();
    let Nodes { prefix, dir: _dir, a_proc: _a_proc, a, b_proc, b } = two_nodes(&redis).await;
    assert_eq!(a.put_city(&a.command(), &a.city).await.status(), 200);
    let staff = a.staff("c001");
    let body = json!({"grid_id": "c001-g1", "category": "patrol", "level": "III", "headcount": 1});
    let first_on_a = a.raise(&staff, body.clone()).await["id"].as_str().unwrap().to_string();
    eventually(Duration::from_secs(15), "B has the first incident", || async {
        b.get(&b.command(), &format!("/v1/incidents/{first_on_a}")).await.status() == 200
    })
    .await;

    // B stops reading (SIGSTOP) where the log ends now; A goes on until the log is trimmed
    // past that point (snapshots every 25 events, the log kept from the one before).
    let (stopped_at, _) = log_ends(&url, &prefix);
    let signal = |sig: &str| {
        let ok = std::process::Command::new("kill").arg(sig).arg(b_proc.pid().to_string()).status().unwrap();
        assert!(ok.success());
    };
    signal("-STOP");
    let mut raised = Vec::new();
    let until = Instant::now() + Duration::from_secs(30);
    while log_ends(&url, &prefix).1 <= stopped_at + 1 {
        assert!(Instant::now() < until, "the log was not trimmed past {stopped_at}");
        raised.push(a.raise(&staff, body.clone()).await["id"].as_str().unwrap().to_string());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    signal("-CONT");

    // What B needs next is gone from the log: it restores the latest snapshot, reads the
    // rest, and serves everything A confirmed.
    let last = raised.last().unwrap().clone();
    eventually(Duration::from_secs(15), "B caught up through the snapshot", || async {
        b.get(&b.command(), &format!("/v1/incidents/{last}")).await.status() == 200
    })
    .await;
    for id in raised.iter().chain([&first_on_a]) {
        assert_eq!(b.get(&b.command(), &format!("/v1/incidents/{id}")).await.status(), 200, "{id} on B");
    }
    eventually(Duration::from_secs(15), "B ready again", || ready(&b)).await;
    drop(b_proc);
}

/// The audit trail reads the Redis log too (`RedisReader::decisions`): a decision made
/// through one node is listed by the other, with its kind, actor and place, and paging by
/// the cursor ends.
#[tokio::test]
async fn the_audit_trail_reads_the_redis_log_from_any_node() {
    let prefix = Prefix::new(SHARED_REDIS);
    let a = node(SHARED_REDIS, &prefix, false).await;
    let b = node(SHARED_REDIS, &prefix, false).await;
    assert_eq!(a.put_city(&a.command(), &a.city).await.status(), 200);
    let district = a.city.districts[0].id.clone();
    let body = json!({"mode": "wartime", "reason": "audit on redis"});
    let resp = a
        .http
        .put(a.url(&format!("/v1/districts/{district}/mode")))
        .bearer_auth(a.command())
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let listed = |b: &TestApp| {
        let (http, url, token) = (b.http.clone(), b.url("/v1/audit?kind=mode_switched"), b.command());
        async move {
            let r = http.get(url).bearer_auth(token).send().await.ok()?;
            let v: Value = r.json().await.ok()?;
            v["entries"].as_array().and_then(|e| e.first().cloned())
        }
    };
    eventually(Duration::from_secs(10), "node B lists the switch", || {
        let f = listed(&b);
        async move { f.await.is_some() }
    })
    .await;
    let found = listed(&b).await;
    let entry = found.unwrap();
    assert_eq!(entry["kind"], "mode_switched", "{entry}");
    assert_eq!(entry["actor"], "command", "{entry}");
    assert_eq!(entry["place"]["district_id"], district.as_str(), "{entry}");
    // the cursor pages to the end
    let seq = entry["seq"].as_u64().unwrap();
    let v: Value =
        b.get(&b.command(), &format!("/v1/audit?kind=mode_switched&after={seq}")).await.json().await.unwrap();
    assert_eq!(v["entries"].as_array().map(Vec::len), Some(0), "{v}");
}

/// A reader's idle pooled connection that died with the link to Redis (a cut, a restart)
/// does not fail the next read: reads are idempotent and one that fails on a reused
/// connection is tried again on a fresh one (RELIABILITY.md, anomaly 2: a member's replay
/// from seq 0 that came back empty and closed). Without the retry in `RedisReader::with` the
/// second read below fails with a broken connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_on_a_pooled_connection_whose_link_was_cut_is_retried_on_a_fresh_one() {
    use muster::domain::event::{Event, EventBody, Frame, FrameEncoder};
    use muster::store::redis::RedisReader;
    use muster::store::{EventLog, LogReader};

    use crate::history::proxy::Proxy;

    let (_prefix, _dir, node, mut log) = leading_node();
    let proxy = Proxy::start("127.0.0.1:6379".into()).await;
    let through_proxy = redis::Client::open(format!("redis://127.0.0.1:{}/", proxy.port)).unwrap();
    let reader = std::sync::Arc::new(RedisReader::new(through_proxy, node.keys.clone()));

    let frame = Frame { stream: "member:a".into(), seq: 1, kind: "duty", data: json!({"on_call": true}).into() };
    let text = FrameEncoder::default().encode(&frame);
    let event = Event {
        seq: 1,
        at: 1_700_000_000_000,
        actor: "system".into(),
        body: EventBody::DutyChanged { member_id: "a".into(), on_call: true },
    };
    log.append(&[event], &[(frame, text.clone())]).unwrap();

    let read = |reader: std::sync::Arc<RedisReader>| async move {
        tokio::task::spawn_blocking(move || reader.frames_after("member:a", 0, 10)).await.unwrap()
    };
    let first = read(reader.clone()).await.expect("the first read, on a new connection");
    assert_eq!(first.iter().map(|f| (f.seq, f.text.clone())).collect::<Vec<_>>(), [(1, text.clone())]);

    // The link dies while the connection sits in the pool; the proxy takes new ones.
    proxy.cut();
    let second = read(reader.clone()).await.expect("a read after the cut (retried on a fresh connection)");
    assert_eq!(second.iter().map(|f| (f.seq, f.text.clone())).collect::<Vec<_>>(), [(1, text)]);
    proxy.stop();
}
