// What an operator runs on, against the built Worker (Miniflare) on the local chain with the
// official facilitator: one JSON decision line per priced request (no payment headers, tokens or
// secrets), the Analytics Engine binding, Workers Rate Limiting bindings (429 before the origin
// and the facilitator), and MODE=shadow (forwarded as if free, what would have been charged is
// logged). Counts origin hits, facilitator calls and balances.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { KEYS, balanceOf, startStack, startWorker } from './support/stack.mjs';
import { paymentHeader, unb64 } from './support/pay.mjs';
import { payingFetch } from './support/client.mjs';

let stack;
before(async () => {
  stack = await startStack();
});
after(async () => {
  await stack?.stop();
});

const counts = () => ({ origin: stack.origin.requests.length, verify: stack.facilitator.calls.verify, settle: stack.facilitator.calls.settle });

function decisions(w) {
  return w.logs.filter((l) => l.includes('"x402":"decision"')).map((l) => JSON.parse(l.slice(l.indexOf('{'))));
}

async function until(predicate, ms = 3000) {
  const end = Date.now() + ms;
  while (!predicate() && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
}

async function requirementsOf(w, path = '/weather') {
  const res = await fetch(`${w.url}${path}`);
  await res.arrayBuffer();
  return unb64(res.headers.get('payment-required')).accepts[0];
}

const starts = (w) => w.logs.filter((l) => l.includes('"x402":"start"')).map((l) => JSON.parse(l.slice(l.indexOf('{'))));

describe('start-up (the configuration parsed and the challenges laid out before the first request)', () => {
  test('one start line per isolate, before any request, naming what was loaded; the warm-up route is not the Worker\'s', async () => {
    const w = await startWorker({ originUrl: stack.origin.url, facilitatorUrl: stack.facilitator.url, payTo: stack.payTo, extraBindings: { DECISION_LOG: 'all' } });
    try {
      await until(() => starts(w).length > 0);
      const [{ prices, ...start }] = starts(w);
      assert.equal(starts(w).length, 1);
      assert.deepEqual(start, { x402: 'start', mode: 'enforce', routes: 7, priced: 7 }, 'logged at start-up, without a request');
      assert.equal(prices.length, 7, 'what each route charges');
      assert.match(prices[0], /^GET \/weather: .*10000 atomic units of 0x[0-9a-fA-F]{40}\)? on eip155:\d+, payTo 0x[0-9a-fA-F]{40}$/);
      const before = counts();
      // The start-up warm-up ran `GET /warm-up` under a configuration of its own; here that path
      // is unpriced, so it goes to the origin (which has no such page) and is not a decision.
      const res = await fetch(`${w.url}/warm-up`);
      assert.equal(res.status, 404);
      assert.equal((await res.json()).error, 'not found', 'the origin answered');
      assert.equal(counts().origin, before.origin + 1);
      const challenge = await fetch(`${w.url}/weather`);
      assert.equal(challenge.status, 402);
      await challenge.arrayBuffer();
      await until(() => decisions(w).length === 1);
      assert.deepEqual(decisions(w).map((d) => [d.route, d.outcome]), [['GET /weather', 'challenge']], 'only the real request is a decision');
      assert.equal(starts(w).length, 1);
      assert.deepEqual([counts().verify, counts().settle], [before.verify, before.settle]);
    } finally {
      await w.stop();
    }
  });

  test('no start line with DECISION_LOG = "none", nor when the configuration is invalid (which every request still reports)', async () => {
    const quiet = await startWorker({ originUrl: stack.origin.url, facilitatorUrl: stack.facilitator.url, payTo: stack.payTo, extraBindings: { DECISION_LOG: 'none' } });
    const broken = await startWorker({ originUrl: stack.origin.url, facilitatorUrl: stack.facilitator.url, payTo: 'not an address' });
    try {
      const res = await fetch(`${quiet.url}/weather`);
      assert.equal(res.status, 402);
      await res.arrayBuffer();
      const bad = await fetch(`${broken.url}/weather`);
      assert.equal(bad.status, 500);
      assert.equal((await bad.json()).error, 'paywall_misconfigured');
      await until(() => broken.logs.some((l) => l.includes('invalid configuration')));
      assert.ok(broken.logs.some((l) => l.includes('invalid configuration') && l.includes('not an address')), 'the request reports the configuration error');
      assert.deepEqual(starts(quiet), []);
      assert.deepEqual(starts(broken), []);
    } finally {
      await quiet.stop();
      await broken.stop();
    }
  });
});

