//! The x402 `eip2612GasSponsoring` extension (`@x402/extensions` 2.27 `eip2612-gas-sponsoring`,
//! used by the `upto` scheme on EVM, `specs/schemes/upto/scheme_upto_evm.md`): a payer whose
//! token allowance to Permit2 is too low signs an EIP-2612 `permit(owner, Permit2, value,
//! deadline)` and sends it in `PaymentPayload.extensions.eip2612GasSponsoring.info`; the
//! facilitator submits it with the settlement (the upto proxy's `settleWithPermit`), so the payer
//! needs no approval transaction and no gas.
//!
//! A server announces the extension in `PaymentRequired.extensions` ([`declaration`]); the
//! official client only adds a permit when it is announced. [`check`] is the official
//! facilitator's `validateEip2612PermitForPayment`, run locally so a bad permit is refused before
//! the origin: the info's shape (`invalid_eip2612_extension_format`), `from` = the Permit2 owner
//! (`eip2612_from_mismatch`), `asset` = the permitted token (`eip2612_asset_mismatch`), `spender`
//! = Permit2 (`eip2612_spender_not_permit2`), `deadline` ≥ now + 6 s
//! (`eip2612_deadline_expired`). The permit's signature and nonce need the token contract and are
//! left to the facilitator, as the official verifier leaves them to its simulation: a payment
//! that carries a permit is verified with `/verify` before the origin whatever the route's
//! `verify` policy and the payer's standing (`gateway::pay`).

use serde_json::{json, Map, Value};

use crate::evm::{decode_hex_0x, parse_uint256, Address};
use crate::refusal::Invalid;
use crate::x402::exact::MAX_SIGNATURE_BYTES;
use crate::x402::permit2::PERMIT2_ADDRESS;

/// The extension's key in `PaymentRequired.extensions` and `PaymentPayload.extensions`.
pub const EIP2612_GAS_SPONSORING: &str = "eip2612GasSponsoring";

/// The members the info must have, each a string (the official `extractEip2612GasSponsoringInfo`
/// ignores an info that lacks any; so does [`check`]).
const FIELDS: [&str; 8] = ["from", "asset", "spender", "amount", "nonce", "deadline", "signature", "version"];

/// Seconds a permit must stay valid beyond now (the official verifier's 6).
const MIN_VALIDITY_SECONDS: u64 = 6;

/// The announcement in a challenge's `PaymentRequired.extensions` (under [`EIP2612_GAS_SPONSORING`]):
/// `info` {description, version "1"} and the JSON Schema (draft 2020-12) of the info a payer sends,
/// with the official field names, patterns and required list.
pub fn declaration() -> Value {
    let address = |what: &str| json!({ "type": "string", "pattern": "^0x[a-fA-F0-9]{40}$", "description": what });
    let number = |what: &str| json!({ "type": "string", "pattern": "^[0-9]+$", "description": what });
    json!({
        "info": { "description": "The facilitator accepts an EIP-2612 permit for the canonical Permit2 contract, submitted with the settlement: no approval transaction needed.", "version": "1" },
        "schema": {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "properties": {
                "from": address("The payer (the permit's owner)."),
                "asset": address("The token contract."),
                "spender": address("Permit2's canonical address."),
                "amount": number("The allowance the permit gives (uint256, atomic units)."),
                "nonce": number("The owner's EIP-2612 nonce at the token."),
                "deadline": number("Unix time (seconds) until which the permit is valid."),
                "signature": { "type": "string", "pattern": "^0x[a-fA-F0-9]+$", "description": "The owner's 65-byte signature (r, s, v) of the permit, hex." },
                "version": { "type": "string", "pattern": "^[0-9]+(\\.[0-9]+)*$", "description": "The info's schema version." }
            },
            "required": FIELDS,
        }
    })
}

/// Adds the [`declaration`] to a challenge's `extensions` (an object keyed by extension id).
pub fn declare(extensions: Option<Value>) -> Value {
    let mut map = match extensions {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    };
    map.insert(EIP2612_GAS_SPONSORING.into(), declaration());
    Value::Object(map)
}

