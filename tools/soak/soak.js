#!/usr/bin/env node
// Soak test for sockeye's chat app (docs/PROTOCOL.md sections 1-4 and 8; issue 5).
//
// Runs chat-shaped load for a while against one server: clients join rooms, send acked
// `chat message`s and private `sendMessage`s, type, leave and rejoin rooms, disconnect (cleanly,
// by closing the transport, or by dropping the TCP connection) and reconnect with a new socket.
// At the end it checks that nothing was lost and that the server's resident memory and open
// descriptors stayed bounded. See tools/soak/README.md.
//
//   node tools/soak/soak.js --bin target/release/sockeye [--minutes 30] [--clients 200] ...
//   node tools/soak/soak.js --url http://127.0.0.1:3000 --pid 1234 ...
//
// Exit status: 0 passed; 1 a check failed (the reasons are printed); 2 the run could not be set up
// (bad flags, the server did not start, the client library is missing); 3 the hard time limit
// (minutes * 60 + 120 s) ran out. With --bin the server runs in its own process group, which is
// SIGKILLed on every way out, and its temporary data directory is removed.
"use strict";

const { spawn } = require("node:child_process");
const fs = require("node:fs");
const http = require("node:http");
const os = require("node:os");
const path = require("node:path");
const { monitorEventLoopDelay } = require("node:perf_hooks");

const CLIENT_DIR = path.resolve(__dirname, "../../tests/interop/node_modules/socket.io-client");

const USAGE = `usage: node tools/soak/soak.js (--bin SOCKEYE | --url URL [--pid PID]) [options]

  --bin PATH              start this sockeye binary (--host 127.0.0.1 --port 0 --data-dir <temp>)
  --server-arg ARG        extra flag for the started server (repeatable)
  --url URL               use an already running chat server instead
  --pid PID               that server's process id, for /proc (without it nothing is sampled)
  --minutes M             length of the load phase [default: 30]
  --clients N             clients, steady ones included [default: 200]
  --rooms R               rooms created at start [default: 20]
  --rate X                chat messages per second per sender [default: 1]
  --senders N             clients that send chat messages [default: 25% of --clients]
  --steady N              clients that never churn [default: max(4, 10% of --clients)]
  --polling-share F       share of clients held to HTTP long-polling [default: 0.2]
  --reconnects-per-s X    clients that disconnect and reconnect each second [default: 2% of --clients]
  --moves-per-s X         clients that leave and/or join a room each second [default: 2% of --clients]
  --dms-per-s X           private messages (sendMessage) per second [default: 1% of --clients]
  --typing-per-s X        typing events per second [default: 5% of --clients]
  --warmup F              share of the run before the memory baseline is taken [default: 0.2]
  --rss-growth-pct P      allowed RSS growth after warm-up, percent ... [default: 20]
  --rss-growth-mib M      ... or MiB, whichever is larger [default: 16]
  --fd-margin N           allowed extra descriptors at the end [default: 8]
  --sample-s S            seconds between samples of /proc [default: 5]
  --seed N                seed of the random choices [default: random]
  --json                  print only a one-line JSON summary on stdout (the report goes to stderr)
  -h, --help              this text`;

// ---------------------------------------------------------------------------------------------
// Options

function parseArgs(argv) {
  const o = {
    bin: null,
    url: null,
    pid: null,
    serverArgs: [],
    minutes: 30,
    clients: 200,
    rooms: 20,
    rate: 1,
    senders: null,
    steady: null,
    pollingShare: 0.2,
    reconnectsPerS: null,
    movesPerS: null,
    dmsPerS: null,
    typingPerS: null,
    warmup: 0.2,
    rssGrowthPct: 20,
    rssGrowthMib: 16,
    fdMargin: 8,
    sampleS: 5,
    seed: null,
    json: false,
  };
  const num = (flag, v) => {
    const n = Number(v);
    if (v === undefined || v === "" || !Number.isFinite(n)) throw new Error(`${flag} needs a number`);
    return n;
  };
  const numeric = {
    "--pid": "pid",
    "--minutes": "minutes",
    "--clients": "clients",
    "--rooms": "rooms",
    "--rate": "rate",
    "--senders": "senders",
    "--steady": "steady",
    "--polling-share": "pollingShare",
    "--reconnects-per-s": "reconnectsPerS",
    "--moves-per-s": "movesPerS",
    "--dms-per-s": "dmsPerS",
    "--typing-per-s": "typingPerS",
    "--warmup": "warmup",
    "--rss-growth-pct": "rssGrowthPct",
    "--rss-growth-mib": "rssGrowthMib",
    "--fd-margin": "fdMargin",
    "--sample-s": "sampleS",
    "--seed": "seed",
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "-h" || a === "--help") {
      console.log(USAGE);
      process.exit(0);
    } else if (a === "--json") o.json = true;
    else if (a === "--bin") o.bin = argv[++i];
    else if (a === "--url") o.url = argv[++i];
    else if (a === "--server-arg") o.serverArgs.push(argv[++i]);
    else if (numeric[a]) o[numeric[a]] = num(a, argv[++i]);
    else throw new Error(`unknown argument \`${a}\``);
  }
  if (!o.bin === !o.url) throw new Error("give exactly one of --bin and --url");
  if (o.bin !== null && !fs.existsSync(o.bin)) throw new Error(`--bin ${o.bin} does not exist`);
  if (o.serverArgs.some((a) => a === undefined)) throw new Error("--server-arg needs a value");
  if (o.url && !/^https?:\/\//.test(o.url)) throw new Error("--url must start with http:// or https://");
  const int = (k, min) => {
    if (!Number.isInteger(o[k]) || o[k] < min) throw new Error(`--${k} must be an integer >= ${min}`);
  };
  o.steady ??= Math.max(4, Math.round(o.clients * 0.1));
  o.senders ??= Math.max(1, Math.round(o.clients * 0.25));
  o.reconnectsPerS ??= Math.max(1, o.clients * 0.02);
  o.movesPerS ??= Math.max(1, o.clients * 0.02);
  o.dmsPerS ??= Math.max(1, o.clients * 0.01);
  o.typingPerS ??= Math.max(1, o.clients * 0.05);
  o.seed ??= Math.floor(Math.random() * 2 ** 31);
  int("clients", 3);
  int("rooms", 1);
  int("steady", 2);
  int("senders", 0);
  int("fdMargin", 0);
  if (o.steady >= o.clients) throw new Error("--steady must be below --clients (some clients churn)");
  if (o.senders > o.clients) throw new Error("--senders must not exceed --clients");
  if (!(o.minutes > 0)) throw new Error("--minutes must be positive");
  if (!(o.rate > 0 && o.rate <= 10)) throw new Error("--rate must be in (0, 10] (the server's default limit)");
  if (!(o.pollingShare >= 0 && o.pollingShare <= 1)) throw new Error("--polling-share must be in [0, 1]");
  if (!(o.warmup > 0 && o.warmup < 1)) throw new Error("--warmup must be in (0, 1)");
  if (!(o.sampleS >= 0.5)) throw new Error("--sample-s must be at least 0.5");
  for (const k of ["reconnectsPerS", "movesPerS", "dmsPerS", "typingPerS", "rssGrowthPct", "rssGrowthMib"]) {
    if (!(o[k] >= 0)) throw new Error(`--${k} must not be negative`);
  }
  return o;
}

