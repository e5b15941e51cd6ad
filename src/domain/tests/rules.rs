//! Incidents: authorization and validation in the domain, idempotency keys, resolve and cancel.

use super::*;

// ---------------------------------------------------------------------------------------
// 8. Authorization and validation in the domain
// ---------------------------------------------------------------------------------------

#[test]
fn a_member_cannot_answer_another_members_offer() {
    let (mut w, inc, a_offer) = accepted_call();
    let b_offer = w.offer_id(&inc, "b");
    for cmd in [accept(&a_offer), decline(&a_offer), arrive(&a_offer, grid_center("g1"))] {
        let e = w.refuse(&as_member("b"), cmd);
        assert_err(&e, ErrorKind::NotFound, "unknown_offer");
    }
    let e = w.refuse(&as_member("a"), accept(&b_offer));
    assert_err(&e, ErrorKind::NotFound, "unknown_offer");
    // an offer that does not exist is answered alike
    let e = w.refuse(&as_member("a"), accept("off-999"));
    assert_err(&e, ErrorKind::NotFound, "unknown_offer");
    // a member not in the city
    let e = w.refuse(&as_member("ghost"), accept(&b_offer));
    assert_err(&e, ErrorKind::NotFound, "unknown_member");
    // staff and command cannot answer for a member
    for actor in [staff("c1"), city_command(), Actor::System] {
        let e = w.refuse(&actor, accept(&b_offer));
        assert_err(&e, ErrorKind::Forbidden, "members_only");
    }
}

#[test]
fn staff_may_raise_only_in_their_own_community() {
    let mut w = world(vec![member("a", in_cell("g1", 0))]);
    let e = w.refuse(&staff("c2"), Command::Raise(rescue("g1", Level::IV, 1)));
    assert_err(&e, ErrorKind::Forbidden, "outside_scope");
    // by location too
    let r = RaiseIncident { grid_id: None, location: Some(in_cell("g2", 0)), ..rescue("g1", Level::IV, 1) };
    let e = w.refuse(&staff("c2"), Command::Raise(r));
    assert_err(&e, ErrorKind::Forbidden, "outside_scope");
    // a scoped actor naming an unknown grid is told it is outside their area
    let e = w.refuse(&staff("c1"), Command::Raise(rescue("g99", Level::IV, 1)));
    assert_err(&e, ErrorKind::Forbidden, "outside_scope");
    // a district command outside its district
    let e = w.refuse(&Actor::Command { district: Some("d9".into()) }, Command::Raise(rescue("g1", Level::IV, 1)));
    assert_err(&e, ErrorKind::Forbidden, "outside_scope");

    let (_, out) = w.raise(&staff("c2"), rescue("g3", Level::IV, 1));
    assert_eq!(out.events[0].actor, "staff:c2");
    w.raise(&Actor::Command { district: Some("d1".into()) }, rescue("g4", Level::IV, 1));
    let (inc, _) = w.raise(&staff("c1"), rescue("g1", Level::IV, 1));
    assert_eq!(w.incident(&inc).raised_by, "staff:c1");
}

#[test]
fn members_and_unit_admins_cannot_raise() {
    let mut w = world(vec![member("a", in_cell("g1", 0))]);
    for actor in [as_member("a"), Actor::UnitAdmin { unit: "u1".into() }] {
        let e = w.refuse(&actor, Command::Raise(rescue("g1", Level::IV, 1)));
        assert_err(&e, ErrorKind::Forbidden, "role_not_allowed");
    }
}

#[test]
fn an_unknown_grid_or_a_location_outside_every_grid_is_invalid_for_city_command() {
    let mut w = world(vec![member("a", in_cell("g1", 0))]);
    let e = w.refuse(&city_command(), Command::Raise(rescue("g99", Level::IV, 1)));
    assert_err(&e, ErrorKind::Invalid, "unknown_grid");
    assert!(e.detail.contains("g99"), "{}", e.detail);
    let r = RaiseIncident { grid_id: None, location: Some(nowhere()), ..rescue("g1", Level::IV, 1) };
    let e = w.refuse(&city_command(), Command::Raise(r));
    assert_err(&e, ErrorKind::Invalid, "unknown_grid");
}

