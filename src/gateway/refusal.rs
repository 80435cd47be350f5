//! The gateway's one refusal type: every answer that refuses, withholds or cannot serve a request
//! is a [`Refusal`] variant, which knows its HTTP status ([`Refusal::status`]), its JSON body and
//! headers (rendered by one function, [`Refusal::render`]), and the decision it records
//! ([`Refusal::decision`]: outcome and reason code). A new refusal is one variant: the compiler
//! then lists each match below that must place it.
//!
//! Reasons from local verification and sign-in arrive as [`Invalid`] (`crate::refusal`, the shape
//! [`crate::x402::exact`] and [`crate::x402::siwx`] share) and leave in the 402's `error` as `code: message`.
//! It owns answers only: no I/O beyond the one log line a variant may carry, and no payment
//! state (the flows in `pay.rs` and `settle.rs` decide *which* refusal applies).

use http::{Response, StatusCode};
use serde_json::json;

use super::facilitator_client::upstream_status;
use crate::facilitator::UpstreamError;
use crate::refusal::Invalid;
use crate::telemetry::{DecisionOutcome, Trace};
use crate::x402::{encode_header, SettleResponse};

use super::challenge::Challenger;
use super::forward::ForwardError;
use super::limits::{FAILED_BLOCK_SECONDS, RATE_LIMIT_RETRY_SECONDS};
use super::pay::PaymentIdentity;
use super::platform::Platform;
use super::settle::response_header;
use super::{json_response, set_header};

/// A rate limit a request is over (429 `rate_limited`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Limit {
    /// The route's `failed` limit: the client's payment attempts are blocked for
    /// [`FAILED_BLOCK_SECONDS`].
    FailedPayments,
    /// The route's `challenge` limit (unpaid requests).
    Challenges,
    /// The route's `paid` limit (payment attempts of one payer).
    Payer,
}

impl Limit {
    /// The decision's reason code.
    fn code(self) -> &'static str {
        match self {
            Limit::FailedPayments => "failed_payments",
            Limit::Challenges => "challenges",
            Limit::Payer => "payer",
        }
    }
}

