// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.20;

/// The part of Uniswap's Permit2 that the x402 `upto` scheme uses, written for this project's
/// local test chain (not a copy of Permit2's source or bytecode). It follows Permit2's published
/// SignatureTransfer interface and documented behaviour:
/// - EIP-712 domain {name "Permit2", chainId, verifyingContract} (no version), computed from
///   block.chainid and address(this) on each use, so the runtime code works wherever
///   anvil_setCode puts it (the tests put it at the canonical 0x000000000022D473030F116dDEE9F6B43aC78BA3);
/// - unordered nonces: bit (nonce & 0xff) of the word nonceBitmap[owner][nonce >> 8], set once
///   (reusing one reverts InvalidNonce()); `invalidateUnorderedNonces(wordPos, mask)` sets bits
///   for the caller and emits UnorderedNonceInvalidation;
/// - `permitWitnessTransferFrom`: deadline (SignatureExpired(deadline) once block.timestamp >
///   deadline), requestedAmount <= permitted.amount (InvalidAmount(permitted.amount)), the nonce,
///   then the owner's signature over the digest of
///   `PermitWitnessTransferFrom(TokenPermissions permitted,address spender,uint256 nonce,uint256 deadline,<witnessTypeString>`
///   with spender = msg.sender and the caller's witness hash, then ERC-20 transferFrom(owner, to,
///   requestedAmount) with Permit2's own allowance from the owner;
/// - signatures: for an owner without code, 65-byte (r, s, v) or 64-byte EIP-2098 (r, vs) ECDSA
///   (InvalidSignatureLength(), InvalidSignature() when nothing recovers, InvalidSigner() when
///   another address does); for a contract owner, ERC-1271 isValidSignature (InvalidContractSignature()).
/// The error names and shapes are Permit2's, since the x402 facilitator maps reverts by name.
/// Nothing else of Permit2 (AllowanceTransfer, batch transfers, permitTransferFrom without witness)
/// is here: no x402 code calls it.
contract Permit2 {
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

    bytes32 private constant DOMAIN_TYPEHASH = keccak256("EIP712Domain(string name,uint256 chainId,address verifyingContract)");
    bytes32 private constant NAME_HASH = keccak256("Permit2");
    bytes32 private constant TOKEN_PERMISSIONS_TYPEHASH = keccak256("TokenPermissions(address token,uint256 amount)");
    /// The primary type's encoding up to its witness member; the caller's witnessTypeString
    /// completes it (the witness member, ")" and the referenced struct types in EIP-712 order).
    string private constant WITNESS_TRANSFER_TYPE_PREFIX =
        "PermitWitnessTransferFrom(TokenPermissions permitted,address spender,uint256 nonce,uint256 deadline,";
    bytes4 private constant ERC1271_MAGIC = 0x1626ba7e;

    /// owner => word position (nonce >> 8) => the word's used-nonce bits.
    mapping(address => mapping(uint256 => uint256)) public nonceBitmap;

    event UnorderedNonceInvalidation(address indexed owner, uint256 word, uint256 mask);

    error SignatureExpired(uint256 signatureDeadline);
    error InvalidAmount(uint256 maxAmount);
    error InvalidNonce();
    error InvalidSignatureLength();
    error InvalidSignature();
    error InvalidSigner();
    error InvalidContractSignature();

    /// The EIP-712 domain separator for this chain and this contract's address.
    function DOMAIN_SEPARATOR() public view returns (bytes32) {
        return keccak256(abi.encode(DOMAIN_TYPEHASH, NAME_HASH, block.chainid, address(this)));
    }

    /// Marks the nonces of `mask`'s set bits in word `wordPos` as used for the caller.
    function invalidateUnorderedNonces(uint256 wordPos, uint256 mask) external {
        nonceBitmap[msg.sender][wordPos] |= mask;
        emit UnorderedNonceInvalidation(msg.sender, wordPos, mask);
    }

    /// Moves `transferDetails.requestedAmount` (atomic units, at most `permit.permitted.amount`) of
    /// `permit.permitted.token` from `owner` to `transferDetails.to`, as `owner` signed for the
    /// caller (the spender) with `witness` (the EIP-712 hash of the caller's witness struct, whose
    /// type `witnessTypeString` completes).
    function permitWitnessTransferFrom(
        PermitTransferFrom calldata permit,
        SignatureTransferDetails calldata transferDetails,
        address owner,
        bytes32 witness,
        string calldata witnessTypeString,
        bytes calldata signature
    ) external {
        if (block.timestamp > permit.deadline) revert SignatureExpired(permit.deadline);
        if (transferDetails.requestedAmount > permit.permitted.amount) revert InvalidAmount(permit.permitted.amount);
        useNonce(owner, permit.nonce);

        bytes32 typeHash = keccak256(abi.encodePacked(WITNESS_TRANSFER_TYPE_PREFIX, witnessTypeString));
        bytes32 permittedHash = keccak256(abi.encode(TOKEN_PERMISSIONS_TYPEHASH, permit.permitted.token, permit.permitted.amount));
        bytes32 structHash = keccak256(abi.encode(typeHash, permittedHash, msg.sender, permit.nonce, permit.deadline, witness));
        bytes32 digest = keccak256(abi.encodePacked("\x19\x01", DOMAIN_SEPARATOR(), structHash));
        checkSignature(owner, digest, signature);

        pullFrom(permit.permitted.token, owner, transferDetails.to, transferDetails.requestedAmount);
    }

    function useNonce(address owner, uint256 nonce) private {
        uint256 bit = 1 << (nonce & 0xff);
        uint256 word = nonceBitmap[owner][nonce >> 8];
        if (word & bit != 0) revert InvalidNonce();
        nonceBitmap[owner][nonce >> 8] = word | bit;
    }

    function checkSignature(address owner, bytes32 digest, bytes calldata signature) private view {
        if (owner.code.length > 0) {
            (bool ok, bytes memory ret) = owner.staticcall(abi.encodeWithSelector(ERC1271_MAGIC, digest, signature));
            if (!ok || ret.length < 32 || abi.decode(ret, (bytes4)) != ERC1271_MAGIC) revert InvalidContractSignature();
            return;
        }
        bytes32 r;
        bytes32 s;
        uint8 v;
        if (signature.length == 65) {
            r = bytes32(signature[0:32]);
            s = bytes32(signature[32:64]);
            v = uint8(signature[64]);
        } else if (signature.length == 64) {
            // EIP-2098: the top bit of the second word is v - 27.
            bytes32 vs = bytes32(signature[32:64]);
            r = bytes32(signature[0:32]);
            s = vs & bytes32(0x7fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff);
            v = uint8(uint256(vs >> 255)) + 27;
        } else {
            revert InvalidSignatureLength();
        }
        address signer = ecrecover(digest, v, r, s);
        if (signer == address(0)) revert InvalidSignature();
        if (signer != owner) revert InvalidSigner();
    }

    /// ERC-20 transferFrom that accepts tokens returning nothing and fails on false, a revert, or
    /// a token without code.
    function pullFrom(address token, address from, address to, uint256 amount) private {
        (bool ok, bytes memory ret) = token.call(abi.encodeWithSelector(0x23b872dd, from, to, amount));
        if (!ok || token.code.length == 0 || (ret.length > 0 && (ret.length < 32 || !abi.decode(ret, (bool))))) {
            revert("TRANSFER_FROM_FAILED");
        }
    }
}
