// Shared helpers for the chat app's interop tests (docs/PROTOCOL.md): start a sockeye chat server
// on a fresh data directory, connect socket.io-client sockets that record every event they get,
// wait for events with short bounds, mint JWTs, restart or `kill -9` a server, talk HTTP.
//
// The binary is $SOCKEYE_BIN (tests/chat_interop.rs sets it to the one cargo built). Every server
// runs in its own process group and is SIGKILLed with it when the file ends, whether its tests
// passed or not; its data directory is removed with it.
"use strict";

const { spawn, execFileSync } = require("node:child_process");
const crypto = require("node:crypto");
const fs = require("node:fs");
const http = require("node:http");
const os = require("node:os");
const path = require("node:path");
const { before, after, afterEach } = require("node:test");
const { setTimeout: sleep } = require("node:timers/promises");
const { io } = require("socket.io-client");

// Events normally arrive within milliseconds; these bounds only decide how long a failure takes.
const EVENT_MS = 2_000;
// How long to wait before concluding that something is not coming.
const QUIET_MS = 300;
const START_MS = 10_000;
const LISTENING_LINE = /^sockeye listening on (http:\/\/\S+)\s*$/m;

const HEX24 = /^[0-9a-f]{24}$/;
const ISO_MS = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;

function sockeyeBin() {
  const bin = process.env.SOCKEYE_BIN;
  if (!bin || bin.trim() === "") {
    throw new Error(
      "SOCKEYE_BIN is not set. Build with `cargo build --release`, then from tests/interop:\n" +
        "  SOCKEYE_BIN=$PWD/../../target/release/sockeye node --test chat/\n" +
        "(`cargo test --release --test chat_interop` sets it for you)",
    );
  }
  if (!fs.existsSync(bin)) throw new Error(`SOCKEYE_BIN=${bin} does not exist`);
  return bin;
}

// ---------------------------------------------------------------------------------------------
// Servers

const liveServers = new Set();
const ownedDirs = new Set();

// Last line of defence: if a test file dies without running its `after` hooks, its servers and
// data directories still go away with it.
process.on("exit", () => {
  for (const server of liveServers) server.killNow();
  for (const dir of ownedDirs) fs.rmSync(dir, { recursive: true, force: true });
});

function freshDataDir() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "sockeye-chat-"));
  ownedDirs.add(dir);
  return dir;
}

