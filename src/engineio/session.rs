//! The Engine.IO v4 session state machine.
//!
//! One `Session` per Engine.IO session. It knows the transport in use (long-polling or
//! WebSocket), the upgrade from polling to WebSocket, the heartbeat, and the packets waiting for
//! a poll. It never touches a socket or a clock: the runtime feeds it what arrived (`handle_*`)
//! with the current time, and drains what it must do (`poll_transmit`, `poll_event`) and when to
//! wake it next (`poll_timeout`).
//!
//! Calling contract, in each loop turn for a session:
//! 1. any of `handle_get`, `handle_post`, `handle_ws`, `handle_probe`, `handle_timeout`, `send`;
//! 2. drain `poll_event` (messages for Socket.IO, upgrade done, closed) until `None`;
//! 3. drain `poll_transmit` until `None` and write what it returns;
//! 4. re-arm the timer with `poll_timeout`.
//!
//! Once `Closed` has been returned by `poll_event` the session is finished and must be dropped
//! after draining `poll_transmit` (which may still answer a parked poll with the close packet).

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::packet::{self, Data, DecodeError, Packet};

/// Which transport the session is using.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    Polling,
    WebSocket,
}

impl TransportKind {
    pub fn name(self) -> &'static str {
        match self {
            TransportKind::Polling => "polling",
            TransportKind::WebSocket => "websocket",
        }
    }
}

/// Why a session closed; the strings are the reference server's reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloseReason {
    /// The client sent a close packet or its connection ended.
    TransportClose,
    /// A protocol violation on the transport (overlapping polls, payload too large, ...).
    TransportError,
    /// No pong within `ping_timeout` of a ping.
    PingTimeout,
    /// Bytes that are not Engine.IO packets.
    ParseError,
    /// The server closed the session (Socket.IO: every namespace disconnected).
    ForcedClose,
    /// The server is shutting down.
    ServerShutdown,
    /// The client did not read its output fast enough and the output limit was hit.
    SlowConsumer,
}

impl CloseReason {
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::TransportClose => "transport close",
            CloseReason::TransportError => "transport error",
            CloseReason::PingTimeout => "ping timeout",
            CloseReason::ParseError => "parse error",
            CloseReason::ForcedClose => "forced close",
            CloseReason::ServerShutdown => "server shutting down",
            CloseReason::SlowConsumer => "slow consumer",
        }
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A packet ready to leave, encoded once. `frame` holds the complete WebSocket frame (header
/// then payload), so a broadcast can share one allocation between every WebSocket receiver and
/// every polling receiver (which takes the payload part).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    frame: Bytes,
    header_len: u8,
    binary: bool,
}

impl Outgoing {
    /// A text packet; `packet_text` includes the Engine.IO type digit (e.g. `42["a"]`).
    pub fn text(packet_text: &str) -> Outgoing {
        Self::framed(crate::http::websocket::OpCode::Text, packet_text.as_bytes(), false)
    }

    /// A binary message packet (a Socket.IO attachment, or a plain binary message).
    pub fn binary(data: &[u8]) -> Outgoing {
        Self::framed(crate::http::websocket::OpCode::Binary, data, true)
    }

    /// A text packet built from an Engine.IO packet.
    pub fn packet(p: &Packet) -> Outgoing {
        match p {
            Packet::Message(Data::Binary(b)) => Outgoing::binary(b),
            other => {
                let mut s = String::new();
                other.encode_text(&mut s);
                Outgoing::text(&s)
            }
        }
    }

    fn framed(op: crate::http::websocket::OpCode, payload: &[u8], binary: bool) -> Outgoing {
        let mut v = Vec::with_capacity(payload.len() + 10);
        crate::http::websocket::encode_frame(op, payload, &mut v);
        let header_len = (v.len() - payload.len()) as u8;
        Outgoing { frame: Bytes::from(v), header_len, binary }
    }

    /// The whole WebSocket frame.
    pub fn ws_frame(&self) -> &[u8] {
        &self.frame
    }

    /// The packet without the WebSocket header (text with its type digit, or raw binary).
    pub fn payload(&self) -> &[u8] {
        &self.frame[self.header_len as usize..]
    }

    pub fn is_binary(&self) -> bool {
        self.binary
    }

    /// Bytes this packet occupies in an output queue.
    pub fn len(&self) -> usize {
        self.frame.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frame.is_empty()
    }

