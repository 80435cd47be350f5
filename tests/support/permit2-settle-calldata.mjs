// Prints the fixed vectors `src/evidence/permit2.rs` pins for the x402 `upto` proxy's calldata and the
// Permit2 `nonceBitmap` call, encoded by viem from the contract ABI
// (tests/support/contracts/x402/x402UptoPermit2Proxy.sol). Run: node tests/support/permit2-settle-calldata.mjs
import { encodeFunctionData, parseAbi, toFunctionSelector } from 'viem';

const abi = parseAbi([
  'struct TokenPermissions { address token; uint256 amount; }',
  'struct PermitTransferFrom { TokenPermissions permitted; uint256 nonce; uint256 deadline; }',
  'struct Witness { address to; address facilitator; uint256 validAfter; }',
  'struct EIP2612Permit { uint256 value; uint256 deadline; bytes32 r; bytes32 s; uint8 v; }',
  'function settle(PermitTransferFrom permit, uint256 amount, address owner, Witness witness, bytes signature)',
  'function settleWithPermit(EIP2612Permit permit2612, PermitTransferFrom permit, uint256 amount, address owner, Witness witness, bytes signature)',
  'function nonceBitmap(address owner, uint256 wordPos) view returns (uint256)',
]);
const permit = { permitted: { token: '0x1111111111111111111111111111111111111111', amount: 500000n }, nonce: 0x1234567890abcdefn * 2n ** 192n + 0x2a5n, deadline: 1800000120n };
const witness = { to: '0x3333333333333333333333333333333333333333', facilitator: '0x90F79bf6EB2c4f870365E785982E1f101E93b906', validAfter: 1799999400n };
const owner = '0x2222222222222222222222222222222222222222';
const signature = `0x${'ab'.repeat(65)}`;
console.log('settle selector', toFunctionSelector(abi.find((f) => f.name === 'settle')));
console.log('settleWithPermit selector', toFunctionSelector(abi.find((f) => f.name === 'settleWithPermit')));
console.log('nonce', `0x${permit.nonce.toString(16)}`);
console.log('settle', encodeFunctionData({ abi, functionName: 'settle', args: [permit, 321n, owner, witness, signature] }));
const p2612 = { value: 500000n, deadline: 1800000120n, r: `0x${'cd'.repeat(32)}`, s: `0x${'ef'.repeat(32)}`, v: 27 };
console.log('settleWithPermit', encodeFunctionData({ abi, functionName: 'settleWithPermit', args: [p2612, permit, 321n, owner, witness, signature] }));
console.log('nonceBitmap', encodeFunctionData({ abi, functionName: 'nonceBitmap', args: [owner, permit.nonce >> 8n] }));
