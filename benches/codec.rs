//! Micro-benchmarks of the codecs on the hot path, with throughput in bytes of wire data.
//!
//! Groups: `eio` (long-polling payloads), `sio` (Socket.IO packets, text and binary),
//! `ws` (WebSocket frames) and `http` (request heads). Every input is checked once before it is
//! measured, so a bench never times an error path by accident.
//!
//! Run with `cargo bench --bench codec`; one group with `cargo bench --bench codec -- sio/`.

use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sockeye::engineio::packet::{
    Data, Packet as EioPacket, append_binary_record, append_record, decode_payload,
};
use sockeye::http::websocket::{self, Message, OpCode, apply_mask, encode_frame};
use sockeye::http::{Limits, Parse, parse_request};
use sockeye::socketio::packet::{Decoder, DecoderLimits, encode_event};

/// The arguments of the typical chat event, as compact JSON without the array brackets.
const CHAT_ARGS: &str = r#"{"user":"alice","text":"hello world","roomId":"general"}"#;
const CHAT_EVENT: &str = r#"2["chat message",{"user":"alice","text":"hello world","roomId":"general"}]"#;
const CHAT_EVENT_ACK: &str =
    r#"217["chat message",{"user":"alice","text":"hello world","roomId":"general"}]"#;
const BINARY_EVENT: &str = r#"51-["upload",{"name":"a.bin","data":{"_placeholder":true,"num":0}}]"#;

/// A polling payload of 20 packets as a busy chat room produces it: 18 chat events, a ping and
/// one small binary attachment.
fn polling_packets() -> Vec<EioPacket> {
    let mut packets: Vec<EioPacket> = (0..18)
        .map(|i| {
            EioPacket::Message(Data::Text(format!(
                r#"2["chat message",{{"user":"user{i}","text":"hello world {i}","roomId":"general"}}]"#
            )))
        })
        .collect();
    packets.insert(9, EioPacket::Ping(String::new()));
    packets.push(EioPacket::Message(Data::Binary(Bytes::from(vec![7u8; 64]))));
    assert_eq!(packets.len(), 20);
    packets
}

fn encode_payload(packets: &[EioPacket], text: &mut String, out: &mut Vec<u8>) {
    for p in packets {
        match p {
            EioPacket::Message(Data::Binary(b)) => append_binary_record(out, b),
            other => {
                text.clear();
                other.encode_text(text);
                append_record(out, text.as_bytes());
            }
        }
    }
}

fn eio(c: &mut Criterion) {
    let packets = polling_packets();
    let mut payload = Vec::new();
    encode_payload(&packets, &mut String::new(), &mut payload);
    let decoded: Vec<_> = decode_payload(&payload).collect::<Result<_, _>>().unwrap();
    assert_eq!(decoded, packets);

    let mut g = c.benchmark_group("eio");
    g.throughput(Throughput::Bytes(payload.len() as u64));
    g.bench_function("decode_payload_20", |b| {
        b.iter(|| {
            for p in decode_payload(black_box(&payload)) {
                black_box(p.unwrap());
            }
        })
    });
    let mut text = String::new();
    let mut out = Vec::with_capacity(payload.len());
    g.bench_function("encode_payload_20", |b| {
        b.iter(|| {
            out.clear();
            encode_payload(black_box(&packets), &mut text, &mut out);
            black_box(&out);
        })
    });
    g.finish();
}

fn sio(c: &mut Criterion) {
    let mut g = c.benchmark_group("sio");
    let mut decoder = Decoder::new(DecoderLimits::default());

    for (name, msg) in [("feed_text_event", CHAT_EVENT), ("feed_text_event_ack", CHAT_EVENT_ACK)] {
        let p = decoder.feed_text(msg).unwrap().unwrap();
        assert_eq!(p.event().unwrap().0, "chat message");
        g.throughput(Throughput::Bytes(msg.len() as u64));
        g.bench_function(name, |b| b.iter(|| black_box(decoder.feed_text(black_box(msg)).unwrap())));
    }

    let mut out = String::new();
    for (name, id, wire) in
        [("encode_event", None, CHAT_EVENT), ("encode_event_ack", Some(17), CHAT_EVENT_ACK)]
    {
        out.clear();
        encode_event("/", id, "chat message", CHAT_ARGS, 0, &mut out);
        assert_eq!(out, wire);
        g.throughput(Throughput::Bytes(wire.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                encode_event("/", id, black_box("chat message"), black_box(CHAT_ARGS), 0, &mut out);
                black_box(&out);
            })
        });
    }

    // A binary event: its text, then one 1 KiB attachment as a separate binary message.
    let attachment = Bytes::from((0..1024).map(|i| i as u8).collect::<Vec<u8>>());
    assert!(decoder.feed_text(BINARY_EVENT).unwrap().is_none());
    let p = decoder.feed_binary(attachment.clone()).unwrap().unwrap();
    assert_eq!(p.attachments, std::slice::from_ref(&attachment));
    g.throughput(Throughput::Bytes((BINARY_EVENT.len() + attachment.len()) as u64));
    g.bench_function("feed_binary_event_1k", |b| {
        b.iter(|| {
            let waiting = decoder.feed_text(black_box(BINARY_EVENT)).unwrap();
            debug_assert!(waiting.is_none());
            black_box(decoder.feed_binary(attachment.clone()).unwrap())
        })
    });
    g.finish();
}

