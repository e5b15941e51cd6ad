//! Outbound webhooks: delivery (issue 18, item 3). The endpoints and which events each is
//! sent are the domain's (`domain::webhooks`); here is what only the edge does.
//!
//! **The log is the outbox.** Every event is durable before anyone hears "done", so the
//! events to deliver are the log itself; nothing more is written in the engine's
//! transaction and nothing slows its hot path. Beside the engine, the deliverer follows
//! the log on its own store connection (`HookStore`), one task per active endpoint, and
//! keeps per endpoint, durably: its **cursor** (the last seq delivered, dead-lettered or
//! passed over), its **status** (counts, last success, last error) and its **dead
//! letters**. After a crash an endpoint resumes from its cursor: a message the receiver
//! confirmed (2xx) is not sent again, except the one whose confirmation was not yet
//! recorded, under the same `webhook-id`.
//!
//! - Order: one message in flight per endpoint; a failing one holds the endpoint's later
//!   messages back until it is delivered or dead-lettered.
//! - Retries: `webhooks.attempts` tries with exponential backoff and jitter, then the
//!   message becomes a dead letter (listed, and replayed on command's request).
//!   `webhooks.disable_after_dead` dead letters in a row, or a 410 Gone, disable the
//!   endpoint through the engine (`WebhookDisabled`, an audited event, framed to command).
//! - The `webhook-id` of a message is `msg_<endpoint>_<seq>`: the same on every retry, after
//!   a restart, and on a replay.
//! - With several nodes only the engine's node delivers (`EngineHandle::is_leader`).
//!
//! `guard`: where a URL may lead (SSRF); `sign`: Standard Webhooks signatures; `deliver`:
//! the tasks.

mod deliver;
pub mod guard;
pub mod sign;

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::domain::time::Ts;
use crate::settings;
use crate::store::{HookStore, SharedHookStore, StoreError};

pub use deliver::start;

/// What the deliverer records of an endpoint (`status:<id>`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Status {
    pub delivered: u64,
    /// Tries that failed (each retry counts).
    pub failed: u64,
    pub dead: u64,
    /// Dead letters since the last delivery.
    pub dead_streak: u32,
    pub last_success_at: Option<Ts>,
    pub last_failure_at: Option<Ts>,
    pub last_error: Option<String>,
}

/// A message that was not delivered after every try (`dead:<id>:<seq>`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeadLetter {
    pub seq: u64,
    /// Its `webhook-id`.
    pub message_id: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// The body as sent: a replay sends it again, byte for byte.
    pub body: String,
    pub attempts: u32,
    pub error: String,
    pub dead_at: Ts,
    /// Command asked for it to be sent again.
    pub replay: bool,
}

/// The deliverer's records and client, shared with the gateway (which reads the status and
/// dead letters, and marks them for replay).
pub struct Hooks {
    store: SharedHookStore,
    pub settings: settings::Webhooks,
    pub allowed: Arc<Vec<ipnet::IpNet>>,
    client: reqwest::Client,
    /// Wakes the tasks (a replay was asked for).
    pub wake: tokio::sync::Notify,
}

fn cursor_key(id: &str) -> String {
    format!("cursor:{id}")
}
fn status_key(id: &str) -> String {
    format!("status:{id}")
}
fn dead_prefix(id: &str) -> String {
    format!("dead:{id}:")
}
fn dead_key(id: &str, seq: u64) -> String {
    format!("dead:{id}:{seq:020}")
}

/// A webhook's `webhook-id` for the event at `seq`.
pub fn message_id(endpoint: &str, seq: u64) -> String {
    format!("msg_{endpoint}_{seq}")
}

impl Hooks {
    pub fn new(store: Box<dyn HookStore>, settings: settings::Webhooks) -> anyhow::Result<Hooks> {
        let allowed = Arc::new(settings.allowed());
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(Duration::from_millis(settings.timeout_ms))
            .connect_timeout(Duration::from_millis(settings.timeout_ms))
            .dns_resolver(Arc::new(guard::Resolver { allowed: allowed.clone() }))
            .user_agent(concat!("muster-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Hooks { store: SharedHookStore::new(store), settings, allowed, client, wake: tokio::sync::Notify::new() })
    }

    /// Runs `f` on the store, off the runtime's workers.
    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut dyn HookStore) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.store.with(f).await
    }

    /// The endpoint's cursor, if it has one yet.
    pub async fn cursor(self: &Arc<Self>, id: &str) -> Result<Option<u64>, StoreError> {
        let key = cursor_key(id);
        self.with(move |s| Ok(s.get(&key)?.and_then(|v| v.parse().ok()))).await
    }

    async fn set_cursor(self: &Arc<Self>, id: &str, seq: u64) -> Result<(), StoreError> {
        let key = cursor_key(id);
        self.with(move |s| s.put(&key, &seq.to_string())).await
    }

    pub async fn status(self: &Arc<Self>, id: &str) -> Result<Status, StoreError> {
        let key = status_key(id);
        self.with(move |s| Ok(s.get(&key)?.and_then(|v| serde_json::from_str(&v).ok()).unwrap_or_default())).await
    }

    async fn set_status(self: &Arc<Self>, id: &str, status: &Status) -> Result<(), StoreError> {
        let (key, value) = (status_key(id), serde_json::to_string(status).expect("a status serializes"));
        self.with(move |s| s.put(&key, &value)).await
    }

    /// The endpoint's dead letters, oldest first.
    pub async fn dead_letters(self: &Arc<Self>, id: &str) -> Result<Vec<DeadLetter>, StoreError> {
        let prefix = dead_prefix(id);
        self.with(move |s| {
            Ok(s.scan(&prefix)?.into_iter().filter_map(|(_, v)| serde_json::from_str(&v).ok()).collect())
        })
        .await
    }

    async fn put_dead_letter(self: &Arc<Self>, id: &str, letter: &DeadLetter) -> Result<(), StoreError> {
        let (key, value) = (dead_key(id, letter.seq), serde_json::to_string(letter).expect("a letter serializes"));
        self.with(move |s| s.put(&key, &value)).await
    }

    async fn remove_dead_letter(self: &Arc<Self>, id: &str, seq: u64) -> Result<(), StoreError> {
        let key = dead_key(id, seq);
        self.with(move |s| s.delete(&key)).await
    }

    /// Marks the endpoint's dead letters (those of `seqs`, or all) to be sent again;
    /// answers how many were marked.
    pub async fn replay(self: &Arc<Self>, id: &str, seqs: Option<Vec<u64>>) -> Result<usize, StoreError> {
        let prefix = dead_prefix(id);
        let marked = self
            .with(move |s| {
                let mut n = 0;
                for (key, value) in s.scan(&prefix)? {
                    let Ok(mut letter) = serde_json::from_str::<DeadLetter>(&value) else { continue };
                    if seqs.as_ref().is_some_and(|w| !w.contains(&letter.seq)) {
                        continue;
                    }
                    if !letter.replay {
                        letter.replay = true;
                        s.put(&key, &serde_json::to_string(&letter).expect("a letter serializes"))?;
                    }
                    n += 1;
                }
                Ok(n)
            })
            .await?;
        self.wake.notify_waiters();
        Ok(marked)
    }

    /// Forgets a deleted endpoint's records.
    pub async fn forget(self: &Arc<Self>, id: &str) -> Result<(), StoreError> {
        let id = id.to_string();
        self.with(move |s| {
            for key in [cursor_key(&id), status_key(&id)] {
                s.delete(&key)?;
            }
            for (key, _) in s.scan(&dead_prefix(&id))? {
                s.delete(&key)?;
            }
            Ok(())
        })
        .await
    }
}
