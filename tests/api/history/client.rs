//! The recorder: every invocation with its arguments, times and outcome, and every frame
//! each member receives. HTTP calls and websocket requests go through here.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use muster::gateway::auth::{Claims, Role, TokenKeys};
use serde_json::{Value, json};

use crate::helpers::SECRET;

/// How an operation ended, as the client saw it.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// 2xx (the body) or a websocket `ok`.
    Ok(Value),
    /// A definite refusal: nothing changed (the problem's or the error's `code`).
    Fail(String),
    /// The connection died, no answer came, or the answer says the command may have been
    /// decided: either wholly done or not at all.
    Unknown(String),
}

impl Outcome {
    pub fn is_ok(&self) -> bool {
        matches!(self, Outcome::Ok(_))
    }
    pub fn is_unknown(&self) -> bool {
        matches!(self, Outcome::Unknown(_))
    }
    pub fn short(&self) -> String {
        match self {
            Outcome::Ok(v) => {
                let s = v.to_string();
                let s: String = s.chars().take(120).collect();
                format!("ok {s}")
            }
            Outcome::Fail(c) => format!("fail {c}"),
            Outcome::Unknown(r) => format!("unknown ({r})"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Op {
    pub id: usize,
    pub process: String,
    pub kind: &'static str,
    pub args: Value,
    /// Milliseconds since the run started.
    pub invoke: u64,
    pub complete: u64,
    pub outcome: Outcome,
}

/// A frame as a member received it.
#[derive(Debug, Clone)]
pub struct FrameRec {
    pub seq: u64,
    pub kind: String,
    pub data: Value,
    /// Which connection of the member (1, 2, ...).
    pub conn: u32,
    pub at: u64,
}

#[derive(Debug, Clone, Default)]
pub struct MemberLog {
    pub frames: Vec<FrameRec>,
    /// (connection, after_seq asked, hello's last_seq)
    pub hellos: Vec<(u32, u64, u64)>,
}

/// Everything the run shares: the history, the members' frames, where the nodes are.
pub struct Ctx {
    pub start: Instant,
    pub start_ms: i64,
    pub deadline: Instant,
    pub ops: Mutex<Vec<Op>>,
    pub members: Mutex<HashMap<String, MemberLog>>,
    pub addrs: RwLock<Vec<String>>,
    pub http: reqwest::Client,
    keys: TokenKeys,
}

pub type Shared = Arc<Ctx>;

impl Ctx {
    pub fn new(addrs: Vec<String>, secs: u64) -> Shared {
        Arc::new(Ctx {
            start: Instant::now(),
            start_ms: muster::engine::now_ms(),
            deadline: Instant::now() + Duration::from_secs(secs),
            ops: Mutex::new(Vec::new()),
            members: Mutex::new(HashMap::new()),
            addrs: RwLock::new(addrs),
            http: reqwest::Client::builder().timeout(Duration::from_secs(8)).build().unwrap(),
            keys: TokenKeys::new(SECRET),
        })
    }

    pub fn now(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    pub fn over(&self) -> bool {
        Instant::now() >= self.deadline
    }

    pub fn addr(&self, node: usize) -> String {
        let a = self.addrs.read().unwrap();
        a[node % a.len()].clone()
    }

    pub fn token(&self, role: Role, scope: Option<&str>) -> String {
        let now = muster::engine::now_ms() as u64 / 1000;
        self.keys.sign(&Claims::new(role, scope.map(str::to_string), now, 3600).unwrap())
    }

    pub fn record(&self, process: &str, kind: &'static str, args: Value, invoke: u64, outcome: Outcome) -> usize {
        let mut ops = self.ops.lock().unwrap();
        let id = ops.len();
        ops.push(Op { id, process: process.to_string(), kind, args, invoke, complete: self.now(), outcome });
        id
    }

    /// One HTTP operation, recorded. `path` may be relative to the node's address.
    #[allow(clippy::too_many_arguments)]
    pub async fn call(
        &self,
        node: usize,
        process: &str,
        kind: &'static str,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
        idem: Option<&str>,
    ) -> Outcome {
        let invoke = self.now();
        let url = format!("http://{}{}", self.addr(node), path);
        let mut req = self.http.request(method.clone(), url);
        if !token.is_empty() {
            req = req.bearer_auth(token);
        }
        if let Some(b) = &body {
            req = req.json(b);
        }
        if let Some(k) = idem {
            req = req.header("Idempotency-Key", k);
        }
        let mut detail = None;
        let detail_of_503 = &mut detail;
        let outcome = match req.send().await {
            Err(e) if e.is_connect() => Outcome::Fail("connection_refused".into()),
            Err(e) => Outcome::Unknown(if e.is_timeout() { "timeout".into() } else { "connection".into() }),
            Ok(resp) => {
                let status = resp.status().as_u16();
                match resp.text().await {
                    Err(_) => Outcome::Unknown("body lost".into()),
                    Ok(text) => {
                        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                        if (200..300).contains(&status) {
                            Outcome::Ok(v)
                        } else {
                            let code = v["code"].as_str().unwrap_or("").to_string();
                            let detail = v["detail"].as_str().unwrap_or("");
                            if status == 503 {
                                *detail_of_503 = Some(detail.to_string());
                            }
                            if status >= 500 && status != 503 {
                                Outcome::Fail(format!("{status} {code}"))
                            } else if status == 503 && maybe_decided(&code) {
                                Outcome::Unknown(format!("503 {detail}"))
                            } else {
                                Outcome::Fail(code)
                            }
                        }
                    }
                }
            }
        };
        let mut args = json!({"path": path, "method": method.as_str()});
        if let Some(b) = body {
            args["body"] = b;
        }
        if let Some(k) = idem {
            args["key"] = json!(k);
        }
        if let Some(d) = detail {
            args["detail"] = json!(d);
        }
        self.record(process, kind, args, invoke, outcome.clone());
        outcome
    }

    pub fn frame(&self, member: &str, f: FrameRec) {
        self.members.lock().unwrap().entry(member.to_string()).or_default().frames.push(f);
    }

    pub fn hello(&self, member: &str, conn: u32, after: u64, last: u64) {
        self.members.lock().unwrap().entry(member.to_string()).or_default().hellos.push((conn, after, last));
    }
}

/// A 503 that may have been decided: `outcome_unknown` (the engine changed, did not answer
/// in time, or its append failed after Redis may have taken it). Every other 503
/// (`unavailable`) is a refusal before anything was decided, and the checker holds the server
/// to that word (docs/RELIABILITY.md, "History checking", anomaly 1, found and fixed).
pub fn maybe_decided(code: &str) -> bool {
    code == "outcome_unknown"
}
