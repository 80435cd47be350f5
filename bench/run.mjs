// Side-by-side benchmark: our Rust Worker and the official @x402/hono middleware in the same
// workerd (Miniflare), in front of the same origin, at the same price, with the same facilitator
// stand-in. Load from wrk on 127.0.0.1. Prints a markdown report; every number comes from this run.
//
// Env: BENCH_SECONDS (per load run, default 4), BENCH_ROUNDS (default 3), BENCH_CONNECTIONS (default 16).
// BENCH_ONLY=challenge: our 402 challenge and the runtime floor, one run each (JSON).
// BENCH_ONLY=free: our unpriced pass-through and the plain JS proxy floor, BENCH_ROUNDS interleaved
// rounds, medians (JSON).
// BENCH_ONLY=startup: our fresh-isolate times (ready, first and second response; JSON).
// BENCH_DECISION_LOG=all|payments|none: our DECISION_LOG (default: unset, i.e. payments).
// BENCH_ONLY=paid0 (or minted0, a paid request that also sells a pass): only that scenario of
// ours at 0 ms facilitator delay, one run, printed as JSON (a quick check while optimising;
// `node bench/run.mjs` after `bash scripts/build.sh`).
// BENCH_ONLY=channel: paid requests on payment channels next to our pass-through (same load) and
// the peer's paid exact request at 50 ms (JSON).
// BENCH_ONLY=upto: only the metered (`upto`, Permit2) paid request, ours and the peer's, at 0 and
// 50 ms facilitator delay, next to the exact paid request in the same rounds (for reference),
// BENCH_ROUNDS interleaved rounds, medians: the report's rows (stderr) and JSON (stdout).
// BENCH_ONLY=mcp: a paid MCP tool call, ours (in front of an unmodified MCP server) and the same
// server paid through Cloudflare's agents withX402/paidTool, at 0 and 50 ms; rows and JSON.
// BENCH_ONLY=dofloor: a JS fetch proxy with 0, 1 and 2 no-op Durable Object RPC calls per request,
// and with 1, 2 or 3 calls that each upsert one SQLite row.
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import crypto from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { Miniflare } from 'miniflare';
import { verifyTypedData } from 'viem';

import { FACILITATOR_ADDRESS, METERED_AMOUNT, startBenchOrigin, startStandin } from './standin.mjs';

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const BUILD = path.join(ROOT, 'bench/.build');
const SECONDS = Number(process.env.BENCH_SECONDS ?? 4);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 16);
const PAY_TO = '0x90F79bf6EB2c4f870365E785982E1f101E93b906';
const require = createRequire(import.meta.url);
mkdirSync(BUILD, { recursive: true });

const log = (...a) => console.error('[bench]', ...a);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const fmt = (n, d = 0) => n.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d });

// ---- servers -------------------------------------------------------------------------------

function buildPeer() {
  execFileSync(path.join(ROOT, 'node_modules/@esbuild/linux-x64/bin/esbuild'), [
    'bench/peer/worker.mjs', '--bundle', '--format=esm', '--platform=neutral', '--main-fields=module,main',
    '--conditions=workerd,worker,browser,import', '--alias:url=node:url', '--external:node:*', `--outfile=${BUILD}/peer.js`, '--log-level=warning',
  ], { cwd: ROOT, stdio: 'inherit' });
}

// /weather does what the peer does (per request); /minted also sells a pass (record to KV after the
// response); /metered is metered (`upto`, at most the same price; the origin reports the amount).
const OUR_ROUTES = [
  { route: 'GET /weather', price: '$0.01', maxTimeoutSeconds: 300, description: 'Current weather', mimeType: 'application/json' },
  { route: 'GET /metered', scheme: 'upto', price: '$0.01', maxTimeoutSeconds: 300, description: 'Current weather, metered', mimeType: 'application/json' },
  { route: 'GET /minted', price: '$0.01', maxTimeoutSeconds: 300, description: 'Current weather, with a pass', mimeType: 'application/json', pass: { ttl: '1h' } },
  { route: 'GET /big', price: '$0.01', maxTimeoutSeconds: 300, description: 'Large body', mimeType: 'application/octet-stream' },
  { route: 'GET /channel', accepts: [{ scheme: 'batch-settlement', price: '$0.01', maxTimeoutSeconds: 300 }], description: 'Current weather, paid on a channel', mimeType: 'application/json' },
];
/** The stand-in facilitator's claim authorizer for payment channels. */
const RECEIVER_AUTHORIZER = '0x9965507D1a55bcC2695C58ba16FB37d819B0A4dc';

/** The runtime's floors: a Worker that answers every request with a constant 402, and a plain
 * JS `fetch` proxy to ORIGIN_URL (what an unpriced pass-through cannot beat). */
function buildFloor() {
  writeFileSync(path.join(BUILD, 'floor.js'), `export default { fetch() { return new Response('{"x402Version":2}', { status: 402, headers: { 'content-type': 'application/json' } }); } };\n`);
  // The constant 402 plus one console.log of a line shaped like our challenge's decision line:
  // what one log line per request costs in this runtime, apart from any Worker's own work.
  writeFileSync(path.join(BUILD, 'floor-log.js'), `const line = JSON.stringify({ route: 'GET /weather', outcome: 'challenge', amount: '10000', asset: '0x036CbD53842c5426634e7929541eC2318f3dCF7e', network: 'eip155:84532', x402: 'decision' });\nexport default { fetch() { console.log(line); return new Response('{"x402Version":2}', { status: 402, headers: { 'content-type': 'application/json' } }); } };\n`);
  writeFileSync(path.join(BUILD, 'proxy.js'), `export default { fetch(request, env) { const u = new URL(request.url); return fetch(env.ORIGIN_URL + u.pathname + u.search, request); } };\n`);
}

/** A throwaway CDP API key (ECDSA P-256 as SEC1 PEM) for the CDP-authenticated run. */
const CDP_KEY = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'pem', type: 'sec1' });

function miniflareOptions(kind, originUrl, facilitatorUrl) {
  const common = {
    host: '127.0.0.1', port: 0, modules: true, compatibilityDate: '2026-07-30', cf: false,
    // workerd's stdout/stderr (the Workers' log lines) are drained, not printed: printing them
    // from this process would load the same event loop that runs the origin and facilitator.
    handleRuntimeStdio(stdout, stderr) { stdout.resume(); stderr.resume(); },
  };
  if (kind === 'ours' || kind === 'ours-cdp' || kind === 'ours-logged') {
    const cdp = kind === 'ours-cdp' ? { FACILITATOR_AUTH: 'cdp', CDP_API_KEY_ID: 'organizations/bench/apiKeys/bench', CDP_API_KEY_SECRET: CDP_KEY } : {};
    if (kind === 'ours-logged') cdp.DECISION_LOG = 'all';
    return {
      ...common,
      scriptPath: path.join(ROOT, 'build/index.js'),
      modulesRoot: path.join(ROOT, 'build'),
      modulesRules: [{ type: 'ESModule', include: ['**/*.js'] }, { type: 'CompiledWasm', include: ['**/*.wasm'] }],
      compatibilityFlags: ['enable_request_signal'],
      kvNamespaces: ['PASSES'],
      durableObjects: { LEDGER: { className: 'PaymentLedger', useSQLite: true } },
      bindings: { ORIGIN_URL: originUrl, FACILITATOR_URL: facilitatorUrl, FACILITATOR_ADDRESS, RECEIVER_AUTHORIZER, PAY_TO, ROUTES: OUR_ROUTES, ...cdp, ...(process.env.BENCH_DECISION_LOG ? { DECISION_LOG: process.env.BENCH_DECISION_LOG } : {}) },
    };
  }
  if (kind === 'floor') return { ...common, scriptPath: path.join(BUILD, 'floor.js') };
  if (kind === 'floor-log') return { ...common, scriptPath: path.join(BUILD, 'floor-log.js') };
  if (kind === 'proxy') return { ...common, scriptPath: path.join(BUILD, 'proxy.js'), bindings: { ORIGIN_URL: originUrl } };
  return {
    ...common,
    scriptPath: path.join(BUILD, 'peer.js'),
    compatibilityFlags: ['nodejs_compat'],
    bindings: { ORIGIN_URL: originUrl, FACILITATOR_URL: facilitatorUrl, PAY_TO },
  };
}

