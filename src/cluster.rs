//! Several nodes on Redis (docs/ARCHITECTURE.md, "Several nodes on Redis").
//!
//! Every node runs the same process: gateways (HTTP, websockets) and an engine thread. The
//! engine thread of one node at a time holds the lease and is *the* engine, the single
//! writer; on every other node it is a replica that tails the log, applies each event to its
//! own state (so reads and authorization are local) and pushes the frames that `apply`
//! derives to its own sockets.
//!
//! - `Node`: the lease (with a fencing epoch) and the tail of the log, used by the engine
//!   thread (`engine::replica`).
//! - `Remote`: how a node that is not the engine submits a command: an entry in the
//!   `{p}:cmd` stream; the answer comes back on the node's own reply stream with the seq
//!   of the log at that moment, and the node waits until its replica has applied that far
//!   before it answers its client (read your writes on every node).
//! - `Inbox`: the engine's side of it: reads `{p}:cmd` while this node holds the lease,
//!   feeds the engine's mailbox, and writes the answers back.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::{Client, Script};
use serde::{Deserialize, Serialize};
use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::domain::dispatcher::{Actor, Command, DomainError, Reply};
use crate::domain::event::Event;
use crate::mailbox::{EngineError, Request, now_ms};
use crate::settings::Settings;
use crate::store::StoreError;
use crate::store::redis::{Entries, Fence, RedisConn, RedisKeys, check_persistence, events_of, field, xread};

const ACQUIRE: &str = r#"
-- KEYS[1] lease, KEYS[2] epoch; ARGV[1] node, ARGV[2] lease ms
local held = redis.call('GET', KEYS[1])
if held then return {0, held} end
local token = ARGV[1] .. '/' .. redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], token, 'PX', ARGV[2])
return {1, token}
"#;

const RENEW: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"#;

const RELEASE: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"#;

/// Who holds the engine lease, as `Node::try_lead` found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lease {
    /// This node took it: the fencing token.
    Took(String),
    /// Another node holds it (its token).
    HeldBy(String),
}

/// What a node needs to take part: built once from the settings.
pub struct Node {
    pub id: String,
    pub keys: RedisKeys,
    pub client: Client,
    pub lease: Duration,
    pub require_persistence: bool,
    pub command_timeout: Duration,
    /// The fencing token while this node is the engine; the log's append checks it.
    pub fence: Fence,
    /// True while this node is the engine.
    pub leading: Arc<AtomicBool>,
    /// Commands this node forwarded, waiting for the engine's answer.
    pending: Pending,
    conn: RedisConn,
    acquire: Script,
    renew: Script,
    release: Script,
}