describe('decision logs and metrics', () => {
  test('by default (DECISION_LOG = "payments") a plain challenge writes no line; a payment and a refused payment do', async () => {
    const w = await startWorker({ originUrl: stack.origin.url, facilitatorUrl: stack.facilitator.url, payTo: stack.payTo });
    try {
      for (let i = 0; i < 3; i++) await (await fetch(`${w.url}/weather`)).arrayBuffer();
      const paid = await payingFetch(KEYS.payer)(`${w.url}/premium/report`);
      assert.equal(paid.status, 200);
      await paid.arrayBuffer();
      await (await fetch(`${w.url}/weather`, { headers: { 'payment-signature': 'bm90IGpzb24=' } })).arrayBuffer();
      await until(() => decisions(w).length >= 2);
      await new Promise((r) => setTimeout(r, 200));
      assert.deepEqual(decisions(w).map((d) => [d.route, d.outcome]), [['GET /premium/*', 'paid'], ['GET /weather', 'refused']]);
    } finally {
      await w.stop();
    }
  });

  test('with DECISION_LOG = "all": one JSON line per priced request, naming route, outcome, payer, price and transaction, and none of the secrets', async () => {
    const w = await startWorker({
      originUrl: stack.origin.url, facilitatorUrl: stack.facilitator.url, payTo: stack.payTo,
      extraBindings: { FACILITATOR_AUTH: 'Bearer do-not-log-me', DECISION_LOG: 'all' },
      workerOptions: { analyticsEngineDatasets: { METRICS: { dataset: 'x402_decisions' } } },
    });
    try {
      const challenge = await fetch(`${w.url}/weather`);
      await challenge.arrayBuffer();
      const paid = await payingFetch(KEYS.payer)(`${w.url}/premium/report`);
      assert.equal(paid.status, 200);
      await paid.arrayBuffer();
      const token = paid.headers.get('x402-pass');
      const onPass = await fetch(`${w.url}/premium/again`, { headers: { 'x402-pass': token } });
      await onPass.arrayBuffer();
      const bad = await fetch(`${w.url}/weather`, { headers: { 'payment-signature': 'bm90IGpzb24=' } });
      await bad.arrayBuffer();
      await fetch(`${w.url}/free`).then((r) => r.arrayBuffer());
      await until(() => decisions(w).length >= 5);
      // A line for the free request would come last: give it time to arrive before counting.
      await new Promise((r) => setTimeout(r, 200));
      const ds = decisions(w);
      assert.deepEqual(ds.map((d) => [d.route, d.outcome, d.reason ?? null]), [
        ['GET /weather', 'challenge', 'no_payment'],
        ['GET /premium/*', 'challenge', 'no_payment'],
        ['GET /premium/*', 'paid', null],
        ['GET /premium/*', 'pass', null],
        ['GET /weather', 'refused', 'invalid_payload'],
      ], 'one line per priced request; none for the free path');
      const [, , sale, pass] = ds;
      assert.equal(sale.payer, stack.payer);
      assert.deepEqual([sale.amount, sale.network, sale.originStatus], ['50000', 'eip155:84532', 200]);
      assert.equal(sale.asset.toLowerCase(), '0x036cbd53842c5426634e7929541ec2318f3dcf7e');
      assert.match(sale.transaction, /^0x[0-9a-f]{64}$/);
      assert.ok(sale.facilitatorMs >= 0);
      assert.equal(pass.payer, stack.payer);
      const all = w.logs.join('\n');
      for (const secret of [token, 'do-not-log-me', 'bm90IGpzb24=']) assert.ok(!all.includes(secret), `logs never hold ${secret.slice(0, 12)}…`);
    } finally {
      await w.stop();
    }
  });
});

