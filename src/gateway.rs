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
//! 4. verify locally ([`crate::exact`]), including a `validBefore` that leaves time for the
//!    origin and settlement (else only a record the ledger already holds can serve it); failure
//!    → 402 with the reason, nothing called; a signature not checkable here (not 65 bytes) is
//!    `/verify`-ed before anything is keyed by its claimed payer;
//! 5. reserve the authorization in the ledger ([`crate::ledger`], one call; the second, `finish`,
//!    records the outcome): in flight elsewhere → 409;
//!    settled and delivered → 402; settled, not delivered → served again without settling;
//!    ledger unreachable → 503, nothing forwarded;
//! 6. facilitator `/verify` when the route's [`VerifyPolicy`] asks (always for smart-wallet
//!    signatures); invalid → 402;
//! 7. forward (or, for `settle = "before"`, settle first); origin unreachable → 502/504,
//!    status >= 400 → passed through, not settled; client gone → released, not settled;
//! 8. `/settle`, run to completion even if the client leaves, its answer checked before it is
//!    believed and recorded in the ledger: success → origin response + `PAYMENT-RESPONSE`;
//!    refusal → 402, content withheld; no usable answer → 502/504 naming the payment, never a
//!    fresh challenge. `/settle` leaves only after the ledger acknowledged the send mark
//!    ([`crate::ledger::Op::Mark`]); a retry of a marked authorization whose outcome is unknown is
//!    reconciled before the origin runs again: from the chain with `RPC_URL`
//!    ([`crate::evidence`]), else by settling again and taking "nonce already used" as paid,
//!    because this ledger sent it. A late retry (too close to `validBefore` for a new payment)
//!    is answered from its ledger record, never with a fresh challenge.

use std::future::Future;
use std::rc::Rc;

use http::header::{HeaderName, HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use serde::Serialize;
use serde_json::{json, Value};

use crate::discovery;
use crate::cdp::{self, CdpKey};
use crate::config::{AdminEndpoint, Config, Facilitator, FacilitatorAuth, Mode, CorsPolicy, OriginTarget, PassScope, Route, SettleOrder, VerifyPolicy};
use crate::evidence::{self, Evidence, Question};
use crate::evm::{hex_0x, hex_lower, keccak256, Address};
use crate::exact::verify_exact;
use crate::telemetry::{Decision, DecisionOutcome, Trace};
use crate::facilitator::{
    check_settled, classify_settle, classify_verify, is_nonce_used, is_transaction_hash, request_body, FacilitatorHealth, HttpReply, SettleOutcome, UpstreamError, VerifyOutcome,
};
use crate::ledger::{shard_name, AuthorizationKey, Op, Outcome, Reply, LEASE_MARGIN_SECONDS};
use crate::route::{canonicalize, match_segments};
use crate::pass::{self, PassCache, PassRecord, PASS_EXPIRES_HEADER, PASS_HEADER};
use crate::siwx::{self, SIGN_IN_WITH_X};
use crate::x402::{
    decode_payment_signature, decode_x_payment, encode_header, encode_header_bytes, ChallengeLayout, JsonTemplate, TEMPLATE_HOLES, PaymentPayload, PaymentRequired, PaymentRequiredV1, ResourceInfo, SettleResponse,
    PAYMENT_REQUIRED, PAYMENT_RESPONSE, PAYMENT_SIGNATURE, X402_VERSION, X_PAYMENT, X_PAYMENT_RESPONSE,
};

/// Request headers that belong to the paywall and are never forwarded to the origin.
const PAYWALL_REQUEST_HEADERS: [&str; 4] = [PAYMENT_SIGNATURE, X_PAYMENT, PASS_HEADER, SIGN_IN_WITH_X];

/// Request headers with which some servers and frameworks (IIS URL Rewrite, Symfony, Spring,
/// Envoy, …) let the *header* choose the path served. The paywall prices the request line's
/// path, so these are removed before forwarding, on every path.
pub const PATH_OVERRIDE_HEADERS: [&str; 9] = [
    "x-original-url",
    "x-rewrite-url",
    "x-original-uri",
    "x-forwarded-uri",
    "x-forwarded-path",
    "x-forwarded-prefix",
    "x-envoy-original-path",
    "x-override-url",
    "x-http-destinationurl",
];

/// Most other authorizations of one payer that may be in flight for the `auto` verify policy to
/// skip `/verify`. It bounds the origin work a payer in good standing can get for authorizations
/// that then fail to settle: at most this many concurrent ones before the first refusal turns the
/// payer's standing bad (after which every request is verified first).
pub const MAX_UNVERIFIED_IN_FLIGHT: u32 = 16;

/// Hop-by-hop request headers (RFC 9110 §7.6.1), removed before forwarding together with those
/// the request's `Connection` header names.
pub const HOP_BY_HOP_HEADERS: [&str; 7] = ["connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"];

/// Client-supplied forwarding and client-IP headers, which origins and their frameworks read as
/// the client's address, host or scheme: removed, then `X-Forwarded-For` and `X-Real-IP` (from
/// `CF-Connecting-IP`, which Cloudflare's edge writes) and `X-Forwarded-Host` / `-Proto` are set
/// by the paywall from what the runtime knows. A client cannot choose the IP the origin sees.
const CLIENT_FORWARDING_HEADERS: [&str; 24] = [
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-forwarded-port",
    "x-forwarded-server",
    "x-forwarded-scheme",
    "x-forwarded-ssl",
    "x-forwarded",
    "forwarded-for",
    "forwarded",
    "x-real-ip",
    "true-client-ip",
    "x-client-ip",
    "client-ip",
    "x-cluster-client-ip",
    "x-originating-ip",
    "x-remote-ip",
    "x-remote-addr",
    "fastly-client-ip",
    "x-azure-clientip",
    "x-appengine-user-ip",
    "x-envoy-external-address",
    "cf-connecting-ipv6",
    "x-url-scheme",
];

/// Response headers whose URLs are rewritten when they point at the origin.
const URL_RESPONSE_HEADERS: [&str; 3] = ["location", "content-location", "link"];

/// Methods the Fetch API refuses to send (`CONNECT`, `TRACE`, `TRACK`): answered 405 here
/// instead of failing at the origin call; on a priced path before any payment work.
const UNFORWARDABLE_METHODS: [&str; 3] = ["CONNECT", "TRACE", "TRACK"];

/// What the pipeline needs from its host. Implemented over `worker::*` on the edge and by
/// in-memory fakes in tests. Every call that leaves the isolate takes a time limit.
#[allow(async_fn_in_trait)]
pub trait Platform: 'static {
    /// An HTTP body; the origin's bodies pass through opaque (streamed on the edge).
    type Body: 'static;
    /// A body holding `bytes`.
    fn body(bytes: Vec<u8>) -> Self::Body;
    /// Sends `req` (absolute URI) to the origin with its method byte for byte, without
    /// following redirects.
    async fn origin(&self, req: Request<Self::Body>, timeout_seconds: u64) -> Result<Response<Self::Body>, UpstreamError>;

    /// Sends an unpriced request (already prepared: canonical URL, forwarding headers) to the
    /// origin within `timeout_seconds`, and answers with the origin's response, its URL headers
    /// rewritten by `rewrite`, or, if the origin fails, with [`origin_unavailable`] (the cause is
    /// logged). Nothing is paid on this path, so a platform may hand back an answer that is still
    /// on its way (the edge gives the runtime a promise). This default: [`Platform::origin`],
    /// then the rewrite or the failure answer.
    async fn pass_through(&self, req: Request<Self::Body>, timeout_seconds: u64, rewrite: Option<UrlRewrite>) -> Response<Self::Body>
    where
        Self: Sized,
    {
        match self.origin(req, timeout_seconds).await {
            Ok(mut res) => {
                if let Some(r) = &rewrite {
                    r.apply(res.headers_mut());
                }
                res
            }
            Err(e) => origin_failure(self, &ForwardError::Upstream(e), None),
        }
    }
    /// Reads a request's body (only the admin endpoint reads one): Err when it is longer than
    /// `max_bytes` or cannot be read. This default refuses every body.
    async fn read_body(&self, body: Self::Body, max_bytes: usize) -> Result<Vec<u8>, String> {
        let _ = (body, max_bytes);
        Err("this platform does not read request bodies".into())
    }
    /// `POST url` with a JSON body; reads at most [`crate::facilitator::MAX_REPLY_BYTES`].
    async fn post_json(&self, url: &str, authorization: Option<&str>, json: String, timeout_seconds: u64) -> Result<HttpReply, UpstreamError>;
    async fn kv_get(&self, key: &str) -> Result<Option<String>, String>;
    async fn kv_put(&self, key: &str, value: String, ttl_seconds: u64) -> Result<(), String>;
    /// Applies `op` in the ledger shard named `shard` (one writer per shard; a Durable Object on
    /// the edge). Err: the ledger could not be reached or failed; the caller fails closed.
    async fn ledger(&self, shard: &str, op: &Op) -> Result<Reply, String>;
    /// Whether the client has gone away (its request's abort signal fired).
    fn client_gone(&self) -> bool;
    /// Runs `fut` to completion even if the client goes away (`ctx.waitUntil` on the edge) and
    /// resolves to its output; `None` if the runtime dropped it.
    fn run_to_completion<T: 'static>(&self, fut: impl Future<Output = T> + 'static) -> impl Future<Output = Option<T>>;
    /// Runs `fut` after the response, without delaying it (`ctx.waitUntil` on the edge).
    fn defer(&self, fut: impl Future<Output = ()> + 'static);
    /// Unix time, seconds.
    fn now(&self) -> u64;
    /// 32 bytes from a CSPRNG.
    fn random32(&self) -> Result<[u8; 32], String>;
    /// One log line (Workers logs on the edge).
    fn log(&self, line: &str);
    /// This isolate's cache of pass records.
    fn passes(&self) -> &PassCache;
    /// This isolate's state: failing facilitators, clients blocked for failed payments.
    fn isolate(&self) -> &IsolateState;
    /// Counts one request under `key` with the Workers Rate Limiting binding named `binding`:
    /// Ok(true) within the limit, Ok(false) over it. Err: no such binding or the call failed.
    async fn rate_limit(&self, binding: &str, key: &str) -> Result<bool, String>;
    /// Records a priced request's decision as a data point in the `METRICS` Analytics Engine
    /// dataset, when bound (its log line goes through [`Platform::log`]).
    fn record(&self, decision: &Decision);
    /// Signs `message` with a CDP API key (`crypto.subtle.sign` on the edge): the raw 64-byte
    /// signature (ECDSA P-256 over SHA-256 as r‖s, or Ed25519). Err: the key could not be
    /// imported or the signature failed.
    async fn sign(&self, key: &CdpKey, message: &[u8]) -> Result<Vec<u8>, String>;
    /// Milliseconds since the Unix epoch, for latencies (on the edge, `Date.now`, which only
    /// advances across I/O).
    fn millis(&self) -> u64;
}

/// Answers a configuration failure: 500 with the reason (the caller logs it once).
pub fn config_error_response<B>(reason: &str, body: impl FnOnce(Vec<u8>) -> B) -> Response<B> {
    json_response(StatusCode::INTERNAL_SERVER_ERROR, &json!({ "error": "paywall_misconfigured", "message": reason }), body)
}

fn json_response<B>(status: StatusCode, value: &Value, body: impl FnOnce(Vec<u8>) -> B) -> Response<B> {
    let mut res = Response::new(body(value.to_string().into_bytes()));
    *res.status_mut() = status;
    res.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn set_header(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(HeaderName::from_static(name), v);
    }
}

/// Headers some frameworks read to change the request method. A request carrying one is refused
/// (400): the paywall prices the method it sees, and must not see a different one than the origin.
pub const METHOD_OVERRIDE_HEADERS: [&str; 3] = ["x-http-method-override", "x-http-method", "x-method-override"];

/// Query parameter with which some frameworks (Rails, Laravel, Symfony, method-override
/// middlewares) change the request method; refused (400) on priced paths.
pub const METHOD_OVERRIDE_PARAM: &str = "_method";

/// Response headers a browser client must be able to read.
const EXPOSED_HEADERS: &str = "PAYMENT-REQUIRED, PAYMENT-RESPONSE, X-PAYMENT-RESPONSE, X402-Pass, X402-Pass-Expires";

/// Request headers a browser may send to a priced route (the preflight's default answer).
const ALLOWED_REQUEST_HEADERS: &str = "PAYMENT-SIGNATURE, X-PAYMENT, X402-Pass, SIGN-IN-WITH-X, Content-Type";

fn bad_request<B>(error: &str, message: &str, body: impl FnOnce(Vec<u8>) -> B) -> Response<B> {
    json_response(StatusCode::BAD_REQUEST, &json!({ "error": error, "message": message }), body)
}

/// Whether a query string carries `_method` (any case, percent-encoded or not) as a key.
fn has_method_override_param(query: Option<&str>) -> bool {
    query.is_some_and(|q| form_urlencoded::parse(q.as_bytes()).any(|(k, _)| k.trim().eq_ignore_ascii_case(METHOD_OVERRIDE_PARAM)))
}

