//! The generator: staff of each community, a city command and every on-call member on a
//! websocket, each a process drawing random (valid and invalid) operations from its own
//! seeded generator until the run's deadline.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use muster::gateway::auth::Role;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use reqwest::Method;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use super::client::{FrameRec, Outcome, Shared};

#[derive(Debug, Clone)]
pub struct Community {
    pub id: String,
    pub district: String,
    pub grids: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct MemberInfo {
    pub id: String,
    pub community: usize,
    pub team: Option<String>,
    pub position: (f64, f64),
}

/// What the processes know of each other's work, so that they act on real objects.
pub struct World {
    pub communities: Vec<Community>,
    pub members: Vec<MemberInfo>,
    pub teams: Vec<String>,
    pub categories: Vec<String>,
    /// (incident, community index)
    pub incidents: Mutex<Vec<(String, usize)>>,
    /// (order, community index)
    pub orders: Mutex<Vec<(String, usize)>>,
    pub mobilizations: Mutex<Vec<String>>,
    /// (order id or offer id, member, community index, is_order): work a rating may name
    pub worked: Mutex<Vec<(String, String, usize, bool)>>,
    counter: AtomicU64,
}

impl World {
    pub fn new(communities: Vec<Community>, members: Vec<MemberInfo>, categories: Vec<String>) -> World {
        let mut teams: Vec<String> = members.iter().filter_map(|m| m.team.clone()).collect();
        teams.sort();
        teams.dedup();
        World {
            communities,
            members,
            teams,
            categories,
            incidents: Mutex::new(Vec::new()),
            orders: Mutex::new(Vec::new()),
            mobilizations: Mutex::new(Vec::new()),
            worked: Mutex::new(Vec::new()),
            counter: AtomicU64::new(1),
        }
    }
    fn key(&self, who: &str) -> String {
        format!("{who}-{}", self.counter.fetch_add(1, Ordering::Relaxed))
    }
}

async fn pause(rng: &mut StdRng, lo: u64, hi: u64) {
    tokio::time::sleep(Duration::from_millis(rng.gen_range(lo..hi))).await;
}

fn pick<T: Clone>(v: &Mutex<Vec<T>>, rng: &mut StdRng, keep: impl Fn(&T) -> bool) -> Option<T> {
    let v = v.lock().unwrap();
    let c: Vec<&T> = v.iter().filter(|x| keep(x)).collect();
    c.choose(rng).map(|x| (*x).clone())
}

fn retryable(o: &Outcome) -> bool {
    match o {
        Outcome::Unknown(_) => true,
        Outcome::Fail(c) => c == "unavailable" || c == "connection_refused" || c == "rate_limited",
        Outcome::Ok(_) => false,
    }
}

/// Raises an incident with an Idempotency-Key (and the key in the note, so that the final
/// state tells which raise made which incident), retrying with the same key.
#[allow(clippy::too_many_arguments)]
async fn raise(
    ctx: &Shared,
    w: &World,
    who: &str,
    token: &str,
    node: usize,
    rng: &mut StdRng,
    ci: usize,
    command: bool,
) {
    let key = w.key(who);
    let c = &w.communities[ci];
    let level = *["III", "III", "IV", "II"].choose(rng).unwrap();
    let mut body = json!({
        "grid_id": c.grids.choose(rng).unwrap(),
        "category": w.categories.choose(rng).unwrap(),
        "level": level,
        "headcount": rng.gen_range(1..=3),
        "note": format!("hist:{key}"),
    });
    if rng.gen_bool(0.12) {
        match rng.gen_range(0..4) {
            0 => body["headcount"] = json!(0),
            1 => body["level"] = json!("V"),
            2 if !command => {
                let other = &w.communities[(ci + 1) % w.communities.len()];
                body["grid_id"] = json!(other.grids[0]);
            }
            2 => body["grid_id"] = json!("no-such-grid"),
            _ => body["category"] = json!("no_such_category"),
        }
    }
    for _ in 0..4 {
        let o =
            ctx.call(node, who, "raise", Method::POST, "/v1/incidents", token, Some(body.clone()), Some(&key)).await;
        if let Outcome::Ok(v) = &o {
            w.incidents.lock().unwrap().push((v["id"].as_str().unwrap_or_default().to_string(), ci));
            return;
        }
        if !retryable(&o) || ctx.over() {
            return;
        }
        pause(rng, 200, 600).await;
    }
}

async fn incident_op(
    ctx: &Shared,
    w: &World,
    who: &str,
    token: &str,
    node: usize,
    rng: &mut StdRng,
    ci: Option<usize>,
) {
    let Some((id, _)) = pick(&w.incidents, rng, |(_, c)| ci.is_none_or(|ci| *c == ci)) else { return };
    let r = rng.gen_range(0..100);
    let (kind, path, body) = match r {
        0..40 => ("resolve", format!("/v1/incidents/{id}/resolve"), json!({"note": "done"})),
        40..60 => ("cancel", format!("/v1/incidents/{id}/cancel"), json!({"reason": "test"})),
        60..85 => ("escalate", format!("/v1/incidents/{id}/escalate"), json!({})),
        _ => ("whistle", format!("/v1/incidents/{id}/whistle"), json!({"to": "paired_units"})),
    };
    let o = ctx.call(node, who, kind, Method::POST, &path, token, Some(body), None).await;
    // Record the work of members who arrived, for a rating later.
    if kind == "resolve"
        && let Outcome::Ok(v) = o
    {
        let ci = w.communities.iter().position(|c| v["community_id"] == c.id.as_str()).unwrap_or(0);
        for off in v["offers"].as_array().into_iter().flatten().filter(|o| o["state"] == "arrived") {
            let (oid, m) =
                (off["offer_id"].as_str().unwrap_or("").to_string(), off["member_id"].as_str().unwrap_or(""));
            w.worked.lock().unwrap().push((oid, m.to_string(), ci, false));
        }
    }
}

async fn order_op(ctx: &Shared, w: &World, who: &str, token: &str, node: usize, rng: &mut StdRng, ci: usize) {
    let r = rng.gen_range(0..100);
    if r < 45 {
        let key = w.key(who);
        let now = muster::engine::now_ms();
        let c = &w.communities[ci];
        let mut body = json!({
            "grid_id": c.grids.choose(rng).unwrap(),
            "category": w.categories.choose(rng).unwrap(),
            "title": format!("hist:{key}"),
            "window_start": muster::domain::dispatcher::rfc3339(now - 60_000),
            "window_end": muster::domain::dispatcher::rfc3339(now + 86_400_000),
            "slots": rng.gen_range(1..=3),
        });
        if rng.gen_bool(0.1) {
            body["slots"] = json!(0);
        }
        let o = ctx.call(node, who, "post_order", Method::POST, "/v1/orders", token, Some(body), None).await;
        if let Outcome::Ok(v) = o {
            w.orders.lock().unwrap().push((v["id"].as_str().unwrap_or_default().to_string(), ci));
        }
        return;
    }
    let Some((id, _)) = pick(&w.orders, rng, |(_, c)| *c == ci) else { return };
    if r < 75 {
        let m = w.members.iter().filter(|m| m.community == ci).collect::<Vec<_>>().choose(rng).map(|m| m.id.clone());
        let member = if rng.gen_bool(0.1) { "m-nobody".to_string() } else { m.unwrap_or_default() };
        let body = json!({"member_id": member});
        ctx.call(node, who, "assign", Method::POST, &format!("/v1/orders/{id}/assign"), token, Some(body), None).await;
    } else if r < 85 {
        let body = json!({"reason": "test"});
        ctx.call(node, who, "cancel_order", Method::POST, &format!("/v1/orders/{id}/cancel"), token, Some(body), None)
            .await;
    } else {
        let Some((task, member, _, is_order)) = pick(&w.worked, rng, |x| x.2 == ci) else { return };
        let rating = *["very_good", "good", "fair"].choose(rng).unwrap();
        let body = if is_order {
            json!({"order_id": task, "member_id": member, "rating": rating})
        } else {
            json!({"offer_id": task, "member_id": member, "rating": rating})
        };
        ctx.call(node, who, "rate", Method::POST, "/v1/ratings", token, Some(body), None).await;
    }
}

/// Staff of one community.
pub async fn staff(ctx: Shared, w: std::sync::Arc<World>, ci: usize, seed: u64, node: usize) {
    let c = w.communities[ci].id.clone();
    let who = format!("staff:{c}");
    let token = ctx.token(Role::Staff, Some(&c));
    let mut rng = StdRng::seed_from_u64(seed);
    while !ctx.over() {
        pause(&mut rng, 100, 400).await;
        match rng.gen_range(0..100) {
            0..40 => raise(&ctx, &w, &who, &token, node, &mut rng, ci, false).await,
            40..70 => incident_op(&ctx, &w, &who, &token, node, &mut rng, Some(ci)).await,
            70..92 => order_op(&ctx, &w, &who, &token, node, &mut rng, ci).await,
            92..96 => invite(&ctx, &w, &who, &token, node, &mut rng, ci).await,
            _ => {
                // Another community's incident: answered as unknown.
                let other = pick(&w.incidents, &mut rng, |(_, x)| *x != ci);
                if let Some((id, _)) = other {
                    let p = format!("/v1/incidents/{id}/resolve");
                    ctx.call(node, &who, "resolve", Method::POST, &p, &token, Some(json!({})), None).await;
                }
            }
        }
    }
}

/// Staff invite a resident (sometimes another community's: refused) and the link is
/// redeemed, sometimes twice (the second must be refused: a link works once).
async fn invite(ctx: &Shared, w: &World, who: &str, token: &str, node: usize, rng: &mut StdRng, ci: usize) {
    let mine: Vec<&MemberInfo> = w.members.iter().filter(|m| m.community == ci).collect();
    let theirs: Vec<&MemberInfo> = w.members.iter().filter(|m| m.community != ci).collect();
    let foreign = rng.gen_bool(0.15) || mine.is_empty();
    let Some(m) = (if foreign { theirs.choose(rng) } else { mine.choose(rng) }) else { return };
    let body = json!({"role": "member", "member_id": m.id});
    let o = ctx.call(node, who, "invite", Method::POST, "/v1/invitations", token, Some(body), None).await;
    let Outcome::Ok(v) = o else { return };
    let Some(code) = v["code"].as_str() else { return };
    for _ in 0..(1 + rng.gen_range(0..2)) {
        let body = json!({"code": code});
        ctx.call(node, "visitor", "redeem", Method::POST, "/v1/session", "", Some(body), None).await;
    }
}

/// City command: modes, mobilizations, transfers, raises anywhere, closes.
pub async fn command(ctx: Shared, w: std::sync::Arc<World>, seed: u64, node: usize) {
    let who = "command".to_string();
    let token = ctx.token(Role::Command, None);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut districts: Vec<String> = w.communities.iter().map(|c| c.district.clone()).collect();
    districts.sort();
    districts.dedup();
    while !ctx.over() {
        pause(&mut rng, 250, 700).await;
        match rng.gen_range(0..100) {
            0..12 => {
                let d = districts.choose(&mut rng).unwrap().clone();
                let mode = if rng.gen_bool(0.5) { "wartime" } else { "peacetime" };
                let mut body = json!({"mode": mode, "reason": "drill"});
                if rng.gen_bool(0.05) {
                    body["mode"] = json!("martial");
                }
                let (path, kind) = if rng.gen_bool(0.15) {
                    ("/v1/city/mode".to_string(), "city_mode")
                } else {
                    (format!("/v1/districts/{d}/mode"), "district_mode")
                };
                ctx.call(node, &who, kind, Method::PUT, &path, &token, Some(body), None).await;
            }
            12..24 => {
                let key = w.key(&who);
                let team =
                    if rng.gen_bool(0.08) { "t-none".to_string() } else { w.teams.choose(&mut rng).unwrap().clone() };
                let body = json!({"teams": [team], "note": format!("hist:{key}"), "deadline_s": 600});
                let o =
                    ctx.call(node, &who, "mobilize", Method::POST, "/v1/mobilizations", &token, Some(body), None).await;
                if let Outcome::Ok(v) = o {
                    w.mobilizations.lock().unwrap().push(v["id"].as_str().unwrap_or_default().to_string());
                }
            }
            24..29 => {
                if let Some(id) = pick(&w.mobilizations, &mut rng, |_| true) {
                    let p = format!("/v1/mobilizations/{id}/close");
                    ctx.call(
                        node,
                        &who,
                        "close_mobilization",
                        Method::POST,
                        &p,
                        &token,
                        Some(json!({"reason": "done"})),
                        None,
                    )
                    .await;
                }
            }
            29..40 => {
                let b = ctx.call(node, &who, "read_balance", Method::GET, "/v1/balance", &token, None, None).await;
                if let Outcome::Ok(v) = b
                    && let Some(p) = v["proposals"].as_array().and_then(|p| p.first())
                {
                    let body = json!({"from": p["from"], "to": p["to"], "members": p["members"]});
                    ctx.call(node, &who, "transfer", Method::POST, "/v1/balance/apply", &token, Some(body), None).await;
                }
            }
            40..60 => {
                let ci = rng.gen_range(0..w.communities.len());
                raise(&ctx, &w, &who, &token, node, &mut rng, ci, true).await;
            }
            60..87 => incident_op(&ctx, &w, &who, &token, node, &mut rng, None).await,
            87..90 => {
                ctx.call(node, &who, "audit", Method::GET, "/v1/audit?limit=50", &token, None, None).await;
            }
            _ => {
                let p = "/v1/mobilizations/mob-999999/close";
                ctx.call(node, &who, "close_mobilization", Method::POST, p, &token, Some(json!({})), None).await;
            }
        }
    }
}

#[derive(Debug, Clone)]
enum Act {
    Accept(String, u32),
    Decline(String),
    Arrive(String, u32, bool),
    Ack(String, (f64, f64), u32),
    Report(String, (f64, f64), u32),
    Duty(bool, u32),
    Claim(String),
    CheckIn(String, (f64, f64)),
    CheckOut(String, (f64, f64)),
    Spontaneous,
}

struct MState {
    last_seq: u64,
    conn: u32,
    todo: Vec<(u64, Act)>,
    /// offer → (incident, place)
    offers: HashMap<String, (String, (f64, f64))>,
    next_id: u64,
}

fn pos(v: &Value) -> (f64, f64) {
    (v["lat"].as_f64().unwrap_or(0.0), v["lng"].as_f64().unwrap_or(0.0))
}

impl MState {
    fn later(&mut self, now: u64, rng: &mut StdRng, lo: u64, hi: u64, a: Act) {
        self.todo.push((now + rng.gen_range(lo..hi), a));
    }

