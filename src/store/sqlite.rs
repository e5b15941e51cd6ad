//! The embedded store: one SQLite database in WAL mode with `synchronous = FULL`, so a
//! committed transaction is on disk. One writer connection (the engine's thread) and a
//! small pool of read connections for the gateway; WAL lets them read while it writes.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use super::{
    DecisionPage, DecisionQuery, EventLog, HookStore, LogReader, SnapshotStore, StoreError, StoredFrame, TimelineEntry,
};
use crate::domain::event::{Event, EventBody, Frame};
use crate::domain::geo::Position;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    seq         INTEGER PRIMARY KEY,
    at          INTEGER NOT NULL,
    actor       TEXT NOT NULL,
    kind        TEXT NOT NULL,
    incident_id TEXT,
    body        TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_incident ON events (incident_id, seq) WHERE incident_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS positions (
    member_id TEXT PRIMARY KEY,
    lat       REAL NOT NULL,
    lng       REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS probe (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS webhook_records (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
";

/// Frames in the order they were logged, found by (stream, seq) through an index: a batch
/// of answers appends its rows to the end of the table and dirties only index pages, where
/// a table keyed by (stream, seq) dirtied a page per recipient (schema version 1).
const FRAMES: &str = "
CREATE TABLE IF NOT EXISTS frames (
    id        INTEGER PRIMARY KEY,
    stream    TEXT NOT NULL,
    seq       INTEGER NOT NULL,
    event_seq INTEGER NOT NULL,
    text      TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS frames_by_stream ON frames (stream, seq);
";

/// `PRAGMA user_version` of the current schema. 0: `frames` was a WITHOUT ROWID table
/// keyed by (stream, seq).
const SCHEMA_VERSION: i64 = 1;

pub const DB_FILE: &str = "muster.db";

/// The decisions' kinds as an SQL list, `('mode_switched', …)` (`audit::KINDS`: fixed
/// names, no quotes in them).
fn decision_kinds() -> String {
    let quoted: Vec<String> = crate::domain::audit::KINDS.iter().map(|k| format!("'{k}'")).collect();
    format!("({})", quoted.join(", "))
}

/// The audit reads the decisions through a partial index of them alone (a few in a
/// thousand events), in seq order: no scan of the offers and answers, and appends of those
/// do not touch it. Built on open when missing (no schema version: an index of what is
/// there). Its name carries the list's version: a change of `audit::KINDS` must name a new
/// one and drop this (an index whose list differs from the query's is not used).
fn decisions_index() -> String {
    format!(
        "DROP INDEX IF EXISTS events_decisions_v1; CREATE INDEX IF NOT EXISTS events_decisions_v2 ON events (seq) WHERE kind IN {};",
        decision_kinds()
    )
}

/// Brings a database of an older schema version to the current one, in one transaction.
fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version >= SCHEMA_VERSION {
        return Ok(());
    }
    let tx = conn.transaction()?;
    let old_frames: i64 =
        tx.query_row("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'frames'", [], |r| r.get(0))?;
    if old_frames > 0 {
        tx.execute_batch("ALTER TABLE frames RENAME TO frames_v0")?;
    }
    tx.execute_batch(FRAMES)?;
    if old_frames > 0 {
        let moved = tx.execute(
            "INSERT INTO frames (stream, seq, event_seq, text)
             SELECT stream, seq, event_seq, text FROM frames_v0 ORDER BY event_seq, stream, seq",
            [],
        )?;
        tx.execute_batch("DROP TABLE frames_v0")?;
        tracing::info!(frames = moved, from = version, to = SCHEMA_VERSION, "store schema migrated");
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    tx.commit()?;
    Ok(())
}

pub struct SqliteLog {
    conn: Connection,
    dir: PathBuf,
    _checkpointer: Checkpointer,
    /// Held while this process owns the directory: a second muster on the same data
    /// directory (by mistake, or sharing the port through SO_REUSEPORT) refuses to start.
    _lock: std::fs::File,
}

/// How often the checkpointer copies the WAL into the database.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

/// Checkpoints the WAL on its own thread and connection, so the engine's commits do not
/// (SQLite's automatic checkpoint runs inside the commit that crosses 1,000 pages: in a
/// surge of answers, 13% of the engine thread). A PASSIVE checkpoint never blocks the
/// writer; the writer rewinds the WAL by itself once it has all been copied.
struct Checkpointer {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Checkpointer {
    fn start(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new().name("muster-checkpoint".into()).spawn(move || {
            let mut failing = false;
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(CHECKPOINT_EVERY) {
                let done = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
                });
                match done {
                    Ok((_, wal, copied)) => {
                        metrics::gauge!("muster_wal_pages").set((wal - copied).max(0) as f64);
                        failing = false;
                    }
                    // Once per failing spell (a full disk fails it every time).
                    Err(e) if !failing => {
                        failing = true;
                        tracing::warn!(error = %e, "checkpointing the WAL failed; retrying");
                    }
                    Err(_) => {}
                }
            }
        })?;
        Ok(Checkpointer { stop: Some(stop), thread: Some(thread) })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl SqliteLog {
    /// Opens (creating if needed) the database in `dir`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir)?;
        let lock =
            std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(dir.join("muster.lock"))?;
        if lock.try_lock().is_err() {
            return Err(StoreError::Locked(dir.display().to_string()));
        }
        let mut conn = Connection::open(dir.join(DB_FILE))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        conn.execute_batch(&decisions_index())?;
        migrate(&mut conn)?;
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        let checkpointer = Checkpointer::start(&dir.join(DB_FILE))?;
        Ok(Self { conn, dir: dir.to_path_buf(), _checkpointer: checkpointer, _lock: lock })
    }
}

impl EventLog for SqliteLog {
    fn replay(&mut self, apply: &mut dyn FnMut(Event)) -> Result<(), StoreError> {
        self.replay_after(0, apply)
    }

    fn replay_after(&mut self, after: u64, apply: &mut dyn FnMut(Event)) -> Result<(), StoreError> {
        let mut stmt = self.conn.prepare("SELECT seq, at, actor, body FROM events WHERE seq > ?1 ORDER BY seq")?;
        let mut rows = stmt.query([after])?;
        while let Some(row) = rows.next()? {
            let seq: u64 = row.get(0)?;
            let body: String = row.get(3)?;
            let body: EventBody = serde_json::from_str(&body).map_err(|e| StoreError::Corrupt(seq, e.to_string()))?;
            apply(Event { seq, at: row.get(1)?, actor: row.get(2)?, body });
        }
        Ok(())
    }

    fn append(&mut self, events: &[Event], frames: &[(Frame, String)]) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        {
            let mut ins = tx.prepare_cached(
                "INSERT INTO events (seq, at, actor, kind, incident_id, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for e in events {
                let body = serde_json::to_string(&e.body).expect("events serialize");
                ins.execute(params![e.seq, e.at, e.actor, e.body.kind(), e.body.incident_id(), body])?;
            }
            let mut ins =
                tx.prepare_cached("INSERT INTO frames (stream, seq, event_seq, text) VALUES (?1, ?2, ?3, ?4)")?;
            let last = events.last().map(|e| e.seq).unwrap_or(0);
            for (f, text) in frames {
                ins.execute(params![f.stream, f.seq, last, text])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn load_snapshot(&mut self) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        load_snapshot_file(&self.dir, &self.conn)
    }

    fn save_positions(&mut self, positions: &[(String, Position)]) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        {
            let mut ins =
                tx.prepare_cached("INSERT OR REPLACE INTO positions (member_id, lat, lng) VALUES (?1, ?2, ?3)")?;
            for (id, p) in positions {
                ins.execute(params![id, p.lat, p.lng])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn probe(&mut self) -> Result<(), StoreError> {
        let at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
        self.conn.execute("INSERT OR REPLACE INTO probe (id, at) VALUES (1, ?1)", params![at])?;
        Ok(())
    }

    fn load_positions(&mut self) -> Result<Vec<(String, Position)>, StoreError> {
        let mut stmt = self.conn.prepare("SELECT member_id, lat, lng FROM positions")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, f64>(1)?, r.get::<_, f64>(2)?)))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, lat, lng) = row?;
            if let Ok(p) = Position::new(lat, lng) {
                out.push((id, p));
            }
        }
        Ok(out)
    }
}

/// Snapshots are files beside the database, `snapshot-<seq>.json`, not rows in it: writing
/// tens of megabytes in a transaction would hold SQLite's one write lock, and the engine's
/// next commit would wait behind it.
const SNAPSHOT_PREFIX: &str = "snapshot-";
const SNAPSHOT_SUFFIX: &str = ".json";

/// Saved snapshots in `dir`, by seq.
fn snapshot_files(dir: &Path) -> Result<Vec<(u64, PathBuf)>, StoreError> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if let Some(seq) = name.strip_prefix(SNAPSHOT_PREFIX).and_then(|n| n.strip_suffix(SNAPSHOT_SUFFIX))
            && let Ok(seq) = seq.parse()
        {
            found.push((seq, path));
        }
    }
    found.sort();
    Ok(found)
}

