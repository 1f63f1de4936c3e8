//! Cross-origin resource sharing for the long-polling transport (Fetch standard, "CORS
//! protocol").
//!
//! Browsers send long-polling requests from the page's origin to the server's, so every polling
//! response needs `Access-Control-Allow-Origin`, and a POST with a non-simple content type is
//! preceded by an `OPTIONS` preflight. [`Cors`] decides whether an `Origin` is allowed and
//! produces the headers; the router refuses a disallowed origin with 403.
//!
//! What it does not do: no IO, no origin patterns or wildcard subdomains (list each origin), no
//! `Access-Control-Expose-Headers` (Engine.IO reads no response headers). WebSocket upgrades
//! are not covered by CORS at all; the router checks [`Cors::origin_allowed`] for them too.

use super::request::Request;
use super::response::Response;

/// Which origins may talk to the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowOrigin {
    /// Any origin: the request's `Origin` is reflected, or `*` when it has none.
    Any,
    /// Only these origins (`scheme://host[:port]`), compared ASCII case-insensitively.
    List(Vec<String>),
}

/// The CORS policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cors {
    pub allow: AllowOrigin,
    /// Send `Access-Control-Allow-Credentials: true`, letting pages send cookies.
    pub credentials: bool,
    /// How long a browser may cache a preflight answer; 0 sends no `Access-Control-Max-Age`.
    pub max_age_secs: u32,
}

impl Default for Cors {
    fn default() -> Self {
        Cors::permissive()
    }
}

impl Cors {
    /// Development default: any origin, reflected, with credentials.
    pub fn permissive() -> Self {
        Cors { allow: AllowOrigin::Any, credentials: true, max_age_secs: 86_400 }
    }

    /// Only the listed origins, with credentials.
    pub fn allow_list<I, S>(origins: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Cors {
            allow: AllowOrigin::List(origins.into_iter().map(Into::into).collect()),
            credentials: true,
            max_age_secs: 86_400,
        }
    }

    /// Whether a request with this `Origin` may proceed. No `Origin` header means the client is
    /// not a browser enforcing CORS (or a same-origin GET), so it is allowed.
    pub fn origin_allowed(&self, origin: Option<&str>) -> bool {
        match (origin, &self.allow) {
            (None, _) | (Some(_), AllowOrigin::Any) => true,
            (Some(origin), AllowOrigin::List(list)) => {
                list.iter().any(|allowed| allowed.eq_ignore_ascii_case(origin))
            }
        }
    }

    /// The CORS headers for a normal (non-preflight) response to a request with this `Origin`.
    /// Empty when the origin is not allowed.
    pub fn headers(&self, origin: Option<&str>) -> Vec<(&'static str, String)> {
        let mut headers = Vec::with_capacity(3);
        self.push_headers(origin, &mut headers);
        headers
    }

