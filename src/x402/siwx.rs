//! x402 `sign-in-with-x` (spec `specs/extensions/sign-in-with-x.md`, CAIP-122) for EVM wallets:
//! a payer who lost a pass token signs an EIP-4361 (SIWE) message with the wallet that paid, and
//! is let in while that address holds a live pass for the scope.
//!
//! - The 402 of a route that sells a pass advertises the extension ([`declare`]): `info`
//!   (`domain` and `uri` from `PUBLIC_URL`, never from request headers; a server-issued 32-hex
//!   `nonce` ([`issue_nonce`]); `issuedAt`; `expirationTime` 5 minutes later; a statement;
//!   `resources`), the route's EVM networks as `supportedChains` (`eip191`), and the JSON Schema.
//! - The client answers with the `SIGN-IN-WITH-X` header: base64 JSON of those fields plus
//!   `address` and `signature` ([`decode`], at most [`MAX_HEADER_BYTES`]).
//! - [`verify`] checks the proof against its [`Binding`]: `domain` and the full `uri` (the
//!   `PUBLIC_URL` resource of this request), `version` 1, a `chainId` among the route's networks
//!   and `eip191` type, a nonce this deployment issued for that `uri` less than
//!   [`MAX_AGE_SECONDS`] ago ([`check_nonce`]), `issuedAt` within [`MAX_AGE_SECONDS`] and not in
//!   the future, `expirationTime` / `notBefore`; rebuilds the EIP-4361 message exactly as the
//!   official client does ([`message`]), hashes it per EIP-191 and recovers the signer with k256.
//!   Smart-wallet (EIP-1271 / ERC-6492) signatures are refused with a reason: checking them needs
//!   the chain.
//! - Single use of the nonce is the payer's ledger shard's job (`ledger::SignIn`), for as long as the
//!   nonce is valid.

use std::time::{Duration, UNIX_EPOCH};

use serde::Deserialize;
use serde_json::{json, Value};

use crate::evm::{decode_hex_0x, keccak256, recover_signer, Address, SignatureError};

/// Request header carrying the proof, and the extension's key in `PaymentRequired.extensions`.
pub const SIGN_IN_WITH_X: &str = "sign-in-with-x";
/// Largest accepted header, bytes of base64.
pub const MAX_HEADER_BYTES: usize = 8 * 1024;
/// How old `issuedAt` may be, seconds (the spec's default: 5 minutes).
pub const MAX_AGE_SECONDS: u64 = 300;
/// The statement the paywall asks wallets to sign.
pub const STATEMENT: &str = "Sign in with the wallet that bought a pass to use it again.";

/// Hex characters of an issued nonce (the spec's 32).
pub const NONCE_HEX_LEN: usize = 32;
/// Seconds an issued nonce may lie in the future (clocks of two locations).
pub const NONCE_CLOCK_SKEW_SECONDS: u64 = 5;

/// The per-deployment key of the nonce MAC (`SIGN_IN_SECRET`). Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct NonceKey(Vec<u8>);

impl NonceKey {
    /// The key for a configured secret (its UTF-8 bytes).
    pub fn new(secret: &str) -> NonceKey {
        NonceKey(secret.as_bytes().to_vec())
    }
}

impl std::fmt::Debug for NonceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NonceKey(…)")
    }
}

/// The first 8 bytes of Keccak-256 over a domain tag, the key (length-prefixed) and the nonce's
/// fields. Keccak is not open to length extension, so a keyed prefix makes it a MAC (the
/// construction KMAC builds on).
fn nonce_mac(key: &NonceKey, issued: [u8; 4], random: [u8; 4], uri: &str) -> [u8; 8] {
    let mut data = Vec::with_capacity(48 + key.0.len() + uri.len());
    data.extend_from_slice(b"x402-edge-paywall sign-in nonce v1\0");
    data.extend_from_slice(&(key.0.len() as u64).to_be_bytes());
    data.extend_from_slice(&key.0);
    data.extend_from_slice(&issued);
    data.extend_from_slice(&random);
    data.extend_from_slice(uri.as_bytes());
    let h = keccak256(&data);
    let mut mac = [0u8; 8];
    mac.copy_from_slice(&h[..8]);
    mac
}

