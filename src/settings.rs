//! The `sockeye` command's settings: one table of options ([`OPTIONS`]), read from a TOML file,
//! the environment and flags.
//!
//! Precedence, lowest to highest: the built-in defaults (the app's: `app = "echo"` has its own
//! Engine.IO timings), the TOML file named by `--config FILE` or `SOCKEYE_CONFIG` (no file is
//! read without one), environment variables, flags. A repeatable flag (`--cors-origin`) or a
//! list replaces the list of a lower source; it does not add to it.
//!
//! Every option has a TOML key (`port`, `engine.ping_interval_ms`, `chat.rate_limit`: a dot
//! names a `[section]`), a flag, and an environment variable named by one rule, [`env_var`]:
//! `SOCKEYE_` followed by the key in upper case with `.` as `_` (`SOCKEYE_PORT`,
//! `SOCKEYE_CHAT_RATE_LIMIT`). The HS256 secret is read only from `JWT_SECRET` (or from the file
//! named by `auth.jwt_secret_file`) and is never printed.
//!
//! Every value is checked where it is read, so an error names its source and key: the file and
//! key, the environment variable, or the flag. Unknown keys, unknown `SOCKEYE_*` variables and
//! unknown flags are errors (with the closest known name as a suggestion), except the test
//! harness's variables in [`IGNORED_ENV`].
//!
//! `--help` ([`help`]), `--print-config` ([`Settings::to_toml`]) and `sockeye.example.toml`
//! (`--print-config --defaults`) are generated from the table, so they cannot drift from it.
//!
//! Sans-IO: [`load`] takes the arguments, the environment and a function that reads the file;
//! `main.rs` reads files, prints and exits.

use std::collections::BTreeMap;
use std::fmt;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use crate::auth::JwtAlg;
use crate::chat::ChatConfig;
use crate::config::Config;
use crate::http::cors::Cors;

/// The application the command serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum App {
    /// The chat service (`docs/PROTOCOL.md`).
    Chat,
    /// The conformance app of the interop tests.
    Echo,
    /// The load generator's contract (`tools/bench`).
    Bench,
}

impl App {
    /// Every app, in the order of the `app` option's choices.
    pub const ALL: [App; 3] = [App::Chat, App::Echo, App::Bench];

    pub fn as_str(self) -> &'static str {
        APP_NAMES[self as usize]
    }
}

const APP_NAMES: &[&str] = &["chat", "echo", "bench"];

/// Algorithms for a public key file (`auth.jwt_algorithm`).
const PUBKEY_ALGS: [JwtAlg; 5] = [JwtAlg::RS256, JwtAlg::RS384, JwtAlg::RS512, JwtAlg::ES256, JwtAlg::ES384];
const PUBKEY_ALG_NAMES: &[&str] = &["RS256", "RS384", "RS512", "ES256", "ES384"];

/// The chat presence events that `chat.disabled_presence_events` can switch off.
const PRESENCE_EVENTS: &[&str] = &["getOnlineUsers", "online", "userConnected", "userDisconnected"];

/// A secret read from the environment; its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<set>)")
    }
}

/// The effective settings of one run.
#[derive(Debug, Clone)]
pub struct Settings {
    pub app: App,
    /// The server configuration, without `cors` and the chat's room bound: see
    /// [`Settings::server_config`].
    pub server: Config,
    pub chat: ChatConfig,
    /// Allowed browser origins; empty allows any.
    pub cors_origins: Vec<String>,
    /// Verify tokens with this public key (PEM) instead of the HS256 secret.
    pub jwt_public_key: Option<PathBuf>,
    pub jwt_algorithm: JwtAlg,
    /// Read the HS256 secret from this file. At most one of this and `jwt_secret` is set: the
    /// one from the higher-precedence source.
    pub jwt_secret_file: Option<PathBuf>,
    /// The HS256 secret from `JWT_SECRET`.
    pub jwt_secret: Option<Secret>,
    pub log_level: crate::log::Level,
    pub log_format: crate::log::Format,
}

impl Settings {
    /// The built-in defaults of an app.
    pub fn defaults(app: App) -> Settings {
        let mut server = Config::default();
        if app == App::Echo {
            crate::apps::echo::configure(&mut server);
        }
        Settings {
            app,
            server,
            chat: ChatConfig::default(),
            cors_origins: Vec::new(),
            jwt_public_key: None,
            jwt_algorithm: JwtAlg::RS256,
            jwt_secret_file: None,
            jwt_secret: None,
            log_level: crate::log::Level::Info,
            log_format: crate::log::Format::Human,
        }
    }

    /// The configuration to start the server with: `server` plus the CORS allow-list, and the
    /// broker's rooms-per-socket bound raised to fit the chat app's rooms.
    pub fn server_config(&self) -> Config {
        let mut cfg = self.server.clone();
        if !self.cors_origins.is_empty() {
            cfg.cors = Cors::allow_list(self.cors_origins.iter().cloned());
        }
        // The chat app's rooms plus its own (socket id, user, global, DM) stay within the
        // broker's per-socket bound.
        cfg.limits.max_rooms_per_socket =
            cfg.limits.max_rooms_per_socket.max(self.chat.max_rooms_per_socket + 8);
        cfg
    }

    /// The value of every option, as TOML with each option's help, flag and environment
    /// variable in comments. Parsed back as a config file it gives the same settings (the
    /// secret excepted: it is shown as `<set>` or `<unset>` in a comment).
    pub fn to_toml(&self) -> String {
        let mut out = String::from(TOML_HEADER);
        for (section, title) in SECTIONS {
            if !section.is_empty() {
                let _ = write!(out, "\n# {title}\n[{section}]\n");
            }
            for opt in OPTIONS.iter().filter(|o| o.section() == *section) {
                out.push('\n');
                for line in wrap(opt.help.split_whitespace(), HELP_WIDTH - 2) {
                    let _ = writeln!(out, "# {line}");
                }
                let _ = writeln!(out, "# flag {}, env {}", opt.flag_usage(), opt.env_var());
                match opt.value(self) {
                    Some(v) => {
                        let _ = writeln!(out, "{} = {v}", opt.name());
                    }
                    None => {
                        let _ = writeln!(out, "# {} = \"...\"   (unset: {})", opt.name(), opt.unset);
                    }
                }
            }
            if *section == "auth" {
                let shown = if self.jwt_secret.is_some() { "<set>" } else { "<unset>" };
                let _ = write!(
                    out,
                    "\n# HS256 secret; only from the environment ({JWT_SECRET}), or the file above\n\
                     # {JWT_SECRET} = {shown}\n"
                );
            }
        }
        out
    }
}

/// The environment variable with the HS256 secret.
pub const JWT_SECRET: &str = "JWT_SECRET";

