//! The engine thread on one node, and on the node that leads: replay the log, then take
//! batches from the mailbox, decide them, append them durably (group commit), publish and
//! answer. A failed append rebuilds the state from the log (see `engine`).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{EngineConfig, Publisher, Revoked, WRITE_RETRY, share_revoked};
use crate::cluster::{self, Node};
use crate::domain::dispatcher::{self, Actor, Command, Reply, State};
use crate::domain::event::{Event, Frame, FrameEncoder};
use crate::domain::response::Rules;
use crate::domain::snapshot;
use crate::mailbox::{EngineError, Request, now_ms};
use crate::store::{EventLog, StoreError};

/// The engine thread's side: the single writer, which owns the log's writer and is the only
/// code that changes the state. (`settings::Engine` is the `[engine]` configuration.)
pub(super) struct Writer {
    pub(super) log: Box<dyn EventLog>,
    pub(super) rules: Arc<Rules>,
    pub(super) publisher: Arc<dyn Publisher>,
    pub(super) cfg: EngineConfig,
    pub(super) revoked: Revoked,
    pub(super) state: Arc<RwLock<State>>,
    pub(super) ready: Arc<AtomicBool>,
    pub(super) writable: Arc<AtomicBool>,
    /// Set after a failed append: until then commands are refused without being tried.
    pub(super) write_retry_at: Option<Instant>,
    pub(super) dirty_positions: HashSet<u32>,
    /// With several nodes: the lease and the tail of the log.
    pub(super) node: Option<Node>,
    /// The last seq in the state, for nodes that wait to read their own writes.
    pub(super) applied: watch::Sender<u64>,
    /// An append found the lease taken by another node.
    pub(super) fenced: bool,
    /// The state could not be rebuilt after a failed append: rebuild before anything else.
    pub(super) stale: bool,
}

impl Writer {
    pub(super) fn run(&mut self, rx: Receiver<Request>, cancel: CancellationToken) {
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
    pub(super) fn collect(&self, rx: &Receiver<Request>, wait: Duration, batch: &mut Vec<Request>) -> bool {
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

    /// Rebuilds a stale state; true when it worked.
    pub(super) fn try_recover(&mut self) -> bool {
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

    pub(super) fn read_state(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    /// How long to sleep: until the next deadline, at most 200 ms (to notice shutdown).
    /// While the store is not writable, deadlines wait too (no busy loop on a due one).
    pub(super) fn wait_time(&self) -> Duration {
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
    pub(super) fn rebuild(&mut self) -> Result<State, StoreError> {
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
    pub(super) fn step(&mut self, batch: Vec<Request>) {
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
                    metrics::counter!("muster_commands_total", "command" => name, "outcome" => e.code.as_str())
                        .increment(1);
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
                // SQLite rolls a failed transaction back: nothing was logged. A Redis error
                // may come after the script ran (the reply was lost): that is unknown.
                let unknown = matches!(e, StoreError::Redis(_));
                for (reply, _, _) in replies {
                    let err = if unknown {
                        EngineError::Unknown(e.to_string())
                    } else {
                        EngineError::Unavailable(e.to_string())
                    };
                    let _ = reply.send(Err(err));
                }
            }
        }
    }

    /// The store refused a write: not ready, and commands are refused until `WRITE_RETRY`.
    pub(super) fn store_failed(&mut self, e: &StoreError) {
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

    pub(super) fn flush_positions(&mut self) {
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

/// Moves members to their stored last known positions.
pub(super) fn lay_positions(state: &mut State, positions: Vec<(String, crate::domain::geo::Position)>) {
    for (id, p) in positions {
        if let Some(idx) = state.member_index(&id)
            && state.roster.members[idx as usize].position != p
        {
            state.roster.move_to(idx, p);
        }
    }
}
