//! The engine: the single writer.
//!
//! One OS thread owns the event log's writer and is the only code that changes `State`.
//! It takes commands from a bounded mailbox, decides a batch of them against the state
//! (`domain::dispatcher::execute`), appends all their events and frames in one durable
//! transaction (group commit), and only then answers each caller and publishes the frames.
//! Between commands it sleeps until the state's next deadline (offer expiry, escalation),
//! so deadlines are data that survive a restart, not timers that die with the process.
//!
//! If an append fails, the in-memory state may hold decisions that are not on disk: the
//! engine rebuilds the state from the log, answers the batch `Unavailable`, and goes on.
//! Until a write succeeds again (a disk that filled up, a file-size limit, a read-only
//! volume) the store counts as not writable: `is_ready` is false (GET /readyz answers 503),
//! commands are refused at once with `Unavailable` for `WRITE_RETRY`, then the next batch,
//! or an idle `EventLog::probe`, tries the store again. Reads never stop.
//!
//! With several nodes on Redis (`crate::cluster`) the same thread is the engine only while
//! its node holds the lease; otherwise it follows the log (`replica`).
//!
//! Readers (the HTTP gateway) take the `RwLock` for reading. The engine holds the write
//! lock from the first decision of a batch until its append returns, so no reader ever
//! sees a decision that is not yet durable; a reader that has to wait for it gives its
//! runtime worker to the other tasks meanwhile (`EngineHandle::read`).
//!
//! Here: the gateway's handle (`EngineHandle`) and `start`. `writer`: the engine thread's
//! loop on one node, and what it does with a batch. `replica`: the same thread with several
//! nodes (lead while holding the lease, else follow the log). The mailbox's contents are
//! `crate::mailbox`'s.

mod replica;
#[cfg(test)]
mod tests;
mod writer;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};
use std::time::Duration;

use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;

use self::writer::Writer;
use crate::cluster::{self, Node, Remote};
use crate::domain::dispatcher::{self, Actor, Command, Reply, State};
use crate::domain::event::Frame;
use crate::domain::response::Rules;
use crate::mailbox::Request;
pub use crate::mailbox::{EngineError, now_ms};
use crate::store::EventLog;

/// How long the engine refuses commands after a failed append before it tries the store
/// again. A failed append costs a full replay of the log, so it is not tried per request.
pub const WRITE_RETRY: Duration = Duration::from_secs(1);

/// Where committed frames go: the gateway's hub implements it.
pub trait Publisher: Send + Sync + 'static {
    /// Frames in commit order, each with its encoded wire text.
    fn publish(&self, frames: Vec<(Frame, String)>);
    /// Whether anyone here listens to `stream` (a follower encodes only those frames).
    fn wants(&self, _stream: &str) -> bool {
        true
    }
}

#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub mailbox: usize,
    pub batch_max: usize,
    pub position_flush: Duration,
    /// The engine thread's nice value while it follows another node's log (see
    /// `Priority`); 0 leaves it as it is.
    pub replica_nice: i32,
}

/// The gateway's handle: submit commands, read the state.
#[derive(Clone)]
pub struct EngineHandle {
    tx: SyncSender<Request>,
    state: Arc<RwLock<State>>,
    revoked: Revoked,
    ready: Arc<AtomicBool>,
    writable: Arc<AtomicBool>,
    pub rules: Arc<Rules>,
    /// With several nodes: the way to the engine when another node is the engine.
    remote: Option<Arc<Remote>>,
}

impl EngineHandle {
    /// Submits a command and waits until its events are durable (or it was refused).
    pub async fn submit(&self, actor: Actor, cmd: Command) -> Result<Reply, EngineError> {
        if !self.is_started() {
            return Err(EngineError::NotReady);
        }
        if let Some(remote) = &self.remote
            && !remote.is_leading()
        {
            // Not writable here: Redis does not take durable writes, or no node is the engine.
            if !self.writable.load(Ordering::Acquire) {
                return Err(EngineError::Unavailable("no engine can take writes now; retry shortly".into()));
            }
            return remote.submit(actor, cmd).await;
        }
        let (reply, rx) = oneshot::channel();
        match self.tx.try_send(Request { actor, cmd, reply, logged_at: None }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(EngineError::Overloaded),
            Err(TrySendError::Disconnected(_)) => return Err(EngineError::NotReady),
        }
        rx.await.unwrap_or(Err(EngineError::NotReady))
    }

