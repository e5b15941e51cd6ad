//! One simulated member: a real websocket client.
//!
//! It connects from its own source address (a `TcpSocket` bound to `(addr, 0)`, then
//! `client_async`), waits for `hello`, and answers what the server pushes: a
//! `mobilization.order` with `mobilization.ack` and then `mobilization.report` at the
//! order's `report_to.location`; an `offer` with `accept` (or `decline`, at the configured
//! rate), each after a draw from the answer-delay distribution. It checks the stream's seqs
//! (gaps, duplicates) and, after a reconnect with `after_seq`, notes when it has caught up
//! with the `hello`'s `last_seq`. Every time is taken with `clock::now_us`.
//!
//! The coordinator steers all members of a worker at once through a `watch` of `Ctl`:
//! online (connect, or reconnect with after_seq), offline (drop the connection), finish.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::clock::now_us;
use crate::proto::{Counters, MemberResult, OfferRec, OrderRec, SimMember, WorkerSpec};

/// Connections one member may open in a run (first connect, reconnects, resumes).
const MAX_LIVES: u32 = 8;

/// What the worker tells all its members.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ctl {
    pub epoch: u32,
    pub online: bool,
    pub finish: bool,
}

/// Counters shared by a worker's members.
#[derive(Debug, Default)]
pub struct LiveCounters {
    connected: AtomicU64,
    connect_failed: AtomicU64,
    hellos: AtomicU64,
    orders: AtomicU64,
    acked: AtomicU64,
    reported: AtomicU64,
    offers: AtomicU64,
    accepted: AtomicU64,
    declined: AtomicU64,
    answer_errors: AtomicU64,
    resumed: AtomicU64,
    closed_by_server: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl LiveCounters {
    pub fn snapshot(&self) -> Counters {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Counters {
            connected: g(&self.connected),
            connect_failed: g(&self.connect_failed),
            hellos: g(&self.hellos),
            orders: g(&self.orders),
            acked: g(&self.acked),
            reported: g(&self.reported),
            offers: g(&self.offers),
            accepted: g(&self.accepted),
            declined: g(&self.declined),
            answer_errors: g(&self.answer_errors),
            resumed: g(&self.resumed),
            closed_by_server: g(&self.closed_by_server),
        }
    }
}

/// What a worker's members share.
pub struct Shared {
    pub spec: WorkerSpec,
    pub counters: LiveCounters,
    connect_gate: Semaphore,
    reconnect_gate: Semaphore,
    deadline: Instant,
}

impl Shared {
    pub fn new(spec: WorkerSpec) -> Self {
        let deadline = Instant::now() + Duration::from_secs(spec.lifetime_s);
        Shared {
            connect_gate: Semaphore::new(spec.connect_concurrency.max(1)),
            reconnect_gate: Semaphore::new(spec.reconnect_concurrency.max(1)),
            counters: LiveCounters::default(),
            deadline,
            spec,
        }
    }
}

type Ws = WebSocketStream<TcpStream>;

#[derive(Debug, Clone)]
enum Action {
    Ack(usize),
    Report(usize),
    Answer(usize),
}

#[derive(Debug, Clone, Copy)]
enum Sent {
    Ack(usize),
    Report(usize),
    Answer(usize),
}

enum Why {
    Dropped,
    Finish,
    ServerClosed,
    Lost,
}

struct Member<'a> {
    shared: &'a Shared,
    res: MemberResult,
    rng: ChaCha8Rng,
    /// To do, and when.
    pending: Vec<(Instant, Action)>,
    /// Sent, waiting for `ok`/`error`, by message id.
    inflight: HashMap<u64, Sent>,
    next_id: u64,
    /// Where each order reports to (parallel to `res.orders`).
    report_at: Vec<(f64, f64)>,
    /// On a fresh connection, frames up to this seq are the server's open frames.
    open_until: u64,
    resume_target: Option<u64>,
}