impl Node {
    pub fn new(settings: &Settings) -> anyhow::Result<Node> {
        let client = Client::open(settings.redis_url.as_str())?;
        let id = if settings.redis.node_id.is_empty() {
            let host = std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_string()).unwrap_or_default();
            format!(
                "{}-{}-{:04x}",
                if host.is_empty() { "node" } else { &host },
                std::process::id(),
                rand::random::<u16>()
            )
        } else {
            settings.redis.node_id.clone()
        };
        Ok(Node {
            id,
            keys: RedisKeys::new(&settings.redis.prefix),
            conn: RedisConn::new(client.clone(), Duration::from_secs(5)),
            client,
            lease: Duration::from_millis(settings.redis.lease_ms),
            require_persistence: settings.redis.require_persistence,
            command_timeout: Duration::from_millis(settings.redis.command_timeout_ms),
            fence: Fence::default(),
            leading: Arc::new(AtomicBool::new(false)),
            pending: Pending::default(),
            acquire: Script::new(ACQUIRE),
            renew: Script::new(RENEW),
            release: Script::new(RELEASE),
        })
    }

    pub fn is_leading(&self) -> bool {
        self.leading.load(Ordering::Acquire)
    }

    fn token(&self) -> Option<String> {
        self.fence.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Takes the lease if nobody holds it. The token is `<node>/<epoch>`, the epoch one more
    /// than any before it.
    pub fn try_lead(&mut self) -> Result<Lease, StoreError> {
        let ms = self.lease.as_millis() as u64;
        let (lease, epoch, id) = (self.keys.lease(), self.keys.epoch(), self.id.clone());
        let script = &self.acquire;
        let (took, token): (i64, String) = self.conn.run(|c| script.key(lease).key(epoch).arg(id).arg(ms).invoke(c))?;
        if took == 0 {
            return Ok(Lease::HeldBy(token));
        }
        tracing::warn!(token = %token, "took the engine lease");
        *self.fence.lock().unwrap_or_else(|p| p.into_inner()) = Some(token.clone());
        Ok(Lease::Took(token))
    }

    /// The engine changed: commands forwarded to the one before will not be answered
    /// (the new engine reads commands from the moment it took over). Their callers get 503
    /// at once instead of waiting out the timeout.
    pub fn fail_pending(&self) {
        let waiting: Vec<_> = self.pending.lock().unwrap_or_else(|p| p.into_inner()).drain().collect();
        if !waiting.is_empty() {
            tracing::warn!(commands = waiting.len(), "the engine changed; failing the commands sent to the one before");
        }
        for (_, w) in waiting {
            let _ = w.send((Err(EngineError::Unknown("the engine changed while it had the command".into())), 0));
        }
    }

    /// Extends the lease; `Ok(false)` when another node holds it now.
    pub fn renew(&mut self) -> Result<bool, StoreError> {
        let Some(token) = self.token() else { return Ok(false) };
        let ms = self.lease.as_millis() as u64;
        let (lease, script) = (self.keys.lease(), &self.renew);
        let n: i64 = self.conn.run(|c| script.key(lease).arg(token).arg(ms).invoke(c))?;
        Ok(n == 1)
    }

    /// Stops being the engine (and lets the lease go at once, if it is still ours).
    pub fn resign(&mut self, release: bool) {
        self.leading.store(false, Ordering::Release);
        let Some(token) = self.fence.lock().unwrap_or_else(|p| p.into_inner()).take() else { return };
        if release {
            let (lease, script) = (self.keys.lease(), &self.release);
            if let Err(e) = self.conn.run(|c| script.key(lease).arg(token).invoke::<i64>(c)) {
                tracing::warn!(error = %e, "could not release the engine lease; it lapses by itself");
            }
        }
    }

    /// Log entries after `after_seq`, waiting up to `block` for one.
    pub fn tail(&mut self, after_seq: u64, block: Duration) -> Result<Vec<Event>, StoreError> {
        let entries =
            xread(&mut self.conn, &self.keys.log(), &format!("0-{after_seq}"), 256, block.as_millis() as u64)?;
        events_of(entries)
    }

    /// Whether Redis takes writes we may confirm: reachable and, unless switched off,
    /// syncing every write to its append-only file.
    pub fn check_store(&mut self) -> Result<(), StoreError> {
        let require = self.require_persistence;
        self.conn.run(|c| {
            Ok(if require { check_persistence(c) } else { redis::cmd("PING").exec(c).map_err(StoreError::from) })
        })?
    }
}

/// A command's answer as it travels back to the node that forwarded it.
#[derive(Debug, Serialize, Deserialize)]
enum ForwardedAnswer {
    Ok(Reply),
    Refused(DomainError),
    Unavailable(String),
    Unknown(String),
    Overloaded,
    NotReady,
}

impl ForwardedAnswer {
    fn of(r: Result<Reply, EngineError>) -> ForwardedAnswer {
        match r {
            Ok(r) => ForwardedAnswer::Ok(r),
            Err(EngineError::Domain(e)) => ForwardedAnswer::Refused(e),
            Err(EngineError::Unavailable(m)) => ForwardedAnswer::Unavailable(m),
            Err(EngineError::Unknown(m)) => ForwardedAnswer::Unknown(m),
            Err(EngineError::Overloaded) => ForwardedAnswer::Overloaded,
            Err(EngineError::NotReady) => ForwardedAnswer::NotReady,
        }
    }

