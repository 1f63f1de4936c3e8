//! The `sockeye` command: read the settings (`sockeye::settings`: TOML file, environment, flags),
//! build the chosen app, start the cores, handle signals.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::process::ExitCode;
use std::sync::{Arc, OnceLock};

use sockeye::api::ServerBuilder;
use sockeye::auth::JwtVerifier;
use sockeye::chat::http::WebFiles;
use sockeye::chat::presence::PresenceMsg;
use sockeye::chat::{self, ChatConfig, Shared};
use sockeye::settings::{self, App, Loaded, Settings};
use sockeye::store::{Store, StoreConfig};

/// The environment variables that the settings read; a non-UTF-8 value of one is an error.
fn environment() -> Result<BTreeMap<String, String>, String> {
    let mut env = BTreeMap::new();
    for (name, value) in std::env::vars_os() {
        let Some(name) = name.to_str().filter(|n| settings::reads_env(n)) else { continue };
        let value =
            value.into_string().map_err(|_| format!("environment variable {name}: not valid UTF-8"))?;
        env.insert(name.to_owned(), value);
    }
    Ok(env)
}

/// The settings from the flags, the environment and the config file; `Err` is the exit code.
fn settings(args: &[String]) -> Result<Settings, ExitCode> {
    let fail = |e: &dyn std::fmt::Display| {
        eprintln!("sockeye: {e}");
        ExitCode::from(2)
    };
    let env = environment().map_err(|e| fail(&e))?;
    let read = |path: &str| std::fs::read_to_string(path).map_err(|e| e.to_string());
    match settings::load(args, &env, read).map_err(|e| fail(&e))? {
        Loaded::Help(text) => {
            println!("{text}");
            Err(ExitCode::SUCCESS)
        }
        Loaded::Print(s) => {
            print!("{}", s.to_toml());
            Err(ExitCode::SUCCESS)
        }
        Loaded::Run(s) => Ok(s),
    }
}

fn unix_now_s() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// `sockeye token --user NAME [--ttl SECONDS]`
fn token_command(args: &[String]) -> ExitCode {
    let mut user = None;
    let mut ttl = 3600u64;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--user" => user = it.next().cloned(),
            "--ttl" => match it.next().and_then(|v| v.parse().ok()) {
                Some(t) => ttl = t,
                None => {
                    eprintln!("sockeye token: --ttl needs a number of seconds");
                    return ExitCode::from(2);
                }
            },
            other => {
                eprintln!("sockeye token: unexpected argument `{other}`");
                return ExitCode::from(2);
            }
        }
    }
    let Some(user) = user.filter(|u| !u.trim().is_empty()) else {
        eprintln!("usage: JWT_SECRET=... sockeye token --user NAME [--ttl SECONDS]");
        return ExitCode::from(2);
    };
    let Some(secret) = std::env::var("JWT_SECRET").ok().filter(|s| !s.is_empty()) else {
        eprintln!("sockeye token: set JWT_SECRET to the server's secret");
        return ExitCode::from(2);
    };
    println!("{}", sockeye::auth::mint_hs256(secret.as_bytes(), user.trim(), unix_now_s(), ttl));
    ExitCode::SUCCESS
}

/// The token verifier: a public key file, else the HS256 secret (`JWT_SECRET` or the secret
/// file), else none (development mode).
fn verifier(opts: &Settings) -> Result<Option<JwtVerifier>, String> {
    if let Some(file) = &opts.jwt_public_key {
        let path = file.display();
        let pem = std::fs::read(file).map_err(|e| format!("auth.jwt_public_key {path}: {e}"))?;
        if opts.jwt_secret.is_some() || opts.jwt_secret_file.is_some() {
            sockeye::warn!("auth.jwt_public_key is set, so the HS256 secret is not used");
        }
        return JwtVerifier::from_public_key_pem(&pem, opts.jwt_algorithm)
            .map(Some)
            .map_err(|e| format!("auth.jwt_public_key {path}: {e}"));
    }
    if let Some(path) = &opts.jwt_secret_file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("auth.jwt_secret_file {}: {e}", path.display()))?;
        let secret = text.strip_suffix('\n').map(|t| t.strip_suffix('\r').unwrap_or(t)).unwrap_or(&text);
        if secret.is_empty() {
            return Err(format!("auth.jwt_secret_file {}: the file is empty", path.display()));
        }
        return Ok(Some(JwtVerifier::hmac(secret.as_bytes())));
    }
    Ok(opts.jwt_secret.as_ref().map(|s| JwtVerifier::hmac(s.expose().as_bytes())))
}

/// Where the web page's files are: --web-dir, else the source tree's web/ (a build from the
/// repository), else ./web.
fn web_dir(chat: &ChatConfig) -> std::path::PathBuf {
    if let Some(d) = &chat.web_dir {
        return d.clone();
    }
    let built = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("web");
    if built.join("index.html").is_file() { built } else { std::path::PathBuf::from("web") }
}