function within(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

class ChatServer {
  // args: extra command-line flags; env: extra environment (JWT_SECRET is removed from the
  // inherited environment unless given here, so a developer's shell cannot switch modes).
  constructor({ args = [], env = {}, dataDir } = {}) {
    this.args = args;
    this.env = env;
    this.dataDir = dataDir ?? freshDataDir();
    this.child = null;
    this.url = null;
    this.output = "";
    this.starts = 0;
  }

  async start() {
    const childEnv = { ...process.env };
    delete childEnv.JWT_SECRET;
    Object.assign(childEnv, this.env);
    const argv = ["--host", "127.0.0.1", "--port", "0", "--data-dir", this.dataDir, ...this.args];
    const child = spawn(sockeyeBin(), argv, { detached: true, env: childEnv, stdio: ["ignore", "pipe", "pipe"] });
    this.child = child;
    this.url = null;
    this.starts += 1;
    const exited = new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
    child.exitedPromise = exited;
    child.hasExited = false;
    exited.then(() => {
      child.hasExited = true;
      liveServers.delete(this);
    });
    liveServers.add(this);
    const banner = `--- server start #${this.starts}: sockeye ${argv.join(" ")} ---\n`;
    this.output += banner;
    child.stdout.on("data", (chunk) => (this.output += chunk.toString()));
    child.stderr.on("data", (chunk) => (this.output += chunk.toString()));
    try {
      this.url = await within(
        new Promise((resolve, reject) => {
          const check = () => {
            const m = LISTENING_LINE.exec(this.output.slice(this.output.lastIndexOf(banner)));
            if (m) resolve(m[1]);
          };
          child.stdout.on("data", check);
          child.once("error", reject);
          exited.then(({ code, signal }) =>
            reject(new Error(`server exited before listening (code ${code}, signal ${signal})`)),
          );
        }),
        START_MS,
        "the server's listening line",
      );
    } catch (err) {
      this.killNow();
      throw new Error(`could not start sockeye: ${err.message}\n--- server output ---\n${this.output}`);
    }
    return this;
  }

  // SIGKILL to the whole process group, no waiting.
  killNow() {
    const child = this.child;
    if (!child || child.hasExited) return;
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

  // `kill -9` and wait until the process is gone.
  async kill9() {
    const child = this.child;
    if (!child || child.hasExited) return;
    this.killNow();
    await within(child.exitedPromise, 5_000, "server exit after SIGKILL");
  }

  // SIGTERM (a clean shutdown), SIGKILL if it takes longer than 5 s.
  async stop() {
    const child = this.child;
    if (!child || child.hasExited) return;
    child.kill("SIGTERM");
    try {
      await within(child.exitedPromise, 5_000, "server exit after SIGTERM");
    } catch {
      await this.kill9();
    }
  }

  // Stops the server (kill -9 when `hard`) and starts a new one on the same data directory with
  // the same flags. `url` changes.
  async restart({ hard = false } = {}) {
    if (hard) await this.kill9();
    else await this.stop();
    return this.start();
  }

  // Kills the server and removes its data directory.
  async cleanup() {
    await this.kill9().catch(() => {});
    fs.rmSync(this.dataDir, { recursive: true, force: true });
    ownedDirs.delete(this.dataDir);
  }
}

async function startServer(opts = {}) {
  return new ChatServer(opts).start();
}

// For a test file: one server for the whole file, started in `before`, killed (and its data
// directory removed) in `after`; every client opened by `connect` is closed after each test.
// Returns an object whose `server` and `url` are filled in once `before` ran.
function useServer(opts = {}) {
  const fx = {
    server: null,
    get url() {
      return fx.server.url;
    },
  };
  before(async () => {
    fx.server = await startServer(opts);
  });
  afterEach(() => closeClients());
  after(async () => {
    closeClients();
    await fx.server?.cleanup();
  });
  return fx;
}

// ---------------------------------------------------------------------------------------------
// Clients

const openClients = new Set();

function closeClients() {
  for (const client of openClients) client.close();
  openClients.clear();
}

// A socket.io-client socket that records every event it receives (with its arguments), so a test
// can wait for an event that may already have arrived, or assert that one did not.
class Client {
  constructor(socket) {
    this.socket = socket;
    this.events = []; // { event, args }
    this.waiters = new Set();
    this.disconnectReason = null;
    socket.onAny((event, ...args) => this.record(event, args));
    socket.on("disconnect", (reason) => {
      this.disconnectReason = reason;
      this.record("disconnect", [reason]);
    });
  }

  get id() {
    return this.socket.id;
  }

  get connected() {
    return this.socket.connected;
  }

  record(event, args) {
    const entry = { event, args };
    this.events.push(entry);
    for (const waiter of [...this.waiters]) waiter(entry);
  }

  // The first argument of every received `event` that matches `pred`, in order of arrival.
  received(event, pred = () => true) {
    return this.events.filter((e) => e.event === event && pred(e.args[0], e.args)).map((e) => e.args[0]);
  }

  count(event, pred) {
    return this.received(event, pred).length;
  }

  // Resolves with the first argument of the first `event` matching `pred` received so far or
  // within `ms`; rejects with the events of that name seen so far otherwise.
  waitFor(event, pred = () => true, ms = EVENT_MS) {
    const past = this.events.find((e) => e.event === event && pred(e.args[0], e.args));
    if (past) return Promise.resolve(past.args[0]);
    return new Promise((resolve, reject) => {
      const waiter = (entry) => {
        if (entry.event === event && pred(entry.args[0], entry.args)) {
          clearTimeout(timer);
          this.waiters.delete(waiter);
          resolve(entry.args[0]);
        }
      };
      const timer = setTimeout(() => {
        this.waiters.delete(waiter);
        const seen = this.received(event).map((p) => short(p));
        reject(
          new Error(
            `client ${this.id ?? "(not connected)"} got no matching "${event}" within ${ms} ms; ` +
              `"${event}" events seen: ${seen.length ? seen.join(" | ") : "none"}`,
          ),
        );
      }, ms);
      this.waiters.add(waiter);
    });
  }

  // Waits `ms`, then returns every `event` matching `pred` received so far (expected: none).
  async quiet(event, pred = () => true, ms = QUIET_MS) {
    await sleep(ms);
    return this.received(event, pred);
  }

  forget() {
    this.events = [];
  }

  emit(event, ...args) {
    this.socket.emit(event, ...args);
  }

  // Emits with an acknowledgement; resolves with the ack's first argument.
  async ack(event, payload, ms = EVENT_MS) {
    try {
      return await this.socket.timeout(ms).emitWithAck(event, payload);
    } catch (err) {
      throw new Error(`no ack for "${event}" ${short(payload)} within ${ms} ms (${err.message})`);
    }
  }

  // Resolves with the disconnect reason once the socket is disconnected.
  waitDisconnect(ms = EVENT_MS) {
    if (this.disconnectReason !== null) return Promise.resolve(this.disconnectReason);
    return this.waitFor("disconnect", () => true, ms);
  }

  close() {
    try {
      this.socket.disconnect();
    } catch {
      // Best effort.
    }
    openClients.delete(this);
  }
}

function short(value) {
  let s;
  try {
    s = JSON.stringify(value);
  } catch {
    s = String(value);
  }
  if (s === undefined) s = String(value);
  return s.length > 200 ? `${s.slice(0, 200)}...` : s;
}

function openSocket(url, opts) {
  return io(url, { forceNew: true, reconnection: false, ...opts });
}

// Connects a recording client; resolves once connected, rejects with the connect_error.
async function connect(url, opts = {}, ms = EVENT_MS) {
  const client = new Client(openSocket(url, opts));
  openClients.add(client);
  const socket = client.socket;
  await within(
    new Promise((resolve, reject) => {
      socket.once("connect", resolve);
      socket.once("connect_error", (err) =>
        reject(new Error(`connect_error: ${err.message} ${short(err.data)}`)),
      );
    }),
    ms,
    `socket.io connect to ${url} with ${short(opts)}`,
  );
  return client;
}

// Expects the connection to be refused; resolves with the connect_error's Error (message, data).
async function connectRefused(url, opts = {}, ms = EVENT_MS) {
  const client = new Client(openSocket(url, opts));
  openClients.add(client);
  const socket = client.socket;
  return within(
    new Promise((resolve, reject) => {
      socket.once("connect", () => reject(new Error(`connected (id ${socket.id}) but should have been refused`)));
      socket.once("connect_error", resolve);
    }),
    ms,
    "connect_error",
  ).finally(() => client.close());
}

// ---------------------------------------------------------------------------------------------
// Tokens

const nowSec = () => Math.floor(Date.now() / 1000);

// A JWT signed with HMAC-SHA256 over `secret`, whatever `alg` the header claims (so a header can
// lie about its algorithm). `alg: "none"` gives an unsigned token (empty signature).
function mintToken(claims, secret, { alg = "HS256", header = {} } = {}) {
  const head = Buffer.from(JSON.stringify({ alg, typ: "JWT", ...header })).toString("base64url");
  const body = Buffer.from(JSON.stringify(claims)).toString("base64url");
  const input = `${head}.${body}`;
  if (alg === "none") return `${input}.`;
  const sig = crypto.createHmac("sha256", secret).update(input).digest("base64url");
  return `${input}.${sig}`;
}

// `sockeye token --user USER [--ttl S]` with JWT_SECRET=secret; returns the printed token.
function cliToken(user, secret, ttl) {
  const args = ["token", "--user", user];
  if (ttl !== undefined) args.push("--ttl", String(ttl));
  const out = execFileSync(sockeyeBin(), args, {
    env: { ...process.env, JWT_SECRET: secret },
    timeout: 5_000,
    stdio: ["ignore", "pipe", "pipe"],
  });
  return out.toString().trim();
}

function decodeJwtPart(token, i) {
  return JSON.parse(Buffer.from(token.split(".")[i], "base64url").toString("utf8"));
}

// ---------------------------------------------------------------------------------------------
// HTTP

// One HTTP request on its own connection, bounded. `json` is sent as an application/json body.
// Resolves with { status, headers, text, body } where body is the parsed JSON (undefined if the
// response is not JSON).
function request(url, { method = "GET", json, body, headers = {}, ms = EVENT_MS } = {}) {
  const hdrs = { connection: "close", ...headers };
  let payload = body;
  if (json !== undefined) {
    payload = JSON.stringify(json);
    if (!Object.keys(hdrs).some((k) => k.toLowerCase() === "content-type")) hdrs["content-type"] = "application/json";
  }
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, agent: false, headers: hdrs, timeout: ms }, (res) => {
      const chunks = [];
      res.on("data", (c) => chunks.push(c));
      res.on("end", () => {
        const text = Buffer.concat(chunks).toString("utf8");
        let parsed;
        try {
          parsed = JSON.parse(text);
        } catch {
          parsed = undefined;
        }
        resolve({ status: res.statusCode, headers: res.headers, text, body: parsed });
      });
      res.on("error", reject);
    });
    req.on("timeout", () => req.destroy(new Error(`HTTP ${method} ${url} timed out after ${ms} ms`)));
    req.on("error", reject);
    req.end(payload);
  });
}

