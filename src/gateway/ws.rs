//! Websocket sessions: `GET /v1/ws`.
//!
//! A session authenticates at the handshake (query `access_token`, or the subprotocols
//! `muster.v1, bearer.<JWT>`), checks the Origin, and then serves one stream: the
//! member's own, or the staff or command scope's. It subscribes to the hub *before* it
//! reads the log, then replays what the client missed (`after_seq`) or its open offers,
//! then forwards live frames, skipping any seq already sent and filling any gap from the
//! log, so the client sees every seq once, in order.
//!
//! Close codes (docs/PROTOCOL.md): 1000 normal, 1001 server shutting down, 1003 binary
//! frame, 1007 invalid UTF-8, 1008 token expired, 1009 message too big, 1011 server error,
//! 4000 ping timeout, 4008 too slow (queue full: resume with after_seq), 4029 flooding.

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use futures_util::{Sink, SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;

use super::AppState;
use super::error::ApiError;
use super::hub::{Hub, Pushed, Subscription};
use super::limits::RateLimits;
use crate::domain::answers;
use crate::domain::dispatcher::{Actor, Command, Reply};
use crate::domain::geo::Position;
use crate::domain::scope::{self, Action};
use crate::engine::EngineHandle;
use crate::settings::Settings;
use crate::store::{LogReader, StoredFrame};

pub const SUBPROTOCOL: &str = "muster.v1";

pub mod close {
    pub const NORMAL: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    pub const UNSUPPORTED: u16 = 1003;
    pub const INVALID_DATA: u16 = 1007;
    pub const POLICY: u16 = 1008;
    pub const TOO_BIG: u16 = 1009;
    pub const INTERNAL: u16 = 1011;
    pub const PING_TIMEOUT: u16 = 4000;
    pub const FLOOD: u16 = 4029;
    pub const SLOW_CONSUMER: u16 = 4008;
}

#[derive(Debug, Deserialize)]
pub struct WsParams {
    access_token: Option<String>,
    after_seq: Option<u64>,
}

fn origin_allowed(headers: &HeaderMap, allowed: &[String]) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) else {
        return true; // not a browser
    };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
    let own = origin.strip_prefix("http://").or_else(|| origin.strip_prefix("https://")) == Some(host);
    own || allowed.iter().any(|a| a == origin)
}

pub async fn upgrade(
    State(app): State<AppState>,
    params: Result<Query<WsParams>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let Query(params) = params?;
    if !origin_allowed(&headers, &app.settings.server.allowed_origins) {
        return Err(ApiError::forbidden("origin_not_allowed", "this page's origin may not open muster websockets"));
    }
    let from_protocol = headers
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').map(str::trim).find_map(|p| p.strip_prefix("bearer.")).map(str::to_string));
    let token = params
        .access_token
        .or(from_protocol)
        .ok_or_else(|| ApiError::unauthorized("send a token: ?access_token=<JWT> or subprotocol bearer.<JWT>"))?;
    let (claims, actor) = super::auth::authenticate(&app, &token)?;
    // Not `is_ready`: a store that cannot take writes still serves streams (reads).
    if !app.engine.is_started() {
        return Err(ApiError::unavailable("muster is starting; retry shortly"));
    }
    let cfg = &app.settings.ws;
    let ws = ws
        .protocols([SUBPROTOCOL])
        .read_buffer_size(cfg.read_buffer_bytes)
        .write_buffer_size(cfg.write_buffer_bytes)
        .max_write_buffer_size(cfg.write_buffer_bytes.max(cfg.max_message_bytes) * 4)
        .max_message_size(cfg.max_message_bytes)
        .max_frame_size(cfg.max_message_bytes);
    // The session keeps what it uses of the app, not a clone of all of it (its `TokenKeys`
    // alone would be a few hundred bytes of heap per socket). Boxed: axum keeps the
    // callback's captures in the socket's task for as long as it runs.
    let session = Box::new(Session {
        stream: Arc::from(scope::stream_of(&actor)),
        role: claims.role.as_str(),
        expires_at: claims.exp,
        subject: claims.sub,
        issued_at: claims.iat,
        sid: claims.sid.map(String::into_boxed_str),
        actor,
        after_seq: params.after_seq,
        engine: app.engine,
        reader: app.reader,
        hub: app.hub,
        settings: app.settings,
        shutdown: app.shutdown,
        limits: app.limits,
    });
    Ok(ws.on_upgrade(move |socket| session.run(socket)).into_response())
}

