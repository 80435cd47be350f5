//! The request pipeline, generic over a [`Platform`] (HTTP client, KV, the payment ledger, clock,
//! randomness), so the whole flow runs natively in tests and on the edge through the thin `edge`
//! glue.
//!
//! Order (x402 v2 reference middleware, made fail-closed and exactly-once):
//! 1. canonicalise the path (400 if ambiguous). On a path a priced route covers: `_method` in
//!    the query → 400; `OPTIONS` → answered here (CORS preflight or 204 + `Allow`), never
//!    forwarded; a method no route lists, or one `fetch` cannot send (`CONNECT`, `TRACE`,
//!    `TRACK`) → 405 + `Allow`, never challenged, charged or forwarded. Elsewhere: proxy.
//! 2. a live session token for this route → proxy without payment;
//! 3. no payment header → 402 challenge;
//! 4. verify locally ([`crate::x402::exact`]), including a `validBefore` that leaves time for the
//!    origin and settlement (else only a record the ledger already holds can serve it); failure
//!    → 402 with the reason, nothing called; a signature not checkable here (not 65 bytes) is
//!    `/verify`-ed before anything is keyed by its claimed payer;
//! 5. reserve the authorization in the ledger ([`crate::ledger`], one call; the second, `finish`,
//!    records the outcome): in flight elsewhere → 409;
//!    settled and delivered → 402; settled, not delivered → served again without settling;
//!    ledger unreachable → 503, nothing forwarded;
//! 6. facilitator `/verify` when the route's [`crate::config::VerifyPolicy`] asks (always for smart-wallet
//!    signatures); invalid → 402;
//! 7. forward (or, for `settle = "before"`, settle first); origin unreachable → 502/504,
//!    status >= 400 → passed through, not settled; client gone → released, not settled;
//! 8. `/settle`, run to completion even if the client leaves, its answer checked before it is
//!    believed and recorded in the ledger: success → origin response + `PAYMENT-RESPONSE`;
//!    refusal → 402, content withheld; no usable answer → 502/504 naming the payment, never a
//!    fresh challenge. `/settle` leaves only after the ledger acknowledged the send mark
//!    ([`crate::ledger::Mark`]); a retry of a marked authorization whose outcome is unknown is
//!    reconciled before the origin runs again: from the chain with `RPC_URL`
//!    ([`crate::evidence`]), else by settling again and taking "nonce already used" as paid,
//!    because this ledger sent it. A late retry (too close to `validBefore` for a new payment)
//!    is answered from its ledger record, never with a fresh challenge.
//!
//! ## Where things are
//!
//! | file | owns |
//! |---|---|
//! | `mod.rs` | [`handle`]: the dispatch (method override, canonical path, discovery, admin, priced or not), and small shared helpers (`json_response`, headers) |
//! | `platform.rs` | the [`Platform`] trait and [`IsolateState`] |
//! | `cors.rs` | CORS and `Vary` for priced routes, `OPTIONS` |
//! | `refusal.rs` | `Refusal`: every refusal's status, body, headers and decision, rendered by one function |
//! | `pay.rs` | the payment flow up to settlement: decode, verify, reserve, `/verify`, reconcile |
//! | `settle.rs` | the send mark, `/settle`, what its answer means, the origin call around it |
//! | `chain.rs` | chain evidence (`RPC_URL`): the questions asked for an unknown outcome, in order |
//! | `challenge.rs` | the 402 challenge and its per-route layouts ([`prepare`]) |
//! | `derived.rs` | what the isolate builds from its configuration and keeps ([`Derived`]): challenge layouts, the `/.well-known/x402` document |
//! | `forward.rs` | the request sent to the origin and the answers when it fails |
//! | `context.rs` | the signed payment context a paid request carries to the origin |
//! | `rewrite.rs` | the origin's URL headers rewritten to the public URL |
//! | `passes.rs` | pass checks, serving on a pass, selling a pass, wallet sign-in |
//! | `limits.rs` | rate limits, the failed-attempt block list, client keys |
//! | `shadow.rs` | `MODE = "shadow"` |
//! | `admin.rs` | the admin endpoint |
//! | `mcp.rs`, `mcp_origin.rs` | an MCP server's endpoint: `tools/call` priced through `pay.rs` over a platform that judges the tool's answer (docs/mcp.md) |
//! | `facilitator_client.rs` | `/verify` and `/settle` calls: failover, `Authorization`, timing |
//!
//! The facilitator client (`facilitator_client.rs`: failover, authorization, timing) is here, not in
//! [`crate::facilitator`], which stays free of I/O and configuration (see docs/architecture.md).
//! The header lists the paywall owns are [`crate::headers`] (read by the configuration too).
//!
//! ## What the gateway must not touch
//!
//! It never parses a wire format itself (headers and bodies are decoded by `crate::x402`,
//! `crate::pass`, `crate::x402::siwx`; facilitator replies are classified by `crate::facilitator`), never
//! keeps state of its own beyond [`IsolateState`] (payments live in the ledger, behind
//! [`Ledger::ledger`]), and reaches the network only through [`Platform`].

