//! Deterministic simulation of shards and clients in virtual time (tests only).
//!
//! [`Sim`] plays the runtime (`src/runtime/core.rs`) for N cores with no sockets, no threads and
//! no clock: it owns one [`Shard`] per core, a fake clock (a base `Instant` plus an offset that
//! only moves when a test advances it), fake connections, and one inbox per core for the
//! messages cores exchange. Clients are simulated byte for byte: they write HTTP requests and
//! masked WebSocket frames, and read back HTTP responses and server frames, which the harness
//! parses into Engine.IO / Socket.IO packets for the tests to assert on.
//!
//! The calling contract mirrors `runtime::core::Core` exactly:
//! - a *turn* of core `c`: feed one input (request bytes, WebSocket bytes, a closed connection,
//!   the messages in its inbox), run `handle_timeouts`, then *settle*: `flush`, apply every
//!   `ConnCmd`, queue every outbox message, until the shard has nothing more to say; then write
//!   connection output (a client that reads gets it at once, a stalled one keeps it pending,
//!   which is what the output limit counts), close connections that finished closing and tell
//!   the shard, and settle again;
//! - the inbox of a core is one FIFO, as a crossbeam channel is: messages from one core to
//!   another keep their order, and a connection handed over (`RequestOutcome::Handoff`) travels
//!   in the same queue as the messages;
//! - time moves only in [`Sim::advance`], which steps to the earliest `poll_timeout` of all
//!   shards, one deadline after another.
//!
//! Unless [`Sim::hold`] is set, every input is followed by delivering inbox messages (and the
//! clients' automatic reactions, such as pongs) until the whole system is idle, so a test reads
//! the state after everything in flight has landed. With `hold` set, messages wait in the
//! inboxes until [`Sim::deliver`] or [`Sim::run_until_idle`], so a test can order races itself.
//!
//! Nothing here is random: the shards' id generators are seeded, and iteration orders are fixed,
//! so the same test produces the same bytes every run.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::shard::{ConnCmd, ConnKey, CoreId, RequestOutcome, SessionKey, Shard, ShardMsg};
use crate::api::{ServerBuilder, ServerHandle};
use crate::engineio::session::WsInput;
use crate::http::request::{Limits, Parse, parse_request};
use crate::http::websocket::{self, Message, OpCode};
use crate::runtime::{CoreHandle, CoreMsg};

/// Index of a simulated connection; stable for the connection's whole life, across handoffs.
pub type ConnId = usize;

/// Wall-clock milliseconds at virtual time zero.
const WALL_BASE_MS: u64 = 1_700_000_000_000;

/// A valid `Sec-WebSocket-Key` (RFC 6455 section 1.3 example).
const WS_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// Client frame opcodes (RFC 6455 section 5.2).
pub const OP_TEXT: u8 = 1;
pub const OP_BINARY: u8 = 2;
pub const OP_CLOSE: u8 = 8;

/// The Socket.IO path of the default configuration.
const PATH: &str = "/socket.io/";

/// An Engine.IO packet as a client sees it: text (with its type digit) or binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pkt {
    Text(String),
    Bin(Vec<u8>),
}

impl Pkt {
    pub fn text(s: &str) -> Pkt {
        Pkt::Text(s.to_owned())
    }
}

/// A WebSocket message from the server, as the client decodes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsMsg {
    Text(String),
    Binary(Vec<u8>),
    Close(Option<u16>),
    Ping,
    Pong,
}

/// An HTTP response as the client parses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn body_str(&self) -> &str {
        std::str::from_utf8(&self.body).expect("UTF-8 body")
    }

    pub fn header(&self, name_lowercase: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name_lowercase).map(|(_, v)| v.as_str())
    }

    /// The body as a long-polling payload.
    pub fn packets(&self) -> Vec<Pkt> {
        decode_payload(&self.body)
    }
}

/// What the runtime did with a connection because of a `ConnCmd` (for assertions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmdKind {
    Frame,
    Bytes,
    Unpark,
    Close,
}

/// A cross-core message, recorded when a shard sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sent {
    Occupancy { from: CoreId, to: CoreId, room: String, present: bool },
    Broadcast { from: CoreId, to: CoreId },
    Other { from: CoreId, to: CoreId },
    Handoff { from: CoreId, to: CoreId },
}

/// The server side of a connection, as `runtime::conn::ConnState`.
enum ServerSide {
    Http,
    Parked { session: Option<SessionKey>, keep_alive: bool },
    Ws { session: SessionKey, decoder: Box<websocket::Decoder> },
}

impl ServerSide {
    fn session(&self) -> Option<SessionKey> {
        match self {
            ServerSide::Http => None,
            ServerSide::Parked { session, .. } => *session,
            ServerSide::Ws { session, .. } => Some(*session),
        }
    }
}

struct SimConn {
    core: CoreId,
    key: ConnKey,
    remote: SocketAddr,
    state: ServerSide,
    /// Bytes from the client the server has not consumed.
    rbuf: Vec<u8>,
    /// Bytes the server wrote that the client has not read yet (the runtime's pending output).
    out: Vec<u8>,
    closing: bool,
    /// The server dropped the connection.
    closed: bool,
    /// Travelling to another core in an inbox.
    in_transit: bool,
    /// Whether the client reads what the server writes; a stalled client lets output pile up.
    reading: bool,
    /// Bytes the client read and has not parsed yet.
    rx: Vec<u8>,
    /// The client saw `101 Switching Protocols`: the rest of the stream is frames.
    client_ws: bool,
    responses: VecDeque<HttpResponse>,
    frames: VecDeque<WsMsg>,
    /// Answer every `2` (ping) text frame with `3` (pong) at once.
    auto_pong: bool,
    cmds: Vec<CmdKind>,
}

enum Envelope {
    Msg(ShardMsg),
    Handoff(ConnId),
}

/// The simulated system: N shards, their connections and clients, in virtual time.
pub struct Sim {
    t0: Instant,
    elapsed: Duration,
    shards: Vec<Shard>,
    conns: Vec<SimConn>,
    keys: HashMap<(CoreId, ConnKey), ConnId>,
    /// Per core: the next slab index and generation handed to a new connection.
    next_key: Vec<(u32, u32)>,
    inbox: Vec<VecDeque<Envelope>>,
    /// Client reactions to send (connection, text frame), in order.
    reactions: VecDeque<(ConnId, String)>,
    /// Leave messages in the inboxes after each input (see the module documentation).
    pub hold: bool,
    /// Every cross-core message and handoff, in sending order.
    pub sent: Vec<Sent>,
    http_limits: Limits,
    ws_limits: websocket::DecoderLimits,
    max_output: usize,
    /// What the application's `ServerHandle` sends (from handlers or other threads) waits here
    /// until [`Sim::pump_external`] moves it into the inboxes.
    external: Vec<crossbeam_channel::Receiver<CoreMsg>>,
    handle: ServerHandle,
    /// The handles' wakers belong to these; nothing polls them.
    _polls: Vec<mio::Poll>,
}

impl Sim {
    /// `n_cores` shards serving the application built by `server`; ids are seeded from `seed`.
    pub fn new(n_cores: usize, server: ServerBuilder, seed: u64) -> Sim {
        let def = Arc::new(server.into_def());
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
        let t0 = Instant::now();
        let shards = (0..n_cores)
            .map(|c| {
                Shard::new(
                    c as CoreId,
                    n_cores,
                    def.clone(),
                    seed.wrapping_mul(1000).wrapping_add(c as u64),
                    t0,
                )
            })
            .collect();
        // The application's handle, as `runtime::start` makes it, its hooks run before any input.
        let mut polls = Vec::new();
        let mut handles = Vec::new();
        let mut external = Vec::new();
        for _ in 0..n_cores {
            let poll = mio::Poll::new().expect("epoll instance for the simulated handle");
            let (h, rx) = CoreHandle::detached(&poll).expect("waker for the simulated handle");
            polls.push(poll);
            handles.push(h);
            external.push(rx);
        }
        let handle = ServerHandle {
            cores: Arc::new(handles),
            adapter: def.adapter.clone(),
            stats: Arc::new(crate::stats::NodeStats::new(n_cores, def.namespaces.len())),
        };
        let hooks = std::mem::take(&mut *def.on_start.lock().unwrap_or_else(|p| p.into_inner()));
        for hook in hooks {
            hook(&handle);
        }
        let mut sim = Sim {
            t0,
            elapsed: Duration::ZERO,
            shards,
            conns: Vec::new(),
            keys: HashMap::new(),
            next_key: vec![(0, 0); n_cores],
            inbox: (0..n_cores).map(|_| VecDeque::new()).collect(),
            reactions: VecDeque::new(),
            hold: false,
            sent: Vec::new(),
            http_limits,
            ws_limits,
            max_output,
            external,
            handle,
            _polls: polls,
        };
        sim.set_time_all();
        sim
    }

    // ----- clock ----------------------------------------------------------------------------

    /// Virtual time since the start.
    pub fn elapsed(&self) -> Duration {
        self.elapsed
    }

    fn now(&self) -> Instant {
        self.t0 + self.elapsed
    }

    fn set_time_all(&mut self) {
        let now = self.now();
        let wall = WALL_BASE_MS + self.elapsed.as_millis() as u64;
        for s in &mut self.shards {
            s.set_time(now, wall);
        }
    }

    /// The earliest deadline of any shard, as an offset from the start.
    pub fn next_deadline(&self) -> Option<Duration> {
        self.shards.iter().filter_map(Shard::poll_timeout).min().map(|t| t.saturating_duration_since(self.t0))
    }

    /// Move the clock forward by `d`, running every deadline that falls inside, in order, each
    /// at its exact time.
    pub fn advance(&mut self, d: Duration) {
        let target = self.elapsed + d;
        while let Some(next) = self.next_deadline()
            && next <= target
        {
            self.elapsed = next.max(self.elapsed);
            self.set_time_all();
            let now = self.now();
            for core in 0..self.shards.len() {
                if self.shards[core].poll_timeout().is_some_and(|t| t <= now) {
                    self.turn(core as CoreId, |_| {});
                }
            }
            self.run_until_idle();
        }
        self.elapsed = target;
        self.set_time_all();
    }

    pub fn advance_ms(&mut self, ms: u64) {
        self.advance(Duration::from_millis(ms));
    }

    // ----- shards and messages --------------------------------------------------------------

    /// Run `f` on core `core`'s shard as one turn (as `ShardMsg::Run` would).
    pub fn run_on(&mut self, core: CoreId, f: impl FnOnce(&mut Shard)) {
        self.turn(core, |sim| f(&mut sim.shards[core as usize]));
        self.after_input();
    }

    pub fn shard(&self, core: CoreId) -> &Shard {
        &self.shards[core as usize]
    }

    pub fn cores(&self) -> usize {
        self.shards.len()
    }

    /// Messages waiting in core `core`'s inbox.
    pub fn inbox_len(&self, core: CoreId) -> usize {
        self.inbox[core as usize].len()
    }

    /// One turn of `core` that drains its inbox (as `Core::drain_inbox`, up to 4096 items).
    pub fn deliver(&mut self, core: CoreId) {
        self.turn(core, |sim| {
            for _ in 0..4096 {
                let Some(env) = sim.inbox[core as usize].pop_front() else {
                    break;
                };
                match env {
                    Envelope::Msg(m) => sim.shards[core as usize].handle_msg(m),
                    Envelope::Handoff(id) => {
                        let key = sim.new_key(core);
                        let c = &mut sim.conns[id];
                        c.core = core;
                        c.key = key;
                        c.in_transit = false;
                        sim.keys.insert((core, key), id);
                        sim.process_input(id);
                    }
                }
            }
        });
    }

    /// The application's handle (the one its `on_start` hooks got).
    pub fn handle(&self) -> &ServerHandle {
        &self.handle
    }

    /// Move what was sent through the application's handle (`run_on`, server-wide emits) into
    /// the inboxes, in sending order per core; returns whether there was any.
    pub fn pump_external(&mut self) -> bool {
        let mut any = false;
        for (core, rx) in self.external.iter().enumerate() {
            while let Ok(msg) = rx.try_recv() {
                any = true;
                match msg {
                    CoreMsg::Shard(m) => self.inbox[core].push_back(Envelope::Msg(m)),
                    // Only the runtime hands TCP connections over.
                    CoreMsg::Handoff { .. } => unreachable!("handoff through the application handle"),
                }
            }
        }
        any
    }

    /// One turn of `core` that handles only the first message of its inbox (to order races
    /// finer than `deliver`).
    #[cfg(test)]
    pub(crate) fn deliver_one(&mut self, core: CoreId) {
        self.turn(core, |sim| {
            if let Some(Envelope::Msg(m)) = sim.inbox[core as usize].pop_front() {
                sim.shards[core as usize].handle_msg(m);
            }
        });
    }

    /// Deliver every message and client reaction until nothing is in flight.
    pub fn run_until_idle(&mut self) {
        loop {
            let mut progressed = self.pump_external();
            for core in 0..self.shards.len() {
                if !self.inbox[core].is_empty() {
                    self.deliver(core as CoreId);
                    progressed = true;
                }
            }
            while let Some((id, text)) = self.reactions.pop_front() {
                progressed = true;
                let frame = client_frame(OP_TEXT, text.as_bytes());
                self.write_now(id, &frame);
            }
            if !progressed {
                break;
            }
        }
        if let Err(e) = self.check_invariants() {
            panic!("shard invariant broken after the system went idle: {e}");
        }
    }

    /// [`Shard::check_invariants`] of every shard.
    pub fn check_invariants(&self) -> Result<(), String> {
        for (core, shard) in self.shards.iter().enumerate() {
            shard.check_invariants().map_err(|e| format!("core {core}: {e}"))?;
        }
        Ok(())
    }

    fn after_input(&mut self) {
        if !self.hold {
            self.run_until_idle();
        }
    }

    // ----- the runtime's turn ---------------------------------------------------------------

    fn turn(&mut self, core: CoreId, input: impl FnOnce(&mut Sim)) {
        input(self);
        self.shards[core as usize].handle_timeouts();
        self.settle(core);
    }

    /// `Core::settle`: flush the shard and carry out its commands until it is quiet, then
    /// write the connections.
    fn settle(&mut self, core: CoreId) {
        while self.drain_shard(core) {}
        self.flush_conns(core);
    }

