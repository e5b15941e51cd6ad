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
//! - `wartime`: 平战转换, mass mobilization, whistles, transfers (handlers and their `apply`).
//! - `mobilization`: orders and progress; `balance`: surplus and deficit per community.
//! - `workload`: difficulty-weighted load, the easy-task cap, fatigue; the Gini coefficient.

pub mod balance;
pub mod dispatcher;
pub mod event;
pub mod geo;
pub mod incident;
pub mod matching;
pub mod mobilization;
pub mod org;
pub mod reports;
pub mod response;
pub mod scope;
pub mod service;
pub mod snapshot;
pub mod wartime;
pub mod workload;

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod service_tests;
#[cfg(test)]
mod testkit;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod wartime_tests;
