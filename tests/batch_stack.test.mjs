// The chain part of x402 `batch-settlement` on the local stack, with the official pieces only (no
// Worker): the escrow and its ERC-3009 deposit collector at their canonical addresses, the
// facilitator over the official @x402/evm batch-settlement facilitator scheme, a seller behind
// the official @x402/hono middleware with the official batch-settlement server scheme, and the
// official batch-settlement client paying through @x402/fetch. Balances are read from the chain.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';

import { Hono } from 'hono';
import { paymentMiddleware } from '@x402/hono';
import { x402ResourceServer, HTTPFacilitatorClient } from '@x402/core/server';
import { decodePaymentRequiredHeader, decodePaymentResponseHeader } from '@x402/core/http';
import { wrapFetchWithPayment } from '@x402/fetch';
import { BatchSettlementEvmScheme as ServerBatchEvm } from '@x402/evm/batch-settlement/server';
import { signVoucher } from '@x402/evm/batch-settlement/client';
import { createPublicClient, createWalletClient, hashTypedData, http as viemHttp } from 'viem';
import { privateKeyToAccount } from 'viem/accounts';

import {
  BATCH_ERC3009_COLLECTOR, BATCH_ESCROW, BATCH_ESCROW_ABI, CHAIN_ID, KEYS, NETWORK, USDC,
  address, balanceOf, batchClient, chainFor, channelIdOf, readChannel, readReceiver, startStack,
} from './support/stack.mjs';

const PRICE = 10_000n; // $0.01 in USDC atomic units (6 decimals)

let stack;
let seller;
let serverScheme;
let facilitatorClient;
const runs = { item: 0 };

