// The fail-closed, exactly-once gate against the built Worker (Miniflare) with its payment
// ledger Durable Object, on the real local chain with the official facilitator logic. Every
// test counts origin hits and facilitator calls, and where money could move, balances on chain.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';

import net from 'node:net';

import { KEYS, ROUTES, authorizationUsed, balanceOf, rawRequest } from './support/stack.mjs';
import { b64, paymentHeader, unb64 } from './support/pay.mjs';
import { useStackAndWorker } from './support/suite.mjs';

// `/send/*`: a route without a method that settles before the origin runs.
const ctx = useStackAndWorker({
  routes: [...ROUTES, { route: '/send/*', price: '$0.01', description: 'Any method, settled first', settle: 'before' }],
  extraBindings: { FACILITATOR_TIMEOUT_SECONDS: '2', ORIGIN_TIMEOUT_SECONDS: '3' },
});

/** Sends `path` byte for byte (no client-side URL normalisation). */
const raw = (path, opts) => rawRequest(ctx.worker.url, path, opts);

/** One HTTP/1.1 request written on a socket (node's client treats CONNECT as a tunnel): the
 *  status and the raw header block of the answer, or `closed` if the runtime hung up. */
function socketRequest(method, path, headers) {
  const { hostname, port } = new URL(ctx.worker.url);
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(port), hostname);
    let data = '';
    socket.setTimeout(5000, () => socket.destroy(new Error(`${method}: no answer in 5 s`)));
    socket.on('data', (c) => {
      data += c.toString('latin1');
      if (data.includes('\r\n\r\n')) socket.end();
    });
    socket.on('close', () => {
      const head = data.split('\r\n\r\n')[0];
      resolve({ status: Number(head.split(' ')[1]) || 'closed', head: head.toLowerCase() });
    });
    socket.on('error', reject);
    const lines = Object.entries({ host: `${hostname}:${port}`, ...headers, connection: 'close' }).map(([k, v]) => `${k}: ${v}`);
    socket.write(`${method} ${path} HTTP/1.1\r\n${lines.join('\r\n')}\r\n\r\n`);
  });
}

async function requirement(path, method = 'GET') {
  const res = await fetch(`${ctx.worker.url}${path}`, { method });
  await res.arrayBuffer();
  assert.equal(res.status, 402, `${method} ${path} is priced`);
  return unb64(res.headers.get('payment-required')).accepts[0];
}

const counts = () => ({ origin: ctx.stack.origin.requests.length, ...ctx.stack.facilitator.calls });
const balance = () => balanceOf(ctx.stack.rpcUrl, ctx.stack.payer);

