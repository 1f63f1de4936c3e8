//! Loopback tests of the runtime: the server runs in-process on a free port with two cores and
//! is shut down by a guard even when a test fails. Clients are raw HTTP and tungstenite, so
//! these tests see exactly the bytes on the wire.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use sockeye::api::{RunningServer, ServerBuilder, ServerHandle};
use sockeye::broker::adapter::{Adapter, ClusterBroadcast};
use sockeye::config::Config;
use tungstenite::{Message, WebSocket};

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
    start_with(tweak, |_| {})
}

fn start_with(tweak: impl FnOnce(&mut Config), build: impl FnOnce(&mut ServerBuilder)) -> Server {
    let mut cfg = Config::default();
    sockeye::apps::echo::configure(&mut cfg);
    cfg.host = "127.0.0.1".into();
    cfg.port = 0;
    cfg.cores = 2;
    tweak(&mut cfg);
    let mut b = ServerBuilder::new(cfg);
    sockeye::apps::echo::install(&mut b);
    build(&mut b);
    let running = b.start().expect("server starts");
    Server { port: running.local_addr().port(), handle: running.handle(), running: Some(running) }
}

/// One HTTP request on a fresh connection; returns (status, body).
fn http(port: u16, method: &str, target: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "{method} {target} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    let text = String::from_utf8_lossy(&resp).into_owned();
    let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

fn sid_of(open: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(&open[1..]).unwrap();
    v["sid"].as_str().unwrap().to_owned()
}

fn ws_connect(port: u16, query: &str) -> WebSocket<TcpStream> {
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let url = format!("ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket{query}");
    let (ws, _) = tungstenite::client(url, stream).expect("websocket handshake");
    ws
}

/// Read text messages until one satisfies `pred`, answering pings; panics after 5 s.
fn ws_until(ws: &mut WebSocket<TcpStream>, pred: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        match ws.read().expect("websocket read") {
            Message::Text(t) if t.as_str() == "2" => ws.send(Message::text("3")).unwrap(),
            Message::Text(t) if pred(t.as_str()) => return t.to_string(),
            _ => {}
        }
    }
    panic!("no matching message within 5 s");
}

#[test]
fn polling_requests_reach_their_session_from_any_core() {
    let srv = start(|_| {});
    let base = "/socket.io/?EIO=4&transport=polling";
    // Every request is a new connection; the kernel spreads them over both cores, so about
    // half of the follow-up requests land on the core that does not own the session.
    for _ in 0..20 {
        let (st, open) = http(srv.port, "GET", base, "");
        assert_eq!(st, 200);
        let sid = sid_of(&open);
        let target = format!("{base}&sid={sid}");
        assert_eq!(http(srv.port, "POST", &target, "40"), (200, "ok".into()));
        let (st, body) = http(srv.port, "GET", &target, "");
        assert_eq!(st, 200);
        assert!(body.starts_with("40{\"sid\":"), "{body}");
        assert_eq!(http(srv.port, "POST", &target, "42[\"message\",7]"), (200, "ok".into()));
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let (st, body) = http(srv.port, "GET", &target, "");
            assert_eq!(st, 200);
            if body.contains("42[\"message-back\",7]") {
                break;
            }
            assert!(Instant::now() < deadline, "no message-back; last body {body}");
        }
    }
}

#[test]
fn second_websocket_on_upgraded_session_is_refused_and_first_survives() {
    let srv = start(|_| {});
    let base = "/socket.io/?EIO=4&transport=polling";
    let (_, open) = http(srv.port, "GET", base, "");
    let sid = sid_of(&open);
    let mut ws = ws_connect(srv.port, &format!("&sid={sid}"));
    ws.send(Message::text("2probe")).unwrap();
    ws_until(&mut ws, |t| t == "3probe");
    ws.send(Message::text("5")).unwrap();
    ws.send(Message::text("40")).unwrap();
    ws_until(&mut ws, |t| t.starts_with("40{"));

    let stream = TcpStream::connect(("127.0.0.1", srv.port)).unwrap();
    let url = format!("ws://127.0.0.1:{}/socket.io/?EIO=4&transport=websocket&sid={sid}", srv.port);
    assert!(tungstenite::client(url, stream).is_err(), "second websocket must be refused");

    ws.send(Message::text("42[\"message\",\"still here\"]")).unwrap();
    ws_until(&mut ws, |t| t == "42[\"message-back\",\"still here\"]");
}

#[test]
fn client_that_never_reads_is_dropped_without_stalling_others() {
    let srv = start(|c| {
        c.limits.max_output_bytes = 256 * 1024;
        c.engine.ping_interval = Duration::from_secs(20);
        c.engine.ping_timeout = Duration::from_secs(20);
    });
    // The slow client connects and then never reads.
    let slow_stream = TcpStream::connect(("127.0.0.1", srv.port)).unwrap();
    slow_stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let url = format!("ws://127.0.0.1:{}/socket.io/?EIO=4&transport=websocket", srv.port);
    let (mut slow, _) = tungstenite::client(url, slow_stream).unwrap();
    slow.send(Message::text("40")).unwrap();
    ws_until(&mut slow, |t| t.starts_with("40{"));

    let mut fast = ws_connect(srv.port, "");
    fast.send(Message::text("40")).unwrap();
    ws_until(&mut fast, |t| t.starts_with("40{"));

    // 64 KiB broadcasts: 400 of them is 26 MB aimed at the slow client, more than the kernel's
    // socket buffers on both sides can hold.
    let payload = "x".repeat(64 * 1024);
    let started = Instant::now();
    for i in 0..400 {
        fast.send(Message::text(format!("42[\"broadcast\",\"{payload}\"]"))).unwrap();
        fast.send(Message::text(format!("421[\"message-with-ack\",{i}]"))).unwrap();
        ws_until(&mut fast, |t| t == format!("431[{i}]"));
    }
    assert!(started.elapsed() < Duration::from_secs(10), "fast client was stalled");

    // The slow client's connection was closed by the server: after the bytes already in
    // flight, reading ends.
    eprintln!("flood took {:?}", started.elapsed());
    let drain_started = Instant::now();
    let closed = loop {
        match slow.read() {
            Ok(_) => continue,
            Err(tungstenite::Error::Io(e))
                if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) =>
            {
                break false;
            }
            Err(_) => break true,
        }
    };
    eprintln!("drain took {:?}", drain_started.elapsed());
    assert!(closed, "slow consumer was not disconnected");
    // Counted once, for the slow session; the fast one is fine.
    assert_eq!(srv.handle.stats().slow_consumers, 1);
}

