//! `muster-loadtest`: the load harness's command line. Scenarios start the muster server
//! (and the raw baseline server) as child processes and their members as worker processes
//! of this same executable; see the crate's `lib.rs` for the map and docs/PERFORMANCE.md
//! for the runs.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use futures_util::future::join_all;
use muster_loadtest::cluster::{Cluster, ClusterConfig, DEFAULT_REDIS_BIN, MAX_NODES};
use muster_loadtest::dist::Delay;
use muster_loadtest::fleet::Mode;
use muster_loadtest::raw::{NodeBaseline, RawProcess};
use muster_loadtest::report::Report;
use muster_loadtest::scenario::raw_fanout::{self, RawOutcome, RawTarget};
use muster_loadtest::scenario::{self, CityView, FleetOpts, Target, delta, steady, storm};
use muster_loadtest::server::{MusterConfig, default_muster_bin};
use rand::Rng;

#[derive(Debug, Parser)]
#[command(name = "muster-loadtest", version, about = "Load harness for muster (loopback only)")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// One mobilization of every assault team, then an incident per community; with the
    /// raw-fanout baseline measured first in the same run.
    DeltaSurge {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        nodes: NodeOpts,
        /// Incidents raised at once after the order (one per community).
        #[arg(long, default_value_t = 187)]
        incidents: usize,
        #[arg(long, default_value_t = 3)]
        headcount: u32,
        #[arg(long, default_value = "IV")]
        level: String,
        /// Skip the raw-fanout baselines.
        #[arg(long)]
        no_baseline: bool,
        #[command(flatten)]
        base: BaselineOpts,
    },
    /// Incidents at a fixed rate for a fixed time (open loop).
    Steady {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value_t = 1000.0)]
        rate: f64,
        #[arg(long, default_value_t = 60)]
        duration_s: u64,
        #[arg(long, default_value_t = 1)]
        headcount: u32,
        #[arg(long, default_value = "IV")]
        level: String,
        #[arg(long, default_value_t = 2000)]
        max_in_flight: usize,
        /// Cancel each incident this many ms after its 201 (frees its offered members).
        #[arg(long)]
        cancel_after_ms: Option<u64>,
        /// Switch the city to wartime first.
        #[arg(long)]
        wartime: bool,
    },
    /// Every member drops and reconnects at once with after_seq; offers made meanwhile.
    ReconnectStorm {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        nodes: NodeOpts,
        #[arg(long, default_value_t = 187)]
        incidents: usize,
        #[arg(long, default_value_t = 3)]
        headcount: u32,
    },
    /// The baseline alone: as many clients as the city has assault members, one frame each.
    RawFanout {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        base: BaselineOpts,
    },
    /// (internal) Runs members: a spec and commands on stdin, JSON lines on stdout.
    #[command(hide = true)]
    Worker,
    /// (internal) The raw fan-out server.
    #[command(hide = true)]
    RawServer {
        #[arg(long, default_value_t = 900)]
        lifetime_s: u64,
    },
}

#[derive(Debug, Clone, Args)]
struct Common {
    /// Members in the demo city (the server's --demo-members); 4/5 are in assault teams.
    #[arg(long, default_value_t = 20_000)]
    members: usize,
    #[arg(long, default_value_t = muster::demo::DEFAULT_SEED)]
    seed: u64,
    /// Where the JSON, Markdown and PNG reports go.
    #[arg(long, default_value = "loadtest-out")]
    out: PathBuf,
    /// The muster binary (default: `muster` beside this executable).
    #[arg(long)]
    muster_bin: Option<PathBuf>,
    /// How long members take to answer: 0, fixed:MS, uniform:MIN:MAX, lognormal:MEDIAN_MS[:SIGMA[:MAX_MS]].
    #[arg(long, default_value = "0")]
    answer_delay: Delay,
    /// Share of offers declined.
    #[arg(long, default_value_t = 0.0)]
    decline_rate: f64,
    /// Source addresses 127.0.0.2.. the members connect from.
    #[arg(long, default_value_t = 8)]
    sources: usize,
    /// Members per worker process (this machine allows ~20,000 open files per process).
    #[arg(long, default_value_t = 8_500)]
    per_process: usize,
    /// Run the members as tasks of this process instead of worker processes.
    #[arg(long)]
    in_process: bool,
    #[arg(long, default_value_t = 256)]
    connect_concurrency: usize,
    /// Reconnects in flight per worker (default: all at once).
    #[arg(long, default_value_t = 100_000)]
    reconnect_concurrency: usize,
    #[arg(long, default_value_t = 0)]
    reconnect_jitter_ms: u64,
    #[arg(long, default_value_t = 10_000)]
    connect_timeout_ms: u64,
    /// Sets MUSTER_WS__OUTBOUND_QUEUE for the server.
    #[arg(long)]
    outbound_queue: Option<usize>,
    /// Extra server settings, KEY=VALUE (MUSTER_* names), repeatable.
    #[arg(long = "server-env")]
    server_env: Vec<String>,
    /// Longest wait for any one phase.
    #[arg(long, default_value_t = 120)]
    phase_timeout_s: u64,
    /// The whole run ends after this long, finished or not.
    #[arg(long, default_value_t = 900)]
    max_run_s: u64,
}