describe('fail closed on priced paths', () => {
  test('extension and unlisted methods on a priced path get 405 with Allow and never reach the origin', async () => {
    const before = counts();
    for (const method of ['PROPFIND', 'SEARCH', 'PURGE', 'MKCOL', 'PUT', 'DELETE', 'POST', 'PATCH']) {
      const res = await raw('/weather', { method });
      assert.equal(res.status, 405, method);
      assert.equal(res.headers.allow, 'GET, HEAD, OPTIONS', method);
      assert.doesNotMatch(res.body, /Lisbon/);
    }
    assert.deepEqual(counts(), before, 'origin and facilitator untouched');
  });

  test('TRACE, TRACK and CONNECT with a payment on a settle-first route without a method: 405 before any payment work, nothing charged', async (t) => {
    const r = await requirement('/send/x');
    const payerBefore = await balance();
    const before = counts();
    for (const method of ['TRACE', 'TRACK', 'CONNECT']) {
      const h = await paymentHeader(KEYS.payer, r);
      const res = await socketRequest(method, '/send/x', { 'payment-signature': h });
      // workerd delivers TRACE to the Worker (405 here); it refuses TRACK itself (501, a method
      // its parser does not know) and CONNECT too (500, "Incoming CONNECT on a worker not
      // supported"), before any Worker code runs (the host test covers them in the pipeline).
      // Whoever answers, nothing is paid.
      assert.equal(res.status, { TRACE: 405, TRACK: 501, CONNECT: 500 }[method], method);
      if (res.status === 405) assert.match(res.head, /\r\nallow: get, head, post, put, patch, delete, options/, method);
      assert.doesNotMatch(res.head, /\r\n(x-)?payment-(response|required):/, method);
      t.diagnostic(`${method}: ${res.status}`);
      const nonce = unb64(h).payload.authorization.nonce;
      assert.equal(await authorizationUsed(ctx.stack.rpcUrl, ctx.stack.payer, nonce), false, `${method}: the authorization is unused on chain`);
    }
    assert.deepEqual(counts(), before, 'origin and facilitator untouched');
    assert.equal(await balance(), payerBefore, 'nothing charged');
  });

  test('the origin receives exactly the method the client sent', async () => {
    for (const method of ['PROPFIND', 'SEARCH', 'PURGE']) {
      const res = await raw('/free', { method });
      assert.equal(res.status, 200, method);
      assert.equal(ctx.stack.origin.requests.at(-1).method, method, 'not rewritten to GET');
    }
  });

  test('OPTIONS on a priced path is answered by the paywall, never forwarded', async () => {
    const before = counts();
    const bare = await raw('/weather', { method: 'OPTIONS' });
    assert.equal(bare.status, 204);
    assert.equal(bare.headers.allow, 'GET, HEAD, OPTIONS');
    const pre = await raw('/premium/x', { method: 'OPTIONS', headers: { origin: 'https://app.example', 'access-control-request-method': 'GET' } });
    assert.equal(pre.status, 204);
    assert.equal(pre.headers['access-control-allow-origin'], '*');
    assert.deepEqual(counts(), before);
  });

  test('_method in the query of a priced path is refused with 400', async () => {
    const before = counts();
    for (const q of ['_method=GET', 'x=1&_method=PUT', '%5Fmethod=GET']) {
      const res = await raw(`/echo?${q}`, { method: 'POST' });
      assert.equal(res.status, 400, q);
      assert.equal(JSON.parse(res.body).error, 'method_override_refused');
    }
    assert.deepEqual(counts(), before);
  });

  test('X-Original-URL and X-Rewrite-URL are removed before forwarding', async () => {
    const res = await raw('/free', { headers: { 'x-original-url': '/weather', 'x-rewrite-url': '/weather', 'x-forwarded-prefix': '/premium' } });
    assert.equal(res.status, 200);
    const seen = ctx.stack.origin.requests.at(-1).headers;
    assert.equal(seen['x-original-url'], undefined);
    assert.equal(seen['x-rewrite-url'], undefined);
    assert.equal(seen['x-forwarded-prefix'], undefined);
  });

  test('v = 0/1 signatures are refused locally with the reason', async () => {
    const r = await requirement('/weather');
    const before = counts();
    for (const v of ['00', '01']) {
      const h = await paymentHeader(KEYS.payer, r, { mutate: (p) => { p.payload.signature = `${p.payload.signature.slice(0, 130)}${v}`; } });
      const res = await fetch(`${ctx.worker.url}/weather`, { headers: { 'payment-signature': h } });
      assert.equal(res.status, 402);
      assert.match(unb64(res.headers.get('payment-required')).error, /v must be 27 or 28/);
      await res.arrayBuffer();
    }
    assert.deepEqual(counts(), before);
  });

  test('an authorization valid far beyond maxTimeoutSeconds is refused', async () => {
    const r = await requirement('/weather');
    const h = await paymentHeader(KEYS.payer, r, { authorization: { validBefore: String(Math.floor(Date.now() / 1000) + 10 * 365 * 86400) } });
    const before = counts();
    const res = await fetch(`${ctx.worker.url}/weather`, { headers: { 'payment-signature': h } });
    assert.equal(res.status, 402);
    assert.match(unb64(res.headers.get('payment-required')).error, /^invalid_exact_evm_payload_authorization_valid_before: authorization is valid until .* beyond maxTimeoutSeconds/);
    await res.arrayBuffer();
    assert.deepEqual(counts(), before);
  });
});

