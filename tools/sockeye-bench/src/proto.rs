//! Engine.IO v4 and Socket.IO v5 packet shapes as far as the bench needs them, the bench
//! sample inside an event or as a bare `--raw` message, the polling payload split and HTTP/1.1
//! response parsing for long-polling. No IO.

/// An Engine.IO packet (Engine.IO v4 protocol, "Packet types").
#[derive(Debug, PartialEq, Eq)]
pub enum EioPacket<'a> {
    /// `0{json}`: session open with sid, pingInterval, pingTimeout, upgrades, maxPayload.
    Open(&'a [u8]),
    /// `1`: the server closes the session.
    Close,
    /// `2`: server heartbeat; the client must answer `3` with the same data.
    Ping(&'a [u8]),
    Pong,
    /// `4...`: a Socket.IO packet.
    Message(&'a [u8]),
    Upgrade,
    Noop,
    /// Binary (`b...` in polling) or unknown types: the bench ignores them.
    Other,
}

pub fn parse_eio(pkt: &[u8]) -> EioPacket<'_> {
    match pkt.first() {
        Some(b'0') => EioPacket::Open(&pkt[1..]),
        Some(b'1') => EioPacket::Close,
        Some(b'2') => EioPacket::Ping(&pkt[1..]),
        Some(b'3') => EioPacket::Pong,
        Some(b'4') => EioPacket::Message(&pkt[1..]),
        Some(b'5') => EioPacket::Upgrade,
        Some(b'6') => EioPacket::Noop,
        _ => EioPacket::Other,
    }
}

/// A Socket.IO packet on the default namespace (Socket.IO v5 protocol, "Packet encoding").
#[derive(Debug, PartialEq, Eq)]
pub enum SioPacket<'a> {
    /// `0{json}`: namespace connect accepted; the json holds the socket sid.
    Connect(&'a [u8]),
    Disconnect,
    /// `2[json]` with an optional ack id the server asks for.
    Event {
        ack: Option<u64>,
        data: &'a [u8],
    },
    /// `3<id>[json]`.
    Ack {
        id: u64,
        data: &'a [u8],
    },
    ConnectError(&'a [u8]),
    /// Another namespace, binary packets, or garbage.
    Other,
}

pub fn parse_sio(msg: &[u8]) -> SioPacket<'_> {
    let Some(&ty) = msg.first() else { return SioPacket::Other };
    let mut rest = &msg[1..];
    // Binary attachments (`<n>-`) are not part of the bench contract.
    if matches!(ty, b'5' | b'6') {
        return SioPacket::Other;
    }
    if rest.first() == Some(&b'/') {
        let Some(comma) = rest.iter().position(|&b| b == b',') else {
            // `4/ns` without a comma: a packet of another namespace with no data.
            return SioPacket::Other;
        };
        if &rest[..comma] != b"/" {
            return SioPacket::Other;
        }
        rest = &rest[comma + 1..];
    }
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let id = if digits > 0 && digits <= 18 {
        std::str::from_utf8(&rest[..digits]).ok().and_then(|s| s.parse::<u64>().ok())
    } else {
        None
    };
    let data = &rest[digits..];
    match ty {
        b'0' => SioPacket::Connect(data),
        b'1' => SioPacket::Disconnect,
        b'2' => SioPacket::Event { ack: id, data },
        b'3' => match id {
            Some(id) => SioPacket::Ack { id, data },
            None => SioPacket::Other,
        },
        b'4' => SioPacket::ConnectError(data),
        _ => SioPacket::Other,
    }
}

/// `"sid"` of an open or connect json object.
pub fn json_sid(json: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(json).ok()?;
    v.get("sid")?.as_str().map(str::to_owned)
}

/// The event name of an event's json array and the rest of the array after it (starting at
/// the comma, or `]`). Fast path for unescaped names; escaped names are not bench events.
pub fn event_name(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let data = trim_start(data);
    let data = data.strip_prefix(b"[")?;
    let data = trim_start(data);
    let data = data.strip_prefix(b"\"")?;
    let end = data.iter().position(|&b| b == b'"' || b == b'\\')?;
    if data[end] != b'"' {
        return None;
    }
    Some((&data[..end], &data[end + 1..]))
}

/// A bench sample `{"s":seq,"t":send_ns,...}` found in the rest of an event array. The fast
/// scan expects the two keys the generator wrote; if a server re-encodes the object in a way
/// the scan does not recognise, full json parsing takes over.
pub fn sample(rest: &[u8]) -> Option<(u64, u64)> {
    if let Some(st) = scan_sample(rest) {
        return Some(st);
    }
    // Slow path: `rest` is `,arg1,...]`; rebuild the array and look for the first object with s,t.
    let mut arr = Vec::with_capacity(rest.len() + 1);
    arr.push(b'[');
    arr.extend_from_slice(trim_start(rest).strip_prefix(b",")?);
    let v: serde_json::Value = serde_json::from_slice(&arr).ok()?;
    v.as_array()?.iter().find_map(value_sample)
}

/// A bench sample that is a whole message, the bare object `{"s":seq,"t":send_ns,...}` of
/// `--raw` mode (no event array around it). Same fast scan, then full json parsing.
pub fn sample_object(obj: &[u8]) -> Option<(u64, u64)> {
    if let Some(st) = scan_sample(obj) {
        return Some(st);
    }
    value_sample(&serde_json::from_slice(obj).ok()?)
}

fn scan_sample(hay: &[u8]) -> Option<(u64, u64)> {
    Some((scan_number(hay, b"\"s\"")?, scan_number(hay, b"\"t\"")?))
}

fn value_sample(v: &serde_json::Value) -> Option<(u64, u64)> {
    Some((v.get("s")?.as_u64()?, v.get("t")?.as_u64()?))
}

fn scan_number(hay: &[u8], key: &[u8]) -> Option<u64> {
    let at = find(hay, key)?;
    let after = trim_start(&hay[at + key.len()..]);
    let after = trim_start(after.strip_prefix(b":")?);
    let digits = after.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 19 {
        return None;
    }
    // A float or exponent means the fast scan must not guess.
    if matches!(after.get(digits), Some(b'.' | b'e' | b'E')) {
        return None;
    }
    std::str::from_utf8(&after[..digits]).ok()?.parse().ok()
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

fn trim_start(b: &[u8]) -> &[u8] {
    let n = b.iter().take_while(|c| c.is_ascii_whitespace()).count();
    &b[n..]
}

/// Polling payloads carry several packets separated by the record separator 0x1e
/// (Engine.IO v4, "Payload").
pub fn split_payload(body: &[u8]) -> impl Iterator<Item = &[u8]> {
    body.split(|&b| b == 0x1e).filter(|p| !p.is_empty())
}

/// A complete HTTP/1.1 response.
#[derive(Debug, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub body: Vec<u8>,
    /// Bytes of the input the response used.
    pub consumed: usize,
    /// The server will close the connection after this response.
    pub close: bool,
}

/// Largest polling response body the bench accepts.
pub const MAX_HTTP_BODY: usize = 16 << 20;

/// Parses one response at the start of `buf`; `Ok(None)` until it is complete. Supports
/// Content-Length and chunked bodies; a response with neither is treated as empty unless the
/// server closes (then we never see the end: reject it as unsupported).
pub fn parse_http_response(buf: &[u8]) -> Result<Option<HttpResponse>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    let head_len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            if buf.len() > 64 * 1024 {
                return Err("HTTP response head larger than 64 KiB".into());
            }
            return Ok(None);
        }
        Err(e) => return Err(format!("malformed HTTP response: {e}")),
    };
    let status = resp.code.unwrap_or(0);
    let mut content_length = None;
    let mut chunked = false;
    let mut close = resp.version == Some(0);
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let v = std::str::from_utf8(h.value).map_err(|_| "bad Content-Length")?;
            let n: usize = v.trim().parse().map_err(|_| format!("bad Content-Length {v:?}"))?;
            if n > MAX_HTTP_BODY {
                return Err(format!("HTTP body of {n} bytes is over the limit"));
            }
            content_length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = h.value.to_ascii_lowercase().windows(7).any(|w| w == b"chunked");
        } else if h.name.eq_ignore_ascii_case("connection") {
            let v = h.value.to_ascii_lowercase();
            if find(&v, b"close").is_some() {
                close = true;
            } else if find(&v, b"keep-alive").is_some() {
                close = false;
            }
        }
    }
    let rest = &buf[head_len..];
    if chunked {
        return Ok(decode_chunked(rest)?.map(|(body, used)| HttpResponse {
            status,
            body,
            consumed: head_len + used,
            close,
        }));
    }
    let len = match content_length {
        Some(n) => n,
        None if status == 204 || status == 304 || status == 101 => 0,
        None => return Err(format!("HTTP {status} response without Content-Length or chunked body")),
    };
    if rest.len() < len {
        return Ok(None);
    }
    Ok(Some(HttpResponse { status, body: rest[..len].to_vec(), consumed: head_len + len, close }))
}

