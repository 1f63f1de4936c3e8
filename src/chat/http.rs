//! The chat service's HTTP side (docs/PROTOCOL.md section 10): the REST API and the web page.
//!
//! Reads of the room list come from the core's catalogue replica and are answered at once;
//! everything that touches the database is answered when the store thread completes it.
//! Errors are `{"error":{"code","message"}}` with a fitting status.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Value, json};

use super::events::{Reject, check_room_name, check_text, create_room_stored};
use super::identity;
use super::{ChatLocal, Shared, channels, rooms};
use crate::api::http::{HttpApp, HttpReply, Responder};
use crate::broker::shard::Shard;
use crate::http::request::{Method, Request, form_decode};
use crate::http::response::Response;
use crate::store::{NewMessage, RoomRecord, StoreError, StoredMessage, iso8601_utc};

/// The web page's files, read once at start (no disk IO on the event loops).
#[derive(Default)]
pub struct WebFiles {
    files: Vec<(&'static str, &'static str, Vec<u8>)>,
    pub missing_client: bool,
}

impl WebFiles {
    /// Reads `index.html`, `app.js`, `style.css` and the socket.io-client bundle installed by
    /// `npm ci --prefix web` from `dir`. Missing files are left out (and reported by `GET /`).
    pub fn load(dir: &Path) -> WebFiles {
        let mut files = Vec::new();
        let wanted: [(&'static str, &'static str, PathBuf); 4] = [
            ("/", "text/html; charset=utf-8", dir.join("index.html")),
            ("/app.js", "text/javascript; charset=utf-8", dir.join("app.js")),
            ("/style.css", "text/css; charset=utf-8", dir.join("style.css")),
            (
                "/vendor/socket.io.min.js",
                "text/javascript; charset=utf-8",
                dir.join("node_modules/socket.io-client/dist/socket.io.min.js"),
            ),
        ];
        let mut missing_client = false;
        for (route, ctype, path) in wanted {
            match std::fs::read(&path) {
                Ok(bytes) => files.push((route, ctype, bytes)),
                Err(_) if route == "/vendor/socket.io.min.js" => missing_client = true,
                Err(_) => {}
            }
        }
        WebFiles { files, missing_client }
    }

    fn get(&self, route: &str) -> Option<(&'static str, &[u8])> {
        self.files.iter().find(|(r, _, _)| *r == route).map(|(_, t, b)| (*t, b.as_slice()))
    }
}

fn json_response(status: u16, body: String) -> Response {
    Response::new(status).header("Cache-Control", "no-store").body("application/json", body)
}

fn error(status: u16, code: &str, message: &str) -> Response {
    json_response(status, json!({"error": {"code": code, "message": message}}).to_string())
}

fn reject_response(r: &Reject) -> Response {
    let status = match r.code {
        "room_name_taken" => 409,
        "overloaded" => 503,
        "storage_error" => 500,
        "unknown_room" | "unknown_message" => 404,
        _ => 400,
    };
    error(status, r.code, &r.message)
}

fn store_error(e: StoreError) -> Response {
    reject_response(&Reject::from(e))
}

fn path_decode(s: &str) -> Cow<'_, str> {
    if s.contains('+') {
        Cow::Owned(form_decode(&s.replace('+', "%2B")).into_owned())
    } else {
        form_decode(s)
    }
}

fn messages_json(msgs: &[StoredMessage]) -> String {
    format!("[{}]", msgs.iter().map(|m| m.body.as_str()).collect::<Vec<_>>().join(","))
}

/// The chat service's HTTP handler.
pub struct ChatHttp {
    shared: Arc<Shared>,
}

/// Who is calling: the token's user in token mode; in development mode whoever the request
/// names (`X-User`, or the query's `userId`, `user`, `username`), possibly nobody.
enum Caller {
    User(String),
    Nobody,
}

impl ChatHttp {
    pub fn new(shared: Arc<Shared>) -> Self {
        ChatHttp { shared }
    }

