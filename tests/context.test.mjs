// The signed payment context (docs/payment-context.md) on the real path: the built Worker
// (Miniflare) in front of an origin that runs the page's own verification example (`jose`'s
// createRemoteJWKSet + jwtVerify, read from the page) against the key set the Worker serves. A
// paid request's context verifies and says who paid what for which route; a tampered, re-signed
// or expired one is refused by that same example; a client's copy never reaches the origin; free
// paths and pass hits carry none.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { SignJWT, calculateJwkThumbprint, decodeJwt, decodeProtectedHeader } from 'jose';

import { KEYS, ROOT, USDC, startWorker } from './support/stack.mjs';
import { decodePaymentResponseHeader, payingFetch } from './support/client.mjs';
import { paymentHeader, unb64 } from './support/pay.mjs';
import { useStackAndWorker } from './support/suite.mjs';

const ORIGIN_TIMEOUT_SECONDS = 3;

/** The origin example of docs/payment-context.md (its first `js` block), loaded as a module. */
async function docsExample() {
  const page = readFileSync(path.join(ROOT, 'docs/payment-context.md'), 'utf8');
  const code = /```js\n([\s\S]*?)```/.exec(page)[1].replace("from 'jose'", `from '${import.meta.resolve('jose')}'`);
  const file = path.join(mkdtempSync(path.join(os.tmpdir(), 'x402-context-')), 'example.mjs');
  writeFileSync(file, code);
  return (await import(pathToFileURL(file).href)).paymentContextVerifier;
}
const paymentContextVerifier = await docsExample();

// The origin: verifies every context it receives with the example and answers 403 when it fails.
const seen = [];
let verify;
const server = http.createServer(async (req, res) => {
  for await (const _ of req);
  const hit = { method: req.method, url: req.url, context: req.headers['x402-payment-context'] ?? null, claims: null, refused: null };
  seen.push(hit);
  if (hit.context !== null) {
    try {
      hit.claims = await verify(req.headers);
    } catch (e) {
      hit.refused = e.code ?? String(e);
    }
  }
  res.writeHead(hit.refused ? 403 : 200, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ path: req.url, refused: hit.refused }));
});
const originUrl = await new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(`http://127.0.0.1:${server.address().port}`)));
after(() => new Promise((r) => { server.closeAllConnections?.(); server.close(() => r()); }));

const key = crypto.generateKeyPairSync('ed25519').privateKey.export({ format: 'jwk' });
const ctx = useStackAndWorker({ originUrl, extraBindings: { PAYMENT_CONTEXT_KEY: JSON.stringify(key), ORIGIN_TIMEOUT_SECONDS: String(ORIGIN_TIMEOUT_SECONDS) } });
// Made on first use: the Worker's URL (the issuer, and where the key set is) is known by then.
let verifier;
verify = (headers) => (verifier ??= paymentContextVerifier(ctx.worker.url, originUrl))(headers);

/** A hand-signed payment for the route at `url` (its first offer), with its PAYMENT-SIGNATURE. */
async function pay(url, init = {}, payer = KEYS.payer) {
  const challenge = await fetch(url, init);
  assert.equal(challenge.status, 402);
  await challenge.arrayBuffer();
  const requirements = unb64(challenge.headers.get('payment-required')).accepts[0];
  const header = await paymentHeader(payer, requirements);
  return { requirements, header, nonce: unb64(header).payload.authorization.nonce };
}

test('the key set is the configured public key under its RFC 7638 thumbprint, without the private part', async () => {
  const res = await fetch(`${ctx.worker.url}/.well-known/x402/jwks.json`);
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('cache-control'), 'public, max-age=300');
  assert.ok(res.headers.get('etag'));
  const { keys } = await res.json();
  assert.equal(keys.length, 1);
  assert.deepEqual(keys[0], { kty: 'OKP', crv: 'Ed25519', x: key.x, kid: await calculateJwkThumbprint(key), alg: 'EdDSA', use: 'sig' });
  assert.equal(seen.filter((h) => h.url.startsWith('/.well-known')).length, 0, 'answered by the paywall, never the origin');
  const start = ctx.worker.logs.map((l) => l.slice(l.indexOf('{'))).filter((l) => l.includes('"x402":"start"')).map((l) => JSON.parse(l))[0];
  assert.deepEqual(start.paymentContext, { kid: keys[0].kid, jwks: '/.well-known/x402/jwks.json' }, 'the start line names the key');
});

