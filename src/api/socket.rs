//! [`Socket`]: what a handler holds while it runs, and [`Broadcast`] for emitting to rooms.

use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;

use super::{AckError, AckId, AckResponse, Event, Handshake, encode_args};
use crate::broker::rooms::Room;
use crate::broker::shard::{Audience, Shard, SocketKey};

/// One socket (a client connected to one namespace), valid while a handler runs. Operations
/// take effect at once on this core: an `emit` is queued for the client, a `join` is visible
/// to the next broadcast.
pub struct Socket<'a> {
    shard: &'a mut Shard,
    key: SocketKey,
}

impl<'a> Socket<'a> {
    pub(crate) fn new(shard: &'a mut Shard, key: SocketKey) -> Self {
        Socket { shard, key }
    }

    /// Whether the socket is still connected: false once it started leaving (inside its
    /// disconnect handler, in ack callbacks that report `Disconnected`, after `disconnect`).
    /// Emits to a socket that is not connected reach nobody.
    pub fn connected(&self) -> bool {
        self.shard.live_socket(self.key).is_some()
    }

    /// Whether this socket was restored by connection state recovery (`socket.recovered` in
    /// socket.io): same id and rooms as before the client's transport died, and the packets
    /// it missed were sent before the connect handler runs. Always false with recovery off.
    pub fn recovered(&self) -> bool {
        self.shard.socket_ref(self.key).is_some_and(|s| s.recovered)
    }

    /// The socket id (also the name of the room only this socket is in). Empty once gone.
    pub fn id(&self) -> &str {
        self.shard.socket_ref(self.key).map(|s| &*s.id).unwrap_or("")
    }

    /// The namespace name.
    pub fn ns(&self) -> &str {
        match self.shard.socket_ref(self.key) {
            Some(s) => &self.shard.def.namespaces[s.ns as usize].name,
            None => "",
        }
    }

    pub fn handshake(&self) -> Option<Rc<Handshake>> {
        self.shard.socket_ref(self.key).map(|s| s.handshake.clone())
    }

    /// Emit an event to this client. `args` is anything that serialises to a JSON array (one
    /// argument per element: a tuple, a `Vec`, `json!([..])`), `()` for none, or any other
    /// value as the single argument. `Binary` values travel as attachments.
    pub fn emit<A: Serialize + ?Sized>(&mut self, event: &str, args: &A) {
        let (inner, att) = encode_args(args);
        self.shard.emit_to(self.key, event, &inner, att, None);
    }

    /// Emit with arguments already serialised (the inside of the JSON array).
    pub fn emit_raw(&mut self, event: &str, args_inner: &str, attachments: Vec<Bytes>) {
        self.shard.emit_to(self.key, event, args_inner, attachments, None);
    }

    /// Emit and wait for the client's acknowledgement: `callback` runs on this core with the
    /// ack's arguments, or with `AckError::Timeout` after `timeout`, or `Disconnected`.
    pub fn emit_with_ack<A, F>(&mut self, event: &str, args: &A, timeout: Duration, callback: F)
    where
        A: Serialize + ?Sized,
        F: FnOnce(&mut Socket<'_>, Result<AckResponse, AckError>) + 'static,
    {
        let (inner, att) = encode_args(args);
        self.shard.emit_to(self.key, event, &inner, att, Some((Box::new(callback), timeout)));
    }

    /// `emit_with_ack` with arguments already serialised (the inside of the JSON array).
    pub fn emit_raw_with_ack<F>(
        &mut self,
        event: &str,
        args_inner: &str,
        attachments: Vec<Bytes>,
        timeout: Duration,
        callback: F,
    ) where
        F: FnOnce(&mut Socket<'_>, Result<AckResponse, AckError>) + 'static,
    {
        self.shard.emit_to(self.key, event, args_inner, attachments, Some((Box::new(callback), timeout)));
    }

    /// Answer a client's acknowledgement request.
    pub fn ack<A: Serialize + ?Sized>(&mut self, id: AckId, args: &A) {
        let (inner, att) = encode_args(args);
        self.shard.ack_to(self.key, id.0, &inner, att);
    }

    /// Answer an acknowledgement with arguments already serialised.
    pub fn ack_raw(&mut self, id: AckId, args_inner: &str, attachments: Vec<Bytes>) {
        self.shard.ack_to(self.key, id.0, args_inner, attachments);
    }

    /// Join a room. Returns false when the socket is at its room limit.
    pub fn join(&mut self, room: &str) -> bool {
        self.shard.join(self.key, room)
    }

    pub fn leave(&mut self, room: &str) {
        self.shard.leave(self.key, room)
    }

    /// The rooms this socket is in, its own room (its id) first.
    pub fn rooms(&self) -> Vec<String> {
        self.shard.rooms_of(self.key)
    }

    /// Register a handler for `event` on this socket only; it takes precedence over the
    /// namespace's handler for the same event.
    pub fn on<F>(&mut self, event: &str, handler: F)
    where
        F: Fn(&mut Socket<'_>, Event) + 'static,
    {
        self.shard.set_handler(self.key, event, Rc::new(handler));
    }

    /// Broadcast to a room, excluding this socket (`socket.to(room)` in JavaScript).
    pub fn to(&mut self, room: &str) -> Broadcast<'_> {
        let ns = self.ns_idx();
        Broadcast {
            shard: self.shard,
            ns,
            rooms: vec![Room::from(room)],
            except: Vec::new(),
            skip: Some(self.key),
        }
    }

    /// Broadcast to the whole namespace except this socket (`socket.broadcast`).
    pub fn broadcast(&mut self) -> Broadcast<'_> {
        let ns = self.ns_idx();
        Broadcast { shard: self.shard, ns, rooms: Vec::new(), except: Vec::new(), skip: Some(self.key) }
    }

    /// Broadcast to the whole namespace, this socket included (`io.of(ns)` in JavaScript).
    pub fn io(&mut self) -> Broadcast<'_> {
        let ns = self.ns_idx();
        Broadcast { shard: self.shard, ns, rooms: Vec::new(), except: Vec::new(), skip: None }
    }