    fn push_headers(&self, origin: Option<&str>, headers: &mut Vec<(&'static str, String)>) {
        if !self.origin_allowed(origin) {
            // Still vary: a cache must not serve this refusal to an allowed origin.
            headers.push(("Vary", "Origin".to_owned()));
            return;
        }
        match (origin, &self.allow) {
            (Some(origin), _) => {
                headers.push(("Access-Control-Allow-Origin", origin.to_owned()));
                if self.credentials {
                    headers.push(("Access-Control-Allow-Credentials", "true".to_owned()));
                }
            }
            // `*` together with credentials is rejected by browsers, but without an Origin there
            // is no browser check to satisfy, so credentials are left out.
            (None, AllowOrigin::Any) => headers.push(("Access-Control-Allow-Origin", "*".to_owned())),
            (None, AllowOrigin::List(_)) => {}
        }
        headers.push(("Vary", "Origin".to_owned()));
    }

    /// The complete answer to an `OPTIONS` preflight: 204 with the allowed methods, the
    /// requested headers reflected, and `Access-Control-Max-Age`; 403 when the origin is refused.
    pub fn preflight(&self, req: &Request) -> Response {
        let origin = req.header("origin");
        if !self.origin_allowed(origin) {
            return Response::new(403).header("Vary", "Origin");
        }
        let mut headers = Vec::with_capacity(6);
        self.push_headers(origin, &mut headers);
        // Replace the plain `Vary: Origin` with one that also covers the reflected headers.
        headers.retain(|(name, _)| *name != "Vary");
        headers.push(("Vary", "Origin, Access-Control-Request-Headers".to_owned()));
        headers.push(("Access-Control-Allow-Methods", "GET,POST,OPTIONS".to_owned()));
        if let Some(requested) = req.header("access-control-request-headers")
            && !requested.is_empty()
        {
            headers.push(("Access-Control-Allow-Headers", requested.to_owned()));
        }
        if self.max_age_secs > 0 {
            headers.push(("Access-Control-Max-Age", self.max_age_secs.to_string()));
        }
        headers.into_iter().fold(Response::new(204), |r, (name, value)| r.header(name, value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::request::{Method, Request};

    fn options(headers: &[(&str, &str)]) -> Request {
        Request {
            method: Method::Options,
            path: "/socket.io/".into(),
            query: "EIO=4&transport=polling".into(),
            headers: headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect(),
            body: Vec::new(),
            keep_alive: true,
        }
    }

    fn get(headers: &[(&'static str, String)], name: &str) -> Option<String> {
        headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.clone())
    }

    #[test]
    fn permissive_reflects_any_origin_with_credentials() {
        let cors = Cors::permissive();
        assert!(cors.origin_allowed(Some("https://evil.example")));
        let h = cors.headers(Some("http://localhost:5173"));
        assert_eq!(get(&h, "Access-Control-Allow-Origin").as_deref(), Some("http://localhost:5173"));
        assert_eq!(get(&h, "Access-Control-Allow-Credentials").as_deref(), Some("true"));
        assert_eq!(get(&h, "Vary").as_deref(), Some("Origin"));
    }

    #[test]
    fn permissive_without_origin_allows_star_without_credentials() {
        let h = Cors::permissive().headers(None);
        assert_eq!(get(&h, "Access-Control-Allow-Origin").as_deref(), Some("*"));
        assert_eq!(get(&h, "Access-Control-Allow-Credentials"), None);
    }

    #[test]
    fn allow_list_admits_only_listed_origins() {
        let cors = Cors::allow_list(["https://chat.example", "http://localhost:3000"]);
        assert!(cors.origin_allowed(Some("https://chat.example")));
        assert!(cors.origin_allowed(Some("HTTPS://Chat.Example")));
        assert!(cors.origin_allowed(None));
        assert!(!cors.origin_allowed(Some("https://chat.example.evil")));
        assert!(!cors.origin_allowed(Some("null")));

        let h = cors.headers(Some("http://localhost:3000"));
        assert_eq!(get(&h, "Access-Control-Allow-Origin").as_deref(), Some("http://localhost:3000"));

        let refused = cors.headers(Some("https://other.example"));
        assert_eq!(refused, vec![("Vary", "Origin".to_owned())]);
        let no_origin = cors.headers(None);
        assert_eq!(get(&no_origin, "Access-Control-Allow-Origin"), None);
    }

    #[test]
    fn credentials_can_be_turned_off() {
        let cors = Cors { credentials: false, ..Cors::permissive() };
        assert_eq!(get(&cors.headers(Some("https://a.example")), "Access-Control-Allow-Credentials"), None);
    }

    #[test]
    fn preflight_allows_methods_and_reflects_requested_headers() {
        let req = options(&[
            ("origin", "https://chat.example"),
            ("access-control-request-method", "POST"),
            ("access-control-request-headers", "content-type,x-token"),
        ]);
        let r = Cors::allow_list(["https://chat.example"]).preflight(&req);
        assert_eq!(r.status, 204);
        assert_eq!(r.header_value("access-control-allow-origin"), Some("https://chat.example"));
        assert_eq!(r.header_value("access-control-allow-methods"), Some("GET,POST,OPTIONS"));
        assert_eq!(r.header_value("access-control-allow-headers"), Some("content-type,x-token"));
        assert_eq!(r.header_value("access-control-allow-credentials"), Some("true"));
        assert_eq!(r.header_value("access-control-max-age"), Some("86400"));
        assert_eq!(r.header_value("vary"), Some("Origin, Access-Control-Request-Headers"));
        assert_eq!(r.headers().iter().filter(|(n, _)| n == "Vary").count(), 1);
        let mut out = Vec::new();
        r.write_to(true, &mut out);
        assert!(out.starts_with(b"HTTP/1.1 204 No Content\r\n"));
    }

    #[test]
    fn preflight_without_requested_headers_or_max_age_omits_them() {
        let cors = Cors { max_age_secs: 0, ..Cors::permissive() };
        let r = cors.preflight(&options(&[("origin", "https://a.example")]));
        assert_eq!(r.status, 204);
        assert_eq!(r.header_value("access-control-allow-headers"), None);
        assert_eq!(r.header_value("access-control-max-age"), None);
    }

    #[test]
    fn preflight_from_a_refused_origin_is_forbidden() {
        let cors = Cors::allow_list(["https://chat.example"]);
        let r = cors.preflight(&options(&[("origin", "https://evil.example")]));
        assert_eq!(r.status, 403);
        assert_eq!(r.header_value("access-control-allow-origin"), None);
    }
}