/** Serves a Hono app on 127.0.0.1; resolves to {url, stop}. */
async function serve(app) {
  const server = http.createServer(async (req, res) => {
    const headers = new Headers();
    for (const [k, v] of Object.entries(req.headers)) headers.set(k, String(v));
    const chunks = [];
    for await (const c of req) chunks.push(c);
    const body = chunks.length ? Buffer.concat(chunks) : undefined;
    const r = await app.fetch(new Request(`http://127.0.0.1${req.url}`, { method: req.method, headers, body }));
    res.writeHead(r.status, Object.fromEntries(r.headers));
    res.end(Buffer.from(await r.arrayBuffer()));
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${server.address().port}`, stop: () => new Promise((r) => { server.closeAllConnections?.(); server.close(r); }) };
}

before(async () => {
  stack = await startStack();
  facilitatorClient = new HTTPFacilitatorClient({ url: stack.facilitator.url });
  serverScheme = new ServerBatchEvm(stack.payTo);
  const resourceServer = new x402ResourceServer(facilitatorClient).register(NETWORK, serverScheme);
  const app = new Hono();
  app.use(paymentMiddleware({
    'GET /item': { accepts: { scheme: 'batch-settlement', price: '$0.01', network: NETWORK, payTo: stack.payTo }, description: 'An item' },
  }, resourceServer));
  app.get('/item', (c) => {
    runs.item++;
    return c.json({ item: runs.item });
  });
  seller = await serve(app);
});

after(async () => {
  await seller?.stop();
  await stack?.stop();
});

const calls = () => ({ ...stack.facilitator.calls });
const settleTypes = (from = 0) => stack.facilitator.bodies.slice(from).filter((b) => b.path === 'settle').map((b) => b.body.paymentPayload.payload.type);

/** The seller's 402 offer for /item. */
async function offer() {
  const res = await fetch(`${seller.url}/item`);
  assert.equal(res.status, 402);
  await res.arrayBuffer();
  return decodePaymentRequiredHeader(res.headers.get('payment-required')).accepts[0];
}

test('the escrow and its deposit collector are on chain at the canonical addresses, with the domain the official code signs in', async () => {
  const client = createPublicClient({ chain: chainFor(stack.rpcUrl), transport: viemHttp(stack.rpcUrl) });
  assert.ok((await client.getCode({ address: BATCH_ESCROW })).length > 1000);
  assert.ok((await client.getCode({ address: BATCH_ERC3009_COLLECTOR })).length > 100);
  const read = (functionName, args = []) => client.readContract({ address: BATCH_ESCROW, abi: BATCH_ESCROW_ABI, functionName, args });
  const [, name, version, chainId, verifyingContract] = await read('eip712Domain');
  assert.deepEqual({ name, version, chainId, verifyingContract }, { name: 'x402 Batch Settlement', version: '1', chainId: BigInt(CHAIN_ID), verifyingContract: BATCH_ESCROW });
  assert.equal(await read('MIN_WITHDRAW_DELAY'), 900);
  assert.equal(await read('MAX_WITHDRAW_DELAY'), 2592000);
  // The channel id and voucher digest the contract computes are the official client's.
  const config = { payer: stack.payer, payerAuthorizer: stack.payer, receiver: stack.payTo, receiverAuthorizer: stack.receiverAuthorizer, token: USDC, withdrawDelay: 900, salt: `0x${'ab'.repeat(32)}` };
  const channelId = channelIdOf(config);
  assert.equal(await read('getChannelId', [config]), channelId);
  const domain = { name: 'x402 Batch Settlement', version: '1', chainId: CHAIN_ID, verifyingContract: BATCH_ESCROW };
  const digest = hashTypedData({ domain, types: { Voucher: [{ name: 'channelId', type: 'bytes32' }, { name: 'maxClaimableAmount', type: 'uint128' }] }, primaryType: 'Voucher', message: { channelId, maxClaimableAmount: 123n } });
  assert.equal(await read('getVoucherDigest', [channelId, 123n]), digest);
});

test('/supported announces batch-settlement with the facilitator\'s receiverAuthorizer, and the 402 carries it', async () => {
  const supported = await (await fetch(`${stack.facilitator.url}/supported`)).json();
  const kind = supported.kinds.find((k) => k.scheme === 'batch-settlement');
  assert.deepEqual(kind, { x402Version: 2, scheme: 'batch-settlement', network: NETWORK, extra: { receiverAuthorizer: stack.receiverAuthorizer } });
  const req = await offer();
  assert.equal(req.scheme, 'batch-settlement');
  assert.equal(req.amount, String(PRICE));
  assert.equal(req.asset.toLowerCase(), USDC.toLowerCase());
  assert.equal(req.payTo, stack.payTo);
  assert.equal(req.extra.receiverAuthorizer, stack.receiverAuthorizer);
  assert.equal(req.extra.name, 'USDC');
  assert.equal(req.extra.version, '2');
  assert.equal(typeof req.extra.withdrawDelay, 'number');
  console.log('batch-settlement requirements:', JSON.stringify(req));
});

let channel; // {channelId, config}
let payerClient; // the official client that opened `channel` (its channel state lives in memory)

test('deposit once, then cumulative vouchers: each request runs the handler once; only the deposit moves tokens; the claim moves exactly the sum to the receiver', async () => {
  const payer0 = await balanceOf(stack.rpcUrl, stack.payer);
  const payTo0 = await balanceOf(stack.rpcUrl, stack.payTo);
  const escrow0 = await balanceOf(stack.rpcUrl, BATCH_ESCROW);
  payerClient = batchClient(KEYS.payer);
  const paidFetch = wrapFetchWithPayment(fetch, payerClient.client);
  const before = calls();
  const bodies0 = stack.facilitator.bodies.length;
  const N = 5;
  const responses = [];
  for (let i = 0; i < N; i++) {
    const res = await paidFetch(`${seller.url}/item`);
    assert.equal(res.status, 200, await res.clone().text());
    responses.push({ body: await res.json(), receipt: decodePaymentResponseHeader(res.headers.get('payment-response')) });
  }
  assert.equal(runs.item, N);
  const types = stack.facilitator.bodies.slice(bodies0).map((b) => `${b.path}:${b.body.paymentPayload.payload.type}`);
  console.log('facilitator calls for', N, 'requests:', types.join(', '));
  // The first request opens the channel: the deposit is verified and settled on chain.
  // Every later request is a voucher the official server checks itself: no facilitator call.
  assert.deepEqual(types, ['verify:deposit', 'settle:deposit']);
  const deposit = stack.facilitator.bodies.slice(bodies0).find((b) => b.path === 'settle').body.paymentPayload.payload;
  channel = { channelId: deposit.voucher.channelId, config: deposit.channelConfig };
  assert.equal(channelIdOf(channel.config), channel.channelId);
  assert.equal(channel.config.payer, stack.payer);
  assert.equal(channel.config.receiver, stack.payTo);
  assert.equal(channel.config.receiverAuthorizer, stack.receiverAuthorizer);
  // Vouchers: cumulative maxClaimableAmount = i × price; no voucher is settled through the facilitator.
  const vouchers = stack.facilitator.bodies.slice(bodies0).map((b) => b.body.paymentPayload.payload.voucher.maxClaimableAmount);
  assert.equal(settleTypes(bodies0).filter((t) => t !== 'deposit').length, 0);
  console.log('receipts:', JSON.stringify(responses.map((r) => r.receipt)));
  for (const [i, r] of responses.entries()) assert.equal(r.receipt.success, true, `receipt ${i}`);
  assert.ok(vouchers.includes(String(PRICE)));
  const depositAmount = BigInt(deposit.deposit.amount);
  const onChain = await readChannel(stack.rpcUrl, channel.channelId);
  assert.equal(onChain.balance, depositAmount);
  assert.equal(onChain.totalClaimed, 0n);
  assert.equal(payer0 - (await balanceOf(stack.rpcUrl, stack.payer)), depositAmount);
  assert.equal((await balanceOf(stack.rpcUrl, BATCH_ESCROW)) - escrow0, depositAmount);
  assert.equal(await balanceOf(stack.rpcUrl, stack.payTo), payTo0, 'nothing reaches the receiver before the claim');
  console.log('calls during requests:', JSON.stringify({ verify: calls().verify - before.verify, settle: calls().settle - before.settle }));

  // Claim through the official channel manager: /settle with a `claim` payload (the facilitator's
  // authorizer signs the batch), then /settle with a `settle` payload (escrow → receiver).
  const manager = serverScheme.createChannelManager(facilitatorClient, NETWORK);
  const bodies1 = stack.facilitator.bodies.length;
  const result = await manager.claimAndSettle();
  console.log('claimAndSettle:', JSON.stringify(result));
  assert.deepEqual(settleTypes(bodies1), ['claim', 'settle']);
  const claimed = await readChannel(stack.rpcUrl, channel.channelId);
  assert.equal(claimed.totalClaimed, BigInt(N) * PRICE);
  assert.equal(claimed.balance, depositAmount);
  assert.equal((await balanceOf(stack.rpcUrl, stack.payTo)) - payTo0, BigInt(N) * PRICE, 'the receiver gets exactly N × price');
  assert.deepEqual(await readReceiver(stack.rpcUrl, stack.payTo), { totalClaimed: BigInt(N) * PRICE, totalSettled: BigInt(N) * PRICE });
  assert.equal(payer0 - (await balanceOf(stack.rpcUrl, stack.payer)), depositAmount);
});

/** A voucher payload for the test channel with `maxClaimableAmount`, signed by the payer with the official signVoucher. */
async function voucherPayload(maxClaimableAmount, requirements) {
  const { signer } = batchClient(KEYS.payer);
  const voucher = await signVoucher(signer, channel.channelId, String(maxClaimableAmount), NETWORK);
  return { x402Version: 2, resource: { url: `${seller.url}/item` }, accepted: requirements, payload: { type: 'voucher', channelConfig: channel.config, voucher } };
}
const verify = async (paymentPayload, paymentRequirements) => (await fetch(`${stack.facilitator.url}/verify`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ x402Version: 2, paymentPayload, paymentRequirements }) })).json();

test('the facilitator refuses a voucher beyond the deposit and a stale one at or below the claimed total, and accepts the next one', async () => {
  assert.ok(channel, 'needs the channel of the previous test');
  const requirements = await offer();
  const state = await readChannel(stack.rpcUrl, channel.channelId);
  const beyond = await verify(await voucherPayload(state.balance + 1n, requirements), requirements);
  assert.deepEqual([beyond.isValid, beyond.invalidReason], [false, 'invalid_batch_settlement_evm_cumulative_exceeds_balance']);
  const stale = await verify(await voucherPayload(state.totalClaimed, requirements), requirements);
  assert.deepEqual([stale.isValid, stale.invalidReason], [false, 'invalid_batch_settlement_evm_cumulative_below_claimed']);
  const next = await verify(await voucherPayload(state.totalClaimed + PRICE, requirements), requirements);
  assert.equal(next.isValid, true, JSON.stringify(next));
  assert.equal(next.extra.channelId, channel.channelId);
  assert.equal(next.extra.balance, String(state.balance));
  assert.equal(next.extra.totalClaimed, String(state.totalClaimed));
  // Signed by someone else: refused.
  const forged = await voucherPayload(state.totalClaimed + PRICE, requirements);
  const other = await signVoucher(batchClient(KEYS.payer2).signer, channel.channelId, String(state.totalClaimed + PRICE), NETWORK);
  forged.payload.voucher.signature = other.signature;
  const bad = await verify(forged, requirements);
  assert.deepEqual([bad.isValid, bad.invalidReason], [false, 'invalid_batch_settlement_evm_voucher_signature']);
});

test('a replayed voucher header does not run the handler again', async () => {
  assert.ok(channel, 'needs the channel of the previous tests');
  const requirements = await offer();
  const { client, pay, settled } = batchClient(KEYS.payer2);
  // payer2 opens its own channel with the official client, then pays by hand and replays.
  const paidFetch = wrapFetchWithPayment(fetch, client);
  const first = await paidFetch(`${seller.url}/item`);
  assert.equal(first.status, 200);
  await first.arrayBuffer();
  const { payload, header } = await pay(requirements);
  assert.equal(payload.payload.type, 'voucher');
  assert.equal(payload.payload.voucher.maxClaimableAmount, String(2n * PRICE));
  const ok = await fetch(`${seller.url}/item`, { headers: { 'payment-signature': header } });
  assert.equal(ok.status, 200, await ok.clone().text());
  await settled(payload, ok);
  await ok.arrayBuffer();
  const ran = runs.item;
  const replay = await fetch(`${seller.url}/item`, { headers: { 'payment-signature': header } });
  await replay.arrayBuffer();
  assert.equal(replay.status, 402);
  const refusal = decodePaymentRequiredHeader(replay.headers.get('payment-required'));
  console.log('replay refusal:', JSON.stringify(refusal.error), JSON.stringify(refusal.accepts[0].extra));
  assert.equal(refusal.error, 'invalid_batch_settlement_evm_cumulative_amount_mismatch');
  assert.equal(refusal.accepts[0].extra.channelState.chargedCumulativeAmount, String(2n * PRICE));
  assert.equal(runs.item, ran, 'the replay did not reach the handler');
  // The client, told of the last answer, signs the next cumulative amount, which is served.
  const next = await pay(requirements);
  assert.equal(next.payload.payload.voucher.maxClaimableAmount, String(3n * PRICE));
  const served = await fetch(`${seller.url}/item`, { headers: { 'payment-signature': next.header } });
  assert.equal(served.status, 200);
  await served.arrayBuffer();
  assert.equal(runs.item, ran + 1);
});

test('cooperative refund through the official client returns the unclaimed deposit to the payer', async () => {
  assert.ok(channel, 'needs the channel of the previous tests');
  const payer0 = await balanceOf(stack.rpcUrl, stack.payer);
  const before = await readChannel(stack.rpcUrl, channel.channelId);
  const { scheme, client } = payerClient;
  // One more paid request: a voucher the seller holds but has not claimed yet.
  const paidFetch = wrapFetchWithPayment(fetch, client);
  const res = await paidFetch(`${seller.url}/item`);
  assert.equal(res.status, 200, await res.clone().text());
  await res.arrayBuffer();
  const bodies0 = stack.facilitator.bodies.length;
  const receipt = await scheme.refund(`${seller.url}/item`);
  console.log('refund receipt:', JSON.stringify(receipt));
  console.log('refund facilitator calls:', stack.facilitator.bodies.slice(bodies0).map((b) => `${b.path}:${b.body.paymentPayload.payload.type}`).join(', '));
  assert.equal(receipt.success, true);
  const afterRefund = await readChannel(stack.rpcUrl, channel.channelId);
  // The outstanding voucher is claimed first, then the rest is refunded.
  assert.equal(afterRefund.totalClaimed, before.totalClaimed + PRICE);
  assert.equal(afterRefund.balance, afterRefund.totalClaimed);
  assert.equal(afterRefund.refundNonce, before.refundNonce + 1n);
  assert.equal((await balanceOf(stack.rpcUrl, stack.payer)) - payer0, before.balance - afterRefund.totalClaimed);
});

test('expiry: the payer withdraws unclaimed escrow itself after withdrawDelay; vouchers beyond what stays are refused', async () => {
  // A fresh channel for payer2 (its own from the replay test), then the timed withdrawal.
  const requirements = await offer();
  const ch = stack.facilitator.bodies.filter((b) => b.path === 'settle' && b.body.paymentPayload.payload.type === 'deposit').map((b) => b.body.paymentPayload.payload).find((p) => p.channelConfig.payer === address(KEYS.payer2));
  assert.ok(ch, 'payer2 opened a channel');
  const channelId = ch.voucher.channelId;
  const config = { ...ch.channelConfig, withdrawDelay: Number(ch.channelConfig.withdrawDelay) };
  const state = await readChannel(stack.rpcUrl, channelId);
  assert.ok(state.balance > 0n);
  const account = privateKeyToAccount(KEYS.payer2);
  const wallet = createWalletClient({ account, chain: chainFor(stack.rpcUrl), transport: viemHttp(stack.rpcUrl) });
  const pub = createPublicClient({ chain: chainFor(stack.rpcUrl), transport: viemHttp(stack.rpcUrl) });
  const unclaimed = state.balance - state.totalClaimed;
  await pub.waitForTransactionReceipt({ hash: await wallet.writeContract({ address: BATCH_ESCROW, abi: BATCH_ESCROW_ABI, functionName: 'initiateWithdraw', args: [config, unclaimed] }) });
  const pending = await readChannel(stack.rpcUrl, channelId);
  assert.equal(pending.withdrawAmount, unclaimed);
  assert.ok(pending.withdrawInitiatedAt > 0);
  // Too early: reverts.
  await assert.rejects(wallet.writeContract({ address: BATCH_ESCROW, abi: BATCH_ESCROW_ABI, functionName: 'finalizeWithdraw', args: [config] }));
  await pub.request({ method: 'evm_increaseTime', params: [config.withdrawDelay + 1] });
  await pub.request({ method: 'evm_mine', params: [] });
  const before = await balanceOf(stack.rpcUrl, account.address);
  await pub.waitForTransactionReceipt({ hash: await wallet.writeContract({ address: BATCH_ESCROW, abi: BATCH_ESCROW_ABI, functionName: 'finalizeWithdraw', args: [config] }) });
  assert.equal((await balanceOf(stack.rpcUrl, account.address)) - before, unclaimed);
  const closed = await readChannel(stack.rpcUrl, channelId);
  assert.equal(closed.balance, state.totalClaimed);
  assert.equal(closed.withdrawInitiatedAt, 0);
  // A voucher the payer signed before for more than what stays claimable is now refused.
  const { signer } = batchClient(KEYS.payer2);
  const voucher = await signVoucher(signer, channelId, String(PRICE * 2n), NETWORK);
  const res = await verify({ x402Version: 2, resource: { url: `${seller.url}/item` }, accepted: requirements, payload: { type: 'voucher', channelConfig: ch.channelConfig, voucher } }, requirements);
  assert.equal(res.isValid, false);
  assert.ok(['invalid_batch_settlement_evm_channel_not_found', 'invalid_batch_settlement_evm_cumulative_exceeds_balance'].includes(res.invalidReason), res.invalidReason);
});
