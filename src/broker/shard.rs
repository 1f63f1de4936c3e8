//! The broker state of one core.
//!
//! A `Shard` owns the Engine.IO sessions and Socket.IO sockets of its core, the room index of
//! each namespace, the timers, and what this core knows of other cores' rooms. It is driven by
//! the runtime (`handle_*`), and produces connection commands (`take_commands`) and messages for
//! other cores (`take_outbox`). It never does IO and never reads the clock.
//!
//! Invariants:
//! - a session's `ws_conn`, `get_conn` and `probe_conn` are connections the runtime holds for it;
//!   every time the shard lets go of one it says so with a command (`Unpark`, `Close`);
//! - a socket is in `ns.sockets`, in `socket_ids` and in its session's `sockets` list, or in none;
//!   a ghost (connection state recovery: `session == NO_SESSION`) is in the first two only;
//! - a room is in another core's occupancy mask here iff that core told us it has members.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::{RngExt, SeedableRng};
use serde_json::value::RawValue;
use slab::Slab;

use super::adapter::ClusterBroadcast;
use super::ratelimit::HandshakeLimiter;
use super::rooms::{Change, Room, RoomIndex};
use crate::api::server::{Endpoint, ServerDef};
use crate::api::{AckError, AckResponse, Args, DisconnectReason, Event, Handshake, HandshakeBase, Socket};
use crate::engineio::packet::{self, Data};
use crate::engineio::session::{
    CloseReason, EioError, GetOutcome, Outgoing, Session, SessionConfig, SessionEvent, Transmit,
    TransportKind, WsInput,
};
use crate::engineio::sid::{SID_RANDOM_BYTES, make_sid, sid_core};
use crate::http::request::{Method, Request};
use crate::http::response::write_simple;
use crate::metrics::{Exposition, ShardTally, close_index, disconnect_index};
use crate::socketio::packet::{self as sio, Decoder, DecoderLimits, PacketKind};
use crate::stats::{CoreStats, NodeStats};

/// Index of a core (event-loop thread).
pub type CoreId = u8;

/// A connection handle of the runtime: slab index plus generation, so a command for a slot
/// that was reused is recognised as stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnKey {
    pub idx: u32,
    pub generation: u32,
}

/// A session handle given to the runtime with a WebSocket connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionKey {
    idx: u32,
    generation: u32,
}

/// A socket handle; stale handles (socket gone, slot reused) are ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SocketKey {
    pub(crate) idx: u32,
    pub(crate) generation: u32,
}

/// What the runtime must do with a connection.
#[derive(Debug)]
pub enum ConnCmd {
    /// Append a WebSocket frame to the connection's output.
    Frame(ConnKey, Outgoing),
    /// Append raw bytes (an HTTP response) to the connection's output.
    Bytes(ConnKey, Vec<u8>),
    /// The parked poll on this connection was answered: read requests again (or close when the
    /// request did not ask for keep-alive).
    Unpark(ConnKey),
    /// Flush the output then close (a WebSocket gets a close frame first).
    Close(ConnKey),
}

/// What to do with an HTTP request.
#[derive(Debug)]
pub enum RequestOutcome {
    /// Write this response and read the next request (or close without keep-alive).
    Respond(Vec<u8>),
    /// Write this response and close.
    RespondClose(Vec<u8>),
    /// Keep the request open; the answer comes as `ConnCmd::Bytes` then `ConnCmd::Unpark`.
    Park,
    /// The connection is now a WebSocket of this session; write the response (101 plus any
    /// first frames) and decode frames from now on.
    WebSocket { response: Vec<u8>, session: SessionKey },
    /// The session is owned by another core: move the connection there, request unconsumed.
    Handoff(CoreId),
    /// An application handler answers later (`api::http::Responder`): park the connection
    /// with no session; the answer comes as `ConnCmd::Bytes` then `ConnCmd::Unpark`.
    Defer,
}

/// A message between cores.
pub enum ShardMsg {
    /// Deliver to the local members of a namespace (all of it when `rooms` is empty).
    Broadcast(Arc<BroadcastMsg>),
    /// Another core gained its first (`present`) or lost its last member of a room.
    Occupancy { ns: u16, room: Room, core: CoreId, present: bool },
    /// Run a closure on this core with its shard (`ServerHandle::run_on`).
    Run(Box<dyn FnOnce(&mut Shard) + Send>),
    /// Close a session of this core (a request for it was refused on another core).
    CloseSession { sid: String, reason: CloseReason },
    /// Close every session: the server is shutting down.
    Shutdown,
    /// Connection state recovery: a client asks for the disconnected socket with this private
    /// id (`pid`) in namespace `ns`, having seen every packet up to `offset`. Sent to every
    /// other core; each answers `Recovered` to `from`.
    Recover { pid: String, offset: String, ns: u16, from: CoreId, session: SessionKey },
    /// The answer to `Recover` from core `from`: the socket, taken off it, or `None`.
    Recovered { session: SessionKey, ns: u16, from: CoreId, socket: Option<Box<RecoveredSocket>> },
    /// A packet for a recovered socket that reached its old core, which forwards what its
    /// rooms receive until every core sends to the new core directly (see `Fence`).
    Forward { id: Arc<str>, ns: u16, offset: Arc<str>, packets: Vec<Outgoing> },
    /// From the recovered socket's new core `b`, after its occupancy announcements, to every
    /// other core: once you read this you send to `b` yourself; tell the old core `a`
    /// (`Fenced`). The old core itself takes it as the fence of `a` and of `b`.
    Fence { id: Arc<str>, ns: u16, a: CoreId, b: CoreId },
    /// To the old core: broadcasts from `origin` sent after this one reach `b` directly, so
    /// they are not forwarded any more. When every core is fenced, the forwarder goes.
    Fenced { id: Arc<str>, ns: u16, origin: CoreId, b: CoreId },
    /// No more `Forward` for this socket will come.
    Released { id: Arc<str>, ns: u16 },
}

/// A disconnected socket handed from the core that kept it to the core its client came back
/// on: everything but the application data (which is not `Send`).
#[derive(Debug)]
pub struct RecoveredSocket {
    id: Arc<str>,
    pid: Arc<str>,
    rooms: Vec<Room>,
    /// The packets logged for it (offset, packets), oldest first; the ones after
    /// `missed_from` are those the client has not seen.
    log: Vec<(Arc<str>, Vec<Outgoing>)>,
    missed_from: usize,
}

impl std::fmt::Debug for ShardMsg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ShardMsg::Broadcast(b) => write!(f, "Broadcast(ns {}, rooms {:?})", b.ns, b.rooms),
            ShardMsg::Occupancy { ns, room, core, present } => {
                write!(f, "Occupancy({ns}, {room}, {core}, {present})")
            }
            ShardMsg::Run(_) => f.write_str("Run"),
            ShardMsg::CloseSession { sid, reason } => write!(f, "CloseSession({sid}, {reason})"),
            ShardMsg::Shutdown => f.write_str("Shutdown"),
            ShardMsg::Recover { ns, from, .. } => write!(f, "Recover(ns {ns}, from {from})"),
            ShardMsg::Recovered { ns, socket, .. } => {
                write!(f, "Recovered(ns {ns}, {})", socket.as_ref().map_or("none", |s| &*s.id))
            }
            ShardMsg::Forward { id, offset, .. } => write!(f, "Forward({id}, {offset})"),
            ShardMsg::Fence { id, a, b, .. } => write!(f, "Fence({id}, {a} -> {b})"),
            ShardMsg::Fenced { id, origin, .. } => write!(f, "Fenced({id}, {origin})"),
            ShardMsg::Released { id, .. } => write!(f, "Released({id})"),
        }
    }
}

/// Who a broadcast reaches: the members of `rooms` in namespace `ns` (everyone in it when
/// `rooms` is empty), minus the members of `except`, minus the socket `skip`.
pub(crate) struct Audience {
    pub(crate) ns: u16,
    pub(crate) rooms: Vec<Room>,
    pub(crate) except: Vec<Room>,
    pub(crate) skip: Option<SocketKey>,
}

/// A broadcast encoded once: the Engine.IO packets (text packet plus attachments).
#[derive(Debug)]
pub struct BroadcastMsg {
    pub ns: u16,
    pub rooms: Vec<Room>,
    pub except: Vec<Room>,
    pub packets: Vec<Outgoing>,
    /// With connection state recovery on: the offset appended as the last argument, which
    /// every receiving socket logs.
    pub offset: Option<Arc<str>>,
    /// The core it was sent from; `None` for a `ServerHandle` broadcast, which every core
    /// delivers on its own.
    pub origin: Option<CoreId>,
}

