//! The engine under the Delta surge's answers, without sockets: what the single writer
//! costs per acknowledgement and report, measured as the engine thread's own CPU time.
//!
//! Run with `cargo bench --bench surge`. Each round starts the real engine
//! (`engine::start`) on the embedded store in a temporary directory, with the gateway's
//! `Hub` as its publisher and one subscription per member stream (as connected members
//! have), imports `demo_city(20_000, 2021)`, orders every assault team out (16,000
//! members), then has every member acknowledge and then report at its place, all members
//! at once from tasks on a tokio runtime, each command through `EngineHandle::submit` as a
//! websocket session sends it. It prints, per round, the order's time, the answers' wall
//! time and the engine thread's CPU time for them (`/proc/self/task/<tid>/schedstat`,
//! nanoseconds on the CPU), per answer; then the means. The thread's CPU time moves far
//! less than wall time on a shared machine. Under `cargo test --benches` it runs one small
//! round.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use muster::demo::demo_city;
use muster::domain::dispatcher::{Actor, Command};
use muster::domain::event::Mode;
use muster::domain::geo::Position;
use muster::domain::wartime::MobilizeOrder;
use muster::engine::{self, EngineConfig};
use muster::gateway::hub::Hub;
use muster::settings::Settings;
use muster::store::sqlite::SqliteLog;

/// As in the server (`src/main.rs`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn full_mode() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// Nanoseconds the named thread of this process has spent on a CPU.
fn thread_cpu_ns(name: &str) -> Option<u64> {
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim_end() == name {
            let stat = std::fs::read_to_string(task.path().join("schedstat")).ok()?;
            return stat.split_whitespace().next()?.parse().ok();
        }
    }
    None
}

struct Round {
    order: Duration,
    answers: usize,
    wall: Duration,
    engine_cpu: Duration,
}

async fn round(members: usize) -> Round {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let log = SqliteLog::open(dir.path()).expect("the store opens");
    let settings = Settings::load_with_env(None, Vec::new()).expect("default settings");
    let hub = Arc::new(Hub::default());
    let cancel = CancellationToken::new();
    let cfg = EngineConfig {
        mailbox: 4 * members,
        batch_max: settings.engine.batch_max,
        position_flush: Duration::from_secs(settings.engine.position_flush_s),
        replica_nice: 0,
    };
    let (engine, thread) = engine::start(Box::new(log), settings.dispatch, hub.clone(), cfg, cancel.clone(), None);
    while !engine.is_ready() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let city = demo_city(members, 2021);
    let subscriptions: Vec<_> =
        city.members.iter().map(|m| hub.subscribe(&Arc::from(format!("member:{}", m.id)), 1024)).collect();
    engine.submit(Actor::System, Command::ImportCity(Box::new(city))).await.expect("the city imports");
    let command = Actor::Command { district: None };
    let wartime = Command::SwitchMode { district_id: None, mode: Mode::Wartime, reason: "Delta surge".into() };
    engine.submit(command.clone(), wartime).await.expect("平战转换");

    let started = Instant::now();
    let order = MobilizeOrder { all_assault: true, ..Default::default() };
    engine.submit(command, Command::Mobilize(order)).await.expect("the order is logged");
    let order_took = started.elapsed();

    // Who was ordered, and where each reports.
    let ordered: Vec<(String, String, Position)> = {
        let state = engine.read();
        state
            .mobilizations
            .values()
            .flat_map(|m| {
                m.orders.iter().map(|o| {
                    let at = state.city.community_centers[o.community.expect("paired community") as usize];
                    (m.id.clone(), o.member_id.clone(), at)
                })
            })
            .collect()
    };
    let cpu0 = thread_cpu_ns("muster-engine").expect("the engine thread");
    let started = Instant::now();
    let tasks: Vec<_> = ordered
        .iter()
        .cloned()
        .map(|(mobilization_id, member, at)| {
            let engine = engine.clone();
            tokio::spawn(async move {
                let actor = Actor::Member { member };
                let ack = Command::AcknowledgeOrder { mobilization_id: mobilization_id.clone() };
                engine.submit(actor.clone(), ack).await.expect("the acknowledgement is logged");
                let report = Command::ReportArrival { mobilization_id, position: at };
                engine.submit(actor, report).await.expect("the report is logged");
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("a member's task");
    }
    let wall = started.elapsed();
    let cpu1 = thread_cpu_ns("muster-engine").expect("the engine thread");
    let reported = engine.read().mobilizations.values().map(|m| m.counts.reported).sum::<u32>();
    assert_eq!(reported as usize, ordered.len(), "every member reported");
    drop(subscriptions);
    cancel.cancel();
    tokio::task::spawn_blocking(move || thread.join()).await.expect("join").expect("the engine thread ends");
    Round { order: order_took, answers: 2 * ordered.len(), wall, engine_cpu: Duration::from_nanos(cpu1 - cpu0) }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let (members, rounds) = if full_mode() { (20_000, 5) } else { (1_000, 1) };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a runtime");
    println!("surge: demo city of {members} members, every assault member acknowledges then reports");
    println!(
        "{:>6} {:>10} {:>8} {:>10} {:>14} {:>16}",
        "round", "order ms", "answers", "wall ms", "engine CPU ms", "engine µs/answer"
    );
    let mut sums = (0.0, 0.0, 0.0, 0usize);
    for r in 1..=rounds {
        let out = rt.block_on(round(members));
        let per = out.engine_cpu.as_secs_f64() * 1e6 / out.answers as f64;
        println!(
            "{r:>6} {:>10.1} {:>8} {:>10.1} {:>14.1} {:>16.2}",
            ms(out.order),
            out.answers,
            ms(out.wall),
            ms(out.engine_cpu),
            per
        );
        sums = (sums.0 + ms(out.order), sums.1 + ms(out.wall), sums.2 + ms(out.engine_cpu), out.answers);
    }
    let n = rounds as f64;
    println!(
        "mean over {rounds} rounds: order {:.1} ms, answers {:.1} ms wall, engine CPU {:.1} ms ({:.2} µs per answer)",
        sums.0 / n,
        sums.1 / n,
        sums.2 / n,
        sums.2 / n * 1000.0 / sums.3 as f64
    );
}
