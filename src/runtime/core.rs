//! One core's event loop.
//!
//! A loop turn: wait for readiness (or the shard's next deadline, or a wake-up); drain the
//! inbox; read every ready connection and feed what it carries to the shard; run due timers;
//! let the shard flush its sessions; apply its connection commands; send its messages to other
//! cores; write every connection that got output (once per turn, Redis `beforeSleep` style).
//!
//! Connection timeouts (slow request heads, idle keep-alive connections) live in a binary heap
//! with lazy deletion, like the shard's: an entry carries the connection's generation, and a
//! connection re-arms only when its deadline moves earlier, so the common request/response
//! round trip costs no heap operation. Stale entries of closed connections are dropped when
//! they surface, or all at once when the heap grows past twice the live connections.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::Receiver;
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use super::conn::{Conn, ConnState, ReadOutcome, Wait};
use super::{CoreHandle, CoreMsg, LISTENER, WAKER};
use crate::api::server::ServerDef;
use crate::broker::{ConnCmd, ConnKey, RequestOutcome, Shard};
use crate::engineio::session::WsInput;
use crate::http::request::{Limits, Parse, parse_request};
use crate::http::websocket::{self, Message};
use crate::metrics::{LoopTally, TURN_BUCKETS};
use crate::stats::{CoreStats, NodeStats};

/// The answer to a connection beyond `max_connections` (or `max_connections_per_core`).
const REFUSED_503: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n\
Content-Length: 20\r\nRetry-After: 1\r\nConnection: close\r\n\r\ntoo many connections";

/// Written (when nothing else is pending) to a connection whose request did not arrive in time.
const TIMEOUT_408: &[u8] = b"HTTP/1.1 408 Request Timeout\r\nContent-Type: text/plain\r\n\
Content-Length: 15\r\nConnection: close\r\n\r\nrequest timeout";

pub(crate) struct Core {
    id: u8,
    poll: Poll,
    listener: TcpListener,
    conns: Slab<Conn>,
    shard: Shard,
    inbox: Receiver<CoreMsg>,
    peers: Arc<Vec<CoreHandle>>,
    sleeping: Arc<AtomicBool>,
    dirty: Vec<usize>,
    generation: u32,
    http_limits: Limits,
    ws_limits: websocket::DecoderLimits,
    max_output: usize,
    max_conns: usize,
    /// Node-wide connection limit, checked against `node.open_connections`.
    max_total_conns: usize,
    header_timeout: Duration,
    idle_timeout: Duration,
    accept_retry_delay: Duration,
    /// After `accept` failed for lack of resources: when to try again.
    accept_retry_at: Option<Instant>,
    /// When an accept failure was last logged (at most one line per 10 s).
    accept_warned_at: Option<Instant>,
    /// Connection deadlines: (deadline, slab index, generation), earliest first.
    timers: BinaryHeap<Reverse<(Instant, u32, u32)>>,
    /// The time of this loop turn (read once per turn).
    now: Instant,
    node: Arc<NodeStats>,
    stats: Arc<CoreStats>,
    /// Bytes in and out: plain running totals, published once per turn.
    tally: LoopTally,
    /// Set by a shutdown: the moment after which the core exits whatever is left.
    stopping: Option<Instant>,
    shutdown_timeout: Duration,
}

