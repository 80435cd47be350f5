// The built Worker (build/, release wasm) under Miniflare, against the real local stack:
// anvil + EIP-3009 token + the official facilitator logic + an origin. The facilitator's
// answers are replaced only where a test injects a fault.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { privateKeyToAccount } from 'viem/accounts';

import { KEYS, USDC, address, authorizationUsed, balanceOf, startWorker } from './support/stack.mjs';
import { b64, paymentHeader, unb64 } from './support/pay.mjs';
import { useStackAndWorker } from './support/suite.mjs';

const ctx = useStackAndWorker();

const get = (path, headers = {}, init = {}) => fetch(ctx.worker.url + path, { headers, ...init });

async function challenge(path, init) {
  const res = await get(path, {}, init);
  assert.equal(res.status, 402);
  return { res, required: unb64(res.headers.get('payment-required')), body: await res.json() };
}

describe('challenge', () => {
  test('a priced route without payment gets 402: v2 PaymentRequired in the header, v1 requirements in the body', async () => {
    const { res, required, body } = await challenge('/weather');
    assert.deepEqual(body, {
      x402Version: 1,
      error: 'PAYMENT-SIGNATURE header is required',
      accepts: [{
        scheme: 'exact', network: 'base-sepolia', maxAmountRequired: '10000', resource: `${ctx.worker.url}/weather`,
        description: 'Current weather', mimeType: 'application/json', payTo: ctx.stack.payTo, maxTimeoutSeconds: 120,
        asset: USDC, extra: { name: 'USDC', version: '2' },
      }],
    });
    assert.equal(res.headers.get('cache-control'), 'no-store');
    assert.equal(res.headers.get('content-type'), 'application/json');
    assert.equal(required.x402Version, 2);
    assert.equal(required.error, 'PAYMENT-SIGNATURE header is required');
    assert.deepEqual(required.resource, { url: `${ctx.worker.url}/weather`, description: 'Current weather', mimeType: 'application/json' });
    assert.deepEqual(required.accepts, [{
      scheme: 'exact', network: 'eip155:84532', amount: '10000', asset: USDC, payTo: ctx.stack.payTo,
      maxTimeoutSeconds: 120, extra: { name: 'USDC', version: '2' },
    }]);
  });

  test('an unpriced route is proxied untouched, without x402 headers', async () => {
    const res = await get('/free?x=1');
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { free: true });
    assert.equal(res.headers.get('payment-required'), null);
    assert.equal(res.headers.get('x-origin'), 'demo');
  });

  test('the route is matched on the canonical path: case, dot segments and // do not bypass it', async () => {
    for (const p of ['/WEATHER', '/free/../weather', '//weather', '/%77eather', '/weather/', '/weather;x=1']) {
      const res = await fetch(ctx.worker.url + p);
      assert.equal(res.status, 402, p);
    }
    const bad = await fetch(ctx.worker.url + '/x%2F..%2Fweather');
    assert.equal(bad.status, 400);
  });
});

