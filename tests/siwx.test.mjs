// Wallet sign-in re-access (x402 `sign-in-with-x`) against the built Worker (Miniflare) on the
// local chain, driven by the official client helpers of @x402/extensions 2.27.0: a payer who
// lost the pass token gets in again with the wallet that paid, without paying; and the refusals.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { privateKeyToAccount } from 'viem/accounts';
import { createSIWxPayload, encodeSIWxHeader, wrapFetchWithSIWx } from '@x402/extensions/sign-in-with-x';

import { KEYS, balanceOf, startStack, startWorker } from './support/stack.mjs';
import { payingFetch } from './support/client.mjs';
import { unb64 } from './support/pay.mjs';

const ROUTES = [
  { route: 'GET /premium/*', price: '$0.05', description: 'Premium', pass: { ttl: '10m' } },
  { route: 'GET /bundle/*', price: '$0.02', description: 'Bundle', pass: { ttl: '1h', maxRequests: 5 } },
  { route: 'GET /weather', price: '$0.01' },
];
const ctx = {};

before(async () => {
  ctx.stack = await startStack();
  ctx.worker = await startWorker({ originUrl: ctx.stack.origin.url, facilitatorUrl: ctx.stack.facilitator.url, payTo: ctx.stack.payTo, routes: ROUTES, publicUrl: true });
});
after(async () => {
  await ctx.worker?.stop();
  await ctx.stack?.stop();
});

const url = (p) => `${ctx.worker.url}${p}`;

/** The challenge's sign-in info, completed for the first supported chain (as the client does). */
async function signInInfo(p) {
  const res = await fetch(url(p));
  await res.arrayBuffer();
  const ext = unb64(res.headers.get('payment-required')).extensions?.['sign-in-with-x'];
  assert.ok(ext, `${p} advertises sign-in-with-x`);
  return { ...ext.info, chainId: ext.supportedChains[0].chainId, type: ext.supportedChains[0].type };
}

async function signedHeader(p, key, edit = (info) => info, requestUrl = url(p)) {
  const info = edit(await signInInfo(p));
  return encodeSIWxHeader(await createSIWxPayload(info, privateKeyToAccount(key), requestUrl));
}

async function refused(p, header) {
  const res = await fetch(url(p), { headers: { 'sign-in-with-x': header } });
  assert.equal(res.status, 402);
  await res.arrayBuffer();
  return unb64(res.headers.get('payment-required')).error;
}

describe('sign-in-with-x', () => {
  test('the 402 of a route that sells a pass advertises it, bound to PUBLIC_URL; other routes do not', async () => {
    const info = await signInInfo('/premium/a');
    const origin = new URL(ctx.worker.url);
    assert.equal(info.domain, origin.host);
    assert.equal(info.uri, `${ctx.worker.url}/premium/a`);
    assert.equal(info.version, '1');
    assert.match(info.nonce, /^[0-9a-f]{32}$/);
    assert.equal(info.chainId, 'eip155:84532');
    assert.equal(info.type, 'eip191');
    const plain = await fetch(url('/weather'));
    await plain.arrayBuffer();
    assert.equal(unb64(plain.headers.get('payment-required')).extensions?.['sign-in-with-x'], undefined);
  });

  test('a payer who lost the token gets in again with the wallet that paid, without paying (official client)', async () => {
    const bought = await payingFetch(KEYS.payer)(url('/premium/lost'));
    assert.equal(bought.status, 200);
    await bought.arrayBuffer(); // the X402-Pass token is dropped: "lost"
    const settles = ctx.stack.facilitator.calls.settle;
    const balance = await balanceOf(ctx.stack.rpcUrl, ctx.stack.payer);
    const res = await wrapFetchWithSIWx(fetch, privateKeyToAccount(KEYS.payer))(url('/premium/again'));
    assert.equal(res.status, 200);
    assert.equal((await res.json()).report, '/premium/again');
    assert.equal(ctx.stack.facilitator.calls.settle, settles, 'no payment');
    assert.equal(await balanceOf(ctx.stack.rpcUrl, ctx.stack.payer), balance);
    assert.equal(ctx.stack.origin.requests.at(-1).headers['sign-in-with-x'], undefined, 'the proof is not forwarded');
  });

  test('a reused nonce is refused', async () => {
    const header = await signedHeader('/premium/x', KEYS.payer);
    const first = await fetch(url('/premium/x'), { headers: { 'sign-in-with-x': header } });
    assert.equal(first.status, 200);
    await first.arrayBuffer();
    assert.match(await refused('/premium/x', header), /^invalid_siwx_nonce/);
  });

  test('a wallet that never paid, and a pass on another scope, are refused', async () => {
    assert.match(await refused('/premium/x', await signedHeader('/premium/x', KEYS.payer2)), /^siwx_no_pass/);
    // KEYS.payer holds a /premium/* pass, not a /bundle/* one.
    assert.match(await refused('/bundle/x', await signedHeader('/bundle/x', KEYS.payer)), /^siwx_no_pass/);
  });

  test('a proof for another path, another chain, or with a nonce the client invented is refused', async () => {
    const originBefore = ctx.stack.origin.requests.length;
    assert.match(await refused('/premium/y', await signedHeader('/premium/x', KEYS.payer)), /^invalid_siwx_uri_mismatch/);
    assert.match(await refused('/premium/x', await signedHeader('/premium/x', KEYS.payer, (info) => ({ ...info, chainId: 'eip155:8453' }))), /^invalid_siwx_chain/);
    const invented = await signedHeader('/premium/x', KEYS.payer, (info) => ({ ...info, nonce: '0123456789abcdef0123456789abcdef' }));
    assert.match(await refused('/premium/x', invented), /^invalid_siwx_nonce_unknown/);
    assert.equal(ctx.stack.origin.requests.length, originBefore, 'the origin never ran');
  });

  test('a message for another domain, or an expired one, is refused', async () => {
    const elsewhere = await signedHeader('/premium/x', KEYS.payer, (info) => ({ ...info, domain: 'evil.example', uri: 'https://evil.example/premium/x' }), 'https://evil.example/premium/x');
    assert.match(await refused('/premium/x', elsewhere), /^invalid_siwx_domain_mismatch/);
    const old = new Date(Date.now() - 10 * 60 * 1000);
    const stale = await signedHeader('/premium/x', KEYS.payer, (info) => ({ ...info, issuedAt: old.toISOString(), expirationTime: new Date(old.getTime() + 5 * 60 * 1000).toISOString() }));
    assert.match(await refused('/premium/x', stale), /^invalid_siwx_(issued_at_too_old|expired)/);
  });
});