#[test]
fn a_location_inside_a_grid_raises_there_at_that_exact_spot() {
    let mut w = world(vec![member("a", in_cell("g1", 0))]);
    let spot = offset(in_cell("g2", 1), 20.0, 20.0);
    let r = RaiseIncident { grid_id: None, location: Some(spot), ..rescue("g1", Level::IV, 1) };
    let (inc, out) = w.raise(&staff("c1"), r);
    assert!(
        matches!(&out.events[0].body, EventBody::IncidentRaised { grid_id, community_id, .. } if grid_id == "g2" && community_id == "c1")
    );
    assert_eq!(w.incident(&inc).location, spot);
}

#[test]
fn give_exactly_one_of_grid_or_location() {
    let mut w = world(vec![member("a", in_cell("g1", 0))]);
    let both = RaiseIncident { location: Some(in_cell("g1", 0)), ..rescue("g1", Level::IV, 1) };
    let neither = RaiseIncident { grid_id: None, ..rescue("g1", Level::IV, 1) };
    for r in [both, neither] {
        let e = w.refuse(&city_command(), Command::Raise(r));
        assert_err(&e, ErrorKind::Invalid, "grid_or_location");
    }
}

#[test]
fn headcount_must_be_between_one_and_the_maximum() {
    let mut w = world(vec![member("a", in_cell("g1", 0))]);
    for headcount in [0, 51, u32::MAX] {
        let e = w.refuse(&city_command(), Command::Raise(rescue("g1", Level::IV, headcount)));
        assert_err(&e, ErrorKind::Invalid, "headcount_out_of_range");
    }
    w.raise(&city_command(), rescue("g1", Level::IV, 50));
}

#[test]
fn unknown_skills_and_categories_are_refused() {
    let mut w = world(vec![member("a", in_cell("g1", 0))]);
    let r = RaiseIncident { skills: vec!["medical".into(), "flying".into()], ..rescue("g1", Level::IV, 1) };
    let e = w.refuse(&city_command(), Command::Raise(r));
    assert_err(&e, ErrorKind::Invalid, "unknown_skill");
    assert!(e.detail.contains("flying"), "{}", e.detail);

    let r = RaiseIncident { category: "party".into(), ..rescue("g1", Level::IV, 1) };
    let e = w.refuse(&city_command(), Command::Raise(r));
    assert_err(&e, ErrorKind::Invalid, "unknown_category");
    assert!(e.detail.contains("patrol") && e.detail.contains("rescue"), "lists the known ones: {}", e.detail);

    let r = RaiseIncident { skills: vec!["driving".into(); 17], ..rescue("g1", Level::IV, 1) };
    let e = w.refuse(&city_command(), Command::Raise(r));
    assert_err(&e, ErrorKind::Invalid, "too_many_skills");

    // repeated skills are kept once
    let r = RaiseIncident {
        category: "patrol".into(),
        skills: vec!["driving".into(), "driving".into()],
        ..rescue("g1", Level::IV, 1)
    };
    let (inc, _) = w.raise(&city_command(), r);
    assert_eq!(w.incident(&inc).skills, ["driving"]);
}

#[test]
fn notes_are_at_most_1000_characters() {
    let mut w = world(vec![member("a", in_cell("g1", 0))]);
    let r = RaiseIncident { note: Some("水".repeat(1001)), ..rescue("g1", Level::IV, 1) };
    let e = w.refuse(&city_command(), Command::Raise(r));
    assert_err(&e, ErrorKind::Invalid, "text_too_long");
    let r = RaiseIncident { note: Some("水".repeat(1000)), ..rescue("g1", Level::IV, 1) };
    let (inc, _) = w.raise(&city_command(), r);
    let e = w.refuse(&city_command(), Command::Resolve { incident_id: inc, note: Some("x".repeat(1001)) });
    assert_err(&e, ErrorKind::Invalid, "text_too_long");
}

#[test]
fn raising_before_any_city_is_imported_is_refused() {
    let mut state = State::default();
    let e = execute(&mut state, &Rules::for_tests(), &city_command(), Command::Raise(rescue("g1", Level::IV, 1)), T0)
        .unwrap_err();
    assert_err(&e, ErrorKind::Conflict, "no_city");
    assert_eq!(state.last_seq, 0);
}

