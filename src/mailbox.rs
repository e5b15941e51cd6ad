//! What travels through the engine's mailbox: a command with its actor and the way back
//! (`Request`), how a command can fail short of the domain's own refusal (`EngineError`),
//! and the clock commands are decided by (`now_ms`).
//!
//! The engine's thread reads the mailbox; `cluster` feeds it too, with the commands other
//! nodes forward, and dates the commands it forwards with `now_ms`. Both need these, so
//! they live here and the dependencies point one way: `engine → cluster → mailbox`, and
//! `cluster` does not know the engine. `engine` re-exports `EngineError` and `now_ms`, which
//! are part of its handle's API.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::oneshot;

use crate::domain::dispatcher::{Actor, Command, DomainError, Reply};
use crate::domain::event::Ts;

/// Wall-clock milliseconds since the epoch: the only clock the dispatcher sees.
pub fn now_ms() -> Ts {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Domain(#[from] DomainError),
    /// Refused before anything was decided: nothing changed, retry.
    #[error("the store cannot take writes now: {0}")]
    Unavailable(String),
    /// The command left for the engine and its answer was lost (the engine changed, did not
    /// answer in time, or its append failed after the store may have taken it): it may or
    /// may not have been done.
    #[error("the outcome is unknown: {0}")]
    Unknown(String),
    #[error("the dispatcher is busy; retry shortly")]
    Overloaded,
    #[error("muster is starting or stopping")]
    NotReady,
}

/// A command in the engine's mailbox, and where its answer goes.
pub(crate) struct Request {
    pub(crate) actor: Actor,
    pub(crate) cmd: Command,
    pub(crate) reply: oneshot::Sender<Result<Reply, EngineError>>,
    /// Set, before the reply, to the last seq of the batch that logged the command's events
    /// (commands from other nodes: they wait until their replica has applied it).
    pub(crate) logged_at: Option<Arc<std::sync::atomic::AtomicU64>>,
}
