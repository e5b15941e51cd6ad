//! The rules of dispatch: pure and synchronous. No tokio, axum, store, clock or randomness:
//! time (`now`) is passed in, so every rule can be tested without a runtime and replaying
//! the log gives the same state.
//!
//! - `geo`: positions, H3 cells, haversine; `geojson`: the city as GeoJSON polygons (import, export).
//! - `org`: the imported city and its lookup tables.
//! - `response`: the four response levels, their reach, and the configured rules.
//! - `incident`: incidents and offers.
//! - `matching`: who is offered an incident (H3 rings, ranking).
//! - `event`: the log's vocabulary and the frames derived from it.
//! - `time`: `Ts` and `rfc3339`; `errors`: `Code`, `ErrorKind`, `DomainError`.
//! - `state`: `State`, deadlines, stream counters; `command`: `Actor`, `Command`, `Reply`, `Tx`.
//! - `incidents`: raise, offers and answers, escalation, closing (handlers and their `apply`).
//! - `dispatcher`: the kernel: `execute` and `apply` route to the features.
//! - `wartime`: 平战转换, mass mobilization, whistles, transfers (handlers and their `apply`).
//! - `mobilization`: orders and progress; `balance`: surplus and deficit per community.
//! - `workload`: difficulty-weighted load, the easy-task cap, fatigue; the Gini coefficient.
//! - `access`: sign-in links (invitations) and the sessions they open (refresh rotation).
//! - `webhooks`: outbound webhook endpoints, and which events each is sent.
//! - `push`: members' Web Push subscriptions, which events call for a push, and the record of tries.

pub mod access;
pub mod answers;
pub mod audit;
pub mod balance;
pub mod campaign;
pub mod command;
pub mod dispatcher;
pub mod errors;
pub mod event;
pub mod geo;
pub mod geojson;
pub mod incident;
pub mod incidents;
pub mod matching;
pub mod mobilization;
pub mod org;
pub mod push;
pub mod reports;
pub mod residents;
pub mod residents_data;
pub mod response;
pub mod scope;
pub mod service;
pub mod service_data;
pub mod snapshot;
pub mod state;
pub mod time;
pub mod wartime;
pub mod webhooks;
pub mod workload;

#[cfg(test)]
mod access_tests;
#[cfg(test)]
mod audit_tests;
#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod residents_tests;
#[cfg(test)]
mod service_tests;
#[cfg(test)]
mod testkit;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod wartime_tests;
#[cfg(test)]
mod webhooks_tests;
