// No work for strangers, against the built Worker (Miniflare) with KV and the ledger Durable
// Object, on the local chain with the official facilitator: thousands of invented methods leave
// challenge latency flat and the Worker answering; random pass tokens and sign-ins from throwaway
// keys are limited per client before KV or a Durable Object; IPv6 clients are limited per /64.
// Figures are printed (test diagnostics); timings are asserted only with a generous bound.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts';
import { createSIWxPayload, encodeSIWxHeader } from '@x402/extensions/sign-in-with-x';

import { KEYS, rawRequest, startStack, startWorker } from './support/stack.mjs';
import { paymentHeader, unb64 } from './support/pay.mjs';

const LIMIT = 6;
const ROUTES = [
  { route: '/any/*', price: '$0.02', description: 'Any method' },
  { route: 'GET /premium/*', price: '$0.05', description: 'Premium', pass: { ttl: '10m' }, rateLimit: { challenge: 'CHALLENGES' } },
];
const ctx = {};

before(async () => {
  ctx.stack = await startStack();
  ctx.worker = await startWorker({
    originUrl: ctx.stack.origin.url, facilitatorUrl: ctx.stack.facilitator.url, payTo: ctx.stack.payTo, routes: ROUTES, publicUrl: true,
    // Every challenge logged: the flood test counts the methods that reached the Worker by their lines.
    extraBindings: { DECISION_LOG: 'all' },
    workerOptions: { ratelimits: { CHALLENGES: { namespace_id: '4021', simple: { limit: LIMIT, period: 60 } } } },
  });
});
after(async () => {
  await ctx.worker?.stop();
  await ctx.stack?.stop();
});

const url = (p) => `${ctx.worker.url}${p}`;
const raw = (p, opts) => rawRequest(ctx.worker.url, p, opts);
const counts = () => ({ origin: ctx.stack.origin.requests.length, ...ctx.stack.facilitator.calls });
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const p90 = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length * 0.9)];

/** Milliseconds of `n` sequential challenges of GET /any/x. */
async function challengeTimes(n) {
  const times = [];
  for (let i = 0; i < n; i++) {
    const t = process.hrtime.bigint();
    const res = await raw('/any/x');
    times.push(Number(process.hrtime.bigint() - t) / 1e6);
    assert.equal(res.status, 402);
  }
  return times;
}

/** Sends `requests` (functions returning promises) `width` at a time; resolves to their results. */
async function inParallel(requests, width) {
  const out = new Array(requests.length);
  let next = 0;
  await Promise.all(Array.from({ length: width }, async () => {
    while (next < requests.length) {
      const i = next++;
      out[i] = await requests[i]();
    }
  }));
  return out;
}

const token = () => randomBytes(32).toString('base64url');

