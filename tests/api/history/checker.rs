//! The checker: the history against the final state, the final state against the
//! independent fold of the log, the members' streams against what they saw live, and (on
//! Redis) every append against the lease.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::Value;

use super::client::{Ctx, Op, Outcome};
use super::fold::Fold;
use super::monitor::Seen;

#[derive(Debug, Clone)]
pub struct Anomaly {
    pub what: String,
    /// ms since the start, when known
    pub at: Option<u64>,
    /// ids that the ops of its window mention
    pub objects: Vec<String>,
}

/// What the run read at the end, as city command.
#[derive(Default)]
pub struct Final {
    pub incidents: Vec<Value>,
    pub mobilizations: Vec<Value>,
    pub orders: Vec<Value>,
    pub modes: Value,
    /// Every entry of `GET /v1/audit`, all pages, as city command.
    pub audit: Vec<Value>,
    /// member → frames replayed from seq 0 at the end: (seq, type, data)
    pub streams: HashMap<String, Vec<(u64, String, Value)>>,
    /// member → frames in the log (single node: SQLite's frames table)
    pub logged: HashMap<String, Vec<(u64, String, Value)>>,
    /// The webhook endpoints served at the end, with their dead letters.
    pub hooks: super::hooks::FinalHooks,
    /// Every request the webhook receiver got.
    pub hits: Vec<super::hooks::Hit>,
}

pub struct Report {
    pub anomalies: Vec<Anomaly>,
    pub stats: BTreeMap<String, usize>,
}

fn level_rank(l: &str) -> u8 {
    match l {
        "IV" => 1,
        "III" => 2,
        "II" => 3,
        "I" => 4,
        _ => 0,
    }
}

#[derive(Default)]
pub(super) struct Ck {
    pub(super) out: Vec<Anomaly>,
}

impl Ck {
    pub(super) fn bad(&mut self, what: String, at: Option<u64>, objects: &[&str]) {
        self.out.push(Anomaly { what, at, objects: objects.iter().map(|s| s.to_string()).collect() });
    }
}

fn body(op: &Op) -> &Value {
    &op.args["body"]
}

fn path_id(op: &Op) -> String {
    op.args["path"].as_str().unwrap_or("").split('/').nth(3).unwrap_or("").to_string()
}

fn ws_data<'a>(op: &'a Op, field: &str) -> &'a Value {
    &op.args["data"][field]
}