/// The environment variable naming the config file (`--config` wins over it).
pub const CONFIG_ENV: &str = "SOCKEYE_CONFIG";

/// `SOCKEYE_*` variables that are not settings: the test harnesses' (`tests/`, `tools/`), which a
/// server started by them inherits.
pub const IGNORED_ENV: &[&str] = &[
    "SOCKEYE_BIN",
    "SOCKEYE_SERVER_CMD",
    "SOCKEYE_INTEROP_SERVER_CMD",
    "SOCKEYE_SKIP_INTEROP",
    "SOCKEYE_SKIP_BROWSER",
    "SOCKEYE_STORE_CRASH_CHILD_DIR",
    "SOCKEYE_STORE_FSIZE_CHILD_DIR",
    "SOCKEYE_SOAK_MINUTES",
    "SOCKEYE_BEHIND_PROXY",
    "SOCKEYE_PROXIED_CMD",
    "SOCKEYE_NGINX",
    "SOCKEYE_NGINX_CONF",
    "SOCKEYE_PROXY_TMPDIR",
    "SOCKEYE_PID",
    "SOCKEYE_START_S",
];

/// Whether the settings read this environment variable (`main.rs` passes only these).
pub fn reads_env(name: &str) -> bool {
    name == JWT_SECRET || name.starts_with("SOCKEYE_")
}

/// The environment variable of a TOML key: `SOCKEYE_` and the key in upper case, `.` as `_`.
pub fn env_var(key: &str) -> String {
    format!("SOCKEYE_{}", key.replace('.', "_").to_ascii_uppercase())
}

const TOML_HEADER: &str = "\
# sockeye settings, as printed by `sockeye --print-config` (the effective values) or
# `sockeye --print-config --defaults` (the built-in defaults, which is sockeye.example.toml).
# Use a file with `sockeye --config FILE` or SOCKEYE_CONFIG=FILE. Precedence, lowest to highest:
# built-in defaults, this file, environment variables, flags. Every key has an environment
# variable: SOCKEYE_ and the key in upper case, dots as _ (chat.rate_limit: SOCKEYE_CHAT_RATE_LIMIT).
";

/// Sections in the order of `--help` and the TOML output; "" holds the top-level keys.
const SECTIONS: &[(&str, &str)] = &[
    ("", "SERVER"),
    ("log", "LOG"),
    ("engine", "ENGINE.IO"),
    ("limits", "LIMITS"),
    ("recovery", "CONNECTION STATE RECOVERY (socket.io connectionStateRecovery)"),
    ("chat", "CHAT (the chat app, docs/PROTOCOL.md)"),
    ("auth", "AUTH (the chat app's tokens)"),
];

/// How an option's value is checked and stored.
enum Kind {
    /// A whole number in `min..=max`.
    Int { min: u64, max: u64, set: fn(&mut Settings, u64), get: fn(&Settings) -> u64 },
    /// A string that passes `check`; `get` gives `None` while unset.
    Text { check: Check, set: fn(&mut Settings, String), get: fn(&Settings) -> Option<String> },
    /// One of `choices` (matched without regard to case); the setter gets the index.
    Choice { choices: &'static [&'static str], set: fn(&mut Settings, usize), get: fn(&Settings) -> usize },
    /// A list of strings that pass `check`: a TOML array, a comma-separated environment
    /// variable, or a repeated flag.
    List { check: Check, set: fn(&mut Settings, Vec<String>), get: fn(&Settings) -> Vec<String> },
    /// A list of `choices`.
    ChoiceList {
        choices: &'static [&'static str],
        set: fn(&mut Settings, Vec<String>),
        get: fn(&Settings) -> Vec<String>,
    },
}

type Check = fn(&str) -> Result<(), String>;

/// One option: its TOML key, flag, help and type. Its environment variable is [`env_var`] of
/// the key.
pub struct Opt {
    /// `name` or `section.name`.
    pub key: &'static str,
    /// The flag, `--name`.
    pub flag: &'static str,
    /// The flag's value in `--help` (`N`, `MS`, `DIR`).
    pub metavar: &'static str,
    /// One line.
    pub help: &'static str,
    /// What an unset optional value means (shown as its default).
    unset: &'static str,
    kind: Kind,
}

impl Opt {
    pub fn env_var(&self) -> String {
        env_var(self.key)
    }

