// The origin locked to the paywall, against the built Worker (Miniflare) on the local chain: an
// origin that refuses anyone without the paywall's secret header, forwarding headers the client
// cannot spoof, redirects that never reveal the origin's address, configuration errors without
// values, and an origin Worker reached only through a service binding.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { KEYS, balanceOf, rawRequest, startOrigin, startStack, startWorker } from './support/stack.mjs';
import { payingFetch } from './support/client.mjs';

const SECRET = { name: 'X-Paywall-Secret', value: 'correct horse battery staple' };
const ctx = {};

before(async () => {
  ctx.stack = await startStack();
  ctx.locked = await startOrigin({ requireHeader: SECRET });
  ctx.worker = await startWorker({
    originUrl: ctx.locked.url, facilitatorUrl: ctx.stack.facilitator.url, payTo: ctx.stack.payTo,
    extraBindings: { ORIGIN_HEADERS: JSON.stringify({ [SECRET.name]: SECRET.value }) },
  });
});
after(async () => {
  await ctx.worker?.stop();
  await ctx.locked?.stop();
  await ctx.stack?.stop();
});

describe('an origin that only the paywall can call', () => {
  test('the origin refuses requests without the secret; through the paywall a paid request settles on chain', async () => {
    const direct = await fetch(`${ctx.locked.url}/weather`);
    assert.equal(direct.status, 403, 'the origin alone refuses');
    await direct.arrayBuffer();
    const before = await balanceOf(ctx.stack.rpcUrl, ctx.stack.payer);
    const res = await payingFetch(KEYS.payer)(`${ctx.worker.url}/weather`);
    assert.equal(res.status, 200);
    assert.equal((await res.json()).city, 'Lisbon');
    assert.equal(await balanceOf(ctx.stack.rpcUrl, ctx.stack.payer), before - 10000n);
    assert.equal(ctx.locked.requests.at(-1).headers[SECRET.name.toLowerCase()], SECRET.value);
  });

  test('a client sending the secret header name gets it replaced: the origin sees the paywall value only', async () => {
    const res = await rawRequest(ctx.worker.url, '/free', { headers: { [SECRET.name]: 'a guess', 'x-paywall-secret': 'another' } });
    assert.equal(res.status, 200);
    assert.equal(ctx.locked.requests.at(-1).headers['x-paywall-secret'], SECRET.value, 'one value, the paywall\'s');
  });

  test('a spoofed X-Forwarded-For, -Host or -Proto, or client IP header does not reach the origin', async () => {
    const spoofed = ['x-forwarded-for', 'x-real-ip', 'true-client-ip', 'x-client-ip', 'client-ip', 'x-cluster-client-ip', 'forwarded', 'fastly-client-ip'];
    const res = await rawRequest(ctx.worker.url, '/free', { headers: { ...Object.fromEntries(spoofed.map((h) => [h, '6.6.6.6'])), 'x-forwarded-host': 'evil.example', 'x-forwarded-proto': 'gopher' } });
    assert.equal(res.status, 200);
    const seen = ctx.locked.requests.at(-1).headers;
    assert.deepEqual(Object.entries(seen).filter(([, v]) => String(v).includes('6.6.6.6')), [], 'no client value reached the origin');
    assert.equal(seen['x-forwarded-host'], new URL(ctx.worker.url).host);
    assert.equal(seen['x-forwarded-proto'], 'http');
    // X-Forwarded-For and X-Real-IP are the runtime's CF-Connecting-IP (Miniflare's for a local client).
    assert.deepEqual([seen['x-forwarded-for'], seen['x-real-ip']], ['127.0.0.1', '127.0.0.1']);
    for (const h of ['true-client-ip', 'x-client-ip', 'client-ip', 'x-cluster-client-ip', 'forwarded', 'fastly-client-ip']) assert.equal(seen[h], undefined, h);
  });

  test('an unpriced origin response the paywall leaves unchanged reaches the client as the origin sent it', async () => {
    const res = await rawRequest(ctx.worker.url, '/as-is');
    assert.equal(res.status, 203);
    assert.equal(res.statusText, 'Origin Says Hi', 'the origin\'s own Response object, reason phrase included');
    assert.deepEqual(res.headers['set-cookie'], ['a=1; Path=/', 'b=2; Path=/']);
    assert.equal(res.headers['x-origin'], 'demo');
    assert.equal(res.headers.link, '<https://elsewhere.example/next>; rel="next"');
    assert.equal(res.body, 'exactly these bytes');
  });

  test('an unpriced request over the origin time limit gets 504 origin_unavailable, and the cause is logged', async () => {
    const w = await startWorker({
      originUrl: ctx.locked.url, facilitatorUrl: ctx.stack.facilitator.url, payTo: ctx.stack.payTo,
      routes: [{ route: 'GET /weather', price: '$0.01' }],
      extraBindings: { ORIGIN_TIMEOUT_SECONDS: '1', ORIGIN_HEADERS: JSON.stringify({ [SECRET.name]: SECRET.value }) },
    });
    try {
      const hits = ctx.locked.requests.length;
      const res = await rawRequest(w.url, '/slow?ms=2500');
      assert.equal(res.status, 504);
      const body = JSON.parse(res.body);
      assert.equal(body.error, 'origin_unavailable');
      assert.match(body.message, /no payment was taken/);
      assert.equal(ctx.locked.requests.length, hits + 1, 'sent once, not retried');
      assert.ok(w.logs.some((l) => l.startsWith('x402: origin') && /time limit|timed out|1 s/.test(l)), w.logs.join('\n'));
    } finally {
      await w.stop();
    }
  });

  test('the origin time limit bounds the response head only: a body that streams for longer arrives whole', async () => {
    const w = await startWorker({ originUrl: ctx.locked.url, facilitatorUrl: ctx.stack.facilitator.url, payTo: ctx.stack.payTo, extraBindings: { ORIGIN_TIMEOUT_SECONDS: '1', ORIGIN_HEADERS: JSON.stringify({ [SECRET.name]: SECRET.value }) } });
    try {
      const started = Date.now();
      const res = await rawRequest(w.url, '/drip');
      assert.equal(res.status, 200);
      assert.equal(res.body, 'piece 0\npiece 1\npiece 2\npiece 3\npiece 4\npiece 5\ndone\n');
      assert.ok(Date.now() - started >= 1500, 'the body outlasted the 1 s limit');
    } finally {
      await w.stop();
    }
  });

  test('an origin redirect to its own host comes back rewritten to the public host', async () => {
    const res = await rawRequest(ctx.worker.url, '/redirect');
    assert.equal(res.status, 302);
    assert.equal(res.headers.location, `${ctx.worker.url}/weather?from=redirect`);
    assert.equal(res.headers.link, `<${ctx.worker.url}/premium/next>; rel="next"`);
    const originHost = new URL(ctx.locked.url).host;
    assert.ok(!JSON.stringify(res.headers).includes(originHost), 'the origin address appears in no header');
  });

  test('an unreachable origin is named without its address', async () => {
    const port = new URL(ctx.locked.url).port;
    const dead = await startWorker({ originUrl: 'http://127.0.0.1:9', facilitatorUrl: ctx.stack.facilitator.url, payTo: ctx.stack.payTo });
    try {
      const res = await rawRequest(dead.url, '/free');
      assert.equal(res.status, 502);
      assert.match(res.body, /origin unreachable/);
      assert.doesNotMatch(res.body, /127\.0\.0\.1:9|:9\b/);
      assert.ok(!res.body.includes(port));
    } finally {
      await dead.stop();
    }
  });

  test('a misconfigured ORIGIN_URL with user information never appears in a response', async () => {
    const bad = await startWorker({ originUrl: 'https://admin:hunter2@internal.example/v1', facilitatorUrl: ctx.stack.facilitator.url, payTo: ctx.stack.payTo });
    try {
      for (const p of ['/weather', '/free']) {
        const res = await rawRequest(bad.url, p);
        assert.equal(res.status, 500);
        const body = JSON.parse(res.body);
        assert.equal(body.error, 'paywall_misconfigured');
        assert.match(body.message, /ORIGIN_URL `…` must not have a query or user information/);
        assert.ok(!/hunter2|admin|internal\.example/.test(res.body + JSON.stringify(res.headers)), res.body);
      }
    } finally {
      await bad.stop();
    }
  });
});

