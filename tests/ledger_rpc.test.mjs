// The ledger's Durable Object as the Worker reaches it: JS RPC (`stub.applyOp(json)`, a JSON
// string each way; src/edge/ledger_object.rs) on the built Worker (build/) under workerd. The
// object is the build's own `PaymentLedger` class; the test's module only adds read-outs of its
// storage (`scheduledAlarm`, `authorizations`) and a way to run its alarm handler now
// (`alarmNow`), since its prune interval is five minutes. Rejections are read through a Worker
// of the test's module calling the object (Miniflare's Node-side stubs expect every RPC result to
// be a promise, and `applyOp` answers or throws synchronously).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Miniflare } from 'miniflare';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

const PROBE = `
import { PaymentLedger } from './index.js';
// A Worker calling the object as the paywall does: its answer is the reply, or the rejection's
// text with status 500.
export default {
  async fetch(request, env) {
    const shard = new URL(request.url).searchParams.get('shard');
    try {
      return new Response(await env.LEDGER.getByName(shard).applyOp(await request.text()));
    } catch (e) {
      return new Response(String(e), { status: 500 });
    }
  },
};
export class ProbedLedger extends PaymentLedger {
  scheduledAlarm() { return this.ctx.storage.getAlarm(); }
  authorizations() { return this.ctx.storage.sql.exec('SELECT key FROM authorizations ORDER BY key').toArray().map((r) => r.key); }
  async alarmNow() { await this.alarm(); return this.ctx.storage.getAlarm(); }
  async setAlarmAt(ms) { await this.ctx.storage.setAlarm(ms); }
}
`;

let mf;
let ns;

before(async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'x402-ledger-rpc-'));
  for (const f of ['index.js', 'index_bg.wasm']) symlinkSync(path.join(ROOT, 'build', f), path.join(dir, f));
  writeFileSync(path.join(dir, 'probe.mjs'), PROBE);
  mf = new Miniflare({
    modules: true,
    scriptPath: path.join(dir, 'probe.mjs'),
    modulesRoot: dir,
    modulesRules: [
      { type: 'ESModule', include: ['**/*.js', '**/*.mjs'] },
      { type: 'CompiledWasm', include: ['**/*.wasm'] },
    ],
    compatibilityDate: '2026-07-30',
    compatibilityFlags: ['enable_request_signal'],
    durableObjects: { LEDGER: { className: 'ProbedLedger', useSQLite: true } },
    handleRuntimeStdio(stdout, stderr) { stdout.resume(); stderr.resume(); },
  });
  await mf.ready;
  ns = await mf.getDurableObjectNamespace('LEDGER');
});

after(async () => {
  await mf?.dispose();
});

const reserve = (key, validBefore) => JSON.stringify({ reserve: { key, holder: 'h', route: 'GET /weather', resource: '/weather', signature: 'ab', validBefore, leaseSeconds: 1, create: true } });

test('applyOp answers the JSON reply of an op; an unreadable or oversized op rejects with its reason and changes nothing', async () => {
  const stub = ns.get(ns.idFromName('payer:0x0000000000000000000000000000000000000001'));
  const reply = JSON.parse(await stub.applyOp(reserve('k1', 4_000_000_000)));
  assert.ok(reply.reserved, JSON.stringify(reply));
  const again = JSON.parse(await stub.applyOp(reserve('k1', 4_000_000_000)));
  assert.ok(!again.reserved, `a second reservation of a held key is refused: ${JSON.stringify(again)}`);
  const call = async (op) => {
    const res = await mf.dispatchFetch(`http://probe/?shard=${encodeURIComponent('payer:0x0000000000000000000000000000000000000001')}`, { method: 'POST', body: op });
    return { status: res.status, text: await res.text() };
  };
  const held = await call(reserve('k1', 4_000_000_000));
  assert.equal(held.status, 200, 'a Worker gets the reply through its own stub');
  assert.ok(!JSON.parse(held.text).reserved);
  const unreadable = await call('{"reserve":');
  assert.equal(unreadable.status, 500);
  assert.match(unreadable.text, /^Error: unreadable op/);
  const oversized = await call(`{"payerPasses":null,"pad":"${'x'.repeat(17 * 1024)}"}`);
  assert.equal(oversized.status, 500);
  assert.match(oversized.text, /^Error: op of \d+ bytes is larger than 16384/);
  assert.deepEqual(await stub.authorizations(), ['k1']);
});

test('the first op schedules the prune alarm; the alarm prunes what expired and keeps the rest', async () => {
  const stub = ns.get(ns.idFromName('payer:0x0000000000000000000000000000000000000002'));
  assert.equal(await stub.scheduledAlarm(), null, 'a fresh object has no alarm');
  JSON.parse(await stub.applyOp(reserve('expired', 1000)));
  const scheduled = await stub.scheduledAlarm();
  // Five minutes ahead, not decades (workers-rs reads a bare number as an offset from now).
  assert.ok(scheduled > Date.now() + 60_000 && scheduled < Date.now() + 600_000, `alarm scheduled about five minutes ahead: ${scheduled}`);
  JSON.parse(await stub.applyOp(reserve('live', 4_000_000_000)));
  await new Promise((r) => setTimeout(r, 2100)); // both leases (1 s) lapse
  const next = await stub.alarmNow();
  assert.deepEqual(await stub.authorizations(), ['live'], 'the authorization valid before 1970 is pruned, the live one kept');
  assert.ok(next > Date.now() + 60_000 && next < Date.now() + 600_000, 'records remain: the next prune is scheduled, five minutes ahead');
  // The cache was dropped with the pruned record: the live one still answers as held.
  const held = JSON.parse(await stub.applyOp(reserve('live', 4_000_000_000)));
  assert.ok(held.reserved, `a lapsed lease is reserved again (the record was kept): ${JSON.stringify(held)}`);
});

test('an alarm left decades ahead by the builds that set it as an offset is re-set by the first op', async () => {
  const stub = ns.get(ns.idFromName('payer:0x0000000000000000000000000000000000000003'));
  const decades = Date.now() + 56 * 365 * 24 * 3600 * 1000;
  await stub.setAlarmAt(decades);
  assert.equal(await stub.scheduledAlarm(), decades);
  JSON.parse(await stub.applyOp(reserve('any', 4_000_000_000)));
  const scheduled = await stub.scheduledAlarm();
  assert.ok(scheduled > Date.now() + 60_000 && scheduled < Date.now() + 600_000, `re-set to five minutes ahead: ${scheduled}`);
});
