// Namespaces and the handshake auth object with socket.io-client: `/custom` works, an unknown
// namespace is refused with "Invalid namespace", two namespaces multiplexed over one Engine.IO
// connection where closing one leaves the other up, and the `auth` greeting echoing the
// handshake auth object.
"use strict";

const { test, before, after, afterEach } = require("node:test");
const assert = require("node:assert/strict");
const { Manager } = require("socket.io-client");
const {
  PING_INTERVAL_MS,
  PING_TIMEOUT_MS,
  startServer,
  connectSocket,
  waitConnected,
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

// Longer than one full heartbeat cycle, so a connection that the server dropped would show it.
const HEARTBEAT_CYCLE_MS = 2 * (PING_INTERVAL_MS + PING_TIMEOUT_MS);

for (const transport of ["websocket", "polling"]) {
  test(`/custom connects and greets over ${transport}`, { timeout: 10_000 }, async () => {
    const { socket, auth } = await connectSocket(clients, `${server.url}/custom`, { transports: [transport] });
    assert.equal(socket.nsp, "/custom");
    assert.deepEqual(auth, {});
  });

  test(`unknown namespace gets connect_error "Invalid namespace" over ${transport}`, { timeout: 10_000 }, async () => {
    const { io } = require("socket.io-client");
    const socket = clients.add(io(`${server.url}/nope`, { forceNew: true, reconnection: false, transports: [transport] }));
    const [err] = await once(socket, "connect_error");
    assert.equal(err.message, "Invalid namespace");
    assert.equal(socket.connected, false);
  });

  test(`auth object round trip over ${transport}`, { timeout: 10_000 }, async () => {
    const auth = { token: "s3cr3t", user: { id: 7, roles: ["a", "b"] }, unicode: "ü ☃", flag: false };
    const { auth: echoed } = await connectSocket(clients, server.url, { transports: [transport], auth });
    assert.deepEqual(echoed, auth);
    const { auth: echoedCustom } = await connectSocket(clients, `${server.url}/custom`, {
      transports: [transport],
      auth: { other: 1 },
    });
    assert.deepEqual(echoedCustom, { other: 1 });
  });
}

// Opens `/` and `/custom` on one Manager, i.e. one Engine.IO connection.
async function multiplexed(transport) {
  const manager = new Manager(server.url, { reconnection: false, transports: [transport] });
  const main = clients.add(manager.socket("/", { auth: { ns: "main" } }));
  const custom = clients.add(manager.socket("/custom", { auth: { ns: "custom" } }));
  const [[mainAuth], [customAuth]] = await Promise.all([
    once(main, "auth"),
    once(custom, "auth"),
    waitConnected(main),
    waitConnected(custom),
  ]);
  assert.deepEqual(mainAuth, { ns: "main" });
  assert.deepEqual(customAuth, { ns: "custom" });
  assert.equal(main.io, custom.io, "both sockets share the Manager");
  return { manager, main, custom };
}

for (const transport of ["websocket", "polling"]) {
  test(`multiplexing over ${transport}: disconnecting /custom leaves / up`, { timeout: 10_000 }, async () => {
    const { manager, main, custom } = await multiplexed(transport);
    const sid = manager.engine.id;
    const customGone = once(custom, "disconnect");
    custom.disconnect();
    assert.equal((await customGone)[0], "io client disconnect");

    const mainDropped = happensWithin(main, "disconnect", HEARTBEAT_CYCLE_MS);
    assert.equal(await mainDropped, false, "/ must stay connected");
    assert.equal(manager.engine.id, sid, "same Engine.IO session");
    const echoed = once(main, "message-back");
    main.emit("message", "still here");
    assert.deepEqual(await echoed, ["still here"]);
  });

  test(`multiplexing over ${transport}: disconnecting / leaves /custom up`, { timeout: 10_000 }, async () => {
    const { manager, main, custom } = await multiplexed(transport);
    const sid = manager.engine.id;
    const mainGone = once(main, "disconnect");
    main.disconnect();
    assert.equal((await mainGone)[0], "io client disconnect");

    const customDropped = happensWithin(custom, "disconnect", HEARTBEAT_CYCLE_MS);
    assert.equal(await customDropped, false, "/custom must stay connected");
    assert.equal(custom.connected, true);
    assert.equal(manager.engine.readyState, "open");
    assert.equal(manager.engine.id, sid, "same Engine.IO session");

    // Reconnecting / rides the same connection and is greeted again.
    const greeted = once(main, "auth");
    main.connect();
    assert.deepEqual(await greeted, [{ ns: "main" }]);
    assert.equal(manager.engine.id, sid);
    const echoed = once(main, "message-back");
    main.emit("message", "back again");
    assert.deepEqual(await echoed, ["back again"]);
  });
}

test("unknown namespace on a multiplexed connection leaves the others up", { timeout: 10_000 }, async () => {
  const { manager, main } = await multiplexed("websocket");
  const bad = clients.add(manager.socket("/nope"));
  const [err] = await once(bad, "connect_error");
  assert.equal(err.message, "Invalid namespace");
  const echoed = once(main, "message-back");
  main.emit("message", "unaffected");
  assert.deepEqual(await echoed, ["unaffected"]);
});