    /// The section (`""` for top-level keys).
    pub fn section(&self) -> &'static str {
        self.key.rsplit_once('.').map_or("", |(s, _)| s)
    }

    /// The key within its section.
    pub fn name(&self) -> &'static str {
        self.key.rsplit_once('.').map_or(self.key, |(_, n)| n)
    }

    fn is_list(&self) -> bool {
        matches!(self.kind, Kind::List { .. } | Kind::ChoiceList { .. })
    }

    fn flag_usage(&self) -> String {
        let repeat = if self.is_list() { " (repeatable)" } else { "" };
        format!("{} {}{repeat}", self.flag, self.metavar)
    }

    /// The option's value in `s`, or `None` while an optional value is unset.
    fn value(&self, s: &Settings) -> Option<toml::Value> {
        let strings = |v: Vec<String>| toml::Value::Array(v.into_iter().map(toml::Value::String).collect());
        Some(match &self.kind {
            Kind::Int { get, .. } => toml::Value::Integer(i64::try_from(get(s)).unwrap_or(i64::MAX)),
            Kind::Text { get, .. } => toml::Value::String(get(s)?),
            Kind::Choice { choices, get, .. } => toml::Value::String(choices[get(s)].to_owned()),
            Kind::List { get, .. } | Kind::ChoiceList { get, .. } => strings(get(s)),
        })
    }

    /// What `--help` shows as the default.
    fn default_text(&self, s: &Settings) -> String {
        match self.value(s) {
            None => self.unset.to_owned(),
            Some(toml::Value::String(v)) => v,
            Some(toml::Value::Array(a)) if a.is_empty() => "none".to_owned(),
            Some(v) => v.to_string(),
        }
    }

    /// Check a string (from the environment or a flag) and turn it into a value.
    fn parse_str(&self, raw: &str) -> Result<Parsed, String> {
        match &self.kind {
            Kind::Int { min, max, .. } => {
                let n = raw.trim().parse::<u64>().map_err(|_| format!("`{raw}` is not a whole number"))?;
                in_range(n, *min, *max).map(Parsed::Int)
            }
            Kind::Text { check, .. } => check(raw).map(|()| Parsed::Text(raw.to_owned())),
            Kind::Choice { choices, .. } => choice(raw, choices).map(Parsed::Choice),
            Kind::List { .. } | Kind::ChoiceList { .. } => {
                self.parse_list(raw.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned))
            }
        }
    }

    /// Check a value from the config file.
    fn parse_toml(&self, v: &toml::Value) -> Result<Parsed, String> {
        let found = || format!("found {} {v}", v.type_str());
        match &self.kind {
            Kind::Int { min, max, .. } => match v {
                toml::Value::Integer(i) => match u64::try_from(*i) {
                    Ok(n) => in_range(n, *min, *max).map(Parsed::Int),
                    Err(_) => Err(format!("must be at least {min} (got {i})")),
                },
                _ => Err(format!("expected a whole number, {}", found())),
            },
            Kind::Text { .. } | Kind::Choice { .. } => match v {
                toml::Value::String(s) => self.parse_str(s),
                _ => Err(format!("expected a string, {}", found())),
            },
            Kind::List { .. } | Kind::ChoiceList { .. } => {
                let items = match v {
                    toml::Value::Array(a) => a
                        .iter()
                        .map(|item| match item {
                            toml::Value::String(s) => Ok(s.clone()),
                            other => Err(format!("expected an array of strings, found {other}")),
                        })
                        .collect::<Result<Vec<_>, _>>()?,
                    _ => return Err(format!("expected an array of strings, {}", found())),
                };
                self.parse_list(items.into_iter())
            }
        }
    }

    fn parse_list(&self, items: impl Iterator<Item = String>) -> Result<Parsed, String> {
        let mut out = Vec::new();
        for item in items {
            match &self.kind {
                Kind::List { check, .. } => {
                    check(&item)?;
                    out.push(item);
                }
                Kind::ChoiceList { choices, .. } => {
                    let c = choices[choice(&item, choices)?].to_owned();
                    if !out.contains(&c) {
                        out.push(c);
                    }
                }
                _ => {}
            }
        }
        Ok(Parsed::List(out))
    }

    fn apply(&self, s: &mut Settings, v: Parsed) {
        match (&self.kind, v) {
            (Kind::Int { set, .. }, Parsed::Int(n)) => set(s, n),
            (Kind::Text { set, .. }, Parsed::Text(t)) => set(s, t),
            (Kind::Choice { set, .. }, Parsed::Choice(i)) => set(s, i),
            (Kind::List { set, .. } | Kind::ChoiceList { set, .. }, Parsed::List(l)) => set(s, l),
            // parse_str and parse_toml give each kind its own variant.
            _ => debug_assert!(false, "{}: value of another kind", self.key),
        }
    }
}

fn in_range(n: u64, min: u64, max: u64) -> Result<u64, String> {
    if n < min {
        Err(format!("must be at least {min} (got {n})"))
    } else if n > max {
        Err(format!("must be at most {max} (got {n})"))
    } else {
        Ok(n)
    }
}

fn choice(raw: &str, choices: &[&str]) -> Result<usize, String> {
    let raw = raw.trim();
    choices
        .iter()
        .position(|c| c.eq_ignore_ascii_case(raw))
        .ok_or_else(|| format!("`{raw}` is not one of {}", choices.join(", ")))
}

/// A checked value, before it is stored.
#[derive(Debug, Clone, PartialEq)]
enum Parsed {
    Int(u64),
    Text(String),
    Choice(usize),
    List(Vec<String>),
}

fn non_empty(s: &str) -> Result<(), String> {
    if s.trim().is_empty() { Err("must not be empty".into()) } else { Ok(()) }
}

fn host(s: &str) -> Result<(), String> {
    non_empty(s)?;
    if s.chars().any(char::is_whitespace) {
        Err(format!("`{s}` is not a host name or address"))
    } else {
        Ok(())
    }
}

fn url_path(s: &str) -> Result<(), String> {
    if !s.starts_with('/') {
        Err(format!("`{s}` must start with `/`"))
    } else if s.chars().any(|c| c.is_whitespace() || c == '?' || c == '#') {
        Err(format!("`{s}` is not a URL path"))
    } else {
        Ok(())
    }
}

/// An address or CIDR range.
fn ip_net(s: &str) -> Result<(), String> {
    s.parse::<crate::http::forwarded::IpNet>().map(|_| ())
}

/// `scheme://host[:port]`, as browsers send it in `Origin`.
fn origin(s: &str) -> Result<(), String> {
    let ok = s.split_once("://").is_some_and(|(scheme, rest)| {
        !scheme.is_empty() && !rest.is_empty() && !rest.contains('/') && !s.chars().any(char::is_whitespace)
    });
    if ok { Ok(()) } else { Err(format!("`{s}` is not an origin like https://app.example.com (no path)")) }
}

/// Longest duration in milliseconds: JavaScript clients keep timers in 32-bit signed ms.
const MAX_MS: u64 = i32::MAX as u64;
/// Largest byte size.
const MAX_BYTES: u64 = 1 << 30;
/// Largest count (messages, characters, rooms, bursts).
const MAX_COUNT: u64 = u32::MAX as u64;

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn size(n: usize) -> u64 {
    n as u64
}

fn to_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

