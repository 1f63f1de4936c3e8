// The HTTP API (PROTOCOL.md section 10) in development mode: routes, statuses, JSON error bodies
// `{ error: { code, message } }`, paging, and the room events it causes.
"use strict";

const { test } = require("node:test");
const assert = require("node:assert/strict");
const crypto = require("node:crypto");
const { useServer, connect, uniq, request, assertHttpError, isIso, HEX24 } = require("./harness");

const fx = useServer();
const api = (p) => `${fx.url}/api${p}`;

function assertJson(res) {
  assert.match(String(res.headers["content-type"]), /^application\/json/, `content-type of ${res.text.slice(0, 80)}`);
  assert.notEqual(res.body, undefined, `a JSON body: ${res.text.slice(0, 200)}`);
}

test("GET /api/rooms lists the rooms oldest first, `general` included", async () => {
  const res = await request(api("/rooms"));
  assert.equal(res.status, 200);
  assertJson(res);
  assert.ok(Array.isArray(res.body));
  assert.equal(res.body[0].name, "general", "general exists from the start, so it is the oldest");
  for (const r of res.body) {
    assert.match(r._id, HEX24);
    assert.ok(isIso(r.createdAt), r.createdAt);
  }
});

test("POST /api/rooms: 201 and `room created` to every socket; the same name in another case is 409", async () => {
  const [a, b] = await Promise.all([connect(fx.url), connect(fx.url)]);
  const name = uniq("Sports");
  const res = await request(api("/rooms"), { method: "POST", json: { name } });
  assert.equal(res.status, 201, res.text);
  assertJson(res);
  assert.deepEqual(Object.keys(res.body).sort(), ["_id", "createdAt", "name"]);
  assert.equal(res.body.name, name);
  assert.match(res.body._id, HEX24);
  for (const x of [a, b]) assert.deepEqual(await x.waitFor("room created", (r) => r.name === name), res.body);

  const list = (await request(api("/rooms"))).body;
  assert.deepEqual(list.at(-1), res.body, "the newest room is listed last");

  const taken = await request(api("/rooms"), { method: "POST", json: { name: name.toUpperCase() } });
  assertHttpError(assert, taken, 409, "room_name_taken");
  assertJson(taken);
});

test("bad requests: 400, 404, 405, 413 and 415 with JSON error bodies", async () => {
  const post = (body, headers) => () => request(api("/rooms"), { method: "POST", body, headers });
  const json = { "content-type": "application/json" };
  // --max-payload defaults to 1,000,000 bytes.
  const huge = JSON.stringify({ name: "x".repeat(1_100_000) });
  const cases = [
    // Section 4's table: `invalid_payload` is "wrong type, missing field, non-JSON".
    ["POST /api/rooms, broken JSON", post('{"name": ', json), 400, "invalid_payload"],
    ["POST /api/rooms, empty name", post(JSON.stringify({ name: "" }), json), 400, "invalid_room_name"],
    ["POST /api/rooms, no name", post(JSON.stringify({ nom: "x" }), json), 400],
    ["POST /api/rooms, a form", post("name=x", { "content-type": "application/x-www-form-urlencoded" }), 415],
    ["POST /api/rooms, text/plain", post(JSON.stringify({ name: uniq("plain") }), { "content-type": "text/plain" }), 415],
    ["POST /api/rooms, 1.1 MB", post(huge, json), 413],
    ["GET /api/no-such-route", () => request(api("/no-such-route")), 404],
    ["GET /no-such-page", () => request(`${fx.url}/no-such-page`), 404],
    ["GET messages of an unknown room", () => request(api(`/rooms/${"f".repeat(24)}/messages`)), 404, "unknown_room"],
    ["DELETE /api/rooms", () => request(api("/rooms"), { method: "DELETE" }), 405],
    ["GET /api/messages/send/bob", () => request(api("/messages/send/bob"), { headers: { "X-User": "alice" } }), 405],
    ["POST /api/rooms/general/messages", () => request(api("/rooms/general/messages"), { method: "POST", json: { text: "x" } }), 405],
  ];
  // Every case runs; the mismatches are reported together.
  const wrong = [];
  for (const [what, send, status, code] of cases) {
    const res = await send();
    try {
      assertHttpError(assert, res, status, code);
      assertJson(res);
    } catch (err) {
      wrong.push(`${what}: ${res.status} ${res.text.slice(0, 120)} (expected ${status} ${code ?? ""}; ${err.message.split("\n")[0]})`);
    }
  }
  assert.deepEqual(wrong, [], "requests not refused as expected");

  // Nothing above created a room.
  const names = (await request(api("/rooms"))).body.map((r) => r.name);
  assert.ok(!names.some((n) => n.startsWith("plain-")), "a refused POST creates nothing");
});

