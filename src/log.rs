//! Leveled log lines on standard error, human-readable or JSON (one object per line).
//!
//! One process-wide level and format, set once at start ([`init`]); a disabled level costs one
//! relaxed atomic load at the call site, so `debug!` may sit on connection paths. A line is
//! formatted into a thread-local buffer and written with one `write` call, so lines from
//! different threads do not interleave.
//!
//! What is logged: lifecycle (start, listen address, shutdown), errors (storage, accept, a core
//! failing), and at `debug` the connection and socket lifecycle (open, close and its reason,
//! refusals). What is never logged: message bodies, event arguments, tokens, secrets, cookies or
//! query strings; call sites pass only names, counts, addresses, ids and reasons. The
//! [`Value`] type has no constructor from arbitrary `Debug` data, so a payload cannot slip into
//! a line by accident of formatting.
//!
//! Human format: `2026-11-21T10:00:00.123Z INFO  connection closed core=0 reason="ping timeout"`.
//! JSON format: `{"ts":"2026-11-21T10:00:00.123Z","level":"info","msg":"connection closed",
//! "core":0,"reason":"ping timeout"}`.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::atomic::{AtomicU8, Ordering};

/// Severity, most severe first; a line is written when its level is at most the configured one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Level {
    Off = 0,
    Error = 1,
    Warn = 2,
    Info = 3,
    Debug = 4,
}

impl Level {
    /// Every level, in the order of [`LEVEL_NAMES`].
    pub const ALL: [Level; 5] = [Level::Off, Level::Error, Level::Warn, Level::Info, Level::Debug];

    pub fn as_str(self) -> &'static str {
        LEVEL_NAMES[self as usize]
    }
}

/// The names of the levels, as the `log.level` setting takes them.
pub const LEVEL_NAMES: &[&str] = &["off", "error", "warn", "info", "debug"];

/// How lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Human,
    Json,
}

impl Format {
    pub const ALL: [Format; 2] = [Format::Human, Format::Json];

    pub fn as_str(self) -> &'static str {
        FORMAT_NAMES[self as usize]
    }
}

/// The names of the formats, as the `log.format` setting takes them.
pub const FORMAT_NAMES: &[&str] = &["human", "json"];

static LEVEL: AtomicU8 = AtomicU8::new(Level::Info as u8);
static JSON: AtomicU8 = AtomicU8::new(0);

/// Sets the process's level and format. Lines logged before it use `info` and human.
pub fn init(level: Level, format: Format) {
    LEVEL.store(level as u8, Ordering::Relaxed);
    JSON.store(u8::from(format == Format::Json), Ordering::Relaxed);
}

/// Whether lines of `level` are written.
#[inline]
pub fn enabled(level: Level) -> bool {
    level != Level::Off && level as u8 <= LEVEL.load(Ordering::Relaxed)
}

/// A field's value. Only plain data converts into it: strings, numbers, booleans, addresses.
#[derive(Debug, Clone, Copy)]
pub enum Value<'a> {
    Str(&'a str),
    U64(u64),
    I64(i64),
    Bool(bool),
    Addr(&'a std::net::SocketAddr),
    Ip(&'a std::net::IpAddr),
}

impl<'a> From<&'a str> for Value<'a> {
    fn from(v: &'a str) -> Self {
        Value::Str(v)
    }
}

impl<'a> From<&'a String> for Value<'a> {
    fn from(v: &'a String) -> Self {
        Value::Str(v)
    }
}

impl<'a> From<&'a std::net::SocketAddr> for Value<'a> {
    fn from(v: &'a std::net::SocketAddr) -> Self {
        Value::Addr(v)
    }
}

impl<'a> From<&'a std::net::IpAddr> for Value<'a> {
    fn from(v: &'a std::net::IpAddr) -> Self {
        Value::Ip(v)
    }
}

impl From<bool> for Value<'_> {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}

macro_rules! unsigned {
    ($($t:ty),*) => {$(
        impl From<$t> for Value<'_> {
            fn from(v: $t) -> Self {
                Value::U64(v as u64)
            }
        }
    )*};
}
unsigned!(u8, u16, u32, u64, usize);

macro_rules! signed {
    ($($t:ty),*) => {$(
        impl From<$t> for Value<'_> {
            fn from(v: $t) -> Self {
                Value::I64(v as i64)
            }
        }
    )*};
}
signed!(i32, i64);

