// Token mode (PROTOCOL.md section 1): which handshakes are refused and with which code, where a
// token may travel, `sockeye token`, and that nobody can speak as someone else, over sockets and
// over HTTP (section 10).
"use strict";

const { test } = require("node:test");
const assert = require("node:assert/strict");
const crypto = require("node:crypto");
const h = require("./harness");
const { connect, connectRefused, mintToken, cliToken, decodeJwtPart, nowSec, uniq, request, assertHttpError } = h;

const SECRET = "auth-test-secret";
const fx = h.useServer({ env: { JWT_SECRET: SECRET } });

const tokenFor = (username, extra = {}) => mintToken({ username, iat: nowSec(), ...extra }, SECRET);
const withToken = (token, opts = {}) => connect(fx.url, { ...opts, auth: { token, ...(opts.auth ?? {}) } });

test("refused handshakes get connect_error with data { code, message }", async () => {
  const now = nowSec();
  const cases = [
    ["no token", {}, "missing_token"],
    ["only a self-declared name", { auth: { username: "alice" }, query: { userId: "alice" } }, "missing_token"],
    ["not a JWT", { auth: { token: "not-a-jwt" } }, "malformed_token"],
    ["three parts of garbage", { auth: { token: "%%%.@@@.!!!" } }, "malformed_token"],
    ["wrong secret", { auth: { token: mintToken({ username: "eve" }, "other-secret") } }, "invalid_signature"],
    ["tampered payload", { auth: { token: tamper(tokenFor("eve"), { username: "admin" }) } }, "invalid_signature"],
    ["expired beyond the 30 s leeway", { auth: { token: tokenFor("old", { exp: now - 120 }) } }, "token_expired"],
    ["nbf in the future beyond the leeway", { auth: { token: tokenFor("early", { nbf: now + 600 }) } }, "token_not_yet_valid"],
    // "`alg: none` and any algorithm of another family are refused"; the table's code for that is
    // `algorithm_not_allowed`.
    ["alg none", { auth: { token: mintToken({ username: "eve" }, SECRET, { alg: "none" }) } }, "algorithm_not_allowed"],
    ["alg RS256 (another family)", { auth: { token: mintToken({ username: "eve" }, SECRET, { alg: "RS256" }) } }, "algorithm_not_allowed"],
    ["no username, name or sub", { auth: { token: mintToken({ iat: now, role: "x" }, SECRET) } }, "no_identity"],
  ];
  for (const [what, opts, code] of cases) {
    const err = await connectRefused(fx.url, opts);
    assert.equal(err.data?.code, code, `${what}: got ${JSON.stringify(err.data)} (${err.message})`);
    assert.equal(typeof err.data.message, "string", what);
    assert.ok(err.message.length > 0, `${what}: err.message is a sentence`);
  }
  // Each refusal is counted in /metrics under its code.
  const metrics = (await request(`${fx.url}/metrics`)).text;
  const expected = {};
  for (const [, , code] of cases) expected[code] = (expected[code] ?? 0) + 1;
  for (const [code, n] of Object.entries(expected)) {
    const m = new RegExp(`^sockeye_chat_connects_refused_total\\{code="${code}"\\} (\\d+)$`, "m").exec(metrics);
    assert.ok(m && Number(m[1]) >= n, `${code}: at least ${n} counted, got ${m?.[0]}`);
  }
});

// Re-encodes the payload and keeps the original signature.
function tamper(token, claims) {
  const [head, , sig] = token.split(".");
  return `${head}.${Buffer.from(JSON.stringify(claims)).toString("base64url")}.${sig}`;
}

test("exp and nbf have 30 s of leeway; identity is username, else name, else sub", async () => {
  const now = nowSec();
  await withToken(tokenFor(uniq("late"), { exp: now - 10 }));
  await withToken(tokenFor(uniq("early"), { nbf: now + 10 }));

  const [u, n, s] = [uniq("byUsername"), uniq("byName"), uniq("bySub")];
  const watcher = await withToken(tokenFor(uniq("watcher")));
  await withToken(mintToken({ username: u, name: "not-this", sub: "nor-this" }, SECRET));
  await withToken(mintToken({ name: n, sub: "not-this" }, SECRET));
  await withToken(mintToken({ sub: s }, SECRET));
  const list = await watcher.waitFor("getOnlineUsers", (l) => [u, n, s].every((x) => l.includes(x)));
  assert.ok(!list.includes("not-this") && !list.includes("nor-this"), JSON.stringify(list));
});

