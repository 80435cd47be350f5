//! The x402 `batch-settlement` (payment channel) path, pure Rust: our EIP-712 channel id, voucher,
//! refund and claim-batch hashing against viem and the official `@x402/evm` 2.27 client (vectors
//! in `tests/data/batch-settlement-vectors.json`, written by
//! `tests/support/gen-batch-settlement-vectors.mjs`), and `verify_voucher`: the official client's
//! deposit and voucher payloads decode and pass, and each check refuses with the official reason
//! code when one field is changed.

use proptest::prelude::*;
use ruint::aliases::U256;
use serde_json::{json, Value};
use x402_edge_paywall::evm::{decode_hex_0x, hex_0x, parse_bytes32, recover_signer, Address};
use x402_edge_paywall::x402::channel::{
    decode_batch_payment, domain_separator, parse_u128, reason, verify_voucher, BatchSettlementPayload, BatchSettlementRequirements, ChannelConfigWire, ChannelState, ChannelTerms, ClaimBatch, ClaimEntry, Refund,
    VerifiedVoucher, Voucher, BATCH_SETTLEMENT_ADDRESS, CHANNEL_CONFIG_TYPE, CLAIM_BATCH_TYPE, REFUND_TYPE, VOUCHER_TYPE,
};
use x402_edge_paywall::x402::{encode_header, MAX_PAYMENT_HEADER_BYTES};

fn vectors() -> Value {
    serde_json::from_str(include_str!("data/batch-settlement-vectors.json")).expect("vector file is JSON")
}

fn b32(v: &Value) -> [u8; 32] {
    parse_bytes32(v.as_str().unwrap()).unwrap()
}

fn config_wire(v: &Value) -> ChannelConfigWire {
    serde_json::from_value(v.clone()).unwrap()
}

/// Payment `i` of the vectors: (terms, payment payload JSON, the channel state the server holds, now).
fn official(i: usize) -> (ChannelTerms, Value, ChannelState, u64) {
    let v = vectors();
    let p = &v["payments"][i];
    let r: BatchSettlementRequirements = serde_json::from_value(p["requirements"].clone()).unwrap();
    let terms = ChannelTerms::from_requirements(&r).unwrap();
    let s = &p["channelState"];
    let n = |k: &str| parse_u128(s[k].as_str().unwrap()).unwrap();
    let state = ChannelState { channel_id: b32(&p["paymentPayload"]["payload"]["voucher"]["channelId"]), balance: n("balance"), total_claimed: n("totalClaimed"), charged_cumulative: n("chargedCumulativeAmount"), withdraw_requested_at: 0 };
    (terms, p["paymentPayload"].clone(), state, p["now"].as_u64().unwrap())
}

const DEPOSIT: usize = 0;
const VOUCHER: usize = 1;
const WINDOW: u64 = 3600;

fn check(terms: &ChannelTerms, payload: &Value, state: &ChannelState, now: u64) -> Result<VerifiedVoucher, &'static str> {
    let payment = decode_batch_payment(&encode_header(payload)).map_err(|e| e.reason)?;
    verify_voucher(terms, &payment.payload, state, now, WINDOW).map_err(|e| e.reason)
}

/// The reason `verify_voucher` gives for official payment `i` after `mutate` changes the payload,
/// the terms or the state.
fn refusal(i: usize, mutate: impl FnOnce(&mut ChannelTerms, &mut Value, &mut ChannelState)) -> &'static str {
    let (mut terms, mut payload, mut state, now) = official(i);
    mutate(&mut terms, &mut payload, &mut state);
    match check(&terms, &payload, &state, now) {
        Ok(v) => panic!("accepted: {v:?}"),
        Err(reason) => reason,
    }
}

#[test]
fn the_type_strings_are_the_official_ones() {
    let v = vectors();
    assert_eq!(v["typeStrings"]["ChannelConfig"], CHANNEL_CONFIG_TYPE);
    assert_eq!(v["typeStrings"]["Voucher"], VOUCHER_TYPE);
    assert_eq!(v["typeStrings"]["Refund"], REFUND_TYPE);
    assert_eq!(v["typeStrings"]["ClaimBatch"], CLAIM_BATCH_TYPE);
    assert_eq!(Address::parse(v["escrow"].as_str().unwrap()), Some(BATCH_SETTLEMENT_ADDRESS));
}

