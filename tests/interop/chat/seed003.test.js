// Seed 003, "Chatto - Socket.io Protocol": written only from that document (and PROTOCOL.md
// section 8 where it is vague). Clients connect with plain `io(url)` (development mode: the
// seed's `auth` is optional) and name themselves in each payload's `user`. They use `create
// room`, `join room`, `chat message`, `typing`, `leave room` and the acks of the seed's section 4.
"use strict";

const { test } = require("node:test");
const assert = require("node:assert/strict");
const { useServer, startServer, connect, uniq, isIso, assertAckError, HEX24, closeClients } = require("./harness");

const fx = useServer();

const anyone = (url = fx.url) => connect(url);

// PROTOCOL.md section 8: "Room ids are 24 lowercase hex characters, and timestamps are ISO-8601
// UTC with milliseconds."
function assertRoom(room, name) {
  assert.match(room._id, HEX24, JSON.stringify(room));
  assert.equal(room.name, name);
  assert.ok(isIso(room.createdAt, { ms: true }), `createdAt: ${room.createdAt}`);
}

function assertMessage(m, roomId, user, text) {
  assert.match(m._id, HEX24, JSON.stringify(m));
  assert.equal(m.room, roomId);
  assert.equal(m.user, user);
  assert.equal(m.text, text);
  assert.ok(isIso(m.timestamp, { ms: true }), `timestamp: ${m.timestamp}`);
}

async function createRoom(client, name = uniq("Room")) {
  const ack = await client.ack("create room", { name });
  assert.equal(ack.success, true, JSON.stringify(ack));
  assertRoom(ack.room, name);
  return ack.room;
}

async function join(client, roomId, user) {
  const ack = await client.ack("join room", { roomId, user });
  assert.equal(ack.success, true, JSON.stringify(ack));
  return ack;
}

test("create room: `room created` reaches every client, and the ack carries the room", async () => {
  const [a, b, c] = await Promise.all([anyone(), anyone(), anyone()]);
  const name = uniq("Sports");
  const room = await createRoom(a, name);
  for (const x of [a, b, c]) {
    assert.deepEqual(await x.waitFor("room created", (r) => r.name === name), room);
  }
});

test("join room: history to the requester, `user joined room` to the others, ack with history", async () => {
  const [a, b] = await Promise.all([anyone(), anyone()]);
  const room = await createRoom(a);

  const ackA = await join(a, room._id, "alice");
  assert.deepEqual(ackA.roomId, room._id);
  assert.deepEqual(ackA.history, []);
  assert.deepEqual(await a.waitFor("message history"), [], "a new room has an empty history");

  await join(b, room._id, "bob");
  assert.ok(Array.isArray(await b.waitFor("message history")));
  assert.deepEqual(await a.waitFor("user joined room", (e) => e.user === "bob"), { roomId: room._id, user: "bob" });
  assert.deepEqual(await b.quiet("user joined room"), [], "the joiner is not told about itself");

  // A second join answers the history again and does not announce the socket again.
  const again = await join(b, room._id, "bob");
  assert.deepEqual(again.history, []);
  await b.waitFor("message history", (_, args) => b.count("message history") >= 2);
  assert.equal((await a.quiet("user joined room")).length, 1, "bob is announced once");
});

test("chat message is stored and emitted to the whole room (sender included), not outside it", async () => {
  const [a, b, outsider] = await Promise.all([anyone(), anyone(), anyone()]);
  const room = await createRoom(a);
  await join(a, room._id, "alice");
  await join(b, room._id, "bob");

  const text = `Hello, world! ${uniq("m")}`;
  const ack = await a.ack("chat message", { roomId: room._id, user: "alice", text });
  assert.equal(ack.success, true, JSON.stringify(ack));
  assertMessage(ack.message, room._id, "alice", text);
  for (const x of [a, b]) {
    assert.deepEqual(await x.waitFor("chat message", (m) => m.text === text), ack.message);
  }
  assert.deepEqual(await outsider.quiet("chat message"), [], "a socket outside the room gets nothing");

  // A later joiner finds it in the history.
  const c = await anyone();
  const { history } = await join(c, room._id, "carol");
  assert.deepEqual(history, [ack.message]);
  assert.deepEqual(await c.waitFor("message history"), [ack.message]);
});

test("the history on join holds the room's messages oldest first", async () => {
  const a = await anyone();
  const room = await createRoom(a);
  await join(a, room._id, "alice");
  const sent = [];
  for (const text of ["Welcome!", "Hi everyone 👋", "third"]) {
    sent.push((await a.ack("chat message", { roomId: room._id, user: "alice", text })).message);
  }
  const b = await anyone();
  await join(b, room._id, "bob");
  const history = await b.waitFor("message history");
  assert.deepEqual(history, sent);
});

