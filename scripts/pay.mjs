#!/usr/bin/env node
// Pays one request with the official x402 client (@x402/fetch + @x402/evm, x402 v2) and shows
// every step: the 402's payment requirements, the payment it signs (PAYMENT-SIGNATURE), the
// response's status, body and PAYMENT-RESPONSE, and the payer's and payTo's token balances
// before and after.
//
//   scripts/pay.mjs URL [--method POST] [--data BODY] [--header 'Name: value'] [--key 0x…] [--rpc URL]
//
// --key: the payer's private key (default $PAYER_KEY, else anvil's well-known development key
// 0x5de4…365a: a public test key, never for real funds). --rpc: a JSON-RPC URL of the payment's
// chain for the balances (default $RPC_URL; without one, no balances). Exits 0 when the final
// response is 2xx.
import { parseArgs } from 'node:util';

import { createPublicClient, http, parseAbi } from 'viem';
import { privateKeyToAccount } from 'viem/accounts';
import { decodePaymentResponseHeader, wrapFetchWithPayment, x402Client } from '@x402/fetch';
import { ExactEvmScheme } from '@x402/evm/exact/client';
import { toClientEvmSigner } from '@x402/evm';

/** Anvil's well-known development account #2: public, funded only on a local chain. */
export const ANVIL_PAYER_KEY = '0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a';

const usage = 'usage: scripts/pay.mjs URL [--method POST] [--data BODY] [--header "Name: value"] [--key 0x…] [--rpc URL]';
let parsed;
try {
  parsed = parseArgs({
    allowPositionals: true,
    options: {
      method: { type: 'string', short: 'X' },
      data: { type: 'string', short: 'd' },
      header: { type: 'string', short: 'H', multiple: true },
      key: { type: 'string' },
      rpc: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
} catch (e) {
  console.error(`${e.message}\n${usage}`);
  process.exit(2);
}
const { values: opts, positionals } = parsed;
if (opts.help || positionals.length !== 1) {
  console.error(usage);
  process.exit(opts.help ? 0 : 2);
}
const url = positionals[0];
const key = opts.key ?? process.env.PAYER_KEY ?? ANVIL_PAYER_KEY;
const rpc = opts.rpc ?? process.env.RPC_URL;
const method = (opts.method ?? (opts.data !== undefined ? 'POST' : 'GET')).toUpperCase();
const headers = {};
for (const h of opts.header ?? []) {
  const i = h.indexOf(':');
  if (i < 1) {
    console.error(`--header "${h}": give "Name: value"`);
    process.exit(2);
  }
  headers[h.slice(0, i).trim()] = h.slice(i + 1).trim();
}

const account = privateKeyToAccount(key);
const unb64 = (value) => JSON.parse(Buffer.from(value, 'base64').toString('utf8'));
const json = (value) => JSON.stringify(value, null, 2).replace(/\n/g, '\n    ');
const say = (title, value) => console.log(value === undefined ? title : `${title}\n    ${typeof value === 'string' ? value : json(value)}`);

const erc20 = parseAbi(['function balanceOf(address) view returns (uint256)', 'function decimals() view returns (uint8)']);
async function balances(requirements) {
  if (!rpc) return null;
  const client = createPublicClient({ transport: http(rpc) });
  const read = (who) => client.readContract({ address: requirements.asset, abi: erc20, functionName: 'balanceOf', args: [who] });
  const [payer, payTo] = await Promise.all([read(account.address), read(requirements.payTo)]);
  return { payer, payTo };
}
let decimals = 6;
const units = (atomic) => {
  const s = atomic.toString().padStart(decimals + 1, '0');
  return `${s.slice(0, -decimals)}.${s.slice(-decimals)}`;
};

// The 402 the client answers and the request it retries with, seen through the fetch it calls.
const seen = { challenge: null, before: null, requirements: null };
async function watchingFetch(request) {
  const signature = request.headers.get('payment-signature');
  if (signature) {
    const payment = unb64(signature);
    seen.requirements = payment.accepted;
    const { extensions, ...shown } = payment;
    say(`\n2. The payment the client signed (PAYMENT-SIGNATURE, payer ${account.address}${extensions ? `; extensions ${Object.keys(extensions).join(', ')} not shown` : ''})`, shown);
    seen.before = await balances(payment.accepted).catch((e) => ({ error: e.shortMessage ?? e.message }));
  }
  const response = await fetch(request);
  if (response.status === 402 && !signature) {
    const header = response.headers.get('payment-required');
    seen.challenge = header ? unb64(header) : await response.clone().json().catch(() => null);
    const { extensions, ...shown } = seen.challenge ?? {};
    say(`1. ${request.method} ${request.url} -> 402 Payment Required; the requirements (PAYMENT-REQUIRED${extensions ? `; extensions ${Object.keys(extensions).join(', ')} not shown` : ''}):`, shown);
  }
  return response;
}

const client = new x402Client().register('eip155:*', new ExactEvmScheme(toClientEvmSigner(account)));
const pay = wrapFetchWithPayment(watchingFetch, client);

let response;
try {
  response = await pay(url, { method, headers, body: opts.data });
} catch (e) {
  console.error(`\nThe client did not pay: ${e.message}`);
  process.exit(1);
}
const body = await response.text();
if (!seen.challenge) say(`${method} ${url}: no 402 (not priced), nothing paid`);
say(`${seen.challenge ? '\n3. ' : ''}The response: ${response.status} ${response.statusText}`, body.length > 2000 ? `${body.slice(0, 2000)}… (${body.length} bytes)` : body);
const receipt = response.headers.get('payment-response');
if (receipt) say('   PAYMENT-RESPONSE', decodePaymentResponseHeader(receipt));
if (seen.requirements) {
  if (!rpc) say('\n4. Balances: give --rpc URL (or RPC_URL) to read them');
  else if (seen.before?.error) say(`\n4. Balances: could not read them from ${rpc}: ${seen.before.error}`);
  else {
    const client = createPublicClient({ transport: http(rpc) });
    decimals = Number(await client.readContract({ address: seen.requirements.asset, abi: erc20, functionName: 'decimals' }).catch(() => 6));
    let after = await balances(seen.requirements);
    // A settlement the response did not wait for shows up a moment later.
    for (let i = 0; i < 20 && receipt && after.payer === seen.before.payer; i++) {
      await new Promise((r) => setTimeout(r, 250));
      after = await balances(seen.requirements);
    }
    say(`\n4. Balances of ${seen.requirements.asset} on ${seen.requirements.network} (${rpc})`);
    for (const who of ['payer', 'payTo']) {
      const address = who === 'payer' ? account.address : seen.requirements.payTo;
      const [b, a] = [seen.before[who], after[who]];
      console.log(`    ${who.padEnd(5)} ${address}  ${units(b)} -> ${units(a)}  (${b} -> ${a} atomic, ${a - b >= 0n ? '+' : ''}${a - b})`);
    }
  }
}
process.exit(response.ok ? 0 : 1);
