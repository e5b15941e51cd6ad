//! The authorization matrix, with an oracle of its own (issue 16, item 5).
//!
//! The test builds its own small city on the demo geography and keeps a model of it: who
//! lives where, in which unit and team, which team is paired with which community, and
//! every incident, order and mobilization it creates. The expected answer of every call
//! comes from `Model`, the test's reading of the scope rules (docs/PROTOCOL.md, "Scope")
//! over those facts; nothing in `muster::domain` is asked.
//!
//! The city: district A with communities X and X2 on one street and W on another, district
//! B with Y and Y2. Units: U (an assault team paired with X, a work team with Y), V (Y), K
//! (X2), Z (W), Q (Y2), O (no team). Members live on both sides of their teams' pairings: P
//! lives in Y and serves X, L lives in X and serves Y, m00013 is U's but lives and serves in
//! B, S1..S4 are B's and are named by the writes that must not reach them.
//!
//! Five tokens (city command, command of A, staff of X, the admin of U, member M) call every
//! operation that GET /openapi.json lists (one the test has not classified fails it), with
//! objects of their own, of the other side and unknown ids: reads before and after the
//! writes, then the writes. Asserted, every mismatch collected and reported at the end:
//!
//! - status and problem `code` are the oracle's; lists, reports (JSON and CSV) and views
//!   hold exactly the rows in scope (a district command's view of a city-wide mobilization
//!   is cut to its part, a member's view of an order to their own claim, a rating answers
//!   the rating);
//! - a foreign id answers exactly like an unknown one (status, code, title, detail but for
//!   the id), and a member id taken outside the caller's scope like any taken id;
//! - allowed writes are sent, on objects made for them, and their effect is read back as
//!   city command; a refused write leaves everything city command can read unchanged,
//!   byte for byte (but for `duty_hours`, which moves with the clock);
//! - no 2xx body (JSON or CSV) and no websocket frame (live, and replayed from seq 0)
//!   carries the id of a member, unit, community, grid, order, incident, offer or
//!   mobilization outside the caller's scope, nor a position (lat or lng) of a member
//!   outside it. Public data is not searched: geography, the org directory, catalog, modes.
//!
//! Where the rules and the roles docs/PROTOCOL.md names leave a choice, the probe accepts
//! either answer and says so: a district command registering a unit that serves its
//! district (2xx or 404), staff or a member reading a unit report (403, or the rows in
//! scope), city command posting an order at no grid (422 unknown_grid or 403). Not
//! exercised as allowed writes: an exchange (nobody earns points in a test that does not
//! wait an hour: the scope passes, the balance refuses) and a transfer (no live proposal).
//!
//! Also: tokens naming a scope the city does not hold are refused (401) over HTTP and at
//! the websocket handshake; a socket of any role is closed when its token expires; a
//! revoked token is refused and its sockets closed.
//!
//! `MATRIX_TRACE=1` prints every call of the sweep and its answer.

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::Duration;

use muster::gateway::auth::{Claims, Role, TokenKeys};
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;

// ---------------------------------------------------------------- the fixture city

const U: &str = "u001";
const V: &str = "u002";
const K: &str = "u003";
const Z: &str = "u004";
const Q: &str = "u005";
const O: &str = "u006";
const T_UX: &str = "t0001";
const T_UY: &str = "t0002";
const T_VY: &str = "t0003";
const T_KX2: &str = "t0004";
const T_ZW: &str = "t0005";
const T_QY2: &str = "t0006";
/// Member M, whose token sweeps.
const M: &str = "m00001";
const M2: &str = "m00002";
/// Lives in Y, in U's team paired with X.
const P: &str = "m00003";
/// Lives in Y, in V's team paired with Y.
const N: &str = "m00004";
/// Lives in X, in V's team paired with Y.
const L: &str = "m00005";
const M7: &str = "m00007";
const M8: &str = "m00008";
const M9: &str = "m00009";
/// Lives in X, unit O, no team: the subject of the revocation.
const CANARY: &str = "m00010";
const M11: &str = "m00011";
const M14: &str = "m00014";
/// Members of Q living in Y2, named by writes that must not reach them.
const S: [&str; 4] = ["m00015", "m00016", "m00017", "m00018"];

const NO_MEMBER: &str = "m99999";
const NO_UNIT: &str = "u999";
const NO_TEAM: &str = "t9999";
const NO_COMMUNITY: &str = "c999";
const NO_GRID: &str = "c999-g9";
const NO_DISTRICT: &str = "d99";
const NO_INCIDENT: &str = "inc-999999";
const NO_ORDER: &str = "ord-99999";
const NO_MOBILIZATION: &str = "mob-9999";

/// The places, by the letters the header uses; ids from the demo geography.
#[derive(Clone, Default)]
struct Fx {
    da: String,
    db: String,
    x: String,
    x2: String,
    w: String,
    y: String,
    y2: String,
    /// Shared objects of the scenario.
    inc_x: String,
    inc_y: String,
    o_x: String,
    o_xskill: String,
    o_y: String,
    mob_a: String,
    mob_b: String,
    mob_all: String,
}

#[derive(Clone, Debug)]
struct MemberF {
    grid: String,
    unit: String,
    team: Option<String>,
    skills: Vec<String>,
}

#[derive(Clone, Debug)]
struct TeamF {
    unit: String,
    community: String,
    assault: bool,
}

#[derive(Clone, Debug, Default)]
struct IncF {
    community: String,
    /// (offer id, member id), as city command reads them.
    offers: Vec<(String, String)>,
    /// Units whistled.
    units: BTreeSet<String>,
}

#[derive(Clone, Debug, Default)]
struct OrdF {
    community: String,
    location: (f64, f64),
    skills: Vec<String>,
    /// Claimant -> the positions of their check-in and check-out.
    claims: BTreeMap<String, Vec<(f64, f64)>>,
}

#[derive(Clone, Debug, Default)]
struct MobF {
    /// (member, team, community reported to), from the teams' members when ordered.
    orders: Vec<(String, String, String)>,
}

/// The test's knowledge of the city and of what it did to it.
#[derive(Clone, Default)]
struct Model {
    district_of: BTreeMap<String, String>,
    community_of_grid: BTreeMap<String, String>,
    grids_of: BTreeMap<String, Vec<String>>,
    street_of: BTreeMap<String, String>,
    grid_center: BTreeMap<String, (f64, f64)>,
    units: BTreeSet<String>,
    teams: BTreeMap<String, TeamF>,
    members: BTreeMap<String, MemberF>,
    /// Every position a member has had (their record's, their stamps').
    positions: BTreeMap<String, Vec<(f64, f64)>>,
    incidents: BTreeMap<String, IncF>,
    orders: BTreeMap<String, OrdF>,
    mobs: BTreeMap<String, MobF>,
    registrations: BTreeSet<(String, String)>,
    /// Member -> the offer their record names.
    engaged: BTreeMap<String, String>,
    /// (from, to, members) of the proposals city command reads.
    proposals: Vec<(String, String, Vec<String>)>,
    wartime: BTreeMap<String, bool>,
    city_wartime: bool,
    /// Objects a write that should have been refused changed: left out of later checks.
    tainted: BTreeSet<String>,
}

/// Who a token speaks for.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Who {
    City,
    District(String),
    Staff(String),
    Unit(String),
    Member(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    City,
    District,
    Staff,
    Unit,
    Member,
}

impl Who {
    fn kind(&self) -> Kind {
        match self {
            Who::City => Kind::City,
            Who::District(_) => Kind::District,
            Who::Staff(_) => Kind::Staff,
            Who::Unit(_) => Kind::Unit,
            Who::Member(_) => Kind::Member,
        }
    }
    fn command(&self) -> bool {
        matches!(self, Who::City | Who::District(_))
    }
}

/// The scope rules, read over the model's facts.
impl Model {
    fn community(&self, m: &str) -> &str {
        &self.community_of_grid[&self.members[m].grid]
    }
    fn district(&self, c: &str) -> &str {
        &self.district_of[c]
    }
    fn team_community(&self, m: &str) -> Option<&str> {
        self.members[m].team.as_ref().map(|t| self.teams[t].community.as_str())
    }
    /// A team of the unit is paired with the community.
    fn serves(&self, unit: &str, c: &str) -> bool {
        self.teams.values().any(|t| t.unit == unit && t.community == c)
    }
    /// A community's business: its incidents, orders, balance, registration and fairness
    /// rows, its report.
    fn business(&self, w: &Who, c: &str) -> bool {
        match w {
            Who::City => true,
            Who::District(d) => self.district(c) == d,
            Who::Staff(s) => s == c,
            Who::Unit(_) | Who::Member(_) => false,
        }
    }
    /// The member's record (GET /v1/members/{id}, rows of GET /v1/members); also who may
    /// write to an existing member (but a member, who writes to none).
    fn record(&self, w: &Who, m: &str) -> bool {
        match w {
            Who::City => true,
            Who::District(d) => self.district(self.community(m)) == d,
            Who::Staff(c) => self.community(m) == c,
            Who::Unit(u) => &self.members[m].unit == u,
            Who::Member(x) => x == m,
        }
    }
    /// The member's work: their report, their rows in unit and community reports.
    fn work(&self, w: &Who, m: &str) -> bool {
        self.record(w, m)
            || match w {
                Who::District(d) => self.team_community(m).is_some_and(|c| self.district(c) == d),
                Who::Staff(c) => self.team_community(m) == Some(c.as_str()),
                _ => false,
            }
    }
    /// A unit's rows (registration, fairness, its report), a whistle naming it, a
    /// mobilization by it.
    fn unit_rows(&self, w: &Who, u: &str) -> bool {
        match w {
            Who::City => true,
            Who::District(d) => self.teams.values().any(|t| t.unit == u && self.district(&t.community) == d),
            Who::Staff(c) => self.serves(u, c),
            Who::Unit(x) => x == u,
            Who::Member(_) => false,
        }
    }
    fn team(&self, w: &Who, t: &str) -> bool {
        let t = &self.teams[t];
        match w {
            Who::City => true,
            Who::District(d) => self.district(&t.community) == d,
            Who::Staff(c) => &t.community == c,
            Who::Unit(u) => &t.unit == u,
            Who::Member(_) => false,
        }
    }
    fn incident(&self, w: &Who, i: &str) -> bool {
        let c = &self.incidents[i].community;
        matches!(w, Who::City | Who::District(_) | Who::Staff(_)) && self.business(w, c)
    }
    /// The member belongs to the community for service: lives there or serves it.
    fn of_community(&self, m: &str, c: &str) -> bool {
        self.community(m) == c || self.team_community(m) == Some(c)
    }
    fn order(&self, w: &Who, o: &str) -> bool {
        let o = &self.orders[o];
        match w {
            Who::Member(m) => {
                o.claims.contains_key(m)
                    || (self.of_community(m, &o.community)
                        && o.skills.iter().all(|s| self.members[m].skills.contains(s)))
            }
            _ => self.business(w, &o.community),
        }
    }
    /// The part of a mobilization a command sees: the orders reporting into its scope.
    fn mob_part<'a>(&self, w: &Who, mob: &'a MobF) -> Vec<&'a (String, String, String)> {
        match w {
            Who::City => mob.orders.iter().collect(),
            Who::District(d) => mob.orders.iter().filter(|o| self.district(&o.2) == d).collect(),
            _ => Vec::new(),
        }
    }
    fn mob_seen(&self, w: &Who, id: &str) -> bool {
        w.command() && !self.mob_part(w, &self.mobs[id]).is_empty()
    }
    fn mob_closable(&self, w: &Who, id: &str) -> bool {
        match w {
            Who::City => true,
            Who::District(d) => self.mobs[id].orders.iter().all(|o| self.district(&o.2) == d),
            _ => false,
        }
    }
    /// Residents, and members of the teams paired with the community.
    fn community_members(&self, c: &str) -> BTreeSet<String> {
        self.members.keys().filter(|m| self.community(m) == c || self.team_community(m) == Some(c)).cloned().collect()
    }
    fn assault_teams(&self, keep: impl Fn(&TeamF) -> bool) -> BTreeSet<String> {
        self.teams.iter().filter(|(_, t)| t.assault && keep(t)).map(|(id, _)| id.clone()).collect()
    }
    fn team_members(&self, t: &str) -> Vec<String> {
        self.members.iter().filter(|(_, m)| m.team.as_deref() == Some(t)).map(|(id, _)| id.clone()).collect()
    }
    fn communities(&self) -> Vec<String> {
        self.district_of.keys().cloned().collect()
    }

    /// Every id the caller may meet: those of the objects in its scope and the ids those
    /// objects' views carry. Positions: of the records and the claims in scope.
    fn visible(&self, w: &Who) -> (HashSet<String>, HashSet<u64>) {
        let mut ids = HashSet::new();
        let mut pos = HashSet::new();
        let mut add_pos = |p: &(f64, f64)| {
            pos.insert(p.0.to_bits());
            pos.insert(p.1.to_bits());
        };
        for (m, f) in &self.members {
            if self.record(w, m) {
                ids.extend([m.clone(), f.unit.clone(), f.grid.clone(), self.community(m).to_string()]);
                ids.extend(f.team.iter().cloned());
                ids.extend(self.engaged.get(m).cloned());
                self.positions.get(m).into_iter().flatten().for_each(&mut add_pos);
            } else if self.work(w, m) {
                ids.insert(m.clone());
            }
        }
        for c in self.communities() {
            if self.business(w, &c) {
                ids.insert(c.clone());
                ids.extend(self.units.iter().filter(|u| self.serves(u, &c)).cloned());
                ids.extend(self.registrations.iter().filter(|r| r.1 == c).map(|r| r.0.clone()));
            }
        }
        for u in &self.units {
            if self.unit_rows(w, u) {
                ids.insert(u.clone());
                ids.extend(self.teams.values().filter(|t| &t.unit == u).map(|t| t.community.clone()));
                ids.extend(self.registrations.iter().filter(|r| &r.0 == u).map(|r| r.1.clone()));
            }
        }
        for (i, inc) in &self.incidents {
            let mine = |m: &str| matches!(w, Who::Member(x) if x == m);
            if self.incident(w, i) {
                ids.extend([i.clone(), inc.community.clone()]);
                ids.extend(inc.offers.iter().flat_map(|(o, m)| [o.clone(), m.clone()]));
                ids.extend(inc.units.iter().cloned());
            } else if inc.offers.iter().any(|(_, m)| mine(m)) {
                // A member's offer frames: the incident, the offer.
                ids.insert(i.clone());
                ids.extend(inc.offers.iter().filter(|(_, m)| mine(m)).map(|(o, _)| o.clone()));
            }
        }
        for (id, o) in &self.orders {
            if self.order(w, id) {
                ids.extend([id.clone(), o.community.clone()]);
                for (m, stamps) in &o.claims {
                    if !matches!(w, Who::Member(x) if x != m) {
                        ids.insert(m.clone());
                        stamps.iter().for_each(&mut add_pos);
                    }
                }
            }
        }
        for (id, mob) in &self.mobs {
            let part = match w {
                Who::Member(x) => mob.orders.iter().filter(|o| &o.0 == x).collect(),
                _ => self.mob_part(w, mob),
            };
            if !part.is_empty() {
                ids.insert(id.clone());
                for (m, _, c) in part {
                    ids.extend([m.clone(), c.clone()]);
                }
            }
        }
        if let Who::Member(x) = w {
            ids.extend(self.team_community(x).map(str::to_string));
        }
        // The unit's stream (issue 17): its own teams; a whistle naming the unit carries the
        // incident and its community; a mobilization ordering the unit's teams carries it,
        // those teams and where they report.
        if let Who::Unit(u) = w {
            ids.extend(self.teams.iter().filter(|(_, t)| &t.unit == u).map(|(id, _)| id.clone()));
            for (i, inc) in &self.incidents {
                if inc.units.contains(u) {
                    ids.extend([i.clone(), inc.community.clone()]);
                }
            }
            for (id, mob) in &self.mobs {
                let own: Vec<_> =
                    mob.orders.iter().filter(|(_, t, _)| self.teams.get(t).is_some_and(|t| &t.unit == u)).collect();
                if !own.is_empty() {
                    ids.insert(id.clone());
                    for (_, t, c) in own {
                        ids.extend([t.clone(), c.clone()]);
                    }
                }
            }
        }
        if w.command() {
            for (from, to, members) in &self.proposals {
                if self.business(w, from) && self.business(w, to) {
                    ids.extend(members.iter().cloned());
                }
            }
        }
        let grids: Vec<String> =
            self.grids_of.iter().filter(|(c, _)| ids.contains(*c)).flat_map(|(_, g)| g.iter().cloned()).collect();
        ids.extend(grids);
        (ids, pos)
    }

    /// Every id of the city and of what was done to it, with its kind; every position.
    fn world(&self) -> (HashMap<String, &'static str>, HashMap<u64, String>) {
        let mut ids = HashMap::new();
        for m in self.members.keys() {
            ids.insert(m.clone(), "member");
        }
        for u in &self.units {
            ids.insert(u.clone(), "unit");
        }
        for (c, grids) in &self.grids_of {
            ids.insert(c.clone(), "community");
            for g in grids {
                ids.insert(g.clone(), "grid");
            }
        }
        for (i, inc) in &self.incidents {
            ids.insert(i.clone(), "incident");
            for (o, _) in &inc.offers {
                ids.insert(o.clone(), "offer");
            }
        }
        for o in self.orders.keys() {
            ids.insert(o.clone(), "order");
        }
        for m in self.mobs.keys() {
            ids.insert(m.clone(), "mobilization");
        }
        for t in &self.tainted {
            ids.remove(t);
        }
        let mut pos = HashMap::new();
        for (m, ps) in &self.positions {
            for p in ps {
                pos.insert(p.0.to_bits(), format!("the latitude {} of {m}", p.0));
                pos.insert(p.1.to_bits(), format!("the longitude {} of {m}", p.1));
            }
        }
        for (o, f) in &self.orders {
            for (m, ps) in &f.claims {
                for p in ps {
                    pos.insert(p.0.to_bits(), format!("the latitude {} of {m}'s stamp on {o}", p.0));
                    pos.insert(p.1.to_bits(), format!("the longitude {} of {m}'s stamp on {o}", p.1));
                }
            }
        }
        (ids, pos)
    }
}

