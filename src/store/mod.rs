//! Embedded message store for the chat service: message history and the room catalogue in one
//! SQLite database (`<dir>/sockeye.db`, bundled SQLite via `rusqlite`).
//!
//! # What it does
//!
//! - [`Store::open`] opens or creates the database (WAL journal, schema, indexes, a
//!   `PRAGMA user_version` for later migrations), makes sure a room named `general` exists, starts
//!   one thread named `sockeye-store` that owns the only connection, and returns the whole room
//!   catalogue so the server can seed its in-memory copy without a round trip.
//! - [`StoreHandle`] (cheap to clone, `Send + Sync`) submits commands to that thread over a
//!   bounded `crossbeam-channel`. Submitting never blocks: a full queue answers
//!   [`StoreError::Overloaded`], a closed store [`StoreError::Closed`]. When a submit returns
//!   `Ok(())`, its `done` callback is called exactly once, later, on the storage thread; when it
//!   returns `Err`, `done` is dropped uncalled.
//! - The thread blocks for the first command, then drains what is already queued without waiting.
//!   Consecutive writes ([`StoreHandle::append`], [`StoreHandle::create_room`]), up to
//!   [`StoreConfig::max_batch`], share one transaction. Their callbacks run after `COMMIT`
//!   returns, in submission order. With the default `synchronous=FULL` that means after the commit
//!   is on disk: a write's `Ok` is an acknowledgement that it is durable.
//! - A read ([`StoreHandle::history`], [`StoreHandle::rooms`]) first commits the writes queued
//!   before it, so every read sees every write submitted before it (read-your-writes in
//!   submission order).
//! - A write that is wrong on its own (a duplicate message id, a taken room name) fails alone; the
//!   rest of its batch commits. A batch that cannot commit (database locked past
//!   [`StoreConfig::busy_timeout`], disk full, I/O error) is rolled back and every write in it gets
//!   [`StoreError::Db`]; the thread keeps going and tries later batches afresh on the same
//!   connection (tested with a locked database and with a file size limit that lets no file
//!   grow, which fails writes like a full disk).
//! - [`Store::close`] stops accepting, commits everything already queued, runs its callbacks and
//!   joins the thread. Dropping the [`Store`] does the same.
//! - [`StoreStats`] counts queue depth, commits, writes, refusals and commit latency (a
//!   histogram); [`StoreStats::render`] adds them to `GET /metrics`.
//!
//! # What it does not do
//!
//! - No retries: a failed write is reported once and forgotten; resubmitting is the caller's call
//!   (a resubmitted message with the same id answers [`StoreError::Duplicate`] if the first try
//!   did commit).
//! - No reads on the event loops and no connection pool: one connection, one thread. History reads
//!   queue behind writes; they are cheap (an index range scan of at most [`MAX_HISTORY`] rows) but
//!   a large write backlog delays them.
//! - No validation of content: ids, names and bodies are stored verbatim (bodies are JSON text the
//!   chat layer produced). Callers check shapes ([`is_object_id`]) and sizes before submitting.
//! - No retention, deletion, editing or search, and no schema migrations beyond version 1 yet.
//! - No protection against another process writing the same file, beyond SQLite's own locking.
//! - `synchronous=NORMAL` ([`SyncMode::Normal`]) keeps the database consistent but may lose the
//!   last acknowledged commits on power loss (not on a process crash); the ack-after-durable
//!   contract holds only with [`SyncMode::Full`].

mod db;
pub mod ids;
mod worker;

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Sender, TrySendError};

use crate::metrics::{COMMIT_BUCKETS, Exposition, Histogram};

pub use ids::{ObjectIdGen, is_object_id, iso8601_utc};

/// Largest number of messages one [`StoreHandle::history`] call returns, whatever it asks for.
pub const MAX_HISTORY: usize = 1000;

/// Name of the room [`Store::open`] guarantees exists.
pub const GENERAL_ROOM: &str = "general";

/// `PRAGMA synchronous` setting for the database (WAL mode either way).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncMode {
    /// Every commit is fsynced before its callbacks run: acknowledged writes survive power loss.
    #[default]
    Full,
    /// Commits reach the OS but the WAL is fsynced only at checkpoints: acknowledged writes
    /// survive a process crash but the last ones may be lost on power loss.
    Normal,
}

