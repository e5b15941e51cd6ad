//! Web Push to members' browsers (issue 18: RFC 8030 delivery, RFC 8291 aes128gcm
//! encryption, RFC 8292 VAPID). Who subscribed and what an event calls for are the
//! domain's (`domain::push`); here is what only the edge does.
//!
//! The durable pattern is the webhooks' (`crate::webhooks`): **the log is the outbox**.
//! Beside the engine, on its own store connection, the pusher follows the log from its
//! cursor (`push:cursor`). For each offer, whistle offer or mobilization order to a member
//! with subscriptions it writes a job (`push:job:<message id>`, one per browser) due at
//! once when the member has no live socket here, else `push.ack_wait_ms` after the event;
//! then it moves the cursor. Jobs are sent when due, `push.concurrency` at a time, while
//! the offer still waits for an answer or the order for an acknowledgement. Every try is
//! recorded through the engine (`PushRecord`, batched, so a surge's 16,000 pushes are a
//! few dozen commands) before its job is removed or rescheduled:
//!
//! - 2xx: delivered (`PushAttempted`, outcome `delivered`): the message id is remembered in
//!   the state, so a job left behind by a crash is not sent again.
//! - 404, 410: gone; the subscription is removed (`PushUnsubscribed`, reason `gone`).
//! - 429, 5xx, no answer: tried again after a backoff with jitter (a 429's `Retry-After`
//!   if longer), up to `push.attempts`; then failed. Other answers: failed at once.
//!
//! After kill -9, jobs resume from the store; the one push whose confirmation was not yet
//! recorded may be sent once more, under the same `Topic`, so a push service still holding
//! the first replaces it. With several nodes only the engine's node pushes, and it sees only
//! its own sockets: a member connected to another node is pushed at once (a second signal,
//! never a missed one).
//!
//! Pushing never runs on the engine's writer thread, and the HTTP requests are bounded by a
//! semaphore: a surge's websocket frames go out first, its pushes behind them.

mod deliver;
pub mod vapid;

use std::sync::Arc;
use std::time::Duration;

use crate::engine::Publisher;
use crate::settings;
use crate::store::{HookStore, SharedHookStore, StoreError};

pub use deliver::start;

/// The pusher: its store connection, its key and client, and where it learns who has a socket.
pub struct Pusher {
    store: SharedHookStore,
    pub settings: settings::Push,
    /// None: push is off (no key configured).
    pub vapid: Option<vapid::Vapid>,
    pub allowed: Arc<Vec<ipnet::IpNet>>,
    client: reqwest::Client,
    presence: Arc<dyn Publisher>,
    /// Wakes the loop (a new event may call for a push).
    pub wake: tokio::sync::Notify,
}

impl Pusher {
    pub fn new(
        store: Box<dyn HookStore>,
        settings: settings::Push,
        presence: Arc<dyn Publisher>,
    ) -> anyhow::Result<Pusher> {
        let vapid = if settings.vapid_private_key.is_empty() {
            None
        } else {
            Some(vapid::Vapid::from_private(&settings.vapid_private_key).map_err(anyhow::Error::msg)?)
        };
        let allowed = Arc::new(settings.allowed());
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(Duration::from_millis(settings.timeout_ms))
            .connect_timeout(Duration::from_millis(settings.timeout_ms))
            .dns_resolver(Arc::new(crate::webhooks::guard::Resolver { allowed: allowed.clone() }))
            .user_agent(concat!("muster-push/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Pusher {
            store: SharedHookStore::new(store),
            settings,
            vapid,
            allowed,
            client,
            presence,
            wake: tokio::sync::Notify::new(),
        })
    }

    /// The VAPID public key browsers subscribe with, if push is on.
    pub fn public_key(&self) -> Option<&str> {
        self.vapid.as_ref().map(|v| v.public_key.as_str())
    }

    /// Runs `f` on the store, off the runtime's workers.
    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut dyn HookStore) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.store.with(f).await
    }
}

/// The key that `serve --demo` keeps in the data directory when none is configured, so
/// that browsers' subscriptions survive a restart of the demo.
pub fn demo_key(data_dir: &std::path::Path) -> anyhow::Result<String> {
    let path = data_dir.join("vapid-demo.key");
    if let Ok(k) = std::fs::read_to_string(&path)
        && vapid::Vapid::from_private(k.trim()).is_ok()
    {
        return Ok(k.trim().to_string());
    }
    let (private, _) = vapid::generate();
    std::fs::create_dir_all(data_dir)?;
    std::fs::write(&path, &private)?;
    Ok(private)
}
