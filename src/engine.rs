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
//! its node holds the lease; otherwise it follows the log (`run_cluster`).
//!
//! Readers (the HTTP gateway) take the `RwLock` for reading. The engine holds the write
//! lock from the first decision of a batch until its append returns, so no reader ever
//! sees a decision that is not yet durable; a reader that has to wait for it gives its
//! runtime worker to the other tasks meanwhile (`EngineHandle::read`).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::cluster::{self, Lease, Node, Remote, Renewal};
use crate::domain::dispatcher::{self, Actor, Command, FrameFilter, Reply, State};
use crate::domain::event::{Event, Frame, FrameEncoder};
use crate::domain::response::Rules;
use crate::domain::snapshot;
use crate::mailbox::Request;
pub use crate::mailbox::{EngineError, now_ms};
use crate::store::{EventLog, StoreError};

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

/// The engine thread's side: the single writer, which owns the log's writer and is the only
/// code that changes the state (`settings::Engine` is the `[engine]` section it is built from).
struct Writer {
    log: Box<dyn EventLog>,
    rules: Arc<Rules>,
    publisher: Arc<dyn Publisher>,
    cfg: EngineConfig,
    revoked: Revoked,
    state: Arc<RwLock<State>>,
    ready: Arc<AtomicBool>,
    writable: Arc<AtomicBool>,
    /// Set after a failed append: until then commands are refused without being tried.
    write_retry_at: Option<Instant>,
    dirty_positions: HashSet<u32>,
    /// With several nodes: the lease and the tail of the log.
    node: Option<Node>,
    /// The last seq in the state, for nodes that wait to read their own writes.
    applied: watch::Sender<u64>,
    /// An append found the lease taken by another node.
    fenced: bool,
    /// The state could not be rebuilt after a failed append: rebuild before anything else.
    stale: bool,
}