// ---------------------------------------------------------------------------------------------
// Small helpers

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const nowMs = () => Date.now();

function within(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function short(value, max = 200) {
  let s;
  try {
    s = JSON.stringify(value);
  } catch {
    s = String(value);
  }
  if (s === undefined) s = String(value);
  return s.length > max ? `${s.slice(0, max)}...` : s;
}

// mulberry32: a small seeded generator, so a run's choices can be repeated with --seed.
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function percentile(sorted, p) {
  if (sorted.length === 0) return null;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

const kib = (n) => (n === null || n === undefined ? "-" : `${(n / 1024).toFixed(1)} MiB`);

// ---------------------------------------------------------------------------------------------
// Run state shared by everything below

let opts;
let human = (line) => process.stdout.write(`${line}\n`);
let random;
let phase = "setup";

const server = { child: null, pid: null, url: null, dataDir: null, output: [], lines: 0, exit: null, stopping: false };
const violations = [];
const violationCounts = new Map();
const warnings = [];

// Worth reading, but not what this test is about (the run still passes).
function warning(detail) {
  warnings.push(detail);
  human(`warning: ${detail}`);
}

// A check failed: kept (the first 10 of each kind with their details) and counted.
function violation(kind, detail) {
  const n = (violationCounts.get(kind) ?? 0) + 1;
  violationCounts.set(kind, n);
  if (n <= 10) violations.push(`${kind}: ${detail}`);
  if (n === 1) human(`!! ${kind}: ${detail}`);
}

const stats = {
  connects: 0,
  connectFailures: 0,
  reconnects: 0,
  closeClean: 0,
  closeEngine: 0,
  closeTcp: 0,
  joins: 0,
  leaves: 0,
  roomMoves: 0,
  chatSent: 0,
  chatAcked: 0,
  chatLostToChurn: 0,
  chatRejected: 0,
  chatDelivered: 0,
  dmSent: 0,
  dmAcked: 0,
  dmLostToChurn: 0,
  dmDelivered: 0,
  typingSent: 0,
  typingReceived: 0,
  ackLatencies: [],
};

// ---------------------------------------------------------------------------------------------
// The server

let partialLine = "";

function keepOutput(chunk) {
  const parts = (partialLine + chunk.toString()).split("\n");
  partialLine = parts.pop();
  for (const line of parts) {
    if (line === "") continue;
    server.lines += 1;
    server.output.push(line);
    if (server.output.length > 200) server.output.shift();
    if (/panicked|panic:|thread '.*' panicked/.test(line)) violation("server panic", line);
  }
}

// SIGKILLs the started server's process group and removes its data directory. Synchronous and
// idempotent: it also runs from process.on("exit").
function cleanupNow() {
  const child = server.child;
  if (child && child.exitCode === null && child.signalCode === null) {
    try {
      process.kill(-child.pid, "SIGKILL");
    } catch {
      try {
        child.kill("SIGKILL");
      } catch {
        // Already gone.
      }
    }
  }
  if (server.dataDir) {
    try {
      fs.rmSync(server.dataDir, { recursive: true, force: true });
    } catch {
      // Best effort.
    }
    server.dataDir = null;
  }
}

async function startServer() {
  server.dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "sockeye-soak-"));
  const env = { ...process.env };
  delete env.JWT_SECRET; // development mode: the clients name themselves
  const argv = ["--host", "127.0.0.1", "--port", "0", "--data-dir", server.dataDir, ...opts.serverArgs];
  human(`starting ${opts.bin} ${argv.join(" ")}`);
  const child = spawn(opts.bin, argv, { detached: true, env, stdio: ["ignore", "pipe", "pipe"] });
  server.child = child;
  server.pid = child.pid;
  const exited = new Promise((resolve) =>
    child.once("exit", (code, signal) => {
      server.exit = { code, signal };
      resolve(server.exit);
    }),
  );
  server.exited = exited;
  let text = "";
  const listening = new Promise((resolve, reject) => {
    const onData = (chunk) => {
      text += chunk.toString();
      const m = /^sockeye listening on (http:\/\/\S+)\s*$/m.exec(text);
      if (m) resolve(m[1]);
    };
    child.stdout.on("data", onData);
    child.once("error", reject);
    exited.then(({ code, signal }) => reject(new Error(`server exited before listening (code ${code}, signal ${signal})`)));
  });
  child.stdout.on("data", keepOutput);
  child.stderr.on("data", keepOutput);
  server.url = await within(listening, 15_000, "the server's `sockeye listening on` line");
  human(`server pid ${server.pid} listening on ${server.url}, data in ${server.dataDir}`);
}

function serverAlive() {
  if (server.child) return server.exit === null;
  if (server.pid === null) return true;
  return fs.existsSync(`/proc/${server.pid}`);
}

// SIGTERM, then SIGKILL after 10 s; the process group is SIGKILLed either way.
async function stopServer() {
  const child = server.child;
  if (!child) return;
  server.stopping = true;
  if (server.exit === null) {
    try {
      child.kill("SIGTERM");
    } catch {
      // Gone already.
    }
    try {
      await within(server.exited, 10_000, "server exit after SIGTERM");
      // Graceful shutdown is part of running in production (issue 5): SIGTERM must drain and
      // exit 0, not kill the process.
      if (server.exit.code !== 0) {
        violation(
          "server shutdown",
          `not clean on SIGTERM: exit code ${server.exit.code}, signal ${server.exit.signal}`,
        );
      }
    } catch {
      violation("server shutdown", "still running 10 s after SIGTERM; killed");
    }
  }
  cleanupNow();
}

// ---------------------------------------------------------------------------------------------
// /proc sampling

function readProc(pid) {
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, "utf8");
    const rss = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
    const threads = /^Threads:\s+(\d+)/m.exec(status);
    const fds = fs.readdirSync(`/proc/${pid}/fd`).length;
    // utime and stime, fields 14 and 15 of /proc/PID/stat, in clock ticks (USER_HZ, 100 on Linux).
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const cpuS = (Number(f[11]) + Number(f[12])) / 100;
    return { rssKiB: rss ? Number(rss[1]) : null, fds, threads: threads ? Number(threads[1]) : null, cpuS };
  } catch {
    return null;
  }
}

const samples = [];
let loadStart = null;

