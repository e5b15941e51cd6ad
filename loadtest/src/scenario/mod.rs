//! The scenarios, and what they share: the city as the harness knows it, the fleet's
//! settings, and the progress bar.
//!
//! - `raw_fanout`: the baseline (same clients, a minimal server).
//! - `delta`: the Delta surge: one mobilization of every assault team, then an incident
//!   per community.
//! - `storm`: every member drops and reconnects at once with `after_seq`.
//! - `steady`: incidents at a fixed rate for a fixed time.

pub mod delta;
pub mod raw_fanout;
pub mod steady;
pub mod storm;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use muster::domain::org::{City, CityIndex, TeamKind};
use muster::gateway::auth::Role;
use serde_json::{Value, json};

use crate::api::Api;
use crate::dist::Delay;
use crate::fleet::Mode;
use crate::proto::{SimMember, WorkerSpec};
use crate::report::NodeFigures;
use crate::server::ProcStats;

/// One muster node of the deployment under test.
#[derive(Debug, Clone, Copy)]
pub struct Node {
    pub addr: SocketAddr,
    /// Its process, when it is a child of the harness (for /proc figures).
    pub pid: Option<u32>,
}

/// The muster deployment a scenario runs against: one node, or several sharing Redis.
#[derive(Debug, Clone)]
pub struct Target {
    /// At least one; node 0 takes the API requests.
    pub nodes: Vec<Node>,
    pub secret: String,
    /// The redis-server the harness started, if it did.
    pub redis_pid: Option<u32>,
}

/// /proc readings of every node (and the Redis) at one moment.
#[derive(Debug, Clone, Default)]
pub struct Snap {
    pub nodes: Vec<Option<ProcStats>>,
    pub redis: Option<ProcStats>,
}

impl Target {
    /// A single node (the smoke test's in-process server has no pid).
    pub fn single(addr: SocketAddr, pid: Option<u32>, secret: &str) -> Target {
        Target { nodes: vec![Node { addr, pid }], secret: secret.to_string(), redis_pid: None }
    }

    /// Node 0: where the API requests go.
    pub fn addr(&self) -> SocketAddr {
        self.nodes[0].addr
    }

    pub fn node_addrs(&self) -> Vec<SocketAddr> {
        self.nodes.iter().map(|n| n.addr).collect()
    }

    /// The sum over the nodes (peaks summed too); None unless every node has a pid.
    pub fn stats(&self) -> Option<ProcStats> {
        sum_stats(&self.snap().nodes)
    }

    pub fn snap(&self) -> Snap {
        Snap {
            nodes: self.nodes.iter().map(|n| n.pid.and_then(crate::server::proc_stats)).collect(),
            redis: self.redis_pid.and_then(crate::server::proc_stats),
        }
    }
}

/// The sum of several processes' readings (peak RSS summed: an upper bound of the joint
/// peak); None when any is missing or there are none.
pub fn sum_stats(all: &[Option<ProcStats>]) -> Option<ProcStats> {
    let mut t = ProcStats::default();
    for s in all {
        let s = (*s)?;
        t.cpu_s += s.cpu_s;
        t.rss_kib += s.rss_kib;
        t.hwm_kib += s.hwm_kib;
        t.threads += s.threads;
    }
    (!all.is_empty()).then_some(t)
}

/// Readings for the per-node table: before and after the members connected (idle RSS),
/// around the scenario's main phase (CPU), and at the start and end of the run.
pub struct Readings<'a> {
    pub idle: Option<(&'a Snap, &'a Snap)>,
    pub phase: (&'a Snap, &'a Snap),
    pub run: (&'a Snap, &'a Snap),
}

