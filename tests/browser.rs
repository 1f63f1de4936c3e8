//! Browser test: runs `node --test test/` in `web/`, which drives the chat page served by the
//! built `sockeye` binary in Debian's Chromium (`/usr/bin/chromium`) through `playwright-core`.
//! See `web/README.md`.
//!
//! It needs `npm ci` in `web/` and `/usr/bin/chromium`; `tools/test-all.sh` prepares both. Set
//! `SOCKEYE_SKIP_BROWSER=1` to skip (it says so loudly); anything else missing is a failure, not
//! a skip, so a broken setup cannot pass silently.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

const CHROMIUM: &str = "/usr/bin/chromium";

fn web_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("web")
}

fn skipped() -> bool {
    if std::env::var("SOCKEYE_SKIP_BROWSER").as_deref() == Ok("1") {
        // Written to the real stderr, not through `eprintln!`, which the test harness captures
        // and hides for a passing test.
        let banner = "!".repeat(80);
        let _ = writeln!(
            std::io::stderr(),
            "\n{banner}\n!!! SOCKEYE_SKIP_BROWSER=1: browser test SKIPPED, nothing was checked\n{banner}\n"
        );
        return true;
    }
    false
}

#[test]
fn chat_page_in_chromium() {
    if skipped() {
        return;
    }
    let dir = web_dir();
    for package in ["playwright-core", "socket.io-client"] {
        assert!(
            dir.join("node_modules").join(package).is_dir(),
            "web/node_modules/{package} is missing: run `npm ci --prefix web` (tools/test-all.sh \
             does), or set SOCKEYE_SKIP_BROWSER=1 to skip the browser test"
        );
    }
    assert!(
        Path::new(CHROMIUM).is_file(),
        "{CHROMIUM} is missing: install Debian's chromium (`apt-get install chromium`; \
         tools/test-all.sh does), or set SOCKEYE_SKIP_BROWSER=1 to skip the browser test"
    );
    let bin = env!("CARGO_BIN_EXE_sockeye");
    let mut node = Command::new("node");
    // The test bounds each wait itself; --test-timeout is only the last resort.
    node.args(["--test", "--test-reporter=spec", "--test-timeout=120000", "test/"])
        .current_dir(&dir)
        .env("SOCKEYE_BIN", bin);
    let output = match node.output() {
        Ok(output) => output,
        Err(err) => panic!("could not start {node:?} in {}: {err}", dir.display()),
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "browser test failed ({}) against {bin}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
        output.status
    );
    // Keep the summary visible with `cargo test -- --nocapture`.
    let tail: Vec<&str> = stdout.lines().rev().take(12).collect();
    for line in tail.into_iter().rev() {
        println!("browser: {line}");
    }
}
