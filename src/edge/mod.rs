//! The Cloudflare Workers glue (wasm32 only): the `fetch` entry point and [`Platform`] over
//! `fetch`, Workers KV, the payment ledger's Durable Object, `ctx.waitUntil`, the request's
//! abort signal, `Date.now` and getrandom. Bodies stay JavaScript `ReadableStream`s end to end,
//! so origin responses stream through without being copied into wasm memory.
//!
//! Owns: everything that touches `worker::*`. Must not hold decisions: those are in the pure
//! core (`gateway`, `ledger`), which this module only adapts.

mod ledger_object;
mod timer;
mod webcrypto;

use std::cell::RefCell;
use std::pin::pin;
use std::rc::Rc;
use std::time::Duration;

use futures_util::future::{select, Either};
use futures_util::StreamExt;
use serde_json::{Map, Value};
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::wasm_bindgen::closure::Closure;
use worker::wasm_bindgen::prelude::wasm_bindgen;
use worker::{console_error, console_log, js_sys, web_sys, AbortController, AbortSignal, Context, Env, Fetch, Headers, KvStore, RequestInit};

use crate::config::{Config, ConfigError};
use crate::cdp::CdpKey;
use crate::facilitator::{HttpReply, UpstreamError, MAX_REPLY_BYTES};
use crate::gateway::{self, IsolateState, Platform};
use crate::telemetry::Decision;
use crate::ledger::{Op, Reply};
use crate::pass::PassCache;

/// Name of the Workers KV namespace binding that caches pass records.
pub const PASSES_BINDING: &str = "PASSES";

/// Name of the Durable Object namespace binding of the payment ledger (class `PaymentLedger`).
pub const LEDGER_BINDING: &str = "LEDGER";

/// Name of the optional service binding to an origin Worker (instead of `ORIGIN_URL`).
pub const ORIGIN_SERVICE_BINDING: &str = "ORIGIN_SERVICE";

/// Name of the optional Workers Analytics Engine dataset binding that receives one data point per
/// priced request decision.
pub const METRICS_BINDING: &str = "METRICS";

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
    /// `Response` ([`Platform::pass_through`] on the edge). The `http::Response` carrying it is a
    /// placeholder; its status and headers are not used.
    Promise(js_sys::Promise),
}

