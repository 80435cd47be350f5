//! `verify(n)`: n full EIP-3009 verifications (EIP-712 digest + k256 recovery + compare with
//! `from`) of the x402 specification's example payment, inside wasm, for timing from JS.

use wasm_bindgen::prelude::*;
use x402_edge_paywall::evm::{decode_hex_0x, parse_bytes32, parse_uint256, recover_signer, Address, Eip712Domain, TransferWithAuthorization};

include!("../../spec_vector.rs");

/// Runs `n` verifications; returns how many recovered the expected signer (n when correct).
#[wasm_bindgen]
pub fn verify(n: u32) -> u32 {
    let (from, separator, message, signature) = spec_example();
    let mut ok = 0;
    for _ in 0..n {
        let digest = message.digest(&separator);
        if recover_signer(&digest, &signature) == Ok(from) {
            ok += 1;
        }
    }
    ok
}

/// Parses the Worker's variables (`vars`, a JSON object as `env` holds them) into the validated
/// configuration `n` times, as the first request of an isolate does once; returns how many
/// parses succeeded (n when the variables are valid).
#[wasm_bindgen]
pub fn config_parse(vars: &str, n: u32) -> u32 {
    let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(vars) else { return 0 };
    (0..n).filter(|_| x402_edge_paywall::config::Config::from_vars(&map).is_ok()).count() as u32
}