/// Checks the permit a payload carries, if it carries one with every member: `Ok(true)` when it
/// does and it passes, `Ok(false)` when there is none (or one the facilitator would ignore too),
/// `Err` with the official reason code otherwise. `owner`: the Permit2 authorization's `from`;
/// `token`: its permitted token; `now`: Unix seconds.
pub fn check(payload: &Value, owner: Address, token: Address, now: u64) -> Result<bool, Invalid> {
    let Some(Value::Object(info)) = payload.pointer("/extensions/eip2612GasSponsoring/info") else { return Ok(false) };
    let mut values = [""; 8];
    for (slot, field) in values.iter_mut().zip(FIELDS) {
        match info.get(field).and_then(Value::as_str) {
            Some(s) if !s.is_empty() => *slot = s,
            _ => return Ok(false),
        }
    }
    let [from, asset, spender, amount, nonce, deadline, signature, version] = values;
    let format = || Invalid { reason: "invalid_eip2612_extension_format", message: "extensions.eip2612GasSponsoring.info does not match its schema".into() };
    // The schema's `^0x[a-fA-F0-9]{40}$`: `Address::parse` also takes `0X`.
    let hex_address = |s: &str| s.starts_with("0x").then(|| Address::parse(s)).flatten();
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let version_ok = version.split('.').all(digits);
    let signature_ok = signature.len() > 2 && decode_hex_0x(signature, MAX_SIGNATURE_BYTES).is_some();
    let (Some(from), Some(asset), Some(spender)) = (hex_address(from), hex_address(asset), hex_address(spender)) else { return Err(format()) };
    if !(digits(amount) && digits(nonce) && digits(deadline) && signature_ok && version_ok) {
        return Err(format());
    }
    if from != owner {
        return Err(Invalid { reason: "eip2612_from_mismatch", message: format!("the EIP-2612 permit's owner {from} is not the payer {owner}") });
    }
    if asset != token {
        return Err(Invalid { reason: "eip2612_asset_mismatch", message: format!("the EIP-2612 permit is for {asset}, not the permitted token {token}") });
    }
    if spender != PERMIT2_ADDRESS {
        return Err(Invalid { reason: "eip2612_spender_not_permit2", message: format!("the EIP-2612 permit's spender {spender} is not Permit2 {PERMIT2_ADDRESS}") });
    }
    let min = now.saturating_add(MIN_VALIDITY_SECONDS);
    if parse_uint256(deadline).is_none_or(|d| d < ruint::aliases::U256::from(min)) {
        return Err(Invalid { reason: "eip2612_deadline_expired", message: format!("the EIP-2612 permit expires at {deadline}, before {min} (now + {MIN_VALIDITY_SECONDS} s)") });
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWNER: &str = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC";
    const TOKEN: &str = "0x036CbD53842c5426634e7929541eC2318f3dCF7e";

    fn payload(info: Value) -> Value {
        json!({ "x402Version": 2, "extensions": { EIP2612_GAS_SPONSORING: { "info": info } } })
    }

    fn info() -> Value {
        json!({ "from": OWNER, "asset": TOKEN, "spender": "0x000000000022D473030F116dDEE9F6B43aC78BA3", "amount": "50000", "nonce": "0", "deadline": "1000", "signature": format!("0x{}", "ab".repeat(65)), "version": "1" })
    }

    fn run(p: &Value) -> Result<bool, &'static str> {
        check(p, Address::parse(OWNER).unwrap(), Address::parse(TOKEN).unwrap(), 900).map_err(|e| e.reason)
    }

    #[test]
    fn a_well_formed_permit_passes_and_none_is_none() {
        assert_eq!(run(&payload(info())), Ok(true));
        assert_eq!(run(&json!({ "x402Version": 2 })), Ok(false));
        let mut partial = info();
        partial.as_object_mut().unwrap().remove("nonce");
        assert_eq!(run(&payload(partial)), Ok(false), "an info without every member is ignored, as the facilitator ignores it");
        assert_eq!(run(&payload(json!("not an object"))), Ok(false));
    }

    #[test]
    fn each_official_refusal() {
        let with = |k: &str, v: &str| {
            let mut i = info();
            i[k] = json!(v);
            run(&payload(i))
        };
        assert_eq!(with("from", "0x0000000000000000000000000000000000000001"), Err("eip2612_from_mismatch"));
        assert_eq!(with("asset", "0x0000000000000000000000000000000000000001"), Err("eip2612_asset_mismatch"));
        assert_eq!(with("spender", "0x4020A4f3b7b90ccA423B9fabCc0CE57C6C240002"), Err("eip2612_spender_not_permit2"));
        assert_eq!(with("deadline", "905"), Err("eip2612_deadline_expired"));
        assert_eq!(with("deadline", "906"), Ok(true));
        for (k, v) in [("from", "3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"), ("amount", "-1"), ("amount", "1e6"), ("nonce", "0x1"), ("signature", "0xzz"), ("signature", "0x"), ("version", "1."), ("version", "v1")] {
            assert_eq!(with(k, v), Err("invalid_eip2612_extension_format"), "{k} = {v}");
        }
        let mut i = info();
        i["amount"] = json!(50000);
        assert_eq!(run(&payload(i)), Ok(false), "a number where a string is due: ignored, as by the facilitator");
    }

    #[test]
    fn declare_keeps_the_other_extensions() {
        let merged = declare(Some(json!({ "bazaar": { "info": {} } })));
        assert!(merged.get("bazaar").is_some());
        assert_eq!(merged[EIP2612_GAS_SPONSORING]["info"]["version"], "1");
        assert_eq!(merged[EIP2612_GAS_SPONSORING]["schema"]["required"].as_array().unwrap().len(), 8);
        assert!(declare(None).get(EIP2612_GAS_SPONSORING).is_some());
    }
}