#[test]
fn only_city_command_or_the_system_imports_a_city() {
    let mut w = world(vec![member("a", in_cell("g1", 0))]);
    // a district's command is told it takes the city's; other roles, that it is not theirs
    let e = w.refuse(&Actor::Command { district: Some("d1".into()) }, Command::ImportCity(Box::new(tiny_city(vec![]))));
    assert_err(&e, ErrorKind::Forbidden, "city_command_only");
    for actor in [staff("c1"), as_member("a")] {
        let e = w.refuse(&actor, Command::ImportCity(Box::new(tiny_city(vec![]))));
        assert_err(&e, ErrorKind::Forbidden, "role_not_allowed");
    }
    let out = w.ok(&city_command(), Command::ImportCity(Box::new(tiny_city(vec![]))));
    assert_eq!(kinds(&out), ["city_imported"]);
    assert_eq!(out.events[0].actor, "command");
}

#[test]
fn an_import_is_refused_while_an_incident_is_open_or_the_city_is_invalid() {
    let mut w = world(vec![member("a", in_cell("g1", 0))]);
    let (inc, _) = w.raise(&city_command(), rescue("g1", Level::IV, 1));
    let e = w.refuse(&city_command(), Command::ImportCity(Box::new(tiny_city(vec![]))));
    assert_err(&e, ErrorKind::Conflict, "open_incidents");
    w.ok(&city_command(), cancel(&inc));

    let e = w.refuse(
        &city_command(),
        Command::ImportCity(Box::new(tiny_city(vec![member("z", nowhere()).skills(&["juggling"])]))),
    );
    assert_err(&e, ErrorKind::Invalid, "unknown_skill");
    let e = w.refuse(
        &city_command(),
        Command::ImportCity(Box::new(tiny_city(vec![member("z", nowhere()).living_in("g99")]))),
    );
    assert_err(&e, ErrorKind::Invalid, "invalid_city");
}

#[test]
fn a_reimport_keeps_the_fairness_history_of_members_still_there() {
    let mut w = world(vec![member("a", in_cell("g1", 0))]);
    let (inc, _) = w.raise(&city_command(), rescue("g1", Level::IV, 1));
    w.at(5).accept("a", &inc);
    w.at(6).ok(&city_command(), resolve(&inc));
    // a moves to the end of the roster; a newcomer takes index 0
    w.at(7).ok(
        &city_command(),
        Command::ImportCity(Box::new(tiny_city(vec![member("new", in_cell("g2", 0)), member("a", in_cell("g1", 0))]))),
    );
    let a = &w.state.roster.members[w.state.member_index("a").unwrap() as usize];
    assert_eq!((a.last_duty_at, a.duties), (Some(T0 + 5_000), 1));
    let new = &w.state.roster.members[w.state.member_index("new").unwrap() as usize];
    assert_eq!((new.last_duty_at, new.duties), (None, 0));
}

/// A resolved incident of c1 (g1), then a re-import of `city`.
fn reimported(city: City) -> (World, String) {
    let mut w = world(vec![member("a", in_cell("g1", 0)).living_in("g1")]);
    let (inc, _) = w.raise(&staff("c1"), rescue("g1", Level::IV, 1));
    w.at(10).ok(&staff("c1"), resolve(&inc));
    w.at(20).ok(&city_command(), Command::ImportCity(Box::new(city)));
    (w, inc)
}

#[test]
fn after_a_reimport_that_reorders_communities_old_incidents_stay_in_their_community() {
    let mut city = tiny_city(vec![member("a", in_cell("g1", 0)).living_in("g1")]);
    city.communities.reverse();
    let (mut w, inc) = reimported(city);
    let i = w.incident(&inc).clone();
    assert!(crate::domain::scope::incident(&staff("c1"), &i), "c1 raised it");
    assert!(!crate::domain::scope::incident(&staff("c2"), &i), "c2 never had it");
    let e = w.refuse(&staff("c1"), resolve(&inc));
    assert_err(&e, ErrorKind::Conflict, "incident_closed");
}

