//! Wiring: `build(settings, options)` opens the store, starts the engine, binds the
//! listener (port 0 works: the bound address is in `App::addr`) and serves. Tests call it
//! directly; `muster serve` calls it from the CLI.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;
use axum::serve::ListenerExt as _;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::cluster::Node;
use crate::domain::dispatcher::{Actor, Command};
use crate::engine::{self, EngineConfig, EngineHandle};
use crate::gateway::{self, AppState, auth::TokenKeys, hub::Hub, limits::RateLimits};
use crate::settings::Settings;
use crate::store::redis::{RedisHooks, RedisLog, RedisReader, RedisSnapshots};
use crate::store::sqlite::{SqliteHooks, SqliteLog, SqliteReader, SqliteSnapshots};
use crate::store::{EventLog, HookStore, LogReader, SnapshotStore};

#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Load the generated demo city on first start.
    pub demo: bool,
    /// Members in the demo city (default: `demo::DEFAULT_MEMBERS`).
    pub demo_members: Option<usize>,
}

pub struct App {
    pub addr: SocketAddr,
    pub engine: EngineHandle,
    pub shutdown: CancellationToken,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    engine_thread: std::thread::JoinHandle<()>,
    snapshot_thread: Option<std::thread::JoinHandle<()>>,
    deliverer: tokio::task::JoinHandle<()>,
    pusher: tokio::task::JoinHandle<()>,
    grace: Duration,
}

/// The process-wide Prometheus recorder (a recorder can be installed only once).
fn metrics_handle() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE.get_or_init(|| PrometheusBuilder::new().install_recorder().ok()).clone()
}

pub async fn build(mut settings: Settings, options: Options) -> anyhow::Result<App> {
    survive_file_size_limit();
    if options.demo {
        settings.residents.log_codes = true;
    }
    let (log, reader, node, snapshots, (hook_store, push_store)) = open_store(&settings)?;
    let hub = Arc::new(Hub::default());
    let shutdown = CancellationToken::new();
    let cfg = EngineConfig {
        mailbox: settings.engine.mailbox,
        batch_max: settings.engine.batch_max,
        position_flush: Duration::from_secs(settings.engine.position_flush_s),
        replica_nice: settings.engine.replica_nice,
    };
    let (engine, engine_thread) =
        engine::start(log, settings.dispatch.clone(), hub.clone(), cfg, shutdown.child_token(), node);
    let snapshot_thread = (settings.engine.snapshot_every > 0).then(|| {
        let e = engine.clone();
        crate::snapshotter::start(
            snapshots,
            settings.engine.snapshot_every,
            Arc::new(move || e.is_leader()),
            shutdown.child_token(),
        )
    });

    let hooks = Arc::new(crate::webhooks::Hooks::new(hook_store, settings.webhooks.clone())?);
    let deliverer = crate::webhooks::start(hooks.clone(), engine.clone(), shutdown.child_token());
    let mut push_settings = settings.push.clone();
    if push_settings.vapid_private_key.is_empty() && options.demo {
        push_settings.vapid_private_key = crate::push::demo_key(&settings.server.data_dir)?;
    }
    let presence: Arc<dyn crate::engine::Publisher> = hub.clone();
    let push = Arc::new(crate::push::Pusher::new(push_store, push_settings, presence)?);
    let pusher = crate::push::start(push.clone(), engine.clone(), shutdown.child_token());

    let listeners = bind(settings.server.listen, settings.server.listen_backlog, settings.server.listeners)
        .with_context(|| format!("binding {}", settings.server.listen))?;
    let addr = listeners[0].local_addr()?;
    let grace = Duration::from_secs(settings.server.shutdown_grace_s);
    let r = &settings.residents;
    let limits = Arc::new(
        RateLimits::new(&settings.limits).with_code_limits(r.codes_per_phone_per_hour, r.codes_per_ip_per_hour),
    );
    let (l, stop) = (limits.clone(), shutdown.clone());
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(60));
        loop {
            tokio::select! {
                _ = every.tick() => l.housekeeping(),
                _ = stop.cancelled() => break,
            }
        }
    });
    let state = AppState {
        engine: engine.clone(),
        reader,
        hub,
        keys: TokenKeys::new(&settings.auth.secret),
        settings: Arc::new(settings),
        metrics: metrics_handle(),
        shutdown: shutdown.clone(),
        limits: limits.clone(),
        hooks,
        push,
    };
    let router = gateway::router(state);
    let stop = shutdown.clone();
    let server = tokio::spawn(async move {
        let mut serving = tokio::task::JoinSet::new();
        for listener in listeners {
            let (router, stop) = (router.clone(), stop.clone());
            // TCP_NODELAY on every accepted socket: a push that follows another before the
            // client acknowledged it (progress frames to a dashboard, an offer after a
            // revocation) must not wait for the client's delayed ACK (40 ms) under Nagle.
            let listener = listener.tap_io(|tcp| {
                if let Err(e) = tcp.set_nodelay(true) {
                    tracing::debug!(error = %e, "TCP_NODELAY could not be set");
                }
            });
            serving.spawn(async move {
                axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
                    .with_graceful_shutdown(async move { stop.cancelled().await })
                    .await
            });
        }
        while let Some(done) = serving.join_next().await {
            done.map_err(std::io::Error::other)??;
        }
        Ok(())
    });

    let app = App { addr, engine, shutdown, server, engine_thread, snapshot_thread, deliverer, pusher, grace };
    app.wait_ready(Duration::from_secs(120)).await?;
    if options.demo {
        app.load_demo(options.demo_members.unwrap_or(crate::demo::DEFAULT_MEMBERS)).await?;
    }
    Ok(app)
}

