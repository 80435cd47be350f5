// The main job, end to end: the official @x402/fetch v2 client pays the built Worker (Miniflare)
// on a real local chain through the official facilitator logic; balances move on chain.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';

import { KEYS, balanceOf, startStack, startWorker } from './support/stack.mjs';
import { decodePaymentResponseHeader, payingFetch } from './support/client.mjs';
import { unb64 } from './support/pay.mjs';

let stack;
let worker;

before(async () => {
  stack = await startStack();
  worker = await startWorker({ originUrl: stack.origin.url, facilitatorUrl: stack.facilitator.url, payTo: stack.payTo });
});
after(async () => {
  await worker?.stop();
  await stack?.stop();
});

test('the official v2 client pays a priced route; balances move by exactly the price; the session reopens only that route', async () => {
  const plain = await fetch(`${worker.url}/premium/report`);
  assert.equal(plain.status, 402);
  const required = unb64(plain.headers.get('payment-required'));
  const price = BigInt(required.accepts[0].amount);
  assert.equal(price, 50000n);

  const payerBefore = await balanceOf(stack.rpcUrl, stack.payer);
  const payToBefore = await balanceOf(stack.rpcUrl, stack.payTo);
  const calls = { ...stack.facilitator.calls };

  const pay = payingFetch(KEYS.payer);
  const res = await pay(`${worker.url}/premium/report`);
  assert.equal(res.status, 200);
  const body = await res.json();
  assert.equal(body.secret, 'premium content');
  const settled = decodePaymentResponseHeader(res.headers.get('payment-response'));
  assert.equal(settled.success, true);
  assert.equal(settled.network, 'eip155:84532');
  assert.equal(settled.payer, stack.payer);
  assert.match(settled.transaction, /^0x[0-9a-f]{64}$/);

  assert.equal(await balanceOf(stack.rpcUrl, stack.payer), payerBefore - price);
  assert.equal(await balanceOf(stack.rpcUrl, stack.payTo), payToBefore + price);
  assert.equal(stack.facilitator.calls.settle, calls.settle + 1, 'one settle');
  assert.equal(stack.facilitator.calls.verify, calls.verify, 'no verify round trip');

  const token = res.headers.get('x402-session');
  assert.ok(token);
  const again = await fetch(`${worker.url}/premium/other`, { headers: { 'x402-session': token } });
  assert.equal(again.status, 200);
  assert.equal((await again.json()).report, '/premium/other');
  assert.equal(await balanceOf(stack.rpcUrl, stack.payer), payerBefore - price, 'session hit is free');

  const elsewhere = await fetch(`${worker.url}/weather`, { headers: { 'x402-session': token } });
  assert.equal(elsewhere.status, 402);
  await elsewhere.arrayBuffer();
});
