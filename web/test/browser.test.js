// Browser test of the chat page: the real page, served by sockeye, in Debian's Chromium.
//
// Run from web/ with `SOCKEYE_BIN=../target/release/sockeye node --test test/` (tests/browser.rs
// does this with the binary cargo built). It starts `$SOCKEYE_BIN --host 127.0.0.1 --port 0
// --data-dir <temp dir>`, opens two pages, logs in alice and bob by name, joins both to
// `general`, and checks that bob sees alice online, sees her typing, and receives her message.
// Every wait is bounded by WAIT_MS. On failure it saves a screenshot of each page in the temp
// dir and prints the paths; the server is killed in every case.
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { chromium } = require('playwright-core');

const WAIT_MS = 10_000;
const CHROMIUM = '/usr/bin/chromium';
// The flags this machine's closed network needs: no GPU, no QUIC, and none of Chromium's
// background calls home (first-run, component updates, sync) that would hang or stall start.
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
const REPO_ROOT = path.resolve(__dirname, '..', '..');

let tmp;
let server;
let baseUrl;
let context;
const serverOutput = [];
const pageLogs = [];

/** Starts sockeye and resolves to its URL once it prints `sockeye listening on http://...`. */
function startServer(bin, dataDir) {
  return new Promise((resolve, reject) => {
    const args = ['--host', '127.0.0.1', '--port', '0', '--data-dir', dataDir];
    // The repository root as working directory: the server reads
    // web/node_modules/socket.io-client/dist/socket.io.min.js relative to it.
    const child = spawn(bin, args, { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    server = child;
    let stdout = '';
    let settled = false;
    const settle = (fn, value) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      fn(value);
    };
    const timer = setTimeout(() => settle(reject, new Error(
      `${bin} did not print "sockeye listening on http://..." within ${WAIT_MS} ms\n${serverOutput.join('')}`)), WAIT_MS);
    child.stdout.on('data', (chunk) => {
      const text = chunk.toString();
      serverOutput.push(text);
      stdout += text;
      const match = stdout.match(/sockeye listening on (http:\/\/\S+)/);
      if (match) settle(resolve, match[1].replace(/\/$/, ''));
    });
    child.stderr.on('data', (chunk) => serverOutput.push(chunk.toString()));
    child.on('error', (err) => settle(reject, new Error(`could not start ${bin}: ${err.message}`)));
    // 'close', not 'exit': by then everything the server wrote has been read.
    child.on('close', (code, signal) => settle(reject, new Error(
      `${bin} ${args.join(' ')} exited (${signal || code}) before listening\n${serverOutput.join('')}`)));
  });
}

async function stopServer() {
  const child = server;
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
}

// Last resort: whatever happens to this process, the server does not outlive it.
process.on('exit', () => {
  if (server && server.exitCode === null && server.signalCode === null) server.kill('SIGKILL');
});

before(async () => {
  assert.ok(process.env.SOCKEYE_BIN, 'SOCKEYE_BIN is not set: point it at the sockeye binary (tests/browser.rs does)');
  // Relative to where the test was started, not to the server's working directory.
  const bin = path.resolve(process.env.SOCKEYE_BIN);
  assert.ok(fs.existsSync(CHROMIUM), `${CHROMIUM} is missing: apt-get install chromium (tools/test-all.sh does)`);
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sockeye-browser-'));
  const dataDir = path.join(tmp, 'data');
  const profile = path.join(tmp, 'chromium-profile');
  fs.mkdirSync(dataDir);
  fs.mkdirSync(profile);
  baseUrl = await startServer(bin, dataDir);
  // A persistent context is how Playwright takes our own, new and empty, user-data-dir.
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    timeout: WAIT_MS,
  });
  context.setDefaultTimeout(WAIT_MS);
  context.setDefaultNavigationTimeout(WAIT_MS);
});

after(async () => {
  try {
    if (context) await context.close();
  } finally {
    await stopServer();
  }
});