/// One websocket session. Memory per idle socket is what the issue's target is about
/// (docs/PERFORMANCE.md, "Memory per connection"): the session is one task whose future
/// holds this, the socket and a small loop state; what only a burst needs (the hello and
/// the first frames, a replay, the answer to a client message, the closing handshake) runs
/// in a boxed future of its own, allocated while it runs, not reserved in every idle
/// session's task.
struct Session {
    engine: EngineHandle,
    reader: Arc<dyn LogReader>,
    hub: Arc<Hub>,
    settings: Arc<Settings>,
    shutdown: CancellationToken,
    limits: Arc<RateLimits>,
    actor: Actor,
    role: &'static str,
    stream: Arc<str>,
    expires_at: u64,
    subject: String,
    issued_at: u64,
    /// The session family of a signed-in device's token, checked with the revocations.
    sid: Option<Box<str>>,
    after_seq: Option<u64>,
}

struct ConnectionGauge;
impl ConnectionGauge {
    fn new() -> Self {
        metrics::gauge!("muster_ws_connections").increment(1.0);
        ConnectionGauge
    }
}
impl Drop for ConnectionGauge {
    fn drop(&mut self) {
        metrics::gauge!("muster_ws_connections").decrement(1.0);
    }
}

fn close_msg(code: u16, reason: &str) -> Message {
    Message::Close(Some(CloseFrame { code, reason: Utf8Bytes::from(reason.to_string()) }))
}

enum End {
    Close(u16, &'static str),
    Gone,
}

/// How long a session stuck writing to a client lives on after the hub dropped it for a
/// full queue.
const OVERFLOW_GRACE: Duration = Duration::from_millis(500);

/// The socket, its subscription and the session's one timer.
struct Conn {
    socket: WebSocket,
    sub: Subscription,
    /// In the session's loop: the next ping or the token's expiry, whichever comes first.
    /// While a write waits: when the client counts as gone.
    timer: Pin<Box<Sleep>>,
    /// When the client was last heard from.
    last_heard: Instant,
    /// Set when a waiting write saw that the hub dropped the socket for a full queue.
    overflow_seen: Option<Instant>,
    /// Silence after which a client that does not read either is given up: the ping
    /// timeout and one ping interval.
    silence: Duration,
}

impl Conn {
    /// Buffers a message (written out once the buffer is full or on `flush`).
    fn feed(&mut self, m: Message) -> impl Future<Output = Result<(), End>> + Send + '_ {
        self.write(Some(m), false)
    }

    fn flush(&mut self) -> impl Future<Output = Result<(), End>> + Send + '_ {
        self.write(None, true)
    }

    fn send(&mut self, m: Message) -> impl Future<Output = Result<(), End>> + Send + '_ {
        self.write(Some(m), true)
    }

    /// One write (`SinkExt::feed`, `flush` or `send`, polled by hand to keep the session's
    /// future small). It waits only while the client's TCP window is shut (it stopped
    /// reading), and then the session would notice nothing else: so a write gives up
    /// `OVERFLOW_GRACE` after the hub dropped the socket for a full queue (4008), or once
    /// nothing was heard from the client for `silence` (4000). A write that does not wait
    /// costs no timer operation. (A plain `poll_fn`, not an `async fn`, for the same
    /// reason as `Session::run`.)
    fn write(&mut self, mut msg: Option<Message>, flush: bool) -> impl Future<Output = Result<(), End>> + Send + '_ {
        let Conn { socket, sub, timer, last_heard, overflow_seen, silence } = self;
        let silent_at = *last_heard + *silence;
        poll_fn(move |cx| {
            if let Poll::Ready(r) = poll_write(socket, &mut msg, flush, cx) {
                return Poll::Ready(r.map_err(|_| End::Gone));
            }
            if overflow_seen.is_none() && sub.poll_overflowed(cx).is_ready() {
                *overflow_seen = Some(Instant::now());
            }
            let give_up = overflow_seen.map_or(silent_at, |t| silent_at.min(t + OVERFLOW_GRACE));
            if timer.deadline() > give_up {
                timer.as_mut().reset(give_up);
            }
            while timer.as_mut().poll(cx).is_ready() {
                let now = Instant::now();
                if overflow_seen.is_some_and(|t| now >= t + OVERFLOW_GRACE) {
                    return Poll::Ready(Err(End::Close(close::SLOW_CONSUMER, "too slow: reconnect with after_seq")));
                }
                if now >= silent_at {
                    return Poll::Ready(Err(End::Close(close::PING_TIMEOUT, "no answer to pings")));
                }
                // The loop's timer (a ping due) fired first: wait on until giving up.
                timer.as_mut().reset(give_up);
            }
            Poll::Pending
        })
    }
}

