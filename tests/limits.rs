//! Limits under load and abuse, on the real runtime over loopback: the connection limit, the
//! request head timeout (slowloris) and the keep-alive idle timeout, and the handshake rate per
//! address. Each test runs its own server with small limits on a free port and stops it (the
//! guard shuts it down and joins it even when an assertion fails).

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use sockeye::api::{RunningServer, ServerBuilder, ServerHandle};
use sockeye::config::Config;
use tungstenite::Message;

struct Server {
    port: u16,
    handle: ServerHandle,
    running: Option<RunningServer>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.handle.shutdown();
        if let Some(r) = self.running.take() {
            r.join();
        }
    }
}

fn start(tweak: impl FnOnce(&mut Config)) -> Server {
    let mut cfg = Config::default();
    sockeye::apps::echo::configure(&mut cfg);
    cfg.host = "127.0.0.1".into();
    cfg.port = 0;
    cfg.cores = 2;
    tweak(&mut cfg);
    let mut b = ServerBuilder::new(cfg);
    sockeye::apps::echo::install(&mut b);
    let running = b.start().expect("server starts");
    Server { port: running.local_addr().port(), handle: running.handle(), running: Some(running) }
}

fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s
}

/// Read one response (head and `Content-Length` body) from a kept-alive connection.
fn read_response(s: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => buf.push(byte[0]),
            other => panic!("connection ended in a response head: {other:?} after {buf:?}"),
        }
    }
    let head = String::from_utf8(buf).unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap())
        })
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).unwrap();
    head + &String::from_utf8(body).unwrap()
}

/// A keep-alive `GET /healthz` on `s`; returns the response.
fn healthz(s: &mut TcpStream) -> String {
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    read_response(s)
}

/// Everything until the server closes the connection; `None` when it is still open after the
/// read timeout.
fn read_to_close(s: &mut TcpStream) -> Option<String> {
    let mut all = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => return Some(String::from_utf8_lossy(&all).into_owned()),
            Ok(n) => all.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => return None,
            // A reset after the answer still counts as closed.
            Err(_) => return Some(String::from_utf8_lossy(&all).into_owned()),
        }
    }
}

fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(3);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn connection_over_the_limit_gets_503_and_a_closed_slot_is_reused() {
    let srv = start(|c| c.limits.max_connections = 3);
    // Three connections, each proven accepted by an answered request.
    let mut kept: Vec<TcpStream> = (0..3).map(|_| connect(srv.port)).collect();
    for s in &mut kept {
        assert!(healthz(s).starts_with("HTTP/1.1 200"));
    }
    assert_eq!(srv.handle.stats().open_connections, 3);

    // The fourth, whichever core takes it, is answered 503 and closed.
    for _ in 0..3 {
        let mut extra = connect(srv.port);
        let _ = extra.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
        let answer = read_to_close(&mut extra).expect("refused connection is closed");
        assert!(answer.starts_with("HTTP/1.1 503 Service Unavailable\r\n"), "{answer:?}");
        assert!(answer.contains("\r\nRetry-After: 1\r\n") && answer.contains("\r\nConnection: close\r\n"));
    }
    assert_eq!(srv.handle.stats().connections_refused_limit, 3);

    // The three are unaffected.
    for s in &mut kept {
        assert!(healthz(s).starts_with("HTTP/1.1 200"));
    }

    // One closes: its slot is given back and a new connection is served.
    drop(kept.pop());
    wait_for("the closed connection's slot", || srv.handle.stats().open_connections == 2);
    let mut again = connect(srv.port);
    assert!(healthz(&mut again).starts_with("HTTP/1.1 200"));
    assert_eq!(srv.handle.stats().open_connections, 3);
    assert_eq!(srv.handle.stats().connections_refused_limit, 3);
}

