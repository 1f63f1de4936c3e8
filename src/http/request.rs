//! HTTP/1.1 request parsing on top of `httparse`.
//!
//! [`parse_request`] takes the bytes received so far on a connection and either returns one
//! complete [`Request`] with the number of bytes it used, asks for more bytes
//! ([`Parse::Partial`]), or rejects the request with an [`HttpError`] that maps to a status code.
//! The caller keeps the unconsumed tail, which may already hold the next pipelined request.
//!
//! What it does not do: no IO, no clock, no routing, no percent-decoding of the path, and no
//! chunked request bodies. Every Engine.IO / Socket.IO client (browser `XMLHttpRequest` and
//! `fetch`, `socket.io-client` for Node, `python-socketio`) sends its long-polling POST with a
//! `Content-Length`, so `Transfer-Encoding` is refused with 501 instead of being half-supported.
//!
//! Bounds: the request head is limited to [`Limits::max_header_bytes`] and
//! [`Limits::max_headers`]; the body to [`Limits::max_body_bytes`], checked against the announced
//! `Content-Length` before any body byte arrives, so nothing is allocated for a claimed size.

use std::borrow::Cow;
use std::fmt;

/// Bounds applied to every request. Exceeding one is an [`HttpError`], never a panic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest request head (request line plus headers plus the blank line). Larger: 431.
    pub max_header_bytes: usize,
    /// Most header fields in one request. More: 431.
    pub max_headers: usize,
    /// Largest body; the caller sets it to Engine.IO's `maxPayload`. Larger: 413.
    pub max_body_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_header_bytes: 8192, max_headers: 64, max_body_bytes: 1_000_000 }
    }
}

/// The request methods the server distinguishes; everything else is `Other` (answered 405).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Options,
    Other,
}

impl Method {
    fn from_token(token: &str) -> Method {
        // Method names are case-sensitive (RFC 9110 section 9.1).
        match token {
            "GET" => Method::Get,
            "POST" => Method::Post,
            "OPTIONS" => Method::Options,
            _ => Method::Other,
        }
    }
}

/// One complete, owned HTTP request (it may be handed to another core).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    /// The path of the request target, without the query; not percent-decoded.
    pub path: String,
    /// The raw query string without the leading `?`; empty when there is none.
    pub query: String,
    /// Header fields in arrival order: names lower-cased, values decoded as lossy UTF-8 and
    /// trimmed.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Whether the connection stays open after the response: HTTP/1.1 unless
    /// `Connection: close`, HTTP/1.0 only with `Connection: keep-alive`.
    pub keep_alive: bool,
}

impl Request {
    /// The first value of a header; `name_lowercase` must be lower case.
    pub fn header(&self, name_lowercase: &str) -> Option<&str> {
        debug_assert!(!name_lowercase.bytes().any(|b| b.is_ascii_uppercase()));
        self.headers.iter().find(|(n, _)| n == name_lowercase).map(|(_, v)| v.as_str())
    }

    /// Whether any header named `name_lowercase` lists `token` in its comma-separated value
    /// (ASCII case-insensitive), as for `Connection: keep-alive, Upgrade`.
    pub fn header_has_token(&self, name_lowercase: &str, token: &str) -> bool {
        self.headers.iter().filter(|(n, _)| n == name_lowercase).any(|(_, v)| has_token(v, token))
    }

    /// The first query parameter called `name`, percent-decoded with `+` as a space.
    pub fn query_param(&self, name: &str) -> Option<Cow<'_, str>> {
        self.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    /// All query parameters in order, percent-decoded with `+` as a space. Empty segments
    /// (`a=1&&b=2`) are skipped; a segment without `=` has an empty value.
    pub fn query_pairs(&self) -> impl Iterator<Item = (Cow<'_, str>, Cow<'_, str>)> {
        self.query.split('&').filter(|s| !s.is_empty()).map(|segment| {
            let (k, v) = segment.split_once('=').unwrap_or((segment, ""));
            (form_decode(k), form_decode(v))
        })
    }

    /// Whether this is a WebSocket opening handshake (RFC 6455 section 4.2.1): a GET with
    /// `Upgrade: websocket` and `Connection` listing `upgrade`. The key and version are checked
    /// by [`crate::http::websocket::write_handshake_response`].
    pub fn is_websocket_upgrade(&self) -> bool {
        self.method == Method::Get
            && self.header_has_token("upgrade", "websocket")
            && self.header_has_token("connection", "upgrade")
    }
}

