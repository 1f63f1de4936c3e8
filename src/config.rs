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
    /// Open connections per core; beyond it a new connection gets `503` and is closed.
    pub max_connections_per_core: usize,
    /// Open connections on the whole node (all cores together); beyond it a new connection
    /// gets `503 Service Unavailable` (`Retry-After: 1`) and is closed. Counted with one shared
    /// atomic, touched on accept and close only.
    pub max_connections: usize,
    /// New Engine.IO sessions (handshakes) one client address may open per second; 0 = no
    /// limit. Beyond it the handshake is answered `429`. IPv6 addresses count per /64. The
    /// budget is split evenly over the cores (each core sees only its own accepts), with at
    /// least one handshake of burst per core.
    ///
    /// Behind a reverse proxy every client arrives from the proxy's address: a proxy on the
    /// same host is loopback and exempt (see `handshake_rate_exempt_loopback`); for one on
    /// another host, set 0 or raise it, and limit at the proxy.
    pub max_handshakes_per_ip_per_sec: u32,
    /// Handshakes one address may open at once before the rate applies; 0 = twice the rate.
    pub handshake_burst_per_ip: u32,
    /// Addresses each core tracks for the handshake rate. At the bound the least recently seen
    /// half is forgotten (they start again with a full burst), so memory stays bounded whatever
    /// number of addresses a flood comes from.
    pub handshake_rate_max_ips: usize,
    /// Loopback peers (a reverse proxy or load generator on the same host) are not limited by
    /// the handshake rate.
    pub handshake_rate_exempt_loopback: bool,
    /// Time a connection has to send a complete request head, counted from accept or, on a
    /// kept-alive connection, from the first byte of the request. A request body must keep
    /// arriving: a connection whose body makes no progress for this long is closed too.
    /// WebSockets and parked polls are exempt (the Engine.IO heartbeat covers them).
    pub header_read_timeout: Duration,
    /// How long a kept-alive HTTP connection may stay idle between a response and the next
    /// request before it is closed. Counted from when the response was queued, so a client
    /// still taking a large response is inside this time too. The default, 75 s, is longer
    /// than nginx's upstream `keepalive_timeout` (60 s), so a proxy in front closes its idle
    /// connections first and never sends a request into our close.
    pub keep_alive_idle_timeout: Duration,
    /// After `accept` fails for lack of descriptors or memory (EMFILE, ENFILE, ENOBUFS,
    /// ENOMEM), how long a core waits before it tries again: the connections still waiting
    /// in the backlog raise no new readiness event.
    pub accept_retry_delay: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_output_bytes: 4 * 1024 * 1024,
            max_header_bytes: 8192,
            max_attachments: 16,
            max_rooms_per_socket: 1024,
            max_connections_per_core: 100_000,
            max_connections: 100_000,
            max_handshakes_per_ip_per_sec: 20,
            handshake_burst_per_ip: 0,
            handshake_rate_max_ips: 65_536,
            handshake_rate_exempt_loopback: true,
            header_read_timeout: Duration::from_secs(10),
            keep_alive_idle_timeout: Duration::from_secs(75),
            accept_retry_delay: Duration::from_millis(100),
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
    /// Proxies whose `X-Forwarded-For` entries are believed (`http::forwarded`); empty: the
    /// TCP peer is the client.
    pub trusted_proxies: Vec<crate::http::forwarded::IpNet>,
    /// TCP listen backlog (at least 1024).
    pub backlog: i32,
    /// After a shutdown starts, how long a core keeps delivering close packets (a polling
    /// session waits for its next poll) before it exits regardless.
    pub shutdown_timeout: Duration,
    /// Serve `GET /metrics` (Prometheus text format). Operators should keep it off the public
    /// network (deny it at the proxy).
    pub metrics: bool,
    /// Connection state recovery (socket.io's `connectionStateRecovery`); off by default.
    pub recovery: Recovery,
}

/// Connection state recovery: a socket that loses its transport for a recoverable reason is
/// kept as a "ghost" that still receives its rooms' broadcasts; a client that reconnects
/// within `window` with its private id (`pid`) and last offset gets back its id, its rooms and
/// the packets it missed.
///
/// Off by default: with it on, every broadcast (and every emit without ack) carries an offset
/// string as its last argument, which breaks handlers of fixed arity (python-socketio calls
/// `handler(*args)` and raises `TypeError`). The reference server is opt-in too.
#[derive(Debug, Clone)]
pub struct Recovery {
    pub enabled: bool,
    /// How long a disconnected socket can be recovered (reference default 2 minutes).
    pub window: Duration,
    /// Bytes of packets kept per socket: recently sent ones (to re-send what was in flight at
    /// the cut) and, once disconnected, the ones it missed. A disconnected socket that
    /// overflows it is dropped, and its client gets a fresh session.
    pub max_buffer_bytes: usize,
}

impl Default for Recovery {
    fn default() -> Self {
        Recovery { enabled: false, window: Duration::from_millis(120_000), max_buffer_bytes: 1024 * 1024 }
    }
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
            trusted_proxies: Vec::new(),
            backlog: 1024,
            shutdown_timeout: Duration::from_millis(3000),
            metrics: true,
            recovery: Recovery::default(),
        }
    }
}