    /// Was a token of this subject, issued at `iat` (seconds), revoked? Every request and
    /// every session's ping asks, so this reads the engine's last durable copy of the
    /// revocations, not the state (whose lock the engine holds through each append).
    pub fn is_revoked(&self, subject: &str, iat: u64) -> bool {
        let revoked = self.revoked.lock().unwrap_or_else(|p| p.into_inner()).clone();
        dispatcher::is_revoked(&revoked, subject, iat)
    }

    /// Has this session family ended (signed out, revoked, reused)? Read like `is_revoked`.
    pub fn is_family_revoked(&self, family: &str) -> bool {
        let revoked = self.revoked.lock().unwrap_or_else(|p| p.into_inner()).clone();
        crate::domain::access::family_revoked(&revoked, family)
    }

    /// A read view of the committed state. Hold it briefly: the engine waits for it.
    ///
    /// The engine holds the write lock through each batch's append (tens of ms on Redis
    /// under a surge, batch after batch). A request that waits for it on a runtime worker
    /// would stall every session on that worker: in a 3-node surge the engine node's own
    /// members got their orders seconds after the followers' while API calls waited here.
    /// So a read that has to wait hands the worker's other tasks to another thread first
    /// (`block_in_place`). Token checks do not come here at all (`is_revoked`).
    pub fn read(&self) -> RwLockReadGuard<'_, State> {
        match self.state.try_read() {
            Ok(guard) => return guard,
            Err(std::sync::TryLockError::Poisoned(p)) => return p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => {}
        }
        let wait = || self.state.read().unwrap_or_else(|p| p.into_inner());
        match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(wait)
            }
            _ => wait(),
        }
    }

    /// True once the log has been replayed and while the store takes writes.
    pub fn is_ready(&self) -> bool {
        self.is_started() && self.writable.load(Ordering::Acquire)
    }

    /// With several nodes: whether this node is the engine now (always true on one node).
    pub fn is_leader(&self) -> bool {
        self.remote.as_ref().is_none_or(|r| r.is_leading())
    }

    /// True once the log has been replayed (reads work), whether or not the store takes
    /// writes now.
    pub fn is_started(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }
}

/// Starts the engine thread. It replays the log first and reports ready when done. With a
/// cluster `Node` it also starts the routes between nodes and takes turns at the lease.
pub fn start(
    log: Box<dyn EventLog>,
    rules: Rules,
    publisher: Arc<dyn Publisher>,
    cfg: EngineConfig,
    cancel: CancellationToken,
    node: Option<Node>,
) -> (EngineHandle, std::thread::JoinHandle<()>) {
    let (tx, rx) = std::sync::mpsc::sync_channel(cfg.mailbox);
    let state = Arc::new(RwLock::new(State::default()));
    let ready = Arc::new(AtomicBool::new(false));
    // With several nodes, writable waits until Redis is checked and an engine is known.
    let writable = Arc::new(AtomicBool::new(node.is_none()));
    let rules = Arc::new(rules);
    let (applied, applied_rx) = watch::channel(0u64);
    let remote = node.as_ref().map(|n| Arc::new(cluster::start_routes(n, tx.clone(), applied_rx, cancel.clone())));
    let revoked = Revoked::default();
    let handle = EngineHandle {
        tx,
        state: state.clone(),
        revoked: revoked.clone(),
        ready: ready.clone(),
        writable: writable.clone(),
        rules: rules.clone(),
        remote,
    };
    let mut writer = Writer {
        log,
        rules,
        publisher,
        cfg,
        state,
        revoked,
        ready,
        writable,
        write_retry_at: None,
        dirty_positions: HashSet::new(),
        node,
        applied,
        fenced: false,
        stale: false,
    };
    let thread = std::thread::Builder::new()
        .name("muster-engine".into())
        .spawn(move || writer.run(rx, cancel))
        .expect("spawn the engine thread");
    (handle, thread)
}

/// The revocations as of the last durable batch, shared with the gateway.
type Revoked = Arc<Mutex<Arc<HashMap<String, u64>>>>;

/// Hands the gateway the state's revocations if they changed (a pointer swap).
fn share_revoked(shared: &Revoked, state: &State) {
    let mut r = shared.lock().unwrap_or_else(|p| p.into_inner());
    if !Arc::ptr_eq(&r, &state.revoked) {
        *r = state.revoked.clone();
    }
}
