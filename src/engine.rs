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
//! Readers (the HTTP gateway) take the `RwLock` for reading. The engine holds the write
//! lock from the first decision of a batch until its append returns, so no reader ever
//! sees a decision that is not yet durable.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::domain::dispatcher::{self, Actor, Command, DomainError, Reply, State};
use crate::domain::event::{Event, Frame, Ts};
use crate::domain::response::Rules;
use crate::store::{EventLog, StoreError};

/// How long the engine refuses commands after a failed append before it tries the store
/// again. A failed append costs a full replay of the log, so it is not tried per request.
pub const WRITE_RETRY: Duration = Duration::from_secs(1);

/// Wall-clock milliseconds since the epoch: the only clock the dispatcher sees.
pub fn now_ms() -> Ts {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Where committed frames go: the gateway's hub implements it.
pub trait Publisher: Send + Sync + 'static {
    /// Frames in commit order, each with its encoded wire text.
    fn publish(&self, frames: Vec<(Frame, String)>);
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error("the store cannot take writes now: {0}")]
    Unavailable(String),
    #[error("the dispatcher is busy; retry shortly")]
    Overloaded,
    #[error("muster is starting or stopping")]
    NotReady,
}

struct Request {
    actor: Actor,
    cmd: Command,
    reply: oneshot::Sender<Result<Reply, EngineError>>,
}

#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub mailbox: usize,
    pub batch_max: usize,
    pub position_flush: Duration,
}

/// The gateway's handle: submit commands, read the state.
#[derive(Clone)]
pub struct EngineHandle {
    tx: SyncSender<Request>,
    state: Arc<RwLock<State>>,
    ready: Arc<AtomicBool>,
    writable: Arc<AtomicBool>,
    pub rules: Arc<Rules>,
}

impl EngineHandle {
    /// Submits a command and waits until its events are durable (or it was refused).
    pub async fn submit(&self, actor: Actor, cmd: Command) -> Result<Reply, EngineError> {
        if !self.is_started() {
            return Err(EngineError::NotReady);
        }
        let (reply, rx) = oneshot::channel();
        match self.tx.try_send(Request { actor, cmd, reply }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(EngineError::Overloaded),
            Err(TrySendError::Disconnected(_)) => return Err(EngineError::NotReady),
        }
        rx.await.unwrap_or(Err(EngineError::NotReady))
    }

    /// A read view of the committed state. Hold it briefly: the engine waits for it.
    pub fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    /// True once the log has been replayed and while the store takes writes.
    pub fn is_ready(&self) -> bool {
        self.is_started() && self.writable.load(Ordering::Acquire)
    }

    /// True once the log has been replayed (reads work), whether or not the store takes
    /// writes now.
    pub fn is_started(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }
}

/// Starts the engine thread. It replays the log first and reports ready when done.
pub fn start(
    log: Box<dyn EventLog>,
    rules: Rules,
    publisher: Arc<dyn Publisher>,
    cfg: EngineConfig,
    cancel: CancellationToken,
) -> (EngineHandle, std::thread::JoinHandle<()>) {
    let (tx, rx) = std::sync::mpsc::sync_channel(cfg.mailbox);
    let state = Arc::new(RwLock::new(State::default()));
    let ready = Arc::new(AtomicBool::new(false));
    let writable = Arc::new(AtomicBool::new(true));
    let rules = Arc::new(rules);
    let handle = EngineHandle {
        tx,
        state: state.clone(),
        ready: ready.clone(),
        writable: writable.clone(),
        rules: rules.clone(),
    };
    let mut engine = Engine {
        log,
        rules,
        publisher,
        cfg,
        state,
        ready,
        writable,
        write_retry_at: None,
        dirty_positions: HashSet::new(),
    };
    let thread = std::thread::Builder::new()
        .name("muster-engine".into())
        .spawn(move || engine.run(rx, cancel))
        .expect("spawn the engine thread");
    (handle, thread)
}

struct Engine {
    log: Box<dyn EventLog>,
    rules: Arc<Rules>,
    publisher: Arc<dyn Publisher>,
    cfg: EngineConfig,
    state: Arc<RwLock<State>>,
    ready: Arc<AtomicBool>,
    writable: Arc<AtomicBool>,
    /// Set after a failed append: until then commands are refused without being tried.
    write_retry_at: Option<Instant>,
    dirty_positions: HashSet<u32>,
}

impl Engine {
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

