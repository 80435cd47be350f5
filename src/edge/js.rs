//! The JavaScript boundary: the `#[wasm_bindgen(inline_js)]` functions (one crossing each for
//! a header list, a request head, a `Response`, an origin `fetch` with its timer, a pass-through
//! continued in JS), the `name\nvalue\n` header-list codec they share, a pipeline answer turned
//! into the runtime's `Response`, a thrown JS value as text, and the module-scope `env` of
//! `cloudflare:workers`.

use worker::wasm_bindgen::{JsCast, JsValue};
use worker::wasm_bindgen::prelude::wasm_bindgen;
use worker::{js_sys, web_sys};

use super::platform::EdgeBody;

/// A thrown JS value as text: an `Error`'s `name: message`, a string as it is.
pub(super) fn js_error_text(e: &JsValue) -> String {
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
export function x402_relay() { const t = new TransformStream(); return [t.readable, t.writable.getWriter()]; }
export function x402_relay_write(w, bytes) { w.write(bytes.slice()).catch(() => {}); }
export function x402_relay_close(w) { w.close().catch(() => {}); }
export function x402_pass_through(sent, base, prefix, pub, seconds, rewrite, failed) {
  return sent.then(
    (r) => base !== undefined && (r.headers.has('location') || r.headers.has('content-location') || r.headers.has('link')) ? rewrite(r, base, prefix, pub) : r,
    (e) => failed(e, seconds));
}
export function x402_origin_fetch(service, url, method, list, body, ms, whole) {
  const controller = new AbortController();
  const init = { method, headers: x402_headers_from(list), redirect: 'manual', signal: controller.signal };
  if (body !== undefined) init.body = body;
  const sent = service === undefined ? fetch(url, init) : service.fetch(url, init);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { controller.abort(); reject('x402-origin-timeout'); }, ms);
    sent.then((r) => { if (!whole || r.status >= 400) clearTimeout(timer); resolve(r); }, (e) => { clearTimeout(timer); reject(e); });
  });
}")]
extern "C" {
    fn x402_header_list(headers: &web_sys::Headers) -> String;
    fn x402_headers_from(list: &str) -> web_sys::Headers;
    pub(super) fn x402_request_head(request: &web_sys::Request) -> String;
    /// The header list (`name\nvalue\n`…) of a `Response`, in one call.
    pub(super) fn x402_response_headers(response: &web_sys::Response) -> String;
    /// `new Response(body, {status, headers})` in one call: `bytes` is copied out of wasm memory;
    /// a null-body status (101, 204, 205, 304) gets no body. Throws what the constructor throws.
    #[wasm_bindgen(catch)]
    pub(super) fn x402_response(status: u16, list: &str, bytes: Option<&[u8]>, stream: Option<web_sys::ReadableStream>) -> Result<web_sys::Response, JsValue>;
    /// `sent` (an [`x402_origin_fetch`] promise) continued in JS: the origin's `Response` as it
    /// is, unless `base` is given and it has a URL header (`Location`, `Content-Location`,
    /// `Link`: the gateway's `URL_RESPONSE_HEADERS`): then `rewrite(response, base, prefix,
    /// public)`; if it fails, `failed(error, seconds)`. Both callbacks are made once per instance
    /// ([`PASS_THROUGH`]).
    /// A `TransformStream`'s `[readable, writer]`: a body written while it is sent.
    pub(super) fn x402_relay() -> js_sys::Array;
    /// `writer.write(copy of bytes)`; a rejection (the client gone) is dropped.
    pub(super) fn x402_relay_write(writer: &JsValue, bytes: &[u8]);
    /// `writer.close()`; a rejection is dropped.
    pub(super) fn x402_relay_close(writer: &JsValue);
    pub(super) fn x402_pass_through(sent: &js_sys::Promise, base: Option<&str>, prefix: &str, public: &str, seconds: f64, rewrite: &JsValue, failed: &JsValue) -> js_sys::Promise;
    /// `fetch(url, {method, headers, body, redirect: 'manual'})` (through `service` when it is a
    /// service binding), rejected with the string `x402-origin-timeout` (and the request aborted)
    /// if the response head has not arrived within `ms` milliseconds; with `whole`, a body still
    /// arriving then is aborted too (its reading fails), unless the status is an error (≥ 400:
    /// passed through as it is, never read). One crossing and a JS timer
    /// instead of a `Request`, an `AbortController` and a wasm closure built through the glue.
    #[wasm_bindgen(catch)]
    pub(super) fn x402_origin_fetch(service: Option<&JsValue>, url: &str, method: &str, list: &str, body: Option<JsValue>, ms: f64, whole: bool) -> Result<js_sys::Promise, JsValue>;
}

/// What [`x402_origin_fetch`] rejects with when the origin's time limit passes.
pub(super) const ORIGIN_TIMEOUT_MARK: &str = "x402-origin-timeout";

/// A header map as a `name\nvalue\n` list for [`x402_headers_from`].
pub(super) fn header_list(h: &http::HeaderMap) -> String {
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

pub(super) fn parse_header_list(list: &str) -> http::HeaderMap {
    let mut out = http::HeaderMap::new();
    let mut parts = list.split('\n');
    while let (Some(name), Some(value)) = (parts.next(), parts.next()) {
        if let (Ok(n), Ok(v)) = (http::HeaderName::from_bytes(name.as_bytes()), http::HeaderValue::from_str(value)) {
            out.append(n, v);
        }
    }
    out
}

/// The runtime `Response` for a pipeline answer, built in one call. An origin response whose
/// status and headers the pipeline left as they arrived is returned as the object `fetch` gave.
pub(super) fn to_response(res: http::Response<EdgeBody>) -> Result<JsValue, JsValue> {
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

#[wasm_bindgen(inline_js = "export function x402_warm_up_context() { return { waitUntil() {}, passThroughOnException() {} }; }")]
extern "C" {
    pub(super) fn x402_warm_up_context() -> JsValue;
}

#[wasm_bindgen(module = "cloudflare:workers")]
extern "C" {
    /// The Worker's bindings as the runtime exposes them at module scope (`import { env } from
    /// "cloudflare:workers"`): the same variables and secrets each request's `env` carries.
    #[wasm_bindgen(thread_local_v2, js_name = env)]
    pub(super) static MODULE_ENV: JsValue;
}
