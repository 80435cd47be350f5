//! [`gateway::Platform`] on Cloudflare Workers, capability by capability: the origin over
//! `fetch` (or the `ORIGIN_SERVICE` service binding), facilitator calls, the payment ledger's
//! Durable Object, Workers KV, rate limiting, Web Crypto, the runtime (`Date.now`, getrandom,
//! logs, Analytics Engine, `ctx.waitUntil`, the request's abort signal) and this isolate's caches.

use std::rc::Rc;

use futures_util::StreamExt;
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::wasm_bindgen::closure::Closure;
use worker::wasm_bindgen::prelude::wasm_bindgen;
use worker::{console_error, console_log, js_sys, web_sys, AbortSignal, Context, Env, Fetch, Headers, KvStore, RequestInit};

use crate::facilitator::cdp::CdpKey;
use crate::config::Config;
use crate::facilitator::{HttpReply, UpstreamError, MAX_REPLY_BYTES};
use crate::gateway::{self, FacilitatorTransport, IsolateCaches, IsolateState, Kv, Ledger, Origin, PlatformError, RateLimits, Runtime, Signer};
use crate::telemetry::Decision;
use crate::ledger::{Op, Reply};
use crate::pass::PassCache;

use super::js::{header_list, js_error_text, parse_header_list, to_response, x402_origin_fetch, x402_pass_through, x402_relay, x402_relay_close, x402_relay_write, x402_response_headers, ORIGIN_TIMEOUT_MARK};
use super::{bindings, webcrypto, LEDGER_BINDING, METRICS_BINDING, ORIGIN_SERVICE_BINDING, PASSES_BINDING};

/// Time limit for one ledger call, seconds.
const LEDGER_TIMEOUT_SECONDS: u64 = 10;


/// A body on the edge: a JS stream passed through untouched, bytes we produced, or the body of
/// the origin's `Response` (kept whole, with its status and header list as it arrived, so that a
/// response the pipeline did not change is returned as the very object `fetch` gave: no new
/// `Headers` or `Response`, as a plain JS proxy does).
pub enum EdgeBody {
    Stream(Option<web_sys::ReadableStream>),
    Bytes(Vec<u8>),
    Origin { response: web_sys::Response, status: u16, headers: String },
    /// The whole answer to an unpriced pass-through, still on its way: a promise of the
    /// `Response` ([`Origin::pass_through`] on the edge). The `http::Response` carrying it is a
    /// placeholder; its status and headers are not used.
    Promise(js_sys::Promise),
}

thread_local! {
    /// Pass records this isolate has seen.
    static PASSES: Rc<PassCache> = Rc::new(PassCache::default());
    /// Facilitators seen failing and clients blocked, for this isolate's lifetime.
    pub(super) static ISOLATE: Rc<IsolateState> = Rc::new(IsolateState::default());
    /// The callbacks of [`x402_pass_through`]: the URL-header rewrite of an origin response, and
    /// the answer when the origin fails. Made once per instance, so a pass-through makes none.
    static PASS_THROUGH: (PassThroughRewrite, PassThroughFailed) = (
        Closure::new(|response: web_sys::Response, base: String, prefix: String, public: String| {
            let status = response.status();
            let headers = x402_response_headers(&response);
            let mut map = parse_header_list(&headers);
            gateway::UrlRewrite { base, prefix, public }.apply(&mut map);
            let mut res = http::Response::new(EdgeBody::Origin { response, status, headers });
            *res.headers_mut() = map;
            *res.status_mut() = http::StatusCode::from_u16(status).map_err(|e| JsValue::from_str(&e.to_string()))?;
            to_response(res)
        }),
        Closure::new(|error: JsValue, seconds: f64| {
            let e = if error.as_string().as_deref() == Some(ORIGIN_TIMEOUT_MARK) {
                UpstreamError::Timeout { seconds: seconds as u64 }
            } else {
                UpstreamError::Network(js_error_text(&error))
            };
            to_response(origin_failed(&e))
        }),
    );
}

