//! The event loop: every client connection of a run in one thread on one mio `Poll`.
//!
//! A run goes through phases: Connecting (bounded concurrency) -> [Joining, rooms only] ->
//! Warmup -> Measure -> Drain (message scenarios) or Connecting -> Idle (connect scenario), then
//! Done. Each phase has a deadline, and the whole run a hard deadline, so the loop always ends.
//!
//! Write path: bytes are appended to a connection's output buffer, the connection is marked
//! dirty and all dirty connections are flushed once per loop turn; a partial write waits for
//! the next writable edge. Read path: a shared scratch buffer; only the unparsed tail of a read
//! is kept per connection. Pings (`2`) are answered on every connection in every phase.
//!
//! Framing: a WebSocket text message is an Engine.IO packet, or with `--raw` (fanout against a
//! plain WebSocket broadcast server) the bare bench object. Only the three places that depend
//! on it look at [`Framing`]: the upgrade request, the end of the handshake, and how a bench
//! message is wrapped and unwrapped; the scenario, pacing and statistics are the same code.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};
use serde_json::{Map, Value, json};

use crate::cli::{Args, Scenario};
use crate::hist::Histogram;
use crate::proto::{self, EioPacket, SioPacket};
use crate::seq::{Seen, SeqTracker};
use crate::sys;
use crate::ws;

/// A client that has not finished its handshake by then counts as failed.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for in-flight messages after the senders stop.
const DRAIN: Duration = Duration::from_secs(2);
/// How long rooms clients may take to get their `join` acks.
const JOIN_TIMEOUT: Duration = Duration::from_secs(30);
/// The most messages the pacer sends in one loop turn when it has fallen behind.
const MAX_SENDS_PER_TURN: u32 = 256;
const SWEEP_EVERY: Duration = Duration::from_millis(250);
/// Connection output buffers larger than this are released after they drain.
const OUT_SHRINK: usize = 64 * 1024;
const SCRATCH: usize = 256 * 1024;
/// A sender with more unsent bytes than this skips messages instead of buffering without bound.
const SENDER_OUT_LIMIT: usize = 16 << 20;
/// fds kept free for the poll instance, stdio and /proc reads.
const FD_RESERVE: u64 = 64;
const MAX_ERROR_KINDS: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Connecting,
    Joining,
    Warmup,
    Measure,
    Drain,
    Idle,
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Send,
    PhaseEnd(u64),
    Sweep,
}

