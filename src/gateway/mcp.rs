//! An MCP server's endpoint ([`serve`]): Streamable HTTP (MCP 2025-06-18) proxied to the origin,
//! with `tools/call` priced by x402's MCP transport (docs/mcp.md).
//!
//! - `GET` (the server's stream), `HEAD`, `DELETE`, `OPTIONS`, or a server with nothing priced or
//!   denied: forwarded untouched and streamed (the unpriced pass-through), `Mcp-Session-Id` and
//!   `MCP-Protocol-Version` with it; on a priced server without `Last-Event-ID` (no stream is
//!   resumed: that would replay paid results), and `_method` in the query refused (400).
//! - A POST (or any other method, which might carry a message too): its body read (at most [`MAX_MESSAGE_BYTES`]) and classified
//!   ([`crate::mcp::classify`]); what is refused gets a JSON-RPC error and never reaches the
//!   origin. Messages other than `tools/call` and `tools/list` are forwarded untouched.
//! - `tools/call` of a free tool: untouched; of a denied one: a JSON-RPC error; of a priced one:
//!   the HTTP payment flow of a route ([`super::pay::priced`]) with the payment from
//!   `_meta["x402/payment"]` as its `PAYMENT-SIGNATURE` and the call without it, under an id of
//!   the paywall's own (no other message of the client's can name it), as the request,
//!   over [`ToolOrigin`] (a tool error is not charged); its answers translated back: settled → the
//!   tool's response with `_meta["x402/payment-response"]`; a 402 → the `PaymentRequired` tool
//!   result; any other refusal (in flight, ledger or facilitator unavailable, unknown outcome) →
//!   a JSON-RPC error whose `data` is the HTTP answer's JSON.
//! - Passes and sign-in: the route's flow checks them first ([`super::passes::admit_on_pass`]),
//!   with `_meta["x402/pass"]` as its `X402-Pass` and `_meta["x402/sign-in-with-x"]` as its
//!   `SIGN-IN-WITH-X` (or the request's own headers); a call admitted runs over the same
//!   [`ToolOrigin`] without payment. A pass a paid call bought, and a pass's expiry, come back in
//!   `result._meta["x402/pass"]` / `["x402/pass-expires"]` ([`pass_meta`]), not in headers.
//! - `tools/list`: the origin's result with each priced tool's `PaymentRequired` in its `_meta`
//!   (and the `agents-x402/…` keys Cloudflare's `agents` client reads) and denied tools left out.
//!
//! An SSE answer to a paid call is relayed where the platform can ([`super::Origin::relay`], the
//! edge): its other events (progress notifications) reach the client as they come, and the
//! response to the call is held until settlement decides what the last event says. Elsewhere (the
//! host fakes' default) it is read whole and sent at once.

use std::cell::RefCell;
use std::future::Future;
use std::rc::Rc;
use std::task::Poll;

use base64::Engine;
use http::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, SET_COOKIE};
use http::request::Parts;
use http::{Method, Request, Response, StatusCode};
use serde_json::{json, Map, Value};

use crate::config::{Config, McpServer, Mode, Route, ToolPrice};
use crate::mcp::answer::{events, find, is_event_stream, price_tools, replace, with_payment_response, Format};
use crate::mcp::{classify, code, error_response, payment_required_result, for_origin, Message, ToolCall, AGENTS_PAID_META, AGENTS_PRICE_META, MAX_ANSWER_BYTES, MAX_MESSAGE_BYTES, PASS_EXPIRES_META, PASS_META, PRICE_META, TOOL_RESOURCE_PREFIX};
use crate::pass::{PASS_COOKIE, PASS_EXPIRES_HEADER, PASS_HEADER};
use crate::telemetry::Trace;
use crate::x402::siwx::SIGN_IN_WITH_X;
use crate::x402::{PAYMENT_REQUIRED, PAYMENT_RESPONSE, PAYMENT_SIGNATURE, X_PAYMENT, X_PAYMENT_RESPONSE};

