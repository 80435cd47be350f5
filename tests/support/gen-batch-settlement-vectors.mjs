// Writes tests/data/batch-settlement-vectors.json: x402 `batch-settlement` (EVM payment channel)
// vectors for tests/batch_settlement_verify.rs, computed with viem and the official @x402/evm
// 2.27 `batch-settlement` client, server and constants. Run from the repo root:
// `node tests/support/gen-batch-settlement-vectors.mjs` (needs node_modules; the Rust test reads
// only the JSON it writes).
//
// Determinism: the official client takes its clock from Date.now() and its ERC-3009 deposit salt
// from crypto.getRandomValues; both are pinned per vector, and the keys are fixed test keys.
import { writeFileSync } from 'node:fs';
import { hashTypedData, hashDomain, hashStruct, getAddress } from 'viem';
import { privateKeyToAccount } from 'viem/accounts';
import { x402Client } from '@x402/core/client';
import { BatchSettlementEvmScheme as BatchClient, InMemoryClientChannelStorage, computeChannelId } from '@x402/evm/batch-settlement/client';
import { BatchSettlementEvmScheme as BatchServer } from '@x402/evm/batch-settlement/server';

const ESCROW = '0x4020074e9dF2ce1deE5A9C1b5c3f541D02a10003';
const DOMAIN_TYPES = [
  { name: 'name', type: 'string' },
  { name: 'version', type: 'string' },
  { name: 'chainId', type: 'uint256' },
  { name: 'verifyingContract', type: 'address' },
];
const CHANNEL_CONFIG_TYPES = {
  ChannelConfig: [
    { name: 'payer', type: 'address' },
    { name: 'payerAuthorizer', type: 'address' },
    { name: 'receiver', type: 'address' },
    { name: 'receiverAuthorizer', type: 'address' },
    { name: 'token', type: 'address' },
    { name: 'withdrawDelay', type: 'uint40' },
    { name: 'salt', type: 'bytes32' },
  ],
};
const VOUCHER_TYPES = { Voucher: [{ name: 'channelId', type: 'bytes32' }, { name: 'maxClaimableAmount', type: 'uint128' }] };
const REFUND_TYPES = { Refund: [{ name: 'channelId', type: 'bytes32' }, { name: 'nonce', type: 'uint256' }, { name: 'amount', type: 'uint128' }] };
const CLAIM_BATCH_TYPES = {
  ClaimBatch: [{ name: 'claims', type: 'ClaimEntry[]' }],
  ClaimEntry: [{ name: 'channelId', type: 'bytes32' }, { name: 'maxClaimableAmount', type: 'uint128' }, { name: 'totalClaimed', type: 'uint128' }],
};
const key = (b) => `0x${b.repeat(32)}`;
const PAY_TO = '0x209693Bc6afc0C5328bA36FaF03C514EF312287C';
const RECEIVER_AUTHORIZER = '0x90F79bf6EB2c4f870365E785982E1f101E93b906';
const domain = (chainId) => ({ name: 'x402 Batch Settlement', version: '1', chainId, verifyingContract: ESCROW });
const jsonable = (v) => JSON.parse(JSON.stringify(v, (_, x) => (typeof x === 'bigint' ? x.toString() : x)));

function hashes(td) {
  return {
    domainSeparator: hashDomain({ domain: td.domain, types: { EIP712Domain: DOMAIN_TYPES, ...td.types } }),
    structHash: hashStruct({ data: td.message, primaryType: td.primaryType, types: td.types }),
    digest: hashTypedData(td),
  };
}

function configTypedData(chainId, c) {
  return {
    domain: domain(chainId),
    types: CHANNEL_CONFIG_TYPES,
    primaryType: 'ChannelConfig',
    message: { ...c, payer: getAddress(c.payer), payerAuthorizer: getAddress(c.payerAuthorizer), receiver: getAddress(c.receiver), receiverAuthorizer: getAddress(c.receiverAuthorizer), token: getAddress(c.token) },
  };
}
const voucherTypedData = (chainId, channelId, max) => ({ domain: domain(chainId), types: VOUCHER_TYPES, primaryType: 'Voucher', message: { channelId, maxClaimableAmount: BigInt(max) } });

