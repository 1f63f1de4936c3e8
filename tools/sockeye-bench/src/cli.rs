//! Command line: scenario, flags with per-scenario defaults, and the loopback-only target check.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

pub const USAGE: &str = "\
usage: sockeye-bench <fanout|echo|connect|rooms|polling> --url http://127.0.0.1:PORT
         [--server-pid PID] [--label NAME] [--clients N] [--rate MSGS_PER_S] [--duration SECS]
         [--warmup SECS] [--payload BYTES] [--concurrency C] [--rooms SPEC] [--senders K]
         [--path /socket.io/] [--source-ips N] [--raw]
--raw (fanout only): the target is a plain WebSocket broadcast server (no Engine.IO/Socket.IO);
its WebSocket path is the URL's path (default /).
The target must be on loopback (127.0.0.0/8, localhost or [::1]).
Prints one JSON line on stdout and a summary on stderr; exits 1 when the run failed.";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    Fanout,
    Echo,
    Connect,
    Rooms,
    Polling,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Fanout => "fanout",
            Scenario::Echo => "echo",
            Scenario::Connect => "connect",
            Scenario::Rooms => "rooms",
            Scenario::Polling => "polling",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Args {
    pub scenario: Scenario,
    pub url: String,
    pub target: SocketAddr,
    /// Host header value (`127.0.0.1:3000`).
    pub host: String,
    /// The Engine.IO path (`--path`); with `raw`, the WebSocket request target from the URL.
    pub path: String,
    /// `--raw`: plain WebSocket messages, no Engine.IO / Socket.IO framing (fanout only).
    pub raw: bool,
    pub server_pid: Option<u32>,
    pub label: String,
    pub clients: usize,
    pub rate: f64,
    pub duration: f64,
    pub warmup: f64,
    pub payload: usize,
    pub concurrency: usize,
    /// (number of rooms, members per room), in spec order.
    pub rooms: Vec<(usize, usize)>,
    pub rooms_spec: String,
    pub senders: usize,
    pub source_ips: u32,
}

pub const MAX_CLIENTS: usize = 1_000_000;

/// Flags that take no value.
const SWITCHES: [&str; 1] = ["--raw"];

