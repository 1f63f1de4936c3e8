// Limits and bad input (PROTOCOL.md sections 3, 4 and 11): every bad payload gets a clear error
// and changes nothing while the server keeps serving; the rate limit and the abuse disconnect;
// rooms per socket; name lengths; history sizes; presence coalescing and switching it off.
"use strict";

const { describe, test } = require("node:test");
const assert = require("node:assert/strict");
const h = require("./harness");
const { useServer, connect, connectRefused, uniq, request, assertAckError, assertHttpError, sleep } = h;

describe("bad payloads", () => {
  const fx = useServer({ args: ["--rate-limit", "1000", "--rate-burst", "1000", "--max-message-chars", "100"] });

  async function createRoom(client, name = uniq("room")) {
    const ack = await client.ack("create room", { name });
    assert.equal(ack.success, true, JSON.stringify(ack));
    return ack.room;
  }

  test("each bad payload is refused with its code, nothing changes, and the server keeps serving", async () => {
    const observer = await connect(fx.url, { query: { username: uniq("observer") } });
    const room = await createRoom(observer);
    await observer.ack("join room", { roomId: room._id });
    const bad = await connect(fx.url, { query: { username: uniq("bad") } });
    await bad.ack("join room", { roomId: room._id });
    const roomsBefore = (await request(`${fx.url}/api/rooms`)).body;
    observer.forget();

    const r = room._id;
    const cases = [
      // Seed 003 `chat message`.
      ["chat message", { roomId: r, text: 42 }, "invalid_payload"],
      ["chat message", { roomId: r, text: null }, "invalid_payload"],
      ["chat message", { roomId: r, text: { nested: "object" } }, "invalid_payload"],
      ["chat message", { roomId: r, text: ["a"] }, "invalid_payload"],
      ["chat message", { roomId: r, text: Buffer.from("binary") }, "invalid_payload"],
      ["chat message", { roomId: r }, "invalid_payload"],
      ["chat message", { roomId: "no-such-room", text: "hi" }, "unknown_room"],
      ["chat message", { roomId: "ffffffffffffffffffffffff", text: "hi" }, "unknown_room"],
      ["chat message", { roomId: r, text: "x".repeat(100_000) }, "text_too_long"],
      ["chat message", { roomId: r, text: "   " }, "empty_text"],
      // `join room` / `create room`.
      ["join room", { roomId: "no-such-room" }, "unknown_room"],
      ["join room", {}, "invalid_payload"],
      ["join room", null, "invalid_payload"],
      ["create room", { name: "" }, "invalid_room_name"],
      ["create room", { name: "n".repeat(65) }, "invalid_room_name"],
      // A name of the wrong type: "wrong type" is `invalid_payload`, a bad name `invalid_room_name`;
      // PROTOCOL.md does not say which wins.
      ["create room", { name: 42 }, ["invalid_payload", "invalid_room_name"]],
      ["create room", { name: "GENERAL" }, "room_name_taken"],
      // Seed 002 `message`.
      ["message", { message: 42 }, "invalid_payload"],
      ["message", "a bare string", "invalid_payload"],
      ["message", [1, 2, 3], "invalid_payload"],
      ["message", null, "invalid_payload"],
      ["message", Buffer.from([0, 1, 2, 255]), "invalid_payload"],
      ["message", { message: "y".repeat(101) }, "text_too_long"],
      // Seed 001 `sendMessage`.
      ["sendMessage", { receiverId: "someone", message: 42 }, "invalid_payload"],
      ["sendMessage", { receiverId: "someone", message: "" }, "empty_text"],
      ["sendMessage", { receiverId: "someone", message: "z".repeat(101) }, "text_too_long"],
      // "`unknown_user`: a private message with no receiver" (or a missing field).
      ["sendMessage", { message: "to nobody" }, ["unknown_user", "invalid_payload"]],
      // Seed 000: "A `chat` with no receiver field fails with `unknown_user`"; an opaque message
      // above --max-message-bytes (65536) is `text_too_long`.
      ["chat", { message: "to nobody" }, "unknown_user"],
      ["all_chat", { message: "b".repeat(70_000) }, "text_too_long"],
      ["all_chat", {}, "invalid_payload"],
    ];
    // Every case runs; the mismatches are reported together.
    const wrong = [];
    for (const [event, payload, code] of cases) {
      const ack = await bad.ack(event, payload);
      try {
        assertAckError(assert, ack, code);
      } catch {
        wrong.push(`${event} ${h.short(payload).slice(0, 50)} -> ${h.short(ack).slice(0, 160)} (expected ${code})`);
      }
    }
    assert.deepEqual(wrong, [], "payloads not refused as expected");
    assert.ok(bad.connected, "a bad payload never disconnects the sender");

    // Nothing was delivered, created or stored.
    const delivered = ["chat message", "room created", "load", "newMessage", "all_chat", "chat"].flatMap((e) =>
      observer.received(e).map((p) => `${e} ${h.short(p)}`),
    );
    assert.deepEqual(delivered, []);
    assert.deepEqual((await request(`${fx.url}/api/rooms`)).body, roomsBefore, "no room was created");
    assert.deepEqual((await request(`${fx.url}/api/rooms/${r}/messages`)).body, [], "no message was stored");

    // The same sender is still served, and so is everyone else.
    const text = `good after bad ${uniq("m")}`;
    const ok = await bad.ack("chat message", { roomId: r, text });
    assert.equal(ok.success, true, JSON.stringify(ok));
    await observer.waitFor("chat message", (m) => m.text === text);
  });

  test("without an ack the failure comes as an `error { code, message }` event to the sender only", async () => {
    const bad = await connect(fx.url, { query: { username: uniq("bad") } });
    const other = await connect(fx.url, { query: { username: uniq("other") } });
    const cases = [
      ["chat message", { roomId: "no-such-room", text: "hi" }, "unknown_room"],
      ["message", { message: 42 }, "invalid_payload"],
      ["create room", { name: "" }, "invalid_room_name"],
      ["join room", { roomId: "no-such-room" }, "unknown_room"],
    ];
    for (const [event, payload, code] of cases) {
      bad.forget();
      bad.emit(event, payload);
      const err = await bad.waitFor("error");
      assert.equal(err.code, code, `${event}: ${JSON.stringify(err)}`);
      assert.ok(typeof err.message === "string" && err.message.length > 0);
    }
    assert.deepEqual(await other.quiet("error"), [], "errors go to the sender only");
  });

  test("text limits count characters, not bytes", async () => {
    const a = await connect(fx.url, { query: { username: uniq("a") } });
    const ok = await a.ack("message", { message: "é".repeat(100) }); // 200 bytes in UTF-8
    assert.equal(ok.success, true, JSON.stringify(ok));
    assertAckError(assert, await a.ack("message", { message: "é".repeat(101) }), "text_too_long");
  });

  test("a name above --max-name-chars (64) is refused with invalid_username", async () => {
    const err = await connectRefused(fx.url, { query: { username: "n".repeat(65) } });
    assert.equal(err.data?.code, "invalid_username", JSON.stringify(err.data));
    await connect(fx.url, { query: { username: "n".repeat(64) } });
  });
});

