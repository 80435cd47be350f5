// The paywall locally in front of your own API (scripts/dev.sh): a local chain (anvil) with the
// test USDC at Base Sepolia's USDC address, a facilitator on the official @x402/evm logic, and
// `wrangler dev` running wrangler.toml (its ROUTES, its ORIGIN_URL or --origin) with
// FACILITATOR_URL, PAY_TO and NETWORK pointed at the local chain. Prints the URLs, a funded payer
// key and a command that pays a route with the official client; runs until Ctrl-C (SIGINT,
// SIGTERM, SIGHUP), then stops everything it started.
//
//   node scripts/dev.mjs [--origin URL] [--routes JSON|@file.json] [--port 8787]
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';

import { KEYS, NETWORK, ROOT, USDC, address, deployUsdc, freePort, startAnvil, startFacilitator } from '../tests/support/stack.mjs';
import { listening, startWranglerDev } from './wrangler-dev.mjs';

const usage = 'usage: bash scripts/dev.sh [--origin URL] [--routes JSON|@file.json] [--port 8787]';
/** Test USDC the payer starts with, atomic units (6 decimals): 100 USDC. */
const PAYER_FUNDS = 100_000_000n;

const { values: opts } = parseArgs({
  options: { origin: { type: 'string' }, routes: { type: 'string' }, port: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
});
if (opts.help) {
  console.log(usage);
  process.exit(0);
}

/** The preferred port when nothing listens there, else a free one. */
const portNear = async (preferred) => ((await listening(preferred)) ? freePort() : preferred);

function readRoutes() {
  if (opts.routes === undefined) return undefined;
  const text = opts.routes.startsWith('@') ? readFileSync(opts.routes.slice(1), 'utf8') : opts.routes;
  const routes = JSON.parse(text);
  if (!Array.isArray(routes)) throw new Error('--routes: give a JSON array of routes, as ROUTES in wrangler.toml');
  return routes;
}

/** A URL path a route pattern matches, for the example command ("GET /premium/*" → /premium/example). */
function examplePath(pattern) {
  return pattern.replace(/\*+/g, 'example').replace(/[:{]\w+}?/g, 'example');
}

const started = [];
/** Synchronous last-resort stops, for an exit by any other path. */
const killers = [];
let stopping = false;
async function stopAll(code) {
  if (stopping) return;
  stopping = true;
  for (const stop of started.reverse()) {
    try {
      await stop();
    } catch {}
  }
  process.exit(code);
}
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    console.log(`\n${sig}: stopping wrangler dev, the facilitator and the chain`);
    stopAll(0);
  });
}

async function main() {
  const { unstable_readConfig } = await import('wrangler');
  const config = unstable_readConfig({ config: path.join(ROOT, 'wrangler.toml') }, { hideWarnings: true });
  const vars = config.vars ?? {};
  const routes = readRoutes() ?? vars.ROUTES ?? [];
  const origin = opts.origin ?? vars.ORIGIN_URL;
  if (!origin) throw new Error('no ORIGIN_URL in wrangler.toml: give --origin URL');

  const chain = await startAnvil({ port: await portNear(8545) });
  started.push(() => chain.stop());
  killers.push(() => chain.stop());
  const payer = address(KEYS.payer);
  const payTo = address(KEYS.payTo);
  await deployUsdc(chain.rpcUrl, { [payer]: PAYER_FUNDS });
  const facilitator = await startFacilitator({ rpcUrl: chain.rpcUrl, port: await portNear(4022) });
  started.push(() => facilitator.stop());
  const persist = mkdtempSync(path.join(tmpdir(), 'x402-dev-'));
  started.push(() => rmSync(persist, { recursive: true, force: true }));
  killers.push(() => rmSync(persist, { recursive: true, force: true }));

  const overrides = { FACILITATOR_URL: facilitator.url, PAY_TO: payTo, NETWORK };
  if (opts.origin) overrides.ORIGIN_URL = opts.origin;
  if (opts.routes !== undefined) overrides.ROUTES = JSON.stringify(routes);
  if (vars.RPC_URL) overrides.RPC_URL = chain.rpcUrl;
  let live = false;
  const wrangler = await startWranglerDev({
    port: opts.port ? Number(opts.port) : await portNear(8787),
    persistTo: persist,
    vars: overrides,
    // The Worker's log and wrangler's request lines, once it is up.
    onLine: (line) => live && console.log(`  | ${line}`),
  });
  started.push(() => wrangler.stop());
  killers.push(() => wrangler.stopSync());
  wrangler.proc.once('exit', (code) => {
    if (stopping) return;
    console.error(`wrangler dev exited (${code}); stopping the rest`);
    stopAll(1);
  });

  const priced = routes.filter((r) => r && typeof r === 'object' && r.free !== true);
  const shown = (r) => `${r.route}  ${r.free === true ? 'free' : r.price ?? (r.amount !== undefined ? `${r.amount} atomic` : JSON.stringify(r.prices ?? r.price ?? '?'))}${r.pass ? `, sells a pass (${r.pass.ttl})` : ''}`;
  // One command per priced route (the first six); a route for any method is paid with GET.
  const examples = priced.filter((r) => typeof r.route === 'string').slice(0, 6);
  const payCommand = (examples.length > 0 ? examples : [{ route: 'GET /' }]).map((example) => {
    const [written, pattern] = example.route.trim().includes(' ') ? example.route.trim().split(/\s+/, 2) : ['GET', example.route.trim()];
    const method = written === '*' ? 'GET' : written.toUpperCase();
    return `scripts/pay.mjs --rpc ${chain.rpcUrl}${method === 'GET' ? '' : ` --method ${method} --data '{}'`} ${wrangler.url}${examplePath(pattern)}`;
  }).join('\n  ');
  console.log(`
The paywall runs locally in front of ${origin}${opts.origin ? ' (--origin)' : ' (ORIGIN_URL, wrangler.toml)'}.
  paywall      ${wrangler.url}   (wrangler dev, wrangler.toml)
  facilitator  ${facilitator.url}   (official @x402/evm facilitator logic)
  chain        ${chain.rpcUrl}   (anvil, chain id 84532 as ${NETWORK}; test USDC at ${USDC})
  payTo        ${payTo}   (PAY_TO, for this local chain)
  payer key    ${KEYS.payer}
               (anvil's well-known development key: public, a test key only; holds ${PAYER_FUNDS / 1_000_000n} test USDC here)
  local state  ${persist}   (removed on exit)
Routes${opts.routes !== undefined ? ' (--routes)' : ' (ROUTES, wrangler.toml)'}; every other path is proxied free:
${routes.map((r) => `  ${shown(r)}`).join('\n') || '  (none)'}
Pay with the official x402 client (prints the 402, the payment, the response, the balances):
  ${payCommand}
Ctrl-C stops everything.
`);
  if (!(await fetch(origin, { method: 'HEAD', signal: AbortSignal.timeout(3000) }).then(() => true, () => false))) {
    console.log(`note: nothing answers at ${origin} yet: start your API there (requests get 502 until then)\n`);
  }
  live = true;
}

main().catch((e) => {
  console.error(e.message ?? e);
  stopAll(1);
});
// A last resort if the process ends another way: no wrangler/workerd or anvil left behind.
process.on('exit', () => {
  for (const kill of killers) {
    try {
      kill();
    } catch {}
  }
});