pub fn check(ctx: &Ctx, fold: &Fold, fin: &Final, seen: Option<&[Seen]>) -> Report {
    let ops = ctx.ops.lock().unwrap().clone();
    let mut ck = Ck { out: Vec::new() };
    let mut stats = BTreeMap::new();
    for op in &ops {
        let o = match &op.outcome {
            Outcome::Ok(_) => "ok",
            Outcome::Fail(_) => "fail",
            Outcome::Unknown(_) => "unknown",
        };
        *stats.entry(format!("ops {o}")).or_insert(0) += 1;
        *stats.entry(format!("op {} {o}", op.kind)).or_insert(0) += 1;
    }
    stats.insert("ops".into(), ops.len());
    stats.insert("events".into(), fold.events);

    let views: BTreeMap<String, &Value> =
        fin.incidents.iter().map(|v| (v["id"].as_str().unwrap_or("").to_string(), v)).collect();
    stats.insert("incidents".into(), views.len());

    // ---- the final state against the independent fold of the log
    for (seq, at, what) in &fold.violations {
        let rel = (*at - ctx.start_ms).max(0) as u64;
        let objects: Vec<&str> =
            what.split(|c: char| c.is_whitespace() || c == '/').filter(|w| w.contains('-')).collect();
        ck.bad(format!("log seq {seq}: {what}"), Some(rel), &objects);
    }
    let folded: BTreeSet<&String> = fold.incidents.keys().collect();
    let viewed: BTreeSet<&String> = views.keys().collect();
    if folded != viewed {
        let a: Vec<_> = folded.difference(&viewed).collect();
        let b: Vec<_> = viewed.difference(&folded).collect();
        ck.bad(format!("incidents in the log but not served: {a:?}; served but not in the log: {b:?}"), None, &[]);
    }
    for (id, f) in &fold.incidents {
        let Some(v) = views.get(id) else { continue };
        let served = (
            v["status"].as_str().unwrap_or(""),
            v["level"].as_str().unwrap_or(""),
            v["headcount"].as_u64().unwrap_or(0),
            v["accepted"].as_u64().unwrap_or(0),
        );
        let mine = (f.status.as_str(), f.level.as_str(), f.headcount, f.accepted());
        if served != mine {
            ck.bad(
                format!("{id}: served (status, level, headcount, accepted) {served:?}, the log says {mine:?}"),
                None,
                &[id],
            );
        }
        let offers: BTreeMap<String, (String, String)> = v["offers"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|o| {
                let g = |k: &str| o[k].as_str().unwrap_or("").to_string();
                (g("offer_id"), (g("member_id"), g("state")))
            })
            .collect();
        let mine: BTreeMap<String, (String, String)> =
            f.offers.iter().map(|(k, o)| (k.clone(), (o.member.clone(), o.state.clone()))).collect();
        if offers != mine {
            ck.bad(format!("{id}: served offers {offers:?}, the log says {mine:?}"), None, &[id]);
        }
        if f.accepted() > f.headcount {
            ck.bad(format!("{id}: {} accepted, headcount {}", f.accepted(), f.headcount), None, &[id]);
        }
    }
    // No member in two open assignments, in the final state.
    let mut held: HashMap<&str, Vec<&str>> = HashMap::new();
    for (id, f) in &fold.incidents {
        if f.closed() {
            continue;
        }
        for o in f.offers.values().filter(|o| o.state == "accepted" || o.state == "arrived") {
            held.entry(o.member.as_str()).or_default().push(id);
        }
    }
    for (m, list) in held.iter().filter(|(_, l)| l.len() > 1) {
        ck.bad(format!("{m} holds open assignments on {list:?}"), None, &[m]);
    }
    // Mobilizations: counts served = counts folded = the members' own states.
    let mob_views: BTreeMap<String, &Value> =
        fin.mobilizations.iter().map(|v| (v["id"].as_str().unwrap_or("").to_string(), v)).collect();
    stats.insert("mobilizations".into(), mob_views.len());
    if mob_views.keys().collect::<BTreeSet<_>>() != fold.mobilizations.keys().collect::<BTreeSet<_>>() {
        ck.bad("mobilizations served and in the log differ".into(), None, &[]);
    }
    for (id, m) in &fold.mobilizations {
        let Some(v) = mob_views.get(id) else { continue };
        let count = |s: &[&str]| m.members.values().filter(|x| s.contains(&x.as_str())).count() as u64;
        let mine = (m.members.len() as u64, count(&["acknowledged", "reported"]), count(&["reported"]));
        let served = (
            v["ordered"].as_u64().unwrap_or(u64::MAX),
            v["acknowledged"].as_u64().unwrap_or(u64::MAX),
            v["reported"].as_u64().unwrap_or(u64::MAX),
        );
        if mine != served {
            ck.bad(
                format!("{id}: served (ordered, acknowledged, reported) {served:?}, the log says {mine:?}"),
                None,
                &[id],
            );
        }
        let closed = v["status"] == "closed";
        if closed != m.closed {
            ck.bad(format!("{id}: served closed={closed}, the log says {}", m.closed), None, &[id]);
        }
        // Each tracked member's own stream ends in the state the log has.
        for (member, state) in &m.members {
            let Some(frames) = fin.streams.get(member) else { continue };
            let mut own = None;
            for (_, kind, data) in frames {
                if data["mobilization_id"] != id.as_str() {
                    continue;
                }
                match kind.as_str() {
                    "mobilization.order" => own = own.or(Some("ordered".to_string())),
                    "mobilization.state" => {
                        let s = data["state"].as_str().unwrap_or("").to_string();
                        if own.as_deref() != Some("reported") {
                            own = Some(s);
                        }
                    }
                    _ => {}
                }
            }
            if own.as_deref() != Some(state.as_str()) {
                ck.bad(format!("{member} on {id}: own stream says {own:?}, the log {state}"), None, &[member, id]);
            }
        }
    }
    // Orders: status and claims.
    let order_views: BTreeMap<String, &Value> =
        fin.orders.iter().map(|v| (v["id"].as_str().unwrap_or("").to_string(), v)).collect();
    stats.insert("orders".into(), order_views.len());
    for (id, o) in &fold.orders {
        let Some(v) = order_views.get(id) else {
            ck.bad(format!("order {id} is in the log, not served"), None, &[id]);
            continue;
        };
        let claims: BTreeSet<String> = v["claims"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| c["member_id"].as_str().unwrap_or("").to_string())
            .collect();
        let mine: BTreeSet<String> = o.claims.keys().cloned().collect();
        if claims != mine {
            ck.bad(format!("order {id}: served claims {claims:?}, the log {mine:?}"), None, &[id]);
        }
        if (v["status"] == "cancelled") != o.cancelled {
            ck.bad(
                format!("order {id}: served status {}, cancelled in the log: {}", v["status"], o.cancelled),
                None,
                &[id],
            );
        }
    }
    // Modes
    for d in fin.modes["districts"].as_array().into_iter().flatten() {
        let id = d["id"].as_str().unwrap_or("").to_string();
        let mine = fold.modes.get(&Some(id.clone())).map(String::as_str).unwrap_or("peacetime");
        if d["mode"] != mine {
            ck.bad(format!("district {id}: served mode {}, the log {mine}", d["mode"]), None, &[]);
        }
    }
    let city = fold.modes.get(&None).map(String::as_str).unwrap_or("peacetime");
    if fin.modes["city"] != city {
        ck.bad(format!("city mode served {}, the log {city}", fin.modes["city"]), None, &[]);
    }

    // ---- every acknowledged operation is in the final state; failed ones left no trace
    let by_note: HashMap<String, Vec<&String>> = fold.incidents.iter().fold(HashMap::new(), |mut m, (id, f)| {
        if let Some(n) = &f.note {
            m.entry(n.clone()).or_default().push(id);
        }
        m
    });
    let mut raises: BTreeMap<String, Vec<&Op>> = BTreeMap::new();
    for op in ops.iter().filter(|o| o.kind == "raise") {
        raises.entry(op.args["key"].as_str().unwrap_or("").to_string()).or_default().push(op);
    }
    let mut unknown_in = (0, 0);
    for (key, list) in &raises {
        let note = format!("hist:{key}");
        let made = by_note.get(&note).cloned().unwrap_or_default();
        let oks: BTreeSet<&str> = list
            .iter()
            .filter_map(|o| match &o.outcome {
                Outcome::Ok(v) => v["id"].as_str(),
                _ => None,
            })
            .collect();
        let t = list.last().map(|o| o.complete);
        if made.len() > 1 {
            ck.bad(format!("raise {key} made {} incidents {made:?}", made.len()), t, &[key]);
        }
        if oks.len() > 1 {
            ck.bad(format!("raise {key} answered different incidents {oks:?}"), t, &[key]);
        }
        if let Some(id) = oks.iter().next() {
            if !made.iter().any(|m| m.as_str() == *id) {
                ck.bad(
                    format!("raise {key} got 201 {id}, which is not in the final state (made {made:?})"),
                    t,
                    &[key, id],
                );
            }
        } else if list.iter().any(|o| o.outcome.is_unknown()) {
            if made.is_empty() { unknown_in.1 += 1 } else { unknown_in.0 += 1 }
        } else if !made.is_empty() {
            ck.bad(format!("raise {key} was refused every time yet made {made:?}"), t, &[key]);
        }
    }
    stats.insert("unknown raises in".into(), unknown_in.0);
    stats.insert("unknown raises out".into(), unknown_in.1);
    for (note, ids) in &by_note {
        if let Some(key) = note.strip_prefix("hist:")
            && !raises.contains_key(key)
        {
            ck.bad(format!("incidents {ids:?} with a note no raise sent: {note}"), None, &[key]);
        }
    }

    let fstatus = |id: &str| fold.incidents.get(id).map(|f| f.status.clone()).unwrap_or_default();
    let mut closes: HashMap<String, Vec<&Op>> = HashMap::new();
    for op in &ops {
        let id = path_id(op);
        match (op.kind, &op.outcome) {
            ("resolve" | "cancel", Outcome::Ok(_)) => {
                closes.entry(id.clone()).or_default().push(op);
                let want = if op.kind == "resolve" { "resolved" } else { "cancelled" };
                if fstatus(&id) != want {
                    ck.bad(
                        format!("{} of {id} got 200, final status {}", op.kind, fstatus(&id)),
                        Some(op.complete),
                        &[&id],
                    );
                }
            }
            ("resolve" | "cancel", Outcome::Fail(c)) if c == "incident_closed" => {
                let s = fstatus(&id);
                if s != "resolved" && s != "cancelled" {
                    ck.bad(
                        format!("{} of {id} refused as closed, final status {s}", op.kind),
                        Some(op.complete),
                        &[&id],
                    );
                }
            }
            ("escalate", Outcome::Ok(v)) => {
                let l = v["level"].as_str().unwrap_or("");
                let now = fold.incidents.get(&id).map(|f| f.level.clone()).unwrap_or_default();
                if level_rank(&now) < level_rank(l) {
                    ck.bad(format!("escalate of {id} answered {l}, final level {now}"), Some(op.complete), &[&id]);
                }
            }
            ("whistle", Outcome::Ok(_)) => {
                let n = ops.iter().filter(|o| o.kind == "whistle" && o.outcome.is_ok() && path_id(o) == id).count();
                if fold.incidents.get(&id).map_or(0, |f| f.whistles) < n {
                    ck.bad(format!("{n} whistles on {id} got 200, fewer in the log"), Some(op.complete), &[&id]);
                }
            }
            _ => {}
        }
    }
    for (id, list) in closes.iter().filter(|(_, l)| l.len() > 1) {
        ck.bad(format!("{id} closed {} times with 200", list.len()), Some(list[1].complete), &[id]);
    }

    // Offers: accept, decline, arrive.
    let offer_state = |offer: &str| -> Option<String> {
        let inc = fold.offer_incident.get(offer)?;
        Some(fold.incidents.get(inc)?.offers.get(offer)?.state.clone())
    };
    let accepted_ok: BTreeSet<String> = ops
        .iter()
        .filter(|o| o.kind == "accept" && o.outcome.is_ok())
        .map(|o| ws_data(o, "offer_id").as_str().unwrap_or("").to_string())
        .collect();
    for op in &ops {
        let offer = ws_data(op, "offer_id").as_str().unwrap_or("").to_string();
        if offer == "off-999999" {
            if op.kind == "accept" && op.outcome.is_ok() {
                ck.bad("accept of an offer that does not exist got ok".into(), Some(op.complete), &[&offer]);
            }
            continue;
        }
        let st = offer_state(&offer).unwrap_or_default();
        let t = Some(op.complete);
        match (op.kind, &op.outcome) {
            ("accept", Outcome::Ok(_)) if st != "accepted" && st != "arrived" => {
                ck.bad(format!("accept of {offer} got ok, final state {st:?}"), t, &[&offer]);
            }
            ("accept", Outcome::Fail(c)) => {
                let implied = match c.as_str() {
                    "offer_expired" => Some("expired"),
                    "offer_revoked" => Some("revoked"),
                    "offer_declined" => Some("declined"),
                    "incident_closed" => Some(""),
                    _ => None,
                };
                if let Some(i) = implied
                    && ((!i.is_empty() && st != i) || st == "accepted" || st == "arrived")
                    && !accepted_ok.contains(&offer)
                {
                    ck.bad(format!("accept of {offer} refused {c}, final state {st:?}"), t, &[&offer]);
                }
            }
            ("decline", Outcome::Ok(_)) if !["declined", "expired", "revoked"].contains(&st.as_str()) => {
                ck.bad(format!("decline of {offer} got ok, final state {st:?}"), t, &[&offer]);
            }
            ("arrive", Outcome::Ok(_)) if st != "arrived" => {
                ck.bad(format!("arrival at {offer} got ok, final state {st:?}"), t, &[&offer]);
            }
            _ => {}
        }
    }

    // Mobilizations
    let mob_note: HashMap<String, Vec<&String>> = fold.mobilizations.iter().fold(HashMap::new(), |mut m, (id, f)| {
        if let Some(n) = &f.note {
            m.entry(n.clone()).or_default().push(id);
        }
        m
    });
    for op in &ops {
        let t = Some(op.complete);
        match op.kind {
            "mobilize" => {
                let note = body(op)["note"].as_str().unwrap_or("").to_string();
                let made = mob_note.get(&note).cloned().unwrap_or_default();
                match &op.outcome {
                    Outcome::Ok(v) => {
                        let id = v["id"].as_str().unwrap_or("");
                        if made.len() != 1 || made[0] != id {
                            ck.bad(format!("mobilization {id} got 201, the log has {made:?} for it"), t, &[id]);
                        }
                    }
                    Outcome::Fail(c) if !made.is_empty() => {
                        ck.bad(format!("mobilize refused {c} yet made {made:?}"), t, &[&note]);
                    }
                    Outcome::Unknown(_) if made.len() > 1 => {
                        ck.bad(format!("mobilize made {made:?}"), t, &[&note]);
                    }
                    _ => {}
                }
            }
            "close_mobilization" if op.outcome.is_ok() => {
                let id = path_id(op);
                if !fold.mobilizations.get(&id).is_some_and(|m| m.closed) {
                    ck.bad(format!("close of {id} got 200, not closed in the log"), t, &[&id]);
                }
            }
            "mobilization.ack" | "mobilization.report" if op.outcome.is_ok() => {
                let id = ws_data(op, "mobilization_id").as_str().unwrap_or("").to_string();
                let member = op.process.strip_prefix("member:").unwrap_or("");
                let st = fold.mobilizations.get(&id).and_then(|m| m.members.get(member)).cloned().unwrap_or_default();
                let ok = if op.kind == "mobilization.ack" {
                    st == "acknowledged" || st == "reported"
                } else {
                    st == "reported"
                };
                if !ok {
                    ck.bad(format!("{} by {member} on {id} got ok, the log has {st:?}", op.kind), t, &[&id, member]);
                }
            }
            _ => {}
        }
    }

    // Orders
    let order_title: HashMap<&str, &String> = fold.orders.iter().map(|(id, o)| (o.title.as_str(), id)).collect();
    let claim_ok: BTreeSet<(String, String)> = ops
        .iter()
        .filter(|o| (o.kind == "claim" || o.kind == "assign") && !matches!(o.outcome, Outcome::Fail(_)))
        .map(|o| {
            let m = if o.kind == "claim" {
                o.process.strip_prefix("member:").unwrap_or("").to_string()
            } else {
                body(o)["member_id"].as_str().unwrap_or("").to_string()
            };
            (path_id(o), m)
        })
        .collect();
    for op in &ops {
        let t = Some(op.complete);
        let id = path_id(op);
        let claims = |m: &str| fold.orders.get(&id).is_some_and(|o| o.claims.contains_key(m));
        match (op.kind, &op.outcome) {
            ("post_order", o) => {
                let title = body(op)["title"].as_str().unwrap_or("");
                let made = order_title.get(title);
                match o {
                    Outcome::Ok(v) if made.map(|s| s.as_str()) != v["id"].as_str() => {
                        ck.bad(format!("order {} got 201, the log has {made:?} for it", v["id"]), t, &[title]);
                    }
                    Outcome::Fail(c) if made.is_some() => {
                        ck.bad(format!("order post refused {c} yet made {made:?}"), t, &[title]);
                    }
                    _ => {}
                }
            }
            ("claim", Outcome::Ok(_)) => {
                let m = op.process.strip_prefix("member:").unwrap_or("");
                if !claims(m) {
                    ck.bad(format!("claim of {id} by {m} got 200, not in the log"), t, &[&id, m]);
                }
            }
            ("assign", Outcome::Ok(_)) => {
                let m = body(op)["member_id"].as_str().unwrap_or("");
                if !claims(m) {
                    ck.bad(format!("assignment of {id} to {m} got 200, not in the log"), t, &[&id, m]);
                }
            }
            ("claim", Outcome::Fail(c)) if c != "unavailable" && c != "connection_refused" => {
                let m = op.process.strip_prefix("member:").unwrap_or("").to_string();
                let other = ops.iter().any(|o| {
                    o.id != op.id
                        && (o.kind == "claim" || o.kind == "assign")
                        && !matches!(o.outcome, Outcome::Fail(_))
                        && path_id(o) == id
                });
                if claims(&m) && !other && !claim_ok.contains(&(id.clone(), m.clone())) {
                    ck.bad(format!("claim of {id} by {m} refused {c}, yet {m} holds it"), t, &[&id, &m]);
                }
            }
            ("cancel_order", Outcome::Ok(_)) if !fold.orders.get(&id).is_some_and(|o| o.cancelled) => {
                ck.bad(format!("cancel of order {id} got 200, not cancelled in the log"), t, &[&id]);
            }
            ("transfer", o) => {
                let b = body(op);
                let members: BTreeSet<String> = b["members"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|m| m.as_str().unwrap_or("").to_string())
                    .collect();
                let found = fold.transfers.iter().any(|(f, to, ms)| {
                    b["from"] == f.as_str()
                        && b["to"] == to.as_str()
                        && ms.iter().cloned().collect::<BTreeSet<_>>() == members
                });
                if o.is_ok() && !found {
                    ck.bad(format!("transfer {b} got 200, not in the log"), t, &[]);
                }
                let another = ops.iter().any(|x| {
                    x.id != op.id && x.kind == "transfer" && !matches!(x.outcome, Outcome::Fail(_)) && body(x) == b
                });
                if matches!(o, Outcome::Fail(_)) && found && !another {
                    ck.bad(format!("transfer {b} refused, yet in the log"), t, &[]);
                }
            }
            ("rate", o) => {
                let b = body(op);
                let task = b["order_id"].as_str().or(b["offer_id"].as_str()).unwrap_or("").to_string();
                let m = b["member_id"].as_str().unwrap_or("").to_string();
                let found = fold.rated.contains(&(task.clone(), m.clone()));
                if o.is_ok() && !found {
                    ck.bad(format!("rating of {m} for {task} got 200, not in the log"), t, &[&task]);
                }
                if let Outcome::Fail(c) = o
                    && c == "already_rated"
                    && !found
                {
                    ck.bad(format!("rating of {m} for {task} refused as already rated, none in the log"), t, &[&task]);
                }
            }
            _ => {}
        }
    }

    // Modes and duty: the last acknowledged switch holds, unless an unknown one followed.
    let mut last: BTreeMap<(String, String), &Op> = BTreeMap::new();
    for op in ops.iter().filter(|o| matches!(o.kind, "district_mode" | "city_mode" | "duty")) {
        let target =
            if op.kind == "duty" { op.process.clone() } else { op.args["path"].as_str().unwrap_or("").to_string() };
        if matches!(op.outcome, Outcome::Fail(_)) {
            continue;
        }
        last.insert((op.kind.to_string(), target), op);
    }
    for ((kind, target), op) in &last {
        let Outcome::Ok(_) = op.outcome else { continue };
        let t = Some(op.complete);
        if kind == "duty" {
            let want = ws_data(op, "on_call").as_bool().unwrap_or(false);
            let m = target.strip_prefix("member:").unwrap_or("");
            let got = fold.duty.get(m).and_then(|v| v.last()).copied();
            if got != Some(want) {
                ck.bad(format!("{m}'s last duty switch ({want}) got ok, the log ends with {got:?}"), t, &[m]);
            }
        } else {
            let mode = body(op)["mode"].as_str().unwrap_or("");
            let key = target.strip_prefix("/v1/districts/").and_then(|p| p.strip_suffix("/mode")).map(str::to_string);
            let got = fold.modes.get(&key).map(String::as_str).unwrap_or("peacetime");
            if got != mode {
                ck.bad(format!("last mode switch of {target} to {mode} got 200, the log ends with {got}"), t, &[]);
            }
        }
    }

    // ---- streams: gapless, no duplicates, across reconnects; equal to the log
    let members = ctx.members.lock().unwrap().clone();
    let mut frames_total = 0;
    let mut reconnects = 0;
    for (m, log) in &members {
        frames_total += log.frames.len();
        reconnects += log.hellos.len().saturating_sub(1);
        let mut prev = 0;
        for f in &log.frames {
            if f.seq != prev + 1 {
                let what = if f.seq <= prev { "duplicate" } else { "gap" };
                ck.bad(format!("{m}: {what}: seq {} after {prev} (connection {})", f.seq, f.conn), Some(f.at), &[m]);
            }
            prev = prev.max(f.seq);
        }
        for (conn, after, last) in &log.hellos {
            if last < after {
                ck.bad(
                    format!("{m}: connection {conn} resumed after {after} but the stream ends at {last}"),
                    None,
                    &[m],
                );
            }
        }
        if let Some(end) = fin.streams.get(m) {
            let live: Vec<(u64, &str, &Value)> = log.frames.iter().map(|f| (f.seq, f.kind.as_str(), &f.data)).collect();
            let replay: Vec<(u64, &str, &Value)> = end.iter().map(|(s, k, d)| (*s, k.as_str(), d)).collect();
            let n = live.len().min(replay.len());
            if live.len() > replay.len() || live[..n] != replay[..n] {
                let i = (0..n).find(|&i| live[i] != replay[i]).unwrap_or(n);
                ck.bad(
                    format!(
                        "{m}: live frames differ from the replay at #{i}: {:?} vs {:?}",
                        live.get(i),
                        replay.get(i)
                    ),
                    log.frames.get(i).map(|f| f.at),
                    &[m],
                );
            }
            for (i, (s, _, _)) in end.iter().enumerate() {
                if *s != i as u64 + 1 {
                    ck.bad(format!("{m}: the replay has seq {s} at #{i}"), None, &[m]);
                    break;
                }
            }
            if let Some(logged) = fin.logged.get(m)
                && logged != end
            {
                ck.bad(
                    format!("{m}: the replay ({} frames) differs from the log ({})", end.len(), logged.len()),
                    None,
                    &[m],
                );
            }
        }
    }
    stats.insert("frames received".into(), frames_total);
    stats.insert("member reconnects".into(), reconnects);

    // ---- fencing: every append under the lease's latest grant
    if let Some(seen) = seen {
        let mut holder: Option<String> = None;
        let mut epoch = 0u64;
        let mut appended: BTreeMap<u64, String> = BTreeMap::new();
        let ep = |t: &str| t.rsplit('/').next().and_then(|e| e.parse::<u64>().ok()).unwrap_or(0);
        for s in seen {
            match s {
                Seen::Grant(t) => {
                    if ep(t) <= epoch {
                        ck.bad(format!("lease granted to {t} after epoch {epoch}"), None, &[]);
                    }
                    epoch = epoch.max(ep(t));
                    holder = Some(t.clone());
                }
                Seen::Append { token, seq } => {
                    if holder.as_deref() != Some(token.as_str()) {
                        ck.bad(
                            format!("log entry {seq} appended by {token} while the lease was {holder:?}"),
                            None,
                            &[],
                        );
                    }
                    if appended.insert(*seq, token.clone()).is_some() {
                        ck.bad(format!("log entry {seq} appended twice"), None, &[]);
                    }
                }
            }
        }
        stats.insert("lease grants".into(), seen.iter().filter(|s| matches!(s, Seen::Grant(_))).count());
        stats.insert("appends watched".into(), appended.len());
        let epochs: BTreeSet<u64> = appended.values().map(|t| ep(t)).collect();
        stats.insert("epochs that appended".into(), epochs.len());
        // Each entry of the log (a batch ends at its last seq) was watched being appended.
        let ends: BTreeSet<u64> = appended.keys().copied().collect();
        if let Some(&top) = ends.iter().next_back()
            && top != fold.last_seq
        {
            ck.bad(format!("the last append watched ends at {top}, the log at {}", fold.last_seq), None, &[]);
        }
    }

    let store_503 = ops.iter().filter(|o| matches!(&o.outcome, Outcome::Unknown(r) if r.starts_with("503 "))).count();
    stats.insert("503 counted unknown".into(), store_503);
    stats.extend(super::hooks::check(&ops, fold, &fin.hooks, &fin.hits, &mut ck));
    check_sign_in(&ops, fold, &mut ck);
    check_audit(fold, fin, &mut ck);
    Report { anomalies: ck.out, stats }
}