impl Core {
    pub(crate) fn new(
        id: u8,
        def: Arc<ServerDef>,
        poll: Poll,
        mut listener: TcpListener,
        inbox: Receiver<CoreMsg>,
        peers: Arc<Vec<CoreHandle>>,
        node: Arc<NodeStats>,
    ) -> std::io::Result<Core> {
        let sleeping = peers[id as usize].sleeping.clone();
        poll.registry().register(&mut listener, LISTENER, Interest::READABLE)?;
        let cfg = &def.config;
        let http_limits = Limits {
            max_header_bytes: cfg.limits.max_header_bytes,
            max_headers: 64,
            max_body_bytes: cfg.engine.max_payload,
        };
        let ws_limits = websocket::DecoderLimits {
            max_message_bytes: cfg.engine.max_payload,
            max_frame_bytes: cfg.engine.max_payload,
        };
        let max_output = cfg.limits.max_output_bytes;
        let max_conns = cfg.limits.max_connections_per_core;
        let shutdown_timeout = cfg.shutdown_timeout;
        // A placeholder: `seed_from_os` below replaces both id generators' seeds.
        let seed = 0;
        let n = peers.len();
        let stats = node.cores[id as usize].clone();
        let now = Instant::now();
        let mut shard = Shard::new(id, n, def.clone(), seed, now);
        shard.set_node(node.clone());
        shard.seed_from_os();
        let limits = &def.config.limits;
        Ok(Core {
            id,
            poll,
            listener,
            conns: Slab::new(),
            shard,
            inbox,
            peers,
            sleeping,
            dirty: Vec::new(),
            generation: 0,
            http_limits,
            ws_limits,
            max_output,
            max_conns,
            max_total_conns: limits.max_connections,
            header_timeout: limits.header_read_timeout,
            idle_timeout: limits.keep_alive_idle_timeout,
            accept_retry_delay: limits.accept_retry_delay,
            accept_retry_at: None,
            accept_warned_at: None,
            timers: BinaryHeap::new(),
            now,
            node,
            stats,
            tally: LoopTally::default(),
            stopping: None,
            shutdown_timeout,
        })
    }

