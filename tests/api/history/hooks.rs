//! Webhooks and the city's GeoJSON in the history run: a city admin process registers
//! webhook endpoints on a receiver of the test's own (the paths under `/broken/` always
//! answer 500, so dead letters pile up and endpoints get disabled by the deliverer), lists
//! them, rotates their secrets, disables and enables them, reads and replays their dead
//! letters, and posts the city's own GeoJSON back (a dry run, and applying it, which is
//! refused while incidents or mobilizations are open); with wrong inputs now and then.
//! `check` is what the checker verifies about those operations and the deliveries.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use muster::gateway::auth::Role;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use reqwest::Method;
use serde_json::{Value, json};

use super::checker::Ck;
use super::client::{Op, Outcome, Shared};
use super::fold::Fold;

/// The settings the run's nodes need for webhooks: loopback allowed, short backoffs, and
/// an endpoint disabled after three dead letters in a row.
pub const ENV: [(&str, &str); 7] = [
    ("MUSTER_WEBHOOKS__ALLOW_CIDRS", r#"["127.0.0.0/8"]"#),
    ("MUSTER_WEBHOOKS__ATTEMPTS", "2"),
    ("MUSTER_WEBHOOKS__BACKOFF_BASE_MS", "20"),
    ("MUSTER_WEBHOOKS__BACKOFF_MAX_MS", "100"),
    ("MUSTER_WEBHOOKS__POLL_MS", "50"),
    ("MUSTER_WEBHOOKS__TIMEOUT_MS", "1000"),
    ("MUSTER_WEBHOOKS__DISABLE_AFTER_DEAD", "3"),
];

/// A request the receiver got.
#[derive(Clone, Debug)]
pub struct Hit {
    pub path: String,
    pub id: String,
    pub timestamp: String,
    pub signature: String,
    pub body: String,
}

/// A small HTTP server on loopback: records every request as it arrives, answers 500 on
/// `/broken/…` and 200 elsewhere.
#[derive(Clone)]
pub struct Receiver {
    pub addr: std::net::SocketAddr,
    pub hits: Arc<Mutex<Vec<Hit>>>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        let hits = Arc::new(Mutex::new(Vec::new()));
        let h = hits.clone();
        let addr = crate::helpers::loopback(move |req| {
            h.lock().unwrap().push(Hit {
                path: req.path.clone(),
                id: req.header("webhook-id"),
                timestamp: req.header("webhook-timestamp"),
                signature: req.header("webhook-signature"),
                body: req.body_text(),
            });
            crate::helpers::LoopbackReply::status(if req.path.starts_with("/broken/") { 500 } else { 200 })
        })
        .await;
        Receiver { addr, hits }
    }
}

/// Event types an endpoint asks for (a random non-empty subset of these).
const TYPES: [&str; 6] = [
    "incident.raised",
    "incident.escalated",
    "incident.resolved",
    "incident.cancelled",
    "mode.switched",
    "mobilization.ordered",
];

async fn pause(rng: &mut StdRng, lo: u64, hi: u64) {
    tokio::time::sleep(Duration::from_millis(rng.gen_range(lo..hi))).await;
}

