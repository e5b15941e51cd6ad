//! The engine thread with several nodes on Redis: the engine while its node holds the
//! lease (the batches are `writer`'s), else a replica that follows the log, applies each
//! event and pushes the frames to this node's sockets, and takes over when the lease is
//! free (docs/ARCHITECTURE.md, "Several nodes on Redis").

use std::sync::atomic::Ordering;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::share_revoked;
use super::writer::{Writer, lay_positions};
use crate::cluster::{self, Lease, Node, Renewal};
use crate::domain::dispatcher::{self, FrameFilter};
use crate::domain::event::{Event, Frame, FrameEncoder};
use crate::mailbox::{EngineError, Request, now_ms};
use crate::store::StoreError;

impl Writer {
    /// Several nodes: the engine while this node holds the lease, else a replica that
    /// follows the log and tries for the lease whenever nobody holds it.
    pub(super) fn run_cluster(&mut self, mut node: Node, rx: Receiver<Request>, cancel: CancellationToken) {
        let quarter = node.lease / 4;
        let mut renewal = Renewal { last_ok: Instant::now(), next: Instant::now() };
        let mut next_lead_try = Instant::now();
        let mut next_check = Instant::now();
        let mut last_flush = Instant::now();
        let mut batch = Vec::with_capacity(self.cfg.batch_max);
        // While following: Redis takes durable writes; who holds the lease.
        let mut store_ok = false;
        let mut holder: Option<String> = None;
        let mut priority = Priority::new(self.cfg.replica_nice);
        while !cancel.is_cancelled() {
            metrics::gauge!("muster_engine_leader").set(if node.is_leading() { 1.0 } else { 0.0 });
            priority.following(!node.is_leading());
            if self.stale && !self.try_recover() {
                std::thread::sleep(Duration::from_millis(250));
                continue;
            }
            if !node.is_leading() {
                // Commands that reached this mailbox while the node was the engine.
                while let Ok(req) = rx.try_recv() {
                    let _ =
                        req.reply.send(Err(EngineError::Unavailable("this node is not the engine now; retry".into())));
                }
                if Instant::now() >= next_check {
                    next_check = Instant::now() + Duration::from_secs(1);
                    match node.check_store() {
                        Err(e) if store_ok => {
                            tracing::error!(error = %e, "redis cannot take writes we may confirm; not ready")
                        }
                        Err(_) => {}
                        Ok(()) => store_ok = true,
                    }
                }
                let after = self.read_state().last_seq;
                match node.tail(after, Duration::from_millis(100)) {
                    Ok(events) => {
                        if !self.follow(events) {
                            self.stale = true;
                            continue;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "following the log failed; retrying");
                        (store_ok, holder) = (false, None);
                        self.writable.store(false, Ordering::Release);
                        std::thread::sleep(Duration::from_millis(200));
                        continue;
                    }
                }
                if store_ok && Instant::now() >= next_lead_try {
                    next_lead_try = Instant::now() + cluster::LEAD_RETRY;
                    match node.try_lead() {
                        Ok(Lease::Took(token)) => {
                            // Commands this node sent to the engine before are not answered.
                            node.fail_pending();
                            holder = Some(token);
                            match self.take_over(&node) {
                                Ok(()) => {
                                    let now = Instant::now();
                                    renewal = Renewal { last_ok: now, next: now + quarter };
                                    last_flush = now;
                                }
                                Err(e) => {
                                    tracing::error!(error = %e, "taking over failed; letting the lease go");
                                    node.resign(true);
                                    self.stale = true;
                                }
                            }
                            continue;
                        }
                        Ok(Lease::HeldBy(token)) => {
                            if holder.as_ref().is_some_and(|h| *h != token) {
                                node.fail_pending();
                            }
                            holder = Some(token);
                        }
                        Err(e) => {
                            tracing::debug!(error = %e, "trying for the engine lease failed");
                            (store_ok, holder) = (false, None);
                        }
                    }
                }
                // Members' positions reach only the engine, which saves them every
                // `position_flush`: take what changed from there as often.
                if last_flush.elapsed() >= self.cfg.position_flush {
                    last_flush = Instant::now();
                    match self.log.positions_changed() {
                        Ok(positions) if positions.is_empty() => {}
                        Ok(positions) => {
                            lay_positions(&mut self.state.write().unwrap_or_else(|p| p.into_inner()), positions)
                        }
                        Err(e) => tracing::debug!(error = %e, "reading the engine's positions failed"),
                    }
                }
                // Ready: Redis takes durable writes and some node is the engine.
                self.writable.store(store_ok && holder.is_some(), Ordering::Release);
                continue;
            }

            let wait = self.wait_time().min(renewal.next.saturating_duration_since(Instant::now()));
            if !self.collect(&rx, wait, &mut batch) {
                break;
            }
            self.step(std::mem::take(&mut batch));
            if std::mem::take(&mut self.fenced) {
                tracing::warn!("another node took the engine lease; following the log");
                node.resign(false);
                continue;
            }
            let now = Instant::now();
            if now >= renewal.next {
                renewal.next = now + quarter;
                match node.renew() {
                    Ok(true) => renewal.last_ok = now,
                    Ok(false) => {
                        tracing::warn!("the engine lease was lost; following the log");
                        node.resign(false);
                    }
                    Err(e) if renewal.last_ok.elapsed() + quarter >= node.lease => {
                        tracing::error!(error = %e, "cannot renew the engine lease before it lapses; standing down");
                        node.resign(false);
                    }
                    Err(e) => tracing::warn!(error = %e, "renewing the engine lease failed; retrying"),
                }
            }
            if node.is_leading() && last_flush.elapsed() >= self.cfg.position_flush {
                self.flush_positions();
                last_flush = Instant::now();
            }
        }
        if node.is_leading() {
            self.flush_positions();
            node.resign(true);
        }
    }

