//! A TCP proxy on loopback that the test controls, between a node and Redis: pass, delay,
//! hold one direction (bytes stop flowing that way, nothing is closed), cut (close every
//! connection) and refuse new connections.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Flow {
    Pass,
    Delay(u64),
    Hold,
}

#[derive(Debug)]
struct State {
    /// node → Redis, Redis → node
    up: Flow,
    down: Flow,
    refuse: bool,
    tasks: Vec<AbortHandle>,
}

#[derive(Clone)]
pub struct Proxy {
    pub port: u16,
    state: Arc<Mutex<State>>,
    accept: AbortHandle,
}

impl Proxy {
    pub async fn start(upstream: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State { up: Flow::Pass, down: Flow::Pass, refuse: false, tasks: Vec::new() }));
        let st = state.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if st.lock().unwrap().refuse {
                    drop(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(&upstream).await else { continue };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                let a = tokio::spawn(pump(cr, sw, st.clone(), true));
                let b = tokio::spawn(pump(sr, cw, st.clone(), false));
                let mut s = st.lock().unwrap();
                s.tasks.retain(|t| !t.is_finished());
                s.tasks.push(a.abort_handle());
                s.tasks.push(b.abort_handle());
            }
        })
        .abort_handle();
        Proxy { port, state, accept }
    }

    pub fn set(&self, up: Flow, down: Flow) {
        let mut s = self.state.lock().unwrap();
        s.up = up;
        s.down = down;
    }

    /// Closes every connection through the proxy now.
    pub fn cut(&self) {
        let mut s = self.state.lock().unwrap();
        for t in s.tasks.drain(..) {
            t.abort();
        }
    }

    /// Refuse (close at once) new connections, or take them again.
    pub fn refuse(&self, on: bool) {
        self.state.lock().unwrap().refuse = on;
    }

    pub fn stop(&self) {
        self.accept.abort();
        self.cut();
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    st: Arc<Mutex<State>>,
    up: bool,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        loop {
            let flow = {
                let s = st.lock().unwrap();
                if up { s.up } else { s.down }
            };
            match flow {
                Flow::Pass => break,
                Flow::Delay(ms) => {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    break;
                }
                Flow::Hold => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
