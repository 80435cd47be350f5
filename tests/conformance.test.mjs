// Conformance and hostile input against the built Worker (Miniflare) on the real local stack:
// routing that cannot be bypassed, the exact answer to every failure, CORS and caching. Each
// test is one row of the README's conformance table.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { KEYS, freePort, rawRequest, startWorker } from './support/stack.mjs';
import { b64, highS, paymentHeader, unb64 } from './support/pay.mjs';
import { useStackAndWorker } from './support/suite.mjs';

const ctx = useStackAndWorker({ extraBindings: { ORIGIN_TIMEOUT_SECONDS: '1', FACILITATOR_TIMEOUT_SECONDS: '2' } });

/** Sends `path` byte for byte (no client-side URL normalisation). */
const raw = (path, opts) => rawRequest(ctx.worker.url, path, opts);

async function weatherRequirement() {
  const res = await fetch(`${ctx.worker.url}/weather`);
  await res.arrayBuffer();
  return unb64(res.headers.get('payment-required')).accepts[0];
}

/** Sends each path unpaid; every answer must be `status` and the origin must see nothing. */
async function neverServedFree(paths, status, opts) {
  const seen = ctx.stack.origin.requests.length;
  for (const p of paths) {
    const res = await raw(p, opts);
    assert.equal(res.status, status, `${opts?.method ?? 'GET'} ${p}`);
    assert.doesNotMatch(res.body, /Lisbon/, p);
  }
  assert.equal(ctx.stack.origin.requests.length, seen, 'the origin received none of them');
}

describe('routing cannot be bypassed', () => {
  test('percent-encoded unreserved characters are decoded before matching', () => neverServedFree(['/%77eather', '/%57EATHER', '/w%65ather'], 402));
  test('encoded dot segments are resolved before matching', () => neverServedFree(['/free/%2e%2e/weather', '/free/%2E%2E/weather', '/%2e/weather'], 402));
  test('dot segments are resolved before matching', () => neverServedFree(['/free/../weather', '/./weather', '/a/b/../../weather'], 402));
  test('repeated slashes are collapsed before matching', () => neverServedFree(['//weather', '/premium//report', '///weather//'], 402));
  test('letter case does not matter for matching', () => neverServedFree(['/WEATHER', '/Weather', '/PREMIUM/Report'], 402));
  test('a trailing slash does not matter for matching', () => neverServedFree(['/weather/', '/premium/report/'], 402));
  test('path parameters after ; do not matter for matching', () => neverServedFree(['/weather;x=1', '/weather;', '/premium;a/report'], 402));
  test('query strings and fragments do not change the resource', () => neverServedFree(['/weather?free=1', '/weather?/free', '/weather#top'], 402));
  test('HEAD is priced like GET', () => neverServedFree(['/weather'], 402, { method: 'HEAD' }));
  test('encoded slash or backslash is refused with 400', () => neverServedFree(['/free%2f..%2fweather', '/free%2F..%2Fweather', '/free/..%2fweather', '/%5cweather'], 400));
  test('double encoding is refused with 400', () => neverServedFree(['/free/%252e%252e/weather', '/%2577eather', '/free/%25%32%65%25%32%65/weather'], 400));
  test('dot segments with ; parameters (the /..;/ bypass) are refused with 400', () => neverServedFree(['/free/..;/weather', '/.;/weather', '/premium/.;x/a'], 400));
  test('a segment of only ; parameters on a priced path is refused with 400 (some origins route on it as a segment)', () => neverServedFree(['/;x/weather', '/premium/;a/report', '/weather/;'], 400));
  test('encoded ; ? # are refused with 400', () => neverServedFree(['/weather%3bx', '/weather%3Ffree=1', '/weather%23x'], 400));
  test('a raw backslash never reaches a priced resource for free', async () => {
    // workerd turns `\` into `/` (WHATWG URL parsing) before the Worker runs; a request-target
    // that does not start with `/` is refused by workerd itself (500 locally) without running it.
    const seen = ctx.stack.origin.requests.length;
    for (const [p, want] of [['/free\\..\\weather', [402]], ['/weather\\', [402]], ['\\weather', [400, 500]]]) {
      const res = await raw(p);
      assert.ok(want.includes(res.status), `${p} -> ${res.status}`);
      assert.doesNotMatch(res.body, /Lisbon/);
    }
    assert.equal(ctx.stack.origin.requests.length, seen);
  });
  test('method-override headers are refused with 400', async () => {
    for (const h of ['X-HTTP-Method-Override', 'X-HTTP-Method', 'X-Method-Override']) {
      await neverServedFree(['/weather', '/echo', '/free'], 400, { method: 'POST', headers: { [h]: 'GET' } });
    }
  });
});

