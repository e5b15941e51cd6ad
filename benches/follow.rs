//! A city-wide order on several nodes: what the engine spends deciding it, and what a
//! follower spends applying it before its members get their orders.
//!
//! Run with `cargo bench --bench follow`. The state is `demo_city(62_500, 2021)` imported
//! (50,000 assault-team members, the 3-node load run's city). criterion times
//! `order/decide` (the engine: `execute` of one all-assault order, every frame built) and
//! `order/follow` (a follower: `apply_in_order` of that order's event with a frame filter
//! that wants a third of the member streams, as a node with a third of the sockets).
//! Under `cargo test --benches` it runs one pass on a 2,000-member city.

use std::collections::HashSet;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};

use muster::demo::demo_city;
use muster::domain::dispatcher::{Actor, Command, FrameFilter, State, apply_in_order, execute};
use muster::domain::event::{Event, Ts, stream};
use muster::domain::response::Rules;
use muster::domain::wartime::MobilizeOrder;
use muster::settings::Settings;

// The server's allocator: the order allocates per member.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// 2021-08-02T00:00:00Z, in milliseconds.
const NOW: Ts = 1_627_862_400_000;

fn full_mode() -> bool {
    std::env::args().any(|a| a == "--bench")
}

fn bench(c: &mut Criterion) {
    let members = if full_mode() { 62_500 } else { 2_000 };
    let rules: Rules = Settings::load_with_env(None, Vec::new()).expect("default settings").dispatch;
    let city = demo_city(members, 2021);
    // A third of the members, as the load harness deals them to node 1 of 3.
    let here: Arc<HashSet<String>> =
        Arc::new(city.members.iter().skip(1).step_by(3).map(|m| stream::member(&m.id)).collect());
    let fresh = || {
        let mut state = State::default();
        let import = Command::ImportCity(Box::new(city.clone()));
        execute(&mut state, &rules, &Actor::System, import, NOW).expect("the city imports");
        state
    };
    let order = || Command::Mobilize(MobilizeOrder { all_assault: true, ..Default::default() });
    let commander = Actor::Command { district: None };
    let (event, wanted): (Event, Vec<(String, &'static str)>) = {
        let mut s = fresh();
        let out = execute(&mut s, &rules, &commander, order(), NOW + 1_000).expect("the order is valid");
        assert_eq!(out.events.len(), 1, "one event for the whole order");
        // The frames a follower with these sockets builds: the engine's, less the orders
        // to members whose sockets are elsewhere (scope frames are built everywhere).
        let wanted = out
            .frames
            .iter()
            .filter(|f| !f.stream.starts_with("member:") || here.contains(&f.stream))
            .map(|f| (f.stream.clone(), f.kind))
            .collect();
        (out.events.into_iter().next().expect("one"), wanted)
    };
    // What is timed must do the work: the order reaches members here, and a follower
    // builds exactly their frames (checked once, outside the timing).
    let orders_here = wanted.iter().filter(|(_, kind)| *kind == "mobilization.order").count();
    assert!(orders_here > 0, "the order reaches no member of this node: nothing to follow");
    {
        let mut s = fresh();
        let here = here.clone();
        s.frame_filter = FrameFilter::only(move |st| here.contains(st));
        let mut frames = Vec::new();
        apply_in_order(&mut s, [&event], &mut frames).expect("in order");
        let got: Vec<(String, &'static str)> = frames.iter().map(|f| (f.stream.clone(), f.kind)).collect();
        assert_eq!(got, wanted, "the follower's frames are the engine's for its streams");
    }

    let mut g = c.benchmark_group("order");
    g.sample_size(10).measurement_time(Duration::from_secs(if full_mode() { 10 } else { 1 }));
    g.bench_function("decide", |b| {
        b.iter_batched(
            fresh,
            |mut s| black_box(execute(&mut s, &rules, &commander, order(), NOW + 1_000).expect("valid")),
            BatchSize::PerIteration,
        )
    });
    g.bench_function("follow", |b| {
        b.iter_batched(
            || {
                let mut s = fresh();
                let here = here.clone();
                s.frame_filter = FrameFilter::only(move |st| here.contains(st));
                s
            },
            |mut s| {
                let mut frames = Vec::new();
                apply_in_order(&mut s, [&event], &mut frames).expect("in order");
                assert_eq!(frames.len(), wanted.len());
                black_box((s, frames))
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
