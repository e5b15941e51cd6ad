//! Incidents: offers expiring, accepts filling, declines replaced.

use super::*;

// ---------------------------------------------------------------------------------------
// 4. Expiry
// ---------------------------------------------------------------------------------------

#[test]
fn an_offer_expires_at_its_deadline_and_the_next_candidate_is_offered() {
    let c = grid_center("g1");
    let mut w = world(vec![
        member("a", offset(c, 10.0, 0.0)),
        member("b", offset(c, 100.0, 0.0)),
        member("c", offset(c, 400.0, 0.0)),
        member("d", offset(c, 700.0, 0.0)),
    ]);
    let (inc, out) = w.raise(&city_command(), rescue("g1", Level::IV, 1));
    assert_eq!(sent_to(&out), ["a", "b"]);
    let a_offer = w.offer(&inc, "a").clone();
    assert_eq!(a_offer.expires_at, T0 + 60_000);
    assert_eq!(w.state.next_deadline(), Some(T0 + 60_000), "the offers expire before the escalation");

    // a tick before the deadline does nothing
    let out = w.at_ms(59_999).tick();
    assert!(out.events.is_empty());
    assert_eq!(w.offer(&inc, "a").state, OfferState::Offered);

    // at the deadline: both expire, the next two candidates are offered
    let out = w.at(60).tick();
    assert_eq!(kinds(&out), ["offer_expired", "offer_expired", "offer_sent", "offer_sent"]);
    assert_eq!(sent_to(&out), ["c", "d"]);
    assert_eq!(w.offer(&inc, "a").state, OfferState::Expired);
    assert_eq!(w.offer(&inc, "a").answered_at, Some(T0 + 60_000));
    assert_eq!(w.offer(&inc, "c").expires_at, T0 + 120_000);
    assert_eq!((w.engaged("a"), w.engaged("b")), (None, None));
    // the expired member is told, with the reason
    let revoked: Vec<&Frame> = out.frames.iter().filter(|f| f.stream == "member:a").collect();
    assert_eq!(revoked.len(), 1);
    assert_eq!(revoked[0].kind, "offer.revoked");
    assert_eq!(revoked[0].data["reason"], "expired");
    assert_eq!(revoked[0].data["offer_id"], a_offer.id.as_str());

    // a tick with nothing due does nothing
    let out = w.at(61).tick();
    assert!(out.events.is_empty());
}

#[test]
fn a_late_tick_still_expires_the_offer() {
    let mut w = world(vec![member("a", in_cell("g1", 0))]);
    let (inc, _) = w.raise(&city_command(), rescue("g1", Level::I, 1));
    let out = w.at(3600).tick();
    assert_eq!(kinds(&out), ["offer_expired"]);
    assert_eq!(w.offer(&inc, "a").answered_at, Some(T0 + 3_600_000), "answered when the tick saw it");
}

#[test]
fn accepting_at_or_after_the_deadline_is_refused_even_before_the_tick() {
    let mut w = world(vec![member("a", in_cell("g1", 0))]);
    let (inc, _) = w.raise(&city_command(), rescue("g1", Level::IV, 1));
    let offer = w.offer_id(&inc, "a");
    let e = w.at(60).refuse(&as_member("a"), accept(&offer));
    assert_err(&e, ErrorKind::Conflict, "offer_expired");
    // after the tick: still offer_expired
    w.tick();
    let e = w.refuse(&as_member("a"), accept(&offer));
    assert_err(&e, ErrorKind::Conflict, "offer_expired");
}

#[test]
fn accepting_one_millisecond_before_the_deadline_counts() {
    let mut w = world(vec![member("a", in_cell("g1", 0))]);
    let (inc, _) = w.raise(&city_command(), rescue("g1", Level::IV, 1));
    let offer = w.offer_id(&inc, "a");
    let out = w.at_ms(59_999).ok(&as_member("a"), accept(&offer));
    assert_eq!(kinds(&out), ["offer_accepted", "incident_filled"]);
    // the stale expiry deadline fires harmlessly
    let out = w.at(60).tick();
    assert!(out.events.is_empty());
    assert_eq!(w.offer(&inc, "a").state, OfferState::Accepted);
}