async function startServer(kind, originUrl, facilitatorUrl) {
  return startMiniflare(miniflareOptions(kind, originUrl, facilitatorUrl));
}

/** A Miniflare with `options`, ready: {mf, url, pid} (`pid`: the workerd it started). */
async function startMiniflare(options) {
  const known = new Set(childPids('workerd'));
  const mf = new Miniflare(options);
  const url = (await mf.ready).toString().replace(/\/$/, '');
  const pid = childPids('workerd').find((p) => !known.has(p));
  return { mf, url, pid };
}

/** This process's child processes named `name` (only its own: other workerd processes on a shared
 * machine must not be mistaken for the server just started). */
function childPids(name) {
  try {
    return execFileSync('ps', ['-eo', 'pid,ppid,comm', '--no-headers']).toString().trim().split('\n')
      .map((l) => l.trim().split(/\s+/)).filter(([, ppid, comm]) => comm === name && Number(ppid) === process.pid).map(([pid]) => Number(pid));
  } catch {
    return [];
  }
}

/** CPU seconds (user + system) a process has used so far. */
function cpuSeconds(pid) {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return (Number(f[11]) + Number(f[12])) / 100;
  } catch {
    return NaN;
  }
}

function rssKiB(pid) {
  try {
    const m = readFileSync(`/proc/${pid}/status`, 'utf8').match(/VmRSS:\s+(\d+)/);
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

// ---- load ----------------------------------------------------------------------------------

function presign(accepted, n, tag = 'extra') {
  const file = path.join(BUILD, `presigned-${tag}.txt`);
  const out = execFileSync('cargo', ['run', '--quiet', '--release', '--example', 'presign', '--', JSON.stringify(accepted), String(n)], { cwd: ROOT, maxBuffer: 1 << 30 });
  writeFileSync(file, out);
  return file;
}

const LUA_HEADERS = `
local lines, i, path, name = {}, 0, "/weather", nil
init = function(args)
  name, path = args[1], args[2]
  if args[3] then for l in io.lines(args[3]) do lines[#lines + 1] = l end end
end
request = function()
  if #lines == 0 then return wrk.format("GET", path) end
  i = i + 1
  if i > #lines then i = #lines end  -- never reached: the run is sized to consume fewer
  return wrk.format("GET", path, { [name] = lines[i] })
end
`;

function parseWrk(stdout, stderr) {
  const num = (re) => { const m = stdout.match(re); return m ? Number(m[1]) : NaN; };
  const ms = (label) => {
    const m = stdout.match(new RegExp(`${label}\\s+([\\d.]+)(us|ms|s)`));
    if (!m) return NaN;
    const v = Number(m[1]);
    return m[2] === 'us' ? v / 1000 : m[2] === 's' ? v * 1000 : v;
  };
  const [u, s, r] = stderr.trim().split('\n').at(-1).split(' ').map(Number);
  return {
    rps: num(/Requests\/sec:\s+([\d.]+)/),
    requests: num(/(\d+) requests in/),
    non2xx: num(/Non-2xx or 3xx responses:\s+(\d+)/) || 0,
    errors: stdout.match(/Socket errors:.*/)?.[0] ?? '',
    p50: ms('50%'),
    p99: ms('99%'),
    wrkCpu: (u + s) / r,
  };
}

function runWrk(url, opts, pid) {
  const script = path.join(BUILD, 'load.lua');
  writeFileSync(script, LUA_HEADERS);
  const args = ['-t1', `-c${CONNECTIONS}`, `-d${SECONDS}s`, '--latency', '-s', script, url, '--', opts.header ?? 'x-none', opts.path ?? '/weather'];
  if (opts.file) args.push(opts.file);
  return spawnWrk(args, pid);
}

/** Runs wrk with `args`, timed; its figures ({@link parseWrk}), the workerd CPU per request of
 * process `pid`, and the first refusal a script reported (a stderr line `non-2xx: …`). */
function spawnWrk(args, pid) {
  const cpu0 = cpuSeconds(pid);
  return new Promise((resolve, reject) => {
    const child = spawn('bash', ['-c', `TIMEFORMAT='%U %S %R'; time wrk "$@"`, 'wrk', ...args]);
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { err += d; });
    child.on('exit', (code) => {
      if (code !== 0) return reject(new Error(`wrk failed: ${err}`));
      const r = parseWrk(out, err.split('\n').filter((l) => !l.startsWith('non-2xx: ')).join('\n'));
      r.workerdCpuMs = ((cpuSeconds(pid) - cpu0) * 1000) / Math.max(1, r.requests);
      r.firstRefusal = err.match(/non-2xx: .*/)?.[0];
      return resolve(r);
    });
  });
}

// ---- scenarios -----------------------------------------------------------------------------

async function challengeOf(url, routePath = '/weather') {
  const r = await fetch(`${url}${routePath}`);
  await r.arrayBuffer();
  return JSON.parse(Buffer.from(r.headers.get('payment-required'), 'base64').toString()).accepts[0];
}

/** Fresh pre-signed payments for one load run: enough for `perSecond` req/s over SECONDS. */
function paymentsFor(accepted, perSecond, tag) {
  const n = perSecond * SECONDS;
  return { file: presign(accepted, n, tag), n };
}

/** A paid load run of `kind` on `path` with fresh payments for `accepted` (exact or upto), the
 * stand-in answering after `delay` ms; fails on any non-2xx answer, on running out of payments,
 * and for upto on any settlement of another amount than the origin reported. */
async function paidRun(server, standin, kind, name, round, accepted, path, delay, perSecond) {
  standin.setDelay(delay);
  standin.reset();
  const { file, n } = paymentsFor(accepted, perSecond, `${kind}-${name}-${round}`);
  log(`round ${round + 1}: ${kind} ${name}`);
  const r = await runWrk(server.url, { header: 'payment-signature', file, path }, server.pid);
  if (r.non2xx > 0 || r.requests > n) throw new Error(`${kind} ${name}: ${r.non2xx} non-2xx of ${r.requests} (pre-signed ${n})`);
  if (accepted.scheme === 'upto') {
    const amounts = standin.calls.settledAmounts;
    if (Object.keys(amounts).join() !== METERED_AMOUNT || standin.calls.settle < r.requests) {
      throw new Error(`${kind} ${name}: settled ${JSON.stringify(amounts)} for ${r.requests} answers, not ${METERED_AMOUNT} each`);
    }
  }
  r.roundTrips = (standin.calls.verify + standin.calls.settle) / r.requests;
  r.verifyCalls = standin.calls.verify;
  r.settleCalls = standin.calls.settle;
  return r;
}

/** One round of every load scenario on one server kind; the facilitator stand-in counts calls.
 * `accepted`: the exact requirement of /weather; `uptoAccepted`: the upto one of /metered. */
async function loadRound(kind, origin, accepted, uptoAccepted, round) {
  const out = {};
  const standin = await startStandin({ delayMs: 0 });
  const server = await startServer(kind, origin.url, standin.url);
  const paid = async (name, path, delay, perSecond, offer = accepted) => {
    out[name] = await paidRun(server, standin, kind, name, round, offer, path, delay, perSecond);
  };
  try {
    for (let i = 0; i < 50; i++) await (await fetch(`${server.url}/weather`)).arrayBuffer(); // warm up
    log(`round ${round + 1}: ${kind} challenge`);
    out.challenge = await runWrk(server.url, {}, server.pid);
    await paid('paid0', '/weather', 0, 1500);
    await paid('paid50', '/weather', 50, 400);
    await paid('upto0', '/metered', 0, 1500, uptoAccepted);
    await paid('upto50', '/metered', 50, 400, uptoAccepted);
    if (kind === 'ours') {
      await paid('minted0', '/minted', 0, 1500);
      const { file } = paymentsFor(accepted, 1, `session-${round}`);
      const first = readFileSync(file, 'utf8').split('\n')[0];
      const r = await fetch(`${server.url}/minted`, { headers: { 'payment-signature': first } });
      await r.arrayBuffer();
      const token = r.headers.get('x402-pass');
      if (!token) throw new Error('no pass token');
      const tokens = path.join(BUILD, 'session.txt');
      writeFileSync(tokens, Array(20_000 * SECONDS).fill(token).join('\n'));
      log(`round ${round + 1}: ours pass`);
      out.session = await runWrk(server.url, { header: 'x402-pass', file: tokens, path: '/minted' }, server.pid);
      if (out.session.non2xx > 0) throw new Error('pass requests failed');
    }
  } finally {
    await server.mf.dispose();
    await standin.stop();
  }
  return out;
}

/** Per-scenario medians over rounds, metric by metric. */
function medians(rounds) {
  const out = {};
  for (const scenario of Object.keys(rounds[0])) {
    out[scenario] = {};
    for (const metric of Object.keys(rounds[0][scenario])) {
      const xs = rounds.map((r) => r[scenario][metric]);
      out[scenario][metric] = typeof xs[0] === 'number' ? median(xs) : xs[0];
    }
  }
  return out;
}

async function startupTimes(kind, origin) {
  const standin = await startStandin();
  const ready = [];
  const first = [];
  const second = [];
  try {
    for (let i = 0; i < 5; i++) {
      const t0 = performance.now();
      const mf = new Miniflare(miniflareOptions(kind, origin.url, standin.url));
      const url = (await mf.ready).toString().replace(/\/$/, '');
      const t1 = performance.now();
      const r = await fetch(`${url}/weather`);
      await r.arrayBuffer();
      const t2 = performance.now();
      if (r.status !== 402) throw new Error(`${kind} first response ${r.status}`);
      await (await fetch(`${url}/weather`)).arrayBuffer();
      const t3 = performance.now();
      ready.push(t1 - t0);
      first.push(t2 - t1);
      second.push(t3 - t2);
      await mf.dispose();
    }
  } finally {
    await standin.stop();
  }
  return { ready: median(ready), first: median(first), second: median(second) };
}

/** Streams an `mb` MiB paid body through the server, sampling workerd's RSS. */
async function streaming(kind, origin, header) {
  const standin = await startStandin();
  const server = await startServer(kind, origin.url, standin.url);
  const out = {};
  try {
    for (const mb of [10, 100]) {
      await (await fetch(`${server.url}/weather`)).arrayBuffer();
      const base = rssKiB(server.pid);
      let peak = base;
      const timer = setInterval(() => { peak = Math.max(peak, rssKiB(server.pid)); }, 5);
      const t0 = performance.now();
      const res = await fetch(`${server.url}/big?mb=${mb}`, { headers: { 'payment-signature': header() } });
      let bytes = 0;
      for await (const c of res.body) bytes += c.length;
      const ms = performance.now() - t0;
      clearInterval(timer);
      peak = Math.max(peak, rssKiB(server.pid));
      if (res.status !== 200 || bytes !== mb * 1024 * 1024) throw new Error(`${kind} /big ${mb}: ${res.status} ${bytes}`);
      out[mb] = { deltaMiB: (peak - base) / 1024, ms };
    }
  } finally {
    await server.mf.dispose();
    await standin.stop();
  }
  return out;
}

// ---- micro-benchmarks ----------------------------------------------------------------------

const VECTOR = {
  domain: { name: 'USDC', version: '2', chainId: 84532, verifyingContract: '0x036CbD53842c5426634e7929541eC2318f3dCF7e' },
  types: { TransferWithAuthorization: [
    { name: 'from', type: 'address' }, { name: 'to', type: 'address' }, { name: 'value', type: 'uint256' },
    { name: 'validAfter', type: 'uint256' }, { name: 'validBefore', type: 'uint256' }, { name: 'nonce', type: 'bytes32' },
  ] },
  primaryType: 'TransferWithAuthorization',
  message: {
    from: '0x857b06519E91e3A54538791bDbb0E22373e36b66', to: '0x209693Bc6afc0C5328bA36FaF03C514EF312287C', value: 10000n,
    validAfter: 1740672089n, validBefore: 1740672154n, nonce: '0xf3746613c2d920b5fdabc0856f2aeb2d4f88ee6037b8cc5d04a71a4462f13480',
  },
  signature: '0x2d6a7588d6acca505cbf0d9a4a227e0c52c6c34008c8e8986a1283259764173608a2ce6496642e377d6da8dbbf5836e9bd15092f9ecab05ded3d6293af148b571c',
};

async function micro() {
  log('criterion (native)');
  execFileSync('cargo', ['bench', '--quiet', '--bench', 'verify', '--', '--warm-up-time', '1', '--measurement-time', '4'], { cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'] });
  const est = (name) => JSON.parse(readFileSync(path.join(ROOT, `target/criterion/${name}/new/estimates.json`), 'utf8')).median.point_estimate / 1000;
  const native = est('eip3009_verify');
  const nativeDigest = est('eip712_digest');

  log('wasm in V8');
  execFileSync('cargo', ['build', '--quiet', '--release', '--target', 'wasm32-unknown-unknown', '-p', 'verify-wasm-bench'], { cwd: ROOT, stdio: 'inherit' });
  const dir = path.join(BUILD, 'verify-wasm');
  execFileSync(process.env.WASM_BINDGEN_BIN || 'wasm-bindgen', ['--target', 'nodejs', '--out-dir', dir, path.join(ROOT, 'target/wasm32-unknown-unknown/release/verify_wasm_bench.wasm')]);
  writeFileSync(path.join(dir, 'package.json'), '{"type":"commonjs"}');
  const wasm = require(path.join(dir, 'verify_wasm_bench.js'));
  const time = (fn, n) => { fn(Math.max(1, n / 10)); const t0 = process.hrtime.bigint(); fn(n); return Number(process.hrtime.bigint() - t0) / 1000 / n; };
  if (wasm.verify(3) !== 3) throw new Error('wasm verify is wrong');
  const wasmUs = median([0, 1, 2].map(() => time((n) => wasm.verify(n), 2000)));
  // What a fresh isolate's first request does once: parse and validate the variables.
  const vars = JSON.stringify({ ORIGIN_URL: 'http://127.0.0.1:8788', FACILITATOR_URL: 'http://127.0.0.1:4022', FACILITATOR_ADDRESS, RECEIVER_AUTHORIZER, PAY_TO, ROUTES: OUR_ROUTES });
  if (wasm.config_parse(vars, 2) !== 2) throw new Error('config_parse failed');
  const configUs = median([0, 1, 2].map(() => time((n) => wasm.config_parse(vars, n), 200)));
  // Compiling the Worker's wasm in this V8 (workerd does it when the script loads).
  const bytes = readFileSync(path.join(ROOT, 'build/index_bg.wasm'));
  const compileMs = [];
  for (let i = 0; i < 5; i++) {
    const t0 = process.hrtime.bigint();
    await WebAssembly.compile(bytes);
    compileMs.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }

  log('viem in V8');
  const viemOnce = async () => {
    const ok = await verifyTypedData({ address: VECTOR.message.from, ...VECTOR });
    if (!ok) throw new Error('viem verify is wrong');
  };
  for (let i = 0; i < 100; i++) await viemOnce();
  const viemRuns = [];
  for (let r = 0; r < 3; r++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < 500; i++) await viemOnce();
    viemRuns.push(Number(process.hrtime.bigint() - t0) / 1000 / 500);
  }
  return { native, nativeDigest, wasm: wasmUs, viem: median(viemRuns), configUs, compileMs: median(compileMs) };
}

/** Ours with `FACILITATOR_AUTH = "cdp"` (an ES256 JWT signed per facilitator call), paid at 0 ms. */
async function cdpRound(origin, accepted, round) {
  const standin = await startStandin({ delayMs: 0 });
  const server = await startServer('ours-cdp', origin.url, standin.url);
  try {
    for (let i = 0; i < 50; i++) await (await fetch(`${server.url}/weather`)).arrayBuffer();
    const { file, n } = paymentsFor(accepted, 1500, `ours-cdp-${round}`);
    log(`round ${round + 1}: ours paid0 with CDP JWTs`);
    const r = await runWrk(server.url, { header: 'payment-signature', file, path: '/weather' }, server.pid);
    if (r.non2xx > 0 || r.requests > n) throw new Error(`ours-cdp: ${r.non2xx} non-2xx of ${r.requests} (pre-signed ${n})`);
    const calls = standin.calls.verify + standin.calls.settle;
    if (standin.calls.bearer !== calls) throw new Error(`ours-cdp: ${standin.calls.bearer} of ${calls} facilitator calls carried a JWT`);
    r.roundTrips = calls / r.requests;
    return { paid0cdp: r };
  } finally {
    await server.mf.dispose();
    await standin.stop();
  }
}

// ---- report --------------------------------------------------------------------------------

async function floorChallenge(origin, kind = 'floor') {
  const server = await startServer(kind, origin.url, origin.url);
  try {
    for (let i = 0; i < 50; i++) await (await fetch(`${server.url}/weather`)).arrayBuffer();
    return await runWrk(server.url, {}, server.pid);
  } finally {
    await server.mf.dispose();
  }
}

/** Our 402 challenge with `DECISION_LOG = "all"` (a log line per plain challenge; the default,
 * "payments", writes none). */
async function loggedChallenge(origin) {
  const standin = await startStandin();
  const server = await startServer('ours-logged', origin.url, standin.url);
  try {
    for (let i = 0; i < 50; i++) await (await fetch(`${server.url}/weather`)).arrayBuffer();
    return await runWrk(server.url, {}, server.pid);
  } finally {
    await server.mf.dispose();
    await standin.stop();
  }
}

/** An unpriced path (`/free`) through `kind` (ours, or the plain JS proxy floor) to the origin. */
async function passThrough(kind, origin) {
  const standin = await startStandin();
  const server = await startServer(kind, origin.url, standin.url);
  try {
    for (let i = 0; i < 50; i++) await (await fetch(`${server.url}/free`)).arrayBuffer();
    const r = await runWrk(server.url, { path: '/free' }, server.pid);
    if (r.non2xx > 0) throw new Error(`${kind} pass-through: ${r.non2xx} non-2xx`);
    return r;
  } finally {
    await server.mf.dispose();
    await standin.stop();
  }
}

// wrk with one connection per thread, each thread sending its own file's lines in order: one
// channel per connection (a channel takes one voucher at a time).
const LUA_CHANNELS = `
local counter, lines, i, path, name = 0, {}, 1, "/channel", nil
setup = function(thread) thread:set("id", counter); counter = counter + 1 end
init = function(args)
  name, path = args[1], args[2]
  if args[3] then for l in io.lines(args[3] .. "-" .. id .. ".txt") do lines[#lines + 1] = l end end
end
-- The next voucher only after the last one was answered 200 (wrk may build a request it never
-- sends, so a request count would skip one).
request = function()
  if #lines == 0 then return wrk.format("GET", path) end
  return wrk.format("GET", path, { [name] = lines[math.min(i, #lines)] })
end
local shown = false
response = function(status, headers, body)
  if status == 200 then i = i + 1 end
  if status ~= 200 and not shown then shown = true; io.stderr:write("non-2xx: " .. status .. " " .. body .. string.char(10)) end
end
`;

/** A wrk run with `connections` threads of one connection each (LUA_CHANNELS); `prefix`: the
 * per-thread files' prefix (`<prefix>-<thread>.txt`), or none for unpaid requests. */
function runWrkThreads(url, routePath, connections, prefix, pid) {
  const script = path.join(BUILD, 'channels.lua');
  writeFileSync(script, LUA_CHANNELS);
  const args = [`-t${connections}`, `-c${connections}`, `-d${SECONDS}s`, '--latency', '-s', script, url, '--', 'payment-signature', routePath];
  if (prefix) args.push(prefix);
  return spawnWrk(args, pid);
}

/** BENCH_ONLY=channel: paid requests on payment channels (one channel per connection, vouchers in
 * order, each channel learnt by one /verify, then no facilitator call but the claims every 100
 * vouchers, off the request path), next to our unpriced pass-through with the same load, and the
 * peer's paid `exact` request at 50 ms; BENCH_ROUNDS interleaved rounds, medians. */
async function onlyChannel() {
  buildPeer();
  const origin = await startBenchOrigin();
  const rounds = { free: [], channel: [], peer50: [] };
  try {
    for (let round = 0; round < ROUNDS; round++) {
      const standin = await startStandin({ delayMs: 0 });
      const server = await startServer('ours', origin.url, standin.url);
      try {
        for (let i = 0; i < 50; i++) await (await fetch(`${server.url}/free`)).arrayBuffer();
        log(`round ${round + 1}: ours free (${CONNECTIONS} threads)`);
        rounds.free.push(await runWrkThreads(server.url, '/free', CONNECTIONS, null, server.pid));
        const accepted = await challengeOf(server.url, '/channel');
        const prefix = path.join(BUILD, `vouchers-${round}`);
        const perChannel = 500 * SECONDS;
        for (let c = 0; c < CONNECTIONS; c++) {
          const out = execFileSync('cargo', ['run', '--quiet', '--release', '--example', 'presign', '--', JSON.stringify(accepted), String(perChannel)], { cwd: ROOT, maxBuffer: 1 << 30, env: { ...process.env, CHANNEL: String(round * CONNECTIONS + c) } });
          writeFileSync(`${prefix}-${c}.txt`, out);
        }
        standin.reset();
        log(`round ${round + 1}: ours channel (${CONNECTIONS} channels)`);
        const r = await runWrkThreads(server.url, '/channel', CONNECTIONS, prefix, server.pid);
        if (r.non2xx > 0) throw new Error(`channel: ${r.non2xx} non-2xx of ${r.requests}; the first: ${r.firstRefusal}`);
        if (r.requests > perChannel * CONNECTIONS) throw new Error('channel: ran out of vouchers');
        r.verifyCalls = standin.calls.verify;
        r.settleCalls = standin.calls.settle;
        log(`channel run: ${r.requests} requests, ${r.non2xx} non-2xx, facilitator calls ${JSON.stringify(standin.calls)}`);
        rounds.channel.push(r);
      } finally {
        await server.mf.dispose();
        await standin.stop();
      }
      const peerStandin = await startStandin({ delayMs: 50 });
      const peer = await startServer('peer', origin.url, peerStandin.url);
      try {
        const accepted = await challengeOf(peer.url);
        rounds.peer50.push(await paidRun(peer, peerStandin, 'peer', 'paid50', round, accepted, '/weather', 50, 400));
      } finally {
        await peer.mf.dispose();
        await peerStandin.stop();
      }
    }
  } finally {
    await origin.stop?.();
  }
  const pick = (rs) => ({ rps: Math.round(median(rs.map((r) => r.rps))), p50: median(rs.map((r) => r.p50)), p99: median(rs.map((r) => r.p99)), workerdCpuMs: Number(median(rs.map((r) => r.workerdCpuMs)).toFixed(3)) });
  const out = { free: pick(rounds.free), channel: pick(rounds.channel), peerExact50: pick(rounds.peer50) };
  out.channel.facilitatorCalls = rounds.channel.map((r) => ({ requests: r.requests, verify: r.verifyCalls, settle: r.settleCalls }));
  out.channelVsFree = { rps: Number((out.channel.rps / out.free.rps).toFixed(2)), p50: Number((out.channel.p50 / out.free.p50).toFixed(2)) };
  out.channelVsPeerExact50 = Number((out.channel.rps / out.peerExact50.rps).toFixed(1));
  console.log(JSON.stringify(out));
}

// ---- MCP: a paid tool call ----------------------------------------------------------------

/** Bundles the MCP origin and the agents-paid MCP peer (agents from tests/agents, setup.sh). */
function buildMcp() {
  for (const name of ['mcp-origin', 'mcp-agents']) {
    execFileSync(path.join(ROOT, 'node_modules/@esbuild/linux-x64/bin/esbuild'), [
      `bench/peer/${name}.mjs`, '--bundle', '--format=esm', '--platform=neutral', '--main-fields=module,main',
      '--conditions=workerd,worker,browser,import', '--alias:url=node:url', '--external:node:*', `--outfile=${BUILD}/${name}.js`, '--log-level=warning',
    ], { cwd: ROOT, stdio: 'inherit', env: { ...process.env, NODE_PATH: path.join(ROOT, 'tests/agents/node_modules') } });
  }
}

/** `ours`: our Worker with `/mcp`'s `search` at $0.01, in front of the unmodified MCP server (a
 * second Worker in the same workerd, behind ORIGIN_SERVICE); `peer`: the same server paid through
 * agents' withX402/paidTool. Both in one Miniflare, the stand-in facilitator at `facilitatorUrl`. */
async function startMcpServer(kind, facilitatorUrl) {
  const { host, port, cf, handleRuntimeStdio, ...ours } = miniflareOptions('ours', 'http://unused.invalid', facilitatorUrl);
  const { ORIGIN_URL, ...bindings } = ours.bindings;
  const worker = (name, file, more = {}) => ({ name, modules: true, scriptPath: path.join(BUILD, `${file}.js`), compatibilityDate: ours.compatibilityDate, ...more });
  const workers = kind === 'ours'
    ? [{ ...ours, name: 'paywall', bindings: { ...bindings, MCP: [{ path: '/mcp', tools: { search: '$0.01' }, default: 'deny' }] }, serviceBindings: { ORIGIN_SERVICE: 'origin' } }, worker('origin', 'mcp-origin')]
    : [worker('peer', 'mcp-agents', { compatibilityFlags: ['nodejs_compat'], bindings: { FACILITATOR_URL: facilitatorUrl, PAY_TO } })];
  return startMiniflare({ host, port, cf, handleRuntimeStdio, workers });
}

/** POSTs one JSON-RPC message to `/mcp` (in session `sid`); the answer's headers and message. */
async function mcpPost(url, message, sid) {
  const headers = { 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': '2025-06-18' };
  if (sid) headers['mcp-session-id'] = sid;
  const r = await fetch(`${url}/mcp`, { method: 'POST', headers, body: JSON.stringify(message) });
  const text = await r.text();
  return { headers: r.headers, message: text ? JSON.parse(text) : undefined };
}

/** Opens an MCP session on `url`; its id and the `search` tool's requirement (from an unpaid
 * call's `_meta["x402/error"]`, which both servers set). */
async function mcpSession(url) {
  const init = await mcpPost(url, { jsonrpc: '2.0', id: 0, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'bench', version: '1.0.0' } } });
  const sid = init.headers.get('mcp-session-id');
  if (!sid) throw new Error(`no MCP session: ${JSON.stringify(init.message)}`);
  await mcpPost(url, { jsonrpc: '2.0', method: 'notifications/initialized' }, sid);
  const unpaid = await mcpPost(url, { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'search', arguments: {} } }, sid);
  const accepted = unpaid.message?.result?._meta?.['x402/error']?.accepts?.[0];
  if (!accepted) throw new Error(`no price for search: ${JSON.stringify(unpaid.message)}`);
  return { sid, accepted };
}

