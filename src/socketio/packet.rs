//! Socket.IO v5 packet codec: text packets, binary attachments, and the fast encoders used by
//! emits and broadcasts.
//!
//! What it does: turns the payload of one Engine.IO `message` packet into a typed [`Packet`]
//! (validated the way the reference `socket.io-parser` 4.x validates it), reassembles binary
//! packets from the Engine.IO binary messages that follow them, and writes packets back as text.
//!
//! What it does not do: no IO, no clock, no Engine.IO framing. The text handled here is the
//! Socket.IO packet *without* the Engine.IO `4` (message) type byte: the wire form `42["foo"]`
//! is `2["foo"]` here, and `40/custom` is `0/custom`. Binary attachments arrive as separate
//! Engine.IO binary messages and are handed over as [`Bytes`]. JSON payloads are kept as raw
//! text ([`RawValue`]) and are never turned into a `serde_json::Value` tree.
//!
//! Wire format (protocol spec, "Packet encoding"):
//!
//! ```text
//! <type digit>[<N attachments>-][<namespace>,][<ack id>][<JSON data>]
//! ```
//!
//! Calling contract of [`Decoder`]: feed every Engine.IO message of one connection, in order,
//! text ones to [`Decoder::feed_text`] and binary ones to [`Decoder::feed_binary`]. A binary packet
//! (`BINARY_EVENT`, `BINARY_ACK`) with N > 0 attachments makes `feed_text` return `Ok(None)`; the
//! packet is returned by the call to `feed_binary` that delivers the N-th attachment. Any error is
//! the peer's fault (see [`PacketError::class`]); the caller should close the connection. After an
//! error the decoder has dropped any half-assembled packet and is empty again.

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;

use bytes::Bytes;
use serde::de::{self, DeserializeSeed, Deserializer as _, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

/// Event names the reference parser refuses in an EVENT packet (socket.io-parser 4.2.4,
/// `RESERVED_EVENTS`): they have a special meaning to the client, the server or the Node.js
/// EventEmitter, so a peer must not be able to emit them.
pub const RESERVED_EVENTS: [&str; 6] =
    ["connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener"];

/// Longest ack id we accept, in digits: `u64::MAX` has 20.
const MAX_ACK_ID_DIGITS: usize = 20;

/// The seven packet types of the Socket.IO v5 protocol (spec, "Exchange protocol").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PacketKind {
    /// 0: connection to a namespace, client to server (optional auth object) and server to
    /// client (`{"sid": ...}`).
    Connect,
    /// 1: disconnection from a namespace; carries no data.
    Disconnect,
    /// 2: an event: a non-empty array whose first element is the event name.
    Event,
    /// 3: the acknowledgement of an event with an ack id: an array of arguments.
    Ack,
    /// 4: a refused namespace connection, server to client: a string or an object.
    ConnectError,
    /// 5: an event whose arguments hold binary attachments (placeholders in the JSON).
    BinaryEvent,
    /// 6: an acknowledgement whose arguments hold binary attachments.
    BinaryAck,
}

impl PacketKind {
    /// The type digit on the wire.
    pub fn digit(self) -> u8 {
        match self {
            PacketKind::Connect => b'0',
            PacketKind::Disconnect => b'1',
            PacketKind::Event => b'2',
            PacketKind::Ack => b'3',
            PacketKind::ConnectError => b'4',
            PacketKind::BinaryEvent => b'5',
            PacketKind::BinaryAck => b'6',
        }
    }

    /// The kind for a type digit, if it is one of the seven.
    pub fn from_digit(digit: u8) -> Option<PacketKind> {
        Some(match digit {
            b'0' => PacketKind::Connect,
            b'1' => PacketKind::Disconnect,
            b'2' => PacketKind::Event,
            b'3' => PacketKind::Ack,
            b'4' => PacketKind::ConnectError,
            b'5' => PacketKind::BinaryEvent,
            b'6' => PacketKind::BinaryAck,
            _ => return None,
        })
    }

    /// Whether this kind carries an `N-` attachment count and N binary messages after it.
    pub fn is_binary(self) -> bool {
        matches!(self, PacketKind::BinaryEvent | PacketKind::BinaryAck)
    }
}

/// One decoded (or to-be-encoded) Socket.IO packet.
///
/// Invariants of a decoded packet: `ns` starts with `/`, holds no `,` and no control character;
/// `data` has passed the validation for `kind`; `attachments` is empty unless `kind` is binary,
/// in which case it holds exactly the announced number of attachments, and every placeholder in
/// `data` points at one of them.
#[derive(Debug, Clone)]
pub struct Packet {
    pub kind: PacketKind,
    /// The namespace; `/` (the main namespace) when the packet names none.
    pub ns: String,
    /// The ack id, if the sender wants an acknowledgement (EVENT) or answers one (ACK).
    pub id: Option<u64>,
    /// The JSON data exactly as received, or as it will be sent (compact JSON).
    pub data: Option<Box<RawValue>>,
    /// The binary attachments of a binary packet, in order; the placeholders
    /// `{"_placeholder":true,"num":N}` that refer to them stay in `data`.
    pub attachments: Vec<Bytes>,
}

impl PartialEq for Packet {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind
            && self.ns == other.ns
            && self.id == other.id
            && self.data.as_ref().map(|d| d.get()) == other.data.as_ref().map(|d| d.get())
            && self.attachments == other.attachments
    }
}

impl Eq for Packet {}

impl Packet {
    /// A packet of `kind` to `ns` with no id, data or attachments.
    pub fn new(kind: PacketKind, ns: impl Into<String>) -> Packet {
        Packet { kind, ns: ns.into(), id: None, data: None, attachments: Vec::new() }
    }

    /// For EVENT and BINARY_EVENT: the event name and the raw arguments after it.
    ///
    /// The reference parser also accepts a number as the event name (socket.io-parser 4.2.x,
    /// `typeof payload[0] === "number"`, kept for compatibility with old clients); the name is
    /// then the number's JSON text, e.g. `"1"` for `2[1,"a"]`. A string name is unescaped, so it
    /// is borrowed from `data` unless it holds JSON escapes.
    pub fn event(&self) -> Result<(Cow<'_, str>, Vec<&RawValue>), PacketError> {
        if !matches!(self.kind, PacketKind::Event | PacketKind::BinaryEvent) {
            return Err(PacketError::WrongKind);
        }
        let data = self.data.as_deref().ok_or(PacketError::InvalidPayload)?;
        let mut items: Vec<&RawValue> =
            serde_json::from_str(data.get()).map_err(|_| PacketError::InvalidPayload)?;
        if items.is_empty() {
            return Err(PacketError::InvalidPayload);
        }
        let head = items.remove(0).get();
        let name = match head.as_bytes()[0] {
            b'"' => match serde_json::from_str::<&str>(head) {
                Ok(name) => Cow::Borrowed(name),
                // The name holds escapes, so it cannot be borrowed.
                Err(_) => {
                    Cow::Owned(serde_json::from_str::<String>(head).map_err(|_| PacketError::InvalidJson)?)
                }
            },
            b'-' | b'0'..=b'9' => Cow::Borrowed(head),
            _ => return Err(PacketError::InvalidPayload),
        };
        Ok((name, items))
    }

