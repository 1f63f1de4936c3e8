//! Arbitrary JSON to every chat event handler (`src/chat/events.rs`, docs/PROTOCOL.md sections
//! 4 to 9), from several WebSocket clients of the chat app running in the deterministic
//! simulation (`broker::sim`), interleaved with connects, joins, leaves, disconnects and time.
//!
//! The chat app runs as it does in the server, with two stand-ins for its threads: one store
//! per process (SQLite in a temporary directory on tmpfs, its own thread, as in production),
//! emptied between runs so that every run starts from the same database (only the `general`
//! room), and the harness waits for it after every operation (a `rooms` read is queued behind
//! everything submitted, so its callback means every earlier callback ran); and the
//! presence state machine (`chat::presence::Presence`) is driven by the harness in virtual time
//! instead of its thread, its output sent through `chat::deliver_presence` as the thread does.
//!
//! Opening a store per run (schema, thread, SQLite's caches) cost most of each run's time under
//! ASan; reusing it made the target about 3 times as fast (60 to 200 runs/s of short inputs
//! with ASan on 2 cores). `SOCKEYE_FUZZ_TRACE=1` prints every Socket.IO packet the clients send
//! and receive (to check what a seed decodes to).
//!
//! Input format: operations, each an opcode byte (`% 8`, see `step`) and its arguments. The
//! JSON payloads are built from the input (`value`): biased toward the shapes the handlers
//! expect (objects with their keys, known room ids) with wrong types, huge numbers, deep
//! arrays, odd unicode, empty strings and null. At most `MAX_STEPS` operations, `MAX_CLIENTS`
//! clients, nesting depth 4, strings of 255 bytes (plus a 2001-character one).
//!
//! Checked, besides no panic and the output checks of `sockeye_fuzz::clients` (valid packets;
//! ACKs only for ids asked, at most once):
//! - after every operation, every event that asked for an ACK got it, unless its client closed
//!   or broke its own session (protocol section 4: exactly one answer);
//! - every ACK has the documented shape: `{success: true, ...}` or `{success: false, error,
//!   code}` with a documented code; seed 004's plain `chat message` is answered with a string;
//! - every `error` event is `{code, message}` with a documented code;
//! - the server disconnects a client (a DISCONNECT packet) only for abuse, after it has sent
//!   the client at least `abuse_disconnect` rate-limit answers (the event that crosses the
//!   limit is answered before the cut); the client's outstanding ACKs are then not checked;
//! - the shards' invariants (the sim checks them whenever it is idle);
//! - at the end, every client still connected gets an answer to a well-formed `leave room`
//!   and `message`.
#![no_main]

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value, json};
use sockeye::api::ServerBuilder;
use sockeye::broker::CoreId;
use sockeye::broker::sim::{self, Sim};
use sockeye::chat::presence::{Presence, PresenceMsg};
use sockeye::chat::{self, ChatConfig, Shared};
use sockeye::config::Config;
use sockeye::socketio::packet::{Packet, PacketKind};
use sockeye::store::{Store, StoreConfig, SyncMode};
use sockeye_fuzz::Input;
use sockeye_fuzz::clients::{Client, ConnKind};

const CORES: usize = 2;
const MAX_CLIENTS: usize = 4;
const MAX_STEPS: usize = 48;

/// Every event the chat app handles (`events::register`), plus one it does not.
const EVENTS: [&str; 10] = [
    "all_chat",
    "chat",
    "sendMessage",
    "message",
    "chat message",
    "join room",
    "leave room",
    "create room",
    "typing",
    "no such event",
];
const HANDLED: usize = 9;

/// The error codes of docs/PROTOCOL.md section 4 (and `token_expired`, section 1).
const CODES: [&str; 13] = [
    "invalid_payload",
    "empty_text",
    "text_too_long",
    "unknown_room",
    "not_member",
    "too_many_rooms",
    "invalid_room_name",
    "room_name_taken",
    "unknown_user",
    "rate_limited",
    "storage_error",
    "overloaded",
    "token_expired",
];

