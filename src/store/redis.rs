//! The log on Redis, for several nodes (docs/ARCHITECTURE.md, "Several nodes on Redis").
//!
//! Every key of one deployment carries the prefix as a hash tag (`{muster}:log`), so a
//! deployment lives in one Redis Cluster slot and a script may touch all its keys.
//!
//! - `{p}:log`: a stream, one entry per append, id `0-<last seq of the batch>`, field `e`:
//!   the batch's events as JSON. Every node tails it and applies the events to its state;
//!   `apply` derives the frames, so the log carries no frames.
//! - `{p}:s:<stream>`: a list per recipient of the frames' wire texts. A stream's seqs
//!   run 1, 2, 3… without gaps, so frame seq n is at index n - 1: resume (`after_seq`) is
//!   one LRANGE. (A list entry costs about 100 bytes besides the text; a Redis stream per
//!   recipient cost 4 KiB, and 50,000 new streams twice the time to write.) A frame whose
//!   data it shares with other frames of its append (a mobilization order, the same for a
//!   team's members) is an entry `&<kind> <field>` instead, its data stored once in
//!   `{p}:d` under that field; a read splices it back into the same text.
//! - `{p}:i:<incident>`: the incident's events, for its timeline.
//! - `{p}:lease`, `{p}:epoch`: the engine lease and its fencing epoch (crate::cluster).
//! - `{p}:positions`: members' last known positions (soft state, a hash), and
//!   `{p}:positions:changes`, a stream with one entry per flush of the positions that
//!   changed, from which replicas take only what is new (`positions_changed`).
//!
//! An append is one Lua script: it checks the lease token first, so an engine that lost its
//! lease (a deposed engine) cannot write, then adds the log entry (whose id must be above the
//! last: nothing is written twice), then the frames and the incident entries. Scripts run
//! atomically; with `appendfsync always` Redis syncs them to its AOF before it answers.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use redis::{Client, Connection, ConnectionLike, RedisResult, Script};

use super::{
    DecisionPage, DecisionQuery, EventLog, HookStore, LogReader, SnapshotStore, StoreError, StoredFrame, TimelineEntry,
};
use crate::domain::event::{Event, EventBody, Frame, frame_data, frame_text};
use crate::domain::geo::Position;

/// Key names of one deployment.
#[derive(Debug, Clone)]
pub struct RedisKeys {
    /// `{prefix}:`
    base: String,
}

impl RedisKeys {
    pub fn new(prefix: &str) -> Self {
        RedisKeys { base: format!("{{{prefix}}}:") }
    }
    pub fn base(&self) -> &str {
        &self.base
    }
    pub fn log(&self) -> String {
        format!("{}log", self.base)
    }
    pub fn lease(&self) -> String {
        format!("{}lease", self.base)
    }
    pub fn epoch(&self) -> String {
        format!("{}epoch", self.base)
    }
    pub fn snapshot(&self) -> String {
        format!("{}snap", self.base)
    }
    pub fn positions(&self) -> String {
        format!("{}positions", self.base)
    }
    pub fn position_changes(&self) -> String {
        format!("{}positions:changes", self.base)
    }
    pub fn commands(&self) -> String {
        format!("{}cmd", self.base)
    }
    pub fn replies(&self, node: &str) -> String {
        format!("{}reply:{node}", self.base)
    }
    pub fn stream(&self, stream: &str) -> String {
        format!("{}s:{stream}", self.base)
    }
    pub fn incident(&self, id: &str) -> String {
        format!("{}i:{id}", self.base)
    }
    pub fn payloads(&self) -> String {
        format!("{}d", self.base)
    }
    /// The webhook deliverer's records (`HookStore`), one hash.
    pub fn hooks(&self) -> String {
        format!("{}hooks", self.base)
    }
}

/// One connection that reconnects on the next use after it broke. Every read and write has
/// a timeout, so a Redis that vanished never hangs a thread.
pub struct RedisConn {
    client: Client,
    conn: Option<Connection>,
    timeout: Duration,
}

impl RedisConn {
    pub fn new(client: Client, timeout: Duration) -> Self {
        RedisConn { client, conn: None, timeout }
    }