/// `SinkExt::feed` (`msg`), then `SinkExt::flush` if `flush`, polled by hand.
fn poll_write(
    socket: &mut WebSocket,
    msg: &mut Option<Message>,
    flush: bool,
    cx: &mut Context<'_>,
) -> Poll<Result<(), axum::Error>> {
    if msg.is_some() {
        ready!(Pin::new(&mut *socket).poll_ready(cx))?;
        Pin::new(&mut *socket).start_send(msg.take().expect("checked"))?;
    }
    if flush { Pin::new(socket).poll_flush(cx) } else { Poll::Ready(Ok(())) }
}

impl Session {
    /// Starts the session on its upgraded socket. Not an `async fn`: an async fn keeps
    /// its arguments in its future and moves them into locals beside them, which would be
    /// a second socket's worth of bytes in every session.
    fn run(self: Box<Self>, socket: WebSocket) -> impl Future<Output = ()> + Send {
        let gauge = ConnectionGauge::new();
        let cfg = &self.settings.ws;
        let now = Instant::now();
        let mut conn = Conn {
            socket,
            sub: self.hub.subscribe(&self.stream, cfg.outbound_queue),
            timer: Box::pin(tokio::time::sleep_until(now + Duration::from_secs(cfg.ping_interval_s))),
            last_heard: now,
            overflow_seen: None,
            silence: Duration::from_secs(cfg.ping_timeout_s + cfg.ping_interval_s),
        };
        async move {
            let end = self.serve(&mut conn).await;
            if let End::Close(code, reason) = end {
                let closing = Box::pin(close_politely(conn, code, reason));
                closing.await;
            }
            tracing::debug!(stream = %self.stream, "websocket session ended");
            drop(gauge);
        }
    }

