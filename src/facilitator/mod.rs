//! The facilitator's HTTP API (x402 v2 §7): request bodies for `POST /verify` and `POST /settle`,
//! and the classification of their answers into outcomes the gateway acts on.
//!
//! Classification (REFERENCE §3.1): a parseable body with `success` / `isValid` is an answer,
//! whatever the HTTP status (facilitators send 400 with a body on refusal); a 2xx without one,
//! a 5xx without one, an unreachable facilitator or a timeout leaves the outcome unknown. So does
//! `success: false` that carries a transaction hash or the reason `settlement_pending` (x402 PR
//! #3083: the transaction was broadcast and its receipt not seen): that is not a refusal.
//!
//! | file | owns |
//! |---|---|
//! | `mod.rs` | request bodies, reply classification ([`SettleOutcome`], [`VerifyOutcome`]), [`FacilitatorHealth`] |
//! | `cdp.rs` | CDP API keys and the JWT a CDP facilitator asks for |
//!
//! The calls themselves (failover over the configured facilitators, `Authorization`, timing) are
//! the gateway's `facilitator_client.rs`: they need the [`crate::gateway::Platform`] and the
//! configuration, and this module depends on neither, so `config` (which reads [`cdp`] keys) and
//! `gateway` can both use it without an import cycle.
//!
//! What it must not touch: I/O, the configuration, the ledger, the origin, or what an outcome
//! means for a payment (the gateway decides that).

pub mod cdp;

use serde_json::{json, Value};

use crate::x402::{SettleResponse, VerifyResponse};

/// Largest facilitator reply read, in bytes (64 KiB).
pub const MAX_REPLY_BYTES: usize = 64 * 1024;

/// An HTTP reply from an upstream (facilitator): status and body bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpReply {
    pub status: u16,
    pub body: Vec<u8>,
}

/// Why an upstream call produced no reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamError {
    /// No answer within the time limit.
    Timeout { seconds: u64 },
    /// Connection or protocol failure. The request may have reached the upstream.
    Network(String),
    /// The request was provably never sent (it could not be built or authenticated).
    NotSent(String),
}

impl UpstreamError {
    /// What a client may be told: no addresses, no runtime error text (those go to the log).
    pub fn public(&self) -> String {
        match self {
            UpstreamError::Timeout { seconds } => format!("no answer within {seconds} s"),
            UpstreamError::Network(_) => "unreachable".into(),
            UpstreamError::NotSent(_) => "not called".into(),
        }
    }
}

impl std::fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpstreamError::Timeout { seconds } => write!(f, "no answer within {seconds} s"),
            UpstreamError::Network(e) => write!(f, "unreachable: {e}"),
            UpstreamError::NotSent(e) => write!(f, "not called: {e}"),
        }
    }
}

/// Per-isolate health of the configured facilitators, for failover: a facilitator whose call
/// failed (unreachable, timed out, no usable answer) is skipped for a while, doubling with each
/// consecutive failure from [`COOLDOWN_SECONDS`] up to [`MAX_COOLDOWN_SECONDS`]; one usable answer
/// clears it. Keyed by base URL.
#[derive(Debug, Default)]
pub struct FacilitatorHealth {
    state: std::cell::RefCell<std::collections::HashMap<String, Health>>,
}

/// Seconds a facilitator is skipped after its first consecutive failure.
pub const COOLDOWN_SECONDS: u64 = 5;
/// Longest skip, seconds.
pub const MAX_COOLDOWN_SECONDS: u64 = 60;

#[derive(Debug, Clone, Copy, Default)]
struct Health {
    consecutive_failures: u32,
    skip_until: u64,
}

impl FacilitatorHealth {
    /// The order in which to try `urls` at `now` (Unix seconds): those not being skipped, in
    /// configured order, then the skipped ones, soonest back first (a last resort beats no try).
    pub fn order(&self, urls: &[&str], now: u64) -> Vec<usize> {
        let state = self.state.borrow();
        let skip = |i: usize| state.get(urls[i]).map(|h| h.skip_until).filter(|&t| t > now);
        let mut ready: Vec<usize> = (0..urls.len()).filter(|&i| skip(i).is_none()).collect();
        let mut skipped: Vec<(u64, usize)> = (0..urls.len()).filter_map(|i| skip(i).map(|t| (t, i))).collect();
        skipped.sort();
        ready.extend(skipped.into_iter().map(|(_, i)| i));
        ready
    }