thread_local! {
    /// The validated configuration, built when the module starts ([`warm_up`], from the
    /// module-scope `env`) or else on the isolate's first request.
    static CONFIG: RefCell<Option<Result<Rc<Config>, ConfigError>>> = const { RefCell::new(None) };
    /// Pass records this isolate has seen.
    static PASSES: Rc<PassCache> = Rc::new(PassCache::default());
    /// Facilitators seen failing and clients blocked, for this isolate's lifetime.
    static ISOLATE: Rc<IsolateState> = Rc::new(IsolateState::default());
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

fn read_vars(env: &Env) -> Map<String, Value> {
    let mut vars = Map::new();
    // The fixed names, each facilitator's own credentials (`FACILITATOR_AUTH_<NAME>`), and every
    // other variable (not a binding: a string or plain JSON), so that the configuration can refuse
    // a misspelt one (`ROUTS`) or a price that no route carries (crate::config::misspelt_vars).
    let env_object: &JsValue = env.as_ref();
    let object_prototype = js_sys::Object::get_prototype_of(&js_sys::Object::new().into());
    let others: Vec<String> = js_sys::Object::keys(env_object.unchecked_ref::<js_sys::Object>())
        .iter()
        .filter_map(|k| k.as_string())
        .filter(|k| !crate::config::VARS.contains(&k.as_str()) && k != ORIGIN_SERVICE_BINDING)
        .collect();
    for name in crate::config::VARS.iter().copied().chain(others.iter().map(String::as_str)) {
        let Ok(v) = js_sys::Reflect::get(env.as_ref(), &JsValue::from_str(name)) else { continue };
        if v.is_undefined() || v.is_null() {
            continue;
        }
        let plain = v.is_string()
            || v.as_f64().is_some()
            || v.as_bool().is_some()
            || js_sys::Array::is_array(&v)
            || (v.is_object() && js_sys::Object::get_prototype_of(&v) == object_prototype);
        if !crate::config::VARS.contains(&name) && !plain {
            continue;
        }
        let value = match v.as_string() {
            Some(s) => Value::String(s),
            None => js_sys::JSON::stringify(&v)
                .ok()
                .and_then(|s| s.as_string())
                .and_then(|s| serde_json::from_str(&s).ok())
                .unwrap_or(Value::Null),
        };
        vars.insert(name.to_string(), value);
    }
    if env.service(ORIGIN_SERVICE_BINDING).is_ok() {
        vars.insert(ORIGIN_SERVICE_BINDING.to_string(), Value::Bool(true));
    } else if js_sys::Reflect::get(env.as_ref(), &JsValue::from_str(ORIGIN_SERVICE_BINDING)).is_ok_and(|v| !v.is_undefined()) {
        // Something else under that name (a plain variable): the configuration says so.
        vars.insert(ORIGIN_SERVICE_BINDING.to_string(), Value::String("not a service binding".into()));
    }
    vars
}

fn config(env: &Env) -> Result<Rc<Config>, ConfigError> {
    CONFIG.with(|cell| {
        cell.borrow_mut()
            .get_or_insert_with(|| {
                let cfg = Config::from_vars(&read_vars(env))?;
                if cfg.routes.iter().any(|r| r.pass.is_some()) && env.kv(PASSES_BINDING).is_err() {
                    return Err(ConfigError(format!("a route sells a pass but the KV namespace binding {PASSES_BINDING} is missing")));
                }
                for binding in cfg.routes.iter().flat_map(|r| r.rate_limits.bindings()) {
                    let limiter = js_sys::Reflect::get(env.as_ref(), &JsValue::from_str(binding)).unwrap_or(JsValue::UNDEFINED);
                    if !js_sys::Reflect::get(&limiter, &JsValue::from_str("limit")).is_ok_and(|f| f.is_function()) {
                        return Err(ConfigError(format!("rate limit binding `{binding}` is missing: declare it under [[ratelimits]] in wrangler.toml")));
                    }
                }
                if cfg.routes.iter().any(|r| !r.is_free()) && env.durable_object(LEDGER_BINDING).is_err() {
                    return Err(ConfigError(format!(
                        "priced routes need the payment ledger: the Durable Object binding `{LEDGER_BINDING}` (class PaymentLedger) is missing"
                    )));
                }
                Ok(Rc::new(cfg))
            })
            .clone()
    })
}

struct Edge {
    /// Whether the origin is the service binding `ORIGIN_SERVICE` (else `ORIGIN_URL`).
    origin_is_service: bool,
    /// The `PASSES` namespace, looked up on first use (a `KvStore` costs five property reads).
    kv: std::cell::OnceCell<Option<KvStore>>,
    passes: Rc<PassCache>,
    isolate: Rc<IsolateState>,
    env: Env,
    ctx: Context,
    /// The incoming request, whose abort signal fires on client disconnect (with the
    /// `enable_request_signal` compatibility flag).
    request: web_sys::Request,
}

impl Edge {
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
        x402_origin_fetch(service.as_ref(), &parts.uri.to_string(), parts.method.as_str(), &header_list(&parts.headers), body, ms).map_err(|e| UpstreamError::Network(js_error_text(&e)))
    }

    fn kv(&self) -> Result<&KvStore, String> {
        self.kv.get_or_init(|| self.env.kv(PASSES_BINDING).ok()).as_ref().ok_or_else(|| "no PASSES binding".to_string())
    }
}

/// An unpriced pass-through's answer when the origin failed, its cause logged as
/// [`Platform::pass_through`]'s default does.
fn origin_failed(e: &UpstreamError) -> http::Response<EdgeBody> {
    console_log!("x402: origin {e}");
    gateway::origin_unavailable(e, EdgeBody::Bytes)
}

/// A thrown JS value as text: an `Error`'s `name: message`, a string as it is.
fn js_error_text(e: &JsValue) -> String {
    if let Some(err) = e.dyn_ref::<js_sys::Error>() {
        return format!("{}: {}", String::from(err.name()), String::from(err.message()));
    }
    e.as_string().unwrap_or_else(|| format!("{e:?}"))
}

