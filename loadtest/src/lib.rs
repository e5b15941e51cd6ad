//! muster-loadtest: the load harness of muster (issue 5).
//!
//! Members are real websocket clients; the harness starts the muster server itself, signs
//! tokens with the server's secret and knows the city by generating the same demo city.
//!
//! - `clock`: one monotonic clock shared by every process of a run (CLOCK_MONOTONIC).
//! - `dist`: answer-delay distributions (0 ms for capacity runs, lognormal for realism).
//! - `proto`: what the coordinator and its workers say to each other (JSON lines).
//! - `member`: one simulated member: connect from a chosen source address, answer orders
//!   and offers, resume with `after_seq`, record every time.
//! - `worker`: a fleet of members in one process (`muster-loadtest worker`, or a task).
//! - `fleet`: the coordinator's side: in-process workers, or child processes of its own exe.
//! - `server`: the muster server as a child process, and what /proc says about it.
//! - `cluster`: several muster nodes on one Redis (`--nodes N`): the durable redis-server,
//!   a RESP PING, the nodes, and which node each member connects to.
//! - `raw`: the baseline: a minimal websocket server that speaks just enough of the protocol.
//! - `api`: the HTTP calls a scenario makes (mode switch, mobilize, raise, list).
//! - `scenario`: delta-surge, steady, reconnect-storm, raw-fanout.
//! - `stats`, `report`: percentiles, and the JSON, Markdown and PNG written to `--out`.
//!
//! Every loop is bounded in count and in time, and traffic goes only to 127.0.0.0/8.

pub mod api;
pub mod clock;
pub mod cluster;
pub mod dist;
pub mod fleet;
pub mod member;
pub mod proto;
pub mod raw;
pub mod report;
pub mod scenario;
pub mod server;
pub mod stats;
pub mod worker;
