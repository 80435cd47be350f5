// Writes tests/data/permit2-upto-vectors.json: x402 `upto` (Permit2 `permitWitnessTransferFrom`)
// vectors for tests/upto_verify.rs, computed with viem and the official @x402/evm `upto` client
// and server. Run from the repo root: `node tests/support/gen-upto-vectors.mjs` (needs
// node_modules; the Rust test reads only the JSON it writes).
//
// Determinism: the official client takes its clock from Date.now() and its Permit2 nonce from
// crypto.getRandomValues; both are pinned here per vector, and the keys are fixed test keys.
import { writeFileSync } from 'node:fs';
import { hashTypedData, hashDomain, hashStruct, getAddress } from 'viem';
import { privateKeyToAccount } from 'viem/accounts';
import { x402Client } from '@x402/core/client';
import { UptoEvmScheme as UptoClient } from '@x402/evm/upto/client';
import { UptoEvmScheme as UptoServer } from '@x402/evm/upto/server';

const PERMIT2 = '0x000000000022D473030F116dDEE9F6B43aC78BA3';
const PROXY = '0x4020A4f3b7b90ccA423B9fabCc0CE57C6C240002';
const TYPES = {
  PermitWitnessTransferFrom: [
    { name: 'permitted', type: 'TokenPermissions' },
    { name: 'spender', type: 'address' },
    { name: 'nonce', type: 'uint256' },
    { name: 'deadline', type: 'uint256' },
    { name: 'witness', type: 'Witness' },
  ],
  TokenPermissions: [
    { name: 'token', type: 'address' },
    { name: 'amount', type: 'uint256' },
  ],
  Witness: [
    { name: 'to', type: 'address' },
    { name: 'facilitator', type: 'address' },
    { name: 'validAfter', type: 'uint256' },
  ],
};
const key = (b) => `0x${b.repeat(32)}`;
const PAY_TO = '0x209693Bc6afc0C5328bA36FaF03C514EF312287C';
const FACILITATOR = '0x90F79bf6EB2c4f870365E785982E1f101E93b906';

function typedData(chainId, a) {
  return {
    domain: { name: 'Permit2', chainId, verifyingContract: PERMIT2 },
    types: TYPES,
    primaryType: 'PermitWitnessTransferFrom',
    message: {
      permitted: { token: getAddress(a.permitted.token), amount: BigInt(a.permitted.amount) },
      spender: getAddress(a.spender),
      nonce: BigInt(a.nonce),
      deadline: BigInt(a.deadline),
      witness: { to: getAddress(a.witness.to), facilitator: getAddress(a.witness.facilitator), validAfter: BigInt(a.witness.validAfter) },
    },
  };
}

function hashes(td) {
  const types = { EIP712Domain: [{ name: 'name', type: 'string' }, { name: 'chainId', type: 'uint256' }, { name: 'verifyingContract', type: 'address' }], ...TYPES };
  return {
    domainSeparator: hashDomain({ domain: td.domain, types }),
    structHash: hashStruct({ data: td.message, primaryType: td.primaryType, types: TYPES }),
    digest: hashTypedData(td),
  };
}

const jsonable = (v) => JSON.parse(JSON.stringify(v, (_, x) => (typeof x === 'bigint' ? x.toString() : x)));