        let mut last_flush = Instant::now();
        let mut batch = Vec::with_capacity(self.cfg.batch_max);
        while !cancel.is_cancelled() {
            let wait = self.wait_time();
            match rx.recv_timeout(wait) {
                Ok(req) => batch.push(req),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            while batch.len() < self.cfg.batch_max {
                match rx.try_recv() {
                    Ok(req) => batch.push(req),
                    Err(_) => break,
                }
            }
            self.step(std::mem::take(&mut batch));
            if last_flush.elapsed() >= self.cfg.position_flush {
                self.flush_positions();
                last_flush = Instant::now();
            }
        }
        self.ready.store(false, Ordering::Release);
        self.flush_positions();
        tracing::info!("engine stopped");
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
        *self.state.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        Ok(())
    }

    /// The state as the log has it: replayed, with the saved positions and retries re-armed.
    fn rebuild(&mut self) -> Result<State, StoreError> {
        let started = Instant::now();
        let mut fresh = State::default();
        let mut n = 0u64;
        self.log.replay(&mut |e: Event| {
            dispatcher::apply(&mut fresh, &e);
            n += 1;
        })?;
        for (id, p) in self.log.load_positions()? {
            if let Some(idx) = fresh.member_index(&id) {
                fresh.roster.move_to(idx, p);
            }
        }
        fresh.schedule_retries(now_ms());
        self.dirty_positions.clear();
        tracing::info!(events = n, ms = started.elapsed().as_millis() as u64, "state rebuilt from the log");
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
        let mut events = Vec::new();
        let mut frames = Vec::new();
        let mut replies = Vec::with_capacity(batch.len());
        // Held until the append's outcome is in the state: on failure the state is rebuilt
        // from the log under the same lock, so no reader sees a decision that is not durable.
        let shared = self.state.clone();
        let mut state = shared.write().unwrap_or_else(|p| p.into_inner());

        if state.next_deadline().is_some_and(|at| at <= now) {
            match dispatcher::execute(&mut state, &self.rules, &Actor::System, Command::Tick, now) {
                Ok(out) => {
                    events.extend(out.events);
                    frames.extend(out.frames);
                }
                Err(e) => tracing::error!(error = %e, "deadline tick refused"),
            }
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
                    replies.push((req.reply, out.reply.unwrap_or(Reply::Done)));
                }
                Err(e) => {
                    metrics::counter!("muster_commands_total", "command" => name, "outcome" => e.code).increment(1);
                    let _ = req.reply.send(Err(EngineError::Domain(e)));
                }
            }
        }
        if events.is_empty() {
            drop(state);
            for (reply, r) in replies {
                let _ = reply.send(Ok(r));
            }
            return;
        }

        let encoded: Vec<(Frame, String)> = frames
            .into_iter()
            .map(|f| {
                let text = f.to_text();
                (f, text)
            })
            .collect();
        let started = Instant::now();
        let appended = self.log.append(&events, &encoded);
        metrics::histogram!("muster_append_seconds").record(started.elapsed().as_secs_f64());
        if let Err(e) = &appended {
            tracing::error!(error = %e, events = events.len(), "append failed; rebuilding state from the log");
            self.store_failed(e);
            match self.rebuild() {
                Ok(fresh) => *state = fresh,
                Err(e) => {
                    tracing::error!(error = %e, "rebuilding state failed; not ready");
                    self.ready.store(false, Ordering::Release);
                }
            }
        }
        drop(state);
        match appended {
            Ok(()) => {
                if self.write_retry_at.is_some() {
                    self.store_writable();
                }
                metrics::counter!("muster_events_total").increment(events.len() as u64);
                metrics::histogram!("muster_batch_events").record(events.len() as f64);
                self.publisher.publish(encoded);
                for (reply, r) in replies {
                    let _ = reply.send(Ok(r));
                }
            }
            Err(e) => {
                metrics::counter!("muster_append_failures_total").increment(1);
                for (reply, _) in replies {
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

    #[tokio::test]
    async fn a_store_that_cannot_write_makes_the_engine_unready_until_it_can() {
        let disk = Disk::default();
        let rules = crate::settings::Settings::load_with_env(None, Vec::new()).unwrap().dispatch;
        let cfg = EngineConfig { mailbox: 16, batch_max: 16, position_flush: Duration::from_secs(60) };
        let cancel = CancellationToken::new();
        let (engine, thread) = start(Box::new(disk.clone()), rules, Arc::new(Nobody), cfg, cancel.clone());
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
