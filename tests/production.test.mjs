// What production needs, against the built Worker (Miniflare) on the local chain with the
// official facilitator logic: CDP JWT authentication (both key types CDP issues, checked by a
// facilitator that verifies every token and compared with @coinbase/cdp-sdk's generateJwt), and
// facilitator failover that never settles through a second facilitator once the first may have
// received the request.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';

import { generateJwt } from '@coinbase/cdp-sdk/auth';

import { KEYS, address, balanceOf, cdpKey, startFacilitator, startStack, startWorker } from './support/stack.mjs';
import { paymentHeader, unb64 } from './support/pay.mjs';

let stack;
before(async () => {
  stack = await startStack();
});
after(async () => {
  await stack?.stop();
});

const ROUTES = [{ route: 'GET /weather', price: '$0.01', description: 'Current weather', maxTimeoutSeconds: 120, verify: 'always' }];

async function worker(facilitatorUrl, extraBindings = {}, routes = ROUTES) {
  return startWorker({ originUrl: stack.origin.url, facilitatorUrl, payTo: stack.payTo, routes, extraBindings });
}

async function pay(w, key = KEYS.payer) {
  const challenge = await fetch(`${w.url}/weather`);
  await challenge.arrayBuffer();
  const requirements = unb64(challenge.headers.get('payment-required')).accepts[0];
  const header = await paymentHeader(key, requirements);
  return { header, send: () => fetch(`${w.url}/weather`, { headers: { 'payment-signature': header } }) };
}

/** Header and claims of a JWT, without the nonce and times that differ between two tokens. */
function comparable(token) {
  const [h, c] = token.split('.');
  const { nonce, ...header } = JSON.parse(Buffer.from(h, 'base64url'));
  const { iat, nbf, exp, ...claims } = JSON.parse(Buffer.from(c, 'base64url'));
  assert.match(nonce, /^[0-9a-f]{32}$/);
  assert.equal(exp - nbf, 120);
  assert.equal(iat, nbf);
  return { header, claims, keys: [Object.keys(JSON.parse(Buffer.from(h, 'base64url'))), Object.keys(JSON.parse(Buffer.from(c, 'base64url')))] };
}

describe('CDP facilitator authentication', () => {
  for (const kind of ['ed25519', 'ec', 'ec-pkcs8']) {
    test(`a ${kind} CDP key: every call carries a fresh JWT the facilitator verifies; the payment settles`, async () => {
      const key = cdpKey(kind);
      const facilitator = await startFacilitator({ rpcUrl: stack.rpcUrl, cdpKey: key });
      const w = await worker(facilitator.url, { FACILITATOR_AUTH: 'cdp', CDP_API_KEY_ID: key.id, CDP_API_KEY_SECRET: key.secret });
      try {
        const before = await balanceOf(stack.rpcUrl, stack.payer);
        const { send } = await pay(w);
        const res = await send();
        assert.equal(res.status, 200, await res.clone().text());
        assert.equal((await res.json()).city, 'Lisbon');
        assert.deepEqual(facilitator.refusals, []);
        assert.deepEqual({ verify: facilitator.calls.verify, settle: facilitator.calls.settle }, { verify: 1, settle: 1 });
        assert.equal(await balanceOf(stack.rpcUrl, stack.payer), before - 10000n);
        const nonces = new Set(facilitator.jwts.map((j) => j.header.nonce));
        assert.equal(nonces.size, 2, 'a fresh nonce per call');

        // The same layout as the official SDK's token for the same key and endpoint.
        const host = new URL(facilitator.url).host;
        for (const [i, endpoint] of ['verify', 'settle'].entries()) {
          const official = await generateJwt({ apiKeyId: key.id, apiKeySecret: key.pkcs8 ?? key.secret, requestMethod: 'POST', requestHost: host, requestPath: `/${endpoint}` });
          const ours = facilitator.jwts[i];
          const token = `${Buffer.from(JSON.stringify(ours.header)).toString('base64url')}.${Buffer.from(JSON.stringify(ours.claims)).toString('base64url')}`;
          assert.deepEqual(comparable(token), comparable(official), endpoint);
        }
      } finally {
        await w.stop();
        await facilitator.stop();
      }
    });
  }

  test('a JWT signed with another key, or for another endpoint, is refused by the facilitator and nothing is charged', async () => {
    const key = cdpKey('ed25519');
    const other = cdpKey('ed25519');
    const facilitator = await startFacilitator({ rpcUrl: stack.rpcUrl, cdpKey: key });
    // Our key id, another key's secret: the signature does not verify.
    const w = await worker(facilitator.url, { FACILITATOR_AUTH: 'cdp', CDP_API_KEY_ID: key.id, CDP_API_KEY_SECRET: other.secret });
    try {
      const before = await balanceOf(stack.rpcUrl, stack.payer);
      const originBefore = stack.origin.requests.length;
      const { send } = await pay(w);
      const res = await send();
      assert.equal(res.status, 502, 'verify could not be had: facilitator_unavailable');
      assert.equal((await res.json()).error, 'facilitator_unavailable');
      assert.deepEqual(facilitator.refusals, ['bad signature']);
      assert.deepEqual(facilitator.calls, { verify: 0, settle: 0, supported: 0 }, 'refused before the facilitator logic ran');
      assert.equal(stack.origin.requests.length, originBefore, 'the origin never ran');
      assert.equal(await balanceOf(stack.rpcUrl, stack.payer), before);
    } finally {
      await w.stop();
      await facilitator.stop();
    }
  });
});