fn has_token(value: &str, token: &str) -> bool {
    value.split(',').any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Decodes `application/x-www-form-urlencoded` text: `+` is a space, `%XX` a byte. Malformed
/// escapes are kept literally (as `URLSearchParams` does) and invalid UTF-8 becomes U+FFFD.
/// Borrows when there is nothing to decode.
pub fn form_decode(s: &str) -> Cow<'_, str> {
    if !s.bytes().any(|b| b == b'%' || b == b'+') {
        return Cow::Borrowed(s);
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => match (bytes.get(i + 1).and_then(hex), bytes.get(i + 2).and_then(hex)) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 3;
                }
                _ => {
                    out.push(b'%');
                    i += 1;
                }
            },
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    match String::from_utf8(out) {
        Ok(s) => Cow::Owned(s),
        Err(e) => Cow::Owned(String::from_utf8_lossy(e.as_bytes()).into_owned()),
    }
}

fn hex(b: &u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The outcome of [`parse_request`] on the bytes received so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parse {
    /// One request and the bytes it used, head and body. Bytes after it belong to the next
    /// (pipelined) request.
    Complete(Request, usize),
    /// The head or the body is not complete yet; call again with more bytes.
    Partial,
    /// The head is complete and valid, but its `Content-Length` exceeds
    /// [`Limits::max_body_bytes`]. The request comes without its body, so the caller can tell
    /// which session it was for; the answer is 413 and the connection closes (the body that
    /// follows is never read).
    Oversized(Request),
}

/// Why a request was rejected. All of these are the peer's fault; the caller answers with
/// [`HttpError::status`] and closes the connection, since the framing can no longer be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpError {
    /// The head is longer than [`Limits::max_header_bytes`] (431).
    HeaderTooLarge,
    /// More header fields than [`Limits::max_headers`] (431).
    TooManyHeaders,
    /// The head is not valid HTTP/1.x; the text says which part (400).
    Malformed(&'static str),
    /// A POST without `Content-Length` (411).
    LengthRequired,
    /// A `Transfer-Encoding` header, chunked or other (501).
    UnsupportedTransferEncoding,
    /// `Content-Length` repeated, not a decimal number, or beyond `u64` (400).
    BadContentLength,
}

impl HttpError {
    /// The response status for this error.
    pub fn status(&self) -> u16 {
        match self {
            HttpError::HeaderTooLarge | HttpError::TooManyHeaders => 431,
            HttpError::Malformed(_) | HttpError::BadContentLength => 400,
            HttpError::LengthRequired => 411,
            HttpError::UnsupportedTransferEncoding => 501,
        }
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::HeaderTooLarge => f.write_str("request head too large"),
            HttpError::TooManyHeaders => f.write_str("too many header fields"),
            HttpError::Malformed(what) => write!(f, "malformed request: {what}"),
            HttpError::LengthRequired => f.write_str("POST without Content-Length"),
            HttpError::UnsupportedTransferEncoding => {
                f.write_str("Transfer-Encoding is not supported; send Content-Length")
            }
            HttpError::BadContentLength => f.write_str("invalid or repeated Content-Length"),
        }
    }
}

impl std::error::Error for HttpError {}

/// Header slots kept on the stack; a larger `max_headers` falls back to the heap.
const STACK_HEADERS: usize = 64;

