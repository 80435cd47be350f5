// The local stack the tests and the demo run against, all on 127.0.0.1 with free ports:
// anvil (chain id 84532), an EIP-3009 test token placed at Base Sepolia's USDC address, a
// facilitator server built on the official @x402/core + @x402/evm facilitator logic, a small
// origin API, and the built Worker under Miniflare.
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { createPublicClient, createWalletClient, defineChain, maxUint256, parseAbi, http as viemHttp, publicActions } from 'viem';
import { nonceManager, privateKeyToAccount } from 'viem/accounts';
import { x402Client, x402HTTPClient } from '@x402/core/client';
import { x402Facilitator } from '@x402/core/facilitator';
import { encodePaymentSignatureHeader } from '@x402/core/http';
import { ExactEvmScheme as FacilitatorExactEvm } from '@x402/evm/exact/facilitator';
import { ExactEvmSchemeV1 as FacilitatorExactEvmV1 } from '@x402/evm/exact/v1/facilitator';
import { UptoEvmScheme as FacilitatorUptoEvm } from '@x402/evm/upto/facilitator';
import { UptoEvmScheme as ClientUptoEvm } from '@x402/evm/upto/client';
import { BatchSettlementEvmScheme as FacilitatorBatchEvm } from '@x402/evm/batch-settlement/facilitator';
import { BatchSettlementEvmScheme as ClientBatchEvm, computeChannelId } from '@x402/evm/batch-settlement/client';
import { toClientEvmSigner, toFacilitatorEvmSigner } from '@x402/evm';

const require = createRequire(import.meta.url);
export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** Anvil's public, well-known development keys (never hold real funds). */
export const KEYS = {
  deployer: '0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80',
  facilitator: '0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d',
  payer: '0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a',
  payTo: '0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6',
  payer2: '0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a',
  /** Anvil account 5: the facilitator's batch-settlement `receiverAuthorizer` (signs claims and refunds). */
  receiverAuthorizer: '0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba',
};
export const address = (key) => privateKeyToAccount(key).address;

/** Base Sepolia's USDC address: the official client's default asset for eip155:84532. */
export const USDC = '0x036CbD53842c5426634e7929541eC2318f3dCF7e';
export const CHAIN_ID = 84532;
export const NETWORK = 'eip155:84532';

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

export function chainFor(rpcUrl) {
  return defineChain({
    id: CHAIN_ID,
    name: 'anvil (base-sepolia id)',
    nativeCurrency: { name: 'Ether', symbol: 'ETH', decimals: 18 },
    rpcUrls: { default: { http: [rpcUrl] } },
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Starts anvil (on `port`, default a free one); resolves once its RPC answers. */
export async function startAnvil({ port } = {}) {
  port ??= await freePort();
  const bin = path.join(path.dirname(require.resolve('@foundry-rs/anvil-linux-amd64/package.json')), 'bin', 'anvil');
  const proc = spawn(bin, ['--host', '127.0.0.1', '--port', String(port), '--chain-id', String(CHAIN_ID), '--silent'], { stdio: 'ignore' });
  const rpcUrl = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 20_000;
  for (;;) {
    try {
      const r = await fetch(rpcUrl, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'eth_chainId', params: [] }) });
      if (r.ok) break;
    } catch {}
    if (Date.now() > deadline) throw new Error('anvil did not start');
    await sleep(100);
  }
  return { rpcUrl, stop: () => proc.kill() };
}

/**
 * Runs solc-js on a standard-JSON `input` and returns its output, failing on any error. The output
 * is cached on disk under the OS temp dir, keyed by the SHA-256 of the solc version and the input,
 * so only the first test process on a machine pays for the compile (seconds under viaIR).
 */
function solcCompile(input) {
  const json = JSON.stringify(input);
  // Keyed by the solc package's version, so a cache hit does not even load the compiler.
  const version = require('solc/package.json').version;
  const key = crypto.createHash('sha256').update(version).update('\0').update(json).digest('hex');
  const dir = path.join(os.tmpdir(), 'x402-paywall-solc-cache');
  const file = path.join(dir, `${key}.json`);
  try {
    return JSON.parse(readFileSync(file, 'utf8'));
  } catch {}
  const out = JSON.parse(require('solc').compile(json));
  const errors = (out.errors || []).filter((e) => e.severity === 'error');
  if (errors.length) throw new Error(errors.map((e) => e.formattedMessage).join('\n'));
  try {
    mkdirSync(dir, { recursive: true });
    const tmp = `${file}.${process.pid}.tmp`;
    writeFileSync(tmp, JSON.stringify(out));
    renameSync(tmp, file); // atomic: concurrent test processes never read half a file
  } catch {}
  return out;
}

const compiledContracts = new Map();
/** Compiles the contract `name` of tests/support/`name`.sol with solc-js (cached per process and on disk). */
export function compileContract(name) {
  if (compiledContracts.has(name)) return compiledContracts.get(name);
  const file = `${name}.sol`;
  const input = {
    language: 'Solidity',
    sources: { [file]: { content: readFileSync(path.join(ROOT, 'tests/support', file), 'utf8') } },
    settings: { optimizer: { enabled: true, runs: 200 }, viaIR: true, outputSelection: { '*': { '*': ['abi', 'evm.bytecode.object'] } } },
  };
  const out = solcCompile(input);
  const c = out.contracts[file][name];
  const compiled = { abi: c.abi, bytecode: `0x${c.evm.bytecode.object}` };
  compiledContracts.set(name, compiled);
  return compiled;
}

/** Compiles tests/support/TestUSDC.sol. */
export const compileToken = () => compileContract('TestUSDC');

