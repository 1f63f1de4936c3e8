//! The `sockeye` command: parse flags, build the chosen app, start the cores, handle signals.

use std::process::ExitCode;
use std::time::Duration;

use std::sync::{Arc, OnceLock};

use sockeye::api::ServerBuilder;
use sockeye::auth::{JwtAlg, JwtVerifier};
use sockeye::chat::http::WebFiles;
use sockeye::chat::presence::PresenceMsg;
use sockeye::chat::{self, ChatConfig, Shared};
use sockeye::config::Config;
use sockeye::http::cors::Cors;
use sockeye::store::{Store, StoreConfig};

const HELP: &str = "\
sockeye: a Socket.IO v5 / Engine.IO v4 server, serving a chat service by default

USAGE: sockeye [OPTIONS]
       sockeye token --user NAME [--ttl SECONDS]   print an HS256 token signed with JWT_SECRET

OPTIONS:
  --app NAME             application to serve [default: chat]:
                           chat   the chat service (docs/PROTOCOL.md)
                           echo   conformance app for the interop tests
                           bench  the load generator's contract (tools/bench)
  --host HOST            address to listen on [default: 0.0.0.0]
  --port PORT            port to listen on; 0 picks a free one [default: 3000]
  --cores N              event-loop threads; 0 = one per CPU [default: 0]
  --path PATH            Socket.IO path [default: /socket.io/]
  --ping-interval MS     Engine.IO ping interval [default: 25000; echo app: 300]
  --ping-timeout MS      Engine.IO ping timeout [default: 20000; echo app: 200]
  --max-payload BYTES    largest message, polling body or HTTP body [default: 1000000]
  --connect-timeout MS   time to connect a namespace after the handshake [default: 45000; echo app: 1000]
  --max-output BYTES     output queued per connection before a slow client is dropped [default: 4194304]
  --shutdown-timeout MS  on SIGINT/SIGTERM, time to deliver close packets before exiting [default: 3000]
  --cors-origin ORIGIN   allow this origin (repeatable); without it any origin is allowed

CHAT OPTIONS (docs/PROTOCOL.md):
  --data-dir DIR              where the SQLite database lives [default: sockeye-data]
  --web-dir DIR               the web page's files [default: web/ of the source tree, else ./web]
  --jwt-public-key FILE       verify tokens with this RSA/EC public key (PEM) instead of JWT_SECRET
  --jwt-algorithm ALG         algorithm for --jwt-public-key: RS256, RS384, RS512, ES256, ES384 [default: RS256]
  --max-message-chars N       longest message text [default: 2000]
  --max-message-bytes N       largest opaque (seed 000) message [default: 65536]
  --max-name-chars N          longest user name [default: 64]
  --max-room-name-chars N     longest room name [default: 64]
  --max-rooms-per-socket N    chat rooms one socket may join [default: 50]
  --rate-limit N              messages per second per socket [default: 10]
  --rate-burst N              burst of messages per socket [default: 20]
  --abuse-disconnect N        rejections within 10 s that disconnect a socket; 0 = never [default: 50]
  --history-limit N           messages sent on join and connect [default: 50]
  --max-history-page N        largest page of GET .../messages [default: 200]
  --presence-interval-ms MS   at most one presence list per interval [default: 100]
  --no-presence-event NAME    do not send this list event: getOnlineUsers or online (repeatable)
  -h, --help                  print this help

ENVIRONMENT:
  JWT_SECRET                  HS256 secret; when set, every connection needs a valid token

On start it prints `sockeye listening on http://HOST:PORT`. SIGINT/SIGTERM close every session
and exit; a second signal exits at once.";

struct Options {
    app: String,
    cfg: Config,
    chat: ChatConfig,
    jwt_public_key: Option<String>,
    jwt_algorithm: String,
}