/// The latest snapshot file, unless it is ahead of the log: a database restored from an
/// older backup beside a newer snapshot. The log is the truth: such a snapshot is set
/// aside (renamed `….json.ahead-of-log`, so it cannot pass for valid once the log grows
/// past its seq) and the log is replayed.
fn load_snapshot_file(dir: &Path, conn: &Connection) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
    let last = last_logged(conn)?;
    while let Some((seq, path)) = snapshot_files(dir)?.pop() {
        if seq <= last {
            return Ok(Some((seq, std::fs::read(path)?)));
        }
        tracing::warn!(snapshot = seq, log = last, "a snapshot ahead of the log; setting it aside");
        std::fs::rename(&path, path.with_extension("json.ahead-of-log"))?;
    }
    Ok(None)
}

fn last_logged(conn: &Connection) -> Result<u64, StoreError> {
    let last: Option<u64> = conn.query_row("SELECT max(seq) FROM events", [], |r| r.get(0))?;
    Ok(last.unwrap_or(0))
}

/// The snapshotter's store: a read-only connection to follow the log, and the directory.
/// The webhook deliverer's connection (`HookStore`): reads the log, writes its records,
/// each write synced (`synchronous = FULL`) before it returns.
pub struct SqliteHooks {
    conn: Connection,
}