/// The first value of query parameter `name`.
fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    form_urlencoded::parse(query?.as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

/// Handles one request.
pub async fn handle<P: Platform>(config: &Rc<Config>, p: &Rc<P>, req: Request<P::Body>) -> Response<P::Body> {
    if let Some(h) = METHOD_OVERRIDE_HEADERS.iter().find(|h| req.headers().contains_key(**h)) {
        return bad_request("method_override_refused", &format!("the `{h}` header is not accepted: send the real method"), P::body);
    }
    let canonical = match canonicalize(req.uri().path()) {
        Ok(c) => c,
        Err(e) => return bad_request("invalid_path", &e.to_string(), P::body),
    };
    // The discovery document is the paywall's own answer, whatever the origin serves there.
    if canonical == discovery::WELL_KNOWN_PATH {
        return config.well_known.respond(req.method(), req.headers(), P::body);
    }
    if let Some(admin) = &config.admin {
        let under = canonical.strip_prefix(admin.path.as_str()).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
        if under {
            return cold(admin_endpoint(config, &**p, admin, req, &canonical)).await;
        }
    }
    let segments = match_segments(&canonical);
    let method = req.method().clone();
    let priced_path = config.is_priced_path(&segments);

    if priced_path {
        if has_method_override_param(req.uri().query()) {
            return bad_request("method_override_refused", "the `_method` query parameter is not accepted on a priced path: send the real method", P::body);
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
                    let res = priced(config, p, route, req, &canonical, &client_ip, &trace).await;
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
            let mut res = json_response(StatusCode::METHOD_NOT_ALLOWED, &json!({ "error": "method_not_allowed", "message": message }), P::body);
            set_header(res.headers_mut(), "allow", &allow);
            decorate(res, config, allow_origin)
        }
        _ => match prepare_forward(config, req, &canonical) {
            Ok((req, rewrite)) => p.pass_through(req, config.origin_timeout_seconds, rewrite).await,
            Err(e) => origin_failure::<P>(&**p, &e, None),
        },
    }
}

/// The `Access-Control-Allow-Origin` value for this request, if its `Origin` is allowed.
fn allowed_origin(config: &Config, headers: &HeaderMap) -> Option<HeaderValue> {
    match &config.cors {
        CorsPolicy::Off => None,
        CorsPolicy::Any => Some(HeaderValue::from_static("*")),
        CorsPolicy::List(list) => {
            let origin = header_str(headers, "origin")?;
            list.iter().any(|o| o == origin).then(|| HeaderValue::from_str(origin).ok()).flatten()
        }
    }
}

fn append_vary(headers: &mut HeaderMap, value: &'static str) {
    headers.append(http::header::VARY, HeaderValue::from_static(value));
}

/// Adds CORS and `Vary` to every answer of a priced route.
fn decorate<B>(mut res: Response<B>, config: &Config, allow_origin: Option<HeaderValue>) -> Response<B> {
    let h = res.headers_mut();
    if let Some(o) = allow_origin {
        h.insert(http::header::ACCESS_CONTROL_ALLOW_ORIGIN, o);
        h.insert(http::header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static(EXPOSED_HEADERS));
    }
    if matches!(config.cors, CorsPolicy::List(_)) {
        append_vary(h, "Origin");
    }
    append_vary(h, "PAYMENT-SIGNATURE, X-PAYMENT, X402-Pass, SIGN-IN-WITH-X, Cookie");
    res
}

/// Answers `OPTIONS` on a priced path (204): a CORS preflight when CORS is on and the request is
/// one, else just `Allow`. `allow` is the methods the path's routes list.
fn options<P: Platform>(config: &Config, headers: &HeaderMap, allow: &str) -> Response<P::Body> {
    let mut res = Response::new(P::body(Vec::new()));
    *res.status_mut() = StatusCode::NO_CONTENT;
    let h = res.headers_mut();
    set_header(h, "allow", allow);
    let preflight = config.cors != CorsPolicy::Off && headers.contains_key("access-control-request-method");
    if !preflight {
        return res;
    }
    if let Some(o) = allowed_origin(config, headers) {
        h.insert(http::header::ACCESS_CONTROL_ALLOW_ORIGIN, o);
        set_header(h, "access-control-allow-methods", allow);
        let requested = headers.get("access-control-request-headers").cloned();
        h.insert(
            http::header::ACCESS_CONTROL_ALLOW_HEADERS,
            requested.unwrap_or(HeaderValue::from_static(ALLOWED_REQUEST_HEADERS)),
        );
        h.insert(http::header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
    }
    append_vary(h, "Origin, Access-Control-Request-Method, Access-Control-Request-Headers");
    res
}

/// The identity of a payment, as answers that name it show it.
#[derive(Debug, Clone, Serialize)]
struct PaymentIdentity {
    payer: String,
    nonce: String,
    network: String,
    asset: String,
    amount: String,
}

/// A request's hold on one authorization in the ledger.
#[derive(Debug, Clone)]
struct Ticket {
    shard: String,
    key: String,
    holder: String,
}

impl Ticket {
    fn finish(&self, outcome: Outcome) -> Op {
        Op::Finish { key: self.key.clone(), holder: self.holder.clone(), outcome }
    }
}

/// Ends a request's hold (the lease runs out if this fails). `true` when the ledger recorded it:
/// `false` also when the lease had run out and another request may hold the authorization now.
async fn finish<P: Platform>(p: &P, ticket: &Ticket, outcome: Outcome) -> bool {
    match p.ledger(&ticket.shard, &ticket.finish(outcome)).await {
        Ok(Reply::Done) => true,
        Ok(other) => {
            p.log(&format!("x402: ledger finish for {} answered {other:?}", ticket.key));
            false
        }
        Err(e) => {
            p.log(&format!("x402: ledger finish for {} failed: {e}; its lease will run out", ticket.key));
            false
        }
    }
}

/// 409 `payment_in_flight`: another request holds (or may hold) this authorization.
fn payment_in_flight<P: Platform>(identity: &PaymentIdentity, message: &str) -> Response<P::Body> {
    json_response(StatusCode::CONFLICT, &json!({ "error": "payment_in_flight", "message": message, "payment": identity }), P::body)
}

/// 409 for a request that outlasted its lease before it could send the payment: another request
/// may hold the authorization now, so this one cannot say whether it will be charged.
fn lease_lost<P: Platform>(identity: &PaymentIdentity) -> Response<P::Body> {
    payment_in_flight::<P>(identity, "this request took longer than its hold on the authorization, which another request may have taken; wait for that answer, or retry this same payment header, which never charges twice")
}

/// Ends a payment's hold before settlement (nothing charged) and records why in its decision.
async fn release<P: Platform>(p: &P, pending: &Pending, outcome: DecisionOutcome, reason: Option<&str>) {
    finish(p, &pending.ticket, Outcome::Release).await;
    pending.trace.outcome(outcome, reason);
}

/// The payment flow of a priced route.
async fn priced<P: Platform>(
    config: &Rc<Config>,
    p: &Rc<P>,
    route: &Route,
    req: Request<P::Body>,
    canonical: &str,
    client_ip: &str,
    trace: &Rc<Trace>,
) -> Response<P::Body> {
    let has_payment = req.headers().contains_key(PAYMENT_SIGNATURE) || req.headers().contains_key(X_PAYMENT);
    if has_payment && route.rate_limits.failed.is_some() && p.isolate().blocked.is_blocked(&failed_key(route, client_ip), p.now()) {
        trace.outcome(DecisionOutcome::RateLimited, Some("failed_payments"));
        return too_many_requests::<P>("too many failed payment attempts from this address", FAILED_BLOCK_SECONDS);
    }
    // A live pass for this scope: no payment.
    let mut pass_refusal: Option<String> = None;
    if let Some(presented) = pass::token_from_request(req.headers()).map(|t| pass::pass_id(&t)) {
        let checked = match presented {
            Some(id) => cold(check_presented_pass(config, &**p, route, canonical, &id, client_ip)).await,
            None => PassCheck::Refused("pass_unknown"),
        };
        match checked {
            PassCheck::Admitted(record) => {
                trace.outcome(DecisionOutcome::Pass, None);
                trace.payer(&record.payer);
                return cold(serve_on_pass(config, &**p, req, canonical, &record, trace)).await;
            }
            PassCheck::Refused(code) => pass_refusal = Some(format!("{code}: {}", pass_refusal_text(code))),
            PassCheck::Unavailable(e) if !has_payment => return ledger_unavailable::<P>(&**p, &e, trace),
            PassCheck::Unavailable(e) => p.log(&format!("x402: pass check failed ({e}); taking the payment instead")),
        }
    }
    // Wallet sign-in: the payer who lost the token signs in with the wallet that paid.
    if let (Some(public), Some(proof)) = (config.public_url.as_deref().filter(|_| route.pass.is_some()), header_str(req.headers(), SIGN_IN_WITH_X)) {
        match cold(limited_sign_in(config, &**p, route, canonical, public, proof, client_ip)).await {
            SignIn::Admitted(record) => {
                trace.outcome(DecisionOutcome::Pass, Some("sign_in"));
                trace.payer(&record.payer);
                return cold(serve_on_pass(config, &**p, req, canonical, &record, trace)).await;
            }
            SignIn::Refused(reason) => pass_refusal = Some(reason),
            SignIn::Unavailable(e) if !has_payment => return ledger_unavailable::<P>(&**p, &e, trace),
            SignIn::Unavailable(e) => p.log(&format!("x402: sign-in check failed ({e}); taking the payment instead")),
        }
    }

    let challenger = Challenger { config, route, canonical, method: req.method().clone(), resource_url: req.uri().to_string() };
    let resource_url = &challenger.resource_url;
    let (header, version) = match (header_str(req.headers(), PAYMENT_SIGNATURE), header_str(req.headers(), X_PAYMENT)) {
        (Some(h), _) => (h, X402_VERSION),
        (None, Some(h)) => (h, 1),
        (None, None) => {
            trace.outcome(DecisionOutcome::Challenge, pass_refusal.as_deref().or(Some("no_payment")));
            if let Some(binding) = &route.rate_limits.challenge {
                if !rate_limit(&**p, binding, &challenge_key(route, client_ip)).await {
                    trace.outcome(DecisionOutcome::RateLimited, Some("challenges"));
                    return too_many_requests::<P>("too many unpaid requests from this address", RATE_LIMIT_RETRY_SECONDS);
                }
            }
            let reason = match pass_refusal {
                Some(refusal) => format!("{refusal}; PAYMENT-SIGNATURE header is required"),
                None => "PAYMENT-SIGNATURE header is required".to_string(),
            };
            return challenger.respond(&**p, &reason);
        }
    };
    let decoded = if version == 1 { decode_x_payment(header) } else { decode_payment_signature(header) };
    let payment = match decoded {
        Ok(pp) => pp,
        Err(e) => {
            p.log(&format!("x402: rejected payment header: {e}"));
            trace.outcome(DecisionOutcome::Refused, Some(e.reason()));
            return challenger.respond(&**p, &format!("{}: {e}", e.reason()));
        }
    };
    let now = p.now();
    let verified = match verify_exact(&route.accepts, &payment, now, config.min_validity_seconds()) {
        Ok(v) => v,
        Err(inv) => {
            p.log(&format!("x402: rejected payment: {}: {}", inv.reason, inv.message));
            trace.outcome(DecisionOutcome::Refused, Some(inv.reason));
            return challenger.respond(&**p, &format!("{}: {}", inv.reason, inv.message));
        }
    };
    let offer = verified.offer;
    // The requirement in the payment's own protocol version, for /verify and /settle.
    let requirements = if version == 1 {
        let v1 = offer.requirements_v1(resource_url, route.description.as_deref(), route.mime_type.as_deref());
        serde_json::to_value(v1).unwrap_or(Value::Null)
    } else {
        offer.requirements_json.clone()
    };
    trace.payer(&verified.payer.to_checksum());
    trace.price(&offer.requirements.amount, &offer.requirements.asset, &offer.requirements.network);
    if config.denylist.contains(&verified.payer) {
        p.log(&format!("x402: denied payer {}", verified.payer.to_checksum()));
        trace.outcome(DecisionOutcome::Refused, Some(PAYER_DENIED));
        return challenger.respond(&**p, PAYER_DENIED);
    }
    let identity = PaymentIdentity {
        payer: verified.payer.to_checksum(),
        nonce: hex_0x(&verified.nonce),
        network: offer.requirements.network.clone(),
        asset: offer.requirements.asset.clone(),
        amount: offer.requirements.amount.clone(),
    };

    // A signature this paywall could not check (not 65 bytes: a smart wallet's) proves nothing
    // about `from` yet: the facilitator verifies it before it counts against the claimed payer's
    // limits, reserves in that payer's shard or changes its standing. A late one cannot be new:
    // only the ledger's record of it (same signature bytes) can make it servable.
    let verified_remotely = !verified.signature_checked && verified.late.is_none();
    if verified_remotely {
        if let Some(refused) = cold(verify_remotely(config, p, &payment, &requirements, &identity, &challenger, trace, None)).await {
            return refused;
        }
    }

    if let Some(binding) = &route.rate_limits.paid {
        if !rate_limit(&**p, binding, &format!("paid:{}:{}", route.key, identity.payer)).await {
            trace.outcome(DecisionOutcome::RateLimited, Some("payer"));
            return too_many_requests::<P>("too many payment attempts by this payer", RATE_LIMIT_RETRY_SECONDS);
        }
    }

    // Reserve the authorization: one request at a time, and never twice once delivered. A late
    // authorization only looks for its record: the retry of an unknown outcome or of an
    // undelivered settlement is honoured until the record is pruned, never met with a fresh
    // challenge.
    let holder = match p.random32() {
        Ok(r) => hex_lower(&r[..16]),
        Err(e) => return ledger_unavailable::<P>(&**p, &format!("no randomness for the ledger lease: {e}"), trace),
    };
    let ticket = Ticket {
        shard: shard_name(&verified.payer),
        key: AuthorizationKey { network: offer.requirements.network.clone(), asset: offer.asset, payer: verified.payer, nonce: verified.nonce }.id(),
        holder,
    };
    let reserve = Op::Reserve {
        key: ticket.key.clone(),
        holder: ticket.holder.clone(),
        route: route.key.clone(),
        resource: canonical.to_string(),
        signature: hex_lower(&keccak256(payment.exact.signature.to_ascii_lowercase().as_bytes())),
        valid_before: verified.valid_before,
        lease_seconds: config.origin_timeout_seconds + 2 * config.facilitator_timeout_seconds + LEASE_MARGIN_SECONDS,
        create: verified.late.is_none(),
    };
    let (prior_sent, prior_transaction, lapsed, good_standing) = match p.ledger(&ticket.shard, &reserve).await {
        Ok(Reply::Reserved { prior_sent, prior_transaction, lapsed, standing, others_in_flight }) => {
            (prior_sent, prior_transaction, lapsed, standing.is_good(now, config.good_standing_seconds) && others_in_flight < MAX_UNVERIFIED_IN_FLIGHT)
        }
        Ok(Reply::InFlight) => {
            trace.outcome(DecisionOutcome::Refused, Some("payment_in_flight"));
            return payment_in_flight::<P>(&identity, "another request is using this authorization right now; wait for its answer, or retry this one when it has ended");
        }
        Ok(Reply::Spent { transaction }) => {
            let reason = format!("invalid_transaction_state: this authorization was already settled (transaction {transaction}) and answered by the origin (delivered, or not idempotent and already run once); sign a new one");
            trace.outcome(DecisionOutcome::Refused, Some(&reason));
            return challenger.respond(&**p, &reason);
        }
        Ok(Reply::Denied) => {
            p.log(&format!("x402: denied payer {}", identity.payer));
            trace.outcome(DecisionOutcome::Refused, Some(PAYER_DENIED));
            return challenger.respond(&**p, PAYER_DENIED);
        }
        Ok(Reply::NotFound) => {
            let late = verified.late.unwrap_or(crate::exact::Invalid { reason: "invalid_exact_evm_payload_authorization_valid_before", message: "authorization expires too soon".into() });
            p.log(&format!("x402: rejected payment: {}: {}", late.reason, late.message));
            trace.outcome(DecisionOutcome::Refused, Some(late.reason));
            return challenger.respond(&**p, &format!("{}: {}", late.reason, late.message));
        }
        Ok(Reply::Mismatch { resource: Some(resource) }) => {
            trace.outcome(DecisionOutcome::Refused, Some("payment_for_other_resource"));
            let value = json!({
                "error": "payment_for_other_resource",
                "message": format!("this payment was sent to settlement for {resource} and its response not yet delivered; retry it on that resource to receive it"),
                "payment": identity,
            });
            return json_response(StatusCode::CONFLICT, &value, P::body);
        }
        Ok(Reply::Mismatch { resource: None }) => {
            let reason = "invalid_exact_evm_payload_signature: this paywall already holds this authorization (payer and nonce) with another signature";
            trace.outcome(DecisionOutcome::Refused, Some("invalid_exact_evm_payload_signature"));
            return challenger.respond(&**p, reason);
        }
        Ok(Reply::Redeliver { transaction, network }) => {
            let settled = known_paid(&identity.payer, transaction, network);
            p.log(&format!("x402: redelivering {} for {} nonce {}", route.key, identity.payer, identity.nonce));
            trace.outcome(DecisionOutcome::Paid, Some("redelivered"));
            trace.transaction(&settled.transaction);
            // The payment bought a pass that never reached the payer: it goes with the redelivery.
            let resell = route.pass.as_ref().and_then(|_| mint_pass(config, &**p, route)).map(|m| (route, m));
            return cold(deliver_settled(config, p, &ticket, req, canonical, payment.version, settled, resell, trace)).await;
        }
        Ok(other) => return ledger_unavailable::<P>(&**p, &format!("the ledger answered {other:?} to a reservation"), trace),
        Err(e) => return ledger_unavailable::<P>(&**p, &e, trace),
    };
    if let Some(late) = verified.late.as_ref().filter(|_| !prior_sent) {
        // A record that was never sent (its holder died before settling): nothing was charged,
        // and it is too late for a new settlement.
        release_before_settlement(&**p, &ticket, trace, DecisionOutcome::Refused, late.reason).await;
        return challenger.respond(&**p, &format!("{}: {}", late.reason, late.message));
    }

    // Assurance before the origin runs. A reservation whose earlier holder died unsent is
    // verified again: its nonce may have been burned on chain meanwhile.
    let needs_verify = !prior_sent
        && !verified_remotely
        && (!verified.signature_checked
            || lapsed
            || match route.verify {
                VerifyPolicy::Always => true,
                VerifyPolicy::Local => false,
                VerifyPolicy::Auto => !good_standing,
            });
    if needs_verify {
        if let Some(refused) = cold(verify_remotely(config, p, &payment, &requirements, &identity, &challenger, trace, Some(&ticket))).await {
            return refused;
        }
    }

    let sells = route.pass.is_some().then_some(route);
    let pass = sells.and_then(|r| mint_pass(config, &**p, r));
    let pending = Pending {
        pass: pass.clone(),
        config: Rc::clone(config),
        ticket,
        payment,
        requirements,
        networks: [Some(offer.requirements.network.clone()), offer.v1_network.map(str::to_string)].into_iter().flatten().collect(),
        question: Question { asset: offer.asset, payer: verified.payer, pay_to: offer.pay_to, amount: offer.amount, nonce: verified.nonce },
        valid_before: verified.valid_before,
        identity,
        prior_sent,
        prior_transaction,
        route_key: route.key.clone(),
        trace: Rc::clone(trace),
    };
    // An earlier send whose outcome is unknown: reconcile before the origin runs again, and
    // settle (again) before calling it, so the origin runs only once the payment is established.
    // That needs the facilitator's own slack and time limit, not the origin's.
    if prior_sent {
        let too_late = verified.valid_before < now.saturating_add(crate::exact::VALID_BEFORE_SLACK_SECONDS + config.facilitator_timeout_seconds);
        match cold(reconcile_before_origin(p, &pending, too_late)).await {
            Reconciled::Proceed => {}
            Reconciled::Paid(settled) => {
                let version = pending.payment.version;
                let hold = config.origin_timeout_seconds + LEASE_MARGIN_SECONDS;
                let outcome = Outcome::Settled {
                    transaction: settled.transaction.clone(),
                    network: settled.network.clone(),
                    delivered: false,
                    hold_seconds: hold,
                    pass: pending.pass.as_ref().map(|m| (m.id.clone(), m.expires_at)),
                };
                return match p.ledger(&pending.ticket.shard, &pending.ticket.finish(outcome)).await {
                    Ok(Reply::Done) => {
                        trace.outcome(DecisionOutcome::Paid, Some("reconciled"));
                        trace.transaction(&settled.transaction);
                        cold(deliver_settled(config, p, &pending.ticket, req, canonical, version, settled, sells.zip(pass), trace)).await
                    }
                    // Paid on chain, but not recorded: the content waits for a retry that can record it.
                    other => {
                        let why = match other {
                            Ok(reply) => format!("answered {reply:?}"),
                            Err(e) => format!("failed: {e}"),
                        };
                        p.log(&format!("x402: ledger {why} to a reconciled settlement of {}", pending.ticket.key));
                        trace.outcome(DecisionOutcome::UnknownOutcome, Some("ledger_unavailable"));
                        unknown_outcome::<P>(StatusCode::BAD_GATEWAY, "the chain shows this payment paid, but the payment ledger could not record it", &pending.identity)
                    }
                };
            }
            Reconciled::Answer(res) => return res,
        }
    }
    match if prior_sent { SettleOrder::Before } else { route.settle } {
        SettleOrder::After => cold(settle_after(config, p, route, req, canonical, pending)).await,
        SettleOrder::Before => cold(settle_before(config, p, req, canonical, pending, sells.zip(pass))).await,
    }
}

/// `/verify` through the facilitators. `None`: valid, go on; otherwise the answer. `held`: the
/// reservation this request holds, ended as the answer says (a refusal turns the payer's
/// standing bad; "could not verify" releases it, and says "nothing was charged" only if this
/// request still held it). Without one (a signature not checkable here, verified before anything
/// is keyed by its claimed payer) a refusal counts only as a failed attempt of the client.
#[allow(clippy::too_many_arguments)]
async fn verify_remotely<P: Platform>(
    config: &Rc<Config>,
    p: &Rc<P>,
    payment: &PaymentPayload,
    requirements: &Value,
    identity: &PaymentIdentity,
    challenger: &Challenger<'_>,
    trace: &Rc<Trace>,
    held: Option<&Ticket>,
) -> Option<Response<P::Body>> {
    let call = call_facilitator(config, &**p, Endpoint::Verify, payment, requirements, classify_verify, |o| matches!(o, VerifyOutcome::Unknown { .. })).await;
    trace.facilitator_ms(call.millis);
    match call.outcome {
        VerifyOutcome::Valid => None,
        VerifyOutcome::Invalid { reason } => {
            trace.outcome(DecisionOutcome::Refused, Some(&reason));
            if let Some(ticket) = held {
                finish(&**p, ticket, Outcome::Refused).await;
            }
            let unchecked = if held.is_none() { " (an unchecked signature; nothing reserved)" } else { "" };
            p.log(&format!("x402: verify refused {} nonce {}{unchecked}: {reason}", identity.payer, identity.nonce));
            Some(challenger.respond(&**p, &reason))
        }
        VerifyOutcome::Unknown { timed_out, detail } => {
            let released = match held {
                Some(ticket) => finish(&**p, ticket, Outcome::Release).await,
                None => true,
            };
            p.log(&format!("x402: verify failed: {detail}"));
            trace.outcome(DecisionOutcome::FacilitatorError, Some("facilitator_unavailable"));
            if !released {
                return Some(lease_lost::<P>(identity));
            }
            let value = json!({ "error": "facilitator_unavailable", "message": format!("could not verify the payment: {detail}; nothing was charged"), "payment": identity });
            Some(json_response(upstream_status(timed_out), &value, P::body))
        }
    }
}

/// Ends a hold that never reached `/settle` and records why.
async fn release_before_settlement<P: Platform>(p: &P, ticket: &Ticket, trace: &Trace, outcome: DecisionOutcome, reason: &str) {
    finish(p, ticket, Outcome::Release).await;
    trace.outcome(outcome, Some(reason));
}

/// The lease the send mark renews: every facilitator's `/settle` in turn, then the chain evidence
/// (a receipt, `authorizationState`, the block number, the logs and up to 8 receipts), each within
/// the facilitator time limit, plus the margin. A holder that reached its mark keeps the
/// authorization until its settlement is decided, so no second request sends it meanwhile.
fn settlement_lease_seconds(config: &Config) -> u64 {
    let calls = config.facilitators.len() as u64 + if config.rpc_url.is_some() { 12 } else { 0 };
    calls.saturating_mul(config.facilitator_timeout_seconds).saturating_add(LEASE_MARGIN_SECONDS)
}

/// Seconds past `validBefore` after which a chain that shows an authorization unused is taken as
/// final (blocks are stamped with their own time, which may trail this clock).
const EXPIRED_MARGIN_SECONDS: u64 = 30;

/// What reconciling an earlier send decided before the origin runs again.
enum Reconciled<B> {
    /// Nothing known against settling again: go on as for a new payment (settling again is
    /// safe: the token executes an authorization at most once).
    Proceed,
    /// The chain shows the earlier send paid: serve it without settling again.
    Paid(SettleResponse),
    /// Answered here (refused with evidence, or still unknown).
    Answer(Response<B>),
}

/// Reconciles an authorization this ledger sent to `/settle` before (outcome unknown). With
/// `RPC_URL`, the chain decides: paid → served; nonce used by another transaction → refused;
/// unused → settled again, unless it is too late for that. Without it, one too close to its
/// `validBefore` for the facilitator (`late`) cannot be settled again and stays unknown (no
/// origin call); otherwise it is settled again and "nonce already used" is taken as this
/// ledger's own earlier send.
async fn reconcile_before_origin<P: Platform>(p: &Rc<P>, s: &Pending, late: bool) -> Reconciled<P::Body> {
    let keep = |detail: &str, timed_out: bool| {
        s.trace.outcome(DecisionOutcome::UnknownOutcome, Some("settlement_outcome_unknown"));
        unknown_outcome::<P>(upstream_status(timed_out), detail, &s.identity)
    };
    let Some(rpc_url) = s.config.rpc_url.as_deref() else {
        if late {
            finish(&**p, &s.ticket, Outcome::Release).await;
            return Reconciled::Answer(keep("an earlier settlement of this payment was sent and its outcome is unknown; it is too close to its validBefore to settle again", false));
        }
        return Reconciled::Proceed;
    };
    match chain_evidence(&**p, rpc_url, &s.question, s.prior_transaction.as_deref(), s.config.facilitator_timeout_seconds).await {
        Evidence::Paid { transaction } => {
            p.log(&format!("x402: reconciled {} nonce {} from the chain: paid in {transaction}", s.identity.payer, s.identity.nonce));
            let network = s.networks.first().cloned().unwrap_or_default();
            Reconciled::Paid(known_paid(&s.identity.payer, transaction, network))
        }
        Evidence::UsedElsewhere { transaction } => {
            finish(&**p, &s.ticket, Outcome::Refused).await;
            s.trace.outcome(DecisionOutcome::Refused, Some("invalid_exact_evm_nonce_already_used"));
            Reconciled::Answer(unsettled_response::<P>(Some(Settled::UsedElsewhere(transaction)), &s.identity, s.payment.version))
        }
        Evidence::NotUsed if !late => Reconciled::Proceed,
        // Unused well past validBefore: the token will refuse it from now on, so nothing of it
        // can move any more. Nothing was charged, and that can now be said.
        Evidence::NotUsed if p.now() > s.valid_before.saturating_add(EXPIRED_MARGIN_SECONDS) => {
            finish(&**p, &s.ticket, Outcome::Refused).await;
            s.trace.outcome(DecisionOutcome::Refused, Some("invalid_exact_evm_payload_authorization_valid_before"));
            let value = json!({
                "error": "invalid_exact_evm_payload_authorization_valid_before",
                "message": "an earlier settlement of this payment was sent but never executed on chain, and the authorization has expired: nothing was charged; sign a new one",
                "payment": s.identity,
            });
            Reconciled::Answer(json_response(StatusCode::PAYMENT_REQUIRED, &value, P::body))
        }
        Evidence::NotUsed => {
            finish(&**p, &s.ticket, Outcome::Release).await;
            Reconciled::Answer(keep("an earlier settlement of this payment was sent and has not executed on chain; it is too close to its validBefore to settle again", false))
        }
        Evidence::Unavailable(detail) => {
            p.log(&format!("x402: chain evidence unavailable for {} nonce {}: {detail}", s.identity.payer, s.identity.nonce));
            finish(&**p, &s.ticket, Outcome::Release).await;
            Reconciled::Answer(keep("an earlier settlement of this payment was sent and its outcome could not be read from the chain", true))
        }
    }
}

/// Asks the chain ([`crate::evidence`]) whether the authorization in `q` paid.
async fn chain_evidence<P: Platform>(p: &P, rpc_url: &str, q: &Question, transaction: Option<&str>, timeout_seconds: u64) -> Evidence {
    let call = |body: String| async move {
        match p.post_json(rpc_url, None, body, timeout_seconds).await {
            Ok(reply) if (200..300).contains(&reply.status) => evidence::result(&reply.body),
            Ok(reply) => Err(format!("RPC answered HTTP {}", reply.status)),
            Err(e) => Err(format!("RPC {e}")),
        }
    };
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

/// Origin first, then settlement (the default order).
async fn settle_after<P: Platform>(
    config: &Rc<Config>,
    p: &Rc<P>,
    route: &Route,
    req: Request<P::Body>,
    canonical: &str,
    pending: Pending,
) -> Response<P::Body> {
    let rerunnable = is_idempotent(req.method());
    let origin_res = match forward(config, &**p, req, canonical).await {
        Ok(r) => r,
        Err(e) => {
            let reason = if matches!(e, ForwardError::Upstream(UpstreamError::Timeout { .. })) { "origin_timeout" } else { "origin_unreachable" };
            release(&**p, &pending, DecisionOutcome::OriginError, Some(reason)).await;
            return origin_failure::<P>(&**p, &e, None);
        }
    };
    pending.trace.origin_status(origin_res.status().as_u16());
    if origin_res.status().as_u16() >= 400 {
        release(&**p, &pending, DecisionOutcome::OriginError, Some("origin_status")).await;
        return origin_res;
    }
    if p.client_gone() {
        release(&**p, &pending, DecisionOutcome::ClientGone, None).await;
        p.log(&format!("x402: client gone before settlement; not charged: {} nonce {}", pending.identity.payer, pending.identity.nonce));
        return client_gone::<P>();
    }
    let version = pending.payment.version;
    let identity = pending.identity.clone();
    let pass = pending.pass.clone();
    let decided = p.run_to_completion(settle(Rc::clone(p), pending, SettleMode::DeliverNow { rerunnable })).await;
    match decided {
        Some(Settled::Paid(settled)) => {
            let mut res = origin_res;
            if let Some(pass) = &pass {
                sell_pass(p, route, pass, canonical, &settled, &identity.payer, res.headers_mut());
            }
            let h = res.headers_mut();
            set_header(h, response_header(version), &encode_header(&settled));
            h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            res
        }
        other => unsettled_response::<P>(other, &identity, version),
    }
}

/// Settlement first, then the origin (`settle = "before"`).
async fn settle_before<P: Platform>(config: &Rc<Config>, p: &Rc<P>, req: Request<P::Body>, canonical: &str, pending: Pending, sells: Option<(&Route, MintedPass)>) -> Response<P::Body> {
    if p.client_gone() {
        release(&**p, &pending, DecisionOutcome::ClientGone, None).await;
        return client_gone::<P>();
    }
    let trace = Rc::clone(&pending.trace);
    let version = pending.payment.version;
    let ticket = pending.ticket.clone();
    let identity = pending.identity.clone();
    let hold = config.origin_timeout_seconds + LEASE_MARGIN_SECONDS;
    match p.run_to_completion(settle(Rc::clone(p), pending, SettleMode::HoldForOrigin(hold))).await {
        Some(Settled::Paid(settled)) => cold(deliver_settled(config, p, &ticket, req, canonical, version, settled, sells, &trace)).await,
        other => unsettled_response::<P>(other, &identity, version),
    }
}

/// Calls the origin for an authorization that is already settled (a settle-first route, or a
/// redelivery) and reports to the ledger whether the response reached a connected client. An
/// origin failure leaves the authorization paid and undelivered: retrying the same payment
/// header before `validBefore` calls the origin again without a second charge. `sells`: the
/// route whose pass goes with a successful delivery (a first one, or the redelivery of a payment
/// whose pass never reached the payer), indexed for the payer with the delivery.
#[allow(clippy::too_many_arguments)]
async fn deliver_settled<P: Platform>(
    config: &Rc<Config>,
    p: &Rc<P>,
    ticket: &Ticket,
    req: Request<P::Body>,
    canonical: &str,
    version: u64,
    settled: SettleResponse,
    sells: Option<(&Route, MintedPass)>,
    trace: &Trace,
) -> Response<P::Body> {
    let rerunnable = is_idempotent(req.method());
    let mut res = match forward(config, &**p, req, canonical).await {
        Ok(res) => res,
        Err(e) => {
            finish(&**p, ticket, Outcome::Delivered { delivered: false, pass: None }).await;
            trace.outcome(DecisionOutcome::Paid, Some("origin_unreachable"));
            return origin_failure::<P>(&**p, &e, Some((&settled, version)));
        }
    };
    trace.origin_status(res.status().as_u16());
    let ok = res.status().as_u16() < 400;
    // A client gone after the origin answered: retrievable by running the origin again only when
    // that is harmless (an idempotent method); otherwise the origin has run once, as paid.
    let delivered = ok && (!p.client_gone() || !rerunnable);
    let sold = sells.as_ref().filter(|_| ok).map(|(_, m)| (m.id.clone(), m.expires_at));
    finish(&**p, ticket, Outcome::Delivered { delivered, pass: sold }).await;
    if let (Some((route, pass)), true) = (sells, ok) {
        let payer = settled.payer.clone().unwrap_or_default();
        sell_pass(p, route, &pass, canonical, &settled, &payer, res.headers_mut());
    }
    let h = res.headers_mut();
    set_header(h, response_header(version), &encode_header(&settled));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// The answer for a settlement that did not end in a payment (refused, unknown, a facilitator
/// fault), or that the runtime dropped.
fn unsettled_response<P: Platform>(decided: Option<Settled>, identity: &PaymentIdentity, version: u64) -> Response<P::Body> {
    match decided {
        Some(Settled::Paid(_)) => unknown_outcome::<P>(StatusCode::BAD_GATEWAY, "internal: a paid settlement reached the unsettled answer", identity),
        Some(Settled::Refused(refused)) => {
            let reason = refused.error_reason.clone().unwrap_or_else(|| "settlement_failed".into());
            let value = json!({
                "error": reason,
                "message": "the facilitator refused to settle this payment; the content is withheld. If the refusal came after its transaction was broadcast, retrying this same payment header reconciles it, never charging twice",
                "payment": identity,
            });
            let mut res = json_response(StatusCode::PAYMENT_REQUIRED, &value, P::body);
            set_header(res.headers_mut(), response_header(version), &encode_header(&refused));
            res
        }
        Some(Settled::UsedElsewhere(transaction)) => {
            let reason = "invalid_exact_evm_nonce_already_used";
            let by = transaction.map(|t| format!(" by transaction {t}")).unwrap_or_default();
            let value = json!({
                "error": reason,
                "message": format!("this authorization's nonce was used on chain{by}, which did not pay this resource; this payment cannot settle and the content is withheld; sign a new one"),
                "payment": identity,
            });
            let refused = SettleResponse { success: false, error_reason: Some(reason.into()), payer: Some(identity.payer.clone()), transaction: String::new(), network: identity.network.clone() };
            let mut res = json_response(StatusCode::PAYMENT_REQUIRED, &value, P::body);
            set_header(res.headers_mut(), response_header(version), &encode_header(&refused));
            res
        }
        Some(Settled::NotSent(detail)) => {
            let value = json!({ "error": "ledger_unavailable", "message": format!("the payment ledger could not record the settlement before sending it ({detail}); it was not sent and nothing was charged; retry shortly"), "payment": identity });
            let mut res = json_response(StatusCode::SERVICE_UNAVAILABLE, &value, P::body);
            set_header(res.headers_mut(), "retry-after", "1");
            res
        }
        Some(Settled::Unknown { timed_out, detail }) => unknown_outcome::<P>(upstream_status(timed_out), &detail, identity),
        Some(Settled::Fault(detail)) => unknown_outcome::<P>(StatusCode::BAD_GATEWAY, &detail, identity),
        None => unknown_outcome::<P>(StatusCode::BAD_GATEWAY, "the settlement task was cancelled", identity),
    }
}

fn unknown_outcome<P: Platform>(status: StatusCode, detail: &str, identity: &PaymentIdentity) -> Response<P::Body> {
    let value = json!({
        "error": "settlement_outcome_unknown",
        "message": format!("{detail}. The payment may or may not have been executed; the content is withheld. Retry with the same payment header before it expires: if it was settled you get the content without paying twice, if not it is settled then."),
        "payment": identity,
    });
    json_response(status, &value, P::body)
}

fn response_header(version: u64) -> &'static str {
    if version == 1 {
        X_PAYMENT_RESPONSE
    } else {
        PAYMENT_RESPONSE
    }
}

/// 503 when the ledger cannot be used: nothing forwarded, nothing charged.
fn ledger_unavailable<P: Platform>(p: &P, detail: &str, trace: &Trace) -> Response<P::Body> {
    p.log(&format!("x402: ledger unavailable: {detail}"));
    trace.outcome(DecisionOutcome::Unavailable, Some("ledger_unavailable"));
    let value = json!({ "error": "ledger_unavailable", "message": format!("the payment ledger is unavailable ({detail}); nothing was forwarded and nothing was charged; retry shortly") });
    let mut res = json_response(StatusCode::SERVICE_UNAVAILABLE, &value, P::body);
    set_header(res.headers_mut(), "retry-after", "1");
    res
}

/// The answer to a client that has gone (nobody reads it; 499 in logs, as nginx names it).
fn client_gone<P: Platform>() -> Response<P::Body> {
    let status = StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST);
    json_response(status, &json!({ "error": "client_closed_request", "message": "the client went away before settlement; nothing was charged" }), P::body)
}

/// How a settlement reports delivery to the ledger.
#[derive(Debug, Clone, Copy)]
enum SettleMode {
    /// Origin already answered: delivered unless the client has gone and running the origin
    /// again is harmless (`rerunnable`: an idempotent method).
    DeliverNow { rerunnable: bool },
    /// Settle first: not delivered yet; keep the lease this long for the origin call.
    HoldForOrigin(u64),
}

/// Everything the settlement of one payment needs, owned, so that it can run to completion
/// after the client has gone.
struct Pending {
    config: Rc<Config>,
    ticket: Ticket,
    payment: PaymentPayload,
    requirements: Value,
    /// Networks a success answer may name: the offer's CAIP-2 id and its v1 name.
    networks: Vec<String>,
    /// The authorization, as the chain evidence asks about it.
    question: Question,
    /// `authorization.validBefore`, Unix seconds.
    valid_before: u64,
    identity: PaymentIdentity,
    /// This ledger sent the authorization to `/settle` before (send mark), outcome unknown.
    prior_sent: bool,
    prior_transaction: Option<String>,
    route_key: String,
    /// The pass this payment sells, minted before settlement so that the settlement's ledger
    /// write also indexes it for the payer.
    pass: Option<MintedPass>,
    /// The request's decision, which the settlement completes.
    trace: Rc<Trace>,
}

/// A pass token minted for a payment: token, id (keccak hex) and `expires_at` (Unix seconds),
/// the latest the pass can expire, for the payer's index: the pass's own clock starts when it is
/// sold with the paid response ([`sell_pass`]), at most a reservation's lease after minting.
#[derive(Debug, Clone)]
struct MintedPass {
    token: String,
    id: String,
    expires_at: u64,
}

/// Mints the token of the pass `route` sells; `None` (logged) if randomness fails.
fn mint_pass<P: Platform>(config: &Config, p: &P, route: &Route) -> Option<MintedPass> {
    let terms = route.pass.as_ref()?;
    let lease = config.origin_timeout_seconds + 2 * config.facilitator_timeout_seconds + LEASE_MARGIN_SECONDS;
    let random = match p.random32() {
        Ok(r) => r,
        Err(e) => {
            p.log(&format!("x402: no pass sold, randomness failed: {e}"));
            return None;
        }
    };
    let token = pass::token_from_random(&random);
    let id = pass::pass_id(&token)?;
    Some(MintedPass { token, id, expires_at: p.now() + terms.ttl_seconds + lease })
}

/// How a settlement ended.
#[derive(Debug)]
enum Settled {
    /// On chain (or reconciled: this ledger's earlier attempt had settled it).
    Paid(SettleResponse),
    Refused(SettleResponse),
    Unknown { timed_out: bool, detail: String },
    /// The facilitator answered something that cannot be true (a transaction hash that settled
    /// another authorization).
    Fault(String),
    /// `/settle` was not sent: the send mark could not be written (nothing charged).
    NotSent(String),
    /// The chain shows the nonce used by a transaction that did not pay this requirement.
    UsedElsewhere(Option<String>),
}

/// Writes the send mark, sends `/settle`, decides what its answer means (with the chain's
/// evidence where `RPC_URL` is set), and records that in the ledger.
///
/// "Paid" rests on evidence: the facilitator's checked success, the chain, or (without
/// `RPC_URL`) "nonce already used" for an authorization this ledger marked as sent before. After
/// a send mark, a refusal of a repeated send other than "nonce already used" is unknown, never
/// "nothing was charged".
async fn settle<P: Platform>(p: Rc<P>, s: Pending, mode: SettleMode) -> Settled {
    // The send mark, acknowledged before /settle leaves; for a repeated send it is there already,
    // and the call proves this request still holds the authorization and renews its lease.
    let mark = Op::Mark { key: s.ticket.key.clone(), holder: s.ticket.holder.clone(), lease_seconds: settlement_lease_seconds(&s.config) };
    let refused = match p.ledger(&s.ticket.shard, &mark).await {
        Ok(Reply::Done) => None,
        Ok(other) => Some(format!("the ledger answered {other:?} to the send mark")),
        Err(e) => Some(e),
    };
    if let Some(detail) = refused {
        p.log(&format!("x402: not settling {} nonce {}: {detail}", s.identity.payer, s.identity.nonce));
        let released = finish(&*p, &s.ticket, Outcome::Release).await;
        if s.prior_sent || !released {
            s.trace.outcome(DecisionOutcome::UnknownOutcome, Some("ledger_unavailable"));
            let why = if s.prior_sent {
                "an earlier settlement of this payment was sent and its outcome is unknown; this retry could not take it over"
            } else {
                "this request took longer than its hold on the authorization, which another request may have taken and settled"
            };
            return Settled::Unknown { timed_out: false, detail: format!("{why} ({detail})") };
        }
        s.trace.outcome(DecisionOutcome::Unavailable, Some("ledger_unavailable"));
        return Settled::NotSent(detail);
    }
    let call = call_facilitator(&s.config, &*p, Endpoint::Settle, &s.payment, &s.requirements, classify_settle, |o| {
        matches!(o, SettleOutcome::Unknown { transaction: None, .. })
    })
    .await;
    s.trace.facilitator_ms(call.millis);
    let networks: Vec<&str> = s.networks.iter().map(String::as_str).collect();
    let id = &s.identity;
    let mut named_transaction = None;
    // An answer that does not settle the question by itself: the chain decides where it can.
    let ask_chain = |p: Rc<P>, transaction: Option<String>, otherwise: Settled| {
        let s = &s;
        async move {
            let Some(rpc_url) = s.config.rpc_url.as_deref() else { return otherwise };
            match chain_evidence(&*p, rpc_url, &s.question, transaction.as_deref().or(s.prior_transaction.as_deref()), s.config.facilitator_timeout_seconds).await {
                Evidence::Paid { transaction } => Settled::Paid(known_paid(&s.identity.payer, transaction, networks_first(&s.networks))),
                Evidence::UsedElsewhere { transaction } => Settled::UsedElsewhere(transaction),
                Evidence::NotUsed | Evidence::Unavailable(_) => otherwise,
            }
        }
    };
    let decided = match call.outcome {
        SettleOutcome::Settled(r) => match check_settled(&r, &networks, &id.payer) {
            Ok(()) => Settled::Paid(with_payer(r, &id.payer)),
            Err(detail) => {
                named_transaction = is_transaction_hash(&r.transaction).then(|| r.transaction.clone());
                Settled::Unknown { timed_out: false, detail }
            }
        },
        // This ledger sent the authorization to settlement before and never learned the outcome:
        // "already used" means that attempt went through, as the chain confirms where it can be
        // asked; without RPC_URL this is the stated assumption.
        SettleOutcome::Refused(r) if s.prior_sent && is_nonce_used(r.error_reason.as_deref()) => {
            let network = if r.network.is_empty() { networks_first(&s.networks) } else { r.network };
            let assumed = Settled::Paid(known_paid(&id.payer, s.prior_transaction.clone().unwrap_or_default(), network));
            let detail = "the facilitator says the nonce is already used and the chain does not show this payment".to_string();
            let decided = if s.config.rpc_url.is_some() { ask_chain(Rc::clone(&p), None, Settled::Unknown { timed_out: false, detail }).await } else { assumed };
            if matches!(decided, Settled::Paid(_)) {
                p.log(&format!("x402: reconciled {} nonce {}: settled by an earlier attempt of this ledger", id.payer, id.nonce));
            }
            decided
        }
        // A repeated send refused for another reason: the earlier send may have paid (and
        // drained the balance it now lacks): unknown unless the chain says otherwise.
        SettleOutcome::Refused(r) if s.prior_sent => {
            let detail = format!("the facilitator refused a repeated settlement ({}) after an earlier send whose outcome is unknown", r.error_reason.as_deref().unwrap_or("no reason"));
            ask_chain(Rc::clone(&p), None, Settled::Unknown { timed_out: false, detail }).await
        }
        // A first send refused: a refusal may follow a broadcast (a transaction that failed after
        // it left), so the chain decides where it can be asked; the record is kept (below).
        SettleOutcome::Refused(r) => ask_chain(Rc::clone(&p), None, Settled::Refused(with_payer(r, &id.payer))).await,
        SettleOutcome::Unknown { timed_out, detail, transaction } => {
            named_transaction = transaction.clone();
            ask_chain(Rc::clone(&p), transaction, Settled::Unknown { timed_out, detail }).await
        }
    };
    let outcome = match &decided {
        Settled::Paid(r) => {
            let (delivered, hold_seconds) = match mode {
                SettleMode::DeliverNow { rerunnable } => (!p.client_gone() || !rerunnable, 0),
                SettleMode::HoldForOrigin(hold) => (false, hold),
            };
            Outcome::Settled {
                transaction: r.transaction.clone(),
                network: r.network.clone(),
                delivered,
                hold_seconds,
                pass: s.pass.as_ref().map(|m| (m.id.clone(), m.expires_at)),
            }
        }
        // Forgotten only when nothing of this authorization can have moved: "nonce already used"
        // before any send of ours succeeded (the facilitator checks it before it broadcasts), or
        // the chain showing the nonce spent by another transaction. Any other refusal after the
        // send mark keeps the record, so a retry can still reconcile it.
        Settled::Refused(r) if is_nonce_used(r.error_reason.as_deref()) && s.config.rpc_url.is_none() => Outcome::Refused,
        Settled::UsedElsewhere(_) => Outcome::Refused,
        Settled::Refused(_) => Outcome::Unknown { transaction: None, refused: true },
        Settled::Unknown { .. } | Settled::Fault(_) | Settled::NotSent(_) => Outcome::Unknown { transaction: named_transaction, refused: false },
    };
    match &decided {
        Settled::Paid(r) => {
            s.trace.outcome(DecisionOutcome::Paid, None);
            s.trace.transaction(&r.transaction);
        }
        Settled::Refused(r) => s.trace.outcome(DecisionOutcome::Refused, Some(r.error_reason.as_deref().unwrap_or("settlement_failed"))),
        Settled::UsedElsewhere(_) => s.trace.outcome(DecisionOutcome::Refused, Some("invalid_exact_evm_nonce_already_used")),
        Settled::Unknown { .. } | Settled::Fault(_) | Settled::NotSent(_) => s.trace.outcome(DecisionOutcome::UnknownOutcome, Some("settlement_outcome_unknown")),
    }
    match &decided {
        Settled::Paid(r) => p.log(&format!("x402: settled {} {} from {} tx {}", s.route_key, id.amount, id.payer, r.transaction)),
        Settled::Refused(r) => p.log(&format!("x402: settlement refused for {} nonce {}: {}", id.payer, id.nonce, r.error_reason.as_deref().unwrap_or("no reason"))),
        Settled::UsedElsewhere(tx) => p.log(&format!("x402: settlement of {} nonce {}: the chain shows the nonce used by {tx:?}, which did not pay", id.payer, id.nonce)),
        Settled::Unknown { detail, .. } | Settled::Fault(detail) | Settled::NotSent(detail) => p.log(&format!("x402: settlement outcome unknown for {} nonce {}: {detail}", id.payer, id.nonce)),
    }
    match p.ledger(&s.ticket.shard, &s.ticket.finish(outcome)).await {
        Ok(Reply::Done) => decided,
        Ok(Reply::DuplicateTransaction) => {
            s.trace.outcome(DecisionOutcome::UnknownOutcome, Some("duplicate_transaction"));
            let tx = match &decided {
                Settled::Paid(r) => r.transaction.clone(),
                _ => String::new(),
            };
            Settled::Fault(format!("the facilitator reported transaction {tx}, which this ledger already holds for another authorization"))
        }
        // The settlement itself is done; the record keeps its lease until it runs out and then
        // reads as unknown, which a retry reconciles.
        Ok(other) => {
            p.log(&format!("x402: ledger did not record the settlement of {} ({other:?})", s.ticket.key));
            decided
        }
        Err(e) => {
            p.log(&format!("x402: ledger did not record the settlement of {}: {e}", s.ticket.key));
            decided
        }
    }
}

/// The success `PAYMENT-RESPONSE` of a payment this paywall knows to be paid without a fresh
/// facilitator success: a redelivery, the chain's evidence, or (without `RPC_URL`) "nonce already
/// used" after its own earlier send.
fn known_paid(payer: &str, transaction: String, network: String) -> SettleResponse {
    SettleResponse { success: true, error_reason: None, payer: Some(payer.to_string()), transaction, network }
}

fn networks_first(networks: &[String]) -> String {
    networks.first().cloned().unwrap_or_default()
}

/// The challenge's description: the route's, followed by what a pass buys when it sells one
/// ("Reports — 10 requests within 1 hour to /reports/*").
fn offer_description(route: &Route) -> Option<String> {
    match (&route.description, &route.pass) {
        (Some(d), Some(pass)) => Some(format!("{d} — {}", pass.summary)),
        (None, Some(pass)) => Some(pass.summary.clone()),
        (d, None) => d.clone(),
    }
}

/// What a 402 challenge for this request needs, so that one is built only when it is sent.
struct Challenger<'a> {
    config: &'a Config,
    route: &'a Route,
    canonical: &'a str,
    method: Method,
    resource_url: String,
}

impl Challenger<'_> {
    /// The 402 challenge with reason `error`. With wallet sign-in on for the route, its extension
    /// carries a fresh nonce, so the challenge is serialised whole; otherwise it is filled into
    /// the route's layout for the method (laid out on first use), which gives the same bytes.
    fn respond<P: Platform>(&self, p: &P, error: &str) -> Response<P::Body> {
        let bazaar = self.route.discovery.bazaar(&self.method);
        if let Some(siwx) = sign_in_extension(self.config, p, self.route, self.canonical) {
            return challenge::<P>(self.route, &self.resource_url, error, discovery::merge_extensions(Some(siwx), bazaar).as_ref());
        }
        let layout = challenge_layout(self.route, &self.method);
        // Serialising our own values does not fail; if it ever did, the whole path still works.
        let Some(layout) = layout else {
            return challenge::<P>(self.route, &self.resource_url, error, discovery::merge_extensions(None, bazaar).as_ref());
        };
        let values = [self.resource_url.as_str(), error];
        let mut res = Response::new(P::body(layout.body.render(&values).into_bytes()));
        *res.status_mut() = StatusCode::PAYMENT_REQUIRED;
        let h = res.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        set_header(h, PAYMENT_REQUIRED, &encode_header_bytes(layout.header.render(&values).as_bytes()));
        res
    }
}