// Paid `tools/call`s of `search` in one session, each under its own JSON-RPC id, the payment
// (base64, the agents form) in `_meta["x402/payment"]`; an answer without
// `x402/payment-response` counts as a refusal (an MCP payment failure is an HTTP 200).
const LUA_MCP = `
local lines, i, id, sid = {}, 0, 100, nil
failures, first = 0, nil
local threads = {}
setup = function(thread) table.insert(threads, thread) end
init = function(args)
  sid = args[1]
  for l in io.lines(args[2]) do lines[#lines + 1] = l end
end
request = function()
  i = i + 1
  if i > #lines then i = #lines end
  id = id + 1
  local body = '{"jsonrpc":"2.0","id":' .. id .. ',"method":"tools/call","params":{"name":"search","arguments":{},"_meta":{"x402/payment":"' .. lines[i] .. '"}}}'
  return wrk.format("POST", "/mcp", { ["content-type"] = "application/json", ["accept"] = "application/json, text/event-stream", ["mcp-session-id"] = sid, ["mcp-protocol-version"] = "2025-06-18" }, body)
end
response = function(status, headers, body)
  if not string.find(body, '"x402/payment-response"', 1, true) then
    failures = failures + 1
    if first == nil then first = body end
  end
end
done = function(summary, latency, requests)
  for _, t in ipairs(threads) do
    local f = t:get("failures")
    if f and f > 0 then io.stderr:write("non-2xx: " .. f .. " unpaid answers; the first: " .. tostring(t:get("first")) .. "\\n") end
  end
end
`;

