//! The x402 `upto` (Permit2) path, pure Rust: our EIP-712 hashing against viem and the official
//! `@x402/evm` client (vectors in `tests/data/permit2-upto-vectors.json`, written by
//! `tests/support/gen-upto-vectors.mjs`), and `verify_upto`: the official client's payments pass,
//! and each predicate refuses with the official facilitator's reason code.

use proptest::prelude::*;
use ruint::aliases::U256;
use serde_json::{json, Value};
use x402_edge_paywall::evm::{caip2_chain_id, decode_hex_0x, hex_0x, parse_uint256, recover_signer, Address, Eip712Domain};
use x402_edge_paywall::x402::exact::verify_exact;
use x402_edge_paywall::x402::offer::Offer;
use x402_edge_paywall::x402::permit2::{permit2_domain_separator, UptoPermitWitnessTransferFrom, PERMIT2_ADDRESS, UPTO_PERMIT_WITNESS_TRANSFER_FROM_TYPE, UPTO_PROXY_ADDRESS};
use x402_edge_paywall::x402::upto::{verify_upto, VerifiedUpto};
use x402_edge_paywall::x402::{decode_payment_signature, decode_x_payment, encode_header, PaymentPayload, PaymentRequirements, MAX_PAYMENT_HEADER_BYTES};

fn vectors() -> Value {
    serde_json::from_str(include_str!("data/permit2-upto-vectors.json")).expect("vector file is JSON")
}

/// An offer as the configuration would build it from a requirement.
fn offer(requirements: &Value) -> Offer {
    let r: PaymentRequirements = serde_json::from_value(requirements.clone()).unwrap();
    let chain_id = caip2_chain_id(&r.network).unwrap();
    let asset = Address::parse(&r.asset).unwrap();
    let domain_separator = Eip712Domain { name: r.extra.name.clone(), version: r.extra.version.clone(), chain_id, verifying_contract: asset }.separator();
    Offer {
        requirements_json: serde_json::to_value(&r).unwrap(),
        v1_network: None,
        amount: parse_uint256(&r.amount).unwrap(),
        asset,
        pay_to: Address::parse(&r.pay_to).unwrap(),
        chain_id,
        domain_separator,
        meter: (r.scheme == "upto").then_some(x402_edge_paywall::meter::Meter::Origin),
        decimals: None,
        eip2612_gas_sponsoring: false,
        requirements: r,
    }
}

fn message(a: &Value) -> UptoPermitWitnessTransferFrom {
    let addr = |v: &Value| Address::parse(v.as_str().unwrap()).unwrap();
    let uint = |v: &Value| parse_uint256(v.as_str().unwrap()).unwrap();
    UptoPermitWitnessTransferFrom {
        token: addr(&a["permitted"]["token"]),
        amount: uint(&a["permitted"]["amount"]),
        spender: addr(&a["spender"]),
        nonce: uint(&a["nonce"]),
        deadline: uint(&a["deadline"]),
        to: addr(&a["witness"]["to"]),
        facilitator: addr(&a["witness"]["facilitator"]),
        valid_after: uint(&a["witness"]["validAfter"]),
    }
}

/// The first official payment: (offer, payment payload JSON, now).
fn official() -> (Offer, Value, u64) {
    let v = vectors();
    let p = &v["payments"][0];
    (offer(&p["requirements"]), p["paymentPayload"].clone(), p["now"].as_u64().unwrap())
}

fn decode(payload: &Value) -> PaymentPayload {
    decode_payment_signature(&encode_header(payload)).expect("decodes")
}

fn verify<'a>(offers: &'a [Offer], payload: &Value, now: u64) -> Result<VerifiedUpto<'a>, &'static str> {
    verify_upto(offers, &decode(payload), now, 30).map_err(|e| e.reason)
}

/// The reason `verify_upto` gives for the official payment after `mutate`.
fn refusal(mutate: impl FnOnce(&mut Value)) -> &'static str {
    let (o, mut payload, now) = official();
    mutate(&mut payload);
    match verify(std::slice::from_ref(&o), &payload, now) {
        Ok(v) => panic!("accepted: {v:?}"),
        Err(reason) => reason,
    }
}