/** Deploys the test token, copies its runtime code to the USDC address, and mints to `holders` ({address: atomic}). */
export async function deployUsdc(rpcUrl, holders = {}) {
  const { abi, bytecode } = compileToken();
  const chain = chainFor(rpcUrl);
  const account = privateKeyToAccount(KEYS.deployer);
  const wallet = createWalletClient({ account, chain, transport: viemHttp(rpcUrl) }).extend(publicActions);
  const hash = await wallet.deployContract({ abi, bytecode });
  const receipt = await wallet.waitForTransactionReceipt({ hash });
  const code = await wallet.getCode({ address: receipt.contractAddress });
  await wallet.request({ method: 'anvil_setCode', params: [USDC, code] });
  await deployMulticall3(wallet);
  for (const [to, amount] of Object.entries(holders)) {
    const h = await wallet.writeContract({ address: USDC, abi, functionName: 'mint', args: [to, BigInt(amount)] });
    await wallet.waitForTransactionReceipt({ hash: h });
  }
  return { abi, address: USDC };
}

/**
 * Compiles tests/support/Multicall3.sol (cached per process), deploys it with `wallet` and copies its
 * runtime code to Multicall3's canonical address, where the @x402/evm facilitator's failure
 * diagnosis calls `tryAggregate` (anvil has no Multicall3 of its own).
 */
async function deployMulticall3(wallet) {
  const multicall3 = compileContract('Multicall3');
  const hash = await wallet.deployContract(multicall3);
  const receipt = await wallet.waitForTransactionReceipt({ hash });
  const code = await wallet.getCode({ address: receipt.contractAddress });
  await wallet.request({ method: 'anvil_setCode', params: ['0xcA11bde05977b3631167028862bE2a173976CA11', code] });
}

export async function balanceOf(rpcUrl, who) {
  const { abi } = compileToken();
  const client = createPublicClient({ chain: chainFor(rpcUrl), transport: viemHttp(rpcUrl) });
  return client.readContract({ address: USDC, abi, functionName: 'balanceOf', args: [who] });
}

export async function authorizationUsed(rpcUrl, from, nonce) {
  const { abi } = compileToken();
  const client = createPublicClient({ chain: chainFor(rpcUrl), transport: viemHttp(rpcUrl) });
  return client.readContract({ address: USDC, abi, functionName: 'authorizationState', args: [from, nonce] });
}

// ---- x402 `upto` (EVM, Permit2) ----------------------------------------------------------------

/** Uniswap Permit2's canonical address (the same on every EVM chain; CREATE2). */
export const PERMIT2 = '0x000000000022D473030F116dDEE9F6B43aC78BA3';
/** The x402 upto Permit2 proxy's canonical address (CREATE2 vanity; `x402UptoPermit2ProxyAddress` in @x402/evm). */
export const UPTO_PROXY = '0x4020A4f3b7b90ccA423B9fabCc0CE57C6C240002';

/** The Permit2 functions the tests read (Permit2's EIP-712 domain and SignatureTransfer nonce bitmap). */
export const PERMIT2_ABI = parseAbi([
  'function DOMAIN_SEPARATOR() view returns (bytes32)',
  'function nonceBitmap(address owner, uint256 wordPos) view returns (uint256)',
]);

let uptoCompiled;
/**
 * Compiles this project's Permit2 subset (tests/support/Permit2.sol) and x402 upto proxy
 * (tests/support/UptoPermit2Proxy.sol) — written for these tests to Permit2's SignatureTransfer
 * interface and the x402 upto scheme's proxy interface, not copies of the published sources
 * (see each file's header) — with the project's solc-js, and returns {permit2: {abi, runtime},
 * proxy: {abi, runtime}}. Neither has immutables or a constructor, so the runtime code is placed
 * as compiled. Cached per process and on disk.
 */
function compileUpto() {
  if (uptoCompiled) return uptoCompiled;
  const files = ['Permit2.sol', 'UptoPermit2Proxy.sol'];
  const input = {
    language: 'Solidity',
    sources: Object.fromEntries(files.map((f) => [f, { content: readFileSync(path.join(ROOT, 'tests/support', f), 'utf8') }])),
    settings: {
      optimizer: { enabled: true, runs: 200 },
      viaIR: true,
      outputSelection: { 'Permit2.sol': { Permit2: ['abi', 'evm.deployedBytecode.object'] }, 'UptoPermit2Proxy.sol': { UptoPermit2Proxy: ['abi', 'evm.deployedBytecode.object'] } },
    },
  };
  const out = solcCompile(input).contracts;
  const pick = (c) => ({ abi: c.abi, runtime: `0x${c.evm.deployedBytecode.object}` });
  uptoCompiled = { permit2: pick(out['Permit2.sol'].Permit2), proxy: pick(out['UptoPermit2Proxy.sol'].UptoPermit2Proxy) };
  return uptoCompiled;
}

/** The compiled Permit2 subset, {abi, runtime} ({@link compileUpto}). */
export const compilePermit2 = () => compileUpto().permit2;
/** The compiled x402 upto proxy, {abi, runtime} ({@link compileUpto}). */
export const compileUptoProxy = () => compileUpto().proxy;

/**
 * Places the Permit2 subset and the x402 upto proxy ({@link compileUpto}) at their canonical
 * addresses with `anvil_setCode`. No transactions; no storage to seed (Permit2's nonce bitmap and
 * the proxy's reentrancy flag start at zero).
 */