    fn into_result(self) -> Result<Reply, EngineError> {
        match self {
            ForwardedAnswer::Ok(r) => Ok(r),
            ForwardedAnswer::Refused(e) => Err(EngineError::Domain(e)),
            ForwardedAnswer::Unavailable(m) => Err(EngineError::Unavailable(m)),
            ForwardedAnswer::Unknown(m) => Err(EngineError::Unknown(m)),
            ForwardedAnswer::Overloaded => Err(EngineError::Overloaded),
            ForwardedAnswer::NotReady => Err(EngineError::NotReady),
        }
    }
}

/// A command as it travels to the engine from the node that forwards it (`{p}:cmd`).
#[derive(Serialize, Deserialize)]
struct ForwardedCommand {
    actor: Actor,
    cmd: Command,
}

type Waiter = oneshot::Sender<(Result<Reply, EngineError>, u64)>;
type Pending = Arc<Mutex<HashMap<u64, Waiter>>>;

struct Outgoing {
    id: u64,
    body: String,
}

/// The node's way to the engine when it is not the engine itself.
pub struct Remote {
    leading: Arc<AtomicBool>,
    queue: SyncSender<Outgoing>,
    pending: Pending,
    next: AtomicU64,
    timeout: Duration,
    applied: watch::Receiver<u64>,
}

impl Remote {
    pub fn is_leading(&self) -> bool {
        self.leading.load(Ordering::Acquire)
    }

    /// Sends the command to the engine through Redis and waits for its answer, then until
    /// this node's replica has applied the log as far as the answer says.
    pub async fn submit(&self, actor: Actor, cmd: Command) -> Result<Reply, EngineError> {
        let body = serde_json::to_string(&ForwardedCommand { actor, cmd }).expect("commands serialize");
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending.lock().unwrap_or_else(|p| p.into_inner()).insert(id, tx);
        let unpend = || self.pending.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
        match self.queue.try_send(Outgoing { id, body }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                unpend();
                return Err(EngineError::Overloaded);
            }
            Err(TrySendError::Disconnected(_)) => {
                unpend();
                return Err(EngineError::NotReady);
            }
        }
        let deadline = tokio::time::Instant::now() + self.timeout;
        let (result, seq) = match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => return Err(EngineError::Unknown("the way to the engine closed".into())),
            Err(_) => {
                unpend();
                return Err(EngineError::Unknown("the engine did not answer in time".into()));
            }
        };
        let mut applied = self.applied.clone();
        if tokio::time::timeout_at(deadline, applied.wait_for(|&s| s >= seq)).await.is_err() {
            tracing::warn!(seq, "the replica did not catch up with a confirmed command in time");
        }
        result
    }
}

/// Starts the node's forwarding threads (always) and the engine's inbox (it works only
/// while this node holds the lease). `mailbox` is the engine's own.
pub(crate) fn start_routes(
    node: &Node,
    mailbox: SyncSender<Request>,
    applied: watch::Receiver<u64>,
    cancel: CancellationToken,
) -> Remote {
    let pending = node.pending.clone();
    let (queue, outgoing) = std::sync::mpsc::sync_channel::<Outgoing>(65_536);
    let boot = format!("{}:{:08x}", node.id, rand::random::<u32>());
    let replies = node.keys.replies(&boot);
    let conn = || RedisConn::new(node.client.clone(), Duration::from_secs(5));
    {
        let (mut c, keys, replies, cancel) = (conn(), node.keys.clone(), replies.clone(), cancel.clone());
        let boot = boot.clone();
        let timeout = node.command_timeout;
        spawn("muster-forward", move || forward(&mut c, &keys, (&boot, &replies), timeout, outgoing, cancel));
    }
    {
        let (mut c, pending, cancel) = (conn(), pending.clone(), cancel.clone());
        spawn("muster-replies", move || listen(&mut c, &replies, &pending, cancel));
    }
    {
        let (mut c, keys, leading) = (conn(), node.keys.clone(), node.leading.clone());
        let (tx, rx) = std::sync::mpsc::sync_channel(65_536);
        let answer_conn = conn();
        let (keys2, cancel2) = (keys.clone(), cancel.clone());
        spawn("muster-inbox", move || inbox(&mut c, &keys, &leading, &mailbox, &tx, cancel));
        spawn("muster-answers", move || answer(answer_conn, &keys2, rx, cancel2));
    }
    Remote {
        leading: node.leading.clone(),
        queue,
        pending,
        next: AtomicU64::new(1),
        timeout: node.command_timeout,
        applied,
    }
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new().name(name.into()).spawn(f).expect("spawn a cluster thread");
}