impl SqliteHooks {
    /// Opens a connection to the database `SqliteLog::open` made (and its table).
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(dir.join(DB_FILE))?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        Ok(Self { conn })
    }
}

impl HookStore for SqliteHooks {
    fn events_after(&mut self, after: u64, limit: usize) -> Result<Vec<Event>, StoreError> {
        events_after(&self.conn, after, limit)
    }

    fn get(&mut self, key: &str) -> Result<Option<String>, StoreError> {
        let mut stmt = self.conn.prepare_cached("SELECT value FROM webhook_records WHERE key = ?1")?;
        Ok(stmt.query_row(params![key], |r| r.get(0)).optional()?)
    }

    fn put(&mut self, key: &str, value: &str) -> Result<(), StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "INSERT INTO webhook_records (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = ?2",
        )?;
        stmt.execute(params![key, value])?;
        Ok(())
    }

    fn delete(&mut self, key: &str) -> Result<(), StoreError> {
        self.conn.prepare_cached("DELETE FROM webhook_records WHERE key = ?1")?.execute(params![key])?;
        Ok(())
    }

    fn scan(&mut self, prefix: &str) -> Result<Vec<(String, String)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT key, value FROM webhook_records WHERE substr(key, 1, ?2) = ?1 ORDER BY key")?;
        let rows = stmt.query_map(params![prefix, prefix.len() as i64], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn write(&mut self, records: &[(String, Option<String>)]) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        {
            let mut put = tx.prepare_cached(
                "INSERT INTO webhook_records (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = ?2",
            )?;
            let mut delete = tx.prepare_cached("DELETE FROM webhook_records WHERE key = ?1")?;
            for (k, v) in records {
                match v {
                    Some(v) => put.execute(params![k, v])?,
                    None => delete.execute(params![k])?,
                };
            }
        }
        tx.commit()?;
        Ok(())
    }
}

