// Binary payloads both ways with socket.io-client: Buffers as top-level arguments, nested in
// objects and arrays, several attachments in one packet (including an empty one), in events
// (server -> client BINARY_EVENT) and in acks (BINARY_ACK both ways), over each transport.
"use strict";

const { test, before, after, afterEach } = require("node:test");
const assert = require("node:assert/strict");
const crypto = require("node:crypto");
const { startServer, connectSocket, emitWithAckArgs, once, Clients } = require("./harness");

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

// Payload with attachments at several depths. Every byte value occurs, so a transport that
// mangles binary (UTF-8 round trip, base64 slip) is caught.
function binaryArgs() {
  const allBytes = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
  return [
    allBytes,
    {
      name: "nested",
      blob: Buffer.from("abc"),
      list: [1, Buffer.from([0xff, 0x00, 0xfe]), { deeper: crypto.randomBytes(64 * 1024) }],
      empty: Buffer.alloc(0),
    },
    "plain text between attachments",
    [Buffer.from([7]), null, Buffer.from([8, 9])],
  ];
}

// socket.io-client hands received binary back as Buffers; normalise before comparing.
function normalise(value) {
  if (Buffer.isBuffer(value) || value instanceof ArrayBuffer || ArrayBuffer.isView(value)) {
    return Buffer.from(value);
  }
  if (Array.isArray(value)) return value.map(normalise);
  if (value && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, normalise(v)]));
  }
  return value;
}

for (const transport of ["websocket", "polling"]) {
  test(`binary event round trip over ${transport}`, { timeout: 10_000 }, async () => {
    const { socket } = await connectSocket(clients, server.url, { transports: [transport] });
    const args = binaryArgs();
    const echoed = once(socket, "message-back");
    socket.emit("message", ...args);
    const received = await echoed;
    assert.ok(Buffer.isBuffer(received[0]), "top-level attachment arrives as a Buffer");
    assert.deepEqual(normalise(received), args);
  });

  test(`binary in a client -> server ack over ${transport}`, { timeout: 10_000 }, async () => {
    const { socket } = await connectSocket(clients, server.url, { transports: [transport] });
    const args = binaryArgs();
    const ackArgs = await emitWithAckArgs(socket, "message-with-ack", args);
    assert.deepEqual(normalise(ackArgs), args);
  });

  test(`binary in a server -> client ack over ${transport}`, { timeout: 10_000 }, async () => {
    const { socket } = await connectSocket(clients, server.url, { transports: [transport] });
    const payload = { request: Buffer.from("from client"), n: 1 };
    socket.on("server-ack-request", (got, ack) => {
      ack({ echoed: got, extra: [Buffer.from([1, 2, 3]), Buffer.from([4])] });
    });
    const result = once(socket, "server-ack-result");
    socket.emit("emit-with-ack", payload);
    const [value] = await result;
    assert.deepEqual(normalise(value), {
      echoed: payload,
      extra: [Buffer.from([1, 2, 3]), Buffer.from([4])],
    });
  });
}

test("binary keeps flowing after a polling -> websocket upgrade", { timeout: 10_000 }, async () => {
  const { socket } = await connectSocket(clients, server.url, { transports: ["polling", "websocket"] });
  if (socket.io.engine.transport.name !== "websocket") await once(socket.io.engine, "upgrade", 5_000);
  const args = binaryArgs();
  const echoed = once(socket, "message-back");
  socket.emit("message", ...args);
  assert.deepEqual(normalise(await echoed), args);
});