/// The smallest window of the history that shows an anomaly: the ops overlapping its time
/// ±1 s that mention one of its objects (all of them if none does), at most 40.
pub fn window(ops: &[Op], a: &Anomaly) -> Vec<String> {
    let Some(t) = a.at else {
        // No time: the ops that mention its objects.
        return ops.iter().filter(|o| mentions(o, &a.objects)).take(40).map(line).collect();
    };
    let near: Vec<&Op> = ops.iter().filter(|o| o.complete + 1000 >= t && o.invoke <= t + 1000).collect();
    let about: Vec<&Op> = near.iter().copied().filter(|o| mentions(o, &a.objects)).collect();
    let pick = if about.is_empty() { near } else { about };
    pick.into_iter().take(40).map(line).collect()
}

fn mentions(o: &Op, objects: &[String]) -> bool {
    if objects.is_empty() {
        return false;
    }
    let text = format!("{} {} {}", o.process, o.args, o.outcome.short());
    objects.iter().any(|x| !x.is_empty() && text.contains(x.as_str()))
}

pub fn line(o: &Op) -> String {
    format!(
        "  #{:<5} {:>6}..{:<6} {:<16} {:<20} {} -> {}",
        o.id,
        o.invoke,
        o.complete,
        o.process,
        o.kind,
        o.args,
        o.outcome.short()
    )
}