    pub fn run<T>(&mut self, f: impl FnOnce(&mut Connection) -> RedisResult<T>) -> RedisResult<T> {
        if self.conn.as_ref().is_some_and(|c| !c.is_open()) {
            self.conn = None;
        }
        if self.conn.is_none() {
            let c = self.client.get_connection_with_timeout(Duration::from_secs(1))?;
            c.set_read_timeout(Some(self.timeout))?;
            c.set_write_timeout(Some(self.timeout))?;
            self.conn = Some(c);
        }
        let r = f(self.conn.as_mut().expect("connected above"));
        if let Err(e) = &r
            && (e.is_io_error() || e.is_timeout() || e.is_connection_dropped() || e.is_unrecoverable_error())
        {
            self.conn = None;
        }
        r
    }
}

/// `Ok` if Redis syncs every write to its append-only file before answering.
pub fn check_persistence(c: &mut Connection) -> Result<(), StoreError> {
    let pairs: Vec<String> = redis::cmd("CONFIG").arg("GET").arg("append*").query(c)?;
    let get = |k: &str| pairs.chunks(2).find(|p| p[0] == k).and_then(|p| p.get(1)).map(String::as_str);
    match (get("appendonly"), get("appendfsync")) {
        (Some("yes"), Some("always")) => Ok(()),
        (a, f) => Err(StoreError::NotDurable(format!(
            "appendonly={}, appendfsync={} (muster needs appendonly yes and appendfsync always)",
            a.unwrap_or("?"),
            f.unwrap_or("?")
        ))),
    }
}

const APPEND: &str = r#"
-- KEYS[1] lease; ARGV: token, base, log id, events, nframes, (stream, seq, entry)*, npayloads, (field, data)*,
-- nincident, (id, seq, kind, actor, at, body)*
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return redis.error_reply('FENCED this node no longer holds the engine lease')
end
local base = ARGV[2]
redis.call('XADD', base .. 'log', ARGV[3], 'e', ARGV[4])
local i = 6
local misplaced = 0
for _ = 1, tonumber(ARGV[5]) do
  -- The list's new length is the frame's seq, unless the list is out of step with the log.
  if redis.call('RPUSH', base .. 's:' .. ARGV[i], ARGV[i + 2]) ~= tonumber(ARGV[i + 1]) then
    misplaced = misplaced + 1
  end
  i = i + 3
end
local n = tonumber(ARGV[i])
i = i + 1
for _ = 1, n do
  redis.call('HSET', base .. 'd', ARGV[i], ARGV[i + 1])
  i = i + 2
end
n = tonumber(ARGV[i])
i = i + 1
for _ = 1, n do
  redis.call('XADD', base .. 'i:' .. ARGV[i], '0-' .. ARGV[i + 1], 'k', ARGV[i + 2], 'a', ARGV[i + 3], 't', ARGV[i + 4], 'b', ARGV[i + 5])
  i = i + 6
end
return misplaced
"#;

/// A snapshot's bytes go to `{p}:snap:<seq>` as a list of chunks of this size, one
/// command each, so Redis serves the engine's appends between them instead of stalling
/// for one write of tens of megabytes.
const SNAPSHOT_CHUNK: usize = 1 << 20;

const COMMIT_SNAPSHOT: &str = r#"
-- KEYS[1] {p}:snap (field seq; the chunks are in {p}:snap:<seq>), KEYS[2] log; ARGV: seq
-- Keeps the later snapshot, then trims log entries wholly before the one it replaced: a
-- replica a little behind still finds its next entries; one further behind sees a gap in
-- the seqs and restores the snapshot.
local previous = tonumber(redis.call('HGET', KEYS[1], 'seq') or '0')
if tonumber(ARGV[1]) <= previous then
  redis.call('UNLINK', KEYS[1] .. ':' .. ARGV[1])
  return 0
end
redis.call('HSET', KEYS[1], 'seq', ARGV[1])
if previous > 0 then
  redis.call('UNLINK', KEYS[1] .. ':' .. previous)
  redis.call('XTRIM', KEYS[2], 'MINID', '0-' .. (previous + 1))
end
return 1
"#;