describe('local verification', () => {
  async function rejected(path, header) {
    const before = { ...ctx.stack.facilitator.calls };
    const originBefore = ctx.stack.origin.requests.length;
    const res = await get(path, { 'payment-signature': header });
    assert.equal(res.status, 402);
    const required = unb64(res.headers.get('payment-required'));
    const body = await res.json();
    assert.equal(body.error, required.error, 'the v1 body carries the same reason');
    assert.equal(required.accepts.length, 1, 'a fresh challenge comes with the reason');
    assert.deepEqual(ctx.stack.facilitator.calls, before, 'facilitator not called');
    assert.equal(ctx.stack.origin.requests.length, originBefore, 'origin not called');
    return required.error;
  }

  test('signature by another key is refused without calling the facilitator', async () => {
    const { required } = await challenge('/weather');
    const h = await paymentHeader(KEYS.payer, required.accepts[0], { signer: KEYS.payer2 });
    assert.match(await rejected('/weather', h), /^invalid_exact_evm_payload_signature: signature recovers to/);
  });

  test('signature under another chain id or domain name is refused', async () => {
    const { required } = await challenge('/weather');
    for (const domain of [{ chainId: 8453 }, { name: 'USD Coin' }, { verifyingContract: '0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913' }]) {
      const h = await paymentHeader(KEYS.payer, required.accepts[0], { domain });
      assert.match(await rejected('/weather', h), /^invalid_exact_evm_payload_signature/, JSON.stringify(domain));
    }
  });

  test('wrong amount, wrong recipient, expired and not-yet-valid authorizations are refused', async () => {
    const { required } = await challenge('/weather');
    const r = required.accepts[0];
    const now = Math.floor(Date.now() / 1000);
    const cases = [
      [{ value: '9999' }, /authorization_value_mismatch/],
      [{ to: address(KEYS.payer2) }, /recipient_mismatch/],
      [{ validBefore: String(now + 3) }, /authorization_valid_before/],
      [{ validAfter: String(now + 60) }, /authorization_valid_after/],
    ];
    for (const [authorization, reason] of cases) {
      assert.match(await rejected('/weather', await paymentHeader(KEYS.payer, r, { authorization })), reason);
    }
  });

  test('an `accepted` that is not an offered requirement is refused', async () => {
    const { required } = await challenge('/weather');
    const cheaper = { ...required.accepts[0], amount: '1' };
    const h = await paymentHeader(KEYS.payer, cheaper);
    assert.match(await rejected('/weather', h), /^invalid_payment_requirements/);
  });

  test('malformed headers get 402 with a reason, never a 500', async () => {
    assert.match(await rejected('/weather', '!!!not base64!!!'), /^invalid_payload: .*base64/);
    assert.match(await rejected('/weather', b64('{"x402Version":2')), /^invalid_payload: .*JSON/);
    assert.match(await rejected('/weather', b64({ x402Version: 7, accepted: {}, payload: {} })), /^invalid_x402_version/);
    assert.match(await rejected('/weather', b64({ x402Version: 1, scheme: 'exact', network: 'base-sepolia', payload: {} })), /^invalid_x402_version/);
    assert.match(await rejected('/weather', 'A'.repeat(17000)), /limit is 16384/);
  });
});