describe("rate limit (--rate-limit 5 --rate-burst 5 --abuse-disconnect 8)", () => {
  const fx = useServer({ args: ["--rate-limit", "5", "--rate-burst", "5", "--abuse-disconnect", "8"] });

  async function member(name) {
    const c = await connect(fx.url, { query: { username: uniq(name) } });
    const ack = await c.ack("join room", { roomId: "general" });
    assert.equal(ack.success, true, JSON.stringify(ack));
    c.roomId = ack.roomId;
    return c;
  }

  const burst = (c, n, tag) =>
    Promise.all(Array.from({ length: n }, (_, i) => c.ack("chat message", { roomId: c.roomId, text: `${tag} ${i}` })));

  test("a burst above the bucket is refused with rate_limited, then the bucket refills", async () => {
    const a = await member("burst");
    const acks = await burst(a, 10, "burst");
    const ok = acks.filter((x) => x.success === true).length;
    // The burst less the token `join room` took (it reads history, so it draws from the same
    // bucket, section 4), plus at most a token or two refilled (one per 200 ms) if the machine
    // is slow.
    assert.ok(ok >= 4 && ok <= 6, `4 (the burst after the join) to 6 accepted, got ${ok}: ${h.short(acks)}`);
    for (const x of acks.filter((y) => y.success !== true)) assertAckError(assert, x, "rate_limited");
    assert.ok(a.connected, "a few rejections do not disconnect");

    await sleep(1_100); // 5 tokens per second
    const again = await burst(a, 3, "refilled");
    assert.deepEqual(again.map((x) => x.success), [true, true, true], h.short(again));
  });

  test("rate limited without an ack: `error { code: rate_limited }`", async () => {
    const a = await connect(fx.url, { query: { username: uniq("chatty") } });
    for (let i = 0; i < 8; i++) a.emit("message", { message: `flood ${i}` });
    await a.waitFor("error", (e) => e.code === "rate_limited");
    await sleep(200);
    const errors = a.received("error");
    assert.ok(errors.length >= 2 && errors.every((e) => e.code === "rate_limited"), h.short(errors));
  });

  test("repeated abuse disconnects the socket; other clients keep being served", async () => {
    const abuser = await member("abuser");
    const bystander = await member("bystander");
    // The join took a token: 4 accepted, then 3 of the 8 rejections that disconnect.
    for (let i = 0; i < 7; i++) abuser.emit("chat message", { roomId: abuser.roomId, text: `spam ${i}` });
    await sleep(50);
    // One acknowledged event at a time until the server cuts the socket off: each is answered,
    // the one that crosses the limit included (its ack comes before the disconnect).
    let answered = 0;
    while (abuser.connected && answered < 10) {
      assertAckError(assert, await abuser.ack("chat message", { roomId: abuser.roomId, text: `spam +${answered}` }), "rate_limited");
      answered += 1;
      await sleep(20);
    }
    const reason = await abuser.waitDisconnect();
    assert.ok(["io server disconnect", "transport close"].includes(reason), `disconnected by the server: ${reason}`);
    assert.ok(answered >= 1 && answered <= 6, `disconnected after ${answered} answered rejections`);
    const metrics = (await request(`${fx.url}/metrics`)).text;
    const abuse = /^sockeye_chat_abuse_disconnects_total (\d+)$/m.exec(metrics);
    const limited = /^sockeye_chat_rejections_total\{code="rate_limited"\} (\d+)$/m.exec(metrics);
    assert.ok(abuse && Number(abuse[1]) >= 1, `abuse disconnects counted: ${abuse?.[0]}`);
    assert.ok(limited && Number(limited[1]) >= 10, `rate_limited rejections counted: ${limited?.[0]}`);
    const text = `still here ${uniq("m")}`;
    const ok = await bystander.ack("chat message", { roomId: bystander.roomId, text });
    assert.equal(ok.success, true, JSON.stringify(ok));
  });

  test("typing has its own bucket: a typing flood neither errors, nor disconnects, nor drains messages", async () => {
    const a = await member("typist");
    const b = await member("reader");
    for (let i = 0; i < 40; i++) a.emit("typing", { roomId: a.roomId });
    await b.waitFor("typing");
    assert.deepEqual(await a.quiet("error"), [], "excess typing is dropped without an error");
    assert.ok(a.connected);
    const acks = await burst(a, 5, "after typing");
    assert.deepEqual(acks.map((x) => x.success), [true, true, true, true, true], h.short(acks));
  });
});

