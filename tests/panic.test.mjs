// A panic in one request never breaks the next: the Worker built with `--features panic-test`
// (build-panic/, made by scripts/test.sh: `bash scripts/build.sh --out-dir build-panic --features
// panic-test`) panics on demand, before any I/O and after some; the requests after it are
// served by a fresh wasm instance, challenges and paid requests alike, with the ledger's
// exactly-once record intact.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';

import { KEYS, ROOT, balanceOf, startStack, startWorker } from './support/stack.mjs';
import { paymentHeader, unb64 } from './support/pay.mjs';

let stack;
let worker;
before(async () => {
  assert.ok(existsSync(path.join(ROOT, 'build-panic/index.js')), 'build-panic/ is missing: run scripts/test.sh (it builds it)');
  const bundle = readFileSync(path.join(ROOT, 'build-panic/index.js'), 'utf8');
  assert.ok(bundle.includes('Reinitializing Wasm application') && !bundle.includes('WorkerEntrypoint'), 'the panic build has the entry the release build ships (src/edge/entry.mjs, bundled by scripts/build.sh)');
  stack = await startStack();
  worker = await startWorker({ originUrl: stack.origin.url, facilitatorUrl: stack.facilitator.url, payTo: stack.payTo, buildDir: 'build-panic' });
});
after(async () => {
  await worker?.stop();
  await stack?.stop();
});

async function challenge() {
  const res = await fetch(`${worker.url}/weather`);
  await res.arrayBuffer();
  assert.equal(res.status, 402);
  return unb64(res.headers.get('payment-required'));
}

for (const trigger of ['/__panic', '/__panic_after_io']) {
  test(`a panic (${trigger}) fails that request only; the next ones are served correctly`, async () => {
    const before = await challenge();
    const origin = stack.origin.requests.length;
    const broken = await fetch(`${worker.url}${trigger}`).catch((e) => e);
    const status = broken instanceof Error ? 'network error' : broken.status;
    if (!(broken instanceof Error)) await broken.arrayBuffer();
    assert.notEqual(status, 200, 'the panicking request fails');
    assert.equal(stack.origin.requests.length, origin, 'nothing was forwarded');
    assert.ok(worker.logs.some((l) => l.includes('forced panic')), 'the panic is logged');
    const reinitialised = worker.logs.filter((l) => l.includes('Reinitializing Wasm application')).length;

    // The next requests: the same challenge, and a paid request settled exactly once.
    assert.deepEqual(await challenge(), before);
    assert.equal(worker.logs.filter((l) => l.includes('Reinitializing Wasm application')).length, reinitialised + 1, 'the entry re-instantiated the wasm for the next request');
    const requirements = before.accepts[0];
    const header = await paymentHeader(KEYS.payer, requirements);
    const balance = await balanceOf(stack.rpcUrl, stack.payer);
    const paid = await fetch(`${worker.url}/weather`, { headers: { 'payment-signature': header } });
    assert.equal(paid.status, 200, await paid.clone().text());
    assert.equal((await paid.json()).city, 'Lisbon');
    assert.equal(await balanceOf(stack.rpcUrl, stack.payer), balance - BigInt(requirements.amount));
    const replay = await fetch(`${worker.url}/weather`, { headers: { 'payment-signature': header } });
    await replay.arrayBuffer();
    assert.equal(replay.status, 402, 'the ledger still knows the authorization was spent');
  });
}
