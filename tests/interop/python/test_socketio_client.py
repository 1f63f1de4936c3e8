"""python-socketio client against the server under test.

Covers: each transport (websocket only, polling only, polling upgraded to websocket), binary
arguments both ways, acks both ways, namespaces (`/custom`, an unknown namespace, both over one
connection), the auth object, rooms among three clients, broadcast, server and client
disconnect, and a client that answers pings staying connected.
"""

import time

import pytest
import requests
import socketio

from conftest import WAIT_S, Recorder

TRANSPORTS = [["websocket"], ["polling"]]
EVENTS = ["auth", "message-back", "room-msg", "broadcast-msg", "server-ack-result"]


def make_client(clients, namespaces=("/",)):
    """A python-socketio client whose events (on every namespace) land in a Recorder."""
    sio = socketio.Client(reconnection=False)
    rec = Recorder()
    for ns in namespaces:
        for event in EVENTS:
            sio.on(event, rec.handler(f"{ns}:{event}"), namespace=ns)
        sio.on("disconnect", rec.handler(f"{ns}:disconnect"), namespace=ns)
        sio.on("connect_error", rec.handler(f"{ns}:connect_error"), namespace=ns)
    clients.append(sio)
    return sio, rec


def connect(clients, url, transports=None, namespaces=("/",), auth=None):
    sio, rec = make_client(clients, namespaces)
    sio.connect(url, transports=transports, namespaces=list(namespaces), auth=auth, wait_timeout=WAIT_S)
    return sio, rec


def call(sio, event, *args, namespace="/"):
    """Emit with an ack and return the ack's arguments as a list."""
    got = Recorder()
    sio.emit(event, args, namespace=namespace, callback=got.handler("ack"))
    return list(got.get("ack"))


def session_gone(url, sid, timeout=WAIT_S):
    """True once the server answers a polling GET for `sid` with 400 code 1."""
    time.sleep(0.1)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        res = requests.get(f"{url}/socket.io/", params={"EIO": "4", "transport": "polling", "sid": sid}, timeout=2)
        if res.status_code == 400 and res.json() == {"code": 1, "message": "Session ID unknown"}:
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("transports", TRANSPORTS, ids=lambda t: "+".join(t))
def test_connect_greet_and_echo(clients, url, transports):
    sio, rec = connect(clients, url, transports)
    assert sio.transport() == transports[0]
    assert rec.get("/:auth") == ({},)
    args = ("hello", 42, {"nested": {"list": [1, "two", None, True]}}, "héllo ☃ 😀")
    sio.emit("message", args)
    assert rec.get("/:message-back") == args


def test_polling_then_upgrade(clients, url):
    sio, rec = connect(clients, url, ["polling", "websocket"])
    assert rec.get("/:auth") == ({},)
    deadline = time.monotonic() + WAIT_S
    while sio.transport() != "websocket" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sio.transport() == "websocket"
    sio.emit("message", "after upgrade")
    assert rec.get("/:message-back") == ("after upgrade",)


def test_large_message_over_polling(clients, url):
    sio, rec = connect(clients, url, ["polling"])
    big = "y" * 300_000
    sio.emit("message", big)
    assert rec.get("/:message-back") == (big,)


BINARY_ARGS = (
    bytes(range(256)),
    {"blob": b"abc", "list": [1, b"\xff\x00\xfe", {"deeper": bytes(50_000)}], "name": "nested"},
    "text between",
    [b"\x07", None, b"\x08\x09"],
)


@pytest.mark.parametrize("transports", TRANSPORTS, ids=lambda t: "+".join(t))
def test_binary_event_round_trip(clients, url, transports):
    sio, rec = connect(clients, url, transports)
    sio.emit("message", BINARY_ARGS)
    assert rec.get("/:message-back") == BINARY_ARGS


@pytest.mark.parametrize("transports", TRANSPORTS, ids=lambda t: "+".join(t))
def test_binary_in_acks_both_ways(clients, url, transports):
    sio, rec = connect(clients, url, transports)
    assert call(sio, "message-with-ack", *BINARY_ARGS) == list(BINARY_ARGS)

    sio.on("server-ack-request", lambda payload: {"echoed": payload, "extra": [b"\x01\x02\x03", b"\x04"]})
    sio.emit("emit-with-ack", {"request": b"from client", "n": 1})
    assert rec.get("/:server-ack-result") == (
        {"echoed": {"request": b"from client", "n": 1}, "extra": [b"\x01\x02\x03", b"\x04"]},
    )


@pytest.mark.parametrize("transports", TRANSPORTS, ids=lambda t: "+".join(t))
def test_acks_both_ways(clients, url, transports):
    sio, rec = connect(clients, url, transports)
    assert call(sio, "message-with-ack", "one", 2, {"three": [3]}) == ["one", 2, {"three": [3]}]
    assert sio.call("message-with-ack", "single", timeout=WAIT_S) == "single"

    requests_seen = Recorder()

    def on_request(payload):
        requests_seen.put("request", payload)
        return {"answer": "pong!", "list": [1, 2]}

    sio.on("server-ack-request", on_request)
    sio.emit("emit-with-ack", {"question": "ping?"})
    assert requests_seen.get("request") == ({"question": "ping?"},)
    assert rec.get("/:server-ack-result") == ({"answer": "pong!", "list": [1, 2]},)


