"""Raw Engine.IO v4 / Socket.IO v5 with `requests` and `websocket-client`.

Covers: the exact handshake and error answers over HTTP, the second concurrent GET, the close
packet, the polling -> websocket upgrade done by hand (probe, noop, upgrade), Socket.IO packets
over a raw WebSocket (text and binary frames), and heartbeats: the server must close a session
whose client stops answering pings within pingInterval + pingTimeout (+ margin), over websocket
and over polling, and must keep one that answers.
"""

import json
import threading
import time

import pytest
import requests
import websocket

from conftest import MAX_PAYLOAD, PING_INTERVAL_S, PING_TIMEOUT_S

SEPARATOR = "\x1e"
HEARTBEAT_DEADLINE_S = PING_INTERVAL_S + PING_TIMEOUT_S
# Slack for scheduling and loopback latency on a busy 2-core machine.
MARGIN_S = 1.0

SESSION_UNKNOWN = {"code": 1, "message": "Session ID unknown"}
TRANSPORT_UNKNOWN = {"code": 0, "message": "Transport unknown"}
BAD_HANDSHAKE_METHOD = {"code": 2, "message": "Bad handshake method"}
BAD_REQUEST = {"code": 3, "message": "Bad request"}
UNSUPPORTED_VERSION = {"code": 5, "message": "Unsupported protocol version"}


def polling(url, path="/socket.io/", **params):
    return f"{url}{path}", {"EIO": "4", "transport": "polling", **params}


def ws_url(url, path="/socket.io/", sid=None):
    query = "EIO=4&transport=websocket" + (f"&sid={sid}" if sid else "")
    return f"{url.replace('http://', 'ws://', 1)}{path}?{query}"


def assert_json_error(res, expected):
    assert res.status_code == 400, res.text
    assert res.headers.get("content-type", "").startswith("application/json")
    assert res.json() == expected


def handshake(url, path="/socket.io/"):
    endpoint, params = polling(url, path)
    res = requests.get(endpoint, params=params, timeout=3)
    assert res.status_code == 200
    assert res.text.startswith("0"), res.text
    return json.loads(res.text[1:])


class RawPolling:
    """A hand-driven long-polling session."""

    def __init__(self, url, path="/socket.io/"):
        self.open_packet = handshake(url, path)
        self.sid = self.open_packet["sid"]
        self.endpoint, self.params = polling(url, path, sid=self.sid)

    def get(self, timeout=3):
        return requests.get(self.endpoint, params=self.params, timeout=timeout)

    def post(self, body):
        res = requests.post(self.endpoint, params=self.params, data=body.encode(), timeout=3)
        assert res.status_code == 200, res.text
        return res

    def collect(self, n):
        """Polls (answering pings) until `n` packets other than pings arrived."""
        packets = []
        for _ in range(20):
            if len(packets) >= n:
                break
            res = self.get()
            assert res.status_code == 200, res.text
            for packet in res.text.split(SEPARATOR):
                if packet == "2":
                    self.post("3")
                else:
                    packets.append(packet)
        return packets


def raw_ws(url, path="/socket.io/", sid=None):
    return websocket.create_connection(ws_url(url, path, sid), timeout=3)


def recv_frames_until_close(ws, deadline_s, answer_pings=False):
    """Reads frames until the server closes; returns (text packets, close frame payload, seconds)."""
    start = time.monotonic()
    packets = []
    ws.settimeout(deadline_s)
    while True:
        try:
            opcode, data = ws.recv_data(control_frame=True)
        except websocket.WebSocketTimeoutException:
            raise AssertionError(f"server did not close within {deadline_s} s; got {packets}") from None
        except websocket.WebSocketConnectionClosedException:
            return packets, None, time.monotonic() - start
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            return packets, data, time.monotonic() - start
        if opcode == websocket.ABNF.OPCODE_TEXT:
            packets.append(data.decode())
            if answer_pings and data == b"2":
                ws.send("3")
        if time.monotonic() - start > deadline_s:
            raise AssertionError(f"server did not close within {deadline_s} s; got {packets}")


# --- HTTP handshake and errors -------------------------------------------------------------


@pytest.mark.parametrize("path", ["/socket.io/", "/engine.io/"])
def test_handshake_open_packet(url, path):
    endpoint, params = polling(url, path)
    res = requests.get(endpoint, params=params, timeout=3)
    assert res.status_code == 200
    assert res.headers.get("content-type", "").startswith("text/plain")
    assert res.text[0] == "0"
    open_packet = json.loads(res.text[1:])
    assert sorted(open_packet) == ["maxPayload", "pingInterval", "pingTimeout", "sid", "upgrades"]
    assert isinstance(open_packet["sid"], str) and open_packet["sid"]
    assert open_packet["upgrades"] == ["websocket"]
    assert open_packet["pingInterval"] == 300
    assert open_packet["pingTimeout"] == 200
    assert open_packet["maxPayload"] == MAX_PAYLOAD