/// Logged events with seq > `after`, in order, at most `limit`.
fn events_after(conn: &Connection, after: u64, limit: usize) -> Result<Vec<Event>, StoreError> {
    let mut stmt =
        conn.prepare_cached("SELECT seq, at, actor, body FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2")?;
    let mut rows = stmt.query(params![after, limit as i64])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let seq: u64 = row.get(0)?;
        let body: String = row.get(3)?;
        let body: EventBody = serde_json::from_str(&body).map_err(|e| StoreError::Corrupt(seq, e.to_string()))?;
        out.push(Event { seq, at: row.get(1)?, actor: row.get(2)?, body });
    }
    Ok(out)
}

pub struct SqliteSnapshots {
    conn: Connection,
    dir: PathBuf,
}

impl SqliteSnapshots {
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open_with_flags(
            dir.join(DB_FILE),
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI,
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        Ok(Self { conn, dir: dir.to_path_buf() })
    }
}

impl SnapshotStore for SqliteSnapshots {
    fn load(&mut self) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        load_snapshot_file(&self.dir, &self.conn)
    }

    fn progress(&mut self) -> Result<(u64, u64), StoreError> {
        let last = last_logged(&self.conn)?;
        let snapshot = snapshot_files(&self.dir)?.pop().map_or(0, |(seq, _)| seq);
        // One ahead of the log is set aside when it is loaded (see `load_snapshot_file`).
        Ok((snapshot.min(last), last))
    }

    fn events_after(&mut self, after: u64, limit: usize) -> Result<Vec<Event>, StoreError> {
        events_after(&self.conn, after, limit)
    }

    /// Written to a temporary file, synced, renamed into place and the directory synced:
    /// a crash leaves the old snapshot or the new one, whole. Older ones are then removed.
    fn save(&mut self, seq: u64, body: &[u8]) -> Result<(), StoreError> {
        use std::io::Write as _;
        let existing = snapshot_files(&self.dir)?;
        if existing.last().is_some_and(|(s, _)| *s >= seq) {
            return Ok(());
        }
        let tmp = self.dir.join(format!("{SNAPSHOT_PREFIX}{seq}{SNAPSHOT_SUFFIX}.tmp"));
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(body)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, self.dir.join(format!("{SNAPSHOT_PREFIX}{seq}{SNAPSHOT_SUFFIX}")))?;
        std::fs::File::open(&self.dir)?.sync_all()?;
        for (_, old) in existing {
            let _ = std::fs::remove_file(old);
        }
        // What a crash mid-write left behind.
        for entry in std::fs::read_dir(&self.dir)?.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(SNAPSHOT_PREFIX) && name.ends_with(".tmp") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(())
    }
}

/// Read-only connections for the gateway, used from `spawn_blocking`.
pub struct SqliteReader {
    pool: Vec<Mutex<Connection>>,
    next: AtomicUsize,
    _path: PathBuf,
}

impl SqliteReader {
    pub fn open(dir: &Path, connections: usize) -> Result<Self, StoreError> {
        let path = dir.join(DB_FILE);
        let mut pool = Vec::with_capacity(connections);
        for _ in 0..connections.max(1) {
            let conn = Connection::open_with_flags(
                &path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI,
            )?;
            conn.busy_timeout(std::time::Duration::from_secs(5))?;
            pool.push(Mutex::new(conn));
        }
        Ok(Self { pool, next: AtomicUsize::new(0), _path: path })
    }

    fn with<T>(&self, f: impl FnOnce(&Connection) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        // Take a free connection if there is one; otherwise wait for the next in turn.
        for i in 0..self.pool.len() {
            if let Ok(conn) = self.pool[(start + i) % self.pool.len()].try_lock() {
                return f(&conn);
            }
        }
        let conn = self.pool[start % self.pool.len()].lock().unwrap_or_else(|p| p.into_inner());
        f(&conn)
    }
}