export async function deployUptoContracts(rpcUrl) {
  const client = createPublicClient({ chain: chainFor(rpcUrl), transport: viemHttp(rpcUrl) });
  await client.request({ method: 'anvil_setCode', params: [PERMIT2, compilePermit2().runtime] });
  await client.request({ method: 'anvil_setCode', params: [UPTO_PROXY, compileUptoProxy().runtime] });
}

/**
 * The payer `key` approves Permit2 to move `amount` (atomic units, default unlimited) of the test
 * token: the one-time on-chain step every `upto` payer needs (without it the facilitator answers
 * `permit2_allowance_required`). Returns the transaction hash.
 */
export async function approvePermit2(rpcUrl, key, amount = maxUint256) {
  const { abi } = compileToken();
  const wallet = createWalletClient({ account: privateKeyToAccount(key), chain: chainFor(rpcUrl), transport: viemHttp(rpcUrl) }).extend(publicActions);
  const hash = await wallet.writeContract({ address: USDC, abi, functionName: 'approve', args: [PERMIT2, amount] });
  await wallet.waitForTransactionReceipt({ hash });
  return hash;
}

/** The test token's allowance from `owner` to Permit2 (atomic units). */
export async function permit2Allowance(rpcUrl, owner) {
  const { abi } = compileToken();
  const client = createPublicClient({ chain: chainFor(rpcUrl), transport: viemHttp(rpcUrl) });
  return client.readContract({ address: USDC, abi, functionName: 'allowance', args: [owner, PERMIT2] });
}

/** Whether Permit2 has used `owner`'s unordered nonce `nonce` (bit nonce & 0xff of nonceBitmap(owner, nonce >> 8)). */
export async function permit2NonceUsed(rpcUrl, owner, nonce) {
  const n = BigInt(nonce);
  const client = createPublicClient({ chain: chainFor(rpcUrl), transport: viemHttp(rpcUrl) });
  const word = await client.readContract({ address: PERMIT2, abi: PERMIT2_ABI, functionName: 'nonceBitmap', args: [owner, n >> 8n] });
  return ((word >> (n & 0xffn)) & 1n) === 1n;
}

/**
 * The payment payload the official upto client (@x402/evm/upto/client `UptoEvmScheme` in a
 * @x402/core `x402Client`) makes with `key` for `requirements` (v2 PaymentRequirements with
 * scheme "upto"; `extra.facilitatorAddress` is required), as {payload, header}: the
 * PaymentPayload object and its PAYMENT-SIGNATURE header value. `resource`: the 402's resource;
 * `extensions`: the 402's extensions (an announced `eip2612GasSponsoring` makes the client sign a
 * permit when the payer's allowance is short); `rpcUrl`: a chain connection for the client to
 * read the allowance and the token's permit nonce with.
 */
export async function uptoPayment(key, requirements, { resource = { url: 'http://127.0.0.1/metered' }, extensions, rpcUrl } = {}) {
  const publicClient = rpcUrl ? createPublicClient({ chain: chainFor(rpcUrl), transport: viemHttp(rpcUrl) }) : undefined;
  const client = new x402Client().register(NETWORK, new ClientUptoEvm(toClientEvmSigner(privateKeyToAccount(key), publicClient)));
  const payload = await client.createPaymentPayload({ x402Version: 2, resource, accepts: [requirements], ...(extensions ? { extensions } : {}) });
  return { payload, header: encodePaymentSignatureHeader(payload) };
}

// ---- x402 `batch-settlement` (EVM escrow channels) ---------------------------------------------

/** The x402 batch-settlement escrow's canonical address (`BATCH_SETTLEMENT_ADDRESS` in @x402/evm). */
export const BATCH_ESCROW = '0x4020074e9dF2ce1deE5A9C1b5c3f541D02a10003';
/** The ERC-3009 deposit collector's canonical address (`ERC3009_DEPOSIT_COLLECTOR_ADDRESS` in @x402/evm). */
export const BATCH_ERC3009_COLLECTOR = '0x4020806089470a89826cB9fB1f4059150b550004';

/** The escrow functions the tests read (the names and shapes of @x402/evm's `batchSettlementABI`). */
export const BATCH_ESCROW_ABI = parseAbi([
  'function channels(bytes32 channelId) view returns (uint128 balance, uint128 totalClaimed)',
  'function pendingWithdrawals(bytes32 channelId) view returns (uint128 amount, uint40 initiatedAt)',
  'function refundNonce(bytes32 channelId) view returns (uint256)',
  'function receivers(address receiver, address token) view returns (uint128 totalClaimed, uint128 totalSettled)',
  'function getVoucherDigest(bytes32 channelId, uint128 maxClaimableAmount) view returns (bytes32)',
  'function domainSeparator() view returns (bytes32)',
  'function eip712Domain() view returns (bytes1 fields, string name, string version, uint256 chainId, address verifyingContract, bytes32 salt, uint256[] extensions)',
  'function MIN_WITHDRAW_DELAY() view returns (uint40)',
  'function MAX_WITHDRAW_DELAY() view returns (uint40)',
  'function getChannelId((address payer, address payerAuthorizer, address receiver, address receiverAuthorizer, address token, uint40 withdrawDelay, bytes32 salt) config) view returns (bytes32)',
  'function initiateWithdraw((address payer, address payerAuthorizer, address receiver, address receiverAuthorizer, address token, uint40 withdrawDelay, bytes32 salt) config, uint128 amount)',
  'function finalizeWithdraw((address payer, address payerAuthorizer, address receiver, address receiverAuthorizer, address token, uint40 withdrawDelay, bytes32 salt) config)',
]);

