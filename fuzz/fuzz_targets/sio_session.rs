//! Random sequences of Engine.IO / Socket.IO operations from several simulated clients against
//! two shards in the deterministic simulation (`broker::sim`), in virtual time.
//!
//! `SOCKEYE_FUZZ_TRACE=1` prints every operation and every packet the clients receive (to
//! check what a seed decodes to).
//!
//! Input format: operations, each an opcode byte (`% 16`, see `step`) followed by its
//! arguments (single bytes and length-prefixed strings, read with `Input`). At most
//! `MAX_STEPS` operations and `MAX_CLIENTS` clients; strings are at most 255 bytes.
//!
//! The application is the conformance app's event set (`message`, `message-with-ack`, `join`,
//! `leave`, `to-room`, `broadcast`, `server-disconnect`, `emit-with-ack`, `get-rooms`, and
//! `bye`, which closes the session) on `/` and `/custom`, plus `/private`, whose middleware
//! wants `{"token":"secret"}`.
//!
//! Checked after every operation, besides "no panic":
//! - every shard's bookkeeping (`Shard::check_invariants`, run by the sim whenever it is idle):
//!   rooms hold only live sockets, the room index agrees with itself, sockets, sessions and
//!   their id maps agree;
//! - the app saw each socket connect once and disconnect at most once, and the sockets it
//!   holds connected are exactly the shards' sockets;
//! - everything the server sends parses (HTTP, payloads, frames, Engine.IO and Socket.IO
//!   packets with attachments), and every ACK answers an id the client asked, once
//!   (`sockeye_fuzz::clients`);
//! - at the end, after a server shutdown: every socket got its disconnect, every server-side
//!   ACK callback ran exactly once, and no socket is left.
#![no_main]

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use sockeye::api::{ConnectError, Event, NamespaceBuilder, ServerBuilder, Socket};
use sockeye::broker::CoreId;
use sockeye::broker::sim::{self, Sim};
use sockeye::config::Config;
use sockeye_fuzz::clients::{Client, ConnKind};
use sockeye_fuzz::{Input, ns_prefix};

const CORES: usize = 2;
const MAX_CLIENTS: usize = 4;
const MAX_STEPS: usize = 64;
const NAMESPACES: [&str; 5] = ["/", "/custom", "/private", "/nope", "/"];
const EVENTS: [&str; 12] = [
    "message",
    "message-with-ack",
    "join",
    "leave",
    "to-room",
    "broadcast",
    "server-disconnect",
    "emit-with-ack",
    "get-rooms",
    "bye",
    "unknown",
    "connect",
];
const ROOMS: [&str; 4] = ["a", "b", "room with space", ""];

/// What the application observed.
#[derive(Default)]
struct AppLog {
    connected: HashSet<String>,
    ever: HashSet<String>,
    acks_asked: u64,
    acks_settled: u64,
    violations: Vec<String>,
}

type Shared = Arc<Mutex<AppLog>>;

fn key(s: &Socket<'_>) -> String {
    format!("{}#{}", s.ns(), s.id())
}

