//! Fault tests: the release `sockeye` binary, started on a free port, faces clients that vanish
//! mid-write, half-open TCP connections, a client that never reads, garbage after a valid
//! handshake, 10 000 connections closing at once, and a storage that cannot grow (a file size
//! limit, like a full disk). For each fault the test checks that the server closes the right
//! connection, gives its descriptor back (`/proc/PID/fd` returns to the baseline), stays up, and
//! that a healthy client keeps getting its messages, in order and with bounded latency.
//!
//! Clients are raw sockets with a small hand-written WebSocket client, so every byte (a masked
//! garbage frame, an RST) is under the test's control. A relay thread makes half-open
//! connections: it forwards until told to blackhole, then drops what it reads in both
//! directions and keeps both sockets open, so neither FIN nor RST reaches the server.
//!
//! The tests take turns (a lock): they measure latency and descriptor counts, and the machine
//! may have only two cores. Every server is stopped by a guard (SIGTERM, then SIGKILL) even when
//! an assertion fails.

mod common;

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn turn() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner())
}

/// Written to the real stderr, so the figures show in a passing run without `--nocapture`.
fn report(line: &str) {
    let _ = writeln!(std::io::stderr(), "faults: {line}");
}

/// What a healthy receiver saw of a numbered stream (`{"n":..,"t":..}` payloads).
#[derive(Debug)]
struct Received {
    count: u64,
    in_order: bool,
    max_latency: Duration,
}

/// Reads `event` messages numbered 0..total on `ws` until number `total - 1`; answers pings.
fn receive_stream(mut ws: Ws, event: &'static str, total: u64) -> JoinHandle<(Received, Ws)> {
    let prefix = format!("42[\"{event}\",");
    std::thread::spawn(move || {
        let mut r = Received { count: 0, in_order: true, max_latency: Duration::ZERO };
        let mut next = 0u64;
        while next < total {
            let t = ws.text_until(|t| t.starts_with(&prefix));
            let v: Value = serde_json::from_str(&t[2..]).expect("json");
            let payload = v.as_array().and_then(|a| a.last()).cloned().unwrap_or(Value::Null);
            let n = payload["n"].as_u64().expect("n");
            let sent = payload["t"].as_u64().expect("t");
            let latency = Duration::from_micros(micros_now().saturating_sub(sent));
            r.max_latency = r.max_latency.max(latency);
            r.in_order &= n == next;
            r.count += 1;
            next = n + 1;
        }
        (r, ws)
    })
}