test("GET /api/rooms/:id/messages pages back with before and limit, oldest first in each page", async () => {
  const a = await connect(fx.url, { query: { username: uniq("pager") } });
  const roomId = (await a.ack("create room", { name: uniq("paged") })).room._id;
  await a.ack("join room", { roomId });
  const sent = [];
  for (let i = 1; i <= 7; i++) sent.push((await a.ack("chat message", { roomId, text: `m${i}` })).message);

  const page = async (q) => {
    const res = await request(api(`/rooms/${roomId}/messages${q}`));
    assert.equal(res.status, 200, res.text);
    return res.body;
  };
  const texts = (msgs) => msgs.map((m) => m.text);
  assert.deepEqual(await page(""), sent, "the whole room (under the default page size)");
  const p1 = await page("?limit=3");
  assert.deepEqual(texts(p1), ["m5", "m6", "m7"]);
  const p2 = await page(`?limit=3&before=${p1[0]._id}`);
  assert.deepEqual(texts(p2), ["m2", "m3", "m4"]);
  assert.deepEqual(texts(await page(`?limit=3&before=${p2[0]._id}`)), ["m1"]);
  assert.deepEqual(await page(`?before=${sent[0]._id}`), []);
  assert.equal((await page("?limit=200")).length, 7, "limit may be --max-history-page (200)");

  // "`limit` 1 to `--max-history-page`"; anything else is bad input.
  for (const q of ["?limit=0", "?limit=201", "?limit=abc", "?before=not-an-id"]) {
    assertHttpError(assert, await request(api(`/rooms/${roomId}/messages${q}`)), 400);
  }
});

test("private messages: POST /api/messages/send/:receiverId and GET /api/messages/:userId, callers and errors", async () => {
  const [alice, bob] = [uniq("alice"), uniq("bob")];
  const send = (to, json, { headers = {}, query = "" } = {}) =>
    request(api(`/messages/send/${to}${query}`), { method: "POST", json, headers });

  // The caller: X-User, or the query userId / user / username (section 10).
  const sent = [];
  for (const [i, how] of [
    [1, { headers: { "X-User": alice } }],
    [2, { query: `?userId=${alice}` }],
    [3, { query: `?user=${alice}` }],
    [4, { query: `?username=${alice}` }],
  ]) {
    const res = await send(bob, { message: `p${i}` }, how);
    assert.equal(res.status, 201, res.text);
    assert.equal(res.body.senderId, alice);
    assert.equal(res.body.receiverId, bob);
    sent.push(res.body);
  }
  const reply = await send(alice, { message: "p5" }, { headers: { "X-User": bob } });
  assert.equal(reply.status, 201, reply.text);
  sent.push(reply.body);

  const conv = await request(api(`/messages/${bob}?userId=${alice}`));
  assert.equal(conv.status, 200, conv.text);
  assert.deepEqual(conv.body, sent);
  const last2 = await request(api(`/messages/${bob}?limit=2`), { headers: { "X-User": alice } });
  assert.deepEqual(last2.body.map((m) => m.message), ["p4", "p5"]);
  const prev = await request(api(`/messages/${bob}?limit=2&before=${last2.body[0]._id}`), { headers: { "X-User": alice } });
  assert.deepEqual(prev.body.map((m) => m.message), ["p2", "p3"]);

  assertHttpError(assert, await send(bob, { message: "" }, { headers: { "X-User": alice } }), 400, "empty_text");
  assertHttpError(assert, await send(bob, { message: 42 }, { headers: { "X-User": alice } }), 400, "invalid_payload");
  assertHttpError(assert, await send(bob, { message: "x".repeat(2001) }, { headers: { "X-User": alice } }), 400, "text_too_long");
  // No caller at all: PROTOCOL.md says the private-message routes need one but not which status;
  // 400 (`unknown_user`, "a sender without an identity") or 401.
  const anon = await send(bob, { message: "who" });
  assert.ok([400, 401].includes(anon.status), `no caller: ${anon.status} ${anon.text}`);
  assertHttpError(assert, anon, anon.status);
  // Nothing of the refused ones was stored.
  assert.equal((await request(api(`/messages/${bob}`), { headers: { "X-User": alice } })).body.length, 5);
});

test("a DM room's history is GET /api/rooms/dm:<a>_<b>/messages", async () => {
  const tag = crypto.randomBytes(3).toString("hex");
  const [d1, d2] = [`Dummy-1-${tag}`, `Dummy-2-${tag}`];
  const a = await connect(fx.url, { query: { username: d1, to: d2 } });
  const b = await connect(fx.url, { query: { username: d2, to: d1 } });
  assert.equal(await a.ack("chat message", "hi there"), "hi there");
  const live = await b.waitFor("chat message", (m) => typeof m === "object" && m.text === "hi there");

  for (const who of [d1, d2]) {
    const res = await request(api(`/rooms/dm:${d1}_${d2}/messages`), { headers: { "X-User": who } });
    assert.equal(res.status, 200, res.text);
    assert.deepEqual(res.body, [live], `${who} reads the DM history`);
  }
  // Section 9: only the two participants may read a DM history, in both modes, so a caller
  // must be named (401 without one, 403 for anyone else).
  const nobody = await request(api(`/rooms/dm:${d1}_${d2}/messages`));
  assert.equal(nobody.status, 401, nobody.text);
  const other = await request(api(`/rooms/dm:${d1}_${d2}/messages`), { headers: { "X-User": `x-${tag}` } });
  assert.equal(other.status, 403, other.text);
});

test("GET / serves the chat page", async () => {
  const res = await request(`${fx.url}/`);
  assert.equal(res.status, 200);
  assert.ok(res.text.length > 0);
});