// 1. Channel ids and vouchers signed directly with viem (fields the official client never
//    varies: a separate payerAuthorizer, non-zero salts, uint40/uint128 extremes, several chains).
const direct = [
  { id: 'base-sepolia-default-salt', key: key('11'), chainId: 84532, token: '0x036CbD53842c5426634e7929541eC2318f3dCF7e', withdrawDelay: 900, salt: `0x${'00'.repeat(32)}`, max: '1000' },
  { id: 'base-max-values', key: key('22'), authorizerKey: key('77'), chainId: 8453, token: '0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913', withdrawDelay: 1099511627775, salt: `0x${'ff'.repeat(32)}`, max: '340282366920938463463374607431768211455' },
  { id: 'anvil-31337', key: key('33'), chainId: 31337, token: '0x5FbDB2315678afecb367f032d93F642f64180aa3', withdrawDelay: 2592000, salt: `0x${'ab'.repeat(16)}${'01'.repeat(16)}`, max: '1' },
  { id: 'polygon-amoy-zero', key: key('44'), chainId: 80002, token: '0x41E94Eb019C0762f9Bfcf9Fb1E58725BfB0e7582', withdrawDelay: 3600, salt: `0x${'00'.repeat(31)}07`, max: '0' },
];
const typed = [];
for (const v of direct) {
  const payer = privateKeyToAccount(v.key);
  const voucherSigner = v.authorizerKey ? privateKeyToAccount(v.authorizerKey) : payer;
  const channelConfig = { payer: payer.address, payerAuthorizer: voucherSigner.address, receiver: PAY_TO, receiverAuthorizer: RECEIVER_AUTHORIZER, token: v.token, withdrawDelay: v.withdrawDelay, salt: v.salt };
  const ctd = configTypedData(v.chainId, channelConfig);
  const channelId = hashTypedData(ctd);
  if (channelId !== computeChannelId(channelConfig, v.chainId)) throw new Error('computeChannelId disagrees with hashTypedData');
  const vtd = voucherTypedData(v.chainId, channelId, v.max);
  const signature = await voucherSigner.signTypedData(vtd);
  typed.push({
    id: v.id,
    chainId: v.chainId,
    signer: voucherSigner.address,
    channelConfig,
    channelConfigTypedData: jsonable(ctd),
    channelConfigStructHash: hashes(ctd).structHash,
    channelId,
    voucherTypedData: jsonable(vtd),
    ...hashes(vtd),
    signature,
  });
}

// 2. Refund and ClaimBatch digests (what the receiver authorizer signs), for the claim step.
const refundTd = { domain: domain(84532), types: REFUND_TYPES, primaryType: 'Refund', message: { channelId: typed[0].channelId, nonce: 3n, amount: 1500n } };
const claimTd = {
  domain: domain(84532),
  types: CLAIM_BATCH_TYPES,
  primaryType: 'ClaimBatch',
  message: { claims: [
    { channelId: typed[0].channelId, maxClaimableAmount: 5000n, totalClaimed: 4000n },
    { channelId: typed[2].channelId, maxClaimableAmount: 1n, totalClaimed: 1n },
  ] },
};
const claimEmptyTd = { ...claimTd, message: { claims: [] } };
const authorizer = privateKeyToAccount(key('99'));
const receiverSigned = [];
for (const [id, td] of [['refund', refundTd], ['claim-batch-2', claimTd], ['claim-batch-empty', claimEmptyTd]]) {
  receiverSigned.push({ id, signer: authorizer.address, typedData: jsonable(td), ...hashes(td), signature: await authorizer.signTypedData(td) });
}

