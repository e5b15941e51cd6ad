//! Wartime: fairness and fatigue, replay, edges.

use super::*;

// ---------------------------------------------------------------------------------------
// Fairness and fatigue
// ---------------------------------------------------------------------------------------

#[test]
fn a_member_with_three_easy_tasks_today_is_offered_no_fourth_easy_task_but_a_hard_one_and_again_tomorrow() {
    let mut w = world(vec![member("eager", "g1")]);
    for i in 0..3 {
        let t = i * 600;
        let (inc, out) = w.at(t).raise(&city_command(), patrol("g1", Level::IV, 1));
        assert_eq!(sent_to(&out), ["eager"], "easy task {}", i + 1);
        w.at(t + 10).accept("eager", &inc);
        w.at(t + 60).ok(&city_command(), resolve(&inc));
    }
    assert_eq!(w.rt("eager").work.easy_accepts.len(), 3);
    let (easy, out) = w.at(2_000).raise(&city_command(), patrol("g1", Level::IV, 1));
    assert!(sent_to(&out).is_empty(), "capped for easy tasks today");
    let (hard, out) = w.at(2_001).raise(&city_command(), rescue("g1", Level::IV, 1));
    assert_eq!(sent_to(&out), ["eager"], "a hard task is not capped");
    w.ok(&city_command(), cancel(&hard));
    // staff may raise the difficulty of an easy category: then it is no longer easy
    let mut raised = patrol("g1", Level::IV, 1);
    raised.difficulty = Some(3);
    let out = w.at(2_002).ok(&staff("c1"), Command::Raise(raised));
    assert_eq!(sent_to(&out), ["eager"], "a patrol raised to difficulty 3 is a normal task");
    let Some(Reply::Incident(normal)) = out.reply else { panic!() };
    w.ok(&city_command(), cancel(&normal));
    w.ok(&city_command(), cancel(&easy));
    // the next day
    let (_, out) = w.at(24 * H).raise(&city_command(), patrol("g1", Level::IV, 1));
    assert_eq!(sent_to(&out), ["eager"], "the cap resets the next day");
}

#[test]
fn difficulty_may_be_raised_but_not_below_the_categorys() {
    let mut w = world(vec![member("a", "g1")]);
    for (category, difficulty, ok) in [
        ("patrol", 1, true),
        ("patrol", 5, true),
        ("rescue", 5, true),
        ("rescue", 4, false),
        ("patrol", 0, false),
        ("patrol", 6, false),
    ] {
        let mut r = call("g1", category, Level::IV, 1);
        r.difficulty = Some(difficulty);
        if ok {
            let out = w.ok(&staff("c1"), Command::Raise(r));
            let Some(Reply::Incident(id)) = out.reply else { panic!() };
            assert_eq!(w.state.incidents[&id].difficulty, difficulty);
            w.ok(&staff("c1"), cancel(&id));
        } else {
            let e = w.refuse(&staff("c1"), Command::Raise(r));
            assert_err(&e, ErrorKind::Invalid, "difficulty_out_of_range");
        }
    }
}

/// Two members standing in the same cell: without fairness, `a` (the lower index) ranks first.
fn twins() -> World {
    world(vec![member("a", "g1"), member("b", "g1")])
}

/// The order of offers for a fresh call, then cancelled.
fn ranking(w: &mut World, at: i64, r: RaiseIncident) -> Vec<String> {
    let (inc, out) = w.at(at).raise(&city_command(), r);
    w.ok(&city_command(), cancel(&inc));
    sent_to(&out)
}

#[test]
fn with_load_m_a_member_carrying_more_load_ranks_after_an_equally_placed_one() {
    let mut w = twins();
    let (inc, out) = w.raise(&city_command(), rescue("g1", Level::IV, 1));
    assert_eq!(sent_to(&out), ["a", "b"]);
    w.at(10).accept("a", &inc);
    w.at(20).ok(&city_command(), resolve(&inc));
    // past the recent-duty window, so only the load tells them apart
    assert_eq!(ranking(&mut w, 2 * H, rescue("g1", Level::IV, 1)), ["a", "b"], "load_m is 0");
    w.rules.fairness.load_m = 50.0;
    assert_eq!(ranking(&mut w, 2 * H + 1, rescue("g1", Level::IV, 1)), ["b", "a"]);
    assert_eq!(ranking(&mut w, 2 * H + 2, patrol("g1", Level::IV, 1)), ["b", "a"]);
}

