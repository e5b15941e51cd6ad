//! The nemesis: the nodes as real processes, and a seeded schedule of faults played
//! against them: kill -9 and restart, SIGSTOP past the lease and SIGCONT, a Redis
//! restart, and a proxy between a node and Redis that delays, holds one direction or cuts.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::client::Shared;
use super::proxy::{Flow, Proxy};
use crate::cluster::OwnRedis;
use crate::helpers::{Child, ChildOptions, start_child_with};

#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// kill -9 of one node (single node: the node; several: the engine's), restarted after ms.
    KillEngine(u64),
    KillFollower(u64),
    /// SIGSTOP of the engine for ms (longer than the lease), then SIGCONT.
    PauseEngine(u64),
    /// redis-server killed and started again after ms, from its append-only file.
    RestartRedis(u64),
    /// The proxy of node n closes every connection and refuses new ones for ms.
    Cut(usize, u64),
    /// Every chunk between node n and Redis waits this long, for ms.
    Delay(usize, u64, u64),
    /// Bytes from node n to Redis (up) or back (down) stop flowing for ms.
    OneWay(usize, bool, u64),
}

impl Fault {
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::KillEngine(_) => "kill -9 engine",
            Fault::KillFollower(_) => "kill -9 follower",
            Fault::PauseEngine(_) => "SIGSTOP engine > lease",
            Fault::RestartRedis(_) => "Redis restart",
            Fault::Cut(..) => "proxy cut",
            Fault::Delay(..) => "proxy delay",
            Fault::OneWay(..) => "proxy one way",
        }
    }
}

/// The faults of a run: (ms after the start, fault), seeded.
pub fn schedule(seed: u64, secs: u64, nodes: usize) -> Vec<(u64, Fault)> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x6e656d65736973);
    let span = secs * 1000;
    let mut out = Vec::new();
    if nodes == 1 {
        let n = rng.gen_range(3..=5);
        // Evenly spread, jittered, between 10% and 85% of the run.
        for i in 0..n {
            let slot = span * 75 / 100 / n;
            let at = span / 10 + i * slot + rng.gen_range(0..slot.max(1) / 2);
            out.push((at, Fault::KillEngine(rng.gen_range(0..500))));
        }
        return out;
    }
    let mut kinds = vec![0, 1, 2, 3, 4, 5, 6];
    // A few more, drawn at random.
    for _ in 0..(secs / 15) {
        kinds.push(rng.gen_range(0..7));
    }
    for i in (1..kinds.len()).rev() {
        kinds.swap(i, rng.gen_range(0..=i));
    }
    let slot = span * 80 / 100 / kinds.len() as u64;
    for (i, k) in kinds.into_iter().enumerate() {
        let at = span / 12 + i as u64 * slot + rng.gen_range(0..slot / 4 + 1);
        let f = match k {
            0 => Fault::KillEngine(rng.gen_range(500..2000)),
            1 => Fault::KillFollower(rng.gen_range(200..1500)),
            2 => Fault::PauseEngine(rng.gen_range(2000..3500)),
            3 => Fault::RestartRedis(rng.gen_range(300..1500)),
            4 => Fault::Cut(rng.gen_range(0..nodes), rng.gen_range(1000..3000)),
            5 => Fault::Delay(rng.gen_range(0..nodes), rng.gen_range(100..600), rng.gen_range(1500..3000)),
            _ => Fault::OneWay(rng.gen_range(0..nodes), rng.gen_bool(0.5), rng.gen_range(1500..3000)),
        };
        out.push((at, f));
    }
    out
}

/// The nodes, their data directories and environment, and (several nodes) their Redis
/// and the proxies between them and it.
pub struct Nodes {
    pub procs: Vec<Option<Child>>,
    pub dirs: Vec<tempfile::TempDir>,
    env: Vec<Vec<(String, String)>>,
    pub redis: Option<Arc<Mutex<OwnRedis>>>,
    pub proxies: Vec<Proxy>,
    pub lease_key: Option<String>,
    /// Bumped by the monitor each time it is (re)connected.
    pub monitor_gen: Option<Arc<AtomicU64>>,
}

impl Nodes {
    pub fn db(&self) -> PathBuf {
        self.dirs[0].path().join("muster.db")
    }

    pub async fn start(env: Vec<Vec<(String, String)>>) -> Nodes {
        let mut n = Nodes {
            procs: Vec::new(),
            dirs: Vec::new(),
            env,
            redis: None,
            proxies: Vec::new(),
            lease_key: None,
            monitor_gen: None,
        };
        for i in 0..n.env.len() {
            n.dirs.push(tempfile::tempdir().unwrap());
            let c = n.spawn(i).await;
            n.procs.push(Some(c));
        }
        n
    }