    /// Whether `url` is being skipped at `now`.
    pub fn is_skipped(&self, url: &str, now: u64) -> bool {
        self.state.borrow().get(url).is_some_and(|h| h.skip_until > now)
    }

    /// Records a usable answer from `url`.
    pub fn succeeded(&self, url: &str) {
        self.state.borrow_mut().remove(url);
    }

    /// Records a failure of `url` at `now`; returns (consecutive failures, seconds it is now
    /// skipped for).
    pub fn failed(&self, url: &str, now: u64) -> (u32, u64) {
        let mut state = self.state.borrow_mut();
        let h = state.entry(url.to_string()).or_default();
        h.consecutive_failures = h.consecutive_failures.saturating_add(1);
        let seconds = COOLDOWN_SECONDS.saturating_mul(1u64 << h.consecutive_failures.saturating_sub(1).min(16)).min(MAX_COOLDOWN_SECONDS);
        h.skip_until = now + seconds;
        (h.consecutive_failures, seconds)
    }
}

/// The JSON body of `/verify` and `/settle`: `{x402Version, paymentPayload, paymentRequirements}`.
/// `version` is the payment's protocol version (1 or 2), `payload` the client's payload verbatim,
/// `requirements` the offered requirement it matched, in that version's form.
pub fn request_body(version: u64, payload: &Value, requirements: &Value) -> String {
    json!({ "x402Version": version, "paymentPayload": payload, "paymentRequirements": requirements }).to_string()
}

/// What `/settle` decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SettleOutcome {
    /// `success: true`: the transfer is on chain.
    Settled(SettleResponse),
    /// `success: false`: the facilitator refused; nothing was transferred.
    Refused(SettleResponse),
    /// No usable answer: the payment may or may not have been executed. `transaction` when the
    /// facilitator named one (a pending settlement).
    Unknown { timed_out: bool, detail: String, transaction: Option<String> },
}

/// Reason codes with which facilitators refuse an authorization whose nonce was already used on
/// chain (spec `invalid_transaction_state`; `@x402/evm` `invalid_exact_evm_nonce_already_used`).
pub const NONCE_USED_REASONS: [&str; 3] = ["invalid_exact_evm_nonce_already_used", "invalid_transaction_state", "nonce_already_used"];

/// Whether a refusal's reason says the authorization's nonce is already used on chain.
pub fn is_nonce_used(reason: Option<&str>) -> bool {
    reason.is_some_and(|r| NONCE_USED_REASONS.iter().any(|n| r.eq_ignore_ascii_case(n)))
}

/// Whether `s` is a transaction hash: `0x` and 64 hex digits.
pub fn is_transaction_hash(s: &str) -> bool {
    s.len() == 66 && s.starts_with("0x") && s.as_bytes()[2..].iter().all(u8::is_ascii_hexdigit)
}

/// Checks a `success: true` answer before it is believed: a 32-byte transaction hash, one of the
/// offer's `networks` (CAIP-2, or the v1 name for a v1 payment), and, when the answer names a
/// payer, the payer the paywall verified (compared case-insensitively), and, for a metered
/// (`upto`) settlement (`asked`: the amount in atomic units its requirement asked for), an
/// `amount` that is that amount when the answer names one (x402 `SettleResponse.amount`: what was
/// actually settled). Err says what is wrong.
pub fn check_settled(s: &SettleResponse, networks: &[&str], payer: &str, asked: Option<&str>) -> Result<(), String> {
    if let (Some(asked), Some(amount)) = (asked, &s.amount) {
        if amount != asked {
            return Err(format!("facilitator reported settling amount {amount:?}, not the {asked} asked for"));
        }
    }
    if !is_transaction_hash(&s.transaction) {
        return Err(format!("facilitator reported success with transaction {:?}, not a 32-byte hash", s.transaction));
    }
    if !networks.contains(&s.network.as_str()) {
        return Err(format!("facilitator reported success on network {:?}, not the offer's {:?}", s.network, networks));
    }
    match &s.payer {
        Some(p) if !p.eq_ignore_ascii_case(payer) => Err(format!("facilitator reported success for payer {p}, not {payer}")),
        _ => Ok(()),
    }
}