/// The baselines muster is compared with (issue 22: the faster of two independent stacks).
#[derive(Debug, Clone, Args)]
struct BaselineOpts {
    /// Which baseline servers run before muster, in turn: `rust` (the harness's own raw
    /// server, tokio-tungstenite) and `node` (Node.js with the `ws` package). muster is
    /// compared with the faster of them.
    #[arg(long, value_delimiter = ',', default_value = "rust,node")]
    baselines: Vec<Stack>,
    /// The Node.js binary for the `node` baseline.
    #[arg(long, default_value = "node")]
    node_bin: PathBuf,
    /// The `node_modules` directory that holds `ws` (installed by
    /// `npm install --no-audit --no-fund --prefix target/node-baseline ws@8`).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/node-baseline/node_modules"))]
    node_modules: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Stack {
    Rust,
    Node,
}

impl Stack {
    fn name(self) -> &'static str {
        match self {
            Stack::Rust => "rust",
            Stack::Node => "node",
        }
    }
}

/// Several muster nodes sharing one Redis (delta-surge and reconnect-storm).
#[derive(Debug, Clone, Args)]
struct NodeOpts {
    /// muster nodes. 1: one node with its own store, as before. More: the harness starts a
    /// durable redis-server on loopback (or uses --redis-url), starts the nodes on it with
    /// a key prefix of their own, spreads the members over them (member i → node i % N)
    /// and sends the API calls to node 0. The raw-fanout baseline then runs on as many
    /// raw servers.
    #[arg(long, default_value_t = 1)]
    nodes: usize,
    /// Use this Redis (redis://127.0.0.1:PORT/, loopback only) instead of starting one;
    /// with --nodes 1 it runs one node in Redis mode. Keys are left under the run's prefix.
    #[arg(long)]
    redis_url: Option<String>,
    /// The redis-server binary the harness starts with --nodes > 1.
    #[arg(long, default_value = DEFAULT_REDIS_BIN)]
    redis_bin: PathBuf,
    /// How long each node may take to answer GET /readyz with 200 (Redis mode).
    #[arg(long, default_value_t = 60)]
    ready_timeout_s: u64,
}

impl NodeOpts {
    fn single() -> NodeOpts {
        NodeOpts { nodes: 1, redis_url: None, redis_bin: DEFAULT_REDIS_BIN.into(), ready_timeout_s: 60 }
    }

    /// Checked before anything starts (the baseline runs before the nodes).
    fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!((1..=MAX_NODES).contains(&self.nodes), "--nodes must be 1..={MAX_NODES}");
        match &self.redis_url {
            Some(url) => {
                muster_loadtest::cluster::redis_addr(url)?;
            }
            None if self.nodes > 1 => anyhow::ensure!(
                self.redis_bin.exists(),
                "no redis-server at {}: install it, or pass --redis-bin or --redis-url",
                self.redis_bin.display()
            ),
            None => {}
        }
        Ok(())
    }
}

impl Common {
    fn fleet(&self) -> anyhow::Result<FleetOpts> {
        anyhow::ensure!((0.0..=1.0).contains(&self.decline_rate), "--decline-rate is a share between 0 and 1");
        let exe = std::env::current_exe().context("finding this executable")?;
        Ok(FleetOpts {
            mode: if self.in_process { Mode::InProcess } else { Mode::Processes { exe } },
            per_worker: if self.in_process { usize::MAX } else { self.per_process.clamp(1, 9_000) },
            sources: scenario::sources(self.sources),
            answer_delay: self.answer_delay.clone(),
            decline_rate: self.decline_rate,
            seed: self.seed,
            connect_concurrency: self.connect_concurrency,
            reconnect_concurrency: self.reconnect_concurrency,
            reconnect_jitter_ms: self.reconnect_jitter_ms,
            connect_timeout_ms: self.connect_timeout_ms,
            connect_attempts: 5,
            lifetime_s: self.max_run_s + 60,
            quiet: false,
        })
    }

