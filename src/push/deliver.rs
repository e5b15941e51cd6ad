//! The pusher's loop (see `push` for the rules): follow the log into jobs, send the due
//! ones with bounded concurrency, record every try through the engine, then settle the
//! job (remove it, or put it back for its next try).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use super::Pusher;
use crate::domain::dispatcher::{Actor, Command};
use crate::domain::push::{self, PushAttempt, PushKind, PushOutcome, Wanted};
use crate::domain::time::Ts;
use crate::engine::{EngineHandle, now_ms};
use crate::store::StoreError;

/// Events read from the log at a time.
const PAGE: usize = 500;
/// Tries recorded in one command at most.
const RECORD_BATCH: usize = 500;
const CURSOR: &str = "push:cursor";
const JOB_PREFIX: &str = "push:job:";

/// One push to one browser, as kept in the store until it is settled.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Job {
    /// `push_<seq>_<subscription id>`.
    id: String,
    member_id: String,
    subscription_id: String,
    kind: PushKind,
    incident_id: Option<String>,
    offer_id: Option<String>,
    mobilization_id: Option<String>,
    /// When it stops mattering.
    until: Ts,
    due: Ts,
    /// Tries made so far.
    tries: u32,
    /// The notification's JSON.
    payload: String,
}

impl Job {
    fn wanted(&self) -> Wanted {
        Wanted {
            member_id: self.member_id.clone(),
            kind: self.kind,
            incident_id: self.incident_id.clone(),
            offer_id: self.offer_id.clone(),
            mobilization_id: self.mobilization_id.clone(),
            until: self.until,
            payload: serde_json::Value::Null,
        }
    }

    fn attempt(&self, status: Option<u16>, outcome: PushOutcome, error: Option<String>) -> PushAttempt {
        PushAttempt {
            message_id: self.id.clone(),
            member_id: self.member_id.clone(),
            subscription_id: self.subscription_id.clone(),
            kind: self.kind,
            incident_id: self.incident_id.clone(),
            offer_id: self.offer_id.clone(),
            mobilization_id: self.mobilization_id.clone(),
            attempt: self.tries + 1,
            status,
            outcome,
            error,
        }
    }
}

/// What one try came to, and how long to wait at least before the next (a 429's
/// `Retry-After`).
struct Tried {
    job: Job,
    attempt: PushAttempt,
    retry_after: Option<Duration>,
}

fn job_key(id: &str) -> String {
    format!("{JOB_PREFIX}{id}")
}

/// Starts the pusher's loop (a no-op loop while push is off or this node is not the engine).
pub fn start(pusher: Arc<Pusher>, engine: EngineHandle, cancel: CancellationToken) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut run = Run::new(pusher.clone(), engine);
        loop {
            let pause = match run.step().await {
                Ok(pause) => pause,
                Err(e) => {
                    tracing::warn!(error = %e, "push paused: the store failed; retrying");
                    run.leading = false;
                    Duration::from_secs(1)
                }
            };
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = pusher.wake.notified() => {}
                Some(t) = run.results.recv() => run.done.push(t),
                _ = tokio::time::sleep(pause) => {}
            }
        }
    })
}

struct Run {
    pusher: Arc<Pusher>,
    engine: EngineHandle,
    leading: bool,
    cursor: u64,
    jobs: HashMap<String, Job>,
    queue: BTreeSet<(Ts, String)>,
    in_flight: HashSet<String>,
    limit: Arc<Semaphore>,
    sender: mpsc::UnboundedSender<Tried>,
    results: mpsc::UnboundedReceiver<Tried>,
    done: Vec<Tried>,
}

impl Run {
    fn new(pusher: Arc<Pusher>, engine: EngineHandle) -> Run {
        let (sender, results) = mpsc::unbounded_channel();
        let limit = Arc::new(Semaphore::new(pusher.settings.concurrency));
        Run {
            pusher,
            engine,
            leading: false,
            cursor: 0,
            jobs: HashMap::new(),
            queue: BTreeSet::new(),
            in_flight: HashSet::new(),
            limit,
            sender,
            results,
            done: Vec::new(),
        }
    }