type PassThroughRewrite = Closure<dyn Fn(web_sys::Response, String, String, String) -> Result<JsValue, JsValue>>;
type PassThroughFailed = Closure<dyn Fn(JsValue, f64) -> Result<JsValue, JsValue>>;

/// [`gateway::Platform`] for one request.
pub(super) struct Edge {
    /// Whether the origin is the service binding `ORIGIN_SERVICE` (else `ORIGIN_URL`).
    origin_is_service: bool,
    /// The `PASSES` namespace, looked up on first use (a `KvStore` costs five property reads).
    kv: std::cell::OnceCell<Option<KvStore>>,
    passes: Rc<PassCache>,
    isolate: Rc<IsolateState>,
    env: Env,
    /// The request's context (`waitUntil`); none for work of a Durable Object's own (an alarm),
    /// which the runtime keeps alive while it is awaited.
    ctx: Option<Context>,
    /// The incoming request, whose abort signal fires on client disconnect (with the
    /// `enable_request_signal` compatibility flag); none for a Durable Object's own work.
    request: Option<web_sys::Request>,
}

impl Edge {
    /// The platform of one request under `config`, with this isolate's caches.
    pub(super) fn new(config: &Config, env: Env, ctx: Context, request: web_sys::Request) -> Edge {
        let origin_is_service = matches!(config.origin, crate::config::OriginTarget::Service);
        Edge { origin_is_service, kv: std::cell::OnceCell::new(), passes: PASSES.with(Rc::clone), isolate: ISOLATE.with(Rc::clone), env, ctx: Some(ctx), request: Some(request) }
    }

    /// The platform of work that no request carries (a Durable Object's alarm): no client to lose,
    /// deferred work run at once in the background of the awaiting handler.
    pub(super) fn background(config: &Config, env: Env) -> Edge {
        let origin_is_service = matches!(config.origin, crate::config::OriginTarget::Service);
        Edge { origin_is_service, kv: std::cell::OnceCell::new(), passes: PASSES.with(Rc::clone), isolate: ISOLATE.with(Rc::clone), env, ctx: None, request: None }
    }

    /// Starts the origin request (see [`x402_origin_fetch`]): the promise of its `Response`.
    fn send_to_origin(&self, req: http::Request<EdgeBody>, timeout_seconds: u64) -> Result<js_sys::Promise, UpstreamError> {
        let (parts, body) = req.into_parts();
        let body: Option<JsValue> = if gateway::method_has_body(&parts.method) {
            match body {
                EdgeBody::Stream(s) => s.map(JsValue::from),
                EdgeBody::Bytes(b) => Some(js_sys::Uint8Array::from(b.as_slice()).into()),
                EdgeBody::Origin { response, .. } => response.body().map(JsValue::from),
                EdgeBody::Promise(_) => None,
            }
        } else {
            None
        };
        let service = if self.origin_is_service { js_sys::Reflect::get(self.env.as_ref(), &JsValue::from_str(ORIGIN_SERVICE_BINDING)).ok() } else { None };
        // setTimeout's longest delay is 2^31 - 1 ms (about 24.8 days); a longer one would fire at once.
        let ms = timeout_seconds.saturating_mul(1000).min(i32::MAX as u64) as f64;
        // The method byte for byte (an extension method stays what it is).
        let whole = parts.extensions.get::<gateway::WholeAnswer>().is_some();
        x402_origin_fetch(service.as_ref(), &parts.uri.to_string(), parts.method.as_str(), &header_list(&parts.headers), body, ms, whole).map_err(|e| UpstreamError::Network(js_error_text(&e)))
    }

    fn kv(&self) -> Result<&KvStore, PlatformError> {
        self.kv.get_or_init(|| self.env.kv(PASSES_BINDING).ok()).as_ref().ok_or_else(|| PlatformError::Unavailable(format!("no {PASSES_BINDING} binding")))
    }
}

/// An unpriced pass-through's answer when the origin failed, its cause logged as
/// [`Origin::pass_through`]'s default does.
fn origin_failed(e: &UpstreamError) -> http::Response<EdgeBody> {
    console_log!("x402: origin {e}");
    gateway::origin_unavailable(e, EdgeBody::Bytes)
}