fn parse_args(args: Vec<String>) -> Result<Options, String> {
    let mut args = args.into_iter();
    let mut app = "chat".to_owned();
    let mut cfg = Config::default();
    let mut chat = ChatConfig::default();
    let mut overrides: Vec<(String, String)> = Vec::new();
    let mut origins: Vec<String> = Vec::new();
    let mut jwt_public_key = None;
    let mut jwt_algorithm = "RS256".to_owned();
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
            "--jwt-public-key" => jwt_public_key = Some(value),
            "--jwt-algorithm" => jwt_algorithm = value,
            _ => overrides.push((key, value)),
        }
    }
    if app == "echo" {
        sockeye::apps::echo::configure(&mut cfg);
    }
    for (key, value) in overrides {
        let num = || value.parse::<u64>().map_err(|_| format!("{key}: `{value}` is not a number"));
        let positive = || match num()? {
            0 => Err(format!("{key}: must be at least 1")),
            n => Ok(n),
        };
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
            "--data-dir" => chat.data_dir = value.clone().into(),
            "--web-dir" => chat.web_dir = Some(value.clone().into()),
            "--max-message-chars" => chat.max_message_chars = positive()? as usize,
            "--max-message-bytes" => chat.max_message_bytes = positive()? as usize,
            "--max-name-chars" => chat.max_name_chars = positive()? as usize,
            "--max-room-name-chars" => chat.max_room_name_chars = positive()? as usize,
            "--max-rooms-per-socket" => chat.max_rooms_per_socket = positive()? as usize,
            "--rate-limit" => chat.rate_limit = positive()? as f64,
            "--rate-burst" => {
                chat.rate_burst = u32::try_from(positive()?).map_err(|_| format!("{key}: too large"))?
            }
            "--abuse-disconnect" => {
                chat.abuse_disconnect = u32::try_from(num()?).map_err(|_| format!("{key}: too large"))?
            }
            "--history-limit" => chat.history_limit = positive()?.min(1000) as usize,
            "--max-history-page" => chat.max_history_page = positive()?.min(1000) as usize,
            "--presence-interval-ms" => chat.presence_interval = Duration::from_millis(num()?),
            "--no-presence-event" => match value.as_str() {
                "getOnlineUsers" => chat.emit_get_online_users = false,
                "online" => chat.emit_online = false,
                other => return Err(format!("{key}: `{other}` is not getOnlineUsers or online")),
            },
            other => return Err(format!("unknown option `{other}` (see --help)")),
        }
    }
    if !origins.is_empty() {
        cfg.cors = Cors::allow_list(origins);
    }
    // The chat app's rooms plus its own (socket id, user, global, DM) stay within the broker's
    // per-socket bound.
    cfg.limits.max_rooms_per_socket = cfg.limits.max_rooms_per_socket.max(chat.max_rooms_per_socket + 8);
    Ok(Options { app, cfg, chat, jwt_public_key, jwt_algorithm })
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

/// The token verifier: a public key file, else `JWT_SECRET`, else none (development mode).
fn verifier(opts: &Options) -> Result<Option<JwtVerifier>, String> {
    if let Some(path) = &opts.jwt_public_key {
        let pem = std::fs::read(path).map_err(|e| format!("--jwt-public-key {path}: {e}"))?;
        let alg: JwtAlg = opts
            .jwt_algorithm
            .parse()
            .map_err(|_| format!("--jwt-algorithm: unknown `{}`", opts.jwt_algorithm))?;
        return JwtVerifier::from_public_key_pem(&pem, alg)
            .map(Some)
            .map_err(|e| format!("--jwt-public-key {path}: {e}"));
    }
    match std::env::var("JWT_SECRET") {
        Ok(s) if !s.is_empty() => Ok(Some(JwtVerifier::hmac(s.as_bytes()))),
        _ => Ok(None),
    }
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

fn install_chat(server: &mut ServerBuilder, opts: &Options) -> Result<ChatRuntime, String> {
    let verifier = verifier(opts)?;
    let (store, rooms) = Store::open(StoreConfig::new(opts.chat.data_dir.clone()))
        .map_err(|e| format!("cannot open the store in {}: {e}", opts.chat.data_dir.display()))?;
    let (presence_tx, presence_rx) = crossbeam_channel::unbounded();
    let web = WebFiles::load(&web_dir(&opts.chat));
    let mode = if verifier.is_some() { "token mode" } else { "development mode (no JWT_SECRET)" };
    eprintln!("sockeye: chat in {mode}, data in {}", opts.chat.data_dir.display());
    if web.missing_client {
        eprintln!("sockeye: the web page's socket.io client is missing; run `npm ci --prefix web`");
    }
    let shared = Arc::new(Shared {
        config: opts.chat.clone(),
        verifier,
        store: store.handle(),
        initial_rooms: rooms,
        presence: presence_tx.clone(),
        handle: OnceLock::new(),
        web,
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

fn wait_signal(set: &libc::sigset_t) -> i32 {
    let mut sig: libc::c_int = 0;
    // SAFETY: sigwait reads the initialised set and writes the signal number into `sig`.
    unsafe { libc::sigwait(set, &mut sig) };
    sig
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("token") {
        return token_command(&args[1..]);
    }
    let opts = match parse_args(args) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("sockeye: {e}");
            return ExitCode::from(2);
        }
    };
    let mut server = ServerBuilder::new(opts.cfg.clone());
    let mut chat_rt = None;
    match opts.app.as_str() {
        "chat" => match install_chat(&mut server, &opts) {
            Ok(rt) => chat_rt = Some(rt),
            Err(e) => {
                eprintln!("sockeye: {e}");
                return ExitCode::FAILURE;
            }
        },
        "echo" => sockeye::apps::echo::install(&mut server),
        "bench" => sockeye::apps::bench::install(&mut server),
        other => {
            eprintln!("sockeye: unknown app `{other}` (known: chat, echo, bench)");
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
    if let Some(rt) = chat_rt {
        // Every core has stopped: commit what is queued, then stop presence.
        rt.store.close();
        let _ = rt.presence_tx.send(PresenceMsg::Shutdown);
        let _ = rt.presence.join();
    }
    ExitCode::SUCCESS
}