impl Writer {
    fn run(&mut self, rx: Receiver<Request>, cancel: CancellationToken) {
        loop {
            match self.recover() {
                Ok(()) => break,
                Err(e) => {
                    tracing::error!(error = %e, "replaying the log failed; retrying in 1 s");
                    if cancel.is_cancelled() {
                        return;
                    }
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        }
        self.ready.store(true, Ordering::Release);
        tracing::info!(last_seq = self.read_state().last_seq, "engine ready");
        if let Some(node) = self.node.take() {
            self.run_cluster(node, rx, cancel);
        } else {
            self.run_single(rx, cancel);
        }
        self.ready.store(false, Ordering::Release);
        tracing::info!("engine stopped");
    }

    /// One node: this thread is always the engine.
    fn run_single(&mut self, rx: Receiver<Request>, cancel: CancellationToken) {
        let mut last_flush = Instant::now();
        let mut batch = Vec::with_capacity(self.cfg.batch_max);
        while !cancel.is_cancelled() {
            let wait = self.wait_time();
            if !self.collect(&rx, wait, &mut batch) {
                break;
            }
            if self.stale && !self.try_recover() {
                for req in batch.drain(..) {
                    let _ = req.reply.send(Err(EngineError::Unavailable("the store is not readable".into())));
                }
                continue;
            }
            self.step(std::mem::take(&mut batch));
            if last_flush.elapsed() >= self.cfg.position_flush {
                self.flush_positions();
                last_flush = Instant::now();
            }
        }
        self.flush_positions();
    }

    /// Waits up to `wait` for a command, then takes what else is queued, up to a batch
    /// (group commit). False when every sender is gone.
    fn collect(&self, rx: &Receiver<Request>, wait: Duration, batch: &mut Vec<Request>) -> bool {
        match rx.recv_timeout(wait) {
            Ok(req) => batch.push(req),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return false,
        }
        while batch.len() < self.cfg.batch_max {
            match rx.try_recv() {
                Ok(req) => batch.push(req),
                Err(_) => break,
            }
        }
        true
    }

    /// Several nodes: the engine while this node holds the lease, else a replica that
    /// follows the log and tries for the lease whenever nobody holds it.
    fn run_cluster(&mut self, mut node: Node, rx: Receiver<Request>, cancel: CancellationToken) {
        let quarter = node.lease / 4;
        let mut renewal = Renewal { last_ok: Instant::now(), next: Instant::now() };
        let mut next_lead_try = Instant::now();
        let mut next_check = Instant::now();
        let mut last_flush = Instant::now();
        let mut batch = Vec::with_capacity(self.cfg.batch_max);
        // While following: Redis takes durable writes; who holds the lease.
        let mut store_ok = false;
        let mut holder: Option<String> = None;
        let mut priority = Priority::new(self.cfg.replica_nice);
        while !cancel.is_cancelled() {
            metrics::gauge!("muster_engine_leader").set(if node.is_leading() { 1.0 } else { 0.0 });
            priority.following(!node.is_leading());
            if self.stale && !self.try_recover() {
                std::thread::sleep(Duration::from_millis(250));
                continue;
            }
            if !node.is_leading() {
                // Commands that reached this mailbox while the node was the engine.
                while let Ok(req) = rx.try_recv() {
                    let _ =
                        req.reply.send(Err(EngineError::Unavailable("this node is not the engine now; retry".into())));
                }
                if Instant::now() >= next_check {
                    next_check = Instant::now() + Duration::from_secs(1);
                    match node.check_store() {
                        Err(e) if store_ok => {
                            tracing::error!(error = %e, "redis cannot take writes we may confirm; not ready")
                        }
                        Err(_) => {}
                        Ok(()) => store_ok = true,
                    }
                }
                let after = self.read_state().last_seq;
                match node.tail(after, Duration::from_millis(100)) {
                    Ok(events) => {
                        if !self.follow(events) {
                            self.stale = true;
                            continue;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "following the log failed; retrying");
                        (store_ok, holder) = (false, None);
                        self.writable.store(false, Ordering::Release);
                        std::thread::sleep(Duration::from_millis(200));
                        continue;
                    }
                }
                if store_ok && Instant::now() >= next_lead_try {
                    next_lead_try = Instant::now() + cluster::LEAD_RETRY;
                    match node.try_lead() {
                        Ok(Lease::Took(token)) => {
                            // Commands this node sent to the engine before are not answered.
                            node.fail_pending();
                            holder = Some(token);
                            match self.take_over(&node) {
                                Ok(()) => {
                                    let now = Instant::now();
                                    renewal = Renewal { last_ok: now, next: now + quarter };
                                    last_flush = now;
                                }
                                Err(e) => {
                                    tracing::error!(error = %e, "taking over failed; letting the lease go");
                                    node.resign(true);
                                    self.stale = true;
                                }
                            }
                            continue;
                        }
                        Ok(Lease::HeldBy(token)) => {
                            if holder.as_ref().is_some_and(|h| *h != token) {
                                node.fail_pending();
                            }
                            holder = Some(token);
                        }
                        Err(e) => {
                            tracing::debug!(error = %e, "trying for the engine lease failed");
                            (store_ok, holder) = (false, None);
                        }
                    }
                }
                // Members' positions reach only the engine, which saves them every
                // `position_flush`: take what changed from there as often.
                if last_flush.elapsed() >= self.cfg.position_flush {
                    last_flush = Instant::now();
                    match self.log.positions_changed() {
                        Ok(positions) if positions.is_empty() => {}
                        Ok(positions) => {
                            lay_positions(&mut self.state.write().unwrap_or_else(|p| p.into_inner()), positions)
                        }
                        Err(e) => tracing::debug!(error = %e, "reading the engine's positions failed"),
                    }
                }
                // Ready: Redis takes durable writes and some node is the engine.
                self.writable.store(store_ok && holder.is_some(), Ordering::Release);
                continue;
            }

            let wait = self.wait_time().min(renewal.next.saturating_duration_since(Instant::now()));
            if !self.collect(&rx, wait, &mut batch) {
                break;
            }
            self.step(std::mem::take(&mut batch));
            if std::mem::take(&mut self.fenced) {
                tracing::warn!("another node took the engine lease; following the log");
                node.resign(false);
                continue;
            }
            let now = Instant::now();
            if now >= renewal.next {
                renewal.next = now + quarter;
                match node.renew() {
                    Ok(true) => renewal.last_ok = now,
                    Ok(false) => {
                        tracing::warn!("the engine lease was lost; following the log");
                        node.resign(false);
                    }
                    Err(e) if renewal.last_ok.elapsed() + quarter >= node.lease => {
                        tracing::error!(error = %e, "cannot renew the engine lease before it lapses; standing down");
                        node.resign(false);
                    }
                    Err(e) => tracing::warn!(error = %e, "renewing the engine lease failed; retrying"),
                }
            }
            if node.is_leading() && last_flush.elapsed() >= self.cfg.position_flush {
                self.flush_positions();
                last_flush = Instant::now();
            }
        }
        if node.is_leading() {
            self.flush_positions();
            node.resign(true);
        }
    }

    /// Applies events another node's engine logged, and pushes their frames to this node's
    /// sockets. False on a gap in the seqs (the state must be rebuilt).
    fn follow(&mut self, events: Vec<Event>) -> bool {
        if events.is_empty() {
            return true;
        }
        let started = Instant::now();
        // Two syscalls per batch: only when the `followed` line below is logged.
        let timed = tracing::enabled!(tracing::Level::DEBUG);
        let cpu0 = if timed { thread_cpu_us() } else { 0 };
        let mut frames = Vec::new();
        let publisher = self.publisher.clone();
        let last = {
            let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
            // Build only the frames this node's sockets listen to (the engine builds all).
            state.frame_filter = FrameFilter::only(move |s| publisher.wants(s));
            let applied = dispatcher::apply_in_order(&mut state, &events, &mut frames);
            state.frame_filter = FrameFilter::default();
            if let Err(gap) = applied {
                tracing::error!(error = %gap, "rebuilding");
                return false;
            }
            share_revoked(&self.revoked, &state);
            state.last_seq
        };
        self.applied.send_replace(last);
        let applied_us = started.elapsed().as_micros() as u64;
        // Encode only what this node's sockets listen to: a mobilization derives a frame per
        // member, and most of them are connected to other nodes.
        let mut encoder = FrameEncoder::default();
        let encoded: Vec<(Frame, String)> = frames
            .into_iter()
            .filter(|f| self.publisher.wants(&f.stream))
            .map(|f| {
                let text = encoder.encode(&f);
                (f, text)
            })
            .collect();
        let pushed = encoded.len();
        if !encoded.is_empty() {
            self.publisher.publish(encoded);
        }
        tracing::debug!(
            events = events.len(),
            last,
            frames = pushed,
            applied_us,
            took_us = started.elapsed().as_micros() as u64,
            cpu_us = if timed { thread_cpu_us() - cpu0 } else { 0 },
            "followed"
        );
        true
    }

    /// This node holds the lease now: read the log to its end (the engine before is fenced,
    /// so the end is final), restore positions and retries, then take commands.
    fn take_over(&mut self, node: &Node) -> Result<(), StoreError> {
        loop {
            let after = self.read_state().last_seq;
            let events = self.log_after(after)?;
            if events.is_empty() {
                break;
            }
            if !self.follow(events) {
                return Err(StoreError::Corrupt(after + 1, "a gap in the log".into()));
            }
        }
        let positions = self.log.load_positions()?;
        {
            let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
            lay_positions(&mut state, positions);
            state.schedule_retries(now_ms());
        }
        self.dirty_positions.clear();
        self.write_retry_at = None;
        self.writable.store(true, Ordering::Release);
        node.leading.store(true, Ordering::Release);
        tracing::warn!(last_seq = self.read_state().last_seq, "this node is the engine now");
        metrics::counter!("muster_engine_takeovers_total").increment(1);
        Ok(())
    }

    /// Log events after `after` (no waiting), through the engine's own log connection.
    fn log_after(&mut self, after: u64) -> Result<Vec<Event>, StoreError> {
        let mut out = Vec::new();
        self.log.replay_after(after, &mut |e| out.push(e))?;
        Ok(out)
    }

    /// Rebuilds a stale state; true when it worked.
    fn try_recover(&mut self) -> bool {
        match self.recover() {
            Ok(()) => {
                self.stale = false;
                self.ready.store(true, Ordering::Release);
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "rebuilding the state failed; retrying");
                false
            }
        }
    }

    fn read_state(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    /// How long to sleep: until the next deadline, at most 200 ms (to notice shutdown).
    /// While the store is not writable, deadlines wait too (no busy loop on a due one).
    fn wait_time(&self) -> Duration {
        let cap = Duration::from_millis(200);
        if let Some(at) = self.write_retry_at {
            return at.saturating_duration_since(Instant::now()).min(cap);
        }
        match self.read_state().next_deadline() {
            Some(at) => Duration::from_millis((at - now_ms()).clamp(0, cap.as_millis() as i64) as u64),
            None => cap,
        }
    }

    /// Rebuilds the state from the log (start-up, or after a failed append).
    fn recover(&mut self) -> Result<(), StoreError> {
        let fresh = self.rebuild()?;
        let last = fresh.last_seq;
        share_revoked(&self.revoked, &fresh);
        *self.state.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        self.applied.send_replace(last);
        Ok(())
    }

    /// The state as the log has it: the latest snapshot, then the events after it, with the
    /// saved positions and retries re-armed.
    fn rebuild(&mut self) -> Result<State, StoreError> {
        let started = Instant::now();
        let mut fresh = match self.log.load_snapshot()? {
            Some((seq, body)) => match snapshot::decode(&body) {
                Ok(state) => state,
                Err(e) => {
                    // Replaying the whole log instead works while the log is whole (SQLite;
                    // Redis until its first trim); otherwise the gap below stops us.
                    tracing::error!(seq, error = %e, "the snapshot cannot be read; replaying the log from the start");
                    State::default()
                }
            },
            None => State::default(),
        };
        let from = fresh.last_seq;
        let mut applied = Ok(());
        let mut frames = Vec::new();
        self.log.replay_after(from, &mut |e: Event| {
            if applied.is_ok() {
                applied = dispatcher::apply_in_order(&mut fresh, [&e], &mut frames);
                frames.clear();
            }
        })?;
        if let Err(gap) = applied {
            return Err(StoreError::Corrupt(gap.expected, format!("{gap}: no snapshot covers the events before")));
        }
        let n = fresh.last_seq - from;
        lay_positions(&mut fresh, self.log.load_positions()?);
        fresh.schedule_retries(now_ms());
        self.dirty_positions.clear();
        tracing::info!(
            snapshot = from,
            events = n,
            ms = started.elapsed().as_millis() as u64,
            "state rebuilt from the log"
        );
        Ok(fresh)
    }

    #[tracing::instrument(level = "debug", skip_all, fields(batch = batch.len()))]
    fn step(&mut self, batch: Vec<Request>) {
        if let Some(at) = self.write_retry_at {
            if Instant::now() < at {
                for req in batch {
                    let _ = req.reply.send(Err(EngineError::Unavailable("the store is not writable".into())));
                }
                return;
            }
            if batch.is_empty() {
                // Idle: see whether the store takes writes again.
                match self.log.probe() {
                    Ok(()) => self.store_writable(),
                    Err(e) => self.store_failed(&e),
                }
                return;
            }
        }
        let now = now_ms();
        let began = Instant::now();
        let mut events = Vec::new();
        let mut frames = Vec::new();
        let mut replies = Vec::with_capacity(batch.len());
        // Held until the append's outcome is in the state: on failure the state is rebuilt
        // from the log under the same lock, so no reader sees a decision that is not durable.
        let shared = self.state.clone();
        let mut state = shared.write().unwrap_or_else(|p| p.into_inner());

        // The engine's own commands: deadlines due before the batch, progress after it.
        let system = |state: &mut State, cmd: Command, events: &mut Vec<_>, frames: &mut Vec<_>| {
            let name = cmd.name();
            match dispatcher::execute(state, &self.rules, &Actor::System, cmd, now) {
                Ok(out) => {
                    events.extend(out.events);
                    frames.extend(out.frames);
                }
                Err(e) => tracing::error!(error = %e, command = name, "the engine's own command was refused"),
            }
        };
        if state.next_deadline().is_some_and(|at| at <= now) {
            system(&mut state, Command::Tick, &mut events, &mut frames);
        }
        for req in batch {
            let name = req.cmd.name();
            let location_of = match (&req.cmd, &req.actor) {
                (Command::Location { .. }, Actor::Member { member }) => state.member_index(member),
                _ => None,
            };
            match dispatcher::execute(&mut state, &self.rules, &req.actor, req.cmd, now) {
                Ok(out) => {
                    metrics::counter!("muster_commands_total", "command" => name, "outcome" => "ok").increment(1);
                    events.extend(out.events);
                    frames.extend(out.frames);
                    if let Some(idx) = location_of {
                        self.dirty_positions.insert(idx);
                    }
                    replies.push((req.reply, out.reply.unwrap_or(Reply::Done), req.logged_at));
                }
                Err(e) => {
                    metrics::counter!("muster_commands_total", "command" => name, "outcome" => e.code).increment(1);
                    let _ = req.reply.send(Err(EngineError::Domain(e)));
                }
            }
        }
        // One progress frame per stream for the whole batch's acknowledgements and reports.
        if !state.untallied.is_empty() {
            system(&mut state, Command::Tally, &mut events, &mut frames);
        }
        if events.is_empty() {
            drop(state);
            for (reply, r, _) in replies {
                let _ = reply.send(Ok(r));
            }
            return;
        }

        // Frames that share their data (an order to a team's members) encode it once.
        let mut encoder = FrameEncoder::default();
        let encoded: Vec<(Frame, String)> = frames
            .into_iter()
            .map(|f| {
                let text = encoder.encode(&f);
                (f, text)
            })
            .collect();
        let started = Instant::now();
        let appended = self.log.append(&events, &encoded);
        metrics::histogram!("muster_append_seconds").record(started.elapsed().as_secs_f64());
        if let Err(e) = &appended {
            tracing::error!(error = %e, events = events.len(), "append failed; rebuilding state from the log");
            self.store_failed(e);
            if cluster::is_fenced(e) {
                self.fenced = true;
            }
            match self.rebuild() {
                Ok(fresh) => *state = fresh,
                Err(e) => {
                    tracing::error!(error = %e, "rebuilding state failed; not ready");
                    self.ready.store(false, Ordering::Release);
                    self.stale = true;
                }
            }
        }
        // Durable now, or rebuilt from what is.
        share_revoked(&self.revoked, &state);
        drop(state);
        match appended {
            Ok(()) => {
                if self.write_retry_at.is_some() {
                    self.store_writable();
                }
                self.applied.send_replace(events.last().map_or(0, |e| e.seq));
                metrics::counter!("muster_events_total").increment(events.len() as u64);
                metrics::histogram!("muster_batch_events").record(events.len() as f64);
                let frames = encoded.len();
                let published = Instant::now();
                self.publisher.publish(encoded);
                tracing::debug!(
                    events = events.len(),
                    frames,
                    decide_us = (started - began).as_micros() as u64,
                    append_us = (published - started).as_micros() as u64,
                    publish_us = published.elapsed().as_micros() as u64,
                    "stepped"
                );
                let last = events.last().map_or(0, |e| e.seq);
                for (reply, r, logged_at) in replies {
                    if let Some(at) = logged_at {
                        at.store(last, Ordering::Release);
                    }
                    let _ = reply.send(Ok(r));
                }
            }
            Err(e) => {
                metrics::counter!("muster_append_failures_total").increment(1);
                for (reply, _, _) in replies {
                    let _ = reply.send(Err(EngineError::Unavailable(e.to_string())));
                }
            }
        }
    }

    /// The store refused a write: not ready, and commands are refused until `WRITE_RETRY`.
    fn store_failed(&mut self, e: &StoreError) {
        if self.write_retry_at.is_none() {
            tracing::error!(error = %e, "the store does not take writes; refusing commands until it does");
        }
        self.writable.store(false, Ordering::Release);
        self.write_retry_at = Some(Instant::now() + WRITE_RETRY);
    }

    fn store_writable(&mut self) {
        tracing::warn!("the store takes writes again");
        self.write_retry_at = None;
        self.writable.store(true, Ordering::Release);
    }

    fn flush_positions(&mut self) {
        if self.dirty_positions.is_empty() {
            return;
        }
        let positions: Vec<_> = {
            let state = self.read_state();
            self.dirty_positions
                .iter()
                .map(|&i| (state.city.members()[i as usize].id.clone(), state.roster.members[i as usize].position))
                .collect()
        };
        match self.log.save_positions(&positions) {
            Ok(()) => self.dirty_positions.clear(),
            Err(e) => tracing::warn!(error = %e, "saving positions failed; will retry"),
        }
    }
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

/// The engine thread's scheduling priority on a node that is not the engine. A replica
/// applies each event before its node pushes the event's frames, so on a busy machine a
/// starved replica delays every one of its members: in a 3-node surge the followers spent
/// 55-100 ms of CPU applying a 50,000-member order but took up to 600 ms to do it, behind
/// the engine node's fan-out and the clients (docs/PERFORMANCE.md). A lower nice value
/// puts the apply ahead of this machine's socket work. While the thread is the engine it
/// runs at its normal priority: there a higher one only shrank the batches.
///
/// Lowering a nice value needs CAP_SYS_NICE (or an RLIMIT_NICE that allows it); without
/// it the thread stays as it is and says so once.
struct Priority {
    nice: i32,
    /// The thread's nice value when it started, restored while it leads.
    base: i32,
    raised: bool,
    refused: bool,
}

impl Priority {
    /// On the thread whose priority it sets.
    fn new(nice: i32) -> Priority {
        Priority { nice, base: thread_nice(), raised: false, refused: false }
    }

    fn following(&mut self, following: bool) {
        if self.nice == 0 || self.refused || following == self.raised {
            return;
        }
        let nice = if following { self.nice } else { self.base };
        // SAFETY: setpriority on this thread's own id changes only its scheduling.
        let r = unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, nice) };
        if r == 0 {
            self.raised = following;
        } else {
            self.refused = true;
            tracing::info!(
                nice,
                error = %std::io::Error::last_os_error(),
                "the engine thread keeps its priority while following (engine.replica_nice needs CAP_SYS_NICE)"
            );
        }
    }
}

fn thread_nice() -> i32 {
    // SAFETY: getpriority of this thread's own id only reads it.
    unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) }
}

