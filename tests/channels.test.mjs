// Payment channels (x402 `batch-settlement`, docs/channels.md) on the real path: the built Worker
// in Miniflare in front of a plain HTTP origin, the official @x402/evm batch-settlement client
// paying through @x402/fetch, the facilitator over the official batch-settlement facilitator
// scheme, and the escrow on the local chain. Balances are read from the chain; origin runs and
// facilitator calls are counted.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';

import { wrapFetchWithPayment } from '@x402/fetch';
import { decodePaymentRequiredHeader, decodePaymentResponseHeader } from '@x402/core/http';
import { signVoucher } from '@x402/evm/batch-settlement/client';

import { BATCH_ESCROW, KEYS, NETWORK, address, balanceOf, batchClient, readChannel, readReceiver, startStack, startWorker } from './support/stack.mjs';

const PRICE = 10_000n; // $0.01 in USDC atomic units
const runs = { item: 0 };
const ctx = {};

async function startOrigin() {
  const server = http.createServer((req, res) => {
    runs.item += 1;
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ item: runs.item, path: req.url }));
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${server.address().port}`, stop: () => new Promise((r) => { server.closeAllConnections?.(); server.close(() => r()); }) };
}

before(async () => {
  ctx.stack = await startStack();
  ctx.origin = await startOrigin();
  ctx.worker = await startWorker({
    originUrl: ctx.origin.url, facilitatorUrl: ctx.stack.facilitator.url, payTo: ctx.stack.payTo,
    routes: [{ route: 'GET /item', accepts: [{ scheme: 'batch-settlement', price: '$0.01', minDeposit: '$1' }] }],
    extraBindings: { ...ctx.stack.workerBindings, RECEIVER_AUTHORIZER: ctx.stack.receiverAuthorizer, CHANNEL_CLAIM_VOUCHERS: '100' },
  });
});

after(async () => {
  await ctx.worker?.stop();
  await ctx.origin?.stop();
  await ctx.stack?.stop();
});

const calls = () => ({ ...ctx.stack.facilitator.calls });
const kinds = (from) => ctx.stack.facilitator.bodies.slice(from).map((b) => `${b.path}:${b.body.paymentPayload.payload.type}`);

async function offer() {
  const res = await fetch(`${ctx.worker.url}/item`);
  assert.equal(res.status, 402);
  await res.arrayBuffer();
  return decodePaymentRequiredHeader(res.headers.get('payment-required')).accepts[0];
}

async function until(check, what, ms = 20_000) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.fail(`timed out waiting for ${what}`);
}

let channelId;
let payerClient; // the official client of the first test: it tracks the channel in memory

test('100 paid requests on one channel: one deposit, no facilitator call for the vouchers, and the claim moves exactly 100 × price', async () => {
  const req = await offer();
  assert.equal(req.scheme, 'batch-settlement');
  assert.equal(req.extra.receiverAuthorizer, ctx.stack.receiverAuthorizer);
  assert.equal(req.extra.minDeposit, '1000000');
  const payer0 = await balanceOf(ctx.stack.rpcUrl, ctx.stack.payer);
  const payTo0 = await balanceOf(ctx.stack.rpcUrl, ctx.stack.payTo);
  payerClient = batchClient(KEYS.payer);
  const paidFetch = wrapFetchWithPayment(fetch, payerClient.client);
  const bodies0 = ctx.stack.facilitator.bodies.length;
  const ran = runs.item;
  let afterFirst;
  for (let i = 1; i <= 100; i++) {
    const res = await paidFetch(`${ctx.worker.url}/item`);
    assert.equal(res.status, 200, await res.clone().text());
    await res.arrayBuffer();
    const receipt = decodePaymentResponseHeader(res.headers.get('payment-response'));
    assert.equal(receipt.success, true);
    assert.equal(receipt.extra.channelState.chargedCumulativeAmount, String(BigInt(i) * PRICE));
    if (i === 1) {
      channelId = receipt.extra.channelState.channelId;
      assert.match(receipt.transaction, /^0x[0-9a-f]{64}$/, 'the deposit names its transaction');
      afterFirst = ctx.stack.facilitator.bodies.length;
    }
    if (i === 99) {
      assert.deepEqual(kinds(afterFirst), [], 'vouchers 2..99: no facilitator call');
    }
  }
  assert.equal(runs.item, ran + 100, 'the origin ran once per paid request');
  assert.deepEqual(kinds(bodies0).slice(0, 2), ['verify:deposit', 'settle:deposit']);
  // The 100th voucher makes the claim due: it runs after the answer, off the request path.
  await until(async () => (await readChannel(ctx.stack.rpcUrl, channelId)).totalClaimed === 100n * PRICE, 'the claim');
  await until(async () => (await balanceOf(ctx.stack.rpcUrl, ctx.stack.payTo)) - payTo0 === 100n * PRICE, 'the sweep to payTo');
  assert.deepEqual(kinds(afterFirst), ['settle:claim', 'settle:settle']);
  assert.deepEqual(await readReceiver(ctx.stack.rpcUrl, ctx.stack.payTo), { totalClaimed: 100n * PRICE, totalSettled: 100n * PRICE });
  assert.equal(payer0 - (await balanceOf(ctx.stack.rpcUrl, ctx.stack.payer)), 1_000_000n, 'the payer deposited once');
  assert.ok(ctx.worker.logs.some((l) => l.includes('"x402":"claim"') && l.includes('"ok":true')), 'the claim is logged');
});

test('replayed and concurrent copies of one voucher run the origin once; beyond the deposit and forged vouchers are refused locally', async () => {
  assert.ok(channelId, 'needs the channel of the first test');
  const req = await offer();
  const { signer } = batchClient(KEYS.payer);
  const channel = await readChannel(ctx.stack.rpcUrl, channelId);
  const deposit = ctx.stack.facilitator.bodies.find((b) => b.path === 'settle' && b.body.paymentPayload.payload.type === 'deposit' && b.body.paymentPayload.payload.voucher.channelId === channelId).body.paymentPayload.payload;
  const headerFor = async (max, who = signer) => {
    const voucher = await signVoucher(who, channelId, String(max), NETWORK);
    const payload = { x402Version: 2, resource: { url: `${ctx.worker.url}/item` }, accepted: req, payload: { type: 'voucher', channelConfig: deposit.channelConfig, voucher } };
    return Buffer.from(JSON.stringify(payload)).toString('base64');
  };
  // The whole deposit is charged (100 × price): one more is beyond it.
  assert.equal(channel.balance, 100n * PRICE);
  const bodies0 = ctx.stack.facilitator.bodies.length;
  const ran = runs.item;
  const beyond = await fetch(`${ctx.worker.url}/item`, { headers: { 'payment-signature': await headerFor(101n * PRICE) } });
  assert.equal(beyond.status, 402);
  assert.match(decodePaymentRequiredHeader(beyond.headers.get('payment-required')).error, /cumulative_exceeds_balance/);
  const forged = await fetch(`${ctx.worker.url}/item`, { headers: { 'payment-signature': await headerFor(101n * PRICE, batchClient(KEYS.payer2).signer) } });
  assert.equal(forged.status, 402);
  assert.match(decodePaymentRequiredHeader(forged.headers.get('payment-required')).error, /voucher_signature/);
  // A replay of the last voucher: the corrective 402 with the channel's state, nothing run.
  const replay = await fetch(`${ctx.worker.url}/item`, { headers: { 'payment-signature': await headerFor(100n * PRICE) } });
  assert.equal(replay.status, 402);
  const corrective = decodePaymentRequiredHeader(replay.headers.get('payment-required'));
  assert.equal(corrective.error, 'invalid_batch_settlement_evm_cumulative_amount_mismatch');
  assert.equal(corrective.accepts[0].extra.channelState.chargedCumulativeAmount, String(100n * PRICE));
  assert.equal(corrective.accepts[0].extra.voucherState.signedMaxClaimable, String(100n * PRICE));
  assert.equal(runs.item, ran, 'nothing ran');
  assert.deepEqual(kinds(bodies0), [], 'all refused without the facilitator');
  await Promise.all([beyond, forged, replay].map((r) => r.arrayBuffer()));

  // A top-up by the official client, then 4 concurrent copies of one voucher: the origin runs once.
  const res = await wrapFetchWithPayment(fetch, payerClient.client)(`${ctx.worker.url}/item`);
  assert.equal(res.status, 200, await res.clone().text());
  await res.arrayBuffer();
  assert.deepEqual(kinds(bodies0), ['verify:deposit', 'settle:deposit'], 'a top-up deposit');
  const ran2 = runs.item;
  const h = await headerFor(102n * PRICE);
  const copies = await Promise.all([0, 1, 2, 3].map(() => fetch(`${ctx.worker.url}/item`, { headers: { 'payment-signature': h } })));
  const statuses = copies.map((r) => r.status).sort();
  await Promise.all(copies.map((r) => r.arrayBuffer()));
  assert.equal(statuses.filter((s) => s === 200).length, 1, String(statuses));
  assert.ok(statuses.every((s) => [200, 402, 409].includes(s)), String(statuses));
  assert.equal(runs.item, ran2 + 1, 'the origin ran once');
  const again = await fetch(`${ctx.worker.url}/item`, { headers: { 'payment-signature': h } });
  assert.equal(again.status, 402);
  await again.arrayBuffer();
  assert.equal(runs.item, ran2 + 1);
  assert.deepEqual(kinds(bodies0).slice(2), [], 'no facilitator call for the vouchers');
  const escrow = await balanceOf(ctx.stack.rpcUrl, BATCH_ESCROW);
  assert.ok(escrow > 0n);
});

test('a cooperative refund by the official client claims what was charged and returns the rest of the deposit, without the origin', async () => {
  const { client, scheme } = batchClient(KEYS.payer2);
  const payer = address(KEYS.payer2);
  const before = await balanceOf(ctx.stack.rpcUrl, payer);
  const claimed0 = (await readReceiver(ctx.stack.rpcUrl, ctx.stack.payTo)).totalClaimed;
  const paidFetch = wrapFetchWithPayment(fetch, client);
  for (let i = 0; i < 3; i++) {
    const res = await paidFetch(`${ctx.worker.url}/item`);
    assert.equal(res.status, 200, await res.clone().text());
    await res.arrayBuffer();
  }
  const ran = runs.item;
  const bodies0 = ctx.stack.facilitator.bodies.length;
  const receipt = await scheme.refund(`${ctx.worker.url}/item`);
  assert.equal(receipt.success, true, JSON.stringify(receipt));
  assert.equal(runs.item, ran, 'the refund did not run the origin');
  assert.deepEqual(kinds(bodies0), ['settle:refund']);
  const refund = ctx.stack.facilitator.bodies.at(-1).body.paymentPayload.payload;
  assert.equal(refund.claims[0].totalClaimed, String(3n * PRICE), 'what was charged is claimed with the refund');
  assert.equal(before - (await balanceOf(ctx.stack.rpcUrl, payer)), 3n * PRICE, 'the payer paid exactly 3 × price in the end');
  assert.equal((await readReceiver(ctx.stack.rpcUrl, ctx.stack.payTo)).totalClaimed - claimed0, 3n * PRICE);
});

test('an idle channel is claimed by its shard\'s alarm once its oldest charge is CHANNEL_CLAIM_SECONDS old, with no further request', async () => {
  // Another Worker paying to another receiver: a fresh channel for the same payer.
  const receiver = '0x14dC79964da2C08b23698B3D3cc7Ca32193d9955';
  const worker = await startWorker({
    originUrl: ctx.origin.url, facilitatorUrl: ctx.stack.facilitator.url, payTo: receiver,
    routes: [{ route: 'GET /item', accepts: [{ scheme: 'batch-settlement', price: '$0.01' }] }],
    extraBindings: { ...ctx.stack.workerBindings, RECEIVER_AUTHORIZER: ctx.stack.receiverAuthorizer, CHANNEL_CLAIM_SECONDS: '2' },
  });
  try {
    const receiver0 = await balanceOf(ctx.stack.rpcUrl, receiver);
    const paidFetch = wrapFetchWithPayment(fetch, batchClient(KEYS.payer).client);
    let id;
    for (let i = 0; i < 3; i++) {
      const res = await paidFetch(`${worker.url}/item`);
      assert.equal(res.status, 200, await res.clone().text());
      id = decodePaymentResponseHeader(res.headers.get('payment-response')).extra.channelState.channelId;
      await res.arrayBuffer();
    }
    const bodies0 = ctx.stack.facilitator.bodies.length;
    assert.equal((await readChannel(ctx.stack.rpcUrl, id)).totalClaimed, 0n, 'three vouchers: not due by count');
    await until(async () => (await readChannel(ctx.stack.rpcUrl, id)).totalClaimed === 3n * PRICE, `the alarm's claim; the Worker logged:\n${worker.logs.filter((l) => !l.includes('"decision"')).join('\n')}`, 20_000);
    await until(async () => (await balanceOf(ctx.stack.rpcUrl, receiver)) - receiver0 === 3n * PRICE, 'the sweep to payTo', 20_000);
    assert.deepEqual(kinds(bodies0), ['settle:claim', 'settle:settle']);
    assert.ok(worker.logs.some((l) => l.includes('"x402":"claim"') && l.includes('"ok":true')));
  } finally {
    await worker.stop();
  }
});
