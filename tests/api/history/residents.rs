//! Residents in the history run (issue 20's feature, issue 21's rule): residents of each
//! community sign in with a code sent through an SMS gateway of the test's own (a loopback
//! receiver; sometimes a wrong code first), place requests (sometimes on another
//! community's grid, or without a text), read their own and try another resident's, and
//! confirm and rate them; staff dispatch (into orders the members may claim), merge and
//! decline them; members propose services and staff approve or decline the proposals.
//! `check` holds those operations against an independent fold of the log's resident events
//! and the requests served at the end.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use muster::gateway::auth::Role;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use reqwest::Method;
use serde_json::{Value, json};

use super::checker::Ck;
use super::client::{Op, Outcome, Shared};
use super::fold::LogEvent;
use super::ops::World;
use crate::helpers::{LoopbackReply, loopback};

/// The settings the run's nodes need: limits on codes that a run does not reach.
pub const ENV: [(&str, &str); 3] = [
    ("MUSTER_RESIDENTS__CODES_PER_PHONE_PER_HOUR", "10000"),
    ("MUSTER_RESIDENTS__CODES_PER_IP_PER_HOUR", "100000"),
    ("MUSTER_LIMITS__SESSION_PER_IP_PER_MIN", "100000"),
];

const RESIDENTS_PER_COMMUNITY: usize = 2;

/// The SMS gateway: every message it takes, as (to, code).
#[derive(Clone)]
pub struct Sms {
    pub url: String,
    pub got: Arc<Mutex<Vec<(String, String)>>>,
}

impl Sms {
    pub async fn start() -> Sms {
        let got: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
        let g = got.clone();
        let addr = loopback(move |req| {
            let v: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
            let code: String = v["text"].as_str().unwrap_or("").chars().filter(char::is_ascii_digit).take(6).collect();
            g.lock().unwrap().push((v["to"].as_str().unwrap_or("").to_string(), code));
            LoopbackReply::status(200)
        })
        .await;
        Sms { url: format!("http://{addr}/sms"), got }
    }

