// Chain evidence for metered (`upto`, Permit2) payments on the real path: the built Worker in
// Miniflare with `RPC_URL` on the local chain (Permit2 and the x402 upto proxy deployed), the
// official upto client and facilitator, and a fault hook on the facilitator. A settle that
// executes but whose answer is lost is served from the chain without a second transfer; a nonce the
// payer invalidated is refused and never served. One Worker without `RPC_URL` on the same chain
// shows the gap this closes. Balances, origin runs and facilitator calls are counted.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';

import { createWalletClient, http as viemHttp, parseAbi } from 'viem';
import { privateKeyToAccount } from 'viem/accounts';
import { decodePaymentRequiredHeader, decodePaymentResponseHeader } from '@x402/core/http';

import { KEYS, PERMIT2, balanceOf, chainFor, permit2NonceUsed, startStack, startWorker, uptoPayment } from './support/stack.mjs';

const AMOUNT = 777n;
const ROUTES = [{ route: 'GET /report', scheme: 'upto', price: '$0.05', verify: 'local' }];

let stack;
let origin;
let rpc;
let plain;
const runs = { report: 0 };

/** An origin that reports AMOUNT (Settlement-Overrides) and counts its runs. */
async function startReportingOrigin() {
  const server = http.createServer((req, res) => {
    runs.report++;
    res.writeHead(200, { 'content-type': 'application/json', 'settlement-overrides': JSON.stringify({ amount: String(AMOUNT) }) });
    res.end(JSON.stringify({ secret: 'metered-answer-7' }));
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${server.address().port}`, stop: () => new Promise((r) => { server.closeAllConnections?.(); server.close(r); }) };
}

before(async () => {
  stack = await startStack();
  origin = await startReportingOrigin();
  const common = { originUrl: origin.url, facilitatorUrl: stack.facilitator.url, payTo: stack.payTo, routes: ROUTES };
  rpc = await startWorker({ ...common, extraBindings: { FACILITATOR_ADDRESS: stack.facilitator.address, RPC_URL: stack.rpcUrl } });
  plain = await startWorker({ ...common, extraBindings: { FACILITATOR_ADDRESS: stack.facilitator.address } });
});
after(async () => {
  stack?.facilitator.setFault(undefined);
  await rpc?.stop();
  await plain?.stop();
  await origin?.stop();
  await stack?.stop();
});

const balances = async () => ({ payer: await balanceOf(stack.rpcUrl, stack.payer), payTo: await balanceOf(stack.rpcUrl, stack.payTo) });
const moved = (a, b) => ({ paid: a.payer - b.payer, received: b.payTo - a.payTo });

/** A fresh permit for the Worker's offer: {header, nonce}. */
async function permit(worker) {
  const res = await fetch(`${worker.url}/report`);
  assert.equal(res.status, 402);
  await res.arrayBuffer();
  const offer = decodePaymentRequiredHeader(res.headers.get('payment-required')).accepts[0];
  const { payload, header } = await uptoPayment(KEYS.payer, offer);
  return { header, nonce: BigInt(payload.payload.permit2Authorization.nonce) };
}

async function pay(worker, header) {
  const res = await fetch(`${worker.url}/report`, { headers: { 'payment-signature': header } });
  return { status: res.status, text: await res.text(), settled: res.headers.get('payment-response') && decodePaymentResponseHeader(res.headers.get('payment-response')) };
}

/** The next /settle gets `answer` (500) at once; `execute`: the real settle runs after `delayMs`. */
function loseNextSettle({ execute, delayMs = 0 }) {
  let executed = Promise.resolve(null);
  stack.facilitator.setFault(async (name, body) => {
    if (name !== 'settle') return null;
    stack.facilitator.setFault(undefined);
    if (execute) {
      executed = new Promise((r) => setTimeout(r, delayMs)).then(() => stack.facilitator.real(name, body));
      if (!delayMs) await executed;
    }
    return { status: 500, body: { error: 'internal error' } };
  });
  return () => executed;
}

test('a settle that executes and then answers 500 is served on the spot from the chain, once', async () => {
  const start = await balances();
  const calls = stack.facilitator.calls.settle;
  const ran = runs.report;
  const { header, nonce } = await permit(rpc);
  const executed = loseNextSettle({ execute: true });
  const res = await pay(rpc, header);
  const real = await executed();
  assert.equal(real.success, true, 'the facilitator did execute it');
  assert.equal(res.status, 200, res.text);
  assert.match(res.text, /metered-answer-7/);
  assert.equal(res.settled.transaction, real.transaction, 'the transaction read from the chain');
  assert.equal(res.settled.amount, String(AMOUNT));
  assert.equal(await permit2NonceUsed(stack.rpcUrl, stack.payer, nonce), true);
  assert.deepEqual(moved(start, await balances()), { paid: AMOUNT, received: AMOUNT });
  // Spent: a replay neither settles nor runs the origin.
  assert.notEqual((await pay(rpc, header)).status, 200);
  assert.equal(stack.facilitator.calls.settle, calls + 1);
  assert.equal(runs.report, ran + 1);
});

test('a settle whose answer is lost and whose transaction lands later: with RPC_URL the retry is served without a second transfer; without it the payer is never told', async () => {
  for (const [name, worker] of [['rpc', rpc], ['plain', plain]]) {
    const start = await balances();
    const calls = stack.facilitator.calls.settle;
    const ran = runs.report;
    const { header, nonce } = await permit(worker);
    const executed = loseNextSettle({ execute: true, delayMs: 1500 });
    const first = await pay(worker, header);
    assert.equal(first.status, 502, `${name}: ${first.text}`);
    assert.equal(JSON.parse(first.text).error, 'settlement_outcome_unknown');
    assert.equal((await executed()).success, true, 'executed after its answer was lost');
    assert.equal(await permit2NonceUsed(stack.rpcUrl, stack.payer, nonce), true);
    const retry = await pay(worker, header);
    assert.deepEqual(moved(start, await balances()), { paid: AMOUNT, received: AMOUNT }, `${name}: moved once`);
    if (name === 'rpc') {
      assert.equal(retry.status, 200, retry.text);
      assert.match(retry.text, /metered-answer-7/);
      assert.equal(retry.settled.amount, String(AMOUNT));
      assert.equal(stack.facilitator.calls.settle, calls + 1, 'reconciled from the chain: no second /settle');
      assert.equal(runs.report, ran + 2, 'the withheld answer is produced once more');
    } else {
      // The official upto facilitator refuses the repeated settle (Permit2 simulation fails), which
      // is not "nonce already used": unknown, although the payer paid.
      assert.equal(retry.status, 502, retry.text);
      assert.equal(JSON.parse(retry.text).error, 'settlement_outcome_unknown');
      assert.equal(stack.facilitator.calls.settle, calls + 2);
      assert.equal(runs.report, ran + 1);
    }
  }
});

test('a nonce the payer invalidated after a lost answer is refused and never served', async () => {
  const start = await balances();
  const calls = stack.facilitator.calls.settle;
  const ran = runs.report;
  const { header, nonce } = await permit(rpc);
  loseNextSettle({ execute: false });
  const first = await pay(rpc, header);
  assert.equal(first.status, 502, first.text);
  // The payer burns the nonce: Permit2 invalidateUnorderedNonces(nonce >> 8, 1 << (nonce & 0xff)).
  const wallet = createWalletClient({ account: privateKeyToAccount(KEYS.payer), chain: chainFor(stack.rpcUrl), transport: viemHttp(stack.rpcUrl) });
  const abi = parseAbi(['function invalidateUnorderedNonces(uint256 wordPos, uint256 mask)']);
  await wallet.writeContract({ address: PERMIT2, abi, functionName: 'invalidateUnorderedNonces', args: [nonce >> 8n, 1n << (nonce & 0xffn)] });
  assert.equal(await permit2NonceUsed(stack.rpcUrl, stack.payer, nonce), true);
  const retry = await pay(rpc, header);
  assert.equal(retry.status, 402, retry.text);
  assert.equal(JSON.parse(retry.text).error, 'invalid_exact_evm_nonce_already_used');
  assert.doesNotMatch(retry.text, /metered-answer-7/);
  assert.equal(stack.facilitator.calls.settle, calls + 1, 'never sent again');
  assert.equal(runs.report, ran + 1, 'the origin ran for the first attempt only');
  assert.deepEqual(moved(start, await balances()), { paid: 0n, received: 0n });
});