/// Why a request is refused, withheld or cannot be served: each variant one answer.
pub(super) enum Refusal<'a> {
    /// 400 `method_override_refused`: a method-override header, or `_method` on a priced path.
    MethodOverride(String),
    /// 400 `invalid_path`: the path does not canonicalise.
    InvalidPath(String),
    /// 405 `method_not_allowed` + `Allow` (`allow`): a priced path no route serves with this method.
    MethodNotAllowed { message: String, allow: String },
    /// 500 `paywall_misconfigured`.
    Misconfigured(&'a str),
    /// 402, the challenge, for a request without a payment; `pass`: why a presented pass or
    /// sign-in did not admit it (decision `challenge`, reason its code or `no_payment`).
    Unpaid { challenger: &'a Challenger<'a>, pass: Option<Invalid> },
    /// 402, the challenge naming why the payment is refused (`error` = `code: message`).
    Payment { challenger: &'a Challenger<'a>, why: Invalid },
    /// 402, the challenge with the facilitator's `invalidReason` as it came.
    VerifyInvalid { challenger: &'a Challenger<'a>, reason: String },
    /// 429 `rate_limited` + `Retry-After`.
    RateLimited(Limit),
    /// 409 `payment_in_flight`: another request holds this authorization.
    InFlight(&'a PaymentIdentity),
    /// `/verify` gave no usable answer: 502/504 `facilitator_unavailable`, nothing charged; or,
    /// when the request lost its hold meanwhile (`hold_lost`), 409 `payment_in_flight`.
    VerifyUnavailable { identity: &'a PaymentIdentity, timed_out: bool, detail: String, hold_lost: bool },
    /// 409 `payment_for_other_resource`: the payment was settled for `resource`, not delivered yet.
    OtherResource { identity: &'a PaymentIdentity, resource: String },
    /// 402 `invalid_exact_evm_payload_authorization_valid_before` (JSON): an earlier send never
    /// executed and the authorization has expired; nothing was charged.
    Expired(&'a PaymentIdentity),
    /// 503 `ledger_unavailable` + `Retry-After: 1`: nothing forwarded or charged (logged).
    LedgerUnavailable(String),
    /// 503 `ledger_unavailable` naming the payment: the send mark could not be written, so
    /// `/settle` was not sent.
    NotSent { identity: &'a PaymentIdentity, detail: String },
    /// `status` (502/504) `settlement_outcome_unknown` naming the payment.
    UnknownOutcome { identity: &'a PaymentIdentity, status: StatusCode, detail: String },
    /// 402, the facilitator's refusal to settle, with its `PAYMENT-RESPONSE` (`version`'s header).
    SettlementRefused { identity: &'a PaymentIdentity, refused: SettleResponse, version: u64 },
    /// 402 `invalid_exact_evm_nonce_already_used`: the chain shows the nonce used by a
    /// transaction (`transaction`) that did not pay this requirement.
    NonceUsedElsewhere { identity: &'a PaymentIdentity, transaction: Option<String>, version: u64 },
    /// 499 `client_closed_request`: the client left before settlement; nothing was charged.
    ClientGone,
    /// The origin could not be sent the request or did not answer: 405, 400, or 502/504
    /// `origin_unavailable`; `settled`: the payment was settled already (its `PAYMENT-RESPONSE`
    /// goes with the answer).
    Origin { error: &'a ForwardError, settled: Option<(&'a SettleResponse, u64)> },
    /// 502 `origin_metering_failed`: a metered (`upto`) answer whose amount could not be
    /// established ([`crate::meter::MeterFault`]); withheld, nothing charged.
    Metering { identity: &'a PaymentIdentity, fault: String },
    /// 401 `unauthorized` + `WWW-Authenticate: Bearer` (admin endpoint).
    Unauthorized,
    /// 405 `method_not_allowed` + `Allow: POST` (admin endpoint).
    AdminMethod,
    /// 400 `invalid_admin_request`.
    AdminRequest(String),
}

/// The facilitator's reason for a Permit2 payer without an allowance for the token (x402
/// `upto`, and `exact` over Permit2): answered 412.
pub(super) const PERMIT2_ALLOWANCE_REQUIRED: &str = "permit2_allowance_required";

/// The 409 message for a request that outlasted its hold before it could send the payment.
const HOLD_LOST: &str = "this request took longer than its hold on the authorization, which another request may have taken; wait for that answer, or retry this same payment header, which never charges twice";

impl Refusal<'_> {
    /// The HTTP status of the answer.
    pub(super) fn status(&self) -> StatusCode {
        match self {
            Refusal::MethodOverride(_) | Refusal::InvalidPath(_) | Refusal::AdminRequest(_) => StatusCode::BAD_REQUEST,
            Refusal::MethodNotAllowed { .. } | Refusal::AdminMethod => StatusCode::METHOD_NOT_ALLOWED,
            Refusal::Misconfigured(_) => StatusCode::INTERNAL_SERVER_ERROR,
            // x402 `upto`/Permit2: a payer without a Permit2 allowance is told 412 (the official
            // resource server's status for this reason).
            Refusal::VerifyInvalid { reason, .. } if reason == PERMIT2_ALLOWANCE_REQUIRED => StatusCode::PRECONDITION_FAILED,
            Refusal::Unpaid { .. } | Refusal::Payment { .. } | Refusal::VerifyInvalid { .. } | Refusal::Expired(_) => StatusCode::PAYMENT_REQUIRED,
            Refusal::SettlementRefused { .. } | Refusal::NonceUsedElsewhere { .. } => StatusCode::PAYMENT_REQUIRED,
            Refusal::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            Refusal::InFlight(_) | Refusal::OtherResource { .. } => StatusCode::CONFLICT,
            Refusal::VerifyUnavailable { hold_lost: true, .. } => StatusCode::CONFLICT,
            Refusal::VerifyUnavailable { timed_out, .. } => upstream_status(*timed_out),
            Refusal::LedgerUnavailable(_) | Refusal::NotSent { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Refusal::UnknownOutcome { status, .. } => *status,
            Refusal::ClientGone => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
            Refusal::Metering { .. } => StatusCode::BAD_GATEWAY,
            Refusal::Origin { error: ForwardError::Method(_), .. } => StatusCode::METHOD_NOT_ALLOWED,
            Refusal::Origin { error: ForwardError::Url, .. } => StatusCode::BAD_REQUEST,
            Refusal::Origin { error: ForwardError::Upstream(e), .. } => upstream_status(matches!(e, UpstreamError::Timeout { .. })),
            Refusal::Unauthorized => StatusCode::UNAUTHORIZED,
        }
    }

    /// The decision this answer records: its outcome and reason code. `None` for answers outside
    /// a priced request's decision (dispatch, admin) and for origin failures, whose decision
    /// depends on the payment's state and is recorded by the flow that knows it.
    pub(super) fn decision(&self) -> Option<(DecisionOutcome, Option<&str>)> {
        use DecisionOutcome::*;
        let d = match self {
            Refusal::Unpaid { pass, .. } => (Challenge, Some(pass.as_ref().map_or("no_payment", |p| p.reason))),
            Refusal::Payment { why, .. } => (Refused, Some(why.reason)),
            Refusal::VerifyInvalid { reason, .. } => (Refused, Some(reason.as_str())),
            Refusal::RateLimited(limit) => (RateLimited, Some(limit.code())),
            Refusal::InFlight(_) => (Refused, Some("payment_in_flight")),
            Refusal::VerifyUnavailable { .. } => (FacilitatorError, Some("facilitator_unavailable")),
            Refusal::OtherResource { .. } => (Refused, Some("payment_for_other_resource")),
            Refusal::Expired(_) => (Refused, Some("invalid_exact_evm_payload_authorization_valid_before")),
            Refusal::LedgerUnavailable(_) | Refusal::NotSent { .. } => (Unavailable, Some("ledger_unavailable")),
            Refusal::UnknownOutcome { .. } => (UnknownOutcome, Some("settlement_outcome_unknown")),
            Refusal::SettlementRefused { refused, .. } => (Refused, Some(refused.error_reason.as_deref().unwrap_or("settlement_failed"))),
            Refusal::NonceUsedElsewhere { .. } => (Refused, Some("invalid_exact_evm_nonce_already_used")),
            Refusal::ClientGone => (ClientGone, None),
            Refusal::MethodOverride(_)
            | Refusal::InvalidPath(_)
            | Refusal::MethodNotAllowed { .. }
            | Refusal::Misconfigured(_)
            | Refusal::Origin { .. }
            | Refusal::Metering { .. }
            | Refusal::Unauthorized
            | Refusal::AdminMethod
            | Refusal::AdminRequest(_) => return None,
        };
        Some(d)
    }

    /// The log line this answer writes, if any.
    fn log_line(&self) -> Option<String> {
        match self {
            Refusal::LedgerUnavailable(detail) => Some(format!("x402: ledger unavailable: {detail}")),
            _ => None,
        }
    }

    /// The answer: the 402 challenge for the variants that carry one (its `error` naming why),
    /// else the JSON error ([`Refusal::json`]).
    pub(super) fn render<P: Platform>(&self, p: &P) -> Response<P::Body> {
        match self {
            Refusal::Unpaid { challenger, pass: Some(why) } => challenger.respond(p, &format!("{why}; PAYMENT-SIGNATURE header is required")),
            Refusal::Unpaid { challenger, pass: None } => challenger.respond(p, "PAYMENT-SIGNATURE header is required"),
            Refusal::Payment { challenger, why } => challenger.respond(p, &why.to_string()),
            Refusal::VerifyInvalid { challenger, reason } => {
                let mut res = challenger.respond(p, reason);
                *res.status_mut() = self.status();
                res
            }
            _ => self.json(P::body),
        }
    }

    /// The JSON answer: [`Refusal::status`], `Content-Type: application/json`,
    /// `Cache-Control: no-store`, a body `{"error": code, "message": …, "payment"?: …}` and the
    /// variant's headers. (The challenge variants are answered by [`Refusal::render`]; here they
    /// get a bare 402 with their `error` text.)
    pub(super) fn json<B>(&self, body: impl FnOnce(Vec<u8>) -> B) -> Response<B> {
        let mut headers: Vec<(&'static str, String)> = Vec::new();
        let value = match self {
            Refusal::MethodOverride(message) => json!({ "error": "method_override_refused", "message": message }),
            Refusal::InvalidPath(message) => json!({ "error": "invalid_path", "message": message }),
            Refusal::MethodNotAllowed { message, allow } => {
                headers.push(("allow", allow.clone()));
                json!({ "error": "method_not_allowed", "message": message })
            }
            Refusal::Misconfigured(reason) => json!({ "error": "paywall_misconfigured", "message": reason }),
            Refusal::Unpaid { pass: Some(why), .. } => json!({ "error": format!("{why}; PAYMENT-SIGNATURE header is required") }),
            Refusal::Unpaid { pass: None, .. } => json!({ "error": "PAYMENT-SIGNATURE header is required" }),
            Refusal::Payment { why, .. } => json!({ "error": why.to_string() }),
            Refusal::VerifyInvalid { reason, .. } => json!({ "error": reason }),
            Refusal::RateLimited(limit) => {
                let (message, retry_after) = match limit {
                    Limit::FailedPayments => ("too many failed payment attempts from this address", FAILED_BLOCK_SECONDS),
                    Limit::Challenges => ("too many unpaid requests from this address", RATE_LIMIT_RETRY_SECONDS),
                    Limit::Payer => ("too many payment attempts by this payer", RATE_LIMIT_RETRY_SECONDS),
                };
                headers.push(("retry-after", retry_after.to_string()));
                json!({ "error": "rate_limited", "message": message })
            }
            Refusal::InFlight(identity) => json!({
                "error": "payment_in_flight",
                "message": "another request is using this authorization right now; wait for its answer, or retry this one when it has ended",
                "payment": identity,
            }),
            Refusal::VerifyUnavailable { identity, hold_lost: true, .. } => json!({ "error": "payment_in_flight", "message": HOLD_LOST, "payment": identity }),
            Refusal::VerifyUnavailable { identity, detail, .. } => {
                json!({ "error": "facilitator_unavailable", "message": format!("could not verify the payment: {detail}; nothing was charged"), "payment": identity })
            }
            Refusal::OtherResource { identity, resource } => json!({
                "error": "payment_for_other_resource",
                "message": format!("this payment was sent to settlement for {resource} and its response not yet delivered; retry it on that resource to receive it"),
                "payment": identity,
            }),
            Refusal::Expired(identity) => json!({
                "error": "invalid_exact_evm_payload_authorization_valid_before",
                "message": "an earlier settlement of this payment was sent but never executed on chain, and the authorization has expired: nothing was charged; sign a new one",
                "payment": identity,
            }),
            Refusal::LedgerUnavailable(detail) => {
                headers.push(("retry-after", "1".into()));
                json!({ "error": "ledger_unavailable", "message": format!("the payment ledger is unavailable ({detail}); nothing was forwarded and nothing was charged; retry shortly") })
            }
            Refusal::NotSent { identity, detail } => {
                headers.push(("retry-after", "1".into()));
                json!({ "error": "ledger_unavailable", "message": format!("the payment ledger could not record the settlement before sending it ({detail}); it was not sent and nothing was charged; retry shortly"), "payment": identity })
            }
            Refusal::UnknownOutcome { identity, detail, .. } => json!({
                "error": "settlement_outcome_unknown",
                "message": format!("{detail}. The payment may or may not have been executed; the content is withheld. Retry with the same payment header before it expires: if it was settled you get the content without paying twice, if not it is settled then."),
                "payment": identity,
            }),
            Refusal::SettlementRefused { identity, refused, version } => {
                let reason = refused.error_reason.clone().unwrap_or_else(|| "settlement_failed".into());
                headers.push((response_header(*version), encode_header(refused)));
                json!({
                    "error": reason,
                    "message": "the facilitator refused to settle this payment; the content is withheld. If the refusal came after its transaction was broadcast, retrying this same payment header reconciles it, never charging twice",
                    "payment": identity,
                })
            }
            Refusal::NonceUsedElsewhere { identity, transaction, version } => {
                let reason = "invalid_exact_evm_nonce_already_used";
                let by = transaction.as_ref().map(|t| format!(" by transaction {t}")).unwrap_or_default();
                let refused = SettleResponse { success: false, error_reason: Some(reason.into()), payer: Some(identity.payer.clone()), transaction: String::new(), network: identity.network.clone(), amount: None };
                headers.push((response_header(*version), encode_header(&refused)));
                json!({
                    "error": reason,
                    "message": format!("this authorization's nonce was used on chain{by}, which did not pay this resource; this payment cannot settle and the content is withheld; sign a new one"),
                    "payment": identity,
                })
            }
            Refusal::ClientGone => json!({ "error": "client_closed_request", "message": "the client went away before settlement; nothing was charged" }),
            Refusal::Origin { error: ForwardError::Method(m), .. } => {
                headers.push(("allow", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS".into()));
                json!({ "error": "method_not_allowed", "message": format!("{m} requests are not forwarded") })
            }
            Refusal::Origin { error: ForwardError::Url, .. } => json!({ "error": "invalid_url" }),
            Refusal::Origin { error: ForwardError::Upstream(e), settled: None } => {
                json!({ "error": "origin_unavailable", "message": format!("origin {}; no payment was taken", e.public()) })
            }
            Refusal::Origin { error: ForwardError::Upstream(e), settled: Some((s, version)) } => {
                let message = format!(
                    "origin {}. Your payment was settled (transaction {}); retry with the same payment header before it expires to get the response without paying again",
                    e.public(),
                    s.transaction
                );
                headers.push((response_header(*version), encode_header(*s)));
                json!({ "error": "origin_unavailable", "message": message })
            }
            Refusal::Metering { identity, fault } => json!({
                "error": "origin_metering_failed",
                "message": format!("{fault}; the response is withheld and nothing was charged"),
                "payment": identity,
            }),
            Refusal::Unauthorized => {
                headers.push(("www-authenticate", "Bearer".into()));
                json!({ "error": "unauthorized", "message": "the admin endpoint needs Authorization: Bearer <ADMIN_TOKEN>" })
            }
            Refusal::AdminMethod => {
                headers.push(("allow", "POST".into()));
                json!({ "error": "method_not_allowed", "message": "use POST" })
            }
            Refusal::AdminRequest(message) => json!({ "error": "invalid_admin_request", "message": message }),
        };
        let mut res = json_response(self.status(), &value, body);
        for (name, v) in headers {
            set_header(res.headers_mut(), name, &v);
        }
        res
    }
}

/// Answers with `refusal` in a priced request: writes its log line, records its decision in
/// `trace`, and renders it.
pub(super) fn refuse<P: Platform>(p: &P, trace: &Trace, refusal: Refusal<'_>) -> Response<P::Body> {
    if let Some(line) = refusal.log_line() {
        p.log(&line);
    }
    if let Some((outcome, reason)) = refusal.decision() {
        trace.outcome(outcome, reason);
    }
    refusal.render(p)
}
