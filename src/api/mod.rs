//! The application API, in the spirit of the JavaScript server.
//!
//! ```no_run
//! use sockeye::api::{ServerBuilder, Socket, Event};
//! let mut server = ServerBuilder::new(sockeye::config::Config::default());
//! server.namespace("/", |ns| {
//!     ns.on_connect(|socket: &mut Socket<'_>| {
//!         socket.emit("hello", &("world",));
//!     });
//!     ns.on("message", |socket: &mut Socket<'_>, ev: Event| {
//!         // Reply to everyone else in the namespace with the same arguments, unparsed.
//!         socket.broadcast().emit_raw("message", ev.args_raw(), ev.attachments.clone());
//!         if let Some(ack) = ev.ack() {
//!             socket.ack(ack, &("received",));
//!         }
//!     });
//! });
//! let running = server.start().unwrap();
//! running.join();
//! ```
//!
//! Handlers run on the event-loop thread (core) that owns the socket, with `&mut` access to
//! that core's broker state through [`Socket`]: a handler must not block. Work that blocks
//! (storage, remote calls) goes to another thread, which comes back with
//! [`ServerHandle::run_on`].
//!
//! Arguments arrive as raw JSON text ([`Args`], split into arguments once when the packet is
//! decoded): an application parses only what it needs (`Event::arg`), and relaying them costs a
//! copy, not a parse. Binary attachments stay
//! as `{"_placeholder":true,"num":N}` objects in the JSON with the bytes in
//! `Event::attachments`; to send binary, put [`Binary`] values in the arguments.

pub mod http;
pub(crate) mod server;
mod socket;

pub use server::{HandleBroadcast, NamespaceBuilder, RunningServer, ServerBuilder, ServerHandle};
pub use socket::{Broadcast, Socket};

use std::cell::RefCell;
use std::fmt;
use std::net::SocketAddr;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// The parts of the Engine.IO handshake request, shared by every socket of a session.
#[derive(Debug)]
pub(crate) struct HandshakeBase {
    pub(crate) query: Vec<(String, String)>,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) remote_addr: Option<SocketAddr>,
    pub(crate) url: String,
    pub(crate) issued_ms: u64,
}

/// What a middleware sees of the connection: the Engine.IO handshake request plus the auth
/// object of the Socket.IO CONNECT packet. The request part is shared by every namespace the
/// session connects, so a socket costs no copy of it.
#[derive(Debug, Clone)]
pub struct Handshake {
    pub(crate) base: std::sync::Arc<HandshakeBase>,
    /// The auth object of the CONNECT packet (`{}` when none was sent).
    pub auth: Box<RawValue>,
}

impl Handshake {
    /// A query parameter of the handshake request, percent-decoded.
    pub fn query(&self, name: &str) -> Option<&str> {
        self.base.query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// Every query parameter, in order.
    pub fn query_pairs(&self) -> &[(String, String)] {
        &self.base.query
    }

    /// A request header (name in lower case).
    pub fn header(&self, name_lowercase: &str) -> Option<&str> {
        self.base.headers.iter().find(|(k, _)| k == name_lowercase).map(|(_, v)| v.as_str())
    }

    /// Every request header, names lower-cased.
    pub fn headers(&self) -> &[(String, String)] {
        &self.base.headers
    }

    pub fn remote_addr(&self) -> Option<SocketAddr> {
        self.base.remote_addr
    }

    /// The request path with its query.
    pub fn url(&self) -> &str {
        &self.base.url
    }

    /// Milliseconds since the Unix epoch when the Engine.IO session was opened.
    pub fn issued_ms(&self) -> u64 {
        self.base.issued_ms
    }

    /// The auth object parsed into `T`.
    pub fn auth<T: for<'de> Deserialize<'de>>(&self) -> Option<T> {
        serde_json::from_str(self.auth.get()).ok()
    }
}

/// The identity of a client acknowledgement request: answer it with `Socket::ack`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckId(pub u64);

/// Arguments as received: the JSON text of each argument, kept without re-parsing. Built
/// once from the decoded packet; reading an argument slices it, and only `arg` parses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Args {
    /// The arguments joined by commas: the inside of the JSON array (`1,{"a":2}`).
    text: String,
    /// Byte range of each argument in `text`.
    spans: Vec<(u32, u32)>,
}

