//! Engine.IO v4 packets and the HTTP long-polling payload format.
//!
//! A packet is one type digit (`0` open .. `6` noop) followed by its data. Over WebSocket each
//! packet is one frame: text frames carry the digit, binary frames are always a `message` packet
//! with no digit. Over long-polling several packets are joined by the record separator `\x1e`,
//! and a binary message is written as `b` followed by its base64 text.
//!
//! No IO, no clock. Decoding never panics on peer input and allocates at most the size of the
//! input it was given.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use std::fmt;

/// The record separator that joins packets in a long-polling payload.
pub const SEPARATOR: u8 = 0x1e;

/// The data of a `message` packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Data {
    Text(String),
    Binary(Bytes),
}

/// One Engine.IO packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// `0` + the JSON handshake (sent by the server only).
    Open(String),
    /// `1`: either side closes the session.
    Close,
    /// `2`, optionally with data (`2probe` during an upgrade).
    Ping(String),
    /// `3`, optionally with data (`3probe` answers `2probe`).
    Pong(String),
    /// `4` + text, or a binary frame / `b<base64>` polling record.
    Message(Data),
    /// `5`: the client switches to the probed WebSocket.
    Upgrade,
    /// `6`: nothing; used to end a pending poll during an upgrade.
    Noop,
}

/// Why bytes are not a valid Engine.IO packet. All are the peer's fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// A zero-length packet.
    Empty,
    /// The first character is not a known type digit.
    UnknownType(u8),
    /// A `b` polling record whose base64 is invalid.
    InvalidBase64,
    /// Polling payloads and text frames must be UTF-8.
    InvalidUtf8,
    /// A packet type that a client must never send (open).
    UnexpectedType(u8),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Empty => f.write_str("empty packet"),
            DecodeError::UnknownType(b) => write!(f, "unknown packet type byte 0x{b:02x}"),
            DecodeError::InvalidBase64 => f.write_str("invalid base64 in binary record"),
            DecodeError::InvalidUtf8 => f.write_str("payload is not UTF-8"),
            DecodeError::UnexpectedType(b) => write!(f, "packet type {} not allowed here", *b as char),
        }
    }
}

impl std::error::Error for DecodeError {}

impl Packet {
    /// The type digit of this packet as an ASCII byte.
    pub fn type_byte(&self) -> u8 {
        match self {
            Packet::Open(_) => b'0',
            Packet::Close => b'1',
            Packet::Ping(_) => b'2',
            Packet::Pong(_) => b'3',
            Packet::Message(_) => b'4',
            Packet::Upgrade => b'5',
            Packet::Noop => b'6',
        }
    }

    /// Decode a text frame (WebSocket) or one text record (polling).
    pub fn decode_text(s: &str) -> Result<Packet, DecodeError> {
        let bytes = s.as_bytes();
        let (&t, _) = bytes.split_first().ok_or(DecodeError::Empty)?;
        // After an ASCII type digit index 1 is a char boundary; a non-ASCII first character
        // (no boundary there) is refused below as an unknown type, so `rest` is then unused.
        let rest = s.get(1..).unwrap_or_default();
        Ok(match t {
            b'0' => Packet::Open(rest.to_owned()),
            b'1' => Packet::Close,
            b'2' => Packet::Ping(rest.to_owned()),
            b'3' => Packet::Pong(rest.to_owned()),
            b'4' => Packet::Message(Data::Text(rest.to_owned())),
            b'5' => Packet::Upgrade,
            b'6' => Packet::Noop,
            other => return Err(DecodeError::UnknownType(other)),
        })
    }

    /// Encode as the text of a WebSocket text frame or a polling record. Binary messages are
    /// written as `b<base64>`, the polling form; over WebSocket send them as binary frames.
    pub fn encode_text(&self, out: &mut String) {
        match self {
            Packet::Message(Data::Binary(b)) => {
                out.push('b');
                BASE64.encode_string(b, out);
            }
            Packet::Message(Data::Text(t)) => {
                out.push('4');
                out.push_str(t);
            }
            Packet::Open(d) | Packet::Ping(d) | Packet::Pong(d) => {
                out.push(self.type_byte() as char);
                out.push_str(d);
            }
            Packet::Close | Packet::Upgrade | Packet::Noop => out.push(self.type_byte() as char),
        }
    }
}

/// Decode one record of a polling payload (text packet or `b` + base64).
pub fn decode_record(record: &[u8]) -> Result<Packet, DecodeError> {
    match record.split_first() {
        None => Err(DecodeError::Empty),
        Some((b'b', b64)) => BASE64
            .decode(b64)
            .map(|v| Packet::Message(Data::Binary(Bytes::from(v))))
            .map_err(|_| DecodeError::InvalidBase64),
        Some(_) => {
            let s = std::str::from_utf8(record).map_err(|_| DecodeError::InvalidUtf8)?;
            Packet::decode_text(s)
        }
    }
}

/// Iterate over the packets of a polling POST body. Each item is decoded lazily; the caller
/// stops at the first error (the whole payload is then refused).
pub fn decode_payload(body: &[u8]) -> impl Iterator<Item = Result<Packet, DecodeError>> + '_ {
    body.split(|&b| b == SEPARATOR).map(decode_record)
}

/// Append one packet to a polling payload being built in `out`, adding the separator when
/// `out` already holds a packet.
pub fn append_record(out: &mut Vec<u8>, packet_text: &[u8]) {
    if !out.is_empty() {
        out.push(SEPARATOR);
    }
    out.extend_from_slice(packet_text);
}