/// A nonce issued at `now` (Unix seconds) for a sign-in to `uri`: 32 lower-case hex characters,
/// the 16 bytes `issued_at` (u32 big-endian seconds) ‖ `random` ‖ an 8-byte MAC of both and
/// `uri` under `key`. Stateless: [`check_nonce`] recognises it with the same key.
pub fn issue_nonce(key: &NonceKey, uri: &str, now: u64, random: [u8; 4]) -> String {
    let issued = u32::try_from(now).unwrap_or(u32::MAX).to_be_bytes();
    let mut bytes = [0u8; 16];
    bytes[..4].copy_from_slice(&issued);
    bytes[4..8].copy_from_slice(&random);
    bytes[8..].copy_from_slice(&nonce_mac(key, issued, random, uri));
    crate::evm::hex_lower(&bytes)
}

/// Checks that `nonce` is one [`issue_nonce`] gave out with `key` for `uri`, at most
/// [`MAX_AGE_SECONDS`] before `now` (and at most [`NONCE_CLOCK_SKEW_SECONDS`] after it). Returns
/// when it expires (Unix seconds): until then its single use must be remembered.
/// Errors: `invalid_siwx_nonce_unknown` (not issued here, for this resource, or altered),
/// `invalid_siwx_nonce_expired`.
pub fn check_nonce(key: &NonceKey, uri: &str, nonce: &str, now: u64) -> Result<u64, Invalid> {
    let unknown = || refuse("invalid_siwx_nonce_unknown", "the nonce was not issued by this paywall for this resource; sign the challenge of a fresh 402");
    if nonce.len() != NONCE_HEX_LEN {
        return unknown();
    }
    let Some(bytes) = decode_hex_0x(&format!("0x{nonce}"), NONCE_HEX_LEN / 2).filter(|b| crate::evm::hex_lower(b) == nonce) else { return unknown() };
    let (mut issued, mut random, mut mac) = ([0u8; 4], [0u8; 4], [0u8; 8]);
    issued.copy_from_slice(&bytes[..4]);
    random.copy_from_slice(&bytes[4..8]);
    mac.copy_from_slice(&bytes[8..]);
    if !bool::from(subtle::ConstantTimeEq::ct_eq(&mac[..], &nonce_mac(key, issued, random, uri)[..])) {
        return unknown();
    }
    let issued_at = u64::from(u32::from_be_bytes(issued));
    if issued_at > now + NONCE_CLOCK_SKEW_SECONDS {
        return unknown();
    }
    let expires_at = issued_at + MAX_AGE_SECONDS;
    if now >= expires_at {
        return refuse("invalid_siwx_nonce_expired", format!("the nonce was issued {} s ago; it is valid for {MAX_AGE_SECONDS} s: sign the challenge of a fresh 402", now - issued_at));
    }
    Ok(expires_at)
}

/// What a proof must be bound to.
#[derive(Debug, Clone, Copy)]
pub struct Binding<'a> {
    /// `PUBLIC_URL`: `scheme://authority`; the proof's `domain` is its authority.
    pub public_origin: &'a str,
    /// The full public URL of the resource requested (`PUBLIC_URL` + the canonical path), which
    /// the 402 declared as `uri` and the nonce was issued for.
    pub uri: &'a str,
    /// CAIP-2 ids of the route's EVM networks (the declared `supportedChains`).
    pub chains: &'a [String],
    /// The nonce MAC key.
    pub key: &'a NonceKey,
}

/// The client's proof (the spec's "Client Proof Fields").
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Proof {
    pub domain: String,
    pub address: String,
    #[serde(default)]
    pub statement: Option<String>,
    pub uri: String,
    pub version: String,
    pub chain_id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub nonce: String,
    pub issued_at: String,
    #[serde(default)]
    pub expiration_time: Option<String>,
    #[serde(default)]
    pub not_before: Option<String>,
    #[serde(default)]
    pub request_id: Option<String>,
    #[serde(default)]
    pub resources: Option<Vec<String>>,
    pub signature: String,
}