mod platform;
mod cors;
mod pay;
mod refusal;
mod channel;
mod channel_claim;
mod channel_refund;
mod facilitator_client;
mod settle;
mod chain;
mod challenge;
mod derived;
mod forward;
mod context;
mod rewrite;
mod passes;
mod limits;
mod admin;
mod shadow;
mod mcp;
mod mcp_origin;

pub use platform::{FacilitatorTransport, IsolateCaches, IsolateState, Kv, Ledger, Origin, Platform, PlatformError, RateLimits, RelayWriter, Runtime, Signer, WholeAnswer};
pub use pay::MAX_UNVERIFIED_IN_FLIGHT;
pub use challenge::prepare;
pub use channel_claim::{claim as claim_channel, claim_after_seconds as channel_claim_after_seconds, claim_due as channel_claim_due};
pub use derived::{ChallengeLayouts, ConfigState, Derived};
pub use forward::origin_unavailable;
pub use rewrite::{UrlRewrite, rewrite_url};
pub use limits::{BlockList, FAILED_BLOCK_SECONDS, RATE_LIMIT_RETRY_SECONDS, client_limit_key};
pub use crate::headers::{HOP_BY_HOP_HEADERS, METHOD_OVERRIDE_HEADERS, METHOD_OVERRIDE_PARAM, PATH_OVERRIDE_HEADERS};

use std::future::Future;
use std::rc::Rc;

use http::header::{HeaderName, HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use serde_json::Value;

use crate::config::{Config, Mode, Route};
use crate::discovery;
use crate::route::{canonicalize, has_params_only_segment, match_segments, raw_match_segments, PathError};
use crate::telemetry::Trace;

use self::admin::admin_endpoint;
use self::cors::{allowed_origin, decorate, options};
use self::forward::{UNFORWARDABLE_METHODS, origin_failure, prepare_forward};
use self::limits::failed_attempt_limit;
use self::pay::{priced, Paying};
use self::refusal::Refusal;
use self::shadow::shadow;

/// Answers a configuration failure: 500 with the reason (the caller logs it once).
pub fn config_error_response<B>(reason: &str, body: impl FnOnce(Vec<u8>) -> B) -> Response<B> {
    Refusal::Misconfigured(reason).json(body)
}

fn json_response<B>(status: StatusCode, value: &Value, body: impl FnOnce(Vec<u8>) -> B) -> Response<B> {
    let mut res = Response::new(body(value.to_string().into_bytes()));
    *res.status_mut() = status;
    res.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// Cache directives an origin may send that CDNs and proxies obey over `Cache-Control` (RFC 9213
/// `CDN-Cache-Control` and the vendors' own, `Surrogate-Control`, Akamai's `Edge-Control`,
/// nginx's `X-Accel-Expires`).
const CDN_CACHE_HEADERS: [&str; 7] = [
    "cdn-cache-control",
    "cloudflare-cdn-cache-control",
    "vercel-cdn-cache-control",
    "netlify-cdn-cache-control",
    "surrogate-control",
    "edge-control",
    "x-accel-expires",
];

/// A paid answer is for its payer only: `Cache-Control: no-store`, and none of the origin's CDN
/// cache directives that a cache in front of the Worker would obey instead.
pub(super) fn not_stored(headers: &mut HeaderMap) {
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    for name in CDN_CACHE_HEADERS {
        headers.remove(name);
    }
}

fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn set_header(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(HeaderName::from_static(name), v);
    }
}

/// Whether a query string carries `_method` (any case, percent-encoded or not) as a key, also as
/// PHP reads a key: up to a NUL (`_method%00x`), with `.` for the `_` (`.method`).
fn has_method_override_param(query: Option<&str>) -> bool {
    query.is_some_and(|q| {
        form_urlencoded::parse(q.as_bytes()).any(|(k, _)| {
            let k = k.split('\0').next().unwrap_or("").trim();
            k.len() == METHOD_OVERRIDE_PARAM.len() && k.bytes().zip(METHOD_OVERRIDE_PARAM.bytes()).all(|(a, b)| a.eq_ignore_ascii_case(&b) || (b == b'_' && matches!(a, b'.' | b' ' | b'[')))
        })
    })
}

/// The method-override header a request carries, also spelled with `_` for `-`
/// ([`crate::headers::is_spelling_of`]), in one pass over its header names.
fn method_override_header(headers: &http::HeaderMap) -> Option<&'static str> {
    headers.keys().find_map(|k| METHOD_OVERRIDE_HEADERS.iter().copied().find(|h| crate::headers::is_spelling_of(k.as_str(), h)))
}