/// The route's challenge layout for `method`, laid out on first use (the extensions value is built
/// only when a layout is: once per route and method). Only the method's `bazaar` extension makes
/// its challenge differ, so a method without one (any a client invents) shares the route's one
/// extension-less layout: the layouts held stay bounded by the configuration. `None` for a route
/// whose configured values hold U+0000, which could pose as a hole: it is serialised whole on each
/// challenge instead.
fn challenge_layout(route: &Route, method: &Method) -> Option<std::rc::Rc<ChallengeLayout>> {
    let bazaar = route.discovery.bazaar(method);
    route.challenge_layouts.get_or_build(bazaar.map(|_| method), || {
        let extensions = discovery::merge_extensions(None, bazaar);
        let (plain, _) = challenge_values(route, "", "", extensions.as_ref());
        if serde_json::to_string(&plain).ok()?.contains("\\u0000") {
            return None;
        }
        let (pr, body) = challenge_values(route, TEMPLATE_HOLES[0], TEMPLATE_HOLES[1], extensions.as_ref());
        Some(ChallengeLayout { header: JsonTemplate::new(&pr).ok()?, body: JsonTemplate::new(&body).ok()? })
    })
}

/// Lays out every priced route's 402 challenge for the route's method (`GET` for a route of any
/// method) ahead of the first request: what a first challenge would otherwise build. Called by
/// the Workers glue when the module starts (`edge::warm_up`); idempotent.
pub fn prepare(config: &Config) {
    for route in config.routes.iter().filter(|r| !r.is_free()) {
        let method = route.pattern.method().cloned().unwrap_or(Method::GET);
        let _ = challenge_layout(route, &method);
    }
}