#[test]
fn slow_request_heads_and_idle_connections_are_closed_others_are_not() {
    let srv = start(|c| {
        c.limits.header_read_timeout = Duration::from_millis(200);
        c.limits.keep_alive_idle_timeout = Duration::from_millis(500);
        c.engine.ping_interval = Duration::from_millis(400);
        c.engine.ping_timeout = Duration::from_millis(3000);
        c.connect_timeout = Duration::from_secs(5);
    });
    // A WebSocket and a parked poll outlive both timeouts.
    let url = format!("ws://127.0.0.1:{}/socket.io/?EIO=4&transport=websocket", srv.port);
    let (mut ws, _) = tungstenite::client(url, connect(srv.port)).expect("websocket handshake");
    ws.send(Message::text("40")).unwrap();
    let mut poll = connect(srv.port);
    poll.write_all(b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let open = read_response(&mut poll);
    let sid = open.split("\"sid\":\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    // Parked until the first ping, 400 ms after the handshake.
    write!(poll, "GET /socket.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();

    // A client that keeps one connection busy with complete requests, for longer than both
    // timeouts.
    let port = srv.port;
    let busy = std::thread::spawn(move || {
        let mut s = connect(port);
        for _ in 0..12 {
            assert!(healthz(&mut s).starts_with("HTTP/1.1 200"));
            std::thread::sleep(Duration::from_millis(100));
        }
        s
    });

    let started = Instant::now();
    // Slowloris: half a request head, then nothing.
    let mut slow = connect(srv.port);
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").unwrap();
    // A connection that never sends anything.
    let mut silent = connect(srv.port);
    let answer = read_to_close(&mut slow).expect("slowloris connection closed");
    let elapsed = started.elapsed();
    assert!(answer.starts_with("HTTP/1.1 408 Request Timeout\r\n"), "{answer:?}");
    assert!(elapsed >= Duration::from_millis(200), "closed after {elapsed:?}");
    assert!(elapsed < Duration::from_millis(1000), "closed after {elapsed:?}");
    assert_eq!(read_to_close(&mut silent).as_deref(), Some(""), "silent connection closed");
    assert!(started.elapsed() < Duration::from_millis(1000), "closed late: {:?}", started.elapsed());

    let mut busy = busy.join().expect("the busy client was served throughout");
    // The parked poll was answered with the ping, not cut.
    assert!(read_response(&mut poll).ends_with("\r\n\r\n2"), "poll answered with a ping");
    // The WebSocket is served after all this (pings answered on the way).
    ws.send(Message::text("42[\"message\",\"still here\"]")).unwrap();
    loop {
        match ws.read().expect("websocket still open") {
            Message::Text(t) if t.as_str() == "2" => ws.send(Message::text("3")).unwrap(),
            Message::Text(t) if t.as_str() == "42[\"message-back\",\"still here\"]" => break,
            _ => {}
        }
    }
    let stats = srv.handle.stats();
    assert_eq!(stats.header_timeouts, 2, "{stats:?}");

    // The busy connection, now idle, is closed after the keep-alive idle timeout.
    let idle_from = Instant::now();
    assert_eq!(read_to_close(&mut busy).as_deref(), Some(""), "idle keep-alive connection closed");
    let idle = idle_from.elapsed();
    assert!(idle < Duration::from_millis(1500), "idle close after {idle:?}");
    wait_for("the idle timeout count", || srv.handle.stats().idle_timeouts >= 1);
}

#[test]
fn handshake_flood_from_one_address_gets_429_after_the_burst() {
    let srv = start(|c| {
        c.limits.max_handshakes_per_ip_per_sec = 5;
        c.limits.handshake_burst_per_ip = 10;
        // The flood comes from 127.0.0.1.
        c.limits.handshake_rate_exempt_loopback = false;
    });
    let started = Instant::now();
    let (mut ok, mut refused) = (0u64, 0u64);
    for _ in 0..40 {
        let mut s = connect(srv.port);
        s.write_all(
            b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .unwrap();
        let answer = read_to_close(&mut s).expect("answered and closed");
        if answer.starts_with("HTTP/1.1 200") {
            ok += 1;
        } else {
            assert!(answer.starts_with("HTTP/1.1 429 Too Many Requests\r\n"), "{answer:?}");
            assert!(answer.contains("\r\nRetry-After: 1\r\n"), "{answer:?}");
            assert!(answer.ends_with(r#"{"code":6,"message":"Too many requests"}"#), "{answer:?}");
            refused += 1;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    // Burst 10 split over 2 cores, plus what refilled meanwhile at 5 per second (and one per
    // core of rounding).
    let most = 10.0 + 5.0 * secs + 2.0;
    assert!(ok >= 5, "at least one core's burst passes: {ok}");
    assert!((ok as f64) <= most, "{ok} handshakes passed in {secs:.2} s, at most {most:.1} allowed");
    assert_eq!(ok + refused, 40);
    assert_eq!(srv.handle.stats().handshakes_refused_rate, refused);
    // Refilled: after a second each core has 2.5 handshakes again.
    std::thread::sleep(Duration::from_millis(1000));
    let mut s = connect(srv.port);
    s.write_all(b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert!(read_response(&mut s).starts_with("HTTP/1.1 200"));
}

#[test]
fn churn_of_short_connections_keeps_pending_deadlines() {
    // Every short connection leaves a stale entry in the core's timer heap; past twice the
    // live connections plus 1024 the heap is rebuilt from the live ones, and the slow client's
    // deadline must survive that.
    let srv = start(|c| {
        c.cores = 1;
        c.limits.header_read_timeout = Duration::from_secs(2);
    });
    let started = Instant::now();
    let mut slow = connect(srv.port);
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").unwrap();
    for _ in 0..2500 {
        let mut s = connect(srv.port);
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        assert!(read_to_close(&mut s).expect("answered").starts_with("HTTP/1.1 200"));
    }
    slow.set_read_timeout(Some(Duration::from_secs(4))).unwrap();
    let answer = read_to_close(&mut slow).expect("slow connection closed at its deadline");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_secs(2) && elapsed < Duration::from_secs(4),
        "closed after {elapsed:?}"
    );
    assert_eq!(srv.handle.stats().header_timeouts, 1);
}

#[test]
fn refused_payloads_heads_and_packets_are_counted_and_exported() {
    let srv = start(|c| c.engine.max_payload = 1000);
    let s = || srv.handle.stats();

    // A WebSocket message over maxPayload: close 1009.
    let url = format!("ws://127.0.0.1:{}/socket.io/?EIO=4&transport=websocket", srv.port);
    let (mut ws, _) = tungstenite::client(url.as_str(), connect(srv.port)).expect("websocket handshake");
    ws.send(Message::text(format!("4{}", "x".repeat(2000)))).unwrap();
    loop {
        match ws.read() {
            Ok(Message::Close(Some(f))) => {
                assert_eq!(u16::from(f.code), 1009);
                break;
            }
            Ok(_) => {}
            Err(e) => panic!("no close frame: {e}"),
        }
    }
    wait_for("the WebSocket payload count", || s().payload_too_large == 1);

    // A polling POST over maxPayload: 413.
    let mut poll = connect(srv.port);
    poll.write_all(b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let open = read_response(&mut poll);
    let sid = open.split("\"sid\":\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    let body = "4".repeat(1500);
    write!(
        poll,
        "POST /socket.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let answer = read_to_close(&mut poll).expect("413 and closed");
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer:?}");
    assert_eq!(s().payload_too_large, 2);

    // A request head over max_header_bytes (431) and one with Transfer-Encoding (501).
    let mut big = connect(srv.port);
    write!(big, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\n\r\n", "p".repeat(9000)).unwrap();
    assert!(read_to_close(&mut big).expect("answered").starts_with("HTTP/1.1 431"));
    let mut chunked = connect(srv.port);
    chunked
        .write_all(b"POST /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
        .unwrap();
    assert!(read_to_close(&mut chunked).expect("answered").starts_with("HTTP/1.1 501"));
    assert_eq!(s().http_requests_refused, 2);

    // A Socket.IO packet that does not decode closes its session.
    let (mut ws, _) = tungstenite::client(url.as_str(), connect(srv.port)).expect("websocket handshake");
    ws.send(Message::text("40")).unwrap();
    ws.send(Message::text("42[\"unterminated")).unwrap();
    while ws.read().is_ok() {}
    wait_for("the malformed packet count", || s().malformed_packets == 1);

    // The same numbers on GET /metrics.
    let mut m = connect(srv.port);
    m.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let text = read_response(&mut m);
    for line in [
        "\nsockeye_payload_too_large_total 2\n",
        "\nsockeye_http_requests_refused_total 2\n",
        "\nsockeye_malformed_packets_total 1\n",
    ] {
        assert!(text.contains(line), "{line:?} not in\n{text}");
    }
}