use super::challenge::challenge_values;
use super::forward::{forward, origin_failure, prepare_forward};
use super::limits::{client_limit_key, failed_attempt_limit};
use super::mcp_origin::{Slot, ToolOrigin, ToolVerdict};
use super::pay::{priced, Paying};
use super::platform::{Platform, PlatformError};
use super::refusal::Refusal;
use super::{cold, header_str, json_response};

/// The header with which a client resumes an SSE stream after an event (WHATWG HTML, server-sent
/// events; MCP's resumability).
const LAST_EVENT_ID: &str = "last-event-id";

/// Answers one request to the MCP server `server` (its path is `canonical`).
pub(super) async fn serve<P: Platform>(config: &Rc<Config>, p: &Rc<P>, server: &McpServer, mut req: Request<P::Body>, canonical: &str) -> Response<P::Body> {
    let enforced = server.is_priced() && config.mode != Mode::Shadow;
    if enforced {
        if super::has_method_override_param(req.uri().query()) {
            return Refusal::MethodOverride("the `_method` query parameter is not accepted on a priced MCP server: send the real method".into()).json(P::body);
        }
        // No stream is resumed on a priced server: an origin that keeps an event store would
        // replay a paid call's events, its result among them, to a GET naming an earlier event,
        // whatever became of the payment (MCP 2025-06-18 "Resumability and Redelivery").
        req.headers_mut().remove(LAST_EVENT_ID);
    }
    // Whatever may carry a message in its body is read: not only an exact `POST`.
    let bodiless = matches!(*req.method(), Method::GET | Method::HEAD | Method::DELETE | Method::OPTIONS);
    if bodiless || !enforced {
        return untouched(config, p, req, canonical).await;
    }
    let (mut parts, body) = req.into_parts();
    // The message is judged as UTF-8 JSON, so the origin must read it the same way: an encoded
    // body is refused, and the content type is forwarded without its parameters (a `charset`
    // such as utf-7 would let the origin decode another method than the one judged here).
    let encoded = parts.headers.get_all(http::header::CONTENT_ENCODING).iter().any(|v| !v.as_bytes().trim_ascii().eq_ignore_ascii_case(b"identity"));
    if encoded {
        let message = "an encoded message (Content-Encoding) is not accepted on this priced server: send it as plain JSON";
        return rpc::<P>(StatusCode::UNSUPPORTED_MEDIA_TYPE, &error_response(&Value::Null, code::INVALID_REQUEST, message, None));
    }
    parts.headers.remove(http::header::CONTENT_ENCODING);
    parts.headers.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    let bytes = match p.read_body(body, MAX_MESSAGE_BYTES).await {
        Ok(b) => b,
        Err(PlatformError::TooLarge(_)) => {
            let message = format!("the message is larger than {MAX_MESSAGE_BYTES} bytes");
            return rpc::<P>(StatusCode::PAYLOAD_TOO_LARGE, &error_response(&Value::Null, code::INVALID_REQUEST, &message, None));
        }
        Err(e) => return rpc::<P>(StatusCode::BAD_REQUEST, &error_response(&Value::Null, code::INVALID_REQUEST, &format!("the message could not be read: {e}"), None)),
    };
    let message = match classify(&bytes) {
        Ok(m) => m,
        Err(refused) => {
            p.log(&format!("x402: mcp message refused: {}", refused.message));
            let status = if refused.id.is_null() { StatusCode::BAD_REQUEST } else { StatusCode::OK };
            return rpc::<P>(status, &refused.to_json());
        }
    };
    match message {
        Message::Other => untouched(config, p, Request::from_parts(parts, P::body(bytes)), canonical).await,
        Message::ToolsList { id } => cold(list_tools(config, p, server, Request::from_parts(parts, P::body(bytes)), canonical, id)).await,
        Message::ToolCall(call) => match server.tool(&call.name) {
            ToolPrice::Free => untouched(config, p, Request::from_parts(parts, P::body(bytes)), canonical).await,
            ToolPrice::Deny => {
                p.log(&format!("x402: mcp tool {:?} denied", call.name));
                rpc::<P>(StatusCode::OK, &error_response(&call.id, code::TOOL_DENIED, &format!("tool {:?} is not offered here", call.name), None))
            }
            ToolPrice::Priced(_) if call.task => {
                let message = "a task-augmented call (params.task) of a priced tool is not accepted: call it without task";
                rpc::<P>(StatusCode::OK, &error_response(&call.id, code::INVALID_PARAMS, message, None))
            }
            ToolPrice::Priced(route) => cold(paid_call(config, p, route, call, parts, bytes, canonical)).await,
        },
    }
}

