// Durability (PROTOCOL.md section 4: "A message is acked only after it is durable on disk"):
// several clients stream acked messages, the server is killed with SIGKILL mid-stream, and after a
// restart on the same data directory every acked message is there, over HTTP and in the history.
"use strict";

const { test, after, afterEach } = require("node:test");
const assert = require("node:assert/strict");
const h = require("./harness");
const { startServer, connect, uniq, request, closeClients, sleep } = h;

const HISTORY = 1000;
const PAGE = 200; // --max-history-page default
const PER_WRITER = 240; // 4 writers: 960 messages at most, under HISTORY
let server;

afterEach(() => closeClients());
after(async () => {
  closeClients();
  await server?.cleanup();
});

// Every message of a room over HTTP, oldest first, paging back with `before`.
async function allRoomMessages(url, roomId) {
  const pages = [];
  let before = null;
  for (;;) {
    const q = before ? `?limit=${PAGE}&before=${before}` : `?limit=${PAGE}`;
    const res = await request(`${url}/api/rooms/${roomId}/messages${q}`);
    assert.equal(res.status, 200, res.text);
    assert.ok(res.body.length <= PAGE, `a page holds at most ${PAGE}`);
    if (res.body.length === 0) break;
    pages.unshift(res.body);
    before = res.body[0]._id;
    if (res.body.length < PAGE) break;
  }
  return pages.flat();
}

test("every acked message survives kill -9 and a restart", { timeout: 30_000 }, async (t) => {
  server = await startServer({
    args: ["--rate-limit", "100000", "--rate-burst", "100000", "--history-limit", String(HISTORY)],
  });
  const writers = await Promise.all([0, 1, 2, 3].map((i) => connect(server.url, { query: { username: `w${i}` } })));
  const roomId = (await writers[0].ack("create room", { name: uniq("durable") })).room._id;
  for (const w of writers) assert.equal((await w.ack("join room", { roomId })).success, true);

  // Private messages (seed 001) too, acked the same way.
  const acked = new Map(); // _id -> text
  const ackedPrivate = new Map();
  let stop = false;
  async function stream(w, i) {
    const inFlight = new Set();
    // At most PER_WRITER each, so that the whole room fits in the history (checked below).
    for (let n = 0; !stop && n < PER_WRITER; n++) {
      const text = `w${i} #${n}`;
      const p = w.socket
        .timeout(2_000)
        .emitWithAck("chat message", { roomId, text })
        .then((ack) => {
          if (ack && ack.success === true) acked.set(ack.message._id, text);
        })
        .catch(() => {}); // no ack: the server died first, the message may or may not be stored
      inFlight.add(p);
      p.finally(() => inFlight.delete(p));
      if (n % 10 === 0) {
        const pm = w.socket
          .timeout(2_000)
          .emitWithAck("sendMessage", { receiverId: "reader", message: `pm ${text}` })
          .then((ack) => {
            if (ack && ack.success === true) ackedPrivate.set(ack._id, ack.message);
          })
          .catch(() => {});
        inFlight.add(pm);
        pm.finally(() => inFlight.delete(pm));
      }
      if (inFlight.size >= 8) await Promise.race(inFlight);
    }
  }
  const streams = writers.map(stream);

  // Kill mid-stream, once a fair number of messages is acked.
  const deadline = Date.now() + 10_000;
  while (acked.size < 300 && Date.now() < deadline) await sleep(5);
  t.diagnostic(`kill after ${Date.now() - deadline + 10_000} ms of streaming`);
  await server.kill9();
  const ackedAtKill = acked.size;
  const sentAll = acked.size === 4 * PER_WRITER;
  stop = true;
  // Let the clients notice; acks cannot arrive any more.
  closeClients();
  await Promise.race([Promise.all(streams), sleep(2_500)]);
  assert.ok(ackedAtKill >= 50, `enough messages were acked before the kill: ${ackedAtKill}`);
  assert.equal(acked.size, ackedAtKill, "no ack arrived after the kill");
  assert.ok(!sentAll, "the kill came mid-stream, not after every message was acked");

  const restartAt = Date.now();
  await server.start();
  t.diagnostic(`restart took ${Date.now() - restartAt} ms`);
  const stored = await allRoomMessages(server.url, roomId);
  t.diagnostic(`${ackedAtKill} room messages and ${ackedPrivate.size} private ones acked at the kill; ${stored.length} stored`);
  const storedIds = new Map(stored.map((m) => [m._id, m.text]));
  assert.equal(storedIds.size, stored.length, "no message appears twice across the pages");
  const missing = [...acked].filter(([id, text]) => storedIds.get(id) !== text);
  assert.deepEqual(missing.slice(0, 10), [], `${missing.length} of ${acked.size} acked messages missing over HTTP`);
  // Each writer's messages are stored in the order it sent them.
  for (let i = 0; i < 4; i++) {
    const ns = stored.filter((m) => m.text.startsWith(`w${i} #`)).map((m) => Number(m.text.split("#")[1]));
    assert.deepEqual(ns, [...ns].sort((a, b) => a - b), `writer ${i}'s order`);
  }

  const reader = await connect(server.url, { query: { username: "reader" } });
  const { history } = await reader.ack("join room", { roomId });
  const historyIds = new Set(history.map((m) => m._id));
  assert.deepEqual(
    [...acked.keys()].filter((id) => !historyIds.has(id)).slice(0, 10),
    [],
    "every acked message is in `message history`",
  );
  assert.deepEqual(history.map((m) => m._id), stored.map((m) => m._id), "history and HTTP agree");

  for (let i = 0; i < 4; i++) {
    const conv = await request(`${server.url}/api/messages/w${i}?limit=${PAGE}`, { headers: { "X-User": "reader" } });
    assert.equal(conv.status, 200, conv.text);
    for (const m of conv.body) ackedPrivate.delete(m._id);
  }
  assert.deepEqual([...ackedPrivate.values()].slice(0, 10), [], "every acked private message survived");
});