/// The city admin: webhooks and the city's GeoJSON, as city command.
pub async fn admin(ctx: Shared, receiver: Receiver, seed: u64, node: usize) {
    let who = "admin";
    let token = ctx.token(Role::Command, None);
    let mut rng = StdRng::seed_from_u64(seed);
    // The city as GeoJSON, to post back (read once; not recorded: it changes nothing).
    let mut city = None;
    for _ in 0..10 {
        let url = format!("http://{}/v1/city/geojson", ctx.addr(node));
        if let Ok(r) = ctx.http.get(url).bearer_auth(&token).send().await
            && r.status() == 200
            && let Ok(v) = r.json::<Value>().await
        {
            city = Some(v);
            break;
        }
        pause(&mut rng, 200, 500).await;
    }
    let mut hooks: Vec<String> = Vec::new();
    let mut n = 0;
    while !ctx.over() {
        pause(&mut rng, 300, 900).await;
        let id = if rng.gen_bool(0.08) {
            "wh-999999".to_string()
        } else {
            hooks.choose(&mut rng).cloned().unwrap_or_default()
        };
        let base = format!("/v1/webhooks/{id}");
        match rng.gen_range(0..100) {
            0..18 => {
                n += 1;
                let dir = if rng.gen_bool(0.35) { "broken" } else { "ok" };
                let k = rng.gen_range(1..=4);
                let mut types: Vec<&str> = TYPES.choose_multiple(&mut rng, k).copied().collect();
                types.sort();
                let mut body = json!({"url": format!("http://{}/{dir}/hook-{n}", receiver.addr), "types": types});
                if rng.gen_bool(0.12) {
                    if rng.gen_bool(0.5) {
                        body["types"] = json!(["no.such.type"]);
                    } else {
                        body["url"] = json!(format!("ftp://{}/hook-{n}", receiver.addr));
                    }
                }
                let o =
                    ctx.call(node, who, "hook_register", Method::POST, "/v1/webhooks", &token, Some(body), None).await;
                if let Outcome::Ok(v) = o
                    && let Some(id) = v["id"].as_str()
                {
                    hooks.push(id.to_string());
                }
            }
            18..30 => {
                ctx.call(node, who, "hook_list", Method::GET, "/v1/webhooks", &token, None, None).await;
            }
            30..42 if !id.is_empty() => {
                let p = format!("{base}/rotate");
                ctx.call(node, who, "hook_rotate", Method::POST, &p, &token, None, None).await;
            }
            42..60 if !id.is_empty() => {
                let (kind, p) = if rng.gen_bool(0.5) {
                    ("hook_disable", format!("{base}/disable"))
                } else {
                    ("hook_enable", format!("{base}/enable"))
                };
                ctx.call(node, who, kind, Method::POST, &p, &token, None, None).await;
            }
            60..78 if !id.is_empty() => {
                let p = format!("{base}/dead-letters");
                let letters = ctx.call(node, who, "hook_dead_letters", Method::GET, &p, &token, None, None).await;
                if rng.gen_bool(0.6) {
                    let seqs: Vec<u64> = match &letters {
                        Outcome::Ok(v) => {
                            v.as_array().into_iter().flatten().filter_map(|l| l["seq"].as_u64()).collect()
                        }
                        _ => Vec::new(),
                    };
                    let body = if rng.gen_bool(0.5) || seqs.is_empty() {
                        json!({})
                    } else {
                        json!({"seqs": seqs.iter().take(2).collect::<Vec<_>>()})
                    };
                    let p = format!("{base}/dead-letters/replay");
                    ctx.call(node, who, "hook_replay", Method::POST, &p, &token, Some(body), None).await;
                }
            }
            78..90 => {
                let Some(c) = &city else { continue };
                // The city as it is (a report with no error), or a file that is not a city.
                let (body, kind) = if rng.gen_bool(0.8) {
                    (c.clone(), "geojson_dry_run")
                } else {
                    (json!({"type": "Feature"}), "geojson_bad")
                };
                let p = "/v1/city/geojson?dry_run=true";
                ctx.call(node, who, kind, Method::POST, p, &token, Some(body), None).await;
            }
            90..94 => {
                let Some(c) = &city else { continue };
                let p = "/v1/city/geojson";
                ctx.call(node, who, "geojson_apply", Method::POST, p, &token, Some(c.clone()), None).await;
            }
            _ => {}
        }
    }
}

/// What the final read adds for these checks: the endpoints as served, and each one's
/// dead letters.
#[derive(Default)]
pub struct FinalHooks {
    pub served: Vec<Value>,
    pub dead_letters: BTreeMap<String, Vec<Value>>,
}

fn verify(secret: &str, h: &Hit) -> bool {
    let Some(key) = secret.strip_prefix("whsec_").and_then(|s| BASE64.decode(s).ok()) else { return false };
    let mut mac = Hmac::<sha2_digest010::Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{}.{}.{}", h.id, h.timestamp, h.body).as_bytes());
    let want = format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()));
    h.signature.split(' ').any(|s| s == want)
}

fn path_id(op: &Op) -> String {
    op.args["path"].as_str().unwrap_or("").split('/').nth(3).unwrap_or("").to_string()
}

/// `msg_<endpoint>_<seq>`
fn message(id: &str) -> Option<(String, u64)> {
    let rest = id.strip_prefix("msg_")?;
    let (ep, seq) = rest.rsplit_once('_')?;
    Some((ep.to_string(), seq.parse().ok()?))
}

