//! Bytes received on one HTTP connection, parsed with `parse_request` and small limits, request
//! after request over the unconsumed tail (pipelining), until the parser asks for more bytes or
//! refuses.
//!
//! Checks, besides no panic:
//! - a complete request consumes at least one byte and no more than it was given, and its body
//!   has the announced length;
//! - the documented split property for the first request: a shorter prefix of its bytes is
//!   `Partial` (or the same error), and exactly its bytes give the same request;
//! - header names are lower case and values trimmed; the query accessors do not panic;
//! - `write_handshake_response` succeeds only for requests that `is_websocket_upgrade`, and then
//!   writes one complete response head; it writes nothing on error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sockeye::http::request::form_decode;
use sockeye::http::websocket::write_handshake_response;
use sockeye::http::{Limits, Parse, Request, parse_request};

const LIMITS: Limits = Limits { max_header_bytes: 512, max_headers: 8, max_body_bytes: 256 };

fuzz_target!(|data: &[u8]| {
    let mut buf = data;
    let mut first = true;
    loop {
        let result = parse_request(buf, &LIMITS);
        if first {
            check_prefixes(buf, &result);
            first = false;
        }
        match result {
            Ok(Parse::Complete(req, used)) => {
                assert!(used > 0 && used <= buf.len(), "used {used} of {}", buf.len());
                check_request(&req);
                buf = &buf[used..];
            }
            Ok(Parse::Partial) => break,
            // A valid head whose announced body is over the limit: the head comes back without it.
            Ok(Parse::Oversized(req)) => {
                assert!(req.body.is_empty());
                check_head(&req);
                break;
            }
            Err(e) => {
                assert!(matches!(e.status(), 400 | 411 | 431 | 501));
                break;
            }
        }
    }
});

fn check_prefixes(buf: &[u8], full: &Result<Parse, sockeye::http::HttpError>) {
    let end = match full {
        Ok(Parse::Complete(_, used)) => *used,
        _ => buf.len(),
    };
    for cut in [0, 1, end / 2, end.saturating_sub(1)] {
        if cut >= end {
            continue;
        }
        let partial = parse_request(&buf[..cut], &LIMITS);
        match (&partial, full) {
            (Ok(Parse::Partial), _) => {}
            // A limit or a malformed head may be seen before the end of the request.
            (Err(a), Err(b)) if a == b => {}
            // The head alone decides an oversized body, so a prefix holding it says the same.
            (Ok(Parse::Oversized(a)), Ok(Parse::Oversized(b))) if a == b => {}
            _ => panic!("prefix of {cut} bytes gives {partial:?}, the whole gives {full:?}"),
        }
    }
    if let Ok(Parse::Complete(..)) = full {
        assert_eq!(&parse_request(&buf[..end], &LIMITS), full);
    }
}

fn check_request(req: &Request) {
    check_head(req);
    assert!(req.body.len() <= LIMITS.max_body_bytes);
    if let Some(len) = req.header("content-length") {
        assert_eq!(len.parse::<usize>().ok(), Some(req.body.len()), "content-length {len:?}");
    }
}

fn check_head(req: &Request) {
    for (name, value) in &req.headers {
        assert!(!name.bytes().any(|b| b.is_ascii_uppercase()), "name {name:?}");
        assert_eq!(value.trim(), value, "value of {name} not trimmed");
    }
    // The path ends at the first `?`; the raw query may itself start with one (`/p??a`).
    assert!(!req.path.contains('?'), "path {:?}", req.path);

    for (k, v) in req.query_pairs() {
        std::hint::black_box((k, v));
    }
    std::hint::black_box((req.query_param("EIO"), req.query_param("sid")));
    std::hint::black_box(form_decode(&req.path));

    let upgrade = req.is_websocket_upgrade();
    let mut out = Vec::new();
    let extra = [("Access-Control-Allow-Origin", String::from("*"))];
    match write_handshake_response(req, &extra, &mut out) {
        Ok(()) => {
            assert!(upgrade, "handshake accepted a request that is not an upgrade");
            assert!(out.starts_with(b"HTTP/1.1 101 Switching Protocols\r\n"));
            assert!(out.ends_with(b"\r\n\r\n"));
            let head = &out[..out.len() - 4];
            assert!(!head.windows(4).any(|w| w == b"\r\n\r\n"), "two heads");
        }
        Err(e) => {
            assert!(out.is_empty(), "wrote bytes on error {e}");
            assert!(matches!(e.status(), 400 | 426));
            std::hint::black_box(e.response());
        }
    }
}
