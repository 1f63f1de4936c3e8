// Seed 002, "Socket.IO Chat Server" with JWT: written only from that document (and PROTOCOL.md
// sections 1 and 7 where it is vague). The server runs with `JWT_SECRET=s3cr3t`, as in the seed;
// clients connect with `auth: { token }`, send `message { message }` and listen for `load` and
// `error`. Tokens are minted here with node:crypto, in the seed's claim shape (sub, name, iat).
"use strict";

const { test } = require("node:test");
const assert = require("node:assert/strict");
const { useServer, connect, connectRefused, mintToken, nowSec, uniq, isIso, HEX24 } = require("./harness");

const SECRET = "s3cr3t";
const fx = useServer({ env: { JWT_SECRET: SECRET } });

// The token printed in the seed (signed with some other secret than s3cr3t).
const SEED_TOKEN =
  "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";

function token(name, extra = {}) {
  return mintToken({ sub: uniq("sub"), name, iat: nowSec(), ...extra }, SECRET);
}

// The seed's connection: `io(url, { auth: { token } })`.
async function user(name) {
  const client = await connect(fx.url, { auth: { token: token(name) } });
  client.name = name;
  return client;
}

// PROTOCOL.md section 7: "A stored global message is `{ _id, user, message, timestamp }`"; the
// user is the token identity, "the claim `username`, else `name`, else `sub`" (section 1).
function assertStored(m, user, message) {
  assert.match(m._id, HEX24);
  assert.equal(m.user, user);
  assert.equal(m.message, message);
  assert.ok(isIso(m.timestamp), `timestamp is ISO-8601: ${m.timestamp}`);
}

test("a client with a valid token connects and gets `load` with an array", async () => {
  const a = await user(uniq("John Doe"));
  const history = await a.waitFor("load");
  assert.ok(Array.isArray(history), `load carries an array: ${JSON.stringify(history)}`);
});

test("`message` is stored and every client gets `load` with an array of that one message", async () => {
  const names = [uniq("ann"), uniq("ben"), uniq("cat")];
  const [a, b, c] = await Promise.all(names.map(user));
  await Promise.all([a, b, c].map((x) => x.waitFor("load")));
  const text = `Hello, world! ${uniq("m")}`;
  a.emit("message", { message: text });
  const got = await Promise.all([a, b, c].map((x) => x.waitFor("load", (l) => l.some((m) => m.message === text))));
  for (const l of got) {
    assert.equal(l.length, 1, `an array of one: ${JSON.stringify(l)}`);
    assertStored(l[0], a.name, text);
  }
  assert.deepEqual(got[1], got[0]);
  assert.deepEqual(got[2], got[0]);
});

test("after reconnecting, the first `load` holds the earlier messages, oldest first", async () => {
  const a = await user(uniq("ann"));
  const texts = [`first ${uniq("m")}`, `second ${uniq("m")}`, `third ${uniq("m")}`];
  for (const text of texts) {
    a.emit("message", { message: text });
    await a.waitFor("load", (l) => l.length === 1 && l[0].message === text);
  }
  a.close();
  const again = await user(a.name);
  const history = await again.waitFor("load");
  const mine = history.filter((m) => texts.includes(m.message));
  assert.deepEqual(mine.map((m) => m.message), texts, "history oldest first");
  for (const m of mine) assertStored(m, a.name, m.message);
  // The three are the newest messages, so they close the history.
  assert.deepEqual(history.slice(-3).map((m) => m.message), texts);
});

test("no token, a bad signature or an expired token: connect_error with data.code", async () => {
  // PROTOCOL.md section 1: "`err.data = { code, message }`. The codes are `missing_token`, ...,
  // `invalid_signature`, ..., `token_expired`".
  const cases = [
    ["no token", {}, "missing_token"],
    ["the seed's example token (another secret)", { auth: { token: SEED_TOKEN } }, "invalid_signature"],
    ["signed with the wrong secret", { auth: { token: mintToken({ name: "eve", iat: nowSec() }, "not-s3cr3t") } }, "invalid_signature"],
    // 30 s of leeway (section 1), so expire it well before that.
    ["expired", { auth: { token: token("old", { exp: nowSec() - 300 }) } }, "token_expired"],
  ];
  for (const [what, opts, code] of cases) {
    const err = await connectRefused(fx.url, opts);
    assert.equal(err.data?.code, code, `${what}: ${JSON.stringify(err.data)}`);
    assert.equal(typeof err.data.message, "string", what);
    assert.ok(err.message.length > 0, `${what}: err.message is a sentence`);
  }
});

test("a bad `message` payload gets an `error { code, message }` event and nothing is broadcast", async () => {
  const [a, b] = await Promise.all([user(uniq("ann")), user(uniq("ben"))]);
  await Promise.all([a.waitFor("load"), b.waitFor("load")]);
  const cases = [
    [{ message: 42 }, "invalid_payload"],
    [{ text: "no message field" }, "invalid_payload"],
    [{ message: "" }, "empty_text"],
    [{ message: "   \n\t " }, "empty_text"],
  ];
  for (const [payload, code] of cases) {
    a.forget();
    a.emit("message", payload);
    const err = await a.waitFor("error");
    assert.equal(err.code, code, `${JSON.stringify(payload)} -> ${JSON.stringify(err)}`);
    assert.equal(typeof err.message, "string");
  }
  // Nothing reached the other client, and the sender is still connected and served.
  const text = `still fine ${uniq("m")}`;
  a.emit("message", { message: text });
  const l = await b.waitFor("load", (x) => x.some((m) => m.message === text));
  assertStored(l[0], a.name, text);
  // b's loads: its history on connect, then only the good message.
  const live = b.received("load").slice(1);
  assert.deepEqual(live.map((x) => x.map((m) => m.message)), [[text]], "only the good message was broadcast");
  assert.ok(a.connected);
});
