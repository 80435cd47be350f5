//! The signed payment context on a paid request ([`crate::payment_context`]): built once the
//! payment is verified and its authorization id is known ([`attach`], kept in the request's
//! extensions, so every path that forwards the paid request carries it: after settlement, before
//! it, a redelivery), and signed when the request is forwarded ([`signed_header`]), so that its
//! `iat` is the moment the origin is called and its `exp` that call's time limit.

use http::header::HeaderValue;
use http::Request;

use crate::config::{Config, OriginTarget, Route};
use crate::facilitator::UpstreamError;
use crate::payment_context::{Amount, Grant, PaymentContext};
use crate::x402::PaymentRequirements;

use super::forward::public_base;
use super::platform::Platform;

/// The payment a context describes.
pub(super) struct Paid<'a> {
    /// The payer, EIP-55.
    pub(super) payer: &'a str,
    /// The ledger's key of the authorization (`network/asset/payer/nonce`).
    pub(super) authorization: &'a str,
    /// The offer the payment matched.
    pub(super) requirements: &'a PaymentRequirements,
    /// The payment's x402 version.
    pub(super) version: u64,
}

/// Attaches the unsigned context of `paid` to `req` when `PAYMENT_CONTEXT_KEY` is set (else does
/// nothing). `canonical`: the canonical path, as forwarded.
pub(super) fn attach<B>(config: &Config, req: &mut Request<B>, route: &Route, canonical: &str, paid: Paid<'_>) {
    if config.payment_context.is_none() {
        return;
    }
    let public = public_base(req.uri());
    let audience = match &config.origin {
        OriginTarget::Url { base, .. } => base.clone(),
        OriginTarget::Service => public.clone(),
    };
    let r = paid.requirements;
    let grant = Grant {
        x402_version: paid.version,
        scheme: r.scheme.clone(),
        network: r.network.clone(),
        asset: r.asset.clone(),
        // `exact` charges the amount offered; a metered scheme (`upto`) carries its maximum.
        amount: if r.scheme == "exact" { Amount::Exact(r.amount.clone()) } else { Amount::UpTo(r.amount.clone()) },
        pay_to: r.pay_to.clone(),
        route: route.key.clone(),
        method: req.method().to_string(),
        path: canonical.to_string(),
    };
    let context = PaymentContext {
        issuer: config.public_url.clone().unwrap_or(public),
        audience,
        payer: paid.payer.to_string(),
        authorization: paid.authorization.to_string(),
        grant,
    };
    req.extensions_mut().insert(context);
}

/// The `X402-Payment-Context` value for `context`: issued now, expiring after the origin's time
/// limit, signed with the configured key. `Ok(None)` without a key. Err: the signature failed (the
/// request is not sent: [`UpstreamError::NotSent`]).
pub(super) async fn signed_header<P: Platform>(config: &Config, p: &P, context: &PaymentContext) -> Result<Option<HeaderValue>, UpstreamError> {
    let Some(key) = &config.payment_context else { return Ok(None) };
    let claims = context.claims(p.now(), config.origin_timeout_seconds);
    let input = key.signing_input(&claims);
    let signature = p.sign(key.signing_key(), input.as_bytes()).await.map_err(|e| UpstreamError::NotSent(format!("the payment context could not be signed: {e}")))?;
    let jws = crate::payment_context::compact(&input, &signature);
    HeaderValue::from_str(&jws).map(Some).map_err(|_| UpstreamError::NotSent("the payment context is not a header value".into()))
}
