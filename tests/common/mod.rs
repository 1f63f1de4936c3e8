//! Helpers shared by the test suites that drive the release `sockeye` binary (`faults`, `abuse`):
//! the server process (free port, stopped by a guard even when an assertion fails), a raw
//! WebSocket client whose every byte is under the test's control, one-shot and kept-alive HTTP
//! requests, and reading a sample of `GET /metrics`.
#![allow(dead_code)] // each suite uses a different part

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

// ---------------------------------------------------------------------------------------------
// The server process
// ---------------------------------------------------------------------------------------------

pub struct Server {
    pub child: Child,
    pub pid: i32,
    pub port: u16,
    pub stderr: Arc<Mutex<String>>,
}

impl Server {
    /// `sockeye --host 127.0.0.1 --port 0 --cores 2` plus `args`; waits for its listening line.
    pub fn start(args: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sockeye"))
            .args(["--host", "127.0.0.1", "--port", "0", "--cores", "2"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start sockeye");
        let pid = i32::try_from(child.id()).expect("pid");
        let stderr = Arc::new(Mutex::new(String::new()));
        let err_pipe = child.stderr.take().expect("stderr");
        let sink = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err_pipe).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap_or_else(|p| p.into_inner());
                s.push_str(&line);
                s.push('\n');
            }
        });
        let out = child.stdout.take().expect("stdout");
        let (tx, rx) = crossbeam_channel::bounded(1);
        std::thread::spawn(move || {
            let mut lines = BufReader::new(out).lines();
            for line in lines.by_ref().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("sockeye listening on http://") {
                    let port = addr.rsplit(':').next().and_then(|p| p.parse::<u16>().ok());
                    let _ = tx.send(port);
                    break;
                }
            }
            // Keep draining so the server never blocks on a full pipe.
            for _ in lines {}
        });
        let mut server = Server { child, pid, port: 0, stderr };
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(Some(port)) => server.port = port,
            other => panic!("sockeye did not start ({other:?}); stderr:\n{}", server.stderr_text()),
        }
        server
    }

    pub fn stderr_text(&self) -> String {
        self.stderr.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Open descriptors of the server process.
    pub fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid)).map(|d| d.count()).unwrap_or(0)
    }

    /// Resident memory in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    pub fn assert_alive(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("sockeye exited ({status}); stderr:\n{}", self.stderr_text());
        }
    }

    /// Waits until the descriptor count is `want`; returns how long it took.
    pub fn wait_fds(&mut self, want: usize, within: Duration) -> Duration {
        let start = Instant::now();
        loop {
            let n = self.fds();
            if n == want {
                return start.elapsed();
            }
            self.assert_alive();
            assert!(start.elapsed() < within, "server holds {n} descriptors, want {want}, after {within:?}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The descriptor count once it has not changed for 300 ms.
    pub fn settled_fds(&self) -> usize {
        let mut last = self.fds();
        let mut since = Instant::now();
        let deadline = Instant::now() + Duration::from_secs(5);
        while since.elapsed() < Duration::from_millis(300) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
            let n = self.fds();
            if n != last {
                last = n;
                since = Instant::now();
            }
        }
        last
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the child we spawned and have not reaped; no memory involved.
        unsafe { libc::kill(self.pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// A raw WebSocket client
// ---------------------------------------------------------------------------------------------

pub const OP_TEXT: u8 = 1;
pub const OP_BINARY: u8 = 2;
pub const OP_CLOSE: u8 = 8;

pub struct Ws {
    pub s: TcpStream,
    pub buf: Vec<u8>,
}

pub fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// A connection whose receive buffer is `rcvbuf` bytes (set before connecting, so the window
/// stays small).
pub fn connect_small_rcvbuf(port: u16, rcvbuf: usize) -> TcpStream {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(rcvbuf).unwrap();
    sock.connect(&std::net::SocketAddr::from(([127, 0, 0, 1], port)).into()).expect("connect");
    let s: TcpStream = sock.into();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

pub fn micros_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

impl Ws {
    /// Sends the upgrade request for a new session on `s`; [`Ws::finish_open`] reads the answer.
    pub fn start_open(s: TcpStream) -> Ws {
        Ws::start_open_with(s, "", "")
    }

    /// Like [`Ws::start_open`], with `query` appended to the handshake's query string (`&a=b...`)
    /// and `headers` (complete `Name: value\r\n` lines) added to its head.
    pub fn start_open_with(mut s: TcpStream, query: &str, headers: &str) -> Ws {
        let head = format!(
            "GET /socket.io/?EIO=4&transport=websocket{query} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n{headers}\r\n"
        );
        s.write_all(head.as_bytes()).expect("write upgrade");
        Ws { s, buf: Vec::new() }
    }

    /// Reads the 101 and the open packet; returns the open packet.
    pub fn finish_open(&mut self) -> String {
        let end = loop {
            if let Some(p) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            self.fill().expect("read upgrade answer");
        };
        let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        self.buf.drain(..end);
        let open = self.text().expect("open packet");
        assert!(open.starts_with("0{"), "{open}");
        open
    }

    /// A WebSocket session connected to namespace `/`.
    pub fn session(s: TcpStream) -> Ws {
        let mut ws = Ws::start_open(s);
        ws.finish_open();
        ws.send_text("40");
        ws.text_until(|t| t.starts_with("40{"));
        ws
    }

    pub fn fill(&mut self) -> std::io::Result<()> {
        let mut chunk = [0u8; 16384];
        let n = self.s.read(&mut chunk)?;
        if n == 0 {
            return Err(ErrorKind::UnexpectedEof.into());
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    /// One frame as the client sends it (masked), any opcode, any payload.
    pub fn send(&mut self, op: u8, payload: &[u8]) {
        let mut f = vec![0x80 | op];
        let len = payload.len();
        if len < 126 {
            f.push(0x80 | len as u8);
        } else if len <= 0xffff {
            f.push(0x80 | 126);
            f.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            f.push(0x80 | 127);
            f.extend_from_slice(&(len as u64).to_be_bytes());
        }
        let mask = [0x12, 0x34, 0x56, 0x78];
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        let _ = self.s.write_all(&f);
    }

    pub fn send_text(&mut self, t: &str) {
        self.send(OP_TEXT, t.as_bytes());
    }

    /// The next frame from the server (unmasked): opcode and payload.
    pub fn frame(&mut self) -> std::io::Result<(u8, Vec<u8>)> {
        loop {
            if self.buf.len() >= 2 {
                let op = self.buf[0] & 0x0f;
                let (len, at) = match self.buf[1] & 0x7f {
                    126 if self.buf.len() >= 4 => {
                        (u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize, 4)
                    }
                    127 if self.buf.len() >= 10 => {
                        (u64::from_be_bytes(self.buf[2..10].try_into().unwrap()) as usize, 10)
                    }
                    126 | 127 => (usize::MAX, 0),
                    n => (n as usize, 2),
                };
                if len != usize::MAX && self.buf.len() >= at + len {
                    let payload = self.buf[at..at + len].to_vec();
                    self.buf.drain(..at + len);
                    return Ok((op, payload));
                }
            }
            self.fill()?;
        }
    }

    /// The next text frame.
    pub fn text(&mut self) -> std::io::Result<String> {
        loop {
            let (op, p) = self.frame()?;
            match op {
                OP_TEXT => return Ok(String::from_utf8_lossy(&p).into_owned()),
                OP_CLOSE => return Err(std::io::Error::other(format!("close frame {p:?}"))),
                _ => {}
            }
        }
    }

    /// Text frames until one satisfies `pred`, answering pings.
    pub fn text_until(&mut self, pred: impl Fn(&str) -> bool) -> String {
        loop {
            let t = self.text().expect("websocket read");
            if t == "2" {
                self.send_text("3");
            } else if pred(&t) {
                return t;
            }
        }
    }

    /// Sends `42[event,...]` with ack id 0 and returns the ack's arguments.
    pub fn call(&mut self, args: &str) -> Value {
        self.send_text(&format!("420{args}"));
        let ack = self.text_until(|t| t.starts_with("430"));
        serde_json::from_str(&ack[3..]).expect("ack json")
    }

    /// After a fault: the close frame's status code (None when the connection ended without one),
    /// then the end of the connection; panics if the connection stays open.
    pub fn close_code(&mut self) -> Option<u16> {
        loop {
            match self.frame() {
                Ok((OP_CLOSE, p)) => {
                    let code = (p.len() >= 2).then(|| u16::from_be_bytes([p[0], p[1]]));
                    self.expect_end();
                    return code;
                }
                Ok(_) => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    panic!("the server did not close the connection")
                }
                Err(_) => return None,
            }
        }
    }

    /// The server closes the TCP connection (EOF or reset) within the read timeout.
    pub fn expect_end(&mut self) {
        let mut chunk = [0u8; 4096];
        loop {
            match self.s.read(&mut chunk) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    panic!("the connection stays open after the close")
                }
                Err(_) => return,
            }
        }
    }
}

/// One HTTP/1.1 request on a kept-alive connection; returns (status, body).
pub fn http_on(
    s: &mut TcpStream,
    buf: &mut Vec<u8>,
    method: &str,
    target: &str,
    body: &[u8],
) -> (u16, String) {
    let head = format!("{method} {target} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n", body.len());
    s.write_all(head.as_bytes()).expect("write request");
    s.write_all(body).expect("write body");
    read_response(s, buf)
}

pub fn read_response(s: &mut TcpStream, buf: &mut Vec<u8>) -> (u16, String) {
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4) {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned())
                })
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            if buf.len() >= end + len {
                let body = String::from_utf8_lossy(&buf[end..end + len]).into_owned();
                buf.drain(..end + len);
                let status = head.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
                return (status, body);
            }
        }
        match s.read(&mut chunk) {
            Ok(0) => panic!("connection closed in a response: {:?}", String::from_utf8_lossy(buf)),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => panic!("reading a response: {e}"),
        }
    }
}

