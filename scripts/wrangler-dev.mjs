// `wrangler dev` as a user runs it, for the demo and scripts/dev.sh: the Worker from wrangler.toml
// (its build step is scripts/build.sh, which skips when build/ is up to date) on 127.0.0.1,
// with `--var` overrides, local storage in `persistTo`, and nothing sent to Cloudflare.
import { spawn } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';

import { ROOT, freePort } from '../tests/support/stack.mjs';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Resolves true once something accepts TCP connections on 127.0.0.1:`port`. */
export function listening(port) {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port }, () => {
      s.destroy();
      resolve(true);
    });
    s.on('error', () => resolve(false));
  });
}

/**
 * Starts `wrangler dev` on 127.0.0.1:`port` with `vars` ({NAME: string}) as `--var NAME:value`
 * overrides of wrangler.toml's [vars], in its own process group (so `stop()` ends wrangler and
 * its workerd together). `onLine(line)` gets each output line. Resolves once the port accepts
 * connections and wrangler printed "Ready on", to {url, proc, log (the output so far), stop()}; rejects (after stopping it) if
 * wrangler exits or is not up within `timeoutMs`.
 */
export async function startWranglerDev({ port, vars = {}, persistTo, onLine = () => {}, timeoutMs = 300_000 }) {
  const args = ['dev', '--ip', '127.0.0.1', '--port', String(port), '--inspector-port', String(await freePort()),
    '--show-interactive-dev-session=false', '--persist-to', persistTo];
  for (const [name, value] of Object.entries(vars)) args.push('--var', `${name}:${value}`);
  const proc = spawn(path.join(ROOT, 'node_modules/.bin/wrangler'), args, {
    cwd: ROOT,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, WRANGLER_SEND_METRICS: 'false', CLOUDFLARE_CF_FETCH_ENABLED: 'false' },
  });
  const out = { log: '' };
  for (const stream of [proc.stdout, proc.stderr]) {
    let rest = '';
    stream.on('data', (chunk) => {
      out.log += chunk;
      const lines = (rest + chunk).split('\n');
      rest = lines.pop();
      for (const line of lines) onLine(line);
    });
  }
  const exited = new Promise((r) => proc.once('exit', r));
  const signal = (sig) => {
    try {
      process.kill(-proc.pid, sig);
    } catch {}
  };
  const stop = async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
      signal('SIGINT');
      await Promise.race([exited, sleep(5000)]);
    }
    // Whatever is left of the group (workerd), also when wrangler itself already exited.
    signal('SIGKILL');
  };
  const deadline = Date.now() + timeoutMs;
  // Ready: wrangler says so (the Worker is loaded), and the port answers.
  while (!(/Ready on http/.test(out.log) && (await listening(port)))) {
    if (proc.exitCode !== null || proc.signalCode !== null || Date.now() > deadline) {
      await stop();
      throw new Error(`wrangler dev did not start:\n${out.log}`);
    }
    await sleep(250);
  }
  return { url: `http://127.0.0.1:${port}`, proc, get log() { return out.log; }, stop, stopSync: () => signal('SIGKILL') };
}
