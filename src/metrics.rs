//! Server metrics in the Prometheus text format (version 0.0.4).
//!
//! Each core owns a [`CoreMetrics`]: plain atomic counters and gauges that only that core
//! writes (relaxed stores; no lock and no shared cache line between cores on the data path).
//! `GET /metrics` reads every core's values and renders them with [`Exposition`]; sums across
//! cores happen at read time.
//!
//! What it does not do: no IO, no registry of dynamic metrics, no summaries (histograms have
//! fixed buckets).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds (seconds) of the event-loop turn histogram.
pub const TURN_BUCKETS: [f64; 12] =
    [0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.1];

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
        (cum, self.count.load(Ordering::Relaxed), self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9)
    }
}

/// Why a session or socket ended, as a metric label (mirrors `DisconnectReason`).
pub const DISCONNECT_REASONS: [&str; 9] = [
    "transport close",
    "transport error",
    "ping timeout",
    "parse error",
    "forced close",
    "server shutting down",
    "client namespace disconnect",
    "server namespace disconnect",
    "slow consumer",
];

/// One core's metrics. Every field is written by its core only.
#[derive(Debug, Default)]
pub struct CoreMetrics {
    pub connections_open: AtomicU64,
    pub sessions_polling: AtomicU64,
    pub sessions_websocket: AtomicU64,
    pub sockets: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub packets_in: AtomicU64,
    pub packets_out: AtomicU64,
    pub broadcasts: AtomicU64,
    pub deliveries: AtomicU64,
    pub dropped: AtomicU64,
    pub disconnects: [AtomicU64; DISCONNECT_REASONS.len()],
    pub turns: Histogram<{ TURN_BUCKETS.len() }>,
}

impl CoreMetrics {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn set(gauge: &AtomicU64, v: u64) {
        gauge.store(v, Ordering::Relaxed);
    }

    /// Counts a disconnect by its reason's label; unknown labels are ignored.
    pub fn disconnect(&self, reason: &str) {
        if let Some(i) = DISCONNECT_REASONS.iter().position(|r| *r == reason) {
            self.disconnects[i].fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Reads one field of a core's metrics.
type Field = fn(&CoreMetrics) -> &AtomicU64;

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

    /// The server's families from every core's metrics.
    pub fn cores(&mut self, cores: &[std::sync::Arc<CoreMetrics>]) -> &mut Self {
        let load =
            |f: Field| -> f64 { cores.iter().map(|c| f(c).load(Ordering::Relaxed)).sum::<u64>() as f64 };
        self.family("sockeye_connections", "gauge", "Open TCP connections.");
        self.sample("sockeye_connections", &[], load(|c| &c.connections_open));
        self.family("sockeye_sessions", "gauge", "Engine.IO sessions by transport.");
        self.sample("sockeye_sessions", &[("transport", "polling")], load(|c| &c.sessions_polling));
        self.sample("sockeye_sessions", &[("transport", "websocket")], load(|c| &c.sessions_websocket));
        self.family("sockeye_sockets", "gauge", "Socket.IO sockets (all namespaces).");
        self.sample("sockeye_sockets", &[], load(|c| &c.sockets));
        let counters: [(&str, &str, Field); 7] = [
            ("sockeye_bytes_received_total", "Bytes read from clients.", |c| &c.bytes_in),
            ("sockeye_bytes_sent_total", "Bytes written to clients.", |c| &c.bytes_out),
            ("sockeye_packets_received_total", "Engine.IO packets received.", |c| &c.packets_in),
            ("sockeye_packets_sent_total", "Engine.IO packets queued for clients.", |c| &c.packets_out),
            ("sockeye_broadcasts_total", "Broadcasts planned on this node.", |c| &c.broadcasts),
            ("sockeye_deliveries_total", "Broadcast deliveries to sockets.", |c| &c.deliveries),
            ("sockeye_dropped_messages_total", "Messages dropped (slow consumer).", |c| &c.dropped),
        ];
        for (name, help, f) in counters.iter() {
            self.family(name, "counter", help);
            self.sample(name, &[], load(*f));
        }
        self.family("sockeye_disconnects_total", "counter", "Sessions and sockets closed, by reason.");
        for (i, reason) in DISCONNECT_REASONS.iter().enumerate() {
            let v = cores.iter().map(|c| c.disconnects[i].load(Ordering::Relaxed)).sum::<u64>();
            self.sample("sockeye_disconnects_total", &[("reason", reason)], v as f64);
        }
        self.family("sockeye_loop_turn_seconds", "histogram", "Event-loop turn duration, per core.");
        for (i, c) in cores.iter().enumerate() {
            let core = i.to_string();
            self.histogram("sockeye_loop_turn_seconds", &[("core", &core)], &TURN_BUCKETS, &c.turns);
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
    use std::sync::Arc;

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
    fn cores_are_summed_and_every_family_is_typed() {
        let a = Arc::new(CoreMetrics::default());
        let b = Arc::new(CoreMetrics::default());
        CoreMetrics::add(&a.deliveries, 5);
        CoreMetrics::add(&b.deliveries, 7);
        CoreMetrics::set(&b.sessions_websocket, 3);
        a.disconnect("ping timeout");
        b.disconnect("ping timeout");
        b.disconnect("no such reason");
        let mut e = Exposition::default();
        e.cores(&[a, b]);
        let text = e.finish();
        assert!(text.contains("sockeye_deliveries_total 12\n"), "{text}");
        assert!(text.contains("sockeye_sessions{transport=\"websocket\"} 3\n"), "{text}");
        assert!(text.contains("sockeye_disconnects_total{reason=\"ping timeout\"} 2\n"), "{text}");
        assert!(text.contains("sockeye_loop_turn_seconds_count{core=\"1\"} 0\n"), "{text}");
        // Every sample belongs to a family announced with # TYPE.
        let typed: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .map(|l| l.split(' ').next().unwrap())
            .collect();
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
