// Where the time of one scenario goes inside workerd: a V8 CPU profile of our Worker (wasm
// functions by their name-section names, JS glue by function name) taken through workerd's
// inspector while wrk loads the scenario, printed as self time per function, top first.
//
// `node bench/profile.mjs verify` needs no Worker build: it compiles bench/verify-wasm (the
// Worker's EIP-3009 verification, same crates and release profile) and profiles `verify(n)` in
// this Node's V8, as self time per verification.
// `first` profiles a fresh isolate's first request alone.
// `paid` profiles paid requests (a fresh pre-signed payment each, the stand-in at 0 ms), `minted`
// paid requests that each also buy a pass;
// `channel` one payment channel's vouchers in order over one connection.
// `node bench/profile.mjs [challenge|pass|paid|minted|channel|free|proxy|first]` after `X402_KEEP_WASM_NAMES=1 bash scripts/build.sh`
// (without the names, wasm functions show as numbers); `proxy` profiles the plain JS fetch proxy
// Worker that is the pass-through's floor in bench/run.mjs, for a side-by-side reading of `free`
// (PROFILE_SECONDS, default 5; PROFILE_TOP, default 30; BENCH_DECISION_LOG as in bench/run.mjs).
import { execFileSync, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { Miniflare } from 'miniflare';

import { startBenchOrigin, startStandin } from './standin.mjs';

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const SCENARIO = process.argv[2] ?? 'challenge';
const SECONDS = Number(process.env.PROFILE_SECONDS ?? 5);
const TOP = Number(process.env.PROFILE_TOP ?? 30);
const PAY_TO = '0x90F79bf6EB2c4f870365E785982E1f101E93b906';
const ROUTES = [
  { route: 'GET /weather', price: '$0.01', maxTimeoutSeconds: 300, description: 'Current weather', mimeType: 'application/json' },
  { route: 'GET /minted', price: '$0.01', maxTimeoutSeconds: 300, description: 'Current weather, with a pass', mimeType: 'application/json', pass: { ttl: '1h' } },
  { route: 'GET /channel', accepts: [{ scheme: 'batch-settlement', price: '$0.01', maxTimeoutSeconds: 300 }], description: 'Current weather, paid on a channel', mimeType: 'application/json' },
];
/** The stand-in facilitator's claim authorizer for payment channels (as in bench/run.mjs). */
const RECEIVER_AUTHORIZER = '0x9965507D1a55bcC2695C58ba16FB37d819B0A4dc';

/** A minimal Chrome DevTools Protocol client over the inspector WebSocket. */
async function inspector(port) {
  const targets = await (await fetch(`http://127.0.0.1:${port}/json`)).json();
  const target = targets.find((t) => /paywall|core:user/.test(t.id ?? t.title ?? '')) ?? targets[0];
  const ws = new WebSocket(target.webSocketDebuggerUrl);
  await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = reject; });
  let id = 0;
  const pending = new Map();
  ws.onmessage = (e) => {
    const msg = JSON.parse(e.data);
    if (msg.id && pending.has(msg.id)) {
      pending.get(msg.id)(msg);
      pending.delete(msg.id);
    }
  };
  const send = (method, params = {}) => new Promise((resolve, reject) => {
    const n = ++id;
    pending.set(n, (msg) => (msg.error ? reject(new Error(`${method}: ${msg.error.message}`)) : resolve(msg.result)));
    ws.send(JSON.stringify({ id: n, method, params }));
  });
  return { send, close: () => ws.close(), targets };
}

