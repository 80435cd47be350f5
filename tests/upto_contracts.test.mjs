// The local chain's own Permit2 subset (tests/support/Permit2.sol) and x402 upto proxy
// (tests/support/UptoPermit2Proxy.sol), called directly: the refusals and paths the official
// facilitator flows in tests/upto_stack.test.mjs do not reach (a wrong sender, too early, over
// the max, expired, a wrong signer, a reused or invalidated nonce, an EIP-2098 signature, the
// EIP-2612 path). Signatures are viem's EIP-712 over the same typed data the official upto client
// signs; each refusal is read by its error name, as the official facilitator maps them.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';

import { BaseError, ContractFunctionRevertedError, createWalletClient, http as viemHttp, parseEventLogs, publicActions, serializeCompactSignature, parseSignature, signatureToCompactSignature } from 'viem';
import { privateKeyToAccount } from 'viem/accounts';

import {
  CHAIN_ID, KEYS, PERMIT2, UPTO_PROXY, USDC, address, approvePermit2, balanceOf, chainFor, compilePermit2, compileUptoProxy,
  deployUptoContracts, deployUsdc, permit2NonceUsed, startAnvil,
} from './support/stack.mjs';

let chain;
let facilitator;
const payer = address(KEYS.payer);
const payTo = address(KEYS.payTo);
// The proxy's calls revert with its own errors or Permit2's: decode with both.
const abi = [...compileUptoProxy().abi, ...compilePermit2().abi.filter((i) => i.type === 'error' || i.type === 'event')];

before(async () => {
  chain = await startAnvil();
  await deployUsdc(chain.rpcUrl, { [payer]: 10_000_000n });
  await deployUptoContracts(chain.rpcUrl);
  await approvePermit2(chain.rpcUrl, KEYS.payer);
  facilitator = wallet(KEYS.facilitator);
});
after(() => chain?.stop());

function wallet(key) {
  return createWalletClient({ account: privateKeyToAccount(key), chain: chainFor(chain.rpcUrl), transport: viemHttp(chain.rpcUrl) }).extend(publicActions);
}

let nextNonce = 1000n;
const now = async () => (await facilitator.getBlock()).timestamp;

/** A permit of `max` (atomic) to the proxy with the upto witness, signed by `signer` (a key), as the official client signs it. */
async function signedPermit({ max = 10_000n, signer = KEYS.payer, validAfter = 0n, deadline, nonce = nextNonce++, facilitatorAddress = facilitator.account.address } = {}) {
  deadline ??= (await now()) + 300n;
  const permit = { permitted: { token: USDC, amount: max }, nonce, deadline };
  const witness = { to: payTo, facilitator: facilitatorAddress, validAfter };
  const signature = await privateKeyToAccount(signer).signTypedData({
    domain: { name: 'Permit2', chainId: CHAIN_ID, verifyingContract: PERMIT2 },
    types: {
      PermitWitnessTransferFrom: [
        { name: 'permitted', type: 'TokenPermissions' },
        { name: 'spender', type: 'address' },
        { name: 'nonce', type: 'uint256' },
        { name: 'deadline', type: 'uint256' },
        { name: 'witness', type: 'Witness' },
      ],
      TokenPermissions: [{ name: 'token', type: 'address' }, { name: 'amount', type: 'uint256' }],
      Witness: [{ name: 'to', type: 'address' }, { name: 'facilitator', type: 'address' }, { name: 'validAfter', type: 'uint256' }],
    },
    primaryType: 'PermitWitnessTransferFrom',
    message: { ...permit, spender: UPTO_PROXY, witness },
  });
  return { permit, witness, signature };
}

/** Sends settle(permit, amount, payer, witness, signature) from `from` (default the facilitator); returns the receipt. */
async function settle({ permit, witness, signature }, amount, { from = facilitator, owner = payer } = {}) {
  const { request } = await from.simulateContract({ address: UPTO_PROXY, abi, functionName: 'settle', args: [permit, amount, owner, witness, signature] });
  const receipt = await from.waitForTransactionReceipt({ hash: await from.writeContract(request) });
  assert.equal(receipt.status, 'success');
  return receipt;
}

/** The error name a simulated call reverts with. */
async function revertName(promise) {
  try {
    await promise;
  } catch (e) {
    const revert = e instanceof BaseError ? e.walk((x) => x instanceof ContractFunctionRevertedError) : null;
    if (revert) return revert.data?.errorName ?? revert.reason;
    throw e;
  }
  assert.fail('the call did not revert');
}
const refusal = (p, amount, { from = facilitator, owner = payer, fn = 'settle', extra = [] } = {}) =>
  revertName(from.simulateContract({ address: UPTO_PROXY, abi, functionName: fn, args: [...extra, p.permit, amount, owner, p.witness, p.signature] }));

test('the proxy reads back its constants: Permit2 at the canonical address, the upto witness type hash and type string', async () => {
  const read = (functionName) => facilitator.readContract({ address: UPTO_PROXY, abi, functionName });
  assert.equal(await read('PERMIT2'), PERMIT2);
  const { keccak256, toHex } = await import('viem');
  assert.equal(await read('WITNESS_TYPEHASH'), keccak256(toHex('Witness(address to,address facilitator,uint256 validAfter)')));
  assert.equal(await read('WITNESS_TYPE_STRING'), 'Witness witness)TokenPermissions(address token,uint256 amount)Witness(address to,address facilitator,uint256 validAfter)');
});

