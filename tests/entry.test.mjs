// The entry module (src/edge/entry.mjs) on its own, in Node, over a stand-in for wasm-bindgen's
// bindings: the `fetch` handler passes the call through and marks a trap, the next call
// re-instantiates, and the Durable Object class forwards the wasm class's methods to a wasm-side
// object that is constructed again after a re-instantiation. tests/panic.test.mjs proves the
// same on the real build under workerd; this covers the Durable Object's re-construction, which
// that test sees only through the ledger still answering. The entry's one import from the
// runtime, `DurableObject` of `cloudflare:workers`, is a stand-in here that records its
// constructor's arguments as the runtime's base class keeps them (`this.ctx`, `this.env`).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

// The stand-in bindings: the exports the entry uses, recording what it does.
const BINDINGS = `
export const calls = { resets: 0, constructed: [] };
const state = { criticalError: false, instanceId: 1 };
export function __worker_init_state() { return state; }
export function __wbg_reset_state() { calls.resets++; state.instanceId++; }
export function fetch(request, env, ctx) {
  if (request === 'trap') throw new WebAssembly.RuntimeError('unreachable');
  if (request === 'error') throw new TypeError('not a trap');
  return { request, env, ctx };
}
export class PaymentLedger {
  constructor(state, env) { this.instance = __worker_init_state().instanceId; calls.constructed.push([state, env, this.instance]); }
  applyOp(op) { if (op === 'trap') throw new WebAssembly.RuntimeError('unreachable'); return { op, instance: this.instance }; }
  alarm() { return 'alarm ' + this.instance; }
  free() {}
  __destroy_into_raw() {}
}
`;

// The stand-in for `cloudflare:workers` (Node cannot load the runtime's module).
const RUNTIME = `
export class DurableObject {
  constructor(ctx, env) { this.ctx = ctx; this.env = env; }
}
`;

async function load() {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'x402-entry-'));
  writeFileSync(path.join(dir, 'index.js'), BINDINGS);
  writeFileSync(path.join(dir, 'cloudflare-workers.js'), RUNTIME);
  const source = readFileSync(path.join(ROOT, 'src/edge/entry.mjs'), 'utf8');
  const runtimeImport = "import { DurableObject } from 'cloudflare:workers';";
  assert.equal(source.split(runtimeImport).length, 2, 'the entry imports DurableObject from cloudflare:workers once');
  writeFileSync(path.join(dir, 'entry.mjs'), source.replace(runtimeImport, "import { DurableObject } from './cloudflare-workers.js';"));
  // workerd has a global addEventListener; Node does not.
  globalThis.addEventListener ??= () => {};
  const entry = await import(pathToFileURL(path.join(dir, 'entry.mjs')));
  const bindings = await import(pathToFileURL(path.join(dir, 'index.js')));
  const runtime = await import(pathToFileURL(path.join(dir, 'cloudflare-workers.js')));
  return { entry, bindings, runtime, state: bindings.__worker_init_state() };
}

test('fetch passes the call through; a trap marks the instance and the next call re-instantiates it', async (t) => {
  const { entry, bindings, state } = await load();
  const logged = [];
  t.mock.method(console, 'log', (...a) => logged.push(a.join(' ')));
  t.mock.method(console, 'error', () => {});
  assert.deepEqual(entry.default.fetch('req', 'env', 'ctx'), { request: 'req', env: 'env', ctx: 'ctx' });
  assert.throws(() => entry.default.fetch('error'), TypeError);
  assert.equal(state.criticalError, false, 'an error that is not a trap leaves the instance as it is');
  assert.throws(() => entry.default.fetch('trap'), WebAssembly.RuntimeError);
  assert.equal(state.criticalError, true);
  assert.equal(bindings.calls.resets, 0, 'nothing is reset until the next call');
  assert.deepEqual(entry.default.fetch('next', 'env', 'ctx'), { request: 'next', env: 'env', ctx: 'ctx' });
  assert.equal(bindings.calls.resets, 1);
  assert.equal(state.criticalError, false);
  assert.deepEqual(logged, ['Reinitializing Wasm application']);
});

test('the Durable Object class derives from DurableObject, forwards applyOp and alarm, and constructs its wasm object again after a re-instantiation', async (t) => {
  const { entry, bindings, runtime, state } = await load();
  t.mock.method(console, 'log', () => {});
  t.mock.method(console, 'error', () => {});
  const { PaymentLedger } = entry;
  assert.equal(typeof PaymentLedger.prototype.applyOp, 'function', 'the RPC method is on the prototype');
  assert.equal(typeof PaymentLedger.prototype.alarm, 'function');
  assert.equal(PaymentLedger.prototype.fetch, undefined, 'no fetch handler: the ledger is reached through RPC only');
  assert.equal(PaymentLedger.prototype.free, undefined, "the bindings' own methods are not exposed");
  assert.equal(PaymentLedger.prototype.__destroy_into_raw, undefined);
  const ledger = new PaymentLedger('do-state', 'do-env');
  assert.ok(ledger instanceof runtime.DurableObject, 'derives from the runtime class (what makes RPC callable)');
  assert.equal(ledger.ctx, 'do-state', 'the base class got the constructor arguments');
  assert.equal(ledger.env, 'do-env');
  assert.equal(bindings.calls.constructed.length, 1);
  const first = state.instanceId;
  assert.deepEqual(ledger.applyOp('op1'), { op: 'op1', instance: first });
  assert.equal(ledger.alarm(), `alarm ${first}`);
  assert.equal(bindings.calls.constructed.length, 1, 'the same wasm object serves every call');
  assert.throws(() => ledger.applyOp('trap'), WebAssembly.RuntimeError);
  assert.equal(state.criticalError, true, 'a trap in a Durable Object call marks the instance');
  const after = ledger.applyOp('op2');
  assert.equal(bindings.calls.resets, 1);
  assert.notEqual(after.instance, first, 'served by a wasm object of the new instance');
  assert.deepEqual(bindings.calls.constructed.at(-1), ['do-state', 'do-env', after.instance], 'constructed again with the same arguments');
  assert.equal(ledger.alarm(), `alarm ${after.instance}`, 'the alarm too reaches the new wasm object');
});
