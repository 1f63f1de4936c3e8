//! The bench contract shared by every server in `tools/bench/` (see BENCHMARKS.md):
//! - `bench` (payload): broadcast `bench` with the same payload to every socket, sender included;
//! - `echo` (payload) with an ack: acknowledged with the same payload;
//! - `join` (room) with an ack: join the room, ack `true`;
//! - `bench-room` (room, payload): emit `bench-room` with the payload to the room, sender included.
//!
//! Arguments are relayed as raw JSON: sockeye never parses what it only forwards.

use crate::api::{Event, ServerBuilder, Socket};

pub fn install(server: &mut ServerBuilder) {
    server.namespace("/", |ns| {
        ns.on("bench", |s: &mut Socket<'_>, ev: Event| {
            s.io().emit_raw("bench", ev.args_raw(), ev.attachments.clone());
        });
        ns.on("echo", |s: &mut Socket<'_>, ev: Event| {
            if let Some(id) = ev.ack() {
                s.ack_raw(id, ev.args_raw(), ev.attachments.clone());
            }
        });
        ns.on("join", |s: &mut Socket<'_>, ev: Event| {
            let ok = ev.arg::<String>(0).is_some_and(|r| s.join(&r));
            if let Some(id) = ev.ack() {
                s.ack(id, &(ok,));
            }
        });
        ns.on("bench-room", |s: &mut Socket<'_>, ev: Event| {
            if let (Some(room), Some(payload)) = (ev.arg::<String>(0), ev.arg_raw(1)) {
                s.io().to(&room).emit_raw("bench-room", payload, ev.attachments.clone());
            }
        });
    });
}
