//! Jepsen-style history checking (issue 21): concurrent clients drawing random, valid and
//! invalid operations from the whole API, every invocation and outcome recorded with its
//! times and every frame each member receives; a seeded nemesis (kill -9 of the single
//! node; on three nodes on a durable Redis also SIGSTOP of the engine past its lease, Redis
//! restarts, and a proxy that cuts, delays or holds one direction); then a checker over the
//! history, the final state, the members' streams and an independent fold of the log.
//!
//! `MUSTER_HISTORY_SEED=N MUSTER_HISTORY_SECS=S cargo test --test api history -- --nocapture`
//! (docs/RELIABILITY.md, "History checking"). A failure prints the seed, the fault schedule
//! and, for each anomaly, the smallest window of the history that shows it.

mod campaigns;
mod checker;
mod client;
mod fold;
mod hooks;
mod monitor;
mod nemesis;
mod ops;
pub mod proxy;
mod push;
mod residents;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use muster::domain::org::City;
use muster::gateway::auth::Role;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::Method;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use checker::{Final, window};
use client::{Ctx, Outcome, Shared};
use fold::Fold;
use nemesis::{Fault, Nodes, schedule};
use ops::{Community, MemberInfo, World};

/// The two runs share the machine with others: one at a time.
static SERIAL: LazyLock<tokio::sync::Mutex<()>> = LazyLock::new(|| tokio::sync::Mutex::new(()));

const MEMBERS_PER_COMMUNITY: usize = 12;
const COMMUNITIES: usize = 3;