fn events(ns: &mut NamespaceBuilder, log: &Shared) {
    let l = log.clone();
    ns.on_connect(move |s: &mut Socket<'_>| {
        let k = key(s);
        let mut log = l.lock().unwrap();
        if !log.ever.insert(k.clone()) {
            log.violations.push(format!("socket {k} connected twice"));
        }
        log.connected.insert(k);
    });
    let l = log.clone();
    ns.on_disconnect(move |s: &mut Socket<'_>, _reason| {
        let k = key(s);
        if !s.rooms().contains(&s.id().to_owned()) {
            l.lock().unwrap().violations.push(format!("{k}: own room not readable in on_disconnect"));
        }
        if !l.lock().unwrap().connected.remove(&k) {
            l.lock().unwrap().violations.push(format!("disconnect of {k}, which is not connected"));
        }
    });
    sockeye::apps::echo::register_echo_handlers(ns);
    ns.on("bye", |s: &mut Socket<'_>, _ev: Event| {
        s.emit("bye-bye", &());
        s.disconnect(true);
    });
    let l = log.clone();
    ns.on("emit-with-ack", move |s: &mut Socket<'_>, ev: Event| {
        l.lock().unwrap().acks_asked += 1;
        let l = l.clone();
        s.emit_raw_with_ack(
            "server-ack-request",
            ev.args_raw(),
            ev.attachments.clone(),
            Duration::from_millis(500),
            move |s: &mut Socket<'_>, res| {
                l.lock().unwrap().acks_settled += 1;
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
}

fn app(log: &Shared) -> ServerBuilder {
    let mut cfg = Config::default();
    sockeye::apps::echo::configure(&mut cfg);
    cfg.engine.max_payload = 2000;
    cfg.limits.max_output_bytes = 16 * 1024;
    cfg.limits.max_rooms_per_socket = 4;
    cfg.limits.max_handshakes_per_ip_per_sec = 0;
    cfg.ack_timeout = Duration::from_millis(500);
    let mut b = ServerBuilder::new(cfg);
    let l = log.clone();
    b.namespace("/", move |ns| events(ns, &l));
    let l = log.clone();
    b.namespace("/custom", move |ns| events(ns, &l));
    let l = log.clone();
    b.namespace("/private", move |ns| {
        ns.middleware(|hs| {
            if hs.auth::<serde_json::Value>().is_some_and(|a| a["token"] == "secret") {
                Ok(())
            } else {
                Err(ConnectError::new("not authorized").with_data(serde_json::json!({"code": 42})))
            }
        });
        events(ns, &l);
    });
    b
}

/// A JSON argument list (without brackets) chosen by the input; sometimes not JSON at all.
fn args(input: &mut Input<'_>) -> String {
    let text = String::from_utf8_lossy(input.short_bytes()).into_owned();
    let room = ROOMS[usize::from(input.byte()) % ROOMS.len()];
    match input.byte() % 8 {
        0 => String::new(),
        1 => serde_json::to_string(room).unwrap(),
        2 => format!("{},{}", serde_json::to_string(room).unwrap(), serde_json::to_string(&text).unwrap()),
        3 => serde_json::to_string(&text).unwrap(),
        4 => format!("{{\"k\":[1,2.5,null,true,{}]}}", serde_json::to_string(&text).unwrap()),
        5 => "1e400,-0,18446744073709551616".to_owned(),
        6 => format!("[[[[{}]]]]", serde_json::to_string(&text).unwrap()),
        // Raw bytes: the server must refuse malformed JSON without harm.
        _ => text,
    }
}

struct World {
    sim: Sim,
    clients: Vec<Client>,
    log: Shared,
}

fn core_of(input: &mut Input<'_>) -> CoreId {
    (input.byte() as usize % CORES) as CoreId
}

fn trace() -> bool {
    static TRACE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *TRACE.get_or_init(|| std::env::var_os("SOCKEYE_FUZZ_TRACE").is_some())
}

fn step(w: &mut World, input: &mut Input<'_>) {
    let op = input.byte() % 16;
    // Operations that need a client pick one; an empty slot opens nothing.
    let pick = usize::from(input.byte());
    let n = w.clients.len();
    if trace() {
        eprintln!("op {op} on client {} of {n}", pick % n.max(1));
    }
    match op {
        // New client: polling or WebSocket handshake.
        0 | 1 if n < MAX_CLIENTS => {
            let core = core_of(input);
            let mut c = Client::new(core);
            let raw = if op == 0 { sim::get_request(None) } else { sim::ws_request(None) };
            let conn = c.request(&mut w.sim, core, ConnKind::Handshake, &raw);
            c.learn_sid(&mut w.sim, conn);
            w.clients.push(c);
        }
        _ if n == 0 => {}
        // A GET poll, on the owning core or the other one (handed over).
        2 => {
            let core = core_of(input);
            let c = &mut w.clients[pick % n];
            if let Some(sid) = c.sid.clone() {
                c.request(&mut w.sim, core, ConnKind::Get, &sim::get_request(Some(&sid)));
            }
        }
        // An event, with or without an ack id.
        3 => {
            let core = core_of(input);
            let ns = NAMESPACES[usize::from(input.byte()) % NAMESPACES.len()];
            let ev = EVENTS[usize::from(input.byte()) % EVENTS.len()];
            let with_ack = input.byte() % 2 == 0;
            let a = args(input);
            let c = &mut w.clients[pick % n];
            let id = if with_ack { c.ask(ns).to_string() } else { String::new() };
            let sep = if a.is_empty() { "" } else { "," };
            let text = format!("2{}{id}[{}{sep}{a}]", ns_prefix(ns), serde_json::to_string(ev).unwrap());
            c.send_texts(&mut w.sim, &[text], core);
        }
        // A binary event with `declared` placeholders and `sent` attachments.
        4 => {
            let core = core_of(input);
            let ns = NAMESPACES[usize::from(input.byte()) % 2];
            let ev = EVENTS[usize::from(input.byte()) % EVENTS.len()];
            let declared = usize::from(input.byte() % 4);
            let sent = match input.byte() % 4 {
                0 => declared.saturating_sub(1),
                1 => declared + 1,
                _ => declared,
            };
            let with_ack = input.byte() % 2 == 0;
            let placeholders: Vec<String> =
                (0..declared).map(|i| format!("{{\"_placeholder\":true,\"num\":{i}}}")).collect();
            let data = input.short_bytes().to_vec();
            let c = &mut w.clients[pick % n];
            let id = if with_ack { c.ask(ns).to_string() } else { String::new() };
            let mut items = vec![serde_json::to_string(ev).unwrap()];
            items.extend(placeholders);
            let text = format!("5{declared}-{}{id}[{}]", ns_prefix(ns), items.join(","));
            c.send_texts(&mut w.sim, &[text], core);
            for i in 0..sent {
                let chunk = &data[..data.len().min(i * 7)];
                c.send_binary(&mut w.sim, chunk, core);
            }
        }
        // An ACK from the client: for something the server asked, or an unknown id.
        5 => {
            let core = core_of(input);
            let choice = usize::from(input.byte());
            let a = args(input);
            let c = &mut w.clients[pick % n];
            let (ns, id) = match c.server_asks.get(choice % c.server_asks.len().max(1)) {
                Some(k) if choice % 4 != 0 => k.clone(),
                _ => (NAMESPACES[choice % 2].to_owned(), u64::from(input.u16())),
            };
            c.send_texts(&mut w.sim, &[format!("3{}{id}[{a}]", ns_prefix(&ns))], core);
        }
        // Start an upgrade: a probe WebSocket, then `2probe`.
        6 => {
            let core = core_of(input);
            let c = &mut w.clients[pick % n];
            if let Some(sid) = c.sid.clone() {
                let probe = c.request(&mut w.sim, core, ConnKind::Probe, &sim::ws_request(Some(&sid)));
                w.sim.client_write(probe, &sim::client_frame(sim::OP_TEXT, b"2probe"));
            }
        }
        // On the newest probe: `5` (switch), `2probe` again, garbage, or close it.
        7 => {
            let what = input.byte() % 4;
            let c = &mut w.clients[pick % n];
            if let Some(&(probe, _)) = c.conns.iter().rev().find(|(_, k)| *k == ConnKind::Probe) {
                match what {
                    0 | 1 => {
                        w.sim.client_write(probe, &sim::client_frame(sim::OP_TEXT, b"5"));
                        if !w.sim.is_closed(probe) && c.ws.is_none() {
                            c.ws = Some(probe);
                        }
                    }
                    2 => w.sim.client_write(probe, &sim::client_frame(sim::OP_TEXT, b"2probe")),
                    _ => w.sim.client_close(probe),
                }
            }
        }
        // Time passes: pings, ping timeouts, ack timeouts, upgrade and connect timeouts.
        8 => w.sim.advance_ms(u64::from(input.byte()) * 8),
        // The client drops one of its connections.
        9 => {
            let which = usize::from(input.byte());
            let c = &mut w.clients[pick % n];
            if !c.conns.is_empty() {
                let (conn, _) = c.conns[which % c.conns.len()];
                w.sim.client_close(conn);
            }
        }
        // A hostile Engine.IO message (any type byte, any text).
        10 => {
            let core = core_of(input);
            let text = String::from_utf8_lossy(input.short_bytes()).into_owned();
            let c = &mut w.clients[pick % n];
            if let Some(rest) = text.strip_prefix('4') {
                c.note_raw(rest);
            }
            if let Some(ws) = c.ws {
                w.sim.client_write(ws, &sim::client_frame(sim::OP_TEXT, text.as_bytes()));
            } else if let Some(sid) = c.sid.clone() {
                c.request(&mut w.sim, core, ConnKind::Post, &sim::post_request(&sid, text.as_bytes()));
            }
        }
        // The client stops (or resumes) reading its WebSocket: a slow consumer.
        11 => {
            let reading = input.byte() % 2 == 0;
            if let Some(ws) = w.clients[pick % n].ws {
                w.sim.set_reading(ws, reading);
            }
        }
        // DISCONNECT from a namespace.
        12 => {
            let core = core_of(input);
            let ns = NAMESPACES[usize::from(input.byte()) % NAMESPACES.len()];
            let c = &mut w.clients[pick % n];
            c.send_texts(&mut w.sim, &[format!("1{}", ns_prefix(ns))], core);
        }
        // CONNECT to a namespace, with or without the right auth.
        13 => {
            let core = core_of(input);
            let ns = NAMESPACES[usize::from(input.byte()) % NAMESPACES.len()];
            let auth = match input.byte() % 3 {
                0 => String::new(),
                1 => r#"{"token":"secret"}"#.to_owned(),
                _ => String::from_utf8_lossy(input.short_bytes()).into_owned(),
            };
            let c = &mut w.clients[pick % n];
            let text = if ns == "/" { format!("0{auth}") } else { format!("0{ns},{auth}") };
            c.send_texts(&mut w.sim, &[text], core);
        }
        // Raw bytes on a new connection to a core (hostile HTTP, or a request for a sid).
        14 => {
            let core = core_of(input);
            let mut bytes = input.short_bytes().to_vec();
            // Raw bytes never name a session (the ids are deterministic, so the fuzzer could
            // learn one): what they would steal from a client or send in its name is not
            // modelled. A first byte `G` asks for a GET poll of the client instead.
            while let Some(i) = bytes.windows(3).position(|x| x.eq_ignore_ascii_case(b"sid")) {
                bytes[i] = b'x';
            }
            let c = &mut w.clients[pick % n];
            match (&c.sid, bytes.first() == Some(&b'G')) {
                (Some(sid), true) => {
                    let req = sim::get_request(Some(sid));
                    c.request(&mut w.sim, core, ConnKind::Get, &req);
                }
                _ => {
                    c.request(&mut w.sim, core, ConnKind::Raw, &bytes);
                }
            }
        }
        // Engine.IO close: the close packet, or a WebSocket close frame.
        _ => {
            let core = core_of(input);
            let frame = input.byte() % 2 == 0;
            let c = &mut w.clients[pick % n];
            match (c.ws, frame) {
                (Some(ws), true) => {
                    w.sim.client_write(ws, &sim::client_frame(sim::OP_CLOSE, &1000u16.to_be_bytes()))
                }
                (Some(ws), false) => w.sim.client_write(ws, &sim::client_frame(sim::OP_TEXT, b"1")),
                (None, _) => {
                    if let Some(sid) = c.sid.clone() {
                        c.request(&mut w.sim, core, ConnKind::Post, &sim::post_request(&sid, b"1"));
                    }
                }
            }
        }
    }
}

fn check(w: &mut World) {
    for (i, c) in w.clients.iter_mut().enumerate() {
        c.collect(&mut w.sim);
        if trace() {
            for p in &c.packets {
                eprintln!(
                    "  client {i} <- {:?} {:?} id={:?} {}",
                    p.kind,
                    p.ns,
                    p.id,
                    p.data.as_ref().map_or("", |d| d.get())
                );
            }
        }
        c.packets.clear();
    }
    let log = w.log.lock().unwrap();
    assert!(log.violations.is_empty(), "{:?}", log.violations);
    let live: usize = (0..CORES).map(|c| w.sim.shard(c as CoreId).socket_count()).sum();
    assert_eq!(live, log.connected.len(), "the app's connected sockets are not the shards' sockets");
    assert!(log.acks_settled <= log.acks_asked);
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let log = Shared::default();
    let sim = Sim::new(CORES, app(&log), 1);
    let mut w = World { sim, clients: Vec::new(), log };
    let mut steps = 0;
    while !input.is_empty() && steps < MAX_STEPS {
        step(&mut w, &mut input);
        check(&mut w);
        steps += 1;
    }
    // The end: everything is closed, so every socket must have had its disconnect and every
    // server-side ACK callback its answer.
    for core in 0..CORES {
        w.sim.run_on(core as CoreId, |s| s.shutdown());
    }
    w.sim.advance_ms(5000);
    check(&mut w);
    let log = w.log.lock().unwrap();
    assert!(log.connected.is_empty(), "no disconnect for {:?}", log.connected);
    assert_eq!(log.acks_asked, log.acks_settled, "server ACK callbacks not settled exactly once");
});