async function until(check, ms = 5000) {
  const end = Date.now() + ms;
  while (!check() && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
}

async function challengeFrom(ip, p = '/premium/a') {
  const res = await fetch(url(p), { headers: { 'cf-connecting-ip': ip } });
  await res.arrayBuffer();
  assert.equal(res.status, 402, `challenge for ${ip}`);
  return unb64(res.headers.get('payment-required'));
}

describe('no work for strangers', () => {
  // workerd answers a method its HTTP parser does not know (`X-1`, `LINK`, `M-SEARCH`, ...) with
  // 501 itself, before any Worker code runs; every method it knows reaches the Worker. So the
  // flood mixes both: each method the runtime delivers that the route does not name, and
  // invented ones (tests/strangers.rs sends 4,000 distinct invented methods through the pipeline).
  // TRACE reaches the Worker too, but is refused with 405 before any challenge (tests/gate.test.mjs).
  test('4,000 unconfigured and invented methods on a route without a method: all answered, challenge latency in the same range, answers unchanged', async (t) => {
    const before = counts();
    const decisions = () => ctx.worker.logs.filter((l) => l.includes('"x402":"decision"')).length;
    const first = await raw('/any/x');
    const unnamed = ['PURGE', 'COPY', 'LOCK', 'MKCOL', 'MOVE', 'PROPFIND', 'PROPPATCH', 'SEARCH', 'UNLOCK', 'ACL', 'REPORT', 'MKACTIVITY', 'CHECKOUT', 'MERGE', 'NOTIFY', 'SUBSCRIBE', 'UNSUBSCRIBE', 'QUERY', 'BAN'];
    const shared = await raw('/any/x', { method: 'PROPFIND' });
    assert.equal(shared.status, 402);
    assert.equal(unb64(shared.headers['payment-required']).extensions, undefined, 'no bazaar extension for a method the route does not name');
    await challengeTimes(100); // warm
    const beforeTimes = await challengeTimes(400);
    // The warm-up's decision lines may still be on their way from workerd's stdout: count from
    // when they have stopped arriving.
    let decided = decisions();
    for (let quiet = 0; quiet < 3;) {
      await new Promise((r) => setTimeout(r, 100));
      const now = decisions();
      quiet = now === decided ? quiet + 1 : 0;
      decided = now;
    }
    const started = Date.now();
    const answers = await inParallel(Array.from({ length: 4000 }, (_, i) => () => {
      const method = i % 2 ? `X-${i}-${'Q'.repeat(i % 40)}` : unnamed[(i / 2) % unnamed.length];
      return raw('/any/x', { method }).then((r) => ({ method, status: r.status, required: r.headers['payment-required'], body: r.body }));
    }), 8);
    const floodMs = Date.now() - started;
    const delivered = answers.filter((a) => !a.method.startsWith('X-'));
    const invented = answers.filter((a) => a.method.startsWith('X-'));
    assert.ok(delivered.every((a) => a.status === 402 && a.required === shared.headers['payment-required'] && a.body === shared.body), 'every unnamed method: the same challenge, byte for byte');
    assert.ok(invented.every((a) => a.status === 501 && a.body === 'ERROR: Unrecognized request method.'), 'every invented method: the runtime\'s 501');
    await until(() => decisions() >= decided + delivered.length);
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(decisions(), decided + delivered.length, 'only the delivered methods reached the Worker');
    const afterTimes = await challengeTimes(400);
    const [b, a] = [median(beforeTimes), median(afterTimes)];
    t.diagnostic(`GET challenge median ${b.toFixed(3)} ms (p90 ${p90(beforeTimes).toFixed(3)}) before, ${a.toFixed(3)} ms (p90 ${p90(afterTimes).toFixed(3)}) after 4,000 requests of ${unnamed.length} unnamed and 2,000 invented methods (sent in ${floodMs} ms, 8 at a time)`);
    assert.ok(a <= 3 * b + 1, `median ${a} ms after vs ${b} ms before`);
    // The Worker still answers, byte for byte as before.
    const last = await raw('/any/x');
    assert.equal(last.headers['payment-required'], first.headers['payment-required']);
    assert.equal(last.body, first.body);
    assert.deepEqual(counts(), before, 'origin and facilitator untouched');
  });

  test('100 random pass tokens from one client: looked up only within its challenge limit, then 429; a real pass still works', async () => {
    const ip = '203.0.113.50';
    const before = counts();
    const answers = [];
    for (let i = 0; i < 100; i++) {
      const carrier = i % 2 ? { 'x402-pass': token() } : { cookie: `x402_pass=${token()}` };
      const res = await fetch(url('/premium/a'), { headers: { 'cf-connecting-ip': ip, ...carrier } });
      await res.arrayBuffer();
      answers.push({ status: res.status, error: res.status === 402 ? unb64(res.headers.get('payment-required')).error : null });
    }
    // A lookup and its challenge count one each under the limit: at most LIMIT / 2 lookups
    // answered, every later token refused with 429 without being looked up.
    assert.deepEqual(answers.map((a) => a.status), [...Array(LIMIT / 2).fill(402), ...Array(100 - LIMIT / 2).fill(429)]);
    assert.ok(answers.slice(0, LIMIT / 2).every((a) => a.error.startsWith('pass_unknown: ')));
    assert.deepEqual(counts(), before);

    // Paying from that client is never limited, and the pass it buys works for it at once.
    const requirements = (await challengeFrom('203.0.113.51')).accepts[0];
    const paid = await fetch(url('/premium/a'), { headers: { 'cf-connecting-ip': ip, 'payment-signature': await paymentHeader(KEYS.payer, requirements) } });
    assert.equal(paid.status, 200, await paid.clone().text());
    await paid.arrayBuffer();
    const pass = paid.headers.get('x402-pass');
    assert.ok(pass);
    for (const from of [ip, '203.0.113.52']) {
      const res = await fetch(url('/premium/b'), { headers: { 'cf-connecting-ip': from, 'x402-pass': pass } });
      assert.equal(res.status, 200, from);
      await res.arrayBuffer();
    }
  });

  test('sign-ins from throwaway keys are limited per client before the ledger; the payer with a pass still signs in', async () => {
    const ip = '203.0.113.60';
    const statuses = [];
    for (let i = 0; i < 12; i++) {
      const ext = (await challengeFrom(`198.51.100.${i}`)).extensions['sign-in-with-x'];
      const info = { ...ext.info, chainId: ext.supportedChains[0].chainId, type: ext.supportedChains[0].type };
      const header = encodeSIWxHeader(await createSIWxPayload(info, privateKeyToAccount(generatePrivateKey()), url('/premium/a')));
      const res = await fetch(url('/premium/a'), { headers: { 'cf-connecting-ip': ip, 'sign-in-with-x': header } });
      await res.arrayBuffer();
      statuses.push(res.status === 402 ? unb64(res.headers.get('payment-required')).error.split(':')[0] : res.status);
    }
    // A sign-in and its challenge count one each: LIMIT / 2 reach the ledger (and find no pass).
    assert.deepEqual(statuses, [...Array(LIMIT / 2).fill('siwx_no_pass'), ...Array(12 - LIMIT / 2).fill(429)]);

    // The payer (a pass bought in the test before) signs in from its own address.
    const ext = (await challengeFrom('203.0.113.61')).extensions['sign-in-with-x'];
    const info = { ...ext.info, chainId: ext.supportedChains[0].chainId, type: ext.supportedChains[0].type };
    const header = encodeSIWxHeader(await createSIWxPayload(info, privateKeyToAccount(KEYS.payer), url('/premium/a')));
    const res = await fetch(url('/premium/a'), { headers: { 'cf-connecting-ip': '203.0.113.61', 'sign-in-with-x': header } });
    assert.equal(res.status, 200, await res.clone().text());
    await res.arrayBuffer();
  });

  test('IPv6 clients are limited per /64', async () => {
    const statuses = [];
    for (let i = 1; i <= LIMIT + 1; i++) {
      const res = await fetch(url('/premium/a'), { headers: { 'cf-connecting-ip': `2001:db8:77:1:${i.toString(16)}::${i}` } });
      await res.arrayBuffer();
      statuses.push(res.status);
    }
    assert.deepEqual(statuses, [...Array(LIMIT).fill(402), 429], 'addresses of one /64 share one limit');
    const other = await fetch(url('/premium/a'), { headers: { 'cf-connecting-ip': '2001:db8:77:2::1' } });
    await other.arrayBuffer();
    assert.equal(other.status, 402, 'the next /64 has its own');
  });
});
