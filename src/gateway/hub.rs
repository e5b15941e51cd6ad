//! The push hub: committed frames fan out to the sockets subscribed to their stream.
//!
//! Each socket has a bounded queue. Publishing never waits: a socket whose queue is full
//! is unsubscribed and flagged, and its session closes it with 4008 so the client resumes
//! from its last seq (the log has every frame). One frame is encoded once and shared by
//! every socket of its stream.
//!
//! A queue is a `VecDeque` behind a `std::sync::Mutex` with the session's waker, not a
//! tokio mpsc channel: a channel allocates a block of 32 slots and a cache-padded state
//! up front (about 1.8 KiB per socket), a `VecDeque` allocates only while frames wait and
//! is given back once the session has taken them, so an idle socket costs about 100 bytes
//! here (docs/PERFORMANCE.md, "Memory per connection").
//!
//! The map is behind a `std::sync::Mutex`: the critical sections are short, never cross
//! an `.await`, and a std mutex is cheaper than an async one for that (as mini-redis's
//! db.rs explains).

use std::collections::{HashMap, VecDeque};
use std::future::poll_fn;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use axum::extract::ws::Utf8Bytes;

use crate::domain::event::Frame;
use crate::engine::Publisher;

/// A frame on its way to one socket.
#[derive(Debug, Clone)]
pub struct Pushed {
    pub seq: u64,
    pub text: Utf8Bytes,
}

/// One socket's queue, shared by the hub (which pushes) and its session (which takes).
struct Queue {
    stream: Arc<str>,
    cap: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    frames: VecDeque<Pushed>,
    /// The session's task, when it waits for a frame or watches for an overflow.
    waker: Option<Waker>,
    /// Set once, when the hub dropped this socket because its queue was full.
    overflowed: bool,
}

enum Push {
    Queued(Option<Waker>),
    Full(Option<Waker>),
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn push(&self, p: Pushed) -> Push {
        let mut q = self.lock();
        if q.frames.len() >= self.cap {
            q.overflowed = true;
            // The queued frames stay: the session sends them, then closes with 4008.
            return Push::Full(q.waker.take());
        }
        q.frames.push_back(p);
        Push::Queued(q.waker.take())
    }
}

#[derive(Default)]
pub struct Hub {
    /// Per stream, its sockets' queues (most member streams have one socket).
    streams: Mutex<HashMap<Arc<str>, Vec<Arc<Queue>>>>,
}

/// A socket's subscription; dropping it unsubscribes.
pub struct Subscription {
    hub: Arc<Hub>,
    queue: Arc<Queue>,
}

impl Subscription {
    /// The stream subscribed to.
    pub fn stream(&self) -> &Arc<str> {
        &self.queue.stream
    }

    /// True when the hub dropped this socket because its queue was full.
    pub fn overflowed(&self) -> bool {
        self.queue.lock().overflowed
    }

    /// The next queued frame, if there is one. `None` also after an overflow, once the
    /// frames queued before it are taken.
    pub fn try_recv(&self) -> Option<Pushed> {
        let mut q = self.queue.lock();
        let p = q.frames.pop_front();
        if q.frames.is_empty() && q.frames.capacity() > 0 {
            // Give the buffer back: an idle socket keeps no queue memory.
            q.frames = VecDeque::new();
        }
        p
    }

    /// Waits for the next frame; `None` once the hub dropped this socket for a full queue
    /// and the frames queued before that were taken.
    pub async fn recv(&self) -> Option<Pushed> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<Option<Pushed>> {
        let mut q = self.queue.lock();
        if let Some(p) = q.frames.pop_front() {
            if q.frames.is_empty() {
                q.frames = VecDeque::new();
            }
            return Poll::Ready(Some(p));
        }
        if q.overflowed {
            return Poll::Ready(None);
        }
        register(&mut q.waker, cx);
        Poll::Pending
    }

    /// Ready once the hub has dropped this socket for a full queue. For a session that
    /// is busy writing (and so not in `recv`): the hub wakes it when that happens.
    pub fn poll_overflowed(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut q = self.queue.lock();
        if q.overflowed {
            return Poll::Ready(());
        }
        register(&mut q.waker, cx);
        Poll::Pending
    }
}

fn register(slot: &mut Option<Waker>, cx: &Context<'_>) {
    match slot {
        Some(w) if w.will_wake(cx.waker()) => {}
        _ => *slot = Some(cx.waker().clone()),
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut map = self.hub.streams.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(subs) = map.get_mut(&self.queue.stream) {
            subs.retain(|q| !Arc::ptr_eq(q, &self.queue));
            if subs.is_empty() {
                map.remove(&self.queue.stream);
            }
        }
    }
}