fn decode_chunked(mut buf: &[u8]) -> Result<Option<(Vec<u8>, usize)>, String> {
    let start_len = buf.len();
    let mut body = Vec::new();
    loop {
        let Some(line_end) = find(buf, b"\r\n") else { return Ok(None) };
        let line = std::str::from_utf8(&buf[..line_end]).map_err(|_| "bad chunk size")?;
        let size_hex = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_hex, 16).map_err(|_| format!("bad chunk size {line:?}"))?;
        if body.len() + size > MAX_HTTP_BODY {
            return Err("chunked body over the limit".into());
        }
        buf = &buf[line_end + 2..];
        if size == 0 {
            // Trailers (none expected) end with an empty line.
            let Some(end) = find(buf, b"\r\n") else { return Ok(None) };
            if end != 0 {
                // Skip trailer lines until the blank one.
                let Some(t) = find(buf, b"\r\n\r\n") else { return Ok(None) };
                buf = &buf[t + 4..];
            } else {
                buf = &buf[2..];
            }
            return Ok(Some((body, start_len - buf.len())));
        }
        if buf.len() < size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&buf[..size]);
        buf = &buf[size + 2..];
    }
}

/// A complete WebSocket upgrade response: status, `Sec-WebSocket-Accept` and head length.
#[derive(Debug, PartialEq, Eq)]
pub struct UpgradeResponse {
    pub status: u16,
    pub accept: Option<String>,
    pub consumed: usize,
}