// Header lists cross the wasm boundary in one call each way, as `name\nvalue\n` pairs (neither
// names nor values can hold a line feed: the Headers API refuses them): one call per header, as
// `Headers::entries` and `append` cost, was the largest item of an unpriced pass-through's
// profile (`bench/profile.mjs free`).
#[wasm_bindgen(inline_js = "export function x402_header_list(h) { let s = ''; for (const [k, v] of h) s += k + '\\n' + v + '\\n'; return s; }
export function x402_headers_from(s) { const h = new Headers(); const p = s.split('\\n'); for (let i = 0; i + 1 < p.length; i += 2) h.append(p[i], p[i + 1]); return h; }
export function x402_response_headers(r) { return x402_header_list(r.headers); }
export function x402_request_head(r) { return r.method + '\\n' + r.url + '\\n' + x402_header_list(r.headers); }
export function x402_response(status, list, bytes, stream) {
  const nullBody = status === 101 || status === 204 || status === 205 || status === 304;
  const body = nullBody ? null : bytes !== undefined ? bytes.slice() : stream ?? null;
  return new Response(body, { status, headers: x402_headers_from(list) });
}
export function x402_pass_through(sent, base, prefix, pub, seconds, rewrite, failed) {
  return sent.then(
    (r) => base !== undefined && (r.headers.has('location') || r.headers.has('content-location') || r.headers.has('link')) ? rewrite(r, base, prefix, pub) : r,
    (e) => failed(e, seconds));
}
export function x402_origin_fetch(service, url, method, list, body, ms) {
  const controller = new AbortController();
  const init = { method, headers: x402_headers_from(list), redirect: 'manual', signal: controller.signal };
  if (body !== undefined) init.body = body;
  const sent = service === undefined ? fetch(url, init) : service.fetch(url, init);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { controller.abort(); reject('x402-origin-timeout'); }, ms);
    sent.then((r) => { clearTimeout(timer); resolve(r); }, (e) => { clearTimeout(timer); reject(e); });
  });
}")]
extern "C" {
    fn x402_header_list(headers: &web_sys::Headers) -> String;
    fn x402_headers_from(list: &str) -> web_sys::Headers;
    fn x402_request_head(request: &web_sys::Request) -> String;
    /// The header list (`name\nvalue\n`…) of a `Response`, in one call.
    fn x402_response_headers(response: &web_sys::Response) -> String;
    /// `new Response(body, {status, headers})` in one call: `bytes` is copied out of wasm memory;
    /// a null-body status (101, 204, 205, 304) gets no body. Throws what the constructor throws.
    #[wasm_bindgen(catch)]
    fn x402_response(status: u16, list: &str, bytes: Option<&[u8]>, stream: Option<web_sys::ReadableStream>) -> Result<web_sys::Response, JsValue>;
    /// `sent` (an [`x402_origin_fetch`] promise) continued in JS: the origin's `Response` as it
    /// is, unless `base` is given and it has a URL header (`Location`, `Content-Location`,
    /// `Link`: the gateway's `URL_RESPONSE_HEADERS`): then `rewrite(response, base, prefix,
    /// public)`; if it fails, `failed(error, seconds)`. Both callbacks are made once per instance
    /// ([`PASS_THROUGH`]).
    fn x402_pass_through(sent: &js_sys::Promise, base: Option<&str>, prefix: &str, public: &str, seconds: f64, rewrite: &JsValue, failed: &JsValue) -> js_sys::Promise;
    /// `fetch(url, {method, headers, body, redirect: 'manual'})` (through `service` when it is a
    /// service binding), rejected with the string `x402-origin-timeout` (and the request aborted)
    /// if the response head has not arrived within `ms` milliseconds. One crossing and a JS timer
    /// instead of a `Request`, an `AbortController` and a wasm closure built through the glue.
    #[wasm_bindgen(catch)]
    fn x402_origin_fetch(service: Option<&JsValue>, url: &str, method: &str, list: &str, body: Option<JsValue>, ms: f64) -> Result<js_sys::Promise, JsValue>;
}

/// What [`x402_origin_fetch`] rejects with when the origin's time limit passes.
const ORIGIN_TIMEOUT_MARK: &str = "x402-origin-timeout";