    /// For ACK and BINARY_ACK: the raw arguments.
    pub fn ack_args(&self) -> Result<Vec<&RawValue>, PacketError> {
        if !matches!(self.kind, PacketKind::Ack | PacketKind::BinaryAck) {
            return Err(PacketError::WrongKind);
        }
        let data = self.data.as_deref().ok_or(PacketError::InvalidPayload)?;
        serde_json::from_str(data.get()).map_err(|_| PacketError::InvalidPayload)
    }
}

/// Bounds applied while decoding. Exceeding one is an error of class [`ErrorClass::Limit`]; the
/// caller closes the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecoderLimits {
    /// Most attachments one binary packet may announce. Checked on the `N-` prefix before any
    /// attachment is awaited, so a claimed count never drives an allocation.
    pub max_attachments: usize,
    /// Longest namespace, in bytes including the leading `/`.
    pub max_ns_len: usize,
    /// Most attachment bytes one binary packet may gather in total. Engine.IO bounds each
    /// message; this bounds their sum while a packet waits for its attachments.
    pub max_attachment_bytes: usize,
}

impl Default for DecoderLimits {
    fn default() -> Self {
        DecoderLimits { max_attachments: 16, max_ns_len: 256, max_attachment_bytes: 16 * 1024 * 1024 }
    }
}

/// Whose fault an error is (STYLE.md "Errors").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The bytes are not a Socket.IO packet at all.
    Malformed,
    /// A well-formed packet that breaks the protocol's rules.
    Protocol,
    /// A packet over one of our [`DecoderLimits`].
    Limit,
    /// A caller asked for something that does not fit the packet; never caused by peer data alone.
    Misuse,
}

/// Why a packet could not be decoded or read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PacketError {
    /// The text message is empty: there is no type digit.
    EmptyPacket,
    /// The first character is not one of the type digits `0`..`6`.
    UnknownType(char),
    /// A binary packet lacks its `<digits>-` attachment count.
    BadAttachmentCount,
    /// The attachment count is over [`DecoderLimits::max_attachments`].
    TooManyAttachments { max: usize },
    /// The namespace holds a control character.
    BadNamespace,
    /// The namespace is longer than [`DecoderLimits::max_ns_len`].
    NamespaceTooLong { max: usize },
    /// The ack id does not fit in a `u64`.
    BadAckId,
    /// The data is not one JSON value (invalid JSON, or trailing garbage after it).
    InvalidJson,
    /// The data is valid JSON of the wrong shape for the packet type.
    InvalidPayload,
    /// An EVENT names one of [`RESERVED_EVENTS`].
    ReservedEventName,
    /// A binary message arrived while no binary packet awaited attachments.
    UnexpectedBinary,
    /// A text message arrived while a binary packet still awaited attachments.
    UnexpectedText,
    /// A placeholder's `num` is not a non-negative integer.
    BadPlaceholder,
    /// A placeholder's `num` is not below the packet's attachment count.
    PlaceholderOutOfRange { num: u64, attachments: usize },
    /// A binary packet's data nests deeper than the JSON walker's limit (128 levels).
    NestingTooDeep,
    /// The attachments of one packet total more than [`DecoderLimits::max_attachment_bytes`].
    AttachmentsTooLarge { max: usize },
    /// `event()` on a packet that is not an event, or `ack_args()` on one that is not an ack.
    WrongKind,
}

impl PacketError {
    /// Whose fault the error is.
    pub fn class(&self) -> ErrorClass {
        use PacketError::*;
        match self {
            EmptyPacket | UnknownType(_) | BadAttachmentCount | BadNamespace | BadAckId | InvalidJson => {
                ErrorClass::Malformed
            }
            InvalidPayload
            | ReservedEventName
            | UnexpectedBinary
            | UnexpectedText
            | BadPlaceholder
            | PlaceholderOutOfRange { .. } => ErrorClass::Protocol,
            TooManyAttachments { .. }
            | NamespaceTooLong { .. }
            | NestingTooDeep
            | AttachmentsTooLarge { .. } => ErrorClass::Limit,
            WrongKind => ErrorClass::Misuse,
        }
    }
}

impl fmt::Display for PacketError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use PacketError::*;
        match self {
            EmptyPacket => f.write_str("empty socket.io packet"),
            UnknownType(c) => write!(f, "unknown socket.io packet type {c:?}"),
            BadAttachmentCount => f.write_str("binary packet without a valid attachment count"),
            TooManyAttachments { max } => {
                write!(f, "binary packet announces more than {max} attachments")
            }
            BadNamespace => f.write_str("namespace contains a control character"),
            NamespaceTooLong { max } => write!(f, "namespace longer than {max} bytes"),
            BadAckId => f.write_str("ack id does not fit in 64 bits"),
            InvalidJson => f.write_str("packet data is not valid JSON"),
            InvalidPayload => f.write_str("packet data has the wrong shape for its type"),
            ReservedEventName => f.write_str("event name is reserved"),
            UnexpectedBinary => f.write_str("binary message while no attachment was awaited"),
            UnexpectedText => f.write_str("text message while attachments were awaited"),
            BadPlaceholder => f.write_str("attachment placeholder without a valid index"),
            PlaceholderOutOfRange { num, attachments } => {
                write!(f, "attachment placeholder {num} out of range for {attachments} attachments")
            }
            NestingTooDeep => f.write_str("binary packet data nests too deep"),
            AttachmentsTooLarge { max } => write!(f, "attachments exceed {max} bytes in total"),
            WrongKind => f.write_str("packet is not of the kind asked for"),
        }
    }
}

impl std::error::Error for PacketError {}

/// A binary packet waiting for its attachments.
#[derive(Debug)]
struct Pending {
    packet: Packet,
    expected: usize,
    bytes: usize,
}

/// Stateful decoder for one connection: holds a binary packet while its attachments arrive.
/// See the module docs for the calling contract.
#[derive(Debug)]
pub struct Decoder {
    limits: DecoderLimits,
    pending: Option<Pending>,
}

impl Decoder {
    pub fn new(limits: DecoderLimits) -> Self {
        Decoder { limits, pending: None }
    }

    /// Whether a binary packet is waiting for attachments.
    pub fn is_awaiting_attachments(&self) -> bool {
        self.pending.is_some()
    }

    /// Feeds one Engine.IO text message (without the Engine.IO `4` type byte).
    ///
    /// `Ok(Some(p))`: a complete packet. `Ok(None)`: a binary packet now waiting for attachments.
    /// A text message while attachments are awaited is [`PacketError::UnexpectedText`].
    pub fn feed_text(&mut self, msg: &str) -> Result<Option<Packet>, PacketError> {
        if self.pending.take().is_some() {
            return Err(PacketError::UnexpectedText);
        }
        let (packet, expected) = decode_text(msg, &self.limits)?;
        if expected == 0 {
            // A binary packet announcing no attachment is complete at once. (The reference
            // decoder emits it but then keeps waiting; we do not copy that.)
            return Ok(Some(packet));
        }
        self.pending = Some(Pending { packet, expected, bytes: 0 });
        Ok(None)
    }