#[test]
fn with_hard_first_m_a_member_whose_load_was_all_easy_ranks_first_for_a_hard_task() {
    let mut w = twins();
    let (inc, _) = w.raise(&city_command(), rescue("g1", Level::IV, 1));
    w.at(10).accept("a", &inc);
    w.at(20).ok(&city_command(), resolve(&inc));
    let (inc, out) = w.at(30).raise(&city_command(), patrol("g1", Level::IV, 1));
    assert_eq!(sent_to(&out), ["b", "a"], "a's recent duty");
    w.at(40).accept("b", &inc);
    w.at(50).ok(&city_command(), resolve(&inc));
    let (a, b) = (&w.rt("a").work, &w.rt("b").work);
    assert_eq!((a.load, a.hard_load, b.load, b.hard_load), (5.0, 5.0, 1.0, 0.0));

    let t = 2 * H;
    assert_eq!(ranking(&mut w, t, rescue("g1", Level::IV, 1)), ["a", "b"], "hard_first_m is 0");
    w.rules.fairness.hard_first_m = 600.0;
    assert_eq!(ranking(&mut w, t + 1, rescue("g1", Level::IV, 1)), ["b", "a"], "easy-only load first for hard");
    assert_eq!(ranking(&mut w, t + 2, patrol("g1", Level::IV, 1)), ["a", "b"], "not for an easy task");
}

#[test]
fn with_hard_first_m_an_idle_member_ranks_ahead_of_an_equally_placed_one_with_one_easy_task_for_a_hard_task() {
    let mut w = twins();
    let (inc, out) = w.raise(&city_command(), patrol("g1", Level::IV, 1));
    assert_eq!(sent_to(&out), ["a", "b"]);
    w.at(10).accept("a", &inc);
    w.at(20).ok(&city_command(), resolve(&inc));
    assert_eq!((w.rt("a").work.load, w.rt("b").work.load), (1.0, 0.0));

    // past the recent-duty window; the defaults' weights
    w.rules.fairness.load_m = 50.0;
    w.rules.fairness.hard_first_m = 600.0;
    let t = 2 * H;
    // b has no load: all easy, trivially, so b gets the whole bonus and the lighter load
    // (before, an idle member got no bonus and a ranked 550 m ahead of b for a hard task)
    assert_eq!(ranking(&mut w, t, rescue("g1", Level::IV, 1)), ["b", "a"], "the idle first for hard");
    assert_eq!(ranking(&mut w, t + 1, patrol("g1", Level::IV, 1)), ["b", "a"], "and by load for easy");
}

#[test]
fn a_member_on_duty_12_hours_in_24_is_offered_nothing_until_rested_8_hours() {
    let mut w = world(vec![member("tired", "g1")]);
    let (inc, _) = w.raise(&city_command(), rescue("g1", Level::IV, 1));
    w.at(10).accept("tired", &inc);
    assert_eq!(w.rt("tired").work.duty_since, Some(T0 + 10_000), "an accepted task starts duty");
    w.at(10 + 12 * H).ok(&city_command(), resolve(&inc));
    let work = &w.rt("tired").work;
    assert_eq!(work.duty_since, None, "resolving ends duty");
    assert_eq!(work.duty_log, [(T0 + 10_000, T0 + (10 + 12 * H) * 1000)]);

    let offered = |w: &mut World, t: i64| !ranking(w, t, rescue("g1", Level::IV, 1)).is_empty();
    assert!(!offered(&mut w, 10 + 12 * H), "12 h on duty");
    assert!(!offered(&mut w, 10 + 15 * H), "3 h of rest");
    assert!(!offered(&mut w, 9 + 20 * H), "just short of 8 h of rest");
    assert!(offered(&mut w, 10 + 20 * H), "8 h of rest");
    // fatigued members are not available for a transfer either (balance counts them out)
    let (inc, _) = w.at(11 + 20 * H).raise(&city_command(), rescue("g1", Level::IV, 1));
    w.at(12 + 20 * H).accept("tired", &inc);
    w.at(12 + 32 * H).ok(&city_command(), resolve(&inc));
    assert_eq!(w.balance("c1"), 0, "{:?}", w.rt("tired").work);
}

