//! One integration-test binary: the real server on port 0, real HTTP and websocket
//! clients, real SQLite in a temporary directory.

mod helpers;

mod answers;
mod audit;
mod authz;
mod bad_input;
mod campaign;
mod campaign_live;
mod city_geojson;
mod cluster;
mod faults;
mod flow;
mod history;
mod hostile;
mod logs;
mod matrix;
mod pages;
mod push;
mod rate_limits;
mod readme;
mod residents;
mod restart;
mod roster_csv;
mod service;
mod signin;
mod unit_stream;
mod wartime;
mod webhooks;
