//! The chat service: every seed protocol of `docs/PROTOCOL.md` on one namespace, on top of the
//! public API ([`crate::api`]).
//!
//! Where its state lives:
//! - Per socket ([`ChatSocket`], the socket's data): identity, joined chat rooms, rate buckets.
//! - Per core ([`ChatLocal`], `Shard::local`): the room catalogue replica and an id generator.
//!   The catalogue is replicated by messages: a created room is sent to every core before
//!   `room created` is emitted, so a client that reacts to the event finds the room.
//! - One presence thread ([`presence`]) owns who is online, across cores.
//! - The store thread ([`crate::store`]) owns history and rooms on disk. Handlers never wait on
//!   it: they enqueue, and its completion emits the message (from the store thread, so every
//!   core sees one room's messages in commit order) and answers the sender on its core.
//!
//! What it does not do: no IO of its own (the runtime moves bytes, the store thread owns the
//! database), no clustering (one server; the adapter boundary carries broadcasts only).

pub mod events;
pub mod http;
pub mod identity;
pub mod limits;
pub mod presence;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::api::{ServerBuilder, ServerHandle};
use crate::auth::JwtVerifier;
use crate::store::{ObjectIdGen, RoomRecord, StoreHandle};

use limits::{Strikes, TokenBucket};
use presence::{PresenceMsg, PresenceOut};

/// Every tunable of the chat service, with the defaults of PROTOCOL.md section 11.
#[derive(Debug, Clone)]
pub struct ChatConfig {
    pub data_dir: PathBuf,
    pub web_dir: Option<PathBuf>,
    pub max_message_chars: usize,
    pub max_message_bytes: usize,
    pub max_name_chars: usize,
    pub max_room_name_chars: usize,
    pub max_rooms_per_socket: usize,
    pub rate_limit: f64,
    pub rate_burst: u32,
    pub typing_rate: f64,
    pub typing_burst: u32,
    pub abuse_disconnect: u32,
    pub history_limit: usize,
    pub max_history_page: usize,
    pub presence_interval: Duration,
    pub emit_get_online_users: bool,
    pub emit_online: bool,
    /// Seed 000's per-socket announcements (one delivery to everyone per connect/disconnect).
    pub emit_user_connected: bool,
    pub emit_user_disconnected: bool,
    /// Disconnect a socket when its token expires (token mode).
    pub disconnect_on_token_expiry: bool,
    /// HTTP API requests per second per client address, for the node (0: no limit).
    pub api_rate_limit: u32,
    /// Their burst (0: twice the rate).
    pub api_rate_burst: u32,
}

impl Default for ChatConfig {
    fn default() -> Self {
        ChatConfig {
            data_dir: PathBuf::from("sockeye-data"),
            web_dir: None,
            max_message_chars: 2000,
            max_message_bytes: 65536,
            max_name_chars: 64,
            max_room_name_chars: 64,
            max_rooms_per_socket: 50,
            rate_limit: 10.0,
            rate_burst: 20,
            typing_rate: 5.0,
            typing_burst: 10,
            abuse_disconnect: 50,
            history_limit: 50,
            max_history_page: 200,
            presence_interval: Duration::from_millis(100),
            emit_get_online_users: true,
            emit_online: true,
            emit_user_connected: true,
            emit_user_disconnected: true,
            disconnect_on_token_expiry: true,
            api_rate_limit: 20,
            api_rate_burst: 40,
        }
    }
}

/// What every core and thread of the chat service shares, read-only once started.
pub struct Shared {
    pub config: ChatConfig,
    pub verifier: Option<JwtVerifier>,
    pub store: StoreHandle,
    /// The rooms as they were at start; each core's catalogue starts from it.
    pub initial_rooms: Vec<RoomRecord>,
    pub presence: crossbeam_channel::Sender<PresenceMsg>,
    /// Set once the server has started; completions reach sockets through it.
    pub handle: OnceLock<ServerHandle>,
    pub web: http::WebFiles,
    /// Rejections and limits hit, for `GET /metrics`.
    pub stats: Arc<limits::ChatStats>,
}

impl Shared {
    pub fn handle(&self) -> Option<&ServerHandle> {
        self.handle.get()
    }
}

/// Broker room names used by the chat service (never seen by clients).
pub mod rooms {
    /// Sockets that have received the global history and get `load` broadcasts.
    pub const GLOBAL: &str = "chat:global";

    /// Every socket of a user.
    pub fn user(name: &str) -> String {
        format!("chat:user:{name}")
    }

    /// The members of chat room `id`.
    pub fn room(id: &str) -> String {
        format!("chat:room:{id}")
    }
}

/// Store channel names: one history per channel.
pub mod channels {
    pub const GLOBAL: &str = "global";

    pub fn room(id: &str) -> String {
        format!("room:{id}")
    }

    /// A seed 001 conversation between two users, the names sorted.
    pub fn private(a: &str, b: &str) -> String {
        let (x, y) = if a <= b { (a, b) } else { (b, a) };
        format!("pm:{}:{x}:{y}", x.len())
    }
}

/// The room catalogue replica of one core.
#[derive(Default)]
pub struct Catalogue {
    by_id: HashMap<String, RoomRecord>,
    by_name: HashMap<String, String>,
    order: Vec<String>,
}

