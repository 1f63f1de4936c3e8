//! The server side of the WebSocket protocol (RFC 6455): the opening handshake and a frame
//! codec, without extensions.
//!
//! - [`write_handshake_response`] validates an upgrade [`Request`] (section 4.2.1) and writes the
//!   `101 Switching Protocols` answer (section 4.2.2). Extensions such as `permessage-deflate`
//!   and subprotocols are never accepted, so clients fall back to plain frames.
//! - [`Decoder`] turns the client's masked frames into [`Message`]s, reassembling fragmented
//!   messages while control frames interleave (section 5.4), and enforces every "MUST" a server
//!   can check on a frame. Any [`WsError`] ends the connection with [`WsError::close_code`].
//! - [`encode_frame`] and [`encode_close`] write unmasked server frames (section 5.1).
//!
//! What it does not do: no IO, no clock, no ping scheduling and no closing handshake state
//! (Engine.IO has its own heartbeat; the connection owner answers pings and closes). Frame
//! headers are parsed and formatted by `tungstenite`'s `FrameHeader`; unmasking is ours, since
//! tungstenite's is private.
//!
//! Bounds: a frame's announced length is checked against [`DecoderLimits`] before its payload is
//! awaited, and nothing is allocated until the payload bytes are actually in the buffer.

use std::fmt;
use std::io::Cursor;

use bytes::Bytes;
use tungstenite::error::{Error as TungsteniteError, ProtocolError};
use tungstenite::protocol::frame::FrameHeader;
use tungstenite::protocol::frame::coding::{Control, Data, OpCode as WireOpCode};

use super::request::{Method, Request};
use super::response::Response;

// ---------------------------------------------------------------------------------------------
// Opening handshake
// ---------------------------------------------------------------------------------------------

/// Why an upgrade request was refused. The peer's fault; answer with
/// [`HandshakeError::response`] and close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeError {
    /// The method is not GET (section 4.1, item 2).
    NotGet,
    /// `Upgrade: websocket` or `Connection: upgrade` is missing.
    NotUpgrade,
    /// `Sec-WebSocket-Version` is missing or not 13 (section 4.2.2, item 4: answer 426).
    UnsupportedVersion,
    /// `Sec-WebSocket-Key` is missing or is not 16 bytes in base64.
    BadKey,
}

impl HandshakeError {
    /// 426 for a version mismatch, 400 otherwise.
    pub fn status(&self) -> u16 {
        match self {
            HandshakeError::UnsupportedVersion => 426,
            _ => 400,
        }
    }

    /// The response to send: 400, or 426 advertising the version this server speaks.
    pub fn response(&self) -> Response {
        let response = Response::new(self.status());
        match self {
            HandshakeError::UnsupportedVersion => response.header("Sec-WebSocket-Version", "13"),
            _ => response,
        }
    }
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HandshakeError::NotGet => "WebSocket upgrade must use GET",
            HandshakeError::NotUpgrade => "missing Upgrade: websocket or Connection: upgrade",
            HandshakeError::UnsupportedVersion => "Sec-WebSocket-Version must be 13",
            HandshakeError::BadKey => "Sec-WebSocket-Key must be 16 bytes in base64",
        })
    }
}

impl std::error::Error for HandshakeError {}

/// Validates an upgrade request and appends the `101 Switching Protocols` response, with
/// `Sec-WebSocket-Accept` and then `extra_headers` (CORS, cookies), to `out`. Nothing is written
/// on error. After this response the connection speaks WebSocket frames.
pub fn write_handshake_response(
    req: &Request,
    extra_headers: &[(&str, String)],
    out: &mut Vec<u8>,
) -> Result<(), HandshakeError> {
    if req.method != Method::Get {
        return Err(HandshakeError::NotGet);
    }
    if !req.header_has_token("upgrade", "websocket") || !req.header_has_token("connection", "upgrade") {
        return Err(HandshakeError::NotUpgrade);
    }
    if req.header("sec-websocket-version") != Some("13") {
        return Err(HandshakeError::UnsupportedVersion);
    }
    let key = req.header("sec-websocket-key").ok_or(HandshakeError::BadKey)?;
    if !is_valid_key(key) {
        return Err(HandshakeError::BadKey);
    }
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());

    out.extend_from_slice(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Accept: ",
    );
    out.extend_from_slice(accept.as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in extra_headers {
        debug_assert!(!value.contains(['\r', '\n']), "header value with a line break");
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    Ok(())
}

/// Section 4.1, item 7: the key is a random 16-byte value, base64-encoded (24 characters).
fn is_valid_key(key: &str) -> bool {
    use base64::Engine as _;
    let mut decoded = [0u8; 18];
    key.len() == 24
        && matches!(base64::engine::general_purpose::STANDARD.decode_slice(key, &mut decoded), Ok(16))
}

// ---------------------------------------------------------------------------------------------
// Frames
// ---------------------------------------------------------------------------------------------

/// One complete message from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A text message, validated as UTF-8 after reassembly.
    Text(String),
    Binary(Bytes),
    /// A ping; the owner answers with a pong carrying the same payload (section 5.5.2).
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    /// A close frame: the status code, if any, and the reason (section 5.5.1).
    Close(Option<u16>, String),
}