const LOAD_SNAPSHOT: &str = r#"
-- KEYS[1] {p}:snap: its seq and its chunks, read together
local seq = redis.call('HGET', KEYS[1], 'seq')
if not seq then
  return false
end
return {seq, redis.call('LRANGE', KEYS[1] .. ':' .. seq, 0, -1)}
"#;

fn load_snapshot(conn: &mut RedisConn, keys: &RedisKeys) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
    let script = Script::new(LOAD_SNAPSHOT);
    let mut inv = script.prepare_invoke();
    inv.key(keys.snapshot());
    let found: Option<(u64, Vec<Vec<u8>>)> = conn.run(|c| inv.invoke(c))?;
    Ok(found.map(|(seq, chunks)| (seq, chunks.concat())))
}

/// The snapshotter's connection to Redis (`crate::snapshots`).
/// The webhook deliverer's connection (`HookStore`): the log, and its records in one hash.
pub struct RedisHooks {
    conn: RedisConn,
    keys: RedisKeys,
}

impl RedisHooks {
    pub fn new(client: Client, keys: RedisKeys) -> Self {
        RedisHooks { conn: RedisConn::new(client, Duration::from_secs(5)), keys }
    }
}

impl HookStore for RedisHooks {
    fn events_after(&mut self, after: u64, limit: usize) -> Result<Vec<Event>, StoreError> {
        let keys = &self.keys;
        self.conn.run(|c| Ok(read_log(c, keys, after, (limit / 10).max(1))))?
    }

    fn get(&mut self, key: &str) -> Result<Option<String>, StoreError> {
        let hash = self.keys.hooks();
        Ok(self.conn.run(|c| redis::cmd("HGET").arg(&hash).arg(key).query(c))?)
    }

    fn put(&mut self, key: &str, value: &str) -> Result<(), StoreError> {
        let hash = self.keys.hooks();
        Ok(self.conn.run(|c| redis::cmd("HSET").arg(&hash).arg(key).arg(value).exec(c))?)
    }

    fn delete(&mut self, key: &str) -> Result<(), StoreError> {
        let hash = self.keys.hooks();
        Ok(self.conn.run(|c| redis::cmd("HDEL").arg(&hash).arg(key).exec(c))?)
    }

    fn scan(&mut self, prefix: &str) -> Result<Vec<(String, String)>, StoreError> {
        let hash = self.keys.hooks();
        let all: Vec<(String, String)> = self.conn.run(|c| redis::cmd("HGETALL").arg(&hash).query(c))?;
        let mut found: Vec<(String, String)> = all.into_iter().filter(|(k, _)| k.starts_with(prefix)).collect();
        found.sort();
        Ok(found)
    }
}

pub struct RedisSnapshots {
    conn: RedisConn,
    keys: RedisKeys,
    require_persistence: bool,
}

impl RedisSnapshots {
    pub fn new(client: Client, keys: RedisKeys, require_persistence: bool) -> Self {
        RedisSnapshots { conn: RedisConn::new(client, Duration::from_secs(10)), keys, require_persistence }
    }
}

impl SnapshotStore for RedisSnapshots {
    fn load(&mut self) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        load_snapshot(&mut self.conn, &self.keys)
    }

    fn progress(&mut self) -> Result<(u64, u64), StoreError> {
        let (snap, log) = (self.keys.snapshot(), self.keys.log());
        let snapshot: Option<u64> = self.conn.run(|c| redis::cmd("HGET").arg(&snap).arg("seq").query(c))?;
        let last: Entries =
            self.conn.run(|c| redis::cmd("XREVRANGE").arg(&log).arg("+").arg("-").arg("COUNT").arg(1).query(c))?;
        let last = last.first().and_then(|(id, _)| id.strip_prefix("0-")?.parse().ok()).unwrap_or(0);
        Ok((snapshot.unwrap_or(0), last))
    }

    fn events_after(&mut self, after: u64, limit: usize) -> Result<Vec<Event>, StoreError> {
        let keys = &self.keys;
        // Log entries are batches of events, one each under light load, up to a group
        // commit's under a surge: a tenth of `limit` entries is a middle way.
        self.conn.run(|c| Ok(read_log(c, keys, after, (limit / 10).max(1))))?
    }

    fn save(&mut self, seq: u64, body: &[u8]) -> Result<(), StoreError> {
        if self.require_persistence {
            self.conn.run(|c| Ok(check_persistence(c)))??;
        }
        let chunks = format!("{}:{seq}", self.keys.snapshot());
        self.conn.run(|c| redis::cmd("DEL").arg(&chunks).exec(c))?;
        for chunk in body.chunks(SNAPSHOT_CHUNK) {
            self.conn.run(|c| redis::cmd("RPUSH").arg(&chunks).arg(chunk).exec(c))?;
        }
        let script = Script::new(COMMIT_SNAPSHOT);
        let mut inv = script.prepare_invoke();
        inv.key(self.keys.snapshot()).key(self.keys.log()).arg(seq);
        let _: i64 = self.conn.run(|c| inv.invoke(c))?;
        Ok(())
    }
}

