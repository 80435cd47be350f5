// Paid access that means what it costs, against the built Worker (Miniflare) with its ledger
// Durable Object and KV, on the local chain with the official facilitator and the official v2
// client: per-request pricing by default, passes by time and by count (exact under 100
// concurrent requests), scopes route / path / group, the cookie, revocation, the denylist.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { KEYS, address, balanceOf, rawRequest, startStack, startWorker } from './support/stack.mjs';
import { payingFetch } from './support/client.mjs';
import { unb64 } from './support/pay.mjs';

const ADMIN_TOKEN = 'test-admin-token-0123456789abcdef0123';
const DENIED = '0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba'; // anvil #9
const ROUTES = [
  { route: 'GET /weather', price: '$0.01', description: 'Per request' },
  { route: 'GET /premium/*', price: '$0.05', description: 'Premium', pass: { ttl: '10m' } },
  { route: 'GET /bundle/*', price: '$0.02', description: 'Bundle', pass: { ttl: '1h', maxRequests: 10 } },
  { route: 'GET /item/:id', price: '$0.01', pass: { ttl: '1h', scope: 'path' } },
  { route: 'GET /reports/*', price: '$0.10', group: 'docs', pass: { ttl: '1h', scope: 'docs' } },
  { route: 'GET /summaries/*', price: '$0.05', group: 'docs' },
];
const ctx = {};

before(async () => {
  ctx.stack = await startStack();
  ctx.worker = await startWorker({
    originUrl: ctx.stack.origin.url, facilitatorUrl: ctx.stack.facilitator.url, payTo: ctx.stack.payTo, routes: ROUTES,
    extraBindings: { ADMIN_TOKEN, DENYLIST: address(DENIED) },
  });
});
after(async () => {
  await ctx.worker?.stop();
  await ctx.stack?.stop();
});

const url = (p) => `${ctx.worker.url}${p}`;
const pay = (p, key = KEYS.payer) => payingFetch(key)(url(p));
async function buy(p, key) {
  const res = await pay(p, key);
  assert.equal(res.status, 200, p);
  await res.arrayBuffer();
  return res.headers.get('x402-pass');
}
async function withPass(p, token) {
  const res = await fetch(url(p), { headers: { 'x402-pass': token } });
  const text = await res.text();
  const pr = res.headers.get('payment-required');
  return { status: res.status, error: pr ? unb64(pr).error : null, text };
}
const admin = (p) => rawRequest(ctx.worker.url, `/.well-known/x402/admin${p}`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });

describe('pricing', () => {
  test('without a pass every request pays: two calls, two settlements, no token', async () => {
    const settles = ctx.stack.facilitator.calls.settle;
    const before = await balanceOf(ctx.stack.rpcUrl, ctx.stack.payer);
    for (let i = 0; i < 2; i++) {
      const res = await pay('/weather');
      assert.equal(res.status, 200);
      assert.equal(res.headers.get('x402-pass'), null);
      await res.arrayBuffer();
    }
    assert.equal(ctx.stack.facilitator.calls.settle, settles + 2);
    assert.equal(await balanceOf(ctx.stack.rpcUrl, ctx.stack.payer), before - 20000n);
  });

  test('the challenge states what a payment buys', async () => {
    const res = await fetch(url('/bundle/a'));
    await res.arrayBuffer();
    assert.equal(unb64(res.headers.get('payment-required')).resource.description, 'Bundle — 10 requests within 1 hour to /bundle/*');
  });
});

