//! Chain evidence for a settlement whose outcome is unknown: the JSON-RPC calls to `RPC_URL` and
//! the order of the questions ([`crate::evidence`] builds each request and reads each answer):
//! EIP-3009 (`exact`) and Permit2 (`upto`) authorizations.

use serde_json::Value;

use crate::evidence::{self, permit2, Evidence, Question};
use crate::facilitator::is_transaction_hash;

use super::platform::Platform;

/// One JSON-RPC call to `rpc_url`: its `result`, or why there is none.
async fn rpc_call<P: Platform>(p: &P, rpc_url: &str, body: String, timeout_seconds: u64) -> Result<Value, String> {
    match p.post_json(rpc_url, None, body, timeout_seconds).await {
        Ok(reply) if (200..300).contains(&reply.status) => evidence::result(&reply.body),
        Ok(reply) => Err(format!("RPC answered HTTP {}", reply.status)),
        Err(e) => Err(format!("RPC {e}")),
    }
}

/// Asks the chain ([`crate::evidence`]) whether the authorization in `q` paid; `transaction`:
/// the one the facilitator (or the ledger's record) named, if any.
pub(super) async fn chain_evidence<P: Platform>(p: &P, rpc_url: &str, q: &Question, transaction: Option<&str>, timeout_seconds: u64) -> Evidence {
    if q.permit2 {
        return permit2_evidence(p, rpc_url, q, transaction, timeout_seconds).await;
    }
    let call = |body: String| rpc_call(p, rpc_url, body, timeout_seconds);
    if let Some(tx) = transaction.filter(|t| is_transaction_hash(t)) {
        match call(evidence::receipt_request(tx)).await.map(|r| evidence::receipt_pays(&r, q)) {
            Ok(Some(true)) => return Evidence::Paid { transaction: tx.to_ascii_lowercase() },
            Ok(_) => {}
            Err(e) => return Evidence::Unavailable(e),
        }
    }
    let used = match call(evidence::authorization_state_request(q)).await {
        Ok(r) => match evidence::authorization_state(&r) {
            Some(used) => used,
            None => return Evidence::Unavailable("authorizationState answered something other than a bool".into()),
        },
        Err(e) => return Evidence::Unavailable(e),
    };
    if !used {
        return Evidence::NotUsed;
    }
    let latest = match call(evidence::block_number_request()).await.map(|r| evidence::block_number(&r)) {
        Ok(Some(n)) => n,
        Ok(None) => return Evidence::Unavailable("eth_blockNumber answered something other than a quantity".into()),
        Err(e) => return Evidence::Unavailable(e),
    };
    let transactions = match call(evidence::logs_request(q, latest.saturating_sub(evidence::LOG_LOOKBACK_BLOCKS))).await.map(|r| evidence::log_transactions(&r)) {
        Ok(Some(t)) => t,
        Ok(None) => return Evidence::Unavailable("eth_getLogs answered something other than a list".into()),
        Err(e) => return Evidence::Unavailable(e),
    };
    let Some(first) = transactions.first().cloned() else {
        return Evidence::Unavailable("the nonce is used but no log of its use was found".into());
    };
    for tx in transactions {
        match call(evidence::receipt_request(&tx)).await.map(|r| evidence::receipt_pays(&r, q)) {
            Ok(Some(true)) => return Evidence::Paid { transaction: tx },
            Ok(Some(false)) => {}
            Ok(None) => return Evidence::Unavailable(format!("no receipt for {tx}")),
            Err(e) => return Evidence::Unavailable(e),
        }
    }
    Evidence::UsedElsewhere { transaction: Some(first) }
}

