use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, bounded, unbounded};

use super::*;

/// Long enough for any callback on a loaded CI machine; tests fail rather than hang.
const WAIT: Duration = Duration::from_secs(20);

fn tmp() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("sockeye-store-test-").tempdir().expect("tempdir")
}

fn open(dir: &tempfile::TempDir) -> (Store, Vec<RoomRecord>) {
    Store::open(StoreConfig::new(dir.path())).expect("open")
}

fn msg(id: &str, channel: &str, ts_ms: u64) -> NewMessage {
    NewMessage {
        id: id.to_string(),
        channel: channel.to_string(),
        sender: "alice".to_string(),
        body: format!(r#"{{"text":"{id}"}}"#),
        ts_ms,
    }
}

fn room(id: &str, name: &str, created_at: &str) -> RoomRecord {
    RoomRecord {
        id: id.to_string(),
        name: name.to_string(),
        created_at: created_at.to_string(),
        created_by: Some("alice".to_string()),
    }
}

fn append(h: &StoreHandle, m: NewMessage) -> Result<(), StoreError> {
    let (tx, rx) = bounded(1);
    h.append(m, move |r| tx.send(r).expect("send")).expect("submit");
    rx.recv_timeout(WAIT).expect("callback")
}

fn create_room(h: &StoreHandle, r: RoomRecord) -> Result<(), StoreError> {
    let (tx, rx) = bounded(1);
    h.create_room(r, move |r| tx.send(r).expect("send")).expect("submit");
    rx.recv_timeout(WAIT).expect("callback")
}

fn history(
    h: &StoreHandle,
    channel: &str,
    before: Option<&str>,
    limit: usize,
) -> Result<Vec<StoredMessage>, StoreError> {
    let (tx, rx) = bounded(1);
    h.history(channel.to_string(), before.map(str::to_string), limit, move |r| tx.send(r).expect("send"))
        .expect("submit");
    rx.recv_timeout(WAIT).expect("callback")
}

fn rooms(h: &StoreHandle) -> Vec<RoomRecord> {
    let (tx, rx) = bounded(1);
    h.rooms(move |r| tx.send(r).expect("send")).expect("submit");
    rx.recv_timeout(WAIT).expect("callback").expect("rooms")
}

fn ids(ms: &[StoredMessage]) -> Vec<&str> {
    ms.iter().map(|m| m.id.as_str()).collect()
}

/// Parks the storage thread inside a callback until the returned sender is dropped or sent to,
/// so that commands submitted meanwhile queue up and are drained together afterwards. Returns
/// once the thread is parked.
fn stall(h: &StoreHandle) -> Sender<()> {
    let (release_tx, release_rx) = bounded::<()>(1);
    let (parked_tx, parked_rx) = bounded::<()>(1);
    h.rooms(move |_| {
        let _ = parked_tx.send(());
        let _ = release_rx.recv_timeout(WAIT);
    })
    .expect("submit");
    parked_rx.recv_timeout(WAIT).expect("parked");
    release_tx
}

fn collect<T>(rx: &Receiver<T>, n: usize) -> Vec<T> {
    (0..n).map(|_| rx.recv_timeout(WAIT).expect("callback")).collect()
}

#[test]
fn append_then_history_oldest_first() {
    let dir = tmp();
    let (store, _) = open(&dir);
    let h = store.handle();
    for i in 0..5 {
        append(&h, msg(&format!("m{i}"), "general", 1000 + i)).expect("append");
    }
    let all = history(&h, "general", None, 50).expect("history");
    assert_eq!(ids(&all), ["m0", "m1", "m2", "m3", "m4"]);
    assert!(all.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(
        all[2],
        StoredMessage {
            seq: all[2].seq,
            id: "m2".into(),
            channel: "general".into(),
            sender: "alice".into(),
            body: r#"{"text":"m2"}"#.into(),
            ts_ms: 1002,
        }
    );
    // A limit keeps the newest, still oldest first.
    let last2 = history(&h, "general", None, 2).expect("history");
    assert_eq!(ids(&last2), ["m3", "m4"]);
    assert_eq!(history(&h, "general", None, 0).expect("history"), []);
    store.close();
}

#[test]
fn history_pages_backwards_with_before() {
    let dir = tmp();
    let (store, _) = open(&dir);
    let h = store.handle();
    for i in 0..25 {
        append(&h, msg(&format!("m{i:02}"), "c", i)).expect("append");
    }
    let mut pages = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let page = history(&h, "c", before.as_deref(), 10).expect("history");
        if page.is_empty() {
            break;
        }
        before = Some(page[0].id.clone());
        pages.push(ids(&page).iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert!(pages.len() <= 3, "too many pages");
    }
    let want = |r: std::ops::Range<u32>| r.map(|i| format!("m{i:02}")).collect::<Vec<_>>();
    assert_eq!(pages, [want(15..25), want(5..15), want(0..5)]);
    store.close();
}

#[test]
fn history_unknown_before_is_not_found() {
    let dir = tmp();
    let (store, _) = open(&dir);
    let h = store.handle();
    append(&h, msg("a1", "a", 1)).expect("append");
    append(&h, msg("b1", "b", 1)).expect("append");
    assert_eq!(history(&h, "a", Some("nope"), 10), Err(StoreError::NotFound));
    // An id from another channel is not a cursor in this one.
    assert_eq!(history(&h, "a", Some("b1"), 10), Err(StoreError::NotFound));
    assert_eq!(history(&h, "a", Some("a1"), 10), Ok(vec![]));
    store.close();
}

#[test]
fn history_of_empty_channel_is_empty() {
    let dir = tmp();
    let (store, _) = open(&dir);
    let h = store.handle();
    assert_eq!(history(&h, "nobody-here", None, 100), Ok(vec![]));
    assert_eq!(history(&h, "", None, usize::MAX), Ok(vec![]));
    store.close();
}

#[test]
fn channels_are_isolated() {
    let dir = tmp();
    let (store, _) = open(&dir);
    let h = store.handle();
    for i in 0..6 {
        let ch = if i % 2 == 0 { "even" } else { "odd" };
        append(&h, msg(&format!("m{i}"), ch, i)).expect("append");
    }
    assert_eq!(ids(&history(&h, "even", None, 10).expect("history")), ["m0", "m2", "m4"]);
    assert_eq!(ids(&history(&h, "odd", None, 10).expect("history")), ["m1", "m3", "m5"]);
    assert_eq!(ids(&history(&h, "odd", Some("m5"), 1).expect("history")), ["m3"]);
    assert_eq!(history(&h, "Even", None, 10), Ok(vec![]), "channel names are case-sensitive");
    store.close();
}

#[test]
fn history_limit_is_capped() {
    let dir = tmp();
    let (store, _) = open(&dir);
    let h = store.handle();
    let (tx, rx) = unbounded();
    let n = MAX_HISTORY + 50;
    for i in 0..n {
        let tx = tx.clone();
        // Retried on Overloaded, which the default capacity makes impossible here anyway.
        h.append(msg(&format!("m{i}"), "big", i as u64), move |r| tx.send(r).expect("send")).expect("submit");
    }
    assert!(collect(&rx, n).iter().all(Result::is_ok));
    let got = history(&h, "big", None, usize::MAX).expect("history");
    assert_eq!(got.len(), MAX_HISTORY);
    assert_eq!(got[0].id, "m50");
    assert_eq!(got[MAX_HISTORY - 1].id, format!("m{}", n - 1));
    store.close();
}

#[test]
fn history_query_uses_the_channel_seq_index() {
    let dir = tmp();
    let (store, _) = open(&dir);
    store.close();
    let conn = db::open(&StoreConfig::new(dir.path())).expect("open");
    let plan = db::explain_history(&conn);
    assert!(plan.contains("messages_channel_seq"), "{plan}");
    assert!(!plan.contains("TEMP B-TREE"), "history should not sort: {plan}");
}

#[test]
fn create_room_and_name_taken_ignoring_case() {
    let dir = tmp();
    let (store, initial) = open(&dir);
    let h = store.handle();
    assert_eq!(initial.len(), 1);
    create_room(&h, room("r1", "Random", "2099-01-01T00:00:00.000Z")).expect("create");
    assert_eq!(create_room(&h, room("r2", "random", "2099-01-01T00:00:00.000Z")), Err(StoreError::NameTaken));
    assert_eq!(create_room(&h, room("r3", "RANDOM", "2099-01-01T00:00:00.000Z")), Err(StoreError::NameTaken));
    assert_eq!(
        create_room(&h, room("r4", "General", "2099-01-01T00:00:00.000Z")),
        Err(StoreError::NameTaken)
    );
    // Case folding is Unicode-aware, not ASCII-only.
    create_room(&h, room("r5", "Ärger", "2099-01-01T00:00:00.000Z")).expect("create");
    assert_eq!(create_room(&h, room("r6", "ärger", "2099-01-01T00:00:00.000Z")), Err(StoreError::NameTaken));
    // Same id, new name.
    assert_eq!(create_room(&h, room("r1", "other", "2099-01-01T00:00:00.000Z")), Err(StoreError::Duplicate));
    let names: Vec<String> = rooms(&h).into_iter().map(|r| r.name).collect();
    assert_eq!(names, ["general", "Random", "Ärger"]);
    store.close();
}

#[test]
fn general_is_created_once_and_kept_across_reopen() {
    let dir = tmp();
    let (store, first) = open(&dir);
    assert_eq!(first.len(), 1);
    let general = first[0].clone();
    assert_eq!(general.name, GENERAL_ROOM);
    assert!(is_object_id(&general.id), "{}", general.id);
    assert_eq!(general.created_by, None);
    assert_eq!(general.created_at.len(), "2025-01-02T11:05:00.000Z".len());
    assert!(general.created_at.ends_with('Z'));
    store.close();

    for _ in 0..2 {
        let (store, again) = open(&dir);
        assert_eq!(again, std::slice::from_ref(&general));
        store.close();
    }
}

#[test]
fn rooms_are_listed_oldest_first() {
    let dir = tmp();
    let (store, initial) = open(&dir);
    let h = store.handle();
    // Submitted out of time order; listed by created_at, ties in insertion order.
    create_room(&h, room("r3", "c", "2031-01-01T00:00:00.000Z")).expect("create");
    create_room(&h, room("r1", "a", "2030-01-01T00:00:00.000Z")).expect("create");
    create_room(&h, room("r2", "b", "2030-06-01T00:00:00.000Z")).expect("create");
    create_room(&h, room("r4", "d", "2031-01-01T00:00:00.000Z")).expect("create");
    let got: Vec<String> = rooms(&h).into_iter().map(|r| r.id).collect();
    assert_eq!(got, [initial[0].id.as_str(), "r1", "r2", "r3", "r4"]);
    store.close();
    let (store, reopened) = open(&dir);
    assert_eq!(reopened.into_iter().map(|r| r.id).collect::<Vec<_>>(), got);
    store.close();
}

#[test]
fn reopen_keeps_everything() {
    let dir = tmp();
    let (store, _) = open(&dir);
    let h = store.handle();
    create_room(&h, room("r1", "dev", "2030-01-01T00:00:00.000Z")).expect("create");
    for i in 0..10 {
        append(&h, msg(&format!("m{i}"), if i < 5 { "general" } else { "dev" }, i)).expect("append");
    }
    let before_general = history(&h, "general", None, 100).expect("history");
    let before_dev = history(&h, "dev", None, 100).expect("history");
    let before_rooms = rooms(&h);
    store.close();

    let (store, rooms_on_open) = open(&dir);
    let h = store.handle();
    assert_eq!(rooms_on_open, before_rooms);
    assert_eq!(history(&h, "general", None, 100).expect("history"), before_general);
    assert_eq!(history(&h, "dev", None, 100).expect("history"), before_dev);
    // Sequence numbers continue after the old ones.
    append(&h, msg("m10", "dev", 10)).expect("append");
    let dev = history(&h, "dev", None, 100).expect("history");
    assert!(dev[dev.len() - 1].seq > before_dev[before_dev.len() - 1].seq);
    store.close();
}

#[test]
fn duplicate_id_fails_only_that_write_in_its_batch() {
    let dir = tmp();
    let (store, _) = open(&dir);
    let h = store.handle();
    append(&h, msg("taken", "c", 0)).expect("append");
    let stats = store.stats();
    let commits_before = stats.commits.load(Ordering::Relaxed);

    let release = stall(&h);
    let (tx, rx) = unbounded();
    let batch = ["a", "taken", "b", "b", "c"];
    for (i, id) in batch.iter().enumerate() {
        let tx = tx.clone();
        h.append(msg(id, "c", 1), move |r| tx.send((i, r)).expect("send")).expect("submit");
    }
    let tx2 = tx.clone();
    h.create_room(room("rx", "GENERAL", "2030-01-01T00:00:00.000Z"), move |r| {
        tx2.send((batch.len(), r)).expect("send")
    })
    .expect("submit");
    drop(release);

    let got = collect(&rx, batch.len() + 1);
    assert_eq!(
        got,
        [
            (0, Ok(())),
            (1, Err(StoreError::Duplicate)),
            (2, Ok(())),
            (3, Err(StoreError::Duplicate)),
            (4, Ok(())),
            (5, Err(StoreError::NameTaken)),
        ]
    );
    // All six in one transaction.
    assert_eq!(stats.commits.load(Ordering::Relaxed), commits_before + 1);
    assert_eq!(ids(&history(&h, "c", None, 10).expect("history")), ["taken", "a", "b", "c"]);
    let s = stats.snapshot();
    assert_eq!((s.writes, s.failed_writes), (4, 3));
    store.close();
}

#[test]
fn max_batch_bounds_writes_per_transaction() {
    let dir = tmp();
    let mut cfg = StoreConfig::new(dir.path());
    cfg.max_batch = 3;
    let (store, _) = Store::open(cfg).expect("open");
    let h = store.handle();
    let release = stall(&h);
    let (tx, rx) = unbounded();
    for i in 0..10 {
        let tx = tx.clone();
        h.append(msg(&format!("m{i}"), "c", i), move |r| tx.send(r).expect("send")).expect("submit");
    }
    drop(release);
    assert!(collect(&rx, 10).iter().all(Result::is_ok));
    assert_eq!(store.stats().commits.load(Ordering::Relaxed), 4, "3 + 3 + 3 + 1");
    store.close();
}

#[test]
fn callbacks_run_once_in_submission_order_and_reads_see_earlier_writes() {
    let dir = tmp();
    let (store, _) = open(&dir);
    let h = store.handle();
    let order = Arc::new(Mutex::new(Vec::new()));
    let calls = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = unbounded::<()>();

    // Half submitted while the thread is stalled (so they batch), half while it runs freely.
    for round in 0..2 {
        let release = if round == 0 { Some(stall(&h)) } else { None };
        for i in 0..300 {
            let seq = round * 300 + i;
            let (order, calls, tx) = (order.clone(), calls.clone(), tx.clone());
            let note = move || {
                order.lock().expect("lock").push(seq);
                calls.fetch_add(1, Ordering::SeqCst);
                tx.send(()).expect("send");
            };
            match i % 10 {
                // A read right after writes, without waiting for their acks, sees them all.
                7 => h
                    .history("c".into(), None, 1, move |r| {
                        let last = r.expect("history").pop().map(|m| m.id);
                        assert_eq!(last.as_deref(), Some(format!("m{}", seq - 1).as_str()));
                        note();
                    })
                    .expect("submit"),
                9 => h
                    .rooms(move |r| {
                        r.expect("rooms");
                        note();
                    })
                    .expect("submit"),
                _ => h
                    .append(msg(&format!("m{seq}"), "c", 0), move |r| {
                        r.expect("append");
                        note();
                    })
                    .expect("submit"),
            }
        }
        drop(release);
    }
    collect(&rx, 600);
    store.close();
    // Nothing more arrives after close: each callback ran exactly once.
    assert_eq!(calls.load(Ordering::SeqCst), 600);
    assert_eq!(*order.lock().expect("lock"), (0..600).collect::<Vec<_>>());
}

#[test]
fn overloaded_when_queue_is_full() {
    let dir = tmp();
    let mut cfg = StoreConfig::new(dir.path());
    cfg.queue_capacity = 4;
    let (store, _) = Store::open(cfg).expect("open");
    let h = store.handle();
    let release = stall(&h);

    let calls = Arc::new(AtomicUsize::new(0));
    let rejected_calls = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = unbounded();
    let mut accepted = 0;
    for i in 0..4 {
        let tx = tx.clone();
        let calls = calls.clone();
        h.append(msg(&format!("m{i}"), "c", 0), move |r| {
            calls.fetch_add(1, Ordering::SeqCst);
            tx.send(r).expect("send");
        })
        .expect("within capacity");
        accepted += 1;
    }
    assert_eq!(store.stats().queue_depth.load(Ordering::Relaxed), 4);
    for i in 4..8 {
        let rejected_calls = rejected_calls.clone();
        let r = h.append(msg(&format!("m{i}"), "c", 0), move |_| {
            rejected_calls.fetch_add(1, Ordering::SeqCst);
        });
        assert_eq!(r, Err(StoreError::Overloaded));
    }
    let (rtx, _rrx) = bounded(1);
    assert_eq!(h.rooms(move |r| rtx.send(r).expect("send")), Err(StoreError::Overloaded));
    assert_eq!(store.stats().queue_depth.load(Ordering::Relaxed), 4);
    assert_eq!(store.stats().snapshot().rejected, 5, "four appends and one read refused");

    drop(release);
    assert!(collect(&rx, accepted).iter().all(Result::is_ok));
    assert_eq!(ids(&history(&h, "c", None, 10).expect("history")), ["m0", "m1", "m2", "m3"]);
    store.close();
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    assert_eq!(rejected_calls.load(Ordering::SeqCst), 0, "rejected callbacks are never called");
}

#[test]
fn locked_database_fails_the_batch_then_the_store_recovers() {
    let dir = tmp();
    let mut cfg = StoreConfig::new(dir.path());
    cfg.busy_timeout = Duration::from_millis(50);
    let (store, _) = Store::open(cfg).expect("open");
    let h = store.handle();
    append(&h, msg("before", "c", 0)).expect("append");

    // A second connection holds the write lock.
    let other = rusqlite::Connection::open(dir.path().join("sockeye.db")).expect("open");
    other.execute_batch("BEGIN IMMEDIATE").expect("lock");

    let release = stall(&h);
    let (tx, rx) = unbounded();
    for id in ["x1", "x2", "x3"] {
        let tx = tx.clone();
        h.append(msg(id, "c", 0), move |r| tx.send(r).expect("send")).expect("submit");
    }
    drop(release);
    for r in collect(&rx, 3) {
        match r {
            Err(StoreError::Db(m)) => assert!(m.contains("locked") || m.contains("busy"), "{m}"),
            other => panic!("expected a Db error, got {other:?}"),
        }
    }
    assert_eq!(store.stats().failed_writes.load(Ordering::Relaxed), 3);
    // Reads still work while the lock is held (WAL readers do not wait for writers).
    assert_eq!(ids(&history(&h, "c", None, 10).expect("history")), ["before"]);

    other.execute_batch("ROLLBACK").expect("unlock");
    append(&h, msg("x1", "c", 0)).expect("append after the lock is gone");
    assert_eq!(ids(&history(&h, "c", None, 10).expect("history")), ["before", "x1"]);
    store.close();
}

#[test]
fn close_flushes_queued_writes_and_later_submits_are_closed() {
    let dir = tmp();
    let (store, _) = open(&dir);
    let h = store.handle();
    let (tx, rx) = unbounded();
    let n = 2000;
    for i in 0..n {
        let tx = tx.clone();
        h.append(msg(&format!("m{i}"), "c", 0), move |r| tx.send(r).expect("send")).expect("submit");
    }
    // Returns after every queued write has committed and had its callback.
    store.close();
    assert_eq!(rx.try_iter().filter(Result::is_ok).count(), n);
    assert_eq!(h.append(msg("late", "c", 0), |_| panic!("never called")), Err(StoreError::Closed));
    assert_eq!(h.rooms(|_| panic!("never called")), Err(StoreError::Closed));

    let (store, _) = open(&dir);
    let got = history(&store.handle(), "c", None, 1).expect("history");
    assert_eq!(ids(&got), [format!("m{}", n - 1)]);
    store.close();
}

#[test]
fn dropping_the_store_closes_it() {
    let dir = tmp();
    let (store, _) = open(&dir);
    let h = store.handle();
    let (tx, rx) = unbounded();
    h.append(msg("m", "c", 0), move |r| tx.send(r).expect("send")).expect("submit");
    drop(store);
    assert_eq!(rx.try_recv(), Ok(Ok(())));
    assert_eq!(h.append(msg("m2", "c", 0), |_| {}), Err(StoreError::Closed));
}

#[test]
fn a_panicking_callback_does_not_stop_the_store() {
    let dir = tmp();
    let (store, _) = open(&dir);
    let h = store.handle();
    h.append(msg("m1", "c", 0), |_| panic!("callback bug (expected by this test)")).expect("submit");
    append(&h, msg("m2", "c", 0)).expect("append");
    assert_eq!(ids(&history(&h, "c", None, 10).expect("history")), ["m1", "m2"]);
    store.close();
}

#[test]
fn stats_count_commits_and_writes() {
    let dir = tmp();
    let (store, _) = open(&dir);
    let h = store.handle();
    for i in 0..3 {
        append(&h, msg(&format!("m{i}"), "c", 0)).expect("append");
    }
    assert_eq!(append(&h, msg("m0", "c", 0)), Err(StoreError::Duplicate));
    let s = store.stats().snapshot();
    assert_eq!((s.queue_depth, s.commits, s.writes, s.failed_writes), (0, 4, 3, 1));
    assert!(s.max_commit_us >= s.last_commit_us);
    assert!(s.max_commit_us > 0);
    assert_eq!(s.rejected, 0);
    // One latency observation per commit, rendered as a histogram.
    let mut e = crate::metrics::Exposition::default();
    store.stats().render(&mut e);
    let text = e.finish();
    assert!(text.contains("\nsockeye_store_commit_seconds_count 4\n"), "{text}");
    assert!(text.contains("\nsockeye_store_commit_seconds_bucket{le=\"+Inf\"} 4\n"), "{text}");
    assert!(text.contains("\nsockeye_store_commits_total 4\n"), "{text}");
    assert!(text.contains("\nsockeye_store_failed_writes_total 1\n"), "{text}");
    assert!(text.contains("\nsockeye_store_queue_depth 0\n"), "{text}");
    store.close();
}

#[test]
fn odd_inputs_are_stored_verbatim() {
    let dir = tmp();
    let (store, _) = open(&dir);
    let h = store.handle();
    let weird = NewMessage {
        id: "id\0with nul".into(),
        channel: "ch'; DROP TABLE messages; --".into(),
        sender: "".into(),
        body: "\u{1F600} not json {".into(),
        ts_ms: u64::MAX,
    };
    append(&h, weird.clone()).expect("append");
    let got = history(&h, &weird.channel, None, 10).expect("history");
    assert_eq!(got.len(), 1);
    assert_eq!((&got[0].id, &got[0].sender, &got[0].body), (&weird.id, &weird.sender, &weird.body));
    assert_eq!(got[0].ts_ms, i64::MAX as u64, "clamped to what SQLite stores");
    store.close();
}

#[test]
fn open_refuses_an_unknown_schema_version() {
    let dir = tmp();
    let (store, _) = open(&dir);
    store.close();
    let conn = rusqlite::Connection::open(dir.path().join("sockeye.db")).expect("open");
    conn.pragma_update(None, "user_version", 99).expect("pragma");
    drop(conn);
    match Store::open(StoreConfig::new(dir.path())) {
        Err(StoreError::Db(m)) => assert!(m.contains("99"), "{m}"),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("opened a version-99 database"),
    }
}

#[test]
fn open_creates_the_directory_and_uses_wal() {
    let dir = tmp();
    let nested = dir.path().join("a").join("b");
    let mut cfg = StoreConfig::new(&nested);
    cfg.sync = SyncMode::Normal;
    let (store, rooms) = Store::open(cfg).expect("open");
    assert_eq!(rooms.len(), 1);
    store.close();
    let conn = rusqlite::Connection::open(nested.join("sockeye.db")).expect("open");
    let mode: String = conn.pragma_query_value(None, "journal_mode", |r| r.get(0)).expect("pragma");
    assert_eq!(mode, "wal");
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).expect("pragma");
    assert_eq!(version, 1);
}

#[test]
fn open_fails_cleanly_on_a_bad_directory() {
    let dir = tmp();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").expect("write");
    assert!(matches!(Store::open(StoreConfig::new(&file)), Err(StoreError::Db(_))));
}

#[test]
fn errors_display() {
    assert_eq!(StoreError::Overloaded.to_string(), "store queue is full");
    assert_eq!(StoreError::Db("disk I/O error".into()).to_string(), "database error: disk I/O error");
    let e: Box<dyn std::error::Error + Send + Sync> = Box::new(StoreError::NotFound);
    assert_eq!(e.to_string(), "message not found");
}

#[test]
fn handle_is_send_and_sync() {
    fn check<T: Send + Sync + Clone>() {}
    check::<StoreHandle>();
}

/// Set in the child's environment (to the store directory) by
/// `file_size_limit_fails_writes_then_the_store_recovers`; selects the child's part.
const FSIZE_CHILD_ENV: &str = "SOCKEYE_STORE_FSIZE_CHILD_DIR";

/// Sets this process's soft `RLIMIT_FSIZE` (the hard limit is kept).
fn set_fsize_limit(bytes: libc::rlim_t) {
    // SAFETY: getrlimit/setrlimit read and write a plain rlimit struct we own.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        assert_eq!(libc::getrlimit(libc::RLIMIT_FSIZE, &mut lim), 0, "getrlimit");
        lim.rlim_cur = bytes.min(lim.rlim_max);
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &lim), 0, "setrlimit");
    }
}