    /// Feeds one Engine.IO binary message: the next attachment of the pending binary packet.
    /// Returns the packet once its last attachment has arrived.
    pub fn feed_binary(&mut self, data: Bytes) -> Result<Option<Packet>, PacketError> {
        let Some(pending) = self.pending.as_mut() else {
            return Err(PacketError::UnexpectedBinary);
        };
        pending.bytes = pending.bytes.saturating_add(data.len());
        if pending.bytes > self.limits.max_attachment_bytes {
            self.pending = None;
            return Err(PacketError::AttachmentsTooLarge { max: self.limits.max_attachment_bytes });
        }
        pending.packet.attachments.push(data);
        debug_assert!(pending.packet.attachments.len() <= pending.expected);
        if pending.packet.attachments.len() < pending.expected {
            return Ok(None);
        }
        Ok(self.pending.take().map(|p| p.packet))
    }
}

/// Decodes the text of one packet. Returns the packet (attachments still empty) and the number
/// of attachments to wait for (0 for non-binary kinds).
fn decode_text(msg: &str, limits: &DecoderLimits) -> Result<(Packet, usize), PacketError> {
    let bytes = msg.as_bytes();
    let Some(&first) = bytes.first() else {
        return Err(PacketError::EmptyPacket);
    };
    let kind = PacketKind::from_digit(first)
        .ok_or_else(|| PacketError::UnknownType(msg.chars().next().unwrap_or('\0')))?;
    let mut pos = 1;

    // Attachment count: `<digits>-`, binary kinds only. The reference accepts whatever
    // `Number()` accepts (even an empty count); we want plain digits.
    let mut expected = 0usize;
    if kind.is_binary() {
        let digits = count_digits(&bytes[pos..]);
        if digits == 0 || bytes.get(pos + digits) != Some(&b'-') {
            return Err(PacketError::BadAttachmentCount);
        }
        let too_many = PacketError::TooManyAttachments { max: limits.max_attachments };
        expected = parse_decimal(&bytes[pos..pos + digits])
            .and_then(|n| usize::try_from(n).ok())
            .ok_or(too_many.clone())?;
        if expected > limits.max_attachments {
            return Err(too_many);
        }
        pos += digits + 1;
    }

    // Namespace: present when the next byte is `/`, up to the next `,` or the end of the text
    // (so `0/custom` is a CONNECT to `/custom`, as in the reference).
    let ns = if bytes.get(pos) == Some(&b'/') {
        let rest = &msg[pos..];
        let len = rest.find(',').unwrap_or(rest.len());
        let ns = &rest[..len];
        if ns.len() > limits.max_ns_len {
            return Err(PacketError::NamespaceTooLong { max: limits.max_ns_len });
        }
        // A client builds the namespace from a URL path, which cannot hold control characters;
        // refusing them keeps them out of logs. The reference accepts them.
        if ns.chars().any(char::is_control) {
            return Err(PacketError::BadNamespace);
        }
        pos += len + usize::from(len < rest.len());
        ns.to_owned()
    } else {
        String::from("/")
    };

    // Ack id: the digits that follow.
    let digits = count_digits(&bytes[pos..]);
    let id = if digits == 0 {
        None
    } else {
        if digits > MAX_ACK_ID_DIGITS {
            return Err(PacketError::BadAckId);
        }
        let id = parse_decimal(&bytes[pos..pos + digits]).ok_or(PacketError::BadAckId)?;
        pos += digits;
        Some(id)
    };

    // Data: everything left must be exactly one JSON value.
    let rest = &msg[pos..];
    let data = if rest.is_empty() {
        None
    } else {
        let raw: Box<RawValue> = serde_json::from_str(rest).map_err(|_| PacketError::InvalidJson)?;
        Some(raw)
    };

    validate_data(kind, data.as_deref())?;
    if kind.is_binary()
        && let Some(raw) = data.as_deref()
    {
        check_placeholders(raw, expected)?;
    }

    let packet = Packet { kind, ns, id, data, attachments: Vec::new() };
    Ok((packet, expected))
}

fn count_digits(bytes: &[u8]) -> usize {
    bytes.iter().take_while(|b| b.is_ascii_digit()).count()
}

/// Parses ASCII digits; `None` on overflow.
fn parse_decimal(digits: &[u8]) -> Option<u64> {
    digits.iter().try_fold(0u64, |acc, &d| acc.checked_mul(10)?.checked_add(u64::from(d - b'0')))
}

/// The shape rules of the reference parser (`isPayloadValid`), plus the spec's rule that EVENT
/// and ACK data is mandatory (the reference lets `2` through without data, and the server then
/// emits an event without a name).
fn validate_data(kind: PacketKind, data: Option<&RawValue>) -> Result<(), PacketError> {
    // A RawValue is one valid JSON value without leading whitespace, so its first byte tells its
    // type.
    let first = data.map(|d| d.get().as_bytes()[0]);
    match kind {
        // Spec "Connection to a namespace": an optional auth object.
        PacketKind::Connect => match first {
            None | Some(b'{') => Ok(()),
            Some(_) => Err(PacketError::InvalidPayload),
        },
        // Spec "Disconnection from a namespace": no payload.
        PacketKind::Disconnect => match first {
            None => Ok(()),
            Some(_) => Err(PacketError::InvalidPayload),
        },
        // A string (old servers) or an object with `message` and optional `data`.
        PacketKind::ConnectError => match first {
            None | Some(b'"' | b'{') => Ok(()),
            Some(_) => Err(PacketError::InvalidPayload),
        },
        // Spec "Sending and receiving data": a non-empty array whose first element is the name.
        PacketKind::Event | PacketKind::BinaryEvent => match data {
            Some(raw) => check_event_head(raw.get()),
            None => Err(PacketError::InvalidPayload),
        },
        // Spec "Acknowledgement": an array, possibly empty.
        PacketKind::Ack | PacketKind::BinaryAck => match first {
            Some(b'[') => Ok(()),
            _ => Err(PacketError::InvalidPayload),
        },
    }
}

/// Checks that `json` (already known valid) is an array whose first element is a string that is
/// not reserved, or a number (accepted by the reference parser for compatibility).
fn check_event_head(json: &str) -> Result<(), PacketError> {
    let Some(inner) = json.strip_prefix('[') else {
        return Err(PacketError::InvalidPayload);
    };
    let head = inner.trim_start_matches([' ', '\t', '\n', '\r']);
    match head.as_bytes().first() {
        Some(b'-' | b'0'..=b'9') => Ok(()),
        Some(b'"') => {
            // Read just the first string (unescaped, without allocating unless it has escapes);
            // the rest of the array was validated when the data was parsed.
            let mut de = serde_json::Deserializer::from_str(head);
            let reserved = de.deserialize_str(ReservedName).map_err(|_| PacketError::InvalidJson)?;
            if reserved { Err(PacketError::ReservedEventName) } else { Ok(()) }
        }
        _ => Err(PacketError::InvalidPayload),
    }
}

/// Visits one JSON string and tells whether it is a reserved event name.
struct ReservedName;

impl<'de> Visitor<'de> for ReservedName {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an event name")
    }

    fn visit_str<E: de::Error>(self, name: &str) -> Result<bool, E> {
        Ok(RESERVED_EVENTS.contains(&name))
    }
}

