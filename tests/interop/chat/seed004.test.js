// Seed 004, "chat backend": written only from that document (and PROTOCOL.md section 9 where it
// is vague). Clients connect with a `username`, optionally a DM peer `to` (the seed's console shows
// `dm:Dummy-1_Dummy-2` rooms); they send `chat message` strings and listen for `chat message` and
// `online`. The seed shows no connection code; PROTOCOL.md section 9 says "connect with
// `username` and `to` (query or auth)", and these tests use the query.
"use strict";

const { test } = require("node:test");
const assert = require("node:assert/strict");
const crypto = require("node:crypto");
const { useServer, connect, isIso, HEX24 } = require("./harness");

const fx = useServer();
const NOT_ACCEPTED = "Message is not accepted";

// Names in the seed's style, unique per test, so that sorting them gives a known order.
function dummies() {
  const tag = crypto.randomBytes(3).toString("hex");
  return [1, 2, 3, 4].map((n) => `Dummy-${n}-${tag}`);
}

async function user(username, to) {
  const query = { username };
  if (to !== undefined) query.to = to;
  return connect(fx.url, { query });
}

const isString = (m) => typeof m === "string";

test("`online` lists the online users in order of arrival and updates on connect and disconnect", async () => {
  const [d1, d2] = dummies();
  const a = await user(d1, d2);
  await a.waitFor("online", (l) => Array.isArray(l) && l.includes(d1));
  const b = await user(d2, d1);
  for (const x of [a, b]) {
    const list = await x.waitFor("online", (l) => l.includes(d1) && l.includes(d2));
    assert.ok(list.indexOf(d1) < list.indexOf(d2), `order of arrival: ${list}`);
  }
  a.close();
  const after = await b.waitFor("online", (l) => l.includes(d2) && !l.includes(d1));
  assert.ok(!after.includes(d1));
});

test("a plain string `chat message` without a DM peer goes to every client unchanged; the ack is the text", async () => {
  const [d1, d2, d3, d4] = dummies();
  const a = await user(d1);
  const b = await user(d2);
  const dm = await user(d3, d4); // a DM client still hears io.emit broadcasts
  const text = `Hello World! from ${d1}  `; // trailing spaces included: "the string unchanged"
  // PROTOCOL.md section 9: "The ack of an accepted seed 004 message is the message text".
  const ack = await a.ack("chat message", text);
  assert.equal(ack, text);
  for (const x of [a, b, dm]) {
    assert.equal(await x.waitFor("chat message", (m) => m === text), text);
  }
});

test("two clients with `to` share the DM room dm:<a>_<b>: both get the stored object, a third gets nothing", async () => {
  const [d1, d2, d3] = dummies();
  // The later name connects first: the room id is sorted, not in connection order.
  const b = await user(d2, d1);
  const a = await user(d1, d2);
  const c = await user(d3);
  const roomId = `dm:${d1}_${d2}`;

  const text = `hello from ${d2}`;
  assert.equal(await b.ack("chat message", text), text, "the ack is the text");
  const atA = await a.waitFor("chat message", (m) => !isString(m) && m.text === text);
  const atB = await b.waitFor("chat message", (m) => !isString(m) && m.text === text);
  assert.deepEqual(atA, atB);
  // PROTOCOL.md section 9: "stores `{ roomId, id, from, text, to, time }`", `id` 24 hex, `time`
  // ISO-8601 UTC.
  assert.deepEqual(Object.keys(atA).sort(), ["from", "id", "roomId", "text", "time", "to"]);
  assert.equal(atA.roomId, roomId);
  assert.match(atA.id, HEX24);
  assert.equal(atA.from, d2);
  assert.equal(atA.to, d1);
  assert.ok(isIso(atA.time), `time: ${atA.time}`);

  const reply = `Hello World! from ${d1}`;
  a.emit("chat message", reply);
  const back = await b.waitFor("chat message", (m) => !isString(m) && m.text === reply);
  assert.equal(back.roomId, roomId, "the same room from either side");
  assert.equal(back.from, d1);
  assert.equal(back.to, d2);
  assert.notEqual(back.id, atA.id, "each message has its own id");
  await a.waitFor("chat message", (m) => !isString(m) && m.text === reply);

  assert.deepEqual(await c.quiet("chat message"), [], "the DM does not reach a third client in any form");
});

test("a rejected message: ack `Message is not accepted`, or an `error` event without an ack; nothing is sent", async () => {
  const [d1, d2, d3] = dummies();
  const a = await user(d1);
  const b = await user(d2, d3);
  const other = await user(d3, d2);
  // Too long: above --max-message-chars, 2000 by default (PROTOCOL.md section 11).
  for (const bad of ["", "x".repeat(2001)]) {
    assert.equal(await a.ack("chat message", bad), NOT_ACCEPTED, `plain ${JSON.stringify(bad.slice(0, 10))}`);
    assert.equal(await b.ack("chat message", bad), NOT_ACCEPTED, `DM ${JSON.stringify(bad.slice(0, 10))}`);
  }
  // PROTOCOL.md section 9: "else `error { code, message: "Message is not accepted" }`".
  a.emit("chat message", "");
  const err = await a.waitFor("error");
  assert.equal(err.message, NOT_ACCEPTED);
  assert.equal(err.code, "empty_text");

  const [atA, atOther] = await Promise.all([a.quiet("chat message"), other.quiet("chat message")]);
  assert.deepEqual(atA, [], "no rejected plain message was broadcast");
  assert.deepEqual(atOther, [], "no rejected DM was delivered");
});

test("an anonymous client with a DM peer is not accepted", async () => {
  // PROTOCOL.md section 9: "a rejected message (empty, too long, rate limited, anonymous DM)".
  const [d1, d2] = dummies();
  const peer = await user(d1, d2);
  const anon = await connect(fx.url, { query: { to: d1 } });
  assert.equal(await anon.ack("chat message", "who am I"), NOT_ACCEPTED);
  assert.deepEqual(await peer.quiet("chat message"), [], "delivered neither as a DM nor as a broadcast");
});