/// Sends `total` numbered messages, `every` apart: `42[event, <prefix args>, {"n","t","p"}]`.
fn produce(
    mut ws: Ws,
    event: &'static str,
    lead: &'static str,
    total: u64,
    pad: usize,
    every: Duration,
) -> JoinHandle<Ws> {
    std::thread::spawn(move || {
        let pad = "x".repeat(pad);
        let start = Instant::now();
        for n in 0..total {
            let due = start + every * n as u32;
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            ws.send_text(&format!(r#"42["{event}",{lead}{{"n":{n},"t":{},"p":"{pad}"}}]"#, micros_now()));
        }
        ws
    })
}

/// The summed Send-Q of the server's established connections (from `ss`, for the report only;
/// "unknown" without it).
fn send_queue(port: u16) -> String {
    let out =
        Command::new("ss").args(["-tnH", "state", "established", &format!("( sport = :{port} )")]).output();
    match out {
        Ok(o) if o.status.success() => {
            let text = String::from_utf8_lossy(&o.stdout);
            let sum: u64 = text
                .lines()
                .filter_map(|l| l.split_whitespace().nth(1))
                .filter_map(|q| q.parse::<u64>().ok())
                .sum();
            format!("{sum} B")
        }
        _ => "unknown (no ss)".into(),
    }
}

fn check_healthy(what: &str, r: &Received, total: u64, bound: Duration) {
    report(&format!(
        "{what}: healthy client got {}/{total}, in order {}, max latency {:?}",
        r.count, r.in_order, r.max_latency
    ));
    assert_eq!(r.count, total, "{what}: the healthy client missed messages: {r:?}");
    assert!(r.in_order, "{what}: out of order: {r:?}");
    assert!(r.max_latency < bound, "{what}: latency {:?} above {bound:?}", r.max_latency);
}

/// A fresh session still gets its echo.
fn still_serves(port: u16) {
    let mut ws = Ws::session(connect(port));
    ws.send_text(r#"42["message","still here"]"#);
    ws.text_until(|t| t == r#"42["message-back","still here"]"#);
}

// ---------------------------------------------------------------------------------------------
// 1. Clients vanishing mid-write
// ---------------------------------------------------------------------------------------------

#[test]
fn clients_resetting_mid_broadcast_are_freed_and_others_unaffected() {
    let _turn = turn();
    // Output is bounded high enough that the victims are not dropped as slow consumers: they
    // must go by themselves.
    let mut srv = Server::start(&[
        "--app",
        "echo",
        "--ping-interval",
        "60000",
        "--ping-timeout",
        "60000",
        "--max-output",
        "67108864",
    ]);
    let producer = Ws::session(connect(srv.port));
    let healthy = Ws::session(connect(srv.port));
    let baseline = srv.settled_fds();
    let rss_before = srv.rss_kib();

    // Victims with a 4 KiB receive window, which never read: the kernel's buffers towards them
    // fill at once and the rest waits in the server's output buffers when they go.
    const VICTIMS: usize = 100;
    let victims: Vec<Ws> = (0..VICTIMS).map(|_| Ws::session(connect_small_rcvbuf(srv.port, 4096))).collect();
    srv.wait_fds(baseline + VICTIMS, Duration::from_secs(5));

    // 8 KiB messages every 4 ms (2 MB/s to each victim) for 2 s; the victims reset after 1.5 s.
    const TOTAL: u64 = 500;
    let rx = receive_stream(healthy, "broadcast-msg", TOTAL);
    let tx = produce(producer, "broadcast", "", TOTAL, 8192, Duration::from_millis(4));
    std::thread::sleep(Duration::from_millis(1500));
    let rss_busy = srv.rss_kib();
    let in_kernel = send_queue(srv.port);
    assert_eq!(srv.fds(), baseline + VICTIMS, "the victims are still open when they reset");
    for v in &victims {
        socket2::SockRef::from(&v.s).set_linger(Some(Duration::ZERO)).unwrap();
    }
    let reset_at = Instant::now();
    drop(victims);
    srv.wait_fds(baseline, Duration::from_secs(5));
    let freed = reset_at.elapsed();
    let (r, _healthy) = rx.join().expect("healthy receiver");
    let _producer = tx.join().expect("producer");
    let rss_after = srv.rss_kib();
    report(&format!(
        "{VICTIMS} victims reset mid-write: descriptors back to baseline {baseline} {freed:?} after the first \
         reset; RSS before {rss_before} KiB, while writing {rss_busy} KiB (kernel send queues {in_kernel}), after \
         {rss_after} KiB"
    ));
    // The server was holding output for them in its own buffers, not only in the kernel's.
    assert!(rss_busy > rss_before + 16 * 1024, "no output was pending in the server: RSS {rss_busy} KiB");
    // And gave it back: buffers this large are whole mappings, returned to the system when freed.
    assert!(rss_after < rss_before + 16 * 1024, "the victims' output stays: RSS {rss_after} KiB");
    check_healthy("reset mid-write", &r, TOTAL, Duration::from_secs(1));
    srv.assert_alive();
    still_serves(srv.port);
}

// ---------------------------------------------------------------------------------------------
// 2. Half-open TCP
// ---------------------------------------------------------------------------------------------

/// A TCP relay to the server. Until `blackhole` is set it forwards both ways; after, it reads and
/// drops what arrives from either side and keeps every socket open: the server's peer is gone
/// without a FIN or an RST. It notes when the server closes each upstream connection.
struct Relay {
    port: u16,
    blackhole: Arc<AtomicBool>,
    /// When the server ended each upstream connection (EOF or error), in accept order.
    upstream_closed: Arc<Mutex<Vec<Instant>>>,
    /// Both ends of every relayed connection, held open until the relay is dropped.
    held: Arc<Mutex<Vec<TcpStream>>>,
}

impl Relay {
    fn start(server_port: u16) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind relay");
        let port = listener.local_addr().unwrap().port();
        let blackhole = Arc::new(AtomicBool::new(false));
        let upstream_closed = Arc::new(Mutex::new(Vec::new()));
        let held = Arc::new(Mutex::new(Vec::new()));
        let (bh, closed, hold) = (blackhole.clone(), upstream_closed.clone(), held.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(upstream) = TcpStream::connect(("127.0.0.1", server_port)) else { return };
                let _ = client.set_nodelay(true);
                let _ = upstream.set_nodelay(true);
                {
                    let mut h = hold.lock().unwrap();
                    h.push(client.try_clone().unwrap());
                    h.push(upstream.try_clone().unwrap());
                }
                pipe(client.try_clone().unwrap(), upstream.try_clone().unwrap(), bh.clone(), None);
                pipe(upstream, client, bh.clone(), Some(closed.clone()));
            }
        });
        Relay { port, blackhole, upstream_closed, held }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        for s in self.held.lock().unwrap_or_else(|p| p.into_inner()).drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

/// Copies `from` to `to` until `from` ends; drops the bytes once `blackhole` is set.
fn pipe(
    mut from: TcpStream,
    mut to: TcpStream,
    blackhole: Arc<AtomicBool>,
    ended: Option<Arc<Mutex<Vec<Instant>>>>,
) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 16384];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if !blackhole.load(Ordering::SeqCst) {
                        let _ = to.write_all(&buf[..n]);
                    }
                }
            }
        }
        if let Some(ended) = ended {
            ended.lock().unwrap().push(Instant::now());
        }
    });
}