pub fn parse(argv: &[String]) -> Result<Args, String> {
    let mut it = argv.iter();
    let scenario = match it.next().map(String::as_str) {
        Some("fanout") => Scenario::Fanout,
        Some("echo") => Scenario::Echo,
        Some("connect") => Scenario::Connect,
        Some("rooms") => Scenario::Rooms,
        Some("polling") => Scenario::Polling,
        Some("-h" | "--help") | None => return Err(USAGE.into()),
        Some(other) => return Err(format!("unknown scenario {other:?}\n{USAGE}")),
    };
    let mut flags: Vec<(String, String)> = Vec::new();
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            return Err(USAGE.into());
        }
        let (name, value) = match flag.split_once('=') {
            Some((n, _)) if SWITCHES.contains(&n) => return Err(format!("{n} takes no value")),
            _ if SWITCHES.contains(&flag.as_str()) => (flag.clone(), String::new()),
            Some((n, v)) if n.starts_with("--") => (n.to_string(), v.to_string()),
            _ if flag.starts_with("--") => {
                let v = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
                (flag.clone(), v.clone())
            }
            _ => return Err(format!("unexpected argument {flag:?}\n{USAGE}")),
        };
        if flags.iter().any(|(n, _)| *n == name) {
            return Err(format!("{name} given twice"));
        }
        flags.push((name, value));
    }
    let get = |name: &str| flags.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
    for (n, _) in &flags {
        const KNOWN: [&str; 15] = [
            "--url",
            "--server-pid",
            "--label",
            "--clients",
            "--rate",
            "--duration",
            "--warmup",
            "--payload",
            "--concurrency",
            "--rooms",
            "--senders",
            "--path",
            "--source-ips",
            "--raw",
            "--help",
        ];
        if !KNOWN.contains(&n.as_str()) {
            return Err(format!("unknown flag {n}\n{USAGE}"));
        }
    }

    let url = get("--url").ok_or("--url is required (e.g. --url http://127.0.0.1:3000)")?.to_string();
    let (target, host, url_path) = parse_url(&url)?;
    let raw = get("--raw").is_some();
    if raw && scenario != Scenario::Fanout {
        return Err(format!("--raw is for the fanout scenario only, not {}", scenario.name()));
    }
    if raw && get("--path").is_some() {
        return Err("--path is the Engine.IO path; with --raw give the WebSocket path in --url".into());
    }
    if !raw && !url_path.is_empty() && url_path != "/" {
        return Err(format!("--url {url:?}: give the Socket.IO path with --path, not in the URL"));
    }

    let (d_clients, d_rate, d_duration) = match scenario {
        Scenario::Fanout => (1000, 100.0, 10.0),
        Scenario::Echo => (50, 0.0, 10.0),
        Scenario::Connect => (10_000, 0.0, 2.0),
        Scenario::Rooms => (0, 1000.0, 10.0),
        Scenario::Polling => (200, 20.0, 10.0),
    };
    let rooms_spec = get("--rooms").unwrap_or("10x50,20x10,100x3").to_string();
    let rooms = parse_rooms(&rooms_spec)?;
    let room_members: usize = rooms.iter().map(|(r, m)| r * m).sum();

    let clients = match (scenario, get("--clients")) {
        (Scenario::Rooms, Some(c)) => {
            let c: usize = num(c, "--clients")?;
            if c != room_members {
                return Err(format!(
                    "--clients {c} does not match --rooms {rooms_spec} ({room_members} members); omit --clients"
                ));
            }
            c
        }
        (Scenario::Rooms, None) => room_members,
        (_, Some(c)) => num(c, "--clients")?,
        (_, None) => d_clients,
    };
    let rate = match get("--rate") {
        Some(r) => num::<f64>(r, "--rate")?,
        None => d_rate,
    };
    let duration = match get("--duration") {
        Some(d) => num::<f64>(d, "--duration")?,
        None => d_duration,
    };
    let warmup = match get("--warmup") {
        Some(w) => num::<f64>(w, "--warmup")?,
        None => 2.0,
    };
    let payload = match get("--payload") {
        Some(p) => num(p, "--payload")?,
        None => 64,
    };
    let concurrency = match get("--concurrency") {
        Some(c) => num(c, "--concurrency")?,
        None => 200,
    };
    let senders = match get("--senders") {
        Some(s) => num(s, "--senders")?,
        None => 1,
    };
    let source_ips = match get("--source-ips") {
        Some(s) => num(s, "--source-ips")?,
        None => 1,
    };
    let server_pid = match get("--server-pid") {
        Some(p) => Some(num::<u32>(p, "--server-pid")?),
        None => None,
    };
    let path = if raw {
        if url_path.is_empty() { "/".to_string() } else { url_path }
    } else {
        get("--path").unwrap_or("/socket.io/").to_string()
    };
    if !raw && (!path.starts_with('/') || path.contains(['?', '#', ' ', '\r', '\n'])) {
        return Err(format!("--path {path:?} must be an absolute path without query"));
    }
    let label = get("--label").unwrap_or("unnamed").to_string();

    if clients == 0 || clients > MAX_CLIENTS {
        return Err(format!("--clients must be 1..={MAX_CLIENTS}"));
    }
    if matches!(scenario, Scenario::Fanout | Scenario::Rooms | Scenario::Polling)
        && !(rate > 0.0 && rate <= 1_000_000.0)
    {
        return Err("--rate must be in (0, 1000000]".into());
    }
    if !(duration > 0.0 && duration <= 3600.0) {
        return Err("--duration must be in (0, 3600] seconds".into());
    }
    if !(0.0..=600.0).contains(&warmup) {
        return Err("--warmup must be in [0, 600] seconds".into());
    }
    if payload > 1 << 20 {
        return Err("--payload must be at most 1 MiB".into());
    }
    if concurrency == 0 || concurrency > MAX_CLIENTS {
        return Err("--concurrency must be at least 1".into());
    }
    if source_ips == 0 || source_ips > 65_536 {
        return Err("--source-ips must be 1..=65536".into());
    }
    if scenario == Scenario::Rooms {
        let smallest = rooms.iter().map(|(_, m)| *m).min().unwrap_or(0);
        if senders == 0 || senders > smallest {
            return Err(format!("--senders must be 1..={smallest} (the smallest room)"));
        }
    }
    if let Some(pid) = server_pid
        && !crate::sys::process_exists(pid)
    {
        return Err(format!("--server-pid {pid}: no such process"));
    }

    Ok(Args {
        scenario,
        url,
        target,
        host,
        path,
        raw,
        server_pid,
        label,
        clients,
        rate,
        duration,
        warmup,
        payload,
        concurrency,
        rooms,
        rooms_spec,
        senders,
        source_ips,
    })
}

fn num<T: std::str::FromStr>(v: &str, flag: &str) -> Result<T, String> {
    v.trim().parse().map_err(|_| format!("{flag}: {v:?} is not a valid number"))
}

