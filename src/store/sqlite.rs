//! The embedded store: one SQLite database in WAL mode with `synchronous = FULL`, so a
//! committed transaction is on disk. One writer connection (the engine's thread) and a
//! small pool of read connections for the gateway; WAL lets them read while it writes.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use super::{EventLog, LogReader, StoreError, StoredFrame, TimelineEntry};
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
CREATE TABLE IF NOT EXISTS frames (
    stream    TEXT NOT NULL,
    seq       INTEGER NOT NULL,
    event_seq INTEGER NOT NULL,
    text      TEXT NOT NULL,
    PRIMARY KEY (stream, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS positions (
    member_id TEXT PRIMARY KEY,
    lat       REAL NOT NULL,
    lng       REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS snapshot (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    seq  INTEGER NOT NULL,
    body BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS probe (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    at INTEGER NOT NULL
);
";

pub const DB_FILE: &str = "muster.db";

pub struct SqliteLog {
    conn: Connection,
    /// Held while this process owns the directory: a second muster on the same data
    /// directory (by mistake, or sharing the port through SO_REUSEPORT) refuses to start.
    _lock: std::fs::File,
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
        let conn = Connection::open(dir.join(DB_FILE))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        Ok(Self { conn, _lock: lock })
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

    fn save_snapshot(&mut self, seq: u64, body: &[u8]) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO snapshot (id, seq, body) VALUES (1, ?1, ?2)
             ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, body = excluded.body WHERE excluded.seq > snapshot.seq",
            params![seq, body],
        )?;
        Ok(())
    }

    fn load_snapshot(&mut self) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT seq, body FROM snapshot WHERE id = 1", [], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?)
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::event::EventBody;

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
        let e = |seq| Event {
            seq,
            at: 0,
            actor: "system".into(),
            body: EventBody::DutyChanged { member_id: "m".into(), on_call: true },
        };
        log.append(&[e(1)], &[]).unwrap();
        // seq 2 is fine, seq 1 again violates the primary key: the whole batch must roll back.
        assert!(log.append(&[e(2), e(1)], &[]).is_err());
        let mut n = 0;
        log.replay(&mut |_| n += 1).unwrap();
        assert_eq!(n, 1);
    }
}