describe('every failure has an honest answer', () => {
  async function refused(header, reason, name = 'payment-signature') {
    const calls = { ...ctx.stack.facilitator.calls };
    const seen = ctx.stack.origin.requests.length;
    const res = await fetch(`${ctx.worker.url}/weather`, { headers: { [name]: header } });
    assert.equal(res.status, 402);
    const required = unb64(res.headers.get('payment-required'));
    assert.match(required.error, reason);
    assert.equal(required.accepts.length, 1, 'with a fresh challenge');
    assert.equal((await res.json()).error, required.error);
    assert.deepEqual(ctx.stack.facilitator.calls, calls, 'facilitator not called');
    assert.equal(ctx.stack.origin.requests.length, seen, 'origin not called');
  }

  test('malformed base64 → 402 invalid_payload', () => refused('@@not-base64@@', /^invalid_payload: payment header is not valid base64/));
  test('malformed JSON → 402 invalid_payload', () => refused(b64('{"x402Version":'), /^invalid_payload: payment header is not a JSON object/));
  test('wrong x402Version → 402 invalid_x402_version', () => refused(b64({ x402Version: 3, accepted: {}, payload: {} }), /^invalid_x402_version/));
  test('unknown scheme → 402 (v2: not an offered requirement; v1: unsupported_scheme)', async () => {
    const r = await weatherRequirement();
    await refused(await paymentHeader(KEYS.payer, { ...r, scheme: 'upto' }), /^invalid_payment_requirements/);
    const v1 = unb64(await paymentHeader(KEYS.payer, r));
    await refused(b64({ x402Version: 1, scheme: 'upto', network: 'base-sepolia', payload: v1.payload }), /^unsupported_scheme/, 'x-payment');
  });
  test('header over the 16 KiB cap → 402 invalid_payload', () => refused('A'.repeat(16 * 1024 + 4), /limit is 16384/));
  test('signature for another chain → 402 signature', async () => refused(await paymentHeader(KEYS.payer, await weatherRequirement(), { domain: { chainId: 1 } }), /^invalid_exact_evm_payload_signature/));
  test('signature for another asset → 402 signature', async () => refused(await paymentHeader(KEYS.payer, await weatherRequirement(), { domain: { verifyingContract: '0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913' } }), /^invalid_exact_evm_payload_signature/));
  test('signature under another domain name or version → 402 signature', async () => {
    const r = await weatherRequirement();
    await refused(await paymentHeader(KEYS.payer, r, { domain: { name: 'USD Coin' } }), /^invalid_exact_evm_payload_signature/);
    await refused(await paymentHeader(KEYS.payer, r, { domain: { version: '1' } }), /^invalid_exact_evm_payload_signature/);
  });
  test('authorization to another payTo → 402 recipient_mismatch', async () => refused(await paymentHeader(KEYS.payer, await weatherRequirement(), { authorization: { to: '0x000000000000000000000000000000000000dEaD' } }), /^invalid_exact_evm_payload_recipient_mismatch/));
  test('another amount → 402 value_mismatch', async () => refused(await paymentHeader(KEYS.payer, await weatherRequirement(), { authorization: { value: '10001' } }), /^invalid_exact_evm_payload_authorization_value_mismatch/));
  test('expired window → 402 valid_before', async () => refused(await paymentHeader(KEYS.payer, await weatherRequirement(), { authorization: { validBefore: String(Math.floor(Date.now() / 1000) - 1) } }), /^invalid_exact_evm_payload_authorization_valid_before/));
  test('not-yet-valid window → 402 valid_after', async () => refused(await paymentHeader(KEYS.payer, await weatherRequirement(), { authorization: { validAfter: String(Math.floor(Date.now() / 1000) + 3600) } }), /^invalid_exact_evm_payload_authorization_valid_after/));
  test('high-s signature → 402 signature', async () => refused(await paymentHeader(KEYS.payer, await weatherRequirement(), { mutate: (p) => { p.payload.signature = highS(p.payload.signature); } }), /high s value/));
  test('bad v → 402 signature', async () => refused(await paymentHeader(KEYS.payer, await weatherRequirement(), { mutate: (p) => { p.payload.signature = `${p.payload.signature.slice(0, 130)}1d`; } }), /v must be 27 or 28/));

  test('a non-65-byte (smart-wallet) signature goes to the facilitator /verify before the origin', async () => {
    const r = await weatherRequirement();
    const long = await paymentHeader(KEYS.payer, r, { mutate: (p) => { p.payload.signature = `${p.payload.signature}${'00'.repeat(31)}`; } });
    const calls = { ...ctx.stack.facilitator.calls };
    const seen = ctx.stack.origin.requests.length;
    const res = await fetch(`${ctx.worker.url}/weather`, { headers: { 'payment-signature': long } });
    assert.equal(res.status, 402, 'the real facilitator rejects it');
    assert.ok(unb64(res.headers.get('payment-required')).error.length > 0);
    await res.arrayBuffer();
    assert.equal(ctx.stack.facilitator.calls.verify, calls.verify + 1);
    assert.equal(ctx.stack.facilitator.calls.settle, calls.settle);
    assert.equal(ctx.stack.origin.requests.length, seen);

    ctx.stack.facilitator.setFault((p) => (p === 'verify'
      ? { status: 200, body: { isValid: true, payer: ctx.stack.payer } }
      : { status: 200, body: { success: true, transaction: `0x${'ab'.repeat(32)}`, network: 'eip155:84532', payer: ctx.stack.payer } }));
    try {
      const ok = await fetch(`${ctx.worker.url}/weather`, { headers: { 'payment-signature': long } });
      assert.equal(ok.status, 200, 'a valid verify lets it through to the origin and settlement');
      assert.equal((await ok.json()).city, 'Lisbon');
      assert.deepEqual(ctx.stack.facilitator.bodies.slice(-2).map((b) => b.path), ['verify', 'settle']);
    } finally {
      ctx.stack.facilitator.setFault(null);
    }
  });

  test('facilitator timeout → 504 settlement_outcome_unknown naming the payment, content withheld', async () => {
    const r = await weatherRequirement();
    ctx.stack.facilitator.setFault((p) => (p === 'settle' ? { delayMs: 3000, status: 200, body: '{}' } : null));
    try {
      const h = await paymentHeader(KEYS.payer, r);
      const res = await fetch(`${ctx.worker.url}/weather`, { headers: { 'payment-signature': h } });
      assert.equal(res.status, 504);
      const body = await res.json();
      assert.equal(body.error, 'settlement_outcome_unknown');
      assert.equal(body.payment.nonce, unb64(h).payload.authorization.nonce);
      assert.match(body.message, /no answer within 2 s/);
      assert.equal(res.headers.get('payment-required'), null);
    } finally {
      ctx.stack.facilitator.setFault(null);
    }
  });

  test('origin timeout → 504, not settled', async () => {
    const h = await paymentHeader(KEYS.payer, (await (async () => {
      const res = await fetch(`${ctx.worker.url}/slow`);
      await res.arrayBuffer();
      return unb64(res.headers.get('payment-required')).accepts[0];
    })()));
    const settles = ctx.stack.facilitator.calls.settle;
    const res = await fetch(`${ctx.worker.url}/slow?ms=3000`, { headers: { 'payment-signature': h } });
    assert.equal(res.status, 504);
    assert.equal((await res.json()).error, 'origin_unavailable');
    assert.equal(ctx.stack.facilitator.calls.settle, settles);
  });

  test('origin unreachable → 502, not settled', async () => {
    const dead = await startWorker({ originUrl: `http://127.0.0.1:${await freePort()}`, facilitatorUrl: ctx.stack.facilitator.url, payTo: ctx.stack.payTo });
    try {
      const first = await fetch(`${dead.url}/weather`);
      await first.arrayBuffer();
      const h = await paymentHeader(KEYS.payer, unb64(first.headers.get('payment-required')).accepts[0]);
      const settles = ctx.stack.facilitator.calls.settle;
      const res = await fetch(`${dead.url}/weather`, { headers: { 'payment-signature': h } });
      assert.equal(res.status, 502);
      assert.match((await res.json()).message, /no payment was taken/);
      assert.equal(ctx.stack.facilitator.calls.settle, settles);
    } finally {
      await dead.stop();
    }
  });
});