/// The webhooks' and the pusher's store connections.
type Hooks = (Box<dyn HookStore>, Box<dyn HookStore>);
type Store = (Box<dyn EventLog>, Arc<dyn LogReader>, Option<Node>, Box<dyn SnapshotStore>, Hooks);

/// The embedded SQLite store, or Redis when `redis_url` is set (then this is one node of
/// several, see `crate::cluster`).
fn open_store(settings: &Settings) -> anyhow::Result<Store> {
    if settings.redis_url.is_empty() {
        let dir = &settings.server.data_dir;
        let log = SqliteLog::open(dir).with_context(|| format!("opening the store in {}", dir.display()))?;
        let reader = SqliteReader::open(dir, 4).context("opening read connections")?;
        let snapshots = SqliteSnapshots::open(dir).context("opening the snapshotter's connection")?;
        let hooks = SqliteHooks::open(dir).context("opening the webhook deliverer's connection")?;
        let push = SqliteHooks::open(dir).context("opening the pusher's connection")?;
        let hooks: Hooks = (Box::new(hooks), Box::new(push));
        return Ok((Box::new(log), Arc::new(reader), None, Box::new(snapshots), hooks));
    }
    let node = Node::new(settings).context("redis_url")?;
    tracing::info!(node = %node.id, prefix = %settings.redis.prefix, "several nodes on Redis");
    let log = RedisLog::new(node.client.clone(), node.keys.clone(), node.fence.clone(), node.require_persistence);
    let reader = RedisReader::new(node.client.clone(), node.keys.clone());
    let snapshots = RedisSnapshots::new(node.client.clone(), node.keys.clone(), node.require_persistence);
    let hooks: Hooks = (
        Box::new(RedisHooks::new(node.client.clone(), node.keys.clone())),
        Box::new(RedisHooks::new(node.client.clone(), node.keys.clone())),
    );
    Ok((Box::new(log), Arc::new(reader), Some(node), Box::new(snapshots), hooks))
}

impl App {
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    async fn wait_ready(&self, limit: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + limit;
        while !self.engine.is_ready() {
            anyhow::ensure!(tokio::time::Instant::now() < deadline, "the log was not replayed within {limit:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    }

    /// Imports the demo city unless a city is already there (first start only).
    async fn load_demo(&self, members: usize) -> anyhow::Result<()> {
        if self.engine.read().city.city().is_some() {
            return Ok(());
        }
        let city =
            tokio::task::spawn_blocking(move || crate::demo::demo_city(members, crate::demo::DEFAULT_SEED)).await?;
        self.engine
            .submit(Actor::System, Command::ImportCity(Box::new(city)))
            .await
            .map_err(|e| anyhow::anyhow!("loading the demo city: {e}"))?;
        tracing::info!(members, "demo city loaded");
        Ok(())
    }

    /// Serves until `shutdown` is cancelled, then waits up to the grace period.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.shutdown.cancelled().await;
        self.stop().await
    }

    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        match tokio::time::timeout(self.grace, self.server).await {
            Ok(r) => r??,
            Err(_) => tracing::warn!("connections still open after the grace period; closing"),
        }
        let _ = self.deliverer.await;
        let _ = self.pusher.await;
        let thread = self.engine_thread;
        tokio::task::spawn_blocking(move || thread.join()).await?.ok();
        if let Some(thread) = self.snapshot_thread {
            tokio::task::spawn_blocking(move || thread.join()).await?.ok();
        }
        Ok(())
    }
}

/// Under a file-size limit (`ulimit -f`, RLIMIT_FSIZE) a write past it raises SIGXFSZ,
/// whose default action kills the process mid-write. Handled, the write fails with EFBIG
/// instead: the append fails, the engine answers 503 and retries, reads go on. (tokio
/// never uninstalls a signal handler, so dropping the stream keeps it.)
fn survive_file_size_limit() {
    #[cfg(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        const SIGXFSZ: i32 = 25;
        let kind = tokio::signal::unix::SignalKind::from_raw(SIGXFSZ);
        if let Err(e) = tokio::signal::unix::signal(kind) {
            tracing::warn!(error = %e, "cannot handle SIGXFSZ; a file-size limit would kill the process");
        }
    }
}

/// Binds with a listen backlog of our choosing: the default (128) overflows when thousands
/// of members reconnect at once after a restart, and each dropped SYN costs a client a
/// second or more (the kernel caps it at net.core.somaxconn). With `listeners` > 1 the
/// port is bound that many times with SO_REUSEPORT: the kernel spreads new connections
/// over their accept queues, so a storm has `listeners` × backlog of room (the first one
/// fixes the port when `addr` asks for port 0).
fn bind(addr: SocketAddr, backlog: u32, listeners: u32) -> std::io::Result<Vec<TcpListener>> {
    let one = |addr: SocketAddr| {
        let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
        socket.set_reuseaddr(true)?;
        #[cfg(unix)]
        if listeners > 1 {
            socket.set_reuseport(true)?;
        }
        socket.bind(addr)?;
        socket.listen(backlog)
    };
    let first = one(addr)?;
    let bound = first.local_addr()?;
    let mut all = vec![first];
    for _ in 1..listeners.max(1) {
        all.push(one(bound)?);
    }
    Ok(all)
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
