//! EVM primitives for the x402 `exact` scheme: addresses (EIP-55), the known-network table,
//! EIP-712 hashing of the EIP-3009 `TransferWithAuthorization` message, and secp256k1 signer
//! recovery with k256.
//!
//! Sources: EIP-712 (typed structured data hashing), EIP-3009 (transfer with authorization),
//! EIP-55 (mixed-case checksum addresses), EIP-2 (low-s signatures), x402
//! `specs/schemes/exact/scheme_exact_evm.md`.

use std::fmt;

use k256::ecdsa::{RecoveryId, Signature, VerifyingKey};
use ruint::aliases::U256;
use sha3::{Digest, Keccak256};

/// Keccak-256 of `data` (the Ethereum hash, not NIST SHA3-256).
pub fn keccak256(data: &[u8]) -> [u8; 32] {
    Keccak256::digest(data).into()
}

/// A 20-byte EVM account or contract address.
///
/// Parsed from `0x` + 40 hex digits in any letter case (checksums are not enforced on input,
/// as in the reference facilitator, which compares addresses case-insensitively); displayed in
/// EIP-55 mixed-case checksum form.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Address(pub [u8; 20]);

impl Address {
    /// Parses `0x` followed by exactly 40 hex digits. Returns `None` for anything else.
    pub fn parse(s: &str) -> Option<Address> {
        let hex = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X"))?;
        let mut out = [0u8; 20];
        decode_hex_exact(hex, &mut out)?;
        Some(Address(out))
    }

    /// The EIP-55 checksummed `0x…` form.
    pub fn to_checksum(&self) -> String {
        let lower = hex_lower(&self.0);
        let hash = keccak256(lower.as_bytes());
        let mut out = String::with_capacity(42);
        out.push_str("0x");
        for (i, c) in lower.chars().enumerate() {
            let nibble = (hash[i / 2] >> (if i % 2 == 0 { 4 } else { 0 })) & 0x0f;
            if c.is_ascii_alphabetic() && nibble >= 8 {
                out.push(c.to_ascii_uppercase());
            } else {
                out.push(c);
            }
        }
        out
    }

    /// The address left-padded to a 32-byte ABI word.
    pub(crate) fn abi_word(&self) -> [u8; 32] {
        let mut w = [0u8; 32];
        w[12..].copy_from_slice(&self.0);
        w
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_checksum())
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_checksum())
    }
}

/// Lower-case hex without prefix.
pub fn hex_lower(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 0x0f) as usize] as char);
    }
    s
}

/// `0x`-prefixed lower-case hex.
pub fn hex_0x(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(2 + bytes.len() * 2);
    s.push_str("0x");
    s.push_str(&hex_lower(bytes));
    s
}

/// The value of one ASCII hex digit, either case.
pub(crate) fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Decodes hex (no prefix) into exactly `out.len()` bytes.
fn decode_hex_exact(hex: &str, out: &mut [u8]) -> Option<()> {
    let b = hex.as_bytes();
    if b.len() != out.len() * 2 {
        return None;
    }
    for (i, pair) in b.chunks_exact(2).enumerate() {
        out[i] = (hex_val(pair[0])? << 4) | hex_val(pair[1])?;
    }
    Some(())
}

/// Decodes `0x`-prefixed hex of even length at most `max_bytes` bytes.
pub fn decode_hex_0x(s: &str, max_bytes: usize) -> Option<Vec<u8>> {
    let hex = s.strip_prefix("0x")?;
    if hex.len() % 2 != 0 || hex.len() / 2 > max_bytes {
        return None;
    }
    let mut out = vec![0u8; hex.len() / 2];
    decode_hex_exact(hex, &mut out)?;
    Some(out)
}

/// Parses `0x` + 64 hex digits (a `bytes32`, e.g. an EIP-3009 `nonce`).
pub fn parse_bytes32(s: &str) -> Option<[u8; 32]> {
    let hex = s.strip_prefix("0x")?;
    let mut out = [0u8; 32];
    decode_hex_exact(hex, &mut out)?;
    Some(out)
}

/// Parses a `uint256` written as a decimal string of ASCII digits (no sign, no spaces, at most
/// 78 digits, no leading zeros except `"0"` itself). Values above 2^256-1 are rejected.
pub fn parse_uint256(s: &str) -> Option<U256> {
    let b = s.as_bytes();
    if b.is_empty() || b.len() > 78 || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if b.len() > 1 && b[0] == b'0' {
        return None;
    }
    U256::from_str_radix(s, 10).ok()
}

