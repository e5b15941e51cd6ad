//! The snapshotter: snapshots are taken beside the engine, never by it.
//!
//! Encoding a city's state takes tens to hundreds of milliseconds and grows with every
//! incident kept (`docs/PERFORMANCE.md`, "Snapshots"); done on the engine's thread, every
//! command would wait that long once per snapshot. Instead this thread keeps a replica of
//! its own, as a follower node does: it restores the latest snapshot, follows the log on
//! its own connection (`SnapshotStore::events_after`), applies each event with a frame
//! filter that builds no frames, and every `engine.snapshot_every` events encodes the
//! replica and saves it (`SnapshotStore::save`: a file beside SQLite's database, chunks in
//! Redis). The engine only reads the latest snapshot when it rebuilds its state.
//!
//! The replica costs a second copy of the state in memory and the CPU of applying each
//! event twice (without frames), on another core. With several nodes every node keeps one
//! (so a node that takes the lease carries on) but only the engine's node saves.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::domain::dispatcher::{self, FrameFilter, State};
use crate::domain::snapshot;
use crate::store::{SnapshotStore, StoreError};

/// How often the snapshotter looks for new events when it has caught up.
const POLL: Duration = Duration::from_millis(200);
/// Events read from the log at a time.
const READ_AT_ONCE: usize = 10_000;

/// Starts the snapshotter's thread. `saves` says whether this node should save now (the
/// engine's node; always, on one node).
pub fn start(
    store: Box<dyn SnapshotStore>,
    every: u64,
    saves: Arc<dyn Fn() -> bool + Send + Sync>,
    cancel: CancellationToken,
) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name("muster-snapshots".into())
        .spawn(move || Snapshotter { store, every, saves, cancel }.run())
        .expect("spawn the snapshot thread")
}

struct Snapshotter {
    store: Box<dyn SnapshotStore>,
    every: u64,
    saves: Arc<dyn Fn() -> bool + Send + Sync>,
    cancel: CancellationToken,
}

impl Snapshotter {
    fn run(mut self) {
        let mut failing = false;
        let mut replica: Option<(State, u64)> = None;
        while !self.cancel.is_cancelled() {
            let result = match replica.as_mut() {
                None => self.restore().map(|r| {
                    replica = Some(r);
                    true
                }),
                Some((state, saved)) => self.catch_up(state, saved),
            };
            match result {
                Ok(busy) => {
                    failing = false;
                    if !busy {
                        self.pause(POLL);
                    }
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!(error = %e, "the snapshotter cannot follow the log; retrying");
                    }
                    failing = true;
                    // A gap (the log trimmed past this replica) or a broken store: start over
                    // from the latest snapshot.
                    replica = None;
                    self.pause(Duration::from_secs(1));
                }
            }
        }
    }

    fn pause(&self, d: Duration) {
        let until = Instant::now() + d;
        while !self.cancel.is_cancelled() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20).min(until.saturating_duration_since(Instant::now())));
        }
    }

    /// The latest snapshot, or the empty state; and the seq it was saved at.
    fn restore(&mut self) -> Result<(State, u64), StoreError> {
        let mut state = match self.store.load()? {
            Some((seq, body)) => snapshot::decode(&body).unwrap_or_else(|e| {
                tracing::warn!(seq, error = %e, "the snapshot cannot be read; the snapshotter replays the log");
                State::default()
            }),
            None => State::default(),
        };
        state.frame_filter = FrameFilter::only(|_| false);
        let seq = state.last_seq;
        Ok((state, seq))
    }

    /// Applies the events logged since; saves a snapshot when one is due. True when there
    /// may be more to read at once.
    fn catch_up(&mut self, state: &mut State, saved: &mut u64) -> Result<bool, StoreError> {
        let events = self.store.events_after(state.last_seq, READ_AT_ONCE)?;
        let busy = !events.is_empty();
        for e in &events {
            if e.seq <= state.last_seq {
                continue;
            }
            if e.seq != state.last_seq + 1 {
                return Err(StoreError::Corrupt(state.last_seq + 1, format!("the log goes on at {}", e.seq)));
            }
            dispatcher::apply(state, e);
        }
        if self.every > 0 && state.last_seq >= *saved + self.every && (self.saves)() {
            let started = Instant::now();
            let body = snapshot::encode(state);
            let encoded = started.elapsed();
            // Tried again only after as many events: a store that refuses it (Redis away, a
            // full disk) is not asked again every poll.
            *saved = state.last_seq;
            match self.store.save(state.last_seq, &body) {
                Ok(()) => {
                    metrics::histogram!("muster_snapshot_seconds").record(started.elapsed().as_secs_f64());
                    tracing::info!(
                        seq = state.last_seq,
                        bytes = body.len(),
                        encode_ms = encoded.as_millis() as u64,
                        ms = started.elapsed().as_millis() as u64,
                        "snapshot saved"
                    );
                }
                Err(e) => tracing::warn!(seq = state.last_seq, error = %e, "saving a snapshot failed"),
            }
        }
        Ok(busy)
    }
}
