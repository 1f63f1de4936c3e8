//! Server metrics in the Prometheus text format (version 0.0.4).
//!
//! Each core owns a [`CoreMetrics`] (inside its [`CoreStats`](crate::stats::CoreStats)): atomic
//! counters and gauges that only that core writes. The data path does not touch them: the shard
//! counts into a plain [`ShardTally`] and the event loop into its own plain fields, and once per
//! loop turn the core publishes those totals with relaxed stores (single writer, so a store of
//! the running total needs no read-modify-write). A broadcast to N sockets is one addition of N
//! to a plain integer. `GET /metrics` reads every core's values and renders them with
//! [`Exposition`]; sums across cores happen at read time.
//!
//! What it does not do: no IO, no registry of dynamic metrics, no summaries (histograms have
//! fixed buckets). Values are at most one loop turn old (the core that answers the scrape
//! publishes its own first).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::api::DisconnectReason;
use crate::engineio::session::CloseReason;
use crate::stats::NodeStats;

/// Upper bounds (seconds) of the event-loop turn histogram.
pub const TURN_BUCKETS: [f64; 12] =
    [0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.1];

/// Upper bounds (seconds) of the store's commit latency histogram.
pub const COMMIT_BUCKETS: [f64; 12] =
    [0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0];

/// A histogram with fixed buckets, written by one thread.
#[derive(Debug)]
pub struct Histogram<const N: usize> {
    buckets: [AtomicU64; N],
    count: AtomicU64,
    /// Sum in nanoseconds.
    sum_ns: AtomicU64,
}

impl<const N: usize> Default for Histogram<N> {
    fn default() -> Self {
        Histogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            count: AtomicU64::new(0),
            sum_ns: AtomicU64::new(0),
        }
    }
}

impl<const N: usize> Histogram<N> {
    /// Records one observation of `ns` nanoseconds against bucket bounds `bounds` (seconds).
    pub fn observe_ns(&self, bounds: &[f64; N], ns: u64) {
        let secs = ns as f64 / 1e9;
        if let Some(i) = bounds.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// Cumulative bucket counts, total count and sum in seconds.
    pub fn snapshot(&self) -> ([u64; N], u64, f64) {
        let mut cum = [0u64; N];
        let mut acc = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            acc += b.load(Ordering::Relaxed);
            cum[i] = acc;
        }
        // Read after the buckets, so `+Inf` (the count) is never below the last bucket.
        let count = self.count.load(Ordering::Relaxed).max(acc);
        (cum, count, self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9)
    }
}

/// Why an Engine.IO session closed, as a metric label, indexed by [`close_index`].
pub const CLOSE_REASONS: [&str; 7] = [
    "transport close",
    "transport error",
    "ping timeout",
    "parse error",
    "forced close",
    "server shutting down",
    "slow consumer",
];

/// The index of `r` in [`CLOSE_REASONS`].
pub fn close_index(r: CloseReason) -> usize {
    match r {
        CloseReason::TransportClose => 0,
        CloseReason::TransportError => 1,
        CloseReason::PingTimeout => 2,
        CloseReason::ParseError => 3,
        CloseReason::ForcedClose => 4,
        CloseReason::ServerShutdown => 5,
        CloseReason::SlowConsumer => 6,
    }
}

/// Why a Socket.IO socket left its namespace, as a metric label, indexed by
/// [`disconnect_index`].
pub const DISCONNECT_REASONS: [&str; 9] = [
    "transport close",
    "transport error",
    "ping timeout",
    "parse error",
    "forced close",
    "server shutting down",
    "slow consumer",
    "client namespace disconnect",
    "server namespace disconnect",
];

/// The index of `r` in [`DISCONNECT_REASONS`].
pub fn disconnect_index(r: DisconnectReason) -> usize {
    match r {
        DisconnectReason::TransportClose => 0,
        DisconnectReason::TransportError => 1,
        DisconnectReason::PingTimeout => 2,
        DisconnectReason::ParseError => 3,
        DisconnectReason::ForcedClose => 4,
        DisconnectReason::ServerShuttingDown => 5,
        DisconnectReason::SlowConsumer => 6,
        DisconnectReason::ClientNamespaceDisconnect => 7,
        DisconnectReason::ServerNamespaceDisconnect => 8,
    }
}