#[test]
fn an_offer_out_when_the_member_reaches_the_cap_is_not_followed_by_another() {
    // 11.5 h on duty, then a short task of 30 min: at the cap, nothing more until rested.
    let mut w = world(vec![member("m", "g1"), member("fresh", "g7")]);
    let (inc, _) = w.raise(&city_command(), rescue("g1", Level::IV, 1));
    w.at(1).accept("m", &inc);
    w.at(1 + 11 * H + H / 2).ok(&city_command(), resolve(&inc));
    let (inc, out) = w.at(2 + 11 * H + H / 2).raise(&city_command(), rescue("g1", Level::IV, 1));
    assert_eq!(sent_to(&out), ["m"], "11.5 h: not yet at the cap");
    w.at(3 + 11 * H + H / 2).accept("m", &inc);
    w.at(3 + 12 * H).ok(&city_command(), resolve(&inc));
    assert!(w.rt("m").work.fatigued(w.now, &w.rules));
    assert!(ranking(&mut w, 4 + 12 * H, rescue("g1", Level::IV, 1)).is_empty());
}

// ---------------------------------------------------------------------------------------
// Replay
// ---------------------------------------------------------------------------------------

fn wartime_scenario() -> World {
    let mut w = world(vec![
        member("a", "g1").team("t1").at("g2"),
        member("b", "g1").team("t1").at("g3").off_call(),
        member("c", "g4").team("t3"),
        member("d", "g6").unit("u4"),
        member("e", "g6").unit("u4"),
        member("f", "g7").team("t4"),
    ]);
    w.at(1).ok(&city_command(), wartime("d1"));
    let (inc, _) = w.at(2).raise(&city_command(), rescue("g1", Level::IV, 4));
    w.at(3).ok(&staff("c1"), whistle(&inc, WhistleTarget::StreetUnits));
    w.at(4).accept("a", &inc);
    let mob = w.at(5).mobilize(&city_command(), mobilize_teams(&["t3", "t4"]));
    w.at(6).ok(&as_member("c"), ack(&mob));
    w.at(7).ok(&as_member("f"), report(&mob, community_center("c4")));
    let (inc2, _) = w.at(8).raise(&city_command(), rescue("g4", Level::IV, 3));
    let p = balance::proposals(&w.state, &w.rules, w.now).remove(0);
    w.at(9).ok(&city_command(), transfer(&p.from, &p.to, &p.members));
    w.at(700).tick();
    w.at(3_700).tick();
    w.at(3_701).ok(&city_command(), cancel(&inc2));
    w.at(3_702).ok(&city_command(), resolve(&inc));
    w.at(3_703).ok(&city_command(), peacetime("d1"));
    w.at(3_704).ok(&city_command(), switch(None, Mode::Wartime));
    w
}