function sample(label = "") {
  if (server.pid === null) return null;
  const p = readProc(server.pid);
  if (!p) return null;
  const s = {
    t: loadStart === null ? 0 : Math.round((nowMs() - loadStart) / 1000),
    phase: label || phase,
    rssKiB: p.rssKiB,
    fds: p.fds,
    threads: p.threads,
    cpuS: p.cpuS,
    sockets: clients.filter((c) => c.ctx && c.ctx.connected).length,
    acked: stats.chatAcked,
    delivered: stats.chatDelivered,
  };
  samples.push(s);
  return s;
}

// Counts the server's open descriptors until at most `limit`, for at most `ms`.
async function settleFds(limit, ms) {
  const until = nowMs() + ms;
  let p = readProc(server.pid);
  while (p && p.fds > limit && nowMs() < until) {
    await sleep(250);
    p = readProc(server.pid);
  }
  return p;
}

// ---------------------------------------------------------------------------------------------
// HTTP

function getJson(url, ms = 10_000) {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { timeout: ms }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (d) => (body += d));
      res.on("end", () => {
        if (res.statusCode !== 200) return reject(new Error(`GET ${url}: ${res.statusCode} ${body.slice(0, 200)}`));
        try {
          resolve(JSON.parse(body));
        } catch (err) {
          reject(new Error(`GET ${url}: not JSON (${err.message})`));
        }
      });
    });
    req.on("timeout", () => req.destroy(new Error(`GET ${url}: no answer within ${ms} ms`)));
    req.on("error", reject);
  });
}

// The whole history of a room, oldest first, paged backwards 200 at a time.
async function roomHistory(roomId, expectAtLeast) {
  const pages = [];
  let before = null;
  const maxPages = Math.ceil(expectAtLeast / 200) + 50;
  for (let i = 0; i < maxPages; i++) {
    const q = before ? `before=${before}&limit=200` : "limit=200";
    const page = await getJson(`${server.url}/api/rooms/${roomId}/messages?${q}`);
    if (!Array.isArray(page)) throw new Error(`room ${roomId} history page is not an array: ${short(page)}`);
    if (page.length === 0) break;
    pages.unshift(page);
    if (page.length < 200) break;
    before = page[0]._id;
  }
  return pages.flat();
}

// ---------------------------------------------------------------------------------------------
// Clients

let io;
const ACK_MS = 10_000;
const CONNECT_MS = 15_000;
let runId;
const rooms = []; // { _id, name }
const roomNames = new Set();
const clients = [];
const memberships = []; // every join a client made, for the checks at the end
const ackedChat = new Map(); // _id -> { room, text, user }
const ackedDm = new Map(); // _id -> { to, from }
const inFlight = new Set();

function track(promise) {
  const p = promise.catch((err) => violation("harness error", err.stack || String(err)));
  inFlight.add(p);
  p.finally(() => inFlight.delete(p));
  return p;
}

// One socket of a client, with what it saw. A reconnect makes a new one.
class Conn {
  constructor(client) {
    this.client = client;
    this.connected = false;
    this.expectClose = false;
    this.closed = false;
    this.open = new Map(); // roomId -> membership (joined or joining, not yet left)
    this.seen = new Set(); // ids of chat messages and private messages received on this socket
    this.pendingSends = 0;
    const o = { forceNew: true, reconnection: false, timeout: CONNECT_MS, auth: { username: client.user } };
    if (client.polling) o.transports = ["polling"];
    this.socket = io(server.url, o);
    this.socket.on("chat message", (m) => this.onChat(m));
    this.socket.on("newMessage", (m) => this.onDm(m));
    this.socket.on("typing", () => (stats.typingReceived += 1));
    this.socket.on("room created", (r) => {
      if (r && roomNames.has(r.name)) client.roomsCreatedSeen.add(r.name);
    });
    this.socket.on("error", (e) => violation("error event", `${client.user}: ${short(e)}`));
    this.socket.on("disconnect", (reason) => this.onDisconnect(reason));
  }

  async connected_() {
    const socket = this.socket;
    await within(
      new Promise((resolve, reject) => {
        socket.once("connect", resolve);
        socket.once("connect_error", (err) => reject(new Error(`connect_error: ${err.message} ${short(err.data)}`)));
      }),
      CONNECT_MS + 1000,
      `${this.client.user} connect`,
    );
    this.connected = true;
    stats.connects += 1;
  }

  onChat(m) {
    stats.chatDelivered += 1;
    if (!m || typeof m !== "object" || typeof m._id !== "string" || typeof m.room !== "string") {
      violation("bad chat message", `${this.client.user} got ${short(m)}`);
      return;
    }
    if (this.seen.has(m._id)) {
      violation("duplicate delivery", `${this.client.user} got chat message ${m._id} twice on one socket`);
      return;
    }
    this.seen.add(m._id);
    const mem = this.open.get(m.room);
    if (!mem) {
      violation("message outside membership", `${this.client.user} got ${m._id} in room ${m.room}, which it had not joined or had left (ack received)`);
      return;
    }
    mem.live.push(m._id);
  }

  onDm(m) {
    stats.dmDelivered += 1;
    if (!m || typeof m !== "object" || typeof m._id !== "string") {
      violation("bad newMessage", `${this.client.user} got ${short(m)}`);
      return;
    }
    const key = `dm:${m._id}`;
    if (this.seen.has(key)) {
      violation("duplicate delivery", `${this.client.user} got newMessage ${m._id} twice on one socket`);
      return;
    }
    this.seen.add(key);
    if (m.receiverId !== this.client.user) {
      violation("misdelivered newMessage", `${this.client.user} got ${short(m)}`);
    }
    if (this.client.steady) this.client.dmReceived.set(m._id, (this.client.dmReceived.get(m._id) ?? 0) + 1);
  }

  onDisconnect(reason) {
    const wasConnected = this.connected;
    this.connected = false;
    this.closed = true;
    for (const mem of this.open.values()) mem.ended = "disconnect";
    this.open.clear();
    if (!this.expectClose && wasConnected) {
      violation("unexpected disconnect", `${this.client.user} (${this.client.steady ? "steady" : "churn"}) in phase ${phase}: ${reason}`);
    }
  }

  // Emits with an ack; { ok, value } or { ok: false, err }.
  async ack(event, payload) {
    try {
      return { ok: true, value: await this.socket.timeout(ACK_MS).emitWithAck(event, payload) };
    } catch (err) {
      return { ok: false, err };
    }
  }

  // A missing ack is expected only when we closed the socket ourselves.
  lostAck(event, r) {
    if (this.expectClose || this.closed) return true;
    violation("missing ack", `${this.client.user}: no ack for ${event} (${r.err && r.err.message})`);
    return false;
  }