    /// One round of flush, commands and outbox; returns whether the shard produced anything.
    fn drain_shard(&mut self, core: CoreId) -> bool {
        let shard = &mut self.shards[core as usize];
        shard.flush();
        let cmds = shard.take_commands();
        let outbox = shard.take_outbox();
        if cmds.is_empty() && outbox.is_empty() {
            return false;
        }
        for (to, msg) in outbox {
            self.sent.push(match &msg {
                ShardMsg::Occupancy { room, present, .. } => {
                    Sent::Occupancy { from: core, to, room: room.to_string(), present: *present }
                }
                ShardMsg::Broadcast(_) => Sent::Broadcast { from: core, to },
                _ => Sent::Other { from: core, to },
            });
            self.inbox[to as usize].push_back(Envelope::Msg(msg));
        }
        for cmd in cmds {
            self.apply(core, cmd);
        }
        true
    }

    /// `Core::flush_dirty`: hand output to the clients that read, close what finished closing.
    fn flush_conns(&mut self, core: CoreId) {
        loop {
            for id in 0..self.conns.len() {
                let c = &mut self.conns[id];
                if c.core != core || c.closed || c.in_transit {
                    continue;
                }
                if c.reading && !c.out.is_empty() {
                    let out = std::mem::take(&mut c.out);
                    c.rx.extend_from_slice(&out);
                    self.parse_client(id);
                }
                let c = &self.conns[id];
                // `Core::check_output`, after the write attempt: what the client did not take
                // beyond the limit makes it a slow consumer.
                if !c.closed && c.out.len() > self.max_output {
                    let key = c.key;
                    if let Some(session) = c.state.session() {
                        self.shards[core as usize].handle_slow_consumer(key, session);
                    }
                    self.close(id, true);
                    continue;
                }
                if c.closing && c.out.is_empty() {
                    self.close(id, false);
                }
            }
            if !self.drain_shard(core) {
                return;
            }
        }
    }

    fn new_key(&mut self, core: CoreId) -> ConnKey {
        let k = &mut self.next_key[core as usize];
        k.0 += 1;
        k.1 = k.1.wrapping_add(1);
        ConnKey { idx: k.0, generation: k.1 }
    }

    fn conn_of(&self, core: CoreId, key: ConnKey) -> Option<ConnId> {
        self.keys.get(&(core, key)).copied()
    }

    /// `Core::apply`.
    fn apply(&mut self, core: CoreId, cmd: ConnCmd) {
        match cmd {
            ConnCmd::Frame(key, o) => {
                let Some(id) = self.conn_of(core, key) else {
                    return;
                };
                let c = &mut self.conns[id];
                c.cmds.push(CmdKind::Frame);
                c.out.extend_from_slice(o.ws_frame());
            }
            ConnCmd::Bytes(key, bytes) => {
                let Some(id) = self.conn_of(core, key) else {
                    return;
                };
                let c = &mut self.conns[id];
                c.cmds.push(CmdKind::Bytes);
                c.out.extend_from_slice(&bytes);
            }
            ConnCmd::Unpark(key) => {
                let Some(id) = self.conn_of(core, key) else {
                    return;
                };
                let c = &mut self.conns[id];
                c.cmds.push(CmdKind::Unpark);
                if let ServerSide::Parked { keep_alive, .. } = c.state {
                    c.state = ServerSide::Http;
                    if !keep_alive {
                        c.closing = true;
                    }
                }
                self.process_input(id);
            }
            ConnCmd::Close(key) => {
                let Some(id) = self.conn_of(core, key) else {
                    return;
                };
                let c = &mut self.conns[id];
                c.cmds.push(CmdKind::Close);
                if matches!(c.state, ServerSide::Ws { .. }) {
                    websocket::encode_close(1000, "", &mut c.out);
                }
                c.state = ServerSide::Http;
                c.closing = true;
            }
        }
    }

    /// `Core::close`: drop the connection and tell the shard when it carried a session.
    fn close(&mut self, id: ConnId, error: bool) {
        let c = &mut self.conns[id];
        if c.closed {
            return;
        }
        c.closed = true;
        let (core, key) = (c.core, c.key);
        self.keys.remove(&(core, key));
        if let Some(session) = c.state.session() {
            self.shards[core as usize].handle_conn_closed(key, session, error);
        }
    }

    /// `Core::process_input`.
    fn process_input(&mut self, id: ConnId) {
        loop {
            let c = &self.conns[id];
            if c.closed || c.in_transit || c.closing || c.rbuf.is_empty() {
                return;
            }
            match c.state {
                ServerSide::Http => {
                    if !self.process_http(id) {
                        return;
                    }
                }
                ServerSide::Parked { .. } => return,
                ServerSide::Ws { .. } => {
                    self.process_ws(id);
                    return;
                }
            }
        }
    }

    /// `Core::refuse`: answer and close.
    fn refuse(&mut self, id: ConnId, response: &[u8]) {
        let c = &mut self.conns[id];
        c.rbuf.clear();
        c.out.extend_from_slice(response);
        c.closing = true;
    }

    /// `Core::process_http`: one request; returns whether to go on with the buffer.
    fn process_http(&mut self, id: ConnId) -> bool {
        let c = &mut self.conns[id];
        let core = c.core as usize;
        let (req, used) = match parse_request(&c.rbuf, &self.http_limits) {
            Ok(Parse::Partial) => return false,
            Ok(Parse::Complete(req, used)) => (req, used),
            Ok(Parse::Oversized(req)) => {
                let body = self.shards[core].handle_oversized_post(&req);
                self.refuse(id, &body);
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
                self.refuse(id, &body);
                return false;
            }
        };
        let outcome = self.shards[core].handle_request(c.key, &req, Some(c.remote));
        let c = &mut self.conns[id];
        match outcome {
            RequestOutcome::Handoff(target) => {
                // `Core::handoff` moves the stream, the unread input and the unwritten output
                // (which the new core writes first).
                let from = c.core;
                self.keys.remove(&(from, c.key));
                c.in_transit = true;
                self.sent.push(Sent::Handoff { from, to: target });
                self.inbox[target as usize].push_back(Envelope::Handoff(id));
                return false;
            }
            RequestOutcome::Respond(bytes) => {
                c.rbuf.drain(..used);
                c.out.extend_from_slice(&bytes);
                if !req.keep_alive {
                    c.closing = true;
                }
            }
            RequestOutcome::RespondClose(bytes) => {
                c.rbuf.drain(..used);
                c.out.extend_from_slice(&bytes);
                c.closing = true;
            }
            RequestOutcome::Park => {
                c.rbuf.drain(..used);
                let sid = req.query_param("sid").map(|s| s.into_owned()).unwrap_or_default();
                match self.shards[core].session_of_sid(&sid) {
                    Some(session) => {
                        c.state = ServerSide::Parked { session: Some(session), keep_alive: req.keep_alive }
                    }
                    None => c.closing = true,
                }
                return false;
            }
            RequestOutcome::Defer => {
                c.rbuf.drain(..used);
                c.state = ServerSide::Parked { session: None, keep_alive: req.keep_alive };
                return false;
            }
            RequestOutcome::WebSocket { response, session } => {
                c.rbuf.drain(..used);
                c.out.extend_from_slice(&response);
                c.state =
                    ServerSide::Ws { session, decoder: Box::new(websocket::Decoder::new(self.ws_limits)) };
            }
        }
        true
    }

    /// `Core::process_ws`.
    fn process_ws(&mut self, id: ConnId) {
        let mut pos = 0;
        loop {
            let c = &mut self.conns[id];
            let (core, key) = (c.core as usize, c.key);
            let ServerSide::Ws { session, decoder } = &mut c.state else {
                break;
            };
            let session = *session;
            match decoder.decode(&c.rbuf[pos..]) {
                Ok((msg, used)) => {
                    pos += used;
                    let Some(msg) = msg else {
                        if used == 0 {
                            break;
                        }
                        continue;
                    };
                    match msg {
                        Message::Text(t) => self.shards[core].handle_ws(key, session, WsInput::Text(&t)),
                        Message::Binary(b) => self.shards[core].handle_ws(key, session, WsInput::Binary(&b)),
                        Message::Ping(p) => {
                            websocket::encode_frame(OpCode::Pong, &p, &mut c.out);
                        }
                        Message::Pong(_) => {}
                        Message::Close(_, _) => {
                            websocket::encode_close(1000, "", &mut c.out);
                            c.closing = true;
                            c.state = ServerSide::Http;
                            self.shards[core].handle_conn_closed(key, session, false);
                            break;
                        }
                    }
                }
                Err(e) => {
                    websocket::encode_close(e.close_code(), "", &mut c.out);
                    c.closing = true;
                    c.state = ServerSide::Http;
                    self.shards[core].handle_conn_closed(key, session, true);
                    pos = c.rbuf.len();
                    break;
                }
            }
        }
        let c = &mut self.conns[id];
        let pos = pos.min(c.rbuf.len());
        c.rbuf.drain(..pos);
    }

    // ----- the client side of connections ---------------------------------------------------

    /// Parse what the client read: HTTP responses, then frames once it saw a 101.
    fn parse_client(&mut self, id: ConnId) {
        loop {
            let c = &mut self.conns[id];
            if c.rx.is_empty() {
                return;
            }
            if !c.client_ws {
                let Some((resp, used)) = parse_response(&c.rx) else {
                    return;
                };
                c.rx.drain(..used);
                if resp.status == 101 {
                    c.client_ws = true;
                }
                c.responses.push_back(resp);
            } else {
                let Some((msg, used)) = parse_server_frame(&c.rx) else {
                    return;
                };
                c.rx.drain(..used);
                if c.auto_pong && msg == WsMsg::Text("2".into()) {
                    self.reactions.push_back((id, "3".into()));
                }
                c.frames.push_back(msg);
            }
        }
    }

    /// A new TCP connection accepted by `core`, from 10.0.0.1.
    pub fn connect(&mut self, core: CoreId) -> ConnId {
        let port = 40000 + self.conns.len() as u16;
        self.connect_from(core, SocketAddr::from(([10, 0, 0, 1], port)))
    }

    /// A new TCP connection accepted by `core`, from `remote`.
    pub fn connect_from(&mut self, core: CoreId, remote: SocketAddr) -> ConnId {
        let key = self.new_key(core);
        let id = self.conns.len();
        self.conns.push(SimConn {
            core,
            key,
            remote,
            state: ServerSide::Http,
            rbuf: Vec::new(),
            out: Vec::new(),
            closing: false,
            closed: false,
            in_transit: false,
            reading: true,
            rx: Vec::new(),
            client_ws: false,
            responses: VecDeque::new(),
            frames: VecDeque::new(),
            auto_pong: false,
            cmds: Vec::new(),
        });
        self.keys.insert((core, key), id);
        id
    }

    fn write_now(&mut self, id: ConnId, bytes: &[u8]) {
        let c = &mut self.conns[id];
        if c.closed {
            return;
        }
        c.rbuf.extend_from_slice(bytes);
        if c.in_transit {
            return;
        }
        let core = c.core;
        self.turn(core, |sim| sim.process_input(id));
    }

    /// The client writes raw bytes on its connection (ignored once the server closed it).
    pub fn client_write(&mut self, id: ConnId, bytes: &[u8]) {
        self.write_now(id, bytes);
        self.after_input();
    }

    /// The client closes its connection (the server reads EOF).
    pub fn client_close(&mut self, id: ConnId) {
        let c = &self.conns[id];
        if c.closed || c.in_transit {
            return;
        }
        let core = c.core;
        self.turn(core, |sim| {
            sim.process_input(id);
            sim.close(id, false);
        });
        self.after_input();
    }

    /// Whether the client reads its connection; a stalled reader lets output pile up.
    pub fn set_reading(&mut self, id: ConnId, reading: bool) {
        self.conns[id].reading = reading;
    }

    pub fn set_auto_pong(&mut self, id: ConnId, on: bool) {
        self.conns[id].auto_pong = on;
    }

    /// Whether the server has dropped the connection.
    pub fn is_closed(&self, id: ConnId) -> bool {
        self.conns[id].closed
    }

    /// Whether a GET poll is parked on the connection.
    pub fn is_parked(&self, id: ConnId) -> bool {
        matches!(self.conns[id].state, ServerSide::Parked { .. })
    }

    /// The core that holds the connection now.
    pub fn core_of(&self, id: ConnId) -> CoreId {
        self.conns[id].core
    }

    /// Bytes written by the server and not read by the client.
    pub fn pending_output(&self, id: ConnId) -> usize {
        self.conns[id].out.len()
    }

    /// The `ConnCmd`s applied to the connection so far.
    pub fn cmds(&self, id: ConnId) -> &[CmdKind] {
        &self.conns[id].cmds
    }

    pub fn take_response(&mut self, id: ConnId) -> Option<HttpResponse> {
        self.conns[id].responses.pop_front()
    }

    /// Every WebSocket message the client received since the last call.
    pub fn ws_take(&mut self, id: ConnId) -> Vec<WsMsg> {
        self.conns[id].frames.drain(..).collect()
    }

    /// The data messages (text and binary) the client received, pings included, without
    /// control frames.
    pub fn ws_packets(&mut self, id: ConnId) -> Vec<Pkt> {
        self.ws_take(id)
            .into_iter()
            .filter_map(|m| match m {
                WsMsg::Text(t) => Some(Pkt::Text(t)),
                WsMsg::Binary(b) => Some(Pkt::Bin(b)),
                _ => None,
            })
            .collect()
    }

    /// The text messages the client received, pings left out.
    pub fn ws_texts(&mut self, id: ConnId) -> Vec<String> {
        self.ws_take(id)
            .into_iter()
            .filter_map(|m| match m {
                WsMsg::Text(t) if t != "2" => Some(t),
                _ => None,
            })
            .collect()
    }

    // ----- simulated clients ----------------------------------------------------------------

    /// Send a request on a new connection to `core`; returns the connection.
    pub fn request(&mut self, core: CoreId, raw: &[u8]) -> ConnId {
        let id = self.connect(core);
        self.client_write(id, raw);
        id
    }

    /// WebSocket handshake (no sid) on `core`: checks the 101 and the open packet.
    pub fn ws_open(&mut self, core: CoreId) -> WsClient {
        let conn = self.request(core, &ws_request(None));
        let r = self.take_response(conn).expect("handshake response");
        assert_eq!(r.status, 101, "{r:?}");
        let msgs = self.ws_take(conn);
        let Some(WsMsg::Text(open)) = msgs.first() else {
            panic!("no open packet: {msgs:?}");
        };
        let open_raw = open.strip_prefix('0').expect("open packet").to_owned();
        let open: serde_json::Value = serde_json::from_str(&open_raw).expect("JSON");
        let sid = open["sid"].as_str().expect("sid").to_owned();
        WsClient { conn, sid, open, open_raw }
    }