impl Hub {
    /// Subscribes a socket to `stream` with room for `queue` frames.
    pub fn subscribe(self: &Arc<Self>, stream: &Arc<str>, queue: usize) -> Subscription {
        let mut map = self.streams.lock().unwrap_or_else(|p| p.into_inner());
        // One allocation of the stream's name, shared by the map key, every queue and the
        // sessions.
        let name = match map.get_key_value(&**stream) {
            Some((k, _)) => k.clone(),
            None => stream.clone(),
        };
        let queue = Arc::new(Queue { stream: name.clone(), cap: queue.max(1), inner: Mutex::default() });
        map.entry(name).or_insert_with(|| Vec::with_capacity(1)).push(queue.clone());
        Subscription { hub: self.clone(), queue }
    }

    pub fn subscribers(&self) -> usize {
        self.streams.lock().unwrap_or_else(|p| p.into_inner()).values().map(Vec::len).sum()
    }
}

impl Publisher for Hub {
    /// A stream with no socket here: `publish` would skip its frames (a session that
    /// subscribes later reads them from the log), so they need not be encoded.
    fn wants(&self, stream: &str) -> bool {
        self.streams.lock().unwrap_or_else(|p| p.into_inner()).contains_key(stream)
    }

    fn publish(&self, frames: Vec<(Frame, String)>) {
        let mut pushed = 0u64;
        let mut dropped = 0u64;
        // Sessions are woken after the map's lock is released.
        let mut wake: Vec<Waker> = Vec::new();
        let mut map = self.streams.lock().unwrap_or_else(|p| p.into_inner());
        for (frame, text) in frames {
            let Some(subs) = map.get_mut(frame.stream.as_str()) else { continue };
            let text = Utf8Bytes::from(text);
            subs.retain(|q| {
                let (kept, waker) = match q.push(Pushed { seq: frame.seq, text: text.clone() }) {
                    Push::Queued(w) => {
                        pushed += 1;
                        (true, w)
                    }
                    Push::Full(w) => {
                        dropped += 1;
                        (false, w)
                    }
                };
                wake.extend(waker);
                kept
            });
            if subs.is_empty() {
                map.remove(frame.stream.as_str());
            }
        }
        drop(map);
        for w in wake {
            w.wake();
        }
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
        let f = Frame { stream: stream.into(), seq, kind: "t", data: serde_json::json!({}).into() };
        let t = f.to_text();
        (f, t)
    }

    #[tokio::test]
    async fn delivers_only_to_the_stream_and_drops_slow_consumers() {
        let hub = Arc::new(Hub::default());
        let a = hub.subscribe(&Arc::from("member:a"), 2);
        let b = hub.subscribe(&Arc::from("member:b"), 8);
        hub.publish(vec![frame("member:a", 1), frame("member:b", 1), frame("member:a", 2), frame("member:a", 3)]);
        assert_eq!(b.recv().await.unwrap().seq, 1);
        assert!(b.try_recv().is_none());
        assert_eq!(a.recv().await.unwrap().seq, 1);
        assert_eq!(a.recv().await.unwrap().seq, 2);
        // the third frame did not fit: a was dropped and flagged
        assert!(a.recv().await.is_none());
        assert!(a.overflowed());
        assert!(!b.overflowed());
        assert_eq!(hub.subscribers(), 1);
        assert!(hub.wants("member:b") && !hub.wants("member:a"));
        drop(b);
        assert_eq!(hub.subscribers(), 0);
        assert!(!hub.wants("member:b"));
    }

    #[tokio::test]
    async fn wakes_a_waiting_session_and_shares_a_stream() {
        let hub = Arc::new(Hub::default());
        let a1 = hub.subscribe(&Arc::from("member:a"), 4);
        let a2 = hub.subscribe(&Arc::from("member:a"), 4);
        assert!(Arc::ptr_eq(a1.stream(), a2.stream()), "one allocation of the name");
        let waiting = tokio::spawn(async move { a1.recv().await.map(|p| p.seq) });
        tokio::task::yield_now().await;
        hub.publish(vec![frame("member:a", 7)]);
        assert_eq!(waiting.await.unwrap(), Some(7));
        assert_eq!(a2.try_recv().map(|p| p.seq), Some(7));
        assert!(a2.try_recv().is_none());
        assert_eq!(hub.subscribers(), 1);
    }
}