describe('passes', () => {
  test('a time pass: one settlement, then its route for free, other routes still priced', async () => {
    const token = await buy('/premium/a');
    const settles = ctx.stack.facilitator.calls.settle;
    for (const p of ['/premium/b', '/premium/c/d']) assert.equal((await withPass(p, token)).status, 200, p);
    assert.equal(ctx.stack.facilitator.calls.settle, settles);
    assert.match((await withPass('/weather', token)).error, /^pass_out_of_scope/);
  });

  test('a 10-request pass under 100 concurrent requests: exactly 10 served, 90 told it is used up', async () => {
    const token = await buy('/bundle/x');
    const seen = ctx.stack.origin.requests.length;
    const answers = await Promise.all(Array.from({ length: 100 }, () => withPass('/bundle/x', token)));
    assert.equal(answers.filter((a) => a.status === 200).length, 10);
    const refused = answers.filter((a) => a.status === 402);
    assert.equal(refused.length, 90);
    assert.ok(refused.every((a) => /^pass_used_up: this pass has used all the requests it bought/.test(a.error)));
    assert.equal(ctx.stack.origin.requests.length - seen, 10, 'the origin ran exactly 10 times');
  });

  test('scope path opens only the path paid for; a group pass opens its group', async () => {
    const item = await buy('/item/7');
    assert.equal((await withPass('/item/7', item)).status, 200);
    assert.match((await withPass('/item/8', item)).error, /^pass_out_of_scope/);
    const docs = await buy('/reports/q3');
    assert.equal((await withPass('/summaries/q3', docs)).status, 200, 'another route of the group');
    assert.match((await withPass('/premium/a', docs)).error, /^pass_out_of_scope/);
  });

  test('a browser keeps browsing the scope with the cookie, which never reaches the origin', async () => {
    const res = await pay('/premium/cookie');
    await res.arrayBuffer();
    const cookie = res.headers.get('set-cookie');
    assert.match(cookie, /^x402_pass=[A-Za-z0-9_-]{43}; Path=\/premium; Max-Age=600; HttpOnly; Secure; SameSite=Lax$/);
    const jar = `theme=dark; ${cookie.split(';')[0]}`;
    const again = await rawRequest(ctx.worker.url, '/premium/next', { headers: { cookie: jar } });
    assert.equal(again.status, 200);
    assert.equal(ctx.stack.origin.requests.at(-1).headers.cookie, 'theme=dark');
  });
});

describe('revocation and the denylist', () => {
  test('the admin endpoint refuses a wrong token', async () => {
    const res = await rawRequest(ctx.worker.url, '/.well-known/x402/admin/revoke?payer=0x0000000000000000000000000000000000000001', { method: 'POST', headers: { authorization: 'Bearer nope' } });
    assert.equal(res.status, 401);
  });

  test('revoking one pass, then every pass of a payer', async () => {
    const a = await buy('/bundle/r', KEYS.payer2);
    const b = await buy('/premium/r', KEYS.payer2);
    const res = await admin(`/revoke?pass=${a}`);
    assert.equal(res.status, 200);
    assert.equal(JSON.parse(res.body).revoked, 1);
    assert.match((await withPass('/bundle/r', a)).error, /^pass_revoked/, 'a counted pass: at once, through its Durable Object');
    assert.equal((await withPass('/premium/r', b)).status, 200);
    const all = await admin(`/revoke?payer=${address(KEYS.payer2)}`);
    assert.ok(JSON.parse(all.body).revoked >= 1);
    assert.match((await withPass('/premium/r', b)).error, /^pass_revoked/, 'this isolate forgot it; KV holds the revocation');
  });

  test('a denied payer is refused before the origin and the facilitator', async () => {
    const calls = { ...ctx.stack.facilitator.calls };
    const seen = ctx.stack.origin.requests.length;
    const res = await pay('/weather', DENIED);
    assert.equal(res.status, 402);
    await res.arrayBuffer();
    assert.deepEqual(ctx.stack.facilitator.calls, calls);
    assert.equal(ctx.stack.origin.requests.length, seen);
    // Added through the admin endpoint: its later payments are refused at the ledger.
    const deny = await admin(`/deny?payer=${address(KEYS.payer2)}`);
    assert.equal(JSON.parse(deny.body).denied, address(KEYS.payer2));
    const refused = await pay('/weather', KEYS.payer2);
    assert.equal(refused.status, 402);
    assert.equal(ctx.stack.facilitator.calls.settle, calls.settle, 'nothing settled');
    await refused.arrayBuffer();
  });
});
