//! The platform a paid MCP tool call runs the HTTP payment flow over ([`ToolOrigin`]): the
//! request's platform, except that the origin's answer is read (bounded, [`MAX_ANSWER_BYTES`]) and
//! the JSON-RPC response to the call found in it ([`crate::mcp::answer::find`], JSON or an SSE
//! stream). A tool error (a JSON-RPC `error`, or a result with `isError: true`) and an answer
//! without the response are handed to the flow as a failed origin answer (status 502), so the
//! payment is released and nothing is charged, exactly as for an HTTP origin's status >= 400; the
//! answer itself travels in the response's extensions ([`ToolVerdict`]) for `gateway/mcp.rs` to
//! translate back. Everything else is delegated unchanged, so `pay.rs` and `settle.rs` run as they
//! do for a route. Where the platform can relay a body ([`Origin::relay`]), an SSE answer's events
//! other than the call's response reach the client as they arrive ([`ToolOrigin`]).

use std::cell::RefCell;
use std::future::Future;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{Request, Response, StatusCode};
use serde_json::Value;

use crate::facilitator::cdp::CdpKey;
use crate::facilitator::{HttpReply, UpstreamError};
use crate::ledger::{Op, Reply};
use crate::mcp::answer::{find, is_event_stream, is_response_event, Answer, EventSplitter};
use crate::mcp::MAX_ANSWER_BYTES;
use crate::pass::PassCache;
use crate::telemetry::Decision;

use super::platform::{FacilitatorTransport, IsolateCaches, IsolateState, Kv, Ledger, Origin, Platform, PlatformError, RateLimits, RelayWriter, Runtime, Signer, WholeAnswer};

/// What the origin answered to a paid tool call, carried in the response's extensions.
#[derive(Debug, Clone)]
pub(super) enum ToolVerdict {
    /// The JSON-RPC response to the call was found: the answer's bytes (the response's body is
    /// emptied), its status, and the response (`failed`: a tool error; the status seen by the
    /// payment flow is then 502).
    Answered { bytes: Vec<u8>, status: StatusCode, answer: Answer },
    /// The answer could not be read or holds no response to the call (why); status 502.
    Unanswered(String),
    /// The origin's own status >= 400, passed through with its body.
    Status,
}

/// A value handed from one task to another once (the head of a relayed answer), waking the
/// task that waits for it.
pub(super) struct Slot<T>(RefCell<(Option<T>, Option<Waker>)>);

impl<T> Default for Slot<T> {
    fn default() -> Self {
        Slot(RefCell::new((None, None)))
    }
}