/// Can the checker fail? A made-up history, log and final state with one anomaly of each
/// kind planted; every one is reported.
#[test]
fn the_checker_reports_planted_anomalies() {
    use serde_json::json;

    use super::client::{FrameRec, Outcome};
    let ctx = Ctx::new(vec!["127.0.0.1:1".into()], 0);
    let raise = |key: &str, o: Outcome| {
        let args = json!({"key": key, "path": "/v1/incidents", "body": {"note": format!("hist:{key}")}});
        ctx.record("staff:c001", "raise", args, 10, o);
    };
    raise("k1", Outcome::Ok(json!({"id": "inc-000001"})));
    raise("k2", Outcome::Fail("unavailable".into()));
    // a link acknowledged but not in the log, and one code accepted twice
    ctx.record("staff:c001", "invite", json!({"path": "/v1/invitations"}), 10, Outcome::Ok(json!({"id": "inv-9"})));
    for _ in 0..2 {
        ctx.record(
            "visitor",
            "redeem",
            json!({"path": "/v1/session", "body": {"code": "c0de"}}),
            12,
            Outcome::Ok(json!({})),
        );
    }
    ctx.frame("m1", FrameRec { seq: 1, kind: "duty".into(), data: json!({}), conn: 1, at: 20 });
    ctx.frame("m1", FrameRec { seq: 3, kind: "duty".into(), data: json!({}), conn: 1, at: 30 });
    let at = ctx.start_ms + 100;
    let raised = |id: &str, key: &str| json!({"type": "incident_raised", "incident_id": id, "community_id": "c001", "level": "III", "headcount": 1, "note": format!("hist:{key}")});
    let events = vec![
        (1, at, "staff:c001".to_string(), raised("inc-000002", "k2")),
        (
            2,
            at,
            "system".to_string(),
            json!({"type": "offer_sent", "offer_id": "off-1", "incident_id": "inc-000002", "member_id": "m1", "expires_at": at}),
        ),
        (
            3,
            at + 5,
            "member:m1".to_string(),
            json!({"type": "offer_accepted", "offer_id": "off-1", "incident_id": "inc-000002", "member_id": "m1"}),
        ),
        // a decision the audit trail below leaves out
        (
            4,
            at + 6,
            "command".to_string(),
            json!({"type": "mode_switched", "district_id": null, "mode": "wartime", "reason": "x"}),
        ),
    ];
    let fold = Fold::run(&events);
    let fin = Final {
        incidents: vec![json!({"id": "inc-000002", "status": "open", "level": "III", "headcount": 1, "accepted": 1,
            "offers": [{"offer_id": "off-1", "member_id": "m1", "state": "accepted"}]})],
        modes: json!({"city": "peacetime", "districts": []}),
        ..Default::default()
    };
    let seen = vec![
        Seen::Grant("node0/1".into()),
        Seen::Append { token: "node0/1".into(), seq: 1 },
        Seen::Grant("node1/2".into()),
        Seen::Append { token: "node0/1".into(), seq: 3 },
    ];
    let report = check(&ctx, &fold, &fin, Some(&seen));
    let all: Vec<&str> = report.anomalies.iter().map(|a| a.what.as_str()).collect();
    for want in [
        "raise k1 got 201 inc-000001, which is not in the final state",
        "raise k2 was refused every time yet made",
        "at or after its expiry",
        "m1: gap: seq 3 after 1",
        "appended by node0/1 while the lease was Some(\"node1/2\")",
        "invitation inv-9 got 201 but is not in the log",
        "a sign-in link was opened 2 times",
        "the audit trail lists 0 decisions, the log has 1",
    ] {
        assert!(all.iter().any(|a| a.contains(want)), "not reported: {want}\nreported: {all:#?}");
    }
}

