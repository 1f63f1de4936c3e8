//! One TCP connection: its socket, input buffer, bounded output buffer and what it carries.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::Instant;

use mio::net::TcpStream;

use crate::broker::SessionKey;
use crate::http::websocket;

/// What a connection is waiting for, as far as its read timeouts go (see `Core::refresh`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wait {
    /// Nothing: a WebSocket or a parked poll (the Engine.IO heartbeat covers them).
    Exempt,
    /// The first request since accept: `header_read_timeout` from accept.
    First,
    /// The next request on a kept-alive connection that has read `n` requests:
    /// `keep_alive_idle_timeout` from the last one.
    Idle(u64),
    /// The rest of a request head whose first bytes came after `n` requests:
    /// `header_read_timeout` from then.
    Head(u64),
    /// The rest of the body of request `n + 1`: `header_read_timeout` from the last progress.
    Body(u64),
    /// Closing, its last output not yet taken: `header_read_timeout` to take it.
    Closing,
}

/// What a connection is carrying now.
pub(crate) enum ConnState {
    /// Reading HTTP requests (polling requests, handshakes, other routes).
    Http,
    /// A GET poll waits for its answer; requests pipelined behind it wait too.
    Parked { session: Option<SessionKey>, keep_alive: bool },
    /// A WebSocket of an Engine.IO session (its transport, or a probe).
    Ws { session: SessionKey, decoder: Box<websocket::Decoder> },
}

pub(crate) struct Conn {
    pub(crate) stream: TcpStream,
    pub(crate) generation: u32,
    pub(crate) remote: Option<SocketAddr>,
    pub(crate) rbuf: Vec<u8>,
    out: Vec<u8>,
    out_pos: usize,
    pub(crate) state: ConnState,
    /// Close once the output is flushed.
    pub(crate) closing: bool,
    /// In the core's list of connections to flush this turn.
    pub(crate) dirty: bool,
    /// Requests read on this connection so far.
    pub(crate) requests: u64,
    pub(crate) wait: Wait,
    /// When the connection is closed unless something happens first (see [`Wait`]).
    pub(crate) deadline: Option<Instant>,
    /// The entry in the core's timer heap for this connection: re-armed only when the
    /// deadline moves earlier; a later deadline is picked up when the armed one fires.
    pub(crate) armed: Option<Instant>,
}

/// Result of reading what the socket has.
pub(crate) enum ReadOutcome {
    /// Read until `WouldBlock`; the connection is still open.
    Open,
    /// The peer closed its side.
    Eof,
    Error,
    /// More than `limit` bytes wait unprocessed.
    Overflow,
}

impl Conn {
    pub(crate) fn new(
        stream: TcpStream,
        generation: u32,
        remote: Option<SocketAddr>,
        rbuf: Vec<u8>,
        deadline: Instant,
    ) -> Conn {
        Conn {
            stream,
            generation,
            remote,
            rbuf,
            out: Vec::new(),
            out_pos: 0,
            state: ConnState::Http,
            closing: false,
            dirty: false,
            requests: 0,
            wait: Wait::First,
            deadline: Some(deadline),
            armed: None,
        }
    }

    /// Read everything available (edge-triggered readiness requires draining the socket: until
    /// `WouldBlock`, or a read shorter than the buffer), keeping at most `limit` unprocessed
    /// bytes.
    pub(crate) fn read_available(&mut self, limit: usize) -> ReadOutcome {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return ReadOutcome::Eof,
                Ok(n) => {
                    self.rbuf.extend_from_slice(&chunk[..n]);
                    if self.rbuf.len() > limit {
                        return ReadOutcome::Overflow;
                    }
                    // A short read emptied the receive queue: data arriving later raises a new
                    // edge, so the read that would only say `WouldBlock` is saved (one syscall
                    // of about three per request/response round trip).
                    if n < chunk.len() {
                        return ReadOutcome::Open;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return ReadOutcome::Open,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return ReadOutcome::Error,
            }
        }
    }

    pub(crate) fn queue(&mut self, bytes: &[u8]) {
        if self.out_pos == self.out.len() {
            self.out.clear();
            self.out_pos = 0;
        }
        self.out.extend_from_slice(bytes);
    }

    /// Take the unsent output (a connection moving to another core carries it along).
    pub(crate) fn take_output(&mut self) -> Vec<u8> {
        let mut out = std::mem::take(&mut self.out);
        out.drain(..self.out_pos);
        self.out_pos = 0;
        out
    }

    /// Bytes waiting to be written.
    pub(crate) fn pending(&self) -> usize {
        self.out.len() - self.out_pos
    }

    /// Write as much as the socket takes. `Ok(true)` when everything was written.
    pub(crate) fn flush(&mut self) -> io::Result<bool> {
        while self.out_pos < self.out.len() {
            match self.stream.write(&self.out[self.out_pos..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.out_pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        if self.out_pos == self.out.len() {
            // An idle connection holds no output buffer: most connections are idle most of
            // the time, and one allocation per flush is small next to the write itself.
            self.out = Vec::new();
            self.out_pos = 0;
            Ok(true)
        } else {
            if self.out_pos > self.out.len() / 2 {
                self.out.drain(..self.out_pos);
                self.out_pos = 0;
            }
            Ok(false)
        }
    }

    /// Give back the input buffer once everything in it was consumed.
    pub(crate) fn release_input(&mut self) {
        if self.rbuf.is_empty() && self.rbuf.capacity() > 0 {
            self.rbuf = Vec::new();
        }
    }

    pub(crate) fn session(&self) -> Option<SessionKey> {
        match &self.state {
            ConnState::Http => None,
            ConnState::Parked { session, .. } => *session,
            ConnState::Ws { session, .. } => Some(*session),
        }
    }
}