impl<T> Slot<T> {
    fn put(&self, value: T) {
        let waker = {
            let mut s = self.0.borrow_mut();
            s.0 = Some(value);
            s.1.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
    /// The value, if it was put.
    pub(super) fn take(&self) -> Option<T> {
        self.0.borrow_mut().0.take()
    }
    /// The value once it is put.
    pub(super) fn poll_take(&self, cx: &mut Context<'_>) -> Poll<T> {
        let mut s = self.0.borrow_mut();
        match s.0.take() {
            Some(v) => Poll::Ready(v),
            None => {
                s.1 = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

/// The request's platform `P` with the origin's answer read and judged for the call `id`. An SSE
/// answer is relayed where the platform can ([`Origin::relay`]): its head goes to `head` at once
/// (the client's response), and every complete event but the response to the call is written to
/// the relay as it arrives; the response is held for `gateway/mcp.rs` to send after settlement.
pub(super) struct ToolOrigin<P: Platform> {
    pub(super) inner: Rc<P>,
    /// The JSON-RPC id of the call.
    pub(super) id: Value,
    /// Where the head of a relayed answer goes.
    pub(super) head: Rc<Slot<Response<P::Body>>>,
    /// The relay's writer, once an answer is relayed.
    pub(super) relay: RefCell<Option<Rc<dyn RelayWriter>>>,
}

impl<P: Platform> ToolOrigin<P> {
    /// Starts relaying an SSE answer with these `parts` when the platform can: the client's
    /// response head goes to [`ToolOrigin::head`]. The writer, or `None`.
    fn start_relay(&self, parts: &http::response::Parts) -> Option<Rc<dyn RelayWriter>> {
        if self.relay.borrow().is_some() {
            return None;
        }
        let (writer, body) = self.inner.relay()?;
        let writer: Rc<dyn RelayWriter> = Rc::from(writer);
        let mut head = Response::new(body);
        *head.status_mut() = parts.status;
        *head.headers_mut() = parts.headers.clone();
        head.headers_mut().remove(CONTENT_LENGTH);
        // Sent before `forward` takes it out of the answer: an `upto` report is the paywall's.
        head.headers_mut().remove(crate::meter::SETTLEMENT_OVERRIDES);
        super::not_stored(head.headers_mut());
        *self.relay.borrow_mut() = Some(Rc::clone(&writer));
        self.head.put(head);
        Some(writer)
    }
}

impl<P: Platform> Origin for ToolOrigin<P> {
    type Body = P::Body;
    fn body(bytes: Vec<u8>) -> P::Body {
        P::body(bytes)
    }
    async fn origin(&self, mut req: Request<P::Body>, timeout_seconds: u64) -> Result<Response<P::Body>, UpstreamError> {
        // The answer is read (and the payment held) until the response arrives: the origin's time
        // limit covers it, so a tool slower than that is unanswered (nothing charged) instead of
        // outliving its lease.
        req.extensions_mut().insert(WholeAnswer);
        let res = self.inner.origin(req, timeout_seconds).await?;
        let (mut parts, body) = res.into_parts();
        if parts.status.as_u16() >= 400 {
            parts.extensions.insert(ToolVerdict::Status);
            return Ok(Response::from_parts(parts, body));
        }
        let content_type = parts.headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_string);
        let relay = if is_event_stream(content_type.as_deref()) { self.start_relay(&parts) } else { None };
        let read = match relay {
            Some(writer) => {
                let mut splitter = EventSplitter::default();
                let id = &self.id;
                // The paywall's own id as it appears in the origin's JSON (a string id unquoted).
                let id_text = id.as_str().map_or_else(|| id.to_string(), str::to_string);
                let mut relay_events = |chunk: &[u8]| {
                    for block in splitter.push(chunk) {
                        // Held: the response, and any event that may be it though it does not
                        // parse here (a lone surrogate escape, nesting past serde_json's limit,
                        // which JavaScript's JSON.parse accepts): relayed, it would be the tool's
                        // answer delivered unpaid.
                        if !is_response_event(&block, id) && !block.contains(id_text.as_str()) {
                            writer.write(format!("{block}\n\n").as_bytes());
                        }
                    }
                };
                self.inner.read_body_with(body, MAX_ANSWER_BYTES, &mut relay_events).await
            }
            None => self.inner.read_body(body, MAX_ANSWER_BYTES).await,
        };
        let verdict = match read {
            Ok(bytes) => match find(content_type.as_deref(), &bytes, &self.id) {
                Ok(answer) => {
                    let status = parts.status;
                    if answer.failed {
                        parts.status = StatusCode::BAD_GATEWAY;
                    }
                    ToolVerdict::Answered { bytes, status, answer }
                }
                Err(why) => ToolVerdict::Unanswered(why),
            },
            Err(PlatformError::TooLarge(_)) => ToolVerdict::Unanswered(format!("the answer is larger than {MAX_ANSWER_BYTES} bytes")),
            Err(e) => ToolVerdict::Unanswered(format!("the answer could not be read: {e}")),
        };
        if matches!(verdict, ToolVerdict::Unanswered(_)) {
            parts.status = StatusCode::BAD_GATEWAY;
        }
        parts.headers.remove(CONTENT_LENGTH);
        parts.extensions.insert(verdict);
        Ok(Response::from_parts(parts, P::body(Vec::new())))
    }
    async fn read_body(&self, body: P::Body, max_bytes: usize) -> Result<Vec<u8>, PlatformError> {
        self.inner.read_body(body, max_bytes).await
    }
    async fn read_body_with(&self, body: P::Body, max_bytes: usize, on_chunk: &mut dyn FnMut(&[u8])) -> Result<Vec<u8>, PlatformError> {
        self.inner.read_body_with(body, max_bytes, on_chunk).await
    }
}

impl<P: Platform> FacilitatorTransport for ToolOrigin<P> {
    async fn post_json(&self, url: &str, authorization: Option<&str>, json: String, timeout_seconds: u64) -> Result<HttpReply, UpstreamError> {
        self.inner.post_json(url, authorization, json, timeout_seconds).await
    }
}

impl<P: Platform> Ledger for ToolOrigin<P> {
    async fn ledger(&self, shard: &str, op: &Op) -> Result<Reply, String> {
        self.inner.ledger(shard, op).await
    }
}

impl<P: Platform> Kv for ToolOrigin<P> {
    async fn kv_get(&self, key: &str) -> Result<Option<String>, PlatformError> {
        self.inner.kv_get(key).await
    }
    async fn kv_put(&self, key: &str, value: String, ttl_seconds: u64) -> Result<(), PlatformError> {
        self.inner.kv_put(key, value, ttl_seconds).await
    }
}

impl<P: Platform> RateLimits for ToolOrigin<P> {
    async fn rate_limit(&self, binding: &str, key: &str) -> Result<bool, PlatformError> {
        self.inner.rate_limit(binding, key).await
    }
}

impl<P: Platform> Signer for ToolOrigin<P> {
    async fn sign(&self, key: &CdpKey, message: &[u8]) -> Result<Vec<u8>, PlatformError> {
        self.inner.sign(key, message).await
    }
}

impl<P: Platform> Runtime for ToolOrigin<P> {
    fn client_gone(&self) -> bool {
        self.inner.client_gone()
    }
    fn run_to_completion<T: 'static>(&self, fut: impl Future<Output = T> + 'static) -> impl Future<Output = Option<T>> {
        self.inner.run_to_completion(fut)
    }
    fn defer(&self, fut: impl Future<Output = ()> + 'static) {
        self.inner.defer(fut)
    }
    fn now(&self) -> u64 {
        self.inner.now()
    }
    fn millis(&self) -> u64 {
        self.inner.millis()
    }
    fn random32(&self) -> Result<[u8; 32], PlatformError> {
        self.inner.random32()
    }
    fn log(&self, line: &str) {
        self.inner.log(line)
    }
    fn record(&self, decision: &Decision) {
        self.inner.record(decision)
    }
}

impl<P: Platform> IsolateCaches for ToolOrigin<P> {
    fn passes(&self) -> &PassCache {
        self.inner.passes()
    }
    fn isolate(&self) -> &IsolateState {
        self.inner.isolate()
    }
}