/// The 402 challenge: the v2 `PaymentRequired` in `PAYMENT-REQUIRED`, and as JSON body the v1
/// `PaymentRequirementsResponse` (what legacy v1 clients read; v2 clients read only the header),
/// or the v2 JSON when no offer of the route can be paid in v1.
fn challenge<P: Platform>(route: &Route, resource_url: &str, error: &str, extensions: Option<&Value>) -> Response<P::Body> {
    let (pr, body) = challenge_values(route, resource_url, error, extensions);
    let mut res = json_response(StatusCode::PAYMENT_REQUIRED, &body, P::body);
    set_header(res.headers_mut(), PAYMENT_REQUIRED, &encode_header(&pr));
    res
}

/// The challenge's `PaymentRequired` (the header) and its JSON body.
fn challenge_values(route: &Route, resource_url: &str, error: &str, extensions: Option<&Value>) -> (PaymentRequired, Value) {
    let pr = PaymentRequired {
        extensions: extensions.cloned(),
        x402_version: X402_VERSION,
        error: error.to_string(),
        resource: ResourceInfo { url: resource_url.to_string(), description: offer_description(route), mime_type: route.mime_type.clone() },
        accepts: route.accepts.iter().map(|o| o.requirements.clone()).collect(),
    };
    let v1_accepts: Vec<_> = route
        .accepts
        .iter()
        .filter_map(|o| o.requirements_v1(resource_url, offer_description(route).as_deref(), route.mime_type.as_deref()))
        .collect();
    let body = if v1_accepts.is_empty() {
        serde_json::to_value(&pr)
    } else {
        serde_json::to_value(PaymentRequiredV1 { x402_version: 1, error: error.to_string(), accepts: v1_accepts })
    };
    (pr, body.unwrap_or(Value::Null))
}

