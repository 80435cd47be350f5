// Metered prices (x402 `upto`, Permit2) on the real path: the built Worker in Miniflare in front
// of a seller's API written for @x402/hono's `upto` (its handlers report what they used with
// `setSettlementOverrides`), the official upto client paying through @x402/fetch, the official
// upto facilitator, Permit2 and the x402 upto proxy on the local chain. Balances, origin runs and
// facilitator calls are counted.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';

import { Hono } from 'hono';
import { paymentMiddleware, setSettlementOverrides } from '@x402/hono';
import { x402ResourceServer, HTTPFacilitatorClient } from '@x402/core/server';
import { UptoEvmScheme as ServerUptoEvm } from '@x402/evm/upto/server';
import { decodePaymentRequiredHeader, decodePaymentResponseHeader } from '@x402/core/http';

import { KEYS, NETWORK, address, balanceOf, permit2Allowance, permit2NonceUsed, serveApp, startStack, startWorker, uptoPayment } from './support/stack.mjs';
import { payingFetch } from './support/client.mjs';

const MAX = 50_000n; // $0.05 of the 6-decimal test USDC
const METER = { json: 'usage.total_tokens', unit: '$0.000003' }; // 3 atomic units per token
const ROUTES = [
  { route: 'GET /report', scheme: 'upto', price: '$0.05', description: 'The origin reports what it used' },
  { route: 'GET /tokens', scheme: 'upto', price: '$0.05', meter: METER },
  { route: 'GET /stream', scheme: 'upto', price: '$0.05', meter: METER },
  { route: 'GET /bytes', scheme: 'upto', price: '$0.05', meter: { bytes: '$0.000002' } },
  { route: 'GET /broken', scheme: 'upto', price: '$0.05' },
  { route: 'GET /over', scheme: 'upto', price: '$0.05' },
  { route: 'GET /sponsored', scheme: 'upto', price: '$0.05', gasSponsoring: 'eip2612' },
  { route: 'GET /slow-bytes', scheme: 'upto', price: '$0.05', meter: { bytes: '$0.000002' } },
  { route: 'GET /slow-stream', scheme: 'upto', price: '$0.05', meter: METER },
];
// The Worker's origin time limit, in seconds; the slow routes' bodies take longer than that.
const ORIGIN_TIMEOUT_SECONDS = 3;
const SLOW_BODY_MS = (ORIGIN_TIMEOUT_SECONDS + 4) * 1000;
const STREAM = 'data: {"delta":"he"}\n\ndata: {"delta":"llo"}\n\ndata: {"usage":{"total_tokens":9}}\n\ndata: [DONE]\n\n';

/** The seller's API as written for @x402/hono `upto`; `runs` counts each handler's runs. */
function sellerApp(runs) {
  const app = new Hono();
  const count = (name) => { runs[name] = (runs[name] ?? 0) + 1; };
  app.get('/report', (c) => {
    count('report');
    const used = c.req.query('used') ?? '1234';
    setSettlementOverrides(c, { amount: used });
    return c.json({ used });
  });
  app.get('/tokens', (c) => {
    count('tokens');
    return c.json({ text: 'hello', usage: { total_tokens: 21 } });
  });
  app.get('/stream', () => {
    count('stream');
    return new Response(STREAM, { headers: { 'content-type': 'text/event-stream' } });
  });
  app.get('/bytes', (c) => {
    count('bytes');
    return c.body('x'.repeat(700));
  });
  app.get('/broken', (c) => {
    count('broken');
    c.header('Settlement-Overrides', 'not json');
    return c.json({ secret: 'origin-answer-42' });
  });
  app.get('/sponsored', (c) => {
    count('sponsored');
    setSettlementOverrides(c, { amount: '1234' });
    return c.json({ used: '1234' });
  });
  // The head and a first part at once, the rest after the origin's time limit.
  const slow = (name, type, first, rest) => () => {
    count(name);
    const enc = new TextEncoder();
    const body = new ReadableStream({
      start(controller) {
        controller.enqueue(enc.encode(first));
        setTimeout(() => { try { controller.enqueue(enc.encode(rest)); controller.close(); } catch {} }, SLOW_BODY_MS);
      },
    });
    return new Response(body, { headers: { 'content-type': type } });
  };
  app.get('/slow-bytes', slow('slow-bytes', 'application/octet-stream', 'x'.repeat(100), 'x'.repeat(600)));
  app.get('/slow-stream', slow('slow-stream', 'text/event-stream', 'data: {"delta":"he"}\n\n', 'data: {"usage":{"total_tokens":9}}\n\n'));
  app.get('/over', (c) => {
    count('over');
    setSettlementOverrides(c, { amount: String(MAX + 1n) });
    return c.json({ secret: 'origin-answer-42' });
  });
  return app;
}

