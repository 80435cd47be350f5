//! Permit2 (`upto`) evidence: the requests and the readings of their answers for the Permit2
//! questions of [`crate::evidence`] (module doc, "Permit2"). Sources: Uniswap Permit2
//! `SignatureTransfer.sol` (`nonceBitmap`, `invalidateUnorderedNonces`,
//! `UnorderedNonceInvalidation`), x402 `contracts/evm/src/x402UptoPermit2Proxy.sol` (`settle`,
//! `settleWithPermit`; tests/support/contracts/x402/), ERC-20 `Transfer`.

use ruint::aliases::U256;
use serde_json::{json, Value};

use super::{quantity, rpc, same_hex, transfer_topic, word, Question, MAX_CANDIDATES};
use crate::evm::{decode_hex_0x, hex_0x, hex_lower, keccak256, Address};
use crate::x402::permit2::{PERMIT2_ADDRESS, UPTO_PROXY_ADDRESS};

/// `keccak256("UnorderedNonceInvalidation(address,uint256,uint256)")` (Permit2
/// `invalidateUnorderedNonces`: `owner` indexed; `word`, `mask` in the data).
pub fn unordered_nonce_invalidation_topic() -> String {
    hex_0x(&keccak256(b"UnorderedNonceInvalidation(address,uint256,uint256)"))
}

/// The proxy's `settle(PermitTransferFrom permit, uint256 amount, address owner, Witness witness,
/// bytes signature)`, as the ABI names it.
pub const SETTLE_SIGNATURE: &str = "settle(((address,uint256),uint256,uint256),uint256,address,(address,address,uint256),bytes)";

/// The proxy's `settleWithPermit(EIP2612Permit permit2612, PermitTransferFrom permit, uint256
/// amount, address owner, Witness witness, bytes signature)`.
pub const SETTLE_WITH_PERMIT_SIGNATURE: &str =
    "settleWithPermit((uint256,uint256,bytes32,bytes32,uint8),((address,uint256),uint256,uint256),uint256,address,(address,address,uint256),bytes)";

fn selector(signature: &str) -> [u8; 4] {
    let h = keccak256(signature.as_bytes());
    [h[0], h[1], h[2], h[3]]
}

/// `nonce >> 8`, the Permit2 bitmap word a nonce lives in, as an ABI word.
fn word_pos(nonce: &[u8; 32]) -> [u8; 32] {
    let mut w = [0u8; 32];
    w[1..].copy_from_slice(&nonce[..31]);
    w
}

/// `eth_call` of Permit2 `nonceBitmap(payer, nonce >> 8)` at `latest`.
pub fn nonce_bitmap_request(q: &Question) -> String {
    let selector = selector("nonceBitmap(address,uint256)");
    let data = format!("0x{}{}{}", hex_lower(&selector), &word(&q.payer)[2..], hex_lower(&word_pos(&q.nonce)));
    rpc(5, "eth_call", json!([{ "to": hex_0x(&PERMIT2_ADDRESS.0), "data": data }, "latest"]))
}

/// Parses the `nonceBitmap` result (one 32-byte word): whether the nonce's bit (`nonce & 0xff`)
/// is set.
pub fn nonce_bit_set(result: &Value, q: &Question) -> Option<bool> {
    let bitmap = decode_hex_0x(result.as_str()?, 32).filter(|b| b.len() == 32)?;
    let bit = q.nonce[31];
    Some(bitmap[31 - usize::from(bit / 8)] & (1 << (bit % 8)) != 0)
}

/// `eth_getLogs` of the token's `Transfer(payer, payTo)` from block `from_block` to `latest`.
pub fn transfer_logs_request(q: &Question, from_block: u64) -> String {
    let topics = json!([transfer_topic(), word(&q.payer), word(&q.pay_to)]);
    rpc(6, "eth_getLogs", json!([{ "address": hex_0x(&q.asset.0), "topics": topics, "fromBlock": format!("0x{from_block:x}"), "toBlock": "latest" }]))
}

/// `eth_getLogs` of Permit2's `UnorderedNonceInvalidation(payer)` from block `from_block` to
/// `latest`.
pub fn invalidation_logs_request(q: &Question, from_block: u64) -> String {
    let topics = json!([unordered_nonce_invalidation_topic(), word(&q.payer)]);
    rpc(7, "eth_getLogs", json!([{ "address": hex_0x(&PERMIT2_ADDRESS.0), "topics": topics, "fromBlock": format!("0x{from_block:x}"), "toBlock": "latest" }]))
}