/// The chat app's threads and files, set up before the server starts.
struct ChatRuntime {
    store: Store,
    presence_tx: crossbeam_channel::Sender<PresenceMsg>,
    presence: std::thread::JoinHandle<()>,
}

fn install_chat(server: &mut ServerBuilder, opts: &Settings) -> Result<ChatRuntime, String> {
    let verifier = verifier(opts)?;
    let (store, rooms) = Store::open(StoreConfig::new(opts.chat.data_dir.clone()))
        .map_err(|e| format!("cannot open the store in {}: {e}", opts.chat.data_dir.display()))?;
    let (presence_tx, presence_rx) = crossbeam_channel::unbounded();
    let web = WebFiles::load(&web_dir(&opts.chat));
    let mode = if verifier.is_some() { "token mode" } else { "development mode (no JWT_SECRET)" };
    let data_dir = opts.chat.data_dir.display().to_string();
    sockeye::info!("chat service"; mode = mode, data_dir = &data_dir);
    if web.missing_client {
        sockeye::warn!("the web page's socket.io client is missing; run `npm ci --prefix web`");
    }
    let shared = Arc::new(Shared {
        config: opts.chat.clone(),
        verifier,
        store: store.handle(),
        initial_rooms: rooms,
        presence: presence_tx.clone(),
        handle: OnceLock::new(),
        web,
        stats: Default::default(),
    });
    chat::install(server, shared.clone());
    let sh = shared.clone();
    server.on_start(move |h| {
        let _ = sh.handle.set(h.clone());
    });
    let presence = chat::start_presence(presence_rx, shared);
    Ok(ChatRuntime { store, presence_tx, presence })
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

/// Ignore SIGXFSZ, so that a write past the file size limit (`RLIMIT_FSIZE`) fails with `EFBIG`
/// like any other storage error (the store reports it to the sender and carries on) instead of
/// killing the whole server. Inherited by every thread.
fn ignore_sigxfsz() {
    // SAFETY: setting a signal's disposition to SIG_IGN installs no handler code.
    unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
}

fn wait_signal(set: &libc::sigset_t) -> i32 {
    let mut sig: libc::c_int = 0;
    // SAFETY: sigwait reads the initialised set and writes the signal number into `sig`.
    unsafe { libc::sigwait(set, &mut sig) };
    sig
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGINT => "SIGINT",
        libc::SIGTERM => "SIGTERM",
        _ => "other",
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("token") {
        return token_command(&args[1..]);
    }
    let opts = match settings(&args) {
        Ok(s) => s,
        Err(code) => return code,
    };
    sockeye::log::init(opts.log_level, opts.log_format);
    // Before any thread starts (the chat's store and presence threads included): threads
    // inherit the mask, and a thread that did not block SIGTERM would take it and die.
    let set = block_signals();
    ignore_sigxfsz();
    let mut server = ServerBuilder::new(opts.server_config());
    let mut chat_rt = None;
    match opts.app {
        App::Chat => match install_chat(&mut server, &opts) {
            Ok(rt) => chat_rt = Some(rt),
            Err(e) => {
                sockeye::error!("cannot start the chat service"; error = &e);
                return ExitCode::FAILURE;
            }
        },
        App::Echo => sockeye::apps::echo::install(&mut server),
        App::Bench => sockeye::apps::bench::install(&mut server),
    }
    let running = match server.start() {
        Ok(r) => r,
        Err(e) => {
            sockeye::error!("cannot start"; error = &e.to_string());
            return ExitCode::FAILURE;
        }
    };
    let addr = running.local_addr();
    // Written without `println!`, which panics when the pipe is gone (a log collector that
    // died): on the signal thread such a panic skipped the shutdown, and SIGTERM was lost. Log
    // lines ignore write errors too.
    let _ = writeln!(std::io::stdout(), "sockeye listening on http://{addr}");
    sockeye::info!("listening"; addr = &addr, app = opts.app.as_str(), cores = running.handle().cores());
    let handle = running.handle();
    std::thread::spawn(move || {
        let sig = wait_signal(&set);
        sockeye::info!("shutting down: draining"; signal = signal_name(sig));
        handle.shutdown();
        let sig = wait_signal(&set);
        sockeye::warn!("second signal: exiting now"; signal = signal_name(sig));
        std::process::exit(130);
    });
    running.join();
    if let Some(rt) = chat_rt {
        // Every core has stopped: commit what is queued, then stop presence.
        rt.store.close();
        let _ = rt.presence_tx.send(PresenceMsg::Shutdown);
        let _ = rt.presence.join();
    }
    sockeye::info!("stopped");
    ExitCode::SUCCESS
}