#[test]
fn channel_ids_and_voucher_digests_equal_viems_and_recover_the_signer() {
    let v = vectors();
    let typed = v["typed"].as_array().unwrap();
    assert_eq!(typed.len(), 4);
    for t in typed {
        let id = t["id"].as_str().unwrap();
        let chain_id = t["chainId"].as_u64().unwrap();
        let config = config_wire(&t["channelConfig"]).parse().unwrap();
        assert_eq!(hex_0x(&config.struct_hash()), t["channelConfigStructHash"].as_str().unwrap(), "{id}: ChannelConfig struct hash");
        assert_eq!(config.channel_id(chain_id), b32(&t["channelId"]), "{id}: channel id");
        let voucher = Voucher { channel_id: b32(&t["channelId"]), max_claimable_amount: parse_u128(t["voucherTypedData"]["message"]["maxClaimableAmount"].as_str().unwrap()).unwrap() };
        assert_eq!(hex_0x(&domain_separator(chain_id)), t["domainSeparator"].as_str().unwrap(), "{id}: domain");
        assert_eq!(hex_0x(&voucher.struct_hash()), t["structHash"].as_str().unwrap(), "{id}: voucher struct hash");
        let digest = voucher.digest(chain_id);
        assert_eq!(hex_0x(&digest), t["digest"].as_str().unwrap(), "{id}: voucher digest");
        let sig = decode_hex_0x(t["signature"].as_str().unwrap(), 65).unwrap();
        assert_eq!(recover_signer(&digest, &sig).unwrap(), Address::parse(t["signer"].as_str().unwrap()).unwrap(), "{id}: signer");
        assert_eq!(config.payer_authorizer, Address::parse(t["signer"].as_str().unwrap()).unwrap(), "{id}: the voucher signer is the payerAuthorizer");
    }
    // One vector has a payerAuthorizer other than the payer (a delegated voucher key).
    assert!(typed.iter().any(|t| t["channelConfig"]["payer"] != t["channelConfig"]["payerAuthorizer"]));
}

#[test]
fn refund_and_claim_batch_digests_equal_viems() {
    let v = vectors();
    for t in v["receiverSigned"].as_array().unwrap() {
        let id = t["id"].as_str().unwrap();
        let td = &t["typedData"];
        let chain_id = td["domain"]["chainId"].as_u64().unwrap();
        let m = &td["message"];
        let u = |v: &Value| parse_u128(v.as_str().unwrap()).unwrap();
        let (struct_hash, digest) = match td["primaryType"].as_str().unwrap() {
            "Refund" => {
                let r = Refund { channel_id: b32(&m["channelId"]), nonce: U256::from(u(&m["nonce"])), amount: u(&m["amount"]) };
                (r.struct_hash(), r.digest(chain_id))
            }
            "ClaimBatch" => {
                let b = ClaimBatch { claims: m["claims"].as_array().unwrap().iter().map(|c| ClaimEntry { channel_id: b32(&c["channelId"]), max_claimable_amount: u(&c["maxClaimableAmount"]), total_claimed: u(&c["totalClaimed"]) }).collect() };
                (b.struct_hash(), b.digest(chain_id))
            }
            other => panic!("{id}: unexpected {other}"),
        };
        assert_eq!(hex_0x(&struct_hash), t["structHash"].as_str().unwrap(), "{id}: struct hash");
        assert_eq!(hex_0x(&digest), t["digest"].as_str().unwrap(), "{id}: digest");
        let sig = decode_hex_0x(t["signature"].as_str().unwrap(), 65).unwrap();
        assert_eq!(recover_signer(&digest, &sig).unwrap(), Address::parse(t["signer"].as_str().unwrap()).unwrap(), "{id}: signer");
    }
}

