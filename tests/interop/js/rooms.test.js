// Rooms and broadcasts among three socket.io-client sockets on different transports: `join`,
// `to-room` reaching the other members but not the sender, `leave` stopping delivery,
// `get-rooms`, and `broadcast` reaching every other socket of `/` (and none of `/custom`).
"use strict";

const { test, before, after, afterEach } = require("node:test");
const assert = require("node:assert/strict");
const { startServer, connectSocket, emitWithAckArgs, once, happensWithin, Clients } = require("./harness");

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

// How long to wait before concluding that a message is not coming.
const SILENCE_MS = 300;

async function threeClients() {
  const transports = [["websocket"], ["polling"], ["polling", "websocket"]];
  const sockets = await Promise.all(
    transports.map((t) => connectSocket(clients, server.url, { transports: t }).then((c) => c.socket)),
  );
  return sockets;
}

test("room messages reach the other members, not the sender; leave stops delivery", { timeout: 15_000 }, async () => {
  const [a, b, c] = await threeClients();
  for (const socket of [a, b, c]) {
    assert.deepEqual(await emitWithAckArgs(socket, "join", ["lobby"]), [true]);
  }
  assert.deepEqual(await emitWithAckArgs(a, "get-rooms", []), [[a.id, "lobby"].sort()]);

  const atB = once(b, "room-msg");
  const atC = once(c, "room-msg");
  const atA = happensWithin(a, "room-msg", SILENCE_MS);
  a.emit("to-room", "lobby", { text: "hi room", n: 1 });
  assert.deepEqual(await atB, [{ text: "hi room", n: 1 }]);
  assert.deepEqual(await atC, [{ text: "hi room", n: 1 }]);
  assert.equal(await atA, false, "the sender does not get its own room message");

  assert.deepEqual(await emitWithAckArgs(c, "leave", ["lobby"]), [true]);
  assert.deepEqual(await emitWithAckArgs(c, "get-rooms", []), [[c.id]]);
  const atB2 = once(b, "room-msg");
  const atC2 = happensWithin(c, "room-msg", SILENCE_MS);
  a.emit("to-room", "lobby", "second");
  assert.deepEqual(await atB2, ["second"]);
  assert.equal(await atC2, false, "a socket that left the room gets nothing");
});

test("room messages do not leak into other rooms; a non-member may send to a room", { timeout: 15_000 }, async () => {
  const [a, b, c] = await threeClients();
  await emitWithAckArgs(a, "join", ["red"]);
  await emitWithAckArgs(b, "join", ["blue"]);
  assert.deepEqual(await emitWithAckArgs(a, "get-rooms", []), [[a.id, "red"].sort()]);

  const atA = once(a, "room-msg");
  const atB = happensWithin(b, "room-msg", SILENCE_MS);
  c.emit("to-room", "red", "for red");
  assert.deepEqual(await atA, ["for red"]);
  assert.equal(await atB, false);
});

test("binary room message reaches the other members", { timeout: 15_000 }, async () => {
  const [a, b, c] = await threeClients();
  for (const socket of [a, b, c]) await emitWithAckArgs(socket, "join", ["bin"]);
  const payload = { data: Buffer.from([0, 1, 2, 250]) };
  const atB = once(b, "room-msg");
  const atC = once(c, "room-msg");
  a.emit("to-room", "bin", payload);
  for (const [got] of [await atB, await atC]) assert.deepEqual(Buffer.from(got.data), payload.data);
});

test("broadcast reaches every other socket of / and not /custom", { timeout: 15_000 }, async () => {
  const [a, b, c] = await threeClients();
  const { socket: other } = await connectSocket(clients, `${server.url}/custom`, { transports: ["websocket"] });
  const atB = once(b, "broadcast-msg");
  const atC = once(c, "broadcast-msg");
  const atA = happensWithin(a, "broadcast-msg", SILENCE_MS);
  const atOther = happensWithin(other, "broadcast-msg", SILENCE_MS);
  a.emit("broadcast", ["to", "everyone"]);
  assert.deepEqual(await atB, [["to", "everyone"]]);
  assert.deepEqual(await atC, [["to", "everyone"]]);
  assert.equal(await atA, false, "the sender is excluded");
  assert.equal(await atOther, false, "other namespaces are not reached");
});

test("a disconnected socket leaves its rooms", { timeout: 15_000 }, async () => {
  const [a, b, c] = await threeClients();
  for (const socket of [a, b, c]) await emitWithAckArgs(socket, "join", ["gone"]);
  const bGone = once(b, "disconnect");
  b.disconnect();
  await bGone;
  const atC = once(c, "room-msg");
  a.emit("to-room", "gone", "after b left");
  assert.deepEqual(await atC, ["after b left"]);
});