type SocketHandler = Rc<dyn Fn(&mut Socket<'_>, Event)>;
type AckCallback = Box<dyn FnOnce(&mut Socket<'_>, Result<AckResponse, AckError>)>;

struct SessionEntry {
    generation: u32,
    sid: Arc<str>,
    eio: Session,
    endpoint: u16,
    ws_conn: Option<ConnKey>,
    get_conn: Option<ConnKey>,
    get_keep_alive: bool,
    get_origin: Option<String>,
    probe_conn: Option<ConnKey>,
    /// Sockets of this session: (namespace, socket slab index).
    sockets: Vec<(u16, u32)>,
    /// CONNECTs waiting for other cores' answers to `ShardMsg::Recover`.
    recovering: Vec<Recovering>,
    decoder: Option<Box<Decoder>>,
    base: Arc<HandshakeBase>,
    connect_deadline: Option<Instant>,
    /// The deadline currently in the timer heap for this session.
    armed: Option<Instant>,
    dirty: bool,
}

pub(crate) struct SocketEntry {
    generation: u32,
    pub(crate) id: Arc<str>,
    pub(crate) ns: u16,
    session: u32,
    pub(crate) handshake: Rc<Handshake>,
    acks: HashMap<u64, AckCallback>,
    next_ack: u64,
    handlers: Vec<(String, SocketHandler)>,
    pub(crate) data: Option<Box<dyn std::any::Any>>,
    /// Set while its disconnect handler and ack callbacks run, and while it is a ghost.
    disconnecting: bool,
    /// It was recovered (connection state recovery) rather than created fresh.
    pub(crate) recovered: bool,
    /// Connection state recovery on: its private id and packet log.
    rec: Option<Box<SocketRecovery>>,
    /// It was recovered on another core: this entry only forwards what its rooms receive
    /// there, except broadcasts from the cores in `fenced`, until every core is fenced.
    forward_to: Option<CoreId>,
    fenced: u64,
    /// `ServerHandle` broadcasts (offsets `s.<n>`) that reached it forwarded while merging:
    /// this core's own copy may still come after `Released`, and is skipped then.
    shared_seen: Option<HashSet<Arc<str>>>,
    /// Recovered from another core, which still forwards (until `Released`).
    merging: Option<Box<Merging>>,
    /// Becoming a ghost: `leave` has no effect while its disconnect handler runs.
    keep_rooms: bool,
}

/// A socket recovered from another core while that core still forwards what its rooms
/// receive. Forwarded packets are delivered at once: they are older than anything that comes
/// directly, which is held until `Released` (after the last forward) and then delivered. Each
/// offset is delivered once, since a broadcast may come both ways.
#[derive(Default)]
struct Merging {
    seen: HashSet<Arc<str>>,
    held: Vec<(Arc<str>, Vec<Outgoing>)>,
}

/// Offsets of broadcasts from a `ServerHandle`, which every core delivers on its own: they
/// share one offset (`s.<n>`), so a socket being merged gets the broadcast once.
static NEXT_SHARED_OFFSET: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A session value of `SocketEntry::session` that names no session: the socket is a ghost.
const NO_SESSION: u32 = u32::MAX;

/// Per-socket state of connection state recovery.
struct SocketRecovery {
    pid: Arc<str>,
    /// Packets sent with an offset, oldest first: while connected, the most recent ones (what
    /// may have been in flight when the transport died); while a ghost, also every packet it
    /// missed. At most `Recovery::max_buffer_bytes` of them.
    log: VecDeque<(Arc<str>, Vec<Outgoing>)>,
    log_bytes: usize,
    /// Set while it is a ghost: it can be recovered until then.
    ghost_until: Option<Instant>,
}

impl SocketRecovery {
    fn new(pid: Arc<str>) -> Self {
        SocketRecovery { pid, log: VecDeque::new(), log_bytes: 0, ghost_until: None }
    }

    /// Log a packet. Returns false when a ghost overflows `max` (it must be dropped); a
    /// connected socket forgets its oldest packets instead.
    fn record(&mut self, offset: &Arc<str>, packets: &[Outgoing], max: usize) -> bool {
        self.log_bytes += packets_bytes(packets);
        self.log.push_back((offset.clone(), packets.to_vec()));
        if self.ghost_until.is_some() {
            return self.log_bytes <= max;
        }
        while self.log_bytes > max
            && let Some((_, p)) = self.log.pop_front()
        {
            self.log_bytes -= packets_bytes(&p);
        }
        true
    }

    /// The index of the first packet after `offset`, if `offset` is still in the log.
    fn after(&self, offset: &str) -> Option<usize> {
        self.log.iter().position(|(o, _)| **o == *offset).map(|i| i + 1)
    }
}

/// What one log entry counts against `Recovery::max_buffer_bytes`: the packets' bytes (shared
/// with every other receiver of a broadcast, so counted once per socket although stored once)
/// plus the entry's own bookkeeping, which each socket does pay for.
fn packets_bytes(packets: &[Outgoing]) -> usize {
    const ENTRY_OVERHEAD: usize = 64;
    ENTRY_OVERHEAD + packets.iter().map(|o| o.ws_frame().len()).sum::<usize>()
}

/// A CONNECT that waits for the other cores to say whether they hold its socket.
struct Recovering {
    ns: u16,
    handshake: Rc<Handshake>,
    /// Answers still expected.
    waiting: usize,
}

#[derive(Default)]
struct NsState {
    rooms: RoomIndex,
    sockets: HashSet<u32>,
    /// Other cores' occupancy of rooms: bit c set when core c has members.
    remote: HashMap<Room, u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Session {
        idx: u32,
        generation: u32,
    },
    Ack {
        idx: u32,
        generation: u32,
        id: u64,
    },
    /// An application timer (`Shard::set_timer`); its closure is in `app_timers`.
    App {
        id: u64,
    },
}

type AppTimer = Box<dyn FnOnce(&mut Shard)>;

/// The broker state of one core. See the module documentation.
pub struct Shard {
    core: CoreId,
    n_cores: usize,
    pub(crate) def: Arc<ServerDef>,
    sessions: Slab<SessionEntry>,
    sids: HashMap<Arc<str>, u32>,
    pub(crate) sockets: Slab<SocketEntry>,
    socket_ids: HashMap<Arc<str>, u32>,
    namespaces: Vec<NsState>,
    timers: BinaryHeap<Reverse<(Instant, Timer)>>,
    generation: u32,
    /// Draws Engine.IO session ids and public socket ids: a CSPRNG (ChaCha12) that the runtime
    /// seeds from the operating system (`seed_from_os`); the simulation keeps a fixed seed.
    rng: rand::rngs::StdRng,
    /// Draws the private session ids of connection state recovery, which are credentials: the
    /// runtime seeds it from the operating system (`seed_from_os`).
    secret_rng: rand::rngs::StdRng,
    pub(crate) now: Instant,
    dirty: Vec<u32>,
    cmds: Vec<ConnCmd>,
    outbox: Vec<(CoreId, ShardMsg)>,
    /// Wall-clock milliseconds at `now`, for handshake timestamps.
    wall_ms: u64,
    shutting_down: bool,
    /// Per-core application state, one value per type (`Shard::local`).
    locals: HashMap<std::any::TypeId, Box<dyn std::any::Any>>,
    app_timers: HashMap<u64, AppTimer>,
    next_app_timer: u64,
    /// Handshakes per client address (`Limits::max_handshakes_per_ip_per_sec`); `None` = off.
    handshakes: Option<HandshakeLimiter>,
    /// This core's counters; the shard writes the ones it decides.
    stats: Arc<CoreStats>,
    /// Every core's counters, for `GET /metrics`.
    node: Arc<NodeStats>,
    /// Running totals of the data path, published to `stats.metrics` once per loop turn.
    tally: ShardTally,
    /// Connection state recovery: sockets (connected or ghosts) by private id.
    pids: HashMap<Arc<str>, u32>,
    /// Ghost sockets in `sockets`.
    ghosts: usize,
    /// The next offset number (connection state recovery).
    next_offset: u64,
}

impl Shard {
    /// A shard for core `core` of `n_cores`; `seed` feeds the id generator.
    pub(crate) fn new(core: CoreId, n_cores: usize, def: Arc<ServerDef>, seed: u64, now: Instant) -> Shard {
        let namespaces = def.namespaces.iter().map(|_| NsState::default()).collect();
        let handshakes = HandshakeLimiter::new(&def.config.limits, n_cores, now);
        let node = Arc::new(NodeStats::new(n_cores, def.namespaces.len()));
        Shard {
            core,
            n_cores,
            def,
            sessions: Slab::new(),
            sids: HashMap::new(),
            sockets: Slab::new(),
            socket_ids: HashMap::new(),
            namespaces,
            timers: BinaryHeap::new(),
            generation: 0,
            rng: rand::rngs::StdRng::seed_from_u64(seed),
            secret_rng: rand::rngs::StdRng::seed_from_u64(seed ^ 0x5eed_5ec2_e75e_ed00),
            now,
            dirty: Vec::new(),
            cmds: Vec::new(),
            outbox: Vec::new(),
            wall_ms: 0,
            shutting_down: false,
            locals: HashMap::new(),
            app_timers: HashMap::new(),
            next_app_timer: 0,
            handshakes,
            stats: node.cores[core as usize].clone(),
            node,
            tally: ShardTally::default(),
            pids: HashMap::new(),
            ghosts: 0,
            next_offset: 0,
        }
    }

    /// Seed both id generators (session and socket ids, recovery private ids) from the
    /// operating system's randomness, each with its own 256-bit seed: the runtime's ids must not
    /// be predictable from the start time or the core number.
    pub(crate) fn seed_from_os(&mut self) {
        let mut os = rand::rng();
        self.rng = rand::rngs::StdRng::from_seed(os.random());
        self.secret_rng = rand::rngs::StdRng::from_seed(os.random());
    }

    /// Count into the node's counters (the runtime's, shared by every core) instead of the
    /// shard's own.
    pub(crate) fn set_node(&mut self, node: Arc<NodeStats>) {
        self.stats = node.cores[self.core as usize].clone();
        self.node = node;
    }

    /// Publish the data path's running totals to this core's metrics (the runtime does it once
    /// per loop turn): plain stores, no read-modify-write.
    pub fn publish_metrics(&self) {
        let sockets = self.namespaces.iter().map(|n| n.sockets.len());
        self.stats.metrics.publish_shard(&self.tally, sockets);
    }

    /// The `GET /metrics` body: every core's metrics, then what the application adds.
    pub fn render_metrics(&self) -> String {
        self.publish_metrics();
        let names: Vec<&str> = self.def.namespaces.iter().map(|n| n.name.as_str()).collect();
        let mut e = Exposition::default();
        e.node(&self.node, &names);
        for hook in &self.def.metrics_hooks {
            hook(&mut e);
        }
        e.finish()
    }

    /// This core's counters.
    pub fn stats(&self) -> &CoreStats {
        &self.stats
    }

    /// Client addresses the handshake rate limit tracks now.
    pub fn handshake_rate_tracked(&self) -> usize {
        self.handshakes.as_ref().map_or(0, HandshakeLimiter::tracked)
    }

    /// This core's value of application state `T`, created with `T::default()` on first use.
    /// Each core has its own: state shared by all cores travels in messages instead.
    pub fn local<T: Default + 'static>(&mut self) -> &mut T {
        self.locals
            .entry(std::any::TypeId::of::<T>())
            .or_insert_with(|| Box::new(T::default()))
            .downcast_mut()
            .expect("locals are keyed by their TypeId")
    }

    /// Run `f` on this core once `delay` has passed (in the shard's time, so virtual time in
    /// tests). Returns an id for `cancel_timer`.
    pub fn set_timer(&mut self, delay: std::time::Duration, f: impl FnOnce(&mut Shard) + 'static) -> u64 {
        let id = self.next_app_timer;
        self.next_app_timer += 1;
        self.app_timers.insert(id, Box::new(f));
        self.timers.push(Reverse((self.now + delay, Timer::App { id })));
        id
    }

    /// Forget a timer set with `set_timer` (no effect once it ran).
    pub fn cancel_timer(&mut self, id: u64) {
        self.app_timers.remove(&id);
    }

    /// A timer that runs `f` with the socket if it is still connected then.
    pub(crate) fn socket_timer(
        &mut self,
        key: SocketKey,
        delay: std::time::Duration,
        f: impl FnOnce(&mut Socket<'_>) + 'static,
    ) -> u64 {
        self.set_timer(delay, move |shard| {
            if shard.live_socket(key).is_some() {
                f(&mut Socket::new(shard, key));
            }
        })
    }

    /// Wall-clock milliseconds since the Unix epoch, as of the current loop turn.
    pub fn wall_ms(&self) -> u64 {
        self.wall_ms
    }

    /// The connected socket with this id on this core, for code that runs later (a storage
    /// completion via `ServerHandle::run_on`). `None` once it is gone or leaving.
    pub fn socket(&mut self, id: &str) -> Option<crate::api::Socket<'_>> {
        let idx = *self.socket_ids.get(id)?;
        let generation = self.sockets.get(idx as usize)?.generation;
        let key = SocketKey { idx, generation };
        self.live_socket(key)?;
        Some(crate::api::Socket::new(self, key))
    }

    pub fn core(&self) -> CoreId {
        self.core
    }

    /// The number of cores (shards) of the server.
    pub fn cores(&self) -> usize {
        self.n_cores
    }

    /// The monotonic time of the current loop turn (virtual in the simulation).
    pub fn now(&self) -> Instant {
        self.now
    }

    /// The server's limits (`Config::limits`).
    pub fn limits(&self) -> &crate::config::Limits {
        &self.def.config.limits
    }

    /// Set the time for the inputs that follow (the runtime reads the clock once per turn).
    pub fn set_time(&mut self, now: Instant, wall_ms: u64) {
        self.now = now;
        self.wall_ms = wall_ms;
    }

    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Connected sockets (ghosts kept for connection state recovery are not counted).
    pub fn socket_count(&self) -> usize {
        self.sockets.len() - self.ghosts
    }

    /// Disconnected sockets kept for connection state recovery.
    pub fn ghost_count(&self) -> usize {
        self.ghosts
    }

    /// A new offset when connection state recovery is on: unique on this node (the core
    /// number, then a counter).
    fn new_offset(&mut self) -> Option<Arc<str>> {
        if !self.def.config.recovery.enabled {
            return None;
        }
        self.next_offset += 1;
        Some(Arc::from(format!("{:x}.{:x}", self.core, self.next_offset)))
    }

    /// Checks the shard's bookkeeping between two turns (for the simulation and the stateful
    /// fuzz targets); returns the first inconsistency found. See the invariants in
    /// docs/ARCHITECTURE.md: every socket is in its namespace's set, in `socket_ids` and in its
    /// session's list, or in none; rooms hold only live sockets of their namespace, and the
    /// room index agrees with itself; no socket is left half-disconnected.
    #[cfg(any(test, feature = "sim"))]
    #[doc(hidden)]
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut ghosts = 0;
        for (idx, sock) in &self.sockets {
            let idx = idx as u32;
            // A ghost (connection state recovery) stays disconnected, in its namespace and
            // rooms, without a session, until it is recovered or expires.
            let ghost = sock.session == NO_SESSION;
            if ghost {
                ghosts += 1;
                if sock.rec.as_ref().is_none_or(|r| r.ghost_until.is_none()) {
                    return Err(format!("socket {} has no session and is not a ghost", sock.id));
                }
            } else if sock.disconnecting {
                return Err(format!("socket {} still disconnecting between turns", sock.id));
            }
            if self.socket_ids.get(&sock.id) != Some(&idx) {
                return Err(format!("socket {} missing from socket_ids", sock.id));
            }
            if !self.namespaces.get(sock.ns as usize).is_some_and(|n| n.sockets.contains(&idx)) {
                return Err(format!("socket {} missing from its namespace", sock.id));
            }
            if ghost {
                continue;
            }
            match self.sessions.get(sock.session as usize) {
                Some(s) if s.sockets.contains(&(sock.ns, idx)) => {}
                _ => return Err(format!("socket {} missing from its session's list", sock.id)),
            }
        }
        if ghosts != self.ghosts {
            return Err(format!("{ghosts} ghosts found, {} counted", self.ghosts));
        }
        if self.socket_ids.len() != self.sockets.len() {
            return Err(format!("{} socket ids for {} sockets", self.socket_ids.len(), self.sockets.len()));
        }
        for (idx, session) in &self.sessions {
            if self.sids.get(&session.sid) != Some(&(idx as u32)) {
                return Err(format!("session {} missing from sids", session.sid));
            }
            for &(ns, sock) in &session.sockets {
                match self.sockets.get(sock as usize) {
                    Some(s) if s.ns == ns && s.session == idx as u32 => {}
                    _ => return Err(format!("session {} lists a socket it does not own", session.sid)),
                }
            }
        }
        if self.sids.len() != self.sessions.len() {
            return Err(format!("{} sids for {} sessions", self.sids.len(), self.sessions.len()));
        }
        for (ns_idx, ns) in self.namespaces.iter().enumerate() {
            if let Some(&idx) = ns.sockets.iter().find(|&&i| self.sockets.get(i as usize).is_none()) {
                return Err(format!("namespace {ns_idx} lists a removed socket {idx}"));
            }
            for (room, members) in ns.rooms.iter() {
                if members.is_empty() {
                    return Err(format!("empty room {room} kept in namespace {ns_idx}"));
                }
                for &m in members {
                    if !ns.sockets.contains(&m) {
                        return Err(format!("room {room} of namespace {ns_idx} holds a gone socket {m}"));
                    }
                    if !ns.rooms.rooms_of(m).iter().any(|r| r == room) {
                        return Err(format!("room {room}: member {m} does not list it"));
                    }
                }
            }
            for &m in &ns.sockets {
                for r in ns.rooms.rooms_of(m) {
                    if !ns.rooms.contains(m, r) {
                        return Err(format!("socket {m} lists room {r} that does not hold it"));
                    }
                }
            }
        }
        Ok(())
    }

    fn next_generation(&mut self) -> u32 {
        self.generation = self.generation.wrapping_add(1);
        self.generation
    }

    fn new_id(&mut self) -> Arc<str> {
        let random: [u8; SID_RANDOM_BYTES] = self.rng.random();
        Arc::from(make_sid(self.core, random))
    }

    // ----- HTTP -------------------------------------------------------------------------

    /// An HTTP request arrived on connection `conn`.
    pub fn handle_request(
        &mut self,
        conn: ConnKey,
        req: &Request,
        remote: Option<SocketAddr>,
    ) -> RequestOutcome {
        let origin = req.header("origin").map(str::to_owned);
        let cors = &self.def.config.cors;
        let Some(endpoint) = self.def.endpoint_for(&req.path) else {
            let client = self.client_addr(req, remote);
            return self.app_request(conn, req, origin.as_deref(), client);
        };
        if req.method == Method::Options {
            let mut out = Vec::new();
            cors.preflight(req).write_to(req.keep_alive, &mut out);
            return RequestOutcome::Respond(out);
        }
        if !cors.origin_allowed(origin.as_deref()) {
            return self.eio_error(EioError::Forbidden, req, origin.as_deref());
        }
        if req.query_param("EIO").as_deref() != Some("4") {
            return self.eio_error(EioError::UnsupportedProtocolVersion, req, origin.as_deref());
        }
        let engine = &self.def.config.engine;
        let transport = match req.query_param("transport").as_deref() {
            Some("polling") if engine.allow_polling => TransportKind::Polling,
            Some("websocket") if engine.allow_websocket => TransportKind::WebSocket,
            _ => return self.eio_error(EioError::UnknownTransport, req, origin.as_deref()),
        };
        let sid = req.query_param("sid").map(|s| s.into_owned());
        match sid {
            None => self.handshake(conn, endpoint, transport, req, remote, origin.as_deref()),
            Some(sid) => {
                if let Some(owner) = sid_core(&sid)
                    && owner != self.core
                    && (owner as usize) < self.n_cores
                {
                    return RequestOutcome::Handoff(owner);
                }
                let Some(&idx) = self.sids.get(sid.as_str()) else {
                    return self.eio_error(EioError::UnknownSid, req, origin.as_deref());
                };
                if self.sessions[idx as usize].endpoint != endpoint {
                    return self.eio_error(EioError::UnknownSid, req, origin.as_deref());
                }
                match transport {
                    TransportKind::WebSocket => self.ws_upgrade(conn, idx, req, origin.as_deref()),
                    TransportKind::Polling => self.poll(conn, idx, req, origin.as_deref()),
                }
            }
        }
    }

    /// A request for a path that is no Engine.IO endpoint: the application's HTTP handler, or
    /// 404 when there is none.
    /// The client's address: the peer, or behind trusted proxies the one X-Forwarded-For names
    /// (its port unknown, so 0).
    fn client_addr(&self, req: &Request, remote: Option<SocketAddr>) -> Option<SocketAddr> {
        remote.map(|peer| {
            let trusted = &self.def.config.trusted_proxies;
            if trusted.is_empty() {
                return peer;
            }
            let xff = req.headers.iter().filter(|(n, _)| n == "x-forwarded-for").map(|(_, v)| v.as_str());
            let client = crate::http::forwarded::client_ip(peer.ip(), xff, trusted);
            if client == peer.ip() { peer } else { SocketAddr::new(client, 0) }
        })
    }

    fn app_request(
        &mut self,
        conn: ConnKey,
        req: &Request,
        origin: Option<&str>,
        client: Option<SocketAddr>,
    ) -> RequestOutcome {
        // Probes for load balancers and orchestrators, whatever the app: alive while the core
        // answers; ready until shutdown starts draining.
        if req.method == Method::Get {
            match req.path.as_str() {
                "/healthz" => {
                    return RequestOutcome::Respond(simple(
                        200,
                        "application/json",
                        br#"{"status":"ok"}"#,
                        &[],
                        req.keep_alive,
                    ));
                }
                "/metrics" if self.def.config.metrics => {
                    let body = self.render_metrics();
                    return RequestOutcome::Respond(simple(
                        200,
                        "text/plain; version=0.0.4; charset=utf-8",
                        body.as_bytes(),
                        &[],
                        req.keep_alive,
                    ));
                }
                "/readyz" => {
                    let (status, body): (u16, &[u8]) = if self.shutting_down {
                        (503, br#"{"status":"draining"}"#)
                    } else {
                        (200, br#"{"status":"ready"}"#)
                    };
                    return RequestOutcome::Respond(simple(
                        status,
                        "application/json",
                        body,
                        &[],
                        req.keep_alive,
                    ));
                }
                _ => {}
            }
        }
        let Some(app) = self.def.http_app.clone() else {
            return RequestOutcome::Respond(simple(404, "text/plain", b"Not Found", &[], req.keep_alive));
        };
        let cors = &self.def.config.cors;
        if req.method == Method::Options {
            let mut out = Vec::new();
            cors.preflight(req).write_to(req.keep_alive, &mut out);
            return RequestOutcome::Respond(out);
        }
        let headers = cors.headers(origin);
        if !cors.origin_allowed(origin) {
            return RequestOutcome::Respond(simple(
                403,
                "application/json",
                br#"{"error":{"code":"origin_not_allowed","message":"Origin not allowed"}}"#,
                &headers,
                req.keep_alive,
            ));
        }
        let responder = crate::api::http::Responder {
            core: self.core,
            conn,
            keep_alive: req.keep_alive,
            cors: headers,
            client,
        };
        let keep_alive = req.keep_alive;
        let cors_copy = responder.cors.clone();
        match app.handle(req, responder, self) {
            crate::api::http::HttpReply::Now(response) => {
                RequestOutcome::Respond(crate::api::http::finish(response, &cors_copy, keep_alive))
            }
            crate::api::http::HttpReply::Later => RequestOutcome::Defer,
        }
    }

    /// Answer a deferred application request (see `api::http::Responder`).
    pub(crate) fn http_respond(
        &mut self,
        r: crate::api::http::Responder,
        response: crate::http::response::Response,
    ) {
        let bytes = crate::api::http::finish(response, &r.cors, r.keep_alive);
        self.cmds.push(ConnCmd::Bytes(r.conn, bytes));
        self.cmds.push(ConnCmd::Unpark(r.conn));
    }

    fn eio_error(&self, e: EioError, req: &Request, origin: Option<&str>) -> RequestOutcome {
        let headers = self.def.config.cors.headers(origin);
        RequestOutcome::Respond(simple(
            e.status(),
            "application/json",
            e.json().as_bytes(),
            &headers,
            req.keep_alive,
        ))
    }

    fn handshake(
        &mut self,
        conn: ConnKey,
        endpoint: u16,
        transport: TransportKind,
        req: &Request,
        remote: Option<SocketAddr>,
        origin: Option<&str>,
    ) -> RequestOutcome {
        let is_ws = transport == TransportKind::WebSocket;
        if is_ws && !req.is_websocket_upgrade() {
            return self.eio_error(EioError::BadRequest, req, origin);
        }
        if !is_ws && req.method != Method::Get {
            return self.eio_error(EioError::BadHandshakeMethod, req, origin);
        }
        if self.shutting_down {
            return RequestOutcome::RespondClose(simple(503, "text/plain", b"shutting down", &[], false));
        }
        // Behind trusted proxies, the client is named by X-Forwarded-For (the port is unknown).
        let remote = self.client_addr(req, remote);
        if let (Some(limiter), Some(addr)) = (&mut self.handshakes, remote)
            && !limiter.allow(addr.ip(), self.now)
        {
            // Closed, so a flood pays a TCP handshake per attempt.
            CoreStats::bump(&self.stats.handshakes_refused_rate);
            crate::debug!("handshake refused: rate"; core = self.core, client = &addr.ip());
            let e = EioError::TooManyRequests;
            let mut headers = self.def.config.cors.headers(origin);
            headers.push(("Retry-After", "1".to_owned()));
            return RequestOutcome::RespondClose(simple(
                e.status(),
                "application/json",
                e.json().as_bytes(),
                &headers,
                false,
            ));
        }
        let def = self.def.clone();
        let cfg = &def.config;
        let sid = self.new_id();
        let open = packet::open_json(
            &sid,
            !is_ws && cfg.engine.allow_upgrades && cfg.engine.allow_websocket,
            cfg.engine.ping_interval.as_millis() as u64,
            cfg.engine.ping_timeout.as_millis() as u64,
            cfg.engine.max_payload as u64,
        );
        let scfg = SessionConfig {
            ping_interval: cfg.engine.ping_interval,
            ping_timeout: cfg.engine.ping_timeout,
            upgrade_timeout: cfg.engine.upgrade_timeout,
            max_queue_bytes: cfg.limits.max_output_bytes,
        };
        let is_sio = matches!(self.def.endpoints[endpoint as usize].1, Endpoint::SocketIo);
        let connect_deadline = is_sio.then(|| self.now + cfg.connect_timeout);
        let base = Arc::new(HandshakeBase {
            query: req.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect(),
            headers: req.headers.clone(),
            remote_addr: remote,
            url: if req.query.is_empty() { req.path.clone() } else { format!("{}?{}", req.path, req.query) },
            issued_ms: self.wall_ms,
        });
        let generation = self.next_generation();
        let entry = SessionEntry {
            generation,
            sid: sid.clone(),
            eio: Session::new(transport, scfg, self.now),
            endpoint,
            ws_conn: is_ws.then_some(conn),
            get_conn: None,
            get_keep_alive: true,
            get_origin: None,
            probe_conn: None,
            sockets: Vec::new(),
            recovering: Vec::new(),
            decoder: None,
            base,
            connect_deadline,
            armed: None,
            dirty: false,
        };
        let idx = self.sessions.insert(entry) as u32;
        self.sids.insert(sid, idx);
        self.tally.sessions[transport_index(transport)] += 1;
        self.tally.eio_packets_out += 1;
        self.arm(idx);
        let mut open_packet = String::with_capacity(open.len() + 1);
        open_packet.push('0');
        open_packet.push_str(&open);
        if is_ws {
            let mut response = Vec::new();
            let headers = self.def.config.cors.headers(origin);
            if crate::http::websocket::write_handshake_response(req, &headers, &mut response).is_err() {
                self.remove_session(idx);
                return self.eio_error(EioError::BadRequest, req, origin);
            }
            response.extend_from_slice(Outgoing::text(&open_packet).ws_frame());
            RequestOutcome::WebSocket { response, session: SessionKey { idx, generation } }
        } else {
            let headers = self.def.config.cors.headers(origin);
            RequestOutcome::Respond(simple(
                200,
                "text/plain; charset=UTF-8",
                open_packet.as_bytes(),
                &headers,
                req.keep_alive,
            ))
        }
    }

    fn ws_upgrade(&mut self, conn: ConnKey, idx: u32, req: &Request, origin: Option<&str>) -> RequestOutcome {
        let s = &mut self.sessions[idx as usize];
        if !req.is_websocket_upgrade() || !s.eio.can_probe() {
            // A second WebSocket for an upgraded session (or a probe while one is running)
            // is refused without touching the session.
            let e = EioError::BadRequest;
            return RequestOutcome::RespondClose(simple(
                e.status(),
                "application/json",
                e.json().as_bytes(),
                &[],
                false,
            ));
        }
        let headers = self.def.config.cors.headers(origin);
        let mut response = Vec::new();
        if crate::http::websocket::write_handshake_response(req, &headers, &mut response).is_err() {
            return self.eio_error(EioError::BadRequest, req, origin);
        }
        let s = &mut self.sessions[idx as usize];
        s.probe_conn = Some(conn);
        s.eio.handle_probe_open(self.now);
        let generation = s.generation;
        self.after_input(idx);
        RequestOutcome::WebSocket { response, session: SessionKey { idx, generation } }
    }

    fn poll(&mut self, conn: ConnKey, idx: u32, req: &Request, origin: Option<&str>) -> RequestOutcome {
        let now = self.now;
        let headers = self.def.config.cors.headers(origin);
        let outcome = match req.method {
            Method::Get => {
                let s = &mut self.sessions[idx as usize];
                match s.eio.handle_get(now) {
                    GetOutcome::Respond(body) => RequestOutcome::Respond(simple(
                        200,
                        "text/plain; charset=UTF-8",
                        &body,
                        &headers,
                        req.keep_alive,
                    )),
                    GetOutcome::Park => {
                        s.get_conn = Some(conn);
                        s.get_keep_alive = req.keep_alive;
                        s.get_origin = origin.map(str::to_owned);
                        RequestOutcome::Park
                    }
                    GetOutcome::Reject(e) => RequestOutcome::Respond(simple(
                        e.status(),
                        "application/json",
                        e.json().as_bytes(),
                        &headers,
                        req.keep_alive,
                    )),
                }
            }
            Method::Post => {
                let s = &mut self.sessions[idx as usize];
                match s.eio.handle_post(&req.body, now) {
                    Ok(()) => {
                        RequestOutcome::Respond(simple(200, "text/html", b"ok", &headers, req.keep_alive))
                    }
                    Err(e) => RequestOutcome::Respond(simple(
                        e.status(),
                        "application/json",
                        e.json().as_bytes(),
                        &headers,
                        req.keep_alive,
                    )),
                }
            }
            _ => RequestOutcome::Respond(simple(
                405,
                "text/plain",
                b"Method Not Allowed",
                &headers,
                req.keep_alive,
            )),
        };
        self.after_input(idx);
        outcome
    }

    /// A POST body was larger than `max_payload`: the reference answers 413 and closes the
    /// session. Returns the response to write.
    pub fn handle_oversized_post(&mut self, req: &Request) -> Vec<u8> {
        CoreStats::bump(&self.stats.payload_too_large);
        if self.def.endpoint_for(&req.path).is_none() && self.def.http_app.is_some() {
            // An application route: its errors are JSON.
            let headers = self.def.config.cors.headers(req.header("origin"));
            return simple(
                413,
                "application/json",
                br#"{"error":{"code":"payload_too_large","message":"the request body is too large"}}"#,
                &headers,
                false,
            );
        }
        let sid = req.query_param("sid");
        let sid = sid.as_deref();
        if let Some(sid) = sid
            && let Some(owner) = sid_core(sid)
            && owner != self.core
            && (owner as usize) < self.n_cores
        {
            // The body is not buffered, so the request cannot follow its session: tell the
            // owner to close it.
            self.outbox.push((
                owner,
                ShardMsg::CloseSession { sid: sid.to_owned(), reason: CloseReason::TransportError },
            ));
        } else if let Some(&idx) = sid.and_then(|s| self.sids.get(s)) {
            self.sessions[idx as usize].eio.close(CloseReason::TransportError);
            self.after_input(idx);
        }
        simple(413, "text/plain", b"Payload Too Large", &[], false)
    }

    // ----- WebSocket --------------------------------------------------------------------

    /// A complete WebSocket message arrived on `conn`, which carries `session`.
    pub fn handle_ws(&mut self, conn: ConnKey, session: SessionKey, msg: WsInput<'_>) {
        let now = self.now;
        let Some(s) = self.session_mut(session) else {
            return;
        };
        if s.probe_conn == Some(conn) {
            s.eio.handle_probe(msg, now);
            // After `5` the probe is the transport at once: the client may have sent more
            // messages in the same read, and they belong to the session.
            if s.eio.transport() == TransportKind::WebSocket {
                s.ws_conn = s.probe_conn.take();
            }
        } else if s.ws_conn == Some(conn) {
            s.eio.handle_ws(msg, now);
        } else {
            return;
        }
        self.after_input(session.idx);
    }

    /// A connection that carried `session` (WebSocket or parked poll) ended.
    pub fn handle_conn_closed(&mut self, conn: ConnKey, session: SessionKey, error: bool) {
        let Some(s) = self.session_mut(session) else {
            return;
        };
        if s.probe_conn == Some(conn) {
            s.probe_conn = None;
            s.eio.handle_probe_closed();
        } else if s.ws_conn == Some(conn) {
            s.ws_conn = None;
            s.eio.handle_ws_closed(error);
        } else if s.get_conn == Some(conn) {
            s.get_conn = None;
            s.eio.handle_get_aborted();
        } else {
            return;
        }
        self.after_input(session.idx);
    }

    /// The WebSocket `conn` of `session` overflowed its output limit: close the session as a
    /// slow consumer (the runtime drops the connection).
    pub fn handle_slow_consumer(&mut self, conn: ConnKey, session: SessionKey) {
        let Some(s) = self.session_mut(session) else {
            return;
        };
        if s.ws_conn == Some(conn) {
            s.ws_conn = None;
        } else if s.probe_conn == Some(conn) {
            s.probe_conn = None;
            s.eio.handle_probe_closed();
            return self.after_input(session.idx);
        }
        s.eio.close(CloseReason::SlowConsumer);
        self.after_input(session.idx);
    }

    /// The session a parked poll on `conn` belongs to, so the runtime can report its closing.
    pub fn session_of_sid(&self, sid: &str) -> Option<SessionKey> {
        let &idx = self.sids.get(sid)?;
        Some(SessionKey { idx, generation: self.sessions[idx as usize].generation })
    }

    fn session_mut(&mut self, key: SessionKey) -> Option<&mut SessionEntry> {
        self.sessions.get_mut(key.idx as usize).filter(|s| s.generation == key.generation)
    }

    // ----- timers -----------------------------------------------------------------------

    fn arm(&mut self, idx: u32) {
        let Some(s) = self.sessions.get_mut(idx as usize) else {
            return;
        };
        let deadline = match (s.eio.poll_timeout(), s.connect_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if let Some(d) = deadline
            && s.armed.is_none_or(|a| d < a)
        {
            s.armed = Some(d);
            let t = Timer::Session { idx, generation: s.generation };
            self.timers.push(Reverse((d, t)));
        }
    }

    /// When `handle_timeouts` must next run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((t, _))| *t)
    }

    /// Run every timer due at `now`.
    pub fn handle_timeouts(&mut self) {
        let now = self.now;
        while let Some(Reverse((t, timer))) = self.timers.peek().copied() {
            if t > now {
                break;
            }
            self.timers.pop();
            match timer {
                Timer::Session { idx, generation } => {
                    let Some(s) = self.sessions.get_mut(idx as usize) else {
                        continue;
                    };
                    if s.generation != generation || s.armed != Some(t) {
                        continue;
                    }
                    s.armed = None;
                    if s.connect_deadline.is_some_and(|d| now >= d) {
                        s.connect_deadline = None;
                        if s.sockets.is_empty() {
                            s.eio.close(CloseReason::ForcedClose);
                        }
                    }
                    s.eio.handle_timeout(now);
                    self.after_input(idx);
                }
                Timer::Ack { idx, generation, id } => {
                    let key = SocketKey { idx, generation };
                    let Some(cb) = self.socket_mut(key).and_then(|s| s.acks.remove(&id)) else {
                        continue;
                    };
                    cb(&mut Socket::new(self, key), Err(AckError::Timeout));
                }
                Timer::App { id } => {
                    if let Some(f) = self.app_timers.remove(&id) {
                        f(self);
                    }
                }
            }
        }
    }

    // ----- session output ---------------------------------------------------------------

    fn after_input(&mut self, idx: u32) {
        if let Some(s) = self.sessions.get_mut(idx as usize)
            && !s.dirty
        {
            s.dirty = true;
            self.dirty.push(idx);
        }
    }

    /// Process every session touched since the last call: deliver its events upwards, turn
    /// its transmits into connection commands, drop it when it closed, re-arm its timer.
    pub fn flush(&mut self) {
        while !self.dirty.is_empty() {
            let dirty = std::mem::take(&mut self.dirty);
            for idx in dirty {
                if let Some(s) = self.sessions.get_mut(idx as usize) {
                    s.dirty = false;
                    self.process_session(idx);
                }
            }
        }
    }

    fn process_session(&mut self, idx: u32) {
        loop {
            let Some(s) = self.sessions.get_mut(idx as usize) else {
                return;
            };
            if let Some(ev) = s.eio.poll_event() {
                match ev {
                    SessionEvent::Message(d) => self.handle_message(idx, d),
                    SessionEvent::Upgraded => {
                        self.tally.sessions[0] = self.tally.sessions[0].saturating_sub(1);
                        self.tally.sessions[1] += 1;
                        let s = &mut self.sessions[idx as usize];
                        if s.probe_conn.is_some() {
                            s.ws_conn = s.probe_conn.take();
                        }
                    }
                    SessionEvent::Closed(reason) => {
                        self.drain_transmits(idx);
                        self.close_session(idx, reason);
                        return;
                    }
                }
                continue;
            }
            if !self.drain_transmits(idx) {
                break;
            }
        }
        self.take_counts(idx);
        self.arm(idx);
    }

    /// Add what the session counted to the shard's totals.
    fn take_counts(&mut self, idx: u32) {
        if let Some(s) = self.sessions.get_mut(idx as usize) {
            let c = s.eio.take_counts();
            self.tally.eio_packets_in += c.received;
            self.tally.eio_packets_out += c.sent;
            self.tally.dropped_packets += c.dropped;
        }
    }

    /// Returns whether anything was transmitted.
    fn drain_transmits(&mut self, idx: u32) -> bool {
        let mut any = false;
        let s = &mut self.sessions[idx as usize];
        while let Some(t) = s.eio.poll_transmit() {
            any = true;
            match t {
                Transmit::Ws(o) => {
                    if let Some(c) = s.ws_conn {
                        self.cmds.push(ConnCmd::Frame(c, o));
                    }
                }
                Transmit::Probe(o) => {
                    if let Some(c) = s.probe_conn {
                        self.cmds.push(ConnCmd::Frame(c, o));
                    }
                }
                Transmit::CloseProbe => {
                    if let Some(c) = s.probe_conn.take() {
                        self.cmds.push(ConnCmd::Close(c));
                    }
                }
                Transmit::PollResponse(body) => {
                    if let Some(c) = s.get_conn.take() {
                        let headers = self.def.config.cors.headers(s.get_origin.as_deref());
                        let bytes =
                            simple(200, "text/plain; charset=UTF-8", &body, &headers, s.get_keep_alive);
                        self.cmds.push(ConnCmd::Bytes(c, bytes));
                        self.cmds.push(ConnCmd::Unpark(c));
                    }
                }
            }
        }
        any
    }

    fn close_session(&mut self, idx: u32, reason: CloseReason) {
        if reason == CloseReason::SlowConsumer {
            CoreStats::bump(&self.stats.slow_consumers);
            crate::info!("slow consumer disconnected"; core = self.core, max_output_bytes = self.def.config.limits.max_output_bytes);
        } else {
            crate::debug!("session closed"; core = self.core, reason = reason.as_str());
        }
        self.tally.session_closes[close_index(reason)] += 1;
        // Connection state recovery keeps the sockets of a session lost for a recoverable
        // reason (socket.io's list: transport close or error, ping timeout, forced close,
        // server shutting down) as ghosts; a shutting-down process keeps nothing.
        let keep = self.def.config.recovery.enabled
            && !self.shutting_down
            && matches!(
                reason,
                CloseReason::TransportClose
                    | CloseReason::TransportError
                    | CloseReason::PingTimeout
                    | CloseReason::ForcedClose
            );
        let sockets = std::mem::take(&mut self.sessions[idx as usize].sockets);
        for (_, sock) in sockets {
            let generation = self.sockets[sock as usize].generation;
            self.leave_socket(SocketKey { idx: sock, generation }, reason.into(), keep);
        }
        self.remove_session(idx);
    }

    fn remove_session(&mut self, idx: u32) {
        self.take_counts(idx);
        let s = self.sessions.remove(idx as usize);
        let t = &mut self.tally.sessions[transport_index(s.eio.transport())];
        *t = t.saturating_sub(1);
        self.sids.remove(&s.sid);
        for c in [s.ws_conn, s.probe_conn, s.get_conn].into_iter().flatten() {
            self.cmds.push(ConnCmd::Close(c));
        }
    }

    /// Connection commands produced since the last call.
    pub fn take_commands(&mut self) -> Vec<ConnCmd> {
        std::mem::take(&mut self.cmds)
    }

    /// Messages for other cores produced since the last call.
    pub fn take_outbox(&mut self) -> Vec<(CoreId, ShardMsg)> {
        std::mem::take(&mut self.outbox)
    }

    // ----- Socket.IO --------------------------------------------------------------------

    fn handle_message(&mut self, idx: u32, data: Data) {
        let endpoint = self.sessions[idx as usize].endpoint;
        if let Endpoint::Engine(app) = &self.def.endpoints[endpoint as usize].1 {
            let app = app.clone();
            let generation = self.sessions[idx as usize].generation;
            app.on_message(&mut EngineSocket { shard: self, session: SessionKey { idx, generation } }, data);
            return;
        }
        let limits = DecoderLimits {
            max_attachments: self.def.config.limits.max_attachments,
            ..DecoderLimits::default()
        };
        let s = &mut self.sessions[idx as usize];
        let decoder = s.decoder.get_or_insert_with(|| Box::new(Decoder::new(limits)));
        let decoded = match data {
            Data::Text(t) => decoder.feed_text(&t),
            Data::Binary(b) => decoder.feed_binary(b),
        };
        match decoded {
            Ok(Some(p)) => self.handle_packet(idx, p),
            Ok(None) => {}
            Err(_) => {
                CoreStats::bump(&self.stats.malformed_packets);
                s.eio.close(CloseReason::ForcedClose);
            }
        }
    }

    fn handle_packet(&mut self, idx: u32, p: sio::Packet) {
        self.tally.sio_packets_in += 1;
        let ns_idx = self.def.ns_index.get(p.ns.as_str()).copied();
        let socket = ns_idx.and_then(|n| {
            self.sessions[idx as usize].sockets.iter().find(|(sn, _)| *sn == n).map(|&(_, i)| i)
        });
        match (p.kind, socket) {
            (PacketKind::Connect, None) => self.connect(idx, ns_idx, &p),
            (PacketKind::Connect, Some(_)) => {}
            (PacketKind::Disconnect, Some(sock)) => {
                let key = SocketKey { idx: sock, generation: self.sockets[sock as usize].generation };
                self.remove_socket(key, DisconnectReason::ClientNamespaceDisconnect);
            }
            (PacketKind::Event | PacketKind::BinaryEvent, Some(sock)) => {
                let key = SocketKey { idx: sock, generation: self.sockets[sock as usize].generation };
                let Ok((name, args)) = p.event() else {
                    CoreStats::bump(&self.stats.malformed_packets);
                    self.sessions[idx as usize].eio.close(CloseReason::ForcedClose);
                    return;
                };
                let ev = Event::new(name.into_owned(), Args::from_values(&args), p.attachments.clone(), p.id);
                self.dispatch(key, ev);
            }
            (PacketKind::Ack | PacketKind::BinaryAck, Some(sock)) => {
                let key = SocketKey { idx: sock, generation: self.sockets[sock as usize].generation };
                let (Some(id), Ok(args)) = (p.id, p.ack_args()) else {
                    CoreStats::bump(&self.stats.malformed_packets);
                    self.sessions[idx as usize].eio.close(CloseReason::ForcedClose);
                    return;
                };
                let args = Args::from_values(&args);
                if let Some(cb) = self.sockets[sock as usize].acks.remove(&id) {
                    cb(&mut Socket::new(self, key), Ok(AckResponse { args, attachments: p.attachments }));
                }
            }
            // A packet for a namespace the client has not joined, or a CONNECT_ERROR from a
            // client: the reference closes the connection.
            _ => self.sessions[idx as usize].eio.close(CloseReason::ForcedClose),
        }
    }

    fn connect(&mut self, idx: u32, ns_idx: Option<u16>, p: &sio::Packet) {
        // The answer: CONNECT or CONNECT_ERROR.
        self.tally.sio_packets_out += 1;
        let mut text = String::from("4");
        let Some(ns_idx) = ns_idx else {
            sio::encode_connect_error(&p.ns, "Invalid namespace", None, &mut text);
            self.send_session(idx, Outgoing::text(&text));
            return;
        };
        if self.sessions[idx as usize].recovering.iter().any(|r| r.ns == ns_idx) {
            // A second CONNECT while the first waits for other cores: the first answers.
            return;
        }
        let base = self.sessions[idx as usize].base.clone();
        let auth = p.data.clone().unwrap_or_else(|| RawValue::from_string("{}".into()).expect("{} is JSON"));
        let handshake = Rc::new(Handshake { base, auth });
        let def = self.def.clone();
        let ns = &def.namespaces[ns_idx as usize];
        // Middlewares run for a recovering socket too (socket.io skips them by default): a
        // handshake that is refused now (an expired token) gets nothing back.
        for mw in &ns.middlewares {
            if let Err(e) = mw(&handshake) {
                let data = e.data.as_ref().and_then(|d| serde_json::value::to_raw_value(d).ok());
                sio::encode_connect_error(&p.ns, &e.message, data.as_deref(), &mut text);
                self.send_session(idx, Outgoing::text(&text));
                return;
            }
        }
        if def.config.recovery.enabled
            && let Some((pid, offset)) = recovery_auth(&handshake.auth)
        {
            if let Some((sock, missed_from)) = self.find_ghost(&pid, &offset, ns_idx) {
                self.revive(idx, sock, missed_from, handshake);
                return;
            }
            if self.n_cores > 1 {
                // The ghost may be on any core (the client's new connection went wherever the
                // kernel put it): ask them all, answer the CONNECT when they have answered.
                let session = SessionKey { idx, generation: self.sessions[idx as usize].generation };
                for c in (0..self.n_cores).filter(|&c| c as CoreId != self.core) {
                    self.outbox.push((
                        c as CoreId,
                        ShardMsg::Recover {
                            pid: pid.clone(),
                            offset: offset.clone(),
                            ns: ns_idx,
                            from: self.core,
                            session,
                        },
                    ));
                }
                self.sessions[idx as usize].recovering.push(Recovering {
                    ns: ns_idx,
                    handshake,
                    waiting: self.n_cores - 1,
                });
                return;
            }
        }
        self.create_socket(idx, ns_idx, handshake, None);
    }

    /// A new socket of session `idx` in namespace `ns_idx`: fresh, or `recovered` from
    /// another core (same id, rooms and log; the packets it missed are sent after CONNECT).
    fn create_socket(
        &mut self,
        idx: u32,
        ns_idx: u16,
        handshake: Rc<Handshake>,
        recovered: Option<Box<RecoveredSocket>>,
    ) {
        let (id, rec, rooms, missed_from) = match recovered {
            Some(r) => {
                let RecoveredSocket { id, pid, rooms, log, missed_from } = *r;
                let mut rec = SocketRecovery::new(pid);
                rec.log_bytes = log.iter().map(|(_, p)| packets_bytes(p)).sum();
                rec.log = log.into();
                (id, Some(Box::new(rec)), rooms, Some(missed_from))
            }
            None => {
                let id = self.new_id();
                let rec = self.def.config.recovery.enabled.then(|| {
                    let random: [u8; SID_RANDOM_BYTES] = self.secret_rng.random();
                    Box::new(SocketRecovery::new(Arc::from(make_sid(self.core, random))))
                });
                (id, rec, Vec::new(), None)
            }
        };
        let generation = self.next_generation();
        let pid = rec.as_ref().map(|r| r.pid.clone());
        let sock = self.sockets.insert(SocketEntry {
            generation,
            id: id.clone(),
            ns: ns_idx,
            session: idx,
            handshake,
            acks: HashMap::new(),
            next_ack: 0,
            handlers: Vec::new(),
            data: None,
            disconnecting: false,
            recovered: missed_from.is_some(),
            rec,
            forward_to: None,
            fenced: 0,
            shared_seen: None,
            merging: missed_from.map(|_| Box::default()),
            keep_rooms: false,
        }) as u32;
        self.socket_ids.insert(id.clone(), sock);
        if let Some(pid) = pid {
            self.pids.insert(pid, sock);
        }
        self.namespaces[ns_idx as usize].sockets.insert(sock);
        for room in rooms {
            if self.namespaces[ns_idx as usize].rooms.join(sock, &room) == Change::Occupancy {
                self.announce_occupancy(ns_idx, room, true);
            }
        }
        if sid_core(&id) != Some(self.core) {
            // Its id names the core it came from: emits to its id must find it here.
            self.announce_occupancy_to_all(ns_idx, id.clone(), true);
        }
        self.attach(idx, SocketKey { idx: sock, generation }, missed_from.unwrap_or(usize::MAX));
    }

    /// Deliver a packet with an offset to socket `idx`: logged, and sent unless it is a ghost;
    /// skipped when a merging socket already had it. Returns false when a ghost overflowed
    /// its log and must be dropped.
    fn deliver_to_socket(&mut self, idx: u32, offset: &Arc<str>, packets: &[Outgoing]) -> bool {
        let max = self.def.config.recovery.max_buffer_bytes;
        let entry = &mut self.sockets[idx as usize];
        if let Some(m) = entry.merging.as_mut()
            && !m.seen.insert(offset.clone())
        {
            return true;
        }
        if let Some(seen) = entry.shared_seen.as_mut()
            && seen.remove(offset)
        {
            if seen.is_empty() {
                entry.shared_seen = None;
            }
            return true;
        }
        if let Some(rec) = entry.rec.as_mut()
            && !rec.record(offset, packets, max)
        {
            return false;
        }
        let session = entry.session;
        if session != NO_SESSION {
            for o in packets {
                self.send_session(session, o.clone());
            }
        }
        true
    }

    /// The ghost `sock` of this core comes back on session `idx`.
    fn revive(&mut self, idx: u32, sock: u32, missed_from: usize, handshake: Rc<Handshake>) {
        let generation = self.next_generation();
        let entry = &mut self.sockets[sock as usize];
        // A new generation: timers and callbacks of its previous life do not apply.
        entry.generation = generation;
        entry.session = idx;
        entry.handshake = handshake;
        entry.disconnecting = false;
        entry.recovered = true;
        if let Some(rec) = entry.rec.as_mut() {
            rec.ghost_until = None;
        }
        self.ghosts -= 1;
        self.attach(idx, SocketKey { idx: sock, generation }, missed_from);
    }

    /// Tie socket `key` to session `idx`, answer the CONNECT (with `pid` when recovery is on),
    /// send the logged packets from index `missed_from` on, and run the connect handler.
    fn attach(&mut self, idx: u32, key: SocketKey, missed_from: usize) {
        let entry = &self.sockets[key.idx as usize];
        let ns_idx = entry.ns;
        let def = self.def.clone();
        let ns = &def.namespaces[ns_idx as usize];
        let mut text = String::from("4");
        let mut missed = Vec::new();
        match &entry.rec {
            Some(rec) => {
                sio::encode_connect_ok_with_pid(&ns.name, &entry.id, &rec.pid, &mut text);
                missed.extend(rec.log.iter().skip(missed_from).flat_map(|(_, p)| p.iter().cloned()));
            }
            None => sio::encode_connect_ok(&ns.name, &entry.id, &mut text),
        }
        let s = &mut self.sessions[idx as usize];
        s.sockets.push((ns_idx, key.idx));
        s.connect_deadline = None;
        self.send_session(idx, Outgoing::text(&text));
        for o in missed {
            self.send_session(idx, o);
        }
        if let Some(h) = &ns.on_connect {
            h(&mut Socket::new(self, key));
        }
    }

    fn dispatch(&mut self, key: SocketKey, ev: Event) {
        let per_socket = self.sockets[key.idx as usize]
            .handlers
            .iter()
            .find(|(n, _)| *n == ev.name)
            .map(|(_, h)| h.clone());
        if let Some(h) = per_socket {
            h(&mut Socket::new(self, key), ev);
            return;
        }
        let def = self.def.clone();
        let ns = &def.namespaces[self.sockets[key.idx as usize].ns as usize];
        if let Some(h) = ns.events.get(ev.name.as_str()) {
            h(&mut Socket::new(self, key), ev);
        } else if let Some(h) = &ns.on_any {
            h(&mut Socket::new(self, key), ev);
        }
    }

    /// Remove a socket from its namespace: disconnect handler (rooms still readable), pending
    /// acks answered with `Disconnected`, rooms left.
    fn remove_socket(&mut self, key: SocketKey, reason: DisconnectReason) {
        self.leave_socket(key, reason, false);
    }

    /// `remove_socket`, or with `ghost` (and recovery on) keep it as a ghost: it stays in its
    /// rooms and logs what they receive until it is recovered or `Recovery::window` passes.
    /// Its disconnect handler runs either way, as socket.io's does.
    fn leave_socket(&mut self, key: SocketKey, reason: DisconnectReason, ghost: bool) {
        // Handlers below may disconnect this socket again (directly or through a callback):
        // the flag makes that a no-op, and makes emits to the leaving socket go nowhere.
        match self.socket_mut(key) {
            Some(s) if !s.disconnecting => s.disconnecting = true,
            _ => return,
        }
        self.tally.socket_disconnects[disconnect_index(reason)] += 1;
        let ghost = ghost && self.sockets[key.idx as usize].rec.is_some();
        let ns_idx = self.sockets[key.idx as usize].ns;
        // A ghost keeps the rooms it had at the cut, whatever its disconnect handler leaves
        // (socket.io saves them before the handler runs): `leave` ignores it meanwhile. Had it
        // left and joined again, other cores could miss broadcasts between the two
        // announcements.
        self.sockets[key.idx as usize].keep_rooms = ghost;
        let def = self.def.clone();
        crate::debug!("socket disconnected"; core = self.core, ns = &*def.namespaces[ns_idx as usize].name, reason = reason.as_str());
        if let Some(h) = &def.namespaces[ns_idx as usize].on_disconnect {
            h(&mut Socket::new(self, key), reason);
        }
        let acks = std::mem::take(&mut self.sockets[key.idx as usize].acks);
        for (_, cb) in acks {
            cb(&mut Socket::new(self, key), Err(AckError::Disconnected));
        }
        if !ghost {
            self.drop_socket(key.idx);
            return;
        }
        self.sockets[key.idx as usize].keep_rooms = false;
        let window = self.def.config.recovery.window;
        let until = self.now + window;
        let entry = &mut self.sockets[key.idx as usize];
        let session = std::mem::replace(&mut entry.session, NO_SESSION);
        entry.handlers.clear();
        entry.data = None;
        let rec = entry.rec.as_mut().expect("checked above");
        rec.ghost_until = Some(until);
        let pid = rec.pid.clone();
        self.ghosts += 1;
        if let Some(s) = self.sessions.get_mut(session as usize) {
            s.sockets.retain(|&(_, i)| i != key.idx);
        }
        self.set_timer(window, move |shard| shard.expire_ghost(&pid));
    }

    /// Forget a socket for good: ids, namespace, rooms (announced), session.
    fn drop_socket(&mut self, idx: u32) {
        let Some(entry) = self.sockets.try_remove(idx as usize) else {
            return;
        };
        self.socket_ids.remove(&entry.id);
        if let Some(rec) = &entry.rec {
            self.pids.remove(&rec.pid);
        }
        if entry.session == NO_SESSION {
            self.ghosts -= 1;
        }
        let ns_idx = entry.ns;
        let ns = &mut self.namespaces[ns_idx as usize];
        ns.sockets.remove(&idx);
        for room in ns.rooms.leave_all(idx) {
            self.announce_occupancy(ns_idx, room, false);
        }
        if sid_core(&entry.id) != Some(self.core) {
            // A recovered socket whose id names another core (see `create_socket`).
            self.announce_occupancy_to_all(ns_idx, entry.id.clone(), false);
        }
        if let Some(s) = self.sessions.get_mut(entry.session as usize) {
            s.sockets.retain(|&(_, i)| i != idx);
        }
    }

    /// The recovery window of the ghost with this private id ended (unless it was recovered,
    /// or disconnected again later, in the meantime).
    fn expire_ghost(&mut self, pid: &str) {
        let Some(&idx) = self.pids.get(pid) else {
            return;
        };
        let due = self.sockets[idx as usize]
            .rec
            .as_ref()
            .and_then(|r| r.ghost_until)
            .is_some_and(|t| t <= self.now);
        if due {
            self.drop_socket(idx);
        }
    }

    /// The ghost with private id `pid` in namespace `ns`, if it is within its window and
    /// `offset` is in its log; with the index of the first packet the client missed.
    fn find_ghost(&self, pid: &str, offset: &str, ns: u16) -> Option<(u32, usize)> {
        let &idx = self.pids.get(pid)?;
        let entry = &self.sockets[idx as usize];
        let rec = entry.rec.as_ref()?;
        if entry.ns != ns || rec.ghost_until.is_none_or(|t| self.now >= t) {
            return None;
        }
        Some((idx, rec.after(offset)?))
    }

    pub(crate) fn socket_mut(&mut self, key: SocketKey) -> Option<&mut SocketEntry> {
        self.sockets.get_mut(key.idx as usize).filter(|s| s.generation == key.generation)
    }

    pub(crate) fn socket_ref(&self, key: SocketKey) -> Option<&SocketEntry> {
        self.sockets.get(key.idx as usize).filter(|s| s.generation == key.generation)
    }

    /// The socket if it is connected and not in the middle of leaving.
    pub(crate) fn live_socket(&self, key: SocketKey) -> Option<&SocketEntry> {
        self.socket_ref(key).filter(|s| !s.disconnecting)
    }

    fn send_session(&mut self, idx: u32, o: Outgoing) {
        if let Some(s) = self.sessions.get_mut(idx as usize) {
            s.eio.send(o);
            self.after_input(idx);
        }
    }

    // ----- operations used by the API ---------------------------------------------------

    /// Emit to one socket. `ack` registers a callback for the client's acknowledgement.
    pub(crate) fn emit_to(
        &mut self,
        key: SocketKey,
        event: &str,
        args_inner: &str,
        attachments: Vec<Bytes>,
        ack: Option<(AckCallback, Duration)>,
    ) {
        let now = self.now;
        let def = self.def.clone();
        if self.live_socket(key).is_none() {
            // Emitting to a socket that is gone or leaving reaches nobody; an ack callback
            // learns that at once.
            if let Some((cb, _)) = ack {
                cb(&mut Socket::new(self, key), Err(AckError::Disconnected));
            }
            return;
        }
        let Some(sock) = self.socket_mut(key) else {
            return;
        };
        let id = ack.map(|(cb, timeout)| {
            let id = sock.next_ack;
            sock.next_ack += 1;
            sock.acks.insert(id, cb);
            (id, now + timeout)
        });
        let ns_name = &def.namespaces[sock.ns as usize].name;
        let session = sock.session;
        if let Some((ack_id, deadline)) = id {
            self.timers.push(Reverse((
                deadline,
                Timer::Ack { idx: key.idx, generation: key.generation, id: ack_id },
            )));
        }
        self.tally.sio_packets_out += 1;
        // With recovery on, an emit without ack carries an offset and is logged, as
        // socket.io sends it through its adapter to the socket's own room.
        let offset = if id.is_none() { self.new_offset() } else { None };
        let packets = encode_event_packets(
            ns_name,
            id.map(|(i, _)| i),
            event,
            args_inner,
            &attachments,
            offset.as_deref(),
        );
        if let Some(offset) = &offset
            && let Some(rec) = self.sockets[key.idx as usize].rec.as_mut()
        {
            rec.record(offset, &packets, def.config.recovery.max_buffer_bytes);
        }
        for o in packets {
            self.send_session(session, o);
        }
    }

    pub(crate) fn ack_to(&mut self, key: SocketKey, ack_id: u64, args_inner: &str, attachments: Vec<Bytes>) {
        let Some(sock) = self.live_socket(key) else {
            return;
        };
        let ns_name = &self.def.namespaces[sock.ns as usize].name;
        let session = sock.session;
        let mut text = String::from("4");
        sio::encode_ack(ns_name, ack_id, args_inner, attachments.len(), &mut text);
        self.tally.sio_packets_out += 1;
        self.send_session(session, Outgoing::text(&text));
        for a in &attachments {
            self.send_session(session, Outgoing::binary(a));
        }
    }

    pub(crate) fn join(&mut self, key: SocketKey, room: &str) -> bool {
        let max = self.def.config.limits.max_rooms_per_socket;
        let Some(sock) = self.live_socket(key) else {
            return false;
        };
        if *sock.id == *room {
            return true;
        }
        let ns_idx = sock.ns;
        let ns = &mut self.namespaces[ns_idx as usize];
        if ns.rooms.room_count(key.idx) + 1 >= max && !ns.rooms.contains(key.idx, room) {
            CoreStats::bump(&self.stats.room_joins_refused);
            return false;
        }
        if ns.rooms.join(key.idx, room) == Change::Occupancy {
            self.announce_occupancy(ns_idx, Room::from(room), true);
        }
        true
    }

    pub(crate) fn leave(&mut self, key: SocketKey, room: &str) {
        let Some(sock) = self.socket_ref(key).filter(|s| !s.keep_rooms) else {
            return;
        };
        let ns_idx = sock.ns;
        if self.namespaces[ns_idx as usize].rooms.leave(key.idx, room) == Change::Occupancy {
            self.announce_occupancy(ns_idx, Room::from(room), false);
        }
    }

    pub(crate) fn rooms_of(&self, key: SocketKey) -> Vec<String> {
        let Some(sock) = self.socket_ref(key) else {
            return Vec::new();
        };
        let mut v = vec![sock.id.to_string()];
        v.extend(self.namespaces[sock.ns as usize].rooms.rooms_of(key.idx).iter().map(|r| r.to_string()));
        v
    }

    pub(crate) fn set_handler(&mut self, key: SocketKey, event: &str, h: SocketHandler) {
        if let Some(sock) = self.socket_mut(key) {
            sock.handlers.retain(|(n, _)| n != event);
            sock.handlers.push((event.to_owned(), h));
        }
    }

    /// Server-side disconnect of one socket: `41` to the client, then removal; with
    /// `close_session` the whole Engine.IO session is closed too.
    pub(crate) fn disconnect(&mut self, key: SocketKey, close_session: bool) {
        let Some(sock) = self.socket_ref(key) else {
            return;
        };
        let session = sock.session;
        if !sock.disconnecting {
            let mut text = String::from("4");
            sio::encode_disconnect(&self.def.namespaces[sock.ns as usize].name, &mut text);
            self.tally.sio_packets_out += 1;
            self.send_session(session, Outgoing::text(&text));
            self.remove_socket(key, DisconnectReason::ServerNamespaceDisconnect);
        }
        if close_session && let Some(s) = self.sessions.get_mut(session as usize) {
            s.eio.close(CloseReason::ForcedClose);
            self.after_input(session);
        }
    }

    fn announce_occupancy(&mut self, ns: u16, room: Room, present: bool) {
        if sid_core(&room).is_some() && self.socket_ids.contains_key(&room) {
            return;
        }
        self.announce_occupancy_to_all(ns, room, present);
    }

    fn announce_occupancy_to_all(&mut self, ns: u16, room: Room, present: bool) {
        for c in 0..self.n_cores {
            if c as CoreId != self.core {
                self.outbox.push((
                    c as CoreId,
                    ShardMsg::Occupancy { ns, room: room.clone(), core: self.core, present },
                ));
            }
        }
    }

    /// Broadcast in namespace `ns` to `rooms` (everyone when empty) minus `except` rooms and
    /// minus the socket `skip`. Encoded once, delivered here, sent once to each other core that
    /// may have members.
    pub(crate) fn broadcast(&mut self, to: Audience, event: &str, args_inner: &str, attachments: &[Bytes]) {
        let Audience { ns, rooms, except, skip } = to;
        self.tally.broadcasts += 1;
        if let Some(adapter) = &self.def.adapter {
            // Other nodes leave out the sender through its own room.
            let mut except = except.clone();
            if let Some(sock) = skip.and_then(|k| self.socket_ref(k)) {
                except.push(sock.id.clone());
            }
            adapter.publish(ClusterBroadcast {
                ns: self.def.namespaces[ns as usize].name.clone(),
                rooms: rooms.clone(),
                except,
                event: event.to_owned(),
                args_inner: args_inner.to_owned(),
                attachments: attachments.to_vec(),
            });
        }
        let ns_name = self.def.namespaces[ns as usize].name.clone();
        let offset = self.new_offset();
        let packets = encode_event_packets(&ns_name, None, event, args_inner, attachments, offset.as_deref());
        let msg = BroadcastMsg { ns, rooms, except, packets, offset, origin: Some(self.core) };
        let mut mask: u64 = 0;
        if msg.rooms.is_empty() {
            mask = u64::MAX;
        } else {
            let state = &self.namespaces[ns as usize];
            for r in &msg.rooms {
                mask |= state.remote.get(r).copied().unwrap_or(0);
                if let Some(c) = sid_core(r) {
                    mask |= 1u64 << (c as u32 % 64);
                }
            }
        }
        mask &= !(1u64 << self.core);
        self.deliver_local(&msg, skip.map(|k| k.idx));
        if mask != 0 {
            let msg = Arc::new(msg);
            for c in 0..self.n_cores.min(64) {
                if mask & (1 << c) != 0 {
                    self.outbox.push((c as CoreId, ShardMsg::Broadcast(msg.clone())));
                }
            }
        }
    }

    fn deliver_local(&mut self, msg: &BroadcastMsg, skip: Option<u32>) {
        let state = &self.namespaces[msg.ns as usize];
        let mut excluded: HashSet<u32> = HashSet::new();
        for r in &msg.except {
            if let Some(m) = state.rooms.members(r) {
                excluded.extend(m);
            }
            if let Some(&i) = self.socket_ids.get(r) {
                excluded.insert(i);
            }
        }
        excluded.extend(skip);
        let mut targets: Vec<u32> = Vec::new();
        if msg.rooms.is_empty() {
            targets.extend(state.sockets.iter().filter(|i| !excluded.contains(i)));
        } else {
            let mut seen: HashSet<u32> = HashSet::new();
            for r in &msg.rooms {
                let own = self.socket_ids.get(r).filter(|&&i| self.sockets[i as usize].ns == msg.ns);
                for &i in state.rooms.members(r).into_iter().flatten().chain(own) {
                    if !excluded.contains(&i) && (msg.rooms.len() == 1 || seen.insert(i)) {
                        targets.push(i);
                    }
                }
            }
        }
        // One addition per broadcast, not one per socket.
        self.tally.deliveries += targets.len() as u64;
        self.tally.sio_packets_out += targets.len() as u64;
        let mut overflowed = Vec::new();
        for i in targets {
            let Some(offset) = &msg.offset else {
                let session = self.sockets[i as usize].session;
                for o in &msg.packets {
                    self.send_session(session, o.clone());
                }
                continue;
            };
            let entry = &mut self.sockets[i as usize];
            if let Some(to) = entry.forward_to {
                if msg.origin.is_some_and(|o| entry.fenced & (1u64 << (o as u32 % 64)) != 0) {
                    continue; // that core sends to the new one itself now
                }
                let id = entry.id.clone();
                let (offset, packets) = (offset.clone(), msg.packets.clone());
                self.outbox.push((to, ShardMsg::Forward { id, ns: msg.ns, offset, packets }));
            } else if let Some(m) = entry.merging.as_mut() {
                m.held.push((offset.clone(), msg.packets.clone()));
            } else if !self.deliver_to_socket(i, offset, &msg.packets) {
                overflowed.push(i);
            }
        }
        // Ghosts that missed more than they may keep: their clients get fresh sessions.
        for i in overflowed {
            self.drop_socket(i);
        }
    }

    /// A message from another core.
    pub fn handle_msg(&mut self, msg: ShardMsg) {
        match msg {
            ShardMsg::Broadcast(b) => self.deliver_local(&b, None),
            ShardMsg::Occupancy { ns, room, core, present } => {
                let remote = &mut self.namespaces[ns as usize].remote;
                let bit = 1u64 << (core as u32 % 64);
                if present {
                    *remote.entry(room).or_default() |= bit;
                } else if let Some(m) = remote.get_mut(&room) {
                    *m &= !bit;
                    if *m == 0 {
                        remote.remove(&room);
                    }
                }
            }
            ShardMsg::Run(f) => f(self),
            ShardMsg::CloseSession { sid, reason } => {
                if let Some(&idx) = self.sids.get(sid.as_str()) {
                    self.sessions[idx as usize].eio.close(reason);
                    self.after_input(idx);
                }
            }
            ShardMsg::Shutdown => self.shutdown(),
            ShardMsg::Recover { pid, offset, ns, from, session } => {
                let socket = self.find_ghost(&pid, &offset, ns).map(|(idx, missed_from)| {
                    // The entry stays in its rooms and forwards what they receive until
                    // every core sends to the new core itself (`Fence`, `Fenced`): broadcasts
                    // sent here before the other cores know are not lost.
                    let entry = &mut self.sockets[idx as usize];
                    let rec = entry.rec.take().expect("a ghost has its recovery state");
                    entry.forward_to = Some(from);
                    let id = entry.id.clone();
                    let rooms = self.namespaces[ns as usize].rooms.rooms_of(idx).to_vec();
                    self.pids.remove(&rec.pid);
                    Box::new(RecoveredSocket {
                        id,
                        pid: rec.pid,
                        rooms,
                        log: rec.log.into_iter().collect(),
                        missed_from,
                    })
                });
                let me = self.core;
                self.outbox.push((from, ShardMsg::Recovered { session, ns, from: me, socket }));
            }
            ShardMsg::Recovered { session, ns, from, socket } => {
                let release = socket.as_ref().map(|s| s.id.clone());
                self.handle_recovered(session, ns, socket);
                if let Some(id) = release {
                    // Queued after the occupancy announcements of `create_socket`: a core that
                    // reads it knows this core is in the rooms.
                    for c in (0..self.n_cores).filter(|&c| c as CoreId != self.core) {
                        let fence = ShardMsg::Fence { id: id.clone(), ns, a: from, b: self.core };
                        self.outbox.push((c as CoreId, fence));
                    }
                }
            }
            ShardMsg::Forward { id, ns, offset, packets } => {
                let Some(&idx) = self.socket_ids.get(&id) else {
                    return;
                };
                if self.sockets[idx as usize].ns == ns && !self.deliver_to_socket(idx, &offset, &packets) {
                    self.drop_socket(idx);
                }
            }
            ShardMsg::Fence { id, ns, a, b } => {
                if a == self.core {
                    // Everything the new core sent before this was forwarded; this core
                    // already sends to it directly (its occupancy came first).
                    self.fence_forwarder(&id, ns, b, (1u64 << (a as u32 % 64)) | (1u64 << (b as u32 % 64)));
                } else {
                    let me = self.core;
                    self.outbox.push((a, ShardMsg::Fenced { id, ns, origin: me, b }));
                }
            }
            ShardMsg::Fenced { id, ns, origin, b } => {
                self.fence_forwarder(&id, ns, b, 1u64 << (origin as u32 % 64));
            }
            ShardMsg::Released { id, ns } => {
                let Some(&idx) = self.socket_ids.get(&id) else {
                    return;
                };
                if self.sockets[idx as usize].ns != ns {
                    return;
                }
                // Every forward has arrived: what came directly meanwhile goes now, minus
                // what the forwards already brought.
                let held = self.sockets[idx as usize].merging.as_mut().map(|m| std::mem::take(&mut m.held));
                for (offset, packets) in held.into_iter().flatten() {
                    if !self.deliver_to_socket(idx, &offset, &packets) {
                        self.drop_socket(idx);
                        return;
                    }
                }
                let entry = &mut self.sockets[idx as usize];
                if let Some(m) = entry.merging.take() {
                    let shared: HashSet<Arc<str>> =
                        m.seen.into_iter().filter(|o| o.starts_with("s.")).collect();
                    entry.shared_seen = (!shared.is_empty()).then_some(shared);
                }
            }
        }
    }

    /// Stop forwarding broadcasts from the cores in `bits` to the recovered socket `id` (now on
    /// core `b`); once every core is fenced, drop the forwarder and tell `b` (`Released`).
    fn fence_forwarder(&mut self, id: &Arc<str>, ns: u16, b: CoreId, bits: u64) {
        let Some(&idx) = self.socket_ids.get(id) else {
            return;
        };
        let entry = &mut self.sockets[idx as usize];
        if entry.forward_to != Some(b) || entry.ns != ns {
            return;
        }
        entry.fenced |= bits;
        let all = if self.n_cores >= 64 { u64::MAX } else { (1u64 << self.n_cores) - 1 };
        if entry.fenced & all == all {
            self.drop_socket(idx);
            self.outbox.push((b, ShardMsg::Released { id: id.clone(), ns }));
        }
    }

    /// A core answered `Recover` for session `session`: create the socket when it sent it, or
    /// a fresh one once every core said it has none.
    fn handle_recovered(&mut self, session: SessionKey, ns: u16, socket: Option<Box<RecoveredSocket>>) {
        // A session that ended meanwhile loses the socket: its client reconnects and gets a
        // fresh one.
        let Some(s) = self.session_mut(session) else {
            return;
        };
        let Some(pos) = s.recovering.iter().position(|r| r.ns == ns) else {
            return;
        };
        s.recovering[pos].waiting -= 1;
        if socket.is_some() || s.recovering[pos].waiting == 0 {
            let r = s.recovering.remove(pos);
            self.create_socket(session.idx, ns, r.handshake, socket);
        }
    }

    /// Close every session (server shutting down). New handshakes are refused from now on.
    pub fn shutdown(&mut self) {
        self.shutting_down = true;
        let idxs: Vec<u32> = self.sessions.iter().map(|(i, _)| i as u32).collect();
        for idx in idxs {
            self.sessions[idx as usize].eio.close(CloseReason::ServerShutdown);
            self.after_input(idx);
        }
    }

    /// Broadcast from outside any socket (`ServerHandle` on this core).
    pub fn emit_all(
        &mut self,
        ns: &str,
        rooms: Vec<Room>,
        except: Vec<Room>,
        event: &str,
        args_inner: &str,
        attachments: &[Bytes],
    ) {
        if let Some(&n) = self.def.ns_index.get(ns) {
            // Such a broadcast reaches every core once: core 0 counts it for the node.
            if self.core == 0 {
                self.tally.broadcasts += 1;
            }
            let offset = self.new_offset();
            self.broadcast_local_only(n, rooms, except, event, args_inner, attachments, offset);
        }
    }

    /// `emit_all` of one broadcast that every core delivers (`ServerHandle`): with recovery
    /// on, the first core to run draws its offset in `offset` and the others use the same.
    pub(crate) fn emit_all_shared(&mut self, b: &ClusterBroadcast, offset: &std::sync::OnceLock<Arc<str>>) {
        let Some(&n) = self.def.ns_index.get(b.ns.as_str()) else {
            return;
        };
        let offset = self.def.config.recovery.enabled.then(|| {
            offset
                .get_or_init(|| {
                    let n = NEXT_SHARED_OFFSET.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    Arc::from(format!("s.{n:x}"))
                })
                .clone()
        });
        self.broadcast_local_only(
            n,
            b.rooms.clone(),
            b.except.clone(),
            &b.event,
            &b.args_inner,
            &b.attachments,
            offset,
        );
    }

    #[allow(clippy::too_many_arguments)]
    fn broadcast_local_only(
        &mut self,
        ns: u16,
        rooms: Vec<Room>,
        except: Vec<Room>,
        event: &str,
        args_inner: &str,
        attachments: &[Bytes],
        offset: Option<Arc<str>>,
    ) {
        let ns_name = self.def.namespaces[ns as usize].name.clone();
        let packets = encode_event_packets(&ns_name, None, event, args_inner, attachments, offset.as_deref());
        self.deliver_local(&BroadcastMsg { ns, rooms, except, packets, offset, origin: None }, None);
    }

    /// Send a plain Engine.IO message (plain Engine.IO endpoints).
    pub(crate) fn engine_send(&mut self, key: SessionKey, data: Data) {
        if self.session_mut(key).is_none() {
            return;
        }
        let o = match data {
            Data::Text(t) => Outgoing::text(&format!("4{t}")),
            Data::Binary(b) => Outgoing::binary(&b),
        };
        self.send_session(key.idx, o);
    }
}

/// A session of a plain Engine.IO endpoint, as its application sees it.
pub struct EngineSocket<'a> {
    shard: &'a mut Shard,
    session: SessionKey,
}

impl EngineSocket<'_> {
    pub fn send(&mut self, data: Data) {
        self.shard.engine_send(self.session, data);
    }
}