/// The Permit2 (`upto`) questions ([`crate::evidence`] module doc, "Permit2"): the named
/// transaction; then `nonceBitmap`; when the bit is set, the token's `Transfer(payer, payTo)`
/// transactions whose calldata settles this permit; then Permit2's invalidation logs.
async fn permit2_evidence<P: Platform>(p: &P, rpc_url: &str, q: &Question, transaction: Option<&str>, timeout_seconds: u64) -> Evidence {
    let call = |body: String| rpc_call(p, rpc_url, body, timeout_seconds);
    // What `tx` did with this nonce (its calldata, then its receipt).
    let settles = |tx: String| async move {
        let call_data = match permit2::proxy_settle_call(&call(permit2::transaction_request(&tx)).await?) {
            Some(Some(c)) if c.uses_nonce(q) => c,
            Some(_) => return Ok(NonceUse::Other),
            None => return Err(format!("no readable transaction {tx}")),
        };
        let receipt = call(evidence::receipt_request(&tx)).await?;
        Ok(match permit2::receipt_succeeded(&receipt) {
            Some(true) if call_data.pays(q) && permit2::receipt_transfers(&receipt, q) == Some(true) => NonceUse::Paid,
            Some(true) => NonceUse::Unpaid,
            Some(false) | None => NonceUse::NotExecuted,
        })
    };
    if let Some(tx) = transaction.filter(|t| is_transaction_hash(t)).map(str::to_ascii_lowercase) {
        // A pending or reverted transaction, or one that is not this permit's: ask on.
        match settles(tx.clone()).await {
            Ok(NonceUse::Paid) => return Evidence::Paid { transaction: tx },
            Ok(NonceUse::Unpaid) => return Evidence::Unavailable(format!("{tx} used this nonce without the recorded transfer")),
            Ok(NonceUse::Other | NonceUse::NotExecuted) => {}
            Err(e) => return Evidence::Unavailable(e),
        }
    }
    let used = match call(permit2::nonce_bitmap_request(q)).await.map(|r| permit2::nonce_bit_set(&r, q)) {
        Ok(Some(used)) => used,
        Ok(None) => return Evidence::Unavailable("nonceBitmap answered something other than a word".into()),
        Err(e) => return Evidence::Unavailable(e),
    };
    if !used {
        return Evidence::NotUsed;
    }
    let from = match call(evidence::block_number_request()).await.map(|r| evidence::block_number(&r)) {
        Ok(Some(n)) => n.saturating_sub(evidence::LOG_LOOKBACK_BLOCKS),
        Ok(None) => return Evidence::Unavailable("eth_blockNumber answered something other than a quantity".into()),
        Err(e) => return Evidence::Unavailable(e),
    };
    let (candidates, complete) = match call(permit2::transfer_logs_request(q, from)).await.map(|r| permit2::transfer_candidates(&r, q)) {
        Ok(Some(c)) => c,
        Ok(None) => return Evidence::Unavailable("eth_getLogs answered something other than a list".into()),
        Err(e) => return Evidence::Unavailable(e),
    };
    for tx in candidates {
        match settles(tx.clone()).await {
            Ok(NonceUse::Paid) => return Evidence::Paid { transaction: tx },
            // The nonce was used here, but not for what is on record: money may have moved.
            Ok(NonceUse::Unpaid) => return Evidence::Unavailable(format!("{tx} used this nonce without the recorded transfer")),
            // A logged transfer is from a successful transaction: a receipt that says otherwise
            // is not an answer.
            Ok(NonceUse::NotExecuted) => return Evidence::Unavailable(format!("no successful receipt for {tx}, which logged a transfer")),
            Ok(NonceUse::Other) => {}
            Err(e) => return Evidence::Unavailable(e),
        }
    }
    if !complete {
        return Evidence::Unavailable("the nonce is used and more transfers to payTo were logged than were looked at".into());
    }
    match call(permit2::invalidation_logs_request(q, from)).await.map(|r| permit2::invalidation(&r, q)) {
        Ok(Some(Some(tx))) => Evidence::UsedElsewhere { transaction: Some(tx) },
        Ok(Some(None)) => Evidence::Unavailable("the nonce is used but neither a settlement of this permit nor an invalidation of it was found".into()),
        Ok(None) => Evidence::Unavailable("eth_getLogs answered something other than a list".into()),
        Err(e) => Evidence::Unavailable(e),
    }
}

/// What one transaction did with a Permit2 nonce ([`permit2_evidence`]).
enum NonceUse {
    /// Not a call of the `upto` proxy's settle with this owner and nonce.
    Other,
    /// Such a call, without a successful receipt (pending, unknown or reverted).
    NotExecuted,
    /// Such a call, successful, paying what the ledger recorded.
    Paid,
    /// Such a call, successful, without the recorded transfer.
    Unpaid,
}