    /// A stream frame: recorded, and answered the way a member would.
    fn on_frame(&mut self, ctx: &Shared, member: &str, f: Value, rng: &mut StdRng) {
        let seq = f["seq"].as_u64().unwrap_or(0);
        let kind = f["type"].as_str().unwrap_or("").to_string();
        if seq == 0 {
            return;
        }
        let now = ctx.now();
        ctx.frame(member, FrameRec { seq, kind: kind.clone(), data: f["data"].clone(), conn: self.conn, at: now });
        if seq <= self.last_seq {
            return;
        }
        self.last_seq = seq;
        let d = &f["data"];
        match kind.as_str() {
            "offer" => {
                let id = d["offer_id"].as_str().unwrap_or("").to_string();
                self.offers
                    .insert(id.clone(), (d["incident_id"].as_str().unwrap_or("").to_string(), pos(&d["location"])));
                let p: f64 = rng.r#gen();
                if p < 0.65 {
                    self.later(now, rng, 50, 1500, Act::Accept(id, 0));
                } else if p < 0.8 {
                    self.later(now, rng, 50, 1500, Act::Decline(id));
                }
            }
            "assignment" => {
                let id = d["offer_id"].as_str().unwrap_or("").to_string();
                let p: f64 = rng.r#gen();
                if p < 0.1 {
                    self.later(now, rng, 200, 1000, Act::Arrive(id.clone(), 0, true));
                }
                if p < 0.8 {
                    self.later(now, rng, 1000, 2500, Act::Arrive(id, 0, false));
                }
            }
            "mobilization.order" => {
                let id = d["mobilization_id"].as_str().unwrap_or("").to_string();
                if rng.gen_bool(0.9) {
                    self.later(now, rng, 100, 2000, Act::Ack(id, pos(&d["report_to"]["location"]), 0));
                }
            }
            "order.offer" if rng.gen_bool(0.5) => {
                let id = d["order_id"].as_str().unwrap_or("").to_string();
                self.later(now, rng, 100, 1000, Act::Claim(id));
            }
            "order.assigned" => {
                let id = d["order_id"].as_str().unwrap_or("").to_string();
                self.later(now, rng, 300, 1500, Act::CheckIn(id, pos(&d["location"])));
            }
            _ => {}
        }
    }
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A member on a websocket (resuming with `after_seq` after every drop) who answers what
/// comes, and now and then does something of their own.
pub async fn member(ctx: Shared, w: std::sync::Arc<World>, mi: usize, seed: u64, node: usize) {
    let m = w.members[mi].clone();
    let who = format!("member:{}", m.id);
    let token = ctx.token(Role::Member, Some(&m.id));
    let mut rng = StdRng::seed_from_u64(seed);
    let mut st = MState { last_seq: 0, conn: 0, todo: Vec::new(), offers: HashMap::new(), next_id: 1 };
    let first = ctx.now();
    st.later(first, &mut rng, 500, 3000, Act::Spontaneous);
    'outer: while !ctx.over() {
        let url = format!("ws://{}/v1/ws?access_token={token}&after_seq={}", ctx.addr(node), st.last_seq);
        let mut ws: Socket =
            match tokio::time::timeout(Duration::from_secs(5), tokio_tungstenite::connect_async(url)).await {
                Ok(Ok((ws, _))) => ws,
                _ => {
                    pause(&mut rng, 200, 600).await;
                    continue;
                }
            };
        let hello = match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => serde_json::from_str::<Value>(&t).unwrap_or(Value::Null),
            _ => continue,
        };
        st.conn += 1;
        ctx.hello(&m.id, st.conn, st.last_seq, hello["data"]["last_seq"].as_u64().unwrap_or(0));
        loop {
            if ctx.over() {
                break 'outer;
            }
            st.todo.sort_by_key(|t| t.0);
            let due = st.todo.first().map_or(ctx.now() + 1000, |t| t.0);
            let wait = Duration::from_millis(due.saturating_sub(ctx.now()));
            tokio::select! {
                msg = ws.next() => match msg {
                    Some(Ok(Message::Text(t))) => {
                        let f: Value = serde_json::from_str(&t).unwrap_or(Value::Null);
                        st.on_frame(&ctx, &m.id, f, &mut rng);
                    }
                    Some(Ok(_)) => {}
                    _ => break,
                },
                _ = tokio::time::sleep(wait) => {
                    if st.todo.is_empty() {
                        continue;
                    }
                    let (_, act) = st.todo.remove(0);
                    if !act_on(&ctx, &w, &m, &who, &token, node, &mut ws, &mut st, &mut rng, act).await {
                        break;
                    }
                }
            }
        }
        let _ = ws.close(None).await;
        pause(&mut rng, 100, 500).await;
    }
}