const KEYS: [&str; 10] =
    ["message", "text", "roomId", "name", "receiverId", "to", "id", "user", "username", "publicKey"];
const NAMES: [&str; 4] = ["alice", "bob", "carol", "general"];

/// One temporary directory per process, holding the process's database. libFuzzer exits
/// without running destructors, so the directories of processes that are gone are removed here.
fn scratch() -> &'static std::path::Path {
    static DIR: OnceLock<std::path::PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = if std::path::Path::new("/dev/shm").is_dir() { "/dev/shm" } else { "/tmp" };
        // Only where /proc tells which processes are alive.
        let proc_fs = std::path::Path::new("/proc/self").exists();
        for e in std::fs::read_dir(base).into_iter().flatten().flatten().filter(|_| proc_fs) {
            let name = e.file_name();
            if let Some(pid) = name.to_str().and_then(|n| n.strip_prefix("sockeye-fuzz-chat-"))
                && pid.parse::<u32>().is_ok()
                && !std::path::Path::new("/proc").join(pid).exists()
            {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
        let d = std::path::PathBuf::from(base).join(format!("sockeye-fuzz-chat-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("scratch directory");
        d
    })
}

/// The process's store, opened once, with the rooms it had then (only `general`), and a second
/// connection to its database that empties it between runs.
struct ProcessStore {
    store: Store,
    initial_rooms: Vec<sockeye::store::RoomRecord>,
    reset: std::sync::Mutex<rusqlite::Connection>,
}

fn process_store() -> &'static ProcessStore {
    static STORE: OnceLock<ProcessStore> = OnceLock::new();
    STORE.get_or_init(|| {
        // The abuse disconnects the bursts trip would log a line each; only errors matter here.
        sockeye::log::init(sockeye::log::Level::Error, sockeye::log::Format::Human);
        let dir = scratch();
        let mut store_cfg = StoreConfig::new(dir);
        // Durability is not what this target checks; FULL would fsync every batch.
        store_cfg.sync = SyncMode::Normal;
        let (store, initial_rooms) = Store::open(store_cfg.clone()).expect("store");
        let conn = rusqlite::Connection::open(store_cfg.db_path()).expect("second connection");
        conn.busy_timeout(Duration::from_secs(30)).expect("busy timeout");
        ProcessStore { store, initial_rooms, reset: std::sync::Mutex::new(conn) }
    })
}

impl ProcessStore {
    /// Back to the database as opened: no messages, no rooms but the initial ones. Called when
    /// the store is idle (the run has settled: every command and callback is done).
    fn reset(&self) {
        let ids: Vec<String> =
            self.initial_rooms.iter().map(|r| format!("'{}'", r.id.replace('\'', "''"))).collect();
        let sql = format!("DELETE FROM messages; DELETE FROM rooms WHERE id NOT IN ({});", ids.join(","));
        self.reset.lock().unwrap().execute_batch(&sql).expect("reset the database");
    }
}

fn trace() -> bool {
    static TRACE: OnceLock<bool> = OnceLock::new();
    *TRACE.get_or_init(|| std::env::var_os("SOCKEYE_FUZZ_TRACE").is_some())
}

fn special_string(i: u8) -> String {
    match i % 10 {
        0 => String::new(),
        1 => "   ".to_owned(),
        2 => "a\u{0}b".to_owned(),
        3 => "héllo wörld".to_owned(),
        4 => "👍🏽\u{200d}".to_owned(),
        5 => "\u{202e}evil\u{feff}".to_owned(),
        6 => "x".repeat(2001),
        7 => "general".to_owned(),
        8 => "GENERAL".to_owned(),
        _ => "\u{fffd}\\\"".to_owned(),
    }
}

