//! `spawn_app()` and the clients the tests drive it with.

use std::path::Path;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use muster::app::{self, App, Options};
use muster::domain::org::City;
use muster::gateway::auth::{Claims, Role, TokenKeys};
use muster::settings::Settings;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const SECRET: &str = "integration-test-secret-0123456789";

/// The seed of a randomized test: `MUSTER_TEST_SEED` when set, else from the clock. It is
/// printed first (the harness shows it with a failure's output), so any run can be
/// replayed: `MUSTER_TEST_SEED=N cargo test ... <test>`.
pub fn test_seed(test: &str) -> u64 {
    let seed = match std::env::var("MUSTER_TEST_SEED") {
        Ok(s) => s.trim().parse().unwrap_or_else(|_| panic!("MUSTER_TEST_SEED={s:?} is not a u64")),
        Err(_) => std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64,
    };
    eprintln!("{test}: seed={seed} (rerun with MUSTER_TEST_SEED={seed})");
    seed
}

/// Settings for tests: port 0, a fresh data directory, short deadlines.
pub fn test_settings(data: &Path, overrides: &[(&str, &str)]) -> Settings {
    let mut env = vec![
        ("MUSTER_SERVER__LISTEN".to_string(), "127.0.0.1:0".to_string()),
        ("MUSTER_SERVER__DATA_DIR".to_string(), format!("\"{}\"", data.display())),
        ("MUSTER_AUTH__SECRET".to_string(), SECRET.to_string()),
        ("MUSTER_LOG__FILTER".to_string(), "warn".to_string()),
    ];
    env.extend(overrides.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Settings::load_with_env(None, env).expect("test settings are valid")
}

/// The test city: the small demo city, with 20 on-call members living and standing in
/// community c001 (grids c001-g1..g3) and every other member off duty, so who is offered
/// what is predictable.
pub fn test_city() -> City {
    let mut city = muster::demo::demo_city(300, 42);
    let c001 = city.communities.iter().find(|c| c.id == "c001").unwrap().clone();
    let cells: Vec<_> = c001.grids.iter().flat_map(|g| g.cells.iter().map(move |c| (g.id.clone(), *c))).collect();
    for (i, m) in city.members.iter_mut().enumerate() {
        m.on_call = i < 20;
        if i < 20 {
            let (grid, cell) = &cells[i % cells.len()];
            m.residence_grid_id = grid.clone();
            m.position = cell.center();
        }
    }
    city
}

pub struct TestApp {
    pub app: Option<App>,
    pub addr: String,
    pub http: reqwest::Client,
    pub keys: TokenKeys,
    pub city: City,
    pub _dir: Option<tempfile::TempDir>,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

pub async fn spawn_app_with(overrides: &[(&str, &str)]) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let settings = test_settings(dir.path(), overrides);
    let app = app::build(settings, Options::default()).await.expect("app starts");
    let mut t = TestApp {
        addr: format!("127.0.0.1:{}", app.port()),
        app: Some(app),
        http: reqwest::Client::new(),
        keys: TokenKeys::new(SECRET),
        city: test_city(),
        _dir: Some(dir),
    };
    let city = t.city.clone();
    let resp = t.put_city(&t.command(), &city).await;
    assert_eq!(resp.status(), 200, "import: {}", resp.text().await.unwrap());
    t.city = city;
    t
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn token(&self, role: Role, scope: Option<&str>) -> String {
        let now = muster::engine::now_ms() as u64 / 1000;
        self.keys.sign(&Claims::new(role, scope.map(str::to_string), now, 3600).unwrap())
    }
    pub fn command(&self) -> String {
        self.token(Role::Command, None)
    }
    pub fn staff(&self, community: &str) -> String {
        self.token(Role::Staff, Some(community))
    }
    pub fn member(&self, id: &str) -> String {
        self.token(Role::Member, Some(id))
    }

    pub async fn put_city(&self, token: &str, city: &City) -> reqwest::Response {
        self.http.put(self.url("/v1/city")).bearer_auth(token).json(city).send().await.unwrap()
    }

    pub async fn get(&self, token: &str, path: &str) -> reqwest::Response {
        self.http.get(self.url(path)).bearer_auth(token).send().await.unwrap()
    }

    pub async fn post(&self, token: &str, path: &str, body: Value) -> reqwest::Response {
        self.http.post(self.url(path)).bearer_auth(token).json(&body).send().await.unwrap()
    }

    /// Raises an incident and returns the 201 body.
    pub async fn raise(&self, token: &str, body: Value) -> Value {
        let resp = self.post(token, "/v1/incidents", body).await;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap();
        assert_eq!(status, 201, "raise: {body}");
        body
    }

    pub async fn incident(&self, id: &str) -> Value {
        self.get(&self.command(), &format!("/v1/incidents/{id}")).await.json().await.unwrap()
    }

    /// Member ids with an offer in `state` on the incident.
    pub async fn offered(&self, id: &str, state: &str) -> Vec<(String, String)> {
        let inc = self.incident(id).await;
        inc["offers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|o| o["state"] == state)
            .map(|o| (o["member_id"].as_str().unwrap().to_string(), o["offer_id"].as_str().unwrap().to_string()))
            .collect()
    }

    pub async fn ws(&self, token: &str, after_seq: Option<u64>) -> Ws {
        Ws::connect(&self.addr, token, after_seq).await
    }

    /// Stops the in-process server, lets `edit` change its data directory (the server
    /// holds nothing open meanwhile), and starts a new one on it with default test
    /// settings. Sockets to the old one are gone.
    pub async fn restart(&mut self, edit: impl FnOnce(&Path)) {
        self.app.take().expect("an in-process server").stop().await.unwrap();
        let dir = self._dir.as_ref().expect("its data directory").path();
        edit(dir);
        let app = app::build(test_settings(dir, &[]), Options::default()).await.expect("app restarts");
        self.addr = format!("127.0.0.1:{}", app.port());
        self.app = Some(app);
    }

    pub async fn stop(mut self) {
        if let Some(app) = self.app.take() {
            app.stop().await.unwrap();
        }
    }
}

/// A websocket client that keeps frames it was not waiting for.
pub struct Ws {
    pub socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub hello: Value,
    pending: std::collections::VecDeque<Value>,
    next_id: u64,
}

pub const WAIT: Duration = Duration::from_secs(10);

impl Ws {
    pub async fn connect(addr: &str, token: &str, after_seq: Option<u64>) -> Ws {
        let mut url = format!("ws://{addr}/v1/ws?access_token={token}");
        if let Some(a) = after_seq {
            url.push_str(&format!("&after_seq={a}"));
        }
        let (socket, _) = tokio_tungstenite::connect_async(url).await.expect("websocket connects");
        let mut ws = Ws { socket, hello: Value::Null, pending: Default::default(), next_id: 1 };
        let hello = ws.raw_next().await.expect("hello");
        assert_eq!(hello["type"], "hello", "{hello}");
        ws.hello = hello;
        ws
    }

    async fn raw_next(&mut self) -> Option<Value> {
        loop {
            match tokio::time::timeout(WAIT, self.socket.next()).await.ok()?? {
                Ok(Message::Text(t)) => return Some(serde_json::from_str(&t).unwrap()),
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => continue,
            }
        }
    }

    /// The next stream frame (not ok/error), waiting up to WAIT.
    pub async fn next_frame(&mut self) -> Value {
        if let Some(f) = self.pending.pop_front() {
            return f;
        }
        loop {
            let f = self.raw_next().await.expect("a frame arrives");
            if f["type"] != "ok" && f["type"] != "error" {
                return f;
            }
        }
    }

    /// The next frame of this type, skipping others.
    pub async fn expect(&mut self, kind: &str) -> Value {
        loop {
            let f = self.next_frame().await;
            if f["type"] == kind {
                return f;
            }
        }
    }

    /// True if the socket stays open and silent for `d` and is alive after it: false if a
    /// stream frame arrives (it is kept for `next_frame`), a panic if the socket closes or
    /// fails (a closed socket is not quiet). After the window it sends two probe `ping`s
    /// and requires each `ok` answer; a stream frame before either answer makes it false.
    ///
    /// Why two: the server writes the frames queued for a socket right after its answer
    /// to a message, in the same flush. So a frame published before the call (an HTTP or
    /// websocket action that already returned has published its frames: the engine
    /// publishes before it answers) arrives before the second answer at the latest,
    /// however slow delivery is; no sleep is needed before asking.
    pub async fn quiet_for(&mut self, d: Duration) -> bool {
        if !self.pending.is_empty() {
            return false;
        }
        let deadline = tokio::time::Instant::now() + d;
        loop {
            match tokio::time::timeout_at(deadline, self.socket.next()).await {
                Err(_) => break,
                Ok(Some(Ok(Message::Text(t)))) => {
                    self.pending.push_back(serde_json::from_str(&t).unwrap());
                    return false;
                }
                // The server's keep-alive pings (and their pongs) are not stream frames.
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
                Ok(Some(Ok(other))) => panic!("not quiet: the socket ended during the window: {other:?}"),
                Ok(Some(Err(e))) => panic!("not quiet: the socket failed during the window: {e}"),
                Ok(None) => panic!("not quiet: the socket ended during the window"),
            }
        }
        let mut quiet = true;
        for _ in 0..2 {
            quiet &= self.probe().await;
        }
        quiet
    }

    /// Sends a `ping` and waits for its `ok` (a panic if the socket ends or it is
    /// refused); true if no stream frame came before it (those that did are kept).
    async fn probe(&mut self) -> bool {
        let id = format!("probe-{}", self.next_id);
        self.next_id += 1;
        let msg = json!({"id": id, "type": "ping"});
        if let Err(e) = self.socket.send(Message::Text(msg.to_string().into())).await {
            panic!("not quiet: the probe could not be sent, the socket is gone: {e}");
        }
        let mut quiet = true;
        loop {
            let f = match tokio::time::timeout(WAIT, self.socket.next()).await {
                Err(_) => panic!("the probe {id} was not answered within {WAIT:?}"),
                Ok(Some(Ok(Message::Text(t)))) => serde_json::from_str::<Value>(&t).unwrap(),
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
                Ok(Some(Ok(other))) => panic!("not quiet: the socket ended before answering the probe: {other:?}"),
                Ok(Some(Err(e))) => panic!("not quiet: the socket failed before answering the probe: {e}"),
                Ok(None) => panic!("not quiet: the socket ended before answering the probe"),
            };
            let answer = f["type"] == "ok" || f["type"] == "error";
            if answer && f["data"]["re"] == json!(id) {
                assert_eq!(f["type"], "ok", "the probe was refused: {f}");
                return quiet;
            }
            if !answer {
                quiet = false;
                self.pending.push_back(f);
            }
        }
    }

    /// Sends a message and returns its ok or error answer (frames in between are kept).
    pub async fn request(&mut self, kind: &str, data: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let msg = json!({"id": id, "type": kind, "data": data});
        self.socket.send(Message::Text(msg.to_string().into())).await.unwrap();
        loop {
            let f = self.raw_next().await.expect("an answer arrives");
            if (f["type"] == "ok" || f["type"] == "error") && f["data"]["re"] == json!(id) {
                return f;
            }
            self.pending.push_back(f);
        }
    }

    pub async fn send_raw(&mut self, msg: Message) {
        self.socket.send(msg).await.unwrap();
    }

    /// Waits for the server to close the socket and returns the close code.
    pub async fn close_code(&mut self) -> Option<u16> {
        loop {
            match tokio::time::timeout(WAIT, self.socket.next()).await.ok()? {
                Some(Ok(Message::Close(Some(f)))) => return Some(f.code.into()),
                Some(Ok(Message::Close(None))) | None => return None,
                Some(Err(_)) => return None,
                Some(Ok(_)) => continue,
            }
        }
    }
}

// ---------------------------------------------------------------- the real binary

/// `muster serve` as a child process on port 0 (kill -9, fault and log tests). Killed
/// (SIGKILL) when dropped.
pub struct Child {
    pub child: std::process::Child,
    pub addr: String,
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Child {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, and wait for the process to be gone.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How to start the child: extra environment, a wrapper command (e.g. `prlimit
/// --fsize=N --`) and where its stderr goes (discarded unless given).
#[derive(Default)]
pub struct ChildOptions<'a> {
    pub env: &'a [(&'a str, &'a str)],
    pub wrapper: &'a [&'a str],
    pub stderr: Option<std::fs::File>,
}

pub fn start_child(data: &Path, env: &[(&str, &str)]) -> Child {
    start_child_with(data, ChildOptions { env, ..Default::default() })
}

pub fn start_child_with(data: &Path, opts: ChildOptions<'_>) -> Child {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let bin = env!("CARGO_BIN_EXE_muster");
    let mut cmd = match opts.wrapper.split_first() {
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(bin);
            c
        }
        None => Command::new(bin),
    };
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(data)
        .env_remove("RUST_LOG")
        .env("MUSTER_AUTH__SECRET", SECRET)
        .env("MUSTER_LOG__FILTER", "warn")
        .stdout(Stdio::piped())
        .stderr(opts.stderr.map(Stdio::from).unwrap_or_else(Stdio::null));
    for (k, v) in opts.env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("the muster binary starts");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(addr) = line.strip_prefix("listening on http://") {
                let _ = tx.send(addr.to_string());
            }
        }
    });
    let addr = match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(addr) => addr,
        Err(_) => {
            let _ = child.kill();
            let status = child.wait();
            panic!("muster did not print its address (exit: {status:?})");
        }
    };
    Child { child, addr }
}

