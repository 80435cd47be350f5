// The main job, end to end: the official clients — @x402/fetch (v2) and the legacy x402-fetch
// 1.2.0 (v1) — pay the built Worker (Miniflare) on a real local chain through the official
// facilitator logic; balances move on chain.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';

import { KEYS, address, balanceOf, startStack, startWorker } from './support/stack.mjs';
import { decodePaymentResponseHeader, decodeXPaymentResponse, payingFetch, payingFetchV1 } from './support/client.mjs';
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

test('the legacy v1 client pays the same route with X-PAYMENT and gets X-PAYMENT-RESPONSE', async () => {
  const payerBefore = await balanceOf(stack.rpcUrl, stack.payer);
  const payToBefore = await balanceOf(stack.rpcUrl, stack.payTo);
  const settles = stack.facilitator.calls.settle;
  const res = await payingFetchV1(KEYS.payer, stack.rpcUrl)(`${worker.url}/premium/v1-report`);
  assert.equal(res.status, 200);
  assert.equal((await res.json()).report, '/premium/v1-report');
  assert.equal(res.headers.get('payment-response'), null);
  const settled = decodeXPaymentResponse(res.headers.get('x-payment-response'));
  assert.equal(settled.success, true);
  assert.equal(settled.network, 'base-sepolia');
  assert.equal(settled.payer, stack.payer);
  assert.match(settled.transaction, /^0x[0-9a-f]{64}$/);
  assert.equal(await balanceOf(stack.rpcUrl, stack.payer), payerBefore - 50000n);
  assert.equal(await balanceOf(stack.rpcUrl, stack.payTo), payToBefore + 50000n);
  assert.equal(stack.facilitator.calls.settle, settles + 1);
  const sent = stack.facilitator.bodies.at(-1).body;
  assert.equal(sent.x402Version, 1);
  assert.equal(sent.paymentRequirements.maxAmountRequired, '50000');
  assert.equal(sent.paymentRequirements.resource, `${worker.url}/premium/v1-report`);
});

test('v1 and v2 clients both pay a route with several payment options', async () => {
  const multi = await startWorker({
    originUrl: stack.origin.url, facilitatorUrl: stack.facilitator.url, payTo: stack.payTo,
    routes: [{ route: 'GET /weather', description: 'multi', accepts: [
      { price: '$0.03', network: 'eip155:8453' },
      { price: '$0.02', payTo: address(KEYS.payer2) },
    ] }],
  });
  try {
    const plain = await fetch(`${multi.url}/weather`);
    const header = unb64(plain.headers.get('payment-required'));
    assert.deepEqual(header.accepts.map((a) => [a.network, a.amount]), [['eip155:8453', '30000'], ['eip155:84532', '20000']]);
    const body = await plain.json();
    assert.equal(body.x402Version, 1);
    assert.deepEqual(body.accepts.map((a) => [a.network, a.maxAmountRequired]), [['base', '30000'], ['base-sepolia', '20000']]);
    for (const pay of [payingFetch(KEYS.payer), payingFetchV1(KEYS.payer, stack.rpcUrl)]) {
      const before = await balanceOf(stack.rpcUrl, address(KEYS.payer2));
      const res = await pay(`${multi.url}/weather`);
      assert.equal(res.status, 200);
      await res.json();
      assert.equal(await balanceOf(stack.rpcUrl, address(KEYS.payer2)), before + 20000n, 'the per-option payTo received the price');
    }
  } finally {
    await multi.stop();
  }
});