/// Where and how to open the store. [`StoreConfig::new`] gives the defaults.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Directory holding `sockeye.db` (and SQLite's `-wal`/`-shm` files); created if missing.
    pub dir: PathBuf,
    /// Durability of each commit; default [`SyncMode::Full`].
    pub sync: SyncMode,
    /// Most writes committed in one transaction; default 512. Larger batches amortise the fsync,
    /// smaller ones bound how long the first write of a batch waits for its ack.
    pub max_batch: usize,
    /// Capacity of the command queue; default 65 536. A submit beyond it is refused with
    /// [`StoreError::Overloaded`] rather than buffered, so memory stays bounded.
    pub queue_capacity: usize,
    /// How long SQLite waits for a lock held by another connection before a batch fails;
    /// default 5 s.
    pub busy_timeout: Duration,
}

impl StoreConfig {
    /// Defaults, with the database in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        StoreConfig {
            dir: dir.into(),
            sync: SyncMode::Full,
            max_batch: 512,
            queue_capacity: 65_536,
            busy_timeout: Duration::from_secs(5),
        }
    }

    /// Path of the database file.
    pub fn db_path(&self) -> PathBuf {
        self.dir.join("sockeye.db")
    }
}

/// A message to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    /// Unique across all channels (an ObjectId from [`ObjectIdGen`] in the chat service).
    pub id: String,
    pub channel: String,
    pub sender: String,
    /// JSON text, stored verbatim.
    pub body: String,
    /// Unix time in milliseconds. Values above `i64::MAX` are stored as `i64::MAX`.
    pub ts_ms: u64,
}

/// A stored message, as [`StoreHandle::history`] returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// Store-assigned, increasing in commit order; history is ordered by it.
    pub seq: i64,
    pub id: String,
    pub channel: String,
    pub sender: String,
    pub body: String,
    pub ts_ms: u64,
}

/// A room in the catalogue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoomRecord {
    pub id: String,
    /// Display name; unique ignoring case.
    pub name: String,
    /// ISO-8601 UTC, as [`iso8601_utc`] writes it.
    pub created_at: String,
    pub created_by: Option<String>,
}

/// Why a store operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// The command queue is full; nothing was queued.
    Overloaded,
    /// The store is closed (or its thread is gone); nothing was queued.
    Closed,
    /// A room with that name, ignoring case, already exists.
    NameTaken,
    /// The `before` message id of a history request is not in that channel.
    NotFound,
    /// A message or room with that id already exists. The chat layer can treat a resent message
    /// that gets this as already stored.
    Duplicate,
    /// SQLite or file-system error, with its message.
    Db(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Overloaded => f.write_str("store queue is full"),
            StoreError::Closed => f.write_str("store is closed"),
            StoreError::NameTaken => f.write_str("room name is taken"),
            StoreError::NotFound => f.write_str("message not found"),
            StoreError::Duplicate => f.write_str("id already exists"),
            StoreError::Db(msg) => write!(f, "database error: {msg}"),
        }
    }
}

impl std::error::Error for StoreError {}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Db(e.to_string())
    }
}

impl From<std::io::Error> for StoreError {
    fn from(e: std::io::Error) -> Self {
        StoreError::Db(e.to_string())
    }
}

/// Counters kept by the store. Plain atomics, read with `Relaxed` loads; each is exact on its own
/// but two reads are not a consistent snapshot.
#[derive(Debug, Default)]
pub struct StoreStats {
    /// Commands accepted and not yet taken by the storage thread.
    pub queue_depth: AtomicU64,
    /// Transactions committed.
    pub commits: AtomicU64,
    /// Writes committed (their callbacks got `Ok`).
    pub writes: AtomicU64,
    /// Writes whose callbacks got an error, alone or with their whole batch.
    pub failed_writes: AtomicU64,
    /// Duration of the last committed write transaction, `BEGIN` to end of `COMMIT`, in µs.
    pub last_commit_us: AtomicU64,
    /// Longest such duration so far, in µs.
    pub max_commit_us: AtomicU64,
    /// Submits refused because the queue was full ([`StoreError::Overloaded`]).
    pub rejected: AtomicU64,
    /// Duration of each committed write transaction (written by the storage thread only).
    pub commit_latency: Histogram<{ COMMIT_BUCKETS.len() }>,
}