/// An application on a plain Engine.IO endpoint.
pub trait EngineApp: Send + Sync {
    fn on_message(&self, socket: &mut EngineSocket<'_>, data: Data);
}

/// The Engine.IO packets of one Socket.IO event: the text packet then its attachments.
/// With `offset` (connection state recovery), it is appended as the last argument.
fn encode_event_packets(
    ns: &str,
    id: Option<u64>,
    event: &str,
    args_inner: &str,
    attachments: &[Bytes],
    offset: Option<&str>,
) -> Vec<Outgoing> {
    let with_offset;
    let args_inner = match offset {
        None => args_inner,
        Some(o) => {
            // Offsets are hexadecimal digits and a dot: no JSON escaping needed.
            with_offset =
                if args_inner.is_empty() { format!("\"{o}\"") } else { format!("{args_inner},\"{o}\"") };
            &with_offset
        }
    };
    let mut text = String::with_capacity(args_inner.len() + event.len() + ns.len() + 8);
    text.push('4');
    sio::encode_event(ns, id, event, args_inner, attachments.len(), &mut text);
    let mut v = Vec::with_capacity(1 + attachments.len());
    v.push(Outgoing::text(&text));
    v.extend(attachments.iter().map(|a| Outgoing::binary(a)));
    v
}

/// The index of a transport in `ShardTally::sessions`.
fn transport_index(t: TransportKind) -> usize {
    match t {
        TransportKind::Polling => 0,
        TransportKind::WebSocket => 1,
    }
}

fn simple(
    status: u16,
    content_type: &str,
    body: &[u8],
    headers: &[(&'static str, String)],
    keep_alive: bool,
) -> Vec<u8> {
    let extra: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut out = Vec::with_capacity(body.len() + 160);
    write_simple(status, content_type, body, &extra, keep_alive, &mut out);
    out
}

/// The private session id and last offset a reconnecting client sends in its CONNECT's auth
/// (socket.io-client adds `pid` and `offset` to it); both must be strings, as socket.io asks.
fn recovery_auth(auth: &RawValue) -> Option<(String, String)> {
    #[derive(serde::Deserialize)]
    struct Auth {
        pid: Option<serde_json::Value>,
        offset: Option<serde_json::Value>,
    }
    let a: Auth = serde_json::from_str(auth.get()).ok()?;
    match (a.pid?, a.offset?) {
        // Ours are 20 and at most 19 characters; anything longer cannot match.
        (serde_json::Value::String(p), serde_json::Value::String(o)) if p.len() <= 64 && o.len() <= 64 => {
            Some((p, o))
        }
        _ => None,
    }
}
