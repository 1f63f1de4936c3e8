//! Client WebSocket frames decoded with small limits, following `Decoder::decode`'s calling
//! contract (drop what it consumed, call again until it returns no message).
//!
//! Input format: one byte `k`, then `k % 8` chunk-size bytes (each gives a read of 1 to 256
//! bytes, used in a cycle), then the byte stream of the connection. The stream is decoded twice:
//! all at once, and arriving in reads of those sizes.
//!
//! Checks, besides no panic:
//! - `consumed` never exceeds the buffer;
//! - both runs give the same messages, the same error (if any) and the same unconsumed tail:
//!   how the bytes were split into reads does not matter;
//! - every message re-encoded with `encode_frame` / `encode_close`, then masked as a client
//!   would, decodes to the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sockeye::http::websocket::{
    Decoder, DecoderLimits, Message, OpCode, WsError, apply_mask, encode_close, encode_frame,
};
use sockeye_fuzz::Input;

const LIMITS: DecoderLimits = DecoderLimits {
    max_message_bytes: 1024,
    max_frame_bytes: 512,
};

/// What one run saw: the messages in order, and how it ended.
#[derive(Debug, PartialEq)]
struct Run {
    messages: Vec<Message>,
    error: Option<WsError>,
    leftover: usize,
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let n_sizes = usize::from(input.byte() % 8);
    let sizes: Vec<usize> = input
        .take(n_sizes)
        .iter()
        .map(|&b| usize::from(b) + 1)
        .collect();
    let stream = input.rest();

    let whole = run(stream, &[stream.len().max(1)]);
    if !sizes.is_empty() {
        let chunked = run(stream, &sizes);
        assert_eq!(chunked, whole, "splitting the stream changed the outcome");
    }
    for m in &whole.messages {
        check_round_trip(m);
    }
});

/// Feeds `stream` in reads of `sizes` (cycled), draining messages after each read.
fn run(stream: &[u8], sizes: &[usize]) -> Run {
    let mut decoder = Decoder::new(LIMITS);
    let mut buf = Vec::new();
    let mut messages = Vec::new();
    let mut rest = stream;
    for &size in sizes.iter().cycle() {
        let (read, tail) = rest.split_at(size.min(rest.len()));
        rest = tail;
        buf.extend_from_slice(read);
        loop {
            match decoder.decode(&buf) {
                Ok((message, consumed)) => {
                    assert!(
                        consumed <= buf.len(),
                        "consumed {consumed} of {}",
                        buf.len()
                    );
                    buf.drain(..consumed);
                    match message {
                        Some(m) => messages.push(m),
                        None => break,
                    }
                }
                Err(e) => {
                    assert!(matches!(e.close_code(), 1002 | 1007 | 1009));
                    return Run {
                        messages,
                        error: Some(e),
                        leftover: 0,
                    };
                }
            }
        }
        if rest.is_empty() {
            break;
        }
    }
    Run {
        messages,
        error: None,
        leftover: buf.len(),
    }
}

/// Turns a server frame into the client frame with the same content: sets the mask bit, inserts
/// the key after the length, and masks the payload.
fn mask_frame(frame: &[u8], key: [u8; 4]) -> Vec<u8> {
    let header_len = match frame[1] & 0x7f {
        126 => 4,
        127 => 10,
        _ => 2,
    };
    let mut out = frame[..header_len].to_vec();
    out[1] |= 0x80;
    out.extend_from_slice(&key);
    let start = out.len();
    out.extend_from_slice(&frame[header_len..]);
    apply_mask(&mut out[start..], key);
    out
}

fn check_round_trip(m: &Message) {
    let mut frame = Vec::new();
    match m {
        Message::Text(t) => encode_frame(OpCode::Text, t.as_bytes(), &mut frame),
        Message::Binary(b) => encode_frame(OpCode::Binary, b, &mut frame),
        Message::Ping(p) => encode_frame(OpCode::Ping, p, &mut frame),
        Message::Pong(p) => encode_frame(OpCode::Pong, p, &mut frame),
        Message::Close(None, _) => encode_frame(OpCode::Close, &[], &mut frame),
        Message::Close(Some(code), reason) => encode_close(*code, reason, &mut frame),
    }
    let client = mask_frame(&frame, [0x37, 0xfa, 0x21, 0x3d]);
    // A reassembled message may be larger than one frame under LIMITS; it is sent whole here.
    let mut decoder = Decoder::new(DecoderLimits::default());
    let (back, consumed) = decoder
        .decode(&client)
        .unwrap_or_else(|e| panic!("re-encoded {m:?} does not decode: {e}"));
    assert_eq!(consumed, client.len());
    assert_eq!(back.as_ref(), Some(m), "re-encoded as {client:?}");
}