impl StoreStats {
    /// All counters, loaded one after another.
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            queue_depth: self.queue_depth.load(Ordering::Relaxed),
            commits: self.commits.load(Ordering::Relaxed),
            writes: self.writes.load(Ordering::Relaxed),
            failed_writes: self.failed_writes.load(Ordering::Relaxed),
            last_commit_us: self.last_commit_us.load(Ordering::Relaxed),
            max_commit_us: self.max_commit_us.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
        }
    }

    /// Append the store's families to a `GET /metrics` exposition.
    pub fn render(&self, e: &mut Exposition) {
        let s = self.snapshot();
        e.single(
            "sockeye_store_queue_depth",
            "gauge",
            "Store commands queued, not yet taken.",
            s.queue_depth as f64,
        );
        e.single(
            "sockeye_store_commits_total",
            "counter",
            "Store write transactions committed.",
            s.commits as f64,
        );
        e.single("sockeye_store_writes_total", "counter", "Store writes committed.", s.writes as f64);
        e.single(
            "sockeye_store_failed_writes_total",
            "counter",
            "Store writes that failed, alone or with their batch.",
            s.failed_writes as f64,
        );
        e.single(
            "sockeye_store_rejected_total",
            "counter",
            "Store commands refused: the queue was full (queue_capacity).",
            s.rejected as f64,
        );
        e.family(
            "sockeye_store_commit_seconds",
            "histogram",
            "Store write transaction duration, BEGIN to COMMIT.",
        );
        e.histogram("sockeye_store_commit_seconds", &[], &COMMIT_BUCKETS, &self.commit_latency);
    }
}

/// Plain copy of [`StoreStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatsSnapshot {
    pub queue_depth: u64,
    pub commits: u64,
    pub writes: u64,
    pub failed_writes: u64,
    pub last_commit_us: u64,
    pub max_commit_us: u64,
    pub rejected: u64,
}

type Done<T> = Box<dyn FnOnce(Result<T, StoreError>) + Send + 'static>;

/// What the storage thread is asked to do.
enum Cmd {
    Append(NewMessage, Done<()>),
    CreateRoom(RoomRecord, Done<()>),
    History {
        channel: String,
        before: Option<String>,
        limit: usize,
        done: Done<Vec<StoredMessage>>,
    },
    Rooms(Done<Vec<RoomRecord>>),
    /// Sent by [`Store::close`] after the last accepted command.
    Shutdown,
}

/// State shared by the [`Store`] and every [`StoreHandle`].
struct Shared {
    tx: Sender<Cmd>,
    stats: Arc<StoreStats>,
    /// `true` once closing. Submits hold the read lock across their check and their `try_send`,
    /// and `close` sets it under the write lock before queueing [`Cmd::Shutdown`]; so every
    /// accepted command is queued ahead of the shutdown and gets its callback. The lock is only
    /// ever held for a flag check and a non-blocking send.
    closed: RwLock<bool>,
}

/// The open store; owns the storage thread. Close it with [`Store::close`] (or drop it).
pub struct Store {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Store {
    /// Opens or creates the database (WAL mode, schema, indexes), makes sure a room named
    /// `general` exists (creating it with a fresh id and `created_at` = now if absent), starts the
    /// storage thread, and returns the whole room catalogue (oldest first) so the server can seed
    /// its in-memory copy without a round trip.
    ///
    /// Runs on the caller's thread and does blocking I/O: call it at startup, not on an event
    /// loop.
    pub fn open(cfg: StoreConfig) -> Result<(Store, Vec<RoomRecord>), StoreError> {
        let conn = db::open(&cfg)?;
        db::ensure_general(&conn, db::now_ms())?;
        let rooms = db::rooms(&conn)?;

        // Capacity 0 would make a rendezvous channel on which every try_send fails.
        let (tx, rx) = crossbeam_channel::bounded(cfg.queue_capacity.max(1));
        let stats = Arc::new(StoreStats::default());
        let worker = worker::Worker::new(conn, rx, cfg.max_batch.max(1), stats.clone());
        let thread = std::thread::Builder::new().name("sockeye-store".into()).spawn(move || worker.run())?;

        let shared = Arc::new(Shared { tx, stats, closed: RwLock::new(false) });
        Ok((Store { shared, thread: Some(thread) }, rooms))
    }