impl Origin for Edge {
    type Body = EdgeBody;

    fn body(bytes: Vec<u8>) -> EdgeBody {
        EdgeBody::Bytes(bytes)
    }

    async fn origin(&self, req: http::Request<EdgeBody>, timeout_seconds: u64) -> Result<http::Response<EdgeBody>, UpstreamError> {
        let promise = self.send_to_origin(req, timeout_seconds)?;
        let res: web_sys::Response = match worker::wasm_bindgen_futures::JsFuture::from(promise).await {
            Ok(r) => r.unchecked_into(),
            Err(e) if e.as_string().as_deref() == Some(ORIGIN_TIMEOUT_MARK) => return Err(UpstreamError::Timeout { seconds: timeout_seconds }),
            Err(e) => return Err(UpstreamError::Network(js_error_text(&e))),
        };
        let status = res.status();
        let headers = x402_response_headers(&res);
        let mut out = http::Response::builder().status(status);
        if let Some(h) = out.headers_mut() {
            *h = parse_header_list(&headers);
        }
        out.body(EdgeBody::Origin { response: res, status, headers }).map_err(|e| UpstreamError::Network(e.to_string()))
    }

    /// The runtime gets the origin's answer as a promise: no Rust future waits on it. A response
    /// without URL headers (or from a service-binding origin) is the origin's own; one with them
    /// comes back through [`PASS_THROUGH`]'s rewrite, a failure through its failure answer.
    fn pass_through(&self, req: http::Request<EdgeBody>, timeout_seconds: u64, rewrite: Option<gateway::UrlRewrite>) -> impl std::future::Future<Output = http::Response<EdgeBody>> {
        let answer = match self.send_to_origin(req, timeout_seconds) {
            Ok(sent) => {
                let (base, prefix, public) = match &rewrite {
                    Some(r) => (Some(r.base.as_str()), r.prefix.as_str(), r.public.as_str()),
                    None => (None, "", ""),
                };
                let promise = PASS_THROUGH.with(|(rewrite, failed)| x402_pass_through(&sent, base, prefix, public, timeout_seconds as f64, rewrite.as_ref(), failed.as_ref()));
                http::Response::new(EdgeBody::Promise(promise))
            }
            Err(e) => origin_failed(&e),
        };
        std::future::ready(answer)
    }

    /// A `TransformStream`: its readable side is the body, its writer the [`gateway::RelayWriter`].
    fn relay(&self) -> Option<(Box<dyn gateway::RelayWriter>, EdgeBody)> {
        let pair = x402_relay();
        let readable: web_sys::ReadableStream = pair.get(0).dyn_into().ok()?;
        Some((Box::new(EdgeRelay(pair.get(1))), EdgeBody::Stream(Some(readable))))
    }

    /// The request's stream read chunk by chunk, stopped at `max_bytes`.
    async fn read_body(&self, body: EdgeBody, max_bytes: usize) -> Result<Vec<u8>, PlatformError> {
        self.read_body_with(body, max_bytes, &mut |_| {}).await
    }

    /// [`Origin::read_body`], each chunk handed to `on_chunk` as it arrives.
    async fn read_body_with(&self, body: EdgeBody, max_bytes: usize, on_chunk: &mut dyn FnMut(&[u8])) -> Result<Vec<u8>, PlatformError> {
        let stream = match body {
            EdgeBody::Bytes(b) if b.len() <= max_bytes => {
                on_chunk(&b);
                return Ok(b);
            }
            EdgeBody::Bytes(_) => return Err(PlatformError::TooLarge(format!("body larger than {max_bytes} bytes"))),
            EdgeBody::Stream(stream) => stream,
            // A metered origin answer (`upto` body meters).
            EdgeBody::Origin { response, .. } => response.body(),
            EdgeBody::Promise(_) => return Err(PlatformError::Unavailable("a pass-through answer is not read".into())),
        };
        let Some(stream) = stream else { return Ok(Vec::new()) };
        let response = web_sys::Response::new_with_opt_readable_stream(Some(&stream)).map_err(|e| PlatformError::Failed(js_error_text(&e)))?;
        let mut chunks = worker::Response::from(response).stream().map_err(|e| PlatformError::Failed(e.to_string()))?;
        let mut out = Vec::new();
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(|e| PlatformError::Failed(e.to_string()))?;
            if out.len() + chunk.len() > max_bytes {
                return Err(PlatformError::TooLarge(format!("body larger than {max_bytes} bytes")));
            }
            on_chunk(&chunk);
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }
}