const PING_INTERVAL_MS: u64 = 400;
const PING_TIMEOUT_MS: u64 = 300;

fn half_open_server() -> Server {
    Server::start(&[
        "--app",
        "echo",
        "--ping-interval",
        &PING_INTERVAL_MS.to_string(),
        "--ping-timeout",
        &PING_TIMEOUT_MS.to_string(),
        "--keep-alive-timeout-ms",
        "1000",
    ])
}

/// A healthy WebSocket session that answers pings and gets an echo every 50 ms until `stop`;
/// returns it and the slowest echo.
fn keep_healthy(mut ws: Ws, stop: Arc<AtomicBool>) -> JoinHandle<(Ws, Duration)> {
    std::thread::spawn(move || {
        let mut slowest = Duration::ZERO;
        while !stop.load(Ordering::SeqCst) {
            let sent = Instant::now();
            ws.send_text(r#"42["message","ping"]"#);
            ws.text_until(|t| t == r#"42["message-back","ping"]"#);
            slowest = slowest.max(sent.elapsed());
            std::thread::sleep(Duration::from_millis(50));
        }
        (ws, slowest)
    })
}

/// Stops a [`keep_healthy`] client and checks it was served throughout.
fn check_kept(what: &str, stop: &AtomicBool, keeper: JoinHandle<(Ws, Duration)>) {
    stop.store(true, Ordering::SeqCst);
    let (mut ws, slowest) = keeper.join().expect("the healthy client was served throughout");
    report(&format!("{what}: slowest echo of the healthy client {slowest:?}"));
    assert!(slowest < Duration::from_millis(500), "{what}: slowest echo {slowest:?}");
    ws.send_text(r#"42["message","after"]"#);
    ws.text_until(|t| t == r#"42["message-back","after"]"#);
}

#[test]
fn half_open_websocket_is_closed_after_ping_interval_plus_timeout() {
    let _turn = turn();
    let mut srv = half_open_server();
    let stop = Arc::new(AtomicBool::new(false));
    let keeper = keep_healthy(Ws::session(connect(srv.port)), stop.clone());
    let baseline = srv.settled_fds();
    let relay = Relay::start(srv.port);
    let mut ws = Ws::session(connect(relay.port));
    // Live through one heartbeat, then go dark right after answering a ping.
    while ws.text().expect("read") != "2" {}
    ws.send_text("3");
    std::thread::sleep(Duration::from_millis(20));
    relay.blackhole.store(true, Ordering::SeqCst);
    let dark = Instant::now();
    assert_eq!(srv.fds(), baseline + 1);

    let expected = Duration::from_millis(PING_INTERVAL_MS + PING_TIMEOUT_MS);
    let freed = srv.wait_fds(baseline, expected + Duration::from_secs(3));
    let closed = relay.upstream_closed.lock().unwrap().first().map(|at| at.duration_since(dark));
    report(&format!(
        "half-open websocket: server closed it {closed:?} after going dark, descriptor freed after {freed:?} \
         (ping interval + timeout = {expected:?})"
    ));
    let closed = closed.expect("the server closed the upstream connection");
    // The close comes from the heartbeat: not before the pong deadline, and not much after it.
    assert!(
        closed >= expected - Duration::from_millis(60),
        "closed after {closed:?}, before the pong deadline"
    );
    assert!(closed < expected + Duration::from_millis(700), "closed after {closed:?}");
    // And it was the heartbeat that closed it.
    assert_eq!(metric_at_least(srv.port, r#"sockeye_session_closes_total{reason="ping timeout"}"#, 1.0), 1.0);
    // The client end saw nothing: the connection is half-open from its side.
    ws.s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let mut b = [0u8; 64];
    assert!(
        matches!(ws.s.read(&mut b), Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut))
    );
    check_kept("half-open", &stop, keeper);
    srv.assert_alive();
}

#[test]
fn half_open_polling_session_is_closed_after_ping_interval_plus_timeout() {
    let _turn = turn();
    let mut srv = half_open_server();
    let stop = Arc::new(AtomicBool::new(false));
    let keeper = keep_healthy(Ws::session(connect(srv.port)), stop.clone());
    let baseline = srv.settled_fds();
    let relay = Relay::start(srv.port);
    // Two kept-alive connections through the relay: one for GETs, one for POSTs.
    let (mut get, mut post) = (connect(relay.port), connect(relay.port));
    let (mut gbuf, mut pbuf) = (Vec::new(), Vec::new());
    let (st, open) = http_on(&mut get, &mut gbuf, "GET", POLL, b"");
    assert_eq!(st, 200, "{open}");
    let sid = sid_of(&open);
    let target = format!("{POLL}&sid={sid}");
    assert_eq!(http_on(&mut post, &mut pbuf, "POST", &target, b"40"), (200, "ok".into()));
    let (st, body) = http_on(&mut get, &mut gbuf, "GET", &target, b"");
    assert!(st == 200 && body.starts_with("40{"), "{st} {body}");
    // Parked until the first ping; answered, then the client goes dark.
    let (st, body) = http_on(&mut get, &mut gbuf, "GET", &target, b"");
    assert_eq!((st, body.as_str()), (200, "2"));
    assert_eq!(http_on(&mut post, &mut pbuf, "POST", &target, b"3"), (200, "ok".into()));
    relay.blackhole.store(true, Ordering::SeqCst);
    let dark = Instant::now();
    // Its next poll goes nowhere.
    let _ = write!(get, "GET {target} HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(srv.fds(), baseline + 2);

    // Before the pong deadline the session exists: a noop packet from elsewhere is accepted (a
    // noop is not a pong, so it does not move the deadline).
    std::thread::sleep(Duration::from_millis(PING_INTERVAL_MS));
    assert_eq!(
        http(srv.port, "POST", &target, b"6"),
        (200, "ok".into()),
        "session alive before its deadline"
    );
    let expected = Duration::from_millis(PING_INTERVAL_MS + PING_TIMEOUT_MS);
    std::thread::sleep(
        (dark + expected + Duration::from_millis(300)).saturating_duration_since(Instant::now()),
    );
    let (st, body) = http(srv.port, "GET", &target, b"");
    report(&format!(
        "half-open polling: {:?} after going dark the session is gone: {st} {body}",
        dark.elapsed()
    ));
    assert_eq!(st, 400, "the session is closed after ping interval + timeout: {body}");
    assert!(body.contains("Session ID unknown"), "{body}");
    assert_eq!(metric_at_least(srv.port, r#"sockeye_session_closes_total{reason="ping timeout"}"#, 1.0), 1.0);
    // The two connections are kept-alive HTTP connections without a request: the idle timeout
    // (1 s here) frees them.
    let freed = srv.wait_fds(baseline, Duration::from_secs(4));
    report(&format!(
        "half-open polling: descriptors back to baseline {:?} after going dark (freed {freed:?} after the check)",
        dark.elapsed()
    ));
    assert_eq!(relay.upstream_closed.lock().unwrap().len(), 2, "the server closed both relayed connections");
    check_kept("half-open", &stop, keeper);
    srv.assert_alive();
}

// ---------------------------------------------------------------------------------------------
// 3. A client that never reads
// ---------------------------------------------------------------------------------------------

#[test]
fn client_that_never_reads_is_dropped_as_slow_consumer_and_the_room_keeps_going() {
    let _turn = turn();
    const MAX_OUTPUT: usize = 256 * 1024;
    let mut srv = Server::start(&[
        "--app",
        "echo",
        "--ping-interval",
        "60000",
        "--ping-timeout",
        "60000",
        "--max-output",
        &MAX_OUTPUT.to_string(),
    ]);
    let producer = Ws::session(connect(srv.port));
    let mut healthy = Ws::session(connect(srv.port));
    assert_eq!(healthy.call(r#"["join","r"]"#), serde_json::json!([true]));
    let baseline = srv.settled_fds();
    let mut slow = Ws::session(connect_small_rcvbuf(srv.port, 4096));
    assert_eq!(slow.call(r#"["join","r"]"#), serde_json::json!([true]));
    assert_eq!(srv.fds(), baseline + 1);

    // 8 KiB to the room every 3 ms (about 2.7 MB/s) for 3 s; the slow client reads nothing.
    const TOTAL: u64 = 1000;
    let start = Instant::now();
    let rx = receive_stream(healthy, "room-msg", TOTAL);
    let tx = produce(producer, "to-room", r#""r","#, TOTAL, 8192, Duration::from_millis(3));
    let dropped = srv.wait_fds(baseline, Duration::from_secs(3));
    report(&format!(
        "never-reading client dropped {dropped:?} into the stream (max output {MAX_OUTPUT} B, ~2.7 MB/s)"
    ));
    // Dropped because of its output, long before the 60 s heartbeat could notice it.
    assert!(start.elapsed() < Duration::from_secs(3));
    assert_eq!(
        metric_at_least(srv.port, r#"sockeye_session_closes_total{reason="slow consumer"}"#, 1.0),
        1.0
    );
    assert_eq!(metric_at_least(srv.port, "sockeye_slow_consumers_total", 1.0), 1.0);
    assert_eq!(metric_at_least(srv.port, r#"sockeye_session_closes_total{reason="ping timeout"}"#, 0.0), 0.0);
    // Its end sees what the kernel had buffered, then the end of the connection.
    slow.expect_end();
    let (r, _healthy) = rx.join().expect("healthy receiver");
    let _producer = tx.join().expect("producer");
    check_healthy("never-reading client", &r, TOTAL, Duration::from_secs(1));
    srv.assert_alive();
    still_serves(srv.port);
}

// ---------------------------------------------------------------------------------------------
// 4. Garbage after a valid handshake
// ---------------------------------------------------------------------------------------------

#[test]
fn garbage_after_the_handshake_gets_a_clean_close_and_others_are_unaffected() {
    let _turn = turn();
    const MAX_PAYLOAD: usize = 100_000;
    let mut srv = Server::start(&[
        "--app",
        "echo",
        "--ping-interval",
        "60000",
        "--ping-timeout",
        "60000",
        "--max-payload",
        &MAX_PAYLOAD.to_string(),
    ]);
    let mut healthy = Ws::session(connect(srv.port));
    let baseline = srv.settled_fds();

    // (what, opcode, payload, expected close code)
    let oversize = vec![b'4'; MAX_PAYLOAD + 1];
    let cases: Vec<(&str, u8, Vec<u8>, u16)> = vec![
        ("unknown Engine.IO packet type", OP_TEXT, b"x".to_vec(), 1000),
        ("empty Engine.IO packet", OP_TEXT, b"".to_vec(), 1000),
        ("unknown Socket.IO packet type", OP_TEXT, b"49".to_vec(), 1000),
        ("Socket.IO event that is not JSON", OP_TEXT, b"42[\"message\",{".to_vec(), 1000),
        ("Socket.IO event without a name", OP_TEXT, b"42{}".to_vec(), 1000),
        ("binary garbage", OP_BINARY, vec![0xde, 0xad, 0xbe, 0xef, 0x00, 0xff], 1000),
        ("invalid UTF-8 in a text frame", OP_TEXT, vec![b'4', b'2', 0xff, 0xfe], 1007),
        ("frame above maxPayload", OP_TEXT, oversize, 1009),
        ("unknown opcode", 3, b"x".to_vec(), 1002),
    ];
    let mut seen = Vec::new();
    for (what, op, payload, want) in cases {
        let mut ws = Ws::session(connect(srv.port));
        ws.send(op, &payload);
        let code = ws.close_code();
        seen.push(format!("{what}: {code:?}"));
        assert_eq!(code, Some(want), "{what}");
        healthy.send_text(r#"42["message","ok"]"#);
        healthy.text_until(|t| t == r#"42["message-back","ok"]"#);
    }
    // Bytes that are not a WebSocket frame at all (unmasked).
    let mut ws = Ws::session(connect(srv.port));
    ws.s.write_all(b"\x81\x05hello").unwrap();
    let code = ws.close_code();
    seen.push(format!("unmasked frame: {code:?}"));
    assert_eq!(code, Some(1002));
    report(&format!("websocket garbage close codes: {}", seen.join("; ")));

    // Polling: garbage POST bodies. Like the reference server, a body that does not decode is
    // answered `ok` (it was read) and closes the session with `parse error`; one above maxPayload
    // is answered 413. Either way the session is gone.
    let mut seen = Vec::new();
    let polling: Vec<(&str, Vec<u8>, u16)> = vec![
        ("unknown Engine.IO packet type", b"x".to_vec(), 200),
        ("empty records", b"\x1e\x1e".to_vec(), 200),
        ("bad base64 binary record", b"b!!!".to_vec(), 200),
        ("Socket.IO event that is not JSON", b"42[\"message\",{".to_vec(), 200),
        ("invalid UTF-8", vec![b'4', b'2', 0xff], 200),
        ("body above maxPayload", vec![b'4'; MAX_PAYLOAD + 1], 413),
    ];
    for (what, body, want) in polling {
        let (st, open) = http(srv.port, "GET", POLL, b"");
        assert_eq!(st, 200);
        let target = format!("{POLL}&sid={}", sid_of(&open));
        assert_eq!(http(srv.port, "POST", &target, b"40"), (200, "ok".into()));
        let (st, answer) = http(srv.port, "POST", &target, &body);
        seen.push(format!("{what}: {st}"));
        assert_eq!(st, want, "{what}: {answer}");
        // The session is closed: what was queued for it ends with the close packet `1`, and then
        // its id is unknown.
        let (mut st, mut answer) = http(srv.port, "GET", &target, b"");
        if st == 200 {
            assert!(answer.ends_with("\u{1e}1") || answer == "1", "{what}: last poll {answer:?}");
            (st, answer) = http(srv.port, "GET", &target, b"");
        }
        assert_eq!(st, 400, "{what}: session closed, then {answer}");
        assert!(answer.contains("Session ID unknown"), "{what}: {answer}");
        healthy.send_text(r#"42["message","ok"]"#);
        healthy.text_until(|t| t == r#"42["message-back","ok"]"#);
    }
    report(&format!("polling garbage statuses: {}", seen.join("; ")));
    let freed = srv.wait_fds(baseline, Duration::from_secs(3));
    report(&format!("garbage: descriptors back to baseline {baseline} ({freed:?} after the last case)"));
    srv.assert_alive();
    still_serves(srv.port);
}

// ---------------------------------------------------------------------------------------------
// 5. 10 000 connections closing at once
// ---------------------------------------------------------------------------------------------

/// Raises this process's soft `RLIMIT_NOFILE` to `want` (at most the hard limit); returns it.
fn raise_nofile(want: u64) -> u64 {
    // SAFETY: getrlimit/setrlimit read and write a plain rlimit struct we own.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        if lim.rlim_cur < want {
            lim.rlim_cur = want.min(lim.rlim_max);
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
        }
        lim.rlim_cur
    }
}

#[test]
fn ten_thousand_connections_closing_at_once_are_freed() {
    let _turn = turn();
    const N: usize = 10_000;
    const BATCH: usize = 250;
    let limit = raise_nofile(N as u64 + 1000);
    assert!(limit >= N as u64 + 200, "RLIMIT_NOFILE hard limit {limit} is too low for {N} connections");
    let mut srv = Server::start(&["--app", "echo", "--ping-interval", "60000", "--ping-timeout", "60000"]);
    let mut healthy = Ws::session(connect(srv.port));
    let baseline = srv.settled_fds();
    let rss_before = srv.rss_kib();
    // Two rounds: the second shows whether what the first left behind is reused or leaked.
    let mut peaks = Vec::new();
    let mut afters = Vec::new();
    for round in 1..=2 {
        // Opened in pipelined batches: every upgrade of a batch is written before any answer is
        // read, so the server works on many at once and the backlog never holds more than a
        // batch.
        let opening = Instant::now();
        let mut all: Vec<Ws> = Vec::with_capacity(N);
        while all.len() < N {
            let mut batch: Vec<Ws> =
                (0..BATCH.min(N - all.len())).map(|_| Ws::start_open(connect(srv.port))).collect();
            for ws in &mut batch {
                ws.finish_open();
                ws.send_text("40");
            }
            for ws in &mut batch {
                ws.text_until(|t| t.starts_with("40{"));
            }
            all.append(&mut batch);
        }
        let opened = opening.elapsed();
        srv.wait_fds(baseline + N, Duration::from_secs(10));
        let rss_peak = srv.rss_kib();
        healthy.send_text(r#"42["message","busy"]"#);
        healthy.text_until(|t| t == r#"42["message-back","busy"]"#);

        // All at once: half end with an RST, half with a FIN, in one tight loop.
        for (i, ws) in all.iter().enumerate() {
            if i % 2 == 0 {
                let _ = socket2::SockRef::from(&ws.s).set_linger(Some(Duration::ZERO));
            }
        }
        let closing = Instant::now();
        drop(all);
        let closed_in = closing.elapsed();
        srv.wait_fds(baseline, Duration::from_secs(5));
        let freed = closing.elapsed();
        // Let the allocator hand back what it will.
        std::thread::sleep(Duration::from_millis(500));
        let rss_after = srv.rss_kib();
        report(&format!(
            "round {round}: {N} sessions opened in {opened:?}; closed by the client in {closed_in:?}; server \
             descriptors back to baseline {baseline} {freed:?} after the first close; RSS before {rss_before} \
             KiB, with {N} open {rss_peak} KiB, after {rss_after} KiB"
        ));
        assert!(freed < Duration::from_secs(3), "descriptors freed after {freed:?}");
        peaks.push(rss_peak);
        afters.push(rss_after);
    }
    // The allocator keeps the first round's memory (the connection and session tables and the
    // freed buffers), but the second round reuses it: no per-connection leak. 8 MiB of slack is
    // under 1 KiB per connection of a round.
    let slack = 8 * 1024;
    assert!(
        peaks[1] <= peaks[0] + slack && afters[1] <= peaks[0] + slack,
        "RSS grows round after round: peaks {peaks:?} KiB, after each round {afters:?} KiB"
    );
    srv.assert_alive();
    healthy.send_text(r#"42["message","after"]"#);
    healthy.text_until(|t| t == r#"42["message-back","after"]"#);
    still_serves(srv.port);
}

// ---------------------------------------------------------------------------------------------
// 6. Storage that cannot grow (disk full)
// ---------------------------------------------------------------------------------------------

/// Sets the soft `RLIMIT_FSIZE` of process `pid` (what `prlimit --pid PID --fsize=N:` does). With
/// 0, no file of the process can grow by a byte: every SQLite write fails with `EFBIG`, which
/// the server sees exactly like a full disk (the server ignores SIGXFSZ).
fn set_file_size_limit(pid: i32, soft: libc::rlim_t) {
    // SAFETY: prlimit(2) reads `new` and writes `old`, two plain structs we own.
    unsafe {
        let mut old: libc::rlimit = std::mem::zeroed();
        assert_eq!(libc::prlimit(pid, libc::RLIMIT_FSIZE, std::ptr::null(), &mut old), 0, "prlimit get");
        let new = libc::rlimit { rlim_cur: soft.min(old.rlim_max), rlim_max: old.rlim_max };
        assert_eq!(libc::prlimit(pid, libc::RLIMIT_FSIZE, &new, std::ptr::null_mut()), 0, "prlimit set");
    }
}

#[test]
fn storage_that_cannot_grow_is_reported_to_the_sender_and_the_server_keeps_serving() {
    let _turn = turn();
    let dir = tempfile::Builder::new().prefix("sockeye-faults-").tempdir().expect("tempdir");
    let data = dir.path().to_str().expect("utf-8 path").to_owned();
    let args = ["--app", "chat", "--data-dir", &data, "--ping-interval", "60000", "--ping-timeout", "60000"];
    let mut srv = Server::start(&args);
    let (mut alice, _) = chat_user(srv.port, "alice");
    let (mut bob, _) = chat_user(srv.port, "bob");
    assert_eq!(say(&mut alice, "before")["success"], Value::Bool(true));
    assert_eq!(next_event(&mut bob, "chat message")["text"], "before");

    // The disk is full.
    set_file_size_limit(srv.pid, 0);
    let failed = say(&mut alice, "lost");
    report(&format!("disk full: chat message answered {failed}"));
    assert_eq!(failed["success"], Value::Bool(false), "{failed}");
    assert_eq!(failed["code"], "storage_error", "{failed}");
    // Without an ack, the error comes as an `error` event to the sender.
    alice.send_text(r#"42["chat message",{"roomId":"general","text":"lost too"}]"#);
    let err = next_event(&mut alice, "error");
    assert_eq!(err["code"], "storage_error", "{err}");
    let room = alice.call(r#"["create room",{"name":"attic"}]"#);
    assert_eq!(room[0]["code"], "storage_error", "{room}");

    // Everything that does not write is served meanwhile: typing, a newcomer's presence and
    // history, the health check.
    alice.send_text(r#"42["typing",{"roomId":"general"}]"#);
    assert_eq!(next_event(&mut bob, "typing")["user"], "alice");
    let (_carol, history) = chat_user(srv.port, "carol");
    assert_eq!(history, ["before"], "history read while the disk is full");
    let online = loop {
        let list = next_event(&mut alice, "online");
        if list.as_array().is_some_and(|l| l.iter().any(|u| u == "carol")) {
            break list;
        }
    };
    report(&format!("disk full: presence still served: online {online}"));
    assert_eq!(http(srv.port, "GET", "/healthz", b"").0, 200);

    // Space is back: the next write commits and is delivered.
    set_file_size_limit(srv.pid, libc::RLIM_INFINITY);
    let ok = say(&mut alice, "after");
    assert_eq!(ok["success"], Value::Bool(true), "{ok}");
    // Bob gets `after` next: nothing was broadcast for the failed messages.
    assert_eq!(next_event(&mut bob, "chat message")["text"], "after");
    assert_eq!(alice.call(r#"["create room",{"name":"attic"}]"#)[0]["success"], Value::Bool(true));
    srv.assert_alive();
    drop((alice, bob));
    drop(srv);

    // Restarted on the same files: exactly the acknowledged messages, and the new room.
    let srv = Server::start(&args);
    let (mut dave, history) = chat_user(srv.port, "dave");
    assert_eq!(history, ["before", "after"]);
    let rooms = http(srv.port, "GET", "/api/rooms", b"").1;
    assert!(rooms.contains("\"attic\""), "{rooms}");
    assert_eq!(say(&mut dave, "again")["success"], Value::Bool(true));
}

// ---------------------------------------------------------------------------------------------
// 7. Output pipes gone (a log collector that died)
// ---------------------------------------------------------------------------------------------

#[test]
fn sigterm_stops_a_server_whose_output_pipes_are_closed() {
    let _turn = turn();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sockeye"))
        .args(["--app", "echo", "--host", "127.0.0.1", "--port", "0", "--cores", "2"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start sockeye");
    let pid = i32::try_from(child.id()).expect("pid");
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    out.read_line(&mut line).expect("listening line");
    assert!(line.starts_with("sockeye listening on http://"), "{line}");
    let port: u16 = line.trim().rsplit(':').next().and_then(|p| p.parse().ok()).expect("port");
    still_serves(port);
    // Nobody reads the server's output any more: its next message meets a broken pipe.
    drop(out);
    drop(child.stderr.take());
    // SAFETY: kill(2) on the child we spawned and have not reaped; no memory involved.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    report(&format!("SIGTERM with closed output pipes: {status:?}"));
    assert!(status.is_some_and(|s| s.success()), "sockeye did not stop on SIGTERM: {status:?}");
}
