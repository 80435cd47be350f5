// The x402 `upto` scheme (EVM, Permit2) on the local chain with the official pieces only, no
// Worker: Permit2 and the x402 upto proxy at their canonical addresses, the official upto server
// scheme building the PaymentRequirements, the official upto client signing, and the official
// upto facilitator (over HTTP, tests/support/stack.mjs) verifying and settling. Balances,
// allowances and Permit2 nonces are read from the chain.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';

import { createPublicClient, getAddress, hashDomain, http as viemHttp } from 'viem';
import { PERMIT2_ADDRESS, x402UptoPermit2ProxyAddress } from '@x402/evm';
import { UptoEvmScheme as ServerUptoEvm } from '@x402/evm/upto/server';
import { decodePaymentSignatureHeader } from '@x402/core/http';

import {
  CHAIN_ID, KEYS, NETWORK, PERMIT2, PERMIT2_ABI, UPTO_PROXY, USDC, address, balanceOf, chainFor, compileUptoProxy,
  permit2Allowance, permit2NonceUsed, serveApp, startStack, uptoPayment,
} from './support/stack.mjs';

let stack;
before(async () => {
  stack = await startStack();
});
after(async () => {
  await stack?.stop();
});

const post = async (name, paymentPayload, paymentRequirements) => {
  const res = await fetch(`${stack.facilitator.url}/${name}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ x402Version: 2, paymentPayload, paymentRequirements }),
  });
  assert.equal(res.status, 200, `${name} answers 200`);
  return res.json();
};

/** PaymentRequirements for `max` (atomic) as the official upto server scheme builds them from the facilitator's /supported kind. */
async function requirements(max, { maxTimeoutSeconds = 300 } = {}) {
  const supported = await (await fetch(`${stack.facilitator.url}/supported`)).json();
  const kind = supported.kinds.find((k) => k.x402Version === 2 && k.scheme === 'upto' && k.network === NETWORK);
  const server = new ServerUptoEvm();
  const price = await server.parsePrice('$0.01', NETWORK); // the default asset and its extra (name, version)
  assert.equal(getAddress(price.asset), USDC, 'the official default asset on eip155:84532 is the test token');
  const base = { scheme: 'upto', network: NETWORK, asset: price.asset, amount: String(max), payTo: stack.payTo, maxTimeoutSeconds, extra: price.extra };
  return server.enhancePaymentRequirements(base, kind, []);
}

const balances = async () => ({
  payer: await balanceOf(stack.rpcUrl, stack.payer),
  payTo: await balanceOf(stack.rpcUrl, stack.payTo),
});

test('Permit2 and the x402 upto proxy sit at the canonical addresses @x402/evm uses; Permit2 signs for this chain and address', async () => {
  assert.equal(PERMIT2, PERMIT2_ADDRESS);
  assert.equal(UPTO_PROXY, x402UptoPermit2ProxyAddress);
  const client = createPublicClient({ chain: chainFor(stack.rpcUrl), transport: viemHttp(stack.rpcUrl) });
  assert.ok((await client.getCode({ address: PERMIT2 }))?.length > 2, 'Permit2 has code');
  assert.equal(await client.getCode({ address: UPTO_PROXY }), compileUptoProxy().runtime, 'the proxy is the compiled one');
  const separator = await client.readContract({ address: PERMIT2, abi: PERMIT2_ABI, functionName: 'DOMAIN_SEPARATOR' });
  assert.equal(separator, hashDomain({ domain: { name: 'Permit2', chainId: CHAIN_ID, verifyingContract: PERMIT2 }, types: { EIP712Domain: [{ name: 'name', type: 'string' }, { name: 'chainId', type: 'uint256' }, { name: 'verifyingContract', type: 'address' }] } }));
  const { abi } = compileUptoProxy();
  assert.equal(await client.readContract({ address: UPTO_PROXY, abi, functionName: 'PERMIT2' }), PERMIT2, "the proxy's PERMIT2 address");
  assert.equal(await permit2Allowance(stack.rpcUrl, stack.payer), 2n ** 256n - 1n, 'the payer approved Permit2 at start');
  assert.equal(await permit2Allowance(stack.rpcUrl, address(KEYS.payer2)), 0n, 'payer2 did not');
});

test('/supported announces upto on the test network with the facilitator signer as extra.facilitatorAddress; the official server puts it into the requirements', async () => {
  const supported = await (await fetch(`${stack.facilitator.url}/supported`)).json();
  const upto = supported.kinds.filter((k) => k.scheme === 'upto');
  assert.deepEqual(upto, [{ x402Version: 2, scheme: 'upto', network: NETWORK, extra: { facilitatorAddress: stack.facilitator.address } }]);
  assert.ok(supported.kinds.some((k) => k.x402Version === 2 && k.scheme === 'exact' && k.network === NETWORK), 'exact is still there');
  const r = await requirements(50_000n);
  assert.deepEqual(r.extra, { name: 'USDC', version: '2', assetTransferMethod: 'permit2', facilitatorAddress: stack.facilitator.address });
});

test('the official client signs a Permit2 witness transfer of at most the max to the proxy; verify accepts it; settling less moves exactly that and uses the nonce; a second settle is refused', async () => {
  const max = 50_000n;
  const actual = 12_345n;
  const req = await requirements(max);
  const before = Math.floor(Date.now() / 1000);
  const { payload, header } = await uptoPayment(KEYS.payer, req);
  assert.deepEqual(decodePaymentSignatureHeader(header), JSON.parse(JSON.stringify(payload)), 'the header is the base64 JSON of the payload');
  const auth = payload.payload.permit2Authorization;
  assert.equal(payload.x402Version, 2);
  assert.deepEqual(payload.accepted, req);
  assert.equal(auth.from, stack.payer);
  assert.deepEqual(auth.permitted, { token: USDC, amount: String(max) });
  assert.equal(auth.spender, UPTO_PROXY);
  assert.deepEqual(auth.witness, { to: stack.payTo, facilitator: stack.facilitator.address, validAfter: '0' });
  assert.ok(Number(auth.deadline) >= before + req.maxTimeoutSeconds && Number(auth.deadline) <= before + req.maxTimeoutSeconds + 5, 'deadline = now + maxTimeoutSeconds');
  assert.match(auth.nonce, /^\d+$/, 'a decimal uint256 nonce');
  assert.match(payload.payload.signature, /^0x[0-9a-f]{130}$/);

  const calls = { ...stack.facilitator.calls };
  const verified = await post('verify', payload, req);
  assert.deepEqual(verified, { isValid: true, payer: stack.payer });

  const start = await balances();
  // The settle requirements carry the amount actually charged (the official middleware's
  // Settlement-Overrides {amount}), the rest as offered.
  const settled = await post('settle', payload, { ...req, amount: String(actual) });
  assert.equal(settled.success, true, JSON.stringify(settled));
  assert.equal(settled.payer, stack.payer);
  assert.equal(settled.network, NETWORK);
  assert.equal(settled.amount, String(actual));
  assert.match(settled.transaction, /^0x[0-9a-f]{64}$/);
  const end = await balances();
  assert.equal(end.payTo - start.payTo, actual, 'payTo gains exactly the settled amount');
  assert.equal(start.payer - end.payer, actual, 'the payer loses exactly the settled amount');
  assert.equal(await permit2NonceUsed(stack.rpcUrl, stack.payer, auth.nonce), true, 'Permit2 burned the nonce');
  const receipt = await createPublicClient({ chain: chainFor(stack.rpcUrl), transport: viemHttp(stack.rpcUrl) }).getTransactionReceipt({ hash: settled.transaction });
  assert.equal(receipt.to, UPTO_PROXY.toLowerCase(), 'settled through the proxy');
  assert.equal(receipt.from, stack.facilitator.address.toLowerCase(), 'by the facilitator named in the witness');

  const again = await post('settle', payload, { ...req, amount: String(actual) });
  assert.equal(again.success, false);
  assert.equal(again.transaction, '');
  assert.equal(again.errorReason, 'permit2_simulation_failed', JSON.stringify(again));
  const reverify = await post('verify', payload, req);
  assert.equal(reverify.isValid, false);
  assert.equal(reverify.invalidReason, 'permit2_simulation_failed');
  assert.deepEqual(await balances(), end, 'nothing more moved');
  assert.equal(stack.facilitator.calls.settle, calls.settle + 2);
  assert.equal(stack.facilitator.calls.verify, calls.verify + 2);
});

test('settling 0 succeeds without a transaction and leaves the permit unused (a later settle can still use it); more than the max is refused', async () => {
  const max = 30_000n;
  const req = await requirements(max);
  const { payload } = await uptoPayment(KEYS.payer, req);
  const nonce = payload.payload.permit2Authorization.nonce;
  assert.equal((await post('verify', payload, req)).isValid, true);
  const start = await balances();

  const zero = await post('settle', payload, { ...req, amount: '0' });
  assert.deepEqual(zero, { success: true, transaction: '', network: NETWORK, payer: stack.payer, amount: '0' });
  assert.deepEqual(await balances(), start, 'nothing moved');
  assert.equal(await permit2NonceUsed(stack.rpcUrl, stack.payer, nonce), false, 'the nonce is still unused: the signed permit stays live until its deadline');

  const over = await post('settle', payload, { ...req, amount: String(max + 1n) });
  assert.equal(over.success, false);
  assert.equal(over.errorReason, 'invalid_upto_evm_payload_settlement_exceeds_amount');
  assert.deepEqual(await balances(), start, 'nothing moved');

  const full = await post('settle', payload, req);
  assert.equal(full.success, true, JSON.stringify(full));
  assert.equal(full.amount, String(max));
  const end = await balances();
  assert.equal(end.payTo - start.payTo, max, 'after a zero settle the same payload still settled the max');
  assert.equal(await permit2NonceUsed(stack.rpcUrl, stack.payer, nonce), true);
});

test('a payer without a Permit2 allowance: verify answers permit2_allowance_required and settle moves nothing; after approvePermit2 the same payment verifies', async () => {
  const payer2 = address(KEYS.payer2);
  const req = await requirements(20_000n);
  const { payload } = await uptoPayment(KEYS.payer2, req);
  assert.equal(await permit2Allowance(stack.rpcUrl, payer2), 0n);
  const verified = await post('verify', payload, req);
  assert.deepEqual(verified, { isValid: false, invalidReason: 'permit2_allowance_required', payer: payer2 });
  const before2 = await balanceOf(stack.rpcUrl, payer2);
  const settled = await post('settle', payload, { ...req, amount: '1000' });
  assert.equal(settled.success, false);
  assert.equal(settled.errorReason, 'permit2_allowance_required');
  assert.equal(await balanceOf(stack.rpcUrl, payer2), before2);

  await stack.approvePermit2(KEYS.payer2, 20_000n);
  assert.equal(await permit2Allowance(stack.rpcUrl, payer2), 20_000n);
  assert.deepEqual(await post('verify', payload, req), { isValid: true, payer: payer2 });
});

test('the facilitator refuses a payment whose witness names another facilitator, or whose max differs from the requirements', async () => {
  const req = await requirements(10_000n);
  const other = { ...req, extra: { ...req.extra, facilitatorAddress: address(KEYS.deployer) } };
  const { payload } = await uptoPayment(KEYS.payer, other);
  assert.equal(payload.payload.permit2Authorization.witness.facilitator, address(KEYS.deployer));
  const verified = await post('verify', payload, other);
  assert.equal(verified.isValid, false);
  assert.equal(verified.invalidReason, 'upto_facilitator_mismatch');

  const ok = await uptoPayment(KEYS.payer, req);
  const mismatch = await post('verify', ok.payload, { ...req, amount: '9999' });
  assert.equal(mismatch.isValid, false);
  assert.equal(mismatch.invalidReason, 'permit2_amount_mismatch', 'verify wants the requirements amount = the permitted max');
});

test('reference: the official Hono middleware prices a route with upto, the official fetch client pays it, and a Settlement-Overrides {amount} from the handler settles exactly that', async () => {
  const { Hono } = await import('hono');
  const { paymentMiddleware, setSettlementOverrides } = await import('@x402/hono');
  const { x402ResourceServer, HTTPFacilitatorClient } = await import('@x402/core/server');
  const { decodePaymentRequiredHeader, decodePaymentResponseHeader } = await import('@x402/core/http');
  const { payingFetch } = await import('./support/client.mjs');

  const used = 2_500n;
  const resourceServer = new x402ResourceServer(new HTTPFacilitatorClient({ url: stack.facilitator.url })).register(NETWORK, new ServerUptoEvm());
  const app = new Hono();
  app.use(paymentMiddleware({ 'GET /metered': { accepts: { scheme: 'upto', price: '$0.05', network: NETWORK, payTo: stack.payTo }, description: 'metered' } }, resourceServer));
  app.get('/metered', (c) => {
    setSettlementOverrides(c, { amount: String(used) });
    return c.json({ used: String(used) });
  });
  const server = await serveApp(app);
  const url = `${server.url}/metered`;
  try {
    const challenge = await fetch(url);
    assert.equal(challenge.status, 402);
    const required = decodePaymentRequiredHeader(challenge.headers.get('payment-required'));
    assert.equal(required.accepts.length, 1);
    const offer = required.accepts[0];
    assert.deepEqual(offer, {
      scheme: 'upto', network: NETWORK, amount: '50000', asset: USDC, payTo: stack.payTo, maxTimeoutSeconds: offer.maxTimeoutSeconds,
      extra: { name: 'USDC', version: '2', assetTransferMethod: 'permit2', facilitatorAddress: stack.facilitator.address },
    });

    const start = await balances();
    const calls = { ...stack.facilitator.calls };
    const bodies = stack.facilitator.bodies.length;
    const res = await payingFetch(KEYS.payer, { upto: true })(url);
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { used: String(used) });
    assert.equal(res.headers.get('settlement-overrides'), null, 'the middleware strips the override header');
    const settled = decodePaymentResponseHeader(res.headers.get('payment-response'));
    assert.equal(settled.success, true);
    assert.equal(settled.amount, String(used));
    const end = await balances();
    assert.equal(end.payTo - start.payTo, used, 'payTo gains exactly the overridden amount');
    assert.equal(stack.facilitator.calls.verify, calls.verify + 1);
    assert.equal(stack.facilitator.calls.settle, calls.settle + 1);
    const [verifyCall, settleCall] = stack.facilitator.bodies.slice(bodies);
    assert.equal(verifyCall.body.paymentRequirements.amount, '50000', 'verify is asked for the max');
    assert.equal(settleCall.body.paymentRequirements.amount, String(used), 'settle is asked for the used amount');
    assert.deepEqual({ ...settleCall.body.paymentRequirements, amount: '50000' }, verifyCall.body.paymentRequirements, 'and nothing else differs');
    assert.equal(settleCall.body.paymentPayload.accepted.amount, '50000', 'the payload still carries the offered max');
  } finally {
    await server.stop();
  }
});