/// Forwards as is (the unpriced pass-through: streamed).
async fn untouched<P: Platform>(config: &Rc<Config>, p: &Rc<P>, req: Request<P::Body>, canonical: &str) -> Response<P::Body> {
    match prepare_forward(config, req, canonical) {
        Ok((req, rewrite)) => p.pass_through(req, config.origin_timeout_seconds, rewrite).await,
        Err(e) => origin_failure::<P>(&**p, &e, None),
    }
}

/// A JSON-RPC message as the answer.
fn rpc<P: Platform>(status: StatusCode, message: &Value) -> Response<P::Body> {
    json_response(status, message, P::body)
}

/// The request the payment flow sees: the call as the origin gets it ([`for_origin`]: the id
/// `origin_id`, without the paywall's `_meta` carriers), the payment from `_meta` as
/// `PAYMENT-SIGNATURE` (a payment header of the HTTP request is dropped: a tool's payment travels
/// in `_meta`), a pass token from `_meta["x402/pass"]` as `X402-Pass` (else the request's own
/// `X402-Pass` header or pass cookie, as on a route), a sign-in proof from
/// `_meta["x402/sign-in-with-x"]` as `SIGN-IN-WITH-X` (else the request's header). None of these
/// headers reaches the origin ([`prepare_forward`] removes them and the pass cookie).
fn payment_request<B>(mut parts: Parts, call: &ToolCall, origin_id: &Value, bytes: &[u8], body: impl FnOnce(Vec<u8>) -> B) -> Result<Request<B>, &'static str> {
    let forwarded = for_origin(bytes, origin_id).map_err(|_| "the tools/call message could not be re-encoded")?;
    let h = &mut parts.headers;
    for name in [PAYMENT_SIGNATURE, X_PAYMENT] {
        h.remove(name);
    }
    if let Some(payment) = &call.payment {
        let v = HeaderValue::from_str(&payment.header_value()).map_err(|_| "_meta[\"x402/payment\"] is not a base64 string")?;
        h.insert(PAYMENT_SIGNATURE, v);
    }
    if let Some(token) = &call.pass {
        h.insert(PASS_HEADER, HeaderValue::from_str(token.trim()).map_err(|_| "_meta[\"x402/pass\"] is not a pass token")?);
    }
    if let Some(proof) = &call.sign_in {
        h.insert(SIGN_IN_WITH_X, HeaderValue::from_str(proof.trim()).map_err(|_| "_meta[\"x402/sign-in-with-x\"] is not a base64 string")?);
    }
    h.insert(CONTENT_LENGTH, HeaderValue::from(forwarded.len()));
    Ok(Request::from_parts(parts, body(forwarded)))
}

/// The pass headers of the payment flow's answer (`X402-Pass` of a pass the call bought,
/// `X402-Pass-Expires`, the pass cookie), taken out of `headers` as `result._meta` entries: an
/// MCP client reads the call's result, and an SSE answer's head left before the pass was sold.
fn pass_meta(headers: &mut http::HeaderMap) -> Map<String, Value> {
    let mut meta = Map::new();
    if let Some(token) = headers.remove(PASS_HEADER).and_then(|v| v.to_str().ok().map(str::to_string)) {
        meta.insert(PASS_META.into(), Value::String(token));
    }
    if let Some(expires) = headers.remove(PASS_EXPIRES_HEADER).and_then(|v| v.to_str().ok()?.parse::<u64>().ok()) {
        meta.insert(PASS_EXPIRES_META.into(), json!(expires));
    }
    let kept: Vec<HeaderValue> = headers.get_all(SET_COOKIE).iter().filter(|v| !v.as_bytes().starts_with(format!("{PASS_COOKIE}=").as_bytes())).cloned().collect();
    headers.remove(SET_COOKIE);
    for v in kept {
        headers.append(SET_COOKIE, v);
    }
    meta
}