/// A TestApp-like client for a child process.
pub fn child_client(addr: &str) -> TestApp {
    TestApp {
        app: None,
        addr: addr.to_string(),
        http: reqwest::Client::new(),
        keys: TokenKeys::new(SECRET),
        city: test_city(),
        _dir: None,
    }
}

/// Asserts a problem+json answer with this status (and code, when given); returns its body.
pub async fn assert_problem(resp: reqwest::Response, status: u16, code: Option<&str>) -> Value {
    let got = resp.status().as_u16();
    let ct = resp.headers().get("content-type").map(|v| v.to_str().unwrap_or("").to_string()).unwrap_or_default();
    let text = resp.text().await.unwrap_or_default();
    assert_eq!(got, status, "{text}");
    assert_eq!(ct, "application/problem+json", "{text}");
    let body: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    assert_eq!(body["status"], status, "{body}");
    assert!(body["detail"].as_str().is_some_and(|d| !d.trim().is_empty()), "{body}");
    assert!(body["title"].as_str().is_some_and(|d| !d.is_empty()), "{body}");
    let code_got = body["code"].as_str().expect("a code");
    assert_eq!(body["type"], format!("/problems/{code_got}"), "{body}");
    if let Some(code) = code {
        assert_eq!(code_got, code, "{body}");
    }
    body
}

