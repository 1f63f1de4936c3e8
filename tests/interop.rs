//! Interop tests: runs the JavaScript (`node --test`) and Python (`pytest`) suites in
//! `tests/interop/` against the built `sockeye` binary started as `sockeye --app echo`.
//!
//! The suites need `npm ci` in `tests/interop/` and a virtual environment in
//! `tests/interop/.venv` with `requirements.txt` installed; `tools/test-all.sh` prepares both.
//! Set `SOCKEYE_SKIP_INTEROP=1` to skip (it says so loudly); anything else missing is a failure,
//! not a skip, so a broken setup cannot pass silently. `SOCKEYE_INTEROP_SERVER_CMD` replaces the
//! server command, e.g. with `node tests/interop/reference-server.js` to check this wiring
//! against the reference implementation.
//!
//! The two suites run one after the other (a lock), never side by side: both have heartbeat
//! tests with sub-second deadlines, and the machine may have only two cores.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

static ONE_SUITE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("interop")
}

fn server_cmd() -> String {
    if let Ok(cmd) = std::env::var("SOCKEYE_INTEROP_SERVER_CMD")
        && !cmd.trim().is_empty()
    {
        return cmd;
    }
    let bin = env!("CARGO_BIN_EXE_sockeye");
    // The suites run the command through `sh -c`; quote the path in case it has spaces.
    format!("'{}' --app echo", bin.replace('\'', r"'\''"))
}

fn skipped() -> bool {
    if std::env::var("SOCKEYE_SKIP_INTEROP").as_deref() == Ok("1") {
        // Written to the real stderr, not through `eprintln!`, which the test harness captures
        // and hides for a passing test.
        let banner = "!".repeat(80);
        let _ = writeln!(
            std::io::stderr(),
            "\n{banner}\n!!! SOCKEYE_SKIP_INTEROP=1: interop tests SKIPPED, nothing was checked\n{banner}\n"
        );
        return true;
    }
    false
}

fn run(what: &str, mut command: Command) {
    // A panic in the other suite poisons the lock; the lock itself is still good.
    let _turn = ONE_SUITE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let dir = interop_dir();
    command.current_dir(&dir).env("SOCKEYE_SERVER_CMD", server_cmd());
    let output: Output = match command.output() {
        Ok(output) => output,
        Err(err) => panic!("{what}: could not start {command:?} in {}: {err}", dir.display()),
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        panic!(
            "{what} failed ({}) against `{}`\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
            output.status,
            server_cmd()
        );
    }
    // Keep the summary visible with `cargo test -- --nocapture`.
    let tail: Vec<&str> = stdout.lines().rev().take(12).collect();
    for line in tail.into_iter().rev() {
        println!("{what}: {line}");
    }
}

#[test]
fn socketio_client_js_suite() {
    if skipped() {
        return;
    }
    let dir = interop_dir();
    assert!(
        dir.join("node_modules").join("socket.io-client").is_dir(),
        "tests/interop/node_modules is missing: run `npm ci` in tests/interop (tools/test-all.sh does)"
    );
    let mut node = Command::new("node");
    node.args(["--test", "--test-reporter=spec", "js/"]);
    run("node --test", node);
}

#[test]
fn python_socketio_suite() {
    if skipped() {
        return;
    }
    let python = interop_dir().join(".venv").join("bin").join("python");
    assert!(
        python.is_file(),
        "tests/interop/.venv is missing: create it and `pip install -r requirements.txt` \
         (tools/test-all.sh does)"
    );
    let mut pytest = Command::new(python);
    pytest.args(["-m", "pytest", "-q"]);
    run("pytest", pytest);
}
