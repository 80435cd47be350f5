// The facilitator stand-in for benchmarks: answers /verify (valid) and /settle (success) after a
// configurable delay, without a chain, and counts the round trips it served. It supports `exact`
// (EIP-3009) and `upto` (Permit2; `/supported` announces FACILITATOR_ADDRESS as the upto kind's
// `extra.facilitatorAddress`, and `/settle` answers with the amount it was asked to settle, as the
// official upto facilitator does).
import http from 'node:http';

/** The address the stand-in announces for `upto`: the one a payer's Permit2 witness must name. */
export const FACILITATOR_ADDRESS = '0x70997970C51812dc3A010C7d01b50e0d17dc79C8';

/** The amount, in atomic units, the bench origin reports for `GET /metered` (of a $0.01 maximum). */
export const METERED_AMOUNT = '4321';

export async function startStandin({ delayMs = 0 } = {}) {
  // `upto`: the calls for upto requirements; `settledAmounts`: upto /settle calls by amount.
  const calls = { verify: 0, settle: 0, supported: 0, bearer: 0, upto: 0, settledAmounts: {} };
  let tx = 0;
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const send = (body) => {
        const out = JSON.stringify(body);
        setTimeout(() => {
          res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(out) });
          res.end(out);
        }, req.url === '/supported' ? 0 : delayMs);
      };
      if (req.url === '/supported') {
        calls.supported++;
        return send({
          kinds: [
            { x402Version: 2, scheme: 'exact', network: 'eip155:84532' },
            { x402Version: 2, scheme: 'upto', network: 'eip155:84532', extra: { facilitatorAddress: FACILITATOR_ADDRESS } },
            { x402Version: 1, scheme: 'exact', network: 'base-sepolia' },
          ],
          extensions: [],
          signers: { 'eip155:*': [FACILITATOR_ADDRESS] },
        });
      }
      let body = {};
      try { body = JSON.parse(Buffer.concat(chunks).toString('utf8')); } catch {}
      const payload = body?.paymentPayload?.payload;
      const payer = payload?.authorization?.from ?? payload?.permit2Authorization?.from;
      const upto = body?.paymentRequirements?.scheme === 'upto';
      // Calls that carried a JWT bearer token (the CDP-authenticated run); not verified here.
      if (/^Bearer ey[\w-]+\.ey[\w-]+\.[\w-]+$/.test(req.headers.authorization ?? '')) calls.bearer++;
      const network = body?.paymentRequirements?.network ?? 'eip155:84532';
      if (req.url === '/verify' && body?.paymentRequirements?.scheme === 'batch-settlement') {
        // A channel learnt by the paywall: a deposit large enough for any run.
        calls.verify++;
        return send({ isValid: true, payer: payload?.channelConfig?.payer, extra: { channelId: payload?.voucher?.channelId, balance: '1000000000000', totalClaimed: '0', withdrawRequestedAt: 0, refundNonce: '0' } });
      }
      if (req.url === '/verify') {
        calls.verify++;
        if (upto) calls.upto++;
        return send({ isValid: true, payer });
      }
      if (req.url === '/settle') {
        calls.settle++;
        tx++;
        const transaction = `0x${tx.toString(16).padStart(64, '0')}`;
        if (!upto) return send({ success: true, transaction, network, payer });
        calls.upto++;
        calls.settledAmounts[body.paymentRequirements.amount] = (calls.settledAmounts[body.paymentRequirements.amount] ?? 0) + 1;
        return send({ success: true, transaction, network, payer, amount: body.paymentRequirements.amount });
      }
      res.writeHead(404);
      res.end();
    });
  });
  server.keepAliveTimeout = 60_000;
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    calls,
    reset() { calls.verify = 0; calls.settle = 0; calls.bearer = 0; calls.upto = 0; calls.settledAmounts = {}; },
    setDelay(ms) { delayMs = ms; },
    stop: () => new Promise((r) => { server.closeAllConnections(); server.close(() => r()); }),
  };
}

/** A minimal origin: small JSON for /weather, N MiB streamed for /big?mb=N; /metered is the
 * /weather answer plus `Settlement-Overrides: {"amount":"4321"}` (what a metered origin reports). */
export async function startBenchOrigin() {
  const chunk = Buffer.alloc(64 * 1024, 0x61);
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://x');
    if (url.pathname === '/big') {
      const total = Number(url.searchParams.get('mb') ?? 10) * 1024 * 1024;
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': total });
      let sent = 0;
      const pump = () => {
        while (sent < total) {
          sent += chunk.length;
          if (!res.write(chunk)) return res.once('drain', pump);
        }
        res.end();
      };
      return pump();
    }
    const body = JSON.stringify({ city: 'Lisbon', forecast: 'sunny', tempC: 21 });
    const metered = url.pathname === '/metered' ? { 'settlement-overrides': JSON.stringify({ amount: METERED_AMOUNT }) } : {};
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...metered });
    res.end(body);
  });
  server.keepAliveTimeout = 60_000;
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${server.address().port}`, stop: () => new Promise((r) => { server.closeAllConnections(); server.close(() => r()); }) };
}
