//! Criterion benches of the message store, through its public handle (queue, storage thread,
//! SQLite, callback), on the local disk of the machine that runs them:
//! - `append_1k_full` / `append_1k_normal`: 1,000 appends submitted at once, timed until the last
//!   `Ok` callback; with `synchronous=FULL` and `NORMAL`. Dominated by fsync on FULL, so the
//!   number says more about the disk than about the code.
//! - `history_50`: one history page of 50 from the middle of a 100,000-message channel that shares
//!   the table with three others, submit to callback.
//!
//! Throughput is in messages per second.

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use crossbeam_channel::{bounded, unbounded};
use sockeye::store::{NewMessage, Store, StoreConfig, StoreHandle, SyncMode};

fn msg(id: u64, channel: &str) -> NewMessage {
    NewMessage {
        id: format!("{id:024x}"),
        channel: channel.to_string(),
        sender: "bench".to_string(),
        body: r#"{"text":"0123456789012345678901234567890123456789"}"#.to_string(),
        ts_ms: 1_700_000_000_000 + id,
    }
}

/// Submits `n` appends starting at id `first` and waits for all their callbacks.
fn append_all(h: &StoreHandle, first: u64, n: u64, channel: &str) {
    let (tx, rx) = unbounded();
    for id in first..first + n {
        let tx = tx.clone();
        h.append(msg(id, channel), move |r| tx.send(r).expect("send")).expect("submit");
    }
    for _ in 0..n {
        rx.recv_timeout(Duration::from_secs(60)).expect("callback").expect("append");
    }
}

fn appends(c: &mut Criterion) {
    let mut g = c.benchmark_group("store");
    g.throughput(Throughput::Elements(1000));
    g.measurement_time(Duration::from_secs(5)).sample_size(20);
    for (name, sync) in [("append_1k_full", SyncMode::Full), ("append_1k_normal", SyncMode::Normal)] {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cfg = StoreConfig::new(dir.path());
        cfg.sync = sync;
        let (store, _) = Store::open(cfg).expect("open");
        let h = store.handle();
        let mut next = 0u64;
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    append_all(&h, next, 1000, "bench");
                    next += 1000;
                }
                start.elapsed()
            })
        });
        store.close();
    }
    g.finish();
}

fn history(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = StoreConfig::new(dir.path());
    cfg.sync = SyncMode::Normal;
    let (store, _) = Store::open(cfg).expect("open");
    let h = store.handle();
    let channels = ["a", "b", "c", "d"];
    for chunk in 0..100u64 {
        for (i, ch) in channels.iter().enumerate() {
            append_all(&h, ((i as u64) << 32) | (chunk * 1000), 1000, ch);
        }
    }
    let cursor = Some(format!("{:024x}", 50_000u64)); // channel "a", id 50_000
    let mut g = c.benchmark_group("store");
    g.throughput(Throughput::Elements(50));
    g.bench_function("history_50", |b| {
        b.iter(|| {
            let (tx, rx) = bounded(1);
            h.history("a".to_string(), cursor.clone(), 50, move |r| tx.send(r).expect("send"))
                .expect("submit");
            let page = rx.recv_timeout(Duration::from_secs(10)).expect("callback").expect("history");
            assert_eq!(page.len(), 50);
        })
    });
    g.finish();
    store.close();
}

criterion_group!(benches, appends, history);
criterion_main!(benches);