describe('exactly once', () => {
  test('50 concurrent copies of one signature: the origin runs once, one settlement, the rest 409 (in flight) or 402 (spent)', async () => {
    const r = await requirement('/weather');
    const h = await paymentHeader(KEYS.payer, r);
    const before = counts();
    const payerBefore = await balance();
    const answers = await Promise.all(Array.from({ length: 50 }, () => fetch(`${ctx.worker.url}/weather`, { headers: { 'payment-signature': h } })
      .then(async (res) => ({ status: res.status, body: await res.text() }))));
    // One copy is served; the others arrive while it is in flight (409) or, if the first has
    // already finished, find the authorization spent (402). Never a second origin run.
    const served = answers.filter((a) => a.status === 200);
    const others = answers.filter((a) => a.status !== 200);
    assert.equal(served.length, 1, answers.map((a) => a.status).join(','));
    for (const a of others) {
      assert.ok(a.status === 409 || a.status === 402, `${a.status}`);
      if (a.status === 409) assert.equal(JSON.parse(a.body).error, 'payment_in_flight');
      else assert.doesNotMatch(a.body, /Lisbon/);
    }
    assert.ok(others.some((a) => a.status === 409), 'at least one copy met the reservation in flight');
    assert.equal(counts().origin, before.origin + 1, 'origin ran once');
    assert.equal(counts().settle, before.settle + 1, 'one settlement');
    assert.equal(await balance(), payerBefore - 10000n, 'charged once');
  });

  test('10 sequential replays of a settled, delivered signature: 402, no origin, no facilitator', async () => {
    const r = await requirement('/weather');
    const h = await paymentHeader(KEYS.payer, r);
    const first = await fetch(`${ctx.worker.url}/weather`, { headers: { 'payment-signature': h } });
    assert.equal(first.status, 200);
    await first.arrayBuffer();
    const before = counts();
    for (let i = 0; i < 10; i++) {
      const res = await fetch(`${ctx.worker.url}/weather`, { headers: { 'payment-signature': h } });
      assert.equal(res.status, 402);
      assert.match(unb64(res.headers.get('payment-required')).error, /^invalid_transaction_state: this authorization was already settled \(transaction 0x[0-9a-f]{64}\)/);
      assert.doesNotMatch(await res.text(), /Lisbon/);
    }
    assert.deepEqual(counts(), before);
  });

  test('a fresh key with no funds never reaches the origin', async () => {
    const r = await requirement('/weather');
    const broke = '0x2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6'; // anvil #8, no tokens
    const before = counts();
    const res = await fetch(`${ctx.worker.url}/weather`, { headers: { 'payment-signature': await paymentHeader(broke, r) } });
    assert.equal(res.status, 402);
    await res.arrayBuffer();
    assert.equal(counts().origin, before.origin);
    assert.equal(counts().settle, before.settle);
  });

  test('unknown settlement outcome then retry: served once, charged once', async () => {
    const r = await requirement('/weather');
    const h = await paymentHeader(KEYS.payer, r);
    const nonce = unb64(h).payload.authorization.nonce;
    const payerBefore = await balance();
    // The facilitator executes the transfer, then its answer is lost (503).
    ctx.stack.facilitator.setFault(async (name, body) => {
      if (name !== 'settle') return null;
      await ctx.stack.facilitator.real('settle', body);
      return { status: 503, body: 'upstream connection reset' };
    });
    let first;
    try {
      first = await fetch(`${ctx.worker.url}/weather`, { headers: { 'payment-signature': h } });
    } finally {
      ctx.stack.facilitator.setFault(null);
    }
    assert.equal(first.status, 502);
    const body = await first.json();
    assert.equal(body.error, 'settlement_outcome_unknown');
    assert.equal(body.payment.nonce, nonce);
    assert.match(body.message, /may or may not have been executed/);
    assert.equal(first.headers.get('payment-required'), null, 'never a fresh challenge');
    assert.equal(await authorizationUsed(ctx.stack.rpcUrl, ctx.stack.payer, nonce), true, 'it did settle');

    const origin = counts().origin;
    const retry = await fetch(`${ctx.worker.url}/weather`, { headers: { 'payment-signature': h } });
    assert.equal(retry.status, 200, 'the retry learns it was paid');
    assert.equal((await retry.json()).city, 'Lisbon');
    assert.equal(unb64(retry.headers.get('payment-response')).success, true);
    assert.equal(counts().origin, origin + 1, 'served once');
    assert.equal(await balance(), payerBefore - 10000n, 'charged once');
    const third = await fetch(`${ctx.worker.url}/weather`, { headers: { 'payment-signature': h } });
    assert.equal(third.status, 402, 'then spent');
    await third.arrayBuffer();
  });

  test('settle = "before": an origin failure after settlement is retrievable with the same header, not charged twice', async () => {
    const r = await requirement('/flaky', 'POST');
    const h = await paymentHeader(KEYS.payer, r);
    const payerBefore = await balance();
    const before = counts();
    const failed = await raw('/flaky?status=500', { method: 'POST', headers: { 'payment-signature': h } });
    assert.equal(failed.status, 500, 'the origin failed after settlement');
    assert.equal(unb64(failed.headers['payment-response']).success, true, 'the answer says it was paid');
    assert.equal(await balance(), payerBefore - 10000n);
    const retry = await raw('/flaky', { method: 'POST', headers: { 'payment-signature': h } });
    assert.equal(retry.status, 200);
    assert.equal(JSON.parse(retry.body).flaky, true);
    assert.equal(counts().settle, before.settle + 1, 'one settlement');
    assert.equal(counts().origin, before.origin + 2, 'the origin ran for the attempt and the retry');
    assert.equal(await balance(), payerBefore - 10000n, 'charged once');
    const spent = await raw('/flaky', { method: 'POST', headers: { 'payment-signature': h } });
    assert.equal(spent.status, 402);
  });

  test('settle = "before" with a v1 X-PAYMENT: an origin over its time limit after settlement answers X-PAYMENT-RESPONSE, and the same header retrieves the content', async () => {
    const r = await requirement('/flaky', 'POST');
    // A hand-built v1 PaymentPayload of the same authorization (scheme and v1 network name at the top).
    const v1 = b64({ x402Version: 1, scheme: 'exact', network: 'base-sepolia', payload: unb64(await paymentHeader(KEYS.payer, r)).payload });
    const payerBefore = await balance();
    const before = counts();
    const failed = await raw('/flaky?ms=4500', { method: 'POST', headers: { 'x-payment': v1 } });
    assert.equal(failed.status, 504, 'the origin timed out after settlement');
    assert.equal(JSON.parse(failed.body).error, 'origin_unavailable');
    assert.equal(failed.headers['payment-response'], undefined, 'not the v2 header');
    const settled = unb64(failed.headers['x-payment-response']);
    assert.equal(settled.success, true, 'a v1 client learns it paid');
    assert.match(settled.transaction, /^0x[0-9a-f]{64}$/);
    assert.equal(await balance(), payerBefore - 10000n);
    const retry = await raw('/flaky', { method: 'POST', headers: { 'x-payment': v1 } });
    assert.equal(retry.status, 200);
    assert.equal(JSON.parse(retry.body).flaky, true);
    assert.equal(unb64(retry.headers['x-payment-response']).transaction, settled.transaction);
    assert.equal(counts().settle, before.settle + 1, 'one settlement');
    assert.equal(counts().origin, before.origin + 2, 'the origin ran for the attempt and the retry');
    assert.equal(await balance(), payerBefore - 10000n, 'charged once');
  });

  test('a client that hangs up: never charged twice, and the worker keeps serving', async () => {
    // workerd under Miniflare does not fire the request's abort signal on a client disconnect
    // (see README), so the "not charged" decision is tested on the host; here: the flag is set,
    // a hang-up during settlement settles at most once, and nothing breaks.
    const r = await requirement('/slow');
    const h = await paymentHeader(KEYS.payer, r);
    const nonce = unb64(h).payload.authorization.nonce;
    const payerBefore = await balance();
    const controller = new AbortController();
    const pending = fetch(`${ctx.worker.url}/slow?ms=800`, { headers: { 'payment-signature': h }, signal: controller.signal }).catch((e) => e);
    setTimeout(() => controller.abort(), 300);
    assert.equal((await pending).name, 'AbortError');
    // Wait for the worker to finish the request it kept running.
    for (let i = 0; i < 50 && !(await authorizationUsed(ctx.stack.rpcUrl, ctx.stack.payer, nonce)); i++) await new Promise((s) => setTimeout(s, 100));
    // Until the abandoned request has recorded its outcome, the authorization is in flight (409).
    let retry;
    for (let i = 0; i < 50; i++) {
      retry = await fetch(`${ctx.worker.url}/slow?ms=1`, { headers: { 'payment-signature': h } });
      await retry.arrayBuffer();
      if (retry.status !== 409) break;
      await new Promise((s) => setTimeout(s, 100));
    }
    assert.ok([200, 402].includes(retry.status), `served again (undelivered) or spent (delivered): ${retry.status}`);
    assert.ok(await balance() >= payerBefore - 10000n, 'charged at most once');
    const after = await fetch(`${ctx.worker.url}/weather`);
    assert.equal(after.status, 402, 'still serving');
    await after.arrayBuffer();
  });
});
