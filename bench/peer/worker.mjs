// The peer: a JS Worker with the official @x402/hono v2 paymentMiddleware in front of the same
// origin, at the same price, with the same facilitator, as Coinbase documents it. Unpriced
// requests and paid ones are proxied to ORIGIN_URL.
import { Hono } from 'hono';
import { paymentMiddleware, x402ResourceServer } from '@x402/hono';
import { HTTPFacilitatorClient } from '@x402/core/server';
import { ExactEvmScheme } from '@x402/evm/exact/server';

let app;

function build(env) {
  const server = new x402ResourceServer(new HTTPFacilitatorClient({ url: env.FACILITATOR_URL })).register('eip155:84532', new ExactEvmScheme());
  const routes = {
    'GET /weather': {
      accepts: { scheme: 'exact', price: '$0.01', network: 'eip155:84532', payTo: env.PAY_TO, maxTimeoutSeconds: 300 },
      description: 'Current weather',
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
  a.all('*', (c) => {
    const url = new URL(c.req.url);
    const headers = new Headers(c.req.raw.headers);
    headers.delete('payment-signature');
    return fetch(env.ORIGIN_URL + url.pathname + url.search, { method: c.req.method, headers, redirect: 'manual' });
  });
  return a;
}

export default {
  fetch(request, env, ctx) {
    app ??= build(env);
    return app.fetch(request, env, ctx);
  },
};