/// A batch of events as the log entry's `e` field.
pub fn encode_events(events: &[Event]) -> String {
    let rows: Vec<_> = events.iter().map(|e| (e.seq, e.at, &e.actor, &e.body)).collect();
    serde_json::to_string(&rows).expect("events serialize")
}

/// The events of one log entry (`id` for the error message).
pub fn decode_events(id: &str, raw: &[u8]) -> Result<Vec<Event>, StoreError> {
    let rows: Vec<(u64, i64, String, EventBody)> = serde_json::from_slice(raw).map_err(|e| corrupt(id, e))?;
    Ok(rows.into_iter().map(|(seq, at, actor, body)| Event { seq, at, actor, body }).collect())
}

fn corrupt(id: &str, e: impl std::fmt::Display) -> StoreError {
    let seq = id.strip_prefix("0-").and_then(|s| s.parse().ok()).unwrap_or(0);
    StoreError::Corrupt(seq, e.to_string())
}

/// Stream entries as redis answers XRANGE: (id, [field, value, field, value…]).
pub type Entries = Vec<(String, Vec<Vec<u8>>)>;

/// The value of `name` in an entry's flat [field, value, …] list.
pub fn field<'a>(fields: &'a [Vec<u8>], name: &str) -> Option<&'a [u8]> {
    fields.chunks(2).find(|p| p[0] == name.as_bytes()).and_then(|p| p.get(1)).map(Vec::as_slice)
}

/// Entries of `key` after the id `after`, at most `count`, waiting up to `block_ms` for
/// the first (a blocking XREAD: the connection's timeout must be longer).
pub fn xread(c: &mut RedisConn, key: &str, after: &str, count: usize, block_ms: u64) -> RedisResult<Entries> {
    let found: Option<Vec<(String, Entries)>> = c.run(|c| {
        redis::cmd("XREAD")
            .arg("COUNT")
            .arg(count)
            .arg("BLOCK")
            .arg(block_ms)
            .arg("STREAMS")
            .arg(key)
            .arg(after)
            .query(c)
    })?;
    Ok(found.into_iter().flatten().flat_map(|(_, e)| e).collect())
}

/// The events of log entries, in order.
pub fn events_of(entries: Entries) -> Result<Vec<Event>, StoreError> {
    let mut out = Vec::new();
    for (id, fields) in entries {
        let raw = field(&fields, "e").ok_or_else(|| corrupt(&id, "log entry without events"))?;
        out.extend(decode_events(&id, raw)?);
    }
    Ok(out)
}

/// Log entries after `after_seq`, at most `count`.
pub fn read_log(c: &mut Connection, keys: &RedisKeys, after_seq: u64, count: usize) -> Result<Vec<Event>, StoreError> {
    let entries: Entries = redis::cmd("XRANGE")
        .arg(keys.log())
        .arg(format!("(0-{after_seq}"))
        .arg("+")
        .arg("COUNT")
        .arg(count)
        .query(c)?;
    events_of(entries)
}

/// The fencing token this node holds while it is the engine (set by `cluster::Node`).
pub type Fence = std::sync::Arc<Mutex<Option<String>>>;

/// The engine's side of the log on Redis.
pub struct RedisLog {
    conn: RedisConn,
    keys: RedisKeys,
    fence: Fence,
    require_persistence: bool,
    /// When persistence was last seen on, so it is not asked on every append.
    durable_until: Option<Instant>,
    script: Script,
    /// The last `{p}:positions:changes` entry `positions_changed` has read.
    positions_read: Option<String>,
}