/// Bounds on what a client may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecoderLimits {
    /// Largest reassembled message; the caller sets Engine.IO's `maxPayload`.
    pub max_message_bytes: usize,
    /// Largest single frame payload.
    pub max_frame_bytes: usize,
}

impl Default for DecoderLimits {
    fn default() -> Self {
        DecoderLimits { max_message_bytes: 1_000_000, max_frame_bytes: 1_000_000 }
    }
}

/// Why the client's frames were rejected. All are the peer's fault; the connection is closed
/// with [`WsError::close_code`] (section 7.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WsError {
    /// A client frame without a mask (section 5.1).
    Unmasked,
    /// RSV1, RSV2 or RSV3 set, but no extension was negotiated (section 5.2).
    ReservedBits,
    /// Opcode 0x3-0x7 or 0xB-0xF (section 5.2).
    UnknownOpcode,
    /// The most significant bit of a 64-bit payload length is set (section 5.2).
    BadLength,
    /// A control frame payload over 125 bytes (section 5.5).
    ControlTooLong,
    /// A control frame without FIN (section 5.5).
    FragmentedControl,
    /// A continuation frame with no fragmented message in progress (section 5.4).
    UnexpectedContinuation,
    /// A new text or binary frame while a fragmented message is unfinished (section 5.4).
    ExpectedContinuation,
    /// A frame over `max_frame_bytes` or a message over `max_message_bytes`.
    MessageTooLarge,
    /// A text message or close reason that is not UTF-8 (section 8.1).
    InvalidUtf8,
    /// A close payload of one byte, or a status code that may not be sent (section 7.4).
    BadClosePayload,
}

impl WsError {
    /// The close status to send: 1002 protocol error, 1007 invalid data, 1009 too big.
    pub fn close_code(&self) -> u16 {
        match self {
            WsError::InvalidUtf8 => 1007,
            WsError::MessageTooLarge => 1009,
            _ => 1002,
        }
    }
}

impl fmt::Display for WsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WsError::Unmasked => "client frame is not masked",
            WsError::ReservedBits => "reserved bits set without an extension",
            WsError::UnknownOpcode => "reserved opcode",
            WsError::BadLength => "payload length has its most significant bit set",
            WsError::ControlTooLong => "control frame payload over 125 bytes",
            WsError::FragmentedControl => "fragmented control frame",
            WsError::UnexpectedContinuation => "continuation frame without a message to continue",
            WsError::ExpectedContinuation => "new data frame inside a fragmented message",
            WsError::MessageTooLarge => "message too large",
            WsError::InvalidUtf8 => "invalid UTF-8",
            WsError::BadClosePayload => "invalid close frame payload",
        })
    }
}

impl std::error::Error for WsError {}

/// Largest control frame payload (section 5.5).
const MAX_CONTROL_PAYLOAD: usize = 125;

/// A fragmented message being reassembled.
#[derive(Debug)]
struct Fragments {
    text: bool,
    payload: Vec<u8>,
}

/// Decodes client frames into messages.
///
/// Calling contract: keep the bytes received on the connection in a buffer and call
/// [`Decoder::decode`] on it; drop the first `consumed` bytes it reports, whether or not it
/// returned a message, and call again until it returns `None`. The decoder keeps the fragments of
/// an unfinished message itself, so their frames are reported as consumed. After an error the
/// decoder's state is unspecified: close the connection.
#[derive(Debug)]
pub struct Decoder {
    limits: DecoderLimits,
    fragments: Option<Fragments>,
}

impl Decoder {
    pub fn new(limits: DecoderLimits) -> Self {
        Decoder { limits, fragments: None }
    }

