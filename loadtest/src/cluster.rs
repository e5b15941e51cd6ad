//! Several muster nodes on one Redis (muster's multi-node mode): the durable redis-server
//! the harness starts (append-only file, fsync always, no RDB snapshots), a RESP `PING`
//! over a plain `TcpStream`, the nodes as child processes sharing one key prefix, and which
//! node each simulated member connects to (member i → node i % N). With one node and no
//! Redis this is exactly the single `muster serve --demo` of before.
//!
//! Every child (nodes, redis-server) is spawned with `kill_on_drop`, so an error or a
//! ctrl-c that drops the run also kills them by pid; `Cluster::stop` is the orderly way,
//! SIGTERM then bounded waits then SIGKILL.

use std::ffi::OsString;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::future::join_all;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Child;

use crate::proto::SimMember;
use crate::scenario::{Node, Target};
use crate::server::{MusterConfig, MusterProcess, terminate};

/// How a node finds its Redis (as the multi-node mode reads it).
pub const REDIS_URL_VAR: &str = "MUSTER_REDIS_URL";
/// The key prefix the nodes of one deployment share.
pub const REDIS_PREFIX_VAR: &str = "MUSTER_REDIS__PREFIX";
/// At most this many nodes in one run.
pub const MAX_NODES: usize = 16;
/// Where the redis-server binary is unless `--redis-bin` says otherwise.
pub const DEFAULT_REDIS_BIN: &str = "/usr/bin/redis-server";

/// The node member number `position` (in the order the members are dealt) connects to.
pub fn node_of(position: usize, nodes: usize) -> u16 {
    (position % nodes.clamp(1, MAX_NODES)) as u16
}

/// Sets every member's node: the i-th member goes to node i % `nodes`.
pub fn assign_nodes(members: &mut [SimMember], nodes: usize) {
    for (i, m) in members.iter_mut().enumerate() {
        m.node = node_of(i, nodes);
    }
}

/// The arguments of a durable, loopback-only redis-server on `port` keeping its files in `dir`.
pub fn redis_args(port: u16, dir: &Path) -> Vec<OsString> {
    let mut a: Vec<OsString> = Vec::new();
    for (k, v) in [
        ("--port", OsString::from(port.to_string())),
        ("--bind", "127.0.0.1".into()),
        ("--dir", dir.as_os_str().to_owned()),
        ("--appendonly", "yes".into()),
        ("--appendfsync", "always".into()),
        ("--save", "".into()),
    ] {
        a.push(k.into());
        a.push(v);
    }
    a
}

/// The address in a `redis://[user:pass@]host[:port][/db]` URL; loopback only.
pub fn redis_addr(url: &str) -> anyhow::Result<SocketAddr> {
    let rest = url.strip_prefix("redis://").context("a Redis URL starts with redis://")?;
    let hostport = rest.split('/').next().unwrap_or("");
    let hostport = hostport.rsplit_once('@').map_or(hostport, |(_, h)| h);
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) => (h, p.parse::<u16>().with_context(|| format!("the port in {url}"))?),
        None => (hostport, 6379),
    };
    let ip: IpAddr = if host.eq_ignore_ascii_case("localhost") {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        host.trim_start_matches('[').trim_end_matches(']').parse().with_context(|| format!("the host in {url}"))?
    };
    anyhow::ensure!(ip.is_loopback(), "the harness uses a Redis on loopback only, not {ip}");
    Ok(SocketAddr::new(ip, port))
}