#[test]
fn the_official_payloads_decode_with_their_digests_and_pass() {
    let v = vectors();
    let payments = v["payments"].as_array().unwrap();
    assert_eq!(payments.len(), 4);
    for (i, p) in payments.iter().enumerate() {
        let id = p["id"].as_str().unwrap();
        let (terms, payload, state, now) = official(i);
        let decoded = decode_batch_payment(&encode_header(&payload)).unwrap();
        assert_eq!(decoded.accepted, p["requirements"], "{id}: accepted is the offered requirement");
        let voucher = Voucher { channel_id: state.channel_id, max_claimable_amount: parse_u128(p["paymentPayload"]["payload"]["voucher"]["maxClaimableAmount"].as_str().unwrap()).unwrap() };
        assert_eq!(hex_0x(&voucher.digest(terms.chain_id)), p["digest"].as_str().unwrap(), "{id}: digest");
        let ok = verify_voucher(&terms, &decoded.payload, &state, now, WINDOW).unwrap_or_else(|e| panic!("{id}: {e:?}"));
        let kind = p["paymentPayload"]["payload"]["type"].as_str().unwrap();
        assert_eq!(ok.kind, kind, "{id}");
        assert!(ok.signature_checked, "{id}: the official client signs with an EOA payerAuthorizer");
        assert_eq!(ok.config.payer, Address::parse(p["signer"].as_str().unwrap()).unwrap(), "{id}: payer");
        assert_eq!(ok.charge, terms.price, "{id}: a paid voucher charges the price");
        assert_eq!(ok.max_claimable_amount, state.charged_cumulative + terms.price, "{id}");
        assert_eq!(ok.channel_id, state.channel_id);
        match kind {
            "deposit" => {
                assert_eq!(ok.deposit_amount, parse_u128(p["paymentPayload"]["payload"]["deposit"]["amount"].as_str().unwrap()), "{id}");
                assert!(matches!(decoded.payload, BatchSettlementPayload::Deposit { ref deposit, .. } if deposit.authorization.erc3009_authorization.is_some()), "{id}: the default transfer method is ERC-3009");
            }
            "voucher" => assert_eq!(ok.deposit_amount, None),
            other => panic!("{other}"),
        }
        // The wire type round-trips the client's payload exactly.
        assert_eq!(serde_json::to_value(&decoded.payload).unwrap(), p["paymentPayload"]["payload"], "{id}: payload round-trips");
    }
}

#[test]
fn the_official_requirement_round_trips_and_gives_the_terms() {
    let v = vectors();
    let req = &v["payments"][0]["requirements"];
    let r: BatchSettlementRequirements = serde_json::from_value(req.clone()).unwrap();
    assert_eq!(&serde_json::to_value(&r).unwrap(), req, "extra: name, version, receiverAuthorizer, withdrawDelay, minDeposit");
    assert_eq!(r.extra.withdraw_delay, 900);
    assert_eq!(r.extra.min_deposit.as_deref(), Some("10000"), "the official server's default minDeposit is 10 × amount");
    let t = ChannelTerms::from_requirements(&r).unwrap();
    assert_eq!((t.chain_id, t.price), (84532, 1000));
    let mut zero = r.clone();
    zero.extra.receiver_authorizer = format!("0x{}", "0".repeat(40));
    assert_eq!(ChannelTerms::from_requirements(&zero).unwrap_err().reason, "invalid_payment_requirements");
}

#[test]
fn a_voucher_that_is_not_exactly_the_charged_amount_plus_the_price_is_a_cumulative_mismatch() {
    // Replayed: the server already charged this voucher.
    assert_eq!(refusal(VOUCHER, |_, _, s| s.charged_cumulative += 1000), reason::CUMULATIVE_AMOUNT_MISMATCH);
    // Stale base on the server's side (the client is ahead).
    assert_eq!(refusal(VOUCHER, |_, _, s| s.charged_cumulative -= 1), reason::CUMULATIVE_AMOUNT_MISMATCH);
    // A higher price than the client signed for.
    assert_eq!(refusal(VOUCHER, |t, _, _| t.price += 1), reason::CUMULATIVE_AMOUNT_MISMATCH);
    // The amount changed after signing: the signature no longer covers it (checked before the
    // channel state, which the worker does not hold).
    assert_eq!(refusal(VOUCHER, |_, p, _| p["payload"]["voucher"]["maxClaimableAmount"] = json!("4001")), reason::VOUCHER_SIGNATURE);
}

#[test]
fn a_voucher_with_the_right_amount_but_another_signer_is_refused() {
    let (terms, mut payload, state, now) = official(VOUCHER);
    // Sign the same voucher with another key and keep the payer's config: recovers to someone else.
    let other = decode_hex_0x(vectors()["typed"][0]["signature"].as_str().unwrap(), 65).unwrap();
    payload["payload"]["voucher"]["signature"] = json!(hex_0x(&other));
    assert_eq!(check(&terms, &payload, &state, now).unwrap_err(), reason::VOUCHER_SIGNATURE);
    for junk in ["0x", "0x1234", "nothex", &format!("0x{}", "ab".repeat(65))] {
        let mut p = payload.clone();
        p["payload"]["voucher"]["signature"] = json!(junk);
        assert_eq!(check(&terms, &p, &state, now).unwrap_err(), reason::VOUCHER_SIGNATURE, "{junk}");
    }
    // A high-s twin of the valid signature is refused (malleable).
    let (_, good, _, _) = official(VOUCHER);
    let mut sig = decode_hex_0x(good["payload"]["voucher"]["signature"].as_str().unwrap(), 65).unwrap();
    let n = U256::from_str_radix("fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141", 16).unwrap();
    let s = U256::from_be_slice(&sig[32..64]);
    sig[32..64].copy_from_slice(&(n - s).to_be_bytes::<32>());
    sig[64] = if sig[64] == 27 { 28 } else { 27 };
    let mut p = good.clone();
    p["payload"]["voucher"]["signature"] = json!(hex_0x(&sig));
    assert_eq!(check(&terms, &p, &state, now).unwrap_err(), reason::VOUCHER_SIGNATURE);
}

