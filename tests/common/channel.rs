//! Payment-channel helpers for the host tests (`tests/channels.rs`, `tests/channels_hostile.rs`):
//! a payer's channel to a receiver, vouchers signed by a key, the payloads and the facilitator's
//! answers a channel request meets. Chain eip155:84532, the network's USDC, withdrawDelay 900,
//! salt 0.

use serde_json::{json, Value};
use x402_edge_paywall::config::Config;
use x402_edge_paywall::evm::{hex_0x, Address};
use x402_edge_paywall::x402::channel::{ChannelConfig, Voucher};
use x402_edge_paywall::x402::encode_header;

use super::{payer, reply, tx, Canned, NOW};

/// The offers' `receiverAuthorizer` (`RECEIVER_AUTHORIZER` in the tests' configurations).
pub const AUTHORIZER: &str = "0x90F79bf6EB2c4f870365E785982E1f101E93b906";
pub const USDC: &str = "0x036CbD53842c5426634e7929541eC2318f3dCF7e";
/// The tests' `PAY_TO`: the channels' receiver.
pub const PAY_TO: &str = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C";
/// $0.01 in USDC atomic units.
pub const PRICE: u128 = 10_000;

/// The channel of the payer made of `key` to `receiver`: payerAuthorizer the payer, or zero when
/// `smart` (an EIP-1271 wallet, checked by the facilitator). Its typed form and its wire form.
pub fn channel_of(key: u8, receiver: &str, smart: bool) -> (ChannelConfig, Value) {
    let c = ChannelConfig {
        payer: payer(key),
        payer_authorizer: if smart { Address([0; 20]) } else { payer(key) },
        receiver: Address::parse(receiver).unwrap(),
        receiver_authorizer: Address::parse(AUTHORIZER).unwrap(),
        token: Address::parse(USDC).unwrap(),
        withdraw_delay: 900,
        salt: [0; 32],
    };
    let wire = json!({ "payer": c.payer.to_checksum(), "payerAuthorizer": c.payer_authorizer.to_checksum(), "receiver": c.receiver.to_checksum(), "receiverAuthorizer": AUTHORIZER, "token": USDC, "withdrawDelay": 900, "salt": hex_0x(&[0; 32]) });
    (c, wire)
}

/// The id (`0x` hex) of [`channel_of`].
pub fn channel_id_of(key: u8, smart: bool) -> String {
    hex_0x(&channel_of(key, PAY_TO, smart).0.channel_id(84532))
}

/// The EIP-712 voucher signature of `signer` for (`id`, `max`).
pub fn sign_voucher(id: [u8; 32], max: u128, signer: u8) -> String {
    let sk = k256::ecdsa::SigningKey::from_slice(&[signer; 32]).unwrap();
    let (sig, recid) = sk.sign_prehash_recoverable(&Voucher { channel_id: id, max_claimable_amount: max }.digest(84532));
    let mut bytes = sig.to_bytes().to_vec();
    bytes.push(27 + recid.to_byte());
    hex_0x(&bytes)
}

/// A voucher for `max` on the channel of `key` to `receiver`, signed by `signer` (`None`: 65
/// bytes of garbage): the channel's wire config and the voucher.
pub fn voucher_of(key: u8, signer: Option<u8>, receiver: &str, smart: bool, max: u128) -> (Value, Value) {
    let (c, wire) = channel_of(key, receiver, smart);
    let id = c.channel_id(84532);
    let signature = signer.map_or_else(|| hex_0x(&[0x11; 65]), |s| sign_voucher(id, max, s));
    (wire, json!({ "channelId": hex_0x(&id), "maxClaimableAmount": max.to_string(), "signature": signature }))
}

/// A `PAYMENT-SIGNATURE` for `cfg.routes[route]`'s first offer carrying `payload`.
pub fn channel_header(cfg: &Config, route: usize, payload: Value) -> String {
    encode_header(&json!({ "x402Version": 2, "accepted": cfg.routes[route].accepts[0].requirements_json, "payload": payload }))
}

/// A deposit payload: the voucher for `max` of `key`'s channel with an ERC-3009 deposit of
/// `amount` (its signature made of `salt`, not checked by the paywall).
pub fn deposit_payload(key: u8, max: u128, amount: u128, salt: u8) -> Value {
    let (wire, v) = voucher_of(key, Some(key), PAY_TO, false, max);
    let auth = json!({ "validAfter": "0", "validBefore": (NOW + 300).to_string(), "salt": hex_0x(&[salt; 32]), "signature": hex_0x(&[salt; 65]) });
    json!({ "type": "deposit", "channelConfig": wire, "voucher": v, "deposit": { "amount": amount.to_string(), "authorization": { "erc3009Authorization": auth } } })
}

/// The facilitator's `/verify` answer for a valid payment on `key`'s channel with these escrow
/// figures.
pub fn verified_reply(key: u8, smart: bool, balance: u128, claimed: u128, withdraw: u64) -> Canned {
    reply(200, &json!({ "isValid": true, "payer": payer(key).to_checksum(), "extra": { "channelId": channel_id_of(key, smart), "balance": balance.to_string(), "totalClaimed": claimed.to_string(), "withdrawRequestedAt": withdraw, "refundNonce": "0" } }).to_string())
}

/// The facilitator's `/settle` answer for a deposit of `amount` leaving `balance`.
pub fn deposit_settled(key: u8, balance: u128, amount: u128) -> Canned {
    reply(200, &json!({ "success": true, "transaction": tx(77), "network": "eip155:84532", "payer": payer(key).to_checksum(), "amount": amount.to_string(), "extra": { "channelState": { "channelId": channel_id_of(key, false), "balance": balance.to_string(), "totalClaimed": "0", "withdrawRequestedAt": 0, "refundNonce": "0" } } }).to_string())
}

/// The base64 JSON of header `name` of `res`.
pub fn header_json(res: &http::Response<Vec<u8>>, name: &str) -> Value {
    use base64::Engine;
    let h = res.headers().get(name).unwrap_or_else(|| panic!("{name}")).to_str().unwrap();
    serde_json::from_slice(&base64::engine::general_purpose::STANDARD.decode(h).unwrap()).unwrap()
}

/// The standard variables with `RECEIVER_AUTHORIZER`, `ROUTES` = `routes`, and `extra` on top.
pub fn channel_config(routes: Value, extra: Value) -> std::rc::Rc<Config> {
    let mut vars = json!({ "RECEIVER_AUTHORIZER": AUTHORIZER, "ROUTES": routes });
    for (k, v) in extra.as_object().unwrap() {
        vars[k] = v.clone();
    }
    super::config_vars(vars)
}

/// The fake platform at [`NOW`].
pub fn start() -> std::rc::Rc<super::Fake> {
    let p = std::rc::Rc::new(super::fake());
    p.now.set(NOW);
    p
}