// Why a sign-in is refused: `Invalid`, a reason code (the official package's names where they
// exist) and a readable message, the crate's one refusal reason shape.
use crate::refusal::Invalid;

fn refuse<T>(reason: &'static str, message: impl Into<String>) -> Result<T, Invalid> {
    Err(Invalid { reason, message: message.into() })
}

/// RFC 3339 with milliseconds and `Z` (what `Date.toISOString` writes).
pub fn iso(unix_seconds: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_secs(unix_seconds)).to_string()
}

/// Unix seconds of an RFC 3339 `Z` timestamp.
pub fn parse_iso(s: &str) -> Option<u64> {
    humantime::parse_rfc3339(s.trim()).ok()?.duration_since(UNIX_EPOCH).ok().map(|d| d.as_secs())
}

/// The extension a 402 advertises: `public_origin` is `scheme://authority`, `uri` the resource's
/// public URL, `chains` the CAIP-2 ids of the route's EVM networks, `nonce` 32 hex characters.
pub fn declare(public_origin: &str, uri: &str, chains: &[String], nonce: &str, now: u64) -> Value {
    let domain = public_origin.split_once("://").map_or(public_origin, |(_, a)| a);
    json!({
        "info": {
            "domain": domain,
            "uri": uri,
            "version": "1",
            "nonce": nonce,
            "issuedAt": iso(now),
            "expirationTime": iso(now + MAX_AGE_SECONDS),
            "statement": STATEMENT,
            "resources": [uri],
        },
        "supportedChains": chains.iter().map(|c| json!({ "chainId": c, "type": "eip191" })).collect::<Vec<_>>(),
        "schema": schema(),
    })
}

/// The JSON Schema of the proof, as the spec gives it.
fn schema() -> Value {
    let s = |format: Option<&str>| match format {
        Some(f) => json!({ "type": "string", "format": f }),
        None => json!({ "type": "string" }),
    };
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {
            "domain": s(None), "address": s(None), "statement": s(None), "uri": s(Some("uri")), "version": s(None),
            "chainId": s(None), "type": s(None), "nonce": s(None), "issuedAt": s(Some("date-time")),
            "expirationTime": s(Some("date-time")), "notBefore": s(Some("date-time")), "requestId": s(None),
            "resources": { "type": "array", "items": s(Some("uri")) }, "signature": s(None),
        },
        "required": ["domain", "address", "uri", "version", "chainId", "type", "nonce", "issuedAt", "signature"],
    })
}

/// Decodes a `SIGN-IN-WITH-X` header value (standard base64 of JSON).
pub fn decode(header: &str) -> Result<Proof, Invalid> {
    if header.len() > MAX_HEADER_BYTES {
        return refuse("invalid_siwx_payload", format!("SIGN-IN-WITH-X is {} bytes; the limit is {MAX_HEADER_BYTES}", header.len()));
    }
    let Some(value) = crate::x402::decode_header_json(header) else {
        return refuse("invalid_siwx_payload", "SIGN-IN-WITH-X is not base64 JSON");
    };
    serde_json::from_value(value).or_else(|e| refuse("invalid_siwx_payload", format!("SIGN-IN-WITH-X: {e}")))
}

/// The EIP-4361 message the proof's fields describe, laid out as the official client's SIWE
/// library writes it (address EIP-55, numeric chain id).
pub fn message(p: &Proof, address: &Address, chain_id: u64) -> String {
    let mut head = format!("{} wants you to sign in with your Ethereum account:\n{}", p.domain, address.to_checksum());
    match &p.statement {
        None => head.push_str("\n\n"),
        Some(s) => {
            head.push_str("\n\n");
            head.push_str(s);
            head.push('\n');
        }
    }
    let mut lines = vec![format!("URI: {}", p.uri), format!("Version: {}", p.version), format!("Chain ID: {chain_id}"), format!("Nonce: {}", p.nonce)];
    lines.push(format!("Issued At: {}", p.issued_at));
    if let Some(e) = &p.expiration_time {
        lines.push(format!("Expiration Time: {e}"));
    }
    if let Some(n) = &p.not_before {
        lines.push(format!("Not Before: {n}"));
    }
    if let Some(r) = &p.request_id {
        lines.push(format!("Request ID: {r}"));
    }
    if let Some(resources) = &p.resources {
        let mut block = String::from("Resources:");
        for r in resources {
            block.push_str("\n- ");
            block.push_str(r);
        }
        lines.push(block);
    }
    format!("{head}\n{}", lines.join("\n"))
}

