//! An independent fold of the event log: the log read straight from the store (SQLite's
//! `events` table or the Redis stream), its JSON folded here into incidents, offers,
//! mobilizations, orders and modes, without any of muster's domain code. Invariants that
//! must hold at every step are checked on the way.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use serde_json::Value;

/// (seq, at in ms since the epoch, actor, body)
pub type LogEvent = (u64, i64, String, Value);

pub fn read_sqlite(db: &Path) -> Vec<LogEvent> {
    let conn = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let mut stmt = conn.prepare("SELECT seq, at, actor, body FROM events ORDER BY seq").unwrap();
    stmt.query_map([], |r| {
        let body: String = r.get(3)?;
        Ok((r.get::<_, i64>(0)? as u64, r.get(1)?, r.get(2)?, serde_json::from_str(&body).unwrap()))
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

/// Every entry of `{p}:log`: field `e` holds the batch as `[[seq, at, actor, body], ..]`.
pub fn read_redis(url: &str, log_key: &str) -> Vec<LogEvent> {
    let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
    let mut out = Vec::new();
    let mut after = "-".to_string();
    loop {
        let entries: Vec<(String, Vec<(String, String)>)> =
            redis::cmd("XRANGE").arg(log_key).arg(&after).arg("+").arg("COUNT").arg(500).query(&mut c).unwrap();
        let Some(last) = entries.last() else { break };
        after = format!("({}", last.0);
        for (_, fields) in entries {
            for (f, v) in fields {
                if f == "e" {
                    let rows: Vec<(u64, i64, String, Value)> = serde_json::from_str(&v).unwrap();
                    out.extend(rows);
                }
            }
        }
    }
    out
}

#[derive(Debug, Clone, PartialEq)]
pub struct FOffer {
    pub member: String,
    pub state: String,
    pub expires_at: i64,
}

#[derive(Debug, Clone)]
pub struct FIncident {
    pub status: String,
    pub level: String,
    pub headcount: u64,
    pub note: Option<String>,
    pub offers: BTreeMap<String, FOffer>,
    pub whistles: usize,
}

impl FIncident {
    pub fn accepted(&self) -> u64 {
        self.offers.values().filter(|o| o.state == "accepted" || o.state == "arrived").count() as u64
    }
    pub fn closed(&self) -> bool {
        self.status == "resolved" || self.status == "cancelled"
    }
}

#[derive(Debug, Clone, Default)]
pub struct FMobilization {
    pub closed: bool,
    pub note: Option<String>,
    /// member → ordered, acknowledged or reported
    pub members: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default)]
pub struct FOrder {
    pub cancelled: bool,
    pub slots: u64,
    pub title: String,
    /// member → assigned
    pub claims: BTreeMap<String, bool>,
    pub checked_in: BTreeSet<String>,
    pub checked_out: BTreeSet<String>,
}

/// A webhook endpoint as the log has it.
#[derive(Debug, Clone, Default)]
pub struct FHook {
    pub url: String,
    pub types: Vec<String>,
    pub active: bool,
    /// Every secret it was given, the first at registration.
    pub secrets: Vec<String>,
    /// The reasons of its disablings, in order (`manual`: command's).
    pub disabled_by: Vec<String>,
    pub registered_seq: u64,
}

#[derive(Debug, Default)]
pub struct Fold {
    pub events: usize,
    pub last_seq: u64,
    pub incidents: BTreeMap<String, FIncident>,
    pub offer_incident: HashMap<String, String>,
    pub mobilizations: BTreeMap<String, FMobilization>,
    pub orders: BTreeMap<String, FOrder>,
    /// district (None: the city) → mode
    pub modes: BTreeMap<Option<String>, String>,
    pub duty: HashMap<String, Vec<bool>>,
    pub transfers: Vec<(String, String, Vec<String>)>,
    /// (order or offer id, member)
    pub rated: Vec<(String, String)>,
    pub team_members: HashMap<String, Vec<String>>,
    /// sign-in link → how many times it was redeemed (a link works once)
    pub invitations: BTreeMap<String, usize>,
    pub hooks: BTreeMap<String, FHook>,
    /// (seq, kind) of every event, for the audit trail's check
    pub seq_kinds: Vec<(u64, String)>,
    pub kinds: BTreeMap<String, usize>,
    /// (seq, at, what): an invariant broken at that point of the log.
    pub violations: Vec<(u64, i64, String)>,
}

fn s(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

impl Fold {
    pub fn run(events: &[LogEvent]) -> Fold {
        let mut f = Fold::default();
        for (seq, at, _actor, body) in events {
            if f.events > 0 && *seq != f.last_seq + 1 {
                f.violations.push((*seq, *at, format!("the log jumps from seq {} to {seq}", f.last_seq)));
            }
            f.events += 1;
            f.last_seq = *seq;
            f.apply(*seq, *at, body);
        }
        f
    }

    fn bad(&mut self, seq: u64, at: i64, what: String) {
        self.violations.push((seq, at, what));
    }

    /// The open assignments (accepted or arrived offers on incidents not closed) of a member.
    fn assignments(&self, member: &str) -> Vec<String> {
        let mut out = Vec::new();
        for (id, inc) in &self.incidents {
            if inc.closed() {
                continue;
            }
            for (oid, o) in &inc.offers {
                if o.member == member && (o.state == "accepted" || o.state == "arrived") {
                    out.push(format!("{id}/{oid}"));
                }
            }
        }
        out
    }

    fn offer_state(&mut self, seq: u64, at: i64, b: &Value, from: &[&str], to: &str) {
        let (inc_id, offer_id) = (s(&b["incident_id"]), s(&b["offer_id"]));
        let Some(inc) = self.incidents.get_mut(&inc_id) else {
            return self.bad(seq, at, format!("{to}: unknown incident {inc_id}"));
        };
        let Some(o) = inc.offers.get_mut(&offer_id) else {
            return self.bad(seq, at, format!("{to}: unknown offer {offer_id}"));
        };
        let was = o.state.clone();
        o.state = to.to_string();
        if !from.contains(&was.as_str()) {
            self.bad(seq, at, format!("offer {offer_id} of {inc_id} went from {was} to {to}"));
        }
    }

    fn apply(&mut self, seq: u64, at: i64, b: &Value) {
        // Residents' events are one type with an `op` inside; the audit names them by it.
        let kind = match s(&b["type"]).as_str() {
            "residents" => s(&b["event"]["op"]),
            k => k.to_string(),
        };
        *self.kinds.entry(kind.clone()).or_default() += 1;
        self.seq_kinds.push((seq, kind.clone()));
        match kind.as_str() {
            "webhook_registered" => {
                let id = s(&b["webhook_id"]);
                let hook = FHook {
                    url: s(&b["url"]),
                    types: b["types"].as_array().into_iter().flatten().map(s).collect(),
                    active: true,
                    secrets: vec![s(&b["secret"])],
                    disabled_by: Vec::new(),
                    registered_seq: seq,
                };
                if self.hooks.insert(id.clone(), hook).is_some() {
                    self.bad(seq, at, format!("webhook {id} registered twice"));
                }
            }
            "webhook_enabled" | "webhook_disabled" | "webhook_secret_rotated" | "webhook_deleted" => {
                let id = s(&b["webhook_id"]);
                let Some(h) = self.hooks.get_mut(&id) else {
                    return self.bad(seq, at, format!("{kind}: unknown webhook {id}"));
                };
                match kind.as_str() {
                    "webhook_enabled" => h.active = true,
                    "webhook_disabled" => {
                        h.active = false;
                        h.disabled_by.push(s(&b["reason"]));
                    }
                    "webhook_secret_rotated" => h.secrets.push(s(&b["secret"])),
                    _ => {
                        self.hooks.remove(&id);
                    }
                }
            }
            "invitation_issued" => {
                self.invitations.insert(s(&b["invitation_id"]), 0);
            }
            "invitation_redeemed" => {
                let id = s(&b["invitation_id"]);
                let times = self.invitations.get_mut(&id).map(|n| {
                    *n += 1;
                    *n
                });
                match times {
                    Some(n) if n > 1 => self.bad(seq, at, format!("sign-in link {id} redeemed {n} times")),
                    Some(_) => {}
                    None => self.bad(seq, at, format!("sign-in link {id} redeemed but never issued")),
                }
            }
            "city_imported" => {
                self.team_members.clear();
                for m in b["city"]["members"].as_array().into_iter().flatten() {
                    if let Some(t) = m["team_id"].as_str() {
                        self.team_members.entry(t.to_string()).or_default().push(s(&m["id"]));
                    }
                }
            }
            "members_registered" => {
                for m in b["members"].as_array().into_iter().flatten() {
                    let id = s(&m["id"]);
                    if let Some(t) = m["team_id"].as_str() {
                        let list = self.team_members.entry(t.to_string()).or_default();
                        if !list.contains(&id) {
                            list.push(id);
                        }
                    }
                }
            }
            "incident_raised" => {
                let id = s(&b["incident_id"]);
                if self.incidents.contains_key(&id) {
                    self.bad(seq, at, format!("incident {id} raised twice"));
                }
                self.incidents.insert(
                    id,
                    FIncident {
                        status: "open".into(),
                        level: s(&b["level"]),
                        headcount: b["headcount"].as_u64().unwrap_or(0),
                        note: b["note"].as_str().map(str::to_string),
                        offers: BTreeMap::new(),
                        whistles: 0,
                    },
                );
            }
            "offer_sent" => {
                let (inc_id, offer_id, member) = (s(&b["incident_id"]), s(&b["offer_id"]), s(&b["member_id"]));
                if self.offer_incident.insert(offer_id.clone(), inc_id.clone()).is_some() {
                    self.bad(seq, at, format!("offer id {offer_id} sent twice"));
                }
                let Some(inc) = self.incidents.get_mut(&inc_id) else {
                    return self.bad(seq, at, format!("offer {offer_id} for unknown incident {inc_id}"));
                };
                if inc.closed() {
                    let st = inc.status.clone();
                    self.bad(seq, at, format!("offer {offer_id} sent on {st} incident {inc_id}"));
                }
                let inc = self.incidents.get_mut(&inc_id).unwrap();
                if inc.offers.values().any(|o| o.member == member) {
                    self.bad(seq, at, format!("{member} offered {inc_id} twice"));
                }
                let inc = self.incidents.get_mut(&inc_id).unwrap();
                let expires_at = b["expires_at"].as_i64().unwrap_or(0);
                inc.offers.insert(offer_id, FOffer { member, state: "offered".into(), expires_at });
            }
            "offer_accepted" => {
                let (inc_id, offer_id, member) = (s(&b["incident_id"]), s(&b["offer_id"]), s(&b["member_id"]));
                if let Some(o) = self.incidents.get(&inc_id).and_then(|i| i.offers.get(&offer_id))
                    && at >= o.expires_at
                {
                    let e = o.expires_at;
                    self.bad(seq, at, format!("offer {offer_id} accepted at {at}, at or after its expiry {e}"));
                }
                if let Some(inc) = self.incidents.get(&inc_id)
                    && inc.status != "open"
                {
                    let st = inc.status.clone();
                    self.bad(seq, at, format!("offer {offer_id} accepted on a {st} incident {inc_id}"));
                }
                let held = self.assignments(&member);
                if !held.is_empty() {
                    self.bad(seq, at, format!("{member} accepts {inc_id}/{offer_id} while assigned to {held:?}"));
                }
                self.offer_state(seq, at, b, &["offered"], "accepted");
                if let Some(inc) = self.incidents.get(&inc_id)
                    && inc.accepted() > inc.headcount
                {
                    let (a, h) = (inc.accepted(), inc.headcount);
                    self.bad(seq, at, format!("{inc_id}: {a} accepted over headcount {h}"));
                }
            }
            "offer_declined" => self.offer_state(seq, at, b, &["offered"], "declined"),
            "offer_expired" => self.offer_state(seq, at, b, &["offered"], "expired"),
            "offer_revoked" => self.offer_state(seq, at, b, &["offered"], "revoked"),
            "member_arrived" => self.offer_state(seq, at, b, &["accepted", "arrived"], "arrived"),
            "incident_filled" => {
                let id = s(&b["incident_id"]);
                if let Some(inc) = self.incidents.get_mut(&id) {
                    if inc.accepted() != inc.headcount || inc.status != "open" {
                        let (a, h, st) = (inc.accepted(), inc.headcount, inc.status.clone());
                        self.bad(seq, at, format!("{id} filled with {a} of {h} accepted, status {st}"));
                    }
                    let inc = self.incidents.get_mut(&id).unwrap();
                    inc.status = "filled".into();
                }
            }
            "incident_escalated" => {
                let id = s(&b["incident_id"]);
                if let Some(inc) = self.incidents.get_mut(&id) {
                    if inc.level != s(&b["from"]) {
                        let l = inc.level.clone();
                        self.bad(seq, at, format!("{id} escalated from {} but was at {l}", s(&b["from"])));
                    }
                    let inc = self.incidents.get_mut(&id).unwrap();
                    inc.level = s(&b["to"]);
                }
            }
            "units_whistled" => {
                if let Some(inc) = self.incidents.get_mut(&s(&b["incident_id"])) {
                    inc.whistles += 1;
                }
            }
            "incident_resolved" | "incident_cancelled" => {
                let id = s(&b["incident_id"]);
                let to = if kind == "incident_resolved" { "resolved" } else { "cancelled" };
                match self.incidents.get_mut(&id) {
                    None => self.bad(seq, at, format!("{to}: unknown incident {id}")),
                    Some(inc) if inc.closed() => {
                        let st = inc.status.clone();
                        self.bad(seq, at, format!("{id} {to} when already {st}"))
                    }
                    Some(inc) => inc.status = to.into(),
                }
            }
            "duty_changed" => {
                self.duty.entry(s(&b["member_id"])).or_default().push(b["on_call"].as_bool().unwrap_or(false));
            }
            "mode_switched" => {
                self.modes.insert(b["district_id"].as_str().map(str::to_string), s(&b["mode"]));
            }
            "mobilization_ordered" => {
                let id = s(&b["mobilization_id"]);
                let mut m = FMobilization { note: b["note"].as_str().map(str::to_string), ..Default::default() };
                for t in b["teams"].as_array().into_iter().flatten() {
                    for member in self.team_members.get(&s(&t["team_id"])).into_iter().flatten() {
                        m.members.insert(member.clone(), "ordered".into());
                    }
                }
                if self.mobilizations.insert(id.clone(), m).is_some() {
                    self.bad(seq, at, format!("mobilization {id} ordered twice"));
                }
            }
            "mobilization_acknowledged" | "mobilization_reported" => {
                let (id, member) = (s(&b["mobilization_id"]), s(&b["member_id"]));
                let to = if kind == "mobilization_reported" { "reported" } else { "acknowledged" };
                let Some(m) = self.mobilizations.get_mut(&id) else {
                    return self.bad(seq, at, format!("{to}: unknown mobilization {id}"));
                };
                if m.closed {
                    self.bad(seq, at, format!("{member} {to} on closed mobilization {id}"));
                }
                let m = self.mobilizations.get_mut(&id).unwrap();
                match m.members.get_mut(&member) {
                    None => self.bad(seq, at, format!("{member} {to} on {id}, not ordered")),
                    Some(st) if st == "reported" && to == "acknowledged" => {}
                    Some(st) if st == to => self.bad(seq, at, format!("{member} {to} on {id} twice")),
                    Some(st) => *st = to.into(),
                }
            }
            "mobilization_closed" => {
                let id = s(&b["mobilization_id"]);
                match self.mobilizations.get_mut(&id) {
                    Some(m) if !m.closed => m.closed = true,
                    _ => self.bad(seq, at, format!("closing {id}: unknown or closed")),
                }
            }
            "members_transferred" => {
                let members = b["members"].as_array().into_iter().flatten().map(s).collect();
                self.transfers.push((s(&b["from"]), s(&b["to"]), members));
            }
            "order_posted" => {
                self.orders.insert(
                    s(&b["order_id"]),
                    FOrder { slots: b["slots"].as_u64().unwrap_or(0), title: s(&b["title"]), ..Default::default() },
                );
            }
            "order_claimed" => {
                let (id, member) = (s(&b["order_id"]), s(&b["member_id"]));
                let Some(o) = self.orders.get_mut(&id) else {
                    return self.bad(seq, at, format!("claim on unknown order {id}"));
                };
                let full = o.claims.len() as u64 >= o.slots;
                let twice = o.claims.insert(member.clone(), b["assigned"].as_bool().unwrap_or(false)).is_some();
                let cancelled = o.cancelled;
                if full || twice || cancelled {
                    self.bad(
                        seq,
                        at,
                        format!("{member} claimed {id}: full {full}, twice {twice}, cancelled {cancelled}"),
                    );
                }
            }
            "order_cancelled" => {
                if let Some(o) = self.orders.get_mut(&s(&b["order_id"])) {
                    o.cancelled = true;
                }
            }
            "checked_in" | "checked_out" => {
                let (id, member) = (s(&b["order_id"]), s(&b["member_id"]));
                let Some(o) = self.orders.get_mut(&id) else { return };
                if !o.claims.contains_key(&member) {
                    self.bad(seq, at, format!("{member} {kind} on {id} without a claim"));
                }
                let o = self.orders.get_mut(&id).unwrap();
                if kind == "checked_in" {
                    o.checked_in.insert(member);
                } else {
                    o.checked_out.insert(member);
                }
            }
            "rated" => {
                let task = b["order_id"].as_str().or(b["offer_id"].as_str()).unwrap_or_default().to_string();
                let member = s(&b["member_id"]);
                if self.rated.contains(&(task.clone(), member.clone())) {
                    self.bad(seq, at, format!("{member} rated twice for {task}"));
                }
                self.rated.push((task, member));
            }
            _ => {}
        }
    }
}
