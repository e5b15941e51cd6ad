//! The push hub: committed frames fan out to the sockets subscribed to their stream.
//!
//! Each socket has a bounded queue. Publishing never waits: a socket whose queue is full
//! is unsubscribed and flagged, and its session closes it with 4008 so the client resumes
//! from its last seq (the log has every frame). One frame is encoded once and shared by
//! every socket of its stream.
//!
//! The map is behind a `std::sync::Mutex`: the critical sections are short, never cross
//! an `.await`, and a std mutex is cheaper than an async one for that (as mini-redis's
//! db.rs explains).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::ws::Utf8Bytes;
use tokio::sync::mpsc;

use crate::domain::event::Frame;
use crate::engine::Publisher;

/// A frame on its way to one socket.
#[derive(Debug, Clone)]
pub struct Pushed {
    pub seq: u64,
    pub text: Utf8Bytes,
}

struct Sub {
    id: u64,
    tx: mpsc::Sender<Pushed>,
    overflow: Arc<Overflow>,
}

#[derive(Default)]
pub struct Hub {
    streams: Mutex<HashMap<String, Vec<Sub>>>,
    next_id: AtomicU64,
}

/// A socket's subscription; dropping it unsubscribes.
pub struct Subscription {
    hub: Arc<Hub>,
    stream: String,
    id: u64,
    pub rx: mpsc::Receiver<Pushed>,
    overflow: Arc<Overflow>,
}

impl Subscription {
    /// True when the hub dropped this socket because its queue was full.
    pub fn overflowed(&self) -> bool {
        self.overflow.is_set()
    }

    /// The flag behind `overflowed`, for a watchdog that outlives a borrow of the queue.
    pub fn overflow_flag(&self) -> Arc<Overflow> {
        self.overflow.clone()
    }
}

/// Set once, when the hub drops a socket for a full queue; can be awaited.
#[derive(Default)]
pub struct Overflow {
    flag: AtomicBool,
    notify: tokio::sync::Notify,
}

impl Overflow {
    pub fn is_set(&self) -> bool {
        self.flag.load(Ordering::Acquire)
    }

    fn set(&self) {
        self.flag.store(true, Ordering::Release);
        // notify_one keeps a permit when nobody waits yet, so `wait` cannot miss it.
        self.notify.notify_one();
    }

    /// Resolves once the flag is set.
    pub async fn wait(&self) {
        while !self.is_set() {
            self.notify.notified().await;
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut map = self.hub.streams.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(subs) = map.get_mut(&self.stream) {
            subs.retain(|s| s.id != self.id);
            if subs.is_empty() {
                map.remove(&self.stream);
            }
        }
    }
}

impl Hub {
    pub fn subscribe(self: &Arc<Self>, stream: &str, queue: usize) -> Subscription {
        let (tx, rx) = mpsc::channel(queue.max(1));
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let overflow = Arc::new(Overflow::default());
        self.streams.lock().unwrap_or_else(|p| p.into_inner()).entry(stream.to_string()).or_default().push(Sub {
            id,
            tx,
            overflow: overflow.clone(),
        });
        Subscription { hub: self.clone(), stream: stream.to_string(), id, rx, overflow }
    }

    pub fn subscribers(&self) -> usize {
        self.streams.lock().unwrap_or_else(|p| p.into_inner()).values().map(Vec::len).sum()
    }
}

impl Publisher for Hub {
    fn publish(&self, frames: Vec<(Frame, String)>) {
        let mut pushed = 0u64;
        let mut dropped = 0u64;
        let mut map = self.streams.lock().unwrap_or_else(|p| p.into_inner());
        for (frame, text) in frames {
            let Some(subs) = map.get_mut(&frame.stream) else { continue };
            let text = Utf8Bytes::from(text);
            subs.retain(|s| match s.tx.try_send(Pushed { seq: frame.seq, text: text.clone() }) {
                Ok(()) => {
                    pushed += 1;
                    true
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    s.overflow.set();
                    dropped += 1;
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            });
            if subs.is_empty() {
                map.remove(&frame.stream);
            }
        }
        drop(map);
        metrics::counter!("muster_frames_pushed_total").increment(pushed);
        if dropped > 0 {
            metrics::counter!("muster_ws_slow_consumers_total").increment(dropped);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(stream: &str, seq: u64) -> (Frame, String) {
        let f = Frame { stream: stream.into(), seq, kind: "t", data: serde_json::json!({}) };
        let t = f.to_text();
        (f, t)
    }

    #[tokio::test]
    async fn delivers_only_to_the_stream_and_drops_slow_consumers() {
        let hub = Arc::new(Hub::default());
        let mut a = hub.subscribe("member:a", 2);
        let mut b = hub.subscribe("member:b", 8);
        hub.publish(vec![frame("member:a", 1), frame("member:b", 1), frame("member:a", 2), frame("member:a", 3)]);
        assert_eq!(b.rx.recv().await.unwrap().seq, 1);
        assert!(b.rx.try_recv().is_err());
        assert_eq!(a.rx.recv().await.unwrap().seq, 1);
        assert_eq!(a.rx.recv().await.unwrap().seq, 2);
        // the third frame did not fit: a was dropped and flagged
        assert!(a.rx.recv().await.is_none());
        assert!(a.overflowed());
        assert!(!b.overflowed());
        drop(b);
        assert_eq!(hub.subscribers(), 0);
    }
}