/// A JSON value built from the input, biased toward the shapes the handlers expect.
fn value(input: &mut Input<'_>, depth: u8, rooms: &[String]) -> Value {
    let choice = input.byte();
    match choice % 12 {
        0 => Value::Null,
        1 => Value::Bool(choice & 0x10 != 0),
        2 => json!(input.byte()),
        3 => match input.byte() % 5 {
            0 => json!(u64::MAX),
            1 => json!(i64::MIN),
            2 => json!(1e308),
            3 => json!(-0.0),
            // 2^64 and beyond are parsed by serde_json as floats.
            _ => serde_json::from_str("18446744073709551616123").unwrap(),
        },
        4 => Value::String(String::from_utf8_lossy(input.short_bytes()).into_owned()),
        5 => Value::String(special_string(input.byte())),
        6 => Value::String(match rooms.get(usize::from(input.byte()) % rooms.len().max(1)) {
            Some(r) => r.clone(),
            None => "general".to_owned(),
        }),
        7 | 8 if depth < 4 => {
            let n = input.byte() % 4;
            Value::Array((0..n).map(|_| value(input, depth + 1, rooms)).collect())
        }
        _ if depth < 4 => {
            let n = input.byte() % 4;
            let mut m = Map::new();
            for _ in 0..n {
                let k = KEYS[usize::from(input.byte()) % KEYS.len()];
                let v = value(input, depth + 1, rooms);
                m.insert(k.to_owned(), v);
            }
            Value::Object(m)
        }
        _ => Value::Null,
    }
}

/// What the harness remembers of an ACK it asked for.
struct Asked {
    event: &'static str,
    payload: Value,
}

struct ChatClient {
    c: Client,
    /// ACK id -> what it was asked for.
    asked: HashMap<u64, Asked>,
    /// The client broke or closed its own session (a malformed packet, a disconnect): ACKs it
    /// still waits for may be lost legitimately, and it is not checked any more.
    exempt: bool,
    connected: bool,
    /// Rate-limit answers received: `rate_limited` ACKs and error events, and seed 004's
    /// "Message is not accepted" (which may be one). An upper bound of the socket's strikes.
    rate_limited: u32,
}

struct World {
    sim: Sim,
    clients: Vec<ChatClient>,
    shared: Arc<Shared>,
    presence: Presence,
    presence_rx: crossbeam_channel::Receiver<PresenceMsg>,
    t0: Instant,
    /// Room ids and names seen (the initial `general`, and every `room created`).
    rooms: Vec<String>,
}

impl World {
    fn new(ps: &ProcessStore) -> World {
        let mut cfg = Config::default();
        cfg.limits.max_handshakes_per_ip_per_sec = 0;
        let dir = scratch();
        let initial_rooms = ps.initial_rooms.clone();
        let (presence_tx, presence_rx) = crossbeam_channel::unbounded();
        let chat_cfg = ChatConfig { data_dir: dir.to_owned(), ..ChatConfig::default() };
        let mut rooms: Vec<String> = initial_rooms.iter().map(|r| r.id.clone()).collect();
        rooms.extend(initial_rooms.iter().map(|r| r.name.clone()));
        let shared = Arc::new(Shared {
            config: chat_cfg,
            verifier: None,
            store: ps.store.handle(),
            initial_rooms,
            presence: presence_tx,
            handle: OnceLock::new(),
            web: chat::http::WebFiles::default(),
            stats: Default::default(),
        });
        let mut b = ServerBuilder::new(cfg);
        chat::install(&mut b, shared.clone());
        let sh = shared.clone();
        b.on_start(move |h| {
            let _ = sh.handle.set(h.clone());
        });
        let sim = Sim::new(CORES, b, 3);
        let presence = Presence::new(shared.config.presence_interval);
        World { sim, clients: Vec::new(), shared, presence, presence_rx, t0: Instant::now(), rooms }
    }

    fn now(&self) -> Instant {
        self.t0 + self.sim.elapsed()
    }

    /// Lets the store and presence finish what was asked of them and delivers their output.
    fn settle(&mut self) {
        for _ in 0..8 {
            let (tx, rx) = crossbeam_channel::bounded(1);
            let queued = self.shared.store.rooms(move |_| {
                let _ = tx.send(());
            });
            if queued.is_ok() {
                rx.recv_timeout(Duration::from_secs(30)).expect("the store answers within 30 s");
            }
            let mut presence_busy = false;
            while let Ok(m) = self.presence_rx.try_recv() {
                presence_busy = true;
                self.presence.handle(m, self.now());
            }
            self.presence.poll(self.now());
            for out in self.presence.take_output() {
                chat::deliver_presence(&self.shared, out);
            }
            let pumped = self.sim.pump_external();
            self.sim.run_until_idle();
            if !pumped && !presence_busy && self.shared.store.stats().snapshot().queue_depth == 0 {
                return;
            }
        }
    }