test("the token is also accepted in the query (`token`) and in an Authorization: Bearer header", async () => {
  const [q, hdr] = [uniq("viaQuery"), uniq("viaHeader")];
  const watcher = await withToken(tokenFor(uniq("watcher")));
  await connect(fx.url, { query: { token: tokenFor(q) } });
  await connect(fx.url, { extraHeaders: { Authorization: `Bearer ${tokenFor(hdr)}` } });
  await watcher.waitFor("getOnlineUsers", (l) => l.includes(q) && l.includes(hdr));
});

test("`sockeye token --user alice --ttl 60` prints an HS256 token the server accepts as alice", async () => {
  const alice = uniq("alice");
  const token = cliToken(alice, SECRET, 60);
  const parts = token.split(".");
  assert.equal(parts.length, 3, `a JWT: ${token}`);
  assert.equal(decodeJwtPart(token, 0).alg, "HS256");
  const claims = decodeJwtPart(token, 1);
  assert.ok([claims.username, claims.name, claims.sub].includes(alice), JSON.stringify(claims));
  assert.ok(Math.abs(claims.exp - (nowSec() + 60)) <= 5, `exp is now + 60: ${JSON.stringify(claims)}`);
  const expected = crypto.createHmac("sha256", SECRET).update(`${parts[0]}.${parts[1]}`).digest("base64url");
  assert.equal(parts[2], expected, "signed with JWT_SECRET");

  const a = await withToken(token);
  const text = `signed by the CLI ${uniq("m")}`;
  a.emit("message", { message: text });
  const [stored] = await a.waitFor("load", (l) => l.length === 1 && l[0].message === text);
  assert.equal(stored.user, alice);

  // Without --ttl it is still a token the server accepts.
  await withToken(cliToken(uniq("bob"), SECRET));
});

test("`user` and `from` in payloads are replaced by the token identity", async () => {
  const mallory = uniq("mallory");
  const friend = uniq("friend");
  const m = await withToken(tokenFor(mallory), { query: { to: friend } });
  const other = await withToken(tokenFor(friend), { query: { to: mallory } });

  // Seed 003: join, typing and chat message naming someone else.
  const roomId = (await other.ack("join room", { roomId: "general", user: friend })).roomId;
  await m.ack("join room", { roomId: "general", user: "bob" });
  assert.deepEqual(await other.waitFor("user joined room", (e) => e.roomId === roomId), { roomId, user: mallory });
  m.emit("typing", { roomId, user: "bob" });
  assert.deepEqual(await other.waitFor("typing"), { roomId, user: mallory });
  const text = `as bob ${uniq("m")}`;
  const ack = await m.ack("chat message", { roomId, user: "bob", text });
  assert.equal(ack.message.user, mallory);
  assert.equal((await other.waitFor("chat message", (x) => x.text === text)).user, mallory);

  // Seed 002: message with a `user`.
  const g = `global as bob ${uniq("m")}`;
  m.emit("message", { message: g, user: "bob" });
  assert.equal((await other.waitFor("load", (l) => l.some((x) => x.message === g)))[0].user, mallory);

  // Seed 004: a DM object with `from` (PROTOCOL.md section 9: "an object without `roomId` with a
  // string `text` is treated as seed 004 with that text").
  const dm = `dm as bob ${uniq("m")}`;
  m.emit("chat message", { text: dm, from: "bob" });
  const got = await other.waitFor("chat message", (x) => typeof x === "object" && x.text === dm);
  assert.equal(got.from, mallory);

  // Seed 001: a private message names its sender by the token too.
  const pm = await m.ack("sendMessage", { receiverId: friend, message: "hi", senderId: "bob", user: "bob" });
  assert.equal(pm.senderId, mallory);
});

test("self-declared names in the query or auth are ignored in token mode", async () => {
  const alice = uniq("alice");
  const watcher = await withToken(tokenFor(uniq("watcher")));
  const a = await connect(fx.url, {
    auth: { token: tokenFor(alice), username: "bob", userId: "bob", user: "bob" },
    query: { username: "bob", userId: "bob", user: "bob" },
  });
  const joined = await watcher.waitFor("userConnected", (u) => u.id === a.id);
  assert.equal(joined.username, alice);
  const ids = await watcher.waitFor("getOnlineUsers", (l) => l.includes(alice));
  assert.ok(!ids.includes("bob"), JSON.stringify(ids));
  const names = await watcher.waitFor("online", (l) => l.includes(alice));
  assert.ok(!names.includes("bob"), JSON.stringify(names));
});

