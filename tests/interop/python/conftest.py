"""Fixtures for the Python interop tests: the server under test and event recorders.

The server under test is the command line in SOCKEYE_SERVER_CMD, run through `sh -c` with the
repository root as its working directory (so `node tests/interop/reference-server.js` works
from anywhere). Each test module gets its own server on a free port; it is killed, whole process
group included, when the module finishes, whether its tests passed or not.
"""

import os
import queue
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]
LISTENING_LINE = re.compile(r"^sockeye listening on (http://\S+)\s*$")
START_TIMEOUT_S = 15.0

# The conformance app's configuration, as announced in its handshake.
PING_INTERVAL_S = 0.3
PING_TIMEOUT_S = 0.2
MAX_PAYLOAD = 1_000_000

# How long to wait for something that should happen, and before concluding that something
# that should not happen did not.
WAIT_S = 3.0
SILENCE_S = 0.3


class ServerProcess:
    def __init__(self, command):
        self.command = command
        self.output = []
        self.url = None
        self.proc = subprocess.Popen(
            ["sh", "-c", f"exec {command} --host 127.0.0.1 --port 0"],
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self._lines = queue.Queue()
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self):
        # Keeps reading so the server can never block on a full pipe.
        for line in self.proc.stdout:
            self.output.append(line)
            self._lines.put(line)
        self._lines.put(None)

    def wait_listening(self):
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                raise RuntimeError(f"server exited before listening:\n{''.join(self.output)}")
            match = LISTENING_LINE.match(line)
            if match:
                self.url = match.group(1)
                return self.url
        raise RuntimeError(
            f"server did not print its listening line within {START_TIMEOUT_S} s:\n{''.join(self.output)}"
        )

    def kill(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def start_server():
    command = os.environ.get("SOCKEYE_SERVER_CMD", "").strip()
    if not command:
        raise RuntimeError(
            "SOCKEYE_SERVER_CMD is not set. Use e.g.\n"
            '  SOCKEYE_SERVER_CMD="node tests/interop/reference-server.js" python -m pytest\n'
            '  SOCKEYE_SERVER_CMD="target/release/sockeye --app echo" python -m pytest'
        )
    server = ServerProcess(command)
    try:
        server.wait_listening()
    except BaseException:
        server.kill()
        raise
    return server


@pytest.fixture(scope="module")
def server():
    srv = start_server()
    try:
        yield srv
    finally:
        srv.kill()


@pytest.fixture(scope="module")
def url(server):
    return server.url


class Recorder:
    """Collects the arguments of events, one queue per event name, for bounded waiting."""

    def __init__(self):
        self._queues = {}
        self._lock = threading.Lock()

    def _queue(self, event):
        with self._lock:
            return self._queues.setdefault(event, queue.Queue())

    def put(self, event, *args):
        self._queue(event).put(args)

    def handler(self, event):
        return lambda *args: self.put(event, *args)

    def get(self, event, timeout=WAIT_S):
        try:
            return self._queue(event).get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f'timed out after {timeout} s waiting for "{event}"') from None

    def none(self, event, timeout=SILENCE_S):
        """True if `event` does not occur within `timeout`."""
        try:
            self._queue(event).get(timeout=timeout)
            return False
        except queue.Empty:
            return True


@pytest.fixture
def clients():
    """Opened python-socketio / engine.io clients, all disconnected after the test."""
    opened = []
    yield opened
    for client in opened:
        try:
            client.disconnect()
        except Exception:  # noqa: BLE001 - best effort; the server is killed after the module.
            pass