/// A header map as a `name\nvalue\n` list for [`x402_headers_from`].
fn header_list(h: &http::HeaderMap) -> String {
    let mut list = String::with_capacity(h.len() * 48);
    for (name, value) in h {
        // A value that is not visible ASCII text (or holds a line feed) cannot be sent by the
        // Headers API either; it is left out, as `append` would refuse it.
        if let Ok(v) = value.to_str() {
            if !v.contains('\n') {
                list.push_str(name.as_str());
                list.push('\n');
                list.push_str(v);
                list.push('\n');
            }
        }
    }
    list
}

fn parse_header_list(list: &str) -> http::HeaderMap {
    let mut out = http::HeaderMap::new();
    let mut parts = list.split('\n');
    while let (Some(name), Some(value)) = (parts.next(), parts.next()) {
        if let (Ok(n), Ok(v)) = (http::HeaderName::from_bytes(name.as_bytes()), http::HeaderValue::from_str(value)) {
            out.append(n, v);
        }
    }
    out
}

/// Races `fut` against a `seconds` timer; on timeout aborts `controller`.
async fn with_timeout<T>(fut: impl std::future::Future<Output = worker::Result<T>>, controller: AbortController, seconds: u64) -> Result<T, UpstreamError> {
    let fut = pin!(fut);
    let delay = pin!(timer::Timer::new(Duration::from_secs(seconds)));
    match select(fut, delay).await {
        Either::Left((Ok(v), _)) => Ok(v),
        Either::Left((Err(e), _)) => Err(UpstreamError::Network(e.to_string())),
        Either::Right(_) => {
            controller.abort();
            Err(UpstreamError::Timeout { seconds })
        }
    }
}

impl Platform for Edge {
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

    /// The request's stream read chunk by chunk, stopped at `max_bytes`.
    async fn read_body(&self, body: EdgeBody, max_bytes: usize) -> Result<Vec<u8>, String> {
        let stream = match body {
            EdgeBody::Bytes(b) if b.len() <= max_bytes => return Ok(b),
            EdgeBody::Stream(None) => return Ok(Vec::new()),
            EdgeBody::Stream(Some(stream)) => stream,
            _ => return Err(format!("not a request body of at most {max_bytes} bytes")),
        };
        let response = web_sys::Response::new_with_opt_readable_stream(Some(&stream)).map_err(|e| js_error_text(&e))?;
        let mut chunks = worker::Response::from(response).stream().map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(|e| e.to_string())?;
            if out.len() + chunk.len() > max_bytes {
                return Err(format!("body larger than {max_bytes} bytes"));
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }

    async fn kv_get(&self, key: &str) -> Result<Option<String>, String> {
        self.kv()?.get(key).text().await.map_err(|e| e.to_string())
    }

    async fn kv_put(&self, key: &str, value: String, ttl_seconds: u64) -> Result<(), String> {
        self.kv()?.put(key, value).map_err(|e| e.to_string())?.expiration_ttl(ttl_seconds).execute().await.map_err(|e| e.to_string())
    }

    async fn ledger(&self, shard: &str, op: &Op) -> Result<Reply, String> {
        let stub = self.env.durable_object(LEDGER_BINDING).and_then(|ns| ns.get_by_name(shard)).map_err(|e| e.to_string())?;
        let body = serde_json::to_string(op).map_err(|e| e.to_string())?;
        let mut init = RequestInit::new();
        init.with_method(worker::Method::Post).with_body(Some(JsValue::from_str(&body)));
        let request = worker::Request::new_with_init("https://ledger.internal/", &init).map_err(|e| e.to_string())?;
        let call = async {
            let mut res = stub.fetch_with_request(request).await?;
            let status = res.status_code();
            let text = res.text().await?;
            Ok::<_, worker::Error>((status, text))
        };
        let (status, text) = with_timeout(call, AbortController::default(), LEDGER_TIMEOUT_SECONDS).await.map_err(|e| format!("ledger {e}"))?;
        if status != 200 {
            return Err(format!("ledger answered HTTP {status}: {text}"));
        }
        serde_json::from_str(&text).map_err(|e| format!("ledger reply unreadable: {e}"))
    }

    fn client_gone(&self) -> bool {
        self.request.signal().aborted()
    }

    fn run_to_completion<T: 'static>(&self, fut: impl std::future::Future<Output = T> + 'static) -> impl std::future::Future<Output = Option<T>> {
        let (tx, rx) = futures_channel::oneshot::channel();
        self.ctx.wait_until(async move {
            let _ = tx.send(fut.await);
        });
        async move { rx.await.ok() }
    }

