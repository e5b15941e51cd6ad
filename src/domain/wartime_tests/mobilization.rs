//! Wartime: mobilization orders, acknowledgements, reports and their progress.

use super::*;

// ---------------------------------------------------------------------------------------
// Mobilization
// ---------------------------------------------------------------------------------------

#[test]
fn mobilization_progress_counts_are_exact_through_acknowledgements_and_geofenced_reports() {
    let mut w = mobilization_world();
    let id = w.mobilize(&city_command(), mobilize_teams(&["t1", "t3"]));
    assert_eq!(id, "mob-1");
    let m = w.mob(&id);
    assert_eq!(m.counts, progress(4, 0, 0, 4), "off-call members are ordered too");
    assert_eq!(m.districts, ["d1"]);
    assert_eq!(m.deadline, T0 + 3_600_000);
    for (member, community) in [("a", "c1"), ("b", "c1"), ("c", "c1"), ("d", "c2")] {
        let f = frames_of(&w.frames, &format!("member:{member}"), "mobilization.order");
        assert_eq!(f.len(), 1, "{member}");
        assert_eq!(f[0].data["mobilization_id"], "mob-1");
        assert_eq!(f[0].data["report_to"]["community_id"], community);
        let loc: Position = serde_json::from_value(f[0].data["report_to"]["location"].clone()).unwrap();
        assert_eq!(loc, community_center(community));
        assert_eq!(w.state.open_frames(&format!("member:{member}")), [f[0].seq], "the order is open for {member}");
    }
    assert!(frames_of(&w.frames, "member:e", "mobilization.order").is_empty());
    assert_eq!(frames_of(&w.frames, "city", "mobilization.ordered").len(), 1);
    assert_eq!(frames_of(&w.frames, "district:d1", "mobilization.ordered").len(), 1);
    assert!(frames_of(&w.frames, "district:d2", "mobilization.ordered").is_empty());
    // Each unit whose teams are ordered hears of it, with its own teams only.
    for (unit, team) in [("u1", "t1"), ("u3", "t3")] {
        let f = frames_of(&w.frames, &format!("unit:{unit}"), "unit.mobilized");
        assert_eq!(f.len(), 1, "{unit}");
        assert_eq!(f[0].data["mobilization_id"], "mob-1");
        let teams: Vec<&str> =
            f[0].data["teams"].as_array().unwrap().iter().map(|t| t["team_id"].as_str().unwrap()).collect();
        assert_eq!(teams, [team], "{unit}");
    }
    assert!(w.frames.iter().all(|f| f.stream != "unit:u2" && f.stream != "unit:u4"), "only the units ordered");

    // a acknowledges; again is a no-op
    let out = w.at(10).ok(&as_member("a"), ack(&id));
    assert_eq!(kinds(&out), ["mobilization_acknowledged", "mobilization_tallied"], "a batch of one");
    assert_eq!(w.mob(&id).counts, progress(4, 1, 0, 4));
    let before = everything(&w.state);
    let out = w.at(11).ok(&as_member("a"), ack(&id));
    assert!(out.events.is_empty() && out.frames.is_empty());
    assert_eq!(everything(&w.state), before);

    // b reports without acknowledging first, at the community's centre
    let out = w.at(20).ok(&as_member("b"), report(&id, community_center("c1")));
    assert_eq!(kinds(&out), ["mobilization_reported", "mobilization_tallied"]);
    assert_eq!(w.mob(&id).counts, progress(4, 2, 1, 3));
    assert_eq!(w.rt("b").position, community_center("c1"), "the report moves the member");
    assert_eq!(w.rt("b").work.duty_since, Some(T0 + 20_000), "a report starts duty");
    assert!(w.state.open_frames("member:b").is_empty(), "a reported order is no longer resent");
    // again: a no-op
    let before = everything(&w.state);
    let out = w.at(21).ok(&as_member("b"), report(&id, community_center("c1")));
    assert!(out.events.is_empty());
    assert_eq!(everything(&w.state), before);

    // c reports from far away: refused, nothing changes
    let e = w.at(30).refuse(&as_member("c"), report(&id, nowhere()));
    assert_err(&e, ErrorKind::Invalid, "outside_geofence");
    // in a grid of c1 beyond 500 m of the centre: counts
    w.at(31).ok(&as_member("c"), report(&id, in_cell("g1", 0)));
    // d reports into c1, the wrong community: refused
    let e = w.at(32).refuse(&as_member("d"), report(&id, community_center("c1")));
    assert_err(&e, ErrorKind::Invalid, "outside_geofence");
    w.at(33).ok(&as_member("d"), ack(&id));
    w.at(34).ok(&as_member("a"), report(&id, community_center("c1")));
    // e was not ordered
    let e = w.at(35).refuse(&as_member("e"), ack(&id));
    assert_err(&e, ErrorKind::NotFound, "unknown_mobilization");
    let e = w.refuse(&as_member("a"), ack("mob-9"));
    assert_err(&e, ErrorKind::NotFound, "unknown_mobilization");

    let m = w.mob(&id);
    assert_eq!(m.counts, progress(4, 4, 3, 1));
    let by_team: Vec<(u32, Progress, Vec<String>)> = m
        .breakdown(|o| o.team)
        .into_iter()
        .map(|(t, p, miss)| (t, p, miss.iter().map(|o| o.member_id.clone()).collect()))
        .collect();
    let (t1, t3) = (w.state.city.team_by_id["t1"], w.state.city.team_by_id["t3"]);
    assert_eq!(by_team, [(t1, progress(3, 3, 3, 0), vec![]), (t3, progress(1, 1, 0, 1), vec!["d".to_string()])]);
    // every progress frame carries the counts; the last one is exact
    let progress_frames = frames_of(&w.frames, "city", "mobilization.progress");
    assert_eq!(progress_frames.len(), 5, "one per batch, and each answer was a batch of its own");
    let last = &progress_frames.last().unwrap().data["progress"];
    assert_eq!(*last, serde_json::json!({"ordered": 4, "acknowledged": 4, "reported": 3, "missing": 1}));
    assert_eq!(frames_of(&w.frames, "district:d1", "mobilization.progress").len(), 5);
}