fn cell_center(hex: &str) -> (f64, f64) {
    let cell: h3o::CellIndex = hex.parse().expect("an H3 cell");
    let ll = h3o::LatLng::from(cell);
    (ll.lat(), ll.lng())
}

/// The city JSON, its model and the places' ids.
fn build_city() -> (Value, Model, Fx) {
    let demo = serde_json::to_value(muster::demo::demo_city(0, 42)).unwrap();
    let id = |v: &Value| v["id"].as_str().unwrap().to_string();
    let of = |list: &str, key: &str, parent: &Value| -> Vec<Value> {
        demo[list].as_array().unwrap().iter().filter(|x| x[key] == parent["id"]).cloned().collect()
    };
    let districts = demo["districts"].as_array().unwrap();
    let (da, db) = (districts[0].clone(), districts[1].clone());
    let (sa, sb) = (of("streets", "district_id", &da), of("streets", "district_id", &db));
    let (ca1, ca2, cb1) = (
        of("communities", "street_id", &sa[0]),
        of("communities", "street_id", &sa[1]),
        of("communities", "street_id", &sb[0]),
    );
    let communities = vec![ca1[0].clone(), ca1[1].clone(), ca2[0].clone(), cb1[0].clone(), cb1[1].clone()];
    let fx = Fx {
        da: id(&da),
        db: id(&db),
        x: id(&communities[0]),
        x2: id(&communities[1]),
        w: id(&communities[2]),
        y: id(&communities[3]),
        y2: id(&communities[4]),
        ..Default::default()
    };
    let mut md = Model::default();
    for c in &communities {
        let street = c["street_id"].as_str().unwrap().to_string();
        let district = if sa.iter().any(|s| s["id"] == street.as_str()) { &fx.da } else { &fx.db };
        md.district_of.insert(id(c), district.clone());
        md.street_of.insert(id(c), street);
        for g in c["grids"].as_array().unwrap() {
            md.community_of_grid.insert(id(g), id(c));
            md.grids_of.entry(id(c)).or_default().push(id(g));
            md.grid_center.insert(id(g), cell_center(g["cells"][0].as_str().unwrap()));
        }
    }
    for d in [&fx.da, &fx.db] {
        md.wartime.insert(d.clone(), false);
    }
    let units = [U, V, K, Z, Q, O];
    md.units = units.iter().map(|u| u.to_string()).collect();
    let teams = [
        (T_UX, U, true, &fx.x),
        (T_UY, U, false, &fx.y),
        (T_VY, V, true, &fx.y),
        (T_KX2, K, false, &fx.x2),
        (T_ZW, Z, true, &fx.w),
        (T_QY2, Q, true, &fx.y2),
    ];
    for (t, u, assault, c) in teams {
        md.teams.insert(t.into(), TeamF { unit: u.into(), community: c.clone(), assault });
    }
    /// (id, community, grid, unit, team, on call, skills)
    type Row<'a> = (&'a str, &'a String, usize, &'a str, Option<&'a str>, bool, &'a [&'a str]);
    let members: Vec<Row> = vec![
        (M, &fx.x, 0, U, Some(T_UX), true, &["medical", "driving"]),
        (M2, &fx.x, 1, U, Some(T_UX), true, &["medical"]),
        (P, &fx.y, 0, U, Some(T_UX), false, &["medical"]),
        (N, &fx.y, 0, V, Some(T_VY), true, &["driving"]),
        (L, &fx.x, 2, V, Some(T_VY), false, &["logistics"]),
        ("m00006", &fx.y, 1, Q, Some(T_QY2), false, &["medical"]),
        (M7, &fx.x2, 0, K, Some(T_KX2), false, &["medical"]),
        (M8, &fx.w, 0, Z, Some(T_ZW), false, &["medical"]),
        (M9, &fx.y2, 0, Q, Some(T_QY2), false, &["medical"]),
        (CANARY, &fx.x, 1, O, None, false, &["medical"]),
        (M11, &fx.x, 0, U, Some(T_UY), false, &["elderly_care"]),
        ("m00012", &fx.w, 1, U, Some(T_UY), false, &["medical"]),
        ("m00013", &fx.y, 2, U, Some(T_UY), false, &["medical"]),
        (M14, &fx.x, 2, K, Some(T_KX2), true, &["medical"]),
        (S[0], &fx.y2, 1, Q, Some(T_QY2), false, &["medical"]),
        (S[1], &fx.y2, 1, Q, Some(T_QY2), false, &["medical"]),
        (S[2], &fx.y2, 2, Q, Some(T_QY2), false, &["medical"]),
        (S[3], &fx.y2, 2, Q, Some(T_QY2), false, &["medical"]),
        ("m00019", &fx.y, 1, V, Some(T_VY), true, &["medical"]),
    ];
    let mut member_json = Vec::new();
    for (i, (mid, c, g, unit, team, on_call, skills)) in members.into_iter().enumerate() {
        let grid = md.grids_of[c][g].clone();
        let (lat, lng) = md.grid_center[&grid];
        let position = (lat + 0.0001 + i as f64 * 0.000_011_3, lng + 0.0001 + i as f64 * 0.000_009_7);
        member_json.push(json!({
            "id": mid, "name": format!("成员{}", i + 1), "unit_id": unit, "team_id": team,
            "residence_grid_id": grid, "skills": skills, "position": {"lat": position.0, "lng": position.1},
            "on_call": on_call,
        }));
        md.positions.insert(mid.into(), vec![position]);
        md.members.insert(
            mid.into(),
            MemberF {
                grid,
                unit: unit.into(),
                team: team.map(str::to_string),
                skills: skills.iter().map(|s| s.to_string()).collect(),
            },
        );
    }
    let city = json!({
        "name": "oracle city",
        "districts": [da, db],
        "streets": [sa[0], sa[1], sb[0]],
        "communities": communities,
        "units": units.iter().enumerate().map(|(i, u)| json!({"id": u, "name": format!("单位{}", i + 1)})).collect::<Vec<_>>(),
        "teams": teams.iter().map(|(t, u, assault, c)| json!({
            "id": t, "name": format!("{t}队"), "unit_id": u,
            "kind": if *assault { "assault" } else { "work" }, "community_id": c,
        })).collect::<Vec<_>>(),
        "members": member_json,
    });
    (city, md, fx)
}

// ---------------------------------------------------------------- the operations

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Op {
    /// Probes, the OpenAPI document, the catalog, geography and the org directory.
    Public,
    GeoCommunity,
    ImportCity,
    Revoke,
    MemberGet,
    MemberList,
    MemberRegister,
    MemberImport,
    Exchange,
    UnitRegister,
    Registration,
    OrderPost,
    OrderList,
    OrderGet,
    OrderClaim,
    OrderAssign,
    OrderCancel,
    OrderCheckin,
    OrderCheckout,
    Rate,
    ReportMember,
    ReportUnit,
    ReportCommunity,
    Raise,
    IncidentList,
    IncidentGet,
    Timeline,
    Escalate,
    Resolve,
    IncidentCancel,
    Whistle,
    CityMode,
    DistrictMode,
    Mobilize,
    MobList,
    MobGet,
    MobClose,
    Balance,
    BalanceApply,
    Fairness,
    Invite,
    InviteBatch,
    InvitationList,
    InvitationRevoke,
    /// Redeem, refresh and sign out: no bearer needed (the code or the cookie proves it).
    SessionRedeem,
    SessionRefresh,
    SessionSignout,
    SessionList,
    SessionRevoke,
    /// The decisions in the log (issue 17): command only; a district's command, its part.
    Audit,
    /// The city as GeoJSON (issue 23): import (with a dry run) and export, city command only.
    CityGeoImport,
    CityGeoExport,
    /// Outbound webhooks (issue 18): command only; a district's command, its district's
    /// endpoints (tests/api/webhooks.rs makes them; here no endpoint exists).
    WebhookRegister,
    WebhookList,
    WebhookGet,
    WebhookDisable,
    WebhookEnable,
    WebhookDelete,
    WebhookRotate,
    WebhookDeadLetters,
    WebhookReplay,
    /// Campaigns (issue 19): command owns them, staff read their community's sites
    /// (tests/api/campaign.rs makes them; here only refusals and empty reads).
    CampaignCreate,
    CampaignList,
    CampaignGet,
    CampaignWrite,
    CampaignImport,
    /// A member's own shifts, and their answers to them: members only.
    CampaignMine,
    CampaignServe,
    /// A time a member cannot serve: a member their own, command names the member.
    CampaignUnavailable,
    /// Web Push (issue 18): a member's own subscriptions (tests/api/push.rs makes them; the
    /// sweep's server has no VAPID key, so a subscription is refused as not configured).
    PushKey,
    PushSubscribe,
    PushList,
    PushUnsubscribe,
    /// Residents (issue #20): a code and its sign-in need no bearer; residents place and
    /// confirm requests (no resident sweeps here: tests/api/residents.rs has them), staff and
    /// command answer them; members propose (创单), staff and command decide.
    ResidentCode,
    ResidentSignIn,
    ResidentLink,
    RequestPlace,
    RequestList,
    RequestGet,
    RequestDispatch,
    RequestMerge,
    RequestDecline,
    RequestConfirm,
    ProposalPost,
    ProposalList,
    ProposalApprove,
    ProposalDecline,
}

/// The operation of a (method, path) of /openapi.json; None: not classified.
fn classify(method: &str, path: &str) -> Option<Op> {
    use Op::*;
    Some(match (method, path) {
        (
            "GET",
            "/healthz" | "/readyz" | "/metrics" | "/openapi.json" | "/v1/catalog" | "/v1/communities" | "/v1/units"
            | "/v1/modes" | "/v1/geo/city",
        ) => Public,
        ("GET", "/v1/geo/communities/{id}") => GeoCommunity,
        ("PUT", "/v1/city") => ImportCity,
        ("POST", "/v1/city/geojson") => CityGeoImport,
        ("GET", "/v1/city/geojson") => CityGeoExport,
        ("POST", "/v1/tokens/revoke") => Revoke,
        ("GET", "/v1/members/{id}") => MemberGet,
        ("GET", "/v1/members") => MemberList,
        ("POST", "/v1/members") => MemberRegister,
        ("POST", "/v1/members/import") => MemberImport,
        ("POST", "/v1/members/{id}/exchange") => Exchange,
        ("POST", "/v1/units/{id}/register") => UnitRegister,
        ("GET", "/v1/registration") => Registration,
        ("POST", "/v1/orders") => OrderPost,
        ("GET", "/v1/orders") => OrderList,
        ("GET", "/v1/orders/{id}") => OrderGet,
        ("POST", "/v1/orders/{id}/claim") => OrderClaim,
        ("POST", "/v1/orders/{id}/assign") => OrderAssign,
        ("POST", "/v1/orders/{id}/cancel") => OrderCancel,
        ("POST", "/v1/orders/{id}/checkin") => OrderCheckin,
        ("POST", "/v1/orders/{id}/checkout") => OrderCheckout,
        ("POST", "/v1/ratings") => Rate,
        ("GET", "/v1/reports/members/{id}") => ReportMember,
        ("GET", "/v1/reports/units/{id}") => ReportUnit,
        ("GET", "/v1/reports/communities/{id}") => ReportCommunity,
        ("POST", "/v1/incidents") => Raise,
        ("GET", "/v1/incidents") => IncidentList,
        ("GET", "/v1/incidents/{id}") => IncidentGet,
        ("GET", "/v1/incidents/{id}/timeline") => Timeline,
        ("POST", "/v1/incidents/{id}/escalate") => Escalate,
        ("POST", "/v1/incidents/{id}/resolve") => Resolve,
        ("POST", "/v1/incidents/{id}/cancel") => IncidentCancel,
        ("POST", "/v1/incidents/{id}/whistle") => Whistle,
        ("PUT", "/v1/city/mode") => CityMode,
        ("PUT", "/v1/districts/{id}/mode") => DistrictMode,
        ("POST", "/v1/mobilizations") => Mobilize,
        ("GET", "/v1/mobilizations") => MobList,
        ("GET", "/v1/mobilizations/{id}") => MobGet,
        ("POST", "/v1/mobilizations/{id}/close") => MobClose,
        ("GET", "/v1/balance") => Balance,
        ("POST", "/v1/balance/apply") => BalanceApply,
        ("GET", "/v1/fairness") => Fairness,
        ("POST", "/v1/invitations") => Invite,
        ("POST", "/v1/invitations/batch") => InviteBatch,
        ("GET", "/v1/invitations") => InvitationList,
        ("POST", "/v1/invitations/{id}/revoke") => InvitationRevoke,
        ("POST", "/v1/session") => SessionRedeem,
        ("POST", "/v1/session/refresh") => SessionRefresh,
        ("POST", "/v1/session/signout") => SessionSignout,
        ("GET", "/v1/sessions") => SessionList,
        ("POST", "/v1/sessions/{id}/revoke") => SessionRevoke,
        ("GET", "/v1/audit") => Audit,
        ("POST", "/v1/webhooks") => WebhookRegister,
        ("GET", "/v1/webhooks") => WebhookList,
        ("GET", "/v1/webhooks/{id}") => WebhookGet,
        ("POST", "/v1/webhooks/{id}/disable") => WebhookDisable,
        ("POST", "/v1/webhooks/{id}/enable") => WebhookEnable,
        ("DELETE", "/v1/webhooks/{id}") => WebhookDelete,
        ("POST", "/v1/webhooks/{id}/rotate") => WebhookRotate,
        ("GET", "/v1/webhooks/{id}/dead-letters") => WebhookDeadLetters,
        ("POST", "/v1/webhooks/{id}/dead-letters/replay") => WebhookReplay,
        ("POST", "/v1/campaigns") => CampaignCreate,
        ("GET", "/v1/campaigns") => CampaignList,
        ("GET", "/v1/campaigns/{id}") => CampaignGet,
        ("PUT", "/v1/campaigns/{id}/sites/{site_id}")
        | ("POST", "/v1/campaigns/{id}/sites/{site_id}/close")
        | ("PUT", "/v1/campaigns/{id}/shifts/{shift_id}")
        | ("PUT", "/v1/campaigns/{id}/requirements")
        | ("POST", "/v1/campaigns/{id}/roster")
        | ("POST", "/v1/campaigns/{id}/close") => CampaignWrite,
        ("POST", "/v1/campaigns/{id}/import") => CampaignImport,
        ("GET", "/v1/campaigns/mine") => CampaignMine,
        ("POST", "/v1/campaigns/{id}/shifts/{shift_id}/ack")
        | ("POST", "/v1/campaigns/{id}/shifts/{shift_id}/checkin")
        | ("POST", "/v1/campaigns/{id}/shifts/{shift_id}/checkout") => CampaignServe,
        ("POST", "/v1/campaigns/{id}/unavailability") => CampaignUnavailable,
        ("GET", "/v1/push/key") => PushKey,
        ("POST", "/v1/push/subscriptions") => PushSubscribe,
        ("GET", "/v1/push/subscriptions") => PushList,
        ("DELETE", "/v1/push/subscriptions") => PushUnsubscribe,
        ("POST", "/v1/residents/code") => ResidentCode,
        ("POST", "/v1/session/resident") => ResidentSignIn,
        ("GET", "/v1/communities/{id}/resident-link") => ResidentLink,
        ("POST", "/v1/requests") => RequestPlace,
        ("GET", "/v1/requests") => RequestList,
        ("GET", "/v1/requests/{id}") => RequestGet,
        ("POST", "/v1/requests/{id}/dispatch") => RequestDispatch,
        ("POST", "/v1/requests/{id}/merge") => RequestMerge,
        ("POST", "/v1/requests/{id}/decline") => RequestDecline,
        ("POST", "/v1/requests/{id}/confirm") => RequestConfirm,
        ("POST", "/v1/proposals") => ProposalPost,
        ("GET", "/v1/proposals") => ProposalList,
        ("POST", "/v1/proposals/{id}/approve") => ProposalApprove,
        ("POST", "/v1/proposals/{id}/decline") => ProposalDecline,
        _ => return None,
    })
}

impl Op {
    fn is_write(self) -> bool {
        use Op::*;
        matches!(
            self,
            ImportCity
                | CityGeoImport
                | Revoke
                | MemberRegister
                | MemberImport
                | Exchange
                | UnitRegister
                | OrderPost
                | OrderClaim
                | OrderAssign
                | OrderCancel
                | OrderCheckin
                | OrderCheckout
                | Rate
                | Raise
                | Escalate
                | Resolve
                | IncidentCancel
                | Whistle
                | CityMode
                | DistrictMode
                | Mobilize
                | MobClose
                | BalanceApply
                | Invite
                | InviteBatch
                | InvitationRevoke
                | SessionRedeem
                | SessionRefresh
                | SessionSignout
                | SessionRevoke
                | WebhookRegister
                | WebhookDisable
                | WebhookEnable
                | WebhookDelete
                | WebhookRotate
                | WebhookReplay
                | CampaignCreate
                | CampaignWrite
                | CampaignImport
                | CampaignServe
                | CampaignUnavailable
                | PushSubscribe
                | PushUnsubscribe
                | ResidentCode
                | ResidentSignIn
                | RequestPlace
                | RequestDispatch
                | RequestMerge
                | RequestDecline
                | RequestConfirm
                | ProposalPost
                | ProposalApprove
                | ProposalDecline
        )
    }
}

/// The refusal of a role that may never do this (docs/PROTOCOL.md's roles), else None.
fn gate(op: Op, w: &Who) -> Option<Want> {
    use Kind::*;
    use Op::*;
    const ALL: &[Kind] = &[City, District, Staff, Unit, Member];
    const CMD: &[Kind] = &[City, District];
    const STAFF_CMD: &[Kind] = &[City, District, Staff];
    if matches!(op, ImportCity | CityGeoImport | CityGeoExport | Revoke | CityMode) && w.kind() == District {
        return Some(Want::No(403, "city_command_only"));
    }
    let roles: &[Kind] = match op {
        // Unit reports: staff and members are decided by the probes (the rules name a
        // scope for them, docs/PROTOCOL.md does not name the roles).
        Public | GeoCommunity | MemberGet | MemberList | ReportMember | ReportUnit => ALL,
        // Sign-in: a link or a cookie is the proof; a person lists and revokes their own devices.
        SessionRedeem | SessionRefresh | SessionSignout | SessionList | SessionRevoke => ALL,
        Invite | InviteBatch | InvitationList | InvitationRevoke => &[City, District, Staff, Unit],
        ImportCity | CityGeoImport | CityGeoExport | Revoke | CityMode | DistrictMode | Mobilize | MobList | MobGet
        | MobClose | BalanceApply | Audit => CMD,
        WebhookRegister | WebhookList | WebhookGet | WebhookDisable | WebhookEnable | WebhookDelete | WebhookRotate
        | WebhookDeadLetters | WebhookReplay => CMD,
        CampaignCreate | CampaignWrite | CampaignImport => CMD,
        CampaignList | CampaignGet => STAFF_CMD,
        CampaignMine | CampaignServe => &[Member],
        CampaignUnavailable => &[City, District, Member],
        PushKey | PushSubscribe | PushList | PushUnsubscribe => &[Member],
        MemberRegister => &[City, District, Staff, Unit],
        MemberImport | UnitRegister => &[City, District, Unit],
        Exchange => &[City, District, Member],
        Registration | Fairness => &[City, District, Staff, Unit],
        OrderList | OrderGet => &[City, District, Staff, Member],
        OrderClaim | OrderCheckin | OrderCheckout => &[Member],
        OrderPost | OrderAssign | OrderCancel | Rate | ReportCommunity | Raise | IncidentList | IncidentGet
        | Timeline | Escalate | Resolve | IncidentCancel | Whistle | Balance => STAFF_CMD,
        ResidentCode | ResidentSignIn => ALL,
        RequestPlace | RequestConfirm => &[],
        ResidentLink | RequestList | RequestGet | RequestDispatch | RequestMerge | RequestDecline | ProposalApprove
        | ProposalDecline => STAFF_CMD,
        ProposalPost => &[Member],
        ProposalList => &[City, District, Staff, Member],
    };
    (!roles.contains(&w.kind())).then_some(Want::No(403, "role_not_allowed"))
}

#[derive(Clone, Debug, PartialEq)]
enum Want {
    Ok,
    No(u16, &'static str),
    NoAny(u16, &'static [&'static str]),
}

impl std::fmt::Display for Want {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Want::Ok => write!(f, "2xx"),
            Want::No(s, c) => write!(f, "{s} {c}"),
            Want::NoAny(s, cs) => write!(f, "{s} {}", cs.join("|")),
        }
    }
}