    /// One round; answers how long to sleep unless woken.
    async fn step(&mut self) -> Result<Duration, StoreError> {
        let poll = Duration::from_millis(self.pusher.settings.poll_ms);
        let lead = self.pusher.vapid.is_some() && self.engine.is_started() && self.engine.is_leader();
        if !lead {
            if self.leading {
                self.leading = false;
                self.jobs.clear();
                self.queue.clear();
            }
            return Ok(poll);
        }
        if !self.leading {
            self.resume().await?;
        }
        self.settle().await?;
        let followed = self.follow().await?;
        self.dispatch().await?;
        if followed {
            return Ok(Duration::ZERO);
        }
        let now = now_ms();
        let next = self.queue.first().map(|(due, _)| Duration::from_millis((*due - now).max(1) as u64));
        Ok(next.map_or(poll, |n| n.min(poll)))
    }

    /// Becoming the engine: the jobs left in the store, and the cursor (none yet: the end of
    /// the log, so turning push on does not push what is long past).
    async fn resume(&mut self) -> Result<(), StoreError> {
        let stored = self.pusher.with(|s| Ok((s.get(CURSOR)?, s.scan(JOB_PREFIX)?))).await?;
        self.cursor = match stored.0.and_then(|c| c.parse().ok()) {
            Some(c) => c,
            None => {
                let end = self.engine.read().last_seq;
                self.pusher.with(move |s| s.put(CURSOR, &end.to_string())).await?;
                end
            }
        };
        self.jobs.clear();
        self.queue.clear();
        for (_, v) in stored.1 {
            if let Ok(job) = serde_json::from_str::<Job>(&v)
                && !self.in_flight.contains(&job.id)
            {
                self.queue.insert((job.due, job.id.clone()));
                self.jobs.insert(job.id.clone(), job);
            }
        }
        tracing::info!(jobs = self.jobs.len(), cursor = self.cursor, "pusher resumed");
        self.leading = true;
        Ok(())
    }

    /// New events into jobs: written, then the cursor moved past them. True when a full
    /// page was read (more may follow at once).
    async fn follow(&mut self) -> Result<bool, StoreError> {
        let after = self.cursor;
        let mut events = self.pusher.with(move |s| s.events_after(after, PAGE)).await?;
        let full = events.len() == PAGE;
        let wait = self.pusher.settings.ack_wait_ms as Ts;
        let mut new = Vec::new();
        let last = {
            let state = self.engine.read();
            // What the log holds but the state has not applied yet waits for the next round:
            // `wanted` reads the state after the event.
            events.retain(|e| e.seq <= state.last_seq);
            let Some(last) = events.last().map(|e| e.seq) else { return Ok(false) };
            for e in &events {
                for w in push::wanted(&state, &e.body) {
                    let socket = self.pusher.presence.wants(&format!("member:{}", w.member_id));
                    let due = if socket { e.at + wait } else { e.at };
                    let payload = w.payload.to_string();
                    for sub in state.push.of_member(&w.member_id) {
                        new.push(Job {
                            id: format!("push_{}_{}", e.seq, sub.id),
                            member_id: w.member_id.clone(),
                            subscription_id: sub.id.clone(),
                            kind: w.kind,
                            incident_id: w.incident_id.clone(),
                            offer_id: w.offer_id.clone(),
                            mobilization_id: w.mobilization_id.clone(),
                            until: w.until,
                            due,
                            tries: 0,
                            payload: payload.clone(),
                        });
                    }
                }
            }
            last
        };
        // The jobs and the cursor after them in one write (one transaction on SQLite).
        let mut records: Vec<(String, Option<String>)> =
            new.iter().map(|j| (job_key(&j.id), Some(serde_json::to_string(j).expect("a job serializes")))).collect();
        records.push((CURSOR.to_string(), Some(last.to_string())));
        self.pusher.with(move |s| s.write(&records)).await?;
        self.cursor = last;
        metrics::counter!("muster_push_queued_total").increment(new.len() as u64);
        for job in new {
            self.queue.insert((job.due, job.id.clone()));
            self.jobs.insert(job.id.clone(), job);
        }
        Ok(full)
    }