/// EIP-191 (`personal_sign`) hash of a message.
pub fn eip191_hash(message: &str) -> [u8; 32] {
    let mut data = format!("\x19Ethereum Signed Message:\n{}", message.len()).into_bytes();
    data.extend_from_slice(message.as_bytes());
    keccak256(&data)
}

/// Verifies a proof against its [`Binding`] at Unix time `now`: the signer's address and when the
/// nonce expires (see [`check_nonce`]) on success.
pub fn verify(p: &Proof, b: &Binding, now: u64) -> Result<(Address, u64), Invalid> {
    let public_origin = b.public_origin;
    let domain = public_origin.split_once("://").map_or(public_origin, |(_, a)| a);
    if p.domain != domain {
        return refuse("invalid_siwx_domain_mismatch", format!("domain {:?} is not this paywall's {domain:?}", p.domain));
    }
    if p.uri != b.uri {
        return refuse("invalid_siwx_uri_mismatch", format!("uri {:?} is not the resource requested, {:?}", p.uri, b.uri));
    }
    if p.version != "1" {
        return refuse("invalid_siwx_payload", "version must be \"1\"");
    }
    let Some(chain_id) = p.chain_id.strip_prefix("eip155:").and_then(|n| n.parse::<u64>().ok()) else {
        return refuse("invalid_siwx_chain", format!("chainId {:?} is not an eip155 chain; only EVM wallets can sign in here", p.chain_id));
    };
    if !b.chains.contains(&p.chain_id) {
        return refuse("invalid_siwx_chain", format!("chainId {:?} is not one of this route's networks {:?}", p.chain_id, b.chains));
    }
    if p.kind != "eip191" {
        return refuse("invalid_siwx_chain", format!("type {:?} is not eip191", p.kind));
    }
    let nonce_expires_at = check_nonce(b.key, b.uri, &p.nonce, now)?;
    let Some(issued) = parse_iso(&p.issued_at) else { return refuse("invalid_siwx_issued_at", "issuedAt is not an RFC 3339 timestamp") };
    if issued > now {
        return refuse("invalid_siwx_issued_at_in_future", "issuedAt is in the future");
    }
    if now - issued > MAX_AGE_SECONDS {
        return refuse("invalid_siwx_issued_at_too_old", format!("issuedAt is {} s old; the limit is {MAX_AGE_SECONDS} s", now - issued));
    }
    if let Some(e) = &p.expiration_time {
        match parse_iso(e) {
            Some(t) if t > now => {}
            Some(_) => return refuse("invalid_siwx_expired", "the message has expired"),
            None => return refuse("invalid_siwx_expiration_time", "expirationTime is not an RFC 3339 timestamp"),
        }
    }
    if let Some(n) = &p.not_before {
        match parse_iso(n) {
            Some(t) if t <= now => {}
            Some(_) => return refuse("invalid_siwx_not_yet_valid", "notBefore is in the future"),
            None => return refuse("invalid_siwx_not_before", "notBefore is not an RFC 3339 timestamp"),
        }
    }
    let Some(address) = Address::parse(&p.address) else { return refuse("invalid_siwx_payload", "address is not a 0x-prefixed 20-byte address") };
    let Some(signature) = decode_hex_0x(&p.signature, crate::x402::exact::MAX_SIGNATURE_BYTES) else {
        return refuse("invalid_siwx_signature", "signature is not 0x hex");
    };
    let digest = eip191_hash(&message(p, &address, chain_id));
    match recover_signer(&digest, &signature) {
        Ok(signer) if signer == address => Ok((address, nonce_expires_at)),
        Ok(signer) => refuse("invalid_siwx_signature", format!("the signature recovers to {signer}, not {address}")),
        Err(SignatureError::NotEoaLength) => refuse(
            "siwx_smart_wallet_unsupported",
            "smart-wallet (EIP-1271 / ERC-6492) sign-ins need an on-chain check this paywall does not make; pay again or use the pass token",
        ),
        Err(_) => refuse("invalid_siwx_signature", "the signature is not a valid 65-byte secp256k1 signature with v 27 or 28"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k256::ecdsa::SigningKey;

    const NOW: u64 = 1_800_000_000;
    const URI: &str = "https://api.example.com/reports/1";

    fn nonce_key() -> NonceKey {
        NonceKey::new("a sign-in secret of at least 32 characters")
    }

    fn binding<'a>(key: &'a NonceKey, chains: &'a [String]) -> Binding<'a> {
        Binding { public_origin: "https://api.example.com", uri: URI, chains, key }
    }

    fn signed(key: u8, edit: impl Fn(&mut Proof)) -> Proof {
        let sk = SigningKey::from_slice(&[key; 32]).unwrap();
        let address = crate::evm::address_of(sk.verifying_key());
        let mut p = Proof {
            domain: "api.example.com".into(),
            address: address.to_checksum(),
            statement: Some(STATEMENT.into()),
            uri: "https://api.example.com/reports/1".into(),
            version: "1".into(),
            chain_id: "eip155:84532".into(),
            kind: "eip191".into(),
            nonce: issue_nonce(&nonce_key(), URI, NOW - 10, [1, 2, 3, 4]),
            issued_at: iso(NOW - 10),
            expiration_time: Some(iso(NOW + 290)),
            not_before: None,
            request_id: None,
            resources: Some(vec!["https://api.example.com/reports/1".into()]),
            signature: String::new(),
        };
        edit(&mut p);
        let (sig, recid) = sk.sign_prehash_recoverable(&eip191_hash(&message(&p, &address, 84532)));
        let mut bytes = sig.to_bytes().to_vec();
        bytes.push(27 + recid.to_byte());
        p.signature = crate::evm::hex_0x(&bytes);
        p
    }

    #[test]
    fn the_message_layout_follows_eip_4361() {
        let p = signed(1, |_| {});
        let a = Address::parse(&p.address).unwrap();
        let m = message(&p, &a, 84532);
        assert_eq!(
            m,
            format!(
                "api.example.com wants you to sign in with your Ethereum account:\n{}\n\n{STATEMENT}\n\nURI: https://api.example.com/reports/1\nVersion: 1\nChain ID: 84532\nNonce: {}\nIssued At: {}\nExpiration Time: {}\nResources:\n- https://api.example.com/reports/1",
                a.to_checksum(),
                p.nonce,
                iso(NOW - 10),
                iso(NOW + 290)
            )
        );
        let bare = Proof { statement: None, resources: None, expiration_time: None, ..p };
        assert!(message(&bare, &a, 1).contains(&format!("{}\n\n\nURI:", a.to_checksum())), "no statement: an empty statement block");
        assert_eq!(iso(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(parse_iso("2024-01-15T10:30:00.000Z"), Some(1_705_314_600));
    }

    #[test]
    fn a_proof_verifies_to_its_signer_and_every_field_is_checked() {
        let key = nonce_key();
        let chains = ["eip155:84532".to_string()];
        let b = binding(&key, &chains);
        let ok = signed(2, |_| {});
        let (address, nonce_expires_at) = verify(&ok, &b, NOW).unwrap();
        assert_eq!((address.to_checksum(), nonce_expires_at), (ok.address.clone(), NOW - 10 + MAX_AGE_SECONDS));
        let other_key = NonceKey::new("another deployment's secret, 32+ characters");
        let cases: Vec<(Proof, &str)> = vec![
            (signed(2, |p| p.domain = "evil.example".into()), "invalid_siwx_domain_mismatch"),
            (signed(2, |p| p.uri = "https://evil.example/reports/1".into()), "invalid_siwx_uri_mismatch"),
            (signed(2, |p| p.uri = "https://api.example.com/reports/2".into()), "invalid_siwx_uri_mismatch"),
            (signed(2, |p| p.uri = "https://api.example.com/reports/1?x=1".into()), "invalid_siwx_uri_mismatch"),
            (signed(2, |p| p.chain_id = "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp".into()), "invalid_siwx_chain"),
            (signed(2, |p| p.chain_id = "eip155:8453".into()), "invalid_siwx_chain"),
            (signed(2, |p| p.nonce = "a1b2c3d4e5f67890a1b2c3d4e5f67890".into()), "invalid_siwx_nonce_unknown"),
            (signed(2, |p| p.nonce = issue_nonce(&other_key, URI, NOW - 10, [1, 2, 3, 4])), "invalid_siwx_nonce_unknown"),
            (signed(2, |p| p.nonce = issue_nonce(&key, "https://api.example.com/reports/2", NOW - 10, [1, 2, 3, 4])), "invalid_siwx_nonce_unknown"),
            (signed(2, |p| p.nonce = issue_nonce(&key, URI, NOW - 10, [1, 2, 3, 4]).to_uppercase()), "invalid_siwx_nonce_unknown"),
            (signed(2, |p| p.nonce = issue_nonce(&key, URI, NOW + 60, [1, 2, 3, 4])), "invalid_siwx_nonce_unknown"),
            (signed(2, |p| p.nonce = issue_nonce(&key, URI, NOW - MAX_AGE_SECONDS, [1, 2, 3, 4])), "invalid_siwx_nonce_expired"),
            (signed(2, |p| p.issued_at = iso(NOW - 301)), "invalid_siwx_issued_at_too_old"),
            (signed(2, |p| p.issued_at = iso(NOW + 5)), "invalid_siwx_issued_at_in_future"),
            (signed(2, |p| p.expiration_time = Some(iso(NOW))), "invalid_siwx_expired"),
            (signed(2, |p| p.not_before = Some(iso(NOW + 60))), "invalid_siwx_not_yet_valid"),
            (Proof { statement: Some("Another statement.".into()), ..signed(2, |_| {}) }, "invalid_siwx_signature"),
            (Proof { address: signed(3, |_| {}).address, ..signed(2, |_| {}) }, "invalid_siwx_signature"),
            (Proof { signature: format!("{}{}", ok.signature, "00".repeat(40)), ..ok.clone() }, "siwx_smart_wallet_unsupported"),
        ];
        for (p, reason) in cases {
            assert_eq!(verify(&p, &b, NOW).unwrap_err().reason, reason, "{p:?}");
        }
    }

    #[test]
    fn issued_nonces_are_32_hex_and_recognised_only_with_their_key_and_resource() {
        let key = nonce_key();
        let n = issue_nonce(&key, URI, NOW, [9, 9, 9, 9]);
        assert_eq!(n.len(), NONCE_HEX_LEN);
        assert!(n.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        assert_ne!(n, issue_nonce(&key, URI, NOW, [9, 9, 9, 8]), "the random part changes it");
        assert_eq!(check_nonce(&key, URI, &n, NOW), Ok(NOW + MAX_AGE_SECONDS));
        assert_eq!(check_nonce(&key, URI, &n, NOW + MAX_AGE_SECONDS - 1), Ok(NOW + MAX_AGE_SECONDS));
        assert_eq!(check_nonce(&key, URI, &n, NOW + MAX_AGE_SECONDS).unwrap_err().reason, "invalid_siwx_nonce_expired");
        for bad in ["", "zz", &n[..31], &format!("{n}0"), &format!("{}{}", &n[..31], if n.ends_with('0') { '1' } else { '0' })] {
            assert_eq!(check_nonce(&key, URI, bad, NOW).unwrap_err().reason, "invalid_siwx_nonce_unknown", "{bad}");
        }
        assert!(format!("{key:?}").contains('…') && !format!("{key:?}").contains("secret"));
    }

    #[test]
    fn headers_are_bounded_and_typed() {
        assert_eq!(decode("%%%").unwrap_err().reason, "invalid_siwx_payload");
        assert_eq!(decode(&"A".repeat(MAX_HEADER_BYTES + 1)).unwrap_err().reason, "invalid_siwx_payload");
        let h = crate::x402::encode_header(&json!({ "domain": "x" }));
        assert_eq!(decode(&h).unwrap_err().reason, "invalid_siwx_payload");
    }
}