/// One network of the built-in table: its CAIP-2 id, x402 v1 name, chain id, and default USDC
/// deployment with the EIP-712 domain the token contract uses (`name()` / `version()`).
///
/// Source: x402 `DEFAULT_STABLECOINS` / legacy `config.ts`, x402-rs `networks.rs`, cross-checked
/// in our REFERENCE §5.5.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    /// CAIP-2 id, e.g. `eip155:84532`.
    pub caip2: &'static str,
    /// The x402 v1 network name (`base-sepolia`), for networks the legacy v1 clients know;
    /// `None` where v1 has no name for the chain.
    pub v1_name: Option<&'static str>,
    /// EIP-155 chain id.
    pub chain_id: u64,
    /// Default stablecoin (USDC) contract address.
    pub usdc: &'static str,
    /// EIP-712 domain `name` of that contract.
    pub usdc_name: &'static str,
    /// EIP-712 domain `version` of that contract.
    pub usdc_version: &'static str,
    /// Token decimals (atomic units per whole token = 10^decimals).
    pub usdc_decimals: u8,
}

/// The built-in networks (REFERENCE §5.5; EIP-3009 capable USDC only).
pub const NETWORKS: &[Network] = &[
    Network { caip2: "eip155:8453", v1_name: Some("base"), chain_id: 8453, usdc: "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913", usdc_name: "USD Coin", usdc_version: "2", usdc_decimals: 6 },
    Network { caip2: "eip155:84532", v1_name: Some("base-sepolia"), chain_id: 84532, usdc: "0x036CbD53842c5426634e7929541eC2318f3dCF7e", usdc_name: "USDC", usdc_version: "2", usdc_decimals: 6 },
    Network { caip2: "eip155:43114", v1_name: Some("avalanche"), chain_id: 43114, usdc: "0xB97EF9Ef8734C71904D8002F8b6Bc66Dd9c48a6E", usdc_name: "USD Coin", usdc_version: "2", usdc_decimals: 6 },
    Network { caip2: "eip155:43113", v1_name: Some("avalanche-fuji"), chain_id: 43113, usdc: "0x5425890298aed601595a70AB815c96711a31Bc65", usdc_name: "USD Coin", usdc_version: "2", usdc_decimals: 6 },
    Network { caip2: "eip155:137", v1_name: Some("polygon"), chain_id: 137, usdc: "0x3c499c542cEF5E3811e1192ce70d8cC03d5c3359", usdc_name: "USD Coin", usdc_version: "2", usdc_decimals: 6 },
    Network { caip2: "eip155:80002", v1_name: Some("polygon-amoy"), chain_id: 80002, usdc: "0x41E94Eb019C0762f9Bfcf9Fb1E58725BfB0e7582", usdc_name: "USDC", usdc_version: "2", usdc_decimals: 6 },
    Network { caip2: "eip155:42161", v1_name: None, chain_id: 42161, usdc: "0xaf88d065e77c8cC2239327C5EDb3A432268e5831", usdc_name: "USD Coin", usdc_version: "2", usdc_decimals: 6 },
    Network { caip2: "eip155:421614", v1_name: None, chain_id: 421614, usdc: "0x75faf114eafb1BDbe2F0316DF893fd58CE46AA4d", usdc_name: "USD Coin", usdc_version: "2", usdc_decimals: 6 },
    Network { caip2: "eip155:143", v1_name: None, chain_id: 143, usdc: "0x754704Bc059F8C67012fEd69BC8A327a5aafb603", usdc_name: "USDC", usdc_version: "2", usdc_decimals: 6 },
    Network { caip2: "eip155:1329", v1_name: Some("sei"), chain_id: 1329, usdc: "0xe15fc38f6d8c56af07bbcbe3baf5708a2bf42392", usdc_name: "USDC", usdc_version: "2", usdc_decimals: 6 },
    Network { caip2: "eip155:1328", v1_name: Some("sei-testnet"), chain_id: 1328, usdc: "0x4fcf1784b31630811181f670aea7a7bef803eaed", usdc_name: "USDC", usdc_version: "2", usdc_decimals: 6 },
    Network { caip2: "eip155:4689", v1_name: Some("iotex"), chain_id: 4689, usdc: "0xcdf79194c6c285077a58da47641d4dbe51f63542", usdc_name: "Bridged USDC", usdc_version: "2", usdc_decimals: 6 },
    Network { caip2: "eip155:3338", v1_name: Some("peaq"), chain_id: 3338, usdc: "0xbbA60da06c2c5424f03f7434542280FCAd453d10", usdc_name: "USDC", usdc_version: "2", usdc_decimals: 6 },
    Network { caip2: "eip155:2741", v1_name: Some("abstract"), chain_id: 2741, usdc: "0x84a71ccd554cc1b02749b35d22f684cc8ec987e1", usdc_name: "Bridged USDC", usdc_version: "2", usdc_decimals: 6 },
    Network { caip2: "eip155:11124", v1_name: Some("abstract-testnet"), chain_id: 11124, usdc: "0xe4C7fBB0a626ed208021ccabA6Be1566905E2dFc", usdc_name: "Bridged USDC", usdc_version: "2", usdc_decimals: 6 },
    Network { caip2: "eip155:50", v1_name: None, chain_id: 50, usdc: "0xfA2958CB79b0491CC627c1557F441eF849Ca8eb1", usdc_name: "USDC", usdc_version: "2", usdc_decimals: 6 },
    Network { caip2: "eip155:51", v1_name: None, chain_id: 51, usdc: "0xb5AB69F7bBada22B28e79C8FFAECe55eF1c771D4", usdc_name: "USDC", usdc_version: "2", usdc_decimals: 6 },
    Network { caip2: "eip155:42220", v1_name: None, chain_id: 42220, usdc: "0xcebA9300f2b948710d2653dD7B07f33A8B32118C", usdc_name: "USDC", usdc_version: "2", usdc_decimals: 6 },
    Network { caip2: "eip155:11142220", v1_name: None, chain_id: 11142220, usdc: "0x01C5C0122039549AD1493B8220cABEdD739BC44E", usdc_name: "USDC", usdc_version: "2", usdc_decimals: 6 },
    Network { caip2: "eip155:1440000", v1_name: None, chain_id: 1440000, usdc: "0xDaF4556169c4F3f2231d8ab7BC8772Ddb7D4c84C", usdc_name: "USDC", usdc_version: "1", usdc_decimals: 6 },
];