/// `eth_getTransactionByHash` of `transaction`.
pub fn transaction_request(transaction: &str) -> String {
    rpc(8, "eth_getTransactionByHash", json!([transaction]))
}

fn block_of(log: &Value) -> u64 {
    log.get("blockNumber").and_then(quantity).unwrap_or(0)
}

/// The transactions of a `Transfer(payer, payTo)` `eth_getLogs` result worth looking at, in
/// order: those that moved `q.amount` from the token, newest first, then the others, newest
/// first; at most [`MAX_CANDIDATES`]. `complete`: every transfer log was taken (nothing left
/// out). `None`: not a list.
pub fn transfer_candidates(result: &Value, q: &Question) -> Option<(Vec<String>, bool)> {
    let logs = result.as_array()?;
    let asset = hex_0x(&q.asset.0);
    let amount = format!("0x{}", hex_lower(&q.amount.to_be_bytes::<32>()));
    let mut found: Vec<(bool, u64, String)> = logs
        .iter()
        .filter(|l| same_hex(l.get("address"), &asset) && l.get("removed") != Some(&Value::Bool(true)))
        .filter_map(|l| {
            let tx = l.get("transactionHash")?.as_str().filter(|t| crate::facilitator::is_transaction_hash(t))?;
            Some((same_hex(l.get("data"), &amount), block_of(l), tx.to_ascii_lowercase()))
        })
        .collect();
    let parsed = found.len();
    found.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)));
    let mut out: Vec<String> = Vec::new();
    for (_, _, tx) in found {
        if !out.contains(&tx) {
            out.push(tx);
        }
    }
    let live = logs.iter().filter(|l| l.get("removed") != Some(&Value::Bool(true))).count();
    // Every live log read (an unreadable one may be the transaction in question), and no more
    // transactions than are looked at.
    let complete = live == parsed && out.len() <= MAX_CANDIDATES;
    out.truncate(MAX_CANDIDATES);
    Some((out, complete))
}

/// The transaction of an `UnorderedNonceInvalidation(payer, word, mask)` log (Permit2) whose
/// `word` is `nonce >> 8` and whose `mask` has the nonce's bit: `Some(Some(tx))`; `Some(None)`:
/// none in the result; `None`: not a list.
pub fn invalidation(result: &Value, q: &Question) -> Option<Option<String>> {
    let logs = result.as_array()?;
    let permit2 = hex_0x(&PERMIT2_ADDRESS.0);
    let (topic, owner, pos, bit) = (unordered_nonce_invalidation_topic(), word(&q.payer), word_pos(&q.nonce), q.nonce[31]);
    Some(logs.iter().find_map(|l| {
        let topics = l.get("topics")?.as_array()?;
        if !same_hex(l.get("address"), &permit2) || l.get("removed") == Some(&Value::Bool(true)) || topics.len() != 2 || !same_hex(topics.first(), &topic) || !same_hex(topics.get(1), &owner) {
            return None;
        }
        let data = decode_hex_0x(l.get("data")?.as_str()?, 64).filter(|d| d.len() == 64)?;
        let has_bit = data[..32] == pos && data[32 + 31 - usize::from(bit / 8)] & (1 << (bit % 8)) != 0;
        let tx = l.get("transactionHash")?.as_str().filter(|t| crate::facilitator::is_transaction_hash(t))?;
        has_bit.then(|| tx.to_ascii_lowercase())
    }))
}

/// The parts of an x402 `upto` proxy `settle` / `settleWithPermit` call that say which permit it
/// executes and what it moves. Static tuples are inlined in the ABI encoding, so each sits at a
/// fixed word after the selector: `settle`: token 0, permitted amount 1, nonce 2, deadline 3,
/// amount 4, owner 5, `witness.to` 6, `witness.facilitator` 7, `witness.validAfter` 8;
/// `settleWithPermit`: the same 5 words later (its EIP-2612 permit comes first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettleCall {
    pub token: Address,
    /// `permit.permitted.amount`, the signed maximum (atomic units).
    pub permitted: U256,
    /// `permit.nonce`, big-endian.
    pub nonce: [u8; 32],
    /// `permit.deadline`, Unix seconds.
    pub deadline: U256,
    /// The amount settled (atomic units).
    pub amount: U256,
    pub owner: Address,
    pub to: Address,
    pub facilitator: Address,
}