#[test]
fn replaying_a_wartime_scenario_rebuilds_the_same_state_and_frames() {
    let w = wartime_scenario();
    w.assert_covers(&[
        "mode_switched",
        "units_whistled",
        "whistle_overdue",
        "mobilization_ordered",
        "mobilization_acknowledged",
        "mobilization_reported",
        "mobilization_deadline_passed",
        "members_transferred",
    ]);
    assert!(w.state.roster.members.iter().any(|m| m.home.is_some()), "a transfer happened");
    crate::domain::testkit::assert_restores_at_every_cut(&w.log, &w.rules);
    let (state, frames) = replay(&w.log);
    // Deadlines aside (the replay also holds those already fired, which fire harmlessly, and
    // retries are soft), the replayed state is the live one.
    assert_eq!(durable(&state), durable(&w.state));
    for d in w.state.deadlines.iter().filter(|(_, d)| !matches!(d, Deadline::Retry(_))) {
        assert!(state.deadlines.contains(d), "{d:?} lost in the replay");
    }
    assert_eq!(frames, w.frames);
    assert_eq!(state.city_mode, Mode::Wartime);
    assert_eq!(state.wartime_districts, w.state.wartime_districts);
    // the replayed state decides the next step as the live one does
    let mut live = w;
    let mut again = live.beside(state);
    again.state.schedule_retries(live.now); // as the engine does after a restart
    for t in [3_800, 7_400] {
        let a = live.at(t).tick();
        let b = again.at(t).tick();
        assert_eq!(a.events, b.events);
        assert_eq!(a.frames, b.frames);
    }
    let a = live.at(7_500).ok(&city_command(), Command::Raise(rescue("g1", Level::II, 3)));
    let b = again.at(7_500).ok(&city_command(), Command::Raise(rescue("g1", Level::II, 3)));
    assert!(!sent_to(&a).is_empty());
    assert_eq!(a.events, b.events);
    assert_eq!(a.frames, b.frames);
    assert_eq!(live.state.mobilizations, again.state.mobilizations);
}

#[test]
fn every_stream_counts_its_seqs_from_one_without_gaps_in_a_wartime_scenario() {
    let w = wartime_scenario();
    w.assert_streams_count_from_one();
}

#[test]
fn mobilization_order_frames_stay_open_until_reported_and_status_counts_match_orders() {
    let w = wartime_scenario();
    let m = w.mob("mob-1");
    let count = |s: OrderState| m.orders.iter().filter(|o| o.state == s).count() as u32;
    assert_eq!(m.counts.ordered, m.orders.len() as u32);
    assert_eq!(m.counts.reported, count(OrderState::Reported));
    assert_eq!(m.counts.acknowledged, count(OrderState::Reported) + count(OrderState::Acknowledged));
    assert_eq!(m.counts.missing, m.counts.ordered - m.counts.reported);
}

// ---------------------------------------------------------------------------------------
// Edges
// ---------------------------------------------------------------------------------------

#[test]
fn a_member_stays_on_duty_while_a_reported_mobilization_holds_them_after_their_incident_closes() {
    let mut w = mobilization_world();
    let (inc, _) = w.raise(&city_command(), rescue("g7", Level::IV, 1));
    w.at(10).accept("e", &inc);
    let id = w.at(20).mobilize(&city_command(), mobilize_teams(&["t4"]));
    w.at(30).ok(&as_member("e"), report(&id, community_center("c4")));
    assert_eq!(w.rt("e").work.duty_since, Some(T0 + 10_000));
    w.at(40).ok(&city_command(), resolve(&inc));
    assert_eq!(w.rt("e").work.duty_since, Some(T0 + 10_000), "still held by the mobilization");
    w.at(50).ok(&city_command(), Command::CloseMobilization { mobilization_id: id, reason: Some("done".into()) });
    assert_eq!(w.rt("e").work.duty_since, None);
    assert_eq!(w.rt("e").work.duty_log, [(T0 + 10_000, T0 + 50_000)]);
}

#[test]
fn a_whistle_does_not_offer_an_easy_task_to_a_member_at_the_easy_cap() {
    let mut w = world(vec![member("eager", "g1").team("t1"), member("fresh", "g7").team("t2")]);
    for i in 0..3 {
        let t = i * 600;
        let (inc, _) = w.at(t).raise(&city_command(), patrol("g1", Level::IV, 1));
        w.at(t + 10).accept("eager", &inc);
        w.at(t + 60).ok(&city_command(), resolve(&inc));
    }
    let (inc, out) = w.at(2_000).raise(&city_command(), patrol("g1", Level::IV, 1));
    assert!(sent_to(&out).is_empty());
    let out = w.at(2_001).ok(&staff("c1"), whistle(&inc, WhistleTarget::PairedUnits));
    assert_eq!(sent_to(&out), ["fresh"], "eager has had three easy tasks today");
}