    /// Starts the due jobs that still matter, as many as the semaphore lets.
    async fn dispatch(&mut self) -> Result<(), StoreError> {
        let now = now_ms();
        let mut dropped = Vec::new();
        while let Some((due, id)) = self.queue.first().cloned() {
            if due > now {
                break;
            }
            let Ok(permit) = self.limit.clone().try_acquire_owned() else { break };
            self.queue.pop_first();
            let Some(job) = self.jobs.get(&id).cloned() else { continue };
            let sub = {
                let state = self.engine.read();
                let open = job.until > now && push::still_open(&state, &job.id, &job.wanted());
                state.push.subs.get(&job.subscription_id).filter(|s| open && s.member_id == job.member_id).cloned()
            };
            let Some(sub) = sub else {
                // Answered, expired, confirmed already, or unsubscribed: nothing to send.
                self.jobs.remove(&id);
                dropped.push(job_key(&id));
                continue;
            };
            self.in_flight.insert(id);
            let (pusher, sender) = (self.pusher.clone(), self.sender.clone());
            tokio::spawn(async move {
                let tried = try_once(&pusher, job, &sub).await;
                drop(permit);
                let _ = sender.send(tried);
            });
        }
        if !dropped.is_empty() {
            let records: Vec<(String, Option<String>)> = dropped.into_iter().map(|k| (k, None)).collect();
            self.pusher.with(move |s| s.write(&records)).await?;
        }
        Ok(())
    }

    /// Records the finished tries through the engine, then removes or reschedules their jobs.
    async fn settle(&mut self) -> Result<(), StoreError> {
        while let Ok(t) = self.results.try_recv() {
            self.done.push(t);
        }
        while !self.done.is_empty() {
            let batch: Vec<Tried> = self.done.drain(..self.done.len().min(RECORD_BATCH)).collect();
            let attempts = batch.iter().map(|t| t.attempt.clone()).collect();
            if let Err(e) = self.engine.submit(Actor::System, Command::PushRecord { attempts }).await {
                // Not recorded: the jobs stay as they were and are tried again later.
                tracing::warn!(error = %e, "recording push results failed; they will be tried again");
                let later = now_ms() + 1000;
                for t in batch {
                    self.in_flight.remove(&t.job.id);
                    self.queue.insert((later, t.job.id.clone()));
                }
                return Ok(());
            }
            let mut writes: Vec<(String, Option<String>)> = Vec::new();
            for t in batch {
                self.in_flight.remove(&t.job.id);
                let outcome = t.attempt.outcome;
                metrics::counter!("muster_push_attempts_total", "outcome" => outcome_str(outcome)).increment(1);
                if outcome == PushOutcome::Retry {
                    let mut job = t.job;
                    job.tries += 1;
                    let wait = backoff(&self.pusher.settings, job.tries).max(t.retry_after.unwrap_or_default());
                    job.due = now_ms() + wait.as_millis() as Ts;
                    writes.push((job_key(&job.id), Some(serde_json::to_string(&job).expect("a job serializes"))));
                    self.queue.insert((job.due, job.id.clone()));
                    self.jobs.insert(job.id.clone(), job);
                } else {
                    self.jobs.remove(&t.job.id);
                    writes.push((job_key(&t.job.id), None));
                }
            }
            self.pusher.with(move |s| s.write(&writes)).await?;
        }
        Ok(())
    }
}

fn outcome_str(o: PushOutcome) -> &'static str {
    match o {
        PushOutcome::Delivered => "delivered",
        PushOutcome::Retry => "retry",
        PushOutcome::Gone => "gone",
        PushOutcome::Failed => "failed",
    }
}

/// The pause before try `n + 1` after `n` failed: base × 2^(n−1), capped, half fixed and
/// half drawn at random (as the webhooks').
fn backoff(settings: &crate::settings::Push, n: u32) -> Duration {
    let full =
        settings.backoff_base_ms.saturating_mul(1u64 << (n.saturating_sub(1)).min(30)).min(settings.backoff_max_ms);
    let half = full / 2;
    Duration::from_millis(half + rand::thread_rng().gen_range(0..=full - half))
}

