//! muster: an emergency mobilization dispatcher.
//!
//! A command travels one short way:
//! `HTTP/WS message -> gateway (parse, authenticate, authorize) -> engine mailbox ->
//! domain::dispatcher::execute -> events -> store.append (fsync) -> publish -> sockets`.
//!
//! - `domain`: the rules, pure and synchronous (see its own map).
//! - `engine`: the single writer that owns the state, the deadlines and the append.
//! - `mailbox`: what a command carries to the engine and how it can fail, shared by
//!   `engine` and `cluster` (so `engine → cluster → mailbox`, no circle).
//! - `store`: the durable event log with the recipient frames (SQLite, embedded; or Redis).
//! - `snapshotter`: a thread beside the engine that keeps its own replica and saves snapshots.
//! - `cluster`: several nodes on Redis: the engine lease, the log's tail, commands between nodes.
//! - `webhooks`: outbound webhook delivery; `push`: Web Push to members' browsers (VAPID, aes128gcm).
//! - `gateway`: HTTP routes, auth, problem+json, websocket sessions, the push hub.
//! - `settings`: configuration, from config/default.toml, a file and `MUSTER_*` variables.
//! - `app`: wires everything and binds the listener.
//! - `demo`: the generated Wuhan-like demo city.
//! - `cli`: the `serve`, `token` and `demo-city` commands.

pub mod app;
pub mod cli;
pub mod cluster;
pub mod demo;
pub mod domain;
pub mod engine;
pub mod gateway;
pub mod mailbox;
pub mod push;
pub mod settings;
pub mod snapshotter;
pub mod store;
pub mod webhooks;