#[test]
fn after_a_reimport_that_drops_a_community_scope_checks_do_not_panic() {
    let mut w = world(vec![member("a", in_cell("g3", 0)).living_in("g3")]);
    let (inc, _) = w.raise(&staff("c2"), rescue("g3", Level::IV, 1));
    w.at(10).ok(&staff("c2"), cancel(&inc));
    let mut city = tiny_city(vec![member("a", in_cell("g1", 0)).living_in("g1")]);
    city.communities.truncate(1); // c2 is gone
    w.at(20).ok(&city_command(), Command::ImportCity(Box::new(city)));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        w.exec(&Actor::Command { district: Some("d1".into()) }, resolve(&inc)).map(|_| ())
    }));
    let answer = result.expect("a district command asking about an old incident must not crash the dispatcher");
    assert!(answer.is_err(), "the incident is closed");
}

// ---------------------------------------------------------------------------------------
// 9. Idempotency keys
// ---------------------------------------------------------------------------------------

#[test]
fn the_same_idempotency_key_from_the_same_actor_returns_the_same_incident() {
    let mut w = world(vec![member("a", in_cell("g1", 0)), member("b", in_cell("g3", 0))]);
    let keyed =
        |grid: &str, key: &str| RaiseIncident { idempotency_key: Some(key.into()), ..rescue(grid, Level::IV, 1) };

    let (first, out) = w.raise(&staff("c1"), keyed("g1", "k-1"));
    assert!(!out.events.is_empty());
    let seq = w.state.last_seq;

    // the same request again, or even a different one with the same key: the same incident
    for r in [keyed("g1", "k-1"), RaiseIncident { headcount: 5, ..keyed("g2", "k-1") }] {
        let out = w.at(30).ok(&staff("c1"), Command::Raise(r));
        assert_eq!(out.reply, Some(Reply::Incident(first.clone())));
        assert!(out.events.is_empty() && out.frames.is_empty());
        assert_eq!(w.state.last_seq, seq);
        assert_eq!(w.state.incidents.len(), 1);
    }

    // another key, or the same key from another actor, is another incident
    let (second, _) = w.raise(&staff("c1"), keyed("g1", "k-2"));
    let (third, _) = w.raise(&staff("c2"), keyed("g3", "k-1"));
    let (fourth, _) = w.raise(&city_command(), keyed("g1", "k-1"));
    let ids = set(&[&first, &second, &third, &fourth]);
    assert_eq!(ids.len(), 4);

    // the key is remembered after the incident is closed
    w.ok(&staff("c1"), resolve(&first));
    let out = w.ok(&staff("c1"), Command::Raise(keyed("g1", "k-1")));
    assert_eq!(out.reply, Some(Reply::Incident(first.clone())));

    // empty or oversized keys are refused
    for key in [String::new(), "k".repeat(201)] {
        let e = w.refuse(&staff("c1"), Command::Raise(keyed("g1", &key)));
        assert_err(&e, ErrorKind::Invalid, "bad_idempotency_key");
    }
}

// ---------------------------------------------------------------------------------------
// 10. Resolve and cancel
// ---------------------------------------------------------------------------------------

/// `a` accepted a call for two in g1; `b` and `c` still hold open offers.
fn half_staffed_call() -> (World, String) {
    let c = grid_center("g1");
    let mut w = world(vec![
        member("a", offset(c, 10.0, 0.0)),
        member("b", offset(c, 100.0, 0.0)),
        member("c", offset(c, 200.0, 0.0)),
    ]);
    let (inc, out) = w.raise(&staff("c1"), rescue("g1", Level::IV, 2));
    assert_eq!(sent_to(&out), ["a", "b", "c"]);
    w.at(5).accept("a", &inc);
    (w, inc)
}