    /// Advances virtual time, running presence's deadlines too.
    fn advance(&mut self, ms: u64) {
        self.sim.advance_ms(ms);
        self.settle();
    }
}

fn check_error_shape(v: &Value, what: &str) {
    let (Some(Value::String(code)), Some(Value::String(_))) = (v.get("code"), v.get("message")) else {
        panic!("{what}: an error event without code and message: {v}");
    };
    assert!(CODES.contains(&code.as_str()), "{what}: undocumented error code {code}");
}

fn check_ack_shape(asked: &Asked, args: &[Value]) {
    let ev = asked.event;
    // Seed 004: a plain `chat message` (a string, or {text: string} without roomId) is answered
    // with the text or "Message is not accepted".
    let plain = ev == "chat message"
        && match &asked.payload {
            Value::String(_) => true,
            Value::Object(o) => !o.contains_key("roomId") && matches!(o.get("text"), Some(Value::String(_))),
            _ => false,
        };
    let Some(first) = args.first() else {
        panic!("{ev}: an ACK without arguments");
    };
    if plain {
        assert!(first.is_string(), "{ev}: plain message answered with {first}");
        return;
    }
    match first.get("success") {
        Some(Value::Bool(true)) => {}
        Some(Value::Bool(false)) => {
            let (Some(Value::String(code)), Some(Value::String(_))) = (first.get("code"), first.get("error"))
            else {
                panic!("{ev}: failure without code and error: {first}");
            };
            assert!(CODES.contains(&code.as_str()), "{ev}: undocumented error code {code}");
        }
        _ => panic!("{ev}: ACK without success: {first}"),
    }
}

/// Reads what every client received and checks it.
fn check(w: &mut World) {
    for cc in &mut w.clients {
        cc.c.collect(&mut w.sim);
        let abuse = w.shared.config.abuse_disconnect;
        for p in std::mem::take(&mut cc.c.packets) {
            if trace() {
                eprintln!(
                    "<- {:?} {:?} id={:?} {}",
                    p.kind,
                    p.ns,
                    p.id,
                    p.data.as_ref().map_or("", |d| d.get())
                );
            }
            on_packet(cc, &p, &mut w.rooms, abuse);
        }
        if cc.c.closed {
            cc.connected = false;
        }
        if !cc.exempt {
            // Everything was settled: every ACK this client asked for has been answered.
            let left: Vec<&str> = cc.asked.values().map(|a| a.event).collect();
            assert!(left.is_empty(), "ACKs never answered for {left:?}");
        } else {
            cc.asked.clear();
        }
    }
}