/// Parses one request from the front of `buf`.
///
/// Returns [`Parse::Partial`] while the head or body is incomplete, and an error as soon as a
/// limit is known to be exceeded: an incomplete head longer than `max_header_bytes`, or a
/// `Content-Length` above `max_body_bytes` (before the body arrives). Splitting the same bytes
/// anywhere gives `Partial` for every prefix and then the same final result.
pub fn parse_request(buf: &[u8], limits: &Limits) -> Result<Parse, HttpError> {
    let mut stack = [httparse::EMPTY_HEADER; STACK_HEADERS];
    let mut heap;
    let slots: &mut [httparse::Header<'_>] = if limits.max_headers <= STACK_HEADERS {
        &mut stack[..limits.max_headers]
    } else {
        heap = vec![httparse::EMPTY_HEADER; limits.max_headers];
        &mut heap
    };
    let mut parsed = httparse::Request::new(slots);
    // Only the first max_header_bytes are offered to httparse, so the outcome for a head that
    // is too long does not depend on how its bytes were split into reads.
    let window = &buf[..buf.len().min(limits.max_header_bytes)];
    let head_len = match parsed.parse(window) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > limits.max_header_bytes => {
            return Err(HttpError::HeaderTooLarge);
        }
        Ok(httparse::Status::Partial) => return Ok(Parse::Partial),
        Err(e) => return Err(map_httparse_error(e)),
    };

    // httparse only returns Complete with all three set.
    let (Some(method), Some(target), Some(version)) = (parsed.method, parsed.path, parsed.version) else {
        return Err(HttpError::Malformed("incomplete request line"));
    };
    let method = Method::from_token(method);
    let (path, query) = split_target(target);

    let mut headers = Vec::with_capacity(parsed.headers.len());
    let mut content_length: Option<u64> = None;
    let mut transfer_encoding = false;
    for h in parsed.headers.iter() {
        let name = h.name.to_ascii_lowercase();
        let value = String::from_utf8_lossy(h.value).trim().to_owned();
        match name.as_str() {
            "content-length" => {
                // A repeated Content-Length, even with the same value, is refused: two
                // parsers disagreeing about framing is how request smuggling starts.
                if content_length.is_some() {
                    return Err(HttpError::BadContentLength);
                }
                content_length = Some(parse_content_length(&value)?);
            }
            "transfer-encoding" => transfer_encoding = true,
            _ => {}
        }
        headers.push((name, value));
    }
    if transfer_encoding {
        return Err(HttpError::UnsupportedTransferEncoding);
    }

    let body_len = match content_length {
        Some(n) => n,
        None if method == Method::Post => return Err(HttpError::LengthRequired),
        None => 0,
    };
    let connection_has = |token: &str| headers.iter().any(|(n, v)| n == "connection" && has_token(v, token));
    let keep_alive = if version >= 1 { !connection_has("close") } else { connection_has("keep-alive") };
    let mut request = Request {
        method,
        path: path.to_owned(),
        query: query.to_owned(),
        body: Vec::new(),
        headers,
        keep_alive,
    };

    // `head_len + body_len` cannot overflow below the limit: both are at most a few MB.
    let total = match usize::try_from(body_len) {
        Ok(n) if body_len <= limits.max_body_bytes as u64 => head_len + n,
        _ => return Ok(Parse::Oversized(request)),
    };
    if buf.len() < total {
        return Ok(Parse::Partial);
    }
    request.body = buf[head_len..total].to_vec();
    Ok(Parse::Complete(request, total))
}

fn map_httparse_error(e: httparse::Error) -> HttpError {
    match e {
        httparse::Error::TooManyHeaders => HttpError::TooManyHeaders,
        httparse::Error::HeaderName => HttpError::Malformed("invalid header name"),
        httparse::Error::HeaderValue => HttpError::Malformed("invalid header value"),
        httparse::Error::NewLine => HttpError::Malformed("invalid line ending"),
        httparse::Error::Status => HttpError::Malformed("invalid status"),
        httparse::Error::Token => HttpError::Malformed("invalid token in request line"),
        httparse::Error::Version => HttpError::Malformed("unsupported HTTP version"),
    }
}

/// Splits a request target into path and query. Handles origin-form (`/a?b`) and, for
/// completeness, absolute-form (`http://host/a?b`, RFC 9112 section 3.2.2).
fn split_target(target: &str) -> (&str, &str) {
    let mut rest = target;
    for scheme in ["http://", "https://"] {
        // `get` rather than indexing: the target may hold non-ASCII UTF-8, and a cut inside a
        // character must not panic.
        let matches_scheme = rest.get(..scheme.len()).is_some_and(|s| s.eq_ignore_ascii_case(scheme));
        if matches_scheme {
            let after = &rest[scheme.len()..];
            rest = match after.find(['/', '?']) {
                Some(i) => &after[i..],
                None => "/",
            };
            break;
        }
    }
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    // A query-only absolute target (`http://h?x`) has an empty path; the path is then "/".
    (if path.is_empty() { "/" } else { path }, query)
}