/// Flushes of positions kept in `{p}:positions:changes` (one entry per
/// `engine.position_flush_s`: at 5 s ten minutes; replicas read as often as the engine
/// flushes). A replica further behind than that reads the whole hash again. Each entry
/// holds the flush's changed positions (~40 bytes each), so this bounds the memory too.
const POSITION_FLUSHES_KEPT: usize = 120;

/// A stream entry id, `<ms>-<seq>`, as a pair that orders as Redis does.
fn entry_id(id: &str) -> Option<(u64, u64)> {
    let (ms, seq) = id.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

fn position_text(p: &Position) -> String {
    format!("{},{}", p.lat, p.lng)
}

fn parse_position(v: &[u8]) -> Option<Position> {
    let (lat, lng) = std::str::from_utf8(v).ok()?.split_once(',')?;
    Position::new(lat.parse().ok()?, lng.parse().ok()?).ok()
}

impl RedisLog {
    pub fn new(client: Client, keys: RedisKeys, fence: Fence, require_persistence: bool) -> Self {
        RedisLog {
            conn: RedisConn::new(client, Duration::from_secs(10)),
            keys,
            fence,
            require_persistence,
            durable_until: None,
            script: Script::new(APPEND),
            positions_read: None,
        }
    }

    fn ensure_durable(&mut self) -> Result<(), StoreError> {
        if !self.require_persistence || self.durable_until.is_some_and(|t| Instant::now() < t) {
            return Ok(());
        }
        self.durable_until = None;
        self.conn.run(|c| Ok(check_persistence(c)))??;
        self.durable_until = Some(Instant::now() + Duration::from_secs(2));
        Ok(())
    }
}

impl EventLog for RedisLog {
    fn replay(&mut self, apply: &mut dyn FnMut(Event)) -> Result<(), StoreError> {
        self.replay_after(0, apply)
    }

    fn replay_after(&mut self, mut after: u64, apply: &mut dyn FnMut(Event)) -> Result<(), StoreError> {
        loop {
            let keys = &self.keys;
            let events = self.conn.run(|c| Ok(read_log(c, keys, after, 500)))??;
            let Some(last) = events.last() else { return Ok(()) };
            after = last.seq;
            events.into_iter().for_each(&mut *apply);
        }
    }

    fn append(&mut self, events: &[Event], frames: &[(Frame, String)]) -> Result<(), StoreError> {
        let Some(last) = events.last() else { return Ok(()) };
        self.ensure_durable()?;
        let token = self.fence.lock().unwrap_or_else(|p| p.into_inner()).clone().ok_or(StoreError::Fenced)?;
        let mut inv = self.script.prepare_invoke();
        inv.key(self.keys.lease())
            .arg(token)
            .arg(self.keys.base())
            .arg(format!("0-{}", last.seq))
            .arg(encode_events(events))
            .arg(frames.len());
        let (entries, payloads) = list_entries(last.seq, frames);
        for ((f, _), entry) in frames.iter().zip(&entries) {
            inv.arg(&f.stream).arg(f.seq).arg(entry.as_ref());
        }
        inv.arg(payloads.len());
        for (field, data) in payloads {
            inv.arg(field).arg(data);
        }
        let of_incidents: Vec<_> = events.iter().filter_map(|e| e.body.incident_id().map(|id| (id, e))).collect();
        inv.arg(of_incidents.len());
        for (id, e) in of_incidents {
            let body = serde_json::to_string(&e.body).expect("events serialize");
            inv.arg(id).arg(e.seq).arg(e.body.kind()).arg(&e.actor).arg(e.at).arg(body);
        }
        let misplaced: i64 = self.conn.run(|c| inv.invoke(c))?;
        if misplaced > 0 {
            // Only a hand-edited or half-restored Redis gets here: resume would serve the
            // wrong frames for those streams. Loud, but the log itself is right.
            tracing::error!(misplaced, "recipient lists out of step with the log");
        }
        Ok(())
    }

    fn load_snapshot(&mut self) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        load_snapshot(&mut self.conn, &self.keys)
    }

    fn save_positions(&mut self, positions: &[(String, Position)]) -> Result<(), StoreError> {
        if positions.is_empty() {
            return Ok(());
        }
        // The hash for whoever needs them all, the changes for replicas; both or neither.
        let mut hset = redis::cmd("HSET");
        hset.arg(self.keys.positions());
        let mut xadd = redis::cmd("XADD");
        xadd.arg(self.keys.position_changes()).arg("MAXLEN").arg("~").arg(POSITION_FLUSHES_KEPT).arg("*");
        for (id, p) in positions {
            let v = position_text(p);
            hset.arg(id).arg(&v);
            xadd.arg(id).arg(v);
        }
        let mut pipe = redis::pipe();
        pipe.atomic().add_command(hset).ignore().add_command(xadd).ignore();
        self.conn.run(|c| pipe.query::<()>(c))?;
        Ok(())
    }

    fn load_positions(&mut self) -> Result<Vec<(String, Position)>, StoreError> {
        let key = self.keys.positions();
        let all: Vec<(String, Vec<u8>)> = self.conn.run(|c| redis::cmd("HGETALL").arg(key).query(c))?;
        Ok(all.into_iter().filter_map(|(id, v)| Some((id, parse_position(&v)?))).collect())
    }

    /// Reads `{p}:positions:changes` after the last entry read. The first time, or when
    /// that entry has been trimmed away (so later ones may have been too), it notes the
    /// newest entry and then reads the whole hash: changes after that entry are read
    /// again next time, and applied in order they leave each member where the hash has it.
    fn positions_changed(&mut self) -> Result<Vec<(String, Position)>, StoreError> {
        let key = self.keys.position_changes();
        if let Some(after) = self.positions_read.clone() {
            let (oldest, entries): (Entries, Entries) = self.conn.run(|c| {
                redis::pipe()
                    .cmd("XRANGE")
                    .arg(&key)
                    .arg("-")
                    .arg("+")
                    .arg("COUNT")
                    .arg(1)
                    .cmd("XRANGE")
                    .arg(&key)
                    .arg(format!("({after}"))
                    .arg("+")
                    .query(c)
            })?;
            // Nothing unread was trimmed: `after` is still kept, or the stream was empty at
            // the last read (`0-0`) and has not reached its length since. An empty stream
            // after entries were read was deleted: read everything again.
            let kept = match oldest.first() {
                Some((id, _)) => {
                    entry_id(id) <= entry_id(&after) || (after == "0-0" && entries.len() < POSITION_FLUSHES_KEPT)
                }
                None => after == "0-0",
            };
            if kept {
                if let Some((id, _)) = entries.last() {
                    self.positions_read = Some(id.clone());
                }
                return Ok(entries
                    .iter()
                    .flat_map(|(_, fields)| fields.chunks(2))
                    .filter_map(|f| {
                        let id = String::from_utf8(f.first()?.clone()).ok()?;
                        Some((id, parse_position(f.get(1)?)?))
                    })
                    .collect());
            }
        }
        let newest: Entries =
            self.conn.run(|c| redis::cmd("XREVRANGE").arg(&key).arg("+").arg("-").arg("COUNT").arg(1).query(c))?;
        let all = self.load_positions()?;
        self.positions_read = Some(newest.first().map_or_else(|| "0-0".to_string(), |(id, _)| id.clone()));
        Ok(all)
    }

    fn probe(&mut self) -> Result<(), StoreError> {
        self.durable_until = None;
        self.ensure_durable()?;
        self.conn.run(|c| redis::cmd("PING").exec(c))?;
        if self.fence.lock().unwrap_or_else(|p| p.into_inner()).is_none() {
            return Err(StoreError::Fenced);
        }
        Ok(())
    }
}