fn on_packet(cc: &mut ChatClient, p: &Packet, rooms: &mut Vec<String>, abuse: u32) {
    let data: Option<Value> =
        p.data.as_ref().map(|d| serde_json::from_str(d.get()).expect("packet data is JSON"));
    match p.kind {
        PacketKind::Connect => cc.connected = true,
        PacketKind::Disconnect => {
            // Only the abuse limit disconnects a socket here (no verifier, so no token expiry),
            // and only after every rejection that counted was answered.
            assert!(
                cc.rate_limited >= abuse,
                "server disconnect after only {} rate-limit answers (limit {abuse})",
                cc.rate_limited
            );
            cc.connected = false;
            // Events sent after the cut, and stored ones still in flight, are not answered.
            cc.exempt = true;
        }
        PacketKind::ConnectError => cc.connected = false,
        PacketKind::Ack => {
            let id = p.id.expect("ACK id");
            let asked = cc.asked.remove(&id).expect("the harness asked for this ACK");
            let args = match data {
                Some(Value::Array(a)) => a,
                other => panic!("ACK data is not an array: {other:?}"),
            };
            check_ack_shape(&asked, &args);
            match args.first() {
                Some(Value::String(t)) if t == "Message is not accepted" => cc.rate_limited += 1,
                Some(a) if a.get("code").and_then(Value::as_str) == Some("rate_limited") => {
                    cc.rate_limited += 1
                }
                _ => {}
            }
            // Room ids the client learns from `create room`.
            if let Some(Value::String(id)) =
                args.first().and_then(|a| a.get("room")).and_then(|r| r.get("_id"))
            {
                rooms.push(id.clone());
            }
        }
        PacketKind::Event => {
            let Some(Value::Array(a)) = data else {
                panic!("event data is not an array");
            };
            match a.first().and_then(Value::as_str) {
                Some("error") => {
                    let e = a.get(1).unwrap_or(&Value::Null);
                    check_error_shape(e, "error event");
                    if e.get("code").and_then(Value::as_str) == Some("rate_limited") {
                        cc.rate_limited += 1;
                    }
                }
                Some("room created") => {
                    if let Some(Value::String(id)) = a.get(1).and_then(|r| r.get("_id")) {
                        if !rooms.contains(id) && rooms.len() < 16 {
                            rooms.push(id.clone());
                        }
                    }
                }
                _ => {}
            }
        }
        _ => {}
    }
}

/// Sends event `ev` with `args` (JSON values), asking for an ACK when `ack`.
fn send_event(w: &mut World, i: usize, ev: &'static str, args: Vec<Value>, ack: bool) {
    let cc = &mut w.clients[i];
    let mut items = vec![Value::String(ev.to_owned())];
    let payload = args.first().cloned().unwrap_or(Value::Null);
    items.extend(args);
    let id = if ack && cc.connected && !cc.exempt {
        let id = cc.c.ask("/");
        cc.asked.insert(id, Asked { event: ev, payload });
        id.to_string()
    } else if ack {
        // Not connected yet (or broken): the packet closes the session, nothing to expect.
        cc.exempt = true;
        let id = cc.c.ask("/");
        id.to_string()
    } else {
        String::new()
    };
    let text = format!("2{id}{}", Value::Array(items));
    if trace() {
        eprintln!("-> client {i}: {text}");
    }
    let core = cc.c.core;
    cc.c.send_texts(&mut w.sim, &[text], core);
}