/// One row per node, one for all nodes, and one for the Redis the harness started.
/// `conns[k]` is the number of members connected to node k.
pub fn node_table(target: &Target, conns: &[u64], r: &Readings) -> Vec<NodeFigures> {
    let cpu = |a: Option<ProcStats>, b: Option<ProcStats>| cpu_between(a, b);
    let at = |s: &Snap, k: usize| s.nodes.get(k).copied().flatten();
    let mib = |s: Option<ProcStats>| s.map(|s| s.hwm_kib as f64 / 1024.0);
    let per_conn = |a: Option<ProcStats>, b: Option<ProcStats>, n: u64| match (a, b) {
        (Some(a), Some(b)) if n > 0 => Some((b.rss_kib as f64 - a.rss_kib as f64) / n as f64),
        _ => None,
    };
    let mut rows: Vec<NodeFigures> = target
        .nodes
        .iter()
        .enumerate()
        .map(|(k, n)| {
            let c = conns.get(k).copied().unwrap_or(0);
            NodeFigures {
                node: k.to_string(),
                addr: Some(n.addr.to_string()),
                pid: n.pid,
                connections: Some(c),
                cpu_phase_s: cpu(at(r.phase.0, k), at(r.phase.1, k)),
                cpu_run_s: cpu(at(r.run.0, k), at(r.run.1, k)),
                peak_rss_mib: mib(at(r.run.1, k)),
                rss_per_conn_kib: r.idle.and_then(|(a, b)| per_conn(at(a, k), at(b, k), c)),
            }
        })
        .collect();
    let total: u64 = conns.iter().sum();
    let sum = |s: &Snap| sum_stats(&s.nodes);
    rows.push(NodeFigures {
        node: "all nodes".into(),
        addr: None,
        pid: None,
        connections: Some(total),
        cpu_phase_s: cpu(sum(r.phase.0), sum(r.phase.1)),
        cpu_run_s: cpu(sum(r.run.0), sum(r.run.1)),
        peak_rss_mib: mib(sum(r.run.1)),
        rss_per_conn_kib: r.idle.and_then(|(a, b)| per_conn(sum(a), sum(b), total)),
    });
    if target.redis_pid.is_some() {
        rows.push(NodeFigures {
            node: "redis-server".into(),
            addr: None,
            pid: target.redis_pid,
            connections: None,
            cpu_phase_s: cpu(r.phase.0.redis, r.phase.1.redis),
            cpu_run_s: cpu(r.run.0.redis, r.run.1.redis),
            peak_rss_mib: mib(r.run.1.redis),
            rss_per_conn_kib: None,
        });
    }
    rows
}

/// Members connected per node: those in `results` that had a hello, by their node.
pub fn connections_per_node(
    results: &[crate::proto::MemberResult],
    node_of_idx: &std::collections::HashMap<u32, u16>,
    nodes: usize,
) -> Vec<u64> {
    let mut c = vec![0u64; nodes.max(1)];
    for r in results.iter().filter(|r| r.hello_at.is_some()) {
        let k = usize::from(node_of_idx.get(&r.idx).copied().unwrap_or(0));
        if let Some(x) = c.get_mut(k) {
            *x += 1;
        }
    }
    c
}

/// Member index → node, as `FleetOpts::specs` deals them (member at position i → node i % N).
pub fn nodes_by_idx(sim: &[u32], nodes: usize) -> std::collections::HashMap<u32, u16> {
    sim.iter().enumerate().map(|(p, &idx)| (idx, crate::cluster::node_of(p, nodes))).collect()
}

/// How members are run.
#[derive(Debug, Clone)]
pub struct FleetOpts {
    pub mode: Mode,
    /// Members per worker (a process holds at most ~9,000 client sockets here).
    pub per_worker: usize,
    pub sources: Vec<IpAddr>,
    pub answer_delay: Delay,
    pub decline_rate: f64,
    pub seed: u64,
    pub connect_concurrency: usize,
    pub reconnect_concurrency: usize,
    pub reconnect_jitter_ms: u64,
    pub connect_timeout_ms: u64,
    pub connect_attempts: u32,
    /// Workers end themselves after this long.
    pub lifetime_s: u64,
    /// Hide the progress bar (tests).
    pub quiet: bool,
}

impl FleetOpts {
    /// Worker specs for members of a single server.
    pub fn specs(&self, addr: SocketAddr, members: Vec<SimMember>, report: bool) -> Vec<WorkerSpec> {
        self.specs_on(&[addr], members, report)
    }

