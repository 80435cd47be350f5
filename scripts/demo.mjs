// The main job, live: starts the local stack (anvil + EIP-3009 USDC + official facilitator logic +
// an origin), runs the Worker with `wrangler dev` as a user would, and has the official @x402/fetch
// client pay for a request. Prints each step. Everything binds 127.0.0.1 and is stopped at the end.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { KEYS, balanceOf, freePort, startStack } from '../tests/support/stack.mjs';
import { decodePaymentResponseHeader, payingFetch } from '../tests/support/client.mjs';
import { startWranglerDev } from './wrangler-dev.mjs';

const fmt = (atomic) => `${(Number(atomic) / 1e6).toFixed(6)} USDC (${atomic} atomic)`;
const step = (n, title) => console.log(`\n\x1b[1m${n}. ${title}\x1b[0m`);
const show = (label, value) => console.log(`   ${label.padEnd(22)} ${typeof value === 'string' ? value : JSON.stringify(value)}`);

async function main() {
  step(0, 'Local stack');
  const stack = await startStack();
  show('anvil RPC', stack.rpcUrl);
  show('facilitator', `${stack.facilitator.url} (official @x402/evm exact scheme, signer ${stack.facilitator.address})`);
  show('origin API', stack.origin.url);
  show('payer', stack.payer);
  show('payTo', stack.payTo);

  const persist = mkdtempSync(path.join(tmpdir(), 'x402-demo-'));
  const stopStack = async () => {
    await stack.stop();
    rmSync(persist, { recursive: true, force: true });
  };
  let wrangler;
  try {
    wrangler = await startWranglerDev({
      port: await freePort(),
      persistTo: persist,
      vars: { ORIGIN_URL: stack.origin.url, FACILITATOR_URL: stack.facilitator.url, PAY_TO: stack.payTo },
    });
  } catch (e) {
    await stopStack();
    throw e;
  }
  const base = wrangler.url;
  const stop = async () => {
    await wrangler.stop();
    await stopStack();
  };
  try {
    show('worker (wrangler dev)', base);

    const url = `${base}/weather`;
    step(1, `GET ${url} without payment`);
    const first = await fetch(url);
    show('status', String(first.status));
    const challenge = JSON.parse(Buffer.from(first.headers.get('payment-required'), 'base64').toString());
    show('PAYMENT-REQUIRED', challenge);
    await first.arrayBuffer();

    const payerBefore = await balanceOf(stack.rpcUrl, stack.payer);
    const payToBefore = await balanceOf(stack.rpcUrl, stack.payTo);
    show('payer balance', fmt(payerBefore));
    show('payTo balance', fmt(payToBefore));

    step(2, 'The official @x402/fetch client signs an EIP-3009 authorization and retries with PAYMENT-SIGNATURE');
    const settlesBefore = stack.facilitator.calls.settle;
    const paid = await payingFetch(KEYS.payer)(url);
    show('status', String(paid.status));
    show('body', await paid.json());

    step(3, 'The Worker verified the signature (locally, and a first-time payer also through /verify), reserved it in the payment ledger, forwarded, and settled');
    show('PAYMENT-RESPONSE', decodePaymentResponseHeader(paid.headers.get('payment-response')));
    show('facilitator calls', `verify ${stack.facilitator.calls.verify}, settle ${stack.facilitator.calls.settle - settlesBefore}`);

    step(4, 'Balances on the local chain');
    const payerAfter = await balanceOf(stack.rpcUrl, stack.payer);
    const payToAfter = await balanceOf(stack.rpcUrl, stack.payTo);
    const price = BigInt(challenge.accepts[0].amount);
    show('payer', `${fmt(payerBefore)} -> ${fmt(payerAfter)}`);
    show('payTo', `${fmt(payToBefore)} -> ${fmt(payToAfter)}`);
    if (payerBefore - payerAfter !== price || payToAfter - payToBefore !== price) throw new Error('balances did not move by exactly the price');
    show('moved', `exactly the price, ${fmt(price)}`);

    step(5, 'A price is per request: the same route again without paying is 402');
    const again = await fetch(url);
    show('GET /weather', `${again.status}`);
    await again.arrayBuffer();

    step(6, 'A pass: /premium/* sells 10 minutes for one payment; the X402-Pass token reopens it');
    const bought = await payingFetch(KEYS.payer)(`${base}/premium/report`);
    await bought.arrayBuffer();
    const token = bought.headers.get('x402-pass');
    show('X402-Pass', token);
    show('X402-Pass-Expires', bought.headers.get('x402-pass-expires'));
    const reuse = await fetch(`${base}/premium/other`, { headers: { 'x402-pass': token } });
    show('GET /premium/other', `${reuse.status} ${JSON.stringify(await reuse.json())}`);
    const elsewhere = await fetch(url, { headers: { 'x402-pass': token } });
    show('GET /weather', `${elsewhere.status} (${JSON.parse(Buffer.from(elsewhere.headers.get('payment-required'), 'base64').toString()).error})`);
    await elsewhere.arrayBuffer();
    show('payer balance', fmt(await balanceOf(stack.rpcUrl, stack.payer)));
    if (again.status !== 402 || bought.status !== 200 || reuse.status !== 200 || elsewhere.status !== 402) throw new Error('pricing behaved unexpectedly');
    console.log('\nDemo complete: a paid request flowed end to end.');
  } finally {
    await stop();
  }
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(e);
    process.exit(1);
  },
);