#[test]
fn our_digest_is_viems_for_every_vector_and_recovers_its_signer() {
    let all = vectors();
    assert_eq!(all["permit2"].as_str(), Some(PERMIT2_ADDRESS.to_checksum().as_str()));
    assert_eq!(all["uptoProxy"].as_str(), Some(UPTO_PROXY_ADDRESS.to_checksum().as_str()));
    assert_eq!(all["typeStrings"]["PermitWitnessTransferFrom"].as_str(), Some(UPTO_PERMIT_WITNESS_TRANSFER_FROM_TYPE));
    let mut n = 0;
    for v in all["typed"].as_array().unwrap().iter().chain(all["payments"].as_array().unwrap()) {
        let id = v["id"].as_str().unwrap();
        let td = &v["typedData"];
        assert_eq!(td["domain"]["name"], "Permit2", "{id}");
        assert!(td["domain"].get("version").is_none(), "{id}: Permit2's domain has no version");
        let chain_id = td["domain"]["chainId"].as_u64().unwrap();
        let m = message(&td["message"]);
        assert_eq!(hex_0x(&permit2_domain_separator(chain_id)), v["domainSeparator"].as_str().unwrap(), "{id} domain separator");
        assert_eq!(hex_0x(&m.struct_hash()), v["structHash"].as_str().unwrap(), "{id} struct hash");
        let digest = m.digest(chain_id);
        assert_eq!(hex_0x(&digest), v["digest"].as_str().unwrap(), "{id} digest");
        let sig = v["signature"].as_str().or_else(|| v["paymentPayload"]["payload"]["signature"].as_str()).unwrap();
        let sig = decode_hex_0x(sig, 65).unwrap();
        assert_eq!(recover_signer(&digest, &sig), Ok(Address::parse(v["signer"].as_str().unwrap()).unwrap()), "{id} signer");
        n += 1;
    }
    assert!(n >= 6);
}

#[test]
fn the_official_requirement_round_trips_byte_for_byte() {
    for p in vectors()["payments"].as_array().unwrap() {
        let r: PaymentRequirements = serde_json::from_value(p["requirements"].clone()).unwrap();
        assert_eq!(r.extra.asset_transfer_method.as_deref(), Some("permit2"));
        assert!(r.extra.facilitator_address.is_some());
        assert_eq!(serde_json::to_value(&r).unwrap(), p["requirements"]);
        // Same keys in the official server's order: the text JSON.stringify gives.
        assert_eq!(serde_json::to_string(&r).unwrap(), p["requirementsText"].as_str().unwrap());
        assert_eq!(p["paymentPayload"]["accepted"], p["requirements"], "the client echoes the requirement");
    }
}

#[test]
fn the_official_clients_payments_verify() {
    for p in vectors()["payments"].as_array().unwrap() {
        let id = p["id"].as_str().unwrap();
        let o = offer(&p["requirements"]);
        let now = p["now"].as_u64().unwrap();
        // Among other offers: an exact one for the same amount and the upto one.
        let mut exact_json = p["requirements"].clone();
        exact_json["scheme"] = "exact".into();
        exact_json["extra"] = json!({"name": "USDC", "version": "2"});
        let offers = [offer(&exact_json), o];
        let v = verify(&offers, &p["paymentPayload"], now).unwrap_or_else(|e| panic!("{id}: {e}"));
        let a = &p["paymentPayload"]["payload"]["permit2Authorization"];
        assert!(std::ptr::eq(v.offer, &offers[1]), "{id}: the upto offer");
        assert_eq!(v.payer, Address::parse(p["signer"].as_str().unwrap()).unwrap(), "{id}");
        let nonce = parse_uint256(a["nonce"].as_str().unwrap()).unwrap();
        assert_eq!(v.nonce, nonce);
        assert_eq!(v.nonce32, nonce.to_be_bytes::<32>());
        assert_eq!(U256::from_be_bytes(v.nonce32), nonce);
        assert_eq!(v.deadline, now + p["requirements"]["maxTimeoutSeconds"].as_u64().unwrap(), "{id}: the client's deadline is now + maxTimeoutSeconds");
        assert_eq!(v.max_amount.to_string(), p["requirements"]["amount"].as_str().unwrap());
        assert_eq!(v.facilitator.to_checksum(), p["requirements"]["extra"]["facilitatorAddress"].as_str().unwrap());
        assert!(v.signature_checked, "{id}");
        assert!(v.late.is_none(), "{id}");
    }
}

