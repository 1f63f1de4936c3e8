// Shared helpers for the JavaScript interop tests: start the server under test, wait for events
// with a bound, and make sure nothing (server process, client socket) outlives a test file.
//
// The server under test is the command line in SOCKEYE_SERVER_CMD. It is run through `sh -c` with
// the repository root as its working directory, so both an absolute path to the sockeye binary
// and `node tests/interop/reference-server.js` work from wherever `node --test` was started.
"use strict";

const { spawn } = require("node:child_process");
const path = require("node:path");
const { setTimeout: sleep } = require("node:timers/promises");

const REPO_ROOT = path.resolve(__dirname, "..", "..", "..");
const LISTENING_LINE = /^sockeye listening on (http:\/\/\S+)\s*$/m;
const START_TIMEOUT_MS = 15_000;

// The conformance app's configuration, as announced in its handshake.
const PING_INTERVAL_MS = 300;
const PING_TIMEOUT_MS = 200;

const liveServers = new Set();

// Last line of defence: if a test file dies without running its `after` hook, its servers still
// go away with it.
process.on("exit", () => {
  for (const server of liveServers) server.kill();
});

function serverCommand() {
  const cmd = process.env.SOCKEYE_SERVER_CMD;
  if (!cmd || cmd.trim() === "") {
    throw new Error(
      "SOCKEYE_SERVER_CMD is not set. Use e.g.\n" +
        '  SOCKEYE_SERVER_CMD="node tests/interop/reference-server.js" node --test\n' +
        '  SOCKEYE_SERVER_CMD="target/release/sockeye --app echo" node --test',
    );
  }
  return cmd;
}

class ServerProcess {
  constructor(child) {
    this.child = child;
    this.url = null;
    this.output = "";
    this.exited = false;
    child.on("exit", () => {
      this.exited = true;
      liveServers.delete(this);
    });
  }

  // Kills the whole process group, so a wrapper shell cannot leave the server behind.
  kill() {
    if (this.exited) return;
    try {
      process.kill(-this.child.pid, "SIGKILL");
    } catch {
      try {
        this.child.kill("SIGKILL");
      } catch {
        // Already gone.
      }
    }
    liveServers.delete(this);
  }

  async stop() {
    if (this.exited) return;
    const exited = new Promise((resolve) => this.child.once("exit", resolve));
    this.kill();
    await within(exited, 5_000, "server exit after SIGKILL").catch(() => {});
  }
}

// Starts the server under test on a free port and resolves once it printed its listening line.
async function startServer() {
  const cmd = `exec ${serverCommand()} --host 127.0.0.1 --port 0`;
  const child = spawn("sh", ["-c", cmd], {
    cwd: REPO_ROOT,
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
  });
  const server = new ServerProcess(child);
  liveServers.add(server);

  try {
    server.url = await new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`server did not print its listening line within ${START_TIMEOUT_MS} ms`)),
        START_TIMEOUT_MS,
      );
      const onData = (chunk) => {
        server.output += chunk.toString();
        const m = LISTENING_LINE.exec(server.output);
        if (m) {
          clearTimeout(timer);
          resolve(m[1]);
        }
      };
      child.stdout.on("data", onData);
      child.stderr.on("data", (chunk) => {
        server.output += chunk.toString();
      });
      child.once("error", (err) => {
        clearTimeout(timer);
        reject(err);
      });
      child.once("exit", (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`server exited before listening (code ${code}, signal ${signal})`));
      });
    });
  } catch (err) {
    server.kill();
    throw new Error(`failed to start \`${cmd}\`: ${err.message}\n--- server output ---\n${server.output}`);
  }
  // Keep draining the server's output so it can never block on a full pipe.
  child.stdout.on("data", (chunk) => {
    server.output += chunk.toString();
  });
  return server;
}

// Resolves with the event's arguments (an array) the next time `emitter` emits `event`, or
// rejects after `ms`. Works with socket.io-client sockets, engine.io-client sockets and Node
// EventEmitters.
function once(emitter, event, ms = 3_000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      emitter.off(event, handler);
      reject(new Error(`timed out after ${ms} ms waiting for "${event}"`));
    }, ms);
    const handler = (...args) => {
      clearTimeout(timer);
      resolve(args);
    };
    emitter.once(event, handler);
  });
}

// Resolves to true if `event` is emitted within `ms`, false otherwise. For asserting absence.
function happensWithin(emitter, event, ms) {
  return once(emitter, event, ms).then(
    () => true,
    () => false,
  );
}

// Bounds any promise.
function within(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// Keeps track of clients opened by a test so they are all closed in `finally`/`afterEach`.
class Clients {
  constructor() {
    this.all = [];
  }
  add(client) {
    this.all.push(client);
    return client;
  }
  closeAll() {
    for (const client of this.all.splice(0)) {
      try {
        if (typeof client.disconnect === "function") client.disconnect();
        else client.close();
      } catch {
        // Closing is best effort; the server is killed after the file anyway.
      }
    }
  }
}

// Opens an independent socket.io-client socket (its own Engine.IO connection, no reconnection)
// and resolves once it is connected and has received the app's `auth` greeting.
async function connectSocket(clients, url, opts = {}, ms = 5_000) {
  const { io } = require("socket.io-client");
  const socket = clients.add(io(url, { forceNew: true, reconnection: false, ...opts }));
  const [[auth]] = await Promise.all([once(socket, "auth", ms), waitConnected(socket, ms)]);
  return { socket, auth };
}

// Resolves when a socket.io-client socket is connected; rejects with the connect_error.
function waitConnected(socket, ms = 5_000) {
  if (socket.connected) return Promise.resolve();
  return within(
    new Promise((resolve, reject) => {
      socket.once("connect", resolve);
      socket.once("connect_error", (err) => reject(new Error(`connect_error: ${err.message}`)));
    }),
    ms,
    "socket.io connect",
  );
}

// Emits with an acknowledgement callback and resolves with all the ack's arguments.
function emitWithAckArgs(socket, event, args, ms = 3_000) {
  return within(
    new Promise((resolve) => socket.emit(event, ...args, (...ackArgs) => resolve(ackArgs))),
    ms,
    `ack for "${event}"`,
  );
}

// One HTTP request on its own connection (no keep-alive, so no socket outlives the test), bounded
// by `ms`. Resolves with { status, headers, body } where body is a UTF-8 string.
function httpRequest(url, { method = "GET", body, headers = {}, ms = 3_000 } = {}) {
  const http = require("node:http");
  return new Promise((resolve, reject) => {
    const req = http.request(
      url,
      { method, agent: false, headers: { connection: "close", ...headers }, timeout: ms },
      (res) => {
        const chunks = [];
        res.on("data", (chunk) => chunks.push(chunk));
        res.on("end", () =>
          resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString("utf8") }),
        );
        res.on("error", reject);
      },
    );
    req.on("timeout", () => req.destroy(new Error(`HTTP ${method} ${url} timed out after ${ms} ms`)));
    req.on("error", reject);
    req.end(body);
  });
}

module.exports = {
  httpRequest,
  connectSocket,
  waitConnected,
  emitWithAckArgs,
  PING_INTERVAL_MS,
  PING_TIMEOUT_MS,
  startServer,
  once,
  happensWithin,
  within,
  sleep,
  Clients,
};
