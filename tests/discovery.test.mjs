// Discovery against the built Worker (Miniflare) on the local chain: the /.well-known/x402
// document (ETag / 304, HEAD, 405, never the origin, the same bytes in every isolate), and the
// x402 `bazaar` extension in each 402, read and validated by the official @x402/extensions 2.27.0
// bazaar helpers, both from the 402 and, as a facilitator reads it, from the payment the
// official client sent.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  extractDiscoveryInfo,
  extractDiscoveryInfoFromExtension,
  isValidRouteTemplate,
  validateDiscoveryExtension,
  validateDiscoveryExtensionSpec,
} from '@x402/extensions/bazaar';

import { KEYS, startStack, startWorker } from './support/stack.mjs';
import { payingFetch } from './support/client.mjs';
import { unb64 } from './support/pay.mjs';

const ROUTES = [
  {
    route: 'GET /weather', price: '$0.01', description: 'Current weather', mimeType: 'application/json',
    inputSchema: { properties: { city: { type: 'string' } }, required: ['city'] },
    inputExample: { city: 'Lisbon' },
    outputSchema: { type: 'object', properties: { tempC: { type: 'number' } }, required: ['tempC'] },
    outputExample: { tempC: 21 },
  },
  { route: 'GET /reports/:id', price: '$0.05', description: 'Reports', pass: { ttl: '1h', maxRequests: 3 } },
  {
    route: 'POST /echo', price: '$0.02', description: 'Echo', bodyType: 'json',
    inputSchema: { type: 'object', properties: { text: { type: 'string' } }, required: ['text'] },
    inputExample: { text: 'hi' },
  },
  { route: 'GET /premium/*', price: '$0.05', discoverable: false },
  { route: 'GET /free', free: true },
];
const ctx = {};
const start = (routes = ROUTES) => startWorker({ originUrl: ctx.stack.origin.url, facilitatorUrl: ctx.stack.facilitator.url, payTo: ctx.stack.payTo, routes, publicUrl: true });

before(async () => {
  ctx.stack = await startStack();
  ctx.worker = await start();
});
after(async () => {
  await ctx.worker?.stop();
  await ctx.stack?.stop();
});

const url = (p) => `${ctx.worker.url}${p}`;
const originHits = () => ctx.stack.origin.requests.length;

/** The decoded PAYMENT-REQUIRED of an unpaid request. */
async function challenge(p, init) {
  const res = await fetch(url(p), init);
  await res.arrayBuffer();
  assert.equal(res.status, 402, `${p} is priced`);
  return unb64(res.headers.get('payment-required'));
}

