//! Reproduces every EIP-712 vector of `tests/data/eip3009-vectors.json` (computed independently
//! with eth-account 0.14.0): domain separators, struct hashes, digests, and signer recovery.

use serde_json::Value;
use x402_edge_paywall::evm::{hex_0x, parse_bytes32, parse_uint256, recover_signer, Address, Eip712Domain, TransferWithAuthorization};

fn vectors() -> Value {
    serde_json::from_str(include_str!("data/eip3009-vectors.json")).expect("vector file is JSON")
}

fn domain(v: &Value) -> Eip712Domain {
    Eip712Domain {
        name: v["name"].as_str().unwrap().into(),
        version: v["version"].as_str().unwrap().into(),
        chain_id: v["chainId"].as_u64().unwrap(),
        verifying_contract: Address::parse(v["verifyingContract"].as_str().unwrap()).unwrap(),
    }
}

fn message(a: &Value) -> TransferWithAuthorization {
    let s = |k: &str| a[k].as_str().unwrap();
    TransferWithAuthorization {
        from: Address::parse(s("from")).unwrap(),
        to: Address::parse(s("to")).unwrap(),
        value: parse_uint256(s("value")).unwrap(),
        valid_after: parse_uint256(s("validAfter")).unwrap(),
        valid_before: parse_uint256(s("validBefore")).unwrap(),
        nonce: parse_bytes32(s("nonce")).unwrap(),
    }
}

#[test]
fn every_vector_reproduces_hashes_and_recovers_its_signer() {
    let all = vectors();
    let list = all["vectors"].as_array().unwrap();
    assert!(list.len() >= 4);
    for v in list {
        let id = v["id"].as_str().unwrap();
        let d = domain(&v["domain"]);
        let m = message(&v["authorization"]);
        let sep = d.separator();
        if let Some(want) = v["domainSeparator"].as_str() {
            assert_eq!(hex_0x(&sep), want, "{id} domainSeparator");
        }
        if let Some(want) = v["structHash"].as_str() {
            assert_eq!(hex_0x(&m.struct_hash()), want, "{id} structHash");
        }
        let digest = m.digest(&sep);
        assert_eq!(hex_0x(&digest), v["digest"].as_str().unwrap(), "{id} digest");
        let sig = x402_edge_paywall::evm::decode_hex_0x(v["signature"].as_str().unwrap(), 65).unwrap();
        assert_eq!(recover_signer(&digest, &sig), Ok(m.from), "{id} signer");
    }
}

#[test]
fn a_signature_recovers_to_someone_else_under_another_domain() {
    let all = vectors();
    let v = &all["vectors"][0];
    let m = message(&v["authorization"]);
    let sig = x402_edge_paywall::evm::decode_hex_0x(v["signature"].as_str().unwrap(), 65).unwrap();
    for (name, chain) in [("USD Coin", 84532u64), ("USDC", 8453)] {
        let mut d = domain(&v["domain"]);
        d.name = name.into();
        d.chain_id = chain;
        assert_ne!(recover_signer(&m.digest(&d.separator()), &sig), Ok(m.from));
    }
}

#[test]
fn pinned_domain_separators() {
    let all = vectors();
    for v in all["domainSeparators"].as_array().unwrap() {
        assert_eq!(hex_0x(&domain(&v["domain"]).separator()), v["domainSeparator"].as_str().unwrap(), "{}", v["id"]);
    }
}

#[test]
fn typehashes_match_the_file() {
    let all = vectors();
    assert_eq!(hex_0x(&x402_edge_paywall::evm::EIP712_DOMAIN_TYPEHASH), all["typehashes"]["EIP712Domain"].as_str().unwrap());
    assert_eq!(
        hex_0x(&x402_edge_paywall::evm::TRANSFER_WITH_AUTHORIZATION_TYPEHASH),
        all["typehashes"]["TransferWithAuthorization"].as_str().unwrap()
    );
}
