//! Fencing, seen from Redis itself. The log's entries do not carry the epoch that wrote
//! them, so a `MONITOR` connection (straight to redis-server, not through a proxy) watches
//! every command: the lease grants (`SET {p}:lease <node>/<epoch>` inside the acquire
//! script) and every append (`XADD {p}:log 0-<seq>` inside the append script, whose first
//! argument is the caller's fencing token). Scripts run atomically and MONITOR shows a
//! script's call before the commands it runs, in execution order.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub enum Seen {
    /// The lease given to this token.
    Grant(String),
    /// A log entry ending at this seq written by a script called with this token.
    Append { token: String, seq: u64 },
}

#[derive(Default)]
pub struct Watch {
    pub seen: Mutex<Vec<Seen>>,
    pub generation: Arc<AtomicU64>,
    pub stop: AtomicBool,
}

/// Splits a MONITOR line's quoted arguments (`"a" "b\"c" ...`), at most `max` of them.
pub fn args(line: &str, max: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = line.chars().peekable();
    while out.len() < max {
        // to the next opening quote
        loop {
            match chars.next() {
                Some('"') => break,
                Some(_) => {}
                None => return out,
            }
        }
        let mut s = String::new();
        loop {
            match chars.next() {
                Some('\\') => match chars.next() {
                    Some('x') => {
                        let h: String = chars.by_ref().take(2).collect();
                        s.push(u8::from_str_radix(&h, 16).unwrap_or(b'?') as char);
                    }
                    Some('n') => s.push('\n'),
                    Some('r') => s.push('\r'),
                    Some('t') => s.push('\t'),
                    Some(c) => s.push(c),
                    None => return out,
                },
                Some('"') => break,
                Some(c) => s.push(c),
                None => return out,
            }
        }
        out.push(s);
    }
    out
}

/// Watches until `stop`, reconnecting whenever Redis goes away.
pub fn spawn(port: u16, lease_key: String, log_key: String) -> Arc<Watch> {
    let w = Arc::new(Watch::default());
    let watch = w.clone();
    std::thread::spawn(move || {
        let mut token = String::new();
        while !watch.stop.load(Ordering::SeqCst) {
            let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            };
            if s.write_all(b"MONITOR\r\n").is_err() {
                continue;
            }
            let mut r = BufReader::new(s);
            let mut line = String::new();
            let mut ready = false;
            loop {
                if watch.stop.load(Ordering::SeqCst) {
                    return;
                }
                line.clear();
                match r.read_line(&mut line) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(_) => break,
                }
                if !ready {
                    if line.starts_with("+OK") {
                        ready = true;
                        watch.generation.fetch_add(1, Ordering::SeqCst);
                    }
                    continue;
                }
                let lua = line.contains("[0 lua]") || line.contains(" lua] ");
                let a = args(&line, 5);
                let Some(cmd) = a.first().map(|c| c.to_ascii_lowercase()) else { continue };
                if !lua && (cmd == "evalsha" || cmd == "eval") {
                    // EVALSHA sha numkeys key1 argv1: the append and renew scripts pass the
                    // lease key first and the caller's token as the first argument.
                    if a.get(3) == Some(&lease_key) {
                        token = a.get(4).cloned().unwrap_or_default();
                    }
                } else if lua && cmd == "set" && a.get(1) == Some(&lease_key) {
                    watch.seen.lock().unwrap().push(Seen::Grant(a.get(2).cloned().unwrap_or_default()));
                } else if lua && cmd == "xadd" && a.get(1) == Some(&log_key) {
                    let seq = a.get(2).and_then(|id| id.strip_prefix("0-")).and_then(|s| s.parse().ok()).unwrap_or(0);
                    watch.seen.lock().unwrap().push(Seen::Append { token: token.clone(), seq });
                }
            }
        }
    });
    w
}
