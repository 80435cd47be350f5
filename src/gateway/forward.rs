//! Forwarding to the origin: the canonical origin URL, the request headers removed and set, and
//! the answers when the origin cannot be reached. Never settles or charges: the callers decide
//! what an origin failure means for a payment.


use http::header::HeaderValue;
use http::{Request, Response};

use crate::config::{Config, OriginTarget};
use crate::facilitator::UpstreamError;
use crate::pass;
use crate::x402::SettleResponse;

use crate::meter::SETTLEMENT_OVERRIDES;
use crate::headers::{is_spelling_of, CLIENT_FORWARDING_HEADERS, HOP_BY_HOP_HEADERS, PATH_OVERRIDE_HEADERS, PAYMENT_CONTEXT_HEADER, PAYWALL_REQUEST_HEADERS};
use crate::payment_context::PaymentContext;
use super::context::signed_header;
use super::platform::Platform;
use super::refusal::Refusal;
use super::rewrite::UrlRewrite;
use super::set_header;

/// Methods the Fetch API refuses to send (`CONNECT`, `TRACE`, `TRACK`): answered 405 here
/// instead of failing at the origin call; on a priced path before any payment work.
pub(super) const UNFORWARDABLE_METHODS: [&str; 3] = ["CONNECT", "TRACE", "TRACK"];

/// The origin URL for a canonical path and the request's query: the configured origin's base
/// (with its path prefix) followed by the canonical path; for a service-binding origin, the
/// public base the client used (`scheme://authority`).
pub(super) fn origin_url(config: &Config, public_base: &str, canonical: &str, query: Option<&str>) -> String {
    let base = match &config.origin {
        OriginTarget::Url { base, .. } => base.as_str(),
        OriginTarget::Service => public_base,
    };
    let mut url = String::with_capacity(base.len() + canonical.len() + query.map_or(0, |q| q.len() + 1));
    url.push_str(base);
    url.push_str(canonical);
    if let Some(q) = query {
        url.push('?');
        url.push_str(q);
    }
    url
}

/// The values of the origin's `Settlement-Overrides` header ([`SETTLEMENT_OVERRIDES`]), taken
/// out of its answer by [`forward`] and kept in the answer's extensions: one value per header
/// line, in the order sent.
#[derive(Debug, Clone)]
pub(super) struct OverridesReport(pub(super) Vec<HeaderValue>);

/// Why a request could not be forwarded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum ForwardError {
    /// The origin did not answer (unreachable, or over its time limit).
    Upstream(UpstreamError),
    /// The method cannot be sent with `fetch` (`CONNECT`, `TRACE`, `TRACK`): 405.
    Method(String),
    /// The canonical URL did not parse: 400.
    Url,
}

/// `scheme://authority` of the URL the client used.
pub(super) fn public_base(uri: &http::Uri) -> String {
    match (uri.scheme_str(), uri.authority()) {
        (Some(scheme), Some(authority)) => format!("{scheme}://{authority}"),
        _ => String::new(),
    }
}

/// Forwards the request to the origin on its canonical path with its exact method. Removed:
/// the paywall's own headers, path-override headers, hop-by-hop headers (and those `Connection`
/// names), client copies of the forwarding and client-IP headers and of the `ORIGIN_HEADERS`
/// names. Set: `X-Forwarded-For` and `X-Real-IP` (from `CF-Connecting-IP`), `X-Forwarded-Host`,
/// `X-Forwarded-Proto`, and the `ORIGIN_HEADERS`; for a paid request (one carrying a
/// [`PaymentContext`] in its extensions, [`super::context::attach`]), `X402-Payment-Context`,
/// signed now. The response's `Location`, `Content-Location` and `Link` URLs that point at the
/// origin are rewritten to the public URL; its `Settlement-Overrides` never reaches the client
/// (moved into an [`OverridesReport`]).
pub(super) async fn forward<P: Platform>(config: &Config, p: &P, mut req: Request<P::Body>, canonical: &str) -> Result<Response<P::Body>, ForwardError> {
    let context = req.extensions_mut().remove::<PaymentContext>();
    let (mut req, rewrite) = prepare_forward(config, req, canonical)?;
    if let Some(context) = context {
        if let Some(value) = signed_header(config, p, &context).await.map_err(ForwardError::Upstream)? {
            req.headers_mut().insert(PAYMENT_CONTEXT_HEADER, value);
        }
    }
    let mut res = p.origin(req, config.origin_timeout_seconds).await.map_err(ForwardError::Upstream)?;
    // The origin's `upto` report is for the paywall only: out of the answer, whatever its status
    // and the route's scheme, kept for the meter (`super::settle::measure`).
    let report: Vec<HeaderValue> = res.headers().get_all(SETTLEMENT_OVERRIDES).iter().cloned().collect();
    if !report.is_empty() {
        res.headers_mut().remove(SETTLEMENT_OVERRIDES);
        res.extensions_mut().insert(OverridesReport(report));
    }
    if let Some(r) = &rewrite {
        r.apply(res.headers_mut());
    }
    Ok(res)
}