  async join(roomId) {
    const mem = {
      user: this.client.user,
      steady: this.client.steady,
      room: roomId,
      anchor: undefined, // the last message of the join's history; null when it was empty
      live: [],
      ended: null,
    };
    memberships.push(mem);
    this.open.set(roomId, mem);
    stats.joins += 1;
    const r = await this.ack("join room", { roomId, user: this.client.user });
    if (!r.ok) {
      this.lostAck("join room", r);
      return false;
    }
    if (!r.value || r.value.success !== true || !Array.isArray(r.value.history)) {
      violation("join rejected", `${this.client.user} room ${roomId}: ${short(r.value)}`);
      this.open.delete(roomId);
      mem.ended = "rejected";
      return false;
    }
    const h = r.value.history;
    mem.anchor = h.length ? h[h.length - 1]._id : null;
    mem.joined = true;
    return true;
  }

  async leave(roomId) {
    const mem = this.open.get(roomId);
    if (mem) mem.leaving = true;
    stats.leaves += 1;
    const r = await this.ack("leave room", { roomId });
    if (!r.ok) {
      this.lostAck("leave room", r);
      return false;
    }
    if (!r.value || r.value.success !== true) {
      violation("leave rejected", `${this.client.user} room ${roomId}: ${short(r.value)}`);
      return false;
    }
    if (mem) {
      mem.ended = "leave";
      this.open.delete(roomId);
    }
    return true;
  }

  // Rooms this socket may send to: joined (ack received) and not being left.
  sendable() {
    const out = [];
    for (const [roomId, mem] of this.open) if (mem.joined && !mem.leaving) out.push(roomId);
    return out;
  }

  async sendChat(roomId) {
    const user = this.client.user;
    const text = `${user} #${++this.client.seq} ${Math.floor(random() * 1e9).toString(36)}`;
    stats.chatSent += 1;
    this.pendingSends += 1;
    const t0 = performanceNow();
    const r = await this.ack("chat message", { roomId, user, text });
    this.pendingSends -= 1;
    if (!r.ok) {
      if (this.lostAck("chat message", r)) stats.chatLostToChurn += 1;
      return;
    }
    const v = r.value;
    if (!v || v.success !== true || !v.message) {
      stats.chatRejected += 1;
      violation("chat message rejected", `${user} room ${roomId}: ${short(v)}`);
      return;
    }
    stats.ackLatencies.push(performanceNow() - t0);
    const m = v.message;
    if (m.room !== roomId || m.text !== text || m.user !== user) {
      violation("ack does not match", `${user} sent ${short({ roomId, text })}, ack ${short(m)}`);
    }
    stats.chatAcked += 1;
    ackedChat.set(m._id, { room: roomId, text, user });
  }

  async sendDm(to) {
    const text = `dm ${this.client.user} -> ${to} #${++this.client.seq}`;
    stats.dmSent += 1;
    const r = await this.ack("sendMessage", { receiverId: to, message: text });
    if (!r.ok) {
      if (this.lostAck("sendMessage", r)) stats.dmLostToChurn += 1;
      return;
    }
    const v = r.value;
    if (!v || v.success !== true || typeof v._id !== "string") {
      violation("sendMessage rejected", `${this.client.user} -> ${to}: ${short(v)}`);
      return;
    }
    if (v.receiverId !== to || v.message !== text) violation("ack does not match", `sendMessage ack ${short(v)}`);
    stats.dmAcked += 1;
    ackedDm.set(v._id, { to, from: this.client.user });
  }

  transportName() {
    try {
      return this.socket.io.engine.transport.name;
    } catch {
      return null;
    }
  }

  // Closes this socket: "clean" (a Socket.IO disconnect), "engine" (an Engine.IO close, no
  // Socket.IO disconnect packet) or "tcp" (the WebSocket's TCP connection dropped, no close frame).
  close(how = "clean") {
    this.expectClose = true;
    this.connected = false;
    try {
      if (how === "tcp") {
        const ws = this.socket.io.engine.transport.ws;
        if (ws && typeof ws.terminate === "function") ws.terminate();
        else this.socket.disconnect();
      } else if (how === "engine") {
        this.socket.io.engine.close();
      } else {
        this.socket.disconnect();
      }
    } catch {
      // Best effort.
    }
  }
}

const performanceNow = () => Number(process.hrtime.bigint() / 1000n) / 1000;

class Client {
  constructor(idx, steady, polling) {
    this.idx = idx;
    this.steady = steady;
    this.polling = polling;
    this.user = `soak${runId}-${steady ? "s" : "c"}${idx}`;
    this.ctx = null;
    this.busy = false;
    this.rooms = new Set(); // rooms this client wants to be in
    this.sender = false;
    this.nextSendAt = 0;
    this.seq = 0;
    this.roomsCreatedSeen = new Set();
    this.dmReceived = new Map(); // steady clients: newMessage _id -> times received
  }

  async connect() {
    const ctx = new Conn(this);
    this.ctx = ctx;
    try {
      await ctx.connected_();
      return true;
    } catch (err) {
      stats.connectFailures += 1;
      ctx.close();
      violation("connect failed", `${this.user}: ${err.message}`);
      return false;
    }
  }

  ready() {
    return !this.busy && this.ctx && this.ctx.connected;
  }
}

// Runs `fn` over `items` with at most `limit` at a time.
async function pool(items, limit, fn) {
  const queue = [...items];
  const workers = [];
  for (let i = 0; i < Math.min(limit, queue.length); i++) {
    workers.push(
      (async () => {
        while (queue.length) await fn(queue.shift());
      })(),
    );
  }
  await Promise.all(workers);
}

function pickN(list, n) {
  const copy = [...list];
  const out = [];
  while (out.length < n && copy.length) out.push(copy.splice(Math.floor(random() * copy.length), 1)[0]);
  return out;
}

// A count per second that may be fractional: 2.5/s is 2 or 3.
function perSecond(x) {
  return Math.floor(x) + (random() < x - Math.floor(x) ? 1 : 0);
}

// ---------------------------------------------------------------------------------------------
// Churn

async function reconnect(c) {
  c.busy = true;
  try {
    const old = c.ctx;
    let how = "clean";
    const roll = random();
    if (old.transportName() === "websocket") how = roll < 0.2 ? "tcp" : roll < 0.4 ? "engine" : "clean";
    else how = roll < 0.25 ? "engine" : "clean";
    old.close(how);
    stats.reconnects += 1;
    if (how === "tcp") stats.closeTcp += 1;
    else if (how === "engine") stats.closeEngine += 1;
    else stats.closeClean += 1;
    await sleep(Math.floor(random() * 1000));
    if (!running) return;
    if (!(await c.connect())) return;
    for (const roomId of c.rooms) {
      if (!c.ctx.connected) break;
      await c.ctx.join(roomId);
    }
  } finally {
    c.busy = false;
  }
}