test("HTTP /api routes need a Bearer token: 401 without or with a bad one, 200 with it; X-User is ignored", async () => {
  const alice = uniq("alice");
  const bob = uniq("bob");
  const auth = { Authorization: `Bearer ${tokenFor(alice)}` };

  assertHttpError(assert, await request(`${fx.url}/api/rooms`), 401);
  assertHttpError(assert, await request(`${fx.url}/api/rooms`, { headers: { "X-User": alice } }), 401);
  assertHttpError(
    assert,
    await request(`${fx.url}/api/rooms`, { headers: { Authorization: `Bearer ${mintToken({ username: alice }, "nope")}` } }),
    401,
  );
  assertHttpError(
    assert,
    await request(`${fx.url}/api/messages/send/${bob}`, { method: "POST", json: { message: "x" }, headers: { "X-User": alice } }),
    401,
  );

  const rooms = await request(`${fx.url}/api/rooms`, { headers: auth });
  assert.equal(rooms.status, 200, rooms.text);
  assert.ok(rooms.body.some((r) => r.name === "general"));

  const sent = await request(`${fx.url}/api/messages/send/${bob}`, {
    method: "POST",
    json: { message: "from alice" },
    headers: { ...auth, "X-User": "mallory" },
  });
  assert.equal(sent.status, 201, sent.text);
  assert.equal(sent.body.senderId, alice, "the caller is the token's user, not X-User");
  const conv = await request(`${fx.url}/api/messages/${bob}`, { headers: auth });
  assert.equal(conv.status, 200, conv.text);
  assert.deepEqual(conv.body.map((x) => x._id), [sent.body._id]);
});

test("a DM room's history over HTTP is for its two participants only: 403 for anyone else", async () => {
  const tag = crypto.randomBytes(3).toString("hex");
  // Names with `_` too: in `dm:u_x_v` the separator is ambiguous, and "u" must not pass for a
  // participant of the DM between "u_x" and "v".
  for (const [p1, p2, outsiders] of [
    [`Dummy-1-${tag}`, `Dummy-2-${tag}`, [`Dummy-3-${tag}`, `Dummy-1`]],
    [`u_${tag}`, `v${tag}`, [`u`, `${tag}_v${tag}`]],
  ]) {
    const a = await withToken(tokenFor(p1), { query: { to: p2 } });
    const b = await withToken(tokenFor(p2), { query: { to: p1 } });
    const text = `private ${uniq("m")}`;
    assert.equal(await a.ack("chat message", text), text);
    const live = await b.waitFor("chat message", (m) => typeof m === "object" && m.text === text);
    const roomId = [p1, p2].sort().join("_");
    assert.equal(live.roomId, `dm:${roomId}`);
    const read = (who) =>
      request(`${fx.url}/api/rooms/dm:${roomId}/messages`, { headers: { Authorization: `Bearer ${tokenFor(who)}` } });
    // Who gets what, all checked before asserting.
    const expected = {};
    const got = {};
    for (const who of [p1, p2, ...outsiders]) {
      const res = await read(who);
      expected[who] = [p1, p2].includes(who) ? 200 : 403;
      got[who] = res.status;
      if (res.status === 200) assert.deepEqual(res.body, [live], `${who} reads the DM`);
      else assertHttpError(assert, res, res.status);
    }
    assert.deepEqual(got, expected, `statuses for dm:${roomId}`);
    assertHttpError(assert, await request(`${fx.url}/api/rooms/dm:${roomId}/messages`), 401);
  }
});

test("a token that expires while connected disconnects its socket, with error token_expired first", async () => {
  // Valid at the handshake only thanks to the 30 s leeway; it runs out about 1.5 s later.
  const s = await withToken(tokenFor(uniq("expiring"), { exp: nowSec() - 28 }));
  const steady = await withToken(tokenFor(uniq("steady"), { exp: nowSec() + 3600 }));
  const err = await s.waitFor("error", (e) => e?.code === "token_expired", 5_000);
  assert.equal(typeof err.message, "string");
  assert.equal(await s.waitDisconnect(5_000), "io server disconnect");
  assert.ok(steady.connected, "a socket with a valid token stays connected");
});
