//! Connection state recovery with the real `socket.io-client`: runs `tests/interop/recovery/`
//! (`node --test`) against `sockeye --app echo --recovery on --recovery-window-ms 2000 --cores 2`
//! (two cores, so a reconnection may land on either core and recovery crosses cores). The suite
//! cuts a receiver's connection mid-stream, over WebSocket and polling, and checks that it comes
//! back recovered with every packet once and in order, and that past the window it does not.
//!
//! `SOCKEYE_INTEROP_SERVER_CMD` replaces the server command (the recovery flags are added), e.g.
//! `node tests/interop/reference-server.js` to check the suite against socket.io itself. Set
//! `SOCKEYE_SKIP_INTEROP=1` to skip (it says so loudly); a missing `npm ci` is a failure.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The window the suite expects (its `WINDOW_MS`).
const WINDOW_MS: u32 = 2000;

fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("interop")
}

fn server_cmd() -> String {
    let base = match std::env::var("SOCKEYE_INTEROP_SERVER_CMD") {
        Ok(cmd) if !cmd.trim().is_empty() => cmd,
        _ => {
            let bin = env!("CARGO_BIN_EXE_sockeye");
            format!("'{}' --app echo --cores 2", bin.replace('\'', r"'\''"))
        }
    };
    format!("{base} --recovery on --recovery-window-ms {WINDOW_MS}")
}

#[test]
fn socketio_client_recovery_suite() {
    if std::env::var("SOCKEYE_SKIP_INTEROP").as_deref() == Ok("1") {
        // Written to the real stderr, not through `eprintln!`, which the test harness captures
        // and hides for a passing test.
        let banner = "!".repeat(80);
        let _ = writeln!(
            std::io::stderr(),
            "\n{banner}\n!!! SOCKEYE_SKIP_INTEROP=1: recovery interop tests SKIPPED, nothing was checked\n{banner}\n"
        );
        return;
    }
    let dir = interop_dir();
    assert!(
        dir.join("node_modules").join("socket.io-client").is_dir(),
        "tests/interop/node_modules is missing: run `npm ci` in tests/interop (tools/test-all.sh does)"
    );
    let mut node = Command::new("node");
    node.args(["--test", "--test-reporter=spec", "recovery/"])
        .current_dir(&dir)
        .env("SOCKEYE_SERVER_CMD", server_cmd());
    let output = match node.output() {
        Ok(output) => output,
        Err(err) => panic!("could not start {node:?} in {}: {err}", dir.display()),
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        panic!(
            "node --test recovery/ failed ({}) against `{}`\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
            output.status,
            server_cmd()
        );
    }
    // Keep the summary visible with `cargo test -- --nocapture`.
    let tail: Vec<&str> = stdout.lines().rev().take(12).collect();
    for line in tail.into_iter().rev() {
        println!("node --test recovery/: {line}");
    }
}