describe("rooms per socket and room names (--max-rooms-per-socket 3 --max-room-name-chars 16)", () => {
  const fx = useServer({ args: ["--max-rooms-per-socket", "3", "--max-room-name-chars", "16"] });

  test("joining a fourth room is refused with too_many_rooms until one is left", async () => {
    const a = await connect(fx.url, { query: { username: uniq("joiner") } });
    const rooms = [];
    for (let i = 0; i < 4; i++) rooms.push((await a.ack("create room", { name: uniq(`r${i}`) })).room);
    for (const room of rooms.slice(0, 3)) assert.equal((await a.ack("join room", { roomId: room._id })).success, true);
    assertAckError(assert, await a.ack("join room", { roomId: rooms[3]._id }), "too_many_rooms");
    // Joining a room already joined is not a new room.
    assert.equal((await a.ack("join room", { roomId: rooms[0]._id })).success, true);
    // The refused join did not happen: a message there is not_member.
    assertAckError(assert, await a.ack("chat message", { roomId: rooms[3]._id, text: "hi" }), "not_member");
    assert.equal((await a.ack("leave room", { roomId: rooms[1]._id })).success, true);
    assert.equal((await a.ack("join room", { roomId: rooms[3]._id })).success, true);
  });

  test("room names: 1 to 16 characters after trimming, over the socket and over HTTP", async () => {
    const a = await connect(fx.url);
    const name16 = uniq("n").padEnd(16, "x");
    const ok = await a.ack("create room", { name: name16 });
    assert.equal(ok.success, true, JSON.stringify(ok));
    assertAckError(assert, await a.ack("create room", { name: `${name16}y` }), "invalid_room_name");
    assertAckError(assert, await a.ack("create room", { name: "   " }), "invalid_room_name");
    const res = await request(`${fx.url}/api/rooms`, { method: "POST", json: { name: uniq("m").padEnd(17, "x") } });
    assertHttpError(assert, res, 400, "invalid_room_name");
    assert.deepEqual(await a.quiet("room created", (r) => r.name !== name16), []);
  });
});