/// Runs one member until the worker says finish (or its lifetime ends).
pub async fn run(shared: Arc<Shared>, m: SimMember, mut ctl: watch::Receiver<Ctl>) -> MemberResult {
    let seed = shared.spec.seed ^ (u64::from(m.idx) << 20) ^ 0x9e37_79b9;
    let mut me = Member {
        shared: &shared,
        res: MemberResult { idx: m.idx, ..Default::default() },
        rng: ChaCha8Rng::seed_from_u64(seed),
        pending: Vec::new(),
        inflight: HashMap::new(),
        next_id: 1,
        report_at: Vec::new(),
        open_until: 0,
        resume_target: None,
    };
    let source = shared.spec.sources[m.idx as usize % shared.spec.sources.len()];
    let mut lives = 0u32;
    let mut connected_once = false;
    let mut failed_epoch: Option<u32> = None;
    loop {
        // Wait to be told to go online (or to finish).
        let c = match wait_for(&mut ctl, shared.deadline, |c| {
            c.finish || (c.online && failed_epoch.is_none_or(|e| c.epoch != e))
        })
        .await
        {
            Some(c) => c,
            None => break,
        };
        if c.finish || lives >= MAX_LIVES {
            break;
        }
        lives += 1;
        let resuming = connected_once;
        let after = if resuming { Some(me.res.last_seq) } else { None };
        let gate = if resuming { &shared.reconnect_gate } else { &shared.connect_gate };
        if resuming {
            let jitter = shared.spec.reconnect_jitter_ms;
            if jitter > 0 {
                let ms = me.rng.gen_range(0..jitter);
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            me.res.reconnect_started.get_or_insert(now_us());
        } else {
            me.res.connect_started = Some(now_us());
        }
        let attempt = {
            let _permit = gate.acquire().await;
            connect(&shared.spec, shared.spec.node_addr(m.node), source, &m.token, after, &mut me.res).await
        };
        let (mut ws, hello) = match attempt {
            Ok(x) => x,
            Err(e) => {
                me.res.connect_error = Some(e);
                bump(&shared.counters.connect_failed);
                failed_epoch = Some(c.epoch);
                continue;
            }
        };
        failed_epoch = None;
        connected_once = true;
        bump(&shared.counters.connected);
        bump(&shared.counters.hellos);
        let last = hello["data"]["last_seq"].as_u64().unwrap_or(0);
        let t = now_us();
        if resuming {
            me.res.rehello_at.get_or_insert(t);
            me.resume_target = Some(last);
            me.res.resume_target.get_or_insert(last);
            me.open_until = 0;
            me.check_resumed();
        } else {
            me.res.hello_at = Some(t);
            me.open_until = last;
        }
        let why = me.session(&mut ws, &mut ctl).await;
        shared.counters.connected.fetch_sub(1, Ordering::Relaxed);
        // Whatever was in flight is asked again on the next connection (the server
        // answers a repeated ack, report or accept with ok, changing nothing).
        let lost: Vec<Sent> = me.inflight.drain().map(|(_, s)| s).collect();
        let now = Instant::now();
        for s in lost {
            me.pending.push((
                now,
                match s {
                    Sent::Ack(i) => Action::Ack(i),
                    Sent::Report(i) => Action::Report(i),
                    Sent::Answer(i) => Action::Answer(i),
                },
            ));
        }
        match why {
            Why::Finish => {
                let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
                break;
            }
            Why::Dropped => {
                me.res.dropped_at = Some(now_us());
                drop(ws);
            }
            Why::ServerClosed | Why::Lost => {
                bump(&shared.counters.closed_by_server);
                drop(ws);
                // Still online: reconnect and resume after a short, jittered pause.
                let ms = 100 + me.rng.gen_range(0..400);
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
        }
    }
    me.res
}

/// Waits until `ctl` satisfies `ok`; `None` past the deadline or when the worker is gone.
async fn wait_for(ctl: &mut watch::Receiver<Ctl>, deadline: Instant, ok: impl Fn(&Ctl) -> bool) -> Option<Ctl> {
    loop {
        let c = *ctl.borrow_and_update();
        if ok(&c) {
            return Some(c);
        }
        tokio::select! {
            r = ctl.changed() => if r.is_err() { return None },
            _ = tokio::time::sleep_until(deadline) => return None,
        }
    }
}

fn ws_config() -> WebSocketConfig {
    // Small buffers: a phone holds one socket; a worker holds thousands.
    WebSocketConfig::default()
        .read_buffer_size(8 * 1024)
        .write_buffer_size(0)
        .max_write_buffer_size(1 << 20)
        .max_message_size(Some(1 << 20))
        .max_frame_size(Some(1 << 20))
}

/// Connects (with bounded retries), completes the handshake and reads `hello`.
async fn connect(
    spec: &WorkerSpec,
    addr: SocketAddr,
    source: IpAddr,
    token: &str,
    after_seq: Option<u64>,
    res: &mut MemberResult,
) -> Result<(Ws, Value), String> {
    let mut url = format!("ws://{addr}/v1/ws?access_token={token}");
    if let Some(a) = after_seq {
        url.push_str(&format!("&after_seq={a}"));
    }
    let limit = Duration::from_millis(spec.connect_timeout_ms.max(100));
    let mut last_err = String::new();
    for attempt in 0..spec.connect_attempts.max(1) {
        res.connect_attempts += 1;
        match tokio::time::timeout(limit, connect_once(addr, source, &url)).await {
            Ok(Ok(x)) => return Ok(x),
            Ok(Err(e)) => last_err = e,
            Err(_) => last_err = format!("no hello within {} ms", limit.as_millis()),
        }
        let backoff = 100u64 << attempt.min(4);
        tokio::time::sleep(Duration::from_millis(backoff)).await;
    }
    Err(last_err)
}

async fn connect_once(addr: SocketAddr, source: IpAddr, url: &str) -> Result<(Ws, Value), String> {
    let sock = TcpSocket::new_v4().map_err(|e| format!("socket: {e}"))?;
    sock.bind(SocketAddr::new(source, 0)).map_err(|e| format!("bind {source}: {e}"))?;
    let stream = sock.connect(addr).await.map_err(|e| format!("connect: {e}"))?;
    let _ = stream.set_nodelay(true);
    let (mut ws, _) = tokio_tungstenite::client_async_with_config(url, stream, Some(ws_config()))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    // The first text frame is hello; the caller's timeout bounds this loop.
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => {
                let v: Value = serde_json::from_str(t.as_str()).map_err(|e| format!("hello: {e}"))?;
                if v["type"] != "hello" {
                    return Err(format!("expected hello, got {}", v["type"]));
                }
                return Ok((ws, v));
            }
            Some(Ok(Message::Close(f))) => return Err(format!("closed before hello: {f:?}")),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(format!("before hello: {e}")),
            None => return Err("closed before hello".into()),
        }
    }
}