async function moveRooms(c) {
  c.busy = true;
  try {
    const ctx = c.ctx;
    stats.roomMoves += 1;
    const mine = [...c.rooms];
    let left = null;
    if (mine.length >= 2 && (mine.length === 3 || random() < 0.5)) {
      left = mine[Math.floor(random() * mine.length)];
      c.rooms.delete(left);
      await ctx.leave(left);
    }
    if (c.rooms.size < 3 && (left !== null || c.rooms.size === 1 || random() < 0.5)) {
      // Now and then straight back into the room just left, on the same socket.
      const others = rooms.map((r) => r._id).filter((id) => !c.rooms.has(id) && id !== left);
      const to = left !== null && (random() < 0.3 || others.length === 0) ? left : others[Math.floor(random() * others.length)];
      if (to !== undefined && ctx.connected) {
        c.rooms.add(to);
        await ctx.join(to);
      }
    }
  } finally {
    c.busy = false;
  }
}

// ---------------------------------------------------------------------------------------------
// The run

let running = false;

async function setup() {
  const steadyN = opts.steady;
  const pollingEvery = opts.pollingShare > 0 ? 1 / opts.pollingShare : Infinity;
  for (let i = 0; i < opts.clients; i++) {
    const steady = i < steadyN;
    // Spread the polling clients evenly over steady and churn clients.
    const polling = Math.floor((i + 1) / pollingEvery) > Math.floor(i / pollingEvery);
    clients.push(new Client(i, steady, polling));
  }
  for (const c of pickN(clients, opts.senders)) c.sender = true;

  const t0 = nowMs();
  await within(pool(clients, 20, (c) => c.connect()), 60_000, "connecting every client");
  human(`connected ${clients.filter((c) => c.ctx.connected).length}/${clients.length} clients in ${nowMs() - t0} ms`);

  // Rooms, created over the socket by the first clients (at most a few each: `create room` draws
  // from the sender's rate limit).
  const names = [];
  for (let i = 0; i < opts.rooms; i++) names.push(`soak-${runId}-room-${i}`);
  for (const n of names) roomNames.add(n);
  const creators = clients.filter((c) => c.ctx.connected);
  if (creators.length === 0) throw new Error("no client could connect");
  const byCreator = new Map();
  names.forEach((n, i) => {
    const c = creators[i % creators.length];
    if (!byCreator.has(c)) byCreator.set(c, []);
    byCreator.get(c).push(n);
  });
  const created = new Map();
  await within(
    Promise.all(
      [...byCreator].map(async ([c, list]) => {
        for (const name of list) {
          const r = await c.ctx.ack("create room", { name });
          if (!r.ok || !r.value || r.value.success !== true) {
            throw new Error(`create room ${name} by ${c.user}: ${r.ok ? short(r.value) : r.err.message}`);
          }
          created.set(name, r.value.room);
          await sleep(150);
        }
      }),
    ),
    60_000,
    "creating the rooms",
  );
  for (const n of names) rooms.push(created.get(n));

  // `room created` goes to every socket: every steady client must have seen all of ours.
  const steady = clients.filter((c) => c.steady);
  const seenAll = () => steady.every((c) => c.roomsCreatedSeen.size === names.length);
  for (let i = 0; i < 50 && !seenAll(); i++) await sleep(100);
  for (const c of steady) {
    if (c.roomsCreatedSeen.size !== names.length) {
      violation("room created missing", `${c.user} saw ${c.roomsCreatedSeen.size} of ${names.length} \`room created\``);
    }
  }

  // Rooms per client: 1 to 3. Steady client i takes room i mod R first, so every room has a
  // steady member when there are at least as many steady clients as rooms.
  const ids = rooms.map((r) => r._id);
  for (const c of clients) {
    const want = 1 + Math.floor(random() * Math.min(3, ids.length));
    if (c.steady) c.rooms.add(ids[c.idx % ids.length]);
    while (c.rooms.size < want) c.rooms.add(ids[Math.floor(random() * ids.length)]);
  }
  // Half of the steady clients join now, the others once messages are flowing.
  const early = clients.filter((c) => !c.steady || c.idx % 2 === 0);
  await within(
    pool(early, 20, async (c) => {
      for (const roomId of c.rooms) if (c.ctx.connected) await c.ctx.join(roomId);
    }),
    60_000,
    "joining the rooms",
  );
  human(`created ${rooms.length} rooms; ${clients.length} clients (${steady.length} steady, ` +
    `${clients.filter((c) => c.polling).length} polling-only, ${clients.filter((c) => c.sender).length} senders) ` +
    `in ${memberships.length} memberships`);
}

function progressLine(s) {
  return `t=${String(s.t).padStart(5)}s  rss ${kib(s.rssKiB).padStart(10)}  fds ${String(s.fds).padStart(4)}  ` +
    `sockets ${String(s.sockets).padStart(4)}  acked ${s.acked}  delivered ${s.delivered}`;
}

async function load() {
  const durationMs = opts.minutes * 60_000;
  loadStart = nowMs();
  const end = loadStart + durationMs;
  const lateJoinAt = loadStart + Math.max(5_000, durationMs * 0.1);
  let lateJoined = false;
  running = true;
  phase = "load";
  const interval = 1000 / opts.rate;
  for (const c of clients) if (c.sender) c.nextSendAt = loadStart + random() * interval;
  const steady = clients.filter((c) => c.steady);
  const churners = clients.filter((c) => !c.steady);
  let nextSecond = loadStart + 1000;
  let nextSample = loadStart + opts.sampleS * 1000;
  const progressEvery = Math.max(opts.sampleS, Math.min(60, durationMs / 1000 / 12)) * 1000;
  let nextProgress = loadStart + progressEvery;
  // Bounded: one iteration per 100 ms until `end`.
  const maxTicks = Math.ceil(durationMs / 100) + 100;
  for (let tick = 0; tick < maxTicks && nowMs() < end; tick++) {
    await sleep(100);
    const now = nowMs();
    if (!serverAlive()) throw new Error(`the server exited during the run: ${short(server.exit)}`);

    for (const c of clients) {
      if (!c.sender || now < c.nextSendAt) continue;
      c.nextSendAt = Math.max(now, c.nextSendAt + interval * (0.5 + random()));
      if (!c.ready() || c.ctx.pendingSends >= 5) continue;
      const to = c.ctx.sendable();
      if (to.length) track(c.ctx.sendChat(to[Math.floor(random() * to.length)]));
    }

    if (!lateJoined && now >= lateJoinAt) {
      lateJoined = true;
      for (const c of steady.filter((x) => x.idx % 2 === 1)) {
        track(
          (async () => {
            c.busy = true;
            try {
              for (const roomId of c.rooms) await c.ctx.join(roomId);
            } finally {
              c.busy = false;
            }
          })(),
        );
      }
    }

    if (now >= nextSecond) {
      nextSecond += 1000;
      const idle = churners.filter((c) => c.ready());
      const recon = pickN(idle, perSecond(opts.reconnectsPerS));
      for (const c of recon) track(reconnect(c));
      const movers = pickN(idle.filter((c) => !recon.includes(c)), perSecond(opts.movesPerS));
      for (const c of movers) track(moveRooms(c));
      const online = clients.filter((c) => c.ctx && c.ctx.connected && !c.busy);
      for (let i = perSecond(opts.dmsPerS); i > 0 && online.length; i--) {
        const from = online[Math.floor(random() * online.length)];
        const to = steady.filter((s) => s !== from);
        if (to.length) track(from.ctx.sendDm(to[Math.floor(random() * to.length)].user));
      }
      for (let i = perSecond(opts.typingPerS); i > 0 && online.length; i--) {
        const c = online[Math.floor(random() * online.length)];
        const to = c.ctx.sendable();
        if (to.length) {
          c.ctx.socket.emit("typing", { roomId: to[Math.floor(random() * to.length)], user: c.user });
          stats.typingSent += 1;
        }
      }
    }

    if (now >= nextSample) {
      nextSample += opts.sampleS * 1000;
      const s = sample();
      if (s && now >= nextProgress) {
        nextProgress += progressEvery;
        human(progressLine(s));
      }
    }
  }
  running = false;
}