describe('an origin Worker behind a service binding', () => {
  const ORIGIN_WORKER = `export default {
    async fetch(request) {
      const url = new URL(request.url);
      return Response.json({ from: 'origin worker', path: url.pathname, host: url.host, method: request.method,
        forwardedFor: request.headers.get('x-forwarded-for'), signature: request.headers.get('payment-signature') });
    },
  };`;

  test('serves a paid request end to end: settled on chain, no public route of its own', async () => {
    const bound = await startWorker({ facilitatorUrl: ctx.stack.facilitator.url, payTo: ctx.stack.payTo, originWorker: ORIGIN_WORKER });
    try {
      const unpaid = await fetch(`${bound.url}/weather`);
      assert.equal(unpaid.status, 402);
      await unpaid.arrayBuffer();
      const before = await balanceOf(ctx.stack.rpcUrl, ctx.stack.payer);
      const settles = ctx.stack.facilitator.calls.settle;
      const res = await payingFetch(KEYS.payer)(`${bound.url}/weather`);
      assert.equal(res.status, 200);
      const body = await res.json();
      assert.equal(body.from, 'origin worker');
      assert.equal(body.path, '/weather');
      assert.equal(body.host, new URL(bound.url).host, 'the origin Worker sees the public host');
      assert.equal(body.signature, null, 'payment header not forwarded');
      assert.ok(res.headers.get('payment-response'));
      assert.equal(ctx.stack.facilitator.calls.settle, settles + 1);
      assert.equal(await balanceOf(ctx.stack.rpcUrl, ctx.stack.payer), before - 10000n);
      const free = await fetch(`${bound.url}/free`);
      assert.equal((await free.json()).from, 'origin worker', 'unpriced paths reach it too');
    } finally {
      await bound.stop();
    }
  });
});
