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