    fn phase_timeout(&self) -> Duration {
        Duration::from_secs(self.phase_timeout_s)
    }

    /// Starts the muster node (or nodes, on Redis) and says what the scenario talks to.
    async fn start_muster(&self, secret: &str, nodes: &NodeOpts) -> anyhow::Result<(Cluster, Target)> {
        anyhow::ensure!((1..=MAX_NODES).contains(&nodes.nodes), "--nodes must be 1..={MAX_NODES}");
        let mut env = Vec::new();
        if let Some(q) = self.outbound_queue {
            env.push(("MUSTER_WS__OUTBOUND_QUEUE".to_string(), q.to_string()));
        }
        for kv in &self.server_env {
            let (k, v) = kv.split_once('=').context("--server-env takes KEY=VALUE")?;
            anyhow::ensure!(k.starts_with("MUSTER_"), "--server-env sets MUSTER_* variables only");
            env.push((k.to_string(), v.to_string()));
        }
        std::fs::create_dir_all(&self.out)?;
        let node = MusterConfig {
            bin: self.muster_bin.clone().unwrap_or_else(default_muster_bin),
            members: self.members,
            secret: secret.to_string(),
            env,
            log: self.out.join("muster-server.log"),
        };
        let cfg = ClusterConfig {
            nodes: nodes.nodes,
            redis_url: nodes.redis_url.clone(),
            redis_bin: nodes.redis_bin.clone(),
            node,
            out: self.out.clone(),
            ready_timeout: Duration::from_secs(nodes.ready_timeout_s),
        };
        if cfg.uses_redis() {
            eprintln!(
                "starting {} node(s) of {} on Redis with a {}-member demo city …",
                cfg.nodes,
                cfg.node.bin.display(),
                self.members
            );
        } else {
            eprintln!("starting {} with a {}-member demo city …", cfg.node.bin.display(), self.members);
        }
        let c = Cluster::start(&cfg).await?;
        if !cfg.uses_redis() {
            eprintln!("muster listening on {} (pid {})", c.nodes[0].addr, c.nodes[0].pid);
        }
        let target = c.target(secret);
        Ok((c, target))
    }
}

fn random_secret() -> String {
    let mut rng = rand::thread_rng();
    (0..40).map(|_| char::from(b"abcdefghijklmnopqrstuvwxyz0123456789"[rng.gen_range(0..36)])).collect()
}

fn finish(mut report: Report, out: &std::path::Path) -> anyhow::Result<bool> {
    let files = report.write(out)?;
    println!("{}", report.markdown());
    for f in files {
        eprintln!("wrote {}", f.display());
    }
    Ok(report.all_checks_pass())
}