describe('forward and settle', () => {
  test('a valid payment is settled on chain and the origin response carries PAYMENT-RESPONSE', async () => {
    const { required } = await challenge('/weather');
    const payerBefore = await balanceOf(ctx.stack.rpcUrl, ctx.stack.payer);
    const h = await paymentHeader(KEYS.payer, required.accepts[0]);
    const calls = { ...ctx.stack.facilitator.calls };
    const res = await get('/weather', { 'payment-signature': h });
    assert.equal(res.status, 200);
    const body = await res.json();
    assert.equal(body.city, 'Lisbon');
    const settle = unb64(res.headers.get('payment-response'));
    assert.equal(settle.success, true);
    assert.equal(settle.network, 'eip155:84532');
    assert.equal(settle.payer, ctx.stack.payer);
    assert.match(settle.transaction, /^0x[0-9a-f]{64}$/);
    assert.equal(res.headers.get('cache-control'), 'no-store');
    assert.equal(ctx.stack.facilitator.calls.settle, calls.settle + 1);
    assert.equal(await balanceOf(ctx.stack.rpcUrl, ctx.stack.payer), payerBefore - 10000n);
    const last = ctx.stack.origin.requests.at(-1);
    assert.equal(last.headers['payment-signature'], undefined, 'payment header not forwarded to the origin');

    // The payer is now in good standing: the next payment makes one facilitator round trip.
    const again = { ...ctx.stack.facilitator.calls };
    const res2 = await get('/weather', { 'payment-signature': await paymentHeader(KEYS.payer, required.accepts[0]) });
    assert.equal(res2.status, 200);
    await res2.arrayBuffer();
    assert.equal(ctx.stack.facilitator.calls.verify, again.verify, 'no /verify for a payer in good standing');
    assert.equal(ctx.stack.facilitator.calls.settle, again.settle + 1);
  });

  test('origin errors are passed through and not settled', async () => {
    for (const [path, status] of [['/error', 500], ['/missing', 404]]) {
      const { required } = await challenge(path);
      const h = await paymentHeader(KEYS.payer, required.accepts[0]);
      const settles = ctx.stack.facilitator.calls.settle;
      const balance = await balanceOf(ctx.stack.rpcUrl, ctx.stack.payer);
      const res = await get(path, { 'payment-signature': h });
      assert.equal(res.status, status);
      assert.equal(res.headers.get('payment-response'), null);
      await res.arrayBuffer();
      assert.equal(ctx.stack.facilitator.calls.settle, settles);
      assert.equal(await balanceOf(ctx.stack.rpcUrl, ctx.stack.payer), balance);
    }
  });

  test('an unfunded new payer is refused at /verify and never reaches the origin (real facilitator)', async () => {
    const { required } = await challenge('/weather');
    const broke = '0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba'; // anvil key #9, no tokens
    const h = await paymentHeader(broke, required.accepts[0]);
    const seen = ctx.stack.origin.requests.length;
    const calls = { ...ctx.stack.facilitator.calls };
    const res = await get('/weather', { 'payment-signature': h });
    assert.equal(res.status, 402);
    assert.doesNotMatch(await res.text(), /Lisbon/);
    assert.equal(unb64(res.headers.get('payment-required')).error, 'invalid_exact_evm_insufficient_balance');
    assert.equal(ctx.stack.origin.requests.length, seen, 'origin never called');
    assert.deepEqual(ctx.stack.facilitator.calls, { ...calls, verify: calls.verify + 1 }, 'one /verify, no /settle');
  });

  test('a settlement the facilitator refuses withholds the content and carries the refusal (verify local)', async () => {
    const local = await startWorker({
      originUrl: ctx.stack.origin.url, facilitatorUrl: ctx.stack.facilitator.url, payTo: ctx.stack.payTo,
      routes: [{ route: 'GET /weather', price: '$0.01', verify: 'local' }],
    });
    try {
      const first = await fetch(`${local.url}/weather`);
      await first.arrayBuffer();
      const broke = '0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba';
      const h = await paymentHeader(broke, unb64(first.headers.get('payment-required')).accepts[0]);
      const res = await fetch(`${local.url}/weather`, { headers: { 'payment-signature': h } });
      assert.equal(res.status, 402);
      assert.doesNotMatch(await res.text(), /Lisbon/);
      const settle = unb64(res.headers.get('payment-response'));
      assert.equal(settle.success, false);
      assert.equal(settle.errorReason, 'invalid_exact_evm_insufficient_balance');
      assert.equal(settle.payer, privateKeyToAccount(broke).address);
    } finally {
      await local.stop();
    }
  });

  test('facilitator 5xx or garbage: 502 naming the payment, content withheld, no fresh challenge', async () => {
    const { required } = await challenge('/weather');
    for (const fault of [{ status: 503, body: 'upstream down' }, { status: 200, body: '{"ok":' }]) {
      ctx.stack.facilitator.setFault((p) => (p === 'settle' ? fault : null));
      try {
        const h = await paymentHeader(KEYS.payer, required.accepts[0]);
        const sent = unb64(h);
        const res = await get('/weather', { 'payment-signature': h });
        assert.equal(res.status, 502);
        assert.equal(res.headers.get('payment-required'), null);
        const body = await res.json();
        assert.equal(body.error, 'settlement_outcome_unknown');
        assert.equal(body.payment.payer, ctx.stack.payer);
        assert.equal(body.payment.nonce, sent.payload.authorization.nonce);
        assert.doesNotMatch(JSON.stringify(body), /Lisbon/);
        assert.equal(await authorizationUsed(ctx.stack.rpcUrl, ctx.stack.payer, sent.payload.authorization.nonce), false);
      } finally {
        ctx.stack.facilitator.setFault(null);
      }
    }
  });
});