fn to_u32(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn path_text(p: &Option<PathBuf>) -> Option<String> {
    p.as_ref().map(|p| p.to_string_lossy().into_owned())
}

/// Every option. Keys in one section are contiguous; the top-level keys come first.
pub static OPTIONS: &[Opt] = &[
    Opt {
        key: "app",
        flag: "--app",
        metavar: "NAME",
        help: "application to serve: chat (the chat service), echo (the interop tests' conformance \
               app) or bench (the load generator's contract)",
        unset: "",
        kind: Kind::Choice { choices: APP_NAMES, set: |s, i| s.app = App::ALL[i], get: |s| s.app as usize },
    },
    Opt {
        key: "host",
        flag: "--host",
        metavar: "HOST",
        help: "address to listen on",
        unset: "",
        kind: Kind::Text { check: host, set: |s, v| s.server.host = v, get: |s| Some(s.server.host.clone()) },
    },
    Opt {
        key: "port",
        flag: "--port",
        metavar: "PORT",
        help: "port to listen on; 0 picks a free one",
        unset: "",
        kind: Kind::Int {
            min: 0,
            max: u16::MAX as u64,
            set: |s, n| s.server.port = u16::try_from(n).unwrap_or(u16::MAX),
            get: |s| u64::from(s.server.port),
        },
    },
    Opt {
        key: "cores",
        flag: "--cores",
        metavar: "N",
        help: "event-loop threads, at most 64; 0 = one per CPU",
        unset: "",
        kind: Kind::Int {
            min: 0,
            max: 64,
            set: |s, n| s.server.cores = to_usize(n),
            get: |s| size(s.server.cores),
        },
    },
    Opt {
        key: "path",
        flag: "--path",
        metavar: "PATH",
        help: "Socket.IO path",
        unset: "",
        kind: Kind::Text {
            check: url_path,
            set: |s, v| s.server.path = v,
            get: |s| Some(s.server.path.clone()),
        },
    },
    Opt {
        key: "connect_timeout_ms",
        flag: "--connect-timeout",
        metavar: "MS",
        help: "time to connect a namespace after the Engine.IO handshake",
        unset: "",
        kind: Kind::Int {
            min: 1,
            max: MAX_MS,
            set: |s, n| s.server.connect_timeout = Duration::from_millis(n),
            get: |s| ms(s.server.connect_timeout),
        },
    },
    Opt {
        key: "shutdown_timeout_ms",
        flag: "--shutdown-timeout",
        metavar: "MS",
        help: "on SIGINT/SIGTERM, time to deliver close packets before exiting",
        unset: "",
        kind: Kind::Int {
            min: 0,
            max: MAX_MS,
            set: |s, n| s.server.shutdown_timeout = Duration::from_millis(n),
            get: |s| ms(s.server.shutdown_timeout),
        },
    },
    Opt {
        key: "cors_origins",
        flag: "--cors-origin",
        metavar: "ORIGIN",
        help: "browser origins allowed (https://app.example.com); none allows any origin",
        unset: "",
        kind: Kind::List { check: origin, set: |s, v| s.cors_origins = v, get: |s| s.cors_origins.clone() },
    },
    Opt {
        key: "trusted_proxies",
        flag: "--trusted-proxy",
        metavar: "CIDR",
        help: "proxy address or range whose X-Forwarded-For is believed (10.0.0.0/8); none: the peer is the client",
        unset: "",
        kind: Kind::List {
            check: ip_net,
            set: |s, v| s.server.trusted_proxies = v.iter().filter_map(|n| n.parse().ok()).collect(),
            get: |s| s.server.trusted_proxies.iter().map(|n| n.to_string()).collect(),
        },
    },
    Opt {
        key: "metrics",
        flag: "--metrics",
        metavar: "on|off",
        help: "serve GET /metrics (Prometheus text); keep it off the public network (deny it at the proxy)",
        unset: "",
        kind: Kind::Choice {
            choices: &["off", "on"],
            set: |s, i| s.server.metrics = i == 1,
            get: |s| usize::from(s.server.metrics),
        },
    },
    Opt {
        key: "log.level",
        flag: "--log-level",
        metavar: "LEVEL",
        help: "log lines on stderr at this level and above: off, error, warn, info (start, shutdown, \
               errors, limits hit), or debug (every connection and socket)",
        unset: "",
        kind: Kind::Choice {
            choices: crate::log::LEVEL_NAMES,
            set: |s, i| s.log_level = crate::log::Level::ALL[i],
            get: |s| s.log_level as usize,
        },
    },
    Opt {
        key: "log.format",
        flag: "--log-format",
        metavar: "FORMAT",
        help: "log line format: human, or json (one object per line: ts, level, msg, fields); \
               message bodies and tokens are never logged",
        unset: "",
        kind: Kind::Choice {
            choices: crate::log::FORMAT_NAMES,
            set: |s, i| s.log_format = crate::log::Format::ALL[i],
            get: |s| s.log_format as usize,
        },
    },
    Opt {
        key: "engine.ping_interval_ms",
        flag: "--ping-interval",
        metavar: "MS",
        help: "Engine.IO ping interval",
        unset: "",
        kind: Kind::Int {
            min: 1,
            max: MAX_MS,
            set: |s, n| s.server.engine.ping_interval = Duration::from_millis(n),
            get: |s| ms(s.server.engine.ping_interval),
        },
    },
    Opt {
        key: "engine.ping_timeout_ms",
        flag: "--ping-timeout",
        metavar: "MS",
        help: "Engine.IO ping timeout: how long the pong may take",
        unset: "",
        kind: Kind::Int {
            min: 1,
            max: MAX_MS,
            set: |s, n| s.server.engine.ping_timeout = Duration::from_millis(n),
            get: |s| ms(s.server.engine.ping_timeout),
        },
    },
    Opt {
        key: "engine.max_payload",
        flag: "--max-payload",
        metavar: "BYTES",
        help: "largest message, polling body or HTTP body",
        unset: "",
        kind: Kind::Int {
            min: 1,
            max: MAX_BYTES,
            set: |s, n| s.server.engine.max_payload = to_usize(n),
            get: |s| size(s.server.engine.max_payload),
        },
    },
    Opt {
        key: "engine.upgrade_timeout_ms",
        flag: "--upgrade-timeout",
        metavar: "MS",
        help: "time a WebSocket upgrade probe may take; polling goes on after it",
        unset: "",
        kind: Kind::Int {
            min: 1,
            max: MAX_MS,
            set: |s, n| s.server.engine.upgrade_timeout = Duration::from_millis(n),
            get: |s| ms(s.server.engine.upgrade_timeout),
        },
    },
    Opt {
        key: "limits.max_output_bytes",
        flag: "--max-output",
        metavar: "BYTES",
        help: "output queued per connection before a slow client is dropped",
        unset: "",
        kind: Kind::Int {
            min: 1,
            max: MAX_BYTES,
            set: |s, n| s.server.limits.max_output_bytes = to_usize(n),
            get: |s| size(s.server.limits.max_output_bytes),
        },
    },
    Opt {
        key: "limits.max_header_bytes",
        flag: "--max-header-bytes",
        metavar: "BYTES",
        help: "largest HTTP request head (431 above it)",
        unset: "",
        kind: Kind::Int {
            min: 1024,
            max: 1 << 20,
            set: |s, n| s.server.limits.max_header_bytes = to_usize(n),
            get: |s| size(s.server.limits.max_header_bytes),
        },
    },
    Opt {
        key: "limits.max_connections_per_core",
        flag: "--max-connections-per-core",
        metavar: "N",
        help: "open connections per core; new ones beyond it are closed",
        unset: "",
        kind: Kind::Int {
            min: 1,
            max: MAX_COUNT,
            set: |s, n| s.server.limits.max_connections_per_core = to_usize(n),
            get: |s| size(s.server.limits.max_connections_per_core),
        },
    },
    Opt {
        key: "limits.max_connections",
        flag: "--max-connections",
        metavar: "N",
        help: "open connections on this node; beyond it a new one gets 503 and is closed",
        unset: "",
        kind: Kind::Int {
            min: 1,
            max: MAX_COUNT,
            set: |s, n| s.server.limits.max_connections = to_usize(n),
            get: |s| size(s.server.limits.max_connections),
        },
    },
    Opt {
        key: "limits.max_handshakes_per_ip",
        flag: "--max-handshakes-per-ip",
        metavar: "N",
        help: "new Engine.IO sessions per second per client address (IPv6 per /64); beyond: 429; 0 = off",
        unset: "",
        kind: Kind::Int {
            min: 0,
            max: MAX_COUNT,
            set: |s, n| s.server.limits.max_handshakes_per_ip_per_sec = to_u32(n),
            get: |s| u64::from(s.server.limits.max_handshakes_per_ip_per_sec),
        },
    },
    Opt {
        key: "limits.handshake_burst_per_ip",
        flag: "--handshake-burst",
        metavar: "N",
        help: "burst of new sessions per client address; 0 = twice the rate",
        unset: "",
        kind: Kind::Int {
            min: 0,
            max: MAX_COUNT,
            set: |s, n| s.server.limits.handshake_burst_per_ip = to_u32(n),
            get: |s| u64::from(s.server.limits.handshake_burst_per_ip),
        },
    },
    Opt {
        key: "limits.handshake_limit_loopback",
        flag: "--handshake-limit-loopback",
        metavar: "on|off",
        help: "apply the per-address handshake limit to loopback clients too (a local proxy, benchmarks)",
        unset: "",
        kind: Kind::Choice {
            choices: &["off", "on"],
            set: |s, i| s.server.limits.handshake_rate_exempt_loopback = i == 0,
            get: |s| usize::from(!s.server.limits.handshake_rate_exempt_loopback),
        },
    },
    Opt {
        key: "limits.header_timeout_ms",
        flag: "--header-timeout-ms",
        metavar: "MS",
        help: "time to receive a request head (slowloris); the connection is closed after it",
        unset: "",
        kind: Kind::Int {
            min: 1,
            max: MAX_MS,
            set: |s, n| s.server.limits.header_read_timeout = Duration::from_millis(n),
            get: |s| ms(s.server.limits.header_read_timeout),
        },
    },
    Opt {
        key: "limits.keep_alive_timeout_ms",
        flag: "--keep-alive-timeout-ms",
        metavar: "MS",
        help: "idle time of a kept-alive HTTP connection before it is closed",
        unset: "",
        kind: Kind::Int {
            min: 1,
            max: MAX_MS,
            set: |s, n| s.server.limits.keep_alive_idle_timeout = Duration::from_millis(n),
            get: |s| ms(s.server.limits.keep_alive_idle_timeout),
        },
    },
    Opt {
        key: "recovery.enabled",
        flag: "--recovery",
        metavar: "on|off",
        help: "keep disconnected sockets for their clients to recover; on appends an offset \
               argument to every broadcast, which breaks fixed-arity handlers (python-socketio)",
        unset: "",
        kind: Kind::Choice {
            choices: &["on", "off"],
            set: |s, i| s.server.recovery.enabled = i == 0,
            get: |s| usize::from(!s.server.recovery.enabled),
        },
    },
    Opt {
        key: "recovery.window_ms",
        flag: "--recovery-window-ms",
        metavar: "MS",
        help: "how long a disconnected socket can be recovered",
        unset: "",
        kind: Kind::Int {
            min: 1,
            max: MAX_MS,
            set: |s, n| s.server.recovery.window = Duration::from_millis(n),
            get: |s| ms(s.server.recovery.window),
        },
    },
    Opt {
        key: "recovery.max_buffer_bytes",
        flag: "--recovery-max-buffer-bytes",
        metavar: "BYTES",
        help: "packet bytes kept per socket for recovery; a disconnected socket past it gets a fresh session",
        unset: "",
        kind: Kind::Int {
            min: 1024,
            max: MAX_BYTES,
            set: |s, n| s.server.recovery.max_buffer_bytes = to_usize(n),
            get: |s| size(s.server.recovery.max_buffer_bytes),
        },
    },
    Opt {
        key: "chat.data_dir",
        flag: "--data-dir",
        metavar: "DIR",
        help: "where the SQLite database lives",
        unset: "",
        kind: Kind::Text {
            check: non_empty,
            set: |s, v| s.chat.data_dir = v.into(),
            get: |s| Some(s.chat.data_dir.to_string_lossy().into_owned()),
        },
    },
    Opt {
        key: "chat.web_dir",
        flag: "--web-dir",
        metavar: "DIR",
        help: "the web page's files",
        unset: "web/ of the source tree, else ./web",
        kind: Kind::Text {
            check: non_empty,
            set: |s, v| s.chat.web_dir = Some(v.into()),
            get: |s| path_text(&s.chat.web_dir),
        },
    },
    Opt {
        key: "chat.max_message_chars",
        flag: "--max-message-chars",
        metavar: "N",
        help: "longest message text, in characters",
        unset: "",
        kind: Kind::Int {
            min: 1,
            max: MAX_COUNT,
            set: |s, n| s.chat.max_message_chars = to_usize(n),
            get: |s| size(s.chat.max_message_chars),
        },
    },
    Opt {
        key: "chat.max_message_bytes",
        flag: "--max-message-bytes",
        metavar: "BYTES",
        help: "largest opaque (seed 000) message",
        unset: "",
        kind: Kind::Int {
            min: 1,
            max: MAX_BYTES,
            set: |s, n| s.chat.max_message_bytes = to_usize(n),
            get: |s| size(s.chat.max_message_bytes),
        },
    },
    Opt {
        key: "chat.max_name_chars",
        flag: "--max-name-chars",
        metavar: "N",
        help: "longest user name",
        unset: "",
        kind: Kind::Int {
            min: 1,
            max: MAX_COUNT,
            set: |s, n| s.chat.max_name_chars = to_usize(n),
            get: |s| size(s.chat.max_name_chars),
        },
    },
    Opt {
        key: "chat.max_room_name_chars",
        flag: "--max-room-name-chars",
        metavar: "N",
        help: "longest room name",
        unset: "",
        kind: Kind::Int {
            min: 1,
            max: MAX_COUNT,
            set: |s, n| s.chat.max_room_name_chars = to_usize(n),
            get: |s| size(s.chat.max_room_name_chars),
        },
    },
    Opt {
        key: "chat.max_rooms_per_socket",
        flag: "--max-rooms-per-socket",
        metavar: "N",
        help: "chat rooms one socket may join",
        unset: "",
        kind: Kind::Int {
            min: 1,
            max: 1_000_000,
            set: |s, n| s.chat.max_rooms_per_socket = to_usize(n),
            get: |s| size(s.chat.max_rooms_per_socket),
        },
    },
    Opt {
        key: "chat.rate_limit",
        flag: "--rate-limit",
        metavar: "N",
        help: "messages per second per socket",
        unset: "",
        kind: Kind::Int {
            min: 1,
            max: MAX_COUNT,
            set: |s, n| s.chat.rate_limit = n as f64,
            get: |s| s.chat.rate_limit as u64,
        },
    },
    Opt {
        key: "chat.rate_burst",
        flag: "--rate-burst",
        metavar: "N",
        help: "burst of messages per socket",
        unset: "",
        kind: Kind::Int {
            min: 1,
            max: MAX_COUNT,
            set: |s, n| s.chat.rate_burst = to_u32(n),
            get: |s| u64::from(s.chat.rate_burst),
        },
    },
    Opt {
        key: "chat.typing_rate",
        flag: "--typing-rate",
        metavar: "N",
        help: "typing events per second per socket (the excess is dropped silently)",
        unset: "",
        kind: Kind::Int {
            min: 1,
            max: MAX_COUNT,
            set: |s, n| s.chat.typing_rate = n as f64,
            get: |s| s.chat.typing_rate as u64,
        },
    },
    Opt {
        key: "chat.typing_burst",
        flag: "--typing-burst",
        metavar: "N",
        help: "burst of typing events per socket",
        unset: "",
        kind: Kind::Int {
            min: 1,
            max: MAX_COUNT,
            set: |s, n| s.chat.typing_burst = to_u32(n),
            get: |s| u64::from(s.chat.typing_burst),
        },
    },
    Opt {
        key: "chat.abuse_disconnect",
        flag: "--abuse-disconnect",
        metavar: "N",
        help: "rejections within 10 s that disconnect a socket; 0 = never",
        unset: "",
        kind: Kind::Int {
            min: 0,
            max: MAX_COUNT,
            set: |s, n| s.chat.abuse_disconnect = to_u32(n),
            get: |s| u64::from(s.chat.abuse_disconnect),
        },
    },
    Opt {
        key: "chat.api_rate_limit",
        flag: "--api-rate-limit",
        metavar: "N",
        help: "HTTP API (/api/...) requests per second per client address, for the node; 0 = no \
               limit. Loopback is exempt like handshakes (limits.handshake_rate_exempt_loopback)",
        unset: "",
        kind: Kind::Int {
            min: 0,
            max: MAX_COUNT,
            set: |s, n| s.chat.api_rate_limit = to_u32(n),
            get: |s| u64::from(s.chat.api_rate_limit),
        },
    },
    Opt {
        key: "chat.api_rate_burst",
        flag: "--api-rate-burst",
        metavar: "N",
        help: "burst of HTTP API requests per client address; 0 = twice the rate",
        unset: "",
        kind: Kind::Int {
            min: 0,
            max: MAX_COUNT,
            set: |s, n| s.chat.api_rate_burst = to_u32(n),
            get: |s| u64::from(s.chat.api_rate_burst),
        },
    },
    Opt {
        key: "chat.history_limit",
        flag: "--history-limit",
        metavar: "N",
        help: "messages sent on join and connect, at most 1000",
        unset: "",
        kind: Kind::Int {
            min: 1,
            max: 1000,
            set: |s, n| s.chat.history_limit = to_usize(n),
            get: |s| size(s.chat.history_limit),
        },
    },
    Opt {
        key: "chat.max_history_page",
        flag: "--max-history-page",
        metavar: "N",
        help: "largest page of GET .../messages, at most 1000",
        unset: "",
        kind: Kind::Int {
            min: 1,
            max: 1000,
            set: |s, n| s.chat.max_history_page = to_usize(n),
            get: |s| size(s.chat.max_history_page),
        },
    },
    Opt {
        key: "chat.presence_interval_ms",
        flag: "--presence-interval-ms",
        metavar: "MS",
        help: "at most one presence list per interval",
        unset: "",
        kind: Kind::Int {
            min: 0,
            max: MAX_MS,
            set: |s, n| s.chat.presence_interval = Duration::from_millis(n),
            get: |s| ms(s.chat.presence_interval),
        },
    },
    Opt {
        key: "chat.disabled_presence_events",
        flag: "--no-presence-event",
        metavar: "NAME",
        help: "presence events not to send: getOnlineUsers, online, userConnected, userDisconnected",
        unset: "",
        kind: Kind::ChoiceList {
            choices: PRESENCE_EVENTS,
            set: |s, v| {
                let on = |name: &str| !v.iter().any(|e| e == name);
                s.chat.emit_get_online_users = on("getOnlineUsers");
                s.chat.emit_online = on("online");
                s.chat.emit_user_connected = on("userConnected");
                s.chat.emit_user_disconnected = on("userDisconnected");
            },
            get: |s| {
                let c = &s.chat;
                let emitted =
                    [c.emit_get_online_users, c.emit_online, c.emit_user_connected, c.emit_user_disconnected];
                PRESENCE_EVENTS
                    .iter()
                    .zip(emitted)
                    .filter(|(_, on)| !on)
                    .map(|(e, _)| (*e).to_owned())
                    .collect()
            },
        },
    },
    Opt {
        key: "auth.jwt_public_key",
        flag: "--jwt-public-key",
        metavar: "FILE",
        help: "verify tokens with this RSA/EC public key (PEM) instead of the HS256 secret",
        unset: "none",
        kind: Kind::Text {
            check: non_empty,
            set: |s, v| s.jwt_public_key = Some(v.into()),
            get: |s| path_text(&s.jwt_public_key),
        },
    },
    Opt {
        key: "auth.jwt_algorithm",
        flag: "--jwt-algorithm",
        metavar: "ALG",
        help: "algorithm of the public key's tokens: RS256, RS384, RS512, ES256, ES384",
        unset: "",
        kind: Kind::Choice {
            choices: PUBKEY_ALG_NAMES,
            set: |s, i| s.jwt_algorithm = PUBKEY_ALGS[i],
            get: |s| PUBKEY_ALGS.iter().position(|a| *a == s.jwt_algorithm).unwrap_or(0),
        },
    },
    Opt {
        key: "auth.jwt_secret_file",
        flag: "--jwt-secret-file",
        metavar: "FILE",
        help: "read the HS256 secret from this file instead of JWT_SECRET (a final newline is dropped)",
        unset: "none",
        kind: Kind::Text {
            check: non_empty,
            set: |s, v| s.jwt_secret_file = Some(v.into()),
            get: |s| path_text(&s.jwt_secret_file),
        },
    },
    Opt {
        key: "auth.expiry_disconnect",
        flag: "--token-expiry-disconnect",
        metavar: "on|off",
        help: "disconnect a socket when its token expires (after an error event token_expired)",
        unset: "",
        kind: Kind::Choice {
            choices: &["on", "off"],
            set: |s, i| s.chat.disconnect_on_token_expiry = i == 0,
            get: |s| usize::from(!s.chat.disconnect_on_token_expiry),
        },
    },
];

/// Where a bad value or name came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The config file; `key` is the dotted key, or `None` for the file as a whole.
    File { path: String, key: Option<String> },
    /// An environment variable.
    Env(String),
    /// A flag, or an argument that is not one.
    Flag(String),
}