    /// Append as one record of a polling payload.
    pub fn append_polling(&self, out: &mut Vec<u8>) {
        if self.binary {
            packet::append_binary_record(out, self.payload());
        } else {
            packet::append_record(out, self.payload());
        }
    }
}

/// Settings of one session.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
    pub upgrade_timeout: Duration,
    /// Bytes that may wait for a poll (or the upgrade) before the client counts as a slow
    /// consumer and the session is closed.
    pub max_queue_bytes: usize,
}

/// What a GET poll should do.
#[derive(Debug, PartialEq, Eq)]
pub enum GetOutcome {
    /// Answer at once with this payload.
    Respond(Vec<u8>),
    /// Keep the request open; the answer comes later as `Transmit::PollResponse`.
    Park,
    /// The request is not acceptable (answer HTTP 400 with this Engine.IO error code).
    Reject(EioError),
}

/// What the runtime must send.
#[derive(Debug, PartialEq, Eq)]
pub enum Transmit {
    /// Answer the parked GET with this payload (a close packet when the session ended).
    PollResponse(Vec<u8>),
    /// Write this frame on the session's WebSocket.
    Ws(Outgoing),
    /// Write this frame on the WebSocket being probed for the upgrade.
    Probe(Outgoing),
    /// Close the probing WebSocket (the upgrade failed); the session goes on over polling.
    CloseProbe,
}

/// What the session reports upwards.
#[derive(Debug, PartialEq, Eq)]
pub enum SessionEvent {
    /// A message for the layer above (Socket.IO).
    Message(Data),
    /// The probe WebSocket became the session's transport.
    Upgraded,
    /// The session ended; it is reported once.
    Closed(CloseReason),
}

/// Engine.IO HTTP errors, answered with status 400 and `{"code":N,"message":"..."}`
/// (403 and 429 where [`EioError::status`] says so).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EioError {
    UnknownTransport,
    UnknownSid,
    BadHandshakeMethod,
    BadRequest,
    Forbidden,
    UnsupportedProtocolVersion,
    /// Too many handshakes from one address (`Limits::max_handshakes_per_ip_per_sec`). The
    /// reference server has no such limit, so code 6 is sockeye's own; clients only see a
    /// failed request either way.
    TooManyRequests,
}

impl EioError {
    pub fn code(self) -> u8 {
        match self {
            EioError::UnknownTransport => 0,
            EioError::UnknownSid => 1,
            EioError::BadHandshakeMethod => 2,
            EioError::BadRequest => 3,
            EioError::Forbidden => 4,
            EioError::UnsupportedProtocolVersion => 5,
            EioError::TooManyRequests => 6,
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            EioError::UnknownTransport => "Transport unknown",
            EioError::UnknownSid => "Session ID unknown",
            EioError::BadHandshakeMethod => "Bad handshake method",
            EioError::BadRequest => "Bad request",
            EioError::Forbidden => "Forbidden",
            EioError::UnsupportedProtocolVersion => "Unsupported protocol version",
            EioError::TooManyRequests => "Too many requests",
        }
    }

    /// The JSON body of the reference server.
    pub fn json(self) -> String {
        format!("{{\"code\":{},\"message\":\"{}\"}}", self.code(), self.message())
    }

