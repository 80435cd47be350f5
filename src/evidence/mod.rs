//! Evidence from the chain: whether an authorization whose settlement this paywall sent actually
//! paid, read from an EVM JSON-RPC endpoint (`RPC_URL`, read-only calls only). Two kinds of
//! authorization: EIP-3009 (`exact`) and Permit2 witness transfers (`upto`, through the x402
//! `upto` proxy).
//!
//! The ledger never takes "paid" on faith: a settlement whose outcome is unknown (a lost answer,
//! a time-out, a reverted or pending transaction, a refusal after an earlier send) is decided
//! here when an RPC endpoint is configured. The questions asked (Ethereum JSON-RPC, EIP-1474):
//!
//! **EIP-3009**
//!
//! 1. The receipt of the transaction the facilitator named, if any (`eth_getTransactionReceipt`).
//! 2. `authorizationState(authorizer, nonce)` on the token (EIP-3009 §"authorizationState"),
//!    `eth_call` at `latest`: `false` means the authorization has not executed (yet).
//! 3. When it has: the token's `AuthorizationUsed(authorizer, nonce)` and
//!    `AuthorizationCanceled(authorizer, nonce)` logs (`eth_getLogs`, the last
//!    [`LOG_LOOKBACK_BLOCKS`] blocks), and the receipt of the transaction that emitted them.
//!
//! A transaction *paid* when its receipt succeeded (`status` 1) and, from the token contract,
//! holds both `AuthorizationUsed(payer, nonce)` and `Transfer(payer, payTo, amount)`. A nonce used
//! or canceled by a transaction without that transfer (the payer burned it, for example with a
//! zero-value authorization of their own) is [`Evidence::UsedElsewhere`]: this authorization can
//! never move money any more.
//!
//! **Permit2** (Uniswap `SignatureTransfer`: unordered nonces, one bit each in
//! `nonceBitmap(owner, nonce >> 8)`, bit `nonce & 0xff`; x402 `x402UptoPermit2Proxy`). Permit2
//! emits no event when a transfer uses a nonce, so the transaction is recognised by its calldata:
//!
//! 1. The transaction the facilitator named, if any: its receipt succeeded and holds the token's
//!    `Transfer(payer, payTo, amount)`, and the transaction (`eth_getTransactionByHash`) was sent
//!    to the `upto` proxy ([`UPTO_PROXY_ADDRESS`](crate::x402::permit2::UPTO_PROXY_ADDRESS))
//!    with `settle` or `settleWithPermit` calldata for this permit ([`permit2::SettleCall::pays`]:
//!    token, owner, nonce, `witness.to` and the recorded amount) → paid. Only a successful call
//!    of the proxy uses the permit's nonce and moves its amount.
//! 2. Otherwise `nonceBitmap(payer, nonce >> 8)` on Permit2
//!    ([`PERMIT2_ADDRESS`](crate::x402::permit2::PERMIT2_ADDRESS)) at `latest`: bit clear →
//!    [`Evidence::NotUsed`].
//! 3. Bit set: the token's `Transfer(payer, payTo)` logs (both addresses are indexed topics) in
//!    the last [`LOG_LOOKBACK_BLOCKS`] blocks, those of the recorded amount first, newest first,
//!    at most [`MAX_CANDIDATES`] transactions. A successful transaction whose calldata uses this
//!    nonce (owner and nonce) decides: it pays (rule 1) → paid; it does not (another amount,
//!    token or recipient) → unavailable (money may have moved under this nonce: never "nothing
//!    was charged", never "paid").
//! 4. None of them settles this permit, every `Transfer(payer, payTo)` in the window was looked at,
//!    and Permit2 logged `UnorderedNonceInvalidation(payer, nonce >> 8, mask)` with the nonce's
//!    bit in `mask` → [`Evidence::UsedElsewhere`]: the payer invalidated the nonce and no settle of
//!    this permit (which always moves money to `witness.to` = payTo) ran in the window.
//!    Otherwise unavailable: a bare set bit is never "paid" (the payer may have invalidated the
//!    nonce) and never "nothing was charged".
//!
//! Anything the endpoint does not answer clearly is [`Evidence::Unavailable`], which the paywall
//! reports as an unknown outcome, never as paid or as not charged.

