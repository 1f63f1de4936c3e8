//! Crash test for the store's ack-after-commit contract: a write whose callback said `Ok` must be
//! in the database after the process is killed with SIGKILL at an arbitrary moment.
//!
//! The test re-runs its own binary as a child in "writer" mode (selected by an environment
//! variable and an exact test-name filter). The child appends as fast as it can and prints each
//! id right after its `Ok` callback. The parent reads the acks, kills the child mid-stream,
//! reopens the store and looks for every acked id.
//!
//! This checks that acks follow commits and that the database reopens cleanly after a crash. It
//! does not simulate power loss: the killed process's committed pages are already with the OS, so
//! it cannot tell `synchronous=FULL` from `NORMAL`.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::RecvTimeoutError;
use sockeye::store::{MAX_HISTORY, NewMessage, ObjectIdGen, Store, StoreConfig, StoreError, is_object_id};

/// Set in the child's environment to the store directory; selects writer mode.
const CHILD_DIR_ENV: &str = "SOCKEYE_STORE_CRASH_CHILD_DIR";
const CHILD_TEST: &str = "crash_writer_child";
const CHANNEL: &str = "crash";
/// Acks to see before killing the child.
const WANT_ACKS: usize = 2000;
/// Upper bound on each phase, so a broken child fails the test instead of hanging it.
const PHASE_LIMIT: Duration = Duration::from_secs(60);
const ACK_PREFIX: &str = "ACK ";

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Writer mode: a no-op unless the parent test started this process.
#[test]
fn crash_writer_child() {
    let Some(dir) = std::env::var_os(CHILD_DIR_ENV) else { return };
    let (store, _) = Store::open(StoreConfig::new(dir)).expect("open store");
    let h = store.handle();
    let mut ids = ObjectIdGen::from_entropy();
    let start = Instant::now();
    let mut n = 0u64;
    // Runs until killed; the time limit only keeps an orphaned child from running forever.
    while start.elapsed() < PHASE_LIMIT {
        let id = ids.next(now_ms());
        let msg = NewMessage {
            id: id.clone(),
            channel: CHANNEL.to_string(),
            sender: "writer".to_string(),
            body: format!(r#"{{"n":{n}}}"#),
            ts_ms: now_ms(),
        };
        let done = move |r: Result<(), StoreError>| {
            if r.is_ok() {
                // Straight to the file descriptor and flushed, so an ack the parent reads was
                // printed after the commit and nothing acked waits in a buffer.
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{ACK_PREFIX}{id}");
                let _ = out.flush();
            }
        };
        match h.append(msg, done) {
            Ok(()) => n += 1,
            Err(StoreError::Overloaded) => std::thread::sleep(Duration::from_micros(200)),
            Err(e) => panic!("append: {e}"),
        }
    }
    store.close();
}

/// Kills the child when the test ends, however it ends.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn acked_writes_survive_sigkill() {
    let dir = tempfile::Builder::new().prefix("sockeye-store-crash-").tempdir().expect("tempdir");
    let exe = std::env::current_exe().expect("current_exe");
    let child = Command::new(exe)
        .args([CHILD_TEST, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR_ENV, dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn child");
    let mut child = KillOnDrop(child);
    let stdout = child.0.stdout.take().expect("child stdout");

    // Reading on a thread lets the parent bound its waits with recv_timeout.
    let (tx, rx) = crossbeam_channel::unbounded::<String>();
    let reader = std::thread::spawn(move || {
        let mut r = BufReader::new(stdout);
        let mut line = String::new();
        loop {
            line.clear();
            match r.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                // A line cut off by the kill has no newline and is not an ack.
                Ok(_) if line.ends_with('\n') => {
                    // libtest prints "test crash_writer_child ... " without a newline before the
                    // test runs, so the first ack can share its line.
                    if let Some(at) = line.find(ACK_PREFIX) {
                        let id = line[at + ACK_PREFIX.len()..].trim_end();
                        if is_object_id(id) && tx.send(id.to_string()).is_err() {
                            break;
                        }
                    }
                }
                Ok(_) => {}
            }
        }
    });

    let mut acked = Vec::new();
    let deadline = Instant::now() + PHASE_LIMIT;
    while acked.len() < WANT_ACKS {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(id) => acked.push(id),
            Err(e) => panic!("child gave {} acks, then {e:?}", acked.len()),
        }
    }
    child.0.kill().expect("kill child");
    let status = child.0.wait().expect("wait child");
    assert!(!status.success(), "child should have died of SIGKILL, got {status}");

    // Acks printed before the kill and not yet read are acks too.
    let deadline = Instant::now() + PHASE_LIMIT;
    loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(id) => acked.push(id),
            Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => panic!("child's stdout did not close"),
        }
    }
    reader.join().expect("reader thread");

    // Reopening recovers from the WAL; then page through the whole channel, newest first.
    let (store, rooms) = Store::open(StoreConfig::new(dir.path())).expect("reopen after crash");
    assert!(rooms.iter().any(|r| r.name == "general"));
    let h = store.handle();
    let mut stored = HashSet::new();
    let mut before: Option<String> = None;
    let deadline = Instant::now() + PHASE_LIMIT;
    loop {
        let (tx, rx) = crossbeam_channel::bounded(1);
        h.history(CHANNEL.to_string(), before.clone(), MAX_HISTORY, move |r| {
            let _ = tx.send(r);
        })
        .expect("submit history");
        let page = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("history callback")
            .expect("history");
        let Some(oldest) = page.first() else { break };
        before = Some(oldest.id.clone());
        stored.extend(page.into_iter().map(|m| m.id));
    }
    store.close();

    let missing: Vec<&String> = acked.iter().filter(|id| !stored.contains(*id)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} acked ids are missing after the crash, e.g. {:?}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(5)]
    );
    assert!(stored.len() >= acked.len());

    let conn = rusqlite::Connection::open(dir.path().join("sockeye.db")).expect("open db");
    let check: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).expect("integrity_check");
    assert_eq!(check, "ok");
    eprintln!("store_crash: {} acked, {} stored after SIGKILL", acked.len(), stored.len());
}