/// The shard's running totals: plain integers, touched on the data path, published once per
/// loop turn ([`CoreMetrics::publish_shard`]).
#[derive(Debug, Default, Clone)]
pub struct ShardTally {
    /// Open sessions by transport: `[polling, websocket]` (a gauge).
    pub sessions: [u64; 2],
    pub eio_packets_in: u64,
    pub eio_packets_out: u64,
    pub sio_packets_in: u64,
    pub sio_packets_out: u64,
    pub broadcasts: u64,
    pub deliveries: u64,
    /// Packets discarded unsent: queued for a session that closed, or sent to a closed one.
    pub dropped_packets: u64,
    pub session_closes: [u64; CLOSE_REASONS.len()],
    pub socket_disconnects: [u64; DISCONNECT_REASONS.len()],
}

/// The event loop's running totals, plain, published once per turn.
#[derive(Debug, Default, Clone)]
pub struct LoopTally {
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Output bytes discarded with a connection closed before they were written.
    pub dropped_bytes: u64,
}

/// One core's published metrics. Every field is written by its core only, with relaxed stores.
#[derive(Debug, Default)]
pub struct CoreMetrics {
    pub sessions_polling: AtomicU64,
    pub sessions_websocket: AtomicU64,
    /// Connected sockets per namespace, in the server's namespace order.
    pub sockets: Box<[AtomicU64]>,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub eio_packets_in: AtomicU64,
    pub eio_packets_out: AtomicU64,
    pub sio_packets_in: AtomicU64,
    pub sio_packets_out: AtomicU64,
    pub broadcasts: AtomicU64,
    pub deliveries: AtomicU64,
    pub dropped_packets: AtomicU64,
    pub dropped_bytes: AtomicU64,
    pub session_closes: [AtomicU64; CLOSE_REASONS.len()],
    pub socket_disconnects: [AtomicU64; DISCONNECT_REASONS.len()],
    pub turns: Histogram<{ TURN_BUCKETS.len() }>,
}

fn put(a: &AtomicU64, v: u64) {
    a.store(v, Ordering::Relaxed);
}

impl CoreMetrics {
    /// Metrics for a server with `namespaces` namespaces.
    pub fn new(namespaces: usize) -> CoreMetrics {
        CoreMetrics { sockets: (0..namespaces).map(|_| AtomicU64::new(0)).collect(), ..Default::default() }
    }

    /// Publish the shard's totals, and its sockets per namespace (the owning core only).
    pub fn publish_shard(&self, t: &ShardTally, sockets: impl Iterator<Item = usize>) {
        put(&self.sessions_polling, t.sessions[0]);
        put(&self.sessions_websocket, t.sessions[1]);
        put(&self.eio_packets_in, t.eio_packets_in);
        put(&self.eio_packets_out, t.eio_packets_out);
        put(&self.sio_packets_in, t.sio_packets_in);
        put(&self.sio_packets_out, t.sio_packets_out);
        put(&self.broadcasts, t.broadcasts);
        put(&self.deliveries, t.deliveries);
        put(&self.dropped_packets, t.dropped_packets);
        for (a, v) in self.session_closes.iter().zip(t.session_closes) {
            put(a, v);
        }
        for (a, v) in self.socket_disconnects.iter().zip(t.socket_disconnects) {
            put(a, v);
        }
        for (a, n) in self.sockets.iter().zip(sockets) {
            put(a, n as u64);
        }
    }

    /// Publish the event loop's totals (the owning core only).
    pub fn publish_loop(&self, t: &LoopTally) {
        put(&self.bytes_in, t.bytes_in);
        put(&self.bytes_out, t.bytes_out);
        put(&self.dropped_bytes, t.dropped_bytes);
    }
}

/// Builds a Prometheus text exposition.
#[derive(Default)]
pub struct Exposition {
    out: String,
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

impl Exposition {
    /// Starts a metric family.
    pub fn family(&mut self, name: &str, kind: &str, help: &str) -> &mut Self {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
        self
    }