impl SettleCall {
    /// Decodes transaction input (`0x` hex): `None` when it is not a well-formed `settle` or
    /// `settleWithPermit` call (another selector, too short, an address word with high bytes).
    /// Reads only the fixed head (at most 484 bytes), whatever the input's length.
    pub fn decode(input: &str) -> Option<SettleCall> {
        let hex = input.strip_prefix("0x")?;
        let head = hex.get(..hex.len().min(2 * (4 + 15 * 32)))?;
        let bytes = decode_hex_0x(&format!("0x{head}"), 4 + 15 * 32)?;
        let (sel, body) = (bytes.get(..4)?, bytes.get(4..)?);
        let first = if sel == selector(SETTLE_SIGNATURE) {
            0
        } else if sel == selector(SETTLE_WITH_PERMIT_SIGNATURE) {
            5
        } else {
            return None;
        };
        // The head, up to and with the signature's offset word.
        if body.len() < (first + 10) * 32 {
            return None;
        }
        let w = |i: usize| -> [u8; 32] {
            let mut out = [0u8; 32];
            out.copy_from_slice(&body[(first + i) * 32..(first + i + 1) * 32]);
            out
        };
        let address = |i: usize| -> Option<Address> {
            let x = w(i);
            if x[..12].iter().any(|b| *b != 0) {
                return None;
            }
            let mut a = [0u8; 20];
            a.copy_from_slice(&x[12..]);
            Some(Address(a))
        };
        Some(SettleCall {
            token: address(0)?,
            permitted: U256::from_be_bytes(w(1)),
            nonce: w(2),
            deadline: U256::from_be_bytes(w(3)),
            amount: U256::from_be_bytes(w(4)),
            owner: address(5)?,
            to: address(6)?,
            facilitator: address(7)?,
        })
    }

    /// Whether this call uses the nonce in `q`: owner = payer and the same nonce (Permit2 nonces
    /// are per owner, whatever the token).
    pub fn uses_nonce(&self, q: &Question) -> bool {
        self.owner == q.payer && self.nonce == q.nonce
    }

    /// Whether this call executes the permit in `q` for what the ledger recorded: it uses the
    /// nonce, token = asset, `witness.to` = payTo, amount = the recorded amount.
    pub fn pays(&self, q: &Question) -> bool {
        self.uses_nonce(q) && self.token == q.asset && self.to == q.pay_to && self.amount == q.amount
    }
}

/// A receipt's `status`: `Some(true)` succeeded, `Some(false)` reverted, `None` no receipt (unknown
/// or pending) or unreadable.
pub fn receipt_succeeded(result: &Value) -> Option<bool> {
    if result.is_null() {
        return None;
    }
    Some(quantity(result.get("status")?)? == 1)
}

/// What an `eth_getTransactionByHash` result shows: `Some(Some(call))` a call of the `upto`
/// proxy's `settle` / `settleWithPermit` ([`SettleCall`]), `Some(None)` a transaction that is
/// not one, `None` no transaction or an unreadable one.
pub fn proxy_settle_call(result: &Value) -> Option<Option<SettleCall>> {
    if result.is_null() {
        return None;
    }
    let to = result.get("to")?;
    if !same_hex(Some(to), &hex_0x(&UPTO_PROXY_ADDRESS.0)) {
        return Some(None);
    }
    let input = result.get("input").or_else(|| result.get("data"))?.as_str()?;
    Some(SettleCall::decode(input))
}

/// Whether a receipt holds the question's `Transfer(payer, payTo, amount)` from the token in a
/// successful transaction: `Some(true)`; `Some(false)` reverted or no such transfer; `None` no
/// receipt (unknown or pending) or unreadable.
pub fn receipt_transfers(result: &Value, q: &Question) -> Option<bool> {
    if result.is_null() {
        return None;
    }
    if quantity(result.get("status")?)? != 1 {
        return Some(false);
    }
    let logs = result.get("logs")?.as_array()?;
    Some(logs.iter().any(|l| is_transfer(l, q)))
}

