//! The deliverer's tasks: a supervisor that keeps one task per active endpoint while this
//! node is the engine, and the endpoint tasks (see `webhooks` for the rules).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::{DeadLetter, Hooks, Status, guard, message_id, sign};
use crate::domain::dispatcher::{Actor, Command, rfc3339};
use crate::domain::webhooks;
use crate::engine::{EngineHandle, now_ms};
use crate::store::StoreError;

/// Events read from the log at a time.
const PAGE: usize = 200;

/// Starts the supervisor.
pub fn start(hooks: Arc<Hooks>, engine: EngineHandle, cancel: CancellationToken) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let poll = Duration::from_millis(hooks.settings.poll_ms);
        let mut running: HashMap<String, (CancellationToken, tokio::task::JoinHandle<()>)> = HashMap::new();
        loop {
            let wanted: Vec<String> = if engine.is_started() && engine.is_leader() {
                engine.read().webhooks.values().filter(|e| e.active).map(|e| e.id.clone()).collect()
            } else {
                Vec::new()
            };
            running.retain(|id, (stop, task)| {
                let keep = wanted.contains(id) && !task.is_finished();
                if !keep {
                    stop.cancel();
                }
                keep
            });
            for id in wanted {
                if let std::collections::hash_map::Entry::Vacant(slot) = running.entry(id) {
                    let stop = cancel.child_token();
                    let task = tokio::spawn(run(hooks.clone(), engine.clone(), slot.key().clone(), stop.clone()));
                    slot.insert((stop, task));
                }
            }
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(poll) => {}
            }
        }
        for (_, (stop, task)) in running {
            stop.cancel();
            let _ = task.await;
        }
    })
}

/// What became of one message.
enum Outcome {
    Delivered,
    /// Every try failed, or the receiver answered 410 Gone (`gone`).
    Dead {
        error: String,
        attempts: u32,
        gone: bool,
    },
    /// The endpoint was disabled or deleted, this node stopped being the engine, or the
    /// server is stopping: the message stays where it was.
    Stopped,
}

/// One message of an endpoint.
struct Message {
    seq: u64,
    id: String,
    kind: String,
    body: String,
}