/// Formats one line (with its newline) into `out`. Sans-IO: the time is passed in.
pub fn format_line(
    out: &mut String,
    json: bool,
    unix_ms: u64,
    level: Level,
    msg: &str,
    fields: &[(&str, Value<'_>)],
) {
    let ts = crate::store::iso8601_utc(unix_ms);
    if json {
        out.push_str("{\"ts\":\"");
        out.push_str(&ts);
        out.push_str("\",\"level\":\"");
        out.push_str(level.as_str());
        out.push_str("\",\"msg\":");
        json_string(out, msg);
        for (k, v) in fields {
            out.push(',');
            json_string(out, k);
            out.push(':');
            match v {
                Value::Str(s) => json_string(out, s),
                Value::U64(n) => {
                    let _ = write!(out, "{n}");
                }
                Value::I64(n) => {
                    let _ = write!(out, "{n}");
                }
                Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
                Value::Addr(a) => json_string(out, &a.to_string()),
                Value::Ip(a) => json_string(out, &a.to_string()),
            }
        }
        out.push_str("}\n");
    } else {
        let _ = write!(out, "{ts} {:<5} ", level.as_str().to_ascii_uppercase());
        human_text(out, msg);
        for (k, v) in fields {
            out.push(' ');
            out.push_str(k);
            out.push('=');
            match v {
                Value::Str(s) => {
                    if !s.is_empty() && s.chars().all(|c| c.is_ascii_graphic() && c != '"' && c != '=') {
                        out.push_str(s);
                    } else {
                        json_string(out, s);
                    }
                }
                Value::U64(n) => {
                    let _ = write!(out, "{n}");
                }
                Value::I64(n) => {
                    let _ = write!(out, "{n}");
                }
                Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
                Value::Addr(a) => {
                    let _ = write!(out, "{a}");
                }
                Value::Ip(a) => {
                    let _ = write!(out, "{a}");
                }
            }
        }
        out.push('\n');
    }
}

/// The message text of a human line, with control characters escaped so one call is one line.
fn human_text(out: &mut String, s: &str) {
    for c in s.chars() {
        if c.is_control() {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        } else {
            out.push(c);
        }
    }
}

/// `s` as a JSON string literal.
fn json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

thread_local! {
    static BUF: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Writes one line if `level` is enabled. Use the macros ([`crate::info!`] and the others).
pub fn write(level: Level, msg: &str, fields: &[(&str, Value<'_>)]) {
    if !enabled(level) {
        return;
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let json = JSON.load(Ordering::Relaxed) == 1;
    BUF.with(|b| {
        let Ok(mut buf) = b.try_borrow_mut() else { return };
        buf.clear();
        format_line(&mut buf, json, now, level, msg, fields);
        // One write per line; a failed write to stderr has nowhere to be reported.
        let _ = std::io::stderr().lock().write_all(buf.as_bytes());
        if buf.capacity() > 64 * 1024 {
            *buf = String::new();
        }
    });
}

/// `log!(Level::Info, "message"; key = value, ...)`: one line, if the level is enabled. The
/// fields are only evaluated when it is.
#[macro_export]
macro_rules! log {
    ($level:expr, $msg:expr $(; $($k:ident = $v:expr),* $(,)?)?) => {
        if $crate::log::enabled($level) {
            $crate::log::write($level, $msg, &[$($((stringify!($k), $crate::log::Value::from($v))),*)?]);
        }
    };
}

/// An error: something failed that an operator must look at.
#[macro_export]
macro_rules! error {
    ($($t:tt)*) => { $crate::log!($crate::log::Level::Error, $($t)*) };
}

/// A warning: a limit or a fault the server survived.
#[macro_export]
macro_rules! warn {
    ($($t:tt)*) => { $crate::log!($crate::log::Level::Warn, $($t)*) };
}

/// Lifecycle: start, listen address, shutdown.
#[macro_export]
macro_rules! info {
    ($($t:tt)*) => { $crate::log!($crate::log::Level::Info, $($t)*) };
}

/// Per-connection and per-socket lifecycle.
#[macro_export]
macro_rules! debug {
    ($($t:tt)*) => { $crate::log!($crate::log::Level::Debug, $($t)*) };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(json: bool, msg: &str, fields: &[(&str, Value<'_>)]) -> String {
        let mut s = String::new();
        format_line(&mut s, json, 1_763_719_200_123, Level::Warn, msg, fields);
        s
    }

    #[test]
    fn json_lines_parse_and_keep_types() {
        let addr: std::net::SocketAddr = "[::1]:8080".parse().unwrap();
        let l = line(
            true,
            "closed \"x\"\n",
            &[
                ("core", Value::from(3usize)),
                ("reason", "ping timeout".into()),
                ("peer", (&addr).into()),
                ("tls", false.into()),
                ("d", Value::from(-2i64)),
            ],
        );
        assert!(l.ends_with("}\n") && l.matches('\n').count() == 1, "{l}");
        let v: serde_json::Value = serde_json::from_str(&l).unwrap();
        assert_eq!(v["level"], "warn");
        assert_eq!(v["ts"], "2025-11-21T10:00:00.123Z");
        assert_eq!(v["msg"], "closed \"x\"\n");
        assert_eq!(v["core"], 3);
        assert_eq!(v["reason"], "ping timeout");
        assert_eq!(v["peer"], "[::1]:8080");
        assert_eq!(v["tls"], false);
        assert_eq!(v["d"], -2);
    }

    #[test]
    fn human_lines_are_one_line_and_quote_when_needed() {
        let l = line(
            false,
            "a\nb",
            &[
                ("core", Value::from(0u32)),
                ("reason", "ping timeout".into()),
                ("ns", "/chat".into()),
                ("e", "".into()),
            ],
        );
        assert_eq!(
            l,
            "2025-11-21T10:00:00.123Z WARN  a\\u{a}b core=0 reason=\"ping timeout\" ns=/chat e=\"\"\n"
        );
        let l = line(false, "x", &[("v", "a\"b\nc".into())]);
        assert_eq!(l.matches('\n').count(), 1, "{l}");
    }

    #[test]
    fn level_gates() {
        // The only test in this binary that sets the global level: restore it after.
        init(Level::Warn, Format::Human);
        assert!(enabled(Level::Error) && enabled(Level::Warn));
        assert!(!enabled(Level::Info) && !enabled(Level::Debug) && !enabled(Level::Off));
        init(Level::Off, Format::Human);
        assert!(!enabled(Level::Error));
        init(Level::Info, Format::Human);
        assert!(enabled(Level::Info) && !enabled(Level::Debug));
        let names: Vec<_> = Level::ALL.iter().map(|l| l.as_str()).collect();
        assert_eq!(names, LEVEL_NAMES);
    }
}
