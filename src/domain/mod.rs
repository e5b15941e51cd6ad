//! The rules of dispatch: pure and synchronous. No tokio, axum, store, clock or randomness:
//! time (`now`) is passed in, so every rule can be tested without a runtime and replaying
//! the log gives the same state.
//!
//! - `geo`: positions, H3 cells, haversine.
//! - `org`: the imported city and its lookup tables.
//! - `response`: the four response levels, their reach, and the configured rules.
//! - `incident`: incidents and offers.
//! - `matching`: who is offered an incident (H3 rings, ranking).
//! - `event`: the log's vocabulary and the frames derived from it.
//! - `dispatcher`: `State`, `Command`, `execute`, `apply`.

pub mod dispatcher;
pub mod event;
pub mod geo;
pub mod incident;
pub mod matching;
pub mod org;
pub mod response;

#[cfg(test)]
mod tests;
