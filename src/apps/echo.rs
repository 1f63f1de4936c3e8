//! The conformance app: a server that behaves exactly as the interop tests expect.
//!
//! Engine.IO: pingInterval 300 ms, pingTimeout 200 ms, maxPayload 1 000 000, connectTimeout
//! 1000 ms. Namespaces `/` and `/custom`; on connect to either, `auth` is emitted with the
//! handshake's auth object. On `/`:
//! - `message` -> `message-back` with the same arguments (attachments included);
//! - `message-with-ack` -> acknowledged with the same arguments;
//! - `join` room / `leave` room -> acknowledged with `true`;
//! - `to-room` (room, payload) -> `room-msg` payload to the room's other members;
//! - `broadcast` (payload) -> `broadcast-msg` payload to every other socket of `/`;
//! - `server-disconnect` -> the server disconnects the socket;
//! - `emit-with-ack` (payload) -> `server-ack-request` payload with an ack; the client's ack
//!   value X comes back as `server-ack-result` X;
//! - `get-rooms` -> acknowledged with the socket's rooms, sorted.
//!
//! At `/engine.io/` a plain Engine.IO endpoint echoes every message.

use std::sync::Arc;
use std::time::Duration;

use crate::api::{Event, NamespaceBuilder, ServerBuilder, Socket};
use crate::broker::shard::{EngineApp, EngineSocket};
use crate::config::Config;
use crate::engineio::packet::Data;

/// Apply the conformance timings to a configuration.
pub fn configure(cfg: &mut Config) {
    cfg.engine.ping_interval = Duration::from_millis(300);
    cfg.engine.ping_timeout = Duration::from_millis(200);
    cfg.engine.max_payload = 1_000_000;
    cfg.connect_timeout = Duration::from_millis(1000);
}

struct EngineEcho;

impl EngineApp for EngineEcho {
    fn on_message(&self, socket: &mut EngineSocket<'_>, data: Data) {
        socket.send(data);
    }
}

fn emit_auth(socket: &mut Socket<'_>) {
    let auth = socket.handshake().map(|h| h.auth.get().to_owned()).unwrap_or_else(|| "{}".into());
    socket.emit_raw("auth", &auth, Vec::new());
}

/// The conformance app's echo, room and disconnect events (`message`, `message-with-ack`,
/// `join`, `leave`, `to-room`, `broadcast`, `server-disconnect`); the stateful fuzz target
/// registers the same ones.
pub fn register_echo_handlers(ns: &mut NamespaceBuilder) {
    ns.on("message", |s: &mut Socket<'_>, ev: Event| {
        s.emit_raw("message-back", ev.args_raw(), ev.attachments.clone());
    });
    ns.on("message-with-ack", |s: &mut Socket<'_>, ev: Event| {
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
    ns.on("leave", |s: &mut Socket<'_>, ev: Event| {
        if let Some(r) = ev.arg::<String>(0) {
            s.leave(&r);
        }
        if let Some(id) = ev.ack() {
            s.ack(id, &(true,));
        }
    });
    ns.on("to-room", |s: &mut Socket<'_>, ev: Event| {
        if let (Some(room), Some(payload)) = (ev.arg::<String>(0), ev.arg_raw(1)) {
            s.to(&room).emit_raw("room-msg", payload, ev.attachments.clone());
        }
    });
    ns.on("broadcast", |s: &mut Socket<'_>, ev: Event| {
        s.broadcast().emit_raw("broadcast-msg", ev.args_raw(), ev.attachments.clone());
    });
    ns.on("server-disconnect", |s: &mut Socket<'_>, _ev: Event| {
        s.disconnect(false);
    });
}

/// Register the conformance app's namespaces and endpoints.
pub fn install(server: &mut ServerBuilder) {
    server.namespace("/", |ns| {
        ns.on_connect(emit_auth);
        register_echo_handlers(ns);
        ns.on("emit-with-ack", |s: &mut Socket<'_>, ev: Event| {
            s.emit_raw_with_ack(
                "server-ack-request",
                ev.args_raw(),
                ev.attachments.clone(),
                Duration::from_secs(5),
                |s: &mut Socket<'_>, res| {
                    if let Ok(r) = res {
                        s.emit_raw("server-ack-result", r.args.raw(), r.attachments);
                    }
                },
            );
        });
        ns.on("get-rooms", |s: &mut Socket<'_>, ev: Event| {
            let mut rooms = s.rooms();
            rooms.sort();
            if let Some(id) = ev.ack() {
                s.ack(id, &(rooms,));
            }
        });
    });
    server.namespace("/custom", |ns| {
        ns.on_connect(emit_auth);
    });
    server.engine_endpoint("/engine.io/", Arc::new(EngineEcho));
}