/// A masked client text frame carrying `len` bytes of ASCII.
fn client_text_frame(len: usize) -> (Vec<u8>, String) {
    let text: String = (0..len).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    let mut frame = Vec::new();
    encode_frame(OpCode::Text, text.as_bytes(), &mut frame);
    let header_len = frame.len() - len;
    let key = [0x37, 0xfa, 0x21, 0x3d];
    let mut client = frame[..header_len].to_vec();
    client[1] |= 0x80;
    client.extend_from_slice(&key);
    let start = client.len();
    client.extend_from_slice(text.as_bytes());
    apply_mask(&mut client[start..], key);
    (client, text)
}

fn ws(c: &mut Criterion) {
    let mut g = c.benchmark_group("ws");
    let mut decoder = websocket::Decoder::new(websocket::DecoderLimits::default());
    for (name, len) in [("decode_masked_text_100", 100), ("decode_masked_text_16k", 16 * 1024)] {
        let (frame, text) = client_text_frame(len);
        assert_eq!(decoder.decode(&frame).unwrap(), (Some(Message::Text(text)), frame.len()));
        g.throughput(Throughput::Bytes(frame.len() as u64));
        g.bench_function(name, |b| b.iter(|| black_box(decoder.decode(black_box(&frame)).unwrap())));
    }

    let mut out = Vec::new();
    for (name, len) in [("encode_text_100", 100), ("encode_text_16k", 16 * 1024)] {
        let payload = vec![b'x'; len];
        g.throughput(Throughput::Bytes(websocket::frame_len(len) as u64));
        g.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                encode_frame(OpCode::Text, black_box(&payload), &mut out);
                black_box(&out);
            })
        });
    }
    g.finish();
}

/// A long-polling GET as a browser's socket.io-client sends it.
const POLLING_GET: &[u8] = b"GET /socket.io/?EIO=4&transport=polling&t=OsTb3Jx&sid=lv_VI97HAXpY6yYWAAAC HTTP/1.1\r\n\
Host: chat.example.com\r\n\
Connection: keep-alive\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36\r\n\
Accept: */*\r\n\
Origin: https://chat.example.com\r\n\
Referer: https://chat.example.com/\r\n\
Accept-Encoding: gzip, deflate, br\r\n\
Accept-Language: en-US,en;q=0.9\r\n\
Cookie: io=lv_VI97HAXpY6yYWAAAC\r\n\r\n";

fn polling_post() -> Vec<u8> {
    let body = format!("4{CHAT_EVENT}");
    let mut req = format!(
        "POST /socket.io/?EIO=4&transport=polling&t=OsTb3K1&sid=lv_VI97HAXpY6yYWAAAC HTTP/1.1\r\n\
Host: chat.example.com\r\n\
Connection: keep-alive\r\n\
Content-Length: {}\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36\r\n\
Content-Type: text/plain;charset=UTF-8\r\n\
Accept: */*\r\n\
Origin: https://chat.example.com\r\n\
Referer: https://chat.example.com/\r\n\
Accept-Encoding: gzip, deflate, br\r\n\
Accept-Language: en-US,en;q=0.9\r\n\
Cookie: io=lv_VI97HAXpY6yYWAAAC\r\n\r\n",
        body.len()
    );
    req.push_str(&body);
    req.into_bytes()
}

fn http(c: &mut Criterion) {
    let limits = Limits::default();
    let post = polling_post();
    let mut g = c.benchmark_group("http");
    for (name, req) in [("parse_polling_get", POLLING_GET), ("parse_polling_post", &post[..])] {
        match parse_request(req, &limits) {
            Ok(Parse::Complete(r, used)) => {
                assert_eq!(used, req.len());
                assert_eq!(r.query_param("transport").as_deref(), Some("polling"));
            }
            other => panic!("{name}: {other:?}"),
        }
        g.throughput(Throughput::Bytes(req.len() as u64));
        g.bench_function(name, |b| b.iter(|| black_box(parse_request(black_box(req), &limits).unwrap())));
    }
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30)
}

criterion_group! {
    name = codec;
    config = config();
    targets = eio, sio, ws, http
}
criterion_main!(codec);