impl Member<'_> {
    async fn session(&mut self, ws: &mut Ws, ctl: &mut watch::Receiver<Ctl>) -> Why {
        let deadline = self.shared.deadline;
        loop {
            if let Err(why) = self.run_due(ws).await {
                return why;
            }
            let next_due = self.pending.iter().map(|p| p.0).min();
            tokio::select! {
                biased;
                r = ctl.changed() => {
                    if r.is_err() {
                        return Why::Finish;
                    }
                    let c = *ctl.borrow_and_update();
                    if c.finish {
                        return Why::Finish;
                    }
                    if !c.online {
                        return Why::Dropped;
                    }
                }
                msg = ws.next() => match msg {
                    Some(Ok(Message::Text(t))) => self.on_text(t.as_str()),
                    Some(Ok(Message::Close(f))) => {
                        self.res.closes.push(f.map(|f| u16::from(f.code)).unwrap_or(1005));
                        return Why::ServerClosed;
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => return Why::Lost,
                },
                _ = tokio::time::sleep_until(next_due.unwrap_or(deadline)), if next_due.is_some() => {}
                _ = tokio::time::sleep_until(deadline) => return Why::Finish,
            }
        }
    }

    /// Sends every action whose time has come.
    async fn run_due(&mut self, ws: &mut Ws) -> Result<(), Why> {
        let now = Instant::now();
        let mut due = Vec::new();
        self.pending.retain(|(at, a)| {
            if *at <= now {
                due.push(a.clone());
                false
            } else {
                true
            }
        });
        for a in due {
            let id = self.next_id;
            self.next_id += 1;
            let t = now_us();
            let (text, sent) = match a {
                Action::Ack(i) => {
                    let o = &mut self.res.orders[i];
                    o.ack_sent.get_or_insert(t);
                    let data = json!({"mobilization_id": o.mobilization_id});
                    (json!({"id": id, "type": "mobilization.ack", "data": data}), Sent::Ack(i))
                }
                Action::Report(i) => {
                    let o = &mut self.res.orders[i];
                    o.report_sent.get_or_insert(t);
                    let (lat, lng) = self.report_at[i];
                    let data = json!({"mobilization_id": o.mobilization_id, "lat": lat, "lng": lng});
                    (json!({"id": id, "type": "mobilization.report", "data": data}), Sent::Report(i))
                }
                Action::Answer(i) => {
                    let o = &mut self.res.offers[i];
                    if o.revoked.is_some() && o.answer_sent.is_none() {
                        continue; // a person does not answer an offer that is gone
                    }
                    o.answer_sent.get_or_insert(t);
                    let kind = if o.accept { "accept" } else { "decline" };
                    let data = json!({"offer_id": o.offer_id});
                    (json!({"id": id, "type": kind, "data": data}), Sent::Answer(i))
                }
            };
            self.inflight.insert(id, sent);
            if ws.send(Message::Text(text.to_string().into())).await.is_err() {
                return Err(Why::Lost);
            }
        }
        Ok(())
    }

    fn later(&mut self) -> Instant {
        Instant::now() + self.shared.spec.answer_delay.sample(&mut self.rng)
    }

    fn check_resumed(&mut self) {
        if let Some(target) = self.resume_target
            && self.res.last_seq >= target
        {
            self.resume_target = None;
            if self.res.resumed_at.is_none() {
                self.res.resumed_at = Some(now_us());
                bump(&self.shared.counters.resumed);
            }
        }
    }

    fn on_text(&mut self, text: &str) {
        let t = now_us();
        let Ok(v) = serde_json::from_str::<Value>(text) else { return };
        let kind = v["type"].as_str().unwrap_or("");
        let seq = v["seq"].as_u64().unwrap_or(0);
        let data = &v["data"];
        if kind == "ok" || kind == "error" {
            self.on_reply(kind == "ok", data, t);
            return;
        }
        if seq == 0 {
            return;
        }
        self.res.frames += 1;
        if seq <= self.open_until {
            // An open frame of a fresh connection: its own (older) seq; handled by id.
        } else if seq <= self.res.last_seq {
            self.res.duplicates += 1;
            return;
        } else if seq > self.res.last_seq.max(self.open_until) + 1 {
            self.res.gaps += 1;
        }
        self.res.last_seq = self.res.last_seq.max(seq);
        let replayed = self.resume_target.is_some();
        match kind {
            "mobilization.order" => {
                let id = data["mobilization_id"].as_str().unwrap_or("").to_string();
                if self.res.orders.iter().any(|o| o.mobilization_id == id) {
                    return;
                }
                let loc = &data["report_to"]["location"];
                self.report_at.push((loc["lat"].as_f64().unwrap_or(0.0), loc["lng"].as_f64().unwrap_or(0.0)));
                self.res.orders.push(OrderRec { mobilization_id: id, seq, delivered: t, ..Default::default() });
                bump(&self.shared.counters.orders);
                let at = self.later();
                self.pending.push((at, Action::Ack(self.res.orders.len() - 1)));
            }
            "offer" => {
                let id = data["offer_id"].as_str().unwrap_or("").to_string();
                if self.res.offers.iter().any(|o| o.offer_id == id) {
                    return;
                }
                let accept = self.rng.r#gen::<f64>() >= self.shared.spec.decline_rate;
                self.res.offers.push(OfferRec {
                    offer_id: id,
                    incident_id: data["incident_id"].as_str().unwrap_or("").to_string(),
                    seq,
                    delivered: t,
                    replayed,
                    accept,
                    ..Default::default()
                });
                bump(&self.shared.counters.offers);
                let at = self.later();
                self.pending.push((at, Action::Answer(self.res.offers.len() - 1)));
            }
            "offer.revoked" => {
                let id = data["offer_id"].as_str().unwrap_or("");
                if let Some(o) = self.res.offers.iter_mut().find(|o| o.offer_id == id) {
                    o.revoked = Some(data["reason"].as_str().unwrap_or("").to_string());
                }
            }
            "assignment" => {
                let id = data["offer_id"].as_str().unwrap_or("");
                if let Some(o) = self.res.offers.iter_mut().find(|o| o.offer_id == id) {
                    o.assigned.get_or_insert(t);
                }
            }
            _ => {}
        }
        self.check_resumed();
    }

    fn on_reply(&mut self, ok: bool, data: &Value, t: u64) {
        let Some(sent) = data["re"].as_u64().and_then(|id| self.inflight.remove(&id)) else { return };
        let code = (!ok).then(|| data["code"].as_str().unwrap_or("?").to_string());
        if let Some(c) = &code {
            *self.res.errors.entry(c.clone()).or_default() += 1;
            bump(&self.shared.counters.answer_errors);
        }
        let c = &self.shared.counters;
        match sent {
            Sent::Ack(i) => {
                let o = &mut self.res.orders[i];
                if ok {
                    o.ack_ok.get_or_insert(t);
                    bump(&c.acked);
                    if self.shared.spec.report {
                        self.pending.push((Instant::now(), Action::Report(i)));
                    }
                } else {
                    o.error = code;
                }
            }
            Sent::Report(i) => {
                let o = &mut self.res.orders[i];
                if ok {
                    o.report_ok.get_or_insert(t);
                    bump(&c.reported);
                } else {
                    o.error = code;
                }
            }
            Sent::Answer(i) => {
                let o = &mut self.res.offers[i];
                if ok {
                    o.answer_ok.get_or_insert(t);
                    bump(if o.accept { &c.accepted } else { &c.declined });
                } else {
                    o.error = code;
                }
            }
        }
    }
}