    /// One sample; `labels` are (name, value) pairs.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) -> &mut Self {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape_label(v));
            }
            self.out.push('}');
        }
        if value.fract() == 0.0 && value.abs() < 1e15 {
            let _ = writeln!(self.out, " {}", value as i64);
        } else {
            let _ = writeln!(self.out, " {value}");
        }
        self
    }

    /// A family with one unlabelled sample.
    pub fn single(&mut self, name: &str, kind: &str, help: &str, value: f64) -> &mut Self {
        self.family(name, kind, help);
        self.sample(name, &[], value)
    }

    /// A histogram family's samples (`_bucket`, `_sum`, `_count`).
    pub fn histogram<const N: usize>(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        bounds: &[f64; N],
        h: &Histogram<N>,
    ) -> &mut Self {
        let (cum, count, sum) = h.snapshot();
        for (b, c) in bounds.iter().zip(cum) {
            let le = b.to_string();
            let mut l = labels.to_vec();
            l.push(("le", &le));
            self.sample(&format!("{name}_bucket"), &l, c as f64);
        }
        let mut l = labels.to_vec();
        l.push(("le", "+Inf"));
        self.sample(&format!("{name}_bucket"), &l, count as f64);
        self.sample(&format!("{name}_sum"), labels, sum);
        self.sample(&format!("{name}_count"), labels, count as f64)
    }

    /// The server's families from every core's counters and metrics; `namespaces` names the
    /// server's namespaces in order (the labels of `sockeye_sockets`).
    pub fn node(&mut self, node: &NodeStats, namespaces: &[&str]) -> &mut Self {
        type Field = fn(&crate::stats::CoreStats) -> &AtomicU64;
        let sum =
            |f: Field| -> f64 { node.cores.iter().map(|c| f(c).load(Ordering::Relaxed)).sum::<u64>() as f64 };
        self.single(
            "sockeye_connections",
            "gauge",
            "Open TCP connections on this node (checked against max_connections).",
            node.open_connections.load(Ordering::Relaxed) as f64,
        );
        self.family("sockeye_sessions", "gauge", "Open Engine.IO sessions by transport (moved on upgrade).");
        self.sample("sockeye_sessions", &[("transport", "polling")], sum(|c| &c.metrics.sessions_polling));
        self.sample(
            "sockeye_sessions",
            &[("transport", "websocket")],
            sum(|c| &c.metrics.sessions_websocket),
        );
        self.family("sockeye_sockets", "gauge", "Connected Socket.IO sockets by namespace.");
        for (i, ns) in namespaces.iter().enumerate() {
            let v: u64 = node
                .cores
                .iter()
                .map(|c| c.metrics.sockets.get(i).map_or(0, |a| a.load(Ordering::Relaxed)))
                .sum();
            self.sample("sockeye_sockets", &[("namespace", ns)], v as f64);
        }
        let counters: [(&str, &str, Field); 21] = [
            ("sockeye_connections_accepted_total", "TCP connections accepted and kept.", |c| {
                &c.connections_accepted
            }),
            ("sockeye_bytes_received_total", "Bytes read from clients.", |c| &c.metrics.bytes_in),
            ("sockeye_bytes_sent_total", "Bytes written to clients.", |c| &c.metrics.bytes_out),
            ("sockeye_eio_packets_received_total", "Engine.IO packets received.", |c| {
                &c.metrics.eio_packets_in
            }),
            ("sockeye_eio_packets_sent_total", "Engine.IO packets queued for clients.", |c| {
                &c.metrics.eio_packets_out
            }),
            (
                "sockeye_sio_packets_received_total",
                "Socket.IO packets received (one per packet, its binary attachments included).",
                |c| &c.metrics.sio_packets_in,
            ),
            ("sockeye_sio_packets_sent_total", "Socket.IO packets sent to sockets.", |c| {
                &c.metrics.sio_packets_out
            }),
            ("sockeye_broadcasts_total", "Broadcasts started on this node.", |c| &c.metrics.broadcasts),
            ("sockeye_broadcast_deliveries_total", "Sockets a broadcast was delivered to.", |c| {
                &c.metrics.deliveries
            }),
            (
                "sockeye_dropped_packets_total",
                "Engine.IO packets discarded unsent (their session closed).",
                |c| &c.metrics.dropped_packets,
            ),
            (
                "sockeye_dropped_bytes_total",
                "Output bytes discarded with a connection closed before writing them.",
                |c| &c.metrics.dropped_bytes,
            ),
            (
                "sockeye_connections_refused_total",
                "Connections answered 503: max_connections(_per_core) reached.",
                |c| &c.connections_refused_limit,
            ),
            (
                "sockeye_handshakes_refused_total",
                "Handshakes answered 429: max_handshakes_per_ip reached.",
                |c| &c.handshakes_refused_rate,
            ),
            (
                "sockeye_header_timeouts_total",
                "Connections closed by header_timeout (slow request head or body).",
                |c| &c.header_timeouts,
            ),
            ("sockeye_idle_timeouts_total", "Kept-alive connections closed by keep_alive_timeout.", |c| {
                &c.idle_timeouts
            }),
            (
                "sockeye_accept_errors_total",
                "accept() failures (out of descriptors or memory, aborted).",
                |c| &c.accept_errors,
            ),
            ("sockeye_slow_consumers_total", "Sessions or connections closed over max_output_bytes.", |c| {
                &c.slow_consumers
            }),
            (
                "sockeye_payload_too_large_total",
                "Bodies or WebSocket messages over max_payload (413 / close 1009).",
                |c| &c.payload_too_large,
            ),
            (
                "sockeye_http_requests_refused_total",
                "Malformed or oversized request heads (400, 431, 501).",
                |c| &c.http_requests_refused,
            ),
            (
                "sockeye_room_joins_refused_total",
                "Joins refused: the socket was in max_rooms_per_socket rooms.",
                |c| &c.room_joins_refused,
            ),
            (
                "sockeye_malformed_packets_total",
                "Sessions closed for a malformed Socket.IO packet (attachment or size limits included).",
                |c| &c.malformed_packets,
            ),
        ];
        for (name, help, f) in counters.iter() {
            self.single(name, "counter", help, sum(*f));
        }
        self.family("sockeye_session_closes_total", "counter", "Engine.IO sessions closed, by reason.");
        for (i, reason) in CLOSE_REASONS.iter().enumerate() {
            let v =
                node.cores.iter().map(|c| c.metrics.session_closes[i].load(Ordering::Relaxed)).sum::<u64>();
            self.sample("sockeye_session_closes_total", &[("reason", reason)], v as f64);
        }
        self.family(
            "sockeye_socket_disconnects_total",
            "counter",
            "Socket.IO sockets disconnected, by reason.",
        );
        for (i, reason) in DISCONNECT_REASONS.iter().enumerate() {
            let v = node
                .cores
                .iter()
                .map(|c| c.metrics.socket_disconnects[i].load(Ordering::Relaxed))
                .sum::<u64>();
            self.sample("sockeye_socket_disconnects_total", &[("reason", reason)], v as f64);
        }
        self.family(
            "sockeye_loop_turn_seconds",
            "histogram",
            "Event-loop turn duration (poll return to end of processing), per core.",
        );
        for (i, c) in node.cores.iter().enumerate() {
            let core = i.to_string();
            self.histogram("sockeye_loop_turn_seconds", &[("core", &core)], &TURN_BUCKETS, &c.metrics.turns);
        }
        self
    }

    pub fn finish(self) -> String {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::CoreStats;

    #[test]
    fn histogram_is_cumulative_with_inf_and_sum() {
        let h: Histogram<3> = Histogram::default();
        let bounds = [0.001, 0.01, 0.1];
        for ns in [500_000, 2_000_000, 2_000_000, 500_000_000] {
            h.observe_ns(&bounds, ns);
        }
        let mut e = Exposition::default();
        e.histogram("t", &[("core", "0")], &bounds, &h);
        let text = e.finish();
        assert!(text.contains("t_bucket{core=\"0\",le=\"0.001\"} 1\n"), "{text}");
        assert!(text.contains("t_bucket{core=\"0\",le=\"0.01\"} 3\n"), "{text}");
        assert!(text.contains("t_bucket{core=\"0\",le=\"0.1\"} 3\n"), "{text}");
        assert!(text.contains("t_bucket{core=\"0\",le=\"+Inf\"} 4\n"), "{text}");
        assert!(text.contains("t_count{core=\"0\"} 4\n"), "{text}");
        assert!(text.contains("t_sum{core=\"0\"} 0.5045\n"), "{text}");
    }

    #[test]
    fn reason_indexes_match_their_labels() {
        use CloseReason as C;
        for r in [
            C::TransportClose,
            C::TransportError,
            C::PingTimeout,
            C::ParseError,
            C::ForcedClose,
            C::ServerShutdown,
            C::SlowConsumer,
        ] {
            assert_eq!(CLOSE_REASONS[close_index(r)], r.as_str());
            let d = DisconnectReason::from(r);
            assert_eq!(DISCONNECT_REASONS[disconnect_index(d)], d.as_str());
        }
        for d in [DisconnectReason::ClientNamespaceDisconnect, DisconnectReason::ServerNamespaceDisconnect] {
            assert_eq!(DISCONNECT_REASONS[disconnect_index(d)], d.as_str());
        }
    }

    /// Two cores with a tally each, published and rendered: sums, labels, per-core histograms.
    #[test]
    fn node_sums_cores_and_every_family_is_typed() {
        let node = NodeStats::new(2, 2);
        let mut a = ShardTally { deliveries: 5, sessions: [1, 2], ..ShardTally::default() };
        a.session_closes[close_index(CloseReason::PingTimeout)] = 1;
        let mut b = ShardTally { deliveries: 7, sessions: [0, 3], ..ShardTally::default() };
        b.session_closes[close_index(CloseReason::PingTimeout)] = 1;
        b.socket_disconnects[disconnect_index(DisconnectReason::ClientNamespaceDisconnect)] = 4;
        node.cores[0].metrics.publish_shard(&a, [2usize, 1].into_iter());
        node.cores[1].metrics.publish_shard(&b, [3usize, 0].into_iter());
        node.cores[1].metrics.publish_loop(&LoopTally { bytes_in: 10, bytes_out: 20, dropped_bytes: 0 });
        node.cores[0].metrics.turns.observe_ns(&TURN_BUCKETS, 30_000);
        CoreStats::bump(&node.cores[1].header_timeouts);
        node.open_connections.store(6, Ordering::Relaxed);
        let mut e = Exposition::default();
        e.node(&node, &["/", "/a\"b"]);
        let text = e.finish();
        for want in [
            "sockeye_connections 6\n",
            "sockeye_broadcast_deliveries_total 12\n",
            "sockeye_sessions{transport=\"polling\"} 1\n",
            "sockeye_sessions{transport=\"websocket\"} 5\n",
            "sockeye_sockets{namespace=\"/\"} 5\n",
            "sockeye_sockets{namespace=\"/a\\\"b\"} 1\n",
            "sockeye_session_closes_total{reason=\"ping timeout\"} 2\n",
            "sockeye_socket_disconnects_total{reason=\"client namespace disconnect\"} 4\n",
            "sockeye_bytes_sent_total 20\n",
            "sockeye_header_timeouts_total 1\n",
            "sockeye_loop_turn_seconds_bucket{core=\"0\",le=\"0.000025\"} 0\n",
            "sockeye_loop_turn_seconds_bucket{core=\"0\",le=\"0.00005\"} 1\n",
            "sockeye_loop_turn_seconds_count{core=\"0\"} 1\n",
            "sockeye_loop_turn_seconds_count{core=\"1\"} 0\n",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
        // Every sample belongs to a family announced with # TYPE, and each family once.
        let typed: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .map(|l| l.split(' ').next().unwrap())
            .collect();
        let mut unique = typed.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), typed.len(), "a family is announced twice");
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap();
            let base = name.trim_end_matches("_bucket").trim_end_matches("_sum").trim_end_matches("_count");
            assert!(typed.contains(&name) || typed.contains(&base), "untyped sample {line}");
        }
    }

    #[test]
    fn label_values_are_escaped() {
        let mut e = Exposition::default();
        e.sample("m", &[("k", "a\"b\\c\nd")], 1.0);
        assert_eq!(e.finish(), "m{k=\"a\\\"b\\\\c\\nd\"} 1\n");
    }
}