/// What a WebSocket text message carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// An Engine.IO packet holding a Socket.IO packet (the bench contract).
    Eio,
    /// The bench object itself, `{"s":..,"t":..,"p":".."}`, and nothing else: the target is a
    /// plain WebSocket broadcast server. A client is connected once the upgrade is accepted;
    /// there are no Engine.IO pings (WebSocket pings are still answered).
    Raw,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Waiting,
    /// TCP, HTTP/WebSocket handshake and Engine.IO open, then Socket.IO CONNECT sent (raw
    /// framing: until the upgrade answer).
    Opening,
    Ready,
    Failed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ConnState {
    TcpConnecting,
    Upgrading,
    Ws,
    Http,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Req {
    Handshake,
    Get,
    Post,
}

struct Conn {
    id: u64,
    sock: mio::net::TcpStream,
    state: ConnState,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    out_pos: usize,
    dirty: bool,
    /// WebSocket: the accept value a correct server answers.
    ws_accept: String,
    /// WebSocket: a fragmented text message being collected (None when none is open).
    frag: Option<Vec<u8>>,
    /// Polling: the request this connection waits the response of.
    in_flight: Option<Req>,
    /// Polling: responses received on this connection (a closed keep-alive connection that
    /// already answered may be retried once).
    responses: u32,
}

struct Client {
    stage: Stage,
    conns: [Option<Conn>; 2],
    started: Instant,
    /// Engine.IO sid (polling query parameter).
    sid: Option<String>,
    /// The message stream this client receives: the room index, 0 for fanout.
    stream: usize,
    tracker: SeqTracker,
    /// Polling: packets for the next POST, separated by 0x1e.
    post_queue: Vec<u8>,
    /// Polling: body of the POST in flight, kept for one retry.
    post_in_flight: Vec<u8>,
    retries: u32,
    next_ack: u64,
    /// Echo: the outstanding request (ack id, send time).
    echo: Option<(u64, Instant)>,
    /// Rooms: ack id of the `join` request while it is outstanding.
    join_ack: Option<u64>,
}

struct Stream {
    members: u64,
    next_seq: u64,
    first_measured: u64,
    end_measured: u64,
}

struct Pacer {
    interval: Duration,
    next_at: Instant,
    /// (stream, sending client) in the order messages are sent.
    order: Vec<(usize, usize)>,
    cursor: usize,
}

/// What a run produced: scenario fields for the JSON line, success, and a summary for humans.
pub struct Outcome {
    pub fields: Map<String, Value>,
    pub error: Option<String>,
    pub summary: String,
}

pub struct Driver {
    args: Args,
    poll: Poll,
    clients: Vec<Client>,
    timers: BinaryHeap<Reverse<(Instant, Timer)>>,
    phase: Phase,
    phase_gen: u64,
    epoch: Instant,
    dirty: Vec<(usize, usize)>,
    scratch: Vec<u8>,
    rng: u64,
    next_conn_id: u64,
    polling: bool,
    framing: Framing,
    fds_per_client: u64,

    next_to_open: usize,
    in_progress: usize,
    in_open_more: bool,
    connected: usize,
    failed: usize,
    dropped: usize,
    connect_start: Instant,
    connect_deadline: Instant,
    connect_done: Option<Instant>,
    joins_pending: usize,
    hard_deadline: Instant,

    streams: Vec<Stream>,
    pacer: Option<Pacer>,
    padding: String,
    send_skipped: u64,
    max_send_lag: Duration,

    hist: Histogram,
    delivered: u64,
    duplicated: u64,
    reordered: u64,
    too_old: u64,
    expected: u64,
    sent: u64,
    round_trips: u64,
    measure_start: Option<Instant>,
    measure_end: Option<Instant>,
    finished_at: Option<Instant>,
    cpu_start: Option<u64>,
    cpu_end: Option<u64>,
    self_cpu_start: u64,
    self_cpu_end: u64,
    rss_before: Option<u64>,
    rss_after: Option<u64>,
    errors: BTreeMap<String, u64>,
    fatal: Option<String>,
    notes: Vec<String>,
    requested_clients: usize,
}

impl Driver {
    pub fn new(args: Args) -> io::Result<Driver> {
        let now = Instant::now();
        let polling = args.scenario == Scenario::Polling;
        let fds_per_client = if polling { 2 } else { 1 };
        let seed = (now.elapsed().as_nanos() as u64)
            ^ u64::from(std::process::id()).rotate_left(32)
            ^ std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0x9E37_79B9);
        let n = args.clients;
        // Connecting gets 30 s plus 10 ms per client: bounded, and enough for 10k clients.
        let connect_budget = Duration::from_secs(30) + Duration::from_millis(10 * n as u64);
        let hard_deadline = now
            + connect_budget
            + JOIN_TIMEOUT
            + Duration::from_secs_f64(args.warmup + args.duration)
            + DRAIN
            + Duration::from_secs(10);
        let pad_len = args.payload.saturating_sub(r#"{"s":1000,"t":12345678901,"p":""}"#.len());
        Ok(Driver {
            poll: Poll::new()?,
            clients: Vec::new(),
            timers: BinaryHeap::new(),
            phase: Phase::Connecting,
            phase_gen: 0,
            epoch: now,
            dirty: Vec::new(),
            scratch: vec![0; SCRATCH],
            rng: seed | 1,
            next_conn_id: 1,
            polling,
            framing: if args.raw { Framing::Raw } else { Framing::Eio },
            fds_per_client,
            next_to_open: 0,
            in_progress: 0,
            in_open_more: false,
            connected: 0,
            failed: 0,
            dropped: 0,
            connect_start: now,
            connect_deadline: now + connect_budget,
            connect_done: None,
            joins_pending: 0,
            hard_deadline,
            streams: Vec::new(),
            pacer: None,
            padding: "x".repeat(if args.scenario == Scenario::Echo { args.payload } else { pad_len }),
            send_skipped: 0,
            max_send_lag: Duration::ZERO,
            hist: Histogram::new(),
            delivered: 0,
            duplicated: 0,
            reordered: 0,
            too_old: 0,
            expected: 0,
            sent: 0,
            round_trips: 0,
            measure_start: None,
            measure_end: None,
            finished_at: None,
            cpu_start: None,
            cpu_end: None,
            self_cpu_start: 0,
            self_cpu_end: 0,
            rss_before: None,
            rss_after: None,
            errors: BTreeMap::new(),
            fatal: None,
            notes: Vec::new(),
            requested_clients: args.clients,
            args,
        })
    }

    fn rand(&mut self) -> u64 {
        // xorshift64*: masks and WebSocket nonces only need to differ, not be secret.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn now_ns(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_nanos() as u64
    }

    fn note_error(&mut self, kind: String) {
        if self.errors.len() < MAX_ERROR_KINDS || self.errors.contains_key(&kind) {
            *self.errors.entry(kind).or_insert(0) += 1;
        }
    }

    pub fn run(mut self) -> Outcome {
        let nofile = sys::raise_nofile();
        let fit = (nofile.saturating_sub(FD_RESERVE) / self.fds_per_client) as usize;
        if self.args.clients > fit {
            let msg = format!(
                "{} clients need {} file descriptors but RLIMIT_NOFILE is {nofile}: capped to {fit} clients",
                self.args.clients,
                self.args.clients as u64 * self.fds_per_client + FD_RESERVE
            );
            if self.args.scenario == Scenario::Rooms || fit == 0 {
                return self.outcome_error(msg);
            }
            eprintln!("sockeye-bench: {msg}");
            self.notes.push(msg);
            self.args.clients = fit;
        }
        self.setup_clients();
        if let Some(pid) = self.args.server_pid {
            self.rss_before = sys::process_rss_kb(pid);
            if self.args.scenario == Scenario::Connect {
                self.cpu_start = sys::process_cpu_us(pid);
            }
        }
        let now = Instant::now();
        self.connect_start = now;
        self.push_timer(now + SWEEP_EVERY, Timer::Sweep);
        self.open_more(now);
        self.flush_dirty();

        let mut events = Events::with_capacity(1024);
        while self.phase != Phase::Done {
            let now = Instant::now();
            if now >= self.hard_deadline {
                self.fatal.get_or_insert_with(|| "run passed its hard deadline".into());
                break;
            }
            let mut timeout = self.hard_deadline - now;
            if let Some(Reverse((at, _))) = self.timers.peek() {
                timeout = timeout.min(at.saturating_duration_since(now));
            }
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                self.fatal = Some(format!("poll failed: {e}"));
                break;
            }
            for ev in events.iter() {
                let ci = ev.token().0 >> 1;
                let slot = ev.token().0 & 1;
                if ev.is_writable() || ev.is_error() || ev.is_write_closed() {
                    self.on_writable(ci, slot);
                }
                if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                    self.on_readable(ci, slot, ev.is_read_closed() || ev.is_error());
                }
            }
            self.run_timers(Instant::now());
            self.flush_dirty();
        }
        self.report()
    }

    fn setup_clients(&mut self) {
        let n = self.args.clients;
        let now = Instant::now();
        self.clients = (0..n)
            .map(|_| Client {
                stage: Stage::Waiting,
                conns: [None, None],
                started: now,
                sid: None,
                stream: 0,
                tracker: SeqTracker::default(),
                post_queue: Vec::new(),
                post_in_flight: Vec::new(),
                retries: 0,
                next_ack: 1,
                echo: None,
                join_ack: None,
            })
            .collect();
        match self.args.scenario {
            Scenario::Rooms => {
                let mut ci = 0;
                for &(count, members) in &self.args.rooms.clone() {
                    for _ in 0..count {
                        let room = self.streams.len();
                        for _ in 0..members {
                            self.clients[ci].stream = room;
                            ci += 1;
                        }
                        self.streams.push(Stream::new(members as u64));
                    }
                }
            }
            _ => self.streams.push(Stream::new(n as u64)),
        }
    }

    // ---- timers and phases ----

    fn push_timer(&mut self, at: Instant, t: Timer) {
        self.timers.push(Reverse((at, t)));
    }

    fn schedule_phase_end(&mut self, at: Instant) {
        self.phase_gen += 1;
        self.push_timer(at, Timer::PhaseEnd(self.phase_gen));
    }

    fn run_timers(&mut self, now: Instant) {
        // Bounded: each pass pops one due timer; timers pushed while handling are in the future
        // except a zero-length phase, which moves the phase on (and phases only go forward).
        let mut budget = 1024;
        while budget > 0 {
            budget -= 1;
            match self.timers.peek() {
                Some(Reverse((at, _))) if *at <= now => {}
                _ => break,
            }
            let Some(Reverse((_, timer))) = self.timers.pop() else { break };
            match timer {
                Timer::Sweep => self.sweep(now),
                Timer::Send => self.on_send_timer(),
                Timer::PhaseEnd(g) if g == self.phase_gen => self.on_phase_end(now),
                Timer::PhaseEnd(_) => {}
            }
        }
    }

    fn sweep(&mut self, now: Instant) {
        if self.phase == Phase::Connecting {
            for ci in 0..self.clients.len() {
                let c = &self.clients[ci];
                if c.stage == Stage::Opening && now.duration_since(c.started) > HANDSHAKE_TIMEOUT {
                    self.fail_client(ci, "handshake timeout (10 s)".into());
                }
            }
            if now >= self.connect_deadline {
                for ci in 0..self.clients.len() {
                    if matches!(self.clients[ci].stage, Stage::Opening | Stage::Waiting) {
                        self.fail_client(ci, "connect phase deadline".into());
                    }
                }
                self.next_to_open = self.clients.len();
                self.check_connected(now);
            }
        }
        if self.phase == Phase::Joining && now >= self.connect_deadline {
            self.finish_with_error(format!(
                "{} join acks missing after {JOIN_TIMEOUT:?}",
                self.joins_pending
            ));
        }
        if self.phase != Phase::Done {
            self.push_timer(now + SWEEP_EVERY, Timer::Sweep);
        }
    }

    fn on_phase_end(&mut self, now: Instant) {
        match self.phase {
            Phase::Warmup => self.start_measure(now),
            Phase::Measure => self.end_measure(now),
            Phase::Drain => self.finish(now),
            Phase::Idle => {
                if let Some(pid) = self.args.server_pid {
                    self.rss_after = sys::process_rss_kb(pid);
                }
                self.finish(now);
            }
            _ => {}
        }
    }

    fn check_connected(&mut self, now: Instant) {
        if self.phase != Phase::Connecting || self.connected + self.failed < self.clients.len() {
            return;
        }
        self.connect_done = Some(now);
        if self.args.scenario == Scenario::Connect {
            if let Some(pid) = self.args.server_pid {
                self.cpu_end = sys::process_cpu_us(pid);
            }
            self.phase = Phase::Idle;
            let hold = Duration::from_secs_f64(self.args.duration);
            self.schedule_phase_end(now + hold);
            return;
        }
        if self.failed > 0 {
            let first = self.errors.keys().next().cloned().unwrap_or_default();
            self.finish_with_error(format!(
                "{} of {} clients failed to connect (first error: {first})",
                self.failed,
                self.clients.len()
            ));
            return;
        }
        if self.args.scenario == Scenario::Rooms {
            self.phase = Phase::Joining;
            self.connect_deadline = now + JOIN_TIMEOUT;
            self.joins_pending = self.clients.len();
            for ci in 0..self.clients.len() {
                let id = self.clients[ci].next_ack;
                self.clients[ci].next_ack += 1;
                self.clients[ci].join_ack = Some(id);
                let pkt = format!("42{id}[\"join\",\"r{}\"]", self.clients[ci].stream);
                self.send_eio(ci, pkt.as_bytes());
            }
            return;
        }
        self.start_warmup(now);
    }

    fn start_warmup(&mut self, now: Instant) {
        self.phase = Phase::Warmup;
        match self.args.scenario {
            Scenario::Echo => {
                for ci in 0..self.clients.len() {
                    self.send_echo(ci, now);
                }
            }
            Scenario::Fanout | Scenario::Polling | Scenario::Rooms => {
                let order = if self.args.scenario == Scenario::Rooms {
                    // Interleave rooms so each room gets rate/rooms, spread evenly in time.
                    let mut members: Vec<Vec<usize>> = vec![Vec::new(); self.streams.len()];
                    for (ci, c) in self.clients.iter().enumerate() {
                        members[c.stream].push(ci);
                    }
                    let r = self.streams.len();
                    (0..r * self.args.senders).map(|j| (j % r, members[j % r][j / r])).collect()
                } else {
                    vec![(0, 0)]
                };
                self.pacer = Some(Pacer {
                    interval: Duration::from_secs_f64(1.0 / self.args.rate),
                    next_at: now,
                    order,
                    cursor: 0,
                });
                self.push_timer(now, Timer::Send);
            }
            Scenario::Connect => {}
        }
        self.schedule_phase_end(now + Duration::from_secs_f64(self.args.warmup));
    }

    fn start_measure(&mut self, now: Instant) {
        self.phase = Phase::Measure;
        self.measure_start = Some(now);
        for s in &mut self.streams {
            s.first_measured = s.next_seq;
        }
        if let Some(pid) = self.args.server_pid {
            self.cpu_start = sys::process_cpu_us(pid);
        }
        self.self_cpu_start = sys::self_cpu_us();
        self.schedule_phase_end(now + Duration::from_secs_f64(self.args.duration));
    }

    fn end_measure(&mut self, now: Instant) {
        self.measure_end = Some(now);
        self.pacer = None;
        for s in &mut self.streams {
            s.end_measured = s.next_seq;
            let n = s.end_measured - s.first_measured;
            self.sent += n;
            self.expected += n * s.members;
        }
        if self.args.scenario == Scenario::Echo {
            self.finish(now);
            return;
        }
        self.phase = Phase::Drain;
        self.schedule_phase_end(now + DRAIN);
        if self.delivered >= self.expected {
            self.finish(now);
        }
    }

    fn finish(&mut self, now: Instant) {
        if self.phase == Phase::Done {
            return;
        }
        if self.args.scenario != Scenario::Connect {
            if let Some(pid) = self.args.server_pid {
                self.cpu_end = sys::process_cpu_us(pid);
            }
            self.self_cpu_end = sys::self_cpu_us();
        }
        self.finished_at = Some(now);
        self.phase = Phase::Done;
    }

    fn finish_with_error(&mut self, msg: String) {
        self.fatal.get_or_insert(msg);
        self.finish(Instant::now());
    }

    // ---- sending ----

    fn on_send_timer(&mut self) {
        if !matches!(self.phase, Phase::Warmup | Phase::Measure) {
            return;
        }
        let mut sent = 0;
        loop {
            let now = Instant::now();
            let Some(p) = self.pacer.as_mut() else { return };
            if p.next_at > now {
                let at = p.next_at;
                self.push_timer(at, Timer::Send);
                return;
            }
            if sent == MAX_SENDS_PER_TURN {
                // Behind schedule: let the loop read before sending more.
                let lag = now - p.next_at;
                self.max_send_lag = self.max_send_lag.max(lag);
                self.push_timer(now, Timer::Send);
                return;
            }
            let (stream, ci) = p.order[p.cursor];
            p.cursor = (p.cursor + 1) % p.order.len();
            p.next_at += p.interval;
            sent += 1;
            self.send_bench(stream, ci, now);
        }
    }

    /// Bytes waiting to go out for client `ci` (WebSocket output buffer or polling queue).
    fn pending_out(&self, ci: usize) -> usize {
        let c = &self.clients[ci];
        let ws = c.conns[0].as_ref().map_or(0, |k| k.out.len() - k.out_pos);
        ws + c.post_queue.len()
    }

    fn send_bench(&mut self, stream: usize, ci: usize, now: Instant) {
        // A sender that is gone, or whose server stopped reading (output over the limit), skips
        // the message: it is neither sent nor expected, and `send_skipped` counts it.
        if self.clients[ci].stage != Stage::Ready || self.pending_out(ci) > SENDER_OUT_LIMIT {
            self.send_skipped += 1;
            return;
        }
        let seq = self.streams[stream].next_seq;
        self.streams[stream].next_seq += 1;
        let t = self.now_ns(now);
        let room = (self.args.scenario == Scenario::Rooms).then_some(stream);
        let msg = bench_message(self.framing, room, seq, t, &self.padding);
        match self.framing {
            Framing::Eio => self.send_eio(ci, msg.as_bytes()),
            Framing::Raw => self.send_ws_text(ci, msg.as_bytes()),
        }
    }

    fn send_echo(&mut self, ci: usize, now: Instant) {
        if self.clients[ci].stage != Stage::Ready {
            return;
        }
        let id = self.clients[ci].next_ack;
        self.clients[ci].next_ack += 1;
        self.clients[ci].echo = Some((id, now));
        let pkt = format!(r#"42{id}["echo","{}"]"#, self.padding);
        self.send_eio(ci, pkt.as_bytes());
    }

    /// Sends one Engine.IO packet: a masked text frame, or the next POST's payload.
    fn send_eio(&mut self, ci: usize, pkt: &[u8]) {
        if self.polling {
            let q = &mut self.clients[ci].post_queue;
            if !q.is_empty() {
                q.push(0x1e);
            }
            q.extend_from_slice(pkt);
            self.kick_post(ci);
            return;
        }
        self.send_ws_text(ci, pkt);
    }

    /// Queues one WebSocket text message (a masked frame) on the client's connection.
    fn send_ws_text(&mut self, ci: usize, msg: &[u8]) {
        let mask = (self.rand() as u32).to_ne_bytes();
        let Some(conn) = self.clients[ci].conns[0].as_mut() else { return };
        ws::encode_frame(&mut conn.out, ws::OP_TEXT, msg, mask);
        if !conn.dirty {
            conn.dirty = true;
            self.dirty.push((ci, 0));
        }
    }

    fn queue_raw(&mut self, ci: usize, slot: usize, bytes: &[u8]) {
        let Some(conn) = self.clients[ci].conns[slot].as_mut() else { return };
        conn.out.extend_from_slice(bytes);
        if !conn.dirty {
            conn.dirty = true;
            self.dirty.push((ci, slot));
        }
    }

    fn flush_dirty(&mut self) {
        let dirty = std::mem::take(&mut self.dirty);
        for &(ci, slot) in &dirty {
            if let Some(c) = self.clients[ci].conns[slot].as_mut() {
                c.dirty = false;
            }
            self.flush(ci, slot);
        }
        let mut dirty = dirty;
        dirty.clear();
        if self.dirty.is_empty() {
            self.dirty = dirty;
        }
    }

    fn flush(&mut self, ci: usize, slot: usize) {
        let Some(conn) = self.clients[ci].conns[slot].as_mut() else { return };
        if conn.state == ConnState::TcpConnecting {
            return;
        }
        while conn.out_pos < conn.out.len() {
            match conn.sock.write(&conn.out[conn.out_pos..]) {
                Ok(0) => {
                    self.conn_lost(ci, slot, "write returned 0".into());
                    return;
                }
                Ok(n) => conn.out_pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.conn_lost(ci, slot, format!("write: {}", e.kind()));
                    return;
                }
            }
        }
        conn.out.clear();
        conn.out_pos = 0;
        if conn.out.capacity() > OUT_SHRINK {
            conn.out = Vec::new();
        }
    }

    // ---- opening connections ----

    fn open_more(&mut self, now: Instant) {
        if self.in_open_more {
            return;
        }
        self.in_open_more = true;
        while self.phase == Phase::Connecting
            && self.in_progress < self.args.concurrency
            && self.next_to_open < self.clients.len()
        {
            let ci = self.next_to_open;
            self.next_to_open += 1;
            self.in_progress += 1;
            self.clients[ci].stage = Stage::Opening;
            self.clients[ci].started = now;
            let res = if self.polling {
                self.kick_get(ci, Req::Handshake)
            } else {
                self.open_conn(ci, 0).map(|()| {
                    let key =
                        ws::key_for((u128::from(self.rand()) << 64 | u128::from(self.rand())).to_ne_bytes());
                    let pq = match self.framing {
                        Framing::Eio => format!("{}?EIO=4&transport=websocket", self.args.path),
                        Framing::Raw => self.args.path.clone(),
                    };
                    let req = ws::upgrade_request(&self.args.host, &pq, &key);
                    let conn = self.clients[ci].conns[0].as_mut().expect("just opened");
                    conn.ws_accept = ws::accept_for(&key);
                    self.queue_raw(ci, 0, req.as_bytes());
                })
            };
            if let Err(e) = res {
                self.fail_client(ci, format!("connect: {e}"));
            }
        }
        self.in_open_more = false;
        self.check_connected(now);
    }

    fn open_conn(&mut self, ci: usize, slot: usize) -> io::Result<()> {
        let src = sys::source_addr(&self.args.target, self.args.source_ips, self.next_conn_id as usize - 1);
        let mut sock = sys::start_connect(self.args.target, src)?;
        self.poll.registry().register(
            &mut sock,
            Token(ci * 2 + slot),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        let id = self.next_conn_id;
        self.next_conn_id += 1;
        self.clients[ci].conns[slot] = Some(Conn {
            id,
            sock,
            state: ConnState::TcpConnecting,
            inbuf: Vec::new(),
            out: Vec::new(),
            out_pos: 0,
            dirty: false,
            ws_accept: String::new(),
            frag: None,
            in_flight: None,
            responses: 0,
        });
        Ok(())
    }

    fn drop_conn(&mut self, ci: usize, slot: usize) {
        if let Some(mut c) = self.clients[ci].conns[slot].take() {
            let _ = self.poll.registry().deregister(&mut c.sock);
        }
    }

    fn on_writable(&mut self, ci: usize, slot: usize) {
        let Some(conn) = self.clients.get_mut(ci).and_then(|c| c.conns[slot].as_mut()) else { return };
        if conn.state == ConnState::TcpConnecting {
            match conn.sock.take_error() {
                Ok(None) => {}
                Ok(Some(e)) | Err(e) => {
                    self.conn_lost(ci, slot, format!("connect: {}", e.kind()));
                    return;
                }
            }
            match conn.sock.peer_addr() {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                Err(e) => {
                    self.conn_lost(ci, slot, format!("connect: {}", e.kind()));
                    return;
                }
            }
            conn.state = if self.polling { ConnState::Http } else { ConnState::Upgrading };
        }
        self.flush(ci, slot);
    }

    // ---- reading ----

    /// Edge-triggered: reads until the socket is drained, which a short read already proves for
    /// TCP (data arriving later raises a new edge), so the usual extra WouldBlock read is
    /// skipped unless the peer closed (`until_eof`), where only a read of 0 shows the end.
    /// Bounded by what the kernel has buffered.
    fn on_readable(&mut self, ci: usize, slot: usize, until_eof: bool) {
        loop {
            let Some(conn) = self.clients.get_mut(ci).and_then(|c| c.conns[slot].as_mut()) else { return };
            if conn.state == ConnState::TcpConnecting {
                return;
            }
            let id = conn.id;
            match conn.sock.read(&mut self.scratch) {
                Ok(0) => {
                    self.on_eof(ci, slot);
                    return;
                }
                Ok(n) => {
                    let at = Instant::now();
                    if conn.inbuf.is_empty() {
                        let data = std::mem::take(&mut self.scratch);
                        let used = self.process(ci, slot, &data[..n], at);
                        if let Some(c) = self.conn_if(ci, slot, id) {
                            c.inbuf.extend_from_slice(&data[used..n]);
                        }
                        self.scratch = data;
                    } else {
                        conn.inbuf.extend_from_slice(&self.scratch[..n]);
                        let mut buf = std::mem::take(&mut conn.inbuf);
                        let used = self.process(ci, slot, &buf, at);
                        if let Some(c) = self.conn_if(ci, slot, id) {
                            buf.drain(..used);
                            c.inbuf = buf;
                        }
                    }
                    if n < SCRATCH && !until_eof {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.conn_lost(ci, slot, format!("read: {}", e.kind()));
                    return;
                }
            }
        }
    }

    fn conn_if(&mut self, ci: usize, slot: usize, id: u64) -> Option<&mut Conn> {
        self.clients[ci].conns[slot].as_mut().filter(|c| c.id == id)
    }

    /// Parses as much of `data` as is complete; returns how many bytes were used.
    fn process(&mut self, ci: usize, slot: usize, data: &[u8], at: Instant) -> usize {
        let Some(id) = self.clients[ci].conns[slot].as_ref().map(|c| c.id) else { return data.len() };
        let mut pos = 0;
        loop {
            let Some(conn) = self.conn_if(ci, slot, id) else { return data.len() };
            let rest = &data[pos..];
            if rest.is_empty() {
                return pos;
            }
            match conn.state {
                ConnState::TcpConnecting => return data.len(),
                ConnState::Upgrading => match proto::parse_upgrade_response(rest) {
                    Ok(None) => return pos,
                    Ok(Some(r)) => {
                        if r.status != 101 {
                            self.fail_client(ci, format!("websocket upgrade answered HTTP {}", r.status));
                            return data.len();
                        }
                        if r.accept.as_deref() != Some(conn.ws_accept.as_str()) {
                            self.fail_client(ci, "wrong Sec-WebSocket-Accept".into());
                            return data.len();
                        }
                        conn.state = ConnState::Ws;
                        pos += r.consumed;
                        // Plain WebSocket has nothing after the upgrade; Engine.IO waits for
                        // its open packet and the Socket.IO CONNECT answer.
                        if self.framing == Framing::Raw {
                            self.on_connected(ci, at);
                        }
                    }
                    Err(e) => {
                        self.fail_client(ci, e);
                        return data.len();
                    }
                },
                ConnState::Ws => match ws::decode_frame(rest) {
                    Ok(None) => return pos,
                    Ok(Some(head)) => {
                        pos += head.payload_end;
                        let payload = &rest[head.payload_start..head.payload_end];
                        if let Some(mask) = head.mask {
                            let mut p = payload.to_vec();
                            ws::apply_mask(&mut p, mask);
                            self.on_frame(ci, head, &p, at);
                        } else {
                            self.on_frame(ci, head, payload, at);
                        }
                    }
                    Err(e) => {
                        self.fail_client(ci, format!("bad websocket frame: {e:?}"));
                        return data.len();
                    }
                },
                ConnState::Http => match proto::parse_http_response(rest) {
                    Ok(None) => return pos,
                    Ok(Some(resp)) => {
                        pos += resp.consumed;
                        self.on_http_response(ci, slot, resp, at);
                    }
                    Err(e) => {
                        self.fail_client(ci, e);
                        return data.len();
                    }
                },
            }
        }
    }

    fn on_frame(&mut self, ci: usize, head: ws::FrameHead, payload: &[u8], at: Instant) {
        match head.opcode {
            ws::OP_TEXT if head.fin => self.on_ws_text(ci, payload, at),
            ws::OP_TEXT | ws::OP_BINARY => {
                if let Some(c) = self.clients[ci].conns[0].as_mut() {
                    // Binary messages are not part of the contract; collect text only.
                    c.frag = (head.opcode == ws::OP_TEXT).then(|| payload.to_vec());
                }
            }
            ws::OP_CONTINUATION => {
                let Some(c) = self.clients[ci].conns[0].as_mut() else { return };
                if let Some(f) = c.frag.as_mut() {
                    if f.len() + payload.len() > ws::MAX_FRAME_PAYLOAD as usize {
                        self.fail_client(ci, "fragmented message over 16 MiB".into());
                        return;
                    }
                    f.extend_from_slice(payload);
                }
                if head.fin
                    && let Some(msg) = c.frag.take()
                {
                    self.on_ws_text(ci, &msg, at);
                }
            }
            ws::OP_CLOSE => self.close_client(ci, "server sent a websocket close frame"),
            ws::OP_PING => {
                let mask = (self.rand() as u32).to_ne_bytes();
                if let Some(c) = self.clients[ci].conns[0].as_mut() {
                    ws::encode_frame(&mut c.out, ws::OP_PONG, payload, mask);
                    if !c.dirty {
                        c.dirty = true;
                        self.dirty.push((ci, 0));
                    }
                }
            }
            _ => {}
        }
    }

    fn on_http_response(&mut self, ci: usize, slot: usize, resp: proto::HttpResponse, at: Instant) {
        let Some(conn) = self.clients[ci].conns[slot].as_mut() else { return };
        let Some(req) = conn.in_flight.take() else {
            self.fail_client(ci, "HTTP response without a request".into());
            return;
        };
        conn.responses += 1;
        if resp.close {
            self.drop_conn(ci, slot);
        }
        if resp.status != 200 {
            let body = snippet(&resp.body);
            self.fail_client(ci, format!("polling {req:?} answered HTTP {}: {body}", resp.status));
            return;
        }
        self.clients[ci].retries = 0;
        match req {
            Req::Handshake | Req::Get => {
                for pkt in proto::split_payload(&resp.body) {
                    self.on_eio(ci, pkt, at);
                    if self.clients[ci].stage == Stage::Failed {
                        return;
                    }
                }
                if let Err(e) = self.kick_get(ci, Req::Get) {
                    self.fail_client(ci, format!("connect: {e}"));
                }
            }
            Req::Post => {
                self.clients[ci].post_in_flight.clear();
                self.kick_post(ci);
            }
        }
    }

    fn on_eof(&mut self, ci: usize, slot: usize) {
        self.conn_lost(ci, slot, "server closed the connection".into());
    }

    /// A connection ended (EOF or error). WebSocket: the client is gone. Polling: an idle
    /// keep-alive connection is just dropped (reopened on demand); one with a request in flight
    /// that had answered before is retried once, since the server may have closed it idle just
    /// as we sent.
    fn conn_lost(&mut self, ci: usize, slot: usize, why: String) {
        let Some(conn) = self.clients[ci].conns[slot].as_ref() else { return };
        if !self.polling {
            self.close_client(ci, &why);
            return;
        }
        let in_flight = conn.in_flight;
        let reused = conn.responses > 0;
        self.drop_conn(ci, slot);
        let Some(req) = in_flight else { return };
        if !reused || self.clients[ci].retries > 0 {
            self.close_client(ci, &why);
            return;
        }
        self.clients[ci].retries += 1;
        let res = match req {
            Req::Post => {
                let body = std::mem::take(&mut self.clients[ci].post_in_flight);
                let q = std::mem::take(&mut self.clients[ci].post_queue);
                let mut merged = body;
                if !q.is_empty() {
                    merged.push(0x1e);
                    merged.extend_from_slice(&q);
                }
                self.clients[ci].post_queue = merged;
                self.kick_post(ci);
                Ok(())
            }
            r => self.kick_get(ci, r),
        };
        if let Err(e) = res {
            self.fail_client(ci, format!("reconnect: {e}"));
        }
    }

    // ---- polling requests ----

    fn polling_target(&self, ci: usize) -> String {
        match &self.clients[ci].sid {
            Some(sid) => {
                format!("{}?EIO=4&transport=polling&sid={}", self.args.path, proto::query_escape(sid))
            }
            None => format!("{}?EIO=4&transport=polling", self.args.path),
        }
    }

    /// Issues the long-poll GET on slot 0 unless one is pending; opens the connection if needed.
    fn kick_get(&mut self, ci: usize, req: Req) -> io::Result<()> {
        if self.clients[ci].stage == Stage::Failed || self.phase == Phase::Done {
            return Ok(());
        }
        if self.clients[ci].conns[0].is_none() {
            self.open_conn(ci, 0)?;
        }
        let conn = self.clients[ci].conns[0].as_mut().expect("opened above");
        if conn.in_flight.is_some() {
            return Ok(());
        }
        conn.in_flight = Some(req);
        let target = self.polling_target(ci);
        let head =
            format!("GET {target} HTTP/1.1\r\nHost: {}\r\nConnection: keep-alive\r\n\r\n", self.args.host);
        self.queue_raw(ci, 0, head.as_bytes());
        Ok(())
    }

    /// Sends the queued packets as one POST on slot 1 if none is in flight (Engine.IO allows
    /// one POST at a time per session).
    fn kick_post(&mut self, ci: usize) {
        let c = &self.clients[ci];
        if c.post_queue.is_empty() || c.sid.is_none() || c.stage == Stage::Failed {
            return;
        }
        if c.conns[1].is_none()
            && let Err(e) = self.open_conn(ci, 1)
        {
            self.fail_client(ci, format!("connect: {e}"));
            return;
        }
        let conn = self.clients[ci].conns[1].as_mut().expect("opened above");
        if conn.in_flight.is_some() {
            return;
        }
        conn.in_flight = Some(Req::Post);
        let body = std::mem::take(&mut self.clients[ci].post_queue);
        let target = self.polling_target(ci);
        let mut req = format!(
            "POST {target} HTTP/1.1\r\nHost: {}\r\nConnection: keep-alive\r\nContent-Type: text/plain;charset=UTF-8\r\nContent-Length: {}\r\n\r\n",
            self.args.host,
            body.len()
        )
        .into_bytes();
        req.extend_from_slice(&body);
        self.clients[ci].post_in_flight = body;
        self.queue_raw(ci, 1, &req);
    }

    // ---- messages: Engine.IO / Socket.IO, or raw ----

    /// One complete WebSocket text message, read as the run's framing.
    fn on_ws_text(&mut self, ci: usize, msg: &[u8], at: Instant) {
        match self.framing {
            Framing::Eio => self.on_eio(ci, msg, at),
            Framing::Raw => match proto::sample_object(msg) {
                Some((seq, t)) => self.on_delivery(ci, seq, t, at),
                None => self.on_bad_sample("raw message without s/t"),
            },
        }
    }

    /// The client finished its handshake (Socket.IO CONNECT answered, or with raw framing the
    /// WebSocket upgrade accepted).
    fn on_connected(&mut self, ci: usize, at: Instant) {
        if self.clients[ci].stage == Stage::Opening {
            self.clients[ci].stage = Stage::Ready;
            self.in_progress -= 1;
            self.connected += 1;
            self.open_more(at);
        }
    }

    fn on_eio(&mut self, ci: usize, pkt: &[u8], at: Instant) {
        match proto::parse_eio(pkt) {
            EioPacket::Open(json) => {
                let Some(sid) = proto::json_sid(json) else {
                    self.fail_client(ci, "engine.io open packet without sid".into());
                    return;
                };
                self.clients[ci].sid = Some(sid);
                // Socket.IO CONNECT to the default namespace.
                self.send_eio(ci, b"40");
            }
            EioPacket::Ping(data) => {
                let mut pong = Vec::with_capacity(1 + data.len());
                pong.push(b'3');
                pong.extend_from_slice(data);
                self.send_eio(ci, &pong);
            }
            EioPacket::Close => self.close_client(ci, "server sent engine.io close"),
            EioPacket::Message(msg) => self.on_sio(ci, msg, at),
            EioPacket::Pong | EioPacket::Upgrade | EioPacket::Noop | EioPacket::Other => {}
        }
    }

    fn on_sio(&mut self, ci: usize, msg: &[u8], at: Instant) {
        match proto::parse_sio(msg) {
            SioPacket::Connect(_) => self.on_connected(ci, at),
            SioPacket::ConnectError(data) => {
                let d = snippet(data);
                self.fail_client(ci, format!("socket.io connect error: {d}"));
            }
            SioPacket::Disconnect => self.close_client(ci, "server sent socket.io disconnect"),
            SioPacket::Event { data, .. } => {
                if let Some((name, rest)) = proto::event_name(data)
                    && (name == b"bench" || name == b"bench-room")
                {
                    match proto::sample(rest) {
                        Some((seq, t)) => self.on_delivery(ci, seq, t, at),
                        None => self.on_bad_sample("bench event without s/t"),
                    }
                }
            }
            SioPacket::Ack { id, .. } => self.on_ack(ci, id, at),
            SioPacket::Other => {}
        }
    }

    /// A received bench message that carries no sample (counted in `errors` while measuring).
    fn on_bad_sample(&mut self, kind: &str) {
        if matches!(self.phase, Phase::Measure | Phase::Drain | Phase::Warmup) {
            self.note_error(kind.into());
        }
    }

    /// Client `ci` received sample `seq` of its stream, sent at `t` (ns since the epoch).
    fn on_delivery(&mut self, ci: usize, seq: u64, t: u64, at: Instant) {
        if !matches!(self.phase, Phase::Measure | Phase::Drain | Phase::Warmup) {
            return;
        }
        let c = &mut self.clients[ci];
        let s = &self.streams[c.stream];
        if seq < s.first_measured || seq >= s.end_measured {
            return;
        }
        match c.tracker.observe(seq) {
            Seen::New { reordered } => {
                self.delivered += 1;
                self.reordered += u64::from(reordered);
                let now_ns = at.saturating_duration_since(self.epoch).as_nanos() as u64;
                self.hist.record(now_ns.saturating_sub(t));
            }
            Seen::Duplicate => self.duplicated += 1,
            Seen::TooOld => {
                self.delivered += 1;
                self.reordered += 1;
                self.too_old += 1;
            }
        }
        if self.phase == Phase::Drain && self.delivered >= self.expected {
            self.finish(at);
        }
    }

    fn on_ack(&mut self, ci: usize, id: u64, at: Instant) {
        let c = &mut self.clients[ci];
        if c.join_ack == Some(id) {
            c.join_ack = None;
            self.joins_pending -= 1;
            if self.joins_pending == 0 && self.phase == Phase::Joining {
                self.start_warmup(at);
            }
            return;
        }
        let Some((want, sent_at)) = c.echo else { return };
        if want != id {
            return;
        }
        c.echo = None;
        if self.phase == Phase::Measure && self.measure_start.is_some_and(|m| sent_at >= m) {
            self.round_trips += 1;
            self.hist.record(at.saturating_duration_since(sent_at).as_nanos() as u64);
        }
        if matches!(self.phase, Phase::Warmup | Phase::Measure) {
            self.send_echo(ci, Instant::now());
        }
    }

    fn close_client(&mut self, ci: usize, why: &str) {
        self.fail_client(ci, why.to_string());
    }

    /// The client is gone for the rest of the run (failed to open, or closed later).
    fn fail_client(&mut self, ci: usize, why: String) {
        let stage = self.clients[ci].stage;
        if stage == Stage::Failed {
            return;
        }
        self.drop_conn(ci, 0);
        self.drop_conn(ci, 1);
        self.clients[ci].stage = Stage::Failed;
        match stage {
            Stage::Opening | Stage::Waiting => {
                if stage == Stage::Opening {
                    self.in_progress -= 1;
                }
                self.failed += 1;
                self.note_error(why);
                self.open_more(Instant::now());
            }
            Stage::Ready => {
                self.dropped += 1;
                self.note_error(format!("after connect: {why}"));
                if self.clients[ci].join_ack.take().is_some() {
                    self.joins_pending -= 1;
                    if self.phase == Phase::Joining {
                        self.finish_with_error(format!("client {ci} closed before its join ack: {why}"));
                    }
                }
                self.clients[ci].echo = None;
            }
            Stage::Failed => {}
        }
    }

    // ---- report ----

    fn outcome_error(&self, msg: String) -> Outcome {
        Outcome { fields: Map::new(), error: Some(msg.clone()), summary: format!("failed: {msg}") }
    }

    fn report(mut self) -> Outcome {
        let mut f = Map::new();
        let a = &self.args;
        f.insert("clients".into(), json!(self.clients.len()));
        f.insert("connected".into(), json!(self.connected));
        let summary;
        let lat = |h: &Histogram| {
            let us = |ns: u64| (ns as f64 / 100.0).round() / 10.0;
            json!({
                "p50": us(h.quantile(0.50)),
                "p90": us(h.quantile(0.90)),
                "p99": us(h.quantile(0.99)),
                "p999": us(h.quantile(0.999)),
                "max": us(h.max()),
                "mean": (h.mean() / 100.0).round() / 10.0,
                "samples": h.count(),
            })
        };
        let measured_s = match (self.measure_start, self.measure_end) {
            (Some(s), Some(e)) => (e - s).as_secs_f64(),
            _ => 0.0,
        };
        let server_cpu = match (self.cpu_start, self.cpu_end) {
            (Some(s), Some(e)) => Some(e.saturating_sub(s)),
            _ => None,
        };
        let per = |total: Option<u64>, n: u64| -> Value {
            match total {
                Some(t) if n > 0 => json!((t as f64 / n as f64 * 1000.0).round() / 1000.0),
                _ => Value::Null,
            }
        };
        // The window the CPU deltas cover: measure start (connect start for `connect`) to finish.
        let cpu_span = match a.scenario {
            Scenario::Connect => self.connect_done.map(|d| (d - self.connect_start).as_secs_f64()),
            _ => self.finished_at.zip(self.measure_start).map(|(e, s)| (e - s).as_secs_f64()),
        };
        let server_cpu_pct = match (server_cpu, cpu_span) {
            (Some(us), Some(span)) if span > 0.0 => json!((us as f64 / 1e6 / span * 1000.0).round() / 10.0),
            _ => Value::Null,
        };
        f.insert("server_cpu_pct".into(), server_cpu_pct);
        let self_cpu_pct = if measured_s > 0.0 && self.self_cpu_end > 0 {
            let span =
                self.finished_at.zip(self.measure_start).map(|(e, s)| (e - s).as_secs_f64()).unwrap_or(0.0);
            json!(
                ((self.self_cpu_end - self.self_cpu_start) as f64 / 1e6 / span.max(1e-9) * 1000.0).round()
                    / 10.0
            )
        } else {
            Value::Null
        };
        match a.scenario {
            Scenario::Fanout | Scenario::Rooms | Scenario::Polling => {
                let lost = self.expected.saturating_sub(self.delivered);
                let dps = if measured_s > 0.0 { self.delivered as f64 / measured_s } else { 0.0 };
                f.insert("rate".into(), json!(a.rate));
                f.insert("payload_bytes".into(), json!(a.payload));
                f.insert("warmup_s".into(), json!(a.warmup));
                f.insert("sent".into(), json!(self.sent));
                f.insert("expected".into(), json!(self.expected));
                f.insert("delivered".into(), json!(self.delivered));
                f.insert("lost".into(), json!(lost));
                f.insert("duplicated".into(), json!(self.duplicated));
                f.insert("reordered".into(), json!(self.reordered));
                f.insert("deliveries_per_s".into(), json!(dps.round()));
                f.insert("latency_us".into(), lat(&self.hist));
                f.insert("server_cpu_us_per_delivery".into(), per(server_cpu, self.delivered));
                f.insert(
                    "send_rate_achieved".into(),
                    json!(if measured_s > 0.0 {
                        (self.sent as f64 / measured_s * 10.0).round() / 10.0
                    } else {
                        0.0
                    }),
                );
                f.insert("send_lag_max_ms".into(), json!(self.max_send_lag.as_millis() as u64));
                f.insert("send_skipped".into(), json!(self.send_skipped));
                f.insert("disconnected".into(), json!(self.dropped));
                f.insert("loadgen_cpu_pct".into(), self_cpu_pct);
                if self.framing == Framing::Raw {
                    f.insert("raw".into(), json!(true));
                }
                if a.scenario == Scenario::Rooms {
                    f.insert("rooms".into(), json!(a.rooms_spec));
                    f.insert("room_count".into(), json!(self.streams.len()));
                    f.insert("senders".into(), json!(a.senders));
                }
                if self.too_old > 0 {
                    f.insert("late_beyond_window".into(), json!(self.too_old));
                }
                summary = format!(
                    "{}{}: {} clients, sent {} ({:.1}/s), delivered {}/{} ({:.0}/s), lost {lost}, dup {}, reordered {}; \
                     latency us p50 {} p90 {} p99 {} max {}; server cpu/delivery {} us; loadgen cpu {}%",
                    a.scenario.name(),
                    if self.framing == Framing::Raw { " (raw)" } else { "" },
                    self.clients.len(),
                    self.sent,
                    self.sent as f64 / measured_s.max(1e-9),
                    self.delivered,
                    self.expected,
                    dps,
                    self.duplicated,
                    self.reordered,
                    self.hist.quantile(0.5) / 1000,
                    self.hist.quantile(0.9) / 1000,
                    self.hist.quantile(0.99) / 1000,
                    self.hist.max() / 1000,
                    per(server_cpu, self.delivered),
                    f["loadgen_cpu_pct"],
                );
                if self.fatal.is_none() && self.phase == Phase::Done && self.measure_end.is_some() {
                    if self.delivered == 0 {
                        self.fatal = Some("no bench message was delivered".into());
                    } else if self.sent == 0 {
                        self.fatal = Some("nothing was sent".into());
                    }
                }
            }
            Scenario::Echo => {
                let rps = if measured_s > 0.0 { self.round_trips as f64 / measured_s } else { 0.0 };
                f.insert("payload_bytes".into(), json!(a.payload));
                f.insert("warmup_s".into(), json!(a.warmup));
                f.insert("round_trips".into(), json!(self.round_trips));
                f.insert("round_trips_per_s".into(), json!(rps.round()));
                f.insert("rtt_us".into(), lat(&self.hist));
                f.insert("server_cpu_us_per_round_trip".into(), per(server_cpu, self.round_trips));
                f.insert("disconnected".into(), json!(self.dropped));
                f.insert("loadgen_cpu_pct".into(), self_cpu_pct);
                summary = format!(
                    "echo: {} clients, {} round trips ({rps:.0}/s); rtt us p50 {} p90 {} p99 {} max {}; \
                     server cpu/round trip {} us; loadgen cpu {}%",
                    self.clients.len(),
                    self.round_trips,
                    self.hist.quantile(0.5) / 1000,
                    self.hist.quantile(0.9) / 1000,
                    self.hist.quantile(0.99) / 1000,
                    self.hist.max() / 1000,
                    per(server_cpu, self.round_trips),
                    f["loadgen_cpu_pct"],
                );
                if self.fatal.is_none() && self.round_trips == 0 {
                    self.fatal = Some("no echo round trip completed".into());
                }
            }
            Scenario::Connect => {
                let took = self.connect_done.map(|d| (d - self.connect_start).as_secs_f64()).unwrap_or(0.0);
                let cps = if took > 0.0 { self.connected as f64 / took } else { 0.0 };
                let per_conn = match (self.rss_before, self.rss_after) {
                    (Some(b), Some(a)) if self.connected > 0 => {
                        json!(((a as f64 - b as f64) * 1024.0 / self.connected as f64).round() as i64)
                    }
                    _ => Value::Null,
                };
                f.insert("failed".into(), json!(self.failed));
                f.insert("connect_s".into(), json!((took * 1000.0).round() / 1000.0));
                f.insert("connections_per_s".into(), json!(cps.round()));
                f.insert("concurrency".into(), json!(a.concurrency));
                f.insert("source_ips".into(), json!(a.source_ips));
                f.insert("idle_s".into(), json!(a.duration));
                f.insert("dropped_while_idle".into(), json!(self.dropped));
                f.insert("rss_before_kb".into(), json!(self.rss_before));
                f.insert("rss_after_kb".into(), json!(self.rss_after));
                f.insert("rss_per_conn_bytes".into(), per_conn.clone());
                f.insert("server_cpu_us_per_connection".into(), per(server_cpu, self.connected as u64));
                summary = format!(
                    "connect: {}/{} connected, {} failed in {took:.2} s ({cps:.0}/s); server rss {} -> {} KiB, {} bytes/conn",
                    self.connected,
                    self.clients.len(),
                    self.failed,
                    json!(self.rss_before),
                    json!(self.rss_after),
                    per_conn
                );
                if self.fatal.is_none() && self.failed > 0 {
                    self.fatal =
                        Some(format!("{} of {} connections failed", self.failed, self.clients.len()));
                }
                if self.fatal.is_none() && self.dropped > 0 {
                    self.fatal = Some(format!("{} connections dropped while idle", self.dropped));
                }
            }
        }
        let summary = if a.scenario != Scenario::Connect && self.measure_end.is_none() {
            format!(
                "{}: {} of {} clients connected, {} failed; no measurement",
                a.scenario.name(),
                self.connected,
                self.clients.len(),
                self.failed
            )
        } else {
            summary
        };
        if self.clients.len() != self.requested_clients {
            f.insert("clients_requested".into(), json!(self.requested_clients));
        }
        if !self.errors.is_empty() {
            f.insert("errors".into(), json!(self.errors));
        }
        if !self.notes.is_empty() {
            f.insert("notes".into(), json!(self.notes));
        }
        Outcome { fields: f, error: self.fatal, summary }
    }
}

impl Stream {
    fn new(members: u64) -> Stream {
        Stream { members, next_seq: 0, first_measured: u64::MAX, end_measured: u64::MAX }
    }
}

/// The text of one bench message sent at `t` (ns) with sequence number `seq`: the object
/// `{"s":seq,"t":t,"p":padding}`, bare with raw framing, else in a Socket.IO EVENT (`bench`,
/// or `bench-room` to `room`) in an Engine.IO MESSAGE.
fn bench_message(framing: Framing, room: Option<usize>, seq: u64, t: u64, padding: &str) -> String {
    let obj = format!(r#"{{"s":{seq},"t":{t},"p":"{padding}"}}"#);
    match (framing, room) {
        (Framing::Raw, _) => obj,
        (Framing::Eio, None) => format!(r#"42["bench",{obj}]"#),
        (Framing::Eio, Some(r)) => format!(r#"42["bench-room","r{r}",{obj}]"#),
    }
}

/// The first bytes of peer data as one printable line, for error messages.
fn snippet(data: &[u8]) -> String {
    let text = String::from_utf8_lossy(&data[..data.len().min(60)]);
    let mut out: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if data.len() > 60 {
        out.push_str("...");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bench_message_framings_carry_the_same_object() {
        let raw = bench_message(Framing::Raw, None, 7, 123, "xx");
        assert_eq!(raw, r#"{"s":7,"t":123,"p":"xx"}"#);
        assert_eq!(proto::sample_object(raw.as_bytes()), Some((7, 123)));

        let eio = bench_message(Framing::Eio, None, 7, 123, "xx");
        assert_eq!(eio, format!(r#"42["bench",{raw}]"#));
        let room = bench_message(Framing::Eio, Some(3), 7, 123, "xx");
        assert_eq!(room, format!(r#"42["bench-room","r3",{raw}]"#));
        for (msg, event) in [(&eio, &b"bench"[..]), (&room, &b"bench-room"[..])] {
            let EioPacket::Message(sio) = proto::parse_eio(msg.as_bytes()) else { panic!("{msg}") };
            let SioPacket::Event { data, .. } = proto::parse_sio(sio) else { panic!("{msg}") };
            let (name, rest) = proto::event_name(data).unwrap();
            assert_eq!(name, event);
            assert_eq!(proto::sample(rest), Some((7, 123)));
        }
    }
}