#[test]
fn next_deadline_reports_the_earliest_deadline() {
    let mut w = world(vec![member("a", in_cell("g1", 0))]);
    assert_eq!(w.state.next_deadline(), None, "nothing pending after an import");

    // a level-I call: an offer expiry, no escalation
    w.raise(&city_command(), rescue("g1", Level::I, 1));
    // one offer out of two wanted: a retry in 10 s comes first
    assert_eq!(w.state.next_deadline(), Some(T0 + 10_000));
    w.at(10).tick();
    assert_eq!(w.state.next_deadline(), Some(T0 + 20_000), "still short: the next retry");

    let mut w = world(vec![member("a", in_cell("g1", 0)), member("b", in_cell("g1", 1))]);
    w.at(5).raise(&city_command(), rescue("g1", Level::IV, 1));
    assert_eq!(w.state.next_deadline(), Some(T0 + 65_000), "the offers' expiry, before the escalation at 125 s");
    let pending: Vec<Ts> = w.state.deadlines.iter().map(|(t, _)| *t).collect();
    assert_eq!(pending, [T0 + 65_000, T0 + 65_000, T0 + 125_000]);
    assert!(w.state.deadlines.contains(&(T0 + 125_000, Deadline::Escalation("inc-000001".into()))));
}

#[test]
fn an_incident_short_of_candidates_looks_again_after_retry_s() {
    let mut w = world(vec![member("a", in_cell("g1", 0)), member("late", in_cell("g2", 0)).off_call()]);
    let (inc, _) = w.raise(&city_command(), rescue("g1", Level::I, 1));
    assert_eq!(w.state.next_deadline(), Some(T0 + 10_000), "one offer out of two wanted: look again in 10 s");
    w.at(3).ok(&as_member("late"), Command::Duty { on_call: true });
    assert_eq!(w.offered(&inc), ["a"], "coming on call does not by itself trigger a refill");
    let out = w.at_ms(9_999).tick();
    assert!(out.events.is_empty());
    let out = w.at(10).tick();
    assert_eq!(sent_to(&out), ["late"]);
    assert!(retries(&w, &inc).is_empty(), "nothing more wanted: the retries stop");
}

/// Retry deadlines pending for an incident.
fn retries(w: &World, incident_id: &str) -> Vec<Ts> {
    w.state
        .deadlines
        .iter()
        .filter(|(_, d)| matches!(d, Deadline::Retry(i) if i == incident_id))
        .map(|(t, _)| *t)
        .collect()
}

#[test]
fn an_incident_short_of_candidates_keeps_a_single_retry_pending() {
    let mut w = world(vec![member("a", in_cell("g1", 0)), member("b", in_cell("g1", 1))]);
    let (inc, _) = w.raise(&city_command(), rescue("g1", Level::IV, 2)); // 3 wanted, 2 found
    assert_eq!(retries(&w, &inc), [T0 + 10_000]);
    let b_offer = w.offer_id(&inc, "b");
    w.at(5).ok(&as_member("b"), decline(&b_offer)); // refill, still short
    assert_eq!(retries(&w, &inc).len(), 1, "pending retries: {:?}", retries(&w, &inc));
    // ticking at every retry: attempts should be retry_s (10 s) apart, not 5 s
    let mut attempts = Vec::new();
    for t in [10, 15, 20, 25, 30] {
        w.at(t).tick();
        attempts.push(retries(&w, &inc));
    }
    assert!(attempts.iter().all(|r| r.len() <= 1), "{attempts:?}");
}

// ---------------------------------------------------------------------------------------
// 5. Filling
// ---------------------------------------------------------------------------------------