// 1. Typed-data vectors signed directly with viem (fields the official client never varies:
//    validAfter > 0, nonce 0 and 2^256-1, several chains).
const direct = [
  { id: 'base-sepolia-small', key: key('11'), chainId: 84532, token: '0x036CbD53842c5426634e7929541eC2318f3dCF7e', amount: '10000', nonce: '0', deadline: '1767225900', validAfter: '0' },
  { id: 'base-max-nonce', key: key('22'), chainId: 8453, token: '0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913', amount: '115792089237316195423570985008687907853269984665640564039457584007913129639935', nonce: '115792089237316195423570985008687907853269984665640564039457584007913129639935', deadline: '1767225660', validAfter: '1767225000' },
  { id: 'anvil-31337', key: key('33'), chainId: 31337, token: '0x5FbDB2315678afecb367f032d93F642f64180aa3', amount: '1', nonce: '77194726158210796949047323339125271902179989777093709359638389338608753093290', deadline: '4102444800', validAfter: '1' },
  { id: 'polygon-amoy', key: key('44'), chainId: 80002, token: '0x41E94Eb019C0762f9Bfcf9Fb1E58725BfB0e7582', amount: '50000', nonce: '1', deadline: '1767225630', validAfter: '0' },
];
const typed = [];
for (const v of direct) {
  const account = privateKeyToAccount(v.key);
  const auth = { from: account.address, permitted: { token: v.token, amount: v.amount }, spender: PROXY, nonce: v.nonce, deadline: v.deadline, witness: { to: PAY_TO, facilitator: FACILITATOR, validAfter: v.validAfter } };
  const td = typedData(v.chainId, auth);
  const signature = await account.signTypedData(td);
  typed.push({ id: v.id, signer: account.address, typedData: jsonable(td), permit2Authorization: auth, ...hashes(td), signature });
}

// 2. Full payment payloads from the official client for requirements built by the official
//    server (its `extra`: name, version, assetTransferMethod, facilitatorAddress).
const realNow = Date.now;
const realRandom = globalThis.crypto.getRandomValues.bind(globalThis.crypto);
const offered = [
  { id: 'official-base-sepolia', key: key('55'), network: 'eip155:84532', price: '$0.05', maxTimeoutSeconds: 300, now: 1767225600, nonceByte: 0xa5 },
  { id: 'official-base', key: key('66'), network: 'eip155:8453', price: '$0.75', maxTimeoutSeconds: 60, now: 1767229200, nonceByte: 0x01 },
];
const payments = [];
for (const o of offered) {
  const server = new UptoServer();
  const price = await server.parsePrice(o.price, o.network);
  const base = { scheme: 'upto', network: o.network, amount: price.amount, asset: price.asset, payTo: PAY_TO, maxTimeoutSeconds: o.maxTimeoutSeconds, extra: price.extra };
  const requirements = await server.enhancePaymentRequirements(base, { x402Version: 2, scheme: 'upto', network: o.network, extra: { facilitatorAddress: FACILITATOR.toLowerCase() } }, []);
  const paymentRequired = { x402Version: 2, error: 'Payment required', resource: { url: 'https://api.example.test/metered', mimeType: 'application/json' }, accepts: [requirements] };
  const account = privateKeyToAccount(o.key);
  const client = new x402Client().register(o.network, new UptoClient(account));
  Date.now = () => o.now * 1000 + 123;
  globalThis.crypto.getRandomValues = (arr) => arr.fill(o.nonceByte);
  let payload;
  try {
    payload = await client.createPaymentPayload(paymentRequired);
  } finally {
    Date.now = realNow;
    globalThis.crypto.getRandomValues = realRandom;
  }
  const td = typedData(Number(o.network.split(':')[1]), payload.payload.permit2Authorization);
  payments.push({ id: o.id, now: o.now, signer: account.address, requirements, requirementsText: JSON.stringify(requirements), paymentPayload: payload, typedData: jsonable(td), ...hashes(td) });
}

const out = {
  source: 'tests/support/gen-upto-vectors.mjs: viem hashTypedData/signTypedData and the official @x402/evm upto client and server',
  permit2: PERMIT2,
  uptoProxy: PROXY,
  typeStrings: {
    PermitWitnessTransferFrom: 'PermitWitnessTransferFrom(TokenPermissions permitted,address spender,uint256 nonce,uint256 deadline,Witness witness)TokenPermissions(address token,uint256 amount)Witness(address to,address facilitator,uint256 validAfter)',
  },
  typed,
  payments,
};
writeFileSync(new URL('../data/permit2-upto-vectors.json', import.meta.url), `${JSON.stringify(out, null, 2)}\n`);
console.log(`wrote ${typed.length} typed-data vectors and ${payments.length} official payments`);