def test_many_acks_in_flight(clients, url):
    sio, _ = connect(clients, url, ["websocket"])
    got = Recorder()
    for i in range(50):
        sio.emit("message-with-ack", (i, f"n{i}"), callback=got.handler(f"ack{i}"))
    for i in range(50):
        assert got.get(f"ack{i}") == (i, f"n{i}")


@pytest.mark.parametrize("transports", TRANSPORTS, ids=lambda t: "+".join(t))
def test_custom_namespace(clients, url, transports):
    sio, rec = connect(clients, url, transports, namespaces=("/custom",))
    assert rec.get("/custom:auth") == ({},)
    assert "/custom" in sio.namespaces


@pytest.mark.parametrize("transports", TRANSPORTS, ids=lambda t: "+".join(t))
def test_unknown_namespace_is_refused(clients, url, transports):
    sio, rec = make_client(clients, namespaces=("/nope",))
    with pytest.raises(socketio.exceptions.ConnectionError):
        sio.connect(url, transports=transports, namespaces=["/nope"], wait_timeout=WAIT_S)
    assert rec.get("/nope:connect_error") == ({"message": "Invalid namespace"},)


@pytest.mark.parametrize("transports", TRANSPORTS, ids=lambda t: "+".join(t))
def test_two_namespaces_over_one_connection(clients, url, transports):
    auth = {"token": "s3cr3t", "user": {"id": 7, "roles": ["a", "b"]}, "unicode": "ü ☃"}
    sio, rec = connect(clients, url, transports, namespaces=("/", "/custom"), auth=auth)
    assert rec.get("/:auth") == (auth,)
    assert rec.get("/custom:auth") == (auth,)
    assert set(sio.namespaces) == {"/", "/custom"}
    sid = sio.eio.sid
    sio.emit("message", "over the shared connection")
    assert rec.get("/:message-back") == ("over the shared connection",)
    # One Engine.IO session carries both namespaces, and it lives through a heartbeat cycle.
    time.sleep(2 * 0.5)
    assert sio.eio.sid == sid
    assert sio.connected


@pytest.mark.parametrize("transports", TRANSPORTS, ids=lambda t: "+".join(t))
def test_auth_round_trip(clients, url, transports):
    auth = {"token": "abc", "n": 1, "nested": {"x": [1, 2]}, "flag": False}
    _, rec = connect(clients, url, transports, auth=auth)
    assert rec.get("/:auth") == (auth,)


def test_room_messages_among_three_clients(clients, url):
    members = [connect(clients, url, t) for t in (["websocket"], ["polling"], ["polling", "websocket"])]
    (a, ra), (b, rb), (c, rc) = members
    for sio, _ in members:
        assert call(sio, "join", "lobby") == [True]
    assert call(a, "get-rooms") == [sorted([a.get_sid("/"), "lobby"])]

    a.emit("to-room", ("lobby", {"text": "hi room"}))
    assert rb.get("/:room-msg") == ({"text": "hi room"},)
    assert rc.get("/:room-msg") == ({"text": "hi room"},)
    assert ra.none("/:room-msg"), "the sender does not get its own room message"

    assert call(c, "leave", "lobby") == [True]
    assert call(c, "get-rooms") == [[c.get_sid("/")]]
    a.emit("to-room", ("lobby", b"\x00binary\xff"))
    assert rb.get("/:room-msg") == (b"\x00binary\xff",)
    assert rc.none("/:room-msg"), "a client that left the room gets nothing"


def test_broadcast(clients, url):
    (a, ra), (b, rb), (c, rc) = [connect(clients, url, t) for t in (["websocket"], ["polling"], ["websocket"])]
    _, rother = connect(clients, url, ["websocket"], namespaces=("/custom",))
    a.emit("broadcast", {"to": "everyone"})
    assert rb.get("/:broadcast-msg") == ({"to": "everyone"},)
    assert rc.get("/:broadcast-msg") == ({"to": "everyone"},)
    assert ra.none("/:broadcast-msg"), "the sender is excluded"
    assert rother.none("/custom:broadcast-msg", 0.0), "other namespaces are not reached"


@pytest.mark.parametrize("transports", TRANSPORTS, ids=lambda t: "+".join(t))
def test_server_disconnect(clients, url, transports):
    sio, rec = connect(clients, url, transports)
    sio.emit("server-disconnect")
    # python-socketio names this reason SERVER_DISCONNECT ("server disconnect"); socket.io-client
    # calls the same event "io server disconnect".
    assert rec.get("/:disconnect") == (socketio.Client.reason.SERVER_DISCONNECT,)
    deadline = time.monotonic() + WAIT_S
    while sio.connected and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not sio.connected


@pytest.mark.parametrize("transports", TRANSPORTS, ids=lambda t: "+".join(t))
def test_client_disconnect(clients, url, transports):
    sio, rec = connect(clients, url, transports)
    sid = sio.eio.sid
    sio.disconnect()
    assert rec.get("/:disconnect") == (socketio.Client.reason.CLIENT_DISCONNECT,)
    assert not sio.connected
    assert session_gone(url, sid), "the server forgot the session"


@pytest.mark.parametrize("transports", TRANSPORTS, ids=lambda t: "+".join(t))
def test_answering_client_stays_connected(clients, url, transports):
    sio, rec = connect(clients, url, transports)
    sid = sio.eio.sid
    assert rec.none("/:disconnect", 2.5)
    assert sio.connected
    assert sio.eio.sid == sid
    sio.emit("message", "alive")
    assert rec.get("/:message-back") == ("alive",)

