// Paid access that means what it costs, against the built Worker (Miniflare) with its ledger
// Durable Object and KV, on the local chain with the official facilitator and the official v2
// client: per-request pricing by default, passes by time and by count (exact under 100
// concurrent requests), scopes route / path / group, the cookie (its Path never injected),
// revocation (tombstones, honest counts, tokens in the body), the denylist, a counted request
// given back when the origin fails.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { keccak256, toBytes } from 'viem';

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
  { route: 'GET /flaky', price: '$0.01', pass: { ttl: '1h', maxRequests: 3 } },
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
/** `POST {ADMIN_PATH}{p}` with the admin token and `body` (an object, sent as JSON). */
const admin = (p, body) => rawRequest(ctx.worker.url, `/.well-known/x402/admin${p}`, {
  method: 'POST', headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body),
});
/** The pass id of a token: keccak256, hex (KV `pass:<id>`, `revoked:<id>`). */
const passId = (token) => keccak256(toBytes(token)).slice(2);
const kv = () => ctx.worker.mf.getKVNamespace('PASSES');
async function waitForKv(key) {
  for (let i = 0; i < 100; i++) {
    const v = await (await kv()).get(key);
    if (v !== null) return v;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${key} never reached KV`);
}

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

  test('a pass advertised for 10 requests, then 100 concurrent requests on it: exactly 10 served (the paid one first), 91 told it is used up', async () => {
    const seen = ctx.stack.origin.requests.length;
    const token = await buy('/bundle/x');
    const answers = await Promise.all(Array.from({ length: 100 }, () => withPass('/bundle/x', token)));
    assert.equal(answers.filter((a) => a.status === 200).length, 9);
    const refused = answers.filter((a) => a.status === 402);
    assert.equal(refused.length, 91);
    assert.ok(refused.every((a) => /^pass_used_up: this pass has used all the requests it bought/.test(a.error)));
    assert.equal(ctx.stack.origin.requests.length - seen, 10, 'the origin ran exactly the 10 times advertised');
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

describe('the cookie path and failed origin calls', () => {
  test('a path with cookie attributes in it cannot add them to the cookie', async () => {
    const res = await pay('/item/1;Domain=example.com;Path=/');
    assert.equal(res.status, 200);
    await res.arrayBuffer();
    const cookie = res.headers.get('set-cookie');
    assert.match(cookie, /^x402_pass=[A-Za-z0-9_-]{43}; Path=\/item; Max-Age=3600; HttpOnly; Secure; SameSite=Lax$/);
    const token = res.headers.get('x402-pass');
    assert.equal((await withPass('/item/1;Domain=example.com;Path=/', token)).status, 200, 'the path paid for');
    assert.match((await withPass('/item/1', token)).error, /^pass_out_of_scope/, 'and only that path');
  });

  test('an origin 5xx gives a counted pass its request back', async () => {
    const token = await buy('/flaky');
    const seen = ctx.stack.origin.requests.length;
    for (let i = 0; i < 3; i++) assert.equal((await withPass('/flaky?status=500', token)).status, 500);
    assert.equal((await withPass('/flaky?status=503', token)).status, 503);
    assert.equal((await withPass('/flaky?status=404', token)).status, 404, 'a 4xx is the origin\'s answer: counted');
    assert.equal((await withPass('/flaky?status=200', token)).status, 200);
    assert.match((await withPass('/flaky?status=200', token)).error, /^pass_used_up/);
    assert.equal(ctx.stack.origin.requests.length - seen, 6, 'four failures, a 404 and a 200 reached the origin');
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
    const res = await admin('/revoke', { pass: a });
    assert.equal(res.status, 200);
    assert.deepEqual(JSON.parse(res.body), { revoked: 1, alreadyRevoked: 0, unknown: 0, denied: null });
    assert.match((await withPass('/bundle/r', a)).error, /^pass_revoked/, 'a counted pass: refused at once');
    assert.equal((await withPass('/premium/r', b)).status, 200);
    const all = JSON.parse((await admin('/revoke', { payer: address(KEYS.payer2) })).body);
    assert.equal(all.revoked, 1, 'b, now');
    assert.equal(all.alreadyRevoked, 1, 'a, before');
    assert.match((await withPass('/premium/r', b)).error, /^pass_revoked/);
    await ctx.worker.restart();
    assert.match((await withPass('/premium/r', b)).error, /^pass_revoked/, 'a fresh isolate reads the tombstone from KV');
  });

  test('an unlimited pass revoked before its KV record exists here stays revoked when the record arrives', async () => {
    const token = await buy('/premium/late');
    const id = passId(token);
    const record = await waitForKv(`pass:${id}`);
    // Another location: a fresh isolate, and KV without the record yet.
    await (await kv()).delete(`pass:${id}`);
    await ctx.worker.restart();
    const res = await admin('/revoke', { pass: token });
    assert.equal(res.status, 200, res.body);
    assert.deepEqual(JSON.parse(res.body), { revoked: 1, alreadyRevoked: 0, unknown: 0, denied: null }, 'found through its Durable Object');
    assert.ok(await (await kv()).get(`revoked:${id}`), 'the tombstone is in KV');
    // The sale's record reaches this location after the revocation.
    await (await kv()).put(`pass:${id}`, record);
    const seen = ctx.stack.origin.requests.length;
    assert.match((await withPass('/premium/late', token)).error, /^pass_revoked/, 'the revoking isolate');
    await ctx.worker.restart();
    assert.match((await withPass('/premium/late', token)).error, /^pass_revoked/, 'a fresh isolate: record, then tombstone, from KV');
    assert.equal(ctx.stack.origin.requests.length, seen, 'the origin never ran for it');
  });

  test('revoking a token that was never sold answers 0', async () => {
    const never = 'N'.repeat(43);
    for (let i = 0; i < 2; i++) {
      const res = await admin('/revoke', { pass: never });
      assert.equal(res.status, 200, res.body);
      assert.deepEqual(JSON.parse(res.body), { revoked: 0, alreadyRevoked: 0, unknown: 1, denied: null });
    }
  });

  test('a pass token in the query string is refused, in the body it works', async () => {
    const token = await buy('/premium/query');
    const res = await admin(`/revoke?pass=${token}`);
    assert.equal(res.status, 400);
    assert.match(JSON.parse(res.body).message, /query string.*JSON body/);
    assert.ok(!res.body.includes(token), 'the answer does not echo the token');
    assert.equal((await withPass('/premium/query', token)).status, 200, 'nothing revoked');
    for (const body of [{ token }, { pass: token, extra: 1 }, { pass: 'short' }]) {
      assert.equal((await admin('/revoke', body)).status, 400, JSON.stringify(body));
    }
    const big = await rawRequest(ctx.worker.url, '/.well-known/x402/admin/revoke', {
      method: 'POST', headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'transfer-encoding': 'chunked' }, body: JSON.stringify({ pass: token, pad: 'x'.repeat(10000) }),
    });
    assert.equal(big.status, 400, 'a body over 4 KiB, without a length, is cut off');
    assert.equal((await withPass('/premium/query', token)).status, 200, 'still nothing revoked');
    assert.equal(JSON.parse((await admin('/revoke', { pass: token })).body).revoked, 1);
    assert.match((await withPass('/premium/query', token)).error, /^pass_revoked/);
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
    const deny = await admin('/deny', { payer: address(KEYS.payer2) });
    assert.equal(JSON.parse(deny.body).denied, address(KEYS.payer2));
    const before = { ...ctx.stack.facilitator.calls };
    const ran = ctx.stack.origin.requests.length;
    const refused = await pay('/weather', KEYS.payer2);
    assert.equal(refused.status, 402);
    assert.match((await refused.json()).error, /^payer_denied/);
    assert.deepEqual(ctx.stack.facilitator.calls, before, 'no facilitator call');
    assert.equal(ctx.stack.origin.requests.length, ran, 'the origin untouched');
  });
});
