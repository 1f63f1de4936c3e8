// Acknowledgements both ways with socket.io-client: client -> server (`message-with-ack` is
// acked with the same arguments), many in flight at once, and server -> client (`emit-with-ack`
// makes the server emit `server-ack-request` with an ack callback, whose answer comes back as
// `server-ack-result`).
"use strict";

const { test, before, after, afterEach } = require("node:test");
const assert = require("node:assert/strict");
const { startServer, connectSocket, emitWithAckArgs, once, within, Clients } = require("./harness");

let server;
const clients = new Clients();

before(async () => {
  server = await startServer();
});
afterEach(() => clients.closeAll());
after(async () => {
  clients.closeAll();
  await server?.stop();
});

for (const transport of ["websocket", "polling"]) {
  test(`client -> server ack returns all arguments over ${transport}`, { timeout: 10_000 }, async () => {
    const { socket } = await connectSocket(clients, server.url, { transports: [transport] });
    const args = ["one", 2, { three: [3] }, null, true];
    assert.deepEqual(await emitWithAckArgs(socket, "message-with-ack", args), args);
  });

  test(`client -> server ack with no arguments over ${transport}`, { timeout: 10_000 }, async () => {
    const { socket } = await connectSocket(clients, server.url, { transports: [transport] });
    assert.deepEqual(await emitWithAckArgs(socket, "message-with-ack", []), []);
  });

  test(`50 acks in flight are matched to their own ids over ${transport}`, { timeout: 10_000 }, async () => {
    const { socket } = await connectSocket(clients, server.url, { transports: [transport] });
    const answers = await Promise.all(
      Array.from({ length: 50 }, (_, i) => emitWithAckArgs(socket, "message-with-ack", [i, `n${i}`], 5_000)),
    );
    answers.forEach((answer, i) => assert.deepEqual(answer, [i, `n${i}`]));
  });

  test(`server -> client ack over ${transport}`, { timeout: 10_000 }, async () => {
    const { socket } = await connectSocket(clients, server.url, { transports: [transport] });
    const request = once(socket, "server-ack-request");
    const result = once(socket, "server-ack-result");
    socket.emit("emit-with-ack", { question: "ping?" });
    const [payload, ack] = await request;
    assert.deepEqual(payload, { question: "ping?" });
    assert.equal(typeof ack, "function", "the server asked for an ack");
    ack({ answer: "pong!", list: [1, 2] });
    assert.deepEqual(await result, [{ answer: "pong!", list: [1, 2] }]);
  });
}

test("emitWithAck with a timeout resolves before the timeout", { timeout: 10_000 }, async () => {
  const { socket } = await connectSocket(clients, server.url, { transports: ["websocket"] });
  const answer = await within(socket.timeout(2_000).emitWithAck("message-with-ack", "hi"), 3_000, "emitWithAck");
  assert.equal(answer, "hi");
});
