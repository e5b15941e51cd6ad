//! The baseline: a minimal websocket server that speaks just enough of muster's member
//! protocol for the same clients to run against it. It sends `hello`, pushes one frame of
//! the size of a real `mobilization.order` to every socket (encoded once, each socket with
//! its own bounded queue, as muster's hub does) and answers every client message with
//! `ok`. No auth, no log, no fsync, no rules: what is left is the cost of websockets on
//! this machine, measured in the same run as muster.

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, ChildStdin};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_util::sync::CancellationToken;

use crate::clock::now_us;

/// Frames queued per socket before it counts as too slow (muster's default).
const QUEUE: usize = 1024;

#[derive(Clone)]
pub struct RawServer {
    pub addr: SocketAddr,
    subs: Arc<Mutex<Vec<mpsc::Sender<Utf8Bytes>>>>,
    stop: CancellationToken,
}

impl RawServer {
    /// Binds `listen` (loopback) and serves until `stop` or `lifetime`.
    pub async fn start(listen: SocketAddr, lifetime: Duration) -> anyhow::Result<RawServer> {
        anyhow::ensure!(listen.ip().is_loopback(), "the raw server listens on loopback only");
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let server = RawServer { addr, subs: Arc::default(), stop: CancellationToken::new() };
        let s = server.clone();
        tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + lifetime;
            loop {
                tokio::select! {
                    a = listener.accept() => if let Ok((stream, _)) = a {
                        tokio::spawn(s.clone().session(stream));
                    },
                    _ = s.stop.cancelled() => break,
                    _ = tokio::time::sleep_until(deadline) => { s.stop.cancel(); break }
                }
            }
        });
        Ok(server)
    }

    /// Pushes `text` to every socket; returns how many took it.
    pub fn broadcast(&self, text: &str) -> usize {
        let text = Utf8Bytes::from(text.to_string());
        let mut subs = self.subs.lock().unwrap_or_else(|p| p.into_inner());
        subs.retain(|tx| tx.try_send(text.clone()).is_ok());
        subs.len()
    }

    pub fn stop(&self) {
        self.stop.cancel();
    }

    async fn session(self, stream: TcpStream) {
        let _ = stream.set_nodelay(true);
        let cfg =
            WebSocketConfig::default().read_buffer_size(4096).write_buffer_size(4096).max_message_size(Some(65536));
        let Ok(ws) = tokio_tungstenite::accept_async_with_config(stream, Some(cfg)).await else { return };
        let (mut sink, mut incoming) = ws.split();
        let (tx, mut rx) = mpsc::channel::<Utf8Bytes>(QUEUE);
        self.subs.lock().unwrap_or_else(|p| p.into_inner()).push(tx);
        let hello = json!({"type": "hello", "seq": 0, "data": {"role": "member", "member_id": null, "last_seq": 0}});
        if sink.send(Message::Text(hello.to_string().into())).await.is_err() {
            return;
        }
        loop {
            tokio::select! {
                pushed = rx.recv() => {
                    let Some(first) = pushed else { break };
                    if sink.feed(Message::Text(first)).await.is_err() {
                        break;
                    }
                    let mut n = 0;
                    while let (true, Ok(t)) = (n < 256, rx.try_recv()) {
                        n += 1;
                        if sink.feed(Message::Text(t)).await.is_err() {
                            return;
                        }
                    }
                    if sink.flush().await.is_err() {
                        break;
                    }
                }
                msg = incoming.next() => match msg {
                    Some(Ok(Message::Text(t))) => {
                        let id = serde_json::from_str::<Value>(t.as_str()).ok().map(|v| v["id"].clone()).unwrap_or(Value::Null);
                        let ok = json!({"type": "ok", "seq": 0, "data": {"re": id}});
                        if sink.send(Message::Text(ok.to_string().into())).await.is_err() {
                            break;
                        }
                    }
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => {}
                },
                _ = self.stop.cancelled() => break,
            }
        }
    }
}

/// A line on the raw server process's stdin.
#[derive(Debug, Serialize, Deserialize)]
struct Broadcast {
    text: String,
}

/// Its answer on stdout.
#[derive(Debug, Serialize, Deserialize)]
pub struct Sent {
    pub to: usize,
    pub at: u64,
}