/// Sign-in links: every 201 is a link in the log, no refused one is, and a link opens at
/// most once (also when a page sends it twice).
fn check_sign_in(ops: &[Op], fold: &Fold, ck: &mut Ck) {
    let mut issued_ok = 0;
    let mut unknown = 0;
    for op in ops.iter().filter(|o| o.kind == "invite") {
        match &op.outcome {
            Outcome::Ok(v) => {
                issued_ok += 1;
                let id = v["id"].as_str().unwrap_or_default();
                if !fold.invitations.contains_key(id) {
                    ck.bad(format!("invitation {id} got 201 but is not in the log"), Some(op.complete), &[id]);
                }
            }
            Outcome::Unknown(_) => unknown += 1,
            Outcome::Fail(_) => {}
        }
    }
    let issued = fold.invitations.len();
    if issued < issued_ok || issued > issued_ok + unknown {
        ck.bad(
            format!("{issued} links in the log for {issued_ok} acknowledged and {unknown} unknown invitations"),
            None,
            &[],
        );
    }
    let mut opened: BTreeMap<String, usize> = BTreeMap::new();
    for op in ops.iter().filter(|o| o.kind == "redeem" && matches!(o.outcome, Outcome::Ok(_))) {
        *opened.entry(body(op)["code"].as_str().unwrap_or_default().to_string()).or_default() += 1;
    }
    if let Some((_, n)) = opened.iter().find(|(_, n)| **n > 1) {
        ck.bad(format!("a sign-in link was opened {n} times"), None, &[]);
    }
    let redeemed: usize = fold.invitations.values().sum();
    let ok = opened.values().sum::<usize>();
    let unknown = ops.iter().filter(|o| o.kind == "redeem" && o.outcome.is_unknown()).count();
    if redeemed < ok || redeemed > ok + unknown {
        ck.bad(format!("{redeemed} redemptions in the log for {ok} acknowledged and {unknown} unknown"), None, &[]);
    }
}

