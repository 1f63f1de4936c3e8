//! An Engine.IO long-polling POST body (`decode_payload`), consumed to the end.
//!
//! Checks: no panic; one item per separator-delimited record; a fully valid payload re-encoded
//! with `append_record` / `append_binary_record` decodes to the same packets.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sockeye::engineio::packet::{
    Data, Packet, SEPARATOR, append_binary_record, append_record, decode_payload, decode_record,
};

fuzz_target!(|data: &[u8]| {
    let items: Vec<_> = decode_payload(data).collect();
    let records = data.iter().filter(|&&b| b == SEPARATOR).count() + 1;
    assert_eq!(items.len(), records, "one item per record");
    for (item, record) in items.iter().zip(data.split(|&b| b == SEPARATOR)) {
        assert_eq!(
            item,
            &decode_record(record),
            "payload item differs from its record"
        );
    }

    let Ok(packets) = items.into_iter().collect::<Result<Vec<_>, _>>() else {
        return;
    };
    let mut out = Vec::new();
    let mut text = String::new();
    for p in &packets {
        match p {
            Packet::Message(Data::Binary(b)) => append_binary_record(&mut out, b),
            other => {
                text.clear();
                other.encode_text(&mut text);
                append_record(&mut out, text.as_bytes());
            }
        }
    }
    let back: Vec<_> = decode_payload(&out)
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| {
            panic!("re-encoded payload {out:?} does not decode: {e}");
        });
    assert_eq!(back, packets);
});
