//! What the coordinator and its workers say to each other. A worker process reads one
//! `WorkerSpec` line on stdin, then `Cmd` lines; it writes `Out` lines on stdout. An
//! in-process worker gets the same values over channels.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

use crate::dist::Delay;

/// One simulated member: its index in the city, the token it connects with, and the node
/// (an index into `WorkerSpec::nodes`) it connects to.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SimMember {
    pub idx: u32,
    pub id: String,
    pub token: String,
    /// 0 on a single node.
    #[serde(default)]
    pub node: u16,
}

/// Everything a worker needs to run its members.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerSpec {
    pub worker: usize,
    /// The server: muster, or the raw fan-out server (same client protocol, no logic).
    /// With several nodes, node 0.
    pub addr: SocketAddr,
    /// Every node's address, node 0 first (empty or one entry: a single node at `addr`).
    #[serde(default)]
    pub nodes: Vec<SocketAddr>,
    /// Source addresses in 127.0.0.0/8; member i connects from `sources[i % len]`.
    pub sources: Vec<IpAddr>,
    pub members: Vec<SimMember>,
    pub answer_delay: Delay,
    /// Share of offers declined (0..=1).
    pub decline_rate: f64,
    /// Send `mobilization.report` after the ack is confirmed.
    pub report: bool,
    pub seed: u64,
    /// Connection attempts in flight at once in this worker (first connect).
    pub connect_concurrency: usize,
    /// Reconnects in flight at once (a storm: all of them).
    pub reconnect_concurrency: usize,
    /// Each member waits a random 0..jitter before reconnecting.
    pub reconnect_jitter_ms: u64,
    pub connect_timeout_ms: u64,
    /// Attempts per connect before the member gives up.
    pub connect_attempts: u32,
    pub progress_ms: u64,
    /// The worker ends itself after this long, whatever happens.
    pub lifetime_s: u64,
}

impl WorkerSpec {
    /// The address a member of `node` connects to (`addr` for a node not listed).
    pub fn node_addr(&self, node: u16) -> SocketAddr {
        self.nodes.get(usize::from(node)).copied().unwrap_or(self.addr)
    }

    /// Every server address the spec names.
    pub fn all_addrs(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        std::iter::once(self.addr).chain(self.nodes.iter().copied())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cmd {
    /// Connect every member (fresh: no after_seq).
    Connect,
    /// Drop every connection (as a network loss would).
    Drop,
    /// Reconnect every member with after_seq = the last seq it saw.
    Reconnect,
    /// Close, send the results, exit.
    Finish,
}

/// Counts a worker reports while it runs; the coordinator sums them over workers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    pub connected: u64,
    pub connect_failed: u64,
    pub hellos: u64,
    pub orders: u64,
    pub acked: u64,
    pub reported: u64,
    pub offers: u64,
    pub accepted: u64,
    pub declined: u64,
    pub answer_errors: u64,
    pub resumed: u64,
    pub closed_by_server: u64,
}

impl Counters {
    pub fn add(&mut self, o: &Counters) {
        self.connected += o.connected;
        self.connect_failed += o.connect_failed;
        self.hellos += o.hellos;
        self.orders += o.orders;
        self.acked += o.acked;
        self.reported += o.reported;
        self.offers += o.offers;
        self.accepted += o.accepted;
        self.declined += o.declined;
        self.answer_errors += o.answer_errors;
        self.resumed += o.resumed;
        self.closed_by_server += o.closed_by_server;
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "ev", rename_all = "snake_case")]
pub enum Out {
    Progress { worker: usize, counters: Counters },
    Results { worker: usize, members: Vec<MemberResult> },
    Done { worker: usize },
    Failed { worker: usize, message: String },
}

/// One `mobilization.order` as a member lived it. Times: `clock::now_us`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct OrderRec {
    pub mobilization_id: String,
    pub seq: u64,
    pub delivered: u64,
    pub ack_sent: Option<u64>,
    pub ack_ok: Option<u64>,
    pub report_sent: Option<u64>,
    pub report_ok: Option<u64>,
    pub error: Option<String>,
}

/// One offer as a member lived it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct OfferRec {
    pub offer_id: String,
    pub incident_id: String,
    pub seq: u64,
    pub delivered: u64,
    /// Came in a replay (after a reconnect), not live.
    pub replayed: bool,
    pub accept: bool,
    pub answer_sent: Option<u64>,
    pub answer_ok: Option<u64>,
    pub error: Option<String>,
    pub revoked: Option<String>,
    pub assigned: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MemberResult {
    pub idx: u32,
    pub connect_started: Option<u64>,
    pub hello_at: Option<u64>,
    pub connect_attempts: u32,
    pub connect_error: Option<String>,
    pub frames: u32,
    pub gaps: u32,
    pub duplicates: u32,
    pub last_seq: u64,
    pub orders: Vec<OrderRec>,
    pub offers: Vec<OfferRec>,
    /// Error codes the server answered (by code).
    pub errors: BTreeMap<String, u32>,
    /// Close codes the server sent.
    pub closes: Vec<u16>,
    pub dropped_at: Option<u64>,
    pub reconnect_started: Option<u64>,
    pub rehello_at: Option<u64>,
    /// The stream's last seq when the member reconnected (hello.last_seq).
    pub resume_target: Option<u64>,
    pub resumed_at: Option<u64>,
}