fn thread_cpu_us() -> u64 {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid pointer to a timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    t.tv_sec as u64 * 1_000_000 + t.tv_nsec as u64 / 1000
}

/// Moves members to their stored last known positions.
fn lay_positions(state: &mut State, positions: Vec<(String, crate::domain::geo::Position)>) {
    for (id, p) in positions {
        if let Some(idx) = state.member_index(&id)
            && state.roster.members[idx as usize].position != p
        {
            state.roster.move_to(idx, p);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::AtomicUsize;

    use super::*;
    use crate::domain::geo::Position;

    /// A log that refuses every write while `full` is set (a full disk), and counts appends.
    #[derive(Clone, Default)]
    struct Disk {
        full: Arc<AtomicBool>,
        appends: Arc<AtomicUsize>,
        events: Arc<Mutex<Vec<Event>>>,
    }

    impl EventLog for Disk {
        fn replay(&mut self, apply: &mut dyn FnMut(Event)) -> Result<(), StoreError> {
            self.events.lock().unwrap().iter().cloned().for_each(apply);
            Ok(())
        }
        fn append(&mut self, events: &[Event], _: &[(Frame, String)]) -> Result<(), StoreError> {
            self.appends.fetch_add(1, Ordering::SeqCst);
            self.probe()?;
            self.events.lock().unwrap().extend_from_slice(events);
            Ok(())
        }
        fn load_snapshot(&mut self) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
            Ok(None)
        }
        fn save_positions(&mut self, _: &[(String, Position)]) -> Result<(), StoreError> {
            self.probe()
        }
        fn load_positions(&mut self) -> Result<Vec<(String, Position)>, StoreError> {
            Ok(Vec::new())
        }
        fn probe(&mut self) -> Result<(), StoreError> {
            if self.full.load(Ordering::SeqCst) {
                return Err(StoreError::Io(std::io::Error::other("no space left on device")));
            }
            Ok(())
        }
    }

    struct Nobody;
    impl Publisher for Nobody {
        fn publish(&self, _: Vec<(Frame, String)>) {}
    }

    /// The replica's priority goes to `replica_nice` while following and back to where it
    /// was when the thread leads; where the process may not lower it, it stays put.
    #[test]
    fn a_replica_runs_at_its_nice_value_and_the_engine_at_the_normal_one() {
        std::thread::spawn(|| {
            let base = thread_nice();
            // Higher than now, and not 0 (which means "leave it").
            let target = if base == 3 { base - 4 } else { base - 3 };
            let mut p = Priority::new(target);
            p.following(true);
            let raised = if p.refused { base } else { target };
            assert_eq!(thread_nice(), raised, "following");
            p.following(true);
            assert_eq!(thread_nice(), raised, "still following");
            p.following(false);
            assert_eq!(thread_nice(), base, "leading");
            p.following(true);
            assert_eq!(thread_nice(), raised, "following again");
            let mut off = Priority::new(0);
            off.following(false);
            assert_eq!(thread_nice(), raised, "0 leaves it alone");
        })
        .join()
        .expect("the checks pass");
    }

    /// While the engine holds the state (an append in flight), a request waiting to read it
    /// must not stall the other tasks of its runtime worker (the sessions pushing frames).
    /// One worker: the other task runs only if the waiting read handed the worker over.
    #[test]
    fn a_read_waiting_for_the_engine_leaves_its_worker_to_the_other_tasks() {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let rules = crate::settings::Settings::load_with_env(None, Vec::new()).unwrap().dispatch;
        let cfg = EngineConfig { mailbox: 16, batch_max: 16, position_flush: Duration::from_secs(60), replica_nice: 0 };
        let cancel = CancellationToken::new();
        let (engine, thread) = {
            let _in_rt = rt.enter();
            start(Box::new(Disk::default()), rules, Arc::new(Nobody), cfg, cancel.clone(), None)
        };
        // "The engine": holds the write lock until the other task has run, or 10 s.
        let (held_tx, held_rx) = std::sync::mpsc::channel();
        let (ran_tx, ran_rx) = std::sync::mpsc::channel::<()>();
        let state = engine.state.clone();
        let holder = std::thread::spawn(move || {
            let guard = state.write().unwrap();
            held_tx.send(()).unwrap();
            let ran = ran_rx.recv_timeout(Duration::from_secs(10)).is_ok();
            drop(guard);
            ran
        });
        held_rx.recv().unwrap();
        let (reading_tx, reading_rx) = std::sync::mpsc::channel();
        let reader = engine.clone();
        let read = rt.spawn(async move {
            reading_tx.send(()).unwrap();
            reader.read().last_seq
        });
        reading_rx.recv().unwrap();
        let other = rt.spawn(async move { ran_tx.send(()).unwrap() });
        assert!(holder.join().unwrap(), "the other task ran while the read waited");
        rt.block_on(async {
            other.await.unwrap();
            read.await.unwrap();
        });
        cancel.cancel();
        thread.join().unwrap();
    }

    #[tokio::test]
    async fn a_store_that_cannot_write_makes_the_engine_unready_until_it_can() {
        let disk = Disk::default();
        let rules = crate::settings::Settings::load_with_env(None, Vec::new()).unwrap().dispatch;
        let cfg = EngineConfig { mailbox: 16, batch_max: 16, position_flush: Duration::from_secs(60), replica_nice: 0 };
        let cancel = CancellationToken::new();
        let (engine, thread) = start(Box::new(disk.clone()), rules, Arc::new(Nobody), cfg, cancel.clone(), None);
        while !engine.is_ready() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let import = || Command::ImportCity(Box::new(crate::demo::demo_city(40, 1)));

        disk.full.store(true, Ordering::SeqCst);
        assert!(matches!(engine.submit(Actor::System, import()).await, Err(EngineError::Unavailable(_))));
        assert!(!engine.is_ready() && engine.is_started(), "not ready for writes, still serving reads");
        assert!(engine.read().city.city().is_none(), "the refused import is not in the state");
        // Within the retry delay, commands are refused without touching the store.
        let tried = disk.appends.load(Ordering::SeqCst);
        assert!(matches!(engine.submit(Actor::System, import()).await, Err(EngineError::Unavailable(_))));
        assert_eq!(disk.appends.load(Ordering::SeqCst), tried);

        // Space again: the idle probe notices, and writes work.
        disk.full.store(false, Ordering::SeqCst);
        let deadline = Instant::now() + WRITE_RETRY * 3;
        while !engine.is_ready() {
            assert!(Instant::now() < deadline, "the engine did not notice the store is back");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(engine.submit(Actor::System, import()).await.is_ok());
        assert!(engine.read().city.city().is_some());
        cancel.cancel();
        tokio::task::spawn_blocking(move || thread.join()).await.unwrap().unwrap();
    }
}