#[test]
fn accepts_up_to_the_headcount_fill_the_incident_and_revoke_the_surplus() {
    let c = grid_center("g1");
    let mut w = world(vec![
        member("a", offset(c, 10.0, 0.0)),
        member("b", offset(c, 100.0, 0.0)),
        member("c", offset(c, 200.0, 0.0)),
    ]);
    let (inc, out) = w.raise(&staff("c1"), rescue("g1", Level::IV, 2));
    assert_eq!(sent_to(&out), ["a", "b", "c"]);

    let out = w.at(3).accept("a", &inc);
    assert_eq!(kinds(&out), ["offer_accepted"]);
    assert_eq!(w.incident(&inc).status, Status::Open);
    assert_eq!(w.incident(&inc).accepted(), 1);

    let out = w.at(4).accept("b", &inc);
    assert_eq!(kinds(&out), ["offer_accepted", "incident_filled", "offer_revoked"]);
    let c_offer = w.offer_id(&inc, "c");
    match &out.events[2].body {
        EventBody::OfferRevoked { offer_id, member_id, reason, .. } => {
            assert_eq!((offer_id.as_str(), member_id.as_str(), *reason), (c_offer.as_str(), "c", RevokeReason::Filled));
        }
        other => panic!("{other:?}"),
    }
    let i = w.incident(&inc);
    assert_eq!(i.status, Status::Filled);
    assert_eq!(i.filled_at, Some(T0 + 4_000));
    assert_eq!(i.escalate_at, None);
    assert_eq!(i.open_offers(), 0);
    assert_eq!(w.offer(&inc, "c").state, OfferState::Revoked);
    assert_eq!(w.engaged("c"), None, "the surplus member is free");
    // c hears why
    let to_c: Vec<&Frame> = out.frames.iter().filter(|f| f.stream == "member:c").collect();
    assert_eq!(to_c.len(), 1);
    assert_eq!((to_c[0].kind, to_c[0].data["reason"].as_str()), ("offer.revoked", Some("filled")));
    // a and b each got an assignment
    for m in ["a", "b"] {
        assert!(w.frames.iter().any(|f| f.stream == format!("member:{m}") && f.kind == "assignment"));
    }

    // a late accept of the revoked offer
    let e = w.at(5).refuse(&as_member("c"), accept(&c_offer));
    assert_err(&e, ErrorKind::Conflict, "offer_revoked");

    // accepting again is idempotent
    let a_offer = w.offer_id(&inc, "a");
    let out = w.ok(&as_member("a"), accept(&a_offer));
    assert!(out.events.is_empty() && out.frames.is_empty());
    assert_eq!(out.reply, Some(Reply::Done));
    assert_eq!(w.incident(&inc).accepted(), 2);
}

#[test]
fn a_decline_of_an_open_offer_sends_a_replacement() {
    let c = grid_center("g1");
    let mut w = world(vec![
        member("a", offset(c, 10.0, 0.0)),
        member("b", offset(c, 100.0, 0.0)),
        member("c", offset(c, 200.0, 0.0)),
    ]);
    let (inc, out) = w.raise(&city_command(), rescue("g1", Level::IV, 1));
    assert_eq!(sent_to(&out), ["a", "b"]);
    let a_offer = w.offer_id(&inc, "a");

    let out = w.at(2).ok(&as_member("a"), Command::Decline { offer_id: a_offer.clone(), reason: Some("sick".into()) });
    assert_eq!(kinds(&out), ["offer_declined", "offer_sent"]);
    assert_eq!(sent_to(&out), ["c"]);
    assert!(matches!(&out.events[0].body, EventBody::OfferDeclined { reason: Some(r), .. } if r == "sick"));
    assert_eq!(w.offer(&inc, "a").state, OfferState::Declined);
    assert_eq!(w.engaged("a"), None);
    assert_eq!(w.incident(&inc).open_offers(), 2);

    // declining again is idempotent; accepting after a decline is refused
    let out = w.ok(&as_member("a"), decline(&a_offer));
    assert!(out.events.is_empty());
    let e = w.refuse(&as_member("a"), accept(&a_offer));
    assert_err(&e, ErrorKind::Conflict, "offer_declined");
}