test("`general` exists from the start and can be joined by name; the server names it by id", async () => {
  // PROTOCOL.md section 8: "A room named `general` exists from the start" and "`roomId` may also
  // be a room's name ... Everything the server sends names the room by its id."
  const [a, b] = await Promise.all([anyone(), anyone()]);
  const ackA = await join(a, "general", "alice");
  assert.match(ackA.roomId, HEX24);
  await join(b, "general", "bob");
  assert.deepEqual(await a.waitFor("user joined room", (e) => e.user === "bob"), { roomId: ackA.roomId, user: "bob" });
  const text = `in general ${uniq("m")}`;
  const ack = await b.ack("chat message", { roomId: "general", user: "bob", text });
  assertMessage(ack.message, ackA.roomId, "bob", text);
  assertMessage(await a.waitFor("chat message", (m) => m.text === text), ackA.roomId, "bob", text);
});

test("validation failures are acked { success: false, error } and deliver nothing", async () => {
  const [a, member] = await Promise.all([anyone(), anyone()]);
  const room = await createRoom(a);
  await join(member, room._id, "bob");
  // PROTOCOL.md section 8, validation order: room exists, text, membership, user.
  const cases = [
    [{ roomId: "ffffffffffffffffffffffff", user: "alice", text: "hi" }, "unknown_room"],
    [{ roomId: "no such room", user: "alice", text: "hi" }, "unknown_room"],
    [{ roomId: room._id, user: "alice", text: "hi" }, "not_member"],
  ];
  for (const [payload, code] of cases) assertAckError(assert, await a.ack("chat message", payload), code);

  await join(a, room._id, "alice");
  const joined = [
    [{ roomId: room._id, user: "alice", text: "" }, "empty_text"],
    [{ roomId: room._id, user: "alice", text: "   " }, "empty_text"],
    // --max-message-chars defaults to 2000 (PROTOCOL.md section 11).
    [{ roomId: room._id, user: "alice", text: "x".repeat(2001) }, "text_too_long"],
  ];
  for (const [payload, code] of joined) assertAckError(assert, await a.ack("chat message", payload), code);

  assert.deepEqual(await member.quiet("chat message"), [], "no rejected message was delivered");
  const { history } = await join(a, room._id, "alice");
  assert.deepEqual(history, [], "no rejected message was stored");
  // 2000 characters is still fine.
  const ok = await a.ack("chat message", { roomId: room._id, user: "alice", text: "y".repeat(2000) });
  assert.equal(ok.success, true, JSON.stringify(ok).slice(0, 200));
});

test("typing goes to the others in the room only and is not stored", async () => {
  const [a, b, outsider] = await Promise.all([anyone(), anyone(), anyone()]);
  const room = await createRoom(a);
  await join(a, room._id, "alice");
  await join(b, room._id, "bob");
  a.emit("typing", { roomId: room._id, user: "alice" });
  assert.deepEqual(await b.waitFor("typing"), { roomId: room._id, user: "alice" });
  const [atA, atOutsider] = await Promise.all([a.quiet("typing"), outsider.quiet("typing")]);
  assert.deepEqual(atA, [], "the typist is not told");
  assert.deepEqual(atOutsider, [], "nobody outside the room is told");
  const c = await anyone();
  assert.deepEqual((await join(c, room._id, "carol")).history, [], "typing is not stored");
});

test("leave room and disconnect: `user left room` to the others; a leaver gets no more messages", async () => {
  const [a, b, c] = await Promise.all([anyone(), anyone(), anyone()]);
  const room = await createRoom(a);
  await join(a, room._id, "alice");
  await join(b, room._id, "bob");
  await join(c, room._id, "carol");

  const ack = await b.ack("leave room", { roomId: room._id });
  assert.deepEqual(ack, { success: true, roomId: room._id });
  for (const x of [a, c]) {
    assert.deepEqual(await x.waitFor("user left room"), { roomId: room._id, user: "bob" });
  }
  const text = `after bob left ${uniq("m")}`;
  await a.ack("chat message", { roomId: room._id, user: "alice", text });
  await c.waitFor("chat message", (m) => m.text === text);
  assert.deepEqual(await b.quiet("chat message"), [], "bob left and gets nothing");

  c.close();
  assert.deepEqual(await a.waitFor("user left room", (e) => e.user === "carol"), { roomId: room._id, user: "carol" });
});

test("rooms and their history survive a server restart on the same data directory", async () => {
  const server = await startServer();
  try {
    const a = await anyone(server.url);
    const name = uniq("Durable");
    const room = await createRoom(a, name);
    await join(a, room._id, "alice");
    const sent = [];
    for (const text of ["before", "the", "restart"]) {
      sent.push((await a.ack("chat message", { roomId: room._id, user: "alice", text })).message);
    }
    closeClients();
    await server.restart();

    const b = await anyone(server.url);
    const ack = await join(b, room._id, "bob");
    assert.deepEqual(ack.history, sent);
    assert.deepEqual(await b.waitFor("message history"), sent);
    // And the room is still taken by name (PROTOCOL.md section 4: `room_name_taken`).
    assertAckError(assert, await b.ack("create room", { name }), "room_name_taken");
  } finally {
    closeClients();
    await server.cleanup();
  }
});