/// Writes queued commands to `{p}:cmd`, many per round trip.
fn forward(
    c: &mut RedisConn,
    keys: &RedisKeys,
    (boot, replies): (&str, &str),
    timeout: Duration,
    queue: Receiver<Outgoing>,
    cancel: CancellationToken,
) {
    let stream = keys.commands();
    while !cancel.is_cancelled() {
        let Ok(first) = queue.recv_timeout(Duration::from_millis(200)) else { continue };
        let mut batch = vec![first];
        while batch.len() < 1000 {
            match queue.try_recv() {
                Ok(o) => batch.push(o),
                Err(_) => break,
            }
        }
        // The engine skips what its caller has given up on by the time it reads it.
        let deadline = now_ms() + timeout.as_millis() as i64;
        let mut pipe = redis::pipe();
        for o in &batch {
            pipe.cmd("XADD")
                .arg(&stream)
                .arg("MAXLEN")
                .arg("~")
                .arg(100_000)
                .arg("*")
                .arg("n")
                .arg(boot)
                .arg("r")
                .arg(o.id)
                .arg("d")
                .arg(deadline)
                .arg("b")
                .arg(&o.body)
                .ignore();
        }
        // The reply stream of a node that died goes away by itself.
        pipe.cmd("EXPIRE").arg(replies).arg(600).ignore();
        if let Err(e) = c.run(|c| pipe.exec(c)) {
            // Those commands time out at their callers with 503; nothing was confirmed.
            tracing::warn!(error = %e, commands = batch.len(), "could not forward commands to the engine");
        }
    }
}

/// Reads this node's reply stream and wakes the callers.
fn listen(c: &mut RedisConn, replies: &str, pending: &Mutex<HashMap<u64, Waiter>>, cancel: CancellationToken) {
    let mut last = "0-0".to_string();
    while !cancel.is_cancelled() {
        let entries = match xread(c, replies, &last, 1000, 200) {
            Ok(entries) => entries,
            Err(e) => {
                tracing::warn!(error = %e, "reading command replies failed; retrying");
                std::thread::sleep(Duration::from_millis(200));
                continue;
            }
        };
        for (id, fields) in entries {
            last = id;
            let get = |k: &str| field(&fields, k);
            let (Some(r), Some(a)) = (get("r"), get("a")) else { continue };
            let req: u64 = String::from_utf8_lossy(r).parse().unwrap_or(0);
            let seq: u64 = get("s").and_then(|s| String::from_utf8_lossy(s).parse().ok()).unwrap_or(0);
            let answer = serde_json::from_slice::<ForwardedAnswer>(a)
                .map(ForwardedAnswer::into_result)
                .unwrap_or_else(|e| Err(EngineError::Unavailable(format!("an unreadable answer: {e}"))));
            if let Some(w) = pending.lock().unwrap_or_else(|p| p.into_inner()).remove(&req) {
                let _ = w.send((answer, seq));
            }
        }
    }
}

struct Taken {
    node: String,
    req: String,
    rx: oneshot::Receiver<Result<Reply, EngineError>>,
    logged_at: Arc<AtomicU64>,
}