/// `http://HOST:PORT[/PATH]` with a loopback HOST. Returns the socket address, the Host header
/// and the path with any query (empty when the URL has none); only `--raw` may use a path.
pub fn parse_url(url: &str) -> Result<(SocketAddr, String, String), String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("ws://"))
        .ok_or_else(|| format!("--url {url:?}: only http:// (or ws://) URLs are supported"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    // The path goes verbatim into the request line: nothing that would break it or that a
    // client never sends (a fragment).
    if path.bytes().any(|b| b == b'#' || b <= b' ' || b == 0x7f) {
        return Err(format!("--url {url:?}: the path must not contain spaces, controls or '#'"));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, p) = v6.split_once(']').ok_or_else(|| format!("--url {url:?}: bad IPv6 literal"))?;
        (h, p.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let port: u16 = match port {
        Some(p) => p.parse().map_err(|_| format!("--url {url:?}: bad port {p:?}"))?,
        None => 80,
    };
    let ip: IpAddr = if host.eq_ignore_ascii_case("localhost") {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        host.parse().map_err(|_| {
            format!(
                "--url {url:?}: host {host:?} refused: only loopback addresses (127.0.0.0/8, localhost, ::1)"
            )
        })?
    };
    if !ip.is_loopback() {
        return Err(format!(
            "--url {url:?}: host {ip} refused: the load generator only targets loopback (127.0.0.0/8 or ::1)"
        ));
    }
    let addr = SocketAddr::new(ip, port);
    Ok((addr, addr.to_string(), path.to_string()))
}

/// `10x50,20x10` = 10 rooms of 50 members and 20 rooms of 10.
pub fn parse_rooms(spec: &str) -> Result<Vec<(usize, usize)>, String> {
    let mut out = Vec::new();
    for part in spec.split(',') {
        let (r, m) = part
            .trim()
            .split_once(['x', 'X'])
            .ok_or_else(|| format!("--rooms {spec:?}: expected ROOMSxMEMBERS[,ROOMSxMEMBERS...]"))?;
        let r: usize = num(r, "--rooms")?;
        let m: usize = num(m, "--rooms")?;
        if r == 0 || m == 0 {
            return Err(format!("--rooms {spec:?}: counts must be positive"));
        }
        out.push((r, m));
    }
    let total: usize = out.iter().map(|(r, m)| r.saturating_mul(*m)).sum();
    if total > MAX_CLIENTS {
        return Err(format!("--rooms {spec:?}: {total} members is over {MAX_CLIENTS}"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Result<Args, String> {
        parse(&s.split_whitespace().map(String::from).collect::<Vec<_>>())
    }

    #[test]
    fn loopback_only() {
        assert!(parse_url("http://127.0.0.1:3000").is_ok());
        assert!(parse_url("http://127.9.8.7:3000/").is_ok());
        assert!(parse_url("http://localhost:3000").is_ok());
        assert!(parse_url("http://[::1]:3000").is_ok());
        for bad in
            ["http://10.0.0.1:80", "http://192.168.1.2:3000", "http://example.com:80", "http://[::2]:1"]
        {
            let e = parse_url(bad).unwrap_err();
            assert!(e.contains("refused"), "{bad}: {e}");
        }
        assert!(parse_url("https://127.0.0.1:443").is_err());
    }

    #[test]
    fn defaults_per_scenario() {
        let a = args("fanout --url http://127.0.0.1:1").unwrap();
        assert_eq!((a.clients, a.rate, a.duration, a.warmup, a.payload), (1000, 100.0, 10.0, 2.0, 64));
        let a = args("rooms --url http://127.0.0.1:1").unwrap();
        assert_eq!(a.clients, 10 * 50 + 20 * 10 + 100 * 3);
        assert_eq!(a.rooms, vec![(10, 50), (20, 10), (100, 3)]);
        let a = args("connect --url=http://127.0.0.1:1 --source-ips 4").unwrap();
        assert_eq!((a.clients, a.concurrency, a.source_ips), (10_000, 200, 4));
        assert!(args("polling --url http://127.0.0.1:1 --bogus 1").is_err());
        assert!(args("rooms --url http://127.0.0.1:1 --rooms 2x2 --senders 3").is_err());
        assert!(!a.raw);
    }

    #[test]
    fn raw_takes_its_websocket_path_from_the_url() {
        let a = args("fanout --url http://127.0.0.1:1 --clients 5 --raw").unwrap();
        assert!(a.raw);
        assert_eq!((a.path.as_str(), a.clients), ("/", 5));
        let a = args("fanout --raw --url ws://127.0.0.1:1/").unwrap();
        assert_eq!(a.path, "/");
        let a = args("fanout --raw --url ws://127.0.0.1:1/feed?x=1").unwrap();
        assert_eq!(a.path, "/feed?x=1");
    }

    #[test]
    fn raw_is_a_fanout_switch() {
        assert!(args("echo --url http://127.0.0.1:1 --raw").unwrap_err().contains("fanout"));
        assert!(args("polling --url http://127.0.0.1:1 --raw").is_err());
        assert!(args("fanout --url http://127.0.0.1:1 --raw=1").unwrap_err().contains("no value"));
        assert!(args("fanout --url http://127.0.0.1:1 --raw --raw").unwrap_err().contains("twice"));
        assert!(args("fanout --url http://127.0.0.1:1 --raw --path /x/").is_err());
        // Without --raw a URL path is still refused: the Socket.IO path goes in --path.
        assert!(args("fanout --url http://127.0.0.1:1/feed").unwrap_err().contains("--path"));
        assert!(args("fanout --raw --url http://127.0.0.1:1/a#b").is_err());
    }
}