fn step(w: &mut World, input: &mut Input<'_>) {
    let op = input.byte() % 8;
    let pick = usize::from(input.byte());
    let n = w.clients.len();
    match op {
        // A new WebSocket client, connected to `/` with some identity.
        0 if n < MAX_CLIENTS => {
            let core = (input.byte() as usize % CORES) as CoreId;
            let mut c = Client::new(core);
            let conn = c.request(&mut w.sim, core, ConnKind::Handshake, &sim::ws_request(None));
            c.learn_sid(&mut w.sim, conn);
            w.sim.set_auto_pong(conn, true);
            let name = NAMES[usize::from(input.byte()) % NAMES.len()];
            let auth = match input.byte() % 6 {
                0 => String::new(),
                1 => json!({"username": name}).to_string(),
                2 => json!({"userId": name, "to": NAMES[pick % NAMES.len()]}).to_string(),
                3 => json!({"to": name}).to_string(),
                4 => json!({"user": value(input, 1, &w.rooms), "publicKey": value(input, 1, &w.rooms)})
                    .to_string(),
                _ => value(input, 0, &w.rooms).to_string(),
            };
            c.send_texts(&mut w.sim, &[format!("0{auth}")], core);
            if trace() {
                eprintln!("-> client {n} connects on core {core}: 0{auth}");
            }
            w.clients.push(ChatClient {
                c,
                asked: HashMap::new(),
                exempt: false,
                connected: false,
                rate_limited: 0,
            });
        }
        _ if n == 0 => {}
        // An event with an arbitrary payload (the common case). An ack byte of 0xf0 or more
        // sends it 8 to 128 times in a row: a burst past the rate limit (20 tokens) and the
        // abuse disconnect (50 rejections in 10 s), which single events within `MAX_STEPS`
        // could not reach.
        0..=3 => {
            let ev = EVENTS[usize::from(input.byte()) % EVENTS.len()];
            let ack_byte = input.byte();
            let ack = ack_byte % 2 == 0 && EVENTS[..HANDLED].contains(&ev);
            let times = if ack_byte >= 0xf0 { 8 * (usize::from(ack_byte & 0x0f) + 1) } else { 1 };
            let nargs = input.byte() % 4;
            let args: Vec<Value> = (0..nargs.min(2)).map(|_| value(input, 0, &w.rooms)).collect();
            for _ in 0..times {
                send_event(w, pick % n, ev, args.clone(), ack);
            }
        }
        // Well-formed room traffic: join, leave, a message to a known room, typing.
        4 => {
            let room =
                w.rooms.get(usize::from(input.byte()) % w.rooms.len().max(1)).cloned().unwrap_or_default();
            let text = Value::String(String::from_utf8_lossy(input.short_bytes()).into_owned());
            let (ev, payload) = match input.byte() % 5 {
                0 | 1 => ("join room", json!({"roomId": room, "user": NAMES[pick % 3]})),
                2 => ("leave room", json!({"roomId": room})),
                3 => ("chat message", json!({"roomId": room, "text": text})),
                _ => ("typing", json!({"roomId": room})),
            };
            let ack = input.byte() % 4 != 0;
            send_event(w, pick % n, ev, vec![payload], ack);
        }
        // A new room with a name from the input.
        5 => {
            let name = match input.byte() % 3 {
                0 => value(input, 1, &w.rooms),
                1 => Value::String(format!("room {}", input.byte() % 8)),
                _ => Value::String(special_string(input.byte())),
            };
            send_event(w, pick % n, "create room", vec![json!({"name": name})], true);
        }
        // Time passes: rate buckets refill, presence lists go out, pings are answered.
        6 => {
            let ms = u64::from(input.byte()) * 20;
            if trace() {
                eprintln!("-- {ms} ms pass");
            }
            w.advance(ms);
        }
        // The client leaves: namespace disconnect, close packet, dropped connection, or a
        // packet that is not JSON (the server closes the session).
        _ => {
            let how = input.byte() % 4;
            if trace() {
                eprintln!("-> client {} leaves ({how})", pick % n);
            }
            let cc = &mut w.clients[pick % n];
            cc.exempt = true;
            let core = cc.c.core;
            match how {
                0 => cc.c.send_texts(&mut w.sim, &["1".to_owned()], core),
                1 => {
                    if let Some(ws) = cc.c.ws {
                        w.sim.client_write(ws, &sim::client_frame(sim::OP_TEXT, b"1"));
                    }
                }
                2 => {
                    if let Some(ws) = cc.c.ws {
                        w.sim.client_close(ws);
                    }
                }
                _ => cc.c.send_texts(&mut w.sim, &["2[\"message\",{]".to_owned()], core),
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let ps = process_store();
    let mut w = World::new(ps);
    let mut input = Input::new(data);
    let mut steps = 0;
    while !input.is_empty() && steps < MAX_STEPS {
        step(&mut w, &mut input);
        w.settle();
        check(&mut w);
        steps += 1;
    }
    // The server still answers well-formed messages from every client that is still there.
    w.advance(3000);
    for i in 0..w.clients.len() {
        if w.clients[i].connected && !w.clients[i].exempt {
            send_event(&mut w, i, "leave room", vec![json!({"roomId": "no such room"})], true);
            send_event(&mut w, i, "message", vec![json!({"message": "still there?"})], true);
        }
    }
    w.settle();
    check(&mut w);
    for cc in &w.clients {
        if cc.connected && !cc.exempt {
            assert!(cc.asked.is_empty(), "a well-formed message went unanswered");
        }
    }
    for core in 0..CORES {
        w.sim.run_on(core as CoreId, |s| s.shutdown());
    }
    w.settle();
    drop(w);
    ps.reset();
});