/// The writer of an [`Origin::relay`] body: a `WritableStreamDefaultWriter`.
struct EdgeRelay(JsValue);

impl gateway::RelayWriter for EdgeRelay {
    fn write(&self, bytes: &[u8]) {
        x402_relay_write(&self.0, bytes);
    }
    fn close(&self) {
        x402_relay_close(&self.0);
    }
}

impl FacilitatorTransport for Edge {
    async fn post_json(&self, url: &str, authorization: Option<&str>, json: String, timeout_seconds: u64) -> Result<HttpReply, UpstreamError> {
        let headers = Headers::new();
        let _ = headers.set("content-type", "application/json");
        if let Some(a) = authorization {
            let _ = headers.set("authorization", a);
        }
        let mut init = RequestInit::new();
        init.with_method(worker::Method::Post).with_headers(headers).with_body(Some(JsValue::from_str(&json)));
        let request = worker::Request::new_with_init(url, &init).map_err(|e| UpstreamError::NotSent(e.to_string()))?;
        // One self-arming signal bounds the whole exchange, reply body included.
        let millis = u32::try_from(timeout_seconds.saturating_mul(1000)).unwrap_or(u32::MAX);
        let signal = AbortSignal::from(web_sys::AbortSignal::timeout_with_u32(millis));
        let fetch = Fetch::Request(request);
        let read = async {
            let mut res = fetch.send_with_signal(&signal).await?;
            let status = res.status_code();
            let declared = res.headers().get("content-length").ok().flatten().and_then(|l| l.parse::<usize>().ok());
            let body = match declared {
                // A declared length within the cap: one read.
                Some(len) if len <= MAX_REPLY_BYTES => res.bytes().await?,
                Some(len) => return Err(worker::Error::RustError(format!("reply of {len} bytes is larger than {MAX_REPLY_BYTES}"))),
                // No length: read chunk by chunk and stop at the cap.
                None => {
                    let mut body = Vec::new();
                    let mut stream = res.stream()?;
                    while let Some(chunk) = stream.next().await {
                        let chunk = chunk?;
                        if body.len() + chunk.len() > MAX_REPLY_BYTES {
                            return Err(worker::Error::RustError(format!("reply larger than {MAX_REPLY_BYTES} bytes")));
                        }
                        body.extend_from_slice(&chunk);
                    }
                    body
                }
            };
            Ok(HttpReply { status, body })
        };
        match read.await {
            Ok(reply) => Ok(reply),
            Err(_) if signal.aborted() => Err(UpstreamError::Timeout { seconds: timeout_seconds }),
            Err(e) => Err(UpstreamError::Network(e.to_string())),
        }
    }
}

impl Ledger for Edge {
    /// One RPC call on the shard's Durable Object ([`x402_ledger_call`]): the op's JSON goes out
    /// as a string and the reply's JSON comes back as one.
    async fn ledger(&self, shard: &str, op: &Op) -> Result<Reply, String> {
        let body = serde_json::to_string(op).map_err(|e| e.to_string())?;
        let ms = (LEDGER_TIMEOUT_SECONDS * 1000) as f64;
        let call = x402_ledger_call(self.env.as_ref(), LEDGER_BINDING, shard, &body, ms).map_err(|e| format!("ledger not reachable: {}", js_error_text(&e)))?;
        let text = match worker::wasm_bindgen_futures::JsFuture::from(call).await {
            Ok(reply) => reply.as_string().ok_or("ledger reply is not text")?,
            Err(e) if e.as_string().as_deref() == Some(LEDGER_TIMEOUT_MARK) => return Err(format!("ledger {}", UpstreamError::Timeout { seconds: LEDGER_TIMEOUT_SECONDS })),
            Err(e) => return Err(format!("ledger failed: {}", js_error_text(&e))),
        };
        serde_json::from_str(&text).map_err(|e| format!("ledger reply unreadable: {e}"))
    }
}