    /// The newest code sent to `phone` after the first `seen` messages.
    async fn code(&self, phone: &str, seen: usize) -> Option<String> {
        for _ in 0..30 {
            let got = self.got.lock().unwrap().clone();
            if let Some((_, c)) = got.iter().skip(seen).rev().find(|(to, _)| to == phone) {
                return Some(c.clone());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        None
    }
}

async fn pause(rng: &mut StdRng, lo: u64, hi: u64) {
    tokio::time::sleep(Duration::from_millis(rng.gen_range(lo..hi))).await;
}

fn at(offset_s: i64) -> String {
    muster::domain::dispatcher::rfc3339(muster::engine::now_ms() + offset_s * 1000)
}

struct Resident {
    phone: String,
    community: usize,
    token: Option<String>,
    requests: Vec<String>,
}

/// Signs a resident in: a code through the SMS gateway, then the session (sometimes a
/// wrong code first). Recorded as `res_code` and `res_verify`.
async fn sign_in(ctx: &Shared, sms: &Sms, r: &mut Resident, cid: &str, rng: &mut StdRng, node: usize) {
    let who = format!("resident:{}", r.phone);
    let seen = sms.got.lock().unwrap().len();
    let body = json!({"community_id": cid, "phone": r.phone});
    let o = ctx.call(node, &who, "res_code", Method::POST, "/v1/residents/code", "", Some(body), None).await;
    let Outcome::Ok(v) = o else { return };
    let challenge = v["challenge_id"].as_str().unwrap_or_default().to_string();
    let Some(code) = sms.code(&r.phone, seen).await else { return };
    if rng.gen_bool(0.15) {
        let wrong = format!("{:06}", (code.parse::<u32>().unwrap_or(0) + 1) % 1_000_000);
        let body = json!({"challenge_id": challenge, "code": wrong});
        ctx.call(node, &who, "res_verify_wrong", Method::POST, "/v1/session/resident", "", Some(body), None).await;
    }
    let body = json!({"challenge_id": challenge, "code": code});
    if let Outcome::Ok(v) =
        ctx.call(node, &who, "res_verify", Method::POST, "/v1/session/resident", "", Some(body), None).await
    {
        r.token = v["access_token"].as_str().map(str::to_string);
    }
}

/// Residents, their communities' staff, and members who propose services.
pub async fn residents(ctx: Shared, world: Arc<World>, sms: Sms, seed: u64, node: usize) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut people: Vec<Resident> = (0..world.communities.len() * RESIDENTS_PER_COMMUNITY)
        .map(|i| Resident {
            phone: format!("139{:08}", 21_000_000 + i),
            community: i / RESIDENTS_PER_COMMUNITY,
            token: None,
            requests: Vec::new(),
        })
        .collect();
    let mut proposals: Vec<(String, usize)> = Vec::new();
    let mut n = 0u64;
    while !ctx.over() {
        n += 1;
        let ri = rng.gen_range(0..people.len());
        let ci = people[ri].community;
        let c = world.communities[ci].clone();
        let staff = ctx.token(Role::Staff, Some(&c.id));
        let staff_who = format!("staff:{}", c.id);
        if people[ri].token.is_none() {
            sign_in(&ctx, &sms, &mut people[ri], &c.id, &mut rng, node).await;
            pause(&mut rng, 150, 400).await;
            continue;
        }
        let who = format!("resident:{}", people[ri].phone);
        let token = people[ri].token.clone().unwrap_or_default();
        let mine = people[ri].requests.choose(&mut rng).cloned();
        let all: Vec<(String, usize)> =
            people.iter().flat_map(|p| p.requests.iter().map(move |r| (r.clone(), p.community))).collect();
        let theirs = all.iter().filter(|(_, k)| *k == ci).map(|(r, _)| r.clone()).collect::<Vec<_>>();
        match rng.gen_range(0..100) {
            0..20 => {
                let mut body = json!({
                    "category": "elderly_help", "description": format!("hist-req-{n}"),
                    "grid_id": c.grids.choose(&mut rng).unwrap(),
                    "preferred_start": at(0), "preferred_end": at(86_400),
                });
                if rng.gen_bool(0.12) {
                    let other = &world.communities[(ci + 1) % world.communities.len()];
                    body["grid_id"] = json!(other.grids[0]);
                }
                let o = ctx.call(node, &who, "req_place", Method::POST, "/v1/requests", &token, Some(body), None).await;
                if let Outcome::Ok(v) = o {
                    people[ri].requests.push(v["id"].as_str().unwrap_or_default().to_string());
                }
            }
            20..36 => {
                let Some(id) = mine else { continue };
                ctx.call(node, &who, "req_get", Method::GET, &format!("/v1/requests/{id}"), &token, None, None).await;
            }
            36..44 => {
                // Another resident's request (of any community): as missing as none.
                let Some((id, _)) = all
                    .iter()
                    .filter(|(r, _)| !people[ri].requests.contains(r))
                    .collect::<Vec<_>>()
                    .choose(&mut rng)
                    .cloned()
                    .cloned()
                else {
                    continue;
                };
                let p = format!("/v1/requests/{id}");
                ctx.call(node, &who, "req_get_foreign", Method::GET, &p, &token, None, None).await;
            }
            44..48 => {
                ctx.call(node, &who, "req_list", Method::GET, "/v1/requests", &token, None, None).await;
            }
            48..62 => {
                let Some(id) = theirs.choose(&mut rng) else { continue };
                let slots = if rng.gen_bool(0.1) { 0 } else { 1 };
                let body = json!({"window_start": at(-60), "window_end": at(86_400), "slots": slots});
                let p = format!("/v1/requests/{id}/dispatch");
                let o = ctx.call(node, &staff_who, "req_dispatch", Method::POST, &p, &staff, Some(body), None).await;
                if let Outcome::Ok(v) = o
                    && let Some(order) = v["order_id"].as_str()
                {
                    world.orders.lock().unwrap().push((order.to_string(), ci));
                }
            }
            62..68 => {
                let Some(id) = theirs.choose(&mut rng) else { continue };
                let reason = if rng.gen_bool(0.15) { "" } else { "不在服务范围" };
                let p = format!("/v1/requests/{id}/decline");
                let body = json!({"reason": reason});
                ctx.call(node, &staff_who, "req_decline", Method::POST, &p, &staff, Some(body), None).await;
            }
            68..72 => {
                let Some(id) = theirs.choose(&mut rng) else { continue };
                let order = {
                    let orders = world.orders.lock().unwrap();
                    orders
                        .iter()
                        .filter(|(_, k)| *k == ci)
                        .map(|(o, _)| o.clone())
                        .collect::<Vec<_>>()
                        .choose(&mut rng)
                        .cloned()
                };
                let Some(order) = order else { continue };
                let p = format!("/v1/requests/{id}/merge");
                let body = json!({"order_id": order});
                ctx.call(node, &staff_who, "req_merge", Method::POST, &p, &staff, Some(body), None).await;
            }
            72..82 => {
                let Some(id) = mine else { continue };
                let rating = ["very_good", "good", "fair"].choose(&mut rng).unwrap();
                let p = format!("/v1/requests/{id}/confirm");
                let body = json!({"rating": rating, "comment": format!("hist-{n}")});
                ctx.call(node, &who, "req_confirm", Method::POST, &p, &token, Some(body), None).await;
            }
            82..90 => {
                let Some(m) = world
                    .members
                    .iter()
                    .filter(|m| m.community == ci)
                    .collect::<Vec<_>>()
                    .choose(&mut rng)
                    .map(|m| m.id.clone())
                else {
                    continue;
                };
                let mtoken = ctx.token(Role::Member, Some(&m));
                let body = json!({
                    "category": "skills_training", "title": format!("hist-prop-{n}"),
                    "grid_id": c.grids.choose(&mut rng).unwrap(), "for_whom": "3栋",
                    "window_start": at(0), "window_end": at(86_400), "slots": 1,
                });
                let o = ctx
                    .call(
                        node,
                        &format!("member:{m}"),
                        "prop_make",
                        Method::POST,
                        "/v1/proposals",
                        &mtoken,
                        Some(body),
                        None,
                    )
                    .await;
                if let Outcome::Ok(v) = o {
                    proposals.push((v["id"].as_str().unwrap_or_default().to_string(), ci));
                }
            }
            90..97 => {
                let Some((id, k)) = proposals.choose(&mut rng).cloned() else { continue };
                let (staff, staff_who) = (
                    ctx.token(Role::Staff, Some(&world.communities[k].id)),
                    format!("staff:{}", world.communities[k].id),
                );
                if rng.gen_bool(0.6) {
                    let p = format!("/v1/proposals/{id}/approve");
                    ctx.call(node, &staff_who, "prop_approve", Method::POST, &p, &staff, None, None).await;
                } else {
                    let p = format!("/v1/proposals/{id}/decline");
                    let body = json!({"reason": "人手不足"});
                    ctx.call(node, &staff_who, "prop_decline", Method::POST, &p, &staff, Some(body), None).await;
                }
            }
            _ => {}
        }
        pause(&mut rng, 150, 450).await;
    }
}

// ---------------------------------------------------------------- the fold

#[derive(Debug, Clone, Default)]
pub struct FRequest {
    pub resident: String,
    pub description: String,
    /// submitted, dispatched, declined, confirmed
    pub state: String,
    pub order: Option<String>,
    pub ratings: Vec<String>,
}

#[derive(Debug, Default)]
pub struct ResidentFold {
    pub requests: BTreeMap<String, FRequest>,
    /// proposal → (title, proposed, approved or declined)
    pub proposals: BTreeMap<String, (String, String)>,
    pub challenges: BTreeSet<String>,
    /// challenge → resident
    pub verified: BTreeMap<String, String>,
    /// resident → phone
    pub phones: BTreeMap<String, String>,
    pub violations: Vec<(u64, i64, String)>,
}

fn s(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

impl ResidentFold {
    pub fn run(events: &[LogEvent]) -> ResidentFold {
        let mut f = ResidentFold::default();
        let mut challenge_phone: HashMap<String, String> = HashMap::new();
        for (seq, at, _, body) in events.iter().filter(|e| e.3["type"] == "residents") {
            let e = &body["event"];
            let mut bad = |what: String| f.violations.push((*seq, *at, what));
            let rid = s(&e["request_id"]);
            match e["op"].as_str().unwrap_or_default() {
                "code_sent" => {
                    f.challenges.insert(s(&e["challenge_id"]));
                    challenge_phone.insert(s(&e["challenge_id"]), s(&e["phone"]));
                }
                "verified" => {
                    let (c, r) = (s(&e["challenge_id"]), s(&e["resident_id"]));
                    if let Some(p) = challenge_phone.get(&c) {
                        f.phones.insert(r.clone(), p.clone());
                    }
                    if f.verified.insert(c.clone(), r).is_some() {
                        bad(format!("challenge {c} verified twice"));
                    }
                }
                "request_placed" => {
                    let r = FRequest {
                        resident: s(&e["resident_id"]),
                        description: s(&e["description"]),
                        state: "submitted".into(),
                        ..Default::default()
                    };
                    if f.requests.insert(rid.clone(), r).is_some() {
                        bad(format!("request {rid} placed twice"));
                    }
                }
                op @ ("request_dispatched" | "request_declined" | "request_confirmed") => {
                    let Some(r) = f.requests.get_mut(&rid) else {
                        bad(format!("{op} of {rid}, never placed"));
                        continue;
                    };
                    let (from, to) = match op {
                        "request_dispatched" => ("submitted", "dispatched"),
                        "request_declined" => ("submitted", "declined"),
                        _ => ("dispatched", "confirmed"),
                    };
                    if r.state != from {
                        bad(format!("request {rid} went from {} to {to}", r.state));
                    }
                    r.state = to.into();
                    if op == "request_dispatched" {
                        r.order = Some(s(&e["order_id"]));
                    }
                    if op == "request_confirmed" {
                        r.ratings.push(s(&e["rating"]));
                        if r.ratings.len() > 1 {
                            bad(format!("request {rid} rated {} times", r.ratings.len()));
                        }
                    }
                }
                "proposal_made" => {
                    f.proposals.insert(s(&e["proposal_id"]), (s(&e["title"]), "proposed".into()));
                }
                op @ ("proposal_approved" | "proposal_declined") => {
                    let id = s(&e["proposal_id"]);
                    match f.proposals.get_mut(&id) {
                        Some(p) if p.1 == "proposed" => p.1 = op["proposal_".len()..].to_string(),
                        other => bad(format!("{op} of {id}, which is {other:?}")),
                    }
                }
                _ => {}
            }
        }
        f
    }
}

// ---------------------------------------------------------------- the checks

/// What the final read adds: every request and proposal as city command sees them.
#[derive(Default)]
pub struct FinalResidents {
    pub requests: Vec<Value>,
    pub proposals: Vec<Value>,
}

fn path_id(op: &Op) -> String {
    op.args["path"].as_str().unwrap_or("").split('/').nth(3).unwrap_or("").to_string()
}

/// A request's status as a rank that only grows, and its branch: submitted (0), then
/// declined or dispatched (with claimed, in service, served, cancelled: the order's) (1),
/// then confirmed (2).
fn rank(status: &str) -> (u8, &'static str) {
    match status {
        "submitted" => (0, ""),
        "declined" => (1, "declined"),
        "dispatched" | "claimed" | "in_service" | "served" | "cancelled" => (1, "dispatched"),
        "confirmed" => (2, "dispatched"),
        _ => (9, "?"),
    }
}

pub fn check(
    ops: &[Op],
    fold: &ResidentFold,
    fin: &FinalResidents,
    start_ms: i64,
    ck: &mut Ck,
) -> BTreeMap<String, usize> {
    let mut stats = BTreeMap::new();
    for (seq, at, what) in &fold.violations {
        ck.bad(format!("log seq {seq}: {what}"), Some((*at - start_ms).max(0) as u64), &[]);
    }
    let by_text: HashMap<&str, Vec<&String>> = fold.requests.iter().fold(HashMap::new(), |mut m, (id, r)| {
        m.entry(r.description.as_str()).or_default().push(id);
        m
    });
    let served: BTreeMap<String, &Value> = fin.requests.iter().map(|v| (s(&v["id"]), v)).collect();
    // resident (by phone) → the requests they placed (acknowledged or unknown)
    let mut placed_by: HashMap<&str, BTreeSet<String>> = HashMap::new();
    let mut seen: BTreeMap<(String, String), (u8, &'static str, u64)> = BTreeMap::new();
    let mut rated_ok: BTreeMap<String, usize> = BTreeMap::new();
    for op in
        ops.iter().filter(|o| o.kind.starts_with("req_") || o.kind.starts_with("res_") || o.kind.starts_with("prop_"))
    {
        let t = Some(op.complete);
        let id = path_id(op);
        let r = fold.requests.get(&id);
        match (op.kind, &op.outcome) {
            ("res_code", Outcome::Ok(v)) if !fold.challenges.contains(v["challenge_id"].as_str().unwrap_or("")) => {
                ck.bad(format!("code sent (202) for challenge {}, not in the log", v["challenge_id"]), t, &[])
            }
            ("res_verify", Outcome::Ok(_)) => {
                let c = s(&op.args["body"]["challenge_id"]);
                if !fold.verified.contains_key(&c) {
                    ck.bad(format!("sign-in with challenge {c} got 200, the log never verified it"), t, &[]);
                }
            }
            ("res_verify_wrong", Outcome::Ok(_)) => ck.bad("a wrong code signed a resident in".into(), t, &[]),
            ("req_place", o) => {
                let text = op.args["body"]["description"].as_str().unwrap_or("");
                let made = by_text.get(text).cloned().unwrap_or_default();
                match o {
                    Outcome::Ok(v) => {
                        let rid = s(&v["id"]);
                        placed_by.entry(op.process.as_str()).or_default().insert(rid.clone());
                        if !made.contains(&&rid) {
                            ck.bad(format!("request {rid} ({text}) got 201, the log has {made:?}"), t, &[&rid]);
                        } else if !served.contains_key(&rid) {
                            ck.bad(format!("request {rid} got 201, not served at the end"), t, &[&rid]);
                        }
                    }
                    Outcome::Fail(c) if !made.is_empty() => {
                        ck.bad(format!("request {text} refused {c}, the log has {made:?}"), t, &[text])
                    }
                    Outcome::Unknown(_) => {
                        if made.len() > 1 {
                            ck.bad(format!("one request {text} made {made:?}"), t, &[text]);
                        }
                        placed_by.entry(op.process.as_str()).or_default().extend(made.iter().map(|x| x.to_string()));
                    }
                    _ => {}
                }
            }
            ("req_get", Outcome::Ok(v)) => {
                let (k, branch) = rank(v["status"].as_str().unwrap_or(""));
                if let Some((pk, pb, pt)) = seen.insert((op.process.clone(), id.clone()), (k, branch, op.complete))
                    && (k < pk || (pk >= 1 && pb != branch))
                {
                    ck.bad(
                        format!("request {id} read {} after a read at {pt} ms ranked {pk} {pb}", v["status"]),
                        t,
                        &[&id],
                    );
                }
            }
            ("req_get_foreign", o)
                if !matches!(o, Outcome::Fail(c) if c == "unknown_request" || c == "connection_refused" || c == "rate_limited" || c == "unavailable")
                    && !o.is_unknown() =>
            {
                ck.bad(format!("a resident read another's request {id}: {}", o.short()), t, &[&id])
            }
            ("req_dispatch" | "req_merge", Outcome::Ok(_))
                if !r.is_some_and(|r| r.state == "dispatched" || r.state == "confirmed") =>
            {
                ck.bad(format!("{} of {id} got 200, the log has it {:?}", op.kind, r.map(|r| &r.state)), t, &[&id])
            }
            ("req_decline", Outcome::Ok(_)) if r.is_none_or(|r| r.state != "declined") => {
                ck.bad(format!("decline of {id} got 200, the log has it {:?}", r.map(|r| &r.state)), t, &[&id])
            }
            ("req_confirm", Outcome::Ok(_)) => {
                *rated_ok.entry(id.clone()).or_default() += 1;
                let rating = s(&op.args["body"]["rating"]);
                if !r.is_some_and(|r| r.state == "confirmed" && r.ratings.first() == Some(&rating)) {
                    ck.bad(format!("confirm of {id} ({rating}) got 200, the log has {r:?}"), t, &[&id]);
                }
            }
            ("prop_approve" | "prop_decline", Outcome::Ok(_)) => {
                let want = if op.kind == "prop_approve" { "approved" } else { "declined" };
                let got = fold.proposals.get(&id);
                if got.is_none_or(|p| p.1 != want) {
                    ck.bad(format!("{} of {id} got 200, the log has {got:?}", op.kind), t, &[&id]);
                }
            }
            ("prop_make", Outcome::Ok(v)) if !fold.proposals.contains_key(v["id"].as_str().unwrap_or("")) => {
                ck.bad(format!("proposal {} got 201, not in the log", v["id"]), t, &[])
            }
            _ => {}
        }
        // A resident's list holds their own requests only.
        if op.kind == "req_list"
            && let Outcome::Ok(v) = &op.outcome
        {
            let own = placed_by.get(op.process.as_str()).cloned().unwrap_or_default();
            for x in v.as_array().into_iter().flatten() {
                let rid = s(&x["id"]);
                let theirs = fold.requests.get(&rid).map(|r| r.resident.clone());
                let phone = theirs.as_ref().and_then(|r| fold.phones.get(r));
                if !own.contains(&rid) && phone.is_none_or(|p| op.process != format!("resident:{p}")) {
                    ck.bad(format!("{} listed request {rid} of {theirs:?}", op.process), t, &[&rid]);
                }
            }
        }
    }
    for (id, n) in &rated_ok {
        if *n > 1 {
            ck.bad(format!("request {id} rated {n} times with 200"), None, &[id]);
        }
    }
    // Served = folded: every request, its state.
    if served.keys().collect::<BTreeSet<_>>() != fold.requests.keys().collect::<BTreeSet<_>>() {
        ck.bad(format!("requests served {:?}, in the log {:?}", served.keys(), fold.requests.keys()), None, &[]);
    }
    for (id, r) in &fold.requests {
        let Some(v) = served.get(id) else { continue };
        let status = v["status"].as_str().unwrap_or("");
        let ok = match r.state.as_str() {
            "submitted" => status == "submitted",
            "declined" => status == "declined",
            "confirmed" => status == "confirmed",
            _ => rank(status) == (1, "dispatched"),
        };
        if !ok || v["order_id"].as_str().map(str::to_string) != r.order {
            ck.bad(
                format!("{id}: served {status} (order {}), the log has {} ({:?})", v["order_id"], r.state, r.order),
                None,
                &[id],
            );
        }
    }
    let served_props: BTreeMap<String, String> = fin.proposals.iter().map(|v| (s(&v["id"]), s(&v["status"]))).collect();
    let folded_props: BTreeMap<String, String> = fold.proposals.iter().map(|(k, v)| (k.clone(), v.1.clone())).collect();
    if served_props != folded_props {
        ck.bad(format!("proposals served {served_props:?}, in the log {folded_props:?}"), None, &[]);
    }
    stats.insert("requests".into(), fold.requests.len());
    stats.insert("requests dispatched".into(), fold.requests.values().filter(|r| r.order.is_some()).count());
    stats.insert("requests confirmed".into(), fold.requests.values().filter(|r| r.state == "confirmed").count());
    stats.insert("proposals".into(), fold.proposals.len());
    stats.insert("resident sign-ins".into(), fold.verified.len());
    stats
}

/// Can these checks fail? A made-up log and history with a request that moves backwards
/// in the log, one rated twice, a refused request that is in the log, another resident's
/// request answered 200, a read that goes from dispatched back to submitted, and a served
/// state that is not the log's: all are reported.
#[test]
fn the_resident_checks_report_planted_anomalies() {
    use super::client::Ctx;
    let ctx = Ctx::new(vec!["127.0.0.1:1".into()], 0);
    let at = ctx.start_ms + 100;
    let ev = |seq: u64, e: Value| (seq, at, "system".to_string(), json!({"type": "residents", "event": e}));
    let events = vec![
        ev(
            1,
            json!({"op": "request_placed", "request_id": "req-1", "resident_id": "r-1", "description": "hist-req-1"}),
        ),
        ev(
            2,
            json!({"op": "request_placed", "request_id": "req-2", "resident_id": "r-1", "description": "hist-req-2"}),
        ),
        ev(3, json!({"op": "request_declined", "request_id": "req-1", "reason": "x"})),
        ev(4, json!({"op": "request_dispatched", "request_id": "req-1", "order_id": "ord-1", "merged": false})),
        ev(5, json!({"op": "request_dispatched", "request_id": "req-2", "order_id": "ord-2", "merged": false})),
        ev(6, json!({"op": "request_confirmed", "request_id": "req-2", "rating": "good"})),
        ev(7, json!({"op": "request_confirmed", "request_id": "req-2", "rating": "fair"})),
    ];
    let fold = ResidentFold::run(&events);
    let rec = |who: &str, kind: &'static str, path: &str, body: Value, o: Outcome| {
        ctx.record(who, kind, json!({"path": path, "method": "POST", "body": body}), 10, o);
    };
    rec(
        "resident:1",
        "req_place",
        "/v1/requests",
        json!({"description": "hist-req-2"}),
        Outcome::Fail("unknown_grid".into()),
    );
    rec("resident:2", "req_get_foreign", "/v1/requests/req-1", Value::Null, Outcome::Ok(json!({"status": "declined"})));
    rec("resident:1", "req_get", "/v1/requests/req-2", Value::Null, Outcome::Ok(json!({"status": "dispatched"})));
    rec("resident:1", "req_get", "/v1/requests/req-2", Value::Null, Outcome::Ok(json!({"status": "submitted"})));
    let ops = ctx.ops.lock().unwrap().clone();
    let fin = FinalResidents {
        requests: vec![
            json!({"id": "req-1", "status": "submitted", "order_id": null}),
            json!({"id": "req-2", "status": "confirmed", "order_id": "ord-2"}),
        ],
        proposals: Vec::new(),
    };
    let mut ck = Ck::default();
    check(&ops, &fold, &fin, ctx.start_ms, &mut ck);
    let all: Vec<String> = ck.out.iter().map(|a| a.what.clone()).collect();
    for want in [
        "request req-1 went from declined to dispatched",
        "request req-2 rated 2 times",
        "request hist-req-2 refused unknown_grid, the log has",
        "a resident read another's request req-1",
        "request req-2 read \"submitted\" after a read",
        "req-1: served submitted",
    ] {
        assert!(all.iter().any(|a| a.contains(want)), "not reported: {want}\nreported: {all:#?}");
    }
}
