// The main job, end to end: the official clients — @x402/fetch (v2) and the legacy x402-fetch
// 1.2.0 (v1) — pay the built Worker (Miniflare) on a real local chain through the official
// facilitator logic; balances move on chain. The facilitator requires a CDP JWT (Ed25519 key)
// on every call, as CDP's mainnet facilitator does.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { KEYS, address, balanceOf, startWorker } from './support/stack.mjs';
import { decodePaymentResponseHeader, decodeXPaymentResponse, payingFetch, payingFetchV1 } from './support/client.mjs';
import { unb64 } from './support/pay.mjs';
import { useStackAndWorker } from './support/suite.mjs';

const ctx = useStackAndWorker({}, { cdp: 'ed25519' });

test('the official v2 client pays a priced route; balances move by exactly the price; the pass it sold reopens only that route', async () => {
  const plain = await fetch(`${ctx.worker.url}/premium/report`);
  assert.equal(plain.status, 402);
  const required = unb64(plain.headers.get('payment-required'));
  const price = BigInt(required.accepts[0].amount);
  assert.equal(price, 50000n);

  const payerBefore = await balanceOf(ctx.stack.rpcUrl, ctx.stack.payer);
  const payToBefore = await balanceOf(ctx.stack.rpcUrl, ctx.stack.payTo);
  const calls = { ...ctx.stack.facilitator.calls };

  const pay = payingFetch(KEYS.payer);
  const res = await pay(`${ctx.worker.url}/premium/report`);
  assert.equal(res.status, 200);
  const body = await res.json();
  assert.equal(body.secret, 'premium content');
  const settled = decodePaymentResponseHeader(res.headers.get('payment-response'));
  assert.equal(settled.success, true);
  assert.equal(settled.network, 'eip155:84532');
  assert.equal(settled.payer, ctx.stack.payer);
  assert.match(settled.transaction, /^0x[0-9a-f]{64}$/);

  assert.equal(await balanceOf(ctx.stack.rpcUrl, ctx.stack.payer), payerBefore - price);
  assert.equal(await balanceOf(ctx.stack.rpcUrl, ctx.stack.payTo), payToBefore + price);
  assert.equal(ctx.stack.facilitator.calls.settle, calls.settle + 1, 'one settle');
  assert.equal(ctx.stack.facilitator.calls.verify, calls.verify + 1, 'a first-time payer is checked with /verify before the origin runs');
  assert.deepEqual(ctx.stack.facilitator.refusals, [], 'every facilitator call carried a valid CDP JWT');
  assert.deepEqual(ctx.stack.facilitator.jwts.map((j) => j.claims.uris[0].replace(/127\.0\.0\.1:\d+/, 'HOST')), ['POST HOST/verify', 'POST HOST/settle']);

  const token = res.headers.get('x402-pass');
  assert.ok(token);
  const again = await fetch(`${ctx.worker.url}/premium/other`, { headers: { 'x402-pass': token } });
  assert.equal(again.status, 200);
  assert.equal((await again.json()).report, '/premium/other');
  assert.equal(await balanceOf(ctx.stack.rpcUrl, ctx.stack.payer), payerBefore - price, 'pass hit is free');

  const elsewhere = await fetch(`${ctx.worker.url}/weather`, { headers: { 'x402-pass': token } });
  assert.equal(elsewhere.status, 402);
  await elsewhere.arrayBuffer();
});

test('the legacy v1 client pays the same route with X-PAYMENT and gets X-PAYMENT-RESPONSE', async () => {
  const payerBefore = await balanceOf(ctx.stack.rpcUrl, ctx.stack.payer);
  const payToBefore = await balanceOf(ctx.stack.rpcUrl, ctx.stack.payTo);
  const settles = ctx.stack.facilitator.calls.settle;
  const res = await payingFetchV1(KEYS.payer, ctx.stack.rpcUrl)(`${ctx.worker.url}/premium/v1-report`);
  assert.equal(res.status, 200);
  assert.equal((await res.json()).report, '/premium/v1-report');
  assert.equal(res.headers.get('payment-response'), null);
  const settled = decodeXPaymentResponse(res.headers.get('x-payment-response'));
  assert.equal(settled.success, true);
  assert.equal(settled.network, 'base-sepolia');
  assert.equal(settled.payer, ctx.stack.payer);
  assert.match(settled.transaction, /^0x[0-9a-f]{64}$/);
  assert.equal(await balanceOf(ctx.stack.rpcUrl, ctx.stack.payer), payerBefore - 50000n);
  assert.equal(await balanceOf(ctx.stack.rpcUrl, ctx.stack.payTo), payToBefore + 50000n);
  assert.equal(ctx.stack.facilitator.calls.settle, settles + 1);
  const sent = ctx.stack.facilitator.bodies.at(-1).body;
  assert.equal(sent.x402Version, 1);
  assert.equal(sent.paymentRequirements.maxAmountRequired, '50000');
  assert.equal(sent.paymentRequirements.resource, `${ctx.worker.url}/premium/v1-report`);
});

test('v1 and v2 clients both pay a route with several payment options', async () => {
  const multi = await startWorker({
    originUrl: ctx.stack.origin.url, facilitatorUrl: ctx.stack.facilitator.url, payTo: ctx.stack.payTo, extraBindings: ctx.stack.workerBindings,
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
    for (const pay of [payingFetch(KEYS.payer), payingFetchV1(KEYS.payer, ctx.stack.rpcUrl)]) {
      const before = await balanceOf(ctx.stack.rpcUrl, address(KEYS.payer2));
      const res = await pay(`${multi.url}/weather`);
      assert.equal(res.status, 200);
      await res.json();
      assert.equal(await balanceOf(ctx.stack.rpcUrl, address(KEYS.payer2)), before + 20000n, 'the per-option payTo received the price');
    }
  } finally {
    await multi.stop();
  }
});