#[test]
fn a_voucher_for_another_channel_or_receiver_is_refused() {
    // The record the caller holds is another channel's.
    assert_eq!(refusal(VOUCHER, |_, _, s| s.channel_id[0] ^= 1), reason::CHANNEL_ID_MISMATCH);
    // The declared id is not the config's hash.
    assert_eq!(refusal(VOUCHER, |_, p, _| p["payload"]["voucher"]["channelId"] = json!(format!("0x{}", "11".repeat(32)))), reason::CHANNEL_ID_MISMATCH);
    // Another salt: another channel.
    assert_eq!(refusal(VOUCHER, |_, p, _| p["payload"]["channelConfig"]["salt"] = json!(format!("0x{}", "01".repeat(32)))), reason::CHANNEL_ID_MISMATCH);
    // The same config on another chain is another channel.
    assert_eq!(refusal(VOUCHER, |t, _, _| t.chain_id = 8453), reason::CHANNEL_ID_MISMATCH);
    // A channel to another receiver (its id recomputed, so only the receiver check can see it).
    let recomputed = |t: &ChannelTerms, p: &mut Value, s: &mut ChannelState, field: &str, value: Value| {
        p["payload"]["channelConfig"][field] = value;
        let id = config_wire(&p["payload"]["channelConfig"]).parse().unwrap().channel_id(t.chain_id);
        p["payload"]["voucher"]["channelId"] = json!(hex_0x(&id));
        s.channel_id = id;
    };
    let stranger = json!("0x1111111111111111111111111111111111111111");
    assert_eq!(refusal(VOUCHER, |t, p, s| recomputed(t, p, s, "receiver", stranger.clone())), reason::RECEIVER_MISMATCH);
    assert_eq!(refusal(VOUCHER, |t, p, s| recomputed(t, p, s, "receiverAuthorizer", stranger.clone())), reason::RECEIVER_AUTHORIZER_MISMATCH);
    assert_eq!(refusal(VOUCHER, |t, p, s| recomputed(t, p, s, "token", stranger.clone())), reason::TOKEN_MISMATCH);
    assert_eq!(refusal(VOUCHER, |t, p, s| recomputed(t, p, s, "withdrawDelay", json!(901))), reason::WITHDRAW_DELAY_MISMATCH);
    assert_eq!(
        refusal(VOUCHER, |t, p, s| {
            t.withdraw_delay = 60;
            recomputed(t, p, s, "withdrawDelay", json!(60))
        }),
        reason::WITHDRAW_DELAY_OUT_OF_RANGE
    );
    // payerAuthorizer changed (id recomputed): the payer's signature no longer matches.
    assert_eq!(refusal(VOUCHER, |t, p, s| recomputed(t, p, s, "payerAuthorizer", stranger.clone())), reason::VOUCHER_SIGNATURE);
}

#[test]
fn a_voucher_beyond_the_deposit_or_not_above_the_claimed_amount_is_refused() {
    assert_eq!(refusal(VOUCHER, |_, _, s| s.balance = 3999), reason::CUMULATIVE_EXCEEDS_BALANCE);
    assert_eq!(refusal(VOUCHER, |_, _, s| s.total_claimed = 4000), reason::CUMULATIVE_BELOW_CLAIMED);
    assert_eq!(refusal(VOUCHER, |_, _, s| s.balance = 0), reason::CHANNEL_NOT_FOUND);
    // The deposit payload brings its own balance: with none on chain it passes (official case),
    // but not if the voucher exceeds what is deposited.
    assert_eq!(refusal(DEPOSIT, |_, p, _| p["payload"]["deposit"]["amount"] = json!("999")), reason::CUMULATIVE_EXCEEDS_BALANCE);
    assert_eq!(refusal(DEPOSIT, |_, p, _| p["payload"]["deposit"]["amount"] = json!("0")), reason::DEPOSIT_PAYLOAD);
    assert_eq!(refusal(DEPOSIT, |_, p, _| p["payload"]["deposit"]["authorization"] = json!({})), reason::ERC3009_AUTHORIZATION_REQUIRED);
    // Exactly at the balance is fine.
    let (terms, payload, mut state, now) = official(VOUCHER);
    state.balance = 4000;
    assert!(check(&terms, &payload, &state, now).is_ok());
}