    async fn spawn(&self, i: usize) -> Child {
        let dir = self.dirs[i].path().to_path_buf();
        let env = self.env[i].clone();
        tokio::task::spawn_blocking(move || {
            let e: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            // The run's own variables would read as unknown settings (`env` execs, so the
            // pid is muster's).
            let wrapper =
                ["env", "-u", "MUSTER_HISTORY_SEED", "-u", "MUSTER_HISTORY_SECS", "-u", "MUSTER_HISTORY_STRICT", "--"];
            // Its warnings and errors, kept (across restarts) for a node that does not come
            // back ready: `all_ready` prints their end.
            let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("node.log")).ok();
            start_child_with(&dir, ChildOptions { env: &e, wrapper: &wrapper, stderr: log })
        })
        .await
        .unwrap()
    }

    pub fn addrs(&self) -> Vec<String> {
        self.procs.iter().map(|p| p.as_ref().map(|c| c.addr.clone()).unwrap_or_default()).collect()
    }

    pub async fn restart(&mut self, i: usize, ctx: &Shared) {
        let c = self.spawn(i).await;
        ctx.addrs.write().unwrap()[i] = c.addr.clone();
        self.procs[i] = Some(c);
    }

    pub fn kill(&mut self, i: usize) {
        if let Some(c) = self.procs[i].take() {
            c.kill9();
        }
    }

    fn signal(&self, i: usize, sig: libc::c_int) {
        if let Some(c) = &self.procs[i] {
            unsafe { libc::kill(c.pid() as libc::pid_t, sig) };
        }
    }

    /// The node that holds the lease now (by its `node_id` in the token), if any.
    pub fn engine(&self) -> Option<usize> {
        let redis = self.redis.as_ref()?;
        let url = redis.lock().unwrap().url();
        let mut c = redis::Client::open(url).ok()?.get_connection_with_timeout(Duration::from_millis(500)).ok()?;
        let token: Option<String> = redis::cmd("GET").arg(self.lease_key.as_ref()?).query(&mut c).ok()?;
        let node = token?.split('/').next()?.strip_prefix("node")?.parse().ok()?;
        Some(node)
    }

    /// Plays one fault and heals it.
    pub async fn play(&mut self, f: &Fault, ctx: &Shared, rng: &mut StdRng) -> String {
        let n = self.procs.len();
        match f {
            Fault::KillEngine(ms) | Fault::KillFollower(ms) => {
                let engine = self.engine().unwrap_or(0);
                let i =
                    if matches!(f, Fault::KillEngine(_)) { engine } else { (engine + rng.gen_range(1..n.max(2))) % n };
                self.kill(i);
                tokio::time::sleep(Duration::from_millis(*ms)).await;
                self.restart(i, ctx).await;
                format!("node{i} killed and restarted after {ms} ms")
            }
            Fault::PauseEngine(ms) => {
                let i = self.engine().unwrap_or(0);
                self.signal(i, libc::SIGSTOP);
                tokio::time::sleep(Duration::from_millis(*ms)).await;
                self.signal(i, libc::SIGCONT);
                format!("node{i} stopped for {ms} ms")
            }
            Fault::RestartRedis(ms) => {
                // No node reaches Redis until the monitor is watching the new one, so that
                // it sees every append.
                for p in &self.proxies {
                    p.refuse(true);
                    p.cut();
                }
                let redis = self.redis.clone().unwrap();
                let before = self.monitor_gen.as_ref().map(|g| g.load(Ordering::SeqCst)).unwrap_or(0);
                redis.lock().unwrap().kill();
                tokio::time::sleep(Duration::from_millis(*ms)).await;
                tokio::task::spawn_blocking(move || redis.lock().unwrap().restart()).await.unwrap();
                if let Some(g) = &self.monitor_gen {
                    for _ in 0..200 {
                        if g.load(Ordering::SeqCst) > before {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(25)).await;
                    }
                }
                for p in &self.proxies {
                    p.refuse(false);
                }
                format!("redis down for {ms} ms")
            }
            Fault::Cut(i, ms) => {
                let p = &self.proxies[*i];
                p.refuse(true);
                p.cut();
                tokio::time::sleep(Duration::from_millis(*ms)).await;
                p.refuse(false);
                format!("node{i} cut from redis for {ms} ms")
            }
            Fault::Delay(i, d, ms) => {
                let p = &self.proxies[*i];
                p.set(Flow::Delay(*d), Flow::Delay(*d));
                tokio::time::sleep(Duration::from_millis(*ms)).await;
                p.set(Flow::Pass, Flow::Pass);
                format!("node{i} delayed {d} ms each way for {ms} ms")
            }
            Fault::OneWay(i, up, ms) => {
                let p = &self.proxies[*i];
                if *up {
                    p.set(Flow::Hold, Flow::Pass);
                } else {
                    p.set(Flow::Pass, Flow::Hold);
                }
                tokio::time::sleep(Duration::from_millis(*ms)).await;
                p.set(Flow::Pass, Flow::Pass);
                let dir = if *up { "node→redis" } else { "redis→node" };
                format!("node{i} {dir} held for {ms} ms")
            }
        }
    }
}