/// Classifies a `/settle` reply.
pub fn classify_settle(reply: Result<HttpReply, UpstreamError>) -> SettleOutcome {
    let reply = match reply {
        Ok(r) => r,
        Err(e) => return SettleOutcome::Unknown { timed_out: matches!(e, UpstreamError::Timeout { .. }), detail: format!("facilitator {}", e.public()), transaction: None },
    };
    let named = |s: &SettleResponse| is_transaction_hash(&s.transaction).then(|| s.transaction.clone());
    match serde_json::from_slice::<SettleResponse>(&reply.body) {
        Ok(s) if s.success && (200..300).contains(&reply.status) && !s.transaction.is_empty() => SettleOutcome::Settled(s),
        Ok(s) if !s.success && reply.status < 500 && s.transaction.is_empty() && s.error_reason.as_deref() != Some("settlement_pending") => SettleOutcome::Refused(s),
        Ok(s) => SettleOutcome::Unknown {
            timed_out: false,
            detail: format!(
                "facilitator answered HTTP {} with success={} transaction={:?} reason={:?}",
                reply.status,
                s.success,
                s.transaction,
                s.error_reason.as_deref().unwrap_or("")
            ),
            transaction: named(&s),
        },
        Err(e) => SettleOutcome::Unknown { timed_out: false, detail: format!("facilitator answered HTTP {} with a malformed settle response: {e}", reply.status), transaction: None },
    }
}

/// What `/verify` decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyOutcome {
    Valid,
    Invalid { reason: String },
    Unknown { timed_out: bool, detail: String },
}