#[derive(Clone, Debug)]
enum Body {
    None,
    Json(Value),
    Csv(String),
    /// `{lat, lng}` near the order's place, unique to this call.
    Stamp(String),
}

/// What a 2xx answer must hold.
#[derive(Clone, Debug)]
enum Check {
    /// The `key` of the elements of the array at `at` ("*" walks arrays) are exactly `want`.
    Set { at: &'static str, key: &'static str, want: BTreeSet<String> },
    /// ...are among `want`.
    Sub { at: &'static str, key: &'static str, want: BTreeSet<String> },
    /// The value at the JSON pointer is `want`.
    Eq { at: &'static str, want: Value },
    /// For each element of the root array with `key` in `want`, its `field` is the value.
    Each { key: &'static str, field: &'static str, want: BTreeMap<String, Value> },
    /// An object with exactly these keys.
    Keys(&'static [&'static str]),
    /// CSV report: the ids of the rows after the total are exactly these.
    CsvRows(BTreeSet<String>),
}

/// An object made for one allowed write, on the caller's side.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Fresh {
    Incident,
    /// One per token, for all its whistles.
    WhistleIncident,
    Order,
    /// Claimed by M; then also checked in; then also checked out.
    ClaimedOrder,
    CheckedInOrder,
    RatableOrder,
    /// A mobilization wholly in district A; one anywhere.
    MobA,
    MobAny,
}

/// What an allowed write must have done, read back as city command.
#[derive(Clone, Debug)]
enum Effect {
    Member { id: String, grid: String, unit: String, team: Option<String>, position: Option<(f64, f64)> },
    UnitRegistered { unit: String, community: String },
    OrderPosted { community: String },
    Claimed { member: String, assigned: bool },
    OrderCancelled,
    Stamped { checkout: bool },
    Rated { member: String, rating: &'static str },
    Raised { community: String },
    Escalated,
    Resolved,
    IncidentCancelled,
    Whistled { units: BTreeSet<String> },
    CityMode(bool),
    DistrictMode(String, bool),
    Mobilized { teams: BTreeSet<String>, to: Option<String> },
    MobClosed,
    Revoked,
}

#[derive(Clone, Debug)]
struct Probe {
    label: String,
    method: Method,
    path: String,
    body: Body,
    /// The object the write acts on (an id in the path or the body).
    target: String,
    want: Vec<Want>,
    checks: Vec<Check>,
    /// Probes of one group answer alike when refused; the reference is the unknown id.
    group: Option<&'static str>,
    reference: bool,
    fresh: Option<Fresh>,
    effect: Option<Effect>,
    /// Members and objects named: skipped once tainted.
    about: Vec<String>,
}

impl Probe {
    fn new(label: impl Into<String>, method: Method, path: impl Into<String>) -> Self {
        Probe {
            label: label.into(),
            method,
            path: path.into(),
            body: Body::None,
            target: String::new(),
            want: vec![Want::Ok],
            checks: Vec::new(),
            group: None,
            reference: false,
            fresh: None,
            effect: None,
            about: Vec::new(),
        }
    }
    fn get(label: impl Into<String>, path: impl Into<String>) -> Self {
        Probe::new(label, Method::GET, path)
    }
    fn json(mut self, v: Value) -> Self {
        self.body = Body::Json(v);
        self
    }
    fn want(mut self, w: Want) -> Self {
        self.want = vec![w];
        self
    }
    fn either(mut self, w: Vec<Want>) -> Self {
        self.want = w;
        self
    }
    /// 2xx when `allowed`, else this refusal.
    fn scope(self, allowed: bool, status: u16, code: &'static str) -> Self {
        self.want(if allowed { Want::Ok } else { Want::No(status, code) })
    }
    fn check(mut self, c: Check) -> Self {
        self.checks.push(c);
        self
    }
    fn group(mut self, g: &'static str) -> Self {
        self.group = Some(g);
        self
    }
    fn reference(mut self, g: &'static str) -> Self {
        self.group = Some(g);
        self.reference = true;
        self
    }
    fn target(mut self, t: impl Into<String>) -> Self {
        self.target = t.into();
        self
    }
    fn fresh(mut self, f: Fresh) -> Self {
        self.fresh = Some(f);
        self.target = "{fresh}".into();
        self
    }
    fn effect(mut self, e: Effect) -> Self {
        self.effect = Some(e);
        self
    }
    fn about(mut self, ids: &[&str]) -> Self {
        self.about.extend(ids.iter().map(|s| s.to_string()));
        self
    }
    /// Puts the id of the object made for it where `{fresh}` stands.
    fn substitute(&mut self, id: &str) {
        self.path = self.path.replace("{fresh}", id);
        self.target = self.target.replace("{fresh}", id);
        self.body = match &self.body {
            Body::Json(v) => Body::Json(serde_json::from_str(&v.to_string().replace("{fresh}", id)).unwrap()),
            Body::Stamp(o) => Body::Stamp(o.replace("{fresh}", id)),
            b => b.clone(),
        };
    }
}

fn set<I: IntoIterator<Item = S>, S: ToString>(i: I) -> BTreeSet<String> {
    i.into_iter().map(|s| s.to_string()).collect()
}

fn opposite(wartime: bool) -> &'static str {
    if wartime { "peacetime" } else { "wartime" }
}

// ---------------------------------------------------------------- the oracle's probes

/// A token of the sweep.
#[derive(Clone)]
struct Tok {
    name: String,
    who: Who,
    token: String,
}

/// One answer.
struct Answer {
    status: u16,
    ctype: String,
    text: String,
    json: Option<Value>,
}

impl Answer {
    fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
    fn code(&self) -> &str {
        self.json.as_ref().and_then(|j| j["code"].as_str()).unwrap_or("")
    }
    fn field(&self, k: &str) -> String {
        self.json.as_ref().and_then(|j| j[k].as_str()).unwrap_or("").to_string()
    }
    fn short(&self) -> String {
        let t: String = self.text.chars().take(400).collect();
        if t.len() < self.text.len() { format!("{t}…") } else { t }
    }
}

impl Want {
    fn admits(&self, a: &Answer) -> bool {
        match self {
            Want::Ok => a.ok(),
            Want::No(s, c) => a.status == *s && a.code() == *c,
            Want::NoAny(s, cs) => a.status == *s && cs.contains(&a.code()),
        }
    }
}

/// A 2xx body kept for the leak scan.
enum Content {
    Json(Value),
    Csv(String),
}

struct Sweep {
    app: TestApp,
    md: Model,
    fx: Fx,
    city_json: Value,
    /// City command's token, for setup and every read-back.
    city: String,
    members: HashMap<String, String>,
    canary: String,
    /// (key for dedup, text).
    /// (key, what went wrong, the objects it went wrong for).
    bad: Vec<(String, String, Vec<String>)>,
    seen: Vec<(Who, String, String, Content)>,
    snap: Option<Vec<(String, String)>>,
    counts: BTreeMap<&'static str, usize>,
    called: BTreeSet<(Op, String)>,
    whistle_incidents: HashMap<String, String>,
    serial: Cell<u32>,
}

impl Sweep {
    fn next(&self) -> u32 {
        self.serial.set(self.serial.get() + 1);
        self.serial.get()
    }

    fn mismatch(&mut self, key: String, text: String) {
        if !self.bad.iter().any(|(k, _, _)| *k == key) {
            self.bad.push((key, text, Vec::new()));
        }
    }

    /// One more object a mismatch holds for (one line per mismatch, however many objects).
    fn mismatch_for(&mut self, key: String, text: String, item: String) {
        match self.bad.iter_mut().find(|(k, _, _)| *k == key) {
            Some((_, _, items)) if !items.iter().any(|i| i.split(" → ").next() == item.split(" → ").next()) => {
                items.push(item)
            }
            Some(_) => {}
            None => self.bad.push((key, text, vec![item])),
        }
    }

    fn grid(&self, c: &str, i: usize) -> String {
        self.md.grids_of[c][i].clone()
    }

    /// A position near a grid's first cell, never given before.
    fn new_position(&self, grid: &str) -> (f64, f64) {
        let (lat, lng) = self.md.grid_center[grid];
        let k = self.next() as f64;
        (lat + 0.0002 + k * 0.000_013_1, lng + 0.0002 + k * 0.000_008_9)
    }

    /// The own object a refused token names where an allowed one gets a fresh one.
    fn fallback(&self, f: Fresh) -> String {
        match f {
            Fresh::Incident | Fresh::WhistleIncident => self.fx.inc_x.clone(),
            Fresh::MobA | Fresh::MobAny => self.fx.mob_a.clone(),
            _ => self.fx.o_x.clone(),
        }
    }

    /// The probes of one operation for one token, with the oracle's expectations.
    fn plan(&self, op: Op, template: &str, w: &Who) -> Vec<Probe> {
        let mut probes = self.probes(op, template, w);
        if let Some(refusal) = gate(op, w) {
            for p in &mut probes {
                p.want = vec![refusal.clone()];
                p.checks.clear();
                p.effect = None;
                if let Some(f) = p.fresh.take() {
                    let id = self.fallback(f);
                    p.substitute(&id);
                }
            }
        }
        probes
    }

