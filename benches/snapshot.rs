//! Snapshots of the Delta-surge state: what a restart or a new node costs instead of a
//! replay, and how long the engine pauses to save one.
//!
//! Run with `cargo bench --bench snapshot`. The state is `demo_city(20_000, 2021)` imported,
//! every assault team (16,000 members) mobilized, half of them acknowledged, and 187
//! incidents raised: built by `execute` as the engine builds it. The binary prints the
//! snapshot's size and the events a replay would need instead, then criterion times
//! `snapshot/encode` (the engine's pause), `snapshot/decode` (a restore) and
//! `snapshot/replay` (the alternative: applying the whole log). Under
//! `cargo test --benches` it runs one pass on a 2,000-member city.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};

use muster::demo::demo_city;
use muster::domain::dispatcher::{Actor, Command, RaiseIncident, State, apply, execute};
use muster::domain::event::{Event, Ts};
use muster::domain::response::{Level, Rules};
use muster::domain::snapshot;
use muster::domain::wartime::MobilizeOrder;
use muster::settings::Settings;

/// 2021-08-02T00:00:00Z, in milliseconds.
const NOW: Ts = 1_627_862_400_000;

fn full_mode() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// The state after a Delta surge, and the log that made it.
fn surge(members: usize) -> (State, Vec<Event>) {
    let rules: Rules = Settings::load_with_env(None, Vec::new()).expect("default settings").dispatch;
    let mut state = State::default();
    let mut log = Vec::new();
    let mut run = |state: &mut State, actor: &Actor, cmd: Command, at: Ts| {
        let out = execute(state, &rules, actor, cmd, at).expect("the surge's commands are valid");
        log.extend(out.events);
    };
    let city = demo_city(members, 2021);
    let communities: Vec<(String, String)> =
        city.communities.iter().map(|c| (c.id.clone(), c.grids[0].id.clone())).collect();
    run(&mut state, &Actor::System, Command::ImportCity(Box::new(city)), NOW);
    let order = MobilizeOrder { all_assault: true, ..Default::default() };
    run(&mut state, &Actor::Command { district: None }, Command::Mobilize(order), NOW + 1_000);
    let ordered: Vec<(String, String)> = state
        .mobilizations
        .values()
        .flat_map(|m| m.orders.iter().map(move |o| (m.id.clone(), o.member_id.clone())))
        .collect();
    for (i, (mob, member)) in ordered.iter().enumerate().step_by(2) {
        let ack = Command::AcknowledgeOrder { mobilization_id: mob.clone() };
        run(&mut state, &Actor::Member { member: member.clone() }, ack, NOW + 2_000 + i as Ts);
        // The engine tallies progress after every batch: here every 512 answers.
        if i % 1_024 == 1_022 {
            run(&mut state, &Actor::System, Command::Tally, NOW + 2_000 + i as Ts);
        }
    }
    run(&mut state, &Actor::System, Command::Tally, NOW + 3_000);
    for (i, (community, grid)) in communities.iter().cycle().take(187).enumerate() {
        let raise = RaiseIncident {
            grid_id: Some(grid.clone()),
            location: None,
            category: "patrol".into(),
            level: Level::III,
            headcount: 2,
            skills: Vec::new(),
            note: None,
            idempotency_key: None,
            difficulty: None,
        };
        run(&mut state, &Actor::Staff { community: community.clone() }, Command::Raise(raise), NOW + 60_000 + i as Ts);
    }
    (state, log)
}

fn bench(c: &mut Criterion) {
    let members = if full_mode() { 20_000 } else { 2_000 };
    let (state, log) = surge(members);
    let bytes = snapshot::encode(&state);
    println!(
        "snapshot of a {members}-member city after the surge: {} bytes at seq {}; a replay applies {} events",
        bytes.len(),
        state.last_seq,
        log.len()
    );
    let restored = snapshot::decode(&bytes).expect("the snapshot restores");
    assert_eq!(snapshot::encode(&restored), bytes);

    let mut g = c.benchmark_group("snapshot");
    g.sample_size(10).measurement_time(Duration::from_secs(if full_mode() { 10 } else { 1 }));
    g.bench_function("encode", |b| b.iter(|| black_box(snapshot::encode(black_box(&state)))));
    g.bench_function("decode", |b| b.iter(|| black_box(snapshot::decode(black_box(&bytes)).unwrap())));
    g.bench_function("replay", |b| {
        b.iter(|| {
            let mut s = State::default();
            for e in &log {
                black_box(apply(&mut s, e));
            }
            s
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