// ---------------------------------------------------------------------------------------------
// Checks

async function drainAndCheck(report) {
  phase = "drain";
  const inflightAtEnd = inFlight.size;
  try {
    await within(Promise.allSettled([...inFlight]), 30_000, "the operations in flight at the end of the load");
  } catch (err) {
    violation("drain", `${err.message} (${inFlight.size} still pending)`);
  }
  // Let the last deliveries arrive: until nothing new comes for 1.5 s (at most 15 s).
  let last = -1;
  for (let i = 0; i < 10 && stats.chatDelivered + stats.dmDelivered !== last; i++) {
    last = stats.chatDelivered + stats.dmDelivered;
    await sleep(1500);
  }
  const endSample = sample("end");
  report.inflightAtEnd = inflightAtEnd;

  // Every room's whole history.
  const histories = new Map();
  const expected = new Map();
  for (const { room } of ackedChat.values()) expected.set(room, (expected.get(room) ?? 0) + 1);
  for (const r of rooms) histories.set(r._id, await roomHistory(r._id, expected.get(r._id) ?? 0));

  const m = {
    sent: stats.chatSent,
    acked: stats.chatAcked,
    rejected: stats.chatRejected,
    lostToChurn: stats.chatLostToChurn,
    stored: 0,
    storedWithoutAck: 0,
    ackedMissing: 0,
    ackedMismatch: 0,
    historyDuplicates: 0,
    delivered: stats.chatDelivered,
    steadyMemberships: 0,
    steadyExpected: 0,
    steadyReceived: 0,
    steadyMissing: 0,
    steadyOutOfOrder: 0,
    churnMemberships: 0,
    churnChecked: 0,
    churnGaps: 0,
  };
  const index = new Map(); // room -> Map(_id -> position)
  const byId = new Map();
  for (const [roomId, h] of histories) {
    const pos = new Map();
    h.forEach((msg, i) => {
      if (pos.has(msg._id)) {
        m.historyDuplicates += 1;
        violation("duplicate in history", `room ${roomId} lists ${msg._id} twice`);
      }
      pos.set(msg._id, i);
      byId.set(msg._id, msg);
    });
    index.set(roomId, pos);
    m.stored += h.length;
    for (const msg of h) if (!ackedChat.has(msg._id)) m.storedWithoutAck += 1;
  }

  // (a) every acked message is in its room's history, as acked.
  for (const [id, a] of ackedChat) {
    const pos = index.get(a.room);
    if (!pos || !pos.has(id)) {
      m.ackedMissing += 1;
      violation("acked message lost", `${id} (${a.user} in room ${a.room}) is not in the room's history`);
      continue;
    }
    const msg = byId.get(id);
    if (msg.text !== a.text || msg.user !== a.user || msg.room !== a.room) {
      m.ackedMismatch += 1;
      violation("stored message differs", `acked ${short(a)}, stored ${short(msg)}`);
    }
  }

  // (b) live delivery per membership: what a socket received in a room after joining it is the
  // room's history from just after the join's history (its anchor), in order, with no gap; for a
  // steady membership (never left) all of it.
  for (const mem of memberships) {
    if (mem.anchor === undefined) continue; // the join was never answered (socket closed by churn)
    const h = histories.get(mem.room);
    const pos = index.get(mem.room);
    let start = 0;
    if (mem.anchor !== null) {
      if (!pos.has(mem.anchor)) {
        violation("join history unknown", `${mem.user}: last message of the join history ${mem.anchor} is not in room ${mem.room}`);
        continue;
      }
      start = pos.get(mem.anchor) + 1;
    }
    const isSteady = mem.steady && mem.ended === null;
    let bad = -1;
    for (let i = 0; i < mem.live.length; i++) {
      if (start + i >= h.length || h[start + i]._id !== mem.live[i]) {
        bad = i;
        break;
      }
    }
    if (isSteady) {
      m.steadyMemberships += 1;
      const want = h.length - start;
      m.steadyExpected += want;
      if (bad >= 0) {
        m.steadyOutOfOrder += 1;
        const got = mem.live[bad];
        violation("steady client: live delivery differs from history",
          `${mem.user} room ${mem.room}: live message #${bad} is ${got} (history position ${pos.get(got) ?? "none"}), ` +
          `expected ${h[start + bad]?._id ?? "nothing"} at position ${start + bad}`);
      } else m.steadyReceived += mem.live.length;
      if (mem.live.length < want) {
        m.steadyMissing += want - mem.live.length;
        violation("steady client missed messages",
          `${mem.user} room ${mem.room}: received ${mem.live.length} of ${want} live (first missing ${h[start + mem.live.length]?._id})`);
      } else if (mem.live.length > want) {
        violation("steady client got extra messages", `${mem.user} room ${mem.room}: ${mem.live.length} received, ${want} in history after its join`);
      }
    } else {
      m.churnMemberships += 1;
      m.churnChecked += mem.live.length;
      if (bad >= 0) {
        m.churnGaps += 1;
        const got = mem.live[bad];
        violation("live delivery has a gap or is out of order",
          `${mem.user} room ${mem.room} (ended: ${mem.ended}): live message #${bad} is ${got} (history position ${pos.get(got) ?? "none"}), ` +
          `expected ${h[start + bad]?._id ?? "nothing"} at position ${start + bad}`);
      }
    }
  }

  // (c) every acked private message reached its steady receiver, once.
  const d = { sent: stats.dmSent, acked: stats.dmAcked, lostToChurn: stats.dmLostToChurn, delivered: stats.dmDelivered, missing: 0, duplicated: 0 };
  const steadyByUser = new Map(clients.filter((c) => c.steady).map((c) => [c.user, c]));
  for (const [id, a] of ackedDm) {
    const n = steadyByUser.get(a.to).dmReceived.get(id) ?? 0;
    if (n === 0) {
      d.missing += 1;
      violation("private message lost", `${id} from ${a.from} never reached ${a.to}`);
    } else if (n > 1) {
      d.duplicated += 1;
      violation("private message duplicated", `${id} reached ${a.to} ${n} times`);
    }
  }
  report.messages = m;
  report.dms = d;
  return endSample;
}