// ---------------------------------------------------------------------------------------------
// Small things

function uniq(prefix) {
  return `${prefix}-${crypto.randomBytes(4).toString("hex")}`;
}

function isIso(s, { ms = false } = {}) {
  return typeof s === "string" && (ms ? ISO_MS : ISO).test(s) && !Number.isNaN(Date.parse(s));
}

// Asserts that an HTTP error response is JSON `{ error: { code, message } }` with this status
// (and code, when given) per PROTOCOL.md section 10.
function assertHttpError(assert, res, status, code) {
  assert.equal(res.status, status, `status (body: ${res.text})`);
  assert.ok(res.body && typeof res.body.error === "object", `JSON error body, got: ${res.text}`);
  assert.equal(typeof res.body.error.message, "string");
  assert.ok(res.body.error.message.length > 0, "error.message is a sentence");
  if (code !== undefined) assert.equal(res.body.error.code, code, `error code (body: ${res.text})`);
  else assert.equal(typeof res.body.error.code, "string");
}

// Asserts a failed ack per PROTOCOL.md section 4: { success: false, error: "<sentence>", code }.
function assertAckError(assert, ack, code) {
  assert.equal(typeof ack, "object", `ack is an object: ${short(ack)}`);
  assert.equal(ack.success, false, `ack.success is false: ${short(ack)}`);
  assert.equal(typeof ack.error, "string", `ack.error is a string: ${short(ack)}`);
  assert.ok(ack.error.length > 0);
  if (Array.isArray(code)) assert.ok(code.includes(ack.code), `ack.code in ${code}: ${short(ack)}`);
  else assert.equal(ack.code, code, `ack.code: ${short(ack)}`);
}

module.exports = {
  EVENT_MS,
  QUIET_MS,
  HEX24,
  ChatServer,
  startServer,
  useServer,
  freshDataDir,
  connect,
  connectRefused,
  closeClients,
  mintToken,
  cliToken,
  decodeJwtPart,
  nowSec,
  request,
  uniq,
  isIso,
  assertHttpError,
  assertAckError,
  short,
  sleep,
  within,
};