/// Looks a network up by CAIP-2 id (`eip155:84532`) or v1 name (`base-sepolia`).
pub fn network_by_id(id: &str) -> Option<&'static Network> {
    NETWORKS.iter().find(|n| n.caip2 == id || n.v1_name == Some(id))
}

/// Parses the chain id out of a CAIP-2 `eip155:<decimal>` id. Returns `None` for other namespaces.
pub fn caip2_chain_id(caip2: &str) -> Option<u64> {
    let digits = caip2.strip_prefix("eip155:")?;
    if digits.is_empty() || digits.len() > 19 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if digits.len() > 1 && digits.starts_with('0') {
        return None;
    }
    digits.parse().ok()
}

/// `keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)")`.
pub const EIP712_DOMAIN_TYPEHASH: [u8; 32] = hex32("8b73c3c69bb8fe3d512ecc4cf759cc79239f7b179b0ffacaa9a75d522b39400f");

/// `keccak256("TransferWithAuthorization(address from,address to,uint256 value,uint256 validAfter,uint256 validBefore,bytes32 nonce)")`
/// (EIP-3009; Circle `EIP3009.sol`).
pub const TRANSFER_WITH_AUTHORIZATION_TYPEHASH: [u8; 32] = hex32("7c7c6cdb67a18743f49ec6fa9b35f50d52ed05cbed4cc592e13b44501c1a2267");

const fn hex32(s: &str) -> [u8; 32] {
    hex_const::<32>(s)
}

/// `N` bytes from `2N` lower-case hex digits, for constants (evaluated at compile time; any other
/// input fails the build).
pub(crate) const fn hex_const<const N: usize>(s: &str) -> [u8; N] {
    let b = s.as_bytes();
    let mut out = [0u8; N];
    let mut i = 0;
    while i < N {
        out[i] = (nib(b[2 * i]) << 4) | nib(b[2 * i + 1]);
        i += 1;
    }
    out
}

const fn nib(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        _ => panic!("not lower-case hex"),
    }
}

/// An EIP-712 domain of the form `EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)`,
/// as used by EIP-3009 tokens. For x402 `exact`: `name`/`version` = `extra.name`/`extra.version`,
/// `chainId` from the CAIP-2 network, `verifyingContract` = `asset`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Eip712Domain {
    pub name: String,
    pub version: String,
    pub chain_id: u64,
    pub verifying_contract: Address,
}

