//! SQL for the store: opening, schema, and one function per statement. Each function takes the
//! connection and does no transaction control; the worker decides where transactions begin and
//! end.

use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, ErrorCode, OptionalExtension, params};

use super::ids::{ObjectIdGen, iso8601_utc};
use super::{
    GENERAL_ROOM, MAX_HISTORY, NewMessage, RoomRecord, StoreConfig, StoreError, StoredMessage, SyncMode,
};

/// Schema version written to `PRAGMA user_version`. Version 0 is a fresh file.
const SCHEMA_VERSION: i64 = 1;

/// Version 1. `name_key` holds the lowercased name so the UNIQUE constraint enforces
/// case-insensitive names for every alphabet, which SQLite's ASCII-only `NOCASE` would not.
/// `seq` is AUTOINCREMENT so a sequence number is never reused, even after the newest message is
/// deleted by some future retention job: history cursors stay meaningful.
const SCHEMA_V1: &str = "
CREATE TABLE IF NOT EXISTS rooms (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    name_key   TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    created_by TEXT
);
CREATE TABLE IF NOT EXISTS messages (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    id      TEXT NOT NULL UNIQUE,
    channel TEXT NOT NULL,
    sender  TEXT NOT NULL,
    body    TEXT NOT NULL,
    ts_ms   INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_channel_seq ON messages (channel, seq);
";

pub(super) fn now_ms() -> u64 {
    // A clock before 1970 is a broken host; 0 still yields a valid timestamp.
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Opens the database file, sets the connection up and brings the schema to [`SCHEMA_VERSION`].
pub(super) fn open(cfg: &StoreConfig) -> Result<Connection, StoreError> {
    std::fs::create_dir_all(&cfg.dir)?;
    let mut conn = Connection::open(cfg.db_path())?;
    conn.busy_timeout(cfg.busy_timeout)?;

    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        // The durability reasoning in the module docs assumes WAL (e.g. it fails on some network
        // file systems); better to refuse than to run with other semantics.
        return Err(StoreError::Db(format!("could not enable WAL journal mode (got {mode})")));
    }
    let sync = match cfg.sync {
        SyncMode::Full => "FULL",
        SyncMode::Normal => "NORMAL",
    };
    conn.pragma_update(None, "synchronous", sync)?;
    migrate(&mut conn)?;
    Ok(conn)
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    match version {
        SCHEMA_VERSION => Ok(()),
        0 => {
            // One transaction, so a crash mid-migration leaves version 0 and a clean retry.
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            tx.execute_batch(SCHEMA_V1)?;
            tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
            tx.commit()?;
            Ok(())
        }
        v => Err(StoreError::Db(format!(
            "database schema version {v} is not supported by this build (expects {SCHEMA_VERSION})"
        ))),
    }
}

/// Creates the `general` room unless a room of that name (any case) exists. Runs in autocommit
/// mode: a single INSERT is its own transaction.
pub(super) fn ensure_general(conn: &Connection, now_ms: u64) -> Result<(), StoreError> {
    if name_taken(conn, GENERAL_ROOM)? {
        return Ok(());
    }
    let room = RoomRecord {
        id: ObjectIdGen::from_entropy().next(now_ms),
        name: GENERAL_ROOM.to_string(),
        created_at: iso8601_utc(now_ms),
        created_by: None,
    };
    insert_room(conn, &room)
}

fn name_key(name: &str) -> String {
    name.to_lowercase()
}

fn name_taken(conn: &Connection, name: &str) -> Result<bool, StoreError> {
    let mut stmt = conn.prepare_cached("SELECT 1 FROM rooms WHERE name_key = ?1")?;
    Ok(stmt.exists([name_key(name)])?)
}

/// Maps a UNIQUE/PRIMARY KEY violation to [`StoreError::Duplicate`]; SQLite undoes just the failed
/// statement in that case and the surrounding transaction goes on.
fn insert_error(e: rusqlite::Error) -> StoreError {
    if e.sqlite_error_code() == Some(ErrorCode::ConstraintViolation) {
        StoreError::Duplicate
    } else {
        e.into()
    }
}

pub(super) fn insert_message(conn: &Connection, m: &NewMessage) -> Result<(), StoreError> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO messages (id, channel, sender, body, ts_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    let ts = i64::try_from(m.ts_ms).unwrap_or(i64::MAX);
    stmt.execute(params![m.id, m.channel, m.sender, m.body, ts]).map_err(insert_error)?;
    Ok(())
}

pub(super) fn insert_room(conn: &Connection, r: &RoomRecord) -> Result<(), StoreError> {
    // Checked first so a taken name is told apart from a taken id; the UNIQUE constraint on
    // name_key still backs it up.
    if name_taken(conn, &r.name)? {
        return Err(StoreError::NameTaken);
    }
    let mut stmt = conn.prepare_cached(
        "INSERT INTO rooms (id, name, name_key, created_at, created_by) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    stmt.execute(params![r.id, r.name, name_key(&r.name), r.created_at, r.created_by])
        .map_err(insert_error)?;
    Ok(())
}

/// See [`super::StoreHandle::history`].
pub(super) fn history(
    conn: &Connection,
    channel: &str,
    before: Option<&str>,
    limit: usize,
) -> Result<Vec<StoredMessage>, StoreError> {
    let upper = match before {
        None => i64::MAX,
        Some(id) => {
            let mut stmt = conn.prepare_cached("SELECT seq FROM messages WHERE id = ?1 AND channel = ?2")?;
            match stmt.query_row(params![id, channel], |r| r.get::<_, i64>(0)).optional()? {
                Some(seq) => seq,
                None => return Err(StoreError::NotFound),
            }
        }
    };
    let limit = limit.min(MAX_HISTORY);
    // Newest first so the (channel, seq) index is walked backwards from `upper` and stops after
    // `limit` rows; reversed below into the oldest-first order callers want.
    let mut stmt = conn.prepare_cached(
        "SELECT seq, id, channel, sender, body, ts_ms FROM messages
         WHERE channel = ?1 AND seq < ?2 ORDER BY seq DESC LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![channel, upper, limit as i64], |r| {
        Ok(StoredMessage {
            seq: r.get(0)?,
            id: r.get(1)?,
            channel: r.get(2)?,
            sender: r.get(3)?,
            body: r.get(4)?,
            ts_ms: u64::try_from(r.get::<_, i64>(5)?).unwrap_or(0),
        })
    })?;
    let mut out = Vec::with_capacity(limit);
    for row in rows {
        out.push(row?);
    }
    out.reverse();
    Ok(out)
}

/// The whole catalogue, oldest first; insertion order breaks ties between equal timestamps.
pub(super) fn rooms(conn: &Connection) -> Result<Vec<RoomRecord>, StoreError> {
    let mut stmt =
        conn.prepare_cached("SELECT id, name, created_at, created_by FROM rooms ORDER BY created_at, rowid")?;
    let rows = stmt.query_map([], |r| {
        Ok(RoomRecord { id: r.get(0)?, name: r.get(1)?, created_at: r.get(2)?, created_by: r.get(3)? })
    })?;
    let mut out = Vec::new();
    for row in rows {
        out.push(row?);
    }
    Ok(out)
}

#[cfg(test)]
pub(super) fn explain_history(conn: &Connection) -> String {
    let mut stmt = conn
        .prepare(
            "EXPLAIN QUERY PLAN SELECT seq, id, channel, sender, body, ts_ms FROM messages
             WHERE channel = ?1 AND seq < ?2 ORDER BY seq DESC LIMIT ?3",
        )
        .expect("prepare");
    let rows = stmt.query_map(params!["c", 10i64, 10i64], |r| r.get::<_, String>(3)).expect("query");
    rows.map(|r| r.expect("row")).collect::<Vec<_>>().join("; ")
}