    fn probes(&self, op: Op, template: &str, w: &Who) -> Vec<Probe> {
        use Op::*;
        let md = &self.md;
        let fx = &self.fx;
        let city = *w == Who::City;
        let post = |label: &str, path: &str| Probe::new(label, Method::POST, path);
        let mut v: Vec<Probe> = Vec::new();
        match op {
            Public => v.push(Probe::get("", template)),
            GeoCommunity => {
                for (label, c) in [("own", &fx.x), ("other side's", &fx.y)] {
                    v.push(Probe::get(format!("{label} {c}"), format!("/v1/geo/communities/{c}")));
                }
                v.push(
                    Probe::get("unknown", format!("/v1/geo/communities/{NO_COMMUNITY}"))
                        .want(Want::No(404, "unknown_community")),
                );
            }

            // ---- members
            MemberGet | ReportMember => {
                let ids: Vec<String> = md.members.keys().cloned().chain([NO_MEMBER.to_string()]).collect();
                for m in ids {
                    let known = md.members.contains_key(&m);
                    let allowed = known && if op == MemberGet { md.record(w, &m) } else { md.work(w, &m) };
                    let label = if known { format!("{m} of {}", md.community(&m)) } else { "unknown".into() };
                    let formats: &[&str] = if op == MemberGet { &[""] } else { &["", "?format=csv"] };
                    for f in formats {
                        let path = if op == MemberGet {
                            format!("/v1/members/{m}")
                        } else {
                            format!("/v1/reports/members/{m}{f}")
                        };
                        let mut p = Probe::get(&label, path).scope(allowed, 404, "unknown_member").about(&[&m]);
                        let g = if f.is_empty() { "member" } else { "member csv" };
                        p = if known { p.group(g) } else { p.reference(g) };
                        if f.is_empty() {
                            let at = if op == MemberGet { "/id" } else { "/total/id" };
                            p = p.check(Check::Eq { at, want: json!(m) });
                        }
                        v.push(p);
                    }
                }
            }
            MemberList => v.push(Probe::get("", "/v1/members").check(Check::Set {
                at: "",
                key: "id",
                want: md.members.keys().filter(|m| md.record(w, m)).cloned().collect(),
            })),
            MemberRegister | MemberImport => v.extend(self.registrations(op, w)),
            Exchange => {
                let body = json!({"from": "points", "amount": 1});
                let (own, foreign) = match w {
                    Who::Member(m) => (m.as_str(), Some(M2)),
                    Who::City => (M, None),
                    _ => (M, Some(N)),
                };
                // No points are earned in a test that does not wait an hour: an allowed
                // exchange is refused for the balance, after the scope let it through.
                v.push(
                    post(&format!("own {own}"), &format!("/v1/members/{own}/exchange"))
                        .json(body.clone())
                        .want(Want::No(409, "insufficient_balance")),
                );
                if let Some(f) = foreign {
                    v.push(
                        post(&format!("foreign {f} of {}", md.community(f)), &format!("/v1/members/{f}/exchange"))
                            .json(body.clone())
                            .want(Want::No(404, "unknown_member"))
                            .group("member"),
                    );
                }
                v.push(
                    post("unknown", &format!("/v1/members/{NO_MEMBER}/exchange"))
                        .json(body)
                        .want(Want::No(404, "unknown_member"))
                        .reference("member"),
                );
            }

            // ---- units and registration
            UnitRegister => {
                let own = match w {
                    Who::City => (V, fx.y.clone()),
                    _ => (U, fx.x.clone()),
                };
                let foreign = match w {
                    Who::District(_) => Some((Q, fx.y2.clone())),
                    Who::City => None,
                    _ => Some((V, fx.y.clone())),
                };
                let ok = Probe::new(
                    format!("own {} at {}", own.0, own.1),
                    Method::POST,
                    format!("/v1/units/{}/register", own.0),
                )
                .json(json!({"community_id": own.1}))
                .effect(Effect::UnitRegistered { unit: own.0.into(), community: own.1.clone() })
                .group("unit");
                // The rules put the units serving its district in a district command's
                // scope; docs/PROTOCOL.md names unit_admin and command: either answer.
                v.push(match w {
                    Who::District(_) => ok.either(vec![Want::Ok, Want::No(404, "unknown_unit")]),
                    _ => ok,
                });
                if let Some((u, c)) = foreign {
                    v.push(
                        post(&format!("foreign {u}"), &format!("/v1/units/{u}/register"))
                            .json(json!({"community_id": c}))
                            .want(Want::No(404, "unknown_unit"))
                            .group("unit"),
                    );
                }
                v.push(
                    post("unknown", &format!("/v1/units/{NO_UNIT}/register"))
                        .json(json!({"community_id": fx.x}))
                        .want(Want::No(404, "unknown_unit"))
                        .reference("unit"),
                );
            }
            Registration | Fairness => {
                let units = md.units.iter().filter(|u| md.unit_rows(w, u)).cloned().collect();
                let communities = md.communities().into_iter().filter(|c| md.business(w, c)).collect();
                v.push(
                    Probe::get("", template)
                        .check(Check::Set { at: "/units", key: "id", want: units })
                        .check(Check::Set { at: "/communities", key: "id", want: communities }),
                );
            }

            // ---- service orders
            OrderPost => {
                let body = |g: &str| {
                    let now = chrono::Utc::now();
                    json!({"grid_id": g, "category": "nucleic_acid_testing", "title": "oracle",
                        "window_start": (now - chrono::Duration::hours(1)).to_rfc3339(),
                        "window_end": (now + chrono::Duration::hours(24)).to_rfc3339(), "slots": 10})
                };
                v.push(
                    post("own grid in X", "/v1/orders")
                        .json(body(&self.grid(&fx.x, 0)))
                        .effect(Effect::OrderPosted { community: fx.x.clone() }),
                );
                if !city {
                    v.push(
                        post(&format!("foreign grid of {}", fx.y), "/v1/orders")
                            .json(body(&self.grid(&fx.y, 0)))
                            .want(Want::No(403, "outside_scope"))
                            .group("grid"),
                    );
                }
                // City command naming no grid: docs/PROTOCOL.md says 422 unknown_grid, an
                // area's 403 outside_scope; not a question of scope.
                let unknown = post("unknown grid", "/v1/orders").json(body(NO_GRID)).reference("grid");
                v.push(if city {
                    unknown.either(vec![Want::No(422, "unknown_grid"), Want::No(403, "outside_scope")])
                } else {
                    unknown.want(Want::No(403, "outside_scope"))
                });
            }
            OrderList => v.push(Probe::get("", "/v1/orders").check(Check::Set {
                at: "",
                key: "id",
                want: md.orders.keys().filter(|o| md.order(w, o)).cloned().collect(),
            })),
            OrderGet => {
                for o in md.orders.keys().cloned().chain([NO_ORDER.to_string()]) {
                    let known = md.orders.contains_key(&o);
                    let allowed = known && md.order(w, &o);
                    let label = if known { format!("{o} of {}", md.orders[&o].community) } else { "unknown".into() };
                    let mut p = Probe::get(label, format!("/v1/orders/{o}")).scope(allowed, 404, "unknown_order");
                    p = if known { p.group("order") } else { p.reference("order") };
                    if let Who::Member(m) = w {
                        p = p.check(Check::Sub { at: "/claims", key: "member_id", want: set([m]) });
                    }
                    v.push(p);
                }
            }
            OrderClaim | OrderCheckin | OrderCheckout | OrderCancel => {
                let (verb, fresh, effect) = match op {
                    OrderClaim => ("claim", Fresh::Order, Effect::Claimed { member: M.into(), assigned: false }),
                    OrderCheckin => ("checkin", Fresh::ClaimedOrder, Effect::Stamped { checkout: false }),
                    OrderCheckout => ("checkout", Fresh::CheckedInOrder, Effect::Stamped { checkout: true }),
                    _ => ("cancel", Fresh::Order, Effect::OrderCancelled),
                };
                let body = |o: &str| match op {
                    OrderCheckin | OrderCheckout => Body::Stamp(o.into()),
                    OrderCancel => Body::Json(json!({})),
                    _ => Body::None,
                };
                let mut own =
                    post("own, made for it", &format!("/v1/orders/{{fresh}}/{verb}")).fresh(fresh).effect(effect);
                own.body = body("{fresh}");
                v.push(own);
                let mut targets = vec![(format!("foreign {} of {}", fx.o_y, fx.y), fx.o_y.clone(), "order")];
                if op == OrderClaim {
                    targets.push((
                        format!("{} of X, needing a skill M lacks", fx.o_xskill),
                        fx.o_xskill.clone(),
                        "order",
                    ));
                }
                if !city {
                    for (label, o, g) in targets {
                        let mut p = post(&label, &format!("/v1/orders/{o}/{verb}"))
                            .want(Want::No(404, "unknown_order"))
                            .group(g)
                            .target(&o);
                        p.body = body(&o);
                        v.push(p);
                    }
                }
                let mut p = post("unknown", &format!("/v1/orders/{NO_ORDER}/{verb}"))
                    .want(Want::No(404, "unknown_order"))
                    .reference("order")
                    .target(NO_ORDER);
                p.body = body(NO_ORDER);
                v.push(p);
            }
            OrderAssign => {
                let path = |o: &str| format!("/v1/orders/{o}/assign");
                let ours = if city { L } else { P };
                v.push(
                    post(&format!("own {}, {ours} serving X", fx.o_x), &path(&fx.o_x))
                        .json(json!({"member_id": ours}))
                        .target(&fx.o_x)
                        .effect(Effect::Claimed { member: ours.into(), assigned: true }),
                );
                v.push(
                    post(&format!("own {}, {N} of another community", fx.o_x), &path(&fx.o_x))
                        .json(json!({"member_id": N}))
                        .want(Want::No(422, "unknown_member"))
                        .group("member")
                        .about(&[N]),
                );
                v.push(
                    post(&format!("own {}, unknown member", fx.o_x), &path(&fx.o_x))
                        .json(json!({"member_id": NO_MEMBER}))
                        .want(Want::No(422, "unknown_member"))
                        .reference("member"),
                );
                if !city {
                    v.push(
                        post(&format!("foreign {} of {}", fx.o_y, fx.y), &path(&fx.o_y))
                            .json(json!({"member_id": N}))
                            .want(Want::No(404, "unknown_order"))
                            .group("order"),
                    );
                }
                v.push(
                    post("unknown order", &path(NO_ORDER))
                        .json(json!({"member_id": M}))
                        .want(Want::No(404, "unknown_order"))
                        .reference("order"),
                );
            }
            Rate => {
                v.push(
                    post("own work of M, made for it", "/v1/ratings")
                        .json(json!({"order_id": "{fresh}", "member_id": M, "rating": "good"}))
                        .fresh(Fresh::RatableOrder)
                        .check(Check::Keys(&["id", "name", "order_id", "offer_id", "rating", "hours", "points"]))
                        .effect(Effect::Rated { member: M.into(), rating: "good" }),
                );
                if !city {
                    v.push(
                        post(&format!("foreign {}, {N}'s work", fx.o_y), "/v1/ratings")
                            .json(json!({"order_id": fx.o_y, "member_id": N, "rating": "good"}))
                            .want(Want::No(404, "unknown_order"))
                            .group("order"),
                    );
                }
                v.push(
                    post("unknown order", "/v1/ratings")
                        .json(json!({"order_id": NO_ORDER, "member_id": N, "rating": "good"}))
                        .want(Want::No(404, "unknown_order"))
                        .reference("order"),
                );
            }

            // ---- reports
            ReportUnit => {
                for u in md.units.iter().cloned().chain([NO_UNIT.to_string()]) {
                    let known = md.units.contains(&u);
                    // A member's unit is theirs to read (read only); the rows, their own.
                    let (allowed, rows): (bool, BTreeSet<String>) = match w {
                        Who::Member(m) => (known && md.members[m].unit == u, set([m])),
                        _ => (
                            known && md.unit_rows(w, &u),
                            md.members
                                .iter()
                                .filter(|(id, f)| f.unit == u && md.work(w, id))
                                .map(|(id, _)| id.clone())
                                .collect(),
                        ),
                    };
                    for f in ["", "?format=csv"] {
                        let mut p = Probe::get(
                            if known { u.clone() } else { "unknown".into() },
                            format!("/v1/reports/units/{u}{f}"),
                        )
                        .scope(allowed, 404, "unknown_unit");
                        p = if f.is_empty() {
                            p.check(Check::Set { at: "/members", key: "id", want: rows.clone() })
                        } else {
                            p.check(Check::CsvRows(rows.clone()))
                        };
                        let g = if f.is_empty() { "unit" } else { "unit csv" };
                        p = if known { p.group(g) } else { p.reference(g) };
                        // docs/PROTOCOL.md names unit_admin and command; the rules give staff and
                        // members a scope here: either answer, and the scope if 2xx.
                        if matches!(w, Who::Staff(_) | Who::Member(_)) {
                            p.want.push(Want::No(403, "role_not_allowed"));
                        }
                        v.push(p);
                    }
                }
            }
            ReportCommunity => {
                for c in md.communities().into_iter().chain([NO_COMMUNITY.to_string()]) {
                    let known = md.district_of.contains_key(&c);
                    let allowed = known && md.business(w, &c);
                    let rows = if known { md.community_members(&c) } else { BTreeSet::new() };
                    for f in ["", "?format=csv"] {
                        let mut p = Probe::get(
                            if known { c.clone() } else { "unknown".into() },
                            format!("/v1/reports/communities/{c}{f}"),
                        )
                        .scope(allowed, 404, "unknown_community");
                        p = if f.is_empty() {
                            p.check(Check::Set { at: "/members", key: "id", want: rows.clone() })
                        } else {
                            p.check(Check::CsvRows(rows.clone()))
                        };
                        let g = if f.is_empty() { "community" } else { "community csv" };
                        v.push(if known { p.group(g) } else { p.reference(g) });
                    }
                }
            }

            // ---- incidents
            Raise => {
                let body = |g: &str| json!({"grid_id": g, "category": "patrol", "level": "III", "headcount": 1});
                v.push(
                    post("own grid in X", "/v1/incidents")
                        .json(body(&self.grid(&fx.x, 1)))
                        .effect(Effect::Raised { community: fx.x.clone() }),
                );
                if !city {
                    v.push(
                        post(&format!("foreign grid of {}", fx.y), "/v1/incidents")
                            .json(body(&self.grid(&fx.y, 1)))
                            .want(Want::No(403, "outside_scope"))
                            .group("grid"),
                    );
                }
                v.push(post("unknown grid", "/v1/incidents").json(body(NO_GRID)).reference("grid").want(if city {
                    Want::No(422, "unknown_grid")
                } else {
                    Want::No(403, "outside_scope")
                }));
            }
            IncidentList => v.push(Probe::get("", "/v1/incidents").check(Check::Set {
                at: "",
                key: "id",
                want: md.incidents.keys().filter(|i| md.incident(w, i)).cloned().collect(),
            })),
            IncidentGet | Timeline => {
                for i in md.incidents.keys().cloned().chain([NO_INCIDENT.to_string()]) {
                    let known = md.incidents.contains_key(&i);
                    let allowed = known && md.incident(w, &i);
                    let label = if known { format!("{i} of {}", md.incidents[&i].community) } else { "unknown".into() };
                    let path = template.replace("{id}", &i);
                    let p = Probe::get(label, path).scope(allowed, 404, "unknown_incident");
                    v.push(if known { p.group("incident") } else { p.reference("incident") });
                }
            }
            Escalate | Resolve | IncidentCancel | Whistle => {
                let verb = template.rsplit('/').next().unwrap();
                let path = |i: &str| format!("/v1/incidents/{i}/{verb}");
                let body = if op == Whistle { json!({"to": "paired_units"}) } else { json!({}) };
                if op == Whistle {
                    v.extend(self.whistles(w));
                } else {
                    let effect = match op {
                        Escalate => Effect::Escalated,
                        Resolve => Effect::Resolved,
                        _ => Effect::IncidentCancelled,
                    };
                    v.push(
                        post("own, made for it", &path("{fresh}"))
                            .json(body.clone())
                            .fresh(Fresh::Incident)
                            .effect(effect),
                    );
                }
                if !city {
                    v.push(
                        post(&format!("foreign {} of {}", fx.inc_y, fx.y), &path(&fx.inc_y))
                            .json(body.clone())
                            .want(Want::No(404, "unknown_incident"))
                            .group("incident"),
                    );
                }
                v.push(
                    post("unknown", &path(NO_INCIDENT))
                        .json(body)
                        .want(Want::No(404, "unknown_incident"))
                        .reference("incident"),
                );
            }

            // ---- wartime
            ImportCity => {
                let p = Probe::new("the city again", Method::PUT, "/v1/city").json(self.city_json.clone());
                // City command may import, but not while incidents are open.
                v.push(if city { p.want(Want::No(409, "open_incidents")) } else { p });
            }
            CityGeoImport => {
                let c: muster::domain::org::City = serde_json::from_value(self.city_json.clone()).unwrap();
                let fc = serde_json::to_value(muster::domain::geojson::export(&c, &c.members)).unwrap();
                // The dry run answers a report and changes nothing; applying is refused like
                // `PUT /v1/city` while incidents are open.
                v.push(Probe::new("dry run", Method::POST, "/v1/city/geojson?dry_run=true").json(fc.clone()));
                let p = Probe::new("apply", Method::POST, "/v1/city/geojson").json(fc);
                v.push(if city { p.want(Want::No(409, "open_incidents")) } else { p });
            }
            CityGeoExport => v.push(Probe::get("", template)),
            // ---- sign-in links: command invites staff and unit admins (a district's, in
            // its district); staff and unit admins invite the members whose record they
            // hold. A foreign id answers as an unknown one (422 unknown_*, an id in a body).
            Invite => match w {
                Who::City | Who::District(_) => {
                    for c in [&fx.x, &fx.y] {
                        v.push(
                            post(&format!("staff of {c}"), template)
                                .json(json!({"role": "staff", "community_id": c}))
                                .scope(md.business(w, c), 422, "unknown_community")
                                .group("invite staff"),
                        );
                    }
                    v.push(
                        post("staff of unknown", template)
                            .json(json!({"role": "staff", "community_id": NO_COMMUNITY}))
                            .want(Want::No(422, "unknown_community"))
                            .reference("invite staff"),
                    );
                    for u in [U, Q] {
                        v.push(
                            post(&format!("admin of {u}"), template)
                                .json(json!({"role": "unit_admin", "unit_id": u}))
                                .scope(md.unit_rows(w, u), 422, "unknown_unit")
                                .group("invite unit"),
                        );
                    }
                    v.push(
                        post("admin of unknown", template)
                            .json(json!({"role": "unit_admin", "unit_id": NO_UNIT}))
                            .want(Want::No(422, "unknown_unit"))
                            .reference("invite unit"),
                    );
                    v.push(
                        post("a member", template)
                            .json(json!({"role": "member", "member_id": M}))
                            .want(Want::No(403, "invitee_not_allowed")),
                    );
                }
                _ => {
                    for m in [M, P, N, L, S[0], NO_MEMBER] {
                        let known = md.members.contains_key(m);
                        let p = post(&format!("member {m}"), template)
                            .json(json!({"role": "member", "member_id": m}))
                            .scope(known && md.record(w, m), 422, "unknown_member");
                        v.push(if known { p.group("invite member") } else { p.reference("invite member") });
                    }
                    v.push(
                        post("staff", template)
                            .json(json!({"role": "staff", "community_id": fx.x}))
                            .want(Want::No(403, "invitee_not_allowed")),
                    );
                }
            },
            InviteBatch => {
                let mine: Vec<&str> = [M, P, N, L, S[0]].into_iter().filter(|m| md.record(w, m)).collect();
                let foreign: Vec<&str> = [M, P, N, L, S[0]].into_iter().filter(|m| !md.record(w, m)).collect();
                let csv = |ids: &[&str]| format!("member_id\n{}\n", ids.join("\n"));
                let members = matches!(w, Who::Staff(_) | Who::Unit(_));
                if !mine.is_empty() {
                    let p = Probe::new("own members", Method::POST, template);
                    v.push(Probe { body: Body::Csv(csv(&mine)), ..p }.want(if members {
                        Want::Ok
                    } else {
                        Want::No(403, "invitee_not_allowed")
                    }));
                }
                if let Some(f) = foreign.first() {
                    let p = Probe::new(format!("with {f}"), Method::POST, template);
                    v.push(Probe { body: Body::Csv(csv(&[f])), ..p }.want(if members {
                        Want::No(422, "unknown_member")
                    } else {
                        Want::No(403, "invitee_not_allowed")
                    }));
                }
            }
            InvitationList => v.push(Probe::get("", template)),
            InvitationRevoke => {
                v.push(post("unknown", "/v1/invitations/inv-999999/revoke").want(Want::No(404, "unknown_invitation")))
            }
            SessionRedeem => v.push(
                post("unknown code", template)
                    .json(json!({"code": "aaaaaaaaaaaaaaaaaaaaaaaaaa"}))
                    .want(Want::No(401, "unknown_invitation")),
            ),
            SessionRefresh => v.push(post("no cookie", template).want(Want::No(401, "unauthorized"))),
            SessionSignout => v.push(post("no cookie, a token without a session", template)),
            SessionList => v.push(Probe::get("", template).check(Check::Eq { at: "", want: json!([]) })),
            // The entries (JSON and CSV) go through the sweep's search for foreign ids like
            // every 2xx body; which decisions a district's command sees is tests/api/audit.rs's.
            Audit => {
                let kinds = [
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
                v.push(Probe::get("", template).check(Check::Sub {
                    at: "/entries",
                    key: "kind",
                    want: kinds.iter().map(|k| k.to_string()).collect(),
                }));
                v.push(Probe::get("csv", "/v1/audit?format=csv"));
                v.push(Probe::get("limit 0", "/v1/audit?limit=0").want(Want::No(400, "invalid_query")));
                v.push(Probe::get("unknown kind", "/v1/audit?kind=offer_sent").want(Want::No(400, "invalid_query")));
            }
            SessionRevoke => v.push(
                post("unknown", "/v1/sessions/nope-nope-nope-nope/revoke").want(Want::No(404, "unknown_session")),
            ),
            // Refused inputs only: an endpoint that is made would be sent the sweep's events.
            WebhookRegister => {
                v.push(
                    post("unknown type", template)
                        .json(json!({"url": "https://hooks.example/x", "types": ["offer.sent"]}))
                        .want(Want::No(422, "unknown_event_type")),
                );
                v.push(
                    post("not http", template)
                        .json(json!({"url": "ftp://hooks.example/x", "types": ["incident.raised"]}))
                        .want(Want::No(422, "invalid_webhook")),
                );
                v.push(
                    post("loopback", template)
                        .json(json!({"url": "http://127.0.0.1:9/x", "types": ["incident.raised"]}))
                        .want(Want::No(422, "webhook_url_not_allowed")),
                );
            }
            WebhookList => v.push(Probe::get("", template).check(Check::Eq { at: "/webhooks", want: json!([]) })),
            WebhookGet | WebhookDeadLetters => {
                v.push(Probe::get("unknown", template.replace("{id}", "wh-999")).want(Want::No(404, "unknown_webhook")))
            }
            WebhookDisable | WebhookEnable | WebhookRotate | WebhookReplay => {
                v.push(post("unknown", &template.replace("{id}", "wh-999")).want(Want::No(404, "unknown_webhook")))
            }
            CampaignMine => v.push(Probe::get("", template).check(Check::Eq { at: "/shifts", want: json!([]) })),
            CampaignServe => {
                let path = template.replace("{id}", "cmp-999").replace("{shift_id}", "am");
                let p = post("unknown", &path).want(Want::No(404, "unknown_campaign"));
                v.push(if template.ends_with("/ack") { p } else { p.json(json!({"lat": 30.6, "lng": 114.3})) });
            }
            CampaignUnavailable => v.push(
                post("unknown", &template.replace("{id}", "cmp-999"))
                    .json(json!({"start": "2026-08-02T00:00:00Z", "end": "2026-08-02T06:00:00Z"}))
                    .want(Want::No(404, "unknown_campaign")),
            ),
            // Refused inputs and unknown campaigns only: the campaigns' own test makes them.
            CampaignCreate => v.push(
                post("bad rules", template)
                    .json(json!({"name": "x", "start": "2026-08-02T00:00:00Z", "end": "2026-08-03T00:00:00Z",
                        "rules": {"max_hours_in_24h": 99.0, "min_rest_h": 8.0, "max_consecutive_days": 3, "max_distance_m": 5000.0}}))
                    .want(Want::No(422, "invalid_campaign")),
            ),
            CampaignList => v.push(Probe::get("", template).check(Check::Eq { at: "/campaigns", want: json!([]) })),
            CampaignGet => v.push(
                Probe::get("unknown", template.replace("{id}", "cmp-999")).want(Want::No(404, "unknown_campaign")),
            ),
            CampaignWrite | CampaignImport => {
                let path = template.replace("{id}", "cmp-999").replace("{site_id}", "s1").replace("{shift_id}", "am");
                let method = if template.ends_with("/close") || template.ends_with("/roster") || op == CampaignImport {
                    Method::POST
                } else {
                    Method::PUT
                };
                let body = if template.ends_with("/requirements") {
                    json!({"site_id": "s1", "shift_id": "am", "role": "queue_order", "headcount": 1})
                } else if template.contains("/shifts/") {
                    json!({"start": "2026-08-02T00:00:00Z", "end": "2026-08-02T06:00:00Z"})
                } else {
                    json!({"name": "x", "grid_id": "c001-g1"})
                };
                let p = Probe::new("unknown", method, path).want(Want::No(404, "unknown_campaign"));
                v.push(if op == CampaignImport || template.ends_with("/close") || template.ends_with("/roster") {
                    p
                } else {
                    p.json(body)
                });
            }
            PushKey => v.push(Probe::get("", template).want(Want::No(409, "push_not_configured"))),
            PushSubscribe => v.push(
                post("no key configured", template)
                    .json(json!({
                        "endpoint": "https://push.example/send/x",
                        "keys": {"p256dh": "B".repeat(87), "auth": "A".repeat(22)},
                    }))
                    .want(Want::No(409, "push_not_configured")),
            ),
            PushList => v.push(Probe::get("", template).check(Check::Eq { at: "", want: json!([]) })),
            PushUnsubscribe => v.push(
                Probe::new("unknown", Method::DELETE, template)
                    .json(json!({"endpoint": "https://push.example/send/x"}))
                    .want(Want::No(404, "unknown_push_subscription")),
            ),
            WebhookDelete => v.push(
                Probe::new("unknown", Method::DELETE, template.replace("{id}", "wh-999"))
                    .want(Want::No(404, "unknown_webhook")),
            ),
            // ---- residents (issue #20): no request or proposal exists in this city.
            ResidentCode => v.push(
                post("not a phone", template)
                    .json(json!({"community_id": fx.x, "phone": "1"}))
                    .want(Want::No(422, "invalid_phone")),
            ),
            ResidentSignIn => v.push(
                post("unknown challenge", template)
                    .json(json!({"challenge_id": "aaaaaaaaaaaaaaaaaaaaaaaaaa", "code": "123456"}))
                    .want(Want::No(401, "unknown_challenge")),
            ),
            ResidentLink => {
                for (label, c) in [("own", &fx.x), ("other side's", &fx.y)] {
                    let allowed = city || label == "own";
                    let p = Probe::get(format!("{label} {c}"), format!("/v1/communities/{c}/resident-link"));
                    v.push(p.scope(allowed, 404, "unknown_community").about(&[c]));
                }
                v.push(
                    Probe::get("unknown", format!("/v1/communities/{NO_COMMUNITY}/resident-link"))
                        .want(Want::No(404, "unknown_community")),
                );
            }
            RequestPlace => v.push(post("a request", template).json(json!({
                "category": "elderly_help", "description": "x", "grid_id": NO_GRID,
                "preferred_start": "2030-01-01T00:00:00Z", "preferred_end": "2030-01-02T00:00:00Z"}))),
            RequestConfirm => {
                v.push(post("unknown", &template.replace("{id}", "req-999")).json(json!({"rating": "good"})))
            }
            RequestList => v.push(Probe::get("", template).check(Check::Eq { at: "", want: json!([]) })),
            ProposalList => v.push(Probe::get("", template).check(Check::Eq { at: "", want: json!([]) })),
            RequestGet => v.push(
                Probe::get("unknown", template.replace("{id}", "req-999")).want(Want::No(404, "unknown_request")),
            ),
            RequestDispatch | RequestMerge | RequestDecline => {
                let body = match op {
                    RequestDispatch => {
                        json!({"window_start": "2030-01-01T00:00:00Z", "window_end": "2030-01-02T00:00:00Z", "slots": 1})
                    }
                    RequestMerge => json!({"order_id": fx.o_x}),
                    _ => json!({"reason": "oracle"}),
                };
                v.push(
                    post("unknown", &template.replace("{id}", "req-999"))
                        .json(body)
                        .want(Want::No(404, "unknown_request")),
                )
            }
            ProposalPost => v.push(
                post("no such grid", template)
                    .json(json!({"category": "elderly_help", "title": "t", "grid_id": NO_GRID, "for_whom": "x",
                        "window_start": "2030-01-01T00:00:00Z", "window_end": "2030-01-02T00:00:00Z"}))
                    .want(Want::No(422, "unknown_grid")),
            ),
            ProposalApprove | ProposalDecline => v.push(
                post("unknown", &template.replace("{id}", "prop-999"))
                    .json(json!({"reason": "oracle"}))
                    .want(Want::No(404, "unknown_proposal")),
            ),
            Revoke => v.push(
                post(&format!("member:{CANARY}"), "/v1/tokens/revoke")
                    .json(json!({"subject": format!("member:{CANARY}")}))
                    .effect(Effect::Revoked),
            ),
            CityMode => {
                let to = opposite(md.city_wartime);
                v.push(
                    Probe::new(format!("to {to}"), Method::PUT, "/v1/city/mode")
                        .json(json!({"mode": to, "reason": "oracle"}))
                        .effect(Effect::CityMode(to == "wartime")),
                );
            }
            DistrictMode => {
                let body = |d: &str| json!({"mode": opposite(md.wartime.get(d).copied().unwrap_or(false)), "reason": "oracle"});
                let own = if city { &fx.db } else { &fx.da };
                let to = opposite(md.wartime[own]);
                v.push(
                    Probe::new(format!("own {own} to {to}"), Method::PUT, format!("/v1/districts/{own}/mode"))
                        .json(body(own))
                        .effect(Effect::DistrictMode(own.clone(), to == "wartime")),
                );
                if !city {
                    v.push(
                        Probe::new(format!("foreign {}", fx.db), Method::PUT, format!("/v1/districts/{}/mode", fx.db))
                            .json(body(&fx.db))
                            .want(Want::No(404, "unknown_district"))
                            .group("district"),
                    );
                }
                v.push(
                    Probe::new("unknown", Method::PUT, format!("/v1/districts/{NO_DISTRICT}/mode"))
                        .json(body(NO_DISTRICT))
                        .want(Want::No(404, "unknown_district"))
                        .reference("district"),
                );
            }
            Mobilize => v.extend(self.mobilizations(w)),
            MobList => {
                let seen: Vec<&String> = md.mobs.keys().filter(|m| md.mob_seen(w, m)).collect();
                let mut p =
                    Probe::get("", "/v1/mobilizations").check(Check::Set { at: "", key: "id", want: set(&seen) });
                if matches!(w, Who::District(_)) {
                    let counts =
                        seen.iter().map(|m| (m.to_string(), json!(md.mob_part(w, &md.mobs[*m]).len()))).collect();
                    p = p.check(Check::Each { key: "id", field: "ordered", want: counts });
                }
                v.push(p);
            }
            MobGet => {
                for m in md.mobs.keys().cloned().chain([NO_MOBILIZATION.to_string()]) {
                    let known = md.mobs.contains_key(&m);
                    let allowed = known && md.mob_seen(w, &m);
                    let mut p =
                        Probe::get(if known { m.clone() } else { "unknown".into() }, format!("/v1/mobilizations/{m}"))
                            .scope(allowed, 404, "unknown_mobilization");
                    p = if known { p.group("mobilization") } else { p.reference("mobilization") };
                    if known && matches!(w, Who::District(_)) {
                        let part = md.mob_part(w, &md.mobs[&m]);
                        p = p
                            .check(Check::Set { at: "/teams", key: "id", want: set(part.iter().map(|o| &o.1)) })
                            .check(Check::Set { at: "/communities", key: "id", want: set(part.iter().map(|o| &o.2)) })
                            .check(Check::Sub {
                                at: "/teams/*/missing_members",
                                key: "member_id",
                                want: set(part.iter().map(|o| &o.0)),
                            })
                            .check(Check::Sub {
                                at: "/communities/*/missing_members",
                                key: "member_id",
                                want: set(part.iter().map(|o| &o.0)),
                            })
                            .check(Check::Eq { at: "/ordered", want: json!(part.len()) });
                    }
                    v.push(p);
                }
            }
            MobClose => {
                let path = |m: &str| format!("/v1/mobilizations/{m}/close");
                let fresh = if city { Fresh::MobAny } else { Fresh::MobA };
                v.push(
                    post("own, made for it", &path("{fresh}")).json(json!({})).fresh(fresh).effect(Effect::MobClosed),
                );
                if !city {
                    for (label, m) in [
                        (format!("{} reporting into A and B", fx.mob_all), &fx.mob_all),
                        (format!("foreign {} of B", fx.mob_b), &fx.mob_b),
                    ] {
                        let closable = md.mob_closable(w, m);
                        v.push(
                            post(&label, &path(m))
                                .json(json!({}))
                                .scope(closable, 404, "unknown_mobilization")
                                .group("mobilization"),
                        );
                    }
                }
                v.push(
                    post("unknown", &path(NO_MOBILIZATION))
                        .json(json!({}))
                        .want(Want::No(404, "unknown_mobilization"))
                        .reference("mobilization"),
                );
            }
            Balance => {
                let communities: BTreeSet<String> =
                    md.communities().into_iter().filter(|c| md.business(w, c)).collect();
                let mut p = Probe::get("", "/v1/balance").check(Check::Set {
                    at: "/communities",
                    key: "community_id",
                    want: communities.clone(),
                });
                p =
                    if w.command() {
                        p.check(Check::Sub { at: "/proposals", key: "from", want: communities.clone() })
                            .check(Check::Sub { at: "/proposals", key: "to", want: communities })
                    } else {
                        p.check(Check::Set { at: "/proposals", key: "id", want: BTreeSet::new() })
                    };
                v.push(p);
            }
            BalanceApply => {
                // Nobody available to move in a city at peace: scope passed, the proposal
                // does not hold (and an allowed transfer is not exercised here).
                let stale: &'static [&'static str] = &["not_wartime", "stale_proposal"];
                let (from, to, who) = if city { (&fx.y2, &fx.y, M9) } else { (&fx.x2, &fx.x, M7) };
                v.push(
                    post(&format!("own {from} to {to}"), "/v1/balance/apply")
                        .json(json!({"from": from, "to": to, "members": [who]}))
                        .want(Want::NoAny(409, stale)),
                );
                if !city {
                    v.push(
                        post(&format!("from foreign {}", fx.y), "/v1/balance/apply")
                            .json(json!({"from": fx.y, "to": fx.x, "members": [N]}))
                            .want(Want::No(404, "unknown_community"))
                            .group("community"),
                    );
                }
                v.push(
                    post("from unknown", "/v1/balance/apply")
                        .json(json!({"from": NO_COMMUNITY, "to": to, "members": [who]}))
                        .want(Want::No(404, "unknown_community"))
                        .reference("community"),
                );
            }
        }
        v
    }

