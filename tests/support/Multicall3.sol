// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.20;

/// The one Multicall3 function the x402 EVM facilitator (npm package x402/evm) calls: its
/// `multicall` helper sends `tryAggregate(false, calls)` as an eth_call to
/// 0xcA11bde05977b3631167028862bE2a173976CA11 to explain a failed EIP-3009 / Permit2 simulation.
/// Standard Multicall3 ABI for it (selector 0xbce38bd7):
///   tryAggregate(bool requireSuccess, (address target, bytes callData)[] calls)
///     payable returns ((bool success, bytes returnData)[] returnData)
/// Each call is a plain CALL (not STATICCALL), so a state-changing call (e.g. an EIP-6492 factory
/// deployment) is visible to the calls after it within the same eth_call. No storage and no
/// immutables, so the runtime code can be copied anywhere with anvil_setCode.
contract Multicall3 {
    struct Call {
        address target;
        bytes callData;
    }

    struct Result {
        bool success;
        bytes returnData;
    }

    function tryAggregate(bool requireSuccess, Call[] calldata calls) external payable returns (Result[] memory returnData) {
        uint256 count = calls.length;
        returnData = new Result[](count);
        for (uint256 i = 0; i < count; ++i) {
            (bool ok, bytes memory data) = calls[i].target.call(calls[i].callData);
            if (requireSuccess && !ok) revert("Multicall3: call failed");
            returnData[i] = Result(ok, data);
        }
    }
}
