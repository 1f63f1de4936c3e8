// Raw Engine.IO v4 / Socket.IO v5 over HTTP long-polling, with hand-written requests: the exact
// handshake, the JSON error answers (codes 0, 1, 2, 5), the second concurrent GET, the close
// packet, and Socket.IO packets on the wire (CONNECT, EVENT, ACK, BINARY_EVENT, CONNECT_ERROR).
"use strict";

const { test, before, after } = require("node:test");
const assert = require("node:assert/strict");
const { startServer, httpRequest, sleep } = require("./harness");

let server;

before(async () => {
  server = await startServer();
});
after(async () => {
  await server?.stop();
});

const SEPARATOR = "\x1e";
const errors = {
  transportUnknown: { code: 0, message: "Transport unknown" },
  sessionUnknown: { code: 1, message: "Session ID unknown" },
  badHandshakeMethod: { code: 2, message: "Bad handshake method" },
  unsupportedVersion: { code: 5, message: "Unsupported protocol version" },
};

function pollingUrl(path = "/socket.io/", query = "EIO=4&transport=polling") {
  return `${server.url}${path}?${query}`;
}

function assertJsonError(res, expected) {
  assert.equal(res.status, 400, `status of ${JSON.stringify(res)}`);
  assert.match(res.headers["content-type"] ?? "", /^application\/json/);
  assert.deepEqual(JSON.parse(res.body), expected);
}

async function handshake(path = "/socket.io/") {
  const res = await httpRequest(pollingUrl(path));
  assert.equal(res.status, 200);
  assert.equal(res.body[0], "0", `open packet expected, got ${JSON.stringify(res.body)}`);
  return JSON.parse(res.body.slice(1));
}

// A raw long-polling session: `get()` returns the packets of one GET, `collect(n)` keeps polling
// (answering pings) until `n` non-ping packets arrived.
class RawSession {
  constructor(sid, path = "/socket.io/") {
    this.url = `${pollingUrl(path)}&sid=${encodeURIComponent(sid)}`;
  }
  static async open(path) {
    const { sid } = await handshake(path);
    return new RawSession(sid, path);
  }
  async post(body) {
    const res = await httpRequest(this.url, { method: "POST", body });
    assert.equal(res.status, 200, `POST ${JSON.stringify(body)} -> ${JSON.stringify(res)}`);
    return res;
  }
  async get() {
    const res = await httpRequest(this.url, { ms: 2_000 });
    assert.equal(res.status, 200, `GET -> ${JSON.stringify(res)}`);
    return res.body.split(SEPARATOR);
  }
  async collect(n) {
    const packets = [];
    for (let polls = 0; packets.length < n && polls < 20; polls++) {
      for (const packet of await this.get()) {
        if (packet === "2") await this.post("3");
        else packets.push(packet);
      }
    }
    return packets;
  }
}

test("handshake: open packet has exactly sid, upgrades, pingInterval, pingTimeout, maxPayload", { timeout: 5_000 }, async () => {
  for (const path of ["/socket.io/", "/engine.io/"]) {
    const res = await httpRequest(pollingUrl(path));
    assert.equal(res.status, 200);
    assert.match(res.headers["content-type"] ?? "", /^text\/plain/);
    assert.equal(res.body[0], "0");
    const open = JSON.parse(res.body.slice(1));
    assert.deepEqual(Object.keys(open).sort(), ["maxPayload", "pingInterval", "pingTimeout", "sid", "upgrades"]);
    assert.equal(typeof open.sid, "string");
    assert.ok(open.sid.length > 0);
    assert.deepEqual(open.upgrades, ["websocket"]);
    assert.equal(open.pingInterval, 300);
    assert.equal(open.pingTimeout, 200);
    assert.equal(open.maxPayload, 1_000_000);
  }
});

test("handshake: every session gets a distinct sid", { timeout: 5_000 }, async () => {
  const sids = new Set();
  for (let i = 0; i < 10; i++) sids.add((await handshake()).sid);
  assert.equal(sids.size, 10);
});

test("unknown sid is answered 400 code 1 for GET and POST", { timeout: 5_000 }, async () => {
  const url = `${pollingUrl()}&sid=doesnotexist`;
  assertJsonError(await httpRequest(url), errors.sessionUnknown);
  assertJsonError(await httpRequest(url, { method: "POST", body: "40" }), errors.sessionUnknown);
});

