//! Campaigns in the history run (issue 19's feature, issue 21's rule): a city command
//! process creates campaigns, sites, shifts and requirements, computes and publishes
//! rosters, reads them, and plays the rostered members who acknowledge their shifts and
//! check in and out at the site (sometimes from 5 km away); members who are not rostered
//! try too; with wrong inputs now and then. One shift of each campaign began 20 minutes
//! ago, so its no-show deadline has passed and a published roster is re-rostered at once.
//! `check` holds the operations against an independent fold of the log's campaign events
//! and the campaigns served at the end.

use std::collections::{BTreeMap, BTreeSet, HashMap};
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

const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;
/// The rules every campaign of the run has: two 4-hour shifts 5 hours apart break the rest.
const MAX_HOURS_IN_24H: f64 = 8.0;
const MIN_REST_H: f64 = 8.0;
const MAX_DAYS: u32 = 3;
const ROLES: [&str; 2] = ["queue_order", "registration"];

fn rfc(ms: i64) -> String {
    muster::domain::dispatcher::rfc3339(ms)
}

async fn pause(rng: &mut StdRng, lo: u64, hi: u64) {
    tokio::time::sleep(Duration::from_millis(rng.gen_range(lo..hi))).await;
}

#[derive(Default, Clone)]
struct Known {
    id: String,
    /// (site id, lat, lng) of the sites acknowledged
    sites: Vec<(String, f64, f64)>,
    shifts: Vec<String>,
    /// (shift, member, site) rostered, as last read
    rostered: Vec<(String, String, String)>,
    closed: bool,
}