def test_unknown_sid(url):
    endpoint, params = polling(url, sid="doesnotexist")
    assert_json_error(requests.get(endpoint, params=params, timeout=3), SESSION_UNKNOWN)
    assert_json_error(requests.post(endpoint, params=params, data=b"40", timeout=3), SESSION_UNKNOWN)


@pytest.mark.parametrize("params", [{"EIO": "4", "transport": "smoke-signal"}, {"EIO": "4"}])
def test_bad_transport(url, params):
    assert_json_error(requests.get(f"{url}/socket.io/", params=params, timeout=3), TRANSPORT_UNKNOWN)


@pytest.mark.parametrize("eio", [None, "3", "5", "abc"])
def test_missing_or_bad_eio(url, eio):
    params = {"transport": "polling"}
    if eio is not None:
        params["EIO"] = eio
    assert_json_error(requests.get(f"{url}/socket.io/", params=params, timeout=3), UNSUPPORTED_VERSION)


def test_post_without_sid(url):
    endpoint, params = polling(url)
    assert_json_error(requests.post(endpoint, params=params, data=b"40", timeout=3), BAD_HANDSHAKE_METHOD)


def test_websocket_transport_without_upgrade_headers(url):
    res = requests.get(f"{url}/socket.io/", params={"EIO": "4", "transport": "websocket"}, timeout=3)
    assert_json_error(res, BAD_REQUEST)


def test_second_concurrent_get_closes_session(url):
    session = RawPolling(url)
    first = {}

    def park():
        res = session.get()
        first["status"], first["body"] = res.status_code, res.text

    parked = threading.Thread(target=park)
    parked.start()
    time.sleep(0.1)  # let the first GET reach the server; the first ping is due after 300 ms
    second = session.get()
    parked.join(3)
    assert not parked.is_alive()
    assert second.status_code == 400
    assert first == {"status": 200, "body": "1"}, "the parked GET gets the close packet"
    assert_json_error(session.get(), SESSION_UNKNOWN)


def test_close_packet_ends_session(url):
    session = RawPolling(url)
    session.post("1")
    time.sleep(0.05)
    assert_json_error(session.get(), SESSION_UNKNOWN)


def test_socketio_over_raw_polling(url):
    session = RawPolling(url)
    assert session.post("40").text == "ok"
    connect, greeting = session.collect(2)
    assert connect.startswith('40{"sid":')
    assert greeting == '42["auth",{}]'
    session.post(f'42["message","hi"]{SEPARATOR}4212["message-with-ack",1,"two"]')
    assert sorted(session.collect(2)) == ['42["message-back","hi"]', '4312[1,"two"]']
    session.post("40/nope,")
    assert session.collect(1) == ['44/nope,{"message":"Invalid namespace"}']


# --- upgrade and raw WebSocket ---------------------------------------------------------------


def test_manual_upgrade_from_polling(url):
    session = RawPolling(url)
    parked = {}

    def park():
        res = session.get()
        parked["status"], parked["body"] = res.status_code, res.text

    poller = threading.Thread(target=park)
    poller.start()
    time.sleep(0.1)
    ws = raw_ws(url, sid=session.sid)
    try:
        ws.send("2probe")
        assert ws.recv() == "3probe"
        # The server releases the parked GET with a noop so the client can pause polling.
        poller.join(1.0)
        assert not poller.is_alive(), "parked GET was not released after the probe"
        assert parked == {"status": 200, "body": "6"}
        ws.send("5")
        time.sleep(0.05)
        # Polling is over for this session: the server refuses it as a transport mismatch.
        assert_json_error(session.get(), BAD_REQUEST)
        ws.send("40")
        assert ws.recv().startswith('40{"sid":')
        assert ws.recv() == '42["auth",{}]'
        ws.send('42["message","over ws"]')
        assert ws.recv() == '42["message-back","over ws"]'
    finally:
        ws.close()


def test_raw_websocket_open_packet_and_binary_frames(url):
    ws = raw_ws(url)
    try:
        opcode, data = ws.recv_data()
        assert opcode == websocket.ABNF.OPCODE_TEXT
        assert data[:1] == b"0"
        open_packet = json.loads(data[1:])
        assert sorted(open_packet) == ["maxPayload", "pingInterval", "pingTimeout", "sid", "upgrades"]
        assert open_packet["upgrades"] == [], "nothing to upgrade to from websocket"
        ws.send("40")
        assert ws.recv().startswith('40{"sid":')
        assert ws.recv() == '42["auth",{}]'
        # Two attachments, one of them empty, as raw binary frames (no "b" prefix on websocket).
        ws.send('452-["message",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]')
        ws.send_binary(b"\x01\x02")
        ws.send_binary(b"")
        assert ws.recv_data() == (
            websocket.ABNF.OPCODE_TEXT,
            b'452-["message-back",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]',
        )
        assert ws.recv_data() == (websocket.ABNF.OPCODE_BINARY, b"\x01\x02")
        assert ws.recv_data() == (websocket.ABNF.OPCODE_BINARY, b"")
    finally:
        ws.close()