/// One try of a job: encrypt, sign, post; what the answer means.
async fn try_once(pusher: &Pusher, job: Job, sub: &push::Subscription) -> Tried {
    let last = job.tries + 1 >= pusher.settings.attempts;
    let (status, outcome, error, retry_after) = match post(pusher, &job, sub).await {
        Ok((status, retry_after)) => match status {
            200..=299 => (Some(status), PushOutcome::Delivered, None, None),
            404 | 410 => (Some(status), PushOutcome::Gone, Some(format!("answered {status}")), None),
            429 | 500..=599 if !last => {
                (Some(status), PushOutcome::Retry, Some(format!("answered {status}")), retry_after)
            }
            _ => (Some(status), PushOutcome::Failed, Some(format!("answered {status}")), None),
        },
        Err(Failure::Refused(e)) => (None, PushOutcome::Failed, Some(e), None),
        Err(Failure::Transient(e)) if !last => (None, PushOutcome::Retry, Some(e), None),
        Err(Failure::Transient(e)) => (None, PushOutcome::Failed, Some(e), None),
    };
    tracing::debug!(message = %job.id, member = %job.member_id, ?status, outcome = outcome_str(outcome), "push tried");
    let attempt = job.attempt(status, outcome, error.map(|e| e.chars().take(300).collect()));
    Tried { job, attempt, retry_after }
}

enum Failure {
    /// Cannot succeed (a bad key, an address not allowed).
    Refused(String),
    /// No answer: worth another try.
    Transient(String),
}

/// Posts the encrypted notification; answers the status and a `Retry-After` in seconds.
async fn post(pusher: &Pusher, job: &Job, sub: &push::Subscription) -> Result<(u16, Option<Duration>), Failure> {
    let refused = |e: String| Failure::Refused(e);
    let vapid = pusher.vapid.as_ref().ok_or_else(|| refused("push is off".into()))?;
    let url = crate::webhooks::guard::parse(&sub.endpoint).map_err(refused)?;
    crate::webhooks::guard::check_literal(&url, &pusher.allowed).map_err(refused)?;
    let key = B64.decode(&sub.p256dh).map_err(|_| refused("keys.p256dh is not base64url".into()))?;
    let ua_public =
        p256::PublicKey::from_sec1_bytes(&key).map_err(|_| refused("keys.p256dh is not a P-256 point".into()))?;
    let auth = B64.decode(&sub.auth).ok().filter(|a| a.len() == 16).ok_or_else(|| refused("bad keys.auth".into()))?;
    let mut key = web_push_native::Auth::default();
    key.copy_from_slice(&auth);
    let auth = key;
    let body = web_push_native::encrypt(job.payload.clone().into_bytes(), &ua_public, &auth)
        .map_err(|e| refused(format!("encryption failed: {e}")))?;
    let now = now_ms();
    let authorization = vapid.authorization(&url, &pusher.settings.subject, (now / 1000) as u64).map_err(refused)?;
    let ttl = ((job.until - now) / 1000).clamp(0, 28 * 24 * 3600);
    // One topic per offer or order (RFC 8030 5.4): a resent push replaces an undelivered one.
    let topic: String = Sha256::digest(job.id.as_bytes()).iter().take(16).map(|b| format!("{b:02x}")).collect();
    let resp = pusher
        .client
        .post(url)
        .header("content-type", "application/octet-stream")
        .header("content-encoding", "aes128gcm")
        .header("ttl", ttl.to_string())
        .header("urgency", "high")
        .header("topic", topic)
        .header("authorization", authorization)
        .body(body)
        .send()
        .await
        .map_err(|e| Failure::Transient(describe(&e)))?;
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|s| Duration::from_secs(s.min(300)));
    Ok((resp.status().as_u16(), retry_after))
}

/// A client error without the URL (a push endpoint is a capability).
fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "the request failed"
    };
    let mut cause = String::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        cause = s.to_string();
        source = s.source();
    }
    if cause.is_empty() { kind.to_string() } else { format!("{kind}: {cause}") }
}
