//! A random sequence of operations on one Engine.IO `Session`, in virtual time, following the
//! session's calling contract (inputs, then drain `poll_event`, then drain `poll_transmit`).
//!
//! Input format: one byte for the initial transport (bit 0: WebSocket), then operations, each an
//! opcode byte (`% 16`, see `step`) followed by its argument: a length-prefixed body or one
//! byte.
//!
//! Invariants checked after every operation:
//! - `Closed` is reported once, only when `is_closed()`, and after it has been drained no event
//!   and no transmit ever comes again;
//! - a poll response only answers a GET that was parked, at most once, and
//!   `has_parked_get()` agrees; probe frames and `CloseProbe` only while a probe is open;
//!   WebSocket frames only once the transport is WebSocket, which never goes back to polling;
//! - every poll body the session writes is a valid Engine.IO payload, no larger than twice the
//!   queue bound (base64 of one-byte binaries is the worst case);
//! - `poll_timeout()` is `Some` while open, and once closed only while a polling session lingers
//!   for its last poll (a server-initiated close); after `handle_timeout(now)` it lies after
//!   `now`; and, since `ping_interval >= ping_timeout` here, only opening a probe (which adds
//!   the upgrade deadline) can move it earlier.
#![no_main]

use std::time::{Duration, Instant};

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sockeye::engineio::packet::decode_payload;
use sockeye::engineio::session::{
    CloseReason, GetOutcome, Outgoing, Session, SessionConfig, SessionEvent, Transmit,
    TransportKind, WsInput,
};
use sockeye_fuzz::Input;

const MAX_QUEUE_BYTES: usize = 256;

fn config() -> SessionConfig {
    SessionConfig {
        ping_interval: Duration::from_millis(300),
        ping_timeout: Duration::from_millis(200),
        upgrade_timeout: Duration::from_millis(1000),
        max_queue_bytes: MAX_QUEUE_BYTES,
    }
}

/// What the harness knows independently of the session.
struct Model {
    now: Instant,
    parked: bool,
    probing: bool,
    closed_seen: bool,
    /// `Closed` was seen and everything after it drained: the session must stay silent.
    finished: bool,
    timeout: Option<Instant>,
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let t0 = Instant::now();
    let transport = if input.byte() & 1 == 1 {
        TransportKind::WebSocket
    } else {
        TransportKind::Polling
    };
    let mut s = Session::new(transport, config(), t0);
    let mut m = Model {
        now: t0,
        parked: false,
        probing: false,
        closed_seen: false,
        finished: false,
        timeout: s.poll_timeout(),
    };
    assert_eq!(m.timeout, Some(t0 + config().ping_interval));
    while !input.is_empty() {
        let was_ws = s.transport() == TransportKind::WebSocket;
        let was_closed = s.is_closed();
        let opened_probe = step(&mut s, &mut m, &mut input);
        drain(&mut s, &mut m);
        if was_ws {
            assert_eq!(
                s.transport(),
                TransportKind::WebSocket,
                "went back to polling"
            );
        }

        let timeout = s.poll_timeout();
        if !s.is_closed() {
            assert!(timeout.is_some(), "an open session always has a deadline");
        } else if timeout.is_some() {
            // Only a server-closed polling session lingers for its last poll.
            assert_eq!(s.transport(), TransportKind::Polling, "lingering over websocket");
        }
        if let (Some(old), Some(new)) = (m.timeout, timeout)
            && !opened_probe
            && was_closed == s.is_closed()
        {
            assert!(new >= old, "timeout moved earlier by {:?}", old - new);
        }
        m.timeout = timeout;
    }
});