describe('/.well-known/x402', () => {
  test('GET lists every priced route with the 402s own offers, cacheable, without asking the origin', async () => {
    const hits = originHits();
    const res = await fetch(url('/.well-known/x402'));
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'application/json');
    assert.equal(res.headers.get('cache-control'), 'public, max-age=300');
    assert.match(res.headers.get('etag'), /^"[0-9a-f]{32}"$/, 'a strong ETag');
    const doc = await res.json();
    assert.equal(doc.x402Version, 2);
    assert.deepEqual(doc.items.map((i) => i.route), ['GET /weather', 'GET /reports/:id', 'POST /echo', 'GET /premium/*'], 'free routes are not listed');
    assert.equal(originHits(), hits, 'the origin never saw the request');

    const weather = doc.items[0];
    assert.deepEqual(weather.methods, ['GET', 'HEAD']);
    assert.equal(weather.path, '/weather');
    assert.equal(weather.description, 'Current weather');
    assert.equal(weather.mimeType, 'application/json');
    assert.deepEqual(weather.inputSchema, ROUTES[0].inputSchema);
    assert.deepEqual(weather.outputExample, { tempC: 21 });
    assert.deepEqual(weather.extensions, ['bazaar']);
    // Every payment option is the PaymentRequirements the live 402 offers, field for field.
    for (const item of doc.items) {
      const p = item.path.replace(':id', '7').replace('*', 'x');
      const pr = await challenge(p, { method: item.methods[0] });
      assert.deepEqual(item.accepts, pr.accepts, item.route);
    }
    assert.deepEqual(Object.keys(weather.accepts[0]).sort(), ['amount', 'asset', 'extra', 'maxTimeoutSeconds', 'network', 'payTo', 'scheme']);
    assert.equal(weather.accepts[0].amount, '10000');
    assert.equal(weather.accepts[0].network, 'eip155:84532');

    const reports = doc.items[1];
    assert.equal(reports.routeTemplate, '/reports/:id');
    assert.deepEqual(reports.pass, { ttlSeconds: 3600, maxRequests: 3, scope: 'route', summary: '3 requests within 1 hour to /reports/:id' });
    assert.deepEqual(reports.extensions, ['bazaar', 'sign-in-with-x']);
    assert.equal(doc.items[3].discoverable, false);
    assert.deepEqual(doc.items[3].extensions, []);
  });

  test('If-None-Match answers 304, HEAD has the headers without the body, other methods 405; the origin is never asked', async () => {
    const hits = originHits();
    const first = await fetch(url('/.well-known/x402'));
    const etag = first.headers.get('etag');
    const body = await first.text();
    const again = await fetch(url('/.well-known/x402'), { headers: { 'if-none-match': etag } });
    assert.equal(again.status, 304);
    assert.equal(await again.text(), '');
    assert.equal(again.headers.get('etag'), etag);
    const listed = await fetch(url('/.well-known/x402'), { headers: { 'if-none-match': `"stale", W/${etag}` } });
    assert.equal(listed.status, 304, 'a list, and the weak form, match (weak comparison)');
    await listed.arrayBuffer();
    const stale = await fetch(url('/.well-known/x402'), { headers: { 'if-none-match': '"0000"' } });
    assert.equal(stale.status, 200);
    assert.equal(await stale.text(), body);

    const head = await fetch(url('/.well-known/x402'), { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(head.headers.get('etag'), etag);
    assert.equal(await head.text(), '');

    for (const method of ['POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS']) {
      const res = await fetch(url('/.well-known/x402'), { method });
      assert.equal(res.status, 405, method);
      assert.equal(res.headers.get('allow'), 'GET, HEAD');
      assert.equal((await res.json()).error, 'method_not_allowed');
    }
    assert.equal(originHits(), hits, 'not one request reached the origin');
  });

  test('another isolate with the same configuration serves the same tag; a price change makes a new one', async () => {
    const tag = async (w) => {
      const res = await fetch(`${w.url}/.well-known/x402`);
      await res.arrayBuffer();
      return res.headers.get('etag');
    };
    const mine = await tag(ctx.worker);
    const same = await start();
    const changed = await start(ROUTES.map((r) => (r.route === 'GET /weather' ? { ...r, price: '$0.02' } : r)));
    try {
      assert.equal(await tag(same), mine);
      assert.notEqual(await tag(changed), mine);
    } finally {
      await same.stop();
      await changed.stop();
    }
  });
});

describe('the bazaar extension', () => {
  test('the 402 of GET /weather carries it; the official validator accepts it and reads method and schemas', async () => {
    const pr = await challenge('/weather?city=Porto');
    const ext = pr.extensions.bazaar;
    assert.deepEqual(validateDiscoveryExtension(ext), { valid: true });
    assert.deepEqual(validateDiscoveryExtensionSpec(ext), { valid: true });
    const info = extractDiscoveryInfoFromExtension(ext);
    assert.equal(info.input.type, 'http');
    assert.equal(info.input.method, 'GET');
    assert.deepEqual(info.input.queryParams, { city: 'Lisbon' });
    assert.deepEqual(info.output, { type: 'json', example: { tempC: 21 } });
    const input = ext.schema.properties.input;
    assert.deepEqual(input.properties.queryParams, { type: 'object', ...ROUTES[0].inputSchema });
    assert.deepEqual(ext.schema.properties.output.properties.example, ROUTES[0].outputSchema);
    assert.equal(ext.routeTemplate, undefined, 'a static path has no template');
    assert.equal(pr.extensions['sign-in-with-x'], undefined, 'no pass sold here');

    // The validator is not a rubber stamp: the same extension with a wrong method, or an
    // example that breaks its schema, is refused.
    const wrongMethod = structuredClone(ext);
    wrongMethod.info.input.method = 'POST';
    assert.equal(validateDiscoveryExtension(wrongMethod).valid, false);
    const badExample = structuredClone(ext);
    badExample.info.input.queryParams = { town: 'Lisbon' };
    assert.equal(validateDiscoveryExtension(badExample).valid, false);

    const head = (await challenge('/weather', { method: 'HEAD' })).extensions.bazaar;
    assert.equal(validateDiscoveryExtension(head).valid, true);
    assert.equal(extractDiscoveryInfoFromExtension(head).input.method, 'HEAD');
  });

  test('a body route declares bodyType and body; a dynamic route its routeTemplate, next to sign-in-with-x', async () => {
    const echo = (await challenge('/echo', { method: 'POST', body: '{}' })).extensions.bazaar;
    assert.deepEqual(validateDiscoveryExtension(echo), { valid: true });
    const info = extractDiscoveryInfoFromExtension(echo);
    assert.equal(info.input.method, 'POST');
    assert.equal(info.input.bodyType, 'json');
    assert.deepEqual(info.input.body, { text: 'hi' });
    assert.deepEqual(echo.schema.properties.input.properties.body, ROUTES[2].inputSchema);

    const pr = await challenge('/reports/7');
    assert.deepEqual(Object.keys(pr.extensions).sort(), ['bazaar', 'sign-in-with-x']);
    const reports = pr.extensions.bazaar;
    assert.deepEqual(validateDiscoveryExtension(reports), { valid: true });
    assert.equal(reports.routeTemplate, '/reports/:id');
    assert.equal(isValidRouteTemplate(reports.routeTemplate), true);
    assert.equal(extractDiscoveryInfoFromExtension(reports).input.method, 'GET');

    const hidden = await challenge('/premium/x');
    assert.equal(hidden.extensions, undefined, 'discoverable = false and no pass: no extensions');
  });

  test('paid with the official client, the facilitator reads the echoed extension with extractDiscoveryInfo', async () => {
    const hits = originHits();
    const bodies = ctx.stack.facilitator.bodies.length;
    const pay = payingFetch(KEYS.payer);
    for (const p of ['/weather?city=Lisbon', '/reports/9']) {
      const res = await pay(url(p));
      assert.equal(res.status, 200, p);
      await res.arrayBuffer();
    }
    assert.equal(originHits(), hits + 2, 'the origin ran once per paid request');
    const settled = ctx.stack.facilitator.bodies.slice(bodies).filter((b) => b.path === 'settle');
    assert.equal(settled.length, 2);

    const weather = extractDiscoveryInfo(settled[0].body.paymentPayload, settled[0].body.paymentRequirements);
    assert.ok(weather, 'the facilitator finds a valid discovery extension in the payment');
    assert.equal(weather.resourceUrl, url('/weather'));
    assert.equal(weather.method, 'GET');
    assert.equal(weather.description, 'Current weather');
    assert.equal(weather.mimeType, 'application/json');
    assert.deepEqual(weather.discoveryInfo.input.queryParams, { city: 'Lisbon' });

    const report = extractDiscoveryInfo(settled[1].body.paymentPayload, settled[1].body.paymentRequirements);
    assert.equal(report.routeTemplate, '/reports/:id');
    assert.equal(report.resourceUrl, url('/reports/:id'), 'catalogued under its template, not /reports/9');
  });
});