#[test]
fn an_accepted_offer_cannot_be_declined() {
    let mut w = world(vec![member("a", in_cell("g1", 0))]);
    let (inc, _) = w.raise(&city_command(), rescue("g1", Level::IV, 2));
    w.accept("a", &inc);
    let offer = w.offer_id(&inc, "a");
    let e = w.refuse(&as_member("a"), decline(&offer));
    assert_err(&e, ErrorKind::Conflict, "offer_accepted");
}

// ---------------------------------------------------------------------------------------
// Answers with the client's id (issue 18, `domain::answers`)
// ---------------------------------------------------------------------------------------

fn with_id(id: &str, answer: Command) -> Command {
    Command::Answer { answer_id: id.into(), answer: Box::new(answer) }
}

#[test]
fn an_answer_id_is_decided_once_even_after_the_offer_changed_and_across_a_replay() {
    let mut w = world(vec![member("a", in_cell("g1", 0)), member("b", in_cell("g1", 1))]);
    let (inc, _) = w.raise(&city_command(), rescue("g1", Level::IV, 2));
    let a_offer = w.offer_id(&inc, "a");
    let b_offer = w.offer_id(&inc, "b");

    let out = w.at(1).ok(&as_member("a"), with_id("q-1", accept(&a_offer)));
    assert_eq!(out.reply, Some(Reply::Done));
    assert!(matches!(&out.events[0].body, EventBody::OfferAccepted { answer_id: Some(id), .. } if id == "q-1"));
    // the scope's frame does not carry the member's client id
    assert!(out.frames.iter().all(|f| f.data.get("answer_id").is_none()), "{:?}", out.frames);

    // the incident is resolved; the same answer id is a repeat, decided no more
    w.at(2).ok(&city_command(), resolve(&inc));
    let out = w.ok(&as_member("a"), with_id("q-1", accept(&a_offer)));
    assert_eq!(out.reply, Some(Reply::Duplicate));
    assert!(out.events.is_empty() && out.frames.is_empty());

    // the id used for another answer is refused; another member's same id is theirs
    let e = w.refuse(&as_member("a"), with_id("q-1", decline(&a_offer)));
    assert_err(&e, ErrorKind::Conflict, "answer_id_reused");
    let e = w.refuse(&as_member("b"), with_id("q-1", accept(&b_offer)));
    assert_err(&e, ErrorKind::Conflict, "offer_revoked");

    // bad ids, and an id on what is not an answer, are refused
    assert_err(&w.refuse(&as_member("a"), with_id("", accept(&a_offer))), ErrorKind::Invalid, "bad_answer_id");
    let e = w.refuse(&as_member("a"), with_id("q-2", Command::Duty { on_call: false }));
    assert_err(&e, ErrorKind::Invalid, "bad_answer_id");
    let e = w.refuse(&as_member("a"), with_id("q-2", with_id("q-3", accept(&a_offer))));
    assert_err(&e, ErrorKind::Invalid, "bad_answer_id");
    assert_err(&w.refuse(&city_command(), with_id("q-2", accept(&a_offer))), ErrorKind::Forbidden, "members_only");

    // the records come back from the log, and from a snapshot
    let (mut replayed, _) = replay(&w.log);
    let mut again = w.beside(std::mem::take(&mut replayed));
    assert_eq!(again.ok(&as_member("a"), with_id("q-1", accept(&a_offer))).reply, Some(Reply::Duplicate));
    let restored = crate::domain::snapshot::decode(&crate::domain::snapshot::encode(&w.state)).unwrap();
    assert_eq!(restored.answered, w.state.answered);
    assert_restores_at_every_cut(&w.log, &w.rules);
}
