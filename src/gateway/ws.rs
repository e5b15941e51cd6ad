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

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;
use super::hub::{Overflow, Subscription};
use crate::domain::dispatcher::{Actor, Command};
use crate::domain::event::stream;
use crate::domain::geo::Position;
use crate::store::StoredFrame;

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

/// The stream a role may read.
pub fn stream_of(actor: &Actor) -> String {
    match actor {
        Actor::Member { member } => stream::member(member),
        Actor::Staff { community } => stream::community(community),
        Actor::Command { district: Some(d) } => stream::district(d),
        Actor::Command { district: None } | Actor::System => stream::CITY.to_string(),
        Actor::UnitAdmin { unit } => format!("unit:{unit}"),
    }
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
    let (claims, actor) = app.keys.verify(&token).map_err(ApiError::unauthorized)?;
    if app.engine.read().is_revoked(&claims.sub, claims.iat) {
        return Err(ApiError::unauthorized("the token has been revoked; ask for a new one"));
    }
    app.limits.check_subject(&claims.sub)?;
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
    let session = Session {
        stream: stream_of(&actor),
        role: claims.role.as_str(),
        expires_at: claims.exp,
        subject: claims.sub.clone(),
        issued_at: claims.iat,
        actor,
        after_seq: params.after_seq,
        app,
    };
    Ok(ws.on_upgrade(move |socket| session.run(socket)).into_response())
}

