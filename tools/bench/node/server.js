// Benchmark peer: the sockeye bench contract on socket.io (Node.js).
//
// The contract, on namespace "/":
// - "bench" (payload): io.emit("bench", payload) to every socket, sender included.
// - "echo" (payload, ack): ack(payload).
// - "join" (room, ack): socket.join(room), ack(true).
// - "bench-room" (room, payload): io.to(room).emit("bench-room", payload), sender included.
//
// Every option is left at its default, as a normal user would run it. For socket.io 4.8.4 /
// engine.io 6.6 these are: the `ws` engine (without the optional bufferutil and
// utf-8-validate add-ons, which are not installed), perMessageDeflate off, httpCompression on
// for polling responses of 1024 bytes or more when the client sends Accept-Encoding,
// pingInterval 25 s, pingTimeout 20 s, upgradeTimeout 10 s, maxHttpBufferSize 1 MB, both
// transports, connectTimeout 45 s, the in-memory adapter, no connection state recovery.
//
// Usage: node server.js [--host H] [--port P]   (env PORT also sets the port)
"use strict";

const http = require("node:http");
const { Server } = require("socket.io");

function parseOptions(argv) {
  const options = { host: "127.0.0.1", port: Number(process.env.PORT || 3000) };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const value = argv[i + 1];
    if (flag === "--host" && value !== undefined) {
      options.host = value;
      i++;
    } else if (flag === "--port" && value !== undefined) {
      options.port = Number(value);
      i++;
    } else {
      console.error(`usage: node server.js [--host H] [--port P] (bad argument ${flag})`);
      process.exit(2);
    }
  }
  return options;
}

const options = parseOptions(process.argv.slice(2));
const httpServer = http.createServer();
const io = new Server(httpServer);

io.on("connection", (socket) => {
  socket.on("bench", (payload) => {
    io.emit("bench", payload);
  });
  socket.on("echo", (payload, ack) => {
    if (typeof ack === "function") ack(payload);
  });
  socket.on("join", (room, ack) => {
    socket.join(room);
    if (typeof ack === "function") ack(true);
  });
  socket.on("bench-room", (room, payload) => {
    io.to(room).emit("bench-room", payload);
  });
});

httpServer.listen(options.port, options.host, () => {
  console.log(`listening on ${httpServer.address().port}`);
});

// The runner stops peers with SIGTERM or SIGINT; exit at once rather than drain.
for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => process.exit(0));
}