test('a settle moves exactly the amount to witness.to, emits Settled, burns the nonce; the same permit again is InvalidNonce', async () => {
  const p = await signedPermit({ max: 10_000n });
  const start = { payer: await balanceOf(chain.rpcUrl, payer), payTo: await balanceOf(chain.rpcUrl, payTo) };
  const receipt = await settle(p, 4_000n);
  assert.equal(parseEventLogs({ abi, logs: receipt.logs, eventName: 'Settled' }).length, 1);
  assert.equal(start.payer - (await balanceOf(chain.rpcUrl, payer)), 4_000n);
  assert.equal((await balanceOf(chain.rpcUrl, payTo)) - start.payTo, 4_000n);
  assert.equal(await permit2NonceUsed(chain.rpcUrl, payer, p.permit.nonce), true);
  assert.equal(await refusal(p, 1n), 'InvalidNonce');
});

test('the proxy refuses another sender than the witness facilitator, before validAfter, above the max, and a zero owner', async () => {
  const p = await signedPermit({ max: 5_000n });
  assert.equal(await refusal(p, 1n, { from: wallet(KEYS.deployer) }), 'UnauthorizedFacilitator');
  assert.equal(await refusal(p, 5_001n), 'AmountExceedsPermitted');
  assert.equal(await refusal(p, 1n, { owner: '0x0000000000000000000000000000000000000000' }), 'InvalidOwner');
  const early = await signedPermit({ validAfter: (await now()) + 3600n });
  assert.equal(await refusal(early, 1n), 'PaymentTooEarly');
  assert.equal(await permit2NonceUsed(chain.rpcUrl, payer, p.permit.nonce), false, 'nothing used the nonce');
  await settle(p, 5_000n); // the permit itself was good: the full max settles
});

test('Permit2 refuses an expired permit (SignatureExpired), another signer (InvalidSigner), a changed amount (InvalidSigner), and a bad length (InvalidSignatureLength)', async () => {
  const expired = await signedPermit({ deadline: (await now()) - 1n });
  assert.equal(await refusal(expired, 1n), 'SignatureExpired');
  const other = await signedPermit({ signer: KEYS.payer2 });
  assert.equal(await refusal(other, 1n), 'InvalidSigner');
  const p = await signedPermit({ max: 1_000n });
  assert.equal(await refusal({ ...p, permit: { ...p.permit, permitted: { token: USDC, amount: 2_000n } } }, 1n), 'InvalidSigner');
  assert.equal(await refusal({ ...p, signature: `${p.signature}00` }, 1n), 'InvalidSignatureLength');
});

test('a 64-byte EIP-2098 signature settles like the 65-byte one', async () => {
  const p = await signedPermit({ max: 2_000n });
  const compact = serializeCompactSignature(signatureToCompactSignature(parseSignature(p.signature)));
  assert.equal(compact.length, 2 + 128);
  const before = await balanceOf(chain.rpcUrl, payTo);
  await settle({ ...p, signature: compact }, 2_000n);
  assert.equal((await balanceOf(chain.rpcUrl, payTo)) - before, 2_000n);
});

test('invalidateUnorderedNonces marks the nonces for the caller (UnorderedNonceInvalidation); a permit on one is then InvalidNonce', async () => {
  const nonce = (7n << 8n) | 3n;
  const p = await signedPermit({ nonce });
  const owner = wallet(KEYS.payer);
  const hash = await owner.writeContract({ address: PERMIT2, abi: compilePermit2().abi, functionName: 'invalidateUnorderedNonces', args: [7n, 1n << 3n] });
  const receipt = await owner.waitForTransactionReceipt({ hash });
  const [event] = parseEventLogs({ abi: compilePermit2().abi, logs: receipt.logs, eventName: 'UnorderedNonceInvalidation' });
  assert.deepEqual(event.args, { owner: payer, word: 7n, mask: 8n });
  assert.equal(await permit2NonceUsed(chain.rpcUrl, payer, nonce), true);
  assert.equal(await permit2NonceUsed(chain.rpcUrl, payer, nonce + 1n), false, 'only the masked bit');
  assert.equal(await refusal(p, 1n), 'InvalidNonce');
});

test('settleWithPermit: an EIP-2612 value other than the max is Permit2612AmountMismatch; a permit the token refuses is ignored and the settle goes on (SettledWithPermit)', async () => {
  const p = await signedPermit({ max: 3_000n });
  const permit2612 = (value) => ({ value, deadline: 2n ** 40n, r: `0x${'11'.repeat(32)}`, s: `0x${'22'.repeat(32)}`, v: 27 });
  assert.equal(await refusal(p, 1n, { fn: 'settleWithPermit', extra: [permit2612(2_999n)] }), 'Permit2612AmountMismatch');
  // The test token has no EIP-2612 permit: the call fails, and the existing allowance pays.
  const { request } = await facilitator.simulateContract({ address: UPTO_PROXY, abi, functionName: 'settleWithPermit', args: [permit2612(3_000n), p.permit, 1_500n, payer, p.witness, p.signature] });
  const receipt = await facilitator.waitForTransactionReceipt({ hash: await facilitator.writeContract(request) });
  assert.equal(receipt.status, 'success');
  assert.equal(parseEventLogs({ abi, logs: receipt.logs, eventName: 'SettledWithPermit' }).length, 1);
  assert.equal(await permit2NonceUsed(chain.rpcUrl, payer, p.permit.nonce), true);
});