let batchCompiled;
/**
 * Compiles tests/support/BatchSettlementEscrow.sol (this project's implementation of the escrow
 * interface the official @x402/evm batch-settlement code uses, and its ERC-3009 deposit
 * collector; see the file's header for why it is not the published contract) with the project's
 * solc-js, and returns {escrow: {abi, runtime}, collector: {abi, runtime}}. Neither has
 * immutables, so the runtime code is placed as compiled. Cached per process and on disk.
 */
export function compileBatchSettlement() {
  if (batchCompiled) return batchCompiled;
  const file = 'BatchSettlementEscrow.sol';
  const input = {
    language: 'Solidity',
    sources: { [file]: { content: readFileSync(path.join(ROOT, 'tests/support', file), 'utf8') } },
    settings: {
      optimizer: { enabled: true, runs: 200 },
      viaIR: true,
      outputSelection: { [file]: { BatchSettlementEscrow: ['abi', 'evm.deployedBytecode.object'], Erc3009DepositCollector: ['abi', 'evm.deployedBytecode.object'] } },
    },
  };
  const out = solcCompile(input).contracts[file];
  const pick = (c) => ({ abi: c.abi, runtime: `0x${c.evm.deployedBytecode.object}` });
  batchCompiled = { escrow: pick(out.BatchSettlementEscrow), collector: pick(out.Erc3009DepositCollector) };
  return batchCompiled;
}

/**
 * Places the batch-settlement escrow and its ERC-3009 deposit collector at their canonical
 * addresses with `anvil_setCode` ({@link compileBatchSettlement}). No transactions; no storage
 * to seed (the escrow's reentrancy flag starts at zero = not entered).
 */
export async function deployBatchSettlementContracts(rpcUrl) {
  const { escrow, collector } = compileBatchSettlement();
  const client = createPublicClient({ chain: chainFor(rpcUrl), transport: viemHttp(rpcUrl) });
  await client.request({ method: 'anvil_setCode', params: [BATCH_ESCROW, escrow.runtime] });
  await client.request({ method: 'anvil_setCode', params: [BATCH_ERC3009_COLLECTOR, collector.runtime] });
}

/**
 * A channel's on-chain state (atomic units; `withdrawInitiatedAt` in unix seconds, 0 when none):
 * {balance, totalClaimed, refundNonce, withdrawAmount, withdrawInitiatedAt}.
 */
export async function readChannel(rpcUrl, channelId) {
  const client = createPublicClient({ chain: chainFor(rpcUrl), transport: viemHttp(rpcUrl) });
  const read = (functionName, args) => client.readContract({ address: BATCH_ESCROW, abi: BATCH_ESCROW_ABI, functionName, args });
  const [[balance, totalClaimed], nonce, [withdrawAmount, withdrawInitiatedAt]] = await Promise.all([
    read('channels', [channelId]),
    read('refundNonce', [channelId]),
    read('pendingWithdrawals', [channelId]),
  ]);
  return { balance, totalClaimed, refundNonce: nonce, withdrawAmount, withdrawInitiatedAt: Number(withdrawInitiatedAt) };
}

/** A receiver's escrow totals for the test token (atomic units): {totalClaimed, totalSettled}. */
export async function readReceiver(rpcUrl, receiver) {
  const client = createPublicClient({ chain: chainFor(rpcUrl), transport: viemHttp(rpcUrl) });
  const [totalClaimed, totalSettled] = await client.readContract({ address: BATCH_ESCROW, abi: BATCH_ESCROW_ABI, functionName: 'receivers', args: [receiver, USDC] });
  return { totalClaimed, totalSettled };
}

/**
 * The channel id of a ChannelConfig (the official `computeChannelId`: the EIP-712 hash of the
 * config in the domain {"x402 Batch Settlement", "1", chainId 84532, the escrow}).
 */
export const channelIdOf = (config) => computeChannelId(config, NETWORK);

/**
 * The official batch-settlement client (@x402/evm/batch-settlement/client `BatchSettlementEvmScheme`
 * in a @x402/core `x402Client`) for `key`. It keeps its channels in memory (per instance), so
 * reuse one for a sequence of payments on one channel. `options`: the scheme's options
 * (depositPolicy, salt, ...). Returns {client, scheme, pay(requirements, resource?)} where
 * `pay` resolves to {payload, header}: the PaymentPayload (a `deposit` payload with its first
 * voucher when the channel has no deposit yet, else a `voucher` payload) and its
 * PAYMENT-SIGNATURE header value. After each answer the client must see the server's
 * PAYMENT-RESPONSE (or corrective 402) to track the channel: `settled(payload, response)` feeds it a
 * fetch Response (as @x402/fetch does; `wrapFetchWithPayment(fetch, client)` does all of it).
 */
export function batchClient(key, options = {}) {
  const signer = toClientEvmSigner(privateKeyToAccount(key));
  const scheme = new ClientBatchEvm(signer, options);
  const client = new x402Client().register(NETWORK, scheme);
  const pay = async (requirements, { resource = { url: 'http://127.0.0.1/channel' } } = {}) => {
    const payload = await client.createPaymentPayload({ x402Version: 2, resource, accepts: [requirements] });
    return { payload, header: encodePaymentSignatureHeader(payload) };
  };
  const http = new x402HTTPClient(client);
  const settled = (payload, response) => http.processPaymentResult(payload, (name) => response.headers.get(name), response.status);
  return { client, scheme, signer, pay, settled };
}