    /// POST /v1/members and POST /v1/members/import.
    fn registrations(&self, op: Op, w: &Who) -> Vec<Probe> {
        let md = &self.md;
        let fx = &self.fx;
        let csv = op == Op::MemberImport;
        // What each token registers: a new member, one of its own again (at another grid of
        // the same community), that one with another unit or team (a taken id), a member of
        // another scope at a grid of its own.
        let (new_unit, new_team, new_grid, again, victim) = match w {
            Who::Unit(_) => (U, Some(T_UX), self.grid(&fx.x, 2), M2, Some(if csv { S[2] } else { S[0] })),
            Who::Staff(_) | Who::Member(_) => (O, None, self.grid(&fx.x, 2), M11, Some(S[0])),
            Who::District(_) => (Z, Some(T_ZW), self.grid(&fx.w, 1), M8, Some(if csv { S[3] } else { S[1] })),
            Who::City => (Q, Some(T_QY2), self.grid(&fx.y2, 1), M9, None),
        };
        let victim_grid = match w {
            Who::District(_) => self.grid(&fx.w, 0),
            _ => self.grid(&fx.x, 0),
        };
        let unit_column = !matches!(w, Who::Unit(_));
        let body = |id: &str, unit: &str, team: Option<&str>, grid: &str, pos: (f64, f64)| -> Body {
            if csv {
                let header = if unit_column {
                    "id,name,unit_id,team_id,residence_grid_id,skills,lat,lng,on_call"
                } else {
                    "id,name,team_id,residence_grid_id,skills,lat,lng,on_call"
                };
                let unit = if unit_column { format!("{unit},") } else { String::new() };
                Body::Csv(format!(
                    "{header}\n{id},新成员,{unit}{},{grid},medical,{},{},false\n",
                    team.unwrap_or(""),
                    pos.0,
                    pos.1
                ))
            } else {
                Body::Json(
                    json!({"id": id, "name": "新成员", "unit_id": unit, "team_id": team, "residence_grid_id": grid,
                    "skills": ["medical"], "position": {"lat": pos.0, "lng": pos.1}, "on_call": false}),
                )
            }
        };
        let path = if csv { "/v1/members/import" } else { "/v1/members" };
        let mut v = Vec::new();
        let id = format!("m9{:04}", self.next());
        let pos = self.new_position(&new_grid);
        let mut p = Probe::new(format!("new {id} at {new_grid}"), Method::POST, path).effect(Effect::Member {
            id: id.clone(),
            grid: new_grid.clone(),
            unit: new_unit.into(),
            team: new_team.map(str::to_string),
            position: Some(pos),
        });
        p.body = body(&id, new_unit, new_team, &new_grid, pos);
        v.push(p);
        if !csv {
            let f = &md.members[again];
            let c = md.community(again);
            let grid = md.grids_of[c].iter().find(|g| **g != f.grid).unwrap().clone();
            let pos = self.new_position(&grid);
            let mut p = Probe::new(format!("own {again} again, at {grid}"), Method::POST, path).about(&[again]).effect(
                Effect::Member {
                    id: again.into(),
                    grid: grid.clone(),
                    unit: f.unit.clone(),
                    team: f.team.clone(),
                    position: None,
                },
            );
            p.body = body(again, &f.unit, f.team.as_deref(), &grid, pos);
            v.push(p);
        }
        {
            // A taken id: the unit admin names its other team, the others another unit.
            let f = &md.members[again];
            let (unit, team) = match w {
                Who::Unit(_) => (U, Some(T_UY)),
                _ => (O, None),
            };
            let mut p = Probe::new(format!("taken id {again} with another unit or team"), Method::POST, path)
                .want(Want::No(409, "member_exists"))
                .reference("taken")
                .about(&[again]);
            p.body = body(again, unit, team, &f.grid, self.new_position(&f.grid));
            v.push(p);
        }
        if let Some(s) = victim {
            let f = &md.members[s];
            let mut p = Probe::new(
                format!("{s} of {} (another scope) at own {victim_grid}", md.community(s)),
                Method::POST,
                path,
            )
            .want(Want::No(409, "member_exists"))
            .group("taken")
            .about(&[s]);
            p.body = body(s, &f.unit, f.team.as_deref(), &victim_grid, self.new_position(&victim_grid));
            v.push(p);
        }
        if matches!(w, Who::Staff(_) | Who::District(_)) && !csv {
            let grid = self.grid(&fx.y, 2);
            let id = format!("m9{:04}", self.next());
            let mut p = Probe::new(format!("new {id} at foreign {grid}"), Method::POST, path)
                .want(Want::No(403, "outside_scope"));
            p.body = body(&id, O, None, &grid, self.new_position(&grid));
            v.push(p);
        }
        v
    }