#[test]
fn a_reimport_during_an_open_mobilization_keeps_each_order_with_its_member() {
    let mut w = mobilization_world();
    let id = w.mobilize(&city_command(), mobilize_teams(&["t1", "t3"]));
    // the same members, in another order (e, who was not ordered, now has a's old index)
    let city = war_city(vec![
        member("e", "g7").team("t4"),
        member("d", "g4").team("t3").at("g7"),
        member("c", "g6").team("t1").at("g7").off_call(),
        member("b", "g1").team("t1").at("g7"),
        member("a", "g1").team("t1").at("g7"),
    ]);
    // refused while a mobilization is open: orders are keyed by member index
    let e = w.at(10).refuse(&city_command(), Command::ImportCity(Box::new(city)));
    assert_err(&e, ErrorKind::Conflict, "open_mobilizations");
    assert_eq!(w.state.open_frames("member:a").len(), 1, "a's order is still open for a (resent on connect)");
    w.at(21).ok(&as_member("a"), ack(&id));
    let m = w.mob(&id);
    let state_of = |who: &str| m.orders.iter().find(|o| o.member_id == who).map(|o| o.state);
    assert_eq!(state_of("a"), Some(OrderState::Acknowledged), "a acknowledged their own order");
    assert_eq!(state_of("b"), Some(OrderState::Ordered));
}

#[test]
fn a_mobilization_to_a_site_outside_every_district_is_not_closed_by_another_districts_command() {
    let mut w = mobilization_world();
    let order = MobilizeOrder {
        teams: vec!["t1".into()],
        site: Some(Site { name: "airfield".into(), location: nowhere() }),
        ..Default::default()
    };
    let id = w.mobilize(&city_command(), Command::Mobilize(order));
    assert!(w.mob(&id).districts.is_empty());
    let e = w.refuse(&district_command("d2"), Command::CloseMobilization { mobilization_id: id.clone(), reason: None });
    assert_err(&e, ErrorKind::NotFound, "unknown_mobilization");
    w.ok(&city_command(), wartime("d2"));
    let out = w.at(10).ok(&city_command(), peacetime("d2"));
    assert_eq!(kinds(&out), ["mode_switched"], "d2 standing down does not close a mobilization outside d2");
    assert!(w.mob(&id).is_open());
}

/// Progress frames are written as JSON text, not built as values: the text is what the
/// value would encode to, byte for byte (keys sorted, as serde_json's map writes them),
/// in the city's frame and a district's, with and without a community to report to.
#[test]
fn a_progress_frame_is_written_as_the_json_its_value_encodes_to() {
    let mut w = mobilization_world();
    let to_site = Command::Mobilize(MobilizeOrder {
        teams: vec!["t1".into()],
        site: Some(Site { name: "a \"site\"".into(), location: community_center("c1") }),
        ..Default::default()
    });
    let site = w.mobilize(&city_command(), to_site);
    let id = w.mobilize(&city_command(), mobilize_teams(&["t3", "t4"]));
    let mut frames = Vec::new();
    for (who, cmd) in [("a", ack(&site)), ("d", ack(&id)), ("e", report(&id, community_center("c4")))] {
        frames.extend(execute(&mut w.state, &w.rules, &as_member(who), cmd, w.now).unwrap().frames);
    }
    frames.extend(execute(&mut w.state, &w.rules, &Actor::System, Command::Tally, w.now).unwrap().frames);
    let progress: Vec<&Frame> = frames.iter().filter(|f| f.kind == "mobilization.progress").collect();
    assert!(progress.len() >= 4, "the city's and a district's for each mobilization: {progress:?}");
    for f in progress {
        let as_value = Frame { data: FrameData::from((*f.data).clone()), ..f.clone() };
        assert_eq!(f.to_text(), as_value.to_text());
        assert!(f.data["changes"].as_array().is_some_and(|c| !c.is_empty()), "{f:?}");
    }
}