#[test]
fn a_channel_whose_withdrawal_completes_inside_the_claim_window_is_refused() {
    let (terms, payload, mut state, now) = official(VOUCHER);
    // Withdrawal started now: completes at now + 900 < now + 3600.
    state.withdraw_requested_at = now;
    assert_eq!(check(&terms, &payload, &state, now).unwrap_err(), reason::WITHDRAWAL_CLOSES_CLAIM_WINDOW);
    // With a claim window shorter than the delay left, it is still claimable: accepted.
    let p = decode_batch_payment(&encode_header(&payload)).unwrap();
    assert!(verify_voucher(&terms, &p.payload, &state, now, 600).is_ok());
    assert_eq!(verify_voucher(&terms, &p.payload, &state, now, 901).unwrap_err().reason, reason::WITHDRAWAL_CLOSES_CLAIM_WINDOW);
    // Hostile times saturate rather than wrap.
    state.withdraw_requested_at = u64::MAX;
    assert!(verify_voucher(&terms, &p.payload, &state, u64::MAX, u64::MAX).is_ok());
}

#[test]
fn a_refund_is_a_zero_charge_voucher() {
    let (terms, mut payload, state, now) = official(VOUCHER);
    payload["payload"]["type"] = json!("refund");
    // The client's refund voucher signs exactly the charged amount: the official voucher (charged
    // + price) is a mismatch for a refund.
    assert_eq!(check(&terms, &payload, &state, now).unwrap_err(), reason::CUMULATIVE_AMOUNT_MISMATCH);
    let mut state = state;
    state.charged_cumulative += terms.price;
    state.total_claimed = state.charged_cumulative; // a refund's voucher may equal the claimed total
    let ok = check(&terms, &payload, &state, now).unwrap();
    assert_eq!((ok.kind, ok.charge, ok.refund_amount), ("refund", 0, None));
    payload["payload"]["amount"] = json!("1500");
    assert_eq!(check(&terms, &payload, &state, now).unwrap().refund_amount, Some(1500));
    payload["payload"]["amount"] = json!("0");
    assert_eq!(check(&terms, &payload, &state, now).unwrap_err(), reason::REFUND_AMOUNT_INVALID);
    payload["payload"]["amount"] = json!("1500");
    state.balance = state.charged_cumulative;
    assert_eq!(check(&terms, &payload, &state, now).unwrap_err(), reason::REFUND_NO_BALANCE);
}

