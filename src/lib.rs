//! sockeye: a Socket.IO v5 / Engine.IO v4 broker on a thread-per-core `mio` runtime.
//!
//! Layering (see `docs/ARCHITECTURE.md`):
//! - [`engineio`], [`socketio`], [`http`]: sans-IO codecs and state machines. They take bytes and
//!   time as input and return bytes and events; no sockets, no clock, no threads.
//! - [`broker`]: per-core room index and broadcast planning, also sans-IO.
//! - [`auth`]: JWT verification for connection authentication, sans-IO (the caller passes the time).
//! - [`api`]: the application-facing API (namespaces, handlers, sockets, emit, rooms).
//! - [`runtime`]: the only module that touches `mio`, sockets, threads and the clock.
//! - [`store`]: chat history and room catalogue in embedded SQLite, on its own thread (the one
//!   thread and clock outside [`runtime`]); event loops only enqueue commands to it.
//! - [`settings`]: the `sockeye` command's options (TOML file, environment, flags), sans-IO.

pub mod api;
pub mod apps;
pub mod auth;
pub mod broker;
pub mod chat;
pub mod config;
pub mod engineio;
pub mod http;
pub mod log;
pub mod metrics;
pub mod runtime;
pub mod settings;
pub mod socketio;
pub mod stats;
pub mod store;
