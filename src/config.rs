//! Server configuration and limits. Plain data; the `sockeye` command fills it from its settings
//! (`crate::settings`: TOML file, environment, flags).
//!
//! Every limit here is enforced somewhere; `docs/ARCHITECTURE.md` has the table of what happens
//! when each one is hit.

use std::time::Duration;

use crate::http::cors::Cors;

/// Engine.IO settings, sent to clients in the open packet.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// How often the server pings (reference default 25 s).
    pub ping_interval: Duration,
    /// How long the server waits for the pong after a ping (reference default 20 s).
    pub ping_timeout: Duration,
    /// Largest HTTP body or WebSocket message accepted, in bytes (reference default 1 MB).
    pub max_payload: usize,
    /// How long a WebSocket probe may take to finish the upgrade.
    pub upgrade_timeout: Duration,
    /// Whether polling sessions are offered the WebSocket upgrade.
    pub allow_upgrades: bool,
    /// Whether the long-polling transport is offered at all.
    pub allow_polling: bool,
    /// Whether the WebSocket transport is offered at all.
    pub allow_websocket: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            ping_interval: Duration::from_millis(25_000),
            ping_timeout: Duration::from_millis(20_000),
            max_payload: 1_000_000,
            upgrade_timeout: Duration::from_millis(10_000),
            allow_upgrades: true,
            allow_polling: true,
            allow_websocket: true,
        }
    }
}

/// Limits that protect the server from slow or hostile peers.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Output bytes queued for one connection (or one polling session) before the client is
    /// disconnected as a slow consumer.
    pub max_output_bytes: usize,
    /// HTTP request head size.
    pub max_header_bytes: usize,
    /// Binary attachments in one Socket.IO packet.
    pub max_attachments: usize,
    /// Rooms one socket may be in (its own room included).
    pub max_rooms_per_socket: usize,
    /// Open connections per core; beyond it new connections are refused.
    pub max_connections_per_core: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_output_bytes: 4 * 1024 * 1024,
            max_header_bytes: 8192,
            max_attachments: 16,
            max_rooms_per_socket: 1024,
            max_connections_per_core: 100_000,
        }
    }
}

/// The whole configuration of one server.
#[derive(Debug, Clone)]
pub struct Config {
    pub host: String,
    /// 0 picks a free port; the bound port is reported by `Server::local_addr`.
    pub port: u16,
    /// Event-loop threads; 0 means one per available core.
    pub cores: usize,
    /// Socket.IO path (reference default `/socket.io/`).
    pub path: String,
    /// How long a new Engine.IO session may wait before connecting a namespace.
    pub connect_timeout: Duration,
    /// Default timeout for server-to-client acks when the application gives none.
    pub ack_timeout: Duration,
    pub engine: EngineConfig,
    pub limits: Limits,
    pub cors: Cors,
    /// TCP listen backlog (at least 1024).
    pub backlog: i32,
    /// After a shutdown starts, how long a core keeps delivering close packets (a polling
    /// session waits for its next poll) before it exits regardless.
    pub shutdown_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            host: "0.0.0.0".into(),
            port: 3000,
            cores: 0,
            path: "/socket.io/".into(),
            connect_timeout: Duration::from_millis(45_000),
            ack_timeout: Duration::from_millis(10_000),
            engine: EngineConfig::default(),
            limits: Limits::default(),
            cors: Cors::permissive(),
            backlog: 1024,
            shutdown_timeout: Duration::from_millis(3000),
        }
    }
}
