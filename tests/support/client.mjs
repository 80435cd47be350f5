// The official x402 v2 client (@x402/fetch) with an anvil account, as an agent would set it up.
import { privateKeyToAccount } from 'viem/accounts';
import { wrapFetchWithPayment, x402Client, decodePaymentResponseHeader } from '@x402/fetch';
import { ExactEvmScheme } from '@x402/evm/exact/client';
import { toClientEvmSigner } from '@x402/evm';

export { decodePaymentResponseHeader };

/** A fetch that answers 402 challenges by paying with `privateKey`. */
export function payingFetch(privateKey) {
  const account = privateKeyToAccount(privateKey);
  const client = new x402Client().register('eip155:*', new ExactEvmScheme(toClientEvmSigner(account)));
  return wrapFetchWithPayment(fetch, client);
}
