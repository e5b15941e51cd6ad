//! The harness's smoke run, part of `cargo test --workspace`: the Delta surge with 2,000
//! ordered members (a 2,500-member demo city) against muster started in this process,
//! with the raw-fanout baseline before it and a reconnect storm after, all at modest
//! concurrency. It asserts correctness (everyone acknowledged and reported, every offer
//! delivered, nothing lost), never time: timings on a shared machine are not a test.

use std::net::SocketAddr;
use std::time::Duration;

use muster::app::{self, App, Options};
use muster::settings::Settings;
use muster_loadtest::dist::Delay;
use muster_loadtest::fleet::Mode;
use muster_loadtest::raw::RawServer;
use muster_loadtest::scenario::raw_fanout::{self, RawTarget};
use muster_loadtest::scenario::{self, CityView, FleetOpts, Target, delta, storm};
use muster_loadtest::server::generous_limits;

const SECRET: &str = "loadtest-smoke-secret-0123456789";
const MEMBERS: usize = 2_500;

async fn start_muster(data: &std::path::Path) -> App {
    let mut env = vec![
        ("MUSTER_SERVER__LISTEN".to_string(), "127.0.0.1:0".to_string()),
        ("MUSTER_SERVER__DATA_DIR".to_string(), format!("\"{}\"", data.display())),
        ("MUSTER_AUTH__SECRET".to_string(), SECRET.to_string()),
        ("MUSTER_LOG__FILTER".to_string(), "warn".to_string()),
    ];
    env.extend(generous_limits());
    let settings = Settings::load_with_env(None, env).expect("valid settings");
    app::build(settings, Options { demo: true, demo_members: Some(MEMBERS) }).await.expect("muster starts")
}

fn fleet() -> FleetOpts {
    FleetOpts {
        mode: Mode::InProcess,
        // Three in-process workers, so merging their results is exercised too.
        per_worker: 1_000,
        sources: scenario::sources(4),
        answer_delay: Delay::Uniform { min_ms: 0.0, max_ms: 20.0 },
        decline_rate: 0.2,
        seed: 7,
        connect_concurrency: 64,
        reconnect_concurrency: 256,
        reconnect_jitter_ms: 200,
        connect_timeout_ms: 10_000,
        connect_attempts: 5,
        lifetime_s: 240,
        quiet: true,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_surge_smoke() {
    let view = CityView::new(MEMBERS, muster::demo::DEFAULT_SEED).unwrap();
    assert_eq!(view.assault.len(), MEMBERS * 4 / 5);
    let fleet = fleet();

    let raw = RawServer::start("127.0.0.1:0".parse::<SocketAddr>().unwrap(), Duration::from_secs(120)).await.unwrap();
    let mut raw = RawTarget::InProcess(raw);
    let base =
        raw_fanout::run("rust", &mut raw, view.assault.len(), &view.order_frame(), &fleet, Duration::from_secs(60))
            .await
            .unwrap();
    raw.stop().await;
    assert!(base.report.all_checks_pass(), "{}", base.report.markdown());

    let dir = tempfile::tempdir().unwrap();
    let app = start_muster(dir.path()).await;
    let target = Target::single(app.addr, None, SECRET);
    let opts = delta::DeltaOpts {
        headcount: 2,
        phase_timeout: Duration::from_secs(60),
        settle: Duration::from_millis(200),
        ..Default::default()
    };
    let mut report = delta::run(&target, &view, &fleet, &opts, std::slice::from_ref(&base)).await.unwrap();
    eprintln!("{}\n{}", base.report.markdown(), report.markdown());
    assert!(report.all_checks_pass(), "{}", report.markdown());
    assert_eq!(report.value("members connected"), Some((view.assault.len() + view.on_call_other.len()) as f64));

    // The writers: JSON, Markdown and the chart.
    let out = tempfile::tempdir().unwrap();
    let files = report.write(out.path()).unwrap();
    assert!(files.iter().any(|f| f.extension().is_some_and(|e| e == "png")), "{files:?}");
    app.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_storm_smoke() {
    let view = CityView::new(MEMBERS, muster::demo::DEFAULT_SEED).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let app = start_muster(dir.path()).await;
    let target = Target::single(app.addr, None, SECRET);
    let opts =
        storm::StormOpts { incidents: 60, headcount: 2, phase_timeout: Duration::from_secs(60), ..Default::default() };
    let report = storm::run(&target, &view, &fleet(), &opts).await.unwrap();
    eprintln!("{}", report.markdown());
    assert!(report.all_checks_pass(), "{}", report.markdown());
    app.stop().await.unwrap();
}

/// The second baseline (issue 22): Node.js with `ws`, started as the harness starts it,
/// speaks the same protocol: every client gets the frame, acknowledges and reports. Needs
/// `node` and `ws` in target/node-baseline (`.ci/run` installs it); fails and says so
/// without them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_baseline_smoke() {
    use muster_loadtest::raw::{NodeBaseline, RawProcess};
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let node = NodeBaseline {
        node: "node".into(),
        script: root.join("node/raw-server.mjs"),
        node_modules: root.join("../target/node-baseline/node_modules"),
    };
    let view = CityView::new(MEMBERS, muster::demo::DEFAULT_SEED).unwrap();
    let raw = RawProcess::start_node(&node, Duration::from_secs(120)).await.unwrap_or_else(|e| {
        panic!("{e:#} (install it: npm install --no-audit --no-fund --prefix target/node-baseline ws@8)")
    });
    let pid = raw.pid;
    let mut raw = RawTarget::Process(Box::new(raw));
    let base =
        raw_fanout::run("node", &mut raw, view.assault.len(), &view.order_frame(), &fleet(), Duration::from_secs(60))
            .await
            .unwrap();
    raw.stop().await;
    assert!(base.report.all_checks_pass(), "{}", base.report.markdown());
    assert_eq!(base.times.reported.len(), view.assault.len(), "every client reported");
    assert!(base.report.value("server CPU during the fan-out").is_some(), "the node server's CPU (pid {pid}) was read");
}