/// Sends one RESP `PING` and returns the first line of the answer (`+PONG` when it is up).
pub async fn ping(addr: SocketAddr, limit: Duration) -> anyhow::Result<String> {
    let talk = async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        s.write_all(b"*1\r\n$4\r\nPING\r\n").await?;
        let mut buf = Vec::with_capacity(64);
        let mut chunk = [0u8; 256];
        while !buf.windows(2).any(|w| w == b"\r\n") {
            let n = s.read(&mut chunk).await?;
            anyhow::ensure!(n > 0, "closed without an answer");
            buf.extend_from_slice(&chunk[..n]);
            anyhow::ensure!(buf.len() <= 4096, "an answer without an end of line");
        }
        let line = String::from_utf8_lossy(&buf);
        Ok(line.split("\r\n").next().unwrap_or("").to_string())
    };
    tokio::time::timeout(limit, talk).await.with_context(|| format!("no answer to PING from {addr}"))?
}

/// PINGs until the answer is `+PONG` (or `-NOAUTH`: it answers, and the nodes have the
/// credentials), for at most `limit`; stops early when `child` has exited.
pub async fn wait_pong(addr: SocketAddr, mut child: Option<&mut Child>, limit: Duration) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut last = String::from("nothing yet");
    while tokio::time::Instant::now() < deadline {
        if let Some(c) = child.as_deref_mut()
            && let Some(status) = c.try_wait()?
        {
            bail!("redis-server exited ({status}) before it answered PING; last: {last}");
        }
        match ping(addr, Duration::from_secs(1)).await {
            Ok(l) if l.starts_with("+PONG") || l.starts_with("-NOAUTH") => return Ok(()),
            Ok(l) => last = l,
            Err(e) => last = format!("{e:#}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("Redis at {addr} did not answer PING within {} s (last: {last})", limit.as_secs())
}

/// A free TCP port on 127.0.0.1 (the listener is closed again at once).
fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A durable redis-server started by the harness, with its files in a temporary directory.
pub struct RedisServer {
    child: Child,
    pub pid: u32,
    pub addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts `bin` on a free port (three tries, in case another process takes the port
    /// between choosing and binding) and waits until it answers PING (at most `limit`).
    /// Its stdout and stderr go to `log`.
    pub async fn start(bin: &Path, log: &Path, limit: Duration) -> anyhow::Result<RedisServer> {
        if !bin.exists() {
            bail!("no redis-server at {}: install it or pass --redis-bin or --redis-url", bin.display());
        }
        let mut last = None;
        for _ in 0..3 {
            let dir = tempfile::Builder::new().prefix("muster-loadtest-redis-").tempdir()?;
            let port = free_port()?;
            let out = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
            let err = out.try_clone()?;
            let mut child = tokio::process::Command::new(bin)
                .args(redis_args(port, dir.path()))
                .stdin(Stdio::null())
                .stdout(Stdio::from(out))
                .stderr(Stdio::from(err))
                .kill_on_drop(true)
                .spawn()
                .with_context(|| format!("starting {}", bin.display()))?;
            let pid = child.id().context("redis-server exited at once")?;
            let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
            match wait_pong(addr, Some(&mut child), limit).await {
                Ok(()) => return Ok(RedisServer { child, pid, addr, dir }),
                Err(e) => {
                    terminate(pid);
                    let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
                    last = Some(e);
                }
            }
        }
        Err(last.expect("tried").context(format!("see {}", log.display())))
    }

    pub fn url(&self) -> String {
        format!("redis://{}/", self.addr)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// SIGTERM (Redis flushes the append-only file and exits), up to 10 s, then SIGKILL.
    pub async fn stop(mut self) {
        terminate(self.pid);
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await.is_err() {
            let _ = self.child.start_kill();
            let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
        }
    }
}

/// How to start the muster deployment under test.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// 1: one node with its own store, as before; more: nodes sharing Redis.
    pub nodes: usize,
    /// An existing Redis to use (loopback) instead of starting one.
    pub redis_url: Option<String>,
    pub redis_bin: PathBuf,
    /// The node's settings; each node gets its own data directory and log.
    pub node: MusterConfig,
    /// Where the logs go.
    pub out: PathBuf,
    /// How long each node may take to answer `GET /readyz` with 200 (Redis mode).
    pub ready_timeout: Duration,
}

impl ClusterConfig {
    /// Redis mode: several nodes, or one node told to use a given Redis.
    pub fn uses_redis(&self) -> bool {
        self.nodes > 1 || self.redis_url.is_some()
    }
}

/// The running deployment: the nodes (node 0 takes the API requests) and the Redis.
pub struct Cluster {
    pub nodes: Vec<MusterProcess>,
    pub redis: Option<RedisServer>,
    /// The Redis the nodes use, and their key prefix (Redis mode only).
    pub redis_url: Option<String>,
    pub prefix: Option<String>,
}

/// A key prefix no earlier run used: the harness's pid and the time.
pub fn unique_prefix() -> String {
    let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
    format!("muster-lt-{}-{ms}", std::process::id())
}

/// The log file of node `k` of `n` (`muster-server.log` on a single node, as before).
pub fn node_log(out: &Path, k: usize, n: usize) -> PathBuf {
    if n <= 1 { out.join("muster-server.log") } else { out.join(format!("muster-node{k}.log")) }
}

impl Cluster {
    /// Starts the Redis (if the harness starts one), node 0, and once node 0 listens (and
    /// has loaded the demo city) the other nodes at once; in Redis mode then waits until
    /// every node is ready.
    pub async fn start(cfg: &ClusterConfig) -> anyhow::Result<Cluster> {
        anyhow::ensure!((1..=MAX_NODES).contains(&cfg.nodes), "--nodes must be 1..={MAX_NODES}");
        std::fs::create_dir_all(&cfg.out)?;
        if !cfg.uses_redis() {
            let mut node = cfg.node.clone();
            node.log = node_log(&cfg.out, 0, 1);
            let p = MusterProcess::start(&node).await?;
            return Ok(Cluster { nodes: vec![p], redis: None, redis_url: None, prefix: None });
        }
        let (redis, url) = match &cfg.redis_url {
            Some(url) => {
                let addr = redis_addr(url)?;
                wait_pong(addr, None, Duration::from_secs(10)).await?;
                eprintln!("using Redis at {addr}");
                (None, url.clone())
            }
            None => {
                let r = RedisServer::start(&cfg.redis_bin, &cfg.out.join("redis-server.log"), Duration::from_secs(20))
                    .await?;
                eprintln!("redis-server on {} (pid {}, files in {})", r.addr, r.pid, r.dir().display());
                let url = r.url();
                (Some(r), url)
            }
        };
        let prefix = unique_prefix();
        let mut cluster =
            Cluster { nodes: Vec::new(), redis, redis_url: Some(url.clone()), prefix: Some(prefix.clone()) };
        // On a failure, stop what did start (nodes, then the Redis) in the orderly way.
        match start_nodes(cfg, &url, &prefix, &mut cluster.nodes).await {
            Ok(()) => Ok(cluster),
            Err(e) => {
                cluster.stop().await;
                Err(e)
            }
        }
    }

    /// What the scenarios talk to; node 0 takes the API requests.
    pub fn target(&self, secret: &str) -> Target {
        Target {
            nodes: self.nodes.iter().map(|p| Node { addr: p.addr, pid: Some(p.pid) }).collect(),
            secret: secret.to_string(),
            redis_pid: self.redis.as_ref().map(|r| r.pid),
        }
    }

    /// Stops every node at once (SIGTERM, up to 15 s each, then SIGKILL), then the Redis.
    pub async fn stop(self) {
        let stopped = join_all(self.nodes.into_iter().map(MusterProcess::stop)).await;
        for (k, r) in stopped.into_iter().enumerate() {
            if let Err(e) = r {
                eprintln!("stopping node {k}: {e:#}");
            }
        }
        if let Some(r) = self.redis {
            r.stop().await;
        }
    }
}

/// Node 0, then (once it listens, with the demo city in Redis) the others at once, then
/// waits until every node is ready. Started nodes are pushed to `nodes` as they come.
async fn start_nodes(
    cfg: &ClusterConfig,
    url: &str,
    prefix: &str,
    nodes: &mut Vec<MusterProcess>,
) -> anyhow::Result<()> {
    let node_cfg = |k: usize| {
        let mut c = cfg.node.clone();
        c.env.push((REDIS_URL_VAR.to_string(), url.to_string()));
        c.env.push((REDIS_PREFIX_VAR.to_string(), prefix.to_string()));
        c.log = node_log(&cfg.out, k, cfg.nodes);
        c
    };
    let first = MusterProcess::start(&node_cfg(0)).await.context("starting node 0")?;
    eprintln!("node 0 listening on {} (pid {})", first.addr, first.pid);
    nodes.push(first);
    let cfgs: Vec<MusterConfig> = (1..cfg.nodes).map(node_cfg).collect();
    let rest = join_all(cfgs.iter().map(MusterProcess::start)).await;
    let mut failed = None;
    for (k, r) in rest.into_iter().enumerate() {
        match r {
            Ok(p) => {
                eprintln!("node {} listening on {} (pid {})", k + 1, p.addr, p.pid);
                nodes.push(p);
            }
            Err(e) => failed = failed.or(Some(e.context(format!("starting node {}", k + 1)))),
        }
    }
    if let Some(e) = failed {
        return Err(e);
    }
    let ready = join_all(nodes.iter().map(|n| wait_ready(n.addr, cfg.ready_timeout))).await;
    for (k, r) in ready.into_iter().enumerate() {
        r.with_context(|| format!("node {k} (see {})", node_log(&cfg.out, k, cfg.nodes).display()))?;
    }
    Ok(())
}

/// Polls `GET /readyz` until 200, for at most `limit`.
pub async fn wait_ready(addr: SocketAddr, limit: Duration) -> anyhow::Result<()> {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build()?;
    let deadline = tokio::time::Instant::now() + limit;
    let mut last = String::from("nothing yet");
    while tokio::time::Instant::now() < deadline {
        match http.get(format!("http://{addr}/readyz")).send().await {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) => {
                let status = r.status();
                last = format!("{status} {}", r.text().await.unwrap_or_default());
            }
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!("{addr} was not ready within {} s (last: {last})", limit.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(i: u32) -> SimMember {
        SimMember { idx: 1000 + i, id: format!("m{i}"), token: String::new(), node: 99 }
    }

    #[test]
    fn members_are_dealt_round_robin_over_the_nodes() {
        let mut ms: Vec<SimMember> = (0..10).map(member).collect();
        assign_nodes(&mut ms, 3);
        let nodes: Vec<u16> = ms.iter().map(|m| m.node).collect();
        assert_eq!(nodes, [0, 1, 2, 0, 1, 2, 0, 1, 2, 0]);
        // One node (or a nonsensical 0) puts everybody on node 0.
        assign_nodes(&mut ms, 1);
        assert!(ms.iter().all(|m| m.node == 0));
        assign_nodes(&mut ms, 0);
        assert!(ms.iter().all(|m| m.node == 0));
        // Balanced: 50,000 over 3 nodes differ by at most one.
        let mut count = [0usize; 3];
        for i in 0..50_000 {
            count[usize::from(node_of(i, 3))] += 1;
        }
        assert_eq!(count, [16_667, 16_667, 16_666]);
    }

    #[test]
    fn redis_is_started_durable_and_on_loopback() {
        let args: Vec<String> =
            redis_args(6390, Path::new("/tmp/x")).iter().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(
            args,
            [
                "--port",
                "6390",
                "--bind",
                "127.0.0.1",
                "--dir",
                "/tmp/x",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                ""
            ]
        );
    }

    #[test]
    fn redis_urls_are_read_and_kept_on_loopback() {
        assert_eq!(redis_addr("redis://127.0.0.1:6390/").unwrap(), "127.0.0.1:6390".parse().unwrap());
        assert_eq!(redis_addr("redis://localhost").unwrap(), "127.0.0.1:6379".parse().unwrap());
        assert_eq!(redis_addr("redis://:pw@127.0.0.2:7000/3").unwrap(), "127.0.0.2:7000".parse().unwrap());
        assert_eq!(redis_addr("redis://[::1]:7001/").unwrap(), "[::1]:7001".parse().unwrap());
        assert!(redis_addr("redis://10.0.0.1:6379/").is_err());
        assert!(redis_addr("http://127.0.0.1:6379/").is_err());
    }

    #[tokio::test]
    async fn a_durable_redis_server_starts_answers_ping_and_stops() {
        let bin = Path::new(DEFAULT_REDIS_BIN);
        // Not skipped without it: .ci/run installs redis-server for the several-nodes tests.
        assert!(bin.exists(), "this test needs {DEFAULT_REDIS_BIN}: apt-get install -y redis-server (.ci/run does)");
        let out = tempfile::tempdir().unwrap();
        let log = out.path().join("redis-server.log");
        let r = RedisServer::start(bin, &log, Duration::from_secs(20)).await.unwrap();
        assert!(r.addr.ip().is_loopback());
        assert_eq!(r.url(), format!("redis://127.0.0.1:{}/", r.addr.port()));
        assert_eq!(ping(r.addr, Duration::from_secs(2)).await.unwrap(), "+PONG");
        // appendonly yes: Redis 7 keeps the append-only files in <dir>/appendonlydir.
        assert!(r.dir().join("appendonlydir").is_dir(), "{:?}", std::fs::read_to_string(&log));
        let (pid, addr, dir) = (r.pid, r.addr, r.dir().to_path_buf());
        r.stop().await;
        assert!(!Path::new("/proc").join(pid.to_string()).exists(), "redis-server {pid} still runs");
        assert!(ping(addr, Duration::from_millis(500)).await.is_err());
        assert!(!dir.exists(), "its directory is removed");
    }

    #[test]
    fn old_worker_specs_still_read() {
        // A spec without `nodes` (and members without `node`) is a single-node spec.
        let spec = serde_json::json!({
            "worker": 0, "addr": "127.0.0.1:8080", "sources": ["127.0.0.2"],
            "members": [{"idx": 1, "id": "m1", "token": "t"}],
            "answer_delay": {"kind": "zero"}, "decline_rate": 0.0, "report": true, "seed": 1,
            "connect_concurrency": 1, "reconnect_concurrency": 1, "reconnect_jitter_ms": 0,
            "connect_timeout_ms": 1000, "connect_attempts": 1, "progress_ms": 100, "lifetime_s": 10
        });
        let spec: crate::proto::WorkerSpec = serde_json::from_value(spec).unwrap();
        assert!(spec.nodes.is_empty());
        assert_eq!(spec.members[0].node, 0);
        assert_eq!(spec.node_addr(spec.members[0].node), spec.addr);
        assert_eq!(spec.node_addr(5), spec.addr);
    }

    #[test]
    fn worker_specs_carry_every_node_and_each_members_node() {
        let fleet = crate::scenario::FleetOpts {
            mode: crate::fleet::Mode::InProcess,
            per_worker: 4,
            sources: crate::scenario::sources(2),
            answer_delay: crate::dist::Delay::Zero,
            decline_rate: 0.0,
            seed: 1,
            connect_concurrency: 1,
            reconnect_concurrency: 1,
            reconnect_jitter_ms: 0,
            connect_timeout_ms: 1000,
            connect_attempts: 1,
            lifetime_s: 10,
            quiet: true,
        };
        let nodes: Vec<SocketAddr> =
            ["127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003"].iter().map(|a| a.parse().unwrap()).collect();
        let specs = fleet.specs_on(&nodes, (0..10).map(member).collect(), true);
        assert_eq!(specs.len(), 3);
        for spec in &specs {
            assert_eq!(spec.addr, nodes[0]);
            assert_eq!(spec.nodes, nodes);
            for m in &spec.members {
                // Member at position i (idx 1000 + i) → node i % 3.
                assert_eq!(usize::from(m.node), (m.idx as usize - 1000) % 3);
                assert_eq!(spec.node_addr(m.node), nodes[usize::from(m.node)]);
            }
        }
        // One node: the spec is what it always was.
        let single = fleet.specs(nodes[1], (0..10).map(member).collect(), true);
        assert!(single.iter().all(|s| s.nodes.is_empty() && s.addr == nodes[1]));
        assert!(single.iter().flat_map(|s| &s.members).all(|m| m.node == 0));
    }

    #[test]
    fn the_report_shows_every_node_their_sum_and_the_redis() {
        use crate::scenario::{Readings, Snap, node_table};
        use crate::server::ProcStats;
        let target = Target {
            nodes: (0..3)
                .map(|k| Node { addr: SocketAddr::from(([127, 0, 0, 1], 7001 + k)), pid: Some(100) })
                .collect(),
            secret: String::new(),
            redis_pid: Some(200),
        };
        let st = |cpu_s: f64, rss_kib: u64| Some(ProcStats { cpu_s, rss_kib, hwm_kib: rss_kib, threads: 4 });
        let before = Snap { nodes: vec![st(1.0, 1000); 3], redis: st(0.5, 800) };
        let idle = Snap { nodes: vec![st(2.0, 11_000), st(2.0, 21_000), st(2.0, 1000)], redis: st(0.6, 900) };
        let end = Snap { nodes: vec![st(5.0, 12_000), st(4.0, 22_000), st(3.0, 2000)], redis: st(1.6, 1024) };
        let r = Readings { idle: Some((&before, &idle)), phase: (&idle, &end), run: (&before, &end) };
        let rows = node_table(&target, &[1000, 2000, 0], &r);
        assert_eq!(rows.len(), 5);
        assert_eq!(rows[0].rss_per_conn_kib, Some(10.0));
        assert_eq!(rows[1].rss_per_conn_kib, Some(10.0));
        assert_eq!(rows[2].rss_per_conn_kib, None, "no connections, no ratio");
        assert_eq!(rows[0].cpu_phase_s, Some(3.0));
        assert_eq!(rows[0].cpu_run_s, Some(4.0));
        let all = &rows[3];
        assert_eq!((all.node.as_str(), all.connections), ("all nodes", Some(3000)));
        assert_eq!(all.cpu_phase_s, Some(6.0));
        assert_eq!(all.rss_per_conn_kib, Some(10.0));
        assert_eq!(all.peak_rss_mib, Some(36_000.0 / 1024.0));
        assert_eq!(rows[4].node, "redis-server");
        assert_eq!(rows[4].peak_rss_mib, Some(1.0));

        let mut report = crate::report::Report::new("delta-surge");
        report.nodes = rows;
        report.node_phase = "order to last report".into();
        let md = report.markdown();
        assert!(md.contains("Per node (3 nodes)"), "{md}");
        assert!(md.contains("| CPU, order to last report (s) |"), "{md}");
        assert!(md.contains("| 1 | 127.0.0.1:7002 | 100 | 2000 | 2 | 3 | 21.48 | 10 |"), "{md}");
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["nodes"].as_array().map(Vec::len), Some(5));
        // A single-node report has neither.
        let json = serde_json::to_value(crate::report::Report::new("x")).unwrap();
        assert!(json.get("nodes").is_none() && json.get("node_phase").is_none());
    }

    #[test]
    fn node_logs_keep_the_single_node_name() {
        let out = Path::new("out");
        assert_eq!(node_log(out, 0, 1), out.join("muster-server.log"));
        assert_eq!(node_log(out, 2, 3), out.join("muster-node2.log"));
    }
}
