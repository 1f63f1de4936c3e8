//! Simulated Socket.IO clients for the stateful targets (`sio_session`, `chat_handlers`): they
//! drive a `broker::sim::Sim` byte for byte and check everything the server sends them.
//!
//! Output checks, made on every byte the server writes to a client:
//! - HTTP responses parse (the sim itself panics on a malformed head or body length), a
//!   polling body is a valid Engine.IO payload (`engineio::packet::decode_payload`), every
//!   WebSocket text frame a valid Engine.IO packet;
//! - every Engine.IO message decodes as a Socket.IO packet, attachments included, with a
//!   `Decoder` that has the server's own limits;
//! - an ACK only answers an id this client asked for in that namespace, at most once.
//!
//! What each client received is kept in `Client::packets` for the target's own checks.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use sockeye::broker::CoreId;
use sockeye::broker::sim::{self, ConnId, Sim, WsMsg};
use sockeye::engineio::packet::{self as eio, Data};
use sockeye::socketio::packet::{Decoder, DecoderLimits, Packet, PacketKind};

/// What a connection of a client was opened for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnKind {
    /// A request without `sid`: polling or WebSocket handshake.
    Handshake,
    /// A GET poll (its answer is a payload).
    Get,
    /// A POST (its answer is `ok` or an error).
    Post,
    /// A WebSocket probe for an upgrade.
    Probe,
    /// Anything the fuzzer wrote itself.
    Raw,
}

pub struct Client {
    /// The Engine.IO session id, once the handshake was answered.
    pub sid: Option<String>,
    /// The core that took the handshake (it owns the session).
    pub core: CoreId,
    /// Every connection of this client, oldest first, with its kind.
    pub conns: Vec<(ConnId, ConnKind)>,
    /// The connection carrying the session's WebSocket (handshake or upgraded probe).
    pub ws: Option<ConnId>,
    decoder: Decoder,
    /// ACK ids asked (namespace, id) and not answered yet, with how often each was asked (a
    /// hand-written packet may reuse an id).
    pub asked: HashMap<(String, u64), u32>,
    /// Every ACK id ever asked, to tell a second answer from an unasked one.
    pub ever_asked: HashSet<(String, u64)>,
    pub next_ack: u64,
    /// ACK ids the server asked this client for (namespace, id).
    pub server_asks: Vec<(String, u64)>,
    /// Complete Socket.IO packets received, in order; the target drains it.
    pub packets: Vec<Packet>,
    /// The session was closed (close packet, close frame or a refused request).
    pub closed: bool,
}

/// The server's decoder limits as configured in the targets (16 attachments, 16 MiB).
pub fn decoder_limits() -> DecoderLimits {
    DecoderLimits { max_attachments: 16, max_ns_len: 256, max_attachment_bytes: 16 << 20 }
}

impl Client {
    pub fn new(core: CoreId) -> Client {
        Client {
            sid: None,
            core,
            conns: Vec::new(),
            ws: None,
            decoder: Decoder::new(decoder_limits()),
            asked: HashMap::new(),
            ever_asked: HashSet::new(),
            next_ack: 0,
            server_asks: Vec::new(),
            packets: Vec::new(),
            closed: false,
        }
    }

    /// A fresh ACK id for namespace `ns`, remembered as asked.
    pub fn ask(&mut self, ns: &str) -> u64 {
        let id = self.next_ack;
        self.next_ack += 1;
        self.ask_id(ns, id);
        id
    }

    /// Remembers that ACK `id` of namespace `ns` was asked.
    pub fn ask_id(&mut self, ns: &str, id: u64) {
        *self.asked.entry((ns.to_owned(), id)).or_default() += 1;
        self.ever_asked.insert((ns.to_owned(), id));
    }

    /// Remembers the ACK id of `text` (a Socket.IO packet without the Engine.IO `4`) if it is
    /// an event that asks for one, as the server will read it.
    pub fn note_raw(&mut self, text: &str) {
        let mut d = Decoder::new(decoder_limits());
        let mut res = d.feed_text(text);
        // A binary event is complete only with its attachments: give it empty ones to see it.
        for _ in 0..decoder_limits().max_attachments {
            if !matches!(res, Ok(None)) {
                break;
            }
            res = d.feed_binary(Bytes::new());
        }
        if let Ok(Some(p)) = res
            && matches!(p.kind, PacketKind::Event | PacketKind::BinaryEvent)
            && let Some(id) = p.id
        {
            self.ask_id(&p.ns, id);
        }
    }

    /// Opens a connection to `core` and writes `bytes` on it.
    pub fn request(&mut self, sim: &mut Sim, core: CoreId, kind: ConnKind, bytes: &[u8]) -> ConnId {
        let conn = sim.connect(core);
        self.conns.push((conn, kind));
        sim.client_write(conn, bytes);
        conn
    }

    /// Reads everything the server sent on every connection of this client and checks it.
    pub fn collect(&mut self, sim: &mut Sim) {
        for i in 0..self.conns.len() {
            let (conn, kind) = self.conns[i];
            while let Some(r) = sim.take_response(conn) {
                self.on_response(kind, r.status, &r.body);
                if r.status == 101 && kind == ConnKind::Handshake {
                    self.ws = Some(conn);
                }
            }
            let frames = sim.ws_take(conn);
            // Probe frames (3probe, a noop answer) are Engine.IO only; the session's data
            // reaches the probe only once it is the transport.
            for f in frames {
                self.on_frame(f);
            }
        }
    }