def test_server_namespace_disconnect_keeps_engineio_session(url):
    ws = raw_ws(url)
    try:
        ws.recv()
        ws.send("40")
        ws.recv()
        ws.recv()
        ws.send('42["server-disconnect"]')
        assert ws.recv() == "41"
        # The Engine.IO session outlives the namespace: pings keep coming and are answered.
        ws.settimeout(2 * HEARTBEAT_DEADLINE_S + MARGIN_S)
        assert ws.recv() == "2"
        ws.send("3")
        ws.send("40")
        assert ws.recv().startswith('40{"sid":')
    finally:
        ws.close()


# --- heartbeats -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/socket.io/", "/engine.io/"])
def test_websocket_ping_timeout_closes_session(url, path):
    ws = raw_ws(url, path)
    try:
        start = time.monotonic()
        assert ws.recv().startswith("0{")
        if path == "/socket.io/":
            ws.send("40")
        packets, close_payload, _ = recv_frames_until_close(ws, HEARTBEAT_DEADLINE_S + MARGIN_S)
        elapsed = time.monotonic() - start
        assert "2" in packets, "the server pinged before giving up"
        assert elapsed >= HEARTBEAT_DEADLINE_S - 0.1, f"closed after {elapsed:.3f} s"
        # The reference server sends a close frame without a status code (seen as 1005).
        assert close_payload in (None, b"") or len(close_payload) >= 2
    finally:
        ws.close()


def test_polling_ping_timeout_closes_session(url):
    session = RawPolling(url)
    # Never poll: the ping waits in the buffer, no pong comes, and the session must be dropped.
    time.sleep(HEARTBEAT_DEADLINE_S + MARGIN_S)
    assert_json_error(session.get(), SESSION_UNKNOWN)


def test_websocket_client_answering_pings_stays(url):
    ws = raw_ws(url)
    try:
        ws.recv()
        ws.send("40")
        ws.recv()
        ws.recv()
        start = time.monotonic()
        pings = 0
        ws.settimeout(1.0)
        while time.monotonic() - start < 2.5:
            message = ws.recv()
            if message == "2":
                pings += 1
                ws.send("3")
        assert pings >= 5, f"only {pings} pings in 2.5 s"
        ws.send('42["message","alive"]')
        assert ws.recv() == '42["message-back","alive"]'
    finally:
        ws.close()


def test_polling_client_answering_pings_stays(url):
    session = RawPolling(url)
    # Join a namespace first, or the connect timeout (1 s) would end the session.
    session.post("40")
    start = time.monotonic()
    pings = 0
    while time.monotonic() - start < 2.5:
        res = session.get()
        assert res.status_code == 200, f"session dropped after {time.monotonic() - start:.2f} s: {res.text}"
        for packet in res.text.split(SEPARATOR):
            if packet == "2":
                pings += 1
                session.post("3")
    assert pings >= 5, f"only {pings} pings in 2.5 s"


# --- connect timeout ------------------------------------------------------------------------

CONNECT_TIMEOUT_S = 1.0


def test_websocket_without_namespace_connect_is_closed_after_connect_timeout(url):
    ws = raw_ws(url)
    try:
        start = time.monotonic()
        assert ws.recv().startswith("0{")
        # Answer pings but never send a Socket.IO CONNECT.
        packets, _, _ = recv_frames_until_close(ws, CONNECT_TIMEOUT_S + MARGIN_S, answer_pings=True)
        elapsed = time.monotonic() - start
        assert elapsed >= CONNECT_TIMEOUT_S - 0.1, f"closed after {elapsed:.3f} s"
        assert all(p == "2" for p in packets), packets
    finally:
        ws.close()


def test_polling_without_namespace_connect_is_closed_after_connect_timeout(url):
    session = RawPolling(url)
    start = time.monotonic()
    packets = []
    while time.monotonic() - start < CONNECT_TIMEOUT_S + MARGIN_S:
        res = session.get()
        if res.status_code != 200:
            break
        for packet in res.text.split(SEPARATOR):
            packets.append(packet)
            if packet == "2":
                session.post("3")
        if "1" in packets:
            break
    elapsed = time.monotonic() - start
    assert "1" in packets, f"no close packet; got {packets}"
    assert elapsed >= CONNECT_TIMEOUT_S - 0.1, f"closed after {elapsed:.3f} s"
    assert_json_error(session.get(), SESSION_UNKNOWN)
