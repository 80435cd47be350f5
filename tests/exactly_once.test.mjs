// "No paid without evidence" on the real path: the built Worker (Miniflare) with its ledger
// Durable Object, the local chain (anvil) with the official facilitator logic. Two Workers share
// one chain: one reads the chain itself (`RPC_URL`), one does not. Every test counts origin hits,
// facilitator calls and balances.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { keccak256, stringToBytes } from 'viem';

import { KEYS, address, authorizationUsed, balanceOf, burnNonce, ledgerKey, ledgerOp, startStack, startWorker } from './support/stack.mjs';
import { paymentHeader, unb64 } from './support/pay.mjs';

const LIMITS = { FACILITATOR_TIMEOUT_SECONDS: '2', ORIGIN_TIMEOUT_SECONDS: '3' };
const ctx = {};
before(async () => {
  ctx.stack = await startStack();
  const common = { originUrl: ctx.stack.origin.url, facilitatorUrl: ctx.stack.facilitator.url, payTo: ctx.stack.payTo };
  ctx.plain = await startWorker({ ...common, extraBindings: { ...LIMITS } });
  ctx.rpc = await startWorker({ ...common, extraBindings: { ...LIMITS, RPC_URL: ctx.stack.rpcUrl } });
});
after(async () => {
  await ctx.plain?.stop();
  await ctx.rpc?.stop();
  await ctx.stack?.stop();
});

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const counts = () => ({ origin: ctx.stack.origin.requests.length, ...ctx.stack.facilitator.calls });
const balance = (who = ctx.stack.payer) => balanceOf(ctx.stack.rpcUrl, who);
// Anvil's account #8: ETH for gas, no tokens (a fresh, unfunded payer).
const BROKE = '0x2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6';

async function requirement(worker, path) {
  const res = await fetch(`${worker.url}${path}`);
  await res.arrayBuffer();
  assert.equal(res.status, 402);
  return unb64(res.headers.get('payment-required')).accepts[0];
}

/** What a Worker that reserved `header` (and, with `marked`, wrote its send mark) and then died leaves in the ledger. */
async function deadHolder(worker, header, { marked, route = 'GET /weather', resource = '/weather' }) {
  const payment = unb64(header);
  const key = ledgerKey(payment);
  const signature = keccak256(stringToBytes(payment.payload.signature.toLowerCase())).slice(2);
  const validBefore = Number(payment.payload.authorization.validBefore);
  const reply = await ledgerOp(worker, payment.payload.authorization.from, { reserve: { key, holder: 'dead', route, resource, signature, validBefore, leaseSeconds: 1, create: true } });
  assert.ok(reply.reserved, JSON.stringify(reply));
  if (marked) assert.equal(await ledgerOp(worker, payment.payload.authorization.from, { mark: { key, holder: 'dead' } }), 'done');
  await sleep(2100); // the lease lapses
}

/** The facilitator executes the settlement on chain, then its answer is lost. */
function loseSettleAnswers() {
  ctx.stack.facilitator.setFault(async (name, body) => {
    if (name !== 'settle') return null;
    await ctx.stack.facilitator.real('settle', body);
    return { status: 503, body: 'upstream connection reset' };
  });
}

