// Seed 000, "Socket.io Secure Chat Server": written only from that document (and PROTOCOL.md
// section 5 where it is vague). Clients connect with `query: { publicKey, username }` and use
// `welcome`, `online_users`, `userConnected`, `userDisconnected`, `all_chat` and `chat`.
"use strict";

const { test } = require("node:test");
const assert = require("node:assert/strict");
const { useServer, connect, uniq } = require("./harness");

const fx = useServer();

// The seed's connection: `io(url, { query: { publicKey, username } })`.
async function user(name, publicKey = `pk-${name}`) {
  const client = await connect(fx.url, { query: { publicKey, username: name } });
  client.name = name;
  client.publicKey = publicKey;
  return client;
}

test("welcome carries the session id, which is the client's socket.id", async () => {
  const a = await user(uniq("alice"));
  const { sessionId } = await a.waitFor("welcome");
  assert.equal(typeof sessionId, "string");
  assert.equal(sessionId, a.id);
});

test("online_users lists the earlier clients (id, username, publicKey) but not the newcomer; userConnected goes to the others only", async () => {
  const a = await user(uniq("alice"), "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----");
  const b = await user(uniq("bob"));

  // a learns about b.
  const bAtA = await a.waitFor("userConnected", (u) => u.id === b.id);
  assert.deepEqual(bAtA, { id: b.id, username: b.name, publicKey: b.publicKey });

  const listB = (await b.waitFor("online_users")).online_users;
  assert.ok(Array.isArray(listB), "online_users.online_users is an array");
  assert.deepEqual(
    listB.find((u) => u.id === a.id),
    { id: a.id, username: a.name, publicKey: a.publicKey },
  );
  assert.ok(!listB.some((u) => u.id === b.id), "the newcomer is not in its own online_users");

  const c = await user(uniq("carol"));
  const listC = (await c.waitFor("online_users")).online_users;
  assert.ok(listC.some((u) => u.id === a.id && u.username === a.name), "carol sees alice");
  assert.ok(listC.some((u) => u.id === b.id && u.username === b.name), "carol sees bob");
  assert.ok(!listC.some((u) => u.id === c.id), "carol is not in her own list");
  await a.waitFor("userConnected", (u) => u.id === c.id);
  await b.waitFor("userConnected", (u) => u.id === c.id);

  // Nobody is told about their own arrival.
  const own = await Promise.all([a, b, c].map((x) => x.quiet("userConnected", (u) => u.id === x.id)));
  assert.deepEqual(own, [[], [], []], "nobody gets its own userConnected");
});

test("all_chat reaches every client, the sender included, with senderId and username", async () => {
  const [a, b, c] = [await user(uniq("alice")), await user(uniq("bob")), await user(uniq("carol"))];
  const message = `hello everyone ${uniq("m")}`;
  a.emit("all_chat", { message });
  const expected = { senderId: a.id, username: a.name, message };
  for (const x of [a, b, c]) {
    assert.deepEqual(await x.waitFor("all_chat", (m) => m.message === message), expected);
  }
});

test("chat goes to the receiver only: not to a third client, not back to the sender", async () => {
  const [a, b, c] = [await user(uniq("alice")), await user(uniq("bob")), await user(uniq("carol"))];
  // The seed does not say how the receiver is named; PROTOCOL.md section 5:
  // "`chat { receiverId | to | id, message }`" and "The receiver of `chat` is a socket id".
  const message = `psst ${uniq("m")}`;
  a.emit("chat", { receiverId: b.id, message });
  assert.deepEqual(await b.waitFor("chat", (m) => m.message === message), { senderId: a.id, message });
  const [atC, atA] = await Promise.all([c.quiet("chat"), a.quiet("chat")]);
  assert.deepEqual(atC, [], "a third client gets no private chat");
  assert.deepEqual(atA, [], "the sender gets no copy");
});

test("chat addressed by user name (`to`) reaches every socket of that user", async () => {
  // PROTOCOL.md section 5: "The receiver of `chat` is a socket id ... or a user name. Every
  // socket of that user gets it."
  const a = await user(uniq("alice"));
  const bobName = uniq("bob");
  const b1 = await user(bobName);
  const b2 = await user(bobName);
  const c = await user(uniq("carol"));
  const message = `to both tabs ${uniq("m")}`;
  a.emit("chat", { to: bobName, message });
  for (const b of [b1, b2]) {
    assert.deepEqual(await b.waitFor("chat", (m) => m.message === message), { senderId: a.id, message });
  }
  assert.deepEqual(await c.quiet("chat"), []);
});

test("ciphertext bodies (an object, a long base64 string) are relayed byte for byte", async () => {
  const [a, b] = [await user(uniq("alice")), await user(uniq("bob"))];
  const crypto = require("node:crypto");
  const envelope = {
    v: 1,
    alg: "ECDH-P256+AES-256-GCM",
    iv: crypto.randomBytes(12).toString("base64"),
    ciphertext: crypto.randomBytes(9_000).toString("base64"),
    tag: crypto.randomBytes(16).toString("base64"),
    recipients: [{ kid: "k1", wrapped: crypto.randomBytes(48).toString("base64") }, { kid: "k2", wrapped: null }],
    n: 12.5,
    ok: true,
    note: 'quotes " and \\ backslash, newline\n, unicode ünïcødé 🔐',
  };
  const longBase64 = crypto.randomBytes(30_000).toString("base64");

  // Comparing the re-serialised JSON also checks key order and number formatting.
  a.emit("chat", { receiverId: b.id, message: envelope });
  const gotObj = await b.waitFor("chat", (m) => m.message && m.message.iv === envelope.iv);
  assert.equal(JSON.stringify(gotObj.message), JSON.stringify(envelope));

  a.emit("chat", { receiverId: b.id, message: longBase64 });
  const gotStr = await b.waitFor("chat", (m) => m.message === longBase64);
  assert.equal(gotStr.message.length, longBase64.length);

  a.emit("all_chat", { message: envelope });
  for (const x of [a, b]) {
    const got = await x.waitFor("all_chat", (m) => m.message && m.message.iv === envelope.iv);
    assert.equal(JSON.stringify(got.message), JSON.stringify(envelope));
  }
  a.emit("all_chat", { message: longBase64 });
  assert.equal((await b.waitFor("all_chat", (m) => m.message === longBase64)).senderId, a.id);
});

test("userDisconnected { id } goes to the others when a client leaves", async () => {
  const [a, b, c] = [await user(uniq("alice")), await user(uniq("bob")), await user(uniq("carol"))];
  const bId = b.id;
  b.close();
  assert.deepEqual(await a.waitFor("userDisconnected", (u) => u.id === bId), { id: bId });
  assert.deepEqual(await c.waitFor("userDisconnected", (u) => u.id === bId), { id: bId });

  // And a later newcomer does not see the departed client.
  const d = await user(uniq("dave"));
  const list = (await d.waitFor("online_users")).online_users;
  assert.ok(!list.some((u) => u.id === bId), "a departed client is not in online_users");
  assert.ok(list.some((u) => u.id === a.id));
});
