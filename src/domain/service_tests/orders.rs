//! Service: orders full, cancelled and eligible; exchange; the hard-order reservation.

use super::*;

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
        assert_err(&e, ErrorKind::Conflict, "insufficient_balance");
    }
    let e = w.refuse(&as_member("b"), exchange("b", Currency::Points, 1.0));
    assert_err(&e, ErrorKind::Conflict, "insufficient_balance");
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
fn the_reservation_names_the_nearest_of_equally_loaded_members() {
    // All residents of c1, none with hard work; far1 and far2 come first by index but stand
    // in c4's g7, near and mid stand in c1 (g1 and g2).
    let mut w = world(vec![
        member("far1", "g1").at("g7"),
        member("far2", "g2").at("g7"),
        member("mid", "g3").at("g2"),
        member("near", "g2").at("g1"),
    ]);
    let id = w.post(&staff("c1"), order("g1", "rescue", 1));
    // 2 a slot: the nearest two to the order's place (g1's centre), not the first two by index
    let reserved: BTreeSet<u32> = ["near", "mid"].iter().map(|m| w.idx(m)).collect();
    assert_eq!(w.state.orders[&id].priority.iter().copied().collect::<BTreeSet<_>>(), reserved);
    // and the event names them nearest first
    let named = w.log.iter().rev().find_map(|e| match &e.body {
        EventBody::OrderPosted { priority_members, .. } => Some(priority_members.clone()),
        _ => None,
    });
    assert_eq!(named, Some(vec!["near".to_string(), "mid".to_string()]));
    // the least hard load still comes first, whatever the distance
    let (inc, _) = w.at(10).raise(&city_command(), rescue("g1", Level::IV, 1));
    w.at(20).accept("near", &inc);
    w.at(30).ok(&city_command(), resolve(&inc));
    assert_eq!(w.rt("near").work.hard_load, 5.0);
    let id = w.at(H).post(&staff("c1"), order("g1", "rescue", 1));
    let reserved: BTreeSet<u32> = ["mid", "far1"].iter().map(|m| w.idx(m)).collect();
    assert_eq!(w.state.orders[&id].priority.iter().copied().collect::<BTreeSet<_>>(), reserved);
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
