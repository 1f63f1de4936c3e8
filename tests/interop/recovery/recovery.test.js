// Connection state recovery with the real socket.io-client against `sockeye --app echo
// --recovery on` (SOCKEYE_SERVER_CMD, flags included; see tests/recovery_interop.rs).
//
// A receiver joins a room while a sender streams numbered room messages; the receiver's
// connection is cut mid-stream and the client reconnects by itself. Within the recovery window
// the client must come back recovered (`socket.recovered`), with the same id, still in the room,
// having received every number exactly once and in order. Past the window it must get a fresh
// session. Over WebSocket and over HTTP long-polling.
"use strict";

const { test, before, after, afterEach } = require("node:test");
const assert = require("node:assert/strict");
const { io } = require("socket.io-client");
const {
  startServer,
  connectSocket,
  emitWithAckArgs,
  waitConnected,
  once,
  within,
  sleep,
  Clients,
} = require("../js/harness");

// The server's --recovery-window-ms in tests/recovery_interop.rs.
const WINDOW_MS = 2000;
const COUNT = 300;
const INTERVAL_MS = 3;

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

// A receiver that reconnects by itself, as an application would use the client.
async function receiver(transports, reconnectionDelay) {
  const socket = clients.add(
    io(server.url, {
      forceNew: true,
      transports,
      upgrade: false,
      reconnectionDelay,
      reconnectionDelayMax: reconnectionDelay,
      randomizationFactor: 0,
    }),
  );
  await waitConnected(socket);
  return socket;
}

// Cuts the client's transport without a goodbye: the WebSocket's TCP connection is destroyed;
// a polling client's engine is closed (socket.io.engine.close()).
function cut(socket, transports) {
  const engine = socket.io.engine;
  if (transports[0] === "websocket") {
    const tcp = engine.transport.ws && engine.transport.ws._socket;
    assert.ok(tcp, "the node WebSocket exposes its TCP socket");
    tcp.destroy();
  } else {
    engine.close();
  }
}

for (const transports of [["websocket"], ["polling"]]) {
  const name = transports[0];

  test(`${name}: a client cut mid-stream recovers its id, rooms and every missed packet in order`, { timeout: 20_000 }, async () => {
    const a = await receiver(transports, 100);
    assert.equal(a.recovered, false, "a first connection is not a recovery");
    assert.deepEqual(await emitWithAckArgs(a, "join", ["stream"]), [true]);
    const id = a.id;

    const received = [];
    const offsets = [];
    a.on("room-msg", (n, offset) => {
      received.push(n);
      offsets.push(offset);
    });
    let disconnects = 0;
    a.on("disconnect", () => disconnects++);

    const { socket: b } = await connectSocket(clients, server.url, { transports: ["websocket"] });
    let cutDone = false;
    const reconnected = new Promise((resolve) => {
      a.on("connect", () => {
        if (cutDone) resolve();
      });
    });
    for (let n = 1; n <= COUNT; n++) {
      b.emit("to-room", "stream", n);
      if (n === COUNT / 3) {
        // Mid-stream: cut once the receiver has seen some of it.
        await within(
          (async () => {
            while (received.length < 10) await sleep(1);
          })(),
          5_000,
          "first numbers before the cut",
        );
        cut(a, transports);
        cutDone = true;
      }
      await sleep(INTERVAL_MS);
    }
    await within(reconnected, 10_000, "reconnection");
    assert.equal(a.recovered, true, "socket.recovered after a cut inside the window");
    assert.equal(a.id, id, "same id");
    assert.equal(disconnects, 1);
    await within(
      (async () => {
        while (received.length < COUNT) await sleep(10);
      })(),
      10_000,
      `all ${COUNT} numbers (got ${received.length})`,
    );
    await sleep(200); // nothing more may come
    const expected = Array.from({ length: COUNT }, (_, i) => i + 1);
    assert.deepEqual(received, expected, "every number exactly once, in order");
    assert.ok(offsets.every((o) => typeof o === "string"), "each broadcast carries its offset");
    assert.equal(new Set(offsets).size, COUNT, "offsets are distinct");
    assert.deepEqual(await emitWithAckArgs(a, "get-rooms", []), [[id, "stream"].sort()], "still in the room");

    // And it is a live member again.
    const next = once(a, "room-msg");
    b.emit("to-room", "stream", COUNT + 1);
    assert.equal((await next)[0], COUNT + 1);
  });

  test(`${name}: past the recovery window the client gets a fresh session`, { timeout: 20_000 }, async () => {
    const a = await receiver(transports, WINDOW_MS + 1000);
    assert.deepEqual(await emitWithAckArgs(a, "join", ["stream2"]), [true]);
    const id = a.id;
    const { socket: b } = await connectSocket(clients, server.url, { transports: ["websocket"] });
    const first = once(a, "room-msg");
    b.emit("to-room", "stream2", 1);
    await first;

    const reconnected = once(a, "connect", WINDOW_MS + 8_000);
    cut(a, transports);
    b.emit("to-room", "stream2", 2);
    await reconnected;
    assert.equal(a.recovered, false, "no recovery past the window");
    assert.notEqual(a.id, id, "a new id");
    assert.deepEqual(await emitWithAckArgs(a, "get-rooms", []), [[a.id]], "in no room");
  });
}

test("a client that disconnects itself is not recovered", { timeout: 20_000 }, async () => {
  const a = await receiver(["websocket"], 100);
  assert.deepEqual(await emitWithAckArgs(a, "join", ["stream3"]), [true]);
  const { socket: b } = await connectSocket(clients, server.url, { transports: ["websocket"] });
  const first = once(a, "room-msg");
  b.emit("to-room", "stream3", 1);
  await first;
  const id = a.id;
  a.disconnect();
  a.connect();
  await waitConnected(a);
  assert.equal(a.recovered, false);
  assert.notEqual(a.id, id);
});