#[test]
fn the_nonce32_form_is_big_endian() {
    let (o, mut payload, now) = official();
    payload["payload"]["permit2Authorization"]["nonce"] = "258".into();
    // The signature no longer matches; a non-65-byte signature skips recovery, so the rest shows.
    payload["payload"]["signature"] = format!("0x{}", "ab".repeat(66)).into();
    let offers = [o];
    let v = verify(&offers, &payload, now).unwrap();
    assert!(!v.signature_checked);
    let mut want = [0u8; 32];
    want[30] = 1;
    want[31] = 2;
    assert_eq!(v.nonce32, want);
}

#[test]
fn a_hex_nonce_as_in_the_spec_example_is_the_same_nonce() {
    let (o, mut payload, now) = official();
    let offers = [o];
    let decimal = verify(&offers, &payload, now).unwrap().nonce32;
    let n = parse_uint256(payload["payload"]["permit2Authorization"]["nonce"].as_str().unwrap()).unwrap();
    payload["payload"]["permit2Authorization"]["nonce"] = format!("{n:#x}").into();
    let v = verify(&offers, &payload, now).unwrap();
    assert!(v.signature_checked, "the signed number is unchanged");
    assert_eq!(v.nonce32, decimal);
    for bad in ["0x", &format!("0x1{}", "0".repeat(64)), "0xg1", "0X1"] {
        payload["payload"]["permit2Authorization"]["nonce"] = bad.into();
        assert_eq!(verify(&offers, &payload, now).map(|_| ()), Err("invalid_payload"), "{bad}");
    }
}