/// The campaign manager (city command) and the members it plays.
pub async fn manager(ctx: Shared, world: std::sync::Arc<World>, seed: u64, node: usize) {
    let who = "campaigns";
    let token = ctx.token(Role::Command, None);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut camps: Vec<Known> = Vec::new();
    let mut n = 0u64;
    let t0 = muster::engine::now_ms();
    let grids: Vec<String> = world.communities.iter().flat_map(|c| c.grids.clone()).collect();
    while !ctx.over() {
        n += 1;
        let r = if camps.iter().all(|c| c.closed) { 0 } else { rng.gen_range(0..100) };
        // Most work goes to the newest open campaign, so that it gets a roster to answer.
        let newest = camps.iter().rposition(|c| !c.closed).unwrap_or(0);
        let ci = if rng.gen_bool(0.75) { newest } else { rng.gen_range(0..camps.len().max(1)) };
        let base = camps.get(ci).map(|c| format!("/v1/campaigns/{}", c.id)).unwrap_or_default();
        match r {
            0..3 => {
                let mut body = json!({
                    "name": format!("hist-camp-{n}"),
                    "start": rfc(t0 - HOUR), "end": rfc(t0 + 3 * DAY),
                    "rules": {"max_hours_in_24h": MAX_HOURS_IN_24H, "min_rest_h": MIN_REST_H,
                              "max_consecutive_days": MAX_DAYS, "max_distance_m": 100000.0},
                });
                if rng.gen_bool(0.2) {
                    if rng.gen_bool(0.5) {
                        body["end"] = json!(rfc(t0 - 2 * HOUR));
                    } else {
                        body["rules"]["max_distance_m"] = json!(5.0);
                    }
                }
                let o =
                    ctx.call(node, who, "camp_create", Method::POST, "/v1/campaigns", &token, Some(body), None).await;
                if let Outcome::Ok(v) = o {
                    camps.push(Known { id: v["id"].as_str().unwrap_or_default().to_string(), ..Default::default() });
                }
            }
            6..20 => {
                let site = format!("s{n}");
                let mut body = json!({"name": format!("site {n}"), "grid_id": grids.choose(&mut rng).unwrap()});
                if rng.gen_bool(0.12) {
                    if rng.gen_bool(0.5) {
                        body["grid_id"] = json!("no-such-grid");
                    } else {
                        body["location"] = json!({"lat": 30.5, "lng": 114.3});
                    }
                }
                let p = format!("{base}/sites/{site}");
                let o = ctx.call(node, who, "camp_site", Method::PUT, &p, &token, Some(body), None).await;
                if let Outcome::Ok(v) = o {
                    let (lat, lng) = (v["location"]["lat"].as_f64().unwrap_or(0.0), v["location"]["lng"].as_f64());
                    camps[ci].sites.push((site, lat, lng.unwrap_or(0.0)));
                }
            }
            20..32 => {
                // Shift k: 4 hours from 20 minutes ago + 5k hours (k = 0: its no-show
                // deadline has passed); or a shift that ends before it starts.
                let k = camps[ci].shifts.len() as i64 % 8;
                let start = t0 - 20 * 60_000 + k * 5 * HOUR;
                let shift = format!("h{n}");
                let mut body = json!({"start": rfc(start), "end": rfc(start + 4 * HOUR)});
                if rng.gen_bool(0.1) {
                    body["end"] = json!(rfc(start - HOUR));
                }
                let p = format!("{base}/shifts/{shift}");
                if ctx.call(node, who, "camp_shift", Method::PUT, &p, &token, Some(body), None).await.is_ok() {
                    camps[ci].shifts.push(shift);
                }
            }
            32..46 => {
                let c = &camps[ci];
                let (Some(site), Some(shift)) = (c.sites.choose(&mut rng), c.shifts.choose(&mut rng)) else { continue };
                let mut body = json!({"site_id": site.0, "shift_id": shift, "role": ROLES.choose(&mut rng).unwrap(),
                                      "headcount": rng.gen_range(0..=3)});
                if rng.gen_bool(0.1) {
                    body["role"] = json!("no_such_role");
                }
                let p = format!("{base}/requirements");
                ctx.call(node, who, "camp_requirement", Method::PUT, &p, &token, Some(body), None).await;
            }
            46..56 => {
                let iterations = if rng.gen_bool(0.08) { 99_999_999 } else { 2_000 };
                let body = json!({"iterations": iterations, "seed": n});
                let p = format!("{base}/roster");
                let roster = ctx.call(node, who, "camp_roster", Method::POST, &p, &token, Some(body), None);
                // Now and then a requirement changes while the roster is computed (through
                // another node on three): the publish is then stale (retried by the server,
                // or 409 roster_stale), never a roster of the campaign as it was.
                let c = &camps[ci];
                let o = match (c.sites.choose(&mut rng), c.shifts.choose(&mut rng)) {
                    (Some(site), Some(shift)) if rng.gen_bool(0.3) => {
                        let body = json!({"site_id": site.0, "shift_id": shift, "role": ROLES.choose(&mut rng).unwrap(),
                                          "headcount": rng.gen_range(1..=3)});
                        let p = format!("{base}/requirements");
                        let put =
                            ctx.call(node + 1, who, "camp_requirement", Method::PUT, &p, &token, Some(body), None);
                        tokio::join!(roster, put).0
                    }
                    _ => roster.await,
                };
                // A published roster is read at once, so that its members answer it.
                if o.is_ok() {
                    read(&ctx, node, &token, &base, "camp_get", &mut camps[ci]).await;
                }
            }
            56..68 => {
                let (kind, p) = if rng.gen_bool(0.1) {
                    ("camp_get_unknown", "/v1/campaigns/cmp-999999".to_string())
                } else {
                    ("camp_get", base.clone())
                };
                read(&ctx, node, &token, &p, kind, &mut camps[ci]).await;
            }
            68..94 => {
                // A rostered member answers a shift of theirs; or one who is not rostered
                // in this campaign (as last read) tries to.
                let c = &camps[ci];
                let Some((shift, member, site)) = c.rostered.choose(&mut rng).cloned() else { continue };
                let (kind, member) = if rng.gen_bool(0.2) {
                    let rostered: BTreeSet<&str> = c.rostered.iter().map(|(_, m, _)| m.as_str()).collect();
                    let Some(m) = world.members.iter().map(|m| m.id.as_str()).find(|m| !rostered.contains(m)) else {
                        continue;
                    };
                    ("camp_foreign_ack", m.to_string())
                } else {
                    match rng.gen_range(0..10) {
                        0..5 => ("camp_ack", member),
                        5..8 => ("camp_checkin", member),
                        _ => ("camp_checkout", member),
                    }
                };
                let mtoken = ctx.token(Role::Member, Some(&member));
                let site = c.sites.iter().find(|s| s.0 == site).map(|s| (s.1, s.2)).unwrap_or((30.5, 114.3));
                let p = match kind {
                    "camp_checkin" => format!("{base}/shifts/{shift}/checkin"),
                    "camp_checkout" => format!("{base}/shifts/{shift}/checkout"),
                    _ => format!("{base}/shifts/{shift}/ack"),
                };
                // At the site of the member's requirement; 15% from 5 km away.
                let body = if kind == "camp_checkin" || kind == "camp_checkout" {
                    let far = if rng.gen_bool(0.15) { 0.05 } else { 0.0 };
                    Some(json!({"lat": site.0 + far, "lng": site.1}))
                } else {
                    None
                };
                ctx.call(node, &format!("member:{member}"), kind, Method::POST, &p, &mtoken, body, None).await;
            }
            94..97 if ci > 0 => {
                let p = format!("{base}/close");
                if ctx.call(node, who, "camp_close", Method::POST, &p, &token, None, None).await.is_ok() {
                    camps[ci].closed = true;
                }
            }
            _ => {}
        }
        pause(&mut rng, 150, 450).await;
    }
}

