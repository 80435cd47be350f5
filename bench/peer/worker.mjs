// The peer: a JS Worker with the official @x402/hono v2 paymentMiddleware in front of the same
// origin, at the same price, with the same facilitator, as Coinbase documents it. Unpriced
// requests and paid ones are proxied to ORIGIN_URL. `GET /metered` is an `upto` route (at most the
// same price): its handler proxies too and reports the amount the origin used with
// `setSettlementOverrides`, as @x402/hono documents metering.
import { Hono } from 'hono';
import { paymentMiddleware, setSettlementOverrides, x402ResourceServer } from '@x402/hono';
import { HTTPFacilitatorClient } from '@x402/core/server';
import { ExactEvmScheme } from '@x402/evm/exact/server';
import { UptoEvmScheme } from '@x402/evm/upto/server';

let app;

function build(env) {
  const server = new x402ResourceServer(new HTTPFacilitatorClient({ url: env.FACILITATOR_URL }))
    .register('eip155:84532', new ExactEvmScheme())
    .register('eip155:84532', new UptoEvmScheme());
  const routes = {
    'GET /weather': {
      accepts: { scheme: 'exact', price: '$0.01', network: 'eip155:84532', payTo: env.PAY_TO, maxTimeoutSeconds: 300 },
      description: 'Current weather',
      mimeType: 'application/json',
    },
    'GET /metered': {
      accepts: { scheme: 'upto', price: '$0.01', network: 'eip155:84532', payTo: env.PAY_TO, maxTimeoutSeconds: 300 },
      description: 'Current weather, metered',
      mimeType: 'application/json',
    },
    'GET /big': {
      accepts: { scheme: 'exact', price: '$0.01', network: 'eip155:84532', payTo: env.PAY_TO, maxTimeoutSeconds: 300 },
      description: 'Large body',
      mimeType: 'application/octet-stream',
    },
  };
  const a = new Hono();
  a.use(paymentMiddleware(routes, server));
  const proxy = (c) => {
    const url = new URL(c.req.url);
    const headers = new Headers(c.req.raw.headers);
    headers.delete('payment-signature');
    return fetch(env.ORIGIN_URL + url.pathname + url.search, { method: c.req.method, headers, redirect: 'manual' });
  };
  // The handler meters: the amount the origin used (its `Settlement-Overrides` report, read and
  // dropped here) is what it tells the middleware to settle.
  a.get('/metered', async (c) => {
    const res = await proxy(c);
    const headers = new Headers(res.headers);
    const used = JSON.parse(headers.get('settlement-overrides') ?? '{}').amount;
    headers.delete('settlement-overrides');
    if (used !== undefined) setSettlementOverrides(c, { amount: used });
    return c.body(res.body, res.status, Object.fromEntries(headers));
  });
  a.all('*', proxy);
  return a;
}

export default {
  fetch(request, env, ctx) {
    app ??= build(env);
    return app.fetch(request, env, ctx);
  },
};