describe("history sizes (--history-limit 3 --max-history-page 5)", () => {
  const fx = useServer({ args: ["--history-limit", "3", "--max-history-page", "5"] });

  test("join and connect histories hold the newest 3, oldest first; HTTP pages are 1 to 5", async () => {
    const a = await connect(fx.url, { query: { username: uniq("a") } });
    const room = (await a.ack("create room", { name: uniq("hist") })).room;
    await a.ack("join room", { roomId: room._id });
    const texts = ["m1", "m2", "m3", "m4", "m5", "m6", "m7"];
    for (const text of texts) {
      assert.equal((await a.ack("chat message", { roomId: room._id, text })).success, true);
      assert.equal((await a.ack("message", { message: text })).success, true);
    }
    const b = await connect(fx.url, { query: { username: uniq("b") } });
    const { history } = await b.ack("join room", { roomId: room._id });
    assert.deepEqual(history.map((m) => m.text), ["m5", "m6", "m7"]);
    assert.deepEqual((await b.waitFor("load")).map((m) => m.message), ["m5", "m6", "m7"]);

    const page = (q) => request(`${fx.url}/api/rooms/${room._id}/messages${q}`);
    // The default page is --history-limit.
    assert.deepEqual((await page("")).body.map((m) => m.text), ["m5", "m6", "m7"]);
    assert.deepEqual((await page("?limit=5")).body.map((m) => m.text), ["m3", "m4", "m5", "m6", "m7"]);
    for (const bad of ["?limit=6", "?limit=0", "?limit=-1", "?limit=abc"]) {
      assertHttpError(assert, await page(bad), 400);
    }
  });
});