describe('passes', () => {
  test('a pass (ttl 10m on /premium/*) opens its own route again without payment, and no other route', async () => {
    const { required } = await challenge('/premium/a');
    assert.equal(required.accepts[0].amount, '50000');
    const h = await paymentHeader(KEYS.payer, required.accepts[0]);
    const paid = await get('/premium/a', { 'payment-signature': h });
    assert.equal(paid.status, 200);
    await paid.json();
    const token = paid.headers.get('x402-pass');
    assert.match(token, /^[A-Za-z0-9_-]{43}$/);
    const expires = Number(paid.headers.get('x402-pass-expires'));
    assert.match(paid.headers.get('set-cookie'), /^x402_pass=[A-Za-z0-9_-]{43}; Path=\/premium; Max-Age=600; HttpOnly; Secure; SameSite=Lax$/);
    assert.ok(expires > Date.now() / 1000 + 500 && expires <= Date.now() / 1000 + 601);

    const settles = ctx.stack.facilitator.calls.settle;
    const balance = await balanceOf(ctx.stack.rpcUrl, ctx.stack.payer);
    const again = await get('/premium/b', { 'x402-pass': token });
    assert.equal(again.status, 200);
    assert.equal((await again.json()).report, '/premium/b');
    assert.equal(ctx.stack.facilitator.calls.settle, settles, 'no settlement on a pass hit');
    assert.equal(await balanceOf(ctx.stack.rpcUrl, ctx.stack.payer), balance);
    assert.equal(ctx.stack.origin.requests.at(-1).headers['x402-pass'], undefined, 'token not forwarded');

    const other = await get('/weather', { 'x402-pass': token });
    assert.equal(other.status, 402);
    assert.match(unb64(other.headers.get('payment-required')).error, /^pass_out_of_scope: this pass is for another route or path; PAYMENT-SIGNATURE header is required$/);

    const forged = await get('/premium/b', { 'x402-pass': 'A'.repeat(43) });
    assert.equal(forged.status, 402);
    assert.match(unb64(forged.headers.get('payment-required')).error, /^pass_unknown/);

    const keys = await (await ctx.worker.mf.getKVNamespace('PASSES')).list();
    assert.ok(keys.keys.length >= 1, 'the record was written after the response');
    assert.ok(keys.keys.every((k) => k.name.startsWith('pass:') && !k.name.includes(token)), 'KV holds hashed tokens only');
  });

  test('a route that sells no pass charges every request and mints no token', async () => {
    const { required } = await challenge('/echo', { method: 'POST', body: 'hi' });
    const h = await paymentHeader(KEYS.payer, required.accepts[0]);
    const res = await fetch(ctx.worker.url + '/echo', { method: 'POST', body: 'hello origin', headers: { 'payment-signature': h } });
    assert.equal(res.status, 200);
    assert.equal((await res.json()).body, 'hello origin', 'request body forwarded');
    assert.equal(res.headers.get('x402-pass'), null);
  });
});

describe('configuration', () => {
  test('a bad configuration answers 500 with the reason', async () => {
    const bad = await startWorker({
      originUrl: ctx.stack.origin.url, facilitatorUrl: ctx.stack.facilitator.url, payTo: ctx.stack.payTo,
      routes: [{ route: 'GET /x', price: '$0.0000001' }],
    });
    try {
      const res = await fetch(bad.url + '/x');
      assert.equal(res.status, 500);
      const body = await res.json();
      assert.equal(body.error, 'paywall_misconfigured');
      assert.match(body.message, /ROUTES\[0\].*finer than one atomic unit/);
    } finally {
      await bad.stop();
    }
  });
});