    /// Worker specs for members spread over `nodes` (member i → node i % N); every worker
    /// gets every node's address.
    pub fn specs_on(&self, nodes: &[SocketAddr], mut members: Vec<SimMember>, report: bool) -> Vec<WorkerSpec> {
        assert!(!nodes.is_empty(), "at least one server");
        crate::cluster::assign_nodes(&mut members, nodes.len());
        let addr = nodes[0];
        let nodes = if nodes.len() > 1 { nodes.to_vec() } else { Vec::new() };
        let per = self.per_worker.max(1);
        let n = members.len().div_ceil(per).max(1);
        // Deal members round-robin so each worker gets every source address and team.
        let mut groups: Vec<Vec<SimMember>> = vec![Vec::new(); n];
        for (i, m) in members.into_iter().enumerate() {
            groups[i % n].push(m);
        }
        groups
            .into_iter()
            .enumerate()
            .map(|(worker, members)| WorkerSpec {
                worker,
                addr,
                nodes: nodes.clone(),
                sources: self.sources.clone(),
                members,
                answer_delay: self.answer_delay.clone(),
                decline_rate: self.decline_rate,
                report,
                seed: self.seed.wrapping_add(worker as u64),
                connect_concurrency: self.connect_concurrency,
                reconnect_concurrency: self.reconnect_concurrency,
                reconnect_jitter_ms: self.reconnect_jitter_ms,
                connect_timeout_ms: self.connect_timeout_ms,
                connect_attempts: self.connect_attempts,
                progress_ms: 100,
                lifetime_s: self.lifetime_s,
            })
            .collect()
    }

    pub fn bar(&self, len: u64, msg: &str) -> ProgressBar {
        if self.quiet {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::new(len);
        bar.set_style(
            ProgressStyle::with_template("{elapsed:>4} {msg:<34} [{bar:40}] {pos}/{len}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_message(msg.to_string());
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    }
}

/// `n` source addresses: 127.0.0.2, 127.0.0.3, …
pub fn sources(n: usize) -> Vec<IpAddr> {
    (0..n.clamp(1, 250)).map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + i as u8))).collect()
}

/// The demo city as the server has it: `demo_city(members, seed)`, indexed.
pub struct CityView {
    pub index: CityIndex,
    /// Members of assault teams: the ones an `all_assault` order reaches.
    pub assault: Vec<u32>,
    /// Members of work teams (or none) who are on call: they may be offered incidents.
    pub on_call_other: Vec<u32>,
}

impl CityView {
    pub fn new(members: usize, seed: u64) -> anyhow::Result<CityView> {
        let city = muster::demo::demo_city(members, seed);
        let index = CityIndex::build(city).map_err(|e| anyhow::anyhow!("the demo city does not index: {e}"))?;
        let city = index.city.as_ref().expect("built from a city");
        let mut assault = Vec::new();
        let mut on_call_other = Vec::new();
        for (i, _) in city.members.iter().enumerate() {
            let kind = index.member_team[i].map(|t| city.teams[t as usize].kind);
            if kind == Some(TeamKind::Assault) {
                assault.push(i as u32);
            } else if city.members[i].on_call {
                on_call_other.push(i as u32);
            }
        }
        Ok(CityView { index, assault, on_call_other })
    }

    pub fn city(&self) -> &City {
        self.index.city.as_ref().expect("built from a city")
    }

    /// Members with their tokens, signed with the server's secret.
    pub fn sim_members(&self, api: &Api, which: &[u32]) -> Vec<SimMember> {
        let city = self.city();
        which
            .iter()
            .map(|&i| {
                let id = city.members[i as usize].id.clone();
                SimMember { idx: i, token: api.token(Role::Member, Some(&id)), id, node: 0 }
            })
            .collect()
    }

    /// A frame the size and shape of the `mobilization.order` the first assault member gets.
    pub fn order_frame(&self) -> String {
        let city = self.city();
        let m = self.assault.first().copied().unwrap_or(0) as usize;
        let team = self.index.member_team[m].unwrap_or(0) as usize;
        let c = self.index.team_community.get(team).copied().unwrap_or(0) as usize;
        let com = &city.communities[c];
        let at = self.index.community_centers[c];
        json!({"type": "mobilization.order", "seq": 1, "data": {
            "mobilization_id": "mob-1",
            "team_id": city.teams[team].id,
            "report_to": {"community_id": com.id, "name": com.name, "location": at},
            "deadline": "2026-01-01T00:00:00.000Z",
            "note": "Delta surge (load harness)",
        }})
        .to_string()
    }