/// The origin URL for a canonical path and the request's query: the configured origin's base
/// (with its path prefix) followed by the canonical path; for a service-binding origin, the
/// public base the client used (`scheme://authority`).
fn origin_url(config: &Config, public_base: &str, canonical: &str, query: Option<&str>) -> String {
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

/// Why a request could not be forwarded.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ForwardError {
    /// The origin did not answer (unreachable, or over its time limit).
    Upstream(UpstreamError),
    /// The method cannot be sent with `fetch` (`CONNECT`, `TRACE`, `TRACK`): 405.
    Method(String),
    /// The canonical URL did not parse: 400.
    Url,
}

/// `scheme://authority` of the URL the client used.
fn public_base(uri: &http::Uri) -> String {
    match (uri.scheme_str(), uri.authority()) {
        (Some(scheme), Some(authority)) => format!("{scheme}://{authority}"),
        _ => String::new(),
    }
}

/// Forwards the request to the origin on its canonical path with its exact method. Removed:
/// the paywall's own headers, path-override headers, hop-by-hop headers (and those `Connection`
/// names), client copies of the forwarding and client-IP headers and of the `ORIGIN_HEADERS`
/// names. Set: `X-Forwarded-For` and `X-Real-IP` (from `CF-Connecting-IP`), `X-Forwarded-Host`,
/// `X-Forwarded-Proto`, and the `ORIGIN_HEADERS`. The response's `Location`, `Content-Location` and `Link` URLs that
/// point at the origin are rewritten to the public URL.
async fn forward<P: Platform>(config: &Config, p: &P, req: Request<P::Body>, canonical: &str) -> Result<Response<P::Body>, ForwardError> {
    let (req, rewrite) = prepare_forward(config, req, canonical)?;
    let mut res = p.origin(req, config.origin_timeout_seconds).await.map_err(ForwardError::Upstream)?;
    if let Some(r) = &rewrite {
        r.apply(res.headers_mut());
    }
    Ok(res)
}

