// Hand-built x402 v2 payments for tests that need a payment the official client would not make
// (wrong key, wrong amount, expired, ...). Signed with viem, independent of our Rust code.
import { randomBytes } from 'node:crypto';
import { privateKeyToAccount } from 'viem/accounts';
import { CHAIN_ID } from './stack.mjs';

/** EIP-3009 `TransferWithAuthorization` (the typed data every EVM `exact` payment signs). */
export const TYPES = {
  TransferWithAuthorization: [
    { name: 'from', type: 'address' },
    { name: 'to', type: 'address' },
    { name: 'value', type: 'uint256' },
    { name: 'validAfter', type: 'uint256' },
    { name: 'validBefore', type: 'uint256' },
    { name: 'nonce', type: 'bytes32' },
  ],
};

export const b64 = (value) => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64');
export const unb64 = (h) => JSON.parse(Buffer.from(h, 'base64').toString('utf8'));

/**
 * Signs an EIP-3009 authorization for `requirements` with `key` and returns the PAYMENT-SIGNATURE
 * value. `opts.authorization` overrides message fields (signed as overridden), `opts.domain`
 * overrides the EIP-712 domain, `opts.signer` signs with another key than `from`,
 * `opts.mutate(payload)` edits the payload after signing.
 */
export async function paymentHeader(key, requirements, opts = {}) {
  const from = privateKeyToAccount(key);
  const signer = privateKeyToAccount(opts.signer ?? key);
  const now = Math.floor(Date.now() / 1000);
  const authorization = {
    from: from.address,
    to: requirements.payTo,
    value: requirements.amount,
    validAfter: String(now - 600),
    validBefore: String(now + 120),
    nonce: `0x${randomBytes(32).toString('hex')}`,
    ...opts.authorization,
  };
  const signature = await signer.signTypedData({
    domain: { name: requirements.extra.name, version: requirements.extra.version, chainId: CHAIN_ID, verifyingContract: requirements.asset, ...opts.domain },
    types: TYPES,
    primaryType: 'TransferWithAuthorization',
    message: { ...authorization, value: BigInt(authorization.value), validAfter: BigInt(authorization.validAfter), validBefore: BigInt(authorization.validBefore) },
  });
  const payload = { x402Version: 2, accepted: requirements, payload: { signature, authorization } };
  opts.mutate?.(payload);
  return b64(payload);
}

/** secp256k1 group order. */
const N = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n;

/** The malleable twin of a 65-byte signature: s' = n - s, v flipped (EIP-2 forbids it). */
export function highS(signature) {
  const hex = signature.slice(2);
  const s = BigInt(`0x${hex.slice(64, 128)}`);
  const v = parseInt(hex.slice(128, 130), 16);
  return `0x${hex.slice(0, 64)}${(N - s).toString(16).padStart(64, '0')}${(v === 27 ? 28 : 27).toString(16)}`;
}