#[test]
fn a_batch_of_answers_makes_one_progress_frame_per_stream_listing_them_all() {
    let mut w = mobilization_world();
    let id = w.mobilize(&city_command(), mobilize_teams(&["t1", "t3", "t4"]));
    assert_eq!(w.mob(&id).districts, ["d1", "d2"]);
    // One engine batch: a (c1) and d (c2) report to places in d1, e (c4) to one in d2.
    for (who, cmd) in [("a", ack(&id)), ("d", ack(&id)), ("e", report(&id, community_center("c4")))] {
        let out = execute(&mut w.state, &w.rules, &as_member(who), cmd, w.now).unwrap();
        assert_eq!(frames_of(&out.frames, &format!("member:{who}"), "mobilization.state").len(), 1);
        assert!(out.frames.iter().all(|f| f.kind != "mobilization.progress"), "progress waits for the tally");
    }
    assert_eq!(w.state.untallied, set(&["mob-1"]));
    let out = execute(&mut w.state, &w.rules, &Actor::System, Command::Tally, w.now).unwrap();
    assert_eq!(kinds(&out), ["mobilization_tallied"]);
    assert!(w.state.untallied.is_empty() && w.mob(&id).untallied.is_empty());
    let changes = |stream: &str| -> Vec<(String, String)> {
        let f = frames_of(&out.frames, stream, "mobilization.progress");
        assert_eq!(f.len(), 1, "one frame for {stream}");
        assert_eq!(
            f[0].data["progress"],
            serde_json::json!({"ordered": 5, "acknowledged": 3, "reported": 1, "missing": 4})
        );
        f[0].data["changes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["member_id"].as_str().unwrap().to_string(), c["state"].as_str().unwrap().to_string()))
            .collect()
    };
    let pair = |m: &str, s: &str| (m.to_string(), s.to_string());
    assert_eq!(changes("city"), [pair("a", "acknowledged"), pair("d", "acknowledged"), pair("e", "reported")]);
    assert_eq!(changes("district:d1"), [pair("a", "acknowledged"), pair("d", "acknowledged")]);
    assert_eq!(changes("district:d2"), [pair("e", "reported")]);
    // Nothing answered since: a tally logs nothing.
    let out = execute(&mut w.state, &w.rules, &Actor::System, Command::Tally, w.now).unwrap();
    assert!(out.events.is_empty() && out.frames.is_empty());
}

#[test]
fn answers_logged_before_progress_was_batched_still_publish_their_own_progress() {
    let mut w = mobilization_world();
    let id = w.mobilize(&city_command(), mobilize_teams(&["t1"]));
    w.at(10).ok(&as_member("a"), ack(&id));
    w.at(20).ok(&as_member("b"), report(&id, community_center("c1")));
    // The same log as an older build wrote it: unbatched answers, no tallies.
    let mut old: Vec<Event> = w.log.iter().filter(|e| e.body.kind() != "mobilization_tallied").cloned().collect();
    for (i, e) in old.iter_mut().enumerate() {
        e.seq = i as u64 + 1;
        let json = serde_json::to_string(&*e).unwrap();
        if let EventBody::MobilizationAcknowledged { batched, .. } | EventBody::MobilizationReported { batched, .. } =
            &mut e.body
        {
            assert!(json.contains("\"batched\":true"), "{json}");
            *batched = false;
        }
    }
    // An older event has no `batched` field at all: it reads as false.
    let text = serde_json::to_string(&old[old.len() - 1]).unwrap().replace(",\"batched\":false", "");
    assert!(!text.contains("batched"), "{text}");
    assert_eq!(serde_json::from_str::<Event>(&text).unwrap(), old[old.len() - 1]);

    let (state, frames) = replay(&old);
    let progress = frames_of(&frames, "city", "mobilization.progress");
    assert_eq!(progress.len(), 2, "one per answer, as that build published them");
    assert_eq!(
        progress[1].data["progress"],
        serde_json::json!({"ordered": 3, "acknowledged": 2, "reported": 1, "missing": 2})
    );
    assert!(state.untallied.is_empty());
    assert_eq!(state.stream_seq("city"), w.state.stream_seq("city"), "the same seqs as the batched log");
}

#[test]
fn a_follower_builds_only_the_progress_frames_it_wants_and_keeps_every_seq() {
    let mut w = mobilization_world();
    let id = w.mobilize(&city_command(), mobilize_teams(&["t1", "t3", "t4"]));
    // One engine batch of three answers and its tally.
    let mut log = w.log.clone();
    for (who, cmd) in [("a", ack(&id)), ("d", ack(&id)), ("e", report(&id, community_center("c4")))] {
        log.extend(execute(&mut w.state, &w.rules, &as_member(who), cmd, w.now).unwrap().events);
    }
    log.extend(execute(&mut w.state, &w.rules, &Actor::System, Command::Tally, w.now).unwrap().events);
    let (all, all_frames) = replay(&log);
    let mut follower =
        State { frame_filter: FrameFilter::only(|s| s == "district:d2" || s == "member:e"), ..Default::default() };
    let mut frames = Vec::new();
    for e in &log {
        frames.extend(dispatcher::apply(&mut follower, e));
    }
    assert_eq!(follower.streams, all.streams, "the same seqs, built or not");
    let wanted = |f: &&Frame| f.stream == "district:d2" || f.stream == "member:e";
    let expected: Vec<&Frame> = all_frames.iter().filter(wanted).collect();
    let progress: Vec<&Frame> =
        frames.iter().filter(|f| f.kind == "mobilization.progress" && f.stream != "district:d2").collect();
    assert!(progress.is_empty(), "no progress frame for streams it does not want: {progress:?}");
    let built: Vec<&Frame> = frames.iter().filter(wanted).collect();
    assert_eq!(built, expected);
    assert_eq!(frames_of(&frames, "district:d2", "mobilization.progress").len(), 1);
}

#[test]
fn the_mobilization_deadline_passes_once() {
    let mut w = mobilization_world();
    let id = w.mobilize(
        &city_command(),
        Command::Mobilize(MobilizeOrder { teams: vec!["t1".into()], deadline_s: Some(600), ..Default::default() }),
    );
    w.at(10).ok(&as_member("a"), report(&id, community_center("c1")));
    assert_eq!(w.state.next_deadline(), Some(T0 + 600_000));
    let out = w.at(599).tick();
    assert!(out.events.is_empty());
    let out = w.at(600).tick();
    assert_eq!(kinds(&out), ["mobilization_deadline_passed"]);
    assert!(w.mob(&id).deadline_passed && w.mob(&id).is_open());
    let f = frames_of(&w.frames, "city", "mobilization.deadline");
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].data["progress"]["missing"], 2);
    let out = w.at(1_200).tick();
    assert!(out.events.is_empty(), "{:?}", kinds(&out));
    // late reports still count
    w.at(1_300).ok(&as_member("b"), report(&id, community_center("c1")));
    assert_eq!(w.mob(&id).counts, progress(3, 2, 2, 1));
    let out = w.at(5_000).tick();
    assert!(out.events.is_empty());
    // a deadline out of range is refused
    let e = w.refuse(
        &city_command(),
        Command::Mobilize(MobilizeOrder { teams: vec!["t1".into()], deadline_s: Some(0), ..Default::default() }),
    );
    assert_err(&e, ErrorKind::Invalid, "deadline_out_of_range");
}