let stack;
let origin;
let worker;
const runs = {};
before(async () => {
  stack = await startStack();
  origin = await serveApp(sellerApp(runs), { stream: true });
  worker = await startWorker({ originUrl: origin.url, facilitatorUrl: stack.facilitator.url, payTo: stack.payTo, routes: ROUTES, extraBindings: { FACILITATOR_ADDRESS: stack.facilitator.address, ORIGIN_TIMEOUT_SECONDS: String(ORIGIN_TIMEOUT_SECONDS) } });
});
after(async () => {
  await worker?.stop();
  await origin?.stop();
  await stack?.stop();
});

const balances = async () => ({ payer: await balanceOf(stack.rpcUrl, stack.payer), payTo: await balanceOf(stack.rpcUrl, stack.payTo) });
const moved = (a, b) => ({ paid: a.payer - b.payer, received: b.payTo - a.payTo });

/** The Worker's upto requirement for `path` (from its 402). */
async function offerFor(path) {
  const res = await fetch(`${worker.url}${path}`);
  assert.equal(res.status, 402);
  await res.arrayBuffer();
  return decodePaymentRequiredHeader(res.headers.get('payment-required')).accepts[0];
}

test('the 402 offers upto with the maximum and the facilitator the payer must name, as the official server builds it', async () => {
  const offer = await offerFor('/report');
  assert.deepEqual(offer, {
    scheme: 'upto', network: NETWORK, amount: String(MAX), asset: offer.asset, payTo: stack.payTo, maxTimeoutSeconds: offer.maxTimeoutSeconds,
    extra: { name: 'USDC', version: '2', assetTransferMethod: 'permit2', facilitatorAddress: stack.facilitator.address },
  });
  assert.equal(runs.report, undefined, 'unpaid: the origin never ran');
});

test('the official upto client pays; the amount the origin reports (1,234) moves exactly once; the report never reaches the client', async () => {
  const start = await balances();
  const calls = { ...stack.facilitator.calls };
  const res = await payingFetch(KEYS.payer, { upto: true })(`${worker.url}/report?used=1234`);
  assert.equal(res.status, 200);
  assert.deepEqual(await res.json(), { used: '1234' });
  assert.equal(res.headers.get('settlement-overrides'), null);
  const settled = decodePaymentResponseHeader(res.headers.get('payment-response'));
  assert.equal(settled.success, true);
  assert.equal(settled.amount, '1234');
  assert.match(settled.transaction, /^0x[0-9a-f]{64}$/);
  assert.deepEqual(moved(start, await balances()), { paid: 1234n, received: 1234n });
  assert.equal(runs.report, 1);
  assert.equal(stack.facilitator.calls.settle, calls.settle + 1);
  const settle = stack.facilitator.bodies.filter((b) => b.path === 'settle').at(-1);
  assert.equal(settle.body.paymentRequirements.amount, '1234', '/settle is asked for the reported amount');
});

test('the same seller code settles the same amounts behind @x402/hono and behind the Worker', async () => {
  const hono = new Hono();
  const resourceServer = new x402ResourceServer(new HTTPFacilitatorClient({ url: stack.facilitator.url })).register(NETWORK, new ServerUptoEvm());
  hono.use(paymentMiddleware({ 'GET /report': { accepts: { scheme: 'upto', price: '$0.05', network: NETWORK, payTo: stack.payTo }, description: 'metered' } }, resourceServer));
  hono.route('/', sellerApp({}));
  const peer = await serveApp(hono);
  try {
    const pay = payingFetch(KEYS.payer, { upto: true });
    for (const used of ['777', '$0.0021', '10%']) {
      const q = `/report?used=${encodeURIComponent(used)}`;
      const a = await balances();
      const viaPeer = await pay(`${peer.url}${q}`);
      assert.equal(viaPeer.status, 200);
      await viaPeer.arrayBuffer();
      const b = await balances();
      const viaWorker = await pay(`${worker.url}${q}`);
      assert.equal(viaWorker.status, 200);
      await viaWorker.arrayBuffer();
      const c = await balances();
      assert.deepEqual(moved(b, c), moved(a, b), `${used}: the same amount both ways`);
      assert.equal(decodePaymentResponseHeader(viaWorker.headers.get('payment-response')).amount, decodePaymentResponseHeader(viaPeer.headers.get('payment-response')).amount);
      assert.ok(moved(a, b).paid > 0n && moved(a, b).paid < MAX, used);
    }
  } finally {
    await peer.stop();
  }
});

