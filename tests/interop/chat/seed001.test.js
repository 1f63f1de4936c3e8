// Seed 001, "userSocketMap": written only from that document (and PROTOCOL.md section 6 where it
// is vague). Clients connect with `query: { userId }` and listen for `getOnlineUsers` and
// `newMessage`. The seed sends messages from an HTTP controller it does not show; PROTOCOL.md
// section 6 names the socket event `sendMessage { receiverId, message }` and the routes
// `POST /api/messages/send/:receiverId` and `GET /api/messages/:userId`.
"use strict";

const { test } = require("node:test");
const assert = require("node:assert/strict");
const { useServer, connect, uniq, request, isIso, HEX24 } = require("./harness");

const fx = useServer();

// The seed's connection: `io(url, { query: { userId } })`.
async function user(userId) {
  const client = await connect(fx.url, { query: { userId } });
  client.userId = userId;
  return client;
}

const has = (...ids) => (list) => Array.isArray(list) && ids.every((id) => list.includes(id));

// A stored private message per PROTOCOL.md section 6:
// "`{ _id, senderId, receiverId, message, createdAt }` ... `_id` is 24 hex characters and
// `createdAt` is ISO-8601 UTC".
function assertStored(msg, senderId, receiverId, message) {
  assert.match(msg._id, HEX24);
  assert.equal(msg.senderId, senderId);
  assert.equal(msg.receiverId, receiverId);
  assert.equal(msg.message, message);
  assert.ok(isIso(msg.createdAt), `createdAt is ISO-8601 UTC: ${msg.createdAt}`);
  assert.ok(Math.abs(Date.parse(msg.createdAt) - Date.now()) < 60_000, "createdAt is now");
}

const pick = ({ _id, senderId, receiverId, message, createdAt }) => ({ _id, senderId, receiverId, message, createdAt });

test("getOnlineUsers carries both user ids after two connects, in order, and drops one after it disconnects", async () => {
  const [aman, rahul] = [uniq("user123"), uniq("user456")];
  const a = await user(aman);
  const b = await user(rahul);
  for (const x of [a, b]) {
    const list = await x.waitFor("getOnlineUsers", has(aman, rahul));
    // PROTOCOL.md section 3: "in order of when it came online".
    assert.ok(list.indexOf(aman) < list.indexOf(rahul), `order of coming online: ${list}`);
    assert.ok(list.every((id) => typeof id === "string"));
  }
  b.close();
  const after = await a.waitFor("getOnlineUsers", (list) => list.includes(aman) && !list.includes(rahul));
  assert.ok(!after.includes(rahul));
});

test("a user with two tabs stays online until the last tab leaves", async () => {
  const [aman, rahul] = [uniq("user123"), uniq("user456")];
  const a = await user(aman);
  const b1 = await user(rahul);
  const b2 = await user(rahul);
  // PROTOCOL.md section 3: "A newcomer always receives the current list soon after connecting,
  // even if the set did not change (say, a second tab)."
  await b2.waitFor("getOnlineUsers", has(aman, rahul));
  const list = await a.waitFor("getOnlineUsers", has(aman, rahul));
  assert.equal(list.filter((id) => id === rahul).length, 1, "a user is listed once, however many tabs");

  a.forget();
  b1.close();
  await new Promise((r) => setTimeout(r, 300));
  const updates = a.received("getOnlineUsers");
  assert.ok(updates.every((l) => l.includes(rahul)), `rahul still has a tab open: ${JSON.stringify(updates)}`);
  b2.close();
  await a.waitFor("getOnlineUsers", (l) => !l.includes(rahul) && l.includes(aman));
});

test("sendMessage is stored and acked, and newMessage reaches every socket of the receiver only", async () => {
  const [aman, rahul, other] = [uniq("user123"), uniq("user456"), uniq("user789")];
  const a = await user(aman);
  const b1 = await user(rahul);
  const b2 = await user(rahul);
  const c = await user(other);
  const text = `hi Rahul ${uniq("m")}`;

  const ack = await a.ack("sendMessage", { receiverId: rahul, message: text });
  // PROTOCOL.md section 6: "The `sendMessage` ack is that object plus `success: true`."
  assert.equal(ack.success, true, JSON.stringify(ack));
  assertStored(ack, aman, rahul, text);

  for (const b of [b1, b2]) {
    const got = await b.waitFor("newMessage", (m) => m.message === text);
    assertStored(got, aman, rahul, text);
    assert.deepEqual(pick(got), pick(ack), "newMessage is the stored message");
  }
  // The seed: "Emits `newMessage` event only to Rahul."
  const [atC, atA] = await Promise.all([c.quiet("newMessage"), a.quiet("newMessage")]);
  assert.deepEqual(atC, [], "a third user gets nothing");
  assert.deepEqual(atA, [], "the sender gets no newMessage");
});

test("POST /api/messages/send/:receiverId answers 201 with the stored message and emits newMessage", async () => {
  const [aman, rahul] = [uniq("user123"), uniq("user456")];
  const b = await user(rahul);
  const text = `over HTTP ${uniq("m")}`;
  // PROTOCOL.md section 10: "Development mode: the caller is named by the `X-User` header".
  const res = await request(`${fx.url}/api/messages/send/${encodeURIComponent(rahul)}`, {
    method: "POST",
    json: { message: text },
    headers: { "X-User": aman },
  });
  assert.equal(res.status, 201, res.text);
  assertStored(res.body, aman, rahul, text);
  const got = await b.waitFor("newMessage", (m) => m.message === text);
  assert.deepEqual(pick(got), pick(res.body));
});

test("GET /api/messages/:userId returns the conversation, both directions, oldest first", async () => {
  const [aman, rahul, other] = [uniq("user123"), uniq("user456"), uniq("user789")];
  const a = await user(aman);
  const b = await user(rahul);
  const sent = [];
  sent.push(await a.ack("sendMessage", { receiverId: rahul, message: "one" }));
  sent.push(await b.ack("sendMessage", { receiverId: aman, message: "two" }));
  const viaHttp = await request(`${fx.url}/api/messages/send/${aman}`, {
    method: "POST",
    json: { message: "three" },
    headers: { "X-User": rahul },
  });
  assert.equal(viaHttp.status, 201, viaHttp.text);
  sent.push(viaHttp.body);
  // Not part of this conversation.
  await a.ack("sendMessage", { receiverId: other, message: "elsewhere" });

  for (const [caller, peer] of [
    [aman, rahul],
    [rahul, aman],
  ]) {
    const res = await request(`${fx.url}/api/messages/${peer}`, { headers: { "X-User": caller } });
    assert.equal(res.status, 200, res.text);
    assert.ok(Array.isArray(res.body), res.text);
    assert.deepEqual(res.body.map((m) => m.message), ["one", "two", "three"], `${caller}'s view`);
    assert.deepEqual(res.body.map(pick), sent.map(pick));
  }
});