fn seed_and_secs(default_secs: u64) -> (u64, u64) {
    let seed = std::env::var("MUSTER_HISTORY_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random);
    let secs = std::env::var("MUSTER_HISTORY_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(default_secs);
    (seed, secs)
}

/// The small demo city with three communities whose 12 members each are on call, live
/// and stand in the community; everyone else is off duty.
fn city() -> (City, Vec<Community>, Vec<MemberInfo>) {
    let mut city = muster::demo::demo_city(300, 42);
    let district_of = |city: &City, street: &str| {
        city.streets.iter().find(|s| s.id == street).map(|s| s.district_id.clone()).unwrap_or_default()
    };
    let chosen: Vec<Community> = city
        .communities
        .iter()
        .filter(|c| !c.grids.is_empty())
        .take(COMMUNITIES)
        .map(|c| Community {
            id: c.id.clone(),
            district: district_of(&city, &c.street_id),
            grids: c.grids.iter().map(|g| g.id.clone()).collect(),
        })
        .collect();
    let mut members = Vec::new();
    for m in city.members.iter_mut() {
        m.on_call = false;
    }
    for (ci, c) in chosen.iter().enumerate() {
        let comm = city.communities.iter().find(|x| x.id == c.id).unwrap().clone();
        let cells: Vec<_> = comm.grids.iter().flat_map(|g| g.cells.iter().map(move |c| (g.id.clone(), *c))).collect();
        for k in 0..MEMBERS_PER_COMMUNITY {
            let m = &mut city.members[ci * MEMBERS_PER_COMMUNITY + k];
            let (grid, cell) = &cells[k % cells.len()];
            m.on_call = true;
            m.residence_grid_id = grid.clone();
            m.position = cell.center();
            members.push(MemberInfo {
                id: m.id.clone(),
                community: ci,
                team: m.team_id.clone(),
                position: (m.position.lat, m.position.lng),
            });
        }
    }
    (city, chosen, members)
}

fn base_env() -> Vec<(String, String)> {
    [
        ("MUSTER_DISPATCH__OFFER_TTL_S", "5"),
        ("MUSTER_DISPATCH__WARTIME__OFFER_TTL_S", "6"),
        ("MUSTER_DISPATCH__RETRY_S", "3"),
        ("MUSTER_DISPATCH__FAIRNESS__EASY_CAP_PER_DAY", "100000"),
        ("MUSTER_DISPATCH__SERVICE__EASY_ORDERS_PER_WEEK", "100000"),
        ("MUSTER_DISPATCH__SERVICE__HARD_PRIORITY_S", "3"),
        ("MUSTER_SERVER__MAX_LIST", "100000"),
        ("MUSTER_WS__PING_INTERVAL_S", "2"),
        ("MUSTER_WS__PING_TIMEOUT_S", "6"),
    ]
    .iter()
    .chain(hooks::ENV.iter())
    .chain(residents::ENV.iter())
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .chain(push::env())
    .collect()
}

async fn ready(http: &reqwest::Client, addr: &str) -> bool {
    matches!(http.get(format!("http://{addr}/readyz")).send().await, Ok(r) if r.status() == 200)
}

async fn all_ready(ctx: &Shared, nodes: &Nodes, limit: Duration) {
    let until = Instant::now() + limit;
    for i in 0..nodes.dirs.len() {
        while !ready(&ctx.http, &ctx.addr(i)).await {
            if Instant::now() >= until {
                // What the node said last, to tell a node stuck unwritable from a slow one.
                let log = std::fs::read_to_string(nodes.dirs[i].path().join("node.log")).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                let url = format!("http://{}/readyz", ctx.addr(i));
                let answer = match ctx.http.get(url).send().await {
                    Ok(r) => r.text().await.unwrap_or_default(),
                    Err(e) => e.to_string(),
                };
                println!("node{i} /readyz: {answer}\nnode{i}'s log, last lines:");
                for l in tail.iter().rev() {
                    println!("  {l}");
                }
                panic!("node{i} not ready within {limit:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

async fn get_json(ctx: &Shared, node: usize, token: &str, path: &str) -> Value {
    for _ in 0..50 {
        if let Ok(r) = ctx.http.get(format!("http://{}{path}", ctx.addr(node))).bearer_auth(token).send().await
            && r.status() == 200
            && let Ok(v) = r.json::<Value>().await
        {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("GET {path} on node{node} did not answer 200");
}

/// A member's whole stream, replayed from seq 0; tried again (up to three times) when it
/// came back shorter than the hello's `last_seq`, which is printed.
async fn replay(ctx: &Shared, node: usize, member: &str) -> Vec<(u64, String, Value)> {
    let mut got = (Vec::new(), None);
    for attempt in 0..3 {
        got = replay_once(ctx, node, member).await;
        if got.1.is_some_and(|l| got.0.len() as u64 >= l) {
            break;
        }
        println!(
            "replay of {member} on node{node}, attempt {attempt}: {} frames, hello last_seq {:?}",
            got.0.len(),
            got.1
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    got.0
}

async fn replay_once(ctx: &Shared, node: usize, member: &str) -> (Vec<(u64, String, Value)>, Option<u64>) {
    let token = ctx.token(Role::Member, Some(member));
    let url = format!("ws://{}/v1/ws?access_token={token}&after_seq=0", ctx.addr(node));
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.expect("replay connects");
    let mut out = Vec::new();
    let mut last = None;
    while let Ok(Some(Ok(msg))) = tokio::time::timeout(Duration::from_secs(3), ws.next()).await {
        if let Message::Close(c) = &msg {
            println!("replay of {member} on node{node} closed by the server: {c:?}");
        }
        let Message::Text(t) = msg else { continue };
        let f: Value = serde_json::from_str(&t).unwrap();
        if f["type"] == "hello" {
            last = f["data"]["last_seq"].as_u64();
        } else if f["seq"].as_u64().unwrap_or(0) > 0 {
            out.push((f["seq"].as_u64().unwrap(), f["type"].as_str().unwrap_or("").to_string(), f["data"].clone()));
        }
        if last.is_some_and(|l| out.len() as u64 >= l) {
            break;
        }
    }
    (out, last)
}

fn logged_frames(db: &std::path::Path, member: &str) -> Vec<(u64, String, Value)> {
    let conn = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let mut stmt = conn.prepare("SELECT seq, text FROM frames WHERE stream = ?1 ORDER BY seq").unwrap();
    stmt.query_map([format!("member:{member}")], |r| {
        let text: String = r.get(1)?;
        let f: Value = serde_json::from_str(&text).unwrap();
        Ok((r.get::<_, i64>(0)? as u64, f["type"].as_str().unwrap_or("").to_string(), f["data"].clone()))
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

struct Cluster {
    redis: Arc<Mutex<crate::cluster::OwnRedis>>,
    prefix: crate::cluster::Prefix,
    watch: Arc<monitor::Watch>,
}

impl Cluster {
    fn log_key(&self) -> String {
        format!("{{{}}}:log", self.prefix.name)
    }
    fn url(&self) -> String {
        self.redis.lock().unwrap().url()
    }
}

fn log_end(nodes: &Nodes, cluster: Option<&Cluster>) -> u64 {
    match cluster {
        None => {
            let conn =
                rusqlite::Connection::open_with_flags(nodes.db(), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
            conn.query_row("SELECT coalesce(max(seq), 0) FROM events", [], |r| r.get::<_, i64>(0)).unwrap() as u64
        }
        Some(c) => {
            let mut r = redis::Client::open(c.url()).unwrap().get_connection().unwrap();
            let e: Vec<(String, Vec<(String, String)>)> =
                redis::cmd("XREVRANGE").arg(c.log_key()).arg("+").arg("-").arg("COUNT").arg(1).query(&mut r).unwrap();
            e.first().and_then(|(id, _)| id.strip_prefix("0-")?.parse().ok()).unwrap_or(0)
        }
    }
}

async fn run(n_nodes: usize, default_secs: u64) {
    let _serial = SERIAL.lock().await;
    let (seed, secs) = seed_and_secs(default_secs);
    println!("seed={seed}");
    println!(
        "history: {n_nodes} node(s), {secs} s; reproduce with MUSTER_HISTORY_SEED={seed} MUSTER_HISTORY_SECS={secs}"
    );
    let faults = schedule(seed, secs, n_nodes);
    let schedule_text: Vec<String> = faults.iter().map(|(t, f)| format!("  at {t:>6} ms: {f:?}")).collect();
    println!("fault schedule:\n{}", schedule_text.join("\n"));

    // ---- the nodes (and on three: their durable Redis, proxies and the monitor), with the
    // test's own SMS gateway and push service
    let sms = residents::Sms::start().await;
    let push_service = push::Service::start().await;
    let mut env = base_env();
    env.push(("MUSTER_RESIDENTS__SMS_URL".into(), format!("\"{}\"", sms.url)));
    let mut cluster = None;
    let mut proxies = Vec::new();
    if n_nodes > 1 {
        let redis = crate::cluster::OwnRedis::start();
        let prefix = crate::cluster::Prefix::new(&redis.url());
        let lease_key = format!("{{{}}}:lease", prefix.name);
        let watch = monitor::spawn(redis.port, lease_key, format!("{{{}}}:log", prefix.name));
        for _ in 0..200 {
            if watch.generation.load(Ordering::SeqCst) > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        for _ in 0..n_nodes {
            proxies.push(proxy::Proxy::start(format!("127.0.0.1:{}", redis.port)).await);
        }
        env.extend(
            [
                ("MUSTER_REDIS__PREFIX", prefix.name.as_str()),
                ("MUSTER_REDIS__LEASE_MS", "1000"),
                ("MUSTER_ENGINE__SNAPSHOT_EVERY", "0"),
                ("MUSTER_ENGINE__POSITION_FLUSH_S", "1"),
                ("MUSTER_REDIS__REQUIRE_PERSISTENCE", "true"),
                ("MUSTER_REDIS__COMMAND_TIMEOUT_MS", "3000"),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        cluster = Some(Cluster { redis: Arc::new(Mutex::new(redis)), prefix, watch });
    }
    let envs: Vec<Vec<(String, String)>> = (0..n_nodes)
        .map(|i| {
            let mut e = env.clone();
            if let Some(p) = proxies.get(i) {
                e.push(("MUSTER_REDIS_URL".into(), format!("redis://127.0.0.1:{}/", p.port)));
                e.push(("MUSTER_REDIS__NODE_ID".into(), format!("node{i}")));
            }
            e
        })
        .collect();
    let mut nodes = Nodes::start(envs).await;
    if let Some(c) = &cluster {
        nodes.redis = Some(c.redis.clone());
        nodes.proxies = proxies.clone();
        nodes.lease_key = Some(format!("{{{}}}:lease", c.prefix.name));
        nodes.monitor_gen = Some(c.watch.generation.clone());
    }
    let (city, communities, members) = city();
    let setup = Ctx::new(nodes.addrs(), 0);
    all_ready(&setup, &nodes, Duration::from_secs(30)).await;
    let cmd = setup.token(Role::Command, None);
    // Ready is not yet leading: on three nodes the first write may meet no engine yet
    // (503 `unavailable`: nothing was changed, retry shortly), as a loaded machine showed.
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let url = format!("http://{}/v1/city", setup.addr(0));
        let resp = setup.http.put(url).bearer_auth(&cmd).json(&city).send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        if status == 503 && text.contains("\"unavailable\"") && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(300)).await;
            continue;
        }
        assert_eq!(status, 200, "import: {text}");
        break;
    }
    let catalog = get_json(&setup, 0, &cmd, "/v1/catalog").await;
    let categories: Vec<String> =
        catalog["categories"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap().to_string()).collect();
    for i in 1..n_nodes {
        // Every node has the city before the clients start.
        let until = Instant::now() + Duration::from_secs(15);
        while get_json(&setup, i, &cmd, "/v1/communities").await.as_array().is_none_or(|a| a.is_empty()) {
            assert!(Instant::now() < until, "node{i} never had the city");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // ---- the run
    let ctx = Ctx::new(nodes.addrs(), secs);
    let world = Arc::new(World::new(communities, members, categories));
    let mut rng = StdRng::seed_from_u64(seed);
    let mut tasks = Vec::new();
    let mut p = 0usize;
    for ci in 0..world.communities.len() {
        tasks.push(tokio::spawn(ops::staff(ctx.clone(), world.clone(), ci, rng.r#gen(), p % n_nodes)));
        p += 1;
    }
    tasks.push(tokio::spawn(ops::command(ctx.clone(), world.clone(), rng.r#gen(), p % n_nodes)));
    p += 1;
    for mi in 0..world.members.len() {
        tasks.push(tokio::spawn(ops::member(ctx.clone(), world.clone(), mi, rng.r#gen(), (p + mi) % n_nodes)));
    }
    let receiver = hooks::Receiver::start().await;
    tasks.push(tokio::spawn(hooks::admin(ctx.clone(), receiver.clone(), rng.r#gen(), p % n_nodes)));
    tasks.push(tokio::spawn(campaigns::manager(ctx.clone(), world.clone(), rng.r#gen(), (p + 1) % n_nodes)));
    tasks.push(tokio::spawn(residents::residents(
        ctx.clone(),
        world.clone(),
        sms.clone(),
        rng.r#gen(),
        (p + 2) % n_nodes,
    )));
    let push_hits = push_service.hits.clone();
    tasks.push(tokio::spawn(push::browsers(ctx.clone(), world.clone(), push_service, rng.r#gen(), p % n_nodes)));
    let mut played: Vec<(u64, String, String)> = Vec::new();
    let mut nrng = StdRng::seed_from_u64(seed ^ 0xfa017);
    for (at, f) in &faults {
        let wait = at.saturating_sub(ctx.now());
        tokio::time::sleep(Duration::from_millis(wait)).await;
        if ctx.over() {
            break;
        }
        let t = ctx.now();
        let what = nodes.play(f, &ctx, &mut nrng).await;
        println!("  {t:>6} ms  {}: {what}", f.kind());
        played.push((t, f.kind().to_string(), what));
    }
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(30), t).await.expect("a client process ended").unwrap();
    }

    // ---- quiesce: every node up, every open incident cancelled, the log still
    all_ready(&ctx, &nodes, Duration::from_secs(30)).await;
    let cmd = ctx.token(Role::Command, None);
    let open = get_json(&ctx, 0, &cmd, "/v1/incidents").await;
    for inc in open.as_array().unwrap().iter().filter(|i| i["status"] == "open" || i["status"] == "filled") {
        let id = inc["id"].as_str().unwrap();
        let path = format!("/v1/incidents/{id}/cancel");
        for _ in 0..5 {
            let o =
                ctx.call(0, "final", "cancel", Method::POST, &path, &cmd, Some(json!({"reason": "end"})), None).await;
            if matches!(&o, Outcome::Ok(_)) || matches!(&o, Outcome::Fail(c) if c == "incident_closed") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    let mut end = log_end(&nodes, cluster.as_ref());
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let now = log_end(&nodes, cluster.as_ref());
        if now == end || Instant::now() > until {
            break;
        }
        end = now;
    }
    // Every node has caught up with the log and serves the same incidents.
    let reference = get_json(&ctx, 0, &cmd, "/v1/incidents").await;
    for i in 1..n_nodes {
        let until = Instant::now() + Duration::from_secs(15);
        loop {
            let v = get_json(&ctx, i, &cmd, "/v1/incidents").await;
            if v == reference {
                break;
            }
            assert!(Instant::now() < until, "node{i} serves other incidents than node0 after the run (seed {seed})");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    // ---- final reads, as city command
    let mut fin = Final { incidents: reference.as_array().unwrap().clone(), ..Default::default() };
    for m in get_json(&ctx, 0, &cmd, "/v1/mobilizations").await.as_array().unwrap() {
        let id = m["id"].as_str().unwrap();
        fin.mobilizations.push(get_json(&ctx, 0, &cmd, &format!("/v1/mobilizations/{id}")).await);
    }
    for o in get_json(&ctx, 0, &cmd, "/v1/orders").await.as_array().unwrap() {
        let id = o["id"].as_str().unwrap();
        fin.orders.push(get_json(&ctx, 0, &cmd, &format!("/v1/orders/{id}")).await);
    }
    fin.modes = get_json(&ctx, 0, &cmd, "/v1/modes").await;
    let hooks_served = get_json(&ctx, 0, &cmd, "/v1/webhooks").await;
    for h in hooks_served["webhooks"].as_array().into_iter().flatten() {
        let id = h["id"].as_str().unwrap_or_default().to_string();
        let letters = get_json(&ctx, 0, &cmd, &format!("/v1/webhooks/{id}/dead-letters")).await;
        fin.hooks.dead_letters.insert(id, letters.as_array().cloned().unwrap_or_default());
        fin.hooks.served.push(h.clone());
    }
    let mut after = 0;
    loop {
        let page = get_json(&ctx, 0, &cmd, &format!("/v1/audit?limit=500&after={after}")).await;
        fin.audit.extend(page["entries"].as_array().into_iter().flatten().cloned());
        match page["next"].as_u64() {
            Some(n) if n > after => after = n,
            _ => break,
        }
    }
    let mut fin_campaigns = campaigns::FinalCampaigns::default();
    for c in get_json(&ctx, 0, &cmd, "/v1/campaigns").await["campaigns"].as_array().into_iter().flatten() {
        let id = c["id"].as_str().unwrap_or_default();
        fin_campaigns.served.push(get_json(&ctx, 0, &cmd, &format!("/v1/campaigns/{id}")).await);
    }
    let answered = campaigns::answered(&ctx.ops.lock().unwrap());
    for m in answered {
        let token = ctx.token(Role::Member, Some(&m));
        fin_campaigns.mine.insert(m.clone(), get_json(&ctx, 0, &token, "/v1/campaigns/mine").await);
    }
    let fin_residents = residents::FinalResidents {
        requests: get_json(&ctx, 0, &cmd, "/v1/requests").await.as_array().cloned().unwrap_or_default(),
        proposals: get_json(&ctx, 0, &cmd, "/v1/proposals").await.as_array().cloned().unwrap_or_default(),
    };
    let mut fin_push = push::FinalPush::default();
    for m in push::members(&world) {
        let token = ctx.token(Role::Member, Some(&m));
        let list = get_json(&ctx, 0, &token, "/v1/push/subscriptions").await;
        fin_push.lists.insert(m, list.as_array().cloned().unwrap_or_default());
    }
    for (i, m) in world.members.iter().enumerate() {
        let frames = replay(&ctx, i % n_nodes, &m.id).await;
        if cluster.is_none() {
            fin.logged.insert(m.id.clone(), logged_frames(&nodes.db(), &m.id));
        }
        fin.streams.insert(m.id.clone(), frames);
    }
    let events = match &cluster {
        None => fold::read_sqlite(&nodes.db()),
        Some(c) => fold::read_redis(&c.url(), &c.log_key()),
    };
    let after = log_end(&nodes, cluster.as_ref());
    assert_eq!(after, end, "the log grew while the final state was read (seed {seed})");
    fin.hits = receiver.hits.lock().unwrap().clone();
    let folded = Fold::run(&events);
    let seen = cluster.as_ref().map(|c| c.watch.seen.lock().unwrap().clone());
    let mut report = checker::check(&ctx, &folded, &fin, seen.as_deref());
    // The families with folds of their own: campaigns, residents, push.
    {
        let ops = ctx.ops.lock().unwrap().clone();
        let mut ck = checker::Ck::default();
        let cf = campaigns::CampaignFold::run(&events);
        report.stats.extend(campaigns::check(&ops, &cf, &fin_campaigns, ctx.start_ms, &mut ck));
        let rf = residents::ResidentFold::run(&events);
        report.stats.extend(residents::check(&ops, &rf, &fin_residents, ctx.start_ms, &mut ck));
        fin_push.hits = push_hits.lock().unwrap().clone();
        report.stats.extend(push::check(&ops, &push::PushFold::run(&events), &fin_push, &mut ck));
        report.anomalies.extend(ck.out);
    }

    // ---- the record
    let mut by_kind: BTreeMap<String, usize> = BTreeMap::new();
    for (_, k, _) in &played {
        *by_kind.entry(k.clone()).or_default() += 1;
    }
    println!("faults played: {by_kind:?}");
    let s = &report.stats;
    let g = |k: &str| s.get(k).copied().unwrap_or(0);
    println!(
        "history: nodes={n_nodes} seed={seed} secs={secs} ops={} ok={} fail={} unknown={} incidents={} mobilizations={} orders={} events={} frames={} reconnects={} anomalies={}",
        g("ops"),
        g("ops ok"),
        g("ops fail"),
        g("ops unknown"),
        g("incidents"),
        g("mobilizations"),
        g("orders"),
        g("events"),
        g("frames received"),
        g("member reconnects"),
        report.anomalies.len()
    );
    let kinds: HashMap<&str, usize> =
        s.iter().filter(|(k, _)| k.starts_with("op ")).map(|(k, v)| (k.as_str(), *v)).collect();
    let mut kinds: Vec<_> = kinds.into_iter().collect();
    kinds.sort();
    println!("by operation: {}", kinds.iter().map(|(k, v)| format!("{}={v}", &k[3..])).collect::<Vec<_>>().join(" "));
    println!("log: {:?}", folded.kinds);
    for k in [
        "unknown raises in",
        "unknown raises out",
        "503 counted unknown",
        "lease grants",
        "appends watched",
        "epochs that appended",
        "webhooks",
        "webhooks disabled by the deliverer",
        "webhook requests",
        "webhook messages",
        "dead letters",
        "city imports applied",
        "campaigns",
        "campaign rosters published",
        "campaign no-show re-rosters",
        "campaign answers",
        "requests",
        "requests dispatched",
        "requests confirmed",
        "proposals",
        "resident sign-ins",
        "push subscriptions",
        "push attempts",
        "pushes received",
    ] {
        if let Some(v) = s.get(k) {
            println!("{k}: {v}");
        }
    }
    if let Some(c) = &cluster {
        c.watch.stop.store(true, Ordering::SeqCst);
    }
    for p in &proxies {
        p.stop();
    }
    if !report.anomalies.is_empty() {
        let ops = ctx.ops.lock().unwrap().clone();
        println!("\nANOMALIES (seed={seed}, secs={secs}, nodes={n_nodes})");
        println!("fault schedule:\n{}", schedule_text.join("\n"));
        println!("faults as played:");
        for (t, k, w) in &played {
            println!("  {t:>6} ms  {k}: {w}");
        }
        for a in report.anomalies.iter().take(20) {
            println!("\n* {} (at {:?} ms)", a.what, a.at);
            for l in window(&ops, a) {
                println!("{l}");
            }
        }
        panic!(
            "{} anomalies; reproduce with MUSTER_HISTORY_SEED={seed} MUSTER_HISTORY_SECS={secs} cargo test --test api history -- --nocapture",
            report.anomalies.len()
        );
    }
    drop(nodes);
    let _ = Fault::KillEngine(0);
}

/// One node (the real binary on SQLite), killed with SIGKILL and restarted 3–5 times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_node_with_kill_9() {
    if skipped() {
        return;
    }
    run(1, 30).await;
}

/// `.ci/run` runs the suite with `SKIP_HISTORY=1`, then the history runs as a step of their
/// own, one at a time (they start servers and inject faults; beside the rest of the suite
/// on two cores they would only be slower). Not a `MUSTER_*` name: muster reads those as
/// settings.
fn skipped() -> bool {
    let skip = std::env::var("SKIP_HISTORY").is_ok_and(|v| v == "1");
    if skip {
        println!("skipped: SKIP_HISTORY=1 (.ci/run runs the history checker as a step of its own)");
    }
    skip
}

/// Three nodes on a durable Redis of their own, each through a proxy the test controls;
/// kill -9 of the engine and of a follower, SIGSTOP of the engine past its lease, a Redis
/// restart, and cuts, delays and one-way holds between a node and Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_on_redis() {
    if skipped() {
        return;
    }
    assert!(
        std::process::Command::new("redis-server").arg("--version").output().is_ok(),
        "the three-node history needs the redis-server binary (Debian's redis-server; .ci/run installs it)"
    );
    run(3, 40).await;
}
