//! The only IO in sockeye: one `mio` event loop per core.
//!
//! Each core has its own `SO_REUSEPORT` listener (the kernel spreads new connections), a slab
//! of connections, a [`Shard`](crate::broker::Shard) with the protocol state, and an inbox
//! (`crossbeam-channel`) with a `mio::Waker`. A sender wakes a core only when it is about to
//! sleep or sleeping (`sleeping` flag), so a busy core drains its inbox without syscalls.
//!
//! See `core.rs` for the loop turn and `docs/ARCHITECTURE.md` for the lifetime of a connection.

mod conn;
mod core;

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crossbeam_channel::{Receiver, Sender};
use mio::{Poll, Token, Waker};

use crate::api::ServerHandle;
use crate::api::server::{RunningServer, ServerDef};
use crate::broker::ShardMsg;
use crate::stats::NodeStats;

pub(crate) const WAKER: Token = Token(usize::MAX - 1);
pub(crate) const LISTENER: Token = Token(usize::MAX - 2);

/// A message to a core.
pub(crate) enum CoreMsg {
    Shard(ShardMsg),
    /// A connection whose request belongs to a session of the receiving core; `rbuf` holds
    /// the unconsumed bytes, the request first; `out` what was not yet written to it (answers
    /// to earlier pipelined requests), to be written first.
    Handoff {
        stream: mio::net::TcpStream,
        rbuf: Vec<u8>,
        out: Vec<u8>,
        remote: Option<SocketAddr>,
    },
}

/// How other threads reach one core.
pub struct CoreHandle {
    tx: Sender<CoreMsg>,
    waker: Arc<Waker>,
    sleeping: Arc<AtomicBool>,
}

impl CoreHandle {
    pub(crate) fn send(&self, msg: ShardMsg) {
        self.send_core(CoreMsg::Shard(msg));
    }

    /// A handle whose messages wait in the returned channel and whose waker belongs to `poll`,
    /// which nobody polls: for the simulation (`broker::sim`), which drains the channel itself.
    #[cfg(any(test, feature = "sim"))]
    pub(crate) fn detached(poll: &Poll) -> io::Result<(CoreHandle, Receiver<CoreMsg>)> {
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let (tx, rx) = crossbeam_channel::unbounded();
        Ok((CoreHandle { tx, waker, sleeping: Arc::new(AtomicBool::new(false)) }, rx))
    }

    pub(crate) fn send_core(&self, msg: CoreMsg) {
        if self.tx.send(msg).is_ok() && self.sleeping.swap(false, Ordering::SeqCst) {
            let _ = self.waker.wake();
        }
    }
}

/// Raise the soft open-file limit to the hard limit, so many connections can be open.
pub fn raise_nofile_limit() -> io::Result<u64> {
    let mut rl = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the rlimit struct we own; no other memory is touched.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if rl.rlim_cur < rl.rlim_max {
        rl.rlim_cur = rl.rlim_max;
        // SAFETY: setrlimit only reads the struct we pass.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &rl) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(rl.rlim_cur)
}

fn bind_listener(addr: SocketAddr, backlog: i32) -> io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog.max(1024))?;
    Ok(socket.into())
}

/// Bind one listener per core and start the cores.
pub(crate) fn start(def: Arc<ServerDef>) -> io::Result<RunningServer> {
    let _ = raise_nofile_limit();
    let cfg = &def.config;
    let n = if cfg.cores == 0 {
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    } else {
        cfg.cores
    }
    .clamp(1, 64);
    let addr = (cfg.host.as_str(), cfg.port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "host resolves to no address"))?;

    // The first listener picks the port when 0 was asked; the others share it.
    let first = bind_listener(addr, cfg.backlog)?;
    let local_addr = first.local_addr()?;
    let mut listeners = vec![first];
    for _ in 1..n {
        listeners.push(bind_listener(local_addr, cfg.backlog)?);
    }

    let mut polls = Vec::new();
    let mut handles = Vec::new();
    let mut inboxes: Vec<Receiver<CoreMsg>> = Vec::new();
    for _ in 0..n {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let (tx, rx) = crossbeam_channel::unbounded();
        handles.push(CoreHandle { tx, waker, sleeping: Arc::new(AtomicBool::new(false)) });
        polls.push(poll);
        inboxes.push(rx);
    }
    let peers = Arc::new(handles);
    let stats = Arc::new(NodeStats::new(n, def.namespaces.len()));
    // The application learns its handle before any connection is served, so nothing a core
    // does can find it missing.
    let handle = ServerHandle { cores: peers.clone(), adapter: def.adapter.clone(), stats: stats.clone() };
    let hooks = std::mem::take(&mut *def.on_start.lock().unwrap_or_else(|p| p.into_inner()));
    for hook in hooks {
        hook(&handle);
    }
    let mut threads = Vec::new();
    for (i, ((poll, rx), listener)) in polls.into_iter().zip(inboxes).zip(listeners).enumerate() {
        let def = def.clone();
        let peers = peers.clone();
        let stats = stats.clone();
        let t = std::thread::Builder::new().name(format!("sockeye-core-{i}")).spawn(move || {
            let listener = mio::net::TcpListener::from_std(listener);
            match core::Core::new(i as u8, def, poll, listener, rx, peers, stats) {
                Ok(mut c) => c.run(),
                Err(e) => crate::error!("core failed to start"; core = i, error = &e.to_string()),
            }
        })?;
        threads.push(t);
    }
    Ok(RunningServer { local_addr, handle, threads })
}