    fn defer(&self, fut: impl std::future::Future<Output = ()> + 'static) {
        self.ctx.wait_until(fut);
    }

    fn now(&self) -> u64 {
        worker::Date::now().as_millis() / 1000
    }

    fn random32(&self) -> Result<[u8; 32], String> {
        let mut buf = [0u8; 32];
        getrandom::fill(&mut buf).map_err(|e| e.to_string())?;
        Ok(buf)
    }

    fn log(&self, line: &str) {
        console_log!("{}", line);
    }

    fn passes(&self) -> &PassCache {
        &self.passes
    }

    fn isolate(&self) -> &IsolateState {
        &self.isolate
    }

    async fn rate_limit(&self, binding: &str, key: &str) -> Result<bool, String> {
        let limiter = js_sys::Reflect::get(self.env.as_ref(), &JsValue::from_str(binding)).map_err(|e| format!("{e:?}"))?;
        let limit: js_sys::Function = js_sys::Reflect::get(&limiter, &JsValue::from_str("limit"))
            .ok()
            .and_then(|f| f.dyn_into().ok())
            .ok_or_else(|| format!("{binding} is not a rate limiting binding"))?;
        let options = js_sys::Object::new();
        js_sys::Reflect::set(&options, &JsValue::from_str("key"), &JsValue::from_str(key)).map_err(|e| format!("{e:?}"))?;
        let promise: js_sys::Promise = limit.call1(&limiter, &options).map_err(|e| format!("{e:?}"))?.dyn_into().map_err(|_| "limit() returned no promise".to_string())?;
        let outcome = worker::wasm_bindgen_futures::JsFuture::from(promise).await.map_err(|e| format!("{e:?}"))?;
        Ok(js_sys::Reflect::get(&outcome, &JsValue::from_str("success")).ok().and_then(|v| v.as_bool()).unwrap_or(true))
    }

    fn record(&self, decision: &Decision) {
        let Ok(dataset) = js_sys::Reflect::get(self.env.as_ref(), &JsValue::from_str(METRICS_BINDING)) else { return };
        if dataset.is_undefined() {
            return;
        }
        let write = js_sys::Reflect::get(&dataset, &JsValue::from_str("writeDataPoint")).ok().and_then(|f| f.dyn_into::<js_sys::Function>().ok());
        let point = serde_json::to_string(&decision.data_point()).ok().and_then(|json| js_sys::JSON::parse(&json).ok());
        if let (Some(write), Some(point)) = (write, point) {
            if let Err(e) = write.call1(&dataset, &point) {
                console_error!("x402: writeDataPoint failed: {e:?}");
            }
        }
    }

    async fn sign(&self, key: &CdpKey, message: &[u8]) -> Result<Vec<u8>, String> {
        webcrypto::sign(key, message).await
    }

    fn millis(&self) -> u64 {
        worker::Date::now().as_millis()
    }
}

/// The runtime `Response` for a pipeline answer, built in one call. An origin response whose
/// status and headers the pipeline left as they arrived is returned as the object `fetch` gave.
fn to_response(res: http::Response<EdgeBody>) -> Result<JsValue, JsValue> {
    let (parts, body) = res.into_parts();
    let status = parts.status.as_u16();
    let list = header_list(&parts.headers);
    let built = match body {
        EdgeBody::Promise(promise) => return Ok(promise.into()),
        EdgeBody::Origin { response, status: arrived, headers } if arrived == status && headers == list => return Ok(response.into()),
        EdgeBody::Origin { response, .. } => x402_response(status, &list, None, response.body()),
        EdgeBody::Stream(stream) => x402_response(status, &list, None, stream),
        EdgeBody::Bytes(bytes) => x402_response(status, &list, Some(&bytes), None),
    };
    built.map(JsValue::from)
}