/// Applies one operation. Returns whether it opened a probe.
fn step(s: &mut Session, m: &mut Model, input: &mut Input<'_>) -> bool {
    let now = m.now;
    let ws = s.transport() == TransportKind::WebSocket;
    match input.byte() % 16 {
        0 => match s.handle_get(now) {
            GetOutcome::Respond(body) => check_poll_body(&body),
            GetOutcome::Park => {
                assert!(!m.parked && !ws && !s.is_closed());
                m.parked = true;
            }
            GetOutcome::Reject(e) => assert!(matches!(e.status(), 400 | 403)),
        },
        1 => {
            let _ = s.handle_post(input.short_bytes(), now);
        }
        2 => {
            let _ = s.handle_post(b"3", now);
        }
        // Messages on the session's own WebSocket exist only once it is the transport.
        3 if ws => {
            let text = String::from_utf8_lossy(input.short_bytes());
            s.handle_ws(WsInput::Text(&text), now);
        }
        4 if ws => {
            let bytes = Bytes::copy_from_slice(input.short_bytes());
            s.handle_ws(WsInput::Binary(&bytes), now);
        }
        5 if ws => s.handle_ws(WsInput::Text("3"), now),
        // The runtime attaches a probe only when the session accepts one.
        6 if s.can_probe() => {
            s.handle_probe_open(now);
            m.probing = true;
            return true;
        }
        7 => {
            let body = input.short_bytes();
            if body.first() == Some(&0xff) {
                let bytes = Bytes::copy_from_slice(&body[1..]);
                s.handle_probe(WsInput::Binary(&bytes), now);
            } else {
                let text = String::from_utf8_lossy(body);
                s.handle_probe(WsInput::Text(&text), now);
            }
        }
        8 => s.handle_probe(WsInput::Text("2probe"), now),
        9 => s.handle_probe(WsInput::Text("5"), now),
        10 => {
            s.handle_probe_closed();
            m.probing = false;
        }
        11 => {
            m.now += Duration::from_millis(u64::from(input.byte()) * 5);
            s.handle_timeout(m.now);
            if let Some(t) = s.poll_timeout() {
                assert!(t > m.now, "a timer is still due after handle_timeout");
            }
        }
        12 => {
            // What the layer above sends is JSON text, which never holds a raw record separator
            // (JSON escapes control characters); one would split the polling record in two.
            let text = String::from_utf8_lossy(input.short_bytes()).replace('\x1e', "");
            s.send(Outgoing::text(&format!("4{text}")));
        }
        13 => s.send(Outgoing::binary(input.short_bytes())),
        14 => {
            s.handle_get_aborted();
            m.parked = false;
        }
        15 => match input.byte() % 3 {
            0 => s.handle_ws_closed(false),
            1 => s.handle_ws_closed(true),
            _ => s.close(CloseReason::ForcedClose),
        },
        _ => {}
    }
    false
}

fn drain(s: &mut Session, m: &mut Model) {
    while let Some(event) = s.poll_event() {
        assert!(!m.closed_seen, "{event:?} after Closed");
        match event {
            SessionEvent::Closed(_) => {
                assert!(s.is_closed());
                m.closed_seen = true;
            }
            SessionEvent::Upgraded => {
                assert!(m.probing, "upgraded without a probe");
                assert_eq!(s.transport(), TransportKind::WebSocket);
                m.probing = false;
            }
            SessionEvent::Message(_) => {}
        }
    }
    while let Some(transmit) = s.poll_transmit() {
        assert!(!m.finished, "{transmit:?} after the close was drained");
        match transmit {
            Transmit::PollResponse(body) => {
                assert!(m.parked, "poll response without a parked GET");
                m.parked = false;
                check_poll_body(&body);
            }
            Transmit::Ws(_) => assert_eq!(s.transport(), TransportKind::WebSocket),
            Transmit::Probe(_) => assert!(m.probing, "probe frame without a probe"),
            Transmit::CloseProbe => {
                assert!(m.probing, "probe closed twice");
                m.probing = false;
            }
        }
    }
    assert_eq!(s.has_parked_get(), m.parked);
    assert_eq!(s.is_upgrading(), m.probing);
    if m.closed_seen {
        m.finished = true;
    }
}

fn check_poll_body(body: &[u8]) {
    assert!(
        body.len() <= 2 * MAX_QUEUE_BYTES,
        "poll body of {} bytes",
        body.len()
    );
    for p in decode_payload(body) {
        if let Err(e) = p {
            panic!("session wrote an invalid payload {body:?}: {e}");
        }
    }
}