describe('no "paid" without evidence', () => {
  for (const which of ['plain', 'rpc']) {
    test(`${which}: a burned nonce behind a reservation whose /settle never left is refused: no origin, no pass`, async () => {
      const worker = ctx[which];
      for (const path of ['/weather', '/premium/report']) {
        const r = await requirement(worker, path);
        const h = await paymentHeader(BROKE, r);
        const nonce = unb64(h).payload.authorization.nonce;
        await deadHolder(worker, h, { marked: false, route: path === '/weather' ? 'GET /weather' : 'GET /premium/*', resource: path });
        await burnNonce(ctx.stack.rpcUrl, BROKE, r, nonce);
        assert.equal(await authorizationUsed(ctx.stack.rpcUrl, address(BROKE), nonce), true, 'burned on chain');
        const before = counts();
        const res = await fetch(`${worker.url}${path}`, { headers: { 'payment-signature': h } });
        const body = await res.text();
        assert.equal(res.status, 402, body);
        assert.doesNotMatch(body, /Lisbon|premium content/);
        assert.equal(res.headers.get('x402-pass'), null, 'no pass');
        assert.equal(res.headers.get('set-cookie'), null, 'no pass cookie');
        assert.equal(counts().origin, before.origin, 'the origin never ran');
        assert.equal(counts().settle, before.settle, 'nothing settled');
        assert.equal(counts().verify, before.verify + 1, 'the lapsed reservation was verified again');
        // And it stays refused.
        const again = await fetch(`${worker.url}${path}`, { headers: { 'payment-signature': h } });
        assert.equal(again.status, 402);
        await again.arrayBuffer();
        assert.equal(counts().origin, before.origin);
      }
    });
  }

  test('a marked reservation whose holder died is reconciled: paid once on chain, served once', async () => {
    const worker = ctx.plain;
    const r = await requirement(worker, '/weather');
    const h = await paymentHeader(KEYS.payer, r);
    const payerBefore = await balance();
    await deadHolder(worker, h, { marked: true });
    const before = counts();
    const res = await fetch(`${worker.url}/weather`, { headers: { 'payment-signature': h } });
    assert.equal(res.status, 200);
    assert.equal((await res.json()).city, 'Lisbon');
    assert.equal(counts().origin, before.origin + 1);
    assert.equal(counts().verify, before.verify, 'a sent authorization is not verified again');
    assert.equal(await balance(), payerBefore - 10000n, 'charged once');
    // Served once: the same header again gets no content and runs nothing.
    const served = counts();
    const again = await fetch(`${worker.url}/weather`, { headers: { 'payment-signature': h } });
    await again.arrayBuffer();
    assert.notEqual(again.status, 200);
    assert.deepEqual(counts(), served, 'no origin run, no facilitator call');
    assert.equal(await balance(), payerBefore - 10000n, 'still charged once');
  });

  test('rpc: a burned nonce after our own send (outcome unknown) is refused from the chain, not taken as paid', async () => {
    const worker = ctx.rpc;
    const r = await requirement(worker, '/weather');
    const h = await paymentHeader(BROKE, r);
    const nonce = unb64(h).payload.authorization.nonce;
    await deadHolder(worker, h, { marked: true });
    await burnNonce(ctx.stack.rpcUrl, BROKE, r, nonce);
    const before = counts();
    const res = await fetch(`${worker.url}/weather`, { headers: { 'payment-signature': h } });
    const body = await res.json();
    assert.equal(res.status, 402, JSON.stringify(body));
    assert.equal(body.error, 'invalid_exact_evm_nonce_already_used');
    assert.match(body.message, /did not pay this resource/);
    assert.deepEqual(counts(), before, 'decided from the chain: no origin, no facilitator call');
  });

  test('plain: without RPC_URL, "nonce used" after our own send is taken as paid (the stated residual risk)', async () => {
    const worker = ctx.plain;
    const r = await requirement(worker, '/weather');
    const h = await paymentHeader(BROKE, r);
    const nonce = unb64(h).payload.authorization.nonce;
    await deadHolder(worker, h, { marked: true });
    await burnNonce(ctx.stack.rpcUrl, BROKE, r, nonce);
    const res = await fetch(`${worker.url}/weather`, { headers: { 'payment-signature': h } });
    await res.arrayBuffer();
    assert.equal(res.status, 200, 'the assumption the README states: only a payer whose authorization this paywall sent can reach it');
  });
});

describe('honest at any time', () => {
  test('a settlement executed on chain whose answer is lost: resent up to validBefore, served once, charged once, never a fresh challenge', async () => {
    // validBefore = now + 30: a new payment needs 3 + 2 + 6 = 11 s left, a repeated send 2 + 6.
    // `plain` and `rpc` are first resent with 10 s left; `plainLate` only with 6 s left, when it
    // is too late to settle again and, without RPC_URL, nothing can decide it.
    const runs = [['plain', 'plain'], ['plainLate', 'plain'], ['rpc', 'rpc']];
    const payments = {};
    const validBefore = Math.floor(Date.now() / 1000) + 30;
    for (const [name, which] of runs) {
      const r = await requirement(ctx[which], '/weather');
      payments[name] = await paymentHeader(KEYS.payer, r, { authorization: { validBefore: String(validBefore) } });
    }
    const payerBefore = await balance();
    const payToBefore = await balance(ctx.stack.payTo);
    loseSettleAnswers();
    try {
      for (const [name, which] of runs) {
        const first = await fetch(`${ctx[which].url}/weather`, { headers: { 'payment-signature': payments[name] } });
        if (which === 'rpc') {
          // The chain shows the lost settlement paid: served at once, no retry needed.
          assert.equal(first.status, 200, await first.clone().text());
          assert.equal((await first.json()).city, 'Lisbon');
          continue;
        }
        assert.ok([502, 504].includes(first.status), `${name}: ${first.status}`);
        assert.equal((await first.json()).error, 'settlement_outcome_unknown');
        assert.equal(first.headers.get('payment-required'), null);
      }
    } finally {
      ctx.stack.facilitator.setFault(null);
    }
    assert.equal(await balance(), payerBefore - 30000n, 'all three executed on chain');
    const start = counts();
    const served = { plain: 0, plainLate: 0, rpc: 1 };
    const unknown = { plain: 0, plainLate: 0, rpc: 0 };
    for (const left of [10, 6, -2]) {
      const wait = (validBefore - left) * 1000 - Date.now();
      if (wait > 0) await sleep(wait);
      for (const [name, which] of runs) {
        if (name === 'plainLate' && left === 10) continue;
        const res = await fetch(`${ctx[which].url}/weather`, { headers: { 'payment-signature': payments[name] } });
        const body = await res.text();
        if (res.status === 200) {
          served[name]++;
          assert.match(body, /Lisbon/);
          assert.equal(unb64(res.headers.get('payment-response')).success, true);
        } else if (res.status === 402) {
          assert.ok(served[name] > 0, `${name} at ${left} s left: a 402 only once served: ${body}`);
          assert.match(unb64(res.headers.get('payment-required')).error, /already settled/, 'spent, naming its settlement');
        } else {
          unknown[name]++;
          assert.ok([502, 504].includes(res.status), `${name} at ${left} s left: ${res.status} ${body}`);
          assert.equal(JSON.parse(body).error, 'settlement_outcome_unknown');
          assert.equal(res.headers.get('payment-required'), null, `${name} at ${left} s left: never a fresh challenge`);
        }
      }
    }
    assert.equal(served.rpc, 1, 'with RPC_URL: served once, on the first attempt; then spent');
    assert.equal(served.plain, 1, 'without it, settled again in time: "nonce used" after our own send: served once');
    assert.deepEqual([served.plainLate, unknown.plainLate], [0, 2], 'too late to settle again without RPC_URL: unknown, never "not charged"');
    assert.equal(counts().settle, start.settle + 1, 'one repeated send (plain, 10 s left); none once too late');
    assert.equal(counts().origin, start.origin + 1, 'the origin ran once more, for the one served retry');
    assert.equal(await balance(), payerBefore - 30000n, 'charged once each');
    assert.equal(await balance(ctx.stack.payTo), payToBefore + 30000n);
  });

  test('a settle-first payment whose origin failed is redelivered even when too late for a new payment', async () => {
    const worker = ctx.plain;
    const r = await (async () => {
      const res = await fetch(`${worker.url}/flaky`, { method: 'POST' });
      await res.arrayBuffer();
      return unb64(res.headers.get('payment-required')).accepts[0];
    })();
    const validBefore = String(Math.floor(Date.now() / 1000) + 16);
    const h = await paymentHeader(KEYS.payer, r, { authorization: { validBefore } });
    const payerBefore = await balance();
    const failed = await fetch(`${worker.url}/flaky?status=500`, { method: 'POST', headers: { 'payment-signature': h } });
    await failed.arrayBuffer();
    assert.equal(failed.status, 500);
    await sleep(Math.max(0, (Number(validBefore) - 8) * 1000 - Date.now()));
    const before = counts();
    const retry = await fetch(`${worker.url}/flaky`, { method: 'POST', headers: { 'payment-signature': h } });
    assert.equal(retry.status, 200, await retry.clone().text());
    assert.equal((await retry.json()).flaky, true);
    assert.equal(counts().settle, before.settle, 'redelivered: not settled again');
    assert.equal(counts().origin, before.origin + 1);
    assert.equal(await balance(), payerBefore - 10000n, 'charged once');
  });
});