    fn caller(&self, req: &Request, now_s: u64) -> Result<Caller, Response> {
        let max = self.shared.config.max_name_chars;
        if let Some(v) = &self.shared.verifier {
            let Some(token) = req.header("authorization").and_then(crate::auth::bearer_token) else {
                return Err(error(401, "missing_token", "Authorization: Bearer <token> is required"));
            };
            let id = v.verify(token, now_s).map_err(|e| error(e.http_status(), e.code(), &e.message()))?;
            return match identity::clean_name(&id.user, max) {
                Ok(Some(u)) => Ok(Caller::User(u)),
                _ => Err(error(401, "invalid_username", "the token's user name is not valid")),
            };
        }
        let declared = req
            .header("x-user")
            .map(Cow::Borrowed)
            .or_else(|| req.query_param("userId"))
            .or_else(|| req.query_param("user"))
            .or_else(|| req.query_param("username"));
        match declared {
            None => Ok(Caller::Nobody),
            Some(d) => match identity::clean_name(&d, max) {
                Ok(Some(u)) => Ok(Caller::User(u)),
                Ok(None) => Ok(Caller::Nobody),
                Err(_) => Err(error(400, "invalid_username", "user name must be 1 to 64 characters")),
            },
        }
    }

    fn json_body(req: &Request) -> Result<Value, Response> {
        let ctype = req.header("content-type").unwrap_or("");
        if !ctype.to_ascii_lowercase().starts_with("application/json") {
            return Err(error(
                415,
                "unsupported_media_type",
                "send a JSON body (Content-Type: application/json)",
            ));
        }
        serde_json::from_slice(&req.body)
            .map_err(|_| error(400, "invalid_payload", "the body is not valid JSON"))
    }

    fn page(&self, req: &Request) -> Response {
        match self.shared.web.get(&req.path) {
            Some((ctype, body)) => {
                Response::new(200).header("Cache-Control", "no-cache").body(ctype, body.to_vec())
            }
            None if req.path == "/" => Response::new(200).body(
                "text/html; charset=utf-8",
                "<!doctype html><title>sockeye</title><p>sockeye chat is running, but its web page \
                 was not found. Build it with <code>npm ci --prefix web</code> and start sockeye \
                 from the repository (or pass <code>--web-dir</code>).</p>",
            ),
            None => error(404, "not_found", "no such route"),
        }
    }

    /// `limit` and `before` of a history page.
    fn page_params(&self, req: &Request) -> Result<(usize, Option<String>), Response> {
        let cfg = &self.shared.config;
        let limit = match req.query_param("limit") {
            None => cfg.history_limit.min(cfg.max_history_page),
            Some(l) => match l.parse::<usize>() {
                Ok(n) if n >= 1 && n <= cfg.max_history_page => n,
                _ => {
                    return Err(error(
                        400,
                        "invalid_limit",
                        &format!("limit must be 1 to {}", cfg.max_history_page),
                    ));
                }
            },
        };
        let before = match req.query_param("before") {
            None => None,
            Some(b) if crate::store::is_object_id(&b) => Some(b.into_owned()),
            Some(_) => return Err(error(400, "invalid_before", "before must be a message id")),
        };
        Ok((limit, before))
    }

    fn history(&self, channel: String, req: &Request, responder: Responder) -> HttpReply {
        let (limit, before) = match self.page_params(req) {
            Ok(p) => p,
            Err(r) => return HttpReply::Now(r),
        };
        let sh = self.shared.clone();
        let submitted = self.shared.store.history(channel, before, limit, move |res| {
            let resp = match res {
                Ok(msgs) => json_response(200, messages_json(&msgs)),
                Err(StoreError::NotFound) => error(400, "invalid_before", "no message with that id here"),
                Err(e) => store_error(e),
            };
            if let Some(h) = sh.handle() {
                responder.respond(h, resp);
            }
        });
        match submitted {
            Ok(()) => HttpReply::Later,
            Err(e) => HttpReply::Now(store_error(e)),
        }
    }