/** A port that refuses connections. */
async function closedPort() {
  const s = net.createServer().listen(0, '127.0.0.1');
  await new Promise((r) => s.on('listening', r));
  const { port } = s.address();
  await new Promise((r) => s.close(r));
  return `http://127.0.0.1:${port}`;
}

describe('facilitator failover', () => {
  test('first facilitator down: verify fails over and the payment settles through the second', async () => {
    const second = await startFacilitator({ rpcUrl: stack.rpcUrl });
    const w = await worker(`${await closedPort()}, ${second.url}`);
    try {
      const before = await balanceOf(stack.rpcUrl, stack.payer);
      const originBefore = stack.origin.requests.length;
      const { send } = await pay(w);
      const res = await send();
      assert.equal(res.status, 200, await res.clone().text());
      await res.arrayBuffer();
      assert.deepEqual({ verify: second.calls.verify, settle: second.calls.settle }, { verify: 1, settle: 1 });
      assert.equal(stack.origin.requests.length, originBefore + 1);
      assert.equal(await balanceOf(stack.rpcUrl, stack.payer), before - 10000n);
    } finally {
      await w.stop();
      await second.stop();
    }
  });

  test('each facilitator receives only its own credentials: FACILITATOR_AUTH goes to the first, a FACILITATOR_AUTH_<NAME> secret to the one naming it', async () => {
    // The first answers /verify with no usable answer, so verify fails over and the second settles.
    const noAnswer = (name) => (name === 'verify' ? { status: 503, body: '{}' } : null);
    const received = (f) => f.bodies.map((b) => `${b.path} ${b.authorization ?? '(none)'}`);
    for (const [list, bindings, second] of [
      [(a, b) => `${a}, ${b}`, { FACILITATOR_AUTH: 'Bearer primary' }, ['verify (none)', 'settle (none)']],
      [(a, b) => JSON.stringify([a, { url: b, auth: 'FACILITATOR_AUTH_BACKUP' }]), { FACILITATOR_AUTH: 'Bearer primary', FACILITATOR_AUTH_BACKUP: 'Bearer backup' }, ['verify Bearer backup', 'settle Bearer backup']],
    ]) {
      const a = await startFacilitator({ rpcUrl: stack.rpcUrl, fault: noAnswer });
      const b = await startFacilitator({ rpcUrl: stack.rpcUrl });
      const w = await worker(list(a.url, b.url), bindings);
      try {
        const before = await balanceOf(stack.rpcUrl, stack.payer);
        const { send } = await pay(w);
        const res = await send();
        assert.equal(res.status, 200, await res.clone().text());
        await res.arrayBuffer();
        assert.deepEqual(received(a), ['verify Bearer primary']);
        assert.deepEqual(received(b), second, 'the fallback never receives the primary\'s secret');
        assert.equal(await balanceOf(stack.rpcUrl, stack.payer), before - 10000n);
      } finally {
        await w.stop();
        await a.stop();
        await b.stop();
      }
    }
  });

  test('first facilitator hangs after receiving /settle: 504 unknown outcome, the second is not called; the retry settles once', async () => {
    const first = await startFacilitator({ rpcUrl: stack.rpcUrl, fault: (name) => (name === 'settle' ? { delayMs: 4000, status: 200, body: '{}' } : null) });
    const second = await startFacilitator({ rpcUrl: stack.rpcUrl });
    const w = await worker(`${first.url}, ${second.url}`, { FACILITATOR_TIMEOUT_SECONDS: '2', ORIGIN_TIMEOUT_SECONDS: '3' });
    try {
      const payer2 = address(KEYS.payer2);
      const before = await balanceOf(stack.rpcUrl, payer2);
      const { send } = await pay(w, KEYS.payer2);
      const res = await send();
      assert.equal(res.status, 504);
      const body = await res.json();
      assert.equal(body.error, 'settlement_outcome_unknown');
      assert.deepEqual({ first: first.calls.settle, second: second.calls.settle }, { first: 1, second: 0 }, 'never a second facilitator after the first may have received it');
      assert.equal(await balanceOf(stack.rpcUrl, payer2), before, 'nothing moved');

      // The retry: the first is being skipped for failing, so the second settles it, once.
      const again = await send();
      assert.equal(again.status, 200, await again.clone().text());
      await again.arrayBuffer();
      assert.deepEqual({ first: first.calls.settle, second: second.calls.settle }, { first: 1, second: 1 });
      assert.equal(await balanceOf(stack.rpcUrl, payer2), before - 10000n, 'charged exactly once');
    } finally {
      await w.stop();
      await first.stop();
      await second.stop();
    }
  });
});