// 3. Full payment payloads from the official client for requirements built by the official
//    server (its `extra`: name, version, receiverAuthorizer, withdrawDelay, minDeposit): a
//    deposit (no channel yet: ERC-3009 receiveWithAuthorization into the channel, with the
//    first voucher) and a voucher (the client's storage says the channel holds a deposit).
const realNow = Date.now;
const realRandom = globalThis.crypto.getRandomValues.bind(globalThis.crypto);
const offered = [
  { id: 'official-base-sepolia', key: key('55'), network: 'eip155:84532', price: '$0.001', maxTimeoutSeconds: 300, now: 1767225600, saltByte: 0xa5, balance: '100000', charged: '3000' },
  { id: 'official-base', key: key('66'), network: 'eip155:8453', price: '$0.25', maxTimeoutSeconds: 60, now: 1767229200, saltByte: 0x01, balance: '5000000', charged: '0' },
];
const payments = [];
for (const o of offered) {
  const server = new BatchServer(PAY_TO);
  const price = await server.parsePrice(o.price, o.network);
  const base = { scheme: 'batch-settlement', network: o.network, amount: price.amount, asset: price.asset, payTo: PAY_TO, maxTimeoutSeconds: o.maxTimeoutSeconds, extra: price.extra };
  const requirements = await server.enhancePaymentRequirements(base, { x402Version: 2, scheme: 'batch-settlement', network: o.network, extra: { receiverAuthorizer: RECEIVER_AUTHORIZER.toLowerCase() } }, []);
  const paymentRequired = { x402Version: 2, error: 'Payment required', resource: { url: 'https://api.example.test/channel', mimeType: 'application/json' }, accepts: [requirements] };
  const account = privateKeyToAccount(o.key);
  const storage = new InMemoryClientChannelStorage();
  const scheme = new BatchClient(account, { storage });
  const client = new x402Client().register(o.network, scheme);
  const chainId = Number(o.network.split(':')[1]);
  Date.now = () => o.now * 1000 + 123;
  globalThis.crypto.getRandomValues = (arr) => arr.fill(o.saltByte);
  let deposit;
  let voucher;
  try {
    deposit = await client.createPaymentPayload(paymentRequired);
    const channelId = computeChannelId(scheme.buildChannelConfig(requirements), o.network);
    await storage.set(channelId, { balance: o.balance, chargedCumulativeAmount: o.charged });
    voucher = await client.createPaymentPayload(paymentRequired);
  } finally {
    Date.now = realNow;
    globalThis.crypto.getRandomValues = realRandom;
  }
  for (const [kind, p] of [['deposit', deposit], ['voucher', voucher]]) {
    if (p.payload.type !== kind) throw new Error(`expected a ${kind} payload, got ${p.payload.type}`);
    const vtd = voucherTypedData(chainId, p.payload.voucher.channelId, p.payload.voucher.maxClaimableAmount);
    payments.push({
      id: `${o.id}-${kind}`,
      now: o.now,
      signer: account.address,
      // What the server's channel record holds when this payload arrives.
      channelState: kind === 'deposit' ? { balance: '0', totalClaimed: '0', chargedCumulativeAmount: '0' } : { balance: o.balance, totalClaimed: o.charged, chargedCumulativeAmount: o.charged },
      requirements,
      paymentPayload: p,
      voucherTypedData: jsonable(vtd),
      ...hashes(vtd),
    });
  }
}

const out = {
  source: 'tests/support/gen-batch-settlement-vectors.mjs: viem hashTypedData/signTypedData and the official @x402/evm 2.27 batch-settlement client, server and computeChannelId',
  escrow: ESCROW,
  typeStrings: {
    ChannelConfig: 'ChannelConfig(address payer,address payerAuthorizer,address receiver,address receiverAuthorizer,address token,uint40 withdrawDelay,bytes32 salt)',
    Voucher: 'Voucher(bytes32 channelId,uint128 maxClaimableAmount)',
    Refund: 'Refund(bytes32 channelId,uint256 nonce,uint128 amount)',
    ClaimBatch: 'ClaimBatch(ClaimEntry[] claims)ClaimEntry(bytes32 channelId,uint128 maxClaimableAmount,uint128 totalClaimed)',
  },
  typed,
  receiverSigned,
  payments,
};
writeFileSync(new URL('../data/batch-settlement-vectors.json', import.meta.url), `${JSON.stringify(out, null, 2)}\n`);
console.log(`wrote ${typed.length} channel/voucher vectors, ${receiverSigned.length} receiver-authorizer vectors and ${payments.length} official payments`);
