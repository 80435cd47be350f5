//! Load-generation helper for the benchmark: prints N `PAYMENT-SIGNATURE` values, one per line,
//! each a fresh EIP-3009 authorization (random nonce) for the requirement given as JSON in
//! argv[1], signed by the anvil test key #2. Usage: `presign '<accepted JSON>' N`.

use k256::ecdsa::SigningKey;
use serde_json::{json, Value};
use x402_edge_paywall::evm::{address_of, caip2_chain_id, hex_0x, parse_uint256, Address, Eip712Domain, TransferWithAuthorization};
use x402_edge_paywall::x402::encode_header;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let accepted: Value = serde_json::from_str(args.get(1).map(String::as_str).unwrap_or("{}")).expect("accepted JSON");
    let n: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1000);
    let key_bytes = hex32("5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a");
    let key = SigningKey::from_slice(&key_bytes).expect("key");
    let from = address_of(key.verifying_key());
    let s = |k: &str| accepted[k].as_str().expect(k).to_string();
    let domain = Eip712Domain {
        name: accepted["extra"]["name"].as_str().expect("name").into(),
        version: accepted["extra"]["version"].as_str().expect("version").into(),
        chain_id: caip2_chain_id(&s("network")).expect("eip155 network"),
        verifying_contract: Address::parse(&s("asset")).expect("asset"),
    };
    let separator = domain.separator();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs();
    let (after, before) = (now - 600, now + accepted["maxTimeoutSeconds"].as_u64().unwrap_or(300));
    let mut out = String::new();
    for _ in 0..n {
        let mut nonce = [0u8; 32];
        getrandom::fill(&mut nonce).expect("random");
        let msg = TransferWithAuthorization {
            from,
            to: Address::parse(&s("payTo")).expect("payTo"),
            value: parse_uint256(&s("amount")).expect("amount"),
            valid_after: parse_uint256(&after.to_string()).expect("after"),
            valid_before: parse_uint256(&before.to_string()).expect("before"),
            nonce,
        };
        let (sig, recid) = key.sign_prehash_recoverable(&msg.digest(&separator));
        let mut bytes = sig.to_bytes().to_vec();
        bytes.push(27 + recid.to_byte());
        let payload = json!({
            "x402Version": 2,
            "accepted": accepted,
            "payload": { "signature": hex_0x(&bytes), "authorization": {
                "from": from.to_checksum(), "to": s("payTo"), "value": s("amount"),
                "validAfter": after.to_string(), "validBefore": before.to_string(), "nonce": hex_0x(&nonce) } }
        });
        out.push_str(&encode_header(&payload));
        out.push('\n');
    }
    print!("{out}");
}

fn hex32(h: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (i, c) in h.as_bytes().chunks(2).enumerate() {
        out[i] = u8::from_str_radix(std::str::from_utf8(c).unwrap_or("00"), 16).unwrap_or(0);
    }
    out
}