/// The request [`forward`] sends (headers and URL as it documents), and the rewrite of the URL
/// headers of the origin's response (`None` for a service-binding origin).
fn prepare_forward<B>(config: &Config, req: Request<B>, canonical: &str) -> Result<(Request<B>, Option<UrlRewrite>), ForwardError> {
    let (mut parts, body) = req.into_parts();
    if UNFORWARDABLE_METHODS.iter().any(|m| parts.method.as_str().eq_ignore_ascii_case(m)) {
        return Err(ForwardError::Method(parts.method.to_string()));
    }
    let public = public_base(&parts.uri);
    let url = origin_url(config, &public, canonical, parts.uri.query());
    let h = &mut parts.headers;
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
    h.remove(http::header::HOST);
    let cookies: Vec<String> = h.get_all(http::header::COOKIE).iter().filter_map(|v| v.to_str().ok()).filter_map(pass::strip_cookie).collect();
    h.remove(http::header::COOKIE);
    for c in cookies {
        if let Ok(v) = HeaderValue::from_str(&c) {
            h.append(http::header::COOKIE, v);
        }
    }
    if let Some(ip) = h.get("cf-connecting-ip").cloned() {
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

/// The rewrite of an origin response's URL headers for one request: `Location`,
/// `Content-Location` and `Link` URLs under `base` (`scheme://authority[prefix]`, the configured
/// origin) become URLs under `public` (`scheme://authority` the client used).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlRewrite {
    pub base: String,
    pub prefix: String,
    pub public: String,
}

impl UrlRewrite {
    /// Rewrites `headers` in place; URLs elsewhere are left alone.
    pub fn apply(&self, headers: &mut HeaderMap) {
        rewrite_origin_urls(headers, &self.base, &self.prefix, &self.public);
    }
}

/// The answer to a request the origin failed (unreachable, or over its time limit) when no
/// payment was taken: 504 for a timeout, else 502, `origin_unavailable`, the cause without the
/// origin's address.
pub fn origin_unavailable<B>(e: &UpstreamError, body: impl FnOnce(Vec<u8>) -> B) -> Response<B> {
    let status = upstream_status(matches!(e, UpstreamError::Timeout { .. }));
    json_response(status, &json!({ "error": "origin_unavailable", "message": format!("origin {}; no payment was taken", e.public()) }), body)
}

/// Rewrites the URL headers of an origin response that point at the origin (`base` =
/// `scheme://authority[prefix]`) to the public URL (`public` = `scheme://authority`), so the
/// origin's address never reaches a client. Relative URLs under the origin's path prefix lose
/// the prefix. Other URLs are left alone.
fn rewrite_origin_urls(headers: &mut HeaderMap, base: &str, prefix: &str, public: &str) {
    for name in URL_RESPONSE_HEADERS {
        let values: Vec<HeaderValue> = headers.get_all(name).iter().cloned().collect();
        if values.is_empty() {
            continue;
        }
        let rewritten: Vec<HeaderValue> = values
            .iter()
            .map(|v| {
                let Ok(text) = v.to_str() else { return v.clone() };
                let out = if name == "link" { rewrite_link(text, base, prefix, public) } else { rewrite_url(text, base, prefix, public).unwrap_or_else(|| text.to_string()) };
                HeaderValue::from_str(&out).unwrap_or_else(|_| v.clone())
            })
            .collect();
        if rewritten == values {
            continue; // nothing pointed at the origin: the header stays where it was
        }
        headers.remove(name);
        for v in rewritten {
            headers.append(HeaderName::from_static(name), v);
        }
    }
}

/// The public form of one URL if it points at the origin; `None` to leave it.
pub fn rewrite_url(url: &str, base: &str, prefix: &str, public: &str) -> Option<String> {
    let origin_root = &base[..base.len() - prefix.len()];
    let path = if url.len() >= origin_root.len() && url.is_char_boundary(origin_root.len()) && url[..origin_root.len()].eq_ignore_ascii_case(origin_root) {
        let rest = &url[origin_root.len()..];
        if !(rest.is_empty() || rest.starts_with(['/', '?', '#'])) {
            return None; // another port or host that merely starts the same way
        }
        rest
    } else if let Some(rest) = url.strip_prefix("//").and_then(|r| {
        let authority = origin_root.split_once("://").map(|(_, a)| a)?;
        (r.len() >= authority.len() && r.is_char_boundary(authority.len()) && r[..authority.len()].eq_ignore_ascii_case(authority)).then(|| &r[authority.len()..])
    }) {
        if !(rest.is_empty() || rest.starts_with(['/', '?', '#'])) {
            return None;
        }
        rest
    } else if url.starts_with('/') && !url.starts_with("//") && !prefix.is_empty() {
        url
    } else {
        return None;
    };
    let path = match path.strip_prefix(prefix) {
        Some(rest) if !prefix.is_empty() && (rest.is_empty() || rest.starts_with(['/', '?', '#'])) => rest,
        _ if url.starts_with('/') && !url.starts_with("//") => return None, // relative, not under the prefix
        _ => path,
    };
    let path = if path.is_empty() || !path.starts_with('/') { format!("/{path}") } else { path.to_string() };
    Some(if url.starts_with('/') && !url.starts_with("//") { path } else { format!("{public}{path}") })
}

/// Rewrites every `<URL>` of a `Link` header value (RFC 8288) with [`rewrite_url`].
fn rewrite_link(value: &str, base: &str, prefix: &str, public: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(open) = rest.find('<') {
        let Some(close) = rest[open..].find('>').map(|c| open + c) else { break };
        out.push_str(&rest[..=open]);
        let url = &rest[open + 1..close];
        out.push_str(&rewrite_url(url, base, prefix, public).unwrap_or_else(|| url.to_string()));
        out.push('>');
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    out
}

/// The answer when forwarding failed. `settled`: the payment was already settled (a settle-first
/// route, or a redelivery) and the payment's x402 version, so the answer carries it in that
/// version's header (`PAYMENT-RESPONSE`, or `X-PAYMENT-RESPONSE` for v1) and says how to get the
/// content.
fn origin_failure<P: Platform>(p: &P, e: &ForwardError, settled: Option<(&SettleResponse, u64)>) -> Response<P::Body> {
    match e {
        ForwardError::Method(m) => {
            let mut res = json_response(StatusCode::METHOD_NOT_ALLOWED, &json!({ "error": "method_not_allowed", "message": format!("{m} requests are not forwarded") }), P::body);
            set_header(res.headers_mut(), "allow", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS");
            res
        }
        ForwardError::Url => json_response(StatusCode::BAD_REQUEST, &json!({ "error": "invalid_url" }), P::body),
        ForwardError::Upstream(e) => {
            p.log(&format!("x402: origin {e}"));
            let status = upstream_status(matches!(e, UpstreamError::Timeout { .. }));
            let public = e.public();
            match settled {
                None => origin_unavailable(e, P::body),
                Some((s, version)) => {
                    let message = format!(
                        "origin {public}. Your payment was settled (transaction {}); retry with the same payment header before it expires to get the response without paying again",
                        s.transaction
                    );
                    let mut res = json_response(status, &json!({ "error": "origin_unavailable", "message": message }), P::body);
                    set_header(res.headers_mut(), response_header(version), &encode_header(s));
                    res
                }
            }
        }
    }
}

/// State an isolate keeps across requests (on the edge, for the isolate's lifetime).
#[derive(Debug, Default)]
pub struct IsolateState {
    /// Facilitators seen failing, for failover.
    pub health: FacilitatorHealth,
    /// Clients over their route's `failed` rate limit.
    pub blocked: BlockList,
}

/// Keys blocked until a time (Unix seconds). Bounded: at most [`BlockList::MAX`] keys are kept,
/// expired ones dropped first.
#[derive(Debug, Default)]
pub struct BlockList(std::cell::RefCell<std::collections::HashMap<String, u64>>);

impl BlockList {
    /// Most keys held.
    pub const MAX: usize = 10_000;

    /// Blocks `key` until `until`.
    pub fn block(&self, key: &str, until: u64, now: u64) {
        let mut m = self.0.borrow_mut();
        if m.len() >= Self::MAX {
            m.retain(|_, t| *t > now);
        }
        if m.len() < Self::MAX {
            m.insert(key.to_string(), until);
        }
    }

    /// Whether `key` is blocked at `now`.
    pub fn is_blocked(&self, key: &str, now: u64) -> bool {
        self.0.borrow().get(key).is_some_and(|t| *t > now)
    }
}

/// Seconds a client over a route's `failed` limit is refused before its payments are looked at
/// (the longest period a Workers rate limit counts over).
pub const FAILED_BLOCK_SECONDS: u64 = 60;

/// `Retry-After` for a request over a `challenge` or `paid` limit, seconds.
pub const RATE_LIMIT_RETRY_SECONDS: u64 = 10;

fn failed_key(route: &Route, client_ip: &str) -> String {
    format!("failed:{}:{client_ip}", route.key)
}

/// The key the route's `challenge` limit counts a client's unpaid work under.
fn challenge_key(route: &Route, client: &str) -> String {
    format!("challenge:{}:{client}", route.key)
}

/// Counts one piece of unpaid work that costs more than a challenge (a pass lookup that reads
/// KV, a sign-in that reaches a Durable Object) against the route's `challenge` rate limit for
/// `client` ([`client_limit_key`]), under the key challenges count under: one budget per client
/// for everything it gets without paying. True when within it, or the route has no such limit.
async fn unpaid_work_allowed<P: Platform>(p: &P, route: &Route, client: &str) -> bool {
    match &route.rate_limits.challenge {
        Some(binding) => rate_limit(p, binding, &challenge_key(route, client)).await,
        None => true,
    }
}

/// The identity a client is rate-limited and blocked under (the `challenge` and `failed` limits,
/// the failed-attempt block list), from its `CF-Connecting-IP` value: an IPv4 address as it is
/// (`192.0.2.1`); an IPv6 address as its /64 prefix, its first four groups in lower-case hex
/// (`2001:db8:0:2::/64`): the smallest allocation one subscriber gets, so rotating through its
/// addresses gains nothing; an IPv4-mapped IPv6 address as its IPv4 address; anything else
/// (absent, not an IP address) as `unknown`, one shared key, so invented values never multiply
/// keys. Parsed with `std::net` (surrounding spaces ignored).
pub fn client_limit_key(ip: Option<&str>) -> String {
    match ip.map(str::trim).and_then(|ip| ip.parse::<std::net::IpAddr>().ok()) {
        Some(std::net::IpAddr::V4(v4)) => v4.to_string(),
        Some(std::net::IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
        None => "unknown".to_string(),
    }
}

/// Counts one request against a rate limiting binding; a limiter that cannot be used lets the
/// request through (logged): it protects capacity, never payments.
async fn rate_limit<P: Platform>(p: &P, binding: &str, key: &str) -> bool {
    match p.rate_limit(binding, key).await {
        Ok(within) => within,
        Err(e) => {
            p.log(&format!("x402: rate limiter {binding} unavailable ({e}); not limiting"));
            true
        }
    }
}

/// 429 with `Retry-After`.
fn too_many_requests<P: Platform>(message: &str, retry_after: u64) -> Response<P::Body> {
    let mut res = json_response(StatusCode::TOO_MANY_REQUESTS, &json!({ "error": "rate_limited", "message": message }), P::body);
    set_header(res.headers_mut(), "retry-after", &retry_after.to_string());
    res
}

/// After a refused payment attempt: counts it against the route's `failed` limit for the client;
/// over the limit, answers 429 and blocks the client's payment attempts on this route in this
/// isolate for [`FAILED_BLOCK_SECONDS`] (the rate limiting API cannot be asked without counting).
async fn failed_attempt_limit<P: Platform>(p: &P, route: &Route, trace: &Trace, client_ip: &str, res: Response<P::Body>) -> Response<P::Body> {
    let Some(binding) = &route.rate_limits.failed else { return res };
    if trace.current_outcome() != DecisionOutcome::Refused {
        return res;
    }
    let key = failed_key(route, client_ip);
    if rate_limit(p, binding, &key).await {
        return res;
    }
    p.isolate().blocked.block(&key, p.now() + FAILED_BLOCK_SECONDS, p.now());
    trace.outcome(DecisionOutcome::RateLimited, Some("failed_payments"));
    too_many_requests::<P>("too many failed payment attempts from this address", FAILED_BLOCK_SECONDS)
}

/// `MODE = "shadow"`: forwards as if free and records what would have been charged: the route's
/// first payment option, and whether the request carried a payment that verifies locally
/// (`valid_payment`), one that does not (its reason), or none (`no_payment`). Nothing is reserved,
/// verified with a facilitator or settled.
async fn shadow<P: Platform>(config: &Config, p: &P, route: &Route, req: Request<P::Body>, canonical: &str, trace: &Trace) -> Response<P::Body> {
    let decoded = match (header_str(req.headers(), PAYMENT_SIGNATURE), header_str(req.headers(), X_PAYMENT)) {
        (Some(h), _) => Some(decode_payment_signature(h)),
        (None, Some(h)) => Some(decode_x_payment(h)),
        (None, None) => None,
    };
    let reason = match decoded {
        None => "no_payment".to_string(),
        Some(Err(e)) => e.reason().to_string(),
        Some(Ok(payment)) => match verify_exact(&route.accepts, &payment, p.now(), config.min_validity_seconds()) {
            Ok(v) => {
                trace.payer(&v.payer.to_checksum());
                v.late.map_or("valid_payment", |late| late.reason).to_string()
            }
            Err(inv) => inv.reason.to_string(),
        },
    };
    if let Some(offer) = route.accepts.first() {
        let r = &offer.requirements;
        trace.price(&r.amount, &r.asset, &r.network);
    }
    trace.outcome(DecisionOutcome::Shadow, Some(&reason));
    match forward(config, p, req, canonical).await {
        Ok(res) => {
            trace.origin_status(res.status().as_u16());
            res
        }
        Err(e) => origin_failure::<P>(p, &e, None),
    }
}

/// Awaits `fut` through a box: its state machine becomes a function of its own instead of being
/// inlined into the caller's. V8 compiles wasm functions on their first call, so a fresh isolate's
/// first request then compiles only the paths it takes (a 402 challenge never compiles the
/// settlement path). One allocation per call, on paths that make network calls anyway.
fn cold<'a, T>(fut: impl Future<Output = T> + 'a) -> std::pin::Pin<Box<dyn Future<Output = T> + 'a>> {
    Box::pin(fut)
}

/// A facilitator endpoint the paywall calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Verify,
    Settle,
}

impl Endpoint {
    fn path(self) -> &'static str {
        match self {
            Endpoint::Verify => "verify",
            Endpoint::Settle => "settle",
        }
    }
}

