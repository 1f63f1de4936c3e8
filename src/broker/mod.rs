//! Per-core broker state: Engine.IO sessions, Socket.IO sockets, the room index, broadcast
//! planning and the messages cores exchange.
//!
//! Sans-IO: the [`shard::Shard`] takes parsed HTTP requests, WebSocket messages, cross-core
//! messages and the current time, and hands back commands for connections
//! ([`shard::ConnCmd`]) and messages for other cores. The runtime moves the bytes.

pub mod adapter;
pub(crate) mod ratelimit;
pub mod rooms;
pub mod shard;
// Tests, and the fuzz crate through the `sim` feature (not part of the public API).
#[cfg(any(test, feature = "sim"))]
#[doc(hidden)]
pub mod sim;
#[cfg(test)]
mod sim_recovery;

pub use shard::{ConnCmd, ConnKey, CoreId, RequestOutcome, SessionKey, Shard, ShardMsg};
