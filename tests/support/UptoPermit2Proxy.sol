// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.20;

/// The x402 `upto` Permit2 proxy for this project's local test chain, written for these tests
/// (not a copy of the published x402UptoPermit2Proxy source). It has the external interface the
/// official x402 EVM package (2.27) calls and decodes (its `x402UptoPermit2ProxyABI`: functions,
/// events, error names) and the behaviour the x402 `upto` EVM scheme specification describes:
/// - the payer signs a Permit2 `PermitWitnessTransferFrom` with this contract as spender, the
///   permitted amount as the maximum, and the witness `Witness(address to,address facilitator,uint256 validAfter)`;
/// - `settle(permit, amount, owner, witness, signature)` is for the facilitator the witness names
///   only (UnauthorizedFacilitator()), not before witness.validAfter (PaymentTooEarly()), for at
///   most the permitted amount (AmountExceedsPermitted()), to a non-zero recipient
///   (InvalidDestination()) from a non-zero owner (InvalidOwner()); it moves `amount` to
///   witness.to through Permit2's permitWitnessTransferFrom (which checks the deadline, the nonce
///   and the signature) and emits Settled();
/// - `settleWithPermit(permit2612, ...)` first submits the payer's EIP-2612 permit giving Permit2
///   an allowance of exactly the permitted amount (Permit2612AmountMismatch() otherwise; a failing
///   permit call is ignored, so a permit already used by someone else does not block the payment),
///   then settles as above and emits SettledWithPermit();
/// - one call at a time (ReentrancyGuardReentrantCall()).
/// Permit2 is a constant (its canonical address), not an immutable: no constructor runs when the
/// tests place the runtime code with anvil_setCode at the canonical 0x4020A4f3b7b90ccA423B9fabCc0CE57C6C240002.
/// The reentrancy flag's idle value is zero, so no storage has to be seeded either.

/// The Permit2 entry point this proxy calls (Permit2's SignatureTransfer interface).
interface ISignatureTransferWitness {
    struct TokenPermissions {
        address token;
        uint256 amount;
    }

    struct PermitTransferFrom {
        TokenPermissions permitted;
        uint256 nonce;
        uint256 deadline;
    }

    struct SignatureTransferDetails {
        address to;
        uint256 requestedAmount;
    }

    function permitWitnessTransferFrom(
        PermitTransferFrom calldata permit,
        SignatureTransferDetails calldata transferDetails,
        address owner,
        bytes32 witness,
        string calldata witnessTypeString,
        bytes calldata signature
    ) external;
}

/// EIP-2612's permit.
interface IEip2612 {
    function permit(address owner, address spender, uint256 value, uint256 deadline, uint8 v, bytes32 r, bytes32 s) external;
}

contract UptoPermit2Proxy {
    /// What the payer binds into the Permit2 signature.
    struct Witness {
        address to;
        address facilitator;
        uint256 validAfter;
    }

    /// An EIP-2612 permit (owner = the payer, spender = Permit2) signed by the payer.
    struct EIP2612Permit {
        uint256 value;
        uint256 deadline;
        bytes32 r;
        bytes32 s;
        uint8 v;
    }

    /// Permit2's canonical address (the same on every EVM chain).
    ISignatureTransferWitness public constant PERMIT2 = ISignatureTransferWitness(0x000000000022D473030F116dDEE9F6B43aC78BA3);

    /// EIP-712 type hash of the witness struct.
    bytes32 public constant WITNESS_TYPEHASH = keccak256("Witness(address to,address facilitator,uint256 validAfter)");

    /// What completes Permit2's `PermitWitnessTransferFrom(...,` type: the witness member and the
    /// referenced struct types in EIP-712 (alphabetical) order.
    string public constant WITNESS_TYPE_STRING =
        "Witness witness)TokenPermissions(address token,uint256 amount)Witness(address to,address facilitator,uint256 validAfter)";

    uint256 private entered;

    event Settled();
    event SettledWithPermit();

    error AmountExceedsPermitted();
    error InvalidDestination();
    error InvalidOwner();
    error PaymentTooEarly();
    error Permit2612AmountMismatch();
    error ReentrancyGuardReentrantCall();
    error UnauthorizedFacilitator();

    modifier oneAtATime() {
        if (entered != 0) revert ReentrancyGuardReentrantCall();
        entered = 1;
        _;
        entered = 0;
    }

    /// Moves `amount` (atomic units, at most permit.permitted.amount) from `owner` to witness.to.
    function settle(
        ISignatureTransferWitness.PermitTransferFrom calldata permit,
        uint256 amount,
        address owner,
        Witness calldata witness,
        bytes calldata signature
    ) external oneAtATime {
        transfer(permit, amount, owner, witness, signature);
        emit Settled();
    }

    /// Submits the payer's EIP-2612 permit for Permit2 (value must equal permit.permitted.amount),
    /// then settles as {settle}.
    function settleWithPermit(
        EIP2612Permit calldata permit2612,
        ISignatureTransferWitness.PermitTransferFrom calldata permit,
        uint256 amount,
        address owner,
        Witness calldata witness,
        bytes calldata signature
    ) external oneAtATime {
        if (permit2612.value != permit.permitted.amount) revert Permit2612AmountMismatch();
        try IEip2612(permit.permitted.token).permit(
            owner, address(PERMIT2), permit2612.value, permit2612.deadline, permit2612.v, permit2612.r, permit2612.s
        ) {} catch {}
        transfer(permit, amount, owner, witness, signature);
        emit SettledWithPermit();
    }

    function transfer(
        ISignatureTransferWitness.PermitTransferFrom calldata permit,
        uint256 amount,
        address owner,
        Witness calldata witness,
        bytes calldata signature
    ) private {
        if (msg.sender != witness.facilitator) revert UnauthorizedFacilitator();
        if (owner == address(0)) revert InvalidOwner();
        if (witness.to == address(0)) revert InvalidDestination();
        if (block.timestamp < witness.validAfter) revert PaymentTooEarly();
        if (amount > permit.permitted.amount) revert AmountExceedsPermitted();

        bytes32 witnessHash = keccak256(abi.encode(WITNESS_TYPEHASH, witness.to, witness.facilitator, witness.validAfter));
        PERMIT2.permitWitnessTransferFrom(
            permit,
            ISignatureTransferWitness.SignatureTransferDetails({to: witness.to, requestedAmount: amount}),
            owner,
            witnessHash,
            WITNESS_TYPE_STRING,
            signature
        );
    }
}