/// The gateway's side: frames for resume and incident timelines, from a small pool of
/// connections (used from `spawn_blocking`).
pub struct RedisReader {
    client: Client,
    keys: RedisKeys,
    idle: Mutex<Vec<RedisConn>>,
}

impl RedisReader {
    pub fn new(client: Client, keys: RedisKeys) -> Self {
        RedisReader { client, keys, idle: Mutex::new(Vec::new()) }
    }

    /// Runs a read on a pooled connection. A pooled connection may have died with Redis or
    /// the link to it (a restart, a cut) while it sat idle; every read here is idempotent, so
    /// one that fails on a reused connection is tried once more on a fresh one, instead of
    /// closing the socket that asked (history checking, anomaly 2).
    fn with<T>(&self, f: impl Fn(&mut Connection) -> RedisResult<T>) -> Result<T, StoreError> {
        let fresh = || RedisConn::new(self.client.clone(), Duration::from_secs(5));
        let taken = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let reused = taken.is_some();
        let mut conn = taken.unwrap_or_else(fresh);
        let mut r = conn.run(&f);
        if reused && r.as_ref().is_err_and(|e| e.is_io_error() || e.is_timeout() || e.is_connection_dropped()) {
            conn = fresh();
            r = conn.run(&f);
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < 8 {
            idle.push(conn);
        }
        Ok(r?)
    }
}

/// Each frame's list entry: its text, or `&<kind> <field>` when its data is shared with
/// other frames of the append, with those data (field, JSON) to store once in `{p}:d`.
/// Fields are `<the append's last seq>.<n>`, unique across appends.
fn list_entries<'a>(
    last_seq: u64,
    frames: &'a [(Frame, String)],
) -> (Vec<std::borrow::Cow<'a, str>>, Vec<(String, &'a str)>) {
    use std::borrow::Cow;
    use std::collections::HashMap;
    let mut uses: HashMap<*const (), usize> = HashMap::new();
    for (f, _) in frames {
        *uses.entry(f.data.ptr()).or_default() += 1;
    }
    let mut fields: HashMap<*const (), usize> = HashMap::new();
    let mut payloads: Vec<(String, &str)> = Vec::new();
    let entries = frames
        .iter()
        .map(|(f, text)| {
            let ptr = f.data.ptr();
            if uses[&ptr] < 2 || f.kind.contains(' ') {
                return Cow::Borrowed(text.as_str());
            }
            // The data's text is taken from the first frame that carries it.
            let n = match fields.get(&ptr) {
                Some(&n) => n,
                None => {
                    let Some(data) = frame_data(text, f.kind, f.seq) else { return Cow::Borrowed(text.as_str()) };
                    payloads.push((format!("{last_seq}.{}", payloads.len()), data));
                    fields.insert(ptr, payloads.len() - 1);
                    payloads.len() - 1
                }
            };
            Cow::Owned(format!("&{} {}", f.kind, payloads[n].0))
        })
        .collect();
    (entries, payloads)
}

