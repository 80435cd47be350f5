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

use crate::config::{Config, Route};
use crate::evm::hex_0x;
use crate::exact::{verify_exact, Verified};
use crate::facilitator::{classify_settle, classify_verify, request_body, HttpReply, SettleOutcome, UpstreamError, VerifyOutcome};
use crate::route::{canonicalize, match_segments};
use crate::session::{kv_key, token_from_random, SessionRecord, SESSION_EXPIRES_HEADER, SESSION_HEADER};
use crate::x402::{
    decode_payment_signature, encode_header, PaymentPayload, PaymentRequired, ResourceInfo, SettleResponse, PAYMENT_REQUIRED,
    PAYMENT_RESPONSE, PAYMENT_SIGNATURE, X402_VERSION, X_PAYMENT,
};

/// Time limit for the origin to start answering, in seconds.
pub const ORIGIN_TIMEOUT_SECONDS: u64 = 30;
/// Time limit for a facilitator call (`/settle` waits for the on-chain receipt), in seconds.
pub const FACILITATOR_TIMEOUT_SECONDS: u64 = 30;

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

/// Handles one request.
pub async fn handle<P: Platform>(config: &Config, p: &P, req: Request<P::Body>) -> Response<P::Body> {
    let canonical = match canonicalize(req.uri().path()) {
        Ok(c) => c,
        Err(e) => return json_response(StatusCode::BAD_REQUEST, &json!({ "error": "invalid_path", "message": e.to_string() }), P::body),
    };
    let segments = match_segments(&canonical);
    let Some(route) = config.route_for(req.method(), &segments) else {
        return forward(config, p, req, &canonical).await.unwrap_or_else(|r| r);
    };

    // A live session for this route: no payment.
    if let Some(record) = live_session(p, &req, route).await {
        return match forward(config, p, req, &canonical).await {
            Ok(mut res) => {
                set_header(res.headers_mut(), SESSION_EXPIRES_HEADER, &record.expires_at.to_string());
                res.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
                res
            }
            Err(r) => r,
        };
    }

    let resource_url = req.uri().to_string();
    let Some(header) = header_str(req.headers(), PAYMENT_SIGNATURE) else {
        let reason = if req.headers().contains_key(SESSION_HEADER) {
            "x402-session token is unknown, expired, or for another route; PAYMENT-SIGNATURE header is required"
        } else {
            "PAYMENT-SIGNATURE header is required"
        };
        return challenge::<P>(route, &resource_url, reason);
    };
    let payment = match decode_payment_signature(header) {
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
    if !verified.signature_checked {
        let body = request_body(&payment.raw, &verified.offer.requirements_json);
        let url = format!("{}/verify", config.facilitator_url);
        let reply = p.post_json(&url, config.facilitator_auth.as_deref(), body, FACILITATOR_TIMEOUT_SECONDS).await;
        match classify_verify(reply) {
            VerifyOutcome::Valid => {}
            VerifyOutcome::Invalid { reason } => return challenge::<P>(route, &resource_url, &reason),
            VerifyOutcome::Unknown { timed_out, detail } => {
                p.log(&format!("x402: verify failed: {detail}"));
                let status = if timed_out { StatusCode::GATEWAY_TIMEOUT } else { StatusCode::BAD_GATEWAY };
                return json_response(status, &json!({ "error": "facilitator_unavailable", "message": format!("could not verify the payment: {detail}; nothing was charged") }), P::body);
            }
        }
    }

    let origin_res = match forward(config, p, req, &canonical).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    if origin_res.status().as_u16() >= 400 {
        return origin_res;
    }
    settle_and_release(config, p, route, &payment, &verified, origin_res).await
}

async fn live_session<P: Platform>(p: &P, req: &Request<P::Body>, route: &Route) -> Option<SessionRecord> {
    if route.session_ttl_seconds == 0 {
        return None;
    }
    let key = kv_key(header_str(req.headers(), SESSION_HEADER)?)?;
    let raw = match p.kv_get(&key).await {
        Ok(v) => v?,
        Err(e) => {
            p.log(&format!("x402: session lookup failed: {e}"));
            return None;
        }
    };
    let record: SessionRecord = serde_json::from_str(&raw).ok()?;
    record.admits(&route.key, p.now()).then_some(record)
}

/// The 402 challenge: `PAYMENT-REQUIRED` header and the same `PaymentRequired` as JSON body.
fn challenge<P: Platform>(route: &Route, resource_url: &str, error: &str) -> Response<P::Body> {
    let pr = PaymentRequired {
        x402_version: X402_VERSION,
        error: error.to_string(),
        resource: ResourceInfo { url: resource_url.to_string(), description: route.description.clone(), mime_type: route.mime_type.clone() },
        accepts: route.accepts.iter().map(|o| o.requirements.clone()).collect(),
    };
    let value = serde_json::to_value(&pr).unwrap_or(Value::Null);
    let mut res = json_response(StatusCode::PAYMENT_REQUIRED, &value, P::body);
    set_header(res.headers_mut(), PAYMENT_REQUIRED, &encode_header(&pr));
    res
}

/// The origin URL for a canonical path and the request's query: the configured origin's path
/// prefix (without trailing `/`) followed by the canonical path.
fn origin_url(config: &Config, canonical: &str, query: Option<&str>) -> String {
    let o = &config.origin;
    let mut url = format!("{}://{}", o.scheme(), o.host_str().unwrap_or_default());
    if let Some(port) = o.port() {
        url.push(':');
        url.push_str(&port.to_string());
    }
    url.push_str(o.path().trim_end_matches('/'));
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
    match p.origin(Request::from_parts(parts, body), ORIGIN_TIMEOUT_SECONDS).await {
        Ok(res) => Ok(res),
        Err(e) => {
            p.log(&format!("x402: origin {e}"));
            let status = if matches!(e, UpstreamError::Timeout { .. }) { StatusCode::GATEWAY_TIMEOUT } else { StatusCode::BAD_GATEWAY };
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
    verified: &Verified<'_>,
    origin_res: Response<P::Body>,
) -> Response<P::Body> {
    let body = request_body(&payment.raw, &verified.offer.requirements_json);
    let url = format!("{}/settle", config.facilitator_url);
    let reply = p.post_json(&url, config.facilitator_auth.as_deref(), body, FACILITATOR_TIMEOUT_SECONDS).await;
    let payer = verified.payer.to_checksum();
    let nonce = hex_0x(&verified.nonce);
    match classify_settle(reply) {
        SettleOutcome::Settled(settled) => {
            p.log(&format!("x402: settled {} {} from {payer} tx {}", route.key, verified.offer.requirements.amount, settled.transaction));
            let mut res = origin_res;
            let session = mint_session(p, route, &settled, &payer, &verified.offer.requirements.network).await;
            let h = res.headers_mut();
            set_header(h, PAYMENT_RESPONSE, &encode_header(&with_payer(settled, &payer)));
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
            set_header(res.headers_mut(), PAYMENT_RESPONSE, &encode_header(&with_payer(refused, &payer)));
            res
        }
        SettleOutcome::Unknown { timed_out, detail } => {
            p.log(&format!("x402: settlement outcome unknown for {payer} nonce {nonce}: {detail}"));
            let status = if timed_out { StatusCode::GATEWAY_TIMEOUT } else { StatusCode::BAD_GATEWAY };
            let value = json!({
                "error": "settlement_outcome_unknown",
                "message": format!("{detail}. The payment may or may not have been executed; the content is withheld. Retry with the same PAYMENT-SIGNATURE: it can be settled at most once."),
                "payment": { "payer": payer, "nonce": nonce, "network": verified.offer.requirements.network, "asset": verified.offer.requirements.asset, "amount": verified.offer.requirements.amount },
            });
            json_response(status, &value, P::body)
        }
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
        Ok(()) => Some((token, expires_at)),
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
