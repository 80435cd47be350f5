// scripts/dev.sh as a user runs it: the paywall (wrangler dev) in front of an API of the test's own
// (one priced path, one free), the local chain and facilitator it starts, the copy-paste command
// it prints (scripts/pay.mjs, the official client) paying the priced path, and Ctrl-C (SIGINT)
// stopping everything it started.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import http from 'node:http';
import { promisify } from 'node:util';

import { ROOT, freePort } from './support/stack.mjs';
import { listening } from '../scripts/wrangler-dev.mjs';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Command lines of the processes running now (pid → cmdline with spaces). */
function processes() {
  const out = new Map();
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      out.set(Number(pid), readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' '));
    } catch {}
  }
  return out;
}

test('dev.sh runs the paywall in front of your API; pay.mjs pays a priced route and shows the balances move by the price; Ctrl-C leaves nothing running', { timeout: 600_000 }, async () => {
  const hits = { '/priced': 0, '/free': 0 };
  const origin = http.createServer((req, res) => {
    const p = req.url.split('?')[0];
    if (p in hits) hits[p]++;
    res.writeHead(p in hits ? 200 : 404, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ path: p, answer: 42 }));
  });
  await new Promise((r) => origin.listen(0, '127.0.0.1', r));
  const originUrl = `http://127.0.0.1:${origin.address().port}`;
  const port = await freePort();
  const routes = JSON.stringify([{ route: 'GET /priced', price: '$0.01', description: 'A priced path' }]);
  const dev = spawn('bash', ['scripts/dev.sh', '--origin', originUrl, '--routes', routes, '--port', String(port)], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  dev.stdout.on('data', (d) => { out += d; });
  dev.stderr.on('data', (d) => { out += d; });
  const exited = new Promise((r) => dev.once('exit', (code, signal) => r({ code, signal })));
  try {
    const deadline = Date.now() + 400_000;
    while (!/Ctrl-C stops everything/.test(out)) {
      assert.ok(dev.exitCode === null && Date.now() < deadline, `dev.sh did not print its URLs:\n${out}`);
      await sleep(250);
    }
    const field = (name) => new RegExp(`^  ${name} +(\\S+)`, 'm').exec(out)?.[1];
    const paywall = field('paywall');
    const facilitator = field('facilitator');
    const chain = field('chain');
    const state = field('local state');
    assert.equal(paywall, `http://127.0.0.1:${port}`);
    assert.match(out, /anvil's well-known development key: public, a test key only/);
    assert.match(out, new RegExp(`in front of ${originUrl} \\(--origin\\)`));
    assert.match(out, /GET \/priced {2}\$0\.01/);
    const command = /^ {2}(scripts\/pay\.mjs .*)$/m.exec(out)?.[1];
    assert.equal(command, `scripts/pay.mjs --rpc ${chain} ${paywall}/priced`);

    // The free path is proxied as is, unpaid.
    const free = await fetch(`${paywall}/free`);
    assert.equal(free.status, 200);
    assert.deepEqual(await free.json(), { path: '/free', answer: 42 });
    assert.equal(hits['/free'], 1);

    // The printed command, as a user pastes it.
    const { stdout } = await promisify(execFile)('bash', ['-c', command], { cwd: ROOT });
    assert.match(stdout, /^1\. GET http:\/\/127\.0\.0\.1:\d+\/priced -> 402 Payment Required/m);
    assert.match(stdout, /"amount": "10000"/);
    assert.match(stdout, /^2\. The payment the client signed \(PAYMENT-SIGNATURE/m);
    assert.match(stdout, /^3\. The response: 200 OK\n {4}\{"path":"\/priced","answer":42\}/m);
    assert.match(stdout, /PAYMENT-RESPONSE\n {4}\{\n {6}"success": true/);
    const moved = (who) => {
      const m = new RegExp(`^ {4}${who} +0x[0-9a-fA-F]{40} .*\\((\\d+) -> (\\d+) atomic`, 'm').exec(stdout);
      assert.ok(m, `no ${who} balance line in:\n${stdout}`);
      return BigInt(m[2]) - BigInt(m[1]);
    };
    assert.equal(moved('payer'), -10000n);
    assert.equal(moved('payTo'), 10000n);
    assert.equal(hits['/priced'], 1, 'the origin served the paid request once');

    // Ctrl-C: dev.sh exits and everything it started is gone.
    const before = [...processes()].filter(([, cmd]) => cmd.includes(state));
    assert.ok(before.length > 0, 'wrangler dev runs with the printed local state');
    dev.kill('SIGINT');
    const { code } = await Promise.race([exited, sleep(30_000).then(() => ({ code: 'timeout' }))]);
    assert.equal(code, 0, out);
    for (const url of [paywall, facilitator, chain]) assert.equal(await listening(Number(new URL(url).port)), false, `${url} still answers`);
    const left = [...processes()].filter(([, cmd]) => cmd.includes(state) || cmd.includes(`--port ${new URL(chain).port} `));
    assert.deepEqual(left, [], 'no wrangler, workerd or anvil left');
    assert.equal(existsSync(state), false, 'the local state is removed');
  } finally {
    if (dev.exitCode === null) dev.kill('SIGKILL');
    origin.closeAllConnections();
    origin.close();
  }
});