function rssCheck(report, endSample) {
  const during = samples.filter((s) => s.phase === "load" || s.phase === "end");
  const warmT = opts.minutes * 60 * opts.warmup;
  const warm = during.find((s) => s.t >= warmT) ?? during[0];
  if (!warm || !endSample) {
    report.rss = null;
    return;
  }
  const after = during.filter((s) => s.t >= warm.t);
  const bound = Math.max((warm.rssKiB * opts.rssGrowthPct) / 100, opts.rssGrowthMib * 1024);
  const growth = endSample.rssKiB - warm.rssKiB;
  // Least-squares slope over the samples after warm-up, KiB per minute (for information).
  let slope = null;
  if (after.length >= 3) {
    const n = after.length;
    const mx = after.reduce((a, s) => a + s.t, 0) / n;
    const my = after.reduce((a, s) => a + s.rssKiB, 0) / n;
    const sxy = after.reduce((a, s) => a + (s.t - mx) * (s.rssKiB - my), 0);
    const sxx = after.reduce((a, s) => a + (s.t - mx) ** 2, 0);
    slope = sxx > 0 ? Math.round((sxy / sxx) * 60) : null;
  }
  report.rss = {
    baselineKiB: samples[0]?.rssKiB ?? null,
    warmKiB: warm.rssKiB,
    warmT: warm.t,
    endKiB: endSample.rssKiB,
    maxKiB: Math.max(...during.map((s) => s.rssKiB)),
    growthKiB: growth,
    boundKiB: Math.round(bound),
    slopeKiBPerMin: slope,
  };
  if (growth > bound) {
    violation("memory grew", `VmRSS ${kib(warm.rssKiB)} at t=${warm.t}s (end of warm-up) -> ${kib(endSample.rssKiB)} at the end: ` +
      `+${kib(growth)}, above the bound ${kib(bound)}`);
  }
}

function table(report) {
  const rows = samples;
  if (rows.length === 0) return;
  // At most ~16 rows: the first, the warm-up point, the last few and evenly spaced ones.
  const keep = new Set([0, rows.length - 1]);
  const step = Math.max(1, Math.floor(rows.length / 12));
  for (let i = 0; i < rows.length; i += step) keep.add(i);
  for (let i = 0; i < rows.length; i++) if (rows[i].phase !== "load") keep.add(i);
  if (report.rss) keep.add(rows.findIndex((s) => s.t === report.rss.warmT && s.phase === "load"));
  human("");
  human("   t(s)  phase         VmRSS      fds  threads  sockets     acked  delivered");
  for (const i of [...keep].filter((x) => x >= 0).sort((a, b) => a - b)) {
    const s = rows[i];
    human(`${String(s.t).padStart(7)}  ${s.phase.padEnd(11)} ${kib(s.rssKiB).padStart(10)}  ${String(s.fds).padStart(5)}  ` +
      `${String(s.threads).padStart(7)}  ${String(s.sockets).padStart(7)}  ${String(s.acked).padStart(8)}  ${String(s.delivered).padStart(9)}`);
  }
  human("");
}

// ---------------------------------------------------------------------------------------------
// Main