    /// Whether a fragmented message is partly received.
    pub fn in_message(&self) -> bool {
        self.fragments.is_some()
    }

    /// Decodes at most one message from the front of `buf`.
    ///
    /// Returns the message, if one completed, and the number of bytes taken from `buf`: the
    /// frames of that message, plus any fragment frames stored towards a later one. `(None, n)`
    /// means more bytes are needed; `n` may still be non-zero when fragments were stored.
    pub fn decode(&mut self, buf: &[u8]) -> Result<(Option<Message>, usize), WsError> {
        let mut consumed = 0;
        loop {
            let rest = &buf[consumed..];
            let mut cursor = Cursor::new(rest);
            let (header, length) = match FrameHeader::parse(&mut cursor) {
                Ok(Some(parsed)) => parsed,
                Ok(None) => return Ok((None, consumed)),
                Err(TungsteniteError::Protocol(ProtocolError::InvalidOpcode(_))) => {
                    return Err(WsError::UnknownOpcode);
                }
                // Reading from a slice cannot fail otherwise; treat anything else as malformed.
                Err(_) => return Err(WsError::BadLength),
            };
            // The cursor advanced over the header only; it is at most 14 bytes.
            let header_len = cursor.position() as usize;
            self.check_header(&header, length)?;
            let Some(mask) = header.mask else {
                return Err(WsError::Unmasked);
            };
            // check_header bounded `length` by max_frame_bytes or 125, so it fits in usize.
            let frame_len = header_len.saturating_add(length as usize);
            if rest.len() < frame_len {
                return Ok((None, consumed));
            }
            let payload = &rest[header_len..frame_len];
            consumed += frame_len;

            match header.opcode {
                WireOpCode::Control(control) => {
                    let mut data = payload.to_vec();
                    apply_mask(&mut data, mask);
                    return control_message(control, data).map(|m| (Some(m), consumed));
                }
                WireOpCode::Data(Data::Continue) => {
                    // check_header ensured a fragmented message is in progress.
                    let Some(fragments) = self.fragments.as_mut() else {
                        return Err(WsError::UnexpectedContinuation);
                    };
                    let start = fragments.payload.len();
                    fragments.payload.extend_from_slice(payload);
                    apply_mask(&mut fragments.payload[start..], mask);
                    if header.is_final {
                        let Fragments { text, payload } =
                            self.fragments.take().ok_or(WsError::UnexpectedContinuation)?;
                        return data_message(text, payload).map(|m| (Some(m), consumed));
                    }
                }
                WireOpCode::Data(kind) => {
                    let text = kind == Data::Text;
                    let mut data = payload.to_vec();
                    apply_mask(&mut data, mask);
                    if header.is_final {
                        return data_message(text, data).map(|m| (Some(m), consumed));
                    }
                    self.fragments = Some(Fragments { text, payload: data });
                }
            }
        }
    }

    /// Every check that the header alone allows, so that a bad or oversized frame is refused
    /// before its payload is awaited.
    fn check_header(&self, header: &FrameHeader, length: u64) -> Result<(), WsError> {
        if header.rsv1 || header.rsv2 || header.rsv3 {
            return Err(WsError::ReservedBits);
        }
        if header.mask.is_none() {
            return Err(WsError::Unmasked);
        }
        if length > i64::MAX as u64 {
            return Err(WsError::BadLength);
        }
        match header.opcode {
            WireOpCode::Control(Control::Reserved(_)) | WireOpCode::Data(Data::Reserved(_)) => {
                Err(WsError::UnknownOpcode)
            }
            WireOpCode::Control(_) if !header.is_final => Err(WsError::FragmentedControl),
            WireOpCode::Control(_) if length > MAX_CONTROL_PAYLOAD as u64 => Err(WsError::ControlTooLong),
            WireOpCode::Control(_) => Ok(()),
            WireOpCode::Data(kind) => {
                match (kind, &self.fragments) {
                    (Data::Continue, None) => return Err(WsError::UnexpectedContinuation),
                    (Data::Text | Data::Binary, Some(_)) => {
                        return Err(WsError::ExpectedContinuation);
                    }
                    _ => {}
                }
                let so_far = self.fragments.as_ref().map_or(0, |f| f.payload.len()) as u64;
                if length > self.limits.max_frame_bytes as u64
                    || so_far + length > self.limits.max_message_bytes as u64
                {
                    return Err(WsError::MessageTooLarge);
                }
                Ok(())
            }
        }
    }
}