/// `message`'s `result._meta` with `entries` added (a response without an object `result` is
/// left as it is).
fn add_meta(message: &mut Value, entries: Map<String, Value>) {
    if entries.is_empty() {
        return;
    }
    if let Some(Value::Object(result)) = message.get_mut("result") {
        let meta = result.entry("_meta").or_insert_with(|| Value::Object(Map::new()));
        if !meta.is_object() {
            *meta = Value::Object(Map::new());
        }
        if let Value::Object(m) = meta {
            m.extend(entries);
        }
    }
}

/// A priced tool's call: the route's payment flow over [`ToolOrigin`], its answer translated back.
/// The flow runs to completion even if the client leaves; when the origin's SSE answer is relayed,
/// the client's response (its head and the events so far) is returned as soon as it starts, and
/// the flow ends it with the call's response (or what became of the payment) as the last event.
async fn paid_call<P: Platform>(config: &Rc<Config>, p: &Rc<P>, route: &Route, call: ToolCall, parts: Parts, bytes: Vec<u8>, canonical: &str) -> Response<P::Body> {
    // The paid call's id at the origin is the paywall's own, unguessable: no other message of the
    // client's (a second request with the same id, `notifications/cancelled`) can name it and end
    // it without an answer, or take its answer. The client's id is restored in the answer.
    let origin_id = match p.random32() {
        Ok(r) => Value::String(format!("x402-{}", r[..16].iter().map(|b| format!("{b:02x}")).collect::<String>())),
        Err(e) => return rpc::<P>(StatusCode::SERVICE_UNAVAILABLE, &error_response(&call.id, code::PAYMENT, &format!("no random id for the call: {e}; nothing was charged"), None)),
    };
    let req = match payment_request(parts, &call, &origin_id, &bytes, P::body) {
        Ok(r) => r,
        Err(why) => return rpc::<P>(StatusCode::OK, &error_response(&call.id, code::INVALID_PARAMS, why, None)),
    };
    let id = call.id.clone();
    let head = Rc::new(Slot::default());
    let tool_p = Rc::new(ToolOrigin { inner: Rc::clone(p), id: origin_id, head: Rc::clone(&head), relay: RefCell::new(None) });
    let (config, route, canonical) = (Rc::clone(config), route.clone(), canonical.to_string());
    let flow = async move {
        let p = &tool_p.inner;
        let client_ip = client_limit_key(header_str(req.headers(), "cf-connecting-ip"));
        let trace = Rc::new(Trace::new(&route.key));
        let res = priced(Paying { config: &config, p: &tool_p, route: &route, canonical: &canonical, client_ip: &client_ip, trace: &trace }, req).await;
        let res = failed_attempt_limit(&**p, &route, &trace, &client_ip, res).await;
        let decision = trace.decision();
        if config.decision_log.includes(decision.outcome) {
            p.log(&decision.log_line());
        }
        p.record(&decision);
        let relayed = tool_p.relay.borrow_mut().take();
        let res = translate(p, &route, &call, res, relayed.is_some()).await;
        let Some(writer) = relayed else { return Some(res) };
        // The client has the head and the events so far: the answer is the last event.
        let sse = is_event_stream(res.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()));
        let bytes = p.read_body(res.into_body(), MAX_ANSWER_BYTES).await.unwrap_or_default();
        if sse {
            writer.write(&bytes);
        } else {
            writer.write(format!("event: message\ndata: {}\n\n", String::from_utf8_lossy(&bytes)).as_bytes());
        }
        writer.close();
        None
    };
    let mut done = std::pin::pin!(p.run_to_completion(flow));
    let answer = std::future::poll_fn(|cx| {
        if let Poll::Ready(res) = head.poll_take(cx) {
            return Poll::Ready(Some(res));
        }
        match done.as_mut().poll(cx) {
            Poll::Ready(Some(Some(res))) => Poll::Ready(Some(res)),
            Poll::Ready(_) => Poll::Ready(head.take()),
            Poll::Pending => Poll::Pending,
        }
    })
    .await;
    answer.unwrap_or_else(|| rpc::<P>(StatusCode::OK, &error_response(&id, code::PAYMENT, "the payment flow of this call was cancelled by the runtime", None)))
}

