//! Service: points, the easy-order cap, records with their geofence and hours.

use super::*;

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
    assert_err(&e, ErrorKind::Conflict, "did_not_work");
    w.at(300).arrive("a", &inc);
    // arrived, but the incident is still open
    let e = w.refuse(&staff("c1"), rate_offer(&off_a, "a", Rating::Good));
    assert_err(&e, ErrorKind::Conflict, "task_not_finished");

    w.at(30 + 3 * H).ok(&city_command(), resolve(&inc));
    // the revoked member, a member who was never offered, someone else's offer, nobody
    for (offer, m) in [(&off_b, "b"), (&off_a, "far"), (&off_a, "b"), (&off_a, "nobody")] {
        let e = w.refuse(&staff("c1"), rate_offer(offer, m, Rating::Good));
        assert_err(&e, ErrorKind::Conflict, "did_not_work");
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
        assert_err(&e, ErrorKind::Conflict, "did_not_work");
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
            assert_err(&e, ErrorKind::Conflict, "did_not_work");
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