    /// Disconnect this socket from its namespace (the client sees "io server disconnect");
    /// with `close` the whole connection is closed too.
    pub fn disconnect(&mut self, close: bool) {
        self.shard.disconnect(self.key, close);
    }

    /// Per-socket application data.
    pub fn data<T: 'static>(&self) -> Option<&T> {
        self.shard.socket_ref(self.key)?.data.as_ref()?.downcast_ref()
    }

    pub fn data_mut<T: 'static>(&mut self) -> Option<&mut T> {
        self.shard.socket_mut(self.key)?.data.as_mut()?.downcast_mut()
    }

    pub fn set_data<T: 'static>(&mut self, value: T) {
        if let Some(s) = self.shard.socket_mut(self.key) {
            s.data = Some(Box::new(value));
        }
    }

    /// This core's value of application state `T` (see [`Shard::local`]).
    pub fn local<T: Default + 'static>(&mut self) -> &mut T {
        self.shard.local::<T>()
    }

    /// Run `f` with this socket after `delay`, if it is still connected then. Returns an id for
    /// `Shard::cancel_timer`.
    pub fn set_timer(&mut self, delay: Duration, f: impl FnOnce(&mut Socket<'_>) + 'static) -> u64 {
        self.shard.socket_timer(self.key, delay, f)
    }

    /// Wall-clock milliseconds since the Unix epoch, as of the current loop turn.
    pub fn now_ms(&self) -> u64 {
        self.shard.wall_ms()
    }

    /// The core this socket lives on (for answering it later with `ServerHandle::run_on`).
    pub fn core(&self) -> usize {
        self.shard.core() as usize
    }

    fn ns_idx(&self) -> u16 {
        self.shard.socket_ref(self.key).map(|s| s.ns).unwrap_or(0)
    }
}

/// A broadcast being built: rooms to reach, rooms to leave out. Cheap to build; `emit` encodes
/// the packet once and sends it to every member on every core.
pub struct Broadcast<'a> {
    shard: &'a mut Shard,
    ns: u16,
    rooms: Vec<Room>,
    except: Vec<Room>,
    skip: Option<SocketKey>,
}

impl Broadcast<'_> {
    /// Also reach this room (union).
    pub fn to(mut self, room: &str) -> Self {
        self.rooms.push(Room::from(room));
        self
    }

    /// Leave out the members of this room.
    pub fn except(mut self, room: &str) -> Self {
        self.except.push(Room::from(room));
        self
    }

    pub fn emit<A: Serialize + ?Sized>(self, event: &str, args: &A) {
        let (inner, att) = encode_args(args);
        self.emit_raw(event, &inner, att);
    }

    pub fn emit_raw(self, event: &str, args_inner: &str, attachments: Vec<Bytes>) {
        self.shard.broadcast(
            Audience { ns: self.ns, rooms: self.rooms, except: self.except, skip: self.skip },
            event,
            args_inner,
            &attachments,
        );
    }
}
