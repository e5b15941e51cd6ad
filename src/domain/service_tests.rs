//! Peacetime service domain tests: registration (双报到), service orders (the hard-order
//! reservation, the easy-order cap), geofenced service records, ratings and points (orders
//! and wartime assignments), the points/hours exchange, reliability and its wartime
//! tie-break, all driven through `execute` with time passed in, and replayed through `apply`.
//!
//! The fixture is the wartime tests' row of resolution-9 cells running east, two cells per
//! grid:
//!
//! ```text
//! district d1                                                       | d2
//! street s1                                          | s2           | s3
//! c1: g1 g2 g3                  | c2: g4 g5          | c3: g6       | c4: g7
//! ```
//!
//! Units u1..u4; team t1 (u1) and w1 (u1) are paired with c1, t2 (u2) with c1, t3 (u3)
//! with c2, t4 (u4) with c4. Rules are `Rules::for_tests()`: service geofence 200 m, 3 easy
//! orders a week, hard orders reserved 600 s for 2 members a slot, weights 1.2 / 1.0 / 0.6,
//! 10 points an hour; "patrol" is difficulty 1 (easy), "rescue" 5 (hard).

use std::collections::{BTreeMap, BTreeSet, HashSet};

use serde_json::json;

use super::dispatcher::{Actor, Command, ErrorKind, Outcome, Reply, rfc3339};
use super::event::{Event, EventBody, Mode};
use super::fixtures::{in_cell, member};
use super::geo::Position;
use super::org::{City, Member};
use super::response::Level;
use super::service::{self, Credit, Currency, OrderStatus, PostOrder, Rating, TaskRef};
use super::testkit::*;

// ---------------------------------------------------------------------------------------
// Fixture: places (as in wartime_tests)
// ---------------------------------------------------------------------------------------

fn service_city(members: Vec<Member>) -> City {
    super::fixtures::two_districts("service", members)
}

