//! Abuse tests (issue 10): each attack that one client could mount against a node, reproduced
//! against the release `sockeye` binary. Every test shows the attack's effect is contained, that
//! a healthy client beside the attacker is still served, and reads the effect from
//! `GET /metrics` where a metric exists.
//!
//! One module per area; each test starts its own server on a free port, stopped by a guard
//! even when an assertion fails. The tests take turns (a lock): several measure latency or
//! memory, and the machine may have only two cores.

#[path = "../common/mod.rs"]
mod common;
mod ids;

use std::sync::Mutex;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Holds the suite's lock for the length of one test.
pub fn turn() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner())
}

/// Written to the real stderr, so the figures show in a passing run without `--nocapture`.
pub fn report(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "abuse: {line}");
}
