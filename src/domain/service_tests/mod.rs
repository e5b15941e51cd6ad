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
use crate::domain::testkit::*;

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

mod orders;
mod points;
mod registration;