/// Sends one message and waits for its answer; frames on the way are taken as they come.
/// `None`: the connection is gone (the outcome is unknown).
#[allow(clippy::too_many_arguments)]
async fn request(
    ctx: &Shared,
    member: &str,
    who: &str,
    ws: &mut Socket,
    st: &mut MState,
    rng: &mut StdRng,
    kind: &'static str,
    data: Value,
) -> (Outcome, bool) {
    let id = st.next_id;
    st.next_id += 1;
    let invoke = ctx.now();
    let msg = json!({"id": id, "type": kind, "data": data});
    let mut args = json!({"type": kind, "data": data});
    if ws.send(Message::Text(msg.to_string().into())).await.is_err() {
        // Not sent: it cannot have been decided.
        let o = Outcome::Fail("not_sent".into());
        ctx.record(who, kind, args, invoke, o.clone());
        return (o, false);
    }
    let until = tokio::time::Instant::now() + Duration::from_secs(6);
    loop {
        match tokio::time::timeout_at(until, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                let f: Value = serde_json::from_str(&t).unwrap_or(Value::Null);
                let t = f["type"].as_str().unwrap_or("");
                if (t == "ok" || t == "error") && f["data"]["re"] == json!(id) {
                    let o = if t == "ok" {
                        Outcome::Ok(f["data"].clone())
                    } else {
                        let code = f["data"]["code"].as_str().unwrap_or("").to_string();
                        let detail = f["data"]["detail"].as_str().unwrap_or("");
                        if code == "unavailable" || code == "outcome_unknown" {
                            args["detail"] = json!(detail);
                        }
                        if super::client::maybe_decided(&code) {
                            Outcome::Unknown(format!("{code}: {detail}"))
                        } else {
                            Outcome::Fail(code)
                        }
                    };
                    ctx.record(who, kind, args, invoke, o.clone());
                    return (o, true);
                }
                st.on_frame(ctx, member, f, rng);
            }
            Ok(Some(Ok(_))) => {}
            Ok(_) | Err(_) => {
                let o = Outcome::Unknown("connection".into());
                ctx.record(who, kind, args, invoke, o.clone());
                return (o, false);
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn act_on(
    ctx: &Shared,
    w: &World,
    m: &MemberInfo,
    who: &str,
    token: &str,
    node: usize,
    ws: &mut Socket,
    st: &mut MState,
    rng: &mut StdRng,
    act: Act,
) -> bool {
    let now = ctx.now();
    match act {
        Act::Accept(offer, tries) => {
            let (o, alive) = request(ctx, &m.id, who, ws, st, rng, "accept", json!({"offer_id": offer})).await;
            if retryable(&o) && tries < 3 {
                st.later(now, rng, 300, 800, Act::Accept(offer, tries + 1));
            } else if o.is_ok() && rng.gen_bool(0.05) {
                st.later(now, rng, 100, 500, Act::Accept(offer, 3));
            }
            alive
        }
        Act::Decline(offer) => {
            let data = json!({"offer_id": offer, "reason": "busy"});
            request(ctx, &m.id, who, ws, st, rng, "decline", data).await.1
        }
        Act::Arrive(offer, tries, far) => {
            let Some((_, (lat, lng))) = st.offers.get(&offer).cloned() else { return true };
            let lat = if far { lat + 0.05 } else { lat };
            let data = json!({"offer_id": offer, "lat": lat, "lng": lng});
            let (o, alive) = request(ctx, &m.id, who, ws, st, rng, "arrive", data).await;
            if retryable(&o) && tries < 3 && !far {
                st.later(now, rng, 300, 800, Act::Arrive(offer, tries + 1, false));
            }
            alive
        }
        Act::Ack(mob, place, tries) => {
            let (o, alive) =
                request(ctx, &m.id, who, ws, st, rng, "mobilization.ack", json!({"mobilization_id": mob})).await;
            if retryable(&o) && tries < 3 {
                st.later(now, rng, 300, 800, Act::Ack(mob, place, tries + 1));
            } else if o.is_ok() && rng.gen_bool(0.75) {
                st.later(now, rng, 200, 2000, Act::Report(mob, place, 0));
            }
            alive
        }
        Act::Report(mob, (lat, lng), tries) => {
            let data = json!({"mobilization_id": mob, "lat": lat, "lng": lng});
            let (o, alive) = request(ctx, &m.id, who, ws, st, rng, "mobilization.report", data).await;
            if retryable(&o) && tries < 3 {
                st.later(now, rng, 300, 800, Act::Report(mob, (lat, lng), tries + 1));
            }
            alive
        }
        Act::Duty(on, tries) => {
            let (o, alive) = request(ctx, &m.id, who, ws, st, rng, "duty", json!({"on_call": on})).await;
            if (retryable(&o) && tries < 5) || (!on && o.is_ok()) {
                let next = if o.is_ok() { true } else { on };
                st.later(now, rng, 1000, 3000, Act::Duty(next, if o.is_ok() { 0 } else { tries + 1 }));
            }
            alive
        }
        Act::Claim(order) => {
            let p = format!("/v1/orders/{order}/claim");
            let o = ctx.call(node, who, "claim", Method::POST, &p, token, Some(json!({})), None).await;
            if let Outcome::Ok(v) = o {
                st.later(now, rng, 300, 1500, Act::CheckIn(order, pos(&v["location"])));
            }
            true
        }
        Act::CheckIn(order, place) => {
            let p = format!("/v1/orders/{order}/checkin");
            let body = json!({"lat": place.0, "lng": place.1});
            if ctx.call(node, who, "checkin", Method::POST, &p, token, Some(body), None).await.is_ok() {
                st.later(now, rng, 500, 2000, Act::CheckOut(order, place));
            }
            true
        }
        Act::CheckOut(order, place) => {
            let p = format!("/v1/orders/{order}/checkout");
            let body = json!({"lat": place.0, "lng": place.1});
            if ctx.call(node, who, "checkout", Method::POST, &p, token, Some(body), None).await.is_ok() {
                w.worked.lock().unwrap().push((order, m.id.clone(), m.community, true));
            }
            true
        }
        Act::Spontaneous => {
            st.later(now, rng, 1500, 4000, Act::Spontaneous);
            let r = rng.gen_range(0..100);
            match r {
                0..30 => {
                    let o = ctx
                        .call(node, who, "read_orders", Method::GET, "/v1/orders?status=open", token, None, None)
                        .await;
                    if let Outcome::Ok(v) = o
                        && let Some(ord) = v.as_array().and_then(|a| a.choose(rng))
                    {
                        let id = ord["id"].as_str().unwrap_or("").to_string();
                        st.later(now, rng, 10, 200, Act::Claim(id));
                    }
                    true
                }
                30..38 => {
                    st.later(now, rng, 10, 100, Act::Duty(false, 0));
                    true
                }
                38..60 => {
                    let (lat, lng) = m.position;
                    request(ctx, &m.id, who, ws, st, rng, "location", json!({"lat": lat, "lng": lng})).await.1
                }
                60..70 => {
                    // Invalid on purpose: an offer that is not ours, a mobilization that does not exist.
                    let (kind, data) = if rng.gen_bool(0.5) {
                        ("accept", json!({"offer_id": "off-999999"}))
                    } else {
                        ("mobilization.ack", json!({"mobilization_id": "mob-999999"}))
                    };
                    request(ctx, &m.id, who, ws, st, rng, kind, data).await.1
                }
                _ => true,
            }
        }
    }
}