/// The `fetch` entry point (worker-build's shim calls it with the request, `env` and `ctx`).
///
/// It polls the pipeline once right here: a request answered without I/O (a 402 challenge, a
/// 405, a pass from the isolate cache...) gets its `Response` back synchronously, without the
/// promise and microtask round trips of an `async` export (`#[event(fetch)]`); anything else
/// continues as a promise. Every future the pipeline awaits takes the newest waker on each poll
/// (`JsFuture`, channels, [`timer::Timer`]), so the first poll's waker is never relied on.
/// It takes the runtime's request as it is (`web_sys::Request`): a `worker::Request` would read
/// `request.cf` and re-parse the URL on every request, which the pipeline never uses (37 µs of a
/// challenge in `bench/profile.mjs`).
#[wasm_bindgen(js_name = fetch)]
pub fn fetch_entry(req: web_sys::Request, env: Env, ctx: worker::worker_sys::Context) -> JsValue {
    let mut pipeline = Box::pin(serve(req, env, Context::new(ctx)));
    let mut first = std::task::Context::from_waker(std::task::Waker::noop());
    match std::future::Future::poll(pipeline.as_mut(), &mut first) {
        std::task::Poll::Ready(res) => res,
        std::task::Poll::Pending => worker::wasm_bindgen_futures::future_to_promise(async move { Ok(pipeline.await) }).into(),
    }
}

/// The pipeline behind [`fetch_entry`]: the `Response` as a JS value (a 500 naming the error if
/// the response could not be built).
async fn serve(req: web_sys::Request, env: Env, ctx: Context) -> JsValue {
    match serve_request(req, env, ctx).await {
        Ok(res) => res,
        Err(e) => {
            console_error!("x402 paywall: {}", js_error_text(&e));
            x402_response(500, "content-type\napplication/json\n", Some(b"{\"error\":\"internal_error\"}"), None).map(JsValue::from).unwrap_or(JsValue::UNDEFINED)
        }
    }
}

async fn serve_request(req: web_sys::Request, env: Env, ctx: Context) -> Result<JsValue, JsValue> {
    // Test builds only (`--features panic-test`, tests/panic.test.mjs): a panic on demand, before
    // any I/O or after some, to prove that the next request is served by a fresh instance.
    #[cfg(feature = "panic-test")]
    {
        let url = req.url();
        if url.ends_with("/__panic") {
            panic!("forced panic (panic-test build)");
        }
        if url.ends_with("/__panic_after_io") {
            timer::Timer::new(Duration::from_millis(5)).await;
            panic!("forced panic after I/O (panic-test build)");
        }
    }
    let config = match config(&env) {
        Ok(c) => c,
        Err(e) => {
            console_error!("x402 paywall: {e}");
            return to_response(gateway::config_error_response(&e.public(), EdgeBody::Bytes));
        }
    };
    pipeline(config, req, env, ctx).await
}

/// The pipeline for one request under `config`, boxed as a trait object so that its state
/// machine is one function of its own (not inlined into [`serve`]): [`warm_up`] runs this same
/// function at start-up, so V8 has compiled it before the first request.
fn pipeline(config: Rc<Config>, req: web_sys::Request, env: Env, ctx: Context) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<JsValue, JsValue>>>> {
    Box::pin(async move {
        // Method, URL and headers in one call: `method\nurl\n` then the header list (neither a
        // method token nor a serialised URL holds a line feed).
        let head = x402_request_head(&req);
        let mut lines = head.splitn(3, '\n');
        let (method, url, headers) = (lines.next().unwrap_or_default(), lines.next().unwrap_or_default(), lines.next().unwrap_or_default());
        let mut builder = http::Request::builder().method(method).uri(url);
        if let Some(h) = builder.headers_mut() {
            *h = parse_header_list(headers);
        }
        let body = EdgeBody::Stream(req.body().map(|b| b.unchecked_into()));
        let http_req = match builder.body(body) {
            Ok(r) => r,
            Err(e) => {
                let body = serde_json::json!({ "error": "invalid_request", "message": e.to_string() }).to_string();
                return x402_response(400, "content-type\napplication/json\n", Some(body.as_bytes()), None).map(JsValue::from);
            }
        };
        let origin_is_service = matches!(config.origin, crate::config::OriginTarget::Service);
        let platform = Rc::new(Edge { origin_is_service, kv: std::cell::OnceCell::new(), passes: PASSES.with(Rc::clone), isolate: ISOLATE.with(Rc::clone), env, ctx, request: req });
        to_response(gateway::handle(&config, &platform, http_req).await)
    })
}

