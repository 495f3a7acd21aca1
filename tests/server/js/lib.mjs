// Shared by ollama_client.mjs and openai_client.mjs: the daemon's address, a sequential check
// runner that prints one line per check, and a few helpers over hearth's own endpoints.
//
// Environment:
//   HEARTH_BASE_URL       the daemon, e.g. http://127.0.0.1:41234 (js_clients_test.cpp sets it)
//   HEARTH_JS_KEEP_GOING  when set, run every check and report all failures at the end instead
//                         of stopping at the first one (for people bringing endpoints up)
//   HEARTH_JS_ONLY        a substring: run only the checks whose name contains it
import assert from 'node:assert/strict';

export { assert };

export const base = process.env.HEARTH_BASE_URL;
if (!base) {
  console.error('HEARTH_BASE_URL is not set: run this through server_tests (JsClients.*), or start ' +
                '`hearth serve` and set HEARTH_BASE_URL=http://127.0.0.1:11434');
  process.exit(2);
}

// A hung request must not hang ctest: the whole script gets this long.
const kWatchdogMs = 120_000;

const checks = [];

// Registers a check; run() executes them in order.
export function check(name, fn) {
  checks.push({ name, fn });
}

export async function run(title) {
  const watchdog = setTimeout(() => {
    console.error(`FAIL ${title}: still running after ${kWatchdogMs / 1000} s (a request hung?)`);
    process.exit(1);
  }, kWatchdogMs);
  watchdog.unref();
  const keepGoing = !!process.env.HEARTH_JS_KEEP_GOING;
  const only = process.env.HEARTH_JS_ONLY;
  const failed = [];
  let passed = 0;
  for (const { name, fn } of checks) {
    if (only && !name.includes(only)) continue;
    const t0 = performance.now();
    try {
      await fn();
      passed++;
      console.log(`ok   ${name} (${Math.round(performance.now() - t0)} ms)`);
    } catch (e) {
      failed.push(name);
      console.log(`FAIL ${name}: ${describe(e)}`);
      if (!keepGoing) {
        console.log(`${title}: stopped at the first failure (${passed} passed before it); ` +
                    'HEARTH_JS_KEEP_GOING=1 runs the rest too');
        process.exit(1);
      }
    }
  }
  clearTimeout(watchdog);
  if (failed.length) {
    console.log(`${title}: ${passed} passed, ${failed.length} failed: ${failed.join(', ')}`);
    process.exit(1);
  }
  console.log(`${title}: all ${passed} checks passed`);
}

// An error as one readable paragraph: the message, the HTTP status and body where the client
// kept them, and the first stack frames inside these scripts.
function describe(e) {
  if (!(e instanceof Error)) return String(e);
  let s = `${e.name}: ${e.message}`;
  if (e.status !== undefined) s += ` [HTTP ${e.status}]`;
  if (e.status_code !== undefined) s += ` [HTTP ${e.status_code}]`;
  if (e.error !== undefined && typeof e.error === 'object') s += ` body: ${JSON.stringify(e.error)}`;
  if (e.cause) s += ` (cause: ${e.cause.message ?? e.cause})`;
  const frames = (e.stack ?? '').split('\n').filter((l) => l.includes('/tests/server/js/') && !l.includes('node_modules'));
  if (frames.length) s += '\n    ' + frames.slice(0, 3).map((l) => l.trim()).join('\n    ');
  return s;
}

// Raw HTTP to the daemon for what no client library covers (metrics, bad bodies).
export async function raw(method, path, body, headers = {}) {
  const res = await fetch(base + path, {
    method,
    headers: { 'Content-Type': 'application/json', ...headers },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.text();
  let json;
  try { json = JSON.parse(text); } catch { json = undefined; }
  return { status: res.status, text, json, headers: res.headers };
}

// The value of `name{labels}` in /metrics; -1 when absent.
export async function metric(nameAndLabels) {
  const text = (await raw('GET', '/metrics')).text;
  for (const line of text.split('\n'))
    if (line.startsWith(nameAndLabels + ' ')) return Number(line.slice(nameAndLabels.length + 1));
  return -1;
}

// Waits (up to 10 s: ctest runs many servers at once on few cores) until the daemon has no
// stream open: a client that went away mid-stream was noticed and its request cancelled.
export async function expectNoStreams() {
  let n = -1;
  for (let i = 0; i < 400; i++) {
    n = await metric('hearth_streams');
    if (n === 0) return;
    await sleep(25);
  }
  assert.fail(`hearth_streams is still ${n} 10 s after the client went away`);
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export function norm(v) {
  let s = 0;
  for (const x of v) s += x * x;
  return Math.sqrt(s);
}

// Fails unless `v` is an array (or typed array) of `n` finite numbers of unit length.
export function assertUnitVector(v, what) {
  assert.ok(Array.isArray(v) || ArrayBuffer.isView(v), `${what}: not an array: ${typeof v}`);
  assert.ok(v.length > 0, `${what}: empty`);
  for (const x of v) assert.ok(Number.isFinite(x), `${what}: not a finite number: ${x}`);
  assert.ok(Math.abs(norm(v) - 1) < 1e-3, `${what}: norm ${norm(v)}, expected 1`);
}

// Expects `promise` to reject; returns the error for further checks.
export async function rejects(promise, what) {
  try {
    const got = await promise;
    assert.fail(`${what}: expected an error, got ${JSON.stringify(got)?.slice(0, 300)}`);
  } catch (e) {
    if (e instanceof assert.AssertionError) throw e;
    return e;
  }
}