describe('rate limits', () => {
  test('challenges per IP and paid attempts per payer: 429 with Retry-After, origin and facilitator untouched', async () => {
    const w = await startWorker({
      originUrl: stack.origin.url, facilitatorUrl: stack.facilitator.url, payTo: stack.payTo,
      routes: [{ route: 'GET /weather', price: '$0.01', maxTimeoutSeconds: 120, rateLimit: { challenge: 'CHALLENGES', paid: 'PAYERS' } }],
      workerOptions: { ratelimits: { CHALLENGES: { namespace_id: '1001', simple: { limit: 2, period: 60 } }, PAYERS: { namespace_id: '1002', simple: { limit: 1, period: 60 } } } },
    });
    try {
      const ip = { 'cf-connecting-ip': '203.0.113.9' };
      const before = counts();
      for (let i = 0; i < 2; i++) assert.equal((await fetch(`${w.url}/weather`, { headers: ip }).then(async (r) => (await r.arrayBuffer(), r))).status, 402);
      const over = await fetch(`${w.url}/weather`, { headers: ip });
      assert.equal(over.status, 429);
      assert.equal(over.headers.get('retry-after'), '10');
      assert.equal((await over.json()).error, 'rate_limited');
      const other = await fetch(`${w.url}/weather`, { headers: { 'cf-connecting-ip': '203.0.113.10' } });
      await other.arrayBuffer();
      assert.equal(other.status, 402, 'another IP is not limited');
      assert.deepEqual(counts(), before);

      const requirements = await requirementsOf(w);
      const first = await fetch(`${w.url}/weather`, { headers: { 'payment-signature': await paymentHeader(KEYS.payer, requirements) } });
      assert.equal(first.status, 200, await first.clone().text());
      await first.arrayBuffer();
      const balance = await balanceOf(stack.rpcUrl, stack.payer);
      const mid = counts();
      const second = await fetch(`${w.url}/weather`, { headers: { 'payment-signature': await paymentHeader(KEYS.payer, requirements) } });
      assert.equal(second.status, 429, 'the payer is over its limit');
      await second.arrayBuffer();
      assert.deepEqual(counts(), mid, 'origin and facilitator untouched');
      assert.equal(await balanceOf(stack.rpcUrl, stack.payer), balance, 'nothing charged');
      await until(() => decisions(w).some((d) => d.outcome === 'rate_limited' && d.reason === 'payer'));
      assert.ok(decisions(w).some((d) => d.outcome === 'rate_limited' && d.reason === 'challenges'));
    } finally {
      await w.stop();
    }
  });

  test('failed payment attempts per IP: over the limit the IP is refused before the facilitator', async () => {
    const w = await startWorker({
      originUrl: stack.origin.url, facilitatorUrl: stack.facilitator.url, payTo: stack.payTo,
      routes: [{ route: 'GET /weather', price: '$0.01', maxTimeoutSeconds: 120, verify: 'always' }],
      extraBindings: { RATE_LIMITS: { failed: 'FAILED' } },
      workerOptions: { ratelimits: { FAILED: { namespace_id: '1003', simple: { limit: 2, period: 60 } } } },
    });
    try {
      const ip = { 'cf-connecting-ip': '203.0.113.20' };
      const requirements = await requirementsOf(w);
      // Signed for another amount: refused locally, no facilitator call.
      const wrong = () => paymentHeader(KEYS.payer, requirements, { authorization: { value: '1' } });
      for (let i = 0; i < 2; i++) {
        const r = await fetch(`${w.url}/weather`, { headers: { ...ip, 'payment-signature': await wrong() } });
        await r.arrayBuffer();
        assert.equal(r.status, 402);
      }
      const third = await fetch(`${w.url}/weather`, { headers: { ...ip, 'payment-signature': await wrong() } });
      await third.arrayBuffer();
      assert.equal(third.status, 429);
      assert.equal(third.headers.get('retry-after'), '60');
      const before = counts();
      const good = await fetch(`${w.url}/weather`, { headers: { ...ip, 'payment-signature': await paymentHeader(KEYS.payer, requirements) } });
      await good.arrayBuffer();
      assert.equal(good.status, 429, 'even a good payment from the blocked IP waits');
      assert.deepEqual(counts(), before, 'origin and facilitator untouched');
      const elsewhere = await fetch(`${w.url}/weather`, { headers: { 'cf-connecting-ip': '203.0.113.21', 'payment-signature': await paymentHeader(KEYS.payer, requirements) } });
      await elsewhere.arrayBuffer();
      assert.equal(elsewhere.status, 200);
    } finally {
      await w.stop();
    }
  });

  test('a route naming a rate limit binding that is not declared is a configuration error', async () => {
    const w = await startWorker({
      originUrl: stack.origin.url, facilitatorUrl: stack.facilitator.url, payTo: stack.payTo,
      routes: [{ route: 'GET /weather', price: '$0.01', rateLimit: { challenge: 'NOPE' } }],
    });
    try {
      const res = await fetch(`${w.url}/weather`);
      assert.equal(res.status, 500);
      assert.match((await res.json()).message, /rate limit binding `NOPE` is missing: declare it under \[\[ratelimits\]\]/, 'a binding name is no secret: the 500 names it');
      assert.ok(w.logs.some((l) => l.includes('rate limit binding `NOPE` is missing')), 'the log names the binding');
    } finally {
      await w.stop();
    }
  });

  test('an MCP tool naming a rate limit binding that is not declared is a configuration error too', async () => {
    // No priced route: only the MCP tool is priced, and only it names the limiter.
    const w = await startWorker({
      originUrl: stack.origin.url, facilitatorUrl: stack.facilitator.url, payTo: stack.payTo,
      routes: [{ route: 'GET /health', free: true }],
      extraBindings: { MCP: [{ path: '/mcp', tools: { search: { price: '$0.01', rateLimit: { paid: 'NOPE' } } } }] },
    });
    try {
      const before = counts();
      const res = await fetch(`${w.url}/health`);
      assert.equal(res.status, 500);
      assert.match((await res.json()).message, /rate limit binding `NOPE` is missing/);
      assert.deepEqual(counts(), before, 'nothing forwarded, nothing sent to the facilitator');
    } finally {
      await w.stop();
    }
  });
});