    /// POST /v1/incidents/{id}/whistle on the caller's own incident (made for it).
    fn whistles(&self, w: &Who) -> Vec<Probe> {
        let md = &self.md;
        let x = &self.fx.x;
        let street = &md.street_of[x];
        let serving = |keep: &dyn Fn(&str) -> bool| -> BTreeSet<String> {
            md.units.iter().filter(|u| md.communities().iter().any(|c| keep(c) && md.serves(u, c))).cloned().collect()
        };
        let mut targets: Vec<(Value, String, BTreeSet<String>)> = vec![
            (json!("paired_units"), "paired_units".into(), serving(&|c| c == x)),
            (json!("street_units"), "street_units".into(), serving(&|c| md.street_of[c] == *street)),
        ];
        // Named units: among those serving the caller's community (staff), district
        // (district command), any (city); others answer as unknown.
        for u in [U, K, Z, V, Q] {
            targets.push((json!([u]), format!("[{u}]"), set([u])));
        }
        let mut v = Vec::new();
        for (to, label, units) in targets {
            let named = to.is_array();
            let allowed = if named {
                let u = units.iter().next().unwrap();
                match w {
                    Who::Staff(c) => md.serves(u, c),
                    _ => md.unit_rows(w, u),
                }
            } else {
                true
            };
            let mut p = Probe::new(format!("own incident, to {label}"), Method::POST, "/v1/incidents/{fresh}/whistle")
                .json(json!({"to": to}))
                .fresh(Fresh::WhistleIncident)
                .scope(allowed, 422, "unknown_unit");
            if allowed {
                p = p.effect(Effect::Whistled { units });
            } else {
                p = p.group("unit");
            }
            v.push(p);
        }
        v.push(
            Probe::new(format!("own incident, to [{NO_UNIT}]"), Method::POST, "/v1/incidents/{fresh}/whistle")
                .json(json!({"to": [NO_UNIT]}))
                .fresh(Fresh::WhistleIncident)
                .want(Want::No(422, "unknown_unit"))
                .reference("unit"),
        );
        v
    }

    /// POST /v1/mobilizations: teams, units, districts and places in scope or not.
    fn mobilizations(&self, w: &Who) -> Vec<Probe> {
        let md = &self.md;
        let fx = &self.fx;
        let mut v = Vec::new();
        let deadline = 600;
        let post = |label: String, body: Value| {
            let mut b = body;
            b["deadline_s"] = json!(deadline);
            Probe::new(label, Method::POST, "/v1/mobilizations").json(b)
        };
        let allowed_teams = |teams: BTreeSet<String>, to: Option<String>, label: String, body: Value| {
            post(label, body).effect(Effect::Mobilized { teams, to })
        };
        match w {
            Who::City => {
                v.push(allowed_teams(set([T_VY]), None, format!("teams [{T_VY}]"), json!({"teams": [T_VY]})));
            }
            _ => {
                let d = match w {
                    Who::District(d) => d.clone(),
                    _ => fx.da.clone(),
                };
                v.push(allowed_teams(set([T_UX]), None, format!("own teams [{T_UX}]"), json!({"teams": [T_UX]})));
                v.push(allowed_teams(
                    md.assault_teams(|t| t.unit == U),
                    None,
                    format!("own unit {U}"),
                    json!({"unit_id": U}),
                ));
                v.push(allowed_teams(
                    md.assault_teams(|t| md.district(&t.community) == d),
                    None,
                    format!("own district {d}"),
                    json!({"district_id": d}),
                ));
                let x = &fx.x;
                v.push(
                    post(
                        format!("foreign team {T_VY} (paired with {}) to own {x}", fx.y),
                        json!({"teams": [T_VY], "community_id": x}),
                    )
                    .scope(md.team(w, T_VY), 422, "unknown_team")
                    .group("team"),
                );
                v.push(
                    post(format!("foreign unit {Q}"), json!({"unit_id": Q}))
                        .scope(md.unit_rows(w, Q), 422, "unknown_unit")
                        .group("unit"),
                );
                v.push(
                    post(format!("foreign district {}", fx.db), json!({"district_id": fx.db}))
                        .want(Want::No(422, "unknown_district"))
                        .group("district"),
                );
                v.push(
                    post(
                        format!("own team {T_UX} to foreign {}", fx.y),
                        json!({"teams": [T_UX], "community_id": fx.y}),
                    )
                    .want(Want::No(422, "unknown_community"))
                    .group("community"),
                );
                let (lat, lng) = md.grid_center[&self.grid(&fx.y, 0)];
                v.push(
                    post(
                        format!("own team {T_UX} to a site in {}", fx.y),
                        json!({"teams": [T_UX], "site": {"name": "oracle site", "location": {"lat": lat, "lng": lng}}}),
                    )
                    .want(Want::No(403, "outside_scope")),
                );
            }
        }
        v.push(
            post("unknown team".into(), json!({"teams": [NO_TEAM], "community_id": fx.x}))
                .want(Want::No(422, "unknown_team"))
                .reference("team"),
        );
        v.push(
            post("unknown unit".into(), json!({"unit_id": NO_UNIT}))
                .want(Want::No(422, "unknown_unit"))
                .reference("unit"),
        );
        v.push(
            post("unknown district".into(), json!({"district_id": NO_DISTRICT}))
                .want(Want::No(422, "unknown_district"))
                .reference("district"),
        );
        v.push(
            post("own team to unknown community".into(), json!({"teams": [T_UX], "community_id": NO_COMMUNITY}))
                .want(Want::No(422, "unknown_community"))
                .reference("community"),
        );
        v
    }
}

// ---------------------------------------------------------------- running the probes

/// Every element of the array at `at` ("*" walks into each element of an array).
fn elements<'a>(v: &'a Value, at: &str) -> Vec<&'a Value> {
    let mut cur = vec![v];
    for seg in at.split('/').filter(|s| !s.is_empty()) {
        let mut next = Vec::new();
        for c in cur {
            if seg == "*" {
                next.extend(c.as_array().into_iter().flatten());
            } else if let Some(x) = c.get(seg) {
                next.push(x);
            }
        }
        cur = next;
    }
    cur.into_iter().flat_map(|c| c.as_array().into_iter().flatten()).collect()
}

/// The CSV records of a text (header included).
fn csv_records(text: &str) -> Vec<Vec<String>> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes())
        .records()
        .filter_map(Result::ok)
        .map(|r| r.iter().map(str::to_string).collect())
        .collect()
}

/// The words of a string that could be ids.
fn tokens(s: &str) -> impl Iterator<Item = &str> {
    s.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_')).filter(|t| !t.is_empty())
}

