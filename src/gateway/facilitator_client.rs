//! The facilitator client: `POST /verify` and `/settle` over the configured facilitators with
//! failover ([`crate::facilitator::FacilitatorHealth`]), each call's `Authorization` (a configured
//! header or a CDP JWT, [`crate::facilitator::cdp`]), and the mapping of an upstream failure to
//! 502/504. Its replies are classified once by [`crate::facilitator`]'s functions. It never touches
//! the ledger: what an outcome means for a payment is decided in `pay.rs` and `settle.rs`.

use http::StatusCode;
use serde_json::Value;

use crate::config::{Config, Facilitator, FacilitatorAuth};
use crate::evm::hex_lower;
use crate::facilitator::{request_body, HttpReply, UpstreamError};
use super::platform::Platform;
use crate::x402::{PaymentPayload, SettleResponse};

use crate::facilitator::cdp;

/// A facilitator endpoint the paywall calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    Verify,
    Settle,
}

impl Endpoint {
    pub(crate) fn path(self) -> &'static str {
        match self {
            Endpoint::Verify => "verify",
            Endpoint::Settle => "settle",
        }
    }
}

/// What one facilitator exchange decided (`O`: [`VerifyOutcome`] or [`SettleOutcome`]), and how
/// long it took in all (milliseconds).
pub(crate) struct FacilitatorCall<O> {
    pub(crate) outcome: O,
    pub(crate) millis: u64,
}

/// `POST {facilitator}/{endpoint}` with the payment in its own version, over the configured
/// facilitators in [`FacilitatorHealth::order`], each reply classified once with `classify`.
/// `/verify` moves on to the next facilitator on any failure (`failed`: no usable answer);
/// `/settle` only when the request was provably never sent ([`UpstreamError::NotSent`]): once it
/// may have reached a facilitator the outcome is unknown and belongs to the ledger's
/// reconciliation, never to a second facilitator. A failure marks the facilitator as failing for
/// this isolate (logged).
pub(crate) async fn call_facilitator<P: Platform, O>(
    config: &Config,
    p: &P,
    endpoint: Endpoint,
    payment: &PaymentPayload,
    requirements: &Value,
    classify: fn(Result<HttpReply, UpstreamError>) -> O,
    failed: fn(&O) -> bool,
) -> FacilitatorCall<O> {
    post_to_facilitators(config, p, endpoint, request_body(payment.version, &payment.raw, requirements), classify, failed).await
}

/// `POST {facilitator}/{endpoint}` with `body` (JSON), over the configured facilitators in
/// [`FacilitatorHealth::order`], each reply classified once with `classify`; the failover rules of
/// [`call_facilitator`].
pub(crate) async fn post_to_facilitators<P: Platform, O>(
    config: &Config,
    p: &P,
    endpoint: Endpoint,
    body: String,
    classify: impl Fn(Result<HttpReply, UpstreamError>) -> O,
    failed: fn(&O) -> bool,
) -> FacilitatorCall<O> {
    let health = &p.isolate().health;
    let urls: Vec<&str> = config.facilitators.iter().map(|f| f.url.as_str()).collect();
    let started = p.millis();
    let mut outcome = None;
    for i in health.order(&urls, p.now()) {
        let facilitator = &config.facilitators[i];
        let url = format!("{}/{}", facilitator.url, endpoint.path());
        let reply = match facilitator_authorization(p, facilitator, &url).await {
            Ok(auth) => p.post_json(&url, auth.as_deref(), body.clone(), config.facilitator_timeout_seconds).await,
            Err(e) => Err(UpstreamError::NotSent(format!("no authorization for {url}: {e}"))),
        };
        // What the log says if this reply turns out to be a failure, kept before it is consumed.
        let seen = reply.as_ref().map(|r| r.status).map_err(|e| (e.to_string(), matches!(e, UpstreamError::NotSent(_))));
        let decided = classify(reply);
        if !failed(&decided) {
            health.succeeded(&facilitator.url);
            outcome = Some(decided);
            break;
        }
        outcome = Some(decided);
        let (n, seconds) = health.failed(&facilitator.url, p.now());
        let what = match &seen {
            Err((e, _)) => e.clone(),
            Ok(status) => format!("HTTP {status} without a usable answer"),
        };
        p.log(&format!("x402: facilitator {} failed on /{} ({what}); {n} failure(s) in a row, skipped for {seconds} s", facilitator.url, endpoint.path()));
        if endpoint == Endpoint::Settle && !matches!(seen, Err((_, true))) {
            break;
        }
    }
    let outcome = outcome.unwrap_or_else(|| classify(Err(UpstreamError::NotSent("no facilitator is configured".into()))));
    FacilitatorCall { outcome, millis: p.millis().saturating_sub(started) }
}

/// The `Authorization` header for a call to `url` on `facilitator`: none, the configured value,
/// or `Bearer <CDP JWT>` signed for this exact endpoint.
pub(crate) async fn facilitator_authorization<P: Platform>(p: &P, facilitator: &Facilitator, url: &str) -> Result<Option<String>, String> {
    match &facilitator.auth {
        FacilitatorAuth::None => Ok(None),
        FacilitatorAuth::Header(h) => Ok(Some(h.clone())),
        FacilitatorAuth::Cdp(key) => {
            let nonce = hex_lower(&p.random32()?[..16]);
            let input = key.signing_input("POST", url, p.now(), &nonce)?;
            let signature = p.sign(key, input.as_bytes()).await?;
            Ok(Some(format!("Bearer {}", cdp::compact_jws(&input, &signature))))
        }
    }
}

/// 504 when an upstream ran out of time, else 502.
pub(crate) fn upstream_status(timed_out: bool) -> StatusCode {
    if timed_out {
        StatusCode::GATEWAY_TIMEOUT
    } else {
        StatusCode::BAD_GATEWAY
    }
}

pub(crate) fn with_payer(mut s: SettleResponse, payer: &str) -> SettleResponse {
    if s.payer.is_none() {
        s.payer = Some(payer.to_string());
    }
    s
}