#[test]
fn the_exact_path_refuses_an_upto_payment_with_a_typed_reason() {
    let (o, payload, now) = official();
    let offers = [o];
    let e = verify_exact(&offers, &decode(&payload), now, 30).unwrap_err();
    assert_eq!(e.reason, "unsupported_scheme");
    // And verify_upto refuses an exact payment to an exact offer.
    let mut exact = payload.clone();
    exact["accepted"]["scheme"] = "exact".into();
    exact["payload"] = json!({"signature": "0x00", "authorization": {"from": "0x857b06519E91e3A54538791bDbb0E22373e36b66", "to": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C", "value": "50000", "validAfter": "0", "validBefore": "1", "nonce": format!("0x{}", "00".repeat(32))}});
    let exact_offer = [offer(&exact["accepted"])];
    assert_eq!(verify(&exact_offer, &exact, now).unwrap_err(), "invalid_upto_evm_scheme");
    // An EIP-3009 payload under an upto `accepted`.
    let mut shaped = exact.clone();
    shaped["accepted"] = payload["accepted"].clone();
    assert_eq!(verify(&offers, &shaped, now).unwrap_err(), "unsupported_payload_type");
}

/// A mutation setting `permit2Authorization.<path>` to `to`.
fn set(path: &'static [&'static str], to: Value) -> impl FnOnce(&mut Value) {
    move |p: &mut Value| {
        let mut at = &mut p["payload"]["permit2Authorization"];
        for k in path {
            at = &mut at[*k];
        }
        *at = to;
    }
}

#[test]
fn each_predicate_refuses_with_the_official_reason() {
    let other = json!("0x1111111111111111111111111111111111111111");
    assert_eq!(refusal(set(&["spender"], json!("0x402085c248EeA27D92E8b30b2C58ed07f9E20001"))), "invalid_permit2_spender", "the exact proxy is not the upto proxy");
    assert_eq!(refusal(set(&["spender"], other.clone())), "invalid_permit2_spender");
    assert_eq!(refusal(set(&["witness", "to"], other.clone())), "invalid_permit2_recipient_mismatch");
    assert_eq!(refusal(set(&["witness", "facilitator"], other.clone())), "upto_facilitator_mismatch");
    assert_eq!(refusal(set(&["witness", "validAfter"], json!("1767225601"))), "permit2_not_yet_valid");
    assert_eq!(refusal(set(&["permitted", "amount"], json!("49999"))), "permit2_amount_mismatch");
    assert_eq!(refusal(set(&["permitted", "amount"], json!("50001"))), "permit2_amount_mismatch");
    assert_eq!(refusal(set(&["permitted", "token"], json!("0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913"))), "permit2_token_mismatch");
    // now 1767225600 + maxTimeoutSeconds 300 + 60 s skew is the latest deadline.
    assert_eq!(refusal(set(&["deadline"], json!("1767225961"))), "permit2_deadline_expired");
    assert_eq!(refusal(set(&["deadline"], json!("115792089237316195423570985008687907853269984665640564039457584007913129639935"))), "permit2_deadline_expired");
    // Fields that only the signature covers.
    assert_eq!(refusal(set(&["from"], other.clone())), "invalid_permit2_signature", "wrong signer");
    assert_eq!(refusal(set(&["nonce"], json!("1"))), "invalid_permit2_signature");
    assert_eq!(refusal(set(&["deadline"], json!("1767225960"))), "invalid_permit2_signature", "the latest deadline passes the window, not the signature");
    assert_eq!(refusal(set(&["witness", "validAfter"], json!("1"))), "invalid_permit2_signature");
    // The requirement the payment names.
    assert_eq!(refusal(|p| p["accepted"]["amount"] = "1".into()), "invalid_payment_requirements");
    assert_eq!(refusal(|p| p["accepted"]["extra"]["facilitatorAddress"] = other.clone()), "invalid_payment_requirements");
}

#[test]
fn a_signature_by_another_key_is_refused() {
    // A typed vector's signature (another key, another message): recovers to someone else.
    let sig = vectors()["typed"][0]["signature"].as_str().unwrap().to_string();
    assert_eq!(refusal(|p| p["payload"]["signature"] = sig.into()), "invalid_permit2_signature");
}

#[test]
fn malleable_and_malformed_signatures_are_refused() {
    let (_, payload, _) = official();
    let sig = decode_hex_0x(payload["payload"]["signature"].as_str().unwrap(), 65).unwrap();
    // s' = n - s with the other v recovers the same key, but is malleable (EIP-2).
    let n = U256::from_str_radix("fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141", 16).unwrap();
    let s = U256::from_be_slice(&sig[32..64]);
    let mut high = sig.clone();
    high[32..64].copy_from_slice(&(n - s).to_be_bytes::<32>());
    high[64] = if sig[64] == 27 { 28 } else { 27 };
    assert_eq!(refusal(|p| p["payload"]["signature"] = hex_0x(&high).into()), "invalid_permit2_signature", "high s");
    for v in [0u8, 1, 29] {
        let mut bad = sig.clone();
        bad[64] = v;
        assert_eq!(refusal(|p| p["payload"]["signature"] = hex_0x(&bad).into()), "invalid_permit2_signature", "v = {v}");
    }
    let mut zero_r = sig.clone();
    zero_r[..32].fill(0);
    assert_eq!(refusal(|p| p["payload"]["signature"] = hex_0x(&zero_r).into()), "invalid_permit2_signature", "r = 0");
    for junk in ["", "0x0", "0xzz", "2e828fe1", &format!("0x{}", "00".repeat(4097))] {
        assert_eq!(refusal(|p| p["payload"]["signature"] = junk.into()), "invalid_permit2_signature", "{junk:.20}");
    }
}

#[test]
fn a_non_eoa_signature_is_left_to_the_facilitator() {
    let (o, mut payload, now) = official();
    let offers = [o];
    for len in [64, 66, 4096] {
        payload["payload"]["signature"] = format!("0x{}", "5a".repeat(len)).into();
        let v = verify(&offers, &payload, now).unwrap();
        assert!(!v.signature_checked, "{len} bytes");
    }
}

#[test]
fn a_deadline_too_soon_is_returned_as_late() {
    let (o, payload, now) = official();
    let offers = [o];
    let deadline = now + 300;
    // Needs 301 s: late, with the deadline reason; the rest verified.
    let v = verify_upto(&offers, &decode(&payload), now, 301).unwrap();
    assert_eq!(v.late.as_ref().map(|l| l.reason), Some("permit2_deadline_expired"));
    assert!(v.signature_checked);
    assert!(verify_upto(&offers, &decode(&payload), now, 300).unwrap().late.is_none());
    // Past the deadline: late too (a retry the ledger may know); at least 6 s always.
    let v = verify_upto(&offers, &decode(&payload), deadline + 1, 0).unwrap();
    assert!(v.late.is_some());
    assert!(verify_upto(&offers, &decode(&payload), deadline - 5, 0).unwrap().late.is_some(), "the 6 s block slack");
    assert!(verify_upto(&offers, &decode(&payload), deadline - 6, 0).unwrap().late.is_none());
}

#[test]
fn an_offer_without_a_facilitator_address_refuses() {
    let (_, payload, now) = official();
    let mut r = payload["accepted"].clone();
    r["extra"].as_object_mut().unwrap().remove("facilitatorAddress");
    let mut p = payload.clone();
    p["accepted"] = r.clone();
    assert_eq!(verify(&[offer(&r)], &p, now).unwrap_err(), "upto_facilitator_mismatch");
}

#[test]
fn malformed_numbers_and_addresses_are_invalid_payload() {
    let (o, payload, now) = official();
    let offers = [o];
    let fields: [&[&str]; 9] = [&["from"], &["spender"], &["nonce"], &["deadline"], &["permitted", "token"], &["permitted", "amount"], &["witness", "to"], &["witness", "facilitator"], &["witness", "validAfter"]];
    let junk = ["", "0", "-1", "01", "1e3", "0x10", " 1", "0x123", "0xZZ11111111111111111111111111111111111111", "115792089237316195423570985008687907853269984665640564039457584007913129639936", "١٢٣"];
    for path in fields {
        for j in junk {
            let is_uint = matches!(path.last(), Some(&"nonce" | &"deadline" | &"amount" | &"validAfter"));
            if (is_uint && j == "0") || (path == ["nonce"] && matches!(j, "0x10" | "0x123")) {
                continue; // a well-formed uint256 (the nonce may be 0x hex)
            }
            let mut p = payload.clone();
            let mut at = &mut p["payload"]["permit2Authorization"];
            for k in path {
                at = &mut at[*k];
            }
            *at = j.into();
            assert_eq!(verify(&offers, &p, now).map(|_| ()), Err("invalid_payload"), "{path:?} = {j:?}");
        }
    }
}

#[test]
fn wrongly_typed_fields_fail_decoding_as_invalid_payload() {
    let (_, payload, _) = official();
    for (path, value) in [(&["nonce"][..], json!(7)), (&["permitted"][..], json!(null)), (&["witness", "validAfter"][..], json!(0)), (&["deadline"][..], json!([]))] {
        let mut p = payload.clone();
        let mut at = &mut p["payload"]["permit2Authorization"];
        for k in path {
            at = &mut at[*k];
        }
        *at = value;
        let e = decode_payment_signature(&encode_header(&p)).unwrap_err();
        assert_eq!(e.reason(), "invalid_payload", "{path:?}");
        assert!(e.to_string().contains("upto Permit2"), "{e}");
    }
}

#[test]
fn a_v1_upto_payment_is_refused() {
    let (o, payload, now) = official();
    let mut v1 = json!({"x402Version": 1, "scheme": "upto", "network": "base-sepolia", "payload": payload["payload"].clone()});
    assert_eq!(decode_x_payment(&encode_header(&v1)).unwrap_err().reason(), "unsupported_scheme");
    // A v1 exact payment handed to verify_upto: v1 has no upto.
    v1["scheme"] = "exact".into();
    v1["payload"] = json!({"signature": "0x00", "authorization": {"from": "0x857b06519E91e3A54538791bDbb0E22373e36b66", "to": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C", "value": "1", "validAfter": "0", "validBefore": "1", "nonce": format!("0x{}", "00".repeat(32))}});
    let p = decode_x_payment(&encode_header(&v1)).unwrap();
    assert_eq!(verify_upto(&[o], &p, now, 30).unwrap_err().reason, "unsupported_scheme");
}

#[test]
fn an_oversized_header_is_refused_before_parsing() {
    let (_, mut payload, _) = official();
    payload["payload"]["signature"] = format!("0x{}", "00".repeat(MAX_PAYMENT_HEADER_BYTES)).into();
    assert_eq!(decode_payment_signature(&encode_header(&payload)).unwrap_err().reason(), "invalid_payload");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// Any string in any field: decoding and verification answer, never panic, and only a
    /// signature field can pass (a non-EOA signature is left to the facilitator).
    #[test]
    fn hostile_field_values_never_panic(field in 0usize..10, junk in "\\PC{0,80}|[0-9]{70,90}|0x[0-9a-fA-F]{0,140}", now in any::<u64>(), min in any::<u64>()) {
        let (o, mut payload, _) = official();
        let offers = [o];
        let paths: [&[&str]; 10] = [&["from"], &["spender"], &["nonce"], &["deadline"], &["permitted", "token"], &["permitted", "amount"], &["witness", "to"], &["witness", "facilitator"], &["witness", "validAfter"], &["signature"]];
        let mut at = if field == 9 { &mut payload["payload"] } else { &mut payload["payload"]["permit2Authorization"] };
        for k in paths[field] {
            at = &mut at[*k];
        }
        *at = junk.into();
        if let Ok(p) = decode_payment_signature(&encode_header(&payload)) {
            let _ = verify_upto(&offers, &p, now, min);
            let _ = verify_exact(&offers, &p, now, min);
        }
    }
}
