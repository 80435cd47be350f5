//! The request pipeline, generic over a [`Platform`] (HTTP client, KV, clock, randomness), so
//! the whole flow runs natively in tests and on the edge through the thin `edge` glue.
//!
//! Order (x402 v2 reference middleware, with local verification and sessions):
//! 1. canonicalise the path (400 if ambiguous) and match the price table; no match → proxy;
//! 2. a live session token for this route → proxy without payment;
//! 3. no `PAYMENT-SIGNATURE` → 402 challenge;
//! 4. verify locally ([`crate::exact`]); failure → 402 with the reason, facilitator not called;
//!    a non-65-byte (smart-wallet) signature → facilitator `/verify` first;
//! 5. forward to the origin; unreachable → 502, status >= 400 → passed through, not settled;
//! 6. `/settle`; success → origin response + `PAYMENT-RESPONSE` + session token;
//!    `success: false` → 402, content withheld; no usable answer → 502/504 "payment outcome
//!    unknown" naming the payment (payer, nonce), content withheld, never a fresh challenge.

use http::header::{HeaderName, HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use serde_json::{json, Value};

use crate::config::{Config, CorsPolicy, Route};
use crate::evm::hex_0x;
use crate::exact::{verify_exact, Verified};
use crate::facilitator::{classify_settle, classify_verify, request_body, HttpReply, SettleOutcome, UpstreamError, VerifyOutcome};
use crate::route::{canonicalize, match_segments};
use crate::session::{kv_key, token_from_random, SessionCache, SessionRecord, SESSION_EXPIRES_HEADER, SESSION_HEADER};
use crate::x402::{
    decode_payment_signature, decode_x_payment, encode_header, PaymentPayload, PaymentRequired, PaymentRequiredV1, ResourceInfo, SettleResponse,
    PAYMENT_REQUIRED, PAYMENT_RESPONSE, PAYMENT_SIGNATURE, X402_VERSION, X_PAYMENT, X_PAYMENT_RESPONSE,
};

/// Request headers that belong to the paywall and are never forwarded to the origin.
const PAYWALL_REQUEST_HEADERS: [&str; 3] = [PAYMENT_SIGNATURE, X_PAYMENT, SESSION_HEADER];

/// What the pipeline needs from its host. Implemented over `worker::*` on the edge and by
/// in-memory fakes in tests. Every call that leaves the isolate takes a time limit.
#[allow(async_fn_in_trait)]
pub trait Platform {
    /// An HTTP body; the origin's bodies pass through opaque (streamed on the edge).
    type Body;
    /// A body holding `bytes`.
    fn body(bytes: Vec<u8>) -> Self::Body;
    /// Sends `req` (absolute URI) to the origin, without following redirects.
    async fn origin(&self, req: Request<Self::Body>, timeout_seconds: u64) -> Result<Response<Self::Body>, UpstreamError>;
    /// `POST url` with a JSON body; reads at most [`crate::facilitator::MAX_REPLY_BYTES`].
    async fn post_json(&self, url: &str, authorization: Option<&str>, json: String, timeout_seconds: u64) -> Result<HttpReply, UpstreamError>;
    async fn kv_get(&self, key: &str) -> Result<Option<String>, String>;
    async fn kv_put(&self, key: &str, value: String, ttl_seconds: u64) -> Result<(), String>;
    /// Unix time, seconds.
    fn now(&self) -> u64;
    /// 32 bytes from a CSPRNG.
    fn random32(&self) -> Result<[u8; 32], String>;
    /// One log line (Workers logs on the edge).
    fn log(&self, line: &str);
    /// This isolate's cache of session records.
    fn sessions(&self) -> &SessionCache;
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

/// Response headers a browser client must be able to read.
const EXPOSED_HEADERS: &str = "PAYMENT-REQUIRED, PAYMENT-RESPONSE, X-PAYMENT-RESPONSE, X402-Session, X402-Session-Expires";

fn bad_request<B>(error: &str, message: &str, body: impl FnOnce(Vec<u8>) -> B) -> Response<B> {
    json_response(StatusCode::BAD_REQUEST, &json!({ "error": error, "message": message }), body)
}

/// Handles one request.
pub async fn handle<P: Platform>(config: &Config, p: &P, req: Request<P::Body>) -> Response<P::Body> {
    if let Some(h) = METHOD_OVERRIDE_HEADERS.iter().find(|h| req.headers().contains_key(**h)) {
        return bad_request("method_override_refused", &format!("the `{h}` header is not accepted: send the real method"), P::body);
    }
    let canonical = match canonicalize(req.uri().path()) {
        Ok(c) => c,
        Err(e) => return bad_request("invalid_path", &e.to_string(), P::body),
    };
    let segments = match_segments(&canonical);

    if req.method() == Method::OPTIONS && config.cors != CorsPolicy::Off {
        let requested = header_str(req.headers(), "access-control-request-method").and_then(|m| Method::from_bytes(m.as_bytes()).ok());
        if let Some(m) = requested {
            if config.route_for(&m, &segments).is_some_and(|r| !r.is_free()) {
                return preflight::<P>(config, req.headers());
            }
        }
    }
    let route = match config.route_for(req.method(), &segments) {
        Some(r) if !r.is_free() => r,
        _ => return forward(config, p, req, &canonical).await.unwrap_or_else(|r| r),
    };
    let allow_origin = allowed_origin(config, req.headers());
    let res = priced(config, p, route, req, &canonical).await;
    decorate(res, config, allow_origin)
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
    append_vary(h, "PAYMENT-SIGNATURE, X-PAYMENT, X402-Session");
    res
}

/// Answers a CORS preflight for a priced route (204).
fn preflight<P: Platform>(config: &Config, headers: &HeaderMap) -> Response<P::Body> {
    let mut res = Response::new(P::body(Vec::new()));
    *res.status_mut() = StatusCode::NO_CONTENT;
    let h = res.headers_mut();
    if let Some(o) = allowed_origin(config, headers) {
        h.insert(http::header::ACCESS_CONTROL_ALLOW_ORIGIN, o);
        if let Some(m) = headers.get("access-control-request-method") {
            h.insert(http::header::ACCESS_CONTROL_ALLOW_METHODS, m.clone());
        }
        let requested = headers.get("access-control-request-headers").cloned();
        h.insert(
            http::header::ACCESS_CONTROL_ALLOW_HEADERS,
            requested.unwrap_or(HeaderValue::from_static("PAYMENT-SIGNATURE, X-PAYMENT, X402-Session, Content-Type")),
        );
        h.insert(http::header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
    }
    append_vary(h, "Origin, Access-Control-Request-Method, Access-Control-Request-Headers");
    res
}

/// The payment flow of a priced route.
async fn priced<P: Platform>(config: &Config, p: &P, route: &Route, req: Request<P::Body>, canonical: &str) -> Response<P::Body> {
    // A live session for this route: no payment.
    if let Some(record) = live_session(p, &req, route).await {
        return match forward(config, p, req, canonical).await {
            Ok(mut res) => {
                set_header(res.headers_mut(), SESSION_EXPIRES_HEADER, &record.expires_at.to_string());
                res.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
                res
            }
            Err(r) => r,
        };
    }

    let resource_url = req.uri().to_string();
    let (header, version) = match (header_str(req.headers(), PAYMENT_SIGNATURE), header_str(req.headers(), X_PAYMENT)) {
        (Some(h), _) => (h, X402_VERSION),
        (None, Some(h)) => (h, 1),
        (None, None) => {
            let reason = if req.headers().contains_key(SESSION_HEADER) {
                "x402-session token is unknown, expired, or for another route; PAYMENT-SIGNATURE header is required"
            } else {
                "PAYMENT-SIGNATURE header is required"
            };
            return challenge::<P>(route, &resource_url, reason);
        }
    };
    let decoded = if version == 1 { decode_x_payment(header) } else { decode_payment_signature(header) };
    let payment = match decoded {
        Ok(pp) => pp,
        Err(e) => {
            p.log(&format!("x402: rejected payment header: {e}"));
            return challenge::<P>(route, &resource_url, &format!("{}: {e}", e.reason()));
        }
    };
    let verified = match verify_exact(&route.accepts, &payment, p.now()) {
        Ok(v) => v,
        Err(inv) => {
            p.log(&format!("x402: rejected payment: {}: {}", inv.reason, inv.message));
            return challenge::<P>(route, &resource_url, &format!("{}: {}", inv.reason, inv.message));
        }
    };
    // The requirement in the payment's own protocol version, for /verify and /settle.
    let requirements = if version == 1 {
        let v1 = verified.offer.requirements_v1(&resource_url, route.description.as_deref(), route.mime_type.as_deref());
        serde_json::to_value(v1).unwrap_or(Value::Null)
    } else {
        verified.offer.requirements_json.clone()
    };
    if !verified.signature_checked {
        match classify_verify(call_facilitator(config, p, "verify", &payment, &requirements).await) {
            VerifyOutcome::Valid => {}
            VerifyOutcome::Invalid { reason } => return challenge::<P>(route, &resource_url, &reason),
            VerifyOutcome::Unknown { timed_out, detail } => {
                p.log(&format!("x402: verify failed: {detail}"));
                return json_response(upstream_status(timed_out), &json!({ "error": "facilitator_unavailable", "message": format!("could not verify the payment: {detail}; nothing was charged") }), P::body);
            }
        }
    }

    let origin_res = match forward(config, p, req, canonical).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    if origin_res.status().as_u16() >= 400 {
        return origin_res;
    }
    settle_and_release(config, p, route, &payment, &requirements, &verified, origin_res).await
}

async fn live_session<P: Platform>(p: &P, req: &Request<P::Body>, route: &Route) -> Option<SessionRecord> {
    if route.session_ttl_seconds == 0 {
        return None;
    }
    let key = kv_key(header_str(req.headers(), SESSION_HEADER)?)?;
    let now = p.now();
    if let Some(record) = p.sessions().get(&key) {
        return record.admits(&route.key, now).then_some(record);
    }
    let raw = match p.kv_get(&key).await {
        Ok(v) => v?,
        Err(e) => {
            p.log(&format!("x402: session lookup failed: {e}"));
            return None;
        }
    };
    let record: SessionRecord = serde_json::from_str(&raw).ok()?;
    p.sessions().insert(key, record.clone(), now);
    record.admits(&route.key, now).then_some(record)
}

/// The 402 challenge: the v2 `PaymentRequired` in `PAYMENT-REQUIRED`, and as JSON body the v1
/// `PaymentRequirementsResponse` (what legacy v1 clients read; v2 clients read only the header),
/// or the v2 JSON when no offer of the route can be paid in v1.
fn challenge<P: Platform>(route: &Route, resource_url: &str, error: &str) -> Response<P::Body> {
    let pr = PaymentRequired {
        x402_version: X402_VERSION,
        error: error.to_string(),
        resource: ResourceInfo { url: resource_url.to_string(), description: route.description.clone(), mime_type: route.mime_type.clone() },
        accepts: route.accepts.iter().map(|o| o.requirements.clone()).collect(),
    };
    let v1_accepts: Vec<_> = route
        .accepts
        .iter()
        .filter_map(|o| o.requirements_v1(resource_url, route.description.as_deref(), route.mime_type.as_deref()))
        .collect();
    let body = if v1_accepts.is_empty() {
        serde_json::to_value(&pr)
    } else {
        serde_json::to_value(PaymentRequiredV1 { x402_version: 1, error: error.to_string(), accepts: v1_accepts })
    };
    let mut res = json_response(StatusCode::PAYMENT_REQUIRED, &body.unwrap_or(Value::Null), P::body);
    set_header(res.headers_mut(), PAYMENT_REQUIRED, &encode_header(&pr));
    res
}

/// The origin URL for a canonical path and the request's query: the configured origin's path
/// prefix (without trailing `/`) followed by the canonical path.
fn origin_url(config: &Config, canonical: &str, query: Option<&str>) -> String {
    let mut url = String::with_capacity(config.origin.len() + canonical.len() + query.map_or(0, |q| q.len() + 1));
    url.push_str(&config.origin);
    url.push_str(canonical);
    if let Some(q) = query {
        url.push('?');
        url.push_str(q);
    }
    url
}

/// Forwards the request to the origin on its canonical path, minus the paywall's own headers.
/// Err is the response to send instead (502/504).
async fn forward<P: Platform>(config: &Config, p: &P, req: Request<P::Body>, canonical: &str) -> Result<Response<P::Body>, Response<P::Body>> {
    let (mut parts, body) = req.into_parts();
    let url = origin_url(config, canonical, parts.uri.query());
    parts.uri = match url.parse() {
        Ok(u) => u,
        Err(_) => return Err(json_response(StatusCode::BAD_REQUEST, &json!({ "error": "invalid_url" }), P::body)),
    };
    for h in PAYWALL_REQUEST_HEADERS {
        parts.headers.remove(h);
    }
    parts.headers.remove(http::header::HOST);
    match p.origin(Request::from_parts(parts, body), config.origin_timeout_seconds).await {
        Ok(res) => Ok(res),
        Err(e) => {
            p.log(&format!("x402: origin {e}"));
            let status = upstream_status(matches!(e, UpstreamError::Timeout { .. }));
            Err(json_response(status, &json!({ "error": "origin_unavailable", "message": format!("origin {e}; no payment was taken") }), P::body))
        }
    }
}

/// Settles a verified payment after the origin answered < 400, then releases or withholds the
/// origin's response.
async fn settle_and_release<P: Platform>(
    config: &Config,
    p: &P,
    route: &Route,
    payment: &PaymentPayload,
    requirements: &Value,
    verified: &Verified<'_>,
    origin_res: Response<P::Body>,
) -> Response<P::Body> {
    let response_header = if payment.version == 1 { X_PAYMENT_RESPONSE } else { PAYMENT_RESPONSE };
    let reply = call_facilitator(config, p, "settle", payment, requirements).await;
    let payer = verified.payer.to_checksum();
    let nonce = hex_0x(&verified.nonce);
    match classify_settle(reply) {
        SettleOutcome::Settled(settled) => {
            p.log(&format!("x402: settled {} {} from {payer} tx {}", route.key, verified.offer.requirements.amount, settled.transaction));
            let mut res = origin_res;
            let session = mint_session(p, route, &settled, &payer, &verified.offer.requirements.network).await;
            let h = res.headers_mut();
            set_header(h, response_header, &encode_header(&with_payer(settled, &payer)));
            h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            if let Some((token, expires_at)) = session {
                set_header(h, SESSION_HEADER, &token);
                set_header(h, SESSION_EXPIRES_HEADER, &expires_at.to_string());
            }
            res
        }
        SettleOutcome::Refused(refused) => {
            let reason = refused.error_reason.clone().unwrap_or_else(|| "settlement_failed".into());
            p.log(&format!("x402: settlement refused for {payer} nonce {nonce}: {reason}"));
            let value = json!({ "error": reason, "message": "the facilitator refused to settle this payment; nothing was charged and the content is withheld" });
            let mut res = json_response(StatusCode::PAYMENT_REQUIRED, &value, P::body);
            set_header(res.headers_mut(), response_header, &encode_header(&with_payer(refused, &payer)));
            res
        }
        SettleOutcome::Unknown { timed_out, detail } => {
            p.log(&format!("x402: settlement outcome unknown for {payer} nonce {nonce}: {detail}"));
            let status = upstream_status(timed_out);
            let value = json!({
                "error": "settlement_outcome_unknown",
                "message": format!("{detail}. The payment may or may not have been executed; the content is withheld. Retry with the same PAYMENT-SIGNATURE: it can be settled at most once."),
                "payment": { "payer": payer, "nonce": nonce, "network": verified.offer.requirements.network, "asset": verified.offer.requirements.asset, "amount": verified.offer.requirements.amount },
            });
            json_response(status, &value, P::body)
        }
    }
}

/// `POST {facilitator}/{endpoint}` (`verify` or `settle`) with the payment in its own version.
async fn call_facilitator<P: Platform>(config: &Config, p: &P, endpoint: &str, payment: &PaymentPayload, requirements: &Value) -> Result<HttpReply, UpstreamError> {
    let url = format!("{}/{endpoint}", config.facilitator_url);
    let body = request_body(payment.version, &payment.raw, requirements);
    p.post_json(&url, config.facilitator_auth.as_deref(), body, config.facilitator_timeout_seconds).await
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

/// Stores a session for a settled payment; `None` (and a log line) if sessions are off for the
/// route or KV/randomness failed — the paid response is sent either way.
async fn mint_session<P: Platform>(p: &P, route: &Route, settled: &SettleResponse, payer: &str, network: &str) -> Option<(String, u64)> {
    if route.session_ttl_seconds == 0 {
        return None;
    }
    let random = match p.random32() {
        Ok(r) => r,
        Err(e) => {
            p.log(&format!("x402: no session minted, randomness failed: {e}"));
            return None;
        }
    };
    let token = token_from_random(&random);
    let expires_at = p.now() + route.session_ttl_seconds;
    let record = SessionRecord {
        payer: payer.to_string(),
        scope: route.key.clone(),
        network: network.to_string(),
        transaction: settled.transaction.clone(),
        expires_at,
    };
    let key = kv_key(&token)?;
    let value = serde_json::to_string(&record).ok()?;
    match p.kv_put(&key, value, route.session_ttl_seconds).await {
        Ok(()) => {
            p.sessions().insert(key, record, p.now());
            Some((token, expires_at))
        }
        Err(e) => {
            p.log(&format!("x402: no session minted, KV put failed: {e}"));
            None
        }
    }
}

/// Whether `method` may carry a body worth streaming (used by the edge glue).
pub fn method_has_body(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD)
}
