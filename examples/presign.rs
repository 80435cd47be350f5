//! Load-generation helper for the benchmark: prints N `PAYMENT-SIGNATURE` values, one per line,
//! each a fresh payment for the requirement given as JSON in argv[1], signed by the anvil test
//! key #2 (or round-robin over `PAYERS` payers, see `main`). Usage: `presign '<accepted JSON>' N`.
//!
//! The requirement's `scheme` picks what is signed:
//! - `exact`: an EIP-3009 `TransferWithAuthorization` of `amount` to `payTo`, random 32-byte
//!   nonce, valid from 600 s ago until `maxTimeoutSeconds` from now;
//! - `upto`: a Permit2 `PermitWitnessTransferFrom` for at most `amount` of `asset`, spender the
//!   x402 upto proxy, witness `{to: payTo, facilitator: extra.facilitatorAddress, validAfter: 0}`,
//!   a random uint256 Permit2 nonce, deadline `maxTimeoutSeconds` from now (what the official
//!   `@x402/evm` upto client signs: x402 `specs/schemes/upto/scheme_upto_evm.md`);
//! - `batch-settlement`: N cumulative vouchers (`maxClaimableAmount` = k × `amount`, k = 1..N)
//!   on the channel of the payer whose key is 32 bytes of `CHANNEL` + 1 (env, default 0; its
//!   own payer authorizer, salt 0, receiver `payTo`, `extra.receiverAuthorizer`,
//!   `extra.withdrawDelay`), in order: what one client sends on one channel.

use k256::ecdsa::SigningKey;
use ruint::aliases::U256;
use serde_json::{json, Value};
use x402_edge_paywall::evm::{address_of, caip2_chain_id, hex_0x, parse_uint256, Address, Eip712Domain, TransferWithAuthorization};
use x402_edge_paywall::x402::encode_header;
use x402_edge_paywall::x402::permit2::{UptoPermitWitnessTransferFrom, UPTO_PROXY_ADDRESS};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let accepted: Value = serde_json::from_str(args.get(1).map(String::as_str).unwrap_or("{}")).expect("accepted JSON");
    let n: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1000);
    let key_bytes = hex32("5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a");
    let key = SigningKey::from_slice(&key_bytes).expect("key");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs();
    let mut out = String::new();
    if accepted["scheme"].as_str() == Some("batch-settlement") {
        let channel: u8 = std::env::var("CHANNEL").ok().and_then(|c| c.parse().ok()).unwrap_or(0);
        for k in 1..=n {
            out.push_str(&encode_header(&voucher(channel, &accepted, k as u128)));
            out.push('\n');
        }
        print!("{out}");
        return;
    }
    // PAYERS (env, default 1, at most 64): payments round-robin over that many payers, the first
    // the anvil key above, the others 32 bytes of 0xA0 + i (single-payer vs many-payer load).
    let payers: usize = std::env::var("PAYERS").ok().and_then(|p| p.parse().ok()).unwrap_or(1).clamp(1, 64);
    let keys: Vec<SigningKey> = (0..payers).map(|i| if i == 0 { key.clone() } else { SigningKey::from_slice(&[0xA0 + i as u8; 32]).expect("key") }).collect();
    for i in 0..n {
        let key = &keys[i % payers];
        let payload = match accepted["scheme"].as_str() {
            Some("upto") => upto(key, &accepted, now),
            Some("exact") => exact(key, &accepted, now),
            other => panic!("presign: scheme {other:?} is not exact or upto"),
        };
        out.push_str(&encode_header(&payload));
        out.push('\n');
    }
    print!("{out}");
}

fn field(accepted: &Value, k: &str) -> String {
    accepted[k].as_str().unwrap_or_else(|| panic!("accepted.{k}")).to_string()
}

fn random32() -> [u8; 32] {
    let mut nonce = [0u8; 32];
    getrandom::fill(&mut nonce).expect("random");
    nonce
}

/// 65-byte `r ‖ s ‖ v` signature of a prehash, `v` 27 or 28.
fn sign(key: &SigningKey, digest: &[u8; 32]) -> String {
    let (sig, recid) = key.sign_prehash_recoverable(digest);
    let mut bytes = sig.to_bytes().to_vec();
    bytes.push(27 + recid.to_byte());
    hex_0x(&bytes)
}

