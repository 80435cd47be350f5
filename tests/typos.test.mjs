// Typos never fail open (issue 19): the built Worker (Miniflare) refuses to serve when a variable
// or a route key is misspelt, a route names an unknown method, or a price sits in a variable no
// route reads. No request reaches the origin unpaid because of a misspelling, and the 500 names
// the key and the variable (values that could be secret stay in the log). The origin is a local
// server of the test's own that counts hits; no payment is made, so no chain is needed.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';

import { KEYS, address, startWorker } from './support/stack.mjs';

let origin;
const hits = [];
before(async () => {
  origin = http.createServer((req, res) => {
    hits.push(`${req.method} ${req.url}`);
    res.setHeader('content-type', 'application/json');
    res.end('{"ok":true}');
  });
  await new Promise((r) => origin.listen(0, '127.0.0.1', r));
});
after(() => origin?.close());

const originUrl = () => `http://127.0.0.1:${origin.address().port}`;
// Never contacted: a challenge needs no facilitator, and nothing here is paid.
const facilitatorUrl = 'http://127.0.0.1:9';
const payTo = address(KEYS.payTo);

async function refuses(w, path, says) {
  const before = hits.length;
  const res = await fetch(`${w.url}${path}`);
  const body = await res.json();
  assert.equal(res.status, 500, `${path} is refused`);
  assert.equal(body.error, 'paywall_misconfigured');
  for (const s of says) assert.ok(body.message.includes(s), `${body.message} names ${s}`);
  assert.ok(body.message.endsWith('(see the log for values)'), body.message);
  assert.equal(hits.length, before, 'the origin is not called');
  return body.message;
}

describe('a misspelling never makes a priced route free', () => {
  test('a route table misspelt ROUTS: the Worker refuses every path, the priced one first', async () => {
    const w = await startWorker({
      originUrl: originUrl(), facilitatorUrl, payTo,
      routes: [{ route: 'GET /health', free: true }],
      extraBindings: { ROUTS: [{ route: 'GET /weather', price: '$0.01' }] },
    });
    try {
      await refuses(w, '/weather', ['unknown variable `ROUTS`; did you mean `ROUTES`?']);
      // Free paths are refused too: a configuration that does not parse is not half served.
      await refuses(w, '/health', ['`ROUTS`']);
    } finally {
      await w.stop();
    }
  });

  test('a misspelt route key (pirce) is named with the key it means and the route pattern', async () => {
    const w = await startWorker({ originUrl: originUrl(), facilitatorUrl, payTo, routes: [{ route: 'GET /v1/quote', pirce: '$0.01' }] });
    try {
      await refuses(w, '/v1/quote', ['unknown key `pirce` in ROUTES[0] (`GET /v1/quote`); did you mean `price`?']);
    } finally {
      await w.stop();
    }
  });

  test('a misspelt method (GTE), a misspelt PAY_TO and a price in a variable are refused', async () => {
    const cases = [
      [{ routes: [{ route: 'GTE /v1/quote', price: '$0.01' }] }, ['ROUTES[0] (`GTE /v1/quote`): unknown method `GTE`; did you mean `GET`?']],
      [{ payTo: '', extraBindings: { PAY_T0: payTo } }, ['unknown variable `PAY_T0`; did you mean `PAY_TO`?']],
      [{ routes: [{ route: 'GET /v1/quote', free: true }], extraBindings: { PRICE: '$0.01' } }, ['`PRICE` looks like a price, but no route in ROUTES is priced']],
    ];
    for (const [options, says] of cases) {
      const w = await startWorker({ originUrl: originUrl(), facilitatorUrl, payTo, routes: [{ route: 'GET /v1/quote', price: '$0.01' }], ...options });
      try {
        await refuses(w, '/v1/quote', says);
      } finally {
        await w.stop();
      }
    }
  });

  test('variables of the user\'s own, far from every known name, leave the Worker working; the start line says what is priced', async () => {
    const w = await startWorker({
      originUrl: originUrl(), facilitatorUrl, payTo,
      routes: [{ route: 'GET /v1/quote', price: '$0.01' }, { route: 'GET /v1/health', free: true }],
      extraBindings: { MY_APP_SETTING: 'x', SENTRY_DSN: 'https://k@sentry.example/1' },
    });
    try {
      const res = await fetch(`${w.url}/v1/quote`);
      await res.arrayBuffer();
      assert.equal(res.status, 402);
      const before = hits.length;
      const free = await fetch(`${w.url}/v1/health`);
      await free.arrayBuffer();
      assert.equal(free.status, 200);
      assert.equal(hits.length, before + 1);
      const start = w.logs.map((l) => l.slice(l.indexOf('{'))).filter((l) => l.includes('"x402":"start"')).map((l) => JSON.parse(l))[0];
      assert.equal(start.priced, 1);
      assert.equal(start.prices.length, 2);
      assert.match(start.prices[0], /^GET \/v1\/quote: .*10000 atomic units of 0x[0-9a-fA-F]{40}/);
      assert.equal(start.prices[1], 'GET /v1/health: free');
    } finally {
      await w.stop();
    }
  });
});

describe('configuration errors a person can act on', () => {
  test('the 500 keeps names and hides the origin\'s URL; the log has the values', async () => {
    const w = await startWorker({ originUrl: 'https://user:hunter2@api.example/v1/key123', facilitatorUrl, payTo });
    try {
      const message = await refuses(w, '/weather', ['ORIGIN_URL `…` must not have a query or user information']);
      assert.ok(!/hunter2|key123|api\.example/.test(message), message);
      const end = Date.now() + 3000;
      while (!w.logs.some((l) => l.includes('invalid configuration')) && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
      assert.ok(w.logs.some((l) => l.includes('invalid configuration') && l.includes('https://user:hunter2@api.example/v1/key123')), 'the log has the value');
    } finally {
      await w.stop();
    }
  });
});
