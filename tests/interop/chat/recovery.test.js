// Connection state recovery in the chat app (`--recovery on`): a member of a chat room whose
// transport is cut comes back recovered with the same socket id, still a member of the room
// (it can send to it), gets the room's messages sent meanwhile exactly once (live, with the
// offsets socket.io-client expects), and gets no second `load` of the global history. The other
// members see it leave and join again. Past the window nothing is recovered (see
// tests/interop/recovery for the echo app's version over each transport).
"use strict";

const { test } = require("node:test");
const assert = require("node:assert/strict");
const { useServer, connect, uniq } = require("./harness");

const fx = useServer({ args: ["--recovery", "on", "--recovery-window-ms", "5000", "--cores", "2"] });

test("a chat room member cut off recovers its room and the messages it missed", { timeout: 30_000 }, async () => {
  const user = uniq("alice");
  const alice = await connect(fx.url, {
    auth: { username: user },
    reconnection: true,
    reconnectionDelay: 200,
    reconnectionDelayMax: 200,
    randomizationFactor: 0,
  });
  const bob = await connect(fx.url, { auth: { username: uniq("bob") } });
  await alice.waitFor("load");

  const created = await alice.ack("create room", { name: uniq("Room") });
  assert.equal(created.success, true, JSON.stringify(created));
  const roomId = created.room._id;
  for (const c of [alice, bob]) {
    const ack = await c.ack("join room", { roomId });
    assert.equal(ack.success, true, JSON.stringify(ack));
  }
  const id = alice.id;
  assert.equal(alice.socket.recovered, false);

  alice.socket.io.engine.close();
  await alice.waitDisconnect();
  await bob.waitFor("user left room", (e) => e.roomId === roomId && e.user === user);
  const texts = [1, 2, 3].map((n) => `missed ${n} ${uniq("t")}`);
  for (const text of texts) {
    const ack = await bob.ack("chat message", { roomId, text });
    assert.equal(ack.success, true, JSON.stringify(ack));
  }

  await new Promise((resolve) => (alice.connected ? resolve() : alice.socket.once("connect", resolve)));
  assert.equal(alice.socket.recovered, true, "socket.recovered");
  assert.equal(alice.id, id, "same socket id");
  for (const text of texts) await alice.waitFor("chat message", (m) => m.text === text);
  const got = alice.received("chat message", (m) => texts.includes(m.text)).map((m) => m.text);
  assert.deepEqual(got, texts, "each missed message once, in order");
  await bob.waitFor("user joined room", (e) => e.roomId === roomId && e.user === user);

  // Still a member: it can send to the room, and bob gets it.
  const mine = uniq("back");
  const ack = await alice.ack("chat message", { roomId, text: mine });
  assert.equal(ack.success, true, JSON.stringify(ack));
  await bob.waitFor("chat message", (m) => m.text === mine);
  assert.equal(alice.count("load"), 1, "the global history is not sent again");
});
