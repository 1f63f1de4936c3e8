// Drives real socket.io-client connections against a running sockeye and scrapes GET /metrics
// between the steps. Run by tests/metrics.rs:
//
//   node metrics/scenario.js echo URL   # the conformance app (`--app echo`)
//   node metrics/scenario.js chat URL   # the chat app (development mode, no JWT secret)
//
// It prints one JSON object on stdout: { "<step>": "<exposition text>", ... }. The Rust test
// parses the texts (with prometheus_client) and checks the numbers; this script only checks that
// the clients saw what they should, and fails (exit 1) with a message otherwise.
"use strict";

const { io } = require("socket.io-client");

const STEP_MS = 5000;

function within(promise, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${STEP_MS} ms: ${what}`)), STEP_MS);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function once(emitter, event, what) {
  return within(new Promise((resolve) => emitter.once(event, (...args) => resolve(args))), what);
}

async function scrape(url) {
  const res = await fetch(`${url}/metrics`);
  if (res.status !== 200) throw new Error(`GET /metrics: ${res.status}`);
  const type = res.headers.get("content-type");
  if (type !== "text/plain; version=0.0.4; charset=utf-8") throw new Error(`content type ${type}`);
  return res.text();
}

// Sum of the samples of `name` (any labels) whose line matches `filter`.
function value(text, name, filter = "") {
  let sum = 0;
  for (const line of text.split("\n")) {
    if (line.startsWith(name) && (line[name.length] === " " || line[name.length] === "{") && line.includes(filter)) {
      sum += Number(line.slice(line.lastIndexOf(" ") + 1));
    }
  }
  return sum;
}

// Scrape until `ok(text)` (the server publishes once per loop turn; closes land a turn later).
async function scrapeUntil(url, ok, what) {
  const deadline = Date.now() + STEP_MS;
  for (;;) {
    const text = await scrape(url);
    if (ok(text)) return text;
    if (Date.now() > deadline) throw new Error(`metrics never showed ${what}:\n${text}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function connected(socket, what) {
  return socket.connected ? Promise.resolve() : once(socket, "connect", `${what} connects`);
}

async function echo(url) {
  const out = {};
  const opts = { forceNew: true, reconnection: false };
  const ws = io(url, { ...opts, transports: ["websocket"] });
  const poll = io(url, { ...opts, transports: ["polling"], upgrade: false });
  const up = io(url, { ...opts });
  const custom = io(`${url}/custom`, { ...opts, transports: ["websocket"] });
  const all = [ws, poll, up, custom];
  try {
    await Promise.all([
      connected(ws, "ws"),
      connected(poll, "poll"),
      connected(up, "up"),
      connected(custom, "custom"),
    ]);
    if (up.io.engine.transport.name !== "websocket") {
      await once(up.io.engine, "upgrade", "the polling client upgrades");
    }
    for (const s of [poll, up]) {
      const ok = await within(s.emitWithAck("join", "r"), "join r");
      if (ok !== true) throw new Error(`join answered ${ok}`);
    }
    const got = [once(poll, "room-msg", "poll gets room-msg"), once(up, "room-msg", "up gets room-msg")];
    ws.emit("to-room", "r", "hello");
    await Promise.all(got);
    out.connected = await scrape(url);

    // The server disconnects `up` (its session stays until the client closes it); then every
    // other client disconnects itself.
    const gone = once(up, "disconnect", "up is disconnected by the server");
    up.emit("server-disconnect");
    const [reason] = await gone;
    if (reason !== "io server disconnect") throw new Error(`up disconnected: ${reason}`);
    up.io.engine.close();
    for (const s of [ws, poll, custom]) s.disconnect();
    out.closed = await scrapeUntil(
      url,
      (t) => value(t, "sockeye_sessions") === 0 && value(t, "sockeye_sockets") === 0,
      "every session and socket gone",
    );
    return out;
  } finally {
    for (const s of all) s.close();
  }
}

async function chat(url) {
  const out = {};
  const opts = { forceNew: true, reconnection: false, transports: ["websocket"] };
  const alice = io(url, { ...opts, query: { userId: "alice" } });
  const bob = io(url, { ...opts, query: { userId: "bob" } });
  try {
    await Promise.all([connected(alice, "alice"), connected(bob, "bob")]);
    const delivered = once(bob, "newMessage", "bob gets newMessage");
    const ack = await within(alice.emitWithAck("sendMessage", { receiverId: "bob", message: "hi" }), "ack");
    if (!ack || ack.success !== true) throw new Error(`sendMessage ack ${JSON.stringify(ack)}`);
    await delivered;
    out.stored = await scrape(url);
    return out;
  } finally {
    alice.close();
    bob.close();
  }
}

async function main() {
  const [mode, url] = process.argv.slice(2);
  const run = { echo, chat }[mode];
  if (!run || !url) throw new Error("usage: scenario.js echo|chat URL");
  process.stdout.write(`${JSON.stringify(await run(url))}\n`);
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(err && err.stack ? err.stack : err);
    process.exit(1);
  },
);
