"""python-engineio client against the plain Engine.IO echo endpoint at `/engine.io/`:
text and binary messages over websocket, polling, and polling upgraded to websocket."""

import engineio
import pytest

from conftest import Recorder

# No JSON-looking text: python-engineio hands a text message that parses as JSON to the
# application as the decoded object.
TEXTS = ["hello", "héllo ☃ 😀", "4", "x" * 100_000]
BINARIES = [bytes([0, 1, 2, 3, 255]), b"binary text", bytes([0xAB]) * 70_000]


def open_client(clients, url, transports):
    client = engineio.Client()
    rec = Recorder()
    client.on("message", rec.handler("message"))
    client.connect(url, transports=transports, engineio_path="engine.io")
    clients.append(client)
    return client, rec


@pytest.mark.parametrize("transports", [["websocket"], ["polling"], ["polling", "websocket"]], ids="+".join)
def test_echo_text_and_binary(clients, url, transports):
    client, rec = open_client(clients, url, transports)
    assert client.transport() == transports[-1]
    for message in TEXTS + BINARIES:
        client.send(message)
    for message in TEXTS + BINARIES:
        (echoed,) = rec.get("message")
        assert type(echoed) is type(message)
        assert echoed == message