describe("presence coalescing (--presence-interval-ms 500)", () => {
  const fx = useServer({ args: ["--presence-interval-ms", "500"] });

  test("10 clients connecting at once get few getOnlineUsers each, and the last carries all 10", async () => {
    const ids = Array.from({ length: 10 }, (_, i) => uniq(`u${i}`));
    const t0 = Date.now();
    const clients = await Promise.all(ids.map((userId) => connect(fx.url, { query: { userId } })));
    const connectedMs = Date.now() - t0;
    await sleep(700); // past the next interval boundary after the last connect
    const elapsed = Date.now() - t0;
    // At most one broadcast per interval in the window, plus each newcomer's own current list.
    const bound = Math.floor(elapsed / 500) + 2;
    for (const [i, c] of clients.entries()) {
      const lists = c.received("getOnlineUsers");
      assert.ok(lists.length >= 1, `client ${i} got a list`);
      assert.ok(
        lists.length <= bound,
        `client ${i}: ${lists.length} getOnlineUsers in ${elapsed} ms (connecting took ${connectedMs} ms), at most ${bound}`,
      );
      assert.deepEqual([...lists.at(-1)].sort(), [...ids].sort(), `client ${i}'s last list carries all 10`);
    }
  });
});

describe("--no-presence-event getOnlineUsers", () => {
  const fx = useServer({ args: ["--no-presence-event", "getOnlineUsers"] });

  test("no getOnlineUsers at all, while `online` still works", async () => {
    const [x, y] = [uniq("x"), uniq("y")];
    const a = await connect(fx.url, { query: { userId: x, username: x } });
    const b = await connect(fx.url, { query: { userId: y, username: y } });
    await a.waitFor("online", (l) => l.includes(x) && l.includes(y));
    await b.waitFor("online", (l) => l.includes(x) && l.includes(y));
    const [atA, atB] = await Promise.all([a.quiet("getOnlineUsers"), b.quiet("getOnlineUsers")]);
    assert.deepEqual([atA, atB], [[], []]);
  });
});

describe("HTTP API rate limit", () => {
  // One core, so the node's budget is one bucket; loopback is limited like any address here.
  const fx = useServer({
    args: ["--cores", "1", "--api-rate-limit", "2", "--api-rate-burst", "4", "--handshake-limit-loopback", "on", "--trusted-proxy", "127.0.0.1/32"],
  });

  test("a burst past the budget gets 429 rate_limited with Retry-After; it refills; addresses are apart; the page is not limited", async () => {
    const get = (headers = {}) => request(`${fx.url}/api/rooms`, { headers });
    const mine = { "x-forwarded-for": "203.0.113.7" };
    const statuses = [];
    for (let i = 0; i < 6; i++) statuses.push((await get(mine)).status);
    assert.deepEqual(statuses.slice(0, 4), [200, 200, 200, 200], `the burst of 4 is served: ${statuses}`);
    const refused = await get(mine);
    assertHttpError(assert, refused, 429, "rate_limited");
    assert.equal(refused.headers["retry-after"], "1");

    // Another client (behind the trusted proxy) has its own budget.
    assert.equal((await get({ "x-forwarded-for": "198.51.100.9" })).status, 200);
    // The web page and the probes are not API requests.
    for (let i = 0; i < 6; i++) {
      assert.equal((await request(`${fx.url}/`, { headers: mine })).status, 200);
      assert.equal((await request(`${fx.url}/healthz`, { headers: mine })).status, 200);
    }
    // 2 per second: after 600 ms a request fits again.
    await sleep(600);
    assert.equal((await get(mine)).status, 200);

    // Each 429 is counted in /metrics; the probes and the page are not API requests.
    const metrics = (await request(`${fx.url}/metrics`)).text;
    const m = /^sockeye_chat_api_rate_limited_total (\d+)$/m.exec(metrics);
    assert.ok(m, metrics);
    assert.ok(Number(m[1]) >= 1, `one 429 at least: ${m[0]}`);
  });
});