/** One paid tool-call load run on an MCP server at `delay` ms facilitator delay. */
async function mcpRun(server, standin, session, kind, round, delay, perSecond) {
  standin.setDelay(delay);
  const n = perSecond * SECONDS;
  const file = presign(session.accepted, n, `mcp-${kind}-${delay}-${round}`);
  standin.reset();
  const script = path.join(BUILD, 'mcp.lua');
  writeFileSync(script, LUA_MCP);
  log(`round ${round + 1}: ${kind} MCP paid tool call, ${delay} ms`);
  const r = await spawnWrk(['-t1', `-c${CONNECTIONS}`, `-d${SECONDS}s`, '--latency', '-s', script, server.url, '--', session.sid, file], server.pid);
  if (r.firstRefusal || r.non2xx > 0 || r.requests > n) throw new Error(`${kind} MCP ${delay} ms: ${r.firstRefusal ?? `${r.non2xx} non-2xx`} of ${r.requests} (pre-signed ${n})`);
  if (standin.calls.settle < r.requests) throw new Error(`${kind} MCP ${delay} ms: ${standin.calls.settle} settles for ${r.requests} answers`);
  r.verifyCalls = standin.calls.verify;
  r.settleCalls = standin.calls.settle;
  r.roundTrips = (r.verifyCalls + r.settleCalls) / r.requests;
  return r;
}