impl Catalogue {
    pub fn insert(&mut self, room: RoomRecord) {
        if self.by_id.contains_key(&room.id) {
            return;
        }
        self.by_name.insert(room.name.to_lowercase(), room.id.clone());
        self.order.push(room.id.clone());
        self.by_id.insert(room.id.clone(), room);
    }

    /// A room by id, or by name (case-insensitive).
    pub fn find(&self, id_or_name: &str) -> Option<&RoomRecord> {
        self.by_id
            .get(id_or_name)
            .or_else(|| self.by_name.get(&id_or_name.to_lowercase()).and_then(|id| self.by_id.get(id)))
    }

    pub fn name_taken(&self, name: &str) -> bool {
        self.by_name.contains_key(&name.to_lowercase())
    }

    pub fn all(&self) -> impl Iterator<Item = &RoomRecord> {
        self.order.iter().filter_map(|id| self.by_id.get(id))
    }
}

/// Per-core state of the chat service.
#[derive(Default)]
pub struct ChatLocal {
    started: bool,
    pub catalogue: Catalogue,
    ids: Option<ObjectIdGen>,
    /// HTTP API requests per client address, this core's share (`None`: no limit). Made on
    /// the first API request (`http::ChatHttp`), when `api_limiter_made` turns true.
    pub(crate) api_limiter: Option<crate::broker::ratelimit::AddrLimiter>,
    pub(crate) api_limiter_made: bool,
    /// The server's `Shared::stats`, once `init` ran on this core.
    pub stats: Option<Arc<limits::ChatStats>>,
}

impl ChatLocal {
    /// Seeds the catalogue from the store's rooms on first use on this core.
    pub fn init(&mut self, shared: &Shared) -> &mut Self {
        if !self.started {
            self.started = true;
            self.stats = Some(shared.stats.clone());
            for r in &shared.initial_rooms {
                self.catalogue.insert(r.clone());
            }
        }
        self
    }

    pub fn next_id(&mut self, now_ms: u64) -> String {
        self.ids.get_or_insert_with(ObjectIdGen::from_entropy).next(now_ms)
    }
}

/// A seed 004 DM conversation of a socket.
#[derive(Debug, Clone)]
pub struct Dm {
    /// What clients see as `roomId`: `dm:<a>_<b>`.
    pub label: String,
    /// The broker room and store channel ([`identity::dm_key`]).
    pub key: String,
    pub peer: String,
}

/// Per-socket state of the chat service.
pub struct ChatSocket {
    pub user: Option<Arc<str>>,
    /// Seed 004: the DM conversation, when the socket connected with `to`.
    pub dm: Option<Dm>,
    /// The socket asked for a DM peer (`to`) but has no identity: its messages are refused.
    pub anonymous_dm: bool,
    /// For an anonymous socket in development mode: the name its last `join room` gave, used
    /// when announcing that it left.
    pub name_hint: Option<String>,
    /// Chat rooms (ids) joined or being joined.
    pub rooms: Vec<String>,
    pub bucket: TokenBucket,
    pub typing: TokenBucket,
    pub strikes: Strikes,
}

/// Builds the chat app: the default namespace's handlers and the HTTP routes.
pub fn install(server: &mut ServerBuilder, shared: Arc<Shared>) {
    let ns_shared = shared.clone();
    server.namespace("/", move |ns| events::register(ns, ns_shared));
    let store = shared.store.stats();
    server.metrics(move |e| store.render(e));
    let stats = shared.stats.clone();
    server.metrics(move |e| stats.render(e));
    server.http(Arc::new(http::ChatHttp::new(shared)));
}

/// Starts the presence thread; it emits through `shared.handle` once the server has started.
pub fn start_presence(
    rx: crossbeam_channel::Receiver<PresenceMsg>,
    shared: Arc<Shared>,
) -> std::thread::JoinHandle<()> {
    let interval = shared.config.presence_interval;
    std::thread::Builder::new()
        .name("sockeye-presence".to_owned())
        .spawn(move || {
            presence::run(rx, interval, |out| deliver_presence(&shared, out));
        })
        .expect("spawn presence thread")
}

/// Sends what the presence state machine asked for through the server handle (the presence
/// thread's output; the chat fuzz target drives [`presence::Presence`] itself and calls this).
pub fn deliver_presence(shared: &Shared, out: PresenceOut) {
    let Some(handle) = shared.handle() else {
        return;
    };
    let (get_online, online) = (shared.config.emit_get_online_users, shared.config.emit_online);
    match out {
        PresenceOut::Lists { users } => {
            if get_online {
                handle.to("/", &[]).emit_raw("getOnlineUsers", users.clone(), Vec::new());
            }
            if online {
                handle.to("/", &[]).emit_raw("online", users, Vec::new());
            }
        }
        PresenceOut::Newcomer { core, sid, online_users, users } => {
            handle.run_on(core, move |shard| {
                let Some(mut s) = shard.socket(&sid) else {
                    return;
                };
                s.emit_raw("online_users", &online_users, Vec::new());
                if let Some(users) = users {
                    if get_online {
                        s.emit_raw("getOnlineUsers", &users, Vec::new());
                    }
                    if online {
                        s.emit_raw("online", &users, Vec::new());
                    }
                }
            });
        }
    }
}
