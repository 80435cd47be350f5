// The official x402 clients with an anvil account, as an agent would set them up: v2
// (@x402/fetch) and the legacy v1 client (x402-fetch 1.2.0).
import { createWalletClient, http as viemHttp } from 'viem';
import { privateKeyToAccount } from 'viem/accounts';
import { wrapFetchWithPayment, x402Client, decodePaymentResponseHeader } from '@x402/fetch';
import { ExactEvmScheme } from '@x402/evm/exact/client';
import { UptoEvmScheme } from '@x402/evm/upto/client';
import { toClientEvmSigner } from '@x402/evm';
import { wrapFetchWithPayment as wrapFetchV1, decodeXPaymentResponse } from 'x402-fetch';

import { NETWORK, chainFor } from './stack.mjs';

export { decodePaymentResponseHeader, decodeXPaymentResponse };

/** A fetch that pays with the legacy v1 client (reads the 402 body, sends X-PAYMENT). */
export function payingFetchV1(privateKey, rpcUrl) {
  const wallet = createWalletClient({ account: privateKeyToAccount(privateKey), chain: chainFor(rpcUrl), transport: viemHttp(rpcUrl) });
  return wrapFetchV1(fetch, wallet);
}

/**
 * A fetch that answers 402 challenges by paying with `privateKey`: the `exact` scheme, and with
 * `upto: true` also the `upto` scheme (Permit2; the payer needs a Permit2 allowance, see
 * stack.mjs `approvePermit2`).
 */
export function payingFetch(privateKey, { upto = false } = {}) {
  const signer = toClientEvmSigner(privateKeyToAccount(privateKey));
  // Registered for the local chain's network only, so it never picks an offer on a chain the
  // local stack does not run.
  const client = new x402Client().register(NETWORK, new ExactEvmScheme(signer));
  if (upto) client.register(NETWORK, new UptoEvmScheme(signer));
  return wrapFetchWithPayment(fetch, client);
}