test('meters: a JSON path (21 tokens x 3), the last event of a server-sent-event stream (9 x 3), bytes (700 x 2); bodies reach the client unchanged', async () => {
  const pay = payingFetch(KEYS.payer, { upto: true });
  for (const [path, expected, check] of [
    ['/tokens', 63n, async (r) => assert.deepEqual(await r.json(), { text: 'hello', usage: { total_tokens: 21 } })],
    ['/stream', 27n, async (r) => assert.equal(await r.text(), STREAM)],
    ['/bytes', 1400n, async (r) => assert.equal((await r.text()).length, 700)],
  ]) {
    const start = await balances();
    const res = await pay(`${worker.url}${path}`);
    assert.equal(res.status, 200, `${path}: ${res.status === 200 ? '' : await res.text()}`);
    await check(res);
    assert.equal(decodePaymentResponseHeader(res.headers.get('payment-response')).amount, String(expected), path);
    assert.deepEqual(moved(start, await balances()), { paid: expected, received: expected }, path);
  }
});

test('zero: nothing moves, no transaction, the permit stays unused on chain and buys nothing more', async () => {
  const offer = await offerFor('/report');
  const { payload, header } = await uptoPayment(KEYS.payer, offer);
  const start = await balances();
  const settles = stack.facilitator.calls.settle;
  const res = await fetch(`${worker.url}/report?used=0`, { headers: { 'payment-signature': header } });
  assert.equal(res.status, 200);
  assert.deepEqual(await res.json(), { used: '0' });
  const settled = decodePaymentResponseHeader(res.headers.get('payment-response'));
  assert.deepEqual([settled.success, settled.transaction, settled.amount], [true, '', '0']);
  assert.equal(stack.facilitator.calls.settle, settles, 'no /settle');
  assert.deepEqual(await balances(), start);
  assert.equal(await permit2NonceUsed(stack.rpcUrl, stack.payer, payload.payload.permit2Authorization.nonce), false);
  const ran = runs.report;
  const replay = await fetch(`${worker.url}/report?used=5`, { headers: { 'payment-signature': header } });
  assert.equal(replay.status, 402);
  await replay.arrayBuffer();
  assert.equal(runs.report, ran, 'the replay never reached the origin');
  assert.deepEqual(await balances(), start);
});

test('a malformed or excessive report withholds the answer (502) and charges nothing', async () => {
  const pay = payingFetch(KEYS.payer, { upto: true });
  for (const path of ['/broken', '/over']) {
    const start = await balances();
    const settles = stack.facilitator.calls.settle;
    const res = await pay(`${worker.url}${path}`);
    assert.equal(res.status, 502, path);
    const body = await res.json();
    assert.equal(body.error, 'origin_metering_failed');
    assert.ok(!JSON.stringify(body).includes('origin-answer-42'), 'the answer is not delivered');
    assert.equal(stack.facilitator.calls.settle, settles, `${path}: no /settle`);
    assert.deepEqual(await balances(), start, path);
  }
});

test('a metered body still arriving at the origin time limit is not read past it: 502, nothing charged, the permit released', async () => {
  for (const path of ['/slow-bytes', '/slow-stream']) {
    const offer = await offerFor(path);
    const { header } = await uptoPayment(KEYS.payer, offer);
    const start = await balances();
    const settles = stack.facilitator.calls.settle;
    const ran = runs[path.slice(1)] ?? 0;
    const began = Date.now();
    const res = await fetch(`${worker.url}${path}`, { headers: { 'payment-signature': header } });
    const body = await res.json();
    const took = Date.now() - began;
    assert.equal(res.status, 502, `${path}: ${JSON.stringify(body)}`);
    assert.equal(body.error, 'origin_metering_failed', path);
    // Ended by the time limit, not by the body's end: the payment was not held past it.
    assert.ok(took < SLOW_BODY_MS - 1000, `${path}: answered after ${took} ms`);
    assert.equal(stack.facilitator.calls.settle, settles, `${path}: no /settle`);
    assert.deepEqual(await balances(), start, path);
    // Released, not spent: the same permit is taken again (and meets the same slow origin).
    const again = await fetch(`${worker.url}${path}`, { headers: { 'payment-signature': header } });
    assert.equal(again.status, 502, path);
    assert.equal((await again.json()).error, 'origin_metering_failed', path);
    assert.equal(runs[path.slice(1)], ran + 2, `${path}: the origin ran for each`);
    assert.equal(stack.facilitator.calls.settle, settles, `${path}: still no /settle`);
  }
});

