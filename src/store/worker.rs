//! The storage thread: takes commands off the queue, groups consecutive writes into one
//! transaction, and calls each command's callback once its outcome is final.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use crossbeam_channel::Receiver;
use rusqlite::Connection;

use super::{Cmd, Done, NewMessage, RoomRecord, StoreError, StoreStats, db};

/// A write waiting for its batch to commit.
enum Write {
    Append(NewMessage, Done<()>),
    CreateRoom(RoomRecord, Done<()>),
}

pub(super) struct Worker {
    conn: Connection,
    rx: Receiver<Cmd>,
    max_batch: usize,
    stats: Arc<StoreStats>,
    /// Writes taken off the queue and not yet committed, in arrival order.
    pending: Vec<Write>,
}

impl Worker {
    pub(super) fn new(conn: Connection, rx: Receiver<Cmd>, max_batch: usize, stats: Arc<StoreStats>) -> Self {
        Worker { conn, rx, max_batch, stats, pending: Vec::new() }
    }

    pub(super) fn run(mut self) {
        // `recv` fails only once every sender is gone, which the Store's own sender prevents until
        // it has sent Shutdown; the check is for robustness, not an expected path.
        while let Ok(first) = self.rx.recv() {
            let mut stop = self.take(first);
            // Drain what is already queued without waiting: under load this is what makes batches
            // large; when idle a lone write commits at once.
            while !stop {
                match self.rx.try_recv() {
                    Ok(cmd) => stop = self.take(cmd),
                    Err(_) => break,
                }
            }
            self.flush();
            if stop {
                // Submits check the closed flag under the lock that `close` takes before queueing
                // Shutdown, so nothing accepted can follow it; drained anyway so that a callback
                // can never be lost if that ever changes.
                while let Ok(cmd) = self.rx.try_recv() {
                    self.take(cmd);
                }
                self.flush();
                break;
            }
        }
    }

    /// Handles one command; `true` for Shutdown.
    fn take(&mut self, cmd: Cmd) -> bool {
        if !matches!(cmd, Cmd::Shutdown) {
            self.stats.queue_depth.fetch_sub(1, Ordering::Relaxed);
        }
        match cmd {
            Cmd::Append(m, done) => self.push(Write::Append(m, done)),
            Cmd::CreateRoom(r, done) => self.push(Write::CreateRoom(r, done)),
            Cmd::History { channel, before, limit, done } => {
                // Commit earlier writes first so the read sees them.
                self.flush();
                let r = db::history(&self.conn, &channel, before.as_deref(), limit);
                call(done, r);
            }
            Cmd::Rooms(done) => {
                self.flush();
                call(done, db::rooms(&self.conn));
            }
            Cmd::Shutdown => return true,
        }
        false
    }

    fn push(&mut self, w: Write) {
        self.pending.push(w);
        if self.pending.len() >= self.max_batch {
            self.flush();
        }
    }

    /// Commits the pending writes in one transaction, then runs their callbacks in order.
    fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.pending);
        let start = Instant::now();
        match self.write_batch(&batch) {
            Ok(results) => {
                let elapsed = start.elapsed();
                let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
                let ok = results.iter().filter(|r| r.is_ok()).count() as u64;
                let s = &self.stats;
                s.commits.fetch_add(1, Ordering::Relaxed);
                s.writes.fetch_add(ok, Ordering::Relaxed);
                s.failed_writes.fetch_add(results.len() as u64 - ok, Ordering::Relaxed);
                s.last_commit_us.store(us, Ordering::Relaxed);
                s.max_commit_us.fetch_max(us, Ordering::Relaxed);
                let ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
                s.commit_latency.observe_ns(&crate::metrics::COMMIT_BUCKETS, ns);
                for (w, r) in batch.into_iter().zip(results) {
                    w.finish(r);
                }
            }
            Err(e) => {
                crate::error!("storage write failed"; writes = batch.len(), error = &e.to_string());
                self.stats.failed_writes.fetch_add(batch.len() as u64, Ordering::Relaxed);
                let e = match e {
                    StoreError::Db(msg) => StoreError::Db(msg),
                    other => StoreError::Db(other.to_string()),
                };
                for w in batch {
                    w.finish(Err(e.clone()));
                }
            }
        }
    }

    /// Runs `batch` in one transaction. `Ok` holds each write's own outcome and means the
    /// transaction committed (with the writes that succeeded); `Err` means nothing was committed.
    fn write_batch(&self, batch: &[Write]) -> Result<Vec<Result<(), StoreError>>, StoreError> {
        let result = self.try_write_batch(batch);
        if result.is_err() && !self.conn.is_autocommit() {
            // Nothing to do if this fails too: the next BEGIN fails, and that batch is reported.
            let _ = self.conn.execute_batch("ROLLBACK");
        }
        result
    }

    fn try_write_batch(&self, batch: &[Write]) -> Result<Vec<Result<(), StoreError>>, StoreError> {
        // IMMEDIATE takes the write lock up front, so a lock held elsewhere fails the batch here,
        // after busy_timeout, rather than half-way through it.
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        let mut results = Vec::with_capacity(batch.len());
        for w in batch {
            let r = match w {
                Write::Append(m, _) => db::insert_message(&self.conn, m),
                Write::CreateRoom(room, _) => db::insert_room(&self.conn, room),
            };
            // A constraint failure undoes only its own statement. Some errors (I/O, out of
            // memory, disk full) can make SQLite roll back the whole transaction instead; then
            // the earlier writes are gone too and the batch has failed as a whole. Without this
            // check the later writes would each autocommit on their own and be reported wrongly.
            if let Err(e) = &r
                && self.conn.is_autocommit()
            {
                return Err(e.clone());
            }
            results.push(r);
        }
        self.conn.execute_batch("COMMIT")?;
        Ok(results)
    }
}

impl Write {
    fn finish(self, r: Result<(), StoreError>) {
        match self {
            Write::Append(_, done) | Write::CreateRoom(_, done) => call(done, r),
        }
    }
}

/// Calls a callback, containing a panic in it so that one faulty callback cannot stop the thread
/// and with it every later command's callback. The panic hook still reports it.
fn call<T>(done: Done<T>, r: Result<T, StoreError>) {
    let _ = catch_unwind(AssertUnwindSafe(move || done(r)));
}