use ruint::aliases::U256;
use serde_json::{json, Value};

use crate::evm::{hex_0x, hex_lower, keccak256, Address};

pub mod permit2;

/// Blocks searched back from the latest for the authorization's logs (about 5.5 hours of 2 s
/// blocks: longer than any record lives, `maxTimeoutSeconds` + a few minutes).
pub const LOG_LOOKBACK_BLOCKS: u64 = 10_000;

/// Transactions looked at, at most, among the logs of one question.
pub const MAX_CANDIDATES: usize = 8;

/// RPC calls one EIP-3009 question makes at most: a receipt, `authorizationState`, the block
/// number, the logs and [`MAX_CANDIDATES`] receipts.
pub const EIP3009_MAX_CALLS: u64 = 4 + MAX_CANDIDATES as u64;

/// RPC calls one Permit2 question makes at most: the named transaction's receipt and calldata,
/// `nonceBitmap`, the block number, the transfer logs, [`MAX_CANDIDATES`] transactions, one
/// receipt and the invalidation logs.
pub const PERMIT2_MAX_CALLS: u64 = 7 + MAX_CANDIDATES as u64;

/// What the chain says about one authorization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Evidence {
    /// A successful transaction used the authorization and moved `amount` from the payer to
    /// `payTo`: paid, in `transaction` (`0x` + 64 hex).
    Paid { transaction: String },
    /// `authorizationState` is `false` at the latest block: it has not executed (a transaction
    /// may still be pending).
    NotUsed,
    /// The nonce was used or canceled by a transaction that did not pay this requirement.
    UsedElsewhere { transaction: Option<String> },
    /// The endpoint failed or answered something unexpected; the reason.
    Unavailable(String),
}

/// The authorization whose payment is in question.
#[derive(Debug, Clone)]
pub struct Question {
    /// Token contract.
    pub asset: Address,
    /// `authorization.from`.
    pub payer: Address,
    /// `payTo`.
    pub pay_to: Address,
    /// The amount that pays, in atomic units: the price (`exact`), or the amount the settlement
    /// asked for (`upto`: the one recorded with the first send mark).
    pub amount: U256,
    /// `authorization.nonce` (a Permit2 nonce, a big-endian uint256, when `permit2`).
    pub nonce: [u8; 32],
    /// A Permit2 (`upto`) authorization: asked about with the Permit2 questions (module doc).
    pub permit2: bool,
}

/// `keccak256("Transfer(address,address,uint256)")`.
pub fn transfer_topic() -> String {
    hex_0x(&keccak256(b"Transfer(address,address,uint256)"))
}

/// `keccak256("AuthorizationUsed(address,bytes32)")` (EIP-3009).
pub fn authorization_used_topic() -> String {
    hex_0x(&keccak256(b"AuthorizationUsed(address,bytes32)"))
}

/// `keccak256("AuthorizationCanceled(address,bytes32)")` (EIP-3009).
pub fn authorization_canceled_topic() -> String {
    hex_0x(&keccak256(b"AuthorizationCanceled(address,bytes32)"))
}

/// An address as a 32-byte log topic / ABI word.
pub(crate) fn word(a: &Address) -> String {
    format!("0x{}{}", "0".repeat(24), hex_lower(&a.0))
}

pub(crate) fn rpc(id: u64, method: &str, params: Value) -> String {
    json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params }).to_string()
}

/// `eth_call` of `authorizationState(payer, nonce)` on the token at `latest`.
pub fn authorization_state_request(q: &Question) -> String {
    let selector = &keccak256(b"authorizationState(address,bytes32)")[..4];
    let data = format!("0x{}{}{}", hex_lower(selector), &word(&q.payer)[2..], hex_lower(&q.nonce));
    rpc(1, "eth_call", json!([{ "to": hex_0x(&q.asset.0), "data": data }, "latest"]))
}

