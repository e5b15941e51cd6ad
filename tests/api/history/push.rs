//! Web Push in the history run (issue 18's feature, issue 21's rule): some of the on-call
//! members' browsers subscribe to a push service of the test's own (a loopback receiver
//! that takes every push with 201 and counts it), list their subscriptions, unsubscribe and
//! subscribe again; sometimes with keys that are not a P-256 point, an endpoint that is not
//! http, or an unsubscription of an endpoint never subscribed. The members are the run's
//! own (`ops::member`), who let some offers lapse, so offers are pushed. `check` holds the
//! operations against the log and the subscriptions served at the end, and every push the
//! log tried against the subscriptions at the time.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use muster::gateway::auth::Role;
use p256::elliptic_curve::sec1::ToEncodedPoint;
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

/// How many of the run's members have browsers that subscribe.
const MEMBERS: usize = 6;

/// The settings the run's nodes need for push: one VAPID key for every node, loopback
/// allowed, offers pushed 0.5 s after they are sent when unanswered, short backoffs.
pub fn env() -> Vec<(String, String)> {
    let (private, _) = muster::push::vapid::generate();
    [
        ("MUSTER_PUSH__VAPID_PRIVATE_KEY", format!("\"{private}\"")),
        ("MUSTER_PUSH__ALLOW_CIDRS", r#"["127.0.0.0/8"]"#.to_string()),
        ("MUSTER_PUSH__ACK_WAIT_MS", "500".to_string()),
        ("MUSTER_PUSH__ATTEMPTS", "2".to_string()),
        ("MUSTER_PUSH__BACKOFF_BASE_MS", "50".to_string()),
        ("MUSTER_PUSH__BACKOFF_MAX_MS", "200".to_string()),
        ("MUSTER_PUSH__POLL_MS", "50".to_string()),
        ("MUSTER_PUSH__TIMEOUT_MS", "1000".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// The push service: the path of every push it took.
#[derive(Clone)]
pub struct Service {
    pub origin: String,
    pub hits: Arc<Mutex<Vec<String>>>,
}

impl Service {
    pub async fn start() -> Service {
        let hits: Arc<Mutex<Vec<String>>> = Arc::default();
        let h = hits.clone();
        let addr = loopback(move |req| {
            h.lock().unwrap().push(req.path.clone());
            LoopbackReply::status(201).header("location", "/message/1")
        })
        .await;
        Service { origin: format!("http://{addr}"), hits }
    }
}

/// The members whose browsers subscribe.
pub fn members(world: &World) -> Vec<String> {
    world.members.iter().step_by(world.members.len() / MEMBERS).take(MEMBERS).map(|m| m.id.clone()).collect()
}

fn keys() -> Value {
    let secret = p256::SecretKey::random(&mut rand::rngs::OsRng);
    let auth: [u8; 16] = rand::random();
    json!({"p256dh": B64.encode(secret.public_key().to_encoded_point(false).as_bytes()), "auth": B64.encode(auth)})
}

pub async fn browsers(ctx: Shared, world: Arc<World>, service: Service, seed: u64, node: usize) {
    let mut rng = StdRng::seed_from_u64(seed);
    let members = members(&world);
    // member → endpoints it has used
    let mut endpoints: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut n = 0;
    while !ctx.over() {
        n += 1;
        let m = members.choose(&mut rng).unwrap().clone();
        let who = format!("member:{m}");
        let token = ctx.token(Role::Member, Some(&m));
        let mine = endpoints.entry(m.clone()).or_default();
        match rng.gen_range(0..100) {
            0..40 => {
                let endpoint = match mine.choose(&mut rng) {
                    Some(e) if rng.gen_bool(0.3) => e.clone(),
                    _ => format!("{}/push/{m}/{n}", service.origin),
                };
                let mut body = json!({"endpoint": endpoint, "expirationTime": null, "keys": keys()});
                if rng.gen_bool(0.12) {
                    if rng.gen_bool(0.5) {
                        body["keys"]["p256dh"] = json!(B64.encode([4u8; 65]));
                    } else {
                        body["endpoint"] = json!(format!("ftp://127.0.0.1/push/{m}/{n}"));
                    }
                }
                let p = "/v1/push/subscriptions";
                let o = ctx.call(node, &who, "push_subscribe", Method::POST, p, &token, Some(body), None).await;
                if !matches!(o, Outcome::Fail(_)) && !mine.contains(&endpoint) {
                    mine.push(endpoint);
                }
            }
            40..62 => {
                ctx.call(node, &who, "push_list", Method::GET, "/v1/push/subscriptions", &token, None, None).await;
            }
            62..92 => {
                let endpoint = match mine.choose(&mut rng) {
                    Some(e) if rng.gen_bool(0.9) => e.clone(),
                    _ => format!("{}/push/{m}/never", service.origin),
                };
                let body = json!({"endpoint": endpoint});
                let p = "/v1/push/subscriptions";
                ctx.call(node, &who, "push_unsubscribe", Method::DELETE, p, &token, Some(body), None).await;
            }
            _ => {
                ctx.call(node, &who, "push_key", Method::GET, "/v1/push/key", &token, None, None).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(rng.gen_range(200..600))).await;
    }
}

// ---------------------------------------------------------------- the fold

/// A subscription as the log has it.
#[derive(Debug, Clone, Default)]
pub struct FSub {
    pub member: String,
    pub endpoint: String,
    pub active: bool,
    /// (seq, subscribed?) of every change, in order
    pub changes: Vec<(u64, bool)>,
    pub reasons: Vec<String>,
}

#[derive(Debug, Default)]
pub struct PushFold {
    pub subs: BTreeMap<String, FSub>,
    /// (log seq, message seq, subscription, kind) of every try
    pub attempts: Vec<(u64, u64, String, String)>,
}

fn s(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

impl PushFold {
    pub fn run(events: &[LogEvent]) -> PushFold {
        let mut f = PushFold::default();
        for (seq, _, _, b) in events {
            match b["type"].as_str().unwrap_or_default() {
                "push_subscribed" => {
                    let x = f.subs.entry(s(&b["subscription_id"])).or_default();
                    x.member = s(&b["member_id"]);
                    x.endpoint = s(&b["endpoint"]);
                    x.active = true;
                    x.changes.push((*seq, true));
                }
                "push_unsubscribed" => {
                    let x = f.subs.entry(s(&b["subscription_id"])).or_default();
                    x.active = false;
                    x.changes.push((*seq, false));
                    x.reasons.push(s(&b["reason"]));
                }
                "push_attempted" => {
                    let id = s(&b["message_id"]);
                    let message =
                        id.strip_prefix("push_").and_then(|r| r.split('_').next()).and_then(|x| x.parse().ok());
                    f.attempts.push((*seq, message.unwrap_or(0), s(&b["subscription_id"]), s(&b["kind"])));
                }
                _ => {}
            }
        }
        f
    }
}

// ---------------------------------------------------------------- the checks

/// What the final read adds: each subscribing member's own list.
#[derive(Default)]
pub struct FinalPush {
    pub lists: BTreeMap<String, Vec<Value>>,
    pub hits: Vec<String>,
}

pub fn check(ops: &[Op], fold: &PushFold, fin: &FinalPush, ck: &mut Ck) -> BTreeMap<String, usize> {
    let mut stats = BTreeMap::new();
    // (member, endpoint) → the subscribe and unsubscribe operations, in order
    let mut by_endpoint: BTreeMap<(String, String), Vec<&Op>> = BTreeMap::new();
    for op in ops.iter().filter(|o| o.kind == "push_subscribe" || o.kind == "push_unsubscribe") {
        let t = Some(op.complete);
        let member = op.process.trim_start_matches("member:").to_string();
        let endpoint = s(&op.args["body"]["endpoint"]);
        let id = muster::domain::push::subscription_id(&endpoint);
        let sub = fold.subs.get(&id);
        let subscribed = sub.is_some_and(|x| x.member == member && x.changes.iter().any(|c| c.1));
        let asked = |ok_only: bool| {
            ops.iter().any(|o| {
                o.kind == "push_subscribe"
                    && if ok_only {
                        o.outcome.is_ok() && o.complete < op.invoke
                    } else {
                        !matches!(o.outcome, Outcome::Fail(_))
                    }
                    && o.args["body"]["endpoint"] == endpoint.as_str()
            })
        };
        let bad = match (op.kind, &op.outcome) {
            ("push_subscribe", Outcome::Ok(v)) if v["id"] != id.as_str() || !subscribed => {
                Some(format!("{member}'s subscription {} got 201, the log has {sub:?}", v["id"]))
            }
            // Refused as invalid: the body was bad, and no one asked with that endpoint
            // and a good body.
            ("push_subscribe", Outcome::Fail(c)) if c.starts_with("invalid") && subscribed && !asked(false) => {
                Some(format!("{member}'s subscription of {endpoint} refused {c}, the log has it"))
            }
            ("push_unsubscribe", Outcome::Ok(_)) if sub.is_none_or(|x| !x.changes.iter().any(|c| !c.1)) => {
                Some(format!("{member}'s unsubscription of {id} got 204, the log never removed it"))
            }
            // Unknown is right when it was not subscribed at that moment: only an endpoint
            // subscribed (201) before and never removed is flagged.
            ("push_unsubscribe", Outcome::Fail(c))
                if c == "unknown_push_subscription"
                    && subscribed
                    && sub.is_some_and(|x| x.active && x.changes.len() == 1)
                    && asked(true) =>
            {
                Some(format!("{member}'s unsubscription of {id} refused as unknown while subscribed"))
            }
            _ => None,
        };
        if let Some(what) = bad {
            ck.bad(what, t, &[&id, &member]);
        }
        if !matches!(op.outcome, Outcome::Fail(_)) {
            by_endpoint.entry((member, endpoint)).or_default().push(op);
        }
    }
    // The last acknowledged change holds, unless an unknown one came after it, or the
    // server removed the subscription itself (gone, replaced) after it.
    for ((member, endpoint), list) in &by_endpoint {
        let Some(last) = list.iter().filter(|o| o.outcome.is_ok()).max_by_key(|o| o.complete) else { continue };
        if list.iter().any(|o| o.id != last.id && o.complete > last.invoke) {
            continue;
        }
        let id = muster::domain::push::subscription_id(endpoint);
        let listed = fin.lists.get(member).is_some_and(|l| l.iter().any(|v| v["id"] == id.as_str()));
        let sub = fold.subs.get(&id);
        let removed_by_server = sub.is_some_and(|x| x.reasons.last().is_some_and(|r| r != "member") && !x.active);
        if last.kind == "push_subscribe" && !listed && !removed_by_server {
            ck.bad(
                format!("{member}'s subscription {id} got 201 last, it is not listed at the end"),
                Some(last.complete),
                &[&id],
            );
        }
        if last.kind == "push_unsubscribe" && listed {
            ck.bad(
                format!("{member} unsubscribed {id} (204) last, it is listed at the end"),
                Some(last.complete),
                &[&id],
            );
        }
    }
    // Served = folded: each member's list is the log's active subscriptions of theirs.
    for (member, list) in &fin.lists {
        let served: BTreeSet<String> = list.iter().map(|v| s(&v["id"])).collect();
        let mine: BTreeSet<String> =
            fold.subs.iter().filter(|(_, x)| x.active && &x.member == member).map(|(k, _)| k.clone()).collect();
        if served != mine {
            ck.bad(format!("{member}'s subscriptions served {served:?}, in the log {mine:?}"), None, &[member]);
        }
    }
    // No push to a subscription removed before the event it pushes.
    for (seq, message, id, kind) in &fold.attempts {
        let Some(x) = fold.subs.get(id) else {
            ck.bad(format!("log seq {seq}: a push to {id}, which the log never subscribed"), None, &[id]);
            continue;
        };
        // The subscription's state when the push was tried: removed before the event it
        // pushes was even logged (and not back since) is an anomaly; removed after it,
        // the push may have been on its way.
        let before = x.changes.iter().rev().find(|(q, _)| q < seq).copied();
        if matches!(before, Some((removed, false)) if removed < *message) {
            ck.bad(
                format!("log seq {seq}: {kind} of seq {message} pushed to {id}, not subscribed then ({:?})", x.changes),
                None,
                &[id],
            );
        }
    }
    // Every push the service got went to an endpoint the log subscribed.
    let paths: BTreeSet<String> =
        fold.subs.values().filter_map(|x| url::Url::parse(&x.endpoint).ok().map(|u| u.path().to_string())).collect();
    for p in &fin.hits {
        if !paths.contains(p) {
            ck.bad(format!("the push service got a push at {p}, which the log never subscribed"), None, &[]);
        }
    }
    stats.insert("push subscriptions".into(), fold.subs.len());
    stats.insert("push attempts".into(), fold.attempts.len());
    stats.insert("pushes received".into(), fin.hits.len());
    stats
}

/// Can these checks fail? A made-up log and history with a lost 201, an unsubscription
/// whose subscription is listed at the end, a push of an offer sent after the removal, and
/// a push the service got at an endpoint nobody subscribed: all are reported.
#[test]
fn the_push_checks_report_planted_anomalies() {
    use super::client::Ctx;
    let ctx = Ctx::new(vec!["127.0.0.1:1".into()], 0);
    let (a, b) = ("http://127.0.0.1:9/push/m1/1", "http://127.0.0.1:9/push/m1/2");
    let (ida, idb) = (muster::domain::push::subscription_id(a), muster::domain::push::subscription_id(b));
    let at = ctx.start_ms;
    let events = vec![
        (
            1,
            at,
            "m1".to_string(),
            json!({"type": "push_subscribed", "member_id": "m1", "subscription_id": ida, "endpoint": a}),
        ),
        (
            2,
            at,
            "m1".to_string(),
            json!({"type": "push_unsubscribed", "member_id": "m1", "subscription_id": ida, "reason": "member"}),
        ),
        (3, at, "sys".to_string(), json!({"type": "offer_sent"})),
        (
            4,
            at,
            "sys".to_string(),
            json!({"type": "push_attempted", "message_id": format!("push_3_{ida}"), "subscription_id": ida, "kind": "offer"}),
        ),
    ];
    let fold = PushFold::run(&events);
    let rec = |kind: &'static str, endpoint: &str, o: Outcome| {
        ctx.record("member:m1", kind, json!({"path": "/v1/push/subscriptions", "body": {"endpoint": endpoint}}), 10, o);
    };
    rec("push_subscribe", a, Outcome::Ok(json!({"id": ida})));
    rec("push_unsubscribe", a, Outcome::Ok(Value::Null));
    rec("push_subscribe", b, Outcome::Ok(json!({"id": idb})));
    let ops = ctx.ops.lock().unwrap().clone();
    let fin = FinalPush {
        lists: BTreeMap::from([("m1".to_string(), vec![json!({"id": ida})])]),
        hits: vec!["/push/m9/1".to_string()],
    };
    let mut ck = Ck::default();
    check(&ops, &fold, &fin, &mut ck);
    let all: Vec<String> = ck.out.iter().map(|a| a.what.clone()).collect();
    for want in [
        format!("m1's subscription \"{idb}\" got 201, the log has None"),
        format!("m1 unsubscribed {ida} (204) last, it is listed at the end"),
        format!("offer of seq 3 pushed to {ida}, not subscribed then"),
        "got a push at /push/m9/1".to_string(),
    ] {
        assert!(all.iter().any(|x| x.contains(&want)), "not reported: {want}\nreported: {all:#?}");
    }
}