#[test]
fn closing_a_mobilization_tells_every_ordered_member_and_ends_their_duty() {
    let mut w = mobilization_world();
    let id = w.mobilize(&city_command(), mobilize_teams(&["t1", "t3"]));
    w.at(10).ok(&as_member("a"), report(&id, community_center("c1")));
    w.at(20).ok(&as_member("d"), ack(&id));
    assert_eq!(w.rt("a").work.duty_since, Some(T0 + 10_000));
    let out = w.at(100).ok(&city_command(), Command::CloseMobilization { mobilization_id: id.clone(), reason: None });
    assert_eq!(kinds(&out), ["mobilization_closed"]);
    assert_eq!(out.reply, Some(Reply::Mobilization(id.clone())));
    for member in ["a", "b", "c", "d"] {
        let f = frames_of(&out.frames, &format!("member:{member}"), "mobilization.closed");
        assert_eq!(f.len(), 1, "{member}");
        assert_eq!(f[0].data["mobilization_id"], id.as_str());
        assert!(w.state.open_frames(&format!("member:{member}")).is_empty(), "{member}: nothing left open");
        assert!(w.rt(member).orders.is_empty());
    }
    assert!(frames_of(&out.frames, "member:e", "mobilization.closed").is_empty());
    assert_eq!(frames_of(&out.frames, "city", "mobilization.closed").len(), 1);
    assert_eq!(w.rt("a").work.duty_since, None, "closing ends the reported members' duty");
    assert_eq!(w.rt("a").work.duty_log, [(T0 + 10_000, T0 + 100_000)]);
    assert!(!w.mob(&id).is_open());

    let e = w.refuse(&as_member("b"), ack(&id));
    assert_err(&e, ErrorKind::Conflict, "mobilization_closed");
    let e = w.refuse(&city_command(), Command::CloseMobilization { mobilization_id: id.clone(), reason: None });
    assert_err(&e, ErrorKind::Conflict, "mobilization_closed");
    // the deadline of a closed mobilization passes silently
    let out = w.at(3_600).tick();
    assert!(out.events.is_empty(), "{:?}", kinds(&out));
}