/// Reads a campaign (recorded as `kind`) and keeps who is rostered where.
async fn read(ctx: &Shared, node: usize, token: &str, path: &str, kind: &'static str, known: &mut Known) {
    if let Outcome::Ok(v) = ctx.call(node, "campaigns", kind, Method::GET, path, token, None, None).await {
        known.rostered = v["cells"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|c| {
                let shift = c["shift_id"].as_str().unwrap_or_default().to_string();
                let site = c["site_id"].as_str().unwrap_or_default().to_string();
                c["members"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .map(move |m| (shift.clone(), m.to_string(), site.clone()))
            })
            .collect();
    }
}

// ---------------------------------------------------------------- the fold

#[derive(Debug, Clone, Default)]
pub struct FCampaign {
    pub name: String,
    pub closed: bool,
    pub rules: (f64, f64, u32),
    /// site → closed
    pub sites: BTreeMap<String, bool>,
    /// shift → (start, end)
    pub shifts: BTreeMap<String, (i64, i64)>,
    /// (site, shift, role, headcount), in the order the log set them
    pub reqs: Vec<(String, String, String, u64)>,
    /// version, members, slots (member indexes per requirement)
    pub roster: Option<(u64, Vec<String>, Vec<Vec<usize>>)>,
    /// (shift, member) → acknowledged, checked in, checked out
    pub answers: BTreeMap<(String, String), [bool; 3]>,
    pub no_show_rerosters: usize,
}

/// The campaigns of the log, folded from the events' JSON on its own, and every hard rule
/// a published roster breaks: (seq, at, what).
#[derive(Debug, Default)]
pub struct CampaignFold {
    pub campaigns: BTreeMap<String, FCampaign>,
    pub violations: Vec<(u64, i64, String)>,
}

fn s(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

impl CampaignFold {
    pub fn run(events: &[LogEvent]) -> CampaignFold {
        let mut f = CampaignFold::default();
        for (seq, at, _, body) in events.iter().filter(|e| e.3["type"] == "campaign") {
            f.apply(*seq, *at, &body["event"]);
        }
        f
    }

    fn apply(&mut self, seq: u64, at: i64, e: &Value) {
        let id = s(&e["campaign_id"]);
        let op = e["op"].as_str().unwrap_or_default();
        if op == "created" {
            let r = &e["rules"];
            let rules = (
                r["max_hours_in_24h"].as_f64().unwrap_or(0.0),
                r["min_rest_h"].as_f64().unwrap_or(0.0),
                r["max_consecutive_days"].as_u64().unwrap_or(0) as u32,
            );
            self.campaigns.insert(id, FCampaign { name: s(&e["name"]), rules, ..Default::default() });
            return;
        }
        let Some(c) = self.campaigns.get_mut(&id) else {
            self.violations.push((seq, at, format!("{op} of campaign {id}, which the log never created")));
            return;
        };
        let mut bad = Vec::new();
        match op {
            "site_set" => {
                c.sites.insert(s(&e["site"]["id"]), e["site"]["closed"].as_bool().unwrap_or(false));
            }
            "site_closed" => {
                c.sites.insert(s(&e["site_id"]), true);
            }
            "shift_set" => {
                let sh = &e["shift"];
                c.shifts.insert(s(&sh["id"]), (sh["start"].as_i64().unwrap_or(0), sh["end"].as_i64().unwrap_or(0)));
            }
            "requirement_set" => {
                let r = &e["requirement"];
                let key = (s(&r["site_id"]), s(&r["shift_id"]), s(&r["role"]));
                let h = r["headcount"].as_u64().unwrap_or(0);
                match c.reqs.iter_mut().find(|x| (&x.0, &x.1, &x.2) == (&key.0, &key.1, &key.2)) {
                    Some(x) => x.3 = h,
                    None => c.reqs.push((key.0, key.1, key.2, h)),
                }
            }
            "roster_published" => {
                let r = &e["roster"];
                let members: Vec<String> = r["members"].as_array().into_iter().flatten().map(s).collect();
                let slots: Vec<Vec<usize>> = r["slots"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|x| x.as_array().into_iter().flatten().filter_map(Value::as_u64).map(|m| m as usize).collect())
                    .collect();
                let version = r["version"].as_u64().unwrap_or(0);
                let want = c.roster.as_ref().map_or(1, |p| p.0 + 1);
                if version != want {
                    bad.push(format!("roster version {version} published after {}", want - 1));
                }
                bad.extend(hard_rules(c, &members, &slots));
                c.roster = Some((version, members, slots));
            }
            "no_shows" if e["automatic"].as_bool().unwrap_or(false) => c.no_show_rerosters += 1,
            "closed" => c.closed = true,
            "acknowledged" | "checked_in" | "checked_out" => {
                let k = ["acknowledged", "checked_in", "checked_out"].iter().position(|x| *x == op).unwrap_or(0);
                let a = c.answers.entry((s(&e["shift_id"]), s(&e["member_id"]))).or_default();
                if a[k] {
                    bad.push(format!("{op} twice for {} on {}", s(&e["member_id"]), s(&e["shift_id"])));
                }
                a[k] = true;
            }
            _ => {}
        }
        for b in bad {
            self.violations.push((seq, at, format!("{id}: {b}")));
        }
    }
}

/// The hard rules of a published roster, checked here from the log alone: the roster is
/// whole (a list of members per requirement), no requirement has more members than its
/// headcount, no member is twice in one shift or on overlapping shifts, rests at least the
/// rule's hours between shifts, works at most the rule's hours in any 24 hours.
pub fn hard_rules(c: &FCampaign, members: &[String], slots: &[Vec<usize>]) -> Vec<String> {
    let mut out = Vec::new();
    if slots.len() != c.reqs.len() {
        out.push(format!("a roster of {} requirements, the campaign has {}", slots.len(), c.reqs.len()));
        return out;
    }
    let mut spans: BTreeMap<&str, Vec<(i64, i64, &str)>> = BTreeMap::new();
    for ((site, shift, role, headcount), held) in c.reqs.iter().zip(slots) {
        if held.len() as u64 > *headcount {
            out.push(format!("{site}/{shift}/{role}: {} rostered, headcount {headcount}", held.len()));
        }
        let Some(&(start, end)) = c.shifts.get(shift) else {
            out.push(format!("rostered into shift {shift}, which the log does not have"));
            continue;
        };
        for &m in held {
            let Some(id) = members.get(m) else {
                out.push(format!("{site}/{shift}/{role}: member #{m} of {}", members.len()));
                continue;
            };
            spans.entry(id).or_default().push((start, end, shift));
        }
    }
    let (max_ms, rest_ms) = ((c.rules.0 * HOUR as f64) as i64, (c.rules.1 * HOUR as f64) as i64);
    for (m, list) in &mut spans {
        list.sort();
        for w in list.windows(2) {
            let ((_, e0, a), (s1, _, b)) = (w[0], w[1]);
            if s1 < e0 {
                out.push(format!("{m} on overlapping shifts {a} and {b}"));
            } else if s1 - e0 < rest_ms {
                out.push(format!("{m} rests {} min between {a} and {b}", (s1 - e0) / 60_000));
            }
        }
        for &(a, _, _) in list.iter() {
            let on: i64 = list.iter().map(|&(s, e, _)| (e.min(a + DAY) - s.max(a)).max(0)).sum();
            if on > max_ms {
                out.push(format!("{m} works {} h in the 24 h from a shift's start", on / HOUR));
                break;
            }
        }
    }
    out
}

// ---------------------------------------------------------------- the checks

/// What the final read adds: every campaign as city command sees it, and each member's
/// own shifts (`GET /v1/campaigns/mine`) for the members whose answer was acknowledged.
#[derive(Default)]
pub struct FinalCampaigns {
    pub served: Vec<Value>,
    pub mine: BTreeMap<String, Value>,
}

/// The members whose own shifts the final read needs.
pub fn answered(ops: &[Op]) -> BTreeSet<String> {
    ops.iter()
        .filter(|o| o.kind.starts_with("camp_") && o.process.starts_with("member:") && o.outcome.is_ok())
        .map(|o| o.process["member:".len()..].to_string())
        .collect()
}

fn part(op: &Op, i: usize) -> String {
    op.args["path"].as_str().unwrap_or("").split('/').nth(i).unwrap_or("").to_string()
}

pub fn check(
    ops: &[Op],
    fold: &CampaignFold,
    fin: &FinalCampaigns,
    start_ms: i64,
    ck: &mut Ck,
) -> BTreeMap<String, usize> {
    let mut stats = BTreeMap::new();
    for (seq, at, what) in &fold.violations {
        let id = what.split(':').next().unwrap_or("");
        ck.bad(format!("log seq {seq}: {what}"), Some((*at - start_ms).max(0) as u64), &[id]);
    }
    let by_name: HashMap<&str, Vec<&String>> = fold.campaigns.iter().fold(HashMap::new(), |mut m, (id, c)| {
        m.entry(c.name.as_str()).or_default().push(id);
        m
    });
    let definite = |o: &Outcome| match o {
        Outcome::Fail(c) => c != "connection_refused" && c != "rate_limited",
        _ => false,
    };
    for op in ops.iter().filter(|o| o.kind.starts_with("camp_")) {
        let t = Some(op.complete);
        let cid = part(op, 3);
        let c = fold.campaigns.get(&cid);
        let body = &op.args["body"];
        match (op.kind, &op.outcome) {
            ("camp_create", o) => {
                let name = body["name"].as_str().unwrap_or_default();
                let made = by_name.get(name).cloned().unwrap_or_default();
                match o {
                    Outcome::Ok(v) if !made.iter().any(|id| v["id"] == id.as_str()) => {
                        ck.bad(format!("campaign {name} got 201 as {}, the log has {made:?}", v["id"]), t, &[name])
                    }
                    Outcome::Fail(code) if !made.is_empty() => {
                        ck.bad(format!("campaign {name} refused {code}, the log has {made:?}"), t, &[name])
                    }
                    Outcome::Unknown(_) if made.len() > 1 => {
                        ck.bad(format!("one create of {name} made {made:?}"), t, &[name])
                    }
                    _ => {}
                }
            }
            ("camp_site", o) => {
                let site = part(op, 5);
                let has = c.is_some_and(|c| c.sites.contains_key(&site));
                if o.is_ok() && !has {
                    ck.bad(format!("site {site} of {cid} got 200, not in the log"), t, &[&cid, &site]);
                }
                if definite(o) && has {
                    ck.bad(format!("site {site} of {cid} refused, yet in the log"), t, &[&cid, &site]);
                }
            }
            ("camp_shift", o) => {
                let shift = part(op, 5);
                let got = c.and_then(|c| c.shifts.get(&shift));
                let want = (
                    body["start"]
                        .as_str()
                        .and_then(|x| chrono::DateTime::parse_from_rfc3339(x).ok())
                        .map(|d| d.timestamp_millis()),
                    body["end"]
                        .as_str()
                        .and_then(|x| chrono::DateTime::parse_from_rfc3339(x).ok())
                        .map(|d| d.timestamp_millis()),
                );
                if o.is_ok() && got.map(|g| (Some(g.0), Some(g.1))) != Some(want) {
                    ck.bad(
                        format!("shift {shift} of {cid} got 200 for {want:?}, the log has {got:?}"),
                        t,
                        &[&cid, &shift],
                    );
                }
                if definite(o) && got.is_some() {
                    ck.bad(format!("shift {shift} of {cid} refused, yet in the log"), t, &[&cid, &shift]);
                }
            }
            ("camp_requirement", o) => {
                let key = (s(&body["site_id"]), s(&body["shift_id"]), s(&body["role"]));
                let has = c.is_some_and(|c| c.reqs.iter().any(|r| (&r.0, &r.1, &r.2) == (&key.0, &key.1, &key.2)));
                if o.is_ok() && !has {
                    ck.bad(format!("requirement {key:?} of {cid} got 200, not in the log"), t, &[&cid]);
                }
                // A refused requirement that no other put of the same cell made left nothing.
                let same = |x: &Op| {
                    x.kind == "camp_requirement"
                        && !matches!(x.outcome, Outcome::Fail(_))
                        && x.args["path"] == op.args["path"]
                        && ["site_id", "shift_id", "role"].iter().all(|k| x.args["body"][k] == body[k])
                };
                if definite(o) && has && !ops.iter().any(same) {
                    ck.bad(format!("requirement {key:?} of {cid} refused, yet in the log"), t, &[&cid]);
                }
            }
            ("camp_roster", Outcome::Ok(v)) => {
                let version = v["version"].as_u64().unwrap_or(0);
                if c.and_then(|c| c.roster.as_ref()).is_none_or(|r| r.0 < version) {
                    ck.bad(format!("roster {version} of {cid} got 200, the log has no such version"), t, &[&cid]);
                }
            }
            ("camp_ack" | "camp_checkin" | "camp_checkout" | "camp_foreign_ack", o) => {
                let shift = part(op, 5);
                let member = op.process["member:".len()..].to_string();
                let k = match op.kind {
                    "camp_checkin" => 1,
                    "camp_checkout" => 2,
                    _ => 0,
                };
                let logged = c.and_then(|c| c.answers.get(&(shift.clone(), member.clone()))).is_some_and(|a| a[k]);
                if o.is_ok() && !logged {
                    ck.bad(
                        format!("{} of {member} on {cid}/{shift} got 200, not in the log", op.kind),
                        t,
                        &[&cid, &member],
                    );
                }
                // Not rostered: the campaign is as missing as one that does not exist.
                if let Outcome::Fail(code) = o
                    && op.kind == "camp_foreign_ack"
                    && !matches!(
                        code.as_str(),
                        "unknown_campaign" | "unknown_shift" | "connection_refused" | "rate_limited" | "unavailable"
                    )
                {
                    ck.bad(format!("a member not rostered in {cid} was told {code}, not 404"), t, &[&cid, &member]);
                }
            }
            ("camp_get_unknown", Outcome::Ok(_)) => {
                ck.bad("GET of a campaign that does not exist got 200".into(), t, &[])
            }
            _ => {}
        }
    }
    // Requirements: the log ends with a headcount some acknowledged (or unknown) put gave,
    // the last acknowledged one unless a put after it (or one unknown) could have changed it.
    let mut puts: BTreeMap<(String, String, String, String), Vec<&Op>> = BTreeMap::new();
    for op in ops.iter().filter(|o| o.kind == "camp_requirement" && !matches!(o.outcome, Outcome::Fail(_))) {
        let b = &op.args["body"];
        puts.entry((part(op, 3), s(&b["site_id"]), s(&b["shift_id"]), s(&b["role"]))).or_default().push(op);
    }
    for ((cid, site, shift, role), list) in &puts {
        let Some(last_ok) = list.iter().filter(|o| o.outcome.is_ok()).max_by_key(|o| o.complete) else { continue };
        let could: BTreeSet<u64> = list
            .iter()
            .filter(|o| o.id == last_ok.id || o.outcome.is_unknown() || o.complete > last_ok.invoke)
            .filter_map(|o| o.args["body"]["headcount"].as_u64())
            .collect();
        let got =
            fold.campaigns.get(cid).and_then(|c| c.reqs.iter().find(|r| (&r.0, &r.1, &r.2) == (site, shift, role)));
        if !got.is_some_and(|r| could.contains(&r.3)) {
            ck.bad(
                format!(
                    "{cid} {site}/{shift}/{role}: the log ends with headcount {:?}, acknowledged {could:?}",
                    got.map(|r| r.3)
                ),
                Some(last_ok.complete),
                &[cid],
            );
        }
    }
    // Served = folded: sites, shifts, cells (requirement, headcount, members), version.
    let served: BTreeMap<String, &Value> = fin.served.iter().map(|v| (s(&v["id"]), v)).collect();
    if served.keys().collect::<BTreeSet<_>>() != fold.campaigns.keys().collect::<BTreeSet<_>>() {
        ck.bad(format!("campaigns served {:?}, in the log {:?}", served.keys(), fold.campaigns.keys()), None, &[]);
    }
    for (id, c) in &fold.campaigns {
        let Some(v) = served.get(id) else { continue };
        let ids =
            |k: &str| -> BTreeSet<String> { v[k].as_array().into_iter().flatten().map(|x| s(&x["id"])).collect() };
        let cells: Vec<(String, String, String, u64, BTreeSet<String>)> = v["cells"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|x| {
                let ms = x["members"].as_array().into_iter().flatten().map(s).collect();
                (s(&x["site_id"]), s(&x["shift_id"]), s(&x["role"]), x["required"].as_u64().unwrap_or(0), ms)
            })
            .collect();
        let mine: Vec<(String, String, String, u64, BTreeSet<String>)> = c
            .reqs
            .iter()
            .enumerate()
            .map(|(i, (site, shift, role, h))| {
                let held = c
                    .roster
                    .as_ref()
                    .and_then(|(_, ms, slots)| {
                        slots.get(i).map(|x| x.iter().filter_map(|&m| ms.get(m).cloned()).collect())
                    })
                    .unwrap_or_default();
                let required = if c.sites.get(site).copied().unwrap_or(false) { 0 } else { *h };
                (site.clone(), shift.clone(), role.clone(), required, held)
            })
            .collect();
        let version = c.roster.as_ref().map_or(0, |r| r.0);
        if ids("sites") != c.sites.keys().cloned().collect()
            || ids("shifts") != c.shifts.keys().cloned().collect()
            || cells != mine
            || v["roster_version"].as_u64() != Some(version)
            || v["closed"].as_bool() != Some(c.closed)
        {
            ck.bad(format!("{id}: served {v}, the log folds to {c:?}"), None, &[id]);
        }
    }
    // An acknowledged answer is never lost: while the member still holds the shift, their
    // own view shows it.
    for op in
        ops.iter().filter(|o| matches!(o.kind, "camp_ack" | "camp_checkin" | "camp_foreign_ack") && o.outcome.is_ok())
    {
        let member = &op.process["member:".len()..];
        let (cid, shift) = (part(op, 3), part(op, 5));
        let field = if op.kind == "camp_checkin" { "checkin_at" } else { "acknowledged_at" };
        let mine = fin.mine.get(member).and_then(|v| v["shifts"].as_array().cloned()).unwrap_or_default();
        if let Some(x) = mine.iter().find(|x| x["campaign_id"] == cid.as_str() && x["shift_id"] == shift.as_str())
            && x[field].is_null()
        {
            ck.bad(
                format!("{member}'s {} on {cid}/{shift} got 200; their shifts show no {field}", op.kind),
                Some(op.complete),
                &[&cid, member],
            );
        }
    }
    stats.insert("campaigns".into(), fold.campaigns.len());
    stats.insert(
        "campaign rosters published".into(),
        fold.campaigns.values().filter_map(|c| c.roster.as_ref()).map(|r| r.0 as usize).sum(),
    );
    stats.insert("campaign no-show re-rosters".into(), fold.campaigns.values().map(|c| c.no_show_rerosters).sum());
    stats.insert(
        "campaign answers".into(),
        fold.campaigns.values().flat_map(|c| c.answers.values()).map(|a| a.iter().filter(|x| **x).count()).sum(),
    );
    stats
}

/// Can these checks fail? A made-up log with a roster that breaks every hard rule, and a
/// history with a lost 201, a refused site in the log, a lost acknowledgement, a foreign
/// member told something else than 404, a served campaign that is not the log's, and a
/// refused requirement in the log: all are reported.
#[test]
fn the_campaign_checks_report_planted_anomalies() {
    use super::client::Ctx;
    let ctx = Ctx::new(vec!["127.0.0.1:1".into()], 0);
    let at = ctx.start_ms + 100;
    let ev = |seq: u64, e: Value| (seq, at, "command".to_string(), json!({"type": "campaign", "event": e}));
    let h = |x: i64| x * HOUR;
    let events = vec![
        ev(
            1,
            json!({"op": "created", "campaign_id": "cmp-1", "name": "hist-camp-1", "start": 0, "end": h(72),
            "rules": {"max_hours_in_24h": 8.0, "min_rest_h": 8.0, "max_consecutive_days": 3, "max_distance_m": 100000.0}}),
        ),
        ev(
            2,
            json!({"op": "site_set", "campaign_id": "cmp-1", "site": {"id": "s1", "name": "x", "position": {"lat": 0.0, "lng": 0.0}, "grid_id": null, "community_id": null, "closed": false}}),
        ),
        ev(
            3,
            json!({"op": "shift_set", "campaign_id": "cmp-1", "shift": {"id": "a", "start": h(10), "end": h(14), "site_id": null}}),
        ),
        ev(
            4,
            json!({"op": "shift_set", "campaign_id": "cmp-1", "shift": {"id": "b", "start": h(13), "end": h(17), "site_id": null}}),
        ),
        ev(
            5,
            json!({"op": "shift_set", "campaign_id": "cmp-1", "shift": {"id": "c", "start": h(19), "end": h(23), "site_id": null}}),
        ),
        ev(
            6,
            json!({"op": "requirement_set", "campaign_id": "cmp-1", "requirement": {"site_id": "s1", "shift_id": "a", "role": "queue_order", "headcount": 1, "skills": []}}),
        ),
        ev(
            7,
            json!({"op": "requirement_set", "campaign_id": "cmp-1", "requirement": {"site_id": "s1", "shift_id": "b", "role": "queue_order", "headcount": 1, "skills": []}}),
        ),
        ev(
            8,
            json!({"op": "requirement_set", "campaign_id": "cmp-1", "requirement": {"site_id": "s1", "shift_id": "c", "role": "queue_order", "headcount": 1, "skills": []}}),
        ),
        // m1 on a and b (overlap), and twice on c beside m2 (headcount 1), rest 2 h after b,
        // 12 h in 24 h.
        ev(
            9,
            json!({"op": "roster_published", "campaign_id": "cmp-1", "roster": {"version": 1, "from": 0,
            "members": ["m1", "m2"], "slots": [[0], [0], [0, 1]], "shortfall": [], "changed": 0}}),
        ),
        // A half roster: two requirements of three.
        ev(
            10,
            json!({"op": "roster_published", "campaign_id": "cmp-1", "roster": {"version": 2, "from": 0,
            "members": ["m1"], "slots": [[0], []], "shortfall": [], "changed": 0}}),
        ),
    ];
    let fold = CampaignFold::run(&events);
    let rec = |process: &str, kind: &'static str, path: &str, body: Value, o: Outcome| {
        ctx.record(process, kind, json!({"path": path, "method": "POST", "body": body}), 10, o);
    };
    rec(
        "campaigns",
        "camp_create",
        "/v1/campaigns",
        json!({"name": "hist-camp-2"}),
        Outcome::Ok(json!({"id": "cmp-2"})),
    );
    rec("campaigns", "camp_site", "/v1/campaigns/cmp-1/sites/s1", json!({}), Outcome::Fail("unknown_grid".into()));
    rec("member:m2", "camp_ack", "/v1/campaigns/cmp-1/shifts/c/ack", Value::Null, Outcome::Ok(json!({})));
    rec(
        "member:m9",
        "camp_foreign_ack",
        "/v1/campaigns/cmp-1/shifts/c/ack",
        Value::Null,
        Outcome::Fail("role_not_allowed".into()),
    );
    rec(
        "campaigns",
        "camp_requirement",
        "/v1/campaigns/cmp-1/requirements",
        json!({"site_id": "s1", "shift_id": "a", "role": "queue_order", "headcount": 1}),
        Outcome::Fail("unavailable".into()),
    );
    let ops = ctx.ops.lock().unwrap().clone();
    let fin = FinalCampaigns {
        served: vec![
            json!({"id": "cmp-1", "sites": [], "shifts": [], "cells": [], "roster_version": 2, "closed": false}),
        ],
        mine: BTreeMap::new(),
    };
    let mut ck = Ck::default();
    check(&ops, &fold, &fin, ctx.start_ms, &mut ck);
    let all: Vec<String> = ck.out.iter().map(|a| a.what.clone()).collect();
    for want in [
        "m1 on overlapping shifts a and b",
        "m1 rests 120 min between b and c",
        "m1 works 12 h in the 24 h",
        "s1/c/queue_order: 2 rostered, headcount 1",
        "a roster of 2 requirements, the campaign has 3",
        "campaign hist-camp-2 got 201 as \"cmp-2\", the log has []",
        "site s1 of cmp-1 refused, yet in the log",
        "camp_ack of m2 on cmp-1/c got 200, not in the log",
        "a member not rostered in cmp-1 was told role_not_allowed, not 404",
        "cmp-1: served",
        "requirement (\"s1\", \"a\", \"queue_order\") of cmp-1 refused, yet in the log",
    ] {
        assert!(all.iter().any(|a| a.contains(want)), "not reported: {want}\nreported: {all:#?}");
    }
}