/// The request [`forward`] sends (headers and URL as it documents), and the rewrite of the URL
/// headers of the origin's response (`None` for a service-binding origin).
pub(super) fn prepare_forward<B>(config: &Config, req: Request<B>, canonical: &str) -> Result<(Request<B>, Option<UrlRewrite>), ForwardError> {
    let (mut parts, body) = req.into_parts();
    if UNFORWARDABLE_METHODS.iter().any(|m| parts.method.as_str().eq_ignore_ascii_case(m)) {
        return Err(ForwardError::Method(parts.method.to_string()));
    }
    let public = public_base(&parts.uri);
    let url = origin_url(config, &public, canonical, parts.uri.query());
    let h = &mut parts.headers;
    // The client's address as Cloudflare set it, read before `Connection` can name it away.
    let client_ip = h.get("cf-connecting-ip").cloned();
    let named_by_connection: Vec<String> = h
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|n| n.trim().to_ascii_lowercase()))
        .filter(|n| !n.is_empty())
        .collect();
    for name in named_by_connection {
        h.remove(name.as_str());
    }
    for name in PAYWALL_REQUEST_HEADERS.iter().chain(&PATH_OVERRIDE_HEADERS).chain(&HOP_BY_HOP_HEADERS).chain(&CLIENT_FORWARDING_HEADERS) {
        h.remove(*name);
    }
    // The same names spelt with `_` for `-` ([`is_spelling_of`]: `X_Original_URL`), and those of
    // the headers the paywall writes below.
    let underscored: Vec<http::HeaderName> = h
        .keys()
        .filter(|k| k.as_str().contains('_'))
        .filter(|k| {
            let k = k.as_str();
            PAYWALL_REQUEST_HEADERS.iter().chain(&PATH_OVERRIDE_HEADERS).chain(&CLIENT_FORWARDING_HEADERS).chain(&["cf-connecting-ip"]).any(|n| is_spelling_of(k, n))
                || config.origin_headers.iter().any(|(name, _)| is_spelling_of(k, name.as_str()))
        })
        .cloned()
        .collect();
    for name in underscored {
        h.remove(name);
    }
    h.remove(http::header::HOST);
    let cookies: Vec<String> = h.get_all(http::header::COOKIE).iter().filter_map(|v| v.to_str().ok()).filter_map(pass::strip_cookie).collect();
    h.remove(http::header::COOKIE);
    for c in cookies {
        if let Ok(v) = HeaderValue::from_str(&c) {
            h.append(http::header::COOKIE, v);
        }
    }
    if let Some(ip) = client_ip {
        h.insert("cf-connecting-ip", ip.clone());
        h.insert("x-forwarded-for", ip.clone());
        // On a same-zone subrequest Cloudflare derives the origin's CF-Connecting-IP from it.
        h.insert("x-real-ip", ip);
    }
    if let (Some(scheme), Some(authority)) = (parts.uri.scheme_str(), parts.uri.authority()) {
        set_header(h, "x-forwarded-proto", scheme);
        set_header(h, "x-forwarded-host", authority.as_str());
    }
    for (name, value) in &config.origin_headers {
        h.insert(name.clone(), value.clone());
    }
    parts.uri = url.parse().map_err(|_| ForwardError::Url)?;
    let rewrite = match &config.origin {
        OriginTarget::Url { base, prefix } => Some(UrlRewrite { base: base.clone(), prefix: prefix.clone(), public }),
        OriginTarget::Service => None,
    };
    Ok((Request::from_parts(parts, body), rewrite))
}

/// The answer to a request the origin failed (unreachable, or over its time limit) when no
/// payment was taken: 504 for a timeout, else 502, `origin_unavailable`, the cause without the
/// origin's address.
pub fn origin_unavailable<B>(e: &UpstreamError, body: impl FnOnce(Vec<u8>) -> B) -> Response<B> {
    Refusal::Origin { error: &ForwardError::Upstream(e.clone()), settled: None }.json(body)
}

/// The answer when forwarding failed. `settled`: the payment was already settled (a settle-first
/// route, or a redelivery) and the payment's x402 version, so the answer carries it in that
/// version's header (`PAYMENT-RESPONSE`, or `X-PAYMENT-RESPONSE` for v1) and says how to get the
/// content.
pub(super) fn origin_failure<P: Platform>(p: &P, e: &ForwardError, settled: Option<(&SettleResponse, u64)>) -> Response<P::Body> {
    if let ForwardError::Upstream(e) = e {
        p.log(&format!("x402: origin {e}"));
    }
    Refusal::Origin { error: e, settled }.json(P::body)
}