    /// WebSocket handshake then CONNECT to `/`; returns the client and the socket id.
    pub fn ws_connected(&mut self, core: CoreId) -> (WsClient, String) {
        let c = self.ws_open(core);
        self.ws_send(c.conn, "40");
        let texts = self.ws_texts(c.conn);
        let sid = connect_ok_sid(&texts[0], "/");
        (c, sid)
    }

    /// Send a text message over the client's WebSocket.
    pub fn ws_send(&mut self, conn: ConnId, text: &str) {
        self.client_write(conn, &client_frame(OP_TEXT, text.as_bytes()));
    }

    pub fn ws_send_bin(&mut self, conn: ConnId, data: &[u8]) {
        self.client_write(conn, &client_frame(OP_BINARY, data));
    }

    /// The client sends a WebSocket close frame.
    pub fn ws_send_close(&mut self, conn: ConnId) {
        let mut payload = Vec::new();
        payload.extend_from_slice(&1000u16.to_be_bytes());
        self.client_write(conn, &client_frame(OP_CLOSE, &payload));
    }

    /// Polling handshake on `core`: checks the 200 and the open packet.
    pub fn poll_open(&mut self, core: CoreId) -> PollClient {
        let conn = self.request(core, &get_request(None));
        let r = self.take_response(conn).expect("handshake response");
        assert_eq!(r.status, 200, "{r:?}");
        let pkts = r.packets();
        let Some(Pkt::Text(open)) = pkts.first() else {
            panic!("no open packet: {pkts:?}");
        };
        let open_raw = open.strip_prefix('0').expect("open packet").to_owned();
        let open: serde_json::Value = serde_json::from_str(&open_raw).expect("JSON");
        let sid = open["sid"].as_str().expect("sid").to_owned();
        PollClient { sid, open, open_raw }
    }

    /// A GET poll for `sid` on a new connection to `core`; the answer may be parked.
    pub fn poll_get(&mut self, core: CoreId, sid: &str) -> ConnId {
        self.request(core, &get_request(Some(sid)))
    }

    /// A GET poll that must be answered at once; returns its packets.
    pub fn poll_now(&mut self, core: CoreId, sid: &str) -> Vec<Pkt> {
        let conn = self.poll_get(core, sid);
        let r = self.take_response(conn).expect("GET answered at once");
        assert_eq!(r.status, 200, "{r:?}");
        r.packets()
    }

    /// A POST of `packets` for `sid` on a new connection to `core`; returns the response.
    pub fn poll_post(&mut self, core: CoreId, sid: &str, packets: &[Pkt]) -> HttpResponse {
        let conn = self.request(core, &post_request(sid, &encode_payload(packets)));
        self.take_response(conn).expect("POST answered")
    }

    /// A POST that must be accepted (`200 ok`).
    pub fn post_ok(&mut self, core: CoreId, sid: &str, packets: &[Pkt]) {
        let r = self.poll_post(core, sid, packets);
        assert_eq!((r.status, r.body_str()), (200, "ok"), "{r:?}");
    }

    /// The packets answering a GET that was parked on `conn`, once it has been answered.
    pub fn poll_answer(&mut self, conn: ConnId) -> Option<Vec<Pkt>> {
        let r = self.take_response(conn)?;
        assert_eq!(r.status, 200, "{r:?}");
        Some(r.packets())
    }

    /// Open a WebSocket carrying `sid` for the upgrade (a probe); returns the connection.
    pub fn ws_probe(&mut self, core: CoreId, sid: &str) -> ConnId {
        self.request(core, &ws_request(Some(sid)))
    }
}

/// A WebSocket client after its handshake.
pub struct WsClient {
    pub conn: ConnId,
    pub sid: String,
    pub open: serde_json::Value,
    /// The open packet's JSON exactly as sent.
    pub open_raw: String,
}

/// A polling client after its handshake (it opens a connection per request).
pub struct PollClient {
    pub sid: String,
    pub open: serde_json::Value,
    /// The open packet's JSON exactly as sent.
    pub open_raw: String,
}

// ----- wire helpers -------------------------------------------------------------------------

fn query(transport: &str, sid: Option<&str>) -> String {
    match sid {
        Some(s) => format!("{PATH}?EIO=4&transport={transport}&sid={s}"),
        None => format!("{PATH}?EIO=4&transport={transport}"),
    }
}

pub fn get_request(sid: Option<&str>) -> Vec<u8> {
    format!("GET {} HTTP/1.1\r\nHost: sim\r\n\r\n", query("polling", sid)).into_bytes()
}

pub fn post_request(sid: &str, body: &[u8]) -> Vec<u8> {
    let mut v = format!(
        "POST {} HTTP/1.1\r\nHost: sim\r\nContent-Type: text/plain;charset=UTF-8\r\n\
         Content-Length: {}\r\n\r\n",
        query("polling", Some(sid)),
        body.len()
    )
    .into_bytes();
    v.extend_from_slice(body);
    v
}

pub fn ws_request(sid: Option<&str>) -> Vec<u8> {
    format!(
        "GET {} HTTP/1.1\r\nHost: sim\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n",
        query("websocket", sid)
    )
    .into_bytes()
}

/// A masked client frame (RFC 6455 section 5.3), FIN set.
pub fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut v = vec![0x80 | opcode];
    let n = payload.len();
    if n < 126 {
        v.push(0x80 | n as u8);
    } else if n <= u16::MAX as usize {
        v.push(0x80 | 126);
        v.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        v.push(0x80 | 127);
        v.extend_from_slice(&(n as u64).to_be_bytes());
    }
    v.extend_from_slice(&mask);
    v.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    v
}

/// One unmasked server frame from the front of `buf`: the message and the bytes it used.
fn parse_server_frame(buf: &[u8]) -> Option<(WsMsg, usize)> {
    if buf.len() < 2 {
        return None;
    }
    assert_eq!(buf[0] & 0x80, 0x80, "server frames are never fragmented");
    assert_eq!(buf[1] & 0x80, 0, "server frames are never masked");
    let (len, mut pos) = match buf[1] & 0x7f {
        126 => (u16::from_be_bytes(buf.get(2..4)?.try_into().ok()?) as usize, 4),
        127 => (u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?) as usize, 10),
        n => (n as usize, 2),
    };
    let payload = buf.get(pos..pos + len)?.to_vec();
    pos += len;
    let msg = match buf[0] & 0x0f {
        1 => WsMsg::Text(String::from_utf8(payload).expect("UTF-8 text frame")),
        2 => WsMsg::Binary(payload),
        8 => WsMsg::Close((payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]))),
        9 => WsMsg::Ping,
        10 => WsMsg::Pong,
        op => panic!("unexpected opcode {op}"),
    };
    Some((msg, pos))
}

/// One HTTP response from the front of `buf`: the response and the bytes it used.
fn parse_response(buf: &[u8]) -> Option<(HttpResponse, usize)> {
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&buf[..head_end]).expect("ASCII head");
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let status: u16 = status_line.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status code");
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (n, v) = l.split_once(':').expect("header line");
            (n.trim().to_ascii_lowercase(), v.trim().to_owned())
        })
        .collect();
    let len: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .map(|(_, v)| v.parse().expect("Content-Length"))
        .unwrap_or(0);
    let body = buf.get(head_end..head_end + len)?.to_vec();
    Some((HttpResponse { status, headers, body }, head_end + len))
}

/// Decode a long-polling payload: records joined by `\x1e`, binary ones as `b<base64>`.
pub fn decode_payload(body: &[u8]) -> Vec<Pkt> {
    if body.is_empty() {
        return Vec::new();
    }
    body.split(|&b| b == 0x1e)
        .map(|r| match r.split_first() {
            Some((b'b', b64)) => Pkt::Bin(BASE64.decode(b64).expect("base64 record")),
            _ => Pkt::Text(String::from_utf8(r.to_vec()).expect("UTF-8 record")),
        })
        .collect()
}

pub fn encode_payload(packets: &[Pkt]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, p) in packets.iter().enumerate() {
        if i > 0 {
            out.push(0x1e);
        }
        match p {
            Pkt::Text(t) => out.extend_from_slice(t.as_bytes()),
            Pkt::Bin(b) => {
                out.push(b'b');
                out.extend_from_slice(BASE64.encode(b).as_bytes());
            }
        }
    }
    out
}

/// The socket id in a CONNECT answer `40[/ns,]{"sid":"..."}`.
pub fn connect_ok_sid(text: &str, ns: &str) -> String {
    let prefix = if ns == "/" { "40".to_owned() } else { format!("40{ns},") };
    let json = text.strip_prefix(&prefix).unwrap_or_else(|| panic!("not a CONNECT answer for {ns}: {text}"));
    let v: serde_json::Value = serde_json::from_str(json).expect("JSON");
    assert_eq!(v.as_object().map(|o| o.len()), Some(1), "{text}");
    v["sid"].as_str().expect("sid").to_owned()
}