/// What one facilitator exchange decided (`O`: [`VerifyOutcome`] or [`SettleOutcome`]), and how
/// long it took in all (milliseconds).
struct FacilitatorCall<O> {
    outcome: O,
    millis: u64,
}

/// `POST {facilitator}/{endpoint}` with the payment in its own version, over the configured
/// facilitators in [`FacilitatorHealth::order`], each reply classified once with `classify`.
/// `/verify` moves on to the next facilitator on any failure (`failed`: no usable answer);
/// `/settle` only when the request was provably never sent ([`UpstreamError::NotSent`]): once it
/// may have reached a facilitator the outcome is unknown and belongs to the ledger's
/// reconciliation, never to a second facilitator. A failure marks the facilitator as failing for
/// this isolate (logged).
async fn call_facilitator<P: Platform, O>(
    config: &Config,
    p: &P,
    endpoint: Endpoint,
    payment: &PaymentPayload,
    requirements: &Value,
    classify: fn(Result<HttpReply, UpstreamError>) -> O,
    failed: fn(&O) -> bool,
) -> FacilitatorCall<O> {
    let body = request_body(payment.version, &payment.raw, requirements);
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
async fn facilitator_authorization<P: Platform>(p: &P, facilitator: &Facilitator, url: &str) -> Result<Option<String>, String> {
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
fn upstream_status(timed_out: bool) -> StatusCode {
    if timed_out {
        StatusCode::GATEWAY_TIMEOUT
    } else {
        StatusCode::BAD_GATEWAY
    }
}

fn with_payer(mut s: SettleResponse, payer: &str) -> SettleResponse {
    if s.payer.is_none() {
        s.payer = Some(payer.to_string());
    }
    s
}

/// Why a payment is refused for a denied payer.
const PAYER_DENIED: &str = "payer_denied: this payer is not accepted here";

/// A pass that admitted a request: its id and its record (which it dereferences to).
struct AdmittedPass {
    id: String,
    record: PassRecord,
}

impl std::ops::Deref for AdmittedPass {
    type Target = PassRecord;
    fn deref(&self) -> &PassRecord {
        &self.record
    }
}

/// How a pass check ended.
enum PassCheck {
    Admitted(AdmittedPass),
    /// Reason code: `pass_unknown`, `pass_expired`, `pass_revoked`, `pass_out_of_scope`,
    /// `pass_used_up`, `payer_denied`.
    Refused(&'static str),
    /// KV or the pass's ledger shard could not be asked.
    Unavailable(String),
}

fn pass_refusal_text(code: &str) -> &'static str {
    match code {
        "pass_used_up" => "this pass has used all the requests it bought",
        "pass_expired" => "this pass has expired",
        "pass_revoked" => "this pass was revoked",
        "pass_out_of_scope" => "this pass is for another route or path",
        "payer_denied" => "this pass's payer is not accepted here",
        "pass_not_checked" => "too many unpaid requests from this address: the pass was not looked up; retry shortly",
        _ => "unknown pass (a pass can take up to 60 s to reach every location after it was bought)",
    }
}

/// Checks a pass token a request presented ([`check_pass`]) without work for tokens nobody holds.
/// A pass id not cached in this isolate is looked up in KV only if it was not found unknown within
/// [`pass::UNKNOWN_SECONDS`] (else `pass_unknown` at once) and the lookup is within the route's
/// `challenge` rate limit for `client` ([`unpaid_work_allowed`]; over it, `pass_not_checked`, and
/// the request goes on as one without a pass). A KV miss is remembered ([`PassCache::mark_unknown`]).
async fn check_presented_pass<P: Platform>(config: &Config, p: &P, route: &Route, canonical: &str, id: &str, client: &str) -> PassCheck {
    let now = p.now();
    if !p.passes().holds(id, now) {
        if p.passes().is_unknown(id, now) {
            return PassCheck::Refused("pass_unknown");
        }
        if !unpaid_work_allowed(p, route, client).await {
            return PassCheck::Refused("pass_not_checked");
        }
    }
    let checked = check_pass(config, p, route, canonical, id).await;
    if matches!(checked, PassCheck::Refused("pass_unknown")) {
        p.passes().mark_unknown(id, now);
    }
    checked
}

/// Checks a presented pass token for `route` at `canonical`: its revocation (this isolate's
/// tombstones), the record from this isolate's cache or KV (a record read from KV is followed by
/// a read of its tombstone, `revoked:<id>`, before it is trusted or cached: no KV read for a
/// cached pass, one for an unknown token, two for a pass this isolate has not cached), its
/// expiry and scope, the denylist, and, for a counted pass, one request from its ledger shard
/// (the single writer that keeps the count exact).
async fn check_pass<P: Platform>(config: &Config, p: &P, route: &Route, canonical: &str, id: &str) -> PassCheck {
    let id = id.to_string();
    let now = p.now();
    if p.passes().is_revoked(&id, now) {
        return PassCheck::Refused("pass_revoked");
    }
    let record = match p.passes().get(&id, now) {
        Some(r) => r,
        None => {
            let record = match p.kv_get(&pass::kv_key(&id)).await {
                Ok(Some(raw)) => match serde_json::from_str::<PassRecord>(&raw) {
                    Ok(r) => r,
                    Err(_) => return PassCheck::Refused("pass_unknown"),
                },
                Ok(None) => return PassCheck::Refused("pass_unknown"),
                Err(e) => return PassCheck::Unavailable(format!("pass lookup: {e}")),
            };
            // The tombstone, not the record, says whether the pass was revoked: a record written
            // late by the sale cannot undo a revocation.
            match p.kv_get(&pass::tombstone_key(&id)).await {
                Ok(Some(_)) => {
                    p.passes().revoke(&id, record.expires_at, now);
                    return PassCheck::Refused("pass_revoked");
                }
                Ok(None) => {}
                Err(e) => return PassCheck::Unavailable(format!("pass revocation lookup: {e}")),
            }
            p.passes().insert(id.clone(), record.clone(), now);
            record
        }
    };
    if let Err(reason) = record.admits(route, canonical, now) {
        return PassCheck::Refused(reason);
    }
    if Address::parse(&record.payer).is_some_and(|a| config.denylist.contains(&a)) {
        return PassCheck::Refused("payer_denied");
    }
    if let Some(max) = record.max_requests {
        let op = Op::PassUse { max_requests: Some(max), expires_at: record.expires_at };
        match p.ledger(&pass::shard(&id), &op).await {
            Ok(Reply::PassAdmitted { .. }) => {}
            Ok(Reply::PassRefused { reason }) => {
                return PassCheck::Refused(match reason.as_str() {
                    "pass_used_up" => "pass_used_up",
                    "pass_expired" => "pass_expired",
                    _ => "pass_revoked",
                })
            }
            Ok(other) => return PassCheck::Unavailable(format!("the pass ledger answered {other:?}")),
            Err(e) => return PassCheck::Unavailable(e),
        }
    }
    PassCheck::Admitted(AdmittedPass { id, record })
}

/// Forwards a request a pass admitted, with the pass's expiry and `Cache-Control: no-store`.
/// When the origin does not serve it (5xx, unreachable, over its time limit), a counted pass gets
/// the request back ([`Op::PassRefund`]) before the answer leaves.
async fn serve_on_pass<P: Platform>(config: &Config, p: &P, req: Request<P::Body>, canonical: &str, pass: &AdmittedPass, trace: &Trace) -> Response<P::Body> {
    match forward(config, p, req, canonical).await {
        Ok(mut res) => {
            trace.origin_status(res.status().as_u16());
            if res.status().is_server_error() {
                refund_pass_use(p, pass).await;
            }
            set_header(res.headers_mut(), PASS_EXPIRES_HEADER, &pass.expires_at.to_string());
            res.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            res
        }
        Err(e) => {
            refund_pass_use(p, pass).await;
            trace.outcome(DecisionOutcome::OriginError, Some("origin_unreachable"));
            origin_failure::<P>(p, &e, None)
        }
    }
}

/// Gives a counted pass back the request its ledger shard counted for a request the origin did
/// not serve; a failure is logged (the request stays counted).
async fn refund_pass_use<P: Platform>(p: &P, pass: &AdmittedPass) {
    if pass.max_requests.is_none() {
        return;
    }
    match p.ledger(&pass::shard(&pass.id), &Op::PassRefund).await {
        Ok(Reply::Done) => {}
        Ok(other) => p.log(&format!("x402: pass {} refund answered {other:?}; the request stays counted", pass.id)),
        Err(e) => p.log(&format!("x402: pass {} refund failed ({e}); the request stays counted", pass.id)),
    }
}

/// How a wallet sign-in ended.
enum SignIn {
    Admitted(AdmittedPass),
    /// The refusal, `code: message`.
    Refused(String),
    Unavailable(String),
}

/// The CAIP-2 ids of the route's EVM networks, once each, in offer order: the chains a wallet
/// may sign in on.
fn sign_in_chains(route: &Route) -> Vec<String> {
    let mut chains: Vec<String> = Vec::new();
    for network in route.accepts.iter().map(|o| &o.requirements.network).filter(|n| n.starts_with("eip155:")) {
        if !chains.contains(network) {
            chains.push(network.clone());
        }
    }
    chains
}

/// The `sign-in-with-x` extension a route's 402 advertises: only with `PUBLIC_URL` and on
/// routes that sell a pass (signing in reuses a pass), for the route's EVM networks, with a
/// nonce issued for this resource ([`siwx::issue_nonce`]).
fn sign_in_extension<P: Platform>(config: &Config, p: &P, route: &Route, canonical: &str) -> Option<Value> {
    let public = config.public_url.as_deref().filter(|_| route.pass.is_some())?;
    let key = config.sign_in_key.as_ref()?;
    let uri = format!("{public}{canonical}");
    let random = p.random32().ok()?;
    let nonce = siwx::issue_nonce(key, &uri, p.now(), [random[0], random[1], random[2], random[3]]);
    Some(json!({ SIGN_IN_WITH_X: siwx::declare(public, &uri, &sign_in_chains(route), &nonce, p.now()) }))
}

/// [`sign_in`] behind the route's `challenge` rate limit for `client` ([`unpaid_work_allowed`]):
/// every attempt counts before anything is decoded, since one reaches the signer's ledger Durable
/// Object; over the limit it is refused (`siwx_rate_limited`) without it.
async fn limited_sign_in<P: Platform>(config: &Config, p: &P, route: &Route, canonical: &str, public: &str, header: &str, client: &str) -> SignIn {
    if !unpaid_work_allowed(p, route, client).await {
        return SignIn::Refused("siwx_rate_limited: too many unpaid requests from this address; retry shortly".into());
    }
    sign_in(config, p, route, canonical, public, header).await
}

/// Verifies a `SIGN-IN-WITH-X` proof and looks for a live pass of the signer's that admits
/// this request: signature and fields bound to this request's `PUBLIC_URL` resource, the
/// route's chains and a nonce issued here ([`siwx::verify`]), the nonce's single use and the
/// payer's passes (its ledger shard), then each pass as [`check_pass`] does.
async fn sign_in<P: Platform>(config: &Config, p: &P, route: &Route, canonical: &str, public: &str, header: &str) -> SignIn {
    let refused = |r: siwx::Refusal| SignIn::Refused(format!("{}: {}", r.reason, r.message));
    let Some(key) = config.sign_in_key.as_ref() else { return SignIn::Unavailable("no SIGN_IN_SECRET".into()) };
    let proof = match siwx::decode(header) {
        Ok(proof) => proof,
        Err(r) => return refused(r),
    };
    let now = p.now();
    let (uri, chains) = (format!("{public}{canonical}"), sign_in_chains(route));
    let binding = siwx::Binding { public_origin: public, uri: &uri, chains: &chains, key };
    let (address, nonce_expires_at) = match siwx::verify(&proof, &binding, now) {
        Ok(verified) => verified,
        Err(r) => return refused(r),
    };
    let op = Op::SignIn { nonce: proof.nonce.clone(), expires_at: nonce_expires_at };
    let passes = match p.ledger(&shard_name(&address), &op).await {
        Ok(Reply::Passes { passes }) => passes,
        Ok(Reply::NonceUsed) => return SignIn::Refused("invalid_siwx_nonce: this sign-in was already used; sign a new challenge".into()),
        Ok(other) => return SignIn::Unavailable(format!("the ledger answered {other:?} to a sign-in")),
        Err(e) => return SignIn::Unavailable(e),
    };
    for id in &passes {
        match check_pass(config, p, route, canonical, id).await {
            PassCheck::Admitted(record) => {
                p.log(&format!("x402: {} signed in with pass {id}", address.to_checksum()));
                return SignIn::Admitted(record);
            }
            PassCheck::Unavailable(e) => return SignIn::Unavailable(e),
            PassCheck::Refused(_) => {}
        }
    }
    SignIn::Refused(format!("siwx_no_pass: {} holds no live pass for this route", address.to_checksum()))
}

/// Sells the route's pass with a paid response, its clock starting now (the payment settled and
/// the response leaving), the paid request counted as the first of `maxRequests`: caches the
/// minted pass's record in this isolate;
/// after the response (`defer`), so the paid response never waits for them, records the sale in
/// the pass's ledger shard ([`Op::PassSold`]) and writes the record to KV (the payer's ledger
/// shard indexed it in the settlement's own write). Sets `X402-Pass`, `X402-Pass-Expires` and the
/// cookie (its `Path` from [`pass::cookie_path`]: never an attribute injected by the path).
fn sell_pass<P: Platform>(p: &Rc<P>, route: &Route, minted: &MintedPass, canonical: &str, settled: &SettleResponse, payer: &str, headers: &mut HeaderMap) {
    let Some(terms) = &route.pass else { return };
    let expires_at = p.now() + terms.ttl_seconds;
    let (scope, scope_value) = PassRecord::scope_fields(&terms.scope, canonical);
    let record = PassRecord {
        payer: payer.to_string(),
        route: route.key.clone(),
        scope,
        scope_value,
        network: settled.network.clone(),
        transaction: settled.transaction.clone(),
        expires_at,
        max_requests: terms.max_requests.map(|n| n.saturating_sub(1)),
        revoked: false,
    };
    let Ok(value) = serde_json::to_string(&record) else { return };
    p.passes().insert(minted.id.clone(), record, p.now());
    let cookie_path = match &terms.scope {
        PassScope::Route => pass::pattern_path(&route.key),
        PassScope::Path => canonical.to_string(),
        PassScope::Group(_) => "/".to_string(),
    };
    set_header(headers, PASS_HEADER, &minted.token);
    set_header(headers, PASS_EXPIRES_HEADER, &expires_at.to_string());
    if let Ok(v) = HeaderValue::from_str(&pass::set_cookie(&minted.token, &cookie_path, terms.ttl_seconds)) {
        headers.append(http::header::SET_COOKIE, v);
    }
    let kv_ttl = terms.ttl_seconds.max(60);
    let id = minted.id.clone();
    let background = Rc::clone(p);
    p.defer(async move {
        // Its ledger shard learns of the sale first, so that a revocation by token finds it
        // wherever it is made, before the record has reached that location's KV. A revocation
        // that came first stays: the shard keeps it, and the tombstone is a key of its own.
        match background.ledger(&pass::shard(&id), &Op::PassSold { expires_at }).await {
            Ok(Reply::Done) => {}
            Ok(other) => background.log(&format!("x402: pass {id} sale not recorded in its ledger shard (answered {other:?})")),
            Err(e) => background.log(&format!("x402: pass {id} sale not recorded in its ledger shard ({e})")),
        }
        if let Err(e) = background.kv_put(&pass::kv_key(&id), value, kv_ttl).await {
            background.log(&format!("x402: pass {id} not written to KV ({e}); it works in this isolate only"));
        }
    });
}

/// What revoking one pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Revocation {
    /// The pass existed and is revoked now.
    Revoked,
    /// The pass existed and was already revoked.
    Already,
    /// Neither KV, this isolate, nor its ledger shard knows the pass (never sold, or sold a
    /// moment ago elsewhere and not recorded yet): tombstoned anyway, counted as not revoked.
    Unknown,
}

/// Longest body the admin endpoint reads, bytes.
const MAX_ADMIN_BODY_BYTES: usize = 4096;

/// Revokes one pass: a tombstone in KV (`revoked:<id>`, until the pass expires; a key no record
/// write touches, read with every record read from KV: every location within KV's propagation
/// plus [`pass::CACHE_SECONDS`]) and in this isolate's cache (at once), and the flag in its
/// ledger shard (at once for counted passes), which also says whether the pass exists. `known`:
/// the pass is known to exist (the payer's index listed it). `unknown_ttl`: the tombstone's
/// lifetime, seconds, when the pass's expiry is not known. Err: KV or the ledger failed (the
/// revocation may be partial; repeating it is safe).
async fn revoke_pass<P: Platform>(p: &P, id: &str, known: bool, unknown_ttl: u64) -> Result<Revocation, String> {
    let now = p.now();
    let record = match p.passes().get(id, now) {
        Some(r) => Some(r),
        None => p.kv_get(&pass::kv_key(id)).await?.and_then(|raw| serde_json::from_str::<PassRecord>(&raw).ok()),
    };
    let fallback = now.saturating_add(unknown_ttl);
    let op = Op::PassRevoke { expires_at: record.as_ref().map_or(fallback, |r| r.expires_at), known: known || record.is_some() };
    let (outcome, shard_expiry) = match p.ledger(&pass::shard(id), &op).await? {
        Reply::PassRevoked { already: false, expires_at } => (Revocation::Revoked, Some(expires_at)),
        Reply::PassRevoked { already: true, expires_at } => (Revocation::Already, Some(expires_at)),
        Reply::PassUnknown => (Revocation::Unknown, None),
        other => return Err(format!("the pass ledger answered {other:?}")),
    };
    let expires_at = record.map(|r| r.expires_at).or(shard_expiry).unwrap_or(fallback);
    p.passes().revoke(id, expires_at, now);
    let tombstone = json!({ "revokedAt": now, "expiresAt": expires_at }).to_string();
    p.kv_put(&pass::tombstone_key(id), tombstone, expires_at.saturating_sub(now).max(60)).await?;
    Ok(outcome)
}

/// What the admin endpoint reads from a request's JSON body.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct AdminBody {
    /// A pass token (43 characters).
    pass: Option<String>,
    /// A payer address (0x, 20 bytes).
    payer: Option<String>,
}

