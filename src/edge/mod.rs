//! The Cloudflare Workers glue (wasm32 only): the `fetch` entry point and the start-up warm-up
//! (here), [`gateway::Platform`] over the runtime ([`platform`]), the JavaScript boundary and its
//! header-list codec ([`js`]), the Worker's variables and bindings read into the configuration
//! ([`vars`]), the Rate Limiting and Analytics Engine bindings ([`bindings`]), the payment
//! ledger's Durable Object ([`ledger_object`]), Web Crypto signing ([`webcrypto`]) and, in the
//! panic test build, a JS timer ([`timer`]). Bodies stay JavaScript `ReadableStream`s end to end,
//! so origin responses stream through without being copied into wasm memory.
//!
//! Owns: everything that touches `worker`, `js_sys`, `web_sys` or inline JavaScript; nothing
//! outside this folder does. Must not touch: decisions. What to charge, whether a payment, pass
//! or request is accepted, what a refusal answers, what is logged for a decision: all of that is
//! in the pure core (`gateway`, `ledger`, `config`), which this module only adapts (it turns
//! JavaScript values into `http` types and back, and runtime failures into errors the core
//! classifies).

mod bindings;
mod js;
mod ledger_object;
mod platform;
#[cfg(feature = "panic-test")]
mod timer;
mod vars;
mod webcrypto;

use std::rc::Rc;
#[cfg(feature = "panic-test")]
use std::time::Duration;

use worker::wasm_bindgen::{JsCast, JsValue};
use worker::wasm_bindgen::prelude::wasm_bindgen;
use worker::{console_error, console_log, js_sys, web_sys, Context, Env};

use crate::config::Config;
use crate::gateway;

use js::{js_error_text, parse_header_list, to_response, x402_request_head, x402_response, x402_warm_up_context, MODULE_ENV};
use platform::{Edge, EdgeBody, ISOLATE};
use vars::{config, read_vars};

/// Name of the Workers KV namespace binding that caches pass records.
pub const PASSES_BINDING: &str = "PASSES";

/// Name of the Durable Object namespace binding of the payment ledger (class `PaymentLedger`).
pub const LEDGER_BINDING: &str = "LEDGER";

/// Name of the optional service binding to an origin Worker (instead of `ORIGIN_URL`).
pub const ORIGIN_SERVICE_BINDING: &str = "ORIGIN_SERVICE";

/// Name of the optional Workers Analytics Engine dataset binding that receives one data point per
/// priced request decision.
pub const METRICS_BINDING: &str = "METRICS";

/// The `fetch` entry point (`src/edge/entry.mjs` calls it with the request, `env` and `ctx`).
///
/// It polls the pipeline once right here: a request answered without I/O (a 402 challenge, a
/// 405, a pass from the isolate cache...) gets its `Response` back synchronously, without the
/// promise and microtask round trips of an `async` export (`#[event(fetch)]`); anything else
/// continues as a promise. Every future the pipeline awaits takes the newest waker on each poll
/// (`JsFuture`, channels, the test build's `timer::Timer`), so the first poll's waker is never relied on.
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
        let platform = Rc::new(Edge::new(&config, env, ctx, req));
        to_response(gateway::handle(&config, &platform, http_req).await)
    })
}

/// Runs once when the module is instantiated (module evaluation, before the first request), so
/// that a fresh isolate's first request does not pay for one-time work (in `BENCH_ONLY=startup`,
/// about 16 of a 21 ms first response):
/// 1. the Worker's real configuration is parsed and kept (what [`config`] does on a first
///    request; an error is kept and reported the same way), read from the module-scope `env`,
///    and every priced route's challenge is laid out ([`gateway::prepare`]); unless
///    `DECISION_LOG = "none"`, one line `{"x402":"start","mode","routes","priced","prices"}` is
///    logged (`prices`: [`Config::price_lines`], what each route charges; with
///    `PAYMENT_CONTEXT_KEY`, also `paymentContext: {kid, jwks}`), and each of
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
                let mut line = serde_json::json!({ "x402": "start", "mode": mode, "routes": config.routes.len(), "priced": priced, "prices": prices });
                // The payment context's key id, when contexts are signed.
                if let Some(key) = &config.payment_context {
                    line["paymentContext"] = serde_json::json!({ "kid": key.kid(), "jwks": crate::payment_context::JWKS_PATH });
                }
                console_log!("{line}");
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