    async fn serve(&self, conn: &mut Conn) -> End {
        let cfg = &self.settings.ws;
        let start = Box::pin(self.start(conn));
        let mut sent = match start.await {
            Ok(s) => s,
            Err(end) => return end,
        };

        let interval = Duration::from_secs(cfg.ping_interval_s);
        let ping_timeout = Duration::from_secs(cfg.ping_timeout_s);
        let mut next_ping = Instant::now() + interval;
        conn.last_heard = Instant::now();
        let now_s = crate::engine::now_ms() as u64 / 1000;
        let expiry = Instant::now().checked_add(Duration::from_secs(self.expires_at.saturating_sub(now_s)));
        let limiter = self.limits.socket_limiter();
        let mut limited_in_a_row = 0u32;
        // Made once: a fresh one per turn of the loop would join and leave the token's
        // waiter list (a lock shared by every session) each time.
        let shutdown = self.shutdown.cancelled();
        tokio::pin!(shutdown);

        loop {
            let due = expiry.map_or(next_ping, |e| e.min(next_ping));
            if conn.timer.deadline() != due {
                conn.timer.as_mut().reset(due);
            }
            tokio::select! {
                pushed = conn.sub.recv() => {
                    // `None`: the hub dropped this socket for a full queue.
                    let Some(first) = pushed else {
                        return End::Close(close::SLOW_CONSUMER, "too slow: reconnect with after_seq");
                    };
                    // Forward this frame and whatever else is queued, then flush once.
                    let queued = Box::pin(self.forward_queued(conn, first, sent));
                    match queued.await {
                        Ok(s) => sent = s,
                        Err(end) => return end,
                    }
                    if let Err(end) = conn.flush().await {
                        return end;
                    }
                }
                msg = conn.socket.next() => {
                    conn.last_heard = Instant::now();
                    match msg {
                        Some(Ok(Message::Text(text))) => {
                            let reply = if limiter.check().is_ok() {
                                limited_in_a_row = 0;
                                let handle = Box::pin(self.handle_text(text.as_str()));
                                handle.await
                            } else {
                                limited_in_a_row += 1;
                                if limited_in_a_row > self.limits.flood_close_after {
                                    return End::Close(close::FLOOD, "too many messages");
                                }
                                rate_limited(text.as_str())
                            };
                            if let Err(end) = conn.feed(Message::Text(reply.into())).await {
                                return end;
                            }
                            // The engine publishes a command's frames before it answers:
                            // they are usually queued by now (an ack's mobilization.state).
                            // Write them with the answer, one flush for both.
                            if let Some(p) = conn.sub.try_recv() {
                                let queued = Box::pin(self.forward_queued(conn, p, sent));
                                match queued.await {
                                    Ok(s) => sent = s,
                                    Err(end) => return end,
                                }
                            }
                            if let Err(end) = conn.flush().await {
                                return end;
                            }
                        }
                        Some(Ok(Message::Binary(_))) => return End::Close(close::UNSUPPORTED, "binary frames are not supported; send JSON text"),
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                        Some(Ok(Message::Close(_))) | None => return End::Close(close::NORMAL, "bye"),
                        Some(Err(e)) => return self.read_error(e),
                    }
                }
                () = &mut conn.timer => {
                    let now = Instant::now();
                    if expiry.is_some_and(|e| now >= e) {
                        return End::Close(close::POLICY, "token expired");
                    }
                    if now >= next_ping {
                        if now.saturating_duration_since(conn.last_heard) > ping_timeout {
                            return End::Close(close::PING_TIMEOUT, "no answer to pings");
                        }
                        if self.engine.is_revoked(&self.subject, self.issued_at)
                            || self.sid.as_deref().is_some_and(|f| self.engine.is_family_revoked(f))
                        {
                            return End::Close(close::POLICY, "token revoked");
                        }
                        if let Err(end) = conn.send(Message::Ping(Default::default())).await {
                            return end;
                        }
                        next_ping = Instant::now() + interval;
                    } else {
                        // Woken before anything was due: arm the timer again, or it would
                        // stay elapsed and wake the loop at once.
                        conn.timer.as_mut().reset(due);
                    }
                }
                () = &mut shutdown => return End::Close(close::GOING_AWAY, "server shutting down"),
            }
        }
    }

    /// The hello, then what the client missed (`after_seq`) or what is still open for it.
    /// Returns the last seq sent.
    async fn start(&self, conn: &mut Conn) -> Result<u64, End> {
        let (last_seq, open) = {
            let state = self.engine.read();
            (state.stream_seq(&self.stream), state.open_frames(&self.stream))
        };
        let member_id = match &self.actor {
            Actor::Member { member } => Some(member.as_str()),
            _ => None,
        };
        let hello = json!({"type": "hello", "seq": 0, "data": {"role": self.role, "member_id": member_id, "last_seq": last_seq}})
            .to_string();
        conn.send(Message::Text(hello.into())).await?;
        match self.after_seq {
            // A client cannot have seen beyond the stream's end; resume from there.
            // Missed nothing (most members after a reconnect storm): no read of the store;
            // anything newer comes from the hub, subscribed before `last_seq` was read.
            Some(after) if after >= last_seq => Ok(last_seq),
            Some(after) => self.replay(conn, after).await,
            None if open.is_empty() => Ok(last_seq),
            None => {
                let frames = self.read_log(move |r, s| r.frames_at(s, &open)).await?;
                for f in frames {
                    conn.feed(Message::Text(f.text.into())).await?;
                }
                conn.flush().await?;
                Ok(last_seq)
            }
        }
    }

    fn read_error(&self, e: axum::Error) -> End {
        let text = e.to_string();
        tracing::debug!(error = %text, "websocket read error");
        if text.contains("too long") || text.contains("Space limit") || text.contains("capacity") {
            End::Close(close::TOO_BIG, "message too big")
        } else if text.contains("UTF-8") || text.contains("utf-8") || text.contains("Utf8") {
            End::Close(close::INVALID_DATA, "invalid UTF-8")
        } else {
            End::Gone
        }
    }

