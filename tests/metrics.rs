//! `GET /metrics` end to end: the `sockeye` binary cargo just built, real `socket.io-client`
//! connections (polling, WebSocket, polling upgraded to WebSocket, a second namespace) driven by
//! `tests/interop/metrics/scenario.js`, which scrapes the endpoint between its steps. Every
//! scrape is parsed by `prometheus_client`'s own parser (`tests/interop/metrics/parse.py` in
//! `tests/interop/.venv`), and the numbers are checked here.
//!
//! Needs what the interop suites need (`npm ci` and the venv with `requirements.txt`, which
//! `tools/test-all.sh` prepares); `SOCKEYE_SKIP_INTEROP=1` skips the client tests loudly. Each
//! test starts its own server on a free port and kills it when done, even when it fails.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("interop")
}

fn skipped() -> bool {
    if std::env::var("SOCKEYE_SKIP_INTEROP").as_deref() == Ok("1") {
        let banner = "!".repeat(80);
        let _ = writeln!(
            std::io::stderr(),
            "\n{banner}\n!!! SOCKEYE_SKIP_INTEROP=1: metrics client tests SKIPPED, nothing was checked\n{banner}\n"
        );
        return true;
    }
    false
}

/// A running `sockeye`; killed (and its data directory removed) when dropped.
struct Server {
    child: Child,
    url: String,
    _stdout: BufReader<ChildStdout>,
    data_dir: Option<PathBuf>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(d) = &self.data_dir {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

impl Server {
    fn start(args: &[&str], data_dir: Option<PathBuf>) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sockeye"));
        cmd.args(["--host", "127.0.0.1", "--port", "0", "--cores", "2"]).args(args);
        if let Some(d) = &data_dir {
            cmd.arg("--data-dir").arg(d);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .env_remove("JWT_SECRET")
            .spawn()
            .expect("start sockeye");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut line = String::new();
        let mut server = None;
        while stdout.read_line(&mut line).unwrap_or(0) > 0 {
            if let Some(url) = line.trim().strip_prefix("sockeye listening on ") {
                server = Some(url.to_owned());
                break;
            }
            line.clear();
        }
        let Some(url) = server else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("sockeye {args:?} did not say where it listens");
        };
        Server { child, url, _stdout: stdout, data_dir }
    }

    fn port(&self) -> u16 {
        self.url.rsplit(':').next().and_then(|p| p.parse().ok()).expect("port in the url")
    }
}

/// One parsed exposition: the family types and every sample, keyed `name{k="v",...}` with the
/// labels in name order.
struct Scrape {
    families: BTreeMap<String, String>,
    samples: BTreeMap<String, f64>,
}

impl Scrape {
    /// Parse `text` with prometheus_client (a parse error fails the test).
    fn parse(text: &str) -> Scrape {
        let python = interop_dir().join(".venv").join("bin").join("python");
        assert!(
            python.is_file(),
            "tests/interop/.venv is missing: create it and `pip install -r requirements.txt` \
             (tools/test-all.sh does)"
        );
        let mut child = Command::new(python)
            .arg(interop_dir().join("metrics").join("parse.py"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the parser");
        child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "prometheus_client refused the exposition: {}\n{text}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("parser output is JSON");
        let families = v["families"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, t)| (k.clone(), t.as_str().unwrap().to_owned()))
            .collect();
        let mut samples = BTreeMap::new();
        for s in v["samples"].as_array().unwrap() {
            let labels: BTreeMap<&str, &str> =
                s[1].as_object().unwrap().iter().map(|(k, v)| (k.as_str(), v.as_str().unwrap())).collect();
            let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
            let key = if labels.is_empty() {
                s[0].as_str().unwrap().to_owned()
            } else {
                format!("{}{{{}}}", s[0].as_str().unwrap(), labels.join(","))
            };
            assert!(samples.insert(key.clone(), s[2].as_f64().unwrap()).is_none(), "duplicate sample {key}");
        }
        Scrape { families, samples }
    }

    /// The value of one sample, which must exist.
    fn get(&self, key: &str) -> f64 {
        match self.samples.get(key) {
            Some(v) => *v,
            None => panic!("no sample {key}; have {:#?}", self.samples.keys().collect::<Vec<_>>()),
        }
    }

    /// The sum of every sample of `name` (all labels).
    fn sum(&self, name: &str) -> f64 {
        self.samples.iter().filter(|(k, _)| k.split('{').next() == Some(name)).map(|(_, v)| v).sum()
    }
}

/// Run the scenario script; returns each step's exposition text.
fn scenario(mode: &str, server: &Server) -> BTreeMap<String, String> {
    let dir = interop_dir();
    assert!(
        dir.join("node_modules").join("socket.io-client").is_dir(),
        "tests/interop/node_modules is missing: run `npm ci` in tests/interop (tools/test-all.sh does)"
    );
    let out = Command::new("node")
        .args(["metrics/scenario.js", mode, &server.url])
        .current_dir(&dir)
        .output()
        .expect("start node");
    assert!(
        out.status.success(),
        "scenario {mode} failed ({})\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the scenario prints a JSON object of texts")
}

/// A plain `GET` on a fresh connection; the whole answer.
fn http_get(port: u16, path: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn echo_clients_move_connection_socket_broadcast_and_disconnect_metrics() {
    if skipped() {
        return;
    }
    let server = Server::start(&["--app", "echo"], None);
    let steps = scenario("echo", &server);

    // Four clients connected: websocket only, polling only, polling upgraded, and /custom over
    // websocket; two of them in room r, which got one broadcast.
    let s = Scrape::parse(&steps["connected"]);
    assert_eq!(s.families["sockeye_sessions"], "gauge");
    assert_eq!(s.families["sockeye_broadcast_deliveries"], "counter");
    assert_eq!(s.families["sockeye_loop_turn_seconds"], "histogram");
    assert_eq!(s.get(r#"sockeye_sessions{transport="polling"}"#), 1.0);
    assert_eq!(s.get(r#"sockeye_sessions{transport="websocket"}"#), 3.0, "the upgrade moved one");
    assert_eq!(s.get(r#"sockeye_sockets{namespace="/"}"#), 3.0);
    assert_eq!(s.get(r#"sockeye_sockets{namespace="/custom"}"#), 1.0);
    assert_eq!(s.get("sockeye_broadcasts_total"), 1.0);
    assert_eq!(s.get("sockeye_broadcast_deliveries_total"), 2.0);
    // Four CONNECTs, two joins, one to-room at least (pongs are Engine.IO only).
    assert!(s.get("sockeye_sio_packets_received_total") >= 7.0);
    assert!(s.get("sockeye_eio_packets_received_total") >= 7.0);
    // Four CONNECT answers, four `auth` emits, two join acks, two deliveries.
    assert!(s.get("sockeye_sio_packets_sent_total") >= 12.0);
    assert!(s.get("sockeye_connections") >= 4.0, "four clients, the scrape's own connection");
    assert!(s.get("sockeye_bytes_received_total") > 0.0 && s.get("sockeye_bytes_sent_total") > 0.0);
    assert_eq!(s.sum("sockeye_socket_disconnects_total"), 0.0);
    for core in ["0", "1"] {
        let count = s.get(&format!(r#"sockeye_loop_turn_seconds_count{{core="{core}"}}"#));
        assert!(count > 0.0, "core {core} counted no turn");
        assert_eq!(s.get(&format!(r#"sockeye_loop_turn_seconds_bucket{{core="{core}",le="+Inf"}}"#)), count);
        assert!(s.get(&format!(r#"sockeye_loop_turn_seconds_sum{{core="{core}"}}"#)) > 0.0);
    }

    // The server disconnected one socket; the clients closed the rest.
    let c = Scrape::parse(&steps["closed"]);
    assert_eq!(c.sum("sockeye_sessions"), 0.0);
    assert_eq!(c.sum("sockeye_sockets"), 0.0);
    assert_eq!(c.get(r#"sockeye_socket_disconnects_total{reason="server namespace disconnect"}"#), 1.0);
    assert_eq!(c.get(r#"sockeye_socket_disconnects_total{reason="client namespace disconnect"}"#), 3.0);
    assert_eq!(c.sum("sockeye_socket_disconnects_total"), 4.0);
    assert_eq!(c.get(r#"sockeye_session_closes_total{reason="transport close"}"#), 4.0);
    assert_eq!(c.sum("sockeye_session_closes_total"), 4.0);
    assert_eq!(c.get("sockeye_broadcast_deliveries_total"), 2.0);
    // Counters never go back.
    for name in [
        "sockeye_bytes_sent_total",
        "sockeye_eio_packets_received_total",
        "sockeye_connections_accepted_total",
    ] {
        assert!(c.get(name) >= s.get(name), "{name} went back");
    }
    // No limit was hit.
    for name in [
        "sockeye_connections_refused_total",
        "sockeye_handshakes_refused_total",
        "sockeye_slow_consumers_total",
        "sockeye_payload_too_large_total",
        "sockeye_http_requests_refused_total",
        "sockeye_dropped_packets_total",
    ] {
        assert_eq!(c.get(name), 0.0, "{name}");
    }
    // The echo app adds no store families.
    assert!(!c.families.contains_key("sockeye_store_commits"));
}

#[test]
fn chat_store_metrics_count_a_stored_message() {
    if skipped() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("sockeye-metrics-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let server = Server::start(&["--app", "chat"], Some(dir));
    let steps = scenario("chat", &server);
    let s = Scrape::parse(&steps["stored"]);
    assert_eq!(s.families["sockeye_store_commit_seconds"], "histogram");
    assert_eq!(s.families["sockeye_store_queue_depth"], "gauge");
    assert_eq!(s.get(r#"sockeye_sockets{namespace="/"}"#), 2.0);
    // The message was acknowledged, so its transaction committed and was timed.
    let commits = s.get("sockeye_store_commits_total");
    assert!(commits >= 1.0);
    assert!(s.get("sockeye_store_writes_total") >= 1.0);
    assert_eq!(s.get("sockeye_store_failed_writes_total"), 0.0);
    assert_eq!(s.get("sockeye_store_rejected_total"), 0.0);
    assert_eq!(s.get("sockeye_store_commit_seconds_count"), commits, "one observation per commit");
    assert_eq!(s.get(r#"sockeye_store_commit_seconds_bucket{le="+Inf"}"#), commits);
    assert!(s.get("sockeye_store_commit_seconds_sum") > 0.0);
    assert_eq!(s.get("sockeye_store_queue_depth"), 0.0, "the acknowledged write left the queue");
}

#[test]
fn metrics_answer_with_the_prometheus_content_type_and_can_be_switched_off() {
    let on = Server::start(&["--app", "echo"], None);
    let answer = http_get(on.port(), "/metrics");
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.contains("\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"), "{answer}");
    assert!(answer.contains("\n# TYPE sockeye_loop_turn_seconds histogram\n"), "{answer}");

    let off = Server::start(&["--app", "echo", "--metrics", "off"], None);
    let answer = http_get(off.port(), "/metrics");
    assert!(answer.starts_with("HTTP/1.1 404 "), "{answer}");
    assert!(http_get(off.port(), "/healthz").starts_with("HTTP/1.1 200 OK\r\n"));
}