    fn on_response(&mut self, kind: ConnKind, status: u16, body: &[u8]) {
        match (kind, status) {
            (_, 101) => {}
            (ConnKind::Handshake | ConnKind::Get, 200) => {
                for p in eio::decode_payload(body) {
                    match p {
                        Ok(p) => self.on_eio(p),
                        Err(e) => panic!("invalid polling payload {body:?}: {e}"),
                    }
                }
            }
            (ConnKind::Post, 200) => assert_eq!(body, b"ok", "POST answered 200 but not ok"),
            (ConnKind::Raw, _) => {}
            (_, 400 | 403 | 404 | 413 | 429 | 503) => {
                // A refused request for the session; some of them close it.
            }
            (kind, status) => panic!("unexpected {status} for a {kind:?} request: {body:?}"),
        }
    }

    fn on_frame(&mut self, f: WsMsg) {
        match f {
            WsMsg::Text(t) => match eio::Packet::decode_text(&t) {
                Ok(p) => self.on_eio(p),
                Err(e) => panic!("invalid Engine.IO text frame {t:?}: {e}"),
            },
            WsMsg::Binary(b) => self.on_eio(eio::Packet::Message(Data::Binary(Bytes::from(b)))),
            WsMsg::Close(_) => self.closed = true,
            WsMsg::Ping | WsMsg::Pong => {}
        }
    }

    fn on_eio(&mut self, p: eio::Packet) {
        let res = match p {
            eio::Packet::Message(Data::Text(t)) => self.decoder.feed_text(&t),
            eio::Packet::Message(Data::Binary(b)) => {
                assert!(self.decoder.is_awaiting_attachments(), "attachment the server did not announce");
                self.decoder.feed_binary(b)
            }
            eio::Packet::Close => {
                self.closed = true;
                return;
            }
            eio::Packet::Open(_) => {
                return;
            }
            _ => return,
        };
        let packet = match res {
            Ok(Some(p)) => p,
            Ok(None) => return,
            Err(e) => panic!("the server sent an invalid Socket.IO packet: {e}"),
        };
        match packet.kind {
            PacketKind::Ack | PacketKind::BinaryAck => {
                let id = packet.id.expect("an ACK carries an id");
                let key = (packet.ns.clone(), id);
                assert!(self.ever_asked.contains(&key), "ACK {key:?} answers nothing this client asked");
                match self.asked.get_mut(&key) {
                    Some(n) if *n > 1 => *n -= 1,
                    Some(_) => {
                        self.asked.remove(&key);
                    }
                    None => panic!("ACK {key:?} answered more often than asked"),
                }
            }
            PacketKind::Event | PacketKind::BinaryEvent => {
                if let Some(id) = packet.id {
                    self.server_asks.push((packet.ns.clone(), id));
                }
            }
            _ => {}
        }
        self.packets.push(packet);
    }

    /// Handles the handshake answer, if it came: the sid and, over WebSocket, the session's
    /// connection.
    pub fn learn_sid(&mut self, sim: &mut Sim, conn: ConnId) {
        if let Some(r) = sim.take_response(conn) {
            if r.status == 200 || r.status == 101 {
                if r.status == 101 {
                    self.ws = Some(conn);
                }
                let open = if r.status == 200 {
                    eio::decode_payload(&r.body).next().and_then(Result::ok)
                } else {
                    sim.ws_take(conn).into_iter().find_map(|m| match m {
                        WsMsg::Text(t) => eio::Packet::decode_text(&t).ok(),
                        _ => None,
                    })
                };
                let Some(eio::Packet::Open(json)) = open else {
                    panic!("handshake answered without an open packet");
                };
                let v: serde_json::Value = serde_json::from_str(&json).expect("open packet JSON");
                self.sid = Some(v["sid"].as_str().expect("sid in the open packet").to_owned());
            } else {
                self.closed = true;
            }
        }
        self.collect(sim);
    }

    /// Sends Engine.IO text messages: over the WebSocket when there is one, else in one POST.
    pub fn send_texts(&mut self, sim: &mut Sim, texts: &[String], post_core: CoreId) {
        let Some(sid) = self.sid.clone() else {
            return;
        };
        if let Some(ws) = self.ws {
            for t in texts {
                sim.client_write(ws, &sim::client_frame(sim::OP_TEXT, format!("4{t}").as_bytes()));
            }
        } else {
            let mut body = Vec::new();
            for t in texts {
                eio::append_record(&mut body, format!("4{t}").as_bytes());
            }
            self.request(sim, post_core, ConnKind::Post, &sim::post_request(&sid, &body));
        }
    }

    /// Sends a binary Engine.IO message (an attachment).
    pub fn send_binary(&mut self, sim: &mut Sim, data: &[u8], post_core: CoreId) {
        let Some(sid) = self.sid.clone() else {
            return;
        };
        if let Some(ws) = self.ws {
            sim.client_write(ws, &sim::client_frame(sim::OP_BINARY, data));
        } else {
            let mut body = Vec::new();
            eio::append_binary_record(&mut body, data);
            self.request(sim, post_core, ConnKind::Post, &sim::post_request(&sid, &body));
        }
    }
}
