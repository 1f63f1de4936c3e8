// socket.io-client over each transport: websocket only, polling only, polling upgraded to
// websocket; and both ends closing a socket (client disconnect, server disconnect).
"use strict";

const { test, before, after, afterEach } = require("node:test");
const assert = require("node:assert/strict");
const { startServer, connectSocket, httpRequest, once, within, sleep, Clients } = require("./harness");

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

const ARGS = ["hello", 42, { nested: { list: [1, "two", null, true] } }, "héllo ☃ 😀"];

async function assertEcho(socket, args = ARGS) {
  const echoed = once(socket, "message-back");
  socket.emit("message", ...args);
  assert.deepEqual(await echoed, args);
}

// Polls the server until it reports the Engine.IO session as unknown (HTTP 400, code 1). While
// the session still exists the probe gets another answer (a websocket session answers a polling
// GET with 400 code 3 "Bad request"), so other answers only mean "not yet".
async function waitSessionGone(sid, ms = 3_000) {
  // Give the client's close packet a head start: over polling, a probe GET that overlaps the
  // client's own pending GET would itself close the session and prove nothing.
  await sleep(100);
  const deadline = Date.now() + ms;
  let last;
  while (Date.now() < deadline) {
    last = await httpRequest(`${server.url}/socket.io/?EIO=4&transport=polling&sid=${sid}`, { ms: 1_000 });
    if (last.status === 400 && last.body === '{"code":1,"message":"Session ID unknown"}') return;
    await sleep(50);
  }
  assert.fail(`session ${sid} still known after ${ms} ms (last answer ${JSON.stringify(last)})`);
}

test("websocket only: connects, greets with empty auth, echoes", { timeout: 10_000 }, async () => {
  const { socket, auth } = await connectSocket(clients, server.url, { transports: ["websocket"] });
  assert.equal(socket.io.engine.transport.name, "websocket");
  assert.deepEqual(auth, {});
  await assertEcho(socket);
});

test("polling only: connects, echoes, and carries a 200 kB message", { timeout: 10_000 }, async () => {
  const { socket, auth } = await connectSocket(clients, server.url, { transports: ["polling"] });
  assert.equal(socket.io.engine.transport.name, "polling");
  assert.deepEqual(auth, {});
  await assertEcho(socket);
  await assertEcho(socket, ["x".repeat(200_000)]);
  assert.equal(socket.io.engine.transport.name, "polling");
});

test("polling then upgrade: the transport becomes websocket", { timeout: 10_000 }, async () => {
  const { io } = require("socket.io-client");
  const socket = clients.add(
    io(server.url, { forceNew: true, reconnection: false, transports: ["polling", "websocket"] }),
  );
  const engine = socket.io.engine;
  const upgraded = once(engine, "upgrade", 5_000);
  const [[auth]] = await Promise.all([once(socket, "auth"), once(socket, "connect")]);
  assert.deepEqual(auth, {});
  const [transport] = await upgraded;
  assert.equal(transport.name, "websocket");
  assert.equal(engine.transport.name, "websocket");
  // The session survives the upgrade: same sid, messages still flow.
  await assertEcho(socket);
  assert.equal(socket.connected, true);
});

for (const transport of ["websocket", "polling"]) {
  test(`client disconnect over ${transport}: reason and session closed on the server`, { timeout: 10_000 }, async () => {
    const { socket } = await connectSocket(clients, server.url, { transports: [transport] });
    const sid = socket.io.engine.id;
    assert.ok(sid);
    const disconnected = once(socket, "disconnect");
    socket.disconnect();
    const [reason] = await disconnected;
    assert.equal(reason, "io client disconnect");
    assert.equal(socket.connected, false);
    await waitSessionGone(sid);
  });

  test(`server disconnect over ${transport}: client sees "io server disconnect"`, { timeout: 10_000 }, async () => {
    const { socket } = await connectSocket(clients, server.url, { transports: [transport] });
    const disconnected = once(socket, "disconnect");
    socket.emit("server-disconnect");
    const [reason] = await disconnected;
    assert.equal(reason, "io server disconnect");
    assert.equal(socket.connected, false);
    // The server is still healthy for new clients.
    const { socket: other } = await connectSocket(clients, server.url, { transports: [transport] });
    await assertEcho(other);
  });
}

test("many clients at once, each gets its own echo", { timeout: 15_000 }, async () => {
  const sockets = await within(
    Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        connectSocket(clients, server.url, { transports: [i % 2 ? "websocket" : "polling"] }),
      ),
    ),
    10_000,
    "20 connections",
  );
  await Promise.all(sockets.map(({ socket }, i) => assertEcho(socket, [`client-${i}`, i])));
});