/// Walks the data of a binary packet and checks every placeholder object
/// (`"_placeholder": true`) against the attachment count, as the reference's
/// `reconstructPacket` does when the last attachment arrives. We check up front, at the text
/// message, since the count is known then.
fn check_placeholders(raw: &RawValue, attachments: usize) -> Result<(), PacketError> {
    let ctx = WalkCtx { attachments, error: Cell::new(None) };
    let mut de = serde_json::Deserializer::from_str(raw.get());
    match (Walk { ctx: &ctx }).deserialize(&mut de) {
        Ok(_) => Ok(()),
        // The JSON is already known valid, so a failure without a recorded placeholder error is
        // serde_json's recursion limit.
        Err(_) => Err(ctx.error.take().unwrap_or(PacketError::NestingTooDeep)),
    }
}

struct WalkCtx {
    attachments: usize,
    error: Cell<Option<PacketError>>,
}

impl WalkCtx {
    fn fail<E: de::Error>(&self, error: PacketError) -> E {
        let e = E::custom(&error);
        self.error.set(Some(error));
        e
    }
}

/// What the walker needs to know about a value to judge a placeholder object.
enum Summary {
    True,
    /// A number that is a non-negative integer (JavaScript sees `1.0` as `1`).
    Index(u64),
    Other,
}