struct Session {
    app: AppState,
    actor: Actor,
    role: &'static str,
    stream: String,
    expires_at: u64,
    subject: String,
    issued_at: u64,
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

/// When the client was last heard from, shared by `serve` and its watchdog.
struct Heard {
    born: Instant,
    ms: AtomicU64,
}

impl Heard {
    fn new() -> Self {
        Heard { born: Instant::now(), ms: AtomicU64::new(0) }
    }
    fn now(&self) {
        self.ms.store(self.born.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
    fn quiet(&self) -> Duration {
        self.born.elapsed().saturating_sub(Duration::from_millis(self.ms.load(Ordering::Relaxed)))
    }
}

impl Session {
    async fn run(self, socket: WebSocket) {
        let _gauge = ConnectionGauge::new();
        let (mut sink, mut incoming) = socket.split();
        let sub = self.app.hub.subscribe(&self.stream, self.app.settings.ws.outbound_queue);
        let overflow = sub.overflow_flag();
        let heard = Heard::new();
        let end = tokio::select! {
            end = self.serve(&mut sink, &mut incoming, sub, &heard) => end,
            end = self.watchdog(&overflow, &heard) => end,
        };
        if let End::Close(code, reason) = end {
            // At most a second: a client that stopped reading cannot take the close frame.
            let _ = tokio::time::timeout(Duration::from_secs(1), async {
                let _ = sink.send(close_msg(code, reason)).await;
                // Read (and drop) what the client had sent until its answering Close:
                // closing with unread input makes the kernel reset the connection, and a
                // reset destroys the close frame (and the answers before it) on its way.
                while let Some(Ok(m)) = incoming.next().await {
                    if matches!(m, Message::Close(_)) {
                        break;
                    }
                }
                let _ = sink.close().await;
            })
            .await;
        }
        tracing::debug!(stream = %self.stream, "websocket session ended");
    }

    /// Ends a session that is stuck writing to a client that stopped reading (its TCP
    /// window shut, so `serve` waits in a write and cannot notice): 0.5 s after the hub
    /// dropped it for a full queue (4008), or once nothing was heard from it for longer than
    /// the ping timeout and a ping interval (4000). A session that is not stuck ends itself
    /// first. It sleeps until one of those can be due: no polling per session.
    async fn watchdog(&self, overflow: &Overflow, heard: &Heard) -> End {
        let cfg = &self.app.settings.ws;
        let silence = Duration::from_secs(cfg.ping_timeout_s + cfg.ping_interval_s);
        let mut overflowed = std::pin::pin!(overflow.wait());
        loop {
            let quiet = heard.quiet();
            if quiet > silence {
                return End::Close(close::PING_TIMEOUT, "no answer to pings");
            }
            tokio::select! {
                _ = &mut overflowed => {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    return End::Close(close::SLOW_CONSUMER, "too slow: reconnect with after_seq");
                }
                _ = tokio::time::sleep(silence - quiet + Duration::from_millis(10)) => {}
            }
        }
    }

    async fn serve(
        &self,
        sink: &mut (impl futures_util::Sink<Message, Error = axum::Error> + Unpin),
        incoming: &mut (impl futures_util::Stream<Item = Result<Message, axum::Error>> + Unpin),
        mut sub: Subscription,
        heard: &Heard,
    ) -> End {
        let cfg = &self.app.settings.ws;
        let (last_seq, open) = {
            let state = self.app.engine.read();
            (state.stream_seq(&self.stream), state.open_frames(&self.stream))
        };
        let member_id = match &self.actor {
            Actor::Member { member } => Some(member.clone()),
            _ => None,
        };
        let hello = json!({"type": "hello", "seq": 0, "data": {"role": self.role, "member_id": member_id, "last_seq": last_seq}});
        if sink.send(Message::Text(hello.to_string().into())).await.is_err() {
            return End::Gone;
        }

        // What the client missed, or what is still open for it.
        let mut sent = match self.after_seq {
            // A client cannot have seen beyond the stream's end; resume from there.
            Some(after) => match self.replay(sink, after.min(last_seq)).await {
                Ok(s) => s,
                Err(end) => return end,
            },
            None => {
                let frames = match self.read_log(move |r, s| r.frames_at(&s, &open)).await {
                    Ok(f) => f,
                    Err(end) => return end,
                };
                for f in frames {
                    if sink.feed(Message::Text(f.text.into())).await.is_err() {
                        return End::Gone;
                    }
                }
                if sink.flush().await.is_err() {
                    return End::Gone;
                }
                last_seq
            }
        };

        let mut ping = tokio::time::interval(Duration::from_secs(cfg.ping_interval_s));
        ping.tick().await;
        let mut last_heard = Instant::now();
        let ping_timeout = Duration::from_secs(cfg.ping_timeout_s);
        let now_s = crate::engine::now_ms() as u64 / 1000;
        let expiry = tokio::time::sleep(Duration::from_secs(self.expires_at.saturating_sub(now_s)));
        tokio::pin!(expiry);
        let shutdown = self.app.shutdown.clone();
        let limiter = self.app.limits.socket_limiter();
        let mut limited_in_a_row = 0u32;

        loop {
            tokio::select! {
                pushed = sub.rx.recv() => {
                    let Some(first) = pushed else {
                        return if sub.overflowed() {
                            End::Close(close::SLOW_CONSUMER, "too slow: reconnect with after_seq")
                        } else {
                            End::Close(close::GOING_AWAY, "server shutting down")
                        };
                    };
                    // Forward this frame and whatever else is queued, then flush once.
                    let mut next = Some(first);
                    let mut n = 0;
                    while let Some(p) = next.take() {
                        if p.seq > sent {
                            if p.seq > sent + 1 {
                                match self.replay(sink, sent).await {
                                    Ok(s) => sent = s,
                                    Err(end) => return end,
                                }
                            }
                            if p.seq > sent {
                                if sink.feed(Message::Text(p.text)).await.is_err() {
                                    return End::Gone;
                                }
                                sent = p.seq;
                            }
                        }
                        n += 1;
                        if n < 256 {
                            next = sub.rx.try_recv().ok();
                        }
                    }
                    if sink.flush().await.is_err() {
                        return End::Gone;
                    }
                }
                msg = incoming.next() => {
                    last_heard = Instant::now();
                    heard.now();
                    match msg {
                                                Some(Ok(Message::Text(text))) => {
                            let reply = if limiter.check().is_ok() {
                                limited_in_a_row = 0;
                                self.handle_text(text.as_str()).await
                            } else {
                                limited_in_a_row += 1;
                                if limited_in_a_row > self.app.limits.flood_close_after {
                                    return End::Close(close::FLOOD, "too many messages");
                                }
                                rate_limited(text.as_str())
                            };
                            if sink.send(Message::Text(reply.into())).await.is_err() {
                                return End::Gone;
                            }
                        }
                        Some(Ok(Message::Binary(_))) => return End::Close(close::UNSUPPORTED, "binary frames are not supported; send JSON text"),
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                        Some(Ok(Message::Close(_))) | None => return End::Close(close::NORMAL, "bye"),
                        Some(Err(e)) => return self.read_error(e),
                    }
                }
                                _ = ping.tick() => {
                    if last_heard.elapsed() > ping_timeout {
                        return End::Close(close::PING_TIMEOUT, "no answer to pings");
                    }
                    if self.app.engine.read().is_revoked(&self.subject, self.issued_at) {
                        return End::Close(close::POLICY, "token revoked");
                    }
                    if sink.send(Message::Ping(Default::default())).await.is_err() {
                        return End::Gone;
                    }
                }
                _ = &mut expiry => return End::Close(close::POLICY, "token expired"),
                _ = shutdown.cancelled() => return End::Close(close::GOING_AWAY, "server shutting down"),
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
        f: impl FnOnce(&dyn crate::store::LogReader, String) -> Result<T, crate::store::StoreError> + Send + 'static,
    ) -> Result<T, End> {
        let reader = self.app.reader.clone();
        let stream = self.stream.clone();
        match tokio::task::spawn_blocking(move || f(reader.as_ref(), stream)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                tracing::error!(error = %e, "reading frames failed");
                Err(End::Close(close::INTERNAL, "cannot read the log; reconnect"))
            }
            Err(_) => Err(End::Close(close::INTERNAL, "cannot read the log; reconnect")),
        }
    }

    /// Sends every stored frame after `after`; returns the last seq sent.
    async fn replay(
        &self,
        sink: &mut (impl futures_util::Sink<Message, Error = axum::Error> + Unpin),
        mut after: u64,
    ) -> Result<u64, End> {
        let chunk = self.app.settings.ws.max_replay.max(1);
        loop {
            let frames: Vec<StoredFrame> = self.read_log(move |r, s| r.frames_after(&s, after, chunk)).await?;
            let n = frames.len();
            for f in frames {
                after = f.seq;
                if sink.feed(Message::Text(f.text.into())).await.is_err() {
                    return Err(End::Gone);
                }
            }
            if sink.flush().await.is_err() {
                return Err(End::Gone);
            }
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
            Ok(()) => json!({"type": "ok", "seq": 0, "data": {"re": id}}).to_string(),
            Err((code, detail)) => {
                json!({"type": "error", "seq": 0, "data": {"re": id, "code": code, "detail": detail}}).to_string()
            }
        }
    }

    async fn execute(&self, msg: ClientMessage) -> Result<(), (String, String)> {
        let cmd = match msg {
            ClientMessage::Ping => return Ok(()),
            ClientMessage::Accept { offer_id } => Command::Accept { offer_id },
            ClientMessage::Decline { offer_id, reason } => Command::Decline { offer_id, reason },
            ClientMessage::Arrive { offer_id, position } => Command::Arrive { offer_id, position },
            ClientMessage::Location { position } => Command::Location { position },
            ClientMessage::Duty { on_call } => Command::Duty { on_call },
            ClientMessage::MobilizationAck { mobilization_id } => Command::AcknowledgeOrder { mobilization_id },
            ClientMessage::MobilizationReport { mobilization_id, position } => {
                Command::ReportArrival { mobilization_id, position }
            }
        };
        if !matches!(self.actor, Actor::Member { .. }) {
            return Err(("members_only".into(), "only a member's socket can send this message".into()));
        }
        match self.app.engine.submit(self.actor.clone(), cmd).await {
            Ok(_) => Ok(()),
            Err(e) => {
                let api: ApiError = e.into();
                Err((api.code.to_string(), api.detail))
            }
        }
    }
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
    Accept { offer_id: String },
    Decline { offer_id: String, reason: Option<String> },
    Arrive { offer_id: String, position: Position },
    Location { position: Position },
    Duty { on_call: bool },
    MobilizationAck { mobilization_id: String },
    MobilizationReport { mobilization_id: String, position: Position },
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
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct At {
        #[serde(default)]
        offer_id: Option<String>,
        lat: f64,
        lng: f64,
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
    let msg = match env.kind.as_str() {
        "ping" => ClientMessage::Ping,
        "accept" | "decline" => {
            let r: OfferRef = serde_json::from_value(env.data.clone()).map_err(bad)?;
            if env.kind == "accept" {
                ClientMessage::Accept { offer_id: r.offer_id }
            } else {
                ClientMessage::Decline { offer_id: r.offer_id, reason: r.reason }
            }
        }
        "arrive" => {
            let a: At = serde_json::from_value(env.data.clone()).map_err(bad)?;
            let offer_id = a
                .offer_id
                .ok_or_else(|| (id.clone(), "invalid_data".to_string(), "arrive: offer_id is required".to_string()))?;
            ClientMessage::Arrive { offer_id, position: position(a.lat, a.lng)? }
        }
        "location" => {
            let a: At = serde_json::from_value(env.data.clone()).map_err(bad)?;
            ClientMessage::Location { position: position(a.lat, a.lng)? }
        }
        "duty" => {
            let d: Duty = serde_json::from_value(env.data.clone()).map_err(bad)?;
            ClientMessage::Duty { on_call: d.on_call }
        }
        "mobilization.ack" => {
            let o: Order = serde_json::from_value(env.data.clone()).map_err(bad)?;
            ClientMessage::MobilizationAck { mobilization_id: o.mobilization_id }
        }
        "mobilization.report" => {
            let o: Order = serde_json::from_value(env.data.clone()).map_err(bad)?;
            let (Some(lat), Some(lng)) = (o.lat, o.lng) else {
                return Err((id, "invalid_data".into(), "mobilization.report: lat and lng are required".into()));
            };
            ClientMessage::MobilizationReport { mobilization_id: o.mobilization_id, position: position(lat, lng)? }
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
    fn decodes_client_messages_and_refuses_bad_ones() {
        let (id, m) = decode(r#"{"id":7,"type":"accept","data":{"offer_id":"off-1"}}"#).unwrap();
        assert_eq!(id, json!(7));
        assert_eq!(m, ClientMessage::Accept { offer_id: "off-1".into() });
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