describe('browsers and caches', () => {
  test('CORS preflight on a priced route is answered by the paywall', async () => {
    const res = await fetch(`${ctx.worker.url}/weather`, {
      method: 'OPTIONS',
      headers: { Origin: 'https://app.example', 'Access-Control-Request-Method': 'GET', 'Access-Control-Request-Headers': 'payment-signature, x402-pass' },
    });
    assert.equal(res.status, 204);
    assert.equal(res.headers.get('access-control-allow-origin'), '*');
    assert.equal(res.headers.get('access-control-allow-methods'), 'GET, HEAD, OPTIONS', 'the methods the path is served with');
    assert.equal(res.headers.get('access-control-allow-headers'), 'payment-signature, x402-pass');
  });

  test('402s and paid responses expose the x402 headers, are not cached, and vary on the payment headers', async () => {
    const unpaid = await fetch(`${ctx.worker.url}/weather`, { headers: { Origin: 'https://app.example' } });
    await unpaid.arrayBuffer();
    const paid = await fetch(`${ctx.worker.url}/weather`, { headers: { Origin: 'https://app.example', 'payment-signature': await paymentHeader(KEYS.payer, await weatherRequirement()) } });
    assert.equal(paid.status, 200);
    await paid.arrayBuffer();
    for (const res of [unpaid, paid]) {
      assert.equal(res.headers.get('access-control-allow-origin'), '*');
      const exposed = res.headers.get('access-control-expose-headers');
      for (const h of ['PAYMENT-REQUIRED', 'PAYMENT-RESPONSE', 'X-PAYMENT-RESPONSE', 'X402-Pass']) assert.ok(exposed.includes(h), h);
      assert.equal(res.headers.get('cache-control'), 'no-store');
      assert.match(res.headers.get('vary'), /PAYMENT-SIGNATURE/);
    }
  });

  test('a configured origin list allows only its origins and varies on Origin', async () => {
    const listed = await startWorker({
      originUrl: ctx.stack.origin.url, facilitatorUrl: ctx.stack.facilitator.url, payTo: ctx.stack.payTo,
      extraBindings: { CORS_ALLOWED_ORIGINS: 'https://app.example' },
    });
    try {
      const ok = await fetch(`${listed.url}/weather`, { headers: { Origin: 'https://app.example' } });
      await ok.arrayBuffer();
      assert.equal(ok.headers.get('access-control-allow-origin'), 'https://app.example');
      assert.match(ok.headers.get('vary'), /Origin/);
      const other = await fetch(`${listed.url}/weather`, { headers: { Origin: 'https://evil.example' } });
      await other.arrayBuffer();
      assert.equal(other.status, 402);
      assert.equal(other.headers.get('access-control-allow-origin'), null);
    } finally {
      await listed.stop();
    }
  });
});