describe('an expired, never executed send', () => {
  test('rpc: a sent authorization the chain shows unused well past validBefore is "not charged", with no origin call; plain: still unknown', async () => {
    const results = {};
    for (const which of ['plain', 'rpc']) {
      const worker = ctx[which];
      const r = await requirement(worker, '/weather');
      const validBefore = String(Math.floor(Date.now() / 1000) - 31);
      const h = await paymentHeader(KEYS.payer, r, { authorization: { validBefore } });
      await deadHolder(worker, h, { marked: true });
      const before = counts();
      const res = await fetch(`${worker.url}/weather`, { headers: { 'payment-signature': h } });
      results[which] = { status: res.status, body: await res.json() };
      assert.deepEqual(counts(), before, `${which}: no origin, no facilitator call`);
    }
    assert.equal(results.rpc.status, 402);
    assert.match(results.rpc.body.message, /never executed on chain.*nothing was charged/);
    assert.ok([502, 504].includes(results.plain.status), JSON.stringify(results.plain));
    assert.equal(results.plain.body.error, 'settlement_outcome_unknown');
  });
});

describe('no work for strangers', () => {
  test('non-65-byte signatures claiming a victim never change its standing, run the origin or reach /settle', async () => {
    const worker = ctx.plain;
    const r = await requirement(worker, '/weather');
    // The victim pays once: good standing, so its next payment skips /verify (auto policy).
    const ok = await fetch(`${worker.url}/weather`, { headers: { 'payment-signature': await paymentHeader(KEYS.payer2, r) } });
    assert.equal(ok.status, 200);
    await ok.arrayBuffer();
    const before = counts();
    for (let i = 0; i < 12; i++) {
      const forged = await paymentHeader(KEYS.payer2, r, { mutate: (p) => { p.payload.signature = `0x${'5a'.repeat(100)}`; } });
      const res = await fetch(`${worker.url}/weather`, { headers: { 'payment-signature': forged } });
      assert.equal(res.status, 402);
      await res.arrayBuffer();
    }
    assert.equal(counts().verify, before.verify + 12, 'each forged signature is checked by /verify first');
    assert.equal(counts().origin, before.origin);
    assert.equal(counts().settle, before.settle);
    const next = await fetch(`${worker.url}/weather`, { headers: { 'payment-signature': await paymentHeader(KEYS.payer2, r) } });
    assert.equal(next.status, 200);
    await next.arrayBuffer();
    assert.equal(counts().verify, before.verify + 12, 'the victim is still in good standing: no /verify for its own payment');
    assert.equal(address(KEYS.payer2), unb64(next.headers.get('payment-response')).payer);
  });
});