/// A header's base64 JSON.
fn header_json(parts: &http::response::Parts, name: &str) -> Option<Value> {
    let v = parts.headers.get(name)?.to_str().ok()?;
    let bytes = base64::engine::general_purpose::STANDARD.decode(v.trim()).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The payment flow's answer to a tool call, as MCP says it (see the module doc).
/// `relayed`: the answer's other events went to the client already: a found response is sent
/// alone, as its own event.
async fn translate<P: Platform>(p: &Rc<P>, route: &Route, call: &ToolCall, res: Response<P::Body>, relayed: bool) -> Response<P::Body> {
    let (mut parts, body) = res.into_parts();
    let settled = header_json(&parts, PAYMENT_RESPONSE).or_else(|| header_json(&parts, X_PAYMENT_RESPONSE));
    let required = header_json(&parts, PAYMENT_REQUIRED);
    for name in [PAYMENT_RESPONSE, X_PAYMENT_RESPONSE, PAYMENT_REQUIRED] {
        parts.headers.remove(name);
    }
    let passes = pass_meta(&mut parts.headers);
    let verdict = parts.extensions.remove::<ToolVerdict>();
    match verdict {
        Some(ToolVerdict::Answered { bytes, status, answer }) => {
            let mut message = match &settled {
                Some(s) => with_payment_response(&answer, s),
                None => answer.message.clone(),
            };
            // The pass a paid call bought (or the expiry of the pass a call ran on).
            if !answer.failed {
                add_meta(&mut message, passes);
            }
            // The client's id in place of the paywall's.
            message["id"] = call.id.clone();
            parts.status = status;
            super::not_stored(&mut parts.headers);
            let out = match answer.format {
                Format::Sse(index) if relayed => {
                    let event = events(&String::from_utf8_lossy(&bytes)).into_iter().nth(index).map(|e| e.lines.join("\n") + "\n\n").unwrap_or_default();
                    replace(event.as_bytes(), Format::Sse(0), &message)
                }
                format => replace(&bytes, format, &message),
            };
            Response::from_parts(parts, P::body(out))
        }
        Some(ToolVerdict::Unanswered(why)) => {
            let charged = if settled.is_some() { "the payment was settled: retry the call with the same payment to run it again without a second charge" } else { "nothing was charged" };
            let data = settled.map(|s| json!({ crate::mcp::PAYMENT_RESPONSE_META: s }));
            rpc::<P>(StatusCode::OK, &error_response(&call.id, code::PAYMENT, &format!("the origin's answer to this tool call holds no result ({why}); {charged}"), data))
        }
        Some(ToolVerdict::Status) => Response::from_parts(parts, body),
        None => {
            let status = parts.status;
            let body = p.read_body(body, MAX_ANSWER_BYTES).await.ok().and_then(|b| serde_json::from_slice::<Value>(&b).ok()).unwrap_or(Value::Null);
            let text = |key: &str| body.get(key).and_then(Value::as_str).map(str::to_string);
            if status == StatusCode::PAYMENT_REQUIRED {
                let error = required.as_ref().and_then(|r| r.get("error")).and_then(Value::as_str).map(str::to_string).or_else(|| text("error")).unwrap_or_else(|| "payment required".into());
                let error = match text("message") {
                    Some(m) if required.is_none() => format!("{error}: {m}"),
                    _ => error,
                };
                // Wallet sign-in's extension (a nonce issued for this request) goes with the result.
                let sign_in = required.as_ref().and_then(|r| r.get("extensions")?.get(SIGN_IN_WITH_X)).map(|e| json!({ SIGN_IN_WITH_X: e }));
                let (pr, _) = challenge_values(route, &format!("{TOOL_RESOURCE_PREFIX}{}", call.name), &error, sign_in.as_ref());
                let pr = serde_json::to_value(pr).unwrap_or(Value::Null);
                return rpc::<P>(StatusCode::OK, &payment_required_result(&call.id, &pr, settled.as_ref()));
            }
            let message = text("message").or_else(|| text("error")).unwrap_or_else(|| format!("the paywall answered HTTP {status}"));
            let mut data = json!({ "httpStatus": status.as_u16() });
            if let (Value::Object(d), Value::Object(b)) = (&mut data, body) {
                d.extend(b);
            }
            rpc::<P>(StatusCode::OK, &error_response(&call.id, code::PAYMENT, &message, Some(data)))
        }
    }
}

/// What a `tools/list` shows for a priced tool: its `PaymentRequired` (resource
/// `mcp://tool/{name}`, no error) with the `bazaar` extension describing the tool as x402's
/// bazaar describes MCP tools (`info.input`: `type: "mcp"`, `tool`, `inputSchema`,
/// `description`, `transport: "streamable-http"`).
pub(super) fn listed_price(route: &Route, name: &str, tool: &Value) -> Value {
    let mut input = json!({ "type": "mcp", "tool": name, "transport": "streamable-http" });
    for key in ["inputSchema", "description"] {
        if let Some(v) = tool.get(key) {
            input[key] = v.clone();
        }
    }
    let extensions = json!({ "bazaar": { "info": { "input": input } } });
    let (pr, _) = challenge_values(route, &format!("{TOOL_RESOURCE_PREFIX}{name}"), "", Some(&extensions));
    serde_json::to_value(pr).unwrap_or(Value::Null)
}

/// The route's first price in US dollars, when it is paid in its network's built-in USDC.
fn usd_price(route: &Route) -> Option<f64> {
    let offer = route.accepts.first()?;
    let network = crate::evm::network_by_id(&offer.requirements.network)?;
    let usdc = crate::evm::Address::parse(network.usdc)?;
    let decimals = i32::from(offer.decimals?);
    (usdc == offer.asset).then(|| offer.amount.to_string().parse::<f64>().ok().map(|a| a / 10f64.powi(decimals))).flatten()
}

/// `tools/list`: forwarded, its result given the prices ([`listed_price`]); an answer that holds
/// no result for the request passes unchanged.
async fn list_tools<P: Platform>(config: &Rc<Config>, p: &Rc<P>, server: &McpServer, req: Request<P::Body>, canonical: &str, id: Value) -> Response<P::Body> {
    let res = match forward(config, &**p, req, canonical).await {
        Ok(r) => r,
        Err(e) => return origin_failure::<P>(&**p, &e, None),
    };
    if res.status().as_u16() >= 400 {
        return res;
    }
    let (mut parts, body) = res.into_parts();
    let bytes = match p.read_body(body, MAX_ANSWER_BYTES).await {
        Ok(b) => b,
        Err(e) => return rpc::<P>(StatusCode::BAD_GATEWAY, &error_response(&id, code::PAYMENT, &format!("the tools/list answer could not be read: {e}"), None)),
    };
    let content_type = parts.headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_string);
    let Ok(answer) = find(content_type.as_deref(), &bytes, &id) else { return Response::from_parts(parts, P::body(bytes)) };
    let priced = price_tools(&answer.message, |name, tool| match server.tool(name) {
        ToolPrice::Free => Some(None),
        ToolPrice::Deny => None,
        ToolPrice::Priced(route) => {
            let mut entries = Map::new();
            entries.insert(PRICE_META.into(), listed_price(route, name, tool));
            // How Cloudflare's `agents` servers announce a paid tool (its client reads these).
            entries.insert(AGENTS_PAID_META.into(), Value::Bool(true));
            if let Some(usd) = usd_price(route) {
                entries.insert(AGENTS_PRICE_META.into(), json!(usd));
            }
            Some(Some(entries))
        }
    });
    parts.headers.remove(CONTENT_LENGTH);
    Response::from_parts(parts, P::body(replace(&bytes, answer.format, &priced)))
}