/// A position due north of `p` whose distance from it, rounded to 0.1 m as the domain
/// rounds a stamp's distance, is exactly `metres` (a multiple of 0.1).
fn north_of(p: Position, metres: f64) -> Position {
    let (mut lo, mut hi) = (0.0, metres / 50_000.0);
    for _ in 0..200 {
        let mid = (lo + hi) / 2.0;
        if p.distance_m(Position::new(p.lat + mid, p.lng).unwrap()) < metres {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let q = Position::new(p.lat + (lo + hi) / 2.0, p.lng).unwrap();
    assert_eq!((p.distance_m(q) * 10.0).round() / 10.0, metres);
    q
}

// ---------------------------------------------------------------------------------------
// Fixture: actors and commands
// ---------------------------------------------------------------------------------------

/// An order in `grid` with a 30-day window from T0 and the category's difficulty.
fn order(grid: &str, category: &str, slots: u32) -> PostOrder {
    PostOrder {
        grid_id: Some(grid.into()),
        location: None,
        category: category.into(),
        difficulty: None,
        title: format!("{category} in {grid}"),
        note: None,
        window_start: T0,
        window_end: T0 + 30 * DAY * 1000,
        slots,
        skills: Vec::new(),
    }
}

fn with_difficulty(mut o: PostOrder, d: u8) -> PostOrder {
    o.difficulty = Some(d);
    o
}

fn claim(order_id: &str) -> Command {
    Command::ClaimOrder { order_id: order_id.into(), assign_to: None }
}

fn assign(order_id: &str, member_id: &str) -> Command {
    Command::ClaimOrder { order_id: order_id.into(), assign_to: Some(member_id.into()) }
}

fn checkin(order_id: &str, position: Position) -> Command {
    Command::CheckIn { order_id: order_id.into(), position }
}

fn checkout(order_id: &str, position: Position) -> Command {
    Command::CheckOut { order_id: order_id.into(), position }
}

fn rate_order(order_id: &str, member_id: &str, rating: Rating) -> Command {
    Command::Rate { task: TaskRef::Order(order_id.into()), member_id: member_id.into(), rating }
}

fn rate_offer(offer_id: &str, member_id: &str, rating: Rating) -> Command {
    Command::Rate { task: TaskRef::Offer(offer_id.into()), member_id: member_id.into(), rating }
}

fn exchange(member_id: &str, from: Currency, amount: f64) -> Command {
    Command::Exchange { member_id: member_id.into(), from, amount }
}

fn cancel_order(order_id: &str) -> Command {
    Command::CancelOrder { order_id: order_id.into(), reason: Some("rain".into()) }
}

fn register(members: Vec<Member>) -> Command {
    Command::Register { members }
}

// ---------------------------------------------------------------------------------------
// Fixture: the world (the driver is `testkit::World`)
// ---------------------------------------------------------------------------------------

/// `service_city` with these members, imported by the system at `T0`.
fn world(members: Vec<Member>) -> World {
    World::with_city(service_city(members))
}

impl World {
    #[track_caller]
    fn post(&mut self, actor: &Actor, o: PostOrder) -> String {
        match self.ok(actor, Command::PostOrder(o)).reply {
            Some(Reply::Order(id)) => id,
            other => panic!("expected an order reply, got {other:?}"),
        }
    }

    #[track_caller]
    fn claim(&mut self, member_id: &str, order_id: &str) -> Outcome {
        self.ok(&as_member(member_id), claim(order_id))
    }

    /// Checks in at the order's place now and out `secs` later, both inside the geofence.
    #[track_caller]
    fn work(&mut self, member_id: &str, order_id: &str, secs: i64) {
        let here = self.place(order_id);
        let start = (self.now - T0) / 1000;
        self.ok(&as_member(member_id), checkin(order_id, here));
        self.at(start + secs).ok(&as_member(member_id), checkout(order_id, here));
    }

    #[track_caller]
    fn arrive(&mut self, member_id: &str, incident_id: &str) -> Outcome {
        let offer = self.offer_id(incident_id, member_id);
        let position = self.state.incidents[incident_id].location;
        self.ok(&as_member(member_id), Command::Arrive { offer_id: offer, position })
    }

    fn place(&self, order_id: &str) -> Position {
        self.state.orders[order_id].location
    }

    fn ledger(&self, member_id: &str) -> &service::Ledger {
        &self.rt(member_id).ledger
    }

    fn figures(&self, member_id: &str) -> service::Figures {
        service::figures(&self.state, self.idx(member_id), i64::MIN, self.now + 1)
    }

    fn claim_of(&self, order_id: &str, member_id: &str) -> &service::OrderClaim {
        self.state.orders[order_id]
            .claim_of(self.idx(member_id))
            .unwrap_or_else(|| panic!("{member_id} took no {order_id}"))
    }
}

#[track_caller]
fn assert_close(got: f64, want: f64) {
    assert!((got - want).abs() < 1e-9, "got {got}, want {want}");
}

fn the_rated(out: &Outcome) -> (f64, u8, f64) {
    match out.events.as_slice() {
        [Event { body: EventBody::Rated { hours, difficulty, points, .. }, .. }] => (*hours, *difficulty, *points),
        other => panic!("expected one rated event, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// Points
// ---------------------------------------------------------------------------------------

#[test]
fn points_are_hours_times_difficulty_times_the_rating_weight_for_an_order() {
    let mut w = world(vec![member("a", "g1"), member("b", "g1"), member("c", "g2")]);
    let id = w.post(&staff("c1"), with_difficulty(order("g1", "patrol", 3), 3));
    for m in ["a", "b", "c"] {
        w.at(60).claim(m, &id);
    }
    assert_eq!(w.state.orders[&id].status, OrderStatus::Full);
    let here = w.place(&id);
    for m in ["a", "b", "c"] {
        w.at(600).ok(&as_member(m), checkin(&id, here));
    }
    // 2 h 30 min on the spot
    for m in ["a", "b", "c"] {
        w.at(600 + 2 * H + 30 * 60).ok(&as_member(m), checkout(&id, here));
    }
    for m in ["a", "b", "c"] {
        let c = w.claim_of(&id, m);
        assert!(c.counted(), "{m}");
        assert_close(c.hours, 2.5);
        assert_close(w.ledger(m).hours_balance, 2.5);
        assert_close(w.ledger(m).points_balance, 0.0);
    }

    let cases = [("a", Rating::VeryGood, 9.0), ("b", Rating::Good, 7.5), ("c", Rating::Fair, 4.5)];
    for (m, rating, points) in cases {
        let out = w.at(3 * H).ok(&staff("c1"), rate_order(&id, m, rating));
        let (hours, difficulty, got) = the_rated(&out);
        assert_close(hours, 2.5);
        assert_eq!(difficulty, 3);
        assert_close(got, points);
        assert_eq!(w.claim_of(&id, m).rating, Some(rating));
        let l = w.ledger(m);
        assert_eq!(
            l.credits,
            [Credit {
                at: T0 + (600 + 2 * H + 30 * 60) * 1000,
                task: format!("order:{id}"),
                hours: 2.5,
                difficulty: 3,
                rating: Some(rating),
                points,
            }]
        );
        assert_close(l.points_balance, points);
        assert_close(l.hours_balance, 2.5);
        let f = frames_of(&out.frames, &format!("member:{m}"), "rating");
        assert_eq!(f.len(), 1);
        assert_eq!(
            *f[0].data,
            json!({"order_id": id, "offer_id": null, "rating": rating, "hours": 2.5, "points": points})
        );
        let fig = w.figures(m);
        assert_close(fig.hours, 2.5);
        assert_close(fig.points, points);
        assert_eq!(fig.tasks_by_difficulty, [0, 0, 1, 0, 0]);
    }
    let fig = w.figures("a");
    assert_eq!((fig.ratings.very_good, fig.ratings.good, fig.ratings.fair), (1, 0, 0));
    // credits count at check-out: a period that ends before it sees nothing
    let before = service::figures(&w.state, w.idx("a"), i64::MIN, T0 + (600 + 2 * H) * 1000);
    assert_eq!(before, service::Figures::default());

    // A hard order: 1 h 20 min is 1.33 h (rounded to the hundredth), × 5 × 1.2 = 7.98.
    let hard = w.at(4 * H).post(&staff("c1"), order("g2", "rescue", 1));
    w.ok(&staff("c1"), assign(&hard, "a"));
    w.work("a", &hard, 80 * 60);
    assert_close(w.claim_of(&hard, "a").hours, 1.33);
    let out = w.ok(&staff("c1"), rate_order(&hard, "a", Rating::VeryGood));
    assert_eq!(the_rated(&out), (1.33, 5, 7.98));
    assert_close(w.ledger("a").points_balance, 9.0 + 7.98);
    assert_close(w.ledger("a").hours_balance, 2.5 + 1.33);
    assert_eq!(w.figures("a").tasks_by_difficulty, [0, 0, 1, 0, 1]);
}

#[test]
fn a_wartime_assignment_is_rated_once_after_resolve_from_accepting_to_resolving() {
    let mut w = world(vec![member("a", "g1"), member("b", "g1"), member("far", "g7")]);
    let (inc, out) = w.raise(&city_command(), rescue("g1", Level::IV, 1));
    assert_eq!(sent_to(&out), ["a", "b"]);
    let (off_a, off_b) = (w.offer_id(&inc, "a"), w.offer_id(&inc, "b"));
    w.at(30).accept("a", &inc); // filled: b's offer is revoked

    // accepted but not arrived: did not work
    let e = w.refuse(&staff("c1"), rate_offer(&off_a, "a", Rating::Good));
    assert_err(&e, ErrorKind::Invalid, "did_not_work");
    w.at(300).arrive("a", &inc);
    // arrived, but the incident is still open
    let e = w.refuse(&staff("c1"), rate_offer(&off_a, "a", Rating::Good));
    assert_err(&e, ErrorKind::Conflict, "task_not_finished");

    w.at(30 + 3 * H).ok(&city_command(), resolve(&inc));
    // the revoked member, a member who was never offered, someone else's offer, nobody
    for (offer, m) in [(&off_b, "b"), (&off_a, "far"), (&off_a, "b"), (&off_a, "nobody")] {
        let e = w.refuse(&staff("c1"), rate_offer(offer, m, Rating::Good));
        assert_err(&e, ErrorKind::Invalid, "did_not_work");
    }
    // outside the rater's scope, the offer does not exist
    let e = w.refuse(&staff("c2"), rate_offer(&off_a, "a", Rating::Good));
    assert_err(&e, ErrorKind::NotFound, "unknown_task");
    let e = w.refuse(&staff("c1"), rate_offer("off-999", "a", Rating::Good));
    assert_err(&e, ErrorKind::NotFound, "unknown_task");
    // members and unit admins do not rate
    for actor in [as_member("a"), unit_admin("u1")] {
        let e = w.refuse(&actor, rate_offer(&off_a, "a", Rating::Good));
        assert_err(&e, ErrorKind::Forbidden, "role_not_allowed");
    }

    // hours run from accepting (30 s) to resolving (30 s + 3 h): 3 h × 5 × 1.2 = 18
    let out = w.at(4 * H).ok(&staff("c1"), rate_offer(&off_a, "a", Rating::VeryGood));
    assert_eq!(the_rated(&out), (3.0, 5, 18.0));
    match &out.events[0].body {
        EventBody::Rated { order_id, offer_id, incident_id, .. } => {
            assert_eq!((order_id, offer_id, incident_id), (&None, &Some(off_a.clone()), &Some(inc.clone())));
        }
        other => panic!("{other:?}"),
    }
    let l = w.ledger("a");
    assert_eq!(
        l.credits,
        [Credit {
            at: T0 + 4 * H * 1000,
            task: format!("offer:{off_a}"),
            hours: 3.0,
            difficulty: 5,
            rating: Some(Rating::VeryGood),
            points: 18.0
        }]
    );
    assert_close(l.points_balance, 18.0);
    assert_close(l.hours_balance, 3.0);
    let f = frames_of(&out.frames, "member:a", "rating");
    assert_eq!(
        *f[0].data,
        json!({"order_id": null, "offer_id": off_a, "rating": "very_good", "hours": 3.0, "points": 18.0})
    );
    let e = w.refuse(&city_command(), rate_offer(&off_a, "a", Rating::Fair));
    assert_err(&e, ErrorKind::Conflict, "already_rated");
    let fig = w.figures("a");
    assert_eq!((fig.offered, fig.accepted, fig.arrived, fig.reliability), (1, 1, 1, Some(1.0)));
    assert_eq!(fig.tasks_by_difficulty, [0, 0, 0, 0, 1]);
}

#[test]
fn an_order_rating_needs_a_counted_record_and_is_given_once() {
    let mut w = world(vec![member("a", "g1"), member("b", "g1"), member("idle", "g1"), member("x", "g4")]);
    let id = w.post(&staff("c1"), with_difficulty(order("g1", "patrol", 3), 3));
    w.claim("a", &id);
    w.claim("b", &id);
    let here = w.place(&id);
    w.ok(&as_member("b"), checkin(&id, here));
    // claimed but never checked in / checked in but not out / never claimed / not of c1
    for m in ["a", "b", "idle", "x", "nobody"] {
        let e = w.refuse(&staff("c1"), rate_order(&id, m, Rating::Good));
        assert_err(&e, ErrorKind::Invalid, "did_not_work");
    }
    w.at(H).ok(&as_member("b"), checkout(&id, here));
    let e = w.refuse(&staff("c2"), rate_order(&id, "b", Rating::Good));
    assert_err(&e, ErrorKind::NotFound, "unknown_order");
    let e = w.refuse(&as_member("b"), rate_order(&id, "b", Rating::VeryGood));
    assert_err(&e, ErrorKind::Forbidden, "role_not_allowed");
    let out = w.ok(&staff("c1"), rate_order(&id, "b", Rating::Good));
    assert_eq!(the_rated(&out), (1.0, 3, 3.0));
    let e = w.refuse(&city_command(), rate_order(&id, "b", Rating::VeryGood));
    assert_err(&e, ErrorKind::Conflict, "already_rated");
    assert_close(w.ledger("b").points_balance, 3.0);
}

// ---------------------------------------------------------------------------------------
// The easy-order cap
// ---------------------------------------------------------------------------------------

#[test]
fn a_fourth_easy_order_in_seven_days_is_refused_and_allowed_again_after_seven_days_while_hard_orders_are_not_capped() {
    let mut w = world(vec![member("a", "g1"), member("b", "g2")]);
    let easy: Vec<String> = (0..7).map(|_| w.post(&staff("c1"), order("g1", "patrol", 2))).collect();
    w.at(0).claim("a", &easy[0]);
    w.at(H).claim("a", &easy[1]);
    w.at(2 * H).claim("a", &easy[2]);
    assert_eq!(w.ledger("a").easy_orders, [T0, T0 + H * 1000, T0 + 2 * H * 1000]);

    let e = w.at(3 * H).refuse(&as_member("a"), claim(&easy[3]));
    assert_err(&e, ErrorKind::Conflict, "easy_cap");
    // staff cannot assign past the cap either
    let e = w.refuse(&staff("c1"), assign(&easy[3], "a"));
    assert_err(&e, ErrorKind::Conflict, "easy_cap");
    // another member has their own cap
    w.claim("b", &easy[3]);
    // difficulty 2 is still easy; 3 (normal) and 5 (hard) are not capped
    let e = w.refuse(&as_member("a"), claim(&easy[4]));
    assert_err(&e, ErrorKind::Conflict, "easy_cap");
    let normal = w.post(&staff("c1"), with_difficulty(order("g1", "patrol", 1), 3));
    w.claim("a", &normal);
    let hard = w.post(&staff("c1"), order("g1", "rescue", 1));
    assert!(w.state.orders[&hard].priority.contains(&w.idx("a")), "a has done no hard work");
    w.claim("a", &hard);
    let hard2 = w.post(&staff("c1"), order("g1", "rescue", 1));
    w.ok(&staff("c1"), assign(&hard2, "a"));
    assert_eq!(w.ledger("a").easy_orders.len(), 3, "only easy orders count");

    // a moment before the first is 7 days old: still capped; at 7 days: allowed
    let e = w.at(WEEK - 1).refuse(&as_member("a"), claim(&easy[4]));
    assert_err(&e, ErrorKind::Conflict, "easy_cap");
    w.at(WEEK).claim("a", &easy[4]);
    assert_eq!(w.ledger("a").easy_orders, [T0 + H * 1000, T0 + 2 * H * 1000, T0 + WEEK * 1000]);
    let e = w.at(WEEK + 1).refuse(&as_member("a"), claim(&easy[5]));
    assert_err(&e, ErrorKind::Conflict, "easy_cap");
    w.at(WEEK + H).ok(&staff("c1"), assign(&easy[5], "a"));
    let e = w.at(WEEK + H).refuse(&as_member("a"), claim(&easy[6]));
    assert_err(&e, ErrorKind::Conflict, "easy_cap");
}

// ---------------------------------------------------------------------------------------
// Service records: geofence and hours
// ---------------------------------------------------------------------------------------

#[test]
fn stamps_outside_the_geofence_are_recorded_and_flagged_and_earn_nothing_inside_they_count() {
    let names = ["in", "away", "late", "edge", "over"];
    let mut w = world(names.iter().map(|m| member(m, "g1")).collect());
    let id = w.post(&staff("c1"), with_difficulty(order("g1", "patrol", 5), 3));
    for m in names {
        w.claim(m, &id);
    }
    let here = w.place(&id);
    let (far, at200, at199, at201) =
        (north_of(here, 400.0), north_of(here, 200.0), north_of(here, 199.9), north_of(here, 200.1));
    let stamps =
        [("in", here, here), ("away", far, here), ("late", here, far), ("edge", at200, at199), ("over", at201, here)];

    for (m, inp, _) in stamps {
        let out = w.at(60).ok(&as_member(m), checkin(&id, inp));
        let (distance_m, flagged) = match &out.events[..] {
            [Event { body: EventBody::CheckedIn { distance_m, flagged, .. }, .. }] => (*distance_m, *flagged),
            other => panic!("{other:?}"),
        };
        let want = (here.distance_m(inp) * 10.0).round() / 10.0;
        assert_close(distance_m, want);
        assert_eq!(flagged, distance_m > 200.0, "{m} at {distance_m} m");
        // told to the member and to the community, district and city
        for s in [format!("member:{m}"), "community:c1".into(), "district:d1".into(), "city".into()] {
            let f = frames_of(&out.frames, &s, "order.checked_in");
            assert_eq!(f.len(), 1, "{s}");
            assert_eq!(
                *f[0].data,
                json!({"order_id": id, "member_id": m, "distance_m": distance_m, "flagged": flagged})
            );
        }
        let c = w.claim_of(&id, m);
        let stamp = c.checkin.as_ref().unwrap();
        assert_eq!((stamp.at, stamp.position, stamp.flagged), (T0 + 60_000, inp, flagged));
    }
    // 1 h 30 min later, everybody checks out
    for (m, _, outp) in stamps {
        let out = w.at(60 + 90 * 60).ok(&as_member(m), checkout(&id, outp));
        assert_eq!(frames_of(&out.frames, "community:c1", "order.checked_out").len(), 1);
    }
    let counted: BTreeMap<&str, bool> = names.iter().map(|m| (*m, w.claim_of(&id, m).counted())).collect();
    assert_eq!(
        counted,
        BTreeMap::from([("in", true), ("away", false), ("late", false), ("edge", true), ("over", false)])
    );
    for m in names {
        let c = w.claim_of(&id, m);
        assert_close(c.hours, 1.5); // recorded either way
        let l = w.ledger(m);
        if counted[m] {
            assert_close(l.hours_balance, 1.5);
            assert_eq!(l.credits.len(), 1);
            assert_close(w.figures(m).hours, 1.5);
        } else {
            assert_close(l.hours_balance, 0.0);
            assert!(l.credits.is_empty(), "{m}");
            let e = w.refuse(&staff("c1"), rate_order(&id, m, Rating::VeryGood));
            assert_err(&e, ErrorKind::Invalid, "did_not_work");
            assert_eq!(w.figures(m), service::Figures::default(), "{m}");
        }
    }
    w.ok(&staff("c1"), rate_order(&id, "edge", Rating::Good));
    assert_close(w.ledger("edge").points_balance, 1.5 * 3.0);
}

#[test]
fn stamps_are_refused_out_of_order_or_by_someone_who_did_not_take_the_order() {
    let mut w = world(vec![member("a", "g1"), member("idle", "g1"), member("x", "g4")]);
    let id = w.post(&staff("c1"), with_difficulty(order("g1", "patrol", 2), 3));
    w.claim("a", &id);
    let here = w.place(&id);
    let e = w.refuse(&as_member("a"), checkout(&id, here));
    assert_err(&e, ErrorKind::Conflict, "not_checked_in");
    let e = w.refuse(&as_member("idle"), checkin(&id, here));
    assert_err(&e, ErrorKind::Conflict, "not_claimed");
    let e = w.refuse(&as_member("x"), checkin(&id, here));
    assert_err(&e, ErrorKind::NotFound, "unknown_order");
    let e = w.refuse(&staff("c1"), checkin(&id, here));
    assert_err(&e, ErrorKind::Forbidden, "members_only");
    w.at(10).ok(&as_member("a"), checkin(&id, here));
    let e = w.refuse(&as_member("a"), checkin(&id, here));
    assert_err(&e, ErrorKind::Conflict, "already_checked_in");
    w.at(20).ok(&as_member("a"), checkout(&id, here));
    let e = w.refuse(&as_member("a"), checkout(&id, here));
    assert_err(&e, ErrorKind::Conflict, "already_checked_out");
    // 10 s is 0.00 h: a record, but no hours
    assert_close(w.claim_of(&id, "a").hours, 0.0);
}

// ---------------------------------------------------------------------------------------
// Orders: full, cancelled, eligibility
// ---------------------------------------------------------------------------------------

#[test]
fn a_full_or_cancelled_order_cannot_be_claimed_and_a_cancelled_one_takes_no_stamps() {
    let mut w = world(vec![member("a", "g1"), member("b", "g1"), member("c", "g2"), member("x", "g4")]);
    let id = w.post(&staff("c1"), with_difficulty(order("g1", "patrol", 2), 3));
    w.claim("a", &id);
    // claiming again is answered with the order, and changes nothing
    let out = w.claim("a", &id);
    assert!(out.events.is_empty());
    let out = w.claim("b", &id);
    assert_eq!(kinds(&out), ["order_claimed"]);
    assert_eq!(w.state.orders[&id].status, OrderStatus::Full);
    let e = w.refuse(&as_member("c"), claim(&id));
    assert_err(&e, ErrorKind::Conflict, "order_full");
    let e = w.refuse(&staff("c1"), assign(&id, "c"));
    assert_err(&e, ErrorKind::Conflict, "order_full");

    // a member of another community does not see it; staff may not assign them
    let open = w.post(&staff("c1"), with_difficulty(order("g1", "patrol", 2), 3));
    let e = w.refuse(&as_member("x"), claim(&open));
    assert_err(&e, ErrorKind::NotFound, "unknown_order");
    let e = w.refuse(&staff("c1"), assign(&open, "x"));
    assert_err(&e, ErrorKind::Invalid, "unknown_member");
    let e = w.refuse(&staff("c1"), assign(&open, "nobody"));
    assert_err(&e, ErrorKind::Invalid, "unknown_member");
    let e = w.refuse(&staff("c2"), assign(&open, "a"));
    assert_err(&e, ErrorKind::NotFound, "unknown_order");
    let e = w.refuse(&as_member("a"), assign(&open, "b"));
    assert_err(&e, ErrorKind::Forbidden, "role_not_allowed");

    // cancelled: claims and stamps are refused, claimants are told
    let e = w.refuse(&as_member("a"), cancel_order(&id));
    assert_err(&e, ErrorKind::Forbidden, "role_not_allowed");
    let out = w.at(60).ok(&staff("c1"), cancel_order(&id));
    assert_eq!(w.state.orders[&id].status, OrderStatus::Cancelled);
    for m in ["a", "b"] {
        let f = frames_of(&out.frames, &format!("member:{m}"), "order.cancelled");
        assert_eq!(*f[0].data, json!({"order_id": id, "reason": "rain"}));
    }
    assert_eq!(frames_of(&out.frames, "community:c1", "order.cancelled")[0].data["status"], "cancelled");
    let e = w.refuse(&as_member("c"), claim(&id));
    assert_err(&e, ErrorKind::Conflict, "order_closed");
    let e = w.refuse(&as_member("a"), checkin(&id, w.place(&id)));
    assert_err(&e, ErrorKind::Conflict, "order_closed");
    let e = w.refuse(&staff("c1"), cancel_order(&id));
    assert_err(&e, ErrorKind::Conflict, "order_closed");

    // a window that is over
    let mut short = with_difficulty(order("g1", "patrol", 2), 3);
    short.window_end = T0 + 2 * H * 1000;
    let short = w.post(&staff("c1"), short);
    let e = w.at(2 * H).refuse(&as_member("c"), claim(&short));
    assert_err(&e, ErrorKind::Conflict, "order_closed");
}

// ---------------------------------------------------------------------------------------
// Exchange
// ---------------------------------------------------------------------------------------

/// `a` has worked 4 h on a difficulty-3 order rated good: 12 points, 4 hours.
fn earner() -> (World, String) {
    let mut w = world(vec![member("a", "g1"), member("b", "g1")]);
    let id = w.post(&staff("c1"), with_difficulty(order("g1", "patrol", 1), 3));
    w.claim("a", &id);
    w.work("a", &id, 4 * H);
    w.ok(&staff("c1"), rate_order(&id, "a", Rating::Good));
    assert_close(w.ledger("a").points_balance, 12.0);
    assert_close(w.ledger("a").hours_balance, 4.0);
    (w, id)
}

#[test]
fn points_and_hours_exchange_at_ten_points_an_hour_within_the_balance() {
    let (mut w, _) = earner();
    let out = w.ok(&as_member("a"), exchange("a", Currency::Points, 10.0));
    match &out.events[..] {
        [Event { body: EventBody::Exchanged { points_delta, hours_delta, .. }, .. }] => {
            assert_eq!((*points_delta, *hours_delta), (-10.0, 1.0));
        }
        other => panic!("{other:?}"),
    }
    assert_close(w.ledger("a").points_balance, 2.0);
    assert_close(w.ledger("a").hours_balance, 5.0);
    let f = frames_of(&out.frames, "member:a", "balance");
    assert_eq!(*f[0].data, json!({"points_balance": 2.0, "hours_balance": 5.0}));

    w.ok(&as_member("a"), exchange("a", Currency::Hours, 1.0));
    assert_close(w.ledger("a").points_balance, 12.0);
    assert_close(w.ledger("a").hours_balance, 4.0);

    for (from, amount) in [(Currency::Points, 12.01), (Currency::Hours, 4.5), (Currency::Points, 1e6)] {
        let e = w.refuse(&as_member("a"), exchange("a", from, amount));
        assert_err(&e, ErrorKind::Invalid, "insufficient_balance");
    }
    let e = w.refuse(&as_member("b"), exchange("b", Currency::Points, 1.0));
    assert_err(&e, ErrorKind::Invalid, "insufficient_balance");
    for amount in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e6 + 1.0] {
        let e = w.refuse(&as_member("a"), exchange("a", Currency::Points, amount));
        assert_err(&e, ErrorKind::Invalid, "bad_amount");
    }
    // only the member themself, or command
    for actor in [as_member("b"), staff("c1"), unit_admin("u1")] {
        let e = w.refuse(&actor, exchange("a", Currency::Points, 1.0));
        assert_err(&e, ErrorKind::NotFound, "unknown_member");
    }
    // the whole balance may go
    w.ok(&city_command(), exchange("a", Currency::Hours, 4.0));
    assert_close(w.ledger("a").points_balance, 52.0);
    assert_close(w.ledger("a").hours_balance, 0.0);
    // what was earned is unchanged by exchanges
    let fig = w.figures("a");
    assert_close(fig.points, 12.0);
    assert_close(fig.hours, 4.0);
}

#[test]
fn an_exchange_never_creates_or_destroys_value_through_rounding() {
    let (mut w, _) = earner();
    let value = |w: &World| w.ledger("a").points_balance + 10.0 * w.ledger("a").hours_balance;
    let before = value(&w);
    for (from, amount) in [(Currency::Hours, 0.004), (Currency::Points, 0.04), (Currency::Hours, 0.005)] {
        match w.exec(&as_member("a"), exchange("a", from, amount)) {
            Ok(_) => assert!((value(&w) - before).abs() < 1e-9, "{from:?} {amount}: value {} -> {}", before, value(&w)),
            Err(e) => assert_err(&e, ErrorKind::Invalid, "bad_amount"),
        }
    }
}

// ---------------------------------------------------------------------------------------
// The hard-order reservation
// ---------------------------------------------------------------------------------------

/// c1: h2 (hard load 10), l1, h1 (hard load 5), l2 (medical), p (team t1, lives in c2),
/// h3 (hard load 10, medical); x lives in c2 and is in no team paired with c1.
fn reservation_world() -> World {
    let mut w = world(vec![
        member("h2", "g1").at("g7"),
        member("l1", "g1"),
        member("h1", "g1").at("g7"),
        member("l2", "g2").skills(&["medical"]),
        member("p", "g4").team("t1"),
        member("h3", "g3").at("g7").skills(&["medical"]),
        member("x", "g4"),
    ]);
    // hard work in c4, where only h1, h2 and h3 stand
    let (inc, out) = w.raise(&city_command(), rescue("g7", Level::IV, 3));
    assert_eq!(sent_to(&out).into_iter().collect::<BTreeSet<_>>(), ["h1", "h2", "h3"].map(String::from).into());
    for m in ["h1", "h2", "h3"] {
        w.at(10).accept(m, &inc);
    }
    w.at(20).ok(&city_command(), resolve(&inc));
    let (inc, _) = w.at(30).raise(&city_command(), rescue("g7", Level::IV, 2));
    w.at(40).accept("h2", &inc);
    w.at(40).accept("h3", &inc);
    w.at(50).ok(&city_command(), resolve(&inc));
    let loads: Vec<f64> = ["h2", "l1", "h1", "l2", "p", "h3"].iter().map(|m| w.rt(m).work.hard_load).collect();
    assert_eq!(loads, [10.0, 0.0, 5.0, 0.0, 0.0, 10.0]);
    w.at(H);
    w
}

#[test]
fn a_hard_order_is_reserved_for_the_members_with_the_least_hard_work_then_open_to_anyone_fitting() {
    let mut w = reservation_world();
    let start = H;
    let id = w.post(&staff("c1"), order("g1", "rescue", 2));
    let o = &w.state.orders[&id];
    let until = T0 + (start + 600) * 1000;
    assert_eq!(o.priority_until, Some(until));
    // 2 a slot: the three without hard work (residents and the paired team), then h1
    let reserved: BTreeSet<u32> = ["l1", "l2", "p", "h1"].iter().map(|m| w.idx(m)).collect();
    assert_eq!(o.priority.iter().copied().collect::<BTreeSet<_>>(), reserved);
    let offered: BTreeSet<&str> = w
        .frames
        .iter()
        .filter(|f| f.kind == "order.offer")
        .map(|f| {
            assert_eq!(f.data["order_id"], id.as_str());
            assert_eq!(f.data["reserved_until"], rfc3339(until).as_str());
            assert_eq!(f.data["difficulty"], 5);
            f.stream.strip_prefix("member:").unwrap()
        })
        .collect();
    assert_eq!(offered, BTreeSet::from(["l1", "l2", "p", "h1"]));

    // within the window: h2 and h3 (the most hard work) may not claim; x never sees it
    for m in ["h2", "h3"] {
        let e = w.at(start + 10).refuse(&as_member(m), claim(&id));
        assert_err(&e, ErrorKind::Conflict, "priority_window");
        assert!(e.detail.contains(&rfc3339(until)), "{}", e.detail);
    }
    let e = w.refuse(&as_member("x"), claim(&id));
    assert_err(&e, ErrorKind::NotFound, "unknown_order");
    w.claim("l1", &id);
    let e = w.at(start + 599).refuse(&as_member("h2"), claim(&id));
    assert_err(&e, ErrorKind::Conflict, "priority_window");
    // from the end of the window, anyone fitting
    w.at(start + 600).claim("h2", &id);
    assert_eq!(w.state.orders[&id].status, OrderStatus::Full);
    let e = w.refuse(&as_member("h1"), claim(&id));
    assert_err(&e, ErrorKind::Conflict, "order_full");

    // staff may assign anyone fitting within the window
    let id = w.post(&staff("c1"), order("g1", "rescue", 1));
    let e = w.refuse(&as_member("h2"), claim(&id));
    assert_err(&e, ErrorKind::Conflict, "priority_window");
    let out = w.ok(&staff("c1"), assign(&id, "h2"));
    let f = frames_of(&out.frames, "member:h2", "order.assigned");
    assert_eq!(f[0].data["assigned"], true);
    assert_eq!(f[0].data["order_id"], id.as_str());
}

#[test]
fn the_reservation_counts_only_members_with_the_skills_and_can_be_switched_off() {
    let mut w = reservation_world();
    let mut o = order("g2", "rescue", 1);
    o.skills = vec!["medical".into()];
    let id = w.post(&staff("c1"), o);
    // with medical: l2 and h3 only, whatever h3's load
    let o = &w.state.orders[&id];
    assert_eq!(o.priority, HashSet::from([w.idx("l2"), w.idx("h3")]));
    w.claim("h3", &id);
    // those without the skill do not see it
    let e = w.refuse(&as_member("l1"), claim(&id));
    assert_err(&e, ErrorKind::NotFound, "unknown_order");

    // an order that is not hard is not reserved
    let normal = w.post(&staff("c1"), with_difficulty(order("g1", "patrol", 1), 3));
    assert_eq!(w.state.orders[&normal].priority_until, None);
    w.claim("h2", &normal);
    // difficulty 4 makes a patrol hard
    let hard_patrol = w.post(&staff("c1"), with_difficulty(order("g1", "patrol", 1), 4));
    assert!(w.state.orders[&hard_patrol].priority_until.is_some());

    w.rules.service.hard_priority_s = 0;
    let frames_before = w.frames.len();
    let id = w.post(&staff("c1"), order("g1", "rescue", 1));
    assert_eq!(w.state.orders[&id].priority_until, None);
    assert!(w.frames[frames_before..].iter().all(|f| f.kind != "order.offer"));
    w.claim("h2", &id);
}

// ---------------------------------------------------------------------------------------
// Registration
// ---------------------------------------------------------------------------------------

/// registered / members of a unit.
fn unit_rate(w: &World, unit: &str) -> f64 {
    let ms: Vec<&Member> = w.state.city.members().iter().filter(|m| m.unit_id == unit).collect();
    ms.iter().filter(|m| m.registered).count() as f64 / ms.len() as f64
}

#[test]
fn a_new_member_joins_a_known_one_reports_at_a_new_residence_and_the_rates_follow() {
    let mut w = world(vec![
        member("a", "g1"),
        member("b", "g1").unregistered(),
        member("c", "g1").unregistered(),
        member("d", "g4").unit("u2").unregistered(),
    ]);
    assert_eq!(unit_rate(&w, "u1"), 1.0 / 3.0);

    // a new member of u1 joins, registered by their unit
    let new = member("n", "g2").team("t1").skills(&["driving"]);
    let out = w.ok(&unit_admin("u1"), register(vec![new.clone()]));
    assert_eq!(kinds(&out), ["members_registered"]);
    assert_eq!(*frames_of(&out.frames, "city", "members.registered")[0].data, json!({"members": ["n"]}));
    let n = w.idx("n");
    assert_eq!(w.state.city.members()[n as usize], Member { registered: true, ..new });
    assert_eq!(w.state.roster.members.len(), 5);
    assert_eq!(w.state.city.residence_community(n), w.state.city.community_by_id["c1"]);
    assert_eq!(unit_rate(&w, "u1"), 2.0 / 4.0);
    // and can take an order of c1 straight away
    let id = w.post(&staff("c1"), with_difficulty(order("g2", "patrol", 2), 3));
    w.claim("n", &id);

    // b reports at c1 (same residence): registered; c moves to g4 in c2
    w.ok(&staff("c1"), register(vec![member("b", "g1").unregistered()]));
    assert!(w.state.city.members()[w.idx("b") as usize].registered, "registering sets the flag");
    w.ok(&unit_admin("u1"), register(vec![member("c", "g4")]));
    let c = w.idx("c");
    assert_eq!(w.state.city.members()[c as usize].residence_grid_id, "g4");
    assert_eq!(w.state.city.residence_community(c), w.state.city.community_by_id["c2"]);
    assert_eq!(w.state.roster.home(c), w.state.city.community_by_id["c2"]);
    assert_eq!(unit_rate(&w, "u1"), 1.0);
    assert_eq!(unit_rate(&w, "u2"), 0.0);
    // c now sees c2's orders, not c1's
    let e = w.refuse(&as_member("c"), claim(&id));
    assert_err(&e, ErrorKind::NotFound, "unknown_order");
    let there = w.post(&staff("c2"), with_difficulty(order("g4", "patrol", 1), 3));
    w.claim("c", &there);
    // and community_members follows the residence
    let c1 = w.state.city.community_by_id["c1"];
    let c2 = w.state.city.community_by_id["c2"];
    assert!(!service::community_members(&w.state, c1).contains(&c));
    assert!(service::community_members(&w.state, c2).contains(&c));
}

#[test]
fn registration_is_refused_outside_the_registrars_scope_or_when_it_does_not_fit_and_changes_nothing() {
    let mut w = world(vec![member("a", "g1"), member("d", "g4").unit("u2")]);
    let cases: Vec<(Actor, Vec<Member>, ErrorKind, &str)> = vec![
        // a unit admin registers only their own unit's members, new or known; a known member
        // outside the caller's scope is a taken id, like any other
        (unit_admin("u1"), vec![member("d", "g4").unit("u2")], ErrorKind::Conflict, "member_exists"),
        (unit_admin("u1"), vec![member("new", "g1").unit("u2")], ErrorKind::Forbidden, "outside_scope"),
        // staff register residents of their own community only
        (staff("c1"), vec![member("new", "g4")], ErrorKind::Forbidden, "outside_scope"),
        (staff("c2"), vec![member("a", "g1")], ErrorKind::Conflict, "member_exists"),
        (staff("c2"), vec![member("a", "g4")], ErrorKind::Conflict, "member_exists"),
        (as_member("a"), vec![member("a", "g1")], ErrorKind::Forbidden, "role_not_allowed"),
        // a known member is not moved to another unit or team
        (city_command(), vec![member("a", "g1").unit("u2")], ErrorKind::Conflict, "member_exists"),
        (city_command(), vec![member("a", "g1").team("t1")], ErrorKind::Conflict, "member_exists"),
        (
            city_command(),
            vec![Member { residence_grid_id: "g9".into(), ..member("new", "g1") }],
            ErrorKind::Invalid,
            "unknown_grid",
        ),
        (city_command(), vec![member("new", "g1").skills(&["juggling"])], ErrorKind::Invalid, "unknown_skill"),
        (city_command(), vec![member("new", "g1"), member("new", "g2")], ErrorKind::Invalid, "duplicate_member"),
        (city_command(), vec![member("new", "g1").team("t3").unit("u1")], ErrorKind::Invalid, "invalid_member"),
        (city_command(), vec![member("new", "g1").unit("u9")], ErrorKind::Invalid, "invalid_member"),
        (city_command(), vec![], ErrorKind::Invalid, "invalid_registration"),
        // all or nothing: a good row with a bad one
        (
            unit_admin("u1"),
            vec![member("ok", "g1"), member("bad", "g1").unit("u2")],
            ErrorKind::Forbidden,
            "outside_scope",
        ),
    ];
    for (actor, members, kind, code) in cases {
        let what = format!("{actor:?} {:?}", members.iter().map(|m| &m.id).collect::<Vec<_>>());
        let e = w.refuse(&actor, register(members));
        assert_eq!((e.kind, e.code.as_str()), (kind, code), "{what}: {}", e.detail);
    }
    assert_eq!(w.state.member_index("ok"), None);
}

#[test]
fn a_unit_reports_once_to_a_community_its_teams_are_paired_with() {
    let mut w = world(vec![member("a", "g1")]);
    let reg =
        |unit: &str, community: &str| Command::RegisterUnit { unit_id: unit.into(), community_id: community.into() };
    let out = w.ok(&unit_admin("u1"), reg("u1", "c1"));
    assert_eq!(kinds(&out), ["unit_registered"]);
    for s in ["community:c1", "city"] {
        assert_eq!(
            *frames_of(&out.frames, s, "unit.registered")[0].data,
            json!({"unit_id": "u1", "community_id": "c1"})
        );
    }
    assert!(w.ok(&unit_admin("u1"), reg("u1", "c1")).events.is_empty(), "again: nothing new");
    let e = w.refuse(&unit_admin("u1"), reg("u1", "c2"));
    assert_err(&e, ErrorKind::Invalid, "not_paired");
    let e = w.refuse(&unit_admin("u2"), reg("u1", "c1"));
    assert_err(&e, ErrorKind::NotFound, "unknown_unit");
    let e = w.refuse(&staff("c1"), reg("u2", "c1"));
    assert_err(&e, ErrorKind::Forbidden, "role_not_allowed");
    w.ok(&city_command(), reg("u3", "c2"));
    assert_eq!(
        w.state.unit_registrations,
        BTreeSet::from([("u1".to_string(), "c1".to_string()), ("u3".to_string(), "c2".to_string())])
    );
}

#[test]
fn a_community_reports_on_its_residents_and_the_members_of_the_teams_it_hosts() {
    let w = world(vec![
        member("a", "g1"),
        member("b", "g3").team("t3"),
        member("p", "g4").team("t1"),
        member("q", "g6").team("w1"),
        member("x", "g4").team("t3"),
        member("y", "g7"),
    ]);
    let of = |c: &str| -> BTreeSet<String> {
        service::community_members(&w.state, w.state.city.community_by_id[c])
            .into_iter()
            .map(|i| w.state.city.members()[i as usize].id.clone())
            .collect()
    };
    let set = |ids: &[&str]| ids.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(of("c1"), set(&["a", "b", "p", "q"]));
    assert_eq!(of("c2"), set(&["b", "p", "x"]));
    assert_eq!(of("c3"), set(&["q"]));
    assert_eq!(of("c4"), set(&["y"]));
}

// ---------------------------------------------------------------------------------------
// Reliability
// ---------------------------------------------------------------------------------------

#[test]
fn reliability_is_arrived_over_offered() {
    // r stands alone in c4 (g7), so every call there is offered to r only
    let mut w = world(vec![member("r", "g7"), member("other", "g1")]);
    assert_eq!(w.ledger("r").reliability(), None);
    assert_eq!(w.figures("r").reliability, None);
    let mut t = 0;
    let mut call = |w: &mut World, answer: &str| {
        t += 2 * H;
        let (inc, out) = w.at(t).raise(&city_command(), rescue("g7", Level::IV, 1));
        assert_eq!(sent_to(&out), ["r"]);
        let offer = w.offer_id(&inc, "r");
        match answer {
            "arrive" => {
                w.at(t + 10).accept("r", &inc);
                w.at(t + 20).arrive("r", &inc);
            }
            "accept" => {
                w.at(t + 10).accept("r", &inc);
            }
            "decline" => {
                w.at(t + 10).ok(&as_member("r"), Command::Decline { offer_id: offer, reason: None });
            }
            "expire" => {
                w.at(t + 61).ok(&Actor::System, Command::Tick);
            }
            _ => unreachable!(),
        }
        w.at(t + 100).ok(&city_command(), resolve(&inc));
        // why "reliable": offered at least 3 times and arrived at least 80% of them
        match &out.events[..] {
            [.., Event { body: EventBody::OfferSent { why, .. }, .. }] => why.contains(&"reliable".to_string()),
            other => panic!("{other:?}"),
        }
    };
    let reliable: Vec<bool> = ["arrive", "arrive", "arrive", "arrive", "decline", "expire", "accept"]
        .iter()
        .map(|a| call(&mut w, a))
        .collect();
    // the 6th offer: 4 arrived of 5 offered is 80%
    assert_eq!(reliable, [false, false, false, true, true, true, false]);
    let l = w.ledger("r");
    assert_eq!((l.offered, l.accepted, l.arrived), (7, 5, 4));
    assert_close(l.reliability().unwrap(), 4.0 / 7.0);
    let fig = w.figures("r");
    assert_eq!((fig.offered, fig.accepted, fig.arrived), (7, 5, 4));
    assert_close(fig.reliability.unwrap(), 4.0 / 7.0);
    // a period holding only the first two calls
    let early = service::figures(&w.state, w.idx("r"), T0, T0 + 5 * H * 1000);
    assert_eq!((early.offered, early.arrived, early.reliability), (2, 2, Some(1.0)));
}

#[test]
fn in_wartime_reliability_breaks_a_tie_between_equally_placed_members() {
    // twins in the same cell: u (the lower index) declined once, r arrived once
    let mut w = world(vec![member("u", "g1"), member("r", "g1")]);
    let (inc, out) = w.raise(&city_command(), rescue("g1", Level::IV, 1));
    assert_eq!(sent_to(&out), ["u", "r"]);
    let off_u = w.offer_id(&inc, "u");
    w.at(10).ok(&as_member("u"), Command::Decline { offer_id: off_u, reason: None });
    w.at(20).accept("r", &inc);
    w.at(30).arrive("r", &inc);
    w.at(40).ok(&city_command(), resolve(&inc));
    assert_eq!((w.ledger("u").reliability(), w.ledger("r").reliability()), (Some(0.0), Some(1.0)));
    // arriving moved r: both stand in the same place again
    for m in ["u", "r"] {
        w.ok(&as_member(m), Command::Location { position: in_cell("g1", 0) });
    }

    let ranking = |w: &mut World, at: i64| {
        let (inc, out) = w.at(at).raise(&city_command(), rescue("g1", Level::IV, 1));
        w.ok(&city_command(), Command::Cancel { incident_id: inc, reason: None });
        sent_to(&out)
    };
    // past the recent-duty window, nothing else tells them apart
    assert_eq!(ranking(&mut w, 2 * H), ["u", "r"], "peacetime: the member index");
    w.rules.weights.reliability_m = 50.0;
    assert_eq!(ranking(&mut w, 2 * H + 1), ["u", "r"], "reliability counts only in wartime");
    w.at(2 * H + 2).ok(
        &city_command(),
        Command::SwitchMode { district_id: Some("d1".into()), mode: Mode::Wartime, reason: "drill".into() },
    );
    assert_eq!(ranking(&mut w, 2 * H + 3), ["r", "u"], "wartime: the reliable member first");
    w.rules.weights.reliability_m = 0.0;
    assert_eq!(ranking(&mut w, 2 * H + 4), ["u", "r"], "reliability_m 0: no tie-break");
}

// ---------------------------------------------------------------------------------------
// Replay
// ---------------------------------------------------------------------------------------

fn service_scenario() -> World {
    let mut w = world(vec![
        member("a", "g1"),
        member("b", "g1"),
        member("c", "g2").unregistered(),
        member("h", "g1").at("g7"),
        member("p", "g4").team("t1"),
    ]);
    w.at(1).ok(&unit_admin("u1"), register(vec![member("n", "g3").team("w1")]));
    w.at(2).ok(&unit_admin("u1"), register(vec![member("c", "g2")]));
    w.at(3).ok(&unit_admin("u1"), Command::RegisterUnit { unit_id: "u1".into(), community_id: "c1".into() });
    let (inc, _) = w.at(4).raise(&city_command(), rescue("g7", Level::IV, 1));
    w.at(5).accept("h", &inc);
    let off = w.offer_id(&inc, "h");
    w.at(6).arrive("h", &inc);
    w.at(H).ok(&city_command(), resolve(&inc));
    let easy = w.at(H + 1).post(&staff("c1"), order("g1", "patrol", 2));
    w.at(H + 2).claim("a", &easy);
    w.at(H + 3).ok(&staff("c1"), assign(&easy, "n"));
    let hard = w.at(H + 4).post(&staff("c1"), order("g2", "rescue", 2));
    w.at(H + 5).claim("b", &hard);
    w.at(H + 6).claim("p", &hard);
    let here = w.place(&hard);
    w.at(H + 7).ok(&as_member("b"), checkin(&hard, here));
    w.at(H + 8).ok(&as_member("p"), checkin(&hard, north_of(here, 500.0)));
    w.at(3 * H).ok(&as_member("b"), checkout(&hard, here));
    w.at(3 * H).ok(&as_member("p"), checkout(&hard, here));
    w.at(3 * H + 1).ok(&staff("c1"), rate_order(&hard, "b", Rating::VeryGood));
    w.at(3 * H + 2).ok(&city_command(), rate_offer(&off, "h", Rating::Fair));
    w.at(3 * H + 3).ok(&as_member("b"), exchange("b", Currency::Points, 5.5));
    w.at(3 * H + 4).ok(&as_member("h"), exchange("h", Currency::Hours, 0.25));
    w.at(3 * H + 5).ok(&staff("c1"), cancel_order(&easy));
    let later = w.at(3 * H + 6).post(&staff("c1"), with_difficulty(order("g3", "patrol", 3), 3));
    w.at(3 * H + 7).claim("c", &later);
    w
}

#[test]
fn replaying_a_service_scenario_rebuilds_the_same_ledgers_orders_and_frames() {
    let w = service_scenario();
    w.assert_covers(&[
        "members_registered",
        "unit_registered",
        "order_posted",
        "order_claimed",
        "order_cancelled",
        "checked_in",
        "checked_out",
        "rated",
        "exchanged",
    ]);
    assert!(w.ledger("b").points_balance > 0.0 && w.ledger("h").credits.len() == 1);
    assert!(w.frames.iter().any(|f| f.kind == "order.offer"), "the hard order was reserved");
    super::testkit::assert_restores_at_every_cut(&w.log, &w.rules);
    let (state, frames) = replay(&w.log);
    // Deadlines aside (the replay also holds those already fired, and retries are soft)
    assert_eq!(durable(&state), durable(&w.state));
    assert_eq!(frames, w.frames);
    for m in ["a", "b", "c", "h", "p", "n"] {
        assert_eq!(state.roster.members[state.member_index(m).unwrap() as usize].ledger, *w.ledger(m), "{m}'s ledger");
    }

    // every stream counts from 1 without gaps
    w.assert_streams_count_from_one();

    // the replayed state decides the next step as the live one does
    let mut live = w;
    let mut again = live.beside(state);
    let steps: Vec<(Actor, Command)> = vec![
        (staff("c1"), Command::PostOrder(order("g1", "rescue", 1))),
        (as_member("a"), claim("ord-4")),
        (as_member("c"), claim("ord-3")),
        (as_member("b"), exchange("b", Currency::Hours, 1.0)),
    ];
    for (actor, cmd) in steps {
        let a = live.at(4 * H).exec(&actor, cmd.clone());
        let b = again.at(4 * H).exec(&actor, cmd);
        match (a, b) {
            (Ok(a), Ok(b)) => {
                assert_eq!(a.events, b.events);
                assert_eq!(a.frames, b.frames);
            }
            (Err(a), Err(b)) => assert_eq!(a, b),
            (a, b) => panic!("live {a:?}, replayed {b:?}"),
        }
    }
    assert_eq!(durable(&live.state), durable(&again.state));
}

// ---------------------------------------------------------------------------------------
// Re-importing the city
// ---------------------------------------------------------------------------------------

#[test]
fn a_reimport_that_renumbers_members_keeps_each_order_claim_with_its_member() {
    let mut w = world(vec![member("a", "g1"), member("b", "g1")]);
    let id = w.post(&staff("c1"), with_difficulty(order("g1", "patrol", 2), 3));
    w.claim("a", &id);
    // the same people, listed the other way round
    w.at(10)
        .ok(&city_command(), Command::ImportCity(Box::new(service_city(vec![member("b", "g1"), member("a", "g1")]))));
    let here = w.place(&id);
    // a took the order and checks in (today: refused with not_claimed, the claim now
    // points at b's index)
    let e = w.at(20).exec(&as_member("a"), checkin(&id, here)).err();
    assert_eq!(e.map(|e| e.code), None, "a's check-in was refused");
    assert!(w.claim_of(&id, "a").checkin.is_some());
    // b took nothing: b may not stamp a's record (today: accepted, and applying it panics
    // at "a claim" in service::apply)
    let e = w.refuse(&as_member("b"), checkout(&id, here));
    assert_err(&e, ErrorKind::Conflict, "not_claimed");
}

#[test]
fn a_hard_order_worked_counts_as_hard_work_for_the_next_reservation() {
    let mut w = world(vec![member("l1", "g1"), member("l2", "g1"), member("l3", "g1")]);
    let first = w.post(&staff("c1"), order("g1", "rescue", 1));
    assert_eq!(w.state.orders[&first].priority, HashSet::from([w.idx("l1"), w.idx("l2")]));
    w.claim("l1", &first);
    w.work("l1", &first, 3 * H);
    w.ok(&staff("c1"), rate_order(&first, "l1", Rating::Good));
    // l1 has now done 3 h of difficulty-5 work; l2 and l3 none
    let next = w.post(&staff("c1"), order("g1", "rescue", 1));
    assert_eq!(w.state.orders[&next].priority, HashSet::from([w.idx("l2"), w.idx("l3")]));
}