// ---------------------------------------------------------------- the helpers' own checks

/// A socket the server closed is not quiet: `quiet_for` fails instead of passing.
#[tokio::test]
#[should_panic(expected = "not quiet")]
async fn quiet_for_fails_on_a_closed_socket() {
    let app = spawn_app().await;
    let mut ws = app.ws(&app.staff("c001"), None).await;
    // A binary frame is refused: the server closes the socket (1003).
    ws.send_raw(Message::Binary(vec![1, 2, 3].into())).await;
    ws.quiet_for(Duration::from_millis(200)).await;
}

/// A frame published before the call is found even with no window at all: the probes
/// come back after it.
#[tokio::test]
async fn quiet_for_finds_a_published_frame_without_waiting() {
    let app = spawn_app().await;
    let staff = app.staff("c001");
    let mut ws = app.ws(&staff, None).await;
    assert!(ws.quiet_for(Duration::ZERO).await, "nothing happened yet");
    app.raise(&staff, json!({"grid_id": "c001-g1", "category": "patrol", "level": "III", "headcount": 2})).await;
    assert!(!ws.quiet_for(Duration::ZERO).await, "the raise's frames were published before its 201");
    assert_eq!(ws.next_frame().await["type"], "incident.raised");
    app.stop().await;
}

// ---------------------------------------------------------------- loopback receivers