#[test]
fn standing_down_closes_the_mobilizations_wholly_in_the_stood_down_scope() {
    let mut w = mobilization_world();
    w.ok(&city_command(), wartime("d1"));
    w.ok(&city_command(), wartime("d2"));
    let in_d1 = w.mobilize(&city_command(), mobilize_teams(&["t1"]));
    let in_d2 = w.mobilize(&city_command(), mobilize_teams(&["t4"]));
    let both = w.mobilize(&city_command(), mobilize_teams(&["t3", "t4"]));
    assert_eq!(w.mob(&both).districts, ["d1", "d2"]);

    let out = w.at(10).ok(&city_command(), peacetime("d1"));
    assert_eq!(kinds(&out), ["mode_switched", "mobilization_closed"]);
    assert!(!w.mob(&in_d1).is_open());
    assert_eq!(w.mob(&in_d1).closed.as_ref().unwrap().1, "stand_down");
    assert_eq!(frames_of(&out.frames, "member:a", "mobilization.closed").len(), 1);
    assert!(w.mob(&in_d2).is_open() && w.mob(&both).is_open());

    let out = w.at(20).ok(&city_command(), peacetime("d2"));
    assert_eq!(kinds(&out), ["mode_switched", "mobilization_closed"]);
    assert!(!w.mob(&in_d2).is_open());
    assert!(w.mob(&both).is_open(), "not wholly within d2");

    // A district standing down while the city is at war stays at war: nothing closes.
    w.at(30).ok(&city_command(), switch(None, Mode::Wartime));
    w.ok(&city_command(), wartime("d1"));
    let again = w.mobilize(&city_command(), mobilize_teams(&["t1"]));
    let out = w.at(40).ok(&city_command(), peacetime("d1"));
    assert_eq!(kinds(&out), ["mode_switched"]);
    assert!(w.mob(&again).is_open());
    // The city standing down closes everything no longer at war.
    let out = w.at(50).ok(&city_command(), switch(None, Mode::Peacetime));
    assert_eq!(kinds(&out), ["mode_switched", "mobilization_closed", "mobilization_closed"]);
    assert!(!w.mob(&again).is_open() && !w.mob(&both).is_open());
}