impl Eip712Domain {
    /// `hashStruct(domain)` = keccak256(typehash ‖ keccak(name) ‖ keccak(version) ‖ chainId ‖ contract).
    pub fn separator(&self) -> [u8; 32] {
        let mut buf = [0u8; 160];
        buf[0..32].copy_from_slice(&EIP712_DOMAIN_TYPEHASH);
        buf[32..64].copy_from_slice(&keccak256(self.name.as_bytes()));
        buf[64..96].copy_from_slice(&keccak256(self.version.as_bytes()));
        buf[96..128].copy_from_slice(&U256::from(self.chain_id).to_be_bytes::<32>());
        buf[128..160].copy_from_slice(&self.verifying_contract.abi_word());
        keccak256(&buf)
    }
}

/// The EIP-3009 `TransferWithAuthorization` message, fields in type order. Amounts are atomic
/// units; `valid_after`/`valid_before` are Unix seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferWithAuthorization {
    pub from: Address,
    pub to: Address,
    pub value: U256,
    pub valid_after: U256,
    pub valid_before: U256,
    pub nonce: [u8; 32],
}

impl TransferWithAuthorization {
    /// `hashStruct(message)` = keccak256(abi.encode(TYPEHASH, from, to, value, validAfter, validBefore, nonce)).
    pub fn struct_hash(&self) -> [u8; 32] {
        let mut buf = [0u8; 224];
        buf[0..32].copy_from_slice(&TRANSFER_WITH_AUTHORIZATION_TYPEHASH);
        buf[32..64].copy_from_slice(&self.from.abi_word());
        buf[64..96].copy_from_slice(&self.to.abi_word());
        buf[96..128].copy_from_slice(&self.value.to_be_bytes::<32>());
        buf[128..160].copy_from_slice(&self.valid_after.to_be_bytes::<32>());
        buf[160..192].copy_from_slice(&self.valid_before.to_be_bytes::<32>());
        buf[192..224].copy_from_slice(&self.nonce);
        keccak256(&buf)
    }

    /// The EIP-712 signing digest `keccak256(0x19 0x01 ‖ domainSeparator ‖ structHash)`.
    pub fn digest(&self, domain_separator: &[u8; 32]) -> [u8; 32] {
        let mut buf = [0u8; 66];
        buf[0] = 0x19;
        buf[1] = 0x01;
        buf[2..34].copy_from_slice(domain_separator);
        buf[34..66].copy_from_slice(&self.struct_hash());
        keccak256(&buf)
    }
}

/// Why a 65-byte ECDSA signature could not be recovered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureError {
    /// Not 65 bytes `r ‖ s ‖ v` (smart-wallet signatures are longer and are not ours to check).
    NotEoaLength,
    /// `v` is not 27 or 28. The raw recovery ids 0 and 1 are refused too: USDC's
    /// `transferWithAuthorization` (FiatToken `ecrecover`) rejects them, so such a payment could
    /// never settle.
    BadV,
    /// `s` is in the upper half of the curve order (malleable; EIP-2 forbids it).
    HighS,
    /// `r`/`s` out of range, or no point recovers.
    Invalid,
}

/// Recovers the signer address of a 65-byte `r ‖ s ‖ v` signature over a 32-byte digest.
///
/// Accepts `v` ∈ {27, 28} only (what the token contract's `ecrecover` accepts); rejects high-s
/// signatures (EIP-2).
pub fn recover_signer(digest: &[u8; 32], signature: &[u8]) -> Result<Address, SignatureError> {
    if signature.len() != 65 {
        return Err(SignatureError::NotEoaLength);
    }
    let recid = match signature[64] {
        27 => 0u8,
        28 => 1u8,
        _ => return Err(SignatureError::BadV),
    };
    let sig = Signature::from_slice(&signature[..64]).map_err(|_| SignatureError::Invalid)?;
    if sig.normalize_s() != sig {
        return Err(SignatureError::HighS);
    }
    let recid = RecoveryId::from_byte(recid).ok_or(SignatureError::BadV)?;
    let key = VerifyingKey::recover_from_prehash(digest, &sig, recid).map_err(|_| SignatureError::Invalid)?;
    Ok(address_of(&key))
}