function load(url, headers = {}, paymentsFile, connections = 16, inOrder = false) {
  const lua = path.join(ROOT, 'bench/.build/profile.lua');
  const lines = Object.entries(headers).map(([k, v]) => `wrk.headers[${JSON.stringify(k)}] = ${JSON.stringify(v)}`);
  if (paymentsFile) {
    // A fresh payment per request (`paid`).
    lines.push(`local p, i = {}, 0\nfor l in io.lines(${JSON.stringify(paymentsFile)}) do p[#p + 1] = l end\nrequest = function() i = i + 1; if i > #p then i = #p end; return wrk.format("GET", nil, { ["payment-signature"] = p[i] }) end`);
    if (inOrder) {
      // A channel's vouchers: the next one only after the last was answered 200 (wrk may build a
      // request it never sends, which would skip a voucher and make every later one a mismatch).
      lines.push('local n = 1\nrequest = function() return wrk.format("GET", nil, { ["payment-signature"] = p[math.min(n, #p)] }) end\nresponse = function(status) if status == 200 then n = n + 1 end end');
    }
  }
  writeFileSync(lua, `${lines.join('\n')}\n`);
  return new Promise((resolve, reject) => {
    const child = spawn('wrk', ['-t1', `-c${connections}`, `-d${SECONDS}s`, '-s', lua, url]);
    let out = '';
    child.stdout.on('data', (d) => { out += d; });
    child.on('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`wrk exited ${code}`))));
  });
}

/** `verify`: where one EIP-3009 verification's time goes in wasm (V8 in this process). */
async function verifyProfile() {
  const dir = path.join(ROOT, 'bench/.build/verify-wasm-profile');
  execFileSync('cargo', ['build', '--quiet', '--release', '--target', 'wasm32-unknown-unknown', '-p', 'verify-wasm-bench'], { cwd: ROOT, stdio: 'inherit' });
  execFileSync(process.env.WASM_BINDGEN_BIN || 'wasm-bindgen', ['--target', 'nodejs', '--out-dir', dir, path.join(ROOT, 'target/wasm32-unknown-unknown/release/verify_wasm_bench.wasm')]);
  writeFileSync(path.join(dir, 'package.json'), '{"type":"commonjs"}');
  const wasm = createRequire(import.meta.url)(path.join(dir, 'verify_wasm_bench.js'));
  const n = Number(process.env.PROFILE_VERIFICATIONS ?? 20000);
  if (wasm.verify(2000) !== 2000) throw new Error('wasm verify is wrong');
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.setSamplingInterval', { interval: 50 });
  await session.post('Profiler.start');
  const t0 = process.hrtime.bigint();
  wasm.verify(n);
  const us = Number(process.hrtime.bigint() - t0) / 1000 / n;
  const { profile } = await session.post('Profiler.stop');
  session.disconnect();
  writeFileSync(path.join(ROOT, 'bench/.build/verify.cpuprofile'), JSON.stringify(profile));
  console.log(`verify: ${n} verifications, ${us.toFixed(1)} µs each under the profiler`);
  summarise(profile, n, 'verification');
}

/** Prints self time per function (and per kind of code) of `profile`, per `unit`. */
function summarise(profile, count, unit) {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map();
  const byKind = new Map();
  let total = 0;
  profile.samples.forEach((nodeId, i) => {
    const f = byId.get(nodeId).callFrame;
    const where = f.url ? ` ${path.basename(f.url)}` : '';
    const name = f.functionName ? `${f.functionName}${/^wasm/.test(where.trim()) ? '' : where}` : `(anonymous${where}:${f.lineNumber})`;
    const us = profile.timeDeltas[i] ?? 0;
    total += us;
    self.set(name, (self.get(name) ?? 0) + us);
    const kind = /\.wasm/.test(f.url || '') ? 'wasm' : f.url ? 'JS glue' : /^\((idle|program|garbage collector)\)$/.test(f.functionName) ? f.functionName : 'runtime (native, unattributed JS)';
    byKind.set(kind, (byKind.get(kind) ?? 0) + us);
  });
  const busy = total - (self.get('(idle)') ?? 0);
  const per = Math.max(count, 1);
  console.log(`sampled ${(total / 1000).toFixed(0)} ms, busy ${(busy / 1000).toFixed(0)} ms (${(busy / per).toFixed(1)} µs per ${unit})`);
  console.log(`by kind (µs per ${unit}): ${[...byKind.entries()].filter(([k]) => k !== '(idle)').sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ${(v / per).toFixed(1)}`).join('; ')}`);
  console.log(`| self µs per ${unit} | share of busy | function |`);
  console.log('|---:|---:|---|');
  for (const [name, us] of [...self.entries()].filter(([n]) => n !== '(idle)').sort((a, b) => b[1] - a[1]).slice(0, TOP)) {
    console.log(`| ${(us / per).toFixed(2)} | ${((100 * us) / busy).toFixed(1)} % | ${name.slice(0, 110)} |`);
  }
}

async function main() {
  if (SCENARIO === 'verify') return verifyProfile();
  const origin = await startBenchOrigin();
  const standin = await startStandin({ delayMs: 0 });
  const inspectorPort = 9300 + Math.floor(Math.random() * 500);
  const mf = new Miniflare({
    host: '127.0.0.1', port: 0, inspectorPort, cf: false,
    handleRuntimeStdio(stdout, stderr) { stdout.resume(); stderr.resume(); },
    workers: [{
      name: 'paywall', modules: true,
      ...(SCENARIO === 'proxy'
        ? { script: 'export default { fetch(request, env) { const u = new URL(request.url); return fetch(env.ORIGIN_URL + u.pathname + u.search, request); } };' }
        : {
          scriptPath: path.join(ROOT, 'build/index.js'), modulesRoot: path.join(ROOT, 'build'),
          modulesRules: [{ type: 'ESModule', include: ['**/*.js'] }, { type: 'CompiledWasm', include: ['**/*.wasm'] }],
        }),
      compatibilityDate: '2026-07-30', compatibilityFlags: ['enable_request_signal'],
      kvNamespaces: ['PASSES'], durableObjects: { LEDGER: { className: 'PaymentLedger', useSQLite: true } },
      bindings: { ORIGIN_URL: origin.url, FACILITATOR_URL: standin.url, PAY_TO, ROUTES, RECEIVER_AUTHORIZER, ...(process.env.BENCH_DECISION_LOG ? { DECISION_LOG: process.env.BENCH_DECISION_LOG } : {}) },
    }],
  });
  const url = (await mf.ready).toString().replace(/\/$/, '');
  try {
    if (SCENARIO === 'first') {
      // The first request of a fresh isolate: a challenge, profiled alone (1 µs sampling).
      const ins = await inspector(inspectorPort);
      await ins.send('Profiler.enable');
      await ins.send('Profiler.setSamplingInterval', { interval: 10 });
      await ins.send('Profiler.start');
      const t0 = performance.now();
      await (await fetch(`${url}/weather`)).arrayBuffer();
      const ms = performance.now() - t0;
      const { profile } = await ins.send('Profiler.stop');
      ins.close();
      writeFileSync(path.join(ROOT, 'bench/.build/first.cpuprofile'), JSON.stringify(profile));
      console.log(`scenario first: one request, ${ms.toFixed(1)} ms to its response with the profiler attached`);
      return summarise(profile, 1, 'request');
    }
    for (let i = 0; i < 200; i++) await (await fetch(`${url}/weather`)).arrayBuffer();
    let target = `${url}/weather`;
    const headers = {};
    let paymentsFile;
    let connections = 16;
    if (SCENARIO === 'pass') {
      const { execFileSync } = await import('node:child_process');
      const accepted = JSON.parse(Buffer.from((await fetch(`${url}/minted`)).headers.get('payment-required'), 'base64')).accepts[0];
      const signed = execFileSync('cargo', ['run', '--quiet', '--release', '--example', 'presign', '--', JSON.stringify(accepted), '1'], { cwd: ROOT }).toString().trim().split('\n')[0];
      const paid = await fetch(`${url}/minted`, { headers: { 'payment-signature': signed } });
      await paid.arrayBuffer();
      headers['x402-pass'] = paid.headers.get('x402-pass');
      target = `${url}/minted`;
    } else if (SCENARIO === 'paid' || SCENARIO === 'minted' || SCENARIO === 'channel') {
      // A fresh pre-signed payment per request; `channel`: one channel's vouchers in order, over
      // one connection (a channel takes one at a time).
      const { execFileSync } = await import('node:child_process');
      if (SCENARIO !== 'paid') target = `${url}/${SCENARIO}`;
      const accepted = JSON.parse(Buffer.from((await fetch(target)).headers.get('payment-required'), 'base64')).accepts[0];
      paymentsFile = path.join(ROOT, `bench/.build/profile-${SCENARIO}-payments.txt`);
      writeFileSync(paymentsFile, execFileSync('cargo', ['run', '--quiet', '--release', '--example', 'presign', '--', JSON.stringify(accepted), String(1500 * SECONDS)], { cwd: ROOT, maxBuffer: 1 << 30 }));
      if (SCENARIO === 'channel') connections = 1;
    } else if (SCENARIO === 'free' || SCENARIO === 'proxy') {
      target = `${url}/free`;
    } else if (SCENARIO !== 'challenge') {
      throw new Error(`unknown scenario ${SCENARIO} (challenge | pass | paid | minted | channel | free | proxy | verify | first)`);
    }
    const ins = await inspector(inspectorPort);
    await ins.send('Profiler.enable');
    await ins.send('Profiler.setSamplingInterval', { interval: 100 });
    await ins.send('Profiler.start');
    const out = await load(target, headers, paymentsFile, connections, SCENARIO === 'channel');
    const { profile } = await ins.send('Profiler.stop');
    ins.close();
    writeFileSync(path.join(ROOT, `bench/.build/${SCENARIO}.cpuprofile`), JSON.stringify(profile));

    const reqs = Number(/(\d+) requests in/.exec(out)?.[1] ?? 0);
    const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0);
    console.log(`scenario ${SCENARIO}: ${reqs} requests in ${SECONDS} s, ${non2xx} not 2xx (self time in this isolate's JS and wasm)`);
    summarise(profile, reqs, 'request');
  } finally {
    await mf.dispose();
    await standin.stop();
    await origin.stop?.();
  }
}

main().then(() => process.exit(0), (e) => { console.error(e); process.exit(1); });