test('a paid request carries a context the origin example verifies: payer, amount, route, authorization, time limit', async () => {
  const before = seen.length;
  const res = await payingFetch(KEYS.payer)(`${ctx.worker.url}/weather?city=lisbon`);
  assert.equal(res.status, 200, 'the origin accepted the context');
  await res.arrayBuffer();
  assert.equal(decodePaymentResponseHeader(res.headers.get('payment-response')).success, true, 'and the payment settled');
  const hits = seen.slice(before);
  assert.equal(hits.length, 1, 'one origin call');
  const [hit] = hits;
  assert.equal(hit.refused, null);
  const claims = hit.claims;
  assert.equal(claims.iss, ctx.worker.url);
  assert.equal(claims.aud, originUrl);
  assert.equal(claims.sub, ctx.stack.payer);
  assert.equal(claims.exp - claims.iat, ORIGIN_TIMEOUT_SECONDS);
  assert.ok(Math.abs(claims.iat - Date.now() / 1000) < 10);
  assert.match(claims.jti, new RegExp(`^eip155:84532/${USDC.toLowerCase()}/${ctx.stack.payer.toLowerCase()}/0x[0-9a-f]{64}$`));
  assert.deepEqual(claims.x402, {
    x402Version: 2,
    scheme: 'exact',
    network: 'eip155:84532',
    asset: USDC,
    amount: '10000',
    payTo: ctx.stack.payTo,
    route: 'GET /weather',
    method: 'GET',
    path: '/weather',
  });
  const header = decodeProtectedHeader(hit.context);
  assert.deepEqual(header, { alg: 'EdDSA', kid: await calculateJwkThumbprint(key), typ: 'x402-payment-context+jwt' });
});

test('a settle-first route carries it too, naming the authorization the client signed', async () => {
  const url = `${ctx.worker.url}/flaky`;
  const { header, nonce } = await pay(url, { method: 'POST' });
  const before = seen.length;
  const res = await fetch(url, { method: 'POST', headers: { 'payment-signature': header } });
  assert.equal(res.status, 200);
  await res.arrayBuffer();
  const [hit] = seen.slice(before);
  assert.equal(hit.refused, null);
  assert.equal(hit.claims.x402.route, 'POST /flaky');
  assert.equal(hit.claims.x402.method, 'POST');
  assert.equal(hit.claims.x402.amount, '10000');
  assert.equal(hit.claims.jti, `eip155:84532/${USDC.toLowerCase()}/${ctx.stack.payer.toLowerCase()}/${nonce}`);
});

