#!/usr/bin/env node
// Reference implementation of the sockeye conformance app ("--app echo"), built on the official
// Node.js `socket.io` and `engine.io` servers.
//
// It exists only to prove that the interop tests are right: every test in this directory must
// pass against this server before it is allowed to judge sockeye. It mirrors sockeye's command
// line (`--app echo --host 127.0.0.1 --port 0`) and prints the same single listening line.
//
// What it serves (keep in sync with tests/interop/README.md):
// - Socket.IO at `/socket.io/`: namespaces `/` and `/custom` (any other namespace gets
//   CONNECT_ERROR "Invalid namespace"); on connect each emits `auth` with the handshake auth.
// - On `/` only: `message` -> `message-back`, `message-with-ack` -> ack with the same arguments,
//   and the test helpers `join`, `leave`, `to-room`, `broadcast`, `server-disconnect`,
//   `emit-with-ack`, `get-rooms`.
// - Plain Engine.IO at `/engine.io/` that echoes every text and binary message.
"use strict";

const http = require("node:http");
const { Server: SocketIoServer } = require("socket.io");
const { Server: EngineIoServer } = require("engine.io");

// Timings and limits of the conformance app. They are deliberately short so heartbeat tests run
// in well under a second.
const PING_INTERVAL_MS = 300;
const PING_TIMEOUT_MS = 200;
const MAX_PAYLOAD_BYTES = 1_000_000;
const CONNECT_TIMEOUT_MS = 1000;

function parseArgs(argv) {
  const opts = { app: "echo", host: "127.0.0.1", port: 0, recovery: false, recoveryWindowMs: 120_000 };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const value = argv[i + 1];
    switch (flag) {
      case "--app":
        opts.app = value;
        i++;
        break;
      case "--host":
        opts.host = value;
        i++;
        break;
      case "--port":
        opts.port = Number(value);
        i++;
        break;
      // Connection state recovery, as sockeye's flags (tests/interop/recovery).
      case "--recovery":
        opts.recovery = value === "on";
        i++;
        break;
      case "--recovery-window-ms":
        opts.recoveryWindowMs = Number(value);
        i++;
        break;
      default:
        console.error(`reference-server: unknown argument ${flag}`);
        process.exit(2);
    }
  }
  if (opts.app !== "echo") {
    console.error(`reference-server: only --app echo is implemented, got ${opts.app}`);
    process.exit(2);
  }
  return opts;
}

// Splits a handler's arguments into the payload and the optional ack callback, which socket.io
// passes as the last argument only when the client asked for an acknowledgement.
function splitAck(args) {
  if (args.length > 0 && typeof args[args.length - 1] === "function") {
    return [args.slice(0, -1), args[args.length - 1]];
  }
  return [args, () => {}];
}

function installSocketIo(httpServer, opts) {
  const io = new SocketIoServer(httpServer, {
    connectionStateRecovery: opts.recovery
      ? { maxDisconnectionDuration: opts.recoveryWindowMs, skipMiddlewares: true }
      : undefined,
    path: "/socket.io/",
    pingInterval: PING_INTERVAL_MS,
    pingTimeout: PING_TIMEOUT_MS,
    maxHttpBufferSize: MAX_PAYLOAD_BYTES,
    connectTimeout: CONNECT_TIMEOUT_MS,
    // No CORS configuration and no serving of the client bundle: sockeye does neither.
    serveClient: false,
  });

  const custom = io.of("/custom");
  custom.on("connection", (socket) => {
    socket.emit("auth", socket.handshake.auth);
  });

  io.of("/").on("connection", (socket) => {
    socket.emit("auth", socket.handshake.auth);

    socket.on("message", (...args) => {
      socket.emit("message-back", ...args);
    });

    socket.on("message-with-ack", (...args) => {
      const [payload, ack] = splitAck(args);
      ack(...payload);
    });

    socket.on("join", (...args) => {
      const [[room], ack] = splitAck(args);
      socket.join(String(room));
      ack(true);
    });

    socket.on("leave", (...args) => {
      const [[room], ack] = splitAck(args);
      socket.leave(String(room));
      ack(true);
    });

    socket.on("to-room", (...args) => {
      const [[room, payload]] = splitAck(args);
      socket.to(String(room)).emit("room-msg", payload);
    });

    socket.on("broadcast", (...args) => {
      const [[payload]] = splitAck(args);
      socket.broadcast.emit("broadcast-msg", payload);
    });

    socket.on("server-disconnect", () => {
      // Namespace-level disconnect: the client receives a DISCONNECT packet and reports
      // "io server disconnect".
      socket.disconnect();
    });

    socket.on("emit-with-ack", (...args) => {
      const [[payload]] = splitAck(args);
      socket.emit("server-ack-request", payload, (result) => {
        socket.emit("server-ack-result", result);
      });
    });

    socket.on("get-rooms", (...args) => {
      const [, ack] = splitAck(args);
      ack([...socket.rooms].sort());
    });
  });

  return io;
}

function installEngineIo(httpServer) {
  const engine = new EngineIoServer({
    path: "/engine.io/",
    pingInterval: PING_INTERVAL_MS,
    pingTimeout: PING_TIMEOUT_MS,
    maxHttpBufferSize: MAX_PAYLOAD_BYTES,
  });
  engine.attach(httpServer, { path: "/engine.io/" });
  engine.on("connection", (socket) => {
    socket.on("message", (data) => socket.send(data));
  });
  return engine;
}

function main() {
  const opts = parseArgs(process.argv.slice(2));
  const httpServer = http.createServer();
  installSocketIo(httpServer, opts);
  installEngineIo(httpServer);

  httpServer.listen(opts.port, opts.host, () => {
    const { port } = httpServer.address();
    process.stdout.write(`sockeye listening on http://${opts.host}:${port}\n`);
  });

  const shutdown = () => process.exit(0);
  process.on("SIGTERM", shutdown);
  process.on("SIGINT", shutdown);
}

main();