test('concurrent copies and replays of one permit run the origin once and move the amount once', async () => {
  const offer = await offerFor('/report');
  const { header } = await uptoPayment(KEYS.payer, offer);
  const start = await balances();
  const ran = runs.report;
  const answers = await Promise.all(Array.from({ length: 4 }, () => fetch(`${worker.url}/report?used=50`, { headers: { 'payment-signature': header } })));
  const statuses = answers.map((r) => r.status);
  await Promise.all(answers.map((r) => r.arrayBuffer()));
  assert.equal(statuses.filter((s) => s === 200).length, 1, String(statuses));
  assert.ok(statuses.every((s) => s === 200 || s === 409), String(statuses));
  const replay = await fetch(`${worker.url}/report?used=50`, { headers: { 'payment-signature': header } });
  assert.equal(replay.status, 402);
  await replay.arrayBuffer();
  assert.equal(runs.report, ran + 1);
  assert.deepEqual(moved(start, await balances()), { paid: 50n, received: 50n });
});

test('a payer without a Permit2 allowance gets 412 permit2_allowance_required and the origin never runs', async () => {
  const offer = await offerFor('/report');
  const { header } = await uptoPayment(KEYS.payer2, offer);
  const ran = runs.report;
  const res = await fetch(`${worker.url}/report`, { headers: { 'payment-signature': header } });
  assert.equal(res.status, 412);
  const required = decodePaymentRequiredHeader(res.headers.get('payment-required'));
  assert.match(required.error, /permit2_allowance_required/);
  await res.arrayBuffer();
  assert.equal(runs.report, ran);
});

test('eip2612GasSponsoring: a payer without a Permit2 allowance pays with an EIP-2612 permit the facilitator submits; the amount moves once, no approval transaction', async () => {
  const payer2 = address(KEYS.payer2);
  assert.equal(await permit2Allowance(stack.rpcUrl, payer2), 0n, 'no allowance to start with');
  const challenge = await fetch(`${worker.url}/sponsored`);
  assert.equal(challenge.status, 402);
  await challenge.arrayBuffer();
  const required = decodePaymentRequiredHeader(challenge.headers.get('payment-required'));
  assert.equal(required.extensions.eip2612GasSponsoring.info.version, '1', 'the route announces the extension');
  // The official upto client, with a chain connection to read the allowance and the token's permit nonce.
  const { payload, header } = await uptoPayment(KEYS.payer2, required.accepts[0], { resource: required.resource, extensions: required.extensions, rpcUrl: stack.rpcUrl });
  const info = payload.extensions?.eip2612GasSponsoring?.info;
  assert.equal(info?.from, payer2, 'the client signed a permit');
  const before = { payer: await balanceOf(stack.rpcUrl, payer2), payTo: await balanceOf(stack.rpcUrl, stack.payTo) };
  const settles = stack.facilitator.calls.settle;
  const res = await fetch(`${worker.url}/sponsored`, { headers: { 'payment-signature': header } });
  assert.equal(res.status, 200, await res.clone().text());
  assert.deepEqual(await res.json(), { used: '1234' });
  assert.equal(decodePaymentResponseHeader(res.headers.get('payment-response')).amount, '1234');
  assert.equal(runs.sponsored, 1);
  assert.equal(stack.facilitator.calls.settle, settles + 1);
  const settle = stack.facilitator.bodies.filter((b) => b.path === 'settle').at(-1);
  assert.deepEqual(settle.body.paymentPayload.extensions, payload.extensions, 'the permit reached the facilitator as the client sent it');
  assert.equal(await balanceOf(stack.rpcUrl, payer2), before.payer - 1234n);
  assert.equal(await balanceOf(stack.rpcUrl, stack.payTo), before.payTo + 1234n);
  assert.equal(await permit2Allowance(stack.rpcUrl, payer2), BigInt(info.amount) - 1234n, 'the permit set the allowance, the settlement spent 1,234 of it');
  const replay = await fetch(`${worker.url}/sponsored`, { headers: { 'payment-signature': header } });
  assert.notEqual(replay.status, 200);
  await replay.arrayBuffer();
  assert.equal(runs.sponsored, 1, 'the replay ran nothing');
  assert.equal(await balanceOf(stack.rpcUrl, payer2), before.payer - 1234n);
});