/// The Ethereum address of a public key: the last 20 bytes of keccak256(X ‖ Y).
pub fn address_of(key: &VerifyingKey) -> Address {
    let point = key.to_sec1_point(false);
    let bytes = point.as_bytes();
    let hash = keccak256(&bytes[1..]);
    let mut out = [0u8; 20];
    out.copy_from_slice(&hash[12..]);
    Address(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typehashes_are_the_keccak_of_their_type_strings() {
        assert_eq!(
            keccak256(b"EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"),
            EIP712_DOMAIN_TYPEHASH
        );
        assert_eq!(
            keccak256(b"TransferWithAuthorization(address from,address to,uint256 value,uint256 validAfter,uint256 validBefore,bytes32 nonce)"),
            TRANSFER_WITH_AUTHORIZATION_TYPEHASH
        );
    }

    #[test]
    fn eip55_checksums_match_the_eip_examples() {
        for s in [
            "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
            "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
            "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
            "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
        ] {
            let a = Address::parse(&s.to_ascii_lowercase()).unwrap();
            assert_eq!(a.to_checksum(), s);
        }
    }

    #[test]
    fn address_parsing_is_strict_about_length_and_digits() {
        assert!(Address::parse("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAe").is_none());
        assert!(Address::parse("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAedd").is_none());
        assert!(Address::parse("5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed").is_none());
        assert!(Address::parse("0xZaAeb6053F3E94C9b9A09f33669435E7Ef1BeAed").is_none());
    }

    #[test]
    fn uint256_parsing_bounds() {
        assert_eq!(parse_uint256("0"), Some(U256::ZERO));
        assert_eq!(parse_uint256("10000"), Some(U256::from(10000u64)));
        let max = "115792089237316195423570985008687907853269984665640564039457584007913129639935";
        assert_eq!(parse_uint256(max), Some(U256::MAX));
        assert_eq!(parse_uint256("115792089237316195423570985008687907853269984665640564039457584007913129639936"), None);
        for bad in ["", "-1", "+1", "01", "1.0", " 1", "1e3", "0x10"] {
            assert_eq!(parse_uint256(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn caip2_chain_ids() {
        assert_eq!(caip2_chain_id("eip155:84532"), Some(84532));
        assert_eq!(caip2_chain_id("eip155:"), None);
        assert_eq!(caip2_chain_id("eip155:01"), None);
        assert_eq!(caip2_chain_id("solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp"), None);
        assert_eq!(caip2_chain_id("eip155:99999999999999999999999"), None);
    }

    #[test]
    fn every_table_entry_is_well_formed() {
        for n in NETWORKS {
            assert_eq!(caip2_chain_id(n.caip2), Some(n.chain_id), "{}", n.caip2);
            let a = Address::parse(n.usdc).unwrap();
            let mixed = n.usdc[2..].bytes().any(|b| b.is_ascii_uppercase());
            if mixed {
                assert_eq!(a.to_checksum(), n.usdc, "a mixed-case table address has a valid EIP-55 checksum");
            }
            if let Some(v1) = n.v1_name {
                assert_eq!(network_by_id(v1), Some(n));
            }
            assert_eq!(network_by_id(n.caip2), Some(n));
        }
    }

    #[test]
    fn high_s_and_bad_v_are_rejected() {
        let digest = keccak256(b"x");
        let key = k256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap();
        let (sig, recid) = key.sign_prehash_recoverable(&digest);
        let sig = sig.normalize_s();
        let mut bytes = sig.to_bytes().to_vec();
        // normalize_s may flip the parity; recompute the id by trying both.
        let mut ok = None;
        for v in [27u8, 28] {
            let mut b = bytes.clone();
            b.push(v);
            if recover_signer(&digest, &b) == Ok(address_of(key.verifying_key())) {
                ok = Some(v);
            }
        }
        let v = ok.expect("one of v=27/28 recovers the signer");
        let _ = recid;
        bytes.push(v);
        assert_eq!(recover_signer(&digest, &bytes), Ok(address_of(key.verifying_key())));

        for v in [0u8, 1, 29, 255] {
            let mut bad_v = bytes.clone();
            bad_v[64] = v;
            assert_eq!(recover_signer(&digest, &bad_v), Err(SignatureError::BadV), "v = {v}");
        }

        // s' = n - s is the malleable twin.
        let (r, s) = sig.split_scalars();
        let high = Signature::from_scalars(r.to_bytes(), (-*s).to_bytes()).unwrap();
        let mut high_bytes = high.to_bytes().to_vec();
        high_bytes.push(if v == 27 { 28 } else { 27 });
        assert_eq!(recover_signer(&digest, &high_bytes), Err(SignatureError::HighS));

        assert_eq!(recover_signer(&digest, &bytes[..64]), Err(SignatureError::NotEoaLength));
    }
}
