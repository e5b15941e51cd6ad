//! The durable event log. An append writes a batch of events and the recipient frames
//! derived from them in one transaction, synced to disk before it returns: "done" and
//! "deliverable after a reconnect" are one fact.
//!
//! - `EventLog`: the engine's side (replay, append, soft positions). One writer.
//! - `LogReader`: the gateway's side (frames after a seq, the timeline). Many readers.
//! - `HookStore`: the webhook deliverer's (the log after a cursor, cursors, dead letters).
//! - `sqlite`: the embedded store (WAL, synchronous=FULL), the default.
//! - `redis`: several nodes on one Redis (a fenced stream log), see `crate::cluster`.

pub mod redis;
pub mod sqlite;

use std::sync::{Arc, Mutex};

use crate::domain::event::{Event, Frame};
use crate::domain::geo::Position;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("corrupt log entry at seq {0}: {1}")]
    Corrupt(u64, String),
    #[error("storage I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// Another process holds the data directory.
    #[error("another muster is using {0}; stop it first")]
    Locked(String),
    #[error("redis: {0}")]
    Redis(String),
    /// The engine's lease was lost: another node is the engine now.
    #[error("this node no longer holds the engine lease")]
    Fenced,
    /// Redis does not persist every write before it answers.
    #[error("redis does not persist writes: {0}")]
    NotDurable(String),
}

impl From<::redis::RedisError> for StoreError {
    fn from(e: ::redis::RedisError) -> Self {
        if e.to_string().contains("FENCED") { StoreError::Fenced } else { StoreError::Redis(e.to_string()) }
    }
}

impl TimelineEntry {
    /// One timeline entry from a logged event (its body as stored, JSON with a `type`).
    pub fn from_logged(seq: u64, at: i64, kind: String, actor: String, body: &str) -> Result<Self, StoreError> {
        let mut data: serde_json::Value =
            serde_json::from_str(body).map_err(|e| StoreError::Corrupt(seq, e.to_string()))?;
        if let Some(map) = data.as_object_mut() {
            map.remove("type");
            for key in ["expires_at", "escalate_at"] {
                if let Some(t) = map.get(key).and_then(|v| v.as_i64()) {
                    map.insert(key.into(), crate::domain::dispatcher::rfc3339(t).into());
                }
            }
        }
        Ok(TimelineEntry { seq, at: crate::domain::dispatcher::rfc3339(at), kind, actor, data })
    }
}

/// One entry of an incident's timeline, as `GET /v1/incidents/{id}/timeline` answers it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct TimelineEntry {
    pub seq: u64,
    /// RFC 3339 UTC.
    pub at: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub actor: String,
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
}

/// Which logged decisions `LogReader::decisions` reads: those of `kinds` (each one of
/// `domain::audit::KINDS`; others are ignored), by `actor` when given, logged at
/// `from <= at < to` (ms), with seq > `after`: oldest first, at most `limit`.
#[derive(Debug, Clone, Default)]
pub struct DecisionQuery {
    pub kinds: Vec<String>,
    pub actor: Option<String>,
    pub from: Option<i64>,
    pub to: Option<i64>,
    pub after: u64,
    pub limit: usize,
}

/// What `LogReader::decisions` found, and how far it read.
#[derive(Debug, Clone, Default)]
pub struct DecisionPage {
    pub events: Vec<Event>,
    /// Every match up to this seq is in `events`: read on after it. `None`: the end of the
    /// log was reached.
    pub through: Option<u64>,
}

/// A stored frame: its seq in the stream and its wire text.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredFrame {
    pub seq: u64,
    pub text: String,
}

/// The snapshotter's side of a store (`crate::snapshots`): it follows the log on its own
/// connection and writes the one snapshot slot, never in the engine's way.
pub trait SnapshotStore: Send + 'static {
    /// The latest snapshot, as `EventLog::load_snapshot`.
    fn load(&mut self) -> Result<Option<(u64, Vec<u8>)>, StoreError>;
    /// The seq of the latest snapshot (0: none) and of the last logged event, cheaply.
    fn progress(&mut self) -> Result<(u64, u64), StoreError>;
    /// Logged events with seq > `after`, in order, a piece at a time (about `limit`; Redis
    /// counts whole log entries): call again until none come.
    fn events_after(&mut self, after: u64, limit: usize) -> Result<Vec<Event>, StoreError>;
    /// Saves the snapshot at `seq` durably, unless one at a later seq is there. Log entries
    /// wholly before the snapshot it replaces may then go: Redis trims its log stream
    /// there; SQLite keeps its events, which the incident timelines read.
    fn save(&mut self, seq: u64, body: &[u8]) -> Result<(), StoreError>;
}

