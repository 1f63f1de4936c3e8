//! The interop suites again, through nginx: the JavaScript (`node --test`) and Python
//! (`pytest`) suites of `tests/interop/` against `sockeye --app echo` behind Debian's nginx
//! running the shipped site file `deploy/nginx/sockeye.conf`.
//!
//! Each server the suites start is `tests/proxy/sockeye-behind-nginx.sh` (given to them as
//! `SOCKEYE_SERVER_CMD`), which starts sockeye and an nginx in front of it and announces nginx's
//! address, so every WebSocket, polling request and upgrade of both suites crosses the proxy.
//! `SOCKEYE_BEHIND_PROXY=1` tells the suites so, for any test that could not hold through a
//! proxy.
//!
//! Needs what `tests/interop.rs` needs (`npm ci` and the virtual environment in
//! `tests/interop/`) plus nginx; `tools/test-all.sh` installs all of it. A missing nginx is a
//! failure, not a skip. `SOCKEYE_SKIP_INTEROP=1` skips (loudly), as for `tests/interop.rs`;
//! `SOCKEYE_NGINX` names the nginx binary; `SOCKEYE_INTEROP_SERVER_CMD` replaces the command put
//! behind nginx, e.g. with `node tests/interop/reference-server.js`.
//!
//! After each suite, no process of any server it started may be left: a survivor is killed and
//! fails the test. The suites run one at a time (a lock), like in `tests/interop.rs`.

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

static ONE_SUITE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Each suite takes about 25 s; past this it is killed and fails.
const SUITE_LIMIT: Duration = Duration::from_secs(150);

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn interop_dir() -> PathBuf {
    root().join("tests").join("interop")
}

/// Quotes one word for `sh -c`.
fn sh_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// The command put behind nginx (without --host/--port).
fn proxied_cmd() -> String {
    if let Ok(cmd) = std::env::var("SOCKEYE_INTEROP_SERVER_CMD")
        && !cmd.trim().is_empty()
    {
        return cmd;
    }
    format!("{} --app echo", sh_quote(env!("CARGO_BIN_EXE_sockeye")))
}

fn wrapper_cmd() -> String {
    sh_quote(&root().join("tests").join("proxy").join("sockeye-behind-nginx.sh").to_string_lossy())
}

/// nginx: `SOCKEYE_NGINX` if set, else on PATH, else where Debian and source builds put it.
fn nginx() -> PathBuf {
    if let Some(path) = std::env::var_os("SOCKEYE_NGINX").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        assert!(path.is_file(), "SOCKEYE_NGINX={} is not a file", path.display());
        return path;
    }
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|dir| dir.join("nginx")));
    }
    candidates.extend(
        ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx"].map(PathBuf::from),
    );
    candidates.into_iter().find(|path| path.is_file()).unwrap_or_else(|| {
        panic!(
            "nginx is missing (not on PATH, not /usr/sbin/nginx): the interop tests through nginx \
             need it. Install Debian's nginx (apt-get install nginx; tools/test-all.sh does), set \
             SOCKEYE_NGINX to the binary, or set SOCKEYE_SKIP_INTEROP=1 to skip every interop test"
        )
    })
}

fn skipped() -> bool {
    if std::env::var("SOCKEYE_SKIP_INTEROP").as_deref() == Ok("1") {
        // Written to the real stderr, not through `eprintln!`, which the test harness captures
        // and hides for a passing test.
        let banner = "!".repeat(80);
        let _ = writeln!(
            std::io::stderr(),
            "\n{banner}\n!!! SOCKEYE_SKIP_INTEROP=1: interop tests through nginx SKIPPED, nothing was checked\n{banner}\n"
        );
        return true;
    }
    false
}

/// Process group and state of a live process, from `/proc/PID/stat`.
fn group_and_state(stat: &str) -> Option<(i32, char)> {
    // `pid (comm) state ppid pgrp ...`; comm may hold spaces and parentheses.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let _ppid = fields.next()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some((pgrp, state))
}

/// What a server's processes look like: the script, sockeye or the command behind nginx,
/// nginx's master and workers, and the `sed` that relays output. Only these are ever killed, in
/// case a process group id has been reused meanwhile by something else (pid_max may be small).
fn ours(cmdline: &str) -> bool {
    let proxied = proxied_cmd();
    let first_word = proxied.split_whitespace().next().unwrap_or("").trim_matches('\'');
    let first_word = Path::new(first_word).file_name().and_then(|n| n.to_str()).unwrap_or("");
    ["sockeye", "nginx", "sed "].iter().any(|name| cmdline.contains(name))
        || (!first_word.is_empty() && cmdline.contains(first_word))
}