/// What [`x402_ledger_call`] rejects with when the ledger's time limit passes.
const LEDGER_TIMEOUT_MARK: &str = "x402-ledger-timeout";

#[wasm_bindgen(inline_js = "export function x402_ledger_call(env, binding, shard, op, ms) {
  const ns = env[binding];
  if (ns === undefined) throw new Error('no ' + binding + ' binding');
  const sent = ns.getByName(shard).applyOp(op);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject('x402-ledger-timeout'), ms);
    sent.then((r) => { clearTimeout(timer); resolve(r); }, (e) => { clearTimeout(timer); reject(e); });
  });
}")]
extern "C" {
    /// `env[binding].getByName(shard).applyOp(op)`: the JS RPC call of the ledger's Durable
    /// Object ([`super::ledger_object`]), its promise of the reply's JSON rejected with the
    /// string `x402-ledger-timeout` if no answer came within `ms` milliseconds. Throws if the
    /// binding is missing.
    #[wasm_bindgen(catch)]
    fn x402_ledger_call(env: &JsValue, binding: &str, shard: &str, op: &str, ms: f64) -> Result<js_sys::Promise, JsValue>;
}

impl Kv for Edge {
    async fn kv_get(&self, key: &str) -> Result<Option<String>, PlatformError> {
        self.kv()?.get(key).text().await.map_err(|e| PlatformError::Failed(e.to_string()))
    }

    async fn kv_put(&self, key: &str, value: String, ttl_seconds: u64) -> Result<(), PlatformError> {
        let failed = |e: worker::kv::KvError| PlatformError::Failed(e.to_string());
        self.kv()?.put(key, value).map_err(failed)?.expiration_ttl(ttl_seconds).execute().await.map_err(failed)
    }
}

impl RateLimits for Edge {
    async fn rate_limit(&self, binding: &str, key: &str) -> Result<bool, PlatformError> {
        bindings::limit(&self.env, binding, key).await
    }
}

impl Signer for Edge {
    async fn sign(&self, key: &CdpKey, message: &[u8]) -> Result<Vec<u8>, PlatformError> {
        webcrypto::sign(key, message).await.map_err(PlatformError::Failed)
    }
}

impl Runtime for Edge {
    fn client_gone(&self) -> bool {
        self.request.as_ref().is_some_and(|r| r.signal().aborted())
    }

    fn run_to_completion<T: 'static>(&self, fut: impl std::future::Future<Output = T> + 'static) -> impl std::future::Future<Output = Option<T>> {
        let (tx, rx) = futures_channel::oneshot::channel();
        self.defer(async move {
            let _ = tx.send(fut.await);
        });
        async move { rx.await.ok() }
    }

    fn defer(&self, fut: impl std::future::Future<Output = ()> + 'static) {
        match &self.ctx {
            Some(ctx) => ctx.wait_until(fut),
            None => worker::wasm_bindgen_futures::spawn_local(fut),
        }
    }

    fn now(&self) -> u64 {
        worker::Date::now().as_millis() / 1000
    }

    fn millis(&self) -> u64 {
        worker::Date::now().as_millis()
    }

    fn random32(&self) -> Result<[u8; 32], PlatformError> {
        let mut buf = [0u8; 32];
        getrandom::fill(&mut buf).map_err(|e| PlatformError::Failed(e.to_string()))?;
        Ok(buf)
    }

    fn log(&self, line: &str) {
        console_log!("{}", line);
    }

    fn record(&self, decision: &Decision) {
        let Some(dataset) = bindings::dataset(&self.env, METRICS_BINDING) else { return };
        if let Err(e) = bindings::write(&dataset, &decision.data_point()) {
            console_error!("x402: writeDataPoint failed: {e}");
        }
    }
}

impl IsolateCaches for Edge {
    fn passes(&self) -> &PassCache {
        &self.passes
    }

    fn isolate(&self) -> &IsolateState {
        &self.isolate
    }
}