    /// Applies events another node's engine logged, and pushes their frames to this node's
    /// sockets. False on a gap in the seqs (the state must be rebuilt).
    fn follow(&mut self, events: Vec<Event>) -> bool {
        if events.is_empty() {
            return true;
        }
        let started = Instant::now();
        // Two syscalls per batch: only when the `followed` line below is logged.
        let timed = tracing::enabled!(tracing::Level::DEBUG);
        let cpu0 = if timed { thread_cpu_us() } else { 0 };
        let mut frames = Vec::new();
        let publisher = self.publisher.clone();
        let last = {
            let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
            // Build only the frames this node's sockets listen to (the engine builds all).
            state.frame_filter = FrameFilter::only(move |s| publisher.wants(s));
            let applied = dispatcher::apply_in_order(&mut state, &events, &mut frames);
            state.frame_filter = FrameFilter::default();
            if let Err(gap) = applied {
                tracing::error!(error = %gap, "rebuilding");
                return false;
            }
            share_revoked(&self.revoked, &state);
            state.last_seq
        };
        self.applied.send_replace(last);
        let applied_us = started.elapsed().as_micros() as u64;
        // Encode only what this node's sockets listen to: a mobilization derives a frame per
        // member, and most of them are connected to other nodes.
        let mut encoder = FrameEncoder::default();
        let encoded: Vec<(Frame, String)> = frames
            .into_iter()
            .filter(|f| self.publisher.wants(&f.stream))
            .map(|f| {
                let text = encoder.encode(&f);
                (f, text)
            })
            .collect();
        let pushed = encoded.len();
        if !encoded.is_empty() {
            self.publisher.publish(encoded);
        }
        tracing::debug!(
            events = events.len(),
            last,
            frames = pushed,
            applied_us,
            took_us = started.elapsed().as_micros() as u64,
            cpu_us = if timed { thread_cpu_us() - cpu0 } else { 0 },
            "followed"
        );
        true
    }