/// A configuration error: `Display` gives `<source> <key>: <problem>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub origin: Origin,
    pub problem: String,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.origin {
            Origin::File { path, key: Some(key) } => write!(f, "config file {path}, key {key}: ")?,
            Origin::File { path, key: None } => write!(f, "config file {path}: ")?,
            Origin::Env(var) => write!(f, "environment variable {var}: ")?,
            Origin::Flag(flag) => write!(f, "flag {flag}: ")?,
        }
        f.write_str(&self.problem)
    }
}

impl std::error::Error for Error {}

/// What the command line asks for.
#[derive(Debug)]
pub enum Loaded {
    /// `--help`: print this text and exit 0.
    Help(String),
    /// `--print-config` (with `--defaults`: the built-in defaults): print `to_toml()`, exit 0.
    Print(Settings),
    /// Start the server with these settings.
    Run(Settings),
}

/// The command line before the file and the environment are read.
struct Argv {
    help: bool,
    print: bool,
    defaults: bool,
    config: Option<String>,
    /// Option index, the flag as written, value; a repeated list flag is merged into its first.
    values: Vec<(usize, String, Parsed)>,
}

fn flag_error(flag: &str, problem: impl Into<String>) -> Error {
    Error { origin: Origin::Flag(flag.to_owned()), problem: problem.into() }
}