async function openPage(name, viewport) {
  const page = await context.newPage();
  if (viewport) await page.setViewportSize(viewport);
  page.on('console', (msg) => {
    if (msg.type() === 'error' || msg.type() === 'warning') pageLogs.push(`[${name} console.${msg.type()}] ${msg.text()}`);
  });
  page.on('pageerror', (err) => pageLogs.push(`[${name} pageerror] ${err.message}`));
  page.on('requestfailed', (req) => pageLogs.push(`[${name} requestfailed] ${req.url()} ${req.failure()?.errorText}`));
  return page;
}

async function logInByName(page, name) {
  await page.goto(`${baseUrl}/`);
  await page.locator('#login-username').fill(name);
  await page.locator('#login-name-submit').click();
  await page.locator('#chat').waitFor({ state: 'visible' });
  assert.equal(await page.locator('#me').textContent(), name);
}

async function joinGeneral(page) {
  const general = page.locator('[data-testid="room"][data-room-name="general"]');
  await general.locator('button').click();
  await page.locator('[data-testid="room"][data-room-name="general"][data-joined="true"]').waitFor();
  await page.locator('#conversation-title', { hasText: '# general' }).waitFor();
  await page.locator('#message-input:enabled').waitFor();
}

function exactly(text) {
  return new RegExp(`^${text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`);
}

/** The messages in a page whose text is exactly `text`. */
function messagesWithText(page, text) {
  return page.locator('[data-testid="message"]', {
    has: page.locator('[data-testid="message-text"]', { hasText: exactly(text) }),
  });
}

test('two users chat in general: presence, typing, delivery', { timeout: 6 * WAIT_MS }, async () => {
  const alice = await openPage('alice');
  // bob's page is phone-sized: the page must work on a narrow screen.
  const bob = await openPage('bob', { width: 390, height: 760 });
  try {
    await logInByName(alice, 'alice');
    await logInByName(bob, 'bob');

    // Presence: bob sees alice in the online list.
    await bob.locator('[data-testid="online-user"][data-user="alice"]').waitFor();

    await joinGeneral(alice);
    await joinGeneral(bob);

    // Typing: alice types, bob sees her typing indicator.
    const text = `hello from alice <b>${Date.now()}</b> & "friends"`;
    await alice.locator('#message-input').pressSequentially(text, { delay: 5 });
    await bob.locator('#typing-indicator', { hasText: 'alice is typing' }).waitFor();

    // Delivery: alice sends; the message shows, once, in both pages, as alice's.
    await alice.locator('#message-input').press('Enter');
    for (const page of [bob, alice]) {
      const message = messagesWithText(page, text);
      await message.waitFor();
      assert.equal(await message.count(), 1, 'the message shows exactly once');
      assert.equal(await message.getAttribute('data-user'), 'alice');
      assert.equal(await message.locator('[data-testid="message-user"]').textContent(), 'alice');
    }
    // The text was shown as text: no <b> element came out of it.
    assert.equal(await bob.locator('[data-testid="message-text"] b').count(), 0);
    assert.equal(await alice.locator('#send-error').isHidden(), true, 'alice saw no send error');
    assert.equal(await alice.locator('#message-input').inputValue(), '', 'the input was cleared');
  } catch (err) {
    for (const [name, page] of [['alice', alice], ['bob', bob]]) {
      const file = path.join(tmp, `failure-${name}.png`);
      try {
        await page.screenshot({ path: file, fullPage: true, timeout: WAIT_MS });
        console.log(`screenshot of ${name}'s page: ${file}`);
      } catch (shotErr) {
        console.log(`no screenshot of ${name}'s page: ${shotErr.message}`);
      }
    }
    if (pageLogs.length) console.log(`page logs:\n${pageLogs.join('\n')}`);
    console.log(`server output:\n${serverOutput.join('').slice(-4000)}`);
    throw err;
  }
  // Only a passing run cleans up; a failing one keeps its screenshots and data.
  await context.close();
  context = null;
  await stopServer();
  fs.rmSync(tmp, { recursive: true, force: true });
});