    /// This node holds the lease now: read the log to its end (the engine before is fenced,
    /// so the end is final), restore positions and retries, then take commands.
    fn take_over(&mut self, node: &Node) -> Result<(), StoreError> {
        loop {
            let after = self.read_state().last_seq;
            let events = self.log_after(after)?;
            if events.is_empty() {
                break;
            }
            if !self.follow(events) {
                return Err(StoreError::Corrupt(after + 1, "a gap in the log".into()));
            }
        }
        let positions = self.log.load_positions()?;
        {
            let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
            lay_positions(&mut state, positions);
            state.schedule_retries(now_ms());
        }
        self.dirty_positions.clear();
        self.write_retry_at = None;
        self.writable.store(true, Ordering::Release);
        node.leading.store(true, Ordering::Release);
        tracing::warn!(last_seq = self.read_state().last_seq, "this node is the engine now");
        metrics::counter!("muster_engine_takeovers_total").increment(1);
        Ok(())
    }

    /// Log events after `after` (no waiting), through the engine's own log connection.
    fn log_after(&mut self, after: u64) -> Result<Vec<Event>, StoreError> {
        let mut out = Vec::new();
        self.log.replay_after(after, &mut |e| out.push(e))?;
        Ok(out)
    }
}

/// The engine thread's scheduling priority on a node that is not the engine. A replica
/// applies each event before its node pushes the event's frames, so on a busy machine a
/// starved replica delays every one of its members: in a 3-node surge the followers spent
/// 55-100 ms of CPU applying a 50,000-member order but took up to 600 ms to do it, behind
/// the engine node's fan-out and the clients (docs/PERFORMANCE.md). A lower nice value
/// puts the apply ahead of this machine's socket work. While the thread is the engine it
/// runs at its normal priority: there a higher one only shrank the batches.
///
/// Lowering a nice value needs CAP_SYS_NICE (or an RLIMIT_NICE that allows it); without
/// it the thread stays as it is and says so once.
struct Priority {
    nice: i32,
    /// The thread's nice value when it started, restored while it leads.
    base: i32,
    raised: bool,
    refused: bool,
}

impl Priority {
    /// On the thread whose priority it sets.
    fn new(nice: i32) -> Priority {
        Priority { nice, base: thread_nice(), raised: false, refused: false }
    }

    fn following(&mut self, following: bool) {
        if self.nice == 0 || self.refused || following == self.raised {
            return;
        }
        let nice = if following { self.nice } else { self.base };
        // SAFETY: setpriority on this thread's own id changes only its scheduling.
        let r = unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, nice) };
        if r == 0 {
            self.raised = following;
        } else {
            self.refused = true;
            tracing::info!(
                nice,
                error = %std::io::Error::last_os_error(),
                "the engine thread keeps its priority while following (engine.replica_nice needs CAP_SYS_NICE)"
            );
        }
    }
}

fn thread_nice() -> i32 {
    // SAFETY: getpriority of this thread's own id only reads it.
    unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) }
}

fn thread_cpu_us() -> u64 {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid pointer to a timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    t.tv_sec as u64 * 1_000_000 + t.tv_nsec as u64 / 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The replica's priority goes to `replica_nice` while following and back to where it
    /// was when the thread leads; where the process may not lower it, it stays put.
    #[test]
    fn a_replica_runs_at_its_nice_value_and_the_engine_at_the_normal_one() {
        std::thread::spawn(|| {
            let base = thread_nice();
            // Higher than now, and not 0 (which means "leave it").
            let target = if base == 3 { base - 4 } else { base - 3 };
            let mut p = Priority::new(target);
            p.following(true);
            let raised = if p.refused { base } else { target };
            assert_eq!(thread_nice(), raised, "following");
            p.following(true);
            assert_eq!(thread_nice(), raised, "still following");
            p.following(false);
            assert_eq!(thread_nice(), base, "leading");
            p.following(true);
            assert_eq!(thread_nice(), raised, "following again");
            let mut off = Priority::new(0);
            off.following(false);
            assert_eq!(thread_nice(), raised, "0 leaves it alone");
        })
        .join()
        .expect("the checks pass");
    }
}