/// The webhook and GeoJSON operations against the fold of the log, the endpoints served at
/// the end, and every request the receiver got.
pub fn check(ops: &[Op], fold: &Fold, fin: &FinalHooks, hits: &[Hit], ck: &mut Ck) -> BTreeMap<String, usize> {
    let mut stats = BTreeMap::new();
    let kind_at: HashMap<u64, &str> = fold.seq_kinds.iter().map(|(s, k)| (*s, k.as_str())).collect();
    let log_kind = |t: &str| muster::domain::webhooks::TYPES.iter().find(|(p, _)| *p == t).map(|(_, k)| *k);

    // Registrations: a 201 is in the log with its URL, types and secret; a refusal left no
    // endpoint; an unknown outcome at most one; no endpoint no one asked for.
    let mut urls: BTreeSet<String> = BTreeSet::new();
    for op in ops.iter().filter(|o| o.kind == "hook_register") {
        let url = op.args["body"]["url"].as_str().unwrap_or("").to_string();
        urls.insert(url.clone());
        let made: Vec<&String> = fold.hooks.iter().filter(|(_, h)| h.url == url).map(|(id, _)| id).collect();
        let t = Some(op.complete);
        match &op.outcome {
            Outcome::Ok(v) => {
                let id = v["id"].as_str().unwrap_or("");
                match fold.hooks.get(id) {
                    Some(h)
                        if h.url == url && h.secrets.first() == v["secret"].as_str().map(str::to_string).as_ref() =>
                    {
                        let want: BTreeSet<&str> = op.args["body"]["types"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(Value::as_str)
                            .collect();
                        let got: BTreeSet<&str> = h.types.iter().map(String::as_str).collect();
                        if want != got {
                            ck.bad(format!("webhook {id} registered for {want:?}, the log has {got:?}"), t, &[id]);
                        }
                    }
                    other => ck.bad(
                        format!("webhook {id} got 201 for {url}, the log has {:?}", other.map(|h| &h.url)),
                        t,
                        &[id],
                    ),
                }
            }
            Outcome::Fail(c) if !made.is_empty() => {
                ck.bad(format!("webhook registration refused {c}, yet the log has {made:?} for {url}"), t, &[]);
            }
            Outcome::Unknown(_) if made.len() > 1 => {
                ck.bad(format!("one registration of {url} made {made:?}"), t, &[]);
            }
            _ => {}
        }
    }
    for (id, h) in &fold.hooks {
        if !urls.contains(&h.url) {
            ck.bad(format!("webhook {id} ({}) in the log, registered by no one", h.url), None, &[id]);
        }
    }
    stats.insert("webhooks".into(), fold.hooks.len());

    // Rotations: the secret a 200 shows is one the log gave the endpoint.
    for op in ops.iter().filter(|o| o.kind == "hook_rotate") {
        let id = path_id(op);
        let t = Some(op.complete);
        match &op.outcome {
            Outcome::Ok(v) => {
                let secret = v["secret"].as_str().unwrap_or("").to_string();
                if !fold.hooks.get(&id).is_some_and(|h| h.secrets.contains(&secret)) {
                    ck.bad(format!("rotation of {id} got 200, its secret is not in the log"), t, &[&id]);
                }
            }
            Outcome::Fail(c) if c == "unknown_webhook" && fold.hooks.contains_key(&id) => {
                ck.bad(format!("rotation of {id} refused as unknown, the log has it"), t, &[&id]);
            }
            _ => {}
        }
    }

    // Disable and enable: the last one acknowledged holds (the deliverer may disable an
    // endpoint on its own after dead letters, never enable one); unknown ids stay unknown.
    let mut last: BTreeMap<String, &Op> = BTreeMap::new();
    for op in
        ops.iter().filter(|o| matches!(o.kind, "hook_disable" | "hook_enable" | "hook_replay" | "hook_dead_letters"))
    {
        let id = path_id(op);
        if op.outcome.is_ok() && !fold.hooks.contains_key(&id) {
            ck.bad(format!("{} of {id} got 200, no such webhook in the log", op.kind), Some(op.complete), &[&id]);
        }
        if matches!(op.kind, "hook_disable" | "hook_enable") && !matches!(op.outcome, Outcome::Fail(_)) {
            last.insert(id, op);
        }
    }
    for (id, op) in &last {
        let (Outcome::Ok(_), Some(h)) = (&op.outcome, fold.hooks.get(id)) else { continue };
        let t = Some(op.complete);
        if op.kind == "hook_disable" && h.active {
            ck.bad(format!("{id}: the last switch (disable) got 200, the log ends active"), t, &[id]);
        }
        if op.kind == "hook_enable" && !h.active && h.disabled_by.last().is_some_and(|r| r == "manual") {
            ck.bad(format!("{id}: the last switch (enable) got 200, the log ends disabled by command"), t, &[id]);
        }
    }
    let served: BTreeMap<String, &Value> =
        fin.served.iter().map(|v| (v["id"].as_str().unwrap_or("").to_string(), v)).collect();
    if served.keys().collect::<BTreeSet<_>>() != fold.hooks.keys().collect::<BTreeSet<_>>() {
        ck.bad(format!("webhooks served {:?}, in the log {:?}", served.keys(), fold.hooks.keys()), None, &[]);
    }
    for (id, h) in &fold.hooks {
        let Some(v) = served.get(id) else { continue };
        let state = if h.active { "active" } else { "disabled" };
        if v["state"] != state || v["url"] != h.url.as_str() {
            ck.bad(format!("{id}: served {} {}, the log {state} {}", v["state"], v["url"], h.url), None, &[id]);
        }
    }
    stats.insert(
        "webhooks disabled by the deliverer".into(),
        fold.hooks.values().filter(|h| h.disabled_by.iter().any(|r| r != "manual")).count(),
    );

    // Deliveries: each one to an endpoint of the log, at its URL, signed with a secret the
    // log gave it, of an event the log has at that seq, of a type the endpoint asked for,
    // after its registration; the same message id always carries the same body.
    let mut bodies: HashMap<&str, &str> = HashMap::new();
    for h in hits {
        let Some((ep, seq)) = message(&h.id) else {
            ck.bad(format!("the receiver got {} without a webhook-id of ours: {:?}", h.path, h.id), None, &[]);
            continue;
        };
        let Some(f) = fold.hooks.get(&ep) else {
            ck.bad(format!("delivery {} for an endpoint not in the log", h.id), None, &[&ep]);
            continue;
        };
        if !f.url.ends_with(&h.path) {
            ck.bad(format!("delivery {} went to {}, the endpoint is {}", h.id, h.path, f.url), None, &[&ep]);
        }
        if !f.secrets.iter().any(|s| verify(s, h)) {
            ck.bad(format!("delivery {} is not signed with any secret the log gave {ep}", h.id), None, &[&ep]);
        }
        let body: Value = serde_json::from_str(&h.body).unwrap_or(Value::Null);
        let t = body["type"].as_str().unwrap_or("");
        let logged = kind_at.get(&seq).copied();
        if log_kind(t).is_none() || logged != log_kind(t) || body["data"]["seq"] != json!(seq) {
            ck.bad(format!("delivery {} of type {t:?}: the log has {logged:?} at seq {seq}", h.id), None, &[&ep]);
        }
        if !f.types.iter().any(|x| x == t) || seq <= f.registered_seq {
            ck.bad(
                format!("delivery {} ({t}) to {ep}, which asked for {:?} from seq {}", h.id, f.types, f.registered_seq),
                None,
                &[&ep],
            );
        }
        if let Some(prev) = bodies.insert(h.id.as_str(), h.body.as_str())
            && prev != h.body
        {
            ck.bad(format!("message {} sent twice with different bodies", h.id), None, &[&ep]);
        }
    }
    stats.insert("webhook requests".into(), hits.len());
    stats.insert("webhook messages".into(), bodies.len());

    // Dead letters at the end: of events the log has, under their message id.
    let mut dead = 0;
    for (ep, letters) in &fin.dead_letters {
        for l in letters {
            dead += 1;
            let seq = l["seq"].as_u64().unwrap_or(0);
            let t = l["type"].as_str().unwrap_or("");
            if l["message_id"] != format!("msg_{ep}_{seq}").as_str() || kind_at.get(&seq).copied() != log_kind(t) {
                ck.bad(format!("{ep}: dead letter {l} does not match the log at seq {seq}"), None, &[ep]);
            }
        }
    }
    stats.insert("dead letters".into(), dead);

    // The city's GeoJSON: a dry run reports without changing anything, and the city as it
    // is has no error; an applied import is in the log, a refused one is not.
    let (mut applied, mut unknown) = (0, 0);
    for op in ops.iter().filter(|o| o.kind.starts_with("geojson_")) {
        let t = Some(op.complete);
        match (op.kind, &op.outcome) {
            ("geojson_dry_run", Outcome::Ok(v)) if v["applied"] != json!(false) || v["ok"] != json!(true) => {
                ck.bad(
                    format!("a dry run of the city as it is answered applied={} ok={}", v["applied"], v["ok"]),
                    t,
                    &[],
                );
            }
            ("geojson_bad", Outcome::Ok(_)) => ck.bad("a GeoJSON Feature posted as the city got 200".into(), t, &[]),
            ("geojson_apply", Outcome::Ok(v)) => {
                applied += 1;
                if v["applied"] != json!(true) {
                    ck.bad(format!("an import got 200 with applied={}", v["applied"]), t, &[]);
                }
            }
            ("geojson_apply", Outcome::Unknown(_)) => unknown += 1,
            _ => {}
        }
    }
    // The first import is the run's own PUT /v1/city.
    let imports = fold.kinds.get("city_imported").copied().unwrap_or(0).saturating_sub(1);
    if imports < applied || imports > applied + unknown {
        ck.bad(format!("{imports} city imports in the log; {applied} got 200 and {unknown} ended unknown"), None, &[]);
    }
    stats.insert("city imports applied".into(), imports);
    stats
}

/// Can these checks fail? A made-up history, log, final read and receiver with one anomaly
/// of each kind planted; every one is reported.
#[test]
fn the_hook_checks_report_planted_anomalies() {
    use super::client::Ctx;
    let ctx = Ctx::new(vec!["127.0.0.1:1".into()], 0);
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let url = "http://127.0.0.1:9/ok/hook-1";
    let at = ctx.start_ms + 100;
    let events = vec![
        (
            1,
            at,
            "command".to_string(),
            json!({"type": "webhook_registered", "webhook_id": "wh-1", "url": url,
            "types": ["incident.raised"], "district_id": null, "secret": secret}),
        ),
        (
            2,
            at,
            "staff:c001".to_string(),
            json!({"type": "incident_raised", "incident_id": "inc-000001", "level": "III", "headcount": 1}),
        ),
        (
            3,
            at,
            "command".to_string(),
            json!({"type": "webhook_disabled", "webhook_id": "wh-1", "district_id": null, "reason": "manual"}),
        ),
        (4, at, "command".to_string(), json!({"type": "city_imported", "city": {"members": []}})),
        (5, at, "command".to_string(), json!({"type": "city_imported", "city": {"members": []}})),
    ];
    let fold = Fold::run(&events);
    let rec = |kind: &'static str, path: &str, body: Value, o: Outcome| {
        ctx.record("admin", kind, json!({"path": path, "method": "POST", "body": body}), 10, o);
    };
    rec(
        "hook_register",
        "/v1/webhooks",
        json!({"url": url, "types": ["incident.raised"]}),
        Outcome::Ok(json!({"id": "wh-1", "secret": secret})),
    );
    // refused, yet in the log under another id? no: a refusal of a URL the log has
    rec(
        "hook_register",
        "/v1/webhooks",
        json!({"url": url, "types": ["mode.switched"]}),
        Outcome::Fail("invalid_webhook".into()),
    );
    rec("hook_rotate", "/v1/webhooks/wh-1/rotate", Value::Null, Outcome::Ok(json!({"secret": "whsec_AAAA"})));
    rec("hook_enable", "/v1/webhooks/wh-1/enable", Value::Null, Outcome::Ok(json!({})));
    rec("hook_replay", "/v1/webhooks/wh-999999/dead-letters/replay", json!({}), Outcome::Ok(json!({"replayed": 0})));
    rec(
        "geojson_dry_run",
        "/v1/city/geojson?dry_run=true",
        json!({}),
        Outcome::Ok(json!({"applied": true, "ok": true})),
    );
    let ops = ctx.ops.lock().unwrap().clone();
    let fin = FinalHooks { served: vec![json!({"id": "wh-1", "url": url, "state": "active"})], ..Default::default() };
    // One delivery signed with a secret the log never gave, of an event it does not have.
    let body = json!({"type": "incident.raised", "data": {"seq": 3}}).to_string();
    let hits = vec![Hit {
        path: "/ok/hook-1".into(),
        id: "msg_wh-1_3".into(),
        timestamp: "1".into(),
        signature: "v1,bm90IGEgc2lnbmF0dXJl".into(),
        body,
    }];
    let mut ck = Ck::default();
    check(&ops, &fold, &fin, &hits, &mut ck);
    let all: Vec<String> = ck.out.iter().map(|a| a.what.clone()).collect();
    for want in [
        "webhook registration refused invalid_webhook, yet the log has",
        "rotation of wh-1 got 200, its secret is not in the log",
        "wh-1: the last switch (enable) got 200, the log ends disabled by command",
        "hook_replay of wh-999999 got 200, no such webhook in the log",
        "wh-1: served \"active\"",
        "is not signed with any secret the log gave wh-1",
        "the log has Some(\"webhook_disabled\") at seq 3",
        "a dry run of the city as it is answered applied=true",
        "1 city imports in the log; 0 got 200 and 0 ended unknown",
    ] {
        assert!(all.iter().any(|a| a.contains(want)), "not reported: {want}\nreported: {all:#?}");
    }
}