    /// HTTP status: 403 for `Forbidden`, 429 for `TooManyRequests`, 400 otherwise.
    pub fn status(self) -> u16 {
        match self {
            EioError::Forbidden => 403,
            EioError::TooManyRequests => 429,
            _ => 400,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Upgrade {
    None,
    /// A WebSocket was attached for probing; `probed` once `2probe` was answered.
    Probing {
        deadline: Instant,
        probed: bool,
    },
}

/// One Engine.IO session. See the module documentation for the calling contract.
#[derive(Debug)]
pub struct Session {
    transport: TransportKind,
    upgrade: Upgrade,
    cfg: SessionConfig,
    /// Packets waiting for a poll (polling) or for the transmit drain (WebSocket).
    queue: VecDeque<Outgoing>,
    queued_bytes: usize,
    get_parked: bool,
    /// A noop must answer the parked poll so the client can pause polling and upgrade.
    noop_due: bool,
    next_ping: Instant,
    pong_deadline: Option<Instant>,
    closed: Option<CloseReason>,
    close_reported: bool,
    /// A server-initiated close over polling waits for one more poll to deliver what was queued
    /// (e.g. a Socket.IO DISCONNECT) followed by the close packet, until this deadline.
    linger_until: Option<Instant>,
    /// The latest time passed to any `handle_*` method.
    clock: Instant,
    events: VecDeque<SessionEvent>,
    transmits: VecDeque<Transmit>,
    /// Packets counted since the last `take_counts`, for metrics.
    counts: PacketCounts,
}

/// Packets a session counted (see [`Session::take_counts`]).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PacketCounts {
    /// Packets received from the client (polling records or WebSocket messages, probe excluded).
    pub received: u64,
    /// Packets queued for the client (`send`, pings included).
    pub sent: u64,
    /// Packets discarded unsent: sent after the close, or still queued when the session closed
    /// (a slow consumer's queue, a lingering close that got no last poll).
    pub dropped: u64,
}

impl Session {
    /// A new session whose handshake arrived over `transport` at `now`. The caller sends the
    /// open packet (see `packet::open_json`); the ping timer starts now.
    pub fn new(transport: TransportKind, cfg: SessionConfig, now: Instant) -> Session {
        Session {
            transport,
            upgrade: Upgrade::None,
            next_ping: now + cfg.ping_interval,
            cfg,
            queue: VecDeque::new(),
            queued_bytes: 0,
            get_parked: false,
            noop_due: false,
            pong_deadline: None,
            closed: None,
            close_reported: false,
            linger_until: None,
            clock: now,
            events: VecDeque::new(),
            transmits: VecDeque::new(),
            counts: PacketCounts::default(),
        }
    }

    /// The packets counted since the last call (plain integers; the shard adds them to its
    /// metrics).
    pub fn take_counts(&mut self) -> PacketCounts {
        std::mem::take(&mut self.counts)
    }

    pub fn transport(&self) -> TransportKind {
        self.transport
    }

    pub fn is_closed(&self) -> bool {
        self.closed.is_some()
    }

    pub fn is_upgrading(&self) -> bool {
        matches!(self.upgrade, Upgrade::Probing { .. })
    }

    /// Whether a GET poll is parked.
    pub fn has_parked_get(&self) -> bool {
        self.get_parked
    }

    /// Queue a packet for the client. Over WebSocket it leaves on the next transmit drain; over
    /// polling it waits for a GET. Exceeding `max_queue_bytes` closes the session.
    pub fn send(&mut self, out: Outgoing) {
        if self.closed.is_some() {
            self.counts.dropped += 1;
            return;
        }
        self.counts.sent += 1;
        self.queued_bytes += out.len();
        self.queue.push_back(out);
        // Over WebSocket the queue is emptied at the end of every batch and the runtime bounds
        // what the connection has not written; over polling nobody drains it but the client.
        if self.transport == TransportKind::Polling && self.queued_bytes > self.cfg.max_queue_bytes {
            self.close(CloseReason::SlowConsumer);
        }
    }

    /// A GET poll arrived.
    pub fn handle_get(&mut self, now: Instant) -> GetOutcome {
        self.clock = now;
        if self.closed.is_some() {
            // The last poll of a lingering close: what was queued, then the close packet.
            self.linger_until = None;
            let mut body = self.drain_payload();
            packet::append_record(&mut body, b"1");
            return GetOutcome::Respond(body);
        }
        if self.transport == TransportKind::WebSocket {
            return GetOutcome::Reject(EioError::BadRequest);
        }
        if self.get_parked {
            // Two concurrent polls: the reference closes the session, answers the first poll
            // with a close packet and the second with a 400.
            self.close(CloseReason::TransportError);
            return GetOutcome::Reject(EioError::BadRequest);
        }
        if !self.queue.is_empty() {
            return GetOutcome::Respond(self.drain_payload());
        }
        if self.noop_due || matches!(self.upgrade, Upgrade::Probing { probed: true, .. }) {
            self.noop_due = false;
            return GetOutcome::Respond(b"6".to_vec());
        }
        self.get_parked = true;
        GetOutcome::Park
    }

    /// The parked GET's connection went away before it was answered.
    pub fn handle_get_aborted(&mut self) {
        if self.get_parked {
            self.get_parked = false;
            // Reference: a poll request closed early is a transport close.
            self.close(CloseReason::TransportClose);
        }
    }

    /// A POST body arrived (already bounded by `max_payload`). `Err` means the session was
    /// refused the request (answer 400) — it was not closed for it unless the body was
    /// malformed, in which case it is closed with `ParseError` and `Ok` is returned, as the
    /// reference answers `ok` to a POST it then closes on.
    pub fn handle_post(&mut self, body: &[u8], now: Instant) -> Result<(), EioError> {
        self.clock = now;
        if self.closed.is_some() {
            return Err(EioError::UnknownSid);
        }
        if self.transport == TransportKind::WebSocket {
            return Err(EioError::BadRequest);
        }
        for p in packet::decode_payload(body) {
            match p {
                Ok(p) => self.handle_packet(p, now),
                Err(_) => {
                    self.close(CloseReason::ParseError);
                    break;
                }
            }
            if self.closed.is_some() {
                break;
            }
        }
        Ok(())
    }

    /// A message arrived on the session's own WebSocket.
    pub fn handle_ws(&mut self, msg: WsInput<'_>, now: Instant) {
        self.clock = now;
        if self.closed.is_some() {
            return;
        }
        match decode_ws(msg) {
            Ok(p) => self.handle_packet(p, now),
            Err(_) => self.close(CloseReason::ParseError),
        }
    }

    /// The session's WebSocket ended (closed by the peer, or an IO error).
    pub fn handle_ws_closed(&mut self, error: bool) {
        if self.transport == TransportKind::WebSocket {
            self.close(if error { CloseReason::TransportError } else { CloseReason::TransportClose });
        }
    }

    /// Whether a WebSocket may be attached for an upgrade now.
    pub fn can_probe(&self) -> bool {
        self.closed.is_none() && self.transport == TransportKind::Polling && self.upgrade == Upgrade::None
    }

    /// A WebSocket carrying this sid was accepted for the upgrade (check `can_probe` first).
    pub fn handle_probe_open(&mut self, now: Instant) {
        debug_assert!(self.can_probe());
        self.upgrade = Upgrade::Probing { deadline: now + self.cfg.upgrade_timeout, probed: false };
    }

    /// A message arrived on the probing WebSocket.
    pub fn handle_probe(&mut self, msg: WsInput<'_>, _now: Instant) {
        let Upgrade::Probing { deadline, probed } = self.upgrade else {
            return;
        };
        match decode_ws(msg) {
            Ok(Packet::Ping(ref d)) if d == "probe" && !probed => {
                self.transmits.push_back(Transmit::Probe(Outgoing::text("3probe")));
                self.upgrade = Upgrade::Probing { deadline, probed: true };
                // Force the client's pending poll to return so it can pause and upgrade.
                if self.get_parked {
                    self.get_parked = false;
                    self.transmits.push_back(Transmit::PollResponse(b"6".to_vec()));
                } else {
                    self.noop_due = true;
                }
            }
            Ok(Packet::Upgrade) if probed => {
                self.upgrade = Upgrade::None;
                self.noop_due = false;
                self.transport = TransportKind::WebSocket;
                if self.get_parked {
                    self.get_parked = false;
                    self.transmits.push_back(Transmit::PollResponse(b"6".to_vec()));
                }
                self.events.push_back(SessionEvent::Upgraded);
            }
            _ => self.fail_probe(),
        }
    }

    /// The probing WebSocket ended before the upgrade completed.
    pub fn handle_probe_closed(&mut self) {
        if self.is_upgrading() {
            self.upgrade = Upgrade::None;
            self.noop_due = false;
        }
    }

    fn fail_probe(&mut self) {
        self.upgrade = Upgrade::None;
        self.noop_due = false;
        self.transmits.push_back(Transmit::CloseProbe);
    }

    /// Run the timers that are due.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.clock = now;
        if self.linger_until.is_some_and(|d| now >= d) {
            self.linger_until = None;
            self.counts.dropped += self.queue.len() as u64;
            self.queue.clear();
            self.queued_bytes = 0;
        }
        if self.closed.is_some() {
            return;
        }
        if let Upgrade::Probing { deadline, .. } = self.upgrade
            && now >= deadline
        {
            self.fail_probe();
        }
        match self.pong_deadline {
            Some(d) if now >= d => self.close(CloseReason::PingTimeout),
            Some(_) => {}
            None if now >= self.next_ping => {
                self.pong_deadline = Some(now + self.cfg.ping_timeout);
                self.send(Outgoing::text("2"));
            }
            None => {}
        }
    }

    /// Close the session. A close by the server itself (`ForcedClose`, `ServerShutdown`) over
    /// polling still delivers what is queued, then the close packet: at once to a parked poll,
    /// or to the next poll within `ping_timeout` (the session lingers until then).
    pub fn close(&mut self, reason: CloseReason) {
        if self.closed.is_some() {
            return;
        }
        self.closed = Some(reason);
        let graceful = matches!(reason, CloseReason::ForcedClose | CloseReason::ServerShutdown);
        match self.transport {
            // Written before the close frame, on the same connection.
            TransportKind::WebSocket if graceful => {
                self.transmits.extend(self.queue.drain(..).map(Transmit::Ws));
                self.queued_bytes = 0;
            }
            TransportKind::Polling if graceful => {}
            _ => {
                self.counts.dropped += self.queue.len() as u64;
                self.queue.clear();
                self.queued_bytes = 0;
            }
        }
        if self.get_parked {
            self.get_parked = false;
            let mut body = self.drain_payload();
            packet::append_record(&mut body, b"1");
            self.transmits.push_back(Transmit::PollResponse(body));
        } else if graceful && self.transport == TransportKind::Polling {
            // The reference keeps the session for the next poll, which gets the close packet
            // (after anything still queued) instead of a 400 for an unknown session.
            self.linger_until = Some(self.clock + self.cfg.ping_timeout);
        }
        if self.is_upgrading() {
            self.upgrade = Upgrade::None;
            self.transmits.push_back(Transmit::CloseProbe);
        }
    }

    /// Next upward event.
    pub fn poll_event(&mut self) -> Option<SessionEvent> {
        if let Some(e) = self.events.pop_front() {
            return Some(e);
        }
        match self.closed {
            Some(reason) if !self.close_reported && self.linger_until.is_none() => {
                self.close_reported = true;
                Some(SessionEvent::Closed(reason))
            }
            _ => None,
        }
    }

    /// Next thing to send.
    ///
    /// Queued packets are turned into transmits here, not when they are sent, so everything
    /// sent while the runtime processed one batch of input leaves together: one polling
    /// response, or frames written in one go.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        if let Some(t) = self.transmits.pop_front() {
            return Some(t);
        }
        if self.closed.is_some() || self.queue.is_empty() {
            return None;
        }
        match self.transport {
            TransportKind::WebSocket => {
                let o = self.queue.pop_front()?;
                self.queued_bytes -= o.len();
                Some(Transmit::Ws(o))
            }
            TransportKind::Polling if self.get_parked => {
                self.get_parked = false;
                Some(Transmit::PollResponse(self.drain_payload()))
            }
            TransportKind::Polling => None,
        }
    }

    /// When `handle_timeout` must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.closed.is_some() {
            return self.linger_until;
        }
        let hb = self.pong_deadline.unwrap_or(self.next_ping);
        Some(match self.upgrade {
            Upgrade::Probing { deadline, .. } => hb.min(deadline),
            Upgrade::None => hb,
        })
    }

    fn handle_packet(&mut self, p: Packet, now: Instant) {
        self.counts.received += 1;
        match p {
            Packet::Pong(_) => {
                if self.pong_deadline.take().is_some() {
                    self.next_ping = now + self.cfg.ping_interval;
                }
            }
            Packet::Message(d) => self.events.push_back(SessionEvent::Message(d)),
            Packet::Close => self.close(CloseReason::TransportClose),
            Packet::Noop => {}
            // A v4 client never pings the server, never opens and never upgrades outside a
            // probe: the reference treats these as transport errors.
            Packet::Ping(_) | Packet::Open(_) | Packet::Upgrade => self.close(CloseReason::TransportError),
        }
    }

    fn drain_payload(&mut self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.queued_bytes + self.queue.len() * 2);
        for o in self.queue.drain(..) {
            o.append_polling(&mut out);
        }
        self.queued_bytes = 0;
        out
    }
}