    async fn read_log<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn LogReader, &str) -> Result<T, crate::store::StoreError> + Send + 'static,
    ) -> Result<T, End> {
        let reader = self.reader.clone();
        let stream = self.stream.clone();
        match tokio::task::spawn_blocking(move || f(reader.as_ref(), &stream)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                tracing::error!(error = %e, "reading frames failed");
                Err(End::Close(close::INTERNAL, "cannot read the log; reconnect"))
            }
            Err(_) => Err(End::Close(close::INTERNAL, "cannot read the log; reconnect")),
        }
    }

    /// Sends every stored frame after `after`; returns the last seq sent.
    /// Feeds `first` and whatever else is queued (at most 256), filling a gap from the log
    /// and skipping what was sent; does not flush. Answers the last seq sent.
    async fn forward_queued(&self, conn: &mut Conn, first: Pushed, mut sent: u64) -> Result<u64, End> {
        let mut next = Some(first);
        let mut n = 0;
        while let Some(p) = next.take() {
            if p.seq > sent {
                if p.seq > sent + 1 {
                    sent = Box::pin(self.replay(conn, sent)).await?;
                }
                if p.seq > sent {
                    conn.feed(Message::Text(p.text)).await?;
                    sent = p.seq;
                }
            }
            n += 1;
            if n < 256 {
                next = conn.sub.try_recv();
            }
        }
        Ok(sent)
    }

    async fn replay(&self, conn: &mut Conn, mut after: u64) -> Result<u64, End> {
        let chunk = self.settings.ws.max_replay.max(1);
        loop {
            let frames: Vec<StoredFrame> = self.read_log(move |r, s| r.frames_after(s, after, chunk)).await?;
            let n = frames.len();
            for f in frames {
                after = f.seq;
                conn.feed(Message::Text(f.text.into())).await?;
            }
            conn.flush().await?;
            if n < chunk {
                return Ok(after);
            }
        }
    }

    /// One client message: decoded, turned into a command, answered with ok or error.
    async fn handle_text(&self, text: &str) -> String {
        let (id, result) = match decode(text) {
            Ok((id, msg)) => {
                let r = self.execute(msg).await;
                (id, r)
            }
            Err((id, code, detail)) => (id, Err((code, detail))),
        };
        match result {
            // The same answer id again: ok, as the first time, and said to be a repeat.
            Ok(Reply::Duplicate) => json!({"type": "ok", "seq": 0, "data": {"re": id, "duplicate": true}}).to_string(),
            Ok(_) => ok_text(&id),
            Err((code, detail)) => {
                json!({"type": "error", "seq": 0, "data": {"re": id, "code": code, "detail": detail}}).to_string()
            }
        }
    }

    async fn execute(&self, msg: ClientMessage) -> Result<Reply, (String, String)> {
        let (cmd, answer_id) = match msg {
            ClientMessage::Ping => return Ok(Reply::Done),
            ClientMessage::Accept { offer_id, answer_id } => (Command::Accept { offer_id }, answer_id),
            ClientMessage::Decline { offer_id, reason, answer_id } => {
                (Command::Decline { offer_id, reason }, answer_id)
            }
            ClientMessage::Arrive { offer_id, position, answer_id } => {
                (Command::Arrive { offer_id, position }, answer_id)
            }
            ClientMessage::Location { position } => (Command::Location { position }, None),
            ClientMessage::Duty { on_call } => (Command::Duty { on_call }, None),
            ClientMessage::MobilizationAck { mobilization_id, answer_id } => {
                (Command::AcknowledgeOrder { mobilization_id }, answer_id)
            }
            ClientMessage::MobilizationReport { mobilization_id, position, answer_id } => {
                (Command::ReportArrival { mobilization_id, position }, answer_id)
            }
        };
        // With the client's id, an answer is decided once (domain::answers).
        let cmd = match answer_id {
            Some(answer_id) => Command::Answer { answer_id, answer: Box::new(cmd) },
            None => cmd,
        };
        if !scope::permits(&self.actor, Action::AnswerAsMember) {
            return Err(("members_only".into(), "only a member's socket can send this message".into()));
        }
        match self.engine.submit(self.actor.clone(), cmd).await {
            Ok(r) => Ok(r),
            Err(e) => {
                let api: ApiError = e.into();
                Err((api.code.to_string(), api.detail))
            }
        }
    }
}