/** Paid MCP tool calls, ours and the agents peer, at 0 and 50 ms: BENCH_ROUNDS interleaved rounds. */
async function mcpRounds() {
  buildMcp();
  const rounds = { ours: [], peer: [] };
  for (let round = 0; round < ROUNDS; round++) {
    for (const kind of ['ours', 'peer']) {
      const standin = await startStandin({ delayMs: 0 });
      const server = await startMcpServer(kind, standin.url);
      try {
        const session = await mcpSession(server.url);
        rounds[kind].push({ mcp0: await mcpRun(server, standin, session, kind, round, 0, 1500), mcp50: await mcpRun(server, standin, session, kind, round, 50, 400) });
      } finally {
        await server.mf.dispose();
        await standin.stop();
      }
    }
  }
  return { ours: medians(rounds.ours), peer: medians(rounds.peer) };
}

/** The report's rows for the paid MCP tool call. */
function mcpRows({ ours, peer }) {
  const lines = [];
  for (const d of [0, 50]) {
    const o = ours[`mcp${d}`];
    const p = peer[`mcp${d}`];
    lines.push(row(`(t) paid MCP tool call, facilitator ${d} ms, throughput [peer: agents withX402/paidTool]`, o.rps, p.rps, 'req/s'));
    lines.push(row(`(t) paid MCP tool call, facilitator ${d} ms, p50`, o.p50, p.p50, 'ms', 'lower', 2));
    lines.push(row(`(t) paid MCP tool call, facilitator ${d} ms, p99`, o.p99, p.p99, 'ms', 'lower', 2));
    lines.push(row(`(t) paid MCP tool call, facilitator ${d} ms, workerd CPU per call (ours: paywall + MCP origin)`, o.workerdCpuMs, p.workerdCpuMs, 'ms', 'lower', 3));
    lines.push(`| (t) facilitator round trips per paid tool call, ${d} ms | ${fmt(o.roundTrips, 2)} (verify ${o.verifyCalls}, settle ${o.settleCalls}) | ${fmt(p.roundTrips, 2)} (verify ${p.verifyCalls}, settle ${p.settleCalls}) | |`);
  }
  return lines;
}