/// The child's part: a no-op unless the parent test started this process. A file size limit is
/// process-wide, so it cannot be set in the test process, whose other tests write files.
#[test]
fn file_size_limit_child() {
    let Some(dir) = std::env::var_os(FSIZE_CHILD_ENV) else { return };
    // What `main` does: a write past the limit fails with EFBIG instead of killing the process.
    // SAFETY: setting a signal's disposition to SIG_IGN installs no handler code.
    unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
    let (store, _) = Store::open(StoreConfig::new(&dir)).expect("open");
    let h = store.handle();
    for i in 0..50 {
        append(&h, msg(&format!("ok{i}"), "c", i)).expect("append before the limit");
    }

    // No file may grow at all now: like a full disk, every write of a page fails.
    set_fsize_limit(0);
    let (tx, rx) = unbounded();
    for i in 0..20 {
        let tx = tx.clone();
        h.append(msg(&format!("full{i}"), "c", 100 + i), move |r| tx.send(r).expect("send")).expect("submit");
    }
    for r in collect(&rx, 20) {
        match r {
            Err(StoreError::Db(m)) => assert!(!m.is_empty()),
            other => panic!("expected a Db error while files cannot grow, got {other:?}"),
        }
    }
    assert_eq!(store.stats().failed_writes.load(Ordering::Relaxed), 20);
    // Reads are served meanwhile and see only what committed.
    let seen = history(&h, "c", None, 1000).expect("history while full");
    assert_eq!(seen.len(), 50);
    assert!(seen.iter().all(|m| m.id.starts_with("ok")));

    // Space is back: the same connection writes again, and a message that failed can be resent.
    set_fsize_limit(libc::RLIM_INFINITY);
    append(&h, msg("full0", "c", 200)).expect("append after the limit is lifted");
    for i in 50..100 {
        append(&h, msg(&format!("ok{i}"), "c", i)).expect("append after the limit is lifted");
    }
    store.close();

    // Reopened, the database holds exactly the acknowledged writes and passes its checks.
    let (store, _) = Store::open(StoreConfig::new(&dir)).expect("reopen");
    let h = store.handle();
    let all = history(&h, "c", None, 1000).expect("history after reopen");
    let mut want: Vec<String> = (0..50).map(|i| format!("ok{i}")).collect();
    want.push("full0".into());
    want.extend((50..100).map(|i| format!("ok{i}")));
    assert_eq!(ids(&all), want.iter().map(String::as_str).collect::<Vec<_>>());
    store.close();
    let check = rusqlite::Connection::open(std::path::Path::new(&dir).join("sockeye.db")).expect("open");
    let ok: String = check.query_row("PRAGMA integrity_check", [], |r| r.get(0)).expect("integrity_check");
    assert_eq!(ok, "ok");
    println!("FSIZE CHILD PASSED");
}

#[test]
fn file_size_limit_fails_writes_then_the_store_recovers() {
    if std::env::var_os(FSIZE_CHILD_ENV).is_some() {
        return;
    }
    let dir = tmp();
    let exe = std::env::current_exe().expect("current_exe");
    let out = std::process::Command::new(exe)
        .args(["store::tests::file_size_limit_child", "--exact", "--nocapture", "--test-threads=1"])
        .env(FSIZE_CHILD_ENV, dir.path())
        .output()
        .expect("run the child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("FSIZE CHILD PASSED"),
        "child failed ({}):\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
        out.status
    );
}