impl RedisReader {
    /// Frames from their (seq, list entry), shared data spliced back in (one HMGET for
    /// all of them).
    fn texts(&self, c: &mut Connection, entries: Vec<(u64, String)>) -> RedisResult<Vec<StoredFrame>> {
        let refs: Vec<(&str, &str)> =
            entries.iter().filter_map(|(_, e)| e.strip_prefix('&')).filter_map(|r| r.split_once(' ')).collect();
        let data: std::collections::HashMap<String, String> = if refs.is_empty() {
            Default::default()
        } else {
            let fields: Vec<String> = refs.iter().map(|(_, field)| field.to_string()).collect();
            let found: Vec<Option<String>> = redis::cmd("HMGET").arg(self.keys.payloads()).arg(&fields).query(c)?;
            fields.into_iter().zip(found).filter_map(|(f, d)| d.map(|d| (f, d))).collect()
        };
        let mut out = Vec::with_capacity(entries.len());
        for (seq, entry) in entries {
            let text = match entry.strip_prefix('&').and_then(|r| r.split_once(' ')) {
                Some((kind, field)) => match data.get(field) {
                    Some(d) => frame_text(kind, seq, d),
                    None => {
                        return Err(redis::RedisError::from((
                            redis::ErrorKind::Client,
                            "a frame's shared data is missing",
                            format!("field {field} of {}", self.keys.payloads()),
                        )));
                    }
                },
                None => entry,
            };
            out.push(StoredFrame { seq, text });
        }
        Ok(out)
    }
}