fn parse_argv(args: &[String]) -> Result<Argv, Error> {
    let mut argv = Argv { help: false, print: false, defaults: false, config: None, values: Vec::new() };
    if args.iter().any(|a| a == "-h" || a == "--help") {
        argv.help = true;
        return Ok(argv);
    }
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) => (f, Some(v)),
            None => (arg.as_str(), None),
        };
        if !flag.starts_with("--") {
            return Err(flag_error(arg, "unexpected argument (see --help)"));
        }
        let switch = |on: &mut bool| match inline {
            Some(_) => Err(flag_error(flag, "takes no value")),
            None => {
                *on = true;
                Ok(())
            }
        };
        match flag {
            "--print-config" => switch(&mut argv.print)?,
            "--defaults" => switch(&mut argv.defaults)?,
            _ => {
                let opt = OPTIONS.iter().position(|o| o.flag == flag);
                if opt.is_none() && flag != "--config" {
                    let known =
                        OPTIONS.iter().map(|o| o.flag).chain(["--config", "--print-config", "--help"]);
                    return Err(flag_error(
                        flag,
                        format!("unknown option{} (see --help)", suggest(flag, known)),
                    ));
                }
                let value = match inline {
                    Some(v) => v.to_owned(),
                    None => it.next().cloned().ok_or_else(|| flag_error(flag, "needs a value"))?,
                };
                let Some(i) = opt else {
                    non_empty(&value).map_err(|p| flag_error(flag, p))?;
                    argv.config = Some(value);
                    continue;
                };
                let o = &OPTIONS[i];
                let parsed = if o.is_list() {
                    // One item per flag; the flag's items together replace a lower source's list.
                    o.parse_list(std::iter::once(value.clone()))
                } else {
                    o.parse_str(&value)
                }
                .map_err(|p| flag_error(flag, p))?;
                match (argv.values.iter_mut().find(|(j, ..)| *j == i), parsed) {
                    (Some((_, _, Parsed::List(items))), Parsed::List(more)) => {
                        for m in more {
                            if !items.contains(&m) {
                                items.push(m);
                            }
                        }
                    }
                    (_, parsed) => argv.values.push((i, flag.to_owned(), parsed)),
                }
            }
        }
    }
    if argv.defaults && !argv.print {
        return Err(flag_error("--defaults", "only with --print-config"));
    }
    Ok(argv)
}