/// A WebSocket message as the session sees it.
#[derive(Debug, Clone, Copy)]
pub enum WsInput<'a> {
    Text(&'a str),
    Binary(&'a Bytes),
}

fn decode_ws(msg: WsInput<'_>) -> Result<Packet, DecodeError> {
    match msg {
        WsInput::Text(t) => Packet::decode_text(t),
        WsInput::Binary(b) => Ok(Packet::Message(Data::Binary(b.clone()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> SessionConfig {
        SessionConfig {
            ping_interval: Duration::from_millis(300),
            ping_timeout: Duration::from_millis(200),
            upgrade_timeout: Duration::from_millis(1000),
            max_queue_bytes: 1000,
        }
    }

    fn ms(t0: Instant, n: u64) -> Instant {
        t0 + Duration::from_millis(n)
    }

    fn events(s: &mut Session) -> Vec<SessionEvent> {
        std::iter::from_fn(|| s.poll_event()).collect()
    }

    fn transmits(s: &mut Session) -> Vec<Transmit> {
        std::iter::from_fn(|| s.poll_transmit()).collect()
    }

    #[test]
    fn first_ping_is_due_one_interval_after_creation() {
        let t0 = Instant::now();
        let mut s = Session::new(TransportKind::WebSocket, cfg(), t0);
        assert_eq!(s.poll_timeout(), Some(ms(t0, 300)));
        s.handle_timeout(ms(t0, 299));
        assert!(transmits(&mut s).is_empty());
        s.handle_timeout(ms(t0, 300));
        assert_eq!(transmits(&mut s), vec![Transmit::Ws(Outgoing::text("2"))]);
        assert_eq!(s.poll_timeout(), Some(ms(t0, 500)));
    }

    #[test]
    fn pong_schedules_next_ping_one_interval_later() {
        let t0 = Instant::now();
        let mut s = Session::new(TransportKind::WebSocket, cfg(), t0);
        s.handle_timeout(ms(t0, 300));
        transmits(&mut s);
        s.handle_ws(WsInput::Text("3"), ms(t0, 350));
        assert_eq!(s.poll_timeout(), Some(ms(t0, 650)));
        s.handle_timeout(ms(t0, 500));
        assert!(!s.is_closed());
    }

    #[test]
    fn ping_timeout_closes_websocket_session() {
        let t0 = Instant::now();
        let mut s = Session::new(TransportKind::WebSocket, cfg(), t0);
        s.handle_timeout(ms(t0, 300));
        s.handle_timeout(ms(t0, 500));
        assert_eq!(events(&mut s), vec![SessionEvent::Closed(CloseReason::PingTimeout)]);
        assert_eq!(s.poll_timeout(), None);
        // Reported once.
        assert!(events(&mut s).is_empty());
    }

    #[test]
    fn ping_timeout_answers_parked_poll_with_close_packet() {
        let t0 = Instant::now();
        let mut s = Session::new(TransportKind::Polling, cfg(), t0);
        s.handle_timeout(ms(t0, 300));
        // The ping waits for a poll.
        assert_eq!(s.handle_get(ms(t0, 301)), GetOutcome::Respond(b"2".to_vec()));
        assert_eq!(s.handle_get(ms(t0, 302)), GetOutcome::Park);
        s.handle_timeout(ms(t0, 500));
        assert_eq!(transmits(&mut s), vec![Transmit::PollResponse(b"1".to_vec())]);
        assert_eq!(events(&mut s), vec![SessionEvent::Closed(CloseReason::PingTimeout)]);
    }

    #[test]
    fn second_concurrent_get_closes_session() {
        let t0 = Instant::now();
        let mut s = Session::new(TransportKind::Polling, cfg(), t0);
        assert_eq!(s.handle_get(t0), GetOutcome::Park);
        assert_eq!(s.handle_get(t0), GetOutcome::Reject(EioError::BadRequest));
        assert_eq!(transmits(&mut s), vec![Transmit::PollResponse(b"1".to_vec())]);
        assert_eq!(events(&mut s), vec![SessionEvent::Closed(CloseReason::TransportError)]);
    }

    #[test]
    fn queued_packets_answer_next_poll_as_one_payload() {
        let t0 = Instant::now();
        let mut s = Session::new(TransportKind::Polling, cfg(), t0);
        s.send(Outgoing::text("4a"));
        s.send(Outgoing::binary(&[1, 2]));
        assert_eq!(s.handle_get(t0), GetOutcome::Respond(b"4a\x1ebAQI=".to_vec()));
    }

    #[test]
    fn send_while_parked_answers_the_poll() {
        let t0 = Instant::now();
        let mut s = Session::new(TransportKind::Polling, cfg(), t0);
        assert_eq!(s.handle_get(t0), GetOutcome::Park);
        s.send(Outgoing::text("4x"));
        assert_eq!(transmits(&mut s), vec![Transmit::PollResponse(b"4x".to_vec())]);
        assert!(!s.has_parked_get());
    }

    #[test]
    fn post_delivers_messages_and_close() {
        let t0 = Instant::now();
        let mut s = Session::new(TransportKind::Polling, cfg(), t0);
        s.handle_post(b"4hi\x1ebAQ==\x1e1", t0).unwrap();
        assert_eq!(
            events(&mut s),
            vec![
                SessionEvent::Message(Data::Text("hi".into())),
                SessionEvent::Message(Data::Binary(Bytes::from_static(&[1]))),
                SessionEvent::Closed(CloseReason::TransportClose),
            ]
        );
    }

    #[test]
    fn malformed_post_closes_with_parse_error() {
        let t0 = Instant::now();
        let mut s = Session::new(TransportKind::Polling, cfg(), t0);
        s.handle_post(b"4ok\x1e9bad", t0).unwrap();
        assert_eq!(
            events(&mut s),
            vec![
                SessionEvent::Message(Data::Text("ok".into())),
                SessionEvent::Closed(CloseReason::ParseError)
            ]
        );
    }

    #[test]
    fn client_ping_is_a_transport_error() {
        let t0 = Instant::now();
        let mut s = Session::new(TransportKind::WebSocket, cfg(), t0);
        s.handle_ws(WsInput::Text("2"), t0);
        assert_eq!(events(&mut s), vec![SessionEvent::Closed(CloseReason::TransportError)]);
    }

    #[test]
    fn upgrade_probe_noop_then_switch() {
        let t0 = Instant::now();
        let mut s = Session::new(TransportKind::Polling, cfg(), t0);
        assert_eq!(s.handle_get(t0), GetOutcome::Park);
        assert!(s.can_probe());
        s.handle_probe_open(t0);
        s.handle_probe(WsInput::Text("2probe"), t0);
        assert_eq!(
            transmits(&mut s),
            vec![Transmit::Probe(Outgoing::text("3probe")), Transmit::PollResponse(b"6".to_vec())]
        );
        // Packets sent during the upgrade still go to polling.
        s.send(Outgoing::text("4during"));
        s.handle_probe(WsInput::Text("5"), ms(t0, 10));
        assert_eq!(events(&mut s), vec![SessionEvent::Upgraded]);
        assert_eq!(transmits(&mut s), vec![Transmit::Ws(Outgoing::text("4during"))]);
        assert_eq!(s.transport(), TransportKind::WebSocket);
        assert_eq!(s.handle_get(t0), GetOutcome::Reject(EioError::BadRequest));
        assert!(!s.can_probe());
    }

    #[test]
    fn poll_arriving_during_probe_gets_noop() {
        let t0 = Instant::now();
        let mut s = Session::new(TransportKind::Polling, cfg(), t0);
        s.handle_probe_open(t0);
        s.handle_probe(WsInput::Text("2probe"), t0);
        transmits(&mut s);
        assert_eq!(s.handle_get(t0), GetOutcome::Respond(b"6".to_vec()));
    }

    #[test]
    fn bad_probe_closes_probe_only() {
        let t0 = Instant::now();
        let mut s = Session::new(TransportKind::Polling, cfg(), t0);
        s.handle_probe_open(t0);
        s.handle_probe(WsInput::Text("4hello"), t0);
        assert_eq!(transmits(&mut s), vec![Transmit::CloseProbe]);
        assert!(!s.is_closed());
        assert!(s.can_probe());
    }

    #[test]
    fn upgrade_times_out() {
        let t0 = Instant::now();
        let mut s = Session::new(TransportKind::Polling, cfg(), t0);
        s.handle_probe_open(t0);
        assert_eq!(s.poll_timeout(), Some(ms(t0, 300)));
        s.handle_timeout(ms(t0, 300));
        s.handle_get(ms(t0, 301));
        s.handle_post(b"3", ms(t0, 302)).unwrap();
        s.handle_timeout(ms(t0, 1000));
        assert_eq!(transmits(&mut s), vec![Transmit::CloseProbe]);
        assert!(!s.is_upgrading());
    }

    #[test]
    fn slow_consumer_is_closed_when_queue_overflows() {
        let t0 = Instant::now();
        let mut s = Session::new(TransportKind::Polling, cfg(), t0);
        for _ in 0..20 {
            s.send(Outgoing::text(&"4".repeat(100)));
        }
        assert_eq!(events(&mut s), vec![SessionEvent::Closed(CloseReason::SlowConsumer)]);
        // What was queued when the limit closed it, and what came after, is dropped.
        let c = s.take_counts();
        assert_eq!(c.dropped, 20, "{c:?}");
        assert!((10..=11).contains(&c.sent), "{c:?}");
        assert_eq!(s.take_counts(), PacketCounts::default(), "taken once");
    }

    #[test]
    fn packets_are_counted_in_and_out() {
        let t0 = Instant::now();
        let mut s = Session::new(TransportKind::Polling, cfg(), t0);
        s.handle_post(b"42[\"a\"]\x1e42[\"b\"]\x1e6", t0).unwrap();
        s.send(Outgoing::text("42[\"c\"]"));
        assert_eq!(s.take_counts(), PacketCounts { received: 3, sent: 1, dropped: 0 });
        // A graceful close over polling keeps the queue for the last poll: nothing dropped.
        s.send(Outgoing::text("41"));
        s.close(CloseReason::ForcedClose);
        let _ = s.handle_get(ms(t0, 1));
        assert_eq!(s.take_counts(), PacketCounts { received: 0, sent: 1, dropped: 0 });
    }

    #[test]
    fn server_close_over_polling_delivers_queue_then_close_packet() {
        let t0 = Instant::now();
        let mut s = Session::new(TransportKind::Polling, cfg(), t0);
        s.send(Outgoing::text("41"));
        s.close(CloseReason::ForcedClose);
        // Not reported until the last poll came (or the linger deadline passed).
        assert_eq!(events(&mut s), vec![]);
        assert_eq!(s.poll_timeout(), Some(ms(t0, 200)));
        assert_eq!(s.handle_get(ms(t0, 10)), GetOutcome::Respond(b"41\x1e1".to_vec()));
        assert_eq!(events(&mut s), vec![SessionEvent::Closed(CloseReason::ForcedClose)]);
    }

    #[test]
    fn server_close_with_parked_poll_answers_queue_and_close_at_once() {
        let t0 = Instant::now();
        let mut s = Session::new(TransportKind::Polling, cfg(), t0);
        assert_eq!(s.handle_get(t0), GetOutcome::Park);
        s.close(CloseReason::ServerShutdown);
        assert_eq!(transmits(&mut s), vec![Transmit::PollResponse(b"1".to_vec())]);
        assert_eq!(events(&mut s), vec![SessionEvent::Closed(CloseReason::ServerShutdown)]);
    }

    #[test]
    fn server_close_without_queue_gives_next_poll_the_close_packet() {
        let t0 = Instant::now();
        let mut s = Session::new(TransportKind::Polling, cfg(), t0);
        s.close(CloseReason::ForcedClose);
        assert!(events(&mut s).is_empty());
        assert_eq!(s.handle_get(ms(t0, 5)), GetOutcome::Respond(b"1".to_vec()));
        assert_eq!(events(&mut s), vec![SessionEvent::Closed(CloseReason::ForcedClose)]);
    }

    #[test]
    fn lingering_close_gives_up_after_ping_timeout() {
        let t0 = Instant::now();
        let mut s = Session::new(TransportKind::Polling, cfg(), t0);
        s.send(Outgoing::text("41"));
        s.close(CloseReason::ForcedClose);
        s.handle_timeout(ms(t0, 200));
        assert_eq!(events(&mut s), vec![SessionEvent::Closed(CloseReason::ForcedClose)]);
    }

    #[test]
    fn server_close_over_websocket_sends_queued_packets_first() {
        let t0 = Instant::now();
        let mut s = Session::new(TransportKind::WebSocket, cfg(), t0);
        s.send(Outgoing::text("41"));
        s.close(CloseReason::ForcedClose);
        assert_eq!(transmits(&mut s), vec![Transmit::Ws(Outgoing::text("41"))]);
        assert_eq!(events(&mut s), vec![SessionEvent::Closed(CloseReason::ForcedClose)]);
    }

    #[test]
    fn sends_in_one_batch_answer_a_parked_poll_together() {
        let t0 = Instant::now();
        let mut s = Session::new(TransportKind::Polling, cfg(), t0);
        assert_eq!(s.handle_get(t0), GetOutcome::Park);
        s.send(Outgoing::text("40"));
        s.send(Outgoing::text("42[\"auth\",{}]"));
        assert_eq!(transmits(&mut s), vec![Transmit::PollResponse(b"40\x1e42[\"auth\",{}]".to_vec())]);
    }

    #[test]
    fn errors_have_reference_bodies() {
        assert_eq!(EioError::UnknownSid.json(), r#"{"code":1,"message":"Session ID unknown"}"#);
        assert_eq!(EioError::UnknownTransport.json(), r#"{"code":0,"message":"Transport unknown"}"#);
        assert_eq!(
            EioError::UnsupportedProtocolVersion.json(),
            r#"{"code":5,"message":"Unsupported protocol version"}"#
        );
    }
}