/// One request on a fresh connection (`Connection: close`); returns (status, body).
pub fn http(port: u16, method: &str, target: &str, body: &[u8]) -> (u16, String) {
    let mut s = connect(port);
    let head = format!(
        "{method} {target} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    let _ = s.write_all(body);
    read_response(&mut s, &mut Vec::new())
}

pub fn sid_of(open: &str) -> String {
    let v: Value = serde_json::from_str(&open[1..]).expect("open json");
    v["sid"].as_str().expect("sid").to_owned()
}

pub const POLL: &str = "/socket.io/?EIO=4&transport=polling";

/// The value of one sample of `GET /metrics` (`name` with its labels, as exposed), once it is
/// at least `min` (metrics may lag a loop turn), or the last value read after 2 s.
pub fn metric_at_least(port: u16, sample: &str, min: f64) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let (st, body) = http(port, "GET", "/metrics", b"");
        assert_eq!(st, 200, "{body}");
        let v = body
            .lines()
            .find_map(|l| l.strip_prefix(sample).and_then(|r| r.strip_prefix(' ')))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no sample {sample} in /metrics:\n{body}"));
        if v >= min || Instant::now() >= deadline {
            return v;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A chat session as user `name` (development mode), joined to `general`; returns it and the
/// texts of the room's history.
pub fn chat_user(port: u16, name: &str) -> (Ws, Vec<String>) {
    let mut ws = Ws::start_open(connect(port));
    ws.finish_open();
    ws.send_text(&format!(r#"40{{"username":"{name}"}}"#));
    ws.text_until(|t| t.starts_with("40{"));
    let ack = ws.call(r#"["join room",{"roomId":"general"}]"#);
    assert_eq!(ack[0]["success"], Value::Bool(true), "{ack}");
    let history = ack[0]["history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|m| m["text"].as_str().unwrap_or("").to_owned())
        .collect();
    (ws, history)
}

/// The next event named `event` on `ws` (other events are skipped); its first argument.
pub fn next_event(ws: &mut Ws, event: &str) -> Value {
    let prefix = format!("42[\"{event}\",");
    let t = ws.text_until(|t| t.starts_with(&prefix));
    let v: Value = serde_json::from_str(&t[2..]).expect("event json");
    v[1].clone()
}

pub fn say(ws: &mut Ws, text: &str) -> Value {
    ws.call(&format!(r#"["chat message",{{"roomId":"general","text":"{text}"}}]"#))[0].clone()
}
