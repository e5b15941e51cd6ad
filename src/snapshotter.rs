//! The snapshotter: snapshots are taken beside the engine, never by it.
//!
//! Encoding a city's state takes tens to hundreds of milliseconds and grows with every
//! incident kept (`docs/PERFORMANCE.md`, "Snapshots"); done on the engine's thread, every
//! command would wait that long once per snapshot. Instead this thread watches how far the
//! log has gone (`SnapshotStore::progress`, once a second) and, once `engine.snapshot_every`
//! events were logged since the latest snapshot, builds a replica of its own, as a
//! follower node does: it restores that snapshot, applies the events after it (with a
//! frame filter that builds no frames), encodes the replica, saves it
//! (`SnapshotStore::save`: a file beside SQLite's database, chunks in Redis) and drops it.
//! The engine only reads the latest snapshot when it rebuilds its state.
//!
//! The price is paid on another core and only per snapshot: one restore, the interval's
//! events applied a second time, one encoding, and a second copy of the state in memory
//! while that lasts. With several nodes only the engine's node takes snapshots.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::domain::dispatcher::{self, FrameFilter, State};
use crate::domain::snapshot;
use crate::store::{SnapshotStore, StoreError};

/// How often the snapshotter looks at how far the log has gone.
const POLL: Duration = Duration::from_secs(1);
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
        while !self.cancel.is_cancelled() {
            self.pause(POLL);
            if !(self.saves)() {
                continue;
            }
            match self.snapshot_if_due() {
                Ok(()) => failing = false,
                Err(e) => {
                    // Logged once per failing spell (Redis away, a full disk); tried again
                    // at the next poll.
                    if !failing {
                        tracing::warn!(error = %e, "taking a snapshot failed; retrying");
                    }
                    failing = true;
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

    fn snapshot_if_due(&mut self) -> Result<(), StoreError> {
        let (snapshot_seq, log_seq) = self.store.progress()?;
        if log_seq < snapshot_seq + self.every {
            return Ok(());
        }
        let started = Instant::now();
        let state = self.replica()?;
        let built = started.elapsed();
        let body = snapshot::encode(&state);
        let seq = state.last_seq;
        drop(state);
        self.store.save(seq, &body)?;
        metrics::histogram!("muster_snapshot_seconds").record(started.elapsed().as_secs_f64());
        tracing::info!(
            seq,
            from = snapshot_seq,
            bytes = body.len(),
            replica_ms = built.as_millis() as u64,
            ms = started.elapsed().as_millis() as u64,
            "snapshot saved"
        );
        Ok(())
    }

    /// The latest snapshot restored (or the empty state), then the log after it.
    fn replica(&mut self) -> Result<State, StoreError> {
        let mut state = match self.store.load()? {
            Some((seq, body)) => snapshot::decode(&body).unwrap_or_else(|e| {
                tracing::warn!(seq, error = %e, "the snapshot cannot be read; the snapshotter replays the log");
                State::default()
            }),
            None => State::default(),
        };
        state.frame_filter = FrameFilter::only(|_| false);
        let mut frames = Vec::new();
        loop {
            let events = self.store.events_after(state.last_seq, READ_AT_ONCE)?;
            if events.is_empty() {
                state.frame_filter = FrameFilter::default();
                return Ok(state);
            }
            dispatcher::apply_in_order(&mut state, &events, &mut frames)
                .map_err(|gap| StoreError::Corrupt(gap.expected, gap.to_string()))?;
            frames.clear();
        }
    }
}
