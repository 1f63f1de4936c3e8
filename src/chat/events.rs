//! The chat service's socket events (docs/PROTOCOL.md sections 2 to 9).
//!
//! Every handler validates completely before anything changes, answers a failure with an ack
//! `{success: false, error, code}` or an `error {code, message}` event, and for anything stored
//! enqueues a store command whose completion emits and acknowledges. No handler blocks.

use std::sync::Arc;

use serde_json::{Value, json};

use super::identity::{self, dm_key, dm_room};
use super::limits::{Strikes, TokenBucket};
use super::presence::PresenceMsg;
use super::{ChatLocal, ChatSocket, Dm, Shared, channels, rooms};
use crate::api::{AckId, DisconnectReason, Event, NamespaceBuilder, Socket};
use crate::store::{NewMessage, RoomRecord, StoreError, iso8601_utc};

/// Seed 004's answer to any rejected message.
const NOT_ACCEPTED: &str = "Message is not accepted";

/// A rejection: machine code and sentence.
#[derive(Debug, Clone)]
pub struct Reject {
    pub code: &'static str,
    pub message: String,
}

fn reject(code: &'static str, message: impl Into<String>) -> Reject {
    Reject { code, message: message.into() }
}

impl From<StoreError> for Reject {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Overloaded => reject("overloaded", "the server is busy; try again"),
            StoreError::NameTaken => reject("room_name_taken", "a room with that name exists"),
            StoreError::NotFound => reject("unknown_message", "no such message"),
            _ => reject("storage_error", "the message could not be stored"),
        }
    }
}

/// Answers a failure: the ack when one was asked for, else an `error` event.
/// Counts a rejection for `GET /metrics`.
fn count_rejection(s: &mut Socket<'_>, code: &str) {
    if let Some(stats) = &s.local::<ChatLocal>().stats {
        stats.rejected(code);
    }
}

fn fail(s: &mut Socket<'_>, ack: Option<AckId>, r: &Reject) {
    count_rejection(s, r.code);
    match ack {
        Some(id) => s.ack(id, &json!({"success": false, "error": r.message, "code": r.code})),
        None => s.emit("error", &json!({"code": r.code, "message": r.message})),
    }
}

/// Seed 004's failure answer.
fn fail_004(s: &mut Socket<'_>, ack: Option<AckId>, code: &'static str) {
    count_rejection(s, code);
    match ack {
        Some(id) => s.ack(id, &NOT_ACCEPTED),
        None => s.emit("error", &json!({"code": code, "message": NOT_ACCEPTED})),
    }
}