/// A request a loopback receiver got (one request per connection).
#[derive(Clone, Debug)]
pub struct LoopbackRequest {
    pub method: String,
    pub path: String,
    /// Header names in lower case.
    pub headers: std::collections::BTreeMap<String, String>,
    pub body: Vec<u8>,
    /// The receiver's own address (for a redirect to itself).
    pub local: std::net::SocketAddr,
}

impl LoopbackRequest {
    /// A header's value, or "" when it is absent.
    pub fn header(&self, name: &str) -> String {
        self.headers.get(&name.to_ascii_lowercase()).cloned().unwrap_or_default()
    }
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).to_string()
    }
}

/// How a loopback receiver answers a request: after `delay`, `status` with `headers` and
/// an empty body, or (when `answer` is false) nothing: the connection is closed after the
/// delay without an answer.
#[derive(Clone, Debug)]
pub struct LoopbackReply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub delay: Duration,
    pub answer: bool,
}

impl LoopbackReply {
    pub fn status(status: u16) -> LoopbackReply {
        LoopbackReply { status, headers: Vec::new(), delay: Duration::ZERO, answer: true }
    }
    pub fn header(mut self, name: &str, value: &str) -> LoopbackReply {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
    pub fn after(mut self, delay: Duration) -> LoopbackReply {
        self.delay = delay;
        self
    }
    /// No answer at all: the connection is closed (after the delay, if any).
    pub fn silent(delay: Duration) -> LoopbackReply {
        LoopbackReply { status: 0, headers: Vec::new(), delay, answer: false }
    }
}

/// A small HTTP/1.1 server on 127.0.0.1, port 0, for the test's own receivers (webhook
/// endpoints, push services, SMS gateways): each connection carries one request, which is
/// read whole (head and `content-length` body) and handed to `handle` as it arrives, before
/// anything is answered; `handle` says how to answer. Returns the address it listens on.
pub async fn loopback<F>(handle: F) -> std::net::SocketAddr
where
    F: Fn(&LoopbackRequest) -> LoopbackReply + Send + Sync + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = std::sync::Arc::new(handle);
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let handle = handle.clone();
            tokio::spawn(async move {
                let _ = loopback_serve(sock, addr, &*handle).await;
            });
        }
    });
    addr
}