    /// Incidents to raise: one per community (the first `n`), in its first grid.
    pub fn incident_bodies(&self, n: usize, headcount: u32, level: &str) -> Vec<(String, Value)> {
        const CATEGORIES: &[&str] = &["nucleic_acid_testing", "material_delivery", "elderly_support", "patrol"];
        self.city()
            .communities
            .iter()
            .take(n)
            .enumerate()
            .map(|(i, c)| {
                let body = json!({
                    "grid_id": c.grids[0].id,
                    "category": CATEGORIES[i % CATEGORIES.len()],
                    "level": level,
                    "headcount": headcount,
                    "note": "load harness",
                });
                (c.id.clone(), body)
            })
            .collect()
    }
}

/// CPU seconds used between two readings, and the peak RSS at the second.
pub fn cpu_between(a: Option<ProcStats>, b: Option<ProcStats>) -> Option<f64> {
    Some(b?.cpu_s - a?.cpu_s)
}

/// The order → delivered → acknowledged → reported times of a fan-out, from the members'
/// records, relative to `t_cmd` (when the command left the coordinator), in ms.
#[derive(Debug, Clone, Default)]
pub struct OrderTimes {
    pub delivered: Vec<f64>,
    pub acked: Vec<f64>,
    pub reported: Vec<f64>,
    pub ack_rtt: Vec<f64>,
    pub report_rtt: Vec<f64>,
    /// Last ack confirmed minus last ack sent: how long the last acknowledgements took to
    /// become durable (muster) or answered (raw).
    pub last_ack_lag_ms: f64,
    pub errors: usize,
}

impl OrderTimes {
    pub fn of(results: &[crate::proto::MemberResult], mobilization_id: &str, t_cmd: u64) -> OrderTimes {
        use crate::clock::ms_between;
        let mut o = OrderTimes::default();
        let (mut last_sent, mut last_ok) = (0u64, 0u64);
        for r in results {
            for rec in r.orders.iter().filter(|x| x.mobilization_id == mobilization_id) {
                o.delivered.push(ms_between(t_cmd, rec.delivered));
                if let Some(ok) = rec.ack_ok {
                    o.acked.push(ms_between(t_cmd, ok));
                    last_ok = last_ok.max(ok);
                    if let Some(s) = rec.ack_sent {
                        o.ack_rtt.push(ms_between(s, ok));
                        last_sent = last_sent.max(s);
                    }
                }
                if let Some(ok) = rec.report_ok {
                    o.reported.push(ms_between(t_cmd, ok));
                    if let Some(s) = rec.report_sent {
                        o.report_rtt.push(ms_between(s, ok));
                    }
                }
                if rec.error.is_some() {
                    o.errors += 1;
                }
            }
        }
        o.last_ack_lag_ms = if last_ok > 0 { ms_between(last_sent, last_ok) } else { f64::NAN };
        o
    }

    pub fn max(v: &[f64]) -> f64 {
        v.iter().copied().fold(f64::NAN, f64::max)
    }

    pub fn all_delivered_ms(&self) -> f64 {
        Self::max(&self.delivered)
    }
    pub fn all_acked_ms(&self) -> f64 {
        Self::max(&self.acked)
    }
    pub fn all_reported_ms(&self) -> f64 {
        Self::max(&self.reported)
    }

    /// Websocket messages through the server per second: each order, ack, its ok, report
    /// and its ok, over the time until the last of them.
    pub fn messages_per_s(&self) -> f64 {
        let n = self.delivered.len() + 2 * self.acked.len() + 2 * self.reported.len();
        let end = self.all_reported_ms().max(self.all_acked_ms()).max(self.all_delivered_ms());
        if end > 0.0 { n as f64 / (end / 1000.0) } else { 0.0 }
    }
}