    /// Takes one API request of `client`'s budget on this core; false when it is spent.
    fn api_rate_ok(&self, shard: &mut Shard, client: Option<std::net::SocketAddr>) -> bool {
        let (max_ips, exempt) =
            (shard.limits().handshake_rate_max_ips, shard.limits().handshake_rate_exempt_loopback);
        let (cores, now) = (shard.cores(), shard.now());
        let cfg = &self.shared.config;
        let local = shard.local::<ChatLocal>();
        if !local.api_limiter_made {
            local.api_limiter_made = true;
            local.api_limiter = crate::broker::ratelimit::AddrLimiter::with_rate(
                cfg.api_rate_limit,
                cfg.api_rate_burst,
                max_ips,
                exempt,
                cores,
                now,
            );
        }
        match (&mut local.api_limiter, client) {
            (Some(limiter), Some(addr)) => limiter.allow(addr.ip(), now),
            _ => true,
        }
    }

    fn route(&self, req: &Request, responder: Responder, shard: &mut Shard) -> HttpReply {
        let now_ms = shard.wall_ms();
        let path = req.path.as_str();
        if !path.starts_with("/api/") {
            return HttpReply::Now(match req.method {
                Method::Get => self.page(req),
                _ => error(405, "method_not_allowed", "only GET is served here"),
            });
        }
        if !self.api_rate_ok(shard, responder.client()) {
            self.shared.stats.api_rate_limited.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let mut r = error(
                429,
                "rate_limited",
                &format!(
                    "more than {} API requests per second; slow down",
                    self.shared.config.api_rate_limit
                ),
            );
            r = r.header("Retry-After", "1".to_owned());
            return HttpReply::Now(r);
        }
        let caller = match self.caller(req, now_ms / 1000) {
            Ok(c) => c,
            Err(r) => return HttpReply::Now(r),
        };
        let segs: Vec<&str> = path.trim_end_matches('/').split('/').skip(2).collect();
        match (req.method, segs.as_slice()) {
            (Method::Get, ["rooms"]) => {
                let local = shard.local::<ChatLocal>().init(&self.shared);
                let list: Vec<Value> = local
                    .catalogue
                    .all()
                    .map(|r| json!({"_id": r.id, "name": r.name, "createdAt": r.created_at}))
                    .collect();
                HttpReply::Now(json_response(200, Value::Array(list).to_string()))
            }
            (Method::Post, ["rooms"]) => self.post_room(req, responder, shard, caller, now_ms),
            (Method::Get, ["rooms", id, "messages"]) => {
                let id = path_decode(id);
                if let Some(pair) = id.strip_prefix("dm:") {
                    // A seed 004 DM: only its two users may read it. The label `dm:<a>_<b>` is
                    // ambiguous when names hold `_`; read against the caller, it is not.
                    let Caller::User(me) = &caller else {
                        return HttpReply::Now(error(401, "unknown_user", "name the caller to read a DM"));
                    };
                    let Some(peer) = identity::dm_peer(pair, me) else {
                        return HttpReply::Now(error(403, "forbidden", "not a participant of this DM"));
                    };
                    return self.history(identity::dm_key(me, peer), req, responder);
                }
                let local = shard.local::<ChatLocal>().init(&self.shared);
                match local.catalogue.find(&id) {
                    Some(room) => {
                        let channel = channels::room(&room.id);
                        self.history(channel, req, responder)
                    }
                    None => HttpReply::Now(error(404, "unknown_room", "no such room")),
                }
            }
            (Method::Post, ["messages", "send", receiver]) => {
                let receiver = path_decode(receiver).into_owned();
                self.send_private(req, responder, caller, receiver, shard, now_ms)
            }
            (Method::Get, ["messages", other]) => {
                let Caller::User(me) = caller else {
                    return HttpReply::Now(error(400, "unknown_user", "name the caller (X-User or userId)"));
                };
                let other = path_decode(other);
                self.history(channels::private(&me, &other), req, responder)
            }
            (_, ["rooms"] | ["rooms", _, "messages"] | ["messages", "send", _] | ["messages", _]) => {
                HttpReply::Now(error(405, "method_not_allowed", "method not allowed on this route"))
            }
            _ => HttpReply::Now(error(404, "not_found", "no such route")),
        }
    }