async fn loopback_serve<F>(mut sock: TcpStream, local: std::net::SocketAddr, handle: &F) -> Option<()>
where
    F: Fn(&LoopbackRequest) -> LoopbackReply,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = sock.read(&mut chunk).await.ok().filter(|n| *n > 0)?;
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.lines();
    let mut request_line = lines.next().unwrap_or("").split(' ');
    let method = request_line.next().unwrap_or("").to_string();
    let path = request_line.next().unwrap_or("").to_string();
    let mut headers = std::collections::BTreeMap::new();
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            headers.entry(k.trim().to_ascii_lowercase()).or_insert_with(|| v.trim().to_string());
        }
    }
    let len: usize = headers.get("content-length").and_then(|v: &String| v.parse().ok()).unwrap_or(0);
    while buf.len() < head_end + len {
        let n = sock.read(&mut chunk).await.ok().filter(|n| *n > 0)?;
        buf.extend_from_slice(&chunk[..n]);
    }
    let req = LoopbackRequest { method, path, headers, body: buf[head_end..head_end + len].to_vec(), local };
    let reply = handle(&req);
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    if !reply.answer {
        return Some(());
    }
    let extra: String = reply.headers.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
    let text = format!("HTTP/1.1 {} X\r\ncontent-length: 0\r\n{extra}connection: close\r\n\r\n", reply.status);
    sock.write_all(text.as_bytes()).await.ok()?;
    sock.shutdown().await.ok()
}
