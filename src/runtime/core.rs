//! One core's event loop.
//!
//! A loop turn: wait for readiness (or the shard's next deadline, or a wake-up); drain the
//! inbox; read every ready connection and feed what it carries to the shard; run due timers;
//! let the shard flush its sessions; apply its connection commands; send its messages to other
//! cores; write every connection that got output (once per turn, Redis `beforeSleep` style).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::Receiver;
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use super::conn::{Conn, ConnState, ReadOutcome};
use super::{CoreHandle, CoreMsg, LISTENER, WAKER};
use crate::api::server::ServerDef;
use crate::broker::{ConnCmd, ConnKey, RequestOutcome, Shard};
use crate::engineio::session::WsInput;
use crate::http::request::{Limits, Parse, parse_request};
use crate::http::websocket::{self, Message};

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
        sleeping: Arc<AtomicBool>,
    ) -> std::io::Result<Core> {
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
        let seed = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
            ^ ((id as u64) << 56);
        let n = peers.len();
        Ok(Core {
            id,
            poll,
            listener,
            conns: Slab::new(),
            shard: Shard::new(id, n, def, seed, Instant::now()),
            inbox,
            peers,
            sleeping,
            dirty: Vec::new(),
            generation: 0,
            http_limits,
            ws_limits,
            max_output,
            max_conns,
            stopping: None,
            shutdown_timeout,
        })
    }

    pub(crate) fn run(&mut self) {
        let mut events = Events::with_capacity(1024);
        loop {
            let timeout = self.next_timeout();
            // Announce sleep, then re-check the inbox: a sender that saw `sleeping` wakes us.
            self.sleeping.store(true, Ordering::SeqCst);
            let timeout = if self.inbox.is_empty() { timeout } else { Some(Duration::ZERO) };
            if let Err(e) = self.poll.poll(&mut events, timeout)
                && e.kind() != std::io::ErrorKind::Interrupted
            {
                eprintln!("sockeye: core {} poll failed: {e}", self.id);
                return;
            }
            self.sleeping.store(false, Ordering::SeqCst);
            self.tick();
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
            self.settle();
            if let Some(deadline) = self.stopping
                && ((self.shard.session_count() == 0 && self.conns.is_empty()) || Instant::now() >= deadline)
            {
                return;
            }
        }
    }

    fn tick(&mut self) {
        let wall = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        self.shard.set_time(Instant::now(), wall);
    }

    fn next_timeout(&self) -> Option<Duration> {
        if self.stopping.is_some() {
            // While draining, poll briefly so the loop can notice it is done.
            return Some(Duration::from_millis(50));
        }
        self.shard.poll_timeout().map(|t| t.saturating_duration_since(Instant::now()))
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
        loop {
            match self.listener.accept() {
                Ok((stream, addr)) => {
                    if self.stopping.is_some() || self.conns.len() >= self.max_conns {
                        drop(stream);
                        continue;
                    }
                    let _ = stream.set_nodelay(true);
                    self.insert(stream, Some(addr), Vec::new());
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                // Out of descriptors or similar: stop accepting this turn.
                Err(_) => return,
            }
        }
    }

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
            return None;
        }
        entry.insert(Conn::new(stream, self.generation, remote, rbuf));
        Some(i)
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
        match c.read_available(limit) {
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
            }
        }
    }

    /// A connection whose unsent output exceeds the limit is a slow consumer: drop it so it
    /// cannot hold memory or stall anyone else.
    fn check_output(&mut self, i: usize) {
        if self.conns[i].pending() > self.max_output {
            let key = self.key(i);
            if let Some(session) = self.conns[i].session() {
                self.shard.handle_slow_consumer(key, session);
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
                match c.flush() {
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
        if let Some(session) = c.session() {
            self.shard.handle_conn_closed(key, session, error);
        }
    }
}