#[test]
fn server_authored_payloads_decode_but_carry_no_voucher_to_verify() {
    let (terms, mut payload, state, now) = official(VOUCHER);
    let cfg = payload["payload"]["channelConfig"].clone();
    let voucher = payload["payload"]["voucher"].clone();
    payload["payload"] = json!({"type": "claim", "claims": [{"voucher": {"channel": cfg, "maxClaimableAmount": voucher["maxClaimableAmount"]}, "signature": voucher["signature"], "totalClaimed": "4000"}]});
    let p = decode_batch_payment(&encode_header(&payload)).unwrap();
    assert!(matches!(&p.payload, BatchSettlementPayload::Claim { claims, claim_authorizer_signature: None } if claims.len() == 1));
    assert_eq!(verify_voucher(&terms, &p.payload, &state, now, WINDOW).unwrap_err().reason, reason::PAYLOAD_TYPE);
    payload["payload"] = json!({"type": "settle", "receiver": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C", "token": "0x036CbD53842c5426634e7929541eC2318f3dCF7e"});
    let p = decode_batch_payment(&encode_header(&payload)).unwrap();
    assert_eq!(p.payload.kind(), "settle");
}

#[test]
fn the_decoder_refuses_what_is_not_a_batch_settlement_payment() {
    let (_, payload, _, _) = official(VOUCHER);
    let reason = |p: &Value| decode_batch_payment(&encode_header(p)).unwrap_err().reason;
    let mut p = payload.clone();
    p["x402Version"] = json!(1);
    assert_eq!(reason(&p), "invalid_x402_version");
    let mut p = payload.clone();
    p["accepted"]["scheme"] = json!("exact");
    assert_eq!(reason(&p), reason::SCHEME);
    let mut p = payload.clone();
    p["payload"]["type"] = json!("tip");
    assert_eq!(reason(&p), "invalid_payload");
    let mut p = payload.clone();
    p["payload"]["channelConfig"]["withdrawDelay"] = json!("900");
    assert_eq!(reason(&p), "invalid_payload", "withdrawDelay is a JSON number on the wire");
    assert_eq!(decode_batch_payment("%%%").unwrap_err().reason, "invalid_payload");
    assert_eq!(decode_batch_payment(&"A".repeat(MAX_PAYMENT_HEADER_BYTES + 1)).unwrap_err().reason, "invalid_payload");
    // Too many claim rows.
    let row = json!({"voucher": {"channel": payload["payload"]["channelConfig"], "maxClaimableAmount": "1"}, "signature": "0x", "totalClaimed": "1"});
    let mut p = payload.clone();
    p["payload"] = json!({"type": "claim", "claims": vec![row; 1001]});
    let header = x402_edge_paywall::x402::encode_header(&p);
    assert!(header.len() > MAX_PAYMENT_HEADER_BYTES || decode_batch_payment(&header).is_err());
    // A uint40 withdrawDelay bound and malformed addresses are payload errors, not panics.
    let (terms, mut p, state, now) = official(VOUCHER);
    p["payload"]["channelConfig"]["withdrawDelay"] = json!(1u64 << 40);
    assert_eq!(check(&terms, &p, &state, now).unwrap_err(), reason::VOUCHER_PAYLOAD);
    let mut p = payload.clone();
    p["payload"]["voucher"]["channelId"] = json!("0x1234");
    assert_eq!(check(&terms, &p, &state, now).unwrap_err(), reason::CHANNEL_ID_INVALID);
    let mut p = payload.clone();
    p["payload"]["voucher"]["maxClaimableAmount"] = json!("340282366920938463463374607431768211456");
    assert_eq!(check(&terms, &p, &state, now).unwrap_err(), reason::VOUCHER_PAYLOAD, "2^128 does not fit uint128");
}

#[test]
fn a_zero_payer_authorizer_leaves_the_signature_to_the_facilitator() {
    let (terms, mut p, mut state, now) = official(VOUCHER);
    p["payload"]["channelConfig"]["payerAuthorizer"] = json!(format!("0x{}", "0".repeat(40)));
    let id = config_wire(&p["payload"]["channelConfig"]).parse().unwrap().channel_id(terms.chain_id);
    p["payload"]["voucher"]["channelId"] = json!(hex_0x(&id));
    state.channel_id = id;
    let ok = check(&terms, &p, &state, now).unwrap();
    assert!(!ok.signature_checked, "an EIP-1271 payer's voucher is for the facilitator's /verify");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// Any string in any field, any state: decoding and verification answer, never panic.
    #[test]
    fn hostile_inputs_never_panic(field in 0usize..12, junk in "\\PC{0,80}|[0-9]{30,90}|0x[0-9a-fA-F]{0,140}", which in 0usize..2,
        balance in any::<u128>(), claimed in any::<u128>(), charged in any::<u128>(), wra in any::<u64>(), now in any::<u64>(), window in any::<u64>(), price in any::<u128>()) {
        let (mut terms, mut payload, mut state, _) = official(which);
        let paths: [&[&str]; 12] = [
            &["channelConfig", "payer"], &["channelConfig", "payerAuthorizer"], &["channelConfig", "receiver"], &["channelConfig", "receiverAuthorizer"],
            &["channelConfig", "token"], &["channelConfig", "salt"], &["channelConfig", "withdrawDelay"], &["voucher", "channelId"],
            &["voucher", "maxClaimableAmount"], &["voucher", "signature"], &["deposit", "amount"], &["type"],
        ];
        let mut at = &mut payload["payload"];
        for k in paths[field] {
            at = &mut at[*k];
        }
        *at = junk.into();
        state.balance = balance;
        state.total_claimed = claimed;
        state.charged_cumulative = charged;
        state.withdraw_requested_at = wra;
        terms.price = price;
        if let Ok(p) = decode_batch_payment(&encode_header(&payload)) {
            let _ = verify_voucher(&terms, &p.payload, &state, now, window);
        }
    }
}