#[wasm_bindgen(inline_js = "export function x402_warm_up_context() { return { waitUntil() {}, passThroughOnException() {} }; }")]
extern "C" {
    fn x402_warm_up_context() -> JsValue;
}

#[wasm_bindgen(module = "cloudflare:workers")]
extern "C" {
    /// The Worker's bindings as the runtime exposes them at module scope (`import { env } from
    /// "cloudflare:workers"`): the same variables and secrets each request's `env` carries.
    #[wasm_bindgen(thread_local_v2, js_name = env)]
    static MODULE_ENV: JsValue;
}

/// Runs once when the module is instantiated (module evaluation, before the first request), so
/// that a fresh isolate's first request does not pay for one-time work (in `BENCH_ONLY=startup`,
/// about 16 of a 21 ms first response):
/// 1. the Worker's real configuration is parsed and kept (what [`config`] does on a first
///    request; an error is kept and reported the same way), read from the module-scope `env`,
///    and every priced route's challenge is laid out ([`gateway::prepare`]); unless
///    `DECISION_LOG = "none"`, one line `{"x402":"start","mode","routes","priced","prices"}` is logged
///    (`prices`: [`Config::price_lines`], what each route charges), and each of
///    [`Config::warnings`] as an error line;
/// 2. a `GET /warm-up` without payment runs through [`pipeline`] under
///    [`crate::config::warm_up_vars`], polled once, for its side effect: V8 compiles wasm
///    functions when they are first called. It ends without I/O at the `Response`, which the
///    runtime does not let module-scope code build. Its configuration is not kept, its `env` is
///    an empty object (no binding is read, no decision recorded) and it logs nothing.
///
/// Nothing here can fail a request: without a module-scope `env` step 1 is skipped, and the
/// first request parses the configuration as before.
#[wasm_bindgen(start)]
fn warm_up() {
    let env = MODULE_ENV.with(JsValue::clone);
    if env.is_object() {
        let env: Env = env.unchecked_into();
        if let Ok(config) = config(&env) {
            ISOLATE.with(|isolate| gateway::prepare(&config, isolate));
            // One line per isolate start, unless decision lines are off: it names what was
            // loaded, and it is the isolate's first `console.log`, which costs the runtime about
            // 2 ms once (in Miniflare) that a first decision line would otherwise pay.
            if !matches!(config.decision_log, crate::config::DecisionLog::None) {
                let mode = match config.mode {
                    crate::config::Mode::Enforce => "enforce",
                    crate::config::Mode::Shadow => "shadow",
                };
                let priced = config.routes.iter().filter(|r| !r.is_free()).count();
                let prices = config.price_lines();
                console_log!("{}", serde_json::json!({ "x402": "start", "mode": mode, "routes": config.routes.len(), "priced": priced, "prices": prices }));
            }
            for w in config.warnings(&read_vars(&env)) {
                console_error!("x402 paywall: warning: {w}");
            }
        }
    }
    let Ok(config) = Config::from_vars(&crate::config::warm_up_vars()) else {
        console_error!("x402 paywall: start-up warm-up skipped: its configuration does not parse");
        return;
    };
    let Ok(req) = web_sys::Request::new_with_str("https://warm-up.invalid/warm-up") else { return };
    let env: Env = js_sys::Object::new().unchecked_into();
    let ctx = Context::new(x402_warm_up_context().unchecked_into());
    let mut run = pipeline(Rc::new(config), req, env, ctx);
    if run.as_mut().poll(&mut std::task::Context::from_waker(std::task::Waker::noop())).is_pending() {
        console_error!("x402 paywall: start-up warm-up did not finish without I/O");
    }
}