#[test]
fn a_mobilization_names_known_teams_by_exactly_one_selector() {
    let mut w = mobilization_world();
    let e = w.refuse(&city_command(), mobilize_teams(&["t1", "nope"]));
    assert_err(&e, ErrorKind::Invalid, "unknown_team");
    assert!(e.detail.contains("nope") && !e.detail.contains("t1"), "{}", e.detail);
    let e = w.refuse(&city_command(), Command::Mobilize(MobilizeOrder::default()));
    assert_err(&e, ErrorKind::Invalid, "one_selector");
    let e = w.refuse(
        &city_command(),
        Command::Mobilize(MobilizeOrder { teams: vec!["t1".into()], all_assault: true, ..Default::default() }),
    );
    assert_err(&e, ErrorKind::Invalid, "one_selector");
    let e = w.refuse(
        &city_command(),
        Command::Mobilize(MobilizeOrder {
            unit_id: Some("u1".into()),
            district_id: Some("d1".into()),
            ..Default::default()
        }),
    );
    assert_err(&e, ErrorKind::Invalid, "one_selector");
    let e = w.refuse(&staff("c1"), mobilize_teams(&["t1"]));
    assert_eq!(e.kind, ErrorKind::Forbidden);
    // district command: only its own district's teams (another's are unknown to it), only
    // to places in its district
    let e = w.refuse(&district_command("d1"), mobilize_teams(&["t4"]));
    assert_err(&e, ErrorKind::Invalid, "unknown_team");
    let e = w.refuse(
        &district_command("d2"),
        Command::Mobilize(MobilizeOrder {
            teams: vec!["t4".into()],
            site: Some(Site { name: "depot".into(), location: in_cell("g1", 0) }),
            ..Default::default()
        }),
    );
    assert_err(&e, ErrorKind::Forbidden, "outside_scope");
    let id = w.mobilize(&district_command("d1"), mobilize_teams(&["t1"]));
    assert_eq!(w.mob(&id).counts.ordered, 3);
    // the other selectors name assault teams only
    let id = w.mobilize(
        &city_command(),
        Command::Mobilize(MobilizeOrder { unit_id: Some("u1".into()), ..Default::default() }),
    );
    assert_eq!(w.mob(&id).teams.len(), 1, "u1's work team w1 is not mobilized");
    let id = w.mobilize(&city_command(), Command::Mobilize(MobilizeOrder { all_assault: true, ..Default::default() }));
    assert_eq!(w.mob(&id).counts.ordered, 5);
}

#[test]
fn an_acknowledgement_with_an_answer_id_resent_after_the_close_is_a_repeat_not_a_refusal() {
    let mut w = mobilization_world();
    let id = w.mobilize(&city_command(), mobilize_teams(&["t1"]));
    let with_id =
        |answer_id: &str, answer: Command| Command::Answer { answer_id: answer_id.into(), answer: Box::new(answer) };
    let out = w.at(10).ok(&as_member("a"), with_id("k-1", ack(&id)));
    assert!(
        matches!(&out.events[0].body, EventBody::MobilizationAcknowledged { answer_id: Some(k), .. } if k == "k-1")
    );
    let at = community_center("c1");
    let out = w.at(20).ok(&as_member("a"), with_id("k-2", report(&id, at)));
    assert!(matches!(&out.events[0].body, EventBody::MobilizationReported { answer_id: Some(k), .. } if k == "k-2"));
    w.at(100).ok(&city_command(), Command::CloseMobilization { mobilization_id: id.clone(), reason: None });
    // without the id the resend is decided afresh, and refused; with it, it is the repeat it is
    assert_err(&w.refuse(&as_member("a"), ack(&id)), ErrorKind::Conflict, "mobilization_closed");
    for (k, answer) in [("k-1", ack(&id)), ("k-2", report(&id, at))] {
        let out = w.ok(&as_member("a"), with_id(k, answer));
        assert_eq!(out.reply, Some(Reply::Duplicate), "{k}");
        assert!(out.events.is_empty(), "{k}");
    }
    assert_err(&w.refuse(&as_member("a"), with_id("k-1", report(&id, at))), ErrorKind::Conflict, "answer_id_reused");
    assert_restores_at_every_cut(&w.log, &w.rules);
}