impl Sweep {
    async fn call(&self, token: &str, method: &Method, path: &str, body: &Body) -> Answer {
        let mut req = self.app.http.request(method.clone(), self.app.url(path)).bearer_auth(token);
        match body {
            Body::None => {}
            Body::Json(v) => req = req.json(v),
            Body::Csv(s) => req = req.header("content-type", "text/csv").body(s.clone()),
            Body::Stamp(_) => unreachable!("stamps are placed before sending"),
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let ctype = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        let text = resp.text().await.unwrap();
        let json = serde_json::from_str(&text).ok();
        Answer { status, ctype, text, json }
    }

    /// A setup call that must succeed with this status; its JSON.
    async fn must(&mut self, token: &str, method: Method, path: &str, body: Body, status: u16) -> Value {
        let a = self.call(token, &method, path, &body).await;
        assert_eq!(a.status, status, "setup {method} {path}: {}", a.text);
        self.snap = None;
        a.json.unwrap_or(Value::Null)
    }

    fn member_token(&self, m: &str) -> String {
        self.members[m].clone()
    }

    // ---- objects made for allowed writes (and by the scenario)

    async fn raise(&mut self, token: &str, community: &str, grid: usize, headcount: u32) -> String {
        let grid = self.grid(community, grid);
        let body = json!({"grid_id": grid, "category": "patrol", "level": "III", "headcount": headcount});
        let v = self.must(token, Method::POST, "/v1/incidents", Body::Json(body), 201).await;
        let id = v["id"].as_str().unwrap().to_string();
        self.md.incidents.insert(id.clone(), IncF { community: community.into(), ..Default::default() });
        id
    }

    async fn post_order(&mut self, token: &str, community: &str, skills: &[&str]) -> String {
        let now = chrono::Utc::now();
        let body = json!({"grid_id": self.grid(community, 0), "category": "nucleic_acid_testing", "title": "oracle",
            "window_start": (now - chrono::Duration::hours(1)).to_rfc3339(),
            "window_end": (now + chrono::Duration::hours(24)).to_rfc3339(), "slots": 10, "skills": skills});
        let v = self.must(token, Method::POST, "/v1/orders", Body::Json(body), 201).await;
        let id = v["id"].as_str().unwrap().to_string();
        let location = (v["location"]["lat"].as_f64().unwrap(), v["location"]["lng"].as_f64().unwrap());
        let skills = skills.iter().map(|s| s.to_string()).collect();
        self.md
            .orders
            .insert(id.clone(), OrdF { community: community.into(), location, skills, claims: BTreeMap::new() });
        id
    }

    async fn claim(&mut self, member: &str, order: &str) {
        let t = self.member_token(member);
        self.must(&t, Method::POST, &format!("/v1/orders/{order}/claim"), Body::None, 200).await;
        self.md.orders.get_mut(order).unwrap().claims.insert(member.into(), Vec::new());
    }

    /// A check-in or check-out position near the order's place, never used before.
    fn stamp_position(&self, order: &str) -> (f64, f64) {
        let (lat, lng) = self.md.orders.get(order).map(|o| o.location).unwrap_or((30.5, 114.3));
        let k = self.next() as f64;
        (lat + 0.0001 + k * 0.000_011_7, lng + 0.0001 + k * 0.000_008_3)
    }

    fn record_stamp(&mut self, member: &str, order: &str, pos: (f64, f64)) {
        if let Some(o) = self.md.orders.get_mut(order) {
            o.claims.entry(member.into()).or_default().push(pos);
        }
        self.md.positions.entry(member.into()).or_default().push(pos);
    }

    async fn stamp(&mut self, member: &str, order: &str, out: bool) {
        let t = self.member_token(member);
        let pos = self.stamp_position(order);
        let verb = if out { "checkout" } else { "checkin" };
        let v = self
            .must(
                &t,
                Method::POST,
                &format!("/v1/orders/{order}/{verb}"),
                Body::Json(json!({"lat": pos.0, "lng": pos.1})),
                200,
            )
            .await;
        let _ = v;
        self.record_stamp(member, order, pos);
    }

    async fn mobilize(&mut self, token: &str, teams: &[&str]) -> String {
        let v = self
            .must(token, Method::POST, "/v1/mobilizations", Body::Json(json!({"teams": teams, "deadline_s": 600})), 201)
            .await;
        let id = v["id"].as_str().unwrap().to_string();
        self.add_mob(&id, &set(teams), None);
        id
    }

    fn add_mob(&mut self, id: &str, teams: &BTreeSet<String>, to: Option<&str>) {
        let mut orders = Vec::new();
        for t in teams {
            let c = to.map(str::to_string).unwrap_or_else(|| self.md.teams[t].community.clone());
            for m in self.md.team_members(t) {
                if !orders.iter().any(|o: &(String, String, String)| o.0 == m) {
                    orders.push((m, t.clone(), c.clone()));
                }
            }
        }
        self.md.mobs.insert(id.into(), MobF { orders });
    }

    async fn fresh(&mut self, who: &Tok, f: Fresh) -> String {
        let city = self.city.clone();
        let x = self.fx.x.clone();
        match f {
            Fresh::Incident => self.raise(&city, &x, 2, 5).await,
            Fresh::WhistleIncident => {
                if let Some(id) = self.whistle_incidents.get(&who.name) {
                    return id.clone();
                }
                let id = self.raise(&city, &x, 2, 5).await;
                self.whistle_incidents.insert(who.name.clone(), id.clone());
                id
            }
            Fresh::Order => self.post_order(&city, &x, &[]).await,
            Fresh::ClaimedOrder | Fresh::CheckedInOrder | Fresh::RatableOrder => {
                let o = self.post_order(&city, &x, &[]).await;
                self.claim(M, &o).await;
                if f != Fresh::ClaimedOrder {
                    self.stamp(M, &o, false).await;
                }
                if f == Fresh::RatableOrder {
                    self.stamp(M, &o, true).await;
                }
                o
            }
            Fresh::MobA => self.mobilize(&city, &[T_ZW]).await,
            Fresh::MobAny => self.mobilize(&city, &[T_VY]).await,
        }
    }

    // ---- the state city command can read, to compare around a refused write

    fn snapshot_paths(&self) -> Vec<String> {
        let mut paths: Vec<String> = [
            "/v1/members",
            "/v1/incidents",
            "/v1/orders",
            "/v1/mobilizations",
            "/v1/registration",
            "/v1/balance",
            "/v1/fairness",
            "/v1/modes",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        paths.extend(self.md.members.keys().map(|m| format!("/v1/members/{m}")));
        paths.extend(self.md.incidents.keys().map(|i| format!("/v1/incidents/{i}/timeline")));
        paths.extend(self.md.mobs.keys().map(|m| format!("/v1/mobilizations/{m}")));
        paths
    }

    async fn take_snapshot(&self, paths: &[String]) -> Vec<(String, String)> {
        let reads = paths.iter().map(|p| async move {
            let a = self.call(&self.city, &Method::GET, p, &Body::None).await;
            // duty_hours moves with the clock (0.01 h steps) for a member on duty.
            let text = match a.json {
                Some(Value::Object(mut o)) if p.starts_with("/v1/members/") => {
                    o.remove("duty_hours");
                    Value::Object(o).to_string()
                }
                _ => a.text,
            };
            (p.clone(), format!("{} {text}", a.status))
        });
        futures_util::future::join_all(reads).await
    }

    async fn snapshot(&mut self) -> Vec<(String, String)> {
        if let Some(s) = &self.snap {
            return s.clone();
        }
        let paths = self.snapshot_paths();
        let s = self.take_snapshot(&paths).await;
        self.snap = Some(s.clone());
        s
    }

    /// After a write that should have been refused: what changed (and taint it).
    async fn compare(&mut self, before: &[(String, String)]) -> Vec<String> {
        let paths: Vec<String> = before.iter().map(|(p, _)| p.clone()).collect();
        let after = self.take_snapshot(&paths).await;
        let mut changed = Vec::new();
        for ((p, b), (_, a)) in before.iter().zip(&after) {
            if a != b {
                changed.push(p.clone());
                // A member whose residence, unit, team or home moved is out of the model's
                // reach from now on.
                let facts = |t: &str| {
                    let v: Value =
                        t.split_once(' ').and_then(|(_, j)| serde_json::from_str(j).ok()).unwrap_or_default();
                    ["residence_grid_id", "unit_id", "team_id", "home_community_id"].map(|k| v[k].clone())
                };
                if let Some(m) = p.strip_prefix("/v1/members/")
                    && facts(a) != facts(b)
                {
                    self.md.tainted.insert(m.to_string());
                }
            }
        }
        self.snap = if changed.is_empty() { Some(after) } else { None };
        changed
    }

    // ---- one operation, one token

    async fn run(&mut self, tok: &Tok, op: Op, template: &str) {
        let probes = self.plan(op, template, &tok.who);
        self.called.insert((op, tok.name.clone()));
        let mut answers: Vec<(Probe, Answer)> = Vec::new();
        for mut p in probes {
            if p.about.iter().any(|id| self.md.tainted.contains(id)) {
                *self.counts.entry("skipped: object changed by an earlier refused write").or_default() += 1;
                continue;
            }
            if let Some(f) = p.fresh {
                let id = self.fresh(tok, f).await;
                p.substitute(&id);
            }
            let mut stamp = None;
            let body = match &p.body {
                Body::Stamp(o) => {
                    let pos = self.stamp_position(o);
                    stamp = Some(pos);
                    Body::Json(json!({"lat": pos.0, "lng": pos.1}))
                }
                b => b.clone(),
            };
            let write = op.is_write();
            let may_succeed = p.want.contains(&Want::Ok);
            let before = if write { Some(self.snapshot().await) } else { None };
            let a = self.call(&tok.token, &p.method, &p.path, &body).await;
            *self.counts.entry(if write { "writes sent" } else { "reads sent" }).or_default() += 1;
            if std::env::var_os("MATRIX_TRACE").is_some() {
                eprintln!("{}: {} {} [{}] -> {} {}", tok.name, p.method, p.path, p.label, a.status, a.code());
            }
            let what = format!(
                "{} {} {}",
                p.method,
                p.path,
                if p.label.is_empty() { String::new() } else { format!("[{}]", p.label) }
            );
            let key = format!("{}|{}|{}|{}", tok.name, p.method, template, p.label);
            if a.status >= 500 {
                self.mismatch(format!("{key}|5xx"), format!("{}: {what}: {} {}", tok.name, a.status, a.short()));
            }
            if a.status >= 400 && !a.ctype.starts_with("application/problem+json") {
                self.mismatch(format!("{key}|ct"), format!("{}: {what}: {} is not problem+json", tok.name, a.status));
            }
            if !p.want.iter().any(|w| w.admits(&a)) {
                let want: Vec<String> = p.want.iter().map(|w| w.to_string()).collect();
                let want = want.join(" or ");
                let got = if a.ok() { a.status.to_string() } else { format!("{} {}", a.status, a.code()) };
                let key = format!("{}|{}|{template}|{want}|{got}", tok.name, p.method);
                // The first object's answer is shown; the others are listed.
                let item = if self.bad.iter().any(|(k, _, _)| *k == key) {
                    format!("[{}] {}", p.label, p.path)
                } else {
                    let body: String = a.text.replace('\n', "⏎").chars().take(240).collect();
                    format!("[{}] {} → {body}", p.label, p.path)
                };
                self.mismatch_for(
                    key,
                    format!("{}: {} {template}: expected {want}, got {got}, for", tok.name, p.method),
                    item,
                );
            }
            if a.ok() {
                for c in &p.checks {
                    if let Some(e) = check(c, &a, &self.md.tainted) {
                        self.mismatch(format!("{key}|{}", c.name()), format!("{}: {what}: {e}", tok.name));
                    }
                }
                if op != Op::Public && op != Op::GeoCommunity {
                    let content = if a.ctype.starts_with("text/csv") {
                        Content::Csv(a.text.clone())
                    } else {
                        a.json.clone().map_or(Content::Csv(a.text.clone()), Content::Json)
                    };
                    self.seen.push((tok.who.clone(), tok.name.clone(), what.clone(), content));
                }
            }
            if write {
                if a.ok() && may_succeed {
                    *self.counts.entry("allowed writes, effect read back").or_default() += 1;
                    self.snap = None;
                    if let Some(e) = p.effect.clone()
                        && let Some(err) = self.effect(&e, &p, &a, stamp).await
                    {
                        self.mismatch(format!("{key}|effect"), format!("{}: {what}: allowed, but {err}", tok.name));
                    }
                } else {
                    *self.counts.entry("refused writes, state compared").or_default() += 1;
                    if a.ok() {
                        // Answered 2xx where a refusal was due: what it names is left out of
                        // later checks (it has changed hands).
                        self.md.tainted.extend(p.about.iter().cloned());
                        if op == Op::Mobilize {
                            self.md.tainted.insert(a.field("id"));
                        }
                    }
                    let changed = self.compare(before.as_deref().unwrap()).await;
                    if !changed.is_empty() {
                        self.mismatch(
                            format!("{key}|changed"),
                            format!(
                                "{}: {what}: answered {} (a refusal was due) and changed what city command reads at {}",
                                tok.name,
                                a.status,
                                changed.join(", ")
                            ),
                        );
                    }
                    if op == Op::Revoke && !self.canary_ok().await {
                        self.mismatch(
                            format!("{key}|revoked"),
                            format!("{}: {what}: refused, yet the token is revoked", tok.name),
                        );
                    }
                }
            }
            answers.push((p, a));
        }
        self.compare_groups(tok, template, &answers);
    }

    /// A foreign object answers exactly like an unknown one.
    fn compare_groups(&mut self, tok: &Tok, template: &str, answers: &[(Probe, Answer)]) {
        let mut ids: Vec<String> = self.md.world().0.into_keys().collect();
        ids.extend(self.md.tainted.iter().cloned());
        ids.extend(
            [
                NO_MEMBER,
                NO_UNIT,
                NO_TEAM,
                NO_COMMUNITY,
                NO_GRID,
                NO_DISTRICT,
                NO_INCIDENT,
                NO_ORDER,
                NO_MOBILIZATION,
                &self.fx.da,
                &self.fx.db,
            ]
            .iter()
            .map(|s| s.to_string()),
        );
        ids.extend(self.md.teams.keys().cloned());
        ids.sort_by_key(|s| std::cmp::Reverse(s.len()));
        let norm = |a: &Answer| {
            let mut d = a.field("detail");
            for id in &ids {
                d = d.replace(id.as_str(), "<id>");
            }
            (a.status, a.code().to_string(), a.field("title"), d)
        };
        for (r, ra) in answers.iter().filter(|(p, _)| p.reference) {
            for (f, fa) in answers.iter().filter(|(p, _)| !p.reference && p.group == r.group) {
                if fa.ok() || ra.ok() {
                    continue;
                }
                *self.counts.entry("foreign answered like unknown (compared)").or_default() += 1;
                let (x, y) = (norm(fa), norm(ra));
                if x != y {
                    self.mismatch(
                        format!("{}|{}|{}|{}|alike", tok.name, f.method, template, f.label),
                        format!(
                            "{}: {} {} [{}] answers unlike [{}]: {} {} {:?} {:?} vs {} {} {:?} {:?}",
                            tok.name, f.method, f.path, f.label, r.label, x.0, x.1, x.2, x.3, y.0, y.1, y.2, y.3
                        ),
                    );
                }
            }
        }
    }

    /// A read as city command; its JSON (null if none).
    async fn read(&self, path: String) -> Value {
        self.call(&self.city, &Method::GET, &path, &Body::None).await.json.unwrap_or(Value::Null)
    }

    async fn canary_ok(&self) -> bool {
        self.call(&self.canary, &Method::GET, "/v1/catalog", &Body::None).await.status == 200
    }

    /// Reads back an allowed write's effect as city command; updates the model.
    async fn effect(&mut self, e: &Effect, p: &Probe, a: &Answer, stamp: Option<(f64, f64)>) -> Option<String> {
        let t = p.target.clone();
        match e {
            Effect::Member { id, grid, unit, team, position } => {
                let r = self.read(format!("/v1/members/{id}")).await;
                if r["residence_grid_id"] != json!(grid)
                    || r["unit_id"] != json!(unit)
                    || r["registered"] != json!(true)
                {
                    return Some(format!("the record reads {r}"));
                }
                let f = MemberF {
                    grid: grid.clone(),
                    unit: unit.clone(),
                    team: team.clone(),
                    skills: vec!["medical".into()],
                };
                match self.md.members.get_mut(id) {
                    Some(m) => m.grid = grid.clone(),
                    None => {
                        self.md.members.insert(id.clone(), f);
                    }
                }
                if let Some(p) = position {
                    self.md.positions.entry(id.clone()).or_default().push(*p);
                }
                if let Some(p) = r["position"].as_object() {
                    let p = (p["lat"].as_f64().unwrap(), p["lng"].as_f64().unwrap());
                    let known = self.md.positions.entry(id.clone()).or_default();
                    if !known.contains(&p) {
                        known.push(p);
                    }
                }
            }
            Effect::UnitRegistered { unit, community } => {
                let r = self.read("/v1/registration".into()).await;
                let row =
                    elements(&r, "/units").into_iter().find(|u| u["id"] == json!(unit)).cloned().unwrap_or_default();
                if !row["registered_communities"].as_array().is_some_and(|c| c.contains(&json!(community))) {
                    return Some(format!("the registration reads {row}"));
                }
                self.md.registrations.insert((unit.clone(), community.clone()));
            }
            Effect::OrderPosted { community } => {
                let id = a.field("id");
                let r = self.read(format!("/v1/orders/{id}")).await;
                let listed = self.read("/v1/orders".into()).await;
                if r["community_id"] != json!(community) || !elements(&listed, "").iter().any(|o| o["id"] == json!(id))
                {
                    return Some(format!("order {id} reads {r}, listed: {}", listed.to_string().contains(&id)));
                }
                let location = (r["location"]["lat"].as_f64().unwrap(), r["location"]["lng"].as_f64().unwrap());
                self.md.orders.insert(id, OrdF { community: community.clone(), location, ..Default::default() });
            }
            Effect::Claimed { member, assigned } => {
                let r = self.read(format!("/v1/orders/{t}")).await;
                let claim = elements(&r, "/claims").into_iter().find(|c| c["member_id"] == json!(member)).cloned();
                match claim {
                    // An assignment repeated by another token is answered as done.
                    Some(c) if !assigned || c["assigned"] == json!(true) => {}
                    _ => return Some(format!("order {t} has no claim of {member}: {r}")),
                }
                self.md.orders.get_mut(&t).unwrap().claims.entry(member.clone()).or_default();
            }
            Effect::OrderCancelled => {
                let r = self.read(format!("/v1/orders/{t}")).await;
                if r["status"] != "cancelled" {
                    return Some(format!("order {t} reads {r}"));
                }
            }
            Effect::Stamped { checkout } => {
                let pos = stamp.unwrap();
                let r = self.read(format!("/v1/orders/{t}")).await;
                let field = if *checkout { "checkout" } else { "checkin" };
                let claim = elements(&r, "/claims")
                    .into_iter()
                    .find(|c| c["member_id"] == json!(M))
                    .cloned()
                    .unwrap_or_default();
                if claim[field]["position"] != json!({"lat": pos.0, "lng": pos.1}) {
                    return Some(format!("order {t}'s claim reads {claim}"));
                }
                self.record_stamp(M, &t, pos);
            }
            Effect::Rated { member, rating } => {
                let order = p.body_field("order_id");
                let r = self.read(format!("/v1/orders/{order}")).await;
                let claim = elements(&r, "/claims")
                    .into_iter()
                    .find(|c| c["member_id"] == json!(member))
                    .cloned()
                    .unwrap_or_default();
                if claim["rating"] != json!(rating) {
                    return Some(format!("order {order}'s claim reads {claim}"));
                }
                // (The answer's shape is the Keys check's.)
                if a.json.as_ref().is_some_and(|j| {
                    j.get("rating").is_some() && (j["order_id"] != json!(order) || j["rating"] != json!(rating))
                }) {
                    return Some(format!("the answer names another rating: {}", a.short()));
                }
            }
            Effect::Raised { community } => {
                let id = a.field("id");
                let r = self.read(format!("/v1/incidents/{id}")).await;
                if r["community_id"] != json!(community) {
                    return Some(format!("incident {id} reads {r}"));
                }
                self.md.incidents.insert(id, IncF { community: community.clone(), ..Default::default() });
            }
            Effect::Escalated | Effect::Resolved | Effect::IncidentCancelled => {
                let r = self.read(format!("/v1/incidents/{t}")).await;
                let (field, want) = match e {
                    Effect::Escalated => ("level", "II"),
                    Effect::Resolved => ("status", "resolved"),
                    _ => ("status", "cancelled"),
                };
                if r[field] != want {
                    return Some(format!("incident {t} reads {field} {}", r[field]));
                }
            }
            Effect::Whistled { units } => {
                let r = self.read(format!("/v1/incidents/{t}")).await;
                let last = elements(&r, "/whistles")
                    .last()
                    .map(|w| set(elements(w, "/units").iter().map(|u| u["unit_id"].as_str().unwrap())));
                if last.as_ref() != Some(units) {
                    return Some(format!("incident {t}'s last whistle reached {last:?}, not {units:?}"));
                }
            }
            Effect::CityMode(wartime) => {
                let r = self.read("/v1/modes".into()).await;
                if r["city"] != opposite(!wartime) {
                    return Some(format!("the modes read {r}"));
                }
                self.md.city_wartime = *wartime;
            }
            Effect::DistrictMode(d, wartime) => {
                let r = self.read("/v1/modes".into()).await;
                let row =
                    elements(&r, "/districts").into_iter().find(|x| x["id"] == json!(d)).cloned().unwrap_or_default();
                if row["mode"] != opposite(!wartime) {
                    return Some(format!("the modes read {r}"));
                }
                self.md.wartime.insert(d.clone(), *wartime);
            }
            Effect::Mobilized { teams, to } => {
                let id = a.field("id");
                let r = self.read(format!("/v1/mobilizations/{id}")).await;
                let got = set(elements(&r, "/teams").iter().map(|t| t["id"].as_str().unwrap_or("")));
                if &got != teams {
                    return Some(format!("mobilization {id} orders teams {got:?}, not {teams:?}"));
                }
                self.add_mob(&id, teams, to.as_deref());
            }
            Effect::MobClosed => {
                let r = self.read(format!("/v1/mobilizations/{t}")).await;
                if r["status"] != "closed" {
                    return Some(format!("mobilization {t} reads {}", r["status"]));
                }
            }
            Effect::Revoked => {
                if self.canary_ok().await {
                    return Some(format!("a token of member:{CANARY} issued before is still accepted"));
                }
            }
        }
        None
    }

    /// The facts only the server decides, read as city command: who was offered what,
    /// who is engaged, which units registered where, which transfers are proposed.
    async fn refresh(&mut self) {
        let incidents = self.read("/v1/incidents".into()).await;
        let records =
            futures_util::future::join_all(self.md.members.keys().map(|m| self.read(format!("/v1/members/{m}")))).await;
        let registration = self.read("/v1/registration".into()).await;
        let balance = self.read("/v1/balance".into()).await;
        for inc in elements(&incidents, "") {
            let id = inc["id"].as_str().unwrap().to_string();
            let f = self.md.incidents.entry(id).or_insert_with(|| IncF {
                community: inc["community_id"].as_str().unwrap().to_string(),
                ..Default::default()
            });
            f.offers = elements(inc, "/offers")
                .iter()
                .map(|o| (o["offer_id"].as_str().unwrap().to_string(), o["member_id"].as_str().unwrap().to_string()))
                .collect();
            f.units = set(elements(inc, "/whistles/*/units").iter().map(|u| u["unit_id"].as_str().unwrap()));
        }
        for r in records {
            if let (Some(m), Some(o)) = (r["id"].as_str(), r["engaged_offer_id"].as_str()) {
                self.md.engaged.insert(m.into(), o.into());
            }
        }
        for u in elements(&registration, "/units") {
            for c in elements(u, "/registered_communities") {
                self.md.registrations.insert((u["id"].as_str().unwrap().into(), c.as_str().unwrap().into()));
            }
        }
        self.md.proposals = elements(&balance, "/proposals")
            .iter()
            .map(|p| {
                let ms = elements(p, "/members").iter().map(|m| m.as_str().unwrap().to_string()).collect();
                (p["from"].as_str().unwrap().into(), p["to"].as_str().unwrap().into(), ms)
            })
            .collect();
    }

    // ---- the leak scan

    /// Ids and positions outside the caller's scope in one answer or frame.
    fn leaks(&mut self, name: &str, what: &str, content: &Content, world: &World, vis: &Vis) {
        let mut found: BTreeSet<String> = BTreeSet::new();
        let mut word = |t: &str| {
            if let Some(kind) = world.0.get(t)
                && !vis.0.contains(t)
            {
                found.insert(format!("{kind} {t}"));
            }
        };
        let number = |x: f64, found: &mut BTreeSet<String>| {
            if let Some(desc) = world.1.get(&x.to_bits())
                && !vis.1.contains(&x.to_bits())
            {
                found.insert(desc.clone());
            }
        };
        let mut numbers = Vec::new();
        match content {
            Content::Json(v) => {
                fn walk<'a>(v: &'a Value, words: &mut Vec<&'a str>, numbers: &mut Vec<f64>) {
                    match v {
                        Value::String(s) => words.push(s),
                        Value::Number(n) => numbers.extend(n.as_f64()),
                        Value::Array(a) => a.iter().for_each(|x| walk(x, words, numbers)),
                        Value::Object(o) => o.iter().for_each(|(k, x)| {
                            words.push(k);
                            walk(x, words, numbers)
                        }),
                        _ => {}
                    }
                }
                let mut words = Vec::new();
                walk(v, &mut words, &mut numbers);
                for s in words {
                    tokens(s).for_each(&mut word);
                }
            }
            Content::Csv(text) => {
                for rec in csv_records(text) {
                    for cell in rec {
                        tokens(&cell).for_each(&mut word);
                        numbers.extend(cell.trim().parse::<f64>().ok());
                    }
                }
            }
        }
        for x in numbers {
            number(x, &mut found);
        }
        for f in found {
            self.mismatch_for(format!("{name}|{what}|leak"), format!("{name}: {what} carries, outside its scope:"), f);
        }
    }
}

type World = (HashMap<String, &'static str>, HashMap<u64, String>);
type Vis = (HashSet<String>, HashSet<u64>);

impl Probe {
    fn body_field(&self, k: &str) -> String {
        match &self.body {
            Body::Json(v) => v[k].as_str().unwrap_or("").to_string(),
            _ => String::new(),
        }
    }
}

impl Check {
    /// What it looks at, without what it wants (which grows as the sweep adds objects).
    fn name(&self) -> String {
        match self {
            Check::Set { at, key, .. } => format!("set {at} {key}"),
            Check::Sub { at, key, .. } => format!("sub {at} {key}"),
            Check::Eq { at, .. } => format!("eq {at}"),
            Check::Each { key, field, .. } => format!("each {key} {field}"),
            Check::Keys(_) => "keys".into(),
            Check::CsvRows(_) => "csv rows".into(),
        }
    }
}

/// A 2xx answer against one of the oracle's checks; the mismatch, if any.
fn check(c: &Check, a: &Answer, tainted: &BTreeSet<String>) -> Option<String> {
    let clean = |s: BTreeSet<String>| -> BTreeSet<String> { s.into_iter().filter(|x| !tainted.contains(x)).collect() };
    match c {
        Check::CsvRows(want) => {
            if !a.ctype.starts_with("text/csv") {
                return Some(format!("a CSV report answers {}", a.ctype));
            }
            let got = clean(csv_records(&a.text).into_iter().skip(2).filter_map(|r| r.first().cloned()).collect());
            let want = clean(want.clone());
            (got != want).then(|| format!("CSV rows {got:?}, expected {want:?}"))
        }
        _ => {
            let Some(j) = &a.json else { return Some(format!("not JSON: {}", a.short())) };
            match c {
                Check::Set { at, key, want } | Check::Sub { at, key, want } => {
                    let got =
                        clean(elements(j, at).iter().map(|e| e[*key].as_str().unwrap_or("?").to_string()).collect());
                    let want = clean(want.clone());
                    let ok = if matches!(c, Check::Set { .. }) { got == want } else { got.is_subset(&want) };
                    (!ok).then(|| {
                        let extra: Vec<_> = got.difference(&want).collect();
                        let missing: Vec<_> = want.difference(&got).collect();
                        if matches!(c, Check::Set { .. }) {
                            format!("{at} {key}s: {got:?}; expected {want:?} (out of scope: {extra:?}, missing: {missing:?})")
                        } else {
                            format!("{at} {key}s {extra:?} are outside the scope {want:?}")
                        }
                    })
                }
                Check::Eq { at, want } => {
                    let got = j.pointer(at).cloned().unwrap_or(Value::Null);
                    (got != *want).then(|| format!("{at} is {got}, expected {want}"))
                }
                Check::Each { key, field, want } => {
                    let mut out = Vec::new();
                    for e in elements(j, "") {
                        let id = e[*key].as_str().unwrap_or("");
                        if let Some(w) = want.get(id)
                            && e[*field] != *w
                        {
                            out.push(format!("{id}'s {field} is {}, expected {w} (its part)", e[*field]));
                        }
                    }
                    (!out.is_empty()).then(|| out.join("; "))
                }
                Check::Keys(keys) => {
                    let got: BTreeSet<&str> =
                        j.as_object().map(|o| o.keys().map(String::as_str).collect()).unwrap_or_default();
                    let want: BTreeSet<&str> = keys.iter().copied().collect();
                    (got != want).then(|| {
                        let extra: Vec<_> = got.difference(&want).collect();
                        format!("answers keys {extra:?} beyond the rating's {want:?}")
                    })
                }
                Check::CsvRows(_) => unreachable!(),
            }
        }
    }
}

// ---------------------------------------------------------------- the test

/// Every (method, path template) GET /openapi.json lists.
async fn endpoints(app: &TestApp) -> Vec<(String, String)> {
    let doc: Value = app.http.get(app.url("/openapi.json")).send().await.unwrap().json().await.unwrap();
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for m in ["get", "put", "post", "delete", "patch"] {
            if item.get(m).is_some() {
                out.push((m.to_uppercase(), path.clone()));
            }
        }
    }
    out
}

/// Reads a live socket until it is quiet: silent for a moment and its probes answered
/// with nothing before them (bounded; a closed socket fails the test).
async fn drain(ws: &mut Ws) -> Vec<Value> {
    let mut out = Vec::new();
    for _ in 0..5000 {
        if ws.quiet_for(Duration::from_millis(300)).await {
            break;
        }
        out.push(ws.next_frame().await);
    }
    out
}

/// A fresh socket from seq 0: every frame of the stream, up to the hello's last_seq.
async fn replay(app: &TestApp, token: &str) -> (Value, Vec<Value>) {
    let mut ws = app.ws(token, Some(0)).await;
    let last = ws.hello["data"]["last_seq"].as_u64().unwrap();
    let mut out = Vec::new();
    while out.len() < last as usize {
        out.push(ws.next_frame().await);
    }
    (ws.hello.clone(), out)
}

#[tokio::test]
async fn every_token_calls_every_endpoint_and_the_oracle_says_what_it_gets() {
    // Nothing moves with the clock while states are compared: no retries, long offers,
    // no rate limit on the read-backs, and no socket dropped for pings it did not answer
    // (the test reads each socket only between steps; on a loaded machine a walk of every
    // operation can outlast the 60 s of silence the default allows).
    let app = spawn_app_with(&[
        ("MUSTER_WS__PING_TIMEOUT_S", "3600"),
        ("MUSTER_DISPATCH__RETRY_S", "3600"),
        ("MUSTER_DISPATCH__OFFER_TTL_S", "3600"),
        ("MUSTER_DISPATCH__WARTIME__OFFER_TTL_S", "3600"),
        ("MUSTER_LIMITS__HTTP_PER_SUBJECT_PER_S", "1000000"),
        ("MUSTER_LIMITS__HTTP_PER_SUBJECT_BURST", "1000000"),
        ("MUSTER_LIMITS__HTTP_PER_IP_PER_S", "1000000"),
        ("MUSTER_LIMITS__HTTP_PER_IP_BURST", "1000000"),
    ])
    .await;
    let started = std::time::Instant::now();
    let (city_json, md, fx) = build_city();
    let city = app.command();
    let members = [M, M2, M14, N].iter().map(|m| (m.to_string(), app.member(m))).collect();
    let canary = app.member(CANARY);
    let mut s = Sweep {
        app,
        md,
        fx,
        city_json: city_json.clone(),
        city: city.clone(),
        members,
        canary,
        bad: Vec::new(),
        seen: Vec::new(),
        snap: None,
        counts: BTreeMap::new(),
        called: BTreeSet::new(),
        whistle_incidents: HashMap::new(),
        serial: Cell::new(0),
    };

    // ---- the city, imported by city command (an allowed write: read back)
    s.must(&city, Method::PUT, "/v1/city", Body::Json(city_json), 200).await;
    let communities = s.call(&city, &Method::GET, "/v1/communities", &Body::None).await;
    let listed = s.call(&city, &Method::GET, "/v1/members", &Body::None).await;
    assert_eq!(
        set(elements(communities.json.as_ref().unwrap(), "").iter().map(|c| c["id"].as_str().unwrap())),
        set(s.md.communities()),
        "the imported communities"
    );
    assert_eq!(
        set(elements(listed.json.as_ref().unwrap(), "").iter().map(|c| c["id"].as_str().unwrap())),
        set(s.md.members.keys()),
        "the imported members"
    );

    // ---- the tokens, and their sockets from the start
    let fx = s.fx.clone();
    let tokens = vec![
        Tok { name: format!("member {M}"), who: Who::Member(M.into()), token: s.app.member(M) },
        Tok {
            name: format!("unit admin of {U}"),
            who: Who::Unit(U.into()),
            token: s.app.token(Role::UnitAdmin, Some(U)),
        },
        Tok { name: format!("staff of {}", fx.x), who: Who::Staff(fx.x.clone()), token: s.app.staff(&fx.x) },
        Tok {
            name: format!("command of {}", fx.da),
            who: Who::District(fx.da.clone()),
            token: s.app.token(Role::Command, Some(&fx.da)),
        },
        Tok { name: "city command".into(), who: Who::City, token: city.clone() },
    ];
    let mut live = Vec::new();
    for t in &tokens {
        live.push(s.app.ws(&t.token, Some(0)).await);
    }
    let staff_x = tokens[2].token.clone();
    let cmd_a = tokens[3].token.clone();
    let staff_y = s.app.staff(&fx.y);

    // ---- the scenario: an incident on each side, offers answered, orders taken, worked
    // and rated on each side, three mobilizations (one reporting into both districts), a whistle.
    s.fx.inc_x = s.raise(&staff_x, &fx.x, 0, 2).await;
    s.fx.inc_y = s.raise(&staff_y, &fx.y, 0, 2).await;
    s.refresh().await;
    let offer_of =
        |s: &Sweep, inc: &str, m: &str| s.md.incidents[inc].offers.iter().find(|o| o.1 == m).map(|o| o.0.clone());
    let (inc_x, inc_y) = (s.fx.inc_x.clone(), s.fx.inc_y.clone());
    let offer = offer_of(&s, &inc_x, M).expect("M is offered X's incident");
    let mut phone = s.app.ws(&s.member_token(M), None).await;
    assert_eq!(phone.request("accept", json!({"offer_id": offer})).await["type"], "ok");
    if let Some(o) = offer_of(&s, &inc_y, N) {
        let mut n = s.app.ws(&s.member_token(N), None).await;
        assert_eq!(n.request("decline", json!({"offer_id": o, "reason": "busy"})).await["type"], "ok");
    }
    s.fx.o_x = s.post_order(&staff_x, &fx.x, &[]).await;
    s.fx.o_xskill = s.post_order(&staff_x, &fx.x, &["psychology"]).await;
    s.fx.o_y = s.post_order(&staff_y, &fx.y, &[]).await;
    let (o_x, o_y) = (s.fx.o_x.clone(), s.fx.o_y.clone());
    for (m, out) in [(M, true), (M2, true), (M14, false)] {
        s.claim(m, &o_x).await;
        s.stamp(m, &o_x, false).await;
        if out {
            s.stamp(m, &o_x, true).await;
        }
    }
    s.claim(N, &o_y).await;
    s.stamp(N, &o_y, false).await;
    s.stamp(N, &o_y, true).await;
    s.must(
        &staff_y,
        Method::POST,
        "/v1/ratings",
        Body::Json(json!({"order_id": o_y, "member_id": N, "rating": "fair"})),
        200,
    )
    .await;
    s.fx.mob_a = s.mobilize(&cmd_a, &[T_UX]).await;
    s.fx.mob_b = s.mobilize(&city, &[T_VY]).await;
    s.fx.mob_all = s.mobilize(&city, &[T_UX, T_VY, T_ZW, T_QY2]).await;
    s.must(
        &staff_y,
        Method::POST,
        &format!("/v1/incidents/{inc_y}/whistle"),
        Body::Json(json!({"to": "paired_units"})),
        200,
    )
    .await;
    s.refresh().await;

    // ---- the sweep: reads, writes, reads again
    let mut ops: Vec<(Op, String, String)> = Vec::new();
    for (method, path) in endpoints(&s.app).await {
        match classify(&method, &path) {
            Some(op) => ops.push((op, method, path)),
            None => s.mismatch(
                format!("unclassified {method} {path}"),
                format!("{method} {path} is listed by /openapi.json but the matrix does not classify it: add it to `classify` and the oracle"),
            ),
        }
    }
    for pass in ["reads", "writes", "reads again"] {
        for t in &tokens {
            for (op, _, path) in &ops {
                if op.is_write() == (pass == "writes") {
                    s.run(t, *op, path).await;
                }
            }
        }
    }
    for (op, method, path) in &ops {
        for t in &tokens {
            if !s.called.contains(&(*op, t.name.clone())) {
                s.mismatch(
                    format!("uncalled {method} {path} {}", t.name),
                    format!("{method} {path} was never called by {}", t.name),
                );
            }
        }
    }

    // ---- the leak scan: every 2xx body, every frame of every stream (live and replayed).
    // Every call above was answered, so its frames are published; `drain` stops at the
    // first silence its probes confirm.
    s.refresh().await;
    let world = s.md.world();
    let seen = std::mem::take(&mut s.seen);
    let mut vis: HashMap<String, Vis> = HashMap::new();
    for t in &tokens {
        vis.insert(t.name.clone(), s.md.visible(&t.who));
    }
    for (_, name, what, content) in &seen {
        s.leaks(name, what, content, &world, &vis[name]);
    }
    let mut frames = 0;
    for (t, ws) in tokens.iter().zip(live.iter_mut()) {
        let got_live = drain(ws).await;
        let (hello, got_log) = replay(&s.app, &t.token).await;
        for f in std::iter::once(&hello).chain(&got_live).chain(&got_log) {
            let what = format!("frame {} (seq {})", f["type"], f["seq"]);
            s.leaks(&t.name, &what, &Content::Json(f.clone()), &world, &vis[&t.name]);
        }
        let seqs: Vec<u64> = got_log.iter().map(|f| f["seq"].as_u64().unwrap()).collect();
        if seqs != (1..=seqs.len() as u64).collect::<Vec<_>>() {
            s.mismatch(format!("{} gaps", t.name), format!("{}: the stream has gaps: {seqs:?}", t.name));
        }
        let by_seq: HashMap<u64, &Value> = got_log.iter().map(|f| (f["seq"].as_u64().unwrap(), f)).collect();
        for f in &got_live {
            if by_seq.get(&f["seq"].as_u64().unwrap()) != Some(&f) {
                s.mismatch(
                    format!("{} live {}", t.name, f["seq"]),
                    format!("{}: live frame {f} is not the logged one", t.name),
                );
            }
        }
        frames += got_live.len() + got_log.len();
    }
    *s.counts.entry("frames searched").or_default() += frames;
    *s.counts.entry("2xx bodies searched").or_default() += seen.len();
    drop(phone);

    eprintln!(
        "authorization matrix: {} tokens x {} operations in {:.1} s; {:?}",
        tokens.len(),
        ops.len(),
        started.elapsed().as_secs_f64(),
        s.counts
    );
    let bad: Vec<String> = s
        .bad
        .iter()
        .map(|(_, t, items)| if items.is_empty() { t.clone() } else { format!("{t} {}", items.join("; ")) })
        .collect();
    s.app.stop().await;
    assert!(bad.is_empty(), "{} mismatches with the oracle:\n{}", bad.len(), bad.join("\n"));
}

/// A token whose scope claim is empty, or names a district, community, unit or member the
/// city does not hold, is refused (401) over HTTP and at the websocket handshake.
#[tokio::test]
async fn tokens_naming_no_scope_the_city_holds_are_refused() {
    let app = spawn_app().await;
    let keys = TokenKeys::new(SECRET);
    let now = muster::engine::now_ms() as u64 / 1000;
    let claims = |sub: &str, role: Role, scope: [Option<&str>; 4]| Claims {
        sub: sub.into(),
        role,
        district: scope[0].map(str::to_string),
        community: scope[1].map(str::to_string),
        unit: scope[2].map(str::to_string),
        member: scope[3].map(str::to_string),
        resident: None,
        sid: None,
        iat: now,
        exp: now + 600,
    };
    let m = app.city.members[0].clone();
    let cases = [
        ("command of district \"\"", claims("command:", Role::Command, [Some(""), None, None, None]), 401),
        ("command of district d99", claims("command:d99", Role::Command, [Some("d99"), None, None, None]), 401),
        ("staff of community \"\"", claims("staff:", Role::Staff, [None, Some(""), None, None]), 401),
        ("staff of community c999", claims("staff:c999", Role::Staff, [None, Some("c999"), None, None]), 401),
        ("unit admin of unit u999", claims("unit_admin:u999", Role::UnitAdmin, [None, None, Some("u999"), None]), 401),
        ("member m99999", claims("member:m99999", Role::Member, [None, None, None, Some("m99999")]), 401),
        // The same claims naming what the city holds are accepted: the refusals are the scope's.
        ("command of district d01", claims("command:d01", Role::Command, [Some("d01"), None, None, None]), 200),
        ("staff of community c001", claims("staff:c001", Role::Staff, [None, Some("c001"), None, None]), 200),
        (
            "unit admin of its unit",
            claims(&format!("unit_admin:{}", m.unit_id), Role::UnitAdmin, [None, None, Some(&m.unit_id), None]),
            200,
        ),
        ("member of the city", claims(&format!("member:{}", m.id), Role::Member, [None, None, None, Some(&m.id)]), 200),
    ];
    let mut bad = Vec::new();
    for (what, c, want) in cases {
        let token = keys.sign(&c);
        let http = app.get(&token, "/v1/catalog").await.status().as_u16();
        if http != want {
            bad.push(format!("{what}: GET /v1/catalog answers {http}, expected {want}"));
        }
        let url = format!("ws://{}/v1/ws?access_token={token}", app.addr);
        let ws = match tokio_tungstenite::connect_async(url).await {
            Ok(_) => 101,
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => resp.status().as_u16(),
            Err(e) => panic!("{what}: the handshake failed otherwise: {e}"),
        };
        let ws_want = if want == 200 { 101 } else { want };
        if ws != ws_want {
            bad.push(format!("{what}: the websocket handshake answers {ws}, expected {ws_want}"));
        }
    }
    app.stop().await;
    assert!(bad.is_empty(), "tokens fail open:\n{}", bad.join("\n"));
}

/// Whatever the role, an open socket is closed with 1008 when its token expires.
#[tokio::test]
async fn a_socket_of_any_role_is_closed_when_its_token_expires() {
    let app = spawn_app().await;
    let keys = TokenKeys::new(SECRET);
    let now = muster::engine::now_ms() as u64 / 1000;
    let m = &app.city.members[0];
    let scopes = [
        (Role::Command, None),
        (Role::Command, Some("d01".to_string())),
        (Role::Staff, Some("c001".to_string())),
        (Role::UnitAdmin, Some(m.unit_id.clone())),
        (Role::Member, Some(m.id.clone())),
    ];
    let mut sockets = Vec::new();
    for (role, scope) in scopes {
        let t = keys.sign(&Claims::new(role, scope, now, 2).unwrap());
        sockets.push((role, app.ws(&t, None).await));
    }
    let started = std::time::Instant::now();
    for (role, ws) in sockets.iter_mut() {
        assert_eq!(ws.close_code().await, Some(1008), "{role:?}");
    }
    // Closed by the expiry (≈ 2 s), not by the pings (every 15 s by default) nor never; 10 s
    // is the margin a loaded 2-core run of the whole suite needs (docs/PERFORMANCE.md).
    let took = started.elapsed();
    eprintln!("2-second tokens: every socket closed after {took:?}");
    assert!(took < Duration::from_secs(10), "closed late: {took:?}");
    app.stop().await;
}

/// Revoking a token before its exp (a lost phone, a staff member who left) is not built:
/// muster has no revocation list yet; a token is good until its exp.
#[tokio::test]
async fn a_revoked_token_is_refused_and_its_sockets_are_closed() {
    let app = spawn_app_with(&[("MUSTER_WS__PING_INTERVAL_S", "1"), ("MUSTER_WS__PING_TIMEOUT_S", "3")]).await;
    let member = app.member("m00001");
    let other = app.member("m00002");
    let mut ws = app.ws(&member, None).await;
    let mut control = app.ws(&other, None).await;
    // only city-wide command revokes
    let r = app.post(&app.staff("c001"), "/v1/tokens/revoke", json!({"subject": "member:m00001"})).await;
    assert_eq!(r.status(), 403);
    let r = app.post(&app.command(), "/v1/tokens/revoke", json!({"subject": "member:m00001"})).await;
    assert_eq!(r.status(), 204);
    // the open socket is closed with 1008, the token refused over HTTP and at the handshake
    assert_eq!(ws.close_code().await, Some(1008));
    let r = app.get(&member, "/v1/members/m00001").await;
    assert_eq!(r.status(), 401);
    assert!(r.text().await.unwrap().contains("revoked"));
    let url = format!("ws://{}/v1/ws?access_token={member}", app.addr);
    assert!(tokio_tungstenite::connect_async(url).await.is_err(), "the handshake refuses it");
    // another member's token and socket are untouched
    assert_eq!(control.request("ping", json!({})).await["type"], "ok");
    assert_eq!(app.get(&other, "/v1/members/m00002").await.status(), 200);
    // a token issued after the revocation works again
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let fresh = app.member("m00001");
    assert_eq!(app.get(&fresh, "/v1/members/m00001").await.status(), 200);
    app.stop().await;
}