/** BENCH_ONLY=mcp: the paid MCP tool call rows (stderr) and JSON (stdout). */
async function onlyMcp() {
  const m = await mcpRounds();
  console.error(mcpRows(m).join('\n'));
  const pick = (r) => ({ rps: Math.round(r.rps), p50: r.p50, p99: r.p99, workerdCpuMs: r.workerdCpuMs, roundTrips: r.roundTrips });
  console.log(JSON.stringify({ ours: { mcp0: pick(m.ours.mcp0), mcp50: pick(m.ours.mcp50) }, peer: { mcp0: pick(m.peer.mcp0), mcp50: pick(m.peer.mcp50) }, loadavg: os.loadavg() }));
}

/** BENCH_ONLY=dofloor: what Durable Object RPC calls per request cost in this runtime, apart from
 * any Worker's own work: a plain JS `fetch` proxy to the origin, and the same proxy that first
 * calls an RPC method of a Durable Object (one of 16, picked at random, as the channel rows spread
 * over 16 channels): once or twice doing nothing, or one to three times each upserting one
 * 600-byte row in the object's SQLite, as a channel's reservation and charge (and a paid `exact`
 * request's reservation, send mark and finish) each persist a record. The floor under any design
 * that keeps one writer per channel and persists what exactly-once needs (issue 22's "channel
 * request within 1.25× of the pass-through", docs/channels.md). BENCH_ROUNDS interleaved rounds,
 * medians (JSON). */
async function onlyDoFloor() {
  const script = (calls, write) => `import { DurableObject } from 'cloudflare:workers';
export class Shard extends DurableObject {
  constructor(ctx, env) { super(ctx, env); ${write ? "ctx.storage.sql.exec('CREATE TABLE IF NOT EXISTS channel (id INTEGER PRIMARY KEY, record TEXT NOT NULL)');" : ''} }
  ping(record) { ${write ? "this.ctx.storage.sql.exec('INSERT INTO channel (id, record) VALUES (0, ?) ON CONFLICT(id) DO UPDATE SET record = excluded.record', record);" : ''} return 'ok'; }
}
export default { async fetch(request, env) {
  for (let i = 0; i < ${calls}; i++) await env.SHARD.get(env.SHARD.idFromName(String(Math.floor(Math.random() * 16)))).ping(JSON.stringify({ n: Math.random(), pad: 'x'.repeat(580) }));
  const u = new URL(request.url); return fetch(env.ORIGIN_URL + u.pathname + u.search, request);
} };
`;
  // [name, calls per request, each call writes a row]
  const variants = [['proxy', 0, false], ['oneCall', 1, false], ['twoCalls', 2, false], ['oneWrite', 1, true], ['twoWrites', 2, true], ['threeWrites', 3, true]];
  const origin = await startBenchOrigin();
  const rounds = Object.fromEntries(variants.map(([name]) => [name, []]));
  try {
    for (let round = 0; round < ROUNDS; round++) {
      for (const [name, calls, write] of variants) {
        const file = path.join(BUILD, `dofloor-${name}.js`);
        writeFileSync(file, script(calls, write));
        const { mf, url, pid } = await startMiniflare({
          host: '127.0.0.1', port: 0, modules: true, compatibilityDate: '2026-07-30', cf: false, scriptPath: file,
          handleRuntimeStdio(stdout, stderr) { stdout.resume(); stderr.resume(); },
          durableObjects: { SHARD: { className: 'Shard', useSQLite: true } }, bindings: { ORIGIN_URL: origin.url },
        });
        try {
          for (let i = 0; i < 50; i++) await (await fetch(`${url}/free`)).arrayBuffer();
          log(`round ${round + 1}: ${name}`);
          const r = await runWrk(url, { path: '/free' }, pid);
          if (r.non2xx > 0) throw new Error(`${name}: ${r.non2xx} non-2xx`);
          rounds[name].push(r);
        } finally {
          await mf.dispose();
        }
      }
    }
  } finally {
    await origin.stop?.();
  }
  const pick = (rs) => ({ rps: Math.round(median(rs.map((r) => r.rps))), p50: median(rs.map((r) => r.p50)), workerdCpuMs: Number(median(rs.map((r) => r.workerdCpuMs)).toFixed(3)) });
  const out = Object.fromEntries(variants.map(([name]) => [name, pick(rounds[name])]));
  for (const [name] of variants.slice(1)) out[`${name}VsProxy`] = Number((out[name].rps / out.proxy.rps).toFixed(2));
  console.log(JSON.stringify(out));
}

/** BENCH_ONLY=paid0 | minted0: our paid request (selling a pass for minted0) at 0 ms, one run. */
async function onlyPaid0(routePath) {
  const origin = await startBenchOrigin();
  const standin = await startStandin({ delayMs: 0 });
  const server = await startServer('ours', origin.url, standin.url);
  try {
    const accepted = await challengeOf(server.url);
    const { file, n } = paymentsFor(accepted, 1500, 'only-paid0');
    const r = await runWrk(server.url, { header: 'payment-signature', file, path: routePath }, server.pid);
    console.log(JSON.stringify({ rps: r.rps, p50: r.p50, p99: r.p99, workerdCpuMs: r.workerdCpuMs, non2xx: r.non2xx, requests: r.requests, presigned: n, settles: standin.calls.settle, verifies: standin.calls.verify }));
  } finally {
    await server.mf.dispose();
    await standin.stop();
    await origin.stop?.();
  }
}

/** BENCH_ONLY=challenge: our 402 challenge and the runtime floor, one run each. */
async function onlyChallenge() {
  buildFloor();
  const origin = await startBenchOrigin();
  const standin = await startStandin({ delayMs: 0 });
  const out = {};
  try {
    out.floor = await floorChallenge(origin);
    out.floorLog = await floorChallenge(origin, 'floor-log');
    const server = await startServer('ours', origin.url, standin.url);
    try {
      for (let i = 0; i < 50; i++) await (await fetch(`${server.url}/weather`)).arrayBuffer();
      out.ours = await runWrk(server.url, {}, server.pid);
    } finally {
      await server.mf.dispose();
    }
    const pick = (r) => ({ rps: Math.round(r.rps), p50: r.p50, workerdCpuMs: r.workerdCpuMs });
    console.log(JSON.stringify({ floor: pick(out.floor), floorLog: pick(out.floorLog), ours: pick(out.ours) }));
  } finally {
    await standin.stop();
    await origin.stop?.();
  }
}

/** BENCH_ONLY=free: our pass-through and the JS proxy floor, interleaved rounds, medians. */
async function onlyFree() {
  buildFloor();
  const origin = await startBenchOrigin();
  const rounds = { proxy: [], ours: [] };
  try {
    for (let round = 0; round < ROUNDS; round++) {
      rounds.proxy.push(await passThrough('proxy', origin));
      rounds.ours.push(await passThrough('ours', origin));
    }
  } finally {
    await origin.stop?.();
  }
  const pick = (rs) => ({ rps: Math.round(median(rs.map((r) => r.rps))), p50: median(rs.map((r) => r.p50)), workerdCpuMs: median(rs.map((r) => r.workerdCpuMs)) });
  const out = { proxy: pick(rounds.proxy), ours: pick(rounds.ours) };
  out.oursVsFloor = Number((out.ours.rps / out.proxy.rps).toFixed(2));
  console.log(JSON.stringify(out));
}