/// `muster-loadtest raw-server`: prints `listening on ADDR`, then broadcasts each line it
/// reads; ends at end of input or after `lifetime`.
pub async fn main_process(lifetime: Duration) -> anyhow::Result<()> {
    let server = RawServer::start("127.0.0.1:0".parse()?, lifetime).await?;
    let mut stdout = tokio::io::stdout();
    stdout.write_all(format!("listening on {}\n", server.addr).as_bytes()).await?;
    stdout.flush().await?;
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let run = async {
        while let Some(line) = lines.next_line().await? {
            let b: Broadcast = serde_json::from_str(&line)?;
            let at = now_us();
            let to = server.broadcast(&b.text);
            let mut out = serde_json::to_vec(&Sent { to, at })?;
            out.push(b'\n');
            stdout.write_all(&out).await?;
            stdout.flush().await?;
        }
        Ok::<_, anyhow::Error>(())
    };
    let r = tokio::time::timeout(lifetime, run).await;
    server.stop();
    match r {
        Ok(r) => r,
        Err(_) => Ok(()),
    }
}

/// Where the Node baseline's parts are: the `node` binary, the server script, and the
/// `node_modules` directory holding `ws`.
#[derive(Debug, Clone)]
pub struct NodeBaseline {
    pub node: std::path::PathBuf,
    pub script: std::path::PathBuf,
    pub node_modules: std::path::PathBuf,
}

/// The raw server as a child process (so its CPU and memory are its own).
pub struct RawProcess {
    child: Child,
    stdin: ChildStdin,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    pub addr: SocketAddr,
    pub pid: u32,
}

impl RawProcess {
    /// The harness's own raw server: `exe raw-server`.
    pub async fn start(exe: &std::path::Path, lifetime: Duration) -> anyhow::Result<RawProcess> {
        let mut cmd = tokio::process::Command::new(exe);
        cmd.arg("raw-server").arg("--lifetime-s").arg(lifetime.as_secs().to_string());
        Self::spawn(cmd, &format!("{} raw-server", exe.display())).await
    }

    /// The second baseline, on another stack: `node loadtest/node/raw-server.mjs` with the
    /// `ws` package found under `node_modules` (its parent directory goes into NODE_PATH).
    pub async fn start_node(node: &NodeBaseline, lifetime: Duration) -> anyhow::Result<RawProcess> {
        anyhow::ensure!(
            node.node_modules.join("ws").join("package.json").is_file(),
            "the Node baseline needs the `ws` package in {} (npm install --no-audit --no-fund --prefix {} ws@8), \
             or pass --baselines rust",
            node.node_modules.display(),
            node.node_modules.parent().unwrap_or(&node.node_modules).display()
        );
        let mut cmd = tokio::process::Command::new(&node.node);
        cmd.arg(&node.script)
            .arg("--lifetime-s")
            .arg(lifetime.as_secs().to_string())
            .env("NODE_PATH", &node.node_modules);
        Self::spawn(cmd, &format!("{} {}", node.node.display(), node.script.display())).await
    }

    async fn spawn(mut cmd: tokio::process::Command, what: &str) -> anyhow::Result<RawProcess> {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {what}"))?;
        let pid = child.id().context("the raw server exited at once")?;
        let stdin = child.stdin.take().expect("piped");
        let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
        let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .context("the raw server did not start")??
            .context("the raw server ended")?;
        let Some(addr) = first.strip_prefix("listening on ") else { bail!("raw server said '{first}'") };
        Ok(RawProcess { addr: addr.trim().parse()?, child, stdin, lines, pid })
    }

    /// Broadcasts `text`; returns (sockets, when the server began sending).
    pub async fn broadcast(&mut self, text: &str) -> anyhow::Result<Sent> {
        let mut line = serde_json::to_vec(&Broadcast { text: text.to_string() })?;
        line.push(b'\n');
        self.stdin.write_all(&line).await?;
        self.stdin.flush().await?;
        let l = tokio::time::timeout(Duration::from_secs(30), self.lines.next_line())
            .await
            .context("the raw server did not answer")??
            .context("the raw server ended")?;
        Ok(serde_json::from_str(&l)?)
    }

    pub async fn stop(mut self) {
        drop(self.stdin);
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await.is_err() {
            let _ = self.child.kill().await;
        }
    }
}
