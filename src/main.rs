//! The `sockeye` command: parse flags, build the chosen app, start the cores, handle signals.

use std::process::ExitCode;
use std::time::Duration;

use sockeye::api::ServerBuilder;
use sockeye::config::Config;
use sockeye::http::cors::Cors;

const HELP: &str = "\
sockeye: a Socket.IO v5 / Engine.IO v4 server

USAGE: sockeye [OPTIONS]

OPTIONS:
  --app NAME             application to serve [default: echo]:
                           echo   conformance app for the interop tests
                           bench  the load generator's contract (tools/bench)
  --host HOST            address to listen on [default: 0.0.0.0]
  --port PORT            port to listen on; 0 picks a free one [default: 3000]
  --cores N              event-loop threads; 0 = one per CPU [default: 0]
  --path PATH            Socket.IO path [default: /socket.io/]
  --ping-interval MS     Engine.IO ping interval [default: 25000; echo app: 300]
  --ping-timeout MS      Engine.IO ping timeout [default: 20000; echo app: 200]
  --max-payload BYTES    largest message or polling body [default: 1000000]
  --connect-timeout MS   time to connect a namespace after the handshake [default: 45000; echo app: 1000]
  --max-output BYTES     output queued per connection before a slow client is dropped [default: 4194304]
  --shutdown-timeout MS  on SIGINT/SIGTERM, time to deliver close packets before exiting [default: 3000]
  --cors-origin ORIGIN   allow this origin (repeatable); without it any origin is allowed
  -h, --help             print this help

On start it prints `sockeye listening on http://HOST:PORT`. SIGINT/SIGTERM close every session
and exit; a second signal exits at once.";

fn parse_args() -> Result<(String, Config), String> {
    let mut args = std::env::args().skip(1);
    let mut app = "echo".to_owned();
    let mut cfg = Config::default();
    let mut overrides: Vec<(String, String)> = Vec::new();
    let mut origins: Vec<String> = Vec::new();
    while let Some(a) = args.next() {
        if a == "-h" || a == "--help" {
            println!("{HELP}");
            std::process::exit(0);
        }
        let (key, inline) = match a.split_once('=') {
            Some((k, v)) => (k.to_owned(), Some(v.to_owned())),
            None => (a.clone(), None),
        };
        if !key.starts_with("--") {
            return Err(format!("unexpected argument `{a}` (see --help)"));
        }
        let value = match inline {
            Some(v) => v,
            None => args.next().ok_or_else(|| format!("{key} needs a value"))?,
        };
        match key.as_str() {
            "--app" => app = value,
            "--cors-origin" => origins.push(value),
            _ => overrides.push((key, value)),
        }
    }
    if app == "echo" {
        sockeye::apps::echo::configure(&mut cfg);
    }
    for (key, value) in overrides {
        let num = || value.parse::<u64>().map_err(|_| format!("{key}: `{value}` is not a number"));
        match key.as_str() {
            "--host" => cfg.host = value.clone(),
            "--port" => cfg.port = u16::try_from(num()?).map_err(|_| format!("{key}: out of range"))?,
            "--cores" => cfg.cores = num()? as usize,
            "--path" => cfg.path = value.clone(),
            "--ping-interval" => cfg.engine.ping_interval = Duration::from_millis(num()?),
            "--ping-timeout" => cfg.engine.ping_timeout = Duration::from_millis(num()?),
            "--max-payload" => cfg.engine.max_payload = num()? as usize,
            "--connect-timeout" => cfg.connect_timeout = Duration::from_millis(num()?),
            "--max-output" => cfg.limits.max_output_bytes = num()? as usize,
            "--shutdown-timeout" => cfg.shutdown_timeout = Duration::from_millis(num()?),
            other => return Err(format!("unknown option `{other}` (see --help)")),
        }
    }
    if !origins.is_empty() {
        cfg.cors = Cors::allow_list(origins);
    }
    Ok((app, cfg))
}

/// Block SIGINT and SIGTERM in every thread (call before starting threads), so the main thread
/// can take them with `sigwait`.
fn block_signals() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; sigemptyset/sigaddset initialise it, and
    // pthread_sigmask only reads it. No Rust memory is aliased.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

fn wait_signal(set: &libc::sigset_t) -> i32 {
    let mut sig: libc::c_int = 0;
    // SAFETY: sigwait reads the initialised set and writes the signal number into `sig`.
    unsafe { libc::sigwait(set, &mut sig) };
    sig
}

fn main() -> ExitCode {
    let (app, cfg) = match parse_args() {
        Ok(v) => v,
        Err(e) => {
            eprintln!("sockeye: {e}");
            return ExitCode::from(2);
        }
    };
    let mut server = ServerBuilder::new(cfg);
    match app.as_str() {
        "echo" => sockeye::apps::echo::install(&mut server),
        "bench" => sockeye::apps::bench::install(&mut server),
        other => {
            eprintln!("sockeye: unknown app `{other}` (known: echo, bench)");
            return ExitCode::from(2);
        }
    }
    let set = block_signals();
    let running = match server.start() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sockeye: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let addr = running.local_addr();
    println!("sockeye listening on http://{addr}");
    let handle = running.handle();
    std::thread::spawn(move || {
        wait_signal(&set);
        eprintln!("sockeye: shutting down");
        handle.shutdown();
        wait_signal(&set);
        std::process::exit(130);
    });
    running.join();
    ExitCode::SUCCESS
}