/** The report's rows for the metered (`upto`) paid request, from per-scenario medians. */
function uptoRows(ours, peer) {
  const lines = [];
  for (const d of [0, 50]) {
    const o = ours[`upto${d}`];
    const p = peer[`upto${d}`];
    lines.push(row(`(m) metered paid request (upto, Permit2), facilitator ${d} ms, throughput`, o.rps, p.rps, 'req/s'));
    lines.push(row(`(m) metered paid request (upto, Permit2), facilitator ${d} ms, p50`, o.p50, p.p50, 'ms', 'lower', 2));
    lines.push(row(`(m) metered paid request (upto, Permit2), facilitator ${d} ms, p99`, o.p99, p.p99, 'ms', 'lower', 2));
    lines.push(row(`(m) metered paid request (upto, Permit2), facilitator ${d} ms, workerd CPU per request`, o.workerdCpuMs, p.workerdCpuMs, 'ms', 'lower', 3));
    lines.push(`| (m) facilitator round trips per metered paid request, ${d} ms | ${fmt(o.roundTrips, 2)} (verify ${o.verifyCalls}, settle ${o.settleCalls}) | ${fmt(p.roundTrips, 2)} (verify ${p.verifyCalls}, settle ${p.settleCalls}) | |`);
  }
  return lines;
}

/** A markdown row: ours, the peer's, and ours relative to the peer (`better`: which is better). */
function row(name, o, p, unit, better = 'higher', d = 0) {
  const ratio = better === 'higher' ? o / p : p / o;
  return `| ${name} | ${fmt(o, d)} ${unit} | ${fmt(p, d)} ${unit} | ${fmt(ratio, 2)}× |`;
}

/** Both servers' requirement for `routePath`; they must be identical, so one set of payments fits both. */
async function sameRequirements(origin, routePath) {
  const probe = await startStandin();
  const ours = await startServer('ours', origin.url, probe.url);
  const peer = await startServer('peer', origin.url, probe.url);
  try {
    const acceptedOurs = await challengeOf(ours.url, routePath);
    const acceptedPeer = await challengeOf(peer.url, routePath);
    if (JSON.stringify(acceptedOurs) !== JSON.stringify(acceptedPeer)) throw new Error(`requirements of ${routePath} differ:\n${JSON.stringify(acceptedOurs)}\n${JSON.stringify(acceptedPeer)}`);
    return acceptedOurs;
  } finally {
    await ours.mf.dispose();
    await peer.mf.dispose();
    await probe.stop();
  }
}

/** BENCH_ONLY=upto: the metered paid request, ours and the peer's, next to the exact one,
 * interleaved rounds, medians. */
async function onlyUpto() {
  buildPeer();
  const origin = await startBenchOrigin();
  const rounds = { ours: [], peer: [] };
  try {
    const exact = await sameRequirements(origin, '/weather');
    const accepted = await sameRequirements(origin, '/metered');
    for (let round = 0; round < ROUNDS; round++) {
      for (const kind of ['ours', 'peer']) {
        const standin = await startStandin({ delayMs: 0 });
        const server = await startServer(kind, origin.url, standin.url);
        try {
          for (let i = 0; i < 50; i++) await (await fetch(`${server.url}/weather`)).arrayBuffer();
          const out = {};
          out.upto0 = await paidRun(server, standin, kind, 'upto0', round, accepted, '/metered', 0, 1500);
          out.upto50 = await paidRun(server, standin, kind, 'upto50', round, accepted, '/metered', 50, 400);
          out.paid0 = await paidRun(server, standin, kind, 'paid0', round, exact, '/weather', 0, 1500);
          out.paid50 = await paidRun(server, standin, kind, 'paid50', round, exact, '/weather', 50, 400);
          rounds[kind].push(out);
        } finally {
          await server.mf.dispose();
          await standin.stop();
        }
      }
    }
  } finally {
    await origin.stop();
  }
  const ours = medians(rounds.ours);
  const peer = medians(rounds.peer);
  console.error(`wrk 1 thread, ${CONNECTIONS} connections, ${SECONDS} s per run; medians of ${ROUNDS} interleaved rounds; load ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`);
  console.error(uptoRows(ours, peer).join('\n'));
  for (const d of [0, 50]) {
    console.error(row(`(b) exact paid request, facilitator ${d} ms, throughput`, ours[`paid${d}`].rps, peer[`paid${d}`].rps, 'req/s'));
    console.error(row(`(b) exact paid request, facilitator ${d} ms, p50`, ours[`paid${d}`].p50, peer[`paid${d}`].p50, 'ms', 'lower', 2));
  }
  const pick = (r) => ({ rps: Math.round(r.rps), p50: r.p50, p99: r.p99, workerdCpuMs: r.workerdCpuMs, roundTrips: r.roundTrips, verifyCalls: r.verifyCalls, settleCalls: r.settleCalls });
  const picks = (m) => Object.fromEntries(['upto0', 'upto50', 'paid0', 'paid50'].map((k) => [k, pick(m[k])]));
  console.log(JSON.stringify({ ours: picks(ours), peer: picks(peer), loadavg: os.loadavg() }));
}