impl LogReader for RedisReader {
    fn frames_after(&self, stream: &str, after: u64, limit: usize) -> Result<Vec<StoredFrame>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let key = self.keys.stream(stream);
        // Seq n is at index n - 1: the frames after `after` start at index `after`.
        self.with(|c| {
            let entries: Vec<String> =
                redis::cmd("LRANGE").arg(&key).arg(after).arg(after + limit as u64 - 1).query(c)?;
            self.texts(c, (after + 1..).zip(entries).collect())
        })
    }

    fn frames_at(&self, stream: &str, seqs: &[u64]) -> Result<Vec<StoredFrame>, StoreError> {
        let mut seqs: Vec<u64> = seqs.iter().copied().filter(|&s| s > 0).collect();
        if seqs.is_empty() {
            return Ok(Vec::new());
        }
        seqs.sort_unstable();
        let key = self.keys.stream(stream);
        let mut pipe = redis::pipe();
        for s in &seqs {
            pipe.cmd("LINDEX").arg(&key).arg(s - 1);
        }
        self.with(|c| {
            let found: Vec<Option<String>> = pipe.query(c)?;
            self.texts(c, seqs.iter().copied().zip(found).filter_map(|(seq, t)| Some((seq, t?))).collect())
        })
    }

    fn timeline(&self, incident_id: &str) -> Result<Vec<TimelineEntry>, StoreError> {
        let key = self.keys.incident(incident_id);
        let entries: Entries = self.with(|c| redis::cmd("XRANGE").arg(&key).arg("-").arg("+").query(c))?;
        let mut out = Vec::with_capacity(entries.len());
        for (id, f) in entries {
            let seq = seq_of(&id)?;
            let text = |name: &str| String::from_utf8_lossy(field(&f, name).unwrap_or_default()).into_owned();
            let at = text("t").parse().map_err(|e| corrupt(&id, e))?;
            out.push(TimelineEntry::from_logged(seq, at, text("k"), text("a"), &text("b"))?);
        }
        Ok(out)
    }

    /// XRANGE over `{p}:log` from the cursor, the events filtered here. The log holds what
    /// came after the latest snapshot (older entries are trimmed when one is saved): on
    /// Redis the audit reaches back that far.
    fn decisions(&self, q: &DecisionQuery) -> Result<DecisionPage, StoreError> {
        let wanted = |e: &Event| {
            e.seq > q.after
                && q.kinds.iter().any(|k| k == e.body.kind())
                && crate::domain::audit::is_audit_kind(e.body.kind())
                && q.from.is_none_or(|f| e.at >= f)
                && q.to.is_none_or(|t| e.at < t)
                && q.actor.as_ref().is_none_or(|a| a == &e.actor)
        };
        let mut events = Vec::new();
        let mut cursor = q.after;
        if q.limit == 0 {
            return Ok(DecisionPage { events, through: None });
        }
        let key = self.keys.log();
        for _ in 0..DECISION_ROUNDS {
            let from = format!("(0-{cursor}");
            let entries: Entries = self.with(|c| {
                redis::cmd("XRANGE").arg(&key).arg(&from).arg("+").arg("COUNT").arg(DECISION_ENTRIES).query(c)
            })?;
            let end = entries.len() < DECISION_ENTRIES;
            if let Some((id, _)) = entries.last() {
                cursor = seq_of(id)?;
            }
            for e in events_of(entries)? {
                if wanted(&e) {
                    let seq = e.seq;
                    events.push(e);
                    if events.len() == q.limit {
                        return Ok(DecisionPage { events, through: Some(seq) });
                    }
                }
            }
            if end {
                return Ok(DecisionPage { events, through: None });
            }
        }
        Ok(DecisionPage { events, through: Some(cursor) })
    }
}

/// Log entries `decisions` reads per call at most, `DECISION_ENTRIES` at a time: a page of
/// the audit costs a bounded read; the answer says where to go on (`through`).
const DECISION_ROUNDS: usize = 20;
const DECISION_ENTRIES: usize = 100;

fn seq_of(id: &str) -> Result<u64, StoreError> {
    id.strip_prefix("0-").and_then(|s| s.parse().ok()).ok_or_else(|| corrupt(id, "an entry id not of the form 0-<seq>"))
}
