// The plain Engine.IO echo endpoint at `/engine.io/` with engine.io-client: text and binary
// messages over websocket, polling, and polling upgraded to websocket.
"use strict";

const { test, before, after, afterEach } = require("node:test");
const assert = require("node:assert/strict");
const { Socket: EngineSocket } = require("engine.io-client");
const { startServer, once, within, Clients } = require("./harness");

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

function open(transports, extra = {}) {
  const socket = clients.add(new EngineSocket(server.url, { path: "/engine.io/", transports, ...extra }));
  return once(socket, "open", 5_000).then(() => socket);
}

// Sends each message and collects as many echoes, in order.
async function echoAll(socket, messages) {
  const received = [];
  const done = new Promise((resolve) => {
    socket.on("message", (data) => {
      received.push(data);
      if (received.length === messages.length) resolve();
    });
  });
  for (const message of messages) socket.send(message);
  await within(done, 5_000, `${messages.length} echoes (got ${received.length})`);
  return received;
}

// No empty string (the parser decodes a bare "4" as a message without data) and no U+001E, which
// Engine.IO v4 polling uses as its unescaped packet separator.
const TEXTS = ["hello", "héllo ☃ 😀", '{"json":"looking"}', "4", "x".repeat(100_000)];
const BINARIES = [Buffer.from([0, 1, 2, 3, 255]), Buffer.from("binary text"), Buffer.alloc(70_000, 0xab)];

for (const transport of ["websocket", "polling"]) {
  test(`engine.io echo of text over ${transport}`, { timeout: 10_000 }, async () => {
    const socket = await open([transport]);
    assert.equal(socket.transport.name, transport);
    assert.deepEqual(await echoAll(socket, TEXTS), TEXTS);
  });

  test(`engine.io echo of binary over ${transport}`, { timeout: 10_000 }, async () => {
    const socket = await open([transport]);
    const received = await echoAll(socket, BINARIES);
    received.forEach((data, i) => {
      assert.ok(typeof data !== "string", `message ${i} came back as binary`);
      assert.deepEqual(Buffer.from(data), BINARIES[i]);
    });
  });

  test(`engine.io handshake values over ${transport}`, { timeout: 10_000 }, async () => {
    const socket = clients.add(new EngineSocket(server.url, { path: "/engine.io/", transports: [transport] }));
    const [handshake] = await once(socket, "handshake", 5_000);
    assert.equal(handshake.pingInterval, 300);
    assert.equal(handshake.pingTimeout, 200);
    assert.equal(handshake.maxPayload, 1_000_000);
    assert.deepEqual(handshake.upgrades, transport === "polling" ? ["websocket"] : []);
  });
}

test("engine.io echo after a polling -> websocket upgrade", { timeout: 10_000 }, async () => {
  const socket = clients.add(
    new EngineSocket(server.url, { path: "/engine.io/", transports: ["polling", "websocket"] }),
  );
  const [[transport]] = await Promise.all([once(socket, "upgrade", 5_000), once(socket, "open", 5_000)]);
  assert.equal(transport.name, "websocket");
  assert.equal(socket.transport.name, "websocket");
  const mixed = ["text", Buffer.from([9, 8, 7]), "more"];
  const received = await echoAll(socket, mixed);
  assert.equal(received[0], "text");
  assert.deepEqual(Buffer.from(received[1]), mixed[1]);
  assert.equal(received[2], "more");
});

test("engine.io messages sent during the upgrade are not lost", { timeout: 10_000 }, async () => {
  const socket = clients.add(
    new EngineSocket(server.url, { path: "/engine.io/", transports: ["polling", "websocket"] }),
  );
  await once(socket, "open", 5_000);
  // Sent while the probe is in flight: they travel over polling or are buffered by the client.
  const messages = Array.from({ length: 30 }, (_, i) => `m${i}`);
  const received = await echoAll(socket, messages);
  assert.deepEqual(received, messages);
});