pub fn parse_upgrade_response(buf: &[u8]) -> Result<Option<UpgradeResponse>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => {
            let accept = resp
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("sec-websocket-accept"))
                .and_then(|h| std::str::from_utf8(h.value).ok())
                .map(|v| v.trim().to_string());
            Ok(Some(UpgradeResponse { status: resp.code.unwrap_or(0), accept, consumed: n }))
        }
        Ok(httparse::Status::Partial) if buf.len() > 64 * 1024 => {
            Err("upgrade response head over 64 KiB".into())
        }
        Ok(httparse::Status::Partial) => Ok(None),
        Err(e) => Err(format!("malformed upgrade response: {e}")),
    }
}

/// Percent-encodes a query value (sids are url-safe in practice; this keeps odd ones valid).
pub fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eio_packet_types() {
        assert_eq!(parse_eio(b"2"), EioPacket::Ping(b""));
        assert_eq!(parse_eio(b"2probe"), EioPacket::Ping(b"probe"));
        assert_eq!(parse_eio(b"0{\"sid\":\"a\"}"), EioPacket::Open(b"{\"sid\":\"a\"}"));
        assert_eq!(parse_eio(b"40"), EioPacket::Message(b"0"));
        assert_eq!(parse_eio(b"6"), EioPacket::Noop);
        assert_eq!(parse_eio(b"bAQI="), EioPacket::Other);
    }

    #[test]
    fn sio_packet_types() {
        assert_eq!(parse_sio(b"0{\"sid\":\"x\"}"), SioPacket::Connect(b"{\"sid\":\"x\"}"));
        assert_eq!(parse_sio(b"2[\"bench\",1]"), SioPacket::Event { ack: None, data: b"[\"bench\",1]" });
        assert_eq!(parse_sio(b"212[\"echo\"]"), SioPacket::Event { ack: Some(12), data: b"[\"echo\"]" });
        assert_eq!(parse_sio(b"37[\"x\"]"), SioPacket::Ack { id: 7, data: b"[\"x\"]" });
        assert_eq!(parse_sio(b"2/,[\"a\"]"), SioPacket::Event { ack: None, data: b"[\"a\"]" });
        assert_eq!(parse_sio(b"2/admin,[\"a\"]"), SioPacket::Other);
        assert_eq!(parse_sio(b"51-[\"a\",{}]"), SioPacket::Other);
        assert_eq!(parse_sio(b"4{\"message\":\"no\"}"), SioPacket::ConnectError(b"{\"message\":\"no\"}"));
    }

    #[test]
    fn bench_sample_fast_and_slow_paths() {
        let data = br#"["bench",{"s":42,"t":123456789,"p":"xxxx"}]"#;
        let (name, rest) = event_name(data).unwrap();
        assert_eq!(name, b"bench");
        assert_eq!(sample(rest), Some((42, 123456789)));
        // Re-encoded with spaces and another key order still parses.
        let data = br#"[ "bench-room" , { "p" : "x", "t" : 9, "s" : 3 } ]"#;
        let (name, rest) = event_name(data).unwrap();
        assert_eq!(name, b"bench-room");
        assert_eq!(sample(rest), Some((3, 9)));
        // Float encoding falls back to json.
        let data = br#"["bench",{"s":1,"t":2.0e3}]"#;
        let (_, rest) = event_name(data).unwrap();
        assert_eq!(sample(rest), None);
    }

    #[test]
    fn raw_sample_is_the_bare_object() {
        assert_eq!(sample_object(br#"{"s":7,"t":99,"p":"xx"}"#), Some((7, 99)));
        // Another key order and spacing: still the fast scan.
        assert_eq!(sample_object(br#"{ "t" : 5, "s" : 6 }"#), Some((6, 5)));
        // A float is left to the json fallback, which refuses a non-integer time.
        assert_eq!(sample_object(br#"{"s":1,"t":2.5}"#), None);
        assert_eq!(sample_object(br#"{"s":1}"#), None);
        assert_eq!(sample_object(b"not json"), None);
    }

    #[test]
    fn polling_payload_split() {
        let parts: Vec<&[u8]> = split_payload(b"2\x1e42[\"a\"]\x1e6").collect();
        assert_eq!(parts, vec![&b"2"[..], &b"42[\"a\"]"[..], &b"6"[..]]);
    }

    #[test]
    fn http_content_length_and_partial() {
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        for cut in 0..r.len() {
            assert_eq!(parse_http_response(&r[..cut]), Ok(None));
        }
        let resp = parse_http_response(r).unwrap().unwrap();
        assert_eq!(
            (resp.status, resp.body.as_slice(), resp.consumed, resp.close),
            (200, &b"ok"[..], r.len(), false)
        );
    }

    #[test]
    fn http_chunked() {
        let r = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n2\r\n40\r\n1\r\n6\r\n0\r\n\r\nX";
        let resp = parse_http_response(r).unwrap().unwrap();
        assert_eq!(resp.body, b"406");
        assert_eq!(resp.consumed, r.len() - 1);
        assert!(resp.close);
        assert_eq!(parse_http_response(&r[..r.len() - 3]), Ok(None));
    }
}