/// Processes (pid, command line) of ours still running in any of `groups`; zombies do not
/// count.
fn live_members(groups: &[i32]) -> Vec<(i32, String)> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else { return found };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        if let Some((pgrp, state)) = group_and_state(&stat)
            && groups.contains(&pgrp)
            && state != 'Z'
            && state != 'X'
        {
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ").trim().to_owned();
            if ours(&cmdline) {
                found.push((pid, cmdline));
            }
        }
    }
    found
}

/// Every server the suite started leads its own process group (the suites start it in a new
/// session) and left its group id in `<tmp>/sockeye-nginx.*/wrapper.pid`. Whatever still runs
/// in those groups a few seconds after the suite ended is killed and reported.
fn kill_survivors(tmp: &Path) -> Vec<(i32, String)> {
    let mut groups = Vec::new();
    for entry in std::fs::read_dir(tmp).into_iter().flatten().flatten() {
        if let Ok(pid) = std::fs::read_to_string(entry.path().join("wrapper.pid"))
            && let Ok(pid) = pid.trim().parse::<i32>()
        {
            groups.push(pid);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let live = live_members(&groups);
        if live.is_empty() || Instant::now() >= deadline {
            for (pid, _) in &live {
                // SAFETY: kill(2) with a pid read from /proc just now; no memory is involved.
                unsafe { libc::kill(*pid, libc::SIGKILL) };
            }
            return live;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs `command` in a process group of its own, collecting its output. Past [`SUITE_LIMIT`] the
/// whole group is killed and the status is `None`. (A suite whose servers outlive it can hang:
/// their output pipes keep its test processes alive.)
fn run_bounded(what: &str, mut command: Command, dir: &Path) -> (Option<ExitStatus>, String, String) {
    command.process_group(0).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(err) => panic!("{what}: could not start {command:?} in {}: {err}", dir.display()),
    };
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let deadline = Instant::now() + SUITE_LIMIT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            _ => {
                let pgid = child.id() as i32;
                // SAFETY: kill(2) on the process group this function created; no memory involved.
                unsafe { libc::kill(-pgid, libc::SIGKILL) };
                let _ = child.wait();
                break None;
            }
        }
    };
    // Whatever else still holds the pipes (a server the suite failed to kill) is killed by the
    // caller; the pipes close then.
    (status, stdout.join().unwrap_or_default(), stderr.join().unwrap_or_default())
}

fn run(what: &str, mut command: Command) {
    // A panic in the other suite poisons the lock; the lock itself is still good.
    let _turn = ONE_SUITE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let nginx = nginx();
    // Every server's directory goes in here, so it is all removed when the suite is done, even
    // those of servers that were SIGKILLed without a chance to clean up.
    let tmp = tempfile::Builder::new().prefix("sockeye-proxy-test.").tempdir().expect("temp dir");
    let dir = interop_dir();
    command
        .current_dir(&dir)
        .env("SOCKEYE_SERVER_CMD", wrapper_cmd())
        .env("SOCKEYE_PROXIED_CMD", proxied_cmd())
        .env("SOCKEYE_NGINX", &nginx)
        .env("SOCKEYE_PROXY_TMPDIR", tmp.path())
        .env("SOCKEYE_BEHIND_PROXY", "1");
    let started = Instant::now();
    let (status, stdout, stderr) = run_bounded(what, command, &dir);
    let took = started.elapsed();
    let survivors = kill_survivors(tmp.path());
    let Some(status) = status else {
        panic!(
            "{what} through nginx did not finish within {} s: killed (with {} processes of its \
             servers)\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
            SUITE_LIMIT.as_secs(),
            survivors.len()
        );
    };
    if !status.success() {
        panic!(
            "{what} failed ({status}) through nginx ({}) in front of `{}`\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
            nginx.display(),
            proxied_cmd()
        );
    }
    assert!(
        survivors.is_empty(),
        "{what} passed, but these processes of its servers were still running afterwards (now killed):\n{}",
        survivors.iter().map(|(pid, cmd)| format!("  {pid} {cmd}")).collect::<Vec<_>>().join("\n")
    );
    // Keep the summary visible with `cargo test -- --nocapture`.
    let tail: Vec<&str> = stdout.lines().rev().take(12).collect();
    for line in tail.into_iter().rev() {
        println!("{what} (through nginx): {line}");
    }
    println!("{what} (through nginx): {:.1} s", took.as_secs_f64());
}

#[test]
fn socketio_client_js_suite_through_nginx() {
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
fn python_socketio_suite_through_nginx() {
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

#[test]
fn stat_parsing_handles_odd_command_names() {
    assert_eq!(group_and_state("42 (sh) S 1 42 42 0 -1"), Some((42, 'S')));
    assert_eq!(group_and_state("7 (a) b (c) Z 1 9 9 0"), Some((9, 'Z')));
    assert_eq!(group_and_state("garbage"), None);
}