/// Parse the config file's text into (option index, key, value).
fn parse_file(path: &str, text: &str) -> Result<Vec<(usize, String, Parsed)>, Error> {
    let file_error = |key: Option<&str>, problem: String| Error {
        origin: Origin::File { path: path.to_owned(), key: key.map(str::to_owned) },
        problem,
    };
    let table: toml::Table =
        text.parse().map_err(|e: toml::de::Error| file_error(None, format!("not valid TOML: {e}")))?;
    let mut out = Vec::new();
    let mut entries: Vec<(String, &toml::Value)> = Vec::new();
    for (k, v) in &table {
        let is_section = SECTIONS.iter().any(|(s, _)| !s.is_empty() && s == k);
        match v {
            toml::Value::Table(t) if is_section => {
                entries.extend(t.iter().map(|(name, v)| (format!("{k}.{name}"), v)));
            }
            _ if is_section => {
                return Err(file_error(Some(k), format!("must be a table ([{k}]), found {}", v.type_str())));
            }
            _ => entries.push((k.clone(), v)),
        }
    }
    for (key, v) in entries {
        let Some(i) = OPTIONS.iter().position(|o| o.key == key) else {
            let problem = if key.contains("secret") && !key.ends_with("_file") {
                "unknown key; secrets are not read from the file: set JWT_SECRET or auth.jwt_secret_file"
                    .to_owned()
            } else {
                format!("unknown key{}", suggest(&key, OPTIONS.iter().map(|o| o.key)))
            };
            return Err(file_error(Some(&key), problem));
        };
        let parsed = OPTIONS[i].parse_toml(v).map_err(|p| file_error(Some(&key), p))?;
        out.push((i, key, parsed));
    }
    Ok(out)
}

/// Parse the `SOCKEYE_*` variables into (option index, variable, value).
fn parse_env(env: &BTreeMap<String, String>) -> Result<Vec<(usize, String, Parsed)>, Error> {
    let mut out = Vec::new();
    for (name, value) in env {
        if !name.starts_with("SOCKEYE_") || name == CONFIG_ENV || IGNORED_ENV.contains(&name.as_str()) {
            continue;
        }
        let env_error = |problem: String| Error { origin: Origin::Env(name.clone()), problem };
        let Some(i) = OPTIONS.iter().position(|o| o.env_var() == *name) else {
            let known: Vec<String> = OPTIONS.iter().map(Opt::env_var).collect();
            let hint = suggest(name, known.iter().map(String::as_str).chain([CONFIG_ENV]));
            return Err(env_error(format!("unknown variable{hint} (see --help)")));
        };
        // An empty variable counts as unset (as for JWT_SECRET).
        if value.is_empty() {
            continue;
        }
        let parsed = OPTIONS[i].parse_str(value).map_err(env_error)?;
        out.push((i, name.clone(), parsed));
    }
    Ok(out)
}

/// The sources of settings, lowest precedence first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layer {
    File,
    Env,
    Flag,
}