/// The engine's side: while this node leads, commands from `{p}:cmd` go into its mailbox.
fn inbox(
    c: &mut RedisConn,
    keys: &RedisKeys,
    leading: &AtomicBool,
    mailbox: &SyncSender<Request>,
    answers: &SyncSender<Taken>,
    cancel: CancellationToken,
) {
    let stream = keys.commands();
    let mut last: Option<String> = None;
    while !cancel.is_cancelled() {
        if !leading.load(Ordering::Acquire) {
            last = None;
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        // Commands written before this node took over were for the engine before: their
        // callers time out and retry. Start at the stream's end as it is now.
        if last.is_none() {
            let tail: Result<Entries, _> =
                c.run(|c| redis::cmd("XREVRANGE").arg(&stream).arg("+").arg("-").arg("COUNT").arg(1).query(c));
            match tail {
                Ok(t) => last = Some(t.into_iter().next().map(|(id, _)| id).unwrap_or_else(|| "0-0".into())),
                Err(e) => {
                    tracing::warn!(error = %e, "reading the command stream failed; retrying");
                    std::thread::sleep(Duration::from_millis(200));
                    continue;
                }
            }
        }
        let from = last.clone().unwrap_or_default();
        let entries = match xread(c, &stream, &from, 1000, 100) {
            Ok(entries) => entries,
            Err(e) => {
                tracing::warn!(error = %e, "reading the command stream failed; retrying");
                std::thread::sleep(Duration::from_millis(200));
                continue;
            }
        };
        let now = now_ms();
        for (id, fields) in entries {
            last = Some(id);
            let get = |k: &str| field(&fields, k).map(String::from_utf8_lossy);
            let (Some(node), Some(req), Some(body)) = (get("n"), get("r"), get("b")) else { continue };
            if get("d").and_then(|d| d.parse::<i64>().ok()).is_some_and(|d| d < now) {
                continue;
            }
            let (reply, rx) = oneshot::channel();
            let logged_at = Arc::new(AtomicU64::new(0));
            let taken = Taken { node: node.into_owned(), req: req.into_owned(), rx, logged_at: logged_at.clone() };
            match serde_json::from_str::<ForwardedCommand>(&body) {
                Ok(ForwardedCommand { actor, cmd }) => {
                    if let Err(TrySendError::Full(r) | TrySendError::Disconnected(r)) =
                        mailbox.try_send(Request { actor, cmd, reply, logged_at: Some(logged_at) })
                    {
                        let _ = r.reply.send(Err(EngineError::Overloaded));
                    }
                }
                Err(e) => {
                    let _ = reply.send(Err(EngineError::Unavailable(format!("an unreadable command: {e}"))));
                }
            }
            let _ = answers.send(taken);
        }
    }
}

/// Writes the engine's answers to the reply streams of the nodes that asked, with the seq
/// of the log entry that holds the command's events (0 when it logged none).
fn answer(mut c: RedisConn, keys: &RedisKeys, rx: Receiver<Taken>, cancel: CancellationToken) {
    while !cancel.is_cancelled() {
        let Ok(first) = rx.recv_timeout(Duration::from_millis(200)) else { continue };
        let mut batch = vec![first];
        while batch.len() < 1000 {
            match rx.try_recv() {
                Ok(t) => batch.push(t),
                Err(_) => break,
            }
        }
        let mut pipe = redis::pipe();
        let mut streams = Vec::new();
        for t in batch {
            let result = t.rx.blocking_recv().unwrap_or(Err(EngineError::NotReady));
            let seq = t.logged_at.load(Ordering::Acquire);
            let body = serde_json::to_string(&ForwardedAnswer::of(result)).expect("answers serialize");
            let stream = keys.replies(&t.node);
            pipe.cmd("XADD")
                .arg(&stream)
                .arg("MAXLEN")
                .arg("~")
                .arg(10_000)
                .arg("*")
                .arg("r")
                .arg(&t.req)
                .arg("s")
                .arg(seq)
                .arg("a")
                .arg(body)
                .ignore();
            streams.push(stream);
        }
        streams.dedup();
        for s in streams {
            pipe.cmd("EXPIRE").arg(s).arg(600).ignore();
        }
        if let Err(e) = c.run(|c| pipe.exec(c)) {
            tracing::warn!(error = %e, "could not write command answers; the callers time out");
        }
    }
}

/// How long a lease attempt waits after a failed one.
pub const LEAD_RETRY: Duration = Duration::from_millis(250);

/// True when `e` means another node is the engine now.
pub fn is_fenced(e: &StoreError) -> bool {
    matches!(e, StoreError::Fenced)
}

/// When the lease was last renewed, to step down before it lapses if Redis is unreachable.
#[derive(Debug, Clone, Copy)]
pub struct Renewal {
    pub last_ok: Instant,
    pub next: Instant,
}