#[derive(Clone, Copy)]
struct Walk<'c> {
    ctx: &'c WalkCtx,
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = Summary;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Summary, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = Summary;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Summary, E> {
        Ok(if v { Summary::True } else { Summary::Other })
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Summary, E> {
        Ok(Summary::Index(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Summary, E> {
        Ok(u64::try_from(v).map_or(Summary::Other, Summary::Index))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Summary, E> {
        // Integral floats below 2^53 are exact; larger ones are out of range anyway.
        if v >= 0.0 && v.fract() == 0.0 && v < 9_007_199_254_740_992.0 {
            Ok(Summary::Index(v as u64))
        } else {
            Ok(Summary::Other)
        }
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Summary, E> {
        Ok(Summary::Other)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Summary, E> {
        Ok(Summary::Other)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Summary, A::Error> {
        while seq.next_element_seed(self)?.is_some() {}
        Ok(Summary::Other)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Summary, A::Error> {
        // Like `JSON.parse`, the last of duplicate keys wins.
        let mut is_placeholder = false;
        let mut num = None;
        while let Some(key) = map.next_key_seed(KeySeed)? {
            let value = map.next_value_seed(self)?;
            match key {
                Key::Placeholder => is_placeholder = matches!(value, Summary::True),
                Key::Num => num = Some(value),
                Key::Other => {}
            }
        }
        if is_placeholder {
            match num {
                Some(Summary::Index(n)) if n < self.ctx.attachments as u64 => {}
                Some(Summary::Index(n)) => {
                    return Err(self.ctx.fail(PacketError::PlaceholderOutOfRange {
                        num: n,
                        attachments: self.ctx.attachments,
                    }));
                }
                _ => return Err(self.ctx.fail(PacketError::BadPlaceholder)),
            }
        }
        Ok(Summary::Other)
    }
}

enum Key {
    Placeholder,
    Num,
    Other,
}

struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Key;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Key, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Key, E> {
        Ok(match key {
            "_placeholder" => Key::Placeholder,
            "num" => Key::Num,
            _ => Key::Other,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------------------------

/// Encodes the text part of `p` into `out`: with the `N-` prefix for binary kinds
/// (N = `p.attachments.len()`); the attachments themselves are sent by the caller as N
/// Engine.IO binary messages after it. `p.data` is written as is, so it should be compact JSON.
pub fn encode(p: &Packet, out: &mut String) {
    debug_assert!(p.kind.is_binary() || p.attachments.is_empty(), "only binary packets carry attachments");
    out.push(char::from(p.kind.digit()));
    if p.kind.is_binary() {
        push_u64(out, p.attachments.len() as u64);
        out.push('-');
    }
    push_ns(out, &p.ns);
    if let Some(id) = p.id {
        push_u64(out, id);
    }
    if let Some(data) = &p.data {
        out.push_str(data.get());
    }
}

/// Fast path for emits and broadcasts: writes `2[/ns,][id]["event",<args_inner>]`, or
/// `5N-[/ns,][id][...]` when `n_attachments > 0`. `args_inner` is the compact JSON of the
/// arguments without the surrounding brackets, possibly empty.
pub fn encode_event(
    ns: &str,
    id: Option<u64>,
    event: &str,
    args_inner: &str,
    n_attachments: usize,
    out: &mut String,
) {
    push_header(out, PacketKind::Event, PacketKind::BinaryEvent, n_attachments, ns);
    if let Some(id) = id {
        push_u64(out, id);
    }
    out.push('[');
    push_json_str(out, event);
    if !args_inner.is_empty() {
        out.push(',');
        out.push_str(args_inner);
    }
    out.push(']');
}

/// Writes an acknowledgement: `3[/ns,]<id>[<args_inner>]`, or `6N-...` when
/// `n_attachments > 0`.
pub fn encode_ack(ns: &str, id: u64, args_inner: &str, n_attachments: usize, out: &mut String) {
    push_header(out, PacketKind::Ack, PacketKind::BinaryAck, n_attachments, ns);
    push_u64(out, id);
    out.push('[');
    out.push_str(args_inner);
    out.push(']');
}

/// Writes the server's answer to an accepted CONNECT: `0{"sid":"..."}` or `0/ns,{"sid":"..."}`.
pub fn encode_connect_ok(ns: &str, sid: &str, out: &mut String) {
    out.push('0');
    push_ns(out, ns);
    out.push_str("{\"sid\":");
    push_json_str(out, sid);
    out.push('}');
}

/// Writes a CONNECT answer with connection state recovery on: `0[/ns,]{"sid":"...","pid":"..."}`
/// (the private session id the client sends back in its next CONNECT's auth).
pub fn encode_connect_ok_with_pid(ns: &str, sid: &str, pid: &str, out: &mut String) {
    out.push('0');
    push_ns(out, ns);
    out.push_str("{\"sid\":");
    push_json_str(out, sid);
    out.push_str(",\"pid\":");
    push_json_str(out, pid);
    out.push('}');
}

/// Writes a refused CONNECT: `4[/ns,]{"message":"...","data":...}`; `data` is left out when
/// `None`, as `JSON.stringify` leaves out an undefined field.
pub fn encode_connect_error(ns: &str, message: &str, data: Option<&RawValue>, out: &mut String) {
    out.push('4');
    push_ns(out, ns);
    out.push_str("{\"message\":");
    push_json_str(out, message);
    if let Some(data) = data {
        out.push_str(",\"data\":");
        out.push_str(data.get());
    }
    out.push('}');
}

/// Writes a DISCONNECT: `1` or `1/ns,`.
pub fn encode_disconnect(ns: &str, out: &mut String) {
    out.push('1');
    push_ns(out, ns);
}

fn push_header(out: &mut String, plain: PacketKind, binary: PacketKind, n: usize, ns: &str) {
    if n == 0 {
        out.push(char::from(plain.digit()));
    } else {
        out.push(char::from(binary.digit()));
        push_u64(out, n as u64);
        out.push('-');
    }
    push_ns(out, ns);
}

/// Writes the namespace and its `,`, unless it is the main namespace (also for an empty one,
/// as the reference does).
fn push_ns(out: &mut String, ns: &str) {
    if ns.is_empty() || ns == "/" {
        return;
    }
    debug_assert!(ns.starts_with('/') && !ns.contains(','), "namespace must start with '/' and hold no ','");
    out.push_str(ns);
    out.push(',');
}

fn push_u64(out: &mut String, mut n: u64) {
    let mut buf = [0u8; MAX_ACK_ID_DIGITS];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &b in &buf[i..] {
        out.push(char::from(b));
    }
}

/// Writes `s` as a JSON string the way `JSON.stringify` (and serde_json) do: `"` and `\`
/// escaped, `\b \f \n \r \t` by name, other control characters as lower-case `\u00XX`,
/// everything else as is.
fn push_json_str(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let escape: &str = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            0x08 => "\\b",
            0x0c => "\\f",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x00..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if escape.is_empty() {
            out.push_str("\\u00");
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        } else {
            out.push_str(escape);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn raw(json: &str) -> Box<RawValue> {
        RawValue::from_string(json.to_owned()).unwrap()
    }

    fn decode_one(msg: &str) -> Result<Option<Packet>, PacketError> {
        Decoder::new(DecoderLimits::default()).feed_text(msg)
    }

    fn encoded(p: &Packet) -> String {
        let mut out = String::new();
        encode(p, &mut out);
        out
    }

    fn with(f: impl FnOnce(&mut String)) -> String {
        let mut out = String::new();
        f(&mut out);
        out
    }

    /// Every example of the protocol spec, section "Packet encoding" (socket.io-protocol v5),
    /// without the Engine.IO `4` prefix: (encoded, kind, ns, id, data, attachments).
    #[allow(clippy::type_complexity)]
    const SPEC_VECTORS: &[(&str, PacketKind, &str, Option<u64>, Option<&str>, &[&[u8]])] = &[
        ("0", PacketKind::Connect, "/", None, None, &[]),
        (
            r#"0{"sid":"wZX3oN0bSVIhsaknAAAI"}"#,
            PacketKind::Connect,
            "/",
            None,
            Some(r#"{"sid":"wZX3oN0bSVIhsaknAAAI"}"#),
            &[],
        ),
        ("0/admin,", PacketKind::Connect, "/admin", None, None, &[]),
        (
            r#"0/admin,{"sid":"oSO0OpakMV_3jnilAAAA"}"#,
            PacketKind::Connect,
            "/admin",
            None,
            Some(r#"{"sid":"oSO0OpakMV_3jnilAAAA"}"#),
            &[],
        ),
        // Connection with an auth payload (spec, "Connection to a namespace").
        (r#"0/admin,{"token":"123"}"#, PacketKind::Connect, "/admin", None, Some(r#"{"token":"123"}"#), &[]),
        (
            r#"4{"message":"Not authorized"}"#,
            PacketKind::ConnectError,
            "/",
            None,
            Some(r#"{"message":"Not authorized"}"#),
            &[],
        ),
        (r#"2["foo"]"#, PacketKind::Event, "/", None, Some(r#"["foo"]"#), &[]),
        (r#"2/admin,["bar"]"#, PacketKind::Event, "/admin", None, Some(r#"["bar"]"#), &[]),
        (
            r#"51-["baz",{"_placeholder":true,"num":0}]"#,
            PacketKind::BinaryEvent,
            "/",
            None,
            Some(r#"["baz",{"_placeholder":true,"num":0}]"#),
            &[&[1, 2, 3, 4]],
        ),
        (
            r#"52-/admin,["baz",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#,
            PacketKind::BinaryEvent,
            "/admin",
            None,
            Some(r#"["baz",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#),
            &[&[1, 2], &[3, 4]],
        ),
        (r#"212["foo"]"#, PacketKind::Event, "/", Some(12), Some(r#"["foo"]"#), &[]),
        ("312[]", PacketKind::Ack, "/", Some(12), Some("[]"), &[]),
        (r#"2/admin,13["foo"]"#, PacketKind::Event, "/admin", Some(13), Some(r#"["foo"]"#), &[]),
        (r#"3/admin,13["bar"]"#, PacketKind::Ack, "/admin", Some(13), Some(r#"["bar"]"#), &[]),
        (
            r#"51-14["foo",{"_placeholder":true,"num":0}]"#,
            PacketKind::BinaryEvent,
            "/",
            Some(14),
            Some(r#"["foo",{"_placeholder":true,"num":0}]"#),
            &[&[1, 2, 3, 4]],
        ),
        (r#"314["bar"]"#, PacketKind::Ack, "/", Some(14), Some(r#"["bar"]"#), &[]),
        (r#"215["foo"]"#, PacketKind::Event, "/", Some(15), Some(r#"["foo"]"#), &[]),
        (
            r#"61-15["bar",{"_placeholder":true,"num":0}]"#,
            PacketKind::BinaryAck,
            "/",
            Some(15),
            Some(r#"["bar",{"_placeholder":true,"num":0}]"#),
            &[&[1, 2, 3, 4]],
        ),
        ("1", PacketKind::Disconnect, "/", None, None, &[]),
        ("1/admin,", PacketKind::Disconnect, "/admin", None, None, &[]),
    ];

    #[test]
    fn spec_vectors_decode_and_encode_byte_exact() {
        for &(text, kind, ns, id, data, attachments) in SPEC_VECTORS {
            let expected = Packet {
                kind,
                ns: ns.to_owned(),
                id,
                data: data.map(raw),
                attachments: attachments.iter().map(|a| Bytes::copy_from_slice(a)).collect(),
            };
            let mut decoder = Decoder::new(DecoderLimits::default());
            let mut got = decoder.feed_text(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            for (i, a) in expected.attachments.iter().enumerate() {
                assert!(got.is_none(), "{text}: complete before attachment {i}");
                got = decoder.feed_binary(a.clone()).unwrap();
            }
            assert_eq!(got.as_ref(), Some(&expected), "{text}");
            assert!(!decoder.is_awaiting_attachments());
            assert_eq!(encoded(&expected), text);
        }
    }

    #[test]
    fn fast_encoders_write_spec_vectors() {
        assert_eq!(
            with(|o| encode_connect_ok("/", "wZX3oN0bSVIhsaknAAAI", o)),
            r#"0{"sid":"wZX3oN0bSVIhsaknAAAI"}"#
        );
        assert_eq!(
            with(|o| encode_connect_ok("/admin", "oSO0OpakMV_3jnilAAAA", o)),
            r#"0/admin,{"sid":"oSO0OpakMV_3jnilAAAA"}"#
        );
        assert_eq!(
            with(|o| encode_connect_error("/", "Not authorized", None, o)),
            r#"4{"message":"Not authorized"}"#
        );
        assert_eq!(
            with(|o| encode_connect_ok_with_pid("/a", "s1", "p\"1", o)),
            r#"0/a,{"sid":"s1","pid":"p\"1"}"#
        );
        assert_eq!(with(|o| encode_event("/", None, "foo", "", 0, o)), r#"2["foo"]"#);
        assert_eq!(with(|o| encode_event("/admin", None, "bar", "", 0, o)), r#"2/admin,["bar"]"#);
        assert_eq!(
            with(|o| encode_event("/", None, "baz", r#"{"_placeholder":true,"num":0}"#, 1, o)),
            r#"51-["baz",{"_placeholder":true,"num":0}]"#
        );
        assert_eq!(
            with(|o| encode_event(
                "/admin",
                None,
                "baz",
                r#"{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}"#,
                2,
                o
            )),
            r#"52-/admin,["baz",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#
        );
        assert_eq!(with(|o| encode_event("/", Some(12), "foo", "", 0, o)), r#"212["foo"]"#);
        assert_eq!(with(|o| encode_ack("/", 12, "", 0, o)), "312[]");
        assert_eq!(with(|o| encode_event("/admin", Some(13), "foo", "", 0, o)), r#"2/admin,13["foo"]"#);
        assert_eq!(with(|o| encode_ack("/admin", 13, r#""bar""#, 0, o)), r#"3/admin,13["bar"]"#);
        assert_eq!(
            with(|o| encode_event("/", Some(14), "foo", r#"{"_placeholder":true,"num":0}"#, 1, o)),
            r#"51-14["foo",{"_placeholder":true,"num":0}]"#
        );
        assert_eq!(
            with(|o| encode_ack("/", 15, r#""bar",{"_placeholder":true,"num":0}"#, 1, o)),
            r#"61-15["bar",{"_placeholder":true,"num":0}]"#
        );
        assert_eq!(with(|o| encode_disconnect("/", o)), "1");
        assert_eq!(with(|o| encode_disconnect("/admin", o)), "1/admin,");
    }

    #[test]
    fn connect_error_encodes_like_the_reference_server() {
        assert_eq!(
            with(|o| encode_connect_error("/", "Invalid namespace", None, o)),
            r#"4{"message":"Invalid namespace"}"#
        );
        assert_eq!(
            with(|o| encode_connect_error("/custom", "Invalid namespace", None, o)),
            r#"4/custom,{"message":"Invalid namespace"}"#
        );
        let data = raw(r#"{"content":"Please retry later"}"#);
        assert_eq!(
            with(|o| encode_connect_error("/", "not \"ok\"", Some(&data), o)),
            r#"4{"message":"not \"ok\"","data":{"content":"Please retry later"}}"#
        );
    }

    #[test]
    fn event_names_and_messages_are_escaped_as_json_strings() {
        assert_eq!(
            with(|o| encode_event("/", None, "a\"b\\c\n\u{1}é", "1", 0, o)),
            r#"2["a\"b\\c\n\u0001é",1]"#
        );
        let text = with(|o| encode_event("/", None, "a\"b\\c\n\u{1}é", "1", 0, o));
        let p = decode_one(&text).unwrap().unwrap();
        let (name, args) = p.event().unwrap();
        assert!(matches!(name, Cow::Owned(_)));
        assert_eq!(name, "a\"b\\c\n\u{1}é");
        assert_eq!(args.len(), 1);
    }

    #[test]
    fn custom_namespace_without_trailing_comma_decodes() {
        let p = decode_one("0/custom").unwrap().unwrap();
        assert_eq!(p, Packet::new(PacketKind::Connect, "/custom"));
    }

    #[test]
    fn custom_namespace_with_trailing_comma_decodes() {
        let p = decode_one("0/custom,").unwrap().unwrap();
        assert_eq!(p, Packet::new(PacketKind::Connect, "/custom"));
    }

    #[test]
    fn empty_namespace_is_the_main_namespace_when_encoding() {
        let p = Packet::new(PacketKind::Disconnect, "");
        assert_eq!(encoded(&p), "1");
    }

    #[test]
    fn event_returns_borrowed_name_and_raw_args() {
        let p = decode_one(r#"2/chat,7["msg",{"a":[1,2]},"x",null]"#).unwrap().unwrap();
        assert_eq!(p.ns, "/chat");
        assert_eq!(p.id, Some(7));
        let (name, args) = p.event().unwrap();
        assert!(matches!(name, Cow::Borrowed("msg")));
        let args: Vec<&str> = args.iter().map(|a| a.get()).collect();
        assert_eq!(args, [r#"{"a":[1,2]}"#, r#""x""#, "null"]);
    }

    /// socket.io-parser 4.2.x accepts a number as the event name ("encodes an event (with an
    /// integer as event name)"); we follow it.
    #[test]
    fn numeric_event_name_is_accepted_like_the_reference() {
        let p = decode_one(r#"2[1,"a",{}]"#).unwrap().unwrap();
        let (name, args) = p.event().unwrap();
        assert_eq!(name, "1");
        assert_eq!(args.len(), 2);
    }

    #[test]
    fn ack_args_returns_raw_args() {
        let p = decode_one(r#"3/admin,13["bar",2]"#).unwrap().unwrap();
        let args: Vec<&str> = p.ack_args().unwrap().iter().map(|a| a.get()).collect();
        assert_eq!(args, [r#""bar""#, "2"]);
        let p = decode_one("312[]").unwrap().unwrap();
        assert!(p.ack_args().unwrap().is_empty());
    }

    #[test]
    fn connect_error_accepts_string_and_object() {
        assert!(decode_one(r#"4"Unauthorized""#).unwrap().is_some());
        assert!(decode_one(r#"4{"message":"Unauthorized"}"#).unwrap().is_some());
    }

    #[test]
    fn binary_packet_waits_for_all_attachments() {
        let mut d = Decoder::new(DecoderLimits::default());
        let text = r#"52-/admin,["baz",{"_placeholder":true,"num":1},{"_placeholder":true,"num":0}]"#;
        assert_eq!(d.feed_text(text), Ok(None));
        assert!(d.is_awaiting_attachments());
        assert_eq!(d.feed_binary(Bytes::from_static(b"\x01\x02")), Ok(None));
        let p = d.feed_binary(Bytes::from_static(b"\x03")).unwrap().unwrap();
        assert_eq!(p.attachments, [&b"\x01\x02"[..], &b"\x03"[..]]);
        assert_eq!(p.event().unwrap().0, "baz");
        assert!(!d.is_awaiting_attachments());
        // The decoder takes the next packet normally.
        assert!(d.feed_text(r#"2["next"]"#).unwrap().is_some());
    }

    #[test]
    fn binary_packet_with_zero_attachments_completes_at_once() {
        let mut d = Decoder::new(DecoderLimits::default());
        let p = d.feed_text(r#"50-["a"]"#).unwrap().unwrap();
        assert_eq!(p.kind, PacketKind::BinaryEvent);
        assert!(!d.is_awaiting_attachments());
        assert_eq!(encoded(&p), r#"50-["a"]"#);
    }

    #[test]
    fn placeholder_lookalikes_in_plain_events_are_plain_data() {
        let text = r#"2["a",{"_placeholder":true,"num":9}]"#;
        assert!(decode_one(text).unwrap().is_some());
    }

    #[test]
    fn placeholder_index_may_be_an_integral_float() {
        let mut d = Decoder::new(DecoderLimits::default());
        assert_eq!(d.feed_text(r#"51-["a",{"num":0.0,"_placeholder":true}]"#), Ok(None));
    }

    #[test]
    fn data_surrounded_by_whitespace_is_trimmed() {
        let p = decode_one("2[\"a\"] \n").unwrap().unwrap();
        assert_eq!(p.data.unwrap().get(), r#"["a"]"#);
    }

    // ---- rejections: one test per error kind ----

    fn err(msg: &str) -> PacketError {
        decode_one(msg).expect_err(msg)
    }

    #[test]
    fn empty_text_is_rejected() {
        assert_eq!(err(""), PacketError::EmptyPacket);
    }

    #[test]
    fn unknown_type_digit_is_rejected() {
        assert_eq!(err("999"), PacketError::UnknownType('9'));
        assert_eq!(err("7"), PacketError::UnknownType('7'));
        assert_eq!(err("é"), PacketError::UnknownType('é'));
        assert_eq!(err("a"), PacketError::UnknownType('a'));
    }

    #[test]
    fn binary_packet_without_attachment_count_is_rejected() {
        for msg in ["5", r#"5["a"]"#, r#"5-["a"]"#, r#"51["a"]"#, r#"5a-["a"]"#, "6"] {
            assert_eq!(err(msg), PacketError::BadAttachmentCount, "{msg}");
        }
    }

    #[test]
    fn attachment_count_over_limit_is_rejected_before_waiting() {
        let max = DecoderLimits::default().max_attachments;
        assert_eq!(err(&format!("5{}-[\"a\"]", max + 1)), PacketError::TooManyAttachments { max });
        // A count far beyond any integer type, without allocating anything for it.
        let huge = format!("5{}-[\"a\"]", "9".repeat(100_000));
        assert_eq!(err(&huge), PacketError::TooManyAttachments { max });
    }

    #[test]
    fn namespace_with_control_character_is_rejected() {
        assert_eq!(err("0/a\u{1}b,"), PacketError::BadNamespace);
        assert_eq!(err("0/a\u{7f}"), PacketError::BadNamespace);
    }

    #[test]
    fn namespace_over_limit_is_rejected() {
        let limits = DecoderLimits { max_ns_len: 8, ..DecoderLimits::default() };
        let mut d = Decoder::new(limits);
        assert!(d.feed_text("0/1234567,").unwrap().is_some());
        assert_eq!(d.feed_text("0/12345678,"), Err(PacketError::NamespaceTooLong { max: 8 }));
        assert_eq!(d.feed_text("0/12345678"), Err(PacketError::NamespaceTooLong { max: 8 }));
    }

    #[test]
    fn ack_id_that_does_not_fit_is_rejected() {
        let p = decode_one(&format!("3{}[]", u64::MAX)).unwrap().unwrap();
        assert_eq!(p.id, Some(u64::MAX));
        assert_eq!(err("318446744073709551616[]"), PacketError::BadAckId);
        assert_eq!(err(&format!("3{}[]", "1".repeat(10_000))), PacketError::BadAckId);
    }

    #[test]
    fn invalid_json_or_trailing_garbage_is_rejected() {
        for msg in [r#"2["a""#, r#"2["a"]x"#, r#"2["a"]]"#, "2/admin,\"invalid", r#"42["some","data""#] {
            assert_eq!(err(msg), PacketError::InvalidJson, "{msg}");
        }
    }

    /// The "invalid payload" cases of socket.io-parser's test suite, plus missing data.
    #[test]
    fn payload_of_wrong_shape_is_rejected() {
        for msg in [
            r#"0/admin,"invalid""#,
            "0[]",
            "0null",
            "1/admin,{}",
            "1[]",
            r#"2/admin,{}"#,
            r#"2[{"toString":"foo"}]"#,
            r#"2[true,"foo"]"#,
            r#"2[null,"bar"]"#,
            "2[]",
            "2",
            "2/admin,",
            r#"2"a""#,
            "3{}",
            "3",
            "3/admin,1",
            "4[]",
            "4null",
            "4 1",
            r#"50-{"a":1}"#,
            "60-",
        ] {
            assert_eq!(err(msg), PacketError::InvalidPayload, "{msg}");
        }
    }

    #[test]
    fn reserved_event_name_is_rejected() {
        for msg in [
            r#"2["connect"]"#,
            r#"2["disconnect","123"]"#,
            r#"2["\u0063onnect"]"#,
            r#"2/admin,5["removeListener"]"#,
            r#"50-["newListener"]"#,
        ] {
            assert_eq!(err(msg), PacketError::ReservedEventName, "{msg}");
        }
        // Only the event name is checked, not the arguments.
        assert!(decode_one(r#"2["msg","connect"]"#).is_ok());
    }

    #[test]
    fn binary_message_without_pending_packet_is_rejected() {
        let mut d = Decoder::new(DecoderLimits::default());
        assert_eq!(d.feed_binary(Bytes::from_static(b"x")), Err(PacketError::UnexpectedBinary));
        d.feed_text(r#"51-["a",{"_placeholder":true,"num":0}]"#).unwrap();
        assert!(d.feed_binary(Bytes::from_static(b"x")).unwrap().is_some());
        assert_eq!(d.feed_binary(Bytes::from_static(b"y")), Err(PacketError::UnexpectedBinary));
    }

    #[test]
    fn text_message_while_awaiting_attachments_is_rejected_and_resets() {
        let mut d = Decoder::new(DecoderLimits::default());
        assert_eq!(d.feed_text(r#"51-["a",{"_placeholder":true,"num":0}]"#), Ok(None));
        assert_eq!(d.feed_text(r#"2["b"]"#), Err(PacketError::UnexpectedText));
        assert!(!d.is_awaiting_attachments());
        assert!(d.feed_text(r#"2["b"]"#).unwrap().is_some());
    }

    #[test]
    fn placeholder_without_valid_index_is_rejected() {
        for msg in [
            r#"51-["a",{"_placeholder":true}]"#,
            r#"51-["a",{"_placeholder":true,"num":"0"}]"#,
            r#"51-["a",{"_placeholder":true,"num":-1}]"#,
            r#"51-["a",{"_placeholder":true,"num":0.5}]"#,
            r#"51-["a",{"_placeholder":true,"num":null}]"#,
        ] {
            assert_eq!(err(msg), PacketError::BadPlaceholder, "{msg}");
        }
        // `_placeholder` must be exactly `true` for the object to be a placeholder.
        assert!(decode_one(r#"51-["a",{"_placeholder":1,"num":"x"}]"#).is_ok());
    }

    #[test]
    fn placeholder_out_of_range_is_rejected() {
        assert_eq!(
            err(r#"51-["a",{"_placeholder":true,"num":1}]"#),
            PacketError::PlaceholderOutOfRange { num: 1, attachments: 1 }
        );
        assert_eq!(
            err(r#"60-1[{"x":[{"_placeholder":true,"num":0}]}]"#),
            PacketError::PlaceholderOutOfRange { num: 0, attachments: 0 }
        );
        // Nested deep inside the data, keys in any order, duplicates: the last one wins.
        assert_eq!(
            err(r#"52-["a",[{"b":{"num":0,"num":7,"_placeholder":true}}]]"#),
            PacketError::PlaceholderOutOfRange { num: 7, attachments: 2 }
        );
    }

    #[test]
    fn binary_data_nested_too_deep_is_rejected() {
        let deep = format!("51-[\"a\",{}{}]", "[".repeat(200), "]".repeat(200));
        assert_eq!(err(&deep), PacketError::NestingTooDeep);
        // Plain events are not walked, so depth is only bounded by the message size.
        let deep = format!("2[\"a\",{}{}]", "[".repeat(100_000), "]".repeat(100_000));
        assert!(decode_one(&deep).is_ok());
    }

    #[test]
    fn attachments_over_byte_limit_are_rejected() {
        let limits = DecoderLimits { max_attachment_bytes: 4, ..DecoderLimits::default() };
        let mut d = Decoder::new(limits);
        let text = r#"52-["a",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#;
        d.feed_text(text).unwrap();
        assert_eq!(d.feed_binary(Bytes::from_static(b"abc")), Ok(None));
        assert_eq!(
            d.feed_binary(Bytes::from_static(b"de")),
            Err(PacketError::AttachmentsTooLarge { max: 4 })
        );
        assert!(!d.is_awaiting_attachments());
    }

    #[test]
    fn reading_event_of_an_ack_is_misuse() {
        let ack = decode_one("31[]").unwrap().unwrap();
        assert_eq!(ack.event().unwrap_err(), PacketError::WrongKind);
        let ev = decode_one(r#"2["a"]"#).unwrap().unwrap();
        assert_eq!(ev.ack_args().unwrap_err(), PacketError::WrongKind);
        assert_eq!(PacketError::WrongKind.class(), ErrorClass::Misuse);
    }

    #[test]
    fn errors_are_classified_by_fault() {
        assert_eq!(PacketError::InvalidJson.class(), ErrorClass::Malformed);
        assert_eq!(PacketError::UnexpectedText.class(), ErrorClass::Protocol);
        assert_eq!(PacketError::TooManyAttachments { max: 1 }.class(), ErrorClass::Limit);
        let e: Box<dyn std::error::Error> = Box::new(PacketError::BadAckId);
        assert_eq!(e.to_string(), "ack id does not fit in 64 bits");
    }

    // ---- properties ----

    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        use serde_json::Value;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
            ".{0,8}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map("[a-z]{0,6}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn to_raw(v: &serde_json::Value) -> Box<RawValue> {
        serde_json::value::to_raw_value(v).unwrap()
    }

    fn event_name() -> impl Strategy<Value = serde_json::Value> {
        prop_oneof![
            ".{0,10}"
                .prop_filter("not reserved", |s| !RESERVED_EVENTS.contains(&s.as_str()))
                .prop_map(serde_json::Value::String),
            any::<u32>().prop_map(serde_json::Value::from),
        ]
    }

    fn namespace() -> impl Strategy<Value = String> {
        prop_oneof![Just("/".to_owned()), "/[^,\\p{Cc}]{0,12}"]
    }

    fn packet() -> impl Strategy<Value = Packet> {
        let kind = prop_oneof![
            Just(PacketKind::Connect),
            Just(PacketKind::Disconnect),
            Just(PacketKind::Event),
            Just(PacketKind::Ack),
            Just(PacketKind::ConnectError),
            Just(PacketKind::BinaryEvent),
            Just(PacketKind::BinaryAck),
        ];
        let attachments = prop::collection::vec(prop::collection::vec(any::<u8>(), 0..16), 0..4);
        (
            kind,
            namespace(),
            any::<Option<u64>>(),
            prop::collection::vec(json_value(), 0..4),
            event_name(),
            attachments,
            any::<bool>(),
        )
            .prop_map(|(kind, ns, id, mut args, name, attachments, flag)| {
                use serde_json::{Value, json};
                let mut attachments: Vec<Bytes> = attachments.into_iter().map(Bytes::from).collect();
                if kind.is_binary() {
                    // One placeholder per attachment, appended to the arguments.
                    args.extend((0..attachments.len()).map(|i| json!({"_placeholder": true, "num": i})));
                } else {
                    attachments.clear();
                }
                let data = match kind {
                    PacketKind::Connect => flag.then(|| json!({"token": args})),
                    PacketKind::Disconnect => None,
                    PacketKind::ConnectError if flag => Some(json!({"message": "no", "data": args})),
                    PacketKind::ConnectError => Some(json!("Unauthorized")),
                    PacketKind::Event | PacketKind::BinaryEvent => {
                        args.insert(0, name);
                        Some(Value::Array(args))
                    }
                    PacketKind::Ack | PacketKind::BinaryAck => Some(Value::Array(args)),
                };
                Packet { kind, ns, id, data: data.as_ref().map(to_raw), attachments }
            })
    }

    fn decode_all(text: &str, attachments: &[Bytes]) -> Result<Option<Packet>, PacketError> {
        let mut d = Decoder::new(DecoderLimits::default());
        let mut got = d.feed_text(text)?;
        for a in attachments {
            got = d.feed_binary(a.clone())?;
        }
        Ok(got)
    }

    proptest! {
        #[test]
        fn decode_of_encode_is_identity(p in packet()) {
            let text = encoded(&p);
            prop_assert_eq!(decode_all(&text, &p.attachments), Ok(Some(p)));
        }

        #[test]
        fn fast_event_encoder_round_trips(
            ns in namespace(),
            id in any::<Option<u64>>(),
            name in ".{0,10}".prop_filter("not reserved", |s| !RESERVED_EVENTS.contains(&s.as_str())),
            args in prop::collection::vec(json_value(), 0..4),
        ) {
            let inner: Vec<String> = args.iter().map(|a| a.to_string()).collect();
            let mut text = String::new();
            encode_event(&ns, id, &name, &inner.join(","), 0, &mut text);
            let p = decode_one(&text).unwrap().unwrap();
            prop_assert_eq!(&p.ns, &ns);
            prop_assert_eq!(p.id, id);
            let (got_name, got_args) = p.event().unwrap();
            prop_assert_eq!(got_name, name.as_str());
            let got_args: Vec<&str> = got_args.iter().map(|a| a.get()).collect();
            prop_assert_eq!(got_args, inner);
        }

        #[test]
        fn json_strings_are_escaped_like_serde_json(s in any::<String>()) {
            let mut out = String::new();
            push_json_str(&mut out, &s);
            prop_assert_eq!(out, serde_json::to_string(&s).unwrap());
        }

        #[test]
        fn arbitrary_text_never_panics(s in any::<String>()) {
            let _ = decode_one(&s);
        }

        #[test]
        fn arbitrary_packet_prefix_never_panics(
            head in "[0-7][0-9-]{0,4}(/[a-z,]{0,4})?[0-9]{0,3}",
            tail in prop::sample::select(vec!["", "[", "[\"a\"]", "{}", "\"x\"", "[1,{\"_placeholder\":true,\"num\":0}]"]),
            binaries in 0usize..3,
        ) {
            let mut d = Decoder::new(DecoderLimits::default());
            let _ = d.feed_text(&format!("{head}{tail}"));
            for _ in 0..binaries {
                let _ = d.feed_binary(Bytes::from_static(b"b"));
            }
        }
    }
}