fn parse_content_length(value: &str) -> Result<u64, HttpError> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(HttpError::BadContentLength);
    }
    value.parse::<u64>().map_err(|_| HttpError::BadContentLength)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn limits() -> Limits {
        Limits::default()
    }

    fn complete(buf: &[u8]) -> (Request, usize) {
        match parse_request(buf, &limits()) {
            Ok(Parse::Complete(r, n)) => (r, n),
            other => panic!("expected Complete, got {other:?}"),
        }
    }

    const POLL_GET: &[u8] = b"GET /socket.io/?EIO=4&transport=polling&t=N8hyd6w HTTP/1.1\r\n\
Host: localhost:3000\r\nAccept: */*\r\nConnection: keep-alive\r\n\r\n";
    const POLL_POST: &[u8] = b"POST /socket.io/?EIO=4&transport=polling&sid=abc HTTP/1.1\r\n\
Host: localhost\r\nContent-Type: text/plain;charset=UTF-8\r\nContent-Length: 6\r\n\r\n40{\"a\"";

    #[test]
    fn polling_get_parses_path_query_and_headers() {
        let (req, n) = complete(POLL_GET);
        assert_eq!(n, POLL_GET.len());
        assert_eq!(req.method, Method::Get);
        assert_eq!(req.path, "/socket.io/");
        assert_eq!(req.query, "EIO=4&transport=polling&t=N8hyd6w");
        assert_eq!(req.header("host"), Some("localhost:3000"));
        assert_eq!(req.header("accept"), Some("*/*"));
        assert!(req.keep_alive);
        assert!(req.body.is_empty());
    }

    #[test]
    fn query_params_are_decoded() {
        let (req, _) = complete(POLL_GET);
        assert_eq!(req.query_param("EIO").as_deref(), Some("4"));
        assert_eq!(req.query_param("transport").as_deref(), Some("polling"));
        assert_eq!(req.query_param("t").as_deref(), Some("N8hyd6w"));
        assert_eq!(req.query_param("sid"), None);

        let req = Request {
            query: "path=%2Fchat%2Froom&name=a+b&x=%zz&empty=&flag&&dup=1&dup=2&%C3%A9=%FF".into(),
            ..req
        };
        assert_eq!(req.query_param("path").as_deref(), Some("/chat/room"));
        assert_eq!(req.query_param("name").as_deref(), Some("a b"));
        assert_eq!(req.query_param("x").as_deref(), Some("%zz"));
        assert_eq!(req.query_param("empty").as_deref(), Some(""));
        assert_eq!(req.query_param("flag").as_deref(), Some(""));
        assert_eq!(req.query_param("dup").as_deref(), Some("1"));
        assert_eq!(req.query_param("é").as_deref(), Some("\u{FFFD}"));
        let pairs: Vec<(String, String)> =
            req.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
        assert_eq!(pairs.len(), 8);
        assert_eq!(pairs[4], ("flag".to_owned(), String::new()));
    }

    #[test]
    fn undecoded_query_values_are_borrowed() {
        let (req, _) = complete(POLL_GET);
        assert!(matches!(req.query_param("transport"), Some(Cow::Borrowed(_))));
    }

    #[test]
    fn post_body_is_read_by_content_length() {
        let (req, n) = complete(POLL_POST);
        assert_eq!(n, POLL_POST.len());
        assert_eq!(req.method, Method::Post);
        assert_eq!(req.body, b"40{\"a\"");
        assert_eq!(req.header("content-type"), Some("text/plain;charset=UTF-8"));
    }

    #[test]
    fn every_split_gives_partial_then_the_same_request() {
        for whole in [POLL_GET, POLL_POST] {
            let expected = complete(whole);
            for cut in 0..whole.len() {
                assert_eq!(
                    parse_request(&whole[..cut], &limits()),
                    Ok(Parse::Partial),
                    "prefix of {cut} bytes"
                );
            }
            assert_eq!(complete(whole), expected);
        }
    }

    #[test]
    fn pipelined_requests_parse_one_after_another() {
        let mut buf = Vec::new();
        buf.extend_from_slice(POLL_POST);
        buf.extend_from_slice(POLL_GET);
        buf.extend_from_slice(POLL_POST);
        let (first, n1) = complete(&buf);
        assert_eq!(first.method, Method::Post);
        let (second, n2) = complete(&buf[n1..]);
        assert_eq!(second.method, Method::Get);
        let (third, n3) = complete(&buf[n1 + n2..]);
        assert_eq!(third.body, b"40{\"a\"");
        assert_eq!(n1 + n2 + n3, buf.len());
    }

    #[test]
    fn keep_alive_follows_version_and_connection_header() {
        let cases: &[(&[u8], bool)] = &[
            (b"GET / HTTP/1.1\r\n\r\n", true),
            (b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", false),
            (b"GET / HTTP/1.1\r\nConnection: Upgrade, Close\r\n\r\n", false),
            (b"GET / HTTP/1.0\r\n\r\n", false),
            (b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", true),
        ];
        for (raw, keep_alive) in cases {
            assert_eq!(complete(raw).0.keep_alive, *keep_alive, "{}", String::from_utf8_lossy(raw));
        }
    }

    #[test]
    fn methods_and_targets_are_classified() {
        let cases: &[(&[u8], Method, &str, &str)] = &[
            (b"OPTIONS /socket.io/?EIO=4 HTTP/1.1\r\n\r\n", Method::Options, "/socket.io/", "EIO=4"),
            (b"DELETE /x HTTP/1.1\r\n\r\n", Method::Other, "/x", ""),
            (b"get / HTTP/1.1\r\n\r\n", Method::Other, "/", ""),
            (b"GET http://example.com:80/a/b?c=d HTTP/1.1\r\n\r\n", Method::Get, "/a/b", "c=d"),
            (b"GET http://example.com HTTP/1.1\r\n\r\n", Method::Get, "/", ""),
            (b"GET /a%2Fb? HTTP/1.1\r\n\r\n", Method::Get, "/a%2Fb", ""),
            ("GET /h\u{e9}llo?q=\u{e9} HTTP/1.1\r\n\r\n".as_bytes(), Method::Get, "/h\u{e9}llo", "q=\u{e9}"),
            ("GET abcdef\u{e9}x HTTP/1.1\r\n\r\n".as_bytes(), Method::Get, "abcdef\u{e9}x", ""),
        ];
        for (raw, method, path, query) in cases {
            let (req, _) = complete(raw);
            assert_eq!((req.method, req.path.as_str(), req.query.as_str()), (*method, *path, *query));
        }
    }

    #[test]
    fn header_names_are_lowercased_and_values_trimmed_lossily() {
        let (req, _) = complete(b"GET / HTTP/1.1\r\nX-Thing:   a b  \r\nX-Bin: \xff\r\n\r\n");
        assert_eq!(req.headers[0], ("x-thing".to_owned(), "a b".to_owned()));
        assert_eq!(req.header("x-bin"), Some("\u{FFFD}"));
    }

    #[test]
    fn websocket_upgrade_is_recognised() {
        let (req, _) = complete(
            b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nUpgrade: WebSocket\r\n\
Connection: keep-alive, Upgrade\r\n\r\n",
        );
        assert!(req.is_websocket_upgrade());
        let (req, _) = complete(b"GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n");
        assert!(!req.is_websocket_upgrade());
        let (req, _) = complete(
            b"POST / HTTP/1.1\r\nContent-Length: 0\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
        );
        assert!(!req.is_websocket_upgrade());
    }

    #[test]
    fn every_error_maps_to_its_status() {
        let small = Limits { max_header_bytes: 64, max_headers: 2, max_body_bytes: 10 };
        let long_header = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(100));
        let cases: Vec<(Vec<u8>, HttpError, u16)> = vec![
            (long_header.clone().into_bytes(), HttpError::HeaderTooLarge, 431),
            (long_header.as_bytes()[..80].to_vec(), HttpError::HeaderTooLarge, 431),
            (b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n".to_vec(), HttpError::TooManyHeaders, 431),
            (b"GET / HTTP/2.0\r\n\r\n".to_vec(), HttpError::Malformed("unsupported HTTP version"), 400),
            (
                b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n".to_vec(),
                HttpError::Malformed("invalid header name"),
                400,
            ),
            (
                b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n".to_vec(),
                HttpError::BadContentLength,
                400,
            ),
            (b"POST / HTTP/1.1\r\n\r\n".to_vec(), HttpError::LengthRequired, 411),
            (
                b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(),
                HttpError::UnsupportedTransferEncoding,
                501,
            ),
            (
                b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx".to_vec(),
                HttpError::BadContentLength,
                400,
            ),
            (b"POST / HTTP/1.1\r\nContent-Length: +1\r\n\r\nx".to_vec(), HttpError::BadContentLength, 400),
            (b"POST / HTTP/1.1\r\nContent-Length: 1,1\r\n\r\nx".to_vec(), HttpError::BadContentLength, 400),
            (b"POST / HTTP/1.1\r\nContent-Length:\r\n\r\n".to_vec(), HttpError::BadContentLength, 400),
        ];
        for (raw, error, status) in cases {
            let got = parse_request(&raw, &small);
            assert_eq!(got, Err(error), "{}", String::from_utf8_lossy(&raw));
            assert_eq!(error.status(), status);
            assert!(!error.to_string().is_empty());
        }
    }

    #[test]
    fn conflicting_content_length_and_transfer_encoding_is_refused() {
        let raw = b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\nabc";
        assert_eq!(parse_request(raw, &limits()), Err(HttpError::UnsupportedTransferEncoding));
    }

    #[test]
    fn oversized_body_is_refused_before_it_arrives() {
        let raw = b"POST /socket.io/?sid=abc HTTP/1.1\r\nContent-Length: 1000001\r\n\r\n";
        let Ok(Parse::Oversized(req)) = parse_request(raw, &limits()) else { panic!("not oversized") };
        // The head comes back so the caller knows the session; the body is never buffered.
        assert_eq!(req.query_param("sid").as_deref(), Some("abc"));
        assert!(req.body.is_empty());
        let huge = b"POST / HTTP/1.1\r\nContent-Length: 18446744073709551615\r\n\r\n";
        assert!(matches!(parse_request(huge, &limits()), Ok(Parse::Oversized(_))));
        let small = Limits { max_body_bytes: 10, ..Limits::default() };
        let just_over = b"POST / HTTP/1.1\r\nContent-Length: 11\r\n\r\n";
        assert!(matches!(parse_request(just_over, &small), Ok(Parse::Oversized(_))));
    }

    #[test]
    fn body_at_the_limit_is_accepted() {
        let small = Limits { max_body_bytes: 3, ..Limits::default() };
        let raw = b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc";
        assert!(matches!(parse_request(raw, &small), Ok(Parse::Complete(_, 41))));
    }

    #[test]
    fn get_with_a_body_consumes_it() {
        let raw = b"GET / HTTP/1.1\r\nContent-Length: 2\r\n\r\nhiGET";
        let (req, n) = complete(raw);
        assert_eq!(req.body, b"hi");
        assert_eq!(&raw[n..], b"GET");
    }

    #[test]
    fn head_at_the_size_limit_is_accepted() {
        let head = b"GET / HTTP/1.1\r\n\r\n";
        let exact = Limits { max_header_bytes: head.len(), ..Limits::default() };
        assert!(matches!(parse_request(head, &exact), Ok(Parse::Complete(_, 18))));
        let short = Limits { max_header_bytes: head.len() - 1, ..Limits::default() };
        assert_eq!(parse_request(head, &short), Err(HttpError::HeaderTooLarge));
    }

    #[test]
    fn more_headers_than_the_stack_holds_use_the_heap() {
        let many = Limits { max_headers: 100, ..Limits::default() };
        let mut raw = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..80 {
            raw.extend_from_slice(format!("X-{i}: {i}\r\n").as_bytes());
        }
        raw.extend_from_slice(b"\r\n");
        match parse_request(&raw, &many) {
            Ok(Parse::Complete(req, _)) => assert_eq!(req.headers.len(), 80),
            other => panic!("{other:?}"),
        }
        assert_eq!(parse_request(&raw, &limits()), Err(HttpError::TooManyHeaders));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse_request(&bytes, &Limits { max_header_bytes: 128, max_headers: 4, max_body_bytes: 16 });
        }

        #[test]
        fn split_anywhere_yields_the_same_outcome(
            body in proptest::collection::vec(any::<u8>(), 0..40),
            query in "[a-zA-Z0-9%+=&]{0,30}",
            extra_headers in 0usize..6,
        ) {
            let mut raw = format!("POST /socket.io/?{query} HTTP/1.1\r\n").into_bytes();
            for i in 0..extra_headers {
                raw.extend_from_slice(format!("X-H{i}: v{i}\r\n").as_bytes());
            }
            raw.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
            raw.extend_from_slice(&body);
            let small = Limits { max_header_bytes: 150, max_headers: 4, max_body_bytes: 30 };
            let whole = parse_request(&raw, &small);
            for cut in 0..raw.len() {
                let part = parse_request(&raw[..cut], &small);
                match (&part, &whole) {
                    (Ok(Parse::Partial), _) => {}
                    (Err(e), Err(w)) => prop_assert_eq!(e, w),
                    // The head alone decides an oversized body.
                    (Ok(Parse::Oversized(p)), Ok(Parse::Oversized(w))) => prop_assert_eq!(p, w),
                    _ => prop_assert!(false, "prefix {} gave {:?}, whole gave {:?}", cut, part, whole),
                }
            }
        }
    }
}