describe('MODE = "shadow"', () => {
  test('every request is forwarded as if free; what would have been charged is logged; nothing is verified or settled', async () => {
    const w = await startWorker({ originUrl: stack.origin.url, facilitatorUrl: stack.facilitator.url, payTo: stack.payTo, extraBindings: { MODE: 'shadow' } });
    try {
      const before = counts();
      const balance = await balanceOf(stack.rpcUrl, stack.payer);
      const plain = await fetch(`${w.url}/weather`);
      assert.equal(plain.status, 200);
      assert.equal((await plain.json()).city, 'Lisbon');
      const req = await fetch(`${w.url}/premium/x`);
      await req.arrayBuffer();
      const requirements = { scheme: 'exact', network: 'eip155:84532', amount: '10000', asset: '0x036CbD53842c5426634e7929541eC2318f3dCF7e', payTo: stack.payTo, maxTimeoutSeconds: 120, extra: { name: 'USDC', version: '2' } };
      const withPayment = await fetch(`${w.url}/weather`, { headers: { 'payment-signature': await paymentHeader(KEYS.payer, requirements) } });
      assert.equal(withPayment.status, 200);
      await withPayment.arrayBuffer();
      assert.equal(stack.origin.requests.at(-1).headers['payment-signature'], undefined, 'the payment header never reaches the origin');
      const after = counts();
      assert.deepEqual([after.verify - before.verify, after.settle - before.settle, after.origin - before.origin], [0, 0, 3]);
      assert.equal(await balanceOf(stack.rpcUrl, stack.payer), balance);
      await until(() => decisions(w).length >= 3);
      assert.deepEqual(decisions(w).map((d) => [d.route, d.outcome, d.reason, d.amount]), [
        ['GET /weather', 'shadow', 'no_payment', '10000'],
        ['GET /premium/*', 'shadow', 'no_payment', '50000'],
        ['GET /weather', 'shadow', 'valid_payment', '10000'],
      ]);
      assert.equal(decisions(w)[2].payer, stack.payer);
    } finally {
      await w.stop();
    }
  });
});