impl Args {
    pub(crate) fn from_values(values: &[&RawValue]) -> Args {
        let mut text = String::with_capacity(values.iter().map(|v| v.get().len() + 1).sum());
        let mut spans = Vec::with_capacity(values.len());
        for (i, v) in values.iter().enumerate() {
            if i > 0 {
                text.push(',');
            }
            let start = text.len() as u32;
            text.push_str(v.get());
            spans.push((start, text.len() as u32));
        }
        Args { text, spans }
    }

    /// All arguments as JSON text without the surrounding brackets; empty when none.
    pub fn raw(&self) -> &str {
        &self.text
    }

    /// Argument `i` as JSON text.
    pub fn arg_raw(&self, i: usize) -> Option<&str> {
        self.spans.get(i).map(|&(a, b)| &self.text[a as usize..b as usize])
    }

    /// Argument `i` parsed into `T`; `None` when absent or of another shape.
    pub fn arg<T: for<'de> Deserialize<'de>>(&self, i: usize) -> Option<T> {
        serde_json::from_str(self.arg_raw(i)?).ok()
    }

    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }
}

/// An event received from a client.
#[derive(Debug)]
pub struct Event {
    pub name: String,
    pub args: Args,
    /// Binary attachments referenced by placeholders in the arguments.
    pub attachments: Vec<Bytes>,
    ack: Option<AckId>,
}

impl Event {
    pub(crate) fn new(name: String, args: Args, attachments: Vec<Bytes>, ack: Option<u64>) -> Self {
        Event { name, args, attachments, ack: ack.map(AckId) }
    }

    /// The arguments as JSON text without the surrounding brackets; empty when none.
    pub fn args_raw(&self) -> &str {
        self.args.raw()
    }

    /// Argument `i` as JSON text.
    pub fn arg_raw(&self, i: usize) -> Option<&str> {
        self.args.arg_raw(i)
    }

    /// Argument `i` parsed into `T`; `None` when absent or of another shape.
    pub fn arg<T: for<'de> Deserialize<'de>>(&self, i: usize) -> Option<T> {
        self.args.arg(i)
    }

    /// The client asked for an acknowledgement.
    pub fn ack(&self) -> Option<AckId> {
        self.ack
    }
}

/// The arguments of an acknowledgement from the client.
#[derive(Debug)]
pub struct AckResponse {
    pub args: Args,
    pub attachments: Vec<Bytes>,
}

/// Why a server-to-client ack did not come back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckError {
    Timeout,
    Disconnected,
}

/// Why a socket left its namespace; the strings are the JavaScript server's reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DisconnectReason {
    ClientNamespaceDisconnect,
    ServerNamespaceDisconnect,
    PingTimeout,
    TransportClose,
    TransportError,
    ParseError,
    ForcedClose,
    ServerShuttingDown,
    SlowConsumer,
}

impl DisconnectReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DisconnectReason::ClientNamespaceDisconnect => "client namespace disconnect",
            DisconnectReason::ServerNamespaceDisconnect => "server namespace disconnect",
            DisconnectReason::PingTimeout => "ping timeout",
            DisconnectReason::TransportClose => "transport close",
            DisconnectReason::TransportError => "transport error",
            DisconnectReason::ParseError => "parse error",
            DisconnectReason::ForcedClose => "forced close",
            DisconnectReason::ServerShuttingDown => "server shutting down",
            DisconnectReason::SlowConsumer => "slow consumer",
        }
    }
}

impl From<crate::engineio::session::CloseReason> for DisconnectReason {
    fn from(r: crate::engineio::session::CloseReason) -> Self {
        use crate::engineio::session::CloseReason as C;
        match r {
            C::TransportClose => DisconnectReason::TransportClose,
            C::TransportError => DisconnectReason::TransportError,
            C::PingTimeout => DisconnectReason::PingTimeout,
            C::ParseError => DisconnectReason::ParseError,
            C::ForcedClose => DisconnectReason::ForcedClose,
            C::ServerShutdown => DisconnectReason::ServerShuttingDown,
            C::SlowConsumer => DisconnectReason::SlowConsumer,
        }
    }
}