/// `eth_blockNumber`.
pub fn block_number_request() -> String {
    rpc(2, "eth_blockNumber", json!([]))
}

/// `eth_getLogs` of the token's `AuthorizationUsed` / `AuthorizationCanceled` for (payer, nonce)
/// from block `from_block` to `latest`.
pub fn logs_request(q: &Question, from_block: u64) -> String {
    let topics = json!([[authorization_used_topic(), authorization_canceled_topic()], word(&q.payer), hex_0x(&q.nonce)]);
    rpc(3, "eth_getLogs", json!([{ "address": hex_0x(&q.asset.0), "topics": topics, "fromBlock": format!("0x{from_block:x}"), "toBlock": "latest" }]))
}

/// `eth_getTransactionReceipt` of `transaction`.
pub fn receipt_request(transaction: &str) -> String {
    rpc(4, "eth_getTransactionReceipt", json!([transaction]))
}

/// The `result` of a JSON-RPC reply, or why there is none.
pub fn result(body: &[u8]) -> Result<Value, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("RPC reply is not JSON: {e}"))?;
    if let Some(e) = v.get("error") {
        return Err(format!("RPC error: {}", crate::config::shown(&e.to_string())));
    }
    v.get("result").cloned().ok_or_else(|| "RPC reply has no result".to_string())
}

pub(crate) fn quantity(v: &Value) -> Option<u64> {
    let s = v.as_str()?.strip_prefix("0x")?;
    if s.is_empty() || s.len() > 16 {
        return None;
    }
    u64::from_str_radix(s, 16).ok()
}

/// Parses an `eth_blockNumber` result.
pub fn block_number(result: &Value) -> Option<u64> {
    quantity(result)
}

/// Parses the `authorizationState` call result: a 32-byte ABI `bool`.
pub fn authorization_state(result: &Value) -> Option<bool> {
    let s = result.as_str()?.strip_prefix("0x")?;
    if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    match s.trim_start_matches('0') {
        "" => Some(false),
        "1" => Some(true),
        _ => None,
    }
}

/// The transaction hashes of the logs an `eth_getLogs` result lists (at most 8).
pub fn log_transactions(result: &Value) -> Option<Vec<String>> {
    let logs = result.as_array()?;
    Some(logs.iter().filter_map(|l| l.get("transactionHash")?.as_str()).filter(|t| crate::facilitator::is_transaction_hash(t)).map(str::to_ascii_lowercase).take(8).collect())
}

pub(crate) fn same_hex(a: Option<&Value>, b: &str) -> bool {
    a.and_then(Value::as_str).is_some_and(|s| s.eq_ignore_ascii_case(b))
}