/// Classifies a `/verify` reply.
pub fn classify_verify(reply: Result<HttpReply, UpstreamError>) -> VerifyOutcome {
    let reply = match reply {
        Ok(r) => r,
        Err(e) => return VerifyOutcome::Unknown { timed_out: matches!(e, UpstreamError::Timeout { .. }), detail: format!("facilitator {}", e.public()) },
    };
    match serde_json::from_slice::<VerifyResponse>(&reply.body) {
        Ok(v) if v.is_valid && (200..300).contains(&reply.status) => VerifyOutcome::Valid,
        Ok(v) if !v.is_valid && reply.status < 500 => {
            VerifyOutcome::Invalid { reason: v.invalid_reason.unwrap_or_else(|| "invalid_payload".into()) }
        }
        Ok(_) => VerifyOutcome::Unknown { timed_out: false, detail: format!("facilitator answered HTTP {} to verify", reply.status) },
        Err(e) => VerifyOutcome::Unknown { timed_out: false, detail: format!("facilitator answered HTTP {} with a malformed verify response: {e}", reply.status) },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: u16, body: &str) -> Result<HttpReply, UpstreamError> {
        Ok(HttpReply { status, body: body.as_bytes().to_vec() })
    }

    #[test]
    fn settle_classification() {
        let ok = r#"{"success":true,"transaction":"0xab","network":"eip155:84532","payer":"0x1"}"#;
        assert!(matches!(classify_settle(reply(200, ok)), SettleOutcome::Settled(s) if s.transaction == "0xab"));
        let refused = r#"{"success":false,"errorReason":"insufficient_funds","transaction":"","network":"eip155:84532"}"#;
        assert!(matches!(classify_settle(reply(200, refused)), SettleOutcome::Refused(s) if s.error_reason.as_deref() == Some("insufficient_funds")));
        assert!(matches!(classify_settle(reply(400, refused)), SettleOutcome::Refused(_)));
        assert!(matches!(classify_settle(reply(500, refused)), SettleOutcome::Unknown { .. }));
        assert!(matches!(classify_settle(reply(502, "<html>")), SettleOutcome::Unknown { timed_out: false, .. }));
        assert!(matches!(classify_settle(reply(200, "{}")), SettleOutcome::Unknown { .. }));
        assert!(matches!(classify_settle(reply(200, r#"{"success":true,"transaction":""}"#)), SettleOutcome::Unknown { .. }));
        assert!(matches!(classify_settle(Err(UpstreamError::Timeout { seconds: 1 })), SettleOutcome::Unknown { timed_out: true, .. }));
        let tx = format!("0x{}", "cd".repeat(32));
        let pending = format!(r#"{{"success":false,"errorReason":"invalid_exact_evm_transaction_failed","transaction":"{tx}","network":"eip155:84532"}}"#);
        assert!(matches!(classify_settle(reply(200, &pending)), SettleOutcome::Unknown { transaction: Some(t), .. } if t == tx), "a refusal naming a transaction is not a refusal");
        let pending = r#"{"success":false,"errorReason":"settlement_pending","transaction":"","network":"eip155:84532"}"#;
        assert!(matches!(classify_settle(reply(200, pending)), SettleOutcome::Unknown { transaction: None, .. }));
    }

    #[test]
    fn settled_answers_are_checked_before_they_are_believed() {
        let ok = |tx: &str, net: &str, payer: Option<&str>| SettleResponse {
            success: true,
            error_reason: None,
            payer: payer.map(str::to_string),
            transaction: tx.into(),
            network: net.into(),
            amount: None,
        };
        let tx = format!("0x{}", "ab".repeat(32));
        let nets = ["eip155:84532", "base-sepolia"];
        assert_eq!(check_settled(&ok(&tx, "eip155:84532", Some("0xAbC")), &nets, "0xabc", None), Ok(()));
        assert_eq!(check_settled(&ok(&tx, "base-sepolia", None), &nets, "0xabc", None), Ok(()));
        assert!(check_settled(&ok("0xab", "eip155:84532", None), &nets, "0xabc", None).unwrap_err().contains("32-byte"));
        assert!(check_settled(&ok(&tx, "eip155:8453", None), &nets, "0xabc", None).unwrap_err().contains("network"));
        assert!(check_settled(&ok(&tx, "eip155:84532", Some("0xdef")), &nets, "0xabc", None).unwrap_err().contains("payer"));
        let metered = |amount: &str| SettleResponse { amount: Some(amount.into()), ..ok(&tx, "eip155:84532", None) };
        assert_eq!(check_settled(&metered("1234"), &nets, "0xabc", Some("1234")), Ok(()));
        assert!(check_settled(&metered("9999999"), &nets, "0xabc", Some("1234")).unwrap_err().contains("amount"));
        assert!(check_settled(&metered("01234"), &nets, "0xabc", Some("1234")).unwrap_err().contains("amount"));
        assert_eq!(check_settled(&ok(&tx, "eip155:84532", None), &nets, "0xabc", Some("1234")), Ok(()));
        assert!(is_nonce_used(Some("invalid_exact_evm_nonce_already_used")) && !is_nonce_used(Some("insufficient_funds")) && !is_nonce_used(None));
    }

    #[test]
    fn failing_facilitators_are_skipped_for_a_while_and_tried_last() {
        let h = FacilitatorHealth::default();
        let urls = ["a", "b", "c"];
        assert_eq!(h.order(&urls, 100), vec![0, 1, 2]);
        assert_eq!(h.failed("a", 100), (1, COOLDOWN_SECONDS));
        assert_eq!(h.order(&urls, 100), vec![1, 2, 0]);
        assert_eq!(h.failed("b", 101), (1, COOLDOWN_SECONDS));
        assert_eq!(h.order(&urls, 102), vec![2, 0, 1], "skipped ones last, soonest back first");
        assert_eq!(h.order(&urls, 100 + COOLDOWN_SECONDS), vec![0, 2, 1], "back after the cooldown");
        assert_eq!(h.failed("a", 200), (2, 2 * COOLDOWN_SECONDS), "doubling");
        for _ in 0..40 {
            h.failed("a", 200);
        }
        assert_eq!(h.failed("a", 200).1, MAX_COOLDOWN_SECONDS);
        h.succeeded("a");
        assert!(!h.is_skipped("a", 200));
    }

    #[test]
    fn verify_classification() {
        assert_eq!(classify_verify(reply(200, r#"{"isValid":true,"payer":"0x1"}"#)), VerifyOutcome::Valid);
        assert_eq!(
            classify_verify(reply(400, r#"{"isValid":false,"invalidReason":"insufficient_funds"}"#)),
            VerifyOutcome::Invalid { reason: "insufficient_funds".into() }
        );
        assert!(matches!(classify_verify(reply(503, "")), VerifyOutcome::Unknown { .. }));
    }

    #[test]
    fn request_body_shape() {
        let b: Value = serde_json::from_str(&request_body(2, &json!({"x402Version":2}), &json!({"scheme":"exact"}))).unwrap();
        assert_eq!(b, json!({"x402Version":2,"paymentPayload":{"x402Version":2},"paymentRequirements":{"scheme":"exact"}}));
    }
}
