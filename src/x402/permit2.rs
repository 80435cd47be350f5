//! EIP-712 hashing of the Permit2 `permitWitnessTransferFrom` message an x402 `upto` payment signs.
//!
//! Sources: x402 `specs/schemes/upto/scheme_upto_evm.md`; the official `@x402/evm` constants
//! (`uptoPermit2WitnessTypes`, `PERMIT2_ADDRESS`, `x402UptoPermit2ProxyAddress`); Uniswap Permit2
//! `PermitHash.sol` (`_hashWithWitness`) and `EIP712.sol` (a domain without `version`); EIP-712.
//! The type strings below are what the official client signs (types after the primary type in
//! alphabetical order, as EIP-712 `encodeType` requires).

use ruint::aliases::U256;

use crate::evm::{hex_const, keccak256, Address};

/// The canonical Permit2 contract (same address on every chain), the domain's `verifyingContract`.
pub const PERMIT2_ADDRESS: Address = Address(hex_const::<20>("000000000022d473030f116ddee9f6b43ac78ba3"));

/// The x402 `upto` Permit2 proxy (`x402UptoPermit2Proxy`, CREATE2, same address on every chain):
/// the only `spender` an `upto` payment may name.
pub const UPTO_PROXY_ADDRESS: Address = Address(hex_const::<20>("4020a4f3b7b90cca423b9fabcc0ce57c6c240002"));

/// Permit2's EIP-712 domain type: `name` and `chainId` and `verifyingContract`, no `version`.
pub const PERMIT2_DOMAIN_TYPE: &str = "EIP712Domain(string name,uint256 chainId,address verifyingContract)";

/// `TokenPermissions(address token,uint256 amount)`.
pub const TOKEN_PERMISSIONS_TYPE: &str = "TokenPermissions(address token,uint256 amount)";

/// The `upto` witness type: `Witness(address to,address facilitator,uint256 validAfter)`.
pub const UPTO_WITNESS_TYPE: &str = "Witness(address to,address facilitator,uint256 validAfter)";

/// The full `encodeType` of the primary type with the `upto` witness (primary type, then the
/// referenced types sorted by name).
pub const UPTO_PERMIT_WITNESS_TRANSFER_FROM_TYPE: &str = "PermitWitnessTransferFrom(TokenPermissions permitted,address spender,uint256 nonce,uint256 deadline,Witness witness)TokenPermissions(address token,uint256 amount)Witness(address to,address facilitator,uint256 validAfter)";

/// keccak256 of the type strings above and of the name "Permit2": constants, so a verification
/// hashes only what varies (checked in the tests).
const PERMIT2_DOMAIN_TYPEHASH: [u8; 32] = hex_const::<32>("8cad95687ba82c2ce50e74f7b754645e5117c3a5bec8151c0726d5857980a866");
const PERMIT2_NAME_HASH: [u8; 32] = hex_const::<32>("9ac997416e8ff9d2ff6bebeb7149f65cdae5e32e2b90440b566bb3044041d36a");
const TOKEN_PERMISSIONS_TYPEHASH: [u8; 32] = hex_const::<32>("618358ac3db8dc274f0cd8829da7e234bd48cd73c4a740aede1adec9846d06a1");
const UPTO_WITNESS_TYPEHASH: [u8; 32] = hex_const::<32>("d4171c445a74218b01d4fd8af34ff1106580ea1e36ff837e64484bfaa2253b75");
const UPTO_PERMIT_WITNESS_TRANSFER_FROM_TYPEHASH: [u8; 32] = hex_const::<32>("51dff6974ad4388c499e7fcfe838d2bd767162553a144098ce20ea661d70c2ee");


/// The Permit2 domain separator on `chain_id`:
/// `keccak256(typehash ‖ keccak("Permit2") ‖ chainId ‖ PERMIT2_ADDRESS)`.
pub fn permit2_domain_separator(chain_id: u64) -> [u8; 32] {
    let mut buf = [0u8; 128];
    buf[0..32].copy_from_slice(&PERMIT2_DOMAIN_TYPEHASH);
    buf[32..64].copy_from_slice(&PERMIT2_NAME_HASH);
    buf[64..96].copy_from_slice(&U256::from(chain_id).to_be_bytes::<32>());
    buf[96..128].copy_from_slice(&PERMIT2_ADDRESS.abi_word());
    keccak256(&buf)
}