async function main() {
  if (process.env.BENCH_ONLY === 'upto') return onlyUpto();
  if (process.env.BENCH_ONLY === 'mcp') return onlyMcp();
  if (process.env.BENCH_ONLY === 'dofloor') return onlyDoFloor();
  if (process.env.BENCH_ONLY === 'channel') return onlyChannel();
  if (process.env.BENCH_ONLY === 'free') return onlyFree();
  if (process.env.BENCH_ONLY === 'startup') {
    const origin = await startBenchOrigin();
    const r = await startupTimes('ours', origin);
    await origin.stop();
    return console.log(JSON.stringify(r));
  }
  if (process.env.BENCH_ONLY === 'challenge') return onlyChallenge();
  if (process.env.BENCH_ONLY === 'paid0') return onlyPaid0('/weather');
  if (process.env.BENCH_ONLY === 'minted0') return onlyPaid0('/minted');
  buildPeer();
  buildFloor();
  const origin = await startBenchOrigin();
  const cpus = os.cpus();

  // Requirements of both servers must be identical so one set of payments fits both.
  const acceptedOurs = await sameRequirements(origin, '/weather');
  const acceptedUpto = await sameRequirements(origin, '/metered');
  // Interleaved rounds (floor, ours, peer) so that drift on a shared machine hits all alike.
  const rounds = { floor: [], ours: [], peer: [] };
  for (let round = 0; round < ROUNDS; round++) {
    log(`round ${round + 1}: floor`);
    rounds.floor.push({ challenge: await floorChallenge(origin), challengeLog: await floorChallenge(origin, 'floor-log'), proxy: await passThrough('proxy', origin) });
    rounds.ours.push({ ...(await loadRound('ours', origin, acceptedOurs, acceptedUpto, round)), ...(await cdpRound(origin, acceptedOurs, round)), free: await passThrough('ours', origin), logged: await loggedChallenge(origin) });
    rounds.peer.push(await loadRound('peer', origin, acceptedOurs, acceptedUpto, round));
  }
  const floors = medians(rounds.floor);
  const floor = floors.challenge;
  const ours = medians(rounds.ours);
  const peer = medians(rounds.peer);

  log('startup');
  const startOurs = await startupTimes('ours', origin);
  const startPeer = await startupTimes('peer', origin);
  log('streaming');
  let next = 0;
  const bigHeaders = readFileSync(presign(acceptedOurs, 8, 'big'), 'utf8').trim().split('\n');
  const streamOurs = await streaming('ours', origin, () => bigHeaders[next++]);
  const streamPeer = await streaming('peer', origin, () => bigHeaders[next++]);
  const m = await micro();
  await origin.stop();
  log('MCP');
  const mcp = await mcpRounds();

  const wasmPath = path.join(ROOT, 'build/index_bg.wasm');
  const raw = statSync(wasmPath).size;
  const gz = gzipSync(readFileSync(wasmPath), { level: 9 }).length;
  const peerRaw = statSync(path.join(BUILD, 'peer.js')).size;
  const peerGz = gzipSync(readFileSync(path.join(BUILD, 'peer.js')), { level: 9 }).length;

  const lines = [];
  lines.push(`Machine: ${cpus.length} × ${cpus[0].model}; Node ${process.version}; wrk 1 thread, ${CONNECTIONS} connections, ${SECONDS} s per run; medians of ${ROUNDS} interleaved rounds; both servers in Miniflare ${require('miniflare/package.json').version} (one workerd each).`);
  lines.push('');
  lines.push('| measure | ours (Rust/wasm) | peer (@x402/hono) | ours vs peer |');
  lines.push('|---|---|---|---|');
  lines.push(`| runtime floor: a JS Worker returning a constant 402 | ${fmt(floor.rps)} req/s, ${fmt(floor.workerdCpuMs, 3)} ms workerd CPU/req | | |`);
  const fl = floors.challengeLog;
  lines.push(`| runtime floor plus one console.log line per request | ${fmt(fl.rps)} req/s, ${fmt(fl.workerdCpuMs, 3)} ms workerd CPU/req (the line costs ${fmt(1000 * (fl.workerdCpuMs - floor.workerdCpuMs))} µs) | | |`);
  lines.push(row('(a) 402 challenge (shipped default, DECISION_LOG = "payments"), throughput', ours.challenge.rps, peer.challenge.rps, 'req/s'));
  lines.push(row('(a) 402 challenge with DECISION_LOG = "all" (a log line per challenge), throughput', ours.logged.rps, peer.challenge.rps, 'req/s'));
  lines.push(row('(a) 402 challenge with DECISION_LOG = "all", workerd CPU per request', ours.logged.workerdCpuMs, peer.challenge.workerdCpuMs, 'ms', 'lower', 3));
  lines.push(`| (a) 402 challenge vs the runtime floor | ${fmt((100 * ours.challenge.rps) / floor.rps)} % of its throughput | ${fmt((100 * peer.challenge.rps) / floor.rps)} % | |`);
  lines.push(row('(a) 402 challenge, p50', ours.challenge.p50, peer.challenge.p50, 'ms', 'lower', 2));
  lines.push(row('(a) 402 challenge, p99', ours.challenge.p99, peer.challenge.p99, 'ms', 'lower', 2));
  lines.push(row('(a) 402 challenge, workerd CPU per request', ours.challenge.workerdCpuMs, peer.challenge.workerdCpuMs, 'ms', 'lower', 3));
  for (const d of [0, 50]) {
    const o = ours[`paid${d}`];
    const p = peer[`paid${d}`];
    lines.push(row(`(b) paid request, facilitator ${d} ms, throughput`, o.rps, p.rps, 'req/s'));
    lines.push(row(`(b) paid request, facilitator ${d} ms, p50`, o.p50, p.p50, 'ms', 'lower', 2));
    lines.push(row(`(b) paid request, facilitator ${d} ms, p99`, o.p99, p.p99, 'ms', 'lower', 2));
    lines.push(row(`(b) paid request, facilitator ${d} ms, workerd CPU per request`, o.workerdCpuMs, p.workerdCpuMs, 'ms', 'lower', 3));
    lines.push(`| (b) facilitator round trips per paid request, ${d} ms | ${fmt(o.roundTrips, 2)} (verify ${o.verifyCalls}, settle ${o.settleCalls}) | ${fmt(p.roundTrips, 2)} (verify ${p.verifyCalls}, settle ${p.settleCalls}) | |`);
  }
  lines.push(...uptoRows(ours, peer));
  lines.push(...mcpRows(mcp));
  const fp = floors.proxy;
  lines.push(`| unpriced pass-through (GET /free → origin), throughput | ${fmt(ours.free.rps)} req/s, ${fmt(ours.free.workerdCpuMs, 3)} ms CPU/req | floor: a plain JS fetch proxy Worker, ${fmt(fp.rps)} req/s, ${fmt(fp.workerdCpuMs, 3)} ms CPU/req | ${fmt(ours.free.rps / fp.rps, 2)}× the floor |`);
  const cd = ours.paid0cdp;
  const perCall = ((cd.workerdCpuMs - ours.paid0.workerdCpuMs) * 1000) / Math.max(cd.roundTrips, 1e-9);
  lines.push(`| (b) paid request, 0 ms, facilitator auth by CDP JWT (ES256 via WebCrypto, one per call) | ${fmt(cd.rps)} req/s, p50 ${fmt(cd.p50, 2)} ms, ${fmt(cd.workerdCpuMs, 3)} ms CPU/req (${fmt(perCall)} µs per signed call over no auth; ${fmt(cd.roundTrips, 2)} calls/req) | | |`);
  const mi = ours.minted0;
  lines.push(`| (b') paid request that also sells a pass, 0 ms | ${fmt(mi.rps)} req/s, p50 ${fmt(mi.p50, 2)} ms, p99 ${fmt(mi.p99, 2)} ms, ${fmt(mi.workerdCpuMs, 3)} ms CPU | (no passes) | |`);
  lines.push(`| (c) request on a live pass (isolate cache + origin), throughput | ${fmt(ours.session.rps)} req/s | no passes: every access is a paid request | ${fmt(ours.session.rps / peer.paid0.rps, 2)}× the peer's paid request |`);
  lines.push(`| (c) live pass, p50 / p99; workerd CPU per request | ${fmt(ours.session.p50, 2)} / ${fmt(ours.session.p99, 2)} ms; ${fmt(ours.session.workerdCpuMs, 3)} ms | | |`);
  lines.push(`| wrk CPU share (challenge / paid 0 ms) | ${fmt(ours.challenge.wrkCpu * 100)} % / ${fmt(ours.paid0.wrkCpu * 100)} % | ${fmt(peer.challenge.wrkCpu * 100)} % / ${fmt(peer.paid0.wrkCpu * 100)} % | of one core |`);
  lines.push(`| EIP-3009 verify (EIP-712 digest + k256 recovery), per op | wasm in V8 ${fmt(m.wasm, 1)} µs; native ${fmt(m.native, 1)} µs (wasm = ${fmt(m.wasm / m.native, 2)}× native) | viem verifyTypedData in the same V8: ${fmt(m.viem, 1)} µs | ${fmt(m.viem / m.wasm, 2)}× |`);
  lines.push(`| EIP-712 digest alone, native | ${fmt(m.nativeDigest, 2)} µs | | |`);
  lines.push(`| bundle | wasm ${fmt(raw / 1024)} KiB raw, ${fmt(gz / 1024)} KiB (${fmt(gz)} B) gzip -9 | JS ${fmt(peerRaw / 1024)} KiB raw, ${fmt(peerGz / 1024)} KiB gzip | |`);
  lines.push(row('fresh workerd + isolate: start to ready', startOurs.ready, startPeer.ready, 'ms', 'lower'));
  lines.push(row('fresh isolate: first response (402)', startOurs.first, startPeer.first, 'ms', 'lower', 1));
  lines.push(row('same isolate: second response (402)', startOurs.second, startPeer.second, 'ms', 'lower', 1));
  lines.push(`| cold start, broken down | wasm compile ${fmt(m.compileMs, 1)} ms (V8 in Node, \`WebAssembly.compile\`; workerd compiles when the script loads, inside "start to ready"); configuration parse ${fmt(m.configUs, 0)} µs (wasm in V8); both now happen before the first request, with the challenges' layout and a warm-up run of the pipeline (\`edge::warm_up\`), so "first − second response" is what the runtime and V8 still do on a first call (\`node bench/profile.mjs first\`) | | |`);
  for (const mb of [10, 100]) {
    lines.push(`| ${mb} MiB paid body: workerd RSS growth, time | ${fmt(streamOurs[mb].deltaMiB, 1)} MiB, ${fmt(streamOurs[mb].ms)} ms | ${fmt(streamPeer[mb].deltaMiB, 1)} MiB, ${fmt(streamPeer[mb].ms)} ms | |`);
  }
  const report = lines.join('\n');
  writeFileSync(path.join(BUILD, 'report.md'), `${report}\n`);
  console.log(report);
}

main().then(() => process.exit(0), (e) => { console.error(e); process.exit(1); });