#[test]
fn resolving_revokes_open_offers_and_releases_accepted_members() {
    let (mut w, inc) = half_staffed_call();
    let out = w.at(50).ok(&staff("c1"), Command::Resolve { incident_id: inc.clone(), note: Some("done".into()) });
    assert_eq!(out.reply, Some(Reply::Incident(inc.clone())));
    assert_eq!(kinds(&out), ["offer_revoked", "offer_revoked", "incident_resolved"]);
    let revoked: Vec<(&str, RevokeReason)> = out
        .events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::OfferRevoked { member_id, reason, .. } => Some((member_id.as_str(), *reason)),
            _ => None,
        })
        .collect();
    assert_eq!(revoked, [("b", RevokeReason::Resolved), ("c", RevokeReason::Resolved)]);

    let i = w.incident(&inc);
    assert_eq!((i.status, i.closed_at, i.escalate_at), (Status::Resolved, Some(T0 + 50_000), None));
    assert_eq!(w.offer(&inc, "a").state, OfferState::Accepted, "the accepted offer keeps its record");
    for m in ["a", "b", "c"] {
        assert_eq!(w.engaged(m), None, "{m} is released");
    }
    // a is told the assignment is over; b and c that their offers are gone
    let closed: Vec<&Frame> = out.frames.iter().filter(|f| f.kind == "assignment.closed").collect();
    assert_eq!(closed.len(), 1);
    assert_eq!((closed[0].stream.as_str(), closed[0].data["reason"].as_str()), ("member:a", Some("resolved")));
    assert!(
        out.frames
            .iter()
            .any(|f| f.stream == "member:b" && f.kind == "offer.revoked" && f.data["reason"] == "resolved")
    );

    // a second resolve, or a cancel, is refused
    let e = w.at(60).refuse(&staff("c1"), resolve(&inc));
    assert_err(&e, ErrorKind::Conflict, "incident_closed");
    let e = w.refuse(&staff("c1"), cancel(&inc));
    assert_err(&e, ErrorKind::Conflict, "incident_closed");
    // the revoked offers stay revoked
    let b_offer = w.offer_id(&inc, "b");
    let e = w.refuse(&as_member("b"), accept(&b_offer));
    assert_err(&e, ErrorKind::Conflict, "offer_revoked");
    // nothing is left to fire
    let out = w.at(1000).tick();
    assert!(out.events.is_empty(), "{:?}", kinds(&out));

    // the released members can be called again at once; a, who has just done a duty,
    // ranks last (penalty ~724 m, 995 s after accepting)
    let (next, out) = w.raise(&staff("c1"), rescue("g1", Level::IV, 2));
    assert_eq!(sent_to(&out), ["b", "c", "a"]);
    assert_eq!(w.offered(&next).len(), 3);
}

#[test]
fn cancelling_revokes_open_offers_with_reason_cancelled() {
    let (mut w, inc) = half_staffed_call();
    let out =
        w.at(50).ok(&city_command(), Command::Cancel { incident_id: inc.clone(), reason: Some("false alarm".into()) });
    assert_eq!(kinds(&out), ["offer_revoked", "offer_revoked", "incident_cancelled"]);
    assert!(
        out.events[..2]
            .iter()
            .all(|e| matches!(e.body, EventBody::OfferRevoked { reason: RevokeReason::Cancelled, .. }))
    );
    assert_eq!(w.incident(&inc).status, Status::Cancelled);
    for m in ["a", "b", "c"] {
        assert_eq!(w.engaged(m), None, "{m} is released");
    }
    assert!(
        out.frames
            .iter()
            .any(|f| f.stream == "member:a" && f.kind == "assignment.closed" && f.data["reason"] == "cancelled")
    );
    let e = w.refuse(&city_command(), cancel(&inc));
    assert_err(&e, ErrorKind::Conflict, "incident_closed");
    let e = w.refuse(&city_command(), resolve(&inc));
    assert_err(&e, ErrorKind::Conflict, "incident_closed");
}

#[test]
fn a_filled_incident_can_still_be_resolved() {
    let mut w = world(vec![member("a", in_cell("g1", 0))]);
    let (inc, _) = w.raise(&staff("c1"), rescue("g1", Level::IV, 1));
    w.accept("a", &inc);
    assert_eq!(w.incident(&inc).status, Status::Filled);
    let out = w.at(10).ok(&staff("c1"), resolve(&inc));
    assert_eq!(kinds(&out), ["incident_resolved"]);
    assert_eq!(w.engaged("a"), None);
}

#[test]
fn only_those_who_see_the_incident_may_close_it() {
    let (mut w, inc) = half_staffed_call();
    for actor in [
        staff("c2"),
        as_member("a"),
        Actor::UnitAdmin { unit: "u1".into() },
        Actor::Command { district: Some("d2".into()) },
    ] {
        for cmd in [resolve(&inc), cancel(&inc)] {
            let e = w.refuse(&actor, cmd);
            assert_err(&e, ErrorKind::NotFound, "unknown_incident");
        }
    }
    let e = w.refuse(&city_command(), resolve("inc-999999"));
    assert_err(&e, ErrorKind::NotFound, "unknown_incident");
}
