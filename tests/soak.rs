//! Soak test, the CI version (issue 5): runs `tools/soak/soak.js` for 2 minutes against the
//! `sockeye` binary cargo just built, with 60 clients in 8 rooms (chat messages, private messages,
//! typing, room moves, disconnects and reconnects), and fails with its output when it reports a
//! lost or duplicated message, a gap in live delivery, resident memory growth beyond its bound or
//! leaked descriptors. `tools/soak/README.md` describes the checks and the 30-minute version.
//!
//! Needs Node.js and `npm ci` in `tests/interop/` (`tools/test-all.sh` does it); the script takes
//! socket.io-client from there. Set `SOCKEYE_SKIP_INTEROP=1` to skip (it says so loudly);
//! anything else missing is a failure, not a skip. `SOCKEYE_SOAK_MINUTES` changes the length of
//! the load phase (default 2).
//!
//! It cannot hang: the script gives up on its own after the load phase plus 120 s (and kills its
//! server), and this test sends it SIGTERM 60 s after that, SIGKILL 10 s later.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const DEFAULT_MINUTES: f64 = 2.0;
// Sized for a 2-core machine shared with the server: the Node.js side stays well under one core.
const CI_FLAGS: &[&str] = &["--clients", "60", "--rooms", "8", "--rate", "1"];

fn skipped() -> bool {
    if std::env::var("SOCKEYE_SKIP_INTEROP").as_deref() == Ok("1") {
        // Written to the real stderr, not through `eprintln!`, which the test harness captures
        // and hides for a passing test.
        let banner = "!".repeat(80);
        let _ = writeln!(
            std::io::stderr(),
            "\n{banner}\n!!! SOCKEYE_SKIP_INTEROP=1: soak test SKIPPED, nothing was checked\n{banner}\n"
        );
        return true;
    }
    false
}

fn minutes() -> f64 {
    match std::env::var("SOCKEYE_SOAK_MINUTES") {
        Ok(v) if !v.trim().is_empty() => match v.trim().parse::<f64>() {
            Ok(m) if m > 0.0 && m.is_finite() => m,
            _ => panic!("SOCKEYE_SOAK_MINUTES={v:?} is not a positive number of minutes"),
        },
        _ => DEFAULT_MINUTES,
    }
}

fn drain(mut pipe: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

fn signal(child: &Child, sig: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: kill(2) with a pid we spawned and have not reaped yet; no memory is involved.
        unsafe { libc::kill(pid, sig) };
    }
}

/// Waits for the child until `deadline`; then SIGTERM (the script stops its server on SIGTERM),
/// and SIGKILL 10 s later. Returns the exit status, or None when it had to be stopped.
fn wait_bounded(child: &mut Child, deadline: Instant) -> Option<std::process::ExitStatus> {
    let mut termed_at: Option<Instant> = None;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return termed_at.is_none().then_some(status),
            Ok(None) => {}
            Err(err) => panic!("waiting for the soak script: {err}"),
        }
        let now = Instant::now();
        match termed_at {
            None if now >= deadline => {
                signal(child, libc::SIGTERM);
                termed_at = Some(now);
            }
            Some(at) if now >= at + Duration::from_secs(10) => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            _ => {}
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn chat_soak() {
    if skipped() {
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    assert!(
        root.join("tests/interop/node_modules/socket.io-client").is_dir(),
        "tests/interop/node_modules is missing: run `npm ci` in tests/interop (tools/test-all.sh does)"
    );
    let minutes = minutes();
    let bin = env!("CARGO_BIN_EXE_sockeye");
    let mut node = Command::new("node");
    node.arg(root.join("tools/soak/soak.js"))
        .args(["--bin", bin, "--minutes", &minutes.to_string()])
        .args(CI_FLAGS)
        .current_dir(root)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let described = format!("{node:?}");
    let mut child = match node.spawn() {
        Ok(child) => child,
        Err(err) => panic!("could not start {described}: {err}"),
    };
    let stdout = drain(child.stdout.take().expect("piped stdout"));
    let stderr = drain(child.stderr.take().expect("piped stderr"));
    // The script's own limit is minutes * 60 + 120 s.
    let deadline = Instant::now() + Duration::from_secs_f64(minutes * 60.0 + 180.0);
    let status = wait_bounded(&mut child, deadline);
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    match status {
        Some(status) if status.success() => {
            // Keep the table and the summary visible with `cargo test -- --nocapture`.
            let tail: Vec<&str> = stdout.lines().rev().take(30).collect();
            for line in tail.into_iter().rev() {
                println!("soak: {line}");
            }
        }
        Some(status) => {
            panic!("soak failed ({status}): {described}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}")
        }
        None => panic!(
            "soak did not finish in time and was stopped: {described}\n--- stdout ---\n{stdout}\n\
             --- stderr ---\n{stderr}"
        ),
    }
}