/// The raw-fanout baselines, one stack after the other, each on `servers` raw servers
/// (one per muster node); each one's report is written as it ends.
async fn baselines(
    common: &Common,
    base: &BaselineOpts,
    view: &CityView,
    fleet: &FleetOpts,
    servers: usize,
) -> anyhow::Result<Vec<RawOutcome>> {
    let exe = std::env::current_exe()?;
    let lifetime = Duration::from_secs(common.max_run_s);
    let node = NodeBaseline {
        node: base.node_bin.clone(),
        script: PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/node/raw-server.mjs")),
        node_modules: base.node_modules.clone(),
    };
    let mut out = Vec::new();
    for (i, stack) in base.baselines.iter().enumerate() {
        if i > 0 {
            // Let the sockets of the previous run drain first.
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
        let mut targets = Vec::new();
        for _ in 0..servers.max(1) {
            // A failed start drops (and so kills) the ones already running.
            let p = match stack {
                Stack::Rust => RawProcess::start(&exe, lifetime).await?,
                Stack::Node => RawProcess::start_node(&node, lifetime).await?,
            };
            targets.push(RawTarget::Process(Box::new(p)));
        }
        let addrs: Vec<String> = targets.iter().map(|t| t.addr().to_string()).collect();
        eprintln!("raw-fanout baseline ({}): {} clients on {}", stack.name(), view.assault.len(), addrs.join(", "));
        let r = raw_fanout::run_many(
            stack.name(),
            &mut targets,
            view.assault.len(),
            &view.order_frame(),
            fleet,
            common.phase_timeout(),
        )
        .await;
        join_all(targets.into_iter().map(RawTarget::stop)).await;
        let r = r?;
        finish(r.report.clone(), &common.out)?;
        out.push(r);
    }
    Ok(out)
}

async fn run(cmd: Cmd) -> anyhow::Result<bool> {
    match cmd {
        Cmd::Worker => {
            muster_loadtest::worker::main_process().await?;
            Ok(true)
        }
        Cmd::RawServer { lifetime_s } => {
            muster_loadtest::raw::main_process(Duration::from_secs(lifetime_s)).await?;
            Ok(true)
        }
        Cmd::RawFanout { common, base } => {
            let view = CityView::new(common.members, common.seed)?;
            let fleet = common.fleet()?;
            let outcomes = baselines(&common, &base, &view, &fleet, 1).await?;
            Ok(outcomes.iter().all(|o| o.report.all_checks_pass()))
        }
        Cmd::DeltaSurge { common, nodes, incidents, headcount, level, no_baseline, base } => {
            nodes.check()?;
            let view = CityView::new(common.members, common.seed)?;
            let fleet = common.fleet()?;
            let base = if no_baseline {
                Vec::new()
            } else {
                let b = baselines(&common, &base, &view, &fleet, nodes.nodes).await?;
                // Let the sockets of the baseline drain before muster starts.
                tokio::time::sleep(Duration::from_secs(3)).await;
                b
            };
            let secret = random_secret();
            let (server, target) = common.start_muster(&secret, &nodes).await?;
            let opts = delta::DeltaOpts {
                incidents,
                headcount,
                level,
                phase_timeout: common.phase_timeout(),
                ..Default::default()
            };
            let r = delta::run(&target, &view, &fleet, &opts, &base).await;
            server.stop().await;
            finish(r?, &common.out)
        }
        Cmd::ReconnectStorm { common, nodes, incidents, headcount } => {
            nodes.check()?;
            let view = CityView::new(common.members, common.seed)?;
            let fleet = common.fleet()?;
            let secret = random_secret();
            let (server, target) = common.start_muster(&secret, &nodes).await?;
            let opts =
                storm::StormOpts { incidents, headcount, phase_timeout: common.phase_timeout(), ..Default::default() };
            let r = storm::run(&target, &view, &fleet, &opts).await;
            server.stop().await;
            finish(r?, &common.out)
        }
        Cmd::Steady { common, rate, duration_s, headcount, level, max_in_flight, cancel_after_ms, wartime } => {
            anyhow::ensure!(rate > 0.0 && rate <= 100_000.0, "--rate must be in (0, 100000]");
            anyhow::ensure!(duration_s > 0 && duration_s <= 3600, "--duration-s must be 1..=3600");
            let view = CityView::new(common.members, common.seed)?;
            let fleet = common.fleet()?;
            let secret = random_secret();
            let (server, target) = common.start_muster(&secret, &NodeOpts::single()).await?;
            let opts = steady::SteadyOpts {
                rate,
                duration: Duration::from_secs(duration_s),
                headcount,
                level,
                max_in_flight,
                cancel_after: cancel_after_ms.map(Duration::from_millis),
                wartime,
            };
            let r = steady::run(&target, &view, &fleet, &opts).await;
            server.stop().await;
            finish(r?, &common.out)
        }
    }
}

/// Resolves on ctrl-c (SIGINT) or SIGTERM; never, if the handlers cannot be installed.
async fn interrupted() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => "ctrl-c",
        _ = term.recv() => "SIGTERM",
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let limit = match &cli.cmd {
        Cmd::DeltaSurge { common, .. }
        | Cmd::Steady { common, .. }
        | Cmd::ReconnectStorm { common, .. }
        | Cmd::RawFanout { common, .. } => Some(Duration::from_secs(common.max_run_s)),
        Cmd::Worker | Cmd::RawServer { .. } => None,
    };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let res = rt.block_on(async move {
        match limit {
            // A run that ends early (--max-run-s, ctrl-c, SIGTERM) is dropped where it is,
            // and with it every child process (nodes, redis-server, workers, raw servers:
            // all spawned with kill_on_drop, so they get SIGKILL by pid).
            Some(l) => tokio::select! {
                r = tokio::time::timeout(l, run(cli.cmd)) => r.context("the run hit --max-run-s")?,
                why = interrupted() => Err(anyhow::anyhow!("stopped by {why}; its child processes were killed")),
            },
            None => run(cli.cmd).await,
        }
    });
    // Do not wait for stray tasks (members of a finished fleet, pooled connections).
    rt.shutdown_timeout(Duration::from_secs(2));
    let ok = res?;
    if !ok {
        eprintln!("some correctness checks failed (see the report)");
        std::process::exit(2);
    }
    Ok(())
}
