// Heartbeats. The server pings every pingInterval (300 ms) and must drop a client that does not
// answer within pingTimeout (200 ms); a client that answers must stay connected indefinitely.
// The silent client is an engine.io-client socket whose pongs are dropped and whose own
// ping-timeout timer is disabled, so only the server can end the session.
"use strict";

const { test, before, after, afterEach } = require("node:test");
const assert = require("node:assert/strict");
const { Socket: EngineSocket } = require("engine.io-client");
const {
  PING_INTERVAL_MS,
  PING_TIMEOUT_MS,
  startServer,
  connectSocket,
  once,
  happensWithin,
  Clients,
} = require("./harness");

let server;
const clients = new Clients();

before(async () => {
  server = await startServer();
});
afterEach(() => clients.closeAll());
after(async () => {
  clients.closeAll();
  await server?.stop();
});

// Slack for scheduling and loopback latency on a busy 2-core machine.
const MARGIN_MS = 1_000;

// Makes an engine.io-client socket stop answering pings, and disables its own ping-timeout timer
// (already armed or not) so that only the server can decide the session is dead.
function silence(engine) {
  const send = engine._sendPacket.bind(engine);
  engine._sendPacket = (type, ...rest) => {
    if (type === "pong") return;
    send(type, ...rest);
  };
  engine.clearTimeoutFn(engine._pingTimeoutTimer);
  engine._pingTimeoutTime = Infinity;
  engine._resetPingTimeout = () => {};
}

// An Engine.IO client on the Socket.IO path that never answers pings.
function silentEngineClient(transport) {
  const socket = clients.add(
    new EngineSocket(server.url, { path: "/socket.io/", transports: [transport], upgrade: false }),
  );
  silence(socket);
  return socket;
}

for (const transport of ["websocket", "polling"]) {
  test(`server closes a ${transport} session that stops answering pings`, { timeout: 10_000 }, async () => {
    const socket = silentEngineClient(transport);
    await once(socket, "open");
    const openedAt = Date.now();
    let pings = 0;
    socket.on("ping", () => pings++);

    const [reason] = await once(socket, "close", PING_INTERVAL_MS + PING_TIMEOUT_MS + MARGIN_MS);
    const elapsed = Date.now() - openedAt;
    assert.equal(reason, "transport close", "the server, not the client, ended the session");
    assert.ok(pings >= 1, "the server pinged before giving up");
    assert.ok(
      elapsed >= PING_INTERVAL_MS + PING_TIMEOUT_MS - 100,
      `closed after ${elapsed} ms, before pingInterval + pingTimeout`,
    );
  });
}

test("a silent client on a Socket.IO namespace is disconnected too", { timeout: 10_000 }, async () => {
  const { socket } = await connectSocket(clients, server.url, { transports: ["websocket"] });
  silence(socket.io.engine);
  const [reason] = await once(socket, "disconnect", PING_INTERVAL_MS + PING_TIMEOUT_MS + MARGIN_MS);
  assert.equal(reason, "transport close");
});

for (const transport of ["websocket", "polling"]) {
  test(`a client that answers pings stays connected for 2.5 s over ${transport}`, { timeout: 10_000 }, async () => {
    const { socket } = await connectSocket(clients, server.url, { transports: [transport] });
    const engine = socket.io.engine;
    const sid = engine.id;
    let pings = 0;
    engine.on("ping", () => pings++);

    assert.equal(await happensWithin(socket, "disconnect", 2_500), false, "stayed connected");
    assert.equal(socket.connected, true);
    assert.equal(engine.id, sid);
    // 2.5 s at one ping per 300 ms is about 8 pings; demand a clear majority of them.
    assert.ok(pings >= 5, `only ${pings} pings in 2.5 s`);
    const echoed = once(socket, "message-back");
    socket.emit("message", "alive");
    assert.deepEqual(await echoed, ["alive"]);
  });
}