function readJson(req, limit = 1 << 20) {
  return new Promise((resolve, reject) => {
    let size = 0;
    const chunks = [];
    req.on('data', (c) => {
      size += c.length;
      if (size > limit) reject(new Error('body too large'));
      else chunks.push(c);
    });
    req.on('end', () => {
      try {
        resolve(chunks.length ? JSON.parse(Buffer.concat(chunks).toString('utf8')) : {});
      } catch (e) {
        reject(e);
      }
    });
    req.on('error', reject);
  });
}

function listen(server, port = 0) {
  return new Promise((resolve) => server.listen(port, '127.0.0.1', () => resolve(`http://127.0.0.1:${server.address().port}`)));
}

/**
 * A CDP API key pair made for a test, in the form CDP issues it: `ed25519` → base64 of seed and
 * public key (64 bytes); `ec` → a P-256 key as SEC1 PEM (`-----BEGIN EC PRIVATE KEY-----`);
 * `ec-pkcs8` → the same as PKCS #8 PEM. Returns {id, secret, pkcs8 (PEM, for `ec`), publicKey}.
 */
export function cdpKey(kind = 'ed25519') {
  const id = `organizations/test-org/apiKeys/${crypto.randomUUID()}`;
  if (kind === 'ed25519') {
    const { privateKey, publicKey } = crypto.generateKeyPairSync('ed25519');
    const jwk = privateKey.export({ format: 'jwk' });
    const secret = Buffer.concat([Buffer.from(jwk.d, 'base64url'), Buffer.from(jwk.x, 'base64url')]).toString('base64');
    return { id, secret, publicKey, alg: 'EdDSA' };
  }
  const { privateKey, publicKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const pkcs8 = privateKey.export({ format: 'pem', type: 'pkcs8' });
  const secret = kind === 'ec' ? privateKey.export({ format: 'pem', type: 'sec1' }) : pkcs8;
  return { id, secret, pkcs8, publicKey, alg: 'ES256' };
}

/**
 * Checks a CDP JWT the way CDP's API does: compact JWS signed by `key` (EdDSA or ES256), `kid`
 * and `sub` the key id, `iss` "cdp", `uris` exactly [`POST <host><path>`] of this request,
 * now within [nbf, exp] and a lifetime of at most 120 s, and a header `nonce` never seen before
 * (`seen`, a Set). Returns null when valid, else the reason.
 */
export function checkCdpJwt(authorization, key, { host, path: reqPath, seen, now = Math.floor(Date.now() / 1000) }) {
  const m = /^Bearer ([\w-]+)\.([\w-]+)\.([\w-]+)$/.exec(authorization ?? '');
  if (!m) return 'no bearer JWT';
  const [, h, c, sig] = m;
  let header, claims;
  try {
    header = JSON.parse(Buffer.from(h, 'base64url'));
    claims = JSON.parse(Buffer.from(c, 'base64url'));
  } catch {
    return 'unreadable JWT';
  }
  if (header.alg !== key.alg || header.typ !== 'JWT') return `alg ${header.alg}`;
  const data = Buffer.from(`${h}.${c}`);
  const signature = Buffer.from(sig, 'base64url');
  const ok = key.alg === 'EdDSA'
    ? crypto.verify(null, data, key.publicKey, signature)
    : crypto.verify('sha256', data, { key: key.publicKey, dsaEncoding: 'ieee-p1363' }, signature);
  if (!ok) return 'bad signature';
  if (header.kid !== key.id || claims.sub !== key.id || claims.iss !== 'cdp') return 'wrong kid/sub/iss';
  if (JSON.stringify(claims.uris) !== JSON.stringify([`POST ${host}${reqPath}`])) return `uris ${JSON.stringify(claims.uris)}`;
  if (!(claims.nbf <= now + 5 && now <= claims.exp && claims.exp - claims.nbf <= 120)) return 'outside nbf/exp';
  if (typeof header.nonce !== 'string' || seen.has(header.nonce)) return 'nonce reused';
  seen.add(header.nonce);
  return null;
}

/**
 * A facilitator HTTP server (POST /verify, POST /settle, GET /supported) over the official
 * x402Facilitator with the EVM `exact` (v2 and v1) and `upto` schemes, signing with an anvil
 * account (`address`; /supported announces it as the upto kind's `extra.facilitatorAddress`).
 * `fault(path, body)` may return {status, body, delayMs} to inject a failure instead of answering.
 * `cdpKey` (from {@link cdpKey}): every call must carry a valid CDP JWT for that key
 * ({@link checkCdpJwt}), else 401; `jwts` lists the decoded ones accepted, `refusals` the rest.
 * `bodies` lists each /verify and /settle call: {path, body, authorization (the header received)}.
 * `port`: listen there (default a free one).
 * It also runs the official `batch-settlement` facilitator scheme (@x402/evm/batch-settlement/facilitator)
 * with `receiverAuthorizerKey` (default KEYS.receiverAuthorizer; null: none) as its authorizer:
 * /supported then announces `extra.receiverAuthorizer` (that key's address) for the kind, and
 * /settle signs the `claim` batches and `refund`s a server sends without an authorizer signature.
 * Its /verify takes `deposit`, `voucher` and `refund` payloads; its /settle takes `deposit`
 * (the on-chain deposit), `claim` (claimWithSignature of a batch of vouchers), `settle`
 * (escrow → receiver transfer of everything claimed) and enriched `refund` payloads.
 */
export async function startFacilitator({ rpcUrl, privateKey = KEYS.facilitator, fault, cdpKey: requiredKey, port = 0, receiverAuthorizerKey = KEYS.receiverAuthorizer } = {}) {
  const account = privateKeyToAccount(privateKey, { nonceManager });
  const client = createWalletClient({ account, chain: chainFor(rpcUrl), transport: viemHttp(rpcUrl) }).extend(publicActions);
  const signer = toFacilitatorEvmSigner(Object.assign(client, { address: account.address }));
  // batch-settlement: with an authorizer key the facilitator announces its address as
  // `extra.receiverAuthorizer` and signs the claim batches and refunds servers send unsigned.
  const authorizer = receiverAuthorizerKey ? privateKeyToAccount(receiverAuthorizerKey) : undefined;
  const facilitator = new x402Facilitator()
    .register(NETWORK, new FacilitatorExactEvm(signer))
    .register(NETWORK, new FacilitatorUptoEvm(signer))
    .register(NETWORK, new FacilitatorBatchEvm(signer, authorizer))
    .registerV1('base-sepolia', new FacilitatorExactEvmV1(signer));
  const calls = { verify: 0, settle: 0, supported: 0 };
  const bodies = [];
  const jwts = [];
  const refusals = [];
  const seen = new Set();
  const state = { fault };
  const server = http.createServer(async (req, res) => {
    const send = (status, body) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(typeof body === 'string' ? body : JSON.stringify(body));
    };
    try {
      const route = `${req.method} ${req.url}`;
      if (requiredKey) {
        const refused = checkCdpJwt(req.headers.authorization, requiredKey, { host: req.headers.host, path: req.url, seen });
        if (refused) {
          refusals.push(refused);
          return send(401, { error: 'unauthorized', message: refused });
        }
        const [h, c] = req.headers.authorization.slice(7).split('.');
        jwts.push({ header: JSON.parse(Buffer.from(h, 'base64url')), claims: JSON.parse(Buffer.from(c, 'base64url')) });
      }
      if (route === 'GET /supported') {
        calls.supported++;
        return send(200, facilitator.getSupported());
      }
      if (route !== 'POST /verify' && route !== 'POST /settle') return send(404, { error: 'not found' });
      const name = req.url.slice(1);
      const body = await readJson(req);
      calls[name]++;
      bodies.push({ path: name, body, authorization: req.headers.authorization });
      const injected = state.fault && (await state.fault(name, body));
      if (injected) {
        if (injected.delayMs) await sleep(injected.delayMs);
        return send(injected.status ?? 200, injected.body ?? '');
      }
      const result = name === 'verify'
        ? await facilitator.verify(body.paymentPayload, body.paymentRequirements)
        : await facilitator.settle(body.paymentPayload, body.paymentRequirements);
      return send(200, result);
    } catch (e) {
      return send(500, { error: String(e?.message ?? e) });
    }
  });
  const url = await listen(server, port);
  return {
    url,
    calls,
    bodies,
    jwts,
    refusals,
    address: account.address,
    setFault: (f) => { state.fault = f; },
    /** Runs the real facilitator logic (for faults that execute first and then answer badly). */
    real: (name, body) => (name === 'verify'
      ? facilitator.verify(body.paymentPayload, body.paymentRequirements)
      : facilitator.settle(body.paymentPayload, body.paymentRequirements)),
    stop: () => new Promise((r) => { server.closeAllConnections?.(); server.close(() => r()); }),
  };
}

