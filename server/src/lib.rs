//! The Tributary server: the gRPC API, workflow validation, the scheduling
//! engine, executor dispatch, event streams, retention and storage. The
//! `tributary` binary in `main.rs` is thin glue over this library.

pub mod accept;
pub mod api;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod config;
pub mod dispatch;
pub mod engine;
pub mod events;
pub mod retention;
pub mod schedules;
pub mod security;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod web;