    /// A handle for submitting commands from any thread.
    pub fn handle(&self) -> StoreHandle {
        StoreHandle { shared: self.shared.clone() }
    }

    /// Stops accepting commands (submits answer [`StoreError::Closed`]), commits everything
    /// already queued, runs its callbacks, and joins the storage thread.
    pub fn close(mut self) {
        self.shutdown();
    }

    /// The store's counters, shared with the storage thread.
    pub fn stats(&self) -> Arc<StoreStats> {
        self.shared.stats.clone()
    }

    fn shutdown(&mut self) {
        let Some(thread) = self.thread.take() else { return };
        {
            let mut closed = self.shared.closed.write().unwrap_or_else(|e| e.into_inner());
            *closed = true;
        }
        // Blocking send: the thread is draining, so a full queue makes room. It fails only if the
        // thread is already gone, and then there is nothing to wait for.
        let _ = self.shared.tx.send(Cmd::Shutdown);
        // A panic on the storage thread has already been reported by the panic hook.
        let _ = thread.join();
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Submits commands to the storage thread. Clone freely; every method is non-blocking.
///
/// On `Ok(())` the `done` callback will be called exactly once, on the storage thread, so it must
/// be quick: typically it posts the result back to an event loop. On `Err` it is dropped uncalled.
#[derive(Clone)]
pub struct StoreHandle {
    shared: Arc<Shared>,
}

impl StoreHandle {
    /// Appends a message. `done` gets `Ok` once the message is committed, or
    /// [`StoreError::Duplicate`] if its id is taken, or [`StoreError::Db`].
    pub fn append(
        &self,
        msg: NewMessage,
        done: impl FnOnce(Result<(), StoreError>) + Send + 'static,
    ) -> Result<(), StoreError> {
        self.submit(Cmd::Append(msg, Box::new(done)))
    }

    /// Adds a room. `done` gets [`StoreError::NameTaken`] when a room with that name (ignoring
    /// case) exists, [`StoreError::Duplicate`] when one with that id exists.
    pub fn create_room(
        &self,
        room: RoomRecord,
        done: impl FnOnce(Result<(), StoreError>) + Send + 'static,
    ) -> Result<(), StoreError> {
        self.submit(Cmd::CreateRoom(room, Box::new(done)))
    }

    /// The `limit` newest messages of `channel` that are older than message id `before` (all when
    /// `None`), returned oldest first. `limit` is capped at [`MAX_HISTORY`]. An id that is not a
    /// message of `channel` gives [`StoreError::NotFound`].
    pub fn history(
        &self,
        channel: String,
        before: Option<String>,
        limit: usize,
        done: impl FnOnce(Result<Vec<StoredMessage>, StoreError>) + Send + 'static,
    ) -> Result<(), StoreError> {
        self.submit(Cmd::History { channel, before, limit, done: Box::new(done) })
    }

    /// The whole room catalogue, oldest first.
    pub fn rooms(
        &self,
        done: impl FnOnce(Result<Vec<RoomRecord>, StoreError>) + Send + 'static,
    ) -> Result<(), StoreError> {
        self.submit(Cmd::Rooms(Box::new(done)))
    }

    /// The store's counters.
    pub fn stats(&self) -> Arc<StoreStats> {
        self.shared.stats.clone()
    }

    fn submit(&self, cmd: Cmd) -> Result<(), StoreError> {
        let closed = self.shared.closed.read().unwrap_or_else(|e| e.into_inner());
        if *closed {
            return Err(StoreError::Closed);
        }
        // Counted before sending so the thread's decrement can never run first and wrap.
        let depth = &self.shared.stats.queue_depth;
        depth.fetch_add(1, Ordering::Relaxed);
        match self.shared.tx.try_send(cmd) {
            Ok(()) => Ok(()),
            Err(e) => {
                depth.fetch_sub(1, Ordering::Relaxed);
                if matches!(e, TrySendError::Full(_)) {
                    self.shared.stats.rejected.fetch_add(1, Ordering::Relaxed);
                }
                // The rejected command, callback included, is dropped here uncalled.
                Err(match e {
                    TrySendError::Full(_) => StoreError::Overloaded,
                    TrySendError::Disconnected(_) => StoreError::Closed,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests;