fn data_message(text: bool, payload: Vec<u8>) -> Result<Message, WsError> {
    if text {
        String::from_utf8(payload).map(Message::Text).map_err(|_| WsError::InvalidUtf8)
    } else {
        Ok(Message::Binary(Bytes::from(payload)))
    }
}

fn control_message(control: Control, payload: Vec<u8>) -> Result<Message, WsError> {
    match control {
        Control::Ping => Ok(Message::Ping(payload)),
        Control::Pong => Ok(Message::Pong(payload)),
        Control::Close => parse_close(payload),
        Control::Reserved(_) => Err(WsError::UnknownOpcode),
    }
}

/// Section 5.5.1: an empty body, or a two-byte status code followed by a UTF-8 reason.
fn parse_close(payload: Vec<u8>) -> Result<Message, WsError> {
    match payload.as_slice() {
        [] => Ok(Message::Close(None, String::new())),
        [_] => Err(WsError::BadClosePayload),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !close_code_may_be_received(code) {
                return Err(WsError::BadClosePayload);
            }
            let reason = std::str::from_utf8(reason).map_err(|_| WsError::InvalidUtf8)?;
            Ok(Message::Close(Some(code), reason.to_owned()))
        }
    }
}

/// Section 7.4: codes below 1000, the reserved 1004, the never-sent 1005, 1006 and 1015, and
/// unassigned codes up to 2999 are not valid on the wire; 3000-4999 are for libraries and
/// applications.
fn close_code_may_be_received(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// XORs `data` with the 4-byte masking key starting at key offset 0 (section 5.3). Processes
/// eight bytes at a time, then the tail byte by byte.
pub fn apply_mask(data: &mut [u8], mask: [u8; 4]) {
    let [a, b, c, d] = mask;
    let wide = u64::from_ne_bytes([a, b, c, d, a, b, c, d]);
    let (words, tail) = data.as_chunks_mut::<8>();
    for word in words {
        *word = (u64::from_ne_bytes(*word) ^ wide).to_ne_bytes();
    }
    // The tail starts at a multiple of 8, hence of 4, so the key restarts at offset 0.
    for (byte, key) in tail.iter_mut().zip(mask.iter().cycle()) {
        *byte ^= key;
    }
}

/// The frame types a server sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpCode {
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl OpCode {
    fn wire(self) -> WireOpCode {
        match self {
            OpCode::Text => WireOpCode::Data(Data::Text),
            OpCode::Binary => WireOpCode::Data(Data::Binary),
            OpCode::Close => WireOpCode::Control(Control::Close),
            OpCode::Ping => WireOpCode::Control(Control::Ping),
            OpCode::Pong => WireOpCode::Control(Control::Pong),
        }
    }

    fn is_control(self) -> bool {
        matches!(self, OpCode::Close | OpCode::Ping | OpCode::Pong)
    }
}

/// The size of a server frame carrying `payload_len` bytes, header included.
pub fn frame_len(payload_len: usize) -> usize {
    let header = match payload_len {
        0..=125 => 2,
        126..=0xFFFF => 4,
        _ => 10,
    };
    header + payload_len
}

/// Appends one complete, unmasked frame (FIN set) to `out`. A control frame's payload must be
/// at most 125 bytes; the caller guarantees it (a pong echoes a ping, which was checked).
pub fn encode_frame(opcode: OpCode, payload: &[u8], out: &mut Vec<u8>) {
    debug_assert!(!opcode.is_control() || payload.len() <= MAX_CONTROL_PAYLOAD);
    let header = FrameHeader {
        is_final: true,
        rsv1: false,
        rsv2: false,
        rsv3: false,
        opcode: opcode.wire(),
        mask: None,
    };
    out.reserve(frame_len(payload.len()));
    let written = header.format(payload.len() as u64, out);
    // Writing into a Vec cannot fail.
    debug_assert!(written.is_ok());
    out.extend_from_slice(payload);
}

/// Appends a close frame with this status code and reason. The reason is cut at a character
/// boundary to fit the 125-byte control frame limit.
pub fn encode_close(code: u16, reason: &str, out: &mut Vec<u8>) {
    let mut end = reason.len().min(MAX_CONTROL_PAYLOAD - 2);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = [0u8; MAX_CONTROL_PAYLOAD];
    payload[..2].copy_from_slice(&code.to_be_bytes());
    payload[2..2 + end].copy_from_slice(&reason.as_bytes()[..end]);
    encode_frame(OpCode::Close, &payload[..2 + end], out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    /// Builds a client frame: `first` is the FIN/RSV/opcode byte, the payload is masked.
    fn client_frame(first: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
        let mut out = vec![first];
        match payload.len() {
            n @ 0..=125 => out.push(0x80 | n as u8),
            n @ 126..=0xFFFF => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        let start = out.len();
        out.extend_from_slice(payload);
        for (i, byte) in out[start..].iter_mut().enumerate() {
            *byte ^= mask[i % 4];
        }
        out
    }

    fn decoder() -> Decoder {
        Decoder::new(DecoderLimits::default())
    }

    /// Feeds `stream` in chunks of the given sizes the way a connection would, returning every
    /// message, or the first error.
    fn decode_chunked(stream: &[u8], chunks: &[usize]) -> Result<Vec<Message>, WsError> {
        let mut dec = decoder();
        let mut buf = Vec::new();
        let mut messages = Vec::new();
        let mut fed = 0;
        let mut sizes = chunks.iter().copied().chain(std::iter::repeat(usize::MAX));
        while fed < stream.len() {
            let n = sizes.next().unwrap_or(usize::MAX).max(1).min(stream.len() - fed);
            buf.extend_from_slice(&stream[fed..fed + n]);
            fed += n;
            loop {
                let (message, consumed) = dec.decode(&buf)?;
                buf.drain(..consumed);
                match message {
                    Some(m) => messages.push(m),
                    None => break,
                }
            }
        }
        assert!(buf.is_empty() || dec.decode(&buf)?.0.is_none());
        Ok(messages)
    }

    fn request(headers: &[(&str, &str)]) -> Request {
        Request {
            method: Method::Get,
            path: "/socket.io/".into(),
            query: "EIO=4&transport=websocket".into(),
            headers: headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect(),
            body: Vec::new(),
            keep_alive: true,
        }
    }

    const UPGRADE: &[(&str, &str)] = &[
        ("host", "server.example.com"),
        ("upgrade", "websocket"),
        ("connection", "Upgrade"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("sec-websocket-version", "13"),
    ];

    #[test]
    fn handshake_answers_the_rfc_example_key() {
        let mut out = Vec::new();
        let extra = [("Access-Control-Allow-Origin", "*".to_owned())];
        write_handshake_response(&request(UPGRADE), &extra, &mut out).unwrap();
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nAccess-Control-Allow-Origin: *\r\n\r\n"
        );
    }

    #[test]
    fn handshake_refuses_invalid_requests() {
        let with = |name: &str, value: Option<&str>| {
            let mut headers: Vec<(&str, &str)> =
                UPGRADE.iter().copied().filter(|(n, _)| *n != name).collect();
            if let Some(v) = value {
                headers.push((name, v));
            }
            request(&headers)
        };
        let post = Request { method: Method::Post, ..request(UPGRADE) };
        let cases = [
            (post, HandshakeError::NotGet, 400),
            (with("upgrade", None), HandshakeError::NotUpgrade, 400),
            (with("upgrade", Some("h2c")), HandshakeError::NotUpgrade, 400),
            (with("connection", Some("keep-alive")), HandshakeError::NotUpgrade, 400),
            (with("sec-websocket-version", Some("8")), HandshakeError::UnsupportedVersion, 426),
            (with("sec-websocket-version", None), HandshakeError::UnsupportedVersion, 426),
            (with("sec-websocket-key", None), HandshakeError::BadKey, 400),
            (with("sec-websocket-key", Some("not base64 at all!!!!!!!")), HandshakeError::BadKey, 400),
            (with("sec-websocket-key", Some("dGhlIHNhbXBsZSBub25jZQ")), HandshakeError::BadKey, 400),
            // 24 characters, but they decode to 17 bytes.
            (with("sec-websocket-key", Some("dGhlIHNhbXBsZSBub25jZT0=")), HandshakeError::BadKey, 400),
        ];
        for (req, error, status) in cases {
            let mut out = Vec::new();
            assert_eq!(write_handshake_response(&req, &[], &mut out), Err(error));
            assert!(out.is_empty());
            assert_eq!(error.status(), status);
            assert_eq!(error.response().status, status);
            assert!(!error.to_string().is_empty());
        }
        assert_eq!(
            HandshakeError::UnsupportedVersion.response().header_value("sec-websocket-version"),
            Some("13")
        );
    }

    #[test]
    fn handshake_accepts_token_lists_and_mixed_case() {
        let req = request(&[
            ("upgrade", "WebSocket"),
            ("connection", "keep-alive, Upgrade"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("sec-websocket-version", "13"),
        ]);
        assert!(req.is_websocket_upgrade());
        assert!(write_handshake_response(&req, &[], &mut Vec::new()).is_ok());
    }

    #[test]
    fn rfc_masked_hello_decodes() {
        let frame = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
        assert_eq!(decoder().decode(&frame), Ok((Some(Message::Text("Hello".into())), 11)));
    }

    #[test]
    fn rfc_masked_pong_decodes() {
        let frame = [0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
        assert_eq!(decoder().decode(&frame), Ok((Some(Message::Pong(b"Hello".to_vec())), 11)));
    }

    #[test]
    fn rfc_unmasked_examples_encode_byte_for_byte() {
        let mut out = Vec::new();
        encode_frame(OpCode::Text, b"Hello", &mut out);
        assert_eq!(out, [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
        out.clear();
        encode_frame(OpCode::Ping, b"Hello", &mut out);
        assert_eq!(out, [0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
        out.clear();
        encode_frame(OpCode::Pong, b"", &mut out);
        assert_eq!(out, [0x8a, 0x00]);
    }

    #[test]
    fn binary_lengths_use_16_and_64_bit_forms() {
        for (len, header) in [
            (125usize, vec![0x82, 125]),
            (256, vec![0x82, 0x7e, 0x01, 0x00]),
            (65535, vec![0x82, 0x7e, 0xff, 0xff]),
            (65536, vec![0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0]),
        ] {
            let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut out = Vec::new();
            encode_frame(OpCode::Binary, &payload, &mut out);
            assert_eq!(&out[..header.len()], header.as_slice());
            assert_eq!(&out[header.len()..], payload.as_slice());
            assert_eq!(out.len(), frame_len(len));

            let frame = client_frame(0x82, &payload, MASK);
            let (message, consumed) = decoder().decode(&frame).unwrap();
            assert_eq!(message, Some(Message::Binary(Bytes::from(payload))));
            assert_eq!(consumed, frame.len());
        }
    }

    #[test]
    fn fragmented_hello_is_reassembled() {
        let mut stream = client_frame(0x01, b"Hel", MASK);
        let first_len = stream.len();
        stream.extend(client_frame(0x80, b"lo", [1, 2, 3, 4]));
        let mut dec = decoder();
        // Only the first fragment: stored and consumed, no message yet.
        assert_eq!(dec.decode(&stream[..first_len + 3]), Ok((None, first_len)));
        assert!(dec.in_message());
        assert_eq!(
            dec.decode(&stream[first_len..]),
            Ok((Some(Message::Text("Hello".into())), stream.len() - first_len))
        );
        assert!(!dec.in_message());
    }

    #[test]
    fn control_frames_interleave_with_fragments() {
        let mut stream = client_frame(0x02, b"ab", MASK);
        stream.extend(client_frame(0x89, b"ping", MASK));
        stream.extend(client_frame(0x00, b"cd", MASK));
        stream.extend(client_frame(0x8a, b"", MASK));
        stream.extend(client_frame(0x80, b"ef", MASK));
        assert_eq!(
            decode_chunked(&stream, &[]),
            Ok(vec![
                Message::Ping(b"ping".to_vec()),
                Message::Pong(Vec::new()),
                Message::Binary(Bytes::from_static(b"abcdef")),
            ])
        );
    }

    #[test]
    fn close_frames_carry_code_and_reason() {
        let cases: &[(&[u8], Message)] = &[
            (b"", Message::Close(None, String::new())),
            (b"\x03\xe8", Message::Close(Some(1000), String::new())),
            (b"\x03\xe9going away", Message::Close(Some(1001), "going away".into())),
            (b"\x0f\xa0app", Message::Close(Some(4000), "app".into())),
        ];
        for (payload, expected) in cases {
            let frame = client_frame(0x88, payload, MASK);
            assert_eq!(decoder().decode(&frame), Ok((Some(expected.clone()), frame.len())));
        }
    }

    #[test]
    fn encoded_close_round_trips_and_truncates_the_reason() {
        let mut out = Vec::new();
        encode_close(1000, "bye", &mut out);
        assert_eq!(out, [0x88, 0x05, 0x03, 0xe8, b'b', b'y', b'e']);

        out.clear();
        let long = "é".repeat(100); // 200 bytes
        encode_close(1001, &long, &mut out);
        assert_eq!(out[1] as usize, out.len() - 2);
        assert!(out.len() - 2 <= 125);
        // Re-mask the server frame as a client would send it, then decode it.
        let frame = client_frame(0x88, &out[2..], MASK);
        let Ok((Some(Message::Close(Some(1001), reason)), _)) = decoder().decode(&frame) else {
            panic!("close did not decode");
        };
        assert_eq!(reason, "é".repeat(61));
    }

    #[test]
    fn every_protocol_violation_is_an_error_with_its_close_code() {
        let small = DecoderLimits { max_message_bytes: 10, max_frame_bytes: 8 };
        let mut unmasked = vec![0x81, 0x02];
        unmasked.extend_from_slice(b"hi");
        let mut huge_length = vec![0x82, 0xff];
        huge_length.extend_from_slice(&[0x80, 0, 0, 0, 0, 0, 0, 0]);
        huge_length.extend_from_slice(&MASK);
        let mut too_long_announced = vec![0x82, 0xff];
        too_long_announced.extend_from_slice(&1_000_000u64.to_be_bytes());
        too_long_announced.extend_from_slice(&MASK);
        let two_fragments_too_big =
            [client_frame(0x02, b"123456", MASK), client_frame(0x80, b"78901", MASK)].concat();

        let cases: Vec<(Vec<u8>, WsError, u16)> = vec![
            (unmasked, WsError::Unmasked, 1002),
            (client_frame(0xc1, b"x", MASK), WsError::ReservedBits, 1002),
            (client_frame(0xa1, b"x", MASK), WsError::ReservedBits, 1002),
            (client_frame(0x91, b"x", MASK), WsError::ReservedBits, 1002),
            (client_frame(0x83, b"x", MASK), WsError::UnknownOpcode, 1002),
            (client_frame(0x8b, b"x", MASK), WsError::UnknownOpcode, 1002),
            (huge_length, WsError::BadLength, 1002),
            (client_frame(0x89, &[0; 126], MASK), WsError::ControlTooLong, 1002),
            (client_frame(0x09, b"", MASK), WsError::FragmentedControl, 1002),
            (client_frame(0x80, b"x", MASK), WsError::UnexpectedContinuation, 1002),
            (
                [client_frame(0x01, b"a", MASK), client_frame(0x81, b"b", MASK)].concat(),
                WsError::ExpectedContinuation,
                1002,
            ),
            (client_frame(0x82, b"123456789", MASK), WsError::MessageTooLarge, 1009),
            (too_long_announced, WsError::MessageTooLarge, 1009),
            (two_fragments_too_big, WsError::MessageTooLarge, 1009),
            (client_frame(0x81, b"\xff", MASK), WsError::InvalidUtf8, 1007),
            (
                [client_frame(0x01, b"\xe2\x82", MASK), client_frame(0x80, b"\xac\xff", MASK)].concat(),
                WsError::InvalidUtf8,
                1007,
            ),
            (client_frame(0x88, b"\x03\xe8\xff", MASK), WsError::InvalidUtf8, 1007),
            (client_frame(0x88, b"\x03", MASK), WsError::BadClosePayload, 1002),
            (client_frame(0x88, b"\x03\xed", MASK), WsError::BadClosePayload, 1002),
            (client_frame(0x88, b"\x03\xee", MASK), WsError::BadClosePayload, 1002),
            (client_frame(0x88, b"\x03\xe7", MASK), WsError::BadClosePayload, 1002),
            (client_frame(0x88, b"\x13\x88", MASK), WsError::BadClosePayload, 1002),
        ];
        for (stream, error, code) in cases {
            let mut dec = Decoder::new(small);
            let mut result = Ok((None, 0));
            let mut offset = 0;
            // Drain stored fragments until the error (or the end).
            while offset < stream.len() {
                result = dec.decode(&stream[offset..]);
                match result {
                    Ok((_, n)) if n > 0 => offset += n,
                    _ => break,
                }
            }
            assert_eq!(result, Err(error), "{stream:02x?}");
            assert_eq!(error.close_code(), code);
            assert!(!error.to_string().is_empty());
        }
    }

    #[test]
    fn oversized_frame_is_refused_from_its_header_alone() {
        let mut dec = Decoder::new(DecoderLimits { max_message_bytes: 100, max_frame_bytes: 100 });
        // Header announcing 64 KiB, with no payload bytes yet.
        let frame = client_frame(0x82, &[0; 65536], MASK);
        assert_eq!(dec.decode(&frame[..14]), Err(WsError::MessageTooLarge));
    }

    #[test]
    fn split_at_every_byte_gives_the_same_messages() {
        let mut stream = client_frame(0x81, "héllo".as_bytes(), MASK);
        stream.extend(client_frame(0x01, b"frag", MASK));
        stream.extend(client_frame(0x89, b"p", MASK));
        stream.extend(client_frame(0x80, b"ment", MASK));
        stream.extend(client_frame(0x82, &[7; 300], MASK));
        stream.extend(client_frame(0x88, b"\x03\xe8done", MASK));
        let whole = decode_chunked(&stream, &[]).unwrap();
        assert_eq!(whole.len(), 5);
        assert_eq!(whole[2], Message::Text("fragment".into()));
        for cut in 1..stream.len() {
            assert_eq!(decode_chunked(&stream, &[cut]).as_ref(), Ok(&whole), "cut at {cut}");
        }
        assert_eq!(decode_chunked(&stream, &[1; 4096]).as_ref(), Ok(&whole));
    }

    #[test]
    fn empty_or_short_input_needs_more_bytes() {
        let frame = client_frame(0x81, b"Hello", MASK);
        for cut in 0..frame.len() {
            assert_eq!(decoder().decode(&frame[..cut]), Ok((None, 0)));
        }
    }

    #[test]
    fn unmasking_matches_bytewise_xor_for_all_lengths() {
        for len in 0..40 {
            let original: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let mut data = original.clone();
            apply_mask(&mut data, MASK);
            let expected: Vec<u8> = original.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]).collect();
            assert_eq!(data, expected);
        }
    }

    fn arb_message() -> impl Strategy<Value = (u8, Vec<u8>)> {
        prop_oneof![
            ".{0,200}".prop_map(|s: String| (0x1, s.into_bytes())),
            proptest::collection::vec(any::<u8>(), 0..70_000).prop_map(|b| (0x2, b)),
            proptest::collection::vec(any::<u8>(), 0..126).prop_map(|b| (0x9, b)),
            proptest::collection::vec(any::<u8>(), 0..126).prop_map(|b| (0xa, b)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn masked_frames_round_trip(
            messages in proptest::collection::vec(arb_message(), 1..6),
            mask in any::<[u8; 4]>(),
            fragment_at in any::<prop::sample::Index>(),
            chunks in proptest::collection::vec(1usize..3000, 0..20),
        ) {
            let mut stream = Vec::new();
            let mut expected = Vec::new();
            for (opcode, payload) in &messages {
                let is_data = *opcode < 0x8;
                if is_data && payload.len() >= 2 {
                    // Send data messages as two fragments.
                    let at = fragment_at.index(payload.len());
                    stream.extend(client_frame(*opcode, &payload[..at], mask));
                    stream.extend(client_frame(0x80, &payload[at..], mask));
                } else {
                    stream.extend(client_frame(0x80 | opcode, payload, mask));
                }
                expected.push(match opcode {
                    0x1 => Message::Text(String::from_utf8(payload.clone()).unwrap()),
                    0x2 => Message::Binary(Bytes::from(payload.clone())),
                    0x9 => Message::Ping(payload.clone()),
                    _ => Message::Pong(payload.clone()),
                });
            }
            prop_assert_eq!(decode_chunked(&stream, &chunks), Ok(expected));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_chunked(&bytes, &[3]);
        }

        #[test]
        fn server_frames_decode_after_client_masking(
            payload in proptest::collection::vec(any::<u8>(), 0..70_000),
            mask in any::<[u8; 4]>(),
        ) {
            let mut out = Vec::new();
            encode_frame(OpCode::Binary, &payload, &mut out);
            let header_len = out.len() - payload.len();
            prop_assert_eq!(out.len(), frame_len(payload.len()));
            // Same header bytes with the mask bit set, the key inserted and the payload masked.
            let mut client = out[..header_len].to_vec();
            client[1] |= 0x80;
            client.extend_from_slice(&mask);
            let mut masked = payload.clone();
            apply_mask(&mut masked, mask);
            client.extend_from_slice(&masked);
            prop_assert_eq!(
                decoder().decode(&client),
                Ok((Some(Message::Binary(Bytes::from(payload))), client.len()))
            );
        }
    }
}
