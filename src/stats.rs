//! Counters of what the limits did, and each core's [`CoreMetrics`], for `GET /metrics`
//! ([`crate::metrics::Exposition::node`]).
//!
//! Each core owns one [`CoreStats`] and is the only writer of it (relaxed atomics: a counter
//! needs no ordering with anything else). Any thread may read them, through
//! [`ServerHandle::stats`](crate::api::ServerHandle::stats) (summed) or
//! [`ServerHandle::core_stats`](crate::api::ServerHandle::core_stats) (per core). The one value
//! shared by every core is the open connection count, [`NodeStats::open_connections`], which
//! cores change on accept and close only, never per message.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::metrics::CoreMetrics;

/// One core's counters, monotonic since start. Aligned to its own cache lines so the cores'
/// writes do not contend.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct CoreStats {
    /// Connections accepted and kept.
    pub connections_accepted: AtomicU64,
    /// Connections answered `503` and closed because the node or the core was at its
    /// connection limit (`max_connections`, `max_connections_per_core`).
    pub connections_refused_limit: AtomicU64,
    /// Handshakes answered `429` (`max_handshakes_per_ip_per_sec`).
    pub handshakes_refused_rate: AtomicU64,
    /// Connections closed because a request head (or body) did not arrive in time
    /// (`header_read_timeout`).
    pub header_timeouts: AtomicU64,
    /// Kept-alive connections closed after `keep_alive_idle_timeout` without a request.
    pub idle_timeouts: AtomicU64,
    /// `accept` failures other than `WouldBlock` (out of descriptors or memory, or a
    /// connection aborted before it was accepted).
    pub accept_errors: AtomicU64,
    /// Sessions closed as slow consumers (output or polling queue over `max_output_bytes`),
    /// plus plain HTTP connections dropped for the same reason.
    pub slow_consumers: AtomicU64,
    /// POST bodies answered 413 and WebSocket messages closed with 1009 (`maxPayload`).
    pub payload_too_large: AtomicU64,
    /// Requests answered with an HTTP error and closed before routing: a malformed head, one
    /// over `max_header_bytes` or 64 headers (431), `Transfer-Encoding` (501).
    pub http_requests_refused: AtomicU64,
    /// `Socket::join` refused at `max_rooms_per_socket`.
    pub room_joins_refused: AtomicU64,
    /// Sessions closed for a Socket.IO packet that does not decode, including one over the
    /// attachment limits or the namespace name length.
    pub malformed_packets: AtomicU64,
    /// The rest of the core's metrics (published once per loop turn).
    pub metrics: CoreMetrics,
}

impl CoreStats {
    /// Add one (the owning core only).
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters now.
    pub fn snapshot(&self) -> StatsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            open_connections: 0,
            connections_accepted: get(&self.connections_accepted),
            connections_refused_limit: get(&self.connections_refused_limit),
            handshakes_refused_rate: get(&self.handshakes_refused_rate),
            header_timeouts: get(&self.header_timeouts),
            idle_timeouts: get(&self.idle_timeouts),
            accept_errors: get(&self.accept_errors),
            slow_consumers: get(&self.slow_consumers),
            payload_too_large: get(&self.payload_too_large),
            http_requests_refused: get(&self.http_requests_refused),
            room_joins_refused: get(&self.room_joins_refused),
            malformed_packets: get(&self.malformed_packets),
        }
    }

    /// Counters for a server with `namespaces` namespaces.
    pub fn new(namespaces: usize) -> CoreStats {
        CoreStats { metrics: CoreMetrics::new(namespaces), ..CoreStats::default() }
    }
}

/// The counters of one node: one [`CoreStats`] per core and the open connection count.
#[derive(Debug)]
pub struct NodeStats {
    /// Connections open on the node now (all cores); the gauge `max_connections` is checked
    /// against.
    pub open_connections: AtomicUsize,
    pub cores: Vec<Arc<CoreStats>>,
}

impl NodeStats {
    /// Counters for `n_cores` cores of a server with `namespaces` namespaces.
    pub fn new(n_cores: usize, namespaces: usize) -> NodeStats {
        NodeStats {
            open_connections: AtomicUsize::new(0),
            cores: (0..n_cores).map(|_| Arc::new(CoreStats::new(namespaces))).collect(),
        }
    }

    /// Every core's counters summed, with the open connection count.
    pub fn snapshot(&self) -> StatsSnapshot {
        let mut sum = self.cores.iter().fold(StatsSnapshot::default(), |acc, c| acc + c.snapshot());
        sum.open_connections = self.open_connections.load(Ordering::Relaxed) as u64;
        sum
    }
}

/// Plain values of the counters at one moment (see [`CoreStats`] for each one's meaning).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// A gauge (node-wide); the rest are counters since start.
    pub open_connections: u64,
    pub connections_accepted: u64,
    pub connections_refused_limit: u64,
    pub handshakes_refused_rate: u64,
    pub header_timeouts: u64,
    pub idle_timeouts: u64,
    pub accept_errors: u64,
    pub slow_consumers: u64,
    pub payload_too_large: u64,
    pub http_requests_refused: u64,
    pub room_joins_refused: u64,
    pub malformed_packets: u64,
}

impl std::ops::Add for StatsSnapshot {
    type Output = StatsSnapshot;

    fn add(self, o: StatsSnapshot) -> StatsSnapshot {
        StatsSnapshot {
            open_connections: self.open_connections + o.open_connections,
            connections_accepted: self.connections_accepted + o.connections_accepted,
            connections_refused_limit: self.connections_refused_limit + o.connections_refused_limit,
            handshakes_refused_rate: self.handshakes_refused_rate + o.handshakes_refused_rate,
            header_timeouts: self.header_timeouts + o.header_timeouts,
            idle_timeouts: self.idle_timeouts + o.idle_timeouts,
            accept_errors: self.accept_errors + o.accept_errors,
            slow_consumers: self.slow_consumers + o.slow_consumers,
            payload_too_large: self.payload_too_large + o.payload_too_large,
            http_requests_refused: self.http_requests_refused + o.http_requests_refused,
            room_joins_refused: self.room_joins_refused + o.room_joins_refused,
            malformed_packets: self.malformed_packets + o.malformed_packets,
        }
    }
}
