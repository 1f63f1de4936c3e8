//! One Engine.IO packet: a polling record (`decode_record`) and, when the bytes are UTF-8, a
//! WebSocket text frame (`Packet::decode_text`).
//!
//! Checks: no panic; both decoders agree on UTF-8 input that is not a `b` record; whatever
//! decodes re-encodes to text that decodes to the same packet, both alone and as the single
//! record of a polling payload.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sockeye::engineio::packet::{
    Data, Packet, SEPARATOR, append_binary_record, append_record, decode_payload, decode_record,
};

fuzz_target!(|data: &[u8]| {
    let record = decode_record(data);
    if let Ok(p) = &record {
        check_round_trip(p);
    }

    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let frame = Packet::decode_text(text);
    if data.first() != Some(&b'b') {
        // A record that is not base64 is exactly a text frame.
        assert_eq!(record, frame, "record and text frame decoders disagree");
    }
    if let Ok(p) = &frame {
        assert!(
            !matches!(p, Packet::Message(Data::Binary(_))),
            "a text frame decoded to binary data"
        );
        check_round_trip(p);
    }
});

fn check_round_trip(p: &Packet) {
    let mut text = String::new();
    p.encode_text(&mut text);
    assert_eq!(
        decode_record(text.as_bytes()).as_ref(),
        Ok(p),
        "record {text:?}"
    );
    if !matches!(p, Packet::Message(Data::Binary(_))) {
        assert_eq!(Packet::decode_text(&text).as_ref(), Ok(p), "frame {text:?}");
    }

    // Alone in a polling payload, built the way the session builds one. A text record holding
    // the separator cannot travel in a payload, so it is left out.
    let mut payload = Vec::new();
    match p {
        Packet::Message(Data::Binary(b)) => append_binary_record(&mut payload, b),
        _ if text.as_bytes().contains(&SEPARATOR) => return,
        _ => append_record(&mut payload, text.as_bytes()),
    }
    let back: Vec<_> = decode_payload(&payload).collect();
    assert_eq!(back, [Ok(p.clone())], "payload {payload:?}");
}
