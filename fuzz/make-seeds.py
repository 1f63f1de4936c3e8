#!/usr/bin/env python3
"""Writes the seed corpus of every fuzz target into corpus/<target>/seed-*.

The seeds are small, real protocol examples (Engine.IO v4 / Socket.IO v5 specification
examples, RFC 6455 frames, requests as socket.io-client sends them), laid out in each target's
input format. Run it from fuzz/ after changing a target's input format; the grown corpus (files
not named seed-*) is not committed.
"""
import base64
import hashlib
import hmac
import os
import struct

SEP = b"\x1e"


def write(target, name, data):
    d = os.path.join("corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


OPEN = (b'0{"sid":"lv_VI97HAXpY6yYWAAAC","upgrades":["websocket"],'
        b'"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}')

# eio_packet: one packet.
for name, data in {
    "open": OPEN,
    "close": b"1",
    "ping": b"2",
    "ping-probe": b"2probe",
    "pong-probe": b"3probe",
    "message": b"4hello",
    "message-utf8": "4€".encode(),
    "message-sio-event": b'42["hello",1]',
    "binary-record": b"bAQIDBA==",
    "upgrade": b"5",
    "noop": b"6",
}.items():
    write("eio_packet", name, data)

# eio_payload: one polling body.
for name, data in {
    "spec-text-binary": "4hello\x1ebAQIDBA==\x1e4€".encode(),
    "ping-pong-noop": SEP.join([b"2", b"3", b"6"]),
    "sio-connect-event": SEP.join([b'40{"token":"x"}', b'42["hello",1]']),
    "sio-binary-event": SEP.join([b'451-["ev",{"_placeholder":true,"num":0}]', b"bAQIDBA=="]),
    "close": b"1",
}.items():
    write("eio_payload", name, data)


# sio_packet: messages, each a header byte (top bit: binary; low 7 bits: length, 127 = rest).
def text(s):
    b = s.encode()
    assert len(b) < 127
    return bytes([len(b)]) + b


def binary(b):
    assert len(b) < 127
    return bytes([0x80 | len(b)]) + b


for name, data in {
    "connect-auth": text('0{"token":"x"}'),
    "connect-ns": text('0/admin,{"token":"123"}'),
    "event": text('2["hello",1]'),
    "event-ack-ns": text('2/chat,12["message","hi"]'),
    "ack": text('3/chat,12["ok"]'),
    "binary-event": text('51-["ev",{"_placeholder":true,"num":0}]') + binary(b"\x01\x02\x03\x04"),
    "binary-event-two": text('52-/admin,["baz",{"_placeholder":true,"num":0},'
                             '{"_placeholder":true,"num":1}]')
    + binary(b"\x01\x02") + binary(b"\x03\x04"),
    "binary-ack": text('61-/admin,7[{"_placeholder":true,"num":0}]') + binary(b"\xff\x00"),
    "disconnect": text("1/admin,"),
    "connect-error": text('4{"message":"Not authorized","data":{"code":7}}'),
    "session": text('0{"token":"x"}') + text('2["chat message",{"text":"hi"}]')
    + text('21["ping"]') + text('51-["file",{"_placeholder":true,"num":0}]')
    + binary(bytes(range(32))) + text("1"),
}.items():
    write("sio_packet", name, data)

# http_request: bytes of one connection.
UA = b"User-Agent: node-XMLHttpRequest\r\n"
GET = (b"GET /socket.io/?EIO=4&transport=polling&t=OsTb3Jx HTTP/1.1\r\n"
       b"Host: localhost:3000\r\n" + UA + b"Accept: */*\r\nConnection: keep-alive\r\n\r\n")
BODY = b'40{"token":"x"}'
POST = (b"POST /socket.io/?EIO=4&transport=polling&t=OsTb3K1&sid=lv_VI97HAXpY6yYWAAAC HTTP/1.1\r\n"
        b"Host: localhost:3000\r\nContent-Type: text/plain;charset=UTF-8\r\n"
        b"Content-Length: %d\r\n\r\n" % len(BODY) + BODY)
UPGRADE = (b"GET /socket.io/?EIO=4&transport=websocket&sid=lv_VI97HAXpY6yYWAAAC HTTP/1.1\r\n"
           b"Host: localhost:3000\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
           b"Origin: http://localhost:3000\r\n\r\n")
PREFLIGHT = (b"OPTIONS /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: localhost:3000\r\n"
             b"Origin: http://example.com\r\nAccess-Control-Request-Method: POST\r\n"
             b"Access-Control-Request-Headers: content-type\r\n\r\n")
for name, data in {
    "polling-get": GET,
    "polling-post": POST,
    "websocket-upgrade": UPGRADE,
    "pipelined-get-post": GET + POST,
    "preflight": PREFLIGHT,
    "http10-close": b"GET /socket.io/?EIO=4&transport=polling HTTP/1.0\r\nHost: a\r\n\r\n",
}.items():
    write("http_request", name, data)

# ws_frames: a byte k, k % 8 read sizes (each + 1), then masked client frames.
KEY = b"\x37\xfa\x21\x3d"


def frame(opcode, payload, fin=True, key=KEY):
    head = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack(">H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack(">Q", n)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def sizes(*s):
    return bytes([len(s)]) + bytes(x - 1 for x in s)


for name, data in {
    # RFC 6455 section 5.7: a single-frame masked text message "Hello".
    "rfc-hello": sizes() + frame(0x1, b"Hello"),
    "rfc-fragmented-hello": sizes(1, 3, 7) + frame(0x1, b"Hel", fin=False) + frame(0x0, b"lo"),
    "rfc-ping": sizes() + frame(0x9, b"Hello"),
    "probe-upgrade": sizes(2) + frame(0x1, b"2probe") + frame(0x1, b"5"),
    "sio-event": sizes(5, 11) + frame(0x1, b'42["hello",1]'),
    "binary-256": sizes(100) + frame(0x2, bytes(range(256))),
    "fragment-ping-inside": sizes() + frame(0x2, b"\x01\x02", fin=False) + frame(0x9, b"")
    + frame(0x0, b"\x03", fin=True),
    "close-1000": sizes() + frame(0x8, struct.pack(">H", 1000) + b"bye"),
}.items():
    write("ws_frames", name, data)


# eio_session: transport byte, then operations (opcode byte % 16 and arguments).
def sb(b):
    return bytes([len(b)]) + b


GETOP, POSTOP, POSTPONG, WSTEXT, WSBIN, WSPONG, PROBEOPEN, PROBEMSG = range(8)
PROBEPING, PROBEUPGRADE, PROBECLOSED, ADVANCE, SENDTEXT, SENDBIN, ABORT, CLOSE = range(8, 16)


def advance(ms):
    return bytes([ADVANCE, ms // 5])


for name, data in {
    "polling-heartbeat": bytes([0]) + bytes([GETOP]) + bytes([SENDTEXT]) + sb(b'0{"sid":"a"}')
    + bytes([POSTOP]) + sb(b'40{"token":"x"}') + advance(300) + bytes([GETOP, POSTPONG])
    + advance(300) + advance(200),
    "polling-upgrade": bytes([0, GETOP, PROBEOPEN, PROBEPING, GETOP, PROBEUPGRADE])
    + bytes([WSTEXT]) + sb(b'42["hello",1]') + bytes([SENDBIN]) + sb(b"\x01\x02\x03")
    + advance(300) + bytes([WSPONG]),
    "polling-two-gets": bytes([0, GETOP, GETOP]),
    "polling-slow-consumer": bytes([0]) + (bytes([SENDTEXT]) + sb(b"x" * 100)) * 3,
    "polling-probe-timeout": bytes([0, PROBEOPEN]) + advance(1000) + bytes([GETOP]),
    "websocket-ping-timeout": bytes([1]) + advance(300) + bytes([WSPONG]) + advance(300)
    + advance(250),
    "websocket-close": bytes([1, WSTEXT]) + sb(b"4hi") + bytes([WSTEXT]) + sb(b"1")
    + bytes([GETOP]),
}.items():
    write("eio_session", name, data)


# jwt_verify: a mode byte; even: the token; odd: a length-prefixed header and the payload,
# which the harness encodes and signs with HS256 under SECRET.
SECRET = b"your-256-bit-secret"


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=")


def hs256(header, payload, secret=SECRET):
    message = b64url(header) + b"." + b64url(payload)
    return message + b"." + b64url(hmac.new(secret, message, hashlib.sha256).digest())


JWT_HEADER = b'{"alg":"HS256","typ":"JWT"}'


def token(t):
    return bytes([0]) + t


def signed(header, payload):
    return bytes([1]) + sb(header) + payload


for name, data in {
    # The jwt.io example: valid under SECRET, user "John Doe", no exp.
    "jwt-io": token(b"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6Ikpva"
                    b"G4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"),
    "minted": token(hs256(JWT_HEADER, b'{"sub":"alice","username":"alice","iat":1700000000,'
                                      b'"exp":1700003600}')),
    "exp-nbf": token(hs256(JWT_HEADER, b'{"name":"bob","exp":1700000000,"nbf":1516239022}')),
    "hs512-header": token(hs256(b'{"alg":"HS512"}', b'{"sub":"s"}')),
    "wrong-secret": token(hs256(JWT_HEADER, b'{"sub":"s"}', b"s3cr3t")),
    "alg-none": token(b64url(b'{"alg":"none"}') + b"." + b64url(b'{"sub":"admin"}') + b"."),
    "rs256-header": token(b64url(b'{"alg":"RS256","typ":"JWT"}') + b"." + b64url(b'{"sub":"s"}')
                          + b"." + b64url(bytes(range(256)))),
    "es256-header": token(b64url(b'{"alg":"ES256"}') + b"." + b64url(b'{"sub":"s"}') + b"."
                          + b64url(bytes(64))),
    "two-parts": token(b"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJzIn0"),
    "bearer": token(b"Bearer abc.def.ghi"),
    "signed-claims": signed(JWT_HEADER, b'{"username":"u","name":"n","sub":"s","iat":1,'
                                        b'"exp":1700000000,"nbf":1600000000}'),
    "signed-skipped-ids": signed(JWT_HEADER, b'{"username":"","name":7,"sub":"x"}'),
    "signed-no-identity": signed(JWT_HEADER, b'{"iat":1700000000}'),
    "signed-string-exp": signed(JWT_HEADER, b'{"sub":"s","exp":"soon"}'),
    "signed-fractional": signed(JWT_HEADER, b'{"sub":"s","exp":1700000000.5,"nbf":-3}'),
    "signed-huge-exp": signed(JWT_HEADER, b'{"sub":"s","exp":1e300,"nbf":1e300}'),
    "signed-crit": signed(b'{"alg":"HS256","crit":["b64"],"b64":false}', b'{"sub":"s"}'),
    "signed-hs384": signed(b'{"alg":"HS384"}', b'{"sub":"s"}'),
    "signed-not-object": signed(JWT_HEADER, b'["sub","s"]'),
}.items():
    write("jwt_verify", name, data)


# sio_session: operations, each an opcode byte (% 16), a client-pick byte, then the operation's
# arguments (see `step` in fuzz_targets/sio_session.rs). Strings are length-prefixed (sb).
(S_POLL, S_WS, S_GET, S_EVENT, S_BINARY, S_ACK, S_PROBE, S_PROBE_OP, S_ADVANCE, S_DROP, S_RAW_EIO,
 S_READING, S_DISCONNECT, S_CONNECT, S_RAW_CONN, S_CLOSE) = range(16)
SIO_NS = {"/": 0, "/custom": 1, "/private": 2, "/nope": 3}
SIO_EVENTS = {e: i for i, e in enumerate([
    "message", "message-with-ack", "join", "leave", "to-room", "broadcast", "server-disconnect",
    "emit-with-ack", "get-rooms", "bye", "unknown", "connect"])}
SIO_ROOMS = {"a": 0, "b": 1, "room with space": 2, "": 3}
# args(): the kinds of argument list.
A_NONE, A_ROOM, A_ROOM_TEXT, A_TEXT, A_OBJECT, A_NUMBERS, A_NESTED, A_RAW = range(8)


def s_args(kind=A_NONE, text=b"", room="a"):
    return sb(text) + bytes([SIO_ROOMS[room], kind])


def s_new(ws=False, core=0):
    return bytes([S_WS if ws else S_POLL, 0, core])


def s_get(c, core=0):
    return bytes([S_GET, c, core])


def s_connect(c, ns="/", auth=0, raw=b"", core=0):
    """auth: 0 none, 1 {"token":"secret"}, 2 the raw bytes."""
    return bytes([S_CONNECT, c, core, SIO_NS[ns], auth]) + (sb(raw) if auth == 2 else b"")


def s_event(c, ev, ns="/", ack=False, args=s_args(), core=0):
    return bytes([S_EVENT, c, core, SIO_NS[ns], SIO_EVENTS[ev], 0 if ack else 1]) + args


def s_binary(c, ev, ns="/", declared=1, sent=2, ack=False, data=b"\x01\x02\x03\x04", core=0):
    """sent: 0 one attachment too few, 1 one too many, 2 as declared."""
    return bytes([S_BINARY, c, core, SIO_NS[ns], SIO_EVENTS[ev], declared, sent,
                  0 if ack else 1]) + sb(data)


def s_ack(c, choice=1, args=s_args(A_TEXT, b"ok"), unknown_id=None, core=0):
    """Answers the server's ask number `choice` (choice % 4 == 0 or no asks: id unknown_id)."""
    out = bytes([S_ACK, c, core, choice]) + args
    if unknown_id is not None:
        out += struct.pack("<H", unknown_id)
    return out


def s_advance(ms):
    return bytes([S_ADVANCE, 0, min(255, ms // 8)])


def s_upgrade(c, core=0):
    # A probe WebSocket with 2probe, then 5 on it.
    return bytes([S_PROBE, c, core, S_PROBE_OP, c, 0])


def s_eio(c, text, core=0):
    return bytes([S_RAW_EIO, c, core]) + sb(text)


def s_disconnect(c, ns="/", core=0):
    return bytes([S_DISCONNECT, c, core, SIO_NS[ns]])


for name, data in {
    # Polling: handshake, CONNECT, GET, an event with an ack, the message echoed, a poll, pings
    # answered by GETs, then the ping timeout.
    "polling-connect-event": s_new() + s_get(0) + s_connect(0) + s_get(0)
    + s_event(0, "message-with-ack", ack=True, args=s_args(A_TEXT, b"hello")) + s_get(0)
    + s_event(0, "message", args=s_args(A_OBJECT, b"x")) + s_get(0, core=1)
    + s_advance(400) + s_get(0) + s_eio(0, b"3") + s_advance(2000) + s_get(0),
    # WebSocket: CONNECT to / and /custom, joins, room emits, broadcast, get-rooms, leave.
    "websocket-rooms": s_new(ws=True) + s_new(ws=True, core=1) + s_connect(0) + s_connect(1)
    + s_connect(0, "/custom") + s_connect(1, "/custom", core=1)
    + s_event(0, "join", ack=True, args=s_args(A_ROOM, room="a"))
    + s_event(1, "join", ack=True, args=s_args(A_ROOM, room="a"))
    + s_event(0, "to-room", args=s_args(A_ROOM_TEXT, b"hi room", room="a"))
    + s_event(1, "broadcast", args=s_args(A_TEXT, b"all"))
    + s_event(0, "get-rooms", ack=True)
    + s_event(0, "join", ns="/custom", ack=True, args=s_args(A_ROOM, room="room with space"))
    + s_event(1, "to-room", ns="/custom", args=s_args(A_ROOM_TEXT, b"x", room="room with space"))
    + s_event(0, "leave", ack=True, args=s_args(A_ROOM, room="a"))
    + s_event(1, "to-room", args=s_args(A_ROOM_TEXT, b"gone?", room="a"))
    + s_disconnect(1, "/custom") + s_event(0, "bye"),
    # Polling, then an upgrade to WebSocket (probe, 2probe, 5), events over the WebSocket.
    "polling-upgrade": s_new() + s_get(0) + s_connect(0) + s_get(0) + s_upgrade(0)
    + s_event(0, "message", args=s_args(A_TEXT, b"after upgrade"))
    + s_event(0, "message-with-ack", ack=True, args=s_args(A_NESTED, b"deep"))
    + s_advance(400) + s_advance(400),
    # An upgrade that goes wrong: the probe is closed, polling goes on; a second probe times out.
    "polling-probe-closed": s_new() + s_connect(0) + bytes([S_PROBE, 0, 0, S_PROBE_OP, 0, 3])
    + s_get(0) + bytes([S_PROBE, 0, 1, S_PROBE_OP, 0, 2]) + s_advance(2000) + s_get(0),
    # Namespaces: /private refused without and accepted with the token, /nope unknown.
    "namespaces-auth": s_new(ws=True) + s_connect(0, "/private") + s_connect(0, "/private", auth=2,
                                                                             raw=b'{"token":"nope"}')
    + s_connect(0, "/private", auth=1) + s_connect(0, "/nope") + s_connect(0)
    + s_event(0, "message", ns="/private", args=s_args(A_TEXT, b"secret"))
    + s_event(0, "message", ns="/nope") + s_disconnect(0, "/private")
    + s_event(0, "message", ns="/private") + s_disconnect(0)
    + s_connect(0, "/custom", auth=2, raw=b'{"x":'),
    # Binary events with attachments: exact, one missing, one extra, with an ack, to a room.
    "binary-attachments": s_new(ws=True) + s_connect(0)
    + s_binary(0, "message", declared=1, sent=2)
    + s_binary(0, "message-with-ack", declared=2, sent=2, ack=True, data=bytes(range(32)))
    + s_binary(0, "message", declared=0, sent=2) + s_binary(0, "broadcast", declared=1, sent=1)
    + s_new() + s_connect(1) + s_get(1)
    + s_binary(1, "message-with-ack", declared=3, sent=2, ack=True, data=bytes(range(30)))
    + s_get(1) + s_get(1, core=1)
    + s_binary(0, "message", declared=2, sent=0, data=b"abcdefghijklmnop") + s_event(0, "message"),
    # The server asks the client (emit-with-ack): answered, answered twice, unknown ids, timeout.
    "server-acks": s_new(ws=True) + s_connect(0)
    + s_event(0, "emit-with-ack", args=s_args(A_TEXT, b"q1"))
    + s_event(0, "emit-with-ack", args=s_args(A_NUMBERS))
    + s_ack(0, choice=1) + s_ack(0, choice=1) + s_ack(0, choice=0, unknown_id=77)
    + s_ack(0, choice=2, args=s_args(A_RAW, b"not json"))
    + s_event(0, "emit-with-ack") + s_advance(800)
    + s_new() + s_connect(1) + s_event(1, "emit-with-ack", args=s_args(A_TEXT, b"p")) + s_get(1)
    + s_ack(1, choice=1) + s_get(1),
    # Server-side disconnects, client DISCONNECT, Engine.IO close, close frames, dropped conns.
    "disconnects": s_new(ws=True) + s_new() + s_new(ws=True, core=1) + s_connect(0) + s_connect(1)
    + s_connect(2) + s_connect(0, "/custom") + s_event(0, "server-disconnect")
    + s_event(0, "message", ns="/custom") + s_event(1, "bye") + s_get(1)
    + bytes([S_CLOSE, 2, 0, 0]) + s_new() + s_connect(3) + bytes([S_CLOSE, 3, 0, 1])
    + bytes([S_DROP, 0, 0]) + s_get(3),
    # A stalled reader: the client stops reading while broadcasts pile up, then resumes.
    "stalled-reader": s_new(ws=True) + s_new(ws=True) + s_connect(0) + s_connect(1)
    + bytes([S_READING, 0, 1])
    + s_event(1, "broadcast", args=s_args(A_TEXT, b"y" * 250)) * 16
    + bytes([S_READING, 0, 0]) + s_event(0, "message"),
    # Hostile input: malformed Socket.IO packets, raw HTTP on new connections, huge numbers.
    "hostile": s_new() + s_connect(0) + s_eio(0, b'42["message",') + s_new(ws=True) + s_connect(1)
    + s_eio(1, b"4" + b"2" * 20) + s_eio(1, b'451-["x"]') + s_eio(1, b"40/custom,{")
    + bytes([S_RAW_CONN, 0, 0]) + sb(b"GET /socket.io/?EIO=3&transport=polling HTTP/1.1\r\n\r\n")
    + bytes([S_RAW_CONN, 1, 1]) + sb(b"POST / HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n")
    + bytes([S_RAW_CONN, 0, 0]) + sb(b"G")
    + s_event(1, "message", args=s_args(A_NUMBERS)) + s_event(1, "connect"),
    # Time: ping timeouts of a polling and a WebSocket client that never answer.
    "ping-timeouts": s_new() + s_new(ws=True) + s_connect(0) + s_connect(1)
    + s_event(1, "emit-with-ack") + s_advance(320) + s_get(0) + s_advance(2040) + s_advance(2040)
    + s_get(0) + s_event(1, "message"),
}.items():
    write("sio_session", name, data)


# chat_handlers: operations, each an opcode byte (% 8), a client-pick byte, then the operation's
# arguments (see `step` in fuzz_targets/chat_handlers.rs). JSON values are built by `value()`.
C_NEW, C_EVENT, C_ROOM, C_CREATE, C_TIME, C_LEAVE = 0, 1, 4, 5, 6, 7
CHAT_EVENTS = {e: i for i, e in enumerate([
    "all_chat", "chat", "sendMessage", "message", "chat message", "join room", "leave room",
    "create room", "typing", "no such event"])}
CHAT_KEYS = {k: i for i, k in enumerate([
    "message", "text", "roomId", "name", "receiverId", "to", "id", "user", "username",
    "publicKey"])}
CHAT_NAMES = {n: i for i, n in enumerate(["alice", "bob", "carol", "general"])}
# The harness's room list: the general room's id, its name, then every room created (ids).
GENERAL_ID, GENERAL_NAME, NEW_ROOM = 0, 1, 2


class Room:
    """A room id from the harness's list (`value` choice 6)."""
    def __init__(self, i):
        self.i = i


class Special:
    """`special_string(i)`: 0 "", 1 "   ", 2 "a\\0b", 3 accents, 4 emoji, 5 bidi, 6 2001 x,
    7 "general", 8 "GENERAL", 9 escapes."""
    def __init__(self, i):
        self.i = i


class Num:
    """A special number: 0 u64::MAX, 1 i64::MIN, 2 1e308, 3 -0.0, 4 2^64 and more."""
    def __init__(self, i):
        self.i = i


def v(x):
    """Encodes a JSON value in `value()`'s format (objects and arrays of at most 3 items)."""
    if x is None:
        return bytes([0])
    if x is True or x is False:
        return bytes([25 if x else 1])  # 25 % 12 == 1 and 25 & 0x10
    if isinstance(x, int):
        assert 0 <= x < 256
        return bytes([2, x])
    if isinstance(x, Num):
        return bytes([3, x.i])
    if isinstance(x, str):
        return bytes([4]) + sb(x.encode())
    if isinstance(x, Special):
        return bytes([5, x.i])
    if isinstance(x, Room):
        return bytes([6, x.i])
    if isinstance(x, list):
        assert len(x) < 4
        return bytes([7, len(x)]) + b"".join(v(i) for i in x)
    if isinstance(x, dict):
        assert len(x) < 4
        return bytes([9, len(x)]) + b"".join(bytes([CHAT_KEYS[k]]) + v(i) for k, i in x.items())
    raise TypeError(x)


def c_new(name="alice", auth=1, core=0, pick=0, values=()):
    """auth: 0 none, 1 {username}, 2 {userId, to: NAMES[pick % 4]}, 3 {to}, 4 {user, publicKey}
    (two values), 5 a value."""
    return bytes([C_NEW, pick, core, CHAT_NAMES[name], auth]) + b"".join(v(x) for x in values)


def c_event(c, ev, *args, ack=True, burst=0):
    """`burst` sends it 8 * burst times (1 to 16)."""
    if burst:
        ack_byte = 0xf0 | (burst - 1)
        if (ack_byte % 2 == 0) != ack:
            raise ValueError("a burst's ack follows the low bit: use an odd burst for acks")
    else:
        ack_byte = 0 if ack else 1
    return bytes([C_EVENT, c, CHAT_EVENTS[ev], ack_byte, len(args)]) + b"".join(v(a) for a in args)


def c_room(c, kind, room=GENERAL_ID, text=b"hi", ack=True):
    """kind: join, leave, message or typing, well-formed, to the harness's room `room`."""
    k = {"join": 0, "leave": 2, "message": 3, "typing": 4}[kind]
    return bytes([C_ROOM, c, room]) + sb(text) + bytes([k, 1 if ack else 0])


def c_create(c, name):
    """name: an int n for "room n", a Special, or any other value."""
    if isinstance(name, int):
        return bytes([C_CREATE, c, 1, name])
    if isinstance(name, Special):
        return bytes([C_CREATE, c, 2, name.i])
    return bytes([C_CREATE, c, 0]) + v(name)


def c_time(ms):
    return bytes([C_TIME, 0, min(255, ms // 20)])


def c_leave(c, how):
    """how: 0 namespace DISCONNECT, 1 Engine.IO close, 2 dropped connection, 3 malformed packet."""
    return bytes([C_LEAVE, c, how])


for name, data in {
    # Two users in rooms: join, messages, typing, a new room, not a member, leave, disconnect.
    "rooms": c_new("alice") + c_new("bob", core=1) + c_room(0, "join") + c_room(1, "join")
    + c_room(0, "message", text=b"hello general") + c_room(1, "typing") + c_room(1, "leave")
    + c_room(1, "message", text=b"not a member") + c_create(0, 3) + c_room(0, "join", NEW_ROOM)
    + c_room(0, "message", NEW_ROOM, b"first") + c_room(1, "join", NEW_ROOM)
    + c_room(1, "message", NEW_ROOM, b"second") + c_room(0, "leave", NEW_ROOM)
    + c_room(0, "join", GENERAL_NAME) + c_time(500) + c_leave(1, 0) + c_room(0, "typing", ack=False),
    # Every handled event with a well-formed payload and an ack, then without acks.
    "every-event": c_new("alice") + c_new("bob", core=1)
    + c_event(0, "all_chat", {"message": "hi all"})
    + c_event(0, "chat", {"to": "bob", "message": {"text": "ciphertext"}})
    + c_event(1, "chat", {"receiverId": "alice", "message": "x"})
    + c_event(0, "sendMessage", {"receiverId": "bob", "message": "hello bob"})
    + c_event(1, "message", {"message": "global hello"})
    + c_event(0, "chat message", "a plain string")
    + c_event(1, "chat message", {"text": "a plain object"})
    + c_event(0, "join room", {"roomId": Room(GENERAL_ID), "user": "alice"})
    + c_event(0, "chat message", {"roomId": Room(GENERAL_ID), "text": "in general"})
    + c_event(0, "typing", {"roomId": Room(GENERAL_ID)})
    + c_event(0, "create room", {"name": "Sports"})
    + c_event(1, "join room", {"roomId": Room(NEW_ROOM)})
    + c_event(1, "chat message", {"roomId": Room(NEW_ROOM), "text": "go team", "user": "bob"})
    + c_event(0, "leave room", {"roomId": Room(GENERAL_ID)})
    + c_event(0, "no such event", {"message": "?"}, ack=False)
    + c_event(0, "all_chat", {"message": [1, 2]}, ack=False)
    + c_event(1, "sendMessage", {"receiverId": "alice", "message": "no ack"}, ack=False)
    + c_event(1, "message", {"message": "no ack"}, ack=False)
    + c_event(1, "typing", {"roomId": Room(NEW_ROOM)}, ack=False)
    + c_time(300),
    # Wrong payloads for every event, with acks (failure answers) and without (error events).
    "invalid-payloads": c_new("carol") + c_new("bob", auth=0)
    + c_event(0, "all_chat", None) + c_event(0, "all_chat", "no object")
    + c_event(0, "chat", {"message": "no receiver"}) + c_event(0, "chat", {"to": "", "message": 1})
    + c_event(0, "sendMessage", {"receiverId": 5, "message": "x"})
    + c_event(0, "sendMessage", {"receiverId": Special(2), "message": "x"})
    + c_event(0, "sendMessage", {"receiverId": "bob", "message": Special(1)})
    + c_event(0, "sendMessage", {"receiverId": "bob", "message": Special(6)})
    + c_event(1, "sendMessage", {"receiverId": "carol", "message": "anonymous"})
    + c_event(0, "message", [Num(0), Num(4)]) + c_event(0, "message", {"message": Num(2)})
    + c_event(0, "message", {"message": Special(0)}) + c_event(1, "message", {"message": "x", "user": Special(4)})
    + c_event(0, "chat message", 7) + c_event(0, "chat message", Special(1))
    + c_event(0, "chat message", {"roomId": "nope", "text": "x"})
    + c_event(0, "chat message", {"roomId": Room(GENERAL_ID), "text": Special(6)})
    + c_event(0, "join room", {"roomId": Room(GENERAL_NAME)}) + c_event(0, "join room", {"roomId": None})
    + c_event(0, "leave room", {"roomId": Room(GENERAL_ID)}) + c_event(0, "typing", {"roomId": 3})
    + c_event(0, "create room", {"name": [["deep", [True]]]}) + c_event(0, "create room", None)
    + c_event(0, "join room", [[[[None]]]], ack=False) + c_event(0, "message", {}, ack=False)
    + c_event(0, "chat message", {"roomId": Room(GENERAL_ID)}, ack=False)
    + c_event(0, "sendMessage", "x", ack=False) + c_event(1, "chat", None, ack=False)
    + c_event(0, "typing", {"roomId": Room(GENERAL_ID)}, ack=False),
    # Direct messages: userId with a peer (`to`); anonymous with a peer is refused.
    "direct-messages": c_new("alice", auth=2, pick=1) + c_new("bob", auth=2, pick=0, core=1)
    + c_new("carol", auth=3) + c_event(0, "chat message", "hi bob")
    + c_event(1, "chat message", {"text": "hi alice"}) + c_event(2, "chat message", "who am I?")
    + c_event(2, "chat message", "no ack", ack=False) + c_event(0, "chat message", Special(0))
    + c_event(1, "sendMessage", {"receiverId": "alice", "message": "private"})
    + c_event(0, "chat", {"id": "bob", "message": None}) + c_time(200) + c_leave(1, 2)
    + c_event(0, "chat message", "bob left"),
    # Rate limits: a burst of 72 acked messages (20 pass, 50 rejections in 10 s disconnect the
    # socket), an unacked burst of typing, then time refills the bucket.
    "rate-limit-abuse": c_new("alice") + c_new("bob", core=1) + c_room(1, "join")
    + c_event(0, "message", {"message": "spam"}, burst=9)
    + c_event(1, "typing", {"roomId": Room(GENERAL_ID)}, ack=False, burst=2)
    + c_event(1, "chat message", {"roomId": Room(GENERAL_ID), "text": "x"}, ack=False, burst=4)
    + c_time(2000) + c_event(1, "all_chat", {"message": "after the pause"})
    + c_event(1, "join room", {"roomId": Room(GENERAL_ID)}, ack=False, burst=8)
    + c_event(1, "chat message", "plain spam", burst=7),
    # Room names: valid, duplicate, case-insensitive duplicate of general, blank, control
    # characters, too long, not a string; then joining up to the room limit.
    "create-rooms": c_new("alice") + c_new("bob", auth=0, core=1) + c_create(0, 1) + c_create(1, 1)
    + c_create(0, 2) + c_create(0, Special(8)) + c_create(0, Special(7)) + c_create(0, Special(1))
    + c_create(0, Special(2)) + c_create(0, Special(6)) + c_create(0, Special(4))
    + c_create(0, Special(5)) + c_create(1, 42) + c_create(1, "  padded  ")
    + c_room(0, "join", NEW_ROOM) + c_room(0, "join", NEW_ROOM + 1) + c_room(0, "join", NEW_ROOM + 2)
    + c_room(1, "join", NEW_ROOM + 1) + c_room(1, "message", NEW_ROOM + 1, b"hey")
    + c_time(100) + c_leave(0, 3) + c_room(1, "message", NEW_ROOM + 1, b"alone"),
    # Identities: none, user/publicKey values, garbage auth; presence over time; every way out.
    "identities-presence": c_new("alice", auth=0)
    + c_new("bob", auth=4, values=("bob", {"id": "pk", "name": 1}))
    + c_new("carol", auth=5, values=({"username": Special(3)},)) + c_new("general", auth=5, values=(7,))
    + c_event(0, "message", {"message": "anon", "user": "mallory"})
    + c_event(1, "message", {"message": "from bob"}) + c_event(2, "chat message", "hi")
    + c_event(3, "chat message", "refused?") + c_time(150) + c_time(150) + c_leave(0, 0)
    + c_time(150) + c_leave(1, 1) + c_leave(2, 2) + c_time(5000),
}.items():
    write("chat_handlers", name, data)