impl fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A middleware's refusal, sent to the client as CONNECT_ERROR.
#[derive(Debug, Clone)]
pub struct ConnectError {
    pub message: String,
    /// Sent as the `data` field when present.
    pub data: Option<serde_json::Value>,
}

impl ConnectError {
    pub fn new(message: impl Into<String>) -> Self {
        ConnectError { message: message.into(), data: None }
    }

    pub fn with_data(mut self, data: serde_json::Value) -> Self {
        self.data = Some(data);
        self
    }
}

thread_local! {
    /// Attachments collected while serialising one emit's arguments (see `Binary`).
    static ATTACHMENTS: RefCell<Option<Vec<Bytes>>> = const { RefCell::new(None) };
}

/// Binary data inside emitted arguments. It serialises as a Socket.IO placeholder and its bytes
/// travel as an attachment, so `socket.emit("file", (Binary(bytes), "name.png"))` sends a
/// BINARY_EVENT. Outside an emit it serialises as an array of numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binary(pub Bytes);

impl Serialize for Binary {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let num = ATTACHMENTS.with(|a| {
            a.borrow_mut().as_mut().map(|v| {
                v.push(self.0.clone());
                v.len() - 1
            })
        });
        match num {
            Some(num) => {
                use serde::ser::SerializeMap;
                let mut m = s.serialize_map(Some(2))?;
                m.serialize_entry("_placeholder", &true)?;
                m.serialize_entry("num", &num)?;
                m.end()
            }
            None => s.collect_seq(self.0.iter()),
        }
    }
}

/// Serialise emit arguments: anything that serialises to a JSON array gives one argument per
/// element (a tuple, a `Vec`, `json!([..])`); `()` gives none; any other value is one argument.
/// Returns the arguments' JSON without brackets and the binary attachments.
pub fn encode_args<A: Serialize + ?Sized>(args: &A) -> (String, Vec<Bytes>) {
    ATTACHMENTS.with(|a| *a.borrow_mut() = Some(Vec::new()));
    let json = serde_json::to_string(args);
    let attachments = ATTACHMENTS.with(|a| a.borrow_mut().take()).unwrap_or_default();
    let json = match json {
        Ok(j) => j,
        // Serialising plain data to a String fails only for maps with non-string keys.
        Err(_) => return (String::new(), Vec::new()),
    };
    let inner = if json == "null" {
        String::new()
    } else if json.starts_with('[') && json.ends_with(']') {
        json[1..json.len() - 1].to_owned()
    } else {
        json
    };
    (inner, attachments)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tuple_args_are_spread() {
        assert_eq!(encode_args(&("a", 1)).0, r#""a",1"#);
        assert_eq!(encode_args(&()).0, "");
        assert_eq!(encode_args(&json!({"x": 1})).0, r#"{"x":1}"#);
        assert_eq!(encode_args(&([1, 2],)).0, "[1,2]");
    }

    #[test]
    fn binary_becomes_placeholder_and_attachment() {
        let (inner, att) = encode_args(&(Binary(Bytes::from_static(b"ab")), json!({"k": 1})));
        assert_eq!(inner, r#"{"_placeholder":true,"num":0},{"k":1}"#);
        assert_eq!(att, vec![Bytes::from_static(b"ab")]);
        // Outside an emit there is no collector.
        assert_eq!(serde_json::to_string(&Binary(Bytes::from_static(&[1]))).unwrap(), "[1]");
    }

    #[test]
    fn event_args_parse_individually() {
        let values: Vec<&RawValue> = serde_json::from_str(r#"[1,{"a":[2,3]},"x"]"#).unwrap();
        let ev = Event::new("m".into(), Args::from_values(&values), vec![], Some(4));
        assert_eq!(ev.args.len(), 3);
        assert_eq!(ev.args_raw(), r#"1,{"a":[2,3]},"x""#);
        assert_eq!(ev.arg_raw(1), Some(r#"{"a":[2,3]}"#));
        assert_eq!(ev.arg_raw(3), None);
        assert_eq!(ev.arg::<String>(2).as_deref(), Some("x"));
        assert_eq!(ev.arg::<u32>(0), Some(1));
        assert_eq!(ev.ack(), Some(AckId(4)));
    }
}