/// A `HookStore` connection shared by the tasks of one deliverer (webhooks, push), each
/// call run on a blocking thread under the connection's lock, off the runtime's workers.
pub struct SharedHookStore(Arc<Mutex<Box<dyn HookStore>>>);

impl SharedHookStore {
    pub fn new(store: Box<dyn HookStore>) -> SharedHookStore {
        SharedHookStore(Arc::new(Mutex::new(store)))
    }

    /// Runs `f` on the store, off the runtime's workers.
    pub async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut dyn HookStore) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let store = self.0.clone();
        tokio::task::spawn_blocking(move || {
            let mut store = store.lock().unwrap_or_else(|p| p.into_inner());
            f(store.as_mut())
        })
        .await
        .map_err(|e| StoreError::Io(std::io::Error::other(e)))?
    }
}

/// The webhook deliverer's side of a store (`crate::webhooks`): it reads the log on its
/// own connection, and keeps a few small records per endpoint (its cursor, its status, its
/// dead letters) under string keys, each write durable before it returns (SQLite: a
/// table beside the log, synced; Redis: one hash, under the same persistence as the log).
pub trait HookStore: Send + 'static {
    /// Logged events with seq > `after`, in order, a piece at a time (as `SnapshotStore`).
    fn events_after(&mut self, after: u64, limit: usize) -> Result<Vec<Event>, StoreError>;
    fn get(&mut self, key: &str) -> Result<Option<String>, StoreError>;
    fn put(&mut self, key: &str, value: &str) -> Result<(), StoreError>;
    fn delete(&mut self, key: &str) -> Result<(), StoreError>;
    /// Every record whose key starts with `prefix`, in key order.
    fn scan(&mut self, prefix: &str) -> Result<Vec<(String, String)>, StoreError>;
    /// Puts (`Some`) and deletes (`None`) at once: one transaction where the store has them
    /// (SQLite: one sync for a surge's thousands of push jobs and the cursor after them).
    fn write(&mut self, records: &[(String, Option<String>)]) -> Result<(), StoreError> {
        for (k, v) in records {
            match v {
                Some(v) => self.put(k, v)?,
                None => self.delete(k)?,
            }
        }
        Ok(())
    }
}

pub trait EventLog: Send + 'static {
    /// Feeds every logged event, in order, to `apply`.
    fn replay(&mut self, apply: &mut dyn FnMut(Event)) -> Result<(), StoreError>;
    /// Feeds the logged events with seq > `after`, in order.
    fn replay_after(&mut self, after: u64, apply: &mut dyn FnMut(Event)) -> Result<(), StoreError> {
        self.replay(&mut |e| {
            if e.seq > after {
                apply(e)
            }
        })
    }
    /// Appends events and their frames atomically and durably.
    fn append(&mut self, events: &[Event], frames: &[(Frame, String)]) -> Result<(), StoreError>;
    /// The latest snapshot (`crate::snapshots` saves them): its seq and its bytes.
    fn load_snapshot(&mut self) -> Result<Option<(u64, Vec<u8>)>, StoreError>;
    /// Saves members' last known positions (soft state: not synced per write).
    fn save_positions(&mut self, positions: &[(String, Position)]) -> Result<(), StoreError>;
    fn load_positions(&mut self) -> Result<Vec<(String, Position)>, StoreError>;
    /// The positions saved since this log's last call, in the order saved (a member's
    /// later position after its earlier one): a replica's way to keep up without reading
    /// every member's each time. All of them on the first call, or whenever the store
    /// cannot tell what changed since (the default: `load_positions`).
    fn positions_changed(&mut self) -> Result<Vec<(String, Position)>, StoreError> {
        self.load_positions()
    }
    /// A small durable write, to learn whether the store takes writes again after a
    /// failed append (a disk that filled up). Changes nothing the log says.
    fn probe(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
}

pub trait LogReader: Send + Sync + 'static {
    /// Frames of `stream` with seq > `after`, in order, at most `limit`.
    fn frames_after(&self, stream: &str, after: u64, limit: usize) -> Result<Vec<StoredFrame>, StoreError>;
    /// The frames of `stream` with these seqs, in order.
    fn frames_at(&self, stream: &str, seqs: &[u64]) -> Result<Vec<StoredFrame>, StoreError>;
    /// Every event of one incident, in order.
    fn timeline(&self, incident_id: &str) -> Result<Vec<TimelineEntry>, StoreError>;
    /// Logged decisions (the audit), oldest first: see `DecisionQuery`. A store may stop
    /// before `limit` (Redis reads a bounded number of log entries per call); `through`
    /// says where to go on.
    fn decisions(&self, q: &DecisionQuery) -> Result<DecisionPage, StoreError>;
}