/// `{"type":"ok","seq":0,"data":{"re":<id>}}`, written directly: the answer to every
/// acknowledgement of a surge, where building a JSON map for it showed in profiles.
fn ok_text(id: &Value) -> String {
    // A `Value` displays as its compact JSON.
    format!(r#"{{"type":"ok","seq":0,"data":{{"re":{id}}}}}"#)
}

/// Sends the close frame and waits (at most a second) for the client's answer.
async fn close_politely(conn: Conn, code: u16, reason: &'static str) {
    let Conn { mut socket, sub, .. } = conn;
    drop(sub);
    let socket = &mut socket;
    // At most a second: a client that stopped reading cannot take the close frame.
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = SinkExt::send(socket, close_msg(code, reason)).await;
        // Read (and drop) what the client had sent until its answering Close: closing
        // with unread input makes the kernel reset the connection, and a reset destroys
        // the close frame (and the answers before it) on its way.
        while let Some(Ok(m)) = socket.next().await {
            if matches!(m, Message::Close(_)) {
                break;
            }
        }
        let _ = SinkExt::close(socket).await;
    })
    .await;
}

/// The answer to a message over the socket's rate: not decoded beyond its id.
fn rate_limited(text: &str) -> String {
    #[derive(Deserialize)]
    struct Id {
        #[serde(default)]
        id: Value,
    }
    let id = serde_json::from_str::<Id>(text).map(|i| i.id).unwrap_or(Value::Null);
    json!({"type": "error", "seq": 0, "data": {"re": id, "code": "rate_limited", "detail": "too many messages; slow down"}}).to_string()
}

/// A message a client may send, decoded and validated.
#[derive(Debug, PartialEq)]
pub enum ClientMessage {
    Ping,
    Accept { offer_id: String, answer_id: Option<String> },
    Decline { offer_id: String, reason: Option<String>, answer_id: Option<String> },
    Arrive { offer_id: String, position: Position, answer_id: Option<String> },
    Location { position: Position },
    Duty { on_call: bool },
    MobilizationAck { mobilization_id: String, answer_id: Option<String> },
    MobilizationReport { mobilization_id: String, position: Position, answer_id: Option<String> },
}

type DecodeError = (Value, String, String);