/// Runs `f` with the socket `sid` on `core` once a store command completed (from the store
/// thread). Nothing happens when the socket has gone meanwhile.
fn on_socket(shared: &Shared, core: usize, sid: Arc<str>, f: impl FnOnce(&mut Socket<'_>) + Send + 'static) {
    if let Some(h) = shared.handle() {
        h.run_on(core, move |shard| {
            if let Some(mut s) = shard.socket(&sid) {
                f(&mut s);
            }
        });
    }
}

/// Stores `msg`; once it is durable, emits `event` with `args_inner` to broker room `room` from
/// the store thread (so every member sees one room's messages in commit order), then answers
/// the sender on its core with `answer`. A submission the store refuses is answered at once.
fn store_and_emit(
    s: &mut Socket<'_>,
    shared: &Arc<Shared>,
    msg: NewMessage,
    room: String,
    event: &'static str,
    args_inner: String,
    answer: impl FnOnce(&mut Socket<'_>, Result<(), Reject>) + Send + 'static,
) {
    let (core, sid, sh) = (s.core(), Arc::<str>::from(s.id()), shared.clone());
    let answer = std::sync::Arc::new(std::sync::Mutex::new(Some(answer)));
    let later = answer.clone();
    let submitted = shared.store.append(msg, move |res| {
        if res.is_ok()
            && let Some(h) = sh.handle()
        {
            h.to("/", &[&room]).emit_raw(event, args_inner, Vec::new());
        }
        on_socket(&sh, core, sid, move |s| {
            if let Some(f) = later.lock().ok().and_then(|mut f| f.take()) {
                f(s, res.map_err(Reject::from));
            }
        });
    });
    if let Err(e) = submitted
        && let Some(f) = answer.lock().ok().and_then(|mut f| f.take())
    {
        f(s, Err(Reject::from(e)));
    }
}

/// `{"success":true,<fields of obj>}` from a serialised JSON object.
fn with_success(obj: &str) -> String {
    match obj.strip_prefix('{') {
        Some(rest) if rest.trim_start().starts_with('}') => "{\"success\":true}".to_owned(),
        Some(rest) => format!("{{\"success\":true,{rest}"),
        None => "{\"success\":true}".to_owned(),
    }
}

/// A message text: a string of 1 to `max` characters that is not blank.
pub fn check_text(v: Option<&Value>, max: usize) -> Result<String, Reject> {
    let Some(Value::String(t)) = v else {
        return Err(reject("invalid_payload", "the message text must be a string"));
    };
    if t.trim().is_empty() {
        return Err(reject("empty_text", "the message is empty"));
    }
    if t.chars().count() > max {
        return Err(reject("text_too_long", format!("the message is longer than {max} characters")));
    }
    Ok(t.clone())
}

/// A room name: 1 to `max` characters after trimming, no control characters.
pub fn check_room_name(v: Option<&Value>, max: usize) -> Result<String, Reject> {
    let Some(Value::String(n)) = v else {
        return Err(reject("invalid_room_name", "the room name must be a string"));
    };
    let n = n.trim();
    if n.is_empty() || n.chars().count() > max || n.chars().any(char::is_control) {
        return Err(reject("invalid_room_name", format!("a room name has 1 to {max} characters")));
    }
    Ok(n.to_owned())
}

fn arg0(ev: &Event) -> Value {
    ev.arg::<Value>(0).unwrap_or(Value::Null)
}

fn user_of(s: &Socket<'_>) -> Option<Arc<str>> {
    s.data::<ChatSocket>().and_then(|d| d.user.clone())
}

/// The speaker of a payload: the identity when there is one; for an anonymous socket in
/// development mode, the payload's `user`.
fn speaker(s: &Socket<'_>, shared: &Shared, payload: &Value) -> Option<String> {
    if let Some(u) = user_of(s) {
        return Some(u.to_string());
    }
    if shared.verifier.is_some() {
        return None;
    }
    match payload.get("user") {
        Some(Value::String(u)) => identity::clean_name(u, shared.config.max_name_chars).ok().flatten(),
        _ => s.data::<ChatSocket>().and_then(|d| d.name_hint.clone()),
    }
}

/// Takes a message token; on failure records a strike and disconnects an abuser. Returns
/// whether the event may proceed; the caller answers the rejection.
fn rate_ok(s: &mut Socket<'_>, shared: &Shared) -> bool {
    let now = s.now_ms();
    let cfg = &shared.config;
    let Some(d) = s.data_mut::<ChatSocket>() else {
        return false;
    };
    if d.bucket.take(cfg.rate_limit, cfg.rate_burst, now) {
        return true;
    }
    if d.strikes.strike(cfg.abuse_disconnect, now) {
        let user = d.user.clone();
        shared.stats.abuse_disconnects.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        crate::info!("abusive socket disconnected"; rejections_in_10s = cfg.abuse_disconnect, user = user.as_deref().unwrap_or("-"));
        // After the caller has answered this event (an ack to a leaving socket is dropped), so
        // the client learns why before it is cut off.
        s.set_timer(std::time::Duration::ZERO, |s| s.disconnect(false));
    }
    false
}

fn rate_reject(shared: &Shared) -> Reject {
    reject("rate_limited", format!("more than {} messages per second; slow down", shared.config.rate_limit))
}

fn room_of(s: &mut Socket<'_>, shared: &Shared, payload: &Value) -> Result<RoomRecord, Reject> {
    let Some(Value::String(id)) = payload.get("roomId") else {
        return Err(reject("invalid_payload", "roomId must be a string"));
    };
    let local = s.local::<ChatLocal>().init(shared);
    local.catalogue.find(id).cloned().ok_or_else(|| reject("unknown_room", "no such room"))
}

fn is_member(s: &Socket<'_>, room_id: &str) -> bool {
    s.data::<ChatSocket>().is_some_and(|d| d.rooms.iter().any(|r| r == room_id))
}

type Handler = fn(&mut Socket<'_>, &Arc<Shared>, Event);

/// Registers every handler of the chat service on namespace `/`.
pub fn register(ns: &mut NamespaceBuilder, shared: Arc<Shared>) {
    let sh = shared.clone();
    ns.middleware(move |hs| {
        identity::resolve(hs, sh.verifier.as_ref(), sh.config.max_name_chars, hs.issued_ms() / 1000)
            .map(|_| ())
            .map_err(|e| {
                sh.stats.connect_refused(e.code());
                e.to_connect_error()
            })
    });
    let sh = shared.clone();
    ns.on_connect(move |s| on_connect(s, &sh));
    let sh = shared.clone();
    ns.on_disconnect(move |s, reason| on_disconnect(s, &sh, reason));

    let handlers: [(&str, Handler); 9] = [
        ("all_chat", all_chat),
        ("chat", private_chat),
        ("sendMessage", send_message),
        ("message", global_message),
        ("chat message", chat_message),
        ("join room", join_room),
        ("leave room", leave_room),
        ("create room", create_room),
        ("typing", typing),
    ];
    for (name, f) in handlers {
        let sh = shared.clone();
        ns.on(name, move |s, ev| f(s, &sh, ev));
    }
}

fn on_connect(s: &mut Socket<'_>, shared: &Arc<Shared>) {
    let Some(hs) = s.handshake() else {
        return;
    };
    let id = match identity::resolve(
        &hs,
        shared.verifier.as_ref(),
        shared.config.max_name_chars,
        hs.issued_ms() / 1000,
    ) {
        Ok(id) => id,
        Err(_) => {
            s.disconnect(false);
            return;
        }
    };
    let now = s.now_ms();
    s.local::<ChatLocal>().init(shared);
    let user: Option<Arc<str>> = id.user.as_deref().map(Arc::from);
    let mut dm = None;
    if let Some(u) = &user {
        s.join(&rooms::user(u));
        if let Some(peer) = &id.peer {
            let d = Dm { label: dm_room(u, peer), key: dm_key(u, peer), peer: peer.clone() };
            s.join(&d.key);
            dm = Some(d);
        }
    }
    let anonymous_dm = user.is_none() && id.peer.is_some();
    // A socket restored by connection state recovery is back in the broker rooms it had. The
    // identity is derived again from this handshake: identity rooms it no longer has (another
    // user's, another DM) are left, and its chat rooms become its joined rooms again.
    let mut restored_rooms = Vec::new();
    if s.recovered() {
        let own_user = user.as_deref().map(rooms::user);
        let own_dm = dm.as_ref().map(|d| d.key.clone());
        for r in s.rooms().into_iter().skip(1) {
            if let Some(room_id) = r.strip_prefix("chat:room:") {
                restored_rooms.push(room_id.to_owned());
            } else if (r.starts_with("chat:user:") && Some(&r) != own_user.as_ref())
                || (r.starts_with("dm:") && Some(&r) != own_dm.as_ref())
            {
                s.leave(&r);
            }
        }
    }
    let cfg = &shared.config;
    s.set_data(ChatSocket {
        user: user.clone(),
        dm,
        anonymous_dm,
        name_hint: None,
        rooms: restored_rooms.clone(),
        bucket: TokenBucket::new(cfg.rate_burst, now),
        typing: TokenBucket::new(cfg.typing_burst, now),
        strikes: Strikes::default(),
    });
    if cfg.disconnect_on_token_expiry
        && let Some(exp) = id.exp
    {
        // The token's validity ends with the connection: tell the client why, then disconnect
        // it (it reconnects with a fresh token). Leeway is the verifier's, as at the handshake.
        let leeway = shared.verifier.as_ref().map_or(0, |v| v.leeway());
        let at_ms = exp.saturating_add(leeway).saturating_mul(1000);
        let delay = std::time::Duration::from_millis(at_ms.saturating_sub(now));
        s.set_timer(delay, |s| {
            crate::debug!("token expired: socket disconnected"; core = s.core());
            count_rejection(s, "token_expired");
            s.emit("error", &json!({"code": "token_expired", "message": "the token has expired"}));
            s.disconnect(false);
        });
    }
    let sid: Arc<str> = Arc::from(s.id());
    s.emit("welcome", &json!({ "sessionId": &*sid }));
    if cfg.emit_user_connected {
        s.broadcast().emit(
            "userConnected",
            &json!({ "id": &*sid, "username": user.as_deref(), "publicKey": id.public_key }),
        );
    }
    // The members of its rooms were told it left when it disconnected.
    for room_id in &restored_rooms {
        let name = user.as_deref().map(str::to_owned);
        s.to(&rooms::room(room_id)).emit("user joined room", &json!({"roomId": room_id, "user": name}));
    }
    let _ = shared.presence.send(PresenceMsg::Up {
        sid: sid.clone(),
        core: s.core(),
        user,
        public_key: id.public_key,
    });
    if s.recovered() && s.rooms().iter().any(|r| r == rooms::GLOBAL) {
        // Recovered after its history was delivered: what was said since came with the
        // packets it missed, so the history is not sent again (it would duplicate them).
        return;
    }
    // The global history: the socket joins the `load` broadcasts when its history has been read,
    // so every message reaches it exactly once (in the history or live).
    let core = s.core();
    let sh = shared.clone();
    let submitted = shared.store.history(channels::GLOBAL.to_owned(), None, cfg.history_limit, move |res| {
        let (list, err) = match res {
            Ok(msgs) => (msgs.into_iter().map(|m| m.body).collect::<Vec<_>>(), None),
            Err(e) => (Vec::new(), Some(Reject::from(e))),
        };
        on_socket(&sh, core, sid, move |s| {
            s.join(rooms::GLOBAL);
            s.emit_raw("load", &format!("[{}]", list.join(",")), Vec::new());
            if let Some(r) = err {
                fail(s, None, &r);
            }
        });
    });
    if let Err(e) = submitted {
        s.join(rooms::GLOBAL);
        s.emit_raw("load", "[]", Vec::new());
        fail(s, None, &Reject::from(e));
    }
}

fn on_disconnect(s: &mut Socket<'_>, shared: &Shared, _reason: DisconnectReason) {
    let sid: Arc<str> = Arc::from(s.id());
    let (user, joined) = match s.data::<ChatSocket>() {
        Some(d) => (d.user.as_deref().map(str::to_owned).or_else(|| d.name_hint.clone()), d.rooms.clone()),
        None => return,
    };
    for room_id in joined {
        let room = rooms::room(&room_id);
        if s.rooms().contains(&room) {
            s.to(&room).emit("user left room", &json!({"roomId": room_id, "user": user}));
        }
    }
    if shared.config.emit_user_disconnected {
        s.broadcast().emit("userDisconnected", &json!({ "id": &*sid }));
    }
    let _ = shared.presence.send(PresenceMsg::Down { sid });
}

// ----- seed 000 ------------------------------------------------------------------------------

/// The raw JSON of the payload's `message` field, relayed byte for byte (any JSON value: it
/// may be ciphertext in any shape).
fn opaque_message(ev: &Event, max_bytes: usize) -> Result<String, Reject> {
    let raw = ev.arg_raw(0).unwrap_or("null");
    let msg = serde_json::from_str::<std::collections::HashMap<String, &serde_json::value::RawValue>>(raw)
        .ok()
        .and_then(|m| m.get("message").map(|v| v.get().to_owned()))
        .ok_or_else(|| reject("invalid_payload", "the payload must be an object with a message field"))?;
    if msg.len() > max_bytes {
        return Err(reject("text_too_long", format!("the message is larger than {max_bytes} bytes")));
    }
    Ok(msg)
}

fn all_chat(s: &mut Socket<'_>, shared: &Arc<Shared>, ev: Event) {
    let ack = ev.ack();
    if !rate_ok(s, shared) {
        return fail(s, ack, &rate_reject(shared));
    }
    let msg = match opaque_message(&ev, shared.config.max_message_bytes) {
        Ok(m) => m,
        Err(r) => return fail(s, ack, &r),
    };
    let user = user_of(s);
    let head = json!({"senderId": s.id(), "username": user.as_deref()}).to_string();
    let inner = format!("{},\"message\":{msg}}}", &head[..head.len() - 1]);
    s.io().emit_raw("all_chat", &inner, Vec::new());
    if let Some(id) = ack {
        s.ack(id, &json!({"success": true}));
    }
}

fn private_chat(s: &mut Socket<'_>, shared: &Arc<Shared>, ev: Event) {
    let ack = ev.ack();
    if !rate_ok(s, shared) {
        return fail(s, ack, &rate_reject(shared));
    }
    let payload = arg0(&ev);
    let receiver = ["receiverId", "to", "id"].iter().find_map(|k| match payload.get(*k) {
        Some(Value::String(r)) if !r.is_empty() => Some(r.clone()),
        _ => None,
    });
    let Some(receiver) = receiver else {
        return fail(s, ack, &reject("unknown_user", "a receiver (receiverId, to or id) is required"));
    };
    let msg = match opaque_message(&ev, shared.config.max_message_bytes) {
        Ok(m) => m,
        Err(r) => return fail(s, ack, &r),
    };
    let head = json!({"senderId": s.id()}).to_string();
    let inner = format!("{},\"message\":{msg}}}", &head[..head.len() - 1]);
    // The receiver is a socket id or a user name: reach both (a union, each socket once).
    let user_room = rooms::user(&receiver);
    s.to(&receiver).to(&user_room).emit_raw("chat", &inner, Vec::new());
    if let Some(id) = ack {
        s.ack(id, &json!({"success": true}));
    }
}

// ----- seed 001 ------------------------------------------------------------------------------

fn send_message(s: &mut Socket<'_>, shared: &Arc<Shared>, ev: Event) {
    let ack = ev.ack();
    if !rate_ok(s, shared) {
        return fail(s, ack, &rate_reject(shared));
    }
    let payload = arg0(&ev);
    let Some(sender) = user_of(s) else {
        return fail(s, ack, &reject("unknown_user", "connect with a user id to send private messages"));
    };
    let receiver = match payload.get("receiverId") {
        Some(Value::String(r)) => match identity::clean_name(r, shared.config.max_name_chars) {
            Ok(Some(r)) => r,
            _ => return fail(s, ack, &reject("unknown_user", "receiverId is not a valid user id")),
        },
        _ => return fail(s, ack, &reject("unknown_user", "receiverId is required")),
    };
    let text = match check_text(payload.get("message"), shared.config.max_message_chars) {
        Ok(t) => t,
        Err(r) => return fail(s, ack, &r),
    };
    let now = s.now_ms();
    let id = s.local::<ChatLocal>().next_id(now);
    let body = json!({
        "_id": id, "senderId": &*sender, "receiverId": receiver, "message": text,
        "createdAt": iso8601_utc(now),
    })
    .to_string();
    let msg = NewMessage {
        id,
        channel: channels::private(&sender, &receiver),
        sender: sender.to_string(),
        body: body.clone(),
        ts_ms: now,
    };
    let acked = with_success(&body);
    store_and_emit(s, shared, msg, rooms::user(&receiver), "newMessage", body, move |s, res| match res {
        Ok(()) => {
            if let Some(id) = ack {
                s.ack_raw(id, &acked, Vec::new());
            }
        }
        Err(r) => fail(s, ack, &r),
    });
}

// ----- seed 002 ------------------------------------------------------------------------------

fn global_message(s: &mut Socket<'_>, shared: &Arc<Shared>, ev: Event) {
    let ack = ev.ack();
    if !rate_ok(s, shared) {
        return fail(s, ack, &rate_reject(shared));
    }
    let payload = arg0(&ev);
    let Value::Object(o) = &payload else {
        return fail(s, ack, &reject("invalid_payload", "the payload must be an object {message}"));
    };
    let text = match check_text(o.get("message"), shared.config.max_message_chars) {
        Ok(t) => t,
        Err(r) => return fail(s, ack, &r),
    };
    let user = speaker(s, shared, &payload).unwrap_or_else(|| "anonymous".to_owned());
    let now = s.now_ms();
    let id = s.local::<ChatLocal>().next_id(now);
    let body = json!({"_id": id, "user": user, "message": text, "timestamp": iso8601_utc(now)}).to_string();
    let msg =
        NewMessage { id, channel: channels::GLOBAL.to_owned(), sender: user, body: body.clone(), ts_ms: now };
    let acked = format!("{{\"success\":true,\"message\":{body}}}");
    let args = format!("[{body}]");
    store_and_emit(s, shared, msg, rooms::GLOBAL.to_owned(), "load", args, move |s, res| match res {
        Ok(()) => {
            if let Some(id) = ack {
                s.ack_raw(id, &acked, Vec::new());
            }
        }
        Err(r) => fail(s, ack, &r),
    });
}

// ----- seeds 003 and 004: `chat message` -----------------------------------------------------

fn chat_message(s: &mut Socket<'_>, shared: &Arc<Shared>, ev: Event) {
    let payload = arg0(&ev);
    match &payload {
        Value::Object(o) if o.contains_key("roomId") => room_message(s, shared, ev, payload),
        Value::String(_) => plain_message(s, shared, ev, payload),
        Value::Object(o) if matches!(o.get("text"), Some(Value::String(_))) => {
            plain_message(s, shared, ev, payload)
        }
        _ => {
            let ack = ev.ack();
            fail(s, ack, &reject("invalid_payload", "chat message needs {roomId, text} or a string"))
        }
    }
}

fn room_message(s: &mut Socket<'_>, shared: &Arc<Shared>, ev: Event, payload: Value) {
    let ack = ev.ack();
    if !rate_ok(s, shared) {
        return fail(s, ack, &rate_reject(shared));
    }
    let room = match room_of(s, shared, &payload) {
        Ok(r) => r,
        Err(r) => return fail(s, ack, &r),
    };
    let text = match check_text(payload.get("text"), shared.config.max_message_chars) {
        Ok(t) => t,
        Err(r) => return fail(s, ack, &r),
    };
    if !is_member(s, &room.id) {
        return fail(s, ack, &reject("not_member", "join the room before sending to it"));
    }
    let Some(user) = speaker(s, shared, &payload) else {
        return fail(s, ack, &reject("invalid_payload", "user is required"));
    };
    let now = s.now_ms();
    let id = s.local::<ChatLocal>().next_id(now);
    let body = json!({"_id": id, "room": room.id, "user": user, "text": text, "timestamp": iso8601_utc(now)})
        .to_string();
    let msg =
        NewMessage { id, channel: channels::room(&room.id), sender: user, body: body.clone(), ts_ms: now };
    let acked = format!("{{\"success\":true,\"message\":{body}}}");
    store_and_emit(s, shared, msg, rooms::room(&room.id), "chat message", body, move |s, res| match res {
        Ok(()) => {
            if let Some(id) = ack {
                s.ack_raw(id, &acked, Vec::new());
            }
        }
        Err(r) => fail(s, ack, &r),
    });
}

/// Seed 004: a string (or `{text}`) goes to everyone, or to the DM room when the socket has a
/// peer. The ack is the text itself, or "Message is not accepted".
fn plain_message(s: &mut Socket<'_>, shared: &Arc<Shared>, ev: Event, payload: Value) {
    let ack = ev.ack();
    if !rate_ok(s, shared) {
        return fail_004(s, ack, "rate_limited");
    }
    let text_value = match &payload {
        Value::Object(o) => o.get("text"),
        other => Some(other),
    };
    let text = match check_text(text_value, shared.config.max_message_chars) {
        Ok(t) => t,
        Err(r) => return fail_004(s, ack, r.code),
    };
    if s.data::<ChatSocket>().is_some_and(|d| d.anonymous_dm) {
        // A DM needs a sender: an anonymous socket that asked for a peer is refused rather
        // than broadcast to everyone.
        return fail_004(s, ack, "unknown_user");
    }
    let dm = s.data::<ChatSocket>().and_then(|d| d.dm.clone());
    let Some(dm) = dm else {
        // Everyone, the payload unchanged (`io.emit`).
        let raw = ev.arg_raw(0).unwrap_or("null").to_owned();
        s.io().emit_raw("chat message", &raw, Vec::new());
        if let Some(id) = ack {
            s.ack(id, &text);
        }
        return;
    };
    let Some(from) = user_of(s) else {
        return fail_004(s, ack, "unknown_user");
    };
    let now = s.now_ms();
    let id = s.local::<ChatLocal>().next_id(now);
    let body = json!({
        "roomId": dm.label, "id": id, "from": &*from, "text": text, "to": dm.peer, "time": iso8601_utc(now),
    })
    .to_string();
    let msg =
        NewMessage { id, channel: dm.key.clone(), sender: from.to_string(), body: body.clone(), ts_ms: now };
    store_and_emit(s, shared, msg, dm.key, "chat message", body, move |s, res| match res {
        Ok(()) => {
            if let Some(id) = ack {
                s.ack(id, &text);
            }
        }
        Err(r) => fail_004(s, ack, r.code),
    });
}

// ----- seed 003: rooms -----------------------------------------------------------------------

fn join_room(s: &mut Socket<'_>, shared: &Arc<Shared>, ev: Event) {
    let ack = ev.ack();
    // Each join reads history from the database: it draws from the message bucket too.
    if !rate_ok(s, shared) {
        return fail(s, ack, &rate_reject(shared));
    }
    let payload = arg0(&ev);
    let room = match room_of(s, shared, &payload) {
        Ok(r) => r,
        Err(r) => return fail(s, ack, &r),
    };
    let limit = shared.config.max_rooms_per_socket;
    let user = speaker(s, shared, &payload);
    {
        let Some(d) = s.data_mut::<ChatSocket>() else {
            return;
        };
        if d.user.is_none() && user.is_some() {
            // Remembered for `user left room` on leave or disconnect.
            d.name_hint = user.clone();
        }
        if !d.rooms.contains(&room.id) {
            if d.rooms.len() >= limit {
                return fail(s, ack, &reject("too_many_rooms", format!("a socket may join {limit} rooms")));
            }
            d.rooms.push(room.id.clone());
        }
    }
    let core = s.core();
    let sid: Arc<str> = Arc::from(s.id());
    let sh = shared.clone();
    let room_id = room.id.clone();
    let submitted =
        shared.store.history(channels::room(&room.id), None, shared.config.history_limit, move |res| {
            on_socket(&sh, core, sid, move |s| {
                let msgs = match res {
                    Ok(m) => m,
                    Err(e) => return fail(s, ack, &Reject::from(e)),
                };
                if !is_member(s, &room_id) {
                    // Left before the history came: nothing to join.
                    return fail(s, ack, &reject("not_member", "left the room before joining completed"));
                }
                let broker_room = rooms::room(&room_id);
                let already = s.rooms().contains(&broker_room);
                s.join(&broker_room);
                let history =
                    format!("[{}]", msgs.iter().map(|m| m.body.as_str()).collect::<Vec<_>>().join(","));
                s.emit_raw("message history", &history, Vec::new());
                if !already {
                    s.to(&broker_room).emit("user joined room", &json!({"roomId": room_id, "user": user}));
                }
                if let Some(id) = ack {
                    let room_json = serde_json::to_string(&room_id).unwrap_or_default();
                    s.ack_raw(
                        id,
                        &format!("{{\"success\":true,\"roomId\":{room_json},\"history\":{history}}}"),
                        Vec::new(),
                    );
                }
            });
        });
    if let Err(e) = submitted {
        if let Some(d) = s.data_mut::<ChatSocket>() {
            d.rooms.retain(|r| *r != room.id);
        }
        fail(s, ack, &Reject::from(e));
    }
}

fn leave_room(s: &mut Socket<'_>, shared: &Arc<Shared>, ev: Event) {
    let ack = ev.ack();
    let payload = arg0(&ev);
    let room = match room_of(s, shared, &payload) {
        Ok(r) => r,
        Err(r) => return fail(s, ack, &r),
    };
    if !is_member(s, &room.id) {
        return fail(s, ack, &reject("not_member", "not in that room"));
    }
    let user = speaker(s, shared, &payload);
    if let Some(d) = s.data_mut::<ChatSocket>() {
        d.rooms.retain(|r| *r != room.id);
    }
    let broker_room = rooms::room(&room.id);
    if s.rooms().contains(&broker_room) {
        s.to(&broker_room).emit("user left room", &json!({"roomId": room.id, "user": user}));
        s.leave(&broker_room);
    }
    if let Some(id) = ack {
        s.ack(id, &json!({"success": true, "roomId": room.id}));
    }
}

fn create_room(s: &mut Socket<'_>, shared: &Arc<Shared>, ev: Event) {
    let ack = ev.ack();
    if !rate_ok(s, shared) {
        return fail(s, ack, &rate_reject(shared));
    }
    let payload = arg0(&ev);
    let name = match check_room_name(payload.get("name"), shared.config.max_room_name_chars) {
        Ok(n) => n,
        Err(r) => return fail(s, ack, &r),
    };
    let now = s.now_ms();
    let local = s.local::<ChatLocal>().init(shared);
    if local.catalogue.name_taken(&name) {
        return fail(s, ack, &reject("room_name_taken", "a room with that name exists"));
    }
    let id = local.next_id(now);
    let record =
        RoomRecord { id, name, created_at: iso8601_utc(now), created_by: user_of(s).map(|u| u.to_string()) };
    let core = s.core();
    let sid: Arc<str> = Arc::from(s.id());
    let sh = shared.clone();
    let submitted = create_room_stored(shared, record, move |res| {
        on_socket(&sh, core, sid, move |s| match res {
            Ok(room) => {
                if let Some(id) = ack {
                    s.ack(id, &json!({"success": true, "room": room}));
                }
            }
            Err(r) => fail(s, ack, &r),
        });
    });
    if let Err(r) = submitted {
        fail(s, ack, &r);
    }
}

/// Stores a new room; once durable, every core learns it, then `room created` goes to
/// everyone, then `done` runs (on the store thread) with the room as clients see it.
pub fn create_room_stored(
    shared: &Arc<Shared>,
    record: RoomRecord,
    done: impl FnOnce(Result<Value, Reject>) + Send + 'static,
) -> Result<(), Reject> {
    let sh = shared.clone();
    let r = record.clone();
    shared
        .store
        .create_room(record, move |res| {
            if let Err(e) = res {
                return done(Err(Reject::from(e)));
            }
            let public = json!({"_id": r.id, "name": r.name, "createdAt": r.created_at});
            if let Some(h) = sh.handle() {
                // Inboxes are FIFO: every core has the room before `room created` reaches it.
                for core in 0..h.cores() {
                    let (room, sh2) = (r.clone(), sh.clone());
                    h.run_on(core, move |shard| shard.local::<ChatLocal>().init(&sh2).catalogue.insert(room));
                }
                h.emit("/", "room created", &public);
            }
            done(Ok(public));
        })
        .map_err(Reject::from)
}

fn typing(s: &mut Socket<'_>, shared: &Arc<Shared>, ev: Event) {
    let ack = ev.ack();
    let now = s.now_ms();
    let (rate, burst) = (shared.config.typing_rate, shared.config.typing_burst);
    let allowed = s.data_mut::<ChatSocket>().is_some_and(|d| d.typing.take(rate, burst, now));
    if !allowed {
        // Typing indicators are best effort: excess ones are dropped without an error event,
        // but an ack that was asked for is still answered.
        if let Some(id) = ack {
            s.ack(id, &json!({"success": false, "error": "too many typing events", "code": "rate_limited"}));
        }
        return;
    }
    let payload = arg0(&ev);
    let room = match room_of(s, shared, &payload) {
        Ok(r) => r,
        Err(r) => return fail(s, ack, &r),
    };
    if !is_member(s, &room.id) {
        return fail(s, ack, &reject("not_member", "join the room first"));
    }
    let user = speaker(s, shared, &payload);
    s.to(&rooms::room(&room.id)).emit("typing", &json!({"roomId": room.id, "user": user}));
    if let Some(id) = ack {
        s.ack(id, &json!({"success": true}));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_success_prefixes_an_object() {
        assert_eq!(with_success(r#"{"a":1}"#), r#"{"success":true,"a":1}"#);
        assert_eq!(with_success("{}"), r#"{"success":true}"#);
    }

    #[test]
    fn text_rules() {
        let max = 5;
        assert_eq!(check_text(Some(&json!("hi")), max).unwrap(), "hi");
        assert_eq!(check_text(Some(&json!("   ")), max).unwrap_err().code, "empty_text");
        assert_eq!(check_text(Some(&json!("héllo")), max).unwrap(), "héllo", "characters, not bytes");
        assert_eq!(check_text(Some(&json!("toolong")), max).unwrap_err().code, "text_too_long");
        assert_eq!(check_text(Some(&json!(42)), max).unwrap_err().code, "invalid_payload");
        assert_eq!(check_text(None, max).unwrap_err().code, "invalid_payload");
    }

    #[test]
    fn room_name_rules() {
        assert_eq!(check_room_name(Some(&json!("  Sports ")), 64).unwrap(), "Sports");
        assert_eq!(check_room_name(Some(&json!("")), 64).unwrap_err().code, "invalid_room_name");
        assert_eq!(check_room_name(Some(&json!("x".repeat(65))), 64).unwrap_err().code, "invalid_room_name");
        assert_eq!(check_room_name(Some(&json!(["a"])), 64).unwrap_err().code, "invalid_room_name");
        assert_eq!(check_room_name(Some(&json!("a\u{0}b")), 64).unwrap_err().code, "invalid_room_name");
    }
}