/// What a receipt shows: `Some(true)` it paid the question (see the module doc), `Some(false)`
/// it did not (reverted, or no such transfer), `None` no receipt (unknown or pending).
pub fn receipt_pays(result: &Value, q: &Question) -> Option<bool> {
    if result.is_null() {
        return None;
    }
    if quantity(result.get("status")?)? != 1 {
        return Some(false);
    }
    let asset = hex_0x(&q.asset.0);
    let amount = format!("0x{}", hex_lower(&q.amount.to_be_bytes::<32>()));
    let (transfer, used) = (transfer_topic(), authorization_used_topic());
    let logs = result.get("logs")?.as_array()?;
    let from_asset = logs.iter().filter(|l| same_hex(l.get("address"), &asset));
    let mut paid = false;
    let mut used_here = false;
    for log in from_asset {
        let Some(topics) = log.get("topics").and_then(Value::as_array) else { continue };
        let t = |i: usize| topics.get(i);
        if topics.len() == 3 && same_hex(t(0), &transfer) && same_hex(t(1), &word(&q.payer)) && same_hex(t(2), &word(&q.pay_to)) && same_hex(log.get("data"), &amount) {
            paid = true;
        }
        if topics.len() == 3 && same_hex(t(0), &used) && same_hex(t(1), &word(&q.payer)) && same_hex(t(2), &hex_0x(&q.nonce)) {
            used_here = true;
        }
    }
    Some(paid && used_here)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q() -> Question {
        Question {
            permit2: false,
            asset: Address([0x11; 20]),
            payer: Address([0x22; 20]),
            pay_to: Address([0x33; 20]),
            amount: U256::from(10_000u64),
            nonce: [0x44; 32],
        }
    }

    fn receipt(status: &str, transfer_to: &Address, amount: u64, nonce: [u8; 32]) -> Value {
        let q = q();
        json!({
            "status": status,
            "logs": [
                { "address": hex_0x(&q.asset.0), "topics": [authorization_used_topic(), word(&q.payer), hex_0x(&nonce)], "data": "0x" },
                { "address": hex_0x(&q.asset.0), "topics": [transfer_topic(), word(&q.payer), word(transfer_to)], "data": format!("0x{:064x}", amount) },
            ]
        })
    }

    #[test]
    fn topics_are_the_eip_3009_and_erc_20_event_hashes() {
        assert_eq!(transfer_topic(), "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef");
        assert_eq!(authorization_used_topic(), "0x98de503528ee59b575ef0c0a2576a82497bfc029a5685b209e9ec333479b10a5");
        assert_eq!(authorization_canceled_topic(), "0x1cdd46ff242716cdaa72d159d339a485b3438398348d68f09d7c8c0a59353d81");
        let call: Value = serde_json::from_str(&authorization_state_request(&q())).unwrap();
        assert!(call["params"][0]["data"].as_str().unwrap().starts_with("0xe94a0102"), "authorizationState(address,bytes32) selector");
    }

    #[test]
    fn a_receipt_pays_only_with_its_transfer_to_pay_to_and_the_nonce_used() {
        let q = q();
        assert_eq!(receipt_pays(&receipt("0x1", &q.pay_to, 10_000, q.nonce), &q), Some(true));
        assert_eq!(receipt_pays(&receipt("0x0", &q.pay_to, 10_000, q.nonce), &q), Some(false), "reverted");
        assert_eq!(receipt_pays(&receipt("0x1", &q.payer, 0, q.nonce), &q), Some(false), "a zero-value burn to self");
        assert_eq!(receipt_pays(&receipt("0x1", &q.pay_to, 9_999, q.nonce), &q), Some(false), "another amount");
        assert_eq!(receipt_pays(&receipt("0x1", &q.pay_to, 10_000, [0x55; 32]), &q), Some(false), "another nonce's transfer");
        assert_eq!(receipt_pays(&Value::Null, &q), None, "no receipt yet");
        assert_eq!(receipt_pays(&json!({"status": "0x1"}), &q), None, "no logs: unreadable");
    }

    #[test]
    fn replies_are_parsed_strictly() {
        assert_eq!(authorization_state(&json!(format!("0x{:064x}", 1))), Some(true));
        assert_eq!(authorization_state(&json!(format!("0x{:064x}", 0))), Some(false));
        assert_eq!(authorization_state(&json!("0x01")), None);
        assert_eq!(authorization_state(&json!(format!("0x{:064x}", 2))), None);
        assert_eq!(block_number(&json!("0x10")), Some(16));
        assert_eq!(block_number(&json!("0x")), None);
        assert_eq!(block_number(&json!("0x11111111111111111")), None);
        assert!(result(br#"{"jsonrpc":"2.0","id":1,"error":{"code":-32000,"message":"boom"}}"#).is_err());
        assert!(result(b"<html>").is_err());
        let tx = format!("0x{}", "ab".repeat(32));
        assert_eq!(log_transactions(&json!([{ "transactionHash": tx }, { "transactionHash": "0x12" }])), Some(vec![tx.clone()]));
    }
}
