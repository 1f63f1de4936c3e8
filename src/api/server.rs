//! Building a server ([`ServerBuilder`]), running it ([`RunningServer`]) and reaching it from
//! other threads ([`ServerHandle`]).

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;

use super::http::HttpApp;
use super::{ConnectError, DisconnectReason, Event, Handshake, Socket, encode_args};
use crate::broker::adapter::{Adapter, ClusterBroadcast};
use crate::broker::rooms::Room;
use crate::broker::shard::{EngineApp, Shard, ShardMsg};
use crate::config::Config;
use crate::runtime::{self, CoreHandle};
use crate::stats::{CoreStats, NodeStats, StatsSnapshot};

type Middleware = Box<dyn Fn(&Handshake) -> Result<(), ConnectError> + Send + Sync>;
type ConnectHandler = Box<dyn Fn(&mut Socket<'_>) + Send + Sync>;
type EventHandler = Box<dyn Fn(&mut Socket<'_>, Event) + Send + Sync>;
type DisconnectHandler = Box<dyn Fn(&mut Socket<'_>, DisconnectReason) + Send + Sync>;

/// A namespace's handlers, shared read-only by every core.
pub(crate) struct NamespaceDef {
    pub(crate) name: String,
    pub(crate) middlewares: Vec<Middleware>,
    pub(crate) on_connect: Option<ConnectHandler>,
    pub(crate) on_disconnect: Option<DisconnectHandler>,
    pub(crate) events: HashMap<String, EventHandler>,
    pub(crate) on_any: Option<EventHandler>,
}

/// What is served at a path.
pub(crate) enum Endpoint {
    SocketIo,
    Engine(Arc<dyn EngineApp>),
}

/// Everything the cores share about the application, immutable once started.
pub(crate) struct ServerDef {
    pub(crate) config: Config,
    pub(crate) namespaces: Vec<NamespaceDef>,
    pub(crate) ns_index: HashMap<String, u16>,
    /// (path without trailing slash, endpoint)
    pub(crate) endpoints: Vec<(String, Endpoint)>,
    /// Where broadcasts that start on this node are published for other nodes.
    pub(crate) adapter: Option<Arc<dyn Adapter>>,
    /// Serves every path that is no Engine.IO endpoint.
    pub(crate) http_app: Option<Arc<dyn HttpApp>>,
    /// Run once with the server's handle, before any connection is served.
    pub(crate) on_start: std::sync::Mutex<Vec<StartHook>>,
    /// Append the application's families to `GET /metrics`.
    pub(crate) metrics_hooks: Vec<MetricsHook>,
}

type StartHook = Box<dyn FnOnce(&ServerHandle) + Send>;
type MetricsHook = Box<dyn Fn(&mut crate::metrics::Exposition) + Send + Sync>;

impl ServerDef {
    /// The endpoint serving `path`; `/socket.io` and `/socket.io/` are the same.
    pub(crate) fn endpoint_for(&self, path: &str) -> Option<u16> {
        let p = path.strip_suffix('/').unwrap_or(path);
        self.endpoints.iter().position(|(e, _)| e == p).map(|i| i as u16)
    }
}

fn trim_path(p: &str) -> String {
    let p = p.strip_suffix('/').unwrap_or(p);
    if p.starts_with('/') { p.to_owned() } else { format!("/{p}") }
}

/// Handlers of one namespace, set up before the server starts.
pub struct NamespaceBuilder {
    def: NamespaceDef,
}

impl NamespaceBuilder {
    /// Run before a socket joins the namespace; an `Err` refuses it with CONNECT_ERROR.
    pub fn middleware<F>(&mut self, f: F) -> &mut Self
    where
        F: Fn(&Handshake) -> Result<(), ConnectError> + Send + Sync + 'static,
    {
        self.def.middlewares.push(Box::new(f));
        self
    }

    /// Called when a socket has joined the namespace (after `40` was sent to the client).
    pub fn on_connect<F>(&mut self, f: F) -> &mut Self
    where
        F: Fn(&mut Socket<'_>) + Send + Sync + 'static,
    {
        self.def.on_connect = Some(Box::new(f));
        self
    }

    /// Called for `event` from any socket of the namespace (a handler set with `Socket::on`
    /// for the same event takes precedence).
    pub fn on<F>(&mut self, event: &str, f: F) -> &mut Self
    where
        F: Fn(&mut Socket<'_>, Event) + Send + Sync + 'static,
    {
        self.def.events.insert(event.to_owned(), Box::new(f));
        self
    }

    /// Called for events with no handler of their own.
    pub fn on_any<F>(&mut self, f: F) -> &mut Self
    where
        F: Fn(&mut Socket<'_>, Event) + Send + Sync + 'static,
    {
        self.def.on_any = Some(Box::new(f));
        self
    }

    /// Called when a socket leaves, while its rooms are still readable.
    pub fn on_disconnect<F>(&mut self, f: F) -> &mut Self
    where
        F: Fn(&mut Socket<'_>, DisconnectReason) + Send + Sync + 'static,
    {
        self.def.on_disconnect = Some(Box::new(f));
        self
    }
}

/// Builds a server: namespaces, plain Engine.IO endpoints, then `start`.
pub struct ServerBuilder {
    config: Config,
    namespaces: Vec<NamespaceDef>,
    engines: Vec<(String, Arc<dyn EngineApp>)>,
    adapter: Option<Arc<dyn Adapter>>,
    http_app: Option<Arc<dyn HttpApp>>,
    on_start: Vec<StartHook>,
    metrics_hooks: Vec<MetricsHook>,
}

impl ServerBuilder {
    pub fn new(config: Config) -> Self {
        ServerBuilder {
            config,
            namespaces: Vec::new(),
            engines: Vec::new(),
            adapter: None,
            http_app: None,
            on_start: Vec::new(),
            metrics_hooks: Vec::new(),
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Define namespace `name` (`/` is the default namespace). Only defined namespaces accept
    /// connections; others get CONNECT_ERROR "Invalid namespace".
    pub fn namespace(&mut self, name: &str, setup: impl FnOnce(&mut NamespaceBuilder)) -> &mut Self {
        let name = if name.starts_with('/') { name.to_owned() } else { format!("/{name}") };
        let mut b = NamespaceBuilder {
            def: NamespaceDef {
                name,
                middlewares: Vec::new(),
                on_connect: None,
                on_disconnect: None,
                events: HashMap::new(),
                on_any: None,
            },
        };
        setup(&mut b);
        self.namespaces.retain(|n| n.name != b.def.name);
        self.namespaces.push(b.def);
        self
    }

    /// Publish every broadcast that starts on this node to a cluster backend.
    pub fn adapter(&mut self, adapter: Arc<dyn Adapter>) -> &mut Self {
        self.adapter = Some(adapter);
        self
    }

    /// Serve every other path (not an Engine.IO endpoint) with `app`; without one they get 404.
    pub fn http(&mut self, app: Arc<dyn HttpApp>) -> &mut Self {
        self.http_app = Some(app);
        self
    }

    /// Run `f` with the server's handle once it has started, before any connection is served
    /// (for application threads that emit through it).
    pub fn on_start(&mut self, f: impl FnOnce(&ServerHandle) + Send + 'static) -> &mut Self {
        self.on_start.push(Box::new(f));
        self
    }

    /// Add the application's own metric families to `GET /metrics`: `f` appends them (with
    /// `Exposition::family` and `sample`) after the server's. It runs on whichever core answers
    /// the scrape, so it must only read shared state (atomics) and must not block.
    pub fn metrics(
        &mut self,
        f: impl Fn(&mut crate::metrics::Exposition) + Send + Sync + 'static,
    ) -> &mut Self {
        self.metrics_hooks.push(Box::new(f));
        self
    }

    /// Serve a plain Engine.IO endpoint (no Socket.IO) at `path`.
    pub fn engine_endpoint(&mut self, path: &str, app: Arc<dyn EngineApp>) -> &mut Self {
        self.engines.push((trim_path(path), app));
        self
    }

    pub(crate) fn into_def(self) -> ServerDef {
        let ns_index = self.namespaces.iter().enumerate().map(|(i, n)| (n.name.clone(), i as u16)).collect();
        let mut endpoints = vec![(trim_path(&self.config.path), Endpoint::SocketIo)];
        endpoints.extend(self.engines.into_iter().map(|(p, a)| (p, Endpoint::Engine(a))));
        ServerDef {
            config: self.config,
            namespaces: self.namespaces,
            ns_index,
            endpoints,
            adapter: self.adapter,
            http_app: self.http_app,
            on_start: std::sync::Mutex::new(self.on_start),
            metrics_hooks: self.metrics_hooks,
        }
    }

    /// The sans-IO broker of core `core` of `n_cores`, outside any runtime, for benchmarks
    /// and tools that drive it directly with requests and messages. Not a stable API.
    #[doc(hidden)]
    pub fn into_shard(self, core: u8, n_cores: usize, seed: u64, now: std::time::Instant) -> Shard {
        Shard::new(core, n_cores, Arc::new(self.into_def()), seed, now)
    }

    /// Bind the listeners and start one event loop per core.
    pub fn start(self) -> io::Result<RunningServer> {
        runtime::start(Arc::new(self.into_def()))
    }
}

/// A started server.
pub struct RunningServer {
    pub(crate) local_addr: SocketAddr,
    pub(crate) handle: ServerHandle,
    pub(crate) threads: Vec<std::thread::JoinHandle<()>>,
}

impl RunningServer {
    /// The address the listeners are bound to (with the real port when 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn handle(&self) -> ServerHandle {
        self.handle.clone()
    }

    /// Wait until every core has stopped (after `ServerHandle::shutdown`).
    pub fn join(self) {
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// Reaches the running server from any thread: server-wide emits, running code on a core,
/// shutdown. Cheap to clone.
#[derive(Clone)]
pub struct ServerHandle {
    pub(crate) cores: Arc<Vec<CoreHandle>>,
    pub(crate) adapter: Option<Arc<dyn Adapter>>,
    pub(crate) stats: Arc<NodeStats>,
}

impl ServerHandle {
    /// Number of cores (event loops).
    pub fn cores(&self) -> usize {
        self.cores.len()
    }

    /// The limit counters of every core summed, and the open connection count (lock-free
    /// reads; for `/metrics`).
    pub fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }

    /// Each core's own counters, indexed by core.
    pub fn core_stats(&self) -> &[Arc<CoreStats>] {
        &self.stats.cores
    }

    /// Emit to every socket of namespace `ns` on every core.
    pub fn emit<A: Serialize + ?Sized>(&self, ns: &str, event: &str, args: &A) {
        self.to(ns, &[]).emit(event, args)
    }

    /// Emit to the members of `rooms` in namespace `ns` (everyone when empty).
    pub fn to(&self, ns: &str, rooms: &[&str]) -> HandleBroadcast<'_> {
        HandleBroadcast {
            handle: self,
            ns: ns.to_owned(),
            rooms: rooms.iter().map(|r| Room::from(*r)).collect(),
            except: Vec::new(),
        }
    }

    /// Run `f` on core `core` with its shard (for work that finished on another thread and
    /// must now touch sockets, e.g. a storage write being acknowledged).
    pub fn run_on(&self, core: usize, f: impl FnOnce(&mut Shard) + Send + 'static) {
        if let Some(c) = self.cores.get(core) {
            c.send(ShardMsg::Run(Box::new(f)));
        }
    }

    /// Deliver a broadcast that came from another node to this node's members, on every core.
    /// It is not published again.
    pub fn deliver_from_cluster(&self, b: ClusterBroadcast) {
        // One offset for every core's copy (connection state recovery; drawn only when on).
        let shared = Arc::new((b, std::sync::OnceLock::new()));
        for c in self.cores.iter() {
            let b = shared.clone();
            c.send(ShardMsg::Run(Box::new(move |shard: &mut Shard| {
                shard.emit_all_shared(&b.0, &b.1);
            })));
        }
    }

    /// Close every session and stop the event loops.
    pub fn shutdown(&self) {
        for c in self.cores.iter() {
            c.send(ShardMsg::Shutdown);
        }
    }
}

/// A broadcast from outside a handler; see [`ServerHandle::to`].
pub struct HandleBroadcast<'a> {
    handle: &'a ServerHandle,
    ns: String,
    rooms: Vec<Room>,
    except: Vec<Room>,
}

impl HandleBroadcast<'_> {
    pub fn except(mut self, room: &str) -> Self {
        self.except.push(Room::from(room));
        self
    }

    pub fn emit<A: Serialize + ?Sized>(self, event: &str, args: &A) {
        let (inner, att) = encode_args(args);
        self.emit_raw(event, inner, att);
    }

    pub fn emit_raw(self, event: &str, args_inner: String, attachments: Vec<Bytes>) {
        let b = ClusterBroadcast {
            ns: self.ns,
            rooms: self.rooms,
            except: self.except,
            event: event.to_owned(),
            args_inner,
            attachments,
        };
        if let Some(a) = &self.handle.adapter {
            a.publish(b.clone());
        }
        self.handle.deliver_from_cluster(b);
    }
}