test('the example refuses a tampered context, one re-signed with another key, and an expired one', async () => {
  const real = seen.findLast((h) => h.claims !== null).context;
  const claims = decodeJwt(real);
  const [h, , s] = real.split('.');
  const b64 = (v) => Buffer.from(JSON.stringify(v)).toString('base64url');
  const headers = (context) => ({ 'x402-payment-context': context });
  const refusal = (context) => verify(headers(context)).then(() => null, (e) => e.code);

  // The payload changed (a larger amount), the paywall's signature kept.
  assert.equal(await refusal(`${h}.${b64({ ...claims, x402: { ...claims.x402, amount: '999999999' } })}.${s}`), 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED');
  // The same claims signed with another Ed25519 key, under the paywall's kid or the forger's.
  const forger = crypto.generateKeyPairSync('ed25519').privateKey.export({ format: 'jwk' });
  const forge = (kid) => new SignJWT(claims).setProtectedHeader({ alg: 'EdDSA', kid, typ: 'x402-payment-context+jwt' }).sign(crypto.createPrivateKey({ key: forger, format: 'jwk' }));
  assert.equal(await refusal(await forge(decodeProtectedHeader(real).kid)), 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED');
  assert.equal(await refusal(await forge(await calculateJwkThumbprint(forger))), 'ERR_JWKS_NO_MATCHING_KEY');
  // Missing altogether.
  assert.equal(await verify({}).then(() => null, (e) => e.code), 'ERR_JWS_INVALID');
  // Sent to the origin directly, the forgery is refused there (403), as any request without a valid context.
  const direct = await fetch(`${originUrl}/weather`, { headers: headers(await forge(decodeProtectedHeader(real).kid)) });
  assert.equal(direct.status, 403);
  assert.equal((await direct.json()).refused, 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED');
  // The real context is valid until its exp, then refused.
  assert.equal((await verify(headers(real))).jti, claims.jti, 'the real one verifies while it lives');
  const wait = claims.exp * 1000 - Date.now() + 1100;
  if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  assert.equal(await refusal(real), 'ERR_JWT_EXPIRED');
});

test("a client's X402-Payment-Context never reaches the origin: free paths get none, paid ones only the paywall's", async () => {
  const forged = seen.findLast((h) => h.claims !== null).context;
  let before = seen.length;
  const free = await fetch(`${ctx.worker.url}/free-page`, { headers: { 'X402-Payment-Context': forged } });
  assert.equal(free.status, 200);
  await free.arrayBuffer();
  assert.equal(seen.length, before + 1);
  assert.equal(seen.at(-1).context, null, 'removed on an unpriced path, and none added');

  const url = `${ctx.worker.url}/weather`;
  before = seen.length;
  const unpaid = await fetch(url, { headers: { 'X402-Payment-Context': forged } });
  assert.equal(unpaid.status, 402, 'a context is no payment');
  await unpaid.arrayBuffer();
  assert.equal(seen.length, before, 'and reaches nothing');

  const { header } = await pay(url, {}, KEYS.payer2);
  before = seen.length;
  const paid = await fetch(url, { headers: { 'payment-signature': header, 'X402-Payment-Context': forged } });
  assert.equal(paid.status, 200);
  await paid.arrayBuffer();
  const [hit] = seen.slice(before);
  assert.notEqual(hit.context, forged, "the client's copy was replaced");
  assert.equal(hit.claims.sub, decodePaymentResponseHeader(paid.headers.get('payment-response')).payer, "the paywall's own context, for this payer");
});

test('a request served on a pass carries none; without PAYMENT_CONTEXT_KEY nothing is signed and there is no key set', async () => {
  const res = await payingFetch(KEYS.payer)(`${ctx.worker.url}/premium/report`);
  assert.equal(res.status, 200);
  await res.arrayBuffer();
  assert.equal(seen.at(-1).claims.x402.route, 'GET /premium/*', 'the payment that sold the pass carries one');
  const token = res.headers.get('x402-pass');
  assert.ok(token);
  const before = seen.length;
  const again = await fetch(`${ctx.worker.url}/premium/other`, { headers: { 'x402-pass': token } });
  assert.equal(again.status, 200);
  await again.arrayBuffer();
  assert.equal(seen.length, before + 1);
  assert.equal(seen.at(-1).context, null, 'a pass hit is no payment');

  const plain = await startWorker({ originUrl, facilitatorUrl: ctx.stack.facilitator.url, payTo: ctx.stack.payTo, extraBindings: ctx.stack.workerBindings });
  try {
    const jwks = await fetch(`${plain.url}/.well-known/x402/jwks.json`);
    assert.equal(jwks.status, 404);
    assert.equal((await jwks.json()).error, 'not_found');
    const n = seen.length;
    const paid = await payingFetch(KEYS.payer)(`${plain.url}/weather`);
    assert.equal(paid.status, 200);
    await paid.arrayBuffer();
    assert.equal(seen.length, n + 1);
    assert.equal(seen.at(-1).context, null);
  } finally {
    await plain.stop();
  }
});

test("a key whose x is not d's public key is refused when first used: paid requests fail before the origin, nothing is charged", async () => {
  const other = crypto.generateKeyPairSync('ed25519').privateKey.export({ format: 'jwk' });
  const bindings = { ...ctx.stack.workerBindings, PAYMENT_CONTEXT_KEY: JSON.stringify({ ...key, x: other.x }) };
  const broken = await startWorker({ originUrl, facilitatorUrl: ctx.stack.facilitator.url, payTo: ctx.stack.payTo, extraBindings: bindings });
  try {
    const { header } = await pay(`${broken.url}/weather`);
    const settles = ctx.stack.facilitator.calls.settle;
    const n = seen.length;
    const res = await fetch(`${broken.url}/weather`, { headers: { 'payment-signature': header } });
    assert.equal(res.status, 502);
    assert.equal((await res.json()).error, 'origin_unavailable');
    assert.equal(seen.length, n, 'the origin was not called');
    assert.equal(ctx.stack.facilitator.calls.settle, settles, 'nothing was settled');
    assert.ok(broken.logs.some((l) => l.includes('payment context could not be signed') && l.includes('is not the public key of its "d"')), 'the log says why');
  } finally {
    await broken.stop();
  }
});
