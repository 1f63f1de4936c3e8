//! A stream of Engine.IO messages fed to one Socket.IO `Decoder` with small limits.
//!
//! Input format, repeated to the end: one header byte, then the message. The header's top bit
//! says binary (attachment) or text; its low 7 bits are the length, except that 127 means
//! "everything that is left". Text that is not UTF-8 is decoded lossily, so it still reaches the
//! decoder.
//!
//! Checks, besides no panic:
//! - the decoder's state after each call matches the documented contract (waiting only after
//!   `Ok(None)` from a text message; empty again after any error);
//! - every complete packet holds the documented invariants (namespace shape, attachment count);
//! - `encode` of a complete packet decodes, with its attachments, to the same packet, and
//!   encoding that again gives the same text;
//! - `event()` / `ack_args()` succeed on packets of their kind and refuse other kinds, and the
//!   fast `encode_event` of an event's name and arguments decodes to the same name and arguments.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sockeye::socketio::packet::{
    Decoder, DecoderLimits, Packet, PacketError, PacketKind, RESERVED_EVENTS, encode, encode_event,
};
use sockeye_fuzz::Input;

fn limits() -> DecoderLimits {
    DecoderLimits {
        max_attachments: 4,
        max_ns_len: 16,
        max_attachment_bytes: 256,
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let mut decoder = Decoder::new(limits());
    while !input.is_empty() {
        let header = input.byte();
        let len = usize::from(header & 0x7f);
        let body = if len == 0x7f {
            input.rest()
        } else {
            input.take(len)
        };
        let awaiting = decoder.is_awaiting_attachments();
        let result = if header & 0x80 != 0 {
            let r = decoder.feed_binary(Bytes::copy_from_slice(body));
            if !awaiting {
                assert_eq!(r, Err(PacketError::UnexpectedBinary));
            }
            r
        } else {
            let text = String::from_utf8_lossy(body);
            let r = decoder.feed_text(&text);
            if awaiting {
                assert_eq!(r, Err(PacketError::UnexpectedText));
            }
            r
        };
        match result {
            Ok(Some(packet)) => {
                assert!(!decoder.is_awaiting_attachments());
                check_packet(&packet);
            }
            Ok(None) => assert!(decoder.is_awaiting_attachments()),
            Err(_) => assert!(
                !decoder.is_awaiting_attachments(),
                "decoder not empty after an error"
            ),
        }
    }
});

/// Decodes `text` and its attachments with a fresh decoder; the last call must complete it.
fn decode_whole(text: &str, attachments: &[Bytes]) -> Packet {
    let mut decoder = Decoder::new(limits());
    let mut result = decoder.feed_text(text);
    for a in attachments {
        assert_eq!(
            result,
            Ok(None),
            "completed before all attachments of {text:?}"
        );
        result = decoder.feed_binary(a.clone());
    }
    match result {
        Ok(Some(p)) => p,
        other => panic!("{text:?} with {} attachments: {other:?}", attachments.len()),
    }
}

fn check_packet(p: &Packet) {
    assert!(
        p.ns.starts_with('/') && !p.ns.contains(','),
        "namespace {:?}",
        p.ns
    );
    assert!(!p.ns.chars().any(char::is_control), "namespace {:?}", p.ns);
    assert!(p.ns.len() <= limits().max_ns_len);
    if !p.kind.is_binary() {
        assert!(p.attachments.is_empty());
    }
    assert!(p.attachments.len() <= limits().max_attachments);

    let mut text = String::new();
    encode(p, &mut text);
    let back = decode_whole(&text, &p.attachments);
    assert_eq!(&back, p, "round trip through {text:?}");
    let mut again = String::new();
    encode(&back, &mut again);
    assert_eq!(again, text, "encoding is not stable");

    match p.kind {
        PacketKind::Event | PacketKind::BinaryEvent => {
            let (name, args) = p
                .event()
                .unwrap_or_else(|e| panic!("decoded event {text:?} has no name: {e}"));
            assert!(
                !RESERVED_EVENTS.contains(&name.as_ref()),
                "reserved {name:?}"
            );
            assert_eq!(p.ack_args().err(), Some(PacketError::WrongKind));

            let args: Vec<&str> = args.iter().map(|a| a.get()).collect();
            let mut fast = String::new();
            encode_event(
                &p.ns,
                p.id,
                &name,
                &args.join(","),
                p.attachments.len(),
                &mut fast,
            );
            let decoded = decode_whole(&fast, &p.attachments);
            let (name2, args2) = decoded
                .event()
                .unwrap_or_else(|e| panic!("encode_event wrote {fast:?}: {e}"));
            let args2: Vec<&str> = args2.iter().map(|a| a.get()).collect();
            assert_eq!((name2, args2), (name, args), "encode_event wrote {fast:?}");
            assert_eq!((&decoded.ns, decoded.id), (&p.ns, p.id));
        }
        PacketKind::Ack | PacketKind::BinaryAck => {
            p.ack_args()
                .unwrap_or_else(|e| panic!("decoded ack {text:?} has no arguments: {e}"));
            assert_eq!(p.event().err(), Some(PacketError::WrongKind));
        }
        _ => {
            assert_eq!(p.event().err(), Some(PacketError::WrongKind));
            assert_eq!(p.ack_args().err(), Some(PacketError::WrongKind));
        }
    }
}