/**
 * A small origin API that records what it received. `requireHeader` ({name, value}): the origin
 * refuses (403) every request without that header and value, as an origin locked to the paywall.
 */
export async function startOrigin({ requireHeader } = {}) {
  const requests = [];
  let served = 0;
  const server = http.createServer(async (req, res) => {
    const chunks = [];
    for await (const c of req) chunks.push(c);
    const body = Buffer.concat(chunks).toString('utf8');
    requests.push({ method: req.method, url: req.url, headers: req.headers, body });
    if (requireHeader && req.headers[requireHeader.name.toLowerCase()] !== requireHeader.value) {
      res.writeHead(403, { 'content-type': 'application/json' });
      return res.end(JSON.stringify({ error: 'only the paywall may call this origin' }));
    }
    const self = `http://127.0.0.1:${server.address().port}`;
    const json = (status, value, extra = {}) => {
      res.writeHead(status, { 'content-type': 'application/json', 'x-origin': 'demo', ...extra });
      res.end(req.method === 'HEAD' ? undefined : JSON.stringify(value));
    };
    const p = req.url.split('?')[0];
    if (p === '/weather') return json(200, { city: 'Lisbon', forecast: 'sunny', tempC: 21, served: ++served });
    if (p.startsWith('/premium/')) return json(200, { report: p, secret: 'premium content', served: ++served });
    if (/^\/(bundle|item|reports|summaries)\//.test(p)) return json(200, { document: p, served: ++served });
    if (p === '/free') return json(200, { free: true });
    if (p === '/drip') {
      // The head at once, then the body in pieces for about 1.5 s.
      res.writeHead(200, { 'content-type': 'text/plain' });
      for (let i = 0; i < 6; i++) {
        res.write(`piece ${i}\n`);
        await sleep(300);
      }
      return res.end('done\n');
    }
    if (p === '/as-is') {
      // A Link to another host: the paywall looks at it (it could point at the origin) and
      // leaves it, and the response, alone.
      res.writeHead(203, 'Origin Says Hi', [['content-type', 'text/plain'], ['set-cookie', 'a=1; Path=/'], ['set-cookie', 'b=2; Path=/'], ['x-origin', 'demo'], ['link', '<https://elsewhere.example/next>; rel="next"']]);
      return res.end('exactly these bytes');
    }
    if (p === '/redirect') return json(302, { moved: true }, { location: `${self}/weather?from=redirect`, link: `<${self}/premium/next>; rel="next"` });
    if (p === '/error') return json(500, { error: 'origin exploded' });
    if (p === '/missing') return json(404, { error: 'no such thing' });
    if (p === '/echo') return json(200, { method: req.method, body, served: ++served });
    if (p === '/flaky') {
      // ?status=: the status it answers; ?ms=: how long it takes first.
      const q = new URL(req.url, 'http://x').searchParams;
      await sleep(Number(q.get('ms') ?? 0));
      return json(Number(q.get('status') ?? 200), { flaky: true, served: ++served });
    }
    if (p === '/slow') {
      await sleep(Number(new URL(req.url, 'http://x').searchParams.get('ms') ?? 5000));
      return json(200, { slow: true, served: ++served });
    }
    return json(404, { error: 'not found', path: p });
  });
  const url = await listen(server);
  return { url, requests, stop: () => new Promise((r) => { server.closeAllConnections?.(); server.close(() => r()); }) };
}

/**
 * Serves a fetch-style app (`app.fetch(Request) → Response`, e.g. a Hono app) on 127.0.0.1 over
 * node:http; resolves to {url, stop}. Bodies are read whole (test origins only), unless `stream`:
 * then the head goes out at once and the body as it comes.
 */
export async function serveApp(app, { stream = false } = {}) {
  const server = http.createServer(async (req, res) => {
    const headers = new Headers();
    for (const [k, v] of Object.entries(req.headers)) headers.set(k, String(v));
    const r = await app.fetch(new Request(`http://127.0.0.1${req.url}`, { method: req.method, headers }));
    if (!stream || !r.body) {
      res.writeHead(r.status, Object.fromEntries(r.headers));
      res.end(Buffer.from(await r.arrayBuffer()));
      return;
    }
    // The head at once, each part of the body as it comes (a slow body stays slow).
    res.writeHead(r.status, Object.fromEntries(r.headers));
    res.flushHeaders();
    try {
      for await (const chunk of r.body) res.write(chunk);
    } catch {}
    res.end();
  });
  const url = await listen(server);
  return { url, stop: () => new Promise((r) => { server.closeAllConnections?.(); server.close(() => r()); }) };
}

/**
 * Sends one request to `baseUrl` + `path` byte for byte (any method, no client-side URL
 * normalisation) and resolves to {status, statusText, headers, body}.
 */
export function rawRequest(baseUrl, path, { method = 'GET', headers = {}, body } = {}) {
  const { hostname, port } = new URL(baseUrl);
  return new Promise((resolve, reject) => {
    const req = http.request({ host: hostname, port, path, method, headers }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, statusText: res.statusMessage, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** The price table the tests and the demo use. */
export const ROUTES = [
  { route: 'GET /weather', price: '$0.01', description: 'Current weather', mimeType: 'application/json', maxTimeoutSeconds: 120 },
  { route: 'GET /premium/*', price: '$0.05', description: 'Premium reports', mimeType: 'application/json', pass: { ttl: '10m' } },
  { route: 'GET /error', price: '$0.01', description: 'An endpoint that fails' },
  { route: 'GET /missing', price: '$0.01', description: 'An endpoint that 404s' },
  { route: 'POST /echo', price: '$0.02', description: 'Echo' },
  { route: 'GET /slow', price: '$0.01', description: 'A slow endpoint' },
  { route: 'POST /flaky', price: '$0.01', description: 'Settled before the origin runs', settle: 'before' },
];

/**
 * Starts the built Worker (build/) under Miniflare on a free port. `originWorker` (module source
 * of a JS Worker): the origin is that Worker behind the `ORIGIN_SERVICE` service binding instead
 * of `originUrl`. `workerOptions`: more Miniflare options for the paywall Worker (rate limits,
 * Analytics Engine datasets). `buildDir`: another build of the Worker (build-panic/ for the
 * panic test). The result's `logs` collects the Worker's stdout lines; `restart()` starts it again
 * in a fresh isolate with the same storage.
 */
export async function startWorker({ originUrl, facilitatorUrl, payTo, routes = ROUTES, extraBindings = {}, originWorker, publicUrl = false, workerOptions = {}, buildDir = 'build' }) {
  const { Miniflare } = await import('miniflare');
  const port = await freePort();
  const paywall = {
    name: 'paywall',
    modules: true,
    scriptPath: path.join(ROOT, buildDir, 'index.js'),
    modulesRoot: path.join(ROOT, buildDir),
    modulesRules: [
      { type: 'ESModule', include: ['**/*.js', '**/*.mjs'] },
      { type: 'CompiledWasm', include: ['**/*.wasm'] },
    ],
    compatibilityDate: '2026-07-30',
    compatibilityFlags: ['enable_request_signal'],
    kvNamespaces: ['PASSES'],
    durableObjects: { LEDGER: { className: 'PaymentLedger', useSQLite: true } },
    bindings: {
      ...(originWorker ? {} : { ORIGIN_URL: originUrl }),
      FACILITATOR_URL: facilitatorUrl,
      PAY_TO: payTo,
      NETWORK,
      ROUTES: routes,
      ...(publicUrl ? { PUBLIC_URL: `http://127.0.0.1:${port}`, SIGN_IN_SECRET: 'a test sign-in secret of at least 32 characters' } : {}),
      ...extraBindings,
    },
    ...(originWorker ? { serviceBindings: { ORIGIN_SERVICE: 'origin' } } : {}),
    ...workerOptions,
  };
  const workers = originWorker ? [paywall, { name: 'origin', modules: true, script: originWorker, compatibilityDate: '2026-07-30' }] : [paywall];
  const logs = [];
  const collect = (stream, echo) => {
    let rest = '';
    stream.on('data', (chunk) => {
      const lines = (rest + chunk.toString('utf8')).split('\n');
      rest = lines.pop();
      for (const line of lines) {
        logs.push(line);
        // Decision lines are read by the tests that want them; the rest goes on to the output.
        if (!line.includes('"x402":"decision"')) echo.write(`${line}\n`);
      }
    });
  };
  const handleRuntimeStdio = (stdout, stderr) => {
    collect(stdout, process.stdout);
    collect(stderr, process.stderr);
  };
  const options = { host: '127.0.0.1', port, cf: false, workers, handleRuntimeStdio };
  const mf = new Miniflare(options);
  const url = (await mf.ready).toString().replace(/\/$/, '');
  // `restart()`: the same Worker in a fresh isolate (empty isolate caches, as at another
  // location), with its KV and Durable Object storage kept.
  return { mf, url, logs, stop: () => mf.dispose(), restart: () => mf.setOptions(options) };
}

/**
 * Starts chain, token (funded payer), facilitator and origin. `cdp` ('ed25519' | 'ec'): the
 * facilitator requires CDP JWTs signed with a fresh key of that kind (`stack.cdp`), and
 * `stack.workerBindings` configures the Worker to sign them.
 * For the `upto` scheme the chain also holds Permit2 and the x402 upto proxy at their canonical
 * addresses ({@link deployUptoContracts}), and the keys in `permit2Payers` (default: KEYS.payer
 * only; KEYS.payer2 is funded but has no Permit2 allowance) approve Permit2 for the token without
 * limit. `stack.approvePermit2(key, amount?)` approves later; `stack.facilitator.address` is the
 * `extra.facilitatorAddress` the facilitator announces for upto.
 * For `batch-settlement` the chain holds the escrow and its ERC-3009 deposit collector at their
 * canonical addresses ({@link deployBatchSettlementContracts}); `stack.receiverAuthorizer` is the
 * `extra.receiverAuthorizer` the facilitator announces.
 */
export async function startStack({ payerFunds = 10_000_000n, cdp, permit2Payers = [KEYS.payer] } = {}) {
  const chain = await startAnvil();
  const payer = address(KEYS.payer);
  const payTo = address(KEYS.payTo);
  await deployUsdc(chain.rpcUrl, { [payer]: payerFunds, [address(KEYS.payer2)]: payerFunds });
  await deployUptoContracts(chain.rpcUrl);
  await deployBatchSettlementContracts(chain.rpcUrl);
  for (const k of permit2Payers) await approvePermit2(chain.rpcUrl, k);
  const key = cdp ? cdpKey(cdp) : undefined;
  const facilitator = await startFacilitator({ rpcUrl: chain.rpcUrl, cdpKey: key });
  const origin = await startOrigin();
  return {
    cdp: key,
    workerBindings: key ? { FACILITATOR_AUTH: 'cdp', CDP_API_KEY_ID: key.id, CDP_API_KEY_SECRET: key.secret } : {},
    rpcUrl: chain.rpcUrl,
    payer,
    payTo,
    facilitator,
    origin,
    receiverAuthorizer: address(KEYS.receiverAuthorizer),
    approvePermit2: (k, amount) => approvePermit2(chain.rpcUrl, k, amount),
    stop: async () => {
      await facilitator.stop();
      await origin.stop();
      chain.stop();
    },
  };
}

/**
 * The payer burns an authorization nonce on chain: a zero-value `transferWithAuthorization` to
 * itself with the same nonce, signed and sent by `key` (gas only; no token balance needed).
 * `requirements` gives the token's EIP-712 domain. Returns the transaction hash.
 */
export async function burnNonce(rpcUrl, key, requirements, nonce) {
  const { paymentHeader, unb64 } = await import('./pay.mjs');
  const self = address(key);
  const signed = unb64(await paymentHeader(key, { ...requirements, payTo: self, amount: '0' }, { authorization: { nonce } }));
  const a = signed.payload.authorization;
  const { abi } = compileToken();
  const account = privateKeyToAccount(key);
  const wallet = createWalletClient({ account, chain: chainFor(rpcUrl), transport: viemHttp(rpcUrl) }).extend(publicActions);
  const hash = await wallet.writeContract({
    address: USDC,
    abi,
    functionName: 'transferWithAuthorization',
    args: [a.from, a.to, 0n, BigInt(a.validAfter), BigInt(a.validBefore), a.nonce, signed.payload.signature],
  });
  await wallet.waitForTransactionReceipt({ hash });
  return hash;
}

/**
 * Applies one ledger op (src/ledger.rs `Op`, as JSON) to the payer shard `payer` of a running
 * Worker's `LEDGER` Durable Object, as a Worker that then died would have: fault injection for
 * the exactly-once tests. Returns the JSON reply.
 */
export async function ledgerOp(worker, payer, op) {
  const ns = await worker.mf.getDurableObjectNamespace('LEDGER');
  const stub = ns.get(ns.idFromName(`payer:${payer.toLowerCase()}`));
  // The Worker's own call: the JS RPC method `applyOp` (src/edge/ledger_object.rs), JSON each way.
  return JSON.parse(await stub.applyOp(JSON.stringify(op)));
}

/** The ledger key of a v2 payment header's authorization on the test network and token. */
export function ledgerKey(payment) {
  const a = payment.payload.authorization;
  return `${NETWORK}/${USDC.toLowerCase()}/${a.from.toLowerCase()}/${a.nonce.toLowerCase()}`;
}