fn is_transfer(log: &Value, q: &Question) -> bool {
    let amount = format!("0x{}", hex_lower(&q.amount.to_be_bytes::<32>()));
    let Some(topics) = log.get("topics").and_then(Value::as_array) else { return false };
    same_hex(log.get("address"), &hex_0x(&q.asset.0))
        && topics.len() == 3
        && same_hex(topics.first(), &transfer_topic())
        && same_hex(topics.get(1), &word(&q.payer))
        && same_hex(topics.get(2), &word(&q.pay_to))
        && same_hex(log.get("data"), &amount)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Question {
        Question { permit2: true, asset: Address([0x11; 20]), payer: Address([0x22; 20]), pay_to: Address([0x33; 20]), amount: U256::from(10_000u64), nonce: [0x44; 32] }
    }

    // Encoded by viem from the proxy's ABI: `node tests/support/permit2-settle-calldata.mjs`.
    const SETTLE_CALLDATA: &str = "0xff11e7b40000000000000000000000001111111111111111111111111111111111111111000000000000000000000000000000000000000000000000000000000007a1201234567890abcdef0000000000000000000000000000000000000000000002a5000000000000000000000000000000000000000000000000000000006b49d27800000000000000000000000000000000000000000000000000000000000001410000000000000000000000002222222222222222222222222222222222222222000000000000000000000000333333333333333333333333333333333333333300000000000000000000000090f79bf6eb2c4f870365e785982e1f101e93b906000000000000000000000000000000000000000000000000000000006b49cfa800000000000000000000000000000000000000000000000000000000000001400000000000000000000000000000000000000000000000000000000000000041ababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababab00000000000000000000000000000000000000000000000000000000000000";
    const SETTLE_WITH_PERMIT_CALLDATA: &str = "0x016c1748000000000000000000000000000000000000000000000000000000000007a120000000000000000000000000000000000000000000000000000000006b49d278cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdefefefefefefefefefefefefefefefefefefefefefefefefefefefefefefefef000000000000000000000000000000000000000000000000000000000000001b0000000000000000000000001111111111111111111111111111111111111111000000000000000000000000000000000000000000000000000000000007a1201234567890abcdef0000000000000000000000000000000000000000000002a5000000000000000000000000000000000000000000000000000000006b49d27800000000000000000000000000000000000000000000000000000000000001410000000000000000000000002222222222222222222222222222222222222222000000000000000000000000333333333333333333333333333333333333333300000000000000000000000090f79bf6eb2c4f870365e785982e1f101e93b906000000000000000000000000000000000000000000000000000000006b49cfa800000000000000000000000000000000000000000000000000000000000001e00000000000000000000000000000000000000000000000000000000000000041ababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababab00000000000000000000000000000000000000000000000000000000000000";
    const NONCE_BITMAP_CALLDATA: &str = "0x4fe02b440000000000000000000000002222222222222222222222222222222222222222001234567890abcdef0000000000000000000000000000000000000000000002";
    const VECTOR_NONCE: &str = "0x1234567890abcdef0000000000000000000000000000000000000000000002a5";

    /// The question the vectors answer: asset 0x11…, payer 0x22…, payTo 0x33…, 321 recorded.
    fn p2() -> Question {
        let nonce = crate::evm::parse_bytes32(VECTOR_NONCE).unwrap();
        Question { permit2: true, amount: U256::from(321u64), nonce, ..base() }
    }

    fn params(request: &str) -> Value {
        serde_json::from_str::<Value>(request).unwrap()["params"].clone()
    }

    #[test]
    fn the_proxy_selectors_and_the_permit2_call_are_the_abi_ones() {
        assert_eq!(hex_lower(&selector(SETTLE_SIGNATURE)), "ff11e7b4");
        assert_eq!(hex_lower(&selector(SETTLE_WITH_PERMIT_SIGNATURE)), "016c1748");
        let call = params(&nonce_bitmap_request(&p2()));
        assert_eq!(call[0]["to"], "0x000000000022d473030f116ddee9f6b43ac78ba3");
        assert_eq!(call[0]["data"], NONCE_BITMAP_CALLDATA, "nonceBitmap(payer, nonce >> 8)");
        assert_eq!(call[1], "latest");
        assert_eq!(unordered_nonce_invalidation_topic(), hex_0x(&keccak256(b"UnorderedNonceInvalidation(address,uint256,uint256)")));
    }

    #[test]
    fn the_log_filters_name_both_indexed_addresses_and_the_window() {
        let q = p2();
        let transfers = params(&transfer_logs_request(&q, 0x100));
        assert_eq!(transfers[0]["address"], hex_0x(&q.asset.0));
        assert_eq!(transfers[0]["topics"], json!([transfer_topic(), word(&q.payer), word(&q.pay_to)]));
        assert_eq!((transfers[0]["fromBlock"].as_str(), transfers[0]["toBlock"].as_str()), (Some("0x100"), Some("latest")));
        let invalidations = params(&invalidation_logs_request(&q, 0x100));
        assert_eq!(invalidations[0]["address"], "0x000000000022d473030f116ddee9f6b43ac78ba3");
        assert_eq!(invalidations[0]["topics"], json!([unordered_nonce_invalidation_topic(), word(&q.payer)]));
        assert_eq!(params(&transaction_request(&tx(1))), json!([tx(1)]));
    }

    #[test]
    fn settle_calldata_decodes_at_its_fixed_words_for_both_entry_points() {
        let q = p2();
        for input in [SETTLE_CALLDATA, SETTLE_WITH_PERMIT_CALLDATA] {
            let c = SettleCall::decode(input).unwrap();
            assert_eq!(c.token, q.asset);
            assert_eq!(c.permitted, U256::from(500_000u64));
            assert_eq!(c.nonce, q.nonce);
            assert_eq!(c.deadline, U256::from(1_800_000_120u64));
            assert_eq!(c.amount, U256::from(321u64));
            assert_eq!(c.owner, q.payer);
            assert_eq!(c.to, q.pay_to);
            assert_eq!(c.facilitator.to_checksum(), "0x90F79bf6EB2c4f870365E785982E1f101E93b906");
            assert!(c.pays(&q) && c.uses_nonce(&q));
            assert!(!c.pays(&Question { amount: U256::from(322u64), ..p2() }) && c.uses_nonce(&Question { amount: U256::from(322u64), ..p2() }), "another amount uses the nonce but does not pay");
            assert!(!c.uses_nonce(&Question { payer: Address([0x55; 20]), ..p2() }), "nonces are per owner");
        }
        // Only the fixed head is read: a short input, another selector, or a dirty address word is refused.
        assert!(SettleCall::decode(&SETTLE_CALLDATA[..2 + 8 + 64 * 9]).is_none(), "no signature offset");
        assert!(SettleCall::decode(&SETTLE_CALLDATA[..2 + 8 + 64 * 10]).is_some());
        assert!(SettleCall::decode(&SETTLE_CALLDATA.replacen("ff11e7b4", "ff11e7b5", 1)).is_none());
        let dirty = format!("{}01{}", &SETTLE_CALLDATA[..10], &SETTLE_CALLDATA[12..]);
        assert!(SettleCall::decode(&dirty).is_none(), "token word with a high byte");
        assert!(SettleCall::decode("0xzz").is_none() && SettleCall::decode("ff11e7b4").is_none() && SettleCall::decode("0x").is_none());
        let huge = format!("{SETTLE_CALLDATA}{}", "00".repeat(1 << 20));
        assert_eq!(SettleCall::decode(&huge), SettleCall::decode(SETTLE_CALLDATA), "a long tail is not read");
    }

    fn tx(byte: u8) -> String {
        format!("0x{}", hex_lower(&[byte; 32]))
    }

    #[test]
    fn a_transaction_is_a_proxy_settle_only_when_sent_to_the_proxy() {
        let proxy = hex_0x(&UPTO_PROXY_ADDRESS.0);
        let c = proxy_settle_call(&json!({ "to": proxy, "input": SETTLE_CALLDATA })).unwrap().unwrap();
        assert!(c.pays(&p2()));
        assert_eq!(proxy_settle_call(&json!({ "to": hex_0x(&[0x11; 20]), "input": SETTLE_CALLDATA })), Some(None), "the same calldata to another contract");
        assert_eq!(proxy_settle_call(&json!({ "to": proxy, "input": "0xa9059cbb" })), Some(None), "another function of the proxy");
        assert_eq!(proxy_settle_call(&Value::Null), None, "no transaction");
        assert_eq!(proxy_settle_call(&json!({ "to": null, "input": SETTLE_CALLDATA })), Some(None), "a contract creation");
    }

    #[test]
    fn the_nonce_bit_is_bit_nonce_and_0xff_of_its_word() {
        let q = p2(); // nonce & 0xff = 0xa5 = 165: byte 31 - 20 = 11 of the word, bit 5
        let mut word = [0u8; 32];
        word[11] = 1 << 5;
        assert_eq!(nonce_bit_set(&json!(hex_0x(&word)), &q), Some(true));
        word[11] = !(1 << 5);
        assert_eq!(nonce_bit_set(&json!(hex_0x(&word)), &q), Some(false), "every other bit set");
        assert_eq!(nonce_bit_set(&json!("0x01"), &q), None);
        assert_eq!(nonce_bit_set(&json!(1), &q), None);
        assert_eq!(hex_lower(&word_pos(&q.nonce)), &NONCE_BITMAP_CALLDATA[2 + 8 + 64..]);
    }

    fn transfer_log(q: &Question, amount: u64, block: u64, tx_byte: u8) -> Value {
        json!({ "address": hex_0x(&q.asset.0), "topics": [transfer_topic(), word(&q.payer), word(&q.pay_to)], "data": format!("0x{amount:064x}"), "blockNumber": format!("0x{block:x}"), "transactionHash": tx(tx_byte) })
    }

    #[test]
    fn transfer_candidates_put_the_recorded_amount_first_newest_first_and_say_when_some_were_left() {
        let q = p2();
        let logs = json!([transfer_log(&q, 999, 9, 1), transfer_log(&q, 321, 5, 2), transfer_log(&q, 321, 7, 3), transfer_log(&q, 321, 7, 3)]);
        assert_eq!(transfer_candidates(&logs, &q), Some((vec![tx(3), tx(2), tx(1)], true)));
        let many = Value::Array((0..9).map(|i| transfer_log(&q, 1, i, i as u8 + 1)).collect());
        let (taken, complete) = transfer_candidates(&many, &q).unwrap();
        assert_eq!((taken.len(), complete), (MAX_CANDIDATES, false));
        let unreadable = json!([transfer_log(&q, 321, 5, 2), { "address": hex_0x(&q.asset.0), "transactionHash": "0x12" }]);
        assert_eq!(transfer_candidates(&unreadable, &q), Some((vec![tx(2)], false)), "an unreadable log may be the one");
        let removed = json!([transfer_log(&q, 321, 5, 2), { "removed": true, "transactionHash": tx(4) }]);
        assert_eq!(transfer_candidates(&removed, &q), Some((vec![tx(2)], true)));
        assert_eq!(transfer_candidates(&json!({}), &q), None);
    }

    #[test]
    fn an_invalidation_counts_only_for_this_owner_word_and_bit() {
        let q = p2();
        let pos = hex_lower(&word_pos(&q.nonce));
        let log = |owner: &Address, pos: &str, mask: [u8; 32]| json!({ "address": hex_0x(&PERMIT2_ADDRESS.0), "topics": [unordered_nonce_invalidation_topic(), word(owner)], "data": format!("0x{pos}{}", hex_lower(&mask)), "transactionHash": tx(7) });
        let mut bit = [0u8; 32];
        bit[11] = 1 << 5;
        assert_eq!(invalidation(&json!([log(&q.payer, &pos, bit)]), &q), Some(Some(tx(7))));
        assert_eq!(invalidation(&json!([log(&q.payer, &pos, [0xff; 32].map(|b| b & !bit[11]))]), &q), Some(None), "the mask misses the bit");
        let other_word = format!("{:064x}", 1);
        assert_eq!(invalidation(&json!([log(&q.payer, &other_word, bit)]), &q), Some(None), "another word");
        assert_eq!(invalidation(&json!([log(&Address([0x55; 20]), &pos, bit)]), &q), Some(None), "another owner");
        let mut elsewhere = log(&q.payer, &pos, bit);
        elsewhere["address"] = json!(hex_0x(&[0x66; 20]));
        assert_eq!(invalidation(&json!([elsewhere]), &q), Some(None), "not Permit2's log");
        assert_eq!(invalidation(&json!("0x"), &q), None);
    }

    #[test]
    fn a_permit2_receipt_transfers_only_the_recorded_amount_to_pay_to() {
        let q = p2();
        let r = |status: &str, amount: u64| json!({ "status": status, "logs": [transfer_log(&q, amount, 1, 1)] });
        assert_eq!(receipt_transfers(&r("0x1", 321), &q), Some(true));
        assert_eq!(receipt_transfers(&r("0x1", 320), &q), Some(false));
        assert_eq!(receipt_transfers(&r("0x0", 321), &q), Some(false));
        assert_eq!(receipt_succeeded(&r("0x0", 321)), Some(false));
        assert_eq!(receipt_succeeded(&r("0x1", 321)), Some(true));
        assert_eq!(receipt_succeeded(&Value::Null), None);
        assert_eq!(receipt_transfers(&Value::Null, &q), None);
    }
}