/// What handlers observed, shared with the test (handlers must be `Send + Sync`).
#[derive(Clone, Default)]
pub struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    pub fn push(&self, s: impl Into<String>) {
        self.0.lock().expect("log").push(s.into());
    }

    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().expect("log"))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use bytes::Bytes;
    use serde_json::json;

    use super::*;
    use crate::api::{AckError, ConnectError, DisconnectReason, Event, Socket};
    use crate::config::Config;
    use crate::http::cors::Cors;

    // ----- fixtures ---------------------------------------------------------------------------

    /// The conformance timings: ping every 300 ms, 200 ms to answer, connect within 1 s.
    fn conformance() -> Config {
        let mut cfg = Config::default();
        crate::apps::echo::configure(&mut cfg);
        cfg
    }

    /// The conformance app itself on `n` cores.
    fn echo_sim(n: usize) -> Sim {
        let mut b = ServerBuilder::new(conformance());
        crate::apps::echo::install(&mut b);
        Sim::new(n, b, 7)
    }

    /// The test application: room events as in the echo app, plus what the tests observe.
    ///
    /// `/`: connect and disconnect are logged as `connect <id>` / `disconnect <id> <reason>`;
    /// `message` -> `message-back`; `join`/`leave` room (acked `true`); `to-room` room payload
    /// -> `room-msg` payload to the room's other members; `shout` except-room payload ->
    /// `shout-msg` to everyone else but the members of except-room; `ask` ms -> `question` with
    /// an ack awaited `ms`, its outcome logged as `ack ok <args>`, `ack timeout` or
    /// `ack disconnected connected=<bool>`; `bye` -> `bye-bye` then a server disconnect that
    /// closes the session.
    /// `/custom`: connect and disconnect logged. `/private`: middleware wants auth
    /// `{"token":"secret"}`, else refuses with data `{"code":42}`.
    fn app(cfg: Config, log: &Log) -> ServerBuilder {
        let mut b = ServerBuilder::new(cfg);
        let l = log.clone();
        b.namespace("/", move |ns| {
            let l1 = l.clone();
            ns.on_connect(move |s: &mut Socket<'_>| l1.push(format!("connect {}", s.id())));
            let l2 = l.clone();
            ns.on_disconnect(move |s: &mut Socket<'_>, r: DisconnectReason| {
                l2.push(format!("disconnect {} {r}", s.id()))
            });
            ns.on("message", |s: &mut Socket<'_>, ev: Event| {
                s.emit_raw("message-back", ev.args_raw(), ev.attachments.clone());
            });
            ns.on("join", |s: &mut Socket<'_>, ev: Event| {
                let ok = ev.arg::<String>(0).is_some_and(|r| s.join(&r));
                if let Some(id) = ev.ack() {
                    s.ack(id, &(ok,));
                }
            });
            ns.on("leave", |s: &mut Socket<'_>, ev: Event| {
                if let Some(r) = ev.arg::<String>(0) {
                    s.leave(&r);
                }
                if let Some(id) = ev.ack() {
                    s.ack(id, &(true,));
                }
            });
            ns.on("to-room", |s: &mut Socket<'_>, ev: Event| {
                if let (Some(room), Some(payload)) = (ev.arg::<String>(0), ev.arg_raw(1)) {
                    s.to(&room).emit_raw("room-msg", payload, ev.attachments.clone());
                }
            });
            ns.on("shout", |s: &mut Socket<'_>, ev: Event| {
                if let (Some(room), Some(payload)) = (ev.arg::<String>(0), ev.arg_raw(1)) {
                    s.broadcast().except(&room).emit_raw("shout-msg", payload, Vec::new());
                }
            });
            let l3 = l.clone();
            ns.on("ask", move |s: &mut Socket<'_>, ev: Event| {
                let ms = ev.arg::<u64>(0).unwrap_or(1000);
                let l = l3.clone();
                s.emit_with_ack(
                    "question",
                    &(),
                    Duration::from_millis(ms),
                    move |s: &mut Socket<'_>, res| match res {
                        Ok(r) => l.push(format!("ack ok {}", r.args.raw())),
                        Err(AckError::Timeout) => l.push("ack timeout"),
                        Err(AckError::Disconnected) => {
                            l.push(format!("ack disconnected connected={}", s.connected()))
                        }
                    },
                );
            });
            ns.on("bye", |s: &mut Socket<'_>, _ev: Event| {
                s.emit("bye-bye", &());
                s.disconnect(true);
            });
        });
        let l = log.clone();
        b.namespace("/custom", move |ns| {
            let l1 = l.clone();
            ns.on_connect(move |_s: &mut Socket<'_>| l1.push("connect /custom"));
            let l2 = l.clone();
            ns.on_disconnect(move |_s: &mut Socket<'_>, r: DisconnectReason| {
                l2.push(format!("disconnect /custom {r}"))
            });
        });
        b.namespace("/private", |ns| {
            ns.middleware(|hs| {
                if hs.auth::<serde_json::Value>().is_some_and(|a| a["token"] == "secret") {
                    Ok(())
                } else {
                    Err(ConnectError::new("not authorized").with_data(json!({"code": 42})))
                }
            });
        });
        b
    }

    fn sim_with(n: usize, cfg: Config) -> (Sim, Log) {
        let log = Log::default();
        let sim = Sim::new(n, app(cfg, &log), 11);
        (sim, log)
    }

    /// A polling client connected to `/` with nothing waiting for it; returns it and the
    /// socket id.
    fn poll_connected(sim: &mut Sim, core: CoreId) -> (PollClient, String) {
        let p = sim.poll_open(core);
        sim.post_ok(core, &p.sid, &[Pkt::text("40")]);
        let pkts = sim.poll_now(core, &p.sid);
        let Some(Pkt::Text(first)) = pkts.first() else {
            panic!("{pkts:?}");
        };
        let id = connect_ok_sid(first, "/");
        (p, id)
    }

    fn texts(pkts: &[Pkt]) -> Vec<&str> {
        pkts.iter()
            .map(|p| match p {
                Pkt::Text(t) => t.as_str(),
                Pkt::Bin(_) => panic!("binary packet in {pkts:?}"),
            })
            .collect()
    }

    fn occupancy(sim: &Sim) -> Vec<(CoreId, CoreId, String, bool)> {
        sim.sent
            .iter()
            .filter_map(|s| match s {
                Sent::Occupancy { from, to, room, present } => Some((*from, *to, room.clone(), *present)),
                _ => None,
            })
            .collect()
    }

    fn broadcasts_to(sim: &Sim, core: CoreId) -> usize {
        sim.sent.iter().filter(|s| matches!(s, Sent::Broadcast { to, .. } if *to == core)).count()
    }

    // ----- 1. WebSocket handshake -----------------------------------------------------------

    #[test]
    fn websocket_handshake_sends_reference_open_packet_and_echoes() {
        let mut sim = echo_sim(1);
        let c = sim.ws_open(0);
        assert_eq!(
            c.open_raw,
            format!(
                r#"{{"sid":"{}","upgrades":[],"pingInterval":300,"pingTimeout":200,"maxPayload":1000000}}"#,
                c.sid
            )
        );
        let keys: Vec<&String> = c.open.as_object().expect("object").keys().collect();
        assert_eq!(keys.len(), 5);
        assert_eq!(sim.shard(0).session_count(), 1);

        sim.ws_send(c.conn, "40");
        let t = sim.ws_texts(c.conn);
        assert_eq!(t.len(), 2, "{t:?}");
        let id = connect_ok_sid(&t[0], "/");
        assert_eq!(id.len(), crate::engineio::sid::SID_LEN);
        assert_ne!(id, c.sid, "the socket id is not the session id");
        assert_eq!(t[1], r#"42["auth",{}]"#);

        sim.ws_send(c.conn, r#"42["message","hi",1,{"a":[true]}]"#);
        assert_eq!(sim.ws_texts(c.conn), [r#"42["message-back","hi",1,{"a":[true]}]"#]);
    }

    #[test]
    fn websocket_connect_passes_auth_to_handshake() {
        let mut sim = echo_sim(1);
        let c = sim.ws_open(0);
        sim.ws_send(c.conn, r#"40{"token":"abc"}"#);
        let t = sim.ws_texts(c.conn);
        assert_eq!(t[1], r#"42["auth",{"token":"abc"}]"#);
    }

    // ----- 2. polling -----------------------------------------------------------------------

    #[test]
    fn polling_round_trip_parks_get_until_something_is_sent() {
        let mut sim = echo_sim(1);
        let p = sim.poll_open(0);
        assert_eq!(p.open["upgrades"], json!(["websocket"]));
        assert_eq!(
            p.open_raw,
            format!(
                r#"{{"sid":"{}","upgrades":["websocket"],"pingInterval":300,"pingTimeout":200,"maxPayload":1000000}}"#,
                p.sid
            )
        );
        sim.post_ok(0, &p.sid, &[Pkt::text("40")]);
        let pkts = sim.poll_now(0, &p.sid);
        let t = texts(&pkts);
        assert_eq!(t.len(), 2, "{t:?}");
        connect_ok_sid(t[0], "/");
        assert_eq!(t[1], r#"42["auth",{}]"#);

        // Nothing queued: the GET parks, with no command for its connection yet.
        let get = sim.poll_get(0, &p.sid);
        assert!(sim.is_parked(get));
        assert!(sim.take_response(get).is_none());
        assert!(sim.cmds(get).is_empty());

        sim.post_ok(0, &p.sid, &[Pkt::text(r#"42["message","x"]"#)]);
        assert_eq!(sim.cmds(get), [CmdKind::Bytes, CmdKind::Unpark]);
        let r = sim.take_response(get).expect("answered");
        assert_eq!(r.header("content-type"), Some("text/plain; charset=UTF-8"));
        assert_eq!(r.header("connection"), Some("keep-alive"));
        assert_eq!(r.packets(), [Pkt::text(r#"42["message-back","x"]"#)]);
        // The connection reads requests again.
        sim.client_write(get, &get_request(Some(&p.sid)));
        assert!(sim.is_parked(get));
        sim.post_ok(0, &p.sid, &[Pkt::text(r#"42["message","y"]"#)]);
        assert!(!sim.is_parked(get));
        assert_eq!(sim.poll_answer(get).expect("answered"), [Pkt::text(r#"42["message-back","y"]"#)]);
        assert!(!sim.is_closed(get), "keep-alive connection stays open");
    }

    #[test]
    fn polling_post_carries_several_packets() {
        let mut sim = echo_sim(1);
        let p = sim.poll_open(0);
        sim.post_ok(
            0,
            &p.sid,
            &[Pkt::text("40"), Pkt::text(r#"42["message",1]"#), Pkt::text(r#"42["message",2]"#)],
        );
        let pkts = sim.poll_now(0, &p.sid);
        let t = texts(&pkts);
        assert_eq!(t.len(), 4, "{t:?}");
        assert_eq!(t[1..], [r#"42["auth",{}]"#, r#"42["message-back",1]"#, r#"42["message-back",2]"#]);
    }

    #[test]
    fn parked_get_aborted_by_client_closes_session() {
        let (mut sim, log) = sim_with(1, Config::default());
        let (p, id) = poll_connected(&mut sim, 0);
        let get = sim.poll_get(0, &p.sid);
        assert!(sim.is_parked(get));
        sim.client_close(get);
        assert_eq!(sim.shard(0).session_count(), 0);
        assert!(log.take().contains(&format!("disconnect {id} transport close")));
    }

    // ----- 3. heartbeat ---------------------------------------------------------------------

    #[test]
    fn answering_client_stays_connected_over_ten_intervals() {
        let (mut sim, log) = sim_with(1, conformance());
        let (c, _) = sim.ws_connected(0);
        sim.set_auto_pong(c.conn, true);
        sim.advance_ms(10 * 300 + 150);
        let pings = sim.ws_take(c.conn).iter().filter(|m| **m == WsMsg::Text("2".into())).count();
        assert_eq!(pings, 10);
        assert!(!sim.is_closed(c.conn));
        assert_eq!(sim.shard(0).session_count(), 1);
        assert!(!log.take().iter().any(|l| l.starts_with("disconnect")));
    }

    #[test]
    fn silent_websocket_client_is_closed_at_interval_plus_timeout() {
        let (mut sim, log) = sim_with(1, conformance());
        let (c, id) = sim.ws_connected(0);
        sim.advance_ms(300);
        assert_eq!(sim.ws_take(c.conn), [WsMsg::Text("2".into())]);
        sim.advance_ms(199);
        assert!(!sim.is_closed(c.conn));
        sim.advance_ms(1);
        assert_eq!(sim.elapsed(), Duration::from_millis(500));
        assert!(sim.is_closed(c.conn));
        assert_eq!(sim.ws_take(c.conn), [WsMsg::Close(Some(1000))]);
        assert_eq!(sim.shard(0).session_count(), 0);
        assert_eq!(sim.shard(0).socket_count(), 0);
        assert!(log.take().contains(&format!("disconnect {id} ping timeout")));
    }

    #[test]
    fn client_that_stops_answering_is_closed_one_timeout_after_last_ping() {
        let (mut sim, log) = sim_with(1, conformance());
        let (c, id) = sim.ws_connected(0);
        sim.set_auto_pong(c.conn, true);
        // Pings at 300, 600, 900 are answered at once.
        sim.advance_ms(1000);
        sim.set_auto_pong(c.conn, false);
        // Ping at 1200, unanswered: closed at 1400.
        sim.advance_ms(399);
        assert!(!sim.is_closed(c.conn));
        sim.advance_ms(1);
        assert!(sim.is_closed(c.conn));
        assert!(log.take().contains(&format!("disconnect {id} ping timeout")));
    }

    #[test]
    fn late_pong_moves_next_ping_one_interval_after_it() {
        let (mut sim, _log) = sim_with(1, conformance());
        let (c, _) = sim.ws_connected(0);
        sim.advance_ms(300);
        assert_eq!(sim.ws_texts(c.conn), Vec::<String>::new());
        sim.advance_ms(150);
        sim.ws_send(c.conn, "3");
        // The next ping is due 300 ms after the pong, at 750.
        sim.advance_ms(299);
        assert!(sim.ws_take(c.conn).is_empty(), "no ping before 750 ms ({:?})", sim.elapsed());
        sim.advance_ms(1);
        assert_eq!(sim.ws_take(c.conn), [WsMsg::Text("2".into())]);
    }

    #[test]
    fn polling_client_without_pong_is_closed_with_close_packet() {
        let (mut sim, log) = sim_with(1, conformance());
        let (p, id) = poll_connected(&mut sim, 0);
        let get = sim.poll_get(0, &p.sid);
        sim.advance_ms(300);
        assert_eq!(sim.poll_answer(get).expect("ping"), [Pkt::text("2")]);
        let get = sim.poll_get(0, &p.sid);
        sim.advance_ms(199);
        assert!(sim.is_parked(get));
        sim.advance_ms(1);
        assert_eq!(sim.poll_answer(get).expect("close"), [Pkt::text("1")]);
        assert!(log.take().contains(&format!("disconnect {id} ping timeout")));
        let r = sim.poll_post(0, &p.sid, &[Pkt::text("3")]);
        assert_eq!(r.status, 400);
        assert_eq!(r.body_str(), r#"{"code":1,"message":"Session ID unknown"}"#);
    }

    #[test]
    fn polling_client_answering_pongs_stays_connected() {
        let (mut sim, log) = sim_with(1, conformance());
        let (p, _) = poll_connected(&mut sim, 0);
        for _ in 0..10 {
            let get = sim.poll_get(0, &p.sid);
            // Step from deadline to deadline (some are stale) until the ping arrives.
            let answer = loop {
                if let Some(a) = sim.poll_answer(get) {
                    break a;
                }
                let next = sim.next_deadline().expect("a deadline") - sim.elapsed();
                sim.advance(next);
            };
            assert_eq!(answer, [Pkt::text("2")]);
            sim.advance_ms(20);
            sim.post_ok(0, &p.sid, &[Pkt::text("3")]);
        }
        assert!(sim.elapsed() >= Duration::from_millis(10 * 300));
        assert_eq!(sim.shard(0).session_count(), 1);
        assert!(!log.take().iter().any(|l| l.starts_with("disconnect")));
    }

    // ----- 4. second concurrent GET ---------------------------------------------------------

    #[test]
    fn second_concurrent_get_closes_session() {
        let (mut sim, log) = sim_with(1, Config::default());
        let (p, id) = poll_connected(&mut sim, 0);
        let first = sim.poll_get(0, &p.sid);
        assert!(sim.is_parked(first));
        let second = sim.poll_get(0, &p.sid);
        let r = sim.take_response(second).expect("second answered");
        assert_eq!(r.status, 400);
        assert_eq!(r.body_str(), r#"{"code":3,"message":"Bad request"}"#);
        assert_eq!(sim.poll_answer(first).expect("first answered"), [Pkt::text("1")]);
        assert_eq!(sim.shard(0).session_count(), 0);
        assert!(log.take().contains(&format!("disconnect {id} transport error")));
    }

    // ----- 5. upgrade -----------------------------------------------------------------------

    /// A polling client connected to `/`, upgraded to WebSocket; returns the probe connection.
    fn upgraded(sim: &mut Sim, core: CoreId) -> (PollClient, ConnId) {
        let (p, _) = poll_connected(sim, core);
        let get = sim.poll_get(core, &p.sid);
        let ws = sim.ws_probe(core, &p.sid);
        assert_eq!(sim.take_response(ws).expect("101").status, 101);
        sim.ws_send(ws, "2probe");
        assert_eq!(sim.ws_texts(ws), ["3probe"]);
        assert_eq!(sim.poll_answer(get).expect("noop"), [Pkt::text("6")]);
        sim.ws_send(ws, "5");
        (p, ws)
    }

    #[test]
    fn upgrade_probe_gets_noop_then_switches_transport() {
        let (mut sim, log) = sim_with(1, conformance());
        let (p, ws) = upgraded(&mut sim, 0);
        sim.ws_send(ws, r#"42["message","over ws"]"#);
        assert_eq!(sim.ws_texts(ws), [r#"42["message-back","over ws"]"#]);
        // Polling is over for this session.
        let get = sim.poll_get(0, &p.sid);
        assert_eq!(sim.take_response(get).expect("refused").status, 400);
        // The heartbeat now runs over the WebSocket.
        sim.set_auto_pong(ws, true);
        sim.advance_ms(3000);
        assert!(!sim.is_closed(ws));
        assert!(!log.take().iter().any(|l| l.starts_with("disconnect")));
    }

    #[test]
    fn per_socket_handler_takes_precedence_over_namespace_handler() {
        let mut b = ServerBuilder::new(Config::default());
        b.namespace("/", |ns| {
            ns.on_connect(|s: &mut Socket<'_>| {
                // Only sockets that connect with {"own":true} get a handler of their own.
                let own = s
                    .handshake()
                    .and_then(|h| h.auth::<serde_json::Value>())
                    .is_some_and(|a| a["own"] == true);
                if own {
                    let id = s.id().to_owned();
                    s.on("who", move |s: &mut Socket<'_>, _ev: Event| {
                        s.emit("answer", &("socket", id.as_str()))
                    });
                }
            });
            ns.on("who", |s: &mut Socket<'_>, _ev: Event| s.emit("answer", &("namespace",)));
        });
        let mut sim = Sim::new(1, b, 3);
        let own = sim.ws_open(0);
        sim.ws_send(own.conn, r#"40{"own":true}"#);
        let id = connect_ok_sid(&sim.ws_texts(own.conn)[0], "/");
        let plain = sim.ws_open(0);
        sim.ws_send(plain.conn, "40");
        sim.ws_texts(plain.conn);
        sim.ws_send(own.conn, r#"42["who"]"#);
        sim.ws_send(plain.conn, r#"42["who"]"#);
        assert_eq!(sim.ws_texts(own.conn), [format!(r#"42["answer","socket","{id}"]"#)]);
        assert_eq!(sim.ws_texts(plain.conn), [r#"42["answer","namespace"]"#]);
    }

    #[test]
    fn message_in_the_same_read_as_the_upgrade_packet_is_not_lost() {
        // Found by the interop suite: `5` and the next message arrived in one read, and the
        // message was taken for a probe message after the probe had become the transport.
        let (mut sim, _log) = sim_with(1, Config::default());
        let (p, _) = poll_connected(&mut sim, 0);
        let get = sim.poll_get(0, &p.sid);
        let ws = sim.ws_probe(0, &p.sid);
        sim.take_response(ws);
        sim.ws_send(ws, "2probe");
        assert_eq!(sim.ws_texts(ws), ["3probe"]);
        assert_eq!(sim.poll_answer(get).expect("noop"), [Pkt::text("6")]);
        let mut both = client_frame(OP_TEXT, b"5");
        both.extend_from_slice(&client_frame(OP_TEXT, br#"42["message","right after"]"#));
        sim.client_write(ws, &both);
        assert_eq!(sim.ws_texts(ws), [r#"42["message-back","right after"]"#]);
    }

    #[test]
    fn packets_emitted_during_upgrade_arrive_once_in_order() {
        let (mut sim, _log) = sim_with(1, Config::default());
        let (p, _) = poll_connected(&mut sim, 0);
        let (other, _) = sim.ws_connected(0);
        let get = sim.poll_get(0, &p.sid);
        let ws = sim.ws_probe(0, &p.sid);
        sim.take_response(ws);
        sim.ws_send(ws, "2probe");
        assert_eq!(sim.ws_texts(ws), ["3probe"]);
        assert_eq!(sim.poll_answer(get).expect("noop"), [Pkt::text("6")]);
        // Between the probe and the switch: broadcasts from another socket, and a message of
        // the client's own, sent over polling.
        for i in 1..=3 {
            sim.ws_send(other.conn, &format!(r#"42["shout","none",{i}]"#));
        }
        sim.post_ok(0, &p.sid, &[Pkt::text(r#"42["message",4]"#)]);
        assert!(sim.ws_take(ws).is_empty(), "nothing on the probe before 5");
        sim.ws_send(ws, "5");
        assert_eq!(
            sim.ws_texts(ws),
            [
                r#"42["shout-msg",1]"#,
                r#"42["shout-msg",2]"#,
                r#"42["shout-msg",3]"#,
                r#"42["message-back",4]"#
            ]
        );
        sim.ws_send(other.conn, r#"42["shout","none",5]"#);
        assert_eq!(sim.ws_texts(ws), [r#"42["shout-msg",5]"#]);
        assert!(sim.ws_texts(ws).is_empty());
    }

    #[test]
    fn poll_during_upgrade_takes_queued_packets_without_duplicates() {
        let (mut sim, _log) = sim_with(1, Config::default());
        let (p, _) = poll_connected(&mut sim, 0);
        let get = sim.poll_get(0, &p.sid);
        let ws = sim.ws_probe(0, &p.sid);
        sim.take_response(ws);
        sim.ws_send(ws, "2probe");
        sim.ws_texts(ws);
        sim.poll_answer(get).expect("noop");
        sim.post_ok(0, &p.sid, &[Pkt::text(r#"42["message","a"]"#)]);
        // A poll that comes anyway gets what is queued ...
        assert_eq!(sim.poll_now(0, &p.sid), [Pkt::text(r#"42["message-back","a"]"#)]);
        // ... and then a noop rather than parking, so the client can finish the upgrade.
        assert_eq!(sim.poll_now(0, &p.sid), [Pkt::text("6")]);
        sim.ws_send(ws, "5");
        assert!(sim.ws_texts(ws).is_empty(), "nothing sent twice");
        sim.ws_send(ws, r#"42["message","b"]"#);
        assert_eq!(sim.ws_texts(ws), [r#"42["message-back","b"]"#]);
    }

    #[test]
    fn second_websocket_for_upgraded_session_is_refused() {
        let (mut sim, _log) = sim_with(1, Config::default());
        let (p, ws) = upgraded(&mut sim, 0);
        let second = sim.ws_probe(0, &p.sid);
        let r = sim.take_response(second).expect("answered");
        assert_eq!(r.status, 400);
        assert!(sim.is_closed(second));
        sim.ws_send(ws, r#"42["message","still here"]"#);
        assert_eq!(sim.ws_texts(ws), [r#"42["message-back","still here"]"#]);
        assert!(!sim.is_closed(ws));
    }

    #[test]
    fn second_probe_during_probe_is_refused() {
        let (mut sim, _log) = sim_with(1, Config::default());
        let (p, _) = poll_connected(&mut sim, 0);
        let ws = sim.ws_probe(0, &p.sid);
        assert_eq!(sim.take_response(ws).expect("101").status, 101);
        let second = sim.ws_probe(0, &p.sid);
        assert_eq!(sim.take_response(second).expect("answered").status, 400);
        sim.ws_send(ws, "2probe");
        assert_eq!(sim.ws_texts(ws), ["3probe"]);
    }

    #[test]
    fn upgrade_timeout_closes_probe_and_polling_goes_on() {
        let mut cfg = Config::default();
        cfg.engine.upgrade_timeout = Duration::from_millis(1000);
        let (mut sim, log) = sim_with(1, cfg);
        let (p, _) = poll_connected(&mut sim, 0);
        let ws = sim.ws_probe(0, &p.sid);
        sim.take_response(ws);
        sim.advance_ms(999);
        assert!(!sim.is_closed(ws));
        sim.advance_ms(1);
        assert!(sim.is_closed(ws));
        assert_eq!(sim.ws_take(ws), [WsMsg::Close(Some(1000))]);
        sim.post_ok(0, &p.sid, &[Pkt::text(r#"42["message","poll"]"#)]);
        assert_eq!(sim.poll_now(0, &p.sid), [Pkt::text(r#"42["message-back","poll"]"#)]);
        assert!(log.take().iter().all(|l| !l.starts_with("disconnect")));
        // A new probe may be tried.
        let ws = sim.ws_probe(0, &p.sid);
        assert_eq!(sim.take_response(ws).expect("101").status, 101);
    }

    #[test]
    fn bad_probe_message_closes_probe_only() {
        let (mut sim, _log) = sim_with(1, Config::default());
        let (p, _) = poll_connected(&mut sim, 0);
        let ws = sim.ws_probe(0, &p.sid);
        sim.take_response(ws);
        sim.ws_send(ws, "5");
        assert!(sim.is_closed(ws));
        sim.post_ok(0, &p.sid, &[Pkt::text(r#"42["message",1]"#)]);
        assert_eq!(sim.poll_now(0, &p.sid), [Pkt::text(r#"42["message-back",1]"#)]);
    }

    // ----- 6. connect timeout ---------------------------------------------------------------

    #[test]
    fn session_without_namespace_is_closed_at_connect_timeout() {
        let (mut sim, _log) = sim_with(1, conformance());
        let c = sim.ws_open(0);
        sim.set_auto_pong(c.conn, true);
        sim.advance_ms(999);
        assert!(!sim.is_closed(c.conn));
        sim.advance_ms(1);
        assert!(sim.is_closed(c.conn));
        assert_eq!(sim.shard(0).session_count(), 0);
    }

    #[test]
    fn connected_session_outlives_connect_timeout() {
        let (mut sim, _log) = sim_with(1, conformance());
        let (c, _) = sim.ws_connected(0);
        sim.set_auto_pong(c.conn, true);
        sim.advance_ms(5000);
        assert!(!sim.is_closed(c.conn));
    }

    #[test]
    fn refused_namespace_does_not_stop_connect_timeout() {
        let (mut sim, _log) = sim_with(1, conformance());
        let c = sim.ws_open(0);
        sim.set_auto_pong(c.conn, true);
        sim.ws_send(c.conn, "40/nope,");
        sim.advance_ms(1000);
        assert!(sim.is_closed(c.conn));
    }

    // ----- 7. namespaces --------------------------------------------------------------------

    #[test]
    fn custom_namespace_connects_alongside_main() {
        let (mut sim, log) = sim_with(1, Config::default());
        let (c, id) = sim.ws_connected(0);
        sim.ws_send(c.conn, "40/custom,");
        let t = sim.ws_texts(c.conn);
        let custom_id = connect_ok_sid(&t[0], "/custom");
        assert_ne!(custom_id, id);
        assert_eq!(sim.shard(0).socket_count(), 2);
        assert_eq!(log.take(), [format!("connect {id}"), "connect /custom".into()]);
    }

    #[test]
    fn unknown_namespace_gets_connect_error() {
        let (mut sim, _log) = sim_with(1, Config::default());
        let c = sim.ws_open(0);
        sim.ws_send(c.conn, "40/nope,");
        assert_eq!(sim.ws_texts(c.conn), [r#"44/nope,{"message":"Invalid namespace"}"#]);
        assert!(!sim.is_closed(c.conn));
        sim.ws_send(c.conn, "40");
        connect_ok_sid(&sim.ws_texts(c.conn)[0], "/");
    }

    #[test]
    fn middleware_refusal_sends_connect_error_with_data() {
        let (mut sim, _log) = sim_with(1, Config::default());
        let c = sim.ws_open(0);
        sim.ws_send(c.conn, "40/private,");
        assert_eq!(sim.ws_texts(c.conn), [r#"44/private,{"message":"not authorized","data":{"code":42}}"#]);
        sim.ws_send(c.conn, r#"40/private,{"token":"secret"}"#);
        connect_ok_sid(&sim.ws_texts(c.conn)[0], "/private");
    }

    #[test]
    fn namespace_disconnect_leaves_other_namespace_up() {
        let (mut sim, log) = sim_with(1, Config::default());
        let (c, _) = sim.ws_connected(0);
        sim.ws_send(c.conn, "40/custom,");
        sim.ws_texts(c.conn);
        log.take();
        sim.ws_send(c.conn, "41/custom,");
        assert_eq!(log.take(), ["disconnect /custom client namespace disconnect"]);
        assert_eq!(sim.shard(0).socket_count(), 1);
        sim.ws_send(c.conn, r#"42["message","main"]"#);
        assert_eq!(sim.ws_texts(c.conn), [r#"42["message-back","main"]"#]);
        // It may connect again.
        sim.ws_send(c.conn, "40/custom,");
        connect_ok_sid(&sim.ws_texts(c.conn)[0], "/custom");
    }

    #[test]
    fn packet_for_unconnected_namespace_closes_session() {
        let (mut sim, log) = sim_with(1, Config::default());
        let (c, id) = sim.ws_connected(0);
        sim.ws_send(c.conn, r#"42/custom,["message"]"#);
        assert!(sim.is_closed(c.conn));
        assert!(log.take().contains(&format!("disconnect {id} forced close")));
    }

    #[test]
    fn server_disconnect_sends_disconnect_packet() {
        let mut sim = echo_sim(1);
        let (c, _) = sim.ws_connected(0);
        sim.ws_send(c.conn, r#"42["server-disconnect"]"#);
        assert_eq!(sim.ws_texts(c.conn), ["41"]);
        assert!(!sim.is_closed(c.conn), "only the namespace is left");
    }

    // ----- 8. rooms across cores ------------------------------------------------------------

    #[test]
    fn room_emit_reaches_member_on_other_core_once_not_sender() {
        let (mut sim, _log) = sim_with(2, Config::default());
        let (a, _) = sim.ws_connected(0);
        let (bystander, _) = sim.ws_connected(0);
        let (b, _) = sim.ws_connected(1);
        let (d, _) = sim.ws_connected(1);
        sim.sent.clear();

        sim.ws_send(a.conn, r#"421["join","r"]"#);
        assert_eq!(sim.ws_texts(a.conn), ["431[true]"]);
        assert_eq!(occupancy(&sim), [(0, 1, "r".into(), true)]);
        sim.ws_send(b.conn, r#"421["join","r"]"#);
        assert_eq!(sim.ws_texts(b.conn), ["431[true]"]);
        sim.ws_send(d.conn, r#"421["join","r"]"#);
        // d is the second member on core 1: no new announcement.
        assert_eq!(occupancy(&sim), [(0, 1, "r".into(), true), (1, 0, "r".into(), true)]);

        sim.ws_send(a.conn, r#"42["to-room","r","hello"]"#);
        assert_eq!(sim.ws_texts(b.conn), [r#"42["room-msg","hello"]"#]);
        assert_eq!(sim.ws_texts(d.conn).len(), 2); // join ack, then the message
        assert!(sim.ws_texts(a.conn).is_empty(), "not the sender");
        assert!(sim.ws_texts(bystander.conn).is_empty());
        assert_eq!(broadcasts_to(&sim, 1), 1, "one message per remote core");

        // b leaves: d is still there, nothing announced; then d leaves: announced.
        sim.sent.clear();
        sim.ws_send(b.conn, r#"422["leave","r"]"#);
        assert!(occupancy(&sim).is_empty());
        sim.ws_send(d.conn, r#"422["leave","r"]"#);
        assert_eq!(occupancy(&sim), [(1, 0, "r".into(), false)]);
        sim.ws_texts(b.conn);
        sim.ws_texts(d.conn);

        sim.sent.clear();
        sim.ws_send(a.conn, r#"42["to-room","r","again"]"#);
        assert!(sim.ws_texts(b.conn).is_empty());
        assert!(sim.ws_texts(d.conn).is_empty());
        assert_eq!(broadcasts_to(&sim, 1), 0, "core 0 knows core 1 left the room");
    }

    #[test]
    fn disconnect_of_last_member_announces_room_empty() {
        let (mut sim, _log) = sim_with(2, Config::default());
        let (b, _) = sim.ws_connected(1);
        sim.ws_send(b.conn, r#"421["join","r"]"#);
        sim.sent.clear();
        sim.ws_send_close(b.conn);
        assert_eq!(occupancy(&sim), [(1, 0, "r".into(), false)]);
    }

    #[test]
    fn emit_to_socket_id_reaches_socket_on_other_core() {
        let (mut sim, _log) = sim_with(3, Config::default());
        let (a, _) = sim.ws_connected(0);
        let (b, b_id) = sim.ws_connected(2);
        sim.sent.clear();
        sim.ws_send(a.conn, &format!(r#"42["to-room","{b_id}","private"]"#));
        assert_eq!(sim.ws_texts(b.conn), [r#"42["room-msg","private"]"#]);
        assert_eq!(broadcasts_to(&sim, 1), 0, "only the owner core is asked");
        assert_eq!(broadcasts_to(&sim, 2), 1);
    }

    #[test]
    fn broadcast_except_room_is_applied_on_every_core() {
        let (mut sim, _log) = sim_with(2, Config::default());
        let (a, _) = sim.ws_connected(0);
        let (b, _) = sim.ws_connected(1);
        let (c, _) = sim.ws_connected(1);
        let (d, _) = sim.ws_connected(0);
        sim.ws_send(c.conn, r#"421["join","quiet"]"#);
        sim.ws_send(d.conn, r#"421["join","quiet"]"#);
        sim.ws_texts(c.conn);
        sim.ws_texts(d.conn);
        sim.ws_send(a.conn, r#"42["shout","quiet","hey"]"#);
        assert_eq!(sim.ws_texts(b.conn), [r#"42["shout-msg","hey"]"#]);
        assert!(sim.ws_texts(c.conn).is_empty());
        assert!(sim.ws_texts(d.conn).is_empty());
        assert!(sim.ws_texts(a.conn).is_empty());
    }

    #[test]
    fn room_limit_counts_own_room() {
        let mut cfg = Config::default();
        cfg.limits.max_rooms_per_socket = 3;
        let (mut sim, _log) = sim_with(1, cfg);
        let (a, _) = sim.ws_connected(0);
        for (i, room) in ["r1", "r2", "r3"].iter().enumerate() {
            sim.ws_send(a.conn, &format!(r#"42{i}["join","{room}"]"#));
        }
        assert_eq!(sim.ws_texts(a.conn), ["430[true]", "431[true]", "432[false]"]);
        assert_eq!(sim.shard(0).stats().snapshot().room_joins_refused, 1);
        // Joining a room it is in does not count.
        sim.ws_send(a.conn, r#"423["join","r2"]"#);
        assert_eq!(sim.ws_texts(a.conn), ["433[true]"]);
    }

    /// Each core's published metrics (publishing first, as the runtime does every turn).
    fn metrics(sim: &Sim, core: CoreId) -> &crate::metrics::CoreMetrics {
        sim.shard(core).publish_metrics();
        &sim.shard(core).stats().metrics
    }

    fn get(a: &std::sync::atomic::AtomicU64) -> u64 {
        a.load(std::sync::atomic::Ordering::Relaxed)
    }

    #[test]
    fn metrics_follow_transports_rooms_broadcasts_and_disconnects() {
        use crate::engineio::session::CloseReason;
        use crate::metrics::{close_index, disconnect_index};
        let (mut sim, _log) = sim_with(2, Config::default());
        let (a, _) = sim.ws_connected(0);
        let (b, _) = sim.ws_connected(1);
        let (c, _) = sim.ws_connected(1);
        let (_p, _ws) = upgraded(&mut sim, 0);
        let (_q, _) = poll_connected(&mut sim, 1);
        // The upgrade moved its session from polling to websocket.
        assert_eq!(
            (get(&metrics(&sim, 0).sessions_polling), get(&metrics(&sim, 0).sessions_websocket)),
            (0, 2)
        );
        assert_eq!(
            (get(&metrics(&sim, 1).sessions_polling), get(&metrics(&sim, 1).sessions_websocket)),
            (1, 2)
        );
        assert_eq!(get(&metrics(&sim, 1).sockets[0]), 3, "namespace / on core 1");
        assert_eq!(get(&metrics(&sim, 1).sockets[1]), 0, "namespace /custom");

        sim.ws_send(b.conn, r#"421["join","r"]"#);
        sim.ws_send(c.conn, r#"421["join","r"]"#);
        sim.ws_texts(b.conn);
        sim.ws_texts(c.conn);
        let before = get(&metrics(&sim, 1).deliveries);
        sim.ws_send(a.conn, r#"42["to-room","r",1]"#);
        assert_eq!(sim.ws_texts(b.conn).len(), 1);
        assert_eq!(sim.ws_texts(c.conn).len(), 1);
        // Planned once on core 0, delivered to two sockets on core 1 (one addition of 2).
        assert_eq!(get(&metrics(&sim, 0).broadcasts), 1);
        assert_eq!(get(&metrics(&sim, 0).deliveries), 0);
        assert_eq!(get(&metrics(&sim, 1).deliveries) - before, 2);

        // A namespace disconnect by the client, then a WebSocket closed by the client.
        sim.ws_send(b.conn, "41");
        assert_eq!(
            get(&metrics(&sim, 1).socket_disconnects
                [disconnect_index(DisconnectReason::ClientNamespaceDisconnect)]),
            1
        );
        assert_eq!(get(&metrics(&sim, 1).sockets[0]), 2);
        sim.ws_send_close(a.conn);
        let m0 = metrics(&sim, 0);
        assert_eq!(get(&m0.session_closes[close_index(CloseReason::TransportClose)]), 1);
        assert_eq!(get(&m0.socket_disconnects[disconnect_index(DisconnectReason::TransportClose)]), 1);
        assert_eq!(get(&m0.sessions_websocket), 1);
        assert_eq!(get(&m0.sockets[0]), 1);
        assert!(get(&m0.eio_packets_in) > 0 && get(&m0.eio_packets_out) > 0);
        assert!(get(&m0.sio_packets_in) >= 3, "connect, to-room and connect of the upgraded one");
    }

    // ----- 9. cross-core ordering -----------------------------------------------------------

    #[test]
    fn thousand_room_emits_across_cores_arrive_in_order() {
        let (mut sim, _log) = sim_with(2, Config::default());
        let (a, _) = sim.ws_connected(0);
        let (b, _) = sim.ws_connected(1);
        sim.ws_send(b.conn, r#"421["join","r"]"#);
        sim.ws_texts(b.conn);
        for i in 0..1000 {
            sim.ws_send(a.conn, &format!(r#"42["to-room","r",{i}]"#));
        }
        let got = sim.ws_texts(b.conn);
        let want: Vec<String> = (0..1000).map(|i| format!(r#"42["room-msg",{i}]"#)).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn held_cross_core_messages_are_delivered_in_sending_order() {
        let (mut sim, _log) = sim_with(2, Config::default());
        let (a, _) = sim.ws_connected(0);
        let (b, _) = sim.ws_connected(1);
        let p = {
            let (p, _) = poll_connected(&mut sim, 1);
            sim.post_ok(1, &p.sid, &[Pkt::text(r#"421["join","r"]"#)]);
            sim.poll_now(1, &p.sid);
            p
        };
        sim.ws_send(b.conn, r#"421["join","r"]"#);
        sim.ws_texts(b.conn);
        sim.hold = true;
        for i in 0..1000 {
            sim.ws_send(a.conn, &format!(r#"42["to-room","r",{i}]"#));
        }
        assert_eq!(sim.inbox_len(1), 1000);
        assert!(sim.ws_texts(b.conn).is_empty());
        sim.run_until_idle();
        sim.hold = false;
        let want: Vec<String> = (0..1000).map(|i| format!(r#"42["room-msg",{i}]"#)).collect();
        assert_eq!(sim.ws_texts(b.conn), want);
        // The polling member gets them in order too, in as many polls as it takes.
        let mut got = Vec::new();
        while got.len() < 1000 {
            let pkts = sim.poll_now(1, &p.sid);
            got.extend(texts(&pkts).into_iter().map(str::to_owned));
        }
        assert_eq!(got, want);
    }

    // ----- 10. server-to-client acks --------------------------------------------------------

    #[test]
    fn unanswered_ack_times_out_at_deadline() {
        let (mut sim, log) = sim_with(1, Config::default());
        let (c, _) = sim.ws_connected(0);
        log.take();
        sim.ws_send(c.conn, r#"42["ask",1000]"#);
        assert_eq!(sim.ws_texts(c.conn), [r#"420["question"]"#]);
        sim.advance_ms(999);
        assert!(log.take().is_empty());
        sim.advance_ms(1);
        assert_eq!(log.take(), ["ack timeout"]);
        // A late answer is ignored.
        sim.ws_send(c.conn, r#"430["late"]"#);
        assert!(log.take().is_empty());
        assert!(!sim.is_closed(c.conn));
    }

    #[test]
    fn answered_ack_passes_args_to_callback() {
        let (mut sim, log) = sim_with(1, Config::default());
        let (c, _) = sim.ws_connected(0);
        log.take();
        sim.ws_send(c.conn, r#"42["ask",1000]"#);
        sim.ws_send(c.conn, r#"42["ask",1000]"#);
        assert_eq!(sim.ws_texts(c.conn), [r#"420["question"]"#, r#"421["question"]"#]);
        sim.advance_ms(500);
        sim.ws_send(c.conn, r#"431["second",2]"#);
        sim.ws_send(c.conn, r#"430["first",{"x":1}]"#);
        assert_eq!(log.take(), [r#"ack ok "second",2"#, r#"ack ok "first",{"x":1}"#]);
        sim.advance_ms(1000);
        assert!(log.take().is_empty(), "no timeout after the answer");
    }

    #[test]
    fn pending_ack_reports_disconnected_when_socket_goes() {
        let (mut sim, log) = sim_with(1, Config::default());
        let (c, id) = sim.ws_connected(0);
        log.take();
        sim.ws_send(c.conn, r#"42["ask",1000]"#);
        sim.client_close(c.conn);
        let l = log.take();
        assert_eq!(l.len(), 2, "{l:?}");
        assert_eq!(l[0], format!("disconnect {id} transport close"));
        assert!(l[1].starts_with("ack disconnected"), "{l:?}");
        sim.advance_ms(2000);
        assert!(log.take().is_empty(), "no timeout after the disconnect");
    }

    #[test]
    fn ack_callback_sees_disconnected_socket_as_not_connected() {
        let (mut sim, log) = sim_with(1, Config::default());
        let (c, _) = sim.ws_connected(0);
        log.take();
        sim.ws_send(c.conn, r#"42["ask",1000]"#);
        sim.client_close(c.conn);
        assert!(log.take().contains(&"ack disconnected connected=false".to_owned()));
    }

    // ----- 11. slow consumers ---------------------------------------------------------------

    #[test]
    fn polling_client_that_never_polls_is_closed_as_slow_consumer() {
        let mut cfg = Config::default();
        cfg.limits.max_output_bytes = 1000;
        let (mut sim, log) = sim_with(1, cfg);
        let (p, id) = poll_connected(&mut sim, 0);
        let (w, _) = sim.ws_connected(0);
        log.take();
        let payload = "x".repeat(100);
        // The limit counts queued packets by their WebSocket frame size.
        let each = websocket::frame_len(format!(r#"42["shout-msg","{payload}"]"#).len());
        for _ in 0..1000 / each {
            sim.ws_send(w.conn, &format!(r#"42["shout","none","{payload}"]"#));
        }
        assert_eq!(sim.shard(0).session_count(), 2, "under the limit");
        sim.ws_send(w.conn, &format!(r#"42["shout","none","{payload}"]"#));
        assert_eq!(log.take(), [format!("disconnect {id} slow consumer")]);
        assert_eq!(sim.shard(0).session_count(), 1);
        assert_eq!(sim.shard(0).stats().snapshot().slow_consumers, 1);
        // Everything it had queued is dropped with it: the broadcasts, perhaps a ping.
        let m = metrics(&sim, 0);
        assert!(get(&m.dropped_packets) > (1000 / each) as u64, "{}", get(&m.dropped_packets));
        let slow = crate::metrics::close_index(crate::engineio::session::CloseReason::SlowConsumer);
        assert_eq!(get(&m.session_closes[slow]), 1);
        let r = sim.poll_post(0, &p.sid, &[Pkt::text("3")]);
        assert_eq!(r.status, 400);
        assert!(!sim.is_closed(w.conn));
    }

    #[test]
    fn stalled_websocket_reader_is_closed_as_slow_consumer() {
        let mut cfg = Config::default();
        cfg.limits.max_output_bytes = 1000;
        let (mut sim, log) = sim_with(1, cfg);
        let (slow, slow_id) = sim.ws_connected(0);
        let (fast, _) = sim.ws_connected(0);
        let (w, _) = sim.ws_connected(0);
        log.take();
        sim.set_reading(slow.conn, false);
        let payload = "x".repeat(100);
        let mut n = 0;
        while !sim.is_closed(slow.conn) {
            assert!(sim.pending_output(slow.conn) <= 1000);
            sim.ws_send(w.conn, &format!(r#"42["shout","none","{payload}"]"#));
            n += 1;
            assert!(n < 100);
        }
        assert!(n >= 8, "closed only past the limit ({n} messages)");
        assert_eq!(log.take(), [format!("disconnect {slow_id} slow consumer")]);
        assert_eq!(sim.shard(0).stats().snapshot().slow_consumers, 1);
        assert_eq!(sim.ws_texts(fast.conn).len(), n, "a reader is not affected");
        assert!(!sim.is_closed(fast.conn));
    }

    #[test]
    fn reading_client_survives_burst_larger_than_output_limit() {
        let mut cfg = Config::default();
        cfg.limits.max_output_bytes = 10_000;
        let (mut sim, log) = sim_with(2, cfg);
        let (a, _) = sim.ws_connected(0);
        let (b, _) = sim.ws_connected(1);
        sim.ws_send(b.conn, r#"421["join","r"]"#);
        sim.ws_texts(b.conn);
        log.take();
        sim.hold = true;
        // 1000 messages of about 25 bytes: 25 kB in all, each one far below the limit.
        for i in 0..1000 {
            sim.ws_send(a.conn, &format!(r#"42["to-room","r",{i}]"#));
        }
        sim.run_until_idle();
        sim.hold = false;
        assert!(!sim.is_closed(b.conn));
        assert_eq!(sim.ws_texts(b.conn).len(), 1000);
        assert!(log.take().is_empty());
    }

    #[test]
    fn room_join_is_seen_by_other_cores_only_when_occupancy_arrives() {
        // Rooms are replicated by messages: until core 0 has read core 1's announcement, an
        // emit from core 0 does not reach core 1's new member, although its join was acked.
        let (mut sim, _log) = sim_with(2, Config::default());
        let (a, _) = sim.ws_connected(0);
        let (b, _) = sim.ws_connected(1);
        sim.hold = true;
        sim.ws_send(b.conn, r#"421["join","r"]"#);
        assert_eq!(sim.ws_texts(b.conn), ["431[true]"]);
        assert_eq!(sim.inbox_len(0), 1);
        sim.ws_send(a.conn, r#"42["to-room","r","early"]"#);
        sim.run_until_idle();
        sim.ws_send(a.conn, r#"42["to-room","r","late"]"#);
        sim.run_until_idle();
        sim.hold = false;
        assert_eq!(sim.ws_texts(b.conn), [r#"42["room-msg","late"]"#]);
    }

    #[test]
    fn ping_timeout_during_paused_upgrade_closes_probe_and_session() {
        let (mut sim, log) = sim_with(1, conformance());
        let (p, id) = poll_connected(&mut sim, 0);
        let ws = sim.ws_probe(0, &p.sid);
        sim.take_response(ws);
        sim.ws_send(ws, "2probe");
        sim.ws_texts(ws);
        // The client paused polling for the upgrade but never sends `5`: the ping waits in
        // the polling queue and the session times out.
        sim.advance_ms(500);
        assert!(sim.is_closed(ws));
        assert!(log.take().contains(&format!("disconnect {id} ping timeout")));
        assert_eq!(sim.shard(0).session_count(), 0);
    }

    // ----- handshakes per address ------------------------------------------------------------

    /// Handshake limits: `rate` per second and `burst` for the node.
    fn rate_limited(rate: u32, burst: u32) -> Config {
        let mut cfg = conformance();
        cfg.limits.max_handshakes_per_ip_per_sec = rate;
        cfg.limits.handshake_burst_per_ip = burst;
        cfg
    }

    fn from(ip: [u8; 4]) -> SocketAddr {
        SocketAddr::from((ip, 50000))
    }

    /// A polling handshake from `remote` on `core`; returns the response.
    fn handshake_from(sim: &mut Sim, core: CoreId, remote: SocketAddr) -> (ConnId, HttpResponse) {
        let conn = sim.connect_from(core, remote);
        sim.client_write(conn, &get_request(None));
        let r = sim.take_response(conn).expect("handshake answered");
        (conn, r)
    }

    #[test]
    fn handshake_flood_from_one_address_is_refused_with_429_after_the_burst() {
        // 2 per second, burst 4: one new handshake every 500 ms once the burst is spent.
        let (mut sim, _log) = sim_with(1, rate_limited(2, 4));
        let ip = from([192, 0, 2, 7]);
        for _ in 0..4 {
            assert_eq!(handshake_from(&mut sim, 0, ip).1.status, 200);
        }
        let (conn, r) = handshake_from(&mut sim, 0, ip);
        assert_eq!(r.status, 429, "{r:?}");
        assert_eq!(r.body_str(), r#"{"code":6,"message":"Too many requests"}"#);
        assert_eq!(r.header("retry-after"), Some("1"));
        assert_eq!(r.header("connection"), Some("close"));
        assert!(sim.is_closed(conn), "a refused handshake closes its connection");
        // A WebSocket handshake is refused the same way, before any upgrade.
        let ws = sim.connect_from(0, ip);
        sim.client_write(ws, &ws_request(None));
        assert_eq!(sim.take_response(ws).expect("answered").status, 429);
        assert!(sim.ws_take(ws).is_empty());
        assert_eq!(sim.shard(0).session_count(), 4, "refused handshakes create no session");
        // Another address is not affected, nor are the sessions already open.
        let (_, r) = handshake_from(&mut sim, 0, from([192, 0, 2, 8]));
        assert_eq!(r.status, 200);
        let [Pkt::Text(open)] = &r.packets()[..] else { panic!("{r:?}") };
        let open: serde_json::Value = serde_json::from_str(&open[1..]).unwrap();
        sim.post_ok(0, open["sid"].as_str().unwrap(), &[Pkt::text("40")]);
        // The bucket refills at the rate, in virtual time.
        sim.advance_ms(400);
        assert_eq!(handshake_from(&mut sim, 0, ip).1.status, 429);
        sim.advance_ms(150);
        assert_eq!(handshake_from(&mut sim, 0, ip).1.status, 200);
        assert_eq!(handshake_from(&mut sim, 0, ip).1.status, 429);
        assert_eq!(sim.shard(0).stats().snapshot().handshakes_refused_rate, 4);
    }

    #[test]
    fn behind_a_trusted_proxy_the_limit_applies_per_forwarded_client() {
        let mut cfg = rate_limited(1, 2);
        cfg.trusted_proxies = vec!["192.0.2.1".parse().unwrap()];
        let (mut sim, _log) = sim_with(1, cfg);
        let proxy = from([192, 0, 2, 1]);
        let via = |client: &str| {
            let raw = String::from_utf8(get_request(None)).unwrap();
            raw.replacen("\r\n", &format!("\r\nX-Forwarded-For: {client}\r\n"), 1).into_bytes()
        };
        let status = |sim: &mut Sim, peer: SocketAddr, client: &str| {
            let conn = sim.connect_from(0, peer);
            sim.client_write(conn, &via(client));
            sim.take_response(conn).expect("answered").status
        };
        // Two clients behind the proxy each get their own burst of 2.
        for client in ["198.51.100.1", "198.51.100.2"] {
            assert_eq!(status(&mut sim, proxy, client), 200);
            assert_eq!(status(&mut sim, proxy, client), 200);
            assert_eq!(status(&mut sim, proxy, client), 429, "{client}: burst spent");
        }
        // An untrusted peer cannot dodge the limit by writing the header itself.
        let liar = from([203, 0, 113, 5]);
        assert_eq!(status(&mut sim, liar, "198.51.100.3"), 200);
        assert_eq!(status(&mut sim, liar, "198.51.100.4"), 200);
        assert_eq!(status(&mut sim, liar, "198.51.100.5"), 429);
    }

    #[test]
    fn handshake_rate_is_split_over_the_cores() {
        let (mut sim, _log) = sim_with(2, rate_limited(2, 4));
        let ip = from([192, 0, 2, 7]);
        for core in 0..2 {
            let statuses: Vec<u16> = (0..4).map(|_| handshake_from(&mut sim, core, ip).1.status).collect();
            assert_eq!(statuses, [200, 200, 429, 429], "core {core}: burst 4 / 2 cores");
        }
        // One per second per core.
        sim.advance_ms(1000);
        assert_eq!(handshake_from(&mut sim, 0, ip).1.status, 200);
        assert_eq!(handshake_from(&mut sim, 0, ip).1.status, 429);
    }

    #[test]
    fn handshake_rate_off_and_loopback_exempt() {
        let (mut sim, _log) = sim_with(1, rate_limited(0, 0));
        for _ in 0..100 {
            assert_eq!(handshake_from(&mut sim, 0, from([192, 0, 2, 7])).1.status, 200);
        }
        assert_eq!(sim.shard(0).handshake_rate_tracked(), 0);
        let (mut sim, _log) = sim_with(1, rate_limited(1, 1));
        for _ in 0..100 {
            assert_eq!(handshake_from(&mut sim, 0, from([127, 0, 0, 1])).1.status, 200);
        }
        let mut cfg = rate_limited(1, 1);
        cfg.limits.handshake_rate_exempt_loopback = false;
        let (mut sim, _log) = sim_with(1, cfg);
        assert_eq!(handshake_from(&mut sim, 0, from([127, 0, 0, 1])).1.status, 200);
        assert_eq!(handshake_from(&mut sim, 0, from([127, 0, 0, 1])).1.status, 429);
    }

    #[test]
    fn handshake_rate_map_stays_bounded_and_forgets_idle_addresses() {
        let mut cfg = rate_limited(1, 1);
        cfg.limits.handshake_rate_max_ips = 16;
        // Sessions of the flood must not time out in between: only the map is under test.
        cfg.connect_timeout = Duration::from_secs(3600);
        let (mut sim, _log) = sim_with(1, cfg);
        let heavy = from([198, 51, 100, 1]);
        assert_eq!(handshake_from(&mut sim, 0, heavy).1.status, 200);
        assert_eq!(handshake_from(&mut sim, 0, heavy).1.status, 429);
        // A flood from 1000 addresses, one handshake each: all pass (each is new), and the
        // map never holds more than its bound.
        for n in 0..1000u32 {
            let [_, b, c, d] = n.to_be_bytes();
            assert_eq!(handshake_from(&mut sim, 0, from([10, b, c, d])).1.status, 200);
            assert!(sim.shard(0).handshake_rate_tracked() <= 16);
        }
        // Idle for longer than two refills: the next handshake forgets everything, which only
        // drops full buckets.
        sim.advance_ms(2_000);
        assert!(sim.shard(0).handshake_rate_tracked() > 1);
        assert_eq!(handshake_from(&mut sim, 0, heavy).1.status, 200);
        assert_eq!(sim.shard(0).handshake_rate_tracked(), 1);
    }

    // ----- 12. malformed input --------------------------------------------------------------

    #[test]
    fn malformed_socketio_packet_over_websocket_closes_connection() {
        let (mut sim, log) = sim_with(1, Config::default());
        let (c, id) = sim.ws_connected(0);
        sim.ws_send(c.conn, r#"42["message""#);
        assert!(sim.is_closed(c.conn));
        assert_eq!(sim.ws_take(c.conn), [WsMsg::Close(Some(1000))]);
        assert!(log.take().contains(&format!("disconnect {id} forced close")));
        assert_eq!(sim.shard(0).session_count(), 0);
    }

    #[test]
    fn unknown_engineio_packet_type_over_websocket_closes_with_parse_error() {
        let (mut sim, log) = sim_with(1, Config::default());
        let (c, id) = sim.ws_connected(0);
        sim.ws_send(c.conn, "9");
        assert!(sim.is_closed(c.conn));
        assert!(log.take().contains(&format!("disconnect {id} parse error")));
    }

    #[test]
    fn polling_post_with_bad_record_closes_session() {
        let (mut sim, log) = sim_with(1, Config::default());
        let (p, id) = poll_connected(&mut sim, 0);
        let get = sim.poll_get(0, &p.sid);
        let r = sim.poll_post(0, &p.sid, &[Pkt::text(r#"42["message","ok"]"#), Pkt::text("9bad")]);
        // As the reference, the POST itself is answered `ok`; the session is closed, so the
        // reply to the packet before the bad record is dropped and the poll gets a close.
        assert_eq!(r.status, 200);
        assert_eq!(sim.poll_answer(get).expect("answered"), [Pkt::text("1")]);
        assert!(log.take().contains(&format!("disconnect {id} parse error")));
        let r = sim.poll_post(0, &p.sid, &[Pkt::text("3")]);
        assert_eq!(r.status, 400);
    }

    #[test]
    fn client_close_packet_over_polling_closes_session() {
        let (mut sim, log) = sim_with(1, Config::default());
        let (p, id) = poll_connected(&mut sim, 0);
        let get = sim.poll_get(0, &p.sid);
        sim.post_ok(0, &p.sid, &[Pkt::text("1")]);
        assert_eq!(sim.poll_answer(get).expect("answered"), [Pkt::text("1")]);
        assert!(log.take().contains(&format!("disconnect {id} transport close")));
    }

    #[test]
    fn websocket_close_frame_is_answered_and_closes_session() {
        let (mut sim, log) = sim_with(1, Config::default());
        let (c, id) = sim.ws_connected(0);
        sim.ws_send_close(c.conn);
        assert_eq!(sim.ws_take(c.conn), [WsMsg::Close(Some(1000))]);
        assert!(sim.is_closed(c.conn));
        assert!(log.take().contains(&format!("disconnect {id} transport close")));
    }

    // ----- payload limits -------------------------------------------------------------------

    #[test]
    fn oversized_post_gets_413_and_closes_session() {
        let mut cfg = Config::default();
        cfg.engine.max_payload = 1000;
        let (mut sim, log) = sim_with(1, cfg);
        let (p, id) = poll_connected(&mut sim, 0);
        let big = format!(r#"42["message","{}"]"#, "x".repeat(1000));
        let r = sim.poll_post(0, &p.sid, &[Pkt::Text(big)]);
        assert_eq!(r.status, 413);
        assert!(log.take().contains(&format!("disconnect {id} transport error")));
        assert_eq!(sim.shard(0).session_count(), 0);
    }

    #[test]
    fn oversized_post_on_other_core_closes_session() {
        let mut cfg = Config::default();
        cfg.engine.max_payload = 1000;
        let (mut sim, log) = sim_with(2, cfg);
        let (p, id) = poll_connected(&mut sim, 1);
        let big = format!(r#"42["message","{}"]"#, "x".repeat(1000));
        let r = sim.poll_post(0, &p.sid, &[Pkt::Text(big)]);
        assert_eq!(r.status, 413);
        assert_eq!(sim.shard(1).session_count(), 0);
        assert!(log.take().contains(&format!("disconnect {id} transport error")));
    }

    #[test]
    fn oversized_websocket_message_closes_session() {
        let mut cfg = Config::default();
        cfg.engine.max_payload = 1000;
        let (mut sim, log) = sim_with(1, cfg);
        let (c, id) = sim.ws_connected(0);
        sim.ws_send(c.conn, &format!(r#"42["message","{}"]"#, "x".repeat(1000)));
        assert_eq!(sim.ws_take(c.conn), [WsMsg::Close(Some(1009))]);
        assert!(sim.is_closed(c.conn));
        assert!(log.take().contains(&format!("disconnect {id} transport error")));
    }

    // ----- 13. binary -----------------------------------------------------------------------

    #[test]
    fn binary_event_round_trips_over_websocket() {
        let mut sim = echo_sim(1);
        let (c, _) = sim.ws_connected(0);
        sim.ws_texts(c.conn);
        sim.ws_send(
            c.conn,
            r#"452-["message",{"_placeholder":true,"num":0},"mid",{"_placeholder":true,"num":1}]"#,
        );
        assert!(sim.ws_take(c.conn).is_empty(), "waits for the attachments");
        sim.ws_send_bin(c.conn, &[1, 2, 3]);
        sim.ws_send_bin(c.conn, &[]);
        assert_eq!(
            sim.ws_packets(c.conn),
            [
                Pkt::text(
                    r#"452-["message-back",{"_placeholder":true,"num":0},"mid",{"_placeholder":true,"num":1}]"#
                ),
                Pkt::Bin(vec![1, 2, 3]),
                Pkt::Bin(vec![]),
            ]
        );
    }

    #[test]
    fn binary_event_round_trips_over_polling() {
        let mut sim = echo_sim(1);
        let p = sim.poll_open(0);
        sim.post_ok(0, &p.sid, &[Pkt::text("40")]);
        sim.poll_now(0, &p.sid);
        sim.post_ok(
            0,
            &p.sid,
            &[Pkt::text(r#"451-["message",{"_placeholder":true,"num":0}]"#), Pkt::Bin(vec![0xff, 0, 7])],
        );
        assert_eq!(
            sim.poll_now(0, &p.sid),
            [Pkt::text(r#"451-["message-back",{"_placeholder":true,"num":0}]"#), Pkt::Bin(vec![0xff, 0, 7]),]
        );
    }

    #[test]
    fn binary_broadcast_reaches_other_core_with_attachments() {
        let mut sim = echo_sim(2);
        let (a, _) = sim.ws_connected(0);
        let (b, _) = sim.ws_connected(1);
        sim.ws_send(b.conn, r#"421["join","r"]"#);
        sim.ws_texts(b.conn);
        sim.ws_send(a.conn, r#"451-["to-room","r",{"_placeholder":true,"num":0}]"#);
        sim.ws_send_bin(a.conn, b"bin");
        assert_eq!(
            sim.ws_packets(b.conn),
            [Pkt::text(r#"451-["room-msg",{"_placeholder":true,"num":0}]"#), Pkt::Bin(b"bin".to_vec()),]
        );
    }

    #[test]
    fn server_emit_with_binary_argument_sends_attachment() {
        let mut b = ServerBuilder::new(Config::default());
        b.namespace("/", |ns| {
            ns.on_connect(|s: &mut Socket<'_>| {
                s.emit(
                    "file",
                    &(
                        crate::api::Binary(Bytes::from_static(b"ab")),
                        "name",
                        crate::api::Binary(Bytes::from_static(b"c")),
                    ),
                );
            });
        });
        let mut sim = Sim::new(1, b, 3);
        let c = sim.ws_open(0);
        sim.ws_send(c.conn, "40");
        let pkts = sim.ws_packets(c.conn);
        assert_eq!(
            pkts[1..],
            [
                Pkt::text(
                    r#"452-["file",{"_placeholder":true,"num":0},"name",{"_placeholder":true,"num":1}]"#
                ),
                Pkt::Bin(b"ab".to_vec()),
                Pkt::Bin(b"c".to_vec()),
            ]
        );
    }

    // ----- 14. handoff ----------------------------------------------------------------------

    #[test]
    fn polling_request_on_wrong_core_is_handed_to_owner() {
        let (mut sim, _log) = sim_with(2, Config::default());
        let p = sim.poll_open(1);
        sim.sent.clear();
        // The POST lands on core 0 and is handed over to core 1.
        let post = sim.request(0, &post_request(&p.sid, b"40"));
        assert_eq!(sim.sent, [Sent::Handoff { from: 0, to: 1 }]);
        assert_eq!(sim.core_of(post), 1);
        let r = sim.take_response(post).expect("answered after handoff");
        assert_eq!((r.status, r.body_str()), (200, "ok"));
        // A GET landing on core 0 is handed over too, and parks on core 1.
        let pkts = sim.poll_now(0, &p.sid);
        connect_ok_sid(texts(&pkts)[0], "/");
        let get = sim.poll_get(0, &p.sid);
        assert!(sim.is_parked(get));
        assert_eq!(sim.core_of(get), 1);
        sim.post_ok(0, &p.sid, &[Pkt::text(r#"42["message","via 0"]"#)]);
        assert_eq!(sim.poll_answer(get).expect("answered"), [Pkt::text(r#"42["message-back","via 0"]"#)]);
        assert_eq!(sim.shard(0).session_count(), 0);
        assert_eq!(sim.shard(1).session_count(), 1);
    }

    #[test]
    fn held_handoff_keeps_order_with_messages_from_same_core() {
        let (mut sim, _log) = sim_with(2, Config::default());
        let (p, _) = poll_connected(&mut sim, 1);
        sim.post_ok(1, &p.sid, &[Pkt::text(r#"421["join","r"]"#)]);
        sim.poll_now(1, &p.sid);
        let (a, _) = sim.ws_connected(0);
        sim.hold = true;
        sim.ws_send(a.conn, r#"42["to-room","r","first"]"#);
        let get = sim.poll_get(0, &p.sid);
        assert_eq!(sim.inbox_len(1), 2);
        assert!(!sim.is_parked(get));
        sim.run_until_idle();
        sim.hold = false;
        // The broadcast was queued before the GET arrived, so the GET takes it at once.
        assert_eq!(sim.poll_answer(get).expect("answered"), [Pkt::text(r#"42["room-msg","first"]"#)]);
    }

    #[test]
    fn pipelined_requests_keep_their_answers_across_handoff() {
        let (mut sim, _log) = sim_with(2, Config::default());
        let (p0, _) = poll_connected(&mut sim, 0);
        let (p1, _) = poll_connected(&mut sim, 1);
        let mut bytes = post_request(&p0.sid, br#"42["message",0]"#);
        bytes.extend(post_request(&p1.sid, br#"42["message",1]"#));
        let conn = sim.request(0, &bytes);
        assert_eq!(sim.core_of(conn), 1);
        assert_eq!(sim.take_response(conn).map(|r| r.status), Some(200));
        assert_eq!(sim.take_response(conn).map(|r| r.status), Some(200));
    }

    #[test]
    fn websocket_upgrade_on_wrong_core_is_handed_to_owner() {
        let (mut sim, _log) = sim_with(2, Config::default());
        let (p, _) = poll_connected(&mut sim, 1);
        let get = sim.poll_get(0, &p.sid);
        let ws = sim.ws_probe(0, &p.sid);
        assert_eq!(sim.core_of(ws), 1);
        assert_eq!(sim.take_response(ws).expect("101").status, 101);
        sim.ws_send(ws, "2probe");
        assert_eq!(sim.ws_texts(ws), ["3probe"]);
        assert_eq!(sim.poll_answer(get).expect("noop"), [Pkt::text("6")]);
        sim.ws_send(ws, "5");
        sim.ws_send(ws, r#"42["message",1]"#);
        assert_eq!(sim.ws_texts(ws), [r#"42["message-back",1]"#]);
    }

    // ----- server-initiated close -----------------------------------------------------------

    #[test]
    fn server_disconnect_with_close_over_websocket_sends_packets_then_closes() {
        let (mut sim, log) = sim_with(1, Config::default());
        let (c, id) = sim.ws_connected(0);
        sim.ws_send(c.conn, r#"42["bye"]"#);
        assert_eq!(
            sim.ws_take(c.conn),
            [WsMsg::Text(r#"42["bye-bye"]"#.into()), WsMsg::Text("41".into()), WsMsg::Close(Some(1000))]
        );
        assert!(sim.is_closed(c.conn));
        assert!(log.take().contains(&format!("disconnect {id} server namespace disconnect")));
    }

    #[test]
    fn server_disconnect_with_close_delivers_disconnect_packet_to_polling_client() {
        let (mut sim, _log) = sim_with(1, Config::default());
        let (p, _) = poll_connected(&mut sim, 0);
        let get = sim.poll_get(0, &p.sid);
        sim.post_ok(0, &p.sid, &[Pkt::text(r#"42["bye"]"#)]);
        // Everything the handler sent leaves in one answer to the parked GET: its event, the
        // DISCONNECT, then the close packet.
        assert_eq!(
            sim.poll_answer(get).expect("answered"),
            [Pkt::text(r#"42["bye-bye"]"#), Pkt::text("41"), Pkt::text("1")]
        );
    }

    #[test]
    fn shutdown_closes_sessions_and_refuses_new_ones() {
        let (mut sim, log) = sim_with(1, Config::default());
        let (c, id) = sim.ws_connected(0);
        let (p, pid) = poll_connected(&mut sim, 0);
        let get = sim.poll_get(0, &p.sid);
        sim.run_on(0, |s| s.shutdown());
        assert!(sim.is_closed(c.conn));
        assert_eq!(sim.poll_answer(get).expect("answered"), [Pkt::text("1")]);
        let l = log.take();
        assert!(l.contains(&format!("disconnect {id} server shutting down")));
        assert!(l.contains(&format!("disconnect {pid} server shutting down")));
        let conn = sim.request(0, &get_request(None));
        assert_eq!(sim.take_response(conn).expect("answered").status, 503);
        assert!(sim.is_closed(conn));
    }

    #[test]
    fn socket_timers_run_in_virtual_time_and_skip_gone_sockets() {
        let fired = Arc::new(Mutex::new(Vec::<String>::new()));
        let f = fired.clone();
        let mut b = ServerBuilder::new(Config::default());
        b.namespace("/", move |ns| {
            let f = f.clone();
            ns.on_connect(move |s: &mut Socket<'_>| {
                let f = f.clone();
                s.set_timer(Duration::from_millis(500), move |s| {
                    f.lock().unwrap().push(s.id().to_owned());
                    s.emit("late", &"hello");
                });
            });
        });
        let mut sim = Sim::new(1, b, 5);
        let (a, a_id) = sim.ws_connected(0);
        let (c, _c_id) = sim.ws_connected(0);
        sim.ws_send(c.conn, "41");
        sim.advance_ms(499);
        assert!(fired.lock().unwrap().is_empty(), "not before its time");
        sim.advance_ms(1);
        assert_eq!(*fired.lock().unwrap(), vec![a_id], "only the socket still connected");
        assert_eq!(sim.ws_texts(a.conn), vec![r#"42["late","hello"]"#.to_owned()]);
    }

    /// A request with an `Origin` header added after the request line.
    fn with_origin(raw: Vec<u8>, origin: &str) -> Vec<u8> {
        let text = String::from_utf8(raw).expect("ASCII request");
        let (line, rest) = text.split_once("\r\n").expect("request line");
        format!("{line}\r\nOrigin: {origin}\r\n{rest}").into_bytes()
    }

    #[test]
    fn origin_allow_list_refuses_other_origins_for_polling_and_websocket() {
        let cfg = Config { cors: Cors::allow_list(["https://ok.example"]), ..Config::default() };
        let (mut sim, _log) = sim_with(1, cfg);
        for (what, raw) in [("polling", get_request(None)), ("websocket", ws_request(None))] {
            let before = sim.shard(0).session_count();
            let conn = sim.request(0, &with_origin(raw.clone(), "https://evil.example"));
            let r = sim.take_response(conn).expect("answered");
            assert_eq!(r.status, 403, "{what} from another origin: {r:?}");
            assert_eq!(sim.shard(0).session_count(), before, "{what}: no session for a refused origin");
            let conn = sim.request(0, &with_origin(raw.clone(), "https://ok.example"));
            let r = sim.take_response(conn).expect("answered");
            let want = if what == "websocket" { 101 } else { 200 };
            assert_eq!(r.status, want, "{what} from the allowed origin: {r:?}");
            let allow = r.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case("access-control-allow-origin"));
            if what == "polling" {
                assert_eq!(allow.map(|(_, v)| v.as_str()), Some("https://ok.example"));
            }
        }
        // No Origin: not a browser, nothing for CORS to protect.
        let conn = sim.request(0, &get_request(None));
        assert_eq!(sim.take_response(conn).expect("answered").status, 200);
        assert_eq!(sim.shard(0).session_count(), 3);
    }

    #[test]
    fn healthz_stays_ok_and_readyz_turns_503_when_draining() {
        let (mut sim, _log) = sim_with(1, Config::default());
        let get = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").into_bytes();
        let conn = sim.request(0, &get("/readyz"));
        let r = sim.take_response(conn).expect("answered");
        assert_eq!((r.status, r.body.as_slice()), (200, &br#"{"status":"ready"}"#[..]));
        sim.run_on(0, |s| s.shutdown());
        let conn = sim.request(0, &get("/readyz"));
        let r = sim.take_response(conn).expect("answered");
        assert_eq!((r.status, r.body.as_slice()), (503, &br#"{"status":"draining"}"#[..]));
        let conn = sim.request(0, &get("/healthz"));
        assert_eq!(sim.take_response(conn).expect("answered").status, 200);
        let conn = sim.request(0, &get("/nothing-here"));
        assert_eq!(sim.take_response(conn).expect("answered").status, 404);
    }

    // ----- re-entrant handlers --------------------------------------------------------------

    #[test]
    fn disconnect_from_disconnect_handler_runs_handler_once() {
        let calls = Arc::new(AtomicUsize::new(0));
        let n = calls.clone();
        let mut b = ServerBuilder::new(Config::default());
        b.namespace("/", move |ns| {
            let n = n.clone();
            ns.on_disconnect(move |s: &mut Socket<'_>, _r: DisconnectReason| {
                // Guarded so that the bug shows as a count, not as unbounded recursion.
                if n.fetch_add(1, Ordering::SeqCst) < 3 {
                    s.disconnect(true);
                }
            });
        });
        let mut sim = Sim::new(1, b, 5);
        let c = sim.ws_open(0);
        sim.ws_send(c.conn, "40");
        sim.ws_send(c.conn, "41");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(sim.shard(0).socket_count(), 0);
    }

    // ----- plain Engine.IO endpoint ---------------------------------------------------------

    #[test]
    fn engine_endpoint_echoes_text_and_binary() {
        let mut sim = echo_sim(1);
        let raw = format!(
            "GET /engine.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: sim\r\n\
             Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {WS_KEY}\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n"
        );
        let conn = sim.request(0, raw.as_bytes());
        assert_eq!(sim.take_response(conn).expect("101").status, 101);
        sim.ws_take(conn);
        sim.ws_send(conn, "4hello");
        sim.ws_send_bin(conn, &[9, 8]);
        assert_eq!(sim.ws_packets(conn), [Pkt::text("4hello"), Pkt::Bin(vec![9, 8])]);
        // No connect timeout on a plain Engine.IO session.
        sim.set_auto_pong(conn, true);
        sim.advance_ms(5000);
        assert!(!sim.is_closed(conn));
    }

    // ----- the harness itself ---------------------------------------------------------------

    /// A scenario touching every kind of input; returns everything the clients received.
    fn transcript(seed: u64) -> Vec<String> {
        let log = Log::default();
        let mut sim = Sim::new(2, app(conformance(), &log), seed);
        let (a, _) = sim.ws_connected(0);
        sim.set_auto_pong(a.conn, true);
        let (p, _) = poll_connected(&mut sim, 1);
        sim.post_ok(0, &p.sid, &[Pkt::text(r#"421["join","r"]"#)]);
        let get = sim.poll_get(0, &p.sid);
        sim.ws_send(a.conn, r#"42["to-room","r","x"]"#);
        sim.advance_ms(700);
        let mut out: Vec<String> = sim.ws_take(a.conn).into_iter().map(|m| format!("{m:?}")).collect();
        while let Some(r) = sim.take_response(get) {
            out.push(format!("{r:?}"));
        }
        out.extend(log.take());
        out
    }

    #[test]
    fn same_seed_gives_identical_transcript() {
        let a = transcript(1);
        assert!(a.len() > 3, "{a:?}");
        assert_eq!(a, transcript(1));
        assert_ne!(a, transcript(2), "ids come from the seed");
    }

    #[test]
    fn clock_steps_to_each_deadline_exactly() {
        let (mut sim, _log) = sim_with(1, conformance());
        let (c, _) = sim.ws_connected(0);
        assert_eq!(sim.next_deadline(), Some(Duration::from_millis(300)));
        sim.advance_ms(250);
        assert_eq!(sim.elapsed(), Duration::from_millis(250));
        assert!(sim.ws_take(c.conn).is_empty());
        sim.advance_ms(50);
        assert_eq!(sim.ws_take(c.conn), [WsMsg::Text("2".into())]);
        assert_eq!(sim.next_deadline(), Some(Duration::from_millis(500)));
        assert_eq!(sim.cores(), 1);
    }
}