async fn run(hooks: Arc<Hooks>, engine: EngineHandle, id: String, stop: CancellationToken) {
    if let Err(e) = endpoint(&hooks, &engine, &id, &stop).await {
        tracing::warn!(webhook = %id, error = %e, "webhook delivery paused: the store failed; retrying");
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// The endpoint's loop: replays first, then the log after its cursor. Returns when it
/// should stop (the supervisor starts it again if it should not have).
async fn endpoint(
    hooks: &Arc<Hooks>,
    engine: &EngineHandle,
    id: &str,
    stop: &CancellationToken,
) -> Result<(), StoreError> {
    let registered = match engine.read().webhooks.get(id) {
        Some(ep) if ep.active => ep.registered_seq,
        _ => return Ok(()),
    };
    let mut cursor = hooks.cursor(id).await?.unwrap_or(registered);
    let mut status = hooks.status(id).await?;
    let poll = Duration::from_millis(hooks.settings.poll_ms);
    loop {
        if stop.is_cancelled() {
            return Ok(());
        }
        for mut letter in hooks.dead_letters(id).await?.into_iter().filter(|l| l.replay) {
            let msg = Message {
                seq: letter.seq,
                id: letter.message_id.clone(),
                kind: letter.kind.clone(),
                body: letter.body.clone(),
            };
            match send_until_done(hooks, engine, id, &msg, &mut status, stop).await {
                Outcome::Delivered => hooks.remove_dead_letter(id, letter.seq).await?,
                Outcome::Dead { error, attempts, gone } => {
                    letter.replay = false;
                    letter.attempts += attempts;
                    letter.error = error.clone();
                    letter.dead_at = now_ms();
                    hooks.put_dead_letter(id, &letter).await?;
                    if died(hooks, engine, id, &mut status, &error, gone).await? {
                        return Ok(());
                    }
                }
                Outcome::Stopped => return Ok(()),
            }
            hooks.set_status(id, &status).await?;
        }
        let events = {
            let hooks = hooks.clone();
            let after = cursor;
            hooks.with(move |s| s.events_after(after, PAGE)).await?
        };
        let last_seq = engine.read().last_seq;
        metrics::gauge!("muster_webhook_backlog", "webhook" => id.to_string())
            .set(last_seq.saturating_sub(cursor) as f64);
        if events.is_empty() {
            tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                _ = hooks.wake.notified() => {}
                _ = tokio::time::sleep(poll) => {}
            }
            continue;
        }
        let mut passed = cursor;
        for e in events {
            let msg = {
                let state = engine.read();
                let Some(ep) = state.webhooks.get(id).filter(|ep| ep.active) else { return Ok(()) };
                webhooks::message_for(&state, ep, e.seq, &e.actor, &e.body).map(|(kind, data)| {
                    let body = json!({"type": kind, "timestamp": rfc3339(e.at), "data": data}).to_string();
                    Message { seq: e.seq, id: message_id(id, e.seq), kind: kind.to_string(), body }
                })
            };
            let Some(msg) = msg else {
                passed = e.seq;
                continue;
            };
            if passed > cursor {
                // What was passed over before it is done with, before it is tried.
                hooks.set_cursor(id, passed).await?;
            }
            match send_until_done(hooks, engine, id, &msg, &mut status, stop).await {
                Outcome::Delivered => {}
                Outcome::Dead { error, attempts, gone } => {
                    let letter = DeadLetter {
                        seq: msg.seq,
                        message_id: msg.id.clone(),
                        kind: msg.kind.clone(),
                        body: msg.body.clone(),
                        attempts,
                        error: error.clone(),
                        dead_at: now_ms(),
                        replay: false,
                    };
                    hooks.put_dead_letter(id, &letter).await?;
                    hooks.set_cursor(id, msg.seq).await?;
                    hooks.set_status(id, &status).await?;
                    if died(hooks, engine, id, &mut status, &error, gone).await? {
                        return Ok(());
                    }
                }
                Outcome::Stopped => return Ok(()),
            }
            hooks.set_cursor(id, msg.seq).await?;
            hooks.set_status(id, &status).await?;
            cursor = msg.seq;
            passed = msg.seq;
        }
        if passed > cursor {
            hooks.set_cursor(id, passed).await?;
            cursor = passed;
        }
    }
}

/// Counts a dead letter; disables the endpoint after `disable_after_dead` in a row, or at
/// once when the receiver said it is gone. True when it was disabled.
async fn died(
    hooks: &Arc<Hooks>,
    engine: &EngineHandle,
    id: &str,
    status: &mut Status,
    error: &str,
    gone: bool,
) -> Result<bool, StoreError> {
    status.dead += 1;
    status.dead_streak += 1;
    metrics::counter!("muster_webhook_deliveries_total", "outcome" => "dead").increment(1);
    hooks.set_status(id, status).await?;
    let limit = hooks.settings.disable_after_dead;
    let reason = if gone {
        format!("failing: the receiver answered 410 Gone ({error})")
    } else if limit > 0 && status.dead_streak >= limit {
        format!("failing: {} dead letters in a row, the last: {error}", status.dead_streak)
    } else {
        return Ok(false);
    };
    let reason: String = reason.chars().take(500).collect();
    tracing::warn!(webhook = %id, reason = %reason, "disabling a failing webhook endpoint");
    let cmd = Command::SetWebhook { webhook_id: id.to_string(), active: false, reason: Some(reason) };
    if let Err(e) = engine.submit(Actor::System, cmd).await {
        tracing::warn!(webhook = %id, error = %e, "disabling the webhook failed; it stays enabled");
        return Ok(false);
    }
    Ok(true)
}

/// The pause before try `n + 1` after `n` failed: base × 2^(n−1), capped, half of it fixed
/// and half drawn at random (jitter), so a fleet of endpoints does not retry in step.
fn backoff(settings: &crate::settings::Webhooks, n: u32) -> Duration {
    let full =
        settings.backoff_base_ms.saturating_mul(1u64 << (n.saturating_sub(1)).min(30)).min(settings.backoff_max_ms);
    let half = full / 2;
    Duration::from_millis(half + rand::thread_rng().gen_range(0..=full - half))
}

/// Sends a message until it is delivered, every try failed, or the endpoint stops.
async fn send_until_done(
    hooks: &Arc<Hooks>,
    engine: &EngineHandle,
    id: &str,
    msg: &Message,
    status: &mut Status,
    stop: &CancellationToken,
) -> Outcome {
    let attempts = hooks.settings.attempts;
    let mut error = String::new();
    for n in 1..=attempts {
        // Read each try: a rotated secret signs the next one; a disabled endpoint stops.
        let target = {
            let state = engine.read();
            state.webhooks.get(id).filter(|ep| ep.active).map(|ep| (ep.url.clone(), ep.secret.clone()))
        };
        let Some((url, secret)) = target.filter(|_| !stop.is_cancelled() && engine.is_leader()) else {
            return Outcome::Stopped;
        };
        let sent = tokio::select! {
            _ = stop.cancelled() => return Outcome::Stopped,
            sent = send(hooks, &url, &secret, msg) => sent,
        };
        match sent {
            Ok(()) => {
                status.delivered += 1;
                status.dead_streak = 0;
                status.last_success_at = Some(now_ms());
                metrics::counter!("muster_webhook_deliveries_total", "outcome" => "ok").increment(1);
                tracing::debug!(webhook = %id, seq = msg.seq, attempt = n, "webhook delivered");
                return Outcome::Delivered;
            }
            Err(Failure { error: e, gone }) => {
                status.failed += 1;
                status.last_failure_at = Some(now_ms());
                status.last_error = Some(e.clone());
                metrics::counter!("muster_webhook_deliveries_total", "outcome" => "failed").increment(1);
                tracing::info!(webhook = %id, seq = msg.seq, attempt = n, error = %e, "webhook delivery failed");
                if gone {
                    return Outcome::Dead { error: e, attempts: n, gone: true };
                }
                error = e;
            }
        }
        if n < attempts {
            let _ = hooks.set_status(id, status).await;
            tokio::select! {
                _ = stop.cancelled() => return Outcome::Stopped,
                _ = tokio::time::sleep(backoff(&hooks.settings, n)) => {}
            }
        }
    }
    Outcome::Dead { error, attempts, gone: false }
}

struct Failure {
    error: String,
    gone: bool,
}

/// One try: checks where the URL leads, signs, posts. 2xx is delivered; a redirect is a
/// failure (never followed), 410 says the receiver is gone.
async fn send(hooks: &Hooks, url: &str, secret: &str, msg: &Message) -> Result<(), Failure> {
    let fail = |error: String| Failure { error, gone: false };
    let u = guard::parse(url).map_err(fail)?;
    guard::check_literal(&u, &hooks.allowed).map_err(fail)?;
    let timestamp = now_ms() / 1000;
    let signature = sign::signature(secret, &msg.id, timestamp, &msg.body)
        .ok_or_else(|| fail("the endpoint's secret is unreadable".into()))?;
    let resp = hooks
        .client
        .post(u)
        .header("content-type", "application/json")
        .header("webhook-id", &msg.id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(msg.body.clone())
        .send()
        .await
        .map_err(|e| fail(describe(&e)))?;
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    let error = if status.is_redirection() {
        format!("answered {} (redirects are not followed)", status.as_u16())
    } else {
        format!("answered {}", status.as_u16())
    };
    Err(Failure { error, gone: status.as_u16() == 410 })
}

/// A client error without the URL (its query may hold a credential).
fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_request() || e.is_body() {
        "the request failed"
    } else {
        "failed"
    };
    let mut cause = String::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        cause = s.to_string();
        source = s.source();
    }
    if cause.is_empty() { kind.to_string() } else { format!("{kind}: {cause}") }
}
