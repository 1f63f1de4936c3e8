//! HTTP/1.1 response serialization.
//!
//! [`Response`] is a small builder for the less frequent answers (handshake errors, CORS
//! preflight, 404); [`write_simple`] writes a response straight into the output buffer without
//! building one, for the long-polling hot path. Both always emit `Content-Length` (except where
//! RFC 9110 section 8.6 forbids it: 1xx and 204) and `Connection`, so the caller never has to.
//!
//! What it does not do: no IO, no `Date` header (that would need the clock), no chunked
//! responses, no compression. Header values are trusted to hold no CR or LF; they come from our
//! own code or from request headers, which httparse has already checked.

use std::borrow::Cow;

/// A response built up before it is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    headers: Vec<(Cow<'static, str>, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// An empty response with this status.
    pub fn new(status: u16) -> Self {
        Response { status, headers: Vec::new(), body: Vec::new() }
    }

    /// Adds a header. `Content-Length` and `Connection` are written by [`Response::write_to`]
    /// and must not be added here.
    pub fn header(mut self, name: impl Into<Cow<'static, str>>, value: impl Into<String>) -> Self {
        let name = name.into();
        debug_assert!(
            !name.eq_ignore_ascii_case("content-length") && !name.eq_ignore_ascii_case("connection"),
            "{name} is written by write_to"
        );
        let value = value.into();
        debug_assert!(!value.contains(['\r', '\n']), "header value with a line break");
        self.headers.push((name, value));
        self
    }

    /// Sets the body and its `Content-Type`.
    pub fn body(self, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        let mut response = self.header("Content-Type", content_type);
        response.body = body.into();
        response
    }

    /// The headers added so far, in order.
    pub fn headers(&self) -> &[(Cow<'static, str>, String)] {
        &self.headers
    }

    /// The first value of a header, compared ASCII case-insensitively.
    pub fn header_value(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// Appends the serialized response to `out`.
    pub fn write_to(&self, keep_alive: bool, out: &mut Vec<u8>) {
        write_status_line(self.status, out);
        for (name, value) in &self.headers {
            write_header(name, value, out);
        }
        write_tail(self.status, &self.body, keep_alive, out);
    }
}

/// Writes a complete response without building a [`Response`]. An empty `content_type` writes
/// no `Content-Type` header.
pub fn write_simple(
    status: u16,
    content_type: &str,
    body: &[u8],
    extra_headers: &[(&str, &str)],
    keep_alive: bool,
    out: &mut Vec<u8>,
) {
    out.reserve(128 + body.len());
    write_status_line(status, out);
    if !content_type.is_empty() {
        write_header("Content-Type", content_type, out);
    }
    for (name, value) in extra_headers {
        debug_assert!(!value.contains(['\r', '\n']), "header value with a line break");
        write_header(name, value, out);
    }
    write_tail(status, body, keep_alive, out);
}

fn write_status_line(status: u16, out: &mut Vec<u8>) {
    out.extend_from_slice(b"HTTP/1.1 ");
    write_decimal(status as u64, out);
    out.push(b' ');
    out.extend_from_slice(reason_phrase(status).as_bytes());
    out.extend_from_slice(b"\r\n");
}

fn write_header(name: &str, value: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// `Content-Length`, `Connection`, the blank line and the body.
fn write_tail(status: u16, body: &[u8], keep_alive: bool, out: &mut Vec<u8>) {
    // RFC 9110 section 8.6: no Content-Length in 1xx or 204 responses, which have no body.
    let bodiless = status < 200 || status == 204;
    debug_assert!(!bodiless || body.is_empty(), "status {status} cannot carry a body");
    if !bodiless {
        out.extend_from_slice(b"Content-Length: ");
        write_decimal(body.len() as u64, out);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(if keep_alive {
        b"Connection: keep-alive\r\n\r\n".as_slice()
    } else {
        b"Connection: close\r\n\r\n".as_slice()
    });
    if !bodiless {
        out.extend_from_slice(body);
    }
}

fn write_decimal(mut n: u64, out: &mut Vec<u8>) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// The reason phrase for the statuses this server sends; other statuses get an empty phrase,
/// which RFC 9112 section 4 allows.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(bytes: &[u8]) -> &str {
        std::str::from_utf8(bytes).unwrap()
    }

    #[test]
    fn built_response_writes_status_headers_length_connection_and_body() {
        let mut out = Vec::new();
        Response::new(200)
            .header("X-Custom", "1")
            .body("text/plain; charset=UTF-8", "ok")
            .write_to(true, &mut out);
        assert_eq!(
            text(&out),
            "HTTP/1.1 200 OK\r\nX-Custom: 1\r\nContent-Type: text/plain; charset=UTF-8\r\n\
Content-Length: 2\r\nConnection: keep-alive\r\n\r\nok"
        );
    }

    #[test]
    fn close_is_announced_when_not_keeping_alive() {
        let mut out = Vec::new();
        Response::new(404).write_to(false, &mut out);
        assert_eq!(text(&out), "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    }

    #[test]
    fn no_content_has_no_content_length() {
        let mut out = Vec::new();
        Response::new(204).header("Vary", "Origin").write_to(true, &mut out);
        assert_eq!(text(&out), "HTTP/1.1 204 No Content\r\nVary: Origin\r\nConnection: keep-alive\r\n\r\n");
    }

    #[test]
    fn simple_response_matches_the_built_one() {
        let mut fast = Vec::new();
        write_simple(
            200,
            "text/plain; charset=UTF-8",
            b"4hello",
            &[("Access-Control-Allow-Origin", "*")],
            false,
            &mut fast,
        );
        let mut built = Vec::new();
        Response::new(200)
            .body("text/plain; charset=UTF-8", "4hello")
            .header("Access-Control-Allow-Origin", "*")
            .write_to(false, &mut built);
        assert_eq!(
            text(&fast),
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=UTF-8\r\n\
Access-Control-Allow-Origin: *\r\nContent-Length: 6\r\nConnection: close\r\n\r\n4hello"
        );
        assert_eq!(fast, built);
    }

    #[test]
    fn simple_response_without_content_type_omits_it() {
        let mut out = Vec::new();
        write_simple(400, "", b"", &[], true, &mut out);
        assert_eq!(
            text(&out),
            "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n"
        );
    }

    #[test]
    fn writing_appends_to_existing_output() {
        let mut out = b"previous".to_vec();
        write_simple(200, "", b"x", &[], true, &mut out);
        assert!(out.starts_with(b"previousHTTP/1.1 200 OK\r\n"));
    }

    #[test]
    fn decimal_lengths_are_exact() {
        for n in [0u64, 9, 10, 1_000_000, u64::MAX] {
            let mut out = Vec::new();
            write_decimal(n, &mut out);
            assert_eq!(text(&out), n.to_string());
        }
    }

    #[test]
    fn unknown_statuses_have_an_empty_reason() {
        assert_eq!(reason_phrase(418), "");
        assert_eq!(reason_phrase(431), "Request Header Fields Too Large");
    }

    #[test]
    fn header_lookup_is_case_insensitive() {
        let r = Response::new(200).header("Vary", "Origin");
        assert_eq!(r.header_value("vary"), Some("Origin"));
        assert_eq!(r.headers().len(), 1);
    }
}