async function main() {
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`soak: ${err.message}\n\n${USAGE}\n`);
    return 2;
  }
  if (opts.json) human = (line) => process.stderr.write(`${line}\n`);
  if (!fs.existsSync(CLIENT_DIR)) {
    human(`soak: ${CLIENT_DIR} is missing: run \`npm ci\` in tests/interop`);
    return 2;
  }
  ({ io } = require(CLIENT_DIR));
  random = rng(opts.seed);
  runId = `${Date.now().toString(36).slice(-5)}${Math.floor(random() * 1296).toString(36)}`;

  const hardMs = opts.minutes * 60_000 + 120_000;
  const hard = setTimeout(() => {
    human(`soak: HARD TIMEOUT: still running ${hardMs / 1000} s after the start (phase ${phase}); giving up`);
    if (server.output.length) human(`--- last server output ---\n${server.output.slice(-40).join("\n")}`);
    cleanupNow();
    process.exit(3);
  }, hardMs);

  const loop = monitorEventLoopDelay({ resolution: 20 });
  loop.enable();
  const cpu0 = process.cpuUsage();
  const started = nowMs();
  const report = { ok: false, seed: opts.seed, runId };
  human(`soak ${runId}: ${opts.minutes} min, ${opts.clients} clients, ${opts.rooms} rooms, ${opts.rate} msg/s per sender, seed ${opts.seed}`);

  try {
    if (opts.bin) await startServer();
    else {
      server.url = opts.url.replace(/\/+$/, "");
      server.pid = opts.pid;
      if (server.pid === null) human("soak: no --pid: memory and descriptors are NOT checked");
    }
    await sleep(500);
    const baseline = sample("baseline");
    if (server.pid !== null && !baseline) throw new Error(`cannot read /proc/${server.pid}`);

    await setup();
    await load();
    const endSample = await drainAndCheck(report);
    rssCheck(report, endSample);

    // Descriptors: with the steady clients still connected, then with nobody.
    phase = "close";
    const stillOpen = clients.filter((c) => c.steady && c.ctx.connected);
    for (const c of clients) if (!c.steady && c.ctx) c.ctx.close();
    await sleep(2000);
    if (server.pid !== null) {
      const openConns = stillOpen.length;
      const polling = stillOpen.filter((c) => c.polling).length;
      // A long-polling client may have a POST in flight next to its pending GET.
      const limit = baseline.fds + openConns + polling + opts.fdMargin;
      const p = await settleFds(limit, 5000);
      sample("steady-only");
      report.fds = { baseline: baseline.fds, steadyOpen: openConns, withSteady: p ? p.fds : null, limitWithSteady: limit };
      if (p && p.fds > limit) {
        violation("descriptors", `${p.fds} open with ${openConns} clients connected (baseline ${baseline.fds}; limit ${limit})`);
      }
      for (const c of stillOpen) c.ctx.close();
      await sleep(2000);
      const finalLimit = baseline.fds + opts.fdMargin;
      const q = await settleFds(finalLimit, 10_000);
      sample("all-closed");
      report.fds.final = q ? q.fds : null;
      report.fds.finalLimit = finalLimit;
      report.fds.peak = Math.max(...samples.map((s) => s.fds));
      if (q && q.fds > finalLimit) {
        violation("descriptors", `${q.fds} open after every client closed (baseline ${baseline.fds}; limit ${finalLimit})`);
      }
    } else {
      for (const c of stillOpen) c.ctx.close();
    }
    phase = "stop";
  } catch (err) {
    violation("run aborted", `${err.message} (phase ${phase})`);
  } finally {
    running = false;
    for (const c of clients) if (c.ctx && !c.ctx.closed) c.ctx.close();
    await stopServer();
    clearTimeout(hard);
  }

  loop.disable();
  const cpu = process.cpuUsage(cpu0);
  const lat = [...stats.ackLatencies].sort((a, b) => a - b);
  report.durationS = Math.round((nowMs() - started) / 1000);
  report.config = {
    minutes: opts.minutes,
    clients: opts.clients,
    steady: opts.steady,
    senders: opts.senders,
    rooms: opts.rooms,
    rate: opts.rate,
    pollingShare: opts.pollingShare,
    reconnectsPerS: opts.reconnectsPerS,
    movesPerS: opts.movesPerS,
    dmsPerS: opts.dmsPerS,
    typingPerS: opts.typingPerS,
    server: opts.bin ? { bin: opts.bin, args: opts.serverArgs } : { url: opts.url, pid: opts.pid },
  };
  report.churn = {
    connects: stats.connects,
    connectFailures: stats.connectFailures,
    reconnects: stats.reconnects,
    closeClean: stats.closeClean,
    closeEngine: stats.closeEngine,
    closeTcp: stats.closeTcp,
    roomMoves: stats.roomMoves,
    joins: stats.joins,
    leaves: stats.leaves,
    typingSent: stats.typingSent,
    typingReceived: stats.typingReceived,
  };
  report.client = {
    cpuUserS: Math.round(cpu.user / 1e5) / 10,
    cpuSystemS: Math.round(cpu.system / 1e5) / 10,
    eventLoopDelayP99Ms: Math.round(loop.percentile(99) / 1e6),
    eventLoopDelayMaxMs: Math.round(loop.max / 1e6),
    ackMsP50: lat.length ? Math.round(percentile(lat, 50) * 10) / 10 : null,
    ackMsP99: lat.length ? Math.round(percentile(lat, 99) * 10) / 10 : null,
    ackMsMax: lat.length ? Math.round(lat[lat.length - 1] * 10) / 10 : null,
  };
  const cpuSamples = samples.filter((s) => s.phase === "load" || s.phase === "end");
  if (cpuSamples.length >= 2) {
    const a = samples.find((s) => s.phase === "baseline") ?? cpuSamples[0];
    const b = cpuSamples[cpuSamples.length - 1];
    report.serverCpu = { seconds: Math.round((b.cpuS - a.cpuS) * 10) / 10, cores: Math.round(((b.cpuS - a.cpuS) / Math.max(1, b.t)) * 100) / 100 };
  }
  report.serverExit = server.exit;
  report.violationCounts = Object.fromEntries(violationCounts);
  report.violations = violations;
  report.warnings = warnings;
  report.ok = violations.length === 0;

  table(report);
  const m = report.messages;
  if (m) {
    human(`chat messages: ${m.sent} sent, ${m.acked} acked, ${m.rejected} rejected, ${m.lostToChurn} unacked (socket closed by churn); ` +
      `${m.stored} in the histories (${m.storedWithoutAck} stored without an ack seen), ${m.ackedMissing} acked but missing`);
    human(`live delivery: ${m.delivered} deliveries; steady: ${m.steadyReceived}/${m.steadyExpected} in ${m.steadyMemberships} memberships ` +
      `(${m.steadyMissing} missing, ${m.steadyOutOfOrder} out of order); churn: ${m.churnChecked} checked in ${m.churnMemberships} memberships, ${m.churnGaps} with a gap`);
  }
  if (report.dms) {
    const d = report.dms;
    human(`private messages: ${d.sent} sent, ${d.acked} acked, ${d.lostToChurn} unacked (churn), ${d.missing} lost, ${d.duplicated} duplicated`);
  }
  const ch = report.churn;
  human(`churn: ${ch.connects} connects (${ch.connectFailures} failed), ${ch.reconnects} reconnects (${ch.closeClean} clean, ` +
    `${ch.closeEngine} engine close, ${ch.closeTcp} TCP drop), ${ch.roomMoves} room moves (${ch.joins} joins, ${ch.leaves} leaves), ` +
    `${ch.typingSent} typing sent, ${ch.typingReceived} received`);
  if (report.rss) {
    const r = report.rss;
    human(`memory: VmRSS baseline ${kib(r.baselineKiB)}, after warm-up (t=${r.warmT}s) ${kib(r.warmKiB)}, end ${kib(r.endKiB)}, ` +
      `max ${kib(r.maxKiB)}; growth ${kib(r.growthKiB)} (bound ${kib(r.boundKiB)}), slope ${r.slopeKiBPerMin} KiB/min`);
  }
  if (report.fds) {
    const f = report.fds;
    human(`descriptors: baseline ${f.baseline}, peak ${f.peak}, ${f.withSteady} with ${f.steadyOpen} steady clients open ` +
      `(limit ${f.limitWithSteady}), ${f.final} after all closed (limit ${f.finalLimit})`);
  }
  const cl = report.client;
  human(`client: cpu ${cl.cpuUserS}s user + ${cl.cpuSystemS}s sys, event-loop delay p99 ${cl.eventLoopDelayP99Ms} ms ` +
    `(max ${cl.eventLoopDelayMaxMs}); chat ack latency p50 ${cl.ackMsP50} ms, p99 ${cl.ackMsP99} ms, max ${cl.ackMsMax} ms`);
  if (report.serverCpu) {
    human(`server: cpu ${report.serverCpu.seconds}s during setup and load (${report.serverCpu.cores} cores on average over the load)`);
  }
  human(`server exit: ${short(server.exit)}; run took ${report.durationS} s`);
  for (const w of warnings) human(`WARNING: ${w}`);
  if (report.ok) human("SOAK PASSED");
  else {
    human(`SOAK FAILED: ${[...violationCounts].map(([k, n]) => `${k} x${n}`).join(", ")}`);
    for (const v of violations) human(`  - ${v}`);
    if (server.output.length) human(`--- last server output (${server.lines} lines in all) ---\n${server.output.slice(-40).join("\n")}`);
  }
  if (opts.json) process.stdout.write(`${JSON.stringify({ ...report, samples })}\n`);
  return report.ok ? 0 : 1;
}

process.on("exit", cleanupNow);
for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"]) {
  process.on(sig, () => {
    process.stderr.write(`soak: ${sig}: stopping the server and exiting\n`);
    cleanupNow();
    process.exit(130);
  });
}
process.on("uncaughtException", (err) => {
  process.stderr.write(`soak: uncaught exception: ${err.stack || err}\n`);
  cleanupNow();
  process.exit(2);
});

main().then(
  (code) => {
    process.exitCode = code;
    // Nothing should be left, but a stray timer or socket must not keep the process alive.
    setTimeout(() => process.exit(code), 500).unref();
  },
  (err) => {
    process.stderr.write(`soak: ${err.stack || err}\n`);
    cleanupNow();
    process.exit(2);
  },
);