/// The admin endpoint ([`AdminEndpoint`]), with `Authorization: Bearer <ADMIN_TOKEN>` compared
/// in constant time, `POST` only, a JSON body of at most [`MAX_ADMIN_BODY_BYTES`]:
/// - `{path}/revoke` with `{"pass": "<token>"}`: revokes that pass;
/// - `{path}/revoke` with `{"payer": "0x…"}`: revokes the payer's live passes;
/// - `{path}/deny` with `{"payer": "0x…"}`: denies the payer's later payments and revokes its
///   passes.
///
/// `payer` is also read from the query (`?payer=0x…`: an address is not a secret); a token in the
/// query (`?pass=`) is refused with 400, since URLs end up in access logs. Answers 200
/// `{"revoked": n, "alreadyRevoked": n, "unknown": n, "denied": "0x…" | null}`: `revoked` counts
/// the passes this call revoked, `unknown` the tokens nothing knows (never sold, or sold a moment
/// ago elsewhere: tombstoned anyway). 401 without the token, 405 for other methods, 400 for
/// anything else, 503 when KV or the ledger fails.
async fn admin_endpoint<P: Platform>(config: &Config, p: &P, admin: &AdminEndpoint, req: Request<P::Body>, canonical: &str) -> Response<P::Body> {
    let presented = header_str(req.headers(), "authorization").and_then(|v| v.strip_prefix("Bearer ")).unwrap_or("");
    let authorized: bool = subtle::ConstantTimeEq::ct_eq(presented.as_bytes(), admin.token.as_bytes()).into();
    if !authorized {
        let mut res = json_response(StatusCode::UNAUTHORIZED, &json!({ "error": "unauthorized", "message": "the admin endpoint needs Authorization: Bearer <ADMIN_TOKEN>" }), P::body);
        set_header(res.headers_mut(), "www-authenticate", "Bearer");
        return res;
    }
    if req.method() != Method::POST {
        let mut res = json_response(StatusCode::METHOD_NOT_ALLOWED, &json!({ "error": "method_not_allowed", "message": "use POST" }), P::body);
        set_header(res.headers_mut(), "allow", "POST");
        return res;
    }
    let action = canonical[admin.path.len()..].to_string();
    let bad = |m: &str| bad_request("invalid_admin_request", m, P::body);
    let usage = "use POST {ADMIN_PATH}/revoke with {\"pass\": \"<token>\"} or {\"payer\": \"0x…\"}, or /deny with {\"payer\": \"0x…\"}";
    let query = req.uri().query().map(str::to_string);
    if query_param(query.as_deref(), "pass").is_some() {
        return bad("a pass token is not accepted in the query string (URLs end up in access logs): send it in the JSON body, {\"pass\": \"<token>\"}");
    }
    let declared = header_str(req.headers(), "content-length").and_then(|l| l.trim().parse::<usize>().ok());
    if declared.is_some_and(|l| l > MAX_ADMIN_BODY_BYTES) {
        return bad(&format!("the body is larger than {MAX_ADMIN_BODY_BYTES} bytes"));
    }
    let raw = match p.read_body(req.into_body(), MAX_ADMIN_BODY_BYTES).await {
        Ok(raw) => raw,
        Err(e) => return bad(&format!("the body could not be read: {e}")),
    };
    let body: AdminBody = if raw.iter().all(u8::is_ascii_whitespace) {
        AdminBody::default()
    } else {
        match serde_json::from_slice(&raw) {
            Ok(b) => b,
            Err(e) => return bad(&format!("the body is not the expected JSON ({e}); {usage}")),
        }
    };
    let payer = match body.payer.or_else(|| query_param(query.as_deref(), "payer")) {
        Some(a) => match Address::parse(&a) {
            Some(addr) => Some(addr),
            None => return bad("payer must be a 0x-prefixed 20-byte address"),
        },
        None => None,
    };
    let (passes, known) = match (action.as_str(), body.pass, payer) {
        ("/revoke", Some(token), None) => match pass::pass_id(&token) {
            Some(id) => (vec![id], false),
            None => return bad("pass must be a pass token (43 characters)"),
        },
        ("/revoke", None, Some(addr)) | ("/deny", None, Some(addr)) => {
            let op = if action == "/deny" { Op::PayerDeny } else { Op::PayerPasses };
            match p.ledger(&shard_name(&addr), &op).await {
                Ok(Reply::Passes { passes }) => (passes, true),
                Ok(other) => return ledger_unavailable::<P>(p, &format!("the ledger answered {other:?}"), &Trace::default()),
                Err(e) => return ledger_unavailable::<P>(p, &e, &Trace::default()),
            }
        }
        _ => return bad(usage),
    };
    // A token nothing knows may belong to a sale a moment ago: its tombstone lasts as long as
    // the longest pass a route sells.
    let unknown_ttl = config.routes.iter().filter_map(|r| r.pass.as_ref()).map(|t| t.ttl_seconds).max().unwrap_or(crate::config::MAX_PASS_TTL_SECONDS);
    let (mut revoked, mut already, mut unknown) = (0u32, 0u32, 0u32);
    for id in &passes {
        match revoke_pass(p, id, known, unknown_ttl).await {
            Ok(Revocation::Revoked) => revoked += 1,
            Ok(Revocation::Already) => already += 1,
            Ok(Revocation::Unknown) => unknown += 1,
            Err(e) => return ledger_unavailable::<P>(p, &format!("revoking pass {id}: {e}; {revoked} revoked before it"), &Trace::default()),
        }
    }
    let who = payer.map(|a| format!(" for {}", a.to_checksum())).unwrap_or_default();
    p.log(&format!("x402: admin {action}: {revoked} pass(es) revoked, {already} already revoked, {unknown} unknown{who}"));
    let denied = (action == "/deny").then(|| payer.map(|a| a.to_checksum())).flatten();
    json_response(StatusCode::OK, &json!({ "revoked": revoked, "alreadyRevoked": already, "unknown": unknown, "denied": denied }), P::body)
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