/// The message of an `upto` payment: Permit2 `PermitWitnessTransferFrom` with the `upto`
/// witness. `amount` is the maximum, in atomic units of `token`; `nonce` is Permit2's uint256
/// (unordered, bitmap) nonce; `deadline` and `valid_after` are Unix seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UptoPermitWitnessTransferFrom {
    pub token: Address,
    pub amount: U256,
    pub spender: Address,
    pub nonce: U256,
    pub deadline: U256,
    /// `witness.to`: the recipient (`payTo`).
    pub to: Address,
    /// `witness.facilitator`: the only address the proxy lets settle it.
    pub facilitator: Address,
    pub valid_after: U256,
}

impl UptoPermitWitnessTransferFrom {
    /// `hashStruct(message)` = keccak256(typehash ‖ hashStruct(permitted) ‖ spender ‖ nonce ‖
    /// deadline ‖ hashStruct(witness)).
    pub fn struct_hash(&self) -> [u8; 32] {
        let mut permitted = [0u8; 96];
        permitted[0..32].copy_from_slice(&TOKEN_PERMISSIONS_TYPEHASH);
        permitted[32..64].copy_from_slice(&self.token.abi_word());
        permitted[64..96].copy_from_slice(&self.amount.to_be_bytes::<32>());
        let mut witness = [0u8; 128];
        witness[0..32].copy_from_slice(&UPTO_WITNESS_TYPEHASH);
        witness[32..64].copy_from_slice(&self.to.abi_word());
        witness[64..96].copy_from_slice(&self.facilitator.abi_word());
        witness[96..128].copy_from_slice(&self.valid_after.to_be_bytes::<32>());
        let mut buf = [0u8; 192];
        buf[0..32].copy_from_slice(&UPTO_PERMIT_WITNESS_TRANSFER_FROM_TYPEHASH);
        buf[32..64].copy_from_slice(&keccak256(&permitted));
        buf[64..96].copy_from_slice(&self.spender.abi_word());
        buf[96..128].copy_from_slice(&self.nonce.to_be_bytes::<32>());
        buf[128..160].copy_from_slice(&self.deadline.to_be_bytes::<32>());
        buf[160..192].copy_from_slice(&keccak256(&witness));
        keccak256(&buf)
    }

    /// The EIP-712 signing digest on `chain_id`: `keccak256(0x19 0x01 ‖ Permit2 domain ‖ structHash)`.
    pub fn digest(&self, chain_id: u64) -> [u8; 32] {
        let mut buf = [0u8; 66];
        buf[0] = 0x19;
        buf[1] = 0x01;
        buf[2..34].copy_from_slice(&permit2_domain_separator(chain_id));
        buf[34..66].copy_from_slice(&self.struct_hash());
        keccak256(&buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_precomputed_hashes_are_the_keccak_of_their_strings() {
        assert_eq!(PERMIT2_DOMAIN_TYPEHASH, keccak256(PERMIT2_DOMAIN_TYPE.as_bytes()));
        assert_eq!(PERMIT2_NAME_HASH, keccak256(b"Permit2"));
        assert_eq!(TOKEN_PERMISSIONS_TYPEHASH, keccak256(TOKEN_PERMISSIONS_TYPE.as_bytes()));
        assert_eq!(UPTO_WITNESS_TYPEHASH, keccak256(UPTO_WITNESS_TYPE.as_bytes()));
        assert_eq!(UPTO_PERMIT_WITNESS_TRANSFER_FROM_TYPEHASH, keccak256(UPTO_PERMIT_WITNESS_TRANSFER_FROM_TYPE.as_bytes()));
    }

    #[test]
    fn the_constant_addresses_are_the_official_ones() {
        assert_eq!(PERMIT2_ADDRESS.to_checksum(), "0x000000000022D473030F116dDEE9F6B43aC78BA3");
        assert_eq!(UPTO_PROXY_ADDRESS.to_checksum(), "0x4020A4f3b7b90ccA423B9fabCc0CE57C6C240002");
    }

    #[test]
    fn the_full_type_is_the_primary_type_then_its_references_by_name() {
        assert_eq!(
            UPTO_PERMIT_WITNESS_TRANSFER_FROM_TYPE,
            format!("PermitWitnessTransferFrom(TokenPermissions permitted,address spender,uint256 nonce,uint256 deadline,Witness witness){TOKEN_PERMISSIONS_TYPE}{UPTO_WITNESS_TYPE}")
        );
    }
}