/// An `exact` payment: EIP-3009 `TransferWithAuthorization`.
fn exact(key: &SigningKey, accepted: &Value, now: u64) -> Value {
    let from = address_of(key.verifying_key());
    let domain = Eip712Domain {
        name: accepted["extra"]["name"].as_str().expect("name").into(),
        version: accepted["extra"]["version"].as_str().expect("version").into(),
        chain_id: caip2_chain_id(&field(accepted, "network")).expect("eip155 network"),
        verifying_contract: Address::parse(&field(accepted, "asset")).expect("asset"),
    };
    let (after, before) = (now - 600, now + accepted["maxTimeoutSeconds"].as_u64().unwrap_or(300));
    let nonce = random32();
    let msg = TransferWithAuthorization {
        from,
        to: Address::parse(&field(accepted, "payTo")).expect("payTo"),
        value: parse_uint256(&field(accepted, "amount")).expect("amount"),
        valid_after: parse_uint256(&after.to_string()).expect("after"),
        valid_before: parse_uint256(&before.to_string()).expect("before"),
        nonce,
    };
    json!({
        "x402Version": 2,
        "accepted": accepted,
        "payload": { "signature": sign(key, &msg.digest(&domain.separator())), "authorization": {
            "from": from.to_checksum(), "to": field(accepted, "payTo"), "value": field(accepted, "amount"),
            "validAfter": after.to_string(), "validBefore": before.to_string(), "nonce": hex_0x(&nonce) } }
    })
}

/// An `upto` payment: Permit2 `PermitWitnessTransferFrom` with the upto witness.
fn upto(key: &SigningKey, accepted: &Value, now: u64) -> Value {
    let from = address_of(key.verifying_key());
    let asset = Address::parse(&field(accepted, "asset")).expect("asset");
    let pay_to = Address::parse(&field(accepted, "payTo")).expect("payTo");
    let facilitator = Address::parse(accepted["extra"]["facilitatorAddress"].as_str().expect("extra.facilitatorAddress")).expect("facilitatorAddress");
    let amount = parse_uint256(&field(accepted, "amount")).expect("amount");
    let deadline = now + accepted["maxTimeoutSeconds"].as_u64().unwrap_or(300);
    let nonce = U256::from_be_bytes(random32());
    let msg = UptoPermitWitnessTransferFrom {
        token: asset,
        amount,
        spender: UPTO_PROXY_ADDRESS,
        nonce,
        deadline: U256::from(deadline),
        to: pay_to,
        facilitator,
        valid_after: U256::ZERO,
    };
    let chain_id = caip2_chain_id(&field(accepted, "network")).expect("eip155 network");
    json!({
        "x402Version": 2,
        "accepted": accepted,
        "payload": { "signature": sign(key, &msg.digest(chain_id)), "permit2Authorization": {
            "from": from.to_checksum(),
            "permitted": { "token": asset.to_checksum(), "amount": amount.to_string() },
            "spender": UPTO_PROXY_ADDRESS.to_checksum(),
            "nonce": nonce.to_string(),
            "deadline": deadline.to_string(),
            "witness": { "to": pay_to.to_checksum(), "facilitator": facilitator.to_checksum(), "validAfter": "0" } } }
    })
}

/// The `k`-th voucher (`maxClaimableAmount` = k × `amount`) on the channel of payer `channel`.
fn voucher(channel: u8, accepted: &Value, k: u128) -> Value {
    use x402_edge_paywall::x402::channel::{ChannelConfig, Voucher};
    let key = SigningKey::from_slice(&[channel.wrapping_add(1); 32]).expect("key");
    let payer = address_of(key.verifying_key());
    let extra = &accepted["extra"];
    let config = ChannelConfig {
        payer,
        payer_authorizer: payer,
        receiver: Address::parse(&field(accepted, "payTo")).expect("payTo"),
        receiver_authorizer: Address::parse(extra["receiverAuthorizer"].as_str().expect("extra.receiverAuthorizer")).expect("receiverAuthorizer"),
        token: Address::parse(&field(accepted, "asset")).expect("asset"),
        withdraw_delay: extra["withdrawDelay"].as_u64().expect("extra.withdrawDelay"),
        salt: [0; 32],
    };
    let chain_id = caip2_chain_id(&field(accepted, "network")).expect("eip155 network");
    let id = config.channel_id(chain_id);
    let max = k * field(accepted, "amount").parse::<u128>().expect("amount");
    let channel_config = json!({
        "payer": payer.to_checksum(), "payerAuthorizer": payer.to_checksum(), "receiver": config.receiver.to_checksum(),
        "receiverAuthorizer": config.receiver_authorizer.to_checksum(), "token": config.token.to_checksum(),
        "withdrawDelay": config.withdraw_delay, "salt": hex_0x(&[0; 32]),
    });
    let signature = sign(&key, &Voucher { channel_id: id, max_claimable_amount: max }.digest(chain_id));
    json!({
        "x402Version": 2,
        "accepted": accepted,
        "payload": { "type": "voucher", "channelConfig": channel_config, "voucher": { "channelId": hex_0x(&id), "maxClaimableAmount": max.to_string(), "signature": signature } }
    })
}

fn hex32(h: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (i, c) in h.as_bytes().chunks(2).enumerate() {
        out[i] = u8::from_str_radix(std::str::from_utf8(c).unwrap_or("00"), 16).unwrap_or(0);
    }
    out
}