/// The kinds of decision the audit trail lists, as docs/PROTOCOL.md names them.
const AUDITED: &[&str] = &[
    "mode_switched",
    "mobilization_ordered",
    "mobilization_closed",
    "units_whistled",
    "members_transferred",
    "members_registered",
    "unit_registered",
    "rated",
    "exchanged",
    "tokens_revoked",
    "invitation_issued",
    "invitation_revoked",
    "session_revoked",
    "webhook_registered",
    "webhook_enabled",
    "webhook_disabled",
    "webhook_secret_rotated",
    "webhook_deleted",
    "request_dispatched",
    "request_declined",
    "proposal_approved",
    "proposal_declined",
];

/// The audit trail, read whole as city command, is exactly the log's decisions, in order.
fn check_audit(fold: &Fold, fin: &Final, ck: &mut Ck) {
    let logged: Vec<(u64, &str)> =
        fold.seq_kinds.iter().filter(|(_, k)| AUDITED.contains(&k.as_str())).map(|(q, k)| (*q, k.as_str())).collect();
    let listed: Vec<(u64, &str)> = fin
        .audit
        .iter()
        .map(|e| (e["seq"].as_u64().unwrap_or_default(), e["kind"].as_str().unwrap_or_default()))
        .collect();
    if listed != logged {
        let first = listed.iter().zip(&logged).position(|(a, b)| a != b).unwrap_or(listed.len().min(logged.len()));
        ck.bad(
            format!(
                "the audit trail lists {} decisions, the log has {}; first difference at #{first}: {:?} / {:?}",
                listed.len(),
                logged.len(),
                listed.get(first),
                logged.get(first)
            ),
            None,
            &[],
        );
    }
}