/// The first value of query parameter `name`.
fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    form_urlencoded::parse(query?.as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

/// Handles one request.
pub async fn handle<P: Platform>(config: &Rc<Config>, p: &Rc<P>, req: Request<P::Body>) -> Response<P::Body> {
    if let Some(h) = method_override_header(req.headers()) {
        return Refusal::MethodOverride(format!("the `{h}` header is not accepted: send the real method")).json(P::body);
    }
    let canonical = match canonicalize(req.uri().path()) {
        Ok(c) => c,
        Err(e) => return Refusal::InvalidPath(e.to_string()).json(P::body),
    };
    // The discovery document is the paywall's own answer, whatever the origin serves there.
    if canonical == discovery::WELL_KNOWN_PATH {
        return p.isolate().derived.of(config).well_known(config).respond(req.method(), req.headers(), P::body);
    }
    // So is the payment context's key set; without PAYMENT_CONTEXT_KEY there is none (404).
    if canonical == crate::payment_context::JWKS_PATH {
        return match p.isolate().derived.of(config).jwks(config) {
            Some(jwks) => jwks.respond(req.method(), req.headers(), P::body),
            None => {
                let message = "this paywall signs no payment context (PAYMENT_CONTEXT_KEY is not set)";
                json_response(StatusCode::NOT_FOUND, &serde_json::json!({ "error": "not_found", "message": message }), P::body)
            }
        };
    }
    let segments = match_segments(&canonical);
    // The admin endpoint in any spelling a route would match (case, `;`, escapes, trailing `/`):
    // a near miss would otherwise reach the origin with the admin token.
    if let Some(admin) = &config.admin {
        if segments.starts_with(&admin.segments) {
            let action: String = segments[admin.segments.len()..].iter().map(|s| format!("/{s}")).collect();
            return cold(admin_endpoint(config, &**p, admin, req, &action)).await;
        }
    }
    let priced_path = config.is_priced_path(&segments);
    // A segment of only `;` parameters is one to some origins (Express: `/users/;x/profile` is
    // `/users/:id/profile`) and none to others (Tomcat): refused where either reading is priced
    // or is an MCP server.
    if has_params_only_segment(&canonical) {
        let raw = raw_match_segments(&canonical);
        let mcp_either = config.mcp.iter().any(|s| {
            let path = match_segments(&s.path);
            path == segments || path == raw
        });
        if priced_path || mcp_either || config.is_priced_path(&raw) {
            return Refusal::InvalidPath(PathError::EmptySegmentParams.to_string()).json(P::body);
        }
    }
    // An MCP server's path in any spelling a route would match (case, trailing `/`, `;`, escapes).
    if let Some(server) = config.mcp.iter().find(|s| match_segments(&s.path) == segments) {
        // A server with something priced is a priced route: the paywall's CORS policy, as below.
        if !server.is_priced() {
            return cold(mcp::serve(config, p, server, req, &canonical)).await;
        }
        let allow_origin = allowed_origin(config, req.headers());
        return decorate(cold(mcp::serve(config, p, server, req, &canonical)).await, config, allow_origin);
    }
    let method = req.method().clone();

    if priced_path {
        if has_method_override_param(req.uri().query()) {
            return Refusal::MethodOverride("the `_method` query parameter is not accepted on a priced path: send the real method".into()).json(P::body);
        }
        let explicitly_free = config.route_for(&method, &segments).is_some_and(Route::is_free);
        if method == Method::OPTIONS && !explicitly_free {
            return options::<P>(config, req.headers(), &config.allowed_methods(&segments));
        }
    }
    // A method fetch cannot send is refused before any payment work: never challenged,
    // reserved or settled for a request the origin cannot receive.
    let forwardable = !UNFORWARDABLE_METHODS.iter().any(|m| method.as_str().eq_ignore_ascii_case(m));
    match config.route_for(&method, &segments).filter(|_| forwardable) {
        Some(route) if !route.is_free() => {
            let allow_origin = allowed_origin(config, req.headers());
            let wants_html = crate::paywall::wants_html(&method, req.headers());
            let trace = Rc::new(Trace::new(&route.key));
            let res = match config.mode {
                Mode::Enforce => {
                    // What the client is limited by: its IPv4 address, or its IPv6 /64.
                    let client_ip = client_limit_key(header_str(req.headers(), "cf-connecting-ip"));
                    let res = priced(Paying { config, p, route, canonical: &canonical, client_ip: &client_ip, trace: &trace }, req).await;
                    failed_attempt_limit(&**p, route, &trace, &client_ip, res).await
                }
                Mode::Shadow => cold(shadow(config, &**p, route, req, &canonical, &trace)).await,
            };
            // A browser navigation gets the HTML paywall instead of the JSON challenge.
            let res = if wants_html { crate::paywall::page_for_challenge(res, route, p.now(), P::body) } else { res };
            let decision = trace.decision();
            if config.decision_log.includes(decision.outcome) {
                p.log(&decision.log_line());
            }
            p.record(&decision);
            decorate(res, config, allow_origin)
        }
        None if priced_path => {
            let allow_origin = allowed_origin(config, req.headers());
            let allow = config.allowed_methods(&segments);
            let message = format!("{method} is not served on this priced path; allowed: {allow}");
            decorate(Refusal::MethodNotAllowed { message, allow }.json(P::body), config, allow_origin)
        }
        _ => match prepare_forward(config, req, &canonical) {
            Ok((req, rewrite)) => p.pass_through(req, config.origin_timeout_seconds, rewrite).await,
            Err(e) => origin_failure::<P>(&**p, &e, None),
        },
    }
}

/// Awaits `fut` through a box: its state machine becomes a function of its own instead of being
/// inlined into the caller's. V8 compiles wasm functions on their first call, so a fresh isolate's
/// first request then compiles only the paths it takes (a 402 challenge never compiles the
/// settlement path). One allocation per call, on paths that make network calls anyway.
fn cold<'a, T>(fut: impl Future<Output = T> + 'a) -> std::pin::Pin<Box<dyn Future<Output = T> + 'a>> {
    Box::pin(fut)
}

/// Whether running `method` twice has the effect of running it once (RFC 9110 §9.2.2: `GET`,
/// `HEAD`, `OPTIONS`, `TRACE`, `PUT`, `DELETE`); extension methods are taken as not idempotent.
pub fn is_idempotent(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE)
}

/// Whether `method` may carry a body worth streaming (used by the edge glue).
pub fn method_has_body(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD)
}
