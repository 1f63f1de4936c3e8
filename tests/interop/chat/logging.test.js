// Logs (docs/ARCHITECTURE.md, "Logs"): leveled lines on stderr, human or JSON, and never a message
// body, a token or the secret. A server at `--log-level debug --log-format json` in token mode
// serves a session that sends stored messages, a refused token and a clean shutdown; every line
// must be one JSON object with ts/level/msg, the lifecycle must be there, and none of the secrets
// or marker texts may appear anywhere in the output.
"use strict";

const { test } = require("node:test");
const assert = require("node:assert/strict");
const h = require("./harness");
const { connect, connectRefused, mintToken, nowSec, uniq } = h;

const SECRET = "logging-test-secret-" + uniq("s");

test("json logs at debug: one object per line, lifecycle present, no bodies or tokens", async () => {
  const server = await h.startServer({ args: ["--log-level", "debug", "--log-format", "json"], env: { JWT_SECRET: SECRET } });
  const marker = uniq("BODY-MARKER");
  const privateMarker = uniq("PRIVATE-MARKER");
  const aliceToken = mintToken({ username: "alice", iat: nowSec() }, SECRET);
  const bobToken = mintToken({ username: "bob", iat: nowSec() }, SECRET);
  const forged = mintToken({ username: "mallory", iat: nowSec() }, "not-the-secret");
  try {
    const a = await connect(server.url, { auth: { token: aliceToken } });
    const b = await connect(server.url, { auth: { token: bobToken } });
    const ack = await a.ack("sendMessage", { receiverId: "bob", message: privateMarker });
    assert.equal(ack.success, true, JSON.stringify(ack));
    a.emit("all_chat", { message: marker });
    await b.waitFor("all_chat", (m) => m.message === marker);
    const err = await connectRefused(server.url, { auth: { token: forged } });
    assert.equal(err.data?.code, "invalid_signature");
    a.close();
    await b.waitFor("userDisconnected");
    b.close();
    await h.sleep(100);
  } finally {
    await server.stop();
  }
  const out = server.output;
  for (const secret of [marker, privateMarker, aliceToken, bobToken, forged, SECRET]) {
    assert.ok(!out.includes(secret), `the output contains a body, a token or the secret:\n${out}`);
  }
  const lines = out.split("\n").filter((l) => l !== "" && !l.startsWith("--- server start") && !l.startsWith("sockeye listening on"));
  const records = lines.map((l) => {
    let v;
    assert.doesNotThrow(() => (v = JSON.parse(l)), `not a JSON line: ${l}`);
    assert.match(v.ts, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/, l);
    assert.ok(["error", "warn", "info", "debug"].includes(v.level), l);
    assert.equal(typeof v.msg, "string", l);
    return v;
  });
  const has = (msg, pred = () => true) => records.some((r) => r.msg === msg && pred(r));
  assert.ok(has("chat service", (r) => r.mode === "token mode"), out);
  assert.ok(has("listening", (r) => typeof r.addr === "string" && r.app === "chat" && r.cores >= 1), out);
  assert.ok(has("connection refused: identity", (r) => r.code === "invalid_signature" && r.level === "debug"), out);
  assert.ok(has("socket disconnected", (r) => r.ns === "/" && r.reason === "client namespace disconnect"), out);
  assert.ok(has("shutting down: draining", (r) => r.signal === "SIGTERM" && r.level === "info"), out);
  assert.ok(has("stopped"), out);
});

test("human logs at warn: quiet start, no debug or info lines", async () => {
  const server = await h.startServer({ args: ["--log-level", "warn"] });
  try {
    const a = await connect(server.url, { auth: { username: "carol" } });
    a.close();
    await h.sleep(100);
  } finally {
    await server.stop();
  }
  const lines = server.output
    .split("\n")
    .filter((l) => l !== "" && !l.startsWith("--- server start") && !l.startsWith("sockeye listening on"));
  for (const l of lines) {
    assert.match(l, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z (WARN |ERROR) /, `a line below warn: ${l}`);
  }
});

test("human logs at info: the lifecycle, one line each, key=value fields", async () => {
  const server = await h.startServer({ args: ["--log-level", "info"] });
  await server.stop();
  const lines = server.output.split("\n");
  assert.ok(lines.some((l) => / INFO  listening addr=127\.0\.0\.1:\d+ app=chat cores=\d+$/.test(l)), server.output);
  assert.ok(lines.some((l) => / INFO  shutting down: draining signal=SIGTERM$/.test(l)), server.output);
  assert.ok(!lines.some((l) => / DEBUG /.test(l)), server.output);
});