impl LogReader for SqliteReader {
    fn frames_after(&self, stream: &str, after: u64, limit: usize) -> Result<Vec<StoredFrame>, StoreError> {
        self.with(|c| {
            let mut stmt =
                c.prepare_cached("SELECT seq, text FROM frames WHERE stream = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3")?;
            let rows = stmt.query_map(params![stream, after, limit as i64], |r| {
                Ok(StoredFrame { seq: r.get(0)?, text: r.get(1)? })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }

    fn frames_at(&self, stream: &str, seqs: &[u64]) -> Result<Vec<StoredFrame>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare_cached("SELECT seq, text FROM frames WHERE stream = ?1 AND seq = ?2")?;
            let mut out = Vec::with_capacity(seqs.len());
            for &seq in seqs {
                if let Some(f) = stmt
                    .query_row(params![stream, seq], |r| Ok(StoredFrame { seq: r.get(0)?, text: r.get(1)? }))
                    .optional()?
                {
                    out.push(f);
                }
            }
            out.sort_by_key(|f| f.seq);
            Ok(out)
        })
    }

    fn timeline(&self, incident_id: &str) -> Result<Vec<TimelineEntry>, StoreError> {
        self.with(|c| {
            let mut stmt =
                c.prepare_cached("SELECT seq, at, kind, actor, body FROM events WHERE incident_id = ?1 ORDER BY seq")?;
            let rows = stmt.query_map(params![incident_id], |r| {
                Ok((
                    r.get::<_, u64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (seq, at, kind, actor, body) = row?;
                out.push(TimelineEntry::from_logged(seq, at, kind, actor, &body)?);
            }
            Ok(out)
        })
    }

    fn decisions(&self, q: &DecisionQuery) -> Result<DecisionPage, StoreError> {
        let kinds: Vec<&str> =
            q.kinds.iter().map(String::as_str).filter(|k| crate::domain::audit::is_audit_kind(k)).collect();
        if kinds.is_empty() || q.limit == 0 {
            return Ok(DecisionPage { events: Vec::new(), through: None });
        }
        // The first IN is the partial index's own term, which lets SQLite use it.
        let sql = format!(
            "SELECT seq, at, actor, body FROM events WHERE kind IN {} AND kind IN ({}) AND seq > ? AND at >= ? AND at < ?
             AND (? IS NULL OR actor = ?) ORDER BY seq LIMIT ?",
            decision_kinds(),
            vec!["?"; kinds.len()].join(", ")
        );
        self.with(|c| {
            let mut stmt = c.prepare_cached(&sql)?;
            let mut args: Vec<rusqlite::types::Value> = kinds.iter().map(|k| k.to_string().into()).collect();
            args.push((q.after as i64).into());
            args.push(q.from.unwrap_or(i64::MIN).into());
            args.push(q.to.unwrap_or(i64::MAX).into());
            args.push(q.actor.clone().into());
            args.push(q.actor.clone().into());
            args.push((q.limit as i64).into());
            let mut rows = stmt.query(rusqlite::params_from_iter(args))?;
            let mut events = Vec::new();
            while let Some(row) = rows.next()? {
                let seq: u64 = row.get(0)?;
                let body: String = row.get(3)?;
                let body: EventBody =
                    serde_json::from_str(&body).map_err(|e| StoreError::Corrupt(seq, e.to_string()))?;
                events.push(Event { seq, at: row.get(1)?, actor: row.get(2)?, body });
            }
            let through = if events.len() == q.limit { events.last().map(|e| e.seq) } else { None };
            Ok(DecisionPage { events, through })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::event::EventBody;

    /// A small event with this seq.
    fn duty(seq: u64) -> Event {
        Event {
            seq,
            at: 0,
            actor: "system".into(),
            body: EventBody::DutyChanged { member_id: "m".into(), on_call: true },
        }
    }

    #[test]
    fn decisions_are_read_by_kind_actor_time_and_cursor_through_their_index() {
        use crate::domain::event::Mode;
        let dir = tempfile::tempdir().unwrap();
        let mut log = SqliteLog::open(dir.path()).unwrap();
        let switch = |seq: u64, actor: &str| Event {
            seq,
            at: seq as i64 * 1000,
            actor: actor.into(),
            body: EventBody::ModeSwitched { district_id: None, mode: Mode::Wartime, reason: "r".into() },
        };
        let events: Vec<Event> = (1..=9)
            .map(|s| match s % 3 {
                0 => switch(s, "command"),
                1 => switch(s, "command:d1"),
                _ => duty(s),
            })
            .collect();
        log.append(&events, &[]).unwrap();
        let reader = SqliteReader::open(dir.path(), 1).unwrap();
        let seqs = |q: DecisionQuery| {
            let p = reader.decisions(&q).unwrap();
            (p.events.iter().map(|e| e.seq).collect::<Vec<_>>(), p.through)
        };
        let all = DecisionQuery {
            kinds: vec!["mode_switched".into(), "duty_changed".into()],
            limit: 100,
            ..Default::default()
        };
        assert_eq!(seqs(all.clone()), (vec![1, 3, 4, 6, 7, 9], None), "duty_changed is no decision");
        assert_eq!(seqs(DecisionQuery { limit: 2, ..all.clone() }), (vec![1, 3], Some(3)));
        assert_eq!(seqs(DecisionQuery { after: 3, limit: 2, ..all.clone() }), (vec![4, 6], Some(6)));
        assert_eq!(seqs(DecisionQuery { actor: Some("command".into()), ..all.clone() }), (vec![3, 6, 9], None));
        assert_eq!(seqs(DecisionQuery { from: Some(4000), to: Some(7000), ..all.clone() }), (vec![4, 6], None));
        let plan: String = reader
            .with(|c| {
                let sql = format!(
                    "EXPLAIN QUERY PLAN SELECT seq FROM events WHERE kind IN {} AND kind IN ('x') AND seq > 0 ORDER BY seq",
                    decision_kinds()
                );
                Ok(c.query_row(&sql, [], |r| r.get::<_, String>(3))?)
            })
            .unwrap();
        assert!(plan.contains("events_decisions_v2"), "{plan}");
    }

    #[test]
    fn appends_replays_and_reads_frames_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = SqliteLog::open(dir.path()).unwrap();
        let e = Event {
            seq: 1,
            at: 1_700_000_000_000,
            actor: "member:m1".into(),
            body: EventBody::DutyChanged { member_id: "m1".into(), on_call: true },
        };
        let f = Frame {
            stream: "member:m1".into(),
            seq: 1,
            kind: "duty",
            data: serde_json::json!({"on_call": true}).into(),
        };
        let text = f.to_text();
        log.append(std::slice::from_ref(&e), &[(f, text.clone())]).unwrap();
        let mut seen = Vec::new();
        log.replay(&mut |e| seen.push(e)).unwrap();
        assert_eq!(seen, vec![e]);

        let reader = SqliteReader::open(dir.path(), 2).unwrap();
        assert_eq!(reader.frames_after("member:m1", 0, 10).unwrap(), vec![StoredFrame { seq: 1, text: text.clone() }]);
        assert!(reader.frames_after("member:m1", 1, 10).unwrap().is_empty());
        assert_eq!(reader.frames_at("member:m1", &[1]).unwrap().len(), 1);
    }

    #[test]
    fn a_store_of_schema_version_0_is_migrated_with_its_frames() {
        let dir = tempfile::tempdir().unwrap();
        {
            // As version 0 created it: frames keyed by (stream, seq), WITHOUT ROWID.
            let c = Connection::open(dir.path().join(DB_FILE)).unwrap();
            c.execute_batch(
                "CREATE TABLE frames (stream TEXT NOT NULL, seq INTEGER NOT NULL, event_seq INTEGER NOT NULL,
                     text TEXT NOT NULL, PRIMARY KEY (stream, seq)) WITHOUT ROWID;
                 INSERT INTO frames VALUES ('member:m1', 1, 1, 'a'), ('member:m1', 2, 3, 'b'), ('city', 1, 1, 'c');",
            )
            .unwrap();
        }
        let mut log = SqliteLog::open(dir.path()).unwrap();
        let version: i64 = log.conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        let f = Frame { stream: "member:m1".into(), seq: 3, kind: "duty", data: serde_json::json!({}).into() };
        log.append(&[duty(4)], &[(f, "d".into())]).unwrap();
        // a frame's seq stays unique in its stream
        let again = Frame { stream: "city".into(), seq: 1, kind: "duty", data: serde_json::json!({}).into() };
        assert!(log.append(&[duty(5)], &[(again, "x".into())]).is_err());
        drop(log);
        let log = SqliteLog::open(dir.path()).unwrap(); // a second open migrates nothing
        let reader = SqliteReader::open(dir.path(), 1).unwrap();
        let texts = |s: &str| -> Vec<(u64, String)> {
            reader.frames_after(s, 0, 10).unwrap().into_iter().map(|f| (f.seq, f.text)).collect()
        };
        assert_eq!(texts("member:m1"), [(1, "a".into()), (2, "b".into()), (3, "d".into())]);
        assert_eq!(texts("city"), [(1, "c".into())]);
        drop(log);
    }

    #[test]
    fn snapshots_are_files_the_latest_kept_whole() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = SqliteLog::open(dir.path()).unwrap();
        let events: Vec<Event> = (1..=9).map(duty).collect();
        log.append(&events, &[]).unwrap();
        let mut snaps = SqliteSnapshots::open(dir.path()).unwrap();
        assert_eq!(log.load_snapshot().unwrap(), None);
        std::fs::write(dir.path().join("snapshot-3.json.tmp"), b"half").unwrap(); // a crash mid-write
        snaps.save(7, b"seven").unwrap();
        snaps.save(5, b"five").unwrap(); // older than the one there: ignored
        assert_eq!(log.load_snapshot().unwrap(), Some((7, b"seven".to_vec())));
        snaps.save(9, b"nine").unwrap();
        assert_eq!(snaps.load().unwrap(), Some((9, b"nine".to_vec())));
        let mut names: Vec<String> =
            std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        names.retain(|n| n.starts_with("snapshot"));
        assert_eq!(names, ["snapshot-9.json"], "only the latest is kept, no leftovers");
    }

    #[test]
    fn a_snapshot_ahead_of_the_log_is_set_aside_for_good() {
        // A database restored from an older backup, beside a newer snapshot.
        let dir = tempfile::tempdir().unwrap();
        let mut log = SqliteLog::open(dir.path()).unwrap();
        log.append(&[duty(1), duty(2)], &[]).unwrap();
        std::fs::write(dir.path().join("snapshot-5.json"), b"another history").unwrap();
        let mut snaps = SqliteSnapshots::open(dir.path()).unwrap();
        assert_eq!(snaps.progress().unwrap(), (2, 2));
        assert_eq!(log.load_snapshot().unwrap(), None, "the log is the truth");
        assert!(dir.path().join("snapshot-5.json.ahead-of-log").exists());
        // Once the log is longer than its seq, it still does not come back.
        log.append(&[duty(3), duty(4), duty(5), duty(6)], &[]).unwrap();
        assert_eq!(log.load_snapshot().unwrap(), None);
        assert_eq!(snaps.progress().unwrap(), (0, 6));
    }

    #[test]
    fn a_second_writer_on_the_same_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let first = SqliteLog::open(dir.path()).unwrap();
        let second = SqliteLog::open(dir.path());
        assert!(second.is_err_and(|e| e.to_string().contains("another muster")));
        drop(first);
        assert!(SqliteLog::open(dir.path()).is_ok(), "free again once the first is gone");
    }

    #[test]
    fn a_failed_batch_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = SqliteLog::open(dir.path()).unwrap();
        log.append(&[duty(1)], &[]).unwrap();
        // seq 2 is fine, seq 1 again violates the primary key: the whole batch must roll back.
        assert!(log.append(&[duty(2), duty(1)], &[]).is_err());
        let mut n = 0;
        log.replay(&mut |_| n += 1).unwrap();
        assert_eq!(n, 1);
    }
}