/// Append a binary message as a `b<base64>` polling record.
pub fn append_binary_record(out: &mut Vec<u8>, data: &[u8]) {
    if !out.is_empty() {
        out.push(SEPARATOR);
    }
    out.push(b'b');
    let start = out.len();
    out.resize(start + base64::encoded_len(data.len(), true).unwrap_or(0), 0);
    let n = BASE64.encode_slice(data, &mut out[start..]).unwrap_or(0);
    out.truncate(start + n);
}

/// The JSON of the open packet, with exactly the keys and order of the reference server.
pub fn open_json(
    sid: &str,
    upgrades: bool,
    ping_interval_ms: u64,
    ping_timeout_ms: u64,
    max_payload: u64,
) -> String {
    let up = if upgrades { "[\"websocket\"]" } else { "[]" };
    // The sid alphabet is base64url, so it needs no JSON escaping.
    format!(
        "{{\"sid\":\"{sid}\",\"upgrades\":{up},\"pingInterval\":{ping_interval_ms},\"pingTimeout\":{ping_timeout_ms},\"maxPayload\":{max_payload}}}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn enc(p: &Packet) -> String {
        let mut s = String::new();
        p.encode_text(&mut s);
        s
    }

    #[test]
    fn spec_vectors_decode_and_encode() {
        // Examples from the Engine.IO v4 protocol description.
        let table: &[(&str, Packet)] = &[
            ("1", Packet::Close),
            ("2", Packet::Ping(String::new())),
            ("3", Packet::Pong(String::new())),
            ("2probe", Packet::Ping("probe".into())),
            ("3probe", Packet::Pong("probe".into())),
            ("4hello", Packet::Message(Data::Text("hello".into()))),
            ("4", Packet::Message(Data::Text(String::new()))),
            ("5", Packet::Upgrade),
            ("6", Packet::Noop),
            ("0{\"sid\":\"x\"}", Packet::Open("{\"sid\":\"x\"}".into())),
        ];
        for (text, packet) in table {
            assert_eq!(&Packet::decode_text(text).unwrap(), packet, "{text}");
            assert_eq!(&enc(packet), text);
        }
    }

    #[test]
    fn polling_payload_with_text_and_binary_records() {
        // The protocol's example: "4hello", a binary <01 02 03 04>, then "4€".
        let body = "4hello\x1ebAQIDBA==\x1e4€".as_bytes();
        let got: Vec<_> = decode_payload(body).collect::<Result<_, _>>().unwrap();
        assert_eq!(
            got,
            vec![
                Packet::Message(Data::Text("hello".into())),
                Packet::Message(Data::Binary(Bytes::from_static(&[1, 2, 3, 4]))),
                Packet::Message(Data::Text("€".into())),
            ]
        );
        let mut out = Vec::new();
        append_record(&mut out, b"4hello");
        append_binary_record(&mut out, &[1, 2, 3, 4]);
        append_record(&mut out, "4€".as_bytes());
        assert_eq!(out, body);
    }

    #[test]
    fn bad_records_are_errors() {
        assert_eq!(decode_record(b""), Err(DecodeError::Empty));
        assert_eq!(decode_record(b"9x"), Err(DecodeError::UnknownType(b'9')));
        assert_eq!(decode_record(b"b!!!"), Err(DecodeError::InvalidBase64));
        assert_eq!(decode_record(&[b'4', 0xff]), Err(DecodeError::InvalidUtf8));
        let errs: Vec<_> = decode_payload(b"4a\x1e\x1e4b").collect();
        assert_eq!(errs[1], Err(DecodeError::Empty));
    }

    #[test]
    fn non_ascii_first_character_is_an_unknown_type() {
        // Found by fuzz/eio_packet: slicing after a multi-byte first character panicked.
        assert_eq!(
            Packet::decode_text("€4"),
            Err(DecodeError::UnknownType(0xe2))
        );
        assert_eq!(
            decode_record("\u{75e}".as_bytes()),
            Err(DecodeError::UnknownType(0xdd))
        );
        let errs: Vec<_> = decode_payload("4a\x1e€".as_bytes()).collect();
        assert_eq!(errs[1], Err(DecodeError::UnknownType(0xe2)));
    }

    #[test]
    fn open_json_has_reference_keys_in_order() {
        assert_eq!(
            open_json("abc", true, 25000, 20000, 1_000_000),
            r#"{"sid":"abc","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#
        );
        assert!(open_json("abc", false, 1, 2, 3).contains(r#""upgrades":[]"#));
    }

    proptest! {
        #[test]
        fn payload_round_trips(msgs in proptest::collection::vec(
            prop_oneof![
                any::<String>().prop_map(|s| Packet::Message(Data::Text(s.replace('\x1e', "")))),
                proptest::collection::vec(any::<u8>(), 0..64).prop_map(|v| Packet::Message(Data::Binary(v.into()))),
                Just(Packet::Ping(String::new())),
                Just(Packet::Noop),
            ], 1..8)) {
            let mut out = Vec::new();
            for m in &msgs {
                match m {
                    Packet::Message(Data::Binary(b)) => append_binary_record(&mut out, b),
                    other => { let mut s = String::new(); other.encode_text(&mut s); append_record(&mut out, s.as_bytes()); }
                }
            }
            let back: Vec<_> = decode_payload(&out).collect::<Result<_, _>>().unwrap();
            prop_assert_eq!(back, msgs);
        }

        #[test]
        fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..256)) {
            for r in decode_payload(&body) { let _ = r; }
        }
    }
}
