// The facilitator stand-in for benchmarks: answers /verify (valid) and /settle (success) after a
// configurable delay, without a chain, and counts the round trips it served.
import http from 'node:http';

export async function startStandin({ delayMs = 0 } = {}) {
  const calls = { verify: 0, settle: 0, supported: 0, bearer: 0 };
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
          kinds: [{ x402Version: 2, scheme: 'exact', network: 'eip155:84532' }, { x402Version: 1, scheme: 'exact', network: 'base-sepolia' }],
          extensions: [],
          signers: { 'eip155:*': ['0x70997970C51812dc3A010C7d01b50e0d17dc79C8'] },
        });
      }
      let body = {};
      try { body = JSON.parse(Buffer.concat(chunks).toString('utf8')); } catch {}
      const payer = body?.paymentPayload?.payload?.authorization?.from;
      // Calls that carried a JWT bearer token (the CDP-authenticated run); not verified here.
      if (/^Bearer ey[\w-]+\.ey[\w-]+\.[\w-]+$/.test(req.headers.authorization ?? '')) calls.bearer++;
      const network = body?.paymentRequirements?.network ?? 'eip155:84532';
      if (req.url === '/verify') {
        calls.verify++;
        return send({ isValid: true, payer });
      }
      if (req.url === '/settle') {
        calls.settle++;
        tx++;
        return send({ success: true, transaction: `0x${tx.toString(16).padStart(64, '0')}`, network, payer });
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
    reset() { calls.verify = 0; calls.settle = 0; calls.bearer = 0; },
    setDelay(ms) { delayMs = ms; },
    stop: () => new Promise((r) => { server.closeAllConnections(); server.close(() => r()); }),
  };
}

/** A minimal origin: small JSON for /weather, N MiB streamed for /big?mb=N. */
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
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  });
  server.keepAliveTimeout = 60_000;
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${server.address().port}`, stop: () => new Promise((r) => { server.closeAllConnections(); server.close(() => r()); }) };
}