    pub(crate) fn run(&mut self) {
        let mut events = Events::with_capacity(1024);
        // The end of the previous turn: the clock is read once at each end of a turn.
        let mut end = Instant::now();
        loop {
            let timeout = self.next_timeout(end);
            // Announce sleep, then re-check the inbox: a sender that saw `sleeping` wakes us.
            self.sleeping.store(true, Ordering::SeqCst);
            let timeout = if self.inbox.is_empty() { timeout } else { Some(Duration::ZERO) };
            if let Err(e) = self.poll.poll(&mut events, timeout)
                && e.kind() != std::io::ErrorKind::Interrupted
            {
                crate::error!("event loop poll failed"; core = self.id, error = &e.to_string());
                return;
            }
            self.sleeping.store(false, Ordering::SeqCst);
            self.tick();
            if self.accept_retry_at.is_some_and(|t| self.now >= t) {
                self.accept_retry_at = None;
                if self.stopping.is_none() {
                    self.accept();
                }
            }
            // Inbox first: a message another core sent before answering a client (a room's
            // first member, say) is then applied before any request that client sends here
            // after seeing that answer.
            self.drain_inbox();
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => self.accept(),
                    WAKER => {}
                    Token(i) => {
                        if ev.is_writable() && self.conns.contains(i) {
                            self.mark_dirty(i);
                        }
                        if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                            self.on_readable(i);
                        }
                    }
                }
            }
            self.shard.handle_timeouts();
            self.handle_conn_timeouts();
            self.settle();
            self.shard.publish_metrics();
            self.stats.metrics.publish_loop(&self.tally);
            end = Instant::now();
            let turn = end.saturating_duration_since(self.now);
            self.stats
                .metrics
                .turns
                .observe_ns(&TURN_BUCKETS, u64::try_from(turn.as_nanos()).unwrap_or(u64::MAX));
            if let Some(deadline) = self.stopping
                && ((self.shard.session_count() == 0 && self.conns.is_empty()) || end >= deadline)
            {
                return;
            }
        }
    }

    fn tick(&mut self) {
        let wall = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        self.now = Instant::now();
        self.shard.set_time(self.now, wall);
    }

    fn next_timeout(&self, now: Instant) -> Option<Duration> {
        if self.stopping.is_some() {
            // While draining, poll briefly so the loop can notice it is done.
            return Some(Duration::from_millis(50));
        }
        let conn = self.timers.peek().map(|Reverse((t, _, _))| *t);
        [self.shard.poll_timeout(), conn, self.accept_retry_at]
            .into_iter()
            .flatten()
            .min()
            .map(|t| t.saturating_duration_since(now))
    }

    /// Let the shard finish the turn and carry out what it asks, until nothing is left.
    fn settle(&mut self) {
        loop {
            self.shard.flush();
            let cmds = self.shard.take_commands();
            let outbox = self.shard.take_outbox();
            if cmds.is_empty() && outbox.is_empty() {
                break;
            }
            for (core, msg) in outbox {
                if let Some(p) = self.peers.get(core as usize) {
                    p.send(msg);
                }
            }
            for cmd in cmds {
                self.apply(cmd);
            }
        }
        self.flush_dirty();
    }

    fn drain_inbox(&mut self) {
        // Bounded so one flood of messages cannot starve the sockets.
        for _ in 0..4096 {
            let Ok(msg) = self.inbox.try_recv() else {
                break;
            };
            match msg {
                CoreMsg::Shard(crate::broker::ShardMsg::Shutdown) => {
                    self.stopping = Some(Instant::now() + self.shutdown_timeout);
                    let _ = self.poll.registry().deregister(&mut self.listener);
                    self.shard.handle_msg(crate::broker::ShardMsg::Shutdown);
                }
                CoreMsg::Shard(m) => self.shard.handle_msg(m),
                CoreMsg::Handoff { stream, rbuf, out, remote } => {
                    if let Some(i) = self.insert(stream, remote, rbuf) {
                        if !out.is_empty() {
                            self.conns[i].queue(&out);
                            self.mark_dirty(i);
                        }
                        self.process_input(i);
                    }
                }
            }
        }
        if !self.inbox.is_empty() {
            // More to do: make sure the next poll returns at once.
            let _ = self.peers[self.id as usize].waker.wake();
        }
    }

    fn accept(&mut self) {
        use std::io::ErrorKind;
        loop {
            match self.listener.accept() {
                Ok((stream, addr)) => {
                    if self.stopping.is_some() {
                        drop(stream);
                        continue;
                    }
                    if self.conns.len() >= self.max_conns || !self.take_slot() {
                        CoreStats::bump(&self.stats.connections_refused_limit);
                        crate::debug!("connection refused: limit"; core = self.id, peer = &addr);
                        refuse_connection(stream);
                        continue;
                    }
                    let _ = stream.set_nodelay(true);
                    if self.insert(stream, Some(addr), Vec::new()).is_some() {
                        CoreStats::bump(&self.stats.connections_accepted);
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                // That one connection is gone; the next may be fine.
                Err(e) if matches!(e.kind(), ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset) => {
                    CoreStats::bump(&self.stats.accept_errors);
                }
                // Out of descriptors or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM). The connections
                // left in the backlog raise no new edge, so try again on a timer rather than at
                // the next arrival, which may never come.
                Err(e) => {
                    CoreStats::bump(&self.stats.accept_errors);
                    if self.accept_warned_at.is_none_or(|t| self.now >= t + Duration::from_secs(10)) {
                        self.accept_warned_at = Some(self.now);
                        crate::warn!("accept failed, retrying (repeats within 10 s not logged)"; core = self.id, error = &e.to_string());
                    }
                    self.accept_retry_at = Some(self.now + self.accept_retry_delay);
                    return;
                }
            }
        }
    }

    /// Count one more open connection on the node, unless that would pass `max_connections`.
    fn take_slot(&self) -> bool {
        let open = &self.node.open_connections;
        if open.fetch_add(1, Ordering::Relaxed) >= self.max_total_conns {
            open.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        true
    }

    fn release_slot(&self) {
        self.node.open_connections.fetch_sub(1, Ordering::Relaxed);
    }

    /// Register a connection (new, or handed over with `rbuf` from another core). Its slot in
    /// the node's count is already taken; it is given back if the connection is dropped here.
    fn insert(
        &mut self,
        mut stream: mio::net::TcpStream,
        remote: Option<SocketAddr>,
        rbuf: Vec<u8>,
    ) -> Option<usize> {
        self.generation = self.generation.wrapping_add(1);
        let entry = self.conns.vacant_entry();
        let i = entry.key();
        if self
            .poll
            .registry()
            .register(&mut stream, Token(i), Interest::READABLE | Interest::WRITABLE)
            .is_err()
        {
            self.release_slot();
            return None;
        }
        entry.insert(Conn::new(stream, self.generation, remote, rbuf, self.now + self.header_timeout));
        self.arm(i);
        Some(i)
    }

    // ----- connection timeouts --------------------------------------------------------------

    /// Recompute what the connection waits for and its deadline after its state or input
    /// changed (see [`Wait`]). Cheap: no heap operation unless the deadline moves earlier.
    fn refresh(&mut self, i: usize) {
        let now = self.now;
        let Some(c) = self.conns.get_mut(i) else {
            return;
        };
        let wait = if c.closing {
            Wait::Closing
        } else {
            match c.state {
                ConnState::Ws { .. } | ConnState::Parked { .. } => Wait::Exempt,
                ConnState::Http if c.rbuf.is_empty() => {
                    if c.requests == 0 {
                        Wait::First
                    } else {
                        Wait::Idle(c.requests)
                    }
                }
                ConnState::Http if head_complete(&c.rbuf, self.http_limits.max_header_bytes) => {
                    Wait::Body(c.requests)
                }
                ConnState::Http => Wait::Head(c.requests),
            }
        };
        let previous = std::mem::replace(&mut c.wait, wait);
        match wait {
            Wait::Exempt => c.deadline = None,
            // A body that keeps arriving keeps its connection.
            Wait::Body(_) => c.deadline = Some(now + self.header_timeout),
            _ if wait == previous => {}
            // The first head still counts from accept.
            Wait::First | Wait::Head(0) if previous == Wait::First => {}
            Wait::First | Wait::Head(_) | Wait::Closing => c.deadline = Some(now + self.header_timeout),
            Wait::Idle(_) => c.deadline = Some(now + self.idle_timeout),
        }
        self.arm(i);
    }

    fn arm(&mut self, i: usize) {
        let c = &mut self.conns[i];
        let Some(d) = c.deadline else {
            return;
        };
        if c.armed.is_some_and(|a| a <= d) {
            return;
        }
        c.armed = Some(d);
        self.timers.push(Reverse((d, i as u32, c.generation)));
        if self.timers.len() > 2 * self.conns.len() + 1024 {
            // Mostly entries of closed connections: rebuild from the live ones. Amortised
            // O(1): the next rebuild needs as many pushes again.
            self.timers = self
                .conns
                .iter_mut()
                .filter_map(|(i, c)| {
                    c.armed = c.deadline;
                    c.deadline.map(|d| Reverse((d, i as u32, c.generation)))
                })
                .collect();
        }
    }

    /// Close every connection whose deadline passed.
    fn handle_conn_timeouts(&mut self) {
        while let Some(&Reverse((t, idx, generation))) = self.timers.peek() {
            if t > self.now {
                break;
            }
            self.timers.pop();
            let i = idx as usize;
            let Some(c) = self.conns.get_mut(i) else {
                continue;
            };
            if c.generation != generation || c.armed != Some(t) {
                continue;
            }
            c.armed = None;
            match c.deadline {
                None => {}
                Some(d) if d > self.now => self.arm(i),
                Some(_) => self.expire(i),
            }
        }
    }

    fn expire(&mut self, i: usize) {
        let c = &mut self.conns[i];
        match c.wait {
            Wait::Idle(_) => CoreStats::bump(&self.stats.idle_timeouts),
            Wait::First | Wait::Head(_) | Wait::Body(_) => {
                CoreStats::bump(&self.stats.header_timeouts);
                if !c.rbuf.is_empty() && c.pending() == 0 {
                    // A request had started: tell it why, best effort, without waiting.
                    let _ = c.stream.write(TIMEOUT_408);
                }
            }
            Wait::Closing | Wait::Exempt => {}
        }
        self.close(i, true);
    }

    fn key(&self, i: usize) -> ConnKey {
        ConnKey { idx: i as u32, generation: self.conns[i].generation }
    }

    fn conn_index(&self, key: ConnKey) -> Option<usize> {
        let i = key.idx as usize;
        self.conns.get(i).filter(|c| c.generation == key.generation).map(|_| i)
    }

    fn mark_dirty(&mut self, i: usize) {
        let c = &mut self.conns[i];
        if !c.dirty {
            c.dirty = true;
            self.dirty.push(i);
        }
    }

    fn on_readable(&mut self, i: usize) {
        let Some(c) = self.conns.get_mut(i) else {
            return;
        };
        let limit = match c.state {
            ConnState::Ws { .. } => self.ws_limits.max_message_bytes + 64 * 1024,
            _ => self.http_limits.max_header_bytes + self.http_limits.max_body_bytes + 64 * 1024,
        };
        let before = c.rbuf.len();
        let outcome = c.read_available(limit);
        self.tally.bytes_in += c.rbuf.len().saturating_sub(before) as u64;
        match outcome {
            ReadOutcome::Open => self.process_input(i),
            ReadOutcome::Eof => {
                // Answer what arrived before the close, then drop the connection.
                self.process_input(i);
                self.close(i, false);
            }
            ReadOutcome::Error => self.close(i, true),
            ReadOutcome::Overflow => {
                self.process_input(i);
                if self.conns.get(i).is_some_and(|c| c.rbuf.len() > limit) {
                    self.close(i, true);
                }
            }
        }
    }

    /// Consume what the connection's input buffer holds.
    fn process_input(&mut self, i: usize) {
        self.consume_input(i);
        if let Some(c) = self.conns.get_mut(i) {
            c.release_input();
            self.refresh(i);
        }
    }

    fn consume_input(&mut self, i: usize) {
        loop {
            let Some(c) = self.conns.get_mut(i) else {
                return;
            };
            if c.closing || c.rbuf.is_empty() {
                return;
            }
            match c.state {
                ConnState::Http => {
                    if !self.process_http(i) {
                        return;
                    }
                }
                ConnState::Parked { .. } => return,
                ConnState::Ws { .. } => {
                    self.process_ws(i);
                    return;
                }
            }
        }
    }

    /// Handle one HTTP request; returns whether to keep processing the buffer.
    fn process_http(&mut self, i: usize) -> bool {
        let key = self.key(i);
        let c = &mut self.conns[i];
        let (req, used) = match parse_request(&c.rbuf, &self.http_limits) {
            Ok(Parse::Partial) => return false,
            Ok(Parse::Complete(req, used)) => (req, used),
            Ok(Parse::Oversized(req)) => {
                let body = self.shard.handle_oversized_post(&req);
                self.refuse(i, &body);
                return false;
            }
            Err(e) => {
                CoreStats::bump(&self.stats.http_requests_refused);
                let mut body = Vec::new();
                let reason = e.to_string();
                crate::http::response::write_simple(
                    e.status(),
                    "text/plain",
                    reason.as_bytes(),
                    &[],
                    false,
                    &mut body,
                );
                self.refuse(i, &body);
                return false;
            }
        };
        c.requests += 1;
        let outcome = self.shard.handle_request(key, &req, c.remote);
        let c = &mut self.conns[i];
        match outcome {
            RequestOutcome::Handoff(core) => {
                self.handoff(i, core);
                return false;
            }
            RequestOutcome::Respond(bytes) => {
                c.rbuf.drain(..used);
                c.queue(&bytes);
                if !req.keep_alive {
                    c.closing = true;
                }
            }
            RequestOutcome::RespondClose(bytes) => {
                c.rbuf.drain(..used);
                c.queue(&bytes);
                c.closing = true;
            }
            RequestOutcome::Park => {
                c.rbuf.drain(..used);
                let sid = req.query_param("sid").map(|s| s.into_owned()).unwrap_or_default();
                match self.shard.session_of_sid(&sid) {
                    Some(session) => {
                        c.state = ConnState::Parked { session: Some(session), keep_alive: req.keep_alive }
                    }
                    None => c.closing = true,
                }
                return false;
            }
            RequestOutcome::Defer => {
                c.rbuf.drain(..used);
                c.state = ConnState::Parked { session: None, keep_alive: req.keep_alive };
                return false;
            }
            RequestOutcome::WebSocket { response, session } => {
                c.rbuf.drain(..used);
                c.queue(&response);
                c.state =
                    ConnState::Ws { session, decoder: Box::new(websocket::Decoder::new(self.ws_limits)) };
            }
        }
        self.mark_dirty(i);
        true
    }

    /// Answer a request that cannot be served and close: its framing can no longer be trusted.
    fn refuse(&mut self, i: usize, response: &[u8]) {
        let c = &mut self.conns[i];
        c.rbuf.clear();
        c.queue(response);
        c.closing = true;
        self.mark_dirty(i);
    }

    fn process_ws(&mut self, i: usize) {
        let key = self.key(i);
        let mut pos = 0;
        loop {
            let c = &mut self.conns[i];
            let ConnState::Ws { session, decoder } = &mut c.state else {
                break;
            };
            let session = *session;
            let result = decoder.decode(&c.rbuf[pos..]);
            match result {
                Ok((msg, used)) => {
                    pos += used;
                    let Some(msg) = msg else {
                        if used == 0 {
                            break;
                        }
                        continue;
                    };
                    match msg {
                        Message::Text(t) => self.shard.handle_ws(key, session, WsInput::Text(&t)),
                        Message::Binary(b) => self.shard.handle_ws(key, session, WsInput::Binary(&b)),
                        Message::Ping(p) => {
                            let mut f = Vec::new();
                            websocket::encode_frame(websocket::OpCode::Pong, &p, &mut f);
                            self.conns[i].queue(&f);
                            self.mark_dirty(i);
                        }
                        Message::Pong(_) => {}
                        Message::Close(_, _) => {
                            let c = &mut self.conns[i];
                            let mut f = Vec::new();
                            websocket::encode_close(1000, "", &mut f);
                            c.queue(&f);
                            c.closing = true;
                            c.state = ConnState::Http;
                            self.mark_dirty(i);
                            self.shard.handle_conn_closed(key, session, false);
                            break;
                        }
                    }
                }
                Err(e) => {
                    if e.close_code() == 1009 {
                        CoreStats::bump(&self.stats.payload_too_large);
                    }
                    let c = &mut self.conns[i];
                    let mut f = Vec::new();
                    websocket::encode_close(e.close_code(), "", &mut f);
                    c.queue(&f);
                    c.closing = true;
                    c.state = ConnState::Http;
                    self.mark_dirty(i);
                    self.shard.handle_conn_closed(key, session, true);
                    pos = self.conns[i].rbuf.len();
                    break;
                }
            }
        }
        if let Some(c) = self.conns.get_mut(i) {
            let pos = pos.min(c.rbuf.len());
            c.rbuf.drain(..pos);
        }
    }

    fn handoff(&mut self, i: usize, core: u8) {
        let mut c = self.conns.remove(i);
        let _ = self.poll.registry().deregister(&mut c.stream);
        let rbuf = std::mem::take(&mut c.rbuf);
        let out = c.take_output();
        if let Some(p) = self.peers.get(core as usize) {
            p.send_core(CoreMsg::Handoff { stream: c.stream, rbuf, out, remote: c.remote });
        }
    }

    fn apply(&mut self, cmd: ConnCmd) {
        match cmd {
            ConnCmd::Frame(key, o) => {
                let Some(i) = self.conn_index(key) else {
                    return;
                };
                self.conns[i].queue(o.ws_frame());
                self.mark_dirty(i);
            }
            ConnCmd::Bytes(key, bytes) => {
                let Some(i) = self.conn_index(key) else {
                    return;
                };
                self.conns[i].queue(&bytes);
                self.mark_dirty(i);
            }
            ConnCmd::Unpark(key) => {
                let Some(i) = self.conn_index(key) else {
                    return;
                };
                let c = &mut self.conns[i];
                if let ConnState::Parked { keep_alive, .. } = c.state {
                    c.state = ConnState::Http;
                    if !keep_alive {
                        c.closing = true;
                    }
                }
                self.mark_dirty(i);
                self.process_input(i);
            }
            ConnCmd::Close(key) => {
                let Some(i) = self.conn_index(key) else {
                    return;
                };
                let c = &mut self.conns[i];
                if matches!(c.state, ConnState::Ws { .. }) {
                    let mut f = Vec::new();
                    websocket::encode_close(1000, "", &mut f);
                    c.queue(&f);
                }
                // The shard already let go of this connection: no need to report it closing.
                c.state = ConnState::Http;
                c.closing = true;
                self.mark_dirty(i);
                self.refresh(i);
            }
        }
    }

    /// A connection whose unsent output exceeds the limit is a slow consumer: drop it so it
    /// cannot hold memory or stall anyone else.
    fn check_output(&mut self, i: usize) {
        if self.conns[i].pending() > self.max_output {
            let key = self.key(i);
            match self.conns[i].session() {
                // Counted by the shard, once per session.
                Some(session) => self.shard.handle_slow_consumer(key, session),
                None => CoreStats::bump(&self.stats.slow_consumers),
            }
            self.close(i, true);
        }
    }

    fn flush_dirty(&mut self) {
        while !self.dirty.is_empty() {
            let dirty = std::mem::take(&mut self.dirty);
            for i in dirty {
                let Some(c) = self.conns.get_mut(i) else {
                    continue;
                };
                c.dirty = false;
                let before = c.pending();
                let flushed = c.flush();
                self.tally.bytes_out += before.saturating_sub(c.pending()) as u64;
                match flushed {
                    Ok(true) if c.closing => self.close(i, false),
                    Ok(true) => {}
                    // Judged after the write attempt, so only what the client really did not
                    // take counts, not the size of one turn's batch.
                    Ok(false) => self.check_output(i),
                    Err(_) => self.close(i, true),
                }
            }
            // Closing may have produced more work for other connections.
            self.shard.flush();
            for cmd in self.shard.take_commands() {
                self.apply(cmd);
            }
            for (core, msg) in self.shard.take_outbox() {
                if let Some(p) = self.peers.get(core as usize) {
                    p.send(msg);
                }
            }
        }
    }

    /// Drop a connection now and tell the shard if it carried a session.
    fn close(&mut self, i: usize, error: bool) {
        if !self.conns.contains(i) {
            return;
        }
        let key = self.key(i);
        let mut c = self.conns.remove(i);
        let _ = self.poll.registry().deregister(&mut c.stream);
        self.tally.dropped_bytes += c.pending() as u64;
        self.release_slot();
        if let Some(session) = c.session() {
            self.shard.handle_conn_closed(key, session, error);
        }
    }
}

impl Drop for Core {
    /// Connections still open when the core exits close with it.
    fn drop(&mut self) {
        self.node.open_connections.fetch_sub(self.conns.len(), Ordering::Relaxed);
    }
}

/// Whether `buf` holds a complete request head (only looked at while a request is partial).
fn head_complete(buf: &[u8], max_header_bytes: usize) -> bool {
    buf[..buf.len().min(max_header_bytes + 4)].windows(4).any(|w| w == b"\r\n\r\n")
}

/// Answer a connection over the limit with `503` and close it. The socket is new, so the short
/// answer fits its send buffer; what the client already sent is read first, so the close is a
/// FIN after the answer rather than a reset.
fn refuse_connection(stream: mio::net::TcpStream) {
    let mut s = &stream;
    let _ = s.write(REFUSED_503);
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let mut scratch = [0u8; 4096];
    for _ in 0..4 {
        match s.read(&mut scratch) {
            Ok(n) if n > 0 => continue,
            _ => break,
        }
    }
}