    fn post_room(
        &self,
        req: &Request,
        responder: Responder,
        shard: &mut Shard,
        caller: Caller,
        now_ms: u64,
    ) -> HttpReply {
        let body = match Self::json_body(req) {
            Ok(b) => b,
            Err(r) => return HttpReply::Now(r),
        };
        let name = match check_room_name(body.get("name"), self.shared.config.max_room_name_chars) {
            Ok(n) => n,
            Err(r) => return HttpReply::Now(reject_response(&r)),
        };
        let local = shard.local::<ChatLocal>().init(&self.shared);
        if local.catalogue.name_taken(&name) {
            return HttpReply::Now(error(409, "room_name_taken", "a room with that name exists"));
        }
        let record = RoomRecord {
            id: local.next_id(now_ms),
            name,
            created_at: iso8601_utc(now_ms),
            created_by: match caller {
                Caller::User(u) => Some(u),
                Caller::Nobody => None,
            },
        };
        let sh = self.shared.clone();
        let submitted = create_room_stored(&self.shared, record, move |res| {
            let resp = match res {
                Ok(room) => json_response(201, room.to_string()),
                Err(r) => reject_response(&r),
            };
            if let Some(h) = sh.handle() {
                responder.respond(h, resp);
            }
        });
        match submitted {
            Ok(()) => HttpReply::Later,
            Err(r) => HttpReply::Now(reject_response(&r)),
        }
    }

    fn send_private(
        &self,
        req: &Request,
        responder: Responder,
        caller: Caller,
        receiver: String,
        shard: &mut Shard,
        now_ms: u64,
    ) -> HttpReply {
        let Caller::User(sender) = caller else {
            return HttpReply::Now(error(400, "unknown_user", "name the sender (X-User or userId)"));
        };
        let receiver = match identity::clean_name(&receiver, self.shared.config.max_name_chars) {
            Ok(Some(r)) => r,
            _ => return HttpReply::Now(error(400, "unknown_user", "the receiver id is not valid")),
        };
        let body = match Self::json_body(req) {
            Ok(b) => b,
            Err(r) => return HttpReply::Now(r),
        };
        let text = match check_text(body.get("message"), self.shared.config.max_message_chars) {
            Ok(t) => t,
            Err(r) => return HttpReply::Now(reject_response(&r)),
        };
        let id = shard.local::<ChatLocal>().init(&self.shared).next_id(now_ms);
        let stored = json!({
            "_id": id, "senderId": sender, "receiverId": receiver, "message": text,
            "createdAt": iso8601_utc(now_ms),
        })
        .to_string();
        let msg = NewMessage {
            id,
            channel: channels::private(&sender, &receiver),
            sender,
            body: stored.clone(),
            ts_ms: now_ms,
        };
        let sh = self.shared.clone();
        let submitted = self.shared.store.append(msg, move |res| {
            let Some(h) = sh.handle() else {
                return;
            };
            match res {
                Ok(()) => {
                    h.to("/", &[&rooms::user(&receiver)]).emit_raw("newMessage", stored.clone(), Vec::new());
                    responder.respond(h, json_response(201, stored));
                }
                Err(e) => responder.respond(h, store_error(e)),
            }
        });
        match submitted {
            Ok(()) => HttpReply::Later,
            Err(e) => HttpReply::Now(store_error(e)),
        }
    }
}

impl HttpApp for ChatHttp {
    fn handle(&self, req: &Request, responder: Responder, shard: &mut Shard) -> HttpReply {
        self.route(req, responder, shard)
    }
}