/// Decodes a client's text message. Errors carry the message's `id` when it had one.
pub fn decode(text: &str) -> Result<(Value, ClientMessage), DecodeError> {
    #[derive(Deserialize)]
    struct Envelope {
        #[serde(default)]
        id: Value,
        #[serde(rename = "type")]
        kind: String,
        #[serde(default)]
        data: Value,
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct OfferRef {
        offer_id: String,
        #[serde(default)]
        reason: Option<String>,
        #[serde(default)]
        answer_id: Option<String>,
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct At {
        #[serde(default)]
        offer_id: Option<String>,
        lat: f64,
        lng: f64,
        #[serde(default)]
        answer_id: Option<String>,
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Duty {
        on_call: bool,
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Order {
        mobilization_id: String,
        #[serde(default)]
        lat: Option<f64>,
        #[serde(default)]
        lng: Option<f64>,
        #[serde(default)]
        answer_id: Option<String>,
    }
    let env: Envelope = serde_json::from_str(text)
        .map_err(|e| (Value::Null, "malformed".to_string(), format!("not a muster message: {e}")))?;
    let id = env.id;
    if !(id.is_null() || id.is_string() || id.is_number()) {
        return Err((Value::Null, "malformed".into(), "id must be a string or a number".into()));
    }
    let bad = |e: serde_json::Error| (id.clone(), "invalid_data".to_string(), format!("{}: {e}", env.kind));
    let position =
        |lat, lng| Position::new(lat, lng).map_err(|e| (id.clone(), "invalid_position".to_string(), e.to_string()));
    // An answer's own id (issue 18): 1 to 100 visible ASCII characters.
    let answer_id = |a: Option<String>| match a {
        Some(a) if !answers::valid_id(&a) => Err((
            id.clone(),
            "invalid_data".to_string(),
            format!("{}: answer_id must be 1 to {} visible ASCII characters", env.kind, answers::MAX_ID_LEN),
        )),
        a => Ok(a),
    };
    let msg = match env.kind.as_str() {
        "ping" => ClientMessage::Ping,
        "accept" | "decline" => {
            let r: OfferRef = serde_json::from_value(env.data.clone()).map_err(bad)?;
            let answer_id = answer_id(r.answer_id)?;
            if env.kind == "accept" {
                ClientMessage::Accept { offer_id: r.offer_id, answer_id }
            } else {
                ClientMessage::Decline { offer_id: r.offer_id, reason: r.reason, answer_id }
            }
        }
        "arrive" => {
            let a: At = serde_json::from_value(env.data.clone()).map_err(bad)?;
            let offer_id = a
                .offer_id
                .ok_or_else(|| (id.clone(), "invalid_data".to_string(), "arrive: offer_id is required".to_string()))?;
            ClientMessage::Arrive { offer_id, position: position(a.lat, a.lng)?, answer_id: answer_id(a.answer_id)? }
        }
        "location" => {
            let a: At = serde_json::from_value(env.data.clone()).map_err(bad)?;
            if a.answer_id.is_some() {
                return Err((id, "invalid_data".into(), "location: answer_id goes with an answer".into()));
            }
            ClientMessage::Location { position: position(a.lat, a.lng)? }
        }
        "duty" => {
            let d: Duty = serde_json::from_value(env.data.clone()).map_err(bad)?;
            ClientMessage::Duty { on_call: d.on_call }
        }
        "mobilization.ack" => {
            let o: Order = serde_json::from_value(env.data.clone()).map_err(bad)?;
            ClientMessage::MobilizationAck { mobilization_id: o.mobilization_id, answer_id: answer_id(o.answer_id)? }
        }
        "mobilization.report" => {
            let o: Order = serde_json::from_value(env.data.clone()).map_err(bad)?;
            let (Some(lat), Some(lng)) = (o.lat, o.lng) else {
                return Err((id, "invalid_data".into(), "mobilization.report: lat and lng are required".into()));
            };
            ClientMessage::MobilizationReport {
                mobilization_id: o.mobilization_id,
                position: position(lat, lng)?,
                answer_id: answer_id(o.answer_id)?,
            }
        }
        other => {
            return Err((id, "unknown_type".into(), format!("unknown message type '{other}'")));
        }
    };
    Ok((id, msg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ok_is_the_json_it_stands_for() {
        for id in [json!(null), json!(7), json!(-1.5), json!("a\"b\\c\n"), json!("好")] {
            let text = ok_text(&id);
            let v: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(v, json!({"type": "ok", "seq": 0, "data": {"re": id}}), "{text}");
        }
    }

    #[test]
    fn decodes_client_messages_and_refuses_bad_ones() {
        let (id, m) = decode(r#"{"id":7,"type":"accept","data":{"offer_id":"off-1"}}"#).unwrap();
        assert_eq!(id, json!(7));
        assert_eq!(m, ClientMessage::Accept { offer_id: "off-1".into(), answer_id: None });
        let (_, m) = decode(r#"{"id":8,"type":"accept","data":{"offer_id":"off-1","answer_id":"a-1"}}"#).unwrap();
        assert_eq!(m, ClientMessage::Accept { offer_id: "off-1".into(), answer_id: Some("a-1".into()) });
        let e = decode(r#"{"id":9,"type":"decline","data":{"offer_id":"o","answer_id":"a b"}}"#).unwrap_err();
        assert_eq!((e.0, e.1.as_str()), (json!(9), "invalid_data"));
        let e = decode(r#"{"type":"location","data":{"lat":1,"lng":2,"answer_id":"a"}}"#).unwrap_err();
        assert_eq!(e.1, "invalid_data");
        assert!(matches!(
            decode(r#"{"type":"arrive","data":{"offer_id":"o","lat":30.1,"lng":114.2}}"#).unwrap().1,
            ClientMessage::Arrive { .. }
        ));
        let e = decode(r#"{"id":"x","type":"location","data":{"lat":91,"lng":0}}"#).unwrap_err();
        assert_eq!((e.0, e.1.as_str()), (json!("x"), "invalid_position"));
        assert_eq!(decode(r#"{"id":1,"type":"fly"}"#).unwrap_err().1, "unknown_type");
        assert_eq!(decode("not json").unwrap_err().1, "malformed");
        assert_eq!(decode(r#"{"type":"accept","data":{}}"#).unwrap_err().1, "invalid_data");
        assert_eq!(decode(r#"{"type":"duty","data":{"on_call":"yes"}}"#).unwrap_err().1, "invalid_data");
    }
}