#[test]
fn pipelined_requests_for_sessions_on_both_cores_share_one_connection() {
    let srv = start(|_| {});
    let base = "/socket.io/?EIO=4&transport=polling";
    // Open sessions until there is one owned by each core.
    let mut by_core: [Option<String>; 2] = [None, None];
    for _ in 0..200 {
        let (_, open) = http(srv.port, "GET", base, "");
        let sid = sid_of(&open);
        let core = sockeye::engineio::sid::sid_core(&sid).unwrap() as usize;
        by_core[core].get_or_insert(sid);
        if by_core.iter().all(Option::is_some) {
            break;
        }
    }
    let [Some(a), Some(b)] = by_core else { panic!("sessions did not spread over both cores") };
    let mut s = TcpStream::connect(("127.0.0.1", srv.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut reqs = String::new();
    for sid in [&a, &b, &a, &b] {
        reqs += &format!("POST {base}&sid={sid} HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n40");
    }
    for sid in [&a, &b] {
        reqs += &format!("GET {base}&sid={sid} HTTP/1.1\r\nHost: x\r\n\r\n");
    }
    s.write_all(reqs.as_bytes()).unwrap();
    // Six responses, in request order, whichever core answered each; the last one ends with
    // the `auth` event the app emits on connect.
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while String::from_utf8_lossy(&buf).matches("HTTP/1.1 200").count() < 6 || !buf.ends_with(b"]") {
        let n = match s.read(&mut chunk) {
            Ok(n) => n,
            Err(e) => panic!("{e}; got only: {:?}", String::from_utf8_lossy(&buf)),
        };
        assert!(n > 0, "connection closed early: {}", String::from_utf8_lossy(&buf));
        buf.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&buf);
    let bodies: Vec<&str> =
        text.split("HTTP/1.1 200").skip(1).map(|r| r.split("\r\n\r\n").nth(1).unwrap()).collect();
    assert_eq!(&bodies[..4], &["ok", "ok", "ok", "ok"]);
    // The second CONNECT of a namespace is ignored, so each GET holds exactly one 40.
    assert!(bodies[4].starts_with("40{\"sid\":") && bodies[5].starts_with("40{\"sid\":"), "{bodies:?}");
}

#[derive(Default)]
struct Recorder(std::sync::Mutex<Vec<ClusterBroadcast>>);

impl Adapter for Recorder {
    fn publish(&self, b: ClusterBroadcast) {
        self.0.lock().unwrap().push(b);
    }
}

#[test]
fn broadcasts_cross_the_adapter_boundary_both_ways() {
    let recorder = std::sync::Arc::new(Recorder::default());
    let r = recorder.clone();
    let srv = start_with(
        |_| {},
        move |b| {
            b.adapter(r);
        },
    );
    let mut ws = ws_connect(srv.port, "");
    ws.send(Message::text("40")).unwrap();
    let connected = ws_until(&mut ws, |t| t.starts_with("40{"));
    let sid: serde_json::Value = serde_json::from_str(&connected[2..]).unwrap();
    let sid = sid["sid"].as_str().unwrap().to_owned();

    // A broadcast that starts here is published once, leaving out the sender by its room.
    ws.send(Message::text("42[\"broadcast\",{\"n\":1}]")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while recorder.0.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "nothing published");
        std::thread::sleep(Duration::from_millis(10));
    }
    let published = recorder.0.lock().unwrap().clone();
    assert_eq!(published.len(), 1);
    assert_eq!(published[0].ns, "/");
    assert_eq!(published[0].event, "broadcast-msg");
    assert_eq!(published[0].args_inner, "{\"n\":1}");
    assert!(published[0].rooms.is_empty());
    assert_eq!(published[0].except.iter().map(|r| r.to_string()).collect::<Vec<_>>(), vec![sid]);

    // One from another node is delivered here and not published again.
    srv.handle.deliver_from_cluster(ClusterBroadcast {
        ns: "/".into(),
        rooms: vec![],
        except: vec![],
        event: "from-afar".into(),
        args_inner: "2".into(),
        attachments: vec![],
    });
    ws_until(&mut ws, |t| t == "42[\"from-afar\",2]");
    assert_eq!(recorder.0.lock().unwrap().len(), 1);

    // A server-wide emit from outside any handler reaches local sockets and is published once.
    srv.handle.emit("/", "hello", &(1, "x"));
    ws_until(&mut ws, |t| t == "42[\"hello\",1,\"x\"]");
    let published = recorder.0.lock().unwrap().clone();
    assert_eq!(published.len(), 2);
    assert_eq!((published[1].event.as_str(), published[1].args_inner.as_str()), ("hello", "1,\"x\""));
}
