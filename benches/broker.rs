//! Criterion benches of the broker's hot paths, on the sans-IO `Shard` (no sockets):
//! - `broadcast_room_10k`: one `bench-room` event fanned out to a room of 10,000 WebSocket
//!   members on one core, up to the connection commands the runtime would write;
//! - `cross_core_1k`: the same to 1,000 members on another core: encode, plan, the message
//!   between cores, delivery there;
//! - `session_flush`: 64 packets queued on a WebSocket session, drained into an output buffer
//!   (what the runtime does once per loop turn).
//!
//! Throughput is in deliveries (or packets) per second. The kernel's cost of writing is not
//! here: `tools/sockeye-bench` measures the whole server.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sockeye::api::ServerBuilder;
use sockeye::broker::{ConnCmd, ConnKey, RequestOutcome, SessionKey, Shard};
use sockeye::config::Config;
use sockeye::engineio::session::{Outgoing, Session, SessionConfig, Transmit, TransportKind, WsInput};
use sockeye::http::request::{Limits, Parse, parse_request};

const UPGRADE: &[u8] =
    b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

fn shard(core: u8, n_cores: usize) -> Shard {
    let mut b = ServerBuilder::new(Config::default());
    sockeye::apps::bench::install(&mut b);
    b.into_shard(core, n_cores, 7, Instant::now())
}

/// Open a WebSocket session, connect `/`, join `room`; returns its handles.
fn member(shard: &mut Shard, idx: u32, room: &str) -> (ConnKey, SessionKey) {
    let Ok(Parse::Complete(req, _)) = parse_request(UPGRADE, &Limits::default()) else { panic!("request") };
    let conn = ConnKey { idx, generation: 1 };
    let RequestOutcome::WebSocket { session, .. } = shard.handle_request(conn, &req, None) else {
        panic!("websocket")
    };
    shard.handle_ws(conn, session, WsInput::Text("40"));
    shard.handle_ws(conn, session, WsInput::Text(&format!("42[\"join\",\"{room}\"]")));
    (conn, session)
}

/// Let the shard finish and count the frames it asks to write.
fn frames(shard: &mut Shard) -> usize {
    shard.flush();
    shard.take_commands().iter().filter(|c| matches!(c, ConnCmd::Frame(..))).count()
}

fn broadcast_room_10k(c: &mut Criterion) {
    let mut s = shard(0, 1);
    let members: Vec<_> = (0..10_000).map(|i| member(&mut s, i, "r")).collect();
    frames(&mut s);
    let (conn, session) = members[0];
    let event =
        r#"42["bench-room","r",{"s":1,"t":123456789,"p":"0123456789012345678901234567890123456789"}]"#;
    let mut g = c.benchmark_group("broker");
    g.throughput(Throughput::Elements(10_000));
    g.measurement_time(Duration::from_secs(3)).sample_size(30);
    g.bench_function("broadcast_room_10k", |b| {
        b.iter(|| {
            s.handle_ws(conn, session, WsInput::Text(event));
            black_box(frames(&mut s))
        })
    });
    g.finish();
}

fn cross_core_1k(c: &mut Criterion) {
    let mut a = shard(0, 2);
    let mut b = shard(1, 2);
    let (conn, session) = member(&mut a, 0, "sender-only");
    for i in 0..1000 {
        member(&mut b, i, "r");
    }
    // Let the first core learn that the room lives on the second.
    frames(&mut b);
    for (_, m) in b.take_outbox() {
        a.handle_msg(m);
    }
    frames(&mut a);
    let event =
        r#"42["bench-room","r",{"s":1,"t":123456789,"p":"0123456789012345678901234567890123456789"}]"#;
    let mut g = c.benchmark_group("broker");
    g.throughput(Throughput::Elements(1000));
    g.measurement_time(Duration::from_secs(3)).sample_size(30);
    g.bench_function("cross_core_1k", |bch| {
        bch.iter(|| {
            a.handle_ws(conn, session, WsInput::Text(event));
            frames(&mut a);
            for (_, m) in a.take_outbox() {
                b.handle_msg(m);
            }
            black_box(frames(&mut b))
        })
    });
    g.finish();
}

fn session_flush(c: &mut Criterion) {
    let cfg = SessionConfig {
        ping_interval: Duration::from_secs(25),
        ping_timeout: Duration::from_secs(20),
        upgrade_timeout: Duration::from_secs(10),
        max_queue_bytes: 1 << 20,
    };
    let mut s = Session::new(TransportKind::WebSocket, cfg, Instant::now());
    let packet =
        Outgoing::text(r#"42["bench",{"s":1,"t":123456789,"p":"0123456789012345678901234567890123456789"}]"#);
    let mut out: Vec<u8> = Vec::new();
    let mut g = c.benchmark_group("broker");
    g.throughput(Throughput::Elements(64));
    g.measurement_time(Duration::from_secs(3)).sample_size(30);
    g.bench_function("session_flush_64", |b| {
        b.iter(|| {
            for _ in 0..64 {
                s.send(packet.clone());
            }
            out.clear();
            while let Some(t) = s.poll_transmit() {
                if let Transmit::Ws(o) = t {
                    out.extend_from_slice(o.ws_frame());
                }
            }
            black_box(out.len())
        })
    });
    g.finish();
}

criterion_group!(benches, broadcast_room_10k, cross_core_1k, session_flush);
criterion_main!(benches);
