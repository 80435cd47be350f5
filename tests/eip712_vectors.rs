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

/// The domain separator of every built-in network's USDC, computed independently with viem 2.57
/// `domainSeparator`. Base, Base Sepolia and Monad also equal the vector file (Monad's is the
/// token's on-chain `DOMAIN_SEPARATOR()`).
#[test]
fn every_built_in_network_has_its_pinned_domain_separator() {
    let pinned = [
        ("eip155:8453", "0x02fa7265e7c5d81118673727957699e4d68f74cd74b7db77da710fe8a2c7834f"),
        ("eip155:84532", "0x71f17a3b2ff373b803d70a5a07c046c1a2bc8e89c09ef722fcb047abe94c9818"),
        ("eip155:43114", "0xbbea200329a938bc3438984a49cb0732e66d66d7bd59c127abacc1710e77f7b3"),
        ("eip155:43113", "0xfe9fa105a0e9629446730e544caa6b8d05d8d4fc93451750dc50e2ddd6d374b3"),
        ("eip155:137", "0xcaa2ce1a5703ccbe253a34eb3166df60a705c561b44b192061e28f2a985be2ca"),
        ("eip155:80002", "0x5cddc98319864e897e4469bd1d13c2288c677047b54b8cca12bd342adb6be9eb"),
        ("eip155:42161", "0x08d11903f8419e68b1b8721bcbe2e9fc68569122a77ef18c216f10b3b5112c78"),
        ("eip155:421614", "0x85944e1292d007732838d6eadfa67589b78ffcededbd4df60488d0af251308bb"),
        ("eip155:143", "0xfe22123edc0dd4aeb912eb7948c5f0e531592c2053b3067612f427db342c93c6"),
        ("eip155:1329", "0x0a19136106ae98d2c245cbbd451f3cb2bbbb1670e1ee191abacb5a5e255c0255"),
        ("eip155:1328", "0x154bb5980ce1d584a1067dc67730720e6046d0364a2ade0b692dd488e71fe653"),
        ("eip155:4689", "0x1fe7a84df16e817c1ad4382cf5e2ae126022a073a3d547352184405dcb4943bf"),
        ("eip155:3338", "0xa7d03bc6a028c2db6a63276917c088f148317e450676587d0832046fd959f2ca"),
        ("eip155:2741", "0xf97688ce434ffe15ef6e8ade86818441dad8435de52cf7cd454fb9e71fe71da2"),
        ("eip155:11124", "0x24182604958ec086dc72cef93bb634012f105d9f11d2d0b7ddee93f388cdc91a"),
        ("eip155:50", "0xe3bb44ae105af7e23bb39b117e22bbcbf435066554f45b3a9bbcba42c80fe56d"),
        ("eip155:51", "0x3835afe643ce123f3bc71a8e3123e24651d2d4309bbf3ba58329a1db60b9b2c3"),
        ("eip155:42220", "0xb2ce31d2838445fa765a491f550e7c78ac7280ab0f3bc9d6063a86df9c3fb578"),
        ("eip155:11142220", "0x23f491197bb8c5ea4fe8dd4c2293b600f073553f9814015e7a5eb57724df9578"),
        ("eip155:1440000", "0xdfbb9f6ecea8523ebd35228cde76e8dec7ccbaf1095184b10f7390ff575c0786"),
    ];
    assert_eq!(pinned.len(), x402_edge_paywall::evm::NETWORKS.len());
    for (caip2, want) in pinned {
        let n = x402_edge_paywall::evm::network_by_id(caip2).expect(caip2);
        let d = Eip712Domain {
            name: n.usdc_name.into(),
            version: n.usdc_version.into(),
            chain_id: n.chain_id,
            verifying_contract: Address::parse(n.usdc).unwrap(),
        };
        assert_eq!(hex_0x(&d.separator()), want, "{caip2}");
    }
}