fn non_empty_env<'a>(env: &'a BTreeMap<String, String>, name: &str) -> Option<&'a str> {
    env.get(name).map(String::as_str).filter(|v| !v.is_empty())
}

/// Read the settings: `args` without the program name, the environment (only the variables that
/// [`reads_env`] accepts are looked at), and `read`, which gives a config file's text.
pub fn load<R>(args: &[String], env: &BTreeMap<String, String>, read: R) -> Result<Loaded, Error>
where
    R: FnOnce(&str) -> Result<String, String>,
{
    let argv = parse_argv(args)?;
    if argv.help {
        return Ok(Loaded::Help(help()));
    }
    if argv.defaults {
        return Ok(Loaded::Print(Settings::defaults(App::Chat)));
    }
    let path = argv.config.clone().or_else(|| non_empty_env(env, CONFIG_ENV).map(str::to_owned));
    let file = match &path {
        Some(p) => {
            let text = read(p).map_err(|e| Error {
                origin: Origin::File { path: p.clone(), key: None },
                problem: format!("cannot read it: {e}"),
            })?;
            parse_file(p, &text)?
        }
        None => Vec::new(),
    };
    let from_env = parse_env(env)?;

    // Lowest precedence first: each later assignment wins.
    let layers = [(Layer::File, &file), (Layer::Env, &from_env), (Layer::Flag, &argv.values)];
    let assignments = || layers.iter().flat_map(|(rank, l)| l.iter().map(move |a| (*rank, a)));
    let app_opt = OPTIONS.iter().position(|o| o.key == "app");
    let app = assignments()
        .filter_map(|(_, (i, _, v))| match v {
            Parsed::Choice(c) if Some(*i) == app_opt => Some(App::ALL[*c]),
            _ => None,
        })
        .next_back()
        .unwrap_or(App::Chat);
    let mut settings = Settings::defaults(app);
    for (_, (i, _, v)) in assignments() {
        OPTIONS[*i].apply(&mut settings, v.clone());
    }

    // JWT_SECRET is the environment's source of the secret; the file holding it is another.
    let secret_file = OPTIONS.iter().position(|o| o.key == "auth.jwt_secret_file");
    let file_rank = assignments().filter(|(_, (i, ..))| Some(*i) == secret_file).map(|(r, _)| r).next_back();
    if let Some(secret) = non_empty_env(env, JWT_SECRET) {
        match file_rank {
            Some(Layer::Env) => {
                return Err(Error {
                    origin: Origin::Env(env_var("auth.jwt_secret_file")),
                    problem: format!("set only one of it and {JWT_SECRET}"),
                });
            }
            Some(Layer::Flag) => {}
            Some(Layer::File) | None => {
                settings.jwt_secret = Some(Secret::new(secret));
                settings.jwt_secret_file = None;
            }
        }
    }
    Ok(if argv.print { Loaded::Print(settings) } else { Loaded::Run(settings) })
}

/// `--help`, generated from [`OPTIONS`].
pub fn help() -> String {
    let chat = Settings::defaults(App::Chat);
    let echo = Settings::defaults(App::Echo);
    let mut out = String::from(
        "sockeye: a Socket.IO v5 / Engine.IO v4 server, serving a chat service by default

USAGE: sockeye [OPTIONS]
       sockeye token --user NAME [--ttl SECONDS]   print an HS256 token signed with JWT_SECRET

Settings come from, lowest to highest precedence: built-in defaults, the TOML file named by
--config, environment variables, flags. Every option below is a flag, a key of the file and an
environment variable: SOCKEYE_ and the key in upper case, dots as _ (chat.rate_limit is
SOCKEYE_CHAT_RATE_LIMIT). A list is a TOML array, a comma-separated variable or a repeated flag.
sockeye.example.toml lists every key with its default.

  --config FILE               read settings from this TOML file [default: none] (env SOCKEYE_CONFIG)
  --print-config              print the effective settings as TOML and exit
  --print-config --defaults   print the built-in defaults as TOML (sockeye.example.toml) and exit
  -h, --help                  print this help
",
    );
    for (section, title) in SECTIONS {
        let _ = write!(out, "\n{title}:\n");
        for opt in OPTIONS.iter().filter(|o| o.section() == *section) {
            let mut default = opt.default_text(&chat);
            let for_echo = opt.default_text(&echo);
            if for_echo != default && opt.key != "app" {
                default = format!("{default}; echo app: {for_echo}");
            }
            let repeat = if opt.is_list() { " (repeatable)" } else { "" };
            let text = format!("{}{repeat}", opt.help);
            let default = format!("[default: {default}]");
            let (key, env) = (format!("key {},", opt.key), format!("env {}", opt.env_var()));
            let width = HELP_WIDTH - HELP_COLUMN;
            let flag = format!("{} {}", opt.flag, opt.metavar);
            let help = wrap(text.split_whitespace().chain([default.as_str()]), width);
            let mut lines = help.into_iter().chain(wrap([key.as_str(), env.as_str()], width));
            if flag.len() + 3 > HELP_COLUMN {
                let _ = writeln!(out, "  {flag}");
            } else {
                let _ =
                    writeln!(out, "  {flag:<w$}{}", lines.next().unwrap_or_default(), w = HELP_COLUMN - 2);
            }
            for line in lines {
                let _ = writeln!(out, "{:HELP_COLUMN$}{line}", "");
            }
        }
    }
    out.push_str(
        "
ENVIRONMENT:
  JWT_SECRET                  HS256 secret (never printed); when set, every chat connection needs a
                              valid token. A flag or variable naming auth.jwt_secret_file wins over
                              it, and so does auth.jwt_public_key. Empty counts as unset.

Errors in the settings exit with status 2 and name the file and key, the variable or the flag.
On start it prints `sockeye listening on http://HOST:PORT`. SIGINT/SIGTERM close every session
and exit; a second signal exits at once.",
    );
    out
}

const HELP_WIDTH: usize = 100;
const HELP_COLUMN: usize = 30;

/// Join `words` with spaces into lines of at most `width` characters (a longer word stays whole).
fn wrap<'a>(words: impl IntoIterator<Item = &'a str>, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in words {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// The known name closest to `word`, as ` (did you mean `x`?)`, or "".
fn suggest<'a>(word: &str, known: impl IntoIterator<Item = &'a str>) -> String {
    let limit = (word.len() / 3).max(2);
    known
        .into_iter()
        .map(|k| (edit_distance(&word.to_ascii_lowercase(), &k.to_ascii_lowercase()), k))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| format!(" (did you mean `{k}`?)"))
        .unwrap_or_default()
}

/// Levenshtein distance over bytes.
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != cb)).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests;