test("unknown transport is answered 400 code 0", { timeout: 5_000 }, async () => {
  assertJsonError(await httpRequest(pollingUrl("/socket.io/", "EIO=4&transport=carrier-pigeon")), errors.transportUnknown);
  assertJsonError(await httpRequest(pollingUrl("/socket.io/", "EIO=4")), errors.transportUnknown);
});

test("missing or unsupported EIO is answered 400 code 5", { timeout: 5_000 }, async () => {
  for (const query of ["transport=polling", "EIO=3&transport=polling", "EIO=5&transport=polling", "EIO=abc&transport=polling"]) {
    assertJsonError(await httpRequest(pollingUrl("/socket.io/", query)), errors.unsupportedVersion);
  }
});

test("a POST without sid is answered 400 code 2", { timeout: 5_000 }, async () => {
  assertJsonError(await httpRequest(pollingUrl(), { method: "POST", body: "40" }), errors.badHandshakeMethod);
});

test("second concurrent GET closes the session", { timeout: 5_000 }, async () => {
  const session = await RawSession.open();
  const first = httpRequest(session.url, { ms: 3_000 });
  // Let the first GET reach the server and park; the first ping is only due after 300 ms.
  await sleep(100);
  const second = await httpRequest(session.url);
  assert.equal(second.status, 400, "the overlapping GET is refused");
  const firstRes = await first;
  assert.equal(firstRes.status, 200);
  assert.equal(firstRes.body, "1", "the parked GET is answered with the close packet");
  assertJsonError(await httpRequest(session.url), errors.sessionUnknown);
});

test("a close packet from the client ends the session", { timeout: 5_000 }, async () => {
  const session = await RawSession.open();
  await session.post("1");
  await sleep(50);
  assertJsonError(await httpRequest(session.url), errors.sessionUnknown);
});

test("POST is answered 200 ok", { timeout: 5_000 }, async () => {
  const session = await RawSession.open();
  const res = await session.post("40");
  assert.equal(res.body, "ok");
});

test("raw Socket.IO connect, greeting, event and ack over polling", { timeout: 10_000 }, async () => {
  const session = await RawSession.open();
  await session.post("40");
  const [connect, greeting] = await session.collect(2);
  assert.match(connect, /^40\{/);
  const connectData = JSON.parse(connect.slice(2));
  assert.equal(typeof connectData.sid, "string");
  assert.equal(greeting, '42["auth",{}]');

  await session.post(`42["message","hi",{"a":[1,2]}]${SEPARATOR}4217["message-with-ack","x",2]`);
  const packets = await session.collect(2);
  assert.deepEqual(packets.sort(), ['42["message-back","hi",{"a":[1,2]}]', '4317["x",2]']);
});

test("raw CONNECT with auth payload and to /custom", { timeout: 10_000 }, async () => {
  const session = await RawSession.open();
  await session.post('40{"token":"abc"}');
  const [connect, greeting] = await session.collect(2);
  assert.match(connect, /^40\{"sid":/);
  assert.equal(greeting, '42["auth",{"token":"abc"}]');
  await session.post('40/custom,{"n":1}');
  const [customConnect, customGreeting] = await session.collect(2);
  assert.match(customConnect, /^40\/custom,\{"sid":/);
  assert.equal(customGreeting, '42/custom,["auth",{"n":1}]');
});

test("raw CONNECT to an unknown namespace gets CONNECT_ERROR", { timeout: 5_000 }, async () => {
  const session = await RawSession.open();
  await session.post("40/nope,");
  const [packet] = await session.collect(1);
  assert.equal(packet, '44/nope,{"message":"Invalid namespace"}');
});

test("raw binary event over polling uses base64 'b' packets", { timeout: 5_000 }, async () => {
  const session = await RawSession.open();
  await session.post("40");
  await session.collect(2);
  await session.post(`451-["message",{"_placeholder":true,"num":0}]${SEPARATOR}bAQID`);
  const packets = await session.collect(2);
  assert.deepEqual(packets, ['451-["message-back",{"_placeholder":true,"num":0}]', "bAQID"]);
});

test("raw engine.io echo over polling, text and binary", { timeout: 5_000 }, async () => {
  const session = await RawSession.open("/engine.io/");
  await session.post(`4hello${SEPARATOR}bAAEC`);
  assert.deepEqual(await session.collect(2), ["4hello", "bAAEC"]);
});
