//! Chat interop tests: runs the JavaScript suite in `tests/interop/chat/` (`node --test`) against
//! the chat app of the `sockeye` binary cargo just built (docs/PROTOCOL.md). Each test file starts
//! its own servers from `SOCKEYE_BIN` on fresh data directories and kills them when done.
//!
//! The suite needs `npm ci` in `tests/interop/` (`tools/test-all.sh` does it). Set
//! `SOCKEYE_SKIP_INTEROP=1` to skip (it says so loudly); anything else missing is a failure, not a
//! skip, so a broken setup cannot pass silently.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("interop")
}

#[test]
fn chat_js_suite() {
    if std::env::var("SOCKEYE_SKIP_INTEROP").as_deref() == Ok("1") {
        // Written to the real stderr, not through `eprintln!`, which the test harness captures
        // and hides for a passing test.
        let banner = "!".repeat(80);
        let _ = writeln!(
            std::io::stderr(),
            "\n{banner}\n!!! SOCKEYE_SKIP_INTEROP=1: chat interop tests SKIPPED, nothing was checked\n{banner}\n"
        );
        return;
    }
    let dir = interop_dir();
    assert!(
        dir.join("node_modules").join("socket.io-client").is_dir(),
        "tests/interop/node_modules is missing: run `npm ci` in tests/interop (tools/test-all.sh does)"
    );
    let bin = env!("CARGO_BIN_EXE_sockeye");
    let mut node = Command::new("node");
    node.args(["--test", "--test-reporter=spec", "chat/"]).current_dir(&dir).env("SOCKEYE_BIN", bin);
    let output = match node.output() {
        Ok(output) => output,
        Err(err) => panic!("could not start {node:?} in {}: {err}", dir.display()),
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        panic!(
            "node --test chat/ failed ({}) against {bin}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
            output.status
        );
    }
    // Keep the summary visible with `cargo test -- --nocapture`.
    let tail: Vec<&str> = stdout.lines().rev().take(12).collect();
    for line in tail.into_iter().rev() {
        println!("node --test chat/: {line}");
    }
}
