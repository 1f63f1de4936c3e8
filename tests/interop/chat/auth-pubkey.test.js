// Token mode with a public key file (PROTOCOL.md section 1): `--jwt-public-key FILE
// --jwt-algorithm RS256`. Only RS256 is accepted; a token signed with the public key as an HMAC
// secret (algorithm confusion) and a token of the right algorithm but another key are refused.
// The keys are the test-only pairs of src/auth/testdata.
"use strict";

const { test } = require("node:test");
const assert = require("node:assert/strict");
const crypto = require("node:crypto");
const fs = require("node:fs");
const path = require("node:path");
const h = require("./harness");
const { connect, connectRefused, mintToken, nowSec, uniq, request } = h;

const KEYS = path.resolve(__dirname, "..", "..", "..", "src", "auth", "testdata");
const PUBLIC = path.join(KEYS, "rsa_public.pem");
const PRIVATE = fs.readFileSync(path.join(KEYS, "rsa_private.pem"));

const fx = h.useServer({ args: ["--jwt-public-key", PUBLIC, "--jwt-algorithm", "RS256"] });

function rs256(claims, key = PRIVATE) {
  const enc = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const input = `${enc({ alg: "RS256", typ: "JWT" })}.${enc(claims)}`;
  const sig = crypto.sign("RSA-SHA256", Buffer.from(input), key).toString("base64url");
  return `${input}.${sig}`;
}

test("an RS256 token signed by the matching private key connects as its user", async () => {
  const user = uniq("rsa");
  const s = await connect(fx.url, { auth: { token: rs256({ username: user, exp: nowSec() + 60 }) } });
  const list = await s.waitFor("getOnlineUsers", (l) => l.includes(user));
  assert.ok(list.includes(user));
  const res = await request(`${fx.url}/api/rooms`, {
    headers: { Authorization: `Bearer ${rs256({ sub: user })}` },
  });
  assert.equal(res.status, 200, res.text);
});

test("HS256 with the public key as secret, another RSA key, and HS256 are refused", async () => {
  const pem = fs.readFileSync(PUBLIC, "utf8");
  const other = crypto.generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey;
  const cases = [
    ["HS256 signed with the public key PEM", mintToken({ username: "eve" }, pem), "algorithm_not_allowed"],
    ["RS256 from another key", rs256({ username: "eve" }, other), "invalid_signature"],
    ["expired RS256", rs256({ username: "eve", exp: nowSec() - 120 }), "token_expired"],
  ];
  for (const [what, token, code] of cases) {
    const err = await connectRefused(fx.url, { auth: { token } });
    assert.equal(err.data?.code, code, `${what}: ${JSON.stringify(err.data)}`);
  }
});
